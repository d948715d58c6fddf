/*
 * rd_policy_vs_shape: what a VirtualService's http route does to a request
 * besides choosing its destination (Istio's fault, rewrite, redirect,
 * directResponse and headers), validated and normalized for the module
 * (docs/policies.md, "In the snapshot").
 */

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "mesh_policy.h"
#include "rd_policy_int.h"


#define RD_URI_MAX          2048
#define RD_AUTHORITY_MAX    255
#define RD_HEADER_VALUE_MAX 8192
#define RD_BODY_MAX         65536


/* the text of a scalar without a NUL inside (libyaml passes "\0" on) */
static int
rd_get_text(rd_pctx_t *c, yaml_node_t *n, const char **out)
{
    if (rd_get_str(c, n, out) != 0) {
        return -1;
    }

    if (strlen(*out) != n->data.scalar.length) {
        return rd_perr(c, n, "must not hold a NUL byte");
    }

    return 0;
}


/* a YAML number (integer or decimal, not hex, inf or nan) in min..max */
static int
rd_get_number(rd_pctx_t *c, yaml_node_t *n, double min, double max,
    double *out)
{
    int          t;
    char        *end;
    double       v;
    const char  *s;

    t = rd_ytype(n);
    s = (const char *) n->data.scalar.value;

    if ((t != RD_Y_INT && t != RD_Y_FLOAT) || strpbrk(s, "xXoO") != NULL) {
        return rd_perr(c, n, "must be a number %g..%g", min, max);
    }

    errno = 0;
    v = strtod(s, &end);

    if (errno || *end != '\0' || !isfinite(v) || v < min || v > max) {
        return rd_perr(c, n, "must be a number %g..%g", min, max);
    }

    *out = v;
    return 0;
}


/*
 * Istio's Percent ({value: 0..100}, a double) as requests per million,
 * rounded to the nearest: 0.1 is 1000
 */
int
rd_parse_percentage(rd_pctx_t *c, yaml_node_t *n, long long *ppm)
{
    int                seen = 0;
    size_t             old;
    double             v = 0;
    const char        *k;
    yaml_node_t       *kn, *val;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, val) {
        old = rd_path_key(c, k);

        if (strcmp(k, "value") != 0) {
            return rd_unknown(c, kn, k, "value", NULL);
        }

        if (rd_get_number(c, val, 0, 100, &v) != 0) {
            return -1;
        }

        *ppm = llround(v * 10000);
        seen = 1;
        rd_path_pop(c, old);
    }

    if (!seen) {
        return rd_missing(c, n, "value");
    }

    return 0;
}


static int
rd_parse_delay(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    int64_t            ms = -1;
    size_t             old;
    long long          ppm = RD_PPM_ALL, pc;
    const char        *k;
    yaml_node_t       *kn, *v, *given = NULL;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "fixedDelay") == 0) {
            if (rd_get_duration(c, v, 1, &ms) != 0) {
                return -1;
            }

        } else if (strcmp(k, "percentage") == 0
                   || strcmp(k, "percent") == 0)
        {
            if (given) {
                return rd_perr(c, kn, "give one of percentage and percent "
                               "(deprecated), not both");
            }

            given = kn;

            if (strcmp(k, "percentage") == 0) {
                if (rd_parse_percentage(c, v, &ppm) != 0) {
                    return -1;
                }

            } else {
                if (rd_get_int(c, v, 0, 100, &pc) != 0) {
                    return -1;
                }
                ppm = pc * 10000;
            }

        } else if (strcmp(k, "exponentialDelay") == 0) {
            return rd_perr(c, kn, "unsupported field \"exponentialDelay\": "
                           "Istio does not implement it either; use "
                           "fixedDelay");

        } else {
            return rd_unknown(c, kn, k, "fixedDelay,percentage,percent",
                              NULL);
        }

        rd_path_pop(c, old);
    }

    if (ms < 0) {
        return rd_missing(c, n, "fixedDelay");
    }

    rd_jset(o, "fixedDelayMs", json_integer(ms));
    rd_jset(o, "ppm", json_integer(ppm));

    return 0;
}


static int
rd_parse_abort(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    size_t             old;
    long long          status = 0, ppm = RD_PPM_ALL;
    const char        *k;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "httpStatus") == 0) {
            if (rd_get_int(c, v, 200, 599, &status) != 0) {
                return -1;
            }

        } else if (strcmp(k, "percentage") == 0) {
            if (rd_parse_percentage(c, v, &ppm) != 0) {
                return -1;
            }

        } else if (strcmp(k, "grpcStatus") == 0
                   || strcmp(k, "http2Error") == 0)
        {
            return rd_perr(c, kn, "unsupported field \"%s\": nginx aborts "
                           "with an HTTP status; use httpStatus", k);

        } else {
            return rd_unknown(c, kn, k, "httpStatus,percentage", NULL);
        }

        rd_path_pop(c, old);
    }

    if (status == 0) {
        return rd_missing(c, n, "httpStatus");
    }

    rd_jset(o, "httpStatus", json_integer(status));
    rd_jset(o, "ppm", json_integer(ppm));

    return 0;
}


int
rd_parse_fault(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    size_t             old;
    json_t            *o, *f;
    const char        *k;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "delay") == 0) {
            f = rd_jobj();
            rd_jset(o, k, f);
            if (rd_parse_delay(c, v, f) != 0) {
                return -1;
            }

        } else if (strcmp(k, "abort") == 0) {
            f = rd_jobj();
            rd_jset(o, k, f);
            if (rd_parse_abort(c, v, f) != 0) {
                return -1;
            }

        } else {
            return rd_unknown(c, kn, k, "delay,abort", NULL);
        }

        rd_path_pop(c, old);
    }

    if (json_object_size(o) == 0) {
        return rd_perr(c, n, "needs delay, abort or both");
    }

    return 0;
}


/* a path: "/" first, printable ASCII without spaces */
static int
rd_get_uri(rd_pctx_t *c, yaml_node_t *n, const char **out)
{
    const unsigned char  *s;

    if (rd_get_nonempty(c, n, RD_URI_MAX, out) != 0) {
        return -1;
    }

    if ((*out)[0] != '/') {
        return rd_perr(c, n, "\"%.64s\" is not a path: it must start with "
                       "\"/\"", *out);
    }

    for (s = (const unsigned char *) *out; *s; s++) {
        if (*s <= ' ' || *s >= 0x7f) {
            return rd_perr(c, n, "\"%.64s\" holds a space, a control "
                           "character or a non-ASCII byte (percent-encode "
                           "it)", *out);
        }
    }

    return 0;
}


/* host[:port], a DNS name or an address in brackets */
static int
rd_get_authority(rd_pctx_t *c, yaml_node_t *n, const char **out)
{
    const unsigned char  *s;

    if (rd_get_nonempty(c, n, RD_AUTHORITY_MAX, out) != 0) {
        return -1;
    }

    for (s = (const unsigned char *) *out; *s; s++) {
        if (!isalnum(*s) && strchr(".-_:[]", *s) == NULL) {
            return rd_perr(c, n, "\"%.64s\" is not an authority "
                           "(host or host:port)", *out);
        }
    }

    return 0;
}


int
rd_parse_rewrite(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    size_t             old;
    json_t            *o;
    const char        *k, *s;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "uri") == 0) {
            if (rd_get_uri(c, v, &s) != 0) {
                return -1;
            }

        } else if (strcmp(k, "authority") == 0) {
            if (rd_get_authority(c, v, &s) != 0) {
                return -1;
            }

        } else if (strcmp(k, "uriRegexRewrite") == 0) {
            return rd_perr(c, kn, "unsupported field \"uriRegexRewrite\": "
                           "ngx_mesh rewrites the matched prefix (uri) or "
                           "the authority");

        } else {
            return rd_unknown(c, kn, k, "uri,authority", NULL);
        }

        rd_jset(o, k, json_string(s));
        rd_path_pop(c, old);
    }

    if (json_object_size(o) == 0) {
        return rd_perr(c, n, "needs uri, authority or both");
    }

    return 0;
}


int
rd_parse_redirect(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    size_t             old;
    json_t            *o;
    long long          i, code = 301;
    const char        *k, *s;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "uri") == 0) {
            if (rd_get_uri(c, v, &s) != 0) {
                return -1;
            }
            rd_jset(o, k, json_string(s));

        } else if (strcmp(k, "authority") == 0) {
            if (rd_get_authority(c, v, &s) != 0) {
                return -1;
            }
            rd_jset(o, k, json_string(s));

        } else if (strcmp(k, "scheme") == 0) {
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

            if (strcmp(s, "http") != 0 && strcmp(s, "https") != 0) {
                return rd_perr(c, v, "\"%.64s\" is not a redirect scheme: "
                               "http or https", s);
            }
            rd_jset(o, k, json_string(s));

        } else if (strcmp(k, "port") == 0) {
            if (rd_get_int(c, v, 1, 65535, &i) != 0) {
                return -1;
            }
            rd_jset(o, k, json_integer(i));

        } else if (strcmp(k, "redirectCode") == 0) {
            if (rd_get_int(c, v, 300, 399, &code) != 0) {
                return -1;
            }

            if (code != 301 && code != 302 && code != 303 && code != 307
                && code != 308)
            {
                return rd_perr(c, v, "redirect code %lld is not one of 301, "
                               "302, 303, 307, 308 (Istio drops the route "
                               "for others)", code);
            }

        } else if (strcmp(k, "derivePort") == 0) {
            return rd_perr(c, kn, "unsupported field \"derivePort\": give "
                           "the port, or none to keep the request's");

        } else {
            return rd_unknown(c, kn, k, "uri,authority,scheme,port,"
                              "redirectCode", NULL);
        }

        rd_path_pop(c, old);
    }

    if (json_object_size(o) == 0) {
        return rd_perr(c, n, "needs uri, authority, scheme or port");
    }

    rd_jset(o, "redirectCode", json_integer(code));

    return 0;
}


/* base64 (RFC 4648, padded), as protobuf's JSON form writes bytes */
static int
rd_base64_decode(const char *s, size_t len, unsigned char *out,
    size_t *outlen)
{
    int          pad;
    size_t       i, n;
    unsigned     acc, v;
    const char  *p;

    static const char  alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    if (len % 4 != 0) {
        return -1;
    }

    n = 0;
    acc = 0;
    pad = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '=') {
            if (i < len - 2) {
                return -1;
            }
            pad++;
            v = 0;

        } else {
            if (pad || s[i] == '\0') {
                return -1;
            }

            p = strchr(alphabet, s[i]);
            if (p == NULL) {
                return -1;
            }
            v = (unsigned) (p - alphabet);
        }

        acc = (acc << 6) | v;

        if (i % 4 == 3) {
            out[n++] = (unsigned char) (acc >> 16);
            out[n++] = (unsigned char) (acc >> 8);
            out[n++] = (unsigned char) acc;
            acc = 0;
        }
    }

    *outlen = n - (size_t) pad;
    return 0;
}


static int
rd_parse_body(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    int                kinds = 0;
    size_t             old, len, blen;
    json_t            *body = NULL;
    const char        *k, *s;
    yaml_node_t       *kn, *v;
    unsigned char     *buf;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "string") == 0) {
            if (rd_get_text(c, v, &s) != 0) {
                return -1;
            }

            if (strlen(s) > RD_BODY_MAX) {
                return rd_perr(c, v, "must be at most %d bytes long",
                               RD_BODY_MAX);
            }

            body = json_string(s);

        } else if (strcmp(k, "bytes") == 0) {
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

            len = v->data.scalar.length;
            if (len > RD_BODY_MAX / 3 * 4 + 4) {
                return rd_perr(c, v, "must decode to at most %d bytes",
                               RD_BODY_MAX);
            }

            buf = malloc(len / 4 * 3 + 1);
            if (buf == NULL) {
                return rd_perr(c, v, "out of memory");
            }

            if (rd_base64_decode(s, len, buf, &blen) != 0) {
                free(buf);
                return rd_perr(c, v, "is not base64 (RFC 4648, padded)");
            }

            /* the module keeps a text body: no NUL, UTF-8 for JSON */
            body = (blen <= RD_BODY_MAX && memchr(buf, '\0', blen) == NULL)
                   ? json_stringn((const char *) buf, blen) : NULL;
            free(buf);

            if (body == NULL) {
                return rd_perr(c, v, "must decode to at most %d bytes of "
                               "UTF-8 text without NUL (ngx_mesh keeps a "
                               "text body)", RD_BODY_MAX);
            }

        } else {
            return rd_unknown(c, kn, k, "string,bytes", NULL);
        }

        kinds++;

        if (kinds > 1) {
            json_decref(body);
            return rd_perr(c, kn, "give one of string and bytes, not both");
        }

        rd_jset(o, "body", body);
        rd_path_pop(c, old);
    }

    if (kinds == 0) {
        return rd_perr(c, n, "needs string or bytes");
    }

    return 0;
}


int
rd_parse_direct_response(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    size_t             old;
    json_t            *o;
    long long          status = 0;
    const char        *k;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "status") == 0) {
            if (rd_get_int(c, v, 200, 599, &status) != 0) {
                return -1;
            }

        } else if (strcmp(k, "body") == 0) {
            if (rd_parse_body(c, v, o) != 0) {
                return -1;
            }

        } else {
            return rd_unknown(c, kn, k, "status,body", NULL);
        }

        rd_path_pop(c, old);
    }

    if (status == 0) {
        return rd_missing(c, n, "status");
    }

    rd_jset(o, "status", json_integer(status));

    return 0;
}


/* headers */

/* a header name an operation may name, lowercased into lower */
static int
rd_get_op_name(rd_pctx_t *c, yaml_node_t *n, const char *s, char *lower)
{
    size_t  i;

    if (s[0] == ':') {
        return rd_perr(c, n, "\"%.64s\" is a pseudo-header, which header "
                       "operations cannot change%s", s,
                       strcasecmp(s, ":authority") == 0
                       ? ": use rewrite.authority" : "");
    }

    if (strcasecmp(s, "host") == 0) {
        return rd_perr(c, n, "the Host header cannot be changed by header "
                       "operations: use rewrite.authority");
    }

    if (rd_get_header_name(c, n, s, 0) != 0) {
        return -1;
    }

    for (i = 0; s[i]; i++) {
        lower[i] = (char) tolower((unsigned char) s[i]);
    }

    lower[i] = '\0';

    return 0;
}


/*
 * A value as Envoy reads it: "%%" is a literal "%", "%NAME%" a variable
 * ngx_mesh does not expand (refused); no control character but HTAB.
 * Written out literal, with "%%" made "%".
 */
static int
rd_get_op_value(rd_pctx_t *c, yaml_node_t *n, char *value)
{
    size_t                i, len;
    const char           *s;
    const unsigned char  *u;

    if (rd_get_str(c, n, &s) != 0) {
        return -1;
    }

    len = n->data.scalar.length;

    if (len > RD_HEADER_VALUE_MAX) {
        return rd_perr(c, n, "must be at most %d bytes long",
                       RD_HEADER_VALUE_MAX);
    }

    for (i = 0, u = (const unsigned char *) s; u < (const unsigned char *) s
                                                  + len; u++)
    {
        if ((*u < ' ' && *u != '\t') || *u == 0x7f) {
            return rd_perr(c, n, "a header value must not hold a control "
                           "character (CR, LF, NUL...)");
        }

        if (*u == '%') {
            if (u[1] != '%') {
                return rd_perr(c, n, "\"%.64s\": Envoy's %%VARIABLE%% "
                               "substitution is not supported; write %%%% "
                               "for a literal %%", s);
            }
            u++;
        }

        value[i++] = (char) *u;
    }

    value[i] = '\0';

    return 0;
}


static int
rd_in_array(json_t *a, const char *s)
{
    size_t  i;

    for (i = 0; i < json_array_size(a); i++) {
        if (strcmp(json_string_value(json_array_get(a, i)), s) == 0) {
            return 1;
        }
    }

    return 0;
}


/* set or add: a map of name -> value */
static int
rd_parse_header_map(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    int                rc = -1;
    size_t             old;
    char              *value;
    char               lower[256];
    const char        *k;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    value = malloc(RD_HEADER_VALUE_MAX + 1);
    if (value == NULL) {
        return rd_perr(c, n, "out of memory");
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (rd_get_op_name(c, kn, k, lower) != 0
            || rd_get_op_value(c, v, value) != 0)
        {
            goto done;
        }

        if (json_object_get(o, lower) != NULL) {
            rd_perr(c, kn, "header \"%s\" is listed twice (names are "
                    "case-insensitive)", lower);
            goto done;
        }

        rd_jset(o, lower, json_string(value));
        rd_path_pop(c, old);
    }

    rc = 0;

done:

    free(value);
    return rc;
}


static int
rd_parse_header_ops(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    size_t             i, old, old2;
    char               lower[256];
    json_t            *part = NULL;
    const char        *k, *s;
    yaml_node_t       *kn, *v, *iv;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "set") == 0 || strcmp(k, "add") == 0) {
            part = rd_jobj();
            rd_jset(o, k, part);
            if (rd_parse_header_map(c, v, part) != 0) {
                return -1;
            }

        } else if (strcmp(k, "remove") == 0) {
            if (rd_check_seq(c, v, 0) != 0) {
                return -1;
            }

            part = rd_jarr();
            rd_jset(o, k, part);

            rd_foreach_item(c, v, it, i, iv) {
                old2 = rd_path_idx(c, i);

                if (rd_get_str(c, iv, &s) != 0
                    || rd_get_op_name(c, iv, s, lower) != 0)
                {
                    return -1;
                }

                if (rd_in_array(part, lower)) {
                    return rd_perr(c, iv, "header \"%s\" is listed twice "
                                   "(names are case-insensitive)", lower);
                }

                rd_jpush(part, json_string(lower));
                rd_path_pop(c, old2);
            }

        } else {
            return rd_unknown(c, kn, k, "set,add,remove", NULL);
        }

        /* nothing to do: not written */
        if (json_is_object(part) ? json_object_size(part) == 0
                                 : json_array_size(part) == 0)
        {
            json_object_del(o, k);
        }

        rd_path_pop(c, old);
    }

    return 0;
}


int
rd_parse_headers(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    size_t             old;
    json_t            *o, *ops;
    const char        *k;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "request") != 0 && strcmp(k, "response") != 0) {
            return rd_unknown(c, kn, k, "request,response", NULL);
        }

        ops = rd_jobj();
        rd_jset(o, k, ops);

        if (rd_parse_header_ops(c, v, ops) != 0) {
            return -1;
        }

        if (json_object_size(ops) == 0) {
            json_object_del(o, k);
        }

        rd_path_pop(c, old);
    }

    return 0;
}


/* corsPolicy */

/* the methods Istio's validation takes (Go's net/http names) */
static const char *const  rd_cors_methods[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS",
    "TRACE", NULL
};


/*
 * allowMethods, allowHeaders, exposeHeaders: lists of methods or header
 * names, kept in the given order and case (Envoy sends them joined with
 * ","), each once
 */
static int
rd_parse_cors_list(rd_pctx_t *c, yaml_node_t *n, int methods, json_t *a)
{
    size_t             i, k, old;
    const char        *s;
    yaml_node_t       *iv;
    yaml_node_item_t  *it;

    if (rd_check_seq(c, n, 0) != 0) {
        return -1;
    }

    rd_foreach_item(c, n, it, i, iv) {
        old = rd_path_idx(c, i);

        if (rd_get_str(c, iv, &s) != 0) {
            return -1;
        }

        if (methods) {
            for (k = 0; rd_cors_methods[k]; k++) {
                if (strcmp(s, rd_cors_methods[k]) == 0) {
                    break;
                }
            }

            if (rd_cors_methods[k] == NULL) {
                return rd_perr(c, iv, "\"%.64s\" is not an HTTP method "
                               "Istio takes: GET, HEAD, POST, PUT, PATCH, "
                               "DELETE, CONNECT, OPTIONS, TRACE", s);
            }

        } else if (rd_get_header_name(c, iv, s, 0) != 0) {
            return -1;
        }

        for (k = 0; k < json_array_size(a); k++) {
            if (strcasecmp(json_string_value(json_array_get(a, k)), s) == 0)
            {
                return rd_perr(c, iv, "\"%.64s\" is listed twice", s);
            }
        }

        rd_jpush(a, json_string(s));
        rd_path_pop(c, old);
    }

    return 0;
}


/* allowOrigin (deprecated): exact origins, as Istio takes them */
static int
rd_parse_cors_origin(rd_pctx_t *c, yaml_node_t *n, json_t *a)
{
    size_t             i, old;
    json_t            *sm;
    const char        *s;
    yaml_node_t       *iv;
    yaml_node_item_t  *it;

    if (rd_check_seq(c, n, 0) != 0) {
        return -1;
    }

    rd_foreach_item(c, n, it, i, iv) {
        old = rd_path_idx(c, i);

        if (rd_get_nonempty(c, iv, 4096, &s) != 0) {
            return -1;
        }

        sm = rd_jobj();
        rd_jset(sm, "exact", json_string(s));
        rd_jpush(a, sm);
        rd_path_pop(c, old);
    }

    return 0;
}


int
rd_parse_cors(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                b;
    void              *tmp;
    size_t             i, old, old2;
    json_t            *o, *a, *sm;
    int64_t            ms;
    const char        *k, *s, *key;
    yaml_node_t       *kn, *v, *iv, *origins = NULL;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "allowOrigins") == 0 || strcmp(k, "allowOrigin") == 0) {
            if (origins) {
                return rd_perr(c, kn, "give one of allowOrigins and "
                               "allowOrigin (deprecated), not both");
            }

            origins = kn;
            a = rd_jarr();
            rd_jset(o, "allowOrigins", a);

            if (strcmp(k, "allowOrigin") == 0) {
                if (rd_parse_cors_origin(c, v, a) != 0) {
                    return -1;
                }

            } else {
                if (rd_check_seq(c, v, 0) != 0) {
                    return -1;
                }

                rd_foreach_item(c, v, it, i, iv) {
                    old2 = rd_path_idx(c, i);
                    sm = NULL;

                    if (rd_parse_string_match(c, iv, &sm) != 0) {
                        json_decref(sm);
                        return -1;
                    }

                    rd_jpush(a, sm);
                    rd_path_pop(c, old2);
                }
            }

        } else if (strcmp(k, "allowMethods") == 0
                   || strcmp(k, "allowHeaders") == 0
                   || strcmp(k, "exposeHeaders") == 0)
        {
            a = rd_jarr();
            rd_jset(o, k, a);

            if (rd_parse_cors_list(c, v, k[5] == 'M', a) != 0) {
                return -1;
            }

        } else if (strcmp(k, "maxAge") == 0) {
            if (rd_get_duration(c, v, 1000, &ms) != 0) {
                return -1;
            }

            if (ms % 1000) {
                return rd_perr(c, v, "must be whole seconds (Istio: "
                               "max_age is accurate only to seconds)");
            }

            rd_jset(o, "maxAgeS", json_integer(ms / 1000));

        } else if (strcmp(k, "allowCredentials") == 0) {
            if (rd_get_bool(c, v, &b) != 0) {
                return -1;
            }

            rd_jset(o, k, json_boolean(b));

        } else if (strcmp(k, "unmatchedPreflights") == 0) {
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

            if (strcmp(s, "FORWARD") == 0 || strcmp(s, "IGNORE") == 0) {
                rd_jset(o, k, json_string(s));

            } else if (strcmp(s, "UNSPECIFIED") != 0) {
                return rd_perr(c, v, "\"%.64s\" is not one of UNSPECIFIED, "
                               "FORWARD, IGNORE", s);
            }

        } else {
            return rd_unknown(c, kn, k, "allowOrigins,allowOrigin,"
                              "allowMethods,allowHeaders,exposeHeaders,"
                              "maxAge,allowCredentials,unmatchedPreflights",
                              NULL);
        }

        rd_path_pop(c, old);
    }

    /* empty lists say nothing: not written (an empty allowOrigins
     * allows no origin, as none does) */
    json_object_foreach_safe(o, tmp, key, a) {
        if (json_is_array(a) && json_array_size(a) == 0) {
            json_object_del(o, key);
        }
    }

    return 0;
}
