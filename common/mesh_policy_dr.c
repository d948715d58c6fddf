/*
 * mesh_policy_dr: a DestinationRule read into the model (host,
 * trafficPolicy: loadBalancer, outlierDetection, connectionPool, tls;
 * subsets).
 */

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_json.h"
#include "mesh_name.h"
#include "mesh_policy.h"
#include "mesh_policy_int.h"
#include "mesh_regex.h"


enum {
    MESH_DR_POLICY = 0,
    MESH_DR_KIND,
    MESH_DR_NAME,
    MESH_DR_HOST,
    MESH_DR_TRAFFIC,
    MESH_DR_SUBSETS,
    MESH_DR_SELECTOR
};

static const char *const  mesh_dr_keys[] = {
    "policy", "kind", "name", "host", "trafficPolicy", "subsets",
    "workloadSelector", NULL
};


enum {
    MESH_TP_LB = 0,
    MESH_TP_OUTLIER,
    MESH_TP_POOL,
    MESH_TP_PORTS,
    MESH_TP_TLS
};

static const char *const  mesh_tp_keys[] = {
    "loadBalancer", "outlierDetection", "connectionPool",
    "portLevelSettings", "tls", NULL
};

enum {
    MESH_PT_PORT = 0,
    MESH_PT_LB,
    MESH_PT_OUTLIER,
    MESH_PT_POOL,
    MESH_PT_TLS
};

static const char *const  mesh_pt_keys[] = {
    "port", "loadBalancer", "outlierDetection", "connectionPool", "tls",
    NULL
};


enum {
    MESH_LB_K_SIMPLE = 0,
    MESH_LB_K_CHASH,
    MESH_LB_K_LOCALITY,
    MESH_LB_K_WARMUP
};

static const char *const  mesh_lb_keys[] = {
    "simple", "consistentHash", "localityLbSetting", "warmupDurationMs", NULL
};


enum {
    MESH_LL_ENABLED = 0,
    MESH_LL_DISTRIBUTE,
    MESH_LL_FAILOVER,
    MESH_LL_PRIORITY
};

static const char *const  mesh_ll_keys[] = {
    "enabled", "distribute", "failover", "failoverPriority", NULL
};


enum {
    MESH_CH_HEADER = 0,
    MESH_CH_QUERY,
    MESH_CH_COOKIE,
    MESH_CH_SOURCE_IP
};

static const char *const  mesh_ch_keys[] = {
    "httpHeaderName", "httpQueryParameterName", "httpCookie", "useSourceIp",
    NULL
};


enum {
    MESH_CK_NAME = 0,
    MESH_CK_TTL,
    MESH_CK_PATH
};

static const char *const  mesh_ck_keys[] = {
    "name", "ttlMs", "path", NULL
};


enum {
    MESH_OD_5XX = 0,
    MESH_OD_GATEWAY,
    MESH_OD_LOCAL_ORIGIN,
    MESH_OD_INTERVAL,
    MESH_OD_EJECTION,
    MESH_OD_MAX_EJECTION,
    MESH_OD_MIN_HEALTH,
    MESH_OD_SPLIT
};

static const char *const  mesh_od_keys[] = {
    "consecutive5xxErrors", "consecutiveGatewayErrors",
    "consecutiveLocalOriginFailures", "intervalMs", "baseEjectionTimeMs",
    "maxEjectionPercent", "minHealthPercent",
    "splitExternalLocalOriginErrors", NULL
};


enum {
    MESH_POOL_TCP = 0,
    MESH_POOL_HTTP
};

static const char *const  mesh_pool_keys[] = { "tcp", "http", NULL };


enum {
    MESH_TCP_MAX_CONNS = 0,
    MESH_TCP_CONNECT_TIMEOUT,
    MESH_TCP_KEEPALIVE
};

static const char *const  mesh_tcp_keys[] = {
    "maxConnections", "connectTimeoutMs", "tcpKeepalive", NULL
};


enum {
    MESH_KA_TIME = 0,
    MESH_KA_INTERVAL,
    MESH_KA_PROBES
};

static const char *const  mesh_ka_keys[] = {
    "timeMs", "intervalMs", "probes", NULL
};


enum {
    MESH_HTTP_PENDING = 0,
    MESH_HTTP_MAX_REQUESTS,
    MESH_HTTP_PER_CONN,
    MESH_HTTP_RETRIES,
    MESH_HTTP_IDLE
};

static const char *const  mesh_http_keys[] = {
    "http1MaxPendingRequests", "http2MaxRequests",
    "maxRequestsPerConnection", "maxRetries", "idleTimeoutMs", NULL
};


enum {
    MESH_TLS_K_MODE = 0,
    MESH_TLS_K_CERT,
    MESH_TLS_K_KEY,
    MESH_TLS_K_CA,
    MESH_TLS_K_CRL,
    MESH_TLS_K_SNI,
    MESH_TLS_K_SANS,
    MESH_TLS_K_INSECURE
};

static const char *const  mesh_tls_keys[] = {
    "mode", "clientCertificate", "privateKey", "caCertificates", "caCrl",
    "sni", "subjectAltNames", "insecureSkipVerify", NULL
};

static const char *const  mesh_tls_modes[] = {
    "", "DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL", NULL
};


enum {
    MESH_SS_NAME = 0,
    MESH_SS_LABELS,
    MESH_SS_TRAFFIC
};

static const char *const  mesh_ss_keys[] = {
    "name", "labels", "trafficPolicy", NULL
};


static int mesh_policy_traffic(mesh_json_t *j, mesh_traffic_policy_t *tp,
    mesh_port_policy_t **ports, size_t *nports);
static int mesh_policy_port(mesh_json_t *j, void *elt);
static int mesh_policy_subset_ports(mesh_json_t *j,
    const mesh_destination_rule_t *dr, mesh_subset_t *ss);
static int mesh_policy_lb(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_chash(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_locality(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_distribute(mesh_json_t *j, void *elt);
static int mesh_policy_failover(mesh_json_t *j, void *elt);
static int mesh_policy_priority_key(mesh_json_t *j, void *elt);
static int mesh_policy_cookie(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_outlier(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_pool(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_tcp(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_keepalive(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_http(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_tls(mesh_json_t *j, mesh_tls_t *tls);
static int mesh_policy_tls_path(mesh_json_t *j, const char *what,
    const char **path);
static int mesh_policy_sans(mesh_json_t *j, mesh_tls_t *tls);
static void mesh_policy_traffic_init(mesh_traffic_policy_t *tp);
static void mesh_policy_inherit(mesh_traffic_policy_t *tp,
    const mesh_traffic_policy_t *from);
static int mesh_policy_subset(mesh_json_t *j, void *elt);
static int mesh_policy_selector(mesh_json_t *j, mesh_destination_rule_t *dr);

int
mesh_policy_rule(mesh_json_t *j, mesh_destination_rule_t *dr)
{
    int                   rc, k;
    size_t                n, i, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(dr, 0, sizeof(mesh_destination_rule_t));
    mesh_policy_traffic_init(&dr->traffic);

    start = j->pos;

    if (mesh_policy_open(j, '{', "a DestinationRule") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_dr_keys, key, klen, &seen);

        switch (k) {

        case MESH_DR_POLICY:
            dr->policy = mesh_policy_name(j, "\"policy\"");
            if (dr->policy == NULL) {
                return -1;
            }

            break;

        case MESH_DR_NAME:
            dr->name = mesh_policy_name(j, "\"name\"");
            if (dr->name == NULL) {
                return -1;
            }

            break;

        case MESH_DR_HOST:
            dr->host = mesh_policy_name(j, "\"host\"");
            if (dr->host == NULL) {
                return -1;
            }

            break;

        case MESH_DR_TRAFFIC:
            if (mesh_policy_traffic(j, &dr->traffic, &dr->ports,
                                    &dr->nports)
                != 0)
            {
                return -1;
            }

            break;

        case MESH_DR_SUBSETS:
            dr->subsets = mesh_policy_list(j, "\"subsets\"",
                                           sizeof(mesh_subset_t),
                                           mesh_policy_subset, &dr->nsubsets);
            if (j->failed) {
                return -1;
            }

            break;

        case MESH_DR_SELECTOR:
            if (mesh_policy_selector(j, dr) != 0) {
                return -1;
            }

            break;

        case -2:
            return -1;

        default:                    /* "kind", checked already; unknown */
            if (mesh_json_skip(j, 2) != 0) {
                return -1;
            }
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_DR_POLICY)
        || !mesh_policy_has(seen, MESH_DR_NAME)
        || !mesh_policy_has(seen, MESH_DR_HOST)
        || !mesh_policy_has(seen, MESH_DR_SUBSETS))
    {
        mesh_json_error(j, start, "a DestinationRule without \"%s\"",
                        !mesh_policy_has(seen, MESH_DR_POLICY) ? "policy"
                        : !mesh_policy_has(seen, MESH_DR_NAME) ? "name"
                        : !mesh_policy_has(seen, MESH_DR_HOST) ? "host"
                        : "subsets");
        return -1;
    }

    /* Istio's precedence: the subset's fields, then the rule's (for a
     * port: the subset's entry for it, then the rule's for it) */

    for (i = 0; i < dr->nsubsets; i++) {
        if (mesh_policy_subset_ports(j, dr, &dr->subsets[i]) != 0) {
            return -1;
        }

        mesh_policy_inherit(&dr->subsets[i].policy, &dr->traffic);
    }

    return 0;
}


/* trafficPolicy */

static int
mesh_policy_traffic(mesh_json_t *j, mesh_traffic_policy_t *tp,
    mesh_port_policy_t **ports, size_t *nports)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "\"trafficPolicy\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_tp_keys, key, klen, &seen);

        switch (k) {

        case MESH_TP_LB:
            rc = mesh_policy_lb(j, tp);
            break;

        case MESH_TP_OUTLIER:
            rc = mesh_policy_outlier(j, tp);
            break;

        case MESH_TP_POOL:
            rc = mesh_policy_pool(j, tp);
            break;

        case MESH_TP_PORTS:
            *ports = mesh_policy_list(j, "\"portLevelSettings\"",
                                      sizeof(mesh_port_policy_t),
                                      mesh_policy_port, nports);
            rc = j->failed ? -1 : 0;
            break;

        case MESH_TP_TLS:
            rc = mesh_policy_tls(j, &tp->tls);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 4);
        }

        if (rc != 0) {
            return -1;
        }
    }

    return rc == 0 ? 0 : -1;
}


/* a portLevelSettings entry: {"port": N, the groups it gives} */

static int
mesh_policy_port(mesh_json_t *j, void *elt)
{
    mesh_port_policy_t  *pp = elt;

    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(pp, 0, sizeof(mesh_port_policy_t));
    mesh_policy_traffic_init(&pp->policy);

    start = j->pos;

    if (mesh_policy_open(j, '{', "a \"portLevelSettings\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_pt_keys, key, klen, &seen);

        switch (k) {

        case MESH_PT_PORT:
            rc = mesh_policy_int(j, "\"port\"", 1, 65535, &pp->port);
            break;

        case MESH_PT_LB:
            rc = mesh_policy_lb(j, &pp->policy);
            break;

        case MESH_PT_OUTLIER:
            rc = mesh_policy_outlier(j, &pp->policy);
            break;

        case MESH_PT_POOL:
            rc = mesh_policy_pool(j, &pp->policy);
            break;

        case MESH_PT_TLS:
            rc = mesh_policy_tls(j, &pp->policy.tls);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 4);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_PT_PORT)) {
        mesh_json_error(j, start, "a \"portLevelSettings\" item without "
                        "\"port\"");
        return -1;
    }

    return 0;
}


/*
 * A subset's policy for each port the rule or the subset names: the
 * subset's entry for the port (or its own trafficPolicy, as read), each
 * field it leaves unset taken from the rule's policy for the port (its
 * entry, or its trafficPolicy). Before the subset's own inherits.
 */

static int
mesh_policy_subset_ports(mesh_json_t *j, const mesh_destination_rule_t *dr,
    mesh_subset_t *ss)
{
    size_t                        i, k, n;
    mesh_port_policy_t           *v;
    const mesh_traffic_policy_t  *base;

    n = dr->nports + ss->nports;
    if (n == 0) {
        return 0;
    }

    v = mesh_arena_alloc(j->arena, n * sizeof(mesh_port_policy_t));
    if (v == NULL) {
        mesh_json_error(j, j->pos, "out of memory");
        return -1;
    }

    /* the subset's own entries first, then the rule's ports they lack */

    for (i = 0; i < ss->nports; i++) {
        v[i] = ss->ports[i];
    }

    n = ss->nports;

    for (i = 0; i < dr->nports; i++) {
        for (k = 0; k < ss->nports; k++) {
            if (ss->ports[k].port == dr->ports[i].port) {
                break;
            }
        }

        if (k == ss->nports) {
            v[n].port = dr->ports[i].port;
            v[n].policy = ss->policy;
            n++;
        }
    }

    for (i = 0; i < n; i++) {
        base = mesh_rule_traffic(dr, NULL, v[i].port);
        mesh_policy_inherit(&v[i].policy, base);
    }

    ss->ports = v;
    ss->nports = n;

    return 0;
}


static int
mesh_policy_lb(mesh_json_t *j, mesh_traffic_policy_t *tp)
{
    int                   rc, k;
    char                 *simple;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start, *at;

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"loadBalancer\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_lb_keys, key, klen, &seen);

        if ((k == MESH_LB_K_SIMPLE || k == MESH_LB_K_CHASH)
            && (seen & ~(1u << k)
                & ((1u << MESH_LB_K_SIMPLE) | (1u << MESH_LB_K_CHASH))))
        {
            mesh_json_error(j, j->key_at, "\"loadBalancer\" holds both "
                            "\"simple\" and \"consistentHash\"");
            return -1;
        }

        switch (k) {

        case MESH_LB_K_SIMPLE:
            at = j->pos;

            simple = mesh_json_cstr(j, "\"simple\"");
            if (simple == NULL) {
                return -1;
            }

            if (strcmp(simple, "ROUND_ROBIN") == 0) {
                tp->lb = MESH_LB_ROUND_ROBIN;

            } else if (strcmp(simple, "RANDOM") == 0) {
                tp->lb = MESH_LB_RANDOM;

            } else if (strcmp(simple, "LEAST_REQUEST") == 0
                       || strcmp(simple, "LEAST_CONN") == 0)
            {
                tp->lb = MESH_LB_LEAST_REQUEST;

            } else {
                mesh_json_error(j, at, "unknown \"simple\" \"%.64s\"",
                                simple);
                return -1;
            }

            break;

        case MESH_LB_K_CHASH:
            if (mesh_policy_chash(j, tp) != 0) {
                return -1;
            }

            break;

        case MESH_LB_K_LOCALITY:
            if (mesh_policy_locality(j, tp) != 0) {
                return -1;
            }

            break;

        case MESH_LB_K_WARMUP:
            if (mesh_policy_ms(j, "warmupDurationMs", 1, &tp->warmup)
                != 0)
            {
                return -1;
            }

            break;

        case -2:
            return -1;

        default:
            if (mesh_json_skip(j, 5) != 0) {
                return -1;
            }
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (seen == 0) {
        mesh_json_error(j, start, "\"loadBalancer\" without \"simple\", "
                        "\"consistentHash\", \"localityLbSetting\" or "
                        "\"warmupDurationMs\"");
        return -1;
    }

    return 0;
}


static int
mesh_policy_chash(mesh_json_t *j, mesh_traffic_policy_t *tp)
{
    int                   rc, k, on;
    char                 *name, *c;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start, *at;

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"consistentHash\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_ch_keys, key, klen, &seen);

        if (k >= 0 && (seen & ~(1u << k))) {
            mesh_json_error(j, j->key_at,
                            "\"consistentHash\" holds more than one key kind");
            return -1;
        }

        at = j->pos;

        switch (k) {

        case MESH_CH_HEADER:
            name = mesh_policy_name(j, "\"httpHeaderName\"");
            if (name == NULL) {
                return -1;
            }

            /* registryd sends it lowercase; nginx compares it so */

            for (c = name; *c; c++) {
                if (*c >= 'A' && *c <= 'Z') {
                    *c = (char) (*c - 'A' + 'a');
                }
            }

            tp->lb = MESH_LB_HASH_HEADER;
            tp->hash_name = name;
            break;

        case MESH_CH_QUERY:
            tp->hash_name = mesh_policy_name(j, "\"httpQueryParameterName\"");
            if (tp->hash_name == NULL) {
                return -1;
            }

            tp->lb = MESH_LB_HASH_QUERY;
            break;

        case MESH_CH_COOKIE:
            if (mesh_policy_cookie(j, tp) != 0) {
                return -1;
            }

            tp->lb = MESH_LB_HASH_COOKIE;
            break;

        case MESH_CH_SOURCE_IP:
            if (mesh_policy_bool(j, "useSourceIp", &on) != 0) {
                return -1;
            }

            if (!on) {
                mesh_json_error(j, at, "\"useSourceIp\" must be true");
                return -1;
            }

            tp->lb = MESH_LB_HASH_SOURCE_IP;
            tp->hash_name = NULL;
            break;

        case -2:
            return -1;

        default:
            if (mesh_json_skip(j, 6) != 0) {
                return -1;
            }
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (seen == 0) {
        mesh_json_error(j, start, "\"consistentHash\" without a key");
        return -1;
    }

    return 0;
}


/* with ttlMs, a request without the cookie is given one (the module) */

/*
 * localityLbSetting: {"enabled": B, "distribute": [{"from": P, "to": {P: W}}],
 * "failover": [{"from": R, "to": R}], "failoverPriority": [KEY]}
 */
static int
mesh_policy_locality(mesh_json_t *j, mesh_traffic_policy_t *tp)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    mesh_locality_lb_t   *lb;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "\"localityLbSetting\"") != 0) {
        return -1;
    }

    lb = mesh_arena_alloc(j->arena, sizeof(mesh_locality_lb_t));
    if (lb == NULL) {
        mesh_json_error(j, j->pos, "out of memory");
        return -1;
    }

    memset(lb, 0, sizeof(mesh_locality_lb_t));
    lb->enabled = 1;

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_ll_keys, key, klen, &seen);

        switch (k) {

        case MESH_LL_ENABLED:
            rc = mesh_policy_bool(j, "enabled", &lb->enabled);
            break;

        case MESH_LL_DISTRIBUTE:
            lb->distribute = mesh_policy_list(j, "\"distribute\"",
                                              sizeof(mesh_locality_distribute_t),
                                              mesh_policy_distribute,
                                              &lb->ndistribute);
            rc = j->failed ? -1 : 0;
            break;

        case MESH_LL_FAILOVER:
            lb->failover = mesh_policy_list(j, "\"failover\"",
                                            sizeof(mesh_locality_failover_t),
                                            mesh_policy_failover,
                                            &lb->nfailover);
            rc = j->failed ? -1 : 0;
            break;

        case MESH_LL_PRIORITY:
            lb->priority = mesh_policy_list(j, "\"failoverPriority\"",
                                            sizeof(char *),
                                            mesh_policy_priority_key,
                                            &lb->npriority);
            rc = j->failed ? -1 : 0;
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 5);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    tp->locality = lb;

    return 0;
}


/* a locality pattern, as registryd checked it */

static char *
mesh_policy_pattern(mesh_json_t *j, const char *what)
{
    char                 *s;
    const unsigned char  *at;

    at = j->pos;

    s = mesh_json_cstr(j, what);
    if (s == NULL) {
        return NULL;
    }

    if (!mesh_locality_pattern_valid(s, strlen(s))) {
        mesh_json_error(j, at, "%s \"%.64s\" is not a locality", what, s);
        return NULL;
    }

    return s;
}


static int
mesh_policy_distribute(mesh_json_t *j, void *elt)
{
    mesh_locality_distribute_t  *d = elt;

    int                      rc, k;
    char                    *loc;
    size_t                   n, klen, i, total;
    unsigned                 seen;
    mesh_vec_t               v;
    mesh_locality_weight_t  *w;
    const unsigned char     *key, *start;

    static const char *const  keys[] = { "from", "to", NULL };

    memset(d, 0, sizeof(mesh_locality_distribute_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a \"distribute\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, keys, key, klen, &seen);

        if (k == 0) {
            d->from = mesh_policy_pattern(j, "\"from\"");
            rc = d->from ? 0 : -1;

        } else if (k == 1) {
            if (mesh_policy_open(j, '{', "\"to\"") != 0) {
                return -1;
            }

            memset(&v, 0, sizeof(mesh_vec_t));
            v.size = sizeof(mesh_locality_weight_t);
            i = 0;

            while ((rc = mesh_json_next_member(j, &i, &key, &klen)) == 1) {
                loc = mesh_arena_alloc(j->arena, klen + 1);
                w = loc ? mesh_vec_push(j, &v) : NULL;

                if (w == NULL) {
                    mesh_json_error(j, j->key_at, "out of memory");
                    rc = -1;
                    break;
                }

                memcpy(loc, key, klen);
                loc[klen] = '\0';

                if (strlen(loc) != klen
                    || !mesh_locality_pattern_valid(loc, klen))
                {
                    mesh_json_error(j, j->key_at, "\"to\" key \"%.64s\" is "
                                    "not a locality", loc);
                    rc = -1;
                    break;
                }

                w->locality = loc;

                if (mesh_policy_int(j, "to", 1, 100, &w->weight) != 0) {
                    rc = -1;
                    break;
                }
            }

            if (rc == 0) {
                d->nto = v.nelts;
                d->to = mesh_policy_copy(j, &v);

                if (v.nelts && d->to == NULL) {
                    rc = -1;
                }
            }

            free(v.elts);

        } else if (k == -2) {
            return -1;

        } else {
            rc = mesh_json_skip(j, 6);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    total = 0;

    for (i = 0; i < d->nto; i++) {
        total += (size_t) d->to[i].weight;
    }

    if (d->from == NULL || d->nto == 0 || total != 100) {
        mesh_json_error(j, start, "a \"distribute\" item needs \"from\" and "
                        "\"to\" weights summing to 100");
        return -1;
    }

    return 0;
}


static int
mesh_policy_failover(mesh_json_t *j, void *elt)
{
    mesh_locality_failover_t  *f = elt;

    int                   rc, k;
    char                 *r;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start, *at;

    static const char *const  keys[] = { "from", "to", NULL };

    memset(f, 0, sizeof(mesh_locality_failover_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a \"failover\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, keys, key, klen, &seen);

        if (k == 0 || k == 1) {
            at = j->pos;

            r = mesh_json_cstr(j, "a failover region");
            if (r == NULL) {
                return -1;
            }

            if (!mesh_name_valid(r, strlen(r))) {
                mesh_json_error(j, at, "failover region \"%.64s\" is not a "
                                "name", r);
                return -1;
            }

            if (k == 0) {
                f->from = r;

            } else {
                f->to = r;
            }

        } else if (k == -2) {
            return -1;

        } else if (mesh_json_skip(j, 6) != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (f->from == NULL || f->to == NULL) {
        mesh_json_error(j, start, "a \"failover\" item needs \"from\" and "
                        "\"to\"");
        return -1;
    }

    return 0;
}


static int
mesh_policy_priority_key(mesh_json_t *j, void *elt)
{
    char  **key = elt;

    *key = mesh_json_cstr(j, "a failoverPriority key");

    return *key ? 0 : -1;
}


static int
mesh_policy_cookie(mesh_json_t *j, mesh_traffic_policy_t *tp)
{
    int                   rc, k;
    char                 *path;
    size_t                n, klen;
    int64_t               ttl;
    unsigned              seen;
    const unsigned char  *key, *start;

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"httpCookie\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_ck_keys, key, klen, &seen);

        switch (k) {

        case MESH_CK_NAME:
            tp->hash_name = mesh_policy_name(j, "\"httpCookie.name\"");
            if (tp->hash_name == NULL) {
                return -1;
            }

            break;

        case MESH_CK_TTL:
            if (mesh_policy_ms(j, "ttlMs", 0, &ttl) != 0) {
                return -1;
            }

            tp->cookie_ttl = ttl;
            break;

        case MESH_CK_PATH:
            path = mesh_json_cstr(j, "\"httpCookie.path\"");
            if (path == NULL) {
                return -1;
            }

            tp->cookie_path = path;
            break;

        case -2:
            return -1;

        default:
            if (mesh_json_skip(j, 7) != 0) {
                return -1;
            }
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_CK_NAME)) {
        mesh_json_error(j, start, "\"httpCookie\" without \"name\"");
        return -1;
    }

    return 0;
}


static int
mesh_policy_outlier(mesh_json_t *j, mesh_traffic_policy_t *tp)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "\"outlierDetection\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_od_keys, key, klen, &seen);

        switch (k) {

        case MESH_OD_5XX:
            rc = mesh_policy_int(j, mesh_od_keys[k], 0, INT_MAX,
                                 &tp->consecutive_5xx);
            break;

        case MESH_OD_GATEWAY:
            rc = mesh_policy_int(j, mesh_od_keys[k], 0, INT_MAX,
                                 &tp->consecutive_gateway);
            break;

        case MESH_OD_LOCAL_ORIGIN:
            rc = mesh_policy_int(j, mesh_od_keys[k], 0, INT_MAX,
                                 &tp->consecutive_local_origin);
            break;

        case MESH_OD_INTERVAL:
            rc = mesh_policy_ms(j, mesh_od_keys[k], 1, &tp->interval);
            break;

        case MESH_OD_EJECTION:
            rc = mesh_policy_ms(j, mesh_od_keys[k], 1,
                                &tp->base_ejection_time);
            break;

        case MESH_OD_MAX_EJECTION:
            rc = mesh_policy_int(j, mesh_od_keys[k], 0, 100,
                                 &tp->max_ejection_percent);
            break;

        case MESH_OD_MIN_HEALTH:
            rc = mesh_policy_int(j, mesh_od_keys[k], 0, 100,
                                 &tp->min_health_percent);
            break;

        case MESH_OD_SPLIT:
            rc = mesh_policy_bool(j, mesh_od_keys[k],
                                  &tp->split_local_origin);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 5);
        }

        if (rc != 0) {
            return -1;
        }
    }

    return rc == 0 ? 0 : -1;
}


static int
mesh_policy_pool(mesh_json_t *j, mesh_traffic_policy_t *tp)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "\"connectionPool\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_pool_keys, key, klen, &seen);

        switch (k) {

        case MESH_POOL_TCP:
            rc = mesh_policy_tcp(j, tp);
            break;

        case MESH_POOL_HTTP:
            rc = mesh_policy_http(j, tp);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 5);
        }

        if (rc != 0) {
            return -1;
        }
    }

    return rc == 0 ? 0 : -1;
}


static int
mesh_policy_tcp(mesh_json_t *j, mesh_traffic_policy_t *tp)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "\"connectionPool.tcp\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_tcp_keys, key, klen, &seen);

        switch (k) {

        case MESH_TCP_MAX_CONNS:
            rc = mesh_policy_int(j, mesh_tcp_keys[k], 1, MESH_CONNS_MAX,
                                 &tp->max_connections);
            break;

        case MESH_TCP_CONNECT_TIMEOUT:
            rc = mesh_policy_ms(j, mesh_tcp_keys[k], 1, &tp->connect_timeout);
            break;

        case MESH_TCP_KEEPALIVE:
            rc = mesh_policy_keepalive(j, tp);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 6);
        }

        if (rc != 0) {
            return -1;
        }
    }

    return rc == 0 ? 0 : -1;
}


/* tcpKeepalive: SO_KEEPALIVE, and what it sets of the kernel's timing */

static int
mesh_policy_keepalive(mesh_json_t *j, mesh_traffic_policy_t *tp)
{
    int                   rc, k;
    size_t                n, klen;
    int64_t              *ms;
    unsigned              seen;
    const unsigned char  *key, *at;

    if (mesh_policy_open(j, '{', "\"tcpKeepalive\"") != 0) {
        return -1;
    }

    tp->tcp_keepalive = 1;

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_ka_keys, key, klen, &seen);
        at = j->pos;

        switch (k) {

        case MESH_KA_TIME:
        case MESH_KA_INTERVAL:
            ms = (k == MESH_KA_TIME) ? &tp->keepalive_time
                                     : &tp->keepalive_interval;

            rc = mesh_policy_ms(j, mesh_ka_keys[k], 1000, ms);

            if (rc == 0 && *ms > MESH_KEEPALIVE_MAX_MS) {
                mesh_json_error(j, at, "\"%s\" is above %d",
                                mesh_ka_keys[k], MESH_KEEPALIVE_MAX_MS);
                rc = -1;
            }

            break;

        case MESH_KA_PROBES:
            rc = mesh_policy_int(j, mesh_ka_keys[k], 1,
                                 MESH_KEEPALIVE_PROBES_MAX,
                                 &tp->keepalive_probes);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 7);
        }

        if (rc != 0) {
            return -1;
        }
    }

    return rc == 0 ? 0 : -1;
}


static int
mesh_policy_http(mesh_json_t *j, mesh_traffic_policy_t *tp)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "\"connectionPool.http\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_http_keys, key, klen, &seen);

        switch (k) {

        case MESH_HTTP_PENDING:
            rc = mesh_policy_int(j, mesh_http_keys[k], 0, INT_MAX,
                                 &tp->http1_max_pending);
            break;

        case MESH_HTTP_MAX_REQUESTS:
            rc = mesh_policy_int(j, mesh_http_keys[k], 1, INT_MAX,
                                 &tp->http2_max_requests);
            break;

        case MESH_HTTP_PER_CONN:
            rc = mesh_policy_int(j, mesh_http_keys[k], 0, INT_MAX,
                                 &tp->max_requests_per_conn);
            break;

        case MESH_HTTP_RETRIES:
            rc = mesh_policy_int(j, mesh_http_keys[k], 0, INT_MAX,
                                 &tp->max_retries);
            break;

        case MESH_HTTP_IDLE:
            rc = mesh_policy_ms(j, mesh_http_keys[k], 1, &tp->idle_timeout);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 6);
        }

        if (rc != 0) {
            return -1;
        }
    }

    return rc == 0 ? 0 : -1;
}


/*
 * tls: the mode, required; file paths absolute; a MUTUAL one with its
 * certificate and key (registryd holds the rule to these too)
 */
static int
mesh_policy_tls(mesh_json_t *j, mesh_tls_t *tls)
{
    int                   rc, k, m;
    char                 *s;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start, *at;

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"tls\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_tls_keys, key, klen, &seen);
        at = j->pos;

        switch (k) {

        case MESH_TLS_K_MODE:
            s = mesh_json_cstr(j, "\"tls.mode\"");
            if (s == NULL) {
                return -1;
            }

            for (m = 1; mesh_tls_modes[m]; m++) {
                if (strcmp(s, mesh_tls_modes[m]) == 0) {
                    break;
                }
            }

            if (mesh_tls_modes[m] == NULL) {
                mesh_json_error(j, at, "unknown \"tls.mode\" \"%.64s\"", s);
                return -1;
            }

            tls->mode = m;
            rc = 0;
            break;

        case MESH_TLS_K_CERT:
            rc = mesh_policy_tls_path(j, mesh_tls_keys[k],
                                      &tls->client_certificate);
            break;

        case MESH_TLS_K_KEY:
            rc = mesh_policy_tls_path(j, mesh_tls_keys[k], &tls->private_key);
            break;

        case MESH_TLS_K_CA:
            rc = mesh_policy_tls_path(j, mesh_tls_keys[k],
                                      &tls->ca_certificates);
            break;

        case MESH_TLS_K_CRL:
            rc = mesh_policy_tls_path(j, mesh_tls_keys[k], &tls->ca_crl);
            break;

        case MESH_TLS_K_SNI:
            tls->sni = mesh_policy_name(j, "\"tls.sni\"");
            rc = tls->sni ? 0 : -1;
            break;

        case MESH_TLS_K_SANS:
            rc = mesh_policy_sans(j, tls);
            break;

        case MESH_TLS_K_INSECURE:
            rc = mesh_policy_bool(j, mesh_tls_keys[k],
                                  &tls->insecure_skip_verify);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 5);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (tls->mode == MESH_TLS_NONE) {
        mesh_json_error(j, start, "\"tls\" without \"mode\"");
        return -1;
    }

    if (tls->mode == MESH_TLS_MUTUAL
        && (tls->client_certificate == NULL || tls->private_key == NULL))
    {
        mesh_json_error(j, start, "\"tls\" MUTUAL without \"%s\"",
                        tls->client_certificate ? "privateKey"
                                                : "clientCertificate");
        return -1;
    }

    return 0;
}


static int
mesh_policy_tls_path(mesh_json_t *j, const char *what, const char **path)
{
    char                 *s;
    const unsigned char  *at;

    at = j->pos;

    s = mesh_policy_name(j, what);
    if (s == NULL) {
        return -1;
    }

    if (s[0] != '/') {
        mesh_json_error(j, at, "\"%s\" is not an absolute path", what);
        return -1;
    }

    *path = s;

    return 0;
}


static int
mesh_policy_sans(mesh_json_t *j, mesh_tls_t *tls)
{
    int           rc;
    size_t        n;
    mesh_vec_t    v;
    const char  **san;

    if (mesh_policy_open(j, '[', "\"subjectAltNames\"") != 0) {
        return -1;
    }

    memset(&v, 0, sizeof(mesh_vec_t));
    v.size = sizeof(const char *);
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        san = mesh_vec_push(j, &v);
        if (san == NULL) {
            goto fail;
        }

        *san = mesh_policy_name(j, "a subject alt name");
        if (*san == NULL) {
            goto fail;
        }
    }

    if (rc != 0) {
        goto fail;
    }

    tls->nsubject_alt_names = v.nelts;
    tls->subject_alt_names = mesh_policy_copy(j, &v);

    free(v.elts);

    return j->failed ? -1 : 0;

fail:

    free(v.elts);

    return -1;
}


static void
mesh_policy_traffic_init(mesh_traffic_policy_t *tp)
{
    tp->lb = MESH_LB_NONE;
    tp->hash_name = NULL;
    tp->cookie_ttl = -1;
    tp->cookie_path = NULL;
    tp->max_connections = 0;
    tp->locality = NULL;
    tp->warmup = -1;

    tp->connect_timeout = -1;
    tp->tcp_keepalive = -1;
    tp->keepalive_time = -1;
    tp->keepalive_interval = -1;
    tp->keepalive_probes = -1;
    tp->http1_max_pending = -1;
    tp->http2_max_requests = -1;
    tp->max_requests_per_conn = -1;
    tp->max_retries = -1;
    tp->idle_timeout = -1;

    tp->consecutive_5xx = -1;
    tp->consecutive_gateway = -1;
    tp->consecutive_local_origin = -1;
    tp->interval = -1;
    tp->base_ejection_time = -1;
    tp->max_ejection_percent = -1;
    tp->min_health_percent = -1;
    tp->split_local_origin = -1;

    memset(&tp->tls, 0, sizeof(mesh_tls_t));
}


/* the fields tp leaves unset, from "from" (loadBalancer as one unit) */

static void
mesh_policy_inherit(mesh_traffic_policy_t *tp,
    const mesh_traffic_policy_t *from)
{
    if (tp->lb == MESH_LB_NONE && tp->locality == NULL && tp->warmup == -1) {
        tp->lb = from->lb;
        tp->hash_name = from->hash_name;
        tp->cookie_ttl = from->cookie_ttl;
        tp->cookie_path = from->cookie_path;
        tp->locality = from->locality;
        tp->warmup = from->warmup;
    }

    if (tp->max_connections == 0) {
        tp->max_connections = from->max_connections;
    }

    if (tp->connect_timeout == -1) {
        tp->connect_timeout = from->connect_timeout;
    }

    if (tp->tcp_keepalive == -1) {
        tp->tcp_keepalive = from->tcp_keepalive;
    }

    if (tp->keepalive_time == -1) {
        tp->keepalive_time = from->keepalive_time;
    }

    if (tp->keepalive_interval == -1) {
        tp->keepalive_interval = from->keepalive_interval;
    }

    if (tp->keepalive_probes == -1) {
        tp->keepalive_probes = from->keepalive_probes;
    }

    if (tp->http1_max_pending == -1) {
        tp->http1_max_pending = from->http1_max_pending;
    }

    if (tp->http2_max_requests == -1) {
        tp->http2_max_requests = from->http2_max_requests;
    }

    if (tp->max_requests_per_conn == -1) {
        tp->max_requests_per_conn = from->max_requests_per_conn;
    }

    if (tp->max_retries == -1) {
        tp->max_retries = from->max_retries;
    }

    if (tp->idle_timeout == -1) {
        tp->idle_timeout = from->idle_timeout;
    }

    if (tp->consecutive_5xx == -1) {
        tp->consecutive_5xx = from->consecutive_5xx;
    }

    if (tp->consecutive_gateway == -1) {
        tp->consecutive_gateway = from->consecutive_gateway;
    }

    if (tp->consecutive_local_origin == -1) {
        tp->consecutive_local_origin = from->consecutive_local_origin;
    }

    if (tp->interval == -1) {
        tp->interval = from->interval;
    }

    if (tp->base_ejection_time == -1) {
        tp->base_ejection_time = from->base_ejection_time;
    }

    if (tp->max_ejection_percent == -1) {
        tp->max_ejection_percent = from->max_ejection_percent;
    }

    if (tp->min_health_percent == -1) {
        tp->min_health_percent = from->min_health_percent;
    }

    if (tp->split_local_origin == -1) {
        tp->split_local_origin = from->split_local_origin;
    }

    /* a subset's tls replaces the rule's as a whole, as in Istio */

    if (tp->tls.mode == MESH_TLS_NONE) {
        tp->tls = from->tls;
    }
}


/* workloadSelector: {"matchLabels": {labels}}, non-empty */

static int
mesh_policy_selector(mesh_json_t *j, mesh_destination_rule_t *dr)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    static const char *const  keys[] = { "matchLabels", NULL };

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"workloadSelector\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, keys, key, klen, &seen);

        if (k == 0) {
            rc = mesh_policy_labels(j, "\"workloadSelector.matchLabels\"",
                                    &dr->selector, &dr->nselector);

        } else if (k == -2) {
            return -1;

        } else {
            rc = mesh_json_skip(j, 4);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (dr->nselector == 0) {
        mesh_json_error(j, start, "\"workloadSelector\" without labels");
        return -1;
    }

    return 0;
}


/* subsets */

static int
mesh_policy_subset(mesh_json_t *j, void *elt)
{
    mesh_subset_t  *ss = elt;

    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(ss, 0, sizeof(mesh_subset_t));
    mesh_policy_traffic_init(&ss->policy);

    start = j->pos;

    if (mesh_policy_open(j, '{', "a subset") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_ss_keys, key, klen, &seen);

        switch (k) {

        case MESH_SS_NAME:
            ss->name = mesh_policy_name(j, "a subset's \"name\"");
            rc = ss->name ? 0 : -1;
            break;

        case MESH_SS_LABELS:
            rc = mesh_policy_labels(j, "a subset's \"labels\"",
                                    &ss->labels, &ss->nlabels);
            break;

        case MESH_SS_TRAFFIC:
            rc = mesh_policy_traffic(j, &ss->policy, &ss->ports,
                                     &ss->nports);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 4);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_SS_NAME)
        || !mesh_policy_has(seen, MESH_SS_LABELS))
    {
        mesh_json_error(j, start, "a subset without \"%s\"",
                        !mesh_policy_has(seen, MESH_SS_NAME) ? "name"
                                                             : "labels");
        return -1;
    }

    return 0;
}
