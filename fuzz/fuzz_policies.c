/*
 * fuzz_policies: the module's policy reader (common/mesh_policy: the
 * normalized JSON of a snapshot's "policies"), then what the zone keeps of
 * it: packed, unpacked, packed again to the same bytes.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_policy.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char              err[256], *block, *again;
    size_t            n;
    mesh_policies_t  *p, *q;

    p = mesh_policies_parse((const char *) data, size, err, sizeof(err));
    if (p == NULL) {
        return 0;
    }

    n = mesh_policies_pack(p, NULL, 0);
    block = aligned_alloc(8, (n + 7) & ~(size_t) 7);

    if (mesh_policies_pack(p, block, n) != n) {
        abort();
    }

    mesh_policies_free(p);

    q = mesh_policies_unpack(block, n, err, sizeof(err));
    if (q == NULL) {
        abort();                /* what was packed must unpack */
    }

    again = aligned_alloc(8, (n + 7) & ~(size_t) 7);

    if (mesh_policies_pack(q, NULL, 0) != n
        || mesh_policies_pack(q, again, n) != n)
    {
        abort();
    }

    mesh_policies_free(q);
    free(again);
    free(block);

    return 0;
}
