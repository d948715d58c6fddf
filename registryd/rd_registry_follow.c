/*
 * rd_registry_follow: a registry over a store that other replicas write
 * too (etcd). The store's follower thread hands over each of their
 * commits; it is queued as a REMOTE op, and the writer thread applies it,
 * in order, before it decides anything new: the table, the policies, the
 * events its writer noted, and the index, exactly as that writer applied
 * them, so index N means the same state on every replica. A commit of
 * this replica's own comes back too, and is skipped (its index is not
 * above the registry's). After a gap the store can no longer fill, a
 * reload replaces the whole table.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_alloc.h"
#include "rd_registry_int.h"


/* store thread: queue the change for the writer */
static void
rd_registry_remote(void *data, const rd_store_change_t *ch)
{
    size_t          i;
    rd_op_t        *op;
    rd_registry_t  *reg = data;

    op = rd_op_create(RD_OP_REMOTE, "", "");
    op->reload = ch->reload;
    op->index = ch->index;
    op->rev = ch->rev;
    op->note = ch->note ? mesh_xstrdup(ch->note) : NULL;
    op->nrops = ch->nops;
    op->rops = mesh_xcalloc(ch->nops ? ch->nops : 1, sizeof(rd_store_op_t));

    for (i = 0; i < ch->nops; i++) {
        op->rops[i].del = ch->ops[i].del;
        op->rops[i].key = mesh_xstrdup(ch->ops[i].key);

        if (!ch->ops[i].del) {
            op->rops[i].value = mesh_xstrndup(ch->ops[i].value,
                                              ch->ops[i].value_len);
            op->rops[i].value_len = ch->ops[i].value_len;
        }
    }

    pthread_mutex_lock(&reg->qlock);

    if (reg->rtail) {
        reg->rtail->next = op;

    } else {
        reg->rhead = op;
    }

    reg->rtail = op;

    if (ch->rev > reg->remote_rev) {
        reg->remote_rev = ch->rev;
    }

    pthread_cond_broadcast(&reg->qcond);
    pthread_mutex_unlock(&reg->qlock);
}


/* store thread: the follower is connected, or not and why */
static void
rd_registry_follow_state(void *data, int connected, const char *why)
{
    rd_registry_t  *reg = data;

    pthread_mutex_lock(&reg->qlock);

    reg->follow_ok = connected;
    snprintf(reg->follow_err, sizeof(reg->follow_err), "%s",
             why ? why : "");

    pthread_mutex_unlock(&reg->qlock);
}


/* store thread: this process leads now, or no longer */
static void
rd_registry_lead(void *data, int leader)
{
    size_t          i;
    int64_t         now;
    rd_instance_t  *in;
    rd_registry_t  *reg = data;

    if (leader && !rd_registry_leader(reg)) {
        /* every instance gets one full TTL from the new leader: what it
         * knew of heartbeats through others may be a tick old */
        now = rd_now_ms();
        pthread_rwlock_rdlock(&reg->lock);

        for (i = 0; i < reg->nbuckets; i++) {
            for (in = reg->buckets[i]; in; in = in->next) {
                __atomic_store_n(&in->last_seen, now, __ATOMIC_RELAXED);
            }
        }

        pthread_rwlock_unlock(&reg->lock);
    }

    __atomic_store_n(&reg->leader, leader, __ATOMIC_RELEASE);
}


/* store thread: heartbeats through another process ("svc/id\n" each) */
static void
rd_registry_seen(void *data, const char *list, size_t len)
{
    char            svc[RD_NAME_MAX + 1], id[RD_NAME_MAX + 1];
    int64_t         now;
    const char     *p, *end, *nl, *slash;
    rd_instance_t  *in;
    rd_registry_t  *reg = data;

    now = rd_now_ms();
    end = list + len;

    pthread_rwlock_rdlock(&reg->lock);

    for (p = list; p < end; p = nl + 1) {
        nl = memchr(p, '\n', (size_t) (end - p));
        if (nl == NULL) {
            break;
        }

        slash = memchr(p, '/', (size_t) (nl - p));
        if (slash == NULL || slash - p > RD_NAME_MAX
            || nl - slash - 1 > RD_NAME_MAX)
        {
            continue;
        }

        memcpy(svc, p, (size_t) (slash - p));
        svc[slash - p] = '\0';
        memcpy(id, slash + 1, (size_t) (nl - slash - 1));
        id[nl - slash - 1] = '\0';

        in = rd_registry_find(reg, svc, id);
        if (in) {
            __atomic_store_n(&in->last_seen, now, __ATOMIC_RELAXED);
        }
    }

    pthread_rwlock_unlock(&reg->lock);
}


/* store thread: the heartbeats here since the last take, for the others */
static void
rd_registry_take_seen(void *data, mesh_buf_t *b)
{
    rd_registry_t  *reg = data;

    pthread_mutex_lock(&reg->seen_lock);

    if (reg->seen.len) {
        mesh_buf_add(b, reg->seen.data, reg->seen.len);
        reg->seen.len = 0;
    }

    pthread_mutex_unlock(&reg->seen_lock);
}


/* API thread: a heartbeat the other replicas must hear of */
void
rd_registry_seen_here(rd_registry_t *reg, const char *service,
    const char *id)
{
    if (!reg->following) {
        return;
    }

    pthread_mutex_lock(&reg->seen_lock);

    /* a bound: a tick's heartbeats, however many clients */
    if (reg->seen.len < RD_SEEN_MAX) {
        mesh_buf_adds(&reg->seen, service);
        mesh_buf_addc(&reg->seen, '/');
        mesh_buf_adds(&reg->seen, id);
        mesh_buf_addc(&reg->seen, '\n');
    }

    pthread_mutex_unlock(&reg->seen_lock);
}


int
rd_registry_leader(rd_registry_t *reg)
{
    return __atomic_load_n(&reg->leader, __ATOMIC_ACQUIRE);
}


int
rd_registry_follow(rd_registry_t *reg, char *err)
{
    rd_store_hooks_t  h;

    if (reg->store->backend->follow == NULL) {
        /* a store of its own: this process is the only one */
        __atomic_store_n(&reg->leader, 1, __ATOMIC_RELEASE);
        return 0;
    }

    h.change = rd_registry_remote;
    h.state = rd_registry_follow_state;
    h.leader = rd_registry_lead;
    h.seen = rd_registry_seen;
    h.take = rd_registry_take_seen;
    h.data = reg;

    reg->following = 1;

    return rd_store_follow(reg->store, &h, err);
}


void
rd_registry_unfollow(rd_registry_t *reg)
{
    if (reg->following) {
        rd_store_unfollow(reg->store);
        reg->following = 0;
    }
}


int
rd_registry_stale(rd_registry_t *reg, char *why, size_t size)
{
    int  stale;

    if (!reg->following) {
        return 0;
    }

    pthread_mutex_lock(&reg->qlock);

    stale = !reg->follow_ok;

    if (stale && why) {
        snprintf(why, size, "%s", reg->follow_err[0]
                                  ? reg->follow_err
                                  : "store etcd: not watching yet");
    }

    pthread_mutex_unlock(&reg->qlock);

    return stale;
}


static int
rd_registry_key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char * const *) a, *(const char * const *) b);
}


/* a reload: what the table holds and the store does not, goes */
static void
rd_registry_drop_missing(rd_registry_t *reg, rd_op_t *op)
{
    char             key[RD_KEY_MAX + 16];
    const char      *k, **keys;
    size_t           i, n;
    rd_instance_t   *in, *next;

    keys = mesh_xmalloc((op->nrops + 1) * sizeof(char *));

    for (i = 0; i < op->nrops; i++) {
        keys[i] = op->rops[i].key;
    }

    qsort(keys, op->nrops, sizeof(char *), rd_registry_key_cmp);

    for (i = 0; i < reg->nbuckets; i++) {
        for (in = reg->buckets[i]; in; in = next) {
            next = in->next;
            snprintf(key, sizeof(key), "instances/%s/%s", in->service,
                     in->id);
            k = key;

            if (bsearch(&k, keys, op->nrops, sizeof(char *),
                        rd_registry_key_cmp) == NULL)
            {
                rd_registry_set(reg, in->service, in->id, NULL);
            }
        }
    }

    for (n = reg->npolicies; n > 0; n--) {
        snprintf(key, sizeof(key), "policies/%s",
                 reg->policies[n - 1]->name);
        k = key;

        if (bsearch(&k, keys, op->nrops, sizeof(char *),
                    rd_registry_key_cmp) == NULL)
        {
            rd_registry_set_policy(reg, reg->policies[n - 1]->name, NULL);
        }
    }

    free(keys);
}


/* the events the writer noted with its commit */
static void
rd_registry_note_events(rd_registry_t *reg, rd_op_t *op)
{
    size_t         i;
    json_t        *arr, *o;
    rd_event_t     e;
    json_error_t   jerr;

    if (reg->events == NULL || op->note == NULL) {
        return;
    }

    arr = json_loads(op->note, 0, &jerr);

    json_array_foreach(arr, i, o) {
        if (rd_event_from_note(o, &e) == 0
            && e.index > rd_events_last(reg->events))
        {
            rd_events_append(reg->events, &e);
        }
    }

    json_decref(arr);
}


/* writer thread: apply another replica's commit (or a reload) */
void
rd_registry_apply_remote(rd_registry_t *reg, rd_op_t *op)
{
    char     svc[RD_NAME_MAX + 1], id[RD_NAME_MAX + 1], err[RD_ERR_LEN];
    size_t   i;

    if (!op->reload && op->index <= reg->index) {
        return;             /* ours, applied when it was committed */
    }

    pthread_rwlock_wrlock(&reg->lock);

    if (op->reload) {
        rd_registry_drop_missing(reg, op);
    }

    for (i = 0; i < op->nrops; i++) {
        if (!op->rops[i].del) {
            rd_registry_load_one(reg, op->rops[i].key, op->rops[i].value,
                                 op->rops[i].value_len, err);
            continue;
        }

        if (strncmp(op->rops[i].key, "policies/", 9) == 0) {
            rd_registry_set_policy(reg, op->rops[i].key + 9, NULL);

        } else if (rd_registry_key_split(op->rops[i].key, svc, id) == 0) {
            rd_registry_set(reg, svc, id, NULL);
        }
    }

    if (op->reload) {
        if (reg->events) {
            rd_events_restart(reg->events, op->index);
        }

    } else {
        rd_registry_note_events(reg, op);
    }

    __atomic_store_n(&reg->index, op->index, __ATOMIC_RELEASE);

    pthread_rwlock_unlock(&reg->lock);

    rd_store_applied(reg->store, op->index, op->rev);

    rd_debug("store: applied %s at index %llu (revision %lld, %zu keys)",
             op->reload ? "a reload" : "another replica's commit",
             (unsigned long long) op->index, (long long) op->rev,
             op->nrops);

    if (reg->on_change) {
        reg->on_change(reg->on_change_data, op->index);
    }
}


/* writer thread: apply what is queued; the ops are freed */
void
rd_registry_apply_remotes(rd_registry_t *reg)
{
    rd_op_t  *op, *next;

    pthread_mutex_lock(&reg->qlock);
    op = reg->rhead;
    reg->rhead = NULL;
    reg->rtail = NULL;
    pthread_mutex_unlock(&reg->qlock);

    for ( ; op; op = next) {
        next = op->next;
        rd_registry_apply_remote(reg, op);
        rd_op_free(op);
    }
}


/*
 * writer thread, after a commit refused as behind: wait (at most
 * timeout ms) until the follower has queued the store's changes up to
 * rev, and apply them. 0: caught up.
 */
int
rd_registry_catch_up(rd_registry_t *reg, int64_t rev, int64_t timeout)
{
    int              rc = 0;
    struct timespec  until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout / 1000;
    until.tv_nsec += (timeout % 1000) * 1000000;

    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }

    pthread_mutex_lock(&reg->qlock);

    while (reg->remote_rev < rev && rc == 0 && !reg->stopping) {
        rc = pthread_cond_timedwait(&reg->qcond, &reg->qlock, &until);
    }

    rc = (reg->remote_rev >= rev) ? 0 : -1;

    pthread_mutex_unlock(&reg->qlock);

    rd_registry_apply_remotes(reg);

    return rc;
}
