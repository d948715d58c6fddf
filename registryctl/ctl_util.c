/*
 * ctl_util: registryctl's buffers, the checks of its arguments (names,
 * integers, durations, ADDR:PORT) and its options (getopt_long).
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


/* files */

int
ctl_read_file(const char *path, mesh_buf_t *b, char *err)
{
    FILE    *f;
    char     chunk[8192];
    size_t   n;

    if (strcmp(path, "-") == 0) {
        f = stdin;

    } else {
        f = fopen(path, "r");
        if (f == NULL) {
            return ctl_error(err, -1, "cannot open %s: %s", path,
                             strerror(errno));
        }
    }

    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b->len + n > CTL_MAX_BODY) {
            ctl_error(err, -1, "%s: file too large", path);
            goto fail;
        }

        mesh_buf_add(b, chunk, n);
    }

    if (ferror(f)) {
        ctl_error(err, -1, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }

    mesh_buf_cstr(b);

    if (f != stdin) {
        fclose(f);
    }

    return 0;

fail:

    if (f != stdin) {
        fclose(f);
    }

    mesh_buf_free(b);

    return -1;
}


/* validation */

int
ctl_check_name(const char *what, const char *s, char *err)
{
    if (!mesh_name_valid(s, strlen(s))) {
        return ctl_error(err, CTL_EUSAGE,
                         "invalid %s \"%.64s\": must match "
                         "[A-Za-z0-9][A-Za-z0-9._-]{0,127}", what, s);
    }

    return 0;
}


/* strict decimal integer in [min, max] */
int
ctl_parse_long(const char *s, long min, long max, long *out)
{
    char  *end;
    long   v;

    if (s[0] == '\0' || !isdigit((unsigned char) s[0])) {
        return -1;
    }

    errno = 0;
    v = strtol(s, &end, 10);

    if (errno || *end != '\0' || v < min || v > max) {
        return -1;
    }

    *out = v;

    return 0;
}


/* registryd durations (mesh_units); bare_secs: a bare number is seconds */
static int
ctl_parse_duration(const char *s, int bare_secs, long long *ms)
{
    char     buf[32];
    int64_t  v;

    if (bare_secs && *s && strspn(s, "0123456789") == strlen(s)
        && strlen(s) < sizeof(buf) - 1)
    {
        snprintf(buf, sizeof(buf), "%ss", s);
        s = buf;
    }

    v = mesh_duration_parse(s);
    if (v < 0) {
        return -1;
    }

    *ms = (long long) v;

    return 0;
}


int
ctl_check_ttl(const char *what, const char *s, char *err)
{
    long long  ms;

    if (ctl_parse_duration(s, 0, &ms) != 0
        || ms < 1000 || ms > 24LL * 3600 * 1000)
    {
        return ctl_error(err, CTL_EUSAGE,
                         "invalid %s \"%.32s\": must be a duration 1s..24h "
                         "(e.g. 10s, 1m)", what, s);
    }

    return 0;
}


/*
 * "127.0.0.1:8080" or "[::1]:8080" (common/mesh_addr); addr receives the
 * bare literal.
 */
int
ctl_parse_addr_port(const char *s, char *addr, size_t size, int *port,
    char *err)
{
    switch (mesh_hostport_parse(s, addr, size, port, NULL)) {

    case MESH_ADDR_OK:
        return 0;

    case MESH_ADDR_IP:
        return ctl_error(err, CTL_EUSAGE,
                         "invalid ADDR:PORT \"%.64s\": the host is not an "
                         "IPv%c address literal", s, mesh_hostport_family(s));

    case MESH_ADDR_PORT:
        return ctl_error(err, CTL_EUSAGE,
                         "invalid ADDR:PORT \"%.64s\": port must be 1..65535",
                         s);

    default:
        return ctl_error(err, CTL_EUSAGE,
                         "invalid ADDR:PORT \"%.64s\": expected ADDR:PORT or "
                         "[ADDR6]:PORT", s);
    }
}


static int
ctl_unknown_opt(const char *cmd, const char *a, char *err)
{
    return ctl_error(err, CTL_EUSAGE, "%s: unknown option \"%.64s\"", cmd, a);
}


const char *
ctl_usage_of(const char *cmd)
{
    const ctl_cmd_t  *cc;

    for (cc = ctl_commands; cc->name; cc++) {
        if (strcmp(cc->name, cmd) == 0) {
            return cc->usage;
        }
    }

    return cmd;
}


int
ctl_check_args(const char *cmd, int npos, int min, int max, char *err)
{
    if (npos < min) {
        return ctl_error(err, CTL_EUSAGE,
                         "%s: missing arguments (usage: registryctl %s)",
                         cmd, ctl_usage_of(cmd));
    }

    if (npos > max) {
        return ctl_error(err, CTL_EUSAGE,
                         "%s: too many arguments (usage: registryctl %s)",
                         cmd, ctl_usage_of(cmd));
    }

    return 0;
}


/*
 * Options, read with getopt_long: the global ones (--registry,
 * --token-file, --timeout, --cacert, --cert, --key) anywhere, before the command or among its
 * own, "--name VALUE" or "--name=VALUE", options and arguments in any
 * order.
 */

static const struct option  ctl_global_options[] = {
    { "registry", required_argument, NULL, CTL_O_REGISTRY },
    { "token-file", required_argument, NULL, CTL_O_TOKEN_FILE },
    { "timeout", required_argument, NULL, CTL_O_TIMEOUT },
    { "cacert", required_argument, NULL, CTL_O_CACERT },
    { "cert", required_argument, NULL, CTL_O_CERT },
    { "key", required_argument, NULL, CTL_O_KEY },
    { NULL, 0, NULL, 0 }
};


/* a global option's value; 1 when opt is one, 0 when not, < 0 on error */
int
ctl_global_set(ctl_t *c, int opt, const char *v, char *err)
{
    int          rc;
    char        *url;
    size_t       len;
    long long    ms;
    const char  *p, *comma;

    switch (opt) {

    case CTL_O_REGISTRY:
        /* one URL, or several (replicas), comma-separated, tried in turn */
        c->nurls = 0;

        for (p = v; ; p = comma + 1) {
            comma = strchr(p, ',');
            len = comma ? (size_t) (comma - p) : strlen(p);

            if (len == 0) {
                return ctl_error(err, CTL_EUSAGE, "--registry needs a URL");
            }

            if (c->nurls == CTL_URLS_MAX) {
                return ctl_error(err, CTL_EUSAGE, "--registry: more than %d "
                                 "URLs", CTL_URLS_MAX);
            }

            url = c->urls[c->nurls];

            if (memmem(p, len, "://", 3) == NULL) {
                rc = snprintf(url, sizeof(c->urls[0]), "http://%.*s",
                              (int) len, p);

            } else {
                rc = snprintf(url, sizeof(c->urls[0]), "%.*s", (int) len, p);
            }

            if (rc < 0 || (size_t) rc >= sizeof(c->urls[0])) {
                return ctl_error(err, CTL_EUSAGE, "--registry: URL too long");
            }

            len = strlen(url);
            while (len > 0 && url[len - 1] == '/') {
                url[--len] = '\0';
            }

            c->nurls++;

            if (comma == NULL) {
                break;
            }
        }

        c->cur = 0;
        memcpy(c->url, c->urls[0], sizeof(c->url));

        return 1;

    case CTL_O_TOKEN_FILE:
        c->token_file = v;
        return 1;

    case CTL_O_CACERT:
        c->cacert = v;
        return 1;

    case CTL_O_CERT:
        c->cert = v;
        return 1;

    case CTL_O_KEY:
        c->key = v;
        return 1;

    case CTL_O_TIMEOUT:
        if (ctl_parse_duration(v, 1, &ms) != 0 || ms < 1
            || ms > 3600 * 1000)
        {
            return ctl_error(err, CTL_EUSAGE,
                             "invalid --timeout \"%.32s\": must be a duration "
                             "1ms..1h (e.g. 10s, 500ms)", v);
        }

        c->timeout_ms = (long) ms;
        return 1;
    }

    return 0;
}


/* own + the global options, for getopt_long */
void
ctl_options(struct option *opts, const struct option *own)
{
    size_t  n, k;

    n = 0;

    for (k = 0; own && own[k].name; k++) {
        opts[n++] = own[k];
    }

    for (k = 0; ctl_global_options[k].name; k++) {
        opts[n++] = ctl_global_options[k];
    }

    memset(&opts[n], 0, sizeof(struct option));
}


/* what getopt_long refused: the token it was reading */
int
ctl_refused(const char *cmd, int opt, char **av, char *err)
{
    const char  *a;
    char         shortopt[3];

    a = av[optind - 1];

    if (optopt && optopt < 256 && (a == NULL || a[1] != '-')) {
        shortopt[0] = '-';
        shortopt[1] = (char) optopt;
        shortopt[2] = '\0';
        a = shortopt;
    }

    if (opt == ':') {
        return ctl_error(err, CTL_EUSAGE, "option %.64s needs a value", a);
    }

    if (cmd == NULL) {
        return ctl_error(err, CTL_EUSAGE, "unknown option \"%.64s\" "
                         "(try 'registryctl help')", a);
    }

    return ctl_unknown_opt(cmd, a, err);
}


/*
 * getopt_long takes "--wei" for "--weight"; registryctl wants options
 * written whole: the token of the long option just read when it is not
 * (that option being opts[k]), else NULL.
 */
const char *
ctl_abbreviated(char **av, const struct option *o)
{
    size_t       n;
    const char  *a;

    a = av[optind - 1];

    if (o->has_arg == required_argument && optarg == a && optind >= 2) {
        a = av[optind - 2];             /* "--name VALUE" */
    }

    n = strlen(o->name);

    if (strncmp(a, "--", 2) == 0 && strncmp(a + 2, o->name, n) == 0
        && (a[2 + n] == '\0' || a[2 + n] == '='))
    {
        return NULL;
    }

    return a;
}


/*
 * The arguments of a command (argv[0..argc), argv[-1] being its name):
 * the global options are taken here, the command's own (own, shortopts)
 * handed to take, and the positional arguments, at most maxpos, put in
 * pos.
 */
int
ctl_args(ctl_t *c, const char *cmd, int argc, char **argv,
    const struct option *own, const char *shortopts,
    int (*take)(void *ctx, int opt, const char *val, char *err), void *ctx,
    const char **pos, int maxpos, int *npos, char *err)
{
    int             opt, rc, k;
    char          **av;
    const char     *a;
    struct option   opts[CTL_OPTS_MAX];

    ctl_options(opts, own);

    av = argv - 1;
    optind = 0;                 /* GNU: start over */
    opterr = 0;
    k = -1;

    while ((opt = getopt_long(argc + 1, av, shortopts, opts, &k)) != -1) {

        if (opt == '?' || opt == ':') {
            return ctl_refused(cmd, opt, av, err);
        }

        if (k >= 0 && (a = ctl_abbreviated(av, &opts[k])) != NULL) {
            return ctl_unknown_opt(cmd, a, err);
        }

        k = -1;

        rc = ctl_global_set(c, opt, optarg, err);
        if (rc == 0 && take) {
            rc = take(ctx, opt, optarg, err);
        }

        if (rc < 0) {
            return rc;
        }
    }

    *npos = 0;

    for ( /* void */ ; optind < argc + 1; optind++) {
        if (*npos >= maxpos) {
            return ctl_check_args(cmd, maxpos + 1, 0, maxpos, err);
        }

        pos[(*npos)++] = av[optind];
    }

    return 0;
}


/* a command whose own options are flags ("--json"): set[k] = 1 for the
 * flags[k] given */
typedef struct {
    const char  **flags;
    int          *set;
} ctl_flags_t;


static int
ctl_take_flag(void *ctx, int opt, const char *val, char *err)
{
    ctl_flags_t  *f = ctx;

    (void) val;
    (void) err;

    if (opt >= CTL_O_FLAG) {
        f->set[opt - CTL_O_FLAG] = 1;
        return 1;
    }

    return 0;
}


int
ctl_simple_args(ctl_t *c, const char *cmd, int argc, char **argv,
    const char **pos, int maxpos, int *npos, const char **flags, int *set,
    char *err)
{
    int             k;
    ctl_flags_t     f;
    struct option   own[CTL_OPTS_MAX];

    for (k = 0; flags && flags[k]; k++) {
        own[k].name = flags[k] + 2;         /* "--json" */
        own[k].has_arg = no_argument;
        own[k].flag = NULL;
        own[k].val = CTL_O_FLAG + k;
    }

    memset(&own[k], 0, sizeof(struct option));

    f.flags = flags;
    f.set = set;

    return ctl_args(c, cmd, argc, argv, own, ":", ctl_take_flag, &f, pos,
                    maxpos, npos, err);
}
