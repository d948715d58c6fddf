/*
 * rd_snapshot: build, cache and compress the snapshot.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "mesh_alloc.h"
#include "rd_snapshot.h"


typedef struct {
    char                 service[RD_NAME_MAX + 1];
    char                 id[RD_NAME_MAX + 1];
} rd_change_t;


typedef struct {
    const rd_subscription_t  *sub;
    rd_change_t              *v;
    size_t                    n;
    size_t                    cap;
    int                       policies;   /* a policy changed */
} rd_changes_t;


static void rd_snapshot_head(rd_registry_t *reg, mesh_buf_t *b,
    uint64_t index, int delta);
static void rd_snapshot_policies(rd_registry_t *reg, mesh_buf_t *b,
    const rd_subscription_t *sub);


void
rd_snapshot_build(rd_registry_t *reg, mesh_buf_t *b, uint64_t *index)
{
    rd_snapshot_ask_t  ask;

    memset(&ask, 0, sizeof(rd_snapshot_ask_t));

    (void) rd_snapshot_answer(reg, &ask, b, index);
}


/* {"index":N,"registry":"ID",["delta":true|false,]"services":[ */
static void
rd_snapshot_head(rd_registry_t *reg, mesh_buf_t *b, uint64_t index, int delta)
{
    mesh_buf_adds(b, "{\"index\":");
    mesh_buf_add_u64(b, index);
    mesh_buf_printf(b, ",\"registry\":\"%016llx\"",
                  (unsigned long long) rd_registry_id(reg));

    if (delta >= 0) {
        mesh_buf_adds(b, delta ? ",\"delta\":true" : ",\"delta\":false");
    }

    mesh_buf_adds(b, ",\"services\":[");
}


/* "policies":[...] of the policies naming a subscribed service (or no
 * one service); read lock held */
static void
rd_snapshot_policies(rd_registry_t *reg, mesh_buf_t *b,
    const rd_subscription_t *sub)
{
    size_t         i, h, n, len;
    const char    *s;
    rd_policy_t   *p;

    mesh_buf_adds(b, "\"policies\":[");

    n = 0;

    for (i = 0; i < reg->npolicies; i++) {
        p = reg->policies[i];

        /* Gateways, VirtualServices at gateways and wildcard hosts name
         * no one service: every nginx gets them */
        if (sub && !p->everyone) {
            for (h = 0; h < p->nhosts; h++) {
                if (rd_subscription_has(sub, p->hosts[h].host)) {
                    break;
                }
            }

            if (h == p->nhosts) {
                continue;
            }
        }

        /* roots with their delegates merged in, no delegate */
        s = rd_policy_snap(p, &len);
        if (len == 0) {
            continue;
        }

        mesh_buf_adds(b, n++ ? ",\n" : "\n");
        mesh_buf_add(b, s, len);
    }

    mesh_buf_addc(b, ']');
}


/* the first position in all[0..n) of service name */
static size_t
rd_snapshot_lower(rd_instance_t **all, size_t n, const char *name)
{
    size_t  lo = 0, hi = n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (strcmp(all[mid]->service, name) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return lo;
}


/* a complete answer for a subscription; read lock held */
static void
rd_snapshot_full(rd_registry_t *reg, const rd_snapshot_ask_t *ask,
    mesh_buf_t *b, uint64_t index)
{
    size_t           i, k, n, first, nsvc;
    rd_instance_t  **all;

    all = rd_registry_sorted(reg, &n);

    rd_snapshot_head(reg, b, index, ask->delta ? 0 : -1);

    nsvc = 0;
    k = 0;

    for ( ;; ) {
        if (ask->sub) {
            if (k == ask->sub->n) {
                break;
            }

            i = rd_snapshot_lower(all, n, ask->sub->names[k++]);

            if (i == n || strcmp(all[i]->service, ask->sub->names[k - 1])
                          != 0)
            {
                continue;
            }

        } else {
            if (k == n) {
                break;
            }

            i = k;
        }

        first = i;

        mesh_buf_adds(b, nsvc++ ? ",\n{\"name\":" : "\n{\"name\":");
        mesh_buf_add_json_str(b, all[first]->service);
        mesh_buf_adds(b, ",\"instances\":[");

        for ( ; i < n && strcmp(all[i]->service, all[first]->service) == 0;
             i++)
        {
            mesh_buf_adds(b, i > first ? ",\n" : "\n");
            mesh_buf_add(b, all[i]->snap, all[i]->snap_len);
        }

        mesh_buf_adds(b, "]}");

        if (ask->sub == NULL) {
            k = i;
        }
    }

    mesh_buf_adds(b, "],\n");
    rd_snapshot_policies(reg, b, ask->sub);
    mesh_buf_adds(b, "}\n");

    free(all);
}


static void
rd_snapshot_collect(void *data, const rd_event_t *e)
{
    size_t         cap;
    rd_changes_t  *ch = data;

    if (e->service[0] == '\0') {
        ch->policies = 1;
        return;
    }

    if (ch->sub && !rd_subscription_has(ch->sub, e->service)) {
        return;
    }

    if (ch->n == ch->cap) {
        cap = ch->cap ? ch->cap * 2 : 16;
        ch->v = mesh_xrealloc(ch->v, cap * sizeof(rd_change_t));
        ch->cap = cap;
    }

    memcpy(ch->v[ch->n].service, e->service, sizeof(e->service));
    memcpy(ch->v[ch->n].id, e->id, sizeof(e->id));
    ch->n++;
}


static int
rd_snapshot_cmp_changes(const void *one, const void *two)
{
    int                 rc;
    const rd_change_t  *a = one, *b = two;

    rc = strcmp(a->service, b->service);

    return rc ? rc : strcmp(a->id, b->id);
}


/* the changes since ask->since as a delta; read lock held; -1 when they
 * are no longer known */
static int
rd_snapshot_delta(rd_registry_t *reg, const rd_snapshot_ask_t *ask,
    mesh_buf_t *b, uint64_t index)
{
    size_t          i, k, nsvc, nin, nrm;
    rd_changes_t    ch;
    rd_instance_t  *in;

    if (reg->events == NULL || !ask->known || ask->since > index
        || ask->registry != rd_registry_id(reg))
    {
        return -1;
    }

    memset(&ch, 0, sizeof(rd_changes_t));
    ch.sub = ask->sub;

    if (rd_events_since(reg->events, ask->since, index, rd_snapshot_collect,
                        &ch)
        != 0)
    {
        free(ch.v);
        return -1;
    }

    if (ch.n > 1) {
        qsort(ch.v, ch.n, sizeof(rd_change_t), rd_snapshot_cmp_changes);
    }

    rd_snapshot_head(reg, b, index, 1);

    nsvc = 0;

    for (i = 0; i < ch.n; i = k) {

        mesh_buf_adds(b, nsvc++ ? ",\n{\"name\":" : "\n{\"name\":");
        mesh_buf_add_json_str(b, ch.v[i].service);

        /* the instances there now, then the ids gone */

        mesh_buf_adds(b, ",\"instances\":[");
        nin = 0;

        for (k = i; k < ch.n && strcmp(ch.v[k].service, ch.v[i].service) == 0;
             k++)
        {
            if (k > i && strcmp(ch.v[k].id, ch.v[k - 1].id) == 0) {
                continue;
            }

            in = rd_registry_find(reg, ch.v[k].service, ch.v[k].id);
            if (in) {
                mesh_buf_adds(b, nin++ ? ",\n" : "\n");
                mesh_buf_add(b, in->snap, in->snap_len);
            }
        }

        mesh_buf_adds(b, "],\"removed\":[");
        nrm = 0;

        for (k = i; k < ch.n && strcmp(ch.v[k].service, ch.v[i].service) == 0;
             k++)
        {
            if (k > i && strcmp(ch.v[k].id, ch.v[k - 1].id) == 0) {
                continue;
            }

            if (rd_registry_find(reg, ch.v[k].service, ch.v[k].id) == NULL) {
                if (nrm++) {
                    mesh_buf_addc(b, ',');
                }

                mesh_buf_add_json_str(b, ch.v[k].id);
            }
        }

        mesh_buf_adds(b, "]}");
    }

    mesh_buf_adds(b, "]");

    if (ch.policies) {
        mesh_buf_adds(b, ",\n");
        rd_snapshot_policies(reg, b, ask->sub);
    }

    mesh_buf_adds(b, "}\n");

    free(ch.v);

    return 0;
}


int
rd_snapshot_answer(rd_registry_t *reg, const rd_snapshot_ask_t *ask,
    mesh_buf_t *b, uint64_t *index)
{
    int     delta;
    size_t  start;

    pthread_rwlock_rdlock(&reg->lock);

    *index = reg->index;
    start = b->len;
    delta = 0;

    if (ask->delta && rd_snapshot_delta(reg, ask, b, *index) == 0) {
        delta = 1;

    } else {
        b->len = start;
        rd_snapshot_full(reg, ask, b, *index);
    }

    pthread_rwlock_unlock(&reg->lock);

    return delta;
}


static int
rd_snapshot_cmp_names(const void *one, const void *two)
{
    return strcmp(*(char *const *) one, *(char *const *) two);
}


int
rd_subscription_parse(rd_subscription_t *sub, const char *list, char *err)
{
    char    *p, *comma;
    size_t   n, len, i;

    memset(sub, 0, sizeof(rd_subscription_t));

    len = strlen(list);

    sub->mem = mesh_xmalloc(len + 1);

    memcpy(sub->mem, list, len + 1);

    n = 1;
    for (p = sub->mem; *p; p++) {
        n += (*p == ',');
    }

    if (len == 0) {
        return 0;               /* subscribes to nothing */
    }

    if (n > RD_SUBSCRIPTION_MAX) {
        snprintf(err, RD_ERR_LEN, "more than %d services",
                 RD_SUBSCRIPTION_MAX);
        goto fail;
    }

    sub->names = mesh_xmalloc(n * sizeof(char *));

    for (p = sub->mem; p; p = comma ? comma + 1 : NULL) {
        comma = strchr(p, ',');
        if (comma) {
            *comma = '\0';
        }

        if (!mesh_name_valid(p, strlen(p))) {
            snprintf(err, RD_ERR_LEN, "invalid service name \"%.128s\"", p);
            goto fail;
        }

        sub->names[sub->n++] = p;
    }

    qsort(sub->names, sub->n, sizeof(char *), rd_snapshot_cmp_names);

    /* unique */
    for (i = 1, n = 1; i < sub->n; i++) {
        if (strcmp(sub->names[i], sub->names[n - 1]) != 0) {
            sub->names[n++] = sub->names[i];
        }
    }

    sub->n = n;

    return 0;

fail:

    rd_subscription_free(sub);
    return -1;
}


void
rd_subscription_free(rd_subscription_t *sub)
{
    free(sub->names);
    free(sub->mem);
    memset(sub, 0, sizeof(rd_subscription_t));
}


static int
rd_snapshot_cmp_name(const void *key, const void *elt)
{
    return strcmp(key, *(char *const *) elt);
}


int
rd_subscription_has(const rd_subscription_t *sub, const char *name)
{
    return sub->n
           && bsearch(name, sub->names, sub->n, sizeof(char *),
                      rd_snapshot_cmp_name)
              != NULL;
}


static rd_snapshot_t *
rd_snapshot_create(rd_registry_t *reg)
{
    mesh_buf_t      b;
    rd_snapshot_t  *s;

    s = mesh_xcalloc(1, sizeof(rd_snapshot_t));

    mesh_buf_init(&b, 0);
    rd_snapshot_build(reg, &b, &s->index);

    s->json = b.data;
    s->len = b.len;
    s->refs = 1;                /* the cache's */
    pthread_mutex_init(&s->gzlock, NULL);

    return s;
}


void
rd_snapshot_release(rd_snapshot_t *s)
{
    if (s == NULL || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL)) {
        return;
    }

    pthread_mutex_destroy(&s->gzlock);
    free(s->json);
    free(s->gz);
    free(s);
}


void
rd_snapshot_cache_init(rd_snapshot_cache_t *c, rd_registry_t *reg)
{
    c->reg = reg;
    c->current = NULL;
    pthread_mutex_init(&c->lock, NULL);
}


void
rd_snapshot_cache_free(rd_snapshot_cache_t *c)
{
    rd_snapshot_release(c->current);
    c->current = NULL;
    pthread_mutex_destroy(&c->lock);
}


rd_snapshot_t *
rd_snapshot_get(rd_snapshot_cache_t *c)
{
    rd_snapshot_t  *s;

    /* one builder at a time; the others wait and share its result */
    pthread_mutex_lock(&c->lock);

    s = c->current;

    if (s == NULL || s->index != rd_registry_index(c->reg)) {
        s = rd_snapshot_create(c->reg);

        rd_snapshot_release(c->current);
        c->current = s;
    }

    __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);

    pthread_mutex_unlock(&c->lock);

    return s;
}


int
rd_gzip(const char *in, size_t len, char **out, size_t *outlen)
{
    int        rc;
    z_stream   zs;
    uLong      bound;
    Bytef     *buf;

    memset(&zs, 0, sizeof(zs));

    /* windowBits 15 + 16: a gzip wrapper */
    if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
    {
        return -1;
    }

    bound = deflateBound(&zs, (uLong) len);
    buf = mesh_xmalloc(bound);

    zs.next_in = (Bytef *) in;
    zs.avail_in = (uInt) len;
    zs.next_out = buf;
    zs.avail_out = (uInt) bound;

    rc = deflate(&zs, Z_FINISH);
    *outlen = zs.total_out;
    deflateEnd(&zs);

    if (rc != Z_STREAM_END) {
        free(buf);
        return -1;
    }

    *out = (char *) buf;

    return 0;
}


int
rd_snapshot_gzip(rd_snapshot_t *s, const char **data, size_t *len)
{
    int  rc;

    pthread_mutex_lock(&s->gzlock);

    rc = 0;

    if (s->gz == NULL) {
        rc = rd_gzip(s->json, s->len, &s->gz, &s->gzlen);
    }

    pthread_mutex_unlock(&s->gzlock);

    if (rc != 0) {
        return -1;
    }

    *data = s->gz;
    *len = s->gzlen;

    return 0;
}
