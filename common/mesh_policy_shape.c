/*
 * mesh_policy_shape: what an http route of a VirtualService does to a
 * request besides choosing its destination, read into the model: fault
 * injection, rewrite, redirect, directResponse, corsPolicy and the
 * header operations of the route and of each destination
 * (docs/policies.md, "In the snapshot").
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_json.h"
#include "mesh_policy.h"
#include "mesh_policy_int.h"


static int mesh_policy_fault_part(mesh_json_t *j, mesh_fault_t *f,
    int abort);
static char *mesh_policy_text(mesh_json_t *j, const char *what,
    int nonempty);
static int mesh_policy_ops(mesh_json_t *j, mesh_header_ops_t *ops);
static int mesh_policy_op_list(mesh_json_t *j, int values,
    mesh_header_op_t **ops, size_t *nops);
static char *mesh_policy_op_name(mesh_json_t *j, const unsigned char *s,
    size_t len, const unsigned char *at);
static int mesh_policy_origin(mesh_json_t *j, void *elt);
static char *mesh_policy_joined(mesh_json_t *j, const char *what);


/* fault: {"delay": {"fixedDelayMs", "ppm"}, "abort": {"httpStatus", "ppm"}} */

int
mesh_policy_fault(mesh_json_t *j, mesh_fault_t *f)
{
    int                   rc;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"fault\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {

        if (mesh_json_key_is(key, klen, "delay")) {
            if (seen & 1) {
                goto duplicate;
            }

            seen |= 1;
            rc = mesh_policy_fault_part(j, f, 0);

        } else if (mesh_json_key_is(key, klen, "abort")) {
            if (seen & 2) {
                goto duplicate;
            }

            seen |= 2;
            rc = mesh_policy_fault_part(j, f, 1);

        } else {
            rc = mesh_json_skip(j, 6);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (seen == 0) {
        mesh_json_error(j, start, "\"fault\" without \"delay\" or \"abort\"");
        return -1;
    }

    return 0;

duplicate:

    mesh_json_error(j, j->key_at, "duplicate field in \"fault\"");

    return -1;
}


static int
mesh_policy_fault_part(mesh_json_t *j, mesh_fault_t *f, int abort)
{
    int                   rc, k, status;
    size_t                n, klen;
    int64_t               ms;
    uint64_t              ppm;
    unsigned              seen;
    const char           *what;
    const unsigned char  *key, *start;

    static const char *const  delay_keys[] = { "fixedDelayMs", "ppm", NULL };
    static const char *const  abort_keys[] = { "httpStatus", "ppm", NULL };

    what = abort ? "\"fault.abort\"" : "\"fault.delay\"";
    start = j->pos;

    if (mesh_policy_open(j, '{', what) != 0) {
        return -1;
    }

    seen = 0;
    n = 0;
    ms = 0;
    status = 0;
    ppm = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, abort ? abort_keys : delay_keys, key, klen,
                            &seen);

        switch (k) {

        case 0:
            rc = abort ? mesh_policy_int(j, "httpStatus", 200, 599, &status)
                       : mesh_policy_ms(j, "fixedDelayMs", 0, &ms);
            break;

        case 1:
            rc = mesh_json_uint(j, "ppm", 0, 1000000, &ppm);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 8);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (seen != 3) {
        mesh_json_error(j, start, "%s without \"%s\"", what,
                        (seen & 1) ? "ppm"
                        : abort ? "httpStatus" : "fixedDelayMs");
        return -1;
    }

    if (abort) {
        f->abort_status = status;
        f->abort_ppm = (uint32_t) ppm;

    } else {
        f->delay = ms;
        f->delay_ppm = (uint32_t) ppm;
    }

    return 0;
}


/* a string without CR, LF (or NUL: mesh_json_cstr), in the arena */
static char *
mesh_policy_text(mesh_json_t *j, const char *what, int nonempty)
{
    char                 *s;
    const unsigned char  *at;

    at = j->pos;

    s = nonempty ? mesh_policy_name(j, what) : mesh_json_cstr(j, what);
    if (s == NULL) {
        return NULL;
    }

    if (strpbrk(s, "\r\n") != NULL) {
        mesh_json_error(j, at, "%s holds CR or LF", what);
        return NULL;
    }

    return s;
}


int
mesh_policy_rewrite(mesh_json_t *j, mesh_rewrite_t *rw)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    static const char *const  keys[] = { "uri", "authority", NULL };

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"rewrite\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, keys, key, klen, &seen);

        switch (k) {

        case 0:
            rw->uri = mesh_policy_text(j, "\"rewrite.uri\"", 1);
            rc = rw->uri ? 0 : -1;
            break;

        case 1:
            rw->authority = mesh_policy_text(j, "\"rewrite.authority\"", 1);
            rc = rw->authority ? 0 : -1;
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 6);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (seen == 0) {
        mesh_json_error(j, start, "\"rewrite\" without \"uri\" or "
                        "\"authority\"");
        return -1;
    }

    return 0;
}


int
mesh_policy_redirect(mesh_json_t *j, mesh_http_route_t *h)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    mesh_redirect_t      *rd;
    const unsigned char  *key, *start, *at;

    static const char *const  keys[] = {
        "uri", "authority", "scheme", "port", "redirectCode", NULL
    };

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"redirect\"") != 0) {
        return -1;
    }

    rd = mesh_arena_alloc(j->arena, sizeof(mesh_redirect_t));
    if (rd == NULL) {
        mesh_json_error(j, start, "out of memory");
        return -1;
    }

    memset(rd, 0, sizeof(mesh_redirect_t));

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, keys, key, klen, &seen);
        at = j->pos;

        switch (k) {

        case 0:
            rd->uri = mesh_policy_text(j, "\"redirect.uri\"", 1);
            rc = rd->uri ? 0 : -1;
            break;

        case 1:
            rd->authority = mesh_policy_text(j, "\"redirect.authority\"", 1);
            rc = rd->authority ? 0 : -1;
            break;

        case 2:
            rd->scheme = mesh_json_cstr(j, "\"redirect.scheme\"");
            rc = rd->scheme ? 0 : -1;

            if (rc == 0 && strcmp(rd->scheme, "http") != 0
                && strcmp(rd->scheme, "https") != 0)
            {
                mesh_json_error(j, at, "unknown \"redirect.scheme\" \"%.16s\"",
                                rd->scheme);
                rc = -1;
            }

            break;

        case 3:
            rc = mesh_policy_int(j, "redirect.port", 1, 65535, &rd->port);
            break;

        case 4:
            rc = mesh_policy_int(j, "redirectCode", 300, 399, &rd->code);

            if (rc == 0 && rd->code != 301 && rd->code != 302
                && rd->code != 303 && rd->code != 307 && rd->code != 308)
            {
                mesh_json_error(j, at, "\"redirectCode\" %d is not one of "
                                "301, 302, 303, 307, 308", rd->code);
                rc = -1;
            }

            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 6);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, 4)) {
        mesh_json_error(j, start, "\"redirect\" without \"redirectCode\"");
        return -1;
    }

    if ((seen & ~(1u << 4)) == 0) {
        mesh_json_error(j, start, "\"redirect\" without \"uri\", "
                        "\"authority\", \"scheme\" or \"port\"");
        return -1;
    }

    h->redirect = rd;

    return 0;
}


int
mesh_policy_direct(mesh_json_t *j, mesh_http_route_t *h)
{
    int                      rc, k;
    size_t                   n, klen;
    unsigned                 seen;
    mesh_direct_response_t  *dr;
    const unsigned char     *key, *start;

    static const char *const  keys[] = { "status", "body", NULL };

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"directResponse\"") != 0) {
        return -1;
    }

    dr = mesh_arena_alloc(j->arena, sizeof(mesh_direct_response_t));
    if (dr == NULL) {
        mesh_json_error(j, start, "out of memory");
        return -1;
    }

    memset(dr, 0, sizeof(mesh_direct_response_t));

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, keys, key, klen, &seen);

        switch (k) {

        case 0:
            rc = mesh_policy_int(j, "directResponse.status", 100, 599,
                                 &dr->status);
            break;

        case 1:
            /* a text body: any byte but NUL (mesh_json_cstr refuses it) */
            dr->body = mesh_json_cstr(j, "\"directResponse.body\"");
            rc = dr->body ? 0 : -1;

            if (rc == 0) {
                dr->body_len = strlen(dr->body);
            }

            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 6);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, 0)) {
        mesh_json_error(j, start, "\"directResponse\" without \"status\"");
        return -1;
    }

    h->direct = dr;

    return 0;
}


/* headers: {"request": OPS, "response": OPS} */

int
mesh_policy_header_ops(mesh_json_t *j, mesh_headers_t *hs)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key;

    static const char *const  keys[] = { "request", "response", NULL };

    if (mesh_policy_open(j, '{', "\"headers\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, keys, key, klen, &seen);

        switch (k) {

        case 0:
            rc = mesh_policy_ops(j, &hs->request);
            break;

        case 1:
            rc = mesh_policy_ops(j, &hs->response);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 8);
        }

        if (rc != 0) {
            return -1;
        }
    }

    return rc == 0 ? 0 : -1;
}


/* OPS: {"set": {NAME: VALUE}, "add": {NAME: VALUE}, "remove": [NAME]} */

static int
mesh_policy_ops(mesh_json_t *j, mesh_header_ops_t *ops)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key;

    static const char *const  keys[] = { "set", "add", "remove", NULL };

    if (mesh_policy_open(j, '{', "header operations") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, keys, key, klen, &seen);

        switch (k) {

        case 0:
            rc = mesh_policy_op_list(j, 1, &ops->set, &ops->nset);
            break;

        case 1:
            rc = mesh_policy_op_list(j, 1, &ops->add, &ops->nadd);
            break;

        case 2:
            rc = mesh_policy_op_list(j, 0, &ops->remove, &ops->nremove);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 10);
        }

        if (rc != 0) {
            return -1;
        }
    }

    return rc == 0 ? 0 : -1;
}


/* a header name: a token, lowercased, in the arena */
static char *
mesh_policy_op_name(mesh_json_t *j, const unsigned char *s, size_t len,
    const unsigned char *at)
{
    char    *name;
    size_t   i;

    if (len == 0 || len > 256) {
        goto invalid;
    }

    name = mesh_arena_alloc(j->arena, len + 1);
    if (name == NULL) {
        mesh_json_error(j, at, "out of memory");
        return NULL;
    }

    for (i = 0; i < len; i++) {
        if (s[i] <= ' ' || s[i] >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", s[i]))
        {
            goto invalid;
        }

        name[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char) (s[i] - 'A' + 'a')
                                               : (char) s[i];
    }

    name[len] = '\0';

    return name;

invalid:

    mesh_json_error(j, at, "\"%.*s\" is not a header name",
                    (int) (len > 64 ? 64 : len), (const char *) s);
    return NULL;
}


/* a map of name -> value (values) or a list of names (removals) */
static int
mesh_policy_op_list(mesh_json_t *j, int values, mesh_header_op_t **ops,
    size_t *nops)
{
    int                   rc;
    char                 *name;
    size_t                n, klen, len;
    mesh_vec_t            v;
    mesh_header_op_t     *op;
    const unsigned char  *key, *at;

    if (mesh_policy_open(j, values ? '{' : '[', "a header operation") != 0) {
        return -1;
    }

    memset(&v, 0, sizeof(mesh_vec_t));
    v.size = sizeof(mesh_header_op_t);
    n = 0;

    for ( ;; ) {
        if (values) {
            rc = mesh_json_next_member(j, &n, &key, &klen);
            at = j->key_at;

        } else {
            rc = mesh_json_next_element(j, &n);
            at = j->pos;

            if (rc == 1) {
                if (*at != '"') {
                    mesh_json_error(j, at, "a header name must be a string");
                    goto fail;
                }

                if (mesh_json_string(j, &key, &klen) != 0) {
                    goto fail;
                }
            }
        }

        if (rc != 1) {
            break;
        }

        /* copied before the value reuses j->buf */

        name = mesh_policy_op_name(j, key, klen, at);
        if (name == NULL) {
            goto fail;
        }

        op = mesh_vec_push(j, &v);
        if (op == NULL) {
            goto fail;
        }

        op->name = name;
        op->name_len = klen;
        op->value = NULL;
        op->value_len = 0;

        if (values) {
            op->value = mesh_policy_text(j, "a header value", 0);
            if (op->value == NULL) {
                goto fail;
            }

            len = strlen(op->value);
            op->value_len = len;
        }
    }

    if (rc != 0) {
        goto fail;
    }

    *nops = v.nelts;
    *ops = mesh_policy_copy(j, &v);

    free(v.elts);

    return j->failed ? -1 : 0;

fail:

    free(v.elts);

    return -1;
}


/*
 * corsPolicy: {"allowOrigins": [StringMatch], "allowMethods": [...],
 * "allowHeaders": [...], "exposeHeaders": [...], "maxAgeS": N,
 * "allowCredentials": B, "unmatchedPreflights": "FORWARD" | "IGNORE"}
 */

int
mesh_policy_cors(mesh_json_t *j, mesh_http_route_t *h)
{
    int                   rc, k;
    char                 *s;
    size_t                n, klen;
    uint64_t              age;
    unsigned              seen;
    mesh_cors_t          *cors;
    const unsigned char  *key, *start, *at;

    static const char *const  keys[] = {
        "allowOrigins", "allowMethods", "allowHeaders", "exposeHeaders",
        "maxAgeS", "allowCredentials", "unmatchedPreflights", NULL
    };

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"corsPolicy\"") != 0) {
        return -1;
    }

    cors = mesh_arena_alloc(j->arena, sizeof(mesh_cors_t));
    if (cors == NULL) {
        mesh_json_error(j, start, "out of memory");
        return -1;
    }

    memset(cors, 0, sizeof(mesh_cors_t));
    cors->max_age = -1;
    cors->forward_unmatched = 1;

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, keys, key, klen, &seen);
        at = j->pos;

        switch (k) {

        case 0:
            cors->origins = mesh_policy_list(j, "\"allowOrigins\"",
                                             sizeof(mesh_string_match_t),
                                             mesh_policy_origin,
                                             &cors->norigins);
            rc = j->failed ? -1 : 0;
            break;

        case 1:
            cors->allow_methods = mesh_policy_joined(j, "\"allowMethods\"");
            rc = j->failed ? -1 : 0;
            break;

        case 2:
            cors->allow_headers = mesh_policy_joined(j, "\"allowHeaders\"");
            rc = j->failed ? -1 : 0;
            break;

        case 3:
            cors->expose_headers = mesh_policy_joined(j, "\"exposeHeaders\"");
            rc = j->failed ? -1 : 0;
            break;

        case 4:
            rc = mesh_json_uint(j, "maxAgeS", 1, MESH_MS_MAX / 1000, &age);
            cors->max_age = (int64_t) age;
            break;

        case 5:
            rc = mesh_policy_bool(j, "allowCredentials",
                                  &cors->allow_credentials);
            break;

        case 6:
            s = mesh_json_cstr(j, "\"unmatchedPreflights\"");
            rc = s ? 0 : -1;

            if (rc == 0) {
                if (strcmp(s, "IGNORE") == 0) {
                    cors->forward_unmatched = 0;

                } else if (strcmp(s, "FORWARD") != 0) {
                    mesh_json_error(j, at, "unknown \"unmatchedPreflights\" "
                                    "\"%.16s\"", s);
                    rc = -1;
                }
            }

            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 6);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    h->cors = cors;

    return 0;
}


static int
mesh_policy_origin(mesh_json_t *j, void *elt)
{
    return mesh_policy_string_match(j, elt, "an \"allowOrigins\" item");
}


/*
 * A list of methods or header names (tokens), joined with "," as Istio
 * joins them for Envoy, in the arena; NULL for an empty list (or on an
 * error, which sets j->failed)
 */
static char *
mesh_policy_joined(mesh_json_t *j, const char *what)
{
    int                   rc;
    char                 *joined, *p;
    size_t                n, i, len, size, used;
    const unsigned char  *s, *at;

    if (mesh_policy_open(j, '[', what) != 0) {
        return NULL;
    }

    joined = NULL;
    size = 0;
    used = 0;
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        at = j->pos;

        if (*at != '"') {
            mesh_json_error(j, at, "a %s item must be a string", what);
            goto fail;
        }

        if (mesh_json_string(j, &s, &len) != 0) {
            goto fail;
        }

        if (len == 0 || len > 256) {
            goto invalid;
        }

        for (i = 0; i < len; i++) {
            if (s[i] <= ' ' || s[i] >= 0x7f
                || strchr("\"(),/:;<=>?@[\\]{}", s[i]))
            {
                goto invalid;
            }
        }

        if (used + len + 2 > size) {
            size = 2 * size + len + 64;

            p = realloc(joined, size);
            if (p == NULL) {
                mesh_json_error(j, at, "out of memory");
                goto fail;
            }

            joined = p;
        }

        if (used) {
            joined[used++] = ',';
        }

        memcpy(joined + used, s, len);
        used += len;
        joined[used] = '\0';
    }

    if (rc != 0) {
        goto fail;
    }

    if (used == 0) {
        free(joined);
        return NULL;
    }

    p = mesh_arena_alloc(j->arena, used + 1);
    if (p == NULL) {
        mesh_json_error(j, j->pos, "out of memory");
        goto fail;
    }

    memcpy(p, joined, used + 1);
    free(joined);

    return p;

invalid:

    mesh_json_error(j, at, "%s holds \"%.*s\", not a token", what,
                    (int) (len > 64 ? 64 : len), (const char *) s);

fail:

    free(joined);
    j->failed = 1;

    return NULL;
}


int
mesh_cors_origin_allowed(const mesh_cors_t *cors, const char *origin,
    size_t len, mesh_regex_match_pt re_match)
{
    size_t  i;

    if (cors == NULL || len == 0) {
        return 0;
    }

    /* Envoy's isOriginAllowed(): an item that matches "*" allows all */
    for (i = 0; i < cors->norigins; i++) {
        if (mesh_string_match(&cors->origins[i], "*", 1, re_match)
            || mesh_string_match(&cors->origins[i], origin, len, re_match))
        {
            return 1;
        }
    }

    return 0;
}
