/*
 * rd_events: a ring of the last N events and their JSON and SSE forms.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mesh_alloc.h"
#include "rd_events.h"
#include "rd_log.h"

static const char *const  rd_event_names[RD_EV_COUNT] = {
    "registered", "updated", "deregistered", "passing", "critical",
    "policy_applied", "policy_deleted"
};

/* recorded by type since start, read by the metrics: atomic */
static uint64_t  rd_events_by_type[RD_EV_COUNT];


rd_events_t *
rd_events_create(size_t keep, uint64_t start)
{
    rd_events_t  *ev;

    ev = mesh_xcalloc(1, sizeof(rd_events_t));
    ev->cap = keep ? keep : 1;
    ev->ring = mesh_xcalloc(ev->cap, sizeof(rd_event_t));

    ev->gone = start;
    ev->last = start;
    pthread_mutex_init(&ev->lock, NULL);

    return ev;
}


void
rd_events_free(rd_events_t *ev)
{
    if (ev == NULL) {
        return;
    }

    pthread_mutex_destroy(&ev->lock);
    free(ev->ring);
    free(ev);
}


uint64_t
rd_events_recorded(int type)
{
    return (type >= 0 && type < RD_EV_COUNT)
           ? __atomic_load_n(&rd_events_by_type[type], __ATOMIC_RELAXED) : 0;
}


const char *
rd_event_type_name(int type)
{
    return (type >= 0 && type < RD_EV_COUNT) ? rd_event_names[type]
                                              : "unknown";
}


void
rd_events_append(rd_events_t *ev, const rd_event_t *e)
{
    rd_event_t  *slot;

    if (e->type >= 0 && e->type < RD_EV_COUNT) {
        __atomic_add_fetch(&rd_events_by_type[e->type], 1, __ATOMIC_RELAXED);
    }

    pthread_mutex_lock(&ev->lock);

    if (ev->n == ev->cap) {
        /* drop the oldest */
        ev->gone = ev->ring[ev->head].index;
        ev->head = (ev->head + 1) % ev->cap;
        ev->n--;
    }

    slot = &ev->ring[(ev->head + ev->n) % ev->cap];
    *slot = *e;

    if (slot->time == 0) {
        slot->time = rd_wall_ms();
    }

    ev->n++;
    ev->last = e->index;

    pthread_mutex_unlock(&ev->lock);
}


uint64_t
rd_events_last(rd_events_t *ev)
{
    uint64_t  last;

    pthread_mutex_lock(&ev->lock);
    last = ev->last;
    pthread_mutex_unlock(&ev->lock);

    return last;
}


void
rd_event_to_json(mesh_buf_t *b, const rd_event_t *e)
{
    char       ts[40];
    time_t     sec;
    struct tm  tm;

    sec = (time_t) (e->time / 1000);
    gmtime_r(&sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int) (e->time % 1000));

    mesh_buf_adds(b, "{\"index\":");
    mesh_buf_add_u64(b, e->index);
    mesh_buf_adds(b, ",\"time\":\"");
    mesh_buf_adds(b, ts);
    mesh_buf_adds(b, "\",\"type\":\"");
    mesh_buf_adds(b, rd_event_type_name(e->type));
    mesh_buf_addc(b, '"');

    if (e->type == RD_EV_POLICY_APPLIED || e->type == RD_EV_POLICY_DELETED) {
        mesh_buf_adds(b, ",\"policy\":");
        mesh_buf_add_json_str(b, e->id);

    } else {
        mesh_buf_adds(b, ",\"service\":");
        mesh_buf_add_json_str(b, e->service);
        mesh_buf_adds(b, ",\"id\":");
        mesh_buf_add_json_str(b, e->id);
    }

    if (e->reason) {
        mesh_buf_adds(b, ",\"reason\":");
        mesh_buf_add_json_str(b, e->reason);
    }

    mesh_buf_addc(b, '}');
}


/* the position of the first event with an index above after */
static size_t
rd_events_find(rd_events_t *ev, uint64_t after)
{
    size_t  lo = 0, hi = ev->n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (ev->ring[(ev->head + mid) % ev->cap].index <= after) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return lo;
}


int
rd_events_since(rd_events_t *ev, uint64_t after, uint64_t upto,
    rd_events_each_pt cb, void *data)
{
    size_t             i;
    const rd_event_t  *e;

    pthread_mutex_lock(&ev->lock);

    if (after < ev->gone) {
        pthread_mutex_unlock(&ev->lock);
        return -1;
    }

    for (i = rd_events_find(ev, after); i < ev->n; i++) {
        e = &ev->ring[(ev->head + i) % ev->cap];

        if (e->index > upto) {
            break;
        }

        cb(data, e);
    }

    pthread_mutex_unlock(&ev->lock);

    return 0;
}


size_t
rd_events_render(rd_events_t *ev, uint64_t after, size_t max, int format,
    mesh_buf_t *b, uint64_t *upto, int *truncated)
{
    size_t             i, count;
    const rd_event_t  *e;

    pthread_mutex_lock(&ev->lock);

    if (truncated) {
        *truncated = (after < ev->gone);
    }

    *upto = ev->last;
    count = 0;

    for (i = rd_events_find(ev, after); i < ev->n; i++) {
        if (max && count == max) {
            break;
        }

        e = &ev->ring[(ev->head + i) % ev->cap];

        if (format == RD_EVENTS_SSE) {
            mesh_buf_adds(b, "id: ");
            mesh_buf_add_u64(b, e->index);
            mesh_buf_adds(b, "\nevent: ");
            mesh_buf_adds(b, rd_event_type_name(e->type));
            mesh_buf_adds(b, "\ndata: ");
            rd_event_to_json(b, e);
            mesh_buf_adds(b, "\n\n");

        } else {
            if (count) {
                mesh_buf_addc(b, ',');
            }
            rd_event_to_json(b, e);
        }

        *upto = e->index;
        count++;
    }

    pthread_mutex_unlock(&ev->lock);

    return count;
}


/* the reasons an event can give: static strings, as the writer's are */
static const char  *rd_event_reasons[] = {
    "api", "ttl", "heartbeat", "check", "deregister_after", NULL
};


void
rd_event_to_note(mesh_buf_t *b, const rd_event_t *e)
{
    mesh_buf_adds(b, "{\"i\":");
    mesh_buf_add_u64(b, e->index);
    mesh_buf_printf(b, ",\"t\":%lld,\"y\":%d,\"s\":", (long long) e->time,
                    e->type);
    mesh_buf_add_json_str(b, e->service);
    mesh_buf_adds(b, ",\"d\":");
    mesh_buf_add_json_str(b, e->id);

    if (e->reason) {
        mesh_buf_adds(b, ",\"r\":");
        mesh_buf_add_json_str(b, e->reason);
    }

    mesh_buf_addc(b, '}');
}


int
rd_event_from_note(json_t *o, rd_event_t *e)
{
    size_t       k;
    json_t      *i, *t, *y, *sv, *d, *r;
    const char  *reason;

    i = json_object_get(o, "i");
    t = json_object_get(o, "t");
    y = json_object_get(o, "y");
    sv = json_object_get(o, "s");
    d = json_object_get(o, "d");
    r = json_object_get(o, "r");

    if (!json_is_integer(i) || !json_is_integer(t) || !json_is_integer(y)
        || !json_is_string(sv) || !json_is_string(d)
        || json_integer_value(y) < 0 || json_integer_value(y) >= RD_EV_COUNT)
    {
        return -1;
    }

    e->index = (uint64_t) json_integer_value(i);
    e->time = (int64_t) json_integer_value(t);
    e->type = (int) json_integer_value(y);
    snprintf(e->service, sizeof(e->service), "%s", json_string_value(sv));
    snprintf(e->id, sizeof(e->id), "%s", json_string_value(d));
    e->reason = NULL;

    reason = json_is_string(r) ? json_string_value(r) : NULL;

    for (k = 0; reason && rd_event_reasons[k]; k++) {
        if (strcmp(reason, rd_event_reasons[k]) == 0) {
            e->reason = rd_event_reasons[k];
        }
    }

    return 0;
}


void
rd_events_restart(rd_events_t *ev, uint64_t index)
{
    pthread_mutex_lock(&ev->lock);

    ev->head = 0;
    ev->n = 0;
    ev->gone = index;
    ev->last = index;

    pthread_mutex_unlock(&ev->lock);
}
