/*
 * rd_policy_vs: a VirtualService (hosts, http routes: matches, weighted
 * destinations, timeouts, retries; tcp routes by port, tls routes by
 * SNI), validated and normalized; what a route does to a request
 * besides (fault, rewrite, redirect, directResponse, headers,
 * corsPolicy) is rd_policy_vs_shape.c's.
 */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "mesh_name.h"
#include "mesh_policy.h"
#include "mesh_regex.h"
#include "rd_policy_int.h"


/* VirtualService */

int
rd_parse_string_match(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                kinds = 0;
    char               msg[RD_ERR_LEN];
    size_t             old;
    json_t            *o;
    const char        *k, *s;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;
    mesh_regex_t      *re;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "exact") != 0 && strcmp(k, "prefix") != 0
            && strcmp(k, "regex") != 0)
        {
            return rd_unknown(c, kn, k, "exact,prefix,regex", NULL);
        }

        if (rd_get_nonempty(c, v, 4096, &s) != 0) {
            return -1;
        }

        if (strcmp(k, "regex") == 0) {
            /* compiled as the module compiles it: mesh_regex */
            re = mesh_regex_compile(s, strlen(s), msg, sizeof(msg));
            if (re == NULL) {
                return rd_perr(c, v, "%s", msg);
            }

            mesh_regex_free(re);
        }

        rd_jset(o, k, json_string(s));
        kinds++;
        rd_path_pop(c, old);
    }

    if (kinds != 1) {
        return rd_perr(c, n, "needs exactly one of exact, prefix, regex");
    }

    return 0;
}


static int
rd_parse_match(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    int                b;
    size_t             old, old2;
    json_t            *sm, *hdrs, *labels;
    const char        *k, *h;
    yaml_node_t       *kn, *v, *hk, *hv;
    yaml_node_pair_t  *p, *hp;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "uri") == 0) {
            sm = NULL;
            if (rd_parse_string_match(c, v, &sm) != 0) {
                json_decref(sm);
                return -1;
            }
            rd_jset(o, "uri", sm);

        } else if (strcmp(k, "headers") == 0) {
            if (rd_check_map(c, v) != 0) {
                return -1;
            }

            if (v->data.mapping.pairs.top == v->data.mapping.pairs.start) {
                return rd_perr(c, v, "must hold at least one header");
            }

            hdrs = rd_jobj();
            rd_jset(o, "headers", hdrs);

            rd_foreach_pair(c, v, hp, h, hk, hv) {
                old2 = rd_path_key(c, h);

                /* names are case-insensitive: taken in any case (Istio's
                 * own pages write "Foo"), kept lowercase */
                if (rd_get_header_name(c, hk, h, 0) != 0) {
                    return -1;
                }

                for (char *lc = (char *) h; *lc; lc++) {
                    *lc = (char) tolower((unsigned char) *lc);
                }

                sm = NULL;
                if (rd_parse_string_match(c, hv, &sm) != 0) {
                    json_decref(sm);
                    return -1;
                }
                rd_jset(hdrs, h, sm);
                rd_path_pop(c, old2);
            }

        } else if (strcmp(k, "ignoreUriCase") == 0) {
            /* carried when true: false is what no flag means */
            if (rd_get_bool(c, v, &b) != 0) {
                return -1;
            }

            if (b) {
                rd_jset(o, "ignoreUriCase", json_true());
            }

        } else if (strcmp(k, "sourceLabels") == 0) {
            /* the client workload's labels: the nginx's mesh_labels */
            if (rd_parse_labels(c, v, 1, &labels) != 0) {
                return -1;
            }
            rd_jset(o, "sourceLabels", labels);

        } else {
            return rd_unknown(c, kn, k, "uri,headers,ignoreUriCase,"
                              "sourceLabels", "scheme,method,authority,port,"
                              "gateways,queryParams,withoutHeaders,"
                              "sourceNamespace,statPrefix,name");
        }

        rd_path_pop(c, old);
    }

    if (json_object_get(o, "uri") == NULL
        && json_object_get(o, "headers") == NULL
        && json_object_get(o, "sourceLabels") == NULL)
    {
        return rd_perr(c, n, "needs uri, headers or sourceLabels");
    }

    return 0;
}


/* a destination's port: {number: 1..65535} */
static int
rd_parse_port(rd_pctx_t *c, yaml_node_t *n, long long *port)
{
    size_t             old;
    const char        *k;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    *port = 0;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "number") != 0) {
            return rd_unknown(c, kn, k, "number", NULL);
        }

        if (rd_get_int(c, v, 1, 65535, port) != 0) {
            return -1;
        }

        rd_path_pop(c, old);
    }

    if (*port == 0) {
        return rd_missing(c, n, "number");
    }

    return 0;
}


static int
rd_parse_destination(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    long long          port = 0;
    size_t             old;
    const char        *k, *s, *host = NULL, *subset = NULL;
    yaml_node_t       *kn, *v, *subset_node = NULL;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "host") == 0) {
            if (rd_get_host(c, v, &s) != 0) {
                return -1;
            }
            host = s;

        } else if (strcmp(k, "subset") == 0) {
            if (rd_get_name(c, v, "subset name", &s) != 0) {
                return -1;
            }
            subset = s;
            subset_node = v;

        } else if (strcmp(k, "port") == 0) {
            if (rd_parse_port(c, v, &port) != 0) {
                return -1;
            }

        } else {
            return rd_unknown(c, kn, k, "host,subset,port", NULL);
        }

        rd_path_pop(c, old);
    }

    if (host == NULL) {
        return rd_missing(c, n, "host");
    }

    rd_jset(o, "host", json_string(host));

    if (port) {
        rd_jset(o, "port", json_integer(port));
    }

    if (subset) {
        old = rd_path_key(c, "subset");
        rd_ref_add(c, &c->routes, RD_POLICY_VS, subset_node, host, subset);
        rd_path_pop(c, old);
        rd_jset(o, "subset", json_string(subset));
    }

    return 0;
}


static int
rd_parse_route(rd_pctx_t *c, yaml_node_t *n, json_t *o, yaml_node_t **wnode)
{
    size_t             old;
    json_t            *d, *h;
    long long          w;
    const char        *k;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    *wnode = NULL;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "destination") == 0) {
            d = rd_jobj();
            rd_jset(o, "destination", d);
            if (rd_parse_destination(c, v, d) != 0) {
                return -1;
            }

        } else if (strcmp(k, "weight") == 0) {
            if (rd_get_int(c, v, 0, 100, &w) != 0) {
                return -1;
            }
            rd_jset(o, "weight", json_integer(w));
            *wnode = v;

        } else if (strcmp(k, "headers") == 0 && !c->l4_route) {
            h = NULL;
            if (rd_parse_headers(c, v, &h) != 0) {
                json_decref(h);
                return -1;
            }

            if (json_object_size(h)) {
                rd_jset(o, k, h);

            } else {
                json_decref(h);
            }

        } else {
            return rd_unknown(c, kn, k, c->l4_route ? "destination,weight"
                                            : "destination,weight,headers",
                              NULL);
        }

        rd_path_pop(c, old);
    }

    if (json_object_get(o, "destination") == NULL) {
        return rd_missing(c, n, "destination");
    }

    return 0;
}


static int
rd_parse_routes(rd_pctx_t *c, yaml_node_t *n, json_t *routes)
{
    size_t             i, nr, old, last = 0;
    json_t            *ro;
    long long          sum = 0;
    yaml_node_t       *v, *wnode, *last_w = NULL;
    yaml_node_item_t  *it;

    if (rd_check_seq(c, n, 1) != 0) {
        return -1;
    }

    nr = (size_t) (n->data.sequence.items.top - n->data.sequence.items.start);

    rd_foreach_item(c, n, it, i, v) {
        old = rd_path_idx(c, i);
        ro = rd_jobj();
        rd_jpush(routes, ro);

        if (rd_parse_route(c, v, ro, &wnode) != 0) {
            return -1;
        }

        if (wnode == NULL) {
            if (nr > 1) {
                return rd_missing(c, v, "weight");
            }
            rd_jset(ro, "weight", json_integer(100));
            sum = 100;

        } else {
            sum += json_integer_value(json_object_get(ro, "weight"));
            last_w = wnode;
            last = i;
        }

        rd_path_pop(c, old);
    }

    if (sum != 100) {
        rd_path_idx(c, last);
        rd_path_key(c, "weight");
        return rd_perr(c, last_w, "the weights of the routes add up to %lld, "
                       "not 100", sum);
    }

    return 0;
}


/*
 * Istio's retryOn names nginx can honour: its own (mesh_retry_on) and an
 * alias; the gRPC statuses it cannot (nginx proxies HTTP, it reads no
 * grpc-status to retry on)
 */
static const struct {
    const char  *name;
    const char  *as;
} rd_retry_alias[] = {
    /* an HTTP/2 stream refused before the upstream worked on it: to
     * nginx's HTTP/1.1 upstream, a connection closed without a response */
    { "refused-stream", "reset" },
    { NULL, NULL }
};

static const char  rd_retry_grpc[] =
    "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable";


static int
rd_in_csv(const char *list, const char *s)
{
    size_t       n = strlen(s);
    const char  *p;

    for (p = list; p; p = strchr(p, ','), p = p ? p + 1 : NULL) {
        if (strncmp(p, s, n) == 0 && (p[n] == ',' || p[n] == '\0')) {
            return 1;
        }
    }

    return 0;
}


static int
rd_parse_retry_on(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    size_t       len, i, k;
    json_t      *a, *seen;
    const char  *s, *p, *e, *as;
    char         cond[64];

    if (rd_get_nonempty(c, n, 1024, &s) != 0) {
        return -1;
    }

    a = rd_jarr();
    *out = a;
    seen = rd_jarr();

    for (p = s; ; p = e + 1) {
        e = strchr(p, ',');
        if (e == NULL) {
            e = p + strlen(p);
        }

        while (p < e && *p == ' ') {
            p++;
        }
        len = (size_t) (e - p);
        while (len && p[len - 1] == ' ') {
            len--;
        }

        if (len == 0) {
            json_decref(seen);
            return rd_perr(c, n, "\"%.64s\" holds an empty condition", s);
        }

        snprintf(cond, sizeof(cond), "%.*s", (int) len, p);

        for (i = 0; i < json_array_size(seen); i++) {
            if (strcmp(json_string_value(json_array_get(seen, i)), cond)
                == 0)
            {
                json_decref(seen);
                return rd_perr(c, n, "retry condition \"%s\" is listed "
                               "twice", cond);
            }
        }

        rd_jpush(seen, json_string(cond));

        as = cond;

        for (k = 0; rd_retry_alias[k].name; k++) {
            if (strcmp(cond, rd_retry_alias[k].name) == 0) {
                as = rd_retry_alias[k].as;
                break;
            }
        }

        /* the module's own list: what one accepts the other reads */
        for (i = 0; mesh_retry_on[i].name; i++) {
            if (strcmp(as, mesh_retry_on[i].name) == 0) {
                break;
            }
        }

        if (mesh_retry_on[i].name == NULL) {
            json_decref(seen);

            if (rd_in_csv(rd_retry_grpc, cond)) {
                return rd_perr(c, n, "retry condition \"%s\" is a gRPC "
                               "status, which nginx cannot retry on; "
                               "supported: 5xx, gateway-error, "
                               "connect-failure, reset, refused-stream",
                               cond);
            }

            return rd_perr(c, n, "retry condition \"%.64s\" is not "
                           "supported%s; supported: 5xx, gateway-error, "
                           "connect-failure, reset, refused-stream", cond,
                           strcmp(cond, "retriable-4xx") == 0
                           ? " (nginx cannot retry on 409)" : "");
        }

        /* an alias and its name both given: once */
        for (i = 0; i < json_array_size(a); i++) {
            if (strcmp(json_string_value(json_array_get(a, i)), as) == 0) {
                break;
            }
        }

        if (i == json_array_size(a)) {
            rd_jpush(a, json_string(as));
        }

        if (*e == '\0') {
            break;
        }
    }

    json_decref(seen);
    return 0;
}


static int
rd_parse_retries(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    size_t             old;
    json_t            *o, *ro, *at;
    int64_t            ms;
    long long          i;
    const char        *k;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "attempts") == 0) {
            if (rd_get_int(c, v, 0, 100, &i) != 0) {
                return -1;
            }
            rd_jset(o, k, json_integer(i));

        } else if (strcmp(k, "perTryTimeout") == 0) {
            if (rd_get_duration(c, v, 1, &ms) != 0) {
                return -1;
            }
            rd_jset(o, "perTryTimeoutMs", json_integer(ms));

        } else if (strcmp(k, "retryOn") == 0) {
            ro = NULL;
            if (rd_parse_retry_on(c, v, &ro) != 0) {
                json_decref(ro);
                return -1;
            }
            rd_jset(o, k, ro);

        } else {
            return rd_unknown(c, kn, k, "attempts,perTryTimeout,retryOn",
                              "retryRemoteLocalities,backoff");
        }

        rd_path_pop(c, old);
    }

    /*
     * Istio's retryOn when only attempts is given:
     * "connect-failure,refused-stream,unavailable,cancelled,
     * retriable-status-codes" (with 503): what nginx can honour of it
     */
    at = json_object_get(o, "attempts");

    if (at && json_integer_value(at) > 0
        && json_object_get(o, "retryOn") == NULL)
    {
        ro = rd_jarr();
        rd_jpush(ro, json_string("connect-failure"));
        rd_jpush(ro, json_string("reset"));
        rd_jset(o, "retryOn", ro);
    }

    return 0;
}


/*
 * gateways: "mesh" (the sidecars: every nginx's mesh upstreams), or a
 * Gateway, "NAME" (in the VirtualService's namespace) or "NS/NAME";
 * normalized to "mesh" and "NS/NAME", each once. *mesh: "mesh" is one.
 */
static int
rd_parse_gateways(rd_pctx_t *c, yaml_node_t *n, json_t *out, int *mesh)
{
    char               gw[RD_GATEWAY_LEN];
    size_t             i, j, old;
    const char        *s, *slash;
    yaml_node_t       *iv;
    yaml_node_item_t  *it;

    if (rd_check_seq(c, n, 1) != 0) {
        return -1;
    }

    *mesh = 0;

    rd_foreach_item(c, n, it, i, iv) {
        old = rd_path_idx(c, i);

        if (rd_get_str(c, iv, &s) != 0) {
            return -1;
        }

        slash = strchr(s, '/');

        if (strcmp(s, "mesh") == 0) {
            *mesh = 1;
            snprintf(gw, sizeof(gw), "mesh");

        } else if (slash == NULL && mesh_name_valid(s, strlen(s))) {
            snprintf(gw, sizeof(gw), "%s/%s", c->doc_ns, s);

        } else if (slash && mesh_name_valid(s, slash - s)
                   && strchr(s, '.') == NULL
                   && mesh_name_valid(slash + 1, strlen(slash + 1)))
        {
            snprintf(gw, sizeof(gw), "%s", s);

        } else {
            return rd_perr(c, iv, "\"%.64s\" is not a gateway: \"mesh\", "
                           "a Gateway's NAME or NAMESPACE/NAME", s);
        }

        for (j = 0; j < json_array_size(out); j++) {
            if (strcmp(json_string_value(json_array_get(out, j)), gw) == 0) {
                return rd_perr(c, iv, "gateway \"%s\" is listed twice", gw);
            }
        }

        rd_jpush(out, json_string(gw));
        rd_path_pop(c, old);
    }

    return 0;
}


/*
 * http[].delegate: the VirtualService (one without hosts) whose routes
 * stand for this one, {"name", "namespace"} (the root's namespace when
 * not given); only one level: a delegate cannot delegate.
 */
static int
rd_parse_delegate(rd_pctx_t *c, yaml_node_t *kn, yaml_node_t *n,
    json_t **out)
{
    size_t             old;
    const char        *k, *s, *name = NULL, *ns = NULL;
    yaml_node_t       *kk, *v;
    yaml_node_pair_t  *p;

    if (c->vs_delegate) {
        return rd_perr(c, kn, "a delegate VirtualService (one without "
                       "hosts) cannot delegate: Istio supports one level "
                       "of delegation");
    }

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kk, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "name") == 0) {
            if (rd_get_name(c, v, "VirtualService name", &s) != 0) {
                return -1;
            }
            name = s;

        } else if (strcmp(k, "namespace") == 0) {
            if (rd_get_name(c, v, "namespace", &s) != 0) {
                return -1;
            }

            if (strchr(s, '.') != NULL) {
                return rd_perr(c, v, "namespace \"%s\": a namespace is a "
                               "DNS label, without dots", s);
            }
            ns = s;

        } else {
            return rd_unknown(c, kk, k, "name,namespace", NULL);
        }

        rd_path_pop(c, old);
    }

    if (name == NULL) {
        return rd_missing(c, n, "name");
    }

    if (ns == NULL) {
        ns = c->doc_ns;
    }

    *out = rd_jobj();
    rd_jset(*out, "name", json_string(name));
    rd_jset(*out, "namespace", json_string(ns));
    rd_ref_add(c, &c->delegates, RD_POLICY_VS, n, ns, name);

    return 0;
}


/* the parts of an http item rd_parse_http() keeps, to check and write */
enum {
    RD_HT_ROUTE = 0,
    RD_HT_RETRIES,
    RD_HT_FAULT,
    RD_HT_REWRITE,
    RD_HT_REDIRECT,
    RD_HT_DIRECT,
    RD_HT_HEADERS,
    RD_HT_CORS,
    RD_HT_MIRRORS,
    RD_HT_DELEGATE,
    RD_HT_N
};

static const char *const  rd_ht_names[] = {
    "route", "retries", "fault", "rewrite", "redirect", "directResponse",
    "headers", "corsPolicy", "mirrors", "delegate"
};


/*
 * A route answered by nginx (redirect, directResponse) has no
 * destination to send to, nor to rewrite for or fail on the way: Istio
 * refuses route, fault and rewrite with either, and both together.
 */
static int
rd_http_conflicts(rd_pctx_t *c, yaml_node_t **keys)
{
    int                answer, i;
    size_t             old;
    static const int   others[] = { RD_HT_ROUTE, RD_HT_FAULT, RD_HT_REWRITE,
                                    RD_HT_MIRRORS };
    static const int   routed[] = { RD_HT_ROUTE, RD_HT_REDIRECT,
                                    RD_HT_DIRECT };

    /* a root's route takes its routes from the delegate (Istio refuses
     * route and redirect with delegate; a directResponse would answer
     * what the delegate routes) */
    if (keys[RD_HT_DELEGATE]) {
        for (i = 0; i < (int) (sizeof(routed) / sizeof(routed[0])); i++) {
            if (keys[routed[i]] == NULL) {
                continue;
            }

            old = rd_path_key(c, rd_ht_names[routed[i]]);
            rd_perr(c, keys[routed[i]], "a route with delegate takes its "
                    "routes from the delegate VirtualService: it cannot "
                    "have %s too", rd_ht_names[routed[i]]);
            rd_path_pop(c, old);
            return -1;
        }

        return 0;
    }

    answer = keys[RD_HT_REDIRECT] ? RD_HT_REDIRECT
             : keys[RD_HT_DIRECT] ? RD_HT_DIRECT : -1;

    if (answer < 0) {
        return 0;
    }

    if (keys[RD_HT_REDIRECT] && keys[RD_HT_DIRECT]) {
        old = rd_path_key(c, "directResponse");
        rd_perr(c, keys[RD_HT_DIRECT], "a route has one of redirect and "
                "directResponse, not both");
        rd_path_pop(c, old);
        return -1;
    }

    for (i = 0; i < (int) (sizeof(others) / sizeof(others[0])); i++) {
        if (keys[others[i]] == NULL) {
            continue;
        }

        old = rd_path_key(c, rd_ht_names[others[i]]);
        rd_perr(c, keys[others[i]], "a route with %s is answered by nginx: "
                "it cannot have %s too", rd_ht_names[answer],
                rd_ht_names[others[i]]);
        rd_path_pop(c, old);
        return -1;
    }

    return 0;
}


/* the module copies a request to at most this many (a bit each) */
#define RD_MIRRORS_MAX  32


/*
 * mirrors[]: {destination, percentage}; the percentage is 100 when not
 * given, as Istio takes it
 */
static int
rd_parse_mirror_list(rd_pctx_t *c, yaml_node_t *n, json_t *a)
{
    size_t             i, old, old2;
    json_t            *mo, *d;
    long long          ppm;
    const char        *k;
    yaml_node_t       *kn, *v, *iv, *dest;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p;

    if (rd_check_seq(c, n, 1) != 0) {
        return -1;
    }

    if (n->data.sequence.items.top - n->data.sequence.items.start
        > RD_MIRRORS_MAX)
    {
        return rd_perr(c, n, "at most %d mirrors", RD_MIRRORS_MAX);
    }

    rd_foreach_item(c, n, it, i, iv) {
        old = rd_path_idx(c, i);

        if (rd_check_map(c, iv) != 0) {
            return -1;
        }

        mo = rd_jobj();
        rd_jpush(a, mo);
        ppm = RD_PPM_ALL;
        dest = NULL;

        rd_foreach_pair(c, iv, p, k, kn, v) {
            old2 = rd_path_key(c, k);

            if (strcmp(k, "destination") == 0) {
                d = rd_jobj();
                rd_jset(mo, "destination", d);
                if (rd_parse_destination(c, v, d) != 0) {
                    return -1;
                }
                dest = v;

            } else if (strcmp(k, "percentage") == 0) {
                if (rd_parse_percentage(c, v, &ppm) != 0) {
                    return -1;
                }

            } else {
                return rd_unknown(c, kn, k, "destination,percentage", NULL);
            }

            rd_path_pop(c, old2);
        }

        if (dest == NULL) {
            return rd_missing(c, iv, "destination");
        }

        rd_jset(mo, "ppm", json_integer(ppm));
        rd_path_pop(c, old);
    }

    return 0;
}


/*
 * The deprecated single mirror: "mirror" with "mirrorPercentage" (or the
 * older "mirrorPercent" / "mirror_percent", whole percents), as one item
 * of "mirrors"
 */
static int
rd_parse_mirror(rd_pctx_t *c, yaml_node_t **keys, yaml_node_t *mirror,
    yaml_node_t *pct, const char *pct_key, json_t **out)
{
    size_t      old;
    json_t     *mo, *d;
    long long   ppm, pc;

    if (mirror == NULL) {
        if (pct) {
            old = rd_path_key(c, pct_key);
            rd_perr(c, pct, "%s without mirror", pct_key);
            rd_path_pop(c, old);
            return -1;
        }

        return 0;
    }

    if (*out) {
        old = rd_path_key(c, "mirrors");
        rd_perr(c, keys[RD_HT_MIRRORS], "give one of mirror and mirrors, "
                "not both");
        rd_path_pop(c, old);
        return -1;
    }

    if (keys[RD_HT_REDIRECT] || keys[RD_HT_DIRECT]) {
        old = rd_path_key(c, "mirror");
        rd_perr(c, mirror, "a route with %s is answered by nginx: it cannot "
                "have mirror too",
                keys[RD_HT_REDIRECT] ? "redirect" : "directResponse");
        rd_path_pop(c, old);
        return -1;
    }

    ppm = RD_PPM_ALL;

    if (pct) {
        old = rd_path_key(c, pct_key);

        if (strcmp(pct_key, "mirrorPercentage") == 0) {
            if (rd_parse_percentage(c, pct, &ppm) != 0) {
                return -1;
            }

        } else {
            if (rd_get_int(c, pct, 0, 100, &pc) != 0) {
                return -1;
            }
            ppm = pc * 10000;
        }

        rd_path_pop(c, old);
    }

    *out = rd_jarr();
    mo = rd_jobj();
    rd_jpush(*out, mo);
    d = rd_jobj();
    rd_jset(mo, "destination", d);

    old = rd_path_key(c, "mirror");

    if (rd_parse_destination(c, mirror, d) != 0) {
        return -1;
    }

    rd_path_pop(c, old);
    rd_jset(mo, "ppm", json_integer(ppm));

    return 0;
}


static int
rd_parse_http(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    int                rc, i, part;
    size_t             j, old, old2;
    json_t            *match = NULL, *parts[RD_HT_N], *mo;
    int64_t            ms = -1;
    const char        *k, *s, *name = NULL, *pct_key = NULL;
    yaml_node_t       *kn, *v, *iv, *keys[RD_HT_N], *mirror = NULL,
                      *pct = NULL;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    for (i = 0; i < RD_HT_N; i++) {
        parts[i] = NULL;
        keys[i] = NULL;
    }

    rc = -1;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        for (part = 0; part < RD_HT_N; part++) {
            if (strcmp(k, rd_ht_names[part]) == 0) {
                keys[part] = kn;
                break;
            }
        }

        if (strcmp(k, "name") == 0) {
            if (rd_get_nonempty(c, v, RD_NAME_MAX, &s) != 0) {
                goto done;
            }
            name = s;

        } else if (strcmp(k, "match") == 0) {
            if (rd_check_seq(c, v, 1) != 0) {
                goto done;
            }

            match = rd_jarr();

            rd_foreach_item(c, v, it, j, iv) {
                old2 = rd_path_idx(c, j);
                mo = rd_jobj();
                rd_jpush(match, mo);
                if (rd_parse_match(c, iv, mo) != 0) {
                    goto done;
                }
                rd_path_pop(c, old2);
            }

        } else if (part == RD_HT_ROUTE) {
            parts[part] = rd_jarr();
            if (rd_parse_routes(c, v, parts[part]) != 0) {
                goto done;
            }

        } else if (part == RD_HT_RETRIES) {
            if (rd_parse_retries(c, v, &parts[part]) != 0) {
                goto done;
            }

        } else if (part == RD_HT_FAULT) {
            if (rd_parse_fault(c, v, &parts[part]) != 0) {
                goto done;
            }

        } else if (part == RD_HT_REWRITE) {
            if (rd_parse_rewrite(c, v, &parts[part]) != 0) {
                goto done;
            }

        } else if (part == RD_HT_REDIRECT) {
            if (rd_parse_redirect(c, v, &parts[part]) != 0) {
                goto done;
            }

        } else if (part == RD_HT_DIRECT) {
            if (rd_parse_direct_response(c, v, &parts[part]) != 0) {
                goto done;
            }

        } else if (part == RD_HT_HEADERS) {
            if (rd_parse_headers(c, v, &parts[part]) != 0) {
                goto done;
            }

        } else if (part == RD_HT_CORS) {
            if (rd_parse_cors(c, v, &parts[part]) != 0) {
                goto done;
            }

        } else if (part == RD_HT_MIRRORS) {
            parts[part] = rd_jarr();
            if (rd_parse_mirror_list(c, v, parts[part]) != 0) {
                goto done;
            }

        } else if (strcmp(k, "mirror") == 0) {
            mirror = v;

        } else if (strcmp(k, "mirrorPercentage") == 0
                   || strcmp(k, "mirrorPercent") == 0
                   || strcmp(k, "mirror_percent") == 0)
        {
            if (pct) {
                rd_perr(c, kn, "give one of mirrorPercentage, mirrorPercent "
                        "and mirror_percent (both deprecated), not two");
                goto done;
            }

            pct = v;
            pct_key = k;

        } else if (part == RD_HT_DELEGATE) {
            if (rd_parse_delegate(c, kn, v, &parts[part]) != 0) {
                goto done;
            }

        } else if (strcmp(k, "timeout") == 0) {
            if (rd_get_duration(c, v, 1, &ms) != 0) {
                goto done;
            }

        } else {
            rd_unknown(c, kn, k, "name,match,route,retries,timeout,fault,"
                       "rewrite,redirect,directResponse,headers,corsPolicy,"
                       "mirror,mirrorPercentage,mirrors,delegate", NULL);
            goto done;
        }

        rd_path_pop(c, old);
    }

    if (rd_http_conflicts(c, keys) != 0
        || rd_parse_mirror(c, keys, mirror, pct, pct_key,
                           &parts[RD_HT_MIRRORS])
           != 0)
    {
        goto done;
    }

    if (parts[RD_HT_ROUTE] == NULL && parts[RD_HT_REDIRECT] == NULL
        && parts[RD_HT_DIRECT] == NULL && parts[RD_HT_DELEGATE] == NULL)
    {
        old = rd_path_key(c, "route");
        rd_perr(c, n, "is required (or redirect, directResponse or "
                "delegate)");
        rd_path_pop(c, old);
        goto done;
    }

    if (name) {
        rd_jset(o, "name", json_string(name));
    }

    rd_jset(o, "match", match ? match : rd_jarr());
    match = NULL;

    /* a redirect or directResponse route has no "route" key */

    for (i = 0; i < RD_HT_N; i++) {
        if (parts[i] == NULL) {
            continue;
        }

        if (i == RD_HT_HEADERS && json_object_size(parts[i]) == 0) {
            continue;           /* nothing to do: not written */
        }

        rd_jset(o, rd_ht_names[i], parts[i]);
        parts[i] = NULL;
    }

    if (ms >= 0) {
        rd_jset(o, "timeoutMs", json_integer(ms));
    }

    rc = 0;

done:

    json_decref(match);

    for (i = 0; i < RD_HT_N; i++) {
        json_decref(parts[i]);
    }

    return rc;
}


/*
 * A tls[].match[] item's sniHosts: each a name, "*.SUFFIX" or "*",
 * lowercase, that one of the VirtualService's hosts covers (as Istio
 * asks): the same name, or a pattern that takes every name it takes
 */
static int
rd_parse_sni_hosts(rd_pctx_t *c, yaml_node_t *n, json_t *vs_hosts,
    json_t *out)
{
    size_t             i, j, old;
    const char        *s;
    yaml_node_t       *iv;
    yaml_node_item_t  *it;

    if (rd_check_seq(c, n, 1) != 0) {
        return -1;
    }

    rd_foreach_item(c, n, it, i, iv) {
        old = rd_path_idx(c, i);

        if (rd_get_host_pattern(c, iv, 1, &s) != 0) {
            return -1;
        }

        for (j = 0; j < json_array_size(out); j++) {
            if (strcmp(json_string_value(json_array_get(out, j)), s) == 0) {
                return rd_perr(c, iv, "sniHosts \"%s\" is listed twice", s);
            }
        }

        for (j = 0; j < json_array_size(vs_hosts); j++) {
            if (mesh_host_match(json_string_value(json_array_get(vs_hosts,
                                                                 j)),
                                s, strlen(s), 1)
                >= 0)
            {
                break;
            }
        }

        if (j == json_array_size(vs_hosts)) {
            return rd_perr(c, iv, "sniHosts \"%s\" is not one of the "
                           "VirtualService's hosts (nor under one of its "
                           "wildcards)", s);
        }

        rd_jpush(out, json_string(s));
        rd_path_pop(c, old);
    }

    return 0;
}


/*
 * A tcp[] route (vs_hosts NULL): the ports it matches (the port the
 * client connected to, as Istio's match.port is the service port), its
 * weighted destinations. A tls[] route: the TLS connections it matches,
 * by the server name of their ClientHello (sniHosts, each one of
 * vs_hosts') and the port, passed through as they are to its weighted
 * destinations.
 */
static int
rd_parse_l4(rd_pctx_t *c, yaml_node_t *n, json_t *vs_hosts, json_t *o)
{
    int                rc;
    size_t             i, old, old2, old3;
    json_t            *match = NULL, *route = NULL, *mo, *sni;
    long long          port;
    const char        *k, *mk, *need;
    yaml_node_t       *kn, *v, *iv, *mkn, *mv;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p, *mp;

    need = vs_hosts ? "sniHosts" : "port";

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "match") == 0) {
            if (rd_check_seq(c, v, 1) != 0) {
                goto failed;
            }

            match = rd_jarr();

            rd_foreach_item(c, v, it, i, iv) {
                old2 = rd_path_idx(c, i);

                if (rd_check_map(c, iv) != 0) {
                    goto failed;
                }

                mo = rd_jobj();
                rd_jpush(match, mo);

                rd_foreach_pair(c, iv, mp, mk, mkn, mv) {
                    old3 = rd_path_key(c, mk);

                    if (vs_hosts && strcmp(mk, "sniHosts") == 0) {
                        sni = rd_jarr();
                        rd_jset(mo, "sniHosts", sni);

                        if (rd_parse_sni_hosts(c, mv, vs_hosts, sni) != 0) {
                            goto failed;
                        }

                    } else if (strcmp(mk, "port") == 0) {
                        if (rd_get_int(c, mv, 1, 65535, &port) != 0) {
                            goto failed;
                        }

                        rd_jset(mo, "port", json_integer(port));

                    } else {
                        rd_unknown(c, mkn, mk, vs_hosts ? "sniHosts,port"
                                                        : "port",
                                   "destinationSubnets,sourceLabels,"
                                   "gateways,sourceNamespace");
                        goto failed;
                    }

                    rd_path_pop(c, old3);
                }

                if (json_object_get(mo, need) == NULL) {
                    rd_missing(c, iv, need);
                    goto failed;
                }

                rd_path_pop(c, old2);
            }

        } else if (strcmp(k, "route") == 0) {
            route = rd_jarr();

            c->l4_route = 1;
            rc = rd_parse_routes(c, v, route);
            c->l4_route = 0;

            if (rc != 0) {
                goto failed;
            }

        } else {
            rd_unknown(c, kn, k, "match,route", NULL);
            goto failed;
        }

        rd_path_pop(c, old);
    }

    /* a tls route matches by name: no match, nothing to match */
    if (vs_hosts && match == NULL) {
        rd_missing(c, n, "match");
        goto failed;
    }

    if (route == NULL) {
        rd_missing(c, n, "route");
        goto failed;
    }

    rd_jset(o, "match", match ? match : rd_jarr());
    rd_jset(o, "route", route);

    return 0;

failed:

    json_decref(match);
    json_decref(route);
    return -1;
}



/* "tcp" (vs_hosts NULL) or "tls": the list of routes, into out */
static int
rd_parse_l4_routes(rd_pctx_t *c, yaml_node_t *kn, yaml_node_t *n,
    json_t *vs_hosts, json_t *out)
{
    size_t             i, old;
    json_t            *o;
    yaml_node_t       *iv;
    yaml_node_item_t  *it;

    if (c->vs_delegate) {
        return rd_perr(c, kn, "a delegate VirtualService (one without "
                       "hosts) delegates http routes only");
    }

    if (rd_check_seq(c, n, 1) != 0) {
        return -1;
    }

    rd_foreach_item(c, n, it, i, iv) {
        old = rd_path_idx(c, i);
        o = rd_jobj();
        rd_jpush(out, o);

        if (rd_parse_l4(c, iv, vs_hosts, o) != 0) {
            return -1;
        }

        rd_path_pop(c, old);
    }

    return 0;
}


/* the hosts as written, before rd_get_host() maps them: what sniHosts
 * are compared with, wherever "tls" stands in the document */
static json_t *
rd_vs_written_hosts(rd_pctx_t *c, yaml_node_t *n)
{
    size_t             i;
    json_t            *out, *h;
    yaml_node_t       *iv;
    yaml_node_item_t  *it;

    out = rd_jarr();

    if (n == NULL || n->type != YAML_SEQUENCE_NODE) {
        return out;
    }

    rd_foreach_item(c, n, it, i, iv) {
        if (iv->type != YAML_SCALAR_NODE) {
            continue;       /* refused when the hosts are read */
        }

        h = json_stringn((const char *) iv->data.scalar.value,
                         iv->data.scalar.length);
        if (h) {
            rd_jpush(out, h);
        }
    }

    return out;
}


int
rd_parse_vs(rd_pctx_t *c, yaml_node_t *n, json_t *out)
{
    int                rc = -1, mesh = 1;
    size_t             i, j, g, old, old2;
    json_t            *hosts = NULL, *http = NULL, *gws = NULL, *tcp = NULL,
                      *tls = NULL, *written = NULL, *ho;
    const char        *k, *s;
    yaml_node_t       *kn, *v, *iv, *hosts_node = NULL;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p;
    rd_policy_ref_t   *ref;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    /* without hosts, a delegate: known before its routes are read */
    c->vs_delegate = 1;

    rd_foreach_pair(c, n, p, k, kn, v) {
        if (strcmp(k, "hosts") == 0) {
            c->vs_delegate = 0;
            hosts_node = v;
        }
    }

    written = rd_vs_written_hosts(c, hosts_node);

    /* gateways first: they say how the hosts read */

    gws = rd_jarr();

    rd_foreach_pair(c, n, p, k, kn, v) {
        if (strcmp(k, "gateways") == 0) {
            old = rd_path_key(c, k);

            if (c->vs_delegate) {
                rd_perr(c, kn, "a delegate VirtualService (one without "
                        "hosts) has no gateways: it routes for the roots "
                        "that delegate to it (Istio refuses them too)");
                goto done;
            }

            if (rd_parse_gateways(c, v, gws, &mesh) != 0) {
                goto done;
            }

            rd_path_pop(c, old);
        }
    }

    if (json_array_size(gws) == 0) {
        rd_jpush(gws, json_string("mesh"));
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "hosts") == 0) {
            if (rd_check_seq(c, v, 1) != 0) {
                goto done;
            }

            hosts = rd_jarr();

            rd_foreach_item(c, v, it, i, iv) {
                old2 = rd_path_idx(c, i);

                /* for the mesh a host names a service (or services, by
                 * a wildcard); at a gateway alone, the requests' Host */
                if (rd_get_host_pattern(c, iv, !mesh, &s) != 0) {
                    goto done;
                }

                for (j = 0; j < json_array_size(hosts); j++) {
                    if (strcmp(json_string_value(json_array_get(hosts, j)),
                               s) == 0)
                    {
                        rd_perr(c, iv, "host \"%s\" is listed twice", s);
                        goto done;
                    }
                }

                rd_jpush(hosts, json_string(s));

                for (g = 0; g < json_array_size(gws); g++) {
                    ref = rd_ref_add(c, &c->hosts, RD_POLICY_VS, iv, s, NULL);
                    snprintf(ref->gateway, sizeof(ref->gateway), "%s",
                             json_string_value(json_array_get(gws, g)));
                }

                rd_path_pop(c, old2);
            }

        } else if (strcmp(k, "http") == 0) {
            if (rd_check_seq(c, v, 1) != 0) {
                goto done;
            }

            http = rd_jarr();

            rd_foreach_item(c, v, it, i, iv) {
                old2 = rd_path_idx(c, i);
                ho = rd_jobj();
                rd_jpush(http, ho);
                if (rd_parse_http(c, iv, ho) != 0) {
                    goto done;
                }
                rd_path_pop(c, old2);
            }

        } else if (strcmp(k, "tcp") == 0) {
            tcp = rd_jarr();
            if (rd_parse_l4_routes(c, kn, v, NULL, tcp) != 0) {
                goto done;
            }

        } else if (strcmp(k, "tls") == 0) {
            tls = rd_jarr();
            if (rd_parse_l4_routes(c, kn, v, written, tls) != 0) {
                goto done;
            }

        } else if (strcmp(k, "gateways") != 0) {
            rd_unknown(c, kn, k, "hosts,http,tcp,tls,gateways (hosts: none "
                       "for a delegate)", "exportTo");
            goto done;
        }

        rd_path_pop(c, old);
    }

    /* tcp and tls routes apply where http ones do: to the mesh's stream
     * upstreams with "mesh", at the gateways' stream servers */
    if (http == NULL && tcp == NULL && tls == NULL) {
        rd_missing(c, n, "http");
        goto done;
    }

    /* a delegate (no hosts) routes only through its roots */
    if (hosts) {
        rd_jset(out, "hosts", hosts);
    }

    /* "http" always (empty with tcp or tls routes alone): a module older
     * than them reads it, and skips "tcp" and "tls" */
    rd_jset(out, "http", http ? http : rd_jarr());

    if (tcp) {
        rd_jset(out, "tcp", tcp);
    }

    if (tls) {
        rd_jset(out, "tls", tls);
    }

    hosts = NULL;
    http = NULL;
    tcp = NULL;
    tls = NULL;

    /* bound to a gateway: the list and the namespace (a Gateway's server
     * may take the VirtualServices of some namespaces only) */
    if (!mesh || json_array_size(gws) > 1) {
        rd_jset(out, "gateways", gws);
        rd_jset(out, "namespace", json_string(c->doc_ns));
        gws = NULL;
    }

    rc = 0;

done:

    json_decref(hosts);
    json_decref(http);
    json_decref(gws);
    json_decref(tcp);
    json_decref(tls);
    json_decref(written);
    return rc;
}
