
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * Consistent hash rings of one worker: shared by the targets whose members
 * are the same (found in the view in place), built at once when small and
 * a slice at a time when large (ngx_http_mesh_ring_step(), called by the
 * views' ring event).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


/* the ring of a view's target, if one with the same members is there */
static ngx_http_mesh_ring_t *
ngx_http_mesh_ring_find(ngx_http_mesh_view_t *view, u_char *members,
    size_t len)
{
    ngx_uint_t             i;
    ngx_http_mesh_ring_t  *ring;

    for (i = 0; view && i < view->ntargets; i++) {
        ring = view->targets[i].ring;

        if (ring && ring->members_len == len
            && ngx_memcmp(ring->members, members, len) == 0)
        {
            return ring;
        }
    }

    return NULL;
}


/*
 * The ring for these members: the one the current or the coming view
 * has, or a new one, built here when small and else by the ring event. A
 * ring above MESH_CHASH_MAX_POINTS is refused.
 */
ngx_http_mesh_ring_t *
ngx_http_mesh_ring_get(ngx_http_mesh_srv_conf_t *mscf, const char **servers,
    size_t *lens, int *weights, ngx_uint_t n, ngx_log_t *log)
{
    u_char                *members, *p;
    size_t                 len, points;
    ngx_uint_t             i;
    ngx_http_mesh_ring_t  *ring;

    len = 0;
    for (i = 0; i < n; i++) {
        len += lens[i] + sizeof(" 1000\n");
    }

    members = ngx_alloc(len + 1, log);
    if (members == NULL) {
        return NULL;
    }

    p = members;
    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, servers[i], lens[i]);
        p = ngx_sprintf(p, " %d\n", weights[i]);
    }

    len = p - members;

    ring = ngx_http_mesh_ring_find(mscf->view, members, len);

    if (ring == NULL) {
        ring = ngx_http_mesh_ring_find(mscf->next, members, len);
    }

    if (ring) {
        ngx_free(members);
        ring->refs++;
        return ring;
    }

    points = mesh_chash_points(weights, n);

    if (points > MESH_CHASH_MAX_POINTS) {
        if (!mscf->ring_refused) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mesh: the consistent hash ring of upstream \"%V\" "
                          "(service \"%V\", %ui instances) would have %uz "
                          "points, more than %d: refused, the upstream "
                          "keeps its last ring; lower the weights",
                          &mscf->name, &mscf->service, n,
                          points, MESH_CHASH_MAX_POINTS);
            mscf->ring_refused = 1;
        }

        ngx_free(members);
        return NULL;
    }

    mscf->ring_refused = 0;

    ring = ngx_calloc(sizeof(ngx_http_mesh_ring_t), log);
    if (ring == NULL) {
        ngx_free(members);
        return NULL;
    }

    ring->refs = 1;
    ring->members = members;
    ring->members_len = len;

    ring->builder = ngx_alloc(sizeof(mesh_chash_builder_t), log);
    if (ring->builder == NULL
        || mesh_chash_builder_init(ring->builder, servers, lens, weights, n)
           != 0)
    {
        if (ring->builder) {
            ngx_free(ring->builder);
            ring->builder = NULL;
        }

        ngx_http_mesh_ring_release(ring);
        return NULL;
    }

    if (points <= NGX_HTTP_MESH_RING_SYNC) {
        (void) mesh_chash_builder_step(ring->builder, (size_t) -1);
        mesh_chash_builder_take(ring->builder, &ring->ring);
        mesh_chash_builder_free(ring->builder);
        ngx_free(ring->builder);
        ring->builder = NULL;
    }

    return ring;
}


void
ngx_http_mesh_ring_release(ngx_http_mesh_ring_t *ring)
{
    if (ring == NULL || --ring->refs) {
        return;
    }

    if (ring->builder) {
        mesh_chash_builder_free(ring->builder);
        ngx_free(ring->builder);
    }

    mesh_chash_free(&ring->ring);
    ngx_free(ring->members);
    ngx_free(ring);
}


/* step one ring for at most until; 1 when it is built */
ngx_uint_t
ngx_http_mesh_ring_step(ngx_http_mesh_ring_t *ring, struct timespec *until)
{
    struct timespec  now;

    for ( ;; ) {
        if (mesh_chash_builder_step(ring->builder, 16384)) {
            mesh_chash_builder_take(ring->builder, &ring->ring);
            mesh_chash_builder_free(ring->builder);
            ngx_free(ring->builder);
            ring->builder = NULL;
            return 1;
        }

        (void) clock_gettime(CLOCK_MONOTONIC, &now);

        if (now.tv_sec > until->tv_sec
            || (now.tv_sec == until->tv_sec && now.tv_nsec >= until->tv_nsec))
        {
            return 0;
        }
    }
}
