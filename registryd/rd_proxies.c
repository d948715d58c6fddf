/*
 * rd_proxies: who polls, what they route on, how far behind they are.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mesh_alloc.h"
#include "rd_proxies.h"
#include "rd_snapshot.h"


typedef struct {
    const rd_subscription_t  *sub;      /* NULL: every service */
    uint64_t                  lag;
} rd_proxies_lag_t;


rd_proxies_t *
rd_proxies_create(int64_t gone_after)
{
    rd_proxies_t  *p;

    p = mesh_xcalloc(1, sizeof(rd_proxies_t));
    p->gone_after = gone_after;
    pthread_mutex_init(&p->lock, NULL);

    return p;
}


static void
rd_proxy_free(rd_proxy_t *x)
{
    if (x) {
        free(x->services);
        free(x);
    }
}


void
rd_proxies_free(rd_proxies_t *p)
{
    size_t  i;

    if (p == NULL) {
        return;
    }

    for (i = 0; i < p->n; i++) {
        rd_proxy_free(p->v[i]);
    }

    free(p->v);
    pthread_mutex_destroy(&p->lock);
    free(p);
}


/* the position of name, or where it goes (*found 0) */
static size_t
rd_proxies_find(rd_proxies_t *p, const char *name, int *found)
{
    int     rc;
    size_t  lo = 0, hi = p->n, mid;

    *found = 0;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        rc = strcmp(p->v[mid]->name, name);

        if (rc == 0) {
            *found = 1;
            return mid;
        }

        if (rc < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return lo;
}


/* copy a value into out: "quoted" or a bare token; -1 when too long */
static int
rd_proxies_value(const char *v, size_t len, char *out, size_t size)
{
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }

    if (len >= size || memchr(v, '"', len)) {
        return -1;
    }

    memcpy(out, v, len);
    out[len] = '\0';

    return 0;
}


static int
rd_proxies_parse(const char *header, rd_proxy_t *x, char *err)
{
    char          num[32], *end, *slash;
    size_t        klen, vlen;
    const char   *p, *semi, *eq, *k, *v;

    for (p = header; *p; p = semi ? semi + 1 : p + strlen(p)) {
        semi = strchr(p, ';');

        while (*p == ' ' || *p == '\t') {
            p++;
        }

        vlen = semi ? (size_t) (semi - p) : strlen(p);

        while (vlen && (p[vlen - 1] == ' ' || p[vlen - 1] == '\t')) {
            vlen--;
        }

        if (vlen == 0) {
            continue;
        }

        eq = memchr(p, '=', vlen);
        if (eq == NULL) {
            snprintf(err, RD_ERR_LEN, "X-Mesh-Proxy: \"%.*s\" is not "
                     "key=value", (int) (vlen > 64 ? 64 : vlen), p);
            return -1;
        }

        k = p;
        klen = eq - p;
        v = eq + 1;
        vlen -= klen + 1;

#define RD_KEY(s)  (klen == sizeof(s) - 1 && memcmp(k, s, klen) == 0)

        if (RD_KEY("name")) {
            if (rd_proxies_value(v, vlen, x->name, sizeof(x->name)) != 0
                || x->name[0] == '\0')
            {
                snprintf(err, RD_ERR_LEN, "X-Mesh-Proxy: name must be 1 to "
                         "%d characters", RD_PROXY_NAME_MAX);
                return -1;
            }

        } else if (RD_KEY("nginx") || RD_KEY("module")) {
            if (rd_proxies_value(v, vlen,
                                 RD_KEY("nginx") ? x->nginx : x->module,
                                 sizeof(x->nginx))
                != 0)
            {
                snprintf(err, RD_ERR_LEN, "X-Mesh-Proxy: %.*s is too long",
                         (int) klen, k);
                return -1;
            }

        } else if (RD_KEY("index") || RD_KEY("stale") || RD_KEY("zone")) {
            if (rd_proxies_value(v, vlen, num, sizeof(num)) != 0
                || num[0] < '0' || num[0] > '9')
            {
                goto bad_number;
            }

            if (RD_KEY("zone")) {
                slash = strchr(num, '/');
                if (slash == NULL) {
                    goto bad_number;
                }

                *slash = '\0';
                x->zone_used = strtoull(num, &end, 10);
                if (*end) {
                    goto bad_number;
                }

                x->zone_size = strtoull(slash + 1, &end, 10);

            } else if (RD_KEY("index")) {
                x->index = strtoull(num, &end, 10);

            } else {
                x->stale = (int) strtol(num, &end, 10) != 0;
            }

            if (*end) {
                goto bad_number;
            }
        }

        /* other keys: a newer module's, ignored */

#undef RD_KEY
    }

    if (x->name[0] == '\0') {
        snprintf(err, RD_ERR_LEN, "X-Mesh-Proxy: no name");
        return -1;
    }

    return 0;

bad_number:

    snprintf(err, RD_ERR_LEN, "X-Mesh-Proxy: %.*s must be a number%s",
             (int) klen, k, (klen == 4 && memcmp(k, "zone", 4) == 0)
                            ? "/number" : "");
    return -1;
}


int
rd_proxies_seen(rd_proxies_t *p, const char *header, const char *address,
    const char *services, int waiting, char *name, char *err)
{
    int          found;
    size_t       i, cap;
    int64_t      now;
    rd_proxy_t   in, *x;

    memset(&in, 0, sizeof(rd_proxy_t));

    if (rd_proxies_parse(header, &in, err) != 0) {
        return -1;
    }

    snprintf(name, RD_PROXY_NAME_MAX + 1, "%s", in.name);

    now = rd_wall_ms();

    pthread_mutex_lock(&p->lock);

    i = rd_proxies_find(p, in.name, &found);

    if (!found) {
        if (p->n == RD_PROXIES_MAX) {
            pthread_mutex_unlock(&p->lock);
            return 0;           /* remembered enough */
        }

        if (p->n == p->cap) {
            cap = p->cap ? 2 * p->cap : 16;
            p->v = mesh_xrealloc(p->v, cap * sizeof(rd_proxy_t *));
            p->cap = cap;
        }

        x = mesh_xcalloc(1, sizeof(rd_proxy_t));

        memmove(&p->v[i + 1], &p->v[i], (p->n - i) * sizeof(rd_proxy_t *));
        p->v[i] = x;
        p->n++;

        memcpy(x->name, in.name, sizeof(x->name));
        x->first_seen = now;
    }

    x = p->v[i];

    snprintf(x->address, sizeof(x->address), "%s", address);
    memcpy(x->nginx, in.nginx, sizeof(x->nginx));
    memcpy(x->module, in.module, sizeof(x->module));
    x->index = in.index;
    x->zone_used = in.zone_used;
    x->zone_size = in.zone_size;
    x->stale = in.stale;
    x->last_seen = now;

    if (waiting) {
        x->waiting++;
    }

    if (services == NULL) {
        free(x->services);
        x->services = NULL;

    } else if (x->services == NULL || strcmp(x->services, services) != 0) {
        free(x->services);
        x->services = mesh_xstrdup(services);
    }

    pthread_mutex_unlock(&p->lock);

    return 0;
}


void
rd_proxies_done(rd_proxies_t *p, const char *name)
{
    int     found;
    size_t  i;

    pthread_mutex_lock(&p->lock);

    i = rd_proxies_find(p, name, &found);

    if (found) {
        if (p->v[i]->waiting) {
            p->v[i]->waiting--;
        }

        p->v[i]->last_seen = rd_wall_ms();
    }

    pthread_mutex_unlock(&p->lock);
}


static void
rd_proxies_count(void *data, const rd_event_t *e)
{
    rd_proxies_lag_t  *l = data;

    if (e->service[0] == '\0' || l->sub == NULL
        || rd_subscription_has(l->sub, e->service))
    {
        l->lag++;
    }
}


static void
rd_proxies_time(mesh_buf_t *b, int64_t ms)
{
    char       ts[40];
    time_t     sec;
    struct tm  tm;

    sec = (time_t) (ms / 1000);
    gmtime_r(&sec, &tm);
    snprintf(ts, sizeof(ts), "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int) (ms % 1000));
    mesh_buf_adds(b, ts);
}


void
rd_proxies_render(rd_proxies_t *p, rd_registry_t *reg, mesh_buf_t *b)
{
    int                 known;
    char                err[RD_ERR_LEN];
    size_t              i, k, n;
    int64_t             now;
    uint64_t            index;
    const char         *state;
    rd_proxy_t         *x;
    rd_proxies_lag_t    l;
    rd_subscription_t   sub;

    now = rd_wall_ms();
    index = rd_registry_index(reg);

    mesh_buf_adds(b, "{\"index\":");
    mesh_buf_add_u64(b, index);
    mesh_buf_adds(b, ",\"proxies\":[");

    pthread_mutex_lock(&p->lock);

    /* those gone for long are forgotten */
    for (i = 0, n = 0; i < p->n; i++) {
        x = p->v[i];

        if (!x->waiting && now - x->last_seen > RD_PROXIES_FORGET) {
            rd_proxy_free(x);
            continue;
        }

        p->v[n++] = x;
    }

    p->n = n;

    for (i = 0; i < p->n; i++) {
        x = p->v[i];

        /* the changes after its index that concern what it routes */

        memset(&l, 0, sizeof(rd_proxies_lag_t));
        known = 0;

        if (x->services == NULL
            || rd_subscription_parse(&sub, x->services, err) == 0)
        {
            l.sub = x->services ? &sub : NULL;

            known = (x->index <= index && reg->events
                     && rd_events_since(reg->events, x->index, index,
                                        rd_proxies_count, &l)
                        == 0);

            if (x->services) {
                rd_subscription_free(&sub);
            }
        }

        if (!x->waiting && now - x->last_seen > p->gone_after) {
            state = "gone";

        } else if (x->stale || !known || l.lag) {
            state = "stale";

        } else {
            state = "synced";
        }

        mesh_buf_adds(b, i ? ",\n{\"name\":" : "\n{\"name\":");
        mesh_buf_add_json_str(b, x->name);
        mesh_buf_adds(b, ",\"address\":");
        mesh_buf_add_json_str(b, x->address);
        mesh_buf_adds(b, ",\"state\":\"");
        mesh_buf_adds(b, state);
        mesh_buf_adds(b, "\",\"index\":");
        mesh_buf_add_u64(b, x->index);
        mesh_buf_adds(b, ",\"lag\":");

        if (known) {
            mesh_buf_add_u64(b, l.lag);
        } else {
            mesh_buf_adds(b, "null");
        }

        mesh_buf_adds(b, x->stale ? ",\"stale\":true" : ",\"stale\":false");
        mesh_buf_adds(b, x->waiting ? ",\"waiting\":true"
                                  : ",\"waiting\":false");
        mesh_buf_adds(b, ",\"last_seen\":");
        rd_proxies_time(b, x->last_seen);
        mesh_buf_adds(b, ",\"first_seen\":");
        rd_proxies_time(b, x->first_seen);
        mesh_buf_adds(b, ",\"nginx\":");
        mesh_buf_add_json_str(b, x->nginx);
        mesh_buf_adds(b, ",\"module\":");
        mesh_buf_add_json_str(b, x->module);
        mesh_buf_adds(b, ",\"zone\":{\"used\":");
        mesh_buf_add_u64(b, x->zone_used);
        mesh_buf_adds(b, ",\"size\":");
        mesh_buf_add_u64(b, x->zone_size);
        mesh_buf_adds(b, "},\"services\":");

        if (x->services == NULL) {
            mesh_buf_adds(b, "null");

        } else {
            mesh_buf_addc(b, '[');

            for (k = 0; x->services[k]; ) {
                n = strcspn(x->services + k, ",");

                if (k) {
                    mesh_buf_addc(b, ',');
                }

                mesh_buf_addc(b, '"');
                mesh_buf_add(b, x->services + k, n);  /* checked names */
                mesh_buf_addc(b, '"');

                k += n;
                if (x->services[k] == ',') {
                    k++;
                }
            }

            mesh_buf_addc(b, ']');
        }

        mesh_buf_addc(b, '}');
    }

    pthread_mutex_unlock(&p->lock);

    mesh_buf_adds(b, "]}\n");
}
