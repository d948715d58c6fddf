/*
 * rd_store_etcd_int: what the parts of the etcd store share
 * (rd_store_etcd.c: open, load, commit; rd_store_etcd_watch.c: the
 * follower; rd_store_etcd_session.c: lease, leader, heartbeats,
 * compaction); not for other users.
 */

#ifndef RD_STORE_ETCD_INT_H
#define RD_STORE_ETCD_INT_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "mesh_buf.h"
#include "rd_etcd.h"
#include "rd_store.h"

#define RD_ETCD_PAGE  1000      /* keys per range call in a load */

typedef struct {
    rd_etcd_t           *etcd;
    int64_t              index_mod;   /* mod_revision of the index key as
                                         last read, written or applied;
                                         0: absent */
    uint64_t             index;       /* its value */
    uint64_t             batch;       /* our last batch number */
    char                 writer[48];  /* "writers/<replica>" */
    int64_t              load_rev;    /* the revision load read at */

    /* the follower: its thread, its own client, where it is */
    rd_store_conf_t      conf;
    char                *endpoints;
    char                *prefix;
    pthread_t            thread;
    pthread_t            session;
    int                  following;
    volatile int         stop;
    rd_store_hooks_t     hooks;
} rd_etcd_store_t;

/* a put of key (under the prefix) as a transaction's operation */
json_t *rd_etcd_put(rd_etcd_t *e, const char *key, const char *value,
    size_t len);
/* the value of a key-value of an answer, decoded */
int rd_etcd_kv_value(json_t *kv, mesh_buf_t *out);
/* the index key's value: its index and (may be NULL) its note */
int rd_etcd_index_value(const char *value, size_t len, uint64_t *index,
    char **note);
/* 1 for the keys of the store itself (index, id, leader, writers/, seen/) */
int rd_etcd_own_key(const char *key);
/* every key of the registry at one revision, in pages */
int rd_etcd_range_all(rd_etcd_t *e, int64_t *rev, rd_store_load_pt cb,
    void *data, uint64_t *index, int64_t *index_mod, char *err);

void *rd_etcd_follow_loop(void *arg);
void *rd_etcd_session_loop(void *arg);

#endif
