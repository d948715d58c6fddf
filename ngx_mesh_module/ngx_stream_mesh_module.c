
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * Mesh upstreams in nginx's stream module: TCP services balanced over the
 * instances the registry lists, from the same views, zone and poller as
 * the http upstreams (one snapshot per nginx). A stream upstream with
 * "mesh SERVICE" is kept with the http ones, in the http mesh main
 * configuration, so that its service is polled for and its view is
 * built as theirs are; the picks are the http upstreams' own
 * (ngx_http_mesh_pick()).
 *
 * Debian builds the stream module as a module of its own
 * (ngx_stream_module.so): this module's references to it are weak, so
 * that the .so loads into an nginx without stream, where no stream{}
 * block, and so none of the code below, can run. With stream, its
 * load_module line must come before this module's (a weak reference is
 * bound when this .so is loaded); "mesh" in stream{} says so otherwise.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_stream.h>

#include "ngx_http_mesh_module.h"


#pragma weak ngx_stream_upstream_module
#pragma weak ngx_stream_core_module
#pragma weak ngx_stream_complex_value
#pragma weak ngx_stream_compile_complex_value
#pragma weak ngx_stream_add_variable
#pragma weak ngx_stream_get_variable_index
#pragma weak ngx_stream_get_indexed_variable
#pragma weak ngx_stream_finalize_session


/* a connection at a gateway: where its route sends it */
typedef struct {
    ngx_http_mesh_srv_conf_t      *upstream;    /* $mesh_upstream */
    ngx_http_mesh_dest_t          *dest;
    ngx_http_mesh_gw_table_t      *table;       /* held */
} ngx_stream_mesh_gw_ctx_t;



static ngx_int_t ngx_stream_mesh_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_stream_mesh_init(ngx_conf_t *cf);
static void ngx_stream_mesh_server_name(ngx_stream_session_t *s,
    ngx_str_t *sni);
static void *ngx_stream_mesh_create_srv_conf(ngx_conf_t *cf);
static ngx_http_mesh_main_conf_t *ngx_stream_mesh_registry(ngx_conf_t *cf,
    ngx_command_t *cmd);
static char *ngx_stream_mesh_gateway(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_stream_mesh_gateway_content(ngx_stream_session_t *s);
static ngx_int_t ngx_stream_mesh_gateway_handler(ngx_stream_session_t *s);
static ngx_uint_t ngx_stream_mesh_gw_server(const mesh_gateway_t *gw,
    ngx_uint_t port, ngx_str_t *sni, const mesh_virtual_service_t *vs);
static ngx_uint_t ngx_stream_mesh_gw_hosts(const char *pattern,
    const mesh_virtual_service_t *vs);
static ngx_uint_t ngx_stream_mesh_gw_tls_on(ngx_http_mesh_srv_conf_t *mscf,
    mesh_policies_t *policies, ngx_uint_t port);
static ngx_int_t ngx_stream_mesh_gw_route(ngx_stream_session_t *s,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_gw_table_t *table,
    ngx_uint_t port, ngx_str_t *sni);
static void ngx_stream_mesh_gw_cleanup(void *data);
static ngx_int_t ngx_stream_mesh_variable_upstream(ngx_stream_session_t *s,
    ngx_stream_variable_value_t *v, uintptr_t data);
static char *ngx_stream_mesh_upstream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_stream_mesh_balancer(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_stream_mesh_init_upstream(ngx_conf_t *cf,
    ngx_stream_upstream_srv_conf_t *us);
static ngx_int_t ngx_stream_mesh_init_peer(ngx_stream_session_t *s,
    ngx_stream_upstream_srv_conf_t *us);
static ngx_http_mesh_target_t *ngx_stream_mesh_route(ngx_stream_session_t *s,
    ngx_http_mesh_peer_data_t *pd);
static ngx_int_t ngx_stream_mesh_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_stream_mesh_connecting(ngx_event_t *ev);
static void ngx_stream_mesh_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
static void ngx_stream_mesh_session(ngx_http_mesh_stat_t *st,
    ngx_stream_upstream_state_t *us);



static ngx_command_t  ngx_stream_mesh_commands[] = {

    { ngx_string("mesh"),
      NGX_STREAM_UPS_CONF|NGX_CONF_TAKE1,
      ngx_stream_mesh_upstream,
      NGX_STREAM_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mesh_balancer"),
      NGX_STREAM_UPS_CONF|NGX_CONF_TAKE12,
      ngx_stream_mesh_balancer,
      NGX_STREAM_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mesh_gateway"),
      NGX_STREAM_SRV_CONF|NGX_CONF_1MORE,
      ngx_stream_mesh_gateway,
      NGX_STREAM_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_stream_module_t  ngx_stream_mesh_module_ctx = {
    ngx_stream_mesh_add_variables,         /* preconfiguration */
    ngx_stream_mesh_init,                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_stream_mesh_create_srv_conf,       /* create server configuration */
    NULL                                   /* merge server configuration */
};


ngx_module_t  ngx_stream_mesh_module = {
    NGX_MODULE_V1,
    &ngx_stream_mesh_module_ctx,           /* module context */
    ngx_stream_mesh_commands,              /* module directives */
    NGX_STREAM_MODULE,                     /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static const char  *ngx_stream_mesh_balancers[] = {
    "round_robin", "random", "least_conn", "consistent_hash", NULL
};


static ngx_str_t  ngx_stream_mesh_upstream_name = ngx_string("mesh_upstream");

/* the server name of the connection's ClientHello (ssl_preread on), or
 * empty */
static void
ngx_stream_mesh_server_name(ngx_stream_session_t *s, ngx_str_t *sni)
{
    ngx_http_mesh_srv_conf_t     *mscf;
    ngx_stream_variable_value_t  *v;

    ngx_str_null(sni);

    mscf = ngx_stream_get_module_srv_conf(s, ngx_stream_mesh_module);

    if (mscf->gw_sni == NGX_ERROR) {
        return;
    }

    v = ngx_stream_get_indexed_variable(s, mscf->gw_sni);

    if (v && !v->not_found && v->len) {
        sni->len = v->len;
        sni->data = v->data;
    }
}


static ngx_int_t
ngx_stream_mesh_add_variables(ngx_conf_t *cf)
{
    ngx_stream_variable_t  *var;

    if (&ngx_stream_core_module == NULL) {
        /* the stream module was loaded after this one: "mesh" and
         * "mesh_gateway" say so */
        return NGX_OK;
    }

    var = ngx_stream_add_variable(cf, &ngx_stream_mesh_upstream_name,
                                  NGX_STREAM_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_stream_mesh_variable_upstream;

    return NGX_OK;
}


/*
 * A gateway's routing runs when the content phase starts, before the
 * server's own content handler (proxy_pass): by then the preread phase
 * is over, and ssl_preread has read the ClientHello (a preread handler
 * of this module could not run after ssl_preread's, which ends the phase
 * once it has the name).
 */
static ngx_int_t
ngx_stream_mesh_init(ngx_conf_t *cf)
{
    ngx_int_t                     index;
    ngx_uint_t                    i;
    ngx_hash_key_t               *key;
    ngx_http_mesh_srv_conf_t     *mscf;
    ngx_stream_core_srv_conf_t  **cscfp;
    ngx_stream_core_main_conf_t  *cmcf;

    static ngx_str_t  sni = ngx_string("ssl_preread_server_name");

    if (&ngx_stream_core_module == NULL) {
        return NGX_OK;
    }

    cmcf = ngx_stream_conf_get_module_main_conf(cf, ngx_stream_core_module);

    /* the ClientHello's server name, where nginx has ssl_preread (a
     * stream module built without it has no such variable: the tls
     * routes then take nothing, the tcp routes still work) */

    index = NGX_ERROR;
    key = cmcf->variables_keys->keys.elts;

    for (i = 0; i < cmcf->variables_keys->keys.nelts; i++) {
        if (key[i].key.len == sni.len
            && ngx_strncmp(key[i].key.data, sni.data, sni.len) == 0)
        {
            index = ngx_stream_get_variable_index(cf, &sni);
            if (index == NGX_ERROR) {
                return NGX_ERROR;
            }

            break;
        }
    }

    cscfp = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        mscf = cscfp[i]->ctx->srv_conf[ngx_stream_mesh_module.ctx_index];
        mscf->gw_sni = index;

        if (mscf->gateways == NULL) {
            continue;
        }

        if (cscfp[i]->handler == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"mesh_gateway\" needs \"proxy_pass "
                          "$mesh_upstream\" in the server in %s:%ui",
                          cscfp[i]->file_name, cscfp[i]->line);
            return NGX_ERROR;
        }

        mscf->gw_content = (void *) cscfp[i]->handler;
        cscfp[i]->handler = ngx_stream_mesh_gateway_content;
    }

    return NGX_OK;
}


static void *
ngx_stream_mesh_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_mesh_srv_conf_t  *mscf;

    mscf = ngx_http_mesh_alloc_srv_conf(cf);
    if (mscf == NULL) {
        return NULL;
    }

    mscf->stream = 1;
    mscf->gw_port = NGX_CONF_UNSET;
    mscf->gw_sni = NGX_ERROR;

    return mscf;
}


/* the registry is the http block's: its poller and zone serve stream's */
static ngx_http_mesh_main_conf_t *
ngx_stream_mesh_registry(ngx_conf_t *cf, ngx_command_t *cmd)
{
    ngx_http_conf_ctx_t        *hctx;
    ngx_http_mesh_main_conf_t  *mmcf;

    if (&ngx_stream_upstream_module == NULL) {
        /* not bound when this module was loaded: see the top */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" in stream{} needs the stream module "
                           "loaded before the mesh module: put its "
                           "load_module line first", &cmd->name);
        return NULL;
    }

    hctx = (ngx_http_conf_ctx_t *) cf->cycle->conf_ctx[ngx_http_module.index];
    mmcf = hctx ? hctx->main_conf[ngx_http_mesh_module.ctx_index] : NULL;

    if (mmcf == NULL || mmcf->registry == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" in stream{} needs \"mesh_registry\" in an "
                           "http{} block that comes before stream{}",
                           &cmd->name);
        return NULL;
    }

    return mmcf;
}


static char *
ngx_stream_mesh_upstream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_srv_conf_t  *mscf = conf;

    ngx_str_t                        *value;
    ngx_http_mesh_srv_conf_t        **p;
    ngx_http_mesh_main_conf_t        *mmcf;
    ngx_stream_upstream_server_t     *us;
    ngx_stream_upstream_srv_conf_t   *uscf;

    mmcf = ngx_stream_mesh_registry(cf, cmd);
    if (mmcf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (mscf->service.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (!mesh_name_valid((char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid service name \"%V\" in \"%V\" directive, "
                           "names are " MESH_NAME_RULE,
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    uscf = ngx_stream_conf_get_module_srv_conf(cf, ngx_stream_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

    uscf->peer.init_upstream = ngx_stream_mesh_init_upstream;

    /* as in http: an upstream block without servers is refused, so one
     * without an address stands in for the registry's members */
    if (uscf->servers->nelts == 0) {
        us = ngx_array_push(uscf->servers);
        if (us == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(us, sizeof(ngx_stream_upstream_server_t));
        us->name = value[1];
        us->weight = 1;
    }

    mscf->service = value[1];
    mscf->name = uscf->host;
    mscf->main = mmcf;

    /* counters and outlier state apart from an http upstream's of the
     * same service, as Envoy keeps a cluster per port */
    mscf->stats.len = sizeof("tcp:") - 1 + value[1].len;
    mscf->stats.data = ngx_pnalloc(cf->pool, mscf->stats.len);
    if (mscf->stats.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(ngx_cpymem(mscf->stats.data, "tcp:", 4), value[1].data,
               value[1].len);

    p = ngx_array_push(&mmcf->upstreams);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    *p = mscf;

    return NGX_CONF_OK;
}


static char *
ngx_stream_mesh_balancer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_srv_conf_t  *mscf = conf;

    ngx_str_t                           *value;
    ngx_uint_t                           b;
    ngx_stream_complex_value_t          *cv;
    ngx_stream_compile_complex_value_t   ccv;

    static const ngx_uint_t  map[] = {
        NGX_HTTP_MESH_RR, NGX_HTTP_MESH_RANDOM, NGX_HTTP_MESH_LEAST_REQUEST,
        NGX_HTTP_MESH_CHASH
    };

    if (mscf->balancer != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (b = 0; ngx_stream_mesh_balancers[b]; b++) {
        if (ngx_strcmp(value[1].data, ngx_stream_mesh_balancers[b]) == 0) {
            break;
        }
    }

    if (ngx_stream_mesh_balancers[b] == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid balancer \"%V\" in \"%V\" directive, "
                           "it must be round_robin, random, least_conn or "
                           "consistent_hash", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (map[b] == NGX_HTTP_MESH_CHASH && cf->args->nelts != 3) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V consistent_hash\" needs a key, such as "
                           "\"consistent_hash $remote_addr\"", &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (map[b] != NGX_HTTP_MESH_CHASH && cf->args->nelts != 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V %V\" directive, "
                           "only consistent_hash takes a key", &value[2],
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    if (map[b] == NGX_HTTP_MESH_CHASH) {
        cv = ngx_palloc(cf->pool, sizeof(ngx_stream_complex_value_t));
        if (cv == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_stream_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &value[2];
        ccv.complex_value = cv;

        if (ngx_stream_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        mscf->stream_key = cv;
    }

    mscf->balancer = map[b];

    return NGX_CONF_OK;
}


/*
 * "mesh_gateway NAME ... [port=N]" in a stream server: its connections
 * are routed by the tcp and tls routes of the VirtualServices bound to
 * the Gateways named, to the stream upstream $mesh_upstream names
 */
static char *
ngx_stream_mesh_gateway(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_srv_conf_t  *mscf = conf;

    char                       *rv;
    ngx_http_mesh_main_conf_t  *mmcf;

    mmcf = ngx_stream_mesh_registry(cf, cmd);
    if (mmcf == NULL) {
        return NGX_CONF_ERROR;
    }

    rv = ngx_http_mesh_gateway_names(cf, cmd, &mscf->gateways,
                                     &mscf->gw_port);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    mscf->main = mmcf;
    mmcf->stream_gateways = 1;

    return NGX_CONF_OK;
}


static void
ngx_stream_mesh_gateway_content(ngx_stream_session_t *s)
{
    ngx_int_t                       rc;
    ngx_http_mesh_srv_conf_t       *mscf;
    ngx_stream_content_handler_pt   handler;

    rc = ngx_stream_mesh_gateway_handler(s);

    if (rc != NGX_DECLINED) {
        ngx_stream_finalize_session(s, (rc == NGX_ERROR)
                                       ? NGX_STREAM_INTERNAL_SERVER_ERROR
                                       : (ngx_uint_t) rc);
        return;
    }

    mscf = ngx_stream_get_module_srv_conf(s, ngx_stream_mesh_module);
    handler = (ngx_stream_content_handler_pt) mscf->gw_content;

    handler(s);
}


/*
 * A connection to a server with mesh_gateway, once ssl_preread has run:
 * the route that takes it, and from it the stream upstream $mesh_upstream
 * names. None: the connection is closed (Envoy closes a connection no
 * filter chain takes).
 */
static ngx_int_t
ngx_stream_mesh_gateway_handler(ngx_stream_session_t *s)
{
    ngx_str_t                   sni;
    ngx_uint_t                  port;
    ngx_http_mesh_gw_table_t   *table;
    ngx_http_mesh_srv_conf_t   *mscf;
    ngx_http_mesh_main_conf_t  *mmcf;

    mscf = ngx_stream_get_module_srv_conf(s, ngx_stream_mesh_module);

    if (mscf->gateways == NULL
        || ngx_stream_get_module_ctx(s, ngx_stream_mesh_module))
    {
        return NGX_DECLINED;
    }

    mmcf = mscf->main;

    if (ngx_http_mesh_worker.cycle != ngx_cycle
        || (mmcf->zone.sh
            && mmcf->zone.sh->generation != ngx_http_mesh_worker.generation))
    {
        (void) ngx_http_mesh_sync(mmcf, s->connection->log);
    }

    table = ngx_http_mesh_gw_table(mmcf, s->connection->log);
    if (table == NULL) {
        return NGX_ERROR;
    }

    if (mscf->gw_port > 0) {
        port = (ngx_uint_t) mscf->gw_port;

    } else {
        if (ngx_connection_local_sockaddr(s->connection, NULL, 0) != NGX_OK) {
            return NGX_ERROR;
        }

        port = ngx_inet_get_port(s->connection->local_sockaddr);
    }

    ngx_stream_mesh_server_name(s, &sni);

    return ngx_stream_mesh_gw_route(s, mscf, table, port, &sni);
}


static ngx_int_t
ngx_stream_mesh_gw_route(ngx_stream_session_t *s,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_gw_table_t *table,
    ngx_uint_t port, ngx_str_t *sni)
{
    int                        d, m, best;
    u_char                     name[2 * MESH_NAME_MAX + 2];
    size_t                     nroutes;
    ngx_str_t                 *names;
    ngx_uint_t                 i, k, r, kind, server;
    mesh_policies_t           *policies;
    ngx_pool_cleanup_t        *cln;
    const mesh_gateway_t      *gw;
    ngx_http_mesh_dest_t      *dests;
    ngx_http_mesh_gw_vs_t     *tvs, *found;
    ngx_stream_mesh_gw_ctx_t  *ctx;
    const mesh_destination_t  *routes;

    policies = table->gen ? table->gen->policies : NULL;
    names = mscf->gateways->elts;

    found = NULL;
    routes = NULL;
    dests = NULL;
    nroutes = 0;
    best = -1;
    server = 0;

    for (i = 0; i < mscf->gateways->nelts && best < MESH_HOST_EXACT; i++) {
        gw = mesh_policies_gateway(policies, (char *) names[i].data,
                                   names[i].len);

        if (gw == NULL || !ngx_http_mesh_gw_applies(mscf->main, gw)) {
            continue;
        }

        kind = ngx_stream_mesh_gw_server(gw, port, sni, NULL);

        if (kind == MESH_GW_HTTP) {
            continue;
        }

        server = 1;

        ngx_memcpy(name, names[i].data, names[i].len);
        name[names[i].len] = '\0';

        for (k = 0; k < table->nvss; k++) {
            tvs = &table->vss[k];

            if (!mesh_vs_at_gateway(tvs->vs, (char *) name)
                || ngx_stream_mesh_gw_server(gw, port, sni, tvs->vs) != kind)
            {
                continue;
            }

            if (kind == MESH_GW_TCP) {

                /* the first VirtualService with a tcp route for the
                 * port */

                for (r = 0; r < tvs->vs->ntcp; r++) {
                    if (mesh_tcp_route_fits(&tvs->vs->tcp[r], (int) port)) {
                        found = tvs;
                        routes = tvs->vs->tcp[r].routes;
                        nroutes = tvs->vs->tcp[r].nroutes;
                        dests = tvs->tcp[r];
                        best = MESH_HOST_EXACT;
                        break;
                    }
                }

                if (found) {
                    break;
                }

                continue;
            }

            /* TLS: the tls route whose sniHosts take the name most
             * specifically, over the VirtualServices bound here (Envoy's
             * filter chain of the most specific server name); the first
             * on a tie */

            for (r = 0; r < tvs->vs->ntls; r++) {
                m = mesh_tls_route_match(&tvs->vs->tls[r], (int) port,
                                         (char *) sni->data, sni->len);
                if (m > best) {
                    found = tvs;
                    routes = tvs->vs->tls[r].routes;
                    nroutes = tvs->vs->tls[r].nroutes;
                    dests = tvs->tls[r];
                    best = m;
                }
            }
        }
    }

    if (found == NULL) {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "mesh: gateway: %s for port %ui%s%V%s%s: closed",
                      server ? "no VirtualService route"
                             : "no Gateway with a TCP or TLS server",
                      port, sni->len ? " and SNI \"" : "", sni,
                      sni->len ? "\"" : "",
                      (server || sni->len
                       || !ngx_stream_mesh_gw_tls_on(mscf, policies, port))
                      ? "" : " (no server name: a TLS server takes "
                             "connections by the ClientHello's, "
                             "\"ssl_preread on\" reads it)");
        return NGX_STREAM_BAD_GATEWAY;
    }

    d = mesh_destination_pick(routes, nroutes, (uint32_t) ngx_random());

    if (d < 0 || dests[d].other == NULL) {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "mesh: gateway: VirtualService \"%s\" routes the "
                      "connection to service \"%s\", which no stream mesh "
                      "upstream routes: closed", found->vs->name,
                      d >= 0 ? routes[d].host : "");
        return NGX_STREAM_BAD_GATEWAY;
    }

    cln = ngx_pool_cleanup_add(s->connection->pool,
                               sizeof(ngx_stream_mesh_gw_ctx_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    ctx = cln->data;
    ctx->upstream = dests[d].other;
    ctx->dest = &dests[d];
    ctx->table = table;
    table->refs++;

    cln->handler = ngx_stream_mesh_gw_cleanup;

    ngx_stream_set_ctx(s, ctx, ngx_stream_mesh_module);

    ngx_log_debug3(NGX_LOG_DEBUG_STREAM, s->connection->log, 0,
                   "mesh: gateway: VirtualService \"%s\" to \"%s\", "
                   "upstream \"%V\"", found->vs->name, routes[d].host,
                   &ctx->upstream->name);

    return NGX_DECLINED;
}


/*
 * The kind of gw's stream server on port that takes the connection: a
 * TCP one, or a TLS one whose hosts take the SNI; when vs is given, one
 * that takes that VirtualService too: of its namespace (a host
 * "NS/HOST"), and, for TCP, whose hosts and the VirtualService's have a
 * name in common (Istio binds a VirtualService to the servers whose hosts
 * it shares). MESH_GW_HTTP: none.
 */
static ngx_uint_t
ngx_stream_mesh_gw_server(const mesh_gateway_t *gw, ngx_uint_t port,
    ngx_str_t *sni, const mesh_virtual_service_t *vs)
{
    size_t                        i, k;
    const char                   *ns, *pattern;
    const mesh_gateway_server_t  *sv;

    ns = vs ? vs->ns : NULL;

    for (i = 0; i < gw->nservers; i++) {
        sv = &gw->servers[i];

        if (sv->stream == MESH_GW_HTTP || (ngx_uint_t) sv->port != port) {
            continue;
        }

        for (k = 0; k < sv->nhosts; k++) {
            pattern = ngx_http_mesh_gw_host(sv->hosts[k], ns);
            if (pattern == NULL) {
                continue;
            }

            if (sv->stream == MESH_GW_TCP) {
                if (vs == NULL || ngx_stream_mesh_gw_hosts(pattern, vs)) {
                    return MESH_GW_TCP;
                }

                continue;
            }

            if (sni->len
                && mesh_host_match(pattern, (char *) sni->data, sni->len, 1)
                   >= 0)
            {
                return MESH_GW_TLS;
            }
        }
    }

    return MESH_GW_HTTP;
}


/* a Gateway of the server has a TLS server on port */
static ngx_uint_t
ngx_stream_mesh_gw_tls_on(ngx_http_mesh_srv_conf_t *mscf,
    mesh_policies_t *policies, ngx_uint_t port)
{
    size_t                 k;
    ngx_str_t             *names;
    ngx_uint_t             i;
    const mesh_gateway_t  *gw;

    names = mscf->gateways->elts;

    for (i = 0; i < mscf->gateways->nelts; i++) {
        gw = mesh_policies_gateway(policies, (char *) names[i].data,
                                   names[i].len);

        for (k = 0; gw && k < gw->nservers; k++) {
            if (gw->servers[k].stream == MESH_GW_TLS
                && (ngx_uint_t) gw->servers[k].port == port)
            {
                return 1;
            }
        }
    }

    return 0;
}


/* a server host pattern and one of vs's hosts take a name in common */
static ngx_uint_t
ngx_stream_mesh_gw_hosts(const char *pattern, const mesh_virtual_service_t *vs)
{
    size_t       h;
    const char  *host;

    for (h = 0; h < vs->nhosts; h++) {
        host = vs->hosts[h];

        /* a pattern compared with the other taken as a name: "*" and
         * "*.b.c" take "*.a.b.c", and "a.b.c" takes itself */

        if (mesh_host_match(pattern, host, ngx_strlen(host), 1) >= 0
            || mesh_host_match(host, pattern, ngx_strlen(pattern), 1) >= 0)
        {
            return 1;
        }
    }

    return 0;
}


static void
ngx_stream_mesh_gw_cleanup(void *data)
{
    ngx_stream_mesh_gw_ctx_t  *ctx = data;

    if (ctx->table) {
        ngx_http_mesh_gw_table_release(ctx->table);
        ctx->table = NULL;
    }
}


/* the stream upstream a gateway's connection goes on to */
static ngx_int_t
ngx_stream_mesh_variable_upstream(ngx_stream_session_t *s,
    ngx_stream_variable_value_t *v, uintptr_t data)
{
    ngx_stream_mesh_gw_ctx_t  *ctx;

    ctx = ngx_stream_get_module_ctx(s, ngx_stream_mesh_module);

    if (ctx == NULL || ctx->upstream == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ctx->upstream->name.len;
    v->data = ctx->upstream->name.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_stream_mesh_init_upstream(ngx_conf_t *cf,
    ngx_stream_upstream_srv_conf_t *us)
{
    ngx_http_mesh_srv_conf_t  *mscf;

    mscf = ngx_stream_conf_upstream_srv_conf(us, ngx_stream_mesh_module);

    ngx_http_mesh_init_srv_conf(mscf);

    if (us->servers && us->servers->nelts > 1) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "stream upstream \"%V\" has both \"mesh\" and "
                      "\"server\" members in %s:%ui", &us->host,
                      us->file_name, us->line);
        return NGX_ERROR;
    }

    us->peer.init = ngx_stream_mesh_init_peer;

    return NGX_OK;
}


/*
 * A connection to the service: the upstream's view, its whole service
 * (VirtualService tcp routes are not taken yet), the key of a consistent
 * hash; kept in the session's pool, which lets go of the view.
 */
static ngx_int_t
ngx_stream_mesh_init_peer(ngx_stream_session_t *s,
    ngx_stream_upstream_srv_conf_t *us)
{
    ngx_str_t                   key;
    ngx_uint_t                  n;
    ngx_pool_cleanup_t         *cln;
    ngx_http_mesh_target_t     *t;
    ngx_http_mesh_srv_conf_t   *mscf;
    ngx_http_mesh_main_conf_t  *mmcf;
    ngx_http_mesh_peer_data_t  *pd;
    ngx_stream_mesh_gw_ctx_t   *gctx;

    mscf = ngx_stream_conf_upstream_srv_conf(us, ngx_stream_mesh_module);
    mmcf = mscf->main;

    if (ngx_http_mesh_worker.cycle != ngx_cycle
        || (mmcf->zone.sh
            && mmcf->zone.sh->generation != ngx_http_mesh_worker.generation))
    {
        (void) ngx_http_mesh_sync(mmcf, s->connection->log);
    }

    cln = ngx_pool_cleanup_add(s->connection->pool,
                               sizeof(ngx_http_mesh_peer_data_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    pd = cln->data;
    ngx_memzero(pd, sizeof(ngx_http_mesh_peer_data_t));

    pd->conf = mscf;
    pd->main = mmcf;
    pd->session = s;
    pd->index = ngx_http_mesh_worker.index;
    pd->dest = -1;
    pd->admitted = 1;

    cln->handler = ngx_http_mesh_cleanup_peer;

    t = NULL;

    gctx = ngx_stream_get_module_ctx(s, ngx_stream_mesh_module);

    if (mscf->view) {
        mscf->view->refs++;
        pd->view = mscf->view;
        t = &pd->view->targets[0];

        if (gctx && gctx->upstream == mscf) {
            /* routed at a gateway: the route's destination */
            t = ngx_http_mesh_dest_target(pd, gctx->dest);

        } else if (gctx) {
            ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                          "mesh: the gateway routed the connection to "
                          "upstream \"%V\", but proxy_pass names \"%V\": "
                          "use \"proxy_pass $mesh_upstream\"",
                          &gctx->upstream->name, &mscf->name);

            if (pd->view->ntcp || pd->view->tls) {
                t = ngx_stream_mesh_route(s, pd);
            }

        } else if (pd->view->ntcp || pd->view->tls) {
            t = ngx_stream_mesh_route(s, pd);
        }
    }

    pd->target = t;
    n = t ? t->number : 0;

    if (n <= 8 * sizeof(uintptr_t)) {
        pd->tried = &pd->tried_inline;

    } else {
        pd->tried = ngx_pcalloc(s->connection->pool,
                                (n / (8 * sizeof(uintptr_t)) + 1)
                                * sizeof(uintptr_t));
        if (pd->tried == NULL) {
            return NGX_ERROR;
        }
    }

    if (t && t->balancer == NGX_HTTP_MESH_CHASH && mscf->stream_key) {
        if (ngx_stream_complex_value(s, mscf->stream_key, &key) != NGX_OK) {
            return NGX_ERROR;
        }

        if (key.len) {
            pd->hash = mesh_crc32(key.data, key.len);
            pd->has_hash = 1;
        }
    }

    s->upstream->peer.data = pd;
    s->upstream->peer.get = ngx_stream_mesh_get_peer;
    s->upstream->peer.free = ngx_stream_mesh_free_peer;
    s->upstream->peer.tries = n ? n : 1;

    return NGX_OK;
}


/*
 * The VirtualService's routes: with a server name in the ClientHello
 * (ssl_preread on), the tls[] route whose match takes it most
 * specifically; else the first tcp[] route whose match names the port
 * the client connected to (or has no match). Then a destination by
 * weight, of this service or another's stream upstream. No route fits:
 * the service as a whole, as Istio's sidecar sends it.
 */
static ngx_http_mesh_target_t *
ngx_stream_mesh_route(ngx_stream_session_t *s, ngx_http_mesh_peer_data_t *pd)
{
    int                           d, m, best;
    ngx_str_t                     sni;
    ngx_uint_t                    i, k, port;
    ngx_http_mesh_view_t         *view;
    const mesh_tls_route_t       *lr;
    ngx_http_mesh_tcp_route_t    *tr;

    view = pd->view;
    port = (s->connection->local_sockaddr
            || ngx_connection_local_sockaddr(s->connection, NULL, 0)
               == NGX_OK)
           ? ngx_inet_get_port(s->connection->local_sockaddr) : 0;

    ngx_str_null(&sni);

    if (view->vs->ntls) {
        ngx_stream_mesh_server_name(s, &sni);
    }

    /* the tls route whose sniHosts take the name most specifically */

    best = -1;
    k = 0;

    for (i = 0; sni.len && i < view->vs->ntls; i++) {
        m = mesh_tls_route_match(&view->vs->tls[i], (int) port,
                                 (char *) sni.data, sni.len);
        if (m > best) {
            best = m;
            k = i;
        }
    }

    if (best >= 0) {
        lr = &view->vs->tls[k];
        d = mesh_destination_pick(lr->routes, lr->nroutes,
                                  (uint32_t) ngx_random());
        pd->dest = d;

        return (d >= 0) ? ngx_http_mesh_dest_target(pd, &view->tls[k][d])
                        : NULL;
    }

    for (i = 0; i < view->ntcp; i++) {
        tr = &view->tcp[i];

        if (mesh_tcp_route_fits(tr->route, (int) port)) {
            d = mesh_destination_pick(tr->route->routes, tr->route->nroutes,
                                      (uint32_t) ngx_random());
            pd->dest = d;

            return (d >= 0) ? ngx_http_mesh_dest_target(pd, &tr->dest[d])
                            : NULL;
        }
    }

    /* Istio's sidecar adds a filter chain of the service itself after
     * the VirtualService's: the whole service */

    ngx_log_debug5(NGX_LOG_DEBUG_STREAM, s->connection->log, 0,
                   "mesh: no tcp or tls route of VirtualService \"%s\" fits "
                   "a connection to port %ui%s%V%s: the whole service",
                   view->vs->name, port, sni.len ? " with SNI \"" : "", &sni,
                   sni.len ? "\"" : "");

    return &view->targets[0];
}


static ngx_int_t
ngx_stream_mesh_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    ngx_int_t                i;
    ngx_uint_t               n, tried;
    ngx_msec_t               now;
    ngx_stream_session_t    *s;
    ngx_http_mesh_peer_t    *peer;
    ngx_http_mesh_target_t  *t;

    t = pd->target;
    n = t ? t->number : 0;

    pc->name = &pd->conf->name;

    if (n == 0) {
        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "mesh: no instances of service \"%V\" for stream "
                      "upstream \"%V\"", &pd->conf->service, &pd->conf->name);
        return NGX_BUSY;
    }

    now = ngx_current_msec;

    if (t->set_epoch != *(volatile uint32_t *) t->epoch
        || (t->set_expire && (ngx_msec_int_t) (now - t->set_expire) >= 0))
    {
        ngx_http_mesh_target_set(t, now, pc->log);
    }

    tried = (pd->tries != 0);

    i = ngx_http_mesh_pick(pd, t, tried || t->max_conns);

    if (i < 0) {
        if (!tried && t->max_conns) {
            /* connectionPool.tcp.maxConnections: Envoy's overflow */
            if (t->service) {
                (void) __sync_fetch_and_add(&t->service->overflow, 1);
            }

            ngx_log_error(NGX_LOG_INFO, pc->log, 0,
                          "mesh: every instance of service \"%V\" at its "
                          "maxConnections (%ui)", &pd->conf->service,
                          t->max_conns);

        } else if (!tried) {
            ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                          "mesh: no healthy instance of service \"%V\" for "
                          "stream upstream \"%V\" (%ui registered)",
                          &pd->conf->service, &pd->conf->name, n);
        }

        return NGX_BUSY;
    }

    pd->tried[i / (8 * sizeof(uintptr_t))] |=
                                 (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));
    pd->tries++;

    peer = &t->peer[i];
    pd->current = peer;
    pd->last = peer;

    /* a connection is what the counters of a TCP service count */

    ngx_http_mesh_hold(peer->stat);
    (void) __sync_fetch_and_add(&peer->stat->requests, 1);

    if (t->service) {
        ngx_http_mesh_hold(t->service);
        (void) __sync_fetch_and_add(&t->service->requests, 1);

        if (tried) {
            (void) __sync_fetch_and_add(&t->service->retries, 1);
        }
    }

    pc->sockaddr = peer->sockaddr;
    pc->socklen = peer->socklen;
    pc->name = &peer->name;

    ngx_log_debug3(NGX_LOG_DEBUG_STREAM, pc->log, 0,
                   "mesh: stream upstream \"%V\" picked \"%V\" at %V",
                   &pd->conf->name, &peer->id, &peer->name);

    /* connectionPool.tcp: a datagram (a UDP listen) has no connect to
     * time nor keepalive */

    if (pc->type == SOCK_DGRAM) {
        return NGX_OK;
    }

    if (t->keepalive) {
        pc->so_keepalive = 1;
    }

    if (t->connect_timeout || t->keepidle || t->keepintvl || t->keepcnt) {
        if (pd->connect_ev == NULL) {
            s = pd->session;

            pd->connect_ev = ngx_pcalloc(s->connection->pool,
                                         sizeof(ngx_event_t));
            if (pd->connect_ev == NULL) {
                return NGX_ERROR;
            }

            pd->connect_ev->handler = ngx_stream_mesh_connecting;
            pd->connect_ev->data = pd;
        }

        pd->connect_ev->log = pc->log;
        ngx_post_event(pd->connect_ev, &ngx_posted_events);
    }

    return NGX_OK;
}


/*
 * connectionPool.tcp of a connection get_peer picked an instance for,
 * once ngx_event_connect_peer() has made its socket: tcpKeepalive's
 * timers, and connectTimeout. The stream proxy arms the connect timer
 * with its own proxy_connect_timeout once get_peer has returned and the
 * connect is under way; this posted event runs after it in the same pass
 * of the event loop, before the connect can complete, and sets the timer
 * again with the target's value. The proxy's handler still fires it:
 * "upstream timed out", the next instance, a gateway error.
 */
static void
ngx_stream_mesh_connecting(ngx_event_t *ev)
{
    ngx_http_mesh_peer_data_t  *pd = ev->data;

    ngx_connection_t        *c;
    ngx_stream_session_t    *s;
    ngx_stream_upstream_t   *u;
    ngx_http_mesh_target_t  *t;

    s = pd->session;
    u = s->upstream;
    c = u->peer.connection;
    t = pd->target;

    if (c == NULL || t == NULL) {
        return;
    }

    if (t->keepidle || t->keepintvl || t->keepcnt) {
        ngx_http_mesh_pool_sockopt(c, t);
    }

    if (t->connect_timeout && !u->connected && c->write->timer_set) {
        ngx_del_timer(c->write);
        ngx_add_timer(c->write, t->connect_timeout);
    }
}


/*
 * A connection that could not be made (refused, timed out) is a failure
 * nginx saw itself, a gateway error for outlier detection; one that was
 * made and has ended ends every run of failures.
 */
static void
ngx_stream_mesh_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    ngx_msec_t                    ms;
    ngx_stream_session_t         *s;
    ngx_http_mesh_peer_t         *peer;
    ngx_http_mesh_stat_t         *st, *svc;
    ngx_stream_upstream_state_t  *us;

    peer = pd->current;

    if (pc->tries) {
        pc->tries--;
    }

    if (peer == NULL) {
        return;
    }

    pd->current = NULL;
    st = peer->stat;
    svc = pd->target->service;

    ngx_http_mesh_unhold(st);

    if (svc) {
        ngx_http_mesh_unhold(svc);
    }

    /*
     * The stream proxy calls this when a connection could not be made,
     * or once the session ends, its bytes and time in u->state: the
     * connect time goes where http puts a response's latency, the
     * session's length and bytes into the counters of their own.
     */
    s = pd->session;
    us = s->upstream->state;

    if (!(state & NGX_PEER_FAILED) && us
        && us->connect_time != (ngx_msec_t) -1)
    {
        ms = us->connect_time;

    } else {
        ms = ngx_current_msec - s->upstream->peer.start_time;
    }

    ngx_http_mesh_account(pd->main, st, svc, 0, ms);

    if (state & NGX_PEER_FAILED) {
        ngx_http_mesh_failed(pd, peer, state, 0, pc->log);
        return;
    }

    if (us && pd->main->metrics) {
        ngx_stream_mesh_session(st, us);

        if (svc) {
            ngx_stream_mesh_session(svc, us);
        }
    }

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


/* a session that ended: its bytes both ways and its length */
static void
ngx_stream_mesh_session(ngx_http_mesh_stat_t *st,
    ngx_stream_upstream_state_t *us)
{
    ngx_uint_t  b;
    ngx_msec_t  ms;

    ms = (us->response_time != (ngx_msec_t) -1) ? us->response_time : 0;

    for (b = 0; b < NGX_HTTP_MESH_SESSION_BUCKETS - 1; b++) {
        if (ms <= ngx_http_mesh_session_bounds[b]) {
            break;
        }
    }

    (void) __sync_fetch_and_add(&st->bytes_sent, (uint64_t) us->bytes_sent);
    (void) __sync_fetch_and_add(&st->bytes_received,
                                (uint64_t) us->bytes_received);
    (void) __sync_fetch_and_add(&st->session[b], 1);
    (void) __sync_fetch_and_add(&st->session_sum, ms);
}
