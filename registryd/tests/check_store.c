/*
 * check_store: the store interface, over each backend (SQLite, etcd),
 * and what is particular to each.
 */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check_suites.h"
#include "rd_store.h"

#define NKEYS  16

static char  dir[PATH_MAX];

typedef struct {
    size_t  n;
    char   *keys[NKEYS];
    char   *values[NKEYS];
    int     stop_at;            /* >0: fail on the nth key */
} loaded_t;


static void
setup(void)
{
    ck_tmpdir(dir, sizeof(dir));
}


static void
teardown(void)
{
    ck_rmrf(dir);
}


static int
collect(void *data, const char *key, const char *value, size_t len,
    char *err)
{
    loaded_t  *l = data;

    if (l->stop_at && (int) l->n + 1 == l->stop_at) {
        snprintf(err, RD_ERR_LEN, "stopped at %s", key);
        return -1;
    }

    ck_assert_uint_lt(l->n, NKEYS);
    ck_assert_uint_eq(strlen(value), len);
    l->keys[l->n] = strdup(key);
    l->values[l->n] = strndup(value, len);
    l->n++;
    return 0;
}


static void
loaded_free(loaded_t *l)
{
    size_t  i;

    for (i = 0; i < l->n; i++) {
        free(l->keys[i]);
        free(l->values[i]);
    }

    l->n = 0;
}


static rd_store_t *
open_store(const char *location)
{
    return ck_store_open(location);
}


static void
put(rd_store_op_t *op, const char *key, const char *value)
{
    op->del = 0;
    op->key = key;
    op->value = value;
    op->value_len = strlen(value);
}


static void
del(rd_store_op_t *op, const char *key)
{
    op->del = 1;
    op->key = key;
    op->value = NULL;
    op->value_len = 0;
}


START_TEST(store_open_sqlite_creates_nested_dir_and_db)
{
    char          path[PATH_MAX + 64], err[RD_ERR_LEN];
    uint64_t      index = 99;
    loaded_t      l = { 0 };
    struct stat   st;
    rd_store_t   *s;

    snprintf(path, sizeof(path), "%s/a/b/data", dir);
    s = open_store(path);

    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    snprintf(path, sizeof(path), "%s/a/b/data/registry.db", dir);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));

    ck_assert_int_eq(rd_store_check(s, err), 0);
    ck_assert_int_eq(rd_store_load(s, collect, &l, &index, err), 0);
    ck_assert_uint_eq(index, 0);
    ck_assert_uint_eq(l.n, 0);

    rd_store_close(s);
}
END_TEST


START_TEST(store_open_unknown_backend_fails_with_message)
{
    char         err[RD_ERR_LEN] = "";
    rd_store_t  *s;

    rd_store_conf_t  sc;

    ck_store_conf(&sc, dir);
    sc.backend = "nosuch";

    s = rd_store_open(&sc, err);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(err, "unknown store backend"));
    ck_assert_ptr_nonnull(strstr(err, "\"nosuch\""));
}
END_TEST


START_TEST(store_open_under_a_file_fails_with_message)
{
    char         path[PATH_MAX + 64], file[PATH_MAX], err[RD_ERR_LEN] = "";
    rd_store_t  *s;

    ck_write_file(dir, "plain", "x", file, sizeof(file));
    snprintf(path, sizeof(path), "%s/data", file);

    rd_store_conf_t  sc;

    ck_store_conf(&sc, path);
    s = rd_store_open(&sc, err);
    ck_assert_ptr_null(s);
    ck_assert_msg(err[0] != '\0', "no error text");
}
END_TEST


START_TEST(store_commit_then_reopen_load_finds_values_and_index)
{
    char           err[RD_ERR_LEN];
    uint64_t       index = 0;
    loaded_t       l = { 0 };
    rd_store_t    *s;
    rd_store_op_t  ops[4];

    s = open_store(dir);

    put(&ops[0], "instances/orders/o2", "{\"port\":2}");
    put(&ops[1], "instances/orders/o1", "{\"port\":1}");
    put(&ops[2], "instances/auth/a1", "{\"port\":3}");
    put(&ops[3], "policies/p", "{}");
    ck_assert_int_eq(rd_store_commit(s, ops, 4, 4, NULL, err), 0);

    /* replace one, delete one, delete one that never was */
    put(&ops[0], "instances/orders/o1", "{\"port\":11}");
    del(&ops[1], "instances/orders/o2");
    del(&ops[2], "instances/none/x");
    ck_assert_int_eq(rd_store_commit(s, ops, 3, 7, NULL, err), 0);

    rd_store_close(s);

    s = open_store(dir);
    ck_assert_int_eq(rd_store_load(s, collect, &l, &index, err), 0);
    ck_assert_uint_eq(index, 7);

    /* exactly the committed keys, in key order */
    ck_assert_uint_eq(l.n, 3);
    ck_assert_str_eq(l.keys[0], "instances/auth/a1");
    ck_assert_str_eq(l.values[0], "{\"port\":3}");
    ck_assert_str_eq(l.keys[1], "instances/orders/o1");
    ck_assert_str_eq(l.values[1], "{\"port\":11}");
    ck_assert_str_eq(l.keys[2], "policies/p");
    ck_assert_str_eq(l.values[2], "{}");

    loaded_free(&l);
    rd_store_close(s);
}
END_TEST


START_TEST(store_commit_same_key_twice_in_batch_keeps_last)
{
    char           err[RD_ERR_LEN];
    uint64_t       index = 0;
    loaded_t       l = { 0 };
    rd_store_t    *s;
    rd_store_op_t  ops[4];

    s = open_store(dir);

    put(&ops[0], "k", "1");
    del(&ops[1], "k");
    put(&ops[2], "k", "3");
    put(&ops[3], "gone", "x");
    ck_assert_int_eq(rd_store_commit(s, ops, 4, 1, NULL, err), 0);

    del(&ops[0], "gone");
    ck_assert_int_eq(rd_store_commit(s, ops, 1, 2, NULL, err), 0);

    ck_assert_int_eq(rd_store_load(s, collect, &l, &index, err), 0);
    ck_assert_uint_eq(index, 2);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_str_eq(l.keys[0], "k");
    ck_assert_str_eq(l.values[0], "3");

    loaded_free(&l);
    rd_store_close(s);
}
END_TEST


START_TEST(store_commit_value_len_bounds_the_value)
{
    char           err[RD_ERR_LEN];
    uint64_t       index = 0;
    loaded_t       l = { 0 };
    rd_store_t    *s;
    rd_store_op_t  op;

    s = open_store(dir);

    op.del = 0;
    op.key = "k";
    op.value = "{\"a\":1}garbage";
    op.value_len = 7;
    ck_assert_int_eq(rd_store_commit(s, &op, 1, 1, NULL, err), 0);

    ck_assert_int_eq(rd_store_load(s, collect, &l, &index, err), 0);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_str_eq(l.values[0], "{\"a\":1}");

    loaded_free(&l);
    rd_store_close(s);
}
END_TEST


START_TEST(store_commit_empty_batch_moves_index)
{
    char         err[RD_ERR_LEN];
    uint64_t     index = 0;
    loaded_t     l = { 0 };
    rd_store_t  *s;

    s = open_store(dir);
    ck_assert_int_eq(rd_store_commit(s, NULL, 0, 42, NULL, err), 0);
    rd_store_close(s);

    s = open_store(dir);
    ck_assert_int_eq(rd_store_load(s, collect, &l, &index, err), 0);
    ck_assert_uint_eq(index, 42);
    ck_assert_uint_eq(l.n, 0);
    rd_store_close(s);
}
END_TEST


START_TEST(store_load_callback_error_stops_and_reports)
{
    char           err[RD_ERR_LEN] = "";
    uint64_t       index = 0;
    loaded_t       l = { 0 };
    rd_store_t    *s;
    rd_store_op_t  ops[3];

    s = open_store(dir);
    put(&ops[0], "a", "1");
    put(&ops[1], "b", "2");
    put(&ops[2], "c", "3");
    ck_assert_int_eq(rd_store_commit(s, ops, 3, 3, NULL, err), 0);

    l.stop_at = 2;
    ck_assert_int_eq(rd_store_load(s, collect, &l, &index, err), -1);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_str_eq(err, "stopped at b");

    loaded_free(&l);
    rd_store_close(s);
}
END_TEST


START_TEST(store_close_null_is_harmless)
{
    rd_store_close(NULL);
}
END_TEST


/* etcd: what a store shared by several replicas must do */

static int
count_keys(void *data, const char *key, const char *value, size_t len,
    char *err)
{
    size_t  *n = data;
    char     want[32];

    (void) value;
    (void) len;

    snprintf(want, sizeof(want), "k%05zu", *n);

    if (strcmp(key, want) != 0) {
        snprintf(err, RD_ERR_LEN, "key %s where %s was due", key, want);
        return -1;
    }

    (*n)++;
    return 0;
}


START_TEST(store_etcd_replicas_share_the_id)
{
    rd_store_t  *a, *b;

    a = open_store(dir);
    b = open_store(dir);
    ck_assert_uint_ne(a->id, 0);
    ck_assert_uint_eq(a->id, b->id);
    rd_store_close(a);
    rd_store_close(b);
}
END_TEST


START_TEST(store_etcd_commit_behind_another_replica_is_a_conflict)
{
    char           err[RD_ERR_LEN] = "";
    uint64_t       index = 0;
    loaded_t       l = { 0 };
    rd_store_t    *a, *b;
    rd_store_op_t  op;

    a = open_store(dir);
    b = open_store(dir);
    ck_assert_int_eq(rd_store_load(a, collect, &l, &index, err), 0);
    ck_assert_int_eq(rd_store_load(b, collect, &l, &index, err), 0);
    ck_assert_uint_eq(l.n, 0);

    put(&op, "instances/s/x", "{\"a\":1}");
    ck_assert_int_eq(rd_store_commit(a, &op, 1, 1, NULL, err), 0);

    /* b decided on index 0: refused, and nothing of it is stored */
    put(&op, "instances/s/y", "{\"b\":1}");
    ck_assert_int_eq(rd_store_commit(b, &op, 1, 1, NULL, err),
                     RD_STORE_CONFLICT);
    ck_assert_ptr_nonnull(strstr(err, "moved on"));

    /* once it has read what a wrote, b commits */
    ck_assert_int_eq(rd_store_load(b, collect, &l, &index, err), 0);
    ck_assert_uint_eq(index, 1);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_str_eq(l.keys[0], "instances/s/x");
    loaded_free(&l);

    ck_assert_int_eq(rd_store_commit(b, &op, 1, 2, NULL, err), 0);

    /* and now a is the one behind */
    put(&op, "instances/s/z", "{}");
    ck_assert_int_eq(rd_store_commit(a, &op, 1, 2, NULL, err),
                     RD_STORE_CONFLICT);

    ck_assert_int_eq(rd_store_load(a, collect, &l, &index, err), 0);
    ck_assert_uint_eq(index, 2);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(l.keys[1], "instances/s/y");

    loaded_free(&l);
    rd_store_close(a);
    rd_store_close(b);
}
END_TEST


START_TEST(store_etcd_unreachable_endpoint_is_named)
{
    char              err[RD_ERR_LEN] = "";
    rd_store_t       *s;
    rd_store_conf_t   sc;

    ck_store_conf(&sc, dir);
    sc.etcd_endpoints = "http://127.0.0.1:1";

    s = rd_store_open(&sc, err);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err, "store etcd") != NULL
                  && strstr(err, "127.0.0.1:1") != NULL, "err: %s", err);
}
END_TEST


START_TEST(store_etcd_moves_on_to_the_next_endpoint)
{
    char              err[RD_ERR_LEN] = "", list[512];
    uint64_t          index = 0;
    loaded_t          l = { 0 };
    rd_store_t       *s;
    rd_store_op_t     op;
    rd_store_conf_t   sc;

    ck_store_conf(&sc, dir);
    snprintf(list, sizeof(list), "http://127.0.0.1:1,%s",
             ck_etcd_endpoints());
    sc.etcd_endpoints = list;

    s = rd_store_open(&sc, err);
    ck_assert_msg(s != NULL, "open: %s", err);

    put(&op, "instances/s/x", "{}");
    ck_assert_int_eq(rd_store_commit(s, &op, 1, 1, NULL, err), 0);
    ck_assert_int_eq(rd_store_load(s, collect, &l, &index, err), 0);
    ck_assert_uint_eq(index, 1);
    ck_assert_uint_eq(l.n, 1);

    loaded_free(&l);
    rd_store_close(s);
}
END_TEST


START_TEST(store_etcd_batches_fit_a_transaction_and_load_reads_every_page)
{
    char            err[RD_ERR_LEN] = "", keys[2500][8];
    size_t          i, k, n;
    uint64_t        index = 0;
    rd_store_t     *s;
    rd_store_op_t   ops[126];

    s = open_store(dir);

    /* etcd_max_txn_ops 128: the index and the writer's key take two */
    ck_assert_uint_eq(s->batch_max, 126);

    for (i = 0; i < 2500; i += k) {
        for (k = 0; k < 100 && i + k < 2500; k++) {
            snprintf(keys[i + k], sizeof(keys[0]), "k%05zu", i + k);
            put(&ops[k], keys[i + k], "{}");
        }

        ck_assert_int_eq(rd_store_commit(s, ops, k, i / 100 + 1, NULL,
                                         err), 0);
    }

    rd_store_close(s);

    /* more keys than one page of a range */
    s = open_store(dir);
    n = 0;
    ck_assert_msg(rd_store_load(s, count_keys, &n, &index, err) == 0,
                  "load: %s", err);
    ck_assert_uint_eq(n, 2500);
    ck_assert_uint_eq(index, 25);
    rd_store_close(s);
}
END_TEST


static void
store_tests(TCase *tc)
{
    tcase_add_test(tc, store_commit_then_reopen_load_finds_values_and_index);
    tcase_add_test(tc, store_commit_same_key_twice_in_batch_keeps_last);
    tcase_add_test(tc, store_commit_value_len_bounds_the_value);
    tcase_add_test(tc, store_commit_empty_batch_moves_index);
    tcase_add_test(tc, store_load_callback_error_stops_and_reports);
    tcase_add_test(tc, store_open_unknown_backend_fails_with_message);
    tcase_add_test(tc, store_close_null_is_harmless);
}


Suite *
store_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("store");

    ck_add_tcases(s, "store", setup, teardown, store_tests);

    tc = tcase_create("sqlite");
    tcase_add_checked_fixture(tc, ck_use_sqlite, NULL);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, store_open_sqlite_creates_nested_dir_and_db);
    tcase_add_test(tc, store_open_under_a_file_fails_with_message);
    suite_add_tcase(s, tc);

    tc = tcase_create("etcd");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, ck_use_etcd, ck_use_sqlite);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, store_etcd_replicas_share_the_id);
    tcase_add_test(tc, store_etcd_commit_behind_another_replica_is_a_conflict);
    tcase_add_test(tc, store_etcd_unreachable_endpoint_is_named);
    tcase_add_test(tc, store_etcd_moves_on_to_the_next_endpoint);
    tcase_add_test(tc,
        store_etcd_batches_fit_a_transaction_and_load_reads_every_page);
    suite_add_tcase(s, tc);

    return s;
}
