/*
 * mesh_buf: a growable byte buffer, with helpers that write JSON, for
 * registryd and registryctl. It allocates with mesh_alloc: it never
 * fails, running out of memory aborts (why: mesh_alloc.h).
 */

#ifndef MESH_BUF_H
#define MESH_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
} mesh_buf_t;

void mesh_buf_init(mesh_buf_t *b, size_t cap);
void mesh_buf_free(mesh_buf_t *b);
void mesh_buf_reserve(mesh_buf_t *b, size_t more);
void mesh_buf_add(mesh_buf_t *b, const void *p, size_t n);
void mesh_buf_adds(mesh_buf_t *b, const char *s);
void mesh_buf_addc(mesh_buf_t *b, char c);
void mesh_buf_printf(mesh_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void mesh_buf_add_u64(mesh_buf_t *b, uint64_t v);
/* a JSON string literal, quotes included */
void mesh_buf_add_json_str(mesh_buf_t *b, const char *s);
/* ensure a terminating NUL after len (not counted) and return data */
char *mesh_buf_cstr(mesh_buf_t *b);

/*
 * A buffer that takes what a transfer writes, up to max bytes: for
 * libcurl's CURLOPT_WRITEFUNCTION (the same signature; common/ does not
 * include curl) with a mesh_buf_sink_t as CURLOPT_WRITEDATA. Past max it
 * takes nothing and returns 0, which ends the transfer.
 */
typedef struct {
    mesh_buf_t  *b;
    size_t       max;
} mesh_buf_sink_t;

size_t mesh_buf_sink(char *ptr, size_t size, size_t nmemb, void *sink);

#endif
