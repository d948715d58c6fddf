/*
 * mesh_policy_int: what the parts of mesh_policy share (mesh_policy.c:
 * the model's entry points and the reading helpers; mesh_policy_dr.c,
 * mesh_policy_vs.c, mesh_policy_gw.c: the three kinds, mesh_policy_shape.c: a route's request
 * shaping; mesh_policy_pack.c: the packed form);
 * not for other users.
 */

#ifndef MESH_POLICY_INT_H
#define MESH_POLICY_INT_H

#include <stddef.h>
#include <stdint.h>

#include "mesh_json.h"
#include "mesh_policy.h"

#define MESH_MS_MAX           (24 * 3600 * 1000)
#define MESH_CONNS_MAX        1000000

#define MESH_KIND_RULE        1
#define MESH_KIND_VS          2
#define MESH_KIND_GW          3

/* the keys' duplicate detection uses one bit each */
#define mesh_policy_has(seen, k)  ((seen) & (1u << (k)))


int mesh_policy_rule(mesh_json_t *j, mesh_destination_rule_t *dr);
int mesh_policy_vs(mesh_json_t *j, mesh_virtual_service_t *vs);
int mesh_policy_gateway(mesh_json_t *j, mesh_gateway_t *gw);

/* mesh_policy_shape.c: an http route's fault, rewrite, redirect,
 * directResponse, corsPolicy, and the header operations of a route or
 * destination */
int mesh_policy_fault(mesh_json_t *j, mesh_fault_t *f);
int mesh_policy_rewrite(mesh_json_t *j, mesh_rewrite_t *rw);
int mesh_policy_redirect(mesh_json_t *j, mesh_http_route_t *h);
int mesh_policy_direct(mesh_json_t *j, mesh_http_route_t *h);
int mesh_policy_header_ops(mesh_json_t *j, mesh_headers_t *hs);
int mesh_policy_cors(mesh_json_t *j, mesh_http_route_t *h);

/* mesh_policy_vs.c: a StringMatch, its regex compiled */
int mesh_policy_string_match(mesh_json_t *j, mesh_string_match_t *m,
    const char *what);
int mesh_policy_open(mesh_json_t *j, unsigned char c, const char *what);
int mesh_policy_key(mesh_json_t *j, const char *const *keys,
    const unsigned char *key, size_t klen, unsigned *seen);
char *mesh_policy_name(mesh_json_t *j, const char *what);
int mesh_policy_int(mesh_json_t *j, const char *what, int min, int max,
    int *value);
int mesh_policy_ms(mesh_json_t *j, const char *what, int64_t min,
    int64_t *value);
int mesh_policy_bool(mesh_json_t *j, const char *what, int *value);
void *mesh_policy_list(mesh_json_t *j, const char *what, size_t size,
    int (*parse)(mesh_json_t *j, void *elt), size_t *nelts);
void *mesh_policy_copy(mesh_json_t *j, mesh_vec_t *v);
int mesh_policy_labels(mesh_json_t *j, const char *what, mesh_label_t **out,
    size_t *nout);
int mesh_cmp_labels(const void *one, const void *two);
/* an array of non-empty strings, copied into the arena */
int mesh_policy_strings(mesh_json_t *j, const char *what, const char ***out,
    size_t *nout);

#endif
