/*
 * rd_policy_obj: policies as Kubernetes keeps them, one object each.
 *
 * An object is one DestinationRule, VirtualService or Gateway document,
 * known by its kind, namespace and metadata.name. registryd stores an
 * object as a policy of one document whose name says that identity,
 * "virtualservice.NAMESPACE.NAME" (a namespace is a DNS label: no dots,
 * so the name reads back), which every other part of registryd (store,
 * snapshot, events, replicas, export) already knows. Here: a YAML stream
 * cut into its documents, each document's identity, the policy name of
 * an identity and back.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "mesh_alloc.h"
#include "mesh_name.h"
#include "rd_policy_int.h"


/* in RD_POLICY_* order */
static const char  *rd_obj_kinds[] = {
    "destinationrule", "virtualservice", "gateway"
};

static const char  *rd_obj_kind_names[] = {
    "DestinationRule", "VirtualService", "Gateway"
};


const char *
rd_policy_kind_name(int kind)
{
    return (kind >= 0 && kind < RD_POLICY_NKINDS) ? rd_obj_kind_names[kind]
                                                  : "?";
}


/*
 * A kind as a URL or a command line says it: the singular or plural
 * resource name kubectl takes, its short name, or the kind itself.
 */
int
rd_policy_kind_parse(const char *s)
{
    if (strcasecmp(s, "destinationrule") == 0
        || strcasecmp(s, "destinationrules") == 0
        || strcasecmp(s, "dr") == 0)
    {
        return RD_POLICY_DR;
    }

    if (strcasecmp(s, "virtualservice") == 0
        || strcasecmp(s, "virtualservices") == 0
        || strcasecmp(s, "vs") == 0)
    {
        return RD_POLICY_VS;
    }

    if (strcasecmp(s, "gateway") == 0
        || strcasecmp(s, "gateways") == 0
        || strcasecmp(s, "gw") == 0)
    {
        return RD_POLICY_GW;
    }

    return -1;
}


int
rd_policy_obj_name(int kind, const char *ns, const char *name, char *out,
    char *err)
{
    int  n;

    if (strchr(ns, '.') != NULL) {
        snprintf(err, RD_ERR_LEN, "namespace \"%s\": a namespace is a DNS "
                 "label, without dots", ns);
        return -1;
    }

    n = snprintf(out, RD_NAME_MAX + 1, "%s.%s.%s", rd_obj_kinds[kind],
                 ns, name);

    if (n > RD_NAME_MAX) {
        snprintf(err, RD_ERR_LEN, "%s %s/%s: kind, namespace and name "
                 "together are longer than %d characters (%d)",
                 rd_policy_kind_name(kind), ns, name, RD_NAME_MAX, n);
        return -1;
    }

    return 0;
}


int
rd_policy_obj_from_name(const char *policy, rd_policy_obj_t *o)
{
    int          kind;
    size_t       n;
    const char  *dot, *ns, *name;

    for (kind = 0; kind < RD_POLICY_NKINDS; kind++) {
        n = strlen(rd_obj_kinds[kind]);
        if (strncmp(policy, rd_obj_kinds[kind], n) == 0
            && policy[n] == '.')
        {
            break;
        }
    }

    if (kind == RD_POLICY_NKINDS) {
        return -1;
    }

    ns = policy + n + 1;
    dot = strchr(ns, '.');
    if (dot == NULL || dot == ns || dot[1] == '\0') {
        return -1;
    }

    name = dot + 1;

    o->kind = kind;
    o->document = 0;
    snprintf(o->ns, sizeof(o->ns), "%.*s", (int) (dot - ns), ns);
    snprintf(o->name, sizeof(o->name), "%s", name);

    return 0;
}


/*
 * The documents of a stream as byte ranges, each from the start of the
 * line its "---" (or its first node) is on to the start of the next
 * one's, so a document's text parses alone and its lines are the
 * stream's shifted by "line". Syntax errors as rd_policy_parse() reports
 * them. Empty documents are marked, not dropped: they count in the
 * stream's document numbers.
 */
int
rd_policy_split(const char *yaml, size_t len, rd_policy_part_t **parts,
    size_t *nparts, rd_policy_err_t *e)
{
    int                done = 0, want_root = 0;
    size_t             n = 0, i, line, *starts = NULL, nlines;
    yaml_event_t       ev;
    yaml_parser_t      parser;
    rd_policy_part_t  *v = NULL, *pt;

    rd_err_init(e);
    *parts = NULL;
    *nparts = 0;

    if (memchr(yaml, '\0', len)) {
        snprintf(e->msg, sizeof(e->msg), "invalid YAML: the body holds a NUL "
                 "byte");
        return -1;
    }

    /* where each line starts: libyaml's marks count characters */
    nlines = 1;
    for (i = 0; i < len; i++) {
        nlines += (yaml[i] == '\n');
    }

    starts = mesh_xmalloc(nlines * sizeof(size_t));
    starts[0] = 0;
    for (i = 0, line = 1; i < len; i++) {
        if (yaml[i] == '\n') {
            starts[line++] = i + 1;
        }
    }

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
            goto fail;
        }

        if (want_root) {
            want_root = 0;
            pt = &v[n - 1];
            pt->empty = (ev.type == YAML_SCALAR_EVENT
                         && ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE
                         && (ev.data.scalar.length == 0
                             || strcmp((char *) ev.data.scalar.value, "~")
                                == 0
                             || strcasecmp((char *) ev.data.scalar.value,
                                           "null") == 0));
        }

        switch (ev.type) {

        case YAML_STREAM_END_EVENT:
            done = 1;
            break;

        case YAML_DOCUMENT_START_EVENT:
            if ((n & (n + 1)) == 0) {
                v = mesh_xrealloc(v, (2 * n + 1) * sizeof(rd_policy_part_t));
            }

            line = ev.start_mark.line < nlines ? ev.start_mark.line
                                               : nlines - 1;
            pt = &v[n];
            pt->document = (int) n;
            pt->line = n ? (int) line : 0;
            pt->start = n ? starts[line] : 0;
            pt->end = len;
            pt->empty = 0;

            if (n) {
                v[n - 1].end = pt->start;
            }

            n++;
            want_root = 1;
            break;

        default:
            break;
        }

        yaml_event_delete(&ev);
    }

    yaml_parser_delete(&parser);
    free(starts);

    *parts = v;
    *nparts = n;

    return 0;

fail:

    yaml_parser_delete(&parser);
    free(starts);
    free(v);

    return -1;
}


/*
 * An error in a document parsed alone, told as in the whole stream: its
 * line shifted, its document number the stream's.
 */
void
rd_policy_err_shift(rd_policy_err_t *e, const rd_policy_part_t *pt)
{
    if (e->line > 0) {
        e->line += pt->line;
    }

    e->document = pt->document;
}


/*
 * One object of a stream, parsed alone and stored under the policy name
 * of its identity. NULL with e filled (as in the stream).
 */
rd_policy_t *
rd_policy_parse_object(const char *yaml, const rd_policy_part_t *pt,
    rd_policy_err_t *e)
{
    char          name[RD_NAME_MAX + 1];
    rd_policy_t  *p;

    p = rd_policy_parse("object", yaml + pt->start, pt->end - pt->start, e);
    if (p == NULL) {
        rd_policy_err_shift(e, pt);
        return NULL;
    }

    if (rd_policy_obj_name(p->objs[0].kind, p->objs[0].ns, p->objs[0].name,
                           name, e->msg)
        != 0)
    {
        snprintf(e->field, sizeof(e->field), "metadata");
        e->document = pt->document;
        rd_policy_free(p);
        return NULL;
    }

    rd_policy_rename(p, name);

    return p;
}


/*
 * The identity of a document, for a deletion: kind, metadata.name and
 * metadata.namespace only; the rest of the document is not read.
 */
int
rd_policy_identity(const char *yaml, const rd_policy_part_t *pt,
    rd_policy_obj_t *o, rd_policy_err_t *e)
{
    int                rc = -1, ki = 0;
    const char        *k, *kind = NULL, *name = NULL, *ns = NULL;
    yaml_node_t       *root, *kn, *v, *mk, *mv;
    yaml_parser_t      parser;
    yaml_document_t    doc;
    yaml_node_pair_t  *p, *mp;

    rd_err_init(e);
    e->document = pt->document;

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser,
                                 (const unsigned char *) yaml + pt->start,
                                 pt->end - pt->start);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(e->msg, sizeof(e->msg), "invalid YAML: %s",
                 parser.problem ? parser.problem : "syntax error");
        e->line = (int) parser.problem_mark.line + 1 + pt->line;
        e->column = (int) parser.problem_mark.column + 1;
        yaml_parser_delete(&parser);
        return -1;
    }

    root = yaml_document_get_root_node(&doc);

    if (root == NULL || root->type != YAML_MAPPING_NODE) {
        snprintf(e->msg, sizeof(e->msg), "a document must be a mapping with "
                 "apiVersion, kind, metadata and spec");
        goto done;
    }

    for (p = root->data.mapping.pairs.start;
         p < root->data.mapping.pairs.top; p++)
    {
        kn = yaml_document_get_node(&doc, p->key);
        v = yaml_document_get_node(&doc, p->value);
        if (kn == NULL || v == NULL || kn->type != YAML_SCALAR_NODE) {
            continue;
        }

        k = (const char *) kn->data.scalar.value;

        if (strcmp(k, "kind") == 0 && v->type == YAML_SCALAR_NODE) {
            kind = (const char *) v->data.scalar.value;
            continue;
        }

        if (strcmp(k, "metadata") != 0 || v->type != YAML_MAPPING_NODE) {
            continue;
        }

        for (mp = v->data.mapping.pairs.start;
             mp < v->data.mapping.pairs.top; mp++)
        {
            mk = yaml_document_get_node(&doc, mp->key);
            mv = yaml_document_get_node(&doc, mp->value);
            if (mk == NULL || mv == NULL || mk->type != YAML_SCALAR_NODE
                || mv->type != YAML_SCALAR_NODE)
            {
                continue;
            }

            if (strcmp((char *) mk->data.scalar.value, "name") == 0) {
                name = (const char *) mv->data.scalar.value;

            } else if (strcmp((char *) mk->data.scalar.value, "namespace")
                       == 0)
            {
                ns = (const char *) mv->data.scalar.value;
            }
        }
    }

    for (ki = 0; kind && ki < RD_POLICY_NKINDS; ki++) {
        if (strcmp(kind, rd_obj_kind_names[ki]) == 0) {
            break;
        }
    }

    if (kind == NULL || ki == RD_POLICY_NKINDS) {
        snprintf(e->field, sizeof(e->field), "kind");
        snprintf(e->msg, sizeof(e->msg), "kind: %s%.64s%s is not "
                 "DestinationRule, VirtualService or Gateway",
                 kind ? "\"" : "",
                 kind ? kind : "none", kind ? "\"" : "");
        goto done;
    }

    if (name == NULL || !mesh_name_valid(name, strlen(name))) {
        snprintf(e->field, sizeof(e->field), "metadata.name");
        snprintf(e->msg, sizeof(e->msg), "metadata.name: a name is "
                 "[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
        goto done;
    }

    if (ns && !mesh_name_valid(ns, strlen(ns))) {
        snprintf(e->field, sizeof(e->field), "metadata.namespace");
        snprintf(e->msg, sizeof(e->msg), "metadata.namespace: a name is "
                 "[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
        goto done;
    }

    o->kind = ki;
    o->document = pt->document;
    snprintf(o->ns, sizeof(o->ns), "%s", ns ? ns : "default");
    snprintf(o->name, sizeof(o->name), "%s", name);
    rc = 0;

done:

    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);

    return rc;
}
