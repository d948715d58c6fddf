/*
 * rd_store_sqlite: the embedded store, one SQLite file in WAL mode.
 *
 * synchronous=FULL: a commit returns after the WAL is on disk, so an
 * acknowledged write survives kill -9 and power loss. Concurrent writes are
 * batched by the caller into one transaction (group commit), which is what
 * makes thousands of durable writes per second possible.
 */

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mesh_alloc.h"
#include "rd_store.h"

typedef struct {
    sqlite3       *db;
    sqlite3_stmt  *put;
    sqlite3_stmt  *del;
    sqlite3_stmt  *set_index;
} rd_sqlite_t;

static int rd_sqlite_open(rd_store_t *s, const rd_store_conf_t *sc,
    char *err);
static int rd_sqlite_load(rd_store_t *s, rd_store_load_pt cb, void *data,
    uint64_t *index, char *err);
static int rd_sqlite_commit(rd_store_t *s, const rd_store_op_t *ops,
    size_t n, uint64_t index, const char *note, char *err);
static int rd_sqlite_check(rd_store_t *s, char *err);
static void rd_sqlite_close(rd_store_t *s);

const rd_store_backend_t  rd_store_sqlite = {
    "sqlite",
    rd_sqlite_open,
    rd_sqlite_load,
    rd_sqlite_commit,
    rd_sqlite_check,
    rd_sqlite_close,
    NULL,
    NULL,
    NULL
};

static const char  rd_sqlite_schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    /* pages from memory, not read(): the writer is the only user */
    "PRAGMA cache_size=-65536;"
    "PRAGMA mmap_size=268435456;"
    "PRAGMA wal_autocheckpoint=8192;"
    "CREATE TABLE IF NOT EXISTS kv ("
    "  key   TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS meta ("
    "  name  TEXT PRIMARY KEY,"
    "  value INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "INSERT OR IGNORE INTO meta (name, value) VALUES ('index', 0);"
    "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', 1);"
    /* names this store: a client that moves to another store (a new
     * registry) sees its index start over under another id */
    "INSERT OR IGNORE INTO meta (name, value) "
    "  VALUES ('registry_id', (random() & 9223372036854775807) | 1);";


static int
rd_mkdir_p(const char *path, char *err)
{
    char   tmp[4096], *p;

    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int) sizeof(tmp)) {
        snprintf(err, RD_ERR_LEN, "data dir path too long");
        return -1;
    }

    for (p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                snprintf(err, RD_ERR_LEN, "mkdir %s: %s", tmp,
                         strerror(errno));
                return -1;
            }
            *p = '/';
        }
    }

    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        snprintf(err, RD_ERR_LEN, "mkdir %s: %s", tmp, strerror(errno));
        return -1;
    }

    return 0;
}


static int
rd_sqlite_open(rd_store_t *s, const rd_store_conf_t *sc, char *err)
{
    char           path[4096], *msg;
    const char    *location = sc->data_dir;
    rd_sqlite_t   *q;
    sqlite3_stmt  *st;

    if (rd_mkdir_p(location, err) != 0) {
        return -1;
    }

    if (snprintf(path, sizeof(path), "%s/registry.db", location)
        >= (int) sizeof(path))
    {
        snprintf(err, RD_ERR_LEN, "data dir path too long");
        return -1;
    }

    q = mesh_xcalloc(1, sizeof(rd_sqlite_t));

    if (sqlite3_open_v2(path, &q->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                        | SQLITE_OPEN_FULLMUTEX, NULL)
        != SQLITE_OK)
    {
        snprintf(err, RD_ERR_LEN, "open %s: %s", path,
                 q->db ? sqlite3_errmsg(q->db) : "out of memory");
        goto fail;
    }

    sqlite3_busy_timeout(q->db, 5000);

    if (sqlite3_exec(q->db, rd_sqlite_schema, NULL, NULL, &msg)
        != SQLITE_OK)
    {
        snprintf(err, RD_ERR_LEN, "%s: %s", path, msg);
        sqlite3_free(msg);
        goto fail;
    }

    if (sqlite3_prepare_v2(q->db,
            "INSERT INTO kv (key, value) VALUES (?1, ?2) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            -1, &q->put, NULL) != SQLITE_OK
        || sqlite3_prepare_v2(q->db, "DELETE FROM kv WHERE key = ?1",
                              -1, &q->del, NULL) != SQLITE_OK
        || sqlite3_prepare_v2(q->db,
                              "UPDATE meta SET value = ?1 "
                              "WHERE name = 'index'",
                              -1, &q->set_index, NULL) != SQLITE_OK)
    {
        snprintf(err, RD_ERR_LEN, "%s: %s", path, sqlite3_errmsg(q->db));
        goto fail;
    }

    if (sqlite3_prepare_v2(q->db, "SELECT value FROM meta "
                           "WHERE name = 'registry_id'", -1, &st, NULL)
        != SQLITE_OK)
    {
        snprintf(err, RD_ERR_LEN, "%s: %s", path, sqlite3_errmsg(q->db));
        goto fail;
    }

    if (sqlite3_step(st) == SQLITE_ROW) {
        s->id = (uint64_t) sqlite3_column_int64(st, 0);
    }

    sqlite3_finalize(st);

    s->impl = q;
    return 0;

fail:

    sqlite3_finalize(q->put);
    sqlite3_finalize(q->del);
    sqlite3_finalize(q->set_index);
    sqlite3_close(q->db);
    free(q);
    return -1;
}


static int
rd_sqlite_load(rd_store_t *s, rd_store_load_pt cb, void *data,
    uint64_t *index, char *err)
{
    int            rc;
    rd_sqlite_t   *q = s->impl;
    sqlite3_stmt  *st;

    if (sqlite3_prepare_v2(q->db, "SELECT value FROM meta "
                           "WHERE name = 'index'", -1, &st, NULL)
        != SQLITE_OK)
    {
        snprintf(err, RD_ERR_LEN, "load: %s", sqlite3_errmsg(q->db));
        return -1;
    }

    *index = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *index = (uint64_t) sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);

    if (sqlite3_prepare_v2(q->db, "SELECT key, value FROM kv ORDER BY key",
                           -1, &st, NULL)
        != SQLITE_OK)
    {
        snprintf(err, RD_ERR_LEN, "load: %s", sqlite3_errmsg(q->db));
        return -1;
    }

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char  *key = (const char *) sqlite3_column_text(st, 0);
        const char  *val = (const char *) sqlite3_column_text(st, 1);
        int          len = sqlite3_column_bytes(st, 1);

        if (key == NULL || val == NULL) {
            continue;
        }

        if (cb(data, key, val, (size_t) len, err) != 0) {
            sqlite3_finalize(st);
            return -1;
        }
    }

    if (rc != SQLITE_DONE) {
        snprintf(err, RD_ERR_LEN, "load: %s", sqlite3_errmsg(q->db));
        sqlite3_finalize(st);
        return -1;
    }

    sqlite3_finalize(st);
    return 0;
}


static int
rd_sqlite_step(rd_sqlite_t *q, sqlite3_stmt *st, char *err)
{
    int  rc;

    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);

    if (rc != SQLITE_DONE) {
        snprintf(err, RD_ERR_LEN, "store: %s", sqlite3_errmsg(q->db));
        return -1;
    }

    return 0;
}


static int
rd_sqlite_commit(rd_store_t *s, const rd_store_op_t *ops, size_t n,
    uint64_t index, const char *note, char *err)
{
    int           full;
    char         *msg;
    size_t        i;
    rd_sqlite_t  *q = s->impl;

    (void) note;                /* nobody else reads this store */

    if (sqlite3_exec(q->db, "BEGIN IMMEDIATE", NULL, NULL, &msg)
        != SQLITE_OK)
    {
        snprintf(err, RD_ERR_LEN, "store: begin: %s", msg);
        sqlite3_free(msg);
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (ops[i].del) {
            sqlite3_bind_text(q->del, 1, ops[i].key, -1, SQLITE_STATIC);
            if (rd_sqlite_step(q, q->del, err) != 0) {
                goto fail;
            }
            continue;
        }

        sqlite3_bind_text(q->put, 1, ops[i].key, -1, SQLITE_STATIC);
        sqlite3_bind_text(q->put, 2, ops[i].value, (int) ops[i].value_len,
                          SQLITE_STATIC);
        if (rd_sqlite_step(q, q->put, err) != 0) {
            goto fail;
        }
    }

    sqlite3_bind_int64(q->set_index, 1, (sqlite3_int64) index);
    if (rd_sqlite_step(q, q->set_index, err) != 0) {
        goto fail;
    }

    if (sqlite3_exec(q->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, RD_ERR_LEN, "store: commit: %s", msg);
        sqlite3_free(msg);
        goto fail;
    }

    return 0;

fail:

    /*
     * A full disk is a state to wait out, not a refusal: the write is
     * answered 503 (try again), nothing of it is kept, and writes go on
     * once there is room (the data already committed is untouched).
     */
    full = (sqlite3_extended_errcode(q->db) & 0xff) == SQLITE_FULL;

    sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);

    if (full) {
        snprintf(err, RD_ERR_LEN, "store: the disk of %s is full: the write "
                 "is not taken; try again when there is room",
                 sqlite3_db_filename(q->db, "main"));
        return RD_STORE_DOWN;
    }

    return -1;
}


static int
rd_sqlite_check(rd_store_t *s, char *err)
{
    int            rc;
    rd_sqlite_t   *q = s->impl;
    sqlite3_stmt  *st;

    if (sqlite3_prepare_v2(q->db, "SELECT value FROM meta "
                           "WHERE name = 'schema'", -1, &st, NULL)
        != SQLITE_OK)
    {
        snprintf(err, RD_ERR_LEN, "store: %s", sqlite3_errmsg(q->db));
        return -1;
    }

    rc = sqlite3_step(st);
    sqlite3_finalize(st);

    if (rc != SQLITE_ROW) {
        snprintf(err, RD_ERR_LEN, "store: %s", sqlite3_errmsg(q->db));
        return -1;
    }

    return 0;
}


static void
rd_sqlite_close(rd_store_t *s)
{
    rd_sqlite_t  *q = s->impl;

    if (q == NULL) {
        return;
    }

    sqlite3_finalize(q->put);
    sqlite3_finalize(q->del);
    sqlite3_finalize(q->set_index);
    sqlite3_close(q->db);
    free(q);
    s->impl = NULL;
}
