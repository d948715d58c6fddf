
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
    mesh_snapshot_t               *snap;
    u_char                        *json;        /* what snap was read from */
} ngx_http_mesh_worker_t;


static ngx_int_t ngx_http_mesh_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_mesh_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_mesh_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_mesh_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
static ngx_http_mesh_peers_t *ngx_http_mesh_build_peers(
    ngx_http_mesh_main_conf_t *mmcf, ngx_http_mesh_srv_conf_t *mscf,
    mesh_snapshot_t *snap, ngx_log_t *log);
static void ngx_http_mesh_release_peers(ngx_http_mesh_peers_t *peers);
static void ngx_http_mesh_cleanup_peer(void *data);
static uint32_t ngx_http_mesh_rand(void *state);


static ngx_http_mesh_worker_t  ngx_http_mesh_worker;

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


static ngx_int_t
ngx_http_mesh_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_mesh_srv_conf_t  *mscf;

    mscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_mesh_module);

    if (mscf->balancer == NGX_CONF_UNSET_UINT) {
        mscf->balancer = NGX_HTTP_MESH_RR;
    }

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
 * Bring this worker's view up to the shared snapshot: parse it once per
 * generation and rebuild every mesh upstream's peers. Requests in flight
 * keep the peers they started with (reference counted).
 */
ngx_int_t
ngx_http_mesh_sync(ngx_http_mesh_main_conf_t *mmcf, ngx_log_t *log)
{
    char                        err[MESH_ERR_LEN];
    u_char                     *json;
    size_t                      len;
    uint64_t                    index;
    ngx_uint_t                  i;
    mesh_snapshot_t            *snap;
    ngx_atomic_uint_t           gen;
    ngx_http_mesh_zone_t       *zone;
    ngx_http_mesh_peers_t      *peers;
    ngx_http_mesh_srv_conf_t  **mscfp;

    zone = &mmcf->zone;

    if (zone->sh == NULL) {
        return NGX_DECLINED;
    }

    gen = zone->sh->generation;

    if (ngx_http_mesh_worker.cycle == ngx_cycle
        && gen == ngx_http_mesh_worker.generation)
    {
        return NGX_OK;
    }

    json = NULL;
    len = 0;
    index = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    gen = zone->sh->generation;

    if (zone->sh->snapshot) {
        len = zone->sh->snapshot_len;
        index = zone->sh->index;

        json = ngx_alloc(len + 1, log);
        if (json != NULL) {
            ngx_memcpy(json, zone->sh->snapshot, len);
            json[len] = '\0';
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (len && json == NULL) {
        return NGX_ERROR;
    }

    ngx_http_mesh_worker.generation = gen;
    ngx_http_mesh_worker.cycle = (ngx_cycle_t *) ngx_cycle;

    if (json == NULL) {
        return NGX_OK;          /* nothing yet */
    }

    snap = mesh_snapshot_parse((char *) json, len, err, sizeof(err));
    if (snap == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "mesh: snapshot index %uL refused, keeping index %uL: "
                      "%s", index,
                      ngx_http_mesh_worker.snap
                      ? ngx_http_mesh_worker.snap->index : 0, err);
        ngx_free(json);
        return NGX_ERROR;
    }

    mscfp = mmcf->upstreams.elts;

    for (i = 0; i < mmcf->upstreams.nelts; i++) {
        peers = ngx_http_mesh_build_peers(mmcf, mscfp[i], snap, log);
        if (peers == NULL) {
            continue;           /* keep the old peers */
        }

        if (mscfp[i]->peers) {
            ngx_http_mesh_release_peers(mscfp[i]->peers);
        }

        mscfp[i]->peers = peers;
    }

    if (ngx_http_mesh_worker.snap) {
        mesh_snapshot_free(ngx_http_mesh_worker.snap);
        ngx_free(ngx_http_mesh_worker.json);
    }

    ngx_http_mesh_worker.snap = snap;
    ngx_http_mesh_worker.json = json;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "mesh: worker synced to index %uL, %uz services",
                   snap->index, snap->nservices);

    return NGX_OK;
}


mesh_snapshot_t *
ngx_http_mesh_current_snapshot(void)
{
    return ngx_http_mesh_worker.snap;
}


static ngx_http_mesh_peers_t *
ngx_http_mesh_build_peers(ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_srv_conf_t *mscf, mesh_snapshot_t *snap, ngx_log_t *log)
{
    size_t                   *lens;
    ngx_int_t                 rc;
    ngx_str_t                 id;
    ngx_uint_t                i, n;
    ngx_addr_t                addr;
    ngx_pool_t               *pool;
    const char              **servers;
    mesh_instance_t          *in;
    ngx_http_mesh_peer_t     *peer;
    ngx_http_mesh_peers_t    *peers;
    const mesh_service_t     *svc;
    int                      *weights;

    svc = mesh_snapshot_service(snap, (char *) mscf->service.data,
                                mscf->service.len);

    if (svc == NULL) {
        if (!mscf->missing) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "mesh: service \"%V\" of upstream \"%V\" is not in "
                          "the registry (index %uL)", &mscf->service,
                          &mscf->upstream->host, snap->index);
            mscf->missing = 1;
        }

    } else {
        mscf->missing = 0;
    }

    n = svc ? svc->ninstances : 0;

    pool = ngx_create_pool(1024 + n * 256, log);
    if (pool == NULL) {
        return NULL;
    }

    peers = ngx_pcalloc(pool, sizeof(ngx_http_mesh_peers_t));
    if (peers == NULL) {
        goto failed;
    }

    peers->pool = pool;
    peers->refs = 1;
    peers->index = snap->index;

    peer = ngx_pcalloc(pool, (n + 1) * sizeof(ngx_http_mesh_peer_t));
    peers->mp = ngx_pcalloc(pool, (n + 1) * sizeof(mesh_peer_t));
    servers = ngx_pcalloc(pool, (n + 1) * sizeof(char *));
    lens = ngx_pcalloc(pool, (n + 1) * sizeof(size_t));
    weights = ngx_pcalloc(pool, (n + 1) * sizeof(int));

    if (peer == NULL || peers->mp == NULL || servers == NULL || lens == NULL
        || weights == NULL)
    {
        goto failed;
    }

    peers->peer = peer;

    for (i = 0; i < n; i++) {
        in = &svc->instances[i];

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

        peer[peers->number].sockaddr = addr.sockaddr;
        peer[peers->number].socklen = addr.socklen;

        peer[peers->number].name.len = in->server_len;
        peer[peers->number].name.data = ngx_pstrdup(pool,
                                  &(ngx_str_t) { in->server_len,
                                                 (u_char *) in->server });

        id.len = ngx_strlen(in->id);
        id.data = (u_char *) in->id;
        peer[peers->number].id.len = id.len;
        peer[peers->number].id.data = ngx_pstrdup(pool, &id);

        if (peer[peers->number].name.data == NULL
            || peer[peers->number].id.data == NULL)
        {
            goto failed;
        }

        peer[peers->number].healthy = in->healthy;

        peer[peers->number].stat = ngx_http_mesh_get_stat(&mmcf->zone,
                                                          &mscf->service,
                                                          &id);
        if (peer[peers->number].stat == NULL) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "mesh: no room for the counters of \"%V/%V\" in "
                          "the shared zone, raise mesh_zone",
                          &mscf->service, &id);

            /* counters of this worker only: selection still works */
            peer[peers->number].stat = ngx_pcalloc(pool,
                                               sizeof(ngx_http_mesh_stat_t));
            if (peer[peers->number].stat == NULL) {
                goto failed;
            }
        }

        peers->mp[peers->number].weight = in->weight;
        peers->mp[peers->number].current =
                                        &peer[peers->number].stat->current;
        peers->mp[peers->number].active =
                                        &peer[peers->number].stat->active;

        servers[peers->number] = in->server;
        lens[peers->number] = in->server_len;
        weights[peers->number] = in->weight;

        peers->number++;
    }

    if (mscf->balancer == NGX_HTTP_MESH_CHASH && peers->number
        && mesh_chash_build(&peers->ring, servers, lens, weights,
                            peers->number)
           != 0)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "mesh: cannot build the hash ring of upstream \"%V\"",
                      &mscf->upstream->host);
        goto failed;
    }

    return peers;

failed:

    ngx_destroy_pool(pool);
    return NULL;
}


static void
ngx_http_mesh_release_peers(ngx_http_mesh_peers_t *peers)
{
    if (--peers->refs) {
        return;
    }

    mesh_chash_free(&peers->ring);
    ngx_destroy_pool(peers->pool);
}


static void
ngx_http_mesh_cleanup_peer(void *data)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    if (pd->current) {
        /* the upstream did not call free_peer (finalized early) */
        (void) __sync_fetch_and_sub(&pd->current->stat->active, 1);
        pd->current = NULL;
    }

    if (pd->peers) {
        ngx_http_mesh_release_peers(pd->peers);
        pd->peers = NULL;
    }
}


static ngx_int_t
ngx_http_mesh_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_str_t                   key;
    ngx_uint_t                  n;
    ngx_pool_cleanup_t         *cln;
    ngx_http_mesh_peers_t      *peers;
    ngx_http_mesh_srv_conf_t   *mscf;
    ngx_http_mesh_main_conf_t  *mmcf;
    ngx_http_mesh_peer_data_t  *pd;

    mscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_mesh_module);
    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mesh_module);

    (void) ngx_http_mesh_sync(mmcf, r->connection->log);

    pd = ngx_pcalloc(r->pool, sizeof(ngx_http_mesh_peer_data_t));
    if (pd == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    peers = mscf->peers;
    n = peers ? peers->number : 0;

    pd->conf = mscf;

    pd->tried = ngx_pcalloc(r->pool,
                            (n / (8 * sizeof(uintptr_t)) + 1)
                            * sizeof(uintptr_t));
    if (pd->tried == NULL) {
        return NGX_ERROR;
    }

    if (peers) {
        peers->refs++;
        pd->peers = peers;
    }

    cln->handler = ngx_http_mesh_cleanup_peer;
    cln->data = pd;

    if (mscf->balancer == NGX_HTTP_MESH_CHASH) {
        if (ngx_http_complex_value(r, mscf->key, &key) != NGX_OK) {
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


static ngx_int_t
ngx_http_mesh_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    int                         i;
    uintptr_t                   m;
    ngx_uint_t                  n, k, tried;
    mesh_peer_t                *mp;
    ngx_http_mesh_peer_t       *peer;
    ngx_http_mesh_peers_t      *peers;
    ngx_http_mesh_main_conf_t  *mmcf;

    peers = pd->peers;
    n = peers ? peers->number : 0;

    if (n == 0) {
        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "mesh: no instances of service \"%V\" for upstream "
                      "\"%V\"", &pd->conf->service,
                      &pd->conf->upstream->host);
        return NGX_BUSY;
    }

    mp = peers->mp;
    tried = 0;

    for (k = 0; k < n; k++) {
        m = (uintptr_t) 1 << k % (8 * sizeof(uintptr_t));
        mp[k].skip = (pd->tried[k / (8 * sizeof(uintptr_t))] & m)
                     || !peers->peer[k].healthy;
        tried |= (pd->tried[k / (8 * sizeof(uintptr_t))] & m) != 0;
    }

    mmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_mesh_module);

    switch (pd->conf->balancer) {

    case NGX_HTTP_MESH_RANDOM:
        i = mesh_random_pick(mp, n, ngx_http_mesh_rand, NULL);
        break;

    case NGX_HTTP_MESH_LEAST_REQUEST:
        i = mesh_p2c_pick(mp, n, ngx_http_mesh_rand, NULL);
        break;

    case NGX_HTTP_MESH_CHASH:
        if (pd->has_hash) {
            i = mesh_chash_pick(&peers->ring, mp, pd->hash);
            break;
        }

        /* fall through */

    default: /* NGX_HTTP_MESH_RR */
        ngx_shmtx_lock(&mmcf->zone.shpool->mutex);
        i = mesh_swrr_pick(mp, n);
        ngx_shmtx_unlock(&mmcf->zone.shpool->mutex);
        break;
    }

    if (i < 0) {
        if (!tried) {
            ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                          "mesh: no healthy instance of service \"%V\" for "
                          "upstream \"%V\" (%ui registered)",
                          &pd->conf->service, &pd->conf->upstream->host, n);
        }

        return NGX_BUSY;
    }

    pd->tried[i / (8 * sizeof(uintptr_t))] |=
                                 (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));

    peer = &peers->peer[i];
    pd->current = peer;

    (void) __sync_fetch_and_add(&peer->stat->active, 1);
    (void) __sync_fetch_and_add(&peer->stat->requests, 1);

    pc->sockaddr = peer->sockaddr;
    pc->socklen = peer->socklen;
    pc->name = &peer->name;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "mesh: upstream \"%V\" picked \"%V\" at %V",
                   &pd->conf->upstream->host, &peer->id, &peer->name);

    return NGX_OK;
}


static void
ngx_http_mesh_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_mesh_peer_data_t  *pd = data;

    ngx_http_mesh_peer_t  *peer;

    peer = pd->current;

    if (peer) {
        (void) __sync_fetch_and_sub(&peer->stat->active, 1);

        if (state & NGX_PEER_FAILED) {
            (void) __sync_fetch_and_add(&peer->stat->failures, 1);
        }

        pd->last = peer;
        pd->current = NULL;
    }

    if (pc->tries) {
        pc->tries--;
    }
}


static uint32_t
ngx_http_mesh_rand(void *state)
{
    return ((uint32_t) ngx_random() << 16) ^ (uint32_t) ngx_random();
}
