/*
 * mesh_service: the packed form of a service, deltas, and its JSON.
 *
 * The block: a header, the instances, all their labels, then the strings
 * (NUL-terminated). Offsets are from the start of the block.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_service.h"


#define MESH_SERVICE_MAGIC  0x6d736876      /* "mshv" */


typedef struct {
    uint32_t             magic;
    uint32_t             size;
    uint32_t             ninstances;
    uint32_t             nlabels;
} mesh_packed_t;


typedef struct {
    uint32_t             id;
    uint32_t             address;
    uint32_t             server;
    uint32_t             zone;         /* 0: none */
    uint32_t             label;        /* its first in the label table */
    uint32_t             nlabels;
    uint32_t             server_len;
    uint16_t             port;
    uint16_t             weight;
    uint32_t             healthy;
} mesh_packed_instance_t;


typedef struct {
    uint32_t             key;
    uint32_t             value;
} mesh_packed_label_t;


static size_t mesh_service_json_str(char *out, size_t size, size_t len,
    const char *s);


size_t
mesh_service_packed_size(const mesh_instance_t *in, size_t n)
{
    size_t  i, k, size;

    size = sizeof(mesh_packed_t) + n * sizeof(mesh_packed_instance_t);

    for (i = 0; i < n; i++) {
        size += strlen(in[i].id) + 1 + strlen(in[i].address) + 1
                + in[i].server_len + 1
                + (in[i].zone ? strlen(in[i].zone) + 1 : 0);

        size += in[i].nlabels * sizeof(mesh_packed_label_t);

        for (k = 0; k < in[i].nlabels; k++) {
            size += strlen(in[i].labels[k].key) + 1
                    + strlen(in[i].labels[k].value) + 1;
        }
    }

    return size;
}


static uint32_t
mesh_service_put_str(char *buf, size_t *pos, const char *s, size_t len)
{
    uint32_t  off = (uint32_t) *pos;

    memcpy(buf + *pos, s, len);
    buf[*pos + len] = '\0';
    *pos += len + 1;

    return off;
}


size_t
mesh_service_pack(const mesh_instance_t *in, size_t n, void *buf,
    size_t size)
{
    char                    *b = buf;
    size_t                   i, k, pos, nlabels;
    mesh_packed_t           *h;
    mesh_packed_label_t     *lb;
    mesh_packed_instance_t  *pi;

    if (size != mesh_service_packed_size(in, n) || size > UINT32_MAX) {
        return 0;
    }

    nlabels = 0;
    for (i = 0; i < n; i++) {
        nlabels += in[i].nlabels;
    }

    h = buf;
    h->magic = MESH_SERVICE_MAGIC;
    h->size = (uint32_t) size;
    h->ninstances = (uint32_t) n;
    h->nlabels = (uint32_t) nlabels;

    pi = (mesh_packed_instance_t *) (b + sizeof(mesh_packed_t));
    lb = (mesh_packed_label_t *) (pi + n);
    pos = (char *) (lb + nlabels) - b;
    nlabels = 0;

    for (i = 0; i < n; i++) {
        pi[i].id = mesh_service_put_str(b, &pos, in[i].id, strlen(in[i].id));
        pi[i].address = mesh_service_put_str(b, &pos, in[i].address,
                                             strlen(in[i].address));
        pi[i].server = mesh_service_put_str(b, &pos, in[i].server,
                                            in[i].server_len);
        pi[i].server_len = (uint32_t) in[i].server_len;
        pi[i].zone = in[i].zone ? mesh_service_put_str(b, &pos, in[i].zone,
                                                       strlen(in[i].zone))
                                : 0;
        pi[i].port = (uint16_t) in[i].port;
        pi[i].weight = (uint16_t) in[i].weight;
        pi[i].healthy = in[i].healthy ? 1 : 0;
        pi[i].label = (uint32_t) nlabels;
        pi[i].nlabels = (uint32_t) in[i].nlabels;

        for (k = 0; k < in[i].nlabels; k++) {
            lb[nlabels].key = mesh_service_put_str(b, &pos,
                                  in[i].labels[k].key,
                                  strlen(in[i].labels[k].key));
            lb[nlabels].value = mesh_service_put_str(b, &pos,
                                  in[i].labels[k].value,
                                  strlen(in[i].labels[k].value));
            nlabels++;
        }
    }

    return pos == size ? size : 0;
}


static const mesh_packed_t *
mesh_service_header(const void *buf, size_t size)
{
    const mesh_packed_t  *h = buf;
    size_t                need;

    if (buf == NULL || size < sizeof(mesh_packed_t)
        || h->magic != MESH_SERVICE_MAGIC || h->size != size)
    {
        return NULL;
    }

    need = sizeof(mesh_packed_t)
           + (size_t) h->ninstances * sizeof(mesh_packed_instance_t)
           + (size_t) h->nlabels * sizeof(mesh_packed_label_t);

    if (h->ninstances > size || h->nlabels > size || need > size) {
        return NULL;
    }

    return h;
}


size_t
mesh_service_packed_count(const void *buf, size_t size)
{
    const mesh_packed_t  *h = mesh_service_header(buf, size);

    return h ? h->ninstances : 0;
}


int
mesh_service_packed_has(const void *buf, size_t size, const char *id,
    size_t len)
{
    int                            rc;
    size_t                         lo, hi, mid, slen;
    const char                    *b = buf, *s;
    const mesh_packed_t           *h;
    const mesh_packed_instance_t  *pi;

    h = mesh_service_header(buf, size);
    if (h == NULL) {
        return 0;
    }

    pi = (const mesh_packed_instance_t *) (b + sizeof(mesh_packed_t));
    lo = 0;
    hi = h->ninstances;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (pi[mid].id >= size) {
            return 0;
        }

        s = b + pi[mid].id;
        slen = strnlen(s, size - pi[mid].id);

        rc = memcmp(s, id, slen < len ? slen : len);
        if (rc == 0) {
            rc = (slen > len) - (slen < len);
        }

        if (rc == 0) {
            return 1;
        }

        if (rc < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return 0;
}


size_t
mesh_service_unpack_size(const void *buf, size_t size)
{
    const mesh_packed_t  *h = mesh_service_header(buf, size);

    if (h == NULL) {
        return 0;
    }

    return (size_t) h->ninstances * sizeof(mesh_instance_t)
           + (size_t) h->nlabels * sizeof(mesh_label_t) + 1;
}


/* a string at off: inside the strings and NUL-terminated there */
static const char *
mesh_service_str(const char *b, size_t start, size_t size, uint32_t off)
{
    if (off < start || off >= size || memchr(b + off, '\0', size - off)
                                       == NULL)
    {
        return NULL;
    }

    return b + off;
}


int
mesh_service_unpack(const void *buf, size_t size, const char *name,
    mesh_service_t *svc, void *mem, size_t memsize)
{
    size_t                         i, k, start;
    const char                    *b = buf;
    mesh_label_t                  *labels;
    mesh_instance_t               *in;
    const mesh_packed_t           *h;
    const mesh_packed_label_t     *lb;
    const mesh_packed_instance_t  *pi;

    h = mesh_service_header(buf, size);
    if (h == NULL || memsize < mesh_service_unpack_size(buf, size)) {
        return -1;
    }

    pi = (const mesh_packed_instance_t *) (b + sizeof(mesh_packed_t));
    lb = (const mesh_packed_label_t *) (pi + h->ninstances);
    start = (const char *) (lb + h->nlabels) - b;

    in = mem;
    labels = (mesh_label_t *) (in + h->ninstances);

    memset(svc, 0, sizeof(mesh_service_t));
    svc->name = name;
    svc->instances = h->ninstances ? in : NULL;
    svc->ninstances = h->ninstances;

    for (i = 0; i < h->ninstances; i++) {
        memset(&in[i], 0, sizeof(mesh_instance_t));

        in[i].id = mesh_service_str(b, start, size, pi[i].id);
        in[i].address = mesh_service_str(b, start, size, pi[i].address);
        in[i].server = mesh_service_str(b, start, size, pi[i].server);
        in[i].server_len = pi[i].server_len;
        in[i].zone = pi[i].zone ? mesh_service_str(b, start, size,
                                                   pi[i].zone)
                                : NULL;
        in[i].port = pi[i].port;
        in[i].weight = pi[i].weight;
        in[i].healthy = pi[i].healthy ? 1 : 0;

        if (in[i].id == NULL || in[i].address == NULL || in[i].server == NULL
            || (pi[i].zone && in[i].zone == NULL)
            || strlen(in[i].server) != in[i].server_len
            || in[i].port == 0 || in[i].weight == 0
            || pi[i].label > h->nlabels
            || pi[i].nlabels > h->nlabels - pi[i].label)
        {
            return -1;
        }

        in[i].labels = pi[i].nlabels ? &labels[pi[i].label] : NULL;
        in[i].nlabels = pi[i].nlabels;

        for (k = pi[i].label; k < pi[i].label + pi[i].nlabels; k++) {
            labels[k].key = mesh_service_str(b, start, size, lb[k].key);
            labels[k].value = mesh_service_str(b, start, size, lb[k].value);

            if (labels[k].key == NULL || labels[k].value == NULL) {
                return -1;
            }
        }

        if (i && strcmp(in[i - 1].id, in[i].id) >= 0) {
            return -1;
        }
    }

    return 0;
}


/* the same member of a hash ring: address, port and weight */
static int
mesh_service_same_member(const mesh_instance_t *a, const mesh_instance_t *b)
{
    return a->weight == b->weight && a->server_len == b->server_len
           && memcmp(a->server, b->server, a->server_len) == 0;
}


static int
mesh_service_cmp_id(const void *key, const void *elt)
{
    return strcmp(key, *(const char *const *) elt);
}


static int
mesh_service_removed(const mesh_service_t *delta, const char *id)
{
    return delta->nremoved
           && bsearch(id, delta->removed, delta->nremoved, sizeof(char *),
                      mesh_service_cmp_id)
              != NULL;
}


int
mesh_service_merge(const mesh_service_t *old, const mesh_service_t *delta,
    mesh_instance_t **out, size_t *n, int *members)
{
    int               rc;
    size_t            i, k, m, nold;
    mesh_instance_t  *r;

    nold = old ? old->ninstances : 0;

    r = malloc((nold + delta->ninstances + 1) * sizeof(mesh_instance_t));
    if (r == NULL) {
        return -1;
    }

    *members = 0;
    m = 0;
    i = 0;
    k = 0;

    /* both sorted by id: one merge pass */

    while (i < nold || k < delta->ninstances) {

        if (i == nold) {
            rc = 1;

        } else if (k == delta->ninstances) {
            rc = -1;

        } else {
            rc = strcmp(old->instances[i].id, delta->instances[k].id);
        }

        if (rc < 0) {
            if (mesh_service_removed(delta, old->instances[i].id)) {
                *members = 1;

            } else {
                r[m++] = old->instances[i];
            }

            i++;
            continue;
        }

        if (rc == 0) {
            if (!mesh_service_same_member(&old->instances[i],
                                          &delta->instances[k]))
            {
                *members = 1;
            }

            i++;

        } else {
            *members = 1;           /* new */
        }

        r[m++] = delta->instances[k++];
    }

    *out = r;
    *n = m;

    return 0;
}


/* append s as a JSON string; returns the length it takes */
static size_t
mesh_service_json_str(char *out, size_t size, size_t len, const char *s)
{
    static const char     hex[] = "0123456789abcdef";
    char                  esc[7];
    size_t                n, k;
    const unsigned char  *p;

    n = 0;

#define MESH_PUT(c)  do { if (len + n < size) out[len + n] = (c); n++; } \
                     while (0)

    MESH_PUT('"');

    for (p = (const unsigned char *) s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            MESH_PUT('\\');
            MESH_PUT((char) *p);

        } else if (*p < 0x20) {
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 0xf];

            for (k = 0; k < 6; k++) {
                MESH_PUT(esc[k]);
            }

        } else {
            MESH_PUT((char) *p);
        }
    }

    MESH_PUT('"');

#undef MESH_PUT

    return n;
}


static size_t
mesh_service_json_raw(char *out, size_t size, size_t len, const char *s)
{
    size_t  n = strlen(s);

    if (len < size) {
        memcpy(out + len, s, (len + n <= size) ? n : size - len);
    }

    return n;
}


size_t
mesh_service_json(const mesh_service_t *svc, char *out, size_t size)
{
    char                    num[64];
    size_t                  len, i, k;
    const mesh_instance_t  *in;

    len = mesh_service_json_raw(out, size, 0, "{\"name\":");
    len += mesh_service_json_str(out, size, len, svc->name);
    len += mesh_service_json_raw(out, size, len, ",\"instances\":[");

    for (i = 0; i < svc->ninstances; i++) {
        in = &svc->instances[i];

        len += mesh_service_json_raw(out, size, len, i ? ",\n{\"id\":"
                                                       : "\n{\"id\":");
        len += mesh_service_json_str(out, size, len, in->id);
        len += mesh_service_json_raw(out, size, len, ",\"address\":");
        len += mesh_service_json_str(out, size, len, in->address);

        snprintf(num, sizeof(num), ",\"port\":%d,\"weight\":%d", in->port,
                 in->weight);
        len += mesh_service_json_raw(out, size, len, num);

        if (in->zone) {
            len += mesh_service_json_raw(out, size, len, ",\"zone\":");
            len += mesh_service_json_str(out, size, len, in->zone);
        }

        len += mesh_service_json_raw(out, size, len, ",\"labels\":{");

        for (k = 0; k < in->nlabels; k++) {
            if (k) {
                len += mesh_service_json_raw(out, size, len, ",");
            }

            len += mesh_service_json_str(out, size, len, in->labels[k].key);
            len += mesh_service_json_raw(out, size, len, ":");
            len += mesh_service_json_str(out, size, len,
                                         in->labels[k].value);
        }

        len += mesh_service_json_raw(out, size, len,
                                     in->healthy ? "},\"health\":\"passing\"}"
                                                 : "},\"health\":\"critical\"}");
    }

    len += mesh_service_json_raw(out, size, len, "]}");

    return len;
}
