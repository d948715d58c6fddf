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

#endif
