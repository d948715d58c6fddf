/*
 * mesh_units: durations and sizes as people write them in registryd's
 * configuration, its API, registryctl's options and Istio's policies.
 */

#ifndef MESH_UNITS_H
#define MESH_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* an integer followed by one of units (scaled by scales); -1 when invalid
 * or out of int64 range */
int64_t mesh_parse_scaled(const char *s, const char *const *units,
    const int64_t *scales, size_t nunits);

/* "500ms", "10s", "5m", "1h" -> milliseconds; -1 when invalid */
int64_t mesh_duration_parse(const char *s);
/* milliseconds -> the shortest exact form ("1500ms", "10s", "5m") */
void mesh_duration_format(int64_t ms, char *out, size_t size);

/* "1024", "64k", "1m" -> bytes; -1 when invalid */
int64_t mesh_size_parse(const char *s);

/*
 * Istio's forms ("1s", "0.5s", ".25s", "1m30s", "500ms") -> milliseconds;
 * -1 when invalid or above a year, -2 when not a whole millisecond
 */
int64_t mesh_duration_parse_decimal(const char *s);

#endif
