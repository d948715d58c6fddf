/*
 * rd_api_read: the reads: health, metrics, services, a service, an
 * instance.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "rd_api_int.h"


/* reads */

enum MHD_Result
rd_api_healthz(rd_req_t *rq)
{
    char       err[RD_ERR_LEN];
    mesh_buf_t  b;
    uint64_t   index;
    rd_api_t  *api = rq->api;

    index = rd_registry_index(api->reg);

    if (rd_registry_stale(api->reg, err, sizeof(err))) {
        /* reads go on from memory; writes wait for the store */
        mesh_buf_init(&b, 256);
        mesh_buf_adds(&b, "{\"status\":\"stale\",\"index\":");
        mesh_buf_add_u64(&b, index);
        mesh_buf_adds(&b, ",\"store\":");
        mesh_buf_add_json_str(&b, err);
        mesh_buf_adds(&b, rd_registry_leader(api->reg)
                          ? ",\"leader\":true}\n" : ",\"leader\":false}\n");

        return rd_api_json(rq, 200, &b, index);
    }

    if (!api->reg->store_ok) {
        /* what the last commit said (a full disk, an I/O error) */
        pthread_mutex_lock(&api->reg->qlock);
        snprintf(err, sizeof(err), "store commits are failing: %s",
                 api->reg->store_err);
        pthread_mutex_unlock(&api->reg->qlock);

        return rd_api_error(rq, 500, err, NULL);
    }

    if (!api->reg->following && rd_store_check(api->reg->store, err) != 0) {
        return rd_api_error(rq, 500, err, NULL);
    }

    /* leader: this process runs the health checks and TTL expiry (on
     * a store of its own, always) */
    mesh_buf_init(&b, 64);
    mesh_buf_adds(&b, "{\"status\":\"ok\",\"index\":");
    mesh_buf_add_u64(&b, index);
    mesh_buf_adds(&b, rd_registry_leader(api->reg)
                      ? ",\"leader\":true}\n" : ",\"leader\":false}\n");

    return rd_api_json(rq, 200, &b, index);
}


enum MHD_Result
rd_api_metrics(rd_req_t *rq)
{
    mesh_buf_t           b;
    rd_api_t            *api = rq->api;
    rd_metrics_gauges_t  g;

    g.index = rd_registry_index(api->reg);
    rd_registry_count_health(api->reg, &g.passing, &g.critical);

    pthread_mutex_lock(&api->lock);
    g.waiters = api->nwaiters;
    g.stream_clients = api->nstreams;
    pthread_mutex_unlock(&api->lock);

    pthread_rwlock_rdlock(&api->reg->lock);
    g.policies = api->reg->npolicies;
    pthread_rwlock_unlock(&api->reg->lock);

    pthread_mutex_lock(&api->reg->qlock);
    g.queued = api->reg->qlen;
    pthread_mutex_unlock(&api->reg->qlock);

    g.store_ok = api->reg->store_ok;

    mesh_buf_init(&b, 8192);
    rd_metrics_render(&b, &g);

    return rd_api_send_buf(rq, 200, &b, g.index,
                           "text/plain; version=0.0.4; charset=utf-8");
}


enum MHD_Result
rd_api_services(rd_req_t *rq)
{
    size_t           i, n, total, healthy;
    mesh_buf_t       b;
    uint64_t         index;
    rd_registry_t   *reg = rq->api->reg;
    rd_instance_t  **all;

    mesh_buf_init(&b, 256);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    all = rd_registry_sorted(reg, &n);

    mesh_buf_adds(&b, "{\"index\":");
    mesh_buf_add_u64(&b, index);
    mesh_buf_adds(&b, ",\"services\":[");

    total = 0;
    healthy = 0;

    for (i = 0; i < n; i++) {
        total++;
        healthy += (all[i]->health == RD_HEALTH_PASSING);

        if (i + 1 < n && strcmp(all[i]->service, all[i + 1]->service) == 0) {
            continue;
        }

        if (b.data[b.len - 1] == '}') {
            mesh_buf_addc(&b, ',');
        }

        mesh_buf_adds(&b, "{\"name\":");
        mesh_buf_add_json_str(&b, all[i]->service);
        mesh_buf_printf(&b, ",\"instances\":%zu,\"healthy\":%zu}", total,
                      healthy);
        total = 0;
        healthy = 0;
    }

    pthread_rwlock_unlock(&reg->lock);
    free(all);

    mesh_buf_adds(&b, "]}\n");

    return rd_api_json(rq, 200, &b, index);
}


enum MHD_Result
rd_api_service(rd_req_t *rq)
{
    int              found;
    size_t           i, n;
    mesh_buf_t       b;
    uint64_t         index;
    rd_registry_t   *reg = rq->api->reg;
    rd_instance_t  **all;

    mesh_buf_init(&b, 256);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    all = rd_registry_sorted(reg, &n);

    mesh_buf_adds(&b, "{\"index\":");
    mesh_buf_add_u64(&b, index);
    mesh_buf_adds(&b, ",\"name\":");
    mesh_buf_add_json_str(&b, rq->svc);
    mesh_buf_adds(&b, ",\"instances\":[");

    found = 0;

    for (i = 0; i < n; i++) {
        if (strcmp(all[i]->service, rq->svc) != 0) {
            continue;
        }

        if (found++) {
            mesh_buf_addc(&b, ',');
        }

        rd_instance_to_json(&b, all[i], RD_JSON_SNAPSHOT);
    }

    pthread_rwlock_unlock(&reg->lock);
    free(all);

    if (!found) {
        mesh_buf_free(&b);
        return rd_api_error(rq, 404, "unknown service", "service");
    }

    mesh_buf_adds(&b, "]}\n");

    return rd_api_json(rq, 200, &b, index);
}


enum MHD_Result
rd_api_get_instance(rd_req_t *rq)
{
    mesh_buf_t       b;
    uint64_t         index;
    rd_registry_t   *reg = rq->api->reg;
    rd_instance_t   *in;

    mesh_buf_init(&b, 512);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    in = rd_registry_find(reg, rq->svc, rq->id);
    if (in) {
        rd_instance_to_json(&b, in, RD_JSON_FULL);
    }

    pthread_rwlock_unlock(&reg->lock);

    if (in == NULL) {
        mesh_buf_free(&b);
        return rd_api_error(rq, 404, "unknown instance", "id");
    }

    b.len--;
    mesh_buf_adds(&b, ",\"index\":");
    mesh_buf_add_u64(&b, index);
    mesh_buf_adds(&b, "}\n");

    return rd_api_json(rq, 200, &b, index);
}


/*
 * What a snapshot request asks for: ?services=a,b (a subscription),
 * ?delta=1 with ?index=N and ?registry=ID (the client applies deltas).
 * 0, or -1 with *field and err set.
 */
int
rd_api_snapshot_ask(rd_req_t *rq, rd_snapshot_ask_t *ask,
    rd_subscription_t *sub, const char **field, char *err)
{
    char        *end;
    const char  *v;

    memset(ask, 0, sizeof(rd_snapshot_ask_t));

    v = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND,
                                    "services");
    if (v) {
        if (rd_subscription_parse(sub, v, err) != 0) {
            *field = "services";
            return -1;
        }

        ask->sub = sub;
    }

    v = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "delta");
    if (v) {
        if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0) {
            ask->delta = 1;

        } else if (strcmp(v, "0") != 0 && strcmp(v, "false") != 0) {
            snprintf(err, RD_ERR_LEN, "delta must be 1 or 0");
            *field = "delta";
            goto fail;
        }
    }

    v = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND,
                                    "registry");
    if (v) {
        errno = 0;
        ask->registry = strtoull(v, &end, 16);

        if (*v == '\0' || *end != '\0' || errno || strlen(v) > 16) {
            snprintf(err, RD_ERR_LEN, "registry must be the registry id "
                     "of an earlier answer (16 hex digits)");
            *field = "registry";
            goto fail;
        }
    }

    v = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "index");
    if (v) {
        errno = 0;
        ask->since = strtoull(v, &end, 10);

        if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno) {
            snprintf(err, RD_ERR_LEN, "index must be a non-negative integer");
            *field = "index";
            goto fail;
        }

        ask->known = 1;
    }

    return 0;

fail:

    if (ask->sub) {
        rd_subscription_free(sub);
        ask->sub = NULL;
    }

    return -1;
}


/*
 * GET /v1/export: the whole registry at one index, as registryctl import
 * sends it again (to this registry, another one, another store): every
 * instance as registered (its health is not kept: a registration starts
 * passing) and every policy's YAML as applied.
 */
enum MHD_Result
rd_api_export(rd_req_t *rq)
{
    size_t           i, n;
    uint64_t         index;
    mesh_buf_t       b;
    rd_policy_t     *p;
    rd_registry_t   *reg = rq->api->reg;
    rd_instance_t  **all;

    mesh_buf_init(&b, 4096);

    pthread_rwlock_rdlock(&reg->lock);

    index = reg->index;
    all = rd_registry_sorted(reg, &n);

    mesh_buf_printf(&b, "{\"format\":\"ngx-mesh-export/1\","
                    "\"registry\":\"%016llx\",\"index\":",
                    (unsigned long long) rd_registry_id(reg));
    mesh_buf_add_u64(&b, index);
    mesh_buf_adds(&b, ",\"instances\":[");

    for (i = 0; i < n; i++) {
        if (i) {
            mesh_buf_addc(&b, ',');
        }

        mesh_buf_adds(&b, "\n");
        rd_instance_to_json(&b, all[i], RD_JSON_FULL);
    }

    mesh_buf_adds(&b, "],\"policies\":[");

    for (i = 0; i < reg->npolicies; i++) {
        p = reg->policies[i];

        if (i) {
            mesh_buf_addc(&b, ',');
        }

        mesh_buf_adds(&b, "\n{\"name\":");
        mesh_buf_add_json_str(&b, p->name);
        mesh_buf_adds(&b, ",\"yaml\":");
        mesh_buf_add_json_str(&b, p->yaml);
        mesh_buf_addc(&b, '}');
    }

    pthread_rwlock_unlock(&reg->lock);
    free(all);

    mesh_buf_adds(&b, "]}\n");

    return rd_api_json(rq, 200, &b, index);
}
