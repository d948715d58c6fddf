/*
 * rd_health: the prober thread (checks themselves: rd_check).
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "mesh_alloc.h"
#include "rd_health.h"
#include "rd_log.h"
#include "rd_metrics.h"

#define RD_HEALTH_TICK_MS        100    /* longest sleep: notices new
                                           instances that soon */
#define RD_HEALTH_REFRESH_MS     50     /* shortest time between copies of
                                           the instance list */

typedef struct rd_target_s  rd_target_t;

struct rd_target_s {
    char               service[RD_NAME_MAX + 1];
    char               id[RD_NAME_MAX + 1];
    char               address[64];
    int                port;
    uint64_t           put_index;       /* the registration it belongs to */
    char              *text;            /* the check's JSON */
    rd_check_t         check;
    rd_check_state_t   state;
    int                reg_critical;    /* the registry's view, at the last
                                           copy */

    int64_t            next;            /* monotonic ms of the next probe */
    int                busy;            /* a probe is in flight */
    int64_t            started_us;
    int64_t            deadline;        /* tcp: ms */
    CURL              *easy;            /* http probe */
    int                fd;              /* tcp probe, -1: none */
};

struct rd_health_s {
    rd_registry_t     *reg;
    CURLM             *multi;
    struct curl_slist *headers;         /* of every http probe */
    pthread_t          thread;
    int                running;
    int                stop;            /* atomic */
    int                dirty;           /* atomic: an op was decided */
    int                ops;             /* atomic: ops queued, undecided */

    rd_target_t      **targets;         /* sorted by service, id */
    size_t             ntargets;
    uint64_t           seen_index;
    int64_t            last_refresh;
    size_t             inflight;
    unsigned int       seed;

    struct curl_waitfd *wfds;
    rd_target_t      **wtargets;
    size_t             wcap;

    mesh_cidr_t        probe[64];       /* probe_networks; none: any */
    size_t             nprobe;
};


/* the prober */

/* probe_networks: an instance outside them is never probed (one stored
 * before the setting came is left as it is) */
static int
rd_health_may_probe(rd_health_t *h, const char *address)
{
    return h->nprobe == 0
           || mesh_cidr_match_any(h->probe, h->nprobe, NULL, address);
}


static int64_t
rd_health_now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static int
rd_target_cmp(const char *service, const char *id, const rd_target_t *t)
{
    int  c;

    c = strcmp(service, t->service);
    return c ? c : strcmp(id, t->id);
}


static void
rd_health_abort(rd_health_t *h, rd_target_t *t)
{
    if (t->easy) {
        curl_multi_remove_handle(h->multi, t->easy);
        curl_easy_cleanup(t->easy);
        t->easy = NULL;
    }

    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }

    if (t->busy) {
        t->busy = 0;
        h->inflight--;
    }
}


static void
rd_target_free(rd_health_t *h, rd_target_t *t)
{
    if (t == NULL) {
        return;
    }

    rd_health_abort(h, t);
    free(t->text);
    free(t);
}


static void
rd_health_op_done(rd_op_t *op)
{
    rd_health_t  *h = op->data;

    /* on the writer thread */
    __atomic_store_n(&h->dirty, 1, __ATOMIC_RELEASE);
    __atomic_sub_fetch(&h->ops, 1, __ATOMIC_ACQ_REL);
    rd_op_free(op);
}


static void
rd_health_submit(rd_health_t *h, rd_target_t *t)
{
    rd_op_t  *op;

    op = rd_op_create(RD_OP_HEALTH, t->service, t->id);
    op->health = t->state.critical ? RD_HEALTH_CRITICAL : RD_HEALTH_PASSING;
    op->check = 1;
    op->put_index = t->put_index;
    op->reason = "check";
    op->done = rd_health_op_done;
    op->data = h;

    __atomic_add_fetch(&h->ops, 1, __ATOMIC_ACQ_REL);
    rd_registry_submit(h->reg, op);
}


static void
rd_health_schedule_first(rd_health_t *h, rd_target_t *t, int64_t now)
{
    /* spread the first probes over one interval */
    t->next = now + (int64_t) (rand_r(&h->seed) % (t->check.interval + 1));
}


/*
 * Copy the instances with a check, under the read lock, merging them with
 * the targets already known (sorted both): a target whose instance was
 * registered again (another put_index) starts over.
 */
static void
rd_health_refresh(rd_health_t *h, int64_t now)
{
    int              c, reconcile;
    char             err[RD_ERR_LEN];
    size_t           i, j, n, nn, ngone, k;
    rd_target_t    **nv, **gone, *t;
    rd_instance_t  **all, *in;
    rd_registry_t   *reg = h->reg;

    /* no op in flight: the copy below shows every verdict sent */
    reconcile = (__atomic_load_n(&h->ops, __ATOMIC_ACQUIRE) == 0);
    __atomic_store_n(&h->dirty, 0, __ATOMIC_RELEASE);

    pthread_rwlock_rdlock(&reg->lock);

    h->seen_index = reg->index;
    all = rd_registry_sorted(reg, &n);

    nv = mesh_xmalloc((n + 1) * sizeof(rd_target_t *));
    gone = mesh_xmalloc((h->ntargets + 1) * sizeof(rd_target_t *));

    nn = 0;
    ngone = 0;
    j = 0;

    for (i = 0; i < n; i++) {
        in = all[i];

        if (in->check == NULL || !rd_health_may_probe(h, in->address)) {
            continue;
        }

        c = 1;
        while (j < h->ntargets
               && (c = rd_target_cmp(in->service, in->id, h->targets[j])) > 0)
        {
            gone[ngone++] = h->targets[j++];
        }

        if (j < h->ntargets && c == 0) {
            t = h->targets[j++];

            if (t->put_index == in->put_index) {
                t->reg_critical = in->check_critical;
                nv[nn++] = t;
                continue;
            }

            if (t->port == in->port && strcmp(t->address, in->address) == 0
                && strcmp(t->text, in->check) == 0)
            {
                /* registered again, the same: it starts over as the
                 * registry says, but keeps its schedule (an instance
                 * re-registered more often than its interval is still
                 * probed) */
                t->put_index = in->put_index;
                t->state.critical = in->check_critical;
                t->state.successes = 0;
                t->state.failures = 0;
                t->reg_critical = in->check_critical;
                nv[nn++] = t;
                continue;
            }

            gone[ngone++] = t;
        }

        t = mesh_xcalloc(1, sizeof(rd_target_t));
        t->text = mesh_xstrdup(in->check);

        memcpy(t->service, in->service, sizeof(t->service));
        memcpy(t->id, in->id, sizeof(t->id));
        memcpy(t->address, in->address, sizeof(t->address));
        t->port = in->port;
        t->put_index = in->put_index;
        t->state.critical = in->check_critical;
        t->reg_critical = in->check_critical;
        t->fd = -1;
        t->next = -1;               /* new: parsed below */
        nv[nn++] = t;
    }

    while (j < h->ntargets) {
        gone[ngone++] = h->targets[j++];
    }

    pthread_rwlock_unlock(&reg->lock);

    free(all);

    for (i = 0; i < ngone; i++) {
        rd_target_free(h, gone[i]);
    }

    free(gone);

    /* parse the new ones; verdicts the registry did not take: again */

    for (i = 0, k = 0; i < nn; i++) {
        t = nv[i];

        if (t->next == -1) {
            if (rd_check_parse(t->text, &t->check, err) != 0) {
                rd_warn("health: %s/%s: %s", t->service, t->id, err);
                rd_target_free(h, t);
                continue;
            }

            rd_health_schedule_first(h, t, now);

        } else if (reconcile && t->reg_critical != t->state.critical) {
            rd_health_submit(h, t);
        }

        nv[k++] = t;
    }

    free(h->targets);
    h->targets = nv;
    h->ntargets = k;
    h->last_refresh = now;
}


static void
rd_health_result(rd_health_t *h, rd_target_t *t, int ok, int64_t now,
    const char *why)
{
    int64_t  jitter;

    rd_metrics_probe(ok, rd_health_now_us() - t->started_us);

    rd_health_abort(h, t);

    if (rd_check_count(&t->state, &t->check, ok)) {
        rd_info("health: %s/%s turns %s (%s)", t->service, t->id,
                t->state.critical ? "critical" : "passing", why);
        rd_health_submit(h, t);

    } else if (!ok) {
        rd_debug("health: %s/%s probe failed (%s)", t->service, t->id, why);
    }

    /* the next probe one interval after this one started, up to 10%
     * sooner, so that probes spread out; never two at once */
    jitter = t->check.interval / 10;
    jitter = jitter ? (int64_t) (rand_r(&h->seed) % (jitter + 1)) : 0;
    t->next = t->started_us / 1000 + t->check.interval - jitter;

    if (t->next < now) {
        t->next = now;
    }
}


static size_t
rd_health_discard(char *ptr, size_t size, size_t nmemb, void *data)
{
    (void) ptr;
    (void) data;

    return size * nmemb;
}


static int
rd_health_start_http(rd_health_t *h, rd_target_t *t)
{
    char                url[RD_CHECK_PATH_MAX + 128];
    CURL               *e;

    if (strchr(t->address, ':')) {
        snprintf(url, sizeof(url), "http://[%s]:%d%s", t->address, t->port,
                 t->check.path);
    } else {
        snprintf(url, sizeof(url), "http://%s:%d%s", t->address, t->port,
                 t->check.path);
    }

    e = curl_easy_init();
    if (e == NULL) {
        return -1;
    }

    if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_PRIVATE, t) != CURLE_OK)
    {
        curl_easy_cleanup(e);
        return -1;
    }

    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) t->check.timeout);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) t->check.timeout);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "registryd-health");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, rd_health_discard);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");

    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return -1;
    }

    t->easy = e;
    return 0;
}


/* 0: connecting; 1: connected already; -1: failed */
static int
rd_health_start_tcp(rd_target_t *t, int64_t now)
{
    int               fd, rc;
    struct linger     lg;
    mesh_sockaddr_t   sa;

    if (mesh_addr_sockaddr(t->address, t->port, &sa) != 0) {
        return -1;
    }

    fd = socket(sa.u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd < 0) {
        return -1;
    }

    /* close with a reset: thousands of probes leave no TIME_WAIT */
    lg.l_onoff = 1;
    lg.l_linger = 0;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));

    t->fd = fd;
    t->deadline = now + t->check.timeout;

    rc = connect(fd, &sa.u.sa, sa.len);

    if (rc == 0) {
        return 1;
    }

    return (errno == EINPROGRESS) ? 0 : -1;
}


static void
rd_health_start_probes(rd_health_t *h, int64_t now, int64_t *wake)
{
    int           rc;
    size_t        i;
    rd_target_t  *t;

    for (i = 0; i < h->ntargets; i++) {
        t = h->targets[i];

        if (t->busy) {
            if (t->fd >= 0 && t->deadline < *wake) {
                *wake = t->deadline;
            }
            continue;
        }

        if (t->next > now) {
            if (t->next < *wake) {
                *wake = t->next;
            }
            continue;
        }

        if (h->inflight >= RD_HEALTH_MAX_PROBES) {
            continue;               /* when one ends */
        }

        t->busy = 1;
        h->inflight++;
        t->started_us = rd_health_now_us();

        if (t->check.kind == RD_CHECK_HTTP) {
            if (rd_health_start_http(h, t) != 0) {
                rd_health_result(h, t, 0, now, "cannot start the probe");
            }
            continue;
        }

        rc = rd_health_start_tcp(t, now);

        if (rc != 0) {
            rd_health_result(h, t, rc > 0, now, rc > 0 ? "connected"
                             : strerror(errno));
        } else if (t->deadline < *wake) {
            *wake = t->deadline;
        }
    }
}


static void
rd_health_http_done(rd_health_t *h, int64_t now)
{
    int           left;
    long          status;
    char          why[64];
    CURLMsg      *msg;
    rd_target_t  *t;

    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
        if (t == NULL) {
            continue;
        }

        if (msg->data.result != CURLE_OK) {
            rd_health_result(h, t, 0, now,
                             curl_easy_strerror(msg->data.result));
            continue;
        }

        status = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        snprintf(why, sizeof(why), "status %ld", status);

        rd_health_result(h, t, rd_check_status_ok(&t->check, status), now,
                         why);
    }
}


/* tcp probes past their deadline; and the fds to wait for */
static size_t
rd_health_tcp_fds(rd_health_t *h, int64_t now)
{
    size_t               i, n, cap;
    rd_target_t         *t;

    n = 0;

    for (i = 0; i < h->ntargets; i++) {
        t = h->targets[i];

        if (!t->busy || t->fd < 0) {
            continue;
        }

        if (now >= t->deadline) {
            rd_health_result(h, t, 0, now, "connect timed out");
            continue;
        }

        if (n == h->wcap) {
            cap = h->wcap ? h->wcap * 2 : 64;
            h->wfds = mesh_xrealloc(h->wfds,
                                    cap * sizeof(struct curl_waitfd));
            h->wtargets = mesh_xrealloc(h->wtargets,
                                        cap * sizeof(rd_target_t *));
            h->wcap = cap;
        }

        h->wfds[n].fd = t->fd;
        h->wfds[n].events = CURL_WAIT_POLLOUT;
        h->wfds[n].revents = 0;
        h->wtargets[n] = t;
        n++;
    }

    return n;
}


static void
rd_health_tcp_done(rd_health_t *h, size_t n, int64_t now)
{
    int           soerr;
    size_t        i;
    socklen_t     len;
    rd_target_t  *t;

    for (i = 0; i < n; i++) {
        if (h->wfds[i].revents == 0) {
            continue;
        }

        t = h->wtargets[i];

        soerr = 0;
        len = sizeof(soerr);
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
            soerr = errno;
        }

        rd_health_result(h, t, soerr == 0, now,
                         soerr == 0 ? "connected" : strerror(soerr));
    }
}


static void *
rd_health_loop(void *arg)
{
    int           running;
    size_t        nfds;
    int64_t       now, wake;
    uint64_t      index;
    rd_health_t  *h = arg;

    while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
        now = rd_now_ms();

        index = rd_registry_index(h->reg);
        if ((index != h->seen_index
             || __atomic_load_n(&h->dirty, __ATOMIC_ACQUIRE))
            && now - h->last_refresh >= RD_HEALTH_REFRESH_MS)
        {
            rd_health_refresh(h, now);
        }

        wake = now + RD_HEALTH_TICK_MS;

        /* on a shared store, the leader alone probes */
        if (rd_registry_leader(h->reg)) {
            rd_health_start_probes(h, now, &wake);
        }

        curl_multi_perform(h->multi, &running);
        rd_health_http_done(h, rd_now_ms());

        now = rd_now_ms();
        nfds = rd_health_tcp_fds(h, now);

        if (__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
            break;
        }

        curl_multi_poll(h->multi, h->wfds, (unsigned int) nfds,
                        wake > now ? (int) (wake - now) : 0, NULL);

        rd_health_tcp_done(h, nfds, rd_now_ms());
    }

    return NULL;
}


rd_health_t *
rd_health_create(rd_registry_t *reg, char *err)
{
    rd_health_t  *h;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, RD_ERR_LEN, "cannot initialize libcurl");
        return NULL;
    }

    h = mesh_xcalloc(1, sizeof(rd_health_t));

    h->reg = reg;
    h->seed = (unsigned int) rd_wall_ms() ^ (unsigned int) getpid();
    h->seen_index = (uint64_t) -1;
    h->last_refresh = -RD_HEALTH_REFRESH_MS;

    h->multi = curl_multi_init();
    if (h->multi == NULL) {
        snprintf(err, RD_ERR_LEN, "cannot create a libcurl multi handle");
        goto fail;
    }

    /* the server closes first: TIME_WAIT stays on its side */
    h->headers = curl_slist_append(NULL, "Connection: close");

    return h;

fail:

    free(h);

    curl_global_cleanup();
    return NULL;
}


int
rd_health_start(rd_health_t *h, char *err)
{
    if (pthread_create(&h->thread, NULL, rd_health_loop, h) != 0) {
        snprintf(err, RD_ERR_LEN, "cannot start the health check thread");
        return -1;
    }

    h->running = 1;
    return 0;
}


void
rd_health_stop(rd_health_t *h)
{
    size_t  i;

    if (h == NULL || !h->running) {
        return;
    }

    __atomic_store_n(&h->stop, 1, __ATOMIC_RELEASE);
    curl_multi_wakeup(h->multi);
    pthread_join(h->thread, NULL);
    h->running = 0;

    for (i = 0; i < h->ntargets; i++) {
        rd_target_free(h, h->targets[i]);
    }

    free(h->targets);
    h->targets = NULL;
    h->ntargets = 0;
}


void
rd_health_free(rd_health_t *h)
{
    size_t  i;

    if (h == NULL) {
        return;
    }

    rd_health_stop(h);

    for (i = 0; i < h->ntargets; i++) {
        rd_target_free(h, h->targets[i]);
    }

    free(h->targets);
    free(h->wfds);
    free(h->wtargets);
    curl_multi_cleanup(h->multi);
    curl_slist_free_all(h->headers);
    free(h);

    curl_global_cleanup();
}


void
rd_health_networks(rd_health_t *h, const mesh_cidr_t *nets, size_t n)
{
    if (n > sizeof(h->probe) / sizeof(h->probe[0])) {
        n = sizeof(h->probe) / sizeof(h->probe[0]);
    }

    memcpy(h->probe, nets, n * sizeof(mesh_cidr_t));
    h->nprobe = n;
}
