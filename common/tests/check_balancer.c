/*
 * check_balancer: the set and its weighted schedule, weighted round
 * robin, weighted random and power of two choices.
 */

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_balancer.h"


#define CK_MAX_PEERS  16


typedef struct {
    mesh_peer_t  peers[CK_MAX_PEERS];
    uint32_t     active[CK_MAX_PEERS];
    size_t       n;
    mesh_set_t   set;
    uint64_t     mem[(CK_MAX_PEERS * (sizeof(mesh_set_node_t) + 16) + 8)
                     / 8];
    uint64_t     next;          /* the round robin position */
} ck_peers_t;


static void
ck_peers_init(ck_peers_t *p, const int *weights, size_t n)
{
    size_t  i;

    memset(p, 0, sizeof(ck_peers_t));
    p->n = n;

    for (i = 0; i < n; i++) {
        p->peers[i].weight = weights[i];
        p->peers[i].active = &p->active[i];
    }

    ck_assert_uint_le(mesh_set_size(n), sizeof(p->mem));
    mesh_set_init(&p->set, p->mem, p->peers, n);
    mesh_set_build(&p->set, p->peers);
}


/* the skip bits changed: the set again */

static void
ck_peers_set(ck_peers_t *p)
{
    mesh_set_build(&p->set, p->peers);
}


/* accept: every peer but those in the mask */

static int
ck_accept(void *ctx, size_t peer)
{
    return !((*(uint32_t *) ctx >> peer) & 1);
}


/* a generator that replays a fixed list, for exact P2C draws */

typedef struct {
    const uint32_t  *values;
    size_t           n;
    size_t           next;
} ck_replay_t;


static uint32_t
ck_replay(void *state)
{
    ck_replay_t  *r = state;

    return r->values[r->next++ % r->n];
}


/* a uniform draw of k out of m through mesh_rand_below()'s multiply-shift */

#define ck_draw(k, m)  ((uint32_t) ((((uint64_t) (k) << 32) + (m) - 1) / (m)))


START_TEST(wrr_weights_123_exact_per_cycle)
{
    int         w[] = { 1, 2, 3 }, counts[3], i, c, k;
    ck_peers_t  p;

    ck_peers_init(&p, w, 3);

    /* from any position on, every 6 picks hold 1, 2 and 3 */

    p.next = 4;

    for (c = 0; c < 100; c++) {
        memset(counts, 0, sizeof(counts));

        for (i = 0; i < 6; i++) {
            k = mesh_wrr_pick(&p.set, &p.next, NULL, NULL);
            ck_assert_int_ge(k, 0);
            ck_assert_int_lt(k, 3);
            counts[k]++;
        }

        ck_assert_int_eq(counts[0], 1);
        ck_assert_int_eq(counts[1], 2);
        ck_assert_int_eq(counts[2], 3);
    }

    ck_assert_uint_eq(p.next, 604);
}
END_TEST


START_TEST(wrr_sequences)
{
    int          w123[] = { 1, 2, 3 }, w511[] = { 5, 1, 1 },
                 w1[] = { 1, 1, 1, 1 }, i;
    char         seq[16];
    ck_peers_t   p;

    /* the heaviest is interleaved with the others, never twice in a row
     * within a cycle */

    ck_peers_init(&p, w123, 3);

    for (i = 0; i < 12; i++) {
        seq[i] = (char) ('a' + mesh_wrr_pick(&p.set, &p.next, NULL, NULL));
    }

    seq[12] = '\0';
    ck_assert_str_eq(seq, "cbcacbcbcacb");

    /* b and c apart, as nginx's "aabacaa" has them */

    ck_peers_init(&p, w511, 3);

    for (i = 0; i < 7; i++) {
        seq[i] = (char) ('a' + mesh_wrr_pick(&p.set, &p.next, NULL, NULL));
    }

    seq[7] = '\0';
    ck_assert_str_eq(seq, "abaaaca");

    /* equal weights: the peers in their order */

    ck_peers_init(&p, w1, 4);
    p.peers[2].skip = 1;
    ck_peers_set(&p);

    for (i = 0; i < 6; i++) {
        seq[i] = (char) ('a' + mesh_wrr_pick(&p.set, &p.next, NULL, NULL));
    }

    seq[6] = '\0';
    ck_assert_str_eq(seq, "abdabd");
}
END_TEST


/*
 * For random weights, from 1 to 5,000 peers: over one cycle every peer has
 * exactly its weight of positions, no gap between two of them (around the
 * cycle) is over 3 total / weight (2.62 at worst over 20,000 random sets
 * of up to 200 peers; nginx's smooth round robin stays within 2), and the
 * tree stays shallow.
 */
START_TEST(set_exact_and_smooth)
{
    int          *w;
    size_t        n, i, k, t, *last, *first, *count, depth, maxdepth;
    int32_t       c;
    uint32_t      seed, *active;
    uint64_t      pos, gap;
    mesh_set_t    set;
    mesh_peer_t  *peers;
    void         *mem;

    static const size_t  sizes[] = { 1, 2, 3, 7, 40, 300, 5000 };

    seed = 2463534242u;

    for (t = 0; t < 3 * sizeof(sizes) / sizeof(sizes[0]); t++) {
        n = sizes[t / 3];

        w = calloc(n, sizeof(int));
        peers = calloc(n, sizeof(mesh_peer_t));
        active = calloc(n, sizeof(uint32_t));
        last = calloc(n, sizeof(size_t));
        first = calloc(n, sizeof(size_t));
        count = calloc(n, sizeof(size_t));
        mem = malloc(mesh_set_size(n));
        ck_assert(w && peers && active && last && first && count && mem);

        for (i = 0; i < n; i++) {
            switch (t % 3) {
            case 0:     /* 1..1000, as the registry allows */
                w[i] = 1 + mesh_xorshift32(&seed) % 1000;
                break;
            case 1:     /* a few heavy among many light */
                w[i] = (mesh_xorshift32(&seed) % 8 == 0) ? 100 : 1;
                break;
            default:    /* 1..3 */
                w[i] = 1 + mesh_xorshift32(&seed) % 3;
            }

            peers[i].weight = w[i];
            peers[i].active = &active[i];
            peers[i].skip = (n > 3 && mesh_xorshift32(&seed) % 10 == 0);
        }

        mesh_set_init(&set, mem, peers, n);
        mesh_set_build(&set, peers);

        /* (ck_assert marks every check it passes: not in this loop) */

        for (pos = 0; pos < set.total; pos++) {
            k = (size_t) mesh_set_at(&set, pos);

            if (k >= n || peers[k].skip) {
                ck_abort_msg("n %zu position %lu: peer %zu", n,
                             (unsigned long) pos, k);
            }

            if (count[k]) {
                gap = pos - last[k];

                if (gap * w[k] > 3 * set.total) {
                    ck_abort_msg("n %zu peer %zu weight %d gap %lu of %lu",
                                 n, k, w[k], (unsigned long) gap,
                                 (unsigned long) set.total);
                }

            } else {
                first[k] = pos;
            }

            last[k] = pos;
            count[k]++;
        }

        for (i = 0; i < n; i++) {
            ck_assert_uint_eq(count[i], peers[i].skip ? 0 : (size_t) w[i]);

            if (count[i]) {
                gap = set.total - last[i] + first[i];
                ck_assert(gap * w[i] <= 3 * set.total);
            }
        }

        /* the tree's depth: nodes are made parent first */

        maxdepth = 0;
        memset(count, 0, n * sizeof(size_t));   /* now: node depths */

        for (i = 0; i < set.nnodes; i++) {
            depth = count[i] + 1;

            for (k = 0; k < 2; k++) {
                c = set.nodes[i].child[k];

                if (c >= 0) {
                    ck_assert_uint_gt((size_t) c, i);
                    count[c] = depth;
                }
            }

            if (depth > maxdepth) {
                maxdepth = depth;
            }
        }

        ck_assert_uint_le(maxdepth, 40);

        free(w);
        free(peers);
        free(active);
        free(last);
        free(first);
        free(count);
        free(mem);
    }
}
END_TEST


START_TEST(wrr_skipped_peers_take_no_part)
{
    int         w[] = { 1, 2, 3 }, counts[3], i, k;
    ck_peers_t  p;

    ck_peers_init(&p, w, 3);
    p.peers[2].skip = 1;
    ck_peers_set(&p);

    ck_assert_uint_eq(p.set.n, 2);
    ck_assert_uint_eq(p.set.total, 3);

    memset(counts, 0, sizeof(counts));

    for (i = 0; i < 300; i++) {
        k = mesh_wrr_pick(&p.set, &p.next, NULL, NULL);
        ck_assert_int_ne(k, 2);
        counts[k]++;
    }

    ck_assert_int_eq(counts[0], 100);
    ck_assert_int_eq(counts[1], 200);
}
END_TEST


START_TEST(wrr_all_skipped_is_minus_one)
{
    int         w[] = { 1, 1 };
    ck_peers_t  p;

    ck_peers_init(&p, w, 2);
    p.peers[0].skip = 1;
    p.peers[1].skip = 1;
    ck_peers_set(&p);

    ck_assert_int_eq(mesh_wrr_pick(&p.set, &p.next, NULL, NULL), -1);
    ck_assert_int_eq(mesh_set_at(&p.set, 0), -1);

    ck_peers_init(&p, w, 0);
    ck_assert_int_eq(mesh_wrr_pick(&p.set, &p.next, NULL, NULL), -1);
}
END_TEST


START_TEST(wrr_single_peer_always_wins)
{
    int         w[] = { 7 }, i;
    ck_peers_t  p;

    ck_peers_init(&p, w, 1);

    for (i = 0; i < 10; i++) {
        ck_assert_int_eq(mesh_wrr_pick(&p.set, &p.next, NULL, NULL), 0);
    }
}
END_TEST


START_TEST(wrr_accept_passes_over)
{
    int         w[] = { 1, 2, 3 }, counts[3], i, k;
    uint32_t    mask;
    ck_peers_t  p;

    ck_peers_init(&p, w, 3);
    memset(counts, 0, sizeof(counts));

    /* a retry that tried c: a and b only, from the next positions */

    mask = 1 << 2;

    for (i = 0; i < 60; i++) {
        k = mesh_wrr_pick(&p.set, &p.next, ck_accept, &mask);
        ck_assert(k == 0 || k == 1);
        counts[k]++;
    }

    ck_assert_int_gt(counts[0], 0);
    ck_assert_int_gt(counts[1], counts[0]);

    /* all tried but a: a, found by the scan when the draws miss it */

    mask = (1 << 1) | (1 << 2);

    for (i = 0; i < 20; i++) {
        ck_assert_int_eq(mesh_wrr_pick(&p.set, &p.next, ck_accept, &mask),
                         0);
    }

    mask = 7;
    ck_assert_int_eq(mesh_wrr_pick(&p.set, &p.next, ck_accept, &mask), -1);
}
END_TEST


START_TEST(set_cycle_over_2_32)
{
    int         w[] = { 0x7fffffff, 0x7ffffffe, 5 }, k;
    long        counts[3];
    uint64_t    pos, step;
    ck_peers_t  p;

    /* the cycle is 2^32 + 2: the nodes above 2^32 take the wide path */

    ck_peers_init(&p, w, 3);
    ck_assert_uint_eq(p.set.total, 0x100000002ULL);
    ck_assert_int_eq(p.set.equal, 0);

    memset(counts, 0, sizeof(counts));
    step = 4099;

    for (pos = 0; pos < p.set.total; pos += p.set.total / step) {
        k = mesh_set_at(&p.set, pos);
        ck_assert_int_ge(k, 0);
        ck_assert_int_lt(k, 3);
        counts[k]++;
    }

    ck_assert_int_ge(counts[0], 2000);
    ck_assert_int_ge(counts[1], 2000);
    ck_assert_int_le(counts[2], 2);

    ck_assert_int_ge(mesh_set_at(&p.set, p.set.total - 1), 0);
    ck_assert_int_eq(mesh_set_at(&p.set, p.set.total),
                     mesh_set_at(&p.set, 0));
}
END_TEST


START_TEST(random_chi_square_1234_not_rejected)
{
    int         w[] = { 1, 2, 3, 4 }, k;
    long        counts[4];
    double      chi2, expected, d;
    size_t      i;
    uint32_t    seed;
    ck_peers_t  p;

    ck_peers_init(&p, w, 4);
    memset(counts, 0, sizeof(counts));
    seed = 2463534242u;

    for (i = 0; i < 60000; i++) {
        k = mesh_random_pick(&p.set, mesh_xorshift32, &seed, NULL, NULL);
        ck_assert_int_ge(k, 0);
        ck_assert_int_lt(k, 4);
        counts[k]++;
    }

    chi2 = 0;

    for (i = 0; i < 4; i++) {
        expected = 60000.0 * w[i] / 10;
        d = counts[i] - expected;
        chi2 += d * d / expected;
    }

    /* 3 degrees of freedom: the critical value at p = 0.001 is 16.266 */

    ck_assert_msg(chi2 < 16.266, "chi-square %f (%ld %ld %ld %ld)", chi2,
                  counts[0], counts[1], counts[2], counts[3]);
}
END_TEST


START_TEST(random_skips_and_empty)
{
    int         w[] = { 1, 2, 3 }, i, k;
    uint32_t    seed, mask;
    ck_peers_t  p;

    ck_peers_init(&p, w, 3);
    seed = 1;

    p.peers[1].skip = 1;
    ck_peers_set(&p);

    for (i = 0; i < 1000; i++) {
        k = mesh_random_pick(&p.set, mesh_xorshift32, &seed, NULL, NULL);
        ck_assert(k == 0 || k == 2);
    }

    /* accept passes over 2 */

    mask = 1 << 2;

    for (i = 0; i < 100; i++) {
        ck_assert_int_eq(mesh_random_pick(&p.set, mesh_xorshift32, &seed,
                                          ck_accept, &mask), 0);
    }

    p.peers[0].skip = 1;
    ck_peers_set(&p);

    for (i = 0; i < 100; i++) {
        ck_assert_int_eq(mesh_random_pick(&p.set, mesh_xorshift32, &seed,
                                          NULL, NULL), 2);
    }

    ck_assert_int_eq(mesh_random_pick(&p.set, mesh_xorshift32, &seed,
                                      ck_accept, &mask), -1);

    p.peers[2].skip = 1;
    ck_peers_set(&p);
    ck_assert_int_eq(mesh_random_pick(&p.set, mesh_xorshift32, &seed,
                                      NULL, NULL), -1);
}
END_TEST


START_TEST(random_draws_cover_the_cycle)
{
    int          w[] = { 1, 2, 3 }, counts[3], k;
    uint32_t     v[1];
    ck_peers_t   p;
    ck_replay_t  r;

    ck_peers_init(&p, w, 3);

    r.values = v;
    r.n = 1;
    r.next = 0;

    /* the six draws of a cycle of 6 give each peer its weight */

    memset(counts, 0, sizeof(counts));

    for (k = 0; k < 6; k++) {
        v[0] = ck_draw(k, 6);
        counts[mesh_random_pick(&p.set, ck_replay, &r, NULL, NULL)]++;
    }

    ck_assert_int_eq(counts[0], 1);
    ck_assert_int_eq(counts[1], 2);
    ck_assert_int_eq(counts[2], 3);

    v[0] = 0xffffffff;
    ck_assert_int_ge(mesh_random_pick(&p.set, ck_replay, &r, NULL, NULL), 0);
}
END_TEST


START_TEST(p2c_prefers_low_active)
{
    int         w[] = { 1, 1, 1, 1 }, k;
    long        counts[4];
    size_t      i;
    uint32_t    seed;
    ck_peers_t  p;

    ck_peers_init(&p, w, 4);
    memset(counts, 0, sizeof(counts));
    seed = 12345;

    p.active[0] = 10;
    p.active[1] = 0;
    p.active[2] = 5;
    p.active[3] = 5;

    for (i = 0; i < 12000; i++) {
        k = mesh_p2c_pick(&p.set, p.peers, mesh_xorshift32, &seed, NULL,
                          NULL);
        ck_assert_int_ge(k, 0);
        counts[k]++;
    }

    /* peer 1 wins every pair it is in (1/2), peer 0 none */

    ck_assert_int_eq(counts[0], 0);
    ck_assert_int_gt(counts[1], 5500);
    ck_assert_int_lt(counts[1], 6500);
    ck_assert_int_gt(counts[1], counts[2]);
    ck_assert_int_gt(counts[1], counts[3]);
}
END_TEST


START_TEST(p2c_weight_over_active_plus_one)
{
    int          w[] = { 4, 1 };
    uint32_t     v[2];
    ck_peers_t   p;
    ck_replay_t  r;

    ck_peers_init(&p, w, 2);

    r.values = v;
    r.n = 2;
    r.next = 0;

    /* draws: first peer 1, then peer 0 */

    v[0] = ck_draw(1, 2);
    v[1] = ck_draw(0, 1);

    /* 4 / (3 + 1) = 1 / (0 + 1): a tie goes to the first drawn */

    p.active[0] = 3;
    p.active[1] = 0;
    ck_assert_int_eq(mesh_p2c_pick(&p.set, p.peers, ck_replay, &r, NULL,
                                   NULL), 1);

    /* 4 / (2 + 1) > 1 / (0 + 1) */

    p.active[0] = 2;
    ck_assert_int_eq(mesh_p2c_pick(&p.set, p.peers, ck_replay, &r, NULL,
                                   NULL), 0);

    /* 4 / (4 + 1) < 1 / 1 */

    p.active[0] = 4;
    ck_assert_int_eq(mesh_p2c_pick(&p.set, p.peers, ck_replay, &r, NULL,
                                   NULL), 1);

    /* huge counters do not overflow */

    p.active[0] = 0xfffffffe;
    p.active[1] = 0xffffffff;
    ck_assert_int_eq(mesh_p2c_pick(&p.set, p.peers, ck_replay, &r, NULL,
                                   NULL), 0);
}
END_TEST


START_TEST(p2c_draws_two_distinct_candidates)
{
    int         w[] = { 1, 1, 1, 1, 1 }, k;
    size_t      i;
    uint32_t    seed, mask;
    ck_peers_t  p;

    ck_peers_init(&p, w, 5);
    seed = 99;

    /* only 1 and 3 remain; with 1 busier, 3 must win every time */

    p.peers[0].skip = 1;
    p.peers[2].skip = 1;
    p.peers[4].skip = 1;
    p.active[1] = 1;
    ck_peers_set(&p);

    for (i = 0; i < 1000; i++) {
        k = mesh_p2c_pick(&p.set, p.peers, mesh_xorshift32, &seed, NULL,
                          NULL);
        ck_assert_int_eq(k, 3);
    }

    /* with 3 tried, 1 however busy */

    mask = 1 << 3;

    for (i = 0; i < 100; i++) {
        k = mesh_p2c_pick(&p.set, p.peers, mesh_xorshift32, &seed,
                          ck_accept, &mask);
        ck_assert_int_eq(k, 1);
    }
}
END_TEST


START_TEST(p2c_single_candidate_and_none)
{
    int         w[] = { 1, 1, 1 };
    uint32_t    seed, mask;
    ck_peers_t  p;

    ck_peers_init(&p, w, 3);
    seed = 7;

    p.peers[0].skip = 1;
    p.peers[2].skip = 1;
    p.active[1] = 1000;
    ck_peers_set(&p);

    ck_assert_int_eq(mesh_p2c_pick(&p.set, p.peers, mesh_xorshift32, &seed,
                                   NULL, NULL), 1);

    mask = 1 << 1;
    ck_assert_int_eq(mesh_p2c_pick(&p.set, p.peers, mesh_xorshift32, &seed,
                                   ck_accept, &mask), -1);

    p.peers[1].skip = 1;
    ck_peers_set(&p);
    ck_assert_int_eq(mesh_p2c_pick(&p.set, p.peers, mesh_xorshift32, &seed,
                                   NULL, NULL), -1);

    ck_peers_init(&p, w, 1);
    ck_assert_int_eq(mesh_p2c_pick(&p.set, p.peers, mesh_xorshift32, &seed,
                                   NULL, NULL), 0);
}
END_TEST


START_TEST(null_rand_is_xorshift32)
{
    int         w[] = { 1, 2, 3, 4, 5 }, i;
    uint32_t    s1, s2;
    ck_peers_t  p;

    ck_peers_init(&p, w, 5);
    s1 = 12345;
    s2 = 12345;

    for (i = 0; i < 1000; i++) {
        ck_assert_int_eq(mesh_random_pick(&p.set, NULL, &s1, NULL, NULL),
                         mesh_random_pick(&p.set, mesh_xorshift32, &s2, NULL,
                                          NULL));
        ck_assert_int_eq(mesh_p2c_pick(&p.set, p.peers, NULL, &s1, NULL,
                                       NULL),
                         mesh_p2c_pick(&p.set, p.peers, mesh_xorshift32, &s2,
                                       NULL, NULL));
    }

    ck_assert_uint_eq(s1, s2);
}
END_TEST


START_TEST(xorshift32_known_sequence)
{
    uint32_t  s;

    /* Marsaglia's xorshift32 (13, 17, 5) from 1 */

    s = 1;
    ck_assert_uint_eq(mesh_xorshift32(&s), 270369u);
    ck_assert_uint_eq(mesh_xorshift32(&s), 67634689u);
    ck_assert_uint_eq(mesh_xorshift32(&s), 2647435461u);
    ck_assert_uint_ne(s, 0);
}
END_TEST


Suite *
balancer_suite(void)
{
    TCase  *tc;
    Suite  *s;

    s = suite_create("balancer");

    tc = tcase_create("wrr");
    tcase_add_test(tc, wrr_weights_123_exact_per_cycle);
    tcase_add_test(tc, wrr_sequences);
    tcase_add_test(tc, set_exact_and_smooth);
    tcase_add_test(tc, wrr_skipped_peers_take_no_part);
    tcase_add_test(tc, wrr_all_skipped_is_minus_one);
    tcase_add_test(tc, wrr_single_peer_always_wins);
    tcase_add_test(tc, wrr_accept_passes_over);
    tcase_add_test(tc, set_cycle_over_2_32);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_add_test(tc, random_chi_square_1234_not_rejected);
    tcase_add_test(tc, random_skips_and_empty);
    tcase_add_test(tc, random_draws_cover_the_cycle);
    tcase_add_test(tc, xorshift32_known_sequence);
    tcase_add_test(tc, null_rand_is_xorshift32);
    suite_add_tcase(s, tc);

    tc = tcase_create("p2c");
    tcase_add_test(tc, p2c_prefers_low_active);
    tcase_add_test(tc, p2c_weight_over_active_plus_one);
    tcase_add_test(tc, p2c_draws_two_distinct_candidates);
    tcase_add_test(tc, p2c_single_candidate_and_none);
    suite_add_tcase(s, tc);

    return s;
}
