/*
 * check_token: the bearer token file (common/mesh_token).
 */

#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mesh_token.h"


static char  token_dir[PATH_MAX];
static char  token_path[PATH_MAX + 16];


static void
token_setup(void)
{
    snprintf(token_dir, sizeof(token_dir), "/tmp/check_token.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(token_dir));
    snprintf(token_path, sizeof(token_path), "%s/token", token_dir);
}


static void
token_teardown(void)
{
    unlink(token_path);
    rmdir(token_dir);
}


static void
token_file(const char *text, size_t len)
{
    FILE  *f;

    f = fopen(token_path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}


/* read text as a token file: 0 with tok, or -1 with err */
static int
token_of(const char *text, char *tok, char *err)
{
    token_file(text, strlen(text));
    err[0] = '\0';

    return mesh_token_read(token_path, tok, MESH_TOKEN_MAX + 1, err, 256);
}


START_TEST(token_drops_surrounding_whitespace_keeps_inner_spaces)
{
    char  tok[MESH_TOKEN_MAX + 1], err[256];

    ck_assert_int_eq(token_of("  \ts3cret-token \r\n\n", tok, err), 0);
    ck_assert_str_eq(tok, "s3cret-token");

    ck_assert_int_eq(token_of("abc", tok, err), 0);
    ck_assert_str_eq(tok, "abc");

    ck_assert_int_eq(token_of("\r\ns3cret\r\n", tok, err), 0);
    ck_assert_str_eq(tok, "s3cret");

    ck_assert_int_eq(token_of("a b\n", tok, err), 0);
    ck_assert_str_eq(tok, "a b");
}
END_TEST


START_TEST(token_empty_or_blank_file_is_refused)
{
    char  tok[MESH_TOKEN_MAX + 1], err[256];

    ck_assert_int_eq(token_of("", tok, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "is empty"));
    ck_assert_ptr_nonnull(strstr(err, token_path));

    ck_assert_int_eq(token_of(" \n\t\r\n", tok, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "is empty"));
}
END_TEST


START_TEST(token_two_lines_or_control_characters_are_refused)
{
    char  tok[MESH_TOKEN_MAX + 1], err[256];

    ck_assert_int_eq(token_of("one\ntwo\n", tok, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "more than one line"));

    ck_assert_int_eq(token_of("one\r\ntwo", tok, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "more than one line"));

    ck_assert_int_eq(token_of("bell\a", tok, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "control character"));

    token_file("nul\0after", 9);
    ck_assert_int_eq(mesh_token_read(token_path, tok, sizeof(tok), err,
                                     sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "control character"));
}
END_TEST


START_TEST(token_of_4096_bytes_is_read_4097_refused)
{
    char   tok[MESH_TOKEN_MAX + 1], err[256];
    char  *big;

    big = malloc(MESH_TOKEN_MAX + 2);
    ck_assert_ptr_nonnull(big);
    memset(big, 'k', MESH_TOKEN_MAX + 1);
    big[MESH_TOKEN_MAX] = '\0';

    ck_assert_int_eq(token_of(big, tok, err), 0);
    ck_assert_uint_eq(strlen(tok), MESH_TOKEN_MAX);

    big[MESH_TOKEN_MAX] = 'k';
    big[MESH_TOKEN_MAX + 1] = '\0';
    ck_assert_int_eq(token_of(big, tok, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "more than 4096 bytes"));

    free(big);

    /* a caller's buffer smaller than the token */
    token_file("0123456789", 10);
    ck_assert_int_eq(mesh_token_read(token_path, tok, 10, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "too long"));
}
END_TEST


START_TEST(token_missing_file_names_the_path)
{
    char  tok[MESH_TOKEN_MAX + 1], err[256] = "";

    ck_assert_int_eq(mesh_token_read("/nonexistent/dir/token", tok,
                                     sizeof(tok), err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "cannot open /nonexistent/dir/token"));
}
END_TEST


Suite *
token_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("token");

    tc = tcase_create("file");
    tcase_add_checked_fixture(tc, token_setup, token_teardown);
    tcase_add_test(tc, token_drops_surrounding_whitespace_keeps_inner_spaces);
    tcase_add_test(tc, token_empty_or_blank_file_is_refused);
    tcase_add_test(tc, token_two_lines_or_control_characters_are_refused);
    tcase_add_test(tc, token_of_4096_bytes_is_read_4097_refused);
    tcase_add_test(tc, token_missing_file_names_the_path);
    suite_add_tcase(s, tc);

    return s;
}
