/*
 * mesh_units: durations and sizes as people write them in registryd's
 * configuration, its API, registryctl's options and Istio's policies.
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_units.h"


int64_t
mesh_parse_scaled(const char *s, const char *const *units,
    const int64_t *scales, size_t nunits)
{
    char        *end;
    size_t       i;
    long long    v;

    if (s == NULL || !isdigit((unsigned char) s[0])) {
        return -1;
    }

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || v < 0) {
        return -1;
    }

    for (i = 0; i < nunits; i++) {
        if (strcmp(end, units[i]) == 0) {
            if (v > INT64_MAX / scales[i]) {
                return -1;
            }
            return (int64_t) v * scales[i];
        }
    }

    return -1;
}


/* an integer and one of the units: "500ms", "10s", "5m", "1h" */
int64_t
mesh_duration_parse(const char *s)
{
    static const char *const  units[] = { "ms", "s", "m", "h" };
    static const int64_t      scales[] = { 1, 1000, 60000, 3600000 };

    return mesh_parse_scaled(s, units, scales, 4);
}


void
mesh_duration_format(int64_t ms, char *out, size_t size)
{
    if (ms % 3600000 == 0 && ms) {
        snprintf(out, size, "%lldh", (long long) (ms / 3600000));

    } else if (ms % 60000 == 0 && ms) {
        snprintf(out, size, "%lldm", (long long) (ms / 60000));

    } else if (ms % 1000 == 0) {
        snprintf(out, size, "%llds", (long long) (ms / 1000));

    } else {
        snprintf(out, size, "%lldms", (long long) ms);
    }
}


int64_t
mesh_size_parse(const char *s)
{
    static const char *const  units[] = { "", "k", "K", "m", "M" };
    static const int64_t      scales[] = { 1, 1024, 1024, 1048576, 1048576 };

    return mesh_parse_scaled(s, units, scales, 5);
}


/*
 * Istio's durations (protobuf's, as Go writes them): decimal fractions and
 * several units in a row, "1.5s", ".25s", "1m30s"; in whole milliseconds.
 */
int64_t
mesh_duration_parse_decimal(const char *s)
{
    int                  nd, any = 0;
    int64_t              total = 0, unit;
    unsigned long long   ip, frac, scale;

    if (s == NULL || *s == '\0') {
        return -1;
    }

    /* in microseconds, then whole milliseconds required */
    while (*s) {
        ip = 0;
        frac = 0;
        scale = 1;
        nd = 0;

        if (!isdigit((unsigned char) *s) && *s != '.') {
            return -1;
        }

        while (isdigit((unsigned char) *s)) {
            if (ip > 100000000ULL) {
                return -1;
            }
            ip = ip * 10 + (unsigned long long) (*s++ - '0');
            nd++;
        }

        if (*s == '.') {
            s++;
            while (isdigit((unsigned char) *s)) {
                if (scale < 1000000000ULL) {
                    frac = frac * 10 + (unsigned long long) (*s - '0');
                    scale *= 10;
                } else if (*s != '0') {
                    return -2;
                }
                s++;
                nd++;
            }
        }

        if (nd == 0) {
            return -1;
        }

        if (s[0] == 'm' && s[1] == 's') {
            unit = 1000;
            s += 2;
        } else if (s[0] == 'h') {
            unit = 3600000000LL;
            s++;
        } else if (s[0] == 'm') {
            unit = 60000000LL;
            s++;
        } else if (s[0] == 's') {
            unit = 1000000LL;
            s++;
        } else {
            return -1;
        }

        if ((frac * (unsigned long long) unit) % scale != 0) {
            return -2;
        }

        total += (int64_t) ip * unit
                 + (int64_t) (frac * (unsigned long long) unit / scale);
        if (total > 366LL * 86400 * 1000000) {
            return -1;
        }
        any = 1;
    }

    if (!any) {
        return -1;
    }

    if (total % 1000 != 0) {
        return -2;
    }

    return total / 1000;
}
