/*
 * rd_registry: the in-memory registry: the instances' hash table and the
 * sorted view readers take, the policies, loading from the store, start
 * and stop, heartbeats and TTLs. An instance's codec is rd_instance.c's;
 * the ops, the writer thread and its commits rd_registry_writer.c's.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_alloc.h"
#include "rd_check.h"
#include "rd_metrics.h"
#include "rd_registry_int.h"


uint64_t
rd_registry_hash(const char *service, const char *id)
{
    uint64_t              h = 1469598103934665603ULL;
    const unsigned char  *p;

    for (p = (const unsigned char *) service; *p; p++) {
        h = (h ^ *p) * 1099511628211ULL;
    }

    h = (h ^ '/') * 1099511628211ULL;

    for (p = (const unsigned char *) id; *p; p++) {
        h = (h ^ *p) * 1099511628211ULL;
    }

    return h;
}


void
rd_registry_key(char *key, const char *service, const char *id)
{
    snprintf(key, RD_KEY_MAX, "instances/%s/%s", service, id);
}


/* policies: a sorted array of pointers (there are few) */

size_t
rd_policy_pos(rd_policy_t *const *v, size_t n, const char *name, int *found)
{
    int     c;
    size_t  lo = 0, hi = n, mid;

    *found = 0;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = strcmp(v[mid]->name, name);

        if (c == 0) {
            *found = 1;
            return mid;
        }

        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return lo;
}


/* insert, replace (p != NULL) or remove (p == NULL); returns the pointer
 * that was there, for the caller to free or not */
rd_policy_t *
rd_policy_array_set(rd_policy_t ***v, size_t *n, size_t *cap,
    const char *name, rd_policy_t *p)
{
    int            found;
    size_t         i;
    rd_policy_t   *old;

    i = rd_policy_pos(*v, *n, name, &found);
    old = found ? (*v)[i] : NULL;

    if (found && p) {
        (*v)[i] = p;
        return old;
    }

    if (found) {
        memmove(&(*v)[i], &(*v)[i + 1], (*n - i - 1) * sizeof(rd_policy_t *));
        (*n)--;
        return old;
    }

    if (p == NULL) {
        return NULL;
    }

    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = mesh_xrealloc(*v, *cap * sizeof(rd_policy_t *));
    }

    memmove(&(*v)[i + 1], &(*v)[i], (*n - i) * sizeof(rd_policy_t *));
    (*v)[i] = p;
    (*n)++;

    return NULL;
}


rd_policy_t *
rd_registry_find_policy(rd_registry_t *reg, const char *name)
{
    int     found;
    size_t  i;

    i = rd_policy_pos(reg->policies, reg->npolicies, name, &found);

    return found ? reg->policies[i] : NULL;
}


/* the snapshot form of the roots a change touches is made again with it
 * (delegation: rd_policy_delegate.c) */
void
rd_registry_set_policy(rd_registry_t *reg, const char *name, rd_policy_t *p)
{
    char          id[RD_NAME_MAX + 1];
    rd_policy_t  *old;

    snprintf(id, sizeof(id), "%s", name);     /* name may be old's */

    old = rd_policy_array_set(&reg->policies, &reg->npolicies,
                              &reg->policies_cap, id, p);

    if ((p && p->delegation) || (old && old->delegation)) {
        rd_policy_delegation_changed(reg->policies, reg->npolicies, id, old);
    }

    rd_policy_free(old);
}


/* the table */

static rd_instance_t **
rd_registry_slot(rd_registry_t *reg, const char *service, const char *id)
{
    rd_instance_t  **pp;

    pp = &reg->buckets[rd_registry_hash(service, id) & (reg->nbuckets - 1)];

    for ( /* void */ ; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0
            && strcmp((*pp)->service, service) == 0)
        {
            break;
        }
    }

    return pp;
}


rd_instance_t *
rd_registry_find(rd_registry_t *reg, const char *service, const char *id)
{
    return *rd_registry_slot(reg, service, id);
}


static void
rd_registry_grow(rd_registry_t *reg)
{
    size_t           i, n;
    rd_instance_t   *in, *next, **nb;

    n = reg->nbuckets * 2;

    nb = mesh_xcalloc(n, sizeof(rd_instance_t *));

    for (i = 0; i < reg->nbuckets; i++) {
        for (in = reg->buckets[i]; in; in = next) {
            size_t h = rd_registry_hash(in->service, in->id) & (n - 1);

            next = in->next;
            in->next = nb[h];
            nb[h] = in;
        }
    }

    free(reg->buckets);
    reg->buckets = nb;
    reg->nbuckets = n;
}


static void
rd_ptr_push(rd_instance_t ***arr, size_t *n, size_t *cap, rd_instance_t *in)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *arr = mesh_xrealloc(*arr, *cap * sizeof(rd_instance_t *));
    }

    (*arr)[(*n)++] = in;
}


static void
rd_instance_snap(rd_instance_t *in)
{
    mesh_buf_t  b;

    mesh_buf_init(&b, 192);
    rd_instance_to_json(&b, in, RD_JSON_SNAPSHOT);
    mesh_buf_cstr(&b);

    free(in->snap);
    in->snap = b.data;
    in->snap_len = b.len;
}


/*
 * Replace or insert (in != NULL) or remove (in == NULL); write lock held.
 * A replaced instance keeps its node, so sorted views stay valid; a
 * removed one is parked in reg->dead until the sorted view drops it.
 */
void
rd_registry_set(rd_registry_t *reg, const char *service, const char *id,
    rd_instance_t *in)
{
    rd_instance_t  **pp, *old, *next;

    pp = rd_registry_slot(reg, service, id);
    old = *pp;

    if (in) {
        rd_instance_snap(in);
        reg->nttl += (in->ttl != 0);
    }

    if (old) {
        reg->nttl -= (old->ttl != 0);
    }

    if (old && in) {
        next = old->next;
        free(old->zone);
        free(old->labels);
        free(old->check);
        free(old->snap);
        *old = *in;
        old->next = next;
        free(in);
        return;
    }

    if (old) {
        *pp = old->next;
        old->next = NULL;
        old->dead = 1;
        reg->count--;
        rd_ptr_push(&reg->dead, &reg->ndead, &reg->dead_cap, old);
        return;
    }

    if (in == NULL) {
        return;
    }

    in->next = NULL;
    *pp = in;
    reg->count++;
    rd_ptr_push(&reg->added, &reg->nadded, &reg->added_cap, in);

    if (reg->count > reg->nbuckets) {
        rd_registry_grow(reg);
    }
}


static int
rd_instance_cmp(const void *a, const void *b)
{
    const rd_instance_t  *x = *(rd_instance_t *const *) a;
    const rd_instance_t  *y = *(rd_instance_t *const *) b;
    int                   c;

    c = strcmp(x->service, y->service);
    return c ? c : strcmp(x->id, y->id);
}


/* merge added and drop dead instances; sort_lock (or write lock) held */
void
rd_registry_refresh_sorted(rd_registry_t *reg)
{
    size_t           i, j, k, total;
    rd_instance_t  **merged, *a, *b;

    if (reg->nadded == 0 && reg->ndead == 0) {
        return;
    }

    qsort(reg->added, reg->nadded, sizeof(rd_instance_t *),
          rd_instance_cmp);

    total = reg->nsorted + reg->nadded;
    merged = mesh_xmalloc((total + 1) * sizeof(rd_instance_t *));

    i = 0;
    j = 0;
    k = 0;

    while (i < reg->nsorted || j < reg->nadded) {
        a = i < reg->nsorted ? reg->sorted[i] : NULL;
        b = j < reg->nadded ? reg->added[j] : NULL;

        if (a && a->dead) {
            i++;
            continue;
        }

        if (b && b->dead) {
            j++;
            continue;
        }

        if (b == NULL || (a && rd_instance_cmp(&a, &b) < 0)) {
            merged[k++] = a;
            i++;

        } else {
            merged[k++] = b;
            j++;
        }
    }

    free(reg->sorted);
    reg->sorted = merged;
    reg->nsorted = k;
    reg->nadded = 0;

    for (i = 0; i < reg->ndead; i++) {
        rd_instance_free(reg->dead[i]);
    }

    reg->ndead = 0;
}


rd_instance_t **
rd_registry_sorted(rd_registry_t *reg, size_t *n)
{
    rd_instance_t  **all;

    pthread_mutex_lock(&reg->sort_lock);

    rd_registry_refresh_sorted(reg);

    all = mesh_xmalloc((reg->nsorted + 1) * sizeof(rd_instance_t *));

    if (reg->nsorted) {
        memcpy(all, reg->sorted, reg->nsorted * sizeof(rd_instance_t *));
    }

    *n = reg->nsorted;

    pthread_mutex_unlock(&reg->sort_lock);

    return all;
}


int
rd_registry_key_split(const char *key, char *svc, char *id)
{
    size_t       n;
    const char  *p, *slash;

    if (strncmp(key, "instances/", 10) != 0) {
        return -1;
    }

    p = key + 10;
    slash = strchr(p, '/');

    if (slash == NULL || (size_t) (slash - p) > RD_NAME_MAX
        || !mesh_name_valid(p, (size_t) (slash - p))
        || !mesh_name_valid(slash + 1, strlen(slash + 1)))
    {
        return -1;
    }

    n = (size_t) (slash - p);
    memcpy(svc, p, n);
    svc[n] = '\0';
    snprintf(id, RD_NAME_MAX + 1, "%s", slash + 1);

    return 0;
}


int
rd_registry_load_one(void *data, const char *key, const char *value,
    size_t len, char *err)
{
    char             svc[RD_NAME_MAX + 1], id[RD_NAME_MAX + 1];
    char             msg[RD_ERR_LEN];
    json_t          *obj;
    int64_t          now;
    const char      *field;
    json_error_t     jerr;
    rd_registry_t   *reg = data;
    rd_instance_t   *in;

    (void) err;             /* a bad value is skipped, never fatal */

    if (strncmp(key, "policies/", 9) == 0) {
        rd_policy_t  *pol;

        if (!mesh_name_valid(key + 9, strlen(key + 9))) {
            rd_warn("store: skipping bad key \"%s\"", key);
            return 0;
        }

        pol = rd_policy_from_stored(key + 9, value, len, msg);
        if (pol == NULL) {
            rd_error("store: cannot load policy \"%s\" (kept in the "
                     "store, not served): %s", key + 9, msg);
            return 0;
        }

        rd_registry_set_policy(reg, pol->name, pol);
        return 0;
    }

    if (strncmp(key, "instances/", 10) != 0) {
        return 0;           /* later kinds */
    }

    if (rd_registry_key_split(key, svc, id) != 0) {
        rd_warn("store: skipping bad key \"%s\"", key);
        return 0;
    }

    obj = json_loadb(value, len, 0, &jerr);
    in = rd_instance_create();

    if (obj == NULL || rd_instance_from_json(obj, 1, in, msg, &field) != 0) {
        rd_warn("store: skipping bad value of \"%s\": %s", key,
                obj ? msg : jerr.text);
        json_decref(obj);
        rd_instance_free(in);
        return 0;
    }

    json_decref(obj);

    snprintf(in->service, sizeof(in->service), "%s", svc);
    snprintf(in->id, sizeof(in->id), "%s", id);

    /* TTLs restart: every instance gets one full ttl to check in */
    now = rd_now_ms();
    in->last_seen = now;
    in->critical_since = now;

    /* which of TTL and check made it critical is not stored: a check
     * must pass again, and a TTL needs a heartbeat */
    if (in->health == RD_HEALTH_CRITICAL) {
        in->check_critical = (in->check != NULL);
        in->ttl_critical = (in->check == NULL || in->ttl != 0);
    }

    in->put_index = in->modify_index;

    rd_registry_set(reg, in->service, in->id, in);
    return 0;
}


rd_registry_t *
rd_registry_create(rd_store_t *store, char *err)
{
    rd_registry_t  *reg;

    reg = mesh_xcalloc(1, sizeof(rd_registry_t));
    reg->nbuckets = 1024;
    reg->buckets = mesh_xcalloc(reg->nbuckets, sizeof(rd_instance_t *));

    pthread_rwlock_init(&reg->lock, NULL);
    pthread_mutex_init(&reg->sort_lock, NULL);
    pthread_mutex_init(&reg->seen_lock, NULL);

    /* a store of its own: this process is the only one, it leads; on a
     * shared one it waits to be elected (rd_registry_follow.c) */
    reg->leader = (store->backend->follow == NULL);
    pthread_mutex_init(&reg->qlock, NULL);
    pthread_cond_init(&reg->qcond, NULL);

    reg->store = store;

    if (rd_store_load(store, rd_registry_load_one, reg, &reg->index, err)
        != 0)
    {
        goto fail;
    }

    reg->store_ok = 1;
    return reg;

fail:

    rd_registry_free(reg);
    return NULL;
}


void
rd_registry_free(rd_registry_t *reg)
{
    size_t          i;
    rd_instance_t  *in, *next;

    if (reg == NULL) {
        return;
    }

    if (reg->running) {
        rd_registry_stop(reg);
    }

    while (reg->rhead) {
        rd_op_t  *op = reg->rhead;

        reg->rhead = op->next;
        rd_op_free(op);
    }

    if (reg->buckets) {
        for (i = 0; i < reg->nbuckets; i++) {
            for (in = reg->buckets[i]; in; in = next) {
                next = in->next;
                rd_instance_free(in);
            }
        }

        free(reg->buckets);

        for (i = 0; i < reg->ndead; i++) {
            rd_instance_free(reg->dead[i]);
        }

        for (i = 0; i < reg->npolicies; i++) {
            rd_policy_free(reg->policies[i]);
        }

        free(reg->policies);
        free(reg->dead);
        free(reg->added);
        free(reg->sorted);
        pthread_mutex_destroy(&reg->sort_lock);
        pthread_mutex_destroy(&reg->seen_lock);
        mesh_buf_free(&reg->seen);
        pthread_rwlock_destroy(&reg->lock);
        pthread_mutex_destroy(&reg->qlock);
        pthread_cond_destroy(&reg->qcond);
    }

    free(reg);
}


int
rd_registry_start(rd_registry_t *reg, char *err)
{
    if (pthread_create(&reg->writer, NULL, rd_registry_writer, reg) != 0) {
        snprintf(err, RD_ERR_LEN, "cannot start the writer thread");
        return -1;
    }

    reg->running = 1;

    /* a store other replicas write: their changes come in from now */
    if (rd_registry_follow(reg, err) != 0) {
        rd_registry_stop(reg);
        return -1;
    }

    return 0;
}


void
rd_registry_stop(rd_registry_t *reg)
{
    if (reg == NULL || !reg->running) {
        return;
    }

    rd_registry_unfollow(reg);

    pthread_mutex_lock(&reg->qlock);
    reg->stopping = 1;
    pthread_cond_signal(&reg->qcond);
    pthread_mutex_unlock(&reg->qlock);

    pthread_join(reg->writer, NULL);
    reg->running = 0;
}


uint64_t
rd_registry_index(rd_registry_t *reg)
{
    return __atomic_load_n(&reg->index, __ATOMIC_ACQUIRE);
}


uint64_t
rd_registry_id(rd_registry_t *reg)
{
    return reg->store ? reg->store->id : 0;
}


int
rd_registry_heartbeat(rd_registry_t *reg, const char *service,
    const char *id, uint64_t *index)
{
    int             rc;
    rd_instance_t  *in;

    pthread_rwlock_rdlock(&reg->lock);

    in = rd_registry_find(reg, service, id);

    if (in == NULL) {
        rc = -1;

    } else {
        __atomic_store_n(&in->last_seen, rd_now_ms(), __ATOMIC_RELAXED);
        rc = (in->health == RD_HEALTH_PASSING) ? 0 : 1;
    }

    *index = reg->index;

    pthread_rwlock_unlock(&reg->lock);

    /* the replica that expires TTLs may be another */
    if (rc == 0) {
        rd_registry_seen_here(reg, service, id);
    }

    return rc;
}


void
rd_registry_scan_ttl(rd_registry_t *reg)
{
    size_t          i;
    int64_t         now, seen;
    rd_op_t        *op, *head, **tail;
    rd_instance_t  *in;

    /* on a shared store, the leader alone expires TTLs */
    if (!rd_registry_leader(reg)) {
        return;
    }

    now = rd_now_ms();
    head = NULL;
    tail = &head;

    pthread_rwlock_rdlock(&reg->lock);

    for (i = 0; reg->nttl && i < reg->nbuckets; i++) {
        for (in = reg->buckets[i]; in; in = in->next) {

            if (in->ttl == 0
                || __atomic_load_n(&in->pending, __ATOMIC_RELAXED))
            {
                continue;
            }

            seen = __atomic_load_n(&in->last_seen, __ATOMIC_RELAXED);

            if (!in->ttl_critical && now - seen > in->ttl) {
                op = rd_op_create(RD_OP_HEALTH, in->service, in->id);
                op->health = RD_HEALTH_CRITICAL;
                op->seen = seen;
                op->reason = "ttl";

            } else if (in->health == RD_HEALTH_CRITICAL
                       && in->deregister_after
                       && now - in->critical_since > in->deregister_after)
            {
                op = rd_op_create(RD_OP_DEL, in->service, in->id);
                op->reason = "deregister_after";

            } else {
                continue;
            }

            op->internal = 1;
            __atomic_store_n(&in->pending, 1, __ATOMIC_RELAXED);
            *tail = op;
            tail = &op->next;
        }
    }

    pthread_rwlock_unlock(&reg->lock);

    while (head) {
        op = head;
        head = op->next;
        rd_debug("ttl: %s/%s %s", op->service, op->id,
                 op->type == RD_OP_DEL ? "deregister after critical"
                                       : "turns critical");
        rd_registry_submit(reg, op);
    }
}


void
rd_registry_count_health(rd_registry_t *reg, size_t *passing,
    size_t *critical)
{
    size_t          i;
    rd_instance_t  *in;

    *passing = 0;
    *critical = 0;

    pthread_rwlock_rdlock(&reg->lock);

    for (i = 0; i < reg->nbuckets; i++) {
        for (in = reg->buckets[i]; in; in = in->next) {
            if (in->health == RD_HEALTH_PASSING) {
                (*passing)++;
            } else {
                (*critical)++;
            }
        }
    }

    pthread_rwlock_unlock(&reg->lock);
}
