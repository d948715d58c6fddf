/*
 * fuzz_policy_yaml: registryd's policy reader (Istio DestinationRule and
 * VirtualService YAML, rd_policy_parse); a policy it takes is stored and
 * read back from the store's form.
 */

#include <stdint.h>
#include <stdlib.h>

#include "mesh_buf.h"
#include "rd_policy.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char              err[RD_ERR_LEN];
    mesh_buf_t        b;
    rd_policy_t      *p, *q;
    rd_policy_err_t   e;

    p = rd_policy_parse("fuzz", (const char *) data, size, &e);
    if (p == NULL) {
        mesh_buf_init(&b, 256);
        rd_policy_err_to_json(&b, &e);
        mesh_buf_free(&b);
        return 0;
    }

    mesh_buf_init(&b, 1024);
    rd_policy_to_stored(&b, p);

    q = rd_policy_from_stored("fuzz", b.data, b.len, err);
    if (q == NULL) {
        abort();                /* what was taken must read back */
    }

    rd_policy_free(q);
    rd_policy_free(p);
    mesh_buf_free(&b);

    return 0;
}
