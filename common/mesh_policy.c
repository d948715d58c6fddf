/*
 * mesh_policy: the snapshot's "policies" array (docs/policies.md, "In the
 * snapshot") read with mesh_json's strict reader into plain C.
 *
 * Each object is read twice: a first pass finds its "kind" (keys come in
 * any order), the second reads the fields of that kind. Arrays grow in
 * scratch vectors local to the function that reads them and are copied
 * into the arena when they end; everything else is allocated from the
 * arena, which mesh_policies_free() releases at once. The kinds are read
 * in mesh_policy_dr.c and mesh_policy_vs.c with the helpers here; the
 * packed form is mesh_policy_pack.c's.
 */

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_json.h"
#include "mesh_name.h"
#include "mesh_policy.h"
#include "mesh_policy_int.h"
#include "mesh_regex.h"


static int mesh_policy_kind(mesh_json_t *j, int *kind);
static int mesh_equal_nocase(const char *a, const char *b, size_t len);

mesh_policies_t *
mesh_policies_parse(const char *json, size_t len, char *err, size_t errlen)
{
    int                       rc, kind;
    size_t                    n, i;
    mesh_json_t               j;
    mesh_vec_t                rules, vss, gws, regexes;
    mesh_arena_t             *arena;
    mesh_policies_t          *p;
    mesh_virtual_service_t   *vs;
    mesh_destination_rule_t  *dr;
    mesh_gateway_t           *gw;

    if (err && errlen) {
        err[0] = '\0';
    }

    memset(&j, 0, sizeof(mesh_json_t));
    memset(&rules, 0, sizeof(mesh_vec_t));
    memset(&vss, 0, sizeof(mesh_vec_t));
    memset(&gws, 0, sizeof(mesh_vec_t));
    memset(&regexes, 0, sizeof(mesh_vec_t));

    rules.size = sizeof(mesh_destination_rule_t);
    vss.size = sizeof(mesh_virtual_service_t);
    gws.size = sizeof(mesh_gateway_t);
    regexes.size = sizeof(mesh_regex_t *);

    if (json == NULL) {
        json = "";
        len = 0;
    }

    j.start = (const unsigned char *) json;
    j.pos = j.start;
    j.end = j.start + len;
    j.err = err;
    j.errlen = errlen;
    j.what = "policies";
    j.data = &regexes;             /* every regex compiled, to free */

    arena = calloc(1, sizeof(mesh_arena_t));
    if (arena == NULL) {
        mesh_json_error(&j, j.pos, "out of memory");
        return NULL;
    }

    j.arena = arena;

    p = mesh_arena_alloc(arena, sizeof(mesh_policies_t));
    if (p == NULL) {
        mesh_json_error(&j, j.pos, "out of memory");
        goto fail;
    }

    memset(p, 0, sizeof(mesh_policies_t));
    p->arena = arena;

    mesh_json_ws(&j);

    if (mesh_policy_open(&j, '[', "\"policies\"") != 0) {
        goto fail;
    }

    n = 0;

    while ((rc = mesh_json_next_element(&j, &n)) == 1) {

        if (mesh_policy_kind(&j, &kind) != 0) {
            goto fail;
        }

        if (kind == MESH_KIND_RULE) {
            dr = mesh_vec_push(&j, &rules);
            if (dr == NULL || mesh_policy_rule(&j, dr) != 0) {
                goto fail;
            }

        } else if (kind == MESH_KIND_GW) {
            gw = mesh_vec_push(&j, &gws);
            if (gw == NULL || mesh_policy_gateway(&j, gw) != 0) {
                goto fail;
            }

        } else {
            vs = mesh_vec_push(&j, &vss);
            if (vs == NULL || mesh_policy_vs(&j, vs) != 0) {
                goto fail;
            }
        }
    }

    if (rc != 0) {
        goto fail;
    }

    mesh_json_ws(&j);

    if (j.pos != j.end) {
        mesh_json_error(&j, j.pos, "unexpected data after the policies");
        goto fail;
    }

    p->nrules = rules.nelts;
    p->rules = mesh_policy_copy(&j, &rules);

    p->nvss = vss.nelts;
    p->vss = mesh_policy_copy(&j, &vss);

    p->ngateways = gws.nelts;
    p->gateways = mesh_policy_copy(&j, &gws);

    if (j.failed) {
        goto fail;
    }

    free(rules.elts);
    free(vss.elts);
    free(gws.elts);
    free(j.buf);

    p->regexes = regexes.elts;
    p->nregexes = regexes.nelts;

    return p;

fail:

    free(rules.elts);
    free(vss.elts);
    free(gws.elts);
    free(j.buf);

    for (i = 0; i < regexes.nelts; i++) {
        mesh_regex_free(((mesh_regex_t **) regexes.elts)[i]);
    }

    free(regexes.elts);

    mesh_arena_destroy(arena);

    return NULL;
}


void
mesh_policies_free(mesh_policies_t *p)
{
    size_t  i;

    if (p == NULL) {
        return;
    }

    for (i = 0; i < p->nregexes; i++) {
        mesh_regex_free(((mesh_regex_t **) p->regexes)[i]);
    }

    free(p->regexes);

    /* p itself lives in the arena, or in an unpacked block (its owner's) */
    if (p->arena) {
        mesh_arena_destroy(p->arena);
    }
}


const mesh_destination_rule_t *
mesh_policies_rule(const mesh_policies_t *p, const char *host, size_t len)
{
    int                             m, best;
    size_t                          i;
    const mesh_destination_rule_t  *dr;

    if (p == NULL || host == NULL) {
        return NULL;
    }

    /* registryd allows one per host: the first one wins if not */

    for (i = 0; i < p->nrules; i++) {
        if (strlen(p->rules[i].host) == len
            && memcmp(p->rules[i].host, host, len) == 0)
        {
            return &p->rules[i];
        }
    }

    /* none of its own: the most specific wildcard */

    dr = NULL;
    best = -1;

    for (i = 0; i < p->nrules; i++) {
        if (p->rules[i].host[0] != '*') {
            continue;
        }

        m = mesh_host_match(p->rules[i].host, host, len, 0);

        if (m > best) {
            best = m;
            dr = &p->rules[i];
        }
    }

    return dr;
}


const mesh_virtual_service_t *
mesh_policies_vs(const mesh_policies_t *p, const char *host, size_t len)
{
    int                            m, best;
    size_t                         i, k;
    const mesh_virtual_service_t  *vs, *found;

    if (p == NULL || host == NULL) {
        return NULL;
    }

    for (i = 0; i < p->nvss; i++) {
        vs = &p->vss[i];

        if (!vs->mesh) {
            continue;
        }

        for (k = 0; k < vs->nhosts; k++) {
            if (strlen(vs->hosts[k]) == len
                && memcmp(vs->hosts[k], host, len) == 0)
            {
                return vs;
            }
        }
    }

    found = NULL;
    best = -1;

    for (i = 0; i < p->nvss; i++) {
        vs = &p->vss[i];

        if (!vs->mesh) {
            continue;
        }

        for (k = 0; k < vs->nhosts; k++) {
            if (vs->hosts[k][0] != '*') {
                continue;
            }

            m = mesh_host_match(vs->hosts[k], host, len, 0);

            if (m > best) {
                best = m;
                found = vs;
            }
        }
    }

    return found;
}


const mesh_gateway_t *
mesh_policies_gateway(const mesh_policies_t *p, const char *name,
    size_t len)
{
    size_t  i;

    if (p == NULL || name == NULL) {
        return NULL;
    }

    for (i = 0; i < p->ngateways; i++) {
        if (strlen(p->gateways[i].gateway) == len
            && memcmp(p->gateways[i].gateway, name, len) == 0)
        {
            return &p->gateways[i];
        }
    }

    return NULL;
}


int
mesh_vs_at_gateway(const mesh_virtual_service_t *vs, const char *name)
{
    size_t  i;

    for (i = 0; i < vs->ngateways; i++) {
        if (strcmp(vs->gateways[i], name) == 0) {
            return 1;
        }
    }

    return 0;
}


int
mesh_tcp_route_fits(const mesh_tcp_route_t *r, int port)
{
    size_t  i;

    for (i = 0; i < r->nports; i++) {
        if (r->ports[i] == port) {
            return 1;
        }
    }

    return r->nports == 0;
}


int
mesh_tls_route_match(const mesh_tls_route_t *r, int port, const char *sni,
    size_t len)
{
    int                      rank, best;
    size_t                   i, k;
    const mesh_tls_match_t  *m;

    best = -1;

    if (len == 0) {
        return best;
    }

    for (i = 0; i < r->nmatches; i++) {
        m = &r->matches[i];

        if (m->port && m->port != port) {
            continue;
        }

        for (k = 0; k < m->nsni; k++) {
            rank = mesh_host_match(m->sni[k], sni, len, 1);

            if (rank > best) {
                best = rank;
            }
        }
    }

    return best;
}


const mesh_subset_t *
mesh_rule_subset(const mesh_destination_rule_t *dr, const char *name)
{
    size_t  i;

    if (dr == NULL || name == NULL) {
        return NULL;
    }

    for (i = 0; i < dr->nsubsets; i++) {
        if (strcmp(dr->subsets[i].name, name) == 0) {
            return &dr->subsets[i];
        }
    }

    return NULL;
}


const mesh_traffic_policy_t *
mesh_rule_traffic(const mesh_destination_rule_t *dr,
    const mesh_subset_t *subset, int port)
{
    size_t                     i, n;
    const mesh_port_policy_t  *pp;

    pp = subset ? subset->ports : dr->ports;
    n = subset ? subset->nports : dr->nports;

    for (i = 0; port && i < n; i++) {
        if (pp[i].port == port) {
            return &pp[i].policy;
        }
    }

    return subset ? &subset->policy : &dr->traffic;
}


int
mesh_instance_in_subset(const mesh_instance_t *in, const mesh_subset_t *s)
{
    if (s == NULL) {
        return 1;
    }

    if (in == NULL) {
        return 0;
    }

    /* the instance's labels are sorted by key (mesh_snapshot sorts them) */

    return mesh_labels_hold(in->labels, in->nlabels, s->labels, s->nlabels);
}


int
mesh_labels_hold(const mesh_label_t *have, size_t nhave,
    const mesh_label_t *want, size_t nwant)
{
    int     rc;
    size_t  i, lo, hi, mid;

    mid = 0;

    for (i = 0; i < nwant; i++) {
        lo = 0;
        hi = nhave;
        rc = -1;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;
            rc = strcmp(have[mid].key, want[i].key);

            if (rc == 0) {
                break;
            }

            if (rc < 0) {
                lo = mid + 1;

            } else {
                hi = mid;
            }
        }

        if (rc != 0 || strcmp(have[mid].value, want[i].value) != 0) {
            return 0;
        }
    }

    return 1;
}


/* ASCII letters in any case, as Envoy compares a path that ignores case */

static int
mesh_equal_nocase(const char *a, const char *b, size_t len)
{
    size_t         i;
    unsigned char  ca, cb;

    for (i = 0; i < len; i++) {
        ca = (unsigned char) a[i];
        cb = (unsigned char) b[i];

        if (ca >= 'A' && ca <= 'Z') {
            ca = (unsigned char) (ca - 'A' + 'a');
        }

        if (cb >= 'A' && cb <= 'Z') {
            cb = (unsigned char) (cb - 'A' + 'a');
        }

        if (ca != cb) {
            return 0;
        }
    }

    return 1;
}


int
mesh_string_match(const mesh_string_match_t *m, const char *s, size_t len,
    mesh_regex_match_pt re_match)
{
    if (m == NULL) {
        return 1;
    }

    switch (m->kind) {

    case MESH_MATCH_EXACT:
        if (len != m->len) {
            return 0;
        }

        break;

    case MESH_MATCH_PREFIX:
        if (len < m->len) {
            return 0;
        }

        break;

    case MESH_MATCH_REGEX:
        if (m->regex == NULL) {
            return 0;
        }

        if (re_match == NULL) {
            return mesh_regex_match(m->regex, s ? s : "", len) == 1;
        }

        return re_match(m->regex, s ? s : "", len) == 1;

    default:
        return 0;
    }

    /* exact and prefix: the first m->len bytes */

    if (m->len == 0) {
        return 1;
    }

    if (m->ignore_case) {
        return mesh_equal_nocase(s, m->value, m->len);
    }

    return memcmp(s, m->value, m->len) == 0;
}


int
mesh_route_pick(const mesh_http_route_t *route, uint32_t r)
{
    if (route == NULL) {
        return -1;
    }

    return mesh_destination_pick(route->routes, route->nroutes, r);
}


int
mesh_destination_pick(const mesh_destination_t *d, size_t n, uint32_t r)
{
    size_t    i;
    uint64_t  sum, x, acc;

    sum = 0;

    for (i = 0; i < n; i++) {
        if (d[i].weight > 0) {
            sum += (uint64_t) d[i].weight;
        }
    }

    if (sum == 0 || n > INT_MAX) {
        return -1;
    }

    x = r % sum;
    acc = 0;

    for (i = 0; i < n; i++) {
        if (d[i].weight > 0) {
            acc += (uint64_t) d[i].weight;

            if (acc > x) {
                return (int) i;
            }
        }
    }

    return -1;
}


/* the first pass over an object: its "kind"; j->pos is left where it was */

static int
mesh_policy_kind(mesh_json_t *j, int *kind)
{
    int                   rc, found;
    size_t                n, klen, vlen;
    const unsigned char  *key, *val, *start, *at;

    start = j->pos;
    found = 0;

    if (mesh_policy_open(j, '{', "a policy") != 0) {
        return -1;
    }

    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {

        if (!mesh_json_key_is(key, klen, "kind")) {
            if (mesh_json_skip(j, 2) != 0) {
                return -1;
            }

            continue;
        }

        if (found) {
            mesh_json_error(j, j->key_at, "duplicate field \"kind\"");
            return -1;
        }

        found = 1;
        at = j->pos;

        if (*at != '"') {
            mesh_json_error(j, at, "\"kind\" must be a string");
            return -1;
        }

        if (mesh_json_string(j, &val, &vlen) != 0) {
            return -1;
        }

        if (mesh_json_key_is(val, vlen, "DestinationRule")) {
            *kind = MESH_KIND_RULE;

        } else if (mesh_json_key_is(val, vlen, "VirtualService")) {
            *kind = MESH_KIND_VS;

        } else if (mesh_json_key_is(val, vlen, "Gateway")) {
            *kind = MESH_KIND_GW;

        } else {
            mesh_json_error(j, at, "unknown \"kind\" \"%.*s\"",
                            (int) (vlen > 64 ? 64 : vlen), (const char *) val);
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!found) {
        mesh_json_error(j, start, "a policy without \"kind\"");
        return -1;
    }

    j->pos = start;

    return 0;
}


/* helpers */

int
mesh_policy_open(mesh_json_t *j, unsigned char c, const char *what)
{
    if (j->pos < j->end && *j->pos != c) {
        mesh_json_error(j, j->pos, "%s must be %s", what,
                        c == '{' ? "an object" : "an array");
        return -1;
    }

    return mesh_json_expect(j, c);
}


/*
 * The index of key in keys, marked in *seen; -1 for a key not in keys;
 * -2, with the error, for a key seen before in the object.
 */

int
mesh_policy_key(mesh_json_t *j, const char *const *keys,
    const unsigned char *key, size_t klen, unsigned *seen)
{
    int  i;

    for (i = 0; keys[i]; i++) {
        if (strlen(keys[i]) == klen && memcmp(keys[i], key, klen) == 0) {
            if (*seen & (1u << i)) {
                mesh_json_error(j, j->key_at, "duplicate field \"%s\"",
                                keys[i]);
                return -2;
            }

            *seen |= 1u << i;
            return i;
        }
    }

    return -1;
}


/* a non-empty string, in the arena */

char *
mesh_policy_name(mesh_json_t *j, const char *what)
{
    char                 *s;
    const unsigned char  *at;

    at = j->pos;

    s = mesh_json_cstr(j, what);
    if (s == NULL) {
        return NULL;
    }

    if (s[0] == '\0') {
        mesh_json_error(j, at, "%s is an empty string", what);
        return NULL;
    }

    return s;
}


int
mesh_policy_int(mesh_json_t *j, const char *what, int min, int max,
    int *value)
{
    uint64_t  v;

    if (mesh_json_uint(j, what, (uint64_t) min, (uint64_t) max, &v) != 0) {
        return -1;
    }

    *value = (int) v;

    return 0;
}


int
mesh_policy_ms(mesh_json_t *j, const char *what, int64_t min,
    int64_t *value)
{
    uint64_t  v;

    if (mesh_json_uint(j, what, (uint64_t) min, MESH_MS_MAX, &v) != 0) {
        return -1;
    }

    *value = (int64_t) v;

    return 0;
}


int
mesh_policy_bool(mesh_json_t *j, const char *what, int *value)
{
    if (j->end - j->pos >= 4 && memcmp(j->pos, "true", 4) == 0) {
        j->pos += 4;
        *value = 1;
        return 0;
    }

    if (j->end - j->pos >= 5 && memcmp(j->pos, "false", 5) == 0) {
        j->pos += 5;
        *value = 0;
        return 0;
    }

    mesh_json_error(j, j->pos, "\"%s\" must be true or false", what);

    return -1;
}


/* the vector's elements in the arena; NULL when none (or on an error) */

/*
 * A JSON array of objects, each read by parse, copied into the arena.
 * Failure sets j->failed (an empty array is NULL with *nelts 0).
 */
void *
mesh_policy_list(mesh_json_t *j, const char *what, size_t size,
    int (*parse)(mesh_json_t *j, void *elt), size_t *nelts)
{
    int          rc;
    void        *elt, *elts;
    size_t       n;
    mesh_vec_t   v;

    *nelts = 0;

    if (mesh_policy_open(j, '[', what) != 0) {
        return NULL;
    }

    memset(&v, 0, sizeof(mesh_vec_t));
    v.size = size;
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        elt = mesh_vec_push(j, &v);
        if (elt == NULL || parse(j, elt) != 0) {
            rc = -1;
            break;
        }
    }

    elts = NULL;

    if (rc != 0 && !j->failed) {
        mesh_json_error(j, j->pos, "invalid %s", what);
    }

    if (rc == 0) {
        *nelts = v.nelts;
        elts = mesh_policy_copy(j, &v);
    }

    free(v.elts);

    return elts;
}


void *
mesh_policy_copy(mesh_json_t *j, mesh_vec_t *v)
{
    void  *elts;

    if (v->nelts == 0) {
        return NULL;
    }

    elts = mesh_arena_alloc(j->arena, v->nelts * v->size);
    if (elts == NULL) {
        mesh_json_error(j, j->pos, "out of memory");
        return NULL;
    }

    memcpy(elts, v->elts, v->nelts * v->size);

    return elts;
}


int
mesh_cmp_labels(const void *one, const void *two)
{
    const mesh_label_t  *a = one;
    const mesh_label_t  *b = two;

    return strcmp(a->key, b->key);
}


/* a map of labels, sorted by key, as the instances' labels are */

int
mesh_policy_labels(mesh_json_t *j, const char *what, mesh_label_t **out,
    size_t *nout)
{
    int                   rc;
    char                 *k;
    size_t                n, i, klen;
    mesh_vec_t            v;
    mesh_label_t         *label, *labels;
    const unsigned char  *key;

    if (mesh_policy_open(j, '{', what) != 0) {
        return -1;
    }

    memset(&v, 0, sizeof(mesh_vec_t));
    v.size = sizeof(mesh_label_t);
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {

        /* the key may sit in j->buf, which the value reuses: copy first */

        if (memchr(key, '\0', klen)) {
            mesh_json_error(j, j->key_at, "a label name holds \\u0000");
            goto fail;
        }

        k = mesh_arena_alloc(j->arena, klen + 1);
        if (k == NULL) {
            mesh_json_error(j, j->key_at, "out of memory");
            goto fail;
        }

        memcpy(k, key, klen);
        k[klen] = '\0';

        label = mesh_vec_push(j, &v);
        if (label == NULL) {
            goto fail;
        }

        label->key = k;

        label->value = mesh_json_cstr(j, "a label value");
        if (label->value == NULL) {
            goto fail;
        }
    }

    if (rc != 0) {
        goto fail;
    }

    labels = v.elts;

    if (v.nelts > 1) {
        qsort(labels, v.nelts, sizeof(mesh_label_t), mesh_cmp_labels);
    }

    for (i = 1; i < v.nelts; i++) {
        if (strcmp(labels[i - 1].key, labels[i].key) == 0) {
            mesh_json_error(j, j->pos, "duplicate label \"%.64s\"",
                            labels[i].key);
            goto fail;
        }
    }

    *nout = v.nelts;
    *out = mesh_policy_copy(j, &v);

    free(v.elts);

    return j->failed ? -1 : 0;

fail:

    free(v.elts);

    return -1;
}


/* an array of non-empty strings, in the arena */

int
mesh_policy_strings(mesh_json_t *j, const char *what, const char ***out,
    size_t *nout)
{
    int           rc;
    size_t        n;
    mesh_vec_t    v;
    const char  **s;

    if (mesh_policy_open(j, '[', what) != 0) {
        return -1;
    }

    memset(&v, 0, sizeof(mesh_vec_t));
    v.size = sizeof(const char *);
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        s = mesh_vec_push(j, &v);
        if (s == NULL) {
            goto fail;
        }

        *s = mesh_policy_name(j, what);
        if (*s == NULL) {
            goto fail;
        }
    }

    if (rc != 0) {
        goto fail;
    }

    *nout = v.nelts;
    *out = mesh_policy_copy(j, &v);

    free(v.elts);

    return j->failed ? -1 : 0;

fail:

    free(v.elts);

    return -1;
}
