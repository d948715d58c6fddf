/*
 * check_snapshot: the snapshot document, its cache and its gzip form.
 */

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "check_suites.h"
#include "rd_snapshot.h"

static char            dir[PATH_MAX];
static rd_store_t     *store;
static rd_registry_t  *reg;


static void
setup(void)
{
    char  err[RD_ERR_LEN] = "";

    ck_tmpdir(dir, sizeof(dir));
    reg = ck_reg_open(dir, &store);
    ck_assert_msg(rd_registry_start(reg, err) == 0, "%s", err);
}


static void
teardown(void)
{
    ck_reg_close(reg, store);
    ck_rmrf(dir);
}


static void
put(const char *service, const char *id, int port)
{
    char  body[128];

    snprintf(body, sizeof(body),
             "{\"address\":\"10.0.0.%d\",\"port\":%d,\"zone\":\"z%d\","
             "\"labels\":{\"q\":\"say \\\"hi\\\"\"},\"ttl\":\"10s\"}",
             port % 250, port, port);
    ck_assert_int_lt(ck_do(reg, ck_op_put(service, id, body), NULL), 300);
}


static json_t *
parse(const char *data, size_t len)
{
    json_t        *v;
    json_error_t   jerr;

    v = json_loadb(data, len, 0, &jerr);
    ck_assert_msg(v != NULL, "not JSON (%s): %.*s", jerr.text, (int) len,
                  data);
    ck_assert(json_is_object(v));
    return v;
}


START_TEST(snapshot_build_empty_registry_is_valid_json)
{
    json_t    *v;
    mesh_buf_t  b;
    uint64_t   index = 99;

    mesh_buf_init(&b, 0);
    rd_snapshot_build(reg, &b, &index);
    ck_assert_uint_eq(index, 0);

    v = parse(b.data, b.len);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "index")), 0);
    ck_assert(json_is_array(json_object_get(v, "services")));
    ck_assert_uint_eq(json_array_size(json_object_get(v, "services")), 0);
    ck_assert(json_is_array(json_object_get(v, "policies")));

    json_decref(v);
    mesh_buf_free(&b);
}
END_TEST


START_TEST(snapshot_build_sorts_services_by_name_and_instances_by_id)
{
    static const char *const  names[] = { "alpha", "mid", "zeta" };
    static const char *const  ids[3][3] = {
        { "a0", "a1", "a2" }, { "m", NULL, NULL }, { "z-1", "z1", "z10" }
    };
    size_t     i, j;
    json_t    *v, *svcs, *insts, *in;
    mesh_buf_t  b;
    uint64_t   index = 0;

    /* inserted out of order */
    put("zeta", "z10", 1);
    put("alpha", "a2", 2);
    put("mid", "m", 3);
    put("zeta", "z-1", 4);
    put("alpha", "a0", 5);
    put("zeta", "z1", 6);
    put("alpha", "a1", 7);
    put("gone", "g", 8);
    ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "gone", "g"), NULL),
                     200);

    mesh_buf_init(&b, 0);
    rd_snapshot_build(reg, &b, &index);
    ck_assert_uint_eq(index, 9);
    ck_assert_uint_eq(index, rd_registry_index(reg));

    v = parse(b.data, b.len);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "index")), 9);

    svcs = json_object_get(v, "services");
    ck_assert_uint_eq(json_array_size(svcs), 3);

    for (i = 0; i < 3; i++) {
        ck_assert_str_eq(json_string_value(
            json_object_get(json_array_get(svcs, i), "name")), names[i]);
        insts = json_object_get(json_array_get(svcs, i), "instances");

        for (j = 0; j < 3 && ids[i][j]; j++) {
            in = json_array_get(insts, j);
            ck_assert_str_eq(json_string_value(json_object_get(in, "id")),
                             ids[i][j]);
            ck_assert_str_eq(json_string_value(json_object_get(in, "health")),
                             "passing");
            ck_assert(json_is_integer(json_object_get(in, "port")));
            ck_assert(json_is_integer(json_object_get(in, "weight")));
            ck_assert_str_eq(json_string_value(json_object_get(
                json_object_get(in, "labels"), "q")), "say \"hi\"");
            /* the snapshot form leaves out the registration details */
            ck_assert_ptr_null(json_object_get(in, "ttl"));
            ck_assert_ptr_null(json_object_get(in, "service"));
        }
        ck_assert_uint_eq(json_array_size(insts), j);
    }

    in = json_array_get(json_object_get(json_array_get(svcs, 2),
                                        "instances"), 2);
    ck_assert_str_eq(json_string_value(json_object_get(in, "address")),
                     "10.0.0.1");
    ck_assert_int_eq(json_integer_value(json_object_get(in, "port")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(in, "zone")), "z1");

    json_decref(v);
    mesh_buf_free(&b);
}
END_TEST


START_TEST(snapshot_get_same_object_while_index_unchanged)
{
    rd_snapshot_t        *s1, *s2, *s3;
    rd_snapshot_cache_t   c;

    put("orders", "o1", 1);

    rd_snapshot_cache_init(&c, reg);
    s1 = rd_snapshot_get(&c);
    s2 = rd_snapshot_get(&c);
    ck_assert_ptr_nonnull(s1);
    ck_assert_ptr_eq(s1, s2);
    ck_assert_uint_eq(s1->index, 1);
    ck_assert_int_eq(s1->refs, 3);      /* the cache's and two callers' */
    rd_snapshot_release(s2);

    /* a 404 does not change the index, so not the snapshot either */
    ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "orders", "x"),
                           NULL), 404);
    s2 = rd_snapshot_get(&c);
    ck_assert_ptr_eq(s1, s2);
    rd_snapshot_release(s2);

    /* a change gives a new one; the old stays valid for its holder */
    put("orders", "o2", 2);
    s3 = rd_snapshot_get(&c);
    ck_assert_ptr_nonnull(s3);
    ck_assert_ptr_ne(s1, s3);
    ck_assert_uint_eq(s3->index, 2);
    ck_assert_ptr_nonnull(memmem(s3->json, s3->len, "\"o2\"", 4));
    ck_assert_ptr_null(memmem(s1->json, s1->len, "\"o2\"", 4));
    ck_assert_int_eq(s1->refs, 1);

    rd_snapshot_release(s1);
    rd_snapshot_release(s3);
    rd_snapshot_cache_free(&c);
}
END_TEST


START_TEST(snapshot_get_json_matches_build)
{
    json_t               *v;
    mesh_buf_t            b;
    uint64_t              index;
    rd_snapshot_t        *s;
    rd_snapshot_cache_t   c;

    put("orders", "o1", 1);
    put("billing", "b1", 2);

    rd_snapshot_cache_init(&c, reg);
    s = rd_snapshot_get(&c);

    mesh_buf_init(&b, 0);
    rd_snapshot_build(reg, &b, &index);
    ck_assert_uint_eq(s->index, index);
    ck_assert_uint_eq(s->len, b.len);
    ck_assert_int_eq(memcmp(s->json, b.data, b.len), 0);

    v = parse(s->json, s->len);
    json_decref(v);

    mesh_buf_free(&b);
    rd_snapshot_release(s);
    rd_snapshot_cache_free(&c);
}
END_TEST


START_TEST(snapshot_gzip_inflates_back_to_the_json)
{
    int                   i;
    char                 *out;
    size_t                gzlen, gzlen2;
    z_stream              zs;
    const char           *gz, *gz2;
    rd_snapshot_t        *s;
    rd_snapshot_cache_t   c;

    for (i = 0; i < 40; i++) {
        char  id[16];

        snprintf(id, sizeof(id), "i%02d", i);
        put(i % 2 ? "orders" : "billing", id, i + 1);
    }

    rd_snapshot_cache_init(&c, reg);
    s = rd_snapshot_get(&c);

    ck_assert_int_eq(rd_snapshot_gzip(s, &gz, &gzlen), 0);
    ck_assert_ptr_nonnull(gz);
    ck_assert_uint_gt(gzlen, 18);
    ck_assert_uint_lt(gzlen, s->len);
    /* gzip magic */
    ck_assert_int_eq((unsigned char) gz[0], 0x1f);
    ck_assert_int_eq((unsigned char) gz[1], 0x8b);

    out = malloc(s->len + 1);
    ck_assert_ptr_nonnull(out);

    memset(&zs, 0, sizeof(zs));
    ck_assert_int_eq(inflateInit2(&zs, 15 + 16), Z_OK);
    zs.next_in = (Bytef *) gz;
    zs.avail_in = (uInt) gzlen;
    zs.next_out = (Bytef *) out;
    zs.avail_out = (uInt) s->len + 1;
    ck_assert_int_eq(inflate(&zs, Z_FINISH), Z_STREAM_END);
    ck_assert_uint_eq(zs.total_out, s->len);
    ck_assert_uint_eq(zs.avail_in, 0);
    inflateEnd(&zs);

    ck_assert_int_eq(memcmp(out, s->json, s->len), 0);

    /* built once */
    ck_assert_int_eq(rd_snapshot_gzip(s, &gz2, &gzlen2), 0);
    ck_assert_ptr_eq(gz, gz2);
    ck_assert_uint_eq(gzlen, gzlen2);

    free(out);
    rd_snapshot_release(s);
    rd_snapshot_cache_free(&c);
}
END_TEST


START_TEST(snapshot_subscription_sorts_unique_and_refuses_bad_names)
{
    char               err[RD_ERR_LEN] = "";
    rd_subscription_t  sub;

    ck_assert_int_eq(rd_subscription_parse(&sub, "b,a,b,c", err), 0);
    ck_assert_uint_eq(sub.n, 3);
    ck_assert_str_eq(sub.names[0], "a");
    ck_assert_str_eq(sub.names[2], "c");
    ck_assert(rd_subscription_has(&sub, "b"));
    ck_assert(!rd_subscription_has(&sub, "d"));
    rd_subscription_free(&sub);

    ck_assert_int_eq(rd_subscription_parse(&sub, "", err), 0);
    ck_assert_uint_eq(sub.n, 0);
    ck_assert(!rd_subscription_has(&sub, "a"));
    rd_subscription_free(&sub);

    ck_assert_int_eq(rd_subscription_parse(&sub, "a,,b", err), -1);
    ck_assert_int_eq(rd_subscription_parse(&sub, "a,-b", err), -1);
    ck_assert_msg(strstr(err, "-b") != NULL, "%s", err);
    ck_assert_ptr_null(sub.names);
}
END_TEST


START_TEST(snapshot_delta_holds_changes_since_index_only)
{
    char               err[RD_ERR_LEN] = "";
    json_t            *v, *svcs, *svc;
    mesh_buf_t         b;
    uint64_t           index, since;
    rd_events_t       *ev;
    rd_snapshot_ask_t  ask;
    rd_subscription_t  sub;

    ev = rd_events_create(100, rd_registry_index(reg));
    ck_assert_ptr_nonnull(ev);
    reg->events = ev;

    put("alpha", "a1", 1);
    put("alpha", "a2", 2);
    put("beta", "b1", 3);
    since = rd_registry_index(reg);

    put("alpha", "a1", 11);
    ck_assert_int_eq(ck_do(reg, rd_op_create(RD_OP_DEL, "alpha", "a2"), NULL),
                     200);
    put("beta", "b2", 12);

    ck_assert_int_eq(rd_subscription_parse(&sub, "alpha", err), 0);

    memset(&ask, 0, sizeof(rd_snapshot_ask_t));
    ask.sub = &sub;
    ask.delta = 1;
    ask.known = 1;
    ask.since = since;
    ask.registry = rd_registry_id(reg);

    mesh_buf_init(&b, 0);
    ck_assert_int_eq(rd_snapshot_answer(reg, &ask, &b, &index), 1);
    ck_assert_uint_eq(index, since + 3);

    v = parse(b.data, b.len);
    ck_assert(json_is_true(json_object_get(v, "delta")));
    svcs = json_object_get(v, "services");
    ck_assert_uint_eq(json_array_size(svcs), 1);
    svc = json_array_get(svcs, 0);
    ck_assert_str_eq(json_string_value(json_object_get(svc, "name")),
                     "alpha");
    ck_assert_uint_eq(json_array_size(json_object_get(svc, "instances")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(
        json_object_get(svc, "instances"), 0), "port")), 11);
    ck_assert_str_eq(json_string_value(json_array_get(
        json_object_get(svc, "removed"), 0)), "a2");
    ck_assert_ptr_null(json_object_get(v, "policies"));
    json_decref(v);

    /* another registry's index: the whole subscription */
    ask.registry++;
    b.len = 0;
    ck_assert_int_eq(rd_snapshot_answer(reg, &ask, &b, &index), 0);
    v = parse(b.data, b.len);
    ck_assert(json_is_false(json_object_get(v, "delta")));
    ck_assert_uint_eq(json_array_size(json_object_get(v, "services")), 1);
    ck_assert(json_is_array(json_object_get(v, "policies")));
    json_decref(v);

    mesh_buf_free(&b);
    rd_subscription_free(&sub);

    rd_registry_stop(reg);
    reg->events = NULL;
    rd_events_free(ev);
}
END_TEST


Suite *
snapshot_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("snapshot");

    tc = tcase_create("snapshot");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, snapshot_build_empty_registry_is_valid_json);
    tcase_add_test(tc,
        snapshot_build_sorts_services_by_name_and_instances_by_id);
    tcase_add_test(tc, snapshot_get_same_object_while_index_unchanged);
    tcase_add_test(tc, snapshot_get_json_matches_build);
    tcase_add_test(tc, snapshot_gzip_inflates_back_to_the_json);
    tcase_add_test(tc,
                   snapshot_subscription_sorts_unique_and_refuses_bad_names);
    tcase_add_test(tc, snapshot_delta_holds_changes_since_index_only);
    suite_add_tcase(s, tc);

    return s;
}
