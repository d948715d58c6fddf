/*
 * check_contract: what registryd writes, the module reads. Real snapshots
 * (complete, subscribed, deltas) built by rd_snapshot from a registry
 * holding the example policies of conf/policies and instances with
 * labels, zones, IPv6 addresses and odd names, parsed by the module's
 * readers in common/ (mesh_snapshot, mesh_policy), field by field.
 */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_suites.h"
#include "mesh_policy.h"
#include "mesh_service.h"
#include "mesh_snapshot.h"
#include "rd_snapshot.h"

static char            dir[PATH_MAX];
static rd_store_t     *store;
static rd_registry_t  *reg;
static rd_events_t    *ev;


static void
setup(void)
{
    char  err[RD_ERR_LEN] = "";

    ck_tmpdir(dir, sizeof(dir));
    reg = ck_reg_open(dir, &store);
    ev = rd_events_create(1000, 0);
    ck_assert_ptr_nonnull(ev);
    reg->events = ev;
    ck_assert_msg(rd_registry_start(reg, err) == 0, "%s", err);
}


static void
teardown(void)
{
    rd_registry_stop(reg);
    reg->events = NULL;
    rd_events_free(ev);
    ck_reg_close(reg, store);
    ck_rmrf(dir);
}


static void
put(const char *service, const char *id, const char *body)
{
    ck_assert_int_lt(ck_do(reg, ck_op_put(service, id, body), NULL), 300);
}


static void
apply_yaml(const char *name, const char *yaml, size_t len)
{
    rd_op_t          *op;
    rd_policy_err_t   e;

    op = rd_op_create(RD_OP_POLICY_PUT, "", name);
    op->policy = rd_policy_parse(name, yaml, len, &e);
    ck_assert_msg(op->policy != NULL, "%s: %s", name, e.msg);
    ck_assert_int_lt(ck_do(reg, op, NULL), 300);
}


static void
apply_file(const char *name, const char *path)
{
    char             *yaml;
    long              len;
    FILE             *f;

    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s (run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    yaml = malloc(len + 1);
    ck_assert_ptr_nonnull(yaml);
    ck_assert_int_eq(fread(yaml, 1, len, f), len);
    yaml[len] = '\0';
    fclose(f);

    apply_yaml(name, yaml, len);

    free(yaml);
}


static mesh_snapshot_t *
read_snapshot(mesh_buf_t *b, mesh_policies_t **policies)
{
    char              err[MESH_ERR_LEN];
    mesh_snapshot_t  *s;

    s = mesh_snapshot_parse(b->data, b->len, err, sizeof(err));
    ck_assert_msg(s != NULL, "the module refuses registryd's snapshot: "
                  "%s\n%.*s", err, (int) b->len, b->data);

    *policies = mesh_policies_parse(s->policies, s->policies_len, err,
                                    sizeof(err));
    ck_assert_msg(*policies != NULL, "the module refuses registryd's "
                  "policies: %s\n%s", err, s->policies);

    return s;
}


static void
fill(void)
{
    put("orders", "o1", "{\"address\":\"10.0.0.1\",\"port\":8081,"
        "\"labels\":{\"version\":\"v1\"}}");
    put("orders", "o2", "{\"address\":\"::1\",\"port\":8082,\"weight\":7,"
        "\"zone\":\"eu-1\",\"labels\":{\"version\":\"v2\","
        "\"note\":\"say \\\"hi\\\" \\\\ \\u00e9\"}}");
    put("orders", "o-3.x_y", "{\"address\":\"10.0.0.3\",\"port\":65535,"
        "\"weight\":1000,\"labels\":{\"version\":\"v1\"},"
        "\"ttl\":\"10s\",\"check\":{\"http\":\"/healthz\","
        "\"interval\":\"5s\"}}");
    put("sessions", "s1", "{\"address\":\"2001:db8::10\",\"port\":443}");
    put("other", "x1", "{\"address\":\"10.9.9.9\",\"port\":1}");

    apply_file("orders-destination", "conf/policies/orders-destination.yaml");
    apply_file("orders-routes", "conf/policies/orders-routes.yaml");
    apply_file("sessions-hash", "conf/policies/sessions-hash.yaml");
    apply_file("payments-pool", "conf/policies/payments-pool.yaml");
    apply_file("catalog-locality", "conf/policies/catalog-locality.yaml");
    apply_file("inventory-tls", "conf/policies/inventory-tls.yaml");
}


START_TEST(contract_complete_snapshot_reads_field_by_field)
{
    mesh_buf_t                      b;
    uint64_t                        index;
    mesh_snapshot_t                *s;
    mesh_policies_t                *p;
    const mesh_service_t           *svc;
    const mesh_instance_t          *in;
    const mesh_destination_rule_t  *dr;
    const mesh_virtual_service_t   *vs;

    fill();

    mesh_buf_init(&b, 0);
    rd_snapshot_build(reg, &b, &index);
    s = read_snapshot(&b, &p);

    ck_assert_uint_eq(s->index, index);
    ck_assert_uint_eq(s->registry, rd_registry_id(reg));
    ck_assert_uint_eq(s->nservices, 3);

    svc = mesh_snapshot_service(s, "orders", 6);
    ck_assert_ptr_nonnull(svc);
    ck_assert_uint_eq(svc->ninstances, 3);

    in = &svc->instances[0];                    /* sorted by id */
    ck_assert_str_eq(in->id, "o-3.x_y");
    ck_assert_int_eq(in->port, 65535);
    ck_assert_int_eq(in->weight, 1000);
    ck_assert_str_eq(in->server, "10.0.0.3:65535");

    in = &svc->instances[2];
    ck_assert_str_eq(in->id, "o2");
    ck_assert_str_eq(in->address, "::1");
    ck_assert_str_eq(in->server, "[::1]:8082");
    ck_assert_int_eq(in->weight, 7);
    ck_assert_str_eq(in->zone, "eu-1");
    ck_assert_int_eq(in->healthy, 1);
    ck_assert_uint_eq(in->nlabels, 2);
    ck_assert_str_eq(in->labels[0].key, "note");
    ck_assert_str_eq(in->labels[0].value, "say \"hi\" \\ \xc3\xa9");

    /* the example policies, as the module's reader sees them */
    dr = mesh_policies_rule(p, "orders", 6);
    ck_assert_ptr_nonnull(dr);
    ck_assert_ptr_nonnull(mesh_rule_subset(dr, "v1"));
    ck_assert_ptr_nonnull(mesh_rule_subset(dr, "v2"));
    ck_assert(mesh_instance_in_subset(&svc->instances[2],
                                      mesh_rule_subset(dr, "v2")));

    vs = mesh_policies_vs(p, "orders", 6);
    ck_assert_ptr_nonnull(vs);
    ck_assert_uint_eq(vs->nhttp, 3);
    ck_assert_uint_eq(vs->http[1].nmatches, 2);
    ck_assert_int_eq(vs->http[1].matches[1].uri->kind, MESH_MATCH_REGEX);
    ck_assert_int_eq(mesh_string_match(vs->http[1].matches[1].uri,
                                       "/v2/orders/7", 12, NULL), 1);
    ck_assert_uint_eq(vs->http[1].retry_on,
                      MESH_RETRY_5XX | MESH_RETRY_CONNECT_FAILURE);

    ck_assert_ptr_nonnull(mesh_policies_rule(p, "sessions", 8));

    /* tls: the rule's, a subset's own replacing it */
    dr = mesh_policies_rule(p, "inventory", 9);
    ck_assert_ptr_nonnull(dr);
    ck_assert_int_eq(dr->traffic.tls.mode, MESH_TLS_MUTUAL);
    ck_assert_str_eq(dr->traffic.tls.private_key,
                     "/etc/nginx/mesh/client.key");
    ck_assert_str_eq(dr->traffic.tls.sni, "inventory.mesh");
    ck_assert_uint_eq(dr->traffic.tls.nsubject_alt_names, 2);
    ck_assert_str_eq(dr->traffic.tls.subject_alt_names[1],
                     "spiffe://mesh/ns/shop/sa/inventory");
    ck_assert_int_eq(mesh_rule_subset(dr, "v2")->policy.tls.mode,
                     MESH_TLS_MUTUAL);
    ck_assert_int_eq(mesh_rule_subset(dr, "legacy")->policy.tls.mode,
                     MESH_TLS_DISABLE);
    ck_assert_ptr_null(mesh_rule_subset(dr, "legacy")->policy.tls.sni);
    ck_assert_int_eq(mesh_rule_subset(dr, "meshed")->policy.tls.mode,
                     MESH_TLS_ISTIO_MUTUAL);

    /* connectionPool, and a subset's own field over the rule's */
    dr = mesh_policies_rule(p, "payments", 8);
    ck_assert_ptr_nonnull(dr);
    ck_assert_int_eq(dr->traffic.max_connections, 50);
    ck_assert_int_eq(dr->traffic.connect_timeout, 250);
    ck_assert_int_eq(dr->traffic.tcp_keepalive, 1);
    ck_assert_int_eq(dr->traffic.keepalive_time, 60000);
    ck_assert_int_eq(dr->traffic.keepalive_interval, 10000);
    ck_assert_int_eq(dr->traffic.keepalive_probes, 3);
    ck_assert_int_eq(dr->traffic.http2_max_requests, 200);
    ck_assert_int_eq(dr->traffic.http1_max_pending, 0);
    ck_assert_int_eq(dr->traffic.max_requests_per_conn, 100);
    ck_assert_int_eq(dr->traffic.max_retries, 5);
    ck_assert_int_eq(dr->traffic.idle_timeout, 30000);
    ck_assert_int_eq(mesh_rule_subset(dr, "batch")->policy.http2_max_requests,
                     20);
    ck_assert_int_eq(mesh_rule_subset(dr, "batch")->policy.max_retries, 5);

    /* localityLbSetting and slow start; the subset's loadBalancer whole */
    dr = mesh_policies_rule(p, "catalog", 7);
    ck_assert_ptr_nonnull(dr);
    ck_assert_int_eq(dr->traffic.warmup, 30000);
    ck_assert_int_eq(dr->traffic.lb, MESH_LB_LEAST_REQUEST);
    ck_assert_int_eq(dr->traffic.locality->enabled, 1);
    ck_assert_uint_eq(dr->traffic.locality->nfailover, 1);
    ck_assert_str_eq(dr->traffic.locality->failover[0].to, "eu-west");
    ck_assert_int_eq(mesh_rule_subset(dr, "canary")->policy.warmup, -1);
    ck_assert_uint_eq(mesh_rule_subset(dr, "canary")->policy.locality
                      ->ndistribute, 1);

    mesh_policies_free(p);
    mesh_snapshot_free(s);
    mesh_buf_free(&b);
}
END_TEST


static void
ck_ops_eq(const mesh_header_op_t *op, size_t n, const char *name,
    const char *value)
{
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(op->name, name);
    ck_assert_uint_eq(op->name_len, strlen(name));

    if (value == NULL) {
        ck_assert_ptr_null(op->value);
        return;
    }

    ck_assert_str_eq(op->value, value);
    ck_assert_uint_eq(op->value_len, strlen(value));
}


/* the example of conf/policies with request shaping, as the module's
 * reader has it, and then as a worker has it from the zone */
static void
ck_shaping_model(const mesh_policies_t *p)
{
    const mesh_http_route_t       *h;
    const mesh_virtual_service_t  *vs;

    vs = mesh_policies_vs(p, "orders", 6);
    ck_assert_ptr_nonnull(vs);
    ck_assert_uint_eq(vs->nhttp, 5);

    h = &vs->http[0];                                   /* moved */
    ck_assert_str_eq(h->name, "moved");
    ck_assert_uint_eq(h->nroutes, 0);
    ck_assert_ptr_null(h->direct);
    ck_assert_ptr_nonnull(h->redirect);
    ck_assert_str_eq(h->redirect->uri, "/api/");
    ck_assert_ptr_null(h->redirect->authority);
    ck_assert_ptr_null(h->redirect->scheme);
    ck_assert_int_eq(h->redirect->port, 0);
    ck_assert_int_eq(h->redirect->code, 308);
    ck_assert_int_eq(h->fault.delay, -1);
    ck_assert_int_eq(h->fault.abort_status, 0);

    h = &vs->http[1];                                   /* gone */
    ck_assert_uint_eq(h->nroutes, 0);
    ck_assert_ptr_null(h->redirect);
    ck_assert_ptr_nonnull(h->direct);
    ck_assert_int_eq(h->direct->status, 410);
    ck_assert_str_eq(h->direct->body, "gone: use /api/\n");
    ck_assert_uint_eq(h->direct->body_len, 16);

    h = &vs->http[2];                                   /* canary */
    ck_assert_int_eq(h->fault.delay, 2000);
    ck_assert_uint_eq(h->fault.delay_ppm, 1000);
    ck_assert_int_eq(h->fault.abort_status, 503);
    ck_assert_uint_eq(h->fault.abort_ppm, 10000);
    ck_assert_ptr_null(h->rewrite.uri);
    ck_assert_uint_eq(h->nroutes, 1);
    ck_assert_str_eq(h->routes[0].subset, "v2");

    h = &vs->http[3];                                   /* shop */
    ck_assert_int_eq(h->fault.delay, -1);
    ck_assert_int_eq(h->fault.abort_status, 0);
    ck_assert_str_eq(h->rewrite.uri, "/api/");
    ck_assert_ptr_null(h->rewrite.authority);
    ck_ops_eq(h->headers.request.set, h->headers.request.nset,
              "x-mesh-route", "shop");
    ck_assert_uint_eq(h->headers.request.nadd, 0);
    ck_ops_eq(h->headers.request.remove, h->headers.request.nremove,
              "x-debug", NULL);
    ck_ops_eq(h->headers.response.add, h->headers.response.nadd,
              "cache-control", "no-store");
    ck_ops_eq(h->headers.response.remove, h->headers.response.nremove,
              "server", NULL);
    ck_assert_uint_eq(h->nroutes, 2);
    ck_assert_int_eq(h->routes[0].weight, 90);
    ck_ops_eq(h->routes[0].headers.response.set,
              h->routes[0].headers.response.nset, "x-orders-subset", "v1");
    ck_assert_uint_eq(h->routes[0].headers.request.nset, 0);
    ck_ops_eq(h->routes[1].headers.response.set,
              h->routes[1].headers.response.nset, "x-orders-subset", "v2");
    ck_assert_ptr_nonnull(h->cors);
    ck_assert_uint_eq(h->cors->norigins, 2);
    ck_assert_int_eq(h->cors->origins[0].kind, MESH_MATCH_EXACT);
    ck_assert_str_eq(h->cors->origins[0].value, "https://shop.example");
    ck_assert_int_eq(h->cors->origins[1].kind, MESH_MATCH_REGEX);
    ck_assert_ptr_nonnull(h->cors->origins[1].regex);
    ck_assert(mesh_cors_origin_allowed(h->cors, "https://a-1.shop.example",
                                       24, NULL));
    ck_assert(!mesh_cors_origin_allowed(h->cors, "https://shop.example.com",
                                        24, NULL));
    ck_assert_str_eq(h->cors->allow_methods, "GET,POST");
    ck_assert_str_eq(h->cors->allow_headers, "content-type");
    ck_assert_str_eq(h->cors->expose_headers, "x-orders-subset");
    ck_assert_int_eq(h->cors->max_age, 600);
    ck_assert_int_eq(h->cors->allow_credentials, 1);
    ck_assert_int_eq(h->cors->forward_unmatched, 1);

    h = &vs->http[4];                                   /* the rest */
    ck_assert_ptr_null(h->cors);
    ck_assert_uint_eq(h->headers.request.nset + h->headers.response.nadd,
                      0);
    ck_assert_ptr_null(h->headers.request.set);
    ck_assert_uint_eq(h->routes[0].headers.response.nset, 0);
}


START_TEST(contract_request_shaping_reads_and_packs)
{
    char              err[256], *block;
    size_t            size;
    mesh_buf_t        b;
    uint64_t          index;
    mesh_snapshot_t  *s;
    mesh_policies_t  *p, *q;

    apply_file("orders-destination", "conf/policies/orders-destination.yaml");
    apply_file("orders-shaping", "conf/policies/orders-shaping.yaml");

    mesh_buf_init(&b, 0);
    rd_snapshot_build(reg, &b, &index);
    s = read_snapshot(&b, &p);

    ck_shaping_model(p);

    /* what the poll owner writes into the zone, a worker reads back */
    size = mesh_policies_pack(p, NULL, 0);
    block = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    ck_assert_ptr_nonnull(block);
    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    mesh_policies_free(p);

    q = mesh_policies_unpack(block, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);
    ck_shaping_model(q);
    mesh_policies_free(q);

    free(block);
    mesh_snapshot_free(s);
    mesh_buf_free(&b);
}
END_TEST


/* ignoreUriCase and sourceLabels, as the module's reader has them and
 * as a worker has them from the zone */
static void
ck_match_model(const mesh_policies_t *p)
{
    const mesh_match_t            *m;
    const mesh_virtual_service_t  *vs;

    static const mesh_label_t  web[] = {
        { "app", "web" }, { "version", "v1" }
    };
    static const mesh_label_t  api[] = { { "app", "api" } };

    vs = mesh_policies_vs(p, "orders", 6);
    ck_assert_ptr_nonnull(vs);
    ck_assert_uint_eq(vs->nhttp, 1);
    ck_assert_uint_eq(vs->http[0].nmatches, 4);

    m = &vs->http[0].matches[0];            /* prefix, case ignored */
    ck_assert_int_eq(m->uri->kind, MESH_MATCH_PREFIX);
    ck_assert_int_eq(m->uri->ignore_case, 1);
    ck_assert_uint_eq(m->nsource_labels, 0);
    ck_assert_int_eq(mesh_string_match(m->uri, "/API/x", 6, NULL), 1);
    ck_assert_int_eq(mesh_string_match(m->uri, "/apx/x", 6, NULL), 0);

    m = &vs->http[0].matches[1];            /* regex: the flag is not
                                               the regex's */
    ck_assert_int_eq(m->uri->kind, MESH_MATCH_REGEX);
    ck_assert_int_eq(mesh_string_match(m->uri, "/v1", 3, NULL), 1);
    ck_assert_int_eq(mesh_string_match(m->uri, "/V1", 3, NULL), 0);

    m = &vs->http[0].matches[2];            /* exact, case kept */
    ck_assert_int_eq(m->uri->ignore_case, 0);
    ck_assert_int_eq(mesh_string_match(m->uri, "/Exact", 6, NULL), 1);
    ck_assert_int_eq(mesh_string_match(m->uri, "/exact", 6, NULL), 0);

    m = &vs->http[0].matches[3];            /* sourceLabels, sorted */
    ck_assert_ptr_null(m->uri);
    ck_assert_uint_eq(m->nsource_labels, 2);
    ck_assert_str_eq(m->source_labels[0].key, "app");
    ck_assert_str_eq(m->source_labels[0].value, "web");
    ck_assert_str_eq(m->source_labels[1].key, "version");
    ck_assert_str_eq(m->source_labels[1].value, "v1");
    ck_assert_int_eq(mesh_labels_hold(web, 2, m->source_labels,
                                      m->nsource_labels), 1);
    ck_assert_int_eq(mesh_labels_hold(api, 1, m->source_labels,
                                      m->nsource_labels), 0);
}


START_TEST(contract_match_case_and_source_labels_read_and_pack)
{
    char              err[256], *block;
    size_t            size;
    mesh_buf_t        b;
    uint64_t          index;
    mesh_snapshot_t  *s;
    mesh_policies_t  *p, *q;

    static const char  yaml[] =
        "apiVersion: networking.istio.io/v1\n"
        "kind: VirtualService\n"
        "metadata: {name: orders}\n"
        "spec:\n"
        "  hosts: [orders]\n"
        "  http:\n"
        "  - match:\n"
        "    - uri: {prefix: /api/}\n"
        "      ignoreUriCase: true\n"
        "    - uri: {regex: \"/v[0-9]\"}\n"
        "      ignoreUriCase: true\n"
        "    - uri: {exact: /Exact}\n"
        "      ignoreUriCase: false\n"
        "    - sourceLabels: {version: v1, app: web}\n"
        "    route:\n"
        "    - destination: {host: orders}\n";

    apply_yaml("orders-match", yaml, sizeof(yaml) - 1);

    mesh_buf_init(&b, 0);
    rd_snapshot_build(reg, &b, &index);
    s = read_snapshot(&b, &p);

    ck_match_model(p);

    size = mesh_policies_pack(p, NULL, 0);
    block = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    ck_assert_ptr_nonnull(block);
    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    mesh_policies_free(p);

    q = mesh_policies_unpack(block, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);
    ck_match_model(q);
    mesh_policies_free(q);

    free(block);
    mesh_snapshot_free(s);
    mesh_buf_free(&b);
}
END_TEST


START_TEST(contract_subscription_and_delta_read_and_merge)
{
    int                 members;
    char                err[RD_ERR_LEN];
    size_t              n;
    mesh_buf_t          b;
    uint64_t            index, since;
    mesh_snapshot_t    *full, *d;
    mesh_policies_t    *p;
    mesh_instance_t    *merged;
    rd_snapshot_ask_t   ask;
    rd_subscription_t   sub;

    fill();

    ck_assert_int_eq(rd_subscription_parse(&sub, "orders", err), 0);

    memset(&ask, 0, sizeof(rd_snapshot_ask_t));
    ask.sub = &sub;
    ask.delta = 1;

    mesh_buf_init(&b, 0);
    ck_assert_int_eq(rd_snapshot_answer(reg, &ask, &b, &since), 0);
    full = read_snapshot(&b, &p);
    ck_assert_int_eq(full->delta, 0);
    ck_assert_uint_eq(full->nservices, 1);
    /* the policies naming orders; not the one of sessions */
    ck_assert_ptr_nonnull(mesh_policies_vs(p, "orders", 6));
    ck_assert_ptr_null(mesh_policies_rule(p, "sessions", 8));
    mesh_policies_free(p);

    /* changes: one changed, one removed, one elsewhere */
    put("orders", "o1", "{\"address\":\"10.0.0.1\",\"port\":9091,"
        "\"labels\":{\"version\":\"v1\"}}");
    ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "orders", "o2"),
                           NULL), 200);
    put("other", "x2", "{\"address\":\"10.9.9.9\",\"port\":2}");

    ask.known = 1;
    ask.since = since;
    ask.registry = rd_registry_id(reg);

    b.len = 0;
    ck_assert_int_eq(rd_snapshot_answer(reg, &ask, &b, &index), 1);
    d = read_snapshot(&b, &p);
    ck_assert_int_eq(d->delta, 1);
    ck_assert_int_eq(d->has_policies, 0);
    ck_assert_uint_eq(d->nservices, 1);
    ck_assert_uint_eq(d->services[0].ninstances, 1);
    ck_assert_uint_eq(d->services[0].nremoved, 1);
    ck_assert_str_eq(d->services[0].removed[0], "o2");
    mesh_policies_free(p);

    /* merged as the poll owner merges it */
    ck_assert_int_eq(mesh_service_merge(&full->services[0], &d->services[0],
                                        &merged, &n, &members), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(members, 1);
    ck_assert_str_eq(merged[0].id, "o-3.x_y");
    ck_assert_str_eq(merged[1].id, "o1");
    ck_assert_int_eq(merged[1].port, 9091);
    free(merged);

    mesh_snapshot_free(d);
    mesh_snapshot_free(full);
    rd_subscription_free(&sub);
    mesh_buf_free(&b);
}
END_TEST


/*
 * A Gateway's TCP and TLS servers and the tcp and tls routes bound to
 * it: a module's reader takes them (one older than stream gateways as
 * HTTP servers on those ports and a VirtualService with no http route),
 * and a worker reads them back from the zone
 */
START_TEST(contract_stream_gateway_reads_and_packs)
{
    static const char  yaml[] =
        "apiVersion: networking.istio.io/v1\n"
        "kind: Gateway\n"
        "metadata: {name: edge}\n"
        "spec:\n"
        "  servers:\n"
        "  - port: {number: 31400, protocol: TCP}\n"
        "    hosts: [\"*\"]\n"
        "  - port: {number: 443, protocol: TLS}\n"
        "    hosts: [\"*.example\"]\n"
        "    tls: {mode: PASSTHROUGH}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\n"
        "kind: VirtualService\n"
        "metadata: {name: edge-routes}\n"
        "spec:\n"
        "  hosts: [\"*.example\"]\n"
        "  gateways: [edge]\n"
        "  tcp:\n"
        "  - match: [{port: 31400}]\n"
        "    route: [{destination: {host: orders}}]\n"
        "  tls:\n"
        "  - match: [{sniHosts: [db.example], port: 443}]\n"
        "    route: [{destination: {host: sessions}}]\n";

    char                           err[256], *block;
    size_t                         size, k;
    mesh_buf_t                     b;
    uint64_t                       index;
    mesh_snapshot_t               *s;
    mesh_policies_t               *p, *q;
    const mesh_gateway_t          *gw;
    const mesh_virtual_service_t  *vs;

    apply_yaml("edge", yaml, sizeof(yaml) - 1);

    mesh_buf_init(&b, 0);
    rd_snapshot_build(reg, &b, &index);
    s = read_snapshot(&b, &p);      /* fails the test if refused */

    size = mesh_policies_pack(p, NULL, 0);
    block = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    ck_assert_ptr_nonnull(block);
    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);

    q = mesh_policies_unpack(block, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);

    for (k = 0; k < 2; k++) {
        gw = mesh_policies_gateway(k ? q : p, "default/edge", 12);
        ck_assert_ptr_nonnull(gw);
        ck_assert_uint_eq(gw->nservers, 2);
        ck_assert_int_eq(gw->servers[0].port, 31400);
        ck_assert_int_eq(gw->servers[1].port, 443);
        ck_assert_int_eq(gw->servers[1].https, 0);
        ck_assert_str_eq(gw->servers[1].hosts[0], "*.example");

        ck_assert_uint_eq((k ? q : p)->nvss, 1);
        vs = &(k ? q : p)->vss[0];
        ck_assert_int_eq(mesh_vs_at_gateway(vs, "default/edge"), 1);
        ck_assert_int_eq(vs->mesh, 0);
        ck_assert_uint_eq(vs->nhttp, 0);
        ck_assert_uint_eq(vs->ntcp, 1);
    }

    mesh_policies_free(q);
    mesh_policies_free(p);
    free(block);
    mesh_snapshot_free(s);
    mesh_buf_free(&b);
}
END_TEST


START_TEST(contract_regex_registryd_accepts_the_module_reads)
{
    static const char *const  patterns[] = {
        "\\\\Qabc", "(*UTF)x", "(?x)a#c", "a|b", "[^/]+/v[0-9]+"
    };
    char               yaml[1024];
    size_t             i;
    mesh_buf_t         b;
    uint64_t           index;
    mesh_snapshot_t   *s;
    mesh_policies_t   *p;
    rd_op_t           *op;
    rd_policy_err_t    e;

    for (i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
        snprintf(yaml, sizeof(yaml),
                 "apiVersion: networking.istio.io/v1\n"
                 "kind: VirtualService\n"
                 "metadata:\n  name: r\n"
                 "spec:\n  hosts: [r]\n  http:\n"
                 "  - match:\n    - uri:\n        regex: \"%s\"\n"
                 "    route:\n    - destination:\n        host: r\n",
                 patterns[i]);

        op = rd_op_create(RD_OP_POLICY_PUT, "", "r");
        op->policy = rd_policy_parse("r", yaml, strlen(yaml), &e);
        ck_assert_msg(op->policy != NULL, "registryd refuses %s: %s",
                      patterns[i], e.msg);
        ck_assert_int_lt(ck_do(reg, op, NULL), 300);

        mesh_buf_init(&b, 0);
        rd_snapshot_build(reg, &b, &index);
        s = read_snapshot(&b, &p);      /* fails the test if refused */
        mesh_policies_free(p);
        mesh_snapshot_free(s);
        mesh_buf_free(&b);
    }

    /* and what one refuses, the other does not get */
    snprintf(yaml, sizeof(yaml),
             "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
             "metadata:\n  name: r\nspec:\n  hosts: [r]\n  http:\n"
             "  - match:\n    - uri:\n        regex: \"a(\"\n"
             "    route:\n    - destination:\n        host: r\n");
    ck_assert_ptr_null(rd_policy_parse("r", yaml, strlen(yaml), &e));
    ck_assert_msg(strstr(e.msg, "invalid regex") != NULL, "%s", e.msg);
}
END_TEST


Suite *
contract_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("contract");
    tc = tcase_create("contract");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, contract_complete_snapshot_reads_field_by_field);
    tcase_add_test(tc, contract_subscription_and_delta_read_and_merge);
    tcase_add_test(tc, contract_regex_registryd_accepts_the_module_reads);
    tcase_add_test(tc, contract_request_shaping_reads_and_packs);
    tcase_add_test(tc, contract_match_case_and_source_labels_read_and_pack);
    tcase_add_test(tc, contract_stream_gateway_reads_and_packs);
    suite_add_tcase(s, tc);

    return s;
}
