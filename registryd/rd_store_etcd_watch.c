/*
 * rd_store_etcd_watch: the etcd store's follower, a watch on the prefix
 * that hands other writers' commits to the registry (rd_store_etcd.c
 * starts it).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mesh_alloc.h"
#include "rd_store_etcd_int.h"
#include "rd_util.h"


/*
 * The follower: a watch on the prefix from the revision after the last
 * one this replica has, on a thread and a client of its own. The events
 * of one revision come in one watch response; a revision that wrote the
 * index key is a registry commit, handed to the follower's callback with
 * its changed keys and the note (events) its writer put in the index key.
 * A watch that ends is opened again from where it was; one whose start
 * was compacted away is replaced by a full read (a reload).
 */

typedef struct {
    rd_etcd_store_t  *q;
    rd_store_t       *s;
    int64_t           from;         /* the next revision to deliver */
    int               compacted;
    int               created;
    char              err[RD_ERR_LEN];

    /* the revision being gathered */
    int64_t           rev;
    int               has_index;
    uint64_t          index;
    char             *note;
    rd_store_op_t    *ops;
    size_t            nops;
    size_t            cap;
} rd_etcd_watch_t;


static void
rd_etcd_watch_add(rd_etcd_watch_t *w, int del, const char *key,
    const char *value, size_t len)
{
    if (w->nops == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->ops = mesh_xrealloc(w->ops, w->cap * sizeof(rd_store_op_t));
    }

    w->ops[w->nops].del = del;
    w->ops[w->nops].key = mesh_xstrdup(key);
    w->ops[w->nops].value = del ? NULL : mesh_xstrndup(value, len);
    w->ops[w->nops].value_len = del ? 0 : len;
    w->nops++;
}


static void
rd_etcd_watch_clear(rd_etcd_watch_t *w)
{
    size_t  i;

    for (i = 0; i < w->nops; i++) {
        free((char *) w->ops[i].key);
        free((char *) w->ops[i].value);
    }

    w->nops = 0;
    w->has_index = 0;
    free(w->note);
    w->note = NULL;
}


/* the revision gathered is complete: deliver it if it was a commit */
static void
rd_etcd_watch_flush(rd_etcd_watch_t *w)
{
    rd_store_change_t  ch;

    if (w->rev == 0) {
        return;
    }

    if (w->has_index) {
        ch.reload = 0;
        ch.index = w->index;
        ch.rev = w->rev;
        ch.ops = w->ops;
        ch.nops = w->nops;
        ch.note = w->note;
        w->q->hooks.change(w->q->hooks.data, &ch);
    }

    w->from = w->rev + 1;
    w->rev = 0;
    rd_etcd_watch_clear(w);
}


static int
rd_etcd_watch_line(void *data, const char *line, size_t len)
{
    size_t            i, plen;
    json_t           *root, *res, *events, *ev, *kv, *k, *t;
    int64_t           rev;
    const char       *name;
    mesh_buf_t        key, value;
    json_error_t      jerr;
    rd_etcd_watch_t  *w = data;

    root = json_loadb(line, len, 0, &jerr);
    res = json_object_get(root, "result");

    if (res == NULL) {
        snprintf(w->err, sizeof(w->err), "store etcd: the watch ended: %s",
                 json_is_string(json_object_get(json_object_get(root,
                                "error"), "message"))
                 ? json_string_value(json_object_get(json_object_get(root,
                                     "error"), "message"))
                 : "an answer that is not a watch response");
        json_decref(root);
        return 1;
    }

    if (rd_etcd_num(res, "compact_revision") > 0) {
        w->compacted = 1;
        json_decref(root);
        return 1;
    }

    if (json_is_true(json_object_get(res, "canceled"))) {
        snprintf(w->err, sizeof(w->err), "store etcd: the watch was "
                 "canceled");
        json_decref(root);
        return 1;
    }

    if (json_is_true(json_object_get(res, "created")) && !w->created) {
        w->created = 1;

        w->q->hooks.state(w->q->hooks.data, 1, NULL);
    }

    events = json_object_get(res, "events");
    plen = strlen(w->q->prefix);
    mesh_buf_init(&key, 256);
    mesh_buf_init(&value, 1024);

    json_array_foreach(events, i, ev) {
        kv = json_object_get(ev, "kv");
        rev = rd_etcd_num(kv, "mod_revision");

        if (rev != w->rev) {
            rd_etcd_watch_flush(w);
            w->rev = rev;
        }

        key.len = 0;
        value.len = 0;
        k = json_object_get(kv, "key");

        if (rd_etcd_unb64(json_is_string(k) ? json_string_value(k) : "",
                          &key) != 0
            || key.len < plen)
        {
            continue;
        }

        name = key.data + plen;

        /*
         * A registry revision this replica has already (its own commit,
         * mostly: every one comes back through the watch): not decoded.
         * Heartbeats are read whatever their revision.
         */
        if (rev <= __atomic_load_n(&w->q->index_mod, __ATOMIC_ACQUIRE)
            && strncmp(name, "seen/", 5) != 0)
        {
            continue;
        }

        if (rd_etcd_kv_value(kv, &value) != 0) {
            continue;
        }

        t = json_object_get(ev, "type");

        if (json_is_string(t) && strcmp(json_string_value(t), "DELETE") == 0)
        {
            if (!rd_etcd_own_key(name)) {
                rd_etcd_watch_add(w, 1, name, NULL, 0);
            }

            continue;
        }

        if (strncmp(name, "seen/", 5) == 0) {
            if (strcmp(name + 5, w->q->writer + 8) != 0) {
                w->q->hooks.seen(w->q->hooks.data, value.data, value.len);
            }

            continue;
        }

        if (strcmp(name, "index") == 0) {
            free(w->note);
            w->note = NULL;

            if (rd_etcd_index_value(value.data, value.len, &w->index,
                                    &w->note) == 0)
            {
                w->has_index = 1;
            }

            continue;
        }

        if (!rd_etcd_own_key(name)) {
            rd_etcd_watch_add(w, 0, name, value.data, value.len);
        }
    }

    /* a revision's events all come in one response */
    rd_etcd_watch_flush(w);

    mesh_buf_free(&key);
    mesh_buf_free(&value);
    json_decref(root);

    return 0;
}


static int
rd_etcd_reload_one(void *data, const char *key, const char *value,
    size_t len, char *err)
{
    (void) err;

    rd_etcd_watch_add(data, 0, key, value, len);

    return 0;
}


/* the watch's start was compacted away: read everything again */
static int
rd_etcd_watch_reload(rd_etcd_watch_t *w, rd_etcd_t *e)
{
    int64_t            rev, mod;
    uint64_t           index;
    rd_store_change_t  ch;

    rev = 0;
    rd_etcd_watch_clear(w);

    if (rd_etcd_range_all(e, &rev, rd_etcd_reload_one, w, &index, &mod,
                          w->err)
        != 0)
    {
        rd_etcd_watch_clear(w);
        return -1;
    }

    rd_warn("store etcd: the changes after revision %lld are "
           "compacted away; read the registry again at revision %lld",
           (long long) w->from - 1, (long long) rev);

    ch.reload = 1;
    ch.index = index;
    ch.rev = mod;
    ch.ops = w->ops;
    ch.nops = w->nops;
    ch.note = NULL;
    w->q->hooks.change(w->q->hooks.data, &ch);

    rd_etcd_watch_clear(w);
    w->from = rev + 1;
    w->compacted = 0;

    return 0;
}


void *
rd_etcd_follow_loop(void *arg)
{
    int               backoff, waited, told;
    char              err[RD_ERR_LEN];
    json_t           *req;
    rd_etcd_t        *e;
    rd_store_t       *s = arg;
    rd_etcd_watch_t   w;
    rd_etcd_store_t  *q = s->impl;

    memset(&w, 0, sizeof(w));
    w.q = q;
    w.s = s;
    w.from = q->load_rev + 1;

    e = rd_etcd_create(q->endpoints, q->prefix, q->conf.etcd_timeout, err);
    if (e == NULL) {
        rd_error("%s", err);
        return NULL;
    }

    backoff = 100;
    told = 0;

    while (!q->stop) {
        w.created = 0;
        w.err[0] = '\0';

        req = json_pack("{s:{s:o,s:o,s:o,s:b}}", "create_request",
                        "key", rd_etcd_key(e, ""),
                        "range_end", rd_etcd_prefix_end(e),
                        "start_revision", rd_etcd_num_json(w.from),
                        "progress_notify", 1);

        if (rd_etcd_stream(e, "/v3/watch", req, rd_etcd_watch_line, &w,
                           &q->stop, err)
            != RD_ETCD_OK && w.err[0] == '\0')
        {
            snprintf(w.err, sizeof(w.err), "%s", err);
        }

        json_decref(req);
        rd_etcd_watch_clear(&w);
        w.rev = 0;

        if (q->stop) {
            break;
        }

        if (w.compacted) {
            if (rd_etcd_watch_reload(&w, e) == 0) {
                continue;
            }
        }

        if (w.created) {
            backoff = 100;
            told = 0;
        }

        if (w.err[0] == '\0') {
            snprintf(w.err, sizeof(w.err), "store etcd: the watch ended");
        }

        q->hooks.state(q->hooks.data, 0, w.err);

        if (!told) {
            rd_warn("%s; watching again from revision %lld",
                   w.err, (long long) w.from);
            told = 1;
        }

        for (waited = 0; waited < backoff && !q->stop; waited += 20) {
            usleep(20000);
        }

        backoff = backoff < 1000 ? backoff * 2 : 2000;
    }

    rd_etcd_watch_clear(&w);
    free(w.ops);
    rd_etcd_free(e);

    return NULL;
}


