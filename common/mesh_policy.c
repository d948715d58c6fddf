/*
 * mesh_policy: the snapshot's "policies" array (docs/policies.md, "In the
 * snapshot") read with mesh_json's strict reader into plain C.
 *
 * Each object is read twice: a first pass finds its "kind" (keys come in
 * any order), the second reads the fields of that kind. Arrays grow in
 * scratch vectors local to the function that reads them and are copied
 * into the arena when they end; everything else is allocated from the
 * arena, which mesh_policies_free() releases at once.
 */

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_json.h"
#include "mesh_policy.h"
#include "mesh_regex.h"


#define MESH_MS_MAX           (24 * 3600 * 1000)
#define MESH_CONNS_MAX        1000000

#define MESH_KIND_RULE        1
#define MESH_KIND_VS          2

/* the keys' duplicate detection uses one bit each */
#define mesh_policy_has(seen, k)  ((seen) & (1u << (k)))


enum {
    MESH_DR_POLICY = 0,
    MESH_DR_KIND,
    MESH_DR_NAME,
    MESH_DR_HOST,
    MESH_DR_TRAFFIC,
    MESH_DR_SUBSETS
};

static const char *const  mesh_dr_keys[] = {
    "policy", "kind", "name", "host", "trafficPolicy", "subsets", NULL
};


enum {
    MESH_VS_POLICY = 0,
    MESH_VS_KIND,
    MESH_VS_NAME,
    MESH_VS_HOSTS,
    MESH_VS_HTTP
};

static const char *const  mesh_vs_keys[] = {
    "policy", "kind", "name", "hosts", "http", NULL
};


enum {
    MESH_TP_LB = 0,
    MESH_TP_OUTLIER,
    MESH_TP_POOL
};

static const char *const  mesh_tp_keys[] = {
    "loadBalancer", "outlierDetection", "connectionPool", NULL
};


enum {
    MESH_LB_K_SIMPLE = 0,
    MESH_LB_K_CHASH
};

static const char *const  mesh_lb_keys[] = {
    "simple", "consistentHash", NULL
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


static const char *const  mesh_pool_keys[] = { "tcp", NULL };
static const char *const  mesh_tcp_keys[] = { "maxConnections", NULL };


enum {
    MESH_SS_NAME = 0,
    MESH_SS_LABELS,
    MESH_SS_TRAFFIC
};

static const char *const  mesh_ss_keys[] = {
    "name", "labels", "trafficPolicy", NULL
};


enum {
    MESH_HT_NAME = 0,
    MESH_HT_MATCH,
    MESH_HT_ROUTE,
    MESH_HT_RETRIES,
    MESH_HT_TIMEOUT
};

static const char *const  mesh_ht_keys[] = {
    "name", "match", "route", "retries", "timeoutMs", NULL
};


enum {
    MESH_MA_URI = 0,
    MESH_MA_HEADERS
};

static const char *const  mesh_ma_keys[] = { "uri", "headers", NULL };


static const char *const  mesh_sm_keys[] = {
    "exact", "prefix", "regex", NULL    /* in MESH_MATCH_* order */
};


enum {
    MESH_RT_DESTINATION = 0,
    MESH_RT_WEIGHT
};

static const char *const  mesh_rt_keys[] = { "destination", "weight", NULL };


enum {
    MESH_DS_HOST = 0,
    MESH_DS_SUBSET
};

static const char *const  mesh_ds_keys[] = { "host", "subset", NULL };


enum {
    MESH_RE_ATTEMPTS = 0,
    MESH_RE_PER_TRY,
    MESH_RE_RETRY_ON
};

static const char *const  mesh_re_keys[] = {
    "attempts", "perTryTimeoutMs", "retryOn", NULL
};


/* what nginx can retry on: registryd accepts exactly these too */
const mesh_retry_on_t  mesh_retry_on[] = {
    { "5xx", MESH_RETRY_5XX },
    { "gateway-error", MESH_RETRY_GATEWAY_ERROR },
    { "connect-failure", MESH_RETRY_CONNECT_FAILURE },
    { "reset", MESH_RETRY_RESET },
    { NULL, 0 }
};


static int mesh_policy_kind(mesh_json_t *j, int *kind);
static int mesh_policy_rule(mesh_json_t *j, mesh_destination_rule_t *dr);
static int mesh_policy_vs(mesh_json_t *j, mesh_virtual_service_t *vs);
static int mesh_policy_traffic(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_lb(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_chash(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_cookie(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_outlier(mesh_json_t *j, mesh_traffic_policy_t *tp);
static int mesh_policy_pool(mesh_json_t *j, mesh_traffic_policy_t *tp);
static void mesh_policy_traffic_init(mesh_traffic_policy_t *tp);
static void mesh_policy_inherit(mesh_traffic_policy_t *tp,
    const mesh_traffic_policy_t *from);
static int mesh_policy_subset(mesh_json_t *j, void *elt);
static int mesh_policy_labels(mesh_json_t *j, mesh_subset_t *ss);
static int mesh_policy_hosts(mesh_json_t *j, mesh_virtual_service_t *vs);
static int mesh_policy_http(mesh_json_t *j, void *elt);
static int mesh_policy_match(mesh_json_t *j, void *elt);
static int mesh_policy_headers(mesh_json_t *j, mesh_match_t *m);
static int mesh_policy_string_match(mesh_json_t *j, mesh_string_match_t *m,
    const char *what);
static int mesh_policy_route(mesh_json_t *j, void *elt);
static int mesh_policy_destination(mesh_json_t *j, mesh_destination_t *d);
static int mesh_policy_retries(mesh_json_t *j, mesh_http_route_t *h);
static int mesh_policy_retry_on(mesh_json_t *j, unsigned *bits);
static void *mesh_policy_list(mesh_json_t *j, const char *what, size_t size,
    int (*parse)(mesh_json_t *j, void *elt), size_t *nelts);
static int mesh_policy_open(mesh_json_t *j, unsigned char c,
    const char *what);
static int mesh_policy_key(mesh_json_t *j, const char *const *keys,
    const unsigned char *key, size_t klen, unsigned *seen);
static char *mesh_policy_name(mesh_json_t *j, const char *what);
static int mesh_policy_int(mesh_json_t *j, const char *what, int min,
    int max, int *value);
static int mesh_policy_ms(mesh_json_t *j, const char *what, int64_t min,
    int64_t *value);
static int mesh_policy_bool(mesh_json_t *j, const char *what, int *value);
static void *mesh_policy_copy(mesh_json_t *j, mesh_vec_t *v);
static int mesh_cmp_labels(const void *one, const void *two);


mesh_policies_t *
mesh_policies_parse(const char *json, size_t len, char *err, size_t errlen)
{
    int                       rc, kind;
    size_t                    n, i;
    mesh_json_t               j;
    mesh_vec_t                rules, vss, regexes;
    mesh_arena_t             *arena;
    mesh_policies_t          *p;
    mesh_virtual_service_t   *vs;
    mesh_destination_rule_t  *dr;

    if (err && errlen) {
        err[0] = '\0';
    }

    memset(&j, 0, sizeof(mesh_json_t));
    memset(&rules, 0, sizeof(mesh_vec_t));
    memset(&vss, 0, sizeof(mesh_vec_t));
    memset(&regexes, 0, sizeof(mesh_vec_t));

    rules.size = sizeof(mesh_destination_rule_t);
    vss.size = sizeof(mesh_virtual_service_t);
    regexes.size = sizeof(mesh_regex_t *);

    if (json == NULL) {
        json = "";
        len = 0;
    }

    j.start = (const unsigned char *) json;
    j.pos = j.start;
    j.end = j.start + len;
    j.err = err;
    j.errlen = errlen;
    j.what = "policies";
    j.data = &regexes;             /* every regex compiled, to free */

    arena = calloc(1, sizeof(mesh_arena_t));
    if (arena == NULL) {
        mesh_json_error(&j, j.pos, "out of memory");
        return NULL;
    }

    j.arena = arena;

    p = mesh_arena_alloc(arena, sizeof(mesh_policies_t));
    if (p == NULL) {
        mesh_json_error(&j, j.pos, "out of memory");
        goto fail;
    }

    memset(p, 0, sizeof(mesh_policies_t));
    p->arena = arena;

    mesh_json_ws(&j);

    if (mesh_policy_open(&j, '[', "\"policies\"") != 0) {
        goto fail;
    }

    n = 0;

    while ((rc = mesh_json_next_element(&j, &n)) == 1) {

        if (mesh_policy_kind(&j, &kind) != 0) {
            goto fail;
        }

        if (kind == MESH_KIND_RULE) {
            dr = mesh_vec_push(&j, &rules);
            if (dr == NULL || mesh_policy_rule(&j, dr) != 0) {
                goto fail;
            }

        } else {
            vs = mesh_vec_push(&j, &vss);
            if (vs == NULL || mesh_policy_vs(&j, vs) != 0) {
                goto fail;
            }
        }
    }

    if (rc != 0) {
        goto fail;
    }

    mesh_json_ws(&j);

    if (j.pos != j.end) {
        mesh_json_error(&j, j.pos, "unexpected data after the policies");
        goto fail;
    }

    p->nrules = rules.nelts;
    p->rules = mesh_policy_copy(&j, &rules);

    p->nvss = vss.nelts;
    p->vss = mesh_policy_copy(&j, &vss);

    if (j.failed) {
        goto fail;
    }

    free(rules.elts);
    free(vss.elts);
    free(j.buf);

    p->regexes = regexes.elts;
    p->nregexes = regexes.nelts;

    return p;

fail:

    free(rules.elts);
    free(vss.elts);
    free(j.buf);

    for (i = 0; i < regexes.nelts; i++) {
        mesh_regex_free(((mesh_regex_t **) regexes.elts)[i]);
    }

    free(regexes.elts);

    mesh_arena_destroy(arena);

    return NULL;
}


void
mesh_policies_free(mesh_policies_t *p)
{
    size_t  i;

    if (p == NULL) {
        return;
    }

    for (i = 0; i < p->nregexes; i++) {
        mesh_regex_free(((mesh_regex_t **) p->regexes)[i]);
    }

    free(p->regexes);

    /* p itself lives in the arena, or in an unpacked block (its owner's) */
    if (p->arena) {
        mesh_arena_destroy(p->arena);
    }
}


const mesh_destination_rule_t *
mesh_policies_rule(const mesh_policies_t *p, const char *host, size_t len)
{
    size_t  i;

    if (p == NULL || host == NULL) {
        return NULL;
    }

    /* registryd allows one per host: the first one wins if not */

    for (i = 0; i < p->nrules; i++) {
        if (strlen(p->rules[i].host) == len
            && memcmp(p->rules[i].host, host, len) == 0)
        {
            return &p->rules[i];
        }
    }

    return NULL;
}


const mesh_virtual_service_t *
mesh_policies_vs(const mesh_policies_t *p, const char *host, size_t len)
{
    size_t                         i, k;
    const mesh_virtual_service_t  *vs;

    if (p == NULL || host == NULL) {
        return NULL;
    }

    for (i = 0; i < p->nvss; i++) {
        vs = &p->vss[i];

        for (k = 0; k < vs->nhosts; k++) {
            if (strlen(vs->hosts[k]) == len
                && memcmp(vs->hosts[k], host, len) == 0)
            {
                return vs;
            }
        }
    }

    return NULL;
}


const mesh_subset_t *
mesh_rule_subset(const mesh_destination_rule_t *dr, const char *name)
{
    size_t  i;

    if (dr == NULL || name == NULL) {
        return NULL;
    }

    for (i = 0; i < dr->nsubsets; i++) {
        if (strcmp(dr->subsets[i].name, name) == 0) {
            return &dr->subsets[i];
        }
    }

    return NULL;
}


int
mesh_instance_in_subset(const mesh_instance_t *in, const mesh_subset_t *s)
{
    int                  rc;
    size_t               i, lo, hi, mid;
    const mesh_label_t  *want;

    if (s == NULL) {
        return 1;
    }

    if (in == NULL) {
        return 0;
    }

    mid = 0;

    /* the instance's labels are sorted by key (mesh_snapshot sorts them) */

    for (i = 0; i < s->nlabels; i++) {
        want = &s->labels[i];

        lo = 0;
        hi = in->nlabels;
        rc = -1;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;
            rc = strcmp(in->labels[mid].key, want->key);

            if (rc == 0) {
                break;
            }

            if (rc < 0) {
                lo = mid + 1;

            } else {
                hi = mid;
            }
        }

        if (rc != 0 || strcmp(in->labels[mid].value, want->value) != 0) {
            return 0;
        }
    }

    return 1;
}


int
mesh_string_match(const mesh_string_match_t *m, const char *s, size_t len,
    mesh_regex_match_pt re_match)
{
    if (m == NULL) {
        return 1;
    }

    switch (m->kind) {

    case MESH_MATCH_EXACT:
        return len == m->len && (len == 0 || memcmp(s, m->value, len) == 0);

    case MESH_MATCH_PREFIX:
        return len >= m->len
               && (m->len == 0 || memcmp(s, m->value, m->len) == 0);

    case MESH_MATCH_REGEX:
        if (m->regex == NULL) {
            return 0;
        }

        if (re_match == NULL) {
            return mesh_regex_match(m->regex, s ? s : "", len) == 1;
        }

        return re_match(m->regex, s ? s : "", len) == 1;
    }

    return 0;
}


int
mesh_route_pick(const mesh_http_route_t *route, uint32_t r)
{
    size_t    i;
    uint64_t  sum, x, acc;

    if (route == NULL) {
        return -1;
    }

    sum = 0;

    for (i = 0; i < route->nroutes; i++) {
        if (route->routes[i].weight > 0) {
            sum += (uint64_t) route->routes[i].weight;
        }
    }

    if (sum == 0 || route->nroutes > INT_MAX) {
        return -1;
    }

    x = r % sum;
    acc = 0;

    for (i = 0; i < route->nroutes; i++) {
        if (route->routes[i].weight > 0) {
            acc += (uint64_t) route->routes[i].weight;

            if (acc > x) {
                return (int) i;
            }
        }
    }

    return -1;
}


/* the first pass over an object: its "kind"; j->pos is left where it was */

static int
mesh_policy_kind(mesh_json_t *j, int *kind)
{
    int                   rc, found;
    size_t                n, klen, vlen;
    const unsigned char  *key, *val, *start, *at;

    start = j->pos;
    found = 0;

    if (mesh_policy_open(j, '{', "a policy") != 0) {
        return -1;
    }

    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {

        if (!mesh_json_key_is(key, klen, "kind")) {
            if (mesh_json_skip(j, 2) != 0) {
                return -1;
            }

            continue;
        }

        if (found) {
            mesh_json_error(j, j->key_at, "duplicate field \"kind\"");
            return -1;
        }

        found = 1;
        at = j->pos;

        if (*at != '"') {
            mesh_json_error(j, at, "\"kind\" must be a string");
            return -1;
        }

        if (mesh_json_string(j, &val, &vlen) != 0) {
            return -1;
        }

        if (mesh_json_key_is(val, vlen, "DestinationRule")) {
            *kind = MESH_KIND_RULE;

        } else if (mesh_json_key_is(val, vlen, "VirtualService")) {
            *kind = MESH_KIND_VS;

        } else {
            mesh_json_error(j, at, "unknown \"kind\" \"%.*s\"",
                            (int) (vlen > 64 ? 64 : vlen), (const char *) val);
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!found) {
        mesh_json_error(j, start, "a policy without \"kind\"");
        return -1;
    }

    j->pos = start;

    return 0;
}


static int
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
            if (mesh_policy_traffic(j, &dr->traffic) != 0) {
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

    /* Istio's precedence: the subset's fields, then the rule's */

    for (i = 0; i < dr->nsubsets; i++) {
        mesh_policy_inherit(&dr->subsets[i].policy, &dr->traffic);
    }

    return 0;
}


static int
mesh_policy_vs(mesh_json_t *j, mesh_virtual_service_t *vs)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(vs, 0, sizeof(mesh_virtual_service_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a VirtualService") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_vs_keys, key, klen, &seen);

        switch (k) {

        case MESH_VS_POLICY:
            vs->policy = mesh_policy_name(j, "\"policy\"");
            if (vs->policy == NULL) {
                return -1;
            }

            break;

        case MESH_VS_NAME:
            vs->name = mesh_policy_name(j, "\"name\"");
            if (vs->name == NULL) {
                return -1;
            }

            break;

        case MESH_VS_HOSTS:
            if (mesh_policy_hosts(j, vs) != 0) {
                return -1;
            }

            break;

        case MESH_VS_HTTP:
            vs->http = mesh_policy_list(j, "\"http\"",
                                        sizeof(mesh_http_route_t),
                                        mesh_policy_http, &vs->nhttp);
            if (j->failed) {
                return -1;
            }

            break;

        case -2:
            return -1;

        default:
            if (mesh_json_skip(j, 2) != 0) {
                return -1;
            }
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_VS_POLICY)
        || !mesh_policy_has(seen, MESH_VS_NAME)
        || !mesh_policy_has(seen, MESH_VS_HOSTS)
        || !mesh_policy_has(seen, MESH_VS_HTTP))
    {
        mesh_json_error(j, start, "a VirtualService without \"%s\"",
                        !mesh_policy_has(seen, MESH_VS_POLICY) ? "policy"
                        : !mesh_policy_has(seen, MESH_VS_NAME) ? "name"
                        : !mesh_policy_has(seen, MESH_VS_HOSTS) ? "hosts"
                        : "http");
        return -1;
    }

    return 0;
}


/* trafficPolicy */

static int
mesh_policy_traffic(mesh_json_t *j, mesh_traffic_policy_t *tp)
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

        if (k >= 0 && (seen & ~(1u << k))) {
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
        mesh_json_error(j, start, "\"loadBalancer\" without \"simple\" or "
                        "\"consistentHash\"");
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


/* ttlMs and path are checked and not kept: nginx does not issue cookies */

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

            break;

        case MESH_CK_PATH:
            path = mesh_json_cstr(j, "\"httpCookie.path\"");
            if (path == NULL) {
                return -1;
            }

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
    size_t                n, m, klen;
    unsigned              seen, tseen;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "\"connectionPool\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_pool_keys, key, klen, &seen);

        if (k == -2) {
            return -1;
        }

        if (k == -1) {
            if (mesh_json_skip(j, 5) != 0) {
                return -1;
            }

            continue;
        }

        if (mesh_policy_open(j, '{', "\"connectionPool.tcp\"") != 0) {
            return -1;
        }

        tseen = 0;
        m = 0;

        while ((rc = mesh_json_next_member(j, &m, &key, &klen)) == 1) {
            k = mesh_policy_key(j, mesh_tcp_keys, key, klen, &tseen);

            if (k == -2) {
                return -1;
            }

            if (k == -1) {
                rc = mesh_json_skip(j, 6);

            } else {
                rc = mesh_policy_int(j, "maxConnections", 1, MESH_CONNS_MAX,
                                     &tp->max_connections);
            }

            if (rc != 0) {
                return -1;
            }
        }

        if (rc != 0) {
            return -1;
        }
    }

    return rc == 0 ? 0 : -1;
}


static void
mesh_policy_traffic_init(mesh_traffic_policy_t *tp)
{
    tp->lb = MESH_LB_NONE;
    tp->hash_name = NULL;
    tp->max_connections = 0;

    tp->consecutive_5xx = -1;
    tp->consecutive_gateway = -1;
    tp->consecutive_local_origin = -1;
    tp->interval = -1;
    tp->base_ejection_time = -1;
    tp->max_ejection_percent = -1;
    tp->min_health_percent = -1;
    tp->split_local_origin = -1;
}


/* the fields tp leaves unset, from "from" (loadBalancer as one unit) */

static void
mesh_policy_inherit(mesh_traffic_policy_t *tp,
    const mesh_traffic_policy_t *from)
{
    if (tp->lb == MESH_LB_NONE) {
        tp->lb = from->lb;
        tp->hash_name = from->hash_name;
    }

    if (tp->max_connections == 0) {
        tp->max_connections = from->max_connections;
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
            rc = mesh_policy_labels(j, ss);
            break;

        case MESH_SS_TRAFFIC:
            rc = mesh_policy_traffic(j, &ss->policy);
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


/* sorted by key, as the instances' labels are */

static int
mesh_policy_labels(mesh_json_t *j, mesh_subset_t *ss)
{
    int                   rc;
    char                 *k;
    size_t                n, i, klen;
    mesh_vec_t            v;
    mesh_label_t         *label, *labels;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "a subset's \"labels\"") != 0) {
        return -1;
    }

    memset(&v, 0, sizeof(mesh_vec_t));
    v.size = sizeof(mesh_label_t);
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {

        /* the key may sit in j->buf, which the value reuses: copy first */

        if (memchr(key, '\0', klen)) {
            mesh_json_error(j, j->key_at, "a label name holds \\u0000");
            goto fail;
        }

        k = mesh_arena_alloc(j->arena, klen + 1);
        if (k == NULL) {
            mesh_json_error(j, j->key_at, "out of memory");
            goto fail;
        }

        memcpy(k, key, klen);
        k[klen] = '\0';

        label = mesh_vec_push(j, &v);
        if (label == NULL) {
            goto fail;
        }

        label->key = k;

        label->value = mesh_json_cstr(j, "a label value");
        if (label->value == NULL) {
            goto fail;
        }
    }

    if (rc != 0) {
        goto fail;
    }

    labels = v.elts;

    if (v.nelts > 1) {
        qsort(labels, v.nelts, sizeof(mesh_label_t), mesh_cmp_labels);
    }

    for (i = 1; i < v.nelts; i++) {
        if (strcmp(labels[i - 1].key, labels[i].key) == 0) {
            mesh_json_error(j, j->pos, "duplicate label \"%.64s\"",
                            labels[i].key);
            goto fail;
        }
    }

    ss->nlabels = v.nelts;
    ss->labels = mesh_policy_copy(j, &v);

    free(v.elts);

    return j->failed ? -1 : 0;

fail:

    free(v.elts);

    return -1;
}


/* VirtualService */

static int
mesh_policy_hosts(mesh_json_t *j, mesh_virtual_service_t *vs)
{
    int           rc;
    size_t        n;
    mesh_vec_t    v;
    const char  **host;

    if (mesh_policy_open(j, '[', "\"hosts\"") != 0) {
        return -1;
    }

    memset(&v, 0, sizeof(mesh_vec_t));
    v.size = sizeof(const char *);
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        host = mesh_vec_push(j, &v);
        if (host == NULL) {
            goto fail;
        }

        *host = mesh_policy_name(j, "a host");
        if (*host == NULL) {
            goto fail;
        }
    }

    if (rc != 0) {
        goto fail;
    }

    vs->nhosts = v.nelts;
    vs->hosts = mesh_policy_copy(j, &v);

    free(v.elts);

    return j->failed ? -1 : 0;

fail:

    free(v.elts);

    return -1;
}


static int
mesh_policy_http(mesh_json_t *j, void *elt)
{
    mesh_http_route_t  *h = elt;

    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(h, 0, sizeof(mesh_http_route_t));

    h->attempts = -1;
    h->per_try_timeout = -1;
    h->retry_on = 0;
    h->timeout = -1;

    start = j->pos;

    if (mesh_policy_open(j, '{', "an \"http\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_ht_keys, key, klen, &seen);

        switch (k) {

        case MESH_HT_NAME:
            h->name = mesh_json_cstr(j, "an \"http\" item's \"name\"");
            rc = h->name ? 0 : -1;
            break;

        case MESH_HT_MATCH:
            h->matches = mesh_policy_list(j, "\"match\"",
                                          sizeof(mesh_match_t),
                                          mesh_policy_match, &h->nmatches);
            rc = j->failed ? -1 : 0;
            break;

        case MESH_HT_ROUTE:
            h->routes = mesh_policy_list(j, "\"route\"",
                                         sizeof(mesh_destination_t),
                                         mesh_policy_route, &h->nroutes);
            rc = j->failed ? -1 : 0;
            break;

        case MESH_HT_RETRIES:
            rc = mesh_policy_retries(j, h);
            break;

        case MESH_HT_TIMEOUT:
            rc = mesh_policy_ms(j, "timeoutMs", 1, &h->timeout);
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

    if (!mesh_policy_has(seen, MESH_HT_MATCH)
        || !mesh_policy_has(seen, MESH_HT_ROUTE))
    {
        mesh_json_error(j, start, "an \"http\" item without \"%s\"",
                        !mesh_policy_has(seen, MESH_HT_MATCH) ? "match"
                                                              : "route");
        return -1;
    }

    return 0;
}


static int
mesh_policy_match(mesh_json_t *j, void *elt)
{
    mesh_match_t  *m = elt;

    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(m, 0, sizeof(mesh_match_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a \"match\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_ma_keys, key, klen, &seen);

        switch (k) {

        case MESH_MA_URI:
            m->uri = mesh_arena_alloc(j->arena, sizeof(mesh_string_match_t));
            if (m->uri == NULL) {
                mesh_json_error(j, j->pos, "out of memory");
                return -1;
            }

            rc = mesh_policy_string_match(j, m->uri, "\"uri\"");
            break;

        case MESH_MA_HEADERS:
            rc = mesh_policy_headers(j, m);
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

    if (rc != 0) {
        return -1;
    }

    if (m->uri == NULL && m->nheaders == 0) {
        mesh_json_error(j, start,
                        "a \"match\" item without \"uri\" or \"headers\"");
        return -1;
    }

    return 0;
}


static int
mesh_policy_headers(mesh_json_t *j, mesh_match_t *m)
{
    int                   rc;
    char                 *name;
    size_t                n, i, klen;
    mesh_vec_t            v;
    mesh_header_match_t  *hm;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "\"headers\"") != 0) {
        return -1;
    }

    memset(&v, 0, sizeof(mesh_vec_t));
    v.size = sizeof(mesh_header_match_t);
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {

        if (klen == 0 || memchr(key, '\0', klen)) {
            mesh_json_error(j, j->key_at, "an invalid header name");
            goto fail;
        }

        /* copied before the value reuses j->buf; lowercase, as nginx's */

        name = mesh_arena_alloc(j->arena, klen + 1);
        if (name == NULL) {
            mesh_json_error(j, j->key_at, "out of memory");
            goto fail;
        }

        for (i = 0; i < klen; i++) {
            name[i] = (key[i] >= 'A' && key[i] <= 'Z')
                      ? (char) (key[i] - 'A' + 'a') : (char) key[i];
        }

        name[klen] = '\0';

        hm = mesh_vec_push(j, &v);
        if (hm == NULL) {
            goto fail;
        }

        hm->name = name;
        hm->name_len = klen;

        if (mesh_policy_string_match(j, &hm->match, "a header match") != 0) {
            goto fail;
        }
    }

    if (rc != 0) {
        goto fail;
    }

    m->nheaders = v.nelts;
    m->headers = mesh_policy_copy(j, &v);

    free(v.elts);

    return j->failed ? -1 : 0;

fail:

    free(v.elts);

    return -1;
}


static int
mesh_policy_string_match(mesh_json_t *j, mesh_string_match_t *m,
    const char *what)
{
    int                   rc, k;
    char                 *value, rerr[MESH_ERR_LEN];
    size_t                n, klen;
    unsigned              seen;
    mesh_regex_t         *re, **slot;
    const unsigned char  *key, *start, *at;

    memset(m, 0, sizeof(mesh_string_match_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', what) != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_sm_keys, key, klen, &seen);

        if (k == -2) {
            return -1;
        }

        if (k == -1) {
            if (mesh_json_skip(j, 8) != 0) {
                return -1;
            }

            continue;
        }

        if (seen & ~(1u << k)) {
            mesh_json_error(j, j->key_at, "%s holds more than one of "
                            "\"exact\", \"prefix\" and \"regex\"", what);
            return -1;
        }

        at = j->pos;

        value = mesh_json_cstr(j, what);
        if (value == NULL) {
            return -1;
        }

        if (value[0] == '\0') {
            mesh_json_error(j, at, "%s is an empty string", what);
            return -1;
        }

        m->kind = k;
        m->value = value;
        m->len = strlen(value);

        if (k == MESH_MATCH_REGEX) {
            /* as registryd checked it: one definition, mesh_regex */
            re = mesh_regex_compile(value, m->len, rerr, sizeof(rerr));
            if (re == NULL) {
                mesh_json_error(j, at, "%s: %s", what, rerr);
                return -1;
            }

            slot = mesh_vec_push(j, j->data);
            if (slot == NULL) {
                mesh_regex_free(re);
                return -1;
            }

            *slot = re;
            m->regex = re;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (seen == 0) {
        mesh_json_error(j, start, "%s without \"exact\", \"prefix\" or "
                        "\"regex\"", what);
        return -1;
    }

    return 0;
}


static int
mesh_policy_route(mesh_json_t *j, void *elt)
{
    mesh_destination_t  *d = elt;

    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(d, 0, sizeof(mesh_destination_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a \"route\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_rt_keys, key, klen, &seen);

        switch (k) {

        case MESH_RT_DESTINATION:
            rc = mesh_policy_destination(j, d);
            break;

        case MESH_RT_WEIGHT:
            rc = mesh_policy_int(j, "weight", 0, 100, &d->weight);
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

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_RT_DESTINATION)
        || !mesh_policy_has(seen, MESH_RT_WEIGHT))
    {
        mesh_json_error(j, start, "a \"route\" item without \"%s\"",
                        !mesh_policy_has(seen, MESH_RT_DESTINATION)
                        ? "destination" : "weight");
        return -1;
    }

    return 0;
}


static int
mesh_policy_destination(mesh_json_t *j, mesh_destination_t *d)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"destination\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_ds_keys, key, klen, &seen);

        switch (k) {

        case MESH_DS_HOST:
            d->host = mesh_policy_name(j, "\"destination.host\"");
            rc = d->host ? 0 : -1;
            break;

        case MESH_DS_SUBSET:
            d->subset = mesh_policy_name(j, "\"destination.subset\"");
            rc = d->subset ? 0 : -1;
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

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_DS_HOST)) {
        mesh_json_error(j, start, "\"destination\" without \"host\"");
        return -1;
    }

    return 0;
}


static int
mesh_policy_retries(mesh_json_t *j, mesh_http_route_t *h)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "\"retries\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_re_keys, key, klen, &seen);

        switch (k) {

        case MESH_RE_ATTEMPTS:
            rc = mesh_policy_int(j, "attempts", 0, 100, &h->attempts);
            break;

        case MESH_RE_PER_TRY:
            rc = mesh_policy_ms(j, "perTryTimeoutMs", 1, &h->per_try_timeout);
            break;

        case MESH_RE_RETRY_ON:
            rc = mesh_policy_retry_on(j, &h->retry_on);
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


static int
mesh_policy_retry_on(mesh_json_t *j, unsigned *bits)
{
    int                     rc;
    size_t                  n, len;
    const unsigned char    *s, *at;
    const mesh_retry_on_t  *ro;

    if (mesh_policy_open(j, '[', "\"retryOn\"") != 0) {
        return -1;
    }

    *bits = 0;
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        at = j->pos;

        if (*at != '"') {
            mesh_json_error(j, at, "a \"retryOn\" item must be a string");
            return -1;
        }

        if (mesh_json_string(j, &s, &len) != 0) {
            return -1;
        }

        for (ro = mesh_retry_on; ro->name; ro++) {
            if (strlen(ro->name) == len && memcmp(ro->name, s, len) == 0) {
                break;
            }
        }

        if (ro->name == NULL) {
            mesh_json_error(j, at, "unknown \"retryOn\" \"%.*s\"",
                            (int) (len > 64 ? 64 : len), (const char *) s);
            return -1;
        }

        *bits |= ro->bit;
    }

    return rc == 0 ? 0 : -1;
}


/* helpers */

static int
mesh_policy_open(mesh_json_t *j, unsigned char c, const char *what)
{
    if (j->pos < j->end && *j->pos != c) {
        mesh_json_error(j, j->pos, "%s must be %s", what,
                        c == '{' ? "an object" : "an array");
        return -1;
    }

    return mesh_json_expect(j, c);
}


/*
 * The index of key in keys, marked in *seen; -1 for a key not in keys;
 * -2, with the error, for a key seen before in the object.
 */

static int
mesh_policy_key(mesh_json_t *j, const char *const *keys,
    const unsigned char *key, size_t klen, unsigned *seen)
{
    int  i;

    for (i = 0; keys[i]; i++) {
        if (strlen(keys[i]) == klen && memcmp(keys[i], key, klen) == 0) {
            if (*seen & (1u << i)) {
                mesh_json_error(j, j->key_at, "duplicate field \"%s\"",
                                keys[i]);
                return -2;
            }

            *seen |= 1u << i;
            return i;
        }
    }

    return -1;
}


/* a non-empty string, in the arena */

static char *
mesh_policy_name(mesh_json_t *j, const char *what)
{
    char                 *s;
    const unsigned char  *at;

    at = j->pos;

    s = mesh_json_cstr(j, what);
    if (s == NULL) {
        return NULL;
    }

    if (s[0] == '\0') {
        mesh_json_error(j, at, "%s is an empty string", what);
        return NULL;
    }

    return s;
}


static int
mesh_policy_int(mesh_json_t *j, const char *what, int min, int max,
    int *value)
{
    uint64_t  v;

    if (mesh_json_uint(j, what, (uint64_t) min, (uint64_t) max, &v) != 0) {
        return -1;
    }

    *value = (int) v;

    return 0;
}


static int
mesh_policy_ms(mesh_json_t *j, const char *what, int64_t min,
    int64_t *value)
{
    uint64_t  v;

    if (mesh_json_uint(j, what, (uint64_t) min, MESH_MS_MAX, &v) != 0) {
        return -1;
    }

    *value = (int64_t) v;

    return 0;
}


static int
mesh_policy_bool(mesh_json_t *j, const char *what, int *value)
{
    if (j->end - j->pos >= 4 && memcmp(j->pos, "true", 4) == 0) {
        j->pos += 4;
        *value = 1;
        return 0;
    }

    if (j->end - j->pos >= 5 && memcmp(j->pos, "false", 5) == 0) {
        j->pos += 5;
        *value = 0;
        return 0;
    }

    mesh_json_error(j, j->pos, "\"%s\" must be true or false", what);

    return -1;
}


/* the vector's elements in the arena; NULL when none (or on an error) */

/*
 * A JSON array of objects, each read by parse, copied into the arena.
 * Failure sets j->failed (an empty array is NULL with *nelts 0).
 */
static void *
mesh_policy_list(mesh_json_t *j, const char *what, size_t size,
    int (*parse)(mesh_json_t *j, void *elt), size_t *nelts)
{
    int          rc;
    void        *elt, *elts;
    size_t       n;
    mesh_vec_t   v;

    *nelts = 0;

    if (mesh_policy_open(j, '[', what) != 0) {
        return NULL;
    }

    memset(&v, 0, sizeof(mesh_vec_t));
    v.size = size;
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        elt = mesh_vec_push(j, &v);
        if (elt == NULL || parse(j, elt) != 0) {
            rc = -1;
            break;
        }
    }

    elts = NULL;

    if (rc != 0 && !j->failed) {
        mesh_json_error(j, j->pos, "invalid %s", what);
    }

    if (rc == 0) {
        *nelts = v.nelts;
        elts = mesh_policy_copy(j, &v);
    }

    free(v.elts);

    return elts;
}


static void *
mesh_policy_copy(mesh_json_t *j, mesh_vec_t *v)
{
    void  *elts;

    if (v->nelts == 0) {
        return NULL;
    }

    elts = mesh_arena_alloc(j->arena, v->nelts * v->size);
    if (elts == NULL) {
        mesh_json_error(j, j->pos, "out of memory");
        return NULL;
    }

    memcpy(elts, v->elts, v->nelts * v->size);

    return elts;
}


static int
mesh_cmp_labels(const void *one, const void *two)
{
    const mesh_label_t  *a = one;
    const mesh_label_t  *b = two;

    return strcmp(a->key, b->key);
}


/*
 * The packed form: the whole model deep-copied into one block, every
 * pointer written as an offset from the block's start (0: NULL), so that
 * the poll owner writes it once into the shared zone and a worker copies
 * it out and puts the pointers back (mesh_policies_unpack) instead of
 * parsing JSON. Strings are NUL-terminated inside the block.
 */

typedef struct {
    char       *buf;           /* NULL: measuring */
    size_t      size;
    size_t      pos;
} mesh_pack_t;


/* room for n bytes, aligned for any field; its offset */
static size_t
mesh_pack_alloc(mesh_pack_t *pk, size_t n)
{
    size_t  off;

    pk->pos = (pk->pos + 7) & ~(size_t) 7;
    off = pk->pos;
    pk->pos += n;

    if (pk->buf && pk->pos <= pk->size) {
        memset(pk->buf + off, 0, n);
    }

    return off;
}


static void *
mesh_pack_at(mesh_pack_t *pk, size_t off)
{
    return pk->buf ? pk->buf + off : NULL;
}


/* a string's offset, as a pointer-sized field */
static void
mesh_pack_str(mesh_pack_t *pk, const char *s, const char **field)
{
    size_t  off, len;

    if (s == NULL) {
        return;                 /* 0: NULL, memset above */
    }

    len = strlen(s) + 1;
    off = mesh_pack_alloc(pk, len);

    if (pk->buf) {
        memcpy(pk->buf + off, s, len);
        *field = (const char *) (uintptr_t) off;
    }
}


/* an array of n elements of size; the field gets its offset */
static size_t
mesh_pack_array(mesh_pack_t *pk, const void *from, size_t n, size_t size,
    void *field)
{
    size_t  off;

    if (n == 0) {
        if (pk->buf) {
            *(uintptr_t *) field = 0;     /* no stray pointer */
        }

        return 0;
    }

    off = mesh_pack_alloc(pk, n * size);

    if (pk->buf) {
        memcpy(pk->buf + off, from, n * size);
        *(uintptr_t *) field = (uintptr_t) off;
    }

    return off;
}


static void
mesh_pack_traffic(mesh_pack_t *pk, const mesh_traffic_policy_t *from,
    mesh_traffic_policy_t *to)
{
    const char  *tmp, **field;

    field = to ? &to->hash_name : &tmp;
    mesh_pack_str(pk, from->hash_name, field);
}


static void
mesh_pack_match(mesh_pack_t *pk, const mesh_string_match_t *from,
    mesh_string_match_t *to)
{
    const char  *tmp;

    mesh_pack_str(pk, from->value, to ? &to->value : &tmp);

    if (to) {
        to->regex = NULL;       /* each worker compiles its own */
    }
}


static void
mesh_policies_pack_into(mesh_pack_t *pk, const mesh_policies_t *p)
{
    size_t                    i, k, h, m, top, off, off2, off3;
    mesh_policies_t          *tp;
    mesh_destination_rule_t  *dr;
    mesh_subset_t            *sb;
    mesh_virtual_service_t   *vs;
    mesh_http_route_t        *rt;
    mesh_match_t             *ma;
    mesh_header_match_t      *hm;
    mesh_destination_t       *ds;
    const char              **hosts, *tmp;
    mesh_label_t             *lb;

#define MESH_AT(type, off)  ((type *) mesh_pack_at(pk, off))
#define MESH_F(ptr, f)      ((ptr) ? (void *) &(ptr)->f : (void *) &tmp)

    top = mesh_pack_alloc(pk, sizeof(mesh_policies_t));
    tp = MESH_AT(mesh_policies_t, top);

    if (tp) {
        tp->nrules = p->nrules;
        tp->nvss = p->nvss;
    }

    off = mesh_pack_array(pk, p->rules, p->nrules,
                          sizeof(mesh_destination_rule_t), MESH_F(tp, rules));

    for (i = 0; i < p->nrules; i++) {
        dr = MESH_AT(mesh_destination_rule_t,
                     off + i * sizeof(mesh_destination_rule_t));

        mesh_pack_str(pk, p->rules[i].policy, MESH_F(dr, policy));
        mesh_pack_str(pk, p->rules[i].name, MESH_F(dr, name));
        mesh_pack_str(pk, p->rules[i].host, MESH_F(dr, host));
        mesh_pack_traffic(pk, &p->rules[i].traffic, dr ? &dr->traffic : NULL);

        off2 = mesh_pack_array(pk, p->rules[i].subsets, p->rules[i].nsubsets,
                               sizeof(mesh_subset_t), MESH_F(dr, subsets));

        for (k = 0; k < p->rules[i].nsubsets; k++) {
            sb = MESH_AT(mesh_subset_t, off2 + k * sizeof(mesh_subset_t));

            mesh_pack_str(pk, p->rules[i].subsets[k].name, MESH_F(sb, name));
            mesh_pack_traffic(pk, &p->rules[i].subsets[k].policy,
                              sb ? &sb->policy : NULL);

            off3 = mesh_pack_array(pk, p->rules[i].subsets[k].labels,
                                   p->rules[i].subsets[k].nlabels,
                                   sizeof(mesh_label_t), MESH_F(sb, labels));

            for (h = 0; h < p->rules[i].subsets[k].nlabels; h++) {
                lb = MESH_AT(mesh_label_t, off3 + h * sizeof(mesh_label_t));
                mesh_pack_str(pk, p->rules[i].subsets[k].labels[h].key,
                              MESH_F(lb, key));
                mesh_pack_str(pk, p->rules[i].subsets[k].labels[h].value,
                              MESH_F(lb, value));
            }
        }
    }

    off = mesh_pack_array(pk, p->vss, p->nvss,
                          sizeof(mesh_virtual_service_t), MESH_F(tp, vss));

    for (i = 0; i < p->nvss; i++) {
        vs = MESH_AT(mesh_virtual_service_t,
                     off + i * sizeof(mesh_virtual_service_t));

        mesh_pack_str(pk, p->vss[i].policy, MESH_F(vs, policy));
        mesh_pack_str(pk, p->vss[i].name, MESH_F(vs, name));

        off2 = mesh_pack_array(pk, p->vss[i].hosts, p->vss[i].nhosts,
                               sizeof(char *), MESH_F(vs, hosts));

        for (k = 0; k < p->vss[i].nhosts; k++) {
            hosts = MESH_AT(const char *, off2 + k * sizeof(char *));
            mesh_pack_str(pk, p->vss[i].hosts[k], hosts ? hosts : &tmp);
        }

        off2 = mesh_pack_array(pk, p->vss[i].http, p->vss[i].nhttp,
                               sizeof(mesh_http_route_t), MESH_F(vs, http));

        for (k = 0; k < p->vss[i].nhttp; k++) {
            rt = MESH_AT(mesh_http_route_t,
                         off2 + k * sizeof(mesh_http_route_t));

            mesh_pack_str(pk, p->vss[i].http[k].name, MESH_F(rt, name));

            off3 = mesh_pack_array(pk, p->vss[i].http[k].routes,
                                   p->vss[i].http[k].nroutes,
                                   sizeof(mesh_destination_t),
                                   MESH_F(rt, routes));

            for (h = 0; h < p->vss[i].http[k].nroutes; h++) {
                ds = MESH_AT(mesh_destination_t,
                             off3 + h * sizeof(mesh_destination_t));
                mesh_pack_str(pk, p->vss[i].http[k].routes[h].subset,
                              MESH_F(ds, subset));
                mesh_pack_str(pk, p->vss[i].http[k].routes[h].host,
                              MESH_F(ds, host));
            }

            off3 = mesh_pack_array(pk, p->vss[i].http[k].matches,
                                   p->vss[i].http[k].nmatches,
                                   sizeof(mesh_match_t), MESH_F(rt, matches));

            for (h = 0; h < p->vss[i].http[k].nmatches; h++) {
                const mesh_match_t  *fm = &p->vss[i].http[k].matches[h];
                size_t               uo, ho;

                ma = MESH_AT(mesh_match_t, off3 + h * sizeof(mesh_match_t));

                if (fm->uri) {
                    uo = mesh_pack_array(pk, fm->uri, 1,
                                         sizeof(mesh_string_match_t),
                                         MESH_F(ma, uri));
                    mesh_pack_match(pk, fm->uri,
                                    MESH_AT(mesh_string_match_t, uo));
                }

                ho = mesh_pack_array(pk, fm->headers, fm->nheaders,
                                     sizeof(mesh_header_match_t),
                                     MESH_F(ma, headers));

                for (m = 0; m < fm->nheaders; m++) {
                    hm = MESH_AT(mesh_header_match_t,
                                 ho + m * sizeof(mesh_header_match_t));
                    mesh_pack_str(pk, fm->headers[m].name, MESH_F(hm, name));
                    mesh_pack_match(pk, &fm->headers[m].match,
                                    hm ? &hm->match : NULL);
                }
            }
        }
    }

    if (tp) {
        tp->arena = NULL;
        tp->regexes = NULL;
        tp->nregexes = 0;
    }

#undef MESH_AT
#undef MESH_F
}


size_t
mesh_policies_pack(const mesh_policies_t *p, void *buf, size_t size)
{
    mesh_pack_t  pk;

    pk.buf = NULL;
    pk.size = 0;
    pk.pos = 0;

    mesh_policies_pack_into(&pk, p);

    if (buf == NULL) {
        return pk.pos;
    }

    if (size < pk.pos) {
        return 0;
    }

    pk.buf = buf;
    pk.size = size;
    pk.pos = 0;

    mesh_policies_pack_into(&pk, p);

    return pk.pos;
}


/* the relocation of one pointer field: 0 on a bad offset */
typedef struct {
    char       *base;
    size_t      size;
    int         bad;
} mesh_unpack_t;


static void *
mesh_unpack_ptr(mesh_unpack_t *u, void *field, size_t need)
{
    uintptr_t  off = *(uintptr_t *) field;

    if (off == 0) {
        *(void **) field = NULL;
        return NULL;
    }

    if (off >= u->size || need > u->size - off) {
        u->bad = 1;
        *(void **) field = NULL;
        return NULL;
    }

    *(void **) field = u->base + off;

    return u->base + off;
}


static void
mesh_unpack_str(mesh_unpack_t *u, const char **field)
{
    char  *s;

    s = mesh_unpack_ptr(u, (void *) field, 1);

    if (s && memchr(s, '\0', u->size - (s - u->base)) == NULL) {
        u->bad = 1;
        *field = NULL;
    }
}


/* a pointer to n elements, checked to lie in the block */
static void *
mesh_unpack_array(mesh_unpack_t *u, void *field, size_t n, size_t size)
{
    if (n && size > (size_t) -1 / n) {
        u->bad = 1;
        return NULL;
    }

    return mesh_unpack_ptr(u, field, n * size);
}


static int
mesh_unpack_match(mesh_unpack_t *u, mesh_string_match_t *m, mesh_vec_t *res,
    char *err, size_t errlen)
{
    mesh_regex_t  *re, **slot;

    mesh_unpack_str(u, &m->value);

    if (u->bad || m->value == NULL || m->len != strlen(m->value)) {
        u->bad = 1;
        return -1;
    }

    m->regex = NULL;

    if (m->kind != MESH_MATCH_REGEX) {
        return 0;
    }

    re = mesh_regex_compile(m->value, m->len, err, errlen);
    if (re == NULL) {
        return -1;
    }

    if (res->nelts == res->nalloc) {
        size_t   n = res->nalloc ? 2 * res->nalloc : 8;
        void    *e = realloc(res->elts, n * sizeof(mesh_regex_t *));

        if (e == NULL) {
            mesh_regex_free(re);
            snprintf(err, errlen, "out of memory");
            return -1;
        }

        res->elts = e;
        res->nalloc = n;
    }

    slot = (mesh_regex_t **) res->elts + res->nelts++;
    *slot = re;
    m->regex = re;

    return 0;
}


mesh_policies_t *
mesh_policies_unpack(void *buf, size_t size, char *err, size_t errlen)
{
    size_t                    i, k, h, m;
    mesh_vec_t                res;
    mesh_unpack_t             u;
    mesh_policies_t          *p;
    mesh_destination_rule_t  *dr;
    mesh_subset_t            *sb;
    mesh_virtual_service_t   *vs;
    mesh_http_route_t        *rt;
    mesh_match_t             *ma;

    snprintf(err, errlen, "the packed policies are damaged");

    if (buf == NULL || size < sizeof(mesh_policies_t)
        || ((uintptr_t) buf & 7))
    {
        return NULL;
    }

    memset(&res, 0, sizeof(mesh_vec_t));
    res.size = sizeof(mesh_regex_t *);

    u.base = buf;
    u.size = size;
    u.bad = 0;

    p = buf;

    dr = mesh_unpack_array(&u, &p->rules, p->nrules,
                           sizeof(mesh_destination_rule_t));

    for (i = 0; dr && !u.bad && i < p->nrules; i++) {
        mesh_unpack_str(&u, &dr[i].policy);
        mesh_unpack_str(&u, &dr[i].name);
        mesh_unpack_str(&u, &dr[i].host);
        mesh_unpack_str(&u, &dr[i].traffic.hash_name);

        sb = mesh_unpack_array(&u, &dr[i].subsets, dr[i].nsubsets,
                               sizeof(mesh_subset_t));

        for (k = 0; sb && !u.bad && k < dr[i].nsubsets; k++) {
            mesh_unpack_str(&u, &sb[k].name);
            mesh_unpack_str(&u, &sb[k].policy.hash_name);

            if (mesh_unpack_array(&u, &sb[k].labels, sb[k].nlabels,
                                  sizeof(mesh_label_t)) != NULL)
            {
                for (h = 0; h < sb[k].nlabels; h++) {
                    mesh_unpack_str(&u, &sb[k].labels[h].key);
                    mesh_unpack_str(&u, &sb[k].labels[h].value);
                }
            }
        }
    }

    vs = mesh_unpack_array(&u, &p->vss, p->nvss,
                           sizeof(mesh_virtual_service_t));

    for (i = 0; vs && !u.bad && i < p->nvss; i++) {
        mesh_unpack_str(&u, &vs[i].policy);
        mesh_unpack_str(&u, &vs[i].name);

        if (mesh_unpack_array(&u, (void *) &vs[i].hosts, vs[i].nhosts,
                              sizeof(char *)) != NULL)
        {
            for (k = 0; k < vs[i].nhosts; k++) {
                mesh_unpack_str(&u, &vs[i].hosts[k]);
            }
        }

        rt = mesh_unpack_array(&u, &vs[i].http, vs[i].nhttp,
                               sizeof(mesh_http_route_t));

        for (k = 0; rt && !u.bad && k < vs[i].nhttp; k++) {
            mesh_unpack_str(&u, &rt[k].name);

            if (mesh_unpack_array(&u, &rt[k].routes, rt[k].nroutes,
                                  sizeof(mesh_destination_t)) != NULL)
            {
                for (h = 0; h < rt[k].nroutes; h++) {
                    mesh_unpack_str(&u, &rt[k].routes[h].subset);
                    mesh_unpack_str(&u, &rt[k].routes[h].host);
                }
            }

            ma = mesh_unpack_array(&u, &rt[k].matches, rt[k].nmatches,
                                   sizeof(mesh_match_t));

            for (h = 0; ma && !u.bad && h < rt[k].nmatches; h++) {
                if (mesh_unpack_array(&u, &ma[h].uri, 1,
                                      sizeof(mesh_string_match_t))
                    && mesh_unpack_match(&u, ma[h].uri, &res, err, errlen)
                       != 0)
                {
                    goto fail;
                }

                if (mesh_unpack_array(&u, &ma[h].headers, ma[h].nheaders,
                                      sizeof(mesh_header_match_t))
                    == NULL)
                {
                    continue;
                }

                for (m = 0; m < ma[h].nheaders; m++) {
                    mesh_unpack_str(&u, &ma[h].headers[m].name);

                    if (ma[h].headers[m].name == NULL
                        || strlen(ma[h].headers[m].name)
                           != ma[h].headers[m].name_len)
                    {
                        goto fail;
                    }

                    if (mesh_unpack_match(&u, &ma[h].headers[m].match, &res,
                                          err, errlen)
                        != 0)
                    {
                        goto fail;
                    }
                }
            }
        }
    }

    if (u.bad) {
        goto fail;
    }

    p->arena = NULL;
    p->regexes = res.elts;
    p->nregexes = res.nelts;

    err[0] = '\0';

    return p;

fail:

    for (i = 0; i < res.nelts; i++) {
        mesh_regex_free(((mesh_regex_t **) res.elts)[i]);
    }

    free(res.elts);

    return NULL;
}
