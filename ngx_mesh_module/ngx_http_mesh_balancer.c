
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * The upstream's peer functions: init_peer (the request's view, route,
 * target and hash key), get_peer (a pick from the target's set, retries
 * and the retry budget) and free_peer (the request's counters, then
 * outlier detection).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


static ngx_int_t ngx_http_mesh_get_peer(ngx_peer_connection_t *pc,
    void *data);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_mesh_set_session(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_mesh_save_session(ngx_peer_connection_t *pc,
    void *data);
#endif
static void ngx_http_mesh_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
static ngx_int_t ngx_http_mesh_hash_key(ngx_http_request_t *r,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_peer_data_t *pd,
    ngx_http_mesh_target_t *t, ngx_str_t *key);
static ngx_inline void ngx_http_mesh_count(ngx_http_mesh_stat_t *st,
    ngx_uint_t status, ngx_uint_t bucket, ngx_msec_t ms, uint64_t window,
    ngx_uint_t slot);
static ngx_inline void ngx_http_mesh_win_add(uint64_t *word,
    uint64_t window, uint64_t n);


/* the 10 s window of the rates, worked out once per window */
static struct {
    uint64_t                       id;
    ngx_uint_t                     slot;
    ngx_msec_t                     end;
} ngx_http_mesh_window;

static ngx_str_t               ngx_http_mesh_empty = ngx_null_string;


/*
 * A request's or a stream session's end: what it holds in the counters
 * (a pick free_peer did not free, a place of the admission) and the views
 * (its upstream's, another service's) let go
 */
void
ngx_http_mesh_cleanup_peer(void *data)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    if (pd->current) {
        /* the upstream did not call free_peer (finalized early) */
        ngx_http_mesh_unhold(pd->current->stat);

        if (pd->target && pd->target->service) {
            ngx_http_mesh_unhold(pd->target->service);

            if (pd->retrying) {
                (void) __sync_fetch_and_sub(
                           &pd->target->service->retries_active, 1);
                pd->retrying = 0;
            }
        }

        pd->current = NULL;
    }

    if (pd->reserved) {
        /* admitted, and ended before a pick took its place */
        ngx_http_mesh_unhold(pd->reserved);
        pd->reserved = NULL;
    }

    if (pd->view) {
        ngx_http_mesh_release_view(pd->view);
        pd->view = NULL;
    }

    if (pd->dest_view) {
        ngx_http_mesh_release_view(pd->dest_view);
        pd->dest_view = NULL;
    }

    if (pd->gw_table) {
        ngx_http_mesh_gw_table_release(pd->gw_table);
        pd->gw_table = NULL;
    }

    if (pd->connect_ev && pd->connect_ev->posted) {
        ngx_delete_posted_event(pd->connect_ev);
    }
}


/*
 * The target a destination leads to. For another service: its target in
 * the current view of the upstream that routes it, held by the request
 * until its end; NULL when that view has no such subset (or no view yet).
 */
ngx_http_mesh_target_t *
ngx_http_mesh_dest_target(ngx_http_mesh_peer_data_t *pd,
    ngx_http_mesh_dest_t *dst)
{
    ngx_uint_t               k;
    ngx_http_mesh_view_t    *view;
    ngx_http_mesh_target_t  *t;

    if (dst->other == NULL) {
        return dst->target;
    }

    view = dst->other->view;

    if (view == NULL) {
        return NULL;
    }

    t = NULL;

    if (dst->subset == NULL) {
        t = &view->targets[0];

    } else {
        for (k = 1; k < view->ntargets; k++) {
            if (ngx_strcmp(view->targets[k].subset.data, dst->subset) == 0) {
                t = &view->targets[k];
                break;
            }
        }

        if (t == NULL) {
            ngx_log_error(NGX_LOG_ERR, pd->request
                                       ? pd->request->connection->log
                                       : ngx_cycle->log, 0,
                          "mesh: subset \"%s\" of service \"%V\" is not "
                          "defined by any DestinationRule", dst->subset,
                          &dst->other->service);
            return NULL;
        }
    }

    if (pd->dest_view != view) {
        view->refs++;

        if (pd->dest_view) {
            ngx_http_mesh_release_view(pd->dest_view);
        }

        pd->dest_view = view;
    }

    return t;
}


ngx_table_elt_t *
ngx_http_mesh_header_in(ngx_http_request_t *r, const char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/*
 * The first http[] route whose match fits; NULL when none does. *prefix:
 * the length of the path prefix the fitting match item's uri matched (0
 * when it matched no prefix), which a rewrite replaces.
 */
ngx_http_mesh_route_t *
ngx_http_mesh_find_route(ngx_http_request_t *r, ngx_http_mesh_view_t *view,
    size_t *prefix)
{
    return ngx_http_mesh_find_route_in(r, view->routes, view->nroutes,
                                       prefix);
}


/* the same among routes[n] (a gateway's VirtualService) */
ngx_http_mesh_route_t *
ngx_http_mesh_find_route_in(ngx_http_request_t *r,
    ngx_http_mesh_route_t *routes, ngx_uint_t n, size_t *prefix)
{
    ngx_uint_t                  i, k, h, fits;
    mesh_match_t               *m;
    ngx_array_t                *labels;
    ngx_table_elt_t            *hdr;
    mesh_http_route_t          *route;
    mesh_header_match_t        *hm;
    ngx_http_mesh_main_conf_t  *mmcf;

    *prefix = 0;

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mesh_module);
    labels = mmcf->labels;

    for (i = 0; i < n; i++) {
        route = routes[i].route;

        if (route->nmatches == 0) {
            return &routes[i];
        }

        for (k = 0; k < route->nmatches; k++) {
            m = &route->matches[k];
            fits = 1;

            /* sourceLabels: the client workload is this nginx's, whose
             * labels mesh_labels declares; without them, none fits */

            if (m->nsource_labels
                && (labels == NULL
                    || !mesh_labels_hold(labels->elts, labels->nelts,
                                         m->source_labels,
                                         m->nsource_labels)))
            {
                continue;
            }

            if (m->uri
                && !mesh_string_match(m->uri, (char *) r->uri.data,
                                      r->uri.len, NULL))
            {
                fits = 0;
            }

            for (h = 0; fits && h < m->nheaders; h++) {
                hm = &m->headers[h];
                hdr = ngx_http_mesh_header_in(r, hm->name, hm->name_len);

                if (hdr == NULL
                    || !mesh_string_match(&hm->match, (char *) hdr->value.data,
                                          hdr->value.len,
                                          NULL))
                {
                    fits = 0;
                }
            }

            if (fits) {
                if (m->uri && m->uri->kind == MESH_MATCH_PREFIX) {
                    *prefix = m->uri->len;
                }

                return &routes[i];
            }
        }
    }

    return NULL;
}


/*
 * A route's retries and timeout: the upstream conf is the location's,
 * shared by its requests, so this request gets a copy of its own.
 */
ngx_int_t
ngx_http_mesh_route_conf(ngx_http_request_t *r, mesh_http_route_t *route)
{
    ngx_msec_t                 t;
    ngx_uint_t                 next;
    ngx_http_upstream_t       *u;
    ngx_http_upstream_conf_t  *conf;

    if (route->attempts < 0 && route->per_try_timeout < 0
        && route->retry_on == 0 && route->timeout < 0)
    {
        return NGX_OK;
    }

    u = r->upstream;

    conf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));
    if (conf == NULL) {
        return NGX_ERROR;
    }

    *conf = *u->conf;

    if (route->attempts >= 0) {
        conf->next_upstream_tries = route->attempts + 1;

        if (route->attempts == 0) {
            conf->next_upstream = NGX_HTTP_UPSTREAM_FT_OFF;
        }
    }

    if (route->retry_on && route->attempts != 0) {
        next = conf->next_upstream & NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT;

        if (route->retry_on & MESH_RETRY_5XX) {
            next |= NGX_HTTP_UPSTREAM_FT_ERROR|NGX_HTTP_UPSTREAM_FT_TIMEOUT
                    |NGX_HTTP_UPSTREAM_FT_HTTP_500
                    |NGX_HTTP_UPSTREAM_FT_HTTP_502
                    |NGX_HTTP_UPSTREAM_FT_HTTP_503
                    |NGX_HTTP_UPSTREAM_FT_HTTP_504;
        }

        if (route->retry_on & MESH_RETRY_GATEWAY_ERROR) {
            next |= NGX_HTTP_UPSTREAM_FT_HTTP_502
                    |NGX_HTTP_UPSTREAM_FT_HTTP_503
                    |NGX_HTTP_UPSTREAM_FT_HTTP_504;
        }

        if (route->retry_on & MESH_RETRY_CONNECT_FAILURE) {
            next |= NGX_HTTP_UPSTREAM_FT_ERROR|NGX_HTTP_UPSTREAM_FT_TIMEOUT;
        }

        if (route->retry_on & MESH_RETRY_RESET) {
            next |= NGX_HTTP_UPSTREAM_FT_ERROR;
        }

        conf->next_upstream = next;
    }

    if (route->per_try_timeout > 0) {
        t = (ngx_msec_t) route->per_try_timeout;

        conf->connect_timeout = ngx_min(conf->connect_timeout, t);
        conf->send_timeout = t;
        conf->read_timeout = t;
    }

    if (route->timeout > 0) {
        t = (ngx_msec_t) route->timeout;

        conf->next_upstream_timeout = t;
        conf->connect_timeout = ngx_min(conf->connect_timeout, t);
        conf->send_timeout = ngx_min(conf->send_timeout, t);
        conf->read_timeout = ngx_min(conf->read_timeout, t);
    }

    u->conf = conf;

    return NGX_OK;
}


/*
 * httpCookie with a ttl and a request without the cookie: the request is
 * given one, as Envoy gives it (a hash of the client's and the local
 * address, 16 hex digits), and hashed on it at once, so that its first
 * request goes where the next ones with the cookie will
 */
static ngx_int_t
ngx_http_mesh_issue_cookie(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd, ngx_str_t *key)
{
    u_char             *p, text[2 * NGX_SOCKADDR_STRLEN];
    size_t              len;
    ngx_connection_t   *c;

    c = r->connection;

    if (ngx_connection_local_sockaddr(c, NULL, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    len = ngx_sock_ntop(c->sockaddr, c->socklen, text, NGX_SOCKADDR_STRLEN,
                        1);
    len += ngx_sock_ntop(c->local_sockaddr, c->local_socklen, text + len,
                         NGX_SOCKADDR_STRLEN, 1);

    p = ngx_pnalloc(r->pool, 16);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(p, "%08xD%08xD", ngx_murmur_hash2(text, len),
                ngx_crc32_long(text, len));

    key->data = p;
    key->len = 16;
    pd->cookie = *key;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mesh_hash_key(ngx_http_request_t *r, ngx_http_mesh_srv_conf_t *mscf,
    ngx_http_mesh_peer_data_t *pd, ngx_http_mesh_target_t *t, ngx_str_t *key)
{
    ngx_table_elt_t  *h;

    key->len = 0;

    switch (t->hash) {

    case NGX_HTTP_MESH_HASH_HEADER:
        h = ngx_http_mesh_header_in(r, (char *) t->hash_name.data,
                                 t->hash_name.len);
        if (h) {
            *key = h->value;
        }
        return NGX_OK;

    case NGX_HTTP_MESH_HASH_QUERY:
        if (ngx_http_arg(r, t->hash_name.data, t->hash_name.len, key)
            != NGX_OK)
        {
            key->len = 0;
        }
        return NGX_OK;

    case NGX_HTTP_MESH_HASH_COOKIE:
        if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies,
                                              &t->hash_name, key)
            == NGX_DECLINED)
        {
            key->len = 0;

            if (t->cookie_ttl >= 0) {
                return ngx_http_mesh_issue_cookie(r, pd, key);
            }

            return NGX_OK;
        }

        /* name="v", as issued: the key is v, as Envoy reads it */
        if (key->len >= 2 && key->data[0] == '"'
            && key->data[key->len - 1] == '"')
        {
            key->data++;
            key->len -= 2;
        }

        return NGX_OK;

    case NGX_HTTP_MESH_HASH_SOURCE_IP:
        *key = r->connection->addr_text;
        return NGX_OK;

    default: /* NGX_HTTP_MESH_HASH_KEY */
        if (mscf->key == NULL) {
            return NGX_OK;      /* round robin */
        }

        return ngx_http_complex_value(r, mscf->key, key);
    }
}


/*
 * The request's data for upstream mscf: made by the route phase (which
 * decided the route before the request went upstream) or here, by
 * init_peer. It lives in a pool cleanup, which lets go of the view.
 * The route phase of a gateway makes it with mscf NULL: init_peer of the
 * upstream the route sent the request to ($mesh_upstream) adopts it.
 */
ngx_http_mesh_peer_data_t *
ngx_http_mesh_peer_data(ngx_http_request_t *r,
    ngx_http_mesh_srv_conf_t *mscf)
{
    ngx_pool_cleanup_t          *cln;
    ngx_http_mesh_main_conf_t   *mmcf;
    ngx_http_mesh_peer_data_t   *pd;

    pd = ngx_http_get_module_ctx(r, ngx_http_mesh_module);

    if (pd && pd->conf == mscf) {
        return pd;
    }

    if (pd && pd->conf == NULL && pd->gw_table && mscf) {
        pd->conf = mscf;

        if (mscf->view && pd->view == NULL) {
            mscf->view->refs++;
            pd->view = mscf->view;
        }

        return pd;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mesh_module);

    if (ngx_http_mesh_worker.cycle != ngx_cycle
        || (mmcf->zone.sh
            && mmcf->zone.sh->generation != ngx_http_mesh_worker.generation))
    {
        (void) ngx_http_mesh_sync(mmcf, r->connection->log);
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_mesh_peer_data_t));
    if (cln == NULL) {
        return NULL;
    }

    pd = cln->data;

    pd->conf = mscf;
    pd->main = mmcf;
    pd->view = NULL;
    pd->dest_view = NULL;
    pd->target = NULL;
    pd->route = NULL;
    pd->current = NULL;
    pd->last = NULL;
    pd->tried = NULL;
    pd->tried_inline = 0;
    pd->tries = 0;
    pd->hash = 0;
    pd->has_hash = 0;
    pd->index = ngx_http_mesh_worker.index;
    pd->retrying = 0;
    pd->refused = 0;
    pd->request = r;
    pd->session = NULL;
    pd->connect_ev = NULL;
    pd->routed = 0;
    pd->delaying = 0;
    pd->dest = -1;
    pd->prefix = 0;
    pd->authority.len = 0;
    pd->authority.data = NULL;
    pd->cookie.len = 0;
    pd->cookie.data = NULL;
    pd->cors = NGX_HTTP_MESH_CORS_NONE;
    ngx_str_null(&pd->cors_origin);
    pd->mirrors = 0;
    pd->mirror = 0;
    pd->admitted = 0;
    pd->reserved = NULL;
    pd->output_filter = NULL;
    pd->filter_ctx = NULL;
    pd->conn = NULL;
    pd->tls_refused = 0;
    pd->tls_verify = 0;
    pd->gw_table = NULL;
    pd->gw_vs = NULL;
    pd->upstream = NULL;

    cln->handler = ngx_http_mesh_cleanup_peer;

    if (mscf && mscf->view) {
        mscf->view->refs++;
        pd->view = mscf->view;
    }

    ngx_http_set_ctx(r, pd, ngx_http_mesh_module);

    return pd;
}


ngx_int_t
ngx_http_mesh_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    int                          d;
    ngx_str_t                    key;
    ngx_uint_t                   n;
    ngx_http_mesh_view_t        *view;
    ngx_http_mesh_route_t       *rt;
    ngx_http_mesh_target_t      *t;
    ngx_http_mesh_srv_conf_t    *mscf;
    ngx_http_mesh_peer_data_t   *pd;

    mscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_mesh_module);

    pd = ngx_http_mesh_peer_data(r, mscf);
    if (pd == NULL) {
        return NGX_ERROR;
    }

    view = pd->view;
    t = NULL;

    if (pd->routed) {
        /* the route phase decided: the route and its destination */
        t = pd->target;

    } else if (view) {
        t = &view->targets[0];

        if (view->vs) {
            rt = ngx_http_mesh_find_route(r, view, &pd->prefix);
            pd->route = rt;
            pd->routed = 1;
            t = NULL;

            if (rt == NULL) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "mesh: no route of VirtualService \"%s\" "
                              "fits the request to service \"%V\"",
                              view->vs->name, &mscf->service);

            } else {
                d = mesh_route_pick(rt->route, (uint32_t) ngx_random());
                t = (d >= 0) ? ngx_http_mesh_dest_target(pd, &rt->dest[d])
                             : NULL;
                pd->dest = d;
            }
        }
    }

    pd->target = t;
    n = t ? t->number : 0;

#if (NGX_HTTP_SSL)
    /* the target's tls: DISABLE, or the policy's TLS in the location's */

    if (ngx_http_mesh_tls_conf(r, pd) != NGX_OK) {
        return NGX_ERROR;
    }
#endif

    /* the target's connectionPool, then the route's retries and timeout,
     * which cap its connect timeout */

    if (ngx_http_mesh_pool_conf(r, pd) != NGX_OK) {
        return NGX_ERROR;
    }

    if (pd->route && ngx_http_mesh_route_conf(r, pd->route->route) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (n <= 8 * sizeof(uintptr_t)) {
        pd->tried = &pd->tried_inline;

    } else {
        pd->tried = ngx_pcalloc(r->pool, (n / (8 * sizeof(uintptr_t)) + 1)
                                         * sizeof(uintptr_t));
        if (pd->tried == NULL) {
            return NGX_ERROR;
        }
    }

    if (t && t->balancer == NGX_HTTP_MESH_CHASH) {
        if (ngx_http_mesh_hash_key(r, mscf, pd, t, &key) != NGX_OK) {
            return NGX_ERROR;
        }

        if (key.len) {
            pd->hash = mesh_crc32(key.data, key.len);
            pd->has_hash = 1;
        }
    }

    r->upstream->peer.data = pd;
    r->upstream->peer.get = ngx_http_mesh_get_peer;
    r->upstream->peer.free = ngx_http_mesh_free_peer;
    r->upstream->peer.tries = n ? n : 1;

#if (NGX_HTTP_SSL)
    /* proxy_pass https:// calls these whenever proxy_ssl_session_reuse
     * is on (the default) */
    r->upstream->peer.set_session = ngx_http_mesh_set_session;
    r->upstream->peer.save_session = ngx_http_mesh_save_session;
#endif

    return NGX_OK;
}


/* has this request tried instance k of its target already? */

static ngx_inline ngx_uint_t
ngx_http_mesh_tried(ngx_http_mesh_peer_data_t *pd, ngx_uint_t k)
{
    return (pd->tried[k / (8 * sizeof(uintptr_t))]
            >> k % (8 * sizeof(uintptr_t))) & 1;
}


/* may this request's pick take instance k: not tried yet, not at its cap */

int
ngx_http_mesh_accept(void *ctx, size_t k)
{
    ngx_http_mesh_peer_data_t  *pd = ctx;

    ngx_http_mesh_target_t  *t;

    t = pd->target;

    return !ngx_http_mesh_tried(pd, k)
           && !(t->max_conns && *t->mp[k].active >= t->max_conns);
}


static ngx_int_t
ngx_http_mesh_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    int                         i;
    uint32_t                    budget, cur;
    ngx_msec_t                  now;
    ngx_uint_t                  n, tried, reserved;
    ngx_http_mesh_peer_t       *peer;
    ngx_http_mesh_target_t     *t;

    t = pd->target;
    n = t ? t->number : 0;

    if (pd->tls_refused) {
        pc->name = &pd->conf->upstream->host;
        return NGX_BUSY;        /* logged once per setting (the tls) */
    }

    if (n == 0) {
        if (pd->view && pd->view->vs && pd->route == NULL) {
            return NGX_BUSY;    /* logged by init_peer */
        }

        /* (without a target there is no subset to name) */
        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "mesh: no instances of service \"%V\"%s%V%s for "
                      "upstream \"%V\"",
                      t ? &t->service_name : &pd->conf->service,
                      t && t->subset.len ? " (subset \"" : "",
                      t && t->subset.len ? &t->subset : &ngx_http_mesh_empty,
                      t && t->subset.len ? "\")" : "",
                      &pd->conf->upstream->host);
        return NGX_BUSY;
    }

    /* the set is worked out again only after an ejection came or went */

    now = ngx_current_msec;

    if (t->set_epoch != *(volatile uint32_t *) t->epoch
        || (t->set_expire && (ngx_msec_int_t) (now - t->set_expire) >= 0))
    {
        ngx_http_mesh_target_set(t, now, pc->log);
    }

    tried = (pd->tries != 0);

    if (!pd->admitted
        && ngx_http_mesh_pool_admit(pd->request, pd, t) != NGX_OK)
    {
        pc->name = &pd->conf->upstream->host;
        return NGX_BUSY;        /* counted and logged by the pool */
    }

    if (t->panic && !tried && pd->conf->missing == 0) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "mesh: service \"%V\" in panic, %ui of %ui healthy",
                       &pd->conf->service, t->healthy, n);
    }

    /*
     * A retry takes a share of the service's retry budget: checked and
     * taken in one step, so that workers retrying at once cannot all see
     * the last share free; given back if no instance is picked.
     */

    reserved = 0;

    if (tried && t->service && (!pd->refused || t->max_retries >= 0)) {

        /* connectionPool.http.maxRetries, or the budget: 20% of the
         * requests in flight, at least 3 */

        if (t->max_retries >= 0) {
            budget = (uint32_t) t->max_retries;

        } else {
            budget = t->service->active / 5;
            if (budget < 3) {
                budget = 3;
            }
        }

        do {
            cur = t->service->retries_active;

            if (cur >= budget) {
                ngx_log_error(NGX_LOG_WARN, pc->log, 0,
                              "mesh: %s of service \"%V\" "
                              "exhausted (%uD retries in flight), not "
                              "retrying",
                              t->max_retries >= 0 ? "maxRetries"
                                                  : "retry budget",
                              &pd->conf->service, cur);
                (void) __sync_fetch_and_add(&t->service->retry_overflow, 1);
                pc->name = &pd->conf->upstream->host;
                return NGX_BUSY;
            }

        } while (!__sync_bool_compare_and_swap(&t->service->retries_active,
                                               cur, cur + 1));

        reserved = 1;
    }

    /* the first try of a target without a cap takes any of the set */

    i = ngx_http_mesh_pick(pd, t, tried || t->max_conns);

    if (i < 0) {
        pc->name = &pd->conf->upstream->host;

        if (reserved) {
            (void) __sync_fetch_and_sub(&t->service->retries_active, 1);
        }

        if (!tried && t->max_conns) {
            /* every instance at its maxConnections since the admission */
            if (t->service) {
                (void) __sync_fetch_and_add(&t->service->overflow, 1);
            }

            ngx_log_error(NGX_LOG_INFO, pc->log, 0,
                          "mesh: every instance of service \"%V\" at its "
                          "maxConnections (%ui)", &pd->conf->service,
                          t->max_conns);

        } else if (!tried) {
            ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                          "mesh: no healthy instance of service \"%V\"%s%V%s "
                          "for upstream \"%V\" (%ui registered)",
                          &pd->conf->service,
                          t->subset.len ? " (subset \"" : "", &t->subset,
                          t->subset.len ? "\")" : "",
                          &pd->conf->upstream->host, n);
        }

        return NGX_BUSY;
    }

    pd->tried[i / (8 * sizeof(uintptr_t))] |=
                                 (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));
    pd->tries++;

    peer = &t->peer[i];
    pd->current = peer;
    pd->last = peer;

    ngx_http_mesh_hold(peer->stat);
    (void) __sync_fetch_and_add(&peer->stat->requests, 1);

    if (t->service) {
        if (pd->reserved) {
            /* the place the admission took */
            pd->reserved = NULL;

        } else {
            ngx_http_mesh_hold(t->service);
        }

        (void) __sync_fetch_and_add(&t->service->requests, 1);

        if (tried) {
            (void) __sync_fetch_and_add(&t->service->retries, 1);

            /*
             * A retry after a refused connection is the request's first
             * real try: it costs no one extra work, and a killed instance
             * must not turn a burst of them into client errors.
             */
            if (reserved) {
                pd->retrying = 1;
            }
        }
    }

    pc->sockaddr = peer->sockaddr;
    pc->socklen = peer->socklen;
    pc->name = &peer->name;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "mesh: upstream \"%V\" picked \"%V\" at %V",
                   &pd->conf->upstream->host, &peer->id, &peer->name);

    return NGX_OK;
}


/*
 * An instance of target t for the request or session pd: by the target's
 * algorithm over its set, taking only what ngx_http_mesh_accept() allows
 * when check is set (a retry, or a target with maxConnections); -1 when
 * none can be taken.
 */
ngx_int_t
ngx_http_mesh_pick(ngx_http_mesh_peer_data_t *pd, ngx_http_mesh_target_t *t,
    ngx_uint_t check)
{
    int             i;
    mesh_accept_pt  accept;

    accept = check ? ngx_http_mesh_accept : NULL;

    switch (t->pick) {

    case NGX_HTTP_MESH_RANDOM:
        i = mesh_random_pick(&t->set, NULL, &ngx_http_mesh_worker.rand,
                             accept, pd);
        break;

    case NGX_HTTP_MESH_PICK_LEVELS:
        /* localityLbSetting: a level, then within it; a level with none
         * to take leaves the whole set */
        i = ngx_http_mesh_level_pick(t, pd, accept);

        if (i < 0 && t->balancer != NGX_HTTP_MESH_LEAST_REQUEST) {
            i = mesh_wrr_pick(&t->set, t->rr, accept, pd);

        } else if (i < 0) {
            i = mesh_p2c_pick(&t->set, t->mp, NULL,
                              &ngx_http_mesh_worker.rand, accept, pd);
        }

        break;

    case NGX_HTTP_MESH_PICK_LR_WARM:
        i = mesh_p2c_weighted_pick(&t->set, t->mp, NULL,
                                   &ngx_http_mesh_worker.rand, accept, pd);
        break;

    case NGX_HTTP_MESH_LEAST_REQUEST:
        i = mesh_p2c_pick(&t->set, t->mp, NULL, &ngx_http_mesh_worker.rand,
                          accept, pd);
        break;

    case NGX_HTTP_MESH_CHASH:
        if (pd->has_hash) {
            i = (t->ring->builder == NULL)
                ? mesh_chash_pick(&t->ring->ring, t->mp, pd->hash, accept,
                                  pd)
                : mesh_modulo_pick(t->mp, t->number, pd->hash, accept, pd);
            break;
        }

        /* fall through */

    default: /* NGX_HTTP_MESH_RR */
        i = mesh_wrr_pick(&t->set, t->rr, accept, pd);
        break;
    }

    return i;
}


/*
 * A try's end in an instance's counters st and its service's svc (NULL:
 * none): the status (0: no response), the latency, the 10 s windows.
 * The service keeps its own totals: summed from its instances they would
 * drop when an instance leaves, and a Prometheus counter must not go
 * down.
 */
void
ngx_http_mesh_account(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_stat_t *st, ngx_http_mesh_stat_t *svc, ngx_uint_t status,
    ngx_msec_t ms)
{
    ngx_uint_t  cls, b;

    static const ngx_msec_t  bounds[NGX_HTTP_MESH_LATENCY_BUCKETS - 1] = {
        5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
    };

    if (!mmcf->metrics) {
        return;
    }

    cls = (status - 100 < 500) ? status / 100 : 0;

    for (b = 0; b < NGX_HTTP_MESH_LATENCY_BUCKETS - 1; b++) {
        if (ms <= bounds[b]) {
            break;
        }
    }

    if ((ngx_msec_int_t) (ngx_current_msec - ngx_http_mesh_window.end) >= 0) {
        ngx_http_mesh_window.id = ngx_current_msec / NGX_HTTP_MESH_WINDOW;
        ngx_http_mesh_window.slot = ngx_http_mesh_window.id
                                    % NGX_HTTP_MESH_WINDOW_SLOTS;
        ngx_http_mesh_window.end = (ngx_http_mesh_window.id + 1)
                                   * NGX_HTTP_MESH_WINDOW;
    }

    ngx_http_mesh_count(st, cls, b, ms, ngx_http_mesh_window.id,
                        ngx_http_mesh_window.slot);

    if (svc) {
        ngx_http_mesh_count(svc, cls, b, ms, ngx_http_mesh_window.id,
                            ngx_http_mesh_window.slot);
    }
}


/*
 * A response in st's counters: its status class (0: none), latency
 * bucket and time, and the 10 s window it ended in (and that window's
 * slot), for the rates of the last 10 s and 60 s.
 */
static ngx_inline void
ngx_http_mesh_count(ngx_http_mesh_stat_t *st, ngx_uint_t status,
    ngx_uint_t bucket, ngx_msec_t ms, uint64_t window, ngx_uint_t slot)
{
    if (status) {
        (void) __sync_fetch_and_add(&st->responses[status - 1], 1);
    }

    (void) __sync_fetch_and_add(&st->latency[bucket], 1);
    (void) __sync_fetch_and_add(&st->latency_sum, ms);

    ngx_http_mesh_win_add(&st->win_requests[slot], window, 1);
    ngx_http_mesh_win_add(&st->win_latency[slot], window, ms);
}


/* n more in a window slot's word: counted, or the word started again */
static ngx_inline void
ngx_http_mesh_win_add(uint64_t *word, uint64_t window, uint64_t n)
{
    uint64_t  old, tag, v;

    tag = ngx_http_mesh_win_tag(window);

    do {
        old = *word;
        v = ((old & ~NGX_HTTP_MESH_WIN_VALUE) == tag)
            ? (old & NGX_HTTP_MESH_WIN_VALUE) + n : n;

        if (v > NGX_HTTP_MESH_WIN_VALUE) {
            v = NGX_HTTP_MESH_WIN_VALUE;
        }

    } while (!__sync_bool_compare_and_swap(word, old, tag | v));
}


#if (NGX_HTTP_SSL)

/*
 * TLS to the instances: a new connection makes a full handshake; TLS
 * sessions are not kept per instance (members come and go with every
 * view; keepalive connections to the upstream keep the cost down). Here,
 * just before the handshake, the target's trafficPolicy.tls takes the
 * connection over.
 */
static ngx_int_t
ngx_http_mesh_set_session(ngx_peer_connection_t *pc, void *data)
{
    return ngx_http_mesh_tls_connection(pc, data);
}


static void
ngx_http_mesh_save_session(ngx_peer_connection_t *pc, void *data)
{
    (void) pc;
    (void) data;
}

#endif


static void
ngx_http_mesh_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    ngx_msec_t                 ms;
    ngx_uint_t                 status;
    ngx_http_upstream_t       *u;
    ngx_http_mesh_peer_t      *peer;
    ngx_http_mesh_stat_t      *st, *svc;

    peer = pd->current;

    if (pc->tries) {
        pc->tries--;
    }

    ngx_http_mesh_pool_free(pc, pd, state);

    if (peer == NULL) {
        return;
    }

    pd->current = NULL;

    st = peer->stat;
    svc = pd->target->service;
    u = pd->request->upstream;

    status = u->state ? u->state->status : 0;
    ms = (u->state && u->state->response_time != (ngx_msec_t) -1)
         ? u->state->response_time : ngx_current_msec - u->peer.start_time;

    ngx_http_mesh_unhold(st);

    if (svc) {
        ngx_http_mesh_unhold(svc);

        if (pd->retrying) {
            (void) __sync_fetch_and_sub(&svc->retries_active, 1);
            pd->retrying = 0;
        }

        if (ngx_http_mesh_pool_retry(pc, pd, state) != NGX_OK) {
            /* over maxRetries: the request ends with this failure */
            pc->tries = 0;
        }
    }

    ngx_http_mesh_account(pd->main, st, svc, status, ms);

    if ((state & NGX_PEER_FAILED) || status >= 500) {
        ngx_http_mesh_failed(pd, peer, state, status, pc->log);
        return;
    }

    /* a response below 500 ends every run of failures */

    pd->refused = 0;

    if (st->consecutive_5xx) {
        st->consecutive_5xx = 0;
    }

    if (st->consecutive_gateway) {
        st->consecutive_gateway = 0;
    }

    if (st->consecutive_local) {
        st->consecutive_local = 0;
    }
}
