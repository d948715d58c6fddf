/*
 * rd_registry: the in-memory registry of service instances, its index,
 * and the single writer thread that commits changes to the store.
 *
 * Readers take the registry's read lock. Only the writer thread changes
 * the table: it takes a batch of queued operations, decides each one's
 * outcome, commits the batch to the store in one transaction, then applies
 * it under the write lock, bumps the index and reports completion.
 */

#ifndef RD_REGISTRY_H
#define RD_REGISTRY_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "mesh_buf.h"
#include "rd_events.h"
#include "rd_log.h"
#include "rd_policy.h"
#include "rd_store.h"
#include "rd_util.h"

enum {
    RD_HEALTH_PASSING = 0,
    RD_HEALTH_CRITICAL
};

typedef struct rd_instance_s  rd_instance_t;

struct rd_instance_s {
    rd_instance_t  *next;                 /* hash chain */
    char            service[RD_NAME_MAX + 1];
    char            id[RD_NAME_MAX + 1];
    char            address[64];
    int             port;
    int             weight;
    int             health;
    char           *zone;                 /* NULL: none */
    char           *labels;               /* compact JSON object */
    char           *check;                /* compact JSON object or NULL */
    int64_t         ttl;                  /* ms, 0: none */
    int64_t         deregister_after;     /* ms, 0: never */
    uint64_t        create_index;
    uint64_t        modify_index;
    char           *snap;                 /* RD_JSON_SNAPSHOT form */
    size_t          snap_len;

    /* memory only */
    int             dead;                 /* removed, free pending */
    int64_t         last_seen;            /* monotonic ms, atomic */
    int64_t         critical_since;       /* monotonic ms */
    int             pending;              /* a TTL op is queued */
    int             ttl_critical;         /* the TTL says critical */
    int             check_critical;       /* the check says critical;
                                             health is critical if either
                                             says so */
    uint64_t        put_index;            /* index of its registration */
};

enum {
    RD_OP_PUT = 0,
    RD_OP_DEL,
    RD_OP_HEALTH,
    RD_OP_POLICY_PUT,               /* id: the policy name */
    RD_OP_POLICY_DEL,
    RD_OP_POLICY_GROUP,             /* members: policy puts and deletes,
                                       all taken or none */
    RD_OP_REMOTE                    /* another replica's commit, or a
                                       reload, from a shared store */
};

typedef struct rd_op_s  rd_op_t;

typedef void (*rd_op_done_pt)(rd_op_t *op);

struct rd_op_s {
    rd_op_t        *next;
    int             type;
    char            service[RD_NAME_MAX + 1];
    char            id[RD_NAME_MAX + 1];
    rd_instance_t  *inst;                 /* PUT: owned by the op */
    rd_policy_t    *policy;               /* POLICY_PUT: owned by the op
                                             until applied */
    rd_op_t        *members;              /* POLICY_GROUP: its ops, in the
                                             order of the request */
    rd_policy_part_t part;                /* a member: its document in
                                             the request, for errors */
    int             health;               /* HEALTH: wanted state; once
                                             decided, the instance's */
    int             internal;             /* queued by the TTL scan */
    int             check;                /* HEALTH: the check's verdict
                                             (rd_health), not the TTL's */
    uint64_t        put_index;            /* HEALTH check: the registration
                                             probed; another: no-op */
    int64_t         seen;                 /* HEALTH critical: last_seen
                                             when the TTL scan fired */
    const char     *reason;               /* DEL, HEALTH: why, for the
                                             event ("api", "ttl",
                                             "heartbeat", "check",
                                             "deregister_after") */
    /* results, set by the writer before done() */
    int             status;               /* HTTP-style: 200/201/404/500 */
    uint64_t        index;
    mesh_buf_t      body;                 /* PUT: stored instance JSON */
    char            err[RD_ERR_LEN];
    rd_policy_err_t perr;                 /* POLICY_PUT refused: 400;
                                             GROUP: the member's, as in
                                             the request's body */
    int             unchanged;            /* a member PUT of the very
                                             YAML stored: not written */
    size_t          ndocs;                /* POLICY_PUT: documents */
    int             has_ev;               /* the change's event, made */
    rd_event_t      ev;                   /* when it was decided */

    /* REMOTE: the change as the store told it (owned by the op) */
    rd_store_op_t  *rops;
    size_t          nrops;
    int             reload;
    int64_t         rev;
    char           *note;

    rd_op_done_pt   done;                 /* NULL: free the op */
    void           *data;
};

typedef void (*rd_registry_change_pt)(void *data, uint64_t index);

typedef struct {
    pthread_rwlock_t        lock;
    rd_instance_t         **buckets;
    size_t                  nbuckets;
    size_t                  count;
    size_t                  nttl;         /* instances with a ttl */
    uint64_t                index;        /* committed, atomic reads */

    /*
     * The sorted view, kept between reads: the writer appends new
     * instances to "added" and moves removed ones to "dead" (not yet
     * freed: "sorted" may still point to them); a reader merges both in
     * under sort_lock. Updates change instances in place.
     */
    pthread_mutex_t         sort_lock;
    rd_instance_t         **sorted;
    size_t                  nsorted;
    rd_instance_t         **added;
    size_t                  nadded;
    size_t                  added_cap;
    rd_instance_t         **dead;
    size_t                  ndead;
    size_t                  dead_cap;

    /* policies, sorted by name; changed by the writer under the write
     * lock, read under the read lock */
    rd_policy_t           **policies;
    size_t                  npolicies;
    size_t                  policies_cap;

    rd_store_t             *store;
    int                     store_ok;
    char                    store_err[RD_ERR_LEN];  /* the last commit's
                                           failure, under qlock */

    pthread_mutex_t         qlock;
    pthread_cond_t          qcond;
    rd_op_t                *qhead;
    rd_op_t                *qtail;
    size_t                  qlen;

    /* a shared store's changes by others, for the writer to apply, in
     * order, before it decides anything new (under qlock) */
    rd_op_t                *rhead;
    rd_op_t                *rtail;
    int64_t                 remote_rev;   /* the newest one queued */
    int                     following;    /* the store is followed */
    int                     follow_ok;    /* and its changes come in */
    char                    follow_err[RD_ERR_LEN];

    /* one process of a shared store leads: it runs the health checks
     * and the TTL expiry (atomic; always 1 on a store of its own) */
    int                     leader;
    pthread_mutex_t         seen_lock;    /* heartbeats for the others */
    mesh_buf_t              seen;
    int                     stopping;
    int                     running;
    pthread_t               writer;

    rd_registry_change_pt   on_change;
    void                   *on_change_data;

    rd_events_t            *events;       /* NULL: none recorded */
} rd_registry_t;

rd_registry_t *rd_registry_create(rd_store_t *store, char *err);
void rd_registry_free(rd_registry_t *reg);

int rd_registry_start(rd_registry_t *reg, char *err);
/* drains the queue, then stops the writer */
void rd_registry_stop(rd_registry_t *reg);

/* a replica over a shared store that cannot follow its changes now: 1,
 * with why; its reads answer from the last state it knew */
int rd_registry_stale(rd_registry_t *reg, char *why, size_t size);

/* 1 when this process runs the health checks and TTL expiry */
int rd_registry_leader(rd_registry_t *reg);

uint64_t rd_registry_index(rd_registry_t *reg);
/* the store's id: a new registry (new data) has another */
uint64_t rd_registry_id(rd_registry_t *reg);

/* queue an op; op->done runs on the writer thread once it is decided */
void rd_registry_submit(rd_registry_t *reg, rd_op_t *op);

/* caller holds the read lock */
rd_instance_t *rd_registry_find(rd_registry_t *reg, const char *service,
    const char *id);
/* sorted by service then id; caller holds the read lock; free() result
 * (the pointers stay valid while the read lock is held) */
rd_instance_t **rd_registry_sorted(rd_registry_t *reg, size_t *n);

/* caller holds the read lock */
rd_policy_t *rd_registry_find_policy(rd_registry_t *reg, const char *name);

/* heartbeat: -1 unknown; 0 passing (renewed); 1 critical (op needed) */
int rd_registry_heartbeat(rd_registry_t *reg, const char *service,
    const char *id, uint64_t *index);

/* queue health transitions for expired TTLs; called by a timer */
void rd_registry_scan_ttl(rd_registry_t *reg);

void rd_registry_count_health(rd_registry_t *reg, size_t *passing,
    size_t *critical);

/* instances */
rd_op_t *rd_op_create(int type, const char *service, const char *id);
void rd_op_free(rd_op_t *op);

rd_instance_t *rd_instance_create(void);
void rd_instance_free(rd_instance_t *in);
rd_instance_t *rd_instance_dup(const rd_instance_t *in);

/*
 * Validate a JSON object into an instance. stored = 0: an API request
 * body (health and indexes are not allowed); stored = 1: a value from the
 * store. On error fills err and *field (a static string or NULL).
 */
int rd_instance_from_json(json_t *obj, int stored, rd_instance_t *in,
    char *err, const char **field);

enum {
    RD_JSON_SNAPSHOT = 0,   /* id, address, port, weight, zone, labels,
                               health */
    RD_JSON_FULL,           /* + service, ttl, check, deregister_after */
    RD_JSON_STORED          /* + indexes */
};

void rd_instance_to_json(mesh_buf_t *b, const rd_instance_t *in, int form);

#endif
