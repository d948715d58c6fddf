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
void rd_snapshot_build(rd_registry_t *reg, rd_buf_t *b, uint64_t *index);

#endif
