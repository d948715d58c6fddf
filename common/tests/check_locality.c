/*
 * check_locality: localities, Istio's priorities, Envoy's shares and
 * slow start (common/mesh_locality), localityLbSetting in the policy
 * model and its packed form, and least request in slow start.
 */

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_balancer.h"
#include "mesh_locality.h"
#include "mesh_policy.h"


static mesh_locality_t
loc_of(const char *s)
{
    mesh_locality_t  loc;

    ck_assert_int_eq(mesh_locality_parse(s, strlen(s), &loc), 0);
    return loc;
}


START_TEST(locality_parse_takes_one_to_three_names)
{
    mesh_locality_t  loc;

    loc = loc_of("us-east/us-east-1a/rack1");
    ck_assert_uint_eq(loc.len[0], 7);
    ck_assert(memcmp(loc.part[1], "us-east-1a", 10) == 0);
    ck_assert_uint_eq(loc.len[2], 5);

    loc = loc_of("a");
    ck_assert_uint_eq(loc.len[0], 1);
    ck_assert_uint_eq(loc.len[1], 0);

    ck_assert_int_eq(mesh_locality_parse("a/b/c/d", 7, &loc), -1);
    ck_assert_int_eq(mesh_locality_parse("a//c", 4, &loc), -1);
    ck_assert_int_eq(mesh_locality_parse("a/", 2, &loc), -1);
    ck_assert_int_eq(mesh_locality_parse("a/*", 3, &loc), -1);
    ck_assert_int_eq(mesh_locality_parse("", 0, &loc), -1);
    ck_assert_int_eq(mesh_locality_parse("a b", 3, &loc), -1);
}
END_TEST


START_TEST(locality_patterns_match_as_istio)
{
    mesh_locality_t  loc;

    ck_assert(mesh_locality_pattern_valid("*", 1));
    ck_assert(mesh_locality_pattern_valid("a/*", 3));
    ck_assert(mesh_locality_pattern_valid("a/b/*", 5));
    ck_assert(!mesh_locality_pattern_valid("*/b", 3));
    ck_assert(!mesh_locality_pattern_valid("a/b/c/*", 7));

    loc = loc_of("us-east/z1/r1");
    ck_assert(mesh_locality_match(&loc, "*"));
    ck_assert(mesh_locality_match(&loc, "us-east"));
    ck_assert(mesh_locality_match(&loc, "us-east/*"));
    ck_assert(mesh_locality_match(&loc, "us-east/z1/*"));
    ck_assert(mesh_locality_match(&loc, "us-east/z1/r1"));
    ck_assert(!mesh_locality_match(&loc, "us-east/z2/*"));
    ck_assert(!mesh_locality_match(&loc, "us-east/z1/r2"));
    ck_assert(!mesh_locality_match(&loc, "eu-west"));

    loc = loc_of("us-east");
    ck_assert(mesh_locality_match(&loc, "us-east/*"));
    ck_assert(!mesh_locality_match(&loc, "us-east/z1"));

    ck_assert(mesh_locality_overlap("a/*", "a/b"));
    ck_assert(mesh_locality_overlap("*", "x"));
    ck_assert(mesh_locality_overlap("a", "a/b/c"));
    ck_assert(!mesh_locality_overlap("a/b", "a/c"));
    ck_assert(!mesh_locality_overlap("a/*", "b/*"));
}
END_TEST


START_TEST(locality_priority_follows_istio)
{
    mesh_label_t              self_labels[] = { { "version", "v1" } };
    mesh_label_t              v1[] = { { "version", "v1" } };
    mesh_label_t              v2[] = { { "version", "v2" } };
    mesh_locality_t           self, l;
    const char               *keys[] = { "version", MESH_TOPOLOGY_REGION };
    mesh_locality_lb_t        lb;
    mesh_locality_failover_t  fo = { "us-east", "eu-west" };

    memset(&lb, 0, sizeof(lb));
    lb.enabled = 1;
    self = loc_of("us-east/z1/r1");

#define PRIO(s, labels, n)                                                   \
    (l = loc_of(s), mesh_locality_priority(&lb, &self, self_labels, 1, &l,  \
                                           labels, n))

    ck_assert_uint_eq(PRIO("us-east/z1/r1", NULL, 0), 0);
    ck_assert_uint_eq(PRIO("us-east/z1/r2", NULL, 0), 1);
    ck_assert_uint_eq(PRIO("us-east/z2", NULL, 0), 2);
    ck_assert_uint_eq(PRIO("eu-west/z1", NULL, 0), 3);
    ck_assert_uint_eq(PRIO("ap-south", NULL, 0), 3);

    /* failover: another region than "to" after it */
    lb.failover = &fo;
    lb.nfailover = 1;
    ck_assert_uint_eq(PRIO("eu-west/z1", NULL, 0), 3);
    ck_assert_uint_eq(PRIO("ap-south", NULL, 0), 4);
    ck_assert_uint_eq(PRIO("us-east/z2", NULL, 0), 2);

    /* failoverPriority: the keys matched from the first, and with
     * failover 5 times that plus the locality's */
    lb.priority = keys;
    lb.npriority = 2;
    ck_assert_uint_eq(PRIO("us-east/z9", v1, 1), 0 * 5 + 2);
    ck_assert_uint_eq(PRIO("eu-west", v1, 1), 1 * 5 + 3);
    ck_assert_uint_eq(PRIO("us-east/z1/r1", v2, 1), 2 * 5 + 0);

    lb.failover = NULL;
    lb.nfailover = 0;
    ck_assert_uint_eq(PRIO("us-east/z9", v1, 1), 0);
    ck_assert_uint_eq(PRIO("eu-west", v1, 1), 1);
    ck_assert_uint_eq(PRIO("us-east", v2, 1), 2);
    ck_assert_uint_eq(PRIO("us-east", NULL, 0), 2);

#undef PRIO
}
END_TEST


START_TEST(locality_priority_load_overprovisions_by_1_4)
{
    size_t    healthy[3], total[3];
    unsigned  load[3];

    /* 3 of 5: 84%, the next the rest */
    healthy[0] = 3; total[0] = 5;
    healthy[1] = 2; total[1] = 2;
    healthy[2] = 2; total[2] = 2;
    mesh_priority_load(healthy, total, 3, load);
    ck_assert_uint_eq(load[0], 84);
    ck_assert_uint_eq(load[1], 16);
    ck_assert_uint_eq(load[2], 0);

    /* 3 of 4: 105% -> all */
    healthy[0] = 3; total[0] = 4;
    mesh_priority_load(healthy, total, 3, load);
    ck_assert_uint_eq(load[0], 100);
    ck_assert_uint_eq(load[1] + load[2], 0);

    /* too few anywhere: scaled up to 100 */
    healthy[0] = 1; total[0] = 10;     /* 14 */
    healthy[1] = 1; total[1] = 5;      /* 28 */
    healthy[2] = 0; total[2] = 2;
    mesh_priority_load(healthy, total, 3, load);
    ck_assert_uint_eq(load[0] + load[1] + load[2], 100);
    ck_assert_uint_eq(load[1], 66);
    ck_assert_uint_eq(load[0], 34);     /* 33 + the rounding */

    healthy[0] = 0;
    healthy[1] = 0;
    mesh_priority_load(healthy, total, 3, load);
    ck_assert_uint_eq(load[0] + load[1] + load[2], 0);

    /* weight * min(1, 1.4 * healthy / total) */
    ck_assert(mesh_locality_effective(70, 2, 2) == 70);
    ck_assert(mesh_locality_effective(70, 3, 4) == 70);
    ck_assert(mesh_locality_effective(70, 1, 2) > 48.999
              && mesh_locality_effective(70, 1, 2) < 49.001);
    ck_assert(mesh_locality_effective(100, 1, 4) > 34.999
              && mesh_locality_effective(100, 1, 4) < 35.001);
    ck_assert(mesh_locality_effective(100, 0, 4) == 0);
}
END_TEST


START_TEST(locality_warmup_ramps_from_10_percent)
{
    ck_assert_uint_eq(mesh_warmup_percent(0, 4000), 10);
    ck_assert_uint_eq(mesh_warmup_percent(200, 4000), 10);
    ck_assert_uint_eq(mesh_warmup_percent(1000, 4000), 25);
    ck_assert_uint_eq(mesh_warmup_percent(3999, 4000), 99);
    ck_assert_uint_eq(mesh_warmup_percent(4000, 4000), 100);
    ck_assert_uint_eq(mesh_warmup_percent(5, 0), 100);
}
END_TEST


/* least request in slow start: with nothing in flight each peer takes
 * its weight's share */
START_TEST(locality_p2c_weighted_shares_follow_weights)
{
    int          i, k;
    void        *mem;
    uint32_t     active[3] = { 0, 0, 0 }, state = 12345;
    unsigned     got[3] = { 0, 0, 0 };
    mesh_set_t   set;
    mesh_peer_t  peers[3];

    for (k = 0; k < 3; k++) {
        peers[k].weight = (k == 2) ? 25 : 100;
        peers[k].active = &active[k];
        peers[k].skip = 0;
    }

    mem = malloc(mesh_set_size(3));
    ck_assert(mem != NULL);
    mesh_set_init(&set, mem, peers, 3);
    mesh_set_build(&set, peers);

    for (i = 0; i < 22500; i++) {
        k = mesh_p2c_weighted_pick(&set, peers, NULL, &state, NULL, NULL);
        ck_assert(k >= 0 && k < 3);
        got[k]++;
    }

    /* 25 / 225 of 22500 = 2500, sigma ~ 47 */
    ck_assert_msg(got[2] > 2300 && got[2] < 2700, "got %u", got[2]);

    /* with requests in flight, the one with fewer wins */
    active[0] = 5;
    active[1] = 5;
    got[2] = 0;

    for (i = 0; i < 1000; i++) {
        got[2] += (mesh_p2c_weighted_pick(&set, peers, NULL, &state, NULL,
                                          NULL) == 2);
    }

    ck_assert_uint_gt(got[2], 150);

    /* weights changed: sorted again */
    peers[2].weight = 300;
    mesh_set_reorder(&set, peers);
    mesh_set_build(&set, peers);
    ck_assert_uint_eq(set.order[0], 2);
    ck_assert_uint_eq(set.total, 500);

    free(mem);
}
END_TEST


static const char  ck_doc[] =
    "[{\"policy\":\"p\",\"kind\":\"DestinationRule\",\"name\":\"o\","
    "\"host\":\"orders\",\"trafficPolicy\":{\"loadBalancer\":{"
    "\"simple\":\"LEAST_REQUEST\",\"warmupDurationMs\":60000,"
    "\"localityLbSetting\":{\"enabled\":true,"
    "\"failover\":[{\"from\":\"us-east\",\"to\":\"eu-west\"}],"
    "\"failoverPriority\":[\"version\",\"topology.kubernetes.io/zone\"]}}},"
    "\"subsets\":[{\"name\":\"v1\",\"labels\":{\"version\":\"v1\"}},"
    "{\"name\":\"v2\",\"labels\":{\"version\":\"v2\"},\"trafficPolicy\":{"
    "\"loadBalancer\":{\"localityLbSetting\":{\"enabled\":false,"
    "\"distribute\":[{\"from\":\"us-east/*\",\"to\":{\"us-east/*\":80,"
    "\"eu-west/z1\":20}}]}}}}]}]";


static void
ck_model(const mesh_policies_t *p)
{
    const mesh_locality_lb_t       *lb;
    const mesh_destination_rule_t  *dr;

    ck_assert_uint_eq(p->nrules, 1);
    dr = &p->rules[0];

    ck_assert_int_eq(dr->traffic.lb, MESH_LB_LEAST_REQUEST);
    ck_assert_int_eq(dr->traffic.warmup, 60000);
    lb = dr->traffic.locality;
    ck_assert(lb != NULL);
    ck_assert_int_eq(lb->enabled, 1);
    ck_assert_uint_eq(lb->nfailover, 1);
    ck_assert_str_eq(lb->failover[0].from, "us-east");
    ck_assert_str_eq(lb->failover[0].to, "eu-west");
    ck_assert_uint_eq(lb->npriority, 2);
    ck_assert_str_eq(lb->priority[1], MESH_TOPOLOGY_ZONE);
    ck_assert_uint_eq(lb->ndistribute, 0);

    /* v1 takes the rule's loadBalancer whole, v2 has its own */
    ck_assert(dr->subsets[0].policy.locality == lb
              || dr->subsets[0].policy.locality->npriority == 2);
    ck_assert_int_eq(dr->subsets[0].policy.warmup, 60000);
    ck_assert_int_eq(dr->subsets[0].policy.lb, MESH_LB_LEAST_REQUEST);

    lb = dr->subsets[1].policy.locality;
    ck_assert_int_eq(dr->subsets[1].policy.lb, MESH_LB_NONE);
    ck_assert_int_eq(dr->subsets[1].policy.warmup, -1);
    ck_assert_int_eq(lb->enabled, 0);
    ck_assert_uint_eq(lb->ndistribute, 1);
    ck_assert_str_eq(lb->distribute[0].from, "us-east/*");
    ck_assert_uint_eq(lb->distribute[0].nto, 2);
    ck_assert_int_eq(lb->distribute[0].to[0].weight
                     + lb->distribute[0].to[1].weight, 100);
}


START_TEST(locality_policy_reads_and_packs)
{
    char              err[MESH_ERR_LEN], *block, *again;
    size_t            size;
    mesh_policies_t  *p, *q;

    p = mesh_policies_parse(ck_doc, strlen(ck_doc), err, sizeof(err));
    ck_assert_msg(p != NULL, "%s", err);
    ck_model(p);

    size = mesh_policies_pack(p, NULL, 0);
    block = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    again = aligned_alloc(8, (size + 7) & ~(size_t) 7);
    ck_assert(block && again);
    ck_assert_uint_eq(mesh_policies_pack(p, block, size), size);
    mesh_policies_free(p);

    q = mesh_policies_unpack(block, size, err, sizeof(err));
    ck_assert_msg(q != NULL, "%s", err);
    ck_model(q);
    ck_assert_uint_eq(mesh_policies_pack(q, again, size), size);
    mesh_policies_free(q);

    free(again);
    free(block);
}
END_TEST


START_TEST(locality_policy_refuses_bad_weights)
{
    char              err[MESH_ERR_LEN];
    const char       *doc;
    mesh_policies_t  *p;

    doc = "[{\"policy\":\"p\",\"kind\":\"DestinationRule\",\"name\":\"o\","
          "\"host\":\"orders\",\"trafficPolicy\":{\"loadBalancer\":{"
          "\"localityLbSetting\":{\"distribute\":[{\"from\":\"a\","
          "\"to\":{\"b\":60}}]}}},\"subsets\":[]}]";

    p = mesh_policies_parse(doc, strlen(doc), err, sizeof(err));
    ck_assert(p == NULL);
    ck_assert_msg(strstr(err, "summing to 100") != NULL, "%s", err);
}
END_TEST


Suite *
locality_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("locality");
    tc = tcase_create("locality");
    tcase_add_test(tc, locality_parse_takes_one_to_three_names);
    tcase_add_test(tc, locality_patterns_match_as_istio);
    tcase_add_test(tc, locality_priority_follows_istio);
    tcase_add_test(tc, locality_priority_load_overprovisions_by_1_4);
    tcase_add_test(tc, locality_warmup_ramps_from_10_percent);
    tcase_add_test(tc, locality_p2c_weighted_shares_follow_weights);
    tcase_add_test(tc, locality_policy_reads_and_packs);
    tcase_add_test(tc, locality_policy_refuses_bad_weights);
    suite_add_tcase(s, tc);

    return s;
}
