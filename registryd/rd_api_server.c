/*
 * rd_api_server: the HTTP server: libmicrohttpd started (listen address,
 * thread pool, limits) and stopped, its log, and the timer thread that
 * wakes long-polls and event streams and runs the TTL scan.
 */

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "mesh_alloc.h"
#include "rd_api_int.h"


/*
 * Long-polls whose client hung up end now: a suspended connection does
 * not notice by itself, and GET /v1/proxies would count a gone nginx as
 * waiting until its wait ends.
 */
static void
rd_api_hangup_waiters(rd_api_t *api)
{
    rd_req_t  *rq, *next;

    pthread_mutex_lock(&api->lock);

    for (rq = api->waiters; rq; rq = next) {
        next = rq->next;

        if (!rd_api_hung_up(rq->fd)) {
            continue;
        }

        rd_api_unlink_waiter(api, rq);
        MHD_resume_connection(rq->conn);
    }

    pthread_mutex_unlock(&api->lock);
}


/* wake waiters: all of them (changed) or those past their deadline */

static void
rd_api_wake(rd_api_t *api, int all)
{
    int64_t    now;
    rd_req_t  *rq, *next;

    now = rd_now_ms();

    pthread_mutex_lock(&api->lock);

    for (rq = api->waiters; rq; rq = next) {
        next = rq->next;

        if ((all && (api->stopping || rd_api_ready(rq)))
            || rq->deadline <= now)
        {
            rd_api_unlink_waiter(api, rq);
            MHD_resume_connection(rq->conn);
        }
    }

    pthread_mutex_unlock(&api->lock);
}


static void
rd_api_on_change(void *data, uint64_t index)
{
    rd_api_t  *api = data;

    rd_debug("index %llu", (unsigned long long) index);
    rd_api_wake(api, 1);
    rd_api_wake_streams(api, 0, 0);
}


static void *
rd_api_timer(void *arg)
{
    int64_t          next_scan, next_ping, next_hangup, now;
    rd_api_t        *api = arg;
    struct timespec  ts;

    next_scan = 0;
    next_ping = rd_now_ms() + RD_PING_MS;
    next_hangup = 0;

    pthread_mutex_lock(&api->tlock);

    while (!api->timer_stop) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += RD_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }

        pthread_cond_timedwait(&api->tcond, &api->tlock, &ts);

        if (api->timer_stop) {
            break;
        }

        pthread_mutex_unlock(&api->tlock);

        rd_api_wake(api, 0);

        now = rd_now_ms();
        if (now >= next_scan) {
            rd_registry_scan_ttl(api->reg);
            next_scan = now + api->conf->ttl_scan_interval;
        }

        if (now >= next_ping) {
            rd_api_wake_streams(api, 1, 0);
            next_ping = now + RD_PING_MS;
        }

        if (now >= next_hangup) {
            rd_api_wake_streams(api, 0, 1);
            rd_api_hangup_waiters(api);
            next_hangup = now + RD_HANGUP_MS;
        }

        pthread_mutex_lock(&api->tlock);
    }

    pthread_mutex_unlock(&api->tlock);

    return NULL;
}


/*
 * Percent-decoding of the path and arguments, as libmicrohttpd's own but
 * leaving "%2F" encoded: a slash inside a name must not split the path,
 * it must make the name invalid.
 */
static int
rd_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


size_t
rd_api_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    int     hi, lo;
    char   *r, *w;

    (void) cls;
    (void) conn;

    for (r = s, w = s; *r; r++) {
        if (*r == '%' && r[1] && r[2]) {
            hi = rd_hexval(r[1]);
            lo = rd_hexval(r[2]);

            if (hi >= 0 && lo >= 0 && (hi << 4 | lo) != '/'
                && (hi << 4 | lo) != 0)
            {
                *w++ = (char) (hi << 4 | lo);
                r += 2;
                continue;
            }
        }

        *w++ = *r;
    }

    *w = '\0';

    return (size_t) (w - s);
}


/* libmicrohttpd's lines a client can cause at will: connections turned
 * away for a limit (0), malformed requests and the rest (1) */
static pthread_mutex_t  rd_api_log_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t          rd_api_logged[2] = { -10000, -10000 };
static size_t           rd_api_quiet[2];


static void
rd_api_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char     line[512];
    int      k;
    size_t   n, quiet;
    int64_t  now;

    (void) cls;

    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n && line[n - 1] == '\n') {
        line[--n] = '\0';
    }

    /* a client that goes away, is turned away for its address, or fails
     * its TLS handshake (plain HTTP to HTTPS, a scanner) is its own
     * business: a thousand of them must not flood the log */
    if (strcasestr(line, "disconnect") || strcasestr(line, "reset by")
        || strcasestr(line, "closed by remote")
        || strcasestr(line, "handshake") || strcasestr(line, "TLS packet")
        || strcasestr(line, "TLS alert")
        || strcasestr(line, "timed out") || strcasestr(line, "timeout")
        || strcasestr(line, "broken pipe"))
    {
        rd_debug("http: %s", line);
        return;
    }

    /* connections turned away (the limit, or one address's), malformed
     * requests: said once, then how many more every 10 s at most */
    k = strcasestr(line, "connection limit") ? 0 : 1;
    now = rd_now_ms();

    pthread_mutex_lock(&rd_api_log_lock);

    if (now - rd_api_logged[k] < 10000) {
        rd_api_quiet[k]++;
        pthread_mutex_unlock(&rd_api_log_lock);
        return;
    }

    quiet = rd_api_quiet[k];
    rd_api_quiet[k] = 0;
    rd_api_logged[k] = now;

    pthread_mutex_unlock(&rd_api_log_lock);

    if (quiet) {
        rd_warn("http: %s (and %zu more %s since the last such line)", line,
                quiet, k == 0 ? "turned away" : "like it");
        return;
    }

    rd_warn("http: %s", line);
}


rd_api_t *
rd_api_create(rd_registry_t *reg, const rd_conf_t *conf, rd_auth_t *auth,
    char *err)
{
    int               port;
    char              host[MESH_ADDR_LEN];
    rd_api_t         *api;
    unsigned int      flags;
    mesh_sockaddr_t   sa;

    /* rd_conf took only an IP ADDR:PORT */
    if (mesh_hostport_parse(conf->listen, host, sizeof(host), &port, &sa)
        != MESH_ADDR_OK)
    {
        snprintf(err, RD_ERR_LEN, "bad listen address \"%s\"", conf->listen);
        return NULL;
    }

    flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL
            | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

    if (sa.u.sa.sa_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }

    api = mesh_xcalloc(1, sizeof(rd_api_t));

    api->reg = reg;
    api->conf = conf;
    api->auth = auth;
    api->ntrusted = rd_conf_networks(conf->trusted_networks, api->trusted,
                                     sizeof(api->trusted)
                                     / sizeof(api->trusted[0]));
    api->nprobe = rd_conf_networks(conf->probe_networks, api->probe,
                                   sizeof(api->probe) / sizeof(api->probe[0]));
    rd_snapshot_cache_init(&api->snaps, reg);

    api->proxies = rd_proxies_create(conf->proxy_gone_after);
    pthread_mutex_init(&api->lock, NULL);
    pthread_mutex_init(&api->tlock, NULL);
    pthread_cond_init(&api->tcond, NULL);

    if (rd_api_tls_load(api, conf, err) != 0) {
        goto fail;
    }

    if (api->tls_cert) {
        flags |= MHD_USE_TLS;
    }

    reg->on_change = rd_api_on_change;
    reg->on_change_data = api;

    api->mhd = MHD_start_daemon(flags, (uint16_t) port, NULL, NULL,
                   rd_api_handler, api,
                   MHD_OPTION_EXTERNAL_LOGGER, rd_api_mhd_log, NULL,
                   MHD_OPTION_SOCK_ADDR, &sa.u.sa,
                   MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) conf->threads,
                   MHD_OPTION_CONNECTION_LIMIT,
                   (unsigned int) conf->connection_limit,
                   /* one host cannot take every slot from the pollers */
                   MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                   (unsigned int) conf->connections_per_address,
                   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 120,
                   MHD_OPTION_NOTIFY_COMPLETED, rd_api_completed, api,
                   MHD_OPTION_UNESCAPE_CALLBACK, rd_api_unescape, NULL,
                   MHD_OPTION_ARRAY, api->tls_opts,
                   MHD_OPTION_END);

    if (api->mhd == NULL) {
        snprintf(err, RD_ERR_LEN, "cannot listen on %s: %s", conf->listen,
                 errno == EADDRINUSE || errno == EACCES ? strerror(errno)
                 : api->tls_cert ? "libmicrohttpd failed to start (the line "
                                   "above says why: tls_cert, tls_key?)"
                 : errno ? strerror(errno)
                 : "libmicrohttpd failed to start");
        goto fail;
    }

    if (pthread_create(&api->timer, NULL, rd_api_timer, api) != 0) {
        snprintf(err, RD_ERR_LEN, "cannot start the timer thread");
        goto fail;
    }

    api->timer_running = 1;
    return api;

fail:

    rd_api_free(api);
    return NULL;
}


void
rd_api_quiesce(rd_api_t *api)
{
    if (api == NULL) {
        return;
    }

    pthread_mutex_lock(&api->lock);
    api->stopping = 1;
    pthread_mutex_unlock(&api->lock);

    rd_api_wake(api, 1);
    rd_api_wake_streams(api, 0, 0);
}


void
rd_api_free(rd_api_t *api)
{
    size_t  k;

    if (api == NULL) {
        return;
    }

    if (api->timer_running) {
        pthread_mutex_lock(&api->tlock);
        api->timer_stop = 1;
        pthread_cond_signal(&api->tcond);
        pthread_mutex_unlock(&api->tlock);
        pthread_join(api->timer, NULL);
    }

    rd_api_quiesce(api);

    if (api->mhd) {
        MHD_stop_daemon(api->mhd);
    }

    rd_api_tls_free(api);

    api->reg->on_change = NULL;

    rd_snapshot_cache_free(&api->snaps);
    rd_proxies_free(api->proxies);
    pthread_mutex_destroy(&api->lock);
    pthread_mutex_destroy(&api->tlock);
    pthread_cond_destroy(&api->tcond);
    for (k = 0; k < RD_PEER_BUCKETS; k++) {
        while (api->peers[k]) {
            rd_peer_t  *p = api->peers[k];

            api->peers[k] = p->next;
            free(p);
        }
    }

    free(api);
}
