
/*
 * Copyright (C) ngx_mesh authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"
#include "mesh_token.h"


static ngx_int_t ngx_http_mesh_preconfiguration(ngx_conf_t *cf);
static void *ngx_http_mesh_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_mesh_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_mesh_create_srv_conf(ngx_conf_t *cf);
static char *ngx_http_mesh_registry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_mesh_token_file(ngx_conf_t *cf,
    ngx_http_mesh_main_conf_t *mmcf, ngx_str_t *value);
static char *ngx_http_mesh_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mesh_status_instances(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_mesh_labels(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static int ngx_libc_cdecl ngx_http_mesh_cmp_labels(const void *one,
    const void *two);
static char *ngx_http_mesh_locality(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mesh_upstream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mesh_balancer(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mesh_outlier(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_mesh_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static void *ngx_http_mesh_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_mesh_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_mesh_init_process(ngx_cycle_t *cycle);
static void ngx_http_mesh_exit_process(ngx_cycle_t *cycle);


static const char  *ngx_http_mesh_balancers[] = {
    "round_robin", "random", "least_request", "consistent_hash", NULL
};


static ngx_conf_num_bounds_t  ngx_http_mesh_panic_bounds = {
    ngx_conf_check_num_bounds, 0, 100
};


static ngx_command_t  ngx_http_mesh_commands[] = {

    { ngx_string("mesh_registry"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_mesh_registry,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

#if (NGX_HTTP_SSL)

    { ngx_string("mesh_registry_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mesh_main_conf_t, ssl_trusted_certificate),
      NULL },

    { ngx_string("mesh_registry_ssl_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mesh_main_conf_t, ssl_certificate),
      NULL },

    { ngx_string("mesh_registry_ssl_certificate_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mesh_main_conf_t, ssl_certificate_key),
      NULL },

    { ngx_string("mesh_registry_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mesh_main_conf_t, ssl_verify),
      NULL },

    { ngx_string("mesh_tls_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mesh_main_conf_t, tls_certificate),
      NULL },

    { ngx_string("mesh_tls_certificate_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mesh_main_conf_t, tls_certificate_key),
      NULL },

    { ngx_string("mesh_tls_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mesh_main_conf_t, tls_trusted_certificate),
      NULL },

#endif

    { ngx_string("mesh_cache_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mesh_main_conf_t, cache_file),
      NULL },

    { ngx_string("mesh_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mesh_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mesh"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE12,
      ngx_http_mesh_upstream,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mesh_balancer"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE12,
      ngx_http_mesh_balancer,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mesh_outlier"),
      NGX_HTTP_UPS_CONF|NGX_CONF_1MORE,
      ngx_http_mesh_outlier,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mesh_panic_threshold"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_mesh_srv_conf_t, panic),
      &ngx_http_mesh_panic_bounds },

    { ngx_string("mesh_metrics"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_mesh_main_conf_t, metrics),
      NULL },

    { ngx_string("mesh_status_instances"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_UPS_CONF|NGX_CONF_FLAG,
      ngx_http_mesh_status_instances,
      0,
      0,
      NULL },

    { ngx_string("mesh_labels"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_mesh_labels,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mesh_locality"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_mesh_locality,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mesh_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_mesh_status,
      0,
      0,
      NULL },

    { ngx_string("mesh_gateway"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_mesh_gateway,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_mesh_module_ctx = {
    ngx_http_mesh_preconfiguration,        /* preconfiguration */
    ngx_http_mesh_route_init,              /* postconfiguration */

    ngx_http_mesh_create_main_conf,        /* create main configuration */
    ngx_http_mesh_init_main_conf,          /* init main configuration */

    ngx_http_mesh_create_srv_conf,         /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_mesh_create_loc_conf,         /* create location configuration */
    ngx_http_mesh_merge_loc_conf           /* merge location configuration */
};


ngx_module_t  ngx_http_mesh_module = {
    NGX_MODULE_V1,
    &ngx_http_mesh_module_ctx,             /* module context */
    ngx_http_mesh_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_mesh_init_process,            /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_mesh_exit_process,            /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_mesh_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_mesh_add_variables(cf);
}


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
     *     mmcf->labels = NULL;
     *     mmcf->tls_certificate = { 0, NULL };
     *     mmcf->tls_certificate_key = { 0, NULL };
     *     mmcf->tls_trusted_certificate = { 0, NULL };
     *     mmcf->tls_identity = NULL;
     *     mmcf->shm_zone = NULL;
     */

    mmcf->zone_size = NGX_CONF_UNSET_SIZE;
    mmcf->metrics = NGX_CONF_UNSET;
    mmcf->instances = NGX_CONF_UNSET;
#if (NGX_HTTP_SSL)
    mmcf->ssl_verify = NGX_CONF_UNSET;
#endif

    if (ngx_array_init(&mmcf->upstreams, cf->pool, 4,
                       sizeof(ngx_http_mesh_srv_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return mmcf;
}


static char *
ngx_http_mesh_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_mesh_main_conf_t  *mmcf = conf;

    ngx_str_t  name = ngx_string("ngx_http_mesh");

    if (mmcf->cache_file.len) {
        if (ngx_conf_full_name(cf->cycle, &mmcf->cache_file, 0) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        ngx_http_mesh_cache_check(cf, &mmcf->cache_file);
    }

    if (mmcf->zone_size == NGX_CONF_UNSET_SIZE) {
        mmcf->zone_size = NGX_HTTP_MESH_ZONE_SIZE;
    }

    ngx_conf_init_value(mmcf->metrics, 1);
    ngx_conf_init_value(mmcf->instances, 1);

    /* sorted, as mesh_labels_hold() wants them */

    if (mmcf->labels && mmcf->labels->nelts > 1) {
        ngx_qsort(mmcf->labels->elts, mmcf->labels->nelts,
                  sizeof(mesh_label_t), ngx_http_mesh_cmp_labels);
    }

#if (NGX_HTTP_SSL)
    if (ngx_http_mesh_ssl_conf(cf, mmcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_mesh_tls_conf_identity(cf, mmcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }
#endif

    if (mmcf->upstreams.nelts == 0 && mmcf->registry == NULL) {
        return NGX_CONF_OK;
    }

    mmcf->shm_zone = ngx_shared_memory_add(cf, &name, mmcf->zone_size,
                                           &ngx_http_mesh_module);
    if (mmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    mmcf->shm_zone->init = ngx_http_mesh_init_zone;
    mmcf->shm_zone->data = mmcf;
    mmcf->shm_zone->noreuse = 0;

    return NGX_CONF_OK;
}


static void *
ngx_http_mesh_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_mesh_loc_conf_t  *mlcf;

    mlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mesh_loc_conf_t));
    if (mlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mlcf->gateways = NULL;
     */

    mlcf->port = NGX_CONF_UNSET;

    return mlcf;
}


static char *
ngx_http_mesh_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_mesh_loc_conf_t  *prev = parent;
    ngx_http_mesh_loc_conf_t  *conf = child;

    if (conf->gateways == NULL) {
        conf->gateways = prev->gateways;
        conf->port = prev->port;
    }

    ngx_conf_merge_value(conf->port, prev->port, 0);

    return NGX_CONF_OK;
}


static void *
ngx_http_mesh_create_srv_conf(ngx_conf_t *cf)
{
    return ngx_http_mesh_alloc_srv_conf(cf);
}


/* a mesh upstream's configuration, http's or stream's */
ngx_http_mesh_srv_conf_t *
ngx_http_mesh_alloc_srv_conf(ngx_conf_t *cf)
{
    ngx_http_mesh_srv_conf_t  *mscf;

    mscf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mesh_srv_conf_t));
    if (mscf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mscf->service = { 0, NULL };
     *     mscf->port = 0;
     *     mscf->key = NULL;
     *     mscf->upstream = NULL;
     *     mscf->peers = NULL;
     */

    mscf->balancer = NGX_CONF_UNSET_UINT;
    mscf->panic = NGX_CONF_UNSET_UINT;
    mscf->instances = NGX_CONF_UNSET;
    mscf->outlier.consecutive_5xx = NGX_CONF_UNSET_UINT;
    mscf->outlier.consecutive_gateway = NGX_CONF_UNSET_UINT;
    mscf->outlier.interval = NGX_CONF_UNSET_MSEC;
    mscf->outlier.base_ejection_time = NGX_CONF_UNSET_MSEC;
    mscf->outlier.max_ejection_time = NGX_CONF_UNSET_MSEC;
    mscf->outlier.max_ejection_percent = NGX_CONF_UNSET_UINT;

    return mscf;
}


static char *
ngx_http_mesh_registry(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_main_conf_t  *mmcf = conf;

    size_t                     add;
    ngx_str_t                 *value;
    ngx_url_t                 *u;
    ngx_uint_t                 i, j;
    ngx_http_mesh_registry_t  *reg;

    if (mmcf->registry) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_array_init(&mmcf->registries, cf->pool, cf->args->nelts - 1,
                       sizeof(ngx_http_mesh_registry_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* one URL, or one per registryd replica: polled in turn, the next
     * one when the one in use cannot be reached */

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "token_file=", 11) == 0) {
            if (ngx_http_mesh_token_file(cf, mmcf, &value[i]) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncasecmp(value[i].data, (u_char *) "https://", 8) == 0) {
#if (NGX_HTTP_SSL)
            add = 8;
#else
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "registry URL \"%V\" in \"%V\" directive "
                               "needs nginx built with SSL", &value[i],
                               &cmd->name);
            return NGX_CONF_ERROR;
#endif

        } else if (ngx_strncasecmp(value[i].data, (u_char *) "http://", 7)
                   == 0)
        {
            add = 7;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid registry URL \"%V\" in \"%V\" "
                               "directive, it must start with \"http://\" "
                               "or \"https://\"", &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }

        for (j = 1; j < i; j++) {
            if (value[j].len == value[i].len
                && ngx_strncasecmp(value[j].data, value[i].data,
                                   value[i].len) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "registry URL \"%V\" is given twice in "
                                   "\"%V\" directive", &value[i],
                                   &cmd->name);
                return NGX_CONF_ERROR;
            }
        }

        u = ngx_pcalloc(cf->pool, sizeof(ngx_url_t));
        if (u == NULL) {
            return NGX_CONF_ERROR;
        }

        u->url.len = value[i].len - add;
        u->url.data = value[i].data + add;
        u->default_port = 7770;
        u->uri_part = 1;
        u->no_resolve = 0;

        if (ngx_parse_url(cf->pool, u) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid registry URL \"%V\" in \"%V\" "
                               "directive%s%s", &value[i], &cmd->name,
                               u->err ? ": " : "", u->err ? u->err : "");
            return NGX_CONF_ERROR;
        }

        if (u->naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "no address for registry \"%V\" in \"%V\" "
                               "directive", &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }

        reg = ngx_array_push(&mmcf->registries);
        if (reg == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(reg, sizeof(ngx_http_mesh_registry_t));

        reg->url = u;
        reg->uri = value[i];

#if (NGX_HTTP_SSL)
        if (add == 8) {
            reg->ssl = 1;

            if (ngx_http_mesh_ssl_name(cf, reg) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
        }
#endif
    }

    if (mmcf->registries.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no registry URL in \"%V\" directive",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    reg = mmcf->registries.elts;
    mmcf->registry = reg[0].url;
    mmcf->registry_uri = reg[0].uri;

    return NGX_CONF_OK;
}


/*
 * token_file=PATH: the bearer token the poll sends (a token with the read
 * scope), read here, at start and on every reload; a file group or others
 * can read is refused, as registryd refuses its own.
 */
static ngx_int_t
ngx_http_mesh_token_file(ngx_conf_t *cf, ngx_http_mesh_main_conf_t *mmcf,
    ngx_str_t *value)
{
    char             tok[MESH_TOKEN_MAX + 1], err[NGX_MAX_ERROR_STR];
    size_t           len;
    ngx_str_t        path;
    ngx_file_info_t  fi;

    if (mmcf->token.data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"token_file=\" is given twice in "
                           "\"mesh_registry\" directive");
        return NGX_ERROR;
    }

    path.len = value->len - 11;
    path.data = value->data + 11;

    if (path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"token_file=\" needs a path in "
                           "\"mesh_registry\" directive");
        return NGX_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_file_info(path.data, &fi) == 0 && (fi.st_mode & 077)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "mesh_registry token_file \"%V\" can be read or "
                           "written by group or others (mode 0%ui%ui%ui): "
                           "chmod 600 it", &path,
                           (ngx_uint_t) (fi.st_mode >> 6) & 7,
                           (ngx_uint_t) (fi.st_mode >> 3) & 7,
                           (ngx_uint_t) fi.st_mode & 7);
        return NGX_ERROR;
    }

    if (mesh_token_read((char *) path.data, tok, sizeof(tok), err,
                        sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "mesh_registry %s", err);
        return NGX_ERROR;
    }

    len = ngx_strlen(tok);

    mmcf->token.data = ngx_pnalloc(cf->pool, len);
    if (mmcf->token.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(mmcf->token.data, tok, len);
    mmcf->token.len = len;

    ngx_explicit_memzero(tok, sizeof(tok));

    return NGX_OK;
}


static char *
ngx_http_mesh_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_main_conf_t  *mmcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (mmcf->zone_size != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\" in \"%V\" directive, "
                           "at least %uzk", &value[1], &cmd->name,
                           8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    mmcf->zone_size = (size_t) size;

    return NGX_CONF_OK;
}


/* in http{}: the default; in an upstream: that service's choice */
/*
 * mesh_labels name=value ...: the labels of the workload this nginx is
 * the proxy of, which a VirtualService's match[].sourceLabels selects
 * (the client's); names and values as the registry's instance labels
 */
static char *
ngx_http_mesh_labels(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_main_conf_t  *mmcf = conf;

    u_char        *eq, *k, *v;
    size_t         klen, vlen;
    ngx_str_t     *value;
    ngx_uint_t     i, n;
    mesh_label_t  *label;

    if (mmcf->labels == NULL) {
        mmcf->labels = ngx_array_create(cf->pool, 4, sizeof(mesh_label_t));
        if (mmcf->labels == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        if (eq == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid label \"%V\" in \"%V\": "
                               "expected name=value", &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }

        klen = eq - value[i].data;
        vlen = value[i].len - klen - 1;

        if (!mesh_name_valid((char *) value[i].data, klen)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid label \"%V\" in \"%V\": names are "
                               "[A-Za-z0-9][A-Za-z0-9._-]{0,127}",
                               &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }

        if (vlen > NGX_HTTP_MESH_LABEL_VALUE_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid label \"%*s\" in \"%V\": the value "
                               "is longer than %d bytes", klen,
                               value[i].data, &cmd->name,
                               NGX_HTTP_MESH_LABEL_VALUE_MAX);
            return NGX_CONF_ERROR;
        }

        label = mmcf->labels->elts;

        for (n = 0; n < mmcf->labels->nelts; n++) {
            if (ngx_strlen(label[n].key) == klen
                && ngx_strncmp(label[n].key, value[i].data, klen) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "duplicate label \"%*s\" in \"%V\"",
                                   klen, value[i].data, &cmd->name);
                return NGX_CONF_ERROR;
            }
        }

        if (mmcf->labels->nelts == NGX_HTTP_MESH_LABELS_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "too many labels in \"%V\" at \"%V\": "
                               "at most %d", &cmd->name, &value[i],
                               NGX_HTTP_MESH_LABELS_MAX);
            return NGX_CONF_ERROR;
        }

        /* C strings, as the model's labels are */

        k = ngx_pnalloc(cf->pool, klen + 1 + vlen + 1);
        if (k == NULL) {
            return NGX_CONF_ERROR;
        }

        v = ngx_cpymem(k, value[i].data, klen);
        *v++ = '\0';
        ngx_memcpy(v, eq + 1, vlen);
        v[vlen] = '\0';

        label = ngx_array_push(mmcf->labels);
        if (label == NULL) {
            return NGX_CONF_ERROR;
        }

        label->key = (const char *) k;
        label->value = (const char *) v;
    }

    return NGX_CONF_OK;
}


/*
 * mesh_locality region[/zone[/subzone]]: where this nginx runs, as
 * Istio's localities are written; localityLbSetting prefers instances
 * whose registry zone is nearest to it
 */
static char *
ngx_http_mesh_locality(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_main_conf_t  *mmcf = conf;

    ngx_str_t  *value;

    if (mmcf->locality.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (mesh_locality_parse((char *) value[1].data, value[1].len,
                            &mmcf->self)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid locality \"%V\" in \"%V\": expected "
                           "region, region/zone or region/zone/subzone, "
                           "each [A-Za-z0-9][A-Za-z0-9._-]{0,127}, at most "
                           "%d bytes", &value[1], &cmd->name,
                           MESH_LOCALITY_MAX);
        return NGX_CONF_ERROR;
    }

    mmcf->locality = value[1];

    return NGX_CONF_OK;
}


static int ngx_libc_cdecl
ngx_http_mesh_cmp_labels(const void *one, const void *two)
{
    const mesh_label_t  *a = one;
    const mesh_label_t  *b = two;

    return ngx_strcmp(a->key, b->key);
}


static char *
ngx_http_mesh_status_instances(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t                  *value;
    ngx_flag_t                 *fp, flag;
    ngx_http_mesh_srv_conf_t   *mscf;
    ngx_http_mesh_main_conf_t  *mmcf;

    value = cf->args->elts;

    if (ngx_strcasecmp(value[1].data, (u_char *) "on") == 0) {
        flag = 1;

    } else if (ngx_strcasecmp(value[1].data, (u_char *) "off") == 0) {
        flag = 0;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be \"on\" or \"off\"", &value[1],
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (cf->cmd_type == NGX_HTTP_UPS_CONF) {
        mscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_mesh_module);
        fp = &mscf->instances;

    } else {
        mmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mesh_module);
        fp = &mmcf->instances;
    }

    if (*fp != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    *fp = flag;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_mesh_init_process(ngx_cycle_t *cycle)
{
    return ngx_http_mesh_registry_init_process(cycle);
}


static void
ngx_http_mesh_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_mesh_registry_exit_process(cycle);
}


const char *
ngx_http_mesh_balancer_name(ngx_uint_t balancer)
{
    if (balancer > NGX_HTTP_MESH_CHASH) {
        balancer = NGX_HTTP_MESH_RR;
    }

    return ngx_http_mesh_balancers[balancer];
}


static char *
ngx_http_mesh_upstream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_srv_conf_t  *mscf = conf;

    ngx_int_t                       port;
    ngx_str_t                      *value;
    ngx_http_mesh_srv_conf_t      **p;
    ngx_http_mesh_main_conf_t      *mmcf;
    ngx_http_upstream_server_t     *us;
    ngx_http_upstream_srv_conf_t   *uscf;

    if (mscf->service.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (!mesh_name_valid((char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid service name \"%V\" in \"%V\" directive, "
                           "names are " MESH_NAME_RULE,
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* port=N: the service port the upstream stands for, whose
     * portLevelSettings apply to it */
    if (cf->args->nelts == 3) {
        if (value[2].len <= 5
            || ngx_strncmp(value[2].data, "port=", 5) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        port = ngx_atoi(value[2].data + 5, value[2].len - 5);

        if (port < 1 || port > 65535) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid port in \"%V\" of \"%V\" "
                               "directive, a port is 1..65535",
                               &value[2], &cmd->name);
            return NGX_CONF_ERROR;
        }

        mscf->port = (ngx_uint_t) port;
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

    uscf->peer.init_upstream = ngx_http_mesh_init_upstream;

    /*
     * nginx 1.22 refuses an upstream block without servers: members
     * come from the registry, so stand in for them with an entry that
     * has no address (our init_upstream never hands it to round robin)
     */
    if (uscf->servers->nelts == 0) {
        us = ngx_array_push(uscf->servers);
        if (us == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(us, sizeof(ngx_http_upstream_server_t));
        us->name = value[1];
        us->weight = 1;
    }

    mscf->service = value[1];
    mscf->stats = value[1];
    mscf->name = uscf->host;
    mscf->upstream = uscf;

    mmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mesh_module);

    p = ngx_array_push(&mmcf->upstreams);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    *p = mscf;

    return NGX_CONF_OK;
}


static char *
ngx_http_mesh_balancer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_srv_conf_t  *mscf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         b;
    ngx_http_compile_complex_value_t   ccv;

    if (mscf->balancer != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (b = 0; ngx_http_mesh_balancers[b]; b++) {
        if (ngx_strcmp(value[1].data, ngx_http_mesh_balancers[b]) == 0) {
            break;
        }
    }

    if (ngx_http_mesh_balancers[b] == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid balancer \"%V\" in \"%V\" directive, "
                           "it must be round_robin, random, least_request "
                           "or consistent_hash", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (b == NGX_HTTP_MESH_CHASH && cf->args->nelts != 3) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V consistent_hash\" needs a key, such as "
                           "\"consistent_hash $request_uri\"", &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (b != NGX_HTTP_MESH_CHASH && cf->args->nelts != 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V %V\" directive, "
                           "only consistent_hash takes a key", &value[2],
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    if (b == NGX_HTTP_MESH_CHASH) {
        mscf->key = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (mscf->key == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &value[2];
        ccv.complex_value = mscf->key;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    mscf->balancer = b;

    return NGX_CONF_OK;
}


static char *
ngx_http_mesh_outlier(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_srv_conf_t  *mscf = conf;

    u_char      *eq;
    ngx_str_t   *value, name, v;
    ngx_int_t    n;
    ngx_uint_t   i;
    ngx_msec_t   ms, *msp;
    ngx_uint_t  *np;

    if (mscf->outlier.base_ejection_time != NGX_CONF_UNSET_MSEC
        || mscf->outlier.consecutive_5xx != NGX_CONF_UNSET_UINT)
    {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');
        if (eq == NULL || eq == value[i].data) {
            goto invalid;
        }

        name.data = value[i].data;
        name.len = eq - value[i].data;
        v.data = eq + 1;
        v.len = value[i].data + value[i].len - v.data;

        np = NULL;
        msp = NULL;

        if (name.len == 15
            && ngx_strncmp(name.data, "consecutive_5xx", 15) == 0)
        {
            np = &mscf->outlier.consecutive_5xx;

        } else if (name.len == 19
                   && ngx_strncmp(name.data, "consecutive_gateway", 19) == 0)
        {
            np = &mscf->outlier.consecutive_gateway;

        } else if (name.len == 20
                   && ngx_strncmp(name.data, "max_ejection_percent", 20) == 0)
        {
            np = &mscf->outlier.max_ejection_percent;

        } else if (name.len == 8 && ngx_strncmp(name.data, "interval", 8) == 0)
        {
            msp = &mscf->outlier.interval;

        } else if (name.len == 18
                   && ngx_strncmp(name.data, "base_ejection_time", 18) == 0)
        {
            msp = &mscf->outlier.base_ejection_time;

        } else if (name.len == 17
                   && ngx_strncmp(name.data, "max_ejection_time", 17) == 0)
        {
            msp = &mscf->outlier.max_ejection_time;

        } else {
            goto invalid;
        }

        if (np) {
            n = ngx_atoi(v.data, v.len);
            if (n == NGX_ERROR
                || (np == &mscf->outlier.max_ejection_percent && n > 100))
            {
                goto invalid;
            }

            *np = (ngx_uint_t) n;
            continue;
        }

        ms = ngx_parse_time(&v, 0);
        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            goto invalid;
        }

        *msp = ms;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"%V\" directive, "
                       "expected consecutive_5xx=N, consecutive_gateway=N, "
                       "interval=T, base_ejection_time=T, "
                       "max_ejection_time=T or max_ejection_percent=0..100",
                       &value[i], &cmd->name);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_mesh_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_mesh_srv_conf_t  *mscf;

    mscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_mesh_module);

    ngx_http_mesh_init_srv_conf(mscf);

    if (us->servers && us->servers->nelts > 1) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "upstream \"%V\" has both \"mesh\" and \"server\" "
                      "members in %s:%ui", &us->host, us->file_name,
                      us->line);
        return NGX_ERROR;
    }

    us->peer.init = ngx_http_mesh_init_peer;

    return NGX_OK;
}


/* what a mesh upstream's directives did not say */
void
ngx_http_mesh_init_srv_conf(ngx_http_mesh_srv_conf_t *mscf)
{
    if (mscf->balancer == NGX_CONF_UNSET_UINT) {
        mscf->balancer = NGX_HTTP_MESH_RR;
    }

    /* Istio's defaults */
    ngx_conf_init_uint_value(mscf->outlier.consecutive_5xx, 5);
    ngx_conf_init_uint_value(mscf->outlier.consecutive_gateway, 0);
    ngx_conf_init_msec_value(mscf->outlier.interval, 10000);
    ngx_conf_init_msec_value(mscf->outlier.base_ejection_time, 30000);
    ngx_conf_init_msec_value(mscf->outlier.max_ejection_time, 300000);
    ngx_conf_init_uint_value(mscf->outlier.max_ejection_percent, 10);
    ngx_conf_init_uint_value(mscf->panic, 50);
    mscf->outlier.panic_threshold = mscf->panic;
    mscf->outlier.split_local = 0;
    mscf->outlier.consecutive_local = 5;       /* Envoy's default */
}
