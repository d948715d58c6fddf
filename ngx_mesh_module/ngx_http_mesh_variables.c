
/*
 * Copyright (C) ngx_mesh authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


static ngx_int_t ngx_http_mesh_variable_service(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mesh_variable_instance(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_mesh_variable_index(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_mesh_vars[] = {

    { ngx_string("mesh_service"), NULL, ngx_http_mesh_variable_service, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mesh_instance"), NULL, ngx_http_mesh_variable_instance, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mesh_index"), NULL, ngx_http_mesh_variable_index, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mesh_authority"), NULL, ngx_http_mesh_variable_authority,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("mesh_upstream"), NULL, ngx_http_mesh_variable_upstream,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_mesh_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_mesh_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mesh_variable_service(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_mesh_peer_data_t  *pd;

    pd = ngx_http_get_module_ctx(r, ngx_http_mesh_module);

    if (pd == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    /* the destination's: another service where a route sent it */
    if (pd->target) {
        v->len = pd->target->service_name.len;
        v->data = pd->target->service_name.data;

    } else if (pd->conf) {
        v->len = pd->conf->service.len;
        v->data = pd->conf->service.data;

    } else {
        /* routed at a gateway, to no target */
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mesh_variable_instance(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_mesh_peer_t       *peer;
    ngx_http_mesh_peer_data_t  *pd;

    pd = ngx_http_get_module_ctx(r, ngx_http_mesh_module);
    peer = pd ? (pd->current ? pd->current : pd->last) : NULL;

    if (peer == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    /* the peers stay alive while the request holds pd->view */
    v->len = peer->id.len;
    v->data = peer->id.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mesh_variable_index(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                     *p;
    uint64_t                    index;
    ngx_http_mesh_peer_data_t  *pd;

    pd = ngx_http_get_module_ctx(r, ngx_http_mesh_module);

    if (pd && pd->view) {
        index = pd->index;

    } else {
        index = ngx_http_mesh_worker_index();
        if (index == 0) {
            v->not_found = 1;
            return NGX_OK;
        }
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%uL", index) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
