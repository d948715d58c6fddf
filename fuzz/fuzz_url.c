/*
 * fuzz_url: what registryd does with a request's path: the percent
 * decoding libmicrohttpd calls back (rd_api_unescape) and the routing
 * (rd_api_route), with the names it takes checked against the rule.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_name.h"
#include "rd_api_int.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int          allowed;
    char        *url;
    size_t       n;
    rd_req_t    *rq;
    const char  *bad;

    url = malloc(size + 1);
    memcpy(url, data, size);
    url[size] = '\0';

    n = rd_api_unescape(NULL, NULL, url);

    if (n != strlen(url) || n > size) {
        abort();
    }

    rq = calloc(1, sizeof(rd_req_t));
    allowed = rd_api_route(rq, url, &bad);

    /* a name a route took follows the rule */
    if (allowed > 0
        && ((rq->svc[0] && !mesh_name_valid(rq->svc, strlen(rq->svc)))
            || (rq->id[0] && !mesh_name_valid(rq->id, strlen(rq->id)))))
    {
        abort();
    }

    free(rq);
    free(url);

    return 0;
}
