/*
 * check_accept: an Accept header's quality for a media type
 * (common/mesh_accept), with the headers browsers and curl send.
 */

#include <check.h>
#include <string.h>

#include "mesh_accept.h"


#define CHROME  "text/html,application/xhtml+xml,application/xml;q=0.9," \
                "image/avif,image/webp,image/apng,*/*;q=0.8," \
                "application/signed-exchange;v=b3;q=0.7"
#define FIREFOX "text/html,application/xhtml+xml,application/xml;q=0.9," \
                "*/*;q=0.8"


static int
quality(const char *accept, const char *type)
{
    return mesh_accept_quality(accept, strlen(accept), type);
}


START_TEST(accept_browser_prefers_html_to_json)
{
    ck_assert_int_eq(quality(CHROME, "text/html"), 1000);
    ck_assert_int_eq(quality(CHROME, "application/json"), 800);
    ck_assert_int_eq(quality(FIREFOX, "text/html"), 1000);
    ck_assert_int_eq(quality(FIREFOX, "application/json"), 800);
}
END_TEST


START_TEST(accept_star_gives_both_the_same)
{
    ck_assert_int_eq(quality("*/*", "text/html"), 1000);
    ck_assert_int_eq(quality("*/*", "application/json"), 1000);
}
END_TEST


START_TEST(accept_empty_or_unmatched_gives_zero)
{
    ck_assert_int_eq(quality("", "text/html"), 0);
    ck_assert_int_eq(quality("application/json", "text/html"), 0);
    ck_assert_int_eq(quality("text/plain", "text/html"), 0);
    ck_assert_int_eq(quality(" , ,", "text/html"), 0);
    ck_assert_int_eq(quality("text/htmlx", "text/html"), 0);
    ck_assert_int_eq(quality("text/htm", "text/html"), 0);
}
END_TEST


START_TEST(accept_most_specific_range_wins)
{
    ck_assert_int_eq(quality("*/*;q=0.9, text/*;q=0.5", "text/html"), 500);
    ck_assert_int_eq(quality("text/html;q=0.2, text/*;q=0.5, */*",
                             "text/html"), 200);
    ck_assert_int_eq(quality("text/*;q=0.3, */*;q=1", "text/plain"), 300);
    ck_assert_int_eq(quality("text/*;q=0.3, */*;q=0.7", "image/png"), 700);
    ck_assert_int_eq(quality("text/html;q=0", "text/html"), 0);
}
END_TEST


START_TEST(accept_qvalues_parsed)
{
    ck_assert_int_eq(quality("text/html;q=1", "text/html"), 1000);
    ck_assert_int_eq(quality("text/html;q=1.000", "text/html"), 1000);
    ck_assert_int_eq(quality("text/html;q=0.123", "text/html"), 123);
    ck_assert_int_eq(quality("text/html;q=0.5", "text/html"), 500);
    ck_assert_int_eq(quality("text/html; Q=0.05 ", "text/html"), 50);
    ck_assert_int_eq(quality("text/html ; level=1 ; q=0.4", "text/html"),
                     400);
    ck_assert_int_eq(quality("text/html;charset=utf-8", "text/html"), 1000);
}
END_TEST


START_TEST(accept_bad_qvalue_gives_zero)
{
    ck_assert_int_eq(quality("text/html;q=", "text/html"), 0);
    ck_assert_int_eq(quality("text/html;q=2", "text/html"), 0);
    ck_assert_int_eq(quality("text/html;q=1.5", "text/html"), 0);
    ck_assert_int_eq(quality("text/html;q=0.1234", "text/html"), 0);
    ck_assert_int_eq(quality("text/html;q=0.x", "text/html"), 0);
    ck_assert_int_eq(quality("text/html;q=-1", "text/html"), 0);
}
END_TEST


START_TEST(accept_case_insensitive)
{
    ck_assert_int_eq(quality("Text/HTML", "text/html"), 1000);
    ck_assert_int_eq(quality("TEXT/*;q=0.6", "text/html"), 600);
}
END_TEST


START_TEST(accept_reads_only_len_bytes)
{
    const char  *s = "application/json, text/html";

    /* "application/json" alone: the rest is past len */
    ck_assert_int_eq(mesh_accept_quality(s, 16, "text/html"), 0);
    ck_assert_int_eq(mesh_accept_quality(s, 16, "application/json"), 1000);
    ck_assert_int_eq(mesh_accept_quality(s, strlen(s), "text/html"), 1000);
}
END_TEST


Suite *
accept_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("accept");
    tc = tcase_create("quality");

    tcase_add_test(tc, accept_browser_prefers_html_to_json);
    tcase_add_test(tc, accept_star_gives_both_the_same);
    tcase_add_test(tc, accept_empty_or_unmatched_gives_zero);
    tcase_add_test(tc, accept_most_specific_range_wins);
    tcase_add_test(tc, accept_qvalues_parsed);
    tcase_add_test(tc, accept_bad_qvalue_gives_zero);
    tcase_add_test(tc, accept_case_insensitive);
    tcase_add_test(tc, accept_reads_only_len_bytes);
    suite_add_tcase(s, tc);

    return s;
}
