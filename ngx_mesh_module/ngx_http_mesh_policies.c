
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * The policies as a worker holds them: parsed from the registry's JSON
 * once per nginx by the poll owner (ngx_http_mesh_gen_create()), packed
 * for the zone (ngx_http_mesh_gen_pack()), read back by every worker
 * without parsing (ngx_http_mesh_gen_unpack()) and shared by the views
 * built on them (reference counted).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


/*
 * Parse policies (their regexes are compiled by the parse, as registryd
 * checked them). Takes json (ngx_alloc()ed, NUL-terminated) in every
 * case. NULL with err on a refusal.
 */
ngx_http_mesh_gen_t *
ngx_http_mesh_gen_create(u_char *json, size_t len, char *err, size_t errlen,
    ngx_log_t *log)
{
    ngx_http_mesh_gen_t  *g;

    err[0] = '\0';

    g = ngx_calloc(sizeof(ngx_http_mesh_gen_t), log);
    if (g == NULL) {
        ngx_free(json);
        ngx_snprintf((u_char *) err, errlen, "out of memory%Z");
        return NULL;
    }

    g->refs = 1;
    g->json = json;

    g->policies = mesh_policies_parse((char *) json, len, err, errlen);
    if (g->policies == NULL) {
        ngx_http_mesh_gen_release(g);
        return NULL;
    }

    return g;
}


/*
 * The policies from their packed block (the poll owner parsed them once
 * for the whole nginx): pointers put back, regexes compiled. Takes packed
 * (ngx_alloc()ed) in every case. NULL with err on a refusal.
 */
ngx_http_mesh_gen_t *
ngx_http_mesh_gen_unpack(u_char *packed, size_t len, char *err,
    size_t errlen, ngx_log_t *log)
{
    ngx_http_mesh_gen_t  *g;

    g = ngx_calloc(sizeof(ngx_http_mesh_gen_t), log);
    if (g == NULL) {
        ngx_free(packed);
        ngx_snprintf((u_char *) err, errlen, "out of memory%Z");
        return NULL;
    }

    g->refs = 1;
    g->json = packed;

    g->policies = mesh_policies_unpack(packed, len, err, errlen);
    if (g->policies == NULL) {
        ngx_http_mesh_gen_release(g);
        return NULL;
    }

    return g;
}


/* g's policies packed for the zone (ngx_alloc()ed) */
u_char *
ngx_http_mesh_gen_pack(ngx_http_mesh_gen_t *g, size_t *len, ngx_log_t *log)
{
    u_char  *buf;

    *len = mesh_policies_pack(g->policies, NULL, 0);

    buf = ngx_alloc(*len, log);
    if (buf == NULL) {
        return NULL;
    }

    if (mesh_policies_pack(g->policies, buf, *len) != *len) {
        ngx_free(buf);
        return NULL;
    }

    return buf;
}


void
ngx_http_mesh_gen_release(ngx_http_mesh_gen_t *g)
{
    if (--g->refs) {
        return;
    }

    if (g->policies) {
        mesh_policies_free(g->policies);
    }

    ngx_free(g->json);
    ngx_free(g);
}
