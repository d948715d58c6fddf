
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * The status location's parts: the answer's state and its records, the
 * bounded writer and the counters (ngx_http_mesh_status.c, which also
 * writes the JSON), the Prometheus text (ngx_http_mesh_prometheus.c), and
 * the page for browsers (ngx_http_mesh_dashboard.c; its bytes in the
 * ngx_http_mesh_dashboard_html.c made at build time).
 */


#ifndef _NGX_HTTP_MESH_STATUS_H_INCLUDED_
#define _NGX_HTTP_MESH_STATUS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


/* counters of one instance, or summed over a service */
typedef struct {
    uint64_t                       requests;
    uint64_t                       failures;
    uint64_t                       responses[5];
    uint64_t                       latency[NGX_HTTP_MESH_LATENCY_BUCKETS];
    uint64_t                       latency_sum;
    uint64_t                       bytes_sent;
    uint64_t                       bytes_received;
    uint64_t                       session[NGX_HTTP_MESH_SESSION_BUCKETS];
    uint64_t                       session_sum;
    uint64_t                       ejections;
    uint64_t                       active;
    uint64_t                       win10_requests;
    uint64_t                       win10_latency;
    uint64_t                       win60_requests;
    uint64_t                       win60_latency;
    ngx_uint_t                     states[3];   /* healthy, unhealthy,
                                                   ejected */
} ngx_http_mesh_sum_t;


typedef struct ngx_http_mesh_status_s  ngx_http_mesh_status_t;

/*
 * A record writes one part of the answer (the head, a service's header or
 * totals, an instance, a Prometheus family's lines for one service or
 * member) between p and end, and returns where it stopped: end when it
 * did not fit.  It reads the status and changes nothing, so that it can
 * be written again in a new buffer.
 */
typedef u_char *(*ngx_http_mesh_record_pt)(ngx_http_mesh_status_t *st,
    u_char *p, u_char *end);


struct ngx_http_mesh_status_s {
    ngx_http_request_t            *request;
    ngx_http_mesh_main_conf_t     *mmcf;

    /* the answer */
    ngx_chain_t                   *out;
    ngx_chain_t                  **last;        /* the last link's next */
    ngx_buf_t                     *buf;         /* the one being filled */
    off_t                          size;

    /* the registry, read once under the zone's lock */
    uint64_t                       index;
    int64_t                        last_sync;
    ngx_pid_t                      poller;
    ngx_uint_t                     reg_state;
    ngx_str_t                     *url;         /* NULL: no mesh_registry */
    u_char                         err[256];

    ngx_msec_t                     now;
    uint64_t                       slot;

    /* what the next record is about */
    ngx_uint_t                     family;      /* Prometheus */
    ngx_uint_t                     svc;         /* the service's first
                                                   upstream in mmcf's */
    ngx_uint_t                     first;       /* the first service */
    ngx_http_mesh_target_t        *target;
    ngx_uint_t                     k;           /* an instance of target */
    ngx_uint_t                     state;       /* ... and its state */
    ngx_http_mesh_sum_t            sum;         /* its counters, or the
                                                   service's */
};


typedef struct {
    const char                    *name;
    const char                    *type;
    const char                    *help;
    ngx_uint_t                     member;      /* a series per member */
    ngx_uint_t                     tcp;         /* of stream upstreams'
                                                   services, not http's */
} ngx_http_mesh_family_t;


extern const ngx_msec_t  ngx_http_mesh_bounds[];
extern const char       *ngx_http_mesh_states[];

/* dashboard.html, made into C by dashboard.sh */
extern const u_char      ngx_http_mesh_dashboard_html[];
extern const size_t      ngx_http_mesh_dashboard_size;


ngx_int_t ngx_http_mesh_write(ngx_http_mesh_status_t *st,
    ngx_http_mesh_record_pt record);
ngx_uint_t ngx_http_mesh_service(ngx_http_mesh_status_t *st,
    ngx_uint_t i);
ngx_uint_t ngx_http_mesh_members(ngx_http_mesh_status_t *st);
ngx_uint_t ngx_http_mesh_tcp(ngx_http_mesh_status_t *st);
ngx_uint_t ngx_http_mesh_state(ngx_http_mesh_peer_t *peer,
    ngx_msec_t now);
void ngx_http_mesh_instance_sum(ngx_http_mesh_status_t *st);
void ngx_http_mesh_service_sum(ngx_http_mesh_status_t *st,
    ngx_uint_t *states);

ngx_int_t ngx_http_mesh_prometheus(ngx_http_mesh_status_t *st);

ngx_uint_t ngx_http_mesh_dashboard_wanted(ngx_http_request_t *r);
ngx_int_t ngx_http_mesh_vary_accept(ngx_http_request_t *r);
ngx_int_t ngx_http_mesh_dashboard(ngx_http_request_t *r, ngx_uint_t vary);


#endif /* _NGX_HTTP_MESH_STATUS_H_INCLUDED_ */
