/*
 * rd_policy: traffic policies in YAML (Istio's DestinationRule and
 * VirtualService, the subset that maps onto nginx), validated strictly
 * and normalized into the JSON documents the snapshot carries.
 *
 * A policy is what one PUT /v1/policies/{name} stored: the YAML text as
 * sent and its normalized documents. docs/policies.md is the reference of
 * the accepted fields and of the normalized form.
 */

#ifndef RD_POLICY_H
#define RD_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "mesh_buf.h"
#include "rd_log.h"
#include "rd_util.h"

#define RD_POLICY_PATH_MAX  256
#define RD_POLICY_SUFFIXES_MAX  16
#define RD_POLICY_SUFFIX_LEN    253

enum {
    RD_POLICY_DR = 0,           /* DestinationRule */
    RD_POLICY_VS,               /* VirtualService */
    RD_POLICY_GW,               /* Gateway */
    RD_POLICY_NKINDS
};

/* "mesh" or "NAMESPACE/NAME": a VirtualService's gateway */
#define RD_GATEWAY_LEN  (2 * RD_NAME_MAX + 2)

/* where and why a policy was refused; line, column and document are
 * -1 when unknown, field is "" then */
typedef struct {
    char   msg[RD_ERR_LEN];
    char   field[RD_POLICY_PATH_MAX];
    int    line;                /* 1-based */
    int    column;              /* 1-based */
    int    document;            /* 0-based, in stream order */
} rd_policy_err_t;

/*
 * A place in the YAML that other policies may conflict with: a host that a
 * DestinationRule or VirtualService claims, a subset that a
 * DestinationRule defines, a subset that a route names.
 */
typedef struct {
    int    kind;
    char   host[RD_NAME_MAX + 1];
    char   gateway[RD_GATEWAY_LEN]; /* a VirtualService host's: "mesh" or
                                       "NS/NAME" (one per gateway and
                                       host); "" for the others */
    char   subset[RD_NAME_MAX + 1];
    char   doc_name[RD_NAME_MAX + 1];
    char   field[RD_POLICY_PATH_MAX];
    int    line;
    int    column;
    int    document;
} rd_policy_ref_t;

/* an object as Kubernetes keys it: kind, namespace, metadata.name */
typedef struct {
    int    kind;
    char   ns[RD_NAME_MAX + 1];             /* "default" when not given */
    char   name[RD_NAME_MAX + 1];
    int    document;
    int    delegate;            /* a VirtualService without hosts: only
                                   used through a root's http[].delegate */
} rd_policy_obj_t;

typedef struct {
    char              name[RD_NAME_MAX + 1];
    char             *yaml;     /* as sent, NUL-terminated */
    size_t            yaml_len;
    json_t           *docs;     /* array of normalized documents */
    char             *snap;     /* docs as compact JSON objects joined by
                                   ",\n" (no brackets) */
    size_t            snap_len;

    rd_policy_ref_t  *hosts;    /* one per DR host and VS host */
    size_t            nhosts;
    rd_policy_ref_t  *subsets;  /* defined by DestinationRules */
    size_t            nsubsets;
    rd_policy_ref_t  *routes;   /* route destinations naming a subset */
    size_t            nroutes;
    rd_policy_obj_t  *objs;     /* one per document, in stream order */
    size_t            nobjs;
    int               everyone; /* in every subscription's snapshot: a
                                   Gateway, a VirtualService at a gateway,
                                   a wildcard host */

    /* delegation (rd_policy_delegate.c): a root's http[].delegate
     * (host: the delegate's namespace, subset: its name, document: the
     * root's); the form the snapshot carries when the policy holds a
     * root or a delegate (roots expanded, delegates left out), made again
     * whenever either changes */
    rd_policy_ref_t  *delegates;
    size_t            ndelegates;
    int               delegation;   /* holds a root or a delegate */
    char             *xsnap;
    size_t            xsnap_len;

    uint64_t          create_index;
    uint64_t          modify_index;
} rd_policy_t;

/*
 * Parse and validate the YAML body of policy "name". Checks every
 * document on its own and the documents against each other (duplicate
 * names, subsets that routes name). NULL on error, e filled.
 */
rd_policy_t *rd_policy_parse(const char *name, const char *yaml, size_t len,
    rd_policy_err_t *e);

void rd_policy_free(rd_policy_t *p);

/*
 * Check p against the other stored policies (those named like p are
 * skipped: p replaces them): one DestinationRule and one VirtualService
 * per host, and every subset a route names defined by a DestinationRule
 * of its host. 0 or -1 with e filled.
 */
int rd_policy_check(const rd_policy_t *p, rd_policy_t *const *others,
    size_t n, rd_policy_err_t *e);

/*
 * Delegation (rd_policy_delegate.c): the policy "name" changed in v (old:
 * what it was, or NULL), and the snapshot form of the roots this touches
 * is made again (the policy's own, those naming one of its delegates
 * before or after); under the table's write lock.
 */
void rd_policy_delegation_changed(rd_policy_t *const *v, size_t n,
    const char *name, const rd_policy_t *old);

/* the documents as the snapshot carries them ("" when none) */
const char *rd_policy_snap(const rd_policy_t *p, size_t *len);

/* the store's value: {"yaml", "documents", "create_index",
 * "modify_index"} */
void rd_policy_to_stored(mesh_buf_t *b, const rd_policy_t *p);
/* from a store value (the YAML is parsed again); NULL with err */
rd_policy_t *rd_policy_from_stored(const char *name, const char *value,
    size_t len, char *err);

/*
 * The DNS suffixes a policy host may carry ("*.svc.cluster.local,
 * corp.example", as rd_conf checked it): "reviews.prod.svc.cluster.local"
 * and "reviews.corp.example" name the service "reviews". Set at start,
 * before any policy is read.
 */
void rd_policy_set_suffixes(const char *list);

/* no error yet: line, column and document -1 */
void rd_err_init(rd_policy_err_t *e);

/* the 400 body: {"error", "field", "line", "column", "document"} */
void rd_policy_err_to_json(mesh_buf_t *b, const rd_policy_err_t *e);

/* the policy's name changed, in its normalized documents too */
void rd_policy_rename(rd_policy_t *p, const char *name);


/* objects (rd_policy_obj.c): one document, known by kind, namespace and
 * metadata.name, stored as the policy "virtualservice.NAMESPACE.NAME" */

/* a document of a YAML stream */
typedef struct {
    size_t   start;             /* byte offset of its first line */
    size_t   end;
    int      line;              /* lines before it in the stream */
    int      document;          /* its number in the stream */
    int      empty;             /* "---" alone, or null */
} rd_policy_part_t;

int rd_policy_split(const char *yaml, size_t len, rd_policy_part_t **parts,
    size_t *nparts, rd_policy_err_t *e);
rd_policy_t *rd_policy_parse_object(const char *yaml,
    const rd_policy_part_t *pt, rd_policy_err_t *e);
int rd_policy_identity(const char *yaml, const rd_policy_part_t *pt,
    rd_policy_obj_t *o, rd_policy_err_t *e);
void rd_policy_err_shift(rd_policy_err_t *e, const rd_policy_part_t *pt);

/* "VirtualService"; from "vs", "virtualservices", "gw", ...: the kind or
 * -1 */
const char *rd_policy_kind_name(int kind);
int rd_policy_kind_parse(const char *s);
/* out: RD_NAME_MAX + 1 bytes; -1 with err (RD_ERR_LEN) when the
 * identity does not make a policy name */
int rd_policy_obj_name(int kind, const char *ns, const char *name,
    char *out, char *err);
/* the identity a policy name says, or -1 for another name */
int rd_policy_obj_from_name(const char *policy, rd_policy_obj_t *o);

#endif
