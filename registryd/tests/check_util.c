/*
 * check_util: addresses, host:port, comparison, clocks.
 */

#include <stdint.h>
#include <string.h>

#include "check_suites.h"
#include "rd_util.h"


START_TEST(util_addr_valid_accepts_v4_and_v6_literals)
{
    ck_assert_int_eq(rd_addr_valid("127.0.0.1"), 0);
    ck_assert_int_eq(rd_addr_valid("0.0.0.0"), 0);
    ck_assert_int_eq(rd_addr_valid("255.255.255.255"), 0);
    ck_assert_int_eq(rd_addr_valid("::1"), 0);
    ck_assert_int_eq(rd_addr_valid("::"), 0);
    ck_assert_int_eq(rd_addr_valid("fe80::1:2"), 0);
    ck_assert_int_eq(rd_addr_valid("2001:db8::ffff:10.0.0.1"), 0);
}
END_TEST


START_TEST(util_addr_valid_rejects_hostnames_and_junk)
{
    ck_assert_int_eq(rd_addr_valid("localhost"), -1);
    ck_assert_int_eq(rd_addr_valid("example.com"), -1);
    ck_assert_int_eq(rd_addr_valid(""), -1);
    ck_assert_int_eq(rd_addr_valid("256.0.0.1"), -1);
    ck_assert_int_eq(rd_addr_valid("1.2.3"), -1);
    ck_assert_int_eq(rd_addr_valid("[::1]"), -1);
    ck_assert_int_eq(rd_addr_valid("127.0.0.1:80"), -1);
    ck_assert_int_eq(rd_addr_valid(" 127.0.0.1"), -1);
}
END_TEST


START_TEST(util_parse_hostport_v4_gives_host_and_port)
{
    int   port = 0;
    char  host[64];

    ck_assert_int_eq(rd_parse_hostport("127.0.0.1:7770", host, sizeof(host),
                                       &port), 0);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 7770);

    ck_assert_int_eq(rd_parse_hostport("10.1.2.3:1", host, sizeof(host),
                                       &port), 0);
    ck_assert_str_eq(host, "10.1.2.3");
    ck_assert_int_eq(port, 1);

    ck_assert_int_eq(rd_parse_hostport("10.1.2.3:65535", host, sizeof(host),
                                       &port), 0);
    ck_assert_int_eq(port, 65535);
}
END_TEST


START_TEST(util_parse_hostport_bracketed_v6_strips_brackets)
{
    int   port = 0;
    char  host[64];

    ck_assert_int_eq(rd_parse_hostport("[::1]:7770", host, sizeof(host),
                                       &port), 0);
    ck_assert_str_eq(host, "::1");
    ck_assert_int_eq(port, 7770);

    ck_assert_int_eq(rd_parse_hostport("[fe80::1:2]:80", host, sizeof(host),
                                       &port), 0);
    ck_assert_str_eq(host, "fe80::1:2");
    ck_assert_int_eq(port, 80);
}
END_TEST


START_TEST(util_parse_hostport_rejects_missing_port)
{
    int   port = 4242;
    char  host[64];

    ck_assert_int_eq(rd_parse_hostport("127.0.0.1", host, sizeof(host),
                                       &port), -1);
    ck_assert_int_eq(rd_parse_hostport("127.0.0.1:", host, sizeof(host),
                                       &port), -1);
    ck_assert_int_eq(rd_parse_hostport("[::1]", host, sizeof(host), &port),
                     -1);
    ck_assert_int_eq(rd_parse_hostport("[::1]:", host, sizeof(host), &port),
                     -1);
    ck_assert_int_eq(rd_parse_hostport(":80", host, sizeof(host), &port), -1);
    ck_assert_int_eq(rd_parse_hostport("[]:80", host, sizeof(host), &port),
                     -1);
    ck_assert_int_eq(rd_parse_hostport("", host, sizeof(host), &port), -1);
    ck_assert_int_eq(port, 4242);
}
END_TEST


START_TEST(util_parse_hostport_rejects_port_0_and_65536)
{
    int   port = 4242;
    char  host[64];

    ck_assert_int_eq(rd_parse_hostport("127.0.0.1:0", host, sizeof(host),
                                       &port), -1);
    ck_assert_int_eq(rd_parse_hostport("127.0.0.1:65536", host, sizeof(host),
                                       &port), -1);
    ck_assert_int_eq(rd_parse_hostport("[::1]:0", host, sizeof(host), &port),
                     -1);
    ck_assert_int_eq(rd_parse_hostport("[::1]:65536", host, sizeof(host),
                                       &port), -1);
    ck_assert_int_eq(rd_parse_hostport("127.0.0.1:-1", host, sizeof(host),
                                       &port), -1);
    ck_assert_int_eq(rd_parse_hostport("127.0.0.1:80x", host, sizeof(host),
                                       &port), -1);
    ck_assert_int_eq(rd_parse_hostport("127.0.0.1:99999999999999999999",
                                       host, sizeof(host), &port), -1);
    ck_assert_int_eq(port, 4242);
}
END_TEST


START_TEST(util_parse_hostport_rejects_host_longer_than_buffer)
{
    int   port = 0;
    char  host[8];

    ck_assert_int_eq(rd_parse_hostport("127.0.0.1:80", host, sizeof(host),
                                       &port), -1);
    ck_assert_int_eq(rd_parse_hostport("1.2.3.4:80", host, sizeof(host),
                                       &port), 0);
    ck_assert_str_eq(host, "1.2.3.4");
}
END_TEST


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

    tc = tcase_create("address");
    tcase_add_test(tc, util_addr_valid_accepts_v4_and_v6_literals);
    tcase_add_test(tc, util_addr_valid_rejects_hostnames_and_junk);
    tcase_add_test(tc, util_parse_hostport_v4_gives_host_and_port);
    tcase_add_test(tc, util_parse_hostport_bracketed_v6_strips_brackets);
    tcase_add_test(tc, util_parse_hostport_rejects_missing_port);
    tcase_add_test(tc, util_parse_hostport_rejects_port_0_and_65536);
    tcase_add_test(tc, util_parse_hostport_rejects_host_longer_than_buffer);
    suite_add_tcase(s, tc);

    tc = tcase_create("misc");
    tcase_add_test(tc, util_secure_equal_matches_only_identical_strings);
    tcase_add_test(tc, util_secure_equal_never_matches_empty_token);
    tcase_add_test(tc, util_clocks_are_positive_and_monotonic_does_not_go_back);
    suite_add_tcase(s, tc);

    return s;
}
