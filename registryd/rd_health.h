/*
 * rd_health: active health checks. An instance's "check" is parsed into
 * an rd_check_t; one prober thread runs every check concurrently (libcurl
 * multi for http, non-blocking connects for tcp), counts consecutive
 * results and, when a threshold flips the check's verdict, queues an
 * RD_OP_HEALTH op so that the transition is committed like any change.
 *
 * The prober takes the registry's read lock only to copy the list of
 * instances it probes (when the index moved), never during network I/O.
 */

#ifndef RD_HEALTH_H
#define RD_HEALTH_H

#include <stdint.h>

#include <jansson.h>

#include "rd_registry.h"

enum {
    RD_CHECK_HTTP = 1,
    RD_CHECK_TCP
};

#define RD_CHECK_PATH_MAX           1024
#define RD_CHECK_INTERVAL           10000   /* ms */
#define RD_CHECK_TIMEOUT            1000    /* ms */
#define RD_CHECK_STATUS_MIN         200
#define RD_CHECK_STATUS_MAX         399
#define RD_CHECK_THRESHOLD_MAX      100
#define RD_HEALTH_MAX_PROBES        2048    /* probes in flight at once */

typedef struct {
    int         kind;                   /* RD_CHECK_HTTP or RD_CHECK_TCP */
    char        path[RD_CHECK_PATH_MAX + 1];
    int         status_min;             /* expected status range */
    int         status_max;
    int64_t     interval;               /* ms */
    int64_t     timeout;                /* ms */
    int         healthy_threshold;
    int         unhealthy_threshold;
} rd_check_t;

/* the check's verdict and its consecutive results */
typedef struct {
    int         critical;
    int         successes;
    int         failures;
} rd_check_state_t;

/*
 * Validate a "check" object into c (defaults filled in). On error fills
 * err and *field ("check" or "check.<name>").
 */
int rd_check_from_json(json_t *obj, rd_check_t *c, char *err,
    const char **field);
/* the same from the stored compact JSON text */
int rd_check_parse(const char *text, rd_check_t *c, char *err);

/* whether an HTTP status is in the check's expected range */
int rd_check_status_ok(const rd_check_t *c, long status);

/*
 * Count one probe result (ok: passed). Returns 1 when the verdict flips:
 * unhealthy_threshold consecutive failures turn a passing check critical,
 * healthy_threshold consecutive successes turn a critical one passing;
 * s->critical then holds the new verdict.
 */
int rd_check_count(rd_check_state_t *s, const rd_check_t *c, int ok);


typedef struct rd_health_s  rd_health_t;

rd_health_t *rd_health_create(rd_registry_t *reg, char *err);
/* starts the prober thread */
int rd_health_start(rd_health_t *h, char *err);
/* stops the prober thread promptly (aborts probes in flight); before
 * rd_registry_stop(), which answers the ops it queued */
void rd_health_stop(rd_health_t *h);
/* after rd_registry_stop(); accepts NULL */
void rd_health_free(rd_health_t *h);

#endif
