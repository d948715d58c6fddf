/*
 * rd_store_etcd_session: the etcd store's session thread: this process's
 * lease, the leader key on it, heartbeats for the other replicas, and the
 * leader's compaction of etcd's history (rd_store_etcd.c starts it).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mesh_alloc.h"
#include "rd_store_etcd_int.h"
#include "rd_util.h"


/*
 * The session: a lease this process keeps alive (RD_ETCD_LEASE_TTL s),
 * the leader key held on it when this process is elected, and the
 * instances heartbeated here lately, put under seen/<replica> on it.
 * When the process dies the lease runs out, the key goes, and another
 * replica takes the lead within the lease's TTL and a tick.
 */

#define RD_ETCD_LEASE_TTL  3        /* s */
#define RD_ETCD_TICK       250      /* ms */


static int64_t
rd_etcd_lease_grant(rd_etcd_t *e)
{
    int64_t   id;
    json_t   *req, *res;
    char      err[RD_ERR_LEN];

    req = json_pack("{s:i}", "TTL", RD_ETCD_LEASE_TTL);

    if (rd_etcd_call(e, "/v3/lease/grant", req, &res, err) != RD_ETCD_OK) {
        json_decref(req);
        return 0;
    }

    json_decref(req);
    id = rd_etcd_num(res, "ID");
    json_decref(res);

    return id;
}


/* 1: alive; 0: gone (expired); -1: etcd did not answer */
static int
rd_etcd_lease_keepalive(rd_etcd_t *e, int64_t lease)
{
    int       rc;
    json_t   *req, *res;
    char      err[RD_ERR_LEN];

    req = json_pack("{s:o}", "ID", rd_etcd_num_json(lease));
    rc = rd_etcd_call(e, "/v3/lease/keepalive", req, &res, err);
    json_decref(req);

    if (rc != RD_ETCD_OK) {
        return -1;
    }

    rc = rd_etcd_num(json_object_get(res, "result"), "TTL") > 0;
    json_decref(res);

    return rc;
}


static void
rd_etcd_lease_revoke(rd_etcd_t *e, int64_t lease)
{
    json_t  *req, *res;
    char     err[RD_ERR_LEN];

    req = json_pack("{s:o}", "ID", rd_etcd_num_json(lease));

    if (rd_etcd_call(e, "/v3/lease/revoke", req, &res, err) == RD_ETCD_OK) {
        json_decref(res);
    }

    json_decref(req);
}


/* 1: this process holds the leader key now */
static int
rd_etcd_campaign(rd_etcd_store_t *q, rd_etcd_t *e, int64_t lease)
{
    int       won;
    json_t   *req, *res, *put;
    char      err[RD_ERR_LEN];

    /* a read first: a held key costs no raft proposal */
    req = json_pack("{s:o,s:b}", "key", rd_etcd_key(e, "leader"),
                    "count_only", 1);

    if (rd_etcd_call(e, "/v3/kv/range", req, &res, err) != RD_ETCD_OK) {
        json_decref(req);
        return 0;
    }

    json_decref(req);
    won = (rd_etcd_num(res, "count") == 0);
    json_decref(res);

    if (!won) {
        return 0;
    }

    put = json_object();
    json_object_set_new(put, "key", rd_etcd_key(e, "leader"));
    json_object_set_new(put, "value", rd_etcd_b64(q->writer + 8,
                                                  strlen(q->writer + 8)));
    json_object_set_new(put, "lease", rd_etcd_num_json(lease));

    req = json_pack("{s:[{s:s,s:o,s:s,s:s}],s:[{s:o}]}",
                    "compare", "target", "CREATE",
                    "key", rd_etcd_key(e, "leader"),
                    "create_revision", "0", "result", "EQUAL",
                    "success", "request_put", put);

    won = 0;

    if (rd_etcd_call(e, "/v3/kv/txn", req, &res, err) == RD_ETCD_OK) {
        won = json_is_true(json_object_get(res, "succeeded"));
        json_decref(res);
    }

    json_decref(req);

    return won;
}


/* the store's revision now; 0: etcd did not answer */
static int64_t
rd_etcd_revision(rd_etcd_t *e)
{
    char      err[RD_ERR_LEN];
    json_t   *req, *res;
    int64_t   rev;

    req = json_pack("{s:o,s:b}", "key", rd_etcd_key(e, "index"),
                    "count_only", 1);

    if (rd_etcd_call(e, "/v3/kv/range", req, &res, err) != RD_ETCD_OK) {
        json_decref(req);
        return 0;
    }

    json_decref(req);
    rev = rd_etcd_num(json_object_get(res, "header"), "revision");
    json_decref(res);

    return rev;
}


/*
 * The leader compacts etcd's history: every etcd_history it drops what
 * came before the revision it saw one etcd_history earlier, so a watch
 * can resume after an outage that long (a longer one reads everything
 * again). Every commit writes the index key: without this the history
 * would grow for ever.
 */
static void
rd_etcd_compact(rd_etcd_store_t *q, rd_etcd_t *e, int64_t now,
    int64_t *at, int64_t *keep)
{
    char      err[RD_ERR_LEN];
    json_t   *req, *res;
    int64_t   rev;

    if (now < *at) {
        return;
    }

    *at = now + q->conf.etcd_history;
    rev = rd_etcd_revision(e);

    if (*keep > 0) {
        req = json_pack("{s:o}", "revision", rd_etcd_num_json(*keep));

        if (rd_etcd_call(e, "/v3/kv/compaction", req, &res, err)
            == RD_ETCD_OK)
        {
            rd_debug("store etcd: history before revision %lld compacted",
                     (long long) *keep);
            json_decref(res);
        }

        json_decref(req);
    }

    *keep = rev;
}


void *
rd_etcd_session_loop(void *arg)
{
    int               leader, alive, waited;
    char              err[RD_ERR_LEN], seen[64];
    json_t           *req, *res, *put;
    int64_t           lease, now, last_alive, compact_at, keep;
    rd_etcd_t        *e;
    mesh_buf_t        pending;
    rd_store_t       *s = arg;
    rd_etcd_store_t  *q = s->impl;

    e = rd_etcd_create(q->endpoints, q->prefix, q->conf.etcd_timeout, err);
    if (e == NULL) {
        rd_error("%s", err);
        return NULL;
    }

    snprintf(seen, sizeof(seen), "seen/%s", q->writer + 8);
    mesh_buf_init(&pending, 4096);

    lease = 0;
    leader = 0;
    last_alive = 0;
    compact_at = 0;
    keep = 0;

    while (!q->stop) {
        now = rd_now_ms();

        if (lease == 0) {
            lease = rd_etcd_lease_grant(e);
            last_alive = now;

        } else if (now - last_alive >= 1000) {
            alive = rd_etcd_lease_keepalive(e, lease);

            if (alive == 1) {
                last_alive = now;

            } else if (alive == 0
                       || now - last_alive > RD_ETCD_LEASE_TTL * 1000)
            {
                /* gone, or as good as gone: another may lead by now */
                lease = 0;
            }
        }

        if (leader && lease == 0) {
            leader = 0;
            rd_warn("store etcd: this replica's lease ran out: it no "
                    "longer runs the health checks and TTLs");
            q->hooks.leader(q->hooks.data, 0);
        }

        if (lease && !leader && rd_etcd_campaign(q, e, lease)) {
            leader = 1;
            rd_info("store etcd: this replica leads: it runs the health "
                    "checks and TTLs");
            q->hooks.leader(q->hooks.data, 1);
        }

        if (leader) {
            rd_etcd_compact(q, e, now, &compact_at, &keep);

        } else {
            /* a new leader starts its own count */
            compact_at = 0;
            keep = 0;
        }

        pending.len = 0;
        q->hooks.take(q->hooks.data, &pending);

        if (pending.len && lease) {
            put = rd_etcd_put(e, seen, pending.data, pending.len);
            json_object_set_new(json_object_get(put, "request_put"),
                                "lease", rd_etcd_num_json(lease));
            req = json_pack("{s:[o]}", "success", put);

            if (rd_etcd_call(e, "/v3/kv/txn", req, &res, err)
                == RD_ETCD_OK)
            {
                json_decref(res);
            }

            json_decref(req);
        }

        for (waited = 0; waited < RD_ETCD_TICK && !q->stop; waited += 25) {
            usleep(25000);
        }
    }

    /* a clean stop hands the lead over at once */
    if (lease) {
        rd_etcd_lease_revoke(e, lease);
    }

    if (leader) {
        q->hooks.leader(q->hooks.data, 0);
    }

    mesh_buf_free(&pending);
    rd_etcd_free(e);

    return NULL;
}


