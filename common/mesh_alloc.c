/*
 * mesh_alloc: allocation for registryd and registryctl, fatal on
 * failure (why: mesh_alloc.h).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_alloc.h"


void
mesh_oom(size_t size)
{
    fprintf(stderr, "out of memory (%zu bytes)\n", size);
    abort();
}


void *
mesh_xmalloc(size_t size)
{
    void  *p;

    p = malloc(size ? size : 1);
    if (p == NULL) {
        mesh_oom(size);
    }

    return p;
}


void *
mesh_xcalloc(size_t n, size_t size)
{
    void  *p;

    p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        mesh_oom(n * size);
    }

    return p;
}


void *
mesh_xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (p == NULL) {
        mesh_oom(size);
    }

    return p;
}


char *
mesh_xstrdup(const char *s)
{
    return mesh_xstrndup(s, strlen(s));
}


char *
mesh_xstrndup(const char *s, size_t n)
{
    char  *p;

    n = strnlen(s, n);
    p = mesh_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';

    return p;
}
