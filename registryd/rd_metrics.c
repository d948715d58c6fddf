/*
 * rd_metrics: counters and their Prometheus rendering.
 */

#include <stdio.h>

#include "rd_events.h"
#include "rd_metrics.h"

#define RD_NCODES      12
#define RD_NBUCKETS    12

static const char *const  rd_route_names[RD_ROUTE_COUNT] = {
    "healthz", "metrics", "services", "service", "instance", "heartbeat",
    "snapshot", "policies", "other", "events", "proxies", "export", "objects"
};

static const int  rd_codes[RD_NCODES] = {
    200, 201, 400, 401, 404, 405, 413, 415, 500, 503, 0, 0
};

/* seconds; the same bounds serve request and commit latencies */
static const double  rd_bounds[RD_NBUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5
};

static uint64_t  rd_requests[RD_ROUTE_COUNT][RD_NCODES];
static uint64_t  rd_req_hist[RD_ROUTE_COUNT][RD_NBUCKETS + 1];
static uint64_t  rd_req_sum_us[RD_ROUTE_COUNT];

static uint64_t  rd_commit_hist[RD_NBUCKETS + 1];
static uint64_t  rd_commit_sum_ms;
static uint64_t  rd_commits;
static uint64_t  rd_commit_failures;
static uint64_t  rd_committed_ops;
static uint64_t  rd_probes[2];              /* fail, pass */
static uint64_t  rd_answers[2];             /* full, delta */
static uint64_t  rd_answer_bytes[2];
static uint64_t  rd_probe_hist[RD_NBUCKETS + 1];
static uint64_t  rd_probe_sum_us;


static size_t
rd_bucket(double seconds)
{
    size_t  i;

    for (i = 0; i < RD_NBUCKETS; i++) {
        if (seconds <= rd_bounds[i]) {
            return i;
        }
    }

    return RD_NBUCKETS;
}


void
rd_metrics_request(rd_route_e route, int status, int64_t elapsed_us)
{
    size_t  i;

    for (i = 0; i < RD_NCODES - 2; i++) {
        if (rd_codes[i] == status) {
            break;
        }
    }

    if (i == RD_NCODES - 2) {
        i = RD_NCODES - 1;      /* "other" */
    }

    __atomic_add_fetch(&rd_requests[route][i], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&rd_req_hist[route][rd_bucket(elapsed_us / 1e6)], 1,
                       __ATOMIC_RELAXED);
    __atomic_add_fetch(&rd_req_sum_us[route], (uint64_t) elapsed_us,
                       __ATOMIC_RELAXED);
}


void
rd_metrics_commit(int64_t elapsed_ms, size_t nops, int ok)
{
    if (!ok) {
        __atomic_add_fetch(&rd_commit_failures, 1, __ATOMIC_RELAXED);
        return;
    }

    __atomic_add_fetch(&rd_commits, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&rd_committed_ops, nops, __ATOMIC_RELAXED);
    __atomic_add_fetch(&rd_commit_sum_ms, (uint64_t) elapsed_ms,
                       __ATOMIC_RELAXED);
    __atomic_add_fetch(&rd_commit_hist[rd_bucket(elapsed_ms / 1e3)], 1,
                       __ATOMIC_RELAXED);
}


void
rd_metrics_snapshot_answer(int delta, size_t len)
{
    __atomic_add_fetch(&rd_answers[delta != 0], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&rd_answer_bytes[delta != 0], (uint64_t) len,
                       __ATOMIC_RELAXED);
}


void
rd_metrics_probe(int ok, int64_t elapsed_us)
{
    __atomic_add_fetch(&rd_probes[ok != 0], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&rd_probe_hist[rd_bucket(elapsed_us / 1e6)], 1,
                       __ATOMIC_RELAXED);
    __atomic_add_fetch(&rd_probe_sum_us, (uint64_t) elapsed_us,
                       __ATOMIC_RELAXED);
}


static void
rd_metrics_hist(mesh_buf_t *b, const char *name, const char *labels,
    const uint64_t *hist, double sum)
{
    size_t    i;
    uint64_t  cum = 0;

    for (i = 0; i < RD_NBUCKETS; i++) {
        cum += __atomic_load_n(&hist[i], __ATOMIC_RELAXED);
        mesh_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels,
                      labels[0] ? "," : "", rd_bounds[i],
                      (unsigned long long) cum);
    }

    cum += __atomic_load_n(&hist[RD_NBUCKETS], __ATOMIC_RELAXED);
    mesh_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels,
                  labels[0] ? "," : "", (unsigned long long) cum);

    if (labels[0]) {
        mesh_buf_printf(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name,
                      labels, sum, name, labels, (unsigned long long) cum);
    } else {
        mesh_buf_printf(b, "%s_sum %.6f\n%s_count %llu\n", name, sum, name,
                      (unsigned long long) cum);
    }
}


static void
rd_metrics_render_health(mesh_buf_t *b)
{
    mesh_buf_printf(b,
        "# HELP registryd_health_probes_total Health check probes by "
        "result.\n"
        "# TYPE registryd_health_probes_total counter\n"
        "registryd_health_probes_total{result=\"pass\"} %llu\n"
        "registryd_health_probes_total{result=\"fail\"} %llu\n",
        (unsigned long long) __atomic_load_n(&rd_probes[1], __ATOMIC_RELAXED),
        (unsigned long long) __atomic_load_n(&rd_probes[0],
                                             __ATOMIC_RELAXED));

    mesh_buf_adds(b,
        "# HELP registryd_health_probe_duration_seconds Time of one health "
        "check probe.\n"
        "# TYPE registryd_health_probe_duration_seconds histogram\n");
    rd_metrics_hist(b, "registryd_health_probe_duration_seconds", "",
                    rd_probe_hist,
                    __atomic_load_n(&rd_probe_sum_us, __ATOMIC_RELAXED)
                    / 1e6);
}


void
rd_metrics_render(mesh_buf_t *b, const rd_metrics_gauges_t *g)
{
    char      labels[64];
    size_t    r, c;
    uint64_t  v;

    mesh_buf_adds(b,
        "# HELP registryd_http_requests_total HTTP requests by route and "
        "status.\n"
        "# TYPE registryd_http_requests_total counter\n");

    for (r = 0; r < RD_ROUTE_COUNT; r++) {
        for (c = 0; c < RD_NCODES; c++) {
            v = __atomic_load_n(&rd_requests[r][c], __ATOMIC_RELAXED);
            if (v == 0 || (c == RD_NCODES - 2)) {
                continue;
            }

            if (c == RD_NCODES - 1) {
                mesh_buf_printf(b, "registryd_http_requests_total{route=\"%s\","
                              "code=\"other\"} %llu\n", rd_route_names[r],
                              (unsigned long long) v);
            } else {
                mesh_buf_printf(b, "registryd_http_requests_total{route=\"%s\","
                              "code=\"%d\"} %llu\n", rd_route_names[r],
                              rd_codes[c], (unsigned long long) v);
            }
        }
    }

    mesh_buf_adds(b,
        "# HELP registryd_http_request_duration_seconds Time to answer, "
        "by route (long-polls include their wait).\n"
        "# TYPE registryd_http_request_duration_seconds histogram\n");

    for (r = 0; r < RD_ROUTE_COUNT; r++) {
        snprintf(labels, sizeof(labels), "route=\"%s\"", rd_route_names[r]);
        rd_metrics_hist(b, "registryd_http_request_duration_seconds", labels,
                        rd_req_hist[r],
                        __atomic_load_n(&rd_req_sum_us[r], __ATOMIC_RELAXED)
                        / 1e6);
    }

    mesh_buf_adds(b,
        "# HELP registryd_store_commit_seconds Time of one store commit "
        "(a batch of writes made durable).\n"
        "# TYPE registryd_store_commit_seconds histogram\n");
    rd_metrics_hist(b, "registryd_store_commit_seconds", "", rd_commit_hist,
                    __atomic_load_n(&rd_commit_sum_ms, __ATOMIC_RELAXED)
                    / 1e3);

    mesh_buf_printf(b,
        "# HELP registryd_store_commits_total Store commits.\n"
        "# TYPE registryd_store_commits_total counter\n"
        "registryd_store_commits_total %llu\n"
        "# HELP registryd_store_commit_failures_total Failed store "
        "commits.\n"
        "# TYPE registryd_store_commit_failures_total counter\n"
        "registryd_store_commit_failures_total %llu\n"
        "# HELP registryd_store_writes_total Changes committed.\n"
        "# TYPE registryd_store_writes_total counter\n"
        "registryd_store_writes_total %llu\n"
        "# HELP registryd_store_up Whether the last store commit "
        "succeeded.\n"
        "# TYPE registryd_store_up gauge\n"
        "registryd_store_up %d\n"
        "# HELP registryd_index The registry index.\n"
        "# TYPE registryd_index gauge\n"
        "registryd_index %llu\n"
        "# HELP registryd_instances Registered instances by health.\n"
        "# TYPE registryd_instances gauge\n"
        "registryd_instances{health=\"passing\"} %zu\n"
        "registryd_instances{health=\"critical\"} %zu\n"
        "# HELP registryd_snapshot_waiters Long-polls waiting for a "
        "change.\n"
        "# TYPE registryd_snapshot_waiters gauge\n"
        "registryd_snapshot_waiters %zu\n"
        "# HELP registryd_write_queue Writes waiting for the store.\n"
        "# TYPE registryd_write_queue gauge\n"
        "registryd_write_queue %zu\n",
        (unsigned long long) __atomic_load_n(&rd_commits, __ATOMIC_RELAXED),
        (unsigned long long) __atomic_load_n(&rd_commit_failures,
                                             __ATOMIC_RELAXED),
        (unsigned long long) __atomic_load_n(&rd_committed_ops,
                                             __ATOMIC_RELAXED),
        g->store_ok, (unsigned long long) g->index, g->passing, g->critical,
        g->waiters, g->queued);

    mesh_buf_adds(b,
        "# HELP registryd_events_total Events recorded, by type.\n"
        "# TYPE registryd_events_total counter\n");

    for (r = 0; r < RD_EV_COUNT; r++) {
        mesh_buf_printf(b, "registryd_events_total{type=\"%s\"} %llu\n",
                      rd_event_type_name((int) r),
                      (unsigned long long) rd_events_recorded((int) r));
    }

    mesh_buf_printf(b,
        "# HELP registryd_event_stream_clients Open event streams "
        "(server-sent events).\n"
        "# TYPE registryd_event_stream_clients gauge\n"
        "registryd_event_stream_clients %zu\n"
        "# HELP registryd_policies Stored traffic policies.\n"
        "# TYPE registryd_policies gauge\n"
        "registryd_policies %zu\n",
        g->stream_clients, g->policies);

    mesh_buf_printf(b,
        "# HELP registryd_snapshot_answers_total Snapshots answered to "
        "clients that subscribe or take deltas, by kind.\n"
        "# TYPE registryd_snapshot_answers_total counter\n"
        "registryd_snapshot_answers_total{kind=\"full\"} %llu\n"
        "registryd_snapshot_answers_total{kind=\"delta\"} %llu\n"
        "# HELP registryd_snapshot_answer_bytes_total Bytes of those "
        "answers before compression, by kind.\n"
        "# TYPE registryd_snapshot_answer_bytes_total counter\n"
        "registryd_snapshot_answer_bytes_total{kind=\"full\"} %llu\n"
        "registryd_snapshot_answer_bytes_total{kind=\"delta\"} %llu\n",
        (unsigned long long) __atomic_load_n(&rd_answers[0],
                                             __ATOMIC_RELAXED),
        (unsigned long long) __atomic_load_n(&rd_answers[1],
                                             __ATOMIC_RELAXED),
        (unsigned long long) __atomic_load_n(&rd_answer_bytes[0],
                                             __ATOMIC_RELAXED),
        (unsigned long long) __atomic_load_n(&rd_answer_bytes[1],
                                             __ATOMIC_RELAXED));

    rd_metrics_render_health(b);
}
