/*
 * rd_policy: YAML traffic policies, validated and normalized.
 *
 * Two passes over the body: the event pass refuses what the document
 * loader would hide (aliases, tags, excessive nesting) and reports syntax
 * errors; the document pass walks each document's node tree against the
 * supported subset, building the normalized JSON as it goes. Every error
 * carries the field's path and the node's line and column. The kinds are
 * read in rd_policy_dr.c and rd_policy_vs.c, with rd_policy_yaml.c's
 * helpers; here: documents, cross-document checks, the stored form.
 */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "mesh_alloc.h"
#include "mesh_name.h"
#include "mesh_policy.h"
#include "mesh_regex.h"
#include "rd_policy_int.h"

#define RD_POLICY_DEPTH_MAX  32


static const char *rd_policy_rule_host(const rd_policy_t *p,
    rd_policy_t *const *others, size_t n, const char *host);
static int rd_policy_defines(const rd_policy_t *p, const char *rule,
    const char *subset);


/* documents */

static int
rd_parse_document(rd_pctx_t *c, yaml_node_t *root, const char *policy,
    json_t *names, json_t **out, rd_policy_obj_t *obj)
{
    int                kind = -1, rc;
    char               key[RD_NAME_MAX + 8];
    size_t             old;
    json_t            *o, *first;
    const char        *k, *s, *api = NULL, *name = NULL, *ns = NULL;
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
            } else if (strcmp(s, "Gateway") == 0) {
                kind = RD_POLICY_GW;
            } else {
                return rd_perr(c, v, "\"%.64s\" is not DestinationRule, "
                               "VirtualService or Gateway", s);
            }
            kind_node = v;

        } else if (strcmp(k, "metadata") == 0) {
            meta = v;

        } else if (strcmp(k, "spec") == 0) {
            spec = v;

        } else if (strcmp(k, "status") != 0) {
            /* status: what Kubernetes reports of a stored object, not
             * part of the policy (kubectl get -o yaml): ignored */
            return rd_unknown(c, kn, k, "apiVersion,kind,metadata,spec "
                              "(and status, ignored)", NULL);
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
    if (rd_parse_metadata(c, meta, &name, &ns) != 0) {
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
                       "%lld)", rd_policy_kind_name(kind), name,
                       (long long) json_integer_value(first));
    }
    rd_jset(names, key, json_integer(c->document));

    if (spec == NULL) {
        return rd_missing(c, root, "spec");
    }

    c->doc_name = name;
    c->doc_ns = ns ? ns : "default";
    c->vs_delegate = 0;

    obj->kind = kind;
    obj->document = c->document;
    snprintf(obj->ns, sizeof(obj->ns), "%s", ns ? ns : "default");
    snprintf(obj->name, sizeof(obj->name), "%s", name);

    o = rd_jobj();
    rd_jset(o, "policy", json_string(policy));
    rd_jset(o, "kind", json_string(rd_policy_kind_name(kind)));
    rd_jset(o, "name", json_string(name));

    old = rd_path_key(c, "spec");
    rc = (kind == RD_POLICY_DR) ? rd_parse_dr(c, spec, o)
         : (kind == RD_POLICY_VS) ? rd_parse_vs(c, spec, o)
         : rd_parse_gw(c, spec, o);
    if (rc != 0) {
        json_decref(o);
        return -1;
    }
    rd_path_pop(c, old);

    obj->delegate = (kind == RD_POLICY_VS && c->vs_delegate);

    *out = o;
    return 0;
}


/* the same host claimed twice: by two DestinationRules, or by two
 * VirtualServices at the same gateway ("mesh" counts as one) */
static int
rd_ref_same_host(const rd_policy_ref_t *a, const rd_policy_ref_t *b)
{
    return a->kind == b->kind && strcmp(a->host, b->host) == 0
           && strcmp(a->gateway, b->gateway) == 0;
}


/* a VirtualService's host at a gateway other than the mesh */
static int
rd_ref_at_gateway(const rd_policy_ref_t *r)
{
    return r->gateway[0] && strcmp(r->gateway, "mesh") != 0;
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
    mesh_buf_t        snap;
    rd_pctx_t         c;
    rd_policy_t      *p = NULL;
    yaml_node_t      *root;
    yaml_parser_t     parser;
    yaml_document_t   ydoc;

    rd_err_init(e);
    memset(&c, 0, sizeof(c));
    c.e = e;
    mesh_buf_init(&snap, 0);

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

    p = mesh_xcalloc(1, sizeof(rd_policy_t));
    names = json_object();

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

        if ((p->nobjs & (p->nobjs + 1)) == 0) {
            p->objs = mesh_xrealloc(p->objs, (2 * p->nobjs + 1)
                                             * sizeof(rd_policy_obj_t));
        }

        if (rd_parse_document(&c, root, name, names, &doc,
                              &p->objs[p->nobjs])
            != 0)
        {
            yaml_document_delete(&ydoc);
            goto fail_parser;
        }

        p->nobjs++;

        rd_jpush(p->docs, doc);
        ndocs++;

        yaml_document_delete(&ydoc);
    }

    yaml_parser_delete(&parser);

    if (ndocs == 0) {
        snprintf(e->msg, sizeof(e->msg), "the body holds no document: "
                 "expected DestinationRule, VirtualService or Gateway "
                 "documents");
        goto fail;
    }

    /* one DestinationRule per host, one VirtualService per gateway and
     * host */
    for (i = 0; i < c.hosts.n; i++) {
        for (j = 0; j < i; j++) {
            if (rd_ref_same_host(&c.hosts.v[i], &c.hosts.v[j])) {
                rd_ref_err(&c.hosts.v[i], e, "host \"%s\"%s%s already has a "
                           "%s in this policy: \"%s\" (document %d)",
                           c.hosts.v[i].host,
                           rd_ref_at_gateway(&c.hosts.v[i])
                           ? " at gateway " : "",
                           rd_ref_at_gateway(&c.hosts.v[i])
                           ? c.hosts.v[i].gateway : "",
                           rd_policy_kind_name(c.hosts.v[i].kind),
                           c.hosts.v[j].doc_name, c.hosts.v[j].document);
                goto fail;
            }
        }
    }

    p->yaml = mesh_xmalloc(len + 1);
    memcpy(p->yaml, yaml, len);
    p->yaml[len] = '\0';
    p->yaml_len = len;

    for (i = 0; i < json_array_size(p->docs); i++) {
        char *s = json_dumps(json_array_get(p->docs, i), JSON_COMPACT);

        if (i) {
            mesh_buf_adds(&snap, ",\n");
        }
        mesh_buf_adds(&snap, s);
        free(s);
    }

    mesh_buf_cstr(&snap);
    p->snap = snap.data;
    p->snap_len = snap.len;

    for (i = 0; i < p->nobjs; i++) {
        p->everyone |= (p->objs[i].kind == RD_POLICY_GW);
    }

    for (i = 0; i < c.hosts.n; i++) {
        p->everyone |= (c.hosts.v[i].host[0] == '*'
                        || rd_ref_at_gateway(&c.hosts.v[i]));
    }

    rd_refs_move(&c.hosts, &p->hosts, &p->nhosts);
    rd_refs_move(&c.subsets, &p->subsets, &p->nsubsets);
    rd_refs_move(&c.routes, &p->routes, &p->nroutes);
    rd_refs_move(&c.delegates, &p->delegates, &p->ndelegates);
    json_decref(names);

    p->delegation = (p->ndelegates > 0);

    for (i = 0; i < p->nobjs; i++) {
        p->delegation |= p->objs[i].delegate;
    }

    return p;

fail_parser:

    yaml_parser_delete(&parser);

fail:

    free(c.hosts.v);
    free(c.subsets.v);
    free(c.routes.v);
    free(c.delegates.v);
    json_decref(names);
    mesh_buf_free(&snap);
    rd_policy_free(p);
    return NULL;
}


void
rd_policy_rename(rd_policy_t *p, const char *name)
{
    size_t      i;
    mesh_buf_t  snap;

    snprintf(p->name, sizeof(p->name), "%s", name);
    mesh_buf_init(&snap, p->snap_len + 64);

    for (i = 0; i < json_array_size(p->docs); i++) {
        json_t  *doc = json_array_get(p->docs, i);
        char    *s;

        rd_jset(doc, "policy", json_string(name));
        s = json_dumps(doc, JSON_COMPACT);

        if (i) {
            mesh_buf_adds(&snap, ",\n");
        }
        mesh_buf_adds(&snap, s);
        free(s);
    }

    free(p->snap);
    mesh_buf_cstr(&snap);
    p->snap = snap.data;
    p->snap_len = snap.len;
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
    free(p->objs);
    free(p->delegates);
    free(p->xsnap);
    free(p);
}


int
rd_policy_check(const rd_policy_t *p, rd_policy_t *const *others, size_t n,
    rd_policy_err_t *e)
{
    size_t                  i, j, k;
    const char             *rule;
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
                if (rd_ref_same_host(x, r)) {
                    return rd_ref_err(r, e, "host \"%s\"%s%s already has a "
                                      "%s: \"%s\" in policy \"%s\"",
                                      r->host,
                                      rd_ref_at_gateway(r)
                                      ? " at gateway " : "",
                                      rd_ref_at_gateway(r) ? r->gateway : "",
                                      rd_policy_kind_name(r->kind),
                                      x->doc_name, o->name);
                }
            }
        }
    }

    for (i = 0; i < p->nroutes; i++) {
        r = &p->routes[i];

        rule = rd_policy_rule_host(p, others, n, r->host);

        if (rule == NULL) {
            return rd_ref_err(r, e, "subset \"%s\" of host \"%s\" is not "
                              "defined by any DestinationRule", r->subset,
                              r->host);
        }

        if (rd_policy_defines(p, rule, r->subset)) {
            continue;
        }

        for (j = 0; j < n; j++) {
            if (strcmp(others[j]->name, p->name) != 0
                && rd_policy_defines(others[j], rule, r->subset))
            {
                break;
            }
        }

        if (j == n) {
            return rd_ref_err(r, e, "subset \"%s\" of host \"%s\" is not "
                              "defined by its DestinationRule (host \"%s\")",
                              r->subset, r->host, rule);
        }
    }

    return 0;
}


/*
 * The host of the DestinationRule that applies to a route's host, of p or
 * of the others p does not replace: its own name, else the most specific
 * wildcard, as the module picks the rule (mesh_policies_rule); NULL: none
 */
static const char *
rd_policy_rule_host(const rd_policy_t *p, rd_policy_t *const *others,
    size_t n, const char *host)
{
    int                     rank, best;
    size_t                  j, k, len;
    const char             *rule;
    const rd_policy_t      *o;
    const rd_policy_ref_t  *x;

    best = -1;
    rule = NULL;
    len = strlen(host);

    for (j = 0; j <= n; j++) {
        o = (j == n) ? p : others[j];

        if (j < n && strcmp(o->name, p->name) == 0) {
            continue;
        }

        for (k = 0; k < o->nhosts; k++) {
            x = &o->hosts[k];

            if (x->kind != RD_POLICY_DR) {
                continue;
            }

            rank = mesh_host_match(x->host, host, len, 0);

            if (rank > best) {
                best = rank;
                rule = x->host;
            }
        }
    }

    return rule;
}


/* 1 when a DestinationRule of p for host rule defines subset */
static int
rd_policy_defines(const rd_policy_t *p, const char *rule, const char *subset)
{
    size_t  k;

    for (k = 0; k < p->nsubsets; k++) {
        if (strcmp(p->subsets[k].host, rule) == 0
            && strcmp(p->subsets[k].subset, subset) == 0)
        {
            return 1;
        }
    }

    return 0;
}


void
rd_policy_to_stored(mesh_buf_t *b, const rd_policy_t *p)
{
    mesh_buf_adds(b, "{\"yaml\":");
    mesh_buf_add_json_str(b, p->yaml);
    mesh_buf_adds(b, ",\"documents\":[");
    mesh_buf_add(b, p->snap, p->snap_len);
    mesh_buf_adds(b, "],\"create_index\":");
    mesh_buf_add_u64(b, p->create_index);
    mesh_buf_adds(b, ",\"modify_index\":");
    mesh_buf_add_u64(b, p->modify_index);
    mesh_buf_addc(b, '}');
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
rd_policy_err_to_json(mesh_buf_t *b, const rd_policy_err_t *e)
{
    mesh_buf_adds(b, "{\"error\":");
    mesh_buf_add_json_str(b, e->msg);

    if (e->field[0]) {
        mesh_buf_adds(b, ",\"field\":");
        mesh_buf_add_json_str(b, e->field);
    }

    if (e->line > 0) {
        mesh_buf_printf(b, ",\"line\":%d,\"column\":%d", e->line, e->column);
    }

    if (e->document >= 0) {
        mesh_buf_printf(b, ",\"document\":%d", e->document);
    }

    mesh_buf_addc(b, '}');
}
