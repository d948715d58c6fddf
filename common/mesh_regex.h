/*
 * mesh_regex: the one definition of how a policy's regex is read, for
 * registryd (which refuses a regex here) and the module (which matches
 * with it), so that both agree on every pattern.
 *
 * PCRE2, the pattern as written, matched against the whole value (anchored
 * at both ends by compile options, as Istio's RE2 full match does: no
 * "^(?:...)$" wrapping that "\Qabc", "(*UTF)x" or "(?x)a#c" would change),
 * on bytes (no UTF-8 check of the subject).
 */

#ifndef MESH_REGEX_H
#define MESH_REGEX_H

#include <stddef.h>

typedef struct mesh_regex_s  mesh_regex_t;

/* NULL with a one-line reason (offset and PCRE2's message) in err */
mesh_regex_t *mesh_regex_compile(const char *pattern, size_t len, char *err,
    size_t errlen);

/* 1: the whole of s matches; 0: it does not; -1: matching failed */
int mesh_regex_match(mesh_regex_t *re, const char *s, size_t len);

void mesh_regex_free(mesh_regex_t *re);

#endif
