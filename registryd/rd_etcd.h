/*
 * rd_etcd: a small etcd v3 client over etcd's JSON gateway (POST
 * /v3/kv/range, /v3/kv/txn, /v3/lease/..., /v3/watch) with libcurl and
 * jansson: keys and values travel in base64, 64-bit numbers as strings.
 *
 * One rd_etcd_t per thread (it holds one libcurl handle). Every call
 * goes to the current endpoint; when that one cannot be reached the call
 * moves to the next and tries each endpoint once.
 */

#ifndef RD_ETCD_H
#define RD_ETCD_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "mesh_buf.h"
#include "rd_log.h"

#define RD_ETCD_ENDPOINTS_MAX  16

/* rd_etcd_call() results */
#define RD_ETCD_OK        0
#define RD_ETCD_ERROR    -1     /* answered with an error: not applied */
#define RD_ETCD_UNKNOWN  -2     /* no answer: it may or may not be applied */
#define RD_ETCD_DOWN     -3     /* no endpoint could take it: not applied */

typedef struct rd_etcd_s  rd_etcd_t;

/*
 * endpoints: "http://127.0.0.1:2379,http://127.0.0.1:22379"; prefix: the
 * folder of this registry's keys ("/ngx-mesh/"); timeout_ms: of one call
 */
rd_etcd_t *rd_etcd_create(const char *endpoints, const char *prefix,
    int64_t timeout_ms, char *err);
void rd_etcd_free(rd_etcd_t *e);

/* 0 when the list is one or more http(s)://HOST:PORT, else -1 and why */
int rd_etcd_endpoints_check(const char *endpoints, char *err);

/* a new endpoint list (a config reload); the calls after it use it */
int rd_etcd_set_endpoints(rd_etcd_t *e, const char *endpoints, char *err);
const char *rd_etcd_endpoint(rd_etcd_t *e);
size_t rd_etcd_endpoints_n(rd_etcd_t *e);

/*
 * POST req (not taken) to path ("/v3/kv/txn"); *res gets the answer
 * (json_decref it). err names the store and the endpoint.
 */
int rd_etcd_call(rd_etcd_t *e, const char *path, json_t *req, json_t **res,
    char *err);

/*
 * A streaming call (the watch): each line the server sends goes to cb as
 * it arrives; the call returns when the server ends the stream, the
 * connection fails, cb returns non-zero, or *stop becomes non-zero.
 * Returns RD_ETCD_OK when it ended after a connection was made,
 * RD_ETCD_DOWN when no endpoint could be reached.
 */
typedef int (*rd_etcd_line_pt)(void *data, const char *line, size_t len);
int rd_etcd_stream(rd_etcd_t *e, const char *path, json_t *req,
    rd_etcd_line_pt cb, void *data, volatile int *stop, char *err);

/* the prefixed key, base64, as a JSON string; "" + 1 is the prefix's end */
json_t *rd_etcd_key(rd_etcd_t *e, const char *key);
json_t *rd_etcd_prefix_end(rd_etcd_t *e);
const char *rd_etcd_prefix(rd_etcd_t *e);

/* base64 of n bytes at p, as a JSON string */
json_t *rd_etcd_b64(const void *p, size_t n);
/* the bytes of a base64 string, NUL-terminated (not counted); -1: bad */
int rd_etcd_unb64(const char *s, mesh_buf_t *out);

/* a 64-bit number the gateway sends as a string ("revision":"42");
 * 0 when absent */
int64_t rd_etcd_num(json_t *obj, const char *name);
/* the same, for a 64-bit number we send */
json_t *rd_etcd_num_json(int64_t v);

#endif
