/*
 * check_units: durations and sizes (common/mesh_units).
 */

#include <check.h>
#include <stdint.h>

#include "mesh_units.h"


START_TEST(units_duration_gives_milliseconds)
{
    ck_assert_int_eq(mesh_duration_parse("0ms"), 0);
    ck_assert_int_eq(mesh_duration_parse("500ms"), 500);
    ck_assert_int_eq(mesh_duration_parse("10s"), 10000);
    ck_assert_int_eq(mesh_duration_parse("0s"), 0);
    ck_assert_int_eq(mesh_duration_parse("5m"), 300000);
    ck_assert_int_eq(mesh_duration_parse("1h"), 3600000);
    ck_assert_int_eq(mesh_duration_parse("24h"), 86400000);
}
END_TEST


START_TEST(units_duration_rejects_bad_forms)
{
    ck_assert_int_eq(mesh_duration_parse("10x"), -1);
    ck_assert_int_eq(mesh_duration_parse("-1s"), -1);
    ck_assert_int_eq(mesh_duration_parse(""), -1);
    ck_assert_int_eq(mesh_duration_parse("s"), -1);
    ck_assert_int_eq(mesh_duration_parse("10"), -1);
    ck_assert_int_eq(mesh_duration_parse(" 10s"), -1);
    ck_assert_int_eq(mesh_duration_parse("10s "), -1);
    ck_assert_int_eq(mesh_duration_parse("+10s"), -1);
    ck_assert_int_eq(mesh_duration_parse("1.5s"), -1);
    ck_assert_int_eq(mesh_duration_parse("10S"), -1);
    ck_assert_int_eq(mesh_duration_parse(NULL), -1);
}
END_TEST


START_TEST(units_duration_rejects_overflow)
{
    /* strtoll overflows */
    ck_assert_int_eq(mesh_duration_parse("99999999999999999999ms"), -1);
    /* fits in int64 but not once scaled */
    ck_assert_int_eq(mesh_duration_parse("9223372036854775807s"), -1);
    ck_assert_int_eq(mesh_duration_parse("2562047788016h"), -1);
    /* the largest value that fits */
    ck_assert(mesh_duration_parse("9223372036854775807ms") == INT64_MAX);
    ck_assert(mesh_duration_parse("2562047788015h")
              == (int64_t) 2562047788015LL * 3600000);
}
END_TEST


START_TEST(units_format_uses_shortest_exact_unit)
{
    char  d[32];

    mesh_duration_format(500, d, sizeof(d));
    ck_assert_str_eq(d, "500ms");
    mesh_duration_format(1500, d, sizeof(d));
    ck_assert_str_eq(d, "1500ms");
    mesh_duration_format(10000, d, sizeof(d));
    ck_assert_str_eq(d, "10s");
    mesh_duration_format(90000, d, sizeof(d));
    ck_assert_str_eq(d, "90s");
    mesh_duration_format(300000, d, sizeof(d));
    ck_assert_str_eq(d, "5m");
    mesh_duration_format(3600000, d, sizeof(d));
    ck_assert_str_eq(d, "1h");
    mesh_duration_format(5400000, d, sizeof(d));
    ck_assert_str_eq(d, "90m");
    mesh_duration_format(0, d, sizeof(d));
    ck_assert_str_eq(d, "0s");
}
END_TEST


START_TEST(units_format_then_parse_round_trips)
{
    static const int64_t  v[] = { 1, 999, 1000, 1001, 59000, 60000, 61000,
                                  3599000, 3600000, 86400000 };
    char                  d[32];
    size_t                i;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        mesh_duration_format(v[i], d, sizeof(d));
        ck_assert_msg(mesh_duration_parse(d) == v[i], "%lld -> %s",
                      (long long) v[i], d);
    }
}
END_TEST


START_TEST(units_size_gives_bytes)
{
    ck_assert_int_eq(mesh_size_parse("0"), 0);
    ck_assert_int_eq(mesh_size_parse("1024"), 1024);
    ck_assert_int_eq(mesh_size_parse("64k"), 65536);
    ck_assert_int_eq(mesh_size_parse("64K"), 65536);
    ck_assert_int_eq(mesh_size_parse("1m"), 1048576);
    ck_assert_int_eq(mesh_size_parse("2M"), 2097152);
}
END_TEST


START_TEST(units_size_rejects_bad_forms)
{
    ck_assert_int_eq(mesh_size_parse(""), -1);
    ck_assert_int_eq(mesh_size_parse("k"), -1);
    ck_assert_int_eq(mesh_size_parse("-1"), -1);
    ck_assert_int_eq(mesh_size_parse("1g"), -1);
    ck_assert_int_eq(mesh_size_parse("1kb"), -1);
    ck_assert_int_eq(mesh_size_parse("1 k"), -1);
    ck_assert_int_eq(mesh_size_parse("99999999999999999999"), -1);
    ck_assert_int_eq(mesh_size_parse("9223372036854775807k"), -1);
}
END_TEST


START_TEST(units_decimal_duration_istio_forms)
{
    ck_assert_int_eq(mesh_duration_parse_decimal("1s"), 1000);
    ck_assert_int_eq(mesh_duration_parse_decimal("0.5s"), 500);
    ck_assert_int_eq(mesh_duration_parse_decimal(".25s"), 250);
    ck_assert_int_eq(mesh_duration_parse_decimal("500ms"), 500);
    ck_assert_int_eq(mesh_duration_parse_decimal("1m"), 60000);
    ck_assert_int_eq(mesh_duration_parse_decimal("1h"), 3600000);
    ck_assert_int_eq(mesh_duration_parse_decimal("1.5s"), 1500);
    ck_assert_int_eq(mesh_duration_parse_decimal("1m30s"), 90000);
    ck_assert_int_eq(mesh_duration_parse_decimal("0s"), 0);
    ck_assert_int_eq(mesh_duration_parse_decimal("1.0005s"), -2);
    ck_assert_int_eq(mesh_duration_parse_decimal("0.5ms"), -2);
    ck_assert_int_eq(mesh_duration_parse_decimal("1"), -1);
    ck_assert_int_eq(mesh_duration_parse_decimal("s"), -1);
    ck_assert_int_eq(mesh_duration_parse_decimal("1d"), -1);
    ck_assert_int_eq(mesh_duration_parse_decimal("-1s"), -1);
    ck_assert_int_eq(mesh_duration_parse_decimal("1 s"), -1);
    ck_assert_int_eq(mesh_duration_parse_decimal(""), -1);
}
END_TEST


Suite *
units_suite(void)
{
    TCase  *tc;
    Suite  *s;

    s = suite_create("units");

    tc = tcase_create("units");
    tcase_add_test(tc, units_duration_gives_milliseconds);
    tcase_add_test(tc, units_duration_rejects_bad_forms);
    tcase_add_test(tc, units_duration_rejects_overflow);
    tcase_add_test(tc, units_format_uses_shortest_exact_unit);
    tcase_add_test(tc, units_format_then_parse_round_trips);
    tcase_add_test(tc, units_size_gives_bytes);
    tcase_add_test(tc, units_size_rejects_bad_forms);
    tcase_add_test(tc, units_decimal_duration_istio_forms);
    suite_add_tcase(s, tc);

    return s;
}
