
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * A VirtualService route decided before the request goes upstream, in
 * the precontent phase of a location whose proxy_pass names a mesh
 * upstream, in the order of the filters Istio gives Envoy (fault, cors,
 * router): no route fits (404, as Istio), a fault delay (a timer: the
 * worker goes on) and abort, a CORS preflight answered, directResponse,
 * redirect, the destination picked, the URI and authority rewritten, the
 * request's headers changed. A header filter changes the response's and
 * adds the CORS ones. init_peer takes the decision from the request's
 * data.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


#define NGX_HTTP_MESH_PPM  1000000


static ngx_int_t ngx_http_mesh_route_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mesh_route_go(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd);
static ngx_int_t ngx_http_mesh_route_admit(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd, ngx_http_mesh_target_t *t);
static void ngx_http_mesh_delay_done(ngx_http_request_t *r);
static ngx_int_t ngx_http_mesh_mirror(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd);
static void ngx_http_mesh_mirror_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_mesh_mirror_send(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd);
static void ngx_http_mesh_mirror_start(ngx_http_request_t *sr);
static void ngx_http_mesh_authority(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd, ngx_str_t *s);
static ngx_int_t ngx_http_mesh_rewrite(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd, mesh_rewrite_t *rw);
static ngx_int_t ngx_http_mesh_request_headers(ngx_http_request_t *r,
    mesh_header_ops_t *ops);
static void ngx_http_mesh_response_headers(ngx_http_request_t *r,
    mesh_header_ops_t *ops);
static ngx_int_t ngx_http_mesh_cors(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd, mesh_cors_t *cors);
static ngx_int_t ngx_http_mesh_preflight(ngx_http_request_t *r,
    mesh_cors_t *cors, ngx_str_t *origin, ngx_str_t *method);
static ngx_int_t ngx_http_mesh_cors_headers(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd, mesh_cors_t *cors);
static ngx_int_t ngx_http_mesh_set_header_out(ngx_http_request_t *r,
    ngx_str_t *name, ngx_str_t *value);
static ngx_int_t ngx_http_mesh_header_filter(ngx_http_request_t *r);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

/*
 * The proxy module keeps its location conf private; it begins with its
 * ngx_http_upstream_conf_t, whose first field is the upstream that
 * proxy_pass names (nginx's layout since 0.6).
 */
extern ngx_module_t  ngx_http_proxy_module;


ngx_int_t
ngx_http_mesh_route_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_mesh_route_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_mesh_header_filter;

    return NGX_OK;
}


/* the mesh upstream this location proxies to, or NULL */
static ngx_http_mesh_srv_conf_t *
ngx_http_mesh_location_upstream(ngx_http_request_t *r)
{
    ngx_http_upstream_conf_t      *ucf;
    ngx_http_mesh_srv_conf_t      *mscf;
    ngx_http_upstream_srv_conf_t  *uscf;

    if (r->content_handler == NULL) {
        return NULL;
    }

    ucf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_module);
    if (ucf == NULL) {
        return NULL;
    }

    uscf = ucf->upstream;

    /* an implicit upstream (proxy_pass http://127.0.0.1:8080) has none */
    if (uscf == NULL || uscf->srv_conf == NULL) {
        return NULL;
    }

    mscf = ngx_http_conf_upstream_srv_conf(uscf, ngx_http_mesh_module);

    if (mscf == NULL || mscf->service.len == 0 || mscf->upstream != uscf) {
        return NULL;
    }

    return mscf;
}


static ngx_inline ngx_uint_t
ngx_http_mesh_roll(uint32_t ppm)
{
    return ppm >= NGX_HTTP_MESH_PPM
           || (ppm && (uint32_t) (ngx_random() % NGX_HTTP_MESH_PPM) < ppm);
}


static ngx_int_t
ngx_http_mesh_route_handler(ngx_http_request_t *r)
{
    ngx_http_mesh_route_t      *rt;
    ngx_http_mesh_srv_conf_t   *mscf;
    ngx_http_mesh_loc_conf_t   *mlcf;
    ngx_http_mesh_peer_data_t  *pd;

    pd = ngx_http_get_module_ctx(r, ngx_http_mesh_module);

    if (pd) {
        if (pd->delaying) {
            /* the delay is over: on with the route */
            pd->delaying = 0;
            return ngx_http_mesh_route_go(r, pd);
        }

        return NGX_DECLINED;
    }

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mesh_module);

    if (mlcf->gateways) {
        /* the Gateway's server, the VirtualService, the route: then as
         * below (ngx_http_mesh_gateway.c) */
        return ngx_http_mesh_gateway_route(r, mlcf);
    }

    mscf = ngx_http_mesh_location_upstream(r);
    if (mscf == NULL) {
        return NGX_DECLINED;
    }

    pd = ngx_http_mesh_peer_data(r, mscf);
    if (pd == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (pd->view == NULL || pd->view->vs == NULL) {
        /* init_peer takes the service; its caps are checked here */
        return ngx_http_mesh_route_admit(r, pd,
                                         pd->view ? &pd->view->targets[0]
                                                  : NULL);
    }

    rt = ngx_http_mesh_find_route(r, pd->view, &pd->prefix);
    pd->route = rt;
    pd->routed = 1;

    if (rt == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mesh: no route of VirtualService \"%s\" fits the "
                      "request to service \"%V\": 404",
                      pd->view->vs->name, &mscf->service);
        return NGX_HTTP_NOT_FOUND;
    }

    return ngx_http_mesh_route_start(r, pd);
}


/*
 * The route found (pd->route), at a mesh upstream's location or at a
 * gateway: its fault delay, then the rest
 */
ngx_int_t
ngx_http_mesh_route_start(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd)
{
    mesh_http_route_t  *route;

    route = pd->route->route;

    /* a delay of 0 ms delays nothing */
    if (route->fault.delay > 0 && ngx_http_mesh_roll(route->fault.delay_ppm)) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mesh: fault delay %L ms", route->fault.delay);

        pd->delaying = 1;
        r->read_event_handler = ngx_http_test_reading;
        r->write_event_handler = ngx_http_mesh_delay_done;
        r->connection->write->delayed = 1;
        ngx_add_timer(r->connection->write, (ngx_msec_t) route->fault.delay);

        return NGX_AGAIN;
    }

    return ngx_http_mesh_route_go(r, pd);
}


/*
 * After the delay, if any: the abort, the CORS preflight, nginx's own
 * answers, else the destination and the rewrites
 */
static ngx_int_t
ngx_http_mesh_route_go(ngx_http_request_t *r, ngx_http_mesh_peer_data_t *pd)
{
    int                   d;
    ngx_int_t             rc;
    mesh_http_route_t    *route;
    mesh_destination_t   *dest;

    route = pd->route->route;

    if (route->fault.abort_status
        && ngx_http_mesh_roll(route->fault.abort_ppm))
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mesh: fault abort %d", route->fault.abort_status);

        return ngx_http_mesh_respond(r, route->fault.abort_status,
                                     "fault filter abort", 18);
    }

    rc = ngx_http_mesh_cors(r, pd, route->cors);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (route->direct) {
        return ngx_http_mesh_respond(r, route->direct->status,
                                     route->direct->body,
                                     route->direct->body_len);
    }

    if (route->redirect) {
        return ngx_http_mesh_redirect(r, route->redirect);
    }

    d = mesh_route_pick(route, (uint32_t) ngx_random());
    pd->dest = d;
    pd->target = (d >= 0) ? ngx_http_mesh_dest_target(pd, &pd->route->dest[d])
                          : NULL;

    if (pd->gw_table) {
        /* at a gateway the request goes on to the upstream that routes
         * the destination's service: proxy_pass http://$mesh_upstream */
        pd->upstream = (d >= 0) ? pd->route->dest[d].other : NULL;

        if (pd->upstream == NULL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "mesh: VirtualService \"%s\" at a gateway sends "
                          "the request to %s%s%s, which no mesh upstream of "
                          "this nginx routes: 502", pd->gw_vs->name,
                          d >= 0 ? "service \"" : "no destination",
                          d >= 0 ? route->routes[d].host : "",
                          d >= 0 ? "\"" : "");
            return NGX_HTTP_BAD_GATEWAY;
        }
    }

    if (ngx_http_mesh_rewrite(r, pd, &route->rewrite) != NGX_OK
        || ngx_http_mesh_request_headers(r, &route->headers.request)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (d >= 0) {
        dest = &route->routes[d];

        if (ngx_http_mesh_request_headers(r, &dest->headers.request)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_http_mesh_route_admit(r, pd, pd->target);

    if (rc != NGX_DECLINED || route->nmirrors == 0) {
        return rc;
    }

    return ngx_http_mesh_mirror(r, pd);
}


/* the destination's connectionPool caps: over one, 503 at once */
static ngx_int_t
ngx_http_mesh_route_admit(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd, ngx_http_mesh_target_t *t)
{
    if (ngx_http_mesh_pool_admit(r, pd, t) != NGX_OK) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    return NGX_DECLINED;
}


/*
 * mirrors[]: each one takes its share of the requests the route sends
 * upstream; a copy is a background subrequest in this location whose
 * answer is dropped (as nginx's mirror module makes them), so it never
 * holds nor fails the request. A request body is read first, to be sent
 * with the copies.
 */
static ngx_int_t
ngx_http_mesh_mirror(ngx_http_request_t *r, ngx_http_mesh_peer_data_t *pd)
{
    size_t              i;
    ngx_int_t           rc;
    mesh_http_route_t  *route;

    route = pd->route->route;

    for (i = 0; i < route->nmirrors && i < NGX_HTTP_MESH_MIRRORS_MAX; i++) {
        if (pd->route->mirror[i].target || pd->route->mirror[i].other) {
            if (ngx_http_mesh_roll(route->mirrors[i].ppm)) {
                pd->mirrors |= (uint32_t) 1 << i;
            }
        }
    }

    if (pd->mirrors == 0) {
        return NGX_DECLINED;
    }

    if (r != r->main) {
        return ngx_http_mesh_mirror_send(r, pd);
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_mesh_mirror_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;
}


static void
ngx_http_mesh_mirror_body(ngx_http_request_t *r)
{
    ngx_http_mesh_peer_data_t  *pd;

    pd = ngx_http_get_module_ctx(r, ngx_http_mesh_module);

    if (ngx_http_mesh_mirror_send(r, pd) != NGX_DECLINED) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* on with the request: the route phase lets it pass now */
    r->preserve_body = 1;
    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static ngx_int_t
ngx_http_mesh_mirror_send(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd)
{
    u_char                     *p, *colon;
    size_t                      i, name;
    ngx_str_t                   host;
    ngx_http_request_t         *sr;
    ngx_http_mesh_peer_data_t  *spd;

    ngx_http_mesh_authority(r, pd, &host);

    for (i = 0; i < NGX_HTTP_MESH_MIRRORS_MAX; i++) {
        if (!(pd->mirrors & ((uint32_t) 1 << i))) {
            continue;
        }

        if (ngx_http_subrequest(r, &r->uri, &r->args, &sr, NULL,
                                NGX_HTTP_SUBREQUEST_BACKGROUND)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        sr->header_only = 1;
        sr->method = r->method;
        sr->method_name = r->method_name;

        /* the copy goes straight to this location's proxy */
        sr->loc_conf = r->loc_conf;
        sr->write_event_handler = ngx_http_mesh_mirror_start;

        spd = ngx_http_mesh_peer_data(sr, pd->conf);
        if (spd == NULL) {
            return NGX_ERROR;
        }

        spd->routed = 1;
        spd->mirror = 1;
        spd->target = ngx_http_mesh_dest_target(spd, &pd->route->mirror[i]);

        if (pd->gw_table) {
            /* the copy goes to the mirror's upstream ($mesh_upstream of
             * the subrequest) */
            spd->gw_table = pd->gw_table;
            spd->gw_table->refs++;
            spd->gw_vs = pd->gw_vs;
            spd->upstream = pd->route->mirror[i].other;
        }

        /* Envoy sends a copy with "-shadow" after its host name, before
         * the port if any: "a.b:8080" as "a.b-shadow:8080" */

        if (host.len) {
            p = ngx_pnalloc(r->pool, host.len + sizeof("-shadow") - 1);
            if (p == NULL) {
                return NGX_ERROR;
            }

            name = host.len;
            colon = ngx_strlchr(host.data[0] == '[' ? host.data + 1
                                                    : host.data,
                                host.data + host.len, host.data[0] == '['
                                                      ? ']' : ':');

            if (colon && host.data[0] == '[') {
                colon = (colon + 1 < host.data + host.len && colon[1] == ':')
                        ? colon + 1 : NULL;
            }

            if (colon) {
                name = colon - host.data;
            }

            spd->authority.data = p;
            p = ngx_cpymem(p, host.data, name);
            p = ngx_cpymem(p, "-shadow", sizeof("-shadow") - 1);
            p = ngx_cpymem(p, host.data + name, host.len - name);
            spd->authority.len = p - spd->authority.data;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mesh: mirror %uz to \"%s\"", i,
                       pd->route->route->mirrors[i].host
                       ? pd->route->route->mirrors[i].host : "(own)");
    }

    return NGX_DECLINED;
}


/* a copy's first run: this location's content handler, the proxy */
static void
ngx_http_mesh_mirror_start(ngx_http_request_t *sr)
{
    ngx_http_update_location_config(sr);

    if (sr->content_handler == NULL) {
        ngx_http_finalize_request(sr, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    sr->write_event_handler = ngx_http_request_empty_handler;
    ngx_http_finalize_request(sr, sr->content_handler(sr));
}


static void
ngx_http_mesh_delay_done(ngx_http_request_t *r)
{
    ngx_event_t  *wev;

    wev = r->connection->write;

    if (wev->delayed) {
        /* not the timer: a write event while waiting */
        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
}


/* an answer of nginx's own: directResponse, a fault's abort */
ngx_int_t
ngx_http_mesh_respond(ngx_http_request_t *r, ngx_uint_t status,
    const char *body, size_t len)
{
    ngx_int_t                  rc;
    ngx_str_t                  type = ngx_string("text/plain");
    ngx_http_complex_value_t   cv;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_memzero(&cv, sizeof(ngx_http_complex_value_t));
    cv.value.data = (u_char *) body;
    cv.value.len = body ? len : 0;

    rc = ngx_http_send_response(r, status, cv.value.len ? &type : NULL, &cv);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * A redirect: scheme://authority[:port]path?args, each part the
 * request's unless the route gives it (Istio replaces the whole path)
 */
ngx_int_t
ngx_http_mesh_redirect(ngx_http_request_t *r, mesh_redirect_t *rd)
{
    u_char                    *p, *colon;
    size_t                     len;
    ngx_int_t                  rc;
    ngx_str_t                  scheme, host, path;
    ngx_http_complex_value_t   cv;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (rd->scheme) {
        scheme.data = (u_char *) rd->scheme;
        scheme.len = ngx_strlen(rd->scheme);

    } else {
#if (NGX_HTTP_SSL)
        if (r->connection->ssl) {
            ngx_str_set(&scheme, "https");
        } else
#endif
        {
            ngx_str_set(&scheme, "http");
        }
    }

    if (rd->authority) {
        host.data = (u_char *) rd->authority;
        host.len = ngx_strlen(rd->authority);

    } else if (r->headers_in.server.len) {
        host = r->headers_in.server;

    } else {
        host = r->connection->listening->addr_text;
    }

    if (rd->port) {
        /* the port replaces the one the authority has */
        colon = ngx_strlchr(host.data, host.data + host.len, ':');
        if (colon && ngx_strlchr(host.data, host.data + host.len, ']')
                     == NULL)
        {
            host.len = colon - host.data;
        }
    }

    if (rd->uri) {
        path.data = (u_char *) rd->uri;
        path.len = ngx_strlen(rd->uri);

    } else {
        path = r->uri;
    }

    len = scheme.len + 3 + host.len + 1 + NGX_INT_T_LEN + path.len * 3
          + 1 + r->args.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&cv, sizeof(ngx_http_complex_value_t));
    cv.value.data = p;

    p = ngx_sprintf(p, "%V://%V", &scheme, &host);

    if (rd->port) {
        p = ngx_sprintf(p, ":%d", rd->port);
    }

    p = (u_char *) ngx_escape_uri(p, path.data, path.len, NGX_ESCAPE_URI);

    if (r->args.len) {
        *p++ = '?';
        p = ngx_cpymem(p, r->args.data, r->args.len);
    }

    cv.value.len = p - cv.value.data;

    rc = ngx_http_send_response(r, rd->code, NULL, &cv);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * rewrite.uri replaces the path prefix the match took, or the whole path
 * when the match took none; proxy_pass without a URI then sends r->uri
 * (no longer the request line's). rewrite.authority is what
 * $mesh_authority says.
 */
static ngx_int_t
ngx_http_mesh_rewrite(ngx_http_request_t *r, ngx_http_mesh_peer_data_t *pd,
    mesh_rewrite_t *rw)
{
    u_char  *p;
    size_t   len, keep;

    if (rw->authority) {
        pd->authority.data = (u_char *) rw->authority;
        pd->authority.len = ngx_strlen(rw->authority);
    }

    if (rw->uri == NULL) {
        return NGX_OK;
    }

    len = ngx_strlen(rw->uri);
    keep = (pd->prefix && pd->prefix <= r->uri.len)
           ? r->uri.len - pd->prefix : 0;

    p = ngx_pnalloc(r->pool, len + keep);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, rw->uri, len);
    ngx_memcpy(p + len, r->uri.data + r->uri.len - keep, keep);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mesh: rewrite \"%V\" to \"%*s\"", &r->uri,
                   len + keep, p);

    r->uri.data = p;
    r->uri.len = len + keep;
    r->valid_unparsed_uri = 0;

    return NGX_OK;
}


/* is header h named by one of ops' list? */
static ngx_uint_t
ngx_http_mesh_named(ngx_table_elt_t *h, mesh_header_op_t *ops, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (h->key.len == ops[i].name_len
            && ngx_strncasecmp(h->key.data, (u_char *) ops[i].name,
                               ops[i].name_len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_mesh_push_header(ngx_list_t *list, mesh_header_op_t *op)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(list);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->key.data = (u_char *) op->name;
    h->key.len = op->name_len;
    h->value.data = (u_char *) op->value;
    h->value.len = op->value_len;
    h->lowcase_key = (u_char *) op->name;       /* stored lowercase */
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);

    return NGX_OK;
}


/*
 * The request's headers as the proxy sends them: a list without the
 * removed ones and without the old values of the set ones, then the set
 * and added ones. The list is made again (an ngx_list_t cannot lose an
 * element); the old one stays in the pool, where headers_in's pointers
 * still find their values.
 */
static ngx_int_t
ngx_http_mesh_request_headers(ngx_http_request_t *r, mesh_header_ops_t *ops)
{
    size_t            k;
    ngx_uint_t        i;
    ngx_list_t        list;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    if (ops->nset == 0 && ops->nadd == 0 && ops->nremove == 0) {
        return NGX_OK;
    }

    if (ops->nset || ops->nremove) {
        if (ngx_list_init(&list, r->pool, 20, sizeof(ngx_table_elt_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */ ; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (ngx_http_mesh_named(&h[i], ops->remove, ops->nremove)
                || ngx_http_mesh_named(&h[i], ops->set, ops->nset))
            {
                continue;
            }

            nh = ngx_list_push(&list);
            if (nh == NULL) {
                return NGX_ERROR;
            }

            *nh = h[i];
        }

        r->headers_in.headers = list;

        if (list.last == &list.part) {
            /* "last" pointed into the copy on the stack */
            r->headers_in.headers.last = &r->headers_in.headers.part;
        }
    }

    for (k = 0; k < ops->nset; k++) {
        if (ngx_http_mesh_push_header(&r->headers_in.headers, &ops->set[k])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    for (k = 0; k < ops->nadd; k++) {
        if (ngx_http_mesh_push_header(&r->headers_in.headers, &ops->add[k])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the response's: headers nginx writes itself (Server, Date,
 * Content-Length...) are not in the list and stay as nginx writes them */
static void
ngx_http_mesh_response_headers(ngx_http_request_t *r, mesh_header_ops_t *ops)
{
    size_t            k;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ops->nset || ops->nremove) {
        part = &r->headers_out.headers.part;
        h = part->elts;

        for (i = 0; /* void */ ; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].hash
                && (ngx_http_mesh_named(&h[i], ops->remove, ops->nremove)
                    || ngx_http_mesh_named(&h[i], ops->set, ops->nset)))
            {
                h[i].hash = 0;          /* the header filter skips it */
            }
        }
    }

    for (k = 0; k < ops->nset; k++) {
        (void) ngx_http_mesh_push_header(&r->headers_out.headers,
                                         &ops->set[k]);
    }

    for (k = 0; k < ops->nadd; k++) {
        (void) ngx_http_mesh_push_header(&r->headers_out.headers,
                                         &ops->add[k]);
    }
}


/* the cookie a consistent hash on httpCookie with a ttl issued */
static ngx_int_t
ngx_http_mesh_set_cookie(ngx_http_request_t *r, ngx_http_mesh_peer_data_t *pd)
{
    u_char                  *p;
    size_t                   len;
    ngx_table_elt_t         *h;
    ngx_http_mesh_target_t  *t = pd->target;

    len = t->hash_name.len + sizeof("=\"\"; Max-Age=; Path=; HttpOnly") - 1
          + pd->cookie.len + NGX_INT64_LEN + t->cookie_path.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Set-Cookie");
    h->value.data = p;

    p = ngx_sprintf(p, "%V=\"%V\"", &t->hash_name, &pd->cookie);

    /* a ttl of 0: a session cookie */
    if (t->cookie_ttl > 0) {
        p = ngx_sprintf(p, "; Max-Age=%L", (t->cookie_ttl + 999) / 1000);
    }

    if (t->cookie_path.len) {
        p = ngx_sprintf(p, "; Path=%V", &t->cookie_path);
    }

    p = ngx_cpymem(p, "; HttpOnly", 10);

    h->value.len = p - h->value.data;

    return NGX_OK;
}


/*
 * The route's corsPolicy, as Envoy's CORS filter: a request with an
 * Origin the policy allows has it kept for the response's headers; a
 * preflight (OPTIONS with Origin and Access-Control-Request-Method) is
 * answered here when the origin is allowed, or when it is not and the
 * policy does not forward such preflights (unmatchedPreflights: IGNORE).
 * NGX_DECLINED: the request goes on.
 */
static ngx_int_t
ngx_http_mesh_cors(ngx_http_request_t *r, ngx_http_mesh_peer_data_t *pd,
    mesh_cors_t *cors)
{
    ngx_uint_t        allowed;
    ngx_table_elt_t  *origin, *method;

    if (cors == NULL) {
        return NGX_DECLINED;
    }

    origin = ngx_http_mesh_header_in(r, "origin", 6);

    if (origin == NULL || origin->value.len == 0) {
        return NGX_DECLINED;
    }

    allowed = mesh_cors_origin_allowed(cors, (char *) origin->value.data,
                                       origin->value.len, NULL);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mesh: cors origin \"%V\" %s", &origin->value,
                   allowed ? "allowed" : "not allowed");

    if (allowed) {
        pd->cors = NGX_HTTP_MESH_CORS_ALLOWED;
        pd->cors_origin = origin->value;
    }

    if (r->method != NGX_HTTP_OPTIONS) {
        return NGX_DECLINED;
    }

    method = ngx_http_mesh_header_in(r, "access-control-request-method",
                                     29);

    if (method == NULL || method->value.len == 0) {
        return NGX_DECLINED;
    }

    if (!allowed && cors->forward_unmatched) {
        return NGX_DECLINED;
    }

    pd->cors = NGX_HTTP_MESH_CORS_PREFLIGHT;

    return ngx_http_mesh_preflight(r, cors, allowed ? &origin->value : NULL,
                                   &method->value);
}


static ngx_str_t  ngx_http_mesh_acao =
    ngx_string("Access-Control-Allow-Origin");
static ngx_str_t  ngx_http_mesh_acac =
    ngx_string("Access-Control-Allow-Credentials");
static ngx_str_t  ngx_http_mesh_acam =
    ngx_string("Access-Control-Allow-Methods");
static ngx_str_t  ngx_http_mesh_acah =
    ngx_string("Access-Control-Allow-Headers");
static ngx_str_t  ngx_http_mesh_acma = ngx_string("Access-Control-Max-Age");
static ngx_str_t  ngx_http_mesh_aceh =
    ngx_string("Access-Control-Expose-Headers");
static ngx_str_t  ngx_http_mesh_true = ngx_string("true");


/*
 * The preflight's answer: 200 without a body, with what the policy
 * gives; an allowMethods or allowHeaders of "*" repeats what the
 * request asks for, as Envoy does
 */
static ngx_int_t
ngx_http_mesh_preflight(ngx_http_request_t *r, mesh_cors_t *cors,
    ngx_str_t *origin, ngx_str_t *method)
{
    u_char           *p;
    ngx_str_t         value;
    ngx_table_elt_t  *h;

    if (origin
        && ngx_http_mesh_set_header_out(r, &ngx_http_mesh_acao, origin)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (cors->allow_credentials
        && ngx_http_mesh_set_header_out(r, &ngx_http_mesh_acac,
                                        &ngx_http_mesh_true)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (cors->allow_methods) {
        if (ngx_strcmp(cors->allow_methods, "*") == 0) {
            value = *method;

        } else {
            value.data = (u_char *) cors->allow_methods;
            value.len = ngx_strlen(cors->allow_methods);
        }

        if (ngx_http_mesh_set_header_out(r, &ngx_http_mesh_acam, &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (cors->allow_headers) {
        if (ngx_strcmp(cors->allow_headers, "*") == 0) {
            h = ngx_http_mesh_header_in(r, "access-control-request-headers",
                                        30);
            if (h) {
                value = h->value;

            } else {
                ngx_str_null(&value);
            }

        } else {
            value.data = (u_char *) cors->allow_headers;
            value.len = ngx_strlen(cors->allow_headers);
        }

        if (ngx_http_mesh_set_header_out(r, &ngx_http_mesh_acah, &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (cors->max_age >= 0) {
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        value.data = p;
        value.len = ngx_sprintf(p, "%L", cors->max_age) - p;

        if (ngx_http_mesh_set_header_out(r, &ngx_http_mesh_acma, &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_mesh_respond(r, NGX_HTTP_OK, NULL, 0);
}


/* an actual request from an allowed origin: its response's headers */
static ngx_int_t
ngx_http_mesh_cors_headers(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd, mesh_cors_t *cors)
{
    ngx_str_t  value;

    if (ngx_http_mesh_set_header_out(r, &ngx_http_mesh_acao,
                                     &pd->cors_origin)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (cors->allow_credentials
        && ngx_http_mesh_set_header_out(r, &ngx_http_mesh_acac,
                                        &ngx_http_mesh_true)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (cors->expose_headers) {
        value.data = (u_char *) cors->expose_headers;
        value.len = ngx_strlen(cors->expose_headers);

        if (ngx_http_mesh_set_header_out(r, &ngx_http_mesh_aceh, &value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a response header replacing any the upstream sent under that name */
static ngx_int_t
ngx_http_mesh_set_header_out(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash && h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
        {
            h[i].hash = 0;          /* the header filter skips it */
        }
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->key = *name;
    h->value = *value;

    h->lowcase_key = ngx_pnalloc(r->pool, name->len);
    if (h->lowcase_key == NULL) {
        h->hash = 0;
        return NGX_ERROR;
    }

    h->hash = ngx_hash_strlow(h->lowcase_key, name->data, name->len);
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_mesh_header_filter(ngx_http_request_t *r)
{
    mesh_http_route_t          *route;
    ngx_http_mesh_peer_data_t  *pd;

    pd = ngx_http_get_module_ctx(r, ngx_http_mesh_module);

    if (pd && pd->cookie.len && pd->target) {
        if (ngx_http_mesh_set_cookie(r, pd) != NGX_OK) {
            return NGX_ERROR;
        }

        pd->cookie.len = 0;     /* once */
    }

    /* a preflight's answer carries what ngx_http_mesh_preflight() set,
     * and nothing of the route's (Envoy's CORS filter answers it before
     * the router) */

    if (pd && pd->route && pd->routed
        && pd->cors != NGX_HTTP_MESH_CORS_PREFLIGHT)
    {
        route = pd->route->route;

        ngx_http_mesh_response_headers(r, &route->headers.response);

        if (pd->dest >= 0 && (size_t) pd->dest < route->nroutes) {
            ngx_http_mesh_response_headers(r,
                &route->routes[pd->dest].headers.response);
        }

        /* Envoy's CORS filter sees the response after the router has
         * applied the route's operations: its headers win */

        if (pd->cors == NGX_HTTP_MESH_CORS_ALLOWED && route->cors
            && ngx_http_mesh_cors_headers(r, pd, route->cors) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_next_header_filter(r);
}


/* the request's authority: rewrite.authority, else its Host */
static void
ngx_http_mesh_authority(ngx_http_request_t *r, ngx_http_mesh_peer_data_t *pd,
    ngx_str_t *s)
{
    if (pd && pd->authority.len) {
        *s = pd->authority;

    } else if (r->headers_in.host) {
        *s = r->headers_in.host->value;

    } else {
        *s = r->headers_in.server;
    }
}


/* $mesh_authority: rewrite.authority, else the request's Host */
ngx_int_t
ngx_http_mesh_variable_authority(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                   s;
    ngx_http_mesh_peer_data_t  *pd;

    pd = ngx_http_get_module_ctx(r, ngx_http_mesh_module);

    ngx_http_mesh_authority(r, pd, &s);

    v->len = s.len;
    v->data = s.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
