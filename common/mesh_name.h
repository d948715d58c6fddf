/*
 * mesh_name: the one rule for service names, instance ids and policy
 * names, in registryd, registryctl and the module.
 */

#ifndef MESH_NAME_H
#define MESH_NAME_H

#include <stddef.h>

#define MESH_NAME_MAX   128
#define MESH_NAME_RULE  "[A-Za-z0-9][A-Za-z0-9._-]{0,127}"

/* 1 when the len bytes at s follow MESH_NAME_RULE (ASCII, any locale) */
int mesh_name_valid(const char *s, size_t len);

/*
 * Hosts as Istio writes them in a VirtualService, a DestinationRule or a
 * Gateway server: a name, "*.SUFFIX" (a name under SUFFIX, at any depth,
 * not SUFFIX itself) or "*" (every name). mesh_host_match() compares a
 * pattern with a name (len bytes; ASCII letters in any case when nocase)
 * and says how specific the match is, as Envoy ranks virtual hosts: an
 * exact name (MESH_HOST_EXACT) beats the longest suffix (its length + 1),
 * which beats "*" (0); -1: no match.
 */
#define MESH_HOST_EXACT  0x10000

int mesh_host_pattern_valid(const char *s, size_t len);
int mesh_host_wildcard(const char *s);
int mesh_host_match(const char *pattern, const char *host, size_t len,
    int nocase);

#endif
