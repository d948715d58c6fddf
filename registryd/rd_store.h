/*
 * rd_store: durable key-value storage of the registry, behind a small
 * interface so that more than one backend can serve it (SQLite now; etcd
 * for several registryd replicas later).
 *
 * Keys are "instances/<service>/<id>" and "policies/<name>"; values are
 * JSON text. The store also keeps the registry index. A commit applies a
 * batch of operations and the new index atomically and returns only once
 * they are durable.
 */

#ifndef RD_STORE_H
#define RD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "rd_log.h"

typedef struct rd_store_s  rd_store_t;

typedef struct {
    int          del;           /* 1: delete key, value unused */
    const char  *key;
    const char  *value;
    size_t       value_len;
} rd_store_op_t;

/* called once per stored key by load; non-zero stops the load */
typedef int (*rd_store_load_pt)(void *data, const char *key,
    const char *value, size_t len, char *err);

typedef struct {
    const char  *name;
    int        (*open)(rd_store_t *s, const char *location, char *err);
    int        (*load)(rd_store_t *s, rd_store_load_pt cb, void *data,
                       uint64_t *index, char *err);
    int        (*commit)(rd_store_t *s, const rd_store_op_t *ops, size_t n,
                         uint64_t index, char *err);
    int        (*check)(rd_store_t *s, char *err);
    void       (*close)(rd_store_t *s);
} rd_store_backend_t;

struct rd_store_s {
    const rd_store_backend_t  *backend;
    void                      *impl;
    uint64_t                   id;      /* the registry's id, set by open:
                                           the same for as long as the
                                           stored data lives */
};

extern const rd_store_backend_t  rd_store_sqlite;

/* backend "sqlite": location is the data directory */
rd_store_t *rd_store_open(const char *backend, const char *location,
    char *err);
int rd_store_load(rd_store_t *s, rd_store_load_pt cb, void *data,
    uint64_t *index, char *err);
int rd_store_commit(rd_store_t *s, const rd_store_op_t *ops, size_t n,
    uint64_t index, char *err);
int rd_store_check(rd_store_t *s, char *err);
void rd_store_close(rd_store_t *s);

#endif
