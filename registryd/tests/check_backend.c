/*
 * check_backend: the store backend as a parameter of a suite. A suite's
 * tests are added once per backend (test cases "NAME-sqlite" and
 * "NAME-etcd"); the etcd ones run against a real one-member etcd that the
 * runner starts on loopback ports of its own (or the cluster named by
 * MESH_ETCD_ENDPOINTS) and stops at the end.
 */

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_suites.h"
#include "rd_etcd.h"

const char   *ck_backend = "sqlite";

static pid_t  ck_etcd_pid;
static char   ck_etcd_dir[256];
static char   ck_etcd_urls[256];


void
ck_use_sqlite(void)
{
    ck_backend = "sqlite";
}


void
ck_use_etcd(void)
{
    ck_backend = "etcd";
}


void
ck_add_tcases(Suite *s, const char *name, SFun setup, SFun teardown,
    void (*add)(TCase *tc))
{
    TCase        *tc;
    static char   names[16][64];
    static int    nnames;

    /* tcase_create() keeps the pointer: the names live on */
    if (nnames + 2 > 16) {
        fprintf(stderr, "check: more than 8 ck_add_tcases()\n");
        exit(2);
    }

    snprintf(names[nnames], sizeof(names[0]), "%s-sqlite", name);
    tc = tcase_create(names[nnames++]);
    tcase_add_checked_fixture(tc, ck_use_sqlite, NULL);
    tcase_add_checked_fixture(tc, setup, teardown);
    add(tc);
    suite_add_tcase(s, tc);

    snprintf(names[nnames], sizeof(names[0]), "%s-etcd", name);
    tc = tcase_create(names[nnames++]);
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, ck_use_etcd, ck_use_sqlite);
    tcase_add_checked_fixture(tc, setup, teardown);
    add(tc);
    suite_add_tcase(s, tc);
}


const char *
ck_etcd_endpoints(void)
{
    return ck_etcd_urls;
}


void
ck_store_conf(rd_store_conf_t *sc, const char *dir)
{
    static char  prefix[PATH_MAX + 16];

    /* the etcd prefix follows the directory: reopening the same
     * directory finds the same keys */
    snprintf(prefix, sizeof(prefix), "/check%s/", dir);

    memset(sc, 0, sizeof(rd_store_conf_t));
    sc->backend = ck_backend;
    sc->data_dir = dir;
    sc->etcd_endpoints = ck_etcd_urls;
    sc->etcd_prefix = prefix;
    sc->etcd_timeout = 3000;
    sc->etcd_max_txn_ops = 128;
    sc->etcd_history = 300000;
}


rd_store_t *
ck_store_open(const char *dir)
{
    char              err[RD_ERR_LEN] = "";
    rd_store_t       *s;
    rd_store_conf_t   sc;

    ck_store_conf(&sc, dir);

    s = rd_store_open(&sc, err);
    ck_assert_msg(s != NULL, "open %s store at %s: %s", ck_backend, dir,
                  err);

    return s;
}


/* a TCP port nobody listens on now */
static int
ck_free_port(void)
{
    int                 fd, port;
    socklen_t           len;
    struct sockaddr_in  sin;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(sin);

    if (fd < 0 || bind(fd, (struct sockaddr *) &sin, sizeof(sin)) != 0
        || getsockname(fd, (struct sockaddr *) &sin, &len) != 0)
    {
        perror("check: a free port");
        exit(2);
    }

    port = ntohs(sin.sin_port);
    close(fd);

    return port;
}


int
ck_etcd_start(const char *root)
{
    int          cport, pport, i;
    char         peer[64], name[32], cluster[128], err[RD_ERR_LEN];
    json_t      *req, *res;
    rd_etcd_t   *e;
    const char  *env;

    env = getenv("MESH_ETCD_ENDPOINTS");

    if (env && env[0]) {
        snprintf(ck_etcd_urls, sizeof(ck_etcd_urls), "%s", env);
        return 0;
    }

    if (access("/usr/bin/etcd", X_OK) != 0) {
        fprintf(stderr, "check: /usr/bin/etcd is missing (scripts/deps.sh "
                "installs etcd-server); the etcd store cannot be tested\n");
        return -1;
    }

    cport = ck_free_port();
    pport = ck_free_port();

    snprintf(ck_etcd_dir, sizeof(ck_etcd_dir), "%s/etcd", root);
    snprintf(ck_etcd_urls, sizeof(ck_etcd_urls), "http://127.0.0.1:%d",
             cport);
    snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", pport);
    snprintf(name, sizeof(name), "check%d", (int) getpid());
    snprintf(cluster, sizeof(cluster), "%s=%s", name, peer);

    ck_etcd_pid = fork();

    if (ck_etcd_pid < 0) {
        perror("fork");
        return -1;
    }

    if (ck_etcd_pid == 0) {
        /* it ends with the runner, however the runner ends */
        prctl(PR_SET_PDEATHSIG, SIGKILL);

        if (freopen("/dev/null", "w", stdout) == NULL
            || freopen("/dev/null", "w", stderr) == NULL)
        {
            _exit(127);
        }

        execl("/usr/bin/etcd", "etcd", "--name", name,
              "--data-dir", ck_etcd_dir,
              "--listen-client-urls", ck_etcd_urls,
              "--advertise-client-urls", ck_etcd_urls,
              "--listen-peer-urls", peer,
              "--initial-advertise-peer-urls", peer,
              "--initial-cluster", cluster,
              "--max-txn-ops", "1024",
              "--log-level", "error",
              (char *) NULL);
        _exit(127);
    }

    /* ready when it answers a read, within 20 s */

    e = rd_etcd_create(ck_etcd_urls, "/check/", 1000, err);
    if (e == NULL) {
        fprintf(stderr, "check: %s\n", err);
        return -1;
    }

    req = json_pack("{s:s}", "key", "AA==");

    for (i = 0; i < 200; i++) {
        if (rd_etcd_call(e, "/v3/kv/range", req, &res, err) == RD_ETCD_OK) {
            json_decref(res);
            break;
        }

        if (waitpid(ck_etcd_pid, NULL, WNOHANG) == ck_etcd_pid) {
            ck_etcd_pid = 0;
            break;
        }

        usleep(100000);
    }

    json_decref(req);
    rd_etcd_free(e);

    if (i == 200 || ck_etcd_pid == 0) {
        fprintf(stderr, "check: etcd at %s did not start: %s\n",
                ck_etcd_urls, err);
        ck_etcd_stop();
        return -1;
    }

    return 0;
}


void
ck_etcd_stop(void)
{
    if (ck_etcd_pid > 0) {
        kill(ck_etcd_pid, SIGTERM);
        waitpid(ck_etcd_pid, NULL, 0);
        ck_etcd_pid = 0;
    }
}
