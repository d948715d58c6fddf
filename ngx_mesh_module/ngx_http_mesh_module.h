
/*
 * Copyright (C) ngx_mesh authors
 */


#ifndef _NGX_HTTP_MESH_MODULE_H_INCLUDED_
#define _NGX_HTTP_MESH_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "mesh_balancer.h"
#include "mesh_name.h"
#include "mesh_policy.h"
#include "mesh_service.h"
#include "mesh_snapshot.h"


#define NGX_HTTP_MESH_VERSION         "0.2.0"

#define NGX_HTTP_MESH_RR              0
#define NGX_HTTP_MESH_RANDOM          1
#define NGX_HTTP_MESH_LEAST_REQUEST   2
#define NGX_HTTP_MESH_CHASH           3

#define NGX_HTTP_MESH_REG_NONE        0    /* never synced */
#define NGX_HTTP_MESH_REG_SYNCED      1
#define NGX_HTTP_MESH_REG_STALE       2
#define NGX_HTTP_MESH_REG_ERROR       3    /* an answer came that could
                                              not be applied */

#define NGX_HTTP_MESH_ZONE_SIZE       (32 * 1024 * 1024)

/* mesh_labels: as the registry holds an instance's labels */
#define NGX_HTTP_MESH_LABELS_MAX      64
#define NGX_HTTP_MESH_LABEL_VALUE_MAX 256

#define NGX_HTTP_MESH_LEASE           1000 /* ms a poll lease lasts */
#define NGX_HTTP_MESH_LEASE_TICK      250  /* ms between lease checks */


#define NGX_HTTP_MESH_SLOTS           32   /* worker processes at once */

#define NGX_HTTP_MESH_HEADER_MAX      (16 * 1024)  /* a registry answer's
                                                      header block */


/* the header block of a registry answer, as read */
typedef struct {
    u_char                        *body;        /* NULL: not complete */
    off_t                          content_length;   /* -1: none */
    ngx_uint_t                     chunked;
    ngx_uint_t                     gzip;
    ngx_uint_t                     close;       /* no keep-alive after */
    ngx_uint_t                     status;
} ngx_http_mesh_answer_t;

#define NGX_HTTP_MESH_LATENCY_BUCKETS 12
#define NGX_HTTP_MESH_SESSION_BUCKETS 9     /* TCP session durations:
                                               ngx_http_mesh_session_bounds
                                               and one for more */
#define NGX_HTTP_MESH_WINDOW_SLOTS    7    /* of 10 s: the last 60 s */
#define NGX_HTTP_MESH_WINDOW          10000

/*
 * A window slot's counter is one word: the window's id in its top 24 bits,
 * the count in the low 40, so that a new window starting and an increment
 * cannot lose each other (one compare-and-swap does both).
 */
#define NGX_HTTP_MESH_WIN_VALUE       (((uint64_t) 1 << 40) - 1)
#define ngx_http_mesh_win_tag(id)     (((uint64_t) (id) & 0xffffff) << 40)
#define ngx_http_mesh_win_value(w, id)                                       \
    ((((w) & ~NGX_HTTP_MESH_WIN_VALUE) == ngx_http_mesh_win_tag(id))         \
     ? ((w) & NGX_HTTP_MESH_WIN_VALUE) : 0)


/*
 * Counters in shared memory, found by name: "service/id" per instance,
 * "service" per service (retry budget, retries, the ejection epoch, the
 * whole service's round robin position), "service/#subset" for a subset's
 * round robin position.
 */
typedef struct {
    ngx_rbtree_node_t              node;        /* key: crc32 of name */
    ngx_queue_t                    queue;
    uint32_t                       active;      /* atomic */
    uint64_t                       rr_next;     /* round robin position,
                                                   atomic */
    uint32_t                       epoch;       /* a service's: bumped when
                                                   an ejection of one of its
                                                   instances starts or ends
                                                   early */
    uint64_t                       requests;    /* atomic, all below too */
    uint64_t                       failures;
    uint64_t                       responses[5];          /* 1xx..5xx */
    uint64_t                       latency[NGX_HTTP_MESH_LATENCY_BUCKETS];
    uint64_t                       latency_sum;           /* ms */
    uint64_t                       bytes_sent;  /* TCP: to the instance */
    uint64_t                       bytes_received;        /* from it */
    uint64_t                       session[NGX_HTTP_MESH_SESSION_BUCKETS];
    uint64_t                       session_sum;           /* ms */
    uint64_t                       retries;
    uint64_t                       ejections;
    uint64_t                       overflow;    /* a service's: requests
                                                   answered 503 over a
                                                   connectionPool cap */
    uint64_t                       retry_overflow;   /* retries not made:
                                                   maxRetries or the
                                                   retry budget */
    uint32_t                       retries_active;
    uint32_t                       consecutive_5xx;
    uint32_t                       consecutive_gateway;
    uint32_t                       consecutive_local;     /* split only */
    uint32_t                       times_ejected;         /* lock */
    uint32_t                       returning;   /* log the return once */
    uint32_t                       critical;    /* last seen critical in
                                                   the registry */
    ngx_msec_t                     ejected_until;         /* lock */
    uint64_t                       win_requests[NGX_HTTP_MESH_WINDOW_SLOTS];
    uint64_t                       win_latency[NGX_HTTP_MESH_WINDOW_SLOTS];
                                                /* tagged with their window
                                                   (NGX_HTTP_MESH_WIN_*) */
    ngx_msec_t                     absent;      /* not in the snapshot
                                                   since, 0: present */
    ngx_msec_t                     since;       /* an instance's: new, or
                                                   passing again after
                                                   critical, since (slow
                                                   start); 0: unknown */
    uint32_t                       held[NGX_HTTP_MESH_SLOTS];  /* of active,
                                                   per worker slot: what a
                                                   worker that died held */
    u_short                        len;
    u_char                         name[1];
} ngx_http_mesh_stat_t;


/* outlier detection and panic, as set by policy, directive or default */
typedef struct {
    ngx_uint_t                     consecutive_5xx;       /* 0: off */
    ngx_uint_t                     consecutive_gateway;   /* 0: off */
    ngx_msec_t                     interval;
    ngx_msec_t                     base_ejection_time;
    ngx_msec_t                     max_ejection_time;
    ngx_uint_t                     max_ejection_percent;
    ngx_uint_t                     panic_threshold;       /* %, 0: off */
    ngx_uint_t                     split_local;           /* Envoy's
                                                split_external_local_origin_
                                                errors */
    ngx_uint_t                     consecutive_local;     /* 0: off */
} ngx_http_mesh_outlier_t;


/*
 * A service some mesh upstream routes, in the zone: its instances in
 * mesh_service's packed form, replaced as a whole by the poll owner when
 * the service changes. Created when a configuration names the service
 * and never freed (workers keep pointers to it); "wanted" says whether
 * the running configuration still routes it, and so polls for it.
 */
typedef struct {
    ngx_str_node_t                 sn;          /* key: crc32 of name,
                                                   str: name */
    ngx_queue_t                    queue;
    ngx_atomic_uint_t              generation;  /* bumped per change */
    uint64_t                       index;       /* of its last change */
    u_char                        *data;        /* packed, slab; NULL:
                                                   no instances */
    size_t                         size;
    ngx_uint_t                     ninstances;
    ngx_uint_t                     wanted;
    u_short                        len;
    u_char                         name[1];
} ngx_http_mesh_shsvc_t;


typedef struct {
    ngx_rbtree_t                   rbtree;
    ngx_rbtree_node_t              sentinel;
    ngx_queue_t                    stats;
    ngx_queue_t                   *sweep;       /* next stat to look at */
    ngx_uint_t                     sweeps;      /* passes over all stats */

    /* worker slots: a worker's requests in flight are counted in its
     * slot too, so that those of a worker that died can be taken back */
    ngx_pid_t                      slot_pid[NGX_HTTP_MESH_SLOTS];
    ngx_uint_t                     slot_clean[NGX_HTTP_MESH_SLOTS]; /* 0, or
                                                   the pass its cleaning
                                                   started in, + 1 */

    ngx_rbtree_t                   svc_tree;
    ngx_rbtree_node_t              svc_sentinel;
    ngx_queue_t                    services;    /* of ngx_http_mesh_shsvc_t */
    ngx_atomic_t                   subscription; /* bumped when the
                                                   wanted set changes */
    ngx_atomic_uint_t              synced_subscription; /* of the last
                                                   complete answer */

    uint32_t                       epoch;       /* as a service's, for all:
                                                   targets without one */
    ngx_atomic_t                   generation;  /* bumped per change of
                                                   anything below */
    uint64_t                       index;
    uint64_t                       registry;    /* the id of the registry
                                                   index belongs to */
    u_char                        *policies;    /* JSON array, slab: for
                                                   the cache file */
    size_t                         policies_len;
    u_char                        *policies_packed;  /* mesh_policies_pack,
                                                   slab: for the workers */
    size_t                         policies_packed_len;
    ngx_atomic_t                   policies_gen;

    ngx_pid_t                      poll_owner;
    ngx_msec_t                     poll_expire;
    ngx_uint_t                     reg_current; /* the registry polled:
                                                   of mmcf->registries */

    ngx_uint_t                     reg_state;
    int64_t                        last_sync;   /* unix ms */
    u_char                         last_error[256];
    ngx_uint_t                     from_cache;
} ngx_http_mesh_shctx_t;


typedef struct {
    ngx_http_mesh_shctx_t         *sh;
    ngx_slab_pool_t               *shpool;
} ngx_http_mesh_zone_t;


#define NGX_HTTP_MESH_HASH_KEY        0    /* mesh_balancer's key */
#define NGX_HTTP_MESH_HASH_HEADER     1
#define NGX_HTTP_MESH_HASH_QUERY      2
#define NGX_HTTP_MESH_HASH_COOKIE     3
#define NGX_HTTP_MESH_HASH_SOURCE_IP  4


typedef struct {
    ngx_str_t                      id;
    ngx_str_t                      name;        /* "ADDR:PORT" */
    struct sockaddr               *sockaddr;
    socklen_t                      socklen;
    ngx_uint_t                     healthy;
    ngx_http_mesh_stat_t          *stat;
    const mesh_instance_t         *instance;    /* of the view's service */
} ngx_http_mesh_peer_t;


/*
 * A level of a target's instances under localityLbSetting: a priority
 * (failover), or a locality (distribute). Its instances are copied, with
 * their index in the target (map), so that a pick within it costs what a
 * pick over the target does; the share of the picks it takes is worked
 * out with the target's set.
 */
typedef struct {
    size_t                         number;
    mesh_peer_t                   *mp;
    uint32_t                      *map;         /* its instance -> target's */
    mesh_set_t                     set;
    uint64_t                       rr;          /* round robin position,
                                                   this worker's */
    ngx_uint_t                     healthy;
    double                         weight;      /* distribute: its locality
                                                   weight */
    uint64_t                       upto;        /* the picks below it and
                                                   its own, of 2^32 */
} ngx_http_mesh_level_t;

#define NGX_HTTP_MESH_PICK_LEVELS     4    /* t->pick: a level, then the
                                              balancer within it */
#define NGX_HTTP_MESH_PICK_LR_WARM    5    /* least request with some
                                              instance in slow start */


typedef struct ngx_http_mesh_srv_conf_s   ngx_http_mesh_srv_conf_t;
typedef struct ngx_http_mesh_main_conf_s  ngx_http_mesh_main_conf_t;


/* the policies as one worker parsed them, shared by the views built on
 * them */
typedef struct {
    ngx_uint_t                     refs;
    u_char                        *json;        /* or the packed block the
                                                   policies live in */
    mesh_policies_t               *policies;    /* regexes compiled */
} ngx_http_mesh_gen_t;


/*
 * A consistent hash ring of one worker, shared by the views whose targets
 * have the same members (a change of health or of another service keeps
 * it). A large one is built a slice at a time by the worker's ring event,
 * never for longer than NGX_HTTP_MESH_RING_SLICE at once.
 */
typedef struct {
    ngx_uint_t                     refs;
    mesh_chash_ring_t              ring;
    u_char                        *members;     /* "ADDR:PORT WEIGHT\n"... */
    size_t                         members_len;
    mesh_chash_builder_t          *builder;     /* NULL: built */
} ngx_http_mesh_ring_t;

#define NGX_HTTP_MESH_RING_SYNC       32768  /* points built at once */
#define NGX_HTTP_MESH_RING_SLICE      2      /* ms of ring work per turn */


/* trafficPolicy.tls as a worker uses it (ngx_http_mesh_tls.c) */
typedef struct ngx_http_mesh_tls_s  ngx_http_mesh_tls_t;


/*
 * What a request is balanced over: the whole service or a subset. The
 * set of instances a pick may take (passing and not ejected; all of them
 * in panic) is worked out when the view is built, again when the
 * service's ejection epoch moves or the soonest ejection ends, and never
 * per pick.
 */
typedef struct {
    ngx_str_t                      subset;      /* empty: whole service */
    ngx_uint_t                     number;
    ngx_http_mesh_peer_t          *peer;
    mesh_peer_t                   *mp;          /* for the algorithms */
    mesh_set_t                     set;
    uint32_t                      *epoch;       /* the service's, or the
                                                   zone's */
    uint32_t                       set_epoch;   /* *epoch the set is of */
    ngx_msec_t                     set_expire;  /* the soonest end of an
                                                   ejection it leaves out,
                                                   0: none */
    ngx_uint_t                     healthy;     /* in the set: passing and
                                                   not ejected */
    ngx_uint_t                     panic;
    uint64_t                      *rr;          /* round robin position,
                                                   shared by the workers */
    uint64_t                       rr_local;    /* (the zone full) */
    ngx_http_mesh_ring_t          *ring;        /* consistent hash */
    ngx_uint_t                     balancer;    /* NGX_HTTP_MESH_RR... */
    ngx_uint_t                     hash;        /* NGX_HTTP_MESH_HASH_* */
    ngx_str_t                      hash_name;
    int64_t                        cookie_ttl;  /* ms; -1: none issued */
    ngx_str_t                      cookie_path;
    ngx_uint_t                     max_conns;   /* 0: no cap */

    /* the rest of connectionPool (ngx_http_mesh_pool.c) */
    ngx_msec_t                     connect_timeout;  /* 0: the location's */
    ngx_uint_t                     keepalive;   /* SO_KEEPALIVE */
    int                            keepidle;    /* s, 0: the kernel's */
    int                            keepintvl;   /* s, 0: the kernel's */
    int                            keepcnt;     /* 0: the kernel's */
    ngx_uint_t                     max_requests;     /* in flight to the
                                                   service, 0: no cap */
    ngx_uint_t                     conn_requests;    /* on one upstream
                                                   connection, 0: no cap */
    ngx_int_t                      max_retries;      /* in flight to the
                                                   service, -1: the retry
                                                   budget */
    ngx_msec_t                     idle_timeout;     /* of a kept upstream
                                                   connection, 0: the
                                                   upstream's keepalive_
                                                   timeout */
    ngx_http_mesh_outlier_t        outlier;
    ngx_http_mesh_tls_t           *tls;         /* NULL: the location's
                                                   proxy_pass decides */
    ngx_http_mesh_stat_t          *service;     /* the service's counters */
    ngx_str_t                      service_name;

    /* localityLbSetting and warmupDurationSecs (ngx_http_mesh_locality.c),
     * worked out with the set */
    ngx_uint_t                     pick;        /* what get_peer runs: the
                                                   balancer, or
                                                   NGX_HTTP_MESH_PICK_* */
    ngx_http_mesh_level_t         *levels;
    ngx_uint_t                     nlevels;     /* 0: none */
    ngx_uint_t                     distribute;  /* levels are localities
                                                   weighted, not
                                                   priorities */
    ngx_msec_t                     warmup;      /* 0: none */
    ngx_uint_t                     warming;     /* an instance is */
    int                           *weight;      /* registered weights
                                                   (warmup) */
} ngx_http_mesh_target_t;


/*
 * Where a destination (or a mirror) of a route leads: a target of the
 * view, or, for another service, the mesh upstream that routes it, whose
 * current view is looked at when a request goes there (a change of that
 * service rebuilds its own view, not the views routing to it)
 */
typedef struct {
    ngx_http_mesh_target_t        *target;      /* of this view, or NULL */
    ngx_http_mesh_srv_conf_t      *other;       /* or the upstream of the
                                                   other service; both NULL:
                                                   a subset nothing defines,
                                                   or no upstream routes the
                                                   service */
    const char                    *subset;      /* NULL: whole service */
} ngx_http_mesh_dest_t;


typedef struct {
    mesh_http_route_t             *route;
    ngx_http_mesh_dest_t          *dest;        /* per destination */
    ngx_http_mesh_dest_t          *mirror;      /* per mirror */
} ngx_http_mesh_route_t;


/*
 * The routes of the VirtualServices bound to Gateways, as one worker
 * built them for one generation of the policies (never per request):
 * every destination leads to the mesh upstream that routes its service.
 * Requests hold the table they were routed by (reference counted).
 */
typedef struct {
    const mesh_virtual_service_t  *vs;
    ngx_http_mesh_route_t         *routes;      /* per vs->http[] */
    ngx_http_mesh_dest_t         **tcp;         /* per vs->tcp[]: its
                                                   destinations, through
                                                   stream upstreams */
    ngx_http_mesh_dest_t         **tls;         /* per vs->tls[] */
} ngx_http_mesh_gw_vs_t;

typedef struct {
    ngx_uint_t                     refs;        /* requests + current */
    ngx_pool_t                    *pool;
    ngx_http_mesh_gen_t           *gen;
    ngx_cycle_t                   *cycle;
    ngx_http_mesh_gw_vs_t         *vss;
    ngx_uint_t                     nvss;
} ngx_http_mesh_gw_table_t;


/* mesh_gateway NAME... [port=N] */
typedef struct {
    ngx_array_t                   *gateways;    /* ngx_str_t "NS/NAME";
                                                   NULL: not a gateway */
    ngx_int_t                      port;        /* 0: the request's */
} ngx_http_mesh_loc_conf_t;
/* a VirtualService tcp[] route of a stream upstream's view */
typedef struct {
    mesh_tcp_route_t              *route;
    ngx_http_mesh_dest_t          *dest;        /* per destination */
} ngx_http_mesh_tcp_route_t;


/* what one worker has of the zone */
typedef struct {
    ngx_atomic_uint_t              generation;
    ngx_cycle_t                   *cycle;       /* whose upstreams we built:
                                                   a reload without master
                                                   process starts over */
    ngx_http_mesh_gen_t           *gen;         /* the policies */
    ngx_atomic_uint_t              policies_gen;
    uint64_t                       index;
    uint32_t                       rand;        /* xorshift32 state */
} ngx_http_mesh_worker_t;


/* one upstream's members and routes as one worker last built them */
typedef struct {
    ngx_uint_t                     refs;        /* requests + current */
    uint64_t                       index;
    ngx_pool_t                    *pool;
    ngx_http_mesh_gen_t           *gen;
    mesh_service_t                 svc;         /* read from "packed" */
    u_char                        *packed;      /* the zone's block, copied;
                                                   freed with the pool */
    ngx_http_mesh_target_t        *targets;     /* [0]: the whole service */
    ngx_uint_t                     ntargets;
    ngx_http_mesh_route_t         *routes;      /* VirtualService http[] */
    ngx_uint_t                     nroutes;
    ngx_http_mesh_tcp_route_t     *tcp;         /* tcp[]: stream's only */
    ngx_uint_t                     ntcp;
    ngx_http_mesh_dest_t         **tls;         /* per vs->tls[]: its
                                                   destinations (stream) */
    const mesh_virtual_service_t  *vs;          /* NULL: none */
} ngx_http_mesh_view_t;


struct ngx_http_mesh_srv_conf_s {
    ngx_str_t                      service;
    ngx_str_t                      name;        /* of the upstream block */
    ngx_str_t                      stats;       /* the counters' name: the
                                                   service, "tcp:service"
                                                   for stream */
    ngx_uint_t                     stream;      /* a stream{} upstream:
                                                   upstream is NULL */
    ngx_http_mesh_main_conf_t     *main;        /* (stream: the http
                                                   block's, set by mesh) */
    void                          *stream_key;  /* mesh_balancer's key in
                                                   stream: ngx_stream_
                                                   complex_value_t */
    ngx_uint_t                     port;        /* mesh ... port=N; 0: none */
    ngx_uint_t                     balancer;
    ngx_http_mesh_outlier_t        outlier;     /* mesh_outlier */
    ngx_uint_t                     panic;       /* mesh_panic_threshold */
    ngx_flag_t                     instances;   /* mesh_status_instances */
    ngx_http_complex_value_t      *key;
    ngx_http_upstream_srv_conf_t  *upstream;
    ngx_http_mesh_view_t          *view;        /* worker-local */
    ngx_http_mesh_view_t          *next;        /* built, its rings not yet:
                                                   replaces view when they
                                                   are */
    ngx_uint_t                     ring_refused; /* logged */
    ngx_http_mesh_shsvc_t         *shsvc;       /* the service in the zone */
    ngx_atomic_uint_t              shsvc_gen;   /* of the view: worker-local */
    ngx_uint_t                     missing;     /* logged: not in snapshot */

    /* a stream server{}'s mesh_gateway */
    ngx_array_t                   *gateways;    /* ngx_str_t "NS/NAME" */
    ngx_int_t                      gw_port;     /* port=N, else unset */
    ngx_int_t                      gw_sni;      /* $ssl_preread_server_name,
                                                   NGX_ERROR: no such
                                                   variable */
    void                          *gw_content;  /* the server's content
                                                   handler (proxy_pass) */
};


/* one URL of mesh_registry: a registryd (replicas: several) */
typedef struct {
    ngx_url_t                     *url;
    ngx_str_t                      uri;         /* as written */
    ngx_uint_t                     ssl;         /* https:// */
    ngx_uint_t                     ssl_ip;      /* its host is an address */
    u_char                        *ssl_name;    /* its host, for SNI and the
                                                   certificate: a C string
                                                   without brackets */
} ngx_http_mesh_registry_t;


struct ngx_http_mesh_main_conf_s {
    ngx_url_t                     *registry;    /* mesh_registry: the first */
    ngx_str_t                      registry_uri;
    ngx_array_t                    registries;  /* ngx_http_mesh_registry_t:
                                                   tried in turn */
    ngx_str_t                      token;       /* token_file=: sent as
                                                   Authorization: Bearer */
#if (NGX_HTTP_SSL)
    ngx_ssl_t                     *ssl;         /* for https:// URLs */
    ngx_str_t                      ssl_trusted_certificate;
    ngx_str_t                      ssl_certificate;
    ngx_str_t                      ssl_certificate_key;
    ngx_flag_t                     ssl_verify;

    /* the mesh's own certificates: ISTIO_MUTUAL */
    ngx_str_t                      tls_certificate;
    ngx_str_t                      tls_certificate_key;
    ngx_str_t                      tls_trusted_certificate;
    ngx_http_mesh_tls_t           *tls_identity;     /* loaded, or NULL */
#endif
    ngx_str_t                      cache_file;  /* mesh_cache_file */
    size_t                         zone_size;   /* mesh_zone */
    ngx_flag_t                     metrics;     /* mesh_metrics */
    ngx_flag_t                     instances;   /* mesh_status_instances */
    ngx_array_t                   *labels;      /* mesh_labels: mesh_label_t,
                                                   sorted by key; NULL:
                                                   none */
    ngx_str_t                      locality;    /* mesh_locality; empty:
                                                   none */
    mesh_locality_t                self;        /* its parts */
    ngx_shm_zone_t                *shm_zone;
    ngx_http_mesh_zone_t           zone;
    ngx_array_t                    upstreams;   /* of srv_conf_t * */
    ngx_uint_t                     stream_gateways; /* mesh_gateway in
                                                       stream{} */
};


/* the route's corsPolicy and the request (ngx_http_mesh_route.c) */
#define NGX_HTTP_MESH_CORS_NONE       0     /* no Origin it allows */
#define NGX_HTTP_MESH_CORS_ALLOWED    1     /* the response gets the headers */
#define NGX_HTTP_MESH_CORS_PREFLIGHT  2     /* answered by nginx */


/* the request's choice, for free_peer and the variables (init_peer sets
 * every field, the pool does not zero it: a new field needs its line) */
typedef struct {
    ngx_http_mesh_srv_conf_t      *conf;
    ngx_http_mesh_main_conf_t     *main;
    ngx_http_mesh_view_t          *view;
    ngx_http_mesh_view_t          *dest_view;   /* held for a target of
                                                   another service's view */
    ngx_http_mesh_target_t        *target;
    ngx_http_mesh_route_t         *route;
    ngx_http_mesh_peer_t          *current;     /* chosen, not yet freed */
    ngx_http_mesh_peer_t          *last;        /* the last one chosen */
    uintptr_t                     *tried;       /* per instance of target */
    uintptr_t                      tried_inline; /* tried, up to 64 */
    ngx_uint_t                     tries;       /* picks made */
    uint32_t                       hash;
    ngx_uint_t                     has_hash;
    uint64_t                       index;       /* routed on */
    ngx_uint_t                     retrying;    /* holds a retry budget */
    ngx_uint_t                     refused;     /* the last try could not
                                                   connect: its retry is
                                                   no extra work */

    /* connectionPool (ngx_http_mesh_pool.c) */
    ngx_uint_t                     admitted;    /* the caps were checked */
    ngx_http_mesh_stat_t          *reserved;    /* the service whose
                                                   active holds a place of
                                                   the request's that no
                                                   pick has taken yet */
    ngx_output_chain_filter_pt     output_filter;    /* the upstream's, which
                                                   the pool's filter calls */
    void                          *filter_ctx;
    ngx_connection_t              *conn;        /* the upstream connection
                                                   the request was sent on,
                                                   until free_peer */

    /* trafficPolicy.tls (ngx_http_mesh_tls.c) */
    ngx_uint_t                     tls_refused; /* cannot have what it asks:
                                                   502 */
    ngx_uint_t                     tls_verify;  /* a new connection's
                                                   certificate is checked
                                                   before sending */
    ngx_http_request_t            *request;     /* NULL: a stream
                                                   session's */
    void                          *session;     /* ngx_stream_session_t */
    ngx_event_t                   *connect_ev;  /* a stream connection's
                                                   connectionPool.tcp,
                                                   posted by get_peer */

    /* the VirtualService's route, decided once (by the route phase, or
     * by init_peer where that phase did not run) */
    ngx_uint_t                     routed;
    ngx_uint_t                     delaying;    /* a fault delay runs */
    ngx_int_t                      dest;        /* route[] picked, or -1 */
    size_t                         prefix;      /* the path prefix the
                                                   match took, or 0 */
    ngx_str_t                      authority;   /* rewritten, or empty */
    ngx_str_t                      cookie;      /* issued: Set-Cookie's
                                                   value, or empty */
    ngx_uint_t                     cors;        /* NGX_HTTP_MESH_CORS_* */
    ngx_str_t                      cors_origin; /* the allowed Origin */
    uint32_t                       mirrors;     /* the route's mirrors this
                                                   request is copied to,
                                                   bit i: mirrors[i] */
    ngx_uint_t                     mirror;      /* this is a copy */

    /* a request routed at a gateway (mesh_gateway): conf is NULL until
     * init_peer of the upstream $mesh_upstream names adopts the data */
    ngx_http_mesh_gw_table_t      *gw_table;    /* held */
    const mesh_virtual_service_t  *gw_vs;       /* the one routing it */
    ngx_http_mesh_srv_conf_t      *upstream;    /* $mesh_upstream */
} ngx_http_mesh_peer_data_t;

/* a route's mirrors a request may be copied to (registryd's cap too) */
#define NGX_HTTP_MESH_MIRRORS_MAX     32


extern ngx_module_t  ngx_http_mesh_module;


/* ngx_http_mesh_shm.c */
ngx_int_t ngx_http_mesh_init_zone(ngx_shm_zone_t *shm_zone, void *data);
ngx_int_t ngx_http_mesh_apply(ngx_http_mesh_zone_t *zone,
    mesh_snapshot_t *snap, u_char *packed, size_t packed_len,
    ngx_uint_t from_cache, ngx_atomic_uint_t subscription, char *err,
    size_t errlen);
ngx_int_t ngx_http_mesh_want(ngx_http_mesh_main_conf_t *mmcf);
u_char *ngx_http_mesh_subscription(ngx_http_mesh_zone_t *zone,
    size_t *len, ngx_atomic_uint_t *subscription, ngx_log_t *log);
u_char *ngx_http_mesh_zone_json(ngx_http_mesh_zone_t *zone, size_t *len,
    ngx_log_t *log);
void ngx_http_mesh_set_reg_state(ngx_http_mesh_zone_t *zone,
    ngx_uint_t state, const char *error);
ngx_http_mesh_shsvc_t *ngx_http_mesh_shsvc_lookup(ngx_http_mesh_shctx_t *sh,
    u_char *name, size_t len);

/* ngx_http_mesh_stats.c */
extern ngx_int_t  ngx_http_mesh_slot;         /* this worker's, -1: none */

void ngx_http_mesh_stat_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
ngx_http_mesh_stat_t *ngx_http_mesh_get_stat(ngx_http_mesh_zone_t *zone,
    ngx_str_t *service, ngx_str_t *id);
void ngx_http_mesh_sweep_stats(ngx_http_mesh_zone_t *zone,
    mesh_policies_t *policies, ngx_uint_t n);
void ngx_http_mesh_slot_take(ngx_http_mesh_zone_t *zone, ngx_log_t *log);
void ngx_http_mesh_slot_leave(ngx_http_mesh_zone_t *zone);
void ngx_http_mesh_slot_check(ngx_http_mesh_zone_t *zone, ngx_log_t *log);

/* a request in flight on st, counted in this worker's slot too */
static ngx_inline void
ngx_http_mesh_hold(ngx_http_mesh_stat_t *st)
{
    (void) __sync_fetch_and_add(&st->active, 1);

    if (ngx_http_mesh_slot >= 0) {
        (void) __sync_fetch_and_add(&st->held[ngx_http_mesh_slot], 1);
    }
}


static ngx_inline void
ngx_http_mesh_unhold(ngx_http_mesh_stat_t *st)
{
    (void) __sync_fetch_and_sub(&st->active, 1);

    if (ngx_http_mesh_slot >= 0) {
        (void) __sync_fetch_and_sub(&st->held[ngx_http_mesh_slot], 1);
    }
}

/* ngx_http_mesh_status.c */
extern const ngx_msec_t  ngx_http_mesh_session_bounds[];

/* ngx_http_mesh_registry_ssl.c */
#if (NGX_HTTP_SSL)
ngx_int_t ngx_http_mesh_ssl_name(ngx_conf_t *cf,
    ngx_http_mesh_registry_t *reg);
char *ngx_http_mesh_ssl_conf(ngx_conf_t *cf,
    ngx_http_mesh_main_conf_t *mmcf);
ngx_int_t ngx_http_mesh_ssl_handshake(ngx_connection_t *c, ngx_ssl_t *ssl,
    ngx_http_mesh_registry_t *reg, ngx_connection_handler_pt handler);
ngx_int_t ngx_http_mesh_ssl_verify(ngx_connection_t *c,
    ngx_http_mesh_main_conf_t *mmcf, ngx_http_mesh_registry_t *reg,
    u_char *reason, size_t size);
void ngx_http_mesh_ssl_close(ngx_connection_t *c);
#endif

/* ngx_http_mesh_answer.c */
ngx_int_t ngx_http_mesh_answer_header(ngx_http_mesh_answer_t *a, u_char *buf,
    size_t len, size_t limit, const char **reason);
ngx_int_t ngx_http_mesh_dechunk(u_char *p, u_char *end, size_t *len,
    u_char **last);
ngx_int_t ngx_http_mesh_inflate(u_char *in, size_t len, size_t limit,
    u_char **out, size_t *outlen, ngx_log_t *log);
void ngx_http_mesh_answer_error(u_char *body, size_t len, u_char *buf,
    size_t size);

/* ngx_http_mesh_cache.c */
void ngx_http_mesh_cache_check(ngx_conf_t *cf, ngx_str_t *file);
void ngx_http_mesh_cache_init(ngx_http_mesh_main_conf_t *mmcf,
    ngx_log_t *log);
void ngx_http_mesh_cache_dirty(void);
void ngx_http_mesh_cache_write(void);
void ngx_http_mesh_cache_flush(void);
ngx_int_t ngx_http_mesh_cache_load(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_zone_t *zone, ngx_log_t *log);

/* ngx_http_mesh_registry.c */
ngx_int_t ngx_http_mesh_registry_init_process(ngx_cycle_t *cycle);
void ngx_http_mesh_registry_exit_process(ngx_cycle_t *cycle);

/* ngx_http_mesh_module.c */
const char *ngx_http_mesh_balancer_name(ngx_uint_t balancer);
ngx_http_mesh_srv_conf_t *ngx_http_mesh_alloc_srv_conf(ngx_conf_t *cf);
void ngx_http_mesh_init_srv_conf(ngx_http_mesh_srv_conf_t *mscf);

/* ngx_http_mesh_view.c */
extern ngx_http_mesh_worker_t  ngx_http_mesh_worker;

ngx_int_t ngx_http_mesh_sync(ngx_http_mesh_main_conf_t *mmcf,
    ngx_log_t *log);
uint64_t ngx_http_mesh_worker_index(void);
mesh_policies_t *ngx_http_mesh_worker_policies(void);
void ngx_http_mesh_free_view(ngx_http_mesh_view_t *view);
ngx_http_mesh_srv_conf_t *ngx_http_mesh_stream_upstream_of(
    ngx_http_mesh_main_conf_t *mmcf, const char *host, size_t len);
ngx_http_mesh_srv_conf_t *ngx_http_mesh_upstream_of(
    ngx_http_mesh_main_conf_t *mmcf, const char *host, size_t len, int port);

/* a request or the worker lets go of a view */
static ngx_inline void
ngx_http_mesh_release_view(ngx_http_mesh_view_t *view)
{
    if (view && --view->refs == 0) {
        ngx_http_mesh_free_view(view);
    }
}

/* ngx_http_mesh_policies.c */
ngx_http_mesh_gen_t *ngx_http_mesh_gen_create(u_char *json, size_t len,
    char *err, size_t errlen, ngx_log_t *log);
ngx_http_mesh_gen_t *ngx_http_mesh_gen_unpack(u_char *packed, size_t len,
    char *err, size_t errlen, ngx_log_t *log);
u_char *ngx_http_mesh_gen_pack(ngx_http_mesh_gen_t *g, size_t *len,
    ngx_log_t *log);
void ngx_http_mesh_gen_release(ngx_http_mesh_gen_t *gen);

/* ngx_http_mesh_ring.c */
ngx_http_mesh_ring_t *ngx_http_mesh_ring_get(ngx_http_mesh_srv_conf_t *mscf,
    const char **servers, size_t *lens, int *weights, ngx_uint_t n,
    ngx_log_t *log);
void ngx_http_mesh_ring_release(ngx_http_mesh_ring_t *ring);
ngx_uint_t ngx_http_mesh_ring_step(ngx_http_mesh_ring_t *ring,
    struct timespec *until);

/* ngx_http_mesh_outlier.c */
ngx_uint_t ngx_http_mesh_ejected(ngx_http_mesh_stat_t *st, ngx_msec_t now);
void ngx_http_mesh_target_set(ngx_http_mesh_target_t *t, ngx_msec_t now,
    ngx_log_t *log);
void ngx_http_mesh_epoch_bump(ngx_http_mesh_zone_t *zone,
    ngx_http_mesh_target_t *t);
void ngx_http_mesh_failed(ngx_http_mesh_peer_data_t *pd,
    ngx_http_mesh_peer_t *peer, ngx_uint_t state, ngx_uint_t status,
    ngx_log_t *log);

/* ngx_http_mesh_locality.c */
ngx_int_t ngx_http_mesh_locality_init(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_target_t *t, const mesh_traffic_policy_t *tp,
    ngx_pool_t *pool, ngx_log_t *log);
void ngx_http_mesh_locality_set(ngx_http_mesh_target_t *t, ngx_msec_t now,
    ngx_msec_t *expire);
int ngx_http_mesh_level_pick(ngx_http_mesh_target_t *t,
    ngx_http_mesh_peer_data_t *pd, mesh_accept_pt accept);

/* ngx_http_mesh_balancer.c */
ngx_int_t ngx_http_mesh_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
int ngx_http_mesh_accept(void *ctx, size_t k);
ngx_http_mesh_peer_data_t *ngx_http_mesh_peer_data(ngx_http_request_t *r,
    ngx_http_mesh_srv_conf_t *mscf);
ngx_http_mesh_route_t *ngx_http_mesh_find_route(ngx_http_request_t *r,
    ngx_http_mesh_view_t *view, size_t *prefix);
ngx_http_mesh_route_t *ngx_http_mesh_find_route_in(ngx_http_request_t *r,
    ngx_http_mesh_route_t *routes, ngx_uint_t n, size_t *prefix);
ngx_int_t ngx_http_mesh_route_conf(ngx_http_request_t *r,
    mesh_http_route_t *route);
ngx_table_elt_t *ngx_http_mesh_header_in(ngx_http_request_t *r,
    const char *name, size_t len);
void ngx_http_mesh_cleanup_peer(void *data);
ngx_int_t ngx_http_mesh_pick(ngx_http_mesh_peer_data_t *pd,
    ngx_http_mesh_target_t *t, ngx_uint_t check);
void ngx_http_mesh_account(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_stat_t *st, ngx_http_mesh_stat_t *svc, ngx_uint_t status,
    ngx_msec_t ms);
ngx_http_mesh_target_t *ngx_http_mesh_dest_target(
    ngx_http_mesh_peer_data_t *pd, ngx_http_mesh_dest_t *dst);

/* ngx_http_mesh_pool.c */
ngx_int_t ngx_http_mesh_pool_admit(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd, ngx_http_mesh_target_t *t);
ngx_int_t ngx_http_mesh_pool_conf(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd);
void ngx_http_mesh_pool_free(ngx_peer_connection_t *pc,
    ngx_http_mesh_peer_data_t *pd, ngx_uint_t state);
void ngx_http_mesh_pool_sockopt(ngx_connection_t *c,
    ngx_http_mesh_target_t *t);
ngx_int_t ngx_http_mesh_pool_retry(ngx_peer_connection_t *pc,
    ngx_http_mesh_peer_data_t *pd, ngx_uint_t state);

/* ngx_http_mesh_tls.c */
#if (NGX_HTTP_SSL)
char *ngx_http_mesh_tls_conf_identity(ngx_conf_t *cf,
    ngx_http_mesh_main_conf_t *mmcf);
ngx_int_t ngx_http_mesh_tls_get(ngx_http_mesh_main_conf_t *mmcf,
    const mesh_destination_rule_t *dr, const mesh_tls_t *mt,
    ngx_http_mesh_tls_t **out, ngx_log_t *log);
void ngx_http_mesh_tls_release(ngx_http_mesh_tls_t *tls);
ngx_int_t ngx_http_mesh_tls_conf(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd);
ngx_int_t ngx_http_mesh_tls_connection(ngx_peer_connection_t *pc,
    ngx_http_mesh_peer_data_t *pd);
ngx_int_t ngx_http_mesh_tls_verified(ngx_http_mesh_peer_data_t *pd,
    ngx_connection_t *c);
#endif

/* ngx_http_mesh_route.c */
ngx_int_t ngx_http_mesh_route_init(ngx_conf_t *cf);
ngx_int_t ngx_http_mesh_route_start(ngx_http_request_t *r,
    ngx_http_mesh_peer_data_t *pd);
ngx_int_t ngx_http_mesh_respond(ngx_http_request_t *r, ngx_uint_t status,
    const char *body, size_t len);
ngx_int_t ngx_http_mesh_redirect(ngx_http_request_t *r, mesh_redirect_t *rd);

/* ngx_http_mesh_gateway.c */
char *ngx_http_mesh_gateway(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_mesh_gateway_names(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_array_t **gateways, ngx_int_t *port);
ngx_http_mesh_gw_table_t *ngx_http_mesh_gw_table(
    ngx_http_mesh_main_conf_t *mmcf, ngx_log_t *log);
ngx_uint_t ngx_http_mesh_gw_applies(ngx_http_mesh_main_conf_t *mmcf,
    const mesh_gateway_t *gw);
const char *ngx_http_mesh_gw_host(const char *host, const char *ns);
ngx_int_t ngx_http_mesh_gateway_route(ngx_http_request_t *r,
    ngx_http_mesh_loc_conf_t *mlcf);
void ngx_http_mesh_gw_table_release(ngx_http_mesh_gw_table_t *table);
ngx_int_t ngx_http_mesh_variable_upstream(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_http_mesh_variable_authority(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

/* ngx_http_mesh_status.c */
char *ngx_http_mesh_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* ngx_http_mesh_variables.c */
ngx_int_t ngx_http_mesh_add_variables(ngx_conf_t *cf);


#endif /* _NGX_HTTP_MESH_MODULE_H_INCLUDED_ */
