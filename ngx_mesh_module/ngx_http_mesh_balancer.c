
/*
 * Copyright (C) ngx_mesh authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


typedef struct {
    ngx_atomic_uint_t              generation;
    ngx_cycle_t                   *cycle;       /* whose upstreams we built:
                                                   a reload without master
                                                   process starts over */
    ngx_http_mesh_gen_t           *gen;         /* the policies */
    ngx_atomic_uint_t              policies_gen;
    uint64_t                       index;
    uint32_t                       rand;        /* xorshift32 state */
} ngx_http_mesh_worker_t;


/* a service's block copied out of the zone for a view to be built */
typedef struct {
    ngx_uint_t                     take;
    u_char                        *packed;
    size_t                         size;
    ngx_atomic_uint_t              generation;
} ngx_http_mesh_copy_t;


static ngx_int_t ngx_http_mesh_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_mesh_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_mesh_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_mesh_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
static ngx_http_mesh_view_t *ngx_http_mesh_build_view(
    ngx_http_mesh_main_conf_t *mmcf, ngx_http_mesh_srv_conf_t *mscf,
    ngx_http_mesh_copy_t *copy, ngx_http_mesh_gen_t *gen, uint64_t index,
    ngx_log_t *log);
static void ngx_http_mesh_free_packed(void *data);
static void ngx_http_mesh_install_view(ngx_http_mesh_srv_conf_t *mscf,
    ngx_http_mesh_view_t *view);
static ngx_uint_t ngx_http_mesh_view_ready(ngx_http_mesh_view_t *view);
static ngx_http_mesh_ring_t *ngx_http_mesh_ring_get(
    ngx_http_mesh_srv_conf_t *mscf, const char **servers, size_t *lens,
    int *weights, ngx_uint_t n, ngx_log_t *log);
static void ngx_http_mesh_ring_release(ngx_http_mesh_ring_t *ring);
static void ngx_http_mesh_ring_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_mesh_build_target(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_view_t *view,
    ngx_http_mesh_target_t *t, const mesh_service_t *svc,
    const mesh_subset_t *subset, const mesh_traffic_policy_t *tp,
    ngx_log_t *log);
static void ngx_http_mesh_target_set(ngx_http_mesh_target_t *t,
    ngx_msec_t now, ngx_log_t *log);
static void ngx_http_mesh_epoch_bump(ngx_http_mesh_zone_t *zone,
    ngx_http_mesh_target_t *t);
static ngx_inline void ngx_http_mesh_release_view(
    ngx_http_mesh_view_t *view);
static void ngx_http_mesh_free_view(ngx_http_mesh_view_t *view);
static void ngx_http_mesh_cleanup_peer(void *data);
static ngx_http_mesh_route_t *ngx_http_mesh_find_route(ngx_http_request_t *r,
    ngx_http_mesh_view_t *view);
static ngx_int_t ngx_http_mesh_route_conf(ngx_http_request_t *r,
    mesh_http_route_t *route);
static ngx_int_t ngx_http_mesh_hash_key(ngx_http_request_t *r,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_target_t *t,
    ngx_str_t *key);
static void ngx_http_mesh_failed(ngx_http_mesh_peer_data_t *pd,
    ngx_http_mesh_peer_t *peer, ngx_uint_t state, ngx_uint_t status,
    ngx_log_t *log);
static void ngx_http_mesh_eject(ngx_http_mesh_target_t *t,
    ngx_http_mesh_peer_t *peer, ngx_uint_t errors, ngx_log_t *log);
static ngx_inline void ngx_http_mesh_count(ngx_http_mesh_stat_t *st,
    ngx_uint_t status, ngx_uint_t bucket, ngx_msec_t ms, uint64_t window,
    ngx_uint_t slot);


static ngx_http_mesh_worker_t  ngx_http_mesh_worker;

/* the 10 s window of the rates, worked out once per window */
static struct {
    uint64_t                       id;
    ngx_uint_t                     slot;
    ngx_msec_t                     end;
} ngx_http_mesh_window;

static ngx_str_t               ngx_http_mesh_empty = ngx_null_string;
static ngx_event_t             ngx_http_mesh_ring_event;

static const char  *ngx_http_mesh_balancers[] = {
    "round_robin", "random", "least_request", "consistent_hash", NULL
};


const char *
ngx_http_mesh_balancer_name(ngx_uint_t balancer)
{
    if (balancer > NGX_HTTP_MESH_CHASH) {
        balancer = NGX_HTTP_MESH_RR;
    }

    return ngx_http_mesh_balancers[balancer];
}


char *
ngx_http_mesh_upstream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_srv_conf_t  *mscf = conf;

    size_t                          i;
    ngx_str_t                      *value;
    ngx_http_mesh_srv_conf_t      **p;
    ngx_http_mesh_main_conf_t      *mmcf;
    ngx_http_upstream_server_t     *us;
    ngx_http_upstream_srv_conf_t   *uscf;

    if (mscf->service.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; i < value[1].len; i++) {
        u_char c = value[1].data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9')
              || (i > 0 && (c == '.' || c == '_' || c == '-'))))
        {
            break;
        }
    }

    if (value[1].len == 0 || value[1].len > 128 || i != value[1].len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid service name \"%V\" in \"%V\" directive, "
                           "names are [A-Za-z0-9][A-Za-z0-9._-]{0,127}",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

    uscf->peer.init_upstream = ngx_http_mesh_init_upstream;

    /*
     * nginx 1.22 refuses an upstream block without servers: members
     * come from the registry, so stand in for them with an entry that
     * has no address (our init_upstream never hands it to round robin)
     */
    if (uscf->servers->nelts == 0) {
        us = ngx_array_push(uscf->servers);
        if (us == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(us, sizeof(ngx_http_upstream_server_t));
        us->name = value[1];
        us->weight = 1;
    }

    mscf->service = value[1];
    mscf->upstream = uscf;

    mmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_mesh_module);

    p = ngx_array_push(&mmcf->upstreams);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    *p = mscf;

    return NGX_CONF_OK;
}


char *
ngx_http_mesh_balancer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_srv_conf_t  *mscf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         b;
    ngx_http_compile_complex_value_t   ccv;

    if (mscf->balancer != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (b = 0; ngx_http_mesh_balancers[b]; b++) {
        if (ngx_strcmp(value[1].data, ngx_http_mesh_balancers[b]) == 0) {
            break;
        }
    }

    if (ngx_http_mesh_balancers[b] == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid balancer \"%V\" in \"%V\" directive, "
                           "it must be round_robin, random, least_request "
                           "or consistent_hash", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (b == NGX_HTTP_MESH_CHASH && cf->args->nelts != 3) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V consistent_hash\" needs a key, such as "
                           "\"consistent_hash $request_uri\"", &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (b != NGX_HTTP_MESH_CHASH && cf->args->nelts != 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V %V\" directive, "
                           "only consistent_hash takes a key", &value[2],
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    if (b == NGX_HTTP_MESH_CHASH) {
        mscf->key = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (mscf->key == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &value[2];
        ccv.complex_value = mscf->key;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    mscf->balancer = b;

    return NGX_CONF_OK;
}


char *
ngx_http_mesh_outlier(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mesh_srv_conf_t  *mscf = conf;

    u_char      *eq;
    ngx_str_t   *value, name, v;
    ngx_int_t    n;
    ngx_uint_t   i;
    ngx_msec_t   ms, *msp;
    ngx_uint_t  *np;

    if (mscf->outlier.base_ejection_time != NGX_CONF_UNSET_MSEC
        || mscf->outlier.consecutive_5xx != NGX_CONF_UNSET_UINT)
    {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');
        if (eq == NULL || eq == value[i].data) {
            goto invalid;
        }

        name.data = value[i].data;
        name.len = eq - value[i].data;
        v.data = eq + 1;
        v.len = value[i].data + value[i].len - v.data;

        np = NULL;
        msp = NULL;

        if (name.len == 15
            && ngx_strncmp(name.data, "consecutive_5xx", 15) == 0)
        {
            np = &mscf->outlier.consecutive_5xx;

        } else if (name.len == 19
                   && ngx_strncmp(name.data, "consecutive_gateway", 19) == 0)
        {
            np = &mscf->outlier.consecutive_gateway;

        } else if (name.len == 20
                   && ngx_strncmp(name.data, "max_ejection_percent", 20) == 0)
        {
            np = &mscf->outlier.max_ejection_percent;

        } else if (name.len == 8 && ngx_strncmp(name.data, "interval", 8) == 0)
        {
            msp = &mscf->outlier.interval;

        } else if (name.len == 18
                   && ngx_strncmp(name.data, "base_ejection_time", 18) == 0)
        {
            msp = &mscf->outlier.base_ejection_time;

        } else if (name.len == 17
                   && ngx_strncmp(name.data, "max_ejection_time", 17) == 0)
        {
            msp = &mscf->outlier.max_ejection_time;

        } else {
            goto invalid;
        }

        if (np) {
            n = ngx_atoi(v.data, v.len);
            if (n == NGX_ERROR
                || (np == &mscf->outlier.max_ejection_percent && n > 100))
            {
                goto invalid;
            }

            *np = (ngx_uint_t) n;
            continue;
        }

        ms = ngx_parse_time(&v, 0);
        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            goto invalid;
        }

        *msp = ms;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"%V\" directive, "
                       "expected consecutive_5xx=N, consecutive_gateway=N, "
                       "interval=T, base_ejection_time=T, "
                       "max_ejection_time=T or max_ejection_percent=0..100",
                       &value[i], &cmd->name);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_mesh_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_mesh_srv_conf_t  *mscf;

    mscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_mesh_module);

    if (mscf->balancer == NGX_CONF_UNSET_UINT) {
        mscf->balancer = NGX_HTTP_MESH_RR;
    }

    /* Istio's defaults */
    ngx_conf_init_uint_value(mscf->outlier.consecutive_5xx, 5);
    ngx_conf_init_uint_value(mscf->outlier.consecutive_gateway, 0);
    ngx_conf_init_msec_value(mscf->outlier.interval, 10000);
    ngx_conf_init_msec_value(mscf->outlier.base_ejection_time, 30000);
    ngx_conf_init_msec_value(mscf->outlier.max_ejection_time, 300000);
    ngx_conf_init_uint_value(mscf->outlier.max_ejection_percent, 10);
    ngx_conf_init_uint_value(mscf->panic, 50);
    mscf->outlier.panic_threshold = mscf->panic;
    mscf->outlier.split_local = 0;
    mscf->outlier.consecutive_local = 5;       /* Envoy's default */

    if (us->servers && us->servers->nelts > 1) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "upstream \"%V\" has both \"mesh\" and \"server\" "
                      "members in %s:%ui", &us->host, us->file_name,
                      us->line);
        return NGX_ERROR;
    }

    us->peer.init = ngx_http_mesh_init_peer;

    return NGX_OK;
}


/*
 * Bring this worker's views up to the zone. Only the services that
 * changed are copied out (under the lock: work follows the change) and
 * their views rebuilt; a change of the policies rebuilds every view.
 * Requests in flight keep the view they started with (reference
 * counted). Workers never parse a service: the poll owner wrote it in
 * mesh_service's packed form.
 */
ngx_int_t
ngx_http_mesh_sync(ngx_http_mesh_main_conf_t *mmcf, ngx_log_t *log)
{
    char                        err[MESH_ERR_LEN];
    u_char                     *pjson;
    size_t                      plen;
    uint64_t                    index;
    ngx_uint_t                  i, n, fresh, polchange;
    ngx_atomic_uint_t           gen, pgen;
    ngx_http_mesh_gen_t        *g;
    ngx_http_mesh_copy_t       *copies, *c;
    ngx_http_mesh_zone_t       *zone;
    ngx_http_mesh_view_t       *view;
    ngx_http_mesh_shsvc_t      *rec;
    ngx_http_mesh_shctx_t      *sh;
    ngx_http_mesh_srv_conf_t  **mscfp;

    zone = &mmcf->zone;
    sh = zone->sh;

    if (sh == NULL) {
        return NGX_DECLINED;
    }

    gen = sh->generation;
    fresh = (ngx_http_mesh_worker.cycle != ngx_cycle);

    if (!fresh && gen == ngx_http_mesh_worker.generation) {
        return NGX_OK;
    }

    if (fresh) {
        ngx_http_mesh_worker.cycle = (ngx_cycle_t *) ngx_cycle;
        ngx_http_mesh_worker.generation = 0;
        ngx_http_mesh_worker.policies_gen = 0;
        ngx_http_mesh_worker.rand = ((uint32_t) ngx_random() << 16)
                                    ^ (uint32_t) ngx_random()
                                    ^ (uint32_t) ngx_pid;

        if (ngx_http_mesh_worker.rand == 0) {
            ngx_http_mesh_worker.rand = 1;
        }
    }

    if (gen == 0) {
        return NGX_OK;          /* nothing yet */
    }

    n = mmcf->upstreams.nelts;
    mscfp = mmcf->upstreams.elts;

    copies = ngx_calloc((n + 1) * sizeof(ngx_http_mesh_copy_t), log);
    if (copies == NULL) {
        return NGX_ERROR;
    }

    pjson = NULL;
    plen = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    gen = sh->generation;
    pgen = sh->policies_gen;
    index = sh->index;

    polchange = (fresh || pgen != ngx_http_mesh_worker.policies_gen);

    if (polchange && sh->policies_packed) {
        plen = sh->policies_packed_len;
        pjson = ngx_alloc(plen, log);

        if (pjson) {
            ngx_memcpy(pjson, sh->policies_packed, plen);
        }

    } else if (polchange) {
        polchange = 0;          /* none yet */
        ngx_http_mesh_worker.policies_gen = pgen;
    }

    for (i = 0; i < n; i++) {
        rec = mscfp[i]->shsvc;
        c = &copies[i];

        if (rec == NULL
            || !(polchange || fresh || mscfp[i]->view == NULL
                 || rec->generation != mscfp[i]->shsvc_gen))
        {
            continue;
        }

        c->take = 1;
        c->generation = rec->generation;

        if (rec->data == NULL) {
            continue;
        }

        c->packed = ngx_alloc(rec->size, log);
        if (c->packed == NULL) {
            c->take = 0;
            continue;
        }

        ngx_memcpy(c->packed, rec->data, rec->size);
        c->size = rec->size;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (polchange && pjson == NULL) {
        polchange = 0;
    }

    ngx_http_mesh_worker.generation = gen;
    ngx_http_mesh_worker.index = index;

    g = ngx_http_mesh_worker.gen;

    if (polchange) {
        ngx_http_mesh_worker.policies_gen = pgen;

        /* no JSON here: the poll owner parsed them, packed */
        g = ngx_http_mesh_gen_unpack(pjson, plen, err, sizeof(err), log);

        if (g == NULL) {
            /* the poll owner checked them: this is out of memory */
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mesh: policies of index %uL refused: %s", index,
                          err);
            g = ngx_http_mesh_worker.gen;

        } else {
            if (ngx_http_mesh_worker.gen) {
                ngx_http_mesh_gen_release(ngx_http_mesh_worker.gen);
            }

            ngx_http_mesh_worker.gen = g;
        }

        pjson = NULL;           /* the generation's, or freed */
    }

    for (i = 0; i < n; i++) {
        c = &copies[i];

        if (!c->take) {
            continue;
        }

        view = ngx_http_mesh_build_view(mmcf, mscfp[i], c, g, index, log);

        if (c->packed) {
            ngx_free(c->packed);  /* not taken by a view */
        }

        if (view == NULL) {
            continue;           /* keep the old view */
        }

        mscfp[i]->shsvc_gen = c->generation;

        if (ngx_http_mesh_view_ready(view) || mscfp[i]->view == NULL) {
            /* at start a ring being built answers by modulo meanwhile */
            ngx_http_mesh_install_view(mscfp[i], view);
            continue;
        }

        /* the old view routes until the new one's rings are built */

        if (mscfp[i]->next) {
            ngx_http_mesh_release_view(mscfp[i]->next);
        }

        mscfp[i]->next = view;
    }

    ngx_free(copies);

    if (!ngx_http_mesh_ring_event.posted) {
        for (i = 0; i < n; i++) {
            if (mscfp[i]->next
                || (mscfp[i]->view
                    && !ngx_http_mesh_view_ready(mscfp[i]->view)))
            {
                ngx_http_mesh_ring_event.handler = ngx_http_mesh_ring_handler;
                ngx_http_mesh_ring_event.data = mmcf;
                ngx_http_mesh_ring_event.log = ngx_cycle->log;
                ngx_post_event(&ngx_http_mesh_ring_event,
                               &ngx_posted_next_events);
                break;
            }
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "mesh: worker synced to index %uL", index);

    return NGX_OK;
}


uint64_t
ngx_http_mesh_worker_index(void)
{
    return ngx_http_mesh_worker.index;
}


mesh_policies_t *
ngx_http_mesh_worker_policies(void)
{
    return ngx_http_mesh_worker.gen ? ngx_http_mesh_worker.gen->policies
                                    : NULL;
}


/*
 * Parse policies (their regexes are compiled by the parse, as registryd
 * checked them). Takes json (ngx_alloc()ed, NUL-terminated) in every
 * case. NULL with err on a refusal.
 */
ngx_http_mesh_gen_t *
ngx_http_mesh_gen_create(u_char *json, size_t len, char *err, size_t errlen,
    ngx_log_t *log)
{
    ngx_http_mesh_gen_t  *g;

    err[0] = '\0';

    g = ngx_calloc(sizeof(ngx_http_mesh_gen_t), log);
    if (g == NULL) {
        ngx_free(json);
        ngx_snprintf((u_char *) err, errlen, "out of memory%Z");
        return NULL;
    }

    g->refs = 1;
    g->json = json;

    g->policies = mesh_policies_parse((char *) json, len, err, errlen);
    if (g->policies == NULL) {
        ngx_http_mesh_gen_release(g);
        return NULL;
    }

    return g;
}


/*
 * The policies from their packed block (the poll owner parsed them once
 * for the whole nginx): pointers put back, regexes compiled. Takes packed
 * (ngx_alloc()ed) in every case. NULL with err on a refusal.
 */
ngx_http_mesh_gen_t *
ngx_http_mesh_gen_unpack(u_char *packed, size_t len, char *err,
    size_t errlen, ngx_log_t *log)
{
    ngx_http_mesh_gen_t  *g;

    g = ngx_calloc(sizeof(ngx_http_mesh_gen_t), log);
    if (g == NULL) {
        ngx_free(packed);
        ngx_snprintf((u_char *) err, errlen, "out of memory%Z");
        return NULL;
    }

    g->refs = 1;
    g->json = packed;

    g->policies = mesh_policies_unpack(packed, len, err, errlen);
    if (g->policies == NULL) {
        ngx_http_mesh_gen_release(g);
        return NULL;
    }

    return g;
}


/* g's policies packed for the zone (ngx_alloc()ed) */
u_char *
ngx_http_mesh_gen_pack(ngx_http_mesh_gen_t *g, size_t *len, ngx_log_t *log)
{
    u_char  *buf;

    *len = mesh_policies_pack(g->policies, NULL, 0);

    buf = ngx_alloc(*len, log);
    if (buf == NULL) {
        return NULL;
    }

    if (mesh_policies_pack(g->policies, buf, *len) != *len) {
        ngx_free(buf);
        return NULL;
    }

    return buf;
}


void
ngx_http_mesh_gen_release(ngx_http_mesh_gen_t *g)
{
    if (--g->refs) {
        return;
    }

    if (g->policies) {
        mesh_policies_free(g->policies);
    }

    ngx_free(g->json);
    ngx_free(g);
}


static void
ngx_http_mesh_free_packed(void *data)
{
    ngx_free(data);
}


static void
ngx_http_mesh_install_view(ngx_http_mesh_srv_conf_t *mscf,
    ngx_http_mesh_view_t *view)
{
    if (mscf->next && mscf->next != view) {
        ngx_http_mesh_release_view(mscf->next);
    }

    mscf->next = NULL;

    if (mscf->view) {
        ngx_http_mesh_release_view(mscf->view);
    }

    mscf->view = view;
}


static ngx_uint_t
ngx_http_mesh_view_ready(ngx_http_mesh_view_t *view)
{
    ngx_uint_t  i;

    for (i = 0; i < view->ntargets; i++) {
        if (view->targets[i].ring && view->targets[i].ring->builder) {
            return 0;
        }
    }

    return 1;
}


/* the ring of a view's target, if one with the same members is there */
static ngx_http_mesh_ring_t *
ngx_http_mesh_ring_find(ngx_http_mesh_view_t *view, u_char *members,
    size_t len)
{
    ngx_uint_t             i;
    ngx_http_mesh_ring_t  *ring;

    for (i = 0; view && i < view->ntargets; i++) {
        ring = view->targets[i].ring;

        if (ring && ring->members_len == len
            && ngx_memcmp(ring->members, members, len) == 0)
        {
            return ring;
        }
    }

    return NULL;
}


/*
 * The ring for these members: the one the current or the coming view
 * has, or a new one, built here when small and else by the ring event. A
 * ring above MESH_CHASH_MAX_POINTS is refused.
 */
static ngx_http_mesh_ring_t *
ngx_http_mesh_ring_get(ngx_http_mesh_srv_conf_t *mscf, const char **servers,
    size_t *lens, int *weights, ngx_uint_t n, ngx_log_t *log)
{
    u_char                *members, *p;
    size_t                 len, points;
    ngx_uint_t             i;
    ngx_http_mesh_ring_t  *ring;

    len = 0;
    for (i = 0; i < n; i++) {
        len += lens[i] + sizeof(" 1000\n");
    }

    members = ngx_alloc(len + 1, log);
    if (members == NULL) {
        return NULL;
    }

    p = members;
    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, servers[i], lens[i]);
        p = ngx_sprintf(p, " %d\n", weights[i]);
    }

    len = p - members;

    ring = ngx_http_mesh_ring_find(mscf->view, members, len);

    if (ring == NULL) {
        ring = ngx_http_mesh_ring_find(mscf->next, members, len);
    }

    if (ring) {
        ngx_free(members);
        ring->refs++;
        return ring;
    }

    points = mesh_chash_points(weights, n);

    if (points > MESH_CHASH_MAX_POINTS) {
        if (!mscf->ring_refused) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mesh: the consistent hash ring of upstream \"%V\" "
                          "(service \"%V\", %ui instances) would have %uz "
                          "points, more than %d: refused, the upstream "
                          "keeps its last ring; lower the weights",
                          &mscf->upstream->host, &mscf->service, n,
                          points, MESH_CHASH_MAX_POINTS);
            mscf->ring_refused = 1;
        }

        ngx_free(members);
        return NULL;
    }

    mscf->ring_refused = 0;

    ring = ngx_calloc(sizeof(ngx_http_mesh_ring_t), log);
    if (ring == NULL) {
        ngx_free(members);
        return NULL;
    }

    ring->refs = 1;
    ring->members = members;
    ring->members_len = len;

    ring->builder = ngx_alloc(sizeof(mesh_chash_builder_t), log);
    if (ring->builder == NULL
        || mesh_chash_builder_init(ring->builder, servers, lens, weights, n)
           != 0)
    {
        if (ring->builder) {
            ngx_free(ring->builder);
            ring->builder = NULL;
        }

        ngx_http_mesh_ring_release(ring);
        return NULL;
    }

    if (points <= NGX_HTTP_MESH_RING_SYNC) {
        (void) mesh_chash_builder_step(ring->builder, (size_t) -1);
        mesh_chash_builder_take(ring->builder, &ring->ring);
        mesh_chash_builder_free(ring->builder);
        ngx_free(ring->builder);
        ring->builder = NULL;
    }

    return ring;
}


static void
ngx_http_mesh_ring_release(ngx_http_mesh_ring_t *ring)
{
    if (ring == NULL || --ring->refs) {
        return;
    }

    if (ring->builder) {
        mesh_chash_builder_free(ring->builder);
        ngx_free(ring->builder);
    }

    mesh_chash_free(&ring->ring);
    ngx_free(ring->members);
    ngx_free(ring);
}


/* step one ring for at most until; 1 when it is built */
static ngx_uint_t
ngx_http_mesh_ring_step(ngx_http_mesh_ring_t *ring, struct timespec *until)
{
    struct timespec  now;

    for ( ;; ) {
        if (mesh_chash_builder_step(ring->builder, 16384)) {
            mesh_chash_builder_take(ring->builder, &ring->ring);
            mesh_chash_builder_free(ring->builder);
            ngx_free(ring->builder);
            ring->builder = NULL;
            return 1;
        }

        (void) clock_gettime(CLOCK_MONOTONIC, &now);

        if (now.tv_sec > until->tv_sec
            || (now.tv_sec == until->tv_sec && now.tv_nsec >= until->tv_nsec))
        {
            return 0;
        }
    }
}


/*
 * Build the rings that views wait for, NGX_HTTP_MESH_RING_SLICE ms per turn
 * of the event loop, and put a view in place once its rings are there.
 */
static void
ngx_http_mesh_ring_handler(ngx_event_t *ev)
{
    ngx_http_mesh_main_conf_t *mmcf = ev->data;

    ngx_uint_t                  i, k, v, more;
    struct timespec             until;
    ngx_http_mesh_view_t       *views[2];
    ngx_http_mesh_target_t     *t;
    ngx_http_mesh_srv_conf_t  **mscfp;

    (void) clock_gettime(CLOCK_MONOTONIC, &until);

    until.tv_nsec += NGX_HTTP_MESH_RING_SLICE * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }

    more = 0;
    mscfp = mmcf->upstreams.elts;

    for (i = 0; i < mmcf->upstreams.nelts; i++) {
        views[0] = mscfp[i]->view;
        views[1] = mscfp[i]->next;

        for (v = 0; v < 2 && !more; v++) {
            for (k = 0; views[v] && k < views[v]->ntargets && !more; k++) {
                t = &views[v]->targets[k];

                if (t->ring && t->ring->builder
                    && !ngx_http_mesh_ring_step(t->ring, &until))
                {
                    more = 1;
                }
            }
        }

        if (mscfp[i]->next && ngx_http_mesh_view_ready(mscfp[i]->next)) {
            ngx_http_mesh_install_view(mscfp[i], mscfp[i]->next);
        }

        if (more) {
            break;
        }
    }

    if (more) {
        ngx_post_event(ev, &ngx_posted_next_events);
    }
}


static ngx_uint_t
ngx_http_mesh_lb(int lb, ngx_uint_t fallback, ngx_uint_t *hash)
{
    switch (lb) {

    case MESH_LB_ROUND_ROBIN:
        return NGX_HTTP_MESH_RR;

    case MESH_LB_RANDOM:
        return NGX_HTTP_MESH_RANDOM;

    case MESH_LB_LEAST_REQUEST:
        return NGX_HTTP_MESH_LEAST_REQUEST;

    case MESH_LB_HASH_HEADER:
        *hash = NGX_HTTP_MESH_HASH_HEADER;
        return NGX_HTTP_MESH_CHASH;

    case MESH_LB_HASH_QUERY:
        *hash = NGX_HTTP_MESH_HASH_QUERY;
        return NGX_HTTP_MESH_CHASH;

    case MESH_LB_HASH_COOKIE:
        *hash = NGX_HTTP_MESH_HASH_COOKIE;
        return NGX_HTTP_MESH_CHASH;

    case MESH_LB_HASH_SOURCE_IP:
        *hash = NGX_HTTP_MESH_HASH_SOURCE_IP;
        return NGX_HTTP_MESH_CHASH;

    default: /* MESH_LB_NONE */
        *hash = NGX_HTTP_MESH_HASH_KEY;
        return fallback;
    }
}


static ngx_http_mesh_view_t *
ngx_http_mesh_build_view(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_copy_t *copy,
    ngx_http_mesh_gen_t *gen, uint64_t index, ngx_log_t *log)
{
    void                            *mem;
    size_t                           msize;
    ngx_uint_t                       i, j, k;
    ngx_pool_t                      *pool;
    mesh_policies_t                 *policies;
    ngx_pool_cleanup_t              *cln;
    ngx_http_mesh_view_t            *view;
    ngx_http_mesh_route_t           *rt;
    const mesh_service_t            *svc;
    const mesh_destination_rule_t   *dr;
    const mesh_traffic_policy_t     *tp;

    policies = gen ? gen->policies : NULL;

    if (copy->packed == NULL) {
        if (!mscf->missing) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "mesh: service \"%V\" of upstream \"%V\" is not in "
                          "the registry (index %uL)", &mscf->service,
                          &mscf->upstream->host, index);
            mscf->missing = 1;
        }

    } else {
        mscf->missing = 0;
    }

    dr = mesh_policies_rule(policies, (char *) mscf->service.data,
                            mscf->service.len);

    pool = ngx_create_pool(2048 + mesh_service_packed_count(copy->packed,
                                                            copy->size)
                                  * 256,
                           ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    view = ngx_pcalloc(pool, sizeof(ngx_http_mesh_view_t));
    if (view == NULL) {
        goto failed;
    }

    view->pool = pool;
    view->refs = 1;
    view->index = index;

    if (gen) {
        view->gen = gen;
        gen->refs++;
    }

    svc = NULL;

    if (copy->packed) {
        cln = ngx_pool_cleanup_add(pool, 0);
        if (cln == NULL) {
            goto failed;
        }

        /* the view owns the copy from here */
        view->packed = copy->packed;
        cln->handler = ngx_http_mesh_free_packed;
        cln->data = copy->packed;
        copy->packed = NULL;

        msize = mesh_service_unpack_size(view->packed, copy->size);
        mem = msize ? ngx_palloc(pool, msize) : NULL;

        if (mem == NULL
            || mesh_service_unpack(view->packed, copy->size,
                                   (char *) mscf->service.data, &view->svc,
                                   mem, msize)
               != 0)
        {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "mesh: service \"%V\" in the shared zone cannot "
                          "be read", &mscf->service);
            goto failed;
        }

        svc = &view->svc;
    }

    view->ntargets = 1 + (dr ? dr->nsubsets : 0);
    view->targets = ngx_pcalloc(pool, view->ntargets
                                      * sizeof(ngx_http_mesh_target_t));
    if (view->targets == NULL) {
        goto failed;
    }

    if (ngx_http_mesh_build_target(mmcf, mscf, view, &view->targets[0], svc,
                                   NULL, dr ? &dr->traffic : NULL, log)
        != NGX_OK)
    {
        goto failed;
    }

    for (i = 1; i < view->ntargets; i++) {
        tp = &dr->subsets[i - 1].policy;

        if (ngx_http_mesh_build_target(mmcf, mscf, view, &view->targets[i],
                                       svc, &dr->subsets[i - 1], tp, log)
            != NGX_OK)
        {
            goto failed;
        }
    }

    view->vs = mesh_policies_vs(policies, (char *) mscf->service.data,
                                mscf->service.len);

    if (view->vs == NULL) {
        return view;
    }

    view->nroutes = view->vs->nhttp;
    view->routes = ngx_pcalloc(pool, (view->nroutes + 1)
                                     * sizeof(ngx_http_mesh_route_t));
    if (view->routes == NULL) {
        goto failed;
    }

    for (i = 0; i < view->nroutes; i++) {
        rt = &view->routes[i];
        rt->route = &view->vs->http[i];

        rt->dest = ngx_pcalloc(pool, (rt->route->nroutes + 1)
                                     * sizeof(ngx_http_mesh_target_t *));
        if (rt->dest == NULL) {
            goto failed;
        }

        for (j = 0; j < rt->route->nroutes; j++) {

            if (rt->route->routes[j].host
                && (ngx_strlen(rt->route->routes[j].host)
                    != mscf->service.len
                    || ngx_strncmp(rt->route->routes[j].host,
                                   mscf->service.data, mscf->service.len)
                       != 0))
            {
                continue;       /* another host of the VirtualService */
            }

            if (rt->route->routes[j].subset == NULL) {
                rt->dest[j] = &view->targets[0];
                continue;
            }

            for (k = 1; k < view->ntargets; k++) {
                if (ngx_strcmp(view->targets[k].subset.data,
                               rt->route->routes[j].subset) == 0)
                {
                    rt->dest[j] = &view->targets[k];
                    break;
                }
            }

            if (rt->dest[j] == NULL) {
                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "mesh: VirtualService \"%s\" routes to subset "
                              "\"%s\" of \"%V\", which no DestinationRule "
                              "defines", view->vs->name,
                              rt->route->routes[j].subset, &mscf->service);
            }
        }
    }

    return view;

failed:

    if (view) {
        ngx_http_mesh_release_view(view);

    } else {
        ngx_destroy_pool(pool);
    }

    return NULL;
}


/* p lies in the shared zone */
static ngx_inline ngx_uint_t
ngx_http_mesh_in_zone(ngx_http_mesh_main_conf_t *mmcf, void *p)
{
    return (u_char *) p >= (u_char *) mmcf->zone.shpool
           && (u_char *) p < mmcf->zone.shpool->end;
}


static ngx_int_t
ngx_http_mesh_build_target(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, ngx_http_mesh_view_t *view,
    ngx_http_mesh_target_t *t, const mesh_service_t *svc,
    const mesh_subset_t *subset, const mesh_traffic_policy_t *tp,
    ngx_log_t *log)
{
    void                     *mem;
    size_t                   *lens, idlen;
    ngx_int_t                 rc;
    ngx_str_t                 id, sid;
    ngx_uint_t                i, j, n;
    ngx_addr_t                addr;
    ngx_pool_t               *pool;
    const char              **servers;
    mesh_instance_t          *in;
    ngx_http_mesh_peer_t     *peer, *reuse;
    ngx_http_mesh_stat_t     *st;
    ngx_http_mesh_target_t   *old;
    int                      *weights;

    pool = view->pool;
    n = svc ? svc->ninstances : 0;

    if (subset) {
        t->subset.len = ngx_strlen(subset->name);
        t->subset.data = (u_char *) subset->name;
    }

    t->balancer = ngx_http_mesh_lb(tp ? tp->lb : MESH_LB_NONE,
                                   mscf->balancer, &t->hash);

    if (tp && tp->hash_name) {
        t->hash_name.len = ngx_strlen(tp->hash_name);
        t->hash_name.data = (u_char *) tp->hash_name;
    }

    t->max_conns = (tp && tp->max_connections > 0) ? tp->max_connections : 0;

    /* outlier detection: the policy's fields, else mesh_outlier's */
    t->outlier = mscf->outlier;

    if (tp) {
        if (tp->consecutive_5xx >= 0) {
            t->outlier.consecutive_5xx = tp->consecutive_5xx;
        }

        if (tp->consecutive_gateway >= 0) {
            t->outlier.consecutive_gateway = tp->consecutive_gateway;
        }

        if (tp->interval > 0) {
            t->outlier.interval = (ngx_msec_t) tp->interval;
        }

        if (tp->base_ejection_time > 0) {
            t->outlier.base_ejection_time = (ngx_msec_t)
                                            tp->base_ejection_time;
        }

        if (tp->max_ejection_percent >= 0) {
            t->outlier.max_ejection_percent = tp->max_ejection_percent;
        }

        if (tp->min_health_percent >= 0) {
            t->outlier.panic_threshold = tp->min_health_percent;
        }

        if (tp->split_local_origin >= 0) {
            t->outlier.split_local = tp->split_local_origin;
        }

        if (tp->consecutive_local_origin >= 0) {
            t->outlier.consecutive_local = tp->consecutive_local_origin;
        }
    }

    t->service_name = mscf->service;

    if (svc) {
        t->service = ngx_http_mesh_get_stat(&mmcf->zone, &mscf->service,
                                            NULL);
    }

    t->epoch = t->service ? &t->service->epoch : &mmcf->zone.sh->epoch;

    /*
     * The round robin position, shared by the workers: the service's, or
     * a subset's own ("service/#subset"); consistent hash without a key
     * balances by round robin too.
     */
    t->rr = t->service ? &t->service->rr_next : &t->rr_local;

    if (subset && svc && (t->balancer == NGX_HTTP_MESH_RR
                          || t->balancer == NGX_HTTP_MESH_CHASH))
    {
        sid.len = 1 + t->subset.len;
        sid.data = ngx_pnalloc(pool, sid.len);
        if (sid.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(sid.data, "#%V", &t->subset);

        st = ngx_http_mesh_get_stat(&mmcf->zone, &mscf->service, &sid);
        t->rr = st ? &st->rr_next : &t->rr_local;
    }

    peer = ngx_pcalloc(pool, (n + 1) * sizeof(ngx_http_mesh_peer_t));
    t->mp = ngx_pcalloc(pool, (n + 1) * sizeof(mesh_peer_t));
    servers = ngx_pcalloc(pool, (n + 1) * sizeof(char *));
    lens = ngx_pcalloc(pool, (n + 1) * sizeof(size_t));
    weights = ngx_pcalloc(pool, (n + 1) * sizeof(int));

    if (peer == NULL || t->mp == NULL || servers == NULL || lens == NULL
        || weights == NULL)
    {
        return NGX_ERROR;
    }

    t->peer = peer;

    /*
     * The same target of the view in place: an instance it has with the
     * same address keeps its parsed address and its counters, without a
     * parse or a lookup in the zone (both are sorted by id).
     */
    old = NULL;

    for (j = 0; mscf->view && j < mscf->view->ntargets; j++) {
        if (mscf->view->targets[j].balancer == t->balancer
            && mscf->view->targets[j].subset.len == t->subset.len
            && ngx_strncmp(mscf->view->targets[j].subset.data,
                           t->subset.data, t->subset.len) == 0)
        {
            old = &mscf->view->targets[j];
            break;
        }
    }

    j = 0;

    for (i = 0; i < n; i++) {
        in = &svc->instances[i];

        if (subset && !mesh_instance_in_subset(in, subset)) {
            continue;
        }

        reuse = NULL;
        idlen = ngx_strlen(in->id);

        while (old && j < old->number
               && ngx_memn2cmp(old->peer[j].id.data, (u_char *) in->id,
                               old->peer[j].id.len, idlen) < 0)
        {
            j++;
        }

        /* (counters kept in the worker when the zone was full are not
         * reused: they go with the old view) */
        if (old && j < old->number && old->peer[j].id.len == idlen
            && ngx_memcmp(old->peer[j].id.data, in->id, idlen) == 0
            && old->peer[j].name.len == in->server_len
            && ngx_memcmp(old->peer[j].name.data, in->server,
                          in->server_len) == 0
            && ngx_http_mesh_in_zone(mmcf, old->peer[j].stat))
        {
            reuse = &old->peer[j];
        }

        if (reuse) {
            peer[t->number].sockaddr = ngx_palloc(pool, reuse->socklen);
            if (peer[t->number].sockaddr == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(peer[t->number].sockaddr, reuse->sockaddr,
                       reuse->socklen);
            peer[t->number].socklen = reuse->socklen;
            peer[t->number].name.len = in->server_len;
            peer[t->number].name.data = (u_char *) in->server;
            peer[t->number].id.len = idlen;
            peer[t->number].id.data = (u_char *) in->id;
            peer[t->number].healthy = in->healthy;
            peer[t->number].stat = reuse->stat;

            id = peer[t->number].id;

            goto health;
        }

        rc = ngx_parse_addr(pool, &addr, (u_char *) in->address,
                            ngx_strlen(in->address));
        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mesh: instance \"%s\" of service \"%V\" has an "
                          "invalid address \"%s\", skipped", in->id,
                          &mscf->service, in->address);
            continue;
        }

        ngx_inet_set_port(addr.sockaddr, (in_port_t) in->port);

        peer[t->number].sockaddr = addr.sockaddr;
        peer[t->number].socklen = addr.socklen;
        peer[t->number].name.len = in->server_len;
        peer[t->number].name.data = (u_char *) in->server;
        peer[t->number].id.len = ngx_strlen(in->id);
        peer[t->number].id.data = (u_char *) in->id;
        peer[t->number].healthy = in->healthy;

        id = peer[t->number].id;

        peer[t->number].stat = ngx_http_mesh_get_stat(&mmcf->zone,
                                                      &mscf->service, &id);
        if (peer[t->number].stat == NULL) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mesh: no room for the counters of \"%V/%V\" in "
                          "the shared zone, raise mesh_zone",
                          &mscf->service, &id);

            /* counters of this worker only: selection still works */
            peer[t->number].stat = ngx_pcalloc(pool,
                                               sizeof(ngx_http_mesh_stat_t));
            if (peer[t->number].stat == NULL) {
                return NGX_ERROR;
            }
        }

    health:

        /*
         * The registry (a health check, a heartbeat) saw it come back from
         * critical: that ends an ejection early, as an active health check
         * un-ejects in Envoy.
         */
        st = peer[t->number].stat;

        if (!in->healthy) {
            st->critical = 1;

        } else if (st->critical) {
            st->critical = 0;

            if (ngx_http_mesh_ejected(st, ngx_current_msec)) {
                st->ejected_until = ngx_current_msec;
                st->returning = 0;
                ngx_http_mesh_epoch_bump(&mmcf->zone, t);
                ngx_log_error(NGX_LOG_NOTICE, log, 0,
                              "mesh: instance \"%V\" (%V) of service \"%V\" "
                              "passes its health check again: ejection "
                              "ended", &id, &peer[t->number].name,
                              &mscf->service);
            }
        }

        t->mp[t->number].weight = in->weight;
        t->mp[t->number].active = &peer[t->number].stat->active;

        servers[t->number] = in->server;
        lens[t->number] = in->server_len;
        weights[t->number] = in->weight;

        t->number++;
    }

    if (t->balancer == NGX_HTTP_MESH_CHASH && t->number) {
        t->ring = ngx_http_mesh_ring_get(mscf, servers, lens, weights,
                                         t->number, log);
        if (t->ring == NULL) {
            return NGX_ERROR;   /* logged; the old view stays */
        }
    }

    /* the instances by weight, once; the set of those a pick may take */

    mem = ngx_palloc(pool, mesh_set_size(t->number));
    if (mem == NULL) {
        return NGX_ERROR;
    }

    mesh_set_init(&t->set, mem, t->mp, t->number);
    ngx_http_mesh_target_set(t, ngx_current_msec, log);

    return NGX_OK;
}


/*
 * The set of instances a pick may take: those passing in the registry and
 * not ejected, or in panic all of them. Worked out again only when an
 * ejection of the service starts or ends early (its epoch moves) or the
 * soonest one the set leaves out runs out: O(instances) per change, not
 * per pick.
 */
static void
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

static void
ngx_http_mesh_epoch_bump(ngx_http_mesh_zone_t *zone,
    ngx_http_mesh_target_t *t)
{
    if (t->service) {
        (void) __sync_fetch_and_add(&t->service->epoch, 1);
    }

    (void) __sync_fetch_and_add(&zone->sh->epoch, 1);
}


static ngx_inline void
ngx_http_mesh_release_view(ngx_http_mesh_view_t *view)
{
    if (view && --view->refs == 0) {
        ngx_http_mesh_free_view(view);
    }
}


static void
ngx_http_mesh_free_view(ngx_http_mesh_view_t *view)
{
    ngx_uint_t  i;

    for (i = 0; view->targets && i < view->ntargets; i++) {
        ngx_http_mesh_ring_release(view->targets[i].ring);
    }

    if (view->gen) {
        ngx_http_mesh_gen_release(view->gen);
    }

    ngx_destroy_pool(view->pool);     /* frees the packed copy too */
}


/* a request in flight on st, counted in this worker's slot too */
static ngx_inline void
ngx_http_mesh_hold(ngx_http_mesh_stat_t *st)
{
    (void) __sync_fetch_and_add(&st->active, 1);

    if (ngx_http_mesh_slot >= 0) {
        (void) __sync_fetch_and_add(&st->held[ngx_http_mesh_slot], 1);
    }
}


static ngx_inline void
ngx_http_mesh_unhold(ngx_http_mesh_stat_t *st)
{
    (void) __sync_fetch_and_sub(&st->active, 1);

    if (ngx_http_mesh_slot >= 0) {
        (void) __sync_fetch_and_sub(&st->held[ngx_http_mesh_slot], 1);
    }
}


static void
ngx_http_mesh_cleanup_peer(void *data)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    if (pd->current) {
        /* the upstream did not call free_peer (finalized early) */
        ngx_http_mesh_unhold(pd->current->stat);

        if (pd->target && pd->target->service) {
            ngx_http_mesh_unhold(pd->target->service);

            if (pd->retrying) {
                (void) __sync_fetch_and_sub(
                           &pd->target->service->retries_active, 1);
                pd->retrying = 0;
            }
        }

        pd->current = NULL;
    }

    if (pd->view) {
        ngx_http_mesh_release_view(pd->view);
        pd->view = NULL;
    }
}


static ngx_table_elt_t *
ngx_http_mesh_header(ngx_http_request_t *r, const char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/* the first http[] route whose match fits; NULL when none does */
static ngx_http_mesh_route_t *
ngx_http_mesh_find_route(ngx_http_request_t *r, ngx_http_mesh_view_t *view)
{
    ngx_uint_t            i, k, h, fits;
    mesh_match_t         *m;
    ngx_table_elt_t      *hdr;
    mesh_http_route_t    *route;
    mesh_header_match_t  *hm;

    for (i = 0; i < view->nroutes; i++) {
        route = view->routes[i].route;

        if (route->nmatches == 0) {
            return &view->routes[i];
        }

        for (k = 0; k < route->nmatches; k++) {
            m = &route->matches[k];
            fits = 1;

            if (m->uri
                && !mesh_string_match(m->uri, (char *) r->uri.data,
                                      r->uri.len, NULL))
            {
                fits = 0;
            }

            for (h = 0; fits && h < m->nheaders; h++) {
                hm = &m->headers[h];
                hdr = ngx_http_mesh_header(r, hm->name, hm->name_len);

                if (hdr == NULL
                    || !mesh_string_match(&hm->match, (char *) hdr->value.data,
                                          hdr->value.len,
                                          NULL))
                {
                    fits = 0;
                }
            }

            if (fits) {
                return &view->routes[i];
            }
        }
    }

    return NULL;
}


/*
 * A route's retries and timeout: the upstream conf is the location's,
 * shared by its requests, so this request gets a copy of its own.
 */
static ngx_int_t
ngx_http_mesh_route_conf(ngx_http_request_t *r, mesh_http_route_t *route)
{
    ngx_msec_t                 t;
    ngx_uint_t                 next;
    ngx_http_upstream_t       *u;
    ngx_http_upstream_conf_t  *conf;

    if (route->attempts < 0 && route->per_try_timeout < 0
        && route->retry_on == 0 && route->timeout < 0)
    {
        return NGX_OK;
    }

    u = r->upstream;

    conf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));
    if (conf == NULL) {
        return NGX_ERROR;
    }

    *conf = *u->conf;

    if (route->attempts >= 0) {
        conf->next_upstream_tries = route->attempts + 1;

        if (route->attempts == 0) {
            conf->next_upstream = NGX_HTTP_UPSTREAM_FT_OFF;
        }
    }

    if (route->retry_on && route->attempts != 0) {
        next = conf->next_upstream & NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT;

        if (route->retry_on & MESH_RETRY_5XX) {
            next |= NGX_HTTP_UPSTREAM_FT_ERROR|NGX_HTTP_UPSTREAM_FT_TIMEOUT
                    |NGX_HTTP_UPSTREAM_FT_HTTP_500
                    |NGX_HTTP_UPSTREAM_FT_HTTP_502
                    |NGX_HTTP_UPSTREAM_FT_HTTP_503
                    |NGX_HTTP_UPSTREAM_FT_HTTP_504;
        }

        if (route->retry_on & MESH_RETRY_GATEWAY_ERROR) {
            next |= NGX_HTTP_UPSTREAM_FT_HTTP_502
                    |NGX_HTTP_UPSTREAM_FT_HTTP_503
                    |NGX_HTTP_UPSTREAM_FT_HTTP_504;
        }

        if (route->retry_on & MESH_RETRY_CONNECT_FAILURE) {
            next |= NGX_HTTP_UPSTREAM_FT_ERROR|NGX_HTTP_UPSTREAM_FT_TIMEOUT;
        }

        if (route->retry_on & MESH_RETRY_RESET) {
            next |= NGX_HTTP_UPSTREAM_FT_ERROR;
        }

        conf->next_upstream = next;
    }

    if (route->per_try_timeout > 0) {
        t = (ngx_msec_t) route->per_try_timeout;

        conf->connect_timeout = ngx_min(conf->connect_timeout, t);
        conf->send_timeout = t;
        conf->read_timeout = t;
    }

    if (route->timeout > 0) {
        t = (ngx_msec_t) route->timeout;

        conf->next_upstream_timeout = t;
        conf->connect_timeout = ngx_min(conf->connect_timeout, t);
        conf->send_timeout = ngx_min(conf->send_timeout, t);
        conf->read_timeout = ngx_min(conf->read_timeout, t);
    }

    u->conf = conf;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mesh_hash_key(ngx_http_request_t *r, ngx_http_mesh_srv_conf_t *mscf,
    ngx_http_mesh_target_t *t, ngx_str_t *key)
{
    ngx_table_elt_t  *h;

    key->len = 0;

    switch (t->hash) {

    case NGX_HTTP_MESH_HASH_HEADER:
        h = ngx_http_mesh_header(r, (char *) t->hash_name.data,
                                 t->hash_name.len);
        if (h) {
            *key = h->value;
        }
        return NGX_OK;

    case NGX_HTTP_MESH_HASH_QUERY:
        if (ngx_http_arg(r, t->hash_name.data, t->hash_name.len, key)
            != NGX_OK)
        {
            key->len = 0;
        }
        return NGX_OK;

    case NGX_HTTP_MESH_HASH_COOKIE:
        if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies,
                                              &t->hash_name, key)
            == NGX_DECLINED)
        {
            key->len = 0;
        }
        return NGX_OK;

    case NGX_HTTP_MESH_HASH_SOURCE_IP:
        *key = r->connection->addr_text;
        return NGX_OK;

    default: /* NGX_HTTP_MESH_HASH_KEY */
        if (mscf->key == NULL) {
            return NGX_OK;      /* round robin */
        }

        return ngx_http_complex_value(r, mscf->key, key);
    }
}


static ngx_int_t
ngx_http_mesh_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    int                          d;
    ngx_str_t                    key;
    ngx_uint_t                   n;
    ngx_pool_cleanup_t          *cln;
    ngx_http_mesh_view_t        *view;
    ngx_http_mesh_route_t       *rt;
    ngx_http_mesh_target_t      *t;
    ngx_http_mesh_srv_conf_t    *mscf;
    ngx_http_mesh_main_conf_t   *mmcf;
    ngx_http_mesh_peer_data_t   *pd;

    mscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_mesh_module);
    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mesh_module);

    if (ngx_http_mesh_worker.cycle != ngx_cycle
        || (mmcf->zone.sh
            && mmcf->zone.sh->generation != ngx_http_mesh_worker.generation))
    {
        (void) ngx_http_mesh_sync(mmcf, r->connection->log);
    }

    /* the request's data lives in its cleanup, which lets go of the view */

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_mesh_peer_data_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    pd = cln->data;

    pd->conf = mscf;
    pd->main = mmcf;
    pd->view = NULL;
    pd->target = NULL;
    pd->route = NULL;
    pd->current = NULL;
    pd->last = NULL;
    pd->tried = NULL;
    pd->tried_inline = 0;
    pd->tries = 0;
    pd->hash = 0;
    pd->has_hash = 0;
    pd->index = ngx_http_mesh_worker.index;
    pd->retrying = 0;
    pd->refused = 0;
    pd->request = r;

    cln->handler = ngx_http_mesh_cleanup_peer;

    view = mscf->view;
    t = NULL;

    if (view) {
        view->refs++;
        pd->view = view;

        t = &view->targets[0];

        if (view->vs) {
            rt = ngx_http_mesh_find_route(r, view);
            pd->route = rt;
            t = NULL;

            if (rt == NULL) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "mesh: no route of VirtualService \"%s\" "
                              "fits the request to service \"%V\"",
                              view->vs->name, &mscf->service);

            } else {
                d = mesh_route_pick(rt->route, (uint32_t) ngx_random());
                t = (d >= 0) ? rt->dest[d] : NULL;

                if (ngx_http_mesh_route_conf(r, rt->route) != NGX_OK) {
                    return NGX_ERROR;
                }
            }
        }
    }

    pd->target = t;
    n = t ? t->number : 0;

    if (n <= 8 * sizeof(uintptr_t)) {
        pd->tried = &pd->tried_inline;

    } else {
        pd->tried = ngx_pcalloc(r->pool, (n / (8 * sizeof(uintptr_t)) + 1)
                                         * sizeof(uintptr_t));
        if (pd->tried == NULL) {
            return NGX_ERROR;
        }
    }

    if (t && t->balancer == NGX_HTTP_MESH_CHASH) {
        if (ngx_http_mesh_hash_key(r, mscf, t, &key) != NGX_OK) {
            return NGX_ERROR;
        }

        if (key.len) {
            pd->hash = mesh_crc32(key.data, key.len);
            pd->has_hash = 1;
        }
    }

    r->upstream->peer.data = pd;
    r->upstream->peer.get = ngx_http_mesh_get_peer;
    r->upstream->peer.free = ngx_http_mesh_free_peer;
    r->upstream->peer.tries = n ? n : 1;

    ngx_http_set_ctx(r, pd, ngx_http_mesh_module);

    return NGX_OK;
}


/* has this request tried instance k of its target already? */

static ngx_inline ngx_uint_t
ngx_http_mesh_tried(ngx_http_mesh_peer_data_t *pd, ngx_uint_t k)
{
    return (pd->tried[k / (8 * sizeof(uintptr_t))]
            >> k % (8 * sizeof(uintptr_t))) & 1;
}


/* may this request's pick take instance k: not tried yet, not at its cap */

static int
ngx_http_mesh_accept(void *ctx, size_t k)
{
    ngx_http_mesh_peer_data_t  *pd = ctx;

    ngx_http_mesh_target_t  *t;

    t = pd->target;

    return !ngx_http_mesh_tried(pd, k)
           && !(t->max_conns && *t->mp[k].active >= t->max_conns);
}


static ngx_int_t
ngx_http_mesh_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    int                         i;
    uint32_t                    budget;
    ngx_msec_t                  now;
    ngx_uint_t                  n, tried;
    mesh_accept_pt              accept;
    ngx_http_mesh_peer_t       *peer;
    ngx_http_mesh_target_t     *t;

    t = pd->target;
    n = t ? t->number : 0;

    if (n == 0) {
        if (pd->view && pd->view->vs && pd->route == NULL) {
            return NGX_BUSY;    /* logged by init_peer */
        }

        /* (without a target there is no subset to name) */
        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "mesh: no instances of service \"%V\"%s%V%s for "
                      "upstream \"%V\"", &pd->conf->service,
                      t && t->subset.len ? " (subset \"" : "",
                      t && t->subset.len ? &t->subset : &ngx_http_mesh_empty,
                      t && t->subset.len ? "\")" : "",
                      &pd->conf->upstream->host);
        return NGX_BUSY;
    }

    /* the set is worked out again only after an ejection came or went */

    now = ngx_current_msec;

    if (t->set_epoch != *(volatile uint32_t *) t->epoch
        || (t->set_expire && (ngx_msec_int_t) (now - t->set_expire) >= 0))
    {
        ngx_http_mesh_target_set(t, now, pc->log);
    }

    tried = (pd->tries != 0);

    if (t->panic && !tried && pd->conf->missing == 0) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "mesh: service \"%V\" in panic, %ui of %ui healthy",
                       &pd->conf->service, t->healthy, n);
    }

    /* a retry takes a share of the service's retry budget */

    if (tried && t->service && !pd->refused) {
        budget = t->service->active / 5;
        if (budget < 3) {
            budget = 3;
        }

        if (t->service->retries_active >= budget) {
            ngx_log_error(NGX_LOG_WARN, pc->log, 0,
                          "mesh: retry budget of service \"%V\" exhausted "
                          "(%uD retries in flight), not retrying",
                          &pd->conf->service, t->service->retries_active);
            pc->name = &pd->conf->upstream->host;
            return NGX_BUSY;
        }
    }

    /* the first try of a target without a cap takes any of the set */

    accept = (tried || t->max_conns) ? ngx_http_mesh_accept : NULL;

    switch (t->balancer) {

    case NGX_HTTP_MESH_RANDOM:
        i = mesh_random_pick(&t->set, NULL, &ngx_http_mesh_worker.rand,
                             accept, pd);
        break;

    case NGX_HTTP_MESH_LEAST_REQUEST:
        i = mesh_p2c_pick(&t->set, t->mp, NULL, &ngx_http_mesh_worker.rand,
                          accept, pd);
        break;

    case NGX_HTTP_MESH_CHASH:
        if (pd->has_hash) {
            i = (t->ring->builder == NULL)
                ? mesh_chash_pick(&t->ring->ring, t->mp, pd->hash, accept,
                                  pd)
                : mesh_modulo_pick(t->mp, n, pd->hash, accept, pd);
            break;
        }

        /* fall through */

    default: /* NGX_HTTP_MESH_RR */

        /* equal weights, the common case: the set in order */
        if (accept == NULL && t->set.equal && t->set.n) {
            i = (int) t->set.elig[__sync_fetch_and_add(t->rr, 1)
                                  % t->set.n];
            break;
        }

        i = mesh_wrr_pick(&t->set, t->rr, accept, pd);
        break;
    }

    if (i < 0) {
        pc->name = &pd->conf->upstream->host;

        if (!tried) {
            ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                          "mesh: no healthy instance of service \"%V\"%s%V%s "
                          "for upstream \"%V\" (%ui registered)",
                          &pd->conf->service,
                          t->subset.len ? " (subset \"" : "", &t->subset,
                          t->subset.len ? "\")" : "",
                          &pd->conf->upstream->host, n);
        }

        return NGX_BUSY;
    }

    pd->tried[i / (8 * sizeof(uintptr_t))] |=
                                 (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));
    pd->tries++;

    peer = &t->peer[i];
    pd->current = peer;
    pd->last = peer;

    ngx_http_mesh_hold(peer->stat);
    (void) __sync_fetch_and_add(&peer->stat->requests, 1);

    if (t->service) {
        ngx_http_mesh_hold(t->service);
        (void) __sync_fetch_and_add(&t->service->requests, 1);

        if (tried) {
            (void) __sync_fetch_and_add(&t->service->retries, 1);

            /*
             * A retry after a refused connection is the request's first
             * real try: it costs no one extra work, and a killed instance
             * must not turn a burst of them into client errors.
             */
            if (!pd->refused) {
                (void) __sync_fetch_and_add(&t->service->retries_active, 1);
                pd->retrying = 1;
            }
        }
    }

    pc->sockaddr = peer->sockaddr;
    pc->socklen = peer->socklen;
    pc->name = &peer->name;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "mesh: upstream \"%V\" picked \"%V\" at %V",
                   &pd->conf->upstream->host, &peer->id, &peer->name);

    return NGX_OK;
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
 * A response in st's counters: its status class (0: none), latency
 * bucket and time, and the 10 s window it ended in (and that window's
 * slot), for the rates of the last 10 s and 60 s.
 */
static ngx_inline void
ngx_http_mesh_count(ngx_http_mesh_stat_t *st, ngx_uint_t status,
    ngx_uint_t bucket, ngx_msec_t ms, uint64_t window, ngx_uint_t slot)
{
    if (status) {
        (void) __sync_fetch_and_add(&st->responses[status - 1], 1);
    }

    (void) __sync_fetch_and_add(&st->latency[bucket], 1);
    (void) __sync_fetch_and_add(&st->latency_sum, ms);

    if (st->win_slot[slot] != window) {
        if (__sync_bool_compare_and_swap(&st->win_slot[slot],
                                         st->win_slot[slot], window))
        {
            st->win_requests[slot] = 0;
            st->win_latency[slot] = 0;
        }
    }

    (void) __sync_fetch_and_add(&st->win_requests[slot], 1);
    (void) __sync_fetch_and_add(&st->win_latency[slot], ms);
}


static void
ngx_http_mesh_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    ngx_msec_t                 ms;
    ngx_uint_t                 status, cls, b;
    ngx_http_upstream_t       *u;
    ngx_http_mesh_peer_t      *peer;
    ngx_http_mesh_stat_t      *st, *svc;

    static const ngx_msec_t  bounds[NGX_HTTP_MESH_LATENCY_BUCKETS - 1] = {
        5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
    };

    peer = pd->current;

    if (pc->tries) {
        pc->tries--;
    }

    if (peer == NULL) {
        return;
    }

    pd->current = NULL;

    st = peer->stat;
    svc = pd->target->service;
    u = pd->request->upstream;

    status = u->state ? u->state->status : 0;
    ms = (u->state && u->state->response_time != (ngx_msec_t) -1)
         ? u->state->response_time : ngx_current_msec - u->peer.start_time;

    ngx_http_mesh_unhold(st);

    if (svc) {
        ngx_http_mesh_unhold(svc);

        if (pd->retrying) {
            (void) __sync_fetch_and_sub(&svc->retries_active, 1);
            pd->retrying = 0;
        }
    }

    /*
     * The service keeps its own totals: summed from its instances they
     * would drop when an instance leaves, and a Prometheus counter must
     * not go down.
     */
    if (pd->main->metrics) {
        cls = (status - 100 < 500) ? status / 100 : 0;

        for (b = 0; b < NGX_HTTP_MESH_LATENCY_BUCKETS - 1; b++) {
            if (ms <= bounds[b]) {
                break;
            }
        }

        if ((ngx_msec_int_t) (ngx_current_msec - ngx_http_mesh_window.end)
            >= 0)
        {
            ngx_http_mesh_window.id = ngx_current_msec / NGX_HTTP_MESH_WINDOW;
            ngx_http_mesh_window.slot = ngx_http_mesh_window.id
                                        % NGX_HTTP_MESH_WINDOW_SLOTS;
            ngx_http_mesh_window.end = (ngx_http_mesh_window.id + 1)
                                       * NGX_HTTP_MESH_WINDOW;
        }

        ngx_http_mesh_count(st, cls, b, ms, ngx_http_mesh_window.id,
                            ngx_http_mesh_window.slot);

        if (svc) {
            ngx_http_mesh_count(svc, cls, b, ms, ngx_http_mesh_window.id,
                                ngx_http_mesh_window.slot);
        }
    }

    if ((state & NGX_PEER_FAILED) || status >= 500) {
        ngx_http_mesh_failed(pd, peer, state, status, pc->log);
        return;
    }

    /* a response below 500 ends every run of failures */

    pd->refused = 0;

    if (st->consecutive_5xx) {
        st->consecutive_5xx = 0;
    }

    if (st->consecutive_gateway) {
        st->consecutive_gateway = 0;
    }

    if (st->consecutive_local) {
        st->consecutive_local = 0;
    }
}


/*
 * A try that failed or answered 5xx: counted, and outlier detection. A
 * connect error or a timeout (no status) counts as a 5xx and as a gateway
 * error, as Istio counts locally originated failures. With
 * splitExternalLocalOriginErrors they count apart, against
 * consecutiveLocalOriginFailures, and a response ends that run.
 */
static void
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
    u = pd->request->upstream;

    if (state & NGX_PEER_FAILED) {
        (void) __sync_fetch_and_add(&st->failures, 1);

        if (t->service) {
            (void) __sync_fetch_and_add(&t->service->failures, 1);
        }
    }

    local = (state & NGX_PEER_FAILED) && status == 0;

    pd->refused = local && u->state
                  && u->state->connect_time == (ngx_msec_t) -1;

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
