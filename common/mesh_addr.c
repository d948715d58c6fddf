/*
 * mesh_addr: IP literals and ADDR:PORT, the one reading of them in
 * registryd (listen, instances, health checks), registryctl and the
 * snapshot reader.
 */

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "mesh_addr.h"


int
mesh_addr_valid(const char *s)
{
    mesh_sockaddr_t  sa;

    return mesh_addr_sockaddr(s, 0, &sa) == 0;
}


int
mesh_addr_sockaddr(const char *ip, int port, mesh_sockaddr_t *out)
{
    memset(out, 0, sizeof(mesh_sockaddr_t));

    if (inet_pton(AF_INET, ip, &out->u.sin.sin_addr) == 1) {
        out->u.sin.sin_family = AF_INET;
        out->u.sin.sin_port = htons((uint16_t) port);
        out->len = sizeof(struct sockaddr_in);
        return 0;
    }

    if (inet_pton(AF_INET6, ip, &out->u.sin6.sin6_addr) == 1) {
        out->u.sin6.sin6_family = AF_INET6;
        out->u.sin6.sin6_port = htons((uint16_t) port);
        out->len = sizeof(struct sockaddr_in6);
        return 0;
    }

    return -1;
}


int
mesh_hostport_family(const char *s)
{
    return s[0] == '[' ? '6' : '4';
}


int
mesh_hostport_parse(const char *s, char *host, size_t size, int *port,
    mesh_sockaddr_t *out)
{
    int               family, p;
    char              lit[MESH_ADDR_LEN];
    size_t            n, i;
    const char       *h, *colon;
    mesh_sockaddr_t   sa;

    if (s[0] == '[') {
        h = s + 1;
        colon = strchr(h, ']');
        if (colon == NULL || colon[1] != ':') {
            return MESH_ADDR_FORM;
        }

        n = (size_t) (colon - h);
        colon++;
        family = AF_INET6;

    } else {
        h = s;
        colon = strchr(s, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL) {
            return MESH_ADDR_FORM;
        }

        n = (size_t) (colon - h);
        family = AF_INET;
    }

    if (n == 0 || n >= sizeof(lit) || n >= size) {
        return MESH_ADDR_FORM;
    }

    memcpy(lit, h, n);
    lit[n] = '\0';

    if (mesh_addr_sockaddr(lit, 0, &sa) != 0 || sa.u.sa.sa_family != family) {
        return MESH_ADDR_IP;
    }

    /* decimal digits only: no sign, no space, no overflow */
    p = 0;

    for (i = 1; colon[i] != '\0'; i++) {
        if (colon[i] < '0' || colon[i] > '9' || i > 5) {
            return MESH_ADDR_PORT;
        }

        p = p * 10 + (colon[i] - '0');
    }

    if (i == 1 || p < 1 || p > 65535) {
        return MESH_ADDR_PORT;
    }

    memcpy(host, lit, n + 1);
    *port = p;

    if (out != NULL) {
        if (family == AF_INET) {
            sa.u.sin.sin_port = htons((uint16_t) p);

        } else {
            sa.u.sin6.sin6_port = htons((uint16_t) p);
        }

        *out = sa;
    }

    return MESH_ADDR_OK;
}


void
mesh_addr_text(const struct sockaddr *sa, char *buf, size_t size)
{
    char                        host[MESH_ADDR_LEN];
    const struct sockaddr_in   *sin;
    const struct sockaddr_in6  *sin6;

    buf[0] = '\0';

    if (sa == NULL) {
        return;
    }

    if (sa->sa_family == AF_INET) {
        sin = (const struct sockaddr_in *) sa;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, size, "%s:%u", host, ntohs(sin->sin_port));

    } else if (sa->sa_family == AF_INET6) {
        sin6 = (const struct sockaddr_in6 *) sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, size, "[%s]:%u", host, ntohs(sin6->sin6_port));
    }
}


int
mesh_cidr_parse(const char *s, size_t len, mesh_cidr_t *out)
{
    int               bits, max;
    char              lit[MESH_ADDR_LEN];
    size_t            n, i;
    const char       *slash;
    mesh_sockaddr_t   sa;

    slash = memchr(s, '/', len);
    n = slash ? (size_t) (slash - s) : len;

    if (n == 0 || n >= sizeof(lit)) {
        return -1;
    }

    memcpy(lit, s, n);
    lit[n] = '\0';

    if (mesh_addr_sockaddr(lit, 0, &sa) != 0) {
        return -1;
    }

    memset(out, 0, sizeof(mesh_cidr_t));
    out->family = sa.u.sa.sa_family;

    if (out->family == AF_INET) {
        memcpy(out->addr, &sa.u.sin.sin_addr, 4);
        max = 32;

    } else {
        memcpy(out->addr, &sa.u.sin6.sin6_addr, 16);
        max = 128;
    }

    bits = max;

    if (slash) {
        if (slash + 1 == s + len || len - n - 1 > 3) {
            return -1;
        }

        bits = 0;

        for (i = n + 1; i < len; i++) {
            if (s[i] < '0' || s[i] > '9') {
                return -1;
            }

            bits = bits * 10 + (s[i] - '0');
        }

        if (bits > max) {
            return -1;
        }
    }

    out->bits = bits;

    return 0;
}


int
mesh_cidr_match(const mesh_cidr_t *net, const struct sockaddr *sa)
{
    int                   i, bits;
    unsigned char         mask;
    const unsigned char  *a;

    if (sa == NULL || sa->sa_family != net->family) {
        return 0;
    }

    a = (net->family == AF_INET)
        ? (const unsigned char *) &((const struct sockaddr_in *) sa)->sin_addr
        : (const unsigned char *)
              &((const struct sockaddr_in6 *) sa)->sin6_addr;

    bits = net->bits;

    for (i = 0; bits > 0; i++, bits -= 8) {
        mask = (unsigned char) (bits >= 8 ? 0xff : (0xff << (8 - bits)));

        if ((a[i] & mask) != (net->addr[i] & mask)) {
            return 0;
        }
    }

    return 1;
}


int
mesh_cidr_match_any(const mesh_cidr_t *nets, size_t n,
    const struct sockaddr *sa, const char *ip)
{
    size_t           i;
    mesh_sockaddr_t  a;

    if (sa == NULL) {
        if (ip == NULL || mesh_addr_sockaddr(ip, 0, &a) != 0) {
            return 0;
        }

        sa = &a.u.sa;
    }

    for (i = 0; i < n; i++) {
        if (mesh_cidr_match(&nets[i], sa)) {
            return 1;
        }
    }

    return 0;
}
