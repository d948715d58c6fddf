
/*
 * Copyright (C) ngx_mesh authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


static ngx_int_t ngx_http_mesh_status_handler(ngx_http_request_t *r);
static u_char *ngx_http_mesh_json_str(u_char *p, u_char *s, size_t len);


char *
ngx_http_mesh_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_mesh_status_handler;

    return NGX_CONF_OK;
}


static u_char *
ngx_http_mesh_json_str(u_char *p, u_char *s, size_t len)
{
    *p++ = '"';
    p = (u_char *) ngx_escape_json(p, s, len);
    *p++ = '"';

    return p;
}


static size_t
ngx_http_mesh_json_len(u_char *s, size_t len)
{
    return len + ngx_escape_json(NULL, s, len) + 2;
}


static ngx_int_t
ngx_http_mesh_status_handler(ngx_http_request_t *r)
{
    u_char                      *p, err[256];
    size_t                       size;
    int64_t                      last_sync;
    ngx_pid_t                    poller;
    uint64_t                     index;
    ngx_int_t                    rc;
    ngx_buf_t                   *b;
    ngx_uint_t                   i, j, k, state, first;
    ngx_chain_t                  out;
    ngx_http_mesh_peer_t        *peer;
    ngx_http_mesh_zone_t        *zone;
    ngx_http_mesh_target_t      *peers;
    ngx_http_mesh_srv_conf_t   **ups;
    ngx_http_mesh_main_conf_t   *mmcf;

    static const char  *states[] = { "none", "synced", "stale" };

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mesh_module);
    zone = &mmcf->zone;

    index = 0;
    state = NGX_HTTP_MESH_REG_NONE;
    last_sync = 0;
    poller = 0;
    err[0] = '\0';

    if (zone->sh) {
        (void) ngx_http_mesh_sync(mmcf, r->connection->log);

        ngx_shmtx_lock(&zone->shpool->mutex);
        index = zone->sh->index;
        state = zone->sh->reg_state;
        last_sync = zone->sh->last_sync;
        poller = zone->sh->poll_owner;
        ngx_cpystrn(err, zone->sh->last_error, sizeof(err));
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    if (state > NGX_HTTP_MESH_REG_STALE) {
        state = NGX_HTTP_MESH_REG_NONE;
    }

    ups = mmcf->upstreams.elts;

    /* size */

    size = sizeof("{\"index\":,\"registry\":{\"url\":,\"state\":\"\","
                  "\"last_sync_ms\":,\"poller_pid\":,\"last_error\":},"
                  "\"services\":[]}\n")
           + 3 * NGX_INT64_LEN + sizeof("stale") + sizeof("null")
           + ngx_http_mesh_json_len(mmcf->registry_uri.data,
                                    mmcf->registry_uri.len)
           + ngx_http_mesh_json_len(err, ngx_strlen(err));

    for (i = 0; i < mmcf->upstreams.nelts; i++) {
        size += sizeof(",{\"name\":,\"upstreams\":[],\"balancer\":\"\","
                       "\"instances\":[]}") + sizeof("consistent_hash")
                + ngx_http_mesh_json_len(ups[i]->service.data,
                                         ups[i]->service.len)
                + 1 + ngx_http_mesh_json_len(ups[i]->upstream->host.data,
                                             ups[i]->upstream->host.len);

        peers = ups[i]->view ? &ups[i]->view->targets[0] : NULL;

        for (k = 0; peers && k < peers->number; k++) {
            peer = &peers->peer[k];
            size += sizeof(",{\"id\":,\"server\":,\"weight\":,\"state\":"
                           "\"unhealthy\",\"active\":,\"requests\":,"
                           "\"failures\":}")
                    + 4 * NGX_INT64_LEN
                    + ngx_http_mesh_json_len(peer->id.data, peer->id.len)
                    + ngx_http_mesh_json_len(peer->name.data,
                                             peer->name.len);
        }
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;

    p = ngx_sprintf(p, "{\"index\":%uL,\"registry\":{\"url\":", index);
    p = ngx_http_mesh_json_str(p, mmcf->registry_uri.data,
                               mmcf->registry_uri.len);
    p = ngx_sprintf(p, ",\"state\":\"%s\",\"last_sync_ms\":%L,"
                    "\"poller_pid\":%P,\"last_error\":", states[state],
                    last_sync, poller);

    if (err[0]) {
        p = ngx_http_mesh_json_str(p, err, ngx_strlen(err));

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, "},\"services\":[", sizeof("},\"services\":[") - 1);

    first = 1;

    for (i = 0; i < mmcf->upstreams.nelts; i++) {

        /* one entry per service, at its first upstream */
        for (j = 0; j < i; j++) {
            if (ups[j]->service.len == ups[i]->service.len
                && ngx_strncmp(ups[j]->service.data, ups[i]->service.data,
                               ups[i]->service.len) == 0)
            {
                break;
            }
        }

        if (j < i) {
            continue;
        }

        if (!first) {
            *p++ = ',';
        }

        first = 0;

        p = ngx_cpymem(p, "{\"name\":", sizeof("{\"name\":") - 1);
        p = ngx_http_mesh_json_str(p, ups[i]->service.data,
                                   ups[i]->service.len);
        p = ngx_cpymem(p, ",\"upstreams\":[", sizeof(",\"upstreams\":[") - 1);

        for (j = i; j < mmcf->upstreams.nelts; j++) {
            if (ups[j]->service.len != ups[i]->service.len
                || ngx_strncmp(ups[j]->service.data, ups[i]->service.data,
                               ups[i]->service.len) != 0)
            {
                continue;
            }

            if (j != i) {
                *p++ = ',';
            }

            p = ngx_http_mesh_json_str(p, ups[j]->upstream->host.data,
                                       ups[j]->upstream->host.len);
        }

        peers = ups[i]->view ? &ups[i]->view->targets[0] : NULL;

        p = ngx_sprintf(p, "],\"balancer\":\"%s\",\"instances\":[",
                        ngx_http_mesh_balancer_name(peers ? peers->balancer
                                                    : ups[i]->balancer));

        for (k = 0; peers && k < peers->number; k++) {
            peer = &peers->peer[k];

            if (k) {
                *p++ = ',';
            }

            p = ngx_cpymem(p, "{\"id\":", sizeof("{\"id\":") - 1);
            p = ngx_http_mesh_json_str(p, peer->id.data, peer->id.len);
            p = ngx_cpymem(p, ",\"server\":", sizeof(",\"server\":") - 1);
            p = ngx_http_mesh_json_str(p, peer->name.data, peer->name.len);
            p = ngx_sprintf(p, ",\"weight\":%d,\"state\":\"%s\","
                            "\"active\":%uD,\"requests\":%uL,"
                            "\"failures\":%uL}",
                            peers->mp[k].weight,
                            peer->healthy ? "healthy" : "unhealthy",
                            peer->stat->active, peer->stat->requests,
                            peer->stat->failures);
        }

        p = ngx_cpymem(p, "]}", 2);
    }

    p = ngx_cpymem(p, "]}\n", 3);

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
