/*
 * fuzz_accept: the Accept header the status location reads from any
 * client (common/mesh_accept): a quality between 0 and 1000 for every
 * type, never a read past the value (the input is copied to a buffer of
 * its own size, so ASan sees one).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_accept.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int          q, i;
    char        *v;
    static const char  *types[] = {
        "text/html", "application/json", "text/plain", "a/b"
    };

    v = malloc(size ? size : 1);
    memcpy(v, data, size);

    for (i = 0; i < 4; i++) {
        q = mesh_accept_quality(v, size, types[i]);

        if (q < 0 || q > 1000) {
            abort();
        }
    }

    /* an Accept of any type gives text/html its full quality */
    if (size == 3 && memcmp(v, "*/*", 3) == 0
        && mesh_accept_quality(v, size, "text/html") != 1000)
    {
        abort();
    }

    free(v);

    return 0;
}
