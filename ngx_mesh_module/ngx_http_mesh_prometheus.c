
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * The status in Prometheus' text format: one family of series after the
 * other, each written as records (a member's or a service's lines) by the
 * status location's bounded writer (ngx_http_mesh_status.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"
#include "ngx_http_mesh_status.h"


static u_char *ngx_http_mesh_prom_head(ngx_http_mesh_status_t *st, u_char *p,
    u_char *end);
static u_char *ngx_http_mesh_prom_help(ngx_http_mesh_status_t *st, u_char *p,
    u_char *end);
static u_char *ngx_http_mesh_prom_member(ngx_http_mesh_status_t *st,
    u_char *p, u_char *end);
static u_char *ngx_http_mesh_prom_service(ngx_http_mesh_status_t *st,
    u_char *p, u_char *end);
static u_char *ngx_http_mesh_prom_header(u_char *p, u_char *end,
    const char *name, const char *type, const char *help);
static u_char *ngx_http_mesh_prom_label(u_char *p, u_char *end, u_char *s,
    size_t len);


/* in this order: ngx_http_mesh_prom_member() and _service() switch on it */
static const ngx_http_mesh_family_t  ngx_http_mesh_families[] = {
    { "requests_total", "counter",
      "Requests sent to a member (tries, retries included).", 1, 0 },
    { "responses_total", "counter",
      "Responses from a member by status class.", 1, 0 },
    { "failures_total", "counter",
      "Tries to a member that failed (connect error, timeout, next).", 1, 0 },
    { "ejections_total", "counter",
      "Times a member was ejected by outlier detection.", 1, 0 },
    { "active_requests", "gauge", "Requests in flight to a member.", 1, 0 },
    { "member_weight", "gauge", "A member's registered weight.", 1, 0 },
    { "member_state", "gauge",
      "A member's state: healthy, unhealthy (registry) or ejected.", 1, 0 },
    { "consecutive_failures", "gauge",
      "A member's current run of failed tries.", 1, 0 },
    { "service_requests_total", "counter",
      "Requests sent to a service's members.", 0, 0 },
    { "service_responses_total", "counter",
      "Responses from a service's members by status class.", 0, 0 },
    { "retries_total", "counter", "Retries to another member.", 0, 0 },
    { "service_ejections_total", "counter",
      "Ejections of a service's members.", 0, 0 },
    { "instances", "gauge", "A service's members by state.", 0, 0 },
    { "upstream_latency_seconds", "histogram",
      "Time to the end of a member's response.", 0, 0 },
    { "service_active_requests", "gauge",
      "Requests in flight to a service.", 0, 0 },
    { "overflow_total", "counter",
      "Requests answered 503 over a connectionPool cap.", 0, 0 },
    { "retry_overflow_total", "counter",
      "Retries not made: maxRetries or the retry budget.", 0, 0 },
    /* a stream upstream's service (TCP): series of their own */
    { "tcp_connections_total", "counter",
      "Connections made to a member (tries, next ones included).", 1, 1 },
    { "tcp_connect_failures_total", "counter",
      "Connections to a member that could not be made.", 1, 1 },
    { "tcp_bytes_sent_total", "counter",
      "Bytes sent to a member, counted when a session ends.", 1, 1 },
    { "tcp_bytes_received_total", "counter",
      "Bytes received from a member, counted when a session ends.", 1, 1 },
    { "tcp_active_connections", "gauge", "Connections open to a member.",
      1, 1 },
    { "tcp_member_state", "gauge",
      "A member's state: healthy, unhealthy (registry) or ejected.", 1, 1 },
    { "tcp_ejections_total", "counter",
      "Times a member was ejected by outlier detection.", 1, 1 },
    { "tcp_session_duration_seconds", "histogram",
      "Length of a service's sessions, from connect to close.", 0, 1 },
    { "tcp_instances", "gauge", "A service's members by state.", 0, 1 },
    { NULL, NULL, NULL, 0, 0 }
};


ngx_int_t
ngx_http_mesh_prometheus(ngx_http_mesh_status_t *st)
{
    ngx_uint_t                     f, i, k, states[3];
    ngx_http_mesh_target_t        *t;
    const ngx_http_mesh_family_t  *fm;

    if (ngx_http_mesh_write(st, ngx_http_mesh_prom_head) != NGX_OK) {
        return NGX_ERROR;
    }

    for (f = 0; ngx_http_mesh_families[f].name; f++) {
        fm = &ngx_http_mesh_families[f];
        st->family = f;

        if (ngx_http_mesh_write(st, ngx_http_mesh_prom_help) != NGX_OK) {
            return NGX_ERROR;
        }

        for (i = 0; i < st->mmcf->upstreams.nelts; i++) {

            if (!ngx_http_mesh_service(st, i)
                || ngx_http_mesh_tcp(st) != fm->tcp)
            {
                continue;
            }

            t = st->target;

            if (fm->member) {
                if (!ngx_http_mesh_members(st)) {
                    continue;
                }

                for (k = 0; t && k < t->number; k++) {
                    st->k = k;
                    st->state = ngx_http_mesh_state(&t->peer[k], st->now);
                    ngx_http_mesh_instance_sum(st);

                    if (ngx_http_mesh_write(st, ngx_http_mesh_prom_member)
                        != NGX_OK)
                    {
                        return NGX_ERROR;
                    }
                }

                continue;
            }

            ngx_memzero(states, sizeof(states));

            for (k = 0; t && k < t->number; k++) {
                states[ngx_http_mesh_state(&t->peer[k], st->now)]++;
            }

            ngx_http_mesh_service_sum(st, states);

            if (ngx_http_mesh_write(st, ngx_http_mesh_prom_service)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* the registry's series */
static u_char *
ngx_http_mesh_prom_head(ngx_http_mesh_status_t *st, u_char *p, u_char *end)
{
    p = ngx_http_mesh_prom_header(p, end, "registry_index", "gauge",
                                  "The registry index this nginx routes "
                                  "on.");
    p = ngx_slprintf(p, end, "nginx_mesh_registry_index %uL\n", st->index);
    p = ngx_http_mesh_prom_header(p, end, "registry_stale", "gauge",
                                  "1 when the last registry poll failed "
                                  "or none succeeded yet.");
    p = ngx_slprintf(p, end, "nginx_mesh_registry_stale %d\n",
                     st->reg_state != NGX_HTTP_MESH_REG_SYNCED);
    p = ngx_http_mesh_prom_header(p, end, "registry_last_sync_seconds",
                                  "gauge",
                                  "Unix time of the last successful "
                                  "registry poll.");
    p = ngx_slprintf(p, end, "nginx_mesh_registry_last_sync_seconds %.3f\n",
                     (double) st->last_sync / 1000);

    if (st->url == NULL) {
        return p;
    }

    p = ngx_http_mesh_prom_header(p, end, "registry_info", "gauge",
                                  "The registry polled now (one of "
                                  "mesh_registry's URLs): 1.");
    p = ngx_slprintf(p, end, "nginx_mesh_registry_info{url=\"");
    p = ngx_http_mesh_prom_label(p, end, st->url->data, st->url->len);

    return ngx_slprintf(p, end, "\"} 1\n");
}


static u_char *
ngx_http_mesh_prom_help(ngx_http_mesh_status_t *st, u_char *p, u_char *end)
{
    const ngx_http_mesh_family_t  *fm;

    fm = &ngx_http_mesh_families[st->family];

    return ngx_http_mesh_prom_header(p, end, fm->name, fm->type, fm->help);
}


/* the family's series of instance k of the target */
static u_char *
ngx_http_mesh_prom_member(ngx_http_mesh_status_t *st, u_char *p,
    u_char *end)
{
    ngx_uint_t                  c;
    ngx_str_t                  *svc;
    ngx_http_mesh_peer_t       *peer;
    ngx_http_mesh_sum_t        *one;
    ngx_http_mesh_srv_conf_t  **ups;

    ups = st->mmcf->upstreams.elts;
    svc = &ups[st->svc]->service;
    peer = &st->target->peer[st->k];
    one = &st->sum;

    switch (st->family) {

    case 0:
        return ngx_slprintf(p, end, "nginx_mesh_requests_total{service="
                            "\"%V\",member=\"%V\"} %uL\n", svc, &peer->id,
                            one->requests);

    case 1:
        for (c = 0; c < 5; c++) {
            p = ngx_slprintf(p, end, "nginx_mesh_responses_total{service="
                             "\"%V\",member=\"%V\",code=\"%uixx\"} %uL\n",
                             svc, &peer->id, c + 1, one->responses[c]);
        }

        return p;

    case 2:
        return ngx_slprintf(p, end, "nginx_mesh_failures_total{service="
                            "\"%V\",member=\"%V\"} %uL\n", svc, &peer->id,
                            one->failures);

    case 3:
        return ngx_slprintf(p, end, "nginx_mesh_ejections_total{service="
                            "\"%V\",member=\"%V\"} %uL\n", svc, &peer->id,
                            one->ejections);

    case 4:
        return ngx_slprintf(p, end, "nginx_mesh_active_requests{service="
                            "\"%V\",member=\"%V\"} %uL\n", svc, &peer->id,
                            one->active);

    case 5:
        return ngx_slprintf(p, end, "nginx_mesh_member_weight{service="
                            "\"%V\",member=\"%V\",server=\"%V\"} %d\n",
                            svc, &peer->id, &peer->name,
                            st->target->mp[st->k].weight);

    case 6:
        return ngx_slprintf(p, end, "nginx_mesh_member_state{service="
                            "\"%V\",member=\"%V\",state=\"%s\"} 1\n",
                            svc, &peer->id,
                            ngx_http_mesh_states[st->state]);

    case 7:
        return ngx_slprintf(p, end, "nginx_mesh_consecutive_failures{"
                            "service=\"%V\",member=\"%V\"} %uD\n",
                            svc, &peer->id,
                            ngx_max(ngx_max(peer->stat->consecutive_5xx,
                                        peer->stat->consecutive_gateway),
                                    peer->stat->consecutive_local));

    case 17:
        return ngx_slprintf(p, end, "nginx_mesh_tcp_connections_total{"
                            "service=\"%V\",member=\"%V\"} %uL\n", svc,
                            &peer->id, one->requests);

    case 18:
        return ngx_slprintf(p, end, "nginx_mesh_tcp_connect_failures_total{"
                            "service=\"%V\",member=\"%V\"} %uL\n", svc,
                            &peer->id, one->failures);

    case 19:
        return ngx_slprintf(p, end, "nginx_mesh_tcp_bytes_sent_total{"
                            "service=\"%V\",member=\"%V\"} %uL\n", svc,
                            &peer->id, one->bytes_sent);

    case 20:
        return ngx_slprintf(p, end, "nginx_mesh_tcp_bytes_received_total{"
                            "service=\"%V\",member=\"%V\"} %uL\n", svc,
                            &peer->id, one->bytes_received);

    case 21:
        return ngx_slprintf(p, end, "nginx_mesh_tcp_active_connections{"
                            "service=\"%V\",member=\"%V\"} %uL\n", svc,
                            &peer->id, one->active);

    case 22:
        return ngx_slprintf(p, end, "nginx_mesh_tcp_member_state{service="
                            "\"%V\",member=\"%V\",state=\"%s\"} 1\n",
                            svc, &peer->id,
                            ngx_http_mesh_states[st->state]);

    case 23:
        return ngx_slprintf(p, end, "nginx_mesh_tcp_ejections_total{"
                            "service=\"%V\",member=\"%V\"} %uL\n", svc,
                            &peer->id, one->ejections);
    }

    return p;
}


/* the family's series of the service */
static u_char *
ngx_http_mesh_prom_service(ngx_http_mesh_status_t *st, u_char *p,
    u_char *end)
{
    ngx_uint_t                  c;
    uint64_t                    cum;
    ngx_str_t                  *svc;
    ngx_http_mesh_sum_t        *sum;
    ngx_http_mesh_srv_conf_t  **ups;

    ups = st->mmcf->upstreams.elts;
    svc = &ups[st->svc]->service;
    sum = &st->sum;

    switch (st->family) {

    case 8:
        return ngx_slprintf(p, end, "nginx_mesh_service_requests_total{"
                            "service=\"%V\"} %uL\n", svc, sum->requests);

    case 9:
        for (c = 0; c < 5; c++) {
            p = ngx_slprintf(p, end, "nginx_mesh_service_responses_total{"
                             "service=\"%V\",code=\"%uixx\"} %uL\n",
                             svc, c + 1, sum->responses[c]);
        }

        return p;

    case 10:
        return ngx_slprintf(p, end, "nginx_mesh_retries_total{service="
                            "\"%V\"} %uL\n", svc,
                            (st->target && st->target->service)
                            ? st->target->service->retries : 0);

    case 11:
        return ngx_slprintf(p, end, "nginx_mesh_service_ejections_total{"
                            "service=\"%V\"} %uL\n", svc, sum->ejections);

    case 12:
        for (c = 0; c < 3; c++) {
            p = ngx_slprintf(p, end, "nginx_mesh_instances{service=\"%V\","
                             "state=\"%s\"} %ui\n", svc,
                             ngx_http_mesh_states[c], sum->states[c]);
        }

        return p;

    case 13:
        cum = 0;

        for (c = 0; c < NGX_HTTP_MESH_LATENCY_BUCKETS - 1; c++) {
            cum += sum->latency[c];
            p = ngx_slprintf(p, end, "nginx_mesh_upstream_latency_seconds_"
                             "bucket{service=\"%V\",le=\"%.3f\"} %uL\n",
                             svc, (double) ngx_http_mesh_bounds[c] / 1000,
                             cum);
        }

        cum += sum->latency[c];

        return ngx_slprintf(p, end, "nginx_mesh_upstream_latency_seconds_"
                            "bucket{service=\"%V\",le=\"+Inf\"} %uL\n"
                            "nginx_mesh_upstream_latency_seconds_sum"
                            "{service=\"%V\"} %.3f\n"
                            "nginx_mesh_upstream_latency_seconds_count"
                            "{service=\"%V\"} %uL\n",
                            svc, cum, svc, (double) sum->latency_sum / 1000,
                            svc, cum);

    case 14:
        return ngx_slprintf(p, end, "nginx_mesh_service_active_requests{"
                            "service=\"%V\"} %uL\n", svc, sum->active);

    case 15:
        return ngx_slprintf(p, end, "nginx_mesh_overflow_total{service="
                            "\"%V\"} %uL\n", svc,
                            (st->target && st->target->service)
                            ? st->target->service->overflow : 0);

    case 16:
        return ngx_slprintf(p, end, "nginx_mesh_retry_overflow_total{"
                            "service=\"%V\"} %uL\n", svc,
                            (st->target && st->target->service)
                            ? st->target->service->retry_overflow : 0);

    case 24:
        cum = 0;

        for (c = 0; c < NGX_HTTP_MESH_SESSION_BUCKETS - 1; c++) {
            cum += sum->session[c];
            p = ngx_slprintf(p, end, "nginx_mesh_tcp_session_duration_"
                             "seconds_bucket{service=\"%V\",le=\"%.3f\"} "
                             "%uL\n", svc,
                             (double) ngx_http_mesh_session_bounds[c] / 1000,
                             cum);
        }

        cum += sum->session[c];

        return ngx_slprintf(p, end, "nginx_mesh_tcp_session_duration_seconds_"
                            "bucket{service=\"%V\",le=\"+Inf\"} %uL\n"
                            "nginx_mesh_tcp_session_duration_seconds_sum"
                            "{service=\"%V\"} %.3f\n"
                            "nginx_mesh_tcp_session_duration_seconds_count"
                            "{service=\"%V\"} %uL\n",
                            svc, cum, svc, (double) sum->session_sum / 1000,
                            svc, cum);

    case 25:
        for (c = 0; c < 3; c++) {
            p = ngx_slprintf(p, end, "nginx_mesh_tcp_instances{service="
                             "\"%V\",state=\"%s\"} %ui\n", svc,
                             ngx_http_mesh_states[c], sum->states[c]);
        }

        return p;
    }

    return p;
}


static u_char *
ngx_http_mesh_prom_header(u_char *p, u_char *end, const char *name,
    const char *type, const char *help)
{
    return ngx_slprintf(p, end, "# HELP nginx_mesh_%s %s\n"
                                "# TYPE nginx_mesh_%s %s\n",
                        name, help, name, type);
}


/* a Prometheus label value: backslash, quote and newline escaped; end if
 * it does not fit */
static u_char *
ngx_http_mesh_prom_label(u_char *p, u_char *end, u_char *s, size_t len)
{
    size_t  i;

    if ((size_t) (end - p) < 2 * len) {
        return end;
    }

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
