/*
 * rd_util: clocks and comparison (names, addresses, durations and sizes:
 * common/mesh_name, mesh_addr, mesh_units).
 */

#ifndef RD_UTIL_H
#define RD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "mesh_addr.h"
#include "mesh_name.h"
#include "mesh_units.h"

#define RD_NAME_MAX  MESH_NAME_MAX    /* names: common/mesh_name */

int64_t rd_now_ms(void);        /* monotonic */
int64_t rd_wall_ms(void);       /* realtime */

/* constant time comparison of two NUL-terminated strings */
int rd_secure_equal(const char *a, const char *b);

#endif
