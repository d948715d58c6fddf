/*
 * mesh_balancer: the selection algorithms, nginx-free.
 *
 * A balancer sees an array of mesh_peer_t. The state they share between
 * nginx workers (SWRR current weight, active requests) is reached through
 * pointers, which the module points into shared memory and the tests into
 * plain arrays. The caller holds whatever lock protects *current.
 */

#ifndef MESH_BALANCER_H
#define MESH_BALANCER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int           weight;       /* >= 1 */
    int64_t      *current;      /* SWRR current weight */
    uint32_t     *active;       /* requests in flight, all workers */
    unsigned      skip:1;       /* tried already, unhealthy, ejected */
} mesh_peer_t;

/* a uniform 32-bit random number; state is the caller's */
typedef uint32_t (*mesh_rand_pt)(void *state);

/*
 * Smooth weighted round robin, as nginx's round robin: every peer's
 * current grows by its weight, the largest wins and pays the total. With
 * weights 1:2:3 each cycle of 6 picks gives exactly 1, 2 and 3 picks.
 * Skipped peers take no part. Returns an index, or -1 when all are skipped.
 */
int mesh_swrr_pick(mesh_peer_t *peers, size_t n);

/* weighted random over the peers not skipped; -1 when none */
int mesh_random_pick(mesh_peer_t *peers, size_t n, mesh_rand_pt rnd,
    void *state);

/*
 * Power of two choices: two distinct random peers (not skipped); the one
 * with the higher weight / (active + 1) wins (ties: the first drawn). With
 * a single candidate it is that one; -1 when none.
 */
int mesh_p2c_pick(mesh_peer_t *peers, size_t n, mesh_rand_pt rnd,
    void *state);

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

typedef struct {
    mesh_chash_point_t  *points;     /* malloc'ed */
    size_t               npoints;
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
    MESH_CHASH_DONE
};

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
 * one not skipped; -1 when none */
int mesh_modulo_pick(const mesh_peer_t *peers, size_t n, uint32_t hash);

/* peer index for a key hash, skipping peers[i].skip; -1 when none */
int mesh_chash_pick(const mesh_chash_ring_t *ring, const mesh_peer_t *peers,
    uint32_t hash);

#endif
