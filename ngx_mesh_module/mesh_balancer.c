/*
 * mesh_balancer: the set of eligible peers and its weighted schedule,
 * weighted round robin, weighted random, power of two choices and nginx's
 * consistent hash ring, in plain C.
 */

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mesh_balancer.h"


#define MESH_CHASH_POINTS  160


static uint32_t mesh_crc32_update(uint32_t crc, const void *data, size_t len);
static size_t mesh_chash_find_point(const mesh_chash_ring_t *ring,
    uint32_t hash);
static uint64_t mesh_rand_wide(mesh_rand_pt rnd, void *state, uint64_t n);


/* rnd's number, or without one xorshift32 (13, 17, 5) on *state */

static inline uint32_t
mesh_rand32(mesh_rand_pt rnd, void *state)
{
    uint32_t  *s, x;

    if (rnd) {
        return rnd(state);
    }

    s = state;
    x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;

    return x;
}


/* a uniform number in [0, n): multiply and shift (bias < n / 2^32) */

static inline uint64_t
mesh_rand_below(mesh_rand_pt rnd, void *state, uint64_t n)
{
    if (n <= 0xffffffff) {
        return ((uint64_t) mesh_rand32(rnd, state) * n) >> 32;
    }

    return mesh_rand_wide(rnd, state, n);
}


/* n above 2^32: a cycle of more weight than that */

static uint64_t
mesh_rand_wide(mesh_rand_pt rnd, void *state, uint64_t n)
{
    uint64_t  r;

    r = ((uint64_t) mesh_rand32(rnd, state) << 32)
        | mesh_rand32(rnd, state);

    return r % n;
}
static void mesh_set_sort(uint32_t *order, uint32_t *tmp,
    const mesh_peer_t *peers, size_t n);
static int32_t mesh_set_tree(mesh_set_t *set, size_t lo, size_t hi);


/* the CRC-32 (IEEE 802.3, reflected) table, as nginx's ngx_crc32_table256 */

static const uint32_t  mesh_crc32_table[256] = {
    0x00000000, 0x77073096, 0xee0e612c, 0x990951ba,
    0x076dc419, 0x706af48f, 0xe963a535, 0x9e6495a3,
    0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988,
    0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91,
    0x1db71064, 0x6ab020f2, 0xf3b97148, 0x84be41de,
    0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
    0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec,
    0x14015c4f, 0x63066cd9, 0xfa0f3d63, 0x8d080df5,
    0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172,
    0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b,
    0x35b5a8fa, 0x42b2986c, 0xdbbbc9d6, 0xacbcf940,
    0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
    0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116,
    0x21b4f4b5, 0x56b3c423, 0xcfba9599, 0xb8bda50f,
    0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924,
    0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d,
    0x76dc4190, 0x01db7106, 0x98d220bc, 0xefd5102a,
    0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
    0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818,
    0x7f6a0dbb, 0x086d3d2d, 0x91646c97, 0xe6635c01,
    0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e,
    0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457,
    0x65b0d9c6, 0x12b7e950, 0x8bbeb8ea, 0xfcb9887c,
    0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
    0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2,
    0x4adfa541, 0x3dd895d7, 0xa4d1c46d, 0xd3d6f4fb,
    0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0,
    0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9,
    0x5005713c, 0x270241aa, 0xbe0b1010, 0xc90c2086,
    0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
    0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4,
    0x59b33d17, 0x2eb40d81, 0xb7bd5c3b, 0xc0ba6cad,
    0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a,
    0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683,
    0xe3630b12, 0x94643b84, 0x0d6d6a3e, 0x7a6a5aa8,
    0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
    0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe,
    0xf762575d, 0x806567cb, 0x196c3671, 0x6e6b06e7,
    0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc,
    0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5,
    0xd6d6a3e8, 0xa1d1937e, 0x38d8c2c4, 0x4fdff252,
    0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
    0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60,
    0xdf60efc3, 0xa867df55, 0x316e8eef, 0x4669be79,
    0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236,
    0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f,
    0xc5ba3bbe, 0xb2bd0b28, 0x2bb45a92, 0x5cb36a04,
    0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
    0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a,
    0x9c0906a9, 0xeb0e363f, 0x72076785, 0x05005713,
    0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38,
    0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21,
    0x86d3d2d4, 0xf1d4e242, 0x68ddb3f8, 0x1fda836e,
    0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
    0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c,
    0x8f659eff, 0xf862ae69, 0x616bffd3, 0x166ccf45,
    0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2,
    0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db,
    0xaed16a4a, 0xd9d65adc, 0x40df0b66, 0x37d83bf0,
    0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
    0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6,
    0xbad03605, 0xcdd70693, 0x54de5729, 0x23d967bf,
    0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94,
    0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d
};


/*
 * The set: the peers in order of weight, heaviest first (equal weights in
 * their own order), the eligible ones of them, and the tree over those.
 * The arrays are laid out in one block: nodes and prefix sums (8 bytes
 * aligned) first.
 */

size_t
mesh_set_size(size_t n)
{
    return n * sizeof(mesh_set_node_t) + (n + 1) * sizeof(uint64_t)
           + 2 * n * sizeof(uint32_t);
}


void
mesh_set_init(mesh_set_t *set, void *mem, const mesh_peer_t *peers,
    size_t n)
{
    unsigned char  *p = mem;

    memset(set, 0, sizeof(mesh_set_t));

    set->size = n;
    set->nodes = (mesh_set_node_t *) p;
    p += n * sizeof(mesh_set_node_t);
    set->prefix = (uint64_t *) p;
    p += (n + 1) * sizeof(uint64_t);
    set->order = (uint32_t *) p;
    p += n * sizeof(uint32_t);
    set->elig = (uint32_t *) p;

    mesh_set_sort(set->order, set->elig, peers, n);
}


/* a stable merge sort of the peer indices by weight, heaviest first */

static void
mesh_set_sort(uint32_t *order, uint32_t *tmp, const mesh_peer_t *peers,
    size_t n)
{
    size_t     i, width, lo, mid, hi, a, b, k;
    uint32_t  *from, *to, *swap;

    for (i = 0; i < n; i++) {
        order[i] = (uint32_t) i;
    }

    from = order;
    to = tmp;

    for (width = 1; width < n; width *= 2) {

        for (lo = 0; lo < n; lo += 2 * width) {
            mid = (lo + width < n) ? lo + width : n;
            hi = (lo + 2 * width < n) ? lo + 2 * width : n;

            a = lo;
            b = mid;

            for (k = lo; k < hi; k++) {
                if (a < mid
                    && (b >= hi
                        || peers[from[a]].weight >= peers[from[b]].weight))
                {
                    to[k] = from[a++];

                } else {
                    to[k] = from[b++];
                }
            }
        }

        swap = from;
        from = to;
        to = swap;
    }

    if (from != order) {
        memcpy(order, from, n * sizeof(uint32_t));
    }
}


void
mesh_set_build(mesh_set_t *set, const mesh_peer_t *peers)
{
    size_t    i, n;
    uint32_t  k;

    n = 0;
    set->prefix[0] = 0;
    set->equal = 1;

    for (i = 0; i < set->size; i++) {
        k = set->order[i];

        if (peers[k].skip) {
            continue;
        }

        if (n && peers[k].weight != peers[set->elig[0]].weight) {
            set->equal = 0;
        }

        set->elig[n++] = k;
        set->prefix[n] = set->prefix[n - 1] + (uint64_t) peers[k].weight;
    }

    set->n = n;
    set->total = set->prefix[n];
    set->nnodes = 0;
    set->root = n ? mesh_set_tree(set, 0, n) : -1;
}


/*
 * The subtree over elig[lo..hi): a leaf for one peer, else a node whose
 * split leaves the two sides as near to equal weight as the order allows.
 */
static int32_t
mesh_set_tree(mesh_set_t *set, size_t lo, size_t hi)
{
    size_t            i, j, k;
    uint64_t          half, dk, dj;
    int32_t           c;
    mesh_set_node_t  *node;

    if (hi - lo == 1) {
        return -1 - (int32_t) set->elig[lo];
    }

    /* the first k in (lo, hi) whose prefix reaches half the weight */

    half = set->prefix[lo] + (set->prefix[hi] - set->prefix[lo]) / 2;

    i = lo + 1;
    j = hi - 1;

    while (i < j) {
        k = i + (j - i) / 2;

        if (set->prefix[k] < half) {
            i = k + 1;

        } else {
            j = k;
        }
    }

    k = i;

    /* or the one before it, when that one is nearer */

    if (k > lo + 1) {
        dk = 2 * set->prefix[k] - set->prefix[lo] - set->prefix[hi];
        dj = set->prefix[lo] + set->prefix[hi] - 2 * set->prefix[k - 1];

        if (dj <= dk) {
            k--;
        }
    }

    c = (int32_t) set->nnodes++;
    node = &set->nodes[c];

    node->weight = set->prefix[hi] - set->prefix[lo];
    node->left = set->prefix[k] - set->prefix[lo];
    node->child[0] = mesh_set_tree(set, lo, k);
    node->child[1] = mesh_set_tree(set, k, hi);

    return c;
}


int
mesh_set_at(const mesh_set_t *set, uint64_t pos)
{
    int32_t                 c;
    uint64_t                q, r;
    unsigned __int128       x;
    const mesh_set_node_t  *node;

    if (set->n == 0) {
        return -1;
    }

    if (set->equal) {
        return (int) set->elig[pos % set->n];
    }

    pos %= set->total;

    for (c = set->root; c >= 0; /* void */) {
        node = &set->nodes[c];

        /* the line of slope left / weight, rounded at the middle */

        if (node->weight <= 0xffffffff) {
            q = pos * node->left + node->weight / 2;
            r = q % node->weight;
            q /= node->weight;

        } else {
            x = (unsigned __int128) pos * node->left + node->weight / 2;
            r = (uint64_t) (x % node->weight);
            q = (uint64_t) (x / node->weight);
        }

        if (r + node->left >= node->weight) {
            c = node->child[0];
            pos = q;

        } else {
            c = node->child[1];
            pos -= q;
        }
    }

    return -1 - c;
}


/* the first peer of the set from "from" on that accept takes; -1: none */

static int
mesh_set_scan(const mesh_set_t *set, uint64_t from, mesh_accept_pt accept,
    void *ctx)
{
    size_t    k, i;
    uint32_t  peer;

    if (set->n == 0) {
        return -1;
    }

    i = from % set->n;

    for (k = 0; k < set->n; k++) {
        peer = set->elig[i];

        if (accept == NULL || accept(ctx, peer)) {
            return (int) peer;
        }

        if (++i == set->n) {
            i = 0;
        }
    }

    return -1;
}


int
mesh_wrr_pick(const mesh_set_t *set, uint64_t *next, mesh_accept_pt accept,
    void *ctx)
{
    int       i;
    size_t    k;
    uint64_t  pos;

    pos = 0;

    for (k = 0; k < MESH_PICK_DRAWS; k++) {
        pos = __sync_fetch_and_add(next, 1);
        i = mesh_set_at(set, pos);

        if (i < 0 || accept == NULL || accept(ctx, (size_t) i)) {
            return i;
        }
    }

    return mesh_set_scan(set, pos, accept, ctx);
}


int
mesh_random_pick(const mesh_set_t *set, mesh_rand_pt rnd, void *state,
    mesh_accept_pt accept, void *ctx)
{
    int       i;
    size_t    k;
    uint64_t  pos;

    if (set->n == 0) {
        return -1;
    }

    pos = 0;

    for (k = 0; k < MESH_PICK_DRAWS; k++) {
        if (set->equal) {
            pos = mesh_rand_below(rnd, state, set->n);
            i = (int) set->elig[pos];

        } else {
            pos = mesh_rand_below(rnd, state, set->total);
            i = mesh_set_at(set, pos);
        }

        if (accept == NULL || accept(ctx, (size_t) i)) {
            return i;
        }
    }

    return mesh_set_scan(set, pos, accept, ctx);
}


/* of two draws, the higher weight / (active + 1), compared by cross
 * multiplication; a tie goes to the first */

static inline int
mesh_p2c_better(const mesh_peer_t *peers, uint32_t ia, uint32_t ib)
{
    uint64_t  wa, wb;

    wa = (uint64_t) peers[ia].weight * ((uint64_t) *peers[ib].active + 1);
    wb = (uint64_t) peers[ib].weight * ((uint64_t) *peers[ia].active + 1);

    return (int) (wb > wa ? ib : ia);
}


int
mesh_p2c_pick(const mesh_set_t *set, const mesh_peer_t *peers,
    mesh_rand_pt rnd, void *state, mesh_accept_pt accept, void *ctx)
{
    int       oka, okb;
    size_t    k, m, a, b;
    uint32_t  ia, ib;

    m = set->n;

    if (m == 0) {
        return -1;
    }

    if (m == 1) {
        ia = set->elig[0];
        return (accept == NULL || accept(ctx, ia)) ? (int) ia : -1;
    }

    if (accept == NULL) {
        a = (size_t) mesh_rand_below(rnd, state, m);
        b = (size_t) mesh_rand_below(rnd, state, m - 1);

        if (b >= a) {
            b++;
        }

        return mesh_p2c_better(peers, set->elig[a], set->elig[b]);
    }

    a = 0;

    for (k = 0; k < MESH_PICK_DRAWS; k++) {

        /* two distinct draws among the m of the set */

        a = (size_t) mesh_rand_below(rnd, state, m);
        b = (size_t) mesh_rand_below(rnd, state, m - 1);

        if (b >= a) {
            b++;
        }

        ia = set->elig[a];
        ib = set->elig[b];

        oka = (accept == NULL || accept(ctx, ia));
        okb = (accept == NULL || accept(ctx, ib));

        if (oka && okb) {
            return mesh_p2c_better(peers, ia, ib);
        }

        if (oka) {
            return (int) ia;
        }

        if (okb) {
            return (int) ib;
        }
    }

    return mesh_set_scan(set, a, accept, ctx);
}


uint32_t
mesh_xorshift32(void *state)
{
    return mesh_rand32(NULL, state);
}




static uint32_t
mesh_crc32_update(uint32_t crc, const void *data, size_t len)
{
    const unsigned char  *p = data;

    while (len--) {
        crc = mesh_crc32_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }

    return crc;
}


uint32_t
mesh_crc32(const void *data, size_t len)
{
    return mesh_crc32_update(0xffffffff, data, len) ^ 0xffffffff;
}


size_t
mesh_chash_points(const int *weights, size_t n)
{
    size_t  i, total;

    total = 0;

    for (i = 0; i < n; i++) {
        if (weights && weights[i] < 1) {
            return (size_t) -1;
        }

        total += weights ? (size_t) weights[i] : 1;

        if (total > (size_t) -1 / MESH_CHASH_POINTS
                    / sizeof(mesh_chash_point_t) / 2)
        {
            return (size_t) -1;
        }
    }

    return total * MESH_CHASH_POINTS;
}


/*
 * As ngx_http_upstream_init_chash(): crc32(HOST \0 PORT PREV_HASH),
 * compatible with Cache::Memcached::Fast. The port is the run of digits
 * after the last ':'; without one the whole is the host.
 */
static uint32_t
mesh_chash_base(const char *server, size_t len)
{
    size_t          j, host_len, port_len;
    uint32_t        base;
    unsigned char   c;
    const char     *host, *port;

    if (len >= 5 && strncasecmp(server, "unix:", 5) == 0) {
        host = server + 5;
        host_len = len - 5;
        port = NULL;
        port_len = 0;
        goto done;
    }

    for (j = 0; j < len; j++) {
        c = (unsigned char) server[len - j - 1];

        if (c == ':') {
            host = server;
            host_len = len - j - 1;
            port = server + len - j;
            port_len = j;
            goto done;
        }

        if (c < '0' || c > '9') {
            break;
        }
    }

    host = server;
    host_len = len;
    port = NULL;
    port_len = 0;

done:

    base = 0xffffffff;
    base = mesh_crc32_update(base, host, host_len);
    base = mesh_crc32_update(base, "", 1);
    base = mesh_crc32_update(base, port, port_len);

    return base;
}


int
mesh_chash_builder_init(mesh_chash_builder_t *b, const char *const *servers,
    const size_t *lens, const int *weights, size_t n)
{
    size_t  i, total;

    memset(b, 0, sizeof(mesh_chash_builder_t));

    total = mesh_chash_points(weights, n);
    if (total == (size_t) -1) {
        return -1;
    }

    b->n = n;
    b->total = total;

    if (total == 0) {
        b->phase = MESH_CHASH_DONE;
        return 0;
    }

    /* about two points per bucket of the index */

    b->bits = 1;

    while (((size_t) 1 << b->bits) < total / 2
           && b->bits < MESH_CHASH_INDEX_BITS)
    {
        b->bits++;
    }

    b->base = malloc(n * (sizeof(uint32_t) + sizeof(int)));
    b->points = malloc(total * sizeof(mesh_chash_point_t));
    b->tmp = malloc(total * sizeof(mesh_chash_point_t));
    b->counts = calloc(3 * MESH_CHASH_RADIX, sizeof(uint32_t));
    b->index = malloc((((size_t) 1 << b->bits) + 1) * sizeof(uint32_t));

    if (b->base == NULL || b->points == NULL || b->tmp == NULL
        || b->counts == NULL || b->index == NULL)
    {
        mesh_chash_builder_free(b);
        return -1;
    }

    b->weights = (int *) (b->base + n);

    for (i = 0; i < n; i++) {
        b->base[i] = mesh_chash_base(servers[i],
                                     lens ? lens[i] : strlen(servers[i]));
        b->weights[i] = weights ? weights[i] : 1;
    }

    return 0;
}


/*
 * Up to about budget points' worth of work. The points are made in peer
 * order, then sorted by hash with three stable passes of a radix sort (11
 * bits each, low to high: 2,048 buckets keep the writes in cache): equal
 * hashes stay in peer order, as the stable merge sort behind glibc's
 * qsort() (and so nginx's ngx_qsort()) leaves them; then equal hashes
 * collapse to the first.
 */
int
mesh_chash_builder_step(mesh_chash_builder_t *b, size_t budget)
{
    size_t               k, sum, c, count;
    uint32_t             hash, *hist, shift;
    unsigned char        prev_bytes[4];
    mesh_chash_point_t  *from, *to, *t;

    while (budget) {

        switch (b->phase) {

        case MESH_CHASH_POINTS_PHASE:

            for ( ; b->i < b->n && budget; budget--) {
                count = (size_t) b->weights[b->i] * MESH_CHASH_POINTS;

                /* the previous point as 4 little-endian bytes */
                prev_bytes[0] = (unsigned char) (b->prev & 0xff);
                prev_bytes[1] = (unsigned char) ((b->prev >> 8) & 0xff);
                prev_bytes[2] = (unsigned char) ((b->prev >> 16) & 0xff);
                prev_bytes[3] = (unsigned char) ((b->prev >> 24) & 0xff);

                hash = mesh_crc32_update(b->base[b->i], prev_bytes, 4)
                       ^ 0xffffffff;

                b->points[b->npoints].hash = hash;
                b->points[b->npoints].peer = (uint32_t) b->i;
                b->npoints++;

                b->counts[hash & 0x7ff]++;
                b->counts[MESH_CHASH_RADIX + ((hash >> 11) & 0x7ff)]++;
                b->counts[2 * MESH_CHASH_RADIX + (hash >> 22)]++;

                b->prev = hash;

                if (++b->j == count) {
                    b->i++;
                    b->j = 0;
                    b->prev = 0;
                }
            }

            if (b->i == b->n) {
                /* counts to starting positions */
                for (hist = b->counts;
                     hist < b->counts + 3 * MESH_CHASH_RADIX;
                     hist += MESH_CHASH_RADIX)
                {
                    sum = 0;

                    for (k = 0; k < MESH_CHASH_RADIX; k++) {
                        c = hist[k];
                        hist[k] = (uint32_t) sum;
                        sum += c;
                    }
                }

                b->phase = MESH_CHASH_SORT_PHASE;
                b->pass = 0;
                b->k = 0;
            }

            break;

        case MESH_CHASH_SORT_PHASE:

            from = b->points;
            to = b->tmp;
            shift = 11 * (uint32_t) b->pass;
            hist = b->counts + b->pass * MESH_CHASH_RADIX;

            for ( ; b->k < b->npoints && budget; b->k++, budget--) {
                to[hist[(from[b->k].hash >> shift) & 0x7ff]++] = from[b->k];
            }

            if (b->k == b->npoints) {
                /* this pass's output is the next one's input */
                t = b->points;
                b->points = b->tmp;
                b->tmp = t;

                b->k = 0;

                if (++b->pass == 3) {
                    b->phase = MESH_CHASH_COLLAPSE_PHASE;
                }
            }

            break;

        case MESH_CHASH_COLLAPSE_PHASE:

            if (b->k == 0) {
                b->k = 1;
                b->kept = 1;
            }

            for ( ; b->k < b->npoints && budget; b->k++, budget--) {
                if (b->points[b->kept - 1].hash != b->points[b->k].hash) {
                    b->points[b->kept++] = b->points[b->k];
                }
            }

            if (b->k == b->npoints) {
                b->phase = MESH_CHASH_INDEX_PHASE;
                b->k = 0;
                b->bucket = 0;
            }

            break;

        case MESH_CHASH_INDEX_PHASE:

            /* every bucket up to a point's own starts at that point */

            for ( ; b->k < b->kept && budget; b->k++, budget--) {
                c = b->points[b->k].hash >> (32 - b->bits);

                while (b->bucket <= c) {
                    b->index[b->bucket++] = (uint32_t) b->k;
                }
            }

            if (b->k == b->kept) {
                while (b->bucket <= ((size_t) 1 << b->bits)) {
                    b->index[b->bucket++] = (uint32_t) b->kept;
                }

                b->phase = MESH_CHASH_DONE;
            }

            break;

        default: /* MESH_CHASH_DONE */
            return 1;
        }
    }

    return b->phase == MESH_CHASH_DONE;
}


void
mesh_chash_builder_take(mesh_chash_builder_t *b, mesh_chash_ring_t *ring)
{
    ring->points = b->points;
    ring->npoints = b->points ? b->kept : 0;
    ring->index = b->points ? b->index : NULL;
    ring->bits = b->bits;

    b->points = NULL;
    if (ring->index) {
        b->index = NULL;
    }
}


void
mesh_chash_builder_free(mesh_chash_builder_t *b)
{
    free(b->base);
    free(b->points);
    free(b->tmp);
    free(b->counts);
    free(b->index);

    b->base = NULL;
    b->points = NULL;
    b->tmp = NULL;
    b->counts = NULL;
    b->index = NULL;
}


int
mesh_chash_build(mesh_chash_ring_t *ring, const char *const *servers,
    const size_t *lens, const int *weights, size_t n)
{
    mesh_chash_builder_t  b;

    ring->points = NULL;
    ring->index = NULL;
    ring->npoints = 0;

    if (mesh_chash_builder_init(&b, servers, lens, weights, n) != 0) {
        return -1;
    }

    (void) mesh_chash_builder_step(&b, (size_t) -1);

    mesh_chash_builder_take(&b, ring);
    mesh_chash_builder_free(&b);

    return 0;
}


void
mesh_chash_free(mesh_chash_ring_t *ring)
{
    if (ring == NULL) {
        return;
    }

    free(ring->points);
    free(ring->index);
    ring->points = NULL;
    ring->index = NULL;
    ring->npoints = 0;
}


static size_t
mesh_chash_find_point(const mesh_chash_ring_t *ring, uint32_t hash)
{
    size_t                     i, j, k;
    const mesh_chash_point_t  *point;

    /*
     * The first point >= hash, as ngx_http_upstream_find_chash_point(),
     * looked for among the points of hash's bucket: if none of them is,
     * it is the first point of the buckets after.
     */

    point = ring->points;

    if (ring->index) {
        k = hash >> (32 - ring->bits);
        i = ring->index[k];
        j = ring->index[k + 1];

    } else {
        i = 0;
        j = ring->npoints;
    }

    while (i < j) {
        k = (i + j) / 2;

        if (hash > point[k].hash) {
            i = k + 1;

        } else if (hash < point[k].hash) {
            j = k;

        } else {
            return k;
        }
    }

    return i;
}


int
mesh_modulo_pick(const mesh_peer_t *peers, size_t n, uint32_t hash,
    mesh_accept_pt accept, void *ctx)
{
    size_t  i, k;

    for (k = 0; k < n; k++) {
        i = (hash + k) % n;

        if (!peers[i].skip && (accept == NULL || accept(ctx, i))) {
            return (int) i;
        }
    }

    return -1;
}


int
mesh_chash_pick(const mesh_chash_ring_t *ring, const mesh_peer_t *peers,
    uint32_t hash, mesh_accept_pt accept, void *ctx)
{
    size_t    i, tries;
    uint32_t  peer;

    if (ring->npoints == 0) {
        return -1;
    }

    i = mesh_chash_find_point(ring, hash);

    /* past the last point wraps to the first; skipped peers move on */

    for (tries = 0; tries < ring->npoints; tries++, i++) {
        peer = ring->points[i % ring->npoints].peer;

        if (!peers[peer].skip && (accept == NULL || accept(ctx, peer))) {
            return (int) peer;
        }
    }

    return -1;
}
