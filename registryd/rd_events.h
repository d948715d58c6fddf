/*
 * rd_events: the last N changes of the registry, as events.
 *
 * The writer thread appends one event per committed change, after the
 * commit succeeded and before the long-polls are woken; readers (the API)
 * render the events newer than an index as JSON or as Server-Sent Events.
 * An event's index is the registry index its change was committed at, so
 * indexes rise with every event and match the snapshot's.
 */

#ifndef RD_EVENTS_H
#define RD_EVENTS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "mesh_buf.h"
#include "rd_util.h"

#define RD_EVENTS_KEEP  10000

typedef enum {
    RD_EV_REGISTERED = 0,
    RD_EV_UPDATED,
    RD_EV_DEREGISTERED,
    RD_EV_PASSING,
    RD_EV_CRITICAL,
    RD_EV_POLICY_APPLIED,
    RD_EV_POLICY_DELETED,
    RD_EV_COUNT
} rd_event_type_e;

typedef struct {
    uint64_t     index;
    int64_t      time;                    /* wall clock, ms since 1970 */
    int          type;                    /* rd_event_type_e */
    const char  *reason;                  /* a static string or NULL */
    char         service[RD_NAME_MAX + 1];   /* "": a policy event */
    char         id[RD_NAME_MAX + 1];        /* instance id or policy */
} rd_event_t;

enum {
    RD_EVENTS_JSON = 0,     /* objects separated by commas */
    RD_EVENTS_SSE           /* "id: N\nevent: TYPE\ndata: JSON\n\n" */
};

typedef struct rd_events_s {
    pthread_mutex_t   lock;
    rd_event_t       *ring;
    size_t            cap;
    size_t            head;             /* slot of the oldest event */
    size_t            n;                /* events kept */
    uint64_t          gone;             /* changes up to this index are
                                           not kept (before start or
                                           dropped from the ring) */
    uint64_t          last;             /* newest index appended, or the
                                           start index */
} rd_events_t;

/* keep: events kept (>= 1); start: the registry index at start, whose
 * changes happened before this ring existed */
rd_events_t *rd_events_create(size_t keep, uint64_t start);
void rd_events_free(rd_events_t *ev);

/* e->index must be above every index appended before; e->time 0: now */
void rd_events_append(rd_events_t *ev, const rd_event_t *e);

/* the newest index appended (or the start index) */
uint64_t rd_events_last(rd_events_t *ev);

/*
 * Render up to max (0: no limit) events with an index above after into b.
 * Returns how many; *upto is the index of the last one rendered, or, when
 * none is, the newest index known; *truncated (may be NULL) is set to 1
 * when changes after "after" are no longer kept, else 0.
 */
size_t rd_events_render(rd_events_t *ev, uint64_t after, size_t max,
    int format, mesh_buf_t *b, uint64_t *upto, int *truncated);

/*
 * Call cb for every event with an index above after and at most upto, in
 * index order. Returns -1 (and calls nothing) when changes after "after"
 * are no longer kept, else 0. cb runs under the ring's lock: it must not
 * append.
 */
typedef void (*rd_events_each_pt)(void *data, const rd_event_t *e);

int rd_events_since(rd_events_t *ev, uint64_t after, uint64_t upto,
    rd_events_each_pt cb, void *data);

const char *rd_event_type_name(int type);

/* events recorded of a type since start, in every registry (metrics) */
uint64_t rd_events_recorded(int type);
/* one event as a JSON object */
void rd_event_to_json(mesh_buf_t *b, const rd_event_t *e);

/*
 * An event as a shared store keeps it for the other replicas, in the
 * note of its commit: {"i":index,"t":ms,"y":type,"s":"svc","d":"id",
 * "r":"reason"}; and back (-1: not an event)
 */
void rd_event_to_note(mesh_buf_t *b, const rd_event_t *e);
int rd_event_from_note(json_t *o, rd_event_t *e);

/* the changes up to index are not kept any more (a replica that read
 * the whole registry again): the ring starts over after index */
void rd_events_restart(rd_events_t *ev, uint64_t index);

#endif
