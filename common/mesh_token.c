/*
 * mesh_token: the one reading of a bearer token file, in registryd and
 * registryctl.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mesh_token.h"


static int
mesh_token_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}


int
mesh_token_read(const char *path, char *tok, size_t size, char *err,
    size_t errlen)
{
    FILE    *f;
    char     buf[MESH_TOKEN_MAX + 1];
    size_t   n, s, i;

    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "token file: cannot open %s: %s", path,
                 strerror(errno));
        return -1;
    }

    n = fread(buf, 1, sizeof(buf), f);

    if (ferror(f)) {
        snprintf(err, errlen, "token file: cannot read %s: %s", path,
                 strerror(errno));
        fclose(f);
        return -1;
    }

    fclose(f);

    if (n > MESH_TOKEN_MAX) {
        snprintf(err, errlen, "token file %s holds more than %d bytes", path,
                 MESH_TOKEN_MAX);
        return -1;
    }

    while (n > 0 && mesh_token_space((unsigned char) buf[n - 1])) {
        n--;
    }

    for (s = 0; s < n && mesh_token_space((unsigned char) buf[s]); s++) {
        /* void */
    }

    if (s == n) {
        snprintf(err, errlen, "token file %s is empty", path);
        return -1;
    }

    for (i = s; i < n; i++) {
        if (buf[i] == '\r' || buf[i] == '\n') {
            snprintf(err, errlen, "token file %s holds more than one line",
                     path);
            return -1;
        }

        if (((unsigned char) buf[i] < 0x20 && buf[i] != '\t')
            || (unsigned char) buf[i] == 0x7f)
        {
            snprintf(err, errlen, "token file %s holds a control character",
                     path);
            return -1;
        }
    }

    if (n - s >= size) {
        snprintf(err, errlen, "token file %s: the token is too long", path);
        return -1;
    }

    memcpy(tok, buf + s, n - s);
    tok[n - s] = '\0';

    return 0;
}
