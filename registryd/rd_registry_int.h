/*
 * rd_registry_int: what the parts of the registry share (rd_registry.c:
 * the table, the sorted view, policies, TTLs; rd_instance.c: an
 * instance's codec; rd_registry_writer.c: ops, the writer thread and its
 * commits); not for other users.
 */

#ifndef RD_REGISTRY_INT_H
#define RD_REGISTRY_INT_H

#include <stddef.h>
#include <stdint.h>

#include "rd_registry.h"

#define RD_BATCH_MAX          8192
#define RD_CONFLICT_TIMEOUT   10000   /* ms a batch may be decided
                                         again, behind other replicas */
#define RD_CATCH_UP_TIMEOUT   5000    /* ms to wait for their changes */
#define RD_SEEN_MAX           (1024 * 1024)   /* heartbeats per tick */
#define RD_KEY_MAX     (2 * RD_NAME_MAX + 16)

typedef struct {
    const char     *service;
    const char     *id;
    rd_instance_t  *inst;        /* NULL: deleted in this batch */
    int             used;
} rd_overlay_slot_t;

typedef struct {
    rd_overlay_slot_t  *slots;
    size_t              mask;
} rd_overlay_t;

typedef struct {
    rd_policy_t   **v;
    size_t          n;
    size_t          cap;
    int             init;
} rd_policy_views_t;

uint64_t rd_registry_hash(const char *service, const char *id);
void rd_registry_key(char *key, const char *service, const char *id);
/* the reverse: "instances/<service>/<id>" with valid names -> service and
 * id (RD_NAME_MAX + 1 bytes each); -1: not such a key */
int rd_registry_key_split(const char *key, char *svc, char *id);
size_t rd_policy_pos(rd_policy_t *const *v, size_t n, const char *name,
    int *found);
rd_policy_t *rd_policy_array_set(rd_policy_t ***v, size_t *n, size_t *cap,
    const char *name, rd_policy_t *p);
void rd_registry_set_policy(rd_registry_t *reg, const char *name,
    rd_policy_t *p);
void rd_registry_set(rd_registry_t *reg, const char *service, const char *id,
    rd_instance_t *in);
void rd_registry_refresh_sorted(rd_registry_t *reg);
void *rd_registry_writer(void *arg);
void rd_registry_commit_batch(rd_registry_t *reg, rd_op_t *batch);
int rd_registry_load_one(void *data, const char *key, const char *value,
    size_t len, char *err);

/* rd_registry_follow.c: a store other replicas write too */
int rd_registry_follow(rd_registry_t *reg, char *err);
void rd_registry_unfollow(rd_registry_t *reg);
void rd_registry_seen_here(rd_registry_t *reg, const char *service,
    const char *id);
void rd_registry_apply_remote(rd_registry_t *reg, rd_op_t *op);
void rd_registry_apply_remotes(rd_registry_t *reg);
int rd_registry_catch_up(rd_registry_t *reg, int64_t rev, int64_t timeout);

#endif
