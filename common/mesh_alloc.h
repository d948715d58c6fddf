/*
 * mesh_alloc: how registryd and registryctl allocate: the mesh_x*
 * functions never return NULL; when memory runs out they say so on
 * stderr and abort().
 *
 * Why one fatal convention and not a 500 here and an abort there: on
 * Linux a failed malloc is rare (overcommit: the OOM killer comes first),
 * and a path that unwinds a half-built answer, a half-applied snapshot or
 * a half-read policy is code that never runs until the day it matters.
 * What registryd acknowledged is already committed to its store when it
 * answers, so a crash loses nothing acknowledged, and a supervisor
 * restarts it (the Debian unit: Restart=on-failure). Sizes that come from
 * outside (bodies, labels, documents) are bounded before they are
 * allocated, so a client cannot make registryd run out on purpose.
 *
 * The module does not link these: it allocates from nginx pools and the
 * shared zone and answers a failure with an error, as nginx does.
 */

#ifndef MESH_ALLOC_H
#define MESH_ALLOC_H

#include <stddef.h>

void *mesh_xmalloc(size_t size);
void *mesh_xcalloc(size_t n, size_t size);
void *mesh_xrealloc(void *p, size_t size);
char *mesh_xstrdup(const char *s);
char *mesh_xstrndup(const char *s, size_t n);

/* report that size bytes could not be had and abort() */
void mesh_oom(size_t size) __attribute__((noreturn));

#endif
