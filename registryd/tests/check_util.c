/*
 * check_util: comparison, clocks (addresses: common/tests/check_addr).
 */

#include <stdint.h>
#include <string.h>

#include "check_suites.h"
#include "rd_util.h"


START_TEST(util_secure_equal_matches_only_identical_strings)
{
    ck_assert_int_eq(rd_secure_equal("s3cret", "s3cret"), 1);
    ck_assert_int_eq(rd_secure_equal("s3cret", "s3creT"), 0);
    ck_assert_int_eq(rd_secure_equal("s3cret", "s3cre"), 0);
    ck_assert_int_eq(rd_secure_equal("s3cre", "s3cret"), 0);
    ck_assert_int_eq(rd_secure_equal("abcabc", "abc"), 0);
    ck_assert_int_eq(rd_secure_equal("abc", "abcabc"), 0);
    ck_assert_int_eq(rd_secure_equal("", "x"), 0);
    ck_assert_int_eq(rd_secure_equal("x", ""), 0);
}
END_TEST


START_TEST(util_secure_equal_never_matches_empty_token)
{
    ck_assert_int_eq(rd_secure_equal("", ""), 0);
}
END_TEST


START_TEST(util_clocks_are_positive_and_monotonic_does_not_go_back)
{
    int64_t  a, b;

    a = rd_now_ms();
    b = rd_now_ms();
    ck_assert(a > 0);
    ck_assert(b >= a);
    /* realtime is after 2020-01-01 */
    ck_assert(rd_wall_ms() > 1577836800000LL);
}
END_TEST


Suite *
util_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("util");

    tc = tcase_create("name");
    suite_add_tcase(s, tc);

    tc = tcase_create("duration");
    suite_add_tcase(s, tc);

    tc = tcase_create("size");
    suite_add_tcase(s, tc);

    tc = tcase_create("misc");
    tcase_add_test(tc, util_secure_equal_matches_only_identical_strings);
    tcase_add_test(tc, util_secure_equal_never_matches_empty_token);
    tcase_add_test(tc, util_clocks_are_positive_and_monotonic_does_not_go_back);
    suite_add_tcase(s, tc);

    return s;
}
