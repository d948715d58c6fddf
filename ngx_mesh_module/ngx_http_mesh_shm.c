
/*
 * Copyright (C) ngx_mesh authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


#define NGX_HTTP_MESH_STAT_TTL  (5 * 60 * 1000)


ngx_int_t  ngx_http_mesh_slot = -1;


/* one service's new block, prepared outside the lock */
typedef struct {
    ngx_http_mesh_shsvc_t         *rec;
    u_char                        *packed;      /* ngx_alloc(), or NULL:
                                                   no instances */
    size_t                         size;
    ngx_uint_t                     ninstances;
    u_char                        *slab;
} ngx_http_mesh_change_t;


static ngx_int_t ngx_http_mesh_load_cache(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_zone_t *zone, ngx_log_t *log);
static void ngx_http_mesh_stat_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_mesh_shsvc_t *ngx_http_mesh_shsvc_lookup(
    ngx_http_mesh_shctx_t *sh, u_char *name, size_t len);
static ngx_int_t ngx_http_mesh_want_locked(ngx_http_mesh_main_conf_t *mmcf,
    ngx_uint_t exclusive);
static ngx_int_t ngx_http_mesh_prepare(ngx_http_mesh_change_t *c,
    mesh_instance_t *in, size_t n, ngx_log_t *log);
static void ngx_http_mesh_slot_free_cleaned(ngx_http_mesh_shctx_t *sh);


ngx_int_t
ngx_http_mesh_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_mesh_zone_t  *ozone = data;

    ngx_int_t                   rc;
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
        /* reload: the old zone and everything in it carries on; the new
         * configuration says which services are polled for */
        *zone = *ozone;
        shm_zone->data = zone;

        ngx_shmtx_lock(&zone->shpool->mutex);
        rc = ngx_http_mesh_want_locked(mmcf, 1);
        ngx_shmtx_unlock(&zone->shpool->mutex);

        return rc;
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
    sh->sweep = &sh->stats;

    ngx_rbtree_init(&sh->svc_tree, &sh->svc_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&sh->services);

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

    ngx_shmtx_lock(&zone->shpool->mutex);
    rc = ngx_http_mesh_want_locked(mmcf, 1);
    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (rc != NGX_OK) {
        return rc;
    }

    if (mmcf->cache_file.len) {
        (void) ngx_http_mesh_load_cache(mmcf, zone, shm_zone->shm.log);
    }

    return NGX_OK;
}


/*
 * The services of this configuration's mesh upstreams are polled for;
 * with exclusive, no others. Zone lock held.
 */
static ngx_int_t
ngx_http_mesh_want_locked(ngx_http_mesh_main_conf_t *mmcf,
    ngx_uint_t exclusive)
{
    ngx_uint_t                  i, changed;
    ngx_queue_t                *q;
    ngx_http_mesh_shsvc_t      *rec;
    ngx_http_mesh_shctx_t      *sh;
    ngx_http_mesh_srv_conf_t  **mscfp;

    sh = mmcf->zone.sh;
    changed = 0;

    if (exclusive) {
        for (q = ngx_queue_head(&sh->services);
             q != ngx_queue_sentinel(&sh->services);
             q = ngx_queue_next(q))
        {
            rec = ngx_queue_data(q, ngx_http_mesh_shsvc_t, queue);

            if (rec->wanted) {
                rec->wanted = 0;
                changed = 1;
            }
        }
    }

    mscfp = mmcf->upstreams.elts;

    for (i = 0; i < mmcf->upstreams.nelts; i++) {
        rec = ngx_http_mesh_shsvc_lookup(sh, mscfp[i]->service.data,
                                         mscfp[i]->service.len);

        if (rec == NULL) {
            rec = ngx_slab_calloc_locked(mmcf->zone.shpool,
                                         offsetof(ngx_http_mesh_shsvc_t, name)
                                         + mscfp[i]->service.len);
            if (rec == NULL) {
                ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                              "mesh: no room for service \"%V\" in the "
                              "shared zone, raise mesh_zone",
                              &mscfp[i]->service);
                return NGX_ERROR;
            }

            rec->sn.node.key = ngx_crc32_short(mscfp[i]->service.data,
                                               mscfp[i]->service.len);
            rec->len = (u_short) mscfp[i]->service.len;
            ngx_memcpy(rec->name, mscfp[i]->service.data, rec->len);
            rec->sn.str.len = rec->len;
            rec->sn.str.data = rec->name;

            ngx_rbtree_insert(&sh->svc_tree, &rec->sn.node);
            ngx_queue_insert_tail(&sh->services, &rec->queue);
        }

        if (!rec->wanted) {
            rec->wanted = 1;
            changed = 1;
        }

        mscfp[i]->shsvc = rec;
    }

    if (changed) {
        ngx_atomic_fetch_add(&sh->subscription, 1);
    }

    return NGX_OK;
}


/* the poll owner keeps its own configuration's services polled for */
ngx_int_t
ngx_http_mesh_want(ngx_http_mesh_main_conf_t *mmcf)
{
    ngx_int_t                   rc;
    ngx_uint_t                  i;
    ngx_http_mesh_srv_conf_t  **mscfp;

    mscfp = mmcf->upstreams.elts;

    for (i = 0; i < mmcf->upstreams.nelts; i++) {
        if (mscfp[i]->shsvc == NULL || !mscfp[i]->shsvc->wanted) {
            break;
        }
    }

    if (i == mmcf->upstreams.nelts) {
        return NGX_OK;          /* the usual case: nothing to take */
    }

    ngx_shmtx_lock(&mmcf->zone.shpool->mutex);
    rc = ngx_http_mesh_want_locked(mmcf, 0);
    ngx_shmtx_unlock(&mmcf->zone.shpool->mutex);

    return rc;
}


static ngx_http_mesh_shsvc_t *
ngx_http_mesh_shsvc_lookup(ngx_http_mesh_shctx_t *sh, u_char *name,
    size_t len)
{
    ngx_str_t  key;

    key.len = len;
    key.data = name;

    /* sn is the first member */
    return (ngx_http_mesh_shsvc_t *) ngx_str_rbtree_lookup(&sh->svc_tree,
                                         &key, ngx_crc32_short(name, len));
}


/*
 * "services=a,b,..." of the wanted services, for the poll; *subscription
 * is the set's version it was made from
 */
u_char *
ngx_http_mesh_subscription(ngx_http_mesh_zone_t *zone, size_t *len,
    ngx_atomic_uint_t *subscription, ngx_log_t *log)
{
    u_char                 *buf, *p;
    size_t                  size;
    ngx_queue_t            *q;
    ngx_http_mesh_shsvc_t  *rec;
    ngx_http_mesh_shctx_t  *sh = zone->sh;

    ngx_shmtx_lock(&zone->shpool->mutex);

    size = sizeof("services=");

    for (q = ngx_queue_head(&sh->services);
         q != ngx_queue_sentinel(&sh->services);
         q = ngx_queue_next(q))
    {
        rec = ngx_queue_data(q, ngx_http_mesh_shsvc_t, queue);
        size += rec->len + 1;
    }

    buf = ngx_alloc(size, log);
    if (buf == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NULL;
    }

    p = ngx_cpymem(buf, "services=", sizeof("services=") - 1);

    for (q = ngx_queue_head(&sh->services);
         q != ngx_queue_sentinel(&sh->services);
         q = ngx_queue_next(q))
    {
        rec = ngx_queue_data(q, ngx_http_mesh_shsvc_t, queue);

        if (!rec->wanted) {
            continue;
        }

        if (p[-1] != '=') {
            *p++ = ',';
        }

        p = ngx_cpymem(p, rec->name, rec->len);
    }

    *subscription = sh->subscription;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    *len = p - buf;

    return buf;
}


/* pack n instances into c->packed (ngx_alloc()) */
static ngx_int_t
ngx_http_mesh_prepare(ngx_http_mesh_change_t *c, mesh_instance_t *in,
    size_t n, ngx_log_t *log)
{
    c->ninstances = n;

    if (n == 0) {
        c->packed = NULL;
        c->size = 0;
        return NGX_OK;
    }

    c->size = mesh_service_packed_size(in, n);

    c->packed = ngx_alloc(c->size, log);
    if (c->packed == NULL) {
        return NGX_ERROR;
    }

    if (mesh_service_pack(in, n, c->packed, c->size) != c->size) {
        ngx_free(c->packed);
        c->packed = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Apply an answer of the registry to the zone: a complete one replaces
 * every wanted service, a delta the services it names. Blocks are built
 * outside the lock; under it, work follows the change: the services that
 * changed are allocated, swapped and freed. NGX_DECLINED with err when
 * the answer cannot be applied (it goes backwards, the zone is full), and
 * then nothing changed.
 */
ngx_int_t
ngx_http_mesh_apply(ngx_http_mesh_zone_t *zone, mesh_snapshot_t *snap,
    u_char *packed, size_t packed_len, ngx_uint_t from_cache,
    ngx_atomic_uint_t subscription, char *err, size_t errlen)
{
    u_char                  *old, *pol, *pk;
    size_t                   i, n, oldsize, msize;
    void                    *mem;
    ngx_int_t                rc;
    ngx_log_t               *log;
    ngx_uint_t               nchanges, k, changed;
    ngx_queue_t             *q;
    mesh_service_t           cur, *svc;
    mesh_instance_t         *merged;
    ngx_http_mesh_shsvc_t   *rec;
    ngx_http_mesh_shctx_t   *sh = zone->sh;
    ngx_http_mesh_change_t  *ch, *c;
    int                      members;

    log = ngx_cycle->log;
    err[0] = '\0';

    ch = NULL;
    nchanges = 0;
    rc = NGX_ERROR;

    /* at most one change per wanted service, plus the ones emptied */

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (sh->registry && snap->registry == sh->registry
        && snap->index < sh->index)
    {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_snprintf((u_char *) err, errlen,
                     "the registry's index went back from %uL to %uL, "
                     "keeping index %uL%Z", sh->index, snap->index,
                     sh->index);
        return NGX_DECLINED;
    }

    n = 0;
    for (q = ngx_queue_head(&sh->services);
         q != ngx_queue_sentinel(&sh->services);
         q = ngx_queue_next(q))
    {
        n++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ch = ngx_alloc((n + 1) * sizeof(ngx_http_mesh_change_t), log);
    if (ch == NULL) {
        goto nomem;
    }

    /* the services of the answer */

    for (i = 0; i < snap->nservices; i++) {
        svc = &snap->services[i];

        ngx_shmtx_lock(&zone->shpool->mutex);

        rec = ngx_http_mesh_shsvc_lookup(sh, (u_char *) svc->name,
                                         ngx_strlen(svc->name));

        if (rec == NULL || !rec->wanted || nchanges == n) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            continue;           /* not routed here */
        }

        /* a delta is merged into what the zone holds: copy it out */

        old = NULL;
        oldsize = 0;

        if (snap->delta && rec->data) {
            oldsize = rec->size;
            old = ngx_alloc(oldsize, log);
            if (old == NULL) {
                ngx_shmtx_unlock(&zone->shpool->mutex);
                goto nomem;
            }

            ngx_memcpy(old, rec->data, oldsize);
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);

        c = &ch[nchanges];
        ngx_memzero(c, sizeof(ngx_http_mesh_change_t));
        c->rec = rec;

        if (!snap->delta) {
            if (ngx_http_mesh_prepare(c, svc->instances, svc->ninstances,
                                      log)
                != NGX_OK)
            {
                goto nomem;
            }

            nchanges++;
            continue;
        }

        mem = NULL;
        ngx_memzero(&cur, sizeof(mesh_service_t));

        if (old) {
            msize = mesh_service_unpack_size(old, oldsize);
            mem = msize ? ngx_alloc(msize, log) : NULL;

            if (mem == NULL
                || mesh_service_unpack(old, oldsize, svc->name, &cur, mem,
                                       msize)
                   != 0)
            {
                ngx_free(old);
                if (mem) {
                    ngx_free(mem);
                }
                goto nomem;
            }
        }

        if (mesh_service_merge(old ? &cur : NULL, svc, &merged, &msize,
                               &members)
            != 0)
        {
            merged = NULL;
        }

        if (merged) {
            rc = ngx_http_mesh_prepare(c, merged, msize, log);
            free(merged);
        }

        if (old) {
            ngx_free(old);
            ngx_free(mem);
        }

        if (merged == NULL || rc != NGX_OK) {
            goto nomem;
        }

        rc = NGX_ERROR;
        nchanges++;
    }

    /* a complete answer: the wanted services it does not name are gone */

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (!snap->delta) {
        for (q = ngx_queue_head(&sh->services);
             q != ngx_queue_sentinel(&sh->services) && nchanges < n;
             q = ngx_queue_next(q))
        {
            rec = ngx_queue_data(q, ngx_http_mesh_shsvc_t, queue);

            if (!rec->wanted || rec->data == NULL
                || mesh_snapshot_service(snap, (char *) rec->name, rec->len))
            {
                continue;
            }

            ngx_memzero(&ch[nchanges], sizeof(ngx_http_mesh_change_t));
            ch[nchanges++].rec = rec;
        }
    }

    /* under the lock from here: allocate, then swap */

    for (k = 0; k < nchanges; k++) {
        c = &ch[k];

        /* an unchanged service (a complete answer repeats most) */
        if (c->size == c->rec->size
            && (c->size == 0
                || ngx_memcmp(c->packed, c->rec->data, c->size) == 0))
        {
            c->rec = NULL;
            continue;
        }

        if (c->size == 0) {
            continue;
        }

        c->slab = ngx_slab_alloc_locked(zone->shpool, c->size);
        if (c->slab == NULL) {
            ngx_snprintf((u_char *) err, errlen,
                         "service \"%*s\" (%uz bytes, %ui instances) does not "
                         "fit in the shared zone, keeping index %uL; raise "
                         "mesh_zone%Z", (size_t) c->rec->len, c->rec->name,
                         c->size, c->ninstances, sh->index);
            goto full;
        }

        ngx_memcpy(c->slab, c->packed, c->size);
    }

    pol = NULL;
    pk = NULL;

    if (snap->has_policies && packed
        && !(sh->policies && sh->policies_len == snap->policies_len
             && ngx_memcmp(sh->policies, snap->policies, snap->policies_len)
                == 0))
    {
        pol = ngx_slab_alloc_locked(zone->shpool, snap->policies_len + 1);
        pk = pol ? ngx_slab_alloc_locked(zone->shpool, packed_len) : NULL;

        if (pk == NULL) {
            if (pol) {
                ngx_slab_free_locked(zone->shpool, pol);
            }

            ngx_snprintf((u_char *) err, errlen,
                         "policies (%uz bytes) do not fit in the shared "
                         "zone, keeping index %uL; raise mesh_zone%Z",
                         snap->policies_len, sh->index);
            goto full;
        }

        ngx_memcpy(pol, snap->policies, snap->policies_len + 1);
        ngx_memcpy(pk, packed, packed_len);
    }

    changed = 0;

    for (k = 0; k < nchanges; k++) {
        c = &ch[k];

        if (c->rec == NULL) {
            continue;
        }

        if (c->rec->data) {
            ngx_slab_free_locked(zone->shpool, c->rec->data);
        }

        c->rec->data = c->slab;
        c->rec->size = c->size;
        c->rec->ninstances = c->ninstances;
        c->rec->index = snap->index;
        c->rec->generation++;
        changed++;
    }

    if (pol) {
        if (sh->policies) {
            ngx_slab_free_locked(zone->shpool, sh->policies);
            ngx_slab_free_locked(zone->shpool, sh->policies_packed);
        }

        sh->policies = pol;
        sh->policies_len = snap->policies_len;
        sh->policies_packed = pk;
        sh->policies_packed_len = packed_len;
        sh->policies_gen++;
        changed++;
    }

    if (changed || sh->index != snap->index || sh->from_cache) {
        sh->generation++;
    }

    sh->index = snap->index;
    sh->registry = snap->registry;
    sh->from_cache = from_cache;

    if (!snap->delta) {
        sh->synced_subscription = subscription;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    rc = changed ? NGX_OK : NGX_DONE;
    goto done;

full:

    for (k = 0; k < nchanges; k++) {
        if (ch[k].slab) {
            ngx_slab_free_locked(zone->shpool, ch[k].slab);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    rc = NGX_DECLINED;
    goto done;

nomem:

    ngx_snprintf((u_char *) err, errlen, "out of memory%Z");
    rc = NGX_DECLINED;

done:

    for (k = 0; ch && k < nchanges; k++) {
        if (ch[k].packed) {
            ngx_free(ch[k].packed);
        }
    }

    if (ch) {
        ngx_free(ch);
    }

    return rc;
}


/*
 * The zone as a snapshot document, for the cache file:
 * {"index":N,"registry":"ID","services":[...],"policies":[...]}.
 * The blocks are copied under the lock, the text is written after it.
 */
u_char *
ngx_http_mesh_zone_json(ngx_http_mesh_zone_t *zone, size_t *len,
    ngx_log_t *log)
{
    u_char                 *out, *p, *last, **blocks, *pol;
    size_t                 *sizes, n, i, k, size, msize, polsize;
    ngx_uint_t              pass;
    void                   *mem;
    uint64_t                index, registry;
    ngx_queue_t            *q;
    mesh_service_t          svc;
    ngx_http_mesh_shsvc_t  *rec;
    ngx_http_mesh_shctx_t  *sh = zone->sh;

    ngx_shmtx_lock(&zone->shpool->mutex);

    n = 0;
    for (q = ngx_queue_head(&sh->services);
         q != ngx_queue_sentinel(&sh->services);
         q = ngx_queue_next(q))
    {
        n++;
    }

    blocks = ngx_calloc((n + 1) * (sizeof(u_char *) + sizeof(size_t)), log);
    if (blocks == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NULL;
    }

    sizes = (size_t *) (blocks + n + 1);
    k = 0;

    for (q = ngx_queue_head(&sh->services);
         q != ngx_queue_sentinel(&sh->services);
         q = ngx_queue_next(q))
    {
        rec = ngx_queue_data(q, ngx_http_mesh_shsvc_t, queue);

        if (!rec->wanted || rec->data == NULL) {
            continue;
        }

        /* room for the name after the block */
        blocks[k] = ngx_alloc(rec->size + rec->len + 1, log);
        if (blocks[k] == NULL) {
            break;
        }

        ngx_memcpy(blocks[k], rec->data, rec->size);
        ngx_memcpy(blocks[k] + rec->size, rec->name, rec->len);
        blocks[k][rec->size + rec->len] = '\0';
        sizes[k++] = rec->size;
    }

    polsize = sh->policies ? sh->policies_len : 2;
    pol = ngx_alloc(polsize, log);
    if (pol) {
        ngx_memcpy(pol, sh->policies ? sh->policies : (u_char *) "[]",
                   polsize);
    }

    index = sh->index;
    registry = sh->registry;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    out = NULL;

    if (q != ngx_queue_sentinel(&sh->services) || pol == NULL) {
        goto done;
    }

    /* the text: sized by a first pass (out NULL), written by a second */

    size = 128 + polsize;
    p = NULL;
    last = NULL;

    for (pass = 0; pass < 2; pass++) {

        if (pass == 1) {
            out = ngx_alloc(size, log);
            if (out == NULL) {
                goto done;
            }

            last = out + size;
            p = ngx_slprintf(out, last, "{\"index\":%uL,\"registry\":"
                             "\"%016xL\",\"services\":[", index, registry);
        }

        for (i = 0; i < k; i++) {
            msize = mesh_service_unpack_size(blocks[i], sizes[i]);
            mem = msize ? ngx_alloc(msize, log) : NULL;

            if (mem == NULL
                || mesh_service_unpack(blocks[i], sizes[i],
                                       (char *) blocks[i] + sizes[i], &svc,
                                       mem, msize)
                   != 0)
            {
                if (mem) {
                    ngx_free(mem);
                }

                if (out) {
                    ngx_free(out);
                    out = NULL;
                }

                goto done;
            }

            if (pass == 0) {
                size += mesh_service_json(&svc, NULL, 0) + 2;

            } else {
                *p++ = i ? ',' : '\n';

                if (i) {
                    *p++ = '\n';
                }

                p += mesh_service_json(&svc, (char *) p, last - p);
            }

            ngx_free(mem);
        }
    }

    p = ngx_slprintf(p, last, "],\n\"policies\":");
    p = ngx_cpymem(p, pol, ngx_min(polsize, (size_t) (last - p)));
    p = ngx_slprintf(p, last, "}\n");

    *len = p - out;

done:

    for (i = 0; i < k; i++) {
        ngx_free(blocks[i]);
    }

    ngx_free(blocks);

    if (pol) {
        ngx_free(pol);
    }

    return out;
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
    char                  err[MESH_ERR_LEN];
    u_char               *buf, *pol, *packed;
    size_t                plen;
    ssize_t               n;
    ngx_fd_t              fd;
    ngx_int_t             rc;
    ngx_file_info_t       fi;
    mesh_snapshot_t      *snap;
    ngx_http_mesh_gen_t  *g;

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

    /* its policies must compile, as those of a poll */
    g = NULL;
    pol = ngx_alloc(snap->policies_len + 1, log);

    if (pol) {
        ngx_memcpy(pol, snap->policies, snap->policies_len + 1);
        g = ngx_http_mesh_gen_create(pol, snap->policies_len, err,
                                     sizeof(err), log);
    } else {
        ngx_cpystrn((u_char *) err, (u_char *) "out of memory", sizeof(err));
    }

    if (g == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "mesh: cache file \"%V\" refused: %s",
                      &mmcf->cache_file, err);
        mesh_snapshot_free(snap);
        goto done;
    }

    snap->delta = 0;
    snap->has_policies = 1;

    packed = ngx_http_mesh_gen_pack(g, &plen, log);
    ngx_http_mesh_gen_release(g);

    if (packed == NULL) {
        mesh_snapshot_free(snap);
        goto done;
    }

    rc = ngx_http_mesh_apply(zone, snap, packed, plen, 1, 0, err,
                             sizeof(err));
    ngx_free(packed);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "mesh: cache file \"%V\" refused: %s",
                      &mmcf->cache_file, err);

    } else {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "mesh: started from cache file \"%V\", index %uL",
                      &mmcf->cache_file, snap->index);
        rc = NGX_OK;
    }

    mesh_snapshot_free(snap);

done:

    if (buf) {
        ngx_free(buf);
    }

    ngx_close_file(fd);

    return rc;
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
    u_char                         *slash, *hash, *end;
    ngx_uint_t                      i;
    ngx_http_mesh_shsvc_t          *rec;
    const mesh_destination_rule_t  *dr;

    end = st->name + st->len;
    slash = ngx_strlchr(st->name, end, '/');

    rec = ngx_http_mesh_shsvc_lookup(sh, st->name,
                                     (slash ? slash : end) - st->name);

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

    dr = mesh_policies_rule(policies, (char *) st->name, slash - st->name);

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
