/*
 * ctl: what registryctl's parts share (registryctl.c: the commands and
 * main; ctl_util.c: buffers, validation, options; ctl_http.c: requests
 * to registryd; ctl_show.c: list and proxies, as tables or JSON).
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
} ctl_t;


typedef struct {
    long        status;
    char        reason[64];     /* reason phrase from the status line */
    mesh_buf_t  body;
} ctl_resp_t;


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
    CTL_O_FLAG = 1000           /* + the flag's place in its list */
};

#define CTL_OPTS_MAX  16


extern const ctl_cmd_t  ctl_commands[];

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
