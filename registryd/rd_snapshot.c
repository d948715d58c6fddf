/*
 * rd_snapshot: build, cache and compress the snapshot.
 */

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "rd_snapshot.h"


void
rd_snapshot_build(rd_registry_t *reg, rd_buf_t *b, uint64_t *index)
{
    size_t           i, n;
    rd_instance_t  **all;

    pthread_rwlock_rdlock(&reg->lock);

    *index = reg->index;

    all = rd_registry_sorted(reg, &n);
    if (all == NULL) {
        n = 0;
    }

    rd_buf_reserve(b, 64 + n * 160);
    rd_buf_adds(b, "{\"index\":");
    rd_buf_add_u64(b, *index);
    rd_buf_adds(b, ",\"services\":[");

    for (i = 0; i < n; i++) {
        if (i == 0 || strcmp(all[i]->service, all[i - 1]->service) != 0) {
            if (i) {
                rd_buf_adds(b, "]},");
            }
            rd_buf_adds(b, "\n{\"name\":");
            rd_buf_add_json_str(b, all[i]->service);
            rd_buf_adds(b, ",\"instances\":[");

        } else {
            rd_buf_addc(b, ',');
        }

        rd_buf_addc(b, '\n');
        rd_buf_add(b, all[i]->snap, all[i]->snap_len);
    }

    rd_buf_adds(b, n ? "]}],\n\"policies\":[" : "],\"policies\":[");

    /* sorted by policy name, then document order */
    for (i = 0; i < reg->npolicies; i++) {
        rd_buf_adds(b, i ? ",\n" : "\n");
        rd_buf_add(b, reg->policies[i]->snap, reg->policies[i]->snap_len);
    }

    pthread_rwlock_unlock(&reg->lock);

    free(all);

    rd_buf_adds(b, "]}\n");
}


static rd_snapshot_t *
rd_snapshot_create(rd_registry_t *reg)
{
    rd_buf_t        b;
    rd_snapshot_t  *s;

    s = calloc(1, sizeof(rd_snapshot_t));
    if (s == NULL) {
        return NULL;
    }

    rd_buf_init(&b, 0);
    rd_snapshot_build(reg, &b, &s->index);

    s->json = b.data;
    s->len = b.len;
    s->refs = 1;                /* the cache's */
    pthread_mutex_init(&s->gzlock, NULL);

    return s;
}


void
rd_snapshot_release(rd_snapshot_t *s)
{
    if (s == NULL || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL)) {
        return;
    }

    pthread_mutex_destroy(&s->gzlock);
    free(s->json);
    free(s->gz);
    free(s);
}


void
rd_snapshot_cache_init(rd_snapshot_cache_t *c, rd_registry_t *reg)
{
    c->reg = reg;
    c->current = NULL;
    pthread_mutex_init(&c->lock, NULL);
}


void
rd_snapshot_cache_free(rd_snapshot_cache_t *c)
{
    rd_snapshot_release(c->current);
    c->current = NULL;
    pthread_mutex_destroy(&c->lock);
}


rd_snapshot_t *
rd_snapshot_get(rd_snapshot_cache_t *c)
{
    rd_snapshot_t  *s;

    /* one builder at a time; the others wait and share its result */
    pthread_mutex_lock(&c->lock);

    s = c->current;

    if (s == NULL || s->index != rd_registry_index(c->reg)) {
        s = rd_snapshot_create(c->reg);
        if (s == NULL) {
            pthread_mutex_unlock(&c->lock);
            return NULL;
        }

        rd_snapshot_release(c->current);
        c->current = s;
    }

    __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);

    pthread_mutex_unlock(&c->lock);

    return s;
}


int
rd_snapshot_gzip(rd_snapshot_t *s, const char **data, size_t *len)
{
    int        rc;
    z_stream   zs;
    uLong      bound;
    Bytef     *out;

    pthread_mutex_lock(&s->gzlock);

    if (s->gz == NULL) {
        memset(&zs, 0, sizeof(zs));

        /* windowBits 15 + 16: a gzip wrapper */
        if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK)
        {
            pthread_mutex_unlock(&s->gzlock);
            return -1;
        }

        bound = deflateBound(&zs, (uLong) s->len);
        out = malloc(bound);
        if (out == NULL) {
            deflateEnd(&zs);
            pthread_mutex_unlock(&s->gzlock);
            return -1;
        }

        zs.next_in = (Bytef *) s->json;
        zs.avail_in = (uInt) s->len;
        zs.next_out = out;
        zs.avail_out = (uInt) bound;

        rc = deflate(&zs, Z_FINISH);
        s->gzlen = zs.total_out;
        deflateEnd(&zs);

        if (rc != Z_STREAM_END) {
            free(out);
            pthread_mutex_unlock(&s->gzlock);
            return -1;
        }

        s->gz = (char *) out;
    }

    pthread_mutex_unlock(&s->gzlock);

    *data = s->gz;
    *len = s->gzlen;

    return 0;
}
