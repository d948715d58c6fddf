/*
 * rd_metrics: registryd's own counters, rendered in Prometheus text
 * format at GET /metrics. Counters are updated with atomics from any
 * thread.
 */

#ifndef RD_METRICS_H
#define RD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "mesh_buf.h"
#include "rd_route.h"

/* a request answered with status after elapsed_us microseconds */
void rd_metrics_request(rd_route_e route, int status, int64_t elapsed_us);
/* a store commit of nops operations */
void rd_metrics_commit(int64_t elapsed_ms, size_t nops, int ok);
/* a health probe that passed (ok) or failed after elapsed_us */
void rd_metrics_probe(int ok, int64_t elapsed_us);
/* a snapshot answered for a subscription or a delta client: a delta
 * (delta = 1) or a complete answer of len bytes before compression */
void rd_metrics_snapshot_answer(int delta, size_t len);

typedef struct {
    uint64_t  index;
    size_t    passing;
    size_t    critical;
    size_t    waiters;
    size_t    queued;
    int       store_ok;
    size_t    stream_clients;     /* open event streams (SSE) */
    size_t    policies;
} rd_metrics_gauges_t;

void rd_metrics_render(mesh_buf_t *b, const rd_metrics_gauges_t *g);

#endif
