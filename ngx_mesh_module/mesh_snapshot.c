/*
 * mesh_snapshot: a small strict JSON reader for registryd's snapshot.
 *
 * One pass over the text, no tree: the known fields are read into plain
 * structures as they come, anything else is checked and skipped. Strings
 * are copied (decoded when they hold escapes) into an arena of malloc'ed
 * blocks that mesh_snapshot_free() releases at once. Growing arrays
 * (services, instances, labels) live in scratch vectors owned by the
 * parser and are copied into the arena when their JSON array ends.
 */

#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_snapshot.h"


#define MESH_JSON_MAX_DEPTH   64
#define MESH_ARENA_MIN        (64 * 1024)
#define MESH_ARENA_MAX        (4 * 1024 * 1024)
#define MESH_ALIGN            16      /* enough for any type here */

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


typedef struct mesh_arena_block_s  mesh_arena_block_t;

struct mesh_arena_block_s {
    mesh_arena_block_t  *next;
    size_t               size;
    size_t               used;
};


typedef struct {
    mesh_arena_block_t  *head;
    size_t               next_size;
} mesh_arena_t;


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


typedef struct {
    void                *elts;
    size_t               nelts;
    size_t               nalloc;
    size_t               size;
} mesh_vec_t;


typedef struct {
    const unsigned char  *start;
    const unsigned char  *pos;
    const unsigned char  *end;
    const unsigned char  *key_at;       /* the '"' of the last key */
    mesh_arena_t         *arena;
    char                 *err;
    size_t                errlen;
    int                   failed;

    mesh_vec_t            services;
    mesh_vec_t            instances;
    mesh_vec_t            labels;

    /* a decoded string that has escapes: keys and values pass here */
    unsigned char        *buf;
    size_t                buf_size;
} mesh_json_t;


static void *mesh_arena_alloc(mesh_arena_t *a, size_t size);
static void mesh_arena_destroy(mesh_arena_t *a);
static void *mesh_vec_push(mesh_json_t *j, mesh_vec_t *v);
static void mesh_json_error(mesh_json_t *j, const unsigned char *at,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void mesh_json_ws(mesh_json_t *j);
static int mesh_json_expect(mesh_json_t *j, unsigned char c);
static int mesh_json_next_member(mesh_json_t *j, size_t *n,
    const unsigned char **key, size_t *klen);
static int mesh_json_next_element(mesh_json_t *j, size_t *n);
static int mesh_json_string(mesh_json_t *j, const unsigned char **data,
    size_t *len);
static size_t mesh_json_utf8(const unsigned char *p, const unsigned char *end);
static int mesh_json_hex4(const unsigned char *p, const unsigned char *end,
    uint32_t *cp);
static int mesh_json_number(mesh_json_t *j, int *integer, uint64_t *value);
static int mesh_json_skip(mesh_json_t *j, int depth);
static char *mesh_json_cstr(mesh_json_t *j, const char *what);
static int mesh_json_uint(mesh_json_t *j, const char *what, uint64_t min,
    uint64_t max, uint64_t *value);
static int mesh_snapshot_services(mesh_json_t *j, mesh_snapshot_t *s);
static int mesh_snapshot_service_obj(mesh_json_t *j,
    mesh_service_item_t *item);
static int mesh_snapshot_instance(mesh_json_t *j, mesh_instance_item_t *item);
static int mesh_snapshot_labels(mesh_json_t *j, mesh_instance_t *in);
static int mesh_cmp_labels(const void *one, const void *two);
static int mesh_cmp_instances(const void *one, const void *two);
static int mesh_cmp_services(const void *one, const void *two);


/* bytes that end the fast path of a string: '"', '\\', controls, non-ASCII */

static const unsigned char  mesh_json_special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
};


#define mesh_json_key_is(key, klen, lit)                                      \
    ((klen) == sizeof(lit) - 1 && memcmp(key, lit, sizeof(lit) - 1) == 0)


mesh_snapshot_t *
mesh_snapshot_parse(const char *json, size_t len, char *err, size_t errlen)
{
    int                   rc;
    size_t                n, klen;
    unsigned              seen;
    uint64_t              index;
    mesh_json_t           j;
    mesh_arena_t         *arena;
    mesh_snapshot_t      *s;
    const unsigned char  *key, *start;

    if (err && errlen) {
        err[0] = '\0';
    }

    memset(&j, 0, sizeof(mesh_json_t));

    j.start = (const unsigned char *) json;
    j.pos = j.start;
    j.end = j.start + len;
    j.err = err;
    j.errlen = errlen;

    j.services.size = sizeof(mesh_service_item_t);
    j.instances.size = sizeof(mesh_instance_item_t);
    j.labels.size = sizeof(mesh_label_item_t);

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

        } else if (mesh_json_key_is(key, klen, "policies")) {
            if (seen & MESH_F_POLICIES) {
                goto duplicate;
            }

            seen |= MESH_F_POLICIES;
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

    free(j.services.elts);
    free(j.instances.elts);
    free(j.labels.elts);
    free(j.buf);

    return s;

duplicate:

    mesh_json_error(&j, j.key_at, "duplicate field \"%.*s\"", (int) klen,
                    (const char *) key);

fail:

    free(j.services.elts);
    free(j.instances.elts);
    free(j.labels.elts);
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
    int                   rc;
    size_t                n, i;
    mesh_service_t       *svc;
    mesh_service_item_t  *item, *items;

    if (j->pos < j->end && *j->pos != '[') {
        mesh_json_error(j, j->pos, "\"services\" must be an array");
        return -1;
    }

    if (mesh_json_expect(j, '[') != 0) {
        return -1;
    }

    j->services.nelts = 0;
    n = 0;

    while ((rc = mesh_json_next_element(j, &n)) == 1) {
        item = mesh_vec_push(j, &j->services);
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

    items = j->services.elts;
    n = j->services.nelts;

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
    int                    rc;
    size_t                 n, i, m, klen;
    unsigned               seen;
    mesh_instance_t       *in;
    mesh_service_t        *svc;
    const unsigned char   *key, *start;
    mesh_instance_item_t  *it, *items;

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

            j->instances.nelts = 0;
            m = 0;

            while ((rc = mesh_json_next_element(j, &m)) == 1) {
                it = mesh_vec_push(j, &j->instances);
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

    items = j->instances.elts;
    m = j->instances.nelts;

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
mesh_snapshot_instance(mesh_json_t *j, mesh_instance_item_t *item)
{
    int                   rc, ipv6;
    char                 *server, *p, digits[8];
    size_t                n, k, klen, alen;
    unsigned              seen;
    uint64_t              v;
    const char           *health;
    unsigned char         addr[sizeof(struct in6_addr)];
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

        } else if (mesh_json_key_is(key, klen, "address")) {
            if (seen & MESH_F_ADDRESS) {
                goto duplicate;
            }

            seen |= MESH_F_ADDRESS;

            in->address = mesh_json_cstr(j, "\"address\"");
            if (in->address == NULL) {
                return -1;
            }

            alen = strlen(in->address);

            if (alen == 0 || alen >= 46
                || (inet_pton(AF_INET, in->address, addr) != 1
                    && inet_pton(AF_INET6, in->address, addr) != 1))
            {
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
    int                   rc;
    size_t                n, i, klen;
    mesh_label_t         *labels;
    mesh_label_item_t    *item, *items;
    const unsigned char  *key;

    if (j->pos < j->end && *j->pos != '{') {
        mesh_json_error(j, j->pos, "\"labels\" must be an object");
        return -1;
    }

    if (mesh_json_expect(j, '{') != 0) {
        return -1;
    }

    j->labels.nelts = 0;
    n = 0;

    while ((rc = mesh_json_next_member(j, &n, &key, &klen)) == 1) {
        item = mesh_vec_push(j, &j->labels);
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

    items = j->labels.elts;
    n = j->labels.nelts;

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


/* JSON */

static void
mesh_json_error(mesh_json_t *j, const unsigned char *at, const char *fmt,
    ...)
{
    int             n;
    va_list         args;
    unsigned char  *p;

    if (j->failed) {
        return;
    }

    j->failed = 1;

    if (j->err == NULL || j->errlen == 0) {
        return;
    }

    n = snprintf(j->err, j->errlen, "snapshot: byte %zu: ",
                 (size_t) (at - j->start));

    if (n < 0 || (size_t) n >= j->errlen) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(j->err + n, j->errlen - n, fmt, args);
    va_end(args);

    /* names quoted from the input must not break the line */

    for (p = (unsigned char *) j->err + n; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }
}


static void
mesh_json_ws(mesh_json_t *j)
{
    const unsigned char  *p, *end;

    p = j->pos;
    end = j->end;

    while (p < end
           && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    {
        p++;
    }

    j->pos = p;
}


static int
mesh_json_expect(mesh_json_t *j, unsigned char c)
{
    if (j->pos == j->end) {
        mesh_json_error(j, j->pos, "unexpected end of input, expected '%c'",
                        c);
        return -1;
    }

    if (*j->pos != c) {
        mesh_json_error(j, j->pos, "expected '%c'", c);
        return -1;
    }

    j->pos++;

    return 0;
}


/*
 * After '{' or a member's value: 1 and the next key, the position at its
 * value; 0 after the closing '}'; -1 on an error. *n counts the members.
 * key == NULL only checks the key.
 */

static int
mesh_json_next_member(mesh_json_t *j, size_t *n, const unsigned char **key,
    size_t *klen)
{
    mesh_json_ws(j);

    if (j->pos < j->end && *j->pos == '}') {
        j->pos++;
        return 0;
    }

    if (*n > 0) {
        if (j->pos < j->end && *j->pos != ',') {
            mesh_json_error(j, j->pos, "expected ',' or '}'");
            return -1;
        }

        if (mesh_json_expect(j, ',') != 0) {
            return -1;
        }

        mesh_json_ws(j);
    }

    if (j->pos == j->end) {
        mesh_json_error(j, j->pos, "unexpected end of input in an object");
        return -1;
    }

    if (*j->pos != '"') {
        mesh_json_error(j, j->pos, "expected a string key");
        return -1;
    }

    j->key_at = j->pos;

    if (mesh_json_string(j, key, klen) != 0) {
        return -1;
    }

    mesh_json_ws(j);

    if (mesh_json_expect(j, ':') != 0) {
        return -1;
    }

    mesh_json_ws(j);

    if (j->pos == j->end) {
        mesh_json_error(j, j->pos, "unexpected end of input, expected a value");
        return -1;
    }

    (*n)++;

    return 1;
}


/* as mesh_json_next_member(), for arrays: 1 at the next value */

static int
mesh_json_next_element(mesh_json_t *j, size_t *n)
{
    mesh_json_ws(j);

    if (j->pos < j->end && *j->pos == ']') {
        j->pos++;
        return 0;
    }

    if (*n > 0) {
        if (j->pos < j->end && *j->pos != ',') {
            mesh_json_error(j, j->pos, "expected ',' or ']'");
            return -1;
        }

        if (mesh_json_expect(j, ',') != 0) {
            return -1;
        }

        mesh_json_ws(j);
    }

    if (j->pos == j->end) {
        mesh_json_error(j, j->pos, "unexpected end of input in an array");
        return -1;
    }

    (*n)++;

    return 1;
}


/*
 * A string at j->pos (on its '"'): *data and *len get its decoded bytes,
 * which point into the input when it has no escape and into j->buf, valid
 * until the next string, when it has. UTF-8 is checked. data == NULL only
 * checks.
 */

static int
mesh_json_string(mesh_json_t *j, const unsigned char **data, size_t *len)
{
    size_t                k, size;
    uint32_t              cp, lo;
    unsigned char        *d;
    const unsigned char  *p, *q, *end, *open;

    open = j->pos;
    end = j->end;
    p = open + 1;

    while (p < end && !mesh_json_special[*p]) {
        p++;
    }

    if (p < end && *p == '"') {
        if (data) {
            *data = open + 1;
            *len = p - (open + 1);
        }

        j->pos = p + 1;
        return 0;
    }

    /* the slow path: check all up to the closing quote, then decode */

    for ( ;; ) {
        if (p == end) {
            mesh_json_error(j, open, "unterminated string");
            return -1;
        }

        if (*p == '"') {
            break;
        }

        if (*p < 0x20) {
            mesh_json_error(j, p, "a control character in a string");
            return -1;
        }

        if (*p >= 0x80) {
            k = mesh_json_utf8(p, end);
            if (k == 0) {
                mesh_json_error(j, p, "invalid UTF-8 in a string");
                return -1;
            }

            p += k;
            continue;
        }

        if (*p != '\\') {
            p++;
            continue;
        }

        if (p + 1 == end) {
            mesh_json_error(j, open, "unterminated string");
            return -1;
        }

        switch (p[1]) {

        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
            p += 2;
            continue;

        case 'u':
            break;

        default:
            mesh_json_error(j, p, "invalid escape in a string");
            return -1;
        }

        if (mesh_json_hex4(p + 2, end, &cp) != 0) {
            mesh_json_error(j, p, "invalid \\u escape in a string");
            return -1;
        }

        if (cp >= 0xdc00 && cp <= 0xdfff) {
            mesh_json_error(j, p, "a lone low surrogate in a string");
            return -1;
        }

        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (end - p < 12 || p[6] != '\\' || p[7] != 'u'
                || mesh_json_hex4(p + 8, end, &lo) != 0
                || lo < 0xdc00 || lo > 0xdfff)
            {
                mesh_json_error(j, p, "a lone high surrogate in a string");
                return -1;
            }

            p += 12;
            continue;
        }

        p += 6;
    }

    j->pos = p + 1;

    if (data == NULL) {
        return 0;
    }

    /* decoded is never longer than the escaped text */

    size = p - open;

    if (size > j->buf_size) {
        free(j->buf);

        j->buf_size = size < 256 ? 256 : size;
        j->buf = malloc(j->buf_size);

        if (j->buf == NULL) {
            j->buf_size = 0;
            mesh_json_error(j, open, "out of memory");
            return -1;
        }
    }

    d = j->buf;
    end = p;

    for (q = open + 1; q < end; /* void */ ) {
        if (*q != '\\') {
            *d++ = *q++;
            continue;
        }

        switch (q[1]) {
        case 'b': *d++ = '\b'; q += 2; continue;
        case 'f': *d++ = '\f'; q += 2; continue;
        case 'n': *d++ = '\n'; q += 2; continue;
        case 'r': *d++ = '\r'; q += 2; continue;
        case 't': *d++ = '\t'; q += 2; continue;
        case 'u': break;
        default: *d++ = q[1]; q += 2; continue;
        }

        (void) mesh_json_hex4(q + 2, end, &cp);
        q += 6;

        if (cp >= 0xd800 && cp <= 0xdbff) {
            (void) mesh_json_hex4(q + 2, end, &lo);
            q += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }

        if (cp < 0x80) {
            *d++ = (unsigned char) cp;

        } else if (cp < 0x800) {
            *d++ = (unsigned char) (0xc0 | (cp >> 6));
            *d++ = (unsigned char) (0x80 | (cp & 0x3f));

        } else if (cp < 0x10000) {
            *d++ = (unsigned char) (0xe0 | (cp >> 12));
            *d++ = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            *d++ = (unsigned char) (0x80 | (cp & 0x3f));

        } else {
            *d++ = (unsigned char) (0xf0 | (cp >> 18));
            *d++ = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
            *d++ = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            *d++ = (unsigned char) (0x80 | (cp & 0x3f));
        }
    }

    *data = j->buf;
    *len = d - j->buf;

    return 0;
}


/* the length of a well-formed UTF-8 sequence at p (RFC 3629), or 0 */

static size_t
mesh_json_utf8(const unsigned char *p, const unsigned char *end)
{
    size_t         n, i;
    unsigned char  c, lo, hi;

    c = p[0];
    lo = 0x80;
    hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;

        if (c == 0xe0) {
            lo = 0xa0;              /* overlong */

        } else if (c == 0xed) {
            hi = 0x9f;              /* surrogates */
        }

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;

        if (c == 0xf0) {
            lo = 0x90;              /* overlong */

        } else if (c == 0xf4) {
            hi = 0x8f;              /* above U+10FFFF */
        }

    } else {
        return 0;
    }

    if ((size_t) (end - p) < n) {
        return 0;
    }

    if (p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}


static int
mesh_json_hex4(const unsigned char *p, const unsigned char *end,
    uint32_t *cp)
{
    size_t         i;
    uint32_t       v;
    unsigned char  c;

    if (end - p < 4) {
        return -1;
    }

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            v = v * 16 + (c - '0');

        } else if (c >= 'a' && c <= 'f') {
            v = v * 16 + (c - 'a' + 10);

        } else if (c >= 'A' && c <= 'F') {
            v = v * 16 + (c - 'A' + 10);

        } else {
            return -1;
        }
    }

    *cp = v;

    return 0;
}


/*
 * A number at j->pos, checked against the JSON grammar. *integer tells
 * whether it is a non-negative integer without fraction or exponent that
 * fits in 64 bits, and *value then holds it.
 */

static int
mesh_json_number(mesh_json_t *j, int *integer, uint64_t *value)
{
    int                   neg, overflow;
    uint64_t              v;
    const unsigned char  *p, *end, *start;

    p = j->pos;
    end = j->end;
    start = p;

    neg = 0;
    overflow = 0;
    v = 0;

    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }

    if (p == end || *p < '0' || *p > '9') {
        mesh_json_error(j, start, "invalid number");
        return -1;
    }

    if (*p == '0') {
        p++;

        if (p < end && *p >= '0' && *p <= '9') {
            mesh_json_error(j, start, "a number with a leading zero");
            return -1;
        }

    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (v > (UINT64_MAX - (*p - '0')) / 10) {
                overflow = 1;
            }

            v = v * 10 + (*p - '0');
            p++;
        }
    }

    *integer = !neg && !overflow;

    if (p < end && *p == '.') {
        p++;
        *integer = 0;

        if (p == end || *p < '0' || *p > '9') {
            mesh_json_error(j, start, "invalid number");
            return -1;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        *integer = 0;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == end || *p < '0' || *p > '9') {
            mesh_json_error(j, start, "invalid number");
            return -1;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    *value = v;
    j->pos = p;

    return 0;
}


/* check and pass over any value; depth is that of its container */

static int
mesh_json_skip(mesh_json_t *j, int depth)
{
    int                   rc, integer;
    size_t                n;
    uint64_t              v;

    if (j->pos == j->end) {
        mesh_json_error(j, j->pos, "unexpected end of input, expected a value");
        return -1;
    }

    switch (*j->pos) {

    case '{':
    case '[':
        if (depth >= MESH_JSON_MAX_DEPTH) {
            mesh_json_error(j, j->pos, "nested deeper than %d",
                            MESH_JSON_MAX_DEPTH);
            return -1;
        }

        n = 0;

        if (*j->pos++ == '{') {
            while ((rc = mesh_json_next_member(j, &n, NULL, NULL)) == 1) {
                if (mesh_json_skip(j, depth + 1) != 0) {
                    return -1;
                }
            }

        } else {
            while ((rc = mesh_json_next_element(j, &n)) == 1) {
                if (mesh_json_skip(j, depth + 1) != 0) {
                    return -1;
                }
            }
        }

        return rc;

    case '"':
        return mesh_json_string(j, NULL, NULL);

    case 't':
        if (j->end - j->pos >= 4 && memcmp(j->pos, "true", 4) == 0) {
            j->pos += 4;
            return 0;
        }

        break;

    case 'f':
        if (j->end - j->pos >= 5 && memcmp(j->pos, "false", 5) == 0) {
            j->pos += 5;
            return 0;
        }

        break;

    case 'n':
        if (j->end - j->pos >= 4 && memcmp(j->pos, "null", 4) == 0) {
            j->pos += 4;
            return 0;
        }

        break;

    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return mesh_json_number(j, &integer, &v);
    }

    mesh_json_error(j, j->pos, "unexpected character, expected a value");

    return -1;
}


/* a string value copied into the arena, NUL-terminated */

static char *
mesh_json_cstr(mesh_json_t *j, const char *what)
{
    char                 *s;
    size_t                len;
    const unsigned char  *data, *at;

    at = j->pos;

    if (*at != '"') {
        mesh_json_error(j, at, "%s must be a string", what);
        return NULL;
    }

    if (mesh_json_string(j, &data, &len) != 0) {
        return NULL;
    }

    /* they become C strings */

    if (memchr(data, '\0', len)) {
        mesh_json_error(j, at, "%s holds \\u0000", what);
        return NULL;
    }

    s = mesh_arena_alloc(j->arena, len + 1);
    if (s == NULL) {
        mesh_json_error(j, at, "out of memory");
        return NULL;
    }

    memcpy(s, data, len);
    s[len] = '\0';

    return s;
}


static int
mesh_json_uint(mesh_json_t *j, const char *what, uint64_t min, uint64_t max,
    uint64_t *value)
{
    int                   integer;
    uint64_t              v;
    const unsigned char  *at;

    at = j->pos;

    if (*at != '-' && (*at < '0' || *at > '9')) {
        mesh_json_error(j, at, "\"%s\" must be an integer", what);
        return -1;
    }

    if (mesh_json_number(j, &integer, &v) != 0) {
        return -1;
    }

    if (!integer || v < min || v > max) {
        if (max == UINT64_MAX) {
            mesh_json_error(j, at, "\"%s\" must be an integer >= %llu", what,
                            (unsigned long long) min);

        } else {
            mesh_json_error(j, at, "\"%s\" must be an integer %llu..%llu",
                            what, (unsigned long long) min,
                            (unsigned long long) max);
        }

        return -1;
    }

    *value = v;

    return 0;
}


/* memory */

static void *
mesh_vec_push(mesh_json_t *j, mesh_vec_t *v)
{
    void    *elts;
    size_t   n;

    if (v->nelts == v->nalloc) {
        n = v->nalloc ? v->nalloc * 2 : 16;

        if (n > (size_t) -1 / 2 / v->size) {
            mesh_json_error(j, j->pos, "out of memory");
            return NULL;
        }

        elts = realloc(v->elts, n * v->size);
        if (elts == NULL) {
            mesh_json_error(j, j->pos, "out of memory");
            return NULL;
        }

        v->elts = elts;
        v->nalloc = n;
    }

    return (char *) v->elts + v->size * v->nelts++;
}


static void *
mesh_arena_alloc(mesh_arena_t *a, size_t size)
{
    size_t               hdr, bsize;
    mesh_arena_block_t  *b;

    hdr = (sizeof(mesh_arena_block_t) + MESH_ALIGN - 1) & ~(MESH_ALIGN - 1);

    if (size > (size_t) -1 / 2) {
        return NULL;
    }

    size = (size + MESH_ALIGN - 1) & ~(MESH_ALIGN - 1);

    b = a->head;

    if (b == NULL || b->size - b->used < size) {
        if (a->next_size == 0) {
            a->next_size = MESH_ARENA_MIN;
        }

        bsize = a->next_size;

        if (a->next_size < MESH_ARENA_MAX) {
            a->next_size *= 2;
        }

        if (bsize < size) {
            bsize = size;
        }

        b = malloc(hdr + bsize);
        if (b == NULL) {
            return NULL;
        }

        b->size = bsize;
        b->used = 0;

        /* a large lone allocation must not retire a roomy current block */

        if (a->head && bsize == size
            && a->head->size - a->head->used > MESH_ARENA_MIN / 4)
        {
            b->next = a->head->next;
            a->head->next = b;
            b->used = size;
            return (char *) b + hdr;
        }

        b->next = a->head;
        a->head = b;
    }

    b->used += size;

    return (char *) b + hdr + b->used - size;
}


static void
mesh_arena_destroy(mesh_arena_t *a)
{
    mesh_arena_block_t  *b, *next;

    if (a == NULL) {
        return;
    }

    for (b = a->head; b; b = next) {
        next = b->next;
        free(b);
    }

    free(a);
}
