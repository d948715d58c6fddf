/*
 * rd_policy_dr: a DestinationRule (host, trafficPolicy, subsets),
 * validated and normalized.
 */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "mesh_locality.h"
#include "mesh_name.h"
#include "mesh_policy.h"
#include "mesh_regex.h"
#include "rd_policy_int.h"


/* trafficPolicy */

static int
rd_token_char(int ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}


int
rd_get_header_name(rd_pctx_t *c, yaml_node_t *n, const char *s,
    int lowercase)
{
    const unsigned char  *p;

    if (*s == '\0') {
        return rd_perr(c, n, "a header name must not be empty");
    }

    if (strlen(s) > 128) {
        return rd_perr(c, n, "a header name must be at most 128 bytes");
    }

    for (p = (const unsigned char *) s; *p; p++) {
        if (!rd_token_char(*p)) {
            return rd_perr(c, n, "\"%.64s\" is not a valid header name", s);
        }

        if (lowercase && isupper(*p)) {
            return rd_perr(c, n, "header name \"%.64s\" must be lowercase",
                           s);
        }
    }

    return 0;
}


static int
rd_parse_cookie(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int64_t            ms;
    size_t             old;
    json_t            *o;
    const char        *k, *s;
    const char        *cp;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "name") == 0) {
            if (rd_get_nonempty(c, v, 128, &s) != 0) {
                return -1;
            }
            for (cp = s; *cp; cp++) {
                if (!rd_token_char((unsigned char) *cp)) {
                    return rd_perr(c, v, "\"%.64s\" is not a valid cookie "
                                   "name", s);
                }
            }
            rd_jset(o, "name", json_string(s));

        } else if (strcmp(k, "ttl") == 0) {
            if (rd_get_duration(c, v, 0, &ms) != 0) {
                return -1;
            }
            rd_jset(o, "ttlMs", json_integer(ms));

        } else if (strcmp(k, "path") == 0) {
            if (rd_get_nonempty(c, v, 1024, &s) != 0) {
                return -1;
            }
            if (s[0] != '/' || strpbrk(s, " ;,\t\r\n")) {
                return rd_perr(c, v, "must be a path starting with \"/\" "
                               "without spaces, commas or semicolons");
            }
            rd_jset(o, "path", json_string(s));

        } else {
            return rd_unknown(c, kn, k, "name,ttl,path", "attributes");
        }

        rd_path_pop(c, old);
    }

    if (json_object_get(o, "name") == NULL) {
        return rd_missing(c, n, "name");
    }

    return 0;
}


static int
rd_parse_chash(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                b, kinds = 0;
    size_t             old;
    json_t            *o, *ck = NULL;
    const char        *k, *s, *cp;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "httpHeaderName") == 0) {
            char lower[129];

            if (rd_get_str(c, v, &s) != 0
                || rd_get_header_name(c, v, s, 0) != 0)
            {
                return -1;
            }
            for (b = 0; s[b]; b++) {
                lower[b] = (char) tolower((unsigned char) s[b]);
            }
            lower[b] = '\0';
            rd_jset(o, k, json_string(lower));

        } else if (strcmp(k, "httpQueryParameterName") == 0) {
            if (rd_get_nonempty(c, v, 128, &s) != 0) {
                return -1;
            }
            for (cp = s; *cp; cp++) {
                if (!isalnum((unsigned char) *cp) && !strchr("._~-[]", *cp))
                {
                    return rd_perr(c, v, "\"%.64s\" is not a valid query "
                                   "parameter name ([A-Za-z0-9._~[]-]+)", s);
                }
            }
            rd_jset(o, k, json_string(s));

        } else if (strcmp(k, "httpCookie") == 0) {
            if (rd_parse_cookie(c, v, &ck) != 0) {
                json_decref(ck);
                return -1;
            }
            rd_jset(o, k, ck);

        } else if (strcmp(k, "useSourceIp") == 0) {
            if (rd_get_bool(c, v, &b) != 0) {
                return -1;
            }
            if (!b) {
                return rd_perr(c, v, "must be true (leave consistentHash "
                               "out to hash by nothing)");
            }
            rd_jset(o, k, json_true());

        } else {
            return rd_unknown(c, kn, k, "httpHeaderName,"
                              "httpQueryParameterName,httpCookie,useSourceIp",
                              "ringHash,maglev,minimumRingSize");
        }

        kinds++;
        rd_path_pop(c, old);
    }

    if (kinds != 1) {
        return rd_perr(c, n, "needs exactly one of httpHeaderName, "
                       "httpQueryParameterName, httpCookie, useSourceIp");
    }

    return 0;
}


/* a locality pattern of distribute: region/zone/subzone, "*" last */
static int
rd_get_locality(rd_pctx_t *c, yaml_node_t *n, const char *s)
{
    if (!mesh_locality_pattern_valid(s, strlen(s))) {
        return rd_perr(c, n, "\"%.64s\" is not a locality: region, "
                       "region/zone or region/zone/subzone, each a name, "
                       "the last may be \"*\"", s);
    }

    return 0;
}


/* distribute[]: {from, to: {locality: weight}}, the weights summing to
 * 100, no two "to" localities (nor two "from") that can match one */
static int
rd_parse_distribute(rd_pctx_t *c, yaml_node_t *n, json_t *arr)
{
    size_t             old, old2, i, total;
    json_t            *o, *to, *jv;
    long long          w;
    const char        *k, *s, *key;
    yaml_node_t       *kn, *v, *iv, *tkn, *tv, *from;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p, *tp;

    rd_foreach_item(c, n, it, i, iv) {
        old = rd_path_idx(c, i);

        if (rd_check_map(c, iv) != 0) {
            return -1;
        }

        o = rd_jobj();
        rd_jpush(arr, o);
        from = NULL;
        to = NULL;

        rd_foreach_pair(c, iv, p, k, kn, v) {
            old2 = rd_path_key(c, k);

            if (strcmp(k, "from") == 0) {
                if (rd_get_nonempty(c, v, 128, &s) != 0
                    || rd_get_locality(c, v, s) != 0)
                {
                    return -1;
                }

                from = v;
                rd_jset(o, k, json_string(s));

            } else if (strcmp(k, "to") == 0) {
                if (rd_check_map(c, v) != 0) {
                    return -1;
                }

                to = rd_jobj();
                rd_jset(o, k, to);
                total = 0;

                rd_foreach_pair(c, v, tp, key, tkn, tv) {
                    if (rd_get_locality(c, tkn, key) != 0) {
                        return -1;
                    }

                    if (rd_get_int(c, tv, 1, 100, &w) != 0) {
                        return -1;
                    }

                    json_object_foreach(to, s, jv) {
                        if (mesh_locality_overlap(s, key)) {
                            return rd_perr(c, tkn, "\"%.64s\" overlaps "
                                           "\"%.64s\": a locality takes "
                                           "one weight", key, s);
                        }
                    }

                    rd_jset(to, key, json_integer(w));
                    total += (size_t) w;
                }

                if (total != 100) {
                    return rd_perr(c, v, "the weights add up to %zu, not "
                                   "100", total);
                }

            } else {
                return rd_unknown(c, kn, k, "from,to", NULL);
            }

            rd_path_pop(c, old2);
        }

        if (from == NULL) {
            return rd_missing(c, iv, "from");
        }

        if (to == NULL) {
            return rd_missing(c, iv, "to");
        }

        rd_path_pop(c, old);
    }

    /* Istio: no two "from" that can match one locality */

    for (i = 0; i < json_array_size(arr); i++) {
        k = json_string_value(json_object_get(json_array_get(arr, i),
                                              "from"));
        for (total = 0; total < i; total++) {
            s = json_string_value(json_object_get(json_array_get(arr, total),
                                                  "from"));
            if (mesh_locality_overlap(k, s)) {
                old = rd_path_idx(c, i);
                return rd_perr(c, n, "distribute[%zu].from \"%.64s\" "
                               "overlaps distribute[%zu].from \"%.64s\"", i,
                               k, total, s);
            }
        }
    }

    return 0;
}


/* failover[]: {from: region, to: region}, two different regions */
static int
rd_parse_failover(rd_pctx_t *c, yaml_node_t *n, json_t *arr)
{
    size_t             old, old2, i;
    json_t            *o;
    const char        *k, *s, *f, *t;
    yaml_node_t       *kn, *v, *iv;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p;

    rd_foreach_item(c, n, it, i, iv) {
        old = rd_path_idx(c, i);

        if (rd_check_map(c, iv) != 0) {
            return -1;
        }

        o = rd_jobj();
        rd_jpush(arr, o);

        rd_foreach_pair(c, iv, p, k, kn, v) {
            old2 = rd_path_key(c, k);

            if (strcmp(k, "from") == 0 || strcmp(k, "to") == 0) {
                if (rd_get_nonempty(c, v, 128, &s) != 0) {
                    return -1;
                }

                if (strchr(s, '/') || strchr(s, '*')) {
                    return rd_perr(c, v, "\"%.64s\": failover names regions "
                                   "only (no \"/\", no \"*\")", s);
                }

                if (!mesh_name_valid(s, strlen(s))) {
                    return rd_perr(c, v, "\"%.64s\" is not a region name",
                                   s);
                }

                rd_jset(o, k, json_string(s));

            } else {
                return rd_unknown(c, kn, k, "from,to", NULL);
            }

            rd_path_pop(c, old2);
        }

        f = json_string_value(json_object_get(o, "from"));
        t = json_string_value(json_object_get(o, "to"));

        if (f == NULL) {
            return rd_missing(c, iv, "from");
        }

        if (t == NULL) {
            return rd_missing(c, iv, "to");
        }

        if (strcmp(f, t) == 0) {
            return rd_perr(c, iv, "failover from \"%.64s\" to itself: "
                           "give two different regions", f);
        }

        rd_path_pop(c, old);
    }

    return 0;
}


/* failoverPriority[]: Istio's topology keys, or instance label names */
static int
rd_parse_failover_priority(rd_pctx_t *c, yaml_node_t *n, json_t *arr,
    int *topology)
{
    size_t             old, i, k;
    const char        *s;
    yaml_node_t       *iv;
    yaml_node_item_t  *it;

    *topology = 0;

    rd_foreach_item(c, n, it, i, iv) {
        old = rd_path_idx(c, i);

        if (rd_get_nonempty(c, iv, 128, &s) != 0) {
            return -1;
        }

        if (strcmp(s, MESH_TOPOLOGY_REGION) == 0
            || strcmp(s, MESH_TOPOLOGY_ZONE) == 0
            || strcmp(s, MESH_TOPOLOGY_SUBZONE) == 0)
        {
            *topology = 1;

        } else if (strcmp(s, "topology.istio.io/network") == 0) {
            return rd_perr(c, iv, "ngx_mesh has no networks: use the "
                           "locality keys (" MESH_TOPOLOGY_REGION ", "
                           MESH_TOPOLOGY_ZONE ", " MESH_TOPOLOGY_SUBZONE
                           ") or instance label names");

        } else if (strchr(s, '=')) {
            return rd_perr(c, iv, "\"%.64s\": a key with a value is not "
                           "supported: give the label name", s);

        } else if (!mesh_name_valid(s, strlen(s))) {
            return rd_perr(c, iv, "\"%.64s\" is neither a topology key "
                           "nor a label name", s);
        }

        for (k = 0; k < json_array_size(arr); k++) {
            if (strcmp(json_string_value(json_array_get(arr, k)), s) == 0) {
                return rd_perr(c, iv, "\"%.64s\" is given twice", s);
            }
        }

        rd_jpush(arr, json_string(s));
        rd_path_pop(c, old);
    }

    return 0;
}


/* localityLbSetting, normalized: "enabled" always, the lists when not
 * empty */
static int
rd_parse_locality(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                b, topology;
    size_t             old;
    json_t            *o, *dist, *fo, *fp;
    const char        *k;
    yaml_node_t       *kn, *v, *fon;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;
    rd_jset(o, "enabled", json_true());

    dist = NULL;
    fo = NULL;
    fp = NULL;
    fon = NULL;
    topology = 0;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "enabled") == 0) {
            if (rd_get_bool(c, v, &b) != 0) {
                return -1;
            }
            rd_jset(o, k, json_boolean(b));

        } else if (strcmp(k, "distribute") == 0) {
            if (rd_check_seq(c, v, 0) != 0) {
                return -1;
            }
            dist = rd_jarr();
            rd_jset(o, k, dist);
            if (rd_parse_distribute(c, v, dist) != 0) {
                return -1;
            }

        } else if (strcmp(k, "failover") == 0) {
            if (rd_check_seq(c, v, 0) != 0) {
                return -1;
            }
            fo = rd_jarr();
            fon = kn;
            rd_jset(o, k, fo);
            if (rd_parse_failover(c, v, fo) != 0) {
                return -1;
            }

        } else if (strcmp(k, "failoverPriority") == 0) {
            if (rd_check_seq(c, v, 0) != 0) {
                return -1;
            }
            fp = rd_jarr();
            rd_jset(o, k, fp);
            if (rd_parse_failover_priority(c, v, fp, &topology) != 0) {
                return -1;
            }

        } else {
            return rd_unknown(c, kn, k, "enabled,distribute,failover,"
                              "failoverPriority", NULL);
        }

        rd_path_pop(c, old);
    }

    /* Istio's rules */

    if (dist && json_array_size(dist) && fo && json_array_size(fo)) {
        return rd_perr(c, n, "distribute and failover cannot be given "
                       "together");
    }

    if (fo && json_array_size(fo) && topology) {
        old = rd_path_key(c, "failover");
        return rd_perr(c, fon, "failover cannot be given with a topology "
                       "key in failoverPriority");
    }

    if (dist && json_array_size(dist) == 0) {
        json_object_del(o, "distribute");
    }

    if (fo && json_array_size(fo) == 0) {
        json_object_del(o, "failover");
    }

    if (fp && json_array_size(fp) == 0) {
        json_object_del(o, "failoverPriority");
    }

    return 0;
}


static int
rd_parse_lb(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                kinds = 0;
    size_t             old;
    int64_t            ms;
    json_t            *o, *ch, *ll;
    const char        *k, *s;
    yaml_node_t       *kn, *v, *lln, *wn;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    lln = NULL;
    wn = NULL;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "localityLbSetting") == 0) {
            ll = NULL;
            if (rd_parse_locality(c, v, &ll) != 0) {
                json_decref(ll);
                return -1;
            }
            rd_jset(o, k, ll);
            lln = kn;
            rd_path_pop(c, old);
            continue;
        }

        if (strcmp(k, "warmupDurationSecs") == 0) {
            if (rd_get_duration(c, v, 1, &ms) != 0) {
                return -1;
            }
            rd_jset(o, "warmupDurationMs", json_integer(ms));
            wn = kn;
            rd_path_pop(c, old);
            continue;
        }

        if (strcmp(k, "simple") == 0) {
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

            if (strcmp(s, "ROUND_ROBIN") == 0 || strcmp(s, "RANDOM") == 0
                || strcmp(s, "LEAST_REQUEST") == 0)
            {
                rd_jset(o, k, json_string(s));

            } else if (strcmp(s, "LEAST_CONN") == 0) {
                rd_jset(o, k, json_string("LEAST_REQUEST"));

            } else if (strcmp(s, "PASSTHROUGH") == 0
                       || strcmp(s, "UNSPECIFIED") == 0)
            {
                return rd_perr(c, v, "%s is not supported: use "
                               "ROUND_ROBIN, RANDOM or LEAST_REQUEST", s);

            } else {
                return rd_perr(c, v, "\"%.64s\" is not one of ROUND_ROBIN, "
                               "RANDOM, LEAST_REQUEST, LEAST_CONN", s);
            }

        } else if (strcmp(k, "consistentHash") == 0) {
            ch = NULL;
            if (rd_parse_chash(c, v, &ch) != 0) {
                json_decref(ch);
                return -1;
            }
            rd_jset(o, k, ch);

        } else {
            return rd_unknown(c, kn, k, "simple,consistentHash,"
                              "localityLbSetting,warmupDurationSecs",
                              "warmup");
        }

        kinds++;
        rd_path_pop(c, old);
    }

    if (kinds > 1 || (kinds == 0 && lln == NULL && wn == NULL)) {
        return rd_perr(c, n, "needs exactly one of simple, "
                       "consistentHash (localityLbSetting and "
                       "warmupDurationSecs may go with it or alone)");
    }

    /* what nginx cannot do with a hash ring, and Envoy's slow start
     * balancers */

    if (lln && json_object_get(o, "consistentHash")) {
        old = rd_path_key(c, "localityLbSetting");
        return rd_perr(c, lln, "localityLbSetting with consistentHash is "
                       "not supported: ngx_mesh hashes over all the "
                       "instances");
    }

    s = json_string_value(json_object_get(o, "simple"));

    if (wn && (json_object_get(o, "consistentHash")
               || (s && strcmp(s, "RANDOM") == 0)))
    {
        old = rd_path_key(c, "warmupDurationSecs");
        return rd_perr(c, wn, "warmupDurationSecs needs ROUND_ROBIN or "
                       "LEAST_REQUEST (Envoy's slow start), not %s",
                       s ? s : "consistentHash");
    }

    return 0;
}


static int
rd_parse_outlier(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                b;
    size_t             old;
    json_t            *o;
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

        if (strcmp(k, "consecutive5xxErrors") == 0
            || strcmp(k, "consecutiveGatewayErrors") == 0
            || strcmp(k, "consecutiveErrors") == 0
            || strcmp(k, "consecutiveLocalOriginFailures") == 0)
        {
            if (rd_get_int(c, v, 0, INT_MAX, &i) != 0) {
                return -1;
            }

            if (strcmp(k, "consecutiveErrors") == 0) {
                /* deprecated; Istio counts gateway errors with it */
                if (json_object_get(o, "consecutiveGatewayErrors")) {
                    return rd_perr(c, kn, "consecutiveErrors is a deprecated "
                                   "alias of consecutiveGatewayErrors: give "
                                   "one of them");
                }
                k = "consecutiveGatewayErrors";

            } else if (strcmp(k, "consecutiveGatewayErrors") == 0
                       && json_object_get(o, k))
            {
                return rd_perr(c, kn, "consecutiveErrors is a deprecated "
                               "alias of consecutiveGatewayErrors: give one "
                               "of them");
            }

            rd_jset(o, k, json_integer(i));

        } else if (strcmp(k, "interval") == 0
                   || strcmp(k, "baseEjectionTime") == 0)
        {
            char key[32];

            if (rd_get_duration(c, v, 1, &ms) != 0) {
                return -1;
            }
            snprintf(key, sizeof(key), "%sMs", k);
            rd_jset(o, key, json_integer(ms));

        } else if (strcmp(k, "maxEjectionPercent") == 0
                   || strcmp(k, "minHealthPercent") == 0)
        {
            if (rd_get_int(c, v, 0, 100, &i) != 0) {
                return -1;
            }
            rd_jset(o, k, json_integer(i));

        } else if (strcmp(k, "splitExternalLocalOriginErrors") == 0) {
            if (rd_get_bool(c, v, &b) != 0) {
                return -1;
            }
            rd_jset(o, k, json_boolean(b));

        } else {
            return rd_unknown(c, kn, k, "consecutive5xxErrors,"
                              "consecutiveGatewayErrors,consecutiveErrors,"
                              "interval,baseEjectionTime,maxEjectionPercent,"
                              "minHealthPercent,splitExternalLocalOriginErrors,"
                              "consecutiveLocalOriginFailures", NULL);
        }

        rd_path_pop(c, old);
    }

    return 0;
}


/* a Go duration the kernel takes in whole seconds: 1s..32767s */
static int
rd_get_keepalive_time(rd_pctx_t *c, yaml_node_t *n, int64_t *ms)
{
    if (rd_get_duration(c, n, 1000, ms) != 0) {
        return -1;
    }

    if (*ms > MESH_KEEPALIVE_MAX_MS) {
        return rd_perr(c, n, "must be at most %ds (the kernel's limit)",
                       MESH_KEEPALIVE_MAX_MS / 1000);
    }

    return 0;
}


static int
rd_parse_keepalive(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    size_t             old;
    int64_t            ms;
    long long          i;
    const char        *k;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "time") == 0 || strcmp(k, "interval") == 0) {
            char key[16];

            if (rd_get_keepalive_time(c, v, &ms) != 0) {
                return -1;
            }
            snprintf(key, sizeof(key), "%sMs", k);
            rd_jset(o, key, json_integer(ms));

        } else if (strcmp(k, "probes") == 0) {
            if (rd_get_int(c, v, 1, MESH_KEEPALIVE_PROBES_MAX, &i) != 0) {
                return -1;
            }
            rd_jset(o, k, json_integer(i));

        } else {
            return rd_unknown(c, kn, k, "time,interval,probes", NULL);
        }

        rd_path_pop(c, old);
    }

    return 0;
}


static int
rd_parse_pool_tcp(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    size_t             old;
    json_t            *ka;
    int64_t            ms;
    long long          i;
    const char        *k;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "maxConnections") == 0) {
            if (rd_get_int(c, v, 1, 1000000, &i) != 0) {
                return -1;
            }
            rd_jset(o, k, json_integer(i));

        } else if (strcmp(k, "connectTimeout") == 0) {
            if (rd_get_duration(c, v, 1, &ms) != 0) {
                return -1;
            }
            rd_jset(o, "connectTimeoutMs", json_integer(ms));

        } else if (strcmp(k, "tcpKeepalive") == 0) {
            ka = rd_jobj();
            rd_jset(o, k, ka);

            if (rd_parse_keepalive(c, v, ka) != 0) {
                return -1;
            }

        } else {
            return rd_unknown(c, kn, k, "maxConnections,connectTimeout,"
                              "tcpKeepalive",
                              "maxConnectionDuration,idleTimeout");
        }

        rd_path_pop(c, old);
    }

    return 0;
}


/*
 * connectionPool.http. nginx speaks HTTP/1.1 to upstreams: the HTTP/2
 * settings are refused, except the values that ask for what nginx does
 * anyway, which are accepted and not carried.
 */
static int
rd_parse_pool_http(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    int                b;
    size_t             old;
    int64_t            ms;
    long long          i;
    const char        *k, *s;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "http2MaxRequests") == 0) {
            if (rd_get_int(c, v, 1, INT_MAX, &i) != 0) {
                return -1;
            }
            rd_jset(o, k, json_integer(i));

        } else if (strcmp(k, "http1MaxPendingRequests") == 0
                   || strcmp(k, "maxRequestsPerConnection") == 0
                   || strcmp(k, "maxRetries") == 0)
        {
            if (rd_get_int(c, v, 0, INT_MAX, &i) != 0) {
                return -1;
            }
            rd_jset(o, k, json_integer(i));

        } else if (strcmp(k, "idleTimeout") == 0) {
            if (rd_get_duration(c, v, 1, &ms) != 0) {
                return -1;
            }
            rd_jset(o, "idleTimeoutMs", json_integer(ms));

        } else if (strcmp(k, "h2UpgradePolicy") == 0) {
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

            if (strcmp(s, "UPGRADE") == 0) {
                return rd_perr(c, v, "UPGRADE is not supported: nginx "
                               "speaks HTTP/1.1 to upstreams (DEFAULT and "
                               "DO_NOT_UPGRADE are what it does)");
            }

            if (strcmp(s, "DEFAULT") != 0 && strcmp(s, "DO_NOT_UPGRADE") != 0)
            {
                return rd_perr(c, v, "\"%.64s\" is not one of DEFAULT, "
                               "DO_NOT_UPGRADE, UPGRADE", s);
            }

        } else if (strcmp(k, "useClientProtocol") == 0) {
            if (rd_get_bool(c, v, &b) != 0) {
                return -1;
            }

            if (b) {
                return rd_perr(c, v, "true is not supported: nginx speaks "
                               "HTTP/1.1 to upstreams whatever the client "
                               "spoke (false is what it does)");
            }

        } else if (strcmp(k, "maxConcurrentStreams") == 0) {
            return rd_perr(c, kn, "unsupported field \"maxConcurrentStreams\""
                           ": nginx speaks HTTP/1.1 to upstreams, one "
                           "request at a time per connection");

        } else {
            return rd_unknown(c, kn, k, "http1MaxPendingRequests,"
                              "http2MaxRequests,maxRequestsPerConnection,"
                              "maxRetries,idleTimeout,h2UpgradePolicy,"
                              "useClientProtocol", NULL);
        }

        rd_path_pop(c, old);
    }

    return 0;
}


static int
rd_parse_pool(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                rc;
    size_t             old;
    json_t            *o, *sub;
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

        if (strcmp(k, "tcp") != 0 && strcmp(k, "http") != 0) {
            return rd_unknown(c, kn, k, "tcp,http", NULL);
        }

        sub = rd_jobj();
        rd_jset(o, k, sub);

        rc = (k[0] == 't') ? rd_parse_pool_tcp(c, v, sub)
                           : rd_parse_pool_http(c, v, sub);
        if (rc != 0) {
            return -1;
        }

        rd_path_pop(c, old);
    }

    return 0;
}


/* a file of tls: an absolute path (nginx reads it, whatever its cwd) */
static int
rd_get_tls_path(rd_pctx_t *c, yaml_node_t *n, const char **out)
{
    if (rd_get_nonempty(c, n, 4096, out) != 0) {
        return -1;
    }

    if ((*out)[0] != '/') {
        return rd_perr(c, n, "\"%.64s\" is not an absolute path (nginx "
                       "reads the file: give its full path)", *out);
    }

    return 0;
}


static int
rd_parse_sans(rd_pctx_t *c, yaml_node_t *n, json_t *arr)
{
    size_t            i, old;
    const char       *s;
    yaml_node_t      *it_node;
    yaml_node_item_t *it;

    if (rd_check_seq(c, n, 0) != 0) {
        return -1;
    }

    rd_foreach_item(c, n, it, i, it_node) {
        old = rd_path_idx(c, i);

        if (rd_get_nonempty(c, it_node, 1024, &s) != 0) {
            return -1;
        }

        if (strpbrk(s, " \t\r\n")) {
            return rd_perr(c, it_node, "a subject alt name holds no white "
                           "space");
        }

        rd_jpush(arr, json_string(s));
        rd_path_pop(c, old);
    }

    return 0;
}


/*
 * tls: ClientTLSSettings, validated as Istio does (MUTUAL needs a
 * certificate and its key; insecureSkipVerify takes no CA or names);
 * mode is always carried (DISABLE when not given, Istio's default), the
 * paths must be absolute, a subjectAltNames list only when not empty,
 * insecureSkipVerify only when true.
 */
static int
rd_parse_tls(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                b, insecure = 0;
    size_t             i, old;
    json_t            *o, *sans;
    const char        *k, *s, *mode = "DISABLE", *cp;
    yaml_node_t       *kn, *v, *insecure_node = NULL;
    yaml_node_pair_t  *p;

    static const char *const  files[] = {
        "clientCertificate", "privateKey", "caCertificates", "caCrl", NULL
    };

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "mode") == 0) {
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

            if (strcmp(s, "DISABLE") != 0 && strcmp(s, "SIMPLE") != 0
                && strcmp(s, "MUTUAL") != 0 && strcmp(s, "ISTIO_MUTUAL") != 0)
            {
                return rd_perr(c, v, "\"%.64s\" is not one of DISABLE, "
                               "SIMPLE, MUTUAL, ISTIO_MUTUAL", s);
            }

            mode = s;

        } else if (strcmp(k, "clientCertificate") == 0
                   || strcmp(k, "privateKey") == 0
                   || strcmp(k, "caCertificates") == 0
                   || strcmp(k, "caCrl") == 0)
        {
            if (rd_get_tls_path(c, v, &s) != 0) {
                return -1;
            }

            rd_jset(o, k, json_string(s));

        } else if (strcmp(k, "sni") == 0) {
            if (rd_get_nonempty(c, v, 253, &s) != 0) {
                return -1;
            }

            for (cp = s; *cp; cp++) {
                if (!isalnum((unsigned char) *cp) && *cp != '.' && *cp != '-')
                {
                    return rd_perr(c, v, "\"%.64s\" is not a host name "
                                   "([A-Za-z0-9.-], at most 253 bytes)", s);
                }
            }

            rd_jset(o, k, json_string(s));

        } else if (strcmp(k, "subjectAltNames") == 0) {
            sans = rd_jarr();
            rd_jset(o, k, sans);

            if (rd_parse_sans(c, v, sans) != 0) {
                return -1;
            }

            if (json_array_size(sans) == 0) {
                json_object_del(o, k);
            }

        } else if (strcmp(k, "insecureSkipVerify") == 0) {
            if (rd_get_bool(c, v, &b) != 0) {
                return -1;
            }

            insecure = b;
            insecure_node = kn;

            if (b) {
                rd_jset(o, k, json_true());
            }

        } else if (strcmp(k, "credentialName") == 0) {
            return rd_perr(c, kn, "unsupported field \"credentialName\": "
                           "it names a Kubernetes secret, which nginx "
                           "cannot read; give the files instead "
                           "(clientCertificate, privateKey, "
                           "caCertificates)");

        } else {
            return rd_unknown(c, kn, k, "mode,clientCertificate,privateKey,"
                              "caCertificates,caCrl,sni,subjectAltNames,"
                              "insecureSkipVerify", "credentialName");
        }

        rd_path_pop(c, old);
    }

    rd_jset(o, "mode", json_string(mode));

    if (strcmp(mode, "MUTUAL") == 0) {
        if (json_object_get(o, "clientCertificate") == NULL) {
            return rd_perr(c, n, "mode MUTUAL needs clientCertificate (the "
                           "certificate nginx presents)");
        }

        if (json_object_get(o, "privateKey") == NULL) {
            return rd_perr(c, n, "mode MUTUAL needs privateKey (the key of "
                           "clientCertificate)");
        }
    }

    for (i = 0; strcmp(mode, "ISTIO_MUTUAL") == 0 && files[i]; i++) {
        if (json_object_get(o, files[i])) {
            return rd_perr(c, n, "mode ISTIO_MUTUAL takes no %s: it uses "
                           "the mesh's own certificates (nginx's "
                           "mesh_tls_certificate, mesh_tls_certificate_key, "
                           "mesh_tls_trusted_certificate); give files with "
                           "mode MUTUAL", files[i]);
        }
    }

    if (insecure) {
        (void) rd_path_key(c, "insecureSkipVerify");

        if (strcmp(mode, "ISTIO_MUTUAL") == 0) {
            return rd_perr(c, insecure_node, "insecureSkipVerify cannot be "
                           "true with mode ISTIO_MUTUAL");
        }

        if (json_object_get(o, "caCertificates")
            || json_object_get(o, "caCrl")
            || json_object_get(o, "subjectAltNames"))
        {
            return rd_perr(c, insecure_node, "insecureSkipVerify true takes "
                           "no caCertificates, caCrl or subjectAltNames: "
                           "nothing is verified");
        }
    }

    if (json_object_get(o, "caCrl")
        && json_object_get(o, "caCertificates") == NULL)
    {
        return rd_perr(c, n, "caCrl needs caCertificates (the CRL is "
                       "checked only where the certificate is verified)");
    }

    return 0;
}


/*
 * portLevelSettings[]: {port: {number}, loadBalancer?, outlierDetection?,
 * connectionPool?, tls?}, one per port; normalized to {"port": N, ...}.
 * The entry for the port an upstream stands for (mesh SERVICE port=N)
 * replaces the trafficPolicy it is in, the groups it does not give
 * being defaults, as Istio applies it.
 */
static int
rd_parse_port_settings(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                rc;
    size_t             i, j, old, old2;
    json_t            *a, *o, *sub;
    long long          port;
    const char        *k, *k2;
    yaml_node_t       *iv, *kn, *v, *kn2, *v2, *num;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p, *p2;

    if (rd_check_seq(c, n, 1) != 0) {
        return -1;
    }

    a = rd_jarr();
    *out = a;

    rd_foreach_item(c, n, it, i, iv) {
        old = rd_path_idx(c, i);

        if (rd_check_map(c, iv) != 0) {
            return -1;
        }

        o = rd_jobj();
        rd_jpush(a, o);

        rd_foreach_pair(c, iv, p, k, kn, v) {
            old2 = rd_path_key(c, k);
            sub = NULL;

            if (strcmp(k, "port") == 0) {
                if (rd_check_map(c, v) != 0) {
                    return -1;
                }

                num = NULL;

                rd_foreach_pair(c, v, p2, k2, kn2, v2) {
                    if (strcmp(k2, "number") != 0) {
                        rd_path_key(c, k2);
                        return rd_unknown(c, kn2, k2, "number", NULL);
                    }
                    num = v2;
                }

                if (num == NULL) {
                    return rd_missing(c, v, "number");
                }

                rd_path_key(c, "number");
                if (rd_get_int(c, num, 1, 65535, &port) != 0) {
                    return -1;
                }

                for (j = 0; j + 1 < json_array_size(a); j++) {
                    if (json_integer_value(json_object_get(
                            json_array_get(a, j), "port")) == port)
                    {
                        return rd_perr(c, num, "port %lld has settings "
                                       "already (portLevelSettings[%zu])",
                                       port, j);
                    }
                }

                rd_jset(o, "port", json_integer(port));
                rd_path_pop(c, old2);
                continue;

            } else if (strcmp(k, "loadBalancer") == 0) {
                rc = rd_parse_lb(c, v, &sub);

            } else if (strcmp(k, "outlierDetection") == 0) {
                rc = rd_parse_outlier(c, v, &sub);

            } else if (strcmp(k, "connectionPool") == 0) {
                rc = rd_parse_pool(c, v, &sub);

            } else if (strcmp(k, "tls") == 0) {
                rc = rd_parse_tls(c, v, &sub);

            } else {
                return rd_unknown(c, kn, k, "port,loadBalancer,"
                                  "outlierDetection,connectionPool,tls",
                                  NULL);
            }

            if (rc != 0) {
                json_decref(sub);
                return -1;
            }

            rd_jset(o, k, sub);
            rd_path_pop(c, old2);
        }

        if (json_object_get(o, "port") == NULL) {
            return rd_missing(c, iv, "port");
        }

        rd_path_pop(c, old);
    }

    return 0;
}


static int
rd_parse_tp(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                rc;
    size_t             old;
    json_t            *o, *sub;
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
        sub = NULL;

        if (strcmp(k, "loadBalancer") == 0) {
            rc = rd_parse_lb(c, v, &sub);

        } else if (strcmp(k, "outlierDetection") == 0) {
            rc = rd_parse_outlier(c, v, &sub);

        } else if (strcmp(k, "connectionPool") == 0) {
            rc = rd_parse_pool(c, v, &sub);

        } else if (strcmp(k, "portLevelSettings") == 0) {
            rc = rd_parse_port_settings(c, v, &sub);

        } else if (strcmp(k, "tls") == 0) {
            rc = rd_parse_tls(c, v, &sub);

        } else {
            return rd_unknown(c, kn, k, "loadBalancer,outlierDetection,"
                              "connectionPool,portLevelSettings,tls",
                              "tunnel,proxyProtocol");
        }

        if (rc != 0) {
            json_decref(sub);
            return -1;
        }

        rd_jset(o, k, sub);
        rd_path_pop(c, old);
    }

    return 0;
}


/* DestinationRule */

static int
rd_parse_subset(rd_pctx_t *c, yaml_node_t *n, json_t *o, json_t *names)
{
    int                rc;
    size_t             old;
    json_t            *sub, *first;
    const char        *k, *s;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);
        sub = NULL;

        if (strcmp(k, "name") == 0) {
            if (rd_get_name(c, v, "subset name", &s) != 0) {
                return -1;
            }

            first = json_object_get(names, s);
            if (first) {
                return rd_perr(c, v, "duplicate subset \"%s\" (first at "
                               "line %lld)", s,
                               (long long) json_integer_value(first));
            }

            rd_jset(names, s, json_integer((json_int_t)
                                           v->start_mark.line + 1));
            rd_jset(o, "name", json_string(s));
            rd_ref_add(c, &c->subsets, RD_POLICY_DR, v, NULL, s);
            rd_path_pop(c, old);
            continue;

        } else if (strcmp(k, "labels") == 0) {
            rc = rd_parse_labels(c, v, 1, &sub);

        } else if (strcmp(k, "trafficPolicy") == 0) {
            rc = rd_parse_tp(c, v, &sub);

        } else {
            return rd_unknown(c, kn, k, "name,labels,trafficPolicy", NULL);
        }

        if (rc != 0) {
            json_decref(sub);
            return -1;
        }

        rd_jset(o, k, sub);
        rd_path_pop(c, old);
    }

    if (json_object_get(o, "name") == NULL) {
        return rd_missing(c, n, "name");
    }

    if (json_object_get(o, "labels") == NULL) {
        return rd_missing(c, n, "labels");
    }

    return 0;
}


int
rd_parse_dr(rd_pctx_t *c, yaml_node_t *n, json_t *out)
{
    size_t             i, old, old2, first_subset;
    json_t            *tp = NULL, *subsets = NULL, *names = NULL, *so;
    json_t            *sel = NULL, *ml;
    const char        *k, *k2, *host = NULL;
    yaml_node_t       *kn, *v, *it_node, *kn2, *v2;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p, *p2;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    first_subset = c->subsets.n;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "host") == 0) {
            if (rd_get_host_pattern(c, v, 0, &host) != 0) {
                goto fail;
            }
            rd_ref_add(c, &c->hosts, RD_POLICY_DR, v, host, NULL);

        } else if (strcmp(k, "trafficPolicy") == 0) {
            if (rd_parse_tp(c, v, &tp) != 0) {
                goto fail;
            }

        } else if (strcmp(k, "subsets") == 0) {
            if (rd_check_seq(c, v, 0) != 0) {
                goto fail;
            }

            subsets = rd_jarr();
            names = rd_jobj();

            rd_foreach_item(c, v, it, i, it_node) {
                old2 = rd_path_idx(c, i);
                so = rd_jobj();
                rd_jpush(subsets, so);
                if (rd_parse_subset(c, it_node, so, names) != 0) {
                    goto fail;
                }
                rd_path_pop(c, old2);
            }

        } else if (strcmp(k, "workloadSelector") == 0) {
            /* the nginx whose mesh_labels hold matchLabels take the rule */
            if (rd_check_map(c, v) != 0) {
                goto fail;
            }

            json_decref(sel);
            sel = NULL;

            rd_foreach_pair(c, v, p2, k2, kn2, v2) {
                old2 = rd_path_key(c, k2);

                if (strcmp(k2, "matchLabels") != 0) {
                    rd_unknown(c, kn2, k2, "matchLabels", NULL);
                    goto fail;
                }

                if (rd_parse_labels(c, v2, 1, &ml) != 0) {
                    goto fail;
                }

                sel = rd_jobj();
                rd_jset(sel, "matchLabels", ml);
                rd_path_pop(c, old2);
            }

            if (sel == NULL) {
                rd_missing(c, v, "matchLabels");
                goto fail;
            }

        } else {
            rd_unknown(c, kn, k, "host,trafficPolicy,subsets,"
                       "workloadSelector", "exportTo");
            goto fail;
        }

        rd_path_pop(c, old);
    }

    if (host == NULL) {
        rd_missing(c, n, "host");
        goto fail;
    }

    for (i = first_subset; i < c->subsets.n; i++) {
        snprintf(c->subsets.v[i].host, sizeof(c->subsets.v[i].host), "%s",
                 host);
    }

    rd_jset(out, "host", json_string(host));
    if (tp) {
        rd_jset(out, "trafficPolicy", tp);
    }
    rd_jset(out, "subsets", subsets ? subsets : rd_jarr());
    if (sel) {
        rd_jset(out, "workloadSelector", sel);
    }
    json_decref(names);

    return 0;

fail:

    json_decref(tp);
    json_decref(subsets);
    json_decref(names);
    json_decref(sel);
    return -1;
}
