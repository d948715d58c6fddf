/*
 * rd_store_etcd: the registry in an etcd cluster, for several registryd
 * replicas over one store: the store itself (open, load, commit); its
 * follower is in rd_store_etcd_watch.c, the session (lease, leader,
 * heartbeats, compaction) in rd_store_etcd_session.c.
 *
 * Keys, under the prefix (etcd_prefix, "/ngx-mesh/" by default):
 *
 *   instances/<service>/<id>, policies/<name>   as in every store
 *   index              {"index":N}: the registry index
 *   id                 the registry's id, written once by the first replica
 *   writers/<replica>  {"batch":K}: the last commit of each replica
 *   leader             the replica that runs health checks and TTLs, on
 *                      its lease
 *   seen/<replica>     instances heartbeated through that replica lately,
 *                      on its lease
 *
 * A commit is one etcd transaction: its puts and deletes and the new
 * index, on the condition that the index key is still the one this
 * replica last read or wrote (its mod_revision). So commits from several
 * replicas are serialized through the index key, each decided on the
 * state it was decided on, and index N names the same state everywhere.
 * A commit whose condition fails is refused with RD_STORE_CONFLICT: the
 * replica was behind and must catch up before it decides again.
 *
 * A transaction whose answer was lost (a timeout, a dropped connection,
 * an etcd proposal that timed out) may still be applied later. Before it
 * answers, the commit settles that: it writes the index key back under
 * the same condition (a fence). If the fence succeeds the lost
 * transaction can never apply; if it fails, the replica's writers/ key
 * says whether the lost one was applied (its batch number is there).
 */

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "mesh_alloc.h"
#include "rd_store_etcd_int.h"
#include "rd_util.h"

static int rd_etcd_store_open(rd_store_t *s, const rd_store_conf_t *sc,
    char *err);
static int rd_etcd_store_load(rd_store_t *s, rd_store_load_pt cb,
    void *data, uint64_t *index, char *err);
static int rd_etcd_store_commit(rd_store_t *s, const rd_store_op_t *ops,
    size_t n, uint64_t index, const char *note, char *err);
static int rd_etcd_store_check(rd_store_t *s, char *err);
static void rd_etcd_store_close(rd_store_t *s);
static int rd_etcd_store_follow(rd_store_t *s, const rd_store_hooks_t *h,
    char *err);
static void rd_etcd_store_unfollow(rd_store_t *s);
static void rd_etcd_store_applied(rd_store_t *s, uint64_t index,
    int64_t rev);

const rd_store_backend_t  rd_store_etcd = {
    "etcd",
    rd_etcd_store_open,
    rd_etcd_store_load,
    rd_etcd_store_commit,
    rd_etcd_store_check,
    rd_etcd_store_close,
    rd_etcd_store_follow,
    rd_etcd_store_unfollow,
    rd_etcd_store_applied
};


json_t *
rd_etcd_put(rd_etcd_t *e, const char *key, const char *value, size_t len)
{
    json_t  *put;

    put = json_object();
    json_object_set_new(put, "key", rd_etcd_key(e, key));
    json_object_set_new(put, "value", rd_etcd_b64(value, len));

    return json_pack("{s:o}", "request_put", put);
}


static json_t *
rd_etcd_del(rd_etcd_t *e, const char *key)
{
    return json_pack("{s:{s:o}}", "request_delete_range",
                     "key", rd_etcd_key(e, key));
}


/* "compare": the index key's mod_revision is still mod */
static json_t *
rd_etcd_index_unchanged(rd_etcd_t *e, int64_t mod)
{
    return json_pack("[{s:s,s:o,s:o,s:s}]",
                     "target", "MOD",
                     "key", rd_etcd_key(e, "index"),
                     "mod_revision", rd_etcd_num_json(mod),
                     "result", "EQUAL");
}


/* the value of a key-value of an answer, decoded */
int
rd_etcd_kv_value(json_t *kv, mesh_buf_t *out)
{
    json_t  *v;

    v = json_object_get(kv, "value");

    return rd_etcd_unb64(json_is_string(v) ? json_string_value(v) : "", out);
}


/* a JSON number field of the value of a key as etcd has it now, and the
 * key's mod_revision (0: no such key) */
static int
rd_etcd_read_num(rd_etcd_store_t *q, const char *key, const char *field,
    uint64_t *num, int64_t *mod, char *err)
{
    json_t        *req, *res, *kv, *v;
    mesh_buf_t     b;
    json_error_t   jerr;

    *num = 0;
    *mod = 0;

    req = json_pack("{s:o}", "key", rd_etcd_key(q->etcd, key));
    if (rd_etcd_call(q->etcd, "/v3/kv/range", req, &res, err)
        != RD_ETCD_OK)
    {
        json_decref(req);
        return -1;
    }

    json_decref(req);

    kv = json_array_get(json_object_get(res, "kvs"), 0);
    if (kv == NULL) {
        json_decref(res);
        return 0;
    }

    *mod = rd_etcd_num(kv, "mod_revision");

    mesh_buf_init(&b, 0);
    v = NULL;

    if (rd_etcd_kv_value(kv, &b) == 0) {
        v = json_loadb(b.data, b.len, 0, &jerr);
    }

    mesh_buf_free(&b);
    json_decref(res);

    if (!json_is_integer(json_object_get(v, field))) {
        json_decref(v);
        snprintf(err, RD_ERR_LEN, "store etcd: the key %s%s does not hold "
                 "a registry's \"%s\"", rd_etcd_prefix(q->etcd), key, field);
        return -1;
    }

    *num = (uint64_t) json_integer_value(json_object_get(v, field));
    json_decref(v);

    return 0;
}


static int
rd_etcd_store_open(rd_store_t *s, const rd_store_conf_t *sc, char *err)
{
    char              id[32];
    uint64_t          rnd;
    json_t           *req, *res, *kv;
    mesh_buf_t        b;
    rd_etcd_store_t  *q;
    struct timespec   ts;

    q = mesh_xcalloc(1, sizeof(rd_etcd_store_t));

    q->etcd = rd_etcd_create(sc->etcd_endpoints, sc->etcd_prefix,
                             sc->etcd_timeout, err);
    if (q->etcd == NULL) {
        free(q);
        return -1;
    }

    clock_gettime(CLOCK_REALTIME, &ts);
    rnd = ((uint64_t) ts.tv_nsec << 20) ^ (uint64_t) ts.tv_sec
          ^ ((uint64_t) getpid() << 40);
    rnd ^= rnd >> 29;
    rnd *= 0xbf58476d1ce4e5b9ULL;
    rnd ^= rnd >> 32;

    snprintf(q->writer, sizeof(q->writer), "writers/%016" PRIx64, rnd);

    /* the registry's id: the first replica writes it, all read it */
    snprintf(id, sizeof(id), "%" PRIu64, (rnd >> 1) | 1);

    req = json_pack("{s:[{s:s,s:o,s:s,s:s}],s:[o],s:[{s:{s:o}}]}",
                    "compare", "target", "CREATE",
                    "key", rd_etcd_key(q->etcd, "id"),
                    "create_revision", "0", "result", "EQUAL",
                    "success", rd_etcd_put(q->etcd, "id", id, strlen(id)),
                    "failure", "request_range",
                    "key", rd_etcd_key(q->etcd, "id"));

    if (rd_etcd_call(q->etcd, "/v3/kv/txn", req, &res, err) != RD_ETCD_OK) {
        json_decref(req);
        goto fail;
    }

    json_decref(req);

    if (json_is_true(json_object_get(res, "succeeded"))) {
        s->id = strtoull(id, NULL, 10);

    } else {
        kv = json_array_get(json_object_get(res, "responses"), 0);
        kv = json_object_get(json_object_get(kv, "response_range"), "kvs");
        kv = json_array_get(kv, 0);

        mesh_buf_init(&b, 0);

        if (kv == NULL || rd_etcd_kv_value(kv, &b) != 0) {
            mesh_buf_free(&b);
            json_decref(res);
            snprintf(err, RD_ERR_LEN, "store etcd: cannot read %sid",
                     rd_etcd_prefix(q->etcd));
            goto fail;
        }

        s->id = strtoull(b.data, NULL, 10);
        mesh_buf_free(&b);
    }

    json_decref(res);

    /* a transaction holds at most this many operations (etcd's
     * --max-txn-ops); two of them are the index and the writer's key */
    s->batch_max = (size_t) sc->etcd_max_txn_ops - 2;
    s->notes = 1;
    s->impl = q;

    /* the follower opens a client of its own, on the same settings */
    q->conf = *sc;
    q->endpoints = mesh_xstrdup(sc->etcd_endpoints);
    q->prefix = mesh_xstrdup(sc->etcd_prefix);
    q->conf.etcd_endpoints = q->endpoints;
    q->conf.etcd_prefix = q->prefix;

    return 0;

fail:

    rd_etcd_free(q->etcd);
    free(q);
    return -1;
}


/*
 * The index key's value: {"index":N,"events":[...]}; note (may be NULL)
 * gets the events as JSON text (free it), or NULL
 */
int
rd_etcd_index_value(const char *value, size_t len, uint64_t *index,
    char **note)
{
    json_t        *v, *n, *ev;
    json_error_t   jerr;

    v = json_loadb(value, len, 0, &jerr);
    n = json_object_get(v, "index");

    if (!json_is_integer(n) || json_integer_value(n) < 0) {
        json_decref(v);
        return -1;
    }

    *index = (uint64_t) json_integer_value(n);

    if (note) {
        ev = json_object_get(v, "events");
        *note = json_is_array(ev) ? json_dumps(ev, JSON_COMPACT) : NULL;
    }

    json_decref(v);

    return 0;
}


/* the keys of the store itself, not of the registry */
int
rd_etcd_own_key(const char *key)
{
    return strcmp(key, "index") == 0 || strcmp(key, "id") == 0
           || strcmp(key, "leader") == 0
           || strncmp(key, "writers/", 8) == 0
           || strncmp(key, "seen/", 5) == 0;
}


/*
 * Every key of the registry under the prefix, in pages, all at one
 * revision (*rev: 0 for the latest; set to the one read at), and the
 * index key's value and mod_revision at that revision (0, 0: none yet).
 */
int
rd_etcd_range_all(rd_etcd_t *e, int64_t *rev, rd_store_load_pt cb,
    void *data, uint64_t *index, int64_t *index_mod, char *err)
{
    int          rc;
    size_t       i, plen;
    json_t      *req, *res, *kvs, *kv, *k;
    mesh_buf_t   key, value;

    plen = strlen(rd_etcd_prefix(e));
    *index = 0;
    *index_mod = 0;
    mesh_buf_init(&key, 256);
    mesh_buf_init(&value, 1024);

    req = json_pack("{s:o,s:o,s:i}", "key", rd_etcd_key(e, ""),
                    "range_end", rd_etcd_prefix_end(e),
                    "limit", RD_ETCD_PAGE);

    if (*rev) {
        json_object_set_new(req, "revision", rd_etcd_num_json(*rev));
    }

    rc = -1;

    for ( ;; ) {
        if (rd_etcd_call(e, "/v3/kv/range", req, &res, err) != RD_ETCD_OK) {
            goto done;
        }

        if (*rev == 0) {
            *rev = rd_etcd_num(json_object_get(res, "header"), "revision");
            json_object_set_new(req, "revision", rd_etcd_num_json(*rev));
        }

        kvs = json_object_get(res, "kvs");

        json_array_foreach(kvs, i, kv) {
            key.len = 0;
            value.len = 0;

            k = json_object_get(kv, "key");

            if (rd_etcd_unb64(json_is_string(k) ? json_string_value(k) : "",
                              &key) != 0
                || rd_etcd_kv_value(kv, &value) != 0)
            {
                snprintf(err, RD_ERR_LEN, "store etcd: a key or value "
                         "under %s is not base64", rd_etcd_prefix(e));
                json_decref(res);
                goto done;
            }

            if (key.len >= plen && strcmp(key.data + plen, "index") == 0) {
                if (rd_etcd_index_value(value.data, value.len, index,
                                        NULL) != 0)
                {
                    snprintf(err, RD_ERR_LEN, "store etcd: the key "
                             "%sindex does not hold a registry index",
                             rd_etcd_prefix(e));
                    json_decref(res);
                    goto done;
                }

                *index_mod = rd_etcd_num(kv, "mod_revision");
                continue;
            }

            if (key.len < plen || rd_etcd_own_key(key.data + plen)) {
                continue;
            }

            if (cb(data, key.data + plen, value.data, value.len, err) != 0) {
                json_decref(res);
                goto done;
            }
        }

        if (!json_is_true(json_object_get(res, "more"))
            || json_array_size(kvs) == 0)
        {
            json_decref(res);
            break;
        }

        /* the next page starts just after the last key */
        kv = json_array_get(kvs, json_array_size(kvs) - 1);
        key.len = 0;
        k = json_object_get(kv, "key");
        rd_etcd_unb64(json_string_value(k), &key);
        mesh_buf_addc(&key, '\0');
        json_object_set_new(req, "key", rd_etcd_b64(key.data, key.len));
        json_decref(res);
    }

    rc = 0;

done:

    json_decref(req);
    mesh_buf_free(&key);
    mesh_buf_free(&value);

    return rc;
}


static int
rd_etcd_store_load(rd_store_t *s, rd_store_load_pt cb, void *data,
    uint64_t *index, char *err)
{
    rd_etcd_store_t  *q = s->impl;

    /* the follower goes on from the revision read at */
    q->load_rev = 0;

    if (rd_etcd_range_all(q->etcd, &q->load_rev, cb, data, &q->index,
                          &q->index_mod, err)
        != 0)
    {
        return -1;
    }

    *index = q->index;

    return 0;
}


/* the ops of a batch, the last op of a key only (etcd refuses a
 * transaction that names a key twice) */
static json_t *
rd_etcd_ops(rd_etcd_t *e, const rd_store_op_t *ops, size_t n)
{
    size_t   i, j;
    json_t  *list;

    list = json_array();

    for (i = 0; i < n; i++) {
        for (j = i + 1; j < n; j++) {
            if (strcmp(ops[i].key, ops[j].key) == 0) {
                break;
            }
        }

        if (j < n) {
            continue;               /* a later op of this batch wins */
        }

        json_array_append_new(list, ops[i].del
                                    ? rd_etcd_del(e, ops[i].key)
                                    : rd_etcd_put(e, ops[i].key,
                                                  ops[i].value,
                                                  ops[i].value_len));
    }

    return list;
}


static json_t *
rd_etcd_index_put(rd_etcd_store_t *q, uint64_t index, const char *note)
{
    json_t      *put;
    mesh_buf_t   v;

    mesh_buf_init(&v, 64 + (note ? strlen(note) : 0));
    mesh_buf_printf(&v, "{\"index\":%" PRIu64, index);

    if (note) {
        mesh_buf_adds(&v, ",\"events\":");
        mesh_buf_adds(&v, note);
    }

    mesh_buf_addc(&v, '}');

    put = rd_etcd_put(q->etcd, "index", v.data, v.len);
    mesh_buf_free(&v);

    return put;
}


static json_t *
rd_etcd_writer_put(rd_etcd_store_t *q, uint64_t batch)
{
    char  v[64];

    snprintf(v, sizeof(v), "{\"batch\":%" PRIu64 "}", batch);

    return rd_etcd_put(q->etcd, q->writer, v, strlen(v));
}


/*
 * After a transaction whose answer was lost: make sure it can no longer
 * apply, and say whether it did. 1: it applied; 0: it did not and never
 * will; -1: etcd cannot tell now.
 */
static int
rd_etcd_settle(rd_etcd_store_t *q, uint64_t batch, uint64_t index,
    char *err)
{
    int       rc;
    char      e2[RD_ERR_LEN];
    json_t   *req, *res;
    int64_t   mod;
    uint64_t  last;

    /* the fence: the index key written again as it was */
    req = json_pack("{s:o,s:[o]}",
                    "compare", rd_etcd_index_unchanged(q->etcd,
                                                       q->index_mod),
                    "success", rd_etcd_index_put(q, q->index, NULL));

    rc = rd_etcd_call(q->etcd, "/v3/kv/txn", req, &res, e2);
    json_decref(req);

    if (rc != RD_ETCD_OK) {
        snprintf(err, RD_ERR_LEN, "%s (the outcome of the commit is not "
                 "known yet)", e2);
        return -1;
    }

    if (json_is_true(json_object_get(res, "succeeded"))) {
        q->index_mod = rd_etcd_num(json_object_get(res, "header"),
                                   "revision");
        json_decref(res);
        snprintf(err, RD_ERR_LEN, "store etcd: no answer to a commit, "
                 "which was not applied");
        return 0;
    }

    json_decref(res);

    /* the index moved: by this commit, or by another replica's */

    if (rd_etcd_read_num(q, q->writer, "batch", &last, &mod, e2) != 0) {
        snprintf(err, RD_ERR_LEN, "%s (the outcome of the commit is not "
                 "known yet)", e2);
        return -1;
    }

    if (last != batch) {
        snprintf(err, RD_ERR_LEN, "store etcd: the registry in etcd moved "
                 "on since this replica read it");
        return 0;
    }

    if (rd_etcd_read_num(q, "index", "index", &last, &mod, e2) != 0) {
        snprintf(err, RD_ERR_LEN, "%s (the commit was applied)", e2);
        return -1;
    }

    q->index = index;
    q->index_mod = (last == index) ? mod : -1;

    return 1;
}


static int
rd_etcd_store_commit(rd_store_t *s, const rd_store_op_t *ops, size_t n,
    uint64_t index, const char *note, char *err)
{
    int               rc, tries;
    json_t           *req, *res, *list, *kv;
    uint64_t          batch;
    rd_etcd_store_t  *q = s->impl;

    list = rd_etcd_ops(q->etcd, ops, n);

    /* a transaction that is known not to have applied (fenced) is sent
     * again, on the next endpoint, once per endpoint at most */

    for (tries = 0; ; tries++) {
        batch = ++q->batch;

        /* a shallow copy: the ops are shared, the two keys are this
         * try's own */
        req = json_pack("{s:o,s:o,s:[{s:{s:o}}]}",
                        "compare", rd_etcd_index_unchanged(q->etcd,
                                                           q->index_mod),
                        "success", json_copy(list),
                        "failure", "request_range",
                        "key", rd_etcd_key(q->etcd, "index"));
        json_array_append_new(json_object_get(req, "success"),
                              rd_etcd_index_put(q, index, note));
        json_array_append_new(json_object_get(req, "success"),
                              rd_etcd_writer_put(q, batch));

        rc = rd_etcd_call(q->etcd, "/v3/kv/txn", req, &res, err);
        json_decref(req);

        if (rc != RD_ETCD_UNKNOWN) {
            break;
        }

        rc = rd_etcd_settle(q, batch, index, err);

        if (rc == 1) {
            json_decref(list);
            return 0;
        }

        if (rc < 0 || tries + 1 >= (int) rd_etcd_endpoints_n(q->etcd)) {
            json_decref(list);
            /* the cause was the store's silence, either way */
            return rc == 0 ? RD_STORE_DOWN : RD_STORE_UNKNOWN;
        }
    }

    json_decref(list);

    if (rc != RD_ETCD_OK) {
        return rc == RD_ETCD_DOWN ? RD_STORE_DOWN : -1;
    }

    if (!json_is_true(json_object_get(res, "succeeded"))) {
        /* where the index key is now: what to catch up with */
        kv = json_array_get(json_object_get(res, "responses"), 0);
        kv = json_object_get(json_object_get(kv, "response_range"), "kvs");
        s->behind = rd_etcd_num(json_array_get(kv, 0), "mod_revision");

        json_decref(res);
        snprintf(err, RD_ERR_LEN, "store etcd: the registry in etcd moved "
                 "on since this replica read it");
        return RD_STORE_CONFLICT;
    }

    q->index = index;
    __atomic_store_n(&q->index_mod,
                     rd_etcd_num(json_object_get(res, "header"), "revision"),
                     __ATOMIC_RELEASE);
    json_decref(res);

    return 0;
}


static int
rd_etcd_store_check(rd_store_t *s, char *err)
{
    int               rc;
    json_t           *req, *res;
    rd_etcd_store_t  *q = s->impl;

    req = json_pack("{s:o,s:b}", "key", rd_etcd_key(q->etcd, "index"),
                    "count_only", 1);

    rc = rd_etcd_call(q->etcd, "/v3/kv/range", req, &res, err);
    json_decref(req);
    json_decref(res);

    return rc == RD_ETCD_OK ? 0 : -1;
}


static void
rd_etcd_store_close(rd_store_t *s)
{
    rd_etcd_store_t  *q = s->impl;

    if (q == NULL) {
        return;
    }

    rd_etcd_store_unfollow(s);
    rd_etcd_free(q->etcd);
    free(q->endpoints);
    free(q->prefix);
    free(q);
    s->impl = NULL;
}


static int
rd_etcd_store_follow(rd_store_t *s, const rd_store_hooks_t *h, char *err)
{
    rd_etcd_store_t  *q = s->impl;

    q->hooks = *h;
    q->stop = 0;

    if (pthread_create(&q->thread, NULL, rd_etcd_follow_loop, s) != 0) {
        snprintf(err, RD_ERR_LEN, "cannot start the etcd watch thread");
        return -1;
    }

    if (pthread_create(&q->session, NULL, rd_etcd_session_loop, s) != 0) {
        q->stop = 1;
        pthread_join(q->thread, NULL);
        snprintf(err, RD_ERR_LEN, "cannot start the etcd session thread");
        return -1;
    }

    q->following = 1;

    return 0;
}


static void
rd_etcd_store_unfollow(rd_store_t *s)
{
    rd_etcd_store_t  *q = s->impl;

    if (q == NULL || !q->following) {
        return;
    }

    q->stop = 1;
    pthread_join(q->thread, NULL);
    pthread_join(q->session, NULL);
    q->following = 0;
}


static void
rd_etcd_store_applied(rd_store_t *s, uint64_t index, int64_t rev)
{
    rd_etcd_store_t  *q = s->impl;

    q->index = index;
    __atomic_store_n(&q->index_mod, rev, __ATOMIC_RELEASE);
}


int
rd_store_etcd_endpoints(rd_store_t *s, const char *endpoints, char *err)
{
    rd_etcd_store_t  *q = s->impl;

    if (s->backend != &rd_store_etcd) {
        snprintf(err, RD_ERR_LEN, "the store is not etcd");
        return -1;
    }

    return rd_etcd_set_endpoints(q->etcd, endpoints, err);
}
