/*
 * rd_api_int: what the parts of the HTTP API share (rd_api.c: server,
 * routing, responses, the request's life; rd_api_read.c; rd_api_wait.c:
 * long-polls and event streams; rd_api_write.c): the request and the
 * server's state, the limits, the handlers; not for other users.
 */

#ifndef RD_API_INT_H
#define RD_API_INT_H

#include <stdint.h>
#include <microhttpd.h>

#include "rd_api.h"
#include "rd_metrics.h"
#include "rd_proxies.h"
#include "rd_route.h"
#include "rd_snapshot.h"

#define RD_TICK_MS  10
#define RD_PING_MS    15000     /* a comment to idle event streams */
#define RD_HANGUP_MS  1000      /* look for streams whose client left */
#define RD_DRAIN_MAX  (64 * 1024 * 1024)  /* an oversized body read and
                                             dropped before its 413 */
#define RD_PEER_BUCKETS  1024
#define RD_PEER_KEY      17     /* family byte, 16 address bytes */

/* one client address's waiting requests (long-polls, event streams) */
typedef struct rd_peer_s  rd_peer_t;

struct rd_peer_s {
    rd_peer_t              *next;
    unsigned char           key[RD_PEER_KEY];   /* family, address */
    size_t                  n;
};

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
    RD_M_OTHER = 8,
    RD_M_POST = 16
};

struct rd_req_s {
    rd_api_t               *api;
    struct MHD_Connection  *conn;
    rd_route_e              route;
    int                     method;
    int                     state;
    char                    svc[RD_NAME_MAX + 1];
    char                    id[RD_NAME_MAX + 1];
    mesh_buf_t              body;
    int                     too_large;
    rd_op_t                *op;
    uint64_t                want_index;
    int64_t                 deadline;
    int64_t                 start_us;
    rd_req_t               *prev;
    rd_req_t               *next;
    int                     waiting;

    int                     has_index;  /* events: ?index= given */
    int                     objects_delete;  /* POST /v1/objects/delete */

    /* a snapshot wait of a subscription: woken only by what concerns it */
    rd_subscription_t       sub;
    int                     has_sub;
    uint64_t                checked;    /* changes seen up to here are
                                           not about it */

    char                    peer[MESH_ADDR_TEXT_LEN];   /* a refused
                                                           writer's */
    unsigned char           peer_key[RD_PEER_KEY];   /* counted in api->peers */
    int                     peer_counted;
    char                    subject[RD_AUTH_SUBJECT_MAX + 1];  /* verified
                                           client certificate's, or "" */
    char                    proxy[RD_PROXY_NAME_MAX + 1];  /* X-Mesh-Proxy
                                           name of a waiting poll */

    /* an event stream (SSE); the flags under api->lock */
    int                     streaming;
    int                     suspended;
    int                     ping;
    int                     gone;       /* the client hung up */
    int                     fd;
    uint64_t                ev_last;    /* newest event sent */
    mesh_buf_t              out;        /* rendered, not yet sent */
    size_t                  out_off;
    rd_req_t               *sprev;
    rd_req_t               *snext;
};

struct rd_api_s {
    struct MHD_Daemon      *mhd;
    rd_registry_t          *reg;
    const rd_conf_t        *conf;
    rd_auth_t              *auth;       /* main's: reloaded on SIGHUP */
    char                   *tls_cert;   /* PEM texts, NULL: plain HTTP */
    char                   *tls_key;
    char                   *tls_ca;     /* NULL: no client certificates */
    struct MHD_OptionItem   tls_opts[4];
    mesh_cidr_t             trusted[64];  /* trusted_networks: writes
                                             without a token from these */
    size_t                  ntrusted;
    mesh_cidr_t             probe[64];    /* probe_networks */
    size_t                  nprobe;       /* 0: any address */
    rd_peer_t              *peers[RD_PEER_BUCKETS];   /* under lock */
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

void rd_free_buf_cb(void *cls);
void rd_release_snapshot_cb(void *cls);
enum MHD_Result rd_api_send(rd_req_t *rq, int status,
    struct MHD_Response *resp, const char *ctype, uint64_t index);
enum MHD_Result rd_api_send_buf(rd_req_t *rq, int status, mesh_buf_t *b,
    uint64_t index, const char *ctype);
enum MHD_Result rd_api_json(rd_req_t *rq, int status, mesh_buf_t *b,
    uint64_t index);
enum MHD_Result rd_api_error(rd_req_t *rq, int status, const char *msg,
    const char *field);
enum MHD_Result rd_api_handler(void *cls, struct MHD_Connection *conn,
    const char *url, const char *method, const char *version,
    const char *upload_data, size_t *upload_data_size, void **con_cls);
void rd_api_completed(void *cls, struct MHD_Connection *conn,
    void **con_cls, enum MHD_RequestTerminationCode toe);
enum MHD_Result rd_api_healthz(rd_req_t *rq);
enum MHD_Result rd_api_metrics(rd_req_t *rq);
enum MHD_Result rd_api_services(rd_req_t *rq);
enum MHD_Result rd_api_service(rd_req_t *rq);
enum MHD_Result rd_api_get_instance(rd_req_t *rq);
int rd_api_snapshot_ask(rd_req_t *rq, rd_snapshot_ask_t *ask,
    rd_subscription_t *sub, const char **field, char *err);
enum MHD_Result rd_api_send_snapshot(rd_req_t *rq);
void rd_api_unlink_waiter(rd_api_t *api, rd_req_t *rq);
enum MHD_Result rd_api_proxies(rd_req_t *rq);
enum MHD_Result rd_api_export(rd_req_t *rq);
enum MHD_Result rd_api_snapshot(rd_req_t *rq);
int rd_api_ready(rd_req_t *rq);
enum MHD_Result rd_api_wait(rd_req_t *rq, int64_t wait, int state);
int rd_api_peer_take(rd_api_t *api, rd_req_t *rq);
void rd_api_peer_give(rd_api_t *api, rd_req_t *rq);
enum MHD_Result rd_api_send_events(rd_req_t *rq);
void rd_api_unlink_stream(rd_api_t *api, rd_req_t *rq);
int rd_api_hung_up(int fd);
size_t rd_api_unescape(void *cls, struct MHD_Connection *conn, char *s);
int rd_api_route(rd_req_t *rq, const char *url, const char **bad);
int rd_api_tls_load(rd_api_t *api, const rd_conf_t *conf, char *err);
void rd_api_tls_free(rd_api_t *api);
int rd_api_tls_client(rd_req_t *rq, char *reason);
void rd_api_wake_streams(rd_api_t *api, int ping, int hangups);
enum MHD_Result rd_api_events(rd_req_t *rq);
enum MHD_Result rd_api_submit(rd_req_t *rq, rd_op_t *op);
enum MHD_Result rd_api_put_instance(rd_req_t *rq);
enum MHD_Result rd_api_heartbeat(rd_req_t *rq);
enum MHD_Result rd_api_policy_error(rd_req_t *rq, const rd_policy_err_t *e);
enum MHD_Result rd_api_put_policy(rd_req_t *rq);
enum MHD_Result rd_api_policies(rd_req_t *rq);
enum MHD_Result rd_api_get_policy(rd_req_t *rq);
enum MHD_Result rd_api_objects(rd_req_t *rq);
enum MHD_Result rd_api_get_object(rd_req_t *rq);
enum MHD_Result rd_api_objects_write(rd_req_t *rq);
enum MHD_Result rd_api_objects_answer(rd_req_t *rq, rd_op_t *op);
void rd_api_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe);

#endif
