/*
 * rd_route: the API's routes, as the router (rd_api) tells them apart and
 * the metrics (rd_metrics) label the requests they answer.
 */

#ifndef RD_ROUTE_H
#define RD_ROUTE_H

typedef enum {
    RD_ROUTE_HEALTHZ = 0,
    RD_ROUTE_METRICS,
    RD_ROUTE_SERVICES,
    RD_ROUTE_SERVICE,
    RD_ROUTE_INSTANCE,
    RD_ROUTE_HEARTBEAT,
    RD_ROUTE_SNAPSHOT,
    RD_ROUTE_POLICIES,
    RD_ROUTE_OTHER,
    RD_ROUTE_EVENTS,
    RD_ROUTE_PROXIES,
    RD_ROUTE_EXPORT,
    RD_ROUTE_OBJECTS,
    RD_ROUTE_COUNT
} rd_route_e;

#endif
