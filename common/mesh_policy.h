/*
 * mesh_policy: the traffic policies of a snapshot ("policies", normalized
 * by registryd; docs/policies.md, "In the snapshot") as plain C.
 *
 * nginx-free, shared by registryd and the module. Everything a parse
 * allocates hangs off one mesh_policies_t and goes with
 * mesh_policies_free(). Regexes are compiled while parsing, with
 * mesh_regex: a regex registryd accepts is one the module reads the same
 * way, and the other way round.
 */

#ifndef MESH_POLICY_H
#define MESH_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "mesh_locality.h"
#include "mesh_snapshot.h"

enum {
    MESH_MATCH_EXACT = 0,
    MESH_MATCH_PREFIX,
    MESH_MATCH_REGEX
};

enum {
    MESH_LB_NONE = 0,               /* not set: mesh_balancer decides */
    MESH_LB_ROUND_ROBIN,
    MESH_LB_RANDOM,
    MESH_LB_LEAST_REQUEST,
    MESH_LB_HASH_HEADER,            /* hash_name: lowercase header name */
    MESH_LB_HASH_QUERY,             /* hash_name: query argument */
    MESH_LB_HASH_COOKIE,            /* hash_name: cookie name */
    MESH_LB_HASH_SOURCE_IP
};

#define MESH_RETRY_5XX              0x01
#define MESH_RETRY_GATEWAY_ERROR    0x02
#define MESH_RETRY_CONNECT_FAILURE  0x04
#define MESH_RETRY_RESET            0x08

/* the retryOn conditions nginx can honour, {NULL, 0} last; no
 * retriable-4xx: nginx cannot retry on a 409 */
typedef struct {
    const char  *name;
    unsigned     bit;
} mesh_retry_on_t;

extern const mesh_retry_on_t  mesh_retry_on[];

typedef struct {
    int           kind;             /* MESH_MATCH_* */
    const char   *value;            /* NUL-terminated */
    size_t        len;
    void         *regex;            /* mesh_regex_t, compiled by the
                                       parse */
    int           ignore_case;      /* exact and prefix compare ASCII
                                       letters in any case (a uri with
                                       ignoreUriCase); not a regex */
} mesh_string_match_t;

typedef struct {
    const char           *name;     /* lowercase */
    size_t                name_len;
    mesh_string_match_t   match;
} mesh_header_match_t;

/* an item of match[]: all of its conditions must hold */
typedef struct {
    mesh_string_match_t  *uri;      /* NULL: any */
    mesh_header_match_t  *headers;
    size_t                nheaders;
    mesh_label_t         *source_labels;    /* sorted by key: all must be
                                               the client workload's (the
                                               nginx's mesh_labels) */
    size_t                nsource_labels;
} mesh_match_t;

/* one header operation: set (replace) or add a value, or remove */
typedef struct {
    const char   *name;             /* lowercase */
    size_t        name_len;
    const char   *value;            /* NULL for a removal */
    size_t        value_len;
} mesh_header_op_t;

typedef struct {
    mesh_header_op_t  *set;         /* replace every value, or add */
    size_t             nset;
    mesh_header_op_t  *add;         /* add one more value */
    size_t             nadd;
    mesh_header_op_t  *remove;      /* name only */
    size_t             nremove;
} mesh_header_ops_t;

/* Istio's Headers: on the request sent upstream, on the response sent
 * back */
typedef struct {
    mesh_header_ops_t  request;
    mesh_header_ops_t  response;
} mesh_headers_t;

/* fault injection; ppm: requests per million it applies to */
typedef struct {
    int64_t       delay;            /* ms, -1: no delay */
    uint32_t      delay_ppm;
    int           abort_status;     /* 0: no abort */
    uint32_t      abort_ppm;
} mesh_fault_t;

typedef struct {
    const char   *uri;              /* NULL: not rewritten; else the
                                       matched prefix (or the whole path
                                       when the match was not a prefix)
                                       replaced by it */
    const char   *authority;        /* NULL: not rewritten */
} mesh_rewrite_t;

/* a route answered with a redirect, not sent upstream */
typedef struct {
    const char   *uri;              /* NULL: the request's path */
    const char   *authority;        /* NULL: the request's */
    const char   *scheme;           /* NULL: the request's */
    int           port;             /* 0: the request's */
    int           code;             /* 301 when not given */
} mesh_redirect_t;

/* a route answered by nginx itself */
typedef struct {
    int           status;
    const char   *body;             /* NULL: none */
    size_t        body_len;
} mesh_direct_response_t;

/*
 * corsPolicy, as Envoy's CORS filter reads it from Istio: an origin is
 * allowed when an item matches it, or matches the string "*"; the lists
 * are joined with "," as Istio joins them, NULL when none
 */
typedef struct {
    mesh_string_match_t  *origins;
    size_t                norigins;
    const char           *allow_methods;
    const char           *allow_headers;
    const char           *expose_headers;
    int64_t               max_age;          /* seconds, -1: not sent */
    int                   allow_credentials;
    int                   forward_unmatched; /* a preflight from an origin
                                               not allowed goes upstream;
                                               0: nginx answers it */
} mesh_cors_t;

typedef struct {
    const char     *subset;         /* NULL: the whole service */
    int             weight;         /* 0..100 */
    const char     *host;           /* destination.host */
    int             port;           /* destination.port.number, 0: none */
    mesh_headers_t  headers;        /* route[].headers */
} mesh_destination_t;

/* a copy of the request sent to another destination, its answer
 * dropped (mirrors[]) */
typedef struct {
    const char     *host;
    const char     *subset;         /* NULL: the whole service */
    int             port;           /* 0: none given */
    uint32_t        ppm;            /* requests per million mirrored */
} mesh_mirror_t;

typedef struct {
    const char          *name;      /* NULL when unnamed */
    mesh_match_t        *matches;   /* any item fits; none: every request */
    size_t               nmatches;
    mesh_destination_t  *routes;
    size_t               nroutes;
    int                  attempts;          /* -1: not set */
    int64_t              per_try_timeout;   /* ms, -1: not set */
    unsigned             retry_on;          /* MESH_RETRY_*, 0: not set */
    int64_t              timeout;           /* ms, -1: not set */

    mesh_fault_t         fault;             /* delay -1, abort 0: none */
    mesh_rewrite_t       rewrite;
    mesh_headers_t       headers;           /* http[].headers */
    /* a route with one of these has no destinations (nroutes 0) */
    mesh_redirect_t         *redirect;      /* NULL: none */
    mesh_direct_response_t  *direct;        /* NULL: none */
    mesh_cors_t             *cors;          /* NULL: no corsPolicy */
    mesh_mirror_t           *mirrors;
    size_t                   nmirrors;
} mesh_http_route_t;

/*
 * connectionPool.tcp.tcpKeepalive as the kernel takes it: whole seconds
 * (TCP_KEEPIDLE, TCP_KEEPINTVL up to 32767) and at most 127 probes
 * (TCP_KEEPCNT); registryd and the reader hold the policy to these
 */
#define MESH_KEEPALIVE_MAX_MS       (32767 * 1000)
#define MESH_KEEPALIVE_PROBES_MAX   127

/* trafficPolicy.tls: how nginx speaks TLS to the instances */
enum {
    MESH_TLS_NONE = 0,              /* not set: the location decides */
    MESH_TLS_DISABLE,
    MESH_TLS_SIMPLE,
    MESH_TLS_MUTUAL,
    MESH_TLS_ISTIO_MUTUAL
};

typedef struct {
    int           mode;                     /* MESH_TLS_* */
    const char   *client_certificate;       /* absolute paths, or NULL */
    const char   *private_key;
    const char   *ca_certificates;
    const char   *ca_crl;
    const char   *sni;
    const char  **subject_alt_names;        /* any of them will do */
    size_t        nsubject_alt_names;
    int           insecure_skip_verify;
} mesh_tls_t;

typedef struct {
    int           lb;                       /* MESH_LB_* */
    const char   *hash_name;
    int64_t       cookie_ttl;               /* httpCookie.ttl, ms; -1: no
                                               cookie is issued */
    const char   *cookie_path;              /* httpCookie.path, or NULL */
    int           max_connections;          /* 0: no cap */

    /* loadBalancer.localityLbSetting (NULL: none) and
     * warmupDurationSecs (ms, -1: none) */
    const mesh_locality_lb_t  *locality;
    int64_t       warmup;

    /* the rest of connectionPool, -1 where not set */
    int64_t       connect_timeout;          /* ms */
    int           tcp_keepalive;            /* 1: tcpKeepalive given */
    int64_t       keepalive_time;           /* ms, the kernel's if not set */
    int64_t       keepalive_interval;       /* ms */
    int           keepalive_probes;
    int           http1_max_pending;        /* accepted: nginx queues none */
    int           http2_max_requests;       /* in flight to the service */
    int           max_requests_per_conn;    /* 0: no limit (Istio's) */
    int           max_retries;              /* retries in flight */
    int64_t       idle_timeout;             /* ms */

    /* outlierDetection, -1 where not set */
    int           consecutive_5xx;
    int           consecutive_gateway;
    int           consecutive_local_origin;
    int64_t       interval;                 /* ms */
    int64_t       base_ejection_time;       /* ms */
    int           max_ejection_percent;
    int           min_health_percent;
    int           split_local_origin;       /* 0/1, -1 */

    mesh_tls_t    tls;                      /* a subset's replaces the
                                               rule's as a whole */
} mesh_traffic_policy_t;

/*
 * A trafficPolicy's portLevelSettings entry, or what it makes of a
 * subset's policy: the policy of an upstream that stands for this
 * service port (mesh SERVICE port=N)
 */
typedef struct {
    int                     port;           /* 1..65535 */
    mesh_traffic_policy_t   policy;
} mesh_port_policy_t;

typedef struct {
    const char             *name;
    mesh_label_t           *labels;         /* all must be on an instance */
    size_t                  nlabels;
    /* the subset's own trafficPolicy, each field not set there taken
     * from the rule's (Istio's precedence) */
    mesh_traffic_policy_t   policy;
    /* for each port the rule's or the subset's portLevelSettings name:
     * the subset's own entry for it (or its trafficPolicy), each field
     * not set there taken from the rule's policy for the port */
    mesh_port_policy_t     *ports;
    size_t                  nports;
} mesh_subset_t;

typedef struct {
    const char             *policy;         /* the PUT name */
    const char             *name;           /* metadata.name */
    const char             *host;
    mesh_traffic_policy_t   traffic;        /* the rule's trafficPolicy */
    mesh_port_policy_t     *ports;          /* its portLevelSettings: each
                                               in place of traffic, nothing
                                               inherited from it (Istio) */
    size_t                  nports;
    mesh_subset_t          *subsets;
    size_t                  nsubsets;
    mesh_label_t           *selector;       /* workloadSelector.matchLabels:
                                               the rule applies to an nginx
                                               whose mesh_labels hold them
                                               all; none: to every nginx */
    size_t                  nselector;
} mesh_destination_rule_t;

/* a tcp[] route: for connections to one of ports (none: any port), the
 * weighted destinations */
typedef struct {
    int                    *ports;
    size_t                  nports;
    mesh_destination_t     *routes;
    size_t                  nroutes;
} mesh_tcp_route_t;

/* a tls[] route's match item: a connection whose SNI one of sni takes
 * (host patterns), to port (0: any) */
typedef struct {
    const char            **sni;
    size_t                  nsni;
    int                     port;
} mesh_tls_match_t;

/* a tls[] route: for TLS connections any of matches takes, the weighted
 * destinations (the TLS goes through, nginx does not terminate it) */
typedef struct {
    mesh_tls_match_t       *matches;
    size_t                  nmatches;
    mesh_destination_t     *routes;
    size_t                  nroutes;
} mesh_tls_route_t;

typedef struct {
    const char             *policy;
    const char             *name;
    const char            **hosts;          /* for the mesh: services, or
                                               "*" / "*.SUFFIX" patterns;
                                               at a gateway: the requests'
                                               Host */
    size_t                  nhosts;
    mesh_http_route_t      *http;
    size_t                  nhttp;
    const char            **gateways;       /* "mesh", "NS/NAME"; none:
                                               the mesh alone */
    size_t                  ngateways;
    int                     mesh;           /* bound to the mesh */
    const char             *ns;             /* its namespace, with
                                               gateways (else NULL) */
    mesh_tcp_route_t       *tcp;
    size_t                  ntcp;
    mesh_tls_route_t       *tls;
    size_t                  ntls;
} mesh_virtual_service_t;

#define MESH_GW_HTTP  0
#define MESH_GW_TCP   1
#define MESH_GW_TLS   2                     /* TLS passed through, by SNI */

/* a Gateway's server: requests on this port (over TLS for HTTPS) to
 * these hosts; or, for a stream server, connections to this port (TLS:
 * whose SNI one of the hosts takes) */
typedef struct {
    int                     port;
    int                     stream;         /* MESH_GW_HTTP, _TCP, _TLS */
    int                     https;          /* protocol HTTPS */
    int                     https_redirect; /* an HTTP server answering
                                               301 to https:// */
    const char            **hosts;          /* "HOST" (a pattern), or
                                               "NS/HOST": the
                                               VirtualServices of NS
                                               only */
    size_t                  nhosts;
} mesh_gateway_server_t;

typedef struct {
    const char             *policy;
    const char             *name;
    const char             *gateway;        /* "NS/NAME" */
    mesh_label_t           *selector;       /* sorted by key; none: any */
    size_t                  nselector;
    mesh_gateway_server_t  *servers;
    size_t                  nservers;
} mesh_gateway_t;

typedef struct {
    mesh_destination_rule_t  *rules;
    size_t                    nrules;
    mesh_virtual_service_t   *vss;
    size_t                    nvss;
    mesh_gateway_t           *gateways;
    size_t                    ngateways;
    void                     *arena;        /* internal */
    void                     *regexes;      /* internal */
    size_t                    nregexes;
} mesh_policies_t;

/*
 * Parse the snapshot's "policies" array (mesh_snapshot_t.policies). NULL
 * on error with a one-line reason. Unknown keys are ignored (registryd is
 * the validator; a newer one may add keys); wrong types, unknown enum
 * values (simple, retryOn, match kinds) and missing required keys are
 * errors.
 */
mesh_policies_t *mesh_policies_parse(const char *json, size_t len,
    char *err, size_t errlen);
void mesh_policies_free(mesh_policies_t *p);

/*
 * The model packed into one block of offsets (for the shared zone):
 * mesh_policies_pack() with buf NULL says how many bytes; with a buf of
 * that size it writes them and returns the same. mesh_policies_unpack()
 * puts the pointers back into a copy of the block (8-byte aligned, which
 * the model then lives in: free it after mesh_policies_free()), checks
 * that every one lands inside it and compiles the regexes. NULL with err
 * on a damaged block.
 */
size_t mesh_policies_pack(const mesh_policies_t *p, void *buf, size_t size);
mesh_policies_t *mesh_policies_unpack(void *buf, size_t size, char *err,
    size_t errlen);

/*
 * The rule / the mesh's virtual service for a registry service: the one
 * for its name, else the one whose wildcard host matches it most
 * specifically ("*.SUFFIX" by the longest suffix, then "*"), as Istio
 * picks; NULL: none. A VirtualService bound to gateways alone is not the
 * mesh's.
 */
const mesh_destination_rule_t *mesh_policies_rule(const mesh_policies_t *p,
    const char *host, size_t len);
const mesh_virtual_service_t *mesh_policies_vs(const mesh_policies_t *p,
    const char *host, size_t len);

/* the Gateway "NS/NAME" (len bytes); NULL: none */
const mesh_gateway_t *mesh_policies_gateway(const mesh_policies_t *p,
    const char *name, size_t len);

/* 1 when the virtual service is bound to gateway "NS/NAME" */
int mesh_vs_at_gateway(const mesh_virtual_service_t *vs, const char *name);

/*
 * mesh_tcp_route_fits(): 1 when a tcp route takes a connection to port (a
 * match item names it, or there is none). mesh_tls_route_match(): how
 * specifically a tls route takes a connection to port whose ClientHello
 * names sni (len bytes, any case), as mesh_host_match() ranks, over the
 * sniHosts of its match items whose port, if given, is that one; -1:
 * not at all. Envoy takes the filter chain of the most specific server
 * name: the caller takes the route of the highest rank.
 */
int mesh_tcp_route_fits(const mesh_tcp_route_t *r, int port);
int mesh_tls_route_match(const mesh_tls_route_t *r, int port,
    const char *sni, size_t len);
const mesh_subset_t *mesh_rule_subset(const mesh_destination_rule_t *dr,
    const char *name);

/* 1 when the instance carries every label of the subset */
/*
 * The policy of the rule (subset NULL) or of one of its subsets for an
 * upstream that stands for service port "port" (0: none said): the
 * portLevelSettings entry for that port, or the trafficPolicy.
 */
const mesh_traffic_policy_t *mesh_rule_traffic(
    const mesh_destination_rule_t *dr, const mesh_subset_t *subset,
    int port);

int mesh_instance_in_subset(const mesh_instance_t *in,
    const mesh_subset_t *s);

/* 1 when have (sorted by key) holds every pair of want */
int mesh_labels_hold(const mesh_label_t *have, size_t nhave,
    const mesh_label_t *want, size_t nwant);

/* 1 when s (len bytes) satisfies m; a regex matches with mesh_regex, or
 * with re_match(m->regex, s, len) when given (tests), which returns 1 for
 * a match of the whole value */
typedef int (*mesh_regex_match_pt)(void *regex, const char *s, size_t len);

int mesh_string_match(const mesh_string_match_t *m, const char *s,
    size_t len, mesh_regex_match_pt re_match);

/* 1 when corsPolicy allows the origin (len bytes), as Envoy decides */
int mesh_cors_origin_allowed(const mesh_cors_t *cors, const char *origin,
    size_t len, mesh_regex_match_pt re_match);

/* a destination index by weight for a uniform r (0..99 picks within the
 * weights' sum); -1 when every weight is 0 */
int mesh_route_pick(const mesh_http_route_t *route, uint32_t r);
int mesh_destination_pick(const mesh_destination_t *d, size_t n,
    uint32_t r);

#endif
