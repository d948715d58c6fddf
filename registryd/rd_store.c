/*
 * rd_store: backend dispatch.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_alloc.h"
#include "rd_store.h"

static const rd_store_backend_t  *rd_store_backends[] = {
    &rd_store_sqlite,
    &rd_store_etcd,
    NULL
};


rd_store_t *
rd_store_open(const rd_store_conf_t *sc, char *err)
{
    rd_store_t                 *s;
    const rd_store_backend_t  **b;

    for (b = rd_store_backends; *b; b++) {
        if (strcmp((*b)->name, sc->backend) == 0) {
            break;
        }
    }

    if (*b == NULL) {
        snprintf(err, RD_ERR_LEN, "unknown store backend \"%s\"",
                 sc->backend);
        return NULL;
    }

    s = mesh_xcalloc(1, sizeof(rd_store_t));

    s->backend = *b;

    if (s->backend->open(s, sc, err) != 0) {
        free(s);
        return NULL;
    }

    return s;
}


int
rd_store_load(rd_store_t *s, rd_store_load_pt cb, void *data,
    uint64_t *index, char *err)
{
    return s->backend->load(s, cb, data, index, err);
}


int
rd_store_commit(rd_store_t *s, const rd_store_op_t *ops, size_t n,
    uint64_t index, const char *note, char *err)
{
    return s->backend->commit(s, ops, n, index, note, err);
}


int
rd_store_check(rd_store_t *s, char *err)
{
    return s->backend->check(s, err);
}


void
rd_store_close(rd_store_t *s)
{
    if (s == NULL) {
        return;
    }

    s->backend->close(s);
    free(s);
}


int
rd_store_follow(rd_store_t *s, const rd_store_hooks_t *hooks, char *err)
{
    if (s->backend->follow == NULL) {
        return 0;
    }

    return s->backend->follow(s, hooks, err);
}


void
rd_store_unfollow(rd_store_t *s)
{
    if (s && s->backend->unfollow) {
        s->backend->unfollow(s);
    }
}


void
rd_store_applied(rd_store_t *s, uint64_t index, int64_t rev)
{
    if (s->backend->applied) {
        s->backend->applied(s, index, rev);
    }
}
