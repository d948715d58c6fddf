
/*
 * Copyright (C) ngx_mesh authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


#define NGX_HTTP_MESH_POLL_WAIT      30     /* s, the registry's wait */
#define NGX_HTTP_MESH_CONNECT_TIMEOUT 5000
#define NGX_HTTP_MESH_MAX_SNAPSHOT   (512 * 1024 * 1024)
#define NGX_HTTP_MESH_CACHE_EVERY    1000   /* ms between cache writes */


typedef struct {
    ngx_http_mesh_main_conf_t     *mmcf;
    ngx_log_t                     *log;

    ngx_event_t                    lease;       /* every worker */
    ngx_event_t                    retry;       /* the poll owner */
    ngx_event_t                    cache;       /* the poll owner */

    ngx_peer_connection_t          pc;
    ngx_log_t                      conn_log;    /* quiet: failures are
                                                   reported once, by us */
    ngx_uint_t                     active;      /* a poll is under way */
    ngx_uint_t                     owner;       /* this worker polls */
    ngx_uint_t                     failures;

    u_char                         req[1024];
    size_t                         req_len;
    size_t                         sent;

    u_char                        *buf;
    size_t                         len;
    size_t                         size;

    ngx_msec_t                     cache_written;
    ngx_uint_t                     cache_dirty;
} ngx_http_mesh_poll_t;


static void ngx_http_mesh_lease_handler(ngx_event_t *ev);
static void ngx_http_mesh_retry_handler(ngx_event_t *ev);
static void ngx_http_mesh_cache_handler(ngx_event_t *ev);
static void ngx_http_mesh_poll_start(ngx_http_mesh_poll_t *p);
static void ngx_http_mesh_poll_write(ngx_event_t *wev);
static void ngx_http_mesh_poll_read(ngx_event_t *rev);
static void ngx_http_mesh_poll_done(ngx_http_mesh_poll_t *p);
static void ngx_http_mesh_poll_fail(ngx_http_mesh_poll_t *p, ngx_err_t err,
    const char *reason);
static void ngx_http_mesh_poll_close(ngx_http_mesh_poll_t *p);
static void ngx_http_mesh_release_lease(ngx_http_mesh_poll_t *p);
static void ngx_http_mesh_write_cache(ngx_http_mesh_poll_t *p);


static ngx_http_mesh_poll_t  ngx_http_mesh_poll;


ngx_int_t
ngx_http_mesh_registry_init_process(ngx_cycle_t *cycle)
{
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

    p->lease.handler = ngx_http_mesh_lease_handler;
    p->lease.data = p;
    p->lease.log = cycle->log;
    p->lease.cancelable = 1;

    p->retry.handler = ngx_http_mesh_retry_handler;
    p->retry.data = p;
    p->retry.log = cycle->log;
    p->retry.cancelable = 1;

    p->cache.handler = ngx_http_mesh_cache_handler;
    p->cache.data = p;
    p->cache.log = cycle->log;
    p->cache.cancelable = 1;

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

    ngx_http_mesh_poll_close(p);
    ngx_http_mesh_release_lease(p);
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
        ngx_http_mesh_poll_close(p);
        ngx_http_mesh_release_lease(p);
        return;
    }

    /* every worker keeps its view fresh, with or without traffic */
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

    } else if (p->owner) {
        lost = 1;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (took) {
        ngx_log_error(NGX_LOG_INFO, p->log, 0,
                      "mesh: this worker now polls the registry %V",
                      &p->mmcf->registry_uri);
        p->owner = 1;
        p->failures = 0;
    }

    if (lost) {
        ngx_log_error(NGX_LOG_WARN, p->log, 0,
                      "mesh: another worker took the registry poll");
        p->owner = 0;
        ngx_http_mesh_poll_close(p);
    }

    if (p->owner && !p->active && !p->retry.timer_set) {
        ngx_http_mesh_poll_start(p);
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


static void
ngx_http_mesh_poll_start(ngx_http_mesh_poll_t *p)
{
    u_char             *last;
    ngx_int_t           rc;
    ngx_url_t          *u;
    ngx_str_t           uri;
    ngx_connection_t   *c;

    u = p->mmcf->registry;

    ngx_memzero(&p->pc, sizeof(ngx_peer_connection_t));

    p->pc.sockaddr = u->addrs[0].sockaddr;
    p->pc.socklen = u->addrs[0].socklen;
    p->pc.name = &u->addrs[0].name;
    p->pc.get = ngx_event_get_peer;
    p->conn_log = *p->log;
    p->conn_log.log_level = NGX_LOG_CRIT;
    p->pc.log = &p->conn_log;
    p->pc.log_error = NGX_ERROR_INFO;

    uri = u->uri;
    while (uri.len && uri.data[uri.len - 1] == '/') {
        uri.len--;
    }

    /*
     * Not in sync (first poll, after a failure, started from the cache
     * file): ask for the snapshot at once; in sync: wait for the next index
     */
    if (p->mmcf->zone.sh->reg_state == NGX_HTTP_MESH_REG_SYNCED
        && p->failures == 0)
    {
        last = ngx_snprintf(p->req, sizeof(p->req),
                            "GET %V/v1/snapshot?index=%uL&wait=%ds "
                            "HTTP/1.1\r\n", &uri, p->mmcf->zone.sh->index,
                            NGX_HTTP_MESH_POLL_WAIT);

    } else {
        last = ngx_snprintf(p->req, sizeof(p->req),
                            "GET %V/v1/snapshot HTTP/1.1\r\n", &uri);
    }

    last = ngx_snprintf(last, p->req + sizeof(p->req) - last,
                        "Host: %V\r\n"
                        "User-Agent: ngx_mesh\r\n"
                        "Accept: application/json\r\n"
                        "Connection: close\r\n\r\n", &u->host);
    p->req_len = last - p->req;
    p->sent = 0;
    p->len = 0;

    rc = ngx_event_connect_peer(&p->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        p->pc.connection = NULL;
        ngx_http_mesh_poll_fail(p, ngx_socket_errno, "connect() failed");
        return;
    }

    p->active = 1;

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

    while (p->sent < p->req_len) {
        n = c->send(c, p->req + p->sent, p->req_len - p->sent);

        if (n == NGX_ERROR) {
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

    if (!c->read->timer_set) {
        ngx_add_timer(c->read, (NGX_HTTP_MESH_POLL_WAIT + 15) * 1000);
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_mesh_poll_fail(p, ngx_socket_errno, "cannot read the answer");
    }

    if (c->read->ready) {
        ngx_http_mesh_poll_read(c->read);
    }
}


/* Content-Length of a complete header block, -1 when absent */
static off_t
ngx_http_mesh_content_length(u_char *p, u_char *end)
{
    u_char  *eol;

    while (p < end) {
        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            break;
        }

        if (eol - p > 15
            && ngx_strncasecmp(p, (u_char *) "Content-Length:", 15) == 0)
        {
            p += 15;
            while (p < eol && (*p == ' ' || *p == '\t')) {
                p++;
            }

            while (eol > p && (eol[-1] == '\r' || eol[-1] == ' ')) {
                eol--;
            }

            return ngx_atoof(p, eol - p);
        }

        p = eol + 1;
    }

    return -1;
}


static void
ngx_http_mesh_poll_read(ngx_event_t *rev)
{
    u_char                *hdr, *np;
    off_t                  clen;
    size_t                 size;
    ssize_t                n;
    ngx_connection_t      *c;
    ngx_http_mesh_poll_t  *p;

    c = rev->data;
    p = c->data;

    if (c->close) {
        /* graceful shutdown: nothing more to wait for */
        ngx_http_mesh_poll_close(p);
        ngx_http_mesh_release_lease(p);
        return;
    }

    if (rev->timedout) {
        ngx_http_mesh_poll_fail(p, 0, "the registry did not answer in time");
        return;
    }

    for ( ;; ) {

        if (p->size - p->len < 4096) {
            size = p->size ? p->size * 2 : 64 * 1024;

            if (size > NGX_HTTP_MESH_MAX_SNAPSHOT) {
                ngx_http_mesh_poll_fail(p, 0, "snapshot too large");
                return;
            }

            np = ngx_alloc(size, p->log);
            if (np == NULL) {
                ngx_http_mesh_poll_fail(p, 0, "out of memory");
                return;
            }

            if (p->buf) {
                ngx_memcpy(np, p->buf, p->len);
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

        if (n == NGX_ERROR) {
            ngx_http_mesh_poll_fail(p, ngx_socket_errno,
                                    "connection to the registry failed");
            return;
        }

        if (n == 0) {
            break;              /* Connection: close ends the answer */
        }

        p->len += n;

        /* done as soon as Content-Length is reached */
        hdr = ngx_strlcasestrn(p->buf, p->buf + p->len,
                               (u_char *) "\r\n\r\n", 4 - 1);
        if (hdr) {
            clen = ngx_http_mesh_content_length(p->buf, hdr + 2);
            if (clen >= 0 && (off_t) p->len >= hdr + 4 - p->buf + clen) {
                break;
            }
        }
    }

    ngx_http_mesh_poll_done(p);
}


static void
ngx_http_mesh_poll_done(ngx_http_mesh_poll_t *p)
{
    char                    err[MESH_ERR_LEN], reason[MESH_ERR_LEN + 64];
    u_char                 *hdr, *body;
    off_t                   clen;
    size_t                  blen;
    ngx_int_t               status;
    uint64_t                old;
    mesh_snapshot_t        *snap;
    mesh_policies_t        *policies;
    ngx_http_mesh_zone_t   *zone;

    zone = &p->mmcf->zone;

    hdr = ngx_strlcasestrn(p->buf, p->buf + p->len, (u_char *) "\r\n\r\n",
                           4 - 1);

    if (p->len < 12 || hdr == NULL
        || ngx_strncmp(p->buf, "HTTP/1.", 7) != 0)
    {
        ngx_http_mesh_poll_fail(p, 0, "not an HTTP answer");
        return;
    }

    status = ngx_atoi(p->buf + 9, 3);
    body = hdr + 4;
    blen = p->buf + p->len - body;

    clen = ngx_http_mesh_content_length(p->buf, hdr + 2);
    if (clen >= 0) {
        if ((off_t) blen < clen) {
            ngx_http_mesh_poll_fail(p, 0, "truncated answer");
            return;
        }

        blen = (size_t) clen;
    }

    if (status != 200) {
        ngx_snprintf((u_char *) reason, sizeof(reason),
                     "the registry answered %i%Z", status);
        ngx_http_mesh_poll_fail(p, 0, reason);
        return;
    }

    snap = mesh_snapshot_parse((char *) body, blen, err, sizeof(err));
    if (snap == NULL) {
        ngx_snprintf((u_char *) reason, sizeof(reason),
                     "snapshot refused, keeping index %uL: %s%Z",
                     zone->sh->index, err);
        ngx_http_mesh_poll_fail(p, 0, reason);
        return;
    }

    policies = mesh_policies_parse(snap->policies, snap->policies_len, err,
                                   sizeof(err));
    if (policies == NULL) {
        ngx_snprintf((u_char *) reason, sizeof(reason),
                     "snapshot index %uL refused, keeping index %uL: "
                     "policies: %s%Z", snap->index, zone->sh->index, err);
        mesh_snapshot_free(snap);
        ngx_http_mesh_poll_fail(p, 0, reason);
        return;
    }

    mesh_policies_free(policies);

    old = zone->sh->index;

    if (zone->sh->snapshot == NULL || zone->sh->from_cache
        || snap->index != old)
    {
        if (ngx_http_mesh_store_snapshot(zone, body, blen, snap->index,
                                         p->log)
            == NGX_OK)
        {
            p->cache_dirty = 1;

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, p->log, 0,
                           "mesh: registry index %uL -> %uL", old,
                           snap->index);
        }
    }

    /* counters of instances long gone from the registry are freed */
    ngx_http_mesh_expire_stats(zone, snap);

    mesh_snapshot_free(snap);

    if (p->failures) {
        ngx_log_error(NGX_LOG_NOTICE, p->log, 0,
                      "mesh: registry %V is back, index %uL",
                      &p->mmcf->registry_uri, zone->sh->index);
    }

    p->failures = 0;
    ngx_http_mesh_set_reg_state(zone, NGX_HTTP_MESH_REG_SYNCED, NULL);

    ngx_http_mesh_poll_close(p);

    /* this worker's own view first, then the cache file */
    (void) ngx_http_mesh_sync(p->mmcf, p->log);

    if (p->cache_dirty && p->mmcf->cache_file.len && !p->cache.timer_set) {
        if (ngx_current_msec - p->cache_written >= NGX_HTTP_MESH_CACHE_EVERY)
        {
            ngx_http_mesh_write_cache(p);

        } else {
            ngx_add_timer(&p->cache, NGX_HTTP_MESH_CACHE_EVERY);
        }
    }

    if (p->owner && !ngx_exiting) {
        ngx_http_mesh_poll_start(p);
    }
}


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
    reason = (const char *) msg;

    if (p->failures++ == 0) {
        ngx_log_error(NGX_LOG_WARN, p->log, 0,
                      "mesh: registry %V: %s; routing on index %uL",
                      &p->mmcf->registry_uri, reason,
                      p->mmcf->zone.sh->index);
    }

    ngx_http_mesh_set_reg_state(&p->mmcf->zone, NGX_HTTP_MESH_REG_STALE,
                                reason);

    if (!p->owner || ngx_exiting) {
        return;
    }

    delay = p->failures < 3 ? 250 * p->failures : 1000;

    ngx_add_timer(&p->retry, delay);
}


static void
ngx_http_mesh_poll_close(ngx_http_mesh_poll_t *p)
{
    if (p->pc.connection) {
        ngx_close_connection(p->pc.connection);
        p->pc.connection = NULL;
    }

    p->active = 0;

    if (p->buf && p->size > 1024 * 1024) {
        /* do not keep a large buffer between polls */
        ngx_free(p->buf);
        p->buf = NULL;
        p->size = 0;
    }

    p->len = 0;
}


static void
ngx_http_mesh_cache_handler(ngx_event_t *ev)
{
    ngx_http_mesh_poll_t  *p = ev->data;

    if (p->cache_dirty) {
        ngx_http_mesh_write_cache(p);
    }
}


/*
 * Write the current snapshot to mesh_cache_file through a temporary file
 * and rename(), at most once a second. Like nginx's own temp files this
 * goes to the page cache; it runs in the poll owner only.
 */
static void
ngx_http_mesh_write_cache(ngx_http_mesh_poll_t *p)
{
    u_char                 *json, *tmp;
    size_t                  len;
    ngx_fd_t                fd;
    ngx_str_t              *file;
    ngx_http_mesh_zone_t   *zone;

    zone = &p->mmcf->zone;
    file = &p->mmcf->cache_file;

    p->cache_dirty = 0;
    p->cache_written = ngx_current_msec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    len = zone->sh->snapshot_len;
    json = zone->sh->snapshot ? ngx_alloc(len, p->log) : NULL;

    if (json) {
        ngx_memcpy(json, zone->sh->snapshot, len);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (json == NULL) {
        return;
    }

    tmp = ngx_alloc(file->len + sizeof(".tmp"), p->log);
    if (tmp == NULL) {
        ngx_free(json);
        return;
    }

    ngx_sprintf(tmp, "%V.tmp%Z", file);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, p->log, ngx_errno,
                      "mesh: cannot write cache file \"%s\"", tmp);
        goto done;
    }

    if (ngx_write_fd(fd, json, len) != (ssize_t) len) {
        ngx_log_error(NGX_LOG_ERR, p->log, ngx_errno,
                      "mesh: cannot write cache file \"%s\"", tmp);
        ngx_close_file(fd);
        (void) ngx_delete_file(tmp);
        goto done;
    }

    ngx_close_file(fd);

    if (ngx_rename_file(tmp, file->data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, p->log, ngx_errno,
                      "mesh: cannot rename \"%s\" to \"%V\"", tmp, file);
        (void) ngx_delete_file(tmp);
    }

done:

    ngx_free(tmp);
    ngx_free(json);
}
