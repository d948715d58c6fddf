/*
 * fuzz_snapshot: the snapshot reader the module runs on every registry
 * answer (common/mesh_snapshot), over any bytes.
 */

#include <stddef.h>
#include <stdint.h>

#include "mesh_snapshot.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char              err[256];
    mesh_snapshot_t  *s;

    s = mesh_snapshot_parse((const char *) data, size, err, sizeof(err));
    mesh_snapshot_free(s);

    return 0;
}
