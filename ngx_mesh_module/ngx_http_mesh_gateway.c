
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * nginx as an Istio ingress gateway: a location with mesh_gateway routes
 * its requests by the VirtualServices bound to the Gateways it names, as
 * Envoy at Istio's gateway does: the Gateway's server for the port (and
 * TLS) whose hosts take the request's Host, then the VirtualService with
 * the most specific host that matches it, then its routes as in the
 * route phase (ngx_http_mesh_route.c). The destination is reached
 * through the mesh upstream that routes its service, which $mesh_upstream
 * names for proxy_pass. The routes are built once per generation of the
 * policies in each worker, never per request.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


static ngx_http_mesh_gw_table_t *ngx_http_mesh_gw_build(
    ngx_http_mesh_main_conf_t *mmcf, ngx_log_t *log);
static void ngx_http_mesh_gw_dest(ngx_http_mesh_main_conf_t *mmcf,
    const mesh_virtual_service_t *vs, ngx_http_mesh_dest_t *dst,
    const char *host, const char *subset, int port, ngx_log_t *log);
static ngx_int_t ngx_http_mesh_gw_stream_dests(ngx_pool_t *pool,
    ngx_http_mesh_main_conf_t *mmcf, const mesh_virtual_service_t *vs,
    const mesh_destination_t *routes, size_t n, ngx_http_mesh_dest_t **out,
    ngx_log_t *log);
static ngx_int_t ngx_http_mesh_gw_server(const mesh_gateway_t *gw,
    ngx_uint_t port, ngx_uint_t https, ngx_str_t *host, const char *ns,
    ngx_uint_t *redirect);


/* this worker's table for the current policies */
static ngx_http_mesh_gw_table_t  *ngx_http_mesh_gw_current;


char *
ngx_http_mesh_gateway(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_loc_conf_t  *mlcf = conf;

    return ngx_http_mesh_gateway_names(cf, cmd, &mlcf->gateways,
                                       &mlcf->port);
}


/* "mesh_gateway NAME ... [port=N]", of a location or a stream server */
char *
ngx_http_mesh_gateway_names(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_array_t **gateways, ngx_int_t *gw_port)
{
    u_char      *p, *slash;
    ngx_int_t    port;
    ngx_str_t   *value, *name;
    ngx_uint_t   i;

    if (*gateways) {
        return "is duplicate";
    }

    *gateways = ngx_array_create(cf->pool, cf->args->nelts, sizeof(ngx_str_t));
    if (*gateways == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "port=", 5) == 0) {
            port = ngx_atoi(value[i].data + 5, value[i].len - 5);

            if (port < 1 || port > 65535 || *gw_port != NGX_CONF_UNSET) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\" of \"%V\", a "
                                   "port is 1..65535, given once",
                                   &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }

            *gw_port = port;
            continue;
        }

        /* NAME is the Gateway "default/NAME" */

        slash = ngx_strlchr(value[i].data, value[i].data + value[i].len, '/');

        if ((slash
             && (!mesh_name_valid((char *) value[i].data,
                                  slash - value[i].data)
                 || ngx_strlchr(value[i].data, slash, '.') != NULL
                 || !mesh_name_valid((char *) slash + 1,
                                     value[i].data + value[i].len
                                     - slash - 1)))
            || (slash == NULL
                && !mesh_name_valid((char *) value[i].data, value[i].len)))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid Gateway \"%V\" in \"%V\": NAME or "
                               "NAMESPACE/NAME, names " MESH_NAME_RULE,
                               &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }

        name = ngx_array_push(*gateways);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        if (slash) {
            *name = value[i];
            continue;
        }

        name->len = sizeof("default/") - 1 + value[i].len;
        name->data = ngx_pnalloc(cf->pool, name->len);
        if (name->data == NULL) {
            return NGX_CONF_ERROR;
        }

        p = ngx_cpymem(name->data, "default/", sizeof("default/") - 1);
        ngx_memcpy(p, value[i].data, value[i].len);
    }

    if ((*gateways)->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" names no Gateway", &cmd->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_mesh_gateway_route(ngx_http_request_t *r,
    ngx_http_mesh_loc_conf_t *mlcf)
{
    int                         m, best;
    u_char                      name[2 * MESH_NAME_MAX + 2];
    ngx_str_t                  *names, host;
    ngx_int_t                   rc;
    ngx_uint_t                  i, k, h, port, https, redirect, server;
    mesh_redirect_t             rd;
    mesh_policies_t            *policies;
    const mesh_gateway_t       *gw;
    ngx_http_mesh_gw_vs_t      *tvs, *found;
    ngx_http_mesh_route_t      *rt;
    ngx_http_mesh_gw_table_t   *table;
    ngx_http_mesh_peer_data_t  *pd;
    ngx_http_mesh_main_conf_t  *mmcf;

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mesh_module);

    if (ngx_http_mesh_worker.cycle != ngx_cycle
        || (mmcf->zone.sh
            && mmcf->zone.sh->generation != ngx_http_mesh_worker.generation))
    {
        (void) ngx_http_mesh_sync(mmcf, r->connection->log);
    }

    table = ngx_http_mesh_gw_table(mmcf, r->connection->log);
    if (table == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    policies = table->gen ? table->gen->policies : NULL;

    /* the Host as nginx validated it: lowercase, without the port */
    host = r->headers_in.server;

    if (mlcf->port) {
        port = (ngx_uint_t) mlcf->port;

    } else {
        if (ngx_connection_local_sockaddr(r->connection, NULL, 0) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        port = ngx_inet_get_port(r->connection->local_sockaddr);
    }

    https = 0;
#if (NGX_HTTP_SSL)
    https = (r->connection->ssl != NULL);
#endif

    names = mlcf->gateways->elts;
    found = NULL;
    best = -1;
    server = 0;

    for (i = 0; i < mlcf->gateways->nelts; i++) {
        gw = mesh_policies_gateway(policies, (char *) names[i].data,
                                   names[i].len);

        if (gw == NULL || !ngx_http_mesh_gw_applies(mmcf, gw)) {
            continue;
        }

        if (!ngx_http_mesh_gw_server(gw, port, https, &host, NULL,
                                     &redirect))
        {
            continue;
        }

        server = 1;

        if (redirect) {
            /* the server asks for TLS: 301 to https, as Envoy answers */
            ngx_memzero(&rd, sizeof(mesh_redirect_t));
            rd.scheme = "https";
            rd.code = NGX_HTTP_MOVED_PERMANENTLY;

            return ngx_http_mesh_redirect(r, &rd);
        }

        ngx_memcpy(name, names[i].data, names[i].len);
        name[names[i].len] = '\0';

        for (k = 0; k < table->nvss; k++) {
            tvs = &table->vss[k];

            /* a VirtualService with tcp or tls routes alone is for the
             * stream gateways */

            if (tvs->vs->nhttp == 0
                || !mesh_vs_at_gateway(tvs->vs, (char *) name)
                || !ngx_http_mesh_gw_server(gw, port, https, &host,
                                            tvs->vs->ns, &redirect))
            {
                continue;
            }

            for (h = 0; h < tvs->vs->nhosts; h++) {
                m = mesh_host_match(tvs->vs->hosts[h], (char *) host.data,
                                    host.len, 1);
                if (m > best) {
                    best = m;
                    found = tvs;
                }
            }
        }
    }

    if (found == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mesh: gateway: %s for host \"%V\" on port %ui%s: 404",
                      server ? "no VirtualService"
                             : "no Gateway with a server",
                      &host, port, https ? " (TLS)" : "");
        return NGX_HTTP_NOT_FOUND;
    }

    pd = ngx_http_mesh_peer_data(r, NULL);
    if (pd == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pd->gw_table = table;
    table->refs++;
    pd->gw_vs = found->vs;

    rt = ngx_http_mesh_find_route_in(r, found->routes, found->vs->nhttp,
                                     &pd->prefix);
    pd->route = rt;
    pd->routed = 1;

    if (rt == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mesh: gateway: no route of VirtualService \"%s\" "
                      "fits the request: 404", found->vs->name);
        return NGX_HTTP_NOT_FOUND;
    }

    rc = ngx_http_mesh_route_start(r, pd);

    return rc;
}


/*
 * Does a server of gw on port (over TLS or not) take host, and, when ns
 * is given, the VirtualServices of namespace ns for it? *redirect: such
 * a server asks for TLS (httpsRedirect) of a request without it.
 */
static ngx_int_t
ngx_http_mesh_gw_server(const mesh_gateway_t *gw, ngx_uint_t port,
    ngx_uint_t https, ngx_str_t *host, const char *ns, ngx_uint_t *redirect)
{
    size_t                        i, k;
    const char                   *pattern;
    const mesh_gateway_server_t  *sv;

    *redirect = 0;

    for (i = 0; i < gw->nservers; i++) {
        sv = &gw->servers[i];

        if (sv->stream != MESH_GW_HTTP
            || (ngx_uint_t) sv->port != port
            || (ngx_uint_t) sv->https != https)
        {
            continue;
        }

        for (k = 0; k < sv->nhosts; k++) {
            pattern = ngx_http_mesh_gw_host(sv->hosts[k], ns);
            if (pattern == NULL) {
                continue;
            }

            if (mesh_host_match(pattern, (char *) host->data, host->len, 1)
                >= 0)
            {
                *redirect = (sv->https_redirect && !https);
                return 1;
            }
        }
    }

    return 0;
}


/*
 * A Gateway server's host: "HOST" or "NS/HOST". The pattern HOST, or NULL
 * when ns is given and the host takes the VirtualServices of another
 * namespace only.
 */
const char *
ngx_http_mesh_gw_host(const char *host, const char *ns)
{
    size_t       nslen;
    const char  *slash;

    slash = ngx_strchr(host, '/');

    if (slash == NULL) {
        return host;
    }

    nslen = slash - host;

    if (ns && (ngx_strlen(ns) != nslen || ngx_strncmp(ns, host, nslen) != 0)) {
        return NULL;
    }

    return slash + 1;
}


/*
 * The location naming the Gateway is the gateway workload: its selector
 * is not needed to find it. An nginx with mesh_labels that do not hold
 * the selector is another workload, where the Gateway does not apply.
 */
ngx_uint_t
ngx_http_mesh_gw_applies(ngx_http_mesh_main_conf_t *mmcf,
    const mesh_gateway_t *gw)
{
    return gw->nselector == 0 || mmcf->labels == NULL
           || mesh_labels_hold(mmcf->labels->elts, mmcf->labels->nelts,
                               gw->selector, gw->nselector);
}


ngx_http_mesh_gw_table_t *
ngx_http_mesh_gw_table(ngx_http_mesh_main_conf_t *mmcf, ngx_log_t *log)
{
    ngx_http_mesh_gw_table_t  *t;

    t = ngx_http_mesh_gw_current;

    if (t && t->gen == ngx_http_mesh_worker.gen && t->cycle == ngx_cycle) {
        return t;
    }

    t = ngx_http_mesh_gw_build(mmcf, log);
    if (t == NULL) {
        return ngx_http_mesh_gw_current;    /* the last one, if any */
    }

    if (ngx_http_mesh_gw_current) {
        ngx_http_mesh_gw_table_release(ngx_http_mesh_gw_current);
    }

    ngx_http_mesh_gw_current = t;

    return t;
}


static ngx_http_mesh_gw_table_t *
ngx_http_mesh_gw_build(ngx_http_mesh_main_conf_t *mmcf, ngx_log_t *log)
{
    size_t                         i, j, k, n;
    ngx_pool_t                    *pool;
    mesh_policies_t               *policies;
    ngx_http_mesh_gen_t           *gen;
    ngx_http_mesh_route_t         *rt;
    ngx_http_mesh_gw_vs_t         *tvs;
    ngx_http_mesh_gw_table_t      *t;
    const mesh_virtual_service_t  *vs;

    gen = ngx_http_mesh_worker.gen;
    policies = gen ? gen->policies : NULL;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    t = ngx_pcalloc(pool, sizeof(ngx_http_mesh_gw_table_t));
    if (t == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    t->pool = pool;
    t->refs = 1;
    t->cycle = (ngx_cycle_t *) ngx_cycle;

    if (gen) {
        t->gen = gen;
        gen->refs++;
    }

    if (policies == NULL) {
        return t;
    }

    for (i = 0; i < policies->ngateways; i++) {
        if (!ngx_http_mesh_gw_applies(mmcf, &policies->gateways[i])) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "mesh: Gateway \"%s\" does not apply here: its "
                          "selector is not held by mesh_labels",
                          policies->gateways[i].gateway);
        }
    }

    /* the VirtualServices bound to a gateway ("mesh" is not one) */

    n = 0;

    for (i = 0; i < policies->nvss; i++) {
        n += (policies->vss[i].ngateways
              > (size_t) (policies->vss[i].mesh ? 1 : 0));
    }

    t->vss = ngx_pcalloc(pool, (n + 1) * sizeof(ngx_http_mesh_gw_vs_t));
    if (t->vss == NULL) {
        goto failed;
    }

    for (i = 0; i < policies->nvss; i++) {
        vs = &policies->vss[i];

        if (vs->ngateways <= (size_t) (vs->mesh ? 1 : 0)) {
            continue;
        }

        tvs = &t->vss[t->nvss++];
        tvs->vs = vs;

        /* tcp[] and tls[]: the connections of stream mesh_gateway
         * servers, through the stream upstreams */

        if (vs->ntcp) {
            tvs->tcp = ngx_pcalloc(pool, vs->ntcp
                                         * sizeof(ngx_http_mesh_dest_t *));
            if (tvs->tcp == NULL) {
                goto failed;
            }

            for (j = 0; j < vs->ntcp; j++) {
                if (ngx_http_mesh_gw_stream_dests(pool, mmcf, vs,
                                                  vs->tcp[j].routes,
                                                  vs->tcp[j].nroutes,
                                                  &tvs->tcp[j], log)
                    != NGX_OK)
                {
                    goto failed;
                }
            }
        }

        if (vs->ntls) {
            tvs->tls = ngx_pcalloc(pool, vs->ntls
                                         * sizeof(ngx_http_mesh_dest_t *));
            if (tvs->tls == NULL) {
                goto failed;
            }

            for (j = 0; j < vs->ntls; j++) {
                if (ngx_http_mesh_gw_stream_dests(pool, mmcf, vs,
                                                  vs->tls[j].routes,
                                                  vs->tls[j].nroutes,
                                                  &tvs->tls[j], log)
                    != NGX_OK)
                {
                    goto failed;
                }
            }
        }

        tvs->routes = ngx_pcalloc(pool, (vs->nhttp + 1)
                                        * sizeof(ngx_http_mesh_route_t));
        if (tvs->routes == NULL) {
            goto failed;
        }

        for (j = 0; j < vs->nhttp; j++) {
            rt = &tvs->routes[j];
            rt->route = &vs->http[j];

            rt->dest = ngx_pcalloc(pool, (rt->route->nroutes + 1)
                                         * sizeof(ngx_http_mesh_dest_t));
            if (rt->dest == NULL) {
                goto failed;
            }

            for (k = 0; k < rt->route->nroutes; k++) {
                ngx_http_mesh_gw_dest(mmcf, vs, &rt->dest[k],
                                      rt->route->routes[k].host,
                                      rt->route->routes[k].subset,
                                      rt->route->routes[k].port, log);
            }

            if (rt->route->nmirrors == 0) {
                continue;
            }

            rt->mirror = ngx_pcalloc(pool, rt->route->nmirrors
                                           * sizeof(ngx_http_mesh_dest_t));
            if (rt->mirror == NULL) {
                goto failed;
            }

            for (k = 0; k < rt->route->nmirrors; k++) {
                ngx_http_mesh_gw_dest(mmcf, vs, &rt->mirror[k],
                                      rt->route->mirrors[k].host,
                                      rt->route->mirrors[k].subset,
                                      rt->route->mirrors[k].port, log);
            }
        }
    }

    return t;

failed:

    ngx_http_mesh_gw_table_release(t);
    return NULL;
}


/*
 * A destination at a gateway is always another service's: the mesh
 * upstream that routes it, the one declared for the route's port when
 * there is one (mesh SERVICE port=N), else the first
 */
static void
ngx_http_mesh_gw_dest(ngx_http_mesh_main_conf_t *mmcf,
    const mesh_virtual_service_t *vs, ngx_http_mesh_dest_t *dst,
    const char *host, const char *subset, int port, ngx_log_t *log)
{
    dst->subset = subset;
    dst->other = ngx_http_mesh_upstream_of(mmcf, host, ngx_strlen(host),
                                           port);
    if (dst->other) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "mesh: VirtualService \"%s\" routes requests at a gateway "
                  "to service \"%s\", which no mesh upstream of this nginx "
                  "routes: they fail with 502 (add an upstream block with "
                  "\"mesh %s;\")", vs->name, host, host);
}


/*
 * The destinations of a tcp or tls route at a gateway: the stream mesh
 * upstreams that route their services. Missing ones are said only where
 * a stream server is a gateway (mesh_gateway in stream{}).
 */
static ngx_int_t
ngx_http_mesh_gw_stream_dests(ngx_pool_t *pool,
    ngx_http_mesh_main_conf_t *mmcf, const mesh_virtual_service_t *vs,
    const mesh_destination_t *routes, size_t n, ngx_http_mesh_dest_t **out,
    ngx_log_t *log)
{
    size_t                 k;
    ngx_http_mesh_dest_t  *d;

    d = ngx_pcalloc(pool, (n + 1) * sizeof(ngx_http_mesh_dest_t));
    if (d == NULL) {
        return NGX_ERROR;
    }

    for (k = 0; k < n; k++) {
        d[k].subset = routes[k].subset;
        d[k].other = ngx_http_mesh_stream_upstream_of(mmcf, routes[k].host,
                                                  ngx_strlen(routes[k].host));

        if (d[k].other == NULL && mmcf->stream_gateways) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "mesh: VirtualService \"%s\" routes connections "
                          "at a gateway to service \"%s\", which no stream "
                          "mesh upstream of this nginx routes: they are "
                          "closed (add an upstream block with \"mesh %s;\" "
                          "in stream{})", vs->name, routes[k].host,
                          routes[k].host);
        }
    }

    *out = d;

    return NGX_OK;
}


void
ngx_http_mesh_gw_table_release(ngx_http_mesh_gw_table_t *t)
{
    if (t == NULL || --t->refs) {
        return;
    }

    if (t->gen) {
        ngx_http_mesh_gen_release(t->gen);
    }

    ngx_destroy_pool(t->pool);
}


/* the upstream block the request goes on to: at a gateway, the one
 * routing the destination; else the location's */
ngx_int_t
ngx_http_mesh_variable_upstream(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_mesh_srv_conf_t   *mscf;
    ngx_http_mesh_peer_data_t  *pd;

    pd = ngx_http_get_module_ctx(r, ngx_http_mesh_module);
    mscf = pd ? (pd->upstream ? pd->upstream : pd->conf) : NULL;

    if (mscf == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = mscf->name.len;
    v->data = mscf->name.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
