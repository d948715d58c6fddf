/*
 * ctl_run: "registryctl run SVC ID ADDR:PORT [options] -- COMMAND ...",
 * for a supervisor (systemd's ExecStart=): COMMAND runs as registryctl's
 * child with its stdin, stdout and stderr; the instance is registered
 * with a TTL and heartbeated every TTL/3 while COMMAND lives, the signals
 * a supervisor sends are passed on to it, and when it exits the instance
 * is deregistered (within --timeout) and run exits with COMMAND's status
 * (128 + N when signal N killed it, as shells say).
 *
 * One loop, no thread: signals arrive on a signalfd, the registry's
 * answers through a curl multi handle, and curl_multi_poll waits for both
 * (and for --wait-port's connect) until the next request is due.  A
 * registry slow to answer never holds a signal up, and heartbeats keep
 * their schedule: they are due at whole periods after the registration,
 * not a period after the last answer.
 *
 * The registry being away never touches COMMAND: failures are logged (a
 * line, one a minute while they last, one when the registry is back) and
 * tried again every second; a heartbeat answered 404 (the instance was
 * removed: deregister_after, a registry that lost it, a deregister by
 * hand) registers it again.  Only a first registration the registry
 * refuses (4xx: a bad token, a refused check) stops COMMAND: run would
 * otherwise keep a service running that nothing can find.
 */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"


#define CTL_RUN_TTL        "10s"    /* without --ttl */
#define CTL_RUN_RETRY      1000     /* ms: after a failed request */
#define CTL_RUN_LOG_EVERY  60000    /* ms: a failure that lasts, a line */
#define CTL_RUN_PORT_EVERY 100      /* ms: --wait-port's connects */
#define CTL_RUN_TICK       1000     /* ms: the longest wait of the loop */

enum {
    CTL_RUN_IDLE = 0,
    CTL_RUN_REGISTER,
    CTL_RUN_HEARTBEAT
};


typedef struct {
    ctl_register_t     reg;
    unsigned           wait_port:1;
} ctl_run_opts_t;


typedef struct {
    ctl_t             *c;
    char               name[2 * CTL_NAME_MAX + 2];     /* SVC/ID */
    char               path[512];
    char               beat[560];
    char              *body;
    pid_t              pid;
    int                sfd;                 /* signalfd */
    int                status;              /* COMMAND's wait status */
    CURLM             *multi;
    ctl_xfer_t         x;
    int                doing;               /* CTL_RUN_* */

    int                pfd;                 /* --wait-port: connecting */
    int64_t            pfd_since;
    struct sockaddr_storage  sa;
    socklen_t          salen;

    int64_t            period;              /* ms between heartbeats */
    int64_t            due;                 /* monotonic ms: next request */
    int64_t            failing;             /* since (0: not failing) */
    int64_t            logged;              /* the last failure line */
    unsigned           failures;
    int64_t            kill_at;             /* SIGKILL COMMAND then */

    unsigned           port_wait:1;         /* --wait-port, port not up */
    unsigned           registered:1;        /* the registry has it */
    unsigned           unsure:1;            /* a registration's answer was
                                               lost: it may have it */
    unsigned           once:1;              /* registered once */
    unsigned           exited:1;            /* COMMAND has exited */
    unsigned           refused:1;           /* first registration refused */
    char               why[CTL_ERR_LEN];    /* the refusal */
} ctl_run_t;


static const int  ctl_run_signals[] = {
    SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, 0
};


static int64_t
ctl_run_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static void
ctl_run_log(ctl_run_t *run, const char *fmt, ...)
{
    va_list  ap;
    char     line[CTL_ERR_LEN * 2];

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);

    fprintf(stderr, "registryctl: run: %s: %s\n", run->name, line);
}


static int
ctl_run_take(void *ctx, int opt, const char *v, char *err)
{
    ctl_run_opts_t  *o = ctx;

    switch (opt) {

    case CTL_O_CHECK:
        o->reg.check = v;
        return 1;

    case CTL_O_WAIT_PORT:
        o->wait_port = 1;
        return 1;
    }

    return ctl_register_take(&o->reg, opt, v, err);
}


/*
 * COMMAND as a child: the signals run takes on its signalfd are given
 * back their default (the mask is inherited across exec), and an exec
 * that fails says why through a pipe closed on a successful exec.
 */
static int
ctl_run_spawn(ctl_run_t *run, char **cmd, const sigset_t *old, char *err)
{
    int     fds[2], e;
    pid_t   pid;
    ssize_t n;

    if (pipe2(fds, O_CLOEXEC) != 0) {
        return ctl_error(err, -1, "run: pipe: %s", strerror(errno));
    }

    fflush(stdout);
    fflush(stderr);

    pid = fork();

    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return ctl_error(err, -1, "run: fork: %s", strerror(errno));
    }

    if (pid == 0) {
        close(fds[0]);
        sigprocmask(SIG_SETMASK, old, NULL);

        execvp(cmd[0], cmd);

        e = errno;
        n = write(fds[1], &e, sizeof(e));
        (void) n;
        _exit(127);
    }

    close(fds[1]);

    do {
        n = read(fds[0], &e, sizeof(e));
    } while (n < 0 && errno == EINTR);

    close(fds[0]);

    if (n == sizeof(e)) {
        waitpid(pid, NULL, 0);
        return ctl_error(err, -1, "run: cannot run \"%.128s\": %s", cmd[0],
                         strerror(e));
    }

    run->pid = pid;

    return 0;
}


/* a failed request: a line when failures start, then one a minute */
static void
ctl_run_failed(ctl_run_t *run, const char *what, const char *err,
    int64_t now)
{
    run->failures++;

    if (run->failing == 0) {
        run->failing = now;
        run->logged = now;
        ctl_run_log(run, "%s failed: %s; trying again every %ds, the "
                    "command goes on", what, err, CTL_RUN_RETRY / 1000);

    } else if (now - run->logged >= CTL_RUN_LOG_EVERY) {
        run->logged = now;
        ctl_run_log(run, "%s still failing after %llds (%u attempts): %s",
                    what, (long long) (now - run->failing) / 1000,
                    run->failures, err);
    }

    run->due = now + CTL_RUN_RETRY;
}


static void
ctl_run_recovered(ctl_run_t *run, int64_t now)
{
    if (run->failing) {
        ctl_run_log(run, "the registry answers again after %llds "
                    "(%u failed attempts)",
                    (long long) (now - run->failing) / 1000, run->failures);
    }

    run->failing = 0;
    run->failures = 0;
}


/* the next heartbeat: whole periods after the registration */
static void
ctl_run_schedule(ctl_run_t *run, int64_t now)
{
    while (run->due <= now) {
        run->due += run->period;
    }
}


static void
ctl_run_send(ctl_run_t *run, int64_t now)
{
    int     rc;
    char    err[CTL_ERR_LEN];
    ctl_t  *c = run->c;

    if (run->registered) {
        rc = ctl_xfer_start(c, run->multi, &run->x, "PUT", run->beat, NULL,
                            run->period < c->timeout_ms ? (long) run->period
                                                        : c->timeout_ms,
                            err);
        run->doing = CTL_RUN_HEARTBEAT;

    } else {
        rc = ctl_xfer_start(c, run->multi, &run->x, "PUT", run->path,
                            run->body, 0, err);
        run->doing = CTL_RUN_REGISTER;
    }

    if (rc != 0) {
        ctl_xfer_free(c, run->multi, &run->x);
        ctl_run_failed(run, run->registered ? "heartbeat" : "registration",
                       err, now);
        run->doing = CTL_RUN_IDLE;
    }
}


/* is the answer a refusal that sending again will not change? */
static int
ctl_run_refusal(long status)
{
    return status >= 400 && status < 500 && status != 404 && status != 408
           && status != 429;
}


static void
ctl_run_answer(ctl_run_t *run, int64_t now)
{
    int          rc;
    char         err[CTL_ERR_LEN];
    long         status;
    json_t      *res, *v;
    ctl_t       *c = run->c;

    rc = ctl_xfer_end(c, run->multi, &run->x, &res, err);
    status = run->x.r.status;
    ctl_xfer_free(c, run->multi, &run->x);

    if (run->doing == CTL_RUN_REGISTER) {
        run->doing = CTL_RUN_IDLE;
        run->unsure = (status == 0);

        if (rc == 0) {
            v = json_object_get(res, "index");
            ctl_run_log(run, "%s (index %lld)",
                        run->once ? "registered again" : "registered",
                        json_is_integer(v) ? (long long) json_integer_value(v)
                                           : -1LL);
            json_decref(res);

            ctl_run_recovered(run, now);
            run->registered = 1;
            run->once = 1;
            run->due = now;
            ctl_run_schedule(run, now);
            return;
        }

        if (!run->once && ctl_run_refusal(status) && !run->exited) {
            /* a mistake: stop COMMAND, which nothing would find */
            snprintf(run->why, sizeof(run->why), "%s", err);
            run->refused = 1;
            kill(run->pid, SIGTERM);
            run->kill_at = now + c->timeout_ms;
            return;
        }

        ctl_run_failed(run, "registration", err, now);
        return;
    }

    /* a heartbeat */

    run->doing = CTL_RUN_IDLE;
    json_decref(res);

    if (rc == 0) {
        ctl_run_recovered(run, now);
        ctl_run_schedule(run, now);
        return;
    }

    if (status == 404) {
        ctl_run_recovered(run, now);
        ctl_run_log(run, "the registry no longer has it (expired, removed "
                    "or lost): registering again");
        run->registered = 0;
        run->due = now;
        return;
    }

    ctl_run_failed(run, "heartbeat", err, now);
}


/* --wait-port: does ADDR:PORT accept a connection yet? */
static void
ctl_run_probe(ctl_run_t *run, int64_t now, short revents)
{
    int        e;
    socklen_t  len;

    if (run->pfd >= 0) {
        if (revents == 0 && now - run->pfd_since < CTL_RUN_TICK) {
            return;
        }

        e = ETIMEDOUT;

        if (revents) {
            len = sizeof(e);
            if (getsockopt(run->pfd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) {
                e = errno;
            }
        }

        close(run->pfd);
        run->pfd = -1;

        goto result;
    }

    if (now < run->due) {
        return;
    }

    run->pfd = socket(run->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK
                                         | SOCK_CLOEXEC, 0);
    if (run->pfd < 0) {
        e = errno;
        goto result;
    }

    e = 0;

    if (connect(run->pfd, (struct sockaddr *) &run->sa, run->salen) != 0) {
        e = errno;

        if (e == EINPROGRESS) {
            run->pfd_since = now;
            return;
        }
    }

    close(run->pfd);
    run->pfd = -1;

result:

    if (e != 0) {
        run->due = now + CTL_RUN_PORT_EVERY;
        return;
    }

    run->port_wait = 0;
    run->due = now;
}


static void
ctl_run_signals_read(ctl_run_t *run)
{
    struct signalfd_siginfo  si;

    while (read(run->sfd, &si, sizeof(si)) == sizeof(si)) {

        if (si.ssi_signo == SIGCHLD || run->exited) {
            continue;
        }

        /*
         * A terminal's signal (^C, ^\) went to its whole foreground
         * process group, COMMAND included: passing it on would make two.
         */
        if (si.ssi_code == SI_KERNEL) {
            continue;
        }

        kill(run->pid, (int) si.ssi_signo);
    }

    if (!run->exited && waitpid(run->pid, &run->status, WNOHANG) == run->pid)
    {
        run->exited = 1;
    }
}


static void
ctl_run_loop(ctl_run_t *run)
{
    int                 timeout, n;
    int64_t             now;
    struct curl_waitfd  fds[2];

    for ( ;; ) {
        now = ctl_run_now();

        if (run->exited) {
            if (run->doing == CTL_RUN_HEARTBEAT) {
                ctl_xfer_free(run->c, run->multi, &run->x);
                run->doing = CTL_RUN_IDLE;
            }

            if (run->doing == CTL_RUN_IDLE) {
                break;
            }

        } else if (run->refused) {
            if (run->kill_at && now >= run->kill_at) {
                kill(run->pid, SIGKILL);
                run->kill_at = 0;
            }

        } else if (run->port_wait) {
            ctl_run_probe(run, now, 0);

        } else if (run->doing == CTL_RUN_IDLE && now >= run->due) {
            ctl_run_send(run, now);
        }

        fds[0].fd = run->sfd;
        fds[0].events = CURL_WAIT_POLLIN;
        fds[0].revents = 0;
        n = 1;

        if (run->pfd >= 0) {
            fds[1].fd = run->pfd;
            fds[1].events = CURL_WAIT_POLLOUT;
            fds[1].revents = 0;
            n = 2;
        }

        timeout = CTL_RUN_TICK;

        if (run->doing == CTL_RUN_IDLE && !run->exited && !run->refused
            && run->pfd < 0)
        {
            now = ctl_run_now();
            timeout = run->due <= now ? 0
                      : (run->due - now < CTL_RUN_TICK
                         ? (int) (run->due - now) : CTL_RUN_TICK);
        }

        ctl_xfer_poll(run->multi, &run->x, fds, n, timeout);

        ctl_run_signals_read(run);

        if (n == 2 && fds[1].revents && run->pfd >= 0) {
            ctl_run_probe(run, ctl_run_now(), fds[1].revents);
        }

        if (run->x.done) {
            ctl_run_answer(run, ctl_run_now());
        }
    }
}


/* when COMMAND has exited: the registry forgets the instance */
static void
ctl_run_deregister(ctl_run_t *run)
{
    char         err[CTL_ERR_LEN];
    json_t      *res, *v;
    ctl_resp_t   r;

    if (!run->registered && !run->unsure) {
        return;
    }

    if (ctl_call(run->c, "DELETE", run->path, NULL, NULL, 0, &r, &res, err)
        != 0)
    {
        if (strncmp(err, "404 ", 4) != 0) {
            ctl_run_log(run, "cannot deregister: %s", err);
        }

        return;
    }

    v = json_object_get(res, "index");
    ctl_run_log(run, "deregistered (index %lld)",
                json_is_integer(v) ? (long long) json_integer_value(v)
                                   : -1LL);

    json_decref(res);
    mesh_buf_free(&r.body);
}


int
ctl_cmd_run(ctl_t *c, int argc, char **argv, char *err)
{
    int              rc, npos, k, dash, port;
    char             addr[MESH_ADDR_LEN];
    int64_t          ttl;
    sigset_t         set, old;
    const char      *pos[3];
    json_t          *req;
    ctl_run_t        run;
    ctl_run_opts_t   o;
    struct option    own[CTL_OPTS_MAX];

    /* COMMAND is what follows the first "--" */

    for (dash = 0; dash < argc; dash++) {
        if (strcmp(argv[dash], "--") == 0) {
            break;
        }
    }

    if (dash == argc || dash + 1 == argc) {
        return ctl_error(err, CTL_EUSAGE, "run: missing -- COMMAND (usage: "
                         "registryctl %s)", ctl_usage_of("run"));
    }

    for (k = 0; ctl_register_options[k].name; k++) {
        own[k] = ctl_register_options[k];
    }

    own[k].name = "check";
    own[k].has_arg = required_argument;
    own[k].flag = NULL;
    own[k++].val = CTL_O_CHECK;
    own[k].name = "wait-port";
    own[k].has_arg = no_argument;
    own[k].flag = NULL;
    own[k++].val = CTL_O_WAIT_PORT;
    memset(&own[k], 0, sizeof(struct option));

    memset(&o, 0, sizeof(o));
    memset(&run, 0, sizeof(run));

    req = json_object();
    o.reg.labels = json_object();

    rc = ctl_args(c, "run", dash, argv, own, ":", ctl_run_take, &o, pos, 3,
                  &npos, err);
    if (rc < 0) {
        goto done;
    }

    if (o.reg.ttl == NULL) {
        o.reg.ttl = CTL_RUN_TTL;
    }

    if ((rc = ctl_check_args("run", npos, 3, 3, err)) != 0
        || (rc = ctl_register_body(&o.reg, pos, req, addr, sizeof(addr),
                                   &port, err)) != 0)
    {
        goto done;
    }

    if ((rc = ctl_load_token(c, err)) != 0) {
        goto done;
    }

    ttl = mesh_duration_parse(o.reg.ttl);

    run.c = c;
    run.sfd = -1;
    run.pfd = -1;
    run.period = ttl / 3;
    run.port_wait = o.wait_port;
    run.body = json_dumps(req, JSON_COMPACT);

    snprintf(run.name, sizeof(run.name), "%s/%s", pos[0], pos[1]);
    snprintf(run.path, sizeof(run.path), "/v1/services/%s/instances/%s",
             pos[0], pos[1]);
    snprintf(run.beat, sizeof(run.beat), "%s/heartbeat", run.path);

    if (o.wait_port) {
        if (strchr(addr, ':')) {
            struct sockaddr_in6  *sin6 = (struct sockaddr_in6 *) &run.sa;

            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons((uint16_t) port);
            inet_pton(AF_INET6, addr, &sin6->sin6_addr);
            run.salen = sizeof(*sin6);

        } else {
            struct sockaddr_in  *sin = (struct sockaddr_in *) &run.sa;

            sin->sin_family = AF_INET;
            sin->sin_port = htons((uint16_t) port);
            inet_pton(AF_INET, addr, &sin->sin_addr);
            run.salen = sizeof(*sin);
        }
    }

    /* signals: all of them through the signalfd, SIGCHLD too */

    sigemptyset(&set);

    for (k = 0; ctl_run_signals[k]; k++) {
        sigaddset(&set, ctl_run_signals[k]);
    }

    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);

    run.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (run.sfd < 0) {
        rc = ctl_error(err, -1, "run: signalfd: %s", strerror(errno));
        goto restore;
    }

    run.multi = curl_multi_init();
    if (run.multi == NULL) {
        rc = ctl_error(err, -1, "run: cannot initialize libcurl");
        goto restore;
    }

    if ((rc = ctl_run_spawn(&run, argv + dash + 1, &old, err)) != 0) {
        goto restore;
    }

    run.due = ctl_run_now();

    ctl_run_loop(&run);

    if (run.pfd >= 0) {
        close(run.pfd);
    }

    if (run.refused) {
        rc = ctl_error(err, -1, "run: %s: the registration is refused "
                       "(%s); the command was stopped", run.name, run.why);

    } else {
        ctl_run_deregister(&run);

        c->exit_code = WIFSIGNALED(run.status)
                       ? 128 + WTERMSIG(run.status)
                       : WEXITSTATUS(run.status);
    }

restore:

    if (run.multi) {
        ctl_xfer_free(c, run.multi, &run.x);
        curl_multi_cleanup(run.multi);
    }

    if (run.sfd >= 0) {
        close(run.sfd);
    }

    sigprocmask(SIG_SETMASK, &old, NULL);
    free(run.body);

done:

    json_decref(req);
    json_decref(o.reg.labels);

    return rc;
}
