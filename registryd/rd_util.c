/*
 * rd_util: names, addresses and clocks (durations and sizes: common/
 * mesh_units).
 */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rd_util.h"


int
rd_addr_valid(const char *s)
{
    unsigned char  buf[16];

    if (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1) {
        return 0;
    }

    return -1;
}


int
rd_parse_hostport(const char *s, char *host, size_t size, int *port)
{
    char        *end;
    long         p;
    size_t       n;
    const char  *colon, *h;

    if (s[0] == '[') {
        h = s + 1;
        colon = strstr(s, "]:");
        if (colon == NULL) {
            return -1;
        }
        n = (size_t) (colon - h);
        colon++;

    } else {
        h = s;
        colon = strrchr(s, ':');
        if (colon == NULL) {
            return -1;
        }
        n = (size_t) (colon - h);
    }

    if (n == 0 || n >= size) {
        return -1;
    }

    memcpy(host, h, n);
    host[n] = '\0';

    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno || *end != '\0' || colon[1] == '\0' || p < 1 || p > 65535) {
        return -1;
    }

    *port = (int) p;
    return 0;
}


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
