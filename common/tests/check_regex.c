/*
 * check_regex: one reading of a policy regex for registryd and the module:
 * the whole value, the pattern as written (the cases where wrapping it in
 * "^(?:...)$" changed its meaning or broke it), bytes.
 */

#include <check.h>
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
    suite_add_tcase(s, tc);

    return s;
}
