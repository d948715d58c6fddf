/*
 * registryd: the ngx_mesh registry. main() parses arguments, loads the
 * config, wires the parts together and waits for a signal.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <curl/curl.h>
#include <jansson.h>

#include "mesh_alloc.h"
#include "rd_api.h"
#include "rd_auth.h"
#include "rd_conf.h"
#include "rd_health.h"
#include "rd_events.h"
#include "rd_log.h"
#include "rd_registry.h"
#include "rd_store.h"

#define RD_VERSION  "0.1.0"

static const char  rd_usage[] =
    "usage: registryd [--config FILE] [--listen ADDR:PORT] [--data-dir DIR]\n"
    "                 [--token-file FILE | --tokens-file FILE]\n"
    "                 [--log-level debug|info|warn|error]\n"
    "                 [--store sqlite|etcd] [--etcd-endpoints URL,URL...]\n"
    "                 [--etcd-prefix /PREFIX/] [--etcd-history D]\n"
    "                 [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]\n";


static int
rd_parse_args(int argc, char **argv, rd_conf_t *conf)
{
    int          i;
    char         err[RD_ERR_LEN];
    const char  *opt, *name, *config = NULL;

    static const struct {
        const char  *flag;
        const char  *name;
    } flags[] = {
        { "--listen", "listen" },
        { "--data-dir", "data_dir" },
        { "--token-file", "token_file" },
        { "--tokens-file", "tokens_file" },
        { "--log-level", "log_level" },
        { "--store", "store" },
        { "--etcd-endpoints", "etcd_endpoints" },
        { "--etcd-prefix", "etcd_prefix" },
        { "--etcd-history", "etcd_history" },
        { "--tls-cert", "tls_cert" },
        { "--tls-key", "tls_key" },
        { "--tls-client-ca", "tls_client_ca" },
        { NULL, NULL }
    };

    /* the config file first, so that flags override it */
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "registryd: --config needs a value\n");
                return -1;
            }
            config = argv[++i];
        }
    }

    if (config && rd_conf_load_file(conf, config, err) != 0) {
        fprintf(stderr, "registryd: %s\n", err);
        return -1;
    }

    for (i = 1; i < argc; i++) {
        opt = argv[i];

        if (strcmp(opt, "--config") == 0) {
            i++;
            continue;
        }

        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            fputs(rd_usage, stdout);
            exit(0);
        }

        if (strcmp(opt, "--version") == 0) {
            printf("registryd %s\n", RD_VERSION);
            exit(0);
        }

        name = NULL;
        for (int k = 0; flags[k].flag; k++) {
            if (strcmp(opt, flags[k].flag) == 0) {
                name = flags[k].name;
            }
        }

        if (name == NULL) {
            fprintf(stderr, "registryd: unknown option \"%s\"\n%s", opt,
                    rd_usage);
            return -1;
        }

        if (i + 1 >= argc) {
            fprintf(stderr, "registryd: %s needs a value\n", opt);
            return -1;
        }

        if (rd_conf_set(conf, name, argv[++i], err) != 0) {
            fprintf(stderr, "registryd: %s: %s\n", opt, err);
            return -1;
        }
    }

    return 0;
}


static void
rd_raise_nofile(rlim_t want)
{
    struct rlimit  rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) {
        return;
    }

    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}


int
main(int argc, char **argv)
{
    int             sig, rc = 1;
    char            err[RD_ERR_LEN], where[1024];
    rd_auth_t      *auth = NULL;
    sigset_t        set;
    rd_api_t       *api = NULL;
    rd_conf_t       conf;
    rd_health_t    *health = NULL;
    rd_events_t    *events = NULL;
    rd_store_t     *store = NULL;
    rd_registry_t  *reg = NULL;
    rd_store_conf_t sc;

    /* jansson and libcurl allocate as registryd does: never NULL
     * (mesh_alloc.h); before any other use of either */
    json_set_alloc_funcs(mesh_xmalloc, free);

    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, mesh_xmalloc, free,
                             mesh_xrealloc, mesh_xstrdup, mesh_xcalloc)
        != CURLE_OK)
    {
        fprintf(stderr, "registryd: cannot initialize libcurl\n");
        return 1;
    }

    rd_conf_init(&conf);

    if (rd_parse_args(argc, argv, &conf) != 0) {
        rd_conf_free(&conf);
        return 2;
    }

    if (rd_conf_check(&conf, err) != 0) {
        fprintf(stderr, "registryd: %s\n", err);
        rd_conf_free(&conf);
        return 2;
    }

    rd_log_level = rd_log_parse_level(conf.log_level);

    auth = rd_auth_create(&conf, err);
    if (auth == NULL) {
        rd_error("%s", err);
        goto done;
    }

    rd_raise_nofile((rlim_t) conf.connection_limit + 64
                    + RD_HEALTH_MAX_PROBES);

    /* signals are taken by sigwait() below, in this thread only */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* before the store's policies are read */
    rd_policy_set_suffixes(conf.domain_suffixes);

    sc.backend = conf.store;
    sc.data_dir = conf.data_dir;
    sc.etcd_endpoints = conf.etcd_endpoints;
    sc.etcd_prefix = conf.etcd_prefix;
    sc.etcd_timeout = conf.etcd_timeout;
    sc.etcd_max_txn_ops = conf.etcd_max_txn_ops;
    sc.etcd_history = conf.etcd_history;

    store = rd_store_open(&sc, err);
    if (store == NULL) {
        rd_error("%s", err);
        goto done;
    }

    reg = rd_registry_create(store, err);
    if (reg == NULL) {
        rd_error("%s", err);
        goto done;
    }

    events = rd_events_create((size_t) conf.events_keep,
                              rd_registry_index(reg));
    reg->events = events;

    if (rd_registry_start(reg, err) != 0) {
        rd_error("%s", err);
        goto done;
    }

    api = rd_api_create(reg, &conf, auth, err);
    if (api == NULL) {
        rd_error("%s", err);
        goto done;
    }

    health = rd_health_create(reg, err);

    if (health) {
        mesh_cidr_t  nets[64];

        rd_health_networks(health, nets,
                           rd_conf_networks(conf.probe_networks, nets, 64));
    }

    if (health == NULL || rd_health_start(health, err) != 0) {
        rd_error("%s", err);
        goto done;
    }

    if (strcmp(conf.store, "etcd") == 0) {
        snprintf(where, sizeof(where), "etcd %s under %s",
                 conf.etcd_endpoints, conf.etcd_prefix);

    } else {
        snprintf(where, sizeof(where), "%s", conf.data_dir);
    }

    if (rd_auth_count(auth) == 0 && rd_conf_exposed(&conf)) {
        rd_warn("listening on %s, not a loopback address, without a token: "
                "writes are taken from trusted_networks only (%s); set "
                "tokens_file to take them from elsewhere", conf.listen,
                conf.trusted_networks);
    }

    rd_info("registryd %s listening on %s%s, data in %s, index %llu, "
            "%zu instances%s", RD_VERSION, conf.listen,
            conf.tls_client_ca ? " (HTTPS, client certificates required)"
            : conf.tls_cert ? " (HTTPS)" : "", where,
            (unsigned long long) rd_registry_index(reg), reg->count,
            rd_auth_count(auth) ? ", tokens required" : "");

    /* SIGHUP reads the tokens again; the connections stay */
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
        size_t  n;

        if (rd_auth_reload(auth, &n, err) != 0) {
            rd_error("reload: %s; the %zu tokens in use stay", err, n);

        } else {
            rd_info("reload: %zu tokens in use", n);
        }
    }

    rd_info("signal %d: stopping", sig);

    rc = 0;

done:

    rd_api_quiesce(api);
    rd_health_stop(health);     /* queues no more transitions */
    rd_registry_stop(reg);      /* answers every queued write */
    rd_health_free(health);
    rd_api_free(api);
    rd_registry_free(reg);
    rd_events_free(events);
    rd_store_close(store);
    rd_auth_free(auth);
    rd_conf_free(&conf);

    if (rc == 0) {
        rd_info("stopped");
    }

    return rc;
}
