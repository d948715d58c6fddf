/*
 * mesh_name: the one rule for service names, instance ids and policy
 * names, in registryd, registryctl and the module.
 */

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
