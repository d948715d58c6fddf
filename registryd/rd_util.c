/*
 * rd_util: names, durations, sizes, addresses and clocks.
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
rd_name_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > RD_NAME_MAX || !isalnum((unsigned char) s[0])) {
        return 0;
    }

    for (i = 1; i < len; i++) {
        unsigned char c = (unsigned char) s[i];

        if (!isalnum(c) && c != '.' && c != '_' && c != '-') {
            return 0;
        }
    }

    return 1;
}


static int64_t
rd_parse_scaled(const char *s, const char *const *units,
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


int64_t
rd_parse_duration(const char *s)
{
    static const char *const  units[] = { "ms", "s", "m", "h" };
    static const int64_t      scales[] = { 1, 1000, 60000, 3600000 };

    return rd_parse_scaled(s, units, scales, 4);
}


void
rd_format_duration(int64_t ms, char *out, size_t size)
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
rd_parse_size(const char *s)
{
    static const char *const  units[] = { "", "k", "K", "m", "M" };
    static const int64_t      scales[] = { 1, 1024, 1024, 1048576, 1048576 };

    return rd_parse_scaled(s, units, scales, 5);
}


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
