
/*
 * Copyright (C) ngx_mesh authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


static void *ngx_http_mesh_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_mesh_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_http_mesh_registry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_mesh_commands[] = {

    { ngx_string("mesh_registry"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mesh_registry,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mesh_cache_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mesh_main_conf_t, cache_file),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_mesh_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_mesh_create_main_conf,        /* create main configuration */
    ngx_http_mesh_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_mesh_module = {
    NGX_MODULE_V1,
    &ngx_http_mesh_module_ctx,             /* module context */
    ngx_http_mesh_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_mesh_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_mesh_main_conf_t  *mmcf;

    mmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mesh_main_conf_t));
    if (mmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mmcf->registry = NULL;
     *     mmcf->registry_uri = { 0, NULL };
     *     mmcf->cache_file = { 0, NULL };
     */

    return mmcf;
}


static char *
ngx_http_mesh_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_mesh_main_conf_t  *mmcf = conf;

    if (mmcf->cache_file.len
        && ngx_conf_full_name(cf->cycle, &mmcf->cache_file, 0) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_mesh_registry(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_main_conf_t  *mmcf = conf;

    size_t       add;
    ngx_str_t   *value;
    ngx_url_t   *u;

    if (mmcf->registry) {
        return "is duplicate";
    }

    value = cf->args->elts;

    add = 0;

    if (ngx_strncasecmp(value[1].data, (u_char *) "http://", 7) == 0) {
        add = 7;

    } else if (ngx_strstr(value[1].data, "://")) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid registry URL \"%V\" in \"%V\" directive, "
                           "only http:// is supported", &value[1],
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    u = ngx_pcalloc(cf->pool, sizeof(ngx_url_t));
    if (u == NULL) {
        return NGX_CONF_ERROR;
    }

    u->url.len = value[1].len - add;
    u->url.data = value[1].data + add;
    u->default_port = 7770;
    u->uri_part = 1;
    u->no_resolve = 0;

    if (ngx_parse_url(cf->pool, u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid registry URL \"%V\" in \"%V\" directive%s%s",
                           &value[1], &cmd->name, u->err ? ": " : "",
                           u->err ? u->err : "");
        return NGX_CONF_ERROR;
    }

    if (u->naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no address for registry \"%V\" in \"%V\" directive",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    mmcf->registry = u;
    mmcf->registry_uri = value[1];

    return NGX_CONF_OK;
}
