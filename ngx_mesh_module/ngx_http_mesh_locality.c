
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * localityLbSetting and warmupDurationSecs: a target's instances in
 * levels (priorities as Istio sets them up for failover, or localities
 * with the weights of distribute), the share of the picks each level
 * takes as Envoy works it out from their health (overprovisioning factor
 * 1.4), and the slow start weights of new instances. All of it is worked
 * out when the target's set is (ngx_http_mesh_target_set): a pick draws
 * one random number for its level and picks within it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


#define NGX_HTTP_MESH_PRIORITIES  64    /* levels of failover at most */


/* a level's instance index -> the target's, for the request's accept */
typedef struct {
    ngx_http_mesh_peer_data_t     *pd;
    uint32_t                      *map;
} ngx_http_mesh_level_ctx_t;


static ngx_int_t ngx_http_mesh_levels_make(ngx_http_mesh_target_t *t,
    ngx_uint_t *level, ngx_uint_t nlevels, double *weights,
    ngx_pool_t *pool);
static ngx_uint_t ngx_http_mesh_distribute(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_target_t *t, const mesh_locality_lb_t *lb,
    ngx_uint_t *level, double **weights, ngx_pool_t *pool);
static ngx_uint_t ngx_http_mesh_priorities(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_target_t *t, const mesh_locality_lb_t *lb,
    ngx_uint_t *level);
static void ngx_http_mesh_instance_locality(ngx_http_mesh_peer_t *peer,
    mesh_locality_t *loc);
static int ngx_http_mesh_level_accept(void *ctx, size_t k);


/* outlierDetection given: Istio fails over only then */

static ngx_uint_t
ngx_http_mesh_has_outlier(const mesh_traffic_policy_t *tp)
{
    return tp->consecutive_5xx >= 0 || tp->consecutive_gateway >= 0
           || tp->consecutive_local_origin >= 0 || tp->interval >= 0
           || tp->base_ejection_time >= 0 || tp->max_ejection_percent >= 0
           || tp->min_health_percent >= 0 || tp->split_local_origin >= 0;
}


/*
 * At the target's build: its slow start and its levels. Levels follow
 * from the instances' localities and labels, which a view keeps: they are
 * made once here, their health and shares with each set.
 */
ngx_int_t
ngx_http_mesh_locality_init(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_target_t *t, const mesh_traffic_policy_t *tp,
    ngx_pool_t *pool, ngx_log_t *log)
{
    double                    *weights;
    ngx_uint_t                 k, n, *level;
    const mesh_locality_lb_t  *lb;

    t->pick = t->balancer;

    if (tp == NULL || t->number == 0 || t->balancer == NGX_HTTP_MESH_CHASH) {
        return NGX_OK;          /* a ring hashes over all instances */
    }

    if (tp->warmup > 0) {
        t->warmup = (ngx_msec_t) tp->warmup;

        t->weight = ngx_palloc(pool, t->number * sizeof(int));
        if (t->weight == NULL) {
            return NGX_ERROR;
        }

        for (k = 0; k < t->number; k++) {
            t->weight[k] = t->mp[k].weight;
        }
    }

    lb = tp->locality;

    if (lb == NULL || !lb->enabled || mmcf->locality.len == 0) {
        return NGX_OK;
    }

    level = ngx_palloc(pool, t->number * sizeof(ngx_uint_t));
    if (level == NULL) {
        return NGX_ERROR;
    }

    weights = NULL;

    if (lb->ndistribute) {
        n = ngx_http_mesh_distribute(mmcf, t, lb, level, &weights, pool);
        t->distribute = 1;

    } else if (ngx_http_mesh_has_outlier(tp)) {
        n = ngx_http_mesh_priorities(mmcf, t, lb, level);

    } else {
        return NGX_OK;          /* Istio fails over with outlierDetection */
    }

    if (n == (ngx_uint_t) NGX_ERROR) {
        return NGX_ERROR;
    }

    /* one priority for all is no priority at all */

    if (n == 0 || (n == 1 && !t->distribute)) {
        t->distribute = 0;
        return NGX_OK;
    }

    if (ngx_http_mesh_levels_make(t, level, n, weights, pool) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "mesh: service \"%V\" in %ui %s", &t->service_name, n,
                   t->distribute ? "localities" : "priorities");

    return NGX_OK;
}


/* an instance's registry zone, read as a locality (none: all empty) */

static void
ngx_http_mesh_instance_locality(ngx_http_mesh_peer_t *peer,
    mesh_locality_t *loc)
{
    const char  *zone;

    zone = peer->instance ? peer->instance->zone : NULL;

    if (zone == NULL
        || mesh_locality_parse(zone, ngx_strlen(zone), loc) != 0)
    {
        ngx_memzero(loc, sizeof(mesh_locality_t));
    }
}


/*
 * failover, failoverPriority: the instances' priorities as Istio computes
 * them, made consecutive (0 the most preferred); the number of levels
 */
static ngx_uint_t
ngx_http_mesh_priorities(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_target_t *t, const mesh_locality_lb_t *lb,
    ngx_uint_t *level)
{
    unsigned                prio, seen[NGX_HTTP_MESH_PRIORITIES];
    ngx_uint_t              k, i, n, nself;
    mesh_locality_t         loc;
    const mesh_label_t     *self;
    const mesh_instance_t  *in;

    self = mmcf->labels ? mmcf->labels->elts : NULL;
    nself = mmcf->labels ? mmcf->labels->nelts : 0;

    ngx_memzero(seen, sizeof(seen));

    for (k = 0; k < t->number; k++) {
        in = t->peer[k].instance;

        ngx_http_mesh_instance_locality(&t->peer[k], &loc);

        prio = mesh_locality_priority(lb, &mmcf->self, self, nself, &loc,
                                      in ? in->labels : NULL,
                                      in ? in->nlabels : 0);

        /* 5 per failoverPriority key, and 5 */
        if (prio >= NGX_HTTP_MESH_PRIORITIES) {
            prio = NGX_HTTP_MESH_PRIORITIES - 1;
        }

        level[k] = prio;
        seen[prio] = 1;
    }

    /* consecutive: a priority's rank among those there are */

    n = 0;

    for (i = 0; i < NGX_HTTP_MESH_PRIORITIES; i++) {
        if (seen[i]) {
            seen[i] = (unsigned) ++n;
        }
    }

    for (k = 0; k < t->number; k++) {
        level[k] = seen[level[k]] - 1;
    }

    return n;
}


/*
 * distribute: the first item whose "from" matches this nginx; an
 * instance in a locality of its "to" takes part of that weight, shared
 * between the localities it matches by their instances' weights (Istio's
 * load balancing weights, rounded up); an instance no "to" matches takes
 * no traffic. A level per locality; 0 when no item is for this nginx.
 */
static ngx_uint_t
ngx_http_mesh_distribute(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_target_t *t, const mesh_locality_lb_t *lb,
    ngx_uint_t *level, double **weights, ngx_pool_t *pool)
{
    double                             *w;
    uint64_t                           *bucket_sum, *group_sum;
    ngx_uint_t                          i, j, k, n, *bucket, *group;
    mesh_locality_t                     loc, other;
    const mesh_locality_distribute_t   *d;

    d = NULL;

    for (i = 0; i < lb->ndistribute; i++) {
        if (mesh_locality_match(&mmcf->self, lb->distribute[i].from)) {
            d = &lb->distribute[i];
            break;
        }
    }

    if (d == NULL) {
        return 0;
    }

    bucket = ngx_palloc(pool, t->number * sizeof(ngx_uint_t));
    group = ngx_palloc(pool, t->number * sizeof(ngx_uint_t));
    bucket_sum = ngx_pcalloc(pool, d->nto * sizeof(uint64_t));
    group_sum = ngx_pcalloc(pool, (t->number + 1) * sizeof(uint64_t));
    w = ngx_pcalloc(pool, (t->number + 1) * sizeof(double));

    if (bucket == NULL || group == NULL || bucket_sum == NULL
        || group_sum == NULL || w == NULL)
    {
        return (ngx_uint_t) NGX_ERROR;
    }

    /* each instance's "to" (they do not overlap) and its locality's
     * group: the first instance of the same locality's (O(n * groups),
     * groups being few) */

    n = 0;

    for (k = 0; k < t->number; k++) {
        ngx_http_mesh_instance_locality(&t->peer[k], &loc);

        bucket[k] = d->nto;

        for (i = 0; i < d->nto; i++) {
            if (mesh_locality_match(&loc, d->to[i].locality)) {
                bucket[k] = i;
                break;
            }
        }

        if (bucket[k] == d->nto) {
            group[k] = (ngx_uint_t) -1;
            continue;
        }

        for (j = 0; j < k; j++) {
            if (group[j] == (ngx_uint_t) -1) {
                continue;
            }

            ngx_http_mesh_instance_locality(&t->peer[j], &other);

            if (other.len[0] == loc.len[0] && other.len[1] == loc.len[1]
                && other.len[2] == loc.len[2]
                && ngx_memcmp(other.part[0], loc.part[0], loc.len[0]) == 0
                && ngx_memcmp(other.part[1], loc.part[1], loc.len[1]) == 0
                && ngx_memcmp(other.part[2], loc.part[2], loc.len[2]) == 0)
            {
                break;
            }
        }

        group[k] = (j < k) ? group[j] : n++;
        group_sum[group[k]] += t->mp[k].weight;
        bucket_sum[bucket[k]] += t->mp[k].weight;
    }

    /* a locality's weight: its part of its "to" weight, rounded up as
     * Istio rounds it */

    for (k = 0; k < t->number; k++) {
        if (group[k] == (ngx_uint_t) -1) {
            level[k] = n;       /* no level: takes no traffic */
            continue;
        }

        level[k] = group[k];
        w[group[k]] = (double) ((group_sum[group[k]]
                                 * (uint64_t) d->to[bucket[k]].weight
                                 + bucket_sum[bucket[k]] - 1)
                                / bucket_sum[bucket[k]]);
    }

    *weights = w;

    return n;
}


/* the levels' instances copied, their sets sorted once */

static ngx_int_t
ngx_http_mesh_levels_make(ngx_http_mesh_target_t *t, ngx_uint_t *level,
    ngx_uint_t nlevels, double *weights, ngx_pool_t *pool)
{
    void                   *mem;
    ngx_uint_t              k, l;
    ngx_http_mesh_level_t  *lv;

    t->levels = ngx_pcalloc(pool, nlevels * sizeof(ngx_http_mesh_level_t));
    if (t->levels == NULL) {
        return NGX_ERROR;
    }

    t->nlevels = nlevels;

    for (k = 0; k < t->number; k++) {
        if (level[k] < nlevels) {
            t->levels[level[k]].number++;
        }
    }

    for (l = 0; l < nlevels; l++) {
        lv = &t->levels[l];

        lv->mp = ngx_palloc(pool, (lv->number + 1) * sizeof(mesh_peer_t));
        lv->map = ngx_palloc(pool, (lv->number + 1) * sizeof(uint32_t));
        mem = ngx_palloc(pool, mesh_set_size(lv->number) + 1);

        if (lv->mp == NULL || lv->map == NULL || mem == NULL) {
            return NGX_ERROR;
        }

        lv->weight = weights ? weights[l] : 0;
        lv->set.nodes = mem;    /* mesh_set_init below, once filled */
        lv->number = 0;
    }

    for (k = 0; k < t->number; k++) {
        if (level[k] >= nlevels) {
            continue;
        }

        lv = &t->levels[level[k]];
        lv->map[lv->number] = (uint32_t) k;
        lv->mp[lv->number] = t->mp[k];
        lv->number++;
    }

    for (l = 0; l < nlevels; l++) {
        lv = &t->levels[l];
        mesh_set_init(&lv->set, lv->set.nodes, lv->mp, lv->number);
    }

    return NGX_OK;
}


/*
 * With the target's set: the slow start weights of its instances (before
 * the set is built), then, given the health of each (its skip bit, before
 * panic clears them), its levels' sets and shares, and what a pick runs.
 * *expire: when the set must be worked out again (slow start moves on).
 */
void
ngx_http_mesh_locality_set(ngx_http_mesh_target_t *t, ngx_msec_t now,
    ngx_msec_t *expire)
{
    int                     w;
    double                  e, sum;
    size_t                  healthy[NGX_HTTP_MESH_PRIORITIES];
    size_t                  total[NGX_HTTP_MESH_PRIORITIES];
    uint64_t                cum;
    unsigned                load[NGX_HTTP_MESH_PRIORITIES], pct;
    ngx_msec_t              age, since, next;
    ngx_uint_t              k, j, l, warming, changed;
    ngx_http_mesh_level_t  *lv;

    changed = 0;

    if (t->warmup) {
        warming = 0;

        for (k = 0; k < t->number; k++) {
            since = t->peer[k].stat->since;
            age = now - since;

            if (since && (ngx_msec_int_t) age >= 0 && age < t->warmup) {
                warming = 1;
                break;
            }
        }

        /* in slow start, weights are hundredths: each ramps from 10% of
         * its registered weight to all of it */

        for (k = 0; k < t->number; k++) {
            w = t->weight[k];

            if (warming) {
                since = t->peer[k].stat->since;
                age = now - since;
                pct = (since && (ngx_msec_int_t) age >= 0)
                      ? mesh_warmup_percent(age, t->warmup) : 100;
                w = w * (int) pct;
            }

            if (t->mp[k].weight != w) {
                t->mp[k].weight = w;
                changed = 1;
            }
        }

        if (changed) {
            mesh_set_reorder(&t->set, t->mp);
        }

        t->warming = warming;

        if (warming) {
            next = now + ngx_max(t->warmup / 10, 1);

            if (*expire == 0 || (ngx_msec_int_t) (next - *expire) < 0) {
                *expire = next;
            }
        }
    }

    if (t->nlevels == 0) {
        goto pick;
    }

    /* the levels: health and weights from the target's instances */

    sum = 0;

    for (l = 0; l < t->nlevels; l++) {
        lv = &t->levels[l];
        lv->healthy = 0;

        for (j = 0; j < lv->number; j++) {
            k = lv->map[j];
            lv->mp[j].skip = t->mp[k].skip;
            lv->mp[j].weight = t->mp[k].weight;
            lv->healthy += !t->mp[k].skip;
        }

        if (changed) {
            mesh_set_reorder(&lv->set, lv->mp);
        }

        mesh_set_build(&lv->set, lv->mp);

        if (t->distribute) {
            sum += mesh_locality_effective(lv->weight, lv->healthy,
                                           lv->number);

        } else {
            /* priorities: at most NGX_HTTP_MESH_PRIORITIES */
            healthy[l] = lv->healthy;
            total[l] = lv->number;
        }
    }

    cum = 0;

    if (t->distribute) {
        e = 0;

        for (l = 0; l < t->nlevels; l++) {
            lv = &t->levels[l];

            if (sum > 0) {
                e += mesh_locality_effective(lv->weight, lv->healthy,
                                             lv->number);
                cum = (uint64_t) (e / sum * 4294967296.0);
            }

            lv->upto = cum;
        }

    } else {
        mesh_priority_load(healthy, total, t->nlevels, load);

        for (l = 0; l < t->nlevels; l++) {
            cum += ((uint64_t) load[l] << 32) / 100;
            t->levels[l].upto = cum;
        }
    }

    if (cum) {
        /* the last level with a share ends the range: rounding */
        for (l = t->nlevels; l-- > 0; /* void */) {
            if (t->levels[l].upto == cum) {
                t->levels[l].upto = (uint64_t) 1 << 32;

            } else {
                break;
            }
        }
    }

    /* none healthy anywhere, or panic: the target's set, as without */

    if (cum && !t->panic) {
        t->pick = NGX_HTTP_MESH_PICK_LEVELS;
        return;
    }

pick:

    t->pick = (t->warming && t->balancer == NGX_HTTP_MESH_LEAST_REQUEST)
              ? NGX_HTTP_MESH_PICK_LR_WARM : t->balancer;
}


static int
ngx_http_mesh_level_accept(void *ctx, size_t k)
{
    ngx_http_mesh_level_ctx_t  *lc = ctx;

    return ngx_http_mesh_accept(lc->pd, lc->map[k]);
}


/*
 * A level by one draw against the shares, then a pick within it by the
 * target's balancer; -1 when the level has none the request may take
 * (the caller picks from the whole set then)
 */
int
ngx_http_mesh_level_pick(ngx_http_mesh_target_t *t,
    ngx_http_mesh_peer_data_t *pd, mesh_accept_pt accept)
{
    int                         i;
    uint64_t                    r;
    ngx_uint_t                  lo, hi, mid;
    mesh_accept_pt              acc;
    ngx_http_mesh_level_t      *lv;
    ngx_http_mesh_level_ctx_t   lc;

    r = mesh_xorshift32(&ngx_http_mesh_worker.rand);

    lo = 0;
    hi = t->nlevels - 1;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (r < t->levels[mid].upto) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    lv = &t->levels[lo];

    lc.pd = pd;
    lc.map = lv->map;
    acc = accept ? ngx_http_mesh_level_accept : NULL;

    switch (t->balancer) {

    case NGX_HTTP_MESH_RANDOM:
        i = mesh_random_pick(&lv->set, NULL, &ngx_http_mesh_worker.rand, acc,
                             &lc);
        break;

    case NGX_HTTP_MESH_LEAST_REQUEST:
        i = t->warming
            ? mesh_p2c_weighted_pick(&lv->set, lv->mp, NULL,
                                     &ngx_http_mesh_worker.rand, acc, &lc)
            : mesh_p2c_pick(&lv->set, lv->mp, NULL,
                            &ngx_http_mesh_worker.rand, acc, &lc);
        break;

    default: /* NGX_HTTP_MESH_RR */
        i = mesh_wrr_pick(&lv->set, &lv->rr, acc, &lc);
        break;
    }

    return (i < 0) ? -1 : (int) lv->map[i];
}
