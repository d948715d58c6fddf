/*
 * registryctl: command-line client for registryd's HTTP API v1.
 *
 *   registryctl [--registry URL] [--token-file F] [--timeout D] COMMAND ...
 *
 * One error convention, as in registryd: helpers return 0 on success, -1
 * (or CTL_EUSAGE for a usage error) and fill the caller's err[CTL_ERR_LEN].
 * main() prints that one line as "registryctl: <reason>" and exits 1, or 2
 * for usage errors.
 *
 * The commands and main() here; buffers, validation and options in
 * ctl_util.c, requests in ctl_http.c, list and proxies in ctl_show.c.
 * Links common/'s mesh_units and mesh_name, libcurl and jansson.
 */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"


static int ctl_cmd_deregister(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_heartbeat(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_get(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_apply(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_policies(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_version(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_help(ctl_t *c, int argc, char **argv, char *err);


const ctl_cmd_t  ctl_commands[] = {
    { "register", ctl_cmd_register,
      "register SVC ID ADDR:PORT [--weight N] [--ttl D] [--zone Z] "
      "[--deregister-after D] [--label k=v]..." },
    { "run", ctl_cmd_run,
      "run SVC ID ADDR:PORT [--ttl D] [--check SPEC] [--wait-port] "
      "[register's options] -- COMMAND [ARG]..." },
    { "deregister", ctl_cmd_deregister, "deregister SVC ID" },
    { "heartbeat", ctl_cmd_heartbeat, "heartbeat SVC ID" },
    { "list", ctl_cmd_list, "list [SVC] [--json]" },
    { "get", ctl_cmd_get, "get SVC ID | get KIND [NAME] [-n NS] "
      "[-o yaml|json]" },
    { "apply", ctl_cmd_apply, "apply -f FILE [--name N]" },
    { "delete", ctl_cmd_delete, "delete -f FILE | delete KIND NAME "
      "[-n NS]" },
    { "policies", ctl_cmd_policies, "policies [NAME]" },
    { "proxies", ctl_cmd_proxies, "proxies [--json]" },
    { "watch", ctl_cmd_watch, "watch [SVC] [--json] [--index N]" },
    { "export", ctl_cmd_export, "export" },
    { "import", ctl_cmd_import, "import FILE" },
    { "version", ctl_cmd_version, "version" },
    { "help", ctl_cmd_help, "help" },
    { NULL, NULL, NULL }
};


int
ctl_error(char *err, int rc, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(err, CTL_ERR_LEN, fmt, ap);
    va_end(ap);

    return rc;
}


/* commands */

static int
ctl_instance_path(ctl_t *c, const char *cmd, int argc, char **argv,
    char *path, size_t size, const char **pos, char *err)
{
    int  rc, npos;

    if ((rc = ctl_simple_args(c, cmd, argc, argv, pos, 2, &npos, NULL, NULL,
                              err)) != 0
        || (rc = ctl_check_args(cmd, npos, 2, 2, err)) != 0
        || (rc = ctl_check_name("service name", pos[0], err)) != 0
        || (rc = ctl_check_name("instance id", pos[1], err)) != 0)
    {
        return rc;
    }

    snprintf(path, size, "/v1/services/%s/instances/%s", pos[0], pos[1]);

    return 0;
}


static int
ctl_cmd_deregister(ctl_t *c, int argc, char **argv, char *err)
{
    int          rc;
    char         path[512];
    const char  *pos[2];
    json_t      *res;
    ctl_resp_t   r;

    rc = ctl_instance_path(c, "deregister", argc, argv, path, sizeof(path),
                           pos, err);
    if (rc != 0) {
        return rc;
    }

    if (ctl_call(c, "DELETE", path, NULL, NULL, 0, &r, &res, err) != 0) {
        return -1;
    }

    printf("deregistered %s/%s", pos[0], pos[1]);
    ctl_print_index(res);

    json_decref(res);
    mesh_buf_free(&r.body);

    return 0;
}


static int
ctl_cmd_heartbeat(ctl_t *c, int argc, char **argv, char *err)
{
    int          rc;
    char         path[512];
    const char  *pos[2];
    json_t      *res, *h;
    ctl_resp_t   r;

    rc = ctl_instance_path(c, "heartbeat", argc, argv, path, sizeof(path),
                           pos, err);
    if (rc != 0) {
        return rc;
    }

    strcat(path, "/heartbeat");

    if (ctl_call(c, "PUT", path, NULL, NULL, 0, &r, &res, err) != 0) {
        return -1;
    }

    h = json_object_get(res, "health");

    printf("heartbeat %s/%s: %s", pos[0], pos[1],
           json_is_string(h) ? json_string_value(h) : "ok");
    ctl_print_index(res);

    json_decref(res);
    mesh_buf_free(&r.body);

    return 0;
}


static int
ctl_cmd_get(ctl_t *c, int argc, char **argv, char *err)
{
    int          rc;
    char         path[512], *out;
    const char  *pos[2];
    json_t      *res;
    ctl_resp_t   r;

    /* get virtualservices, get vs reviews: objects */
    if (argc > 0 && argv[0][0] != '-' && ctl_object_kind(argv[0]) != NULL) {
        return ctl_get_objects(c, argc, argv, err);
    }

    rc = ctl_instance_path(c, "get", argc, argv, path, sizeof(path), pos, err);
    if (rc != 0) {
        return rc;
    }

    if (ctl_call(c, "GET", path, NULL, NULL, 0, &r, &res, err) != 0) {
        return -1;
    }

    out = json_dumps(res, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", out ? out : r.body.data);

    free(out);
    json_decref(res);
    mesh_buf_free(&r.body);

    return 0;
}


/* apply's own options */
typedef struct {
    const char  *file;
    const char  *name;
} ctl_apply_t;


static const struct option  ctl_apply_options[] = {
    { "file", required_argument, NULL, CTL_O_FILE },
    { "name", required_argument, NULL, CTL_O_NAME },
    { NULL, 0, NULL, 0 }
};


static int
ctl_apply_take(void *ctx, int opt, const char *v, char *err)
{
    ctl_apply_t  *ap = ctx;

    (void) err;

    switch (opt) {

    case 'f':
    case CTL_O_FILE:
        ap->file = v;
        return 1;

    case CTL_O_NAME:
        ap->name = v;
        return 1;
    }

    return 0;
}


static int
ctl_cmd_apply(ctl_t *c, int argc, char **argv, char *err)
{
    int          rc, npos;
    char         path[512];
    const char  *file, *nm;
    ctl_apply_t  ap = { NULL, NULL };
    json_t      *res;
    mesh_buf_t   b = { NULL, 0, 0 };
    ctl_resp_t   r;

    rc = ctl_args(c, "apply", argc, argv, ctl_apply_options, ":f:",
                  ctl_apply_take, &ap, NULL, 0, &npos, err);
    if (rc < 0) {
        return rc;
    }

    file = ap.file;
    nm = ap.name;

    if (file == NULL) {
        return ctl_error(err, CTL_EUSAGE, "apply: missing -f FILE "
                         "(usage: registryctl %s)", ctl_usage_of("apply"));
    }

    /* without --name, as kubectl applies: each document an object */
    if (nm == NULL) {
        return ctl_objects_send(c, file, 0, err);
    }

    if ((rc = ctl_check_name("policy name", nm, err)) != 0) {
        return rc;
    }

    if (ctl_read_file(file, &b, err) != 0) {
        return -1;
    }

    snprintf(path, sizeof(path), "/v1/policies/%s", nm);

    rc = ctl_call(c, "PUT", path, "application/yaml", b.data, b.len, &r,
                  NULL, err);
    mesh_buf_free(&b);

    if (rc != 0) {
        return -1;
    }

    printf("applied policy %s", nm);

    res = json_loadb(r.body.data, r.body.len, 0, NULL);
    ctl_print_index(res);

    json_decref(res);
    mesh_buf_free(&r.body);

    return 0;
}


static int
ctl_cmd_policies(ctl_t *c, int argc, char **argv, char *err)
{
    int          rc, npos;
    char         path[512], *out;
    const char  *pos[1];
    json_t      *res;
    ctl_resp_t   r;

    rc = ctl_simple_args(c, "policies", argc, argv, pos, 1, &npos, NULL,
                         NULL, err);
    if (rc != 0) {
        return rc;
    }

    if (npos == 1) {
        if ((rc = ctl_check_name("policy name", pos[0], err)) != 0) {
            return rc;
        }

        snprintf(path, sizeof(path), "/v1/policies/%s", pos[0]);

    } else {
        snprintf(path, sizeof(path), "/v1/policies");
    }

    if (ctl_call(c, "GET", path, NULL, NULL, 0, &r, NULL, err) != 0) {
        return -1;
    }

    /* pretty-print JSON; anything else (YAML) as it came */
    res = json_loadb(r.body.data, r.body.len, 0, NULL);
    out = res ? json_dumps(res, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;

    if (out) {
        printf("%s\n", out);

    } else {
        fputs(r.body.data, stdout);
        if (r.body.len == 0 || r.body.data[r.body.len - 1] != '\n') {
            fputc('\n', stdout);
        }
    }

    free(out);
    json_decref(res);
    mesh_buf_free(&r.body);

    return 0;
}


static int
ctl_cmd_version(ctl_t *c, int argc, char **argv, char *err)
{
    int  rc, npos;

    rc = ctl_simple_args(c, "version", argc, argv, NULL, 0, &npos, NULL,
                         NULL, err);
    if (rc != 0) {
        return rc;
    }

    printf("registryctl %s\n", CTL_VERSION);

    return 0;
}


static void
ctl_usage(FILE *f)
{
    const ctl_cmd_t  *cc;

    fprintf(f,
        "usage: registryctl [--registry URL] [--token-file F] [--timeout D]\n"
        "                   [--cacert PEM] [--cert PEM --key PEM] "
        "COMMAND ...\n"
        "\n"
        "commands:\n");

    for (cc = ctl_commands; cc->name; cc++) {
        fprintf(f, "  %s\n", cc->usage);
    }

    fprintf(f,
        "\n"
        "options:\n"
        "  --registry URL    registryd base URL (default: $MESH_REGISTRY, "
        "else " CTL_DEFAULT_URL ")\n"
        "  --token-file F    send the token in F as Authorization: Bearer\n"
        "  --cacert PEM      https: the CA that signs registryd's "
        "certificate\n"
        "  --cert PEM, --key PEM  https: a client certificate and its key\n"
        "  --timeout D       request timeout, e.g. 10s, 500ms "
        "(default 10s)\n"
        "  --weight N        1..1000 (default 1)\n"
        "  --ttl D           instance turns critical without a heartbeat "
        "within D (1s..24h)\n"
        "  --deregister-after D  remove an instance critical that long\n"
        "  --zone Z          zone name\n"
        "  --label k=v       label, repeatable\n"
        "  --check SPEC      run: the instance's health check, tcp or "
        "http:/PATH,\n"
        "                    then ,interval=D,timeout=D,status=S,...\n"
        "  --wait-port       run: register once ADDR:PORT accepts "
        "connections\n"
        "  --json            list, proxies, watch: print JSON\n"
        "  --index N         watch: start after index N (default: now)\n"
        "  -f FILE           apply, delete: YAML file ('-' for stdin)\n"
        "  --name N          apply: store the file as the one policy N "
        "(without:\n"
        "                    each document an object, by kind, namespace "
        "and name)\n"
        "  -n NS             get, delete: the objects' namespace "
        "(default: default)\n"
        "  -o yaml|json      get: one object's YAML as applied, or JSON\n"
        "\n"
        "Exit status 0 on success, 1 on errors, 2 on usage errors.\n");
}


static int
ctl_cmd_help(ctl_t *c, int argc, char **argv, char *err)
{
    (void) c;
    (void) argc;
    (void) argv;
    (void) err;

    ctl_usage(stdout);

    return 0;
}


int
main(int argc, char **argv)
{
    int                i, k, rc, opt;
    char               err[CTL_ERR_LEN];
    const char        *env, *a;
    const ctl_cmd_t   *cc;
    struct option      opts[CTL_OPTS_MAX];
    ctl_t              ctl;

    static const struct option  ctl_main_options[] = {
        { "help", no_argument, NULL, CTL_O_HELP },
        { "version", no_argument, NULL, CTL_O_VERSION },
        { NULL, 0, NULL, 0 }
    };

    /* out of memory is fatal, in libcurl and jansson too (mesh_alloc.h) */
    json_set_alloc_funcs(mesh_xmalloc, free);

    memset(&ctl, 0, sizeof(ctl));
    ctl.timeout_ms = CTL_DEFAULT_TIMEOUT;
    err[0] = '\0';

    env = getenv("MESH_REGISTRY");
    ctl_global_set(&ctl, CTL_O_REGISTRY, CTL_DEFAULT_URL, err);

    rc = 0;

    if (env && env[0]) {
        /* normalised as --registry */
        rc = ctl_global_set(&ctl, CTL_O_REGISTRY, env, err);
        if (rc < 0) {
            fprintf(stderr, "registryctl: MESH_REGISTRY: %s\n", err);
            return 2;
        }
    }

    /* the options before the command ("+": they stop at it) */

    ctl_options(opts, ctl_main_options);
    opterr = 0;

    k = -1;

    while ((opt = getopt_long(argc, argv, "+:h", opts, &k)) != -1) {

        if (opt == '?' || opt == ':') {
            rc = ctl_refused(NULL, opt, argv, err);

        } else if (k >= 0 && (a = ctl_abbreviated(argv, &opts[k])) != NULL) {
            rc = ctl_error(err, CTL_EUSAGE, "unknown option \"%.64s\" "
                           "(try 'registryctl help')", a);

        } else if (opt == 'h' || opt == CTL_O_HELP) {
            ctl_usage(stdout);
            return 0;

        } else if (opt == CTL_O_VERSION) {
            return ctl_cmd_version(&ctl, 0, NULL, err);

        } else {
            rc = ctl_global_set(&ctl, opt, optarg, err);
        }

        if (rc < 0) {
            fprintf(stderr, "registryctl: %s\n", err);
            return 2;
        }

        k = -1;
    }

    i = optind;

    if (i >= argc) {
        fprintf(stderr, "registryctl: missing command "
                "(try 'registryctl help')\n");
        return 2;
    }

    for (cc = ctl_commands; cc->name; cc++) {
        if (strcmp(cc->name, argv[i]) == 0) {
            break;
        }
    }

    if (cc->name == NULL) {
        fprintf(stderr, "registryctl: unknown command \"%.64s\" "
                "(try 'registryctl help')\n", argv[i]);
        return 2;
    }

    curl_global_init_mem(CURL_GLOBAL_DEFAULT, mesh_xmalloc, free,
                         mesh_xrealloc, mesh_xstrdup, mesh_xcalloc);

    rc = cc->handler(&ctl, argc - i - 1, argv + i + 1, err);

    if (ctl.curl) {
        curl_easy_cleanup(ctl.curl);
    }

    free(ctl.token);
    curl_global_cleanup();

    if (rc == 0) {
        if (fflush(stdout) != 0) {
            fprintf(stderr, "registryctl: cannot write output: %s\n",
                    strerror(errno));
            return 1;
        }

        return ctl.exit_code;
    }

    fprintf(stderr, "registryctl: %s\n", err[0] ? err : "failed");

    return rc == CTL_EUSAGE ? 2 : 1;
}
