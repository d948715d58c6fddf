/*
 * check_metrics: counters and their Prometheus text.
 */

#include <string.h>

#include "check_suites.h"
#include "rd_metrics.h"


static void
assert_has(const char *text, const char *line)
{
    ck_assert_msg(strstr(text, line) != NULL, "no line \"%s\" in:\n%s",
                  line, text);
}


START_TEST(metrics_render_shows_gauges)
{
    char                 *t;
    mesh_buf_t            b;
    rd_metrics_gauges_t   g = { .index = 42, .passing = 3, .critical = 2,
                                .waiters = 5, .queued = 7, .store_ok = 1 };

    mesh_buf_init(&b, 0);
    rd_metrics_render(&b, &g);
    t = mesh_buf_cstr(&b);

    assert_has(t, "\nregistryd_index 42\n");
    assert_has(t, "\nregistryd_instances{health=\"passing\"} 3\n");
    assert_has(t, "\nregistryd_instances{health=\"critical\"} 2\n");
    assert_has(t, "\nregistryd_snapshot_waiters 5\n");
    assert_has(t, "\nregistryd_write_queue 7\n");
    assert_has(t, "\nregistryd_store_up 1\n");
    assert_has(t, "# TYPE registryd_store_commit_seconds histogram\n");
    ck_assert_int_eq(t[b.len - 1], '\n');

    mesh_buf_free(&b);
}
END_TEST


START_TEST(metrics_request_counts_by_route_and_code)
{
    char                 *t;
    mesh_buf_t            b;
    rd_metrics_gauges_t   g = { .store_ok = 1 };

    /* the policies route is served by rd_api only, unused elsewhere here */
    rd_metrics_request(RD_ROUTE_POLICIES, 503, 1500);
    rd_metrics_request(RD_ROUTE_POLICIES, 503, 1500);
    rd_metrics_request(RD_ROUTE_POLICIES, 418, 20000000);

    mesh_buf_init(&b, 0);
    rd_metrics_render(&b, &g);
    t = mesh_buf_cstr(&b);

    assert_has(t, "registryd_http_requests_total{route=\"policies\","
                  "code=\"503\"} 2\n");
    assert_has(t, "registryd_http_requests_total{route=\"policies\","
                  "code=\"other\"} 1\n");
    assert_has(t, "registryd_http_request_duration_seconds_bucket{"
                  "route=\"policies\",le=\"0.001\"} 0\n");
    assert_has(t, "registryd_http_request_duration_seconds_bucket{"
                  "route=\"policies\",le=\"0.0025\"} 2\n");
    assert_has(t, "registryd_http_request_duration_seconds_bucket{"
                  "route=\"policies\",le=\"5\"} 2\n");
    assert_has(t, "registryd_http_request_duration_seconds_bucket{"
                  "route=\"policies\",le=\"+Inf\"} 3\n");
    assert_has(t, "registryd_http_request_duration_seconds_count{"
                  "route=\"policies\"} 3\n");
    assert_has(t, "registryd_http_request_duration_seconds_sum{"
                  "route=\"policies\"} 20.003000\n");

    mesh_buf_free(&b);
}
END_TEST


Suite *
metrics_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("metrics");

    tc = tcase_create("render");
    tcase_add_test(tc, metrics_render_shows_gauges);
    tcase_add_test(tc, metrics_request_counts_by_route_and_code);
    suite_add_tcase(s, tc);

    return s;
}
