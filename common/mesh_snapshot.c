/*
 * mesh_snapshot: registryd's snapshot, read with mesh_json's strict reader.
 *
 * One pass over the text, no tree: the known fields are read into plain
 * structures as they come, anything else is checked and skipped. Strings
 * are copied into an arena that mesh_snapshot_free() releases at once.
 * Growing arrays (services, instances, labels) live in scratch vectors
 * owned by the parser and are copied into the arena when their JSON array
 * ends. One reader of one document (a complete snapshot or a delta, the
 * same grammar), kept in one file though it passes 1,000 lines: its parts
 * are the levels of that document.
 */

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_addr.h"
#include "mesh_json.h"
#include "mesh_name.h"
#include "mesh_snapshot.h"


/* a field seen once already */
#define MESH_F_ID             0x0001
#define MESH_F_ADDRESS        0x0002
#define MESH_F_PORT           0x0004
#define MESH_F_WEIGHT         0x0008
#define MESH_F_ZONE           0x0010
#define MESH_F_HEALTH         0x0020
#define MESH_F_LABELS         0x0040
#define MESH_F_NAME           0x0080
#define MESH_F_INSTANCES      0x0100
#define MESH_F_INDEX          0x0200
#define MESH_F_SERVICES       0x0400
#define MESH_F_POLICIES       0x0800
#define MESH_F_REGISTRY       0x1000
#define MESH_F_DELTA          0x2000
#define MESH_F_REMOVED        0x4000


/* scratch elements remember where they started, for error messages */

typedef struct {
    mesh_label_t         label;
    size_t               offset;
} mesh_label_item_t;


typedef struct {
    mesh_instance_t      instance;
    size_t               offset;
} mesh_instance_item_t;


typedef struct {
    mesh_service_t       service;
    size_t               offset;
} mesh_service_item_t;


/* the parser's scratch vectors, in mesh_json_t.data */

typedef struct {
    mesh_vec_t           services;
    mesh_vec_t           instances;
    mesh_vec_t           labels;
} mesh_snapshot_scratch_t;


static int mesh_snapshot_services(mesh_json_t *j, mesh_snapshot_t *s);
static int mesh_snapshot_hex(const unsigned char *p, size_t len,
    uint64_t *v);
static int mesh_snapshot_service_obj(mesh_json_t *j,
    mesh_service_item_t *item);
static int mesh_snapshot_instance(mesh_json_t *j, mesh_instance_item_t *item);
static int mesh_snapshot_labels(mesh_json_t *j, mesh_instance_t *in);
static int mesh_snapshot_removed(mesh_json_t *j, mesh_service_t *svc);
static int mesh_cmp_strings(const void *one, const void *two);
static int mesh_cmp_labels(const void *one, const void *two);
static int mesh_cmp_instances(const void *one, const void *two);
static int mesh_cmp_services(const void *one, const void *two);


mesh_snapshot_t *
mesh_snapshot_parse(const char *json, size_t len, char *err, size_t errlen)
{
    int                      rc;
    size_t                   n, klen, slen;
    unsigned                 seen;
    uint64_t                 index;
    mesh_json_t              j;
    const unsigned char     *str;
    mesh_arena_t            *arena;
    mesh_snapshot_t         *s;
    const unsigned char     *key, *start;
    mesh_snapshot_scratch_t  sc;

    if (err && errlen) {
        err[0] = '\0';
    }

    memset(&j, 0, sizeof(mesh_json_t));

    j.start = (const unsigned char *) json;
    j.pos = j.start;
    j.end = j.start + len;
    j.err = err;
    j.errlen = errlen;
    j.what = "snapshot";

    memset(&sc, 0, sizeof(mesh_snapshot_scratch_t));

    sc.services.size = sizeof(mesh_service_item_t);
    sc.instances.size = sizeof(mesh_instance_item_t);
    sc.labels.size = sizeof(mesh_label_item_t);

    j.data = &sc;

    if (json == NULL) {
        j.start = (const unsigned char *) "";
        j.pos = j.start;
        j.end = j.start;
    }

    arena = calloc(1, sizeof(mesh_arena_t));
    if (arena == NULL) {
        mesh_json_error(&j, j.pos, "out of memory");
        return NULL;
    }

    j.arena = arena;

    s = mesh_arena_alloc(arena, sizeof(mesh_snapshot_t));
    if (s == NULL) {
        mesh_json_error(&j, j.pos, "out of memory");
        goto fail;
    }

    memset(s, 0, sizeof(mesh_snapshot_t));
    s->arena = arena;
    s->policies = "[]";
    s->policies_len = 2;

    seen = 0;
    index = 0;

    mesh_json_ws(&j);

    if (j.pos < j.end && *j.pos != '{') {
        mesh_json_error(&j, j.pos, "the snapshot is not a JSON object");
        goto fail;
    }

    if (mesh_json_expect(&j, '{') != 0) {
        goto fail;
    }

    n = 0;

    while ((rc = mesh_json_next_member(&j, &n, &key, &klen)) == 1) {

        if (mesh_json_key_is(key, klen, "index")) {
            if (seen & MESH_F_INDEX) {
                goto duplicate;
            }

            seen |= MESH_F_INDEX;

            if (mesh_json_uint(&j, "index", 0, UINT64_MAX, &index) != 0) {
                goto fail;
            }

        } else if (mesh_json_key_is(key, klen, "services")) {
            if (seen & MESH_F_SERVICES) {
                goto duplicate;
            }

            seen |= MESH_F_SERVICES;

            if (mesh_snapshot_services(&j, s) != 0) {
                goto fail;
            }

        } else if (mesh_json_key_is(key, klen, "registry")) {
            if (seen & MESH_F_REGISTRY) {
                goto duplicate;
            }

            seen |= MESH_F_REGISTRY;
            start = j.pos;

            if (mesh_json_string(&j, &str, &slen) != 0) {
                goto fail;
            }

            if (mesh_snapshot_hex(str, slen, &s->registry) != 0) {
                mesh_json_error(&j, start, "\"registry\" must be 1 to 16 "
                                "hex digits");
                goto fail;
            }

        } else if (mesh_json_key_is(key, klen, "delta")) {
            if (seen & MESH_F_DELTA) {
                goto duplicate;
            }

            seen |= MESH_F_DELTA;

            if (j.end - j.pos >= 4 && memcmp(j.pos, "true", 4) == 0) {
                s->delta = 1;
                j.pos += 4;

            } else if (j.end - j.pos >= 5 && memcmp(j.pos, "false", 5) == 0) {
                j.pos += 5;

            } else {
                mesh_json_error(&j, j.pos, "\"delta\" must be true or false");
                goto fail;
            }

        } else if (mesh_json_key_is(key, klen, "policies")) {
            if (seen & MESH_F_POLICIES) {
                goto duplicate;
            }

            seen |= MESH_F_POLICIES;
            s->has_policies = 1;
            start = j.pos;

            if (start < j.end && *start != '[' && *start != '{') {
                mesh_json_error(&j, start,
                                "\"policies\" must be an array or an object");
                goto fail;
            }

            if (mesh_json_skip(&j, 1) != 0) {
                goto fail;
            }

            s->policies_len = j.pos - start;
            s->policies = mesh_arena_alloc(arena, s->policies_len + 1);
            if (s->policies == NULL) {
                mesh_json_error(&j, start, "out of memory");
                goto fail;
            }

            memcpy((char *) s->policies, start, s->policies_len);
            ((char *) s->policies)[s->policies_len] = '\0';

        } else if (mesh_json_skip(&j, 1) != 0) {
            goto fail;
        }
    }

    if (rc != 0) {
        goto fail;
    }

    mesh_json_ws(&j);

    if (j.pos != j.end) {
        mesh_json_error(&j, j.pos, "unexpected data after the snapshot");
        goto fail;
    }

    if (!(seen & MESH_F_INDEX)) {
        mesh_json_error(&j, j.start, "the snapshot has no \"index\"");
        goto fail;
    }

    s->index = index;

    free(sc.services.elts);
    free(sc.instances.elts);
    free(sc.labels.elts);
    free(j.buf);

    return s;

duplicate:

    mesh_json_error(&j, j.key_at, "duplicate field \"%.*s\"", (int) klen,
                    (const char *) key);

fail:

    free(sc.services.elts);
    free(sc.instances.elts);
    free(sc.labels.elts);
    free(j.buf);

    mesh_arena_destroy(arena);

    return NULL;
}


void
mesh_snapshot_free(mesh_snapshot_t *s)
{
    if (s == NULL) {
        return;
    }

    /* s itself lives in the arena */
    mesh_arena_destroy(s->arena);
}


const mesh_service_t *
mesh_snapshot_service(const mesh_snapshot_t *s, const char *name, size_t len)
{
    int                    rc;
    size_t                 lo, hi, mid, k;
    const unsigned char   *a, *b;

    if (s == NULL) {
        return NULL;
    }

    lo = 0;
    hi = s->nservices;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        a = (const unsigned char *) s->services[mid].name;
        b = (const unsigned char *) name;

        /* strcmp() order of the NUL-terminated a against b[0..len) */

        rc = 0;

        for (k = 0; k < len; k++) {
            if (a[k] != b[k]) {
                rc = (int) a[k] - (int) b[k];
                break;
            }
        }

        if (rc == 0 && a[len] != '\0') {
            rc = 1;
        }

        if (rc == 0) {
            return &s->services[mid];
        }

        if (rc < 0) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return NULL;
}


static int
mesh_snapshot_services(mesh_json_t *j, mesh_snapshot_t *s)
{
    int                       rc;
    size_t                    n, i;
    mesh_service_t           *svc;
    mesh_service_item_t      *item, *items;
    mesh_snapshot_scratch_t  *sc;

    sc = j->data;

    if (j->pos < j->end && *j->pos != '[') {
        mesh_json_error(j, j->pos, "\"services\" must be an array");
        return -1;
    }

    if (mesh_json_expect(j, '[') != 0) {
        return -1;
    }

    sc->services.nelts = 0;
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        item = mesh_vec_push(j, &sc->services);
        if (item == NULL) {
            return -1;
        }

        if (mesh_snapshot_service_obj(j, item) != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    items = sc->services.elts;
    n = sc->services.nelts;

    /* registryd sends them sorted: sort only when they are not */

    for (i = 1; i < n; i++) {
        if (strcmp(items[i - 1].service.name, items[i].service.name) >= 0) {
            qsort(items, n, sizeof(mesh_service_item_t), mesh_cmp_services);
            break;
        }
    }

    for (i = 1; i < n; i++) {
        if (strcmp(items[i - 1].service.name, items[i].service.name) == 0) {
            item = items[i - 1].offset > items[i].offset ? &items[i - 1]
                                                          : &items[i];
            mesh_json_error(j, j->start + item->offset,
                            "duplicate service \"%s\"", item->service.name);
            return -1;
        }
    }

    if (n == 0) {
        return 0;
    }

    svc = mesh_arena_alloc(j->arena, n * sizeof(mesh_service_t));
    if (svc == NULL) {
        mesh_json_error(j, j->pos, "out of memory");
        return -1;
    }

    for (i = 0; i < n; i++) {
        svc[i] = items[i].service;
    }

    s->services = svc;
    s->nservices = n;

    return 0;
}


static int
mesh_snapshot_service_obj(mesh_json_t *j, mesh_service_item_t *item)
{
    int                       rc;
    size_t                    n, i, m, k, klen;
    unsigned                  seen;
    mesh_instance_t          *in;
    mesh_service_t           *svc;
    const unsigned char      *key, *start;
    mesh_instance_item_t     *it, *items;
    mesh_snapshot_scratch_t  *sc;

    sc = j->data;
    svc = &item->service;
    memset(svc, 0, sizeof(mesh_service_t));

    start = j->pos;
    item->offset = start - j->start;

    if (j->pos < j->end && *j->pos != '{') {
        mesh_json_error(j, j->pos, "a service must be an object");
        return -1;
    }

    if (mesh_json_expect(j, '{') != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {

        if (mesh_json_key_is(key, klen, "name")) {
            if (seen & MESH_F_NAME) {
                goto duplicate;
            }

            seen |= MESH_F_NAME;

            svc->name = mesh_json_cstr(j, "\"name\"");
            if (svc->name == NULL) {
                return -1;
            }

            if (svc->name[0] == '\0') {
                mesh_json_error(j, j->key_at, "empty service \"name\"");
                return -1;
            }

            /* names reach log lines and Prometheus labels as they are */
            if (!mesh_name_valid(svc->name, strlen(svc->name))) {
                mesh_json_error(j, j->key_at, "service \"name\" is not "
                                MESH_NAME_RULE);
                return -1;
            }

        } else if (mesh_json_key_is(key, klen, "instances")) {
            if (seen & MESH_F_INSTANCES) {
                goto duplicate;
            }

            seen |= MESH_F_INSTANCES;

            if (j->pos < j->end && *j->pos != '[') {
                mesh_json_error(j, j->pos, "\"instances\" must be an array");
                return -1;
            }

            if (mesh_json_expect(j, '[') != 0) {
                return -1;
            }

            sc->instances.nelts = 0;
            m = 0;

            while ((rc = mesh_json_next_element(j, &m)) == 1) {
                it = mesh_vec_push(j, &sc->instances);
                if (it == NULL) {
                    return -1;
                }

                if (mesh_snapshot_instance(j, it) != 0) {
                    return -1;
                }
            }

            if (rc != 0) {
                return -1;
            }

            /* copied out below, once the name is known */

        } else if (mesh_json_key_is(key, klen, "removed")) {
            if (seen & MESH_F_REMOVED) {
                goto duplicate;
            }

            seen |= MESH_F_REMOVED;

            if (mesh_snapshot_removed(j, svc) != 0) {
                return -1;
            }

        } else if (mesh_json_skip(j, 3) != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!(seen & MESH_F_NAME)) {
        mesh_json_error(j, start, "a service without \"name\"");
        return -1;
    }

    if (!(seen & MESH_F_INSTANCES)) {
        mesh_json_error(j, start, "service \"%s\" without \"instances\"",
                        svc->name);
        return -1;
    }

    items = sc->instances.elts;
    m = sc->instances.nelts;

    for (i = 1; i < m; i++) {
        if (strcmp(items[i - 1].instance.id, items[i].instance.id) >= 0) {
            qsort(items, m, sizeof(mesh_instance_item_t), mesh_cmp_instances);
            break;
        }
    }

    for (i = 1; i < m; i++) {
        if (strcmp(items[i - 1].instance.id, items[i].instance.id) == 0) {
            it = items[i - 1].offset > items[i].offset ? &items[i - 1]
                                                        : &items[i];
            mesh_json_error(j, j->start + it->offset,
                            "duplicate instance \"%s\" in service \"%s\"",
                            it->instance.id, svc->name);
            return -1;
        }
    }

    /* an id is either there or gone */
    for (i = 0, k = 0; i < m && k < svc->nremoved; ) {
        rc = strcmp(items[i].instance.id, svc->removed[k]);

        if (rc == 0) {
            mesh_json_error(j, start, "instance \"%s\" of service \"%s\" "
                            "both changed and removed", svc->removed[k],
                            svc->name);
            return -1;
        }

        if (rc < 0) {
            i++;
        } else {
            k++;
        }
    }

    if (m == 0) {
        return 0;
    }

    in = mesh_arena_alloc(j->arena, m * sizeof(mesh_instance_t));
    if (in == NULL) {
        mesh_json_error(j, j->pos, "out of memory");
        return -1;
    }

    for (i = 0; i < m; i++) {
        in[i] = items[i].instance;
    }

    svc->instances = in;
    svc->ninstances = m;

    return 0;

duplicate:

    mesh_json_error(j, j->key_at, "duplicate field \"%.*s\"", (int) klen,
                    (const char *) key);
    return -1;
}


static int
mesh_snapshot_hex(const unsigned char *p, size_t len, uint64_t *v)
{
    size_t    i;
    uint64_t  r;

    if (len == 0 || len > 16) {
        return -1;
    }

    r = 0;

    for (i = 0; i < len; i++) {
        if (p[i] >= '0' && p[i] <= '9') {
            r = r * 16 + (p[i] - '0');

        } else if (p[i] >= 'a' && p[i] <= 'f') {
            r = r * 16 + (p[i] - 'a' + 10);

        } else if (p[i] >= 'A' && p[i] <= 'F') {
            r = r * 16 + (p[i] - 'A' + 10);

        } else {
            return -1;
        }
    }

    *v = r;

    return 0;
}


/* "removed": ["id", ...] of a delta, sorted and unique */
static int
mesh_snapshot_removed(mesh_json_t *j, mesh_service_t *svc)
{
    int           rc;
    char         *id;
    size_t        n, i, cap;
    const char  **ids, **nids;

    if (j->pos < j->end && *j->pos != '[') {
        mesh_json_error(j, j->pos, "\"removed\" must be an array");
        return -1;
    }

    if (mesh_json_expect(j, '[') != 0) {
        return -1;
    }

    ids = NULL;
    cap = 0;
    n = 0;
    i = 0;

    while ((rc = mesh_json_next_element(j, &i)) == 1) {
        id = mesh_json_cstr(j, "a removed id");
        if (id == NULL) {
            return -1;
        }

        if (!mesh_name_valid(id, strlen(id))) {
            mesh_json_error(j, j->pos, "a removed id is not "
                            MESH_NAME_RULE);
            return -1;
        }

        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            nids = mesh_arena_alloc(j->arena, cap * sizeof(char *));
            if (nids == NULL) {
                mesh_json_error(j, j->pos, "out of memory");
                return -1;
            }

            if (n) {
                memcpy(nids, ids, n * sizeof(char *));
            }

            ids = nids;
        }

        ids[n++] = id;
    }

    if (rc != 0) {
        return -1;
    }

    if (n > 1) {
        qsort(ids, n, sizeof(char *), mesh_cmp_strings);

        for (i = 1, cap = 1; i < n; i++) {
            if (strcmp(ids[i], ids[cap - 1]) != 0) {
                ids[cap++] = ids[i];
            }
        }

        n = cap;
    }

    svc->removed = ids;
    svc->nremoved = n;

    return 0;
}


static int
mesh_cmp_strings(const void *one, const void *two)
{
    return strcmp(*(const char *const *) one, *(const char *const *) two);
}


static int
mesh_snapshot_instance(mesh_json_t *j, mesh_instance_item_t *item)
{
    int                   rc, ipv6;
    char                 *server, *p, digits[8];
    size_t                n, k, klen, alen;
    unsigned              seen;
    uint64_t              v;
    const char           *health;
    mesh_instance_t      *in;
    const unsigned char  *key, *start, *at;

    in = &item->instance;
    memset(in, 0, sizeof(mesh_instance_t));

    in->weight = 1;
    in->healthy = 1;

    start = j->pos;
    item->offset = start - j->start;

    if (j->pos < j->end && *j->pos != '{') {
        mesh_json_error(j, j->pos, "an instance must be an object");
        return -1;
    }

    if (mesh_json_expect(j, '{') != 0) {
        return -1;
    }

    seen = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        at = j->pos;

        if (mesh_json_key_is(key, klen, "id")) {
            if (seen & MESH_F_ID) {
                goto duplicate;
            }

            seen |= MESH_F_ID;

            in->id = mesh_json_cstr(j, "\"id\"");
            if (in->id == NULL) {
                return -1;
            }

            if (in->id[0] == '\0') {
                mesh_json_error(j, at, "empty instance \"id\"");
                return -1;
            }

            if (!mesh_name_valid(in->id, strlen(in->id))) {
                mesh_json_error(j, at, "instance \"id\" is not "
                                MESH_NAME_RULE);
                return -1;
            }

        } else if (mesh_json_key_is(key, klen, "address")) {
            if (seen & MESH_F_ADDRESS) {
                goto duplicate;
            }

            seen |= MESH_F_ADDRESS;

            in->address = mesh_json_cstr(j, "\"address\"");
            if (in->address == NULL) {
                return -1;
            }

            if (!mesh_addr_valid(in->address)) {
                mesh_json_error(j, at, "\"address\" is not an IP address");
                return -1;
            }

        } else if (mesh_json_key_is(key, klen, "port")) {
            if (seen & MESH_F_PORT) {
                goto duplicate;
            }

            seen |= MESH_F_PORT;

            if (mesh_json_uint(j, "port", 1, 65535, &v) != 0) {
                return -1;
            }

            in->port = (int) v;

        } else if (mesh_json_key_is(key, klen, "weight")) {
            if (seen & MESH_F_WEIGHT) {
                goto duplicate;
            }

            seen |= MESH_F_WEIGHT;

            if (mesh_json_uint(j, "weight", 1, 1000, &v) != 0) {
                return -1;
            }

            in->weight = (int) v;

        } else if (mesh_json_key_is(key, klen, "zone")) {
            if (seen & MESH_F_ZONE) {
                goto duplicate;
            }

            seen |= MESH_F_ZONE;

            if (j->end - j->pos >= 4 && memcmp(j->pos, "null", 4) == 0) {
                j->pos += 4;
                in->zone = NULL;

            } else {
                in->zone = mesh_json_cstr(j, "\"zone\"");
                if (in->zone == NULL) {
                    return -1;
                }
            }

        } else if (mesh_json_key_is(key, klen, "health")) {
            if (seen & MESH_F_HEALTH) {
                goto duplicate;
            }

            seen |= MESH_F_HEALTH;

            health = mesh_json_cstr(j, "\"health\"");
            if (health == NULL) {
                return -1;
            }

            in->healthy = (strcmp(health, "passing") == 0);

        } else if (mesh_json_key_is(key, klen, "labels")) {
            if (seen & MESH_F_LABELS) {
                goto duplicate;
            }

            seen |= MESH_F_LABELS;

            if (mesh_snapshot_labels(j, in) != 0) {
                return -1;
            }

        } else if (mesh_json_skip(j, 5) != 0) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    if (!(seen & MESH_F_ID)) {
        mesh_json_error(j, start, "an instance without \"id\"");
        return -1;
    }

    if (!(seen & MESH_F_ADDRESS)) {
        mesh_json_error(j, start, "instance \"%s\" without \"address\"",
                        in->id);
        return -1;
    }

    if (!(seen & MESH_F_PORT)) {
        mesh_json_error(j, start, "instance \"%s\" without \"port\"", in->id);
        return -1;
    }

    /* "ADDRESS:PORT", "[ADDRESS]:PORT" for IPv6: as a server in nginx.conf */

    alen = strlen(in->address);

    server = mesh_arena_alloc(j->arena, alen + sizeof("[]:65535"));
    if (server == NULL) {
        mesh_json_error(j, start, "out of memory");
        return -1;
    }

    p = server;
    ipv6 = (memchr(in->address, ':', alen) != NULL);

    if (ipv6) {
        *p++ = '[';
    }

    memcpy(p, in->address, alen);
    p += alen;

    if (ipv6) {
        *p++ = ']';
    }

    *p++ = ':';

    /* the port's digits, backwards into a small buffer first */

    v = (uint64_t) in->port;
    k = 0;

    do {
        digits[k++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    while (k) {
        *p++ = digits[--k];
    }

    *p = '\0';

    in->server = server;
    in->server_len = p - server;

    return 0;

duplicate:

    mesh_json_error(j, j->key_at, "duplicate field \"%.*s\"", (int) klen,
                    (const char *) key);
    return -1;
}


static int
mesh_snapshot_labels(mesh_json_t *j, mesh_instance_t *in)
{
    int                       rc;
    size_t                    n, i, klen;
    mesh_label_t             *labels;
    mesh_label_item_t        *item, *items;
    const unsigned char      *key;
    mesh_snapshot_scratch_t  *sc;

    sc = j->data;

    if (j->pos < j->end && *j->pos != '{') {
        mesh_json_error(j, j->pos, "\"labels\" must be an object");
        return -1;
    }

    if (mesh_json_expect(j, '{') != 0) {
        return -1;
    }

    sc->labels.nelts = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        item = mesh_vec_push(j, &sc->labels);
        if (item == NULL) {
            return -1;
        }

        item->offset = j->key_at - j->start;

        /* the key may sit in j->buf, which the value reuses: copy first */

        if (memchr(key, '\0', klen)) {
            mesh_json_error(j, j->key_at, "a label name holds \\u0000");
            return -1;
        }

        item->label.key = mesh_arena_alloc(j->arena, klen + 1);
        if (item->label.key == NULL) {
            mesh_json_error(j, j->key_at, "out of memory");
            return -1;
        }

        memcpy((char *) item->label.key, key, klen);
        ((char *) item->label.key)[klen] = '\0';

        item->label.value = mesh_json_cstr(j, "a label value");
        if (item->label.value == NULL) {
            return -1;
        }
    }

    if (rc != 0) {
        return -1;
    }

    items = sc->labels.elts;
    n = sc->labels.nelts;

    if (n == 0) {
        return 0;
    }

    qsort(items, n, sizeof(mesh_label_item_t), mesh_cmp_labels);

    for (i = 1; i < n; i++) {
        if (strcmp(items[i - 1].label.key, items[i].label.key) == 0) {
            item = items[i - 1].offset > items[i].offset ? &items[i - 1]
                                                          : &items[i];
            mesh_json_error(j, j->start + item->offset,
                            "duplicate label \"%s\"", item->label.key);
            return -1;
        }
    }

    labels = mesh_arena_alloc(j->arena, n * sizeof(mesh_label_t));
    if (labels == NULL) {
        mesh_json_error(j, j->pos, "out of memory");
        return -1;
    }

    for (i = 0; i < n; i++) {
        labels[i] = items[i].label;
    }

    in->labels = labels;
    in->nlabels = n;

    return 0;
}


static int
mesh_cmp_labels(const void *one, const void *two)
{
    const mesh_label_item_t  *a = one;
    const mesh_label_item_t  *b = two;

    return strcmp(a->label.key, b->label.key);
}


static int
mesh_cmp_instances(const void *one, const void *two)
{
    const mesh_instance_item_t  *a = one;
    const mesh_instance_item_t  *b = two;

    return strcmp(a->instance.id, b->instance.id);
}


static int
mesh_cmp_services(const void *one, const void *two)
{
    const mesh_service_item_t  *a = one;
    const mesh_service_item_t  *b = two;

    return strcmp(a->service.name, b->service.name);
}
