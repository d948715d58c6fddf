/*
 * check_policy: the policy parser on the documented format, its defaults,
 * subset precedence and hostile input; subset membership, string matching
 * and the weighted pick.
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_name.h"
#include "mesh_policy.h"
#include "mesh_snapshot.h"


/* docs/policies.md, "In the snapshot", byte for byte */

static const char  ck_doc_example[] =
    "[\n"
    " {\"policy\": \"orders\", \"kind\": \"DestinationRule\", \"name\": "
    "\"orders\", \"host\": \"orders\",\n"
    "  \"trafficPolicy\": {\n"
    "    \"loadBalancer\": {\"simple\": \"LEAST_REQUEST\"},\n"
    "    \"outlierDetection\": {\"consecutive5xxErrors\": 5, "
    "\"intervalMs\": 10000,\n"
    "                         \"baseEjectionTimeMs\": 30000, "
    "\"maxEjectionPercent\": 50},\n"
    "    \"connectionPool\": {\"tcp\": {\"maxConnections\": 100}}},\n"
    "  \"subsets\": [\n"
    "    {\"name\": \"v1\", \"labels\": {\"version\": \"v1\"}},\n"
    "    {\"name\": \"v2\", \"labels\": {\"version\": \"v2\"},\n"
    "     \"trafficPolicy\": {\"loadBalancer\": {\"consistentHash\": "
    "{\"httpHeaderName\": \"x-user\"}}}}]},\n"
    " {\"policy\": \"orders-routes\", \"kind\": \"VirtualService\", "
    "\"name\": \"orders\", \"hosts\": [\"orders\"],\n"
    "  \"http\": [\n"
    "    {\"name\": \"canary\",\n"
    "     \"match\": [{\"headers\": {\"x-canary\": {\"exact\": \"1\"}}},\n"
    "               {\"uri\": {\"regex\": \"/v[0-9]+/orders/.*\"}}],\n"
    "     \"route\": [{\"destination\": {\"host\": \"orders\", \"subset\": "
    "\"v2\"}, \"weight\": 100}]},\n"
    "    {\"match\": [],\n"
    "     \"route\": [{\"destination\": {\"host\": \"orders\", \"subset\": "
    "\"v1\"}, \"weight\": 90},\n"
    "               {\"destination\": {\"host\": \"orders\", \"subset\": "
    "\"v2\"}, \"weight\": 10}],\n"
    "     \"retries\": {\"attempts\": 2, \"perTryTimeoutMs\": 500, "
    "\"retryOn\": [\"5xx\", \"connect-failure\"]},\n"
    "     \"timeoutMs\": 3000}]}]";


/* docs/policies.md, "In the snapshot", the request shaping example, byte
 * for byte */

static const char  ck_doc_shaping[] =
    "[\n"
    " {\"policy\": \"orders-shaping\", \"kind\": \"VirtualService\", "
    "\"name\": \"orders\", \"hosts\": [\"orders\"],\n"
    "  \"http\": [\n"
    "    {\"name\": \"moved\", \"match\": [{\"uri\": {\"prefix\": "
    "\"/v1/\"}}],\n"
    "     \"redirect\": {\"uri\": \"/api/\", \"redirectCode\": 308}},\n"
    "    {\"name\": \"gone\", \"match\": [{\"uri\": {\"exact\": "
    "\"/legacy\"}}],\n"
    "     \"directResponse\": {\"status\": 410, \"body\": \"gone: use "
    "/api/\\n\"}},\n"
    "    {\"name\": \"canary\", \"match\": [{\"headers\": {\"x-canary\": "
    "{\"exact\": \"1\"}}}],\n"
    "     \"fault\": {\"delay\": {\"fixedDelayMs\": 2000, \"ppm\": 1000},\n"
    "               \"abort\": {\"httpStatus\": 503, \"ppm\": 10000}},\n"
    "     \"route\": [{\"destination\": {\"host\": \"orders\", \"subset\": "
    "\"v2\"}, \"weight\": 100}]},\n"
    "    {\"name\": \"shop\", \"match\": [{\"uri\": {\"prefix\": "
    "\"/shop/\"}}],\n"
    "     \"rewrite\": {\"uri\": \"/api/\"},\n"
    "     \"headers\": {\"request\": {\"set\": {\"x-mesh-route\": \"shop\"}, "
    "\"remove\": [\"x-debug\"]},\n"
    "                 \"response\": {\"add\": {\"cache-control\": "
    "\"no-store\"}, \"remove\": [\"server\"]}},\n"
    "     \"corsPolicy\": {\"allowOrigins\": [{\"exact\": "
    "\"https://shop.example\"},\n"
    "                                     {\"regex\": "
    "\"https://[a-z0-9-]+\\\\.shop\\\\.example\"}],\n"
    "                    \"allowMethods\": [\"GET\", \"POST\"], "
    "\"allowHeaders\": [\"content-type\"],\n"
    "                    \"exposeHeaders\": [\"x-orders-subset\"], "
    "\"maxAgeS\": 600,\n"
    "                    \"allowCredentials\": true},\n"
    "     \"route\": [{\"destination\": {\"host\": \"orders\", \"subset\": "
    "\"v1\"}, \"weight\": 90,\n"
    "                \"headers\": {\"response\": {\"set\": "
    "{\"x-orders-subset\": \"v1\"}}}},\n"
    "               {\"destination\": {\"host\": \"orders\", \"subset\": "
    "\"v2\"}, \"weight\": 10,\n"
    "                \"headers\": {\"response\": {\"set\": "
    "{\"x-orders-subset\": \"v2\"}}}}]}]}]";


#define CK_DR(fields)                                                        \
    "[{\"policy\":\"p\",\"kind\":\"DestinationRule\",\"name\":\"n\","        \
    "\"host\":\"h\",\"subsets\":[]," fields "}]"

#define CK_DR_TP(tp)  CK_DR("\"trafficPolicy\":{" tp "}")

#define CK_VS(http)                                                          \
    "[{\"policy\":\"p\",\"kind\":\"VirtualService\",\"name\":\"n\","         \
    "\"hosts\":[\"h\"],\"http\":[" http "]}]"

#define CK_ROUTE                                                             \
    "\"route\":[{\"destination\":{\"host\":\"h\"},\"weight\":100}]"

#define CK_HTTP(fields)  CK_VS("{\"match\":[]," CK_ROUTE fields "}")

/* an http item without a destination: answered by nginx */
#define CK_ANSWER(fields)  CK_VS("{\"match\":[]," fields "}")

#define CK_RD  "\"redirect\":{\"uri\":\"/x\",\"redirectCode\":301}"


/* parse from an exactly sized heap copy, so ASan sees any overread */

static mesh_policies_t *
ck_parse_len(const char *text, size_t len, char *err, size_t errlen)
{
    char             *copy;
    mesh_policies_t  *p;

    copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, text, len);

    p = mesh_policies_parse(copy, len, err, errlen);

    /* the policies must not point into the text */
    memset(copy, 'x', len);
    free(copy);

    return p;
}


static mesh_policies_t *
ck_parse(const char *text)
{
    char              err[MESH_ERR_LEN];
    mesh_policies_t  *p;

    p = ck_parse_len(text, strlen(text), err, sizeof(err));
    ck_assert_msg(p != NULL, "parse failed: %s", err);

    return p;
}


static void
ck_parse_fails(const char *text, const char *what)
{
    char              err[MESH_ERR_LEN];
    mesh_policies_t  *p;

    err[0] = '\0';
    p = ck_parse_len(text, strlen(text), err, sizeof(err));

    if (p) {
        mesh_policies_free(p);
    }

    ck_assert_msg(p == NULL, "accepted: %s", text);
    ck_assert_msg(strncmp(err, "policies: byte ", 15) == 0,
                  "no offset in \"%s\" for %s", err, text);
    ck_assert_msg(strchr(err, '\n') == NULL, "a multi-line error: %s", err);

    if (what) {
        ck_assert_msg(strstr(err, what) != NULL, "\"%s\" not in \"%s\"",
                      what, err);
    }
}


/* every field the parser filled is readable (ASan checks the pointers) */

static size_t
ck_walk_ops(const mesh_header_op_t *op, size_t n, int values)
{
    size_t  i, sum;

    sum = 0;

    for (i = 0; i < n; i++) {
        ck_assert_uint_eq(strlen(op[i].name), op[i].name_len);

        if (values) {
            ck_assert_uint_eq(strlen(op[i].value), op[i].value_len);

        } else {
            ck_assert_ptr_null(op[i].value);
        }

        sum += op[i].name_len;
    }

    return sum;
}


static size_t
ck_walk_headers(const mesh_headers_t *hs)
{
    return ck_walk_ops(hs->request.set, hs->request.nset, 1)
           + ck_walk_ops(hs->request.add, hs->request.nadd, 1)
           + ck_walk_ops(hs->request.remove, hs->request.nremove, 0)
           + ck_walk_ops(hs->response.set, hs->response.nset, 1)
           + ck_walk_ops(hs->response.add, hs->response.nadd, 1)
           + ck_walk_ops(hs->response.remove, hs->response.nremove, 0);
}


static void
ck_walk(const mesh_policies_t *p)
{
    size_t                          i, k, m, h;
    volatile size_t                 sum;
    const mesh_match_t             *ma;
    const mesh_subset_t            *ss;
    const mesh_http_route_t        *ht;
    const mesh_virtual_service_t   *vs;
    const mesh_destination_rule_t  *dr;

    sum = 0;

    for (i = 0; i < p->nrules; i++) {
        dr = &p->rules[i];
        sum += strlen(dr->policy) + strlen(dr->name) + strlen(dr->host);

        if (dr->traffic.hash_name) {
            sum += strlen(dr->traffic.hash_name);
        }

        for (k = 0; k < dr->nsubsets; k++) {
            ss = &dr->subsets[k];
            sum += strlen(ss->name);

            for (m = 0; m < ss->nlabels; m++) {
                sum += strlen(ss->labels[m].key) + strlen(ss->labels[m].value);
            }

            if (ss->policy.hash_name) {
                sum += strlen(ss->policy.hash_name);
            }
        }
    }

    for (i = 0; i < p->nvss; i++) {
        vs = &p->vss[i];
        sum += strlen(vs->policy) + strlen(vs->name);

        for (k = 0; k < vs->nhosts; k++) {
            sum += strlen(vs->hosts[k]);
        }

        for (k = 0; k < vs->nhttp; k++) {
            ht = &vs->http[k];

            if (ht->name) {
                sum += strlen(ht->name);
            }

            for (m = 0; m < ht->nmatches; m++) {
                ma = &ht->matches[m];

                if (ma->uri) {
                    sum += strlen(ma->uri->value);
                }

                for (h = 0; h < ma->nheaders; h++) {
                    sum += strlen(ma->headers[h].name)
                           + strlen(ma->headers[h].match.value);
                }

                for (h = 0; h < ma->nsource_labels; h++) {
                    sum += strlen(ma->source_labels[h].key)
                           + strlen(ma->source_labels[h].value);
                }
            }

            for (m = 0; m < ht->nroutes; m++) {
                sum += strlen(ht->routes[m].host);

                if (ht->routes[m].subset) {
                    sum += strlen(ht->routes[m].subset);
                }

                sum += ck_walk_headers(&ht->routes[m].headers);
            }

            sum += ck_walk_headers(&ht->headers);

            if (ht->rewrite.uri) {
                sum += strlen(ht->rewrite.uri);
            }

            if (ht->rewrite.authority) {
                sum += strlen(ht->rewrite.authority);
            }

            if (ht->cors) {
                for (m = 0; m < ht->cors->norigins; m++) {
                    sum += strlen(ht->cors->origins[m].value);
                }

                sum += ht->cors->allow_methods
                       ? strlen(ht->cors->allow_methods) : 0;
                sum += ht->cors->allow_headers
                       ? strlen(ht->cors->allow_headers) : 0;
                sum += ht->cors->expose_headers
                       ? strlen(ht->cors->expose_headers) : 0;
            }

            if (ht->redirect) {
                ck_assert_int_eq(ht->nroutes, 0);
                sum += ht->redirect->uri ? strlen(ht->redirect->uri) : 0;
                sum += ht->redirect->authority
                       ? strlen(ht->redirect->authority) : 0;
                sum += ht->redirect->scheme
                       ? strlen(ht->redirect->scheme) : 0;
            }

            if (ht->direct && ht->direct->body) {
                ck_assert_uint_eq(strlen(ht->direct->body),
                                  ht->direct->body_len);
            }
        }

        for (k = 0; k < vs->ngateways; k++) {
            sum += strlen(vs->gateways[k]);
        }

        sum += vs->ns ? strlen(vs->ns) : 0;
    }

    for (i = 0; i < p->ngateways; i++) {
        sum += strlen(p->gateways[i].policy) + strlen(p->gateways[i].name)
               + strlen(p->gateways[i].gateway);

        for (k = 0; k < p->gateways[i].nselector; k++) {
            sum += strlen(p->gateways[i].selector[k].key)
                   + strlen(p->gateways[i].selector[k].value);
        }

        for (k = 0; k < p->gateways[i].nservers; k++) {
            for (m = 0; m < p->gateways[i].servers[k].nhosts; m++) {
                sum += strlen(p->gateways[i].servers[k].hosts[m]);
            }
        }
    }

    (void) sum;
}


static void
ck_tp_unset_outlier(const mesh_traffic_policy_t *tp)
{
    ck_assert_int_eq(tp->consecutive_5xx, -1);
    ck_assert_int_eq(tp->consecutive_gateway, -1);
    ck_assert_int_eq(tp->consecutive_local_origin, -1);
    ck_assert_int_eq(tp->interval, -1);
    ck_assert_int_eq(tp->base_ejection_time, -1);
    ck_assert_int_eq(tp->max_ejection_percent, -1);
    ck_assert_int_eq(tp->min_health_percent, -1);
    ck_assert_int_eq(tp->split_local_origin, -1);
}


static void
ck_tp_unset_pool(const mesh_traffic_policy_t *tp)
{
    ck_assert_int_eq(tp->max_connections, 0);
    ck_assert_int_eq(tp->connect_timeout, -1);
    ck_assert_int_eq(tp->tcp_keepalive, -1);
    ck_assert_int_eq(tp->keepalive_time, -1);
    ck_assert_int_eq(tp->keepalive_interval, -1);
    ck_assert_int_eq(tp->keepalive_probes, -1);
    ck_assert_int_eq(tp->http1_max_pending, -1);
    ck_assert_int_eq(tp->http2_max_requests, -1);
    ck_assert_int_eq(tp->max_requests_per_conn, -1);
    ck_assert_int_eq(tp->max_retries, -1);
    ck_assert_int_eq(tp->idle_timeout, -1);
}


START_TEST(policy_docs_example_parses)
{
    mesh_policies_t                *p;
    const mesh_match_t             *ma;
    const mesh_subset_t            *ss;
    const mesh_http_route_t        *ht;
    const mesh_virtual_service_t   *vs;
    const mesh_destination_rule_t  *dr;

    p = ck_parse(ck_doc_example);
    ck_walk(p);

    ck_assert_uint_eq(p->nrules, 1);
    ck_assert_uint_eq(p->nvss, 1);

    dr = &p->rules[0];
    ck_assert_str_eq(dr->policy, "orders");
    ck_assert_str_eq(dr->name, "orders");
    ck_assert_str_eq(dr->host, "orders");
    ck_assert_int_eq(dr->traffic.lb, MESH_LB_LEAST_REQUEST);
    ck_assert_ptr_null(dr->traffic.hash_name);
    ck_assert_int_eq(dr->traffic.max_connections, 100);
    ck_assert_int_eq(dr->traffic.consecutive_5xx, 5);
    ck_assert_int_eq(dr->traffic.consecutive_gateway, -1);
    ck_assert_int_eq(dr->traffic.consecutive_local_origin, -1);
    ck_assert_int_eq(dr->traffic.interval, 10000);
    ck_assert_int_eq(dr->traffic.base_ejection_time, 30000);
    ck_assert_int_eq(dr->traffic.max_ejection_percent, 50);
    ck_assert_int_eq(dr->traffic.min_health_percent, -1);
    ck_assert_int_eq(dr->traffic.split_local_origin, -1);

    ck_assert_uint_eq(dr->nsubsets, 2);

    ss = &dr->subsets[0];
    ck_assert_str_eq(ss->name, "v1");
    ck_assert_uint_eq(ss->nlabels, 1);
    ck_assert_str_eq(ss->labels[0].key, "version");
    ck_assert_str_eq(ss->labels[0].value, "v1");
    /* no trafficPolicy of its own: the rule's, whole */
    ck_assert_int_eq(ss->policy.lb, MESH_LB_LEAST_REQUEST);
    ck_assert_int_eq(ss->policy.max_connections, 100);
    ck_assert_int_eq(ss->policy.consecutive_5xx, 5);
    ck_assert_int_eq(ss->policy.interval, 10000);
    ck_assert_int_eq(ss->policy.base_ejection_time, 30000);
    ck_assert_int_eq(ss->policy.max_ejection_percent, 50);

    ss = &dr->subsets[1];
    ck_assert_str_eq(ss->name, "v2");
    ck_assert_str_eq(ss->labels[0].value, "v2");
    ck_assert_int_eq(ss->policy.lb, MESH_LB_HASH_HEADER);
    ck_assert_str_eq(ss->policy.hash_name, "x-user");
    ck_assert_int_eq(ss->policy.max_connections, 100);
    ck_assert_int_eq(ss->policy.consecutive_5xx, 5);

    ck_assert_ptr_eq(mesh_rule_subset(dr, "v2"), &dr->subsets[1]);
    ck_assert_ptr_null(mesh_rule_subset(dr, "v3"));
    ck_assert_ptr_null(mesh_rule_subset(dr, NULL));

    vs = &p->vss[0];
    ck_assert_str_eq(vs->policy, "orders-routes");
    ck_assert_str_eq(vs->name, "orders");
    ck_assert_uint_eq(vs->nhosts, 1);
    ck_assert_str_eq(vs->hosts[0], "orders");
    ck_assert_uint_eq(vs->nhttp, 2);

    ht = &vs->http[0];
    ck_assert_str_eq(ht->name, "canary");
    ck_assert_uint_eq(ht->nmatches, 2);

    ma = &ht->matches[0];
    ck_assert_ptr_null(ma->uri);
    ck_assert_uint_eq(ma->nheaders, 1);
    ck_assert_str_eq(ma->headers[0].name, "x-canary");
    ck_assert_uint_eq(ma->headers[0].name_len, 8);
    ck_assert_int_eq(ma->headers[0].match.kind, MESH_MATCH_EXACT);
    ck_assert_str_eq(ma->headers[0].match.value, "1");
    ck_assert_uint_eq(ma->headers[0].match.len, 1);
    ck_assert_ptr_null(ma->headers[0].match.regex);    /* not a regex */

    ma = &ht->matches[1];
    ck_assert_ptr_nonnull(ma->uri);
    ck_assert_uint_eq(ma->nheaders, 0);
    ck_assert_int_eq(ma->uri->kind, MESH_MATCH_REGEX);
    ck_assert_str_eq(ma->uri->value, "/v[0-9]+/orders/.*");
    ck_assert_uint_eq(ma->uri->len, strlen("/v[0-9]+/orders/.*"));
    ck_assert_ptr_nonnull(ma->uri->regex);     /* compiled by the parse */

    ck_assert_uint_eq(ht->nroutes, 1);
    ck_assert_str_eq(ht->routes[0].host, "orders");
    ck_assert_str_eq(ht->routes[0].subset, "v2");
    ck_assert_int_eq(ht->routes[0].weight, 100);
    ck_assert_int_eq(ht->attempts, -1);
    ck_assert_int_eq(ht->per_try_timeout, -1);
    ck_assert_uint_eq(ht->retry_on, 0);
    ck_assert_int_eq(ht->timeout, -1);

    ht = &vs->http[1];
    ck_assert_ptr_null(ht->name);
    ck_assert_uint_eq(ht->nmatches, 0);
    ck_assert_ptr_null(ht->matches);
    ck_assert_uint_eq(ht->nroutes, 2);
    ck_assert_str_eq(ht->routes[0].subset, "v1");
    ck_assert_int_eq(ht->routes[0].weight, 90);
    ck_assert_str_eq(ht->routes[1].subset, "v2");
    ck_assert_int_eq(ht->routes[1].weight, 10);
    ck_assert_int_eq(ht->attempts, 2);
    ck_assert_int_eq(ht->per_try_timeout, 500);
    ck_assert_uint_eq(ht->retry_on,
                      MESH_RETRY_5XX | MESH_RETRY_CONNECT_FAILURE);
    ck_assert_int_eq(ht->timeout, 3000);

    ck_assert_ptr_eq(mesh_policies_rule(p, "orders", 6), dr);
    ck_assert_ptr_eq(mesh_policies_vs(p, "orders", 6), vs);

    mesh_policies_free(p);
}
END_TEST


static void
ck_op(const mesh_header_op_t *ops, size_t n, size_t i, const char *name,
    const char *value)
{
    ck_assert_uint_gt(n, i);
    ck_assert_str_eq(ops[i].name, name);
    ck_assert_uint_eq(ops[i].name_len, strlen(name));

    if (value) {
        ck_assert_str_eq(ops[i].value, value);
        ck_assert_uint_eq(ops[i].value_len, strlen(value));

    } else {
        ck_assert_ptr_null(ops[i].value);
    }
}


static void
ck_shaping(const mesh_policies_t *p)
{
    const mesh_http_route_t       *ht;
    const mesh_virtual_service_t  *vs;

    ck_walk(p);

    vs = mesh_policies_vs(p, "orders", 6);
    ck_assert_ptr_nonnull(vs);
    ck_assert_uint_eq(vs->nhttp, 4);

    ht = &vs->http[0];
    ck_assert_str_eq(ht->name, "moved");
    ck_assert_uint_eq(ht->nroutes, 0);
    ck_assert_ptr_null(ht->routes);
    ck_assert_ptr_nonnull(ht->redirect);
    ck_assert_ptr_null(ht->direct);
    ck_assert_str_eq(ht->redirect->uri, "/api/");
    ck_assert_ptr_null(ht->redirect->authority);
    ck_assert_ptr_null(ht->redirect->scheme);
    ck_assert_int_eq(ht->redirect->port, 0);
    ck_assert_int_eq(ht->redirect->code, 308);
    ck_assert_int_eq(ht->fault.delay, -1);
    ck_assert_int_eq(ht->fault.abort_status, 0);
    ck_assert_int_eq(mesh_route_pick(ht, 7), -1);       /* nowhere to go */

    ht = &vs->http[1];
    ck_assert_str_eq(ht->name, "gone");
    ck_assert_uint_eq(ht->nroutes, 0);
    ck_assert_ptr_null(ht->redirect);
    ck_assert_ptr_nonnull(ht->direct);
    ck_assert_int_eq(ht->direct->status, 410);
    ck_assert_str_eq(ht->direct->body, "gone: use /api/\n");
    ck_assert_uint_eq(ht->direct->body_len, 16);

    ht = &vs->http[2];
    ck_assert_int_eq(ht->fault.delay, 2000);
    ck_assert_uint_eq(ht->fault.delay_ppm, 1000);
    ck_assert_int_eq(ht->fault.abort_status, 503);
    ck_assert_uint_eq(ht->fault.abort_ppm, 10000);
    ck_assert_ptr_null(ht->redirect);
    ck_assert_uint_eq(ht->nroutes, 1);

    ht = &vs->http[3];
    ck_assert_int_eq(ht->fault.delay, -1);
    ck_assert_str_eq(ht->rewrite.uri, "/api/");
    ck_assert_ptr_null(ht->rewrite.authority);
    ck_op(ht->headers.request.set, ht->headers.request.nset, 0,
          "x-mesh-route", "shop");
    ck_assert_uint_eq(ht->headers.request.nset, 1);
    ck_assert_uint_eq(ht->headers.request.nadd, 0);
    ck_assert_ptr_null(ht->headers.request.add);
    ck_op(ht->headers.request.remove, ht->headers.request.nremove, 0,
          "x-debug", NULL);
    ck_op(ht->headers.response.add, ht->headers.response.nadd, 0,
          "cache-control", "no-store");
    ck_op(ht->headers.response.remove, ht->headers.response.nremove, 0,
          "server", NULL);
    ck_assert_uint_eq(ht->nroutes, 2);
    ck_op(ht->routes[0].headers.response.set,
          ht->routes[0].headers.response.nset, 0, "x-orders-subset", "v1");
    ck_op(ht->routes[1].headers.response.set,
          ht->routes[1].headers.response.nset, 0, "x-orders-subset", "v2");
    ck_assert_uint_eq(ht->routes[1].headers.request.nset, 0);

    ck_assert_ptr_nonnull(ht->cors);
    ck_assert_uint_eq(ht->cors->norigins, 2);
    ck_assert_int_eq(ht->cors->origins[0].kind, MESH_MATCH_EXACT);
    ck_assert_str_eq(ht->cors->origins[0].value, "https://shop.example");
    ck_assert_int_eq(ht->cors->origins[1].kind, MESH_MATCH_REGEX);
    ck_assert_str_eq(ht->cors->origins[1].value,
                     "https://[a-z0-9-]+\\.shop\\.example");
    ck_assert_ptr_nonnull(ht->cors->origins[1].regex);
    ck_assert_str_eq(ht->cors->allow_methods, "GET,POST");
    ck_assert_str_eq(ht->cors->allow_headers, "content-type");
    ck_assert_str_eq(ht->cors->expose_headers, "x-orders-subset");
    ck_assert_int_eq(ht->cors->max_age, 600);
    ck_assert_int_eq(ht->cors->allow_credentials, 1);
    ck_assert_int_eq(ht->cors->forward_unmatched, 1);

    /* the origins as Envoy decides them, the regex compiled */
    ck_assert(mesh_cors_origin_allowed(ht->cors, "https://shop.example", 20,
                                       NULL));
    ck_assert(mesh_cors_origin_allowed(ht->cors, "https://eu-1.shop.example",
                                       25, NULL));
    ck_assert(!mesh_cors_origin_allowed(ht->cors, "https://shop.example.org",
                                        24, NULL));
    ck_assert(!mesh_cors_origin_allowed(ht->cors, "https://x.shop.example:1",
                                        24, NULL));
    ck_assert(!mesh_cors_origin_allowed(ht->cors, "", 0, NULL));

    ck_assert_ptr_null(vs->http[0].cors);
    ck_assert_ptr_null(vs->http[2].cors);
}


START_TEST(policy_docs_shaping_example_parses)
{
    mesh_policies_t  *p;

    p = ck_parse(ck_doc_shaping);
    ck_shaping(p);
    mesh_policies_free(p);

    /* names are lowercased; values and bodies kept as they are; a
     * removal has no value */
    p = ck_parse(CK_VS("{\"match\":[],\"route\":[{\"destination\":"
                       "{\"host\":\"h\"},\"weight\":100,\"headers\":"
                       "{\"request\":{\"add\":{\"X-A\":\"V \\t\\u00e9\"},"
                       "\"remove\":[\"X-B\"]}}}],\"headers\":{\"response\":"
                       "{\"set\":{\"X-C\":\"\"}},\"future\":1},"
                       "\"rewrite\":{\"authority\":\"b:8080\"},"
                       "\"fault\":{\"abort\":{\"httpStatus\":200,"
                       "\"ppm\":0,\"grpc\":1}}},"
                       "{\"match\":[],\"directResponse\":{\"status\":100,"
                       "\"body\":\"\"}},"
                       "{\"match\":[],\"redirect\":{\"authority\":\"a\","
                       "\"scheme\":\"https\",\"port\":8443,"
                       "\"redirectCode\":302}}"));
    ck_walk(p);
    ck_op(p->vss[0].http[0].routes[0].headers.request.add, 1, 0, "x-a",
          "V \t\xc3\xa9");
    ck_op(p->vss[0].http[0].routes[0].headers.request.remove, 1, 0, "x-b",
          NULL);
    ck_op(p->vss[0].http[0].headers.response.set, 1, 0, "x-c", "");
    ck_assert_str_eq(p->vss[0].http[0].rewrite.authority, "b:8080");
    ck_assert_int_eq(p->vss[0].http[0].fault.delay, -1);
    ck_assert_int_eq(p->vss[0].http[0].fault.abort_status, 200);
    ck_assert_uint_eq(p->vss[0].http[0].fault.abort_ppm, 0);
    ck_assert_int_eq(p->vss[0].http[1].direct->status, 100);
    ck_assert_str_eq(p->vss[0].http[1].direct->body, "");
    ck_assert_uint_eq(p->vss[0].http[1].direct->body_len, 0);
    ck_assert_str_eq(p->vss[0].http[2].redirect->authority, "a");
    ck_assert_str_eq(p->vss[0].http[2].redirect->scheme, "https");
    ck_assert_int_eq(p->vss[0].http[2].redirect->port, 8443);
    ck_assert_int_eq(p->vss[0].http[2].redirect->code, 302);
    ck_assert_ptr_null(p->vss[0].http[2].redirect->uri);
    mesh_policies_free(p);
}
END_TEST


/* what the zone keeps: packed, unpacked to the same model, packed again
 * to the same bytes; damaged, refused or read inside the block */
START_TEST(policy_shaping_pack_round_trip)
{
    char              err[MESH_ERR_LEN], *block, *again, *copy;
    size_t            size, i;
    mesh_policies_t  *p, *q;

    p = ck_parse(ck_doc_shaping);

    size = mesh_policies_pack(p, NULL, 0);
    block = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    again = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    copy = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    ck_assert(block && again && copy);

    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    mesh_policies_free(p);

    memcpy(copy, block, size);

    q = mesh_policies_unpack(copy, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);
    ck_shaping(q);

    ck_assert_uint_eq(mesh_policies_pack(q, again, size), size);
    ck_assert(memcmp(again, block, size) == 0);
    mesh_policies_free(q);

    for (i = 0; i < size; i++) {
        memcpy(copy, block, size);
        copy[i] ^= (char) (0x41 + i % 7);

        q = mesh_policies_unpack(copy, size, err, sizeof(err));
        if (q) {
            ck_walk(q);
            mesh_policies_free(q);
        }
    }

    free(copy);
    free(again);
    free(block);
}
END_TEST


START_TEST(policy_from_snapshot_parses)
{
    char              err[MESH_ERR_LEN], *doc;
    size_t            len;
    mesh_policies_t  *p;
    mesh_snapshot_t  *s;

    len = strlen(ck_doc_example) + 64;
    doc = malloc(len);
    ck_assert_ptr_nonnull(doc);

    snprintf(doc, len, "{\"index\":3,\"services\":[],\"policies\":%s}\n",
             ck_doc_example);

    s = mesh_snapshot_parse(doc, strlen(doc), err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    free(doc);

    p = mesh_policies_parse(s->policies, s->policies_len, err, sizeof(err));
    ck_assert_msg(p != NULL, "%s", err);
    mesh_snapshot_free(s);

    ck_walk(p);
    ck_assert_uint_eq(p->nrules, 1);
    ck_assert_uint_eq(p->nvss, 1);
    mesh_policies_free(p);

    /* a snapshot without "policies" has "[]": no policy */

    s = mesh_snapshot_parse("{\"index\":1}", 11, err, sizeof(err));
    ck_assert_ptr_nonnull(s);

    p = mesh_policies_parse(s->policies, s->policies_len, err, sizeof(err));
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(p->nrules, 0);
    ck_assert_uint_eq(p->nvss, 0);
    ck_assert_ptr_null(mesh_policies_rule(p, "orders", 6));
    ck_assert_ptr_null(mesh_policies_vs(p, "orders", 6));

    mesh_policies_free(p);
    mesh_snapshot_free(s);
}
END_TEST


START_TEST(policy_absent_fields_get_defaults)
{
    mesh_policies_t                *p;
    const mesh_http_route_t        *ht;
    const mesh_destination_rule_t  *dr;

    p = ck_parse("[" "{\"policy\":\"p\",\"kind\":\"DestinationRule\","
                 "\"name\":\"n\",\"host\":\"h\",\"subsets\":"
                 "[{\"name\":\"s\",\"labels\":{}}]},"
                 "{\"policy\":\"p\",\"kind\":\"VirtualService\","
                 "\"name\":\"n\",\"hosts\":[\"h\"],\"http\":"
                 "[{\"match\":[]," CK_ROUTE "}]}]");
    ck_walk(p);

    dr = &p->rules[0];
    ck_assert_int_eq(dr->traffic.lb, MESH_LB_NONE);
    ck_assert_ptr_null(dr->traffic.hash_name);
    ck_assert_int_eq(dr->traffic.max_connections, 0);
    ck_tp_unset_outlier(&dr->traffic);
    ck_tp_unset_pool(&dr->traffic);

    ck_assert_uint_eq(dr->nsubsets, 1);
    ck_assert_uint_eq(dr->subsets[0].nlabels, 0);
    ck_assert_int_eq(dr->subsets[0].policy.lb, MESH_LB_NONE);
    ck_assert_int_eq(dr->subsets[0].policy.max_connections, 0);
    ck_tp_unset_outlier(&dr->subsets[0].policy);
    ck_tp_unset_pool(&dr->subsets[0].policy);

    ht = &p->vss[0].http[0];
    ck_assert_ptr_null(ht->name);
    ck_assert_uint_eq(ht->nmatches, 0);
    ck_assert_ptr_null(ht->routes[0].subset);
    ck_assert_int_eq(ht->attempts, -1);
    ck_assert_int_eq(ht->per_try_timeout, -1);
    ck_assert_uint_eq(ht->retry_on, 0);
    ck_assert_int_eq(ht->timeout, -1);

    /* no request shaping */
    ck_assert_int_eq(ht->fault.delay, -1);
    ck_assert_int_eq(ht->fault.abort_status, 0);
    ck_assert_ptr_null(ht->rewrite.uri);
    ck_assert_ptr_null(ht->rewrite.authority);
    ck_assert_ptr_null(ht->redirect);
    ck_assert_ptr_null(ht->direct);
    ck_assert_uint_eq(ht->headers.request.nset + ht->headers.request.nadd
                      + ht->headers.request.nremove
                      + ht->headers.response.nset
                      + ht->headers.response.nadd
                      + ht->headers.response.nremove, 0);
    ck_assert_uint_eq(ht->routes[0].headers.request.nset
                      + ht->routes[0].headers.response.nremove, 0);

    mesh_policies_free(p);

    /* empty objects inside trafficPolicy and retries set nothing */

    p = ck_parse(CK_DR_TP("\"outlierDetection\":{},\"connectionPool\":"
                          "{\"tcp\":{},\"http\":{}}"));
    ck_assert_int_eq(p->rules[0].traffic.lb, MESH_LB_NONE);
    ck_tp_unset_pool(&p->rules[0].traffic);
    ck_tp_unset_outlier(&p->rules[0].traffic);
    mesh_policies_free(p);

    /* an empty tcpKeepalive says SO_KEEPALIVE with the kernel's timing */

    p = ck_parse(CK_DR_TP("\"connectionPool\":{\"tcp\":"
                          "{\"tcpKeepalive\":{}}}"));
    ck_assert_int_eq(p->rules[0].traffic.tcp_keepalive, 1);
    ck_assert_int_eq(p->rules[0].traffic.keepalive_time, -1);
    ck_assert_int_eq(p->rules[0].traffic.keepalive_interval, -1);
    ck_assert_int_eq(p->rules[0].traffic.keepalive_probes, -1);
    mesh_policies_free(p);

    p = ck_parse(CK_HTTP(",\"retries\":{\"retryOn\":[]}"));
    ck_assert_int_eq(p->vss[0].http[0].attempts, -1);
    ck_assert_uint_eq(p->vss[0].http[0].retry_on, 0);
    mesh_policies_free(p);

    p = ck_parse("[]");
    ck_assert_uint_eq(p->nrules, 0);
    ck_assert_uint_eq(p->nvss, 0);
    mesh_policies_free(p);

    p = ck_parse(" \n[ ] \n");
    ck_assert_uint_eq(p->nrules + p->nvss, 0);
    mesh_policies_free(p);
}
END_TEST


START_TEST(policy_subset_fields_override_the_rule)
{
    mesh_policies_t                *p;
    const mesh_traffic_policy_t    *tp;
    const mesh_destination_rule_t  *dr;

    /* the rule's trafficPolicy after the subsets: key order is free */

    p = ck_parse("[{\"policy\":\"p\",\"kind\":\"DestinationRule\","
                 "\"name\":\"n\",\"host\":\"h\",\"subsets\":["
                 "{\"name\":\"own\",\"labels\":{\"v\":\"1\"},"
                 "\"trafficPolicy\":{"
                 "\"loadBalancer\":{\"simple\":\"RANDOM\"},"
                 "\"outlierDetection\":{\"consecutive5xxErrors\":9,"
                 "\"minHealthPercent\":0},"
                 "\"connectionPool\":{\"tcp\":{\"maxConnections\":7}}}},"
                 "{\"name\":\"bare\",\"labels\":{\"v\":\"2\"}},"
                 "{\"name\":\"outlier-only\",\"labels\":{\"v\":\"3\"},"
                 "\"trafficPolicy\":{\"outlierDetection\":"
                 "{\"intervalMs\":1}}}],"
                 "\"trafficPolicy\":{"
                 "\"loadBalancer\":{\"consistentHash\":"
                 "{\"httpCookie\":{\"name\":\"sid\"}}},"
                 "\"outlierDetection\":{\"consecutive5xxErrors\":3,"
                 "\"consecutiveGatewayErrors\":4,"
                 "\"consecutiveLocalOriginFailures\":5,"
                 "\"intervalMs\":1000,\"baseEjectionTimeMs\":2000,"
                 "\"maxEjectionPercent\":30,\"minHealthPercent\":60,"
                 "\"splitExternalLocalOriginErrors\":true},"
                 "\"connectionPool\":{\"tcp\":{\"maxConnections\":50}}}}]");
    ck_walk(p);

    dr = &p->rules[0];
    ck_assert_int_eq(dr->traffic.lb, MESH_LB_HASH_COOKIE);
    ck_assert_str_eq(dr->traffic.hash_name, "sid");
    ck_assert_int_eq(dr->traffic.split_local_origin, 1);

    /* loadBalancer replaced as a whole: no cookie name left behind */

    tp = &mesh_rule_subset(dr, "own")->policy;
    ck_assert_int_eq(tp->lb, MESH_LB_RANDOM);
    ck_assert_ptr_null(tp->hash_name);
    ck_assert_int_eq(tp->max_connections, 7);
    ck_assert_int_eq(tp->consecutive_5xx, 9);
    ck_assert_int_eq(tp->min_health_percent, 0);
    ck_assert_int_eq(tp->consecutive_gateway, 4);
    ck_assert_int_eq(tp->consecutive_local_origin, 5);
    ck_assert_int_eq(tp->interval, 1000);
    ck_assert_int_eq(tp->base_ejection_time, 2000);
    ck_assert_int_eq(tp->max_ejection_percent, 30);
    ck_assert_int_eq(tp->split_local_origin, 1);

    tp = &mesh_rule_subset(dr, "bare")->policy;
    ck_assert_int_eq(tp->lb, MESH_LB_HASH_COOKIE);
    ck_assert_str_eq(tp->hash_name, "sid");
    ck_assert_int_eq(tp->max_connections, 50);
    ck_assert_int_eq(tp->consecutive_5xx, 3);
    ck_assert_int_eq(tp->min_health_percent, 60);

    tp = &mesh_rule_subset(dr, "outlier-only")->policy;
    ck_assert_int_eq(tp->lb, MESH_LB_HASH_COOKIE);
    ck_assert_str_eq(tp->hash_name, "sid");
    ck_assert_int_eq(tp->interval, 1);
    ck_assert_int_eq(tp->base_ejection_time, 2000);
    ck_assert_int_eq(tp->consecutive_5xx, 3);
    ck_assert_int_eq(tp->max_connections, 50);

    mesh_policies_free(p);
}
END_TEST


START_TEST(policy_pool_fields_read_and_inherited)
{
    mesh_policies_t                *p;
    const mesh_traffic_policy_t    *tp;
    const mesh_destination_rule_t  *dr;

    p = ck_parse("[{\"policy\":\"p\",\"kind\":\"DestinationRule\","
                 "\"name\":\"n\",\"host\":\"h\","
                 "\"trafficPolicy\":{\"connectionPool\":{"
                 "\"tcp\":{\"maxConnections\":10,\"connectTimeoutMs\":250,"
                 "\"tcpKeepalive\":{\"timeMs\":7000,\"intervalMs\":3000,"
                 "\"probes\":4}},"
                 "\"http\":{\"http1MaxPendingRequests\":0,"
                 "\"http2MaxRequests\":20,\"maxRequestsPerConnection\":3,"
                 "\"maxRetries\":2,\"idleTimeoutMs\":1500}}},"
                 "\"subsets\":["
                 "{\"name\":\"own\",\"labels\":{\"v\":\"1\"},"
                 "\"trafficPolicy\":{\"connectionPool\":{"
                 "\"tcp\":{\"tcpKeepalive\":{\"probes\":9}},"
                 "\"http\":{\"http2MaxRequests\":5,"
                 "\"maxRequestsPerConnection\":0,\"maxRetries\":0}}}},"
                 "{\"name\":\"bare\",\"labels\":{\"v\":\"2\"}}]}]");
    ck_walk(p);

    dr = &p->rules[0];
    tp = &dr->traffic;
    ck_assert_int_eq(tp->max_connections, 10);
    ck_assert_int_eq(tp->connect_timeout, 250);
    ck_assert_int_eq(tp->tcp_keepalive, 1);
    ck_assert_int_eq(tp->keepalive_time, 7000);
    ck_assert_int_eq(tp->keepalive_interval, 3000);
    ck_assert_int_eq(tp->keepalive_probes, 4);
    ck_assert_int_eq(tp->http1_max_pending, 0);
    ck_assert_int_eq(tp->http2_max_requests, 20);
    ck_assert_int_eq(tp->max_requests_per_conn, 3);
    ck_assert_int_eq(tp->max_retries, 2);
    ck_assert_int_eq(tp->idle_timeout, 1500);

    /* each field the subset leaves out comes from the rule; a 0 it gives
     * (no limit per connection, no retries at once) is its own */

    tp = &mesh_rule_subset(dr, "own")->policy;
    ck_assert_int_eq(tp->max_connections, 10);
    ck_assert_int_eq(tp->connect_timeout, 250);
    ck_assert_int_eq(tp->tcp_keepalive, 1);
    ck_assert_int_eq(tp->keepalive_time, 7000);
    ck_assert_int_eq(tp->keepalive_interval, 3000);
    ck_assert_int_eq(tp->keepalive_probes, 9);
    ck_assert_int_eq(tp->http1_max_pending, 0);
    ck_assert_int_eq(tp->http2_max_requests, 5);
    ck_assert_int_eq(tp->max_requests_per_conn, 0);
    ck_assert_int_eq(tp->max_retries, 0);
    ck_assert_int_eq(tp->idle_timeout, 1500);

    tp = &mesh_rule_subset(dr, "bare")->policy;
    ck_assert_int_eq(tp->keepalive_probes, 4);
    ck_assert_int_eq(tp->http2_max_requests, 20);
    ck_assert_int_eq(tp->max_requests_per_conn, 3);
    ck_assert_int_eq(tp->max_retries, 2);

    mesh_policies_free(p);
}
END_TEST


static const struct {
    const char  *tp;
    int          lb;
    const char  *hash_name;
} ck_lb[] = {
    { "{\"simple\":\"ROUND_ROBIN\"}", MESH_LB_ROUND_ROBIN, NULL },
    { "{\"simple\":\"RANDOM\"}", MESH_LB_RANDOM, NULL },
    { "{\"simple\":\"LEAST_REQUEST\"}", MESH_LB_LEAST_REQUEST, NULL },
    { "{\"simple\":\"LEAST_CONN\"}", MESH_LB_LEAST_REQUEST, NULL },
    { "{\"consistentHash\":{\"httpHeaderName\":\"x-user\"}}",
      MESH_LB_HASH_HEADER, "x-user" },
    { "{\"consistentHash\":{\"httpHeaderName\":\"X-User-Id\"}}",
      MESH_LB_HASH_HEADER, "x-user-id" },
    { "{\"consistentHash\":{\"httpQueryParameterName\":\"User\"}}",
      MESH_LB_HASH_QUERY, "User" },
    { "{\"consistentHash\":{\"httpCookie\":{\"name\":\"sid\"}}}",
      MESH_LB_HASH_COOKIE, "sid" },
    { "{\"consistentHash\":{\"httpCookie\":{\"path\":\"/\",\"ttlMs\":0,"
      "\"name\":\"sid\"}}}", MESH_LB_HASH_COOKIE, "sid" },
    { "{\"consistentHash\":{\"useSourceIp\":true}}",
      MESH_LB_HASH_SOURCE_IP, NULL },
    { "{\"future\":1,\"simple\":\"RANDOM\"}", MESH_LB_RANDOM, NULL },
};


START_TEST(policy_every_lb_kind)
{
    char              doc[512];
    mesh_policies_t  *p;

    snprintf(doc, sizeof(doc), CK_DR_TP("\"loadBalancer\":%s"),
             ck_lb[_i].tp);

    p = ck_parse(doc);
    ck_assert_int_eq(p->rules[0].traffic.lb, ck_lb[_i].lb);

    if (ck_lb[_i].hash_name) {
        ck_assert_str_eq(p->rules[0].traffic.hash_name, ck_lb[_i].hash_name);

    } else {
        ck_assert_ptr_null(p->rules[0].traffic.hash_name);
    }

    mesh_policies_free(p);
}
END_TEST


START_TEST(policy_retry_on_bits)
{
    size_t            i;
    mesh_policies_t  *p;
    char              doc[512];

    static const struct {
        const char  *list;
        unsigned     bits;
    } cases[] = {
        { "\"5xx\"", MESH_RETRY_5XX },
        { "\"gateway-error\"", MESH_RETRY_GATEWAY_ERROR },
        { "\"connect-failure\"", MESH_RETRY_CONNECT_FAILURE },
        { "\"reset\"", MESH_RETRY_RESET },
        { "\"reset\",\"5xx\"", MESH_RETRY_RESET | MESH_RETRY_5XX },
        { "\"5xx\",\"gateway-error\",\"connect-failure\",\"reset\"",
          0x0f },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(doc, sizeof(doc),
                 CK_HTTP(",\"retries\":{\"attempts\":0,\"retryOn\":[%s]}"),
                 cases[i].list);

        p = ck_parse(doc);
        ck_assert_uint_eq(p->vss[0].http[0].retry_on, cases[i].bits);
        ck_assert_int_eq(p->vss[0].http[0].attempts, 0);
        mesh_policies_free(p);
    }

    ck_parse_fails(CK_HTTP(",\"retries\":{\"retryOn\":[\"5xx\",\"5XX\"]}"),
                   "unknown \"retryOn\" \"5XX\"");

    /* registryd refuses it: so does the module's reader */
    ck_parse_fails(CK_HTTP(",\"retries\":{\"retryOn\":[\"retriable-4xx\"]}"),
                   "unknown \"retryOn\" \"retriable-4xx\"");
    ck_parse_fails(CK_HTTP(",\"retries\":{\"retryOn\":[\"refused-stream\"]}"),
                   "refused-stream");
    ck_parse_fails(CK_HTTP(",\"retries\":{\"retryOn\":[\"\"]}"), "retryOn");
    ck_parse_fails(CK_HTTP(",\"retries\":{\"retryOn\":\"5xx\"}"),
                   "must be an array");
}
END_TEST


START_TEST(policy_unknown_keys_and_escapes)
{
    mesh_policies_t  *p;

    p = ck_parse("[{\"kind\":\"VirtualService\",\"x\":{\"deep\":[1,{}]},"
                 "\"host\":5,\"subsets\":\"ignored for a VirtualService\","
                 "\"policy\":\"p\",\"name\":\"n\",\"hosts\":[\"a\",\"b\"],"
                 "\"http\":[{\"x\":null,\"match\":[{\"uri\":{\"prefix\":"
                 "\"/\\u00e9t\\u00e9\",\"y\":2},\"headers\":{\"X-A\":"
                 "{\"prefix\":\"a\"},\"x-b\":{\"regex\":\"b\\\\d+\"}}}],"
                 "\"route\":[{\"w\":1,\"destination\":{\"host\":\"b\","
                 "\"x\":{\"number\":80}},\"weight\":100}]}]}]");
    ck_walk(p);

    ck_assert_uint_eq(p->nvss, 1);
    ck_assert_str_eq(p->vss[0].http[0].matches[0].uri->value,
                     "/\xc3\xa9t\xc3\xa9");
    ck_assert_uint_eq(p->vss[0].http[0].matches[0].uri->len, 6);
    ck_assert_int_eq(p->vss[0].http[0].matches[0].uri->kind,
                     MESH_MATCH_PREFIX);
    ck_assert_uint_eq(p->vss[0].http[0].matches[0].nheaders, 2);
    ck_assert_str_eq(p->vss[0].http[0].matches[0].headers[0].name, "x-a");
    ck_assert_str_eq(p->vss[0].http[0].matches[0].headers[1].match.value,
                     "b\\d+");
    ck_assert_str_eq(p->vss[0].http[0].routes[0].host, "b");

    ck_assert_ptr_eq(mesh_policies_vs(p, "b", 1), &p->vss[0]);
    ck_assert_ptr_eq(mesh_policies_vs(p, "a", 1), &p->vss[0]);
    ck_assert_ptr_null(mesh_policies_rule(p, "a", 1));

    mesh_policies_free(p);
}
END_TEST


START_TEST(policy_lookups_take_the_first)
{
    mesh_policies_t  *p;
    const char       *host = "ordersXYZ";

    p = ck_parse("[{\"policy\":\"a\",\"kind\":\"DestinationRule\","
                 "\"name\":\"one\",\"host\":\"orders\",\"subsets\":[]},"
                 "{\"policy\":\"b\",\"kind\":\"DestinationRule\","
                 "\"name\":\"two\",\"host\":\"orders\",\"subsets\":[]},"
                 "{\"policy\":\"c\",\"kind\":\"DestinationRule\","
                 "\"name\":\"three\",\"host\":\"order\",\"subsets\":[]},"
                 "{\"policy\":\"a\",\"kind\":\"VirtualService\","
                 "\"name\":\"one\",\"hosts\":[\"users\",\"orders\"],"
                 "\"http\":[]},"
                 "{\"policy\":\"b\",\"kind\":\"VirtualService\","
                 "\"name\":\"two\",\"hosts\":[\"orders\"],\"http\":[]}]");

    ck_assert_uint_eq(p->nrules, 3);
    ck_assert_uint_eq(p->nvss, 2);

    /* the host is len bytes, not NUL-terminated */
    ck_assert_str_eq(mesh_policies_rule(p, host, 6)->name, "one");
    ck_assert_str_eq(mesh_policies_rule(p, host, 5)->name, "three");
    ck_assert_ptr_null(mesh_policies_rule(p, host, 7));
    ck_assert_ptr_null(mesh_policies_rule(p, host, 0));
    ck_assert_str_eq(mesh_policies_vs(p, host, 6)->name, "one");
    ck_assert_str_eq(mesh_policies_vs(p, "users", 5)->name, "one");
    ck_assert_ptr_null(mesh_policies_vs(p, host, 5));

    ck_assert_ptr_null(mesh_policies_rule(NULL, "orders", 6));
    ck_assert_ptr_null(mesh_policies_vs(NULL, "orders", 6));

    mesh_policies_free(p);
    mesh_policies_free(NULL);
}
END_TEST


static const struct {
    const char  *doc;
    const char  *what;
} ck_bad[] = {
    { "", "end of input" },
    { "   ", "end of input" },
    { "{}", "\"policies\" must be an array" },
    { "[", "end of input" },
    { "[] x", "unexpected data" },
    { "[1]", "a policy must be an object" },
    { "[{}]", "without \"kind\"" },
    { "[{\"kind\":\"Sidecar\"}]", "unknown \"kind\" \"Sidecar\"" },
    { "[{\"kind\":\"Gateway\"}]", "a Gateway without \"policy\"" },
    { "[{\"kind\":\"Gateway\",\"policy\":\"p\",\"name\":\"g\","
      "\"gateway\":\"default/g\",\"servers\":[{\"port\":1,\"hosts\":[],"
      "\"stream\":\"UDP\"}]}]", "unknown \"stream\" \"UDP\"" },
    { "[{\"kind\":\"VirtualService\",\"policy\":\"p\",\"name\":\"n\","
      "\"hosts\":[\"a\"],\"http\":[],\"tls\":[{\"route\":[{\"destination\":"
      "{\"host\":\"a\"},\"weight\":100}]}]}]",
      "a \"tls\" item without \"match\"" },
    { "[{\"kind\":\"VirtualService\",\"policy\":\"p\",\"name\":\"n\","
      "\"hosts\":[\"a\"],\"http\":[],\"tls\":[{\"match\":[{\"port\":443}],"
      "\"route\":[{\"destination\":{\"host\":\"a\"},\"weight\":100}]}]}]",
      "a tls \"match\" item without \"sniHosts\"" },
    { "[{\"kind\":7}]", "\"kind\" must be a string" },
    { "[{\"kind\":\"VirtualService\",\"kind\":\"VirtualService\"}]",
      "duplicate field \"kind\"" },
    { "[{\"kind\":\"DestinationRule\",\"policy\":\"p\",\"name\":\"n\","
      "\"subsets\":[]}]", "without \"host\"" },
    { "[{\"kind\":\"DestinationRule\",\"policy\":\"p\",\"name\":\"n\","
      "\"host\":\"h\"}]", "without \"subsets\"" },
    { "[{\"kind\":\"DestinationRule\",\"name\":\"n\",\"host\":\"h\","
      "\"subsets\":[]}]", "without \"policy\"" },
    { "[{\"kind\":\"VirtualService\",\"policy\":\"p\",\"hosts\":[],"
      "\"http\":[]}]", "without \"name\"" },
    { "[{\"kind\":\"VirtualService\",\"policy\":\"p\",\"name\":\"n\","
      "\"http\":[]}]", "without \"hosts\"" },
    { "[{\"kind\":\"VirtualService\",\"policy\":\"p\",\"name\":\"n\","
      "\"hosts\":[]}]", "without \"http\"" },
    { CK_DR("\"host\":\"x\""), "duplicate field \"host\"" },
    { "[{\"kind\":\"DestinationRule\",\"policy\":\"p\",\"name\":\"n\","
      "\"host\":\"\",\"subsets\":[]}]", "empty string" },
    { "[{\"kind\":\"DestinationRule\",\"policy\":\"p\",\"name\":\"n\","
      "\"host\":[\"h\"],\"subsets\":[]}]", "\"host\" must be a string" },
    { "[{\"kind\":\"DestinationRule\",\"policy\":\"p\",\"name\":\"n\","
      "\"host\":\"h\",\"subsets\":{}}]", "\"subsets\" must be an array" },
    { "[{\"kind\":\"DestinationRule\",\"policy\":\"p\",\"name\":\"n\","
      "\"host\":\"h\",\"subsets\":[{\"labels\":{}}]}]", "without \"name\"" },
    { "[{\"kind\":\"DestinationRule\",\"policy\":\"p\",\"name\":\"n\","
      "\"host\":\"h\",\"subsets\":[{\"name\":\"s\"}]}]",
      "without \"labels\"" },
    { "[{\"kind\":\"DestinationRule\",\"policy\":\"p\",\"name\":\"n\","
      "\"host\":\"h\",\"subsets\":[{\"name\":\"s\",\"labels\":"
      "{\"a\":1}}]}]", "a label value must be a string" },
    { "[{\"kind\":\"DestinationRule\",\"policy\":\"p\",\"name\":\"n\","
      "\"host\":\"h\",\"subsets\":[{\"name\":\"s\",\"labels\":"
      "{\"a\":\"1\",\"a\":\"2\"}}]}]", "duplicate label \"a\"" },
    { CK_DR_TP("\"loadBalancer\":{}"), "without \"simple\"" },
    { CK_DR_TP("\"loadBalancer\":{\"simple\":\"PASSTHROUGH\"}"),
      "unknown \"simple\" \"PASSTHROUGH\"" },
    { CK_DR_TP("\"loadBalancer\":{\"simple\":1}"), "must be a string" },
    { CK_DR_TP("\"loadBalancer\":{\"simple\":\"RANDOM\","
               "\"consistentHash\":{\"useSourceIp\":true}}"), "both" },
    { CK_DR_TP("\"loadBalancer\":{\"consistentHash\":{}}"),
      "without a key" },
    { CK_DR_TP("\"loadBalancer\":{\"consistentHash\":{\"useSourceIp\":"
               "false}}"), "must be true" },
    { CK_DR_TP("\"loadBalancer\":{\"consistentHash\":{\"useSourceIp\":"
               "\"true\"}}"), "true or false" },
    { CK_DR_TP("\"loadBalancer\":{\"consistentHash\":{\"httpHeaderName\":"
               "\"a\",\"httpQueryParameterName\":\"b\"}}"),
      "more than one key kind" },
    { CK_DR_TP("\"loadBalancer\":{\"consistentHash\":{\"httpCookie\":"
               "{\"ttlMs\":5}}}"), "without \"name\"" },
    { CK_DR_TP("\"loadBalancer\":{\"consistentHash\":{\"httpCookie\":"
               "{\"name\":\"c\",\"ttlMs\":-1}}}"), "\"ttlMs\"" },
    { CK_DR_TP("\"outlierDetection\":{\"consecutive5xxErrors\":\"5\"}"),
      "must be an integer" },
    { CK_DR_TP("\"outlierDetection\":{\"consecutive5xxErrors\":1.5}"),
      "must be an integer" },
    { CK_DR_TP("\"outlierDetection\":{\"consecutive5xxErrors\":"
               "2147483648}"), "consecutive5xxErrors" },
    { CK_DR_TP("\"outlierDetection\":{\"maxEjectionPercent\":101}"),
      "0..100" },
    { CK_DR_TP("\"outlierDetection\":{\"intervalMs\":0}"), "intervalMs" },
    { CK_DR_TP("\"outlierDetection\":{\"baseEjectionTimeMs\":"
               "99999999999999999999}"), "baseEjectionTimeMs" },
    { CK_DR_TP("\"outlierDetection\":{\"splitExternalLocalOriginErrors\":"
               "1}"), "true or false" },
    { CK_DR_TP("\"connectionPool\":{\"tcp\":{\"maxConnections\":0}}"),
      "maxConnections" },
    { CK_DR_TP("\"connectionPool\":{\"tcp\":[]}"), "must be an object" },
    { CK_DR_TP("\"connectionPool\":{\"http\":1}"), "must be an object" },
    { CK_DR_TP("\"connectionPool\":{\"tcp\":{\"connectTimeoutMs\":0}}"),
      "connectTimeoutMs" },
    { CK_DR_TP("\"connectionPool\":{\"tcp\":{\"tcpKeepalive\":"
               "{\"timeMs\":999}}}"), "timeMs" },
    { CK_DR_TP("\"connectionPool\":{\"tcp\":{\"tcpKeepalive\":"
               "{\"intervalMs\":32768000}}}"), "is above 32767000" },
    { CK_DR_TP("\"connectionPool\":{\"tcp\":{\"tcpKeepalive\":"
               "{\"probes\":128}}}"), "probes" },
    { CK_DR_TP("\"connectionPool\":{\"tcp\":{\"tcpKeepalive\":true}}"),
      "must be an object" },
    { CK_DR_TP("\"connectionPool\":{\"http\":{\"http2MaxRequests\":0}}"),
      "http2MaxRequests" },
    { CK_DR_TP("\"connectionPool\":{\"http\":{\"maxRetries\":-1}}"),
      "maxRetries" },
    { CK_DR_TP("\"connectionPool\":{\"http\":"
               "{\"maxRequestsPerConnection\":2147483648}}"),
      "maxRequestsPerConnection" },
    { CK_DR_TP("\"connectionPool\":{\"http\":{\"idleTimeoutMs\":\"1s\"}}"),
      "idleTimeoutMs" },
    { CK_DR_TP("\"connectionPool\":{\"http\":{\"maxRetries\":1,"
               "\"maxRetries\":2}}"), "duplicate field \"maxRetries\"" },
    { CK_DR("\"trafficPolicy\":null"), "must be an object" },
    { CK_DR_TP("\"tls\":{}"), "without \"mode\"" },
    { CK_DR_TP("\"tls\":{\"mode\":\"STRICT\"}"), "unknown \"tls.mode\"" },
    { CK_DR_TP("\"tls\":{\"mode\":\"MUTUAL\",\"privateKey\":\"/k\"}"),
      "MUTUAL without \"clientCertificate\"" },
    { CK_DR_TP("\"tls\":{\"mode\":\"SIMPLE\",\"caCertificates\":\"ca\"}"),
      "not an absolute path" },
    { CK_DR_TP("\"tls\":{\"mode\":\"SIMPLE\",\"subjectAltNames\":[\"\"]}"),
      "empty string" },
    { CK_VS("1"), "an \"http\" item must be an object" },
    { CK_VS("{" CK_ROUTE "}"), "without \"match\"" },
    { CK_VS("{\"match\":[]}"), "without \"route\"" },
    { CK_VS("{\"match\":[{}]," CK_ROUTE "}"),
      "without \"uri\", \"headers\" or \"sourceLabels\"" },
    { CK_VS("{\"match\":[{\"headers\":{}}]," CK_ROUTE "}"),
      "without \"uri\", \"headers\" or \"sourceLabels\"" },
    { CK_VS("{\"match\":[{\"sourceLabels\":{}}]," CK_ROUTE "}"),
      "without \"uri\", \"headers\" or \"sourceLabels\"" },
    { CK_VS("{\"match\":[{\"ignoreUriCase\":true}]," CK_ROUTE "}"),
      "without \"uri\", \"headers\" or \"sourceLabels\"" },
    { CK_VS("{\"match\":[{\"uri\":{\"prefix\":\"/\"},"
            "\"ignoreUriCase\":1}]," CK_ROUTE "}"),
      "\"ignoreUriCase\" must be true or false" },
    { CK_VS("{\"match\":[{\"sourceLabels\":[]}]," CK_ROUTE "}"),
      "\"sourceLabels\" must be an object" },
    { CK_VS("{\"match\":[{\"sourceLabels\":{\"a\":1}}]," CK_ROUTE "}"),
      "a label value must be a string" },
    { CK_VS("{\"match\":[{\"sourceLabels\":{\"a\":\"1\",\"a\":\"2\"}}],"
            CK_ROUTE "}"), "duplicate label \"a\"" },
    { CK_VS("{\"match\":[{\"uri\":{}}]," CK_ROUTE "}"),
      "without \"exact\", \"prefix\" or \"regex\"" },
    { CK_VS("{\"match\":[{\"uri\":{\"exact\":\"/\",\"prefix\":\"/\"}}],"
            CK_ROUTE "}"), "more than one" },
    { CK_VS("{\"match\":[{\"uri\":{\"suffix\":\"/\"}}]," CK_ROUTE "}"),
      "without \"exact\"" },
    { CK_VS("{\"match\":[{\"uri\":{\"exact\":\"\"}}]," CK_ROUTE "}"),
      "empty string" },
    { CK_VS("{\"match\":[{\"uri\":{\"exact\":\"a\\u0000b\"}}]," CK_ROUTE "}"),
      "\\u0000" },
    { CK_VS("{\"match\":[{\"headers\":{\"\":{\"exact\":\"a\"}}}],"
            CK_ROUTE "}"), "invalid header name" },
    { CK_VS("{\"match\":[{\"headers\":{\"a\":\"b\"}}]," CK_ROUTE "}"),
      "a header match must be an object" },
    { CK_VS("{\"match\":[],\"route\":[{\"weight\":100}]}"),
      "without \"destination\"" },
    { CK_VS("{\"match\":[],\"route\":[{\"destination\":{\"host\":\"h\"}}]}"),
      "without \"weight\"" },
    { CK_VS("{\"match\":[],\"route\":[{\"destination\":{\"subset\":\"s\"},"
            "\"weight\":100}]}"), "without \"host\"" },
    { CK_VS("{\"match\":[],\"route\":[{\"destination\":{\"host\":\"h\"},"
            "\"weight\":101}]}"), "\"weight\" must be an integer 0..100" },
    { CK_VS("{\"match\":[],\"route\":[{\"destination\":{\"host\":\"h\"},"
            "\"weight\":-1}]}"), "\"weight\"" },
    { CK_VS("{\"match\":[],\"route\":[{\"destination\":{\"host\":\"h\"},"
            "\"weight\":null}]}"), "\"weight\"" },
    { CK_HTTP(",\"retries\":{\"attempts\":101}"), "attempts" },
    { CK_HTTP(",\"retries\":{\"perTryTimeoutMs\":0}"), "perTryTimeoutMs" },
    { CK_HTTP(",\"retries\":[]"), "\"retries\" must be an object" },
    { CK_HTTP(",\"timeoutMs\":86400001"), "timeoutMs" },
    { CK_HTTP(",\"timeoutMs\":\"1s\""), "timeoutMs" },
    { CK_HTTP(",\"name\":5"), "must be a string" },
    { CK_HTTP(",\"timeoutMs\":1,\"timeoutMs\":2"), "duplicate field" },
    { "[{\"kind\":\"VirtualService\",\"policy\":\"p\",\"name\":\"n\","
      "\"hosts\":[\"h\",3],\"http\":[]}]", "a host must be a string" },
    { "[{\"kind\":\"VirtualService\",\"policy\":\"p\",\"name\":\"n\","
      "\"hosts\":[\"h\"],\"http\":[],}]", "expected a string key" },
    { "[{\"kind\":\"VirtualService\",\"policy\":\"p\",\"name\":\"\xff\","
      "\"hosts\":[\"h\"],\"http\":[]}]", "UTF-8" },
    /* request shaping */
    { CK_HTTP(",\"fault\":{}"), "without \"delay\" or \"abort\"" },
    { CK_HTTP(",\"fault\":{\"delay\":{\"ppm\":1}}"),
      "without \"fixedDelayMs\"" },
    { CK_HTTP(",\"fault\":{\"delay\":{\"fixedDelayMs\":1}}"),
      "without \"ppm\"" },
    { CK_HTTP(",\"fault\":{\"abort\":{\"httpStatus\":600,\"ppm\":1}}"),
      "httpStatus" },
    { CK_HTTP(",\"fault\":{\"abort\":{\"httpStatus\":500,\"ppm\":1000001}}"),
      "ppm" },
    { CK_HTTP(",\"fault\":{\"abort\":{\"httpStatus\":500,\"ppm\":1},"
              "\"abort\":{\"httpStatus\":500,\"ppm\":1}}"), "duplicate" },
    { CK_HTTP(",\"fault\":{\"delay\":{\"fixedDelayMs\":1,\"ppm\":1,"
              "\"ppm\":2}}"), "duplicate field \"ppm\"" },
    { CK_HTTP(",\"rewrite\":{}"), "without \"uri\" or \"authority\"" },
    { CK_HTTP(",\"rewrite\":{\"uri\":\"\"}"), "empty string" },
    { CK_HTTP(",\"rewrite\":{\"authority\":\"a\\r\\nx: y\"}"), "CR or LF" },
    { CK_HTTP("," CK_RD), "more than one of" },
    { CK_ANSWER(CK_RD ",\"directResponse\":{\"status\":200}"),
      "more than one of" },
    { CK_ANSWER(CK_RD ",\"fault\":{\"abort\":{\"httpStatus\":500,"
                "\"ppm\":1}}"), "answered by nginx" },
    { CK_ANSWER("\"directResponse\":{\"status\":200},\"rewrite\":"
                "{\"uri\":\"/\"}"), "answered by nginx" },
    { CK_ANSWER("\"redirect\":{\"uri\":\"/x\"}"),
      "without \"redirectCode\"" },
    { CK_ANSWER("\"redirect\":{\"redirectCode\":301}"),
      "without \"uri\", \"authority\"" },
    { CK_ANSWER("\"redirect\":{\"uri\":\"/x\",\"redirectCode\":304}"),
      "not one of 301" },
    { CK_ANSWER("\"redirect\":{\"scheme\":\"ftp\",\"redirectCode\":301}"),
      "unknown \"redirect.scheme\"" },
    { CK_ANSWER("\"redirect\":{\"port\":0,\"redirectCode\":301}"),
      "redirect.port" },
    { CK_ANSWER("\"directResponse\":{\"body\":\"x\"}"),
      "without \"status\"" },
    { CK_ANSWER("\"directResponse\":{\"status\":600}"),
      "directResponse.status" },
    { CK_ANSWER("\"directResponse\":{\"status\":200,\"body\":\"a\\u0000\"}"),
      "\\u0000" },
    { CK_ANSWER("\"directResponse\":{\"status\":200,\"body\":7}"),
      "must be a string" },
    { CK_HTTP(",\"headers\":[]"), "\"headers\" must be an object" },
    { CK_HTTP(",\"headers\":{\"request\":{\"set\":[]}}"),
      "a header operation must be an object" },
    { CK_HTTP(",\"headers\":{\"request\":{\"remove\":{}}}"),
      "a header operation must be an array" },
    { CK_HTTP(",\"headers\":{\"request\":{\"set\":{\"a b\":\"x\"}}}"),
      "not a header name" },
    { CK_HTTP(",\"headers\":{\"request\":{\"set\":{\"\":\"x\"}}}"),
      "not a header name" },
    { CK_HTTP(",\"headers\":{\"request\":{\"set\":{\":path\":\"x\"}}}"),
      "not a header name" },
    { CK_HTTP(",\"headers\":{\"response\":{\"add\":{\"a\":\"x\\ny\"}}}"),
      "CR or LF" },
    { CK_HTTP(",\"headers\":{\"response\":{\"add\":{\"a\":1}}}"),
      "must be a string" },
    { CK_HTTP(",\"headers\":{\"response\":{\"remove\":[1]}}"),
      "a header name must be a string" },
    { CK_HTTP(",\"headers\":{\"request\":{},\"request\":{}}"),
      "duplicate field \"request\"" },
    { CK_VS("{\"match\":[],\"route\":[{\"destination\":{\"host\":\"h\"},"
            "\"weight\":100,\"headers\":{\"request\":{\"remove\":"
            "[\"a\\u0000\"]}}}]}"), "not a header name" },
    /* corsPolicy */
    { CK_HTTP(",\"corsPolicy\":[]"), "\"corsPolicy\" must be an object" },
    { CK_HTTP(",\"corsPolicy\":{\"allowOrigins\":[{\"suffix\":\"a\"}]}"),
      "without \"exact\", \"prefix\" or \"regex\"" },
    { CK_HTTP(",\"corsPolicy\":{\"allowOrigins\":[{\"regex\":\"(\"}]}"),
      "allowOrigins" },
    { CK_HTTP(",\"corsPolicy\":{\"allowMethods\":[\"GET\\r\\nX: y\"]}"),
      "not a token" },
    { CK_HTTP(",\"corsPolicy\":{\"allowHeaders\":[\"a b\"]}"),
      "not a token" },
    { CK_HTTP(",\"corsPolicy\":{\"exposeHeaders\":[7]}"),
      "must be a string" },
    { CK_HTTP(",\"corsPolicy\":{\"maxAgeS\":0}"), "maxAgeS" },
    { CK_HTTP(",\"corsPolicy\":{\"allowCredentials\":1}"),
      "true or false" },
    { CK_HTTP(",\"corsPolicy\":{\"unmatchedPreflights\":\"DROP\"}"),
      "unknown \"unmatchedPreflights\"" },
    { CK_HTTP(",\"corsPolicy\":{\"maxAgeS\":1,\"maxAgeS\":2}"),
      "duplicate field \"maxAgeS\"" },
};


START_TEST(policy_malformed_rejected)
{
    ck_parse_fails(ck_bad[_i].doc, ck_bad[_i].what);
}
END_TEST


START_TEST(policy_error_offsets)
{
    char              err[MESH_ERR_LEN];
    const char       *doc;
    mesh_policies_t  *p;

    doc = "[{\"kind\":\"Nope\"}]";
    p = mesh_policies_parse(doc, strlen(doc), err, sizeof(err));
    ck_assert_ptr_null(p);
    ck_assert_str_eq(err, "policies: byte 9: unknown \"kind\" \"Nope\"");

    /* a small or missing error buffer is fine */

    p = mesh_policies_parse(doc, strlen(doc), err, 8);
    ck_assert_ptr_null(p);
    ck_assert_uint_lt(strlen(err), 8);

    ck_assert_ptr_null(mesh_policies_parse(doc, strlen(doc), NULL, 0));
    ck_assert_ptr_null(mesh_policies_parse(NULL, 0, err, sizeof(err)));
}
END_TEST


START_TEST(policy_truncated_at_every_offset)
{
    char              err[MESH_ERR_LEN];
    size_t            len, i;
    mesh_policies_t  *p;

    len = strlen(ck_doc_example);

    for (i = 0; i < len; i++) {
        err[0] = '\0';
        p = ck_parse_len(ck_doc_example, i, err, sizeof(err));
        ck_assert_msg(p == NULL, "a prefix of %zu bytes parsed", i);
        ck_assert_msg(strncmp(err, "policies: byte ", 15) == 0,
                      "at %zu: \"%s\"", i, err);
    }

    p = ck_parse_len(ck_doc_example, len, err, sizeof(err));
    ck_assert_ptr_nonnull(p);
    mesh_policies_free(p);
}
END_TEST


START_TEST(policy_mutations_never_crash)
{
    char              err[MESH_ERR_LEN], *doc;
    const char       *src;
    size_t            len, round, k, pos;
    uint32_t          seed;
    mesh_policies_t  *p;

    static const char  bytes[] = "{}[]\",:0123456789-.eEtrufalsn \\u\xc3\xff";

    src = (_i == 0) ? ck_doc_example : ck_doc_shaping;
    len = strlen(src);
    doc = malloc(len);
    ck_assert_ptr_nonnull(doc);

    seed = 12345;

    for (round = 0; round < 20000; round++) {
        memcpy(doc, src, len);

        for (k = 0; k < 1 + round % 4; k++) {
            seed = seed * 1103515245 + 12345;
            pos = (seed >> 8) % len;
            seed = seed * 1103515245 + 12345;

            if (seed & 0x10000) {
                doc[pos] = bytes[(seed >> 17) % (sizeof(bytes) - 1)];

            } else {
                doc[pos] = (char) (seed >> 20);
            }
        }

        p = ck_parse_len(doc, len, err, sizeof(err));

        if (p) {
            ck_walk(p);
            mesh_policies_free(p);

        } else {
            ck_assert_msg(strncmp(err, "policies: byte ", 15) == 0,
                          "\"%s\"", err);
        }
    }

    free(doc);
}
END_TEST


START_TEST(policy_deep_nesting_refused)
{
    char    *doc, *q;
    size_t   i, depth;

    depth = 200;
    doc = malloc(depth * 2 + 128);
    ck_assert_ptr_nonnull(doc);

    q = doc;
    q += sprintf(q, "[{\"kind\":\"VirtualService\",\"x\":");

    for (i = 0; i < depth; i++) {
        *q++ = '[';
    }

    for (i = 0; i < depth; i++) {
        *q++ = ']';
    }

    strcpy(q, "}]");

    ck_parse_fails(doc, "nested deeper");

    free(doc);
}
END_TEST


/* route picking */

static mesh_http_route_t *
ck_route(mesh_destination_t *d, const int *weights, size_t n,
    mesh_http_route_t *h)
{
    size_t  i;

    memset(h, 0, sizeof(mesh_http_route_t));

    for (i = 0; i < n; i++) {
        memset(&d[i], 0, sizeof(mesh_destination_t));
        d[i].weight = weights[i];
    }

    h->routes = d;
    h->nroutes = n;

    return h;
}


START_TEST(route_pick_90_10_is_exact)
{
    int                 counts[2], k;
    uint32_t            r;
    mesh_http_route_t   h;
    mesh_destination_t  d[2];
    static const int    w[] = { 90, 10 };

    ck_route(d, w, 2, &h);
    counts[0] = counts[1] = 0;

    for (r = 0; r < 100; r++) {
        k = mesh_route_pick(&h, r);
        ck_assert_int_ge(k, 0);
        ck_assert_int_le(k, 1);
        counts[k]++;
    }

    ck_assert_int_eq(counts[0], 90);
    ck_assert_int_eq(counts[1], 10);

    /* r beyond 99 wraps: any uint32_t is fine */
    ck_assert_int_eq(mesh_route_pick(&h, 100), 0);
    ck_assert_int_eq(mesh_route_pick(&h, 199), 1);
    ck_assert_int_eq(mesh_route_pick(&h, UINT32_MAX), UINT32_MAX % 100 < 90
                                                      ? 0 : 1);
}
END_TEST


START_TEST(route_pick_skips_zero_weights)
{
    int                 counts[5], k;
    uint32_t            r;
    mesh_http_route_t   h;
    mesh_destination_t  d[5];
    static const int    w[] = { 0, 50, 0, 50, 0 };
    static const int    zero[] = { 0, 0, 0 };
    static const int    uneven[] = { 1, 0, 2 };

    ck_route(d, w, 5, &h);
    memset(counts, 0, sizeof(counts));

    for (r = 0; r < 1000; r++) {
        k = mesh_route_pick(&h, r);
        ck_assert_int_ge(k, 0);
        ck_assert_int_lt(k, 5);
        counts[k]++;
    }

    ck_assert_int_eq(counts[0], 0);
    ck_assert_int_eq(counts[1], 500);
    ck_assert_int_eq(counts[2], 0);
    ck_assert_int_eq(counts[3], 500);
    ck_assert_int_eq(counts[4], 0);

    ck_route(d, zero, 3, &h);
    ck_assert_int_eq(mesh_route_pick(&h, 0), -1);
    ck_assert_int_eq(mesh_route_pick(&h, 57), -1);

    ck_route(d, zero, 0, &h);
    ck_assert_int_eq(mesh_route_pick(&h, 0), -1);
    ck_assert_int_eq(mesh_route_pick(NULL, 0), -1);

    /* weights that do not add up to 100 still split by their sum */
    ck_route(d, uneven, 3, &h);
    ck_assert_int_eq(mesh_route_pick(&h, 0), 0);
    ck_assert_int_eq(mesh_route_pick(&h, 1), 2);
    ck_assert_int_eq(mesh_route_pick(&h, 2), 2);
    ck_assert_int_eq(mesh_route_pick(&h, 3), 0);
}
END_TEST


/* string matching */

static int          ck_re_calls;
static const char  *ck_re_seen;
static size_t       ck_re_len;


static int
ck_re_match(void *regex, const char *s, size_t len)
{
    ck_re_calls++;
    ck_re_seen = s;
    ck_re_len = len;

    /* the "regex" here: a length the whole value must have */
    return len == *(size_t *) regex;
}


static mesh_string_match_t
ck_sm(int kind, const char *value)
{
    mesh_string_match_t  m;

    m.kind = kind;
    m.value = value;
    m.len = strlen(value);
    m.regex = NULL;
    m.ignore_case = 0;

    return m;
}


START_TEST(string_match_exact_prefix_regex)
{
    size_t               want;
    mesh_string_match_t  m;

    m = ck_sm(MESH_MATCH_EXACT, "/orders");
    ck_assert_int_eq(mesh_string_match(&m, "/orders", 7, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "/orders/1", 9, NULL), 0);
    ck_assert_int_eq(mesh_string_match(&m, "/orders/1", 7, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "/order", 6, NULL), 0);
    ck_assert_int_eq(mesh_string_match(&m, "/Orders", 7, NULL), 0);
    ck_assert_int_eq(mesh_string_match(&m, "", 0, NULL), 0);
    ck_assert_int_eq(mesh_string_match(&m, NULL, 0, NULL), 0);

    m = ck_sm(MESH_MATCH_PREFIX, "/api/");
    ck_assert_int_eq(mesh_string_match(&m, "/api/", 5, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "/api/v1", 7, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "/api", 4, NULL), 0);
    ck_assert_int_eq(mesh_string_match(&m, "/ap", 3, NULL), 0);
    ck_assert_int_eq(mesh_string_match(&m, "", 0, NULL), 0);
    ck_assert_int_eq(mesh_string_match(&m, "/apx/v1", 7, NULL), 0);

    /* an empty pattern (not from the parser, which refuses it) */
    m = ck_sm(MESH_MATCH_EXACT, "");
    ck_assert_int_eq(mesh_string_match(&m, "", 0, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "a", 1, NULL), 0);
    m = ck_sm(MESH_MATCH_PREFIX, "");
    ck_assert_int_eq(mesh_string_match(&m, "", 0, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "a", 1, NULL), 1);

    /* the regex goes to the caller, with the value's bytes */
    want = 3;
    m = ck_sm(MESH_MATCH_REGEX, "...");
    m.regex = &want;
    ck_re_calls = 0;

    ck_assert_int_eq(mesh_string_match(&m, "abcdef", 3, ck_re_match), 1);
    ck_assert_int_eq(ck_re_calls, 1);
    ck_assert_uint_eq(ck_re_len, 3);
    ck_assert_int_eq(memcmp(ck_re_seen, "abc", 3), 0);
    ck_assert_int_eq(mesh_string_match(&m, "abcd", 4, ck_re_match), 0);
    ck_assert_int_eq(mesh_string_match(&m, "", 0, ck_re_match), 0);
    ck_assert_uint_eq(ck_re_len, 0);
    ck_assert_int_eq(ck_re_calls, 3);

    /* a regex not compiled: no match */
    m.regex = NULL;
    ck_assert_int_eq(mesh_string_match(&m, "abc", 3, ck_re_match), 0);
    ck_assert_int_eq(ck_re_calls, 3);

    /* no condition matches everything */
    ck_assert_int_eq(mesh_string_match(NULL, "x", 1, NULL), 1);

    m = ck_sm(99, "x");
    ck_assert_int_eq(mesh_string_match(&m, "x", 1, NULL), 0);
}
END_TEST


START_TEST(string_match_ignores_case_for_exact_and_prefix)
{
    size_t               want;
    mesh_string_match_t  m;

    m = ck_sm(MESH_MATCH_EXACT, "/Api/X");
    m.ignore_case = 1;
    ck_assert_int_eq(mesh_string_match(&m, "/api/x", 6, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "/API/X", 6, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "/Api/X", 6, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "/api/x/", 7, NULL), 0);
    ck_assert_int_eq(mesh_string_match(&m, "/api/y", 6, NULL), 0);
    ck_assert_int_eq(mesh_string_match(&m, "/api", 4, NULL), 0);

    m = ck_sm(MESH_MATCH_PREFIX, "/api/");
    m.ignore_case = 1;
    ck_assert_int_eq(mesh_string_match(&m, "/API/x", 6, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "/Api/", 5, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "/APIx", 5, NULL), 0);
    ck_assert_int_eq(mesh_string_match(&m, "/AP", 3, NULL), 0);

    /* ASCII letters only: neither other bytes nor letters beyond ASCII
     * ("\xc3\x89" is E acute, "\xc3\xa9" e acute) */
    m = ck_sm(MESH_MATCH_EXACT, "/a@[\xc3\xa9");
    m.ignore_case = 1;
    ck_assert_int_eq(mesh_string_match(&m, "/A@[\xc3\xa9", 6, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&m, "/a`{\xc3\xa9", 6, NULL), 0);
    ck_assert_int_eq(mesh_string_match(&m, "/a@[\xc3\x89", 6, NULL), 0);

    /* Istio: a regex keeps its case; the bytes go to it as they are */
    want = 3;
    m = ck_sm(MESH_MATCH_REGEX, "...");
    m.regex = &want;
    m.ignore_case = 1;
    ck_re_calls = 0;
    ck_assert_int_eq(mesh_string_match(&m, "ABC", 3, ck_re_match), 1);
    ck_assert_int_eq(memcmp(ck_re_seen, "ABC", 3), 0);
    ck_assert_int_eq(ck_re_calls, 1);
}
END_TEST


START_TEST(labels_hold_every_pair)
{
    mesh_label_t  have[3], want[2];

    /* have: sorted by key, as the directive and the snapshot sort them */
    have[0].key = "app";
    have[0].value = "web";
    have[1].key = "tier";
    have[1].value = "front";
    have[2].key = "version";
    have[2].value = "v1";

    want[0].key = "version";
    want[0].value = "v1";
    want[1].key = "app";
    want[1].value = "web";

    ck_assert_int_eq(mesh_labels_hold(have, 3, want, 2), 1);
    ck_assert_int_eq(mesh_labels_hold(have, 3, want, 0), 1);
    ck_assert_int_eq(mesh_labels_hold(have, 2, want, 2), 0);
    ck_assert_int_eq(mesh_labels_hold(NULL, 0, want, 1), 0);

    want[1].value = "api";
    ck_assert_int_eq(mesh_labels_hold(have, 3, want, 2), 0);
    want[1].value = "we";
    ck_assert_int_eq(mesh_labels_hold(have, 3, want, 2), 0);
    want[1].value = "Web";
    ck_assert_int_eq(mesh_labels_hold(have, 3, want, 2), 0);
    want[1].value = "web";
    want[1].key = "ap";
    ck_assert_int_eq(mesh_labels_hold(have, 3, want, 2), 0);
}
END_TEST


static const char  ck_doc_match[] =
    "[{\"policy\":\"p\",\"kind\":\"VirtualService\",\"name\":\"n\","
    "\"hosts\":[\"h\"],\"http\":[{\"match\":["
    "{\"ignoreUriCase\":true,\"uri\":{\"prefix\":\"/Api/\"}},"
    "{\"uri\":{\"exact\":\"/x\"},\"ignoreUriCase\":false,\"later\":[1]},"
    "{\"uri\":{\"regex\":\"/v[0-9]\"},\"ignoreUriCase\":true},"
    "{\"sourceLabels\":{\"version\":\"v1\",\"app\":\"web\"},"
    "\"headers\":{\"x-a\":{\"exact\":\"1\"}}}],"
    CK_ROUTE "}]}]";


static void
ck_match(const mesh_policies_t *p)
{
    const mesh_match_t  *ma;

    ck_assert_uint_eq(p->nvss, 1);
    ck_assert_uint_eq(p->vss[0].http[0].nmatches, 4);
    ma = p->vss[0].http[0].matches;

    /* the flag read before or after the uri */
    ck_assert_int_eq(ma[0].uri->ignore_case, 1);
    ck_assert_int_eq(mesh_string_match(ma[0].uri, "/API/1", 6, NULL), 1);
    ck_assert_uint_eq(ma[0].nsource_labels, 0);
    ck_assert_ptr_null(ma[0].source_labels);

    ck_assert_int_eq(ma[1].uri->ignore_case, 0);
    ck_assert_int_eq(mesh_string_match(ma[1].uri, "/X", 2, NULL), 0);

    ck_assert_int_eq(mesh_string_match(ma[2].uri, "/v1", 3, NULL), 1);
    ck_assert_int_eq(mesh_string_match(ma[2].uri, "/V1", 3, NULL), 0);

    ck_assert_ptr_null(ma[3].uri);
    ck_assert_uint_eq(ma[3].nheaders, 1);
    ck_assert_uint_eq(ma[3].nsource_labels, 2);
    ck_assert_str_eq(ma[3].source_labels[0].key, "app");
    ck_assert_str_eq(ma[3].source_labels[0].value, "web");
    ck_assert_str_eq(ma[3].source_labels[1].key, "version");
    ck_assert_str_eq(ma[3].source_labels[1].value, "v1");
}


START_TEST(policy_match_case_and_source_labels_read_and_pack)
{
    char              err[MESH_ERR_LEN], *block, *copy;
    size_t            size, i;
    mesh_policies_t  *p, *q;

    p = ck_parse(ck_doc_match);
    ck_match(p);

    size = mesh_policies_pack(p, NULL, 0);
    block = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    copy = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    ck_assert(block && copy);

    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    mesh_policies_free(p);

    memcpy(copy, block, size);
    q = mesh_policies_unpack(copy, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);
    ck_match(q);
    mesh_policies_free(q);

    /* a damaged block is refused or reads as a whole model */
    for (i = 0; i < size; i++) {
        memcpy(copy, block, size);
        copy[i] ^= (char) (0x41 + i % 7);

        q = mesh_policies_unpack(copy, size, err, sizeof(err));
        if (q) {
            ck_walk(q);
            mesh_policies_free(q);
        }
    }

    free(copy);
    free(block);
}
END_TEST


/* corsPolicy's origins: an item that matches "*" allows every origin
 * (Envoy's isOriginAllowed); lists joined; what is absent, defaults */
START_TEST(cors_origins_as_envoy_decides)
{
    mesh_cors_t       *c;
    mesh_policies_t   *p;

    p = ck_parse(CK_VS(
        "{\"match\":[]," CK_ROUTE ",\"corsPolicy\":{\"allowOrigins\":"
        "[{\"exact\":\"https://a.example\"},{\"prefix\":\"http://dev.\"}],"
        "\"allowMethods\":[\"GET\"],\"unmatchedPreflights\":\"IGNORE\","
        "\"allowCredentials\":false,\"later\":{\"x\":[1]}}},"
        "{\"match\":[]," CK_ROUTE ",\"corsPolicy\":{\"allowOrigins\":"
        "[{\"exact\":\"*\"}],\"unmatchedPreflights\":\"FORWARD\"}},"
        "{\"match\":[]," CK_ROUTE ",\"corsPolicy\":{\"allowOrigins\":"
        "[{\"regex\":\".*\"}],\"allowHeaders\":[],"
        "\"exposeHeaders\":[\"a\",\"B-c\",\"d\"]}},"
        "{\"match\":[]," CK_ROUTE ",\"corsPolicy\":{}}"));

    c = p->vss[0].http[0].cors;
    ck_assert_ptr_nonnull(c);
    ck_assert(mesh_cors_origin_allowed(c, "https://a.example", 17, NULL));
    ck_assert(!mesh_cors_origin_allowed(c, "https://a.example2", 18, NULL));
    ck_assert(!mesh_cors_origin_allowed(c, "https://A.example", 17, NULL));
    ck_assert(mesh_cors_origin_allowed(c, "http://dev.x", 12, NULL));
    ck_assert(!mesh_cors_origin_allowed(c, "http://de", 9, NULL));
    ck_assert(!mesh_cors_origin_allowed(c, "*", 1, NULL));
    ck_assert_str_eq(c->allow_methods, "GET");
    ck_assert_ptr_null(c->allow_headers);
    ck_assert_ptr_null(c->expose_headers);
    ck_assert_int_eq(c->max_age, -1);
    ck_assert_int_eq(c->allow_credentials, 0);
    ck_assert_int_eq(c->forward_unmatched, 0);

    c = p->vss[0].http[1].cors;
    ck_assert(mesh_cors_origin_allowed(c, "https://any.where", 17, NULL));
    ck_assert(mesh_cors_origin_allowed(c, "null", 4, NULL));
    ck_assert(!mesh_cors_origin_allowed(c, "", 0, NULL));
    ck_assert_int_eq(c->forward_unmatched, 1);

    c = p->vss[0].http[2].cors;
    ck_assert(mesh_cors_origin_allowed(c, "https://b.example", 17, NULL));
    ck_assert_ptr_null(c->allow_headers);
    ck_assert_str_eq(c->expose_headers, "a,B-c,d");

    c = p->vss[0].http[3].cors;
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->norigins, 0);
    ck_assert(!mesh_cors_origin_allowed(c, "https://a.example", 17, NULL));
    ck_assert_int_eq(c->forward_unmatched, 1);

    ck_assert(!mesh_cors_origin_allowed(NULL, "https://a.example", 17, NULL));

    mesh_policies_free(p);
}
END_TEST


/* subsets */

/* workloadSelector: read, sorted, packed and unpacked with the rule */
START_TEST(rule_workload_selector_read_and_pack)
{
    char                            err[MESH_ERR_LEN], *block;
    size_t                          size;
    mesh_policies_t                *p, *q;
    const mesh_destination_rule_t  *dr;

    static const mesh_label_t  web[] = { { "app", "web" }, { "tier", "a" } };
    static const mesh_label_t  api[] = { { "app", "api" } };

    p = ck_parse("[{\"policy\":\"o\",\"kind\":\"DestinationRule\","
                 "\"name\":\"o\",\"host\":\"orders\",\"subsets\":[],"
                 "\"workloadSelector\":{\"matchLabels\":{\"app\":\"web\"}}}]");
    dr = mesh_policies_rule(p, "orders", 6);
    ck_assert_ptr_nonnull(dr);
    ck_assert_uint_eq(dr->nselector, 1);
    ck_assert(mesh_labels_hold(web, 2, dr->selector, dr->nselector));
    ck_assert(!mesh_labels_hold(api, 1, dr->selector, dr->nselector));

    size = mesh_policies_pack(p, NULL, 0);
    block = malloc(size);
    ck_assert_ptr_nonnull(block);
    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    q = mesh_policies_unpack(block, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);
    dr = mesh_policies_rule(q, "orders", 6);
    ck_assert_uint_eq(dr->nselector, 1);
    ck_assert_str_eq(dr->selector[0].key, "app");
    ck_assert_str_eq(dr->selector[0].value, "web");
    mesh_policies_free(q);
    free(block);
    mesh_policies_free(p);

    /* no label: refused */
    ck_assert_ptr_null(ck_parse_len("[{\"policy\":\"o\",\"kind\":"
        "\"DestinationRule\",\"name\":\"o\",\"host\":\"orders\","
        "\"subsets\":[],\"workloadSelector\":{}}]", 103, err, sizeof(err)));
}
END_TEST


/* Gateways and gateway-bound VirtualServices: read, packed, unpacked;
 * the mesh's lookups skip a VirtualService of gateways alone and fall
 * back to the most specific wildcard, exact names first */
static const char  ck_doc_gateways[] =
    "[{\"policy\":\"gateway.default.gw\",\"kind\":\"Gateway\","
    "\"name\":\"gw\",\"gateway\":\"default/gw\","
    "\"selector\":{\"istio\":\"ingressgateway\"},"
    "\"servers\":[{\"port\":80,\"protocol\":\"HTTP\","
    "\"hosts\":[\"*\",\"shop/a.example\"],\"httpsRedirect\":true},"
    "{\"port\":443,\"protocol\":\"HTTPS\",\"hosts\":[\"*.example\"]},"
    "{\"port\":31400,\"hosts\":[\"*\"],\"stream\":\"TCP\"},"
    "{\"port\":8443,\"hosts\":[\"*.b.com\"],\"stream\":\"TLS\"}]},"
    "{\"policy\":\"v1\",\"kind\":\"VirtualService\",\"name\":\"edge\","
    "\"hosts\":[\"*\"],\"gateways\":[\"default/gw\"],"
    "\"namespace\":\"default\",\"http\":[{\"match\":[],\"route\":"
    "[{\"destination\":{\"host\":\"web\",\"port\":9080},"
    "\"weight\":100}]}],"
    "\"tcp\":[{\"match\":[{\"port\":31400}],\"route\":"
    "[{\"destination\":{\"host\":\"echo\"},\"weight\":100}]}],"
    "\"tls\":[{\"match\":[{\"sniHosts\":[\"login.b.com\"],\"port\":8443},"
    "{\"sniHosts\":[\"*.x.b.com\",\"y.b.com\"]}],\"route\":"
    "[{\"destination\":{\"host\":\"login\",\"subset\":\"v1\"},"
    "\"weight\":70},{\"destination\":{\"host\":\"web\"},"
    "\"weight\":30}]}]},"
    "{\"policy\":\"v2\",\"kind\":\"VirtualService\",\"name\":\"all\","
    "\"hosts\":[\"*\"],\"http\":[{\"match\":[],\"route\":"
    "[{\"destination\":{\"host\":\"a\"},\"weight\":100}]}]},"
    "{\"policy\":\"v3\",\"kind\":\"VirtualService\",\"name\":\"co\","
    "\"hosts\":[\"*.co.org\"],\"gateways\":[\"mesh\",\"default/gw\"],"
    "\"namespace\":\"default\",\"http\":[{\"match\":[],\"route\":"
    "[{\"destination\":{\"host\":\"b\"},\"weight\":100}]}]},"
    "{\"policy\":\"v4\",\"kind\":\"VirtualService\",\"name\":\"x\","
    "\"hosts\":[\"x.co.org\"],\"http\":[{\"match\":[],\"route\":"
    "[{\"destination\":{\"host\":\"c\"},\"weight\":100}]}]},"
    "{\"policy\":\"d1\",\"kind\":\"DestinationRule\",\"name\":\"f\","
    "\"host\":\"*.foo.com\",\"subsets\":[]},"
    "{\"policy\":\"d2\",\"kind\":\"DestinationRule\",\"name\":\"g\","
    "\"host\":\"*.b.foo.com\",\"subsets\":[]},"
    "{\"policy\":\"d3\",\"kind\":\"DestinationRule\",\"name\":\"h\","
    "\"host\":\"a.b.foo.com\",\"subsets\":[]}]";


static void
ck_gateways(const mesh_policies_t *p)
{
    const mesh_gateway_t  *gw;

    ck_assert_uint_eq(p->ngateways, 1);
    gw = mesh_policies_gateway(p, "default/gw", 10);
    ck_assert_ptr_nonnull(gw);
    ck_assert_ptr_null(mesh_policies_gateway(p, "default/g", 9));
    ck_assert_str_eq(gw->name, "gw");
    ck_assert_uint_eq(gw->nselector, 1);
    ck_assert_str_eq(gw->selector[0].value, "ingressgateway");
    ck_assert_uint_eq(gw->nservers, 4);
    ck_assert_int_eq(gw->servers[0].stream, MESH_GW_HTTP);
    ck_assert_int_eq(gw->servers[1].stream, MESH_GW_HTTP);
    ck_assert_int_eq(gw->servers[2].stream, MESH_GW_TCP);
    ck_assert_int_eq(gw->servers[2].port, 31400);
    ck_assert_int_eq(gw->servers[3].stream, MESH_GW_TLS);
    ck_assert_str_eq(gw->servers[3].hosts[0], "*.b.com");
    ck_assert_int_eq(gw->servers[0].port, 80);
    ck_assert(!gw->servers[0].https && gw->servers[0].https_redirect);
    ck_assert_uint_eq(gw->servers[0].nhosts, 2);
    ck_assert_str_eq(gw->servers[0].hosts[1], "shop/a.example");
    ck_assert(gw->servers[1].https && !gw->servers[1].https_redirect);
    ck_assert_str_eq(gw->servers[1].hosts[0], "*.example");

    ck_assert(!p->vss[0].mesh && p->vss[1].mesh && p->vss[2].mesh);
    ck_assert(mesh_vs_at_gateway(&p->vss[0], "default/gw"));
    ck_assert(!mesh_vs_at_gateway(&p->vss[1], "default/gw"));
    ck_assert(mesh_vs_at_gateway(&p->vss[2], "default/gw"));
    ck_assert_str_eq(p->vss[0].ns, "default");
    ck_assert_ptr_null(p->vss[1].ns);
    ck_assert_int_eq(p->vss[0].http[0].routes[0].port, 9080);

    /* a gateway VirtualService's tcp and tls routes */
    ck_assert_uint_eq(p->vss[0].ntcp, 1);
    ck_assert_int_eq(p->vss[0].tcp[0].ports[0], 31400);
    ck_assert_str_eq(p->vss[0].tcp[0].routes[0].host, "echo");
    ck_assert_uint_eq(p->vss[0].ntls, 1);
    ck_assert_uint_eq(p->vss[0].tls[0].nmatches, 2);
    ck_assert_uint_eq(p->vss[0].tls[0].matches[0].nsni, 1);
    ck_assert_str_eq(p->vss[0].tls[0].matches[0].sni[0], "login.b.com");
    ck_assert_int_eq(p->vss[0].tls[0].matches[0].port, 8443);
    ck_assert_uint_eq(p->vss[0].tls[0].matches[1].nsni, 2);
    ck_assert_str_eq(p->vss[0].tls[0].matches[1].sni[1], "y.b.com");
    ck_assert_int_eq(p->vss[0].tls[0].matches[1].port, 0);
    ck_assert_uint_eq(p->vss[0].tls[0].nroutes, 2);
    ck_assert_str_eq(p->vss[0].tls[0].routes[0].subset, "v1");
    ck_assert_int_eq(p->vss[0].tls[0].routes[1].weight, 30);
    ck_assert_uint_eq(p->vss[1].ntls, 0);

    ck_assert(mesh_tcp_route_fits(&p->vss[0].tcp[0], 31400));
    ck_assert(!mesh_tcp_route_fits(&p->vss[0].tcp[0], 80));
    ck_assert_int_eq(mesh_tls_route_match(&p->vss[0].tls[0], 8443,
                                          "LOGIN.b.com", 11),
                     MESH_HOST_EXACT);
    ck_assert_int_eq(mesh_tls_route_match(&p->vss[0].tls[0], 443,
                                          "login.b.com", 11), -1);
    ck_assert_int_eq(mesh_tls_route_match(&p->vss[0].tls[0], 443,
                                          "a.x.b.com", 9),
                     mesh_host_match("*.x.b.com", "a.x.b.com", 9, 0));
    ck_assert(mesh_host_match("*.x.b.com", "a.x.b.com", 9, 0) > 0);
    ck_assert_int_eq(mesh_tls_route_match(&p->vss[0].tls[0], 443,
                                          "x.b.com", 7), -1);
    ck_assert_int_eq(mesh_tls_route_match(&p->vss[0].tls[0], 1,
                                          "y.b.com", 7), MESH_HOST_EXACT);
    ck_assert_int_eq(mesh_tls_route_match(&p->vss[0].tls[0], 8443, "", 0),
                     -1);
    ck_assert_int_eq(p->vss[1].http[0].routes[0].port, 0);

    /* the mesh's: exact, then the longest suffix, then "*"; never the
     * gateway's own */
    ck_assert_str_eq(mesh_policies_vs(p, "x.co.org", 8)->name, "x");
    ck_assert_str_eq(mesh_policies_vs(p, "y.co.org", 8)->name, "co");
    ck_assert_str_eq(mesh_policies_vs(p, "co.org", 6)->name, "all");
    ck_assert_str_eq(mesh_policies_vs(p, "web", 3)->name, "all");

    ck_assert_str_eq(mesh_policies_rule(p, "a.b.foo.com", 11)->name, "h");
    ck_assert_str_eq(mesh_policies_rule(p, "c.b.foo.com", 11)->name, "g");
    ck_assert_str_eq(mesh_policies_rule(p, "c.foo.com", 9)->name, "f");
    ck_assert_ptr_null(mesh_policies_rule(p, "foo.com", 7));
    ck_assert_ptr_null(mesh_policies_rule(p, "c.foo.co", 8));
}


START_TEST(gateways_read_pack_and_lookups)
{
    char              err[MESH_ERR_LEN], *block, *again;
    size_t            size, i;
    mesh_policies_t  *p, *q;

    p = ck_parse(ck_doc_gateways);
    ck_walk(p);
    ck_gateways(p);

    size = mesh_policies_pack(p, NULL, 0);
    block = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    again = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    ck_assert(block && again);
    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    mesh_policies_free(p);

    memcpy(again, block, size);
    q = mesh_policies_unpack(again, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);
    ck_gateways(q);
    mesh_policies_free(q);

    /* damaged: refused or read inside the block */
    for (i = 0; i < size; i++) {
        memcpy(again, block, size);
        again[i] ^= (char) (0x41 + i % 7);

        q = mesh_policies_unpack(again, size, err, sizeof(err));
        if (q) {
            ck_walk(q);
            mesh_policies_free(q);
        }
    }

    free(again);
    free(block);

    ck_parse_fails("[{\"policy\":\"g\",\"kind\":\"Gateway\",\"name\":\"g\","
                   "\"gateway\":\"d/g\",\"servers\":[{\"port\":80,"
                   "\"protocol\":\"TCP\",\"hosts\":[\"*\"]}]}]",
                   "unknown \"protocol\" \"TCP\"");
    ck_parse_fails("[{\"policy\":\"g\",\"kind\":\"Gateway\",\"name\":\"g\","
                   "\"gateway\":\"d/g\",\"servers\":[{\"port\":0,"
                   "\"hosts\":[\"*\"]}]}]", "port");
    ck_parse_fails("[{\"policy\":\"g\",\"kind\":\"Gateway\",\"name\":\"g\","
                   "\"gateway\":\"d/g\",\"servers\":[{\"port\":80}]}]",
                   "without \"hosts\"");
    ck_parse_fails("[{\"policy\":\"g\",\"kind\":\"Gateway\",\"name\":\"g\","
                   "\"servers\":[]}]", "without \"gateway\"");
}
END_TEST


/* mirrors: read, packed and unpacked with the route; a route answered by
 * nginx has none */
START_TEST(route_mirrors_read_and_pack)
{
    char                           err[MESH_ERR_LEN], *block;
    size_t                         size;
    mesh_policies_t               *p, *q;
    const mesh_virtual_service_t  *vs;

    static const char  json[] =
        "[{\"policy\":\"o\",\"kind\":\"VirtualService\",\"name\":\"o\","
        "\"hosts\":[\"orders\"],\"http\":[{\"match\":[],\"route\":["
        "{\"destination\":{\"host\":\"orders\"},\"weight\":100}],"
        "\"mirrors\":[{\"destination\":{\"host\":\"audit\"},\"ppm\":250000},"
        "{\"destination\":{\"host\":\"orders\",\"subset\":\"v2\"},"
        "\"ppm\":1000000}]}]}]";

#define MIRROR_VS  "[{\"policy\":\"o\",\"kind\":\"VirtualService\"," \
    "\"name\":\"o\",\"hosts\":[\"orders\"],\"http\":[{\"match\":[],"
#define MIRROR_RT  "\"route\":[{\"destination\":{\"host\":\"orders\"}," \
    "\"weight\":100}],"

    static const char *const  bad[] = {
        MIRROR_VS MIRROR_RT "\"mirrors\":[{\"destination\":{\"host\":"
        "\"audit\"},\"ppm\":1000001}]}]}]",
        MIRROR_VS MIRROR_RT "\"mirrors\":[{\"ppm\":1}]}]}]",
        MIRROR_VS "\"redirect\":{\"uri\":\"/x\",\"redirectCode\":301},"
        "\"mirrors\":[{\"destination\":{\"host\":\"audit\"},\"ppm\":1}]}]}]"
    };

#undef MIRROR_VS
#undef MIRROR_RT

    p = ck_parse(json);
    vs = mesh_policies_vs(p, "orders", 6);
    ck_assert_ptr_nonnull(vs);
    ck_assert_uint_eq(vs->http[0].nmirrors, 2);

    size = mesh_policies_pack(p, NULL, 0);
    block = malloc(size);
    ck_assert_ptr_nonnull(block);
    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    q = mesh_policies_unpack(block, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);
    vs = mesh_policies_vs(q, "orders", 6);
    ck_assert_uint_eq(vs->http[0].nmirrors, 2);
    ck_assert_str_eq(vs->http[0].mirrors[0].host, "audit");
    ck_assert_ptr_null(vs->http[0].mirrors[0].subset);
    ck_assert_uint_eq(vs->http[0].mirrors[0].ppm, 250000);
    ck_assert_str_eq(vs->http[0].mirrors[1].host, "orders");
    ck_assert_str_eq(vs->http[0].mirrors[1].subset, "v2");
    ck_assert_uint_eq(vs->http[0].mirrors[1].ppm, 1000000);
    mesh_policies_free(q);
    free(block);
    mesh_policies_free(p);

    /* a ppm over a million, an item without destination, a redirect
     * with mirrors: refused */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(ck_parse_len(bad[i], strlen(bad[i]), err, sizeof(err))
                      == NULL, "case %zu parsed", i);
    }
}
END_TEST


/*
 * portLevelSettings: the entry for a port replaces the rule's policy
 * (nothing inherited from it); a subset's entry for a port takes what it
 * leaves unset from the rule's policy for that port; other ports, and no
 * port, keep the trafficPolicy. Packed and unpacked with the rule.
 */
static void
check_ports(const mesh_destination_rule_t *dr)
{
    const mesh_subset_t          *a, *b;
    const mesh_traffic_policy_t  *tp;

    tp = mesh_rule_traffic(dr, NULL, 0);
    ck_assert_int_eq(tp->lb, MESH_LB_RANDOM);
    ck_assert_int_eq(tp->consecutive_5xx, 7);
    ck_assert(mesh_rule_traffic(dr, NULL, 81) == tp);

    tp = mesh_rule_traffic(dr, NULL, 80);
    ck_assert_int_eq(tp->lb, MESH_LB_HASH_HEADER);
    ck_assert_str_eq(tp->hash_name, "x-user");
    ck_assert_int_eq(tp->consecutive_5xx, -1);      /* not inherited */

    tp = mesh_rule_traffic(dr, NULL, 9080);
    ck_assert_int_eq(tp->lb, MESH_LB_NONE);          /* mesh_balancer */
    ck_assert_int_eq(tp->http2_max_requests, 1);

    a = mesh_rule_subset(dr, "a");
    b = mesh_rule_subset(dr, "b");

    /* a: no policy of its own: the rule's, port by port */
    ck_assert_int_eq(mesh_rule_traffic(dr, a, 0)->lb, MESH_LB_RANDOM);
    ck_assert_str_eq(mesh_rule_traffic(dr, a, 80)->hash_name, "x-user");
    ck_assert_int_eq(mesh_rule_traffic(dr, a, 80)->consecutive_5xx, -1);
    ck_assert_int_eq(mesh_rule_traffic(dr, a, 9080)->http2_max_requests, 1);

    /* b: LEAST_REQUEST, and its own entry for 9080 */
    ck_assert_int_eq(mesh_rule_traffic(dr, b, 0)->lb, MESH_LB_LEAST_REQUEST);
    ck_assert_int_eq(mesh_rule_traffic(dr, b, 0)->consecutive_5xx, 7);
    ck_assert_int_eq(mesh_rule_traffic(dr, b, 80)->lb, MESH_LB_LEAST_REQUEST);
    tp = mesh_rule_traffic(dr, b, 9080);
    ck_assert_int_eq(tp->lb, MESH_LB_ROUND_ROBIN);
    ck_assert_int_eq(tp->http2_max_requests, 1);    /* the rule's 9080 */
    ck_assert_int_eq(tp->max_retries, 3);
    ck_assert_int_eq(tp->consecutive_5xx, -1);
}


START_TEST(rule_port_level_settings_read_and_pack)
{
    char                            err[MESH_ERR_LEN], *block;
    size_t                          size;
    mesh_policies_t                *p, *q;

    p = ck_parse("[{\"policy\":\"o\",\"kind\":\"DestinationRule\","
        "\"name\":\"o\",\"host\":\"orders\",\"trafficPolicy\":{"
        "\"loadBalancer\":{\"simple\":\"RANDOM\"},"
        "\"outlierDetection\":{\"consecutive5xxErrors\":7},"
        "\"portLevelSettings\":[{\"port\":80,\"loadBalancer\":"
        "{\"consistentHash\":{\"httpHeaderName\":\"x-user\"}}},"
        "{\"port\":9080,\"connectionPool\":{\"http\":"
        "{\"http2MaxRequests\":1}}}]},"
        "\"subsets\":[{\"name\":\"a\",\"labels\":{\"v\":\"1\"}},"
        "{\"name\":\"b\",\"labels\":{\"v\":\"2\"},\"trafficPolicy\":{"
        "\"loadBalancer\":{\"simple\":\"LEAST_REQUEST\"},"
        "\"portLevelSettings\":[{\"port\":9080,\"loadBalancer\":"
        "{\"simple\":\"ROUND_ROBIN\"},\"connectionPool\":{\"http\":"
        "{\"maxRetries\":3}}}]}}]}]");
    check_ports(mesh_policies_rule(p, "orders", 6));

    size = mesh_policies_pack(p, NULL, 0);
    block = malloc(size);
    ck_assert_ptr_nonnull(block);
    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    mesh_policies_free(p);

    q = mesh_policies_unpack(block, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);
    check_ports(mesh_policies_rule(q, "orders", 6));
    mesh_policies_free(q);
    free(block);

    /* an entry without its port: refused */
    ck_parse_fails("[{\"policy\":\"o\",\"kind\":\"DestinationRule\","
        "\"name\":\"o\",\"host\":\"orders\",\"subsets\":[],"
        "\"trafficPolicy\":{\"portLevelSettings\":[{}]}}]",
        "without \"port\"");
}
END_TEST


/*
 * tls in portLevelSettings: an entry's replaces the rule's (an entry
 * without tls has none: NONE, not the rule's); a subset's own entry, or
 * its own trafficPolicy's tls, over the rule's entry for the port; the
 * strings of each entry's tls packed and unpacked
 */
static void
check_port_tls(const mesh_destination_rule_t *dr)
{
    const mesh_tls_t     *tls;
    const mesh_subset_t  *a, *b, *c;

    ck_assert_int_eq(mesh_rule_traffic(dr, NULL, 0)->tls.mode,
                     MESH_TLS_ISTIO_MUTUAL);
    ck_assert_int_eq(mesh_rule_traffic(dr, NULL, 81)->tls.mode,
                     MESH_TLS_ISTIO_MUTUAL);

    tls = &mesh_rule_traffic(dr, NULL, 443)->tls;
    ck_assert_int_eq(tls->mode, MESH_TLS_SIMPLE);
    ck_assert_str_eq(tls->ca_certificates, "/ca");
    ck_assert_str_eq(tls->sni, "orders.mesh");
    ck_assert_uint_eq(tls->nsubject_alt_names, 2);
    ck_assert_str_eq(tls->subject_alt_names[0], "orders.mesh");
    ck_assert_str_eq(tls->subject_alt_names[1], "spiffe://m/o");

    /* an entry without tls: none, the location decides */
    ck_assert_int_eq(mesh_rule_traffic(dr, NULL, 80)->tls.mode,
                     MESH_TLS_NONE);

    a = mesh_rule_subset(dr, "a");
    b = mesh_rule_subset(dr, "b");
    c = mesh_rule_subset(dr, "c");

    /* a: nothing of its own: the rule's, port by port */
    ck_assert_int_eq(mesh_rule_traffic(dr, a, 0)->tls.mode,
                     MESH_TLS_ISTIO_MUTUAL);
    tls = &mesh_rule_traffic(dr, a, 443)->tls;
    ck_assert_int_eq(tls->mode, MESH_TLS_SIMPLE);
    ck_assert_str_eq(tls->subject_alt_names[1], "spiffe://m/o");
    ck_assert_int_eq(mesh_rule_traffic(dr, a, 80)->tls.mode, MESH_TLS_NONE);

    /* b: its own entry for 443, whole */
    tls = &mesh_rule_traffic(dr, b, 443)->tls;
    ck_assert_int_eq(tls->mode, MESH_TLS_MUTUAL);
    ck_assert_str_eq(tls->client_certificate, "/c");
    ck_assert_str_eq(tls->private_key, "/k");
    ck_assert_ptr_null(tls->sni);
    ck_assert_uint_eq(tls->nsubject_alt_names, 0);
    ck_assert_int_eq(mesh_rule_traffic(dr, b, 0)->tls.mode,
                     MESH_TLS_ISTIO_MUTUAL);

    /* c: its trafficPolicy's tls over the rule's entries */
    ck_assert_int_eq(mesh_rule_traffic(dr, c, 443)->tls.mode,
                     MESH_TLS_DISABLE);
    ck_assert_int_eq(mesh_rule_traffic(dr, c, 80)->tls.mode,
                     MESH_TLS_DISABLE);
    ck_assert_int_eq(mesh_rule_traffic(dr, c, 0)->tls.mode,
                     MESH_TLS_DISABLE);
}


START_TEST(rule_port_tls_read_and_pack)
{
    char              err[MESH_ERR_LEN], *block;
    size_t            size;
    mesh_policies_t  *p, *q;

    p = ck_parse("[{\"policy\":\"o\",\"kind\":\"DestinationRule\","
        "\"name\":\"o\",\"host\":\"orders\",\"trafficPolicy\":{"
        "\"tls\":{\"mode\":\"ISTIO_MUTUAL\"},"
        "\"portLevelSettings\":[{\"port\":443,\"tls\":{"
        "\"mode\":\"SIMPLE\",\"caCertificates\":\"/ca\","
        "\"sni\":\"orders.mesh\","
        "\"subjectAltNames\":[\"orders.mesh\",\"spiffe://m/o\"]}},"
        "{\"port\":80,\"loadBalancer\":{\"simple\":\"RANDOM\"}}]},"
        "\"subsets\":[{\"name\":\"a\",\"labels\":{\"v\":\"1\"}},"
        "{\"name\":\"b\",\"labels\":{\"v\":\"2\"},\"trafficPolicy\":{"
        "\"portLevelSettings\":[{\"port\":443,\"tls\":{"
        "\"mode\":\"MUTUAL\",\"clientCertificate\":\"/c\","
        "\"privateKey\":\"/k\"}}]}},"
        "{\"name\":\"c\",\"labels\":{\"v\":\"3\"},\"trafficPolicy\":{"
        "\"tls\":{\"mode\":\"DISABLE\"}}}]}]");
    check_port_tls(mesh_policies_rule(p, "orders", 6));

    size = mesh_policies_pack(p, NULL, 0);
    block = malloc(size);
    ck_assert_ptr_nonnull(block);
    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    mesh_policies_free(p);

    q = mesh_policies_unpack(block, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);
    check_port_tls(mesh_policies_rule(q, "orders", 6));
    mesh_policies_free(q);
    free(block);

    /* an entry's tls is checked as the trafficPolicy's */
    ck_parse_fails("[{\"policy\":\"o\",\"kind\":\"DestinationRule\","
        "\"name\":\"o\",\"host\":\"orders\",\"subsets\":[],"
        "\"trafficPolicy\":{\"portLevelSettings\":[{\"port\":443,"
        "\"tls\":{\"mode\":\"SIMPLE\",\"caCertificates\":\"ca\"}}]}}]",
        "not an absolute path");
}
END_TEST


/* tls: read, a subset's replacing the rule's whole, packed and back */
START_TEST(rule_tls_read_inherited_and_packed)
{
    char                            err[MESH_ERR_LEN], *block;
    size_t                          size, i;
    mesh_policies_t                *p, *q, *m;
    const mesh_tls_t               *tls;
    const mesh_destination_rule_t  *dr;

    p = ck_parse("[{\"policy\":\"o\",\"kind\":\"DestinationRule\","
                 "\"name\":\"o\",\"host\":\"orders\",\"trafficPolicy\":"
                 "{\"tls\":{\"mode\":\"MUTUAL\",\"clientCertificate\":\"/c\","
                 "\"privateKey\":\"/k\",\"caCertificates\":\"/ca\","
                 "\"caCrl\":\"/crl\",\"sni\":\"orders.mesh\","
                 "\"subjectAltNames\":[\"a.mesh\",\"spiffe://m/o\"]}},"
                 "\"subsets\":[{\"name\":\"v1\",\"labels\":{\"v\":\"1\"}},"
                 "{\"name\":\"v2\",\"labels\":{\"v\":\"2\"},"
                 "\"trafficPolicy\":{\"tls\":{\"mode\":\"SIMPLE\","
                 "\"insecureSkipVerify\":true}}}]}]");

    size = mesh_policies_pack(p, NULL, 0);
    block = malloc(size);
    ck_assert_ptr_nonnull(block);
    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    q = mesh_policies_unpack(block, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);

    for (i = 0; i < 2; i++) {
        m = (i == 0) ? p : q;
        dr = mesh_policies_rule(m, "orders", 6);
        ck_assert_ptr_nonnull(dr);

        tls = &dr->traffic.tls;
        ck_assert_int_eq(tls->mode, MESH_TLS_MUTUAL);
        ck_assert_str_eq(tls->client_certificate, "/c");
        ck_assert_str_eq(tls->private_key, "/k");
        ck_assert_str_eq(tls->ca_certificates, "/ca");
        ck_assert_str_eq(tls->ca_crl, "/crl");
        ck_assert_str_eq(tls->sni, "orders.mesh");
        ck_assert_uint_eq(tls->nsubject_alt_names, 2);
        ck_assert_str_eq(tls->subject_alt_names[1], "spiffe://m/o");
        ck_assert_int_eq(tls->insecure_skip_verify, 0);

        /* v1 has none: the rule's */
        tls = &dr->subsets[0].policy.tls;
        ck_assert_int_eq(tls->mode, MESH_TLS_MUTUAL);
        ck_assert_str_eq(tls->client_certificate, "/c");
        ck_assert_uint_eq(tls->nsubject_alt_names, 2);

        /* v2's own, whole: nothing of the rule's */
        tls = &dr->subsets[1].policy.tls;
        ck_assert_int_eq(tls->mode, MESH_TLS_SIMPLE);
        ck_assert_ptr_null(tls->client_certificate);
        ck_assert_ptr_null(tls->ca_certificates);
        ck_assert_ptr_null(tls->sni);
        ck_assert_uint_eq(tls->nsubject_alt_names, 0);
        ck_assert_int_eq(tls->insecure_skip_verify, 1);
    }

    mesh_policies_free(q);
    free(block);
    mesh_policies_free(p);

    /* no tls: NONE, the location decides */
    p = ck_parse("[{\"policy\":\"o\",\"kind\":\"DestinationRule\","
                 "\"name\":\"o\",\"host\":\"orders\",\"subsets\":[]}]");
    dr = mesh_policies_rule(p, "orders", 6);
    ck_assert_int_eq(dr->traffic.tls.mode, MESH_TLS_NONE);
    mesh_policies_free(p);
}
END_TEST


START_TEST(instance_in_subset_by_labels)
{
    mesh_subset_t    s;
    mesh_instance_t  in;
    mesh_label_t     want[2], have[3];

    /* both sorted by key */
    want[0].key = "tier";
    want[0].value = "gold";
    want[1].key = "version";
    want[1].value = "v2";

    have[0].key = "tier";
    have[0].value = "gold";
    have[1].key = "version";
    have[1].value = "v2";
    have[2].key = "zone";
    have[2].value = "a";

    memset(&s, 0, sizeof(mesh_subset_t));
    memset(&in, 0, sizeof(mesh_instance_t));
    s.name = "s";
    s.labels = want;
    s.nlabels = 2;

    /* extra labels on the instance are fine */
    in.labels = have;
    in.nlabels = 3;
    ck_assert_int_eq(mesh_instance_in_subset(&in, &s), 1);

    in.nlabels = 2;
    ck_assert_int_eq(mesh_instance_in_subset(&in, &s), 1);

    /* a missing label */
    in.labels = &have[1];
    in.nlabels = 2;
    ck_assert_int_eq(mesh_instance_in_subset(&in, &s), 0);

    in.labels = have;
    in.nlabels = 1;
    ck_assert_int_eq(mesh_instance_in_subset(&in, &s), 0);

    in.labels = NULL;
    in.nlabels = 0;
    ck_assert_int_eq(mesh_instance_in_subset(&in, &s), 0);

    /* a different value */
    in.labels = have;
    in.nlabels = 3;
    have[1].value = "v1";
    ck_assert_int_eq(mesh_instance_in_subset(&in, &s), 0);
    have[1].value = "v2";

    /* a value that is a prefix, a key that is a prefix */
    have[1].value = "v";
    ck_assert_int_eq(mesh_instance_in_subset(&in, &s), 0);
    have[1].value = "v2";
    have[0].key = "tie";
    ck_assert_int_eq(mesh_instance_in_subset(&in, &s), 0);
    have[0].key = "tier";

    /* no labels wanted, or no subset: every instance */
    s.nlabels = 0;
    ck_assert_int_eq(mesh_instance_in_subset(&in, &s), 1);
    in.nlabels = 0;
    ck_assert_int_eq(mesh_instance_in_subset(&in, &s), 1);
    ck_assert_int_eq(mesh_instance_in_subset(&in, NULL), 1);
    ck_assert_int_eq(mesh_instance_in_subset(NULL, &s), 0);
}
END_TEST


START_TEST(instance_in_subset_from_parsed_documents)
{
    char                    err[MESH_ERR_LEN];
    const char             *snap;
    mesh_policies_t        *p;
    mesh_snapshot_t        *s;
    const mesh_subset_t    *v2, *gold;
    const mesh_service_t   *svc;

    snap = "{\"index\":1,\"services\":[{\"name\":\"orders\",\"instances\":["
           "{\"id\":\"a\",\"address\":\"10.0.0.1\",\"port\":80,\"labels\":"
           "{\"zone\":\"x\",\"version\":\"v2\",\"tier\":\"gold\"}},"
           "{\"id\":\"b\",\"address\":\"10.0.0.2\",\"port\":80,\"labels\":"
           "{\"version\":\"v2\"}},"
           "{\"id\":\"c\",\"address\":\"10.0.0.3\",\"port\":80}]}]}";

    s = mesh_snapshot_parse(snap, strlen(snap), err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);

    /* the subset's labels come unsorted; the parser sorts them */

    p = ck_parse("[{\"policy\":\"p\",\"kind\":\"DestinationRule\","
                 "\"name\":\"n\",\"host\":\"orders\",\"subsets\":["
                 "{\"name\":\"v2\",\"labels\":{\"version\":\"v2\"}},"
                 "{\"name\":\"gold\",\"labels\":{\"version\":\"v2\","
                 "\"tier\":\"gold\"}}]}]");

    v2 = mesh_rule_subset(&p->rules[0], "v2");
    gold = mesh_rule_subset(&p->rules[0], "gold");
    ck_assert_str_eq(gold->labels[0].key, "tier");
    ck_assert_str_eq(gold->labels[1].key, "version");

    svc = mesh_snapshot_service(s, "orders", 6);
    ck_assert_uint_eq(svc->ninstances, 3);

    ck_assert_int_eq(mesh_instance_in_subset(&svc->instances[0], v2), 1);
    ck_assert_int_eq(mesh_instance_in_subset(&svc->instances[1], v2), 1);
    ck_assert_int_eq(mesh_instance_in_subset(&svc->instances[2], v2), 0);
    ck_assert_int_eq(mesh_instance_in_subset(&svc->instances[0], gold), 1);
    ck_assert_int_eq(mesh_instance_in_subset(&svc->instances[1], gold), 0);
    ck_assert_int_eq(mesh_instance_in_subset(&svc->instances[2], gold), 0);

    mesh_policies_free(p);
    mesh_snapshot_free(s);
}
END_TEST


START_TEST(policy_many_items_parse)
{
    char             *doc, *q;
    size_t            i, n, size;
    mesh_policies_t  *p;

    /* enough to grow every scratch vector and several arena blocks */

    n = 3000;
    size = n * 200 + 1024;
    doc = malloc(size);
    ck_assert_ptr_nonnull(doc);

    q = doc;
    q += sprintf(q, "[{\"policy\":\"p\",\"kind\":\"DestinationRule\","
                 "\"name\":\"n\",\"host\":\"h\",\"subsets\":[");

    for (i = 0; i < n; i++) {
        q += sprintf(q, "%s{\"name\":\"s%zu\",\"labels\":{\"k%zu\":\"v\","
                     "\"a\":\"%zu\"}}", i ? "," : "", i, i, i);
    }

    q += sprintf(q, "]},{\"policy\":\"p\",\"kind\":\"VirtualService\","
                 "\"name\":\"n\",\"hosts\":[\"h\"],\"http\":[{\"match\":[],"
                 "\"route\":[");

    for (i = 0; i < n; i++) {
        q += sprintf(q, "%s{\"destination\":{\"host\":\"h\",\"subset\":"
                     "\"s%zu\"},\"weight\":%zu}", i ? "," : "", i, i % 2);
    }

    strcpy(q, "]}]}]");
    ck_assert_uint_lt(strlen(doc), size);

    p = ck_parse(doc);
    free(doc);

    ck_walk(p);
    ck_assert_uint_eq(p->rules[0].nsubsets, n);
    ck_assert_str_eq(p->rules[0].subsets[n - 1].labels[0].key, "a");
    ck_assert_str_eq(mesh_rule_subset(&p->rules[0], "s2999")->name, "s2999");
    ck_assert_uint_eq(p->vss[0].http[0].nroutes, n);

    /* 1500 routes of weight 1: r = 0 is the first odd one */
    ck_assert_int_eq(mesh_route_pick(&p->vss[0].http[0], 0), 1);
    ck_assert_int_eq(mesh_route_pick(&p->vss[0].http[0], 1499), 2999);

    mesh_policies_free(p);
}
END_TEST


Suite *
policy_suite(void)
{
    TCase  *tc;
    Suite  *s;

    s = suite_create("policy");

    tc = tcase_create("good");
    tcase_add_test(tc, policy_docs_example_parses);
    tcase_add_test(tc, policy_docs_shaping_example_parses);
    tcase_add_test(tc, policy_shaping_pack_round_trip);
    tcase_add_test(tc, policy_from_snapshot_parses);
    tcase_add_test(tc, policy_absent_fields_get_defaults);
    tcase_add_test(tc, policy_subset_fields_override_the_rule);
    tcase_add_test(tc, policy_pool_fields_read_and_inherited);
    tcase_add_loop_test(tc, policy_every_lb_kind, 0,
                        sizeof(ck_lb) / sizeof(ck_lb[0]));
    tcase_add_test(tc, policy_retry_on_bits);
    tcase_add_test(tc, policy_unknown_keys_and_escapes);
    tcase_add_test(tc, policy_lookups_take_the_first);
    tcase_add_test(tc, policy_many_items_parse);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad");
    tcase_add_loop_test(tc, policy_malformed_rejected, 0,
                        sizeof(ck_bad) / sizeof(ck_bad[0]));
    tcase_add_test(tc, policy_error_offsets);
    tcase_add_test(tc, policy_truncated_at_every_offset);
    tcase_add_loop_test(tc, policy_mutations_never_crash, 0, 2);
    tcase_add_test(tc, policy_deep_nesting_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("enforce");
    tcase_add_test(tc, route_pick_90_10_is_exact);
    tcase_add_test(tc, route_pick_skips_zero_weights);
    tcase_add_test(tc, string_match_exact_prefix_regex);
    tcase_add_test(tc, string_match_ignores_case_for_exact_and_prefix);
    tcase_add_test(tc, labels_hold_every_pair);
    tcase_add_test(tc, policy_match_case_and_source_labels_read_and_pack);
    tcase_add_test(tc, cors_origins_as_envoy_decides);
    tcase_add_test(tc, rule_workload_selector_read_and_pack);
    tcase_add_test(tc, rule_tls_read_inherited_and_packed);
    tcase_add_test(tc, route_mirrors_read_and_pack);
    tcase_add_test(tc, rule_port_level_settings_read_and_pack);
    tcase_add_test(tc, rule_port_tls_read_and_pack);
    tcase_add_test(tc, gateways_read_pack_and_lookups);
    tcase_add_test(tc, instance_in_subset_by_labels);
    tcase_add_test(tc, instance_in_subset_from_parsed_documents);
    suite_add_tcase(s, tc);

    return s;
}
