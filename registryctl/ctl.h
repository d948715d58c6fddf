/*
 * ctl: what registryctl's parts share (registryctl.c: the commands and
 * main; ctl_util.c: buffers, validation, options; ctl_http.c: requests
 * to registryd; ctl_show.c: list and proxies, as tables or JSON;
 * ctl_register.c: a registration from the command line; ctl_run.c: run;
 * ctl_watch.c: watch).
 */

#ifndef CTL_H
#define CTL_H

#include <stddef.h>
#include <getopt.h>

#include <curl/curl.h>
#include <jansson.h>

#include "mesh_addr.h"
#include "mesh_alloc.h"
#include "mesh_buf.h"
#include "mesh_name.h"
#include "mesh_token.h"
#include "mesh_units.h"

#define CTL_VERSION          "0.2.0"
#define CTL_ERR_LEN          256
#define CTL_EUSAGE           -2
#define CTL_DEFAULT_URL      "http://127.0.0.1:7770"
#define CTL_DEFAULT_TIMEOUT  10000              /* ms */
#define CTL_MAX_BODY         (64 * 1024 * 1024) /* response and file limit */
#define CTL_NAME_MAX         MESH_NAME_MAX
#define CTL_URLS_MAX         8


typedef struct {
    char         url[1024];     /* registry base URL, no trailing slash:
                                   the one of urls in use */
    char         urls[CTL_URLS_MAX][1024];   /* --registry A,B: in turn */
    size_t       nurls;
    size_t       cur;
    const char  *token_file;
    const char  *cacert;        /* PEM CA(s) that sign registryd's
                                   certificate; NULL: the system's */
    const char  *cert;          /* PEM client certificate and key */
    const char  *key;
    char        *token;
    long         timeout_ms;
    CURL        *curl;
    int          exit_code;     /* a command that succeeded exits with it
                                   (run: its COMMAND's status) */
} ctl_t;


typedef struct {
    long        status;
    char        reason[64];     /* reason phrase from the status line */
    mesh_buf_t  body;
} ctl_resp_t;


/* a request a command drives itself (ctl_xfer_start) */
typedef struct {
    ctl_resp_t          r;
    mesh_buf_sink_t     sink;
    struct curl_slist  *hdrs;
    long                timeout_ms;
    CURLcode            rc;
    unsigned            active:1;   /* in the multi handle */
    unsigned            done:1;     /* ended: rc says how */
    unsigned            unreached:1;
    char                cerr[CURL_ERROR_SIZE];
} ctl_xfer_t;


/* register's and run's options: the instance as the command line gives
 * it (ctl_register_take collects, ctl_register_body checks and builds) */
typedef struct {
    json_t       *labels;
    const char   *ttl;
    const char   *zone;
    const char   *dereg;
    const char   *weight;
    const char   *check;        /* run only: --check SPEC */
} ctl_register_t;


typedef int (*ctl_cmd_pt)(ctl_t *c, int argc, char **argv, char *err);

typedef struct {
    const char  *name;
    ctl_cmd_pt   handler;
    const char  *usage;
} ctl_cmd_t;

enum {
    CTL_O_REGISTRY = 256,
    CTL_O_TOKEN_FILE,
    CTL_O_TIMEOUT,
    CTL_O_CACERT,
    CTL_O_CERT,
    CTL_O_KEY,
    CTL_O_HELP,
    CTL_O_VERSION,
    CTL_O_WEIGHT,
    CTL_O_TTL,
    CTL_O_ZONE,
    CTL_O_DEREGISTER_AFTER,
    CTL_O_LABEL,
    CTL_O_FILE,
    CTL_O_NAME,
    CTL_O_NAMESPACE,
    CTL_O_OUTPUT,
    CTL_O_CHECK,
    CTL_O_WAIT_PORT,
    CTL_O_JSON,
    CTL_O_INDEX,
    CTL_O_FLAG = 1000           /* + the flag's place in its list */
};

#define CTL_OPTS_MAX  16


extern const ctl_cmd_t      ctl_commands[];
extern const struct option  ctl_register_options[];

int ctl_error(char *err, int rc, const char *fmt, ...);
int ctl_read_file(const char *path, mesh_buf_t *b, char *err);
int ctl_check_name(const char *what, const char *s, char *err);
int ctl_parse_long(const char *s, long min, long max, long *out);
int ctl_check_ttl(const char *what, const char *s, char *err);
int ctl_parse_addr_port(const char *s, char *addr, size_t size, int *port,
    char *err);
const char *ctl_usage_of(const char *cmd);
int ctl_check_args(const char *cmd, int npos, int min, int max, char *err);
int ctl_global_set(ctl_t *c, int opt, const char *v, char *err);
void ctl_options(struct option *opts, const struct option *own);
int ctl_refused(const char *cmd, int opt, char **av, char *err);
const char *ctl_abbreviated(char **av, const struct option *o);
int ctl_args(ctl_t *c, const char *cmd, int argc, char **argv,
    const struct option *own, const char *shortopts, int (*take)(void *ctx,
    int opt, const char *val, char *err), void *ctx, const char **pos,
    int maxpos, int *npos, char *err);
int ctl_simple_args(ctl_t *c, const char *cmd, int argc, char **argv,
    const char **pos, int maxpos, int *npos, const char **flags, int *set,
    char *err);
int ctl_call(ctl_t *c, const char *method, const char *path, const char *ctype,
    const char *body, size_t len, ctl_resp_t *r, json_t **json, char *err);
void ctl_print_index(json_t *j);
int ctl_load_token(ctl_t *c, char *err);
int ctl_xfer_start(ctl_t *c, CURLM *m, ctl_xfer_t *x, const char *method,
    const char *path, const char *body, long timeout_ms, char *err);
void ctl_xfer_poll(CURLM *m, ctl_xfer_t *x, struct curl_waitfd *fds,
    unsigned nfds, int timeout_ms);
int ctl_xfer_end(ctl_t *c, CURLM *m, ctl_xfer_t *x, json_t **json,
    char *err);
void ctl_xfer_free(ctl_t *c, CURLM *m, ctl_xfer_t *x);
int ctl_register_take(void *ctx, int opt, const char *v, char *err);
int ctl_register_body(ctl_register_t *reg, const char **pos, json_t *req,
    char *addr, size_t size, int *port, char *err);
int ctl_check_spec(const char *spec, json_t **check, char *err);
int ctl_cmd_register(ctl_t *c, int argc, char **argv, char *err);
int ctl_cmd_run(ctl_t *c, int argc, char **argv, char *err);
int ctl_cmd_watch(ctl_t *c, int argc, char **argv, char *err);
int ctl_cmd_list(ctl_t *c, int argc, char **argv, char *err);
int ctl_cmd_proxies(ctl_t *c, int argc, char **argv, char *err);
int ctl_cmd_export(ctl_t *c, int argc, char **argv, char *err);
int ctl_cmd_import(ctl_t *c, int argc, char **argv, char *err);
/* ctl_objects.c */
const char *ctl_object_kind(const char *s);
int ctl_objects_send(ctl_t *c, const char *file, int del, char *err);
int ctl_cmd_delete(ctl_t *c, int argc, char **argv, char *err);
int ctl_get_objects(ctl_t *c, int argc, char **argv, char *err);

#endif
