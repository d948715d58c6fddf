/*
 * mesh_balancer: the set of eligible peers and its weighted schedule,
 * weighted round robin, weighted random, power of two choices and nginx's
 * consistent hash ring, in plain C.
 */

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

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


void
mesh_set_reorder(mesh_set_t *set, const mesh_peer_t *peers)
{
    mesh_set_sort(set->order, set->elig, peers, set->size);
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
mesh_wrr_draw(const mesh_set_t *set, uint64_t *next, mesh_accept_pt accept,
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


int
mesh_p2c_weighted_pick(const mesh_set_t *set, const mesh_peer_t *peers,
    mesh_rand_pt rnd, void *state, mesh_accept_pt accept, void *ctx)
{
    int       ia, ib, oka, okb;
    size_t    k;
    uint64_t  pos;

    if (set->n == 0) {
        return -1;
    }

    pos = 0;

    for (k = 0; k < MESH_PICK_DRAWS; k++) {
        pos = mesh_rand_below(rnd, state, set->total);
        ia = mesh_set_at(set, pos);
        ib = mesh_set_at(set, mesh_rand_below(rnd, state, set->total));

        oka = (accept == NULL || accept(ctx, (size_t) ia));
        okb = (ib == ia) ? oka : (accept == NULL || accept(ctx, (size_t) ib));

        if (oka && okb) {
            return (*peers[ib].active < *peers[ia].active) ? ib : ia;
        }

        if (oka) {
            return ia;
        }

        if (okb) {
            return ib;
        }
    }

    return mesh_set_scan(set, pos, accept, ctx);
}


uint32_t
mesh_xorshift32(void *state)
{
    return mesh_rand32(NULL, state);
}




/*
 * nginx's ngx_crc32_update(): the running CRC without the final inversion,
 * which zlib's crc32() takes and gives inverted (and nothing to add keeps
 * it: zlib answers 0 for a NULL buffer)
 */
static uint32_t
mesh_crc32_update(uint32_t crc, const void *data, size_t len)
{
    if (len == 0) {
        return crc;
    }

    return ~(uint32_t) crc32(~crc & 0xffffffff, data, (uInt) len);
}

uint32_t
mesh_crc32(const void *data, size_t len)
{
    return len ? (uint32_t) crc32(0, data, (uInt) len) : 0;
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
