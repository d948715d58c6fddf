
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * A target's connectionPool beyond maxConnections (which the pick
 * honours): the admission of a request against http2MaxRequests and
 * maxConnections (503 at once, as Envoy's circuit breaker), maxRetries,
 * the request's connect timeout, TCP keepalive on the connections it
 * opens, and what becomes of a connection after the request: kept no
 * longer than maxRequestsPerConnection requests, idle no longer than
 * idleTimeout.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


static ngx_int_t ngx_http_mesh_pool_output_filter(void *data,
    ngx_chain_t *in);


/*
 * May the request go to t: a place among the service's requests in
 * flight below http2MaxRequests (taken here, in one step, so that
 * workers admitting at once cannot all take the last one; the pick
 * keeps it), and an instance below its maxConnections. NGX_BUSY: over a
 * cap, counted in the service's "overflow". Made once per request: by
 * the route phase, else by the first get_peer.
 */
ngx_int_t
ngx_http_mesh_pool_admit(ngx_http_request_t *r, ngx_http_mesh_peer_data_t *pd,
    ngx_http_mesh_target_t *t)
{
    uint32_t               cur;
    ngx_uint_t             i;
    ngx_msec_t             now;
    ngx_http_mesh_stat_t  *svc;

    pd->admitted = 1;

    if (t == NULL || t->number == 0) {
        return NGX_OK;              /* get_peer says why not */
    }

    svc = t->service;

    if (t->max_requests && svc) {

        do {
            cur = svc->active;

            if (cur >= t->max_requests) {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "mesh: service \"%V\" at its "
                              "http2MaxRequests (%ui in flight): 503",
                              &t->service_name, t->max_requests);
                goto overflow;
            }

        } while (!__sync_bool_compare_and_swap(&svc->active, cur, cur + 1));

        if (ngx_http_mesh_slot >= 0) {
            (void) __sync_fetch_and_add(&svc->held[ngx_http_mesh_slot], 1);
        }

        pd->reserved = svc;
    }

    if (t->max_conns == 0) {
        return NGX_OK;
    }

    /*
     * An instance below its cap, looked for from the first of the set:
     * one look unless the service is near its caps
     */

    now = ngx_current_msec;

    if (t->set_epoch != *(volatile uint32_t *) t->epoch
        || (t->set_expire && (ngx_msec_int_t) (now - t->set_expire) >= 0))
    {
        ngx_http_mesh_target_set(t, now, r->connection->log);
    }

    for (i = 0; i < t->set.n; i++) {
        if (*t->mp[t->set.elig[i]].active < t->max_conns) {
            return NGX_OK;
        }
    }

    if (pd->reserved) {
        ngx_http_mesh_unhold(pd->reserved);
        pd->reserved = NULL;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "mesh: every instance of service \"%V\" at its "
                  "maxConnections (%ui): 503", &t->service_name,
                  t->max_conns);

overflow:

    if (svc) {
        (void) __sync_fetch_and_add(&svc->overflow, 1);
    }

    return NGX_BUSY;
}


/*
 * The request's share of the target's connectionPool, once its target is
 * known (init_peer): its own copy of the upstream conf for the connect
 * timeout (the location's is shared), SO_KEEPALIVE on a connection it
 * opens, and its output filter wrapped to see the connection it is sent
 * on.
 */
ngx_int_t
ngx_http_mesh_pool_conf(ngx_http_request_t *r, ngx_http_mesh_peer_data_t *pd)
{
    ngx_http_upstream_t       *u;
    ngx_http_mesh_target_t    *t;
    ngx_http_upstream_conf_t  *conf;

    t = pd->target;
    u = r->upstream;

    if (t == NULL) {
        return NGX_OK;
    }

    if (t->connect_timeout) {
        conf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));
        if (conf == NULL) {
            return NGX_ERROR;
        }

        *conf = *u->conf;
        conf->connect_timeout = t->connect_timeout;
        u->conf = conf;
    }

    if (t->keepalive) {
        u->peer.so_keepalive = 1;
    }

    if ((t->keepidle || t->keepintvl || t->keepcnt || t->conn_requests
         || t->idle_timeout || pd->tls_verify)
        && u->output.output_filter != ngx_http_mesh_pool_output_filter)
    {
        pd->output_filter = u->output.output_filter;
        pd->filter_ctx = u->output.filter_ctx;

        u->output.output_filter = ngx_http_mesh_pool_output_filter;
        u->output.filter_ctx = pd;
    }

    return NGX_OK;
}


/*
 * The request goes out on a connection: a new one gets the keepalive
 * timing; the one that reaches maxRequestsPerConnection with this
 * request is marked as closing (the upstream keepalive module then does
 * not keep it, as it would not after "Connection: close").
 */
static ngx_int_t
ngx_http_mesh_pool_output_filter(void *data, ngx_chain_t *in)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    ngx_connection_t        *c;
    ngx_http_upstream_t     *u;
    ngx_http_mesh_target_t  *t;

    u = pd->request->upstream;
    c = u->peer.connection;
    t = pd->target;

    if (c && c != pd->conn && t) {
        pd->conn = c;

        if (c->requests == 1) {
            ngx_http_mesh_pool_sockopt(c, t);

#if (NGX_HTTP_SSL)
            /* trafficPolicy.tls refused the instance's certificate */
            if (ngx_http_mesh_tls_verified(pd, c) != NGX_OK) {
                return NGX_ERROR;
            }
#endif
        }

        if (t->conn_requests && c->requests >= t->conn_requests) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                           "mesh: upstream connection's request %ui, its "
                           "last", c->requests);

            u->headers_in.connection_close = 1;
        }
    }

    return pd->output_filter(pd->filter_ctx, in);
}


/*
 * tcpKeepalive's timers on a connection nginx opened to the target's
 * instance (http: its first request; stream: when the connect is under
 * way); SO_KEEPALIVE itself is the peer connection's so_keepalive.
 */
void
ngx_http_mesh_pool_sockopt(ngx_connection_t *c, ngx_http_mesh_target_t *t)
{
#if (NGX_HAVE_KEEPALIVE_TUNABLE)

    int  i, value;

    static const struct {
        int          opt;
        const char  *name;
        size_t       off;
    } opts[] = {
        { TCP_KEEPIDLE, "TCP_KEEPIDLE",
          offsetof(ngx_http_mesh_target_t, keepidle) },
        { TCP_KEEPINTVL, "TCP_KEEPINTVL",
          offsetof(ngx_http_mesh_target_t, keepintvl) },
        { TCP_KEEPCNT, "TCP_KEEPCNT",
          offsetof(ngx_http_mesh_target_t, keepcnt) }
    };

    for (i = 0; i < 3; i++) {
        value = *(int *) ((u_char *) t + opts[i].off);

        if (value == 0) {
            continue;
        }

        if (setsockopt(c->fd, IPPROTO_TCP, opts[i].opt, (const void *) &value,
                       sizeof(int))
            == -1)
        {
            ngx_log_error(NGX_LOG_ERR, c->log, ngx_socket_errno,
                          "mesh: setsockopt(%s, %d) on an upstream "
                          "connection failed", opts[i].name, value);
        }
    }

#else

    (void) c;
    (void) t;

#endif
}


/*
 * free_peer's part: a connection the upstream keepalive module has just
 * kept (pc->connection taken away, the connection idle) lives idle no
 * longer than the target's idleTimeout, in place of keepalive_timeout.
 */
void
ngx_http_mesh_pool_free(ngx_peer_connection_t *pc,
    ngx_http_mesh_peer_data_t *pd, ngx_uint_t state)
{
    ngx_connection_t        *c;
    ngx_http_mesh_target_t  *t;

    c = pd->conn;
    pd->conn = NULL;
    t = pd->target;

    if (c == NULL || t == NULL || t->idle_timeout == 0
        || pc->connection != NULL || (state & NGX_PEER_FAILED))
    {
        return;
    }

    if (c->fd != (ngx_socket_t) -1 && c->idle && c->read->timer_set) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "mesh: kept upstream connection idle for %M ms",
                       t->idle_timeout);

        ngx_add_timer(c->read, t->idle_timeout);
    }
}


/*
 * May the try that just failed be retried, as far as maxRetries goes:
 * NGX_DECLINED when the service has maxRetries retries in flight already
 * (counted in "retry_overflow"), and the request then ends with this
 * try's failure, as without retries. get_peer takes the retry's place.
 */
ngx_int_t
ngx_http_mesh_pool_retry(ngx_peer_connection_t *pc,
    ngx_http_mesh_peer_data_t *pd, ngx_uint_t state)
{
    ngx_http_upstream_t     *u;
    ngx_http_mesh_stat_t    *svc;
    ngx_http_mesh_target_t  *t;

    t = pd->target;
    svc = t->service;
    u = pd->request->upstream;

    if (t->max_retries < 0 || svc == NULL || !(state & NGX_PEER_FAILED)
        || pc->tries == 0
        || (u->conf->next_upstream & NGX_HTTP_UPSTREAM_FT_OFF))
    {
        return NGX_OK;
    }

    if (svc->retries_active < (ngx_uint_t) t->max_retries) {
        return NGX_OK;
    }

    (void) __sync_fetch_and_add(&svc->retry_overflow, 1);

    ngx_log_error(NGX_LOG_WARN, pc->log, 0,
                  "mesh: maxRetries of service \"%V\" reached (%i in "
                  "flight), not retrying", &t->service_name,
                  t->max_retries);

    return NGX_DECLINED;
}
