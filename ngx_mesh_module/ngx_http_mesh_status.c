
/*
 * Copyright (C) ngx_mesh authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


#define NGX_HTTP_MESH_STATUS_JSON        0
#define NGX_HTTP_MESH_STATUS_PROMETHEUS  1


/* counters of one instance, or summed over a service */
typedef struct {
    uint64_t                       requests;
    uint64_t                       failures;
    uint64_t                       responses[5];
    uint64_t                       latency[NGX_HTTP_MESH_LATENCY_BUCKETS];
    uint64_t                       latency_sum;
    uint64_t                       ejections;
    uint64_t                       active;
    uint64_t                       win10_requests;
    uint64_t                       win10_latency;
    uint64_t                       win60_requests;
    uint64_t                       win60_latency;
    ngx_uint_t                     states[3];   /* healthy, unhealthy,
                                                   ejected */
} ngx_http_mesh_sum_t;


static ngx_int_t ngx_http_mesh_status_handler(ngx_http_request_t *r);
static void ngx_http_mesh_add(ngx_http_mesh_sum_t *sum,
    ngx_http_mesh_stat_t *st, uint64_t now_slot);
static u_char *ngx_http_mesh_json_counters(u_char *p,
    ngx_http_mesh_sum_t *sum);
static u_char *ngx_http_mesh_json_str(u_char *p, u_char *s, size_t len);


static const ngx_msec_t  ngx_http_mesh_bounds[] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

static const char  *ngx_http_mesh_states[] = {
    "healthy", "unhealthy", "ejected"
};


char *
ngx_http_mesh_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_mesh_status_handler;

    return NGX_CONF_OK;
}


static u_char *
ngx_http_mesh_json_str(u_char *p, u_char *s, size_t len)
{
    *p++ = '"';
    p = (u_char *) ngx_escape_json(p, s, len);
    *p++ = '"';

    return p;
}


/* a Prometheus label value: backslash, quote and newline escaped (the
 * room: 2 * len) */
static u_char *
ngx_http_mesh_prom_label(u_char *p, u_char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (s[i] == '\\' || s[i] == '"') {
            *p++ = '\\';
            *p++ = s[i];

        } else if (s[i] == '\n') {
            *p++ = '\\';
            *p++ = 'n';

        } else {
            *p++ = s[i];
        }
    }

    return p;
}


static size_t
ngx_http_mesh_json_len(u_char *s, size_t len)
{
    return len + ngx_escape_json(NULL, s, len) + 2;
}


static ngx_uint_t
ngx_http_mesh_state(ngx_http_mesh_peer_t *peer, ngx_msec_t now)
{
    if (ngx_http_mesh_ejected(peer->stat, now)) {
        return 2;
    }

    return peer->healthy ? 0 : 1;
}


static void
ngx_http_mesh_add(ngx_http_mesh_sum_t *sum, ngx_http_mesh_stat_t *st,
    uint64_t now_slot)
{
    ngx_uint_t  i, k;
    uint64_t    id;

    sum->requests += st->requests;
    sum->failures += st->failures;
    sum->latency_sum += st->latency_sum;
    sum->ejections += st->ejections;
    sum->active += st->active;

    for (i = 0; i < 5; i++) {
        sum->responses[i] += st->responses[i];
    }

    for (i = 0; i < NGX_HTTP_MESH_LATENCY_BUCKETS; i++) {
        sum->latency[i] += st->latency[i];
    }

    /* the last complete 10 s slot, and the six before now */
    for (k = 1; k <= 6; k++) {
        id = now_slot - k;
        i = id % NGX_HTTP_MESH_WINDOW_SLOTS;

        if (st->win_slot[i] != id) {
            continue;
        }

        if (k == 1) {
            sum->win10_requests += st->win_requests[i];
            sum->win10_latency += st->win_latency[i];
        }

        sum->win60_requests += st->win_requests[i];
        sum->win60_latency += st->win_latency[i];
    }
}


/* a service's totals come from its own counters, states from its members */
static void
ngx_http_mesh_service_totals(ngx_http_mesh_sum_t *sum,
    ngx_http_mesh_target_t *t, uint64_t slot)
{
    ngx_uint_t  states[3];

    ngx_memcpy(states, sum->states, sizeof(states));
    ngx_memzero(sum, sizeof(ngx_http_mesh_sum_t));
    ngx_memcpy(sum->states, states, sizeof(states));

    if (t && t->service) {
        ngx_http_mesh_add(sum, t->service, slot);
    }
}


static u_char *
ngx_http_mesh_json_counters(u_char *p, ngx_http_mesh_sum_t *sum)
{
    ngx_uint_t  i;
    uint64_t    cum;

    p = ngx_sprintf(p, "\"requests\":%uL,\"responses\":{\"1xx\":%uL,"
                    "\"2xx\":%uL,\"3xx\":%uL,\"4xx\":%uL,\"5xx\":%uL},"
                    "\"failures\":%uL,\"ejections\":%uL,"
                    "\"latency_ms\":{\"buckets\":[",
                    sum->requests, sum->responses[0], sum->responses[1],
                    sum->responses[2], sum->responses[3], sum->responses[4],
                    sum->failures, sum->ejections);

    cum = 0;

    for (i = 0; i < NGX_HTTP_MESH_LATENCY_BUCKETS - 1; i++) {
        cum += sum->latency[i];
        p = ngx_sprintf(p, "%s{\"le\":%M,\"count\":%uL}", i ? "," : "",
                        ngx_http_mesh_bounds[i], cum);
    }

    cum += sum->latency[i];

    p = ngx_sprintf(p, ",{\"le\":\"+Inf\",\"count\":%uL}],\"sum\":%uL,"
                    "\"count\":%uL},"
                    "\"rate_10s\":%.2f,\"rate_60s\":%.2f,"
                    "\"mean_latency_ms_10s\":%.1f,"
                    "\"mean_latency_ms_60s\":%.1f",
                    cum, sum->latency_sum, cum,
                    (double) sum->win10_requests / 10,
                    (double) sum->win60_requests / 60,
                    sum->win10_requests
                    ? (double) sum->win10_latency / sum->win10_requests : 0.0,
                    sum->win60_requests
                    ? (double) sum->win60_latency / sum->win60_requests
                    : 0.0);

    return p;
}


static u_char *
ngx_http_mesh_prom_header(u_char *p, const char *name, const char *type,
    const char *help)
{
    return ngx_sprintf(p, "# HELP nginx_mesh_%s %s\n"
                          "# TYPE nginx_mesh_%s %s\n",
                       name, help, name, type);
}


/* the Prometheus series of one family for every service (and member) */
static u_char *
ngx_http_mesh_prom_family(u_char *p, ngx_http_request_t *r,
    ngx_uint_t family, ngx_http_mesh_main_conf_t *mmcf, ngx_msec_t now,
    uint64_t slot)
{
    ngx_uint_t                   i, j, k, c, members;
    uint64_t                     cum;
    ngx_http_mesh_sum_t          sum, one;
    ngx_http_mesh_peer_t        *peer;
    ngx_http_mesh_target_t      *t;
    ngx_http_mesh_srv_conf_t   **ups;

    ups = mmcf->upstreams.elts;

    for (i = 0; i < mmcf->upstreams.nelts; i++) {

        for (j = 0; j < i; j++) {
            if (ups[j]->service.len == ups[i]->service.len
                && ngx_strncmp(ups[j]->service.data, ups[i]->service.data,
                               ups[i]->service.len) == 0)
            {
                break;
            }
        }

        if (j < i) {
            continue;           /* one entry per service */
        }

        t = ups[i]->view ? &ups[i]->view->targets[0] : NULL;

        members = (ups[i]->instances == NGX_CONF_UNSET)
                  ? (ngx_uint_t) mmcf->instances
                  : (ngx_uint_t) ups[i]->instances;

        ngx_memzero(&sum, sizeof(ngx_http_mesh_sum_t));

        for (k = 0; t && k < t->number; k++) {
            peer = &t->peer[k];
            ngx_http_mesh_add(&sum, peer->stat, slot);
            sum.states[ngx_http_mesh_state(peer, now)]++;

            if (!members) {
                continue;
            }

            ngx_memzero(&one, sizeof(ngx_http_mesh_sum_t));
            ngx_http_mesh_add(&one, peer->stat, slot);

            switch (family) {

            case 0:
                p = ngx_sprintf(p, "nginx_mesh_requests_total{service=\"%V\","
                                "member=\"%V\"} %uL\n", &ups[i]->service,
                                &peer->id, one.requests);
                break;

            case 1:
                for (c = 0; c < 5; c++) {
                    p = ngx_sprintf(p, "nginx_mesh_responses_total{service="
                                    "\"%V\",member=\"%V\",code=\"%uixx\"} "
                                    "%uL\n", &ups[i]->service, &peer->id,
                                    c + 1, one.responses[c]);
                }
                break;

            case 2:
                p = ngx_sprintf(p, "nginx_mesh_failures_total{service=\"%V\","
                                "member=\"%V\"} %uL\n", &ups[i]->service,
                                &peer->id, one.failures);
                break;

            case 3:
                p = ngx_sprintf(p, "nginx_mesh_ejections_total{service="
                                "\"%V\",member=\"%V\"} %uL\n",
                                &ups[i]->service, &peer->id, one.ejections);
                break;

            case 4:
                p = ngx_sprintf(p, "nginx_mesh_active_requests{service=\"%V\","
                                "member=\"%V\"} %uL\n", &ups[i]->service,
                                &peer->id, one.active);
                break;

            case 5:
                p = ngx_sprintf(p, "nginx_mesh_member_weight{service=\"%V\","
                                "member=\"%V\",server=\"%V\"} %d\n",
                                &ups[i]->service, &peer->id, &peer->name,
                                t->mp[k].weight);
                break;

            case 6:
                p = ngx_sprintf(p, "nginx_mesh_member_state{service=\"%V\","
                                "member=\"%V\",state=\"%s\"} 1\n",
                                &ups[i]->service, &peer->id,
                                ngx_http_mesh_states[
                                    ngx_http_mesh_state(peer, now)]);
                break;

            case 7:
                p = ngx_sprintf(p, "nginx_mesh_consecutive_failures{service="
                                "\"%V\",member=\"%V\"} %uD\n",
                                &ups[i]->service, &peer->id,
                                ngx_max(ngx_max(peer->stat->consecutive_5xx,
                                            peer->stat->consecutive_gateway),
                                        peer->stat->consecutive_local));
                break;
            }
        }

        ngx_http_mesh_service_totals(&sum, t, slot);

        switch (family) {

        case 8:
            p = ngx_sprintf(p, "nginx_mesh_service_requests_total{service="
                            "\"%V\"} %uL\n", &ups[i]->service, sum.requests);
            break;

        case 9:
            for (c = 0; c < 5; c++) {
                p = ngx_sprintf(p, "nginx_mesh_service_responses_total{"
                                "service=\"%V\",code=\"%uixx\"} %uL\n",
                                &ups[i]->service, c + 1, sum.responses[c]);
            }
            break;

        case 10:
            p = ngx_sprintf(p, "nginx_mesh_retries_total{service=\"%V\"} "
                            "%uL\n", &ups[i]->service,
                            (t && t->service) ? t->service->retries : 0);
            break;

        case 11:
            p = ngx_sprintf(p, "nginx_mesh_service_ejections_total{service="
                            "\"%V\"} %uL\n", &ups[i]->service,
                            sum.ejections);
            break;

        case 12:
            for (c = 0; c < 3; c++) {
                p = ngx_sprintf(p, "nginx_mesh_instances{service=\"%V\","
                                "state=\"%s\"} %ui\n", &ups[i]->service,
                                ngx_http_mesh_states[c], sum.states[c]);
            }
            break;

        case 13:
            cum = 0;

            for (c = 0; c < NGX_HTTP_MESH_LATENCY_BUCKETS - 1; c++) {
                cum += sum.latency[c];
                p = ngx_sprintf(p, "nginx_mesh_upstream_latency_seconds_bucket"
                                "{service=\"%V\",le=\"%.3f\"} %uL\n",
                                &ups[i]->service,
                                (double) ngx_http_mesh_bounds[c] / 1000, cum);
            }

            cum += sum.latency[c];

            p = ngx_sprintf(p, "nginx_mesh_upstream_latency_seconds_bucket"
                            "{service=\"%V\",le=\"+Inf\"} %uL\n"
                            "nginx_mesh_upstream_latency_seconds_sum"
                            "{service=\"%V\"} %.3f\n"
                            "nginx_mesh_upstream_latency_seconds_count"
                            "{service=\"%V\"} %uL\n",
                            &ups[i]->service, cum, &ups[i]->service,
                            (double) sum.latency_sum / 1000,
                            &ups[i]->service, cum);
            break;

        case 14:
            p = ngx_sprintf(p, "nginx_mesh_service_active_requests{service="
                            "\"%V\"} %uL\n", &ups[i]->service, sum.active);
            break;
        }
    }

    return p;
}


static const struct {
    const char  *name;
    const char  *type;
    const char  *help;
} ngx_http_mesh_families[] = {
    { "requests_total", "counter",
      "Requests sent to a member (tries, retries included)." },
    { "responses_total", "counter",
      "Responses from a member by status class." },
    { "failures_total", "counter",
      "Tries to a member that failed (connect error, timeout, next)." },
    { "ejections_total", "counter",
      "Times a member was ejected by outlier detection." },
    { "active_requests", "gauge", "Requests in flight to a member." },
    { "member_weight", "gauge", "A member's registered weight." },
    { "member_state", "gauge",
      "A member's state: healthy, unhealthy (registry) or ejected." },
    { "consecutive_failures", "gauge",
      "A member's current run of failed tries." },
    { "service_requests_total", "counter",
      "Requests sent to a service's members." },
    { "service_responses_total", "counter",
      "Responses from a service's members by status class." },
    { "retries_total", "counter", "Retries to another member." },
    { "service_ejections_total", "counter",
      "Ejections of a service's members." },
    { "instances", "gauge", "A service's members by state." },
    { "upstream_latency_seconds", "histogram",
      "Time to the end of a member's response." },
    { "service_active_requests", "gauge",
      "Requests in flight to a service." },
    { NULL, NULL, NULL }
};


static ngx_int_t
ngx_http_mesh_status_handler(ngx_http_request_t *r)
{
    u_char                      *p, err[256];
    size_t                       size;
    int64_t                      last_sync;
    uint64_t                     index, slot;
    ngx_int_t                    rc;
    ngx_str_t                    format;
    ngx_buf_t                   *b;
    ngx_msec_t                   now;
    ngx_pid_t                    poller;
    ngx_uint_t                   i, j, k, state, first, members, fmt, st;
    ngx_uint_t                   current;
    ngx_str_t                   *url;
    ngx_chain_t                  out;
    ngx_http_mesh_sum_t          sum, one;
    ngx_http_mesh_peer_t        *peer;
    ngx_http_mesh_zone_t        *zone;
    ngx_http_mesh_target_t      *t;
    ngx_http_mesh_srv_conf_t   **ups;
    ngx_http_mesh_registry_t    *regs;
    ngx_http_mesh_main_conf_t   *mmcf;

    static const char  *states[] = { "none", "synced", "stale", "error" };

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    fmt = NGX_HTTP_MESH_STATUS_JSON;

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {
        if (format.len == 10
            && ngx_strncmp(format.data, "prometheus", 10) == 0)
        {
            fmt = NGX_HTTP_MESH_STATUS_PROMETHEUS;

        } else if (!(format.len == 4
                     && ngx_strncmp(format.data, "json", 4) == 0))
        {
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mesh_module);
    zone = &mmcf->zone;

    index = 0;
    state = NGX_HTTP_MESH_REG_NONE;
    last_sync = 0;
    poller = 0;
    current = 0;
    err[0] = '\0';

    if (zone->sh) {
        (void) ngx_http_mesh_sync(mmcf, r->connection->log);

        ngx_shmtx_lock(&zone->shpool->mutex);
        index = zone->sh->index;
        state = zone->sh->reg_state;
        last_sync = zone->sh->last_sync;
        poller = zone->sh->poll_owner;
        current = zone->sh->reg_current;
        ngx_cpystrn(err, zone->sh->last_error, sizeof(err));
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    if (state > NGX_HTTP_MESH_REG_ERROR) {
        state = NGX_HTTP_MESH_REG_NONE;
    }

    now = ngx_current_msec;
    slot = now / NGX_HTTP_MESH_WINDOW;
    ups = mmcf->upstreams.elts;

    /* size: generous per service and per instance bounds */

    /* the registry polled: one of mesh_registry's URLs (replicas) */
    url = NULL;

    if (mmcf->registry) {
        regs = mmcf->registries.elts;
        url = &regs[current < mmcf->registries.nelts ? current : 0].uri;
    }

    size = 4096 + (url ? 2 * ngx_http_mesh_json_len(url->data, url->len) : 0)
           + ngx_http_mesh_json_len(err, ngx_strlen(err));

    for (i = 0; i < mmcf->upstreams.nelts; i++) {
        size += 4096 + 4 * ngx_http_mesh_json_len(ups[i]->service.data,
                                                  ups[i]->service.len)
                + ngx_http_mesh_json_len(ups[i]->upstream->host.data,
                                         ups[i]->upstream->host.len);

        t = ups[i]->view ? &ups[i]->view->targets[0] : NULL;

        for (k = 0; t && k < t->number; k++) {
            peer = &t->peer[k];
            size += 3072 + 16 * (ups[i]->service.len + peer->id.len)
                    + ngx_http_mesh_json_len(peer->id.data, peer->id.len)
                    + ngx_http_mesh_json_len(peer->name.data,
                                             peer->name.len);
        }
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;

    if (fmt == NGX_HTTP_MESH_STATUS_PROMETHEUS) {

        p = ngx_http_mesh_prom_header(p, "registry_index", "gauge",
                                      "The registry index this nginx routes "
                                      "on.");
        p = ngx_sprintf(p, "nginx_mesh_registry_index %uL\n", index);
        p = ngx_http_mesh_prom_header(p, "registry_stale", "gauge",
                                      "1 when the last registry poll failed "
                                      "or none succeeded yet.");
        p = ngx_sprintf(p, "nginx_mesh_registry_stale %d\n",
                        state != NGX_HTTP_MESH_REG_SYNCED);
        p = ngx_http_mesh_prom_header(p, "registry_last_sync_seconds",
                                      "gauge",
                                      "Unix time of the last successful "
                                      "registry poll.");
        p = ngx_sprintf(p, "nginx_mesh_registry_last_sync_seconds %.3f\n",
                        (double) last_sync / 1000);

        if (url) {
            p = ngx_http_mesh_prom_header(p, "registry_info", "gauge",
                                          "The registry polled now (one of "
                                          "mesh_registry's URLs): 1.");
            p = ngx_cpymem(p, "nginx_mesh_registry_info{url=\"",
                           sizeof("nginx_mesh_registry_info{url=\"") - 1);
            p = ngx_http_mesh_prom_label(p, url->data, url->len);
            p = ngx_cpymem(p, "\"} 1\n", sizeof("\"} 1\n") - 1);
        }

        for (i = 0; ngx_http_mesh_families[i].name; i++) {
            p = ngx_http_mesh_prom_header(p, ngx_http_mesh_families[i].name,
                                          ngx_http_mesh_families[i].type,
                                          ngx_http_mesh_families[i].help);
            p = ngx_http_mesh_prom_family(p, r, i, mmcf, now, slot);
        }

        goto send;
    }

    p = ngx_sprintf(p, "{\"index\":%uL,\"registry\":{\"url\":", index);

    if (url) {
        p = ngx_http_mesh_json_str(p, url->data, url->len);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_sprintf(p, ",\"state\":\"%s\",\"stale\":%s,\"last_sync_ms\":%L,"
                    "\"poller_pid\":%P,\"last_error\":", states[state],
                    state == NGX_HTTP_MESH_REG_SYNCED ? "false" : "true",
                    last_sync, poller);

    if (err[0]) {
        p = ngx_http_mesh_json_str(p, err, ngx_strlen(err));

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, "},\"services\":[", sizeof("},\"services\":[") - 1);

    first = 1;

    for (i = 0; i < mmcf->upstreams.nelts; i++) {

        /* one entry per service, at its first upstream */
        for (j = 0; j < i; j++) {
            if (ups[j]->service.len == ups[i]->service.len
                && ngx_strncmp(ups[j]->service.data, ups[i]->service.data,
                               ups[i]->service.len) == 0)
            {
                break;
            }
        }

        if (j < i) {
            continue;
        }

        if (!first) {
            *p++ = ',';
        }

        first = 0;

        t = ups[i]->view ? &ups[i]->view->targets[0] : NULL;

        members = (ups[i]->instances == NGX_CONF_UNSET)
                  ? (ngx_uint_t) mmcf->instances
                  : (ngx_uint_t) ups[i]->instances;

        p = ngx_cpymem(p, "{\"name\":", sizeof("{\"name\":") - 1);
        p = ngx_http_mesh_json_str(p, ups[i]->service.data,
                                   ups[i]->service.len);
        p = ngx_cpymem(p, ",\"upstreams\":[", sizeof(",\"upstreams\":[") - 1);

        for (j = i; j < mmcf->upstreams.nelts; j++) {
            if (ups[j]->service.len != ups[i]->service.len
                || ngx_strncmp(ups[j]->service.data, ups[i]->service.data,
                               ups[i]->service.len) != 0)
            {
                continue;
            }

            if (j != i) {
                *p++ = ',';
            }

            p = ngx_http_mesh_json_str(p, ups[j]->upstream->host.data,
                                       ups[j]->upstream->host.len);
        }

        p = ngx_sprintf(p, "],\"balancer\":\"%s\",\"instances\":[",
                        ngx_http_mesh_balancer_name(t ? t->balancer
                                                    : ups[i]->balancer));

        ngx_memzero(&sum, sizeof(ngx_http_mesh_sum_t));

        for (k = 0; t && k < t->number; k++) {
            peer = &t->peer[k];
            st = ngx_http_mesh_state(peer, now);

            ngx_http_mesh_add(&sum, peer->stat, slot);
            sum.states[st]++;

            if (!members) {
                continue;
            }

            ngx_memzero(&one, sizeof(ngx_http_mesh_sum_t));
            ngx_http_mesh_add(&one, peer->stat, slot);

            if (k) {
                *p++ = ',';
            }

            p = ngx_cpymem(p, "{\"id\":", sizeof("{\"id\":") - 1);
            p = ngx_http_mesh_json_str(p, peer->id.data, peer->id.len);
            p = ngx_cpymem(p, ",\"server\":", sizeof(",\"server\":") - 1);
            p = ngx_http_mesh_json_str(p, peer->name.data, peer->name.len);
            p = ngx_sprintf(p, ",\"weight\":%d,\"state\":\"%s\","
                            "\"active\":%uD,\"consecutive_failures\":%uD,",
                            t->mp[k].weight, ngx_http_mesh_states[st],
                            peer->stat->active,
                            ngx_max(ngx_max(peer->stat->consecutive_5xx,
                                            peer->stat->consecutive_gateway),
                                    peer->stat->consecutive_local));
            p = ngx_http_mesh_json_counters(p, &one);
            *p++ = '}';
        }

        ngx_http_mesh_service_totals(&sum, t, slot);

        p = ngx_sprintf(p, "],\"instances_by_state\":{\"healthy\":%ui,"
                        "\"unhealthy\":%ui,\"ejected\":%ui},\"active\":%uL,"
                        "\"retries\":%uL,",
                        sum.states[0], sum.states[1], sum.states[2],
                        sum.active,
                        (t && t->service) ? t->service->retries : 0);
        p = ngx_http_mesh_json_counters(p, &sum);
        *p++ = '}';
    }

    p = ngx_cpymem(p, "]}\n", 3);

send:

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    if (fmt == NGX_HTTP_MESH_STATUS_PROMETHEUS) {
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4; charset=utf-8");

    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
