/*
 * check_balancer: smooth weighted round robin, weighted random and power
 * of two choices.
 */

#include <check.h>
#include <string.h>

#include "mesh_balancer.h"


#define CK_MAX_PEERS  16


typedef struct {
    mesh_peer_t  peers[CK_MAX_PEERS];
    int64_t      current[CK_MAX_PEERS];
    uint32_t     active[CK_MAX_PEERS];
    size_t       n;
} ck_peers_t;


static void
ck_peers_init(ck_peers_t *p, const int *weights, size_t n)
{
    size_t  i;

    memset(p, 0, sizeof(ck_peers_t));
    p->n = n;

    for (i = 0; i < n; i++) {
        p->peers[i].weight = weights[i];
        p->peers[i].current = &p->current[i];
        p->peers[i].active = &p->active[i];
    }
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


START_TEST(swrr_weights_123_exact_per_cycle)
{
    int         w[] = { 1, 2, 3 }, counts[3], i, c, k;
    ck_peers_t  p;

    ck_peers_init(&p, w, 3);

    for (c = 0; c < 100; c++) {
        memset(counts, 0, sizeof(counts));

        for (i = 0; i < 6; i++) {
            k = mesh_swrr_pick(p.peers, p.n);
            ck_assert_int_ge(k, 0);
            ck_assert_int_lt(k, 3);
            counts[k]++;
        }

        ck_assert_int_eq(counts[0], 1);
        ck_assert_int_eq(counts[1], 2);
        ck_assert_int_eq(counts[2], 3);
    }
}
END_TEST


START_TEST(swrr_weights_511_nginx_sequence)
{
    int          w[] = { 5, 1, 1 }, i, c;
    char         seq[8];
    ck_peers_t   p;

    ck_peers_init(&p, w, 3);

    /* the sequence nginx's ngx_http_upstream_get_peer() gives */

    for (c = 0; c < 10; c++) {
        for (i = 0; i < 7; i++) {
            seq[i] = (char) ('a' + mesh_swrr_pick(p.peers, p.n));
        }

        seq[7] = '\0';
        ck_assert_str_eq(seq, "aabacaa");
    }
}
END_TEST


START_TEST(swrr_skipped_peers_take_no_part)
{
    int         w[] = { 1, 2, 3 }, counts[3], i, k;
    ck_peers_t  p;

    ck_peers_init(&p, w, 3);
    p.peers[2].skip = 1;

    memset(counts, 0, sizeof(counts));

    for (i = 0; i < 300; i++) {
        k = mesh_swrr_pick(p.peers, p.n);
        ck_assert_int_ne(k, 2);
        counts[k]++;
    }

    ck_assert_int_eq(counts[0], 100);
    ck_assert_int_eq(counts[1], 200);
    ck_assert_int_eq(p.current[2], 0);
}
END_TEST


START_TEST(swrr_all_skipped_is_minus_one)
{
    int         w[] = { 1, 1 };
    ck_peers_t  p;

    ck_peers_init(&p, w, 2);
    p.peers[0].skip = 1;
    p.peers[1].skip = 1;

    ck_assert_int_eq(mesh_swrr_pick(p.peers, p.n), -1);
    ck_assert_int_eq(mesh_swrr_pick(p.peers, 0), -1);
}
END_TEST


START_TEST(swrr_single_peer_always_wins)
{
    int         w[] = { 7 }, i;
    ck_peers_t  p;

    ck_peers_init(&p, w, 1);

    for (i = 0; i < 10; i++) {
        ck_assert_int_eq(mesh_swrr_pick(p.peers, p.n), 0);
        ck_assert_int_eq(p.current[0], 0);
    }
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
        k = mesh_random_pick(p.peers, p.n, mesh_xorshift32, &seed);
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
    uint32_t    seed;
    ck_peers_t  p;

    ck_peers_init(&p, w, 3);
    seed = 1;

    p.peers[1].skip = 1;

    for (i = 0; i < 1000; i++) {
        k = mesh_random_pick(p.peers, p.n, mesh_xorshift32, &seed);
        ck_assert(k == 0 || k == 2);
    }

    p.peers[0].skip = 1;

    for (i = 0; i < 100; i++) {
        ck_assert_int_eq(mesh_random_pick(p.peers, p.n, mesh_xorshift32,
                                          &seed), 2);
    }

    p.peers[2].skip = 1;
    ck_assert_int_eq(mesh_random_pick(p.peers, p.n, mesh_xorshift32, &seed),
                     -1);
}
END_TEST


START_TEST(random_draw_maps_to_weight_ranges)
{
    int          w[] = { 1, 2, 3 };
    uint32_t     v[1];
    ck_peers_t   p;
    ck_replay_t  r;

    ck_peers_init(&p, w, 3);

    r.values = v;
    r.n = 1;
    r.next = 0;

    /* total 6: 0 -> peer 0, 1..2 -> peer 1, 3..5 -> peer 2 */

    v[0] = ck_draw(0, 6);
    ck_assert_int_eq(mesh_random_pick(p.peers, p.n, ck_replay, &r), 0);
    v[0] = ck_draw(1, 6);
    ck_assert_int_eq(mesh_random_pick(p.peers, p.n, ck_replay, &r), 1);
    v[0] = ck_draw(2, 6);
    ck_assert_int_eq(mesh_random_pick(p.peers, p.n, ck_replay, &r), 1);
    v[0] = ck_draw(3, 6);
    ck_assert_int_eq(mesh_random_pick(p.peers, p.n, ck_replay, &r), 2);
    v[0] = 0xffffffff;
    ck_assert_int_eq(mesh_random_pick(p.peers, p.n, ck_replay, &r), 2);
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
        k = mesh_p2c_pick(p.peers, p.n, mesh_xorshift32, &seed);
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
    ck_assert_int_eq(mesh_p2c_pick(p.peers, p.n, ck_replay, &r), 1);

    /* 4 / (2 + 1) > 1 / (0 + 1) */

    p.active[0] = 2;
    ck_assert_int_eq(mesh_p2c_pick(p.peers, p.n, ck_replay, &r), 0);

    /* 4 / (4 + 1) < 1 / 1 */

    p.active[0] = 4;
    ck_assert_int_eq(mesh_p2c_pick(p.peers, p.n, ck_replay, &r), 1);

    /* huge counters do not overflow */

    p.active[0] = 0xfffffffe;
    p.active[1] = 0xffffffff;
    ck_assert_int_eq(mesh_p2c_pick(p.peers, p.n, ck_replay, &r), 0);
}
END_TEST


START_TEST(p2c_draws_two_distinct_candidates)
{
    int         w[] = { 1, 1, 1, 1, 1 }, k;
    size_t      i;
    uint32_t    seed;
    ck_peers_t  p;

    ck_peers_init(&p, w, 5);
    seed = 99;

    /* only 1 and 3 remain; with 1 busier, 3 must win every time */

    p.peers[0].skip = 1;
    p.peers[2].skip = 1;
    p.peers[4].skip = 1;
    p.active[1] = 1;

    for (i = 0; i < 1000; i++) {
        k = mesh_p2c_pick(p.peers, p.n, mesh_xorshift32, &seed);
        ck_assert_int_eq(k, 3);
    }
}
END_TEST


START_TEST(p2c_single_candidate_and_none)
{
    int         w[] = { 1, 1, 1 };
    uint32_t    seed;
    ck_peers_t  p;

    ck_peers_init(&p, w, 3);
    seed = 7;

    p.peers[0].skip = 1;
    p.peers[2].skip = 1;
    p.active[1] = 1000;

    ck_assert_int_eq(mesh_p2c_pick(p.peers, p.n, mesh_xorshift32, &seed), 1);

    p.peers[1].skip = 1;
    ck_assert_int_eq(mesh_p2c_pick(p.peers, p.n, mesh_xorshift32, &seed),
                     -1);
    ck_assert_int_eq(mesh_p2c_pick(p.peers, 0, mesh_xorshift32, &seed), -1);

    ck_peers_init(&p, w, 1);
    ck_assert_int_eq(mesh_p2c_pick(p.peers, p.n, mesh_xorshift32, &seed), 0);
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

    tc = tcase_create("swrr");
    tcase_add_test(tc, swrr_weights_123_exact_per_cycle);
    tcase_add_test(tc, swrr_weights_511_nginx_sequence);
    tcase_add_test(tc, swrr_skipped_peers_take_no_part);
    tcase_add_test(tc, swrr_all_skipped_is_minus_one);
    tcase_add_test(tc, swrr_single_peer_always_wins);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_add_test(tc, random_chi_square_1234_not_rejected);
    tcase_add_test(tc, random_skips_and_empty);
    tcase_add_test(tc, random_draw_maps_to_weight_ranges);
    tcase_add_test(tc, xorshift32_known_sequence);
    suite_add_tcase(s, tc);

    tc = tcase_create("p2c");
    tcase_add_test(tc, p2c_prefers_low_active);
    tcase_add_test(tc, p2c_weight_over_active_plus_one);
    tcase_add_test(tc, p2c_draws_two_distinct_candidates);
    tcase_add_test(tc, p2c_single_candidate_and_none);
    suite_add_tcase(s, tc);

    return s;
}
