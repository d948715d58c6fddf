/*
 * rd_api: the HTTP API v1 (libmicrohttpd). Requests that wait, for a
 * store commit or for the next index, are suspended, so they hold no
 * thread: a few HTTP threads serve any number of long-polls.
 */

#ifndef RD_API_H
#define RD_API_H

#include "rd_auth.h"
#include "rd_conf.h"
#include "rd_registry.h"

typedef struct rd_api_s  rd_api_t;

rd_api_t *rd_api_create(rd_registry_t *reg, const rd_conf_t *conf,
    rd_auth_t *auth, char *err);

/* stop accepting, answer waiters, refuse new writes; before
 * rd_registry_stop() so that every queued write is still answered */
void rd_api_quiesce(rd_api_t *api);

void rd_api_free(rd_api_t *api);

#endif
