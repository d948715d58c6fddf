/*
 * rd_health: active health checks. An instance's "check" is parsed into
 * an rd_check_t (rd_check); one prober thread runs every check concurrently (libcurl
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

#include "rd_check.h"
#include "rd_registry.h"

#define RD_HEALTH_MAX_PROBES        2048    /* probes in flight at once */


typedef struct rd_health_s  rd_health_t;

rd_health_t *rd_health_create(rd_registry_t *reg, char *err);
/* probe_networks: only instances inside them are probed (call before
 * rd_health_start) */
void rd_health_networks(rd_health_t *h, const mesh_cidr_t *nets, size_t n);
/* starts the prober thread */
int rd_health_start(rd_health_t *h, char *err);
/* stops the prober thread promptly (aborts probes in flight); before
 * rd_registry_stop(), which answers the ops it queued */
void rd_health_stop(rd_health_t *h);
/* after rd_registry_stop(); accepts NULL */
void rd_health_free(rd_health_t *h);

#endif
