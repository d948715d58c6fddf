/*
 * rd_check: an instance's health check as registered: validated from the
 * API's JSON (defaults filled in), read back from the stored text, and
 * the threshold counting that turns probe results into a verdict. Used by
 * the registry (to validate a registration) and the prober (to run it).
 */

#ifndef RD_CHECK_H
#define RD_CHECK_H

#include <stdint.h>

#include <jansson.h>

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

#endif
