/*
 * check_regex: one reading of a policy regex for registryd and the module:
 * the whole value, the pattern as written (the cases where wrapping it in
 * "^(?:...)$" changed its meaning or broke it), bytes.
 */

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_policy.h"
#include "mesh_regex.h"


static int
match(const char *pattern, const char *s)
{
    int            rc;
    char           err[256];
    mesh_regex_t  *re;

    re = mesh_regex_compile(pattern, strlen(pattern), err, sizeof(err));
    ck_assert_msg(re != NULL, "%s: %s", pattern, err);

    rc = mesh_regex_match(re, s, strlen(s));
    mesh_regex_free(re);

    return rc;
}


START_TEST(regex_matches_the_whole_value)
{
    ck_assert_int_eq(match("b\\d+", "b12"), 1);
    ck_assert_int_eq(match("b\\d+", "xb12"), 0);
    ck_assert_int_eq(match("b\\d+", "b12x"), 0);
    ck_assert_int_eq(match("a|b", "a"), 1);
    ck_assert_int_eq(match("a|b", "b"), 1);
    ck_assert_int_eq(match("a|b", "ab"), 0);
    ck_assert_int_eq(match("/v[0-9]+/orders/.*", "/v2/orders/7"), 1);
    ck_assert_int_eq(match("/v[0-9]+/orders/.*", "/v2/order"), 0);
    ck_assert_int_eq(match(".*", ""), 1);
}
END_TEST


START_TEST(regex_reads_the_pattern_as_written)
{
    /* wrapped, these were "abc)$" as a literal, an error, and an error */
    ck_assert_int_eq(match("\\Qabc", "abc"), 1);
    ck_assert_int_eq(match("\\Qabc", "abc)$"), 0);
    ck_assert_int_eq(match("(*UTF)x", "x"), 1);
    ck_assert_int_eq(match("(?x)a#c", "a"), 1);
    ck_assert_int_eq(match("(?x)a#c", "a#c"), 0);
    ck_assert_int_eq(match("(?i)ABC", "abc"), 1);
}
END_TEST


START_TEST(regex_refuses_with_a_reason)
{
    char  err[256];

    ck_assert_ptr_null(mesh_regex_compile("a(", 2, err, sizeof(err)));
    ck_assert_msg(strstr(err, "invalid regex \"a(\" at offset 2") != NULL,
                  "%s", err);
    ck_assert_ptr_null(mesh_regex_compile("[z-a]", 5, err, sizeof(err)));
}
END_TEST


START_TEST(regex_of_a_policy_is_compiled_by_its_parse)
{
    char              err[256];
    const char       *json;
    mesh_policies_t  *p;

    json = "[{\"policy\":\"p\",\"kind\":\"VirtualService\",\"name\":\"v\","
           "\"hosts\":[\"a\"],\"http\":[{\"match\":[{\"uri\":{\"regex\":"
           "\"\\\\Qabc\"}}],\"route\":[{\"destination\":{\"host\":\"a\"},"
           "\"weight\":100}]}]}]";
    p = mesh_policies_parse(json, strlen(json), err, sizeof(err));
    ck_assert_msg(p != NULL, "%s", err);
    ck_assert_int_eq(mesh_string_match(p->vss[0].http[0].matches[0].uri,
                                       "abc", 3, NULL), 1);
    ck_assert_int_eq(mesh_string_match(p->vss[0].http[0].matches[0].uri,
                                       "abd", 3, NULL), 0);
    mesh_policies_free(p);

    /* a regex registryd would refuse is refused here too */
    json = "[{\"policy\":\"p\",\"kind\":\"VirtualService\",\"name\":\"v\","
           "\"hosts\":[\"a\"],\"http\":[{\"match\":[{\"uri\":{\"regex\":"
           "\"a(\"}}],\"route\":[{\"destination\":{\"host\":\"a\"},"
           "\"weight\":100}]}]}]";
    ck_assert_ptr_null(mesh_policies_parse(json, strlen(json), err,
                                           sizeof(err)));
    ck_assert_msg(strstr(err, "invalid regex") != NULL, "%s", err);
}
END_TEST


START_TEST(regex_retry_on_has_no_retriable_4xx)
{
    size_t  i;

    for (i = 0; mesh_retry_on[i].name; i++) {
        ck_assert_str_ne(mesh_retry_on[i].name, "retriable-4xx");
    }

    ck_assert_uint_eq(i, 4);
}
END_TEST


static const char  ck_model[] =
    "[{\"policy\":\"orders\",\"kind\":\"DestinationRule\",\"name\":\"o\","
    "\"host\":\"orders\",\"trafficPolicy\":{\"loadBalancer\":"
    "{\"consistentHash\":{\"httpHeaderName\":\"x-user\"}},"
    "\"outlierDetection\":{\"consecutive5xxErrors\":3}},"
    "\"subsets\":[{\"name\":\"v1\",\"labels\":{\"version\":\"v1\"}},"
    "{\"name\":\"v2\",\"labels\":{\"version\":\"v2\",\"zone\":\"a\"},"
    "\"trafficPolicy\":{\"loadBalancer\":{\"simple\":\"RANDOM\"},"
    "\"connectionPool\":{\"tcp\":{\"connectTimeoutMs\":250,"
    "\"tcpKeepalive\":{\"timeMs\":7000}},\"http\":{\"maxRetries\":1,"
    "\"idleTimeoutMs\":1500}}}}]},"
    "{\"policy\":\"orders\",\"kind\":\"VirtualService\",\"name\":\"r\","
    "\"hosts\":[\"orders\",\"orders-b\"],\"http\":[{\"name\":\"canary\","
    "\"match\":[{\"headers\":{\"x-canary\":{\"exact\":\"1\"}}},"
    "{\"uri\":{\"regex\":\"/v[0-9]+/o\"},\"headers\":{\"x-a\":"
    "{\"regex\":\"\\\\Qa.b\"}}}],\"route\":[{\"destination\":{\"host\":"
    "\"orders\",\"subset\":\"v2\"},\"weight\":100}],\"retries\":"
    "{\"attempts\":2,\"retryOn\":[\"5xx\"]},\"timeoutMs\":3000},"
    "{\"match\":[],\"route\":[{\"destination\":{\"host\":\"orders\",\"subset\":\"v1\"},"
    "\"weight\":90},{\"destination\":{\"host\":\"orders\"},"
    "\"weight\":10}]}]}]";


START_TEST(policies_pack_unpack_keeps_the_model)
{
    char                           err[256], *block;
    size_t                         size, i;
    mesh_policies_t               *p, *q;
    const mesh_destination_rule_t *dr;
    const mesh_virtual_service_t  *vs;

    p = mesh_policies_parse(ck_model, strlen(ck_model), err, sizeof(err));
    ck_assert_msg(p != NULL, "%s", err);

    size = mesh_policies_pack(p, NULL, 0);
    ck_assert_uint_gt(size, sizeof(mesh_policies_t));
    block = malloc(size);
    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    mesh_policies_free(p);

    /* nothing of the parse is left: the block stands alone */
    q = mesh_policies_unpack(block, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);

    dr = mesh_policies_rule(q, "orders", 6);
    ck_assert_ptr_nonnull(dr);
    ck_assert_str_eq(dr->name, "o");
    ck_assert_int_eq(dr->traffic.lb, MESH_LB_HASH_HEADER);
    ck_assert_str_eq(dr->traffic.hash_name, "x-user");
    ck_assert_int_eq(dr->traffic.consecutive_5xx, 3);
    ck_assert_uint_eq(dr->nsubsets, 2);
    ck_assert_str_eq(dr->subsets[1].name, "v2");
    ck_assert_uint_eq(dr->subsets[1].nlabels, 2);
    ck_assert_str_eq(dr->subsets[1].labels[1].key, "zone");
    ck_assert_int_eq(dr->subsets[1].policy.lb, MESH_LB_RANDOM);
    ck_assert_int_eq(dr->subsets[1].policy.connect_timeout, 250);
    ck_assert_int_eq(dr->subsets[1].policy.tcp_keepalive, 1);
    ck_assert_int_eq(dr->subsets[1].policy.keepalive_time, 7000);
    ck_assert_int_eq(dr->subsets[1].policy.max_retries, 1);
    ck_assert_int_eq(dr->subsets[1].policy.idle_timeout, 1500);
    ck_assert_int_eq(dr->subsets[0].policy.max_retries, -1);
    ck_assert_str_eq(dr->subsets[1].policy.hash_name == NULL ? "" : "x",
                     "");

    vs = mesh_policies_vs(q, "orders-b", 8);
    ck_assert_ptr_nonnull(vs);
    ck_assert_uint_eq(vs->nhttp, 2);
    ck_assert_str_eq(vs->http[0].name, "canary");
    ck_assert_uint_eq(vs->http[0].nmatches, 2);
    ck_assert_ptr_null(vs->http[0].matches[0].uri);
    ck_assert_str_eq(vs->http[0].matches[0].headers[0].name, "x-canary");
    ck_assert_int_eq(mesh_string_match(&vs->http[0].matches[0].headers[0]
                                        .match, "1", 1, NULL), 1);
    ck_assert_int_eq(mesh_string_match(vs->http[0].matches[1].uri,
                                       "/v2/o", 5, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&vs->http[0].matches[1].headers[0]
                                        .match, "a.b", 3, NULL), 1);
    ck_assert_int_eq(mesh_string_match(&vs->http[0].matches[1].headers[0]
                                        .match, "axb", 3, NULL), 0);
    ck_assert_int_eq(vs->http[0].attempts, 2);
    ck_assert_int_eq(vs->http[0].timeout, 3000);
    ck_assert_str_eq(vs->http[0].routes[0].subset, "v2");
    ck_assert_uint_eq(vs->http[1].nroutes, 2);
    ck_assert_ptr_null(vs->http[1].routes[1].subset);
    ck_assert_str_eq(vs->http[1].routes[1].host, "orders");
    ck_assert_ptr_null(vs->http[1].matches);

    mesh_policies_free(q);

    /* a damaged block is refused or reads inside itself, never outside */
    for (i = 0; i < size; i += 3) {
        char  *copy = malloc(size);

        memcpy(copy, block, size);
        copy[i] ^= 0x40;

        q = mesh_policies_unpack(copy, size, err, sizeof(err));
        if (q) {
            mesh_policies_free(q);
        }

        free(copy);
    }

    free(block);
}
END_TEST


Suite *
regex_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("regex");
    tc = tcase_create("regex");

    tcase_add_test(tc, regex_matches_the_whole_value);
    tcase_add_test(tc, regex_reads_the_pattern_as_written);
    tcase_add_test(tc, regex_refuses_with_a_reason);
    tcase_add_test(tc, regex_of_a_policy_is_compiled_by_its_parse);
    tcase_add_test(tc, regex_retry_on_has_no_retriable_4xx);
    tcase_add_test(tc, policies_pack_unpack_keeps_the_model);
    suite_add_tcase(s, tc);

    return s;
}
