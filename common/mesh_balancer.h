/*
 * mesh_balancer: the selection algorithms, nginx-free.
 *
 * A balancer sees an array of mesh_peer_t and a set: the peers that may
 * be picked (not skipped), kept up to date by the caller when that
 * changes rather than worked out per pick, so that a pick costs the same
 * whatever the number of peers. What peers share between nginx workers
 * (active requests, the round robin position) is reached through
 * pointers, which the module points into shared memory and the tests into
 * plain arrays; it is changed with atomic operations only.
 */

#ifndef MESH_BALANCER_H
#define MESH_BALANCER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int           weight;       /* >= 1 */
    uint32_t     *active;       /* requests in flight, all workers */
    unsigned      skip:1;       /* not in the set: critical or ejected */
} mesh_peer_t;

/* a uniform 32-bit random number; state is the caller's. Where a pick
 * takes one, NULL stands for mesh_xorshift32() (state: uint32_t *, not 0)
 * without the call through a pointer. */
typedef uint32_t (*mesh_rand_pt)(void *state);

/*
 * Whether a pick may take peer (an index into the caller's array): a
 * request's retry passes over the peers it tried, a capped target over
 * those at their cap. NULL takes every peer of the set.
 */
typedef int (*mesh_accept_pt)(void *ctx, size_t peer);


/*
 * The set of peers not skipped, and a weighted schedule over them.
 *
 * Its peers are kept heaviest first (equal weights in their own order);
 * over them a binary tree whose every node splits its weight W between a
 * left part of weight a and a right part as evenly as that order allows.
 * Position p of the cycle (total weight positions) is found walking down
 * from the root: a node interleaves its two parts as a straight line of
 * slope a / W does, position p going left when
 * floor(((p + 1) a + W/2) / W) > floor((p a + W/2) / W), as the left
 * part's position floor((p a + W/2) / W), else right as the right part's
 * p minus that. Each peer takes exactly weight positions of a cycle,
 * spread over it (no gap between two of a peer's positions above 2.62
 * total / weight in 20,000 random sets, where nginx's smooth weighted
 * round robin stays within 2), and a position costs depth steps and no
 * state: workers that share a counter share one schedule. With every
 * weight equal it is the order itself, position p being peer p % n.
 *
 * The arrays live in memory of mesh_set_size() bytes the caller gives;
 * init sorts the peers once (their weights are fixed), build makes the
 * set from their skip bits, in O(n log n) at most and without allocating.
 */
typedef struct {
    uint64_t      weight;       /* of the subtree */
    uint64_t      left;         /* of its left part */
    int32_t       child[2];     /* >= 0: a node; < 0: -1 - peer, a leaf */
} mesh_set_node_t;

typedef struct {
    size_t            n;        /* peers in the set */
    size_t            size;     /* peers there are */
    uint64_t          total;    /* weight of the set: the cycle */
    uint32_t         *order;    /* all peers, heaviest first */
    uint32_t         *elig;     /* those of the set, in that order */
    uint64_t         *prefix;   /* weight of elig[0..i) */
    mesh_set_node_t  *nodes;
    size_t            nnodes;
    int32_t           root;
    unsigned          equal:1;  /* every weight of the set the same */
} mesh_set_t;

size_t mesh_set_size(size_t n);
void mesh_set_init(mesh_set_t *set, void *mem, const mesh_peer_t *peers,
    size_t n);
void mesh_set_build(mesh_set_t *set, const mesh_peer_t *peers);

/* the peers' weights changed (slow start): sort them again, then build */
void mesh_set_reorder(mesh_set_t *set, const mesh_peer_t *peers);

/* the peer at a position of the schedule (any value: taken modulo the
 * cycle); -1 for an empty set */
int mesh_set_at(const mesh_set_t *set, uint64_t pos);

/*
 * The picks. Each takes up to MESH_PICK_DRAWS candidates the algorithm's
 * way, the first that accept takes winning, then the set in order from
 * the last one; -1 when no peer of the set is accepted (or it is empty).
 */
#define MESH_PICK_DRAWS  4

/* weighted round robin: the schedule at *next, which moves on by one per
 * candidate (an atomic add: *next may be shared) */
int mesh_wrr_draw(const mesh_set_t *set, uint64_t *next,
    mesh_accept_pt accept, void *ctx);

/* the same, inline for the common case: every weight equal, nothing to
 * pass over (the set in order, one atomic add) */
static inline int
mesh_wrr_pick(const mesh_set_t *set, uint64_t *next, mesh_accept_pt accept,
    void *ctx)
{
    if (accept == NULL && set->equal && set->n) {
        return (int) set->elig[__sync_fetch_and_add(next, 1) % set->n];
    }

    return mesh_wrr_draw(set, next, accept, ctx);
}

/* weighted random: the schedule at a random position */
int mesh_random_pick(const mesh_set_t *set, mesh_rand_pt rnd, void *state,
    mesh_accept_pt accept, void *ctx);

/*
 * Power of two choices: two distinct random peers of the set; the one with
 * the higher weight / (active + 1) wins (ties: the first drawn), or the one
 * of the two accept takes. With a set of one it is that one.
 */
int mesh_p2c_pick(const mesh_set_t *set, const mesh_peer_t *peers,
    mesh_rand_pt rnd, void *state, mesh_accept_pt accept, void *ctx);

/*
 * Least request while weights are being ramped up (slow start): two
 * draws from the schedule at random positions, so each peer is drawn as
 * often as its weight says, and the one with fewer requests in flight
 * wins (ties: the first drawn). With nothing in flight each peer takes
 * its weight's share, as Envoy's weighted least request does.
 */
int mesh_p2c_weighted_pick(const mesh_set_t *set, const mesh_peer_t *peers,
    mesh_rand_pt rnd, void *state, mesh_accept_pt accept, void *ctx);

/* xorshift32 for callers without a generator of their own */
uint32_t mesh_xorshift32(void *state);   /* state: uint32_t *, not 0 */


/*
 * Consistent hash ring, built exactly as nginx's
 * "hash KEY consistent" builds it (ngx_http_upstream_hash_module.c) for
 * "server ADDRESS:PORT weight=W;": for each server, base = crc32 of
 * HOST "\0" PORT, then W * 160 points, point k = crc32(base, previous
 * point as 4 little-endian bytes) with the previous starting at 0; points
 * sorted by hash, equal hashes collapsed to the first. A key's hash is
 * crc32(key); its peer is the first point at or after that hash (wrapping),
 * moving on to the next points while their peer is skipped.
 */
typedef struct {
    uint32_t  hash;
    uint32_t  peer;             /* index into the caller's peer array */
} mesh_chash_point_t;

/*
 * The points, and an index of them by the top bits of the hash: bucket b
 * (hashes with b in their top "bits" bits) starts at point index[b], so
 * that a key's point is searched among the few of its bucket.
 */
typedef struct {
    mesh_chash_point_t  *points;     /* malloc'ed */
    size_t               npoints;
    uint32_t            *index;      /* malloc'ed, 2^bits + 1 */
    uint32_t             bits;
} mesh_chash_ring_t;

uint32_t mesh_crc32(const void *data, size_t len);   /* CRC-32 (IEEE) */

/* Envoy's cap: a larger ring is refused */
#define MESH_CHASH_MAX_POINTS  (8 * 1024 * 1024)

/* points a ring of these weights has before equal ones collapse;
 * (size_t) -1 when a weight is below 1 or the sum overflows */
size_t mesh_chash_points(const int *weights, size_t n);

/* servers[i] is "ADDRESS:PORT" as written in nginx.conf; 0 or -1 */
int mesh_chash_build(mesh_chash_ring_t *ring, const char *const *servers,
    const size_t *lens, const int *weights, size_t n);

/*
 * The same ring built a slice at a time, so that a large one never holds
 * an event loop: init copies what it needs of the servers, each step does
 * about budget points' worth of work and returns 1 once the ring is
 * complete (take moves it out), 0 while there is more.
 */
enum {
    MESH_CHASH_POINTS_PHASE = 0,
    MESH_CHASH_SORT_PHASE,
    MESH_CHASH_COLLAPSE_PHASE,
    MESH_CHASH_INDEX_PHASE,
    MESH_CHASH_DONE
};

#define MESH_CHASH_INDEX_BITS  22    /* at most: 16 MB for 8M points */

#define MESH_CHASH_RADIX  2048

typedef struct {
    size_t               n;
    size_t               total;      /* points before collapsing */
    uint32_t            *base;       /* per server: crc32 of HOST\0PORT */
    int                 *weights;
    int                  phase;
    size_t               i;          /* server */
    size_t               j;          /* its point */
    uint32_t             prev;
    size_t               k;
    size_t               pass;       /* of the radix sort, 0..2 */
    size_t               kept;
    mesh_chash_point_t  *points;
    mesh_chash_point_t  *tmp;
    size_t               npoints;
    uint32_t            *counts;     /* per pass, MESH_CHASH_RADIX each */
    uint32_t            *index;
    uint32_t             bits;
    size_t               bucket;     /* the next to start */
} mesh_chash_builder_t;

int mesh_chash_builder_init(mesh_chash_builder_t *b,
    const char *const *servers, const size_t *lens, const int *weights,
    size_t n);
int mesh_chash_builder_step(mesh_chash_builder_t *b, size_t budget);
void mesh_chash_builder_take(mesh_chash_builder_t *b,
    mesh_chash_ring_t *ring);
void mesh_chash_builder_free(mesh_chash_builder_t *b);

void mesh_chash_free(mesh_chash_ring_t *ring);

/* while a ring is being built at start: the peer hash % n, or the next
 * one not skipped and accepted; -1 when none */
int mesh_modulo_pick(const mesh_peer_t *peers, size_t n, uint32_t hash,
    mesh_accept_pt accept, void *ctx);

/* peer index for a key hash, moving on past peers skipped or not
 * accepted; -1 when none */
int mesh_chash_pick(const mesh_chash_ring_t *ring, const mesh_peer_t *peers,
    uint32_t hash, mesh_accept_pt accept, void *ctx);

#endif
