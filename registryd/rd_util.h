/*
 * rd_util: names, addresses and clocks (durations and sizes: common/
 * mesh_units).
 */

#ifndef RD_UTIL_H
#define RD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "mesh_name.h"
#include "mesh_units.h"

#define RD_NAME_MAX  MESH_NAME_MAX    /* names: common/mesh_name */

/* 0 when s is an IPv4 or IPv6 literal */
int rd_addr_valid(const char *s);

/* "127.0.0.1:7770", "[::1]:7770" -> host (no brackets) and port */
int rd_parse_hostport(const char *s, char *host, size_t size, int *port);

int64_t rd_now_ms(void);        /* monotonic */
int64_t rd_wall_ms(void);       /* realtime */

/* constant time comparison of two NUL-terminated strings */
int rd_secure_equal(const char *a, const char *b);

#endif
