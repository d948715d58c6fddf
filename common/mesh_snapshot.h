/*
 * mesh_snapshot: parse the registry snapshot (registryd's
 * GET /v1/snapshot document) into plain C structures.
 *
 * nginx-free: the module calls it from a worker, the unit tests call it
 * directly. Everything a parse allocates hangs off one mesh_snapshot_t and
 * goes with mesh_snapshot_free().
 */

#ifndef MESH_SNAPSHOT_H
#define MESH_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#define MESH_ERR_LEN  256

typedef struct {
    const char  *key;
    const char  *value;
} mesh_label_t;

typedef struct {
    const char    *id;
    const char    *address;      /* IPv4 or IPv6 literal, no brackets */
    int            port;         /* 1..65535 */
    int            weight;       /* 1..1000, default 1 */
    const char    *zone;         /* NULL: none */
    int            healthy;      /* health is "passing" (default) */
    mesh_label_t  *labels;
    size_t         nlabels;
    /* "ADDRESS:PORT" as nginx writes a server ("[::1]:8080" for IPv6):
     * the consistent hash ring is built from it */
    const char    *server;
    size_t         server_len;
} mesh_instance_t;

typedef struct {
    const char       *name;
    mesh_instance_t  *instances;  /* sorted by id (the parser sorts) */
    size_t            ninstances;
    const char      **removed;    /* a delta's ids that left, sorted */
    size_t            nremoved;
} mesh_service_t;

typedef struct {
    uint64_t          index;
    uint64_t          registry;   /* the registry's id, 0: not given */
    int               delta;      /* "delta": true: changes only */
    int               has_policies;  /* "policies" was there */
    mesh_service_t   *services;   /* sorted by name (the parser sorts) */
    size_t            nservices;
    const char       *policies;   /* the raw JSON text of "policies",
                                     NUL-terminated; "[]" when absent */
    size_t            policies_len;
    void             *arena;      /* internal */
} mesh_snapshot_t;

/*
 * Parse len bytes of JSON. Returns NULL on any error and writes a
 * one-line reason (with the byte offset) into err. Unknown fields are
 * ignored (newer registries may add some); the fields above are checked:
 * index (non-negative integer, required), services (array), each service a
 * name and an instances array, each instance id, address (an IP literal)
 * and port (required), weight 1..1000, health a string, labels an object of
 * strings. Two instances with the same id in a service, or two services
 * with the same name, are an error.
 *
 * The same parser reads registryd's answers to a subscription: "registry"
 * (16 hex digits), "delta" (true: each service lists the instances that
 * changed and, in "removed", the ids that left) and "policies" present or
 * not. An id both changed and removed in one service is an error.
 */
mesh_snapshot_t *mesh_snapshot_parse(const char *json, size_t len,
    char *err, size_t errlen);

void mesh_snapshot_free(mesh_snapshot_t *s);

/* binary search by name; NULL when absent */
const mesh_service_t *mesh_snapshot_service(const mesh_snapshot_t *s,
    const char *name, size_t len);

#endif
