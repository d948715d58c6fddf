/*
 * ctl_watch: "registryctl watch [SVC] [--json] [--index N]": the
 * registry's changes as they are committed, one line each, read from
 * GET /v1/events as a long-poll (index, wait): every answer holds the
 * events after the index it was asked for, in order, and says when some
 * are no longer kept ("truncated"), which a stream would not let a
 * client see as simply.
 *
 * It starts at the registry's current index (or after --index N), and
 * goes on until SIGINT or SIGTERM (exit 0).  A registry that goes away is
 * one line on stderr, tried again with a backoff (250ms doubling up to
 * 5s), and one line when it is back; events missed meanwhile (a restart
 * begins an empty ring) are said, as is an index that went back (another
 * registry, or its data lost).  With SVC, only that service's instance
 * events, and the policy events of the policies naming it (as a
 * DestinationRule host or a VirtualService host), are printed.
 */

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "ctl.h"


#define CTL_WATCH_WAIT      "60s"          /* a long-poll's wait */
#define CTL_WATCH_WAIT_MS   60000
#define CTL_WATCH_NOW       "9223372036854775807"   /* index: answer "now" */
#define CTL_WATCH_BACKOFF   250            /* ms, doubling */
#define CTL_WATCH_BACKOFF_MAX  5000


typedef struct {
    ctl_t        *c;
    const char   *svc;              /* the filter, or NULL */
    unsigned      json:1;
    unsigned      has_index:1;
    uint64_t      index;            /* the last index seen */
    json_t       *named;            /* with svc: the policies naming it */
    CURLM        *multi;
    ctl_xfer_t    x;
    int           sfd;
} ctl_watch_t;


static int
ctl_watch_take(void *ctx, int opt, const char *v, char *err)
{
    char         *end;
    ctl_watch_t  *w = ctx;

    switch (opt) {

    case CTL_O_JSON:
        w->json = 1;
        return 1;

    case CTL_O_INDEX:
        errno = 0;
        w->index = strtoull(v, &end, 10);

        if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno
            || w->index > INT64_MAX)
        {
            return ctl_error(err, CTL_EUSAGE, "invalid --index \"%.32s\": "
                             "must be a registry index (0 or more)", v);
        }

        w->has_index = 1;
        return 1;
    }

    return 0;
}


/* SIGINT or SIGTERM came */
static int
ctl_watch_signalled(ctl_watch_t *w)
{
    int                      stop;
    struct signalfd_siginfo  si;

    stop = 0;

    while (read(w->sfd, &si, sizeof(si)) == sizeof(si)) {
        stop = 1;
    }

    return stop;
}


/*
 * One GET, waiting for its answer and for a signal at once: 1 when a
 * signal ends the watch, else 0 with *rc as ctl_xfer_end's and *status
 * the answer's (0: none came).
 */
static int
ctl_watch_get(ctl_watch_t *w, const char *path, long timeout_ms,
    json_t **res, int *rc, long *status, char *err)
{
    struct curl_waitfd  fd;

    *res = NULL;
    *status = 0;

    if (ctl_xfer_start(w->c, w->multi, &w->x, "GET", path, NULL, timeout_ms,
                       err)
        != 0)
    {
        ctl_xfer_free(w->c, w->multi, &w->x);
        *rc = -1;
        return 0;
    }

    while (!w->x.done) {
        fd.fd = w->sfd;
        fd.events = CURL_WAIT_POLLIN;
        fd.revents = 0;

        ctl_xfer_poll(w->multi, &w->x, &fd, 1, 1000);

        if (ctl_watch_signalled(w)) {
            ctl_xfer_free(w->c, w->multi, &w->x);
            return 1;
        }
    }

    *rc = ctl_xfer_end(w->c, w->multi, &w->x, res, err);
    *status = w->x.r.status;
    ctl_xfer_free(w->c, w->multi, &w->x);

    return 0;
}


/* waits ms, or less when a signal comes (then 1) */
static int
ctl_watch_sleep(ctl_watch_t *w, int ms)
{
    struct curl_waitfd  fd;

    fd.fd = w->sfd;
    fd.events = CURL_WAIT_POLLIN;
    fd.revents = 0;

    ctl_xfer_poll(w->multi, &w->x, &fd, 1, ms);

    return ctl_watch_signalled(w);
}


/* does a policy's entry (GET /v1/policies) name svc? */
static int
ctl_watch_names(json_t *entry, const char *svc)
{
    size_t   i, k;
    json_t  *docs, *d, *h, *hs;

    docs = json_object_get(entry, "documents");

    json_array_foreach(docs, i, d) {
        h = json_object_get(d, "host");
        if (json_is_string(h) && strcmp(json_string_value(h), svc) == 0) {
            return 1;
        }

        json_array_foreach(json_object_get(d, "hosts"), k, hs) {
            if (json_is_string(hs)
                && strcmp(json_string_value(hs), svc) == 0)
            {
                return 1;
            }
        }
    }

    return 0;
}


/*
 * With SVC: is a policy event about it?  The policies naming SVC are
 * known from the start (GET /v1/policies) and read again as they change;
 * a policy that stops naming SVC, or is deleted, is a change to SVC too.
 * Returns 1 (print), 0 (not), or 2 when a signal came.
 */
static int
ctl_watch_policy(ctl_watch_t *w, const char *type, const char *name)
{
    int      rc, was, now, stop;
    char     path[512], err[CTL_ERR_LEN];
    long     status;
    json_t  *res;

    was = (json_object_get(w->named, name) != NULL);

    if (strcmp(type, "policy_deleted") == 0) {
        json_object_del(w->named, name);
        return was;
    }

    snprintf(path, sizeof(path), "/v1/policies/%s", name);

    stop = ctl_watch_get(w, path, 0, &res, &rc, &status, err);
    if (stop) {
        return 2;
    }

    if (rc != 0) {
        /* deleted since, or not readable now: as it was known */
        return was;
    }

    now = ctl_watch_names(res, w->svc);
    json_decref(res);

    if (now) {
        json_object_set_new(w->named, name, json_true());

    } else {
        json_object_del(w->named, name);
    }

    return was || now;
}


static void
ctl_watch_print(ctl_watch_t *w, json_t *e)
{
    char        *s;
    const char  *time, *type, *svc, *id, *policy, *reason;

    if (w->json) {
        s = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
        free(s);
        return;
    }

    time = json_string_value(json_object_get(e, "time"));
    type = json_string_value(json_object_get(e, "type"));
    svc = json_string_value(json_object_get(e, "service"));
    id = json_string_value(json_object_get(e, "id"));
    policy = json_string_value(json_object_get(e, "policy"));
    reason = json_string_value(json_object_get(e, "reason"));

    printf("%s %lld %s ", time ? time : "-",
           (long long) json_integer_value(json_object_get(e, "index")),
           type ? type : "-");

    if (policy) {
        printf("policy/%s", policy);

    } else {
        printf("%s/%s", svc ? svc : "-", id ? id : "-");
    }

    if (reason) {
        printf(" reason=%s", reason);
    }

    printf("\n");
}


/*
 * An answer of GET /v1/events: say what was missed, print the events,
 * move the index on.  1 when a signal came.
 */
static int
ctl_watch_answer(ctl_watch_t *w, json_t *res)
{
    int          rc;
    size_t       i;
    json_t      *events, *e, *v;
    uint64_t     upto, first;
    const char  *type, *svc, *policy;

    v = json_object_get(res, "index");
    upto = json_is_integer(v) ? (uint64_t) json_integer_value(v) : w->index;
    events = json_object_get(res, "events");

    first = 0;
    e = json_array_get(events, 0);
    if (e) {
        first = (uint64_t) json_integer_value(json_object_get(e, "index"));
    }

    if (json_is_true(json_object_get(res, "truncated"))) {
        fprintf(stderr, "registryctl: watch: the changes after index %llu "
                "are no longer all kept by the registry (it restarted, or "
                "keeps fewer): some were missed; going on from index %llu\n",
                (unsigned long long) w->index,
                (unsigned long long) (first ? first - 1 : upto));

    } else if (upto < w->index && json_array_size(events) == 0) {
        /* all it keeps is new to us: from its oldest kept event on */
        fprintf(stderr, "registryctl: watch: the registry's index went back "
                "from %llu to %llu (another registry, or its data was "
                "lost); going on from the oldest event it keeps\n",
                (unsigned long long) w->index, (unsigned long long) upto);
        w->index = 0;
        return 0;
    }

    json_array_foreach(events, i, e) {

        if (w->svc) {
            type = json_string_value(json_object_get(e, "type"));
            svc = json_string_value(json_object_get(e, "service"));
            policy = json_string_value(json_object_get(e, "policy"));

            if (policy && type) {
                rc = ctl_watch_policy(w, type, policy);
                if (rc == 2) {
                    return 1;
                }

                if (rc == 0) {
                    continue;
                }

            } else if (svc == NULL || strcmp(svc, w->svc) != 0) {
                continue;
            }
        }

        ctl_watch_print(w, e);
    }

    fflush(stdout);

    w->index = upto;

    return 0;
}


/* "watch: " before the reason in err */
static int
ctl_watch_error(char *err)
{
    char  why[CTL_ERR_LEN];

    memcpy(why, err, CTL_ERR_LEN);

    return ctl_error(err, -1, "watch: %s", why);
}


static int
ctl_watch_loop(ctl_watch_t *w, char *err)
{
    int          rc, lost, backoff;
    char         path[256];
    long         status;
    json_t      *res;

    /* where to start: now, or after --index */

    if (w->has_index) {
        snprintf(path, sizeof(path), "/v1/events?index=%llu&wait=0s",
                 (unsigned long long) w->index);

    } else {
        snprintf(path, sizeof(path), "/v1/events?index=" CTL_WATCH_NOW
                 "&wait=0s");
    }

    if (ctl_watch_get(w, path, 0, &res, &rc, &status, err)) {
        return 0;
    }

    if (rc != 0) {
        return ctl_watch_error(err);
    }

    if (!w->has_index) {
        w->index = (uint64_t) json_integer_value(json_object_get(res,
                                                                 "index"));
    }

    rc = ctl_watch_answer(w, res);
    json_decref(res);

    if (rc) {
        return 0;
    }

    lost = 0;
    backoff = CTL_WATCH_BACKOFF;

    for ( ;; ) {
        /* after an outage, an answer at once: did the index go back? */
        snprintf(path, sizeof(path), "/v1/events?index=%llu&wait=%s",
                 (unsigned long long) w->index,
                 lost ? "0s" : CTL_WATCH_WAIT);

        if (ctl_watch_get(w, path, CTL_WATCH_WAIT_MS + w->c->timeout_ms,
                          &res, &rc, &status, err))
        {
            return 0;
        }

        if (rc != 0) {
            if (status >= 400 && status < 500 && status != 408
                && status != 429)
            {
                return ctl_watch_error(err);
            }

            if (!lost) {
                fprintf(stderr, "registryctl: watch: lost the registry: %s; "
                        "trying again\n", err);
                lost = 1;
            }

            if (ctl_watch_sleep(w, backoff)) {
                return 0;
            }

            backoff = backoff * 2 > CTL_WATCH_BACKOFF_MAX
                      ? CTL_WATCH_BACKOFF_MAX : backoff * 2;
            continue;
        }

        if (lost) {
            fprintf(stderr, "registryctl: watch: the registry %s answers "
                    "again (index %lld)\n", w->c->url,
                    (long long) json_integer_value(json_object_get(res,
                                                                   "index")));
            lost = 0;
            backoff = CTL_WATCH_BACKOFF;
        }

        rc = ctl_watch_answer(w, res);
        json_decref(res);

        if (rc) {
            return 0;
        }

        if (ferror(stdout)) {
            return ctl_error(err, -1, "watch: cannot write output: %s",
                             strerror(errno));
        }
    }
}


int
ctl_cmd_watch(ctl_t *c, int argc, char **argv, char *err)
{
    int             rc, npos, stop;
    long            status;
    size_t          i;
    json_t         *res, *p;
    sigset_t        set, old;
    const char     *pos[1], *name;
    ctl_watch_t     w;

    static const struct option  own[] = {
        { "json", no_argument, NULL, CTL_O_JSON },
        { "index", required_argument, NULL, CTL_O_INDEX },
        { NULL, 0, NULL, 0 }
    };

    memset(&w, 0, sizeof(w));
    w.c = c;
    w.sfd = -1;

    rc = ctl_args(c, "watch", argc, argv, own, ":", ctl_watch_take, &w, pos,
                  1, &npos, err);
    if (rc < 0) {
        return rc;
    }

    if (npos == 1) {
        if ((rc = ctl_check_name("service name", pos[0], err)) != 0) {
            return rc;
        }

        w.svc = pos[0];
    }

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, &old);

    w.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (w.sfd < 0) {
        rc = ctl_error(err, -1, "watch: signalfd: %s", strerror(errno));
        goto done;
    }

    w.multi = curl_multi_init();
    if (w.multi == NULL) {
        rc = ctl_error(err, -1, "watch: cannot initialize libcurl");
        goto done;
    }

    w.named = json_object();

    if (w.svc) {
        /* the policies that name SVC now */
        stop = ctl_watch_get(&w, "/v1/policies", 0, &res, &rc, &status, err);
        if (stop) {
            rc = 0;
            goto done;
        }

        if (rc != 0) {
            rc = ctl_watch_error(err);
            goto done;
        }

        json_array_foreach(json_object_get(res, "policies"), i, p) {
            name = json_string_value(json_object_get(p, "name"));

            if (name && ctl_watch_names(p, w.svc)) {
                json_object_set_new(w.named, name, json_true());
            }
        }

        json_decref(res);
    }

    rc = ctl_watch_loop(&w, err);

done:

    if (w.multi) {
        ctl_xfer_free(c, w.multi, &w.x);
        curl_multi_cleanup(w.multi);
    }

    if (w.sfd >= 0) {
        close(w.sfd);
    }

    json_decref(w.named);
    sigprocmask(SIG_SETMASK, &old, NULL);

    return rc;
}
