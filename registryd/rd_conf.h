/*
 * rd_conf: registryd's configuration, declared once in a table and read
 * from a YAML file and the command line.
 */

#ifndef RD_CONF_H
#define RD_CONF_H

#include <stdint.h>

#include "mesh_addr.h"
#include "rd_log.h"

typedef struct {
    char     *listen;             /* "127.0.0.1:7770" */
    char     *data_dir;           /* "./var/registryd" */
    char     *token_file;         /* one token, every scope */
    char     *tokens_file;        /* named tokens with scopes (rd_auth) */
    char     *log_level;          /* "info" */
    int64_t   max_body;           /* bytes */
    int64_t   ttl_scan_interval;  /* ms */
    int64_t   max_wait;           /* ms, cap of ?wait= */
    int64_t   default_wait;       /* ms */
    int64_t   connection_limit;
    int64_t   connections_per_address;    /* 0: no limit */
    int64_t   waits_per_address;  /* long-polls and event streams of one
                                     client address; 0: no limit */
    int64_t   threads;            /* HTTP threads */
    int64_t   events_keep;        /* events kept for GET /v1/events */
    int64_t   events_max_clients; /* open event streams (SSE) */
    int64_t   proxy_gone_after;   /* ms without a poll: "gone" */
    char     *store;              /* "sqlite" or "etcd" */
    char     *etcd_endpoints;     /* "http://h:p,http://h:p" */
    char     *etcd_prefix;        /* "/ngx-mesh/": ends in '/' */
    int64_t   etcd_timeout;       /* ms, one call to etcd */
    int64_t   etcd_max_txn_ops;   /* etcd's --max-txn-ops */
    int64_t   etcd_history;       /* ms of etcd history kept */
    char     *trusted_networks;   /* "127.0.0.0/8,::1/128": writes
                                     without a token from these only */
    char     *tls_cert;           /* PEM; with tls_key: HTTPS */
    char     *tls_key;
    char     *tls_client_ca;      /* PEM; client certificates required */
    char     *domain_suffixes;    /* policy hosts: FQDN suffixes that
                                     map NAME.SUFFIX to service NAME */
    char     *probe_networks;     /* NULL: health checks probe any
                                     address; else only these */
} rd_conf_t;

/* fill defaults */
void rd_conf_init(rd_conf_t *conf);
void rd_conf_free(rd_conf_t *conf);

/* set one option by name from its text form, as a file or flag gives it */
int rd_conf_set(rd_conf_t *conf, const char *name, const char *value,
    char *err);

/* what one option cannot say: an etcd store needs its endpoints */
int rd_conf_check(const rd_conf_t *conf, char *err);

/* 1 when listen is not a loopback address (a warning without a token) */
int rd_conf_exposed(const rd_conf_t *conf);

/* trusted_networks as networks; their count, at most max */
size_t rd_conf_networks(const char *list, mesh_cidr_t *nets, size_t max);

/* read a YAML mapping of option: value (a list, as etcd_endpoints takes,
 * as a YAML sequence); errors say "FILE:LINE: reason" */
int rd_conf_load_file(rd_conf_t *conf, const char *path, char *err);

#endif
