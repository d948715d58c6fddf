/*
 * rd_policy_gw: a Gateway (Istio's ingress: servers by port, protocol
 * and hosts), validated and normalized. nginx is the gateway: the http
 * location that names a Gateway (mesh_gateway) routes its requests by
 * the VirtualServices bound to it, the stream server its TCP and TLS
 * connections; docs/policies.md, "Gateway".
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "mesh_name.h"
#include "rd_policy_int.h"


/* what a server's port.protocol makes of it */
enum {
    RD_GW_HTTP = 0,             /* HTTP, HTTP2: an http listener */
    RD_GW_HTTPS,
    RD_GW_TCP,                  /* a stream listener: the tcp routes */
    RD_GW_TLS                   /* a stream listener: the tls routes, by
                                 * SNI, the TLS passed through */
};


/* tls of a server: HTTP takes httpsRedirect alone; HTTPS mode SIMPLE,
 * nginx terminating TLS with its own certificates */
static int
rd_parse_gw_tls(rd_pctx_t *c, yaml_node_t *n, int https, json_t *o)
{
    int                b;
    size_t             old;
    const char        *k, *s, *mode = NULL;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "httpsRedirect") == 0) {
            if (rd_get_bool(c, v, &b) != 0) {
                return -1;
            }

            if (b && https) {
                return rd_perr(c, v, "httpsRedirect is for an HTTP server: "
                               "this one is HTTPS already");
            }

            if (b) {
                rd_jset(o, "httpsRedirect", json_true());
            }

        } else if (strcmp(k, "mode") == 0) {
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

            if (strcmp(s, "SIMPLE") != 0) {
                return rd_perr(c, v, "\"%.32s\": ngx_mesh supports SIMPLE "
                               "(nginx terminates TLS); PASSTHROUGH is a TLS "
                               "server's (protocol TLS); MUTUAL, "
                               "ISTIO_MUTUAL, AUTO_PASSTHROUGH and "
                               "OPTIONAL_MUTUAL are not supported", s);
            }

            mode = s;

        } else if (strcmp(k, "credentialName") == 0
                   || strcmp(k, "serverCertificate") == 0
                   || strcmp(k, "privateKey") == 0)
        {
            /* accepted so that Istio's files apply: the certificate is
             * nginx's own (listen ... ssl, ssl_certificate) */
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

        } else {
            return rd_unknown(c, kn, k, "httpsRedirect,mode,credentialName,"
                              "serverCertificate,privateKey",
                              "caCertificates,credentialNames,"
                              "subjectAltNames,verifyCertificateSpki,"
                              "verifyCertificateHash,minProtocolVersion,"
                              "maxProtocolVersion,cipherSuites,caCrl,"
                              "tlsCertificates");
        }

        rd_path_pop(c, old);
    }

    if (https && mode == NULL) {
        return rd_missing(c, n, "mode");
    }

    if (!https && mode) {
        rd_path_key(c, "mode");
        return rd_perr(c, n, "an HTTP server has no TLS mode (HTTPS has)");
    }

    return 0;
}


/*
 * tls of a TLS server: mode PASSTHROUGH alone; the connection's TLS goes
 * to the instance untouched, routed by its SNI: nginx holds no
 * certificate for it
 */
static int
rd_parse_gw_passthrough(rd_pctx_t *c, yaml_node_t *n)
{
    size_t             old;
    const char        *k, *s, *mode = NULL;
    yaml_node_t       *kn, *v;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "mode") != 0) {
            return rd_unknown(c, kn, k, "mode (a TLS server passes TLS "
                              "through: nginx holds no certificate there)",
                              "httpsRedirect,credentialName,"
                              "serverCertificate,privateKey,caCertificates,"
                              "credentialNames,subjectAltNames,"
                              "verifyCertificateSpki,verifyCertificateHash,"
                              "minProtocolVersion,maxProtocolVersion,"
                              "cipherSuites,caCrl,tlsCertificates");
        }

        if (rd_get_str(c, v, &s) != 0) {
            return -1;
        }

        if (strcmp(s, "PASSTHROUGH") != 0) {
            return rd_perr(c, v, "\"%.32s\": a TLS server passes TLS through "
                           "by SNI: mode PASSTHROUGH only (nginx terminates "
                           "TLS at HTTPS servers)", s);
        }

        mode = s;
        rd_path_pop(c, old);
    }

    if (mode == NULL) {
        return rd_missing(c, n, "mode");
    }

    return 0;
}


static int
rd_parse_gw_port(rd_pctx_t *c, yaml_node_t *n, json_t *o, int *kind)
{
    size_t             old;
    long long          number = 0;
    const char        *k, *s, *proto = NULL;
    yaml_node_t       *kn, *v, *proto_node = NULL;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "number") == 0) {
            if (rd_get_int(c, v, 1, 65535, &number) != 0) {
                return -1;
            }

        } else if (strcmp(k, "name") == 0) {
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

        } else if (strcmp(k, "protocol") == 0) {
            if (rd_get_str(c, v, &proto) != 0) {
                return -1;
            }

            proto_node = v;

        } else {
            return rd_unknown(c, kn, k, "number,name,protocol", "targetPort");
        }

        rd_path_pop(c, old);
    }

    if (number == 0) {
        return rd_missing(c, n, "number");
    }

    if (proto == NULL) {
        return rd_missing(c, n, "protocol");
    }

    old = rd_path_key(c, "protocol");

    /* Istio takes the protocol in any case */

    if (strcasecmp(proto, "HTTP") == 0) {
        proto = "HTTP";
        *kind = RD_GW_HTTP;

    } else if (strcasecmp(proto, "HTTPS") == 0) {
        proto = "HTTPS";
        *kind = RD_GW_HTTPS;

    } else if (strcasecmp(proto, "HTTP2") == 0) {
        proto = "HTTP2";
        *kind = RD_GW_HTTP;

    } else if (strcasecmp(proto, "TCP") == 0) {
        proto = NULL;
        *kind = RD_GW_TCP;

    } else if (strcasecmp(proto, "TLS") == 0) {
        proto = NULL;
        *kind = RD_GW_TLS;

    } else if (strcasecmp(proto, "MONGO") == 0
               || strcasecmp(proto, "REDIS") == 0
               || strcasecmp(proto, "MYSQL") == 0)
    {
        return rd_perr(c, proto_node, "\"%.16s\": nginx does not read MONGO, "
                       "REDIS or MYSQL: give TCP (the connections routed by "
                       "the tcp routes)", proto);

    } else {
        return rd_perr(c, proto_node, "\"%.16s\" is not one of HTTP, HTTPS, "
                       "HTTP2, TCP, TLS (GRPC is not supported)", proto);
    }

    rd_path_pop(c, old);

    rd_jset(o, "port", json_integer(number));

    /*
     * a TCP or TLS server has no "protocol": a module older than stream
     * gateways refuses a protocol it does not know, and the whole
     * snapshot with it; it takes a server without one as HTTP, which no
     * http route of a stream VirtualService reaches
     */
    if (proto) {
        rd_jset(o, "protocol", json_string(proto));
    }

    return 0;
}


/*
 * Servers on one port in one Gateway: HTTP ones (any of HTTP, HTTPS,
 * HTTP2: the location tells them apart by their TLS and Host) or TLS
 * ones (by SNI), never both, and one TCP server alone: a TCP connection
 * says nothing that would choose among several
 */
static int
rd_gw_port_conflict(rd_pctx_t *c, yaml_node_t *n, json_t *servers,
    json_t *o, int kind)
{
    size_t       i;
    json_t      *so;
    const char  *other, *st;
    json_int_t   port;

    port = json_integer_value(json_object_get(o, "port"));

    for (i = 0; i < json_array_size(servers); i++) {
        so = json_array_get(servers, i);

        if (so == o) {
            break;
        }

        if (json_integer_value(json_object_get(so, "port")) != port) {
            continue;
        }

        st = json_string_value(json_object_get(so, "stream"));

        if (st == NULL) {
            if (kind == RD_GW_HTTP || kind == RD_GW_HTTPS) {
                continue;
            }

            other = "an HTTP";

        } else if (strcmp(st, "TLS") == 0) {
            if (kind == RD_GW_TLS) {
                continue;
            }

            other = "a TLS";

        } else {
            other = "a TCP";
        }

        return rd_perr(c, n, "port %lld already has %s server in this "
                       "Gateway (servers[%zu]): one port takes HTTP servers, "
                       "TLS servers or one TCP server", (long long) port,
                       other, i);
    }

    return 0;
}


/*
 * A server's host: [NAMESPACE/]HOST, the namespace "*" (any: dropped),
 * "." (the Gateway's) or a name: the VirtualServices of that namespace
 * only; HOST a name, "*.SUFFIX" or "*", lowercase
 */
static int
rd_parse_gw_host(rd_pctx_t *c, yaml_node_t *n, json_t *hosts)
{
    char         h[RD_GATEWAY_LEN + 8], ns[RD_NAME_MAX + 1];
    size_t       i, len;
    const char  *s, *slash, *host;

    if (rd_get_str(c, n, &s) != 0) {
        return -1;
    }

    slash = strchr(s, '/');
    host = slash ? slash + 1 : s;
    ns[0] = '\0';

    if (slash) {
        len = (size_t) (slash - s);

        if (len == 1 && s[0] == '.') {
            snprintf(ns, sizeof(ns), "%s", c->doc_ns);

        } else if (len == 1 && s[0] == '*') {
            /* any namespace */

        } else if (mesh_name_valid(s, len) && memchr(s, '.', len) == NULL) {
            snprintf(ns, sizeof(ns), "%.*s", (int) len, s);

        } else {
            return rd_perr(c, n, "\"%.64s\": the namespace before \"/\" is "
                           "\"*\", \".\" or a namespace's name", s);
        }
    }

    len = strlen(host);

    if (!mesh_host_pattern_valid(host, len)) {
        return rd_perr(c, n, "\"%.64s\" is not a valid host: [NAMESPACE/] "
                       "and a name ([A-Za-z0-9][A-Za-z0-9._-]{0,127}), "
                       "\"*.\" and a name, or \"*\"", s);
    }

    snprintf(h, sizeof(h), "%s%s%s", ns, ns[0] ? "/" : "", host);

    for (i = 0; h[i]; i++) {
        if (h[i] >= 'A' && h[i] <= 'Z') {
            h[i] = (char) (h[i] | 0x20);
        }
    }

    for (i = 0; i < json_array_size(hosts); i++) {
        if (strcmp(json_string_value(json_array_get(hosts, i)), h) == 0) {
            return rd_perr(c, n, "host \"%s\" is listed twice", h);
        }
    }

    rd_jpush(hosts, json_string(h));

    return 0;
}


static int
rd_parse_gw_server(rd_pctx_t *c, yaml_node_t *n, json_t *servers, json_t *o)
{
    int                kind = RD_GW_HTTP;
    size_t             i, old, old2;
    json_t            *hosts;
    const char        *k, *s;
    yaml_node_t       *kn, *v, *iv, *port = NULL, *hosts_node = NULL;
    yaml_node_t       *tls = NULL, *tls_kn = NULL;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "port") == 0) {
            port = v;

        } else if (strcmp(k, "hosts") == 0) {
            hosts_node = v;

        } else if (strcmp(k, "tls") == 0) {
            tls = v;
            tls_kn = kn;

        } else if (strcmp(k, "name") == 0) {
            if (rd_get_str(c, v, &s) != 0) {
                return -1;
            }

        } else {
            return rd_unknown(c, kn, k, "port,hosts,tls,name",
                              "bind,defaultEndpoint");
        }

        rd_path_pop(c, old);
    }

    if (port == NULL) {
        return rd_missing(c, n, "port");
    }

    old = rd_path_key(c, "port");

    if (rd_parse_gw_port(c, port, o, &kind) != 0
        || rd_gw_port_conflict(c, port, servers, o, kind) != 0)
    {
        return -1;
    }

    rd_path_pop(c, old);

    if (hosts_node == NULL) {
        return rd_missing(c, n, "hosts");
    }

    old = rd_path_key(c, "hosts");

    if (rd_check_seq(c, hosts_node, 1) != 0) {
        return -1;
    }

    hosts = rd_jarr();
    rd_jset(o, "hosts", hosts);

    rd_foreach_item(c, hosts_node, it, i, iv) {
        old2 = rd_path_idx(c, i);
        if (rd_parse_gw_host(c, iv, hosts) != 0) {
            return -1;
        }
        rd_path_pop(c, old2);
    }

    rd_path_pop(c, old);

    switch (kind) {

    case RD_GW_TCP:
        if (tls) {
            rd_path_key(c, "tls");
            return rd_perr(c, tls_kn, "a TCP server has no TLS (use TLS "
                           "with mode PASSTHROUGH)");
        }

        rd_jset(o, "stream", json_string("TCP"));
        break;

    case RD_GW_TLS:
        if (tls == NULL) {
            return rd_missing(c, n, "tls");
        }

        old = rd_path_key(c, "tls");
        if (rd_parse_gw_passthrough(c, tls) != 0) {
            return -1;
        }
        rd_path_pop(c, old);

        rd_jset(o, "stream", json_string("TLS"));
        break;

    default: /* RD_GW_HTTP, RD_GW_HTTPS */
        if (tls) {
            old = rd_path_key(c, "tls");
            if (rd_parse_gw_tls(c, tls, kind == RD_GW_HTTPS, o) != 0) {
                return -1;
            }
            rd_path_pop(c, old);

        } else if (kind == RD_GW_HTTPS) {
            return rd_missing(c, n, "tls");
        }
    }

    return 0;
}


int
rd_parse_gw(rd_pctx_t *c, yaml_node_t *n, json_t *out)
{
    char               gw[RD_GATEWAY_LEN];
    size_t             i, old, old2;
    json_t            *servers = NULL, *sel = NULL, *so;
    const char        *k;
    yaml_node_t       *kn, *v, *iv;
    yaml_node_item_t  *it;
    yaml_node_pair_t  *p;

    if (rd_check_map(c, n) != 0) {
        return -1;
    }

    rd_foreach_pair(c, n, p, k, kn, v) {
        old = rd_path_key(c, k);

        if (strcmp(k, "selector") == 0) {
            json_decref(sel);
            sel = NULL;

            if (rd_parse_labels(c, v, 0, &sel) != 0) {
                goto fail;
            }

        } else if (strcmp(k, "servers") == 0) {
            if (rd_check_seq(c, v, 1) != 0) {
                goto fail;
            }

            json_decref(servers);
            servers = rd_jarr();

            rd_foreach_item(c, v, it, i, iv) {
                old2 = rd_path_idx(c, i);
                so = rd_jobj();
                rd_jpush(servers, so);

                if (rd_parse_gw_server(c, iv, servers, so) != 0) {
                    goto fail;
                }

                rd_path_pop(c, old2);
            }

        } else {
            rd_unknown(c, kn, k, "servers,selector", NULL);
            goto fail;
        }

        rd_path_pop(c, old);
    }

    if (servers == NULL) {
        rd_missing(c, n, "servers");
        goto fail;
    }

    snprintf(gw, sizeof(gw), "%s/%s", c->doc_ns, c->doc_name);
    rd_jset(out, "gateway", json_string(gw));

    if (sel && json_object_size(sel)) {
        rd_jset(out, "selector", sel);
        sel = NULL;
    }

    rd_jset(out, "servers", servers);
    json_decref(sel);

    return 0;

fail:

    json_decref(servers);
    json_decref(sel);
    return -1;
}
