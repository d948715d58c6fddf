/*
 * check_name: the name rule (common/mesh_name).
 */

#include <check.h>
#include <string.h>

#include "mesh_name.h"


static int
name_ok(const char *s)
{
    return mesh_name_valid(s, strlen(s));
}


START_TEST(name_valid_accepts_letters_digits_dot_dash_underscore)
{
    ck_assert_int_eq(name_ok("orders"), 1);
    ck_assert_int_eq(name_ok("a"), 1);
    ck_assert_int_eq(name_ok("0"), 1);
    ck_assert_int_eq(name_ok("orders-v2.eu_west"), 1);
    ck_assert_int_eq(name_ok("A.b-C_9"), 1);
}
END_TEST


START_TEST(name_valid_rejects_empty)
{
    ck_assert_int_eq(mesh_name_valid("", 0), 0);
    ck_assert_int_eq(mesh_name_valid("abc", 0), 0);
}
END_TEST


START_TEST(name_valid_accepts_128_rejects_129_chars)
{
    char  s[130];

    memset(s, 'a', sizeof(s));
    s[128] = '\0';
    ck_assert_int_eq(mesh_name_valid(s, 128), 1);

    s[128] = 'a';
    s[129] = '\0';
    ck_assert_int_eq(mesh_name_valid(s, 129), 0);
}
END_TEST


START_TEST(name_valid_rejects_leading_dot_dash_underscore)
{
    ck_assert_int_eq(name_ok(".orders"), 0);
    ck_assert_int_eq(name_ok("-orders"), 0);
    ck_assert_int_eq(name_ok("_orders"), 0);
    ck_assert_int_eq(name_ok("."), 0);
    ck_assert_int_eq(name_ok(".."), 0);
}
END_TEST


START_TEST(name_valid_rejects_slash_space_and_others)
{
    ck_assert_int_eq(name_ok("a/b"), 0);
    ck_assert_int_eq(name_ok("a b"), 0);
    ck_assert_int_eq(name_ok("a "), 0);
    ck_assert_int_eq(name_ok("a:b"), 0);
    ck_assert_int_eq(name_ok("a\tb"), 0);
    ck_assert_int_eq(name_ok("caf\xc3\xa9"), 0);
    /* len bounds the check: "a/b" cut to "a" is fine */
    ck_assert_int_eq(mesh_name_valid("a/b", 1), 1);
}
END_TEST


START_TEST(host_match_ranks_exact_suffix_star)
{
    ck_assert_int_eq(mesh_host_match("a.example", "a.example", 9, 0),
                     MESH_HOST_EXACT);
    ck_assert_int_eq(mesh_host_match("a.example", "A.Example", 9, 0), -1);
    ck_assert_int_eq(mesh_host_match("a.example", "A.Example", 9, 1),
                     MESH_HOST_EXACT);
    ck_assert_int_eq(mesh_host_match("*.example", "a.example", 9, 0), 8);
    ck_assert_int_eq(mesh_host_match("*.example", "x.a.example", 11, 0), 8);
    ck_assert_int_eq(mesh_host_match("*.example", "example", 7, 0), -1);
    ck_assert_int_eq(mesh_host_match("*.example", ".example", 8, 0), -1);
    ck_assert_int_eq(mesh_host_match("*.b.example", "a.b.example", 11, 0),
                     10);
    ck_assert_int_eq(mesh_host_match("*", "anything", 8, 0), 0);
    ck_assert_int_eq(mesh_host_match("b", "bb", 2, 0), -1);

    ck_assert(mesh_host_pattern_valid("*", 1));
    ck_assert(mesh_host_pattern_valid("*.a.b", 5));
    ck_assert(mesh_host_pattern_valid("a.b", 3));
    ck_assert(!mesh_host_pattern_valid("*.", 2));
    ck_assert(!mesh_host_pattern_valid("a*", 2));
    ck_assert(!mesh_host_pattern_valid("*a.b", 4));
    ck_assert(!mesh_host_pattern_valid("*.*.b", 5));
}
END_TEST


Suite *
name_suite(void)
{
    TCase  *tc;
    Suite  *s;

    s = suite_create("name");

    tc = tcase_create("name");
    tcase_add_test(tc, name_valid_accepts_letters_digits_dot_dash_underscore);
    tcase_add_test(tc, name_valid_rejects_empty);
    tcase_add_test(tc, host_match_ranks_exact_suffix_star);
    tcase_add_test(tc, name_valid_accepts_128_rejects_129_chars);
    tcase_add_test(tc, name_valid_rejects_leading_dot_dash_underscore);
    tcase_add_test(tc, name_valid_rejects_slash_space_and_others);
    suite_add_tcase(s, tc);

    return s;
}
