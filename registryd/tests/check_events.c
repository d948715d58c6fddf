/*
 * check_events: the event ring, its JSON and SSE forms, and the events
 * the writer records for each kind of change.
 */

#include <stdio.h>
#include <string.h>

#include "check_suites.h"
#include "rd_events.h"


static void
ck_event(rd_events_t *ev, uint64_t index, int type, const char *service,
    const char *id, const char *reason)
{
    rd_event_t  e;

    memset(&e, 0, sizeof(e));
    e.index = index;
    e.time = 1795635601123LL;       /* 2026-11-25T19:40:01.123Z */
    e.type = type;
    e.reason = reason;
    snprintf(e.service, sizeof(e.service), "%s", service);
    snprintf(e.id, sizeof(e.id), "%s", id);

    rd_events_append(ev, &e);
}


static char *
ck_render(rd_events_t *ev, uint64_t after, size_t max, int format,
    mesh_buf_t *b, size_t *count, uint64_t *upto, int *truncated)
{
    b->len = 0;
    *count = rd_events_render(ev, after, max, format, b, upto, truncated);
    return mesh_buf_cstr(b);
}


START_TEST(events_json_has_every_field)
{
    char         *t;
    size_t        n;
    mesh_buf_t    b;
    uint64_t      upto;
    rd_events_t  *ev;

    ev = rd_events_create(16, 0);
    ck_assert_ptr_nonnull(ev);
    mesh_buf_init(&b, 0);

    ck_event(ev, 1, RD_EV_REGISTERED, "orders", "o1", NULL);
    ck_event(ev, 2, RD_EV_CRITICAL, "orders", "o1", "ttl");
    ck_event(ev, 3, RD_EV_POLICY_APPLIED, "", "orders", NULL);

    t = ck_render(ev, 0, 0, RD_EVENTS_JSON, &b, &n, &upto, NULL);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(upto, 3);
    ck_assert_str_eq(t,
        "{\"index\":1,\"time\":\"2026-11-25T19:40:01.123Z\","
        "\"type\":\"registered\",\"service\":\"orders\",\"id\":\"o1\"},"
        "{\"index\":2,\"time\":\"2026-11-25T19:40:01.123Z\","
        "\"type\":\"critical\",\"service\":\"orders\",\"id\":\"o1\","
        "\"reason\":\"ttl\"},"
        "{\"index\":3,\"time\":\"2026-11-25T19:40:01.123Z\","
        "\"type\":\"policy_applied\",\"policy\":\"orders\"}");

    mesh_buf_free(&b);
    rd_events_free(ev);
}
END_TEST


START_TEST(events_render_after_index_and_max)
{
    char         *t;
    size_t        n;
    mesh_buf_t    b;
    uint64_t      upto, i;
    rd_events_t  *ev;
    int           truncated;

    ev = rd_events_create(100, 0);
    mesh_buf_init(&b, 0);

    /* indexes need not be contiguous */
    for (i = 1; i <= 10; i++) {
        ck_event(ev, i * 2, RD_EV_UPDATED, "s", "a", NULL);
    }

    ck_assert_uint_eq(rd_events_last(ev), 20);

    t = ck_render(ev, 7, 0, RD_EVENTS_JSON, &b, &n, &upto, &truncated);
    ck_assert_uint_eq(n, 7);
    ck_assert_uint_eq(upto, 20);
    ck_assert_int_eq(truncated, 0);
    ck_assert_msg(strncmp(t, "{\"index\":8,", 11) == 0, "%s", t);

    t = ck_render(ev, 7, 2, RD_EVENTS_JSON, &b, &n, &upto, &truncated);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(upto, 10);

    /* nothing newer: upto is the newest known */
    t = ck_render(ev, 20, 0, RD_EVENTS_JSON, &b, &n, &upto, &truncated);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(upto, 20);
    ck_assert_str_eq(t, "");

    t = ck_render(ev, 99, 0, RD_EVENTS_JSON, &b, &n, &upto, &truncated);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(truncated, 0);

    mesh_buf_free(&b);
    rd_events_free(ev);
}
END_TEST


START_TEST(events_ring_drops_oldest_and_says_truncated)
{
    char         *t;
    size_t        n;
    mesh_buf_t    b;
    uint64_t      upto, i;
    rd_events_t  *ev;
    int           truncated;

    ev = rd_events_create(5, 0);
    mesh_buf_init(&b, 0);

    for (i = 1; i <= 12; i++) {
        ck_event(ev, i, RD_EV_REGISTERED, "s", "a", NULL);
    }

    /* kept: 8..12 */
    t = ck_render(ev, 0, 0, RD_EVENTS_JSON, &b, &n, &upto, &truncated);
    ck_assert_uint_eq(n, 5);
    ck_assert_int_eq(truncated, 1);
    ck_assert_msg(strncmp(t, "{\"index\":8,", 11) == 0, "%s", t);

    ck_render(ev, 6, 0, RD_EVENTS_JSON, &b, &n, &upto, &truncated);
    ck_assert_uint_eq(n, 5);
    ck_assert_int_eq(truncated, 1);

    /* 7 was the last dropped: after 7 nothing is missing */
    ck_render(ev, 7, 0, RD_EVENTS_JSON, &b, &n, &upto, &truncated);
    ck_assert_uint_eq(n, 5);
    ck_assert_int_eq(truncated, 0);

    ck_render(ev, 10, 0, RD_EVENTS_JSON, &b, &n, &upto, &truncated);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(truncated, 0);

    mesh_buf_free(&b);
    rd_events_free(ev);
}
END_TEST


START_TEST(events_start_index_is_not_kept)
{
    size_t        n;
    mesh_buf_t    b;
    uint64_t      upto;
    rd_events_t  *ev;
    int           truncated;

    /* a restart at index 40: changes up to 40 are not in the ring */
    ev = rd_events_create(10, 40);
    mesh_buf_init(&b, 0);

    ck_assert_uint_eq(rd_events_last(ev), 40);

    ck_render(ev, 0, 0, RD_EVENTS_JSON, &b, &n, &upto, &truncated);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(upto, 40);
    ck_assert_int_eq(truncated, 1);

    ck_render(ev, 40, 0, RD_EVENTS_JSON, &b, &n, &upto, &truncated);
    ck_assert_int_eq(truncated, 0);

    ck_event(ev, 41, RD_EV_DEREGISTERED, "s", "a", "api");
    ck_render(ev, 40, 0, RD_EVENTS_JSON, &b, &n, &upto, &truncated);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(upto, 41);

    mesh_buf_free(&b);
    rd_events_free(ev);
}
END_TEST


START_TEST(events_sse_frames_one_event_each)
{
    char         *t;
    size_t        n;
    mesh_buf_t    b;
    uint64_t      upto;
    rd_events_t  *ev;

    ev = rd_events_create(4, 0);
    mesh_buf_init(&b, 0);

    ck_event(ev, 5, RD_EV_PASSING, "s", "a", "heartbeat");
    ck_event(ev, 6, RD_EV_POLICY_DELETED, "", "p", NULL);

    t = ck_render(ev, 0, 0, RD_EVENTS_SSE, &b, &n, &upto, NULL);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(t,
        "id: 5\nevent: passing\ndata: {\"index\":5,"
        "\"time\":\"2026-11-25T19:40:01.123Z\",\"type\":\"passing\","
        "\"service\":\"s\",\"id\":\"a\",\"reason\":\"heartbeat\"}\n\n"
        "id: 6\nevent: policy_deleted\ndata: {\"index\":6,"
        "\"time\":\"2026-11-25T19:40:01.123Z\",\"type\":\"policy_deleted\","
        "\"policy\":\"p\"}\n\n");

    mesh_buf_free(&b);
    rd_events_free(ev);
}
END_TEST


START_TEST(events_time_zero_means_now)
{
    rd_events_t  *ev;
    rd_event_t    e;
    int64_t       before;

    ev = rd_events_create(1, 0);
    memset(&e, 0, sizeof(e));
    e.index = 1;

    before = rd_wall_ms();
    rd_events_append(ev, &e);

    ck_assert_int_ge(ev->ring[0].time, before);
    ck_assert_int_le(ev->ring[0].time, rd_wall_ms());

    rd_events_free(ev);
}
END_TEST


START_TEST(events_registry_records_each_change)
{
    int             status;
    char            dir[4096], err[RD_ERR_LEN], *t;
    size_t          n;
    mesh_buf_t      b;
    uint64_t        index, upto;
    rd_op_t        *op;
    rd_store_t     *store;
    rd_events_t    *ev;
    rd_policy_t    *p;
    rd_registry_t  *reg;
    rd_policy_err_t perr;
    const char     *yaml = "apiVersion: networking.istio.io/v1beta1\n"
                           "kind: DestinationRule\nmetadata:\n  name: s\n"
                           "spec:\n  host: s\n";

    ck_tmpdir(dir, sizeof(dir));
    reg = ck_reg_open(dir, &store);
    ev = rd_events_create(100, rd_registry_index(reg));
    ck_assert_ptr_nonnull(ev);
    reg->events = ev;
    ck_assert_int_eq(rd_registry_start(reg, err), 0);

    status = ck_do(reg, ck_op_put("s", "a", "{\"address\": \"127.0.0.1\","
                                  " \"port\": 80}"), &index);
    ck_assert_int_eq(status, 201);
    status = ck_do(reg, ck_op_put("s", "a", "{\"address\": \"127.0.0.1\","
                                  " \"port\": 81}"), &index);
    ck_assert_int_eq(status, 200);

    /* as the TTL scan queues it: with the last heartbeat it saw */
    op = rd_op_create(RD_OP_HEALTH, "s", "a");
    op->health = RD_HEALTH_CRITICAL;
    op->internal = 1;
    op->reason = "ttl";
    pthread_rwlock_rdlock(&reg->lock);
    op->seen = rd_registry_find(reg, "s", "a")->last_seen;
    pthread_rwlock_unlock(&reg->lock);
    ck_assert_int_eq(ck_do(reg, op, &index), 200);

    op = rd_op_create(RD_OP_HEALTH, "s", "a");
    op->health = RD_HEALTH_PASSING;
    op->reason = "heartbeat";
    ck_assert_int_eq(ck_do(reg, op, &index), 200);

    p = rd_policy_parse("p1", yaml, strlen(yaml), &perr);
    ck_assert_msg(p != NULL, "%s", perr.msg);
    op = rd_op_create(RD_OP_POLICY_PUT, "", "p1");
    op->policy = p;
    ck_assert_int_eq(ck_do(reg, op, &index), 201);

    op = rd_op_create(RD_OP_POLICY_DEL, "", "p1");
    ck_assert_int_eq(ck_do(reg, op, &index), 200);

    op = rd_op_create(RD_OP_DEL, "s", "a");
    op->reason = "api";
    ck_assert_int_eq(ck_do(reg, op, &index), 200);

    /* refused and no-op changes record nothing */
    op = rd_op_create(RD_OP_DEL, "s", "a");
    ck_assert_int_eq(ck_do(reg, op, &index), 404);

    mesh_buf_init(&b, 0);
    n = rd_events_render(ev, 0, 0, RD_EVENTS_SSE, &b, &upto, NULL);
    t = mesh_buf_cstr(&b);

    ck_assert_uint_eq(n, 7);
    ck_assert_uint_eq(upto, index);
    ck_assert_ptr_nonnull(strstr(t, "id: 1\nevent: registered\n"));
    ck_assert_ptr_nonnull(strstr(t, "id: 2\nevent: updated\n"));
    ck_assert_ptr_nonnull(strstr(t, "id: 3\nevent: critical\n"));
    ck_assert_ptr_nonnull(strstr(t, "\"reason\":\"ttl\""));
    ck_assert_ptr_nonnull(strstr(t, "\"reason\":\"heartbeat\""));
    ck_assert_ptr_nonnull(strstr(t, "id: 4\nevent: passing\n"));
    ck_assert_ptr_nonnull(strstr(t, "id: 5\nevent: policy_applied\n"));
    ck_assert_ptr_nonnull(strstr(t, "id: 6\nevent: policy_deleted\n"));
    ck_assert_ptr_nonnull(strstr(t, "id: 7\nevent: deregistered\n"));
    ck_assert_ptr_nonnull(strstr(t, "\"id\":\"a\",\"reason\":\"api\"}"));

    mesh_buf_free(&b);
    ck_reg_close(reg, store);
    rd_events_free(ev);
}
END_TEST


Suite *
events_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("events");
    tc = tcase_create("core");

    tcase_add_test(tc, events_json_has_every_field);
    tcase_add_test(tc, events_render_after_index_and_max);
    tcase_add_test(tc, events_ring_drops_oldest_and_says_truncated);
    tcase_add_test(tc, events_start_index_is_not_kept);
    tcase_add_test(tc, events_sse_frames_one_event_each);
    tcase_add_test(tc, events_time_zero_means_now);
    tcase_add_test(tc, events_registry_records_each_change);
    suite_add_tcase(s, tc);

    return s;
}
