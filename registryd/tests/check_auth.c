/*
 * check_auth: token_file and the tokens file (their reading, the refusal
 * of a file others can read, the errors with FILE:LINE), the decision for
 * each scope, anonymous_read, and a reload that keeps the old set when the
 * new file is bad.
 */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check_suites.h"
#include "rd_auth.h"

#define SECRET_A  "aaaaaaaaaaaaaaaa-nginx"
#define SECRET_B  "bbbbbbbbbbbbbbbb-deploy"
#define SECRET_C  "cccccccccccccccc-ops"

static char       dir[PATH_MAX];
static rd_conf_t  conf;

static const char  tokens_yaml[] =
    "anonymous_read: false\n"
    "tokens:\n"
    "  - name: nginx\n"
    "    secret: " SECRET_A "\n"
    "    scopes: [read]\n"
    "  - name: deploy-orders\n"
    "    secret: " SECRET_B "\n"
    "    scopes: [\"write:orders\", \"write:orders-*\"]\n"
    "  - name: ops\n"
    "    secret: " SECRET_C "\n"
    "    scopes: [admin]\n"
    "  - name: policy-bot\n"
    "    subject: \"CN=policy-bot,O=example\"\n"
    "    scopes: [policies, read]\n";


static void
setup(void)
{
    ck_tmpdir(dir, sizeof(dir));
    rd_conf_init(&conf);
}


static void
teardown(void)
{
    rd_conf_free(&conf);
    ck_rmrf(dir);
}


/* a tokens file with text, mode 0600, set in conf */
static void
tokens_file(const char *text)
{
    char  path[PATH_MAX], err[RD_ERR_LEN];

    ck_write_file(dir, "tokens.yaml", text, path, sizeof(path));
    ck_assert_int_eq(chmod(path, 0600), 0);

    if (conf.tokens_file == NULL) {
        ck_assert_int_eq(rd_conf_set(&conf, "tokens_file", path, err), 0);
    }
}


/* rd_auth_create's error for a tokens file with text */
static const char *
tokens_error(const char *text)
{
    static char   err[RD_ERR_LEN];
    rd_auth_t    *auth;

    tokens_file(text);
    err[0] = '\0';

    auth = rd_auth_create(&conf, err);
    ck_assert_msg(auth == NULL, "accepted: %s", text);

    return err;
}


static rd_auth_e
check(rd_auth_t *auth, const char *bearer, const char *subject,
    rd_need_e need, const char *svc, char *reason)
{
    char  who[RD_AUTH_NAME_MAX + 1];

    reason[0] = '\0';
    return rd_auth_check(auth, bearer, subject, need, svc, who, reason);
}


START_TEST(auth_without_tokens_is_open)
{
    char        reason[RD_ERR_LEN], err[RD_ERR_LEN];
    rd_auth_t  *auth;

    auth = rd_auth_create(&conf, err);
    ck_assert_ptr_nonnull(auth);
    ck_assert_uint_eq(rd_auth_count(auth), 0);
    ck_assert_int_eq(check(auth, NULL, NULL, RD_NEED_WRITE, "a", reason),
                     RD_AUTH_OPEN);
    ck_assert_int_eq(check(auth, "x", NULL, RD_NEED_READ, "", reason),
                     RD_AUTH_OPEN);
    rd_auth_free(auth);
}
END_TEST


START_TEST(auth_token_file_is_one_token_with_every_scope)
{
    char        path[PATH_MAX], reason[RD_ERR_LEN], err[RD_ERR_LEN];
    rd_auth_t  *auth;

    ck_write_file(dir, "token", "  \ts3cret-token \r\n\n", path, sizeof(path));
    ck_assert_int_eq(chmod(path, 0600), 0);
    ck_assert_int_eq(rd_conf_set(&conf, "token_file", path, err), 0);

    auth = rd_auth_create(&conf, err);
    ck_assert_msg(auth != NULL, "%s", err);
    ck_assert_uint_eq(rd_auth_count(auth), 1);

    /* trimmed as common/mesh_token reads it */
    ck_assert_int_eq(check(auth, "s3cret-token", NULL, RD_NEED_WRITE, "a",
                           reason), RD_AUTH_ALLOW);
    ck_assert_int_eq(check(auth, "s3cret-token", NULL, RD_NEED_POLICIES, "",
                           reason), RD_AUTH_ALLOW);
    ck_assert_int_eq(check(auth, "s3cret-token", NULL, RD_NEED_READ, "",
                           reason), RD_AUTH_ALLOW);

    /* reads need it too */
    ck_assert_int_eq(check(auth, NULL, NULL, RD_NEED_READ, "", reason),
                     RD_AUTH_UNAUTHENTICATED);
    ck_assert_ptr_nonnull(strstr(reason, "anonymous_read"));
    ck_assert_int_eq(check(auth, "s3cret-toke", NULL, RD_NEED_READ, "",
                           reason), RD_AUTH_UNAUTHENTICATED);
    ck_assert_int_eq(check(auth, "s3cret-token2", NULL, RD_NEED_READ, "",
                           reason), RD_AUTH_UNAUTHENTICATED);
    ck_assert_str_eq(reason, "wrong bearer token");

    rd_auth_free(auth);
}
END_TEST


START_TEST(auth_refuses_a_file_others_can_read)
{
    char        path[PATH_MAX], err[RD_ERR_LEN] = "";
    rd_auth_t  *auth;

    ck_write_file(dir, "token", "s3cret\n", path, sizeof(path));
    ck_assert_int_eq(rd_conf_set(&conf, "token_file", path, err), 0);

    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_ptr_null(rd_auth_create(&conf, err));
    ck_assert_ptr_nonnull(strstr(err, "mode 0644"));
    ck_assert_ptr_nonnull(strstr(err, "chmod 600"));

    ck_assert_int_eq(chmod(path, 0620), 0);
    ck_assert_ptr_null(rd_auth_create(&conf, err));

    ck_assert_int_eq(chmod(path, 0600), 0);
    auth = rd_auth_create(&conf, err);
    ck_assert_ptr_nonnull(auth);
    rd_auth_free(auth);

    /* the tokens file the same */
    free(conf.token_file);
    conf.token_file = NULL;
    tokens_file(tokens_yaml);
    ck_assert_int_eq(chmod(conf.tokens_file, 0640), 0);
    ck_assert_ptr_null(rd_auth_create(&conf, err));
    ck_assert_ptr_nonnull(strstr(err, "mode 0640"));
}
END_TEST


START_TEST(auth_missing_file_and_both_files_are_errors)
{
    char  path[PATH_MAX], err[RD_ERR_LEN] = "";

    snprintf(path, sizeof(path), "%s/no-token", dir);
    ck_assert_int_eq(rd_conf_set(&conf, "token_file", path, err), 0);
    ck_assert_ptr_null(rd_auth_create(&conf, err));
    ck_assert_ptr_nonnull(strstr(err, path));

    tokens_file(tokens_yaml);
    ck_assert_ptr_null(rd_auth_create(&conf, err));
    ck_assert_ptr_nonnull(strstr(err, "both"));
}
END_TEST


START_TEST(auth_scopes_decide)
{
    char        reason[RD_ERR_LEN], err[RD_ERR_LEN];
    rd_auth_t  *auth;

    tokens_file(tokens_yaml);
    auth = rd_auth_create(&conf, err);
    ck_assert_msg(auth != NULL, "%s", err);
    ck_assert_uint_eq(rd_auth_count(auth), 4);

    /* read only */
    ck_assert_int_eq(check(auth, SECRET_A, NULL, RD_NEED_READ, "", reason),
                     RD_AUTH_ALLOW);
    ck_assert_int_eq(check(auth, SECRET_A, NULL, RD_NEED_WRITE, "orders",
                           reason), RD_AUTH_FORBIDDEN);
    ck_assert_str_eq(reason, "token \"nginx\" lacks scope write:orders "
                     "(it has: read)");
    ck_assert_int_eq(check(auth, SECRET_A, NULL, RD_NEED_POLICIES, "",
                           reason), RD_AUTH_FORBIDDEN);
    ck_assert_ptr_nonnull(strstr(reason, "lacks scope policies"));

    /* write by pattern, and nothing else */
    ck_assert_int_eq(check(auth, SECRET_B, NULL, RD_NEED_WRITE, "orders",
                           reason), RD_AUTH_ALLOW);
    ck_assert_int_eq(check(auth, SECRET_B, NULL, RD_NEED_WRITE, "orders-eu",
                           reason), RD_AUTH_ALLOW);
    ck_assert_int_eq(check(auth, SECRET_B, NULL, RD_NEED_WRITE, "ordersx",
                           reason), RD_AUTH_FORBIDDEN);
    ck_assert_str_eq(reason, "token \"deploy-orders\" lacks scope "
                     "write:ordersx (it has: write:orders, write:orders-*)");
    ck_assert_int_eq(check(auth, SECRET_B, NULL, RD_NEED_WRITE, "payments",
                           reason), RD_AUTH_FORBIDDEN);
    ck_assert_int_eq(check(auth, SECRET_B, NULL, RD_NEED_READ, "", reason),
                     RD_AUTH_FORBIDDEN);
    ck_assert_ptr_nonnull(strstr(reason, "lacks scope read"));

    /* admin: all */
    ck_assert_int_eq(check(auth, SECRET_C, NULL, RD_NEED_WRITE, "any",
                           reason), RD_AUTH_ALLOW);
    ck_assert_int_eq(check(auth, SECRET_C, NULL, RD_NEED_POLICIES, "",
                           reason), RD_AUTH_ALLOW);
    ck_assert_int_eq(check(auth, SECRET_C, NULL, RD_NEED_ADMIN, "",
                           reason), RD_AUTH_ALLOW);
    ck_assert_int_eq(check(auth, SECRET_A, NULL, RD_NEED_ADMIN, "",
                           reason), RD_AUTH_FORBIDDEN);

    /* a certificate subject stands for its token */
    ck_assert_int_eq(check(auth, NULL, "CN=policy-bot,O=example",
                           RD_NEED_POLICIES, "", reason), RD_AUTH_ALLOW);
    ck_assert_int_eq(check(auth, NULL, "CN=policy-bot,O=example",
                           RD_NEED_WRITE, "orders", reason),
                     RD_AUTH_FORBIDDEN);
    ck_assert_int_eq(check(auth, NULL, "CN=other", RD_NEED_READ, "",
                           reason), RD_AUTH_UNAUTHENTICATED);
    ck_assert_ptr_nonnull(strstr(reason, "CN=other"));

    /* a bearer token decides over a certificate; a wrong one is 401 */
    ck_assert_int_eq(check(auth, "nope", "CN=policy-bot,O=example",
                           RD_NEED_READ, "", reason),
                     RD_AUTH_UNAUTHENTICATED);
    ck_assert_int_eq(check(auth, NULL, NULL, RD_NEED_READ, "", reason),
                     RD_AUTH_UNAUTHENTICATED);
    ck_assert_int_eq(check(auth, "", NULL, RD_NEED_READ, "", reason),
                     RD_AUTH_UNAUTHENTICATED);

    rd_auth_free(auth);
}
END_TEST


START_TEST(auth_anonymous_read_lets_reads_only)
{
    char        reason[RD_ERR_LEN], err[RD_ERR_LEN];
    rd_auth_t  *auth;

    tokens_file("anonymous_read: true\n"
                "tokens:\n"
                "  - {name: w, secret: " SECRET_B ", scopes: [\"write:*\"]}\n");
    auth = rd_auth_create(&conf, err);
    ck_assert_msg(auth != NULL, "%s", err);

    ck_assert_int_eq(check(auth, NULL, NULL, RD_NEED_READ, "", reason),
                     RD_AUTH_ALLOW);
    ck_assert_int_eq(check(auth, NULL, NULL, RD_NEED_WRITE, "a", reason),
                     RD_AUTH_UNAUTHENTICATED);
    ck_assert_int_eq(check(auth, NULL, NULL, RD_NEED_POLICIES, "", reason),
                     RD_AUTH_UNAUTHENTICATED);
    ck_assert_int_eq(check(auth, SECRET_B, NULL, RD_NEED_WRITE, "a",
                           reason), RD_AUTH_ALLOW);

    /* a token without read is still refused a read: it said who it is */
    ck_assert_int_eq(check(auth, SECRET_B, NULL, RD_NEED_READ, "", reason),
                     RD_AUTH_FORBIDDEN);

    rd_auth_free(auth);
}
END_TEST


START_TEST(auth_bad_tokens_files_name_file_and_line)
{
    const char  *e;

    e = tokens_error("tokens:\n  - name: a\n    secret: short\n"
                     "    scopes: [read]\n");
    ck_assert_msg(strstr(e, "tokens.yaml:3: a secret has 16") != NULL, "%s",
                  e);

    e = tokens_error("tokens:\n  - name: a\n    secret: " SECRET_A "\n"
                     "    scopes: [read, writ]\n");
    ck_assert_msg(strstr(e, ":4: unknown scope \"writ\"") != NULL, "%s", e);

    e = tokens_error("tokens:\n  - name: a\n    secret: " SECRET_A "\n"
                     "    scopes: [write]\n");
    ck_assert_msg(strstr(e, "write:orders-*") != NULL, "%s", e);

    e = tokens_error("tokens:\n  - name: a\n    secret: " SECRET_A "\n"
                     "    scopes: [\"write:or/ders\"]\n");
    ck_assert_msg(strstr(e, "write: takes a service name") != NULL, "%s", e);

    e = tokens_error("tokens:\n  - name: a\n    scopes: [read]\n");
    ck_assert_msg(strstr(e, "needs a secret or a subject") != NULL, "%s", e);

    e = tokens_error("tokens:\n  - name: a\n    secret: " SECRET_A "\n");
    ck_assert_msg(strstr(e, "has no scopes") != NULL, "%s", e);

    e = tokens_error("tokens:\n  - secret: " SECRET_A "\n    scopes: [read]\n");
    ck_assert_msg(strstr(e, "needs a name") != NULL, "%s", e);

    e = tokens_error("tokens:\n"
                     "  - {name: a, secret: " SECRET_A ", scopes: [read]}\n"
                     "  - {name: a, secret: " SECRET_B ", scopes: [read]}\n");
    ck_assert_msg(strstr(e, ":3: token name \"a\" is used twice") != NULL,
                  "%s", e);

    e = tokens_error("tokens:\n"
                     "  - {name: a, secret: " SECRET_A ", scopes: [read]}\n"
                     "  - {name: b, secret: " SECRET_A ", scopes: [admin]}\n");
    ck_assert_msg(strstr(e, "the secret of another token") != NULL, "%s", e);

    e = tokens_error("tokens:\n  - {name: a, secret: " SECRET_A ", "
                     "scopes: [read], role: x}\n");
    ck_assert_msg(strstr(e, "unknown key \"role\"") != NULL, "%s", e);

    e = tokens_error("anonymous_read: yes please\ntokens: []\n");
    ck_assert_msg(strstr(e, ":1: anonymous_read must be true or false")
                  != NULL, "%s", e);

    e = tokens_error("tokenz: []\n");
    ck_assert_msg(strstr(e, "unknown key \"tokenz\"") != NULL, "%s", e);

    e = tokens_error("tokens: [\n");
    ck_assert_msg(strstr(e, "tokens.yaml:") != NULL, "%s", e);

    e = tokens_error("- read\n");
    ck_assert_msg(strstr(e, "a tokens file is a mapping") != NULL, "%s", e);
}
END_TEST


/* a certificate's subject is compared whole: one longer than registryd
 * keeps could never match, and a cut one could match the wrong token */
START_TEST(auth_subject_longer_than_512_is_refused)
{
    char         text[2048], subj[RD_AUTH_SUBJECT_MAX + 2], err[RD_ERR_LEN];
    rd_auth_t   *auth;
    const char  *e;

    memset(subj, 'x', sizeof(subj) - 1);
    memcpy(subj, "CN=", 3);
    subj[sizeof(subj) - 1] = '\0';

    snprintf(text, sizeof(text), "tokens:\n  - name: long\n"
             "    subject: \"%s\"\n    scopes: [read]\n", subj);
    e = tokens_error(text);
    ck_assert_msg(strstr(e, "tokens.yaml:3: a subject has at most 512 "
                         "characters") != NULL, "%s", e);

    subj[RD_AUTH_SUBJECT_MAX] = '\0';
    snprintf(text, sizeof(text), "tokens:\n  - name: long\n"
             "    subject: \"%s\"\n    scopes: [read]\n", subj);
    tokens_file(text);
    auth = rd_auth_create(&conf, err);
    ck_assert_msg(auth != NULL, "%s", err);
    ck_assert_int_eq(check(auth, NULL, subj, RD_NEED_READ, NULL, err),
                     RD_AUTH_ALLOW);
    rd_auth_free(auth);
}
END_TEST


START_TEST(auth_reload_swaps_or_keeps)
{
    char        reason[RD_ERR_LEN], err[RD_ERR_LEN];
    size_t      n;
    rd_auth_t  *auth;

    tokens_file(tokens_yaml);
    auth = rd_auth_create(&conf, err);
    ck_assert_ptr_nonnull(auth);

    /* rotated: the nginx token has a new secret */
    tokens_file("tokens:\n"
                "  - {name: nginx, secret: " SECRET_A "-2, scopes: [read]}\n");
    ck_assert_int_eq(rd_auth_reload(auth, &n, err), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(check(auth, SECRET_A "-2", NULL, RD_NEED_READ, "",
                           reason), RD_AUTH_ALLOW);
    ck_assert_int_eq(check(auth, SECRET_A, NULL, RD_NEED_READ, "", reason),
                     RD_AUTH_UNAUTHENTICATED);
    ck_assert_int_eq(check(auth, SECRET_C, NULL, RD_NEED_READ, "", reason),
                     RD_AUTH_UNAUTHENTICATED);

    /* a bad file: the set in use stays */
    tokens_file("tokens:\n  - {name: nginx, secret: x, scopes: [read]}\n");
    ck_assert_int_eq(rd_auth_reload(auth, &n, err), -1);
    ck_assert_uint_eq(n, 1);
    ck_assert_ptr_nonnull(strstr(err, "a secret has 16"));
    ck_assert_int_eq(check(auth, SECRET_A "-2", NULL, RD_NEED_READ, "",
                           reason), RD_AUTH_ALLOW);

    /* and a file others can read is refused on reload as at start */
    tokens_file(tokens_yaml);
    ck_assert_int_eq(chmod(conf.tokens_file, 0604), 0);
    ck_assert_int_eq(rd_auth_reload(auth, &n, err), -1);
    ck_assert_int_eq(check(auth, SECRET_A "-2", NULL, RD_NEED_READ, "",
                           reason), RD_AUTH_ALLOW);

    /* no tokens at all: protected mode */
    tokens_file("tokens: []\n");
    ck_assert_int_eq(rd_auth_reload(auth, &n, err), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(check(auth, NULL, NULL, RD_NEED_WRITE, "a", reason),
                     RD_AUTH_OPEN);

    rd_auth_free(auth);
}
END_TEST


Suite *
auth_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("auth");

    tc = tcase_create("tokens");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, auth_without_tokens_is_open);
    tcase_add_test(tc, auth_token_file_is_one_token_with_every_scope);
    tcase_add_test(tc, auth_refuses_a_file_others_can_read);
    tcase_add_test(tc, auth_missing_file_and_both_files_are_errors);
    tcase_add_test(tc, auth_scopes_decide);
    tcase_add_test(tc, auth_anonymous_read_lets_reads_only);
    tcase_add_test(tc, auth_bad_tokens_files_name_file_and_line);
    tcase_add_test(tc, auth_subject_longer_than_512_is_refused);
    tcase_add_test(tc, auth_reload_swaps_or_keeps);
    suite_add_tcase(s, tc);

    return s;
}
