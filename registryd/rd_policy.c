/*
 * rd_policy: YAML traffic policies, validated and normalized.
 *
 * Two passes over the body: the event pass refuses what the document
 * loader would hide (aliases, tags, excessive nesting) and reports syntax
 * errors; the document pass walks each document's node tree against the
 * supported subset, building the normalized JSON as it goes. Every error
 * carries the field's path and the node's line and column.
 */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "mesh_policy.h"
#include "mesh_regex.h"
#include "rd_policy.h"

#define RD_POLICY_DEPTH_MAX  32

enum {
    RD_Y_STR = 0,
    RD_Y_NULL,
    RD_Y_BOOL,
    RD_Y_INT,
    RD_Y_FLOAT,
    RD_Y_MAP,
    RD_Y_SEQ
};

static const char  *rd_y_names[] = {
    "string", "null", "boolean", "integer", "number", "mapping", "sequence"
};

typedef struct {
    rd_policy_ref_t  *v;
    size_t            n;
    size_t            cap;
} rd_refs_t;

typedef struct {
    yaml_document_t  *doc;
    int               document;
    char              path[RD_POLICY_PATH_MAX];
    size_t            plen;
    rd_policy_err_t  *e;
    const char       *doc_name;

    rd_refs_t         hosts;
    rd_refs_t         subsets;
    rd_refs_t         routes;
    rd_refs_t         dests;     /* this VirtualService's destinations */
} rd_pctx_t;


static void
rd_oom(void)
{
    fprintf(stderr, "registryd: out of memory\n");
    abort();
}


static void
rd_jset(json_t *obj, const char *key, json_t *v)
{
    if (v == NULL || json_object_set_new(obj, key, v) != 0) {
        rd_oom();
    }
}


static void
rd_jpush(json_t *arr, json_t *v)
{
    if (v == NULL || json_array_append_new(arr, v) != 0) {
        rd_oom();
    }
}


static json_t *
rd_jobj(void)
{
    json_t  *o = json_object();

    if (o == NULL) {
        rd_oom();
    }

    return o;
}


static json_t *
rd_jarr(void)
{
    json_t  *a = json_array();

    if (a == NULL) {
        rd_oom();
    }

    return a;
}


/* errors and paths */

static void
rd_err_init(rd_policy_err_t *e)
{
    e->msg[0] = '\0';
    e->field[0] = '\0';
    e->line = -1;
    e->column = -1;
    e->document = -1;
}


static size_t
rd_path_key(rd_pctx_t *c, const char *key)
{
    int     n;
    size_t  old = c->plen;

    n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "%s%s",
                 c->plen ? "." : "", key);
    c->plen += (n < 0) ? 0 : (size_t) n;
    if (c->plen >= sizeof(c->path)) {
        c->plen = sizeof(c->path) - 1;
    }

    return old;
}


static size_t
rd_path_idx(rd_pctx_t *c, size_t i)
{
    int     n;
    size_t  old = c->plen;

    n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "[%zu]", i);
    c->plen += (n < 0) ? 0 : (size_t) n;
    if (c->plen >= sizeof(c->path)) {
        c->plen = sizeof(c->path) - 1;
    }

    return old;
}


static void
rd_path_pop(rd_pctx_t *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}


static int
rd_perr_mark(rd_pctx_t *c, const yaml_mark_t *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
rd_perr_mark(rd_pctx_t *c, const yaml_mark_t *m, const char *fmt, ...)
{
    char             why[RD_ERR_LEN];
    va_list          ap;
    rd_policy_err_t  *e = c->e;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);

    if (c->plen) {
        snprintf(e->msg, sizeof(e->msg), "%s: %s", c->path, why);
    } else {
        snprintf(e->msg, sizeof(e->msg), "%s", why);
    }

    snprintf(e->field, sizeof(e->field), "%s", c->path);
    e->line = m ? (int) m->line + 1 : -1;
    e->column = m ? (int) m->column + 1 : -1;
    e->document = c->document;

    return -1;
}


#define rd_perr(c, node, ...)  rd_perr_mark(c, &(node)->start_mark, __VA_ARGS__)


/* the error of a ref (a place recorded by an earlier parse) */
static int
rd_ref_err(const rd_policy_ref_t *r, rd_policy_err_t *e, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

static int
rd_ref_err(const rd_policy_ref_t *r, rd_policy_err_t *e, const char *fmt,
    ...)
{
    char     why[RD_ERR_LEN];
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);

    snprintf(e->msg, sizeof(e->msg), "%s: %s", r->field, why);
    snprintf(e->field, sizeof(e->field), "%s", r->field);
    e->line = r->line;
    e->column = r->column;
    e->document = r->document;

    return -1;
}


static rd_policy_ref_t *
rd_ref_add(rd_pctx_t *c, rd_refs_t *refs, int kind, yaml_node_t *node,
    const char *host, const char *subset)
{
    rd_policy_ref_t  *r;

    if (refs->n == refs->cap) {
        refs->cap = refs->cap ? refs->cap * 2 : 8;
        r = realloc(refs->v, refs->cap * sizeof(rd_policy_ref_t));
        if (r == NULL) {
            rd_oom();
        }
        refs->v = r;
    }

    r = &refs->v[refs->n++];
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    snprintf(r->host, sizeof(r->host), "%s", host ? host : "");
    snprintf(r->subset, sizeof(r->subset), "%s", subset ? subset : "");
    snprintf(r->doc_name, sizeof(r->doc_name), "%s",
             c->doc_name ? c->doc_name : "");
    snprintf(r->field, sizeof(r->field), "%s", c->path);
    r->line = (int) node->start_mark.line + 1;
    r->column = (int) node->start_mark.column + 1;
    r->document = c->document;

    return r;
}


/* scalars, typed as YAML's core schema types plain scalars */

static int
rd_is_int(const char *s)
{
    if (*s == '-' || *s == '+') {
        s++;
    }

    if (!isdigit((unsigned char) *s)) {
        return 0;
    }

    while (isdigit((unsigned char) *s)) {
        s++;
    }

    return *s == '\0';
}


static int
rd_is_float(const char *s)
{
    int  digits = 0;

    if (strcmp(s, ".inf") == 0 || strcmp(s, "-.inf") == 0
        || strcmp(s, "+.inf") == 0 || strcmp(s, ".nan") == 0
        || strcmp(s, ".Inf") == 0 || strcmp(s, ".NaN") == 0
        || strcmp(s, ".INF") == 0 || strcmp(s, ".NAN") == 0)
    {
        return 1;
    }

    if (*s == '-' || *s == '+') {
        s++;
    }

    while (isdigit((unsigned char) *s)) {
        s++;
        digits++;
    }

    if (*s == '.') {
        s++;
        while (isdigit((unsigned char) *s)) {
            s++;
            digits++;
        }
    }

    if (digits == 0) {
        return 0;
    }

    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+') {
            s++;
        }
        if (!isdigit((unsigned char) *s)) {
            return 0;
        }
        while (isdigit((unsigned char) *s)) {
            s++;
        }
    }

    return *s == '\0';
}


static int
rd_ytype(yaml_node_t *n)
{
    const char  *s;

    if (n->type == YAML_MAPPING_NODE) {
        return RD_Y_MAP;
    }

    if (n->type == YAML_SEQUENCE_NODE) {
        return RD_Y_SEQ;
    }

    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return RD_Y_STR;
    }

    s = (const char *) n->data.scalar.value;

    if (s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0
        || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0)
    {
        return RD_Y_NULL;
    }

    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0
        || strcmp(s, "TRUE") == 0 || strcmp(s, "false") == 0
        || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
    {
        return RD_Y_BOOL;
    }

    if (rd_is_int(s)) {
        return RD_Y_INT;
    }

    if (rd_is_float(s) || (s[0] == '0' && (s[1] == 'x' || s[1] == 'o'))) {
        return RD_Y_FLOAT;
    }

    return RD_Y_STR;
}


static int
rd_get_str(rd_pctx_t *c, yaml_node_t *n, const char **out)
{
    int  t = rd_ytype(n);

    if (t != RD_Y_STR) {
        return rd_perr(c, n, "must be a string, not a %s%s", rd_y_names[t],
                       (t == RD_Y_INT || t == RD_Y_BOOL || t == RD_Y_FLOAT)
                       ? " (quote it)" : "");
    }

    *out = (const char *) n->data.scalar.value;
    return 0;
}


static int
rd_get_nonempty(rd_pctx_t *c, yaml_node_t *n, size_t max, const char **out)
{
    if (rd_get_str(c, n, out) != 0) {
        return -1;
    }

    if ((*out)[0] == '\0') {
        return rd_perr(c, n, "must not be empty");
    }

    if (strlen(*out) > max) {
        return rd_perr(c, n, "must be at most %zu bytes long", max);
    }

    return 0;
}


static int
rd_get_name(rd_pctx_t *c, yaml_node_t *n, const char *what,
    const char **out)
{
    if (rd_get_str(c, n, out) != 0) {
        return -1;
    }

    if (!mesh_name_valid(*out, strlen(*out))) {
        return rd_perr(c, n, "\"%.64s\" is not a valid %s: names are "
                       "[A-Za-z0-9][A-Za-z0-9._-]{0,127}", *out, what);
    }

    return 0;
}


static int
rd_get_int(rd_pctx_t *c, yaml_node_t *n, long long min, long long max,
    long long *out)
{
    int         t = rd_ytype(n);
    long long   v;

    if (t != RD_Y_INT) {
        return rd_perr(c, n, "must be an integer %lld..%lld, not a %s", min,
                       max, rd_y_names[t]);
    }

    errno = 0;
    v = strtoll((const char *) n->data.scalar.value, NULL, 10);
    if (errno || v < min || v > max) {
        return rd_perr(c, n, "must be an integer %lld..%lld", min, max);
    }

    *out = v;
    return 0;
}


static int
rd_get_bool(rd_pctx_t *c, yaml_node_t *n, int *out)
{
    int  t = rd_ytype(n);

    if (t != RD_Y_BOOL) {
        return rd_perr(c, n, "must be true or false, not a %s",
                       rd_y_names[t]);
    }

    *out = (tolower(n->data.scalar.value[0]) == 't');
    return 0;
}


static int
rd_get_duration(rd_pctx_t *c, yaml_node_t *n, int64_t min, int64_t *out)
{
    int64_t      ms;
    const char  *s;

    if (rd_ytype(n) != RD_Y_STR) {
        return rd_perr(c, n, "must be a duration such as \"1s\", \"500ms\" "
                       "or \"1.5s\", not a %s", rd_y_names[rd_ytype(n)]);
    }

    s = (const char *) n->data.scalar.value;
    ms = mesh_duration_parse_decimal(s);

    if (ms == -2) {
        return rd_perr(c, n, "\"%.64s\" is not a whole number of "
                       "milliseconds", s);
    }

    if (ms < 0 || ms > 86400000) {
        return rd_perr(c, n, "\"%.64s\" is not a duration such as \"1s\", "
                       "\"500ms\", \"1.5s\" or \"1m\" (at most 24h)", s);
    }

    if (ms < min) {
        return rd_perr(c, n, "must be at least %lldms",
                       (long long) min);
    }

    *out = ms;
    return 0;
}


/* mappings */

static int
rd_check_map(rd_pctx_t *c, yaml_node_t *n)
{
    const char        *k;
    yaml_node_t       *kn, *kn2;
    yaml_node_pair_t  *p, *q;

    if (n->type != YAML_MAPPING_NODE) {
        return rd_perr(c, n, "must be a mapping, not a %s",
                       rd_y_names[rd_ytype(n)]);
    }

    for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
         p++)
    {
        kn = yaml_document_get_node(c->doc, p->key);

        if (kn->type != YAML_SCALAR_NODE) {
            return rd_perr(c, kn, "keys must be strings");
        }

        k = (const char *) kn->data.scalar.value;

        for (q = n->data.mapping.pairs.start; q < p; q++) {
            kn2 = yaml_document_get_node(c->doc, q->key);
            if (strcmp((const char *) kn2->data.scalar.value, k) == 0) {
                size_t old = rd_path_key(c, k);
                int    rc = rd_perr(c, kn, "duplicate key \"%.64s\" (first "
                                    "at line %zu)", k,
                                    kn2->start_mark.line + 1);
                rd_path_pop(c, old);
                return rc;
            }
        }
    }

    return 0;
}


#define rd_foreach_pair(c, n, p, k, kn, v)                                   \
    for (p = (n)->data.mapping.pairs.start;                                  \
         p < (n)->data.mapping.pairs.top                                     \
         && (kn = yaml_document_get_node((c)->doc, p->key))                  \
         && (v = yaml_document_get_node((c)->doc, p->value))                 \
         && (k = (const char *) kn->data.scalar.value);                      \
         p++)


static int
rd_in_list(const char *list, const char *k)
{
    size_t       n = strlen(k);
    const char  *p = list;

    while (p && *p) {
        if (strncmp(p, k, n) == 0 && (p[n] == ',' || p[n] == '\0')) {
            return 1;
        }
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }

    return 0;
}


/* path already holds the key */
static int
rd_unknown(rd_pctx_t *c, yaml_node_t *kn, const char *k,
    const char *supported, const char *istio)
{
    char         list[RD_ERR_LEN / 2];
    const char  *s;
    size_t       i;

    for (s = supported, i = 0; *s && i + 2 < sizeof(list); s++) {
        list[i++] = *s;
        if (*s == ',') {
            list[i++] = ' ';
        }
    }
    list[i] = '\0';

    if (istio && rd_in_list(istio, k)) {
        return rd_perr(c, kn, "unsupported field \"%.64s\": ngx_mesh "
                       "supports %s", k, list);
    }

    return rd_perr(c, kn, "unknown field \"%.64s\"; supported: %s", k, list);
}


static int
rd_missing(rd_pctx_t *c, yaml_node_t *parent, const char *key)
{
    size_t  old = rd_path_key(c, key);
    int     rc = rd_perr(c, parent, "is required");

    rd_path_pop(c, old);
    return rc;
}


static int
rd_check_seq(rd_pctx_t *c, yaml_node_t *n, int nonempty)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        return rd_perr(c, n, "must be a list, not a %s",
                       rd_y_names[rd_ytype(n)]);
    }

    if (nonempty && n->data.sequence.items.top
                    == n->data.sequence.items.start)
    {
        return rd_perr(c, n, "must not be empty");
    }

    return 0;
}


#define rd_foreach_item(c, n, it, i, v)                                      \
    for (it = (n)->data.sequence.items.start, i = 0;                         \
         it < (n)->data.sequence.items.top                                   \
         && (v = yaml_document_get_node((c)->doc, *it));                     \
         it++, i++)


/* a map of label name -> string value */
static int
rd_parse_labels(rd_pctx_t *c, yaml_node_t *n, int nonempty, json_t **out)
{
    const char        *k, *s;
    size_t             old;
    json_t            *o;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    if (nonempty && n->data.mapping.pairs.top == n->data.mapping.pairs.start)
    {
        return rd_perr(c, n, "must hold at least one label");
    }

    o = rd_jobj();

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (!mesh_name_valid(k, strlen(k))) {
            json_decref(o);
            return rd_perr(c, kn, "label name \"%.64s\" is not a valid "
                           "name: names are [A-Za-z0-9][A-Za-z0-9._-]{0,127}",
                           k);
        }

        if (rd_get_str(c, v, &s) != 0) {
            json_decref(o);
            return -1;
        }

        if (strlen(s) > 256) {
            json_decref(o);
            return rd_perr(c, v, "must be at most 256 bytes long");
        }

        rd_jset(o, k, json_string(s));
        rd_path_pop(c, old);
    }

    *out = o;
    return 0;
}


/* metadata: name; namespace, labels and annotations accepted, not kept */
static int
rd_parse_metadata(rd_pctx_t *c, yaml_node_t *n, const char **name)
{
    const char        *k, *s, *ann;
    size_t             old, old2;
    json_t            *tmp;
    yaml_node_t       *kn, *v, *ak, *av;
    yaml_node_pair_t  *p, *ap;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    *name = NULL;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "name") == 0) {
            if (rd_get_name(c, v, "name", name) != 0) {
                return -1;
            }

        } else if (strcmp(k, "namespace") == 0) {
            if (rd_get_name(c, v, "namespace", &s) != 0) {
                return -1;
            }

        } else if (strcmp(k, "labels") == 0) {
            if (rd_parse_labels(c, v, 0, &tmp) != 0) {
                return -1;
            }
            json_decref(tmp);

        } else if (strcmp(k, "annotations") == 0) {
            if (rd_check_map(c, v) != 0) {
                return -1;
            }
            rd_foreach_pair(c, v, ap, ann, ak, av) {
                old2 = rd_path_key(c, ann);
                if (rd_get_str(c, av, &s) != 0) {
                    return -1;
                }
                rd_path_pop(c, old2);
            }

        } else {
            return rd_unknown(c, kn, k, "name,namespace,labels,annotations",
                              "uid,resourceVersion,generation,"
                              "creationTimestamp,deletionTimestamp,"
                              "ownerReferences,finalizers,managedFields,"
                              "generateName");
        }

        rd_path_pop(c, old);
    }

    if (*name == NULL) {
        return rd_missing(c, n, "name");
    }

    return 0;
}


/* trafficPolicy */

static int
rd_token_char(int ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}


static int
rd_get_header_name(rd_pctx_t *c, yaml_node_t *n, const char *s,
    int lowercase)
{
    const unsigned char  *p;

    if (*s == '\0') {
        return rd_perr(c, n, "a header name must not be empty");
    }

    if (strlen(s) > 128) {
        return rd_perr(c, n, "a header name must be at most 128 bytes");
    }

    for (p = (const unsigned char *) s; *p; p++) {
        if (!rd_token_char(*p)) {
            return rd_perr(c, n, "\"%.64s\" is not a valid header name", s);
        }

        if (lowercase && isupper(*p)) {
            return rd_perr(c, n, "header name \"%.64s\" must be lowercase",
                           s);
        }
    }

    return 0;
}


static int
rd_parse_cookie(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int64_t            ms;
    size_t             old;
    json_t            *o;
    const char        *k, *s;
    const char        *cp;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "name") == 0) {
            if (rd_get_nonempty(c, v, 128, &s) != 0) {
                return -1;
            }
            for (cp = s; *cp; cp++) {
                if (!rd_token_char((unsigned char) *cp)) {
                    return rd_perr(c, v, "\"%.64s\" is not a valid cookie "
                                   "name", s);
                }
            }
            rd_jset(o, "name", json_string(s));

        } else if (strcmp(k, "ttl") == 0) {
            if (rd_get_duration(c, v, 0, &ms) != 0) {
                return -1;
            }
            rd_jset(o, "ttlMs", json_integer(ms));

        } else if (strcmp(k, "path") == 0) {
            if (rd_get_nonempty(c, v, 1024, &s) != 0) {
                return -1;
            }
            if (s[0] != '/' || strpbrk(s, " ;,\t\r\n")) {
                return rd_perr(c, v, "must be a path starting with \"/\" "
                               "without spaces, commas or semicolons");
            }
            rd_jset(o, "path", json_string(s));

        } else {
            return rd_unknown(c, kn, k, "name,ttl,path", "attributes");
        }

        rd_path_pop(c, old);
    }

    if (json_object_get(o, "name") == NULL) {
        return rd_missing(c, n, "name");
    }

    return 0;
}


static int
rd_parse_chash(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                b, kinds = 0;
    size_t             old;
    json_t            *o, *ck = NULL;
    const char        *k, *s, *cp;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "httpHeaderName") == 0) {
            char lower[129];

            if (rd_get_str(c, v, &s) != 0
                || rd_get_header_name(c, v, s, 0) != 0)
            {
                return -1;
            }
            for (b = 0; s[b]; b++) {
                lower[b] = (char) tolower((unsigned char) s[b]);
            }
            lower[b] = '\0';
            rd_jset(o, k, json_string(lower));

        } else if (strcmp(k, "httpQueryParameterName") == 0) {
            if (rd_get_nonempty(c, v, 128, &s) != 0) {
                return -1;
            }
            for (cp = s; *cp; cp++) {
                if (!isalnum((unsigned char) *cp) && !strchr("._~-[]", *cp))
                {
                    return rd_perr(c, v, "\"%.64s\" is not a valid query "
                                   "parameter name ([A-Za-z0-9._~[]-]+)", s);
                }
            }
            rd_jset(o, k, json_string(s));

        } else if (strcmp(k, "httpCookie") == 0) {
            if (rd_parse_cookie(c, v, &ck) != 0) {
                json_decref(ck);
                return -1;
            }
            rd_jset(o, k, ck);

        } else if (strcmp(k, "useSourceIp") == 0) {
            if (rd_get_bool(c, v, &b) != 0) {
                return -1;
            }
            if (!b) {
                return rd_perr(c, v, "must be true (leave consistentHash "
                               "out to hash by nothing)");
            }
            rd_jset(o, k, json_true());

        } else {
            return rd_unknown(c, kn, k, "httpHeaderName,"
                              "httpQueryParameterName,httpCookie,useSourceIp",
                              "ringHash,maglev,minimumRingSize");
        }

        kinds++;
        rd_path_pop(c, old);
    }

    if (kinds != 1) {
        return rd_perr(c, n, "needs exactly one of httpHeaderName, "
                       "httpQueryParameterName, httpCookie, useSourceIp");
    }

    return 0;
}


static int
rd_parse_lb(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                kinds = 0;
    size_t             old;
    json_t            *o, *ch;
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

        if (strcmp(k, "simple") == 0) {
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

            if (strcmp(s, "ROUND_ROBIN") == 0 || strcmp(s, "RANDOM") == 0
                || strcmp(s, "LEAST_REQUEST") == 0)
            {
                rd_jset(o, k, json_string(s));

            } else if (strcmp(s, "LEAST_CONN") == 0) {
                rd_jset(o, k, json_string("LEAST_REQUEST"));

            } else if (strcmp(s, "PASSTHROUGH") == 0
                       || strcmp(s, "UNSPECIFIED") == 0)
            {
                return rd_perr(c, v, "%s is not supported: use "
                               "ROUND_ROBIN, RANDOM or LEAST_REQUEST", s);

            } else {
                return rd_perr(c, v, "\"%.64s\" is not one of ROUND_ROBIN, "
                               "RANDOM, LEAST_REQUEST, LEAST_CONN", s);
            }

        } else if (strcmp(k, "consistentHash") == 0) {
            ch = NULL;
            if (rd_parse_chash(c, v, &ch) != 0) {
                json_decref(ch);
                return -1;
            }
            rd_jset(o, k, ch);

        } else {
            return rd_unknown(c, kn, k, "simple,consistentHash",
                              "localityLbSetting,warmupDurationSecs,warmup");
        }

        kinds++;
        rd_path_pop(c, old);
    }

    if (kinds != 1) {
        return rd_perr(c, n, "needs exactly one of simple, consistentHash");
    }

    return 0;
}


static int
rd_parse_outlier(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                b;
    size_t             old;
    json_t            *o;
    int64_t            ms;
    long long          i;
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

        if (strcmp(k, "consecutive5xxErrors") == 0
            || strcmp(k, "consecutiveGatewayErrors") == 0
            || strcmp(k, "consecutiveErrors") == 0
            || strcmp(k, "consecutiveLocalOriginFailures") == 0)
        {
            if (rd_get_int(c, v, 0, INT_MAX, &i) != 0) {
                return -1;
            }

            if (strcmp(k, "consecutiveErrors") == 0) {
                /* deprecated; Istio counts gateway errors with it */
                if (json_object_get(o, "consecutiveGatewayErrors")) {
                    return rd_perr(c, kn, "consecutiveErrors is a deprecated "
                                   "alias of consecutiveGatewayErrors: give "
                                   "one of them");
                }
                k = "consecutiveGatewayErrors";

            } else if (strcmp(k, "consecutiveGatewayErrors") == 0
                       && json_object_get(o, k))
            {
                return rd_perr(c, kn, "consecutiveErrors is a deprecated "
                               "alias of consecutiveGatewayErrors: give one "
                               "of them");
            }

            rd_jset(o, k, json_integer(i));

        } else if (strcmp(k, "interval") == 0
                   || strcmp(k, "baseEjectionTime") == 0)
        {
            char key[32];

            if (rd_get_duration(c, v, 1, &ms) != 0) {
                return -1;
            }
            snprintf(key, sizeof(key), "%sMs", k);
            rd_jset(o, key, json_integer(ms));

        } else if (strcmp(k, "maxEjectionPercent") == 0
                   || strcmp(k, "minHealthPercent") == 0)
        {
            if (rd_get_int(c, v, 0, 100, &i) != 0) {
                return -1;
            }
            rd_jset(o, k, json_integer(i));

        } else if (strcmp(k, "splitExternalLocalOriginErrors") == 0) {
            if (rd_get_bool(c, v, &b) != 0) {
                return -1;
            }
            rd_jset(o, k, json_boolean(b));

        } else {
            return rd_unknown(c, kn, k, "consecutive5xxErrors,"
                              "consecutiveGatewayErrors,consecutiveErrors,"
                              "interval,baseEjectionTime,maxEjectionPercent,"
                              "minHealthPercent,splitExternalLocalOriginErrors,"
                              "consecutiveLocalOriginFailures", NULL);
        }

        rd_path_pop(c, old);
    }

    return 0;
}


static int
rd_parse_pool(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    size_t             old, old2;
    json_t            *o, *tcp;
    long long          i;
    const char        *k, *k2;
    yaml_node_t       *kn, *v, *kn2, *v2;
    yaml_node_pair_t  *p, *p2;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "tcp") != 0) {
            if (strcmp(k, "http") == 0) {
                return rd_perr(c, kn, "unsupported field \"http\": "
                               "ngx_mesh supports only "
                               "connectionPool.tcp.maxConnections");
            }
            return rd_unknown(c, kn, k, "tcp", NULL);
        }

        if (rd_check_map(c, v) != 0) {
            return -1;
        }

        tcp = rd_jobj();
        rd_jset(o, "tcp", tcp);

        rd_foreach_pair(c, v, p2, k2, kn2, v2) {
            old2 = rd_path_key(c, k2);

            if (strcmp(k2, "maxConnections") != 0) {
                return rd_unknown(c, kn2, k2, "maxConnections",
                                  "connectTimeout,tcpKeepalive,"
                                  "maxConnectionDuration,idleTimeout");
            }

            if (rd_get_int(c, v2, 1, 1000000, &i) != 0) {
                return -1;
            }

            rd_jset(tcp, "maxConnections", json_integer(i));
            rd_path_pop(c, old2);
        }

        rd_path_pop(c, old);
    }

    return 0;
}


static int
rd_parse_tp(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                rc;
    size_t             old;
    json_t            *o, *sub;
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
        sub = NULL;

        if (strcmp(k, "loadBalancer") == 0) {
            rc = rd_parse_lb(c, v, &sub);

        } else if (strcmp(k, "outlierDetection") == 0) {
            rc = rd_parse_outlier(c, v, &sub);

        } else if (strcmp(k, "connectionPool") == 0) {
            rc = rd_parse_pool(c, v, &sub);

        } else {
            return rd_unknown(c, kn, k, "loadBalancer,outlierDetection,"
                              "connectionPool", "portLevelSettings,tls,"
                              "tunnel,proxyProtocol");
        }

        if (rc != 0) {
            json_decref(sub);
            return -1;
        }

        rd_jset(o, k, sub);
        rd_path_pop(c, old);
    }

    return 0;
}


/* DestinationRule */

static int
rd_parse_subset(rd_pctx_t *c, yaml_node_t *n, json_t *o, json_t *names)
{
    int                rc;
    size_t             old;
    json_t            *sub, *first;
    const char        *k, *s;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);
        sub = NULL;

        if (strcmp(k, "name") == 0) {
            if (rd_get_name(c, v, "subset name", &s) != 0) {
                return -1;
            }

            first = json_object_get(names, s);
            if (first) {
                return rd_perr(c, v, "duplicate subset \"%s\" (first at "
                               "line %lld)", s,
                               (long long) json_integer_value(first));
            }

            rd_jset(names, s, json_integer((json_int_t)
                                           v->start_mark.line + 1));
            rd_jset(o, "name", json_string(s));
            rd_ref_add(c, &c->subsets, RD_POLICY_DR, v, NULL, s);
            rd_path_pop(c, old);
            continue;

        } else if (strcmp(k, "labels") == 0) {
            rc = rd_parse_labels(c, v, 1, &sub);

        } else if (strcmp(k, "trafficPolicy") == 0) {
            rc = rd_parse_tp(c, v, &sub);

        } else {
            return rd_unknown(c, kn, k, "name,labels,trafficPolicy", NULL);
        }

        if (rc != 0) {
            json_decref(sub);
            return -1;
        }

        rd_jset(o, k, sub);
        rd_path_pop(c, old);
    }

    if (json_object_get(o, "name") == NULL) {
        return rd_missing(c, n, "name");
    }

    if (json_object_get(o, "labels") == NULL) {
        return rd_missing(c, n, "labels");
    }

    return 0;
}


static int
rd_parse_dr(rd_pctx_t *c, yaml_node_t *n, json_t *out)
{
    size_t             i, old, old2, first_subset;
    json_t            *tp = NULL, *subsets = NULL, *names = NULL, *so;
    const char        *k, *host = NULL;
    yaml_node_t       *kn, *v, *it_node;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    first_subset = c->subsets.n;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "host") == 0) {
            if (rd_get_name(c, v, "host (a registry service name)", &host)
                != 0)
            {
                goto fail;
            }
            rd_ref_add(c, &c->hosts, RD_POLICY_DR, v, host, NULL);

        } else if (strcmp(k, "trafficPolicy") == 0) {
            if (rd_parse_tp(c, v, &tp) != 0) {
                goto fail;
            }

        } else if (strcmp(k, "subsets") == 0) {
            if (rd_check_seq(c, v, 0) != 0) {
                goto fail;
            }

            subsets = rd_jarr();
            names = rd_jobj();

            rd_foreach_item(c, v, it, i, it_node) {
                old2 = rd_path_idx(c, i);
                so = rd_jobj();
                rd_jpush(subsets, so);
                if (rd_parse_subset(c, it_node, so, names) != 0) {
                    goto fail;
                }
                rd_path_pop(c, old2);
            }

        } else {
            rd_unknown(c, kn, k, "host,trafficPolicy,subsets",
                       "exportTo,workloadSelector");
            goto fail;
        }

        rd_path_pop(c, old);
    }

    if (host == NULL) {
        rd_missing(c, n, "host");
        goto fail;
    }

    for (i = first_subset; i < c->subsets.n; i++) {
        snprintf(c->subsets.v[i].host, sizeof(c->subsets.v[i].host), "%s",
                 host);
    }

    rd_jset(out, "host", json_string(host));
    if (tp) {
        rd_jset(out, "trafficPolicy", tp);
    }
    rd_jset(out, "subsets", subsets ? subsets : rd_jarr());
    json_decref(names);

    return 0;

fail:

    json_decref(tp);
    json_decref(subsets);
    json_decref(names);
    return -1;
}


/* VirtualService */

static int
rd_parse_string_match(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    int                kinds = 0;
    char               msg[RD_ERR_LEN];
    size_t             old;
    json_t            *o;
    const char        *k, *s;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;
    mesh_regex_t      *re;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    o = rd_jobj();
    *out = o;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "exact") != 0 && strcmp(k, "prefix") != 0
            && strcmp(k, "regex") != 0)
        {
            return rd_unknown(c, kn, k, "exact,prefix,regex", NULL);
        }

        if (rd_get_nonempty(c, v, 4096, &s) != 0) {
            return -1;
        }

        if (strcmp(k, "regex") == 0) {
            /* compiled as the module compiles it: mesh_regex */
            re = mesh_regex_compile(s, strlen(s), msg, sizeof(msg));
            if (re == NULL) {
                return rd_perr(c, v, "%s", msg);
            }

            mesh_regex_free(re);
        }

        rd_jset(o, k, json_string(s));
        kinds++;
        rd_path_pop(c, old);
    }

    if (kinds != 1) {
        return rd_perr(c, n, "needs exactly one of exact, prefix, regex");
    }

    return 0;
}


static int
rd_parse_match(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    size_t             old, old2;
    json_t            *sm, *hdrs;
    const char        *k, *h;
    yaml_node_t       *kn, *v, *hk, *hv;
    yaml_node_pair_t  *p, *hp;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "uri") == 0) {
            sm = NULL;
            if (rd_parse_string_match(c, v, &sm) != 0) {
                json_decref(sm);
                return -1;
            }
            rd_jset(o, "uri", sm);

        } else if (strcmp(k, "headers") == 0) {
            if (rd_check_map(c, v) != 0) {
                return -1;
            }

            if (v->data.mapping.pairs.top == v->data.mapping.pairs.start) {
                return rd_perr(c, v, "must hold at least one header");
            }

            hdrs = rd_jobj();
            rd_jset(o, "headers", hdrs);

            rd_foreach_pair(c, v, hp, h, hk, hv) {
                old2 = rd_path_key(c, h);

                if (rd_get_header_name(c, hk, h, 1) != 0) {
                    return -1;
                }

                sm = NULL;
                if (rd_parse_string_match(c, hv, &sm) != 0) {
                    json_decref(sm);
                    return -1;
                }
                rd_jset(hdrs, h, sm);
                rd_path_pop(c, old2);
            }

        } else {
            return rd_unknown(c, kn, k, "uri,headers", "scheme,method,"
                              "authority,port,sourceLabels,gateways,"
                              "queryParams,ignoreUriCase,withoutHeaders,"
                              "sourceNamespace,statPrefix,name");
        }

        rd_path_pop(c, old);
    }

    if (json_object_size(o) == 0) {
        return rd_perr(c, n, "needs uri or headers");
    }

    return 0;
}


static int
rd_parse_destination(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    size_t             old;
    const char        *k, *s, *host = NULL, *subset = NULL;
    yaml_node_t       *kn, *v, *subset_node = NULL;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "host") == 0) {
            if (rd_get_name(c, v, "host (a registry service name)", &s)
                != 0)
            {
                return -1;
            }
            host = s;
            rd_ref_add(c, &c->dests, RD_POLICY_VS, v, s, NULL);

        } else if (strcmp(k, "subset") == 0) {
            if (rd_get_name(c, v, "subset name", &s) != 0) {
                return -1;
            }
            subset = s;
            subset_node = v;

        } else if (strcmp(k, "port") == 0) {
            return rd_perr(c, kn, "unsupported field \"port\": nginx "
                           "connects to each instance's registered port");

        } else {
            return rd_unknown(c, kn, k, "host,subset", NULL);
        }

        rd_path_pop(c, old);
    }

    if (host == NULL) {
        return rd_missing(c, n, "host");
    }

    rd_jset(o, "host", json_string(host));

    if (subset) {
        old = rd_path_key(c, "subset");
        rd_ref_add(c, &c->routes, RD_POLICY_VS, subset_node, host, subset);
        rd_path_pop(c, old);
        rd_jset(o, "subset", json_string(subset));
    }

    return 0;
}


static int
rd_parse_route(rd_pctx_t *c, yaml_node_t *n, json_t *o, yaml_node_t **wnode)
{
    size_t             old;
    json_t            *d;
    long long          w;
    const char        *k;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    *wnode = NULL;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "destination") == 0) {
            d = rd_jobj();
            rd_jset(o, "destination", d);
            if (rd_parse_destination(c, v, d) != 0) {
                return -1;
            }

        } else if (strcmp(k, "weight") == 0) {
            if (rd_get_int(c, v, 0, 100, &w) != 0) {
                return -1;
            }
            rd_jset(o, "weight", json_integer(w));
            *wnode = v;

        } else {
            return rd_unknown(c, kn, k, "destination,weight", "headers");
        }

        rd_path_pop(c, old);
    }

    if (json_object_get(o, "destination") == NULL) {
        return rd_missing(c, n, "destination");
    }

    return 0;
}


static int
rd_parse_routes(rd_pctx_t *c, yaml_node_t *n, json_t *routes)
{
    size_t             i, nr, old, last = 0;
    json_t            *ro;
    long long          sum = 0;
    yaml_node_t       *v, *wnode, *last_w = NULL;
    yaml_node_item_t  *it;

    if (rd_check_seq(c, n, 1) != 0) {
        return -1;
    }

    nr = (size_t) (n->data.sequence.items.top - n->data.sequence.items.start);

    rd_foreach_item(c, n, it, i, v) {
        old = rd_path_idx(c, i);
        ro = rd_jobj();
        rd_jpush(routes, ro);

        if (rd_parse_route(c, v, ro, &wnode) != 0) {
            return -1;
        }

        if (wnode == NULL) {
            if (nr > 1) {
                return rd_missing(c, v, "weight");
            }
            rd_jset(ro, "weight", json_integer(100));
            sum = 100;

        } else {
            sum += json_integer_value(json_object_get(ro, "weight"));
            last_w = wnode;
            last = i;
        }

        rd_path_pop(c, old);
    }

    if (sum != 100) {
        rd_path_idx(c, last);
        rd_path_key(c, "weight");
        return rd_perr(c, last_w, "the weights of the routes add up to %lld, "
                       "not 100", sum);
    }

    return 0;
}


static int
rd_parse_retry_on(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    size_t       len;
    json_t      *a;
    const char  *s, *p, *e;
    char         cond[64];
    size_t       i;

    if (rd_get_nonempty(c, n, 1024, &s) != 0) {
        return -1;
    }

    a = rd_jarr();
    *out = a;

    for (p = s; ; p = e + 1) {
        e = strchr(p, ',');
        if (e == NULL) {
            e = p + strlen(p);
        }

        while (p < e && *p == ' ') {
            p++;
        }
        len = (size_t) (e - p);
        while (len && p[len - 1] == ' ') {
            len--;
        }

        if (len == 0) {
            return rd_perr(c, n, "\"%.64s\" holds an empty condition", s);
        }

        snprintf(cond, sizeof(cond), "%.*s", (int) len, p);

        /* the module's own list: what one accepts the other reads */
        for (i = 0; mesh_retry_on[i].name; i++) {
            if (strcmp(cond, mesh_retry_on[i].name) == 0) {
                break;
            }
        }

        if (mesh_retry_on[i].name == NULL) {
            return rd_perr(c, n, "retry condition \"%.64s\" is not "
                           "supported%s; supported: 5xx, gateway-error, "
                           "connect-failure, reset", cond,
                           strcmp(cond, "retriable-4xx") == 0
                           ? " (nginx cannot retry on 409)" : "");
        }

        for (i = 0; i < json_array_size(a); i++) {
            if (strcmp(json_string_value(json_array_get(a, i)), cond) == 0) {
                return rd_perr(c, n, "retry condition \"%s\" is listed "
                               "twice", cond);
            }
        }

        rd_jpush(a, json_string(cond));

        if (*e == '\0') {
            break;
        }
    }

    return 0;
}


static int
rd_parse_retries(rd_pctx_t *c, yaml_node_t *n, json_t **out)
{
    size_t             old;
    json_t            *o, *ro;
    int64_t            ms;
    long long          i;
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

        if (strcmp(k, "attempts") == 0) {
            if (rd_get_int(c, v, 0, 100, &i) != 0) {
                return -1;
            }
            rd_jset(o, k, json_integer(i));

        } else if (strcmp(k, "perTryTimeout") == 0) {
            if (rd_get_duration(c, v, 1, &ms) != 0) {
                return -1;
            }
            rd_jset(o, "perTryTimeoutMs", json_integer(ms));

        } else if (strcmp(k, "retryOn") == 0) {
            ro = NULL;
            if (rd_parse_retry_on(c, v, &ro) != 0) {
                json_decref(ro);
                return -1;
            }
            rd_jset(o, k, ro);

        } else {
            return rd_unknown(c, kn, k, "attempts,perTryTimeout,retryOn",
                              "retryRemoteLocalities,backoff");
        }

        rd_path_pop(c, old);
    }

    return 0;
}


static int
rd_parse_http(rd_pctx_t *c, yaml_node_t *n, json_t *o)
{
    int                rc;
    size_t             i, old, old2;
    json_t            *match = NULL, *routes = NULL, *retries = NULL, *mo;
    int64_t            ms = -1;
    const char        *k, *s, *name = NULL;
    yaml_node_t       *kn, *v, *iv;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rc = -1;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "name") == 0) {
            if (rd_get_nonempty(c, v, RD_NAME_MAX, &s) != 0) {
                goto done;
            }
            name = s;

        } else if (strcmp(k, "match") == 0) {
            if (rd_check_seq(c, v, 1) != 0) {
                goto done;
            }

            match = rd_jarr();

            rd_foreach_item(c, v, it, i, iv) {
                old2 = rd_path_idx(c, i);
                mo = rd_jobj();
                rd_jpush(match, mo);
                if (rd_parse_match(c, iv, mo) != 0) {
                    goto done;
                }
                rd_path_pop(c, old2);
            }

        } else if (strcmp(k, "route") == 0) {
            routes = rd_jarr();
            if (rd_parse_routes(c, v, routes) != 0) {
                goto done;
            }

        } else if (strcmp(k, "retries") == 0) {
            if (rd_parse_retries(c, v, &retries) != 0) {
                goto done;
            }

        } else if (strcmp(k, "timeout") == 0) {
            if (rd_get_duration(c, v, 1, &ms) != 0) {
                goto done;
            }

        } else {
            rd_unknown(c, kn, k, "name,match,route,retries,timeout",
                       "redirect,directResponse,delegate,rewrite,fault,"
                       "mirror,mirrorPercentage,mirrorPercent,mirrors,"
                       "corsPolicy,headers");
            goto done;
        }

        rd_path_pop(c, old);
    }

    if (routes == NULL) {
        rd_missing(c, n, "route");
        goto done;
    }

    if (name) {
        rd_jset(o, "name", json_string(name));
    }

    rd_jset(o, "match", match ? match : rd_jarr());
    rd_jset(o, "route", routes);
    match = NULL;
    routes = NULL;

    if (retries) {
        rd_jset(o, "retries", retries);
        retries = NULL;
    }

    if (ms >= 0) {
        rd_jset(o, "timeoutMs", json_integer(ms));
    }

    rc = 0;

done:

    json_decref(match);
    json_decref(routes);
    json_decref(retries);
    return rc;
}


static int
rd_parse_vs(rd_pctx_t *c, yaml_node_t *n, json_t *out)
{
    int                rc = -1;
    size_t             i, j, old, old2, first_host, first_dest;
    json_t            *hosts = NULL, *http = NULL, *ho;
    const char        *k, *s;
    yaml_node_t       *kn, *v, *iv;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    first_host = c->hosts.n;
    first_dest = c->dests.n;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "hosts") == 0) {
            if (rd_check_seq(c, v, 1) != 0) {
                goto done;
            }

            hosts = rd_jarr();

            rd_foreach_item(c, v, it, i, iv) {
                old2 = rd_path_idx(c, i);
                if (rd_get_name(c, iv, "host (a registry service name)", &s)
                    != 0)
                {
                    goto done;
                }

                for (j = 0; j < json_array_size(hosts); j++) {
                    if (strcmp(json_string_value(json_array_get(hosts, j)),
                               s) == 0)
                    {
                        rd_perr(c, iv, "host \"%s\" is listed twice", s);
                        goto done;
                    }
                }

                rd_jpush(hosts, json_string(s));
                rd_ref_add(c, &c->hosts, RD_POLICY_VS, iv, s, NULL);
                rd_path_pop(c, old2);
            }

        } else if (strcmp(k, "http") == 0) {
            if (rd_check_seq(c, v, 1) != 0) {
                goto done;
            }

            http = rd_jarr();

            rd_foreach_item(c, v, it, i, iv) {
                old2 = rd_path_idx(c, i);
                ho = rd_jobj();
                rd_jpush(http, ho);
                if (rd_parse_http(c, iv, ho) != 0) {
                    goto done;
                }
                rd_path_pop(c, old2);
            }

        } else {
            rd_unknown(c, kn, k, "hosts,http", "gateways,tls,tcp,exportTo");
            goto done;
        }

        rd_path_pop(c, old);
    }

    if (hosts == NULL) {
        rd_missing(c, n, "hosts");
        goto done;
    }

    if (http == NULL) {
        rd_missing(c, n, "http");
        goto done;
    }

    /* routes stay within the hosts the VirtualService applies to */
    for (i = first_dest; i < c->dests.n; i++) {
        for (j = first_host; j < c->hosts.n; j++) {
            if (strcmp(c->hosts.v[j].host, c->dests.v[i].host) == 0) {
                break;
            }
        }

        if (j == c->hosts.n) {
            rd_ref_err(&c->dests.v[i], c->e, "host \"%s\" is not one of the "
                       "VirtualService's hosts (nginx routes within the "
                       "service of its upstream)", c->dests.v[i].host);
            goto done;
        }
    }

    rd_jset(out, "hosts", hosts);
    rd_jset(out, "http", http);
    hosts = NULL;
    http = NULL;
    rc = 0;

done:

    json_decref(hosts);
    json_decref(http);
    return rc;
}


/* documents */

static int
rd_parse_document(rd_pctx_t *c, yaml_node_t *root, const char *policy,
    json_t *names, json_t **out)
{
    int                kind = -1, rc;
    char               key[RD_NAME_MAX + 8];
    size_t             old;
    json_t            *o, *first;
    const char        *k, *s, *api = NULL, *name = NULL;
    yaml_node_t       *kn, *v, *spec = NULL, *meta = NULL, *kind_node = NULL;
    yaml_node_t       *name_node = NULL;
    yaml_node_pair_t  *p;

    *out = NULL;

    if (root->type != YAML_MAPPING_NODE) {
        return rd_perr(c, root, "a document must be a mapping with "
                       "apiVersion, kind, metadata and spec");
    }

    if (rd_check_map(c, root) != 0) {
        return -1;
    }

    rd_foreach_pair(c, root, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "apiVersion") == 0) {
            if (rd_get_str(c, v, &api) != 0) {
                return -1;
            }

            if (strcmp(api, "networking.istio.io/v1") != 0
                && strcmp(api, "networking.istio.io/v1beta1") != 0
                && strcmp(api, "networking.istio.io/v1alpha3") != 0
                && strcmp(api, "mesh/v1") != 0)
            {
                return rd_perr(c, v, "\"%.64s\" is not one of "
                               "networking.istio.io/v1, "
                               "networking.istio.io/v1beta1, "
                               "networking.istio.io/v1alpha3, mesh/v1", api);
            }

        } else if (strcmp(k, "kind") == 0) {
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

            if (strcmp(s, "DestinationRule") == 0) {
                kind = RD_POLICY_DR;
            } else if (strcmp(s, "VirtualService") == 0) {
                kind = RD_POLICY_VS;
            } else {
                return rd_perr(c, v, "\"%.64s\" is not DestinationRule or "
                               "VirtualService", s);
            }
            kind_node = v;

        } else if (strcmp(k, "metadata") == 0) {
            meta = v;

        } else if (strcmp(k, "spec") == 0) {
            spec = v;

        } else {
            return rd_unknown(c, kn, k, "apiVersion,kind,metadata,spec",
                              "status");
        }

        rd_path_pop(c, old);
    }

    if (api == NULL) {
        return rd_missing(c, root, "apiVersion");
    }

    if (kind_node == NULL) {
        return rd_missing(c, root, "kind");
    }

    if (meta == NULL) {
        return rd_missing(c, root, "metadata");
    }

    old = rd_path_key(c, "metadata");
    if (rd_parse_metadata(c, meta, &name) != 0) {
        return -1;
    }
    rd_path_pop(c, old);

    /* the node of metadata.name, for the duplicate error */
    rd_foreach_pair(c, meta, p, k, kn, v) {
        if (strcmp(k, "name") == 0) {
            name_node = v;
        }
    }

    snprintf(key, sizeof(key), "%d/%s", kind, name);
    first = json_object_get(names, key);
    if (first) {
        rd_path_key(c, "metadata");
        rd_path_key(c, "name");
        return rd_perr(c, name_node, "duplicate %s \"%s\" (also document "
                       "%lld)", kind == RD_POLICY_DR ? "DestinationRule"
                                                     : "VirtualService",
                       name, (long long) json_integer_value(first));
    }
    rd_jset(names, key, json_integer(c->document));

    if (spec == NULL) {
        return rd_missing(c, root, "spec");
    }

    c->doc_name = name;

    o = rd_jobj();
    rd_jset(o, "policy", json_string(policy));
    rd_jset(o, "kind", json_string(kind == RD_POLICY_DR ? "DestinationRule"
                                                        : "VirtualService"));
    rd_jset(o, "name", json_string(name));

    old = rd_path_key(c, "spec");
    rc = (kind == RD_POLICY_DR) ? rd_parse_dr(c, spec, o)
                                : rd_parse_vs(c, spec, o);
    if (rc != 0) {
        json_decref(o);
        return -1;
    }
    rd_path_pop(c, old);

    *out = o;
    return 0;
}


/* aliases, tags, depth and syntax, from the event stream */
static int
rd_policy_scan(const char *yaml, size_t len, rd_policy_err_t *e)
{
    int            depth = 0, done = 0, rc = -1;
    yaml_event_t   ev;
    yaml_parser_t  parser;

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *) yaml, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            snprintf(e->msg, sizeof(e->msg), "invalid YAML: %s%s%s",
                     parser.problem ? parser.problem : "syntax error",
                     parser.context ? " " : "",
                     parser.context ? parser.context : "");
            e->line = (int) parser.problem_mark.line + 1;
            e->column = (int) parser.problem_mark.column + 1;
            goto done;
        }

        switch (ev.type) {

        case YAML_STREAM_END_EVENT:
            done = 1;
            break;

        case YAML_ALIAS_EVENT:
            snprintf(e->msg, sizeof(e->msg), "YAML aliases (*%.64s) are not "
                     "supported", (char *) ev.data.alias.anchor);
            goto fail;

        case YAML_SCALAR_EVENT:
            if (ev.data.scalar.tag) {
                snprintf(e->msg, sizeof(e->msg), "YAML tags (%.64s) are not "
                         "supported", (char *) ev.data.scalar.tag);
                goto fail;
            }
            break;

        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if ((ev.type == YAML_SEQUENCE_START_EVENT
                 && ev.data.sequence_start.tag)
                || (ev.type == YAML_MAPPING_START_EVENT
                    && ev.data.mapping_start.tag))
            {
                snprintf(e->msg, sizeof(e->msg), "YAML tags are not "
                         "supported");
                goto fail;
            }

            if (++depth > RD_POLICY_DEPTH_MAX) {
                snprintf(e->msg, sizeof(e->msg), "nested deeper than %d "
                         "levels", RD_POLICY_DEPTH_MAX);
                goto fail;
            }
            break;

        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;

        default:
            break;
        }

        yaml_event_delete(&ev);
    }

    rc = 0;
    goto done;

fail:

    e->line = (int) ev.start_mark.line + 1;
    e->column = (int) ev.start_mark.column + 1;
    yaml_event_delete(&ev);

done:

    yaml_parser_delete(&parser);
    return rc;
}


static void
rd_refs_move(rd_refs_t *r, rd_policy_ref_t **v, size_t *n)
{
    *v = r->v;
    *n = r->n;
    r->v = NULL;
    r->n = 0;
    r->cap = 0;
}


rd_policy_t *
rd_policy_parse(const char *name, const char *yaml, size_t len,
    rd_policy_err_t *e)
{
    int               docno;
    size_t            i, j, ndocs = 0;
    json_t           *doc, *names = NULL;
    rd_buf_t          snap;
    rd_pctx_t         c;
    rd_policy_t      *p = NULL;
    yaml_node_t      *root;
    yaml_parser_t     parser;
    yaml_document_t   ydoc;

    rd_err_init(e);
    memset(&c, 0, sizeof(c));
    c.e = e;
    rd_buf_init(&snap, 0);

    if (!mesh_name_valid(name, strlen(name))) {
        snprintf(e->msg, sizeof(e->msg), "invalid policy name: names are "
                 "[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
        return NULL;
    }

    if (memchr(yaml, '\0', len)) {
        snprintf(e->msg, sizeof(e->msg), "invalid YAML: the body holds a NUL "
                 "byte");
        return NULL;
    }

    if (rd_policy_scan(yaml, len, e) != 0) {
        return NULL;
    }

    p = calloc(1, sizeof(rd_policy_t));
    names = json_object();
    if (p == NULL || names == NULL) {
        rd_oom();
    }

    snprintf(p->name, sizeof(p->name), "%s", name);
    p->docs = rd_jarr();

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *) yaml, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

    for (docno = 0; ; docno++) {
        if (!yaml_parser_load(&parser, &ydoc)) {
            snprintf(e->msg, sizeof(e->msg), "invalid YAML: %s",
                     parser.problem ? parser.problem : "syntax error");
            e->line = (int) parser.problem_mark.line + 1;
            e->column = (int) parser.problem_mark.column + 1;
            goto fail_parser;
        }

        root = yaml_document_get_root_node(&ydoc);
        if (root == NULL) {
            yaml_document_delete(&ydoc);
            break;
        }

        c.doc = &ydoc;
        c.document = docno;
        c.plen = 0;
        c.path[0] = '\0';
        c.doc_name = NULL;

        /* an empty document ("---" alone) holds nothing */
        if (root->type == YAML_SCALAR_NODE && rd_ytype(root) == RD_Y_NULL) {
            yaml_document_delete(&ydoc);
            continue;
        }

        if (rd_parse_document(&c, root, name, names, &doc) != 0) {
            yaml_document_delete(&ydoc);
            goto fail_parser;
        }

        rd_jpush(p->docs, doc);
        ndocs++;

        yaml_document_delete(&ydoc);
    }

    yaml_parser_delete(&parser);

    if (ndocs == 0) {
        snprintf(e->msg, sizeof(e->msg), "the body holds no document: "
                 "expected DestinationRule or VirtualService documents");
        goto fail;
    }

    /* one DestinationRule and one VirtualService per host */
    for (i = 0; i < c.hosts.n; i++) {
        for (j = 0; j < i; j++) {
            if (c.hosts.v[i].kind == c.hosts.v[j].kind
                && strcmp(c.hosts.v[i].host, c.hosts.v[j].host) == 0)
            {
                rd_ref_err(&c.hosts.v[i], e, "host \"%s\" already has a %s "
                           "in this policy: \"%s\" (document %d)",
                           c.hosts.v[i].host,
                           c.hosts.v[i].kind == RD_POLICY_DR
                           ? "DestinationRule" : "VirtualService",
                           c.hosts.v[j].doc_name, c.hosts.v[j].document);
                goto fail;
            }
        }
    }

    p->yaml = malloc(len + 1);
    if (p->yaml == NULL) {
        rd_oom();
    }
    memcpy(p->yaml, yaml, len);
    p->yaml[len] = '\0';
    p->yaml_len = len;

    for (i = 0; i < json_array_size(p->docs); i++) {
        char *s = json_dumps(json_array_get(p->docs, i), JSON_COMPACT);

        if (s == NULL) {
            rd_oom();
        }

        if (i) {
            rd_buf_adds(&snap, ",\n");
        }
        rd_buf_adds(&snap, s);
        free(s);
    }

    rd_buf_cstr(&snap);
    p->snap = snap.data;
    p->snap_len = snap.len;

    rd_refs_move(&c.hosts, &p->hosts, &p->nhosts);
    rd_refs_move(&c.subsets, &p->subsets, &p->nsubsets);
    rd_refs_move(&c.routes, &p->routes, &p->nroutes);
    free(c.dests.v);
    json_decref(names);

    return p;

fail_parser:

    yaml_parser_delete(&parser);

fail:

    free(c.hosts.v);
    free(c.subsets.v);
    free(c.routes.v);
    free(c.dests.v);
    json_decref(names);
    rd_buf_free(&snap);
    rd_policy_free(p);
    return NULL;
}


void
rd_policy_free(rd_policy_t *p)
{
    if (p == NULL) {
        return;
    }

    free(p->yaml);
    json_decref(p->docs);
    free(p->snap);
    free(p->hosts);
    free(p->subsets);
    free(p->routes);
    free(p);
}


int
rd_policy_check(const rd_policy_t *p, rd_policy_t *const *others, size_t n,
    rd_policy_err_t *e)
{
    size_t                  i, j, k;
    const rd_policy_t      *o;
    const rd_policy_ref_t  *r, *x;

    rd_err_init(e);

    for (i = 0; i < p->nhosts; i++) {
        r = &p->hosts[i];

        for (j = 0; j < n; j++) {
            o = others[j];
            if (strcmp(o->name, p->name) == 0) {
                continue;
            }

            for (k = 0; k < o->nhosts; k++) {
                x = &o->hosts[k];
                if (x->kind == r->kind && strcmp(x->host, r->host) == 0) {
                    return rd_ref_err(r, e, "host \"%s\" already has a %s: "
                                      "\"%s\" in policy \"%s\"", r->host,
                                      r->kind == RD_POLICY_DR
                                      ? "DestinationRule" : "VirtualService",
                                      x->doc_name, o->name);
                }
            }
        }
    }

    for (i = 0; i < p->nroutes; i++) {
        r = &p->routes[i];

        for (k = 0; k < p->nsubsets; k++) {
            if (strcmp(p->subsets[k].host, r->host) == 0
                && strcmp(p->subsets[k].subset, r->subset) == 0)
            {
                goto found;
            }
        }

        for (j = 0; j < n; j++) {
            o = others[j];
            if (strcmp(o->name, p->name) == 0) {
                continue;
            }

            for (k = 0; k < o->nsubsets; k++) {
                if (strcmp(o->subsets[k].host, r->host) == 0
                    && strcmp(o->subsets[k].subset, r->subset) == 0)
                {
                    goto found;
                }
            }
        }

        return rd_ref_err(r, e, "subset \"%s\" of host \"%s\" is not defined "
                          "by any DestinationRule", r->subset, r->host);

    found:

        continue;
    }

    return 0;
}


void
rd_policy_to_stored(rd_buf_t *b, const rd_policy_t *p)
{
    rd_buf_adds(b, "{\"yaml\":");
    rd_buf_add_json_str(b, p->yaml);
    rd_buf_adds(b, ",\"documents\":[");
    rd_buf_add(b, p->snap, p->snap_len);
    rd_buf_adds(b, "],\"create_index\":");
    rd_buf_add_u64(b, p->create_index);
    rd_buf_adds(b, ",\"modify_index\":");
    rd_buf_add_u64(b, p->modify_index);
    rd_buf_addc(b, '}');
}


rd_policy_t *
rd_policy_from_stored(const char *name, const char *value, size_t len,
    char *err)
{
    json_t           *obj, *y;
    json_error_t      jerr;
    rd_policy_t      *p;
    rd_policy_err_t   e;

    obj = json_loadb(value, len, 0, &jerr);
    if (obj == NULL) {
        snprintf(err, RD_ERR_LEN, "not JSON: %s", jerr.text);
        return NULL;
    }

    y = json_object_get(obj, "yaml");
    if (!json_is_string(y)) {
        json_decref(obj);
        snprintf(err, RD_ERR_LEN, "no \"yaml\" string");
        return NULL;
    }

    p = rd_policy_parse(name, json_string_value(y), json_string_length(y),
                        &e);
    if (p == NULL) {
        json_decref(obj);
        if (e.line > 0) {
            snprintf(err, RD_ERR_LEN, "line %d column %d: %s", e.line,
                     e.column, e.msg);
        } else {
            snprintf(err, RD_ERR_LEN, "%s", e.msg);
        }
        return NULL;
    }

    p->create_index = (uint64_t) json_integer_value(
                          json_object_get(obj, "create_index"));
    p->modify_index = (uint64_t) json_integer_value(
                          json_object_get(obj, "modify_index"));

    json_decref(obj);
    return p;
}


void
rd_policy_err_to_json(rd_buf_t *b, const rd_policy_err_t *e)
{
    rd_buf_adds(b, "{\"error\":");
    rd_buf_add_json_str(b, e->msg);

    if (e->field[0]) {
        rd_buf_adds(b, ",\"field\":");
        rd_buf_add_json_str(b, e->field);
    }

    if (e->line > 0) {
        rd_buf_printf(b, ",\"line\":%d,\"column\":%d", e->line, e->column);
    }

    if (e->document >= 0) {
        rd_buf_printf(b, ",\"document\":%d", e->document);
    }

    rd_buf_addc(b, '}');
}
