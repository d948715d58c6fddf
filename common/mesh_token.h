/*
 * mesh_token: the one reading of a bearer token file, in registryd
 * (--token-file) and registryctl (--token-file).
 */

#ifndef MESH_TOKEN_H
#define MESH_TOKEN_H

#include <stddef.h>

#define MESH_TOKEN_MAX  4096        /* bytes in a token file, NUL aside */

/*
 * The token in the file at path: whitespace around it is dropped, spaces
 * inside it are kept; the file must hold one non-empty line of at most
 * MESH_TOKEN_MAX bytes without control characters. tok gets the token
 * (size at least MESH_TOKEN_MAX + 1); returns 0, or -1 with a one-line
 * reason naming the file in err.
 */
int mesh_token_read(const char *path, char *tok, size_t size, char *err,
    size_t errlen);

#endif
