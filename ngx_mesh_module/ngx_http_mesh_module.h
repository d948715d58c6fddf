
/*
 * Copyright (C) ngx_mesh authors
 */


#ifndef _NGX_HTTP_MESH_MODULE_H_INCLUDED_
#define _NGX_HTTP_MESH_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef struct {
    ngx_url_t                  *registry;     /* mesh_registry */
    ngx_str_t                   registry_uri; /* "http://host:port" as given */
    ngx_str_t                   cache_file;   /* mesh_cache_file */
} ngx_http_mesh_main_conf_t;


extern ngx_module_t  ngx_http_mesh_module;


#endif /* _NGX_HTTP_MESH_MODULE_H_INCLUDED_ */
