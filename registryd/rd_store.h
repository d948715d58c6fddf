/*
 * rd_store: durable key-value storage of the registry, behind a small
 * interface that more than one backend serves: SQLite (one registryd on
 * one machine, rd_store_sqlite.c) and etcd (several registryd replicas
 * over an etcd cluster, rd_store_etcd.c).
 *
 * Keys are "instances/<service>/<id>" and "policies/<name>"; values are
 * JSON text. The store also keeps the registry index. A commit applies a
 * batch of operations and the new index atomically and returns only once
 * they are durable (etcd: committed by a quorum).
 */

#ifndef RD_STORE_H
#define RD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "mesh_buf.h"
#include "rd_log.h"

typedef struct rd_store_s  rd_store_t;

/* rd_store_commit() results besides 0 and -1 (failed, nothing applied) */
#define RD_STORE_CONFLICT  -2   /* another writer moved the store on: this
                                   one must catch up and decide again */
#define RD_STORE_UNKNOWN   -3   /* no answer: it may have been applied */
#define RD_STORE_DOWN      -4   /* the store cannot be reached */

typedef struct {
    const char  *backend;           /* "sqlite" or "etcd" */
    const char  *data_dir;          /* sqlite: the database's folder */
    const char  *etcd_endpoints;    /* "http://h:p,http://h:p" */
    const char  *etcd_prefix;       /* "/ngx-mesh/" */
    int64_t      etcd_timeout;      /* ms, one call */
    int64_t      etcd_max_txn_ops;  /* etcd's --max-txn-ops */
    int64_t      etcd_history;      /* ms of history the leader keeps */
} rd_store_conf_t;

typedef struct {
    int          del;           /* 1: delete key, value unused */
    const char  *key;
    const char  *value;
    size_t       value_len;
} rd_store_op_t;

/* called once per stored key by load; non-zero stops the load */
typedef int (*rd_store_load_pt)(void *data, const char *key,
    const char *value, size_t len, char *err);

/*
 * A store that others write too (etcd) tells its follower about each of
 * their commits, in the order they were committed: the keys it changed
 * (value NULL: deleted), the registry index after it, the store's
 * revision of it, and the note its writer committed with it (the events,
 * as a JSON array). A reload (after a gap the store can no longer fill)
 * holds every key instead, and no note.
 */
typedef struct {
    int                    reload;
    uint64_t               index;
    int64_t                rev;
    const rd_store_op_t   *ops;
    size_t                 nops;
    const char            *note;        /* NULL: none */
} rd_store_change_t;

/*
 * What a shared store tells its user, on the store's own threads:
 *
 *   change   another writer's commit, or a reload
 *   state    the follower is connected, or not and why
 *   leader   this process holds the store's leadership (1) or not (0):
 *            one process at a time runs what must run once (health
 *            checks, TTL expiry)
 *   seen     instances heartbeated through another process, a list of
 *            "service/id\n" (they are alive now)
 *   take     the instances heartbeated here since the last take, for the
 *            others, into b ("service/id\n" each)
 */
typedef struct {
    void   (*change)(void *data, const rd_store_change_t *ch);
    void   (*state)(void *data, int connected, const char *why);
    void   (*leader)(void *data, int leader);
    void   (*seen)(void *data, const char *list, size_t len);
    void   (*take)(void *data, mesh_buf_t *b);
    void    *data;
} rd_store_hooks_t;

typedef struct {
    const char  *name;
    int        (*open)(rd_store_t *s, const rd_store_conf_t *sc, char *err);
    int        (*load)(rd_store_t *s, rd_store_load_pt cb, void *data,
                       uint64_t *index, char *err);
    int        (*commit)(rd_store_t *s, const rd_store_op_t *ops, size_t n,
                         uint64_t index, const char *note, char *err);
    int        (*check)(rd_store_t *s, char *err);
    void       (*close)(rd_store_t *s);

    /* NULL for a store nobody else writes (SQLite): its one user leads */
    int        (*follow)(rd_store_t *s, const rd_store_hooks_t *hooks,
                         char *err);
    void       (*unfollow)(rd_store_t *s);
    /* the follower applied a change: later commits build on it */
    void       (*applied)(rd_store_t *s, uint64_t index, int64_t rev);
} rd_store_backend_t;

struct rd_store_s {
    const rd_store_backend_t  *backend;
    void                      *impl;
    uint64_t                   id;      /* the registry's id, set by open:
                                           the same for as long as the
                                           stored data lives */
    size_t                     batch_max; /* ops in one commit at most;
                                             0: no limit */
    int64_t                    behind;  /* after RD_STORE_CONFLICT: the
                                           revision to have applied
                                           before deciding again */
    int                        notes;   /* commit keeps a note (events)
                                           for the followers */
};

extern const rd_store_backend_t  rd_store_sqlite;
extern const rd_store_backend_t  rd_store_etcd;

rd_store_t *rd_store_open(const rd_store_conf_t *sc, char *err);

/* an etcd store's endpoints replaced (a config reload, tests) */
int rd_store_etcd_endpoints(rd_store_t *s, const char *endpoints,
    char *err);
int rd_store_load(rd_store_t *s, rd_store_load_pt cb, void *data,
    uint64_t *index, char *err);
int rd_store_commit(rd_store_t *s, const rd_store_op_t *ops, size_t n,
    uint64_t index, const char *note, char *err);
/* 0 and nothing done for a store nobody else writes */
int rd_store_follow(rd_store_t *s, const rd_store_hooks_t *hooks,
    char *err);
void rd_store_unfollow(rd_store_t *s);
void rd_store_applied(rd_store_t *s, uint64_t index, int64_t rev);
int rd_store_check(rd_store_t *s, char *err);
void rd_store_close(rd_store_t *s);

#endif
