/*
 * mesh_locality: localities ("region/zone/subzone", as Istio writes
 * them), the localityLbSetting of a DestinationRule, and the arithmetic
 * Envoy applies to them: an instance's priority as seen from this nginx,
 * the share of traffic each priority takes (overprovisioning factor 1.4),
 * locality weights (distribute), and slow start weights.
 *
 * nginx-free: registryd validates with it, the module balances with it,
 * the unit tests call it directly.
 */

#ifndef MESH_LOCALITY_H
#define MESH_LOCALITY_H

#include <stddef.h>
#include <stdint.h>

#include "mesh_snapshot.h"

#define MESH_LOCALITY_PARTS    3        /* region, zone, subzone */
#define MESH_LOCALITY_MAX      128      /* bytes, as a registry zone */

/* Envoy's overprovisioning factor, in percent */
#define MESH_OVERPROVISIONING  140

/* Istio's topology label keys in failoverPriority */
#define MESH_TOPOLOGY_REGION   "topology.kubernetes.io/region"
#define MESH_TOPOLOGY_ZONE     "topology.kubernetes.io/zone"
#define MESH_TOPOLOGY_SUBZONE  "topology.istio.io/subzone"

/* Envoy's slow start, as Istio configures it: weight percent at least */
#define MESH_WARMUP_MIN_PERCENT  10

typedef struct {
    const char   *part[MESH_LOCALITY_PARTS];   /* not NUL-terminated */
    size_t        len[MESH_LOCALITY_PARTS];    /* 0: not given */
} mesh_locality_t;

/* distribute[].to: a locality pattern and its share, 1..100 */
typedef struct {
    const char   *locality;
    int           weight;
} mesh_locality_weight_t;

typedef struct {
    const char              *from;          /* a locality pattern */
    mesh_locality_weight_t  *to;            /* weights summing to 100 */
    size_t                   nto;
} mesh_locality_distribute_t;

typedef struct {
    const char   *from;                     /* regions */
    const char   *to;
} mesh_locality_failover_t;

/* localityLbSetting; in the model when the rule gives it */
typedef struct {
    int                          enabled;
    mesh_locality_distribute_t  *distribute;
    size_t                       ndistribute;
    mesh_locality_failover_t    *failover;
    size_t                       nfailover;
    const char                 **priority;  /* failoverPriority: label
                                               keys, the topology ones
                                               naming locality parts */
    size_t                       npriority;
} mesh_locality_lb_t;


/*
 * "region", "region/zone" or "region/zone/subzone", each part a name
 * (mesh_name), at most MESH_LOCALITY_MAX bytes in all; 0, or -1 when s is
 * not one. The parts point into s.
 */
int mesh_locality_parse(const char *s, size_t len, mesh_locality_t *loc);

/*
 * A locality pattern of distribute (Istio's): a locality whose last part
 * may be "*", or "*" alone; 1 when s is one.
 */
int mesh_locality_pattern_valid(const char *s, size_t len);

/*
 * 1 when loc matches the pattern as Istio matches them: each part of the
 * pattern equal to loc's or "*"; parts the pattern does not give match
 * anything ("us-east" matches "us-east/us-east-1a/rack1").
 */
int mesh_locality_match(const mesh_locality_t *loc, const char *pattern);

/* 1 when two patterns can match one locality (Istio refuses such) */
int mesh_locality_overlap(const char *a, const char *b);

/*
 * An instance's raw priority as Istio sets it for this nginx (self, with
 * its labels, sorted by key): without failoverPriority, 0 for the same
 * region, zone and subzone, 1 for the same region and zone, 2 for the
 * same region, 3 for others, 4 for others outside the failover's "to"
 * region when a failover names self's region; with failoverPriority, the
 * number of its keys, from the first, that the instance shares with self
 * counted down from their number, times 5 plus the locality priority
 * when failover is given too. Lower is preferred; the caller makes the
 * priorities of its instances consecutive.
 */
unsigned mesh_locality_priority(const mesh_locality_lb_t *lb,
    const mesh_locality_t *self, const mesh_label_t *self_labels,
    size_t nself, const mesh_locality_t *loc, const mesh_label_t *labels,
    size_t nlabels);

/*
 * Envoy's priority load: of n priorities (healthy and total instances
 * each), the percent of the traffic each takes, summing to 100, the first
 * ones first, each at most min(100, 1.4 * its healthy percent), scaled up
 * when they add up to less than 100. All 0 when none is healthy.
 */
void mesh_priority_load(const size_t *healthy, const size_t *total,
    size_t n, unsigned *load);

/*
 * Envoy's effective locality weight: weight * min(1, 1.4 * healthy /
 * total), 0 when none is healthy.
 */
double mesh_locality_effective(double weight, size_t healthy, size_t total);

/*
 * Slow start: the weight of an instance age ms old in a window of
 * duration ms, in hundredths of its weight (100 once it is out of it,
 * at least MESH_WARMUP_MIN_PERCENT), linear as Envoy with aggression 1.
 */
unsigned mesh_warmup_percent(uint64_t age, uint64_t duration);

#endif
