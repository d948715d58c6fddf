/*
 * check_health: check parsing, threshold counting, how check verdicts
 * combine with TTLs in the registry, and the prober against real sockets.
 */

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check_suites.h"
#include "rd_health.h"
#include "rd_registry.h"

static char            dir[PATH_MAX];
static rd_store_t     *store;
static rd_registry_t  *reg;


static rd_check_t
parse_ok(const char *text)
{
    char        err[RD_ERR_LEN] = "";
    rd_check_t  c;

    ck_assert_msg(rd_check_parse(text, &c, err) == 0, "%s refused: %s",
                  text, err);
    return c;
}


START_TEST(health_check_defaults)
{
    rd_check_t  c;

    c = parse_ok("{\"http\":\"/healthz\"}");
    ck_assert_int_eq(c.kind, RD_CHECK_HTTP);
    ck_assert_str_eq(c.path, "/healthz");
    ck_assert_int_eq(c.status_min, 200);
    ck_assert_int_eq(c.status_max, 399);
    ck_assert_int_eq(c.interval, 10000);
    ck_assert_int_eq(c.timeout, 1000);
    ck_assert_int_eq(c.healthy_threshold, 1);
    ck_assert_int_eq(c.unhealthy_threshold, 1);

    c = parse_ok("{\"tcp\":true}");
    ck_assert_int_eq(c.kind, RD_CHECK_TCP);
    ck_assert_int_eq(c.interval, 10000);

    /* "tcp": false next to "http" is allowed, as before */
    c = parse_ok("{\"http\":\"/\",\"tcp\":false}");
    ck_assert_int_eq(c.kind, RD_CHECK_HTTP);
}
END_TEST


START_TEST(health_check_full_fields)
{
    rd_check_t  c;

    c = parse_ok("{\"http\":\"/h?x=1\",\"status\":\"200-299\","
                 "\"interval\":\"500ms\",\"timeout\":\"250ms\","
                 "\"healthy_threshold\":2,\"unhealthy_threshold\":3}");
    ck_assert_str_eq(c.path, "/h?x=1");
    ck_assert_int_eq(c.status_min, 200);
    ck_assert_int_eq(c.status_max, 299);
    ck_assert_int_eq(c.interval, 500);
    ck_assert_int_eq(c.timeout, 250);
    ck_assert_int_eq(c.healthy_threshold, 2);
    ck_assert_int_eq(c.unhealthy_threshold, 3);

    c = parse_ok("{\"tcp\":true,\"interval\":\"1h\",\"timeout\":\"10ms\","
                 "\"healthy_threshold\":100,\"unhealthy_threshold\":1}");
    ck_assert_int_eq(c.kind, RD_CHECK_TCP);
    ck_assert_int_eq(c.interval, 3600000);
    ck_assert_int_eq(c.timeout, 10);
    ck_assert_int_eq(c.healthy_threshold, 100);
}
END_TEST


START_TEST(health_check_status_forms)
{
    rd_check_t  c;

    c = parse_ok("{\"http\":\"/\",\"status\":\"200\"}");
    ck_assert_int_eq(c.status_min, 200);
    ck_assert_int_eq(c.status_max, 200);
    ck_assert_int_eq(rd_check_status_ok(&c, 200), 1);
    ck_assert_int_eq(rd_check_status_ok(&c, 204), 0);

    c = parse_ok("{\"http\":\"/\",\"status\":204}");
    ck_assert_int_eq(c.status_min, 204);
    ck_assert_int_eq(c.status_max, 204);

    c = parse_ok("{\"http\":\"/\",\"status\":\"100-599\"}");
    ck_assert_int_eq(rd_check_status_ok(&c, 100), 1);
    ck_assert_int_eq(rd_check_status_ok(&c, 599), 1);
    ck_assert_int_eq(rd_check_status_ok(&c, 0), 0);    /* no answer */

    c = parse_ok("{\"http\":\"/\"}");
    ck_assert_int_eq(rd_check_status_ok(&c, 199), 0);
    ck_assert_int_eq(rd_check_status_ok(&c, 200), 1);
    ck_assert_int_eq(rd_check_status_ok(&c, 302), 1);
    ck_assert_int_eq(rd_check_status_ok(&c, 399), 1);
    ck_assert_int_eq(rd_check_status_ok(&c, 400), 0);
    ck_assert_int_eq(rd_check_status_ok(&c, 503), 0);
}
END_TEST


static const struct {
    const char  *check;
    const char  *field;
} bad_checks[] = {
    { "{}", "check" },
    { "[]", "check" },
    { "{\"interval\":\"5s\"}", "check" },
    { "{\"tcp\":false}", "check" },
    { "{\"http\":\"/h\",\"tcp\":true}", "check" },
    { "{\"http\":\"/h\",\"grpc\":true}", "check" },
    { "{\"http\":\"h\"}", "check.http" },
    { "{\"http\":\"/a b\"}", "check.http" },
    { "{\"http\":17}", "check.http" },
    { "{\"tcp\":\"yes\"}", "check.tcp" },
    { "{\"tcp\":true,\"interval\":\"1ms\"}", "check.interval" },
    { "{\"tcp\":true,\"interval\":\"2h\"}", "check.interval" },
    { "{\"tcp\":true,\"interval\":5}", "check.interval" },
    { "{\"tcp\":true,\"timeout\":\"5\"}", "check.timeout" },
    { "{\"tcp\":true,\"timeout\":\"1ms\"}", "check.timeout" },
    { "{\"http\":\"/\",\"status\":\"2xx\"}", "check.status" },
    { "{\"http\":\"/\",\"status\":\"99\"}", "check.status" },
    { "{\"http\":\"/\",\"status\":\"600\"}", "check.status" },
    { "{\"http\":\"/\",\"status\":\"300-200\"}", "check.status" },
    { "{\"http\":\"/\",\"status\":\"200-\"}", "check.status" },
    { "{\"http\":\"/\",\"status\":\"-200\"}", "check.status" },
    { "{\"http\":\"/\",\"status\":\"2000\"}", "check.status" },
    { "{\"http\":\"/\",\"status\":\" 200\"}", "check.status" },
    { "{\"http\":\"/\",\"status\":\"200-399x\"}", "check.status" },
    { "{\"http\":\"/\",\"status\":\"200-+99\"}", "check.status" },
    { "{\"http\":\"/\",\"status\":99}", "check.status" },
    { "{\"http\":\"/\",\"status\":true}", "check.status" },
    { "{\"tcp\":true,\"status\":\"200\"}", "check.status" },
    { "{\"tcp\":true,\"healthy_threshold\":0}", "check.healthy_threshold" },
    { "{\"tcp\":true,\"healthy_threshold\":101}",
      "check.healthy_threshold" },
    { "{\"tcp\":true,\"healthy_threshold\":\"2\"}",
      "check.healthy_threshold" },
    { "{\"tcp\":true,\"unhealthy_threshold\":1.5}",
      "check.unhealthy_threshold" },
    { "{\"tcp\":true,\"unhealthy_threshold\":-1}",
      "check.unhealthy_threshold" },
};


START_TEST(health_check_rejects_each_bad_field)
{
    char            err[RD_ERR_LEN] = "", body[512];
    json_t         *obj;
    const char     *field = NULL;
    rd_check_t      c;
    rd_instance_t  *in;

    obj = json_loads(bad_checks[_i].check, JSON_DECODE_ANY, NULL);
    ck_assert_ptr_nonnull(obj);

    ck_assert_msg(rd_check_from_json(obj, &c, err, &field) != 0,
                  "accepted %s", bad_checks[_i].check);
    ck_assert_msg(field && strcmp(field, bad_checks[_i].field) == 0,
                  "%s: field %s, not %s (%s)", bad_checks[_i].check,
                  field ? field : "(null)", bad_checks[_i].field, err);
    ck_assert_int_gt((int) strlen(err), 0);
    json_decref(obj);

    /* and the instance with it is refused with the same field */
    snprintf(body, sizeof(body), "{\"address\":\"127.0.0.1\",\"port\":80,"
             "\"check\":%s}", bad_checks[_i].check);
    obj = json_loads(body, 0, NULL);
    ck_assert_ptr_nonnull(obj);
    in = rd_instance_create();
    ck_assert_int_ne(rd_instance_from_json(obj, 0, in, err, &field), 0);
    ck_assert_str_eq(field, bad_checks[_i].field);
    rd_instance_free(in);
    json_decref(obj);
}
END_TEST


START_TEST(health_count_flips_at_thresholds)
{
    rd_check_t        c;
    rd_check_state_t  s = { 0, 0, 0 };

    c = parse_ok("{\"tcp\":true,\"healthy_threshold\":2,"
                 "\"unhealthy_threshold\":3}");

    /* two failures, then a success: the count starts over */
    ck_assert_int_eq(rd_check_count(&s, &c, 0), 0);
    ck_assert_int_eq(rd_check_count(&s, &c, 0), 0);
    ck_assert_int_eq(rd_check_count(&s, &c, 1), 0);
    ck_assert_int_eq(s.critical, 0);

    ck_assert_int_eq(rd_check_count(&s, &c, 0), 0);
    ck_assert_int_eq(rd_check_count(&s, &c, 0), 0);
    ck_assert_int_eq(rd_check_count(&s, &c, 0), 1);
    ck_assert_int_eq(s.critical, 1);

    /* more failures change nothing */
    ck_assert_int_eq(rd_check_count(&s, &c, 0), 0);
    ck_assert_int_eq(s.critical, 1);

    /* one success, a failure, then two successes */
    ck_assert_int_eq(rd_check_count(&s, &c, 1), 0);
    ck_assert_int_eq(rd_check_count(&s, &c, 0), 0);
    ck_assert_int_eq(rd_check_count(&s, &c, 1), 0);
    ck_assert_int_eq(rd_check_count(&s, &c, 1), 1);
    ck_assert_int_eq(s.critical, 0);
    ck_assert_int_eq(rd_check_count(&s, &c, 1), 0);
}
END_TEST


START_TEST(health_count_default_thresholds_flip_on_each_change)
{
    int               i;
    rd_check_t        c;
    rd_check_state_t  s = { 0, 0, 0 };

    c = parse_ok("{\"http\":\"/\"}");

    ck_assert_int_eq(rd_check_count(&s, &c, 1), 0);
    ck_assert_int_eq(rd_check_count(&s, &c, 0), 1);
    ck_assert_int_eq(s.critical, 1);
    ck_assert_int_eq(rd_check_count(&s, &c, 1), 1);
    ck_assert_int_eq(s.critical, 0);

    /* long runs do not overflow the counters */
    for (i = 0; i < 1000; i++) {
        rd_check_count(&s, &c, 1);
    }
    ck_assert_int_le(s.successes, RD_CHECK_THRESHOLD_MAX);
    ck_assert_int_eq(rd_check_count(&s, &c, 0), 1);
}
END_TEST


/* the registry's side: check verdicts as RD_OP_HEALTH ops */

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


static void
start(void)
{
    char  err[RD_ERR_LEN];

    ck_assert_msg(rd_registry_start(reg, err) == 0, "%s", err);
}


static int
health_of(const char *id, uint64_t *put_index)
{
    int             h = -1;
    rd_instance_t  *in;

    pthread_rwlock_rdlock(&reg->lock);
    in = rd_registry_find(reg, "svc", id);
    if (in) {
        h = in->health;
        if (put_index) {
            *put_index = in->put_index;
        }
    }
    pthread_rwlock_unlock(&reg->lock);

    return h;
}


static int
check_op(const char *id, int critical, uint64_t put_index)
{
    rd_op_t  *op;

    op = rd_op_create(RD_OP_HEALTH, "svc", id);
    ck_assert_ptr_nonnull(op);
    op->check = 1;
    op->put_index = put_index;
    op->health = critical ? RD_HEALTH_CRITICAL : RD_HEALTH_PASSING;

    return ck_do(reg, op, NULL);
}


#define CHECKED  "{\"address\":\"127.0.0.1\",\"port\":1," \
                 "\"check\":{\"tcp\":true}}"


START_TEST(health_op_commits_transitions_and_raises_index)
{
    uint64_t  put = 0, index;

    start();
    ck_do(reg, ck_op_put("svc", "a", CHECKED), NULL);
    ck_assert_int_eq(health_of("a", &put), RD_HEALTH_PASSING);
    ck_assert_uint_eq(put, 1);

    ck_assert_int_eq(check_op("a", 1, put), 200);
    ck_assert_int_eq(health_of("a", NULL), RD_HEALTH_CRITICAL);
    ck_assert_uint_eq(rd_registry_index(reg), 2);

    /* the same verdict again: no change */
    ck_assert_int_eq(check_op("a", 1, put), 200);
    ck_assert_uint_eq(rd_registry_index(reg), 2);

    ck_assert_int_eq(check_op("a", 0, put), 200);
    ck_assert_int_eq(health_of("a", NULL), RD_HEALTH_PASSING);
    index = rd_registry_index(reg);
    ck_assert_uint_eq(index, 3);

    ck_assert_int_eq(check_op("none", 1, put), 404);
    ck_assert_uint_eq(rd_registry_index(reg), 3);
}
END_TEST


START_TEST(health_op_for_an_older_registration_is_a_noop)
{
    uint64_t  put = 0, put2 = 0;

    start();
    ck_do(reg, ck_op_put("svc", "a", CHECKED), NULL);
    health_of("a", &put);

    /* registered again (a re-registration starts passing) */
    ck_do(reg, ck_op_put("svc", "a", CHECKED), NULL);
    health_of("a", &put2);
    ck_assert_uint_ne(put, put2);

    ck_assert_int_eq(check_op("a", 1, put), 200);
    ck_assert_int_eq(health_of("a", NULL), RD_HEALTH_PASSING);
    ck_assert_uint_eq(rd_registry_index(reg), 2);

    ck_assert_int_eq(check_op("a", 1, put2), 200);
    ck_assert_int_eq(health_of("a", NULL), RD_HEALTH_CRITICAL);

    /* and a re-registration makes it passing again */
    ck_do(reg, ck_op_put("svc", "a", CHECKED), NULL);
    ck_assert_int_eq(health_of("a", NULL), RD_HEALTH_PASSING);
}
END_TEST


START_TEST(health_ttl_and_check_critical_if_either_says_so)
{
    rd_op_t   *op;
    uint64_t   put = 0, index;

    start();
    ck_do(reg, ck_op_put("svc", "a",
                         "{\"address\":\"127.0.0.1\",\"port\":1,"
                         "\"ttl\":\"1s\",\"check\":{\"tcp\":true}}"), NULL);
    health_of("a", &put);

    /* the check fails: critical; a heartbeat does not change that */
    ck_assert_int_eq(check_op("a", 1, put), 200);
    ck_assert_int_eq(rd_registry_heartbeat(reg, "svc", "a", &index), 1);
    op = rd_op_create(RD_OP_HEALTH, "svc", "a");
    op->health = RD_HEALTH_PASSING;
    ck_assert_int_eq(ck_do(reg, op, NULL), 200);
    ck_assert_int_eq(health_of("a", NULL), RD_HEALTH_CRITICAL);

    /* the TTL expires too, then the check passes: still critical */
    pthread_rwlock_wrlock(&reg->lock);
    __atomic_store_n(&rd_registry_find(reg, "svc", "a")->last_seen,
                     rd_now_ms() - 5000, __ATOMIC_RELAXED);
    pthread_rwlock_unlock(&reg->lock);
    rd_registry_scan_ttl(reg);
    ck_do(reg, ck_op_put("svc", "sync", CHECKED), NULL);   /* after it */

    ck_assert_int_eq(check_op("a", 0, put), 200);
    ck_assert_int_eq(health_of("a", NULL), RD_HEALTH_CRITICAL);

    /* the heartbeat makes it passing */
    op = rd_op_create(RD_OP_HEALTH, "svc", "a");
    op->health = RD_HEALTH_PASSING;
    ck_assert_int_eq(ck_do(reg, op, NULL), 200);
    ck_assert_int_eq(health_of("a", NULL), RD_HEALTH_PASSING);
}
END_TEST


START_TEST(health_critical_check_survives_restart)
{
    uint64_t  put = 0;

    start();
    ck_do(reg, ck_op_put("svc", "a", CHECKED), NULL);
    health_of("a", &put);
    ck_assert_int_eq(check_op("a", 1, put), 200);

    ck_reg_close(reg, store);
    reg = ck_reg_open(dir, &store);
    start();

    ck_assert_int_eq(health_of("a", &put), RD_HEALTH_CRITICAL);

    /* the check passing again is enough (no ttl) */
    ck_assert_int_eq(check_op("a", 0, put), 200);
    ck_assert_int_eq(health_of("a", NULL), RD_HEALTH_PASSING);
}
END_TEST


/* the prober, against sockets of this process */

static int
listener(int *port)
{
    int                 fd;
    socklen_t           len;
    struct sockaddr_in  sin;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *) &sin, sizeof(sin)), 0);
    ck_assert_int_eq(listen(fd, 64), 0);

    len = sizeof(sin);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &sin, &len), 0);
    *port = ntohs(sin.sin_port);

    return fd;
}


START_TEST(health_prober_tcp_up_stays_passing_down_turns_critical)
{
    int           up, down, fd, i;
    char          err[RD_ERR_LEN], body[256];
    rd_health_t  *h;

    fd = listener(&up);
    close(listener(&down));         /* nothing listens there now */

    start();
    snprintf(body, sizeof(body), "{\"address\":\"127.0.0.1\",\"port\":%d,"
             "\"check\":{\"tcp\":true,\"interval\":\"100ms\"}}", up);
    ck_do(reg, ck_op_put("svc", "up", body), NULL);
    snprintf(body, sizeof(body), "{\"address\":\"127.0.0.1\",\"port\":%d,"
             "\"check\":{\"tcp\":true,\"interval\":\"100ms\","
             "\"unhealthy_threshold\":2}}", down);
    ck_do(reg, ck_op_put("svc", "down", body), NULL);
    snprintf(body, sizeof(body), "{\"address\":\"127.0.0.1\",\"port\":%d,"
             "\"check\":{\"http\":\"/\",\"interval\":\"100ms\"}}", down);
    ck_do(reg, ck_op_put("svc", "web", body), NULL);

    h = rd_health_create(reg, err);
    ck_assert_msg(h != NULL, "%s", err);
    ck_assert_msg(rd_health_start(h, err) == 0, "%s", err);

    for (i = 0; i < 100; i++) {
        if (health_of("down", NULL) == RD_HEALTH_CRITICAL
            && health_of("web", NULL) == RD_HEALTH_CRITICAL)
        {
            break;
        }
        usleep(50000);
    }

    ck_assert_int_eq(health_of("down", NULL), RD_HEALTH_CRITICAL);
    ck_assert_int_eq(health_of("web", NULL), RD_HEALTH_CRITICAL);
    ck_assert_int_eq(health_of("up", NULL), RD_HEALTH_PASSING);
    ck_assert_uint_eq(rd_registry_index(reg), 5);

    rd_health_stop(h);
    rd_registry_stop(reg);
    rd_health_free(h);
    close(fd);
}
END_TEST


START_TEST(health_prober_leaves_instances_outside_probe_networks)
{
    int           down, i;
    char          err[RD_ERR_LEN], body[256];
    mesh_cidr_t   net;
    rd_health_t  *h;

    close(listener(&down));         /* nothing listens there */

    start();
    snprintf(body, sizeof(body), "{\"address\":\"127.0.0.1\",\"port\":%d,"
             "\"check\":{\"tcp\":true,\"interval\":\"100ms\"}}", down);
    ck_do(reg, ck_op_put("svc", "in", body), NULL);
    snprintf(body, sizeof(body), "{\"address\":\"127.0.0.2\",\"port\":%d,"
             "\"check\":{\"tcp\":true,\"interval\":\"100ms\"}}", down);
    ck_do(reg, ck_op_put("svc", "out", body), NULL);

    /* stored before probe_networks said 127.0.0.1/32 only */
    ck_assert_int_eq(mesh_cidr_parse("127.0.0.1/32", 12, &net), 0);

    h = rd_health_create(reg, err);
    ck_assert_msg(h != NULL, "%s", err);
    rd_health_networks(h, &net, 1);
    ck_assert_msg(rd_health_start(h, err) == 0, "%s", err);

    for (i = 0; i < 100 && health_of("in", NULL) != RD_HEALTH_CRITICAL;
         i++)
    {
        usleep(50000);
    }

    usleep(500000);                 /* five intervals more */

    ck_assert_int_eq(health_of("in", NULL), RD_HEALTH_CRITICAL);
    ck_assert_int_eq(health_of("out", NULL), RD_HEALTH_PASSING);

    rd_health_stop(h);
    rd_registry_stop(reg);
    rd_health_free(h);
}
END_TEST


Suite *
health_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("health");

    tc = tcase_create("check");
    tcase_add_test(tc, health_check_defaults);
    tcase_add_test(tc, health_check_full_fields);
    tcase_add_test(tc, health_check_status_forms);
    tcase_add_loop_test(tc, health_check_rejects_each_bad_field, 0,
        (int) (sizeof(bad_checks) / sizeof(bad_checks[0])));
    tcase_add_test(tc, health_count_flips_at_thresholds);
    tcase_add_test(tc, health_count_default_thresholds_flip_on_each_change);
    suite_add_tcase(s, tc);

    tc = tcase_create("registry");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, health_op_commits_transitions_and_raises_index);
    tcase_add_test(tc, health_op_for_an_older_registration_is_a_noop);
    tcase_add_test(tc, health_ttl_and_check_critical_if_either_says_so);
    tcase_add_test(tc, health_critical_check_survives_restart);
    tcase_add_test(tc, health_prober_tcp_up_stays_passing_down_turns_critical);
    tcase_add_test(tc, health_prober_leaves_instances_outside_probe_networks);
    suite_add_tcase(s, tc);

    return s;
}
