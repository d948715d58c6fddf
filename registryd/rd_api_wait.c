/*
 * rd_api_wait: the snapshot and its long-poll (subscriptions, deltas, the
 * cached document), the proxies seen polling, and the event stream
 * (server-sent events): who waits, and when a waiter is answered.
 */

#include <arpa/inet.h>
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


/* the whole registry, as one cached document for every client */
static enum MHD_Result
rd_api_send_cached(rd_req_t *rq, const char *ae)
{
    size_t                len;
    const char           *data;
    rd_snapshot_t        *s;
    struct MHD_Response  *resp;

    s = rd_snapshot_get(&rq->api->snaps);

    data = s->json;
    len = s->len;

    if (ae && strstr(ae, "gzip") && rd_snapshot_gzip(s, &data, &len) != 0) {
        data = s->json;
        len = s->len;
    }

    resp = MHD_create_response_from_buffer_with_free_callback_cls(
               len, (void *) data, rd_release_snapshot_cb, s);
    if (resp == NULL) {
        rd_snapshot_release(s);
        return MHD_NO;
    }

    if (data != s->json) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING,
                                "gzip");
    }

    MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Accept-Encoding");

    return rd_api_send(rq, 200, resp, "application/json", s->index);
}


enum MHD_Result
rd_api_send_snapshot(rd_req_t *rq)
{
    int                   delta;
    char                  err[RD_ERR_LEN], *gz;
    size_t                gzlen;
    mesh_buf_t            b;
    uint64_t              index;
    const char           *ae, *field;
    rd_snapshot_ask_t     ask;
    rd_subscription_t     sub;
    struct MHD_Response  *resp;

    ae = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                     MHD_HTTP_HEADER_ACCEPT_ENCODING);

    if (rd_api_snapshot_ask(rq, &ask, &sub, &field, err) != 0) {
        return rd_api_error(rq, 400, err, field);
    }

    if (ask.sub == NULL && !ask.delta) {
        return rd_api_send_cached(rq, ae);
    }

    /* one client's own answer: a subscription or a delta */

    mesh_buf_init(&b, 4096);
    delta = rd_snapshot_answer(rq->api->reg, &ask, &b, &index);

    if (ask.sub) {
        rd_subscription_free(&sub);
    }

    rd_metrics_snapshot_answer(delta, b.len);

    /* a small answer costs more to compress than it saves */
    if (ae && strstr(ae, "gzip") && b.len > 1024
        && rd_gzip(b.data, b.len, &gz, &gzlen) == 0)
    {
        mesh_buf_free(&b);
        b.data = gz;
        b.len = gzlen;
        b.cap = gzlen;

        resp = MHD_create_response_from_buffer_with_free_callback(
                   b.len, b.data, rd_free_buf_cb);
        if (resp == NULL) {
            free(gz);
            return MHD_NO;
        }

        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING,
                                "gzip");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY,
                                "Accept-Encoding");

        return rd_api_send(rq, 200, resp, "application/json", index);
    }

    return rd_api_json(rq, 200, &b, index);
}


void
rd_api_unlink_waiter(rd_api_t *api, rd_req_t *rq)
{
    if (rq->prev) {
        rq->prev->next = rq->next;
    } else {
        api->waiters = rq->next;
    }

    if (rq->next) {
        rq->next->prev = rq->prev;
    }

    rq->prev = NULL;
    rq->next = NULL;
    rq->waiting = 0;
    api->nwaiters--;
    rd_api_peer_give(api, rq);
}


/*
 * An nginx says who it is (X-Mesh-Proxy): remember it for GET /v1/proxies;
 * a waiting poll keeps its name in rq->proxy until it ends. -1 with the
 * reason in rq->proxy when the header does not parse.
 */
static int
rd_api_proxy_seen(rd_req_t *rq, int waiting)
{
    char                        addr[MESH_ADDR_TEXT_LEN], name[256];
    char                        err[RD_ERR_LEN];
    const char                 *h, *services;
    const union MHD_ConnectionInfo  *info;

    h = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                    "X-Mesh-Proxy");
    if (h == NULL) {
        return 0;
    }

    info = MHD_get_connection_info(rq->conn,
                                   MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    mesh_addr_text(info ? info->client_addr : NULL, addr, sizeof(addr));

    services = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND,
                                           "services");

    if (rd_proxies_seen(rq->api->proxies, h, addr, services, waiting, name,
                        err)
        != 0)
    {
        snprintf(rq->proxy, sizeof(rq->proxy), "%s", err);
        return -1;
    }

    if (waiting) {
        snprintf(rq->proxy, sizeof(rq->proxy), "%s", name);
    }

    return 0;
}


static enum MHD_Result
rd_api_proxy_error(rd_req_t *rq)
{
    char  msg[RD_ERR_LEN];

    snprintf(msg, sizeof(msg), "%s", rq->proxy);
    rq->proxy[0] = '\0';

    return rd_api_error(rq, 400, msg, "X-Mesh-Proxy");
}


enum MHD_Result
rd_api_proxies(rd_req_t *rq)
{
    mesh_buf_t  b;

    mesh_buf_init(&b, 4096);
    rd_proxies_render(rq->api->proxies, rq->api->reg, &b);

    return rd_api_json(rq, 200, &b, rd_registry_index(rq->api->reg));
}


enum MHD_Result
rd_api_snapshot(rd_req_t *rq)
{
    char               err[RD_ERR_LEN];
    int64_t            wait;
    rd_api_t          *api = rq->api;
    const char        *index, *w, *field;
    rd_snapshot_ask_t  ask;
    rd_subscription_t  sub;

    w = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "wait");

    wait = api->conf->default_wait;

    if (w) {
        wait = mesh_duration_parse(w);
        if (wait < 0) {
            return rd_api_error(rq, 400, "wait must be a duration such as "
                                "\"30s\"", "wait");
        }

        if (wait > api->conf->max_wait) {
            wait = api->conf->max_wait;
        }
    }

    /* every argument is checked before the request may wait */
    if (rd_api_snapshot_ask(rq, &ask, &sub, &field, err) != 0) {
        return rd_api_error(rq, 400, err, field);
    }

    index = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND,
                                        "index");

    /*
     * Wait only for a client that has the current index of this very
     * registry: one that asks for deltas says which registry it knows.
     */
    if (index == NULL || wait == 0
        || ask.since != rd_registry_index(api->reg)
        || (ask.delta && ask.registry != rd_registry_id(api->reg)))
    {
        if (ask.sub) {
            rd_subscription_free(&sub);
        }

        if (rd_api_proxy_seen(rq, 0) != 0) {
            return rd_api_proxy_error(rq);
        }

        return rd_api_send_snapshot(rq);
    }

    if (rd_api_proxy_seen(rq, 1) != 0) {
        if (ask.sub) {
            rd_subscription_free(&sub);
        }

        return rd_api_proxy_error(rq);
    }

    rq->want_index = ask.since;
    rq->checked = ask.since;

    if (ask.sub && ask.delta && api->reg->events) {
        /* kept for the wait: a change elsewhere does not end it */
        rq->sub = sub;
        rq->has_sub = 1;

    } else if (ask.sub) {
        rd_subscription_free(&sub);
    }

    return rd_api_wait(rq, wait, RD_REQ_WAIT_INDEX);
}


/* a waiter's reason to stop waiting is there; api->lock held */
static void
rd_api_concerns(void *data, const rd_event_t *e)
{
    rd_req_t  *rq = data;

    /* a policy event names no host: any may concern the subscription */
    if (e->service[0] == '\0' || rd_subscription_has(&rq->sub, e->service)) {
        rq->checked = 0;
    }
}


int
rd_api_ready(rd_req_t *rq)
{
    uint64_t  index;

    if (rq->state == RD_REQ_WAIT_EVENTS) {
        return rd_events_last(rq->api->reg->events) > rq->want_index;
    }

    index = rd_registry_index(rq->api->reg);

    if (rq->want_index == index) {
        return 0;
    }

    if (!rq->has_sub || index < rq->checked) {
        return 1;
    }

    /*
     * A subscription waits on while the changes concern other services:
     * nginx has nothing to do for them. The changes since the last look
     * only are looked at; those no longer kept end the wait.
     */
    if (rd_events_since(rq->api->reg->events, rq->checked, index,
                        rd_api_concerns, rq)
        != 0)
    {
        return 1;
    }

    if (rq->checked == 0) {
        return 1;
    }

    rq->checked = index;

    return 0;
}


/* FNV-1a of an address key */
static size_t
rd_api_peer_bucket(const unsigned char *key)
{
    size_t    i;
    uint32_t  h;

    h = 2166136261u;

    for (i = 0; i < RD_PEER_KEY; i++) {
        h = (h ^ key[i]) * 16777619u;
    }

    return h % RD_PEER_BUCKETS;
}


/*
 * waits_per_address: one host's long-polls and event streams are counted
 * (api->lock held), so that it cannot take every connection from the
 * nginx pollers. 0: counted; -1: that address is at its limit.
 */
int
rd_api_peer_take(rd_api_t *api, rd_req_t *rq)
{
    size_t                           b;
    rd_peer_t                       *p;
    const struct sockaddr           *sa;
    const union MHD_ConnectionInfo  *info;

    if (api->conf->waits_per_address == 0 || rq->peer_counted) {
        return 0;
    }

    info = MHD_get_connection_info(rq->conn,
                                   MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    sa = info ? info->client_addr : NULL;

    memset(rq->peer_key, 0, sizeof(rq->peer_key));

    if (sa && sa->sa_family == AF_INET) {
        rq->peer_key[0] = 4;
        memcpy(rq->peer_key + 1,
               &((const struct sockaddr_in *) sa)->sin_addr, 4);

    } else if (sa && sa->sa_family == AF_INET6) {
        rq->peer_key[0] = 6;
        memcpy(rq->peer_key + 1,
               &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
    }

    b = rd_api_peer_bucket(rq->peer_key);

    for (p = api->peers[b]; p; p = p->next) {
        if (memcmp(p->key, rq->peer_key, sizeof(p->key)) == 0) {
            break;
        }
    }

    if (p == NULL) {
        p = mesh_xcalloc(1, sizeof(rd_peer_t));
        memcpy(p->key, rq->peer_key, sizeof(p->key));
        p->next = api->peers[b];
        api->peers[b] = p;
    }

    if (p->n >= (size_t) api->conf->waits_per_address) {
        return -1;
    }

    p->n++;
    rq->peer_counted = 1;

    return 0;
}


void
rd_api_peer_give(rd_api_t *api, rd_req_t *rq)
{
    size_t       b;
    rd_peer_t  **pp, *p;

    if (!rq->peer_counted) {
        return;
    }

    rq->peer_counted = 0;
    b = rd_api_peer_bucket(rq->peer_key);

    for (pp = &api->peers[b]; (p = *pp); pp = &p->next) {
        if (memcmp(p->key, rq->peer_key, sizeof(p->key)) == 0) {
            if (--p->n == 0) {
                *pp = p->next;
                free(p);
            }
            return;
        }
    }
}


/* wait for the next change (state WAIT_INDEX or WAIT_EVENTS) or for
 * wait ms: suspend first, then become visible */
enum MHD_Result
rd_api_wait(rd_req_t *rq, int64_t wait, int state)
{
    rd_api_t                         *api = rq->api;
    const union MHD_ConnectionInfo  *info;

    info = MHD_get_connection_info(rq->conn,
                                   MHD_CONNECTION_INFO_CONNECTION_FD);
    rq->fd = info ? info->connect_fd : -1;

    pthread_mutex_lock(&api->lock);

    if (rd_api_peer_take(api, rq) != 0) {
        pthread_mutex_unlock(&api->lock);
        return rd_api_error(rq, 429, "too many long-polls and event streams "
                            "from this address (waits_per_address)", NULL);
    }

    pthread_mutex_unlock(&api->lock);

    rq->deadline = rd_now_ms() + wait;
    rq->state = state;

    MHD_set_connection_option(rq->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                              (unsigned int) (wait / 1000 + 60));
    MHD_suspend_connection(rq->conn);

    pthread_mutex_lock(&api->lock);

    if (api->stopping || rd_api_ready(rq)) {
        rd_api_peer_give(api, rq);
        pthread_mutex_unlock(&api->lock);
        MHD_resume_connection(rq->conn);
        return MHD_YES;
    }

    rq->next = api->waiters;
    rq->prev = NULL;
    if (api->waiters) {
        api->waiters->prev = rq;
    }
    api->waiters = rq;
    api->nwaiters++;
    rq->waiting = 1;

    pthread_mutex_unlock(&api->lock);

    return MHD_YES;
}


/* events */

enum MHD_Result
rd_api_send_events(rd_req_t *rq)
{
    int        truncated;
    mesh_buf_t  items, b;
    uint64_t   upto;
    rd_api_t  *api = rq->api;

    mesh_buf_init(&items, 4096);
    rd_events_render(api->reg->events, rq->want_index, 0, RD_EVENTS_JSON,
                     &items, &upto, &truncated);

    mesh_buf_init(&b, items.len + 64);
    mesh_buf_adds(&b, "{\"index\":");
    mesh_buf_add_u64(&b, upto);
    mesh_buf_adds(&b, ",\"events\":[");
    mesh_buf_add(&b, items.data, items.len);
    mesh_buf_addc(&b, ']');

    if (truncated && rq->has_index) {
        mesh_buf_adds(&b, ",\"truncated\":true");
    }

    mesh_buf_adds(&b, "}\n");
    mesh_buf_free(&items);

    return rd_api_json(rq, 200, &b, rd_registry_index(api->reg));
}


/* libmicrohttpd asks for more of an event stream */
static ssize_t
rd_api_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    int        truncated;
    size_t     n;
    mesh_buf_t  note;
    uint64_t   upto;
    rd_req_t  *rq = cls;
    rd_api_t  *api = rq->api;

    (void) pos;

    while (rq->out_off == rq->out.len) {
        rq->out.len = 0;
        rq->out_off = 0;

        rd_events_render(api->reg->events, rq->ev_last, 256, RD_EVENTS_SSE,
                         &rq->out, &upto, &truncated);

        if (truncated) {
            /* the client is behind what is kept: say so before going on
             * from the oldest event kept */
            mesh_buf_init(&note, rq->out.len + 64);
            mesh_buf_adds(&note, "event: truncated\ndata: {\"index\":");
            mesh_buf_add_u64(&note, rq->ev_last);
            mesh_buf_adds(&note, ",\"truncated\":true}\n\n");
            mesh_buf_add(&note, rq->out.data, rq->out.len);
            mesh_buf_free(&rq->out);
            rq->out = note;
        }

        if (rq->out.len) {
            rq->ev_last = upto;
            break;
        }

        /* nothing new: suspend until the next change, a ping or the end;
         * checked and suspended under the lock rd_api_wake_streams takes */

        pthread_mutex_lock(&api->lock);

        if (rd_events_last(api->reg->events) > rq->ev_last) {
            pthread_mutex_unlock(&api->lock);
            continue;
        }

        if (rq->gone) {
            pthread_mutex_unlock(&api->lock);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }

        if (rq->ping) {
            rq->ping = 0;
            pthread_mutex_unlock(&api->lock);
            mesh_buf_adds(&rq->out, ": ping\n\n");
            break;
        }

        if (api->stopping) {
            pthread_mutex_unlock(&api->lock);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }

        rq->suspended = 1;
        MHD_suspend_connection(rq->conn);
        pthread_mutex_unlock(&api->lock);

        return 0;
    }

    n = rq->out.len - rq->out_off;
    if (n > max) {
        n = max;
    }

    memcpy(buf, rq->out.data + rq->out_off, n);
    rq->out_off += n;

    return (ssize_t) n;
}


void
rd_api_unlink_stream(rd_api_t *api, rd_req_t *rq)
{
    if (rq->sprev) {
        rq->sprev->snext = rq->snext;
    } else {
        api->streams = rq->snext;
    }

    if (rq->snext) {
        rq->snext->sprev = rq->sprev;
    }

    rq->sprev = NULL;
    rq->snext = NULL;
    rq->streaming = 0;
    api->nstreams--;
    rd_api_peer_give(api, rq);
}


/* the client of a suspended connection hung up (it cannot see it) */
int
rd_api_hung_up(int fd)
{
    struct pollfd  pfd;

    if (fd < 0) {
        return 0;
    }

    pfd.fd = fd;
    pfd.events = POLLRDHUP;
    pfd.revents = 0;

    return poll(&pfd, 1, 0) > 0
           && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}


/*
 * Resume the streams that wait for events. ping: make each send a comment
 * even without one. hangups: only those whose client hung up, which a
 * suspended connection does not notice by itself.
 */
void
rd_api_wake_streams(rd_api_t *api, int ping, int hangups)
{
    rd_req_t       *rq;

    pthread_mutex_lock(&api->lock);

    for (rq = api->streams; rq; rq = rq->snext) {
        rq->ping |= ping;

        if (hangups) {
            if (!rq->suspended || !rd_api_hung_up(rq->fd)) {
                continue;
            }

            rq->gone = 1;
        }

        if (rq->suspended) {
            rq->suspended = 0;
            MHD_resume_connection(rq->conn);
        }
    }

    pthread_mutex_unlock(&api->lock);
}


static enum MHD_Result
rd_api_stream(rd_req_t *rq, uint64_t after)
{
    char                              msg[96];
    const union MHD_ConnectionInfo   *info;
    rd_api_t             *api = rq->api;
    struct MHD_Response  *resp;

    pthread_mutex_lock(&api->lock);

    if (api->stopping) {
        pthread_mutex_unlock(&api->lock);
        return rd_api_error(rq, 503, "registryd is shutting down", NULL);
    }

    if (api->nstreams >= (size_t) api->conf->events_max_clients) {
        pthread_mutex_unlock(&api->lock);
        snprintf(msg, sizeof(msg), "too many event streams (at most %lld)",
                 (long long) api->conf->events_max_clients);
        return rd_api_error(rq, 503, msg, NULL);
    }

    if (rd_api_peer_take(api, rq) != 0) {
        pthread_mutex_unlock(&api->lock);
        return rd_api_error(rq, 429, "too many long-polls and event streams "
                            "from this address (waits_per_address)", NULL);
    }

    info = MHD_get_connection_info(rq->conn,
                                   MHD_CONNECTION_INFO_CONNECTION_FD);

    rq->streaming = 1;
    rq->fd = info ? info->connect_fd : -1;
    rq->ev_last = after;
    mesh_buf_init(&rq->out, 4096);
    mesh_buf_adds(&rq->out, "retry: 1000\n\n");

    rq->sprev = NULL;
    rq->snext = api->streams;
    if (api->streams) {
        api->streams->sprev = rq;
    }
    api->streams = rq;
    api->nstreams++;

    pthread_mutex_unlock(&api->lock);

    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
                                             rd_api_stream_read, rq, NULL);
    if (resp == NULL) {
        return MHD_NO;          /* rd_api_completed unlinks the stream */
    }

    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");

    /* a stream is idle between events: no timeout, pings find dead peers */
    MHD_set_connection_option(rq->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0);

    return rd_api_send(rq, 200, resp, "text/event-stream",
                       rd_registry_index(api->reg));
}


static int
rd_api_parse_index(const char *s, uint64_t *out)
{
    char                *end;
    unsigned long long   v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno) {
        return -1;
    }

    *out = v;
    return 0;
}


enum MHD_Result
rd_api_events(rd_req_t *rq)
{
    int          sse;
    int64_t      wait;
    uint64_t     after;
    rd_api_t    *api = rq->api;
    const char  *index, *w, *accept, *last_id;

    index = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND,
                                        "index");
    w = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "wait");
    accept = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_ACCEPT);
    last_id = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                          "Last-Event-ID");

    sse = (accept && strstr(accept, "text/event-stream") != NULL);

    wait = api->conf->default_wait;

    if (w) {
        wait = mesh_duration_parse(w);
        if (wait < 0) {
            return rd_api_error(rq, 400, "wait must be a duration such as "
                                "\"30s\"", "wait");
        }

        if (wait > api->conf->max_wait) {
            wait = api->conf->max_wait;
        }
    }

    after = 0;

    if (index && rd_api_parse_index(index, &after) != 0) {
        return rd_api_error(rq, 400, "index must be a non-negative integer",
                            "index");
    }

    if (sse && last_id && last_id[0]) {
        if (rd_api_parse_index(last_id, &after) != 0) {
            return rd_api_error(rq, 400, "Last-Event-ID must be an event "
                                "index", "Last-Event-ID");
        }
        index = last_id;
    }

    if (sse) {
        return rd_api_stream(rq, after);
    }

    rq->want_index = after;
    rq->has_index = (index != NULL);

    if (index == NULL || wait == 0
        || rd_events_last(api->reg->events) > after)
    {
        return rd_api_send_events(rq);
    }

    return rd_api_wait(rq, wait, RD_REQ_WAIT_EVENTS);
}
