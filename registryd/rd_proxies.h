/*
 * rd_proxies: the nginx that poll this registryd. Each snapshot request of
 * ngx_mesh says who sends it in a header,
 *
 *   X-Mesh-Proxy: name="web1:/etc/nginx/nginx.conf"; nginx=1.22.1;
 *                 module=0.2.0; index=42; zone=123456/33554432; stale=0
 *
 * and GET /v1/proxies lists them with the changes they have not applied
 * yet: what `istioctl proxy-status` shows for Envoy.
 */

#ifndef RD_PROXIES_H
#define RD_PROXIES_H

#include <pthread.h>
#include <stdint.h>

#include "mesh_buf.h"
#include "rd_registry.h"
#include "rd_util.h"

#define RD_PROXIES_MAX      10000       /* proxies remembered */
#define RD_PROXY_NAME_MAX   255
#define RD_PROXIES_FORGET   3600000     /* ms gone before forgotten */

typedef struct {
    char       name[RD_PROXY_NAME_MAX + 1];
    char       address[64];             /* of its last poll */
    char       nginx[32];
    char       module[32];
    char      *services;                /* its subscription, "a,b"; NULL:
                                           every service */
    uint64_t   index;                   /* it routes on */
    uint64_t   zone_used;
    uint64_t   zone_size;
    int        stale;                   /* its last poll failed, it says */
    int        waiting;                 /* polls of it waiting now */
    int64_t    first_seen;              /* wall ms */
    int64_t    last_seen;
} rd_proxy_t;

typedef struct {
    pthread_mutex_t   lock;
    rd_proxy_t      **v;                /* sorted by name */
    size_t            n;
    size_t            cap;
    int64_t           gone_after;       /* ms without a poll */
} rd_proxies_t;

rd_proxies_t *rd_proxies_create(int64_t gone_after);
void rd_proxies_free(rd_proxies_t *p);

/*
 * A poll came with header (the value of X-Mesh-Proxy) from address, for
 * services (NULL: all); waiting: it waits now. Fills name (for
 * rd_proxies_done) and returns 0, or -1 with err on a header that does
 * not parse.
 */
int rd_proxies_seen(rd_proxies_t *p, const char *header,
    const char *address, const char *services, int waiting, char *name,
    char *err);

/* a waiting poll of name was answered or ended */
void rd_proxies_done(rd_proxies_t *p, const char *name);

/* {"index": N, "proxies": [...]} */
void rd_proxies_render(rd_proxies_t *p, rd_registry_t *reg, mesh_buf_t *b);

#endif
