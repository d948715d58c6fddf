
/*
 * Copyright (C) ngx_mesh authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"
#include "ngx_http_mesh_status.h"


#define NGX_HTTP_MESH_STATUS_JSON        0
#define NGX_HTTP_MESH_STATUS_PROMETHEUS  1
#define NGX_HTTP_MESH_STATUS_HTML        2

/*
 * The answer is a chain of buffers of this size, taken from the request's
 * pool as they fill, so that a request holds about the size of its answer
 * whatever the number of instances.  A record too large for one (very long
 * names) gets a buffer of its own, twice as large until it fits, up to
 * NGX_HTTP_MESH_STATUS_GROW times.
 */
#define NGX_HTTP_MESH_STATUS_BUFFER      16384
#define NGX_HTTP_MESH_STATUS_GROW        10




static ngx_int_t ngx_http_mesh_status_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_mesh_same_service(ngx_http_mesh_srv_conf_t *a,
    ngx_http_mesh_srv_conf_t *b);
static ngx_uint_t ngx_http_mesh_first_upstream(ngx_http_mesh_main_conf_t *mmcf,
    ngx_uint_t i);
static void ngx_http_mesh_add(ngx_http_mesh_sum_t *sum,
    ngx_http_mesh_stat_t *st, uint64_t now_slot);

static ngx_int_t ngx_http_mesh_json(ngx_http_mesh_status_t *st);
static u_char *ngx_http_mesh_json_head(ngx_http_mesh_status_t *st, u_char *p,
    u_char *end);
static u_char *ngx_http_mesh_json_service(ngx_http_mesh_status_t *st,
    u_char *p, u_char *end);
static u_char *ngx_http_mesh_json_instance(ngx_http_mesh_status_t *st,
    u_char *p, u_char *end);
static u_char *ngx_http_mesh_json_totals(ngx_http_mesh_status_t *st,
    u_char *p, u_char *end);
static u_char *ngx_http_mesh_json_tail(ngx_http_mesh_status_t *st, u_char *p,
    u_char *end);
static u_char *ngx_http_mesh_json_counters(u_char *p, u_char *end,
    ngx_http_mesh_sum_t *sum, ngx_uint_t tcp);
static u_char *ngx_http_mesh_json_str(u_char *p, u_char *end, u_char *s,
    size_t len);



const ngx_msec_t  ngx_http_mesh_bounds[] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

/* TCP session lengths: up to 0.1 s, 1 s, 10 s, 1 min, 5 min, 30 min, 1 h,
 * 1 day, more */
const ngx_msec_t  ngx_http_mesh_session_bounds[] = {
    100, 1000, 10000, 60000, 300000, 1800000, 3600000, 86400000
};

const char  *ngx_http_mesh_states[] = {
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


static ngx_int_t
ngx_http_mesh_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_str_t                   format;
    ngx_uint_t                  fmt, current, vary;
    ngx_http_mesh_zone_t       *zone;
    ngx_http_mesh_status_t     *st;
    ngx_http_mesh_registry_t   *regs;
    ngx_http_mesh_main_conf_t  *mmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    /*
     * ?format= names the answer; without it the Accept header chooses
     * between the JSON and the page, and the answer says it varies so
     */

    fmt = NGX_HTTP_MESH_STATUS_JSON;
    vary = 0;

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {
        if (format.len == 10
            && ngx_strncmp(format.data, "prometheus", 10) == 0)
        {
            fmt = NGX_HTTP_MESH_STATUS_PROMETHEUS;

        } else if (format.len == 4
                   && ngx_strncmp(format.data, "html", 4) == 0)
        {
            fmt = NGX_HTTP_MESH_STATUS_HTML;

        } else if (!(format.len == 4
                     && ngx_strncmp(format.data, "json", 4) == 0))
        {
            return NGX_HTTP_BAD_REQUEST;
        }

    } else {
        vary = 1;

        if (ngx_http_mesh_dashboard_wanted(r)) {
            fmt = NGX_HTTP_MESH_STATUS_HTML;
        }
    }

    if (fmt == NGX_HTTP_MESH_STATUS_HTML) {
        return ngx_http_mesh_dashboard(r, vary);
    }

    st = ngx_pcalloc(r->pool, sizeof(ngx_http_mesh_status_t));
    if (st == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     st->out = NULL;
     *     st->buf = NULL;
     *     st->size = 0;
     *     st->index = 0;
     *     st->last_sync = 0;
     *     st->poller = 0;
     *     st->reg_state = NGX_HTTP_MESH_REG_NONE;
     *     st->url = NULL;
     *     st->err[0] = '\0';
     */

    mmcf = ngx_http_get_module_main_conf(r, ngx_http_mesh_module);
    zone = &mmcf->zone;

    st->request = r;
    st->mmcf = mmcf;
    st->last = &st->out;

    current = 0;

    if (zone->sh) {
        (void) ngx_http_mesh_sync(mmcf, r->connection->log);

        ngx_shmtx_lock(&zone->shpool->mutex);
        st->index = zone->sh->index;
        st->reg_state = zone->sh->reg_state;
        st->last_sync = zone->sh->last_sync;
        st->poller = zone->sh->poll_owner;
        current = zone->sh->reg_current;
        ngx_cpystrn(st->err, zone->sh->last_error, sizeof(st->err));
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    if (st->reg_state > NGX_HTTP_MESH_REG_ERROR) {
        st->reg_state = NGX_HTTP_MESH_REG_NONE;
    }

    /* the registry polled: one of mesh_registry's URLs (replicas) */

    if (mmcf->registry) {
        regs = mmcf->registries.elts;
        st->url = &regs[current < mmcf->registries.nelts ? current : 0].uri;
    }

    st->now = ngx_current_msec;
    st->slot = st->now / NGX_HTTP_MESH_WINDOW;

    if (fmt == NGX_HTTP_MESH_STATUS_PROMETHEUS) {
        rc = ngx_http_mesh_prometheus(st);

    } else {
        rc = ngx_http_mesh_json(st);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    st->buf->last_buf = (r == r->main) ? 1 : 0;
    st->buf->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = st->size;

    if (fmt == NGX_HTTP_MESH_STATUS_PROMETHEUS) {
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4; charset=utf-8");

    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (vary && ngx_http_mesh_vary_accept(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, st->out);
}


/*
 * Writes a record after the answer's last one: in the buffer being filled
 * if it fits there, else whole in a new buffer.  A record cut at the end of
 * a buffer is left out of it (its last does not move): every write of a
 * record is bounded by its buffer's end, and what is in the chain is only
 * whole records.
 */
ngx_int_t
ngx_http_mesh_write(ngx_http_mesh_status_t *st,
    ngx_http_mesh_record_pt record)
{
    u_char       *p;
    size_t        size;
    ngx_buf_t    *b;
    ngx_uint_t    n;
    ngx_chain_t  *cl;

    b = st->buf;

    if (b) {
        p = record(st, b->last, b->end);

        if (p < b->end) {
            st->size += p - b->last;
            b->last = p;
            return NGX_OK;
        }
    }

    size = NGX_HTTP_MESH_STATUS_BUFFER;

    for (n = 0; n <= NGX_HTTP_MESH_STATUS_GROW; n++) {

        b = ngx_create_temp_buf(st->request->pool, size);
        if (b == NULL) {
            return NGX_ERROR;
        }

        p = record(st, b->last, b->end);

        if (p < b->end) {
            goto done;
        }

        (void) ngx_pfree(st->request->pool, b->start);
        size *= 2;
    }

    ngx_log_error(NGX_LOG_ALERT, st->request->connection->log, 0,
                  "mesh status: a record does not fit in %uz bytes",
                  size / 2);

    return NGX_ERROR;

done:

    cl = ngx_alloc_chain_link(st->request->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    *st->last = cl;
    st->last = &cl->next;
    st->buf = b;

    st->size += p - b->last;
    b->last = p;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_mesh_same_service(ngx_http_mesh_srv_conf_t *a,
    ngx_http_mesh_srv_conf_t *b)
{
    /* a service's http and stream upstreams count apart */
    return a->stats.len == b->stats.len
           && ngx_strncmp(a->stats.data, b->stats.data, a->stats.len) == 0;
}


/* a service is reported once, at the first upstream naming it */
static ngx_uint_t
ngx_http_mesh_first_upstream(ngx_http_mesh_main_conf_t *mmcf, ngx_uint_t i)
{
    ngx_uint_t                  j;
    ngx_http_mesh_srv_conf_t  **ups;

    ups = mmcf->upstreams.elts;

    for (j = 0; j < i; j++) {
        if (ngx_http_mesh_same_service(ups[j], ups[i])) {
            return 0;
        }
    }

    return 1;
}


/* the service being written is a stream upstream's */
ngx_uint_t
ngx_http_mesh_tcp(ngx_http_mesh_status_t *st)
{
    ngx_http_mesh_srv_conf_t  **ups;

    ups = st->mmcf->upstreams.elts;

    return ups[st->svc]->stream;
}


/* the next records are about the service of upstream i, if it is first */
ngx_uint_t
ngx_http_mesh_service(ngx_http_mesh_status_t *st, ngx_uint_t i)
{
    ngx_http_mesh_srv_conf_t  **ups;

    if (!ngx_http_mesh_first_upstream(st->mmcf, i)) {
        return 0;
    }

    ups = st->mmcf->upstreams.elts;

    st->svc = i;
    st->target = ups[i]->view ? &ups[i]->view->targets[0] : NULL;

    return 1;
}


/* mesh_status_instances of the service */
ngx_uint_t
ngx_http_mesh_members(ngx_http_mesh_status_t *st)
{
    ngx_http_mesh_srv_conf_t  **ups;

    ups = st->mmcf->upstreams.elts;

    return (ups[st->svc]->instances == NGX_CONF_UNSET)
           ? (ngx_uint_t) st->mmcf->instances
           : (ngx_uint_t) ups[st->svc]->instances;
}


ngx_uint_t
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
    uint64_t    id, req, lat;

    sum->requests += st->requests;
    sum->failures += st->failures;
    sum->latency_sum += st->latency_sum;
    sum->bytes_sent += st->bytes_sent;
    sum->bytes_received += st->bytes_received;
    sum->session_sum += st->session_sum;

    for (i = 0; i < NGX_HTTP_MESH_SESSION_BUCKETS; i++) {
        sum->session[i] += st->session[i];
    }

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

        req = ngx_http_mesh_win_value(st->win_requests[i], id);
        lat = ngx_http_mesh_win_value(st->win_latency[i], id);

        if (req == 0 && lat == 0) {
            continue;
        }

        if (k == 1) {
            sum->win10_requests += req;
            sum->win10_latency += lat;
        }

        sum->win60_requests += req;
        sum->win60_latency += lat;
    }
}


/* the counters of instance k of the target, for its record */
void
ngx_http_mesh_instance_sum(ngx_http_mesh_status_t *st)
{
    ngx_memzero(&st->sum, sizeof(ngx_http_mesh_sum_t));
    ngx_http_mesh_add(&st->sum, st->target->peer[st->k].stat, st->slot);
}


/*
 * A service's totals come from its own counters, so that they never go
 * down when an instance leaves; its members by state from the instances.
 */
void
ngx_http_mesh_service_sum(ngx_http_mesh_status_t *st, ngx_uint_t *states)
{
    ngx_memzero(&st->sum, sizeof(ngx_http_mesh_sum_t));
    ngx_memcpy(st->sum.states, states, sizeof(st->sum.states));

    if (st->target && st->target->service) {
        ngx_http_mesh_add(&st->sum, st->target->service, st->slot);
    }
}


static ngx_int_t
ngx_http_mesh_json(ngx_http_mesh_status_t *st)
{
    ngx_uint_t               i, k, members, states[3];
    ngx_http_mesh_target_t  *t;

    if (ngx_http_mesh_write(st, ngx_http_mesh_json_head) != NGX_OK) {
        return NGX_ERROR;
    }

    st->first = 1;

    for (i = 0; i < st->mmcf->upstreams.nelts; i++) {

        if (!ngx_http_mesh_service(st, i)) {
            continue;
        }

        if (ngx_http_mesh_write(st, ngx_http_mesh_json_service) != NGX_OK) {
            return NGX_ERROR;
        }

        st->first = 0;

        t = st->target;
        members = ngx_http_mesh_members(st);
        ngx_memzero(states, sizeof(states));

        for (k = 0; t && k < t->number; k++) {
            st->k = k;
            st->state = ngx_http_mesh_state(&t->peer[k], st->now);
            states[st->state]++;

            if (!members) {
                continue;
            }

            ngx_http_mesh_instance_sum(st);

            if (ngx_http_mesh_write(st, ngx_http_mesh_json_instance)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        ngx_http_mesh_service_sum(st, states);

        if (ngx_http_mesh_write(st, ngx_http_mesh_json_totals) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_http_mesh_write(st, ngx_http_mesh_json_tail);
}


static u_char *
ngx_http_mesh_json_head(ngx_http_mesh_status_t *st, u_char *p, u_char *end)
{
    static const char  *states[] = { "none", "synced", "stale", "error" };

    p = ngx_slprintf(p, end, "{\"index\":%uL,\"registry\":{\"url\":",
                     st->index);

    if (st->url) {
        p = ngx_http_mesh_json_str(p, end, st->url->data, st->url->len);

    } else {
        p = ngx_slprintf(p, end, "null");
    }

    p = ngx_slprintf(p, end, ",\"state\":\"%s\",\"stale\":%s,"
                     "\"last_sync_ms\":%L,\"poller_pid\":%P,"
                     "\"last_error\":", states[st->reg_state],
                     st->reg_state == NGX_HTTP_MESH_REG_SYNCED
                     ? "false" : "true",
                     st->last_sync, st->poller);

    if (st->err[0]) {
        p = ngx_http_mesh_json_str(p, end, st->err, ngx_strlen(st->err));

    } else {
        p = ngx_slprintf(p, end, "null");
    }

    return ngx_slprintf(p, end, "},\"services\":[");
}


/* a service's name, upstreams and balancer, up to its instances */
static u_char *
ngx_http_mesh_json_service(ngx_http_mesh_status_t *st, u_char *p,
    u_char *end)
{
    ngx_uint_t                  j;
    ngx_http_mesh_srv_conf_t  **ups, *us;

    ups = st->mmcf->upstreams.elts;
    us = ups[st->svc];

    p = ngx_slprintf(p, end, "%s{\"name\":", st->first ? "" : ",");
    p = ngx_http_mesh_json_str(p, end, us->service.data, us->service.len);
    p = ngx_slprintf(p, end, ",\"protocol\":\"%s\",\"upstreams\":[",
                     us->stream ? "tcp" : "http");

    for (j = st->svc; j < st->mmcf->upstreams.nelts; j++) {
        if (!ngx_http_mesh_same_service(ups[j], us)) {
            continue;
        }

        if (j != st->svc) {
            p = ngx_slprintf(p, end, ",");
        }

        p = ngx_http_mesh_json_str(p, end, ups[j]->name.data,
                                   ups[j]->name.len);
    }

    return ngx_slprintf(p, end, "],\"balancer\":\"%s\",\"instances\":[",
                        ngx_http_mesh_balancer_name(st->target
                                                    ? st->target->balancer
                                                    : us->balancer));
}


static u_char *
ngx_http_mesh_json_instance(ngx_http_mesh_status_t *st, u_char *p,
    u_char *end)
{
    ngx_http_mesh_peer_t  *peer;

    peer = &st->target->peer[st->k];

    p = ngx_slprintf(p, end, "%s{\"id\":", st->k ? "," : "");
    p = ngx_http_mesh_json_str(p, end, peer->id.data, peer->id.len);
    p = ngx_slprintf(p, end, ",\"server\":");
    p = ngx_http_mesh_json_str(p, end, peer->name.data, peer->name.len);
    p = ngx_slprintf(p, end, ",\"weight\":%d,\"state\":\"%s\","
                     "\"active\":%uD,\"consecutive_failures\":%uD,",
                     st->target->mp[st->k].weight,
                     ngx_http_mesh_states[st->state],
                     peer->stat->active,
                     ngx_max(ngx_max(peer->stat->consecutive_5xx,
                                     peer->stat->consecutive_gateway),
                             peer->stat->consecutive_local));
    p = ngx_http_mesh_json_counters(p, end, &st->sum,
                                    ngx_http_mesh_tcp(st));

    return ngx_slprintf(p, end, "}");
}


/* the end of a service's instances, and its totals */
static u_char *
ngx_http_mesh_json_totals(ngx_http_mesh_status_t *st, u_char *p,
    u_char *end)
{
    ngx_http_mesh_stat_t  *svc;

    svc = st->target ? st->target->service : NULL;

    p = ngx_slprintf(p, end, "],\"instances_by_state\":{\"healthy\":%ui,"
                     "\"unhealthy\":%ui,\"ejected\":%ui},\"active\":%uL,"
                     "\"retries\":%uL,\"overflow\":%uL,"
                     "\"retry_overflow\":%uL,",
                     st->sum.states[0], st->sum.states[1], st->sum.states[2],
                     st->sum.active, svc ? svc->retries : 0,
                     svc ? svc->overflow : 0, svc ? svc->retry_overflow : 0);
    p = ngx_http_mesh_json_counters(p, end, &st->sum,
                                    ngx_http_mesh_tcp(st));

    return ngx_slprintf(p, end, "}");
}


static u_char *
ngx_http_mesh_json_tail(ngx_http_mesh_status_t *st, u_char *p, u_char *end)
{
    return ngx_slprintf(p, end, "]}\n");
}


static u_char *
ngx_http_mesh_json_counters(u_char *p, u_char *end, ngx_http_mesh_sum_t *sum,
    ngx_uint_t tcp)
{
    ngx_uint_t  i;
    uint64_t    cum;

    /* a TCP service's: its bytes and session lengths; its "requests" are
     * connections, "latency_ms" their connect times */
    if (tcp) {
        p = ngx_slprintf(p, end, "\"bytes_sent\":%uL,\"bytes_received\":%uL,"
                         "\"session_ms\":{\"buckets\":[",
                         sum->bytes_sent, sum->bytes_received);

        cum = 0;

        for (i = 0; i < NGX_HTTP_MESH_SESSION_BUCKETS - 1; i++) {
            cum += sum->session[i];
            p = ngx_slprintf(p, end, "%s{\"le\":%M,\"count\":%uL}",
                             i ? "," : "", ngx_http_mesh_session_bounds[i],
                             cum);
        }

        cum += sum->session[i];

        p = ngx_slprintf(p, end, ",{\"le\":\"+Inf\",\"count\":%uL}],"
                         "\"sum\":%uL,\"count\":%uL},", cum,
                         sum->session_sum, cum);
    }

    p = ngx_slprintf(p, end, "\"requests\":%uL,\"responses\":{\"1xx\":%uL,"
                     "\"2xx\":%uL,\"3xx\":%uL,\"4xx\":%uL,\"5xx\":%uL},"
                     "\"failures\":%uL,\"ejections\":%uL,"
                     "\"latency_ms\":{\"buckets\":[",
                     sum->requests, sum->responses[0], sum->responses[1],
                     sum->responses[2], sum->responses[3],
                     sum->responses[4], sum->failures, sum->ejections);

    cum = 0;

    for (i = 0; i < NGX_HTTP_MESH_LATENCY_BUCKETS - 1; i++) {
        cum += sum->latency[i];
        p = ngx_slprintf(p, end, "%s{\"le\":%M,\"count\":%uL}",
                         i ? "," : "", ngx_http_mesh_bounds[i], cum);
    }

    cum += sum->latency[i];

    return ngx_slprintf(p, end, ",{\"le\":\"+Inf\",\"count\":%uL}],"
                        "\"sum\":%uL,\"count\":%uL},"
                        "\"rate_10s\":%.2f,\"rate_60s\":%.2f,"
                        "\"mean_latency_ms_10s\":%.1f,"
                        "\"mean_latency_ms_60s\":%.1f",
                        cum, sum->latency_sum, cum,
                        (double) sum->win10_requests / 10,
                        (double) sum->win60_requests / 60,
                        sum->win10_requests
                        ? (double) sum->win10_latency / sum->win10_requests
                        : 0.0,
                        sum->win60_requests
                        ? (double) sum->win60_latency / sum->win60_requests
                        : 0.0);
}


/* a JSON string, quoted and escaped; end if it does not fit */
static u_char *
ngx_http_mesh_json_str(u_char *p, u_char *end, u_char *s, size_t len)
{
    if ((size_t) (end - p) < len + ngx_escape_json(NULL, s, len) + 2) {
        return end;
    }

    *p++ = '"';
    p = (u_char *) ngx_escape_json(p, s, len);
    *p++ = '"';

    return p;
}
