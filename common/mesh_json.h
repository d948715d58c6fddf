/*
 * mesh_json: the strict JSON reader under mesh_snapshot and mesh_policy.
 *
 * nginx-free. A parser fills a mesh_json_t over its text and walks it with
 * mesh_json_next_member() / mesh_json_next_element(), reading the values it
 * knows and passing over the rest with mesh_json_skip(). The first error
 * wins: it is written into err as "WHAT: byte N: reason" and every later
 * one is dropped. Values are copied into the arena, which the parser's
 * free function releases with mesh_arena_destroy().
 */

#ifndef MESH_JSON_H
#define MESH_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>


#define MESH_JSON_MAX_DEPTH   64


typedef struct mesh_arena_block_s  mesh_arena_block_t;

typedef struct {
    mesh_arena_block_t  *head;
    size_t               next_size;
} mesh_arena_t;


/* a growing array of size-byte elements, malloc'ed; the owner frees elts */
typedef struct {
    void                *elts;
    size_t               nelts;
    size_t               nalloc;
    size_t               size;
} mesh_vec_t;


typedef struct {
    const unsigned char  *start;
    const unsigned char  *pos;
    const unsigned char  *end;
    const unsigned char  *key_at;       /* the '"' of the last key */
    mesh_arena_t         *arena;
    char                 *err;
    size_t                errlen;
    int                   failed;
    const char           *what;         /* the errors' prefix */
    void                 *data;         /* the parser's own state */

    /* a decoded string that has escapes: keys and values pass here */
    unsigned char        *buf;
    size_t                buf_size;
} mesh_json_t;


#define mesh_json_key_is(key, klen, lit)                                      \
    ((klen) == sizeof(lit) - 1 && memcmp(key, lit, sizeof(lit) - 1) == 0)


void mesh_json_error(mesh_json_t *j, const unsigned char *at,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void mesh_json_ws(mesh_json_t *j);
int mesh_json_expect(mesh_json_t *j, unsigned char c);

/*
 * After '{' or a member's value: 1 and the next key, j->pos at its value;
 * 0 after the closing '}'; -1 on an error. *n counts the members.
 */
int mesh_json_next_member(mesh_json_t *j, size_t *n,
    const unsigned char **key, size_t *klen);
/* the same for arrays: 1 with j->pos at the next value */
int mesh_json_next_element(mesh_json_t *j, size_t *n);

int mesh_json_string(mesh_json_t *j, const unsigned char **data,
    size_t *len);
int mesh_json_number(mesh_json_t *j, int *integer, uint64_t *value);
int mesh_json_skip(mesh_json_t *j, int depth);
char *mesh_json_cstr(mesh_json_t *j, const char *what);
int mesh_json_uint(mesh_json_t *j, const char *what, uint64_t min,
    uint64_t max, uint64_t *value);

void *mesh_vec_push(mesh_json_t *j, mesh_vec_t *v);
void *mesh_arena_alloc(mesh_arena_t *a, size_t size);
void mesh_arena_destroy(mesh_arena_t *a);


#endif
