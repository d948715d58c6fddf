
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * Views: what a worker routes on. ngx_http_mesh_sync() brings the
 * worker's views up to the zone, copying out only the services that
 * changed; a view holds, per upstream, its targets (the whole service and
 * each subset a DestinationRule names: instances, counters in the zone,
 * the set a pick takes from) and the routes of its VirtualService. A view
 * whose hash rings are still being built waits in mscf->next and is put in
 * place by the ring event once they are.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


/* a service's block copied out of the zone for a view to be built */
typedef struct {
    ngx_uint_t                     take;
    u_char                        *packed;
    size_t                         size;
    ngx_atomic_uint_t              generation;
} ngx_http_mesh_copy_t;


static ngx_http_mesh_view_t *ngx_http_mesh_build_view(
    ngx_http_mesh_main_conf_t *mmcf, ngx_http_mesh_srv_conf_t *mscf,
    ngx_http_mesh_copy_t *copy, ngx_http_mesh_gen_t *gen, uint64_t index,
    ngx_log_t *log);
static void ngx_http_mesh_free_packed(void *data);
static void ngx_http_mesh_install_view(ngx_http_mesh_srv_conf_t *mscf,
    ngx_http_mesh_view_t *view);
static ngx_uint_t ngx_http_mesh_view_ready(ngx_http_mesh_view_t *view);
static void ngx_http_mesh_ring_handler(ngx_event_t *ev);
static void ngx_http_mesh_view_dest(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_view_t *view,
    ngx_http_mesh_dest_t *dst, const char *host, const char *subset,
    int port, ngx_log_t *log);
static ngx_http_mesh_dest_t *ngx_http_mesh_view_dests(
    ngx_http_mesh_main_conf_t *mmcf, ngx_http_mesh_srv_conf_t *mscf,
    ngx_http_mesh_view_t *view, const mesh_destination_t *routes, size_t n,
    ngx_pool_t *pool, ngx_log_t *log);
static ngx_int_t ngx_http_mesh_view_tcp(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_view_t *view,
    ngx_pool_t *pool, ngx_log_t *log);
static ngx_int_t ngx_http_mesh_build_target(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_view_t *view,
    ngx_http_mesh_target_t *t, const mesh_service_t *svc,
    const mesh_subset_t *subset, const mesh_traffic_policy_t *tp,
    ngx_log_t *log);


ngx_http_mesh_worker_t         ngx_http_mesh_worker;

static ngx_event_t             ngx_http_mesh_ring_event;


/*
 * Bring this worker's views up to the zone. Only the services that
 * changed are copied out (under the lock: work follows the change) and
 * their views rebuilt; a change of the policies rebuilds every view.
 * Requests in flight keep the view they started with (reference
 * counted). Workers never parse a service: the poll owner wrote it in
 * mesh_service's packed form.
 */
ngx_int_t
ngx_http_mesh_sync(ngx_http_mesh_main_conf_t *mmcf, ngx_log_t *log)
{
    char                        err[MESH_ERR_LEN];
    u_char                     *pjson;
    size_t                      plen;
    uint64_t                    index;
    ngx_uint_t                  i, n, fresh, polchange;
    ngx_atomic_uint_t           gen, pgen;
    ngx_http_mesh_gen_t        *g;
    ngx_http_mesh_copy_t       *copies, *c;
    ngx_http_mesh_zone_t       *zone;
    ngx_http_mesh_view_t       *view;
    ngx_http_mesh_shsvc_t      *rec;
    ngx_http_mesh_shctx_t      *sh;
    ngx_http_mesh_srv_conf_t  **mscfp;

    zone = &mmcf->zone;
    sh = zone->sh;

    if (sh == NULL) {
        return NGX_DECLINED;
    }

    gen = sh->generation;
    fresh = (ngx_http_mesh_worker.cycle != ngx_cycle);

    if (!fresh && gen == ngx_http_mesh_worker.generation) {
        return NGX_OK;
    }

    if (fresh) {
        ngx_http_mesh_worker.cycle = (ngx_cycle_t *) ngx_cycle;
        ngx_http_mesh_worker.generation = 0;
        ngx_http_mesh_worker.policies_gen = 0;
        ngx_http_mesh_worker.rand = ((uint32_t) ngx_random() << 16)
                                    ^ (uint32_t) ngx_random()
                                    ^ (uint32_t) ngx_pid;

        if (ngx_http_mesh_worker.rand == 0) {
            ngx_http_mesh_worker.rand = 1;
        }
    }

    if (gen == 0) {
        return NGX_OK;          /* nothing yet */
    }

    n = mmcf->upstreams.nelts;
    mscfp = mmcf->upstreams.elts;

    copies = ngx_calloc((n + 1) * sizeof(ngx_http_mesh_copy_t), log);
    if (copies == NULL) {
        return NGX_ERROR;
    }

    pjson = NULL;
    plen = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    gen = sh->generation;
    pgen = sh->policies_gen;
    index = sh->index;

    polchange = (fresh || pgen != ngx_http_mesh_worker.policies_gen);

    if (polchange && sh->policies_packed) {
        plen = sh->policies_packed_len;
        pjson = ngx_alloc(plen, log);

        if (pjson) {
            ngx_memcpy(pjson, sh->policies_packed, plen);
        }

    } else if (polchange) {
        polchange = 0;          /* none yet */
        ngx_http_mesh_worker.policies_gen = pgen;
    }

    for (i = 0; i < n; i++) {
        rec = mscfp[i]->shsvc;
        c = &copies[i];

        if (rec == NULL
            || !(polchange || fresh || mscfp[i]->view == NULL
                 || rec->generation != mscfp[i]->shsvc_gen))
        {
            continue;
        }

        c->take = 1;
        c->generation = rec->generation;

        if (rec->data == NULL) {
            continue;
        }

        c->packed = ngx_alloc(rec->size, log);
        if (c->packed == NULL) {
            c->take = 0;
            continue;
        }

        ngx_memcpy(c->packed, rec->data, rec->size);
        c->size = rec->size;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (polchange && pjson == NULL) {
        polchange = 0;
    }

    ngx_http_mesh_worker.generation = gen;
    ngx_http_mesh_worker.index = index;

    g = ngx_http_mesh_worker.gen;

    if (polchange) {
        ngx_http_mesh_worker.policies_gen = pgen;

        /* no JSON here: the poll owner parsed them, packed */
        g = ngx_http_mesh_gen_unpack(pjson, plen, err, sizeof(err), log);

        if (g == NULL) {
            /* the poll owner checked them: this is out of memory */
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mesh: policies of index %uL refused: %s", index,
                          err);
            g = ngx_http_mesh_worker.gen;

        } else {
            if (ngx_http_mesh_worker.gen) {
                ngx_http_mesh_gen_release(ngx_http_mesh_worker.gen);
            }

            ngx_http_mesh_worker.gen = g;
        }

        pjson = NULL;           /* the generation's, or freed */
    }

    for (i = 0; i < n; i++) {
        c = &copies[i];

        if (!c->take) {
            continue;
        }

        view = ngx_http_mesh_build_view(mmcf, mscfp[i], c, g, index, log);

        if (c->packed) {
            ngx_free(c->packed);  /* not taken by a view */
        }

        if (view == NULL) {
            continue;           /* keep the old view */
        }

        mscfp[i]->shsvc_gen = c->generation;

        if (ngx_http_mesh_view_ready(view) || mscfp[i]->view == NULL) {
            /* at start a ring being built answers by modulo meanwhile */
            ngx_http_mesh_install_view(mscfp[i], view);
            continue;
        }

        /* the old view routes until the new one's rings are built */

        if (mscfp[i]->next) {
            ngx_http_mesh_release_view(mscfp[i]->next);
        }

        mscfp[i]->next = view;
    }

    ngx_free(copies);

    if (!ngx_http_mesh_ring_event.posted) {
        for (i = 0; i < n; i++) {
            if (mscfp[i]->next
                || (mscfp[i]->view
                    && !ngx_http_mesh_view_ready(mscfp[i]->view)))
            {
                ngx_http_mesh_ring_event.handler = ngx_http_mesh_ring_handler;
                ngx_http_mesh_ring_event.data = mmcf;
                ngx_http_mesh_ring_event.log = ngx_cycle->log;
                ngx_post_event(&ngx_http_mesh_ring_event,
                               &ngx_posted_next_events);
                break;
            }
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "mesh: worker synced to index %uL", index);

    return NGX_OK;
}


uint64_t
ngx_http_mesh_worker_index(void)
{
    return ngx_http_mesh_worker.index;
}


mesh_policies_t *
ngx_http_mesh_worker_policies(void)
{
    return ngx_http_mesh_worker.gen ? ngx_http_mesh_worker.gen->policies
                                    : NULL;
}


static void
ngx_http_mesh_free_packed(void *data)
{
    ngx_free(data);
}


static void
ngx_http_mesh_install_view(ngx_http_mesh_srv_conf_t *mscf,
    ngx_http_mesh_view_t *view)
{
    if (mscf->next && mscf->next != view) {
        ngx_http_mesh_release_view(mscf->next);
    }

    mscf->next = NULL;

    if (mscf->view) {
        ngx_http_mesh_release_view(mscf->view);
    }

    mscf->view = view;
}


static ngx_uint_t
ngx_http_mesh_view_ready(ngx_http_mesh_view_t *view)
{
    ngx_uint_t  i;

    for (i = 0; i < view->ntargets; i++) {
        if (view->targets[i].ring && view->targets[i].ring->builder) {
            return 0;
        }
    }

    return 1;
}


static ngx_uint_t
ngx_http_mesh_lb(int lb, ngx_uint_t fallback, ngx_uint_t *hash)
{
    switch (lb) {

    case MESH_LB_ROUND_ROBIN:
        return NGX_HTTP_MESH_RR;

    case MESH_LB_RANDOM:
        return NGX_HTTP_MESH_RANDOM;

    case MESH_LB_LEAST_REQUEST:
        return NGX_HTTP_MESH_LEAST_REQUEST;

    case MESH_LB_HASH_HEADER:
        *hash = NGX_HTTP_MESH_HASH_HEADER;
        return NGX_HTTP_MESH_CHASH;

    case MESH_LB_HASH_QUERY:
        *hash = NGX_HTTP_MESH_HASH_QUERY;
        return NGX_HTTP_MESH_CHASH;

    case MESH_LB_HASH_COOKIE:
        *hash = NGX_HTTP_MESH_HASH_COOKIE;
        return NGX_HTTP_MESH_CHASH;

    case MESH_LB_HASH_SOURCE_IP:
        *hash = NGX_HTTP_MESH_HASH_SOURCE_IP;
        return NGX_HTTP_MESH_CHASH;

    default: /* MESH_LB_NONE */
        *hash = NGX_HTTP_MESH_HASH_KEY;
        return fallback;
    }
}


static ngx_http_mesh_view_t *
ngx_http_mesh_build_view(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_copy_t *copy,
    ngx_http_mesh_gen_t *gen, uint64_t index, ngx_log_t *log)
{
    void                            *mem;
    size_t                           msize;
    ngx_uint_t                       i, j;
    ngx_pool_t                      *pool;
    mesh_policies_t                 *policies;
    ngx_pool_cleanup_t              *cln;
    ngx_http_mesh_view_t            *view;
    ngx_http_mesh_route_t           *rt;
    const mesh_service_t            *svc;
    const mesh_destination_rule_t   *dr;
    const mesh_traffic_policy_t     *tp;

    policies = gen ? gen->policies : NULL;

    if (copy->packed == NULL) {
        if (!mscf->missing) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "mesh: service \"%V\" of upstream \"%V\" is not in "
                          "the registry (index %uL)", &mscf->service,
                          &mscf->name, index);
            mscf->missing = 1;
        }

    } else {
        mscf->missing = 0;
    }

    dr = mesh_policies_rule(policies, (char *) mscf->service.data,
                            mscf->service.len);

    /* a rule with a workloadSelector is for the nginx whose mesh_labels
     * hold its labels */
    if (dr && dr->nselector
        && (mmcf->labels == NULL
            || !mesh_labels_hold(mmcf->labels->elts, mmcf->labels->nelts,
                                 dr->selector, dr->nselector)))
    {
        dr = NULL;
    }

    pool = ngx_create_pool(2048 + mesh_service_packed_count(copy->packed,
                                                            copy->size)
                                  * 256,
                           ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    view = ngx_pcalloc(pool, sizeof(ngx_http_mesh_view_t));
    if (view == NULL) {
        goto failed;
    }

    view->pool = pool;
    view->refs = 1;
    view->index = index;

    if (gen) {
        view->gen = gen;
        gen->refs++;
    }

    svc = NULL;

    if (copy->packed) {
        cln = ngx_pool_cleanup_add(pool, 0);
        if (cln == NULL) {
            goto failed;
        }

        /* the view owns the copy from here */
        view->packed = copy->packed;
        cln->handler = ngx_http_mesh_free_packed;
        cln->data = copy->packed;
        copy->packed = NULL;

        msize = mesh_service_unpack_size(view->packed, copy->size);
        mem = msize ? ngx_palloc(pool, msize) : NULL;

        if (mem == NULL
            || mesh_service_unpack(view->packed, copy->size,
                                   (char *) mscf->service.data, &view->svc,
                                   mem, msize)
               != 0)
        {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "mesh: service \"%V\" in the shared zone cannot "
                          "be read", &mscf->service);
            goto failed;
        }

        svc = &view->svc;
    }

    view->ntargets = 1 + (dr ? dr->nsubsets : 0);
    view->targets = ngx_pcalloc(pool, view->ntargets
                                      * sizeof(ngx_http_mesh_target_t));
    if (view->targets == NULL) {
        goto failed;
    }

    /* the policies for the service port the upstream stands for: its
     * portLevelSettings entry, or the trafficPolicy */

    tp = dr ? mesh_rule_traffic(dr, NULL, (int) mscf->port) : NULL;

    if (ngx_http_mesh_build_target(mmcf, mscf, view, &view->targets[0], svc,
                                   NULL, tp, log)
        != NGX_OK)
    {
        goto failed;
    }

#if (NGX_HTTP_SSL)
    /* the same policy's tls: the worker's setting, its files read if new */
    if (dr && ngx_http_mesh_tls_get(mmcf, dr, &tp->tls,
                                    &view->targets[0].tls, log)
              != NGX_OK)
    {
        goto failed;
    }
#endif

    for (i = 1; i < view->ntargets; i++) {
        tp = mesh_rule_traffic(dr, &dr->subsets[i - 1], (int) mscf->port);

        if (ngx_http_mesh_build_target(mmcf, mscf, view, &view->targets[i],
                                       svc, &dr->subsets[i - 1], tp, log)
            != NGX_OK)
        {
            goto failed;
        }

#if (NGX_HTTP_SSL)
        if (ngx_http_mesh_tls_get(mmcf, dr, &tp->tls, &view->targets[i].tls,
                                  log)
            != NGX_OK)
        {
            goto failed;
        }
#endif
    }

    view->vs = mesh_policies_vs(policies, (char *) mscf->service.data,
                                mscf->service.len);

    if (view->vs == NULL) {
        return view;
    }

    if (mscf->stream) {
        /* a stream upstream routes by the tcp[] routes alone */
        if (ngx_http_mesh_view_tcp(mmcf, mscf, view, pool, log) != NGX_OK) {
            goto failed;
        }

        return view;
    }

    if (view->vs->nhttp == 0 && (view->vs->ntcp || view->vs->ntls)) {
        view->vs = NULL;        /* tcp/tls routes only: none for http (a root
                                   whose delegates are gone has no route,
                                   and its requests get 404) */
        return view;
    }

    view->nroutes = view->vs->nhttp;
    view->routes = ngx_pcalloc(pool, (view->nroutes + 1)
                                     * sizeof(ngx_http_mesh_route_t));
    if (view->routes == NULL) {
        goto failed;
    }

    for (i = 0; i < view->nroutes; i++) {
        rt = &view->routes[i];
        rt->route = &view->vs->http[i];

        rt->dest = ngx_pcalloc(pool, (rt->route->nroutes + 1)
                                     * sizeof(ngx_http_mesh_dest_t));
        if (rt->dest == NULL) {
            goto failed;
        }

        for (j = 0; j < rt->route->nroutes; j++) {
            ngx_http_mesh_view_dest(mmcf, mscf, view, &rt->dest[j],
                                    rt->route->routes[j].host,
                                    rt->route->routes[j].subset,
                                    rt->route->routes[j].port, log);
        }

        if (rt->route->nmirrors == 0) {
            continue;
        }

        rt->mirror = ngx_pcalloc(pool, rt->route->nmirrors
                                       * sizeof(ngx_http_mesh_dest_t));
        if (rt->mirror == NULL) {
            goto failed;
        }

        for (j = 0; j < rt->route->nmirrors; j++) {
            ngx_http_mesh_view_dest(mmcf, mscf, view, &rt->mirror[j],
                                    rt->route->mirrors[j].host,
                                    rt->route->mirrors[j].subset,
                                    rt->route->mirrors[j].port, log);
        }
    }

    return view;

failed:

    if (view) {
        ngx_http_mesh_release_view(view);

    } else {
        ngx_destroy_pool(pool);
    }

    return NULL;
}


/*
 * A destination of the view's VirtualService: a target of the view for
 * its own service, else the first mesh upstream that routes the other
 * service (mesh upstreams are built from nginx.conf: a service no
 * upstream names has no instances here)
 */
static void
ngx_http_mesh_view_dest(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_view_t *view,
    ngx_http_mesh_dest_t *dst, const char *host, const char *subset,
    int port, ngx_log_t *log)
{
    size_t      len;
    ngx_uint_t  k;

    dst->subset = subset;

    len = host ? ngx_strlen(host) : mscf->service.len;

    if (host
        && (len != mscf->service.len
            || ngx_strncmp(host, mscf->service.data, len) != 0
            || (port && mscf->port && (ngx_uint_t) port != mscf->port)))
    {
        dst->other = mscf->stream
                     ? ngx_http_mesh_stream_upstream_of(mmcf, host, len)
                     : ngx_http_mesh_upstream_of(mmcf, host, len, port);

        if (dst->other) {
            return;
        }

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "mesh: VirtualService \"%s\" routes requests of "
                      "upstream \"%V\" to service \"%s\", which no mesh "
                      "upstream of this nginx routes: they fail with 502 "
                      "(add an upstream block with \"mesh %s;\")",
                      view->vs->name, &mscf->name, host, host);
        return;
    }

    if (subset == NULL) {
        dst->target = &view->targets[0];
        return;
    }

    for (k = 1; k < view->ntargets; k++) {
        if (ngx_strcmp(view->targets[k].subset.data, subset) == 0) {
            dst->target = &view->targets[k];
            return;
        }
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "mesh: VirtualService \"%s\" routes to subset \"%s\" of "
                  "\"%V\", which no DestinationRule defines",
                  view->vs->name, subset, &mscf->service);
}


/*
 * The http mesh upstream that routes service host (len bytes): with a
 * port, the first declared for it (mesh SERVICE port=N), else the first
 * one in nginx.conf; NULL: none (stream upstreams carry no http request)
 */
ngx_http_mesh_srv_conf_t *
ngx_http_mesh_upstream_of(ngx_http_mesh_main_conf_t *mmcf, const char *host,
    size_t len, int port)
{
    ngx_uint_t                  k;
    ngx_http_mesh_srv_conf_t  **up, *first;

    up = mmcf->upstreams.elts;
    first = NULL;

    for (k = 0; k < mmcf->upstreams.nelts; k++) {
        if (up[k]->stream
            || up[k]->service.len != len
            || ngx_strncmp(up[k]->service.data, host, len) != 0)
        {
            continue;
        }

        if (port == 0 || up[k]->port == (ngx_uint_t) port) {
            return up[k];
        }

        if (first == NULL) {
            first = up[k];
        }
    }

    return first;
}


/* the first stream mesh upstream that routes service host (len bytes) */
ngx_http_mesh_srv_conf_t *
ngx_http_mesh_stream_upstream_of(ngx_http_mesh_main_conf_t *mmcf,
    const char *host, size_t len)
{
    ngx_uint_t                  k;
    ngx_http_mesh_srv_conf_t  **up;

    up = mmcf->upstreams.elts;

    for (k = 0; k < mmcf->upstreams.nelts; k++) {
        if (up[k]->stream
            && up[k]->service.len == len
            && ngx_strncmp(up[k]->service.data, host, len) == 0)
        {
            return up[k];
        }
    }

    return NULL;
}


/* the tcp[] and tls[] routes of a stream upstream's VirtualService */
static ngx_int_t
ngx_http_mesh_view_tcp(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_view_t *view,
    ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_uint_t                  i;
    ngx_http_mesh_tcp_route_t  *tr;

    view->ntcp = view->vs->ntcp;

    if (view->ntcp) {
        view->tcp = ngx_pcalloc(pool, view->ntcp
                                      * sizeof(ngx_http_mesh_tcp_route_t));
        if (view->tcp == NULL) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < view->ntcp; i++) {
        tr = &view->tcp[i];
        tr->route = &view->vs->tcp[i];
        tr->dest = ngx_http_mesh_view_dests(mmcf, mscf, view,
                                            tr->route->routes,
                                            tr->route->nroutes, pool, log);
        if (tr->dest == NULL) {
            return NGX_ERROR;
        }
    }

    if (view->vs->ntls == 0) {
        return NGX_OK;
    }

    view->tls = ngx_pcalloc(pool, view->vs->ntls
                                  * sizeof(ngx_http_mesh_dest_t *));
    if (view->tls == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < view->vs->ntls; i++) {
        view->tls[i] = ngx_http_mesh_view_dests(mmcf, mscf, view,
                                                view->vs->tls[i].routes,
                                                view->vs->tls[i].nroutes,
                                                pool, log);
        if (view->tls[i] == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_http_mesh_dest_t *
ngx_http_mesh_view_dests(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_view_t *view,
    const mesh_destination_t *routes, size_t n, ngx_pool_t *pool,
    ngx_log_t *log)
{
    size_t                 j;
    ngx_http_mesh_dest_t  *dest;

    dest = ngx_pcalloc(pool, (n + 1) * sizeof(ngx_http_mesh_dest_t));
    if (dest == NULL) {
        return NULL;
    }

    for (j = 0; j < n; j++) {
        ngx_http_mesh_view_dest(mmcf, mscf, view, &dest[j], routes[j].host,
                                routes[j].subset, 0, log);
    }

    return dest;
}


/* p lies in the shared zone */
static ngx_inline ngx_uint_t
ngx_http_mesh_in_zone(ngx_http_mesh_main_conf_t *mmcf, void *p)
{
    return (u_char *) p >= (u_char *) mmcf->zone.shpool
           && (u_char *) p < mmcf->zone.shpool->end;
}


static ngx_int_t
ngx_http_mesh_build_target(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_view_t *view,
    ngx_http_mesh_target_t *t, const mesh_service_t *svc,
    const mesh_subset_t *subset, const mesh_traffic_policy_t *tp,
    ngx_log_t *log)
{
    void                     *mem;
    size_t                   *lens, idlen;
    ngx_int_t                 rc;
    ngx_str_t                 id, sid;
    ngx_uint_t                i, j, n, ended;
    ngx_addr_t                addr;
    ngx_pool_t               *pool;
    const char              **servers;
    mesh_instance_t          *in;
    ngx_http_mesh_peer_t     *peer, *reuse;
    ngx_http_mesh_stat_t     *st;
    ngx_http_mesh_target_t   *old;
    int                      *weights;

    pool = view->pool;
    n = svc ? svc->ninstances : 0;

    if (subset) {
        t->subset.len = ngx_strlen(subset->name);
        t->subset.data = (u_char *) subset->name;
    }

    t->balancer = ngx_http_mesh_lb(tp ? tp->lb : MESH_LB_NONE,
                                   mscf->balancer, &t->hash);

    if (tp && tp->hash_name) {
        t->hash_name.len = ngx_strlen(tp->hash_name);
        t->hash_name.data = (u_char *) tp->hash_name;
    }

    /* httpCookie with a ttl: a request without the cookie is given one */
    t->cookie_ttl = (tp && tp->lb == MESH_LB_HASH_COOKIE) ? tp->cookie_ttl
                                                          : -1;

    if (t->cookie_ttl >= 0 && tp->cookie_path) {
        t->cookie_path.len = ngx_strlen(tp->cookie_path);
        t->cookie_path.data = (u_char *) tp->cookie_path;
    }

    t->max_conns = (tp && tp->max_connections > 0) ? tp->max_connections : 0;

    /* the rest of connectionPool: enforced by ngx_http_mesh_pool.c */

    t->max_retries = -1;

    if (tp) {
        t->connect_timeout = (tp->connect_timeout > 0)
                             ? (ngx_msec_t) tp->connect_timeout : 0;
        t->keepalive = (tp->tcp_keepalive == 1);
        t->keepidle = (tp->keepalive_time > 0)
                      ? (int) (tp->keepalive_time / 1000) : 0;
        t->keepintvl = (tp->keepalive_interval > 0)
                       ? (int) (tp->keepalive_interval / 1000) : 0;
        t->keepcnt = (tp->keepalive_probes > 0) ? tp->keepalive_probes : 0;
        t->max_requests = (tp->http2_max_requests > 0)
                          ? (ngx_uint_t) tp->http2_max_requests : 0;
        t->conn_requests = (tp->max_requests_per_conn > 0)
                           ? (ngx_uint_t) tp->max_requests_per_conn : 0;
        t->max_retries = tp->max_retries;
        t->idle_timeout = (tp->idle_timeout > 0)
                          ? (ngx_msec_t) tp->idle_timeout : 0;
    }

    /* outlier detection: the policy's fields, else mesh_outlier's */
    t->outlier = mscf->outlier;

    if (tp) {
        if (tp->consecutive_5xx >= 0) {
            t->outlier.consecutive_5xx = tp->consecutive_5xx;
        }

        if (tp->consecutive_gateway >= 0) {
            t->outlier.consecutive_gateway = tp->consecutive_gateway;
        }

        if (tp->interval > 0) {
            t->outlier.interval = (ngx_msec_t) tp->interval;
        }

        if (tp->base_ejection_time > 0) {
            t->outlier.base_ejection_time = (ngx_msec_t)
                                            tp->base_ejection_time;
        }

        if (tp->max_ejection_percent >= 0) {
            t->outlier.max_ejection_percent = tp->max_ejection_percent;
        }

        if (tp->min_health_percent >= 0) {
            t->outlier.panic_threshold = tp->min_health_percent;
        }

        if (tp->split_local_origin >= 0) {
            t->outlier.split_local = tp->split_local_origin;
        }

        if (tp->consecutive_local_origin >= 0) {
            t->outlier.consecutive_local = tp->consecutive_local_origin;
        }
    }

    t->service_name = mscf->service;

    if (svc) {
        t->service = ngx_http_mesh_get_stat(&mmcf->zone, &mscf->stats,
                                            NULL);
    }

    t->epoch = t->service ? &t->service->epoch : &mmcf->zone.sh->epoch;

    /*
     * The round robin position, shared by the workers: the service's, or
     * a subset's own ("service/#subset"); consistent hash without a key
     * balances by round robin too.
     */
    t->rr = t->service ? &t->service->rr_next : &t->rr_local;

    if (subset && svc && (t->balancer == NGX_HTTP_MESH_RR
                          || t->balancer == NGX_HTTP_MESH_CHASH))
    {
        sid.len = 1 + t->subset.len;
        sid.data = ngx_pnalloc(pool, sid.len);
        if (sid.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(sid.data, "#%V", &t->subset);

        st = ngx_http_mesh_get_stat(&mmcf->zone, &mscf->stats, &sid);
        t->rr = st ? &st->rr_next : &t->rr_local;
    }

    peer = ngx_pcalloc(pool, (n + 1) * sizeof(ngx_http_mesh_peer_t));
    t->mp = ngx_pcalloc(pool, (n + 1) * sizeof(mesh_peer_t));
    servers = ngx_pcalloc(pool, (n + 1) * sizeof(char *));
    lens = ngx_pcalloc(pool, (n + 1) * sizeof(size_t));
    weights = ngx_pcalloc(pool, (n + 1) * sizeof(int));

    if (peer == NULL || t->mp == NULL || servers == NULL || lens == NULL
        || weights == NULL)
    {
        return NGX_ERROR;
    }

    t->peer = peer;

    /*
     * The same target of the view in place: an instance it has with the
     * same address keeps its parsed address and its counters, without a
     * parse or a lookup in the zone (both are sorted by id).
     */
    old = NULL;

    for (j = 0; mscf->view && j < mscf->view->ntargets; j++) {
        if (mscf->view->targets[j].balancer == t->balancer
            && mscf->view->targets[j].subset.len == t->subset.len
            && ngx_strncmp(mscf->view->targets[j].subset.data,
                           t->subset.data, t->subset.len) == 0)
        {
            old = &mscf->view->targets[j];
            break;
        }
    }

    j = 0;

    for (i = 0; i < n; i++) {
        in = &svc->instances[i];

        if (subset && !mesh_instance_in_subset(in, subset)) {
            continue;
        }

        reuse = NULL;
        idlen = ngx_strlen(in->id);

        while (old && j < old->number
               && ngx_memn2cmp(old->peer[j].id.data, (u_char *) in->id,
                               old->peer[j].id.len, idlen) < 0)
        {
            j++;
        }

        /* (counters kept in the worker when the zone was full are not
         * reused: they go with the old view) */
        if (old && j < old->number && old->peer[j].id.len == idlen
            && ngx_memcmp(old->peer[j].id.data, in->id, idlen) == 0
            && old->peer[j].name.len == in->server_len
            && ngx_memcmp(old->peer[j].name.data, in->server,
                          in->server_len) == 0
            && ngx_http_mesh_in_zone(mmcf, old->peer[j].stat))
        {
            reuse = &old->peer[j];
        }

        if (reuse) {
            peer[t->number].sockaddr = ngx_palloc(pool, reuse->socklen);
            if (peer[t->number].sockaddr == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(peer[t->number].sockaddr, reuse->sockaddr,
                       reuse->socklen);
            peer[t->number].socklen = reuse->socklen;
            peer[t->number].name.len = in->server_len;
            peer[t->number].name.data = (u_char *) in->server;
            peer[t->number].id.len = idlen;
            peer[t->number].id.data = (u_char *) in->id;
            peer[t->number].healthy = in->healthy;
            peer[t->number].stat = reuse->stat;
            peer[t->number].instance = in;

            id = peer[t->number].id;

            goto health;
        }

        rc = ngx_parse_addr(pool, &addr, (u_char *) in->address,
                            ngx_strlen(in->address));
        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mesh: instance \"%s\" of service \"%V\" has an "
                          "invalid address \"%s\", skipped", in->id,
                          &mscf->service, in->address);
            continue;
        }

        ngx_inet_set_port(addr.sockaddr, (in_port_t) in->port);

        peer[t->number].sockaddr = addr.sockaddr;
        peer[t->number].socklen = addr.socklen;
        peer[t->number].name.len = in->server_len;
        peer[t->number].name.data = (u_char *) in->server;
        peer[t->number].id.len = ngx_strlen(in->id);
        peer[t->number].id.data = (u_char *) in->id;
        peer[t->number].healthy = in->healthy;
        peer[t->number].instance = in;

        id = peer[t->number].id;

        peer[t->number].stat = ngx_http_mesh_get_stat(&mmcf->zone,
                                                      &mscf->stats, &id);
        if (peer[t->number].stat == NULL) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mesh: no room for the counters of \"%V/%V\" in "
                          "the shared zone, raise mesh_zone",
                          &mscf->service, &id);

            /* counters of this worker only: selection still works */
            peer[t->number].stat = ngx_pcalloc(pool,
                                               sizeof(ngx_http_mesh_stat_t));
            if (peer[t->number].stat == NULL) {
                return NGX_ERROR;
            }
        }

    health:

        /*
         * The registry (a health check, a heartbeat) saw it come back from
         * critical: that ends an ejection early, as an active health check
         * un-ejects in Envoy.
         */
        st = peer[t->number].stat;
        ended = 0;

        /* under the zone's lock, as an ejection writes them (a read
         * without it only saves taking the lock when nothing changes) */
        if (in->healthy ? st->critical != 0 : st->critical == 0) {
            ngx_shmtx_lock(&mmcf->zone.shpool->mutex);

            if (!in->healthy) {
                st->critical = 1;

            } else if (st->critical) {
                st->critical = 0;
                st->since = ngx_current_msec ? ngx_current_msec : 1;

                if (ngx_http_mesh_ejected(st, ngx_current_msec)) {
                    st->ejected_until = ngx_current_msec;
                    st->returning = 0;
                    ended = 1;
                }
            }

            ngx_shmtx_unlock(&mmcf->zone.shpool->mutex);

            if (ended) {
                ngx_http_mesh_epoch_bump(&mmcf->zone, t);
                ngx_log_error(NGX_LOG_NOTICE, log, 0,
                              "mesh: instance \"%V\" (%V) of service \"%V\" "
                              "passes its health check again: ejection "
                              "ended", &id, &peer[t->number].name,
                              &mscf->service);
            }
        }

        t->mp[t->number].weight = in->weight;
        t->mp[t->number].active = &peer[t->number].stat->active;

        servers[t->number] = in->server;
        lens[t->number] = in->server_len;
        weights[t->number] = in->weight;

        t->number++;
    }

    if (t->balancer == NGX_HTTP_MESH_CHASH && t->number) {
        t->ring = ngx_http_mesh_ring_get(mscf, servers, lens, weights,
                                         t->number, log);
        if (t->ring == NULL) {
            return NGX_ERROR;   /* logged; the old view stays */
        }
    }

    /* the instances by weight, once; the set of those a pick may take */

    mem = ngx_palloc(pool, mesh_set_size(t->number));
    if (mem == NULL) {
        return NGX_ERROR;
    }

    mesh_set_init(&t->set, mem, t->mp, t->number);

    if (ngx_http_mesh_locality_init(mmcf, t, tp, pool, log) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_mesh_target_set(t, ngx_current_msec, log);

    return NGX_OK;
}


void
ngx_http_mesh_free_view(ngx_http_mesh_view_t *view)
{
    ngx_uint_t  i;

    for (i = 0; view->targets && i < view->ntargets; i++) {
        ngx_http_mesh_ring_release(view->targets[i].ring);
#if (NGX_HTTP_SSL)
        ngx_http_mesh_tls_release(view->targets[i].tls);
#endif
    }

    if (view->gen) {
        ngx_http_mesh_gen_release(view->gen);
    }

    ngx_destroy_pool(view->pool);     /* frees the packed copy too */
}


/*
 * Build the rings that views wait for, NGX_HTTP_MESH_RING_SLICE ms per turn
 * of the event loop, and put a view in place once its rings are there.
 */
static void
ngx_http_mesh_ring_handler(ngx_event_t *ev)
{
    ngx_http_mesh_main_conf_t *mmcf = ev->data;

    ngx_uint_t                  i, k, v, more;
    struct timespec             until;
    ngx_http_mesh_view_t       *views[2];
    ngx_http_mesh_target_t     *t;
    ngx_http_mesh_srv_conf_t  **mscfp;

    (void) clock_gettime(CLOCK_MONOTONIC, &until);

    until.tv_nsec += NGX_HTTP_MESH_RING_SLICE * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }

    more = 0;
    mscfp = mmcf->upstreams.elts;

    for (i = 0; i < mmcf->upstreams.nelts; i++) {
        views[0] = mscfp[i]->view;
        views[1] = mscfp[i]->next;

        for (v = 0; v < 2 && !more; v++) {
            for (k = 0; views[v] && k < views[v]->ntargets && !more; k++) {
                t = &views[v]->targets[k];

                if (t->ring && t->ring->builder
                    && !ngx_http_mesh_ring_step(t->ring, &until))
                {
                    more = 1;
                }
            }
        }

        if (mscfp[i]->next && ngx_http_mesh_view_ready(mscfp[i]->next)) {
            ngx_http_mesh_install_view(mscfp[i], mscfp[i]->next);
        }

        if (more) {
            break;
        }
    }

    if (more) {
        ngx_post_event(ev, &ngx_posted_next_events);
    }
}
