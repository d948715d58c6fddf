/*
 * mesh_name: the one rule for service names, instance ids and policy
 * names, in registryd, registryctl and the module.
 */

#include <string.h>

#include "mesh_name.h"


static int
mesh_name_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9');
}


int
mesh_name_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > MESH_NAME_MAX
        || !mesh_name_alnum((unsigned char) s[0]))
    {
        return 0;
    }

    for (i = 1; i < len; i++) {
        if (!mesh_name_alnum((unsigned char) s[i])
            && s[i] != '.' && s[i] != '_' && s[i] != '-')
        {
            return 0;
        }
    }

    return 1;
}


int
mesh_host_wildcard(const char *s)
{
    return s[0] == '*';
}


int
mesh_host_pattern_valid(const char *s, size_t len)
{
    if (len == 1 && s[0] == '*') {
        return 1;
    }

    if (len > 2 && s[0] == '*' && s[1] == '.') {
        return mesh_name_valid(s + 2, len - 2);
    }

    return mesh_name_valid(s, len);
}


static int
mesh_host_equal(const char *a, const char *b, size_t len, int nocase)
{
    size_t         i;
    unsigned char  ca, cb;

    if (!nocase) {
        return memcmp(a, b, len) == 0;
    }

    for (i = 0; i < len; i++) {
        ca = (unsigned char) a[i];
        cb = (unsigned char) b[i];

        if (ca >= 'A' && ca <= 'Z') {
            ca = (unsigned char) (ca | 0x20);
        }

        if (cb >= 'A' && cb <= 'Z') {
            cb = (unsigned char) (cb | 0x20);
        }

        if (ca != cb) {
            return 0;
        }
    }

    return 1;
}


int
mesh_host_match(const char *pattern, const char *host, size_t len,
    int nocase)
{
    size_t  plen;

    plen = strlen(pattern);

    if (pattern[0] != '*') {
        return (plen == len && mesh_host_equal(pattern, host, len, nocase))
               ? MESH_HOST_EXACT : -1;
    }

    if (plen == 1) {
        return 0;
    }

    /* "*.sfx": ".sfx" ends the name, with at least one byte before */

    plen--;

    if (len <= plen
        || !mesh_host_equal(pattern + 1, host + len - plen, plen, nocase))
    {
        return -1;
    }

    return (int) plen;
}
