
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * Which instances a pick may take: outlier ejection (consecutive errors,
 * the ejection's length, max_ejection_percent), its end, panic, and the
 * set of each target that follows from them, worked out when they change.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


static void ngx_http_mesh_eject(ngx_http_mesh_target_t *t,
    ngx_http_mesh_peer_t *peer, ngx_uint_t errors, ngx_log_t *log);


/*
 * The set of instances a pick may take: those passing in the registry and
 * not ejected, or in panic all of them. Worked out again only when an
 * ejection of the service starts or ends early (its epoch moves) or the
 * soonest one the set leaves out runs out: O(instances) per change, not
 * per pick.
 */
void
ngx_http_mesh_target_set(ngx_http_mesh_target_t *t, ngx_msec_t now,
    ngx_log_t *log)
{
    uint32_t               epoch;
    ngx_msec_t             until, expire;
    ngx_uint_t             k, ejected, healthy, passing;
    ngx_http_mesh_peer_t  *peer;

    /* the epoch first: an ejection while this runs moves it again */
    epoch = *(volatile uint32_t *) t->epoch;
    ngx_memory_barrier();

    expire = 0;
    healthy = 0;
    passing = 0;

    for (k = 0; k < t->number; k++) {
        peer = &t->peer[k];
        until = peer->stat->ejected_until;
        ejected = (until && (ngx_msec_int_t) (until - now) > 0);

        if (ejected
            && (expire == 0 || (ngx_msec_int_t) (until - expire) < 0))
        {
            expire = until;
        }

        passing += peer->healthy;
        t->mp[k].skip = (!peer->healthy || ejected);

        if (ejected) {
            continue;
        }

        healthy += peer->healthy;

        if (peer->stat->returning
            && __sync_bool_compare_and_swap(&peer->stat->returning, 1, 0))
        {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "mesh: instance \"%V\" (%V) of service \"%V\" "
                          "returns after its ejection", &peer->id,
                          &peer->name, &t->service_name);
        }
    }

    /*
     * Panic: with some but fewer than panic_threshold % of the instances
     * healthy, balance over all of them rather than crush the few.  As
     * Envoy, ejections alone never leave a service without instances;
     * but with every instance critical in the registry there is nothing
     * to balance over: 502.
     */
    t->panic = (t->outlier.panic_threshold && passing
                && healthy * 100 < t->outlier.panic_threshold * t->number);

    /* slow start weights, and the levels of localityLbSetting from the
     * instances' health (before panic takes every instance) */

    if (t->warmup || t->nlevels) {
        ngx_http_mesh_locality_set(t, now, &expire);
    }

    if (t->panic) {
        for (k = 0; k < t->number; k++) {
            t->mp[k].skip = 0;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                       "mesh: service \"%V\" in panic, %ui of %ui healthy",
                       &t->service_name, healthy, t->number);
    }

    mesh_set_build(&t->set, t->mp);

    t->set_epoch = epoch;
    t->set_expire = expire;
    t->healthy = healthy;
}


/* an ejection of one of the service's instances started or ended early */

void
ngx_http_mesh_epoch_bump(ngx_http_mesh_zone_t *zone,
    ngx_http_mesh_target_t *t)
{
    if (t->service) {
        (void) __sync_fetch_and_add(&t->service->epoch, 1);
    }

    (void) __sync_fetch_and_add(&zone->sh->epoch, 1);
}


ngx_uint_t
ngx_http_mesh_ejected(ngx_http_mesh_stat_t *st, ngx_msec_t now)
{
    ngx_msec_t  until;

    until = st->ejected_until;

    return until && (ngx_msec_int_t) (until - now) > 0;
}


static void
ngx_http_mesh_eject(ngx_http_mesh_target_t *t, ngx_http_mesh_peer_t *peer,
    ngx_uint_t errors, ngx_log_t *log)
{
    ngx_msec_t                  now, last, duration;
    ngx_uint_t                  k, ejected, decay;
    ngx_http_mesh_stat_t       *st;
    ngx_http_mesh_main_conf_t  *mmcf;

    mmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_mesh_module);
    st = peer->stat;
    now = ngx_current_msec;

    ngx_shmtx_lock(&mmcf->zone.shpool->mutex);

    if (ngx_http_mesh_ejected(st, now)) {
        ngx_shmtx_unlock(&mmcf->zone.shpool->mutex);
        return;
    }

    /* never more than max_ejection_percent of the instances at once,
     * but at least one (as Envoy) */
    ejected = 0;

    for (k = 0; k < t->number; k++) {
        ejected += ngx_http_mesh_ejected(t->peer[k].stat, now);
    }

    if (ejected && ejected * 100 >= t->outlier.max_ejection_percent
                                    * t->number)
    {
        ngx_shmtx_unlock(&mmcf->zone.shpool->mutex);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "mesh: not ejecting \"%V\": %ui already ejected",
                       &peer->id, ejected);
        return;
    }

    /* the multiplier decays by one per quiet interval since the last
     * ejection ended */
    last = st->ejected_until;

    if (last && st->times_ejected && t->outlier.interval) {
        decay = (now - last) / t->outlier.interval;
        st->times_ejected = (decay >= st->times_ejected)
                            ? 0 : st->times_ejected - decay;
    }

    st->times_ejected++;

    duration = t->outlier.base_ejection_time * st->times_ejected;
    if (duration > t->outlier.max_ejection_time
        || duration / st->times_ejected != t->outlier.base_ejection_time)
    {
        duration = t->outlier.max_ejection_time;
    }

    st->ejected_until = now + duration;
    st->returning = 1;
    st->ejections++;

    ngx_http_mesh_epoch_bump(&mmcf->zone, t);

    if (t->service) {
        t->service->ejections++;
    }
    st->consecutive_5xx = 0;
    st->consecutive_gateway = 0;
    st->consecutive_local = 0;

    ngx_shmtx_unlock(&mmcf->zone.shpool->mutex);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "mesh: ejected instance \"%V\" (%V) of service \"%V\" "
                  "for %Mms after %ui consecutive errors",
                  &peer->id, &peer->name, &t->service_name, duration,
                  errors);
}


/*
 * A try that failed or answered 5xx: counted, and outlier detection. A
 * connect error or a timeout (no status) counts as a 5xx and as a gateway
 * error, as Istio counts locally originated failures. With
 * splitExternalLocalOriginErrors they count apart, against
 * consecutiveLocalOriginFailures, and a response ends that run.
 */
void
ngx_http_mesh_failed(ngx_http_mesh_peer_data_t *pd,
    ngx_http_mesh_peer_t *peer, ngx_uint_t state, ngx_uint_t status,
    ngx_log_t *log)
{
    ngx_uint_t               local, c5, cg, cl, fail5, failgw;
    ngx_http_upstream_t     *u;
    ngx_http_mesh_stat_t    *st;
    ngx_http_mesh_target_t  *t;

    st = peer->stat;
    t = pd->target;
    u = pd->request ? pd->request->upstream : NULL;  /* NULL: a stream
                                                        session's */

    if (state & NGX_PEER_FAILED) {
        (void) __sync_fetch_and_add(&st->failures, 1);

        if (t->service) {
            (void) __sync_fetch_and_add(&t->service->failures, 1);
        }
    }

    local = (state & NGX_PEER_FAILED) && status == 0;

    pd->refused = local && (u == NULL
                            || (u->state
                                && u->state->connect_time
                                   == (ngx_msec_t) -1));

    cl = 0;

    if (t->outlier.split_local) {
        if (local) {
            cl = __sync_add_and_fetch(&st->consecutive_local, 1);

        } else if (st->consecutive_local) {
            st->consecutive_local = 0;
        }

        fail5 = status >= 500;
        failgw = (status == 502 || status == 503 || status == 504);

        if (local) {
            c5 = 0;
            cg = 0;
            goto ejection;      /* no response: the other runs go on */
        }

    } else {
        fail5 = local || status >= 500;
        failgw = local || status == 502 || status == 503 || status == 504;
    }

    if (fail5) {
        c5 = __sync_add_and_fetch(&st->consecutive_5xx, 1);

    } else {
        c5 = 0;
        if (st->consecutive_5xx) {
            st->consecutive_5xx = 0;
        }
    }

    if (failgw) {
        cg = __sync_add_and_fetch(&st->consecutive_gateway, 1);

    } else {
        cg = 0;
        if (st->consecutive_gateway) {
            st->consecutive_gateway = 0;
        }
    }

ejection:

    if ((t->outlier.consecutive_5xx && c5 >= t->outlier.consecutive_5xx)
        || (t->outlier.consecutive_gateway
            && cg >= t->outlier.consecutive_gateway)
        || (t->outlier.split_local && t->outlier.consecutive_local
            && cl >= t->outlier.consecutive_local))
    {
        ngx_http_mesh_eject(t, peer, ngx_max(ngx_max(c5, cg), cl), log);
    }
}
