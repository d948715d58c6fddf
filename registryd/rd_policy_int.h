/*
 * rd_policy_int: what the parts of rd_policy share (rd_policy.c,
 * rd_policy_yaml.c, rd_policy_dr.c, rd_policy_vs.c,
 * rd_policy_vs_shape.c); not for other users.
 */

#ifndef RD_POLICY_INT_H
#define RD_POLICY_INT_H

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>
#include <jansson.h>

#include "rd_policy.h"

/* a node's YAML type, as rd_ytype() tells it */
enum {
    RD_Y_STR = 0,
    RD_Y_NULL,
    RD_Y_BOOL,
    RD_Y_INT,
    RD_Y_FLOAT,
    RD_Y_MAP,
    RD_Y_SEQ
};

typedef struct {
    rd_policy_ref_t  *v;
    size_t            n;
    size_t            cap;
} rd_refs_t;

/* one parse: the document, the field's path, the error, the references */
typedef struct {
    yaml_document_t  *doc;
    int               document;
    char              path[RD_POLICY_PATH_MAX];
    size_t            plen;
    rd_policy_err_t  *e;
    const char       *doc_name;
    const char       *doc_ns;    /* metadata.namespace, or "default" */
    int               vs_delegate;   /* this VirtualService has no hosts */
    int               l4_route;      /* reading a tcp or tls route: its
                                        destinations take no headers */

    rd_refs_t         hosts;
    rd_refs_t         subsets;
    rd_refs_t         routes;
    rd_refs_t         delegates; /* http[].delegate: namespace, name */
} rd_pctx_t;


#define rd_foreach_pair(c, n, p, k, kn, v)                                   \
    for (p = (n)->data.mapping.pairs.start;                                  \
         p < (n)->data.mapping.pairs.top                                     \
         && (kn = yaml_document_get_node((c)->doc, p->key))                  \
         && (v = yaml_document_get_node((c)->doc, p->value))                 \
         && (k = (const char *) kn->data.scalar.value);                      \
         p++)

#define rd_foreach_item(c, n, it, i, v)                                      \
    for (it = (n)->data.sequence.items.start, i = 0;                         \
         it < (n)->data.sequence.items.top                                   \
         && (v = yaml_document_get_node((c)->doc, *it));                     \
         it++, i++)

/* an error at a node: its path, line and column */
#define rd_perr(c, node, ...)  rd_perr_mark(c, &(node)->start_mark, __VA_ARGS__)

void rd_jset(json_t *obj, const char *key, json_t *v);
void rd_jpush(json_t *arr, json_t *v);
json_t *rd_jobj(void);
json_t *rd_jarr(void);
size_t rd_path_key(rd_pctx_t *c, const char *key);
size_t rd_path_idx(rd_pctx_t *c, size_t i);
void rd_path_pop(rd_pctx_t *c, size_t old);
int rd_perr_mark(rd_pctx_t *c, const yaml_mark_t *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int rd_ref_err(const rd_policy_ref_t *r, rd_policy_err_t *e, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));
rd_policy_ref_t *rd_ref_add(rd_pctx_t *c, rd_refs_t *refs, int kind,
    yaml_node_t *node, const char *host, const char *subset);
int rd_ytype(yaml_node_t *n);
int rd_get_str(rd_pctx_t *c, yaml_node_t *n, const char **out);
int rd_get_nonempty(rd_pctx_t *c, yaml_node_t *n, size_t max,
    const char **out);
int rd_get_name(rd_pctx_t *c, yaml_node_t *n, const char *what,
    const char **out);
int rd_get_host(rd_pctx_t *c, yaml_node_t *n, const char **out);
int rd_get_host_pattern(rd_pctx_t *c, yaml_node_t *n, int dns,
    const char **out);
int rd_get_int(rd_pctx_t *c, yaml_node_t *n, long long min, long long max,
    long long *out);
int rd_get_bool(rd_pctx_t *c, yaml_node_t *n, int *out);
int rd_get_duration(rd_pctx_t *c, yaml_node_t *n, int64_t min, int64_t *out);
int rd_check_map(rd_pctx_t *c, yaml_node_t *n);
int rd_unknown(rd_pctx_t *c, yaml_node_t *kn, const char *k,
    const char *supported, const char *istio);
int rd_missing(rd_pctx_t *c, yaml_node_t *parent, const char *key);
int rd_check_seq(rd_pctx_t *c, yaml_node_t *n, int nonempty);
int rd_parse_labels(rd_pctx_t *c, yaml_node_t *n, int nonempty, json_t **out);
int rd_parse_metadata(rd_pctx_t *c, yaml_node_t *n, const char **name,
    const char **ns);
int rd_get_header_name(rd_pctx_t *c, yaml_node_t *n, const char *s,
    int lowercase);
int rd_parse_dr(rd_pctx_t *c, yaml_node_t *n, json_t *out);
int rd_parse_vs(rd_pctx_t *c, yaml_node_t *n, json_t *out);
int rd_parse_gw(rd_pctx_t *c, yaml_node_t *n, json_t *out);
int rd_parse_string_match(rd_pctx_t *c, yaml_node_t *n, json_t **out);

/* rd_policy_vs_shape.c: an http route's fault, rewrite, redirect,
 * directResponse, headers and corsPolicy, each into *out (which the
 * caller frees, on an error too) */
int rd_parse_fault(rd_pctx_t *c, yaml_node_t *n, json_t **out);
int rd_parse_rewrite(rd_pctx_t *c, yaml_node_t *n, json_t **out);
int rd_parse_redirect(rd_pctx_t *c, yaml_node_t *n, json_t **out);
int rd_parse_direct_response(rd_pctx_t *c, yaml_node_t *n, json_t **out);
int rd_parse_headers(rd_pctx_t *c, yaml_node_t *n, json_t **out);
int rd_parse_cors(rd_pctx_t *c, yaml_node_t *n, json_t **out);

/* Istio's Percent {value: 0..100} as requests per million */
#define RD_PPM_ALL  1000000

int rd_parse_percentage(rd_pctx_t *c, yaml_node_t *n, long long *ppm);

#endif
