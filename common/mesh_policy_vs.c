/*
 * mesh_policy_vs: a VirtualService read into the model (hosts, http
 * routes: matches, weighted destinations, timeouts, retries); what a
 * route does to a request besides (fault, rewrite, redirect,
 * directResponse, headers, corsPolicy) is read in mesh_policy_shape.c.
 */

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_json.h"
#include "mesh_policy.h"
#include "mesh_policy_int.h"
#include "mesh_regex.h"


enum {
    MESH_VS_POLICY = 0,
    MESH_VS_KIND,
    MESH_VS_NAME,
    MESH_VS_HOSTS,
    MESH_VS_HTTP,
    MESH_VS_GATEWAYS,
    MESH_VS_NAMESPACE,
    MESH_VS_TCP,
    MESH_VS_TLS
};

static const char *const  mesh_vs_keys[] = {
    "policy", "kind", "name", "hosts", "http", "gateways", "namespace", "tcp",
    "tls", NULL
};


enum {
    MESH_HT_NAME = 0,
    MESH_HT_MATCH,
    MESH_HT_ROUTE,
    MESH_HT_RETRIES,
    MESH_HT_TIMEOUT,
    MESH_HT_FAULT,
    MESH_HT_REWRITE,
    MESH_HT_HEADERS,
    MESH_HT_REDIRECT,
    MESH_HT_DIRECT,
    MESH_HT_CORS,
    MESH_HT_MIRRORS
};

static const char *const  mesh_ht_keys[] = {
    "name", "match", "route", "retries", "timeoutMs", "fault", "rewrite",
    "headers", "redirect", "directResponse", "corsPolicy", "mirrors", NULL
};


enum {
    MESH_MA_URI = 0,
    MESH_MA_HEADERS,
    MESH_MA_IGNORE_URI_CASE,
    MESH_MA_SOURCE_LABELS
};

static const char *const  mesh_ma_keys[] = {
    "uri", "headers", "ignoreUriCase", "sourceLabels", NULL
};

static const char *const  mesh_sm_keys[] = {
    "exact", "prefix", "regex", NULL    /* in MESH_MATCH_* order */
};


enum {
    MESH_RT_DESTINATION = 0,
    MESH_RT_WEIGHT,
    MESH_RT_HEADERS
};

static const char *const  mesh_rt_keys[] = {
    "destination", "weight", "headers", NULL
};

enum {
    MESH_DS_HOST = 0,
    MESH_DS_SUBSET,
    MESH_DS_PORT
};

static const char *const  mesh_ds_keys[] = { "host", "subset", "port", NULL };

enum {
    MESH_MI_DESTINATION = 0,
    MESH_MI_PPM
};

static const char *const  mesh_mi_keys[] = { "destination", "ppm", NULL };

enum {
    MESH_RE_ATTEMPTS = 0,
    MESH_RE_PER_TRY,
    MESH_RE_RETRY_ON
};

static const char *const  mesh_re_keys[] = {
    "attempts", "perTryTimeoutMs", "retryOn", NULL
};

/* what nginx can retry on: registryd accepts exactly these too */
const mesh_retry_on_t  mesh_retry_on[] = {
    { "5xx", MESH_RETRY_5XX },
    { "gateway-error", MESH_RETRY_GATEWAY_ERROR },
    { "connect-failure", MESH_RETRY_CONNECT_FAILURE },
    { "reset", MESH_RETRY_RESET },
    { NULL, 0 }
};


static int mesh_policy_hosts(mesh_json_t *j, mesh_virtual_service_t *vs);
static int mesh_policy_http(mesh_json_t *j, void *elt);
static int mesh_policy_match(mesh_json_t *j, void *elt);
static int mesh_policy_headers(mesh_json_t *j, mesh_match_t *m);
static int mesh_policy_route(mesh_json_t *j, void *elt);
static int mesh_policy_destination(mesh_json_t *j, mesh_destination_t *d);
static int mesh_policy_mirror(mesh_json_t *j, void *elt);
static int mesh_policy_tcp(mesh_json_t *j, void *elt);
static int mesh_policy_tcp_match(mesh_json_t *j, mesh_tcp_route_t *t);
static int mesh_policy_tls(mesh_json_t *j, void *elt);
static int mesh_policy_l4(mesh_json_t *j, void *elt, int tls);
static int mesh_policy_tls_match(mesh_json_t *j, void *elt);
static int mesh_policy_retries(mesh_json_t *j, mesh_http_route_t *h);
static int mesh_policy_retry_on(mesh_json_t *j, unsigned *bits);

int
mesh_policy_vs(mesh_json_t *j, mesh_virtual_service_t *vs)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(vs, 0, sizeof(mesh_virtual_service_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a VirtualService") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_vs_keys, key, klen, &seen);

        switch (k) {

        case MESH_VS_POLICY:
            vs->policy = mesh_policy_name(j, "\"policy\"");
            if (vs->policy == NULL) {
                return -1;
            }

            break;

        case MESH_VS_NAME:
            vs->name = mesh_policy_name(j, "\"name\"");
            if (vs->name == NULL) {
                return -1;
            }

            break;

        case MESH_VS_HOSTS:
            if (mesh_policy_hosts(j, vs) != 0) {
                return -1;
            }

            break;

        case MESH_VS_HTTP:
            vs->http = mesh_policy_list(j, "\"http\"",
                                        sizeof(mesh_http_route_t),
                                        mesh_policy_http, &vs->nhttp);
            if (j->failed) {
                return -1;
            }

            break;

        case MESH_VS_GATEWAYS:
            if (mesh_policy_strings(j, "\"gateways\"", &vs->gateways,
                                    &vs->ngateways)
                != 0)
            {
                return -1;
            }

            break;

        case MESH_VS_NAMESPACE:
            vs->ns = mesh_policy_name(j, "\"namespace\"");
            if (vs->ns == NULL) {
                return -1;
            }

            break;

        case MESH_VS_TCP:
            vs->tcp = mesh_policy_list(j, "\"tcp\"",
                                       sizeof(mesh_tcp_route_t),
                                       mesh_policy_tcp, &vs->ntcp);
            if (j->failed) {
                return -1;
            }

            break;

        case MESH_VS_TLS:
            vs->tls = mesh_policy_list(j, "\"tls\"",
                                       sizeof(mesh_tls_route_t),
                                       mesh_policy_tls, &vs->ntls);
            if (j->failed) {
                return -1;
            }

            break;

        case -2:
            return -1;

        default:
            if (mesh_json_skip(j, 2) != 0) {
                return -1;
            }
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_VS_POLICY)
        || !mesh_policy_has(seen, MESH_VS_NAME)
        || !mesh_policy_has(seen, MESH_VS_HOSTS)
        || !mesh_policy_has(seen, MESH_VS_HTTP))
    {
        mesh_json_error(j, start, "a VirtualService without \"%s\"",
                        !mesh_policy_has(seen, MESH_VS_POLICY) ? "policy"
                        : !mesh_policy_has(seen, MESH_VS_NAME) ? "name"
                        : !mesh_policy_has(seen, MESH_VS_HOSTS) ? "hosts"
                        : "http");
        return -1;
    }

    /* without gateways: the mesh's alone */
    vs->mesh = (vs->ngateways == 0 || mesh_vs_at_gateway(vs, "mesh"));

    return 0;
}


/* VirtualService */

/*
 * a tcp[] item: {"match": [{"port": N}...], "route": [...]}; a tls[]
 * item: {"match": [{"sniHosts": [...], "port": N}...], "route": [...]},
 * its match required
 */
static int
mesh_policy_tcp(mesh_json_t *j, void *elt)
{
    return mesh_policy_l4(j, elt, 0);
}


static int
mesh_policy_tls(mesh_json_t *j, void *elt)
{
    return mesh_policy_l4(j, elt, 1);
}


static int
mesh_policy_l4(mesh_json_t *j, void *elt, int tls)
{
    int                   rc, k;
    size_t                n, klen, *nroutes, *nmatches;
    unsigned              seen;
    mesh_tls_route_t     *lr;
    mesh_tcp_route_t     *tr;
    mesh_destination_t  **routes;
    const unsigned char  *key, *start;

    static const char *const  keys[] = { "match", "route", NULL };

    lr = elt;
    tr = elt;

    if (tls) {
        memset(lr, 0, sizeof(mesh_tls_route_t));
        routes = &lr->routes;
        nroutes = &lr->nroutes;
        nmatches = &lr->nmatches;

    } else {
        memset(tr, 0, sizeof(mesh_tcp_route_t));
        routes = &tr->routes;
        nroutes = &tr->nroutes;
        nmatches = NULL;
    }

    start = j->pos;

    if (mesh_policy_open(j, '{', tls ? "a \"tls\" item" : "a \"tcp\" item")
        != 0)
    {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, keys, key, klen, &seen);

        switch (k) {

        case 0:
            if (tls) {
                lr->matches = mesh_policy_list(j, "\"match\"",
                                               sizeof(mesh_tls_match_t),
                                               mesh_policy_tls_match,
                                               &lr->nmatches);
                rc = j->failed ? -1 : 0;

            } else {
                rc = mesh_policy_tcp_match(j, tr);
            }

            break;

        case 1:
            *routes = mesh_policy_list(j, "\"route\"",
                                       sizeof(mesh_destination_t),
                                       mesh_policy_route, nroutes);
            rc = j->failed ? -1 : 0;
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 4);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if ((nmatches && *nmatches == 0) || *nroutes == 0) {
        mesh_json_error(j, start, "a \"%s\" item without \"%s\"",
                        tls ? "tls" : "tcp",
                        (nmatches && *nmatches == 0) ? "match" : "route");
        return -1;
    }

    return 0;
}


/* "match": each item a port; the route fits a connection to any of them */
static int
mesh_policy_tcp_match(mesh_json_t *j, mesh_tcp_route_t *t)
{
    int                   rc, *port;
    size_t                n, m, klen;
    uint64_t              v;
    mesh_vec_t            vec;
    const unsigned char  *key;

    if (mesh_policy_open(j, '[', "\"match\"") != 0) {
        return -1;
    }

    memset(&vec, 0, sizeof(mesh_vec_t));
    vec.size = sizeof(int);
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        if (mesh_policy_open(j, '{', "a \"match\" item") != 0) {
            goto fail;
        }

        m = 0;
        port = NULL;

        while ((rc = mesh_json_next_member(j, &m, &key, &klen)) == 1) {
            if (klen == 4 && memcmp(key, "port", 4) == 0) {
                if (mesh_json_uint(j, "port", 1, 65535, &v) != 0) {
                    goto fail;
                }

                port = mesh_vec_push(j, &vec);
                if (port == NULL) {
                    goto fail;
                }

                *port = (int) v;

            } else if (mesh_json_skip(j, 6) != 0) {
                goto fail;
            }
        }

        if (rc != 0) {
            goto fail;
        }

        if (port == NULL) {
            mesh_json_error(j, j->pos, "a tcp \"match\" item without "
                            "\"port\"");
            goto fail;
        }
    }

    if (rc != 0) {
        goto fail;
    }

    t->nports = vec.nelts;
    t->ports = mesh_policy_copy(j, &vec);
    free(vec.elts);

    return (t->nports && t->ports == NULL) ? -1 : 0;

fail:

    free(vec.elts);
    return -1;
}



static int
mesh_policy_tls_match(mesh_json_t *j, void *elt)
{
    mesh_tls_match_t  *m = elt;

    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    static const char *const  keys[] = { "sniHosts", "port", NULL };

    memset(m, 0, sizeof(mesh_tls_match_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a tls \"match\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, keys, key, klen, &seen);

        switch (k) {

        case 0:
            rc = mesh_policy_strings(j, "\"sniHosts\"", &m->sni, &m->nsni);
            break;

        case 1:
            rc = mesh_policy_int(j, "\"port\"", 1, 65535, &m->port);
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

    if (m->nsni == 0) {
        mesh_json_error(j, start, "a tls \"match\" item without "
                        "\"sniHosts\"");
        return -1;
    }

    return 0;
}


static int
mesh_policy_hosts(mesh_json_t *j, mesh_virtual_service_t *vs)
{
    int           rc;
    size_t        n;
    mesh_vec_t    v;
    const char  **host;

    if (mesh_policy_open(j, '[', "\"hosts\"") != 0) {
        return -1;
    }

    memset(&v, 0, sizeof(mesh_vec_t));
    v.size = sizeof(const char *);
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        host = mesh_vec_push(j, &v);
        if (host == NULL) {
            goto fail;
        }

        *host = mesh_policy_name(j, "a host");
        if (*host == NULL) {
            goto fail;
        }
    }

    if (rc != 0) {
        goto fail;
    }

    vs->nhosts = v.nelts;
    vs->hosts = mesh_policy_copy(j, &v);

    free(v.elts);

    return j->failed ? -1 : 0;

fail:

    free(v.elts);

    return -1;
}


static int
mesh_policy_http(mesh_json_t *j, void *elt)
{
    mesh_http_route_t  *h = elt;

    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(h, 0, sizeof(mesh_http_route_t));

    h->attempts = -1;
    h->per_try_timeout = -1;
    h->retry_on = 0;
    h->timeout = -1;
    h->fault.delay = -1;
    h->fault.abort_status = 0;

    start = j->pos;

    if (mesh_policy_open(j, '{', "an \"http\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_ht_keys, key, klen, &seen);

        switch (k) {

        case MESH_HT_NAME:
            h->name = mesh_json_cstr(j, "an \"http\" item's \"name\"");
            rc = h->name ? 0 : -1;
            break;

        case MESH_HT_MATCH:
            h->matches = mesh_policy_list(j, "\"match\"",
                                          sizeof(mesh_match_t),
                                          mesh_policy_match, &h->nmatches);
            rc = j->failed ? -1 : 0;
            break;

        case MESH_HT_ROUTE:
            h->routes = mesh_policy_list(j, "\"route\"",
                                         sizeof(mesh_destination_t),
                                         mesh_policy_route, &h->nroutes);
            rc = j->failed ? -1 : 0;
            break;

        case MESH_HT_RETRIES:
            rc = mesh_policy_retries(j, h);
            break;

        case MESH_HT_TIMEOUT:
            rc = mesh_policy_ms(j, "timeoutMs", 1, &h->timeout);
            break;

        case MESH_HT_FAULT:
            rc = mesh_policy_fault(j, &h->fault);
            break;

        case MESH_HT_REWRITE:
            rc = mesh_policy_rewrite(j, &h->rewrite);
            break;

        case MESH_HT_HEADERS:
            rc = mesh_policy_header_ops(j, &h->headers);
            break;

        case MESH_HT_REDIRECT:
            rc = mesh_policy_redirect(j, h);
            break;

        case MESH_HT_DIRECT:
            rc = mesh_policy_direct(j, h);
            break;

        case MESH_HT_CORS:
            rc = mesh_policy_cors(j, h);
            break;

        case MESH_HT_MIRRORS:
            h->mirrors = mesh_policy_list(j, "\"mirrors\"",
                                          sizeof(mesh_mirror_t),
                                          mesh_policy_mirror, &h->nmirrors);
            rc = j->failed ? -1 : 0;
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 4);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_HT_MATCH)) {
        mesh_json_error(j, start, "an \"http\" item without \"match\"");
        return -1;
    }

    /* a route is sent upstream, redirected or answered: one of them */

    if (!mesh_policy_has(seen, MESH_HT_ROUTE)
        && !mesh_policy_has(seen, MESH_HT_REDIRECT)
        && !mesh_policy_has(seen, MESH_HT_DIRECT))
    {
        mesh_json_error(j, start, "an \"http\" item without \"route\"");
        return -1;
    }

    if ((h->redirect != NULL) + (h->direct != NULL)
        + (mesh_policy_has(seen, MESH_HT_ROUTE) != 0) > 1)
    {
        mesh_json_error(j, start, "an \"http\" item with more than one of "
                        "\"route\", \"redirect\" and \"directResponse\"");
        return -1;
    }

    if ((h->redirect || h->direct)
        && (h->fault.delay >= 0 || h->fault.abort_status
            || h->rewrite.uri || h->rewrite.authority || h->nmirrors))
    {
        mesh_json_error(j, start, "an \"http\" item answered by nginx "
                        "with \"fault\", \"rewrite\" or \"mirrors\"");
        return -1;
    }

    return 0;
}


static int
mesh_policy_match(mesh_json_t *j, void *elt)
{
    mesh_match_t  *m = elt;

    int                   rc, k, nocase;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(m, 0, sizeof(mesh_match_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a \"match\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;
    nocase = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_ma_keys, key, klen, &seen);

        switch (k) {

        case MESH_MA_URI:
            m->uri = mesh_arena_alloc(j->arena, sizeof(mesh_string_match_t));
            if (m->uri == NULL) {
                mesh_json_error(j, j->pos, "out of memory");
                return -1;
            }

            rc = mesh_policy_string_match(j, m->uri, "\"uri\"");
            break;

        case MESH_MA_HEADERS:
            rc = mesh_policy_headers(j, m);
            break;

        case MESH_MA_IGNORE_URI_CASE:
            rc = mesh_policy_bool(j, "ignoreUriCase", &nocase);
            break;

        case MESH_MA_SOURCE_LABELS:
            rc = mesh_policy_labels(j, "\"sourceLabels\"", &m->source_labels,
                                    &m->nsource_labels);
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

    /* Istio: the case is ignored by exact and prefix only, not by a regex
     * (mesh_string_match looks at the flag for those two alone) */

    if (nocase && m->uri) {
        m->uri->ignore_case = 1;
    }

    if (m->uri == NULL && m->nheaders == 0 && m->nsource_labels == 0) {
        mesh_json_error(j, start, "a \"match\" item without \"uri\", "
                        "\"headers\" or \"sourceLabels\"");
        return -1;
    }

    return 0;
}


static int
mesh_policy_headers(mesh_json_t *j, mesh_match_t *m)
{
    int                   rc;
    char                 *name;
    size_t                n, i, klen;
    mesh_vec_t            v;
    mesh_header_match_t  *hm;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "\"headers\"") != 0) {
        return -1;
    }

    memset(&v, 0, sizeof(mesh_vec_t));
    v.size = sizeof(mesh_header_match_t);
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {

        if (klen == 0 || memchr(key, '\0', klen)) {
            mesh_json_error(j, j->key_at, "an invalid header name");
            goto fail;
        }

        /* copied before the value reuses j->buf; lowercase, as nginx's */

        name = mesh_arena_alloc(j->arena, klen + 1);
        if (name == NULL) {
            mesh_json_error(j, j->key_at, "out of memory");
            goto fail;
        }

        for (i = 0; i < klen; i++) {
            name[i] = (key[i] >= 'A' && key[i] <= 'Z')
                      ? (char) (key[i] - 'A' + 'a') : (char) key[i];
        }

        name[klen] = '\0';

        hm = mesh_vec_push(j, &v);
        if (hm == NULL) {
            goto fail;
        }

        hm->name = name;
        hm->name_len = klen;

        if (mesh_policy_string_match(j, &hm->match, "a header match") != 0) {
            goto fail;
        }
    }

    if (rc != 0) {
        goto fail;
    }

    m->nheaders = v.nelts;
    m->headers = mesh_policy_copy(j, &v);

    free(v.elts);

    return j->failed ? -1 : 0;

fail:

    free(v.elts);

    return -1;
}


int
mesh_policy_string_match(mesh_json_t *j, mesh_string_match_t *m,
    const char *what)
{
    int                   rc, k;
    char                 *value, rerr[MESH_ERR_LEN];
    size_t                n, klen;
    unsigned              seen;
    mesh_regex_t         *re, **slot;
    const unsigned char  *key, *start, *at;

    memset(m, 0, sizeof(mesh_string_match_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', what) != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_sm_keys, key, klen, &seen);

        if (k == -2) {
            return -1;
        }

        if (k == -1) {
            if (mesh_json_skip(j, 8) != 0) {
                return -1;
            }

            continue;
        }

        if (seen & ~(1u << k)) {
            mesh_json_error(j, j->key_at, "%s holds more than one of "
                            "\"exact\", \"prefix\" and \"regex\"", what);
            return -1;
        }

        at = j->pos;

        value = mesh_json_cstr(j, what);
        if (value == NULL) {
            return -1;
        }

        if (value[0] == '\0') {
            mesh_json_error(j, at, "%s is an empty string", what);
            return -1;
        }

        m->kind = k;
        m->value = value;
        m->len = strlen(value);

        if (k == MESH_MATCH_REGEX) {
            /* as registryd checked it: one definition, mesh_regex */
            re = mesh_regex_compile(value, m->len, rerr, sizeof(rerr));
            if (re == NULL) {
                mesh_json_error(j, at, "%s: %s", what, rerr);
                return -1;
            }

            slot = mesh_vec_push(j, j->data);
            if (slot == NULL) {
                mesh_regex_free(re);
                return -1;
            }

            *slot = re;
            m->regex = re;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (seen == 0) {
        mesh_json_error(j, start, "%s without \"exact\", \"prefix\" or "
                        "\"regex\"", what);
        return -1;
    }

    return 0;
}


static int
mesh_policy_route(mesh_json_t *j, void *elt)
{
    mesh_destination_t  *d = elt;

    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(d, 0, sizeof(mesh_destination_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a \"route\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_rt_keys, key, klen, &seen);

        switch (k) {

        case MESH_RT_DESTINATION:
            rc = mesh_policy_destination(j, d);
            break;

        case MESH_RT_WEIGHT:
            rc = mesh_policy_int(j, "weight", 0, 100, &d->weight);
            break;

        case MESH_RT_HEADERS:
            rc = mesh_policy_header_ops(j, &d->headers);
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

    if (!mesh_policy_has(seen, MESH_RT_DESTINATION)
        || !mesh_policy_has(seen, MESH_RT_WEIGHT))
    {
        mesh_json_error(j, start, "a \"route\" item without \"%s\"",
                        !mesh_policy_has(seen, MESH_RT_DESTINATION)
                        ? "destination" : "weight");
        return -1;
    }

    return 0;
}


static int
mesh_policy_mirror(mesh_json_t *j, void *elt)
{
    mesh_mirror_t  *mi = elt;

    int                   rc, k;
    size_t                n, klen;
    uint64_t              ppm;
    unsigned              seen;
    mesh_destination_t    d;
    const unsigned char  *key, *start;

    memset(mi, 0, sizeof(mesh_mirror_t));
    memset(&d, 0, sizeof(mesh_destination_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a \"mirrors\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;
    ppm = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_mi_keys, key, klen, &seen);

        switch (k) {

        case MESH_MI_DESTINATION:
            rc = mesh_policy_destination(j, &d);
            break;

        case MESH_MI_PPM:
            rc = mesh_json_uint(j, "ppm", 0, 1000000, &ppm);
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

    if (!mesh_policy_has(seen, MESH_MI_DESTINATION)
        || !mesh_policy_has(seen, MESH_MI_PPM))
    {
        mesh_json_error(j, start, "a \"mirrors\" item without \"%s\"",
                        !mesh_policy_has(seen, MESH_MI_DESTINATION)
                        ? "destination" : "ppm");
        return -1;
    }

    mi->host = d.host;
    mi->subset = d.subset;
    mi->port = d.port;
    mi->ppm = (uint32_t) ppm;

    return 0;
}


static int
mesh_policy_destination(mesh_json_t *j, mesh_destination_t *d)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    start = j->pos;

    if (mesh_policy_open(j, '{', "\"destination\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_ds_keys, key, klen, &seen);

        switch (k) {

        case MESH_DS_HOST:
            d->host = mesh_policy_name(j, "\"destination.host\"");
            rc = d->host ? 0 : -1;
            break;

        case MESH_DS_SUBSET:
            d->subset = mesh_policy_name(j, "\"destination.subset\"");
            rc = d->subset ? 0 : -1;
            break;

        case MESH_DS_PORT:
            rc = mesh_policy_int(j, "\"destination.port\"", 1, 65535,
                                 &d->port);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 7);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_DS_HOST)) {
        mesh_json_error(j, start, "\"destination\" without \"host\"");
        return -1;
    }

    return 0;
}


static int
mesh_policy_retries(mesh_json_t *j, mesh_http_route_t *h)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', "\"retries\"") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_re_keys, key, klen, &seen);

        switch (k) {

        case MESH_RE_ATTEMPTS:
            rc = mesh_policy_int(j, "attempts", 0, 100, &h->attempts);
            break;

        case MESH_RE_PER_TRY:
            rc = mesh_policy_ms(j, "perTryTimeoutMs", 1, &h->per_try_timeout);
            break;

        case MESH_RE_RETRY_ON:
            rc = mesh_policy_retry_on(j, &h->retry_on);
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

    return rc == 0 ? 0 : -1;
}


static int
mesh_policy_retry_on(mesh_json_t *j, unsigned *bits)
{
    int                     rc;
    size_t                  n, len;
    const unsigned char    *s, *at;
    const mesh_retry_on_t  *ro;

    if (mesh_policy_open(j, '[', "\"retryOn\"") != 0) {
        return -1;
    }

    *bits = 0;
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        at = j->pos;

        if (*at != '"') {
            mesh_json_error(j, at, "a \"retryOn\" item must be a string");
            return -1;
        }

        if (mesh_json_string(j, &s, &len) != 0) {
            return -1;
        }

        for (ro = mesh_retry_on; ro->name; ro++) {
            if (strlen(ro->name) == len && memcmp(ro->name, s, len) == 0) {
                break;
            }
        }

        if (ro->name == NULL) {
            mesh_json_error(j, at, "unknown \"retryOn\" \"%.*s\"",
                            (int) (len > 64 ? 64 : len), (const char *) s);
            return -1;
        }

        *bits |= ro->bit;
    }

    return rc == 0 ? 0 : -1;
}

