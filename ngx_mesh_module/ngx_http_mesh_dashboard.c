
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * The status location's page: which answer a request without a format
 * argument wants (its Accept header), and the page itself, served from
 * the module's memory (dashboard.html, made into C at build time by
 * dashboard.sh).  The page reads the status again as JSON from the same
 * location; nothing of it is made per request.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"
#include "ngx_http_mesh_status.h"
#include "mesh_accept.h"


static ngx_int_t ngx_http_mesh_header(ngx_http_request_t *r, char *name,
    char *value);


/*
 * The page loads nothing from anywhere and talks only to this location:
 * the browser holds it to that.
 */
#define NGX_HTTP_MESH_DASHBOARD_CSP                                          \
    "default-src 'none'; script-src 'unsafe-inline'; "                       \
    "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; "         \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


/*
 * The page when the Accept header prefers text/html to application/json,
 * as a browser's does (text/html with q=1, any type with q=0.8); JSON on
 * a tie, so that curl's "any type" or no Accept keeps the JSON.
 */
ngx_uint_t
ngx_http_mesh_dashboard_wanted(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Accept") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept",
                               sizeof("Accept") - 1) == 0)
        {
            break;
        }
    }

    /* the first Accept line decides */

    return mesh_accept_quality((char *) h[i].value.data, h[i].value.len,
                               "text/html")
           > mesh_accept_quality((char *) h[i].value.data, h[i].value.len,
                                 "application/json");
}


/* "Vary: Accept": the answer depends on the request's Accept */
ngx_int_t
ngx_http_mesh_vary_accept(ngx_http_request_t *r)
{
    return ngx_http_mesh_header(r, "Vary", "Accept");
}


ngx_int_t
ngx_http_mesh_dashboard(ngx_http_request_t *r, ngx_uint_t vary)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = ngx_http_mesh_dashboard_size;

    ngx_str_set(&r->headers_out.content_type, "text/html; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if ((vary && ngx_http_mesh_vary_accept(r) != NGX_OK)
        || ngx_http_mesh_header(r, "Content-Security-Policy",
                                NGX_HTTP_MESH_DASHBOARD_CSP)
           != NGX_OK
        || ngx_http_mesh_header(r, "X-Content-Type-Options", "nosniff")
           != NGX_OK
        || ngx_http_mesh_header(r, "Cache-Control", "no-cache") != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the module's own bytes, never written: no copy */

    b->pos = (u_char *) ngx_http_mesh_dashboard_html;
    b->last = b->pos + ngx_http_mesh_dashboard_size;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_mesh_header(ngx_http_request_t *r, char *name, char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.len = ngx_strlen(name);
    h->key.data = (u_char *) name;
    h->value.len = ngx_strlen(value);
    h->value.data = (u_char *) value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}
