/*
 * rd_snapshot: the document every nginx long-polls, built once per index
 * and shared (reference counted) by every request that serves it, plain
 * and gzip.
 */

#ifndef RD_SNAPSHOT_H
#define RD_SNAPSHOT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "rd_registry.h"

typedef struct {
    uint64_t   index;
    int        refs;            /* atomic */
    char      *json;
    size_t     len;
    char      *gz;              /* NULL until first asked for */
    size_t     gzlen;
    pthread_mutex_t  gzlock;
} rd_snapshot_t;

typedef struct {
    rd_registry_t    *reg;
    pthread_mutex_t   lock;
    rd_snapshot_t    *current;
} rd_snapshot_cache_t;

void rd_snapshot_cache_init(rd_snapshot_cache_t *c, rd_registry_t *reg);
void rd_snapshot_cache_free(rd_snapshot_cache_t *c);

/* the snapshot of the current index, with a reference for the caller */
rd_snapshot_t *rd_snapshot_get(rd_snapshot_cache_t *c);
/* gzip body of s (built once); -1 on failure */
int rd_snapshot_gzip(rd_snapshot_t *s, const char **data, size_t *len);
void rd_snapshot_release(rd_snapshot_t *s);

/* the JSON document itself, from the registry (read lock taken inside) */
void rd_snapshot_build(rd_registry_t *reg, mesh_buf_t *b, uint64_t *index);

/* gzip len bytes of in into a malloc()ed *out; -1 on failure */
int rd_gzip(const char *in, size_t len, char **out, size_t *outlen);


/*
 * What one nginx routes, from ?services=a,b: names sorted and unique. A
 * snapshot for a subscription holds those services and the policies
 * naming any of them.
 */
typedef struct {
    char     **names;
    size_t     n;
    char      *mem;
} rd_subscription_t;

#define RD_SUBSCRIPTION_MAX  4096       /* services in one subscription */

/* 0, or -1 with err filled (an invalid name, too many) */
int rd_subscription_parse(rd_subscription_t *sub, const char *list,
    char *err);
void rd_subscription_free(rd_subscription_t *sub);
int rd_subscription_has(const rd_subscription_t *sub, const char *name);

typedef struct {
    const rd_subscription_t  *sub;      /* NULL: every service */
    int                       delta;    /* the client applies deltas */
    int                       known;    /* it has an index: since */
    uint64_t                  since;    /* delta: the index it has */
    uint64_t                  registry; /* delta: the registry id it has */
} rd_snapshot_ask_t;

/*
 * The answer to a client that subscribes or applies deltas. A delta holds,
 * per service changed since ask->since, the instances added or changed and
 * the ids removed, and "policies" only when a policy changed. It is given
 * when the events since then are still kept and the registry is the one
 * the client knew; otherwise the answer is complete ("delta": false).
 * Returns 1 for a delta, 0 for a complete answer.
 */
int rd_snapshot_answer(rd_registry_t *reg, const rd_snapshot_ask_t *ask,
    mesh_buf_t *b, uint64_t *index);

#endif
