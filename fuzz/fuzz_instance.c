/*
 * fuzz_instance: registryd's reading of an instance, as a PUT body and as
 * the store keeps it (rd_instance_from_json over any JSON jansson takes).
 */

#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "rd_registry.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             stored;
    char            err[RD_ERR_LEN];
    json_t         *obj;
    const char     *field;
    rd_instance_t  *in;

    obj = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES,
                     NULL);
    if (obj == NULL) {
        return 0;
    }

    for (stored = 0; stored < 2; stored++) {
        in = rd_instance_create();
        field = NULL;
        (void) rd_instance_from_json(obj, stored, in, err, &field);
        rd_instance_free(in);
    }

    json_decref(obj);

    return 0;
}
