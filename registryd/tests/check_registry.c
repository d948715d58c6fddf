/*
 * check_registry: the in-memory registry, its writer thread, instance
 * validation and TTL health.
 */

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_suites.h"
#include "rd_etcd.h"
#include "rd_registry.h"

static char            dir[PATH_MAX];
static rd_store_t     *store;
static rd_registry_t  *reg;


/* helpers shared with the snapshot suite */

void
ck_waiter_init(ck_waiter_t *w)
{
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->done = 0;
}


void
ck_waiter_free(ck_waiter_t *w)
{
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}


static void
ck_done(rd_op_t *op)
{
    ck_waiter_t  *w = op->data;

    /* runs on the writer; op belongs to the test from here on */
    pthread_mutex_lock(&w->lock);
    w->done++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}


void
ck_submit(rd_registry_t *r, ck_waiter_t *w, rd_op_t *op)
{
    op->done = ck_done;
    op->data = w;
    rd_registry_submit(r, op);
}


void
ck_wait(ck_waiter_t *w, int n)
{
    int              rc = 0;
    struct timespec  until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;

    pthread_mutex_lock(&w->lock);
    while (w->done < n && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&w->cond, &w->lock, &until);
    }
    pthread_mutex_unlock(&w->lock);

    ck_assert_msg(rc != ETIMEDOUT, "writer did not finish %d ops in 10 s", n);
}


rd_registry_t *
ck_reg_open(const char *location, rd_store_t **sp)
{
    char            err[RD_ERR_LEN] = "";
    rd_registry_t  *r;

    *sp = ck_store_open(location);

    r = rd_registry_create(*sp, err);
    ck_assert_msg(r != NULL, "registry: %s", err);

    /* the semantics of one process: it leads, as it would once elected
     * on a shared store (the election has tests of its own) */
    r->leader = 1;

    return r;
}


void
ck_reg_close(rd_registry_t *r, rd_store_t *s)
{
    rd_registry_free(r);
    rd_store_close(s);
}


rd_op_t *
ck_op_put(const char *service, const char *id, const char *body)
{
    char           err[RD_ERR_LEN];
    json_t        *obj;
    rd_op_t       *op;
    const char    *field;
    json_error_t   jerr;

    obj = json_loads(body, 0, &jerr);
    ck_assert_msg(obj != NULL, "bad test JSON %s: %s", body, jerr.text);

    op = rd_op_create(RD_OP_PUT, service, id);
    ck_assert_ptr_nonnull(op);
    op->inst = rd_instance_create();
    ck_assert_ptr_nonnull(op->inst);

    ck_assert_msg(rd_instance_from_json(obj, 0, op->inst, err, &field) == 0,
                  "rejected %s: %s", body, err);
    json_decref(obj);

    return op;
}


int
ck_do(rd_registry_t *r, rd_op_t *op, uint64_t *index)
{
    int          status;
    ck_waiter_t  w;

    ck_waiter_init(&w);
    ck_submit(r, &w, op);
    ck_wait(&w, 1);
    ck_waiter_free(&w);

    status = op->status;
    if (index) {
        *index = op->index;
    }

    rd_op_free(op);
    return status;
}


/* local helpers */

#define BODY  "{\"address\":\"127.0.0.1\",\"port\":8081}"

typedef struct {
    int       found;
    int       port;
    int       health;
    uint64_t  create_index;
    uint64_t  modify_index;
} seen_t;


static seen_t
lookup(const char *service, const char *id)
{
    seen_t          s;
    rd_instance_t  *in;

    memset(&s, 0, sizeof(s));

    pthread_rwlock_rdlock(&reg->lock);
    in = rd_registry_find(reg, service, id);
    if (in) {
        s.found = 1;
        s.port = in->port;
        s.health = in->health;
        s.create_index = in->create_index;
        s.modify_index = in->modify_index;
    }
    pthread_rwlock_unlock(&reg->lock);

    return s;
}


/* move an instance's clocks back by ms (test-only write of memory state) */
static void
age(const char *service, const char *id, int64_t seen_ago,
    int64_t critical_ago)
{
    rd_instance_t  *in;

    pthread_rwlock_wrlock(&reg->lock);
    in = rd_registry_find(reg, service, id);
    ck_assert_ptr_nonnull(in);
    if (seen_ago) {
        __atomic_store_n(&in->last_seen, rd_now_ms() - seen_ago,
                         __ATOMIC_RELAXED);
    }
    if (critical_ago) {
        in->critical_since = rd_now_ms() - critical_ago;
    }
    pthread_rwlock_unlock(&reg->lock);
}


/* a no-op that the writer answers 404: once it is done, every op queued
 * before it has been decided */
static void
sync_writer(void)
{
    ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "sync", "none"),
                           NULL), 404);
}


static void
start(void)
{
    char  err[RD_ERR_LEN] = "";

    ck_assert_msg(rd_registry_start(reg, err) == 0, "%s", err);
}


static void
setup(void)
{
    ck_tmpdir(dir, sizeof(dir));
    reg = ck_reg_open(dir, &store);
}


static void
teardown(void)
{
    ck_reg_close(reg, store);
    reg = NULL;
    store = NULL;
    ck_rmrf(dir);
}


/* reopen: free the registry, close the store, open both again */
static void
reopen(void)
{
    ck_reg_close(reg, store);
    reg = ck_reg_open(dir, &store);
}


/* writer and ops */

START_TEST(registry_create_on_empty_store_has_index_0_and_no_instances)
{
    size_t           n = 99, passing, critical;
    rd_instance_t  **all;

    ck_assert_uint_eq(rd_registry_index(reg), 0);
    ck_assert_uint_eq(reg->count, 0);

    pthread_rwlock_rdlock(&reg->lock);
    all = rd_registry_sorted(reg, &n);
    pthread_rwlock_unlock(&reg->lock);
    ck_assert_ptr_nonnull(all);
    ck_assert_uint_eq(n, 0);
    free(all);

    rd_registry_count_health(reg, &passing, &critical);
    ck_assert_uint_eq(passing, 0);
    ck_assert_uint_eq(critical, 0);
}
END_TEST


START_TEST(registry_put_new_gives_201_and_index_1)
{
    seen_t    s;
    uint64_t  index = 0;

    start();
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o1", BODY), &index),
                     201);
    ck_assert_uint_eq(index, 1);
    ck_assert_uint_eq(rd_registry_index(reg), 1);

    s = lookup("orders", "o1");
    ck_assert_int_eq(s.found, 1);
    ck_assert_int_eq(s.port, 8081);
    ck_assert_int_eq(s.health, RD_HEALTH_PASSING);
    ck_assert_uint_eq(s.create_index, 1);
    ck_assert_uint_eq(s.modify_index, 1);
}
END_TEST


START_TEST(registry_put_answer_body_is_the_stored_instance_with_index)
{
    char          *body;
    json_t        *v;
    rd_op_t       *op;
    ck_waiter_t    w;
    json_error_t   jerr;

    start();
    ck_waiter_init(&w);
    op = ck_op_put("orders", "o1",
                   "{\"address\":\"::1\",\"port\":9,\"weight\":5,"
                   "\"zone\":\"us-east/us-east-1a/rack1\","
                   "\"labels\":{\"v\":\"2\"},\"ttl\":\"10s\"}");
    ck_submit(reg, &w, op);
    ck_wait(&w, 1);

    ck_assert_int_eq(op->status, 201);
    body = mesh_buf_cstr(&op->body);
    v = json_loads(body, 0, &jerr);
    ck_assert_msg(v != NULL, "not JSON: %s (%s)", body, jerr.text);

    ck_assert_str_eq(json_string_value(json_object_get(v, "service")),
                     "orders");
    ck_assert_str_eq(json_string_value(json_object_get(v, "id")), "o1");
    ck_assert_str_eq(json_string_value(json_object_get(v, "address")), "::1");
    ck_assert_int_eq(json_integer_value(json_object_get(v, "port")), 9);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "weight")), 5);
    ck_assert_str_eq(json_string_value(json_object_get(v, "zone")),
                     "us-east/us-east-1a/rack1");
    ck_assert_str_eq(json_string_value(
        json_object_get(json_object_get(v, "labels"), "v")), "2");
    ck_assert_str_eq(json_string_value(json_object_get(v, "ttl")), "10s");
    ck_assert_str_eq(json_string_value(json_object_get(v, "health")),
                     "passing");
    ck_assert_int_eq(json_integer_value(json_object_get(v, "index")), 1);

    json_decref(v);
    rd_op_free(op);
    ck_waiter_free(&w);
}
END_TEST


START_TEST(registry_put_again_gives_200_same_create_higher_modify)
{
    seen_t    s;
    uint64_t  index = 0;

    start();
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o1", BODY), NULL), 201);
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o2", BODY), NULL), 201);
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o1",
                     "{\"address\":\"127.0.0.1\",\"port\":9090}"), &index),
                     200);
    ck_assert_uint_eq(index, 3);

    s = lookup("orders", "o1");
    ck_assert_int_eq(s.found, 1);
    ck_assert_int_eq(s.port, 9090);
    ck_assert_uint_eq(s.create_index, 1);
    ck_assert_uint_eq(s.modify_index, 3);
    ck_assert_uint_gt(s.modify_index, s.create_index);
    ck_assert_uint_eq(reg->count, 2);
}
END_TEST


START_TEST(registry_del_unknown_gives_404_without_index_change)
{
    uint64_t  index = 99;

    start();
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o1", BODY), NULL), 201);
    ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "orders", "o2"),
                           &index), 404);
    ck_assert_uint_eq(index, 1);
    ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "billing", "o1"),
                           NULL), 404);
    ck_assert_uint_eq(rd_registry_index(reg), 1);
    ck_assert_int_eq(lookup("orders", "o1").found, 1);
}
END_TEST


START_TEST(registry_del_known_gives_200_and_removes)
{
    uint64_t  index = 0;

    start();
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o1", BODY), NULL), 201);
    ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "orders", "o1"),
                           &index), 200);
    ck_assert_uint_eq(index, 2);
    ck_assert_uint_eq(rd_registry_index(reg), 2);
    ck_assert_int_eq(lookup("orders", "o1").found, 0);
    ck_assert_uint_eq(reg->count, 0);

    /* deleting it again is a 404 */
    ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "orders", "o1"),
                           NULL), 404);
    ck_assert_uint_eq(rd_registry_index(reg), 2);
}
END_TEST


START_TEST(registry_index_rises_by_one_per_committed_change)
{
    int       i;
    char      id[16];
    uint64_t  index, before;

    start();

    for (i = 0; i < 20; i++) {
        before = rd_registry_index(reg);
        if (i % 5 == 4) {
            /* delete the one put just before */
            snprintf(id, sizeof(id), "i%d", (i - 1) % 7);
            ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "svc", id),
                                   &index), 200);
        } else {
            snprintf(id, sizeof(id), "i%d", i % 7);
            ck_do(reg, ck_op_put("svc", id, BODY), &index);
        }

        ck_assert_uint_eq(rd_registry_index(reg), before + 1);
        ck_assert_uint_eq(index, before + 1);
    }
}
END_TEST


START_TEST(registry_batch_put_del_put_same_key_ends_present)
{
    int          i;
    seen_t       s;
    rd_op_t     *ops[4];
    ck_waiter_t  w;

    ck_waiter_init(&w);

    /* queued before the writer runs: it takes them as one batch */
    ops[0] = ck_op_put("orders", "o1", BODY);
    ops[1] = rd_op_create(RD_OP_DEL, "orders", "o1");
    ops[2] = ck_op_put("orders", "o1",
                       "{\"address\":\"10.0.0.3\",\"port\":3}");
    ops[3] = rd_op_create(RD_OP_DEL, "orders", "zz");
    for (i = 0; i < 4; i++) {
        ck_submit(reg, &w, ops[i]);
    }
    ck_assert_uint_eq(reg->qlen, 4);

    start();
    ck_wait(&w, 4);

    ck_assert_int_eq(ops[0]->status, 201);
    ck_assert_uint_eq(ops[0]->index, 1);
    ck_assert_int_eq(ops[1]->status, 200);
    ck_assert_uint_eq(ops[1]->index, 2);
    ck_assert_int_eq(ops[2]->status, 201);
    ck_assert_uint_eq(ops[2]->index, 3);
    ck_assert_int_eq(ops[3]->status, 404);
    ck_assert_uint_eq(rd_registry_index(reg), 3);

    s = lookup("orders", "o1");
    ck_assert_int_eq(s.found, 1);
    ck_assert_int_eq(s.port, 3);
    ck_assert_uint_eq(s.create_index, 3);
    ck_assert_uint_eq(s.modify_index, 3);
    ck_assert_uint_eq(reg->count, 1);

    for (i = 0; i < 4; i++) {
        rd_op_free(ops[i]);
    }
    ck_waiter_free(&w);

    /* the store agrees */
    reopen();
    ck_assert_uint_eq(rd_registry_index(reg), 3);
    s = lookup("orders", "o1");
    ck_assert_int_eq(s.found, 1);
    ck_assert_int_eq(s.port, 3);
    ck_assert_uint_eq(s.create_index, 3);
    ck_assert_uint_eq(reg->count, 1);
}
END_TEST


START_TEST(registry_batch_put_then_del_same_key_ends_absent)
{
    int          i;
    rd_op_t     *ops[3];
    ck_waiter_t  w;

    ck_waiter_init(&w);

    ops[0] = ck_op_put("orders", "o1", BODY);
    ops[1] = ck_op_put("orders", "o1", BODY);
    ops[2] = rd_op_create(RD_OP_DEL, "orders", "o1");
    for (i = 0; i < 3; i++) {
        ck_submit(reg, &w, ops[i]);
    }

    start();
    ck_wait(&w, 3);

    ck_assert_int_eq(ops[0]->status, 201);
    ck_assert_int_eq(ops[1]->status, 200);
    ck_assert_int_eq(ops[2]->status, 200);
    ck_assert_uint_eq(rd_registry_index(reg), 3);
    ck_assert_int_eq(lookup("orders", "o1").found, 0);
    ck_assert_uint_eq(reg->count, 0);

    for (i = 0; i < 3; i++) {
        rd_op_free(ops[i]);
    }
    ck_waiter_free(&w);

    reopen();
    ck_assert_uint_eq(rd_registry_index(reg), 3);
    ck_assert_uint_eq(reg->count, 0);
}
END_TEST


START_TEST(registry_ops_without_done_are_freed_by_writer)
{
    rd_op_t  *op;

    /* done == NULL: the writer frees the op (ASan checks for leaks) */
    op = ck_op_put("orders", "o1", BODY);
    rd_registry_submit(reg, op);
    rd_registry_submit(reg, rd_op_create(RD_OP_DEL, "orders", "none"));
    start();
    sync_writer();

    ck_assert_uint_eq(rd_registry_index(reg), 1);
    ck_assert_int_eq(lookup("orders", "o1").found, 1);
}
END_TEST


START_TEST(registry_stop_drains_queued_ops)
{
    int          i;
    char         id[16];
    ck_waiter_t  w;
    rd_op_t     *ops[50];

    ck_waiter_init(&w);
    start();

    for (i = 0; i < 50; i++) {
        snprintf(id, sizeof(id), "i%d", i);
        ops[i] = ck_op_put("svc", id, BODY);
        ck_submit(reg, &w, ops[i]);
    }

    rd_registry_stop(reg);
    ck_assert_int_eq(w.done, 50);
    ck_assert_uint_eq(rd_registry_index(reg), 50);

    for (i = 0; i < 50; i++) {
        ck_assert_int_eq(ops[i]->status, 201);
        rd_op_free(ops[i]);
    }
    ck_waiter_free(&w);
}
END_TEST


START_TEST(registry_state_survives_free_and_reopen)
{
    seen_t    s;
    size_t    n;
    rd_instance_t  **all;

    start();
    ck_do(reg, ck_op_put("orders", "o1",
                         "{\"address\":\"10.0.0.1\",\"port\":1,\"weight\":7,"
                         "\"zone\":\"z1\",\"labels\":{\"b\":\"2\",\"a\":\"1\"},"
                         "\"ttl\":\"30s\",\"deregister_after\":\"5m\","
                         "\"check\":{\"http\":\"/health\",\"interval\":"
                         "\"5s\"}}"), NULL);
    ck_do(reg, ck_op_put("orders", "o2", BODY), NULL);
    ck_do(reg, ck_op_put("billing", "b1", BODY), NULL);
    ck_do(reg, ck_op_put("orders", "o1",
                         "{\"address\":\"10.0.0.1\",\"port\":2,\"weight\":7,"
                         "\"zone\":\"z1\",\"labels\":{\"b\":\"2\",\"a\":\"1\"},"
                         "\"ttl\":\"30s\",\"deregister_after\":\"5m\","
                         "\"check\":{\"http\":\"/health\",\"interval\":"
                         "\"5s\"}}"), NULL);
    ck_do(reg, rd_op_create(RD_OP_DEL, "orders", "o2"), NULL);
    ck_assert_uint_eq(rd_registry_index(reg), 5);

    reopen();

    ck_assert_uint_eq(rd_registry_index(reg), 5);
    ck_assert_uint_eq(reg->count, 2);
    ck_assert_int_eq(lookup("orders", "o2").found, 0);
    s = lookup("billing", "b1");
    ck_assert_int_eq(s.found, 1);
    ck_assert_uint_eq(s.create_index, 3);

    pthread_rwlock_rdlock(&reg->lock);
    all = rd_registry_sorted(reg, &n);
    pthread_rwlock_unlock(&reg->lock);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(all[0]->service, "billing");
    ck_assert_str_eq(all[1]->service, "orders");
    ck_assert_str_eq(all[1]->id, "o1");
    ck_assert_str_eq(all[1]->address, "10.0.0.1");
    ck_assert_int_eq(all[1]->port, 2);
    ck_assert_int_eq(all[1]->weight, 7);
    ck_assert_str_eq(all[1]->zone, "z1");
    ck_assert_str_eq(all[1]->labels, "{\"a\":\"1\",\"b\":\"2\"}");
    ck_assert_int_eq(all[1]->ttl, 30000);
    ck_assert_int_eq(all[1]->deregister_after, 300000);
    ck_assert_str_eq(all[1]->check,
                     "{\"http\":\"/health\",\"interval\":\"5s\"}");
    ck_assert_int_eq(all[1]->health, RD_HEALTH_PASSING);
    ck_assert_uint_eq(all[1]->create_index, 1);
    ck_assert_uint_eq(all[1]->modify_index, 4);
    free(all);

    /* and the index goes on from there */
    start();
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o3", BODY), NULL), 201);
    ck_assert_uint_eq(rd_registry_index(reg), 6);
}
END_TEST


START_TEST(registry_load_skips_bad_keys_and_values)
{
    char           err[RD_ERR_LEN];
    rd_store_op_t  ops[5];

    ops[0] = (rd_store_op_t) { 0, "instances/orders/o1", BODY,
                               strlen(BODY) };
    ops[1] = (rd_store_op_t) { 0, "instances/orders/.bad", BODY,
                               strlen(BODY) };
    ops[2] = (rd_store_op_t) { 0, "instances/noslash", BODY, strlen(BODY) };
    ops[3] = (rd_store_op_t) { 0, "instances/orders/o2", "{not json", 9 };
    ops[4] = (rd_store_op_t) { 0, "policies/p1", "{}", 2 };
    ck_assert_int_eq(rd_store_commit(store, ops, 5, 12, NULL, err), 0);

    reopen();
    ck_assert_uint_eq(rd_registry_index(reg), 12);
    ck_assert_uint_eq(reg->count, 1);
    ck_assert_int_eq(lookup("orders", "o1").found, 1);
}
END_TEST


static int  fails_with;         /* the status a failed commit gives */


/*
 * make every store commit fail (on = 1) or work again (on = 0); returns
 * what the error then says. SQLite: a trigger, through a second
 * connection to the same database; etcd: the store is sent to an
 * endpoint where nothing listens, as a config reload would.
 */
static const char *
inject_commit_failure(int on)
{
    char  err[RD_ERR_LEN];

    if (strcmp(ck_backend, "etcd") == 0) {
        fails_with = 503;
        ck_assert_msg(rd_store_etcd_endpoints(store,
                          on ? "http://127.0.0.1:1" : ck_etcd_endpoints(),
                          err) == 0, "%s", err);
        return "127.0.0.1:1";
    }

    char     path[PATH_MAX + 32], *msg = NULL;
    sqlite3  *db;

    fails_with = 500;
    snprintf(path, sizeof(path), "%s/registry.db", dir);
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_msg(sqlite3_exec(db, on
        ? "CREATE TRIGGER fail_index BEFORE UPDATE ON meta "
          "BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
        : "DROP TRIGGER fail_index;", NULL, NULL, &msg) == SQLITE_OK,
        "%s", msg ? msg : "?");
    sqlite3_close(db);

    return "injected failure";
}


START_TEST(registry_commit_failure_gives_5xx_and_changes_nothing)
{
    rd_op_t      *op;
    const char   *says;
    ck_waiter_t   w;

    start();
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o1", BODY), NULL), 201);
    says = inject_commit_failure(1);

    ck_waiter_init(&w);
    op = ck_op_put("orders", "o2", BODY);
    ck_submit(reg, &w, op);
    ck_wait(&w, 1);
    /* a store that fails: 500; one out of reach: 503 */
    ck_assert_int_eq(op->status, fails_with);
    ck_assert_msg(strstr(op->err, says) != NULL, "err: %s", op->err);
    ck_assert_uint_eq(op->body.len, 0);
    rd_op_free(op);
    ck_waiter_free(&w);

    ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "orders", "o1"),
                           NULL), fails_with);
    ck_assert_int_eq(reg->store_ok, 0);
    ck_assert_uint_eq(rd_registry_index(reg), 1);
    ck_assert_int_eq(lookup("orders", "o1").found, 1);
    ck_assert_int_eq(lookup("orders", "o2").found, 0);

    /* the store recovers, and so does the registry */
    inject_commit_failure(0);
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o2", BODY), NULL), 201);
    ck_assert_int_eq(reg->store_ok, 1);
    ck_assert_uint_eq(rd_registry_index(reg), 2);

    reopen();
    ck_assert_uint_eq(rd_registry_index(reg), 2);
    ck_assert_uint_eq(reg->count, 2);
}
END_TEST


/* instance validation */

typedef struct {
    const char  *json;
    const char  *field;         /* NULL: no field reported */
} bad_t;

static const bad_t  bad_instances[] = {
    /* address */
    { "{\"port\":80}", "address" },
    { "{}", "address" },
    { "{\"address\":\"localhost\",\"port\":80}", "address" },
    { "{\"address\":\"1.2.3\",\"port\":80}", "address" },
    { "{\"address\":\"\",\"port\":80}", "address" },
    { "{\"address\":7,\"port\":80}", "address" },
    { "{\"address\":null,\"port\":80}", "address" },
    { "{\"address\":\"127.0.0.1:80\",\"port\":80}", "address" },
    /* port */
    { "{\"address\":\"127.0.0.1\"}", "port" },
    { "{\"address\":\"127.0.0.1\",\"port\":0}", "port" },
    { "{\"address\":\"127.0.0.1\",\"port\":65536}", "port" },
    { "{\"address\":\"127.0.0.1\",\"port\":-1}", "port" },
    { "{\"address\":\"127.0.0.1\",\"port\":\"80\"}", "port" },
    { "{\"address\":\"127.0.0.1\",\"port\":80.5}", "port" },
    { "{\"address\":\"127.0.0.1\",\"port\":true}", "port" },
    /* weight */
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"weight\":0}", "weight" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"weight\":1001}", "weight" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"weight\":\"5\"}", "weight" },
    /* zone */
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"zone\":\"a b\"}", "zone" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"zone\":3}", "zone" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"zone\":\"a/b/c/d\"}",
      "zone" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"zone\":\"a//c\"}", "zone" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"zone\":\"a/*\"}", "zone" },
    /* unknown fields, also the stored-only ones in a request */
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"colour\":\"red\"}",
      "colour" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"health\":\"passing\"}",
      "health" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"create_index\":1}",
      "create_index" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"modify_index\":1}",
      "modify_index" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"service\":\"x\"}",
      "service" },
    /* labels */
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"labels\":[]}", "labels" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"labels\":\"v=1\"}",
      "labels" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"labels\":{\"v\":1}}",
      "labels" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"labels\":{\"v\":null}}",
      "labels" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"labels\":{\"-v\":\"1\"}}",
      "labels" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"labels\":{\"a b\":\"1\"}}",
      "labels" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"labels\":{\"\":\"1\"}}",
      "labels" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,"
      "\"labels\":{\"v\":\"a\\u0000b\"}}", "labels" },
    /* ttl and deregister_after */
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"ttl\":\"10x\"}", "ttl" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"ttl\":10}", "ttl" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"ttl\":\"999ms\"}", "ttl" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"ttl\":\"25h\"}", "ttl" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"ttl\":\"\"}", "ttl" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"deregister_after\":\"0s\"}",
      "deregister_after" },
    /* check */
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"check\":{}}", "check" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,"
      "\"check\":{\"interval\":\"5s\"}}", "check" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"check\":{\"tcp\":false}}",
      "check" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,"
      "\"check\":{\"http\":\"/h\",\"tcp\":true}}", "check" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,"
      "\"check\":{\"http\":\"/h\",\"grpc\":true}}", "check" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"check\":\"/h\"}", "check" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"check\":{\"http\":\"h\"}}",
      "check.http" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"check\":{\"http\":\"/a b\"}}",
      "check.http" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,\"check\":{\"tcp\":\"yes\"}}",
      "check.tcp" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,"
      "\"check\":{\"tcp\":true,\"interval\":\"1ms\"}}", "check.interval" },
    { "{\"address\":\"127.0.0.1\",\"port\":80,"
      "\"check\":{\"tcp\":true,\"timeout\":5}}", "check.timeout" },
    /* not an object */
    { "[]", NULL },
    { "\"x\"", NULL },
};


START_TEST(registry_instance_from_json_rejects_each_bad_field)
{
    char            err[RD_ERR_LEN];
    json_t         *obj;
    const char     *field;
    const bad_t    *b = &bad_instances[_i];
    rd_instance_t  *in;
    json_error_t    jerr;

    obj = json_loads(b->json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    ck_assert_msg(obj != NULL, "bad test JSON %s", b->json);
    in = rd_instance_create();

    err[0] = '\0';
    field = "unset";
    ck_assert_msg(rd_instance_from_json(obj, 0, in, err, &field) == -1,
                  "accepted %s", b->json);
    ck_assert_msg(err[0] != '\0', "no error text for %s", b->json);

    if (b->field == NULL) {
        ck_assert_msg(field == NULL, "%s: field %s", b->json, field);
    } else {
        ck_assert_msg(field != NULL && strcmp(field, b->field) == 0,
                      "%s: field %s, expected %s (%s)", b->json,
                      field ? field : "NULL", b->field, err);
    }

    rd_instance_free(in);
    json_decref(obj);
}
END_TEST


START_TEST(registry_instance_from_json_accepts_full_request)
{
    char            err[RD_ERR_LEN];
    json_t         *obj;
    const char     *field;
    rd_instance_t  *in;

    obj = json_loads("{\"address\":\"2001:db8::1\",\"port\":65535,"
                     "\"weight\":1000,\"zone\":\"eu-1\","
                     "\"labels\":{\"version\":\"v2\",\"app\":\"orders\"},"
                     "\"ttl\":\"24h\",\"deregister_after\":\"1s\","
                     "\"check\":{\"timeout\":\"1s\",\"tcp\":true}}",
                     0, NULL);
    ck_assert_ptr_nonnull(obj);
    in = rd_instance_create();

    ck_assert_msg(rd_instance_from_json(obj, 0, in, err, &field) == 0,
                  "%s", err);
    ck_assert_str_eq(in->address, "2001:db8::1");
    ck_assert_int_eq(in->port, 65535);
    ck_assert_int_eq(in->weight, 1000);
    ck_assert_str_eq(in->zone, "eu-1");
    ck_assert_str_eq(in->labels, "{\"app\":\"orders\",\"version\":\"v2\"}");
    ck_assert_int_eq(in->ttl, 86400000);
    ck_assert_int_eq(in->deregister_after, 1000);
    ck_assert_str_eq(in->check, "{\"tcp\":true,\"timeout\":\"1s\"}");
    ck_assert_int_eq(in->health, RD_HEALTH_PASSING);

    rd_instance_free(in);
    json_decref(obj);
}
END_TEST


START_TEST(registry_instance_from_json_defaults_weight_and_labels)
{
    char            err[RD_ERR_LEN];
    json_t         *obj;
    const char     *field;
    rd_instance_t  *in;

    obj = json_loads("{\"address\":\"127.0.0.1\",\"port\":1,\"zone\":\"\"}",
                     0, NULL);
    in = rd_instance_create();

    ck_assert_int_eq(rd_instance_from_json(obj, 0, in, err, &field), 0);
    ck_assert_int_eq(in->weight, 1);
    ck_assert_str_eq(in->labels, "{}");
    ck_assert_ptr_null(in->zone);
    ck_assert_ptr_null(in->check);
    ck_assert_int_eq(in->ttl, 0);
    ck_assert_int_eq(in->deregister_after, 0);

    rd_instance_free(in);
    json_decref(obj);
}
END_TEST


START_TEST(registry_instance_from_json_stored_accepts_health_and_indexes)
{
    char            err[RD_ERR_LEN];
    json_t         *obj;
    const char     *field;
    rd_instance_t  *in;

    obj = json_loads("{\"service\":\"orders\",\"id\":\"o1\","
                     "\"address\":\"127.0.0.1\",\"port\":80,"
                     "\"health\":\"critical\",\"create_index\":3,"
                     "\"modify_index\":9}", 0, NULL);
    in = rd_instance_create();

    ck_assert_msg(rd_instance_from_json(obj, 1, in, err, &field) == 0,
                  "%s", err);
    ck_assert_int_eq(in->health, RD_HEALTH_CRITICAL);
    ck_assert_uint_eq(in->create_index, 3);
    ck_assert_uint_eq(in->modify_index, 9);

    rd_instance_free(in);
    json_decref(obj);
}
END_TEST


START_TEST(registry_instance_to_json_stored_round_trips)
{
    char            err[RD_ERR_LEN];
    json_t         *obj;
    mesh_buf_t      b;
    const char     *field;
    rd_instance_t  *in, *back;

    obj = json_loads("{\"address\":\"10.0.0.1\",\"port\":80,\"weight\":3,"
                     "\"zone\":\"z\",\"labels\":{\"k\":\"a\\\"b\"},"
                     "\"ttl\":\"1500ms\",\"deregister_after\":\"2m\","
                     "\"check\":{\"http\":\"/h\"}}", 0, NULL);
    in = rd_instance_create();
    ck_assert_int_eq(rd_instance_from_json(obj, 0, in, err, &field), 0);
    json_decref(obj);
    strcpy(in->service, "orders");
    strcpy(in->id, "o1");
    in->health = RD_HEALTH_CRITICAL;
    in->create_index = 4;
    in->modify_index = 8;

    mesh_buf_init(&b, 0);
    rd_instance_to_json(&b, in, RD_JSON_STORED);
    obj = json_loads(mesh_buf_cstr(&b), 0, NULL);
    ck_assert_msg(obj != NULL, "not JSON: %s", b.data);

    back = rd_instance_create();
    ck_assert_msg(rd_instance_from_json(obj, 1, back, err, &field) == 0,
                  "%s", err);
    ck_assert_str_eq(back->address, in->address);
    ck_assert_int_eq(back->port, in->port);
    ck_assert_int_eq(back->weight, in->weight);
    ck_assert_str_eq(back->zone, in->zone);
    ck_assert_str_eq(back->labels, in->labels);
    ck_assert_int_eq(back->ttl, 1500);
    ck_assert_int_eq(back->deregister_after, 120000);
    ck_assert_str_eq(back->check, in->check);
    ck_assert_int_eq(back->health, RD_HEALTH_CRITICAL);
    ck_assert_uint_eq(back->create_index, 4);
    ck_assert_uint_eq(back->modify_index, 8);

    rd_instance_free(back);
    rd_instance_free(in);
    json_decref(obj);
    mesh_buf_free(&b);
}
END_TEST


/* TTL and heartbeats */

START_TEST(registry_heartbeat_unknown_gives_minus_1)
{
    uint64_t  index = 99;

    start();
    ck_assert_int_eq(rd_registry_heartbeat(reg, "orders", "none", &index), -1);
    ck_assert_uint_eq(index, 0);
}
END_TEST


START_TEST(registry_heartbeat_passing_gives_0_and_index)
{
    uint64_t  index = 99;

    start();
    ck_do(reg, ck_op_put("orders", "o1",
                         "{\"address\":\"127.0.0.1\",\"port\":1,"
                         "\"ttl\":\"1s\"}"), NULL);
    ck_assert_int_eq(rd_registry_heartbeat(reg, "orders", "o1", &index), 0);
    ck_assert_uint_eq(index, 1);
}
END_TEST


START_TEST(registry_scan_ttl_expired_turns_critical)
{
    seen_t    s;
    size_t    passing, critical;
    uint64_t  index = 0;

    start();
    ck_do(reg, ck_op_put("orders", "o1",
                         "{\"address\":\"127.0.0.1\",\"port\":1,"
                         "\"ttl\":\"1s\"}"), NULL);
    ck_do(reg, ck_op_put("orders", "o2",
                         "{\"address\":\"127.0.0.1\",\"port\":2,"
                         "\"ttl\":\"1s\"}"), NULL);
    ck_do(reg, ck_op_put("orders", "o3", BODY), NULL);

    /* o1 was last seen 5 s ago; o3 has no ttl, o2 is fresh */
    age("orders", "o1", 5000, 0);
    age("orders", "o3", 5000, 0);
    rd_registry_scan_ttl(reg);
    sync_writer();

    ck_assert_uint_eq(rd_registry_index(reg), 4);
    s = lookup("orders", "o1");
    ck_assert_int_eq(s.health, RD_HEALTH_CRITICAL);
    ck_assert_uint_eq(s.create_index, 1);
    ck_assert_uint_eq(s.modify_index, 4);
    ck_assert_int_eq(lookup("orders", "o2").health, RD_HEALTH_PASSING);
    ck_assert_int_eq(lookup("orders", "o3").health, RD_HEALTH_PASSING);

    rd_registry_count_health(reg, &passing, &critical);
    ck_assert_uint_eq(passing, 2);
    ck_assert_uint_eq(critical, 1);

    /* a heartbeat on a critical instance asks for a health op */
    ck_assert_int_eq(rd_registry_heartbeat(reg, "orders", "o1", &index), 1);
    ck_assert_uint_eq(index, 4);
    ck_assert_int_eq(rd_registry_heartbeat(reg, "orders", "o2", &index), 0);

    /* critical survives a restart */
    reopen();
    ck_assert_int_eq(lookup("orders", "o1").health, RD_HEALTH_CRITICAL);
    ck_assert_uint_eq(rd_registry_index(reg), 4);
}
END_TEST


START_TEST(registry_health_op_passing_restores_critical_instance)
{
    rd_op_t   *op;
    uint64_t   index = 0;

    start();
    ck_do(reg, ck_op_put("orders", "o1",
                         "{\"address\":\"127.0.0.1\",\"port\":1,"
                         "\"ttl\":\"1s\"}"), NULL);
    age("orders", "o1", 5000, 0);
    rd_registry_scan_ttl(reg);
    sync_writer();
    ck_assert_int_eq(lookup("orders", "o1").health, RD_HEALTH_CRITICAL);

    ck_assert_int_eq(rd_registry_heartbeat(reg, "orders", "o1", &index), 1);
    op = rd_op_create(RD_OP_HEALTH, "orders", "o1");
    op->health = RD_HEALTH_PASSING;
    ck_assert_int_eq(ck_do(reg, op, &index), 200);
    ck_assert_uint_eq(index, 3);
    ck_assert_int_eq(lookup("orders", "o1").health, RD_HEALTH_PASSING);
    ck_assert_int_eq(rd_registry_heartbeat(reg, "orders", "o1", &index), 0);

    /* the same again changes nothing */
    op = rd_op_create(RD_OP_HEALTH, "orders", "o1");
    op->health = RD_HEALTH_PASSING;
    ck_assert_int_eq(ck_do(reg, op, &index), 200);
    ck_assert_uint_eq(rd_registry_index(reg), 3);

    /* and for an unknown instance it is a 404 */
    op = rd_op_create(RD_OP_HEALTH, "orders", "none");
    op->health = RD_HEALTH_PASSING;
    ck_assert_int_eq(ck_do(reg, op, NULL), 404);
    ck_assert_uint_eq(rd_registry_index(reg), 3);
}
END_TEST


START_TEST(registry_scan_ttl_fresh_instance_stays_passing)
{
    start();
    ck_do(reg, ck_op_put("orders", "o1",
                         "{\"address\":\"127.0.0.1\",\"port\":1,"
                         "\"ttl\":\"1s\"}"), NULL);
    rd_registry_scan_ttl(reg);
    sync_writer();
    ck_assert_uint_eq(rd_registry_index(reg), 1);
    ck_assert_int_eq(lookup("orders", "o1").health, RD_HEALTH_PASSING);
}
END_TEST


START_TEST(registry_scan_ttl_twice_queues_one_op)
{
    /* instances loaded from the store, writer not yet running */
    start();
    ck_do(reg, ck_op_put("orders", "o1",
                         "{\"address\":\"127.0.0.1\",\"port\":1,"
                         "\"ttl\":\"1s\"}"), NULL);
    reopen();

    age("orders", "o1", 5000, 0);
    rd_registry_scan_ttl(reg);
    rd_registry_scan_ttl(reg);
    ck_assert_uint_eq(reg->qlen, 1);

    start();
    sync_writer();
    ck_assert_uint_eq(rd_registry_index(reg), 2);
    ck_assert_int_eq(lookup("orders", "o1").health, RD_HEALTH_CRITICAL);
}
END_TEST


START_TEST(registry_heartbeat_before_writer_cancels_ttl_transition)
{
    uint64_t  index;

    start();
    ck_do(reg, ck_op_put("orders", "o1",
                         "{\"address\":\"127.0.0.1\",\"port\":1,"
                         "\"ttl\":\"1s\"}"), NULL);
    reopen();

    /* the scan fires, then a heartbeat arrives before the writer runs */
    age("orders", "o1", 5000, 0);
    rd_registry_scan_ttl(reg);
    ck_assert_uint_eq(reg->qlen, 1);
    ck_assert_int_eq(rd_registry_heartbeat(reg, "orders", "o1", &index), 0);

    start();
    sync_writer();
    ck_assert_uint_eq(rd_registry_index(reg), 1);
    ck_assert_int_eq(lookup("orders", "o1").health, RD_HEALTH_PASSING);

    /* and a later expiry is noticed again */
    age("orders", "o1", 5000, 0);
    rd_registry_scan_ttl(reg);
    sync_writer();
    ck_assert_int_eq(lookup("orders", "o1").health, RD_HEALTH_CRITICAL);
    ck_assert_uint_eq(rd_registry_index(reg), 2);
}
END_TEST


START_TEST(registry_scan_ttl_retries_after_failed_commit)
{
    int  pending;

    start();
    ck_do(reg, ck_op_put("orders", "o1",
                         "{\"address\":\"127.0.0.1\",\"port\":1,"
                         "\"ttl\":\"1s\"}"), NULL);

    /* the transition to critical cannot be stored */
    inject_commit_failure(1);
    age("orders", "o1", 5000, 0);
    rd_registry_scan_ttl(reg);
    sync_writer();
    ck_assert_int_eq(lookup("orders", "o1").health, RD_HEALTH_PASSING);
    ck_assert_uint_eq(rd_registry_index(reg), 1);

    /* once the store works again the next scan must try again: the
     * instance is still past its ttl */
    inject_commit_failure(0);
    pthread_rwlock_rdlock(&reg->lock);
    pending = rd_registry_find(reg, "orders", "o1")->pending;
    pthread_rwlock_unlock(&reg->lock);
    rd_registry_scan_ttl(reg);
    sync_writer();
    ck_assert_msg(lookup("orders", "o1").health == RD_HEALTH_CRITICAL,
                  "instance past its ttl stays passing after a failed "
                  "commit: the scan no longer queues it (pending = %d)",
                  pending);
    ck_assert_uint_eq(rd_registry_index(reg), 2);
}
END_TEST


START_TEST(registry_scan_ttl_critical_past_deregister_after_removes)
{
    start();
    ck_do(reg, ck_op_put("orders", "o1",
                         "{\"address\":\"127.0.0.1\",\"port\":1,"
                         "\"ttl\":\"1s\",\"deregister_after\":\"1s\"}"), NULL);
    ck_do(reg, ck_op_put("orders", "o2",
                         "{\"address\":\"127.0.0.1\",\"port\":2,"
                         "\"ttl\":\"1s\"}"), NULL);

    age("orders", "o1", 5000, 0);
    age("orders", "o2", 5000, 0);
    rd_registry_scan_ttl(reg);
    sync_writer();
    ck_assert_int_eq(lookup("orders", "o1").health, RD_HEALTH_CRITICAL);
    ck_assert_uint_eq(rd_registry_index(reg), 4);

    /* just turned critical: not yet removed */
    rd_registry_scan_ttl(reg);
    sync_writer();
    ck_assert_int_eq(lookup("orders", "o1").found, 1);
    ck_assert_uint_eq(rd_registry_index(reg), 4);

    /* critical for 5 s, deregister_after 1 s: removed; o2 has none */
    age("orders", "o1", 0, 5000);
    age("orders", "o2", 0, 5000);
    rd_registry_scan_ttl(reg);
    sync_writer();
    ck_assert_int_eq(lookup("orders", "o1").found, 0);
    ck_assert_int_eq(lookup("orders", "o2").found, 1);
    ck_assert_uint_eq(rd_registry_index(reg), 5);

    reopen();
    ck_assert_int_eq(lookup("orders", "o1").found, 0);
    ck_assert_uint_eq(reg->count, 1);
}
END_TEST


static uint64_t  changed_index;
static int       changed_calls;


static void
on_change(void *data, uint64_t index)
{
    ck_assert_ptr_eq(data, &changed_calls);
    __atomic_store_n(&changed_index, index, __ATOMIC_RELEASE);
    __atomic_add_fetch(&changed_calls, 1, __ATOMIC_ACQ_REL);
}


START_TEST(registry_on_change_runs_per_commit_not_for_404)
{
    changed_index = 0;
    changed_calls = 0;
    reg->on_change = on_change;
    reg->on_change_data = &changed_calls;
    start();

    ck_do(reg, ck_op_put("orders", "o1", BODY), NULL);
    ck_assert_int_eq(changed_calls, 1);
    ck_assert_uint_eq(changed_index, 1);

    ck_do(reg, rd_op_create(RD_OP_DEL, "orders", "none"), NULL);
    ck_assert_int_eq(changed_calls, 1);

    ck_do(reg, rd_op_create(RD_OP_DEL, "orders", "o1"), NULL);
    ck_assert_int_eq(changed_calls, 2);
    ck_assert_uint_eq(changed_index, 2);
}
END_TEST


/* replicas: two registries over one etcd prefix, as two registryd */

static rd_registry_t  *reg2;
static rd_store_t     *store2;
static rd_events_t    *events1, *events2;   /* a reopen() drops reg's */


static void
replica_setup(void)
{
    char  err[RD_ERR_LEN] = "";

    ck_tmpdir(dir, sizeof(dir));
    reg = ck_reg_open(dir, &store);
    events1 = rd_events_create(1000, rd_registry_index(reg));
    reg->events = events1;
    reg2 = ck_reg_open(dir, &store2);
    events2 = rd_events_create(1000, rd_registry_index(reg2));
    reg2->events = events2;
    ck_assert_msg(rd_registry_start(reg, err) == 0, "%s", err);
}


static void
replica_teardown(void)
{
    ck_reg_close(reg, store);
    ck_reg_close(reg2, store2);
    rd_events_free(events1);
    rd_events_free(events2);
    reg = NULL;
    reg2 = NULL;
    ck_rmrf(dir);
}


/* wait (at most 10 s) until r has applied index */
static void
wait_index(rd_registry_t *r, uint64_t index)
{
    int  i;

    for (i = 0; i < 1000 && rd_registry_index(r) < index; i++) {
        usleep(10000);
    }

    ck_assert_uint_eq(rd_registry_index(r), index);
}


static void
event_line(void *data, const rd_event_t *e)
{
    mesh_buf_t  *b = data;

    mesh_buf_printf(b, "%llu %d %s/%s %s\n", (unsigned long long) e->index,
                    e->type, e->service, e->id, e->reason ? e->reason : "-");
}


/* the events of r as lines, for comparing replicas */
static char *
events_of(rd_registry_t *r)
{
    mesh_buf_t  b;

    mesh_buf_init(&b, 1024);
    ck_assert_int_eq(rd_events_since(r->events, 0, UINT64_MAX, event_line,
                                     &b), 0);

    return mesh_buf_cstr(&b);
}


static char *
table_of(rd_registry_t *r)
{
    size_t           i, n;
    mesh_buf_t       b;
    rd_instance_t  **all;

    mesh_buf_init(&b, 1024);
    pthread_rwlock_rdlock(&r->lock);
    all = rd_registry_sorted(r, &n);

    for (i = 0; i < n; i++) {
        mesh_buf_printf(&b, "%s/%s %s:%d w%d h%d c%llu m%llu\n",
                        all[i]->service, all[i]->id, all[i]->address,
                        all[i]->port, all[i]->weight, all[i]->health,
                        (unsigned long long) all[i]->create_index,
                        (unsigned long long) all[i]->modify_index);
    }

    free(all);
    pthread_rwlock_unlock(&r->lock);

    return mesh_buf_cstr(&b);
}


START_TEST(replica_sees_the_other_replicas_commits_with_their_events)
{
    char      err[RD_ERR_LEN] = "", *a, *b;
    uint64_t  index;

    ck_assert_msg(rd_registry_start(reg2, err) == 0, "%s", err);

    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o1", BODY), &index),
                     201);
    ck_assert_uint_eq(index, 1);
    wait_index(reg2, 1);

    pthread_rwlock_rdlock(&reg2->lock);
    ck_assert_ptr_nonnull(rd_registry_find(reg2, "orders", "o1"));
    pthread_rwlock_unlock(&reg2->lock);

    /* the other way, and a delete */
    ck_assert_int_eq(ck_do(reg2, ck_op_put("orders", "o2", BODY), &index),
                     201);
    ck_assert_uint_eq(index, 2);
    ck_assert_int_eq(ck_do(reg2, rd_op_create(RD_OP_DEL, "orders", "o1"),
                           &index), 200);
    ck_assert_uint_eq(index, 3);
    wait_index(reg, 3);

    a = table_of(reg);
    b = table_of(reg2);
    ck_assert_str_eq(a, b);
    ck_assert_ptr_null(strstr(a, "orders/o1 "));
    free(a);
    free(b);

    a = events_of(reg);
    b = events_of(reg2);
    ck_assert_str_eq(a, b);
    ck_assert_ptr_nonnull(strstr(a, "3 2 orders/o1 api"));
    free(a);
    free(b);
}
END_TEST


typedef struct {
    rd_registry_t  *r;
    const char     *prefix;
    int             ok;
} writer_arg_t;


static void *
write_many(void *arg)
{
    int            i;
    char           id[32];
    writer_arg_t  *w = arg;

    for (i = 0; i < 60; i++) {
        snprintf(id, sizeof(id), "%s%d", w->prefix, i);
        int st = ck_do(w->r, ck_op_put("svc", id, BODY), NULL);
        if (st != 201) fprintf(stderr, "DEBUG %s: %d\n", id, st);
        w->ok += (st == 201);
    }

    return NULL;
}


START_TEST(replicas_writing_at_once_end_in_one_state)
{
    char          err[RD_ERR_LEN] = "", *a, *b;
    pthread_t     t1, t2, t3, t4;
    writer_arg_t  w1 = { NULL, "a", 0 }, w2 = { NULL, "b", 0 };
    writer_arg_t  w3 = { NULL, "c", 0 }, w4 = { NULL, "d", 0 };

    ck_assert_msg(rd_registry_start(reg2, err) == 0, "%s", err);

    /* two writers on each replica: their commits race in etcd */
    w1.r = reg;
    w2.r = reg2;
    w3.r = reg;
    w4.r = reg2;
    pthread_create(&t1, NULL, write_many, &w1);
    pthread_create(&t2, NULL, write_many, &w2);
    pthread_create(&t3, NULL, write_many, &w3);
    pthread_create(&t4, NULL, write_many, &w4);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    pthread_join(t3, NULL);
    pthread_join(t4, NULL);

    ck_assert_int_eq(w1.ok + w2.ok + w3.ok + w4.ok, 240);

    wait_index(reg, 240);
    wait_index(reg2, 240);

    a = table_of(reg);
    b = table_of(reg2);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);

    a = events_of(reg);
    b = events_of(reg2);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);

    /* and etcd holds that state: a third replica reads it */
    reopen();
    ck_assert_uint_eq(rd_registry_index(reg), 240);
    ck_assert_uint_eq(reg->count, 240);
}
END_TEST


START_TEST(replica_behind_a_compaction_reads_everything_again)
{
    char       err[RD_ERR_LEN] = "", *a, *b, req[128];
    json_t    *q, *res;
    rd_etcd_t *e;

    /* reg2 loaded at index 0 and does not follow yet */
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o1", BODY), NULL), 201);
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o2", BODY), NULL), 201);
    ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "orders", "o1"),
                           NULL), 200);

    /* the history reg2 would watch from is compacted away */
    e = rd_etcd_create(ck_etcd_endpoints(), "/", 3000, err);
    ck_assert_ptr_nonnull(e);
    q = json_pack("{s:s}", "key", "AA==");
    ck_assert_int_eq(rd_etcd_call(e, "/v3/kv/range", q, &res, err),
                     RD_ETCD_OK);
    snprintf(req, sizeof(req), "{\"revision\":\"%lld\"}",
             (long long) rd_etcd_num(json_object_get(res, "header"),
                                     "revision"));
    json_decref(q);
    json_decref(res);
    q = json_loads(req, 0, NULL);
    ck_assert_msg(rd_etcd_call(e, "/v3/kv/compaction", q, &res, err)
                  == RD_ETCD_OK, "%s", err);
    json_decref(q);
    json_decref(res);
    rd_etcd_free(e);

    ck_assert_msg(rd_registry_start(reg2, err) == 0, "%s", err);
    wait_index(reg2, 3);

    a = table_of(reg);
    b = table_of(reg2);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);

    /* the events before the reload are not known there: said so */
    ck_assert_int_eq(rd_events_since(reg2->events, 0, UINT64_MAX,
                                     event_line, NULL), -1);

    /* and it follows from there on */
    ck_assert_int_eq(ck_do(reg, ck_op_put("orders", "o3", BODY), NULL), 201);
    wait_index(reg2, 4);
}
END_TEST


/* the registry's semantics, the same over every store backend */
static void
registry_writer_tests(TCase *tc)
{
    tcase_add_test(tc,
        registry_create_on_empty_store_has_index_0_and_no_instances);
    tcase_add_test(tc, registry_put_new_gives_201_and_index_1);
    tcase_add_test(tc,
        registry_put_answer_body_is_the_stored_instance_with_index);
    tcase_add_test(tc, registry_put_again_gives_200_same_create_higher_modify);
    tcase_add_test(tc, registry_del_unknown_gives_404_without_index_change);
    tcase_add_test(tc, registry_del_known_gives_200_and_removes);
    tcase_add_test(tc, registry_index_rises_by_one_per_committed_change);
    tcase_add_test(tc, registry_batch_put_del_put_same_key_ends_present);
    tcase_add_test(tc, registry_batch_put_then_del_same_key_ends_absent);
    tcase_add_test(tc, registry_ops_without_done_are_freed_by_writer);
    tcase_add_test(tc, registry_stop_drains_queued_ops);
    tcase_add_test(tc, registry_state_survives_free_and_reopen);
    tcase_add_test(tc, registry_load_skips_bad_keys_and_values);
    tcase_add_test(tc, registry_commit_failure_gives_5xx_and_changes_nothing);
    tcase_add_test(tc, registry_on_change_runs_per_commit_not_for_404);
}


static void
registry_ttl_tests(TCase *tc)
{
    tcase_add_test(tc, registry_heartbeat_unknown_gives_minus_1);
    tcase_add_test(tc, registry_heartbeat_passing_gives_0_and_index);
    tcase_add_test(tc, registry_scan_ttl_expired_turns_critical);
    tcase_add_test(tc, registry_health_op_passing_restores_critical_instance);
    tcase_add_test(tc, registry_scan_ttl_fresh_instance_stays_passing);
    tcase_add_test(tc, registry_scan_ttl_twice_queues_one_op);
    tcase_add_test(tc, registry_heartbeat_before_writer_cancels_ttl_transition);
    tcase_add_test(tc, registry_scan_ttl_retries_after_failed_commit);
    tcase_add_test(tc,
        registry_scan_ttl_critical_past_deregister_after_removes);
}


Suite *
registry_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("registry");

    ck_add_tcases(s, "writer", setup, teardown, registry_writer_tests);

    tc = tcase_create("instance");
    tcase_add_loop_test(tc, registry_instance_from_json_rejects_each_bad_field,
        0, (int) (sizeof(bad_instances) / sizeof(bad_instances[0])));
    tcase_add_test(tc, registry_instance_from_json_accepts_full_request);
    tcase_add_test(tc, registry_instance_from_json_defaults_weight_and_labels);
    tcase_add_test(tc,
        registry_instance_from_json_stored_accepts_health_and_indexes);
    tcase_add_test(tc, registry_instance_to_json_stored_round_trips);
    suite_add_tcase(s, tc);

    ck_add_tcases(s, "ttl", setup, teardown, registry_ttl_tests);

    tc = tcase_create("replicas-etcd");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, ck_use_etcd, ck_use_sqlite);
    tcase_add_checked_fixture(tc, replica_setup, replica_teardown);
    tcase_add_test(tc,
        replica_sees_the_other_replicas_commits_with_their_events);
    tcase_add_test(tc, replicas_writing_at_once_end_in_one_state);
    tcase_add_test(tc, replica_behind_a_compaction_reads_everything_again);
    suite_add_tcase(s, tc);

    return s;
}
