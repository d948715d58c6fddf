/*
 * check_buf: the growable buffer and its JSON string writer.
 */

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include "mesh_buf.h"


/* write s with mesh_buf_add_json_str, parse it back, compare */
static void
json_round_trip(const char *s)
{
    char          *doc;
    json_t        *v;
    mesh_buf_t     b;
    json_error_t   jerr;

    mesh_buf_init(&b, 0);
    mesh_buf_adds(&b, "[");
    mesh_buf_add_json_str(&b, s);
    mesh_buf_adds(&b, "]");
    doc = mesh_buf_cstr(&b);

    v = json_loads(doc, 0, &jerr);
    ck_assert_msg(v != NULL, "not JSON: %s (%s)", doc, jerr.text);
    ck_assert(json_is_array(v));
    ck_assert_int_eq(json_array_size(v), 1);
    ck_assert(json_is_string(json_array_get(v, 0)));
    ck_assert_str_eq(json_string_value(json_array_get(v, 0)), s);

    json_decref(v);
    mesh_buf_free(&b);
}


START_TEST(buf_init_zero_then_add_grows_and_keeps_bytes)
{
    size_t    i;
    mesh_buf_t  b;

    mesh_buf_init(&b, 0);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);

    for (i = 0; i < 10000; i++) {
        mesh_buf_addc(&b, (char) ('a' + i % 26));
        ck_assert_uint_lt(b.len, b.cap);
    }

    ck_assert_uint_eq(b.len, 10000);
    for (i = 0; i < 10000; i++) {
        ck_assert_int_eq(b.data[i], 'a' + (int) (i % 26));
    }

    mesh_buf_free(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
}
END_TEST


START_TEST(buf_init_with_cap_reserves_room_for_nul)
{
    mesh_buf_t  b;

    mesh_buf_init(&b, 100);
    ck_assert_ptr_nonnull(b.data);
    ck_assert_uint_ge(b.cap, 101);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_str_eq(mesh_buf_cstr(&b), "");
    mesh_buf_free(&b);
}
END_TEST


START_TEST(buf_add_large_block_keeps_all_bytes)
{
    char     *big;
    mesh_buf_t  b;

    big = malloc(100000);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', 100000);

    mesh_buf_init(&b, 16);
    mesh_buf_adds(&b, "head");
    mesh_buf_add(&b, big, 100000);
    mesh_buf_adds(&b, "tail");

    ck_assert_uint_eq(b.len, 100008);
    ck_assert_uint_gt(b.cap, b.len);
    ck_assert_int_eq(memcmp(b.data, "head", 4), 0);
    ck_assert_int_eq(memcmp(b.data + 4, big, 100000), 0);
    ck_assert_int_eq(memcmp(b.data + 100004, "tail", 4), 0);
    ck_assert_uint_eq(strlen(mesh_buf_cstr(&b)), 100008);

    free(big);
    mesh_buf_free(&b);
}
END_TEST


START_TEST(buf_cstr_terminates_without_counting_nul)
{
    mesh_buf_t  b;

    mesh_buf_init(&b, 0);
    ck_assert_str_eq(mesh_buf_cstr(&b), "");
    ck_assert_uint_eq(b.len, 0);

    mesh_buf_add(&b, "abcdef", 3);
    ck_assert_str_eq(mesh_buf_cstr(&b), "abc");
    ck_assert_uint_eq(b.len, 3);

    mesh_buf_adds(&b, "de");
    ck_assert_str_eq(mesh_buf_cstr(&b), "abcde");

    mesh_buf_free(&b);
}
END_TEST


START_TEST(buf_printf_short_appends_formatted)
{
    mesh_buf_t  b;

    mesh_buf_init(&b, 0);
    mesh_buf_adds(&b, "x=");
    mesh_buf_printf(&b, "%d,%s,%.2f", 42, "ok", 1.5);
    ck_assert_str_eq(mesh_buf_cstr(&b), "x=42,ok,1.50");
    ck_assert_uint_eq(b.len, strlen("x=42,ok,1.50"));
    mesh_buf_free(&b);
}
END_TEST


START_TEST(buf_printf_long_string_is_written_whole)
{
    char     *s, *expect;
    size_t    i, n;
    mesh_buf_t  b;

    for (n = 60; n < 70000; n = n * 3 + 1) {
        s = malloc(n + 1);
        expect = malloc(n + 32);
        ck_assert_ptr_nonnull(s);
        ck_assert_ptr_nonnull(expect);

        for (i = 0; i < n; i++) {
            s[i] = (char) ('A' + i % 26);
        }
        s[n] = '\0';

        snprintf(expect, n + 32, "pre<%s>%zu", s, n);

        mesh_buf_init(&b, 0);
        mesh_buf_adds(&b, "pre");
        mesh_buf_printf(&b, "<%s>%zu", s, n);

        ck_assert_uint_eq(b.len, strlen(expect));
        ck_assert_str_eq(mesh_buf_cstr(&b), expect);

        /* a second long write lands after the first */
        mesh_buf_printf(&b, "%s", s);
        ck_assert_uint_eq(b.len, strlen(expect) + n);
        ck_assert_int_eq(memcmp(b.data + strlen(expect), s, n), 0);

        mesh_buf_free(&b);
        free(s);
        free(expect);
    }
}
END_TEST


START_TEST(buf_add_u64_writes_decimal)
{
    mesh_buf_t  b;

    mesh_buf_init(&b, 0);
    mesh_buf_add_u64(&b, 0);
    mesh_buf_addc(&b, ' ');
    mesh_buf_add_u64(&b, 7);
    mesh_buf_addc(&b, ' ');
    mesh_buf_add_u64(&b, 1234567890);
    mesh_buf_addc(&b, ' ');
    mesh_buf_add_u64(&b, UINT64_MAX);
    ck_assert_str_eq(mesh_buf_cstr(&b), "0 7 1234567890 18446744073709551615");
    mesh_buf_free(&b);
}
END_TEST


START_TEST(buf_json_str_plain_is_quoted)
{
    mesh_buf_t  b;

    mesh_buf_init(&b, 0);
    mesh_buf_add_json_str(&b, "orders");
    ck_assert_str_eq(mesh_buf_cstr(&b), "\"orders\"");
    mesh_buf_free(&b);

    mesh_buf_init(&b, 0);
    mesh_buf_add_json_str(&b, "");
    ck_assert_str_eq(mesh_buf_cstr(&b), "\"\"");
    mesh_buf_free(&b);
}
END_TEST


START_TEST(buf_json_str_escapes_quote_and_backslash)
{
    mesh_buf_t  b;

    mesh_buf_init(&b, 0);
    mesh_buf_add_json_str(&b, "a\"b\\c");
    ck_assert_str_eq(mesh_buf_cstr(&b), "\"a\\\"b\\\\c\"");
    mesh_buf_free(&b);

    json_round_trip("\"");
    json_round_trip("\\");
    json_round_trip("\\\"\\\"");
    json_round_trip("say \"hi\" to C:\\dir\\");
}
END_TEST


START_TEST(buf_json_str_escapes_control_chars)
{
    int       c;
    char      s[4];
    mesh_buf_t  b;

    mesh_buf_init(&b, 0);
    mesh_buf_add_json_str(&b, "\n\r\t\x01\x1f");
    ck_assert_str_eq(mesh_buf_cstr(&b), "\"\\n\\r\\t\\u0001\\u001f\"");
    mesh_buf_free(&b);

    /* every control character, alone and between text */
    for (c = 1; c < 0x20; c++) {
        s[0] = 'x';
        s[1] = (char) c;
        s[2] = 'y';
        s[3] = '\0';
        json_round_trip(s);
        json_round_trip(s + 1);
    }
}
END_TEST


START_TEST(buf_json_str_mixed_and_utf8_parse_back)
{
    char  all[128];
    int   i;

    json_round_trip("line1\nline2\t\"quoted\"\\end\x7f");
    json_round_trip("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");

    for (i = 1; i < 128; i++) {
        all[i - 1] = (char) i;
    }
    all[127] = '\0';
    json_round_trip(all);
}
END_TEST


START_TEST(buf_sink_takes_up_to_max_then_nothing)
{
    char             chunk[] = "0123456789";
    mesh_buf_t       b;
    mesh_buf_sink_t  k;

    mesh_buf_init(&b, 0);
    k.b = &b;
    k.max = 25;

    /* as libcurl calls it: size 1, nmemb bytes */
    ck_assert_uint_eq(mesh_buf_sink(chunk, 1, 10, &k), 10);
    ck_assert_uint_eq(mesh_buf_sink(chunk, 1, 10, &k), 10);
    ck_assert_uint_eq(b.len, 20);

    /* past max: nothing taken, 0 ends the transfer */
    ck_assert_uint_eq(mesh_buf_sink(chunk, 1, 10, &k), 0);
    ck_assert_uint_eq(b.len, 20);
    ck_assert_uint_eq(mesh_buf_sink(chunk, 1, 5, &k), 5);
    ck_assert_str_eq(mesh_buf_cstr(&b), "0123456789012345678901234");

    mesh_buf_free(&b);
}
END_TEST


Suite *
buf_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("buf");

    tc = tcase_create("grow");
    tcase_add_test(tc, buf_init_zero_then_add_grows_and_keeps_bytes);
    tcase_add_test(tc, buf_init_with_cap_reserves_room_for_nul);
    tcase_add_test(tc, buf_add_large_block_keeps_all_bytes);
    tcase_add_test(tc, buf_cstr_terminates_without_counting_nul);
    tcase_add_test(tc, buf_printf_short_appends_formatted);
    tcase_add_test(tc, buf_printf_long_string_is_written_whole);
    tcase_add_test(tc, buf_add_u64_writes_decimal);
    suite_add_tcase(s, tc);

    tc = tcase_create("json");
    tcase_add_test(tc, buf_json_str_plain_is_quoted);
    tcase_add_test(tc, buf_json_str_escapes_quote_and_backslash);
    tcase_add_test(tc, buf_json_str_escapes_control_chars);
    tcase_add_test(tc, buf_json_str_mixed_and_utf8_parse_back);
    tcase_add_test(tc, buf_sink_takes_up_to_max_then_nothing);
    suite_add_tcase(s, tc);

    return s;
}
