
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * The poll: one worker at a time holds a lease in the zone and long-polls
 * the registry for the services this nginx routes, over a kept-alive
 * connection (every resolved address in turn), and applies each answer to
 * the zone once for the whole nginx. One file for one state machine:
 * the lease, the connection (TLS: ngx_http_mesh_registry_ssl.c makes and
 * checks it), the request, reading (ngx_http_mesh_answer.c decodes),
 * applying, and what each failure leads to (backoff, the state
 * the status shows, one log line per distinct failure); split further it
 * would spread one machine's states over several files.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


#define NGX_HTTP_MESH_POLL_WAIT       30     /* s, the registry's wait */
#define NGX_HTTP_MESH_CONNECT_TIMEOUT 5000
#define NGX_HTTP_MESH_POLL_GAP        10     /* ms at least between polls */
#define NGX_HTTP_MESH_POLL_QUIET      1000   /* ms before asking again
                                                when an answer came early
                                                and brought nothing */
#define NGX_HTTP_MESH_REFUSAL_MAX     30000  /* ms, the longest backoff */
#define NGX_HTTP_MESH_SWEEP           64     /* stats per lease tick */


typedef struct {
    ngx_http_mesh_main_conf_t     *mmcf;
    ngx_log_t                     *log;

    ngx_event_t                    lease;       /* every worker */
    ngx_event_t                    retry;       /* the poll owner */

    ngx_peer_connection_t          pc;
    ngx_log_t                      conn_log;    /* quiet: failures are
                                                   reported once, by us */
    ngx_uint_t                     active;      /* a poll is under way */
    ngx_uint_t                     idle;        /* pc is kept alive */
    ngx_uint_t                     reused;      /* this poll reuses it */
    ngx_uint_t                     owner;       /* this worker polls */
    ngx_uint_t                     failures;    /* cannot reach it */
    ngx_uint_t                     refusals;    /* cannot use its answer */
    ngx_uint_t                     addr;        /* the address to try, over
                                                   every address of every
                                                   URL of mesh_registry */
    ngx_uint_t                     reg;         /* the URL it is of */
    ngx_uint_t                     waited;      /* this poll asked to wait */
    ngx_atomic_uint_t              subscription; /* of this poll */
    uint64_t                       asked_index;
    ngx_msec_t                     started;

    u_char                        *req;
    size_t                         req_len;
    size_t                         sent;

    u_char                        *buf;         /* the answer as read */
    size_t                         len;
    size_t                         size;

    ngx_http_mesh_answer_t         ans;         /* its header block */

    u_char                         reason[MESH_ERR_LEN];  /* last logged */
    ngx_str_t                      name;        /* the host's */

} ngx_http_mesh_poll_t;


static void ngx_http_mesh_lease_handler(ngx_event_t *ev);
static void ngx_http_mesh_retry_handler(ngx_event_t *ev);
static void ngx_http_mesh_poll_start(ngx_http_mesh_poll_t *p);
static ngx_int_t ngx_http_mesh_poll_request(ngx_http_mesh_poll_t *p);
static void ngx_http_mesh_poll_write(ngx_event_t *wev);
#if (NGX_HTTP_SSL)
static void ngx_http_mesh_poll_handshake(ngx_http_mesh_poll_t *p,
    ngx_connection_t *c);
static void ngx_http_mesh_poll_handshaked(ngx_connection_t *c);
#endif
static void ngx_http_mesh_poll_drop(ngx_http_mesh_poll_t *p);
static void ngx_http_mesh_poll_read(ngx_event_t *rev);
static void ngx_http_mesh_idle_read(ngx_event_t *rev);
static void ngx_http_mesh_idle_write(ngx_event_t *wev);
static void ngx_http_mesh_poll_done(ngx_http_mesh_poll_t *p, u_char *body,
    size_t blen);
static void ngx_http_mesh_poll_fail(ngx_http_mesh_poll_t *p, ngx_err_t err,
    const char *reason);
static void ngx_http_mesh_poll_refuse(ngx_http_mesh_poll_t *p,
    const char *reason);
static void ngx_http_mesh_poll_report(ngx_http_mesh_poll_t *p,
    const char *reason);
static void ngx_http_mesh_poll_close(ngx_http_mesh_poll_t *p);
static void ngx_http_mesh_poll_reset(ngx_http_mesh_poll_t *p);
static void ngx_http_mesh_poll_next(ngx_http_mesh_poll_t *p,
    ngx_msec_t delay);
static void ngx_http_mesh_release_lease(ngx_http_mesh_poll_t *p);
static ngx_http_mesh_registry_t *ngx_http_mesh_poll_target(
    ngx_http_mesh_poll_t *p, ngx_addr_t **addr);
static ngx_uint_t ngx_http_mesh_poll_first_addr(ngx_http_mesh_poll_t *p,
    ngx_uint_t reg);


static ngx_http_mesh_poll_t  ngx_http_mesh_poll;


ngx_int_t
ngx_http_mesh_registry_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                  i;
    ngx_http_mesh_poll_t       *p = &ngx_http_mesh_poll;
    ngx_http_mesh_main_conf_t  *mmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_mesh_module);

    if (mmcf == NULL || mmcf->shm_zone == NULL) {
        return NGX_OK;
    }

    ngx_memzero(p, sizeof(ngx_http_mesh_poll_t));

    p->mmcf = mmcf;
    p->log = cycle->log;

    /* this nginx to registryd: "host:/path/to/nginx.conf", quote-free */
    p->name.len = ngx_min(cycle->hostname.len + 1 + cycle->conf_file.len,
                          255);
    p->name.data = ngx_pnalloc(cycle->pool, p->name.len);
    if (p->name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_snprintf(p->name.data, p->name.len, "%V:%V", &cycle->hostname,
                 &cycle->conf_file);

    for (i = 0; i < p->name.len; i++) {
        if (p->name.data[i] == '"' || p->name.data[i] == ';'
            || p->name.data[i] < 0x20 || p->name.data[i] == 0x7f)
        {
            p->name.data[i] = '_';
        }
    }

    p->lease.handler = ngx_http_mesh_lease_handler;
    p->lease.data = p;
    p->lease.log = cycle->log;
    p->lease.cancelable = 1;

    p->retry.handler = ngx_http_mesh_retry_handler;
    p->retry.data = p;
    p->retry.log = cycle->log;
    p->retry.cancelable = 1;

    ngx_http_mesh_cache_init(mmcf, cycle->log);
    ngx_http_mesh_slot_take(&mmcf->zone, cycle->log);

    /* spread the workers' first looks at the lease */
    ngx_add_timer(&p->lease, 1 + ngx_random() % NGX_HTTP_MESH_LEASE_TICK);

    return NGX_OK;
}


void
ngx_http_mesh_registry_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_mesh_poll_t  *p = &ngx_http_mesh_poll;

    if (p->mmcf == NULL) {
        return;
    }

    ngx_http_mesh_cache_flush();
    ngx_http_mesh_poll_close(p);
    ngx_http_mesh_release_lease(p);
    ngx_http_mesh_slot_leave(&p->mmcf->zone);

    if (p->buf) {
        ngx_free(p->buf);
        p->buf = NULL;
    }
}


static void
ngx_http_mesh_lease_handler(ngx_event_t *ev)
{
    ngx_http_mesh_poll_t  *p = ev->data;

    ngx_msec_t              now;
    ngx_uint_t              took, lost;
    ngx_http_mesh_zone_t   *zone;
    ngx_http_mesh_shctx_t  *sh;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        ngx_http_mesh_cache_flush();
        ngx_http_mesh_poll_close(p);
        ngx_http_mesh_release_lease(p);
        return;
    }

    /* every worker keeps its views fresh, with or without traffic */
    (void) ngx_http_mesh_sync(p->mmcf, p->log);

    if (p->mmcf->registry == NULL) {
        ngx_add_timer(&p->lease, NGX_HTTP_MESH_LEASE_TICK);
        return;
    }

    zone = &p->mmcf->zone;
    sh = zone->sh;
    now = ngx_current_msec;
    took = 0;
    lost = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (sh->poll_owner == ngx_pid) {
        sh->poll_expire = now + NGX_HTTP_MESH_LEASE;

    } else if (sh->poll_owner == 0
               || (ngx_msec_int_t) (now - sh->poll_expire) > 0)
    {
        sh->poll_owner = ngx_pid;
        sh->poll_expire = now + NGX_HTTP_MESH_LEASE;
        took = 1;

        /* go on with the registry the last owner polled */
        p->reg = sh->reg_current < p->mmcf->registries.nelts
                 ? sh->reg_current : 0;
        p->addr = ngx_http_mesh_poll_first_addr(p, p->reg);

    } else if (p->owner) {
        lost = 1;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (took) {
        ngx_log_error(NGX_LOG_INFO, p->log, 0,
                      "mesh: this worker now polls the registry %V",
                      &ngx_http_mesh_poll_target(p, NULL)->uri);
        p->owner = 1;
        p->failures = 0;
        p->refusals = 0;
    }

    if (lost) {
        ngx_log_error(NGX_LOG_WARN, p->log, 0,
                      "mesh: another worker took the registry poll");
        p->owner = 0;
        ngx_http_mesh_poll_close(p);
    }

    if (p->owner) {
        (void) ngx_http_mesh_want(p->mmcf);
        ngx_http_mesh_slot_check(zone, p->log);

        ngx_http_mesh_sweep_stats(zone, ngx_http_mesh_worker_policies(),
                                  NGX_HTTP_MESH_SWEEP);

        /* a service to route that this poll does not ask for */
        if (p->active && p->subscription != sh->subscription) {
            ngx_http_mesh_poll_close(p);
        }

        if (!p->active && !p->retry.timer_set) {
            ngx_http_mesh_poll_start(p);
        }
    }

    ngx_add_timer(&p->lease, NGX_HTTP_MESH_LEASE_TICK);
}


static void
ngx_http_mesh_release_lease(ngx_http_mesh_poll_t *p)
{
    ngx_http_mesh_zone_t  *zone;

    if (!p->owner) {
        return;
    }

    p->owner = 0;
    zone = &p->mmcf->zone;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (zone->sh->poll_owner == ngx_pid) {
        zone->sh->poll_owner = 0;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


static void
ngx_http_mesh_retry_handler(ngx_event_t *ev)
{
    ngx_http_mesh_poll_t  *p = ev->data;

    if (p->owner && !p->active && !ngx_exiting) {
        ngx_http_mesh_poll_start(p);
    }
}


/* the next poll, at once or after delay ms; never two within the gap */
static void
ngx_http_mesh_poll_next(ngx_http_mesh_poll_t *p, ngx_msec_t delay)
{
    ngx_msec_t  since;

    if (!p->owner || ngx_exiting) {
        return;
    }

    since = ngx_current_msec - p->started;

    if (delay == 0 && since < NGX_HTTP_MESH_POLL_GAP) {
        delay = NGX_HTTP_MESH_POLL_GAP - since;
    }

    if (delay) {
        ngx_add_timer(&p->retry, delay);
        return;
    }

    ngx_http_mesh_poll_start(p);
}


/*
 * GET /v1/snapshot?services=a,b&delta=1[&index=N&registry=ID&wait=30s]:
 * the services this nginx routes, as changes since the index it has, or
 * all of them when it has none (first poll, after a failure or a
 * refusal, started from the cache file, a new service to route).
 */
static ngx_int_t
ngx_http_mesh_poll_request(ngx_http_mesh_poll_t *p)
{
    u_char                 *services, *last;
    size_t                  slen, size;
    ngx_str_t               uri;
    ngx_url_t              *u;
    size_t                  used;
    uint64_t                index, registry;
    ngx_uint_t              known, stale;
    ngx_atomic_uint_t       sub;
    ngx_http_mesh_zone_t   *zone;

    u = ngx_http_mesh_poll_target(p, NULL)->url;
    zone = &p->mmcf->zone;

    services = ngx_http_mesh_subscription(zone, &slen, &sub, p->log);
    if (services == NULL) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    known = (zone->sh->reg_state == NGX_HTTP_MESH_REG_SYNCED
             && !zone->sh->from_cache
             && zone->sh->synced_subscription == sub
             && p->failures == 0 && p->refusals == 0);
    index = zone->sh->index;
    registry = zone->sh->registry;
    stale = (zone->sh->reg_state != NGX_HTTP_MESH_REG_SYNCED);
    used = p->mmcf->zone_size - zone->shpool->pfree * ngx_pagesize;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    uri = u->uri;
    while (uri.len && uri.data[uri.len - 1] == '/') {
        uri.len--;
    }

    size = uri.len + slen + u->host.len + p->name.len + p->mmcf->token.len
           + 1024;

    if (p->req) {
        ngx_free(p->req);
    }

    p->req = ngx_alloc(size, p->log);
    if (p->req == NULL) {
        ngx_free(services);
        return NGX_ERROR;
    }

    last = p->req + size;

    p->req_len = ngx_slprintf(p->req, last, "GET %V/v1/snapshot?%*s&delta=1",
                              &uri, slen, services)
                 - p->req;

    ngx_free(services);

    p->subscription = sub;
    p->waited = known;
    p->asked_index = known ? index : 0;

    if (known) {
        p->req_len = ngx_slprintf(p->req + p->req_len, last,
                                  "&index=%uL&wait=%ds", index,
                                  NGX_HTTP_MESH_POLL_WAIT)
                     - p->req;

        if (registry) {
            p->req_len = ngx_slprintf(p->req + p->req_len, last,
                                      "&registry=%016xL", registry)
                         - p->req;
        }
    }

    /* who polls: this nginx, for registryd's GET /v1/proxies */

    p->req_len = ngx_slprintf(p->req + p->req_len, last,
                              " HTTP/1.1\r\n"
                              "Host: %V\r\n"
                              "User-Agent: ngx_mesh/" NGX_HTTP_MESH_VERSION
                              "\r\n"
                              "Accept: application/json\r\n"
                              "Accept-Encoding: gzip\r\n"
                              "X-Mesh-Proxy: name=\"%V\"; "
                              "nginx=" NGINX_VERSION "; "
                              "module=" NGX_HTTP_MESH_VERSION "; "
                              "index=%uL; zone=%uz/%uz; stale=%ui\r\n",
                              &u->host, &p->name, index, used,
                              p->mmcf->zone_size, stale)
                 - p->req;

    if (p->mmcf->token.len) {
        p->req_len = ngx_slprintf(p->req + p->req_len, last,
                                  "Authorization: Bearer %V\r\n",
                                  &p->mmcf->token)
                     - p->req;
    }

    p->req_len = ngx_slprintf(p->req + p->req_len, last, "\r\n") - p->req;

    return NGX_OK;
}


static void
ngx_http_mesh_poll_start(ngx_http_mesh_poll_t *p)
{
    ngx_int_t           rc;
    ngx_addr_t         *addr;
    ngx_connection_t   *c;

    if (p->retry.timer_set) {
        ngx_del_timer(&p->retry);
    }

    if (ngx_http_mesh_poll_request(p) != NGX_OK) {
        ngx_http_mesh_poll_fail(p, 0, "out of memory");
        return;
    }

    p->sent = 0;
    p->len = 0;
    p->ans.body = NULL;
    p->started = ngx_current_msec;
    p->active = 1;

    if (p->pc.connection && p->idle) {
        /* the kept-alive connection of the last poll */
        p->idle = 0;
        p->reused = 1;

        c = p->pc.connection;
        c->read->handler = ngx_http_mesh_poll_read;
        c->write->handler = ngx_http_mesh_poll_write;

        ngx_http_mesh_poll_write(c->write);
        return;
    }

    ngx_http_mesh_poll_close(p);
    p->active = 1;
    p->reused = 0;

    (void) ngx_http_mesh_poll_target(p, &addr);

    ngx_memzero(&p->pc, sizeof(ngx_peer_connection_t));

    p->pc.sockaddr = addr->sockaddr;
    p->pc.socklen = addr->socklen;
    p->pc.name = &addr->name;
    p->pc.get = ngx_event_get_peer;
    p->conn_log = *p->log;
    p->conn_log.log_level = NGX_LOG_CRIT;
    p->pc.log = &p->conn_log;
    p->pc.log_error = NGX_ERROR_INFO;

    rc = ngx_event_connect_peer(&p->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        p->pc.connection = NULL;
        ngx_http_mesh_poll_fail(p, ngx_socket_errno, "connect() failed");
        return;
    }

    c = p->pc.connection;
    c->data = p;
    c->read->handler = ngx_http_mesh_poll_read;
    c->write->handler = ngx_http_mesh_poll_write;

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, NGX_HTTP_MESH_CONNECT_TIMEOUT);
        return;
    }

    ngx_http_mesh_poll_write(c->write);
}


/* the first position of registry reg in p->addr's order */
static ngx_uint_t
ngx_http_mesh_poll_first_addr(ngx_http_mesh_poll_t *p, ngx_uint_t reg)
{
    ngx_uint_t                 i, n;
    ngx_http_mesh_registry_t  *regs;

    regs = p->mmcf->registries.elts;
    n = 0;

    for (i = 0; i < reg; i++) {
        n += regs[i].url->naddrs;
    }

    return n;
}


/*
 * The registry to poll and its address: p->addr runs over every address
 * of every URL of mesh_registry, in order. A move to another URL is
 * logged and shown in the status.
 */
static ngx_http_mesh_registry_t *
ngx_http_mesh_poll_target(ngx_http_mesh_poll_t *p, ngx_addr_t **addr)
{
    ngx_uint_t                 i, k, total;
    ngx_http_mesh_zone_t      *zone;
    ngx_http_mesh_registry_t  *regs;

    regs = p->mmcf->registries.elts;
    total = 0;

    for (i = 0; i < p->mmcf->registries.nelts; i++) {
        total += regs[i].url->naddrs;
    }

    k = p->addr % total;

    for (i = 0; k >= regs[i].url->naddrs; i++) {
        k -= regs[i].url->naddrs;
    }

    if (addr) {
        *addr = &regs[i].url->addrs[k];
    }

    if (i != p->reg) {
        ngx_log_error(NGX_LOG_WARN, p->log, 0,
                      "mesh: registry %V cannot be reached, polling %V",
                      &regs[p->reg].uri, &regs[i].uri);
        p->reg = i;

        zone = &p->mmcf->zone;
        ngx_shmtx_lock(&zone->shpool->mutex);
        zone->sh->reg_current = i;
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    return &regs[i];
}


/* a kept-alive connection the registry closed: connect again at once */
static ngx_uint_t
ngx_http_mesh_poll_stale(ngx_http_mesh_poll_t *p)
{
    if (!p->reused || p->len) {
        return 0;
    }

    ngx_http_mesh_poll_close(p);
    p->reused = 0;
    ngx_http_mesh_poll_start(p);

    return 1;
}


static void
ngx_http_mesh_poll_write(ngx_event_t *wev)
{
    ssize_t                n;
    ngx_connection_t      *c;
    ngx_http_mesh_poll_t  *p;

    c = wev->data;
    p = c->data;

    if (wev->timedout) {
        ngx_http_mesh_poll_fail(p, 0, "connect timed out");
        return;
    }

#if (NGX_HTTP_SSL)
    if (ngx_http_mesh_poll_target(p, NULL)->ssl && c->ssl == NULL) {
        ngx_http_mesh_poll_handshake(p, c);
        return;
    }
#endif

    while (p->sent < p->req_len) {
        n = c->send(c, p->req + p->sent, p->req_len - p->sent);

        if (n == NGX_ERROR) {
            if (ngx_http_mesh_poll_stale(p)) {
                return;
            }

            ngx_http_mesh_poll_fail(p, ngx_socket_errno,
                                    "cannot send the request");
            return;
        }

        if (n == NGX_AGAIN) {
            if (!wev->timer_set) {
                ngx_add_timer(wev, NGX_HTTP_MESH_CONNECT_TIMEOUT);
            }

            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_http_mesh_poll_fail(p, ngx_socket_errno,
                                        "cannot send the request");
            }

            return;
        }

        p->sent += n;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    /* the request is out: wait for the answer, which may take the wait */

    wev->handler = ngx_http_mesh_poll_write;
    c->idle = 1;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_add_timer(c->read, (NGX_HTTP_MESH_POLL_WAIT + 15) * 1000);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_mesh_poll_fail(p, ngx_socket_errno, "cannot read the answer");
        return;
    }

    if (c->read->ready) {
        ngx_http_mesh_poll_read(c->read);
    }
}


#if (NGX_HTTP_SSL)

/* an https:// registry: TLS first, then the request */
static void
ngx_http_mesh_poll_handshake(ngx_http_mesh_poll_t *p, ngx_connection_t *c)
{
    ngx_int_t  rc;

    rc = ngx_http_mesh_ssl_handshake(c, p->mmcf->ssl,
                                     ngx_http_mesh_poll_target(p, NULL),
                                     ngx_http_mesh_poll_handshaked);

    if (rc == NGX_ERROR) {
        ngx_http_mesh_poll_fail(p, 0, "cannot start TLS");
        return;
    }

    if (rc == NGX_AGAIN) {
        if (!c->write->timer_set) {
            ngx_add_timer(c->write, NGX_HTTP_MESH_CONNECT_TIMEOUT);
        }

        return;
    }

    ngx_http_mesh_poll_handshaked(c);
}


static void
ngx_http_mesh_poll_handshaked(ngx_connection_t *c)
{
    u_char                 reason[MESH_ERR_LEN];
    ngx_http_mesh_poll_t  *p;

    p = c->data;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (ngx_http_mesh_ssl_verify(c, p->mmcf,
                                 ngx_http_mesh_poll_target(p, NULL),
                                 reason, sizeof(reason))
        != NGX_OK)
    {
        ngx_http_mesh_poll_fail(p, 0, (char *) reason);
        return;
    }

    c->read->handler = ngx_http_mesh_poll_read;
    c->write->handler = ngx_http_mesh_poll_write;

    ngx_http_mesh_poll_write(c->write);
}

#endif


static void
ngx_http_mesh_poll_read(ngx_event_t *rev)
{
    u_char                *np, *last;
    off_t                  clen;
    size_t                 size, limit, blen;
    ssize_t                n;
    ngx_int_t              rc;
    const char            *why;
    ngx_connection_t      *c;
    ngx_http_mesh_poll_t  *p;

    c = rev->data;
    p = c->data;
    last = NULL;

    if (c->close) {
        /* graceful shutdown: nothing more to wait for */
        ngx_http_mesh_cache_flush();
        ngx_http_mesh_poll_close(p);
        ngx_http_mesh_release_lease(p);
        return;
    }

    if (rev->timedout) {
        ngx_http_mesh_poll_fail(p, 0, "the registry did not answer in time");
        return;
    }

    /* the header block, the body, and one chunked trailer at most */
    limit = NGX_HTTP_MESH_HEADER_MAX + p->mmcf->zone_size + 4096;

    for ( ;; ) {

        if (p->size - p->len < 4096) {
            size = p->size ? p->size * 2 : 64 * 1024;

            if (p->size >= limit) {
                ngx_http_mesh_poll_fail(p, 0, "the answer is larger than "
                                        "mesh_zone");
                return;
            }

            if (size > limit) {
                size = limit;
            }

            np = ngx_alloc(size, p->log);
            if (np == NULL) {
                ngx_http_mesh_poll_fail(p, 0, "out of memory");
                return;
            }

            if (p->buf) {
                ngx_memcpy(np, p->buf, p->len);
                if (p->ans.body) {
                    p->ans.body = np + (p->ans.body - p->buf);
                }
                ngx_free(p->buf);
            }

            p->buf = np;
            p->size = size;
        }

        n = c->recv(c, p->buf + p->len, p->size - p->len - 1);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_mesh_poll_fail(p, ngx_socket_errno,
                                        "cannot read the answer");
            }
            return;
        }

        if (n == NGX_ERROR || n == 0) {
            if (ngx_http_mesh_poll_stale(p)) {
                return;
            }
        }

        if (n == NGX_ERROR) {
            ngx_http_mesh_poll_fail(p, ngx_socket_errno,
                                    "connection to the registry failed");
            return;
        }

        if (n > 0) {
            p->len += n;
        }

        if (p->ans.body == NULL) {
            rc = ngx_http_mesh_answer_header(&p->ans, p->buf, p->len,
                                             p->mmcf->zone_size, &why);

            if (rc == NGX_ERROR) {
                ngx_http_mesh_poll_fail(p, 0, why);
                return;
            }

            if (rc == NGX_AGAIN) {
                if (n == 0) {
                    ngx_http_mesh_poll_fail(p, 0, "the registry closed the "
                                            "connection");
                    return;
                }

                continue;
            }
        }

        blen = p->buf + p->len - p->ans.body;

        if (p->ans.chunked) {
            rc = ngx_http_mesh_dechunk(p->ans.body, p->buf + p->len, &blen,
                                       &last);

            if (rc == NGX_ERROR) {
                ngx_http_mesh_poll_fail(p, 0, "invalid chunked encoding");
                return;
            }

            if (rc == NGX_OK) {
                if (last != p->buf + p->len) {
                    p->ans.close = 1;   /* more than the answer: not reused */
                }

                break;
            }

        } else if (p->ans.content_length >= 0) {
            clen = p->ans.content_length;

            if ((off_t) blen >= clen) {
                if ((off_t) blen > clen) {
                    p->ans.close = 1;
                }

                blen = (size_t) clen;
                break;
            }

        } else if (n == 0) {
            p->ans.close = 1;       /* the end of the connection ends it */
            break;
        }

        if (n == 0) {
            ngx_http_mesh_poll_fail(p, 0, "the registry closed the "
                                    "connection before the end of the "
                                    "answer");
            return;
        }
    }

    ngx_http_mesh_poll_done(p, p->ans.body, blen);
}


/* between polls: the registry may close a kept-alive connection */
static void
ngx_http_mesh_idle_read(ngx_event_t *rev)
{
    u_char                 buf[1];
    ssize_t                n;
    ngx_connection_t      *c;
    ngx_http_mesh_poll_t  *p;

    c = rev->data;
    p = c->data;

    if (c->close) {
        ngx_http_mesh_poll_close(p);
        return;
    }

    n = c->recv(c, buf, 1);

    if (n == NGX_AGAIN) {
        if (ngx_handle_read_event(rev, 0) != NGX_OK) {
            ngx_http_mesh_poll_close(p);
        }
        return;
    }

    /* closed, failed, or data nobody asked for */
    ngx_http_mesh_poll_close(p);
}


/* between polls there is nothing to write */
static void
ngx_http_mesh_idle_write(ngx_event_t *wev)
{
    (void) wev;
}


static void
ngx_http_mesh_poll_done(ngx_http_mesh_poll_t *p, u_char *body, size_t blen)
{
    char                    err[MESH_ERR_LEN];
    u_char                  reason[MESH_ERR_LEN + 64], msg[200];
    u_char                 *plain, *packed;
    size_t                  plen, pklen;
    uint64_t                index;
    ngx_int_t               rc;
    ngx_msec_t              delay, took;
    ngx_connection_t       *c;
    mesh_snapshot_t        *snap;
    ngx_http_mesh_gen_t    *g;
    ngx_http_mesh_zone_t   *zone;

    zone = &p->mmcf->zone;
    c = p->pc.connection;

    /* keep the connection for the next poll */

    if (!p->ans.close && c) {
        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        c->read->handler = ngx_http_mesh_idle_read;
        c->write->handler = ngx_http_mesh_idle_write;
        p->idle = 1;
        p->active = 0;

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_http_mesh_poll_close(p);
        }

    } else {
        /* close it, the answer stays in the buffer */
        p->len = body + blen - p->buf;
        ngx_http_mesh_poll_drop(p);
        p->idle = 0;
        p->active = 0;
    }

    if (p->ans.status != 200) {
        /* its reason says what to fix: a token without the read
         * scope, a missing client certificate */
        ngx_http_mesh_answer_error(body, blen, msg, sizeof(msg));

        ngx_snprintf(reason, sizeof(reason), "the registry answered %ui%s%s%Z",
                     p->ans.status, msg[0] ? ": " : "", msg);
        ngx_http_mesh_poll_fail(p, 0, (char *) reason);
        return;
    }

    plain = NULL;

    if (p->ans.gzip) {
        rc = ngx_http_mesh_inflate(body, blen, p->mmcf->zone_size, &plain,
                                   &plen, p->log);

        if (rc == NGX_ERROR) {
            ngx_http_mesh_poll_fail(p, 0, "out of memory");
            return;
        }

        if (rc == NGX_DECLINED) {
            ngx_http_mesh_poll_refuse(p, "the answer does not inflate, or "
                                      "inflates to more than mesh_zone");
            return;
        }

        body = plain;
        blen = plen;
    }

    snap = mesh_snapshot_parse((char *) body, blen, err, sizeof(err));

    if (snap == NULL) {
        ngx_snprintf(reason, sizeof(reason),
                     "snapshot refused, keeping index %uL: %s%Z",
                     zone->sh->index, err);
        goto refused;
    }

    /*
     * The policies are parsed here, once for the whole nginx, and must
     * compile before any worker sees them; the workers get them packed.
     */

    packed = NULL;
    pklen = 0;

    if (snap->has_policies) {
        g = NULL;
        plain = ngx_alloc(snap->policies_len + 1, p->log);

        if (plain) {
            ngx_memcpy(plain, snap->policies, snap->policies_len + 1);
            g = ngx_http_mesh_gen_create(plain, snap->policies_len, err,
                                         sizeof(err), p->log);
            plain = NULL;
        }

        if (g == NULL) {
            ngx_snprintf(reason, sizeof(reason),
                         "snapshot index %uL refused, keeping index %uL: "
                         "policies: %s%Z", snap->index, zone->sh->index,
                         err);
            mesh_snapshot_free(snap);
            goto refused;
        }

        packed = ngx_http_mesh_gen_pack(g, &pklen, p->log);
        ngx_http_mesh_gen_release(g);

        if (packed == NULL) {
            mesh_snapshot_free(snap);
            ngx_cpystrn(reason, (u_char *) "out of memory", sizeof(reason));
            goto refused;
        }
    }

    if (body != p->ans.body) {
        ngx_free(body);
        body = NULL;
    }

    rc = ngx_http_mesh_apply(zone, snap, packed, pklen, 0, p->subscription,
                             err, sizeof(err));

    if (packed) {
        ngx_free(packed);
    }

    index = snap->index;
    mesh_snapshot_free(snap);
    if (rc == NGX_DECLINED) {
        ngx_http_mesh_poll_refuse(p, err);
        return;
    }

    if (rc == NGX_OK) {
        ngx_http_mesh_cache_dirty();

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, p->log, 0,
                       "mesh: registry index %uL applied", index);
    }

    if (p->failures || p->refusals) {
        ngx_log_error(NGX_LOG_NOTICE, p->log, 0,
                      "mesh: registry %V is back, index %uL",
                      &ngx_http_mesh_poll_target(p, NULL)->uri, index);
    }

    p->failures = 0;
    p->refusals = 0;
    p->reason[0] = '\0';
    ngx_http_mesh_set_reg_state(zone, NGX_HTTP_MESH_REG_SYNCED, NULL);
    ngx_http_mesh_poll_reset(p);

    /* this worker's own views first, then the cache file */
    (void) ngx_http_mesh_sync(p->mmcf, p->log);

    ngx_http_mesh_cache_write();

    /*
     * An answer to a wait that came early with nothing new: the registry
     * does not wait (or something in between answers for it); do not
     * make it spin.
     */
    delay = 0;
    took = ngx_current_msec - p->started;

    if (p->waited && index == p->asked_index
        && took < NGX_HTTP_MESH_POLL_QUIET)
    {
        delay = NGX_HTTP_MESH_POLL_QUIET - took;
    }

    ngx_http_mesh_poll_next(p, delay);

    return;

refused:

    if (body && body != p->ans.body) {
        ngx_free(body);
    }

    ngx_http_mesh_poll_refuse(p, (char *) reason);
}


/*
 * Write reason once per distinct failure: the same failure with other
 * figures in it (sizes, indexes) is not a new one.
 */
static void
ngx_http_mesh_poll_report(ngx_http_mesh_poll_t *p, const char *reason)
{
    u_char  *a, *b;

    a = p->reason;
    b = (u_char *) reason;

    for ( ;; ) {
        while (*a >= '0' && *a <= '9') {
            a++;
        }

        while (*b >= '0' && *b <= '9') {
            b++;
        }

        if (*a != *b) {
            break;
        }

        if (*a == '\0') {
            return;
        }

        a++;
        b++;
    }

    ngx_cpystrn(p->reason, (u_char *) reason, sizeof(p->reason));

    ngx_log_error(NGX_LOG_WARN, p->log, 0,
                  "mesh: registry %V: %s; routing on index %uL",
                  &ngx_http_mesh_poll_target(p, NULL)->uri, reason,
                  p->mmcf->zone.sh->index);
}


/* the registry could not be reached or did not answer well */
static void
ngx_http_mesh_poll_fail(ngx_http_mesh_poll_t *p, ngx_err_t err,
    const char *reason)
{
    u_char      *last, msg[MESH_ERR_LEN];
    ngx_msec_t   delay;

    ngx_http_mesh_poll_close(p);

    last = ngx_snprintf(msg, sizeof(msg) - 1, "%s", reason);

    if (err) {
        last = ngx_snprintf(last, msg + sizeof(msg) - 1 - last, " (%d: ",
                            err);
        last = ngx_strerror(err, last, msg + sizeof(msg) - 1 - last);
        if (last < msg + sizeof(msg) - 1) {
            *last++ = ')';
        }
    }

    *last = '\0';

    ngx_http_mesh_poll_report(p, (char *) msg);

    ngx_http_mesh_set_reg_state(&p->mmcf->zone, NGX_HTTP_MESH_REG_STALE,
                                (char *) msg);

    /* the next address of the registry, if it has several, or the next
     * registry (a replica): the index routed on stays, and a replica of
     * the same registry goes on from it */
    p->addr++;
    p->failures++;
    (void) ngx_http_mesh_poll_target(p, NULL);

    delay = p->failures < 3 ? 250 * p->failures : 1000;

    ngx_http_mesh_poll_next(p, delay);
}


/* an answer came that cannot be used: keep routing, ask again later */
static void
ngx_http_mesh_poll_refuse(ngx_http_mesh_poll_t *p, const char *reason)
{
    ngx_msec_t  delay;

    ngx_http_mesh_poll_report(p, reason);

    ngx_http_mesh_set_reg_state(&p->mmcf->zone, NGX_HTTP_MESH_REG_ERROR,
                                reason);
    ngx_http_mesh_poll_reset(p);

    delay = 1000 << ngx_min(p->refusals, 5);
    p->refusals++;

    ngx_http_mesh_poll_next(p, ngx_min(delay, NGX_HTTP_MESH_REFUSAL_MAX));
}


/* the connection goes (TLS shut down first), the poll's state stays */
static void
ngx_http_mesh_poll_drop(ngx_http_mesh_poll_t *p)
{
    ngx_pool_t  *pool;

    if (p->pc.connection == NULL) {
        return;
    }

    pool = p->pc.connection->pool;

#if (NGX_HTTP_SSL)
    ngx_http_mesh_ssl_close(p->pc.connection);
#endif

    ngx_close_connection(p->pc.connection);
    p->pc.connection = NULL;

    if (pool) {
        ngx_destroy_pool(pool);
    }
}


static void
ngx_http_mesh_poll_close(ngx_http_mesh_poll_t *p)
{
    ngx_http_mesh_poll_drop(p);

    p->active = 0;
    p->idle = 0;

    ngx_http_mesh_poll_reset(p);
}


/* the answer is used up; a large buffer is not kept between polls */
static void
ngx_http_mesh_poll_reset(ngx_http_mesh_poll_t *p)
{
    if (p->buf && p->size > 1024 * 1024) {
        ngx_free(p->buf);
        p->buf = NULL;
        p->size = 0;
    }

    p->len = 0;
    p->ans.body = NULL;
}
