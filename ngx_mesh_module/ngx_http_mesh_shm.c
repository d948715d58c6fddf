
/*
 * Copyright (C) ngx_mesh authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


#define NGX_HTTP_MESH_STAT_TTL  (5 * 60 * 1000)


static ngx_int_t ngx_http_mesh_load_cache(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_zone_t *zone, ngx_log_t *log);
static void ngx_http_mesh_stat_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);


ngx_int_t
ngx_http_mesh_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_mesh_zone_t  *ozone = data;

    ngx_http_mesh_main_conf_t  *mmcf;
    ngx_http_mesh_zone_t       *zone;
    ngx_slab_pool_t            *shpool;
    ngx_http_mesh_shctx_t      *sh;

    /*
     * shm_zone->data is the new main conf until here, then its zone: what
     * the next reload receives as "data"
     */
    mmcf = shm_zone->data;
    zone = &mmcf->zone;

    if (ozone) {
        /* reload: the old zone and everything in it carries on */
        *zone = *ozone;
        shm_zone->data = zone;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->shpool = shpool;
        zone->sh = shpool->data;
        shm_zone->data = zone;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_mesh_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel, ngx_http_mesh_stat_insert);
    ngx_queue_init(&sh->stats);

    sh->reg_state = NGX_HTTP_MESH_REG_NONE;

    zone->shpool = shpool;
    zone->sh = sh;

    shpool->log_ctx = ngx_slab_alloc(shpool, sizeof(" in mesh zone \"\"")
                                             + shm_zone->shm.name.len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in mesh zone \"%V\"%Z",
                &shm_zone->shm.name);

    shpool->log_nomem = 0;

    shm_zone->data = zone;

    if (mmcf->cache_file.len) {
        (void) ngx_http_mesh_load_cache(mmcf, zone, shm_zone->shm.log);
    }

    return NGX_OK;
}


/*
 * Read the last good snapshot at start. This runs in the master while it
 * reads the configuration, where a blocking read is what nginx does for
 * every file it loads.
 */
static ngx_int_t
ngx_http_mesh_load_cache(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_zone_t *zone, ngx_log_t *log)
{
    char              err[MESH_ERR_LEN];
    u_char           *buf;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_int_t         rc;
    ngx_file_info_t   fi;
    mesh_snapshot_t  *snap;

    fd = ngx_open_file(mmcf->cache_file.data, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_NOTICE, log, ngx_errno,
                      "mesh: no cache file \"%V\" to start from",
                      &mmcf->cache_file);
        return NGX_DECLINED;
    }

    rc = NGX_ERROR;
    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_fd_info_n " \"%V\" failed", &mmcf->cache_file);
        goto done;
    }

    buf = ngx_alloc((size_t) ngx_file_size(&fi) + 1, log);
    if (buf == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, buf, (size_t) ngx_file_size(&fi));
    if (n != (ssize_t) ngx_file_size(&fi)) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "mesh: cannot read cache file \"%V\"",
                      &mmcf->cache_file);
        goto done;
    }

    snap = mesh_snapshot_parse((char *) buf, (size_t) n, err, sizeof(err));
    if (snap == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "mesh: cache file \"%V\" refused: %s",
                      &mmcf->cache_file, err);
        goto done;
    }

    rc = ngx_http_mesh_store_snapshot(zone, buf, (size_t) n, snap->index,
                                      log);

    if (rc == NGX_OK) {
        zone->sh->from_cache = 1;
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "mesh: started from cache file \"%V\", index %uL",
                      &mmcf->cache_file, snap->index);
    }

    mesh_snapshot_free(snap);

done:

    if (buf) {
        ngx_free(buf);
    }

    ngx_close_file(fd);

    return rc;
}


ngx_int_t
ngx_http_mesh_store_snapshot(ngx_http_mesh_zone_t *zone, u_char *json,
    size_t len, uint64_t index, ngx_log_t *log)
{
    u_char                 *p;
    ngx_http_mesh_shctx_t  *sh = zone->sh;

    ngx_shmtx_lock(&zone->shpool->mutex);

    p = ngx_slab_alloc_locked(zone->shpool, len);
    if (p == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "mesh: snapshot of %uz bytes (index %uL) does not fit "
                      "in the shared zone, keeping index %uL; "
                      "raise mesh_zone", len, index, sh->index);
        return NGX_ERROR;
    }

    ngx_memcpy(p, json, len);

    if (sh->snapshot) {
        ngx_slab_free_locked(zone->shpool, sh->snapshot);
    }

    sh->snapshot = p;
    sh->snapshot_len = len;
    sh->index = index;
    sh->from_cache = 0;

    ngx_atomic_fetch_add(&sh->generation, 1);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


void
ngx_http_mesh_set_reg_state(ngx_http_mesh_zone_t *zone, ngx_uint_t state,
    const char *error)
{
    ngx_http_mesh_shctx_t  *sh = zone->sh;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (state == NGX_HTTP_MESH_REG_SYNCED) {
        sh->last_sync = (int64_t) ngx_time() * 1000
                        + (int64_t) (ngx_timeofday())->msec;
        sh->last_error[0] = '\0';

    } else if (error) {
        ngx_cpystrn(sh->last_error, (u_char *) error,
                    sizeof(sh->last_error));
    }

    if (state == NGX_HTTP_MESH_REG_STALE
        && sh->reg_state == NGX_HTTP_MESH_REG_NONE)
    {
        /* never synced: stays "none", with the error */
        state = NGX_HTTP_MESH_REG_NONE;
    }

    sh->reg_state = state;

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


static void
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
    st->len = (u_short) len;
    ngx_memcpy(st->name, name, len);

    ngx_rbtree_insert(&sh->rbtree, &st->node);
    ngx_queue_insert_tail(&sh->stats, &st->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return st;
}


/*
 * Free the stats of instances that left the registry long ago: nothing in
 * flight can still point to them (a request holds active > 0, and every
 * worker rebuilds its peers within moments of a change).
 */
void
ngx_http_mesh_expire_stats(ngx_http_mesh_zone_t *zone, mesh_snapshot_t *snap)
{
    u_char                 *slash, *end;
    ngx_msec_t              now;
    ngx_queue_t            *q, *next;
    ngx_http_mesh_stat_t   *st;
    const mesh_service_t   *svc;
    ngx_uint_t              found, i;

    now = ngx_current_msec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&zone->sh->stats);
         q != ngx_queue_sentinel(&zone->sh->stats);
         q = next)
    {
        next = ngx_queue_next(q);
        st = ngx_queue_data(q, ngx_http_mesh_stat_t, queue);

        slash = ngx_strlchr(st->name, st->name + st->len, '/');
        found = 0;

        if (slash == NULL) {
            found = (mesh_snapshot_service(snap, (char *) st->name, st->len)
                     != NULL);

        } else {
            svc = mesh_snapshot_service(snap, (char *) st->name,
                                        slash - st->name);

            /* "service/id" or a subset's "service/id#subset" */
            end = ngx_strlchr(slash + 1, st->name + st->len, '#');
            if (end == NULL) {
                end = st->name + st->len;
            }

            for (i = 0; svc && i < svc->ninstances; i++) {
                if (ngx_strlen(svc->instances[i].id)
                    == (size_t) (end - slash - 1)
                    && ngx_strncmp(svc->instances[i].id, slash + 1,
                                   end - slash - 1) == 0)
                {
                    found = 1;
                    break;
                }
            }
        }

        if (found) {
            st->absent = 0;
            continue;
        }

        if (st->absent == 0) {
            st->absent = now ? now : 1;
            continue;
        }

        if (st->active == 0 && now - st->absent > NGX_HTTP_MESH_STAT_TTL) {
            ngx_queue_remove(q);
            ngx_rbtree_delete(&zone->sh->rbtree, &st->node);
            ngx_slab_free_locked(zone->shpool, st);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}
