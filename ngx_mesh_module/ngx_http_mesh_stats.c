
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * The counters in the zone: found or made by name (ngx_http_mesh_get_stat;
 * a stream upstream's names begin with "tcp:", apart from http's),
 * the worker slots that let the requests in flight of a worker that died
 * be taken back, and the sweep that frees the counters of instances,
 * subsets and services gone for NGX_HTTP_MESH_STAT_TTL.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


#define NGX_HTTP_MESH_STAT_TTL  (5 * 60 * 1000)


static void ngx_http_mesh_slot_free_cleaned(ngx_http_mesh_shctx_t *sh);


ngx_int_t  ngx_http_mesh_slot = -1;


void
ngx_http_mesh_stat_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t     **p;
    ngx_http_mesh_stat_t   *s, *st;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            s = (ngx_http_mesh_stat_t *) node;
            st = (ngx_http_mesh_stat_t *) temp;

            p = (ngx_memn2cmp(s->name, st->name, s->len, st->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* find or create the stats of service/id; takes the zone's lock */
ngx_http_mesh_stat_t *
ngx_http_mesh_get_stat(ngx_http_mesh_zone_t *zone, ngx_str_t *service,
    ngx_str_t *id)
{
    size_t                  len;
    u_char                  name[2 * 130 + 130], *p;
    uint32_t                hash;
    ngx_int_t               rc;
    ngx_rbtree_node_t      *node, *sentinel;
    ngx_http_mesh_stat_t   *st;
    ngx_http_mesh_shctx_t  *sh = zone->sh;

    if (service->len + (id ? id->len : 0) + 1 > sizeof(name)) {
        return NULL;
    }

    /* "service/id", or "service" for the service's own counters */
    p = ngx_cpymem(name, service->data, service->len);

    if (id) {
        *p++ = '/';
        p = ngx_cpymem(p, id->data, id->len);
    }

    len = p - name;

    hash = ngx_crc32_short(name, len);

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        st = (ngx_http_mesh_stat_t *) node;

        rc = ngx_memn2cmp(name, st->name, len, st->len);

        if (rc == 0) {
            st->absent = 0;
            ngx_shmtx_unlock(&zone->shpool->mutex);
            return st;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    st = ngx_slab_calloc_locked(zone->shpool,
                                offsetof(ngx_http_mesh_stat_t, name) + len);
    if (st == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NULL;
    }

    st->node.key = hash;
    st->since = ngx_current_msec ? ngx_current_msec : 1;   /* slow start */
    st->len = (u_short) len;
    ngx_memcpy(st->name, name, len);

    ngx_rbtree_insert(&sh->rbtree, &st->node);
    ngx_queue_insert_tail(&sh->stats, &st->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return st;
}


/*
 * Worker slots. A worker takes a free slot at start and counts its
 * requests in flight there as well as in "active"; when it is gone (a
 * crash, or an exit whatever its requests), its slot is cleaned by the
 * stats sweep (what it held is taken off "active") and freed after a full
 * pass, so that an instance is not held busy forever by a dead process.
 */

void
ngx_http_mesh_slot_take(ngx_http_mesh_zone_t *zone, ngx_log_t *log)
{
    ngx_uint_t              s;
    ngx_http_mesh_shctx_t  *sh = zone->sh;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (s = 0; s < NGX_HTTP_MESH_SLOTS; s++) {
        if (sh->slot_pid[s] == 0 && sh->slot_clean[s] == 0) {
            sh->slot_pid[s] = ngx_pid;
            ngx_http_mesh_slot = (ngx_int_t) s;
            break;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (ngx_http_mesh_slot < 0) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "mesh: no free worker slot of %d: the requests in "
                      "flight of this worker cannot be taken back if it "
                      "dies", NGX_HTTP_MESH_SLOTS);
    }
}


void
ngx_http_mesh_slot_leave(ngx_http_mesh_zone_t *zone)
{
    ngx_http_mesh_shctx_t  *sh = zone->sh;

    if (ngx_http_mesh_slot < 0) {
        return;
    }

    /* requests a fast shutdown cut short may still count: cleaned too */

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (sh->slot_pid[ngx_http_mesh_slot] == ngx_pid) {
        sh->slot_clean[ngx_http_mesh_slot] = sh->sweeps + 1;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_http_mesh_slot = -1;
}


/* the poll owner, on its lease timer: slots of processes that are gone */
void
ngx_http_mesh_slot_check(ngx_http_mesh_zone_t *zone, ngx_log_t *log)
{
    ngx_uint_t              s;
    ngx_pid_t               pid;
    ngx_http_mesh_shctx_t  *sh = zone->sh;

    for (s = 0; s < NGX_HTTP_MESH_SLOTS; s++) {
        pid = sh->slot_pid[s];

        if (pid == 0 || sh->slot_clean[s] || kill(pid, 0) == 0
            || ngx_errno != NGX_ESRCH)
        {
            continue;
        }

        ngx_shmtx_lock(&zone->shpool->mutex);

        if (sh->slot_pid[s] == pid && sh->slot_clean[s] == 0) {
            sh->slot_clean[s] = sh->sweeps + 1;

            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "mesh: worker %P is gone: its requests in flight "
                          "are taken back from the counters", pid);
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
}


/* slots whose cleaning saw every stat since it started are free; lock held */
static void
ngx_http_mesh_slot_free_cleaned(ngx_http_mesh_shctx_t *sh)
{
    ngx_uint_t  s;

    for (s = 0; s < NGX_HTTP_MESH_SLOTS; s++) {
        if (sh->slot_clean[s] && sh->sweeps >= sh->slot_clean[s] + 1) {
            sh->slot_pid[s] = 0;
            sh->slot_clean[s] = 0;
        }
    }
}


/* is what the stats count still in the zone? zone lock held */
static ngx_uint_t
ngx_http_mesh_stat_present(ngx_http_mesh_shctx_t *sh,
    ngx_http_mesh_stat_t *st, mesh_policies_t *policies)
{
    u_char                         *slash, *hash, *end, *name;
    ngx_uint_t                      i;
    ngx_http_mesh_shsvc_t          *rec;
    const mesh_destination_rule_t  *dr;

    /* a stream upstream's counters are "tcp:service..." */
    name = st->name;
    end = st->name + st->len;

    if (st->len > 4 && ngx_strncmp(name, "tcp:", 4) == 0) {
        name += 4;
    }

    slash = ngx_strlchr(name, end, '/');

    rec = ngx_http_mesh_shsvc_lookup(sh, name, (slash ? slash : end) - name);

    if (rec == NULL || !rec->wanted || rec->data == NULL) {
        return 0;
    }

    if (slash == NULL) {
        return 1;               /* the service's own */
    }

    /* "service/id", or a subset's round robin position "service/#subset" */
    hash = (slash + 1 < end && slash[1] == '#') ? slash + 1 : NULL;

    if (hash == NULL) {
        return mesh_service_packed_has(rec->data, rec->size,
                                       (char *) slash + 1, end - slash - 1);
    }

    if (policies == NULL) {
        return 1;
    }

    dr = mesh_policies_rule(policies, (char *) name, slash - name);

    for (i = 0; dr && i < dr->nsubsets; i++) {
        if (ngx_strlen(dr->subsets[i].name) == (size_t) (end - hash - 1)
            && ngx_strncmp(dr->subsets[i].name, hash + 1, end - hash - 1)
               == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * Look at the next n stats: those whose instance, subset or service left
 * the zone are marked, and freed once absent for the TTL with nothing
 * in flight (a request holds active > 0, and every worker rebuilds its
 * peers within moments of a change). The poll owner calls this on its
 * lease timer, so a pass over every stat is spread over time and the
 * lock is held for n lookups, whatever the number of stats.
 */
void
ngx_http_mesh_sweep_stats(ngx_http_mesh_zone_t *zone,
    mesh_policies_t *policies, ngx_uint_t n)
{
    uint32_t                held;
    ngx_uint_t              s, cleaning;
    ngx_msec_t              now;
    ngx_queue_t            *q;
    ngx_http_mesh_stat_t   *st;
    ngx_http_mesh_shctx_t  *sh = zone->sh;

    now = ngx_current_msec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    cleaning = 0;
    for (s = 0; s < NGX_HTTP_MESH_SLOTS; s++) {
        cleaning |= (sh->slot_clean[s] != 0);
    }

    while (n--) {
        q = sh->sweep;

        if (q == ngx_queue_sentinel(&sh->stats)) {
            q = ngx_queue_head(&sh->stats);
            sh->sweeps++;
            ngx_http_mesh_slot_free_cleaned(sh);

            if (q == ngx_queue_sentinel(&sh->stats)) {
                break;          /* no stats */
            }
        }

        sh->sweep = ngx_queue_next(q);

        st = ngx_queue_data(q, ngx_http_mesh_stat_t, queue);

        /* what a worker that is gone held is no longer in flight */
        for (s = 0; cleaning && s < NGX_HTTP_MESH_SLOTS; s++) {
            if (sh->slot_clean[s] && st->held[s]) {
                held = st->held[s];
                (void) __sync_fetch_and_sub(&st->held[s], held);
                (void) __sync_fetch_and_sub(&st->active, held);
            }
        }

        if (ngx_http_mesh_stat_present(sh, st, policies)) {
            st->absent = 0;
            continue;
        }

        if (st->absent == 0) {
            st->absent = now ? now : 1;
            continue;
        }

        if (st->active == 0 && now - st->absent > NGX_HTTP_MESH_STAT_TTL) {
            ngx_queue_remove(q);
            ngx_rbtree_delete(&sh->rbtree, &st->node);
            ngx_slab_free_locked(zone->shpool, st);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}
