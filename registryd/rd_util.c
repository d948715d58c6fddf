/*
 * rd_util: clocks and comparison (names, addresses, durations and sizes:
 * common/mesh_name, mesh_addr, mesh_units).
 */

#include <string.h>
#include <time.h>

#include "rd_util.h"


int64_t
rd_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


int64_t
rd_wall_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


int
rd_secure_equal(const char *a, const char *b)
{
    size_t         i, la, lb;
    unsigned char  diff;

    la = strlen(a);
    lb = strlen(b);
    diff = (unsigned char) (la != lb);

    for (i = 0; i < la; i++) {
        diff |= (unsigned char) (a[i] ^ b[i % (lb ? lb : 1)]);
    }

    return diff == 0 && lb != 0;
}
