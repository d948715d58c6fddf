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

enum {
    RD_POLICY_DR = 0,           /* DestinationRule */
    RD_POLICY_VS                /* VirtualService */
};

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
    char   subset[RD_NAME_MAX + 1];
    char   doc_name[RD_NAME_MAX + 1];
    char   field[RD_POLICY_PATH_MAX];
    int    line;
    int    column;
    int    document;
} rd_policy_ref_t;

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

/* the store's value: {"yaml", "documents", "create_index",
 * "modify_index"} */
void rd_policy_to_stored(mesh_buf_t *b, const rd_policy_t *p);
/* from a store value (the YAML is parsed again); NULL with err */
rd_policy_t *rd_policy_from_stored(const char *name, const char *value,
    size_t len, char *err);

/* the 400 body: {"error", "field", "line", "column", "document"} */
void rd_policy_err_to_json(mesh_buf_t *b, const rd_policy_err_t *e);

#endif
