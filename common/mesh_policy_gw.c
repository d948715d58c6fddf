/*
 * mesh_policy_gw: a Gateway read into the model (its identity "NS/NAME",
 * selector, servers by port, protocol and hosts).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_json.h"
#include "mesh_policy.h"
#include "mesh_policy_int.h"


enum {
    MESH_GW_POLICY = 0,
    MESH_GW_KIND,
    MESH_GW_NAME,
    MESH_GW_GATEWAY,
    MESH_GW_SELECTOR,
    MESH_GW_SERVERS
};

static const char *const  mesh_gw_keys[] = {
    "policy", "kind", "name", "gateway", "selector", "servers", NULL
};

enum {
    MESH_SV_PORT = 0,
    MESH_SV_PROTOCOL,
    MESH_SV_HOSTS,
    MESH_SV_REDIRECT,
    MESH_SV_STREAM
};

/* a TCP or TLS server has "stream" and no "protocol": a module older
 * than stream gateways takes it as an HTTP server that routes nothing */
static const char *const  mesh_sv_keys[] = {
    "port", "protocol", "hosts", "httpsRedirect", "stream", NULL
};


static int mesh_policy_server(mesh_json_t *j, void *elt);


int
mesh_policy_gateway(mesh_json_t *j, mesh_gateway_t *gw)
{
    int                   rc, k;
    size_t                n, klen;
    unsigned              seen;
    const unsigned char  *key, *start;

    memset(gw, 0, sizeof(mesh_gateway_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a Gateway") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_gw_keys, key, klen, &seen);

        switch (k) {

        case MESH_GW_POLICY:
            gw->policy = mesh_policy_name(j, "\"policy\"");
            rc = gw->policy ? 0 : -1;
            break;

        case MESH_GW_NAME:
            gw->name = mesh_policy_name(j, "\"name\"");
            rc = gw->name ? 0 : -1;
            break;

        case MESH_GW_GATEWAY:
            gw->gateway = mesh_policy_name(j, "\"gateway\"");
            rc = gw->gateway ? 0 : -1;
            break;

        case MESH_GW_SELECTOR:
            rc = mesh_policy_labels(j, "\"selector\"", &gw->selector,
                                    &gw->nselector);
            break;

        case MESH_GW_SERVERS:
            gw->servers = mesh_policy_list(j, "\"servers\"",
                                           sizeof(mesh_gateway_server_t),
                                           mesh_policy_server,
                                           &gw->nservers);
            rc = j->failed ? -1 : 0;
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 2);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_GW_POLICY)
        || !mesh_policy_has(seen, MESH_GW_NAME)
        || !mesh_policy_has(seen, MESH_GW_GATEWAY)
        || !mesh_policy_has(seen, MESH_GW_SERVERS))
    {
        mesh_json_error(j, start, "a Gateway without \"%s\"",
                        !mesh_policy_has(seen, MESH_GW_POLICY) ? "policy"
                        : !mesh_policy_has(seen, MESH_GW_NAME) ? "name"
                        : !mesh_policy_has(seen, MESH_GW_GATEWAY) ? "gateway"
                        : "servers");
        return -1;
    }

    return 0;
}


static int
mesh_policy_server(mesh_json_t *j, void *elt)
{
    int                   rc, k;
    char                 *proto;
    size_t                n, klen;
    unsigned              seen;
    mesh_gateway_server_t *sv = elt;
    const unsigned char  *key, *start, *at;

    memset(sv, 0, sizeof(mesh_gateway_server_t));

    start = j->pos;

    if (mesh_policy_open(j, '{', "a \"servers\" item") != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        k = mesh_policy_key(j, mesh_sv_keys, key, klen, &seen);

        switch (k) {

        case MESH_SV_PORT:
            rc = mesh_policy_int(j, "\"port\"", 1, 65535, &sv->port);
            break;

        case MESH_SV_PROTOCOL:
            at = j->pos;
            proto = mesh_policy_name(j, "\"protocol\"");
            if (proto == NULL) {
                return -1;
            }

            if (strcmp(proto, "HTTPS") == 0) {
                sv->https = 1;

            } else if (strcmp(proto, "HTTP") != 0
                       && strcmp(proto, "HTTP2") != 0)
            {
                mesh_json_error(j, at, "unknown \"protocol\" \"%.16s\"",
                                proto);
                return -1;
            }

            rc = 0;
            break;

        case MESH_SV_HOSTS:
            rc = mesh_policy_strings(j, "\"hosts\"", &sv->hosts,
                                     &sv->nhosts);
            break;

        case MESH_SV_STREAM:
            at = j->pos;
            proto = mesh_policy_name(j, "\"stream\"");
            if (proto == NULL) {
                return -1;
            }

            if (strcmp(proto, "TCP") == 0) {
                sv->stream = MESH_GW_TCP;

            } else if (strcmp(proto, "TLS") == 0) {
                sv->stream = MESH_GW_TLS;

            } else {
                mesh_json_error(j, at, "unknown \"stream\" \"%.16s\"",
                                proto);
                return -1;
            }

            rc = 0;
            break;

        case MESH_SV_REDIRECT:
            rc = mesh_policy_bool(j, "httpsRedirect", &sv->https_redirect);
            break;

        case -2:
            return -1;

        default:
            rc = mesh_json_skip(j, 3);
        }

        if (rc != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!mesh_policy_has(seen, MESH_SV_PORT)
        || !mesh_policy_has(seen, MESH_SV_HOSTS))
    {
        mesh_json_error(j, start, "a Gateway server without \"%s\"",
                        !mesh_policy_has(seen, MESH_SV_PORT) ? "port"
                                                              : "hosts");
        return -1;
    }

    return 0;
}
