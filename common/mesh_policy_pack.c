/*
 * mesh_policy_pack: the model packed into one relocatable block for the
 * module's shared zone, and read back.
 */

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_json.h"
#include "mesh_policy.h"
#include "mesh_policy_int.h"
#include "mesh_regex.h"


/*
 * The packed form: the whole model deep-copied into one block, every
 * pointer written as an offset from the block's start (0: NULL), so that
 * the poll owner writes it once into the shared zone and a worker copies
 * it out and puts the pointers back (mesh_policies_unpack) instead of
 * parsing JSON. Strings are NUL-terminated inside the block.
 */

typedef struct {
    char       *buf;           /* NULL: measuring */
    size_t      size;
    size_t      pos;
} mesh_pack_t;


/* room for n bytes, aligned for any field; its offset */
static size_t
mesh_pack_alloc(mesh_pack_t *pk, size_t n)
{
    size_t  off, gap;

    gap = pk->pos;
    pk->pos = (pk->pos + 7) & ~(size_t) 7;
    off = pk->pos;
    pk->pos += n;

    /* the alignment gap too: the same model packs to the same bytes */
    if (pk->buf && pk->pos <= pk->size) {
        memset(pk->buf + gap, 0, pk->pos - gap);
    }

    return off;
}


static void *
mesh_pack_at(mesh_pack_t *pk, size_t off)
{
    return pk->buf ? pk->buf + off : NULL;
}


/* a string's offset, as a pointer-sized field */
static void
mesh_pack_str(mesh_pack_t *pk, const char *s, const char **field)
{
    size_t  off, len;

    if (s == NULL) {
        return;                 /* 0: NULL, memset above */
    }

    len = strlen(s) + 1;
    off = mesh_pack_alloc(pk, len);

    if (pk->buf) {
        memcpy(pk->buf + off, s, len);
        *field = (const char *) (uintptr_t) off;
    }
}


/* an array of n elements of size; the field gets its offset */
static size_t
mesh_pack_array(mesh_pack_t *pk, const void *from, size_t n, size_t size,
    void *field)
{
    size_t  off;

    if (n == 0) {
        if (pk->buf) {
            *(uintptr_t *) field = 0;     /* no stray pointer */
        }

        return 0;
    }

    off = mesh_pack_alloc(pk, n * size);

    if (pk->buf) {
        memcpy(pk->buf + off, from, n * size);
        *(uintptr_t *) field = (uintptr_t) off;
    }

    return off;
}


/* localityLbSetting: the setting, its lists and their strings */
static void
mesh_pack_locality(mesh_pack_t *pk, const mesh_locality_lb_t *from,
    const mesh_locality_lb_t **field)
{
    size_t                       i, k, off, off2, off3;
    const char                  *tmp;
    mesh_locality_lb_t          *lb;
    mesh_locality_failover_t    *fo;
    mesh_locality_distribute_t  *d;
    mesh_locality_weight_t      *w;

    off = mesh_pack_array(pk, from, from ? 1 : 0, sizeof(mesh_locality_lb_t),
                          field ? (void *) field : (void *) &tmp);

    if (from == NULL) {
        return;
    }

    lb = mesh_pack_at(pk, off);

    off2 = mesh_pack_array(pk, from->distribute, from->ndistribute,
                           sizeof(mesh_locality_distribute_t),
                           lb ? (void *) &lb->distribute : (void *) &tmp);

    for (i = 0; i < from->ndistribute; i++) {
        d = mesh_pack_at(pk, off2 + i * sizeof(mesh_locality_distribute_t));
        mesh_pack_str(pk, from->distribute[i].from, d ? &d->from : &tmp);

        off3 = mesh_pack_array(pk, from->distribute[i].to,
                               from->distribute[i].nto,
                               sizeof(mesh_locality_weight_t),
                               d ? (void *) &d->to : (void *) &tmp);

        for (k = 0; k < from->distribute[i].nto; k++) {
            w = mesh_pack_at(pk, off3 + k * sizeof(mesh_locality_weight_t));
            mesh_pack_str(pk, from->distribute[i].to[k].locality,
                          w ? &w->locality : &tmp);
        }
    }

    off2 = mesh_pack_array(pk, from->failover, from->nfailover,
                           sizeof(mesh_locality_failover_t),
                           lb ? (void *) &lb->failover : (void *) &tmp);

    for (i = 0; i < from->nfailover; i++) {
        fo = mesh_pack_at(pk, off2 + i * sizeof(mesh_locality_failover_t));
        mesh_pack_str(pk, from->failover[i].from, fo ? &fo->from : &tmp);
        mesh_pack_str(pk, from->failover[i].to, fo ? &fo->to : &tmp);
    }

    off2 = mesh_pack_array(pk, from->priority, from->npriority,
                           sizeof(char *),
                           lb ? (void *) &lb->priority : (void *) &tmp);

    for (i = 0; i < from->npriority; i++) {
        mesh_pack_str(pk, from->priority[i],
                      lb ? (const char **) mesh_pack_at(pk, off2
                                                        + i * sizeof(char *))
                         : &tmp);
    }
}


static void
mesh_pack_tls(mesh_pack_t *pk, const mesh_tls_t *from, mesh_tls_t *to)
{
    size_t        i, off;
    const char   *tmp, **sans;

#define MESH_TLS_F(f)  (to ? &to->f : &tmp)

    mesh_pack_str(pk, from->client_certificate,
                  MESH_TLS_F(client_certificate));
    mesh_pack_str(pk, from->private_key, MESH_TLS_F(private_key));
    mesh_pack_str(pk, from->ca_certificates, MESH_TLS_F(ca_certificates));
    mesh_pack_str(pk, from->ca_crl, MESH_TLS_F(ca_crl));
    mesh_pack_str(pk, from->sni, MESH_TLS_F(sni));

#undef MESH_TLS_F

    off = mesh_pack_array(pk, from->subject_alt_names,
                          from->nsubject_alt_names, sizeof(char *),
                          to ? (void *) &to->subject_alt_names
                             : (void *) &tmp);

    for (i = 0; i < from->nsubject_alt_names; i++) {
        sans = mesh_pack_at(pk, off + i * sizeof(char *));
        mesh_pack_str(pk, from->subject_alt_names[i], sans ? sans : &tmp);
    }
}


/* an array of n strings; the field gets its offset */
static void
mesh_pack_strs(mesh_pack_t *pk, const char **from, size_t n,
    void *field)
{
    size_t        i, off;
    const char  **to, *tmp;

    off = mesh_pack_array(pk, from, n, sizeof(char *), field);

    for (i = 0; i < n; i++) {
        to = mesh_pack_at(pk, off + i * sizeof(char *));
        mesh_pack_str(pk, from[i], to ? to : &tmp);
    }
}


static void
mesh_pack_traffic(mesh_pack_t *pk, const mesh_traffic_policy_t *from,
    mesh_traffic_policy_t *to)
{
    const char  *tmp, **field;

    field = to ? &to->hash_name : &tmp;
    mesh_pack_str(pk, from->hash_name, field);

    field = to ? &to->cookie_path : &tmp;
    mesh_pack_str(pk, from->cookie_path, field);

    mesh_pack_locality(pk, from->locality, to ? &to->locality : NULL);
    mesh_pack_tls(pk, &from->tls, to ? &to->tls : NULL);
}


/* portLevelSettings: the array, then each policy's strings */
static void
mesh_pack_ports(mesh_pack_t *pk, const mesh_port_policy_t *from, size_t n,
    void *field)
{
    size_t               i, off;
    mesh_port_policy_t  *pp;

    off = mesh_pack_array(pk, from, n, sizeof(mesh_port_policy_t), field);

    for (i = 0; i < n; i++) {
        pp = (mesh_port_policy_t *) mesh_pack_at(pk,
                                   off + i * sizeof(mesh_port_policy_t));
        mesh_pack_traffic(pk, &from[i].policy, pp ? &pp->policy : NULL);
    }
}


/* an array of labels (key and value strings); the field gets its offset */
static void
mesh_pack_labels(mesh_pack_t *pk, const mesh_label_t *from, size_t n,
    void *field)
{
    size_t         i, off;
    const char    *tmp;
    mesh_label_t  *lb;

    off = mesh_pack_array(pk, from, n, sizeof(mesh_label_t), field);

    for (i = 0; i < n; i++) {
        lb = mesh_pack_at(pk, off + i * sizeof(mesh_label_t));
        mesh_pack_str(pk, from[i].key, lb ? &lb->key : &tmp);
        mesh_pack_str(pk, from[i].value, lb ? &lb->value : &tmp);
    }
}


static void
mesh_pack_match(mesh_pack_t *pk, const mesh_string_match_t *from,
    mesh_string_match_t *to)
{
    const char  *tmp;

    mesh_pack_str(pk, from->value, to ? &to->value : &tmp);

    if (to) {
        to->regex = NULL;       /* each worker compiles its own */
    }
}


static void
mesh_pack_ops(mesh_pack_t *pk, const mesh_header_ops_t *from,
    mesh_header_ops_t *to)
{
    size_t                   i, k, off;
    const char              *tmp;
    mesh_header_op_t        *op;
    const mesh_header_op_t  *fo[3];
    size_t                   n[3];
    void                    *field[3];

    fo[0] = from->set;
    n[0] = from->nset;
    field[0] = to ? (void *) &to->set : (void *) &tmp;
    fo[1] = from->add;
    n[1] = from->nadd;
    field[1] = to ? (void *) &to->add : (void *) &tmp;
    fo[2] = from->remove;
    n[2] = from->nremove;
    field[2] = to ? (void *) &to->remove : (void *) &tmp;

    for (k = 0; k < 3; k++) {
        off = mesh_pack_array(pk, fo[k], n[k], sizeof(mesh_header_op_t),
                              field[k]);

        for (i = 0; i < n[k]; i++) {
            op = mesh_pack_at(pk, off + i * sizeof(mesh_header_op_t));
            mesh_pack_str(pk, fo[k][i].name, op ? &op->name : &tmp);
            mesh_pack_str(pk, fo[k][i].value, op ? &op->value : &tmp);
        }
    }
}


static void
mesh_pack_headers(mesh_pack_t *pk, const mesh_headers_t *from,
    mesh_headers_t *to)
{
    mesh_pack_ops(pk, &from->request, to ? &to->request : NULL);
    mesh_pack_ops(pk, &from->response, to ? &to->response : NULL);
}


/* route destinations: the array, then each one's strings and headers */
static void
mesh_pack_dests(mesh_pack_t *pk, const mesh_destination_t *from, size_t n,
    void *field)
{
    size_t               i, off;
    const char          *tmp;
    mesh_destination_t  *ds;

    off = mesh_pack_array(pk, from, n, sizeof(mesh_destination_t), field);

    for (i = 0; i < n; i++) {
        ds = mesh_pack_at(pk, off + i * sizeof(mesh_destination_t));
        mesh_pack_str(pk, from[i].subset, ds ? &ds->subset : &tmp);
        mesh_pack_str(pk, from[i].host, ds ? &ds->host : &tmp);
        mesh_pack_headers(pk, &from[i].headers, ds ? &ds->headers : NULL);
    }
}


static void
mesh_pack_cors(mesh_pack_t *pk, const mesh_cors_t *from, mesh_cors_t **field)
{
    size_t       i, off, off2;
    const char  *tmp;
    mesh_cors_t *cors;

    off = mesh_pack_array(pk, from, from ? 1 : 0, sizeof(mesh_cors_t),
                          field ? (void *) field : (void *) &tmp);

    if (from == NULL) {
        return;
    }

    cors = mesh_pack_at(pk, off);

    mesh_pack_str(pk, from->allow_methods,
                  cors ? &cors->allow_methods : &tmp);
    mesh_pack_str(pk, from->allow_headers,
                  cors ? &cors->allow_headers : &tmp);
    mesh_pack_str(pk, from->expose_headers,
                  cors ? &cors->expose_headers : &tmp);

    off2 = mesh_pack_array(pk, from->origins, from->norigins,
                           sizeof(mesh_string_match_t),
                           cors ? (void *) &cors->origins : (void *) &tmp);

    for (i = 0; i < from->norigins; i++) {
        mesh_pack_match(pk, &from->origins[i],
                        mesh_pack_at(pk, off2
                                         + i * sizeof(mesh_string_match_t)));
    }
}


/* a route's rewrite, headers, redirect, direct response and corsPolicy */
static void
mesh_pack_shape(mesh_pack_t *pk, const mesh_http_route_t *from,
    mesh_http_route_t *to)
{
    size_t                   off;
    const char              *tmp;
    mesh_redirect_t         *rd;
    mesh_direct_response_t  *dr;

    mesh_pack_str(pk, from->rewrite.uri, to ? &to->rewrite.uri : &tmp);
    mesh_pack_str(pk, from->rewrite.authority,
                  to ? &to->rewrite.authority : &tmp);

    mesh_pack_headers(pk, &from->headers, to ? &to->headers : NULL);

    off = mesh_pack_array(pk, from->redirect, from->redirect ? 1 : 0,
                          sizeof(mesh_redirect_t),
                          to ? (void *) &to->redirect : (void *) &tmp);

    if (from->redirect) {
        rd = mesh_pack_at(pk, off);
        mesh_pack_str(pk, from->redirect->uri, rd ? &rd->uri : &tmp);
        mesh_pack_str(pk, from->redirect->authority,
                      rd ? &rd->authority : &tmp);
        mesh_pack_str(pk, from->redirect->scheme, rd ? &rd->scheme : &tmp);
    }

    off = mesh_pack_array(pk, from->direct, from->direct ? 1 : 0,
                          sizeof(mesh_direct_response_t),
                          to ? (void *) &to->direct : (void *) &tmp);

    if (from->direct) {
        dr = mesh_pack_at(pk, off);
        mesh_pack_str(pk, from->direct->body, dr ? &dr->body : &tmp);
    }

    mesh_pack_cors(pk, from->cors, to ? &to->cors : NULL);
}


static void
mesh_policies_pack_into(mesh_pack_t *pk, const mesh_policies_t *p)
{
    size_t                    i, k, h, m, top, off, off2, off3;
    mesh_policies_t          *tp;
    mesh_destination_rule_t  *dr;
    mesh_subset_t            *sb;
    mesh_virtual_service_t   *vs;
    mesh_http_route_t        *rt;
    mesh_match_t             *ma;
    mesh_header_match_t      *hm;
    mesh_mirror_t            *mi;
    mesh_tcp_route_t         *tr;
    mesh_tls_route_t         *lr;
    mesh_tls_match_t         *lm;
    const char              **hosts, *tmp;

#define MESH_AT(type, off)  ((type *) mesh_pack_at(pk, off))
#define MESH_F(ptr, f)      ((ptr) ? (void *) &(ptr)->f : (void *) &tmp)

    top = mesh_pack_alloc(pk, sizeof(mesh_policies_t));
    tp = MESH_AT(mesh_policies_t, top);

    if (tp) {
        tp->nrules = p->nrules;
        tp->nvss = p->nvss;
        tp->ngateways = p->ngateways;
    }

    off = mesh_pack_array(pk, p->rules, p->nrules,
                          sizeof(mesh_destination_rule_t), MESH_F(tp, rules));

    for (i = 0; i < p->nrules; i++) {
        dr = MESH_AT(mesh_destination_rule_t,
                     off + i * sizeof(mesh_destination_rule_t));

        mesh_pack_str(pk, p->rules[i].policy, MESH_F(dr, policy));
        mesh_pack_str(pk, p->rules[i].name, MESH_F(dr, name));
        mesh_pack_str(pk, p->rules[i].host, MESH_F(dr, host));
        mesh_pack_traffic(pk, &p->rules[i].traffic, dr ? &dr->traffic : NULL);
        mesh_pack_ports(pk, p->rules[i].ports, p->rules[i].nports,
                        MESH_F(dr, ports));

        off2 = mesh_pack_array(pk, p->rules[i].subsets, p->rules[i].nsubsets,
                               sizeof(mesh_subset_t), MESH_F(dr, subsets));

        for (k = 0; k < p->rules[i].nsubsets; k++) {
            sb = MESH_AT(mesh_subset_t, off2 + k * sizeof(mesh_subset_t));

            mesh_pack_str(pk, p->rules[i].subsets[k].name, MESH_F(sb, name));
            mesh_pack_traffic(pk, &p->rules[i].subsets[k].policy,
                              sb ? &sb->policy : NULL);
            mesh_pack_ports(pk, p->rules[i].subsets[k].ports,
                            p->rules[i].subsets[k].nports, MESH_F(sb, ports));

            mesh_pack_labels(pk, p->rules[i].subsets[k].labels,
                             p->rules[i].subsets[k].nlabels,
                             MESH_F(sb, labels));
        }

        mesh_pack_labels(pk, p->rules[i].selector, p->rules[i].nselector,
                         MESH_F(dr, selector));
    }

    off = mesh_pack_array(pk, p->vss, p->nvss,
                          sizeof(mesh_virtual_service_t), MESH_F(tp, vss));

    for (i = 0; i < p->nvss; i++) {
        vs = MESH_AT(mesh_virtual_service_t,
                     off + i * sizeof(mesh_virtual_service_t));

        mesh_pack_str(pk, p->vss[i].policy, MESH_F(vs, policy));
        mesh_pack_str(pk, p->vss[i].name, MESH_F(vs, name));
        mesh_pack_str(pk, p->vss[i].ns, MESH_F(vs, ns));
        mesh_pack_strs(pk, p->vss[i].gateways, p->vss[i].ngateways,
                       MESH_F(vs, gateways));

        off2 = mesh_pack_array(pk, p->vss[i].hosts, p->vss[i].nhosts,
                               sizeof(char *), MESH_F(vs, hosts));

        for (k = 0; k < p->vss[i].nhosts; k++) {
            hosts = MESH_AT(const char *, off2 + k * sizeof(char *));
            mesh_pack_str(pk, p->vss[i].hosts[k], hosts ? hosts : &tmp);
        }

        /* tcp[]: each route's ports, its destinations and their
         * strings */
        off2 = mesh_pack_array(pk, p->vss[i].tcp, p->vss[i].ntcp,
                               sizeof(mesh_tcp_route_t), MESH_F(vs, tcp));

        for (k = 0; k < p->vss[i].ntcp; k++) {
            tr = MESH_AT(mesh_tcp_route_t, off2 + k * sizeof(mesh_tcp_route_t));

            (void) mesh_pack_array(pk, p->vss[i].tcp[k].ports,
                                   p->vss[i].tcp[k].nports, sizeof(int),
                                   MESH_F(tr, ports));

            mesh_pack_dests(pk, p->vss[i].tcp[k].routes,
                            p->vss[i].tcp[k].nroutes, MESH_F(tr, routes));
        }

        /* tls[]: each route's matches and their SNI patterns, its
         * destinations */
        off2 = mesh_pack_array(pk, p->vss[i].tls, p->vss[i].ntls,
                               sizeof(mesh_tls_route_t), MESH_F(vs, tls));

        for (k = 0; k < p->vss[i].ntls; k++) {
            lr = MESH_AT(mesh_tls_route_t, off2 + k * sizeof(mesh_tls_route_t));

            off3 = mesh_pack_array(pk, p->vss[i].tls[k].matches,
                                   p->vss[i].tls[k].nmatches,
                                   sizeof(mesh_tls_match_t),
                                   MESH_F(lr, matches));

            for (h = 0; h < p->vss[i].tls[k].nmatches; h++) {
                lm = MESH_AT(mesh_tls_match_t,
                             off3 + h * sizeof(mesh_tls_match_t));
                mesh_pack_strs(pk, p->vss[i].tls[k].matches[h].sni,
                               p->vss[i].tls[k].matches[h].nsni,
                               MESH_F(lm, sni));
            }

            mesh_pack_dests(pk, p->vss[i].tls[k].routes,
                            p->vss[i].tls[k].nroutes, MESH_F(lr, routes));
        }

        off2 = mesh_pack_array(pk, p->vss[i].http, p->vss[i].nhttp,
                               sizeof(mesh_http_route_t), MESH_F(vs, http));

        for (k = 0; k < p->vss[i].nhttp; k++) {
            rt = MESH_AT(mesh_http_route_t,
                         off2 + k * sizeof(mesh_http_route_t));

            mesh_pack_str(pk, p->vss[i].http[k].name, MESH_F(rt, name));
            mesh_pack_shape(pk, &p->vss[i].http[k], rt);

            mesh_pack_dests(pk, p->vss[i].http[k].routes,
                            p->vss[i].http[k].nroutes, MESH_F(rt, routes));

            off3 = mesh_pack_array(pk, p->vss[i].http[k].mirrors,
                                   p->vss[i].http[k].nmirrors,
                                   sizeof(mesh_mirror_t),
                                   MESH_F(rt, mirrors));

            for (h = 0; h < p->vss[i].http[k].nmirrors; h++) {
                mi = MESH_AT(mesh_mirror_t, off3 + h * sizeof(mesh_mirror_t));
                mesh_pack_str(pk, p->vss[i].http[k].mirrors[h].subset,
                              MESH_F(mi, subset));
                mesh_pack_str(pk, p->vss[i].http[k].mirrors[h].host,
                              MESH_F(mi, host));
            }

            off3 = mesh_pack_array(pk, p->vss[i].http[k].matches,
                                   p->vss[i].http[k].nmatches,
                                   sizeof(mesh_match_t), MESH_F(rt, matches));

            for (h = 0; h < p->vss[i].http[k].nmatches; h++) {
                const mesh_match_t  *fm = &p->vss[i].http[k].matches[h];
                size_t               uo, ho;

                ma = MESH_AT(mesh_match_t, off3 + h * sizeof(mesh_match_t));

                if (fm->uri) {
                    uo = mesh_pack_array(pk, fm->uri, 1,
                                         sizeof(mesh_string_match_t),
                                         MESH_F(ma, uri));
                    mesh_pack_match(pk, fm->uri,
                                    MESH_AT(mesh_string_match_t, uo));
                }

                mesh_pack_labels(pk, fm->source_labels, fm->nsource_labels,
                                 MESH_F(ma, source_labels));

                ho = mesh_pack_array(pk, fm->headers, fm->nheaders,
                                     sizeof(mesh_header_match_t),
                                     MESH_F(ma, headers));

                for (m = 0; m < fm->nheaders; m++) {
                    hm = MESH_AT(mesh_header_match_t,
                                 ho + m * sizeof(mesh_header_match_t));
                    mesh_pack_str(pk, fm->headers[m].name, MESH_F(hm, name));
                    mesh_pack_match(pk, &fm->headers[m].match,
                                    hm ? &hm->match : NULL);
                }
            }
        }
    }

    off = mesh_pack_array(pk, p->gateways, p->ngateways,
                          sizeof(mesh_gateway_t), MESH_F(tp, gateways));

    for (i = 0; i < p->ngateways; i++) {
        const mesh_gateway_t   *fg = &p->gateways[i];
        mesh_gateway_t         *gw;
        mesh_gateway_server_t  *sv;

        gw = MESH_AT(mesh_gateway_t, off + i * sizeof(mesh_gateway_t));

        mesh_pack_str(pk, fg->policy, MESH_F(gw, policy));
        mesh_pack_str(pk, fg->name, MESH_F(gw, name));
        mesh_pack_str(pk, fg->gateway, MESH_F(gw, gateway));
        mesh_pack_labels(pk, fg->selector, fg->nselector,
                         MESH_F(gw, selector));

        off2 = mesh_pack_array(pk, fg->servers, fg->nservers,
                               sizeof(mesh_gateway_server_t),
                               MESH_F(gw, servers));

        for (k = 0; k < fg->nservers; k++) {
            sv = MESH_AT(mesh_gateway_server_t,
                         off2 + k * sizeof(mesh_gateway_server_t));
            mesh_pack_strs(pk, fg->servers[k].hosts, fg->servers[k].nhosts,
                           MESH_F(sv, hosts));
        }
    }

    if (tp) {
        tp->arena = NULL;
        tp->regexes = NULL;
        tp->nregexes = 0;
    }

#undef MESH_AT
#undef MESH_F
}


size_t
mesh_policies_pack(const mesh_policies_t *p, void *buf, size_t size)
{
    mesh_pack_t  pk;

    pk.buf = NULL;
    pk.size = 0;
    pk.pos = 0;

    mesh_policies_pack_into(&pk, p);

    if (buf == NULL) {
        return pk.pos;
    }

    if (size < pk.pos) {
        return 0;
    }

    pk.buf = buf;
    pk.size = size;
    pk.pos = 0;

    mesh_policies_pack_into(&pk, p);

    return pk.pos;
}


/* the relocation of one pointer field: 0 on a bad offset */
typedef struct {
    char       *base;
    size_t      size;
    int         bad;
} mesh_unpack_t;


static void *
mesh_unpack_ptr(mesh_unpack_t *u, void *field, size_t need)
{
    uintptr_t  off = *(uintptr_t *) field;

    if (off == 0) {
        *(void **) field = NULL;
        return NULL;
    }

    /* every piece was allocated 8-byte aligned (mesh_pack_alloc) */
    if (off >= u->size || need > u->size - off || (off & 7)) {
        u->bad = 1;
        *(void **) field = NULL;
        return NULL;
    }

    *(void **) field = u->base + off;

    return u->base + off;
}


static void
mesh_unpack_str(mesh_unpack_t *u, const char **field)
{
    char  *s;

    s = mesh_unpack_ptr(u, (void *) field, 1);

    if (s && memchr(s, '\0', u->size - (s - u->base)) == NULL) {
        u->bad = 1;
        *field = NULL;
    }
}


/* a pointer to n elements, checked to lie in the block; none for n > 0
 * is damage too (the model has no NULL array with elements) */
static void *
mesh_unpack_array(mesh_unpack_t *u, void *field, size_t n, size_t size)
{
    void  *p;

    if (n && size > (size_t) -1 / n) {
        u->bad = 1;
        return NULL;
    }

    p = mesh_unpack_ptr(u, field, n * size);

    if (p == NULL && n) {
        u->bad = 1;
    }

    return p;
}


/* a string whose length the model keeps: checked against it */
static void
mesh_unpack_strn(mesh_unpack_t *u, const char **field, size_t len)
{
    mesh_unpack_str(u, field);

    if (*field && strlen(*field) != len) {
        u->bad = 1;
    }
}


/* an array of labels: neither key nor value may be missing */
/* an array of n strings, each checked */
static void
mesh_unpack_strs(mesh_unpack_t *u, const char ***field, size_t n)
{
    size_t        i;
    const char  **a;

    a = mesh_unpack_array(u, (void *) field, n, sizeof(char *));

    for (i = 0; a && i < n; i++) {
        mesh_unpack_str(u, &a[i]);
    }
}


static void
mesh_unpack_labels(mesh_unpack_t *u, mesh_label_t **field, size_t n)
{
    size_t         i;
    mesh_label_t  *lb;

    lb = mesh_unpack_array(u, field, n, sizeof(mesh_label_t));

    for (i = 0; lb && i < n; i++) {
        mesh_unpack_str(u, &lb[i].key);
        mesh_unpack_str(u, &lb[i].value);

        if (lb[i].key == NULL || lb[i].value == NULL) {
            u->bad = 1;
            return;
        }
    }
}


/* tls: its paths, sni and subjectAltNames, none of them missing */
static void
mesh_unpack_tls(mesh_unpack_t *u, mesh_tls_t *tls)
{
    size_t        i;
    const char  **sans;

    mesh_unpack_str(u, &tls->client_certificate);
    mesh_unpack_str(u, &tls->private_key);
    mesh_unpack_str(u, &tls->ca_certificates);
    mesh_unpack_str(u, &tls->ca_crl);
    mesh_unpack_str(u, &tls->sni);

    sans = mesh_unpack_array(u, (void *) &tls->subject_alt_names,
                             tls->nsubject_alt_names, sizeof(char *));

    for (i = 0; sans && !u->bad && i < tls->nsubject_alt_names; i++) {
        mesh_unpack_str(u, &sans[i]);

        if (sans[i] == NULL) {
            u->bad = 1;
        }
    }
}


static void mesh_unpack_locality(mesh_unpack_t *u,
    const mesh_locality_lb_t **field);


/* portLevelSettings: each policy's strings */
static void
mesh_unpack_ports(mesh_unpack_t *u, mesh_port_policy_t **field, size_t n)
{
    size_t               i;
    mesh_port_policy_t  *pp;

    pp = mesh_unpack_array(u, field, n, sizeof(mesh_port_policy_t));

    for (i = 0; pp && i < n; i++) {
        mesh_unpack_str(u, &pp[i].policy.hash_name);
        mesh_unpack_str(u, &pp[i].policy.cookie_path);
        mesh_unpack_locality(u, &pp[i].policy.locality);
        mesh_unpack_tls(u, &pp[i].policy.tls);
    }
}


static void
mesh_unpack_ops(mesh_unpack_t *u, mesh_header_ops_t *ops)
{
    size_t             i, k, n[3];
    mesh_header_op_t  *op, **field[3];

    field[0] = &ops->set;
    n[0] = ops->nset;
    field[1] = &ops->add;
    n[1] = ops->nadd;
    field[2] = &ops->remove;
    n[2] = ops->nremove;

    for (k = 0; k < 3; k++) {
        op = mesh_unpack_array(u, field[k], n[k], sizeof(mesh_header_op_t));

        for (i = 0; op && !u->bad && i < n[k]; i++) {
            mesh_unpack_strn(u, &op[i].name, op[i].name_len);
            mesh_unpack_strn(u, &op[i].value, op[i].value_len);

            /* a name always; a value to set or add, none to remove */
            if (op[i].name == NULL || (op[i].value == NULL) != (k == 2)) {
                u->bad = 1;
            }
        }
    }
}


static void
mesh_unpack_headers(mesh_unpack_t *u, mesh_headers_t *hs)
{
    mesh_unpack_ops(u, &hs->request);
    mesh_unpack_ops(u, &hs->response);
}


static void
mesh_unpack_dests(mesh_unpack_t *u, mesh_destination_t **field, size_t n)
{
    size_t               i;
    mesh_destination_t  *ds;

    ds = mesh_unpack_array(u, field, n, sizeof(mesh_destination_t));

    for (i = 0; ds && i < n; i++) {
        mesh_unpack_str(u, &ds[i].subset);
        mesh_unpack_str(u, &ds[i].host);
        mesh_unpack_headers(u, &ds[i].headers);
    }
}


static void
mesh_unpack_shape(mesh_unpack_t *u, mesh_http_route_t *rt)
{
    mesh_redirect_t         *rd;
    mesh_direct_response_t  *dr;

    mesh_unpack_str(u, &rt->rewrite.uri);
    mesh_unpack_str(u, &rt->rewrite.authority);
    mesh_unpack_headers(u, &rt->headers);

    rd = mesh_unpack_ptr(u, &rt->redirect, sizeof(mesh_redirect_t));

    if (rd) {
        mesh_unpack_str(u, &rd->uri);
        mesh_unpack_str(u, &rd->authority);
        mesh_unpack_str(u, &rd->scheme);
    }

    dr = mesh_unpack_ptr(u, &rt->direct, sizeof(mesh_direct_response_t));

    if (dr) {
        mesh_unpack_strn(u, &dr->body, dr->body_len);
    }
}


/* localityLbSetting: every string there, each list as long as it says */
static void
mesh_unpack_locality(mesh_unpack_t *u, const mesh_locality_lb_t **field)
{
    size_t                       i, k;
    mesh_locality_lb_t          *lb;
    mesh_locality_failover_t    *fo;
    mesh_locality_distribute_t  *d;
    mesh_locality_weight_t      *w;

    lb = mesh_unpack_ptr(u, (void *) field, sizeof(mesh_locality_lb_t));
    if (lb == NULL) {
        return;
    }

    d = mesh_unpack_array(u, &lb->distribute, lb->ndistribute,
                          sizeof(mesh_locality_distribute_t));

    for (i = 0; d && !u->bad && i < lb->ndistribute; i++) {
        mesh_unpack_str(u, &d[i].from);

        w = mesh_unpack_array(u, &d[i].to, d[i].nto,
                              sizeof(mesh_locality_weight_t));

        for (k = 0; w && !u->bad && k < d[i].nto; k++) {
            mesh_unpack_str(u, &w[k].locality);
            u->bad |= (w[k].locality == NULL);
        }

        u->bad |= (d[i].from == NULL);
    }

    fo = mesh_unpack_array(u, &lb->failover, lb->nfailover,
                           sizeof(mesh_locality_failover_t));

    for (i = 0; fo && !u->bad && i < lb->nfailover; i++) {
        mesh_unpack_str(u, &fo[i].from);
        mesh_unpack_str(u, &fo[i].to);
        u->bad |= (fo[i].from == NULL || fo[i].to == NULL);
    }

    if (!u->bad
        && mesh_unpack_array(u, (void *) &lb->priority, lb->npriority,
                             sizeof(char *))
           != NULL)
    {
        for (i = 0; !u->bad && i < lb->npriority; i++) {
            mesh_unpack_str(u, &lb->priority[i]);
            u->bad |= (lb->priority[i] == NULL);
        }
    }
}


static int mesh_unpack_match(mesh_unpack_t *u, mesh_string_match_t *m,
    mesh_vec_t *res, char *err, size_t errlen);


/* a route's corsPolicy; its origins' regexes compiled as the match's */
static int
mesh_unpack_cors(mesh_unpack_t *u, mesh_http_route_t *rt, mesh_vec_t *res,
    char *err, size_t errlen)
{
    size_t                i;
    mesh_cors_t          *cors;
    mesh_string_match_t  *sm;

    cors = mesh_unpack_ptr(u, &rt->cors, sizeof(mesh_cors_t));
    if (cors == NULL) {
        return u->bad ? -1 : 0;
    }

    mesh_unpack_str(u, &cors->allow_methods);
    mesh_unpack_str(u, &cors->allow_headers);
    mesh_unpack_str(u, &cors->expose_headers);

    sm = mesh_unpack_array(u, &cors->origins, cors->norigins,
                           sizeof(mesh_string_match_t));

    for (i = 0; sm && !u->bad && i < cors->norigins; i++) {
        if (mesh_unpack_match(u, &sm[i], res, err, errlen) != 0) {
            return -1;
        }
    }

    return u->bad ? -1 : 0;
}


static int
mesh_unpack_match(mesh_unpack_t *u, mesh_string_match_t *m, mesh_vec_t *res,
    char *err, size_t errlen)
{
    mesh_regex_t  *re, **slot;

    mesh_unpack_str(u, &m->value);

    if (u->bad || m->value == NULL || m->len != strlen(m->value)) {
        u->bad = 1;
        return -1;
    }

    m->regex = NULL;

    if (m->kind != MESH_MATCH_REGEX) {
        return 0;
    }

    re = mesh_regex_compile(m->value, m->len, err, errlen);
    if (re == NULL) {
        return -1;
    }

    if (res->nelts == res->nalloc) {
        size_t   n = res->nalloc ? 2 * res->nalloc : 8;
        void    *e = realloc(res->elts, n * sizeof(mesh_regex_t *));

        if (e == NULL) {
            mesh_regex_free(re);
            snprintf(err, errlen, "out of memory");
            return -1;
        }

        res->elts = e;
        res->nalloc = n;
    }

    slot = (mesh_regex_t **) res->elts + res->nelts++;
    *slot = re;
    m->regex = re;

    return 0;
}


mesh_policies_t *
mesh_policies_unpack(void *buf, size_t size, char *err, size_t errlen)
{
    size_t                    i, k, h, m;
    mesh_vec_t                res;
    mesh_unpack_t             u;
    mesh_policies_t          *p;
    mesh_destination_rule_t  *dr;
    mesh_subset_t            *sb;
    mesh_virtual_service_t   *vs;
    mesh_http_route_t        *rt;
    mesh_tcp_route_t         *tr;
    mesh_tls_route_t         *lr;
    mesh_tls_match_t         *lm;
    mesh_match_t             *ma;
    mesh_gateway_t           *gw;
    mesh_gateway_server_t    *sv;

    snprintf(err, errlen, "the packed policies are damaged");

    if (buf == NULL || size < sizeof(mesh_policies_t)
        || ((uintptr_t) buf & 7))
    {
        return NULL;
    }

    memset(&res, 0, sizeof(mesh_vec_t));
    res.size = sizeof(mesh_regex_t *);

    u.base = buf;
    u.size = size;
    u.bad = 0;

    p = buf;

    dr = mesh_unpack_array(&u, &p->rules, p->nrules,
                           sizeof(mesh_destination_rule_t));

    for (i = 0; dr && !u.bad && i < p->nrules; i++) {
        mesh_unpack_str(&u, &dr[i].policy);
        mesh_unpack_str(&u, &dr[i].name);
        mesh_unpack_str(&u, &dr[i].host);
        mesh_unpack_str(&u, &dr[i].traffic.hash_name);
        mesh_unpack_str(&u, &dr[i].traffic.cookie_path);
        mesh_unpack_locality(&u, &dr[i].traffic.locality);
        mesh_unpack_tls(&u, &dr[i].traffic.tls);
        mesh_unpack_ports(&u, &dr[i].ports, dr[i].nports);

        sb = mesh_unpack_array(&u, &dr[i].subsets, dr[i].nsubsets,
                               sizeof(mesh_subset_t));

        for (k = 0; sb && !u.bad && k < dr[i].nsubsets; k++) {
            mesh_unpack_str(&u, &sb[k].name);
            mesh_unpack_str(&u, &sb[k].policy.hash_name);
            mesh_unpack_str(&u, &sb[k].policy.cookie_path);
            mesh_unpack_locality(&u, &sb[k].policy.locality);
            mesh_unpack_tls(&u, &sb[k].policy.tls);
            mesh_unpack_ports(&u, &sb[k].ports, sb[k].nports);

            mesh_unpack_labels(&u, &sb[k].labels, sb[k].nlabels);
        }

        if (!u.bad) {
            mesh_unpack_labels(&u, &dr[i].selector, dr[i].nselector);
        }
    }

    vs = mesh_unpack_array(&u, &p->vss, p->nvss,
                           sizeof(mesh_virtual_service_t));

    for (i = 0; vs && !u.bad && i < p->nvss; i++) {
        mesh_unpack_str(&u, &vs[i].policy);
        mesh_unpack_str(&u, &vs[i].name);
        mesh_unpack_str(&u, &vs[i].ns);
        mesh_unpack_strs(&u, &vs[i].gateways, vs[i].ngateways);

        if (mesh_unpack_array(&u, (void *) &vs[i].hosts, vs[i].nhosts,
                              sizeof(char *)) != NULL)
        {
            for (k = 0; k < vs[i].nhosts; k++) {
                mesh_unpack_str(&u, &vs[i].hosts[k]);
            }
        }

        tr = mesh_unpack_array(&u, &vs[i].tcp, vs[i].ntcp,
                               sizeof(mesh_tcp_route_t));

        for (k = 0; tr && !u.bad && k < vs[i].ntcp; k++) {
            (void) mesh_unpack_array(&u, &tr[k].ports, tr[k].nports,
                                     sizeof(int));

            mesh_unpack_dests(&u, &tr[k].routes, tr[k].nroutes);
        }

        lr = mesh_unpack_array(&u, &vs[i].tls, vs[i].ntls,
                               sizeof(mesh_tls_route_t));

        for (k = 0; lr && !u.bad && k < vs[i].ntls; k++) {
            lm = mesh_unpack_array(&u, &lr[k].matches, lr[k].nmatches,
                                   sizeof(mesh_tls_match_t));

            for (h = 0; lm && !u.bad && h < lr[k].nmatches; h++) {
                mesh_unpack_strs(&u, &lm[h].sni, lm[h].nsni);
            }

            mesh_unpack_dests(&u, &lr[k].routes, lr[k].nroutes);
        }

        rt = mesh_unpack_array(&u, &vs[i].http, vs[i].nhttp,
                               sizeof(mesh_http_route_t));

        for (k = 0; rt && !u.bad && k < vs[i].nhttp; k++) {
            mesh_unpack_str(&u, &rt[k].name);
            mesh_unpack_shape(&u, &rt[k]);

            if (mesh_unpack_cors(&u, &rt[k], &res, err, errlen) != 0) {
                goto fail;
            }

            mesh_unpack_dests(&u, &rt[k].routes, rt[k].nroutes);

            if (mesh_unpack_array(&u, &rt[k].mirrors, rt[k].nmirrors,
                                  sizeof(mesh_mirror_t)) != NULL)
            {
                for (h = 0; h < rt[k].nmirrors; h++) {
                    mesh_unpack_str(&u, &rt[k].mirrors[h].subset);
                    mesh_unpack_str(&u, &rt[k].mirrors[h].host);
                }
            }

            ma = mesh_unpack_array(&u, &rt[k].matches, rt[k].nmatches,
                                   sizeof(mesh_match_t));

            for (h = 0; ma && !u.bad && h < rt[k].nmatches; h++) {
                if (mesh_unpack_ptr(&u, &ma[h].uri,
                                    sizeof(mesh_string_match_t))
                    && mesh_unpack_match(&u, ma[h].uri, &res, err, errlen)
                       != 0)
                {
                    goto fail;
                }

                mesh_unpack_labels(&u, &ma[h].source_labels,
                                   ma[h].nsource_labels);

                if (mesh_unpack_array(&u, &ma[h].headers, ma[h].nheaders,
                                      sizeof(mesh_header_match_t))
                    == NULL)
                {
                    continue;
                }

                for (m = 0; m < ma[h].nheaders; m++) {
                    mesh_unpack_str(&u, &ma[h].headers[m].name);

                    if (ma[h].headers[m].name == NULL
                        || strlen(ma[h].headers[m].name)
                           != ma[h].headers[m].name_len)
                    {
                        goto fail;
                    }

                    if (mesh_unpack_match(&u, &ma[h].headers[m].match, &res,
                                          err, errlen)
                        != 0)
                    {
                        goto fail;
                    }
                }
            }
        }
    }

    gw = mesh_unpack_array(&u, &p->gateways, p->ngateways,
                           sizeof(mesh_gateway_t));

    for (i = 0; gw && !u.bad && i < p->ngateways; i++) {
        mesh_unpack_str(&u, &gw[i].policy);
        mesh_unpack_str(&u, &gw[i].name);
        mesh_unpack_str(&u, &gw[i].gateway);
        mesh_unpack_labels(&u, &gw[i].selector, gw[i].nselector);

        sv = mesh_unpack_array(&u, &gw[i].servers, gw[i].nservers,
                               sizeof(mesh_gateway_server_t));

        for (k = 0; sv && !u.bad && k < gw[i].nservers; k++) {
            mesh_unpack_strs(&u, &sv[k].hosts, sv[k].nhosts);
        }
    }

    if (u.bad) {
        goto fail;
    }

    p->arena = NULL;
    p->regexes = res.elts;
    p->nregexes = res.nelts;

    err[0] = '\0';

    return p;

fail:

    for (i = 0; i < res.nelts; i++) {
        mesh_regex_free(((mesh_regex_t **) res.elts)[i]);
    }

    free(res.elts);

    return NULL;
}
