/*
 * rd_api: routes, validation, long-polls.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "rd_api.h"
#include "rd_metrics.h"
#include "rd_proxies.h"
#include "rd_route.h"
#include "rd_snapshot.h"

#define RD_TICK_MS  10
#define RD_PING_MS    15000     /* a comment to idle event streams */
#define RD_HANGUP_MS  1000      /* look for streams whose client left */

typedef struct rd_req_s  rd_req_t;

enum {
    RD_REQ_NEW = 0,
    RD_REQ_WAIT_OP,
    RD_REQ_WAIT_INDEX,
    RD_REQ_WAIT_EVENTS,
    RD_REQ_ANSWERED
};

enum {
    RD_M_GET = 1,
    RD_M_PUT = 2,
    RD_M_DELETE = 4,
    RD_M_OTHER = 8
};

struct rd_req_s {
    rd_api_t               *api;
    struct MHD_Connection  *conn;
    rd_route_e              route;
    int                     method;
    int                     state;
    char                    svc[RD_NAME_MAX + 1];
    char                    id[RD_NAME_MAX + 1];
    rd_buf_t                body;
    int                     too_large;
    rd_op_t                *op;
    uint64_t                want_index;
    int64_t                 deadline;
    int64_t                 start_us;
    rd_req_t               *prev;
    rd_req_t               *next;
    int                     waiting;

    int                     has_index;  /* events: ?index= given */

    /* a snapshot wait of a subscription: woken only by what concerns it */
    rd_subscription_t       sub;
    int                     has_sub;
    uint64_t                checked;    /* changes seen up to here are
                                           not about it */

    char                    proxy[RD_PROXY_NAME_MAX + 1];  /* X-Mesh-Proxy
                                           name of a waiting poll */

    /* an event stream (SSE); the flags under api->lock */
    int                     streaming;
    int                     suspended;
    int                     ping;
    int                     gone;       /* the client hung up */
    int                     fd;
    uint64_t                ev_last;    /* newest event sent */
    rd_buf_t                out;        /* rendered, not yet sent */
    size_t                  out_off;
    rd_req_t               *sprev;
    rd_req_t               *snext;
};

struct rd_api_s {
    struct MHD_Daemon      *mhd;
    rd_registry_t          *reg;
    const rd_conf_t        *conf;
    char                   *token;
    rd_snapshot_cache_t     snaps;
    rd_proxies_t           *proxies;

    pthread_mutex_t         lock;       /* waiters, stopping */
    rd_req_t               *waiters;
    size_t                  nwaiters;
    rd_req_t               *streams;
    size_t                  nstreams;
    int                     stopping;

    pthread_t               timer;
    pthread_mutex_t         tlock;
    pthread_cond_t          tcond;
    int                     timer_stop;
    int                     timer_running;
};


static int64_t
rd_now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static enum MHD_Result rd_api_wait(rd_req_t *rq, int64_t wait, int state);


/* responses */

static void
rd_free_buf_cb(void *cls)
{
    free(cls);
}


static void
rd_release_snapshot_cb(void *cls)
{
    rd_snapshot_release(cls);
}


static enum MHD_Result
rd_api_send(rd_req_t *rq, int status, struct MHD_Response *resp,
    const char *ctype, uint64_t index)
{
    char             idx[24];
    enum MHD_Result  rc;

    if (resp == NULL) {
        return MHD_NO;
    }

    snprintf(idx, sizeof(idx), "%llu", (unsigned long long) index);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "X-Mesh-Index", idx);

    rc = MHD_queue_response(rq->conn, (unsigned int) status, resp);
    MHD_destroy_response(resp);

    rq->state = RD_REQ_ANSWERED;
    rd_metrics_request(rq->route, status, rd_now_us() - rq->start_us);

    return rc;
}


/* takes ownership of b's data */
static enum MHD_Result
rd_api_send_buf(rd_req_t *rq, int status, rd_buf_t *b, uint64_t index,
    const char *ctype)
{
    struct MHD_Response  *resp;

    resp = MHD_create_response_from_buffer_with_free_callback(
               b->len, b->data, rd_free_buf_cb);
    if (resp == NULL) {
        rd_buf_free(b);
        return MHD_NO;
    }

    b->data = NULL;
    b->len = 0;
    b->cap = 0;

    return rd_api_send(rq, status, resp, ctype, index);
}


static enum MHD_Result
rd_api_json(rd_req_t *rq, int status, rd_buf_t *b, uint64_t index)
{
    return rd_api_send_buf(rq, status, b, index, "application/json");
}


static enum MHD_Result
rd_api_error(rd_req_t *rq, int status, const char *msg, const char *field)
{
    rd_buf_t  b;

    rd_buf_init(&b, 128);
    rd_buf_adds(&b, "{\"error\":");
    rd_buf_add_json_str(&b, msg);

    if (field) {
        rd_buf_adds(&b, ",\"field\":");
        rd_buf_add_json_str(&b, field);
    }

    rd_buf_adds(&b, "}\n");

    rd_debug("%d %s%s%s", status, msg, field ? " field " : "",
             field ? field : "");

    return rd_api_json(rq, status, &b, rd_registry_index(rq->api->reg));
}


static enum MHD_Result
rd_api_not_allowed(rd_req_t *rq, const char *allow)
{
    char                  msg[96];
    rd_buf_t              b;
    struct MHD_Response  *resp;

    snprintf(msg, sizeof(msg), "method not allowed; allowed: %s", allow);

    rd_buf_init(&b, 128);
    rd_buf_adds(&b, "{\"error\":");
    rd_buf_add_json_str(&b, msg);
    rd_buf_adds(&b, "}\n");

    resp = MHD_create_response_from_buffer_with_free_callback(
               b.len, b.data, rd_free_buf_cb);
    if (resp == NULL) {
        rd_buf_free(&b);
        return MHD_NO;
    }

    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);

    return rd_api_send(rq, 405, resp, "application/json",
                       rd_registry_index(rq->api->reg));
}


/* routing */

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


static int
rd_api_segment(const char **p, char *out)
{
    size_t       n;
    const char  *s = *p, *e;

    e = strchr(s, '/');
    n = e ? (size_t) (e - s) : strlen(s);

    if (n == 0 || n > RD_NAME_MAX) {
        return n == 0 ? -1 : -2;
    }

    memcpy(out, s, n);
    out[n] = '\0';
    *p = e ? e + 1 : s + n;

    return mesh_name_valid(out, n) ? 0 : -2;
}


/*
 * Sets rq->route, svc and id. Returns the methods the route allows, or 0
 * for an unknown path; -1 for a path of the right shape with a bad name.
 */
static int
rd_api_route(rd_req_t *rq, const char *url, const char **bad)
{
    int          rc;
    const char  *p;

    *bad = NULL;

    if (strcmp(url, "/healthz") == 0) {
        rq->route = RD_ROUTE_HEALTHZ;
        return RD_M_GET;
    }

    if (strcmp(url, "/metrics") == 0) {
        rq->route = RD_ROUTE_METRICS;
        return RD_M_GET;
    }

    if (strcmp(url, "/v1/snapshot") == 0) {
        rq->route = RD_ROUTE_SNAPSHOT;
        return RD_M_GET;
    }

    if (strcmp(url, "/v1/proxies") == 0) {
        rq->route = RD_ROUTE_PROXIES;
        return RD_M_GET;
    }

    if (strcmp(url, "/v1/events") == 0) {
        rq->route = RD_ROUTE_EVENTS;
        return RD_M_GET;
    }

    if (strcmp(url, "/v1/services") == 0 || strcmp(url, "/v1/services/") == 0)
    {
        rq->route = RD_ROUTE_SERVICES;
        return RD_M_GET;
    }

    if (strncmp(url, "/v1/policies", 12) == 0
        && (url[12] == '\0' || url[12] == '/'))
    {
        rq->route = RD_ROUTE_POLICIES;

        if (url[12] == '\0' || url[13] == '\0') {
            return RD_M_GET;
        }

        p = url + 13;
        rc = rd_api_segment(&p, rq->id);
        if (rc != 0 || *p != '\0') {
            *bad = "name";
            return (rc == -2) ? -1 : 0;
        }

        return RD_M_GET | RD_M_PUT | RD_M_DELETE;
    }

    if (strncmp(url, "/v1/services/", 13) != 0) {
        rq->route = RD_ROUTE_OTHER;
        return 0;
    }

    p = url + 13;

    rc = rd_api_segment(&p, rq->svc);
    if (rc != 0) {
        *bad = "service";
        rq->route = RD_ROUTE_SERVICE;
        return rc == -1 ? 0 : -1;
    }

    if (*p == '\0') {
        rq->route = RD_ROUTE_SERVICE;
        return RD_M_GET;
    }

    if (strncmp(p, "instances/", 10) != 0) {
        rq->route = RD_ROUTE_OTHER;
        return 0;
    }

    p += 10;
    rq->route = RD_ROUTE_INSTANCE;

    rc = rd_api_segment(&p, rq->id);
    if (rc != 0) {
        *bad = "id";
        return rc == -1 ? 0 : -1;
    }

    if (*p == '\0') {
        return RD_M_GET | RD_M_PUT | RD_M_DELETE;
    }

    if (strcmp(p, "heartbeat") == 0) {
        rq->route = RD_ROUTE_HEARTBEAT;
        return RD_M_PUT;
    }

    rq->route = RD_ROUTE_OTHER;
    return 0;
}


static const char *
rd_api_allow(int methods)
{
    switch (methods) {
    case RD_M_GET:
        return "GET, HEAD";
    case RD_M_PUT:
        return "PUT";
    default:
        return "GET, HEAD, PUT, DELETE";
    }
}


static int
rd_api_authorized(rd_req_t *rq)
{
    const char  *h;

    if (rq->api->token == NULL) {
        return 1;
    }

    h = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                    MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        return 0;
    }

    h += 7;
    while (*h == ' ') {
        h++;
    }

    return rd_secure_equal(h, rq->api->token);
}


/* reads */

static enum MHD_Result
rd_api_healthz(rd_req_t *rq)
{
    char       err[RD_ERR_LEN];
    rd_buf_t   b;
    uint64_t   index;
    rd_api_t  *api = rq->api;

    index = rd_registry_index(api->reg);

    if (!api->reg->store_ok || rd_store_check(api->reg->store, err) != 0) {
        return rd_api_error(rq, 500, api->reg->store_ok
                                     ? err : "store commits are failing",
                            NULL);
    }

    rd_buf_init(&b, 64);
    rd_buf_adds(&b, "{\"status\":\"ok\",\"index\":");
    rd_buf_add_u64(&b, index);
    rd_buf_adds(&b, "}\n");

    return rd_api_json(rq, 200, &b, index);
}


static enum MHD_Result
rd_api_metrics(rd_req_t *rq)
{
    rd_buf_t             b;
    rd_api_t            *api = rq->api;
    rd_metrics_gauges_t  g;

    g.index = rd_registry_index(api->reg);
    rd_registry_count_health(api->reg, &g.passing, &g.critical);

    pthread_mutex_lock(&api->lock);
    g.waiters = api->nwaiters;
    g.stream_clients = api->nstreams;
    pthread_mutex_unlock(&api->lock);

    pthread_rwlock_rdlock(&api->reg->lock);
    g.policies = api->reg->npolicies;
    pthread_rwlock_unlock(&api->reg->lock);

    pthread_mutex_lock(&api->reg->qlock);
    g.queued = api->reg->qlen;
    pthread_mutex_unlock(&api->reg->qlock);

    g.store_ok = api->reg->store_ok;

    rd_buf_init(&b, 8192);
    rd_metrics_render(&b, &g);

    return rd_api_send_buf(rq, 200, &b, g.index,
                           "text/plain; version=0.0.4; charset=utf-8");
}


static enum MHD_Result
rd_api_services(rd_req_t *rq)
{
    size_t           i, n, total, healthy;
    rd_buf_t         b;
    uint64_t         index;
    rd_registry_t   *reg = rq->api->reg;
    rd_instance_t  **all;

    rd_buf_init(&b, 256);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    all = rd_registry_sorted(reg, &n);
    if (all == NULL) {
        pthread_rwlock_unlock(&reg->lock);
        rd_buf_free(&b);
        return rd_api_error(rq, 500, "out of memory", NULL);
    }

    rd_buf_adds(&b, "{\"index\":");
    rd_buf_add_u64(&b, index);
    rd_buf_adds(&b, ",\"services\":[");

    total = 0;
    healthy = 0;

    for (i = 0; i < n; i++) {
        total++;
        healthy += (all[i]->health == RD_HEALTH_PASSING);

        if (i + 1 < n && strcmp(all[i]->service, all[i + 1]->service) == 0) {
            continue;
        }

        if (b.data[b.len - 1] == '}') {
            rd_buf_addc(&b, ',');
        }

        rd_buf_adds(&b, "{\"name\":");
        rd_buf_add_json_str(&b, all[i]->service);
        rd_buf_printf(&b, ",\"instances\":%zu,\"healthy\":%zu}", total,
                      healthy);
        total = 0;
        healthy = 0;
    }

    pthread_rwlock_unlock(&reg->lock);
    free(all);

    rd_buf_adds(&b, "]}\n");

    return rd_api_json(rq, 200, &b, index);
}


static enum MHD_Result
rd_api_service(rd_req_t *rq)
{
    int              found;
    size_t           i, n;
    rd_buf_t         b;
    uint64_t         index;
    rd_registry_t   *reg = rq->api->reg;
    rd_instance_t  **all;

    rd_buf_init(&b, 256);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    all = rd_registry_sorted(reg, &n);
    if (all == NULL) {
        pthread_rwlock_unlock(&reg->lock);
        rd_buf_free(&b);
        return rd_api_error(rq, 500, "out of memory", NULL);
    }

    rd_buf_adds(&b, "{\"index\":");
    rd_buf_add_u64(&b, index);
    rd_buf_adds(&b, ",\"name\":");
    rd_buf_add_json_str(&b, rq->svc);
    rd_buf_adds(&b, ",\"instances\":[");

    found = 0;

    for (i = 0; i < n; i++) {
        if (strcmp(all[i]->service, rq->svc) != 0) {
            continue;
        }

        if (found++) {
            rd_buf_addc(&b, ',');
        }

        rd_instance_to_json(&b, all[i], RD_JSON_SNAPSHOT);
    }

    pthread_rwlock_unlock(&reg->lock);
    free(all);

    if (!found) {
        rd_buf_free(&b);
        return rd_api_error(rq, 404, "unknown service", "service");
    }

    rd_buf_adds(&b, "]}\n");

    return rd_api_json(rq, 200, &b, index);
}


static enum MHD_Result
rd_api_get_instance(rd_req_t *rq)
{
    rd_buf_t         b;
    uint64_t         index;
    rd_registry_t   *reg = rq->api->reg;
    rd_instance_t   *in;

    rd_buf_init(&b, 512);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    in = rd_registry_find(reg, rq->svc, rq->id);
    if (in) {
        rd_instance_to_json(&b, in, RD_JSON_FULL);
    }

    pthread_rwlock_unlock(&reg->lock);

    if (in == NULL) {
        rd_buf_free(&b);
        return rd_api_error(rq, 404, "unknown instance", "id");
    }

    b.len--;
    rd_buf_adds(&b, ",\"index\":");
    rd_buf_add_u64(&b, index);
    rd_buf_adds(&b, "}\n");

    return rd_api_json(rq, 200, &b, index);
}


/*
 * What a snapshot request asks for: ?services=a,b (a subscription),
 * ?delta=1 with ?index=N and ?registry=ID (the client applies deltas).
 * 0, or -1 with *field and err set.
 */
static int
rd_api_snapshot_ask(rd_req_t *rq, rd_snapshot_ask_t *ask,
    rd_subscription_t *sub, const char **field, char *err)
{
    char        *end;
    const char  *v;

    memset(ask, 0, sizeof(rd_snapshot_ask_t));

    v = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND,
                                    "services");
    if (v) {
        if (rd_subscription_parse(sub, v, err) != 0) {
            *field = "services";
            return -1;
        }

        ask->sub = sub;
    }

    v = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "delta");
    if (v) {
        if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0) {
            ask->delta = 1;

        } else if (strcmp(v, "0") != 0 && strcmp(v, "false") != 0) {
            snprintf(err, RD_ERR_LEN, "delta must be 1 or 0");
            *field = "delta";
            goto fail;
        }
    }

    v = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND,
                                    "registry");
    if (v) {
        errno = 0;
        ask->registry = strtoull(v, &end, 16);

        if (*v == '\0' || *end != '\0' || errno || strlen(v) > 16) {
            snprintf(err, RD_ERR_LEN, "registry must be the registry id "
                     "of an earlier answer (16 hex digits)");
            *field = "registry";
            goto fail;
        }
    }

    v = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "index");
    if (v) {
        errno = 0;
        ask->since = strtoull(v, &end, 10);

        if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno) {
            snprintf(err, RD_ERR_LEN, "index must be a non-negative integer");
            *field = "index";
            goto fail;
        }

        ask->known = 1;
    }

    return 0;

fail:

    if (ask->sub) {
        rd_subscription_free(sub);
        ask->sub = NULL;
    }

    return -1;
}


/* the whole registry, as one cached document for every client */
static enum MHD_Result
rd_api_send_cached(rd_req_t *rq, const char *ae)
{
    size_t                len;
    const char           *data;
    rd_snapshot_t        *s;
    struct MHD_Response  *resp;

    s = rd_snapshot_get(&rq->api->snaps);
    if (s == NULL) {
        return rd_api_error(rq, 500, "out of memory", NULL);
    }

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


static enum MHD_Result
rd_api_send_snapshot(rd_req_t *rq)
{
    int                   delta;
    char                  err[RD_ERR_LEN], *gz;
    size_t                gzlen;
    rd_buf_t              b;
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

    rd_buf_init(&b, 4096);
    delta = rd_snapshot_answer(rq->api->reg, &ask, &b, &index);

    if (ask.sub) {
        rd_subscription_free(&sub);
    }

    rd_metrics_snapshot_answer(delta, b.len);

    /* a small answer costs more to compress than it saves */
    if (ae && strstr(ae, "gzip") && b.len > 1024
        && rd_gzip(b.data, b.len, &gz, &gzlen) == 0)
    {
        rd_buf_free(&b);
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


static void
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
}


/*
 * An nginx says who it is (X-Mesh-Proxy): remember it for GET /v1/proxies;
 * a waiting poll keeps its name in rq->proxy until it ends. -1 with the
 * reason in rq->proxy when the header does not parse.
 */
static int
rd_api_proxy_seen(rd_req_t *rq, int waiting)
{
    char                        addr[64], host[INET6_ADDRSTRLEN], name[256];
    char                        err[RD_ERR_LEN];
    const char                 *h, *services;
    struct sockaddr            *sa;
    const union MHD_ConnectionInfo  *info;

    h = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                    "X-Mesh-Proxy");
    if (h == NULL) {
        return 0;
    }

    addr[0] = '\0';
    info = MHD_get_connection_info(rq->conn,
                                   MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    sa = info ? info->client_addr : NULL;

    if (sa && sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *) sa)->sin_addr, host,
                  sizeof(host));
        snprintf(addr, sizeof(addr), "%s:%u", host,
                 ntohs(((struct sockaddr_in *) sa)->sin_port));

    } else if (sa && sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *) sa)->sin6_addr, host,
                  sizeof(host));
        snprintf(addr, sizeof(addr), "[%s]:%u", host,
                 ntohs(((struct sockaddr_in6 *) sa)->sin6_port));
    }

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


static enum MHD_Result
rd_api_proxies(rd_req_t *rq)
{
    rd_buf_t  b;

    rd_buf_init(&b, 4096);
    rd_proxies_render(rq->api->proxies, rq->api->reg, &b);

    return rd_api_json(rq, 200, &b, rd_registry_index(rq->api->reg));
}


static enum MHD_Result
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


static int
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


/* wait for the next change (state WAIT_INDEX or WAIT_EVENTS) or for
 * wait ms: suspend first, then become visible */
static enum MHD_Result
rd_api_wait(rd_req_t *rq, int64_t wait, int state)
{
    rd_api_t                         *api = rq->api;
    const union MHD_ConnectionInfo  *info;

    info = MHD_get_connection_info(rq->conn,
                                   MHD_CONNECTION_INFO_CONNECTION_FD);
    rq->fd = info ? info->connect_fd : -1;

    rq->deadline = rd_now_ms() + wait;
    rq->state = state;

    MHD_set_connection_option(rq->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                              (unsigned int) (wait / 1000 + 60));
    MHD_suspend_connection(rq->conn);

    pthread_mutex_lock(&api->lock);

    if (api->stopping || rd_api_ready(rq)) {
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

static enum MHD_Result
rd_api_send_events(rd_req_t *rq)
{
    int        truncated;
    rd_buf_t   items, b;
    uint64_t   upto;
    rd_api_t  *api = rq->api;

    rd_buf_init(&items, 4096);
    rd_events_render(api->reg->events, rq->want_index, 0, RD_EVENTS_JSON,
                     &items, &upto, &truncated);

    rd_buf_init(&b, items.len + 64);
    rd_buf_adds(&b, "{\"index\":");
    rd_buf_add_u64(&b, upto);
    rd_buf_adds(&b, ",\"events\":[");
    rd_buf_add(&b, items.data, items.len);
    rd_buf_addc(&b, ']');

    if (truncated && rq->has_index) {
        rd_buf_adds(&b, ",\"truncated\":true");
    }

    rd_buf_adds(&b, "}\n");
    rd_buf_free(&items);

    return rd_api_json(rq, 200, &b, rd_registry_index(api->reg));
}


/* libmicrohttpd asks for more of an event stream */
static ssize_t
rd_api_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    int        truncated;
    size_t     n;
    rd_buf_t   note;
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
            rd_buf_init(&note, rq->out.len + 64);
            rd_buf_adds(&note, "event: truncated\ndata: {\"index\":");
            rd_buf_add_u64(&note, rq->ev_last);
            rd_buf_adds(&note, ",\"truncated\":true}\n\n");
            rd_buf_add(&note, rq->out.data, rq->out.len);
            rd_buf_free(&rq->out);
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
            rd_buf_adds(&rq->out, ": ping\n\n");
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


static void
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
}


/* the client of a suspended connection hung up (it cannot see it) */
static int
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
static void
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

    info = MHD_get_connection_info(rq->conn,
                                   MHD_CONNECTION_INFO_CONNECTION_FD);

    rq->streaming = 1;
    rq->fd = info ? info->connect_fd : -1;
    rq->ev_last = after;
    rd_buf_init(&rq->out, 4096);
    rd_buf_adds(&rq->out, "retry: 1000\n\n");

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


static enum MHD_Result
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


/* writes */

static void
rd_api_op_done(rd_op_t *op)
{
    rd_req_t  *rq = op->data;

    MHD_resume_connection(rq->conn);
}


static enum MHD_Result
rd_api_submit(rd_req_t *rq, rd_op_t *op)
{
    rd_api_t  *api = rq->api;

    op->done = rd_api_op_done;
    op->data = rq;
    rq->op = op;
    rq->state = RD_REQ_WAIT_OP;

    pthread_mutex_lock(&api->lock);

    if (api->stopping) {
        pthread_mutex_unlock(&api->lock);
        rq->op = NULL;
        rd_op_free(op);
        return rd_api_error(rq, 503, "registryd is shutting down", NULL);
    }

    MHD_suspend_connection(rq->conn);
    rd_registry_submit(api->reg, op);

    pthread_mutex_unlock(&api->lock);

    return MHD_YES;
}


static enum MHD_Result
rd_api_put_instance(rd_req_t *rq)
{
    char            err[RD_ERR_LEN];
    json_t         *obj;
    rd_op_t        *op;
    const char     *field;
    json_error_t    jerr;
    rd_instance_t  *in;

    obj = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len,
                     JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        snprintf(err, sizeof(err), "malformed JSON at line %d column %d: %s",
                 jerr.line, jerr.column, jerr.text);
        return rd_api_error(rq, 400, err, NULL);
    }

    in = rd_instance_create();
    op = rd_op_create(RD_OP_PUT, rq->svc, rq->id);
    if (in == NULL || op == NULL) {
        json_decref(obj);
        rd_instance_free(in);
        rd_op_free(op);
        return rd_api_error(rq, 500, "out of memory", NULL);
    }

    if (rd_instance_from_json(obj, 0, in, err, &field) != 0) {
        enum MHD_Result rc = rd_api_error(rq, 400, err, field);

        json_decref(obj);
        rd_instance_free(in);
        rd_op_free(op);
        return rc;
    }

    json_decref(obj);
    op->inst = in;

    return rd_api_submit(rq, op);
}


static enum MHD_Result
rd_api_heartbeat(rd_req_t *rq)
{
    int        rc;
    rd_op_t   *op;
    rd_buf_t   b;
    uint64_t   index;

    rc = rd_registry_heartbeat(rq->api->reg, rq->svc, rq->id, &index);

    if (rc < 0) {
        return rd_api_error(rq, 404, "unknown instance", "id");
    }

    if (rc == 0) {
        rd_buf_init(&b, 64);
        rd_buf_adds(&b, "{\"index\":");
        rd_buf_add_u64(&b, index);
        rd_buf_adds(&b, ",\"health\":\"passing\"}\n");
        return rd_api_json(rq, 200, &b, index);
    }

    /* critical: back to passing is a change, through the store */

    op = rd_op_create(RD_OP_HEALTH, rq->svc, rq->id);
    if (op == NULL) {
        return rd_api_error(rq, 500, "out of memory", NULL);
    }

    op->health = RD_HEALTH_PASSING;
    op->reason = "heartbeat";

    return rd_api_submit(rq, op);
}


/* policies */

static enum MHD_Result
rd_api_policy_error(rd_req_t *rq, const rd_policy_err_t *e)
{
    rd_buf_t  b;

    rd_buf_init(&b, 512);
    rd_policy_err_to_json(&b, e);
    rd_buf_adds(&b, "\n");

    rd_debug("400 %s", e->msg);

    return rd_api_json(rq, 400, &b, rd_registry_index(rq->api->reg));
}


static enum MHD_Result
rd_api_put_policy(rd_req_t *rq)
{
    rd_op_t          *op;
    rd_policy_t      *p;
    rd_policy_err_t   e;

    p = rd_policy_parse(rq->id, rq->body.data ? rq->body.data : "",
                        rq->body.len, &e);
    if (p == NULL) {
        return rd_api_policy_error(rq, &e);
    }

    op = rd_op_create(RD_OP_POLICY_PUT, "", rq->id);
    if (op == NULL) {
        rd_policy_free(p);
        return rd_api_error(rq, 500, "out of memory", NULL);
    }

    op->policy = p;

    return rd_api_submit(rq, op);
}


static void
rd_api_policy_summary(rd_buf_t *b, const rd_policy_t *p)
{
    size_t   i;
    json_t  *d, *v;

    rd_buf_adds(b, "{\"name\":");
    rd_buf_add_json_str(b, p->name);
    rd_buf_adds(b, ",\"documents\":[");

    for (i = 0; i < json_array_size(p->docs); i++) {
        d = json_array_get(p->docs, i);

        rd_buf_adds(b, i ? ",{\"kind\":" : "{\"kind\":");
        rd_buf_add_json_str(b, json_string_value(json_object_get(d, "kind")));
        rd_buf_adds(b, ",\"name\":");
        rd_buf_add_json_str(b, json_string_value(json_object_get(d, "name")));

        if ((v = json_object_get(d, "host")) != NULL) {
            rd_buf_adds(b, ",\"host\":");
            rd_buf_add_json_str(b, json_string_value(v));
        }

        if ((v = json_object_get(d, "hosts")) != NULL) {
            char *s = json_dumps(v, JSON_COMPACT);

            rd_buf_adds(b, ",\"hosts\":");
            rd_buf_adds(b, s ? s : "[]");
            free(s);
        }

        rd_buf_addc(b, '}');
    }

    rd_buf_printf(b, "],\"create_index\":%llu,\"modify_index\":%llu}",
                  (unsigned long long) p->create_index,
                  (unsigned long long) p->modify_index);
}


static enum MHD_Result
rd_api_policies(rd_req_t *rq)
{
    size_t          i;
    rd_buf_t        b;
    uint64_t        index;
    rd_registry_t  *reg = rq->api->reg;

    rd_buf_init(&b, 256);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    rd_buf_adds(&b, "{\"index\":");
    rd_buf_add_u64(&b, index);
    rd_buf_adds(&b, ",\"policies\":[");

    for (i = 0; i < reg->npolicies; i++) {
        if (i) {
            rd_buf_addc(&b, ',');
        }
        rd_api_policy_summary(&b, reg->policies[i]);
    }

    pthread_rwlock_unlock(&reg->lock);

    rd_buf_adds(&b, "]}\n");

    return rd_api_json(rq, 200, &b, index);
}


static enum MHD_Result
rd_api_get_policy(rd_req_t *rq)
{
    int             json;
    rd_buf_t        b;
    uint64_t        index;
    const char     *accept;
    rd_policy_t    *p;
    rd_registry_t  *reg = rq->api->reg;

    accept = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_ACCEPT);
    json = (accept && strstr(accept, "application/json") != NULL);

    rd_buf_init(&b, 1024);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    p = rd_registry_find_policy(reg, rq->id);

    if (p && json) {
        rd_api_policy_summary(&b, p);
        b.len--;
        rd_buf_adds(&b, ",\"index\":");
        rd_buf_add_u64(&b, index);
        rd_buf_adds(&b, ",\"yaml\":");
        rd_buf_add_json_str(&b, p->yaml);
        rd_buf_adds(&b, ",\"normalized\":[");
        rd_buf_add(&b, p->snap, p->snap_len);
        rd_buf_adds(&b, "]}\n");

    } else if (p) {
        rd_buf_add(&b, p->yaml, p->yaml_len);
    }

    pthread_rwlock_unlock(&reg->lock);

    if (p == NULL) {
        rd_buf_free(&b);
        return rd_api_error(rq, 404, "unknown policy", "name");
    }

    return rd_api_send_buf(rq, 200, &b, index,
                           json ? "application/json" : "application/yaml");
}


static enum MHD_Result
rd_api_op_answer(rd_req_t *rq)
{
    rd_op_t          *op = rq->op;
    rd_buf_t          b;
    enum MHD_Result   rc;

    rq->op = NULL;

    if (op->status == 400 && op->type == RD_OP_POLICY_PUT) {
        rc = rd_api_policy_error(rq, &op->perr);

    } else if (op->status == 404 && op->type == RD_OP_POLICY_DEL) {
        rc = rd_api_error(rq, 404, "unknown policy", "name");

    } else if (op->status == 404) {
        rc = rd_api_error(rq, 404, "unknown instance", "id");

    } else if (op->status >= 500) {
        rc = rd_api_error(rq, op->status, op->err, NULL);

    } else if (op->type == RD_OP_PUT || op->type == RD_OP_POLICY_PUT) {
        rd_buf_addc(&op->body, '\n');
        rc = rd_api_json(rq, op->status, &op->body, op->index);

    } else {
        rd_buf_init(&b, 64);
        rd_buf_adds(&b, "{\"index\":");
        rd_buf_add_u64(&b, op->index);
        if (op->type == RD_OP_HEALTH) {
            /* passing unless a failing check keeps it critical */
            rd_buf_adds(&b, op->health == RD_HEALTH_PASSING
                            ? ",\"health\":\"passing\""
                            : ",\"health\":\"critical\"");
        }
        rd_buf_adds(&b, "}\n");
        rc = rd_api_json(rq, 200, &b, op->index);
    }

    rd_op_free(op);
    return rc;
}


static enum MHD_Result
rd_api_dispatch(rd_req_t *rq)
{
    rd_op_t  *op;

    if (rq->too_large) {
        return rd_api_error(rq, 413, "request body too large", NULL);
    }

    switch (rq->route) {

    case RD_ROUTE_HEALTHZ:
        return rd_api_healthz(rq);

    case RD_ROUTE_METRICS:
        return rd_api_metrics(rq);

    case RD_ROUTE_SERVICES:
        return rd_api_services(rq);

    case RD_ROUTE_SERVICE:
        return rd_api_service(rq);

    case RD_ROUTE_SNAPSHOT:
        return rd_api_snapshot(rq);

    case RD_ROUTE_EVENTS:
        return rd_api_events(rq);

    case RD_ROUTE_PROXIES:
        return rd_api_proxies(rq);

    case RD_ROUTE_HEARTBEAT:
        return rd_api_heartbeat(rq);

    case RD_ROUTE_POLICIES:
        if (rq->id[0] == '\0') {
            return rd_api_policies(rq);
        }

        if (rq->method == RD_M_GET) {
            return rd_api_get_policy(rq);
        }

        if (rq->method == RD_M_PUT) {
            return rd_api_put_policy(rq);
        }

        op = rd_op_create(RD_OP_POLICY_DEL, "", rq->id);
        if (op == NULL) {
            return rd_api_error(rq, 500, "out of memory", NULL);
        }

        return rd_api_submit(rq, op);

    case RD_ROUTE_INSTANCE:
        if (rq->method == RD_M_GET) {
            return rd_api_get_instance(rq);
        }

        if (rq->method == RD_M_PUT) {
            return rd_api_put_instance(rq);
        }

        op = rd_op_create(RD_OP_DEL, rq->svc, rq->id);
        if (op == NULL) {
            return rd_api_error(rq, 500, "out of memory", NULL);
        }

        op->reason = "api";

        return rd_api_submit(rq, op);

    default:
        return rd_api_error(rq, 404, "not found", NULL);
    }
}


static int
rd_api_is_yaml(const char *ct)
{
    size_t  n;

    static const char  *types[] = {
        "application/yaml", "application/x-yaml", "text/yaml", NULL
    };

    if (ct == NULL) {
        return 0;
    }

    for (int i = 0; types[i]; i++) {
        n = strlen(types[i]);
        if (strncasecmp(ct, types[i], n) == 0
            && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' '))
        {
            return 1;
        }
    }

    return 0;
}


/* checks made on the first call, before any body is read */
static enum MHD_Result
rd_api_begin(rd_req_t *rq, const char *url, const char *method)
{
    int          allowed;
    char        *end;
    const char  *bad, *ct, *cl;
    unsigned long long  len;

    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        rq->method = RD_M_GET;
    } else if (strcmp(method, "PUT") == 0) {
        rq->method = RD_M_PUT;
    } else if (strcmp(method, "DELETE") == 0) {
        rq->method = RD_M_DELETE;
    } else {
        rq->method = RD_M_OTHER;
    }

    allowed = rd_api_route(rq, url, &bad);

    if (allowed == 0) {
        return rd_api_error(rq, 404, bad ? "unknown path" : "not found",
                            NULL);
    }

    if (allowed < 0) {
        return rd_api_error(rq, 400, strcmp(bad, "id") == 0
                            ? "invalid instance id: names are "
                              "[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
                            : strcmp(bad, "name") == 0
                            ? "invalid policy name: names are "
                              "[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
                            : "invalid service name: names are "
                              "[A-Za-z0-9][A-Za-z0-9._-]{0,127}", bad);
    }

    if (!(allowed & rq->method)) {
        return rd_api_not_allowed(rq, rd_api_allow(allowed));
    }

    if (rq->method != RD_M_GET && !rd_api_authorized(rq)) {
        return rd_api_error(rq, 401, "missing or wrong bearer token", NULL);
    }

    if (rq->route == RD_ROUTE_INSTANCE && rq->method == RD_M_PUT) {
        ct = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_TYPE);
        if (ct && strncasecmp(ct, "application/json", 16) != 0) {
            char msg[RD_ERR_LEN];

            snprintf(msg, sizeof(msg), "Content-Type must be "
                     "application/json, not \"%.64s\"", ct);
            return rd_api_error(rq, 415, msg, NULL);
        }
    }

    if (rq->route == RD_ROUTE_POLICIES && rq->method == RD_M_PUT) {
        ct = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!rd_api_is_yaml(ct)) {
            char msg[RD_ERR_LEN];

            snprintf(msg, sizeof(msg), "Content-Type must be "
                     "application/yaml, application/x-yaml or text/yaml, "
                     "not \"%.64s\"", ct ? ct : "");
            return rd_api_error(rq, 415, msg, NULL);
        }
    }

    cl = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        len = strtoull(cl, &end, 10);
        if (len > (unsigned long long) rq->api->conf->max_body) {
            return rd_api_error(rq, 413, "request body too large", NULL);
        }
    }

    return MHD_YES;
}


static enum MHD_Result
rd_api_handler(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
    rd_req_t  *rq = *con_cls;
    rd_api_t  *api = cls;

    (void) version;

    if (rq == NULL) {
        rq = calloc(1, sizeof(rd_req_t));
        if (rq == NULL) {
            return MHD_NO;
        }

        rq->api = api;
        rq->conn = conn;
        rq->start_us = rd_now_us();
        *con_cls = rq;

        return rd_api_begin(rq, url, method);
    }

    if (*upload_data_size) {
        if (rq->state == RD_REQ_NEW && !rq->too_large) {
            if (rq->body.len + *upload_data_size
                > (size_t) api->conf->max_body)
            {
                rq->too_large = 1;
                rd_buf_free(&rq->body);

            } else {
                rd_buf_add(&rq->body, upload_data, *upload_data_size);
            }
        }

        *upload_data_size = 0;
        return MHD_YES;
    }

    switch (rq->state) {

    case RD_REQ_NEW:
        return rd_api_dispatch(rq);

    case RD_REQ_WAIT_OP:
        return rd_api_op_answer(rq);

    case RD_REQ_WAIT_INDEX:
        return rd_api_send_snapshot(rq);

    case RD_REQ_WAIT_EVENTS:
        return rd_api_send_events(rq);

    default:
        return MHD_YES;         /* answered on the first call */
    }
}


static void
rd_api_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
    rd_req_t  *rq = *con_cls;
    rd_api_t  *api = cls;

    (void) conn;
    (void) toe;

    if (rq == NULL) {
        return;
    }

    if (rq->waiting) {
        pthread_mutex_lock(&api->lock);
        if (rq->waiting) {
            rd_api_unlink_waiter(api, rq);
        }
        pthread_mutex_unlock(&api->lock);
    }

    if (rq->streaming) {
        pthread_mutex_lock(&api->lock);
        rd_api_unlink_stream(api, rq);
        pthread_mutex_unlock(&api->lock);
        rd_buf_free(&rq->out);
    }

    if (rq->has_sub) {
        rd_subscription_free(&rq->sub);
    }

    if (rq->proxy[0]) {
        rd_proxies_done(api->proxies, rq->proxy);
    }

    rd_op_free(rq->op);
    rd_buf_free(&rq->body);
    free(rq);
    *con_cls = NULL;
}


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
static size_t
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


static void
rd_api_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char  line[512];
    size_t  n;

    (void) cls;

    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n && line[n - 1] == '\n') {
        line[--n] = '\0';
    }

    rd_warn("http: %s", line);
}


rd_api_t *
rd_api_create(rd_registry_t *reg, const rd_conf_t *conf, const char *token,
    char *err)
{
    int                  port;
    char                 host[256];
    rd_api_t            *api;
    struct sockaddr_in   sin;
    struct sockaddr_in6  sin6;
    struct sockaddr     *sa;
    unsigned int         flags;

    if (rd_parse_hostport(conf->listen, host, sizeof(host), &port) != 0) {
        snprintf(err, RD_ERR_LEN, "bad listen address \"%s\"", conf->listen);
        return NULL;
    }

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));

    flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL
            | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

    if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t) port);
        sa = (struct sockaddr *) &sin;

    } else if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t) port);
        sa = (struct sockaddr *) &sin6;
        flags |= MHD_USE_IPv6;

    } else {
        snprintf(err, RD_ERR_LEN, "listen address \"%s\" is not an IP",
                 conf->listen);
        return NULL;
    }

    api = calloc(1, sizeof(rd_api_t));
    if (api == NULL) {
        snprintf(err, RD_ERR_LEN, "out of memory");
        return NULL;
    }

    api->reg = reg;
    api->conf = conf;
    api->token = token ? strdup(token) : NULL;
    rd_snapshot_cache_init(&api->snaps, reg);

    api->proxies = rd_proxies_create(conf->proxy_gone_after, err);
    if (api->proxies == NULL) {
        free(api->token);
        free(api);
        return NULL;
    }
    pthread_mutex_init(&api->lock, NULL);
    pthread_mutex_init(&api->tlock, NULL);
    pthread_cond_init(&api->tcond, NULL);

    reg->on_change = rd_api_on_change;
    reg->on_change_data = api;

    api->mhd = MHD_start_daemon(flags, (uint16_t) port, NULL, NULL,
                   rd_api_handler, api,
                   MHD_OPTION_EXTERNAL_LOGGER, rd_api_mhd_log, NULL,
                   MHD_OPTION_SOCK_ADDR, sa,
                   MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) conf->threads,
                   MHD_OPTION_CONNECTION_LIMIT,
                   (unsigned int) conf->connection_limit,
                   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 120,
                   MHD_OPTION_NOTIFY_COMPLETED, rd_api_completed, api,
                   MHD_OPTION_UNESCAPE_CALLBACK, rd_api_unescape, NULL,
                   MHD_OPTION_END);

    if (api->mhd == NULL) {
        snprintf(err, RD_ERR_LEN, "cannot listen on %s: %s", conf->listen,
                 errno ? strerror(errno) : "libmicrohttpd failed to start");
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

    api->reg->on_change = NULL;

    rd_snapshot_cache_free(&api->snaps);
    rd_proxies_free(api->proxies);
    pthread_mutex_destroy(&api->lock);
    pthread_mutex_destroy(&api->tlock);
    pthread_cond_destroy(&api->tcond);
    free(api->token);
    free(api);
}
