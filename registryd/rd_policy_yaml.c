/*
 * rd_policy_yaml: the helpers every policy kind is read with: the JSON it
 * builds, the field's path and the error at a node, references kept for
 * later checks, and typed getters over libyaml's nodes.
 */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "mesh_alloc.h"
#include "mesh_name.h"
#include "mesh_policy.h"
#include "mesh_regex.h"
#include "rd_policy_int.h"


static const char  *rd_y_names[] = {
    "string", "null", "boolean", "integer", "number", "mapping", "sequence"
};


/*
 * jansson allocates with mesh_alloc (main.c), so it never returns NULL
 * for want of memory; a refusal here is a bug (a key libyaml would not
 * have passed), and registryd stops rather than store half a document.
 */

void
rd_jset(json_t *obj, const char *key, json_t *v)
{
    if (v == NULL || json_object_set_new(obj, key, v) != 0) {
        rd_error("policy: cannot set \"%s\" in the model", key);
        abort();
    }
}


void
rd_jpush(json_t *arr, json_t *v)
{
    if (v == NULL || json_array_append_new(arr, v) != 0) {
        rd_error("policy: cannot append to the model");
        abort();
    }
}


json_t *
rd_jobj(void)
{
    return json_object();
}


json_t *
rd_jarr(void)
{
    return json_array();
}


/* errors and paths */

void
rd_err_init(rd_policy_err_t *e)
{
    e->msg[0] = '\0';
    e->field[0] = '\0';
    e->line = -1;
    e->column = -1;
    e->document = -1;
}


size_t
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


size_t
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


void
rd_path_pop(rd_pctx_t *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}


int
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


/* the error of a ref (a place recorded by an earlier parse) */
int
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


rd_policy_ref_t *
rd_ref_add(rd_pctx_t *c, rd_refs_t *refs, int kind, yaml_node_t *node,
    const char *host, const char *subset)
{
    rd_policy_ref_t  *r;

    if (refs->n == refs->cap) {
        refs->cap = refs->cap ? refs->cap * 2 : 8;
        refs->v = mesh_xrealloc(refs->v, refs->cap * sizeof(rd_policy_ref_t));
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


int
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


int
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


int
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


int
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


static char    rd_suffixes[RD_POLICY_SUFFIXES_MAX][RD_POLICY_SUFFIX_LEN + 1];
static size_t  rd_nsuffixes;


void
rd_policy_set_suffixes(const char *list)
{
    size_t       n;
    const char  *p, *comma;

    rd_nsuffixes = 0;

    for (p = list; p && *p && rd_nsuffixes < RD_POLICY_SUFFIXES_MAX;
         p = comma + 1)
    {
        comma = strchr(p, ',');
        n = comma ? (size_t) (comma - p) : strlen(p);

        snprintf(rd_suffixes[rd_nsuffixes++], RD_POLICY_SUFFIX_LEN + 1,
                 "%.*s", (int) n, p);

        if (comma == NULL) {
            break;
        }
    }
}


/*
 * A host: a registry service name, or a DNS name that one of the
 * suffixes turns into one ("reviews.prod.svc.cluster.local" with
 * "*.svc.cluster.local": "reviews"); the name is cut in the node's own
 * text, which the document owns.
 */
/*
 * A host that may be a wildcard: "*" or "*.SUFFIX" as written, else as
 * rd_get_host() reads it (a registry service name); with dns, any name
 * as written, ASCII letters made lowercase (a gateway's host, which is
 * the requests' Host, not a service)
 */
int
rd_get_host_pattern(rd_pctx_t *c, yaml_node_t *n, int dns, const char **out)
{
    char    *s, was[72];
    size_t   i, len;

    if (rd_get_str(c, n, out) != 0) {
        return -1;
    }

    s = (char *) *out;
    len = strlen(s);

    if (strchr(s, '*') == NULL && !dns) {
        return rd_get_host(c, n, out);
    }

    snprintf(was, sizeof(was), "%.64s", s);

    if (!mesh_host_pattern_valid(s, len)) {
        return rd_perr(c, n, "\"%s\" is not a valid host: a name "
                       "([A-Za-z0-9][A-Za-z0-9._-]{0,127}), \"*.\" and a "
                       "name, or \"*\"", was);
    }

    if (dns) {
        for (i = 0; i < len; i++) {
            if (s[i] >= 'A' && s[i] <= 'Z') {
                s[i] = (char) (s[i] | 0x20);
            }
        }
    }

    return 0;
}


int
rd_get_host(rd_pctx_t *c, yaml_node_t *n, const char **out)
{
    char         *s, *dot, was[72];
    size_t        i, len, xl, end;
    const char   *x;

    if (rd_get_str(c, n, out) != 0) {
        return -1;
    }

    s = (char *) *out;
    len = strlen(s);
    snprintf(was, sizeof(was), "%.64s", s);

    if (strchr(s, '*') != NULL) {
        return rd_perr(c, n, "\"%s\": wildcard hosts are not supported: a "
                       "host names one registry service", was);
    }

    for (i = 0; i < rd_nsuffixes; i++) {
        x = rd_suffixes[i];
        if (x[0] == '*') {
            x += 2;
        }

        xl = strlen(x);

        if (len <= xl + 1 || s[len - xl - 1] != '.'
            || strcasecmp(s + len - xl, x) != 0)
        {
            continue;
        }

        end = len - xl - 1;

        if (x != rd_suffixes[i]) {
            /* one label more: the namespace */
            s[end] = '\0';
            dot = strrchr(s, '.');
            s[end] = '.';

            if (dot == NULL || dot == s) {
                continue;
            }

            end = dot - s;
        }

        s[end] = '\0';
        break;
    }

    if (!mesh_name_valid(s, strlen(s))) {
        return rd_perr(c, n, "\"%s\" is not a valid host: a registry "
                       "service name ([A-Za-z0-9][A-Za-z0-9._-]{0,127}) or "
                       "NAME.SUFFIX for a domain_suffixes entry", was);
    }

    return 0;
}


int
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


int
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


int
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

int
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
int
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


int
rd_missing(rd_pctx_t *c, yaml_node_t *parent, const char *key)
{
    size_t  old = rd_path_key(c, key);
    int     rc = rd_perr(c, parent, "is required");

    rd_path_pop(c, old);
    return rc;
}


int
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


/* a map of label name -> string value */
int
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


/* metadata: name and namespace (the object's identity, with its kind);
 * labels and annotations accepted, not kept; what Kubernetes adds to a
 * stored object (kubectl get -o yaml) ignored */
int
rd_parse_metadata(rd_pctx_t *c, yaml_node_t *n, const char **name,
    const char **ns)
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
    *ns = NULL;

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "name") == 0) {
            if (rd_get_name(c, v, "name", name) != 0) {
                return -1;
            }

        } else if (strcmp(k, "namespace") == 0) {
            if (rd_get_name(c, v, "namespace", ns) != 0) {
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

        } else if (!rd_in_list("uid,resourceVersion,generation,"
                               "creationTimestamp,deletionTimestamp,"
                               "deletionGracePeriodSeconds,ownerReferences,"
                               "finalizers,managedFields,generateName,"
                               "selfLink", k))
        {
            return rd_unknown(c, kn, k, "name,namespace,labels,annotations "
                              "(and what Kubernetes adds: uid, "
                              "resourceVersion, generation, "
                              "creationTimestamp, managedFields...)", NULL);
        }

        rd_path_pop(c, old);
    }

    if (*name == NULL) {
        return rd_missing(c, n, "name");
    }

    return 0;
}
