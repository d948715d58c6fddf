
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * The zone: the services the running configuration routes (each packed,
 * with its own generation), the policies, the subscription they make,
 * applying a registry answer (only the services it changes), the zone as
 * the cache file keeps it and reading that file at start, and the
 * registry state the status shows.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


/* one service's new block, prepared outside the lock */
typedef struct {
    ngx_http_mesh_shsvc_t         *rec;
    u_char                        *packed;      /* ngx_alloc(), or NULL:
                                                   no instances */
    size_t                         size;
    ngx_uint_t                     ninstances;
    u_char                        *slab;
} ngx_http_mesh_change_t;


static ngx_int_t ngx_http_mesh_want_locked(ngx_http_mesh_main_conf_t *mmcf,
    ngx_uint_t exclusive);
static ngx_int_t ngx_http_mesh_prepare(ngx_http_mesh_change_t *c,
    mesh_instance_t *in, size_t n, ngx_log_t *log);


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
        (void) ngx_http_mesh_cache_load(mmcf, zone, shm_zone->shm.log);
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


ngx_http_mesh_shsvc_t *
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
