/*
 * rd_api: routing and authorization, responses, a request's life from
 * its first call to its end. The server itself (libmicrohttpd started and
 * stopped, its log, the timer that wakes long-polls and event streams) is
 * in rd_api_server.c; the handlers: reads in rd_api_read.c, long-polls
 * and event streams in rd_api_wait.c, writes and policies in
 * rd_api_write.c.
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


static int64_t
rd_now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/* responses */

void
rd_free_buf_cb(void *cls)
{
    free(cls);
}


void
rd_release_snapshot_cb(void *cls)
{
    rd_snapshot_release(cls);
}


enum MHD_Result
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

    /* a replica that cannot follow its shared store answers from the last
     * state it knew, and says so */
    if (rd_registry_stale(rq->api->reg, NULL, 0)) {
        MHD_add_response_header(resp, "X-Mesh-Stale", "1");
    }

    rc = MHD_queue_response(rq->conn, (unsigned int) status, resp);
    MHD_destroy_response(resp);

    rq->state = RD_REQ_ANSWERED;
    rd_metrics_request(rq->route, status, rd_now_us() - rq->start_us);

    return rc;
}


/* takes ownership of b's data */
enum MHD_Result
rd_api_send_buf(rd_req_t *rq, int status, mesh_buf_t *b, uint64_t index,
    const char *ctype)
{
    struct MHD_Response  *resp;

    resp = MHD_create_response_from_buffer_with_free_callback(
               b->len, b->data, rd_free_buf_cb);
    if (resp == NULL) {
        mesh_buf_free(b);
        return MHD_NO;
    }

    b->data = NULL;
    b->len = 0;
    b->cap = 0;

    return rd_api_send(rq, status, resp, ctype, index);
}


enum MHD_Result
rd_api_json(rd_req_t *rq, int status, mesh_buf_t *b, uint64_t index)
{
    return rd_api_send_buf(rq, status, b, index, "application/json");
}


static struct MHD_Response *
rd_api_error_response(int status, const char *msg, const char *field)
{
    mesh_buf_t            b;
    struct MHD_Response  *resp;

    mesh_buf_init(&b, 128);
    mesh_buf_adds(&b, "{\"error\":");
    mesh_buf_add_json_str(&b, msg);

    if (field) {
        mesh_buf_adds(&b, ",\"field\":");
        mesh_buf_add_json_str(&b, field);
    }

    mesh_buf_adds(&b, "}\n");

    rd_debug("%d %s%s%s", status, msg, field ? " field " : "",
             field ? field : "");

    resp = MHD_create_response_from_buffer_with_free_callback(
               b.len, b.data, rd_free_buf_cb);
    if (resp == NULL) {
        mesh_buf_free(&b);
    }

    return resp;
}


enum MHD_Result
rd_api_error(rd_req_t *rq, int status, const char *msg, const char *field)
{
    return rd_api_send(rq, status, rd_api_error_response(status, msg, field),
                       "application/json", rd_registry_index(rq->api->reg));
}


static enum MHD_Result
rd_api_not_allowed(rd_req_t *rq, const char *allow)
{
    char                  msg[96];
    mesh_buf_t            b;
    struct MHD_Response  *resp;

    snprintf(msg, sizeof(msg), "method not allowed; allowed: %s", allow);

    mesh_buf_init(&b, 128);
    mesh_buf_adds(&b, "{\"error\":");
    mesh_buf_add_json_str(&b, msg);
    mesh_buf_adds(&b, "}\n");

    resp = MHD_create_response_from_buffer_with_free_callback(
               b.len, b.data, rd_free_buf_cb);
    if (resp == NULL) {
        mesh_buf_free(&b);
        return MHD_NO;
    }

    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);

    return rd_api_send(rq, 405, resp, "application/json",
                       rd_registry_index(rq->api->reg));
}


/* routing */

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
 * /v1/objects, /v1/objects/delete, /v1/objects/KIND/NAMESPACE/NAME: the
 * last as the policy name it is stored under, in rq->id
 */
static int
rd_api_route_objects(rd_req_t *rq, const char *p, const char **bad)
{
    int   kind;
    char  seg[3][RD_NAME_MAX + 1], err[RD_ERR_LEN];

    rq->route = RD_ROUTE_OBJECTS;

    if (*p == '\0' || strcmp(p, "/") == 0) {
        return RD_M_GET | RD_M_POST;
    }

    if (strcmp(p, "/delete") == 0) {
        rq->objects_delete = 1;
        return RD_M_POST;
    }

    p++;

    for (int i = 0; i < 3; i++) {
        if (rd_api_segment(&p, seg[i]) != 0 || (i < 2) == (*p == '\0')) {
            *bad = "object";
            return 0;
        }
    }

    kind = rd_policy_kind_parse(seg[0]);
    if (kind < 0
        || rd_policy_obj_name(kind, seg[1], seg[2], rq->id, err) != 0)
    {
        *bad = "object";
        return 0;
    }

    return RD_M_GET | RD_M_DELETE;
}


/*
 * Sets rq->route, svc and id. Returns the methods the route allows, or 0
 * for an unknown path; -1 for a path of the right shape with a bad name.
 */
int
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

    if (strcmp(url, "/v1/export") == 0) {
        rq->route = RD_ROUTE_EXPORT;
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

    if (strncmp(url, "/v1/objects", 11) == 0
        && (url[11] == '\0' || url[11] == '/'))
    {
        return rd_api_route_objects(rq, url + 11, bad);
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
    case RD_M_POST:
        return "POST";
    case RD_M_GET | RD_M_POST:
        return "GET, HEAD, POST";
    case RD_M_GET | RD_M_DELETE:
        return "GET, HEAD, DELETE";
    default:
        return "GET, HEAD, PUT, DELETE";
    }
}


/*
 * Protected mode: without a token, a write is taken from a client in
 * trusted_networks only (loopback by default), as Redis takes commands
 * from loopback only without a password.
 */
static int
rd_api_trusted(rd_req_t *rq)
{
    const struct sockaddr           *sa;
    const union MHD_ConnectionInfo  *info;

    info = MHD_get_connection_info(rq->conn,
                                   MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    sa = info ? info->client_addr : NULL;

    mesh_addr_text(sa, rq->peer, sizeof(rq->peer));

    return sa != NULL
           && mesh_cidr_match_any(rq->api->trusted, rq->api->ntrusted, sa,
                                  NULL);
}


/*
 * Who the client is (a bearer token, a client certificate) and whether it
 * may do what the route asks: the answer to a refusal, or MHD_NO - 1
 * (never an MHD_Result) when the request goes on.
 */
#define RD_API_GO_ON  ((enum MHD_Result) -1)

static enum MHD_Result
rd_api_authorize(rd_req_t *rq)
{
    char                  who[RD_AUTH_NAME_MAX + 1], reason[RD_ERR_LEN];
    rd_need_e             need;
    const char           *h, *bearer;
    rd_auth_e             rc;
    struct MHD_Response  *resp;

    if (rq->route == RD_ROUTE_HEALTHZ) {
        return RD_API_GO_ON;    /* a load balancer's check: no secrets */
    }

    /* mutual TLS: no request without a certificate of tls_client_ca */
    if (rq->api->tls_ca && rd_api_tls_client(rq, reason) != 0) {
        resp = rd_api_error_response(401, reason, NULL);
        return rd_api_send(rq, 401, resp, "application/json",
                           rd_registry_index(rq->api->reg));
    }

    if (rq->method == RD_M_GET) {
        need = RD_NEED_READ;

    } else if (rq->route == RD_ROUTE_POLICIES
               || rq->route == RD_ROUTE_OBJECTS)
    {
        need = RD_NEED_POLICIES;

    } else if (rq->route == RD_ROUTE_INSTANCE
               || rq->route == RD_ROUTE_HEARTBEAT)
    {
        need = RD_NEED_WRITE;

    } else {
        need = RD_NEED_ADMIN;
    }

    bearer = NULL;
    h = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                    MHD_HTTP_HEADER_AUTHORIZATION);
    if (h) {
        if (strncasecmp(h, "Bearer ", 7) != 0) {
            h = "";             /* another scheme: a wrong credential */

        } else {
            h += 7;
            while (*h == ' ') {
                h++;
            }
        }

        bearer = h;
    }

    rc = rd_auth_check(rq->api->auth, bearer, rq->subject[0] ? rq->subject
                                                             : NULL,
                       need, rq->svc, who, reason);

    switch (rc) {

    case RD_AUTH_ALLOW:
        return RD_API_GO_ON;

    case RD_AUTH_OPEN:
        if (need == RD_NEED_READ || rd_api_trusted(rq)) {
            return RD_API_GO_ON;
        }

        snprintf(reason, sizeof(reason), "no token is configured: writes "
                 "are taken from trusted_networks only (%s), not from %s",
                 rq->api->conf->trusted_networks, rq->peer);
        return rd_api_error(rq, 403, reason, NULL);

    case RD_AUTH_FORBIDDEN:
        rd_debug("token %s refused", who);
        return rd_api_error(rq, 403, reason, NULL);

    default:
        break;
    }

    resp = rd_api_error_response(401, reason, NULL);
    if (resp) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"registryd\"");
    }

    return rd_api_send(rq, 401, resp, "application/json",
                       rd_registry_index(rq->api->reg));
}


static enum MHD_Result
rd_api_op_answer(rd_req_t *rq)
{
    rd_op_t          *op = rq->op;
    mesh_buf_t        b;
    enum MHD_Result   rc;

    rq->op = NULL;

    if (op->type == RD_OP_POLICY_GROUP && op->status < 500) {
        rc = rd_api_objects_answer(rq, op);

    } else if (op->status == 404 && rq->route == RD_ROUTE_OBJECTS) {
        rc = rd_api_error(rq, 404, "unknown object (an object that a "
                          "policy of several documents holds is deleted "
                          "with that policy)", "name");

    } else if (op->status == 400 && op->type == RD_OP_POLICY_PUT) {
        rc = rd_api_policy_error(rq, &op->perr);

    } else if (op->status == 404 && op->type == RD_OP_POLICY_DEL) {
        rc = rd_api_error(rq, 404, "unknown policy", "name");

    } else if (op->status == 404) {
        rc = rd_api_error(rq, 404, "unknown instance", "id");

    } else if (op->status >= 500) {
        rc = rd_api_error(rq, op->status, op->err, NULL);

    } else if (op->type == RD_OP_PUT || op->type == RD_OP_POLICY_PUT) {
        mesh_buf_addc(&op->body, '\n');
        rc = rd_api_json(rq, op->status, &op->body, op->index);

    } else {
        mesh_buf_init(&b, 64);
        mesh_buf_adds(&b, "{\"index\":");
        mesh_buf_add_u64(&b, op->index);
        if (op->type == RD_OP_HEALTH) {
            /* passing unless a failing check keeps it critical */
            mesh_buf_adds(&b, op->health == RD_HEALTH_PASSING
                            ? ",\"health\":\"passing\""
                            : ",\"health\":\"critical\"");
        }
        mesh_buf_adds(&b, "}\n");
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

    case RD_ROUTE_EXPORT:
        return rd_api_export(rq);

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

        return rd_api_submit(rq, op);

    case RD_ROUTE_OBJECTS:
        if (rq->method == RD_M_GET) {
            return rq->id[0] ? rd_api_get_object(rq) : rd_api_objects(rq);
        }

        return rd_api_objects_write(rq);

    case RD_ROUTE_INSTANCE:
        if (rq->method == RD_M_GET) {
            return rd_api_get_instance(rq);
        }

        if (rq->method == RD_M_PUT) {
            return rd_api_put_instance(rq);
        }

        op = rd_op_create(RD_OP_DEL, rq->svc, rq->id);
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


/* MHD_get_connection_values: lengths[0] the Content-Length, lengths[1]
 * another one that disagrees with it */
static enum MHD_Result
rd_api_content_length(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
    const char  **lengths = cls;

    (void) kind;

    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) != 0) {
        return MHD_YES;
    }

    if (lengths[0] && strcmp(lengths[0], value) != 0) {
        lengths[1] = value;
        return MHD_NO;
    }

    lengths[0] = value;

    return MHD_YES;
}


/* checks made on the first call, before any body is read */
static enum MHD_Result
rd_api_begin(rd_req_t *rq, const char *url, const char *method)
{
    int                  allowed;
    char                *end;
    const char          *bad, *ct, *cl, *ex, *lengths[2];
    enum MHD_Result      rc;
    unsigned long long   len;

    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        rq->method = RD_M_GET;
    } else if (strcmp(method, "PUT") == 0) {
        rq->method = RD_M_PUT;
    } else if (strcmp(method, "DELETE") == 0) {
        rq->method = RD_M_DELETE;
    } else if (strcmp(method, "POST") == 0) {
        rq->method = RD_M_POST;
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

    rc = rd_api_authorize(rq);
    if (rc != RD_API_GO_ON) {
        return rc;
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

    if ((rq->route == RD_ROUTE_POLICIES && rq->method == RD_M_PUT)
        || (rq->route == RD_ROUTE_OBJECTS && rq->method == RD_M_POST))
    {
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

    /* two lengths that disagree: which body is it? (request smuggling) */
    lengths[0] = NULL;
    lengths[1] = NULL;
    (void) MHD_get_connection_values(rq->conn, MHD_HEADER_KIND,
                                     rd_api_content_length, lengths);

    if (lengths[1]) {
        return rd_api_error(rq, 400, "two different Content-Length headers",
                            NULL);
    }

    cl = lengths[0];

    if (cl) {
        len = strtoull(cl, &end, 10);
        if (len > (unsigned long long) rq->api->conf->max_body) {
            ex = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                             MHD_HTTP_HEADER_EXPECT);

            /* a client that waits for 100 Continue reads the 413 now;
             * one that sends the body at once would get a reset before
             * it reads an early answer: its body is read and dropped
             * (up to RD_DRAIN_MAX), then it gets the 413 */
            if ((ex && strcasecmp(ex, "100-continue") == 0)
                || len > RD_DRAIN_MAX)
            {
                return rd_api_error(rq, 413, "request body too large",
                                    NULL);
            }

            rq->too_large = 1;
        }
    }

    return MHD_YES;
}


enum MHD_Result
rd_api_handler(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
    rd_req_t  *rq = *con_cls;
    rd_api_t  *api = cls;

    (void) version;

    if (rq == NULL) {
        rq = mesh_xcalloc(1, sizeof(rd_req_t));

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
                mesh_buf_free(&rq->body);

            } else {
                mesh_buf_add(&rq->body, upload_data, *upload_data_size);
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


void
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
        mesh_buf_free(&rq->out);
    }

    if (rq->has_sub) {
        rd_subscription_free(&rq->sub);
    }

    if (rq->proxy[0]) {
        rd_proxies_done(api->proxies, rq->proxy);
    }

    rd_op_free(rq->op);
    mesh_buf_free(&rq->body);
    free(rq);
    *con_cls = NULL;
}
