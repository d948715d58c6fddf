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
 * Only system headers; the Makefile links this file alone with libcurl and
 * jansson.
 */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "mesh_name.h"
#include "mesh_units.h"


#define CTL_VERSION          "0.2.0"
#define CTL_ERR_LEN          256
#define CTL_EUSAGE           -2
#define CTL_DEFAULT_URL      "http://127.0.0.1:7770"
#define CTL_DEFAULT_TIMEOUT  10000              /* ms */
#define CTL_MAX_BODY         (64 * 1024 * 1024) /* response and file limit */
#define CTL_NAME_MAX         MESH_NAME_MAX


typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
} ctl_buf_t;


typedef struct {
    char         url[1024];     /* registry base URL, no trailing slash */
    const char  *token_file;
    char        *token;
    long         timeout_ms;
    CURL        *curl;
} ctl_t;


typedef struct {
    long        status;
    char        reason[64];     /* reason phrase from the status line */
    ctl_buf_t   body;
} ctl_resp_t;


typedef int (*ctl_cmd_pt)(ctl_t *c, int argc, char **argv, char *err);

typedef struct {
    const char  *name;
    ctl_cmd_pt   handler;
    const char  *usage;
} ctl_cmd_t;


static int ctl_cmd_register(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_deregister(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_heartbeat(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_list(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_get(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_apply(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_policies(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_proxies(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_version(ctl_t *c, int argc, char **argv, char *err);
static int ctl_cmd_help(ctl_t *c, int argc, char **argv, char *err);


static const ctl_cmd_t  ctl_commands[] = {
    { "register", ctl_cmd_register,
      "register SVC ID ADDR:PORT [--weight N] [--ttl D] [--zone Z] "
      "[--deregister-after D] [--label k=v]..." },
    { "deregister", ctl_cmd_deregister, "deregister SVC ID" },
    { "heartbeat", ctl_cmd_heartbeat, "heartbeat SVC ID" },
    { "list", ctl_cmd_list, "list [SVC] [--json]" },
    { "get", ctl_cmd_get, "get SVC ID" },
    { "apply", ctl_cmd_apply, "apply -f FILE [--name N]" },
    { "policies", ctl_cmd_policies, "policies [NAME]" },
    { "proxies", ctl_cmd_proxies, "proxies [--json]" },
    { "version", ctl_cmd_version, "version" },
    { "help", ctl_cmd_help, "help" },
    { NULL, NULL, NULL }
};


static int
ctl_error(char *err, int rc, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(err, CTL_ERR_LEN, fmt, ap);
    va_end(ap);

    return rc;
}


/* buffers */

static int
ctl_buf_append(ctl_buf_t *b, const void *data, size_t len)
{
    size_t   cap;
    char    *p;

    if (b->len + len + 1 > b->cap) {
        cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1) {
            cap *= 2;
        }

        p = realloc(b->data, cap);
        if (p == NULL) {
            return -1;
        }

        b->data = p;
        b->cap = cap;
    }

    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';

    return 0;
}


static void
ctl_buf_free(ctl_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


static int
ctl_read_file(const char *path, ctl_buf_t *b, char *err)
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

        if (ctl_buf_append(b, chunk, n) != 0) {
            ctl_error(err, -1, "%s: out of memory", path);
            goto fail;
        }
    }

    if (ferror(f)) {
        ctl_error(err, -1, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }

    if (b->data == NULL && ctl_buf_append(b, "", 0) != 0) {
        ctl_error(err, -1, "%s: out of memory", path);
        goto fail;
    }

    if (f != stdin) {
        fclose(f);
    }

    return 0;

fail:

    if (f != stdin) {
        fclose(f);
    }

    ctl_buf_free(b);

    return -1;
}


/* validation */

static int
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
static int
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


static int
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
 * "127.0.0.1:8080" or "[::1]:8080"; addr receives the bare literal.
 */
static int
ctl_parse_addr_port(const char *s, char *addr, size_t size, long *port,
    char *err)
{
    const char      *colon, *host, *p;
    size_t           hlen;
    int              family;
    unsigned char    tmp[sizeof(struct in6_addr)];

    if (s[0] == '[') {
        p = strchr(s, ']');
        if (p == NULL || p[1] != ':') {
            goto invalid;
        }

        host = s + 1;
        hlen = p - host;
        colon = p + 1;
        family = AF_INET6;

    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', colon - s) != NULL) {
            goto invalid;
        }

        host = s;
        hlen = colon - s;
        family = AF_INET;
    }

    if (hlen == 0 || hlen >= size) {
        goto invalid;
    }

    memcpy(addr, host, hlen);
    addr[hlen] = '\0';

    if (inet_pton(family, addr, tmp) != 1) {
        return ctl_error(err, CTL_EUSAGE,
                         "invalid ADDR:PORT \"%.64s\": \"%.64s\" is not an "
                         "IPv%c address literal", s, addr,
                         family == AF_INET ? '4' : '6');
    }

    if (ctl_parse_long(colon + 1, 1, 65535, port) != 0) {
        return ctl_error(err, CTL_EUSAGE,
                         "invalid ADDR:PORT \"%.64s\": port must be 1..65535",
                         s);
    }

    return 0;

invalid:

    return ctl_error(err, CTL_EUSAGE,
                     "invalid ADDR:PORT \"%.64s\": expected ADDR:PORT or "
                     "[ADDR6]:PORT", s);
}


static int
ctl_unknown_opt(const char *cmd, const char *a, char *err)
{
    return ctl_error(err, CTL_EUSAGE, "%s: unknown option \"%.64s\"", cmd, a);
}


static const char *
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


static int
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
 * Generic command-line walk for commands with only positional arguments
 * and boolean flags from flags[] (NULL-terminated).
 */
/*
 * Options, read with getopt_long: the global ones (--registry,
 * --token-file, --timeout) anywhere, before the command or among its
 * own, "--name VALUE" or "--name=VALUE", options and arguments in any
 * order.
 */

enum {
    CTL_O_REGISTRY = 256,
    CTL_O_TOKEN_FILE,
    CTL_O_TIMEOUT,
    CTL_O_HELP,
    CTL_O_VERSION,
    CTL_O_WEIGHT,
    CTL_O_TTL,
    CTL_O_ZONE,
    CTL_O_DEREGISTER_AFTER,
    CTL_O_LABEL,
    CTL_O_FILE,
    CTL_O_NAME,
    CTL_O_FLAG = 1000           /* + the flag's place in its list */
};

#define CTL_OPTS_MAX  16

static const struct option  ctl_global_options[] = {
    { "registry", required_argument, NULL, CTL_O_REGISTRY },
    { "token-file", required_argument, NULL, CTL_O_TOKEN_FILE },
    { "timeout", required_argument, NULL, CTL_O_TIMEOUT },
    { NULL, 0, NULL, 0 }
};


/* a global option's value; 1 when opt is one, 0 when not, < 0 on error */
static int
ctl_global_set(ctl_t *c, int opt, const char *v, char *err)
{
    int        rc;
    size_t     len;
    long long  ms;

    switch (opt) {

    case CTL_O_REGISTRY:
        if (v[0] == '\0') {
            return ctl_error(err, CTL_EUSAGE, "--registry needs a URL");
        }

        if (strstr(v, "://") == NULL) {
            rc = snprintf(c->url, sizeof(c->url), "http://%s", v);

        } else {
            rc = snprintf(c->url, sizeof(c->url), "%s", v);
        }

        if (rc < 0 || (size_t) rc >= sizeof(c->url)) {
            return ctl_error(err, CTL_EUSAGE, "--registry: URL too long");
        }

        len = strlen(c->url);
        while (len > 0 && c->url[len - 1] == '/') {
            c->url[--len] = '\0';
        }

        return 1;

    case CTL_O_TOKEN_FILE:
        c->token_file = v;
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
static void
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
static int
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
static const char *
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
static int
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


static int
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

/* HTTP */

static size_t
ctl_write_cb(char *ptr, size_t size, size_t nmemb, void *data)
{
    ctl_buf_t  *b = data;
    size_t      n = size * nmemb;

    if (b->len + n > CTL_MAX_BODY || ctl_buf_append(b, ptr, n) != 0) {
        return 0;
    }

    return n;
}


static size_t
ctl_header_cb(char *ptr, size_t size, size_t nmemb, void *data)
{
    ctl_resp_t  *r = data;
    size_t       n = size * nmemb, i, j;

    /* "HTTP/1.1 404 Not Found\r\n": keep the reason phrase */
    if (n > 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        for (i = 5; i < n && ptr[i] != ' '; i++) { /* void */ }
        for (i++; i < n && ptr[i] != ' ' && ptr[i] != '\r'; i++) { /* void */ }

        r->reason[0] = '\0';

        if (i < n && ptr[i] == ' ') {
            i++;
            for (j = 0; i < n && ptr[i] != '\r' && ptr[i] != '\n'
                        && j < sizeof(r->reason) - 1; i++, j++)
            {
                r->reason[j] = ptr[i];
            }

            r->reason[j] = '\0';
        }
    }

    return n;
}


static const char *
ctl_status_text(long status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default:  return "";
    }
}


static int
ctl_load_token(ctl_t *c, char *err)
{
    ctl_buf_t   b = { NULL, 0, 0 };
    char       *s, *end, e[CTL_ERR_LEN];

    if (c->token_file == NULL || c->token != NULL) {
        return 0;
    }

    if (ctl_read_file(c->token_file, &b, e) != 0) {
        return ctl_error(err, -1, "token file: %s", e);
    }

    s = b.data;
    while (*s && isspace((unsigned char) *s)) {
        s++;
    }

    end = s + strlen(s);
    while (end > s && isspace((unsigned char) end[-1])) {
        end--;
    }

    *end = '\0';

    if (*s == '\0') {
        ctl_buf_free(&b);
        return ctl_error(err, -1, "token file %s is empty", c->token_file);
    }

    if (strpbrk(s, "\r\n") != NULL) {
        ctl_buf_free(&b);
        return ctl_error(err, -1, "token file %s holds more than one line",
                         c->token_file);
    }

    c->token = strdup(s);
    ctl_buf_free(&b);

    if (c->token == NULL) {
        return ctl_error(err, -1, "out of memory");
    }

    return 0;
}


/*
 * One request.  Returns 0 when an HTTP answer arrived (any status, in r),
 * -1 when none did.
 */
static int
ctl_http(ctl_t *c, const char *method, const char *path, const char *ctype,
    const char *body, size_t len, ctl_resp_t *r, char *err)
{
    CURL               *h;
    CURLcode            rc;
    char                url[2048], hdr[1024], cerr[CURL_ERROR_SIZE];
    long                oserr;
    struct curl_slist  *hdrs = NULL, *t;

    memset(r, 0, sizeof(*r));

    if (ctl_load_token(c, err) != 0) {
        return -1;
    }

    if (c->curl == NULL) {
        c->curl = curl_easy_init();
        if (c->curl == NULL) {
            return ctl_error(err, -1, "cannot initialize libcurl");
        }

    } else {
        curl_easy_reset(c->curl);
    }

    h = c->curl;

    snprintf(url, sizeof(url), "%s%s", c->url, path);

    t = curl_slist_append(hdrs, "Expect:");
    if (t == NULL) {
        goto nomem;
    }
    hdrs = t;

    t = curl_slist_append(hdrs, "Accept: application/json");
    if (t == NULL) {
        goto nomem;
    }
    hdrs = t;

    /* "Content-Type:" alone stops libcurl from adding its own */
    snprintf(hdr, sizeof(hdr), "Content-Type:%s%s", ctype ? " " : "",
             ctype ? ctype : "");
    t = curl_slist_append(hdrs, hdr);
    if (t == NULL) {
        goto nomem;
    }
    hdrs = t;

    if (c->token) {
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", c->token);
        t = curl_slist_append(hdrs, hdr);
        if (t == NULL) {
            goto nomem;
        }
        hdrs = t;
    }

    cerr[0] = '\0';

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "registryctl/" CTL_VERSION);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ctl_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, ctl_header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");

    /* a registry on loopback is never reached through a proxy */
    if (getenv("no_proxy") == NULL && getenv("NO_PROXY") == NULL) {
        curl_easy_setopt(h, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
    }

    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }

    if (body != NULL || strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t) (body ? len : 0));
    }

    rc = curl_easy_perform(h);

    oserr = 0;
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);

    curl_slist_free_all(hdrs);

    if (rc == CURLE_OK) {
        if (r->body.data == NULL && ctl_buf_append(&r->body, "", 0) != 0) {
            return ctl_error(err, -1, "out of memory");
        }

        return 0;
    }

    ctl_buf_free(&r->body);

    switch (rc) {

    case CURLE_COULDNT_CONNECT:
        return ctl_error(err, -1, "cannot reach registry %s: %s", c->url,
                         oserr ? strerror((int) oserr) : "connection failed");

    case CURLE_COULDNT_RESOLVE_HOST:
        return ctl_error(err, -1, "cannot reach registry %s: cannot resolve "
                         "host", c->url);

    case CURLE_OPERATION_TIMEDOUT:
        return ctl_error(err, -1, "registry %s: no answer within %ldms",
                         c->url, c->timeout_ms);

    case CURLE_WRITE_ERROR:
        return ctl_error(err, -1, "registry %s: answer too large or out of "
                         "memory", c->url);

    default:
        return ctl_error(err, -1, "registry %s: %s", c->url,
                         cerr[0] ? cerr : curl_easy_strerror(rc));
    }

nomem:

    curl_slist_free_all(hdrs);

    return ctl_error(err, -1, "out of memory");
}


/* copy s into out, folding control characters so the reason is one line */
static void
ctl_one_line(char *out, size_t size, const char *s)
{
    size_t  i;

    for (i = 0; s[i] && i < size - 1; i++) {
        out[i] = iscntrl((unsigned char) s[i]) ? ' ' : s[i];
    }

    out[i] = '\0';
}


/*
 * Non-2xx answers become "404 Not Found: reason (field f, line l, ...)".
 */
static int
ctl_check_status(ctl_resp_t *r, char *err)
{
    json_t       *j, *v;
    const char   *reason, *msg;
    char          text[160], extra[128];
    size_t        n;
    int           first;

    if (r->status >= 200 && r->status < 300) {
        return 0;
    }

    reason = r->reason[0] ? r->reason : ctl_status_text(r->status);

    j = json_loadb(r->body.data, r->body.len, 0, NULL);

    msg = NULL;
    if (j && json_is_object(j)) {
        v = json_object_get(j, "error");
        if (json_is_string(v)) {
            msg = json_string_value(v);
        }
    }

    if (msg == NULL) {
        /* not our JSON (a proxy in between?): first line of the body */
        ctl_one_line(text, sizeof(text), r->body.data ? r->body.data : "");
        n = strcspn(r->body.data ? r->body.data : "", "\r\n");
        if (n < sizeof(text)) {
            text[n] = '\0';
        }

        json_decref(j);

        if (text[0] == '\0') {
            return ctl_error(err, -1, "%ld %s", r->status, reason);
        }

        return ctl_error(err, -1, "%ld %s: %s", r->status, reason, text);
    }

    ctl_one_line(text, sizeof(text), msg);

    extra[0] = '\0';
    n = 0;
    first = 1;

    v = json_object_get(j, "field");
    if (json_is_string(v)) {
        n += snprintf(extra + n, sizeof(extra) - n, "field %.64s",
                      json_string_value(v));
        first = 0;
    }

    v = json_object_get(j, "line");
    if (json_is_integer(v) && n < sizeof(extra)) {
        n += snprintf(extra + n, sizeof(extra) - n, "%sline %lld",
                      first ? "" : ", ", (long long) json_integer_value(v));
        first = 0;
    }

    v = json_object_get(j, "column");
    if (json_is_integer(v) && n < sizeof(extra)) {
        snprintf(extra + n, sizeof(extra) - n, "%scolumn %lld",
                 first ? "" : ", ", (long long) json_integer_value(v));
        first = 0;
    }

    json_decref(j);

    if (first) {
        return ctl_error(err, -1, "%ld %s: %s", r->status, reason, text);
    }

    ctl_one_line(extra, sizeof(extra), extra);

    return ctl_error(err, -1, "%ld %s: %s (%s)", r->status, reason, text,
                     extra);
}


/* request + status check + JSON parse of a 2xx body (may be NULL) */
static int
ctl_call(ctl_t *c, const char *method, const char *path, const char *ctype,
    const char *body, size_t len, ctl_resp_t *r, json_t **json, char *err)
{
    if (ctl_http(c, method, path, ctype, body, len, r, err) != 0) {
        return -1;
    }

    if (ctl_check_status(r, err) != 0) {
        ctl_buf_free(&r->body);
        return -1;
    }

    if (json) {
        *json = json_loadb(r->body.data, r->body.len, 0, NULL);
        if (*json == NULL) {
            ctl_buf_free(&r->body);
            return ctl_error(err, -1, "registry %s: %ld answer is not JSON",
                             c->url, r->status);
        }
    }

    return 0;
}


static long long
ctl_index(json_t *j)
{
    json_t  *v = json_object_get(j, "index");

    return json_is_integer(v) ? (long long) json_integer_value(v) : -1;
}


static void
ctl_print_index(json_t *j)
{
    long long  idx = ctl_index(j);

    if (idx >= 0) {
        printf(" (index %lld)", idx);
    }

    printf("\n");
}


/* commands */

/* register's own options */
typedef struct {
    json_t       *labels;
    const char   *ttl;
    const char   *zone;
    const char   *dereg;
    const char   *weight;
} ctl_register_t;


static const struct option  ctl_register_options[] = {
    { "weight", required_argument, NULL, CTL_O_WEIGHT },
    { "ttl", required_argument, NULL, CTL_O_TTL },
    { "zone", required_argument, NULL, CTL_O_ZONE },
    { "deregister-after", required_argument, NULL, CTL_O_DEREGISTER_AFTER },
    { "label", required_argument, NULL, CTL_O_LABEL },
    { NULL, 0, NULL, 0 }
};


static int
ctl_register_take(void *ctx, int opt, const char *v, char *err)
{
    ctl_register_t  *reg = ctx;

    char         key[CTL_NAME_MAX + 1];
    const char  *eq;

    switch (opt) {

    case CTL_O_WEIGHT:
        reg->weight = v;
        return 1;

    case CTL_O_TTL:
        reg->ttl = v;
        return 1;

    case CTL_O_ZONE:
        reg->zone = v;
        return 1;

    case CTL_O_DEREGISTER_AFTER:
        reg->dereg = v;
        return 1;

    case CTL_O_LABEL:
        eq = strchr(v, '=');
        if (eq == NULL || eq == v || eq - v >= CTL_NAME_MAX) {
            return ctl_error(err, CTL_EUSAGE,
                             "invalid --label \"%.64s\": expected k=v", v);
        }

        snprintf(key, sizeof(key), "%.*s", (int) (eq - v), v);

        if (!mesh_name_valid(key, strlen(key))) {
            return ctl_error(err, CTL_EUSAGE,
                             "invalid label key \"%.64s\": must match "
                             MESH_NAME_RULE, key);
        }

        if (json_object_set_new(reg->labels, key, json_string(eq + 1)) != 0)
        {
            return ctl_error(err, CTL_EUSAGE,
                             "invalid --label \"%.64s\": value is not UTF-8",
                             v);
        }

        return 1;
    }

    return 0;
}


static int
ctl_cmd_register(ctl_t *c, int argc, char **argv, char *err)
{
    int             rc, npos;
    long            port, weight;
    char            addr[INET6_ADDRSTRLEN + 1], path[512], *body;
    const char     *pos[3];
    const char     *ttl, *zone, *dereg, *wstr;
    json_t         *req, *labels, *res;
    ctl_resp_t      r;
    ctl_register_t  reg;

    req = json_object();
    labels = json_object();
    if (req == NULL || labels == NULL) {
        json_decref(req);
        json_decref(labels);
        return ctl_error(err, -1, "out of memory");
    }

    reg.labels = labels;
    reg.ttl = NULL;
    reg.zone = NULL;
    reg.dereg = NULL;
    reg.weight = NULL;

    rc = ctl_args(c, "register", argc, argv, ctl_register_options, ":",
                  ctl_register_take, &reg, pos, 3, &npos, err);
    if (rc < 0) {
        goto done;
    }

    ttl = reg.ttl;
    zone = reg.zone;
    dereg = reg.dereg;
    wstr = reg.weight;

    if ((rc = ctl_check_args("register", npos, 3, 3, err)) != 0
        || (rc = ctl_check_name("service name", pos[0], err)) != 0
        || (rc = ctl_check_name("instance id", pos[1], err)) != 0
        || (rc = ctl_parse_addr_port(pos[2], addr, sizeof(addr), &port,
                                     err)) != 0)
    {
        goto done;
    }

    json_object_set_new(req, "address", json_string(addr));
    json_object_set_new(req, "port", json_integer(port));

    if (wstr) {
        if (ctl_parse_long(wstr, 1, 1000, &weight) != 0) {
            rc = ctl_error(err, CTL_EUSAGE,
                           "invalid --weight \"%.32s\": weight must be "
                           "1..1000", wstr);
            goto done;
        }

        json_object_set_new(req, "weight", json_integer(weight));
    }

    if (zone) {
        if (zone[0] == '\0' || strlen(zone) > CTL_NAME_MAX) {
            rc = ctl_error(err, CTL_EUSAGE,
                           "invalid --zone: must be 1..128 bytes");
            goto done;
        }

        if (json_object_set_new(req, "zone", json_string(zone)) != 0) {
            rc = ctl_error(err, CTL_EUSAGE, "invalid --zone: not UTF-8");
            goto done;
        }
    }

    if (ttl) {
        if ((rc = ctl_check_ttl("--ttl", ttl, err)) != 0) {
            goto done;
        }

        json_object_set_new(req, "ttl", json_string(ttl));
    }

    if (dereg) {
        if ((rc = ctl_check_ttl("--deregister-after", dereg, err)) != 0) {
            goto done;
        }

        json_object_set_new(req, "deregister_after", json_string(dereg));
    }

    if (json_object_size(labels) > 0) {
        json_object_set(req, "labels", labels);
    }

    body = json_dumps(req, JSON_COMPACT);
    if (body == NULL) {
        rc = ctl_error(err, -1, "out of memory");
        goto done;
    }

    snprintf(path, sizeof(path), "/v1/services/%s/instances/%s",
             pos[0], pos[1]);

    rc = ctl_call(c, "PUT", path, "application/json", body, strlen(body),
                  &r, &res, err);
    free(body);

    if (rc != 0) {
        goto done;
    }

    printf("%s %s/%s %s%s%s:%ld", r.status == 201 ? "registered" : "updated",
           pos[0], pos[1], strchr(addr, ':') ? "[" : "", addr,
           strchr(addr, ':') ? "]" : "", port);
    ctl_print_index(res);

    json_decref(res);
    ctl_buf_free(&r.body);

done:

    json_decref(req);
    json_decref(labels);

    return rc;
}


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
    ctl_buf_free(&r.body);

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
    ctl_buf_free(&r.body);

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
    ctl_buf_free(&r.body);

    return 0;
}


/* tables */

#define CTL_COLS  8

typedef struct {
    int         ncols;
    size_t      width[CTL_COLS];
    size_t      nrows;
    char      **cells;          /* nrows * ncols, owned */
} ctl_table_t;


static int
ctl_table_add(ctl_table_t *t, const char **row)
{
    char   **p;
    int      k;

    p = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
    if (p == NULL) {
        return -1;
    }

    t->cells = p;
    p += t->nrows * t->ncols;

    for (k = 0; k < t->ncols; k++) {
        p[k] = strdup(row[k] ? row[k] : "");
        if (p[k] == NULL) {
            while (k-- > 0) {
                free(p[k]);
            }
            return -1;
        }

        if (strlen(p[k]) > t->width[k]) {
            t->width[k] = strlen(p[k]);
        }
    }

    t->nrows++;

    return 0;
}


static void
ctl_table_print_free(ctl_table_t *t)
{
    size_t   i;
    int      k;
    char    *cell;

    for (i = 0; i < t->nrows; i++) {
        for (k = 0; k < t->ncols; k++) {
            cell = t->cells[i * t->ncols + k];

            if (k == t->ncols - 1) {
                printf("%s\n", cell);

            } else {
                printf("%-*s  ", (int) t->width[k], cell);
            }

            free(cell);
        }
    }

    free(t->cells);
    t->cells = NULL;
}


static const char *
ctl_str(json_t *o, const char *key, char *buf, size_t size)
{
    json_t  *v = json_object_get(o, key);

    if (json_is_string(v)) {
        return json_string_value(v)[0] ? json_string_value(v) : "-";
    }

    if (json_is_integer(v)) {
        snprintf(buf, size, "%lld", (long long) json_integer_value(v));
        return buf;
    }

    return "-";
}


static int
ctl_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char * const *) a, *(const char * const *) b);
}


/* labels as "k=v,k=v", keys sorted */
static void
ctl_labels(json_t *labels, char *buf, size_t size)
{
    const char  *keys[64], *key;
    json_t      *v;
    size_t       n, i, len;

    buf[0] = '\0';
    n = 0;

    if (!json_is_object(labels)) {
        snprintf(buf, size, "-");
        return;
    }

    json_object_foreach(labels, key, v) {
        if (n < sizeof(keys) / sizeof(keys[0])) {
            keys[n++] = key;
        }
    }

    if (n == 0) {
        snprintf(buf, size, "-");
        return;
    }

    qsort(keys, n, sizeof(keys[0]), ctl_cmp_str);

    len = 0;
    for (i = 0; i < n && len < size; i++) {
        v = json_object_get(labels, keys[i]);
        len += snprintf(buf + len, size - len, "%s%s=%s", i ? "," : "",
                        keys[i], json_is_string(v) ? json_string_value(v) : "");
    }
}


/* --json: the answer's body as it came */
static void
ctl_print_body(ctl_resp_t *r)
{
    fputs(r->body.data, stdout);

    if (r->body.len == 0 || r->body.data[r->body.len - 1] != '\n') {
        fputc('\n', stdout);
    }
}


/* a table that will not be printed */
static void
ctl_table_drop(ctl_table_t *t)
{
    size_t  i;

    for (i = 0; i < t->nrows * t->ncols; i++) {
        free(t->cells[i]);
    }

    free(t->cells);
}


static int
ctl_cmd_list(ctl_t *c, int argc, char **argv, char *err)
{
    int           rc, npos, set[1] = { 0 };
    char          path[512], n1[32], n2[32], n3[32], n4[32], n5[32];
    char          labels[1024];
    char          addr[INET6_ADDRSTRLEN + 2];
    const char   *pos[1], *flags[] = { "--json", NULL }, *row[CTL_COLS];
    size_t        i;
    json_t       *res, *arr, *e;
    ctl_resp_t    r;
    ctl_table_t   t;

    rc = ctl_simple_args(c, "list", argc, argv, pos, 1, &npos, flags, set,
                         err);
    if (rc != 0) {
        return rc;
    }

    if (npos == 1) {
        if ((rc = ctl_check_name("service name", pos[0], err)) != 0) {
            return rc;
        }

        snprintf(path, sizeof(path), "/v1/services/%s", pos[0]);

    } else {
        snprintf(path, sizeof(path), "/v1/services");
    }

    if (ctl_call(c, "GET", path, NULL, NULL, 0, &r, &res, err) != 0) {
        return -1;
    }

    if (set[0]) {
        ctl_print_body(&r);
        json_decref(res);
        ctl_buf_free(&r.body);
        return 0;
    }

    memset(&t, 0, sizeof(t));
    rc = 0;

    arr = json_object_get(res, npos ? "instances" : "services");
    if (!json_is_array(arr)) {
        rc = ctl_error(err, -1, "registry %s: unexpected answer to GET %s",
                       c->url, path);
        goto done;
    }

    if (npos == 0) {
        t.ncols = 3;
        row[0] = "NAME";
        row[1] = "INSTANCES";
        row[2] = "HEALTHY";

    } else {
        t.ncols = 7;
        row[0] = "ID";
        row[1] = "ADDRESS";
        row[2] = "PORT";
        row[3] = "WEIGHT";
        row[4] = "ZONE";
        row[5] = "HEALTH";
        row[6] = "LABELS";
    }

    if (ctl_table_add(&t, row) != 0) {
        goto nomem;
    }

    json_array_foreach(arr, i, e) {
        if (npos == 0) {
            row[0] = ctl_str(e, "name", n1, sizeof(n1));
            row[1] = ctl_str(e, "instances", n2, sizeof(n2));
            row[2] = ctl_str(e, "healthy", n3, sizeof(n3));

        } else {
            row[0] = ctl_str(e, "id", n1, sizeof(n1));
            row[1] = ctl_str(e, "address", addr, sizeof(addr));
            row[2] = ctl_str(e, "port", n2, sizeof(n2));
            row[3] = ctl_str(e, "weight", n3, sizeof(n3));
            row[4] = ctl_str(e, "zone", n4, sizeof(n4));
            row[5] = ctl_str(e, "health", n5, sizeof(n5));
            ctl_labels(json_object_get(e, "labels"), labels, sizeof(labels));
            row[6] = labels;
        }

        if (ctl_table_add(&t, row) != 0) {
            goto nomem;
        }
    }

    ctl_table_print_free(&t);

    goto done;

nomem:

    ctl_table_drop(&t);
    rc = ctl_error(err, -1, "out of memory");

done:

    json_decref(res);
    ctl_buf_free(&r.body);

    return rc;
}


/* the nginx that poll the registry, as GET /v1/proxies lists them */
static int
ctl_cmd_proxies(ctl_t *c, int argc, char **argv, char *err)
{
    int           rc, npos, set[1] = { 0 };
    char          n1[32], n2[32], seen[32];
    const char   *flags[] = { "--json", NULL }, *row[CTL_COLS], *ts;
    size_t        i;
    json_t       *res, *arr, *e, *lag;
    ctl_resp_t    r;
    ctl_table_t   t;

    rc = ctl_simple_args(c, "proxies", argc, argv, NULL, 0, &npos, flags,
                         set, err);
    if (rc != 0) {
        return rc;
    }

    if (ctl_call(c, "GET", "/v1/proxies", NULL, NULL, 0, &r, &res, err)
        != 0)
    {
        return -1;
    }

    if (set[0]) {
        ctl_print_body(&r);
        json_decref(res);
        ctl_buf_free(&r.body);
        return 0;
    }

    memset(&t, 0, sizeof(t));
    rc = 0;

    arr = json_object_get(res, "proxies");
    if (!json_is_array(arr)) {
        rc = ctl_error(err, -1, "registry %s: unexpected answer to GET "
                       "/v1/proxies", c->url);
        goto done;
    }

    t.ncols = 8;
    row[0] = "NAME";
    row[1] = "ADDRESS";
    row[2] = "STATE";
    row[3] = "INDEX";
    row[4] = "LAG";
    row[5] = "LAST SEEN";
    row[6] = "NGINX";
    row[7] = "MODULE";

    if (ctl_table_add(&t, row) != 0) {
        goto nomem;
    }

    json_array_foreach(arr, i, e) {
        row[0] = ctl_str(e, "name", NULL, 0);
        row[1] = ctl_str(e, "address", NULL, 0);
        row[2] = ctl_str(e, "state", NULL, 0);
        row[3] = ctl_str(e, "index", n1, sizeof(n1));

        lag = json_object_get(e, "lag");
        row[4] = json_is_integer(lag) ? ctl_str(e, "lag", n2, sizeof(n2))
                                      : "?";

        /* "2026-12-06T07:12:53.123Z": the time of day is enough */
        ts = ctl_str(e, "last_seen", NULL, 0);
        snprintf(seen, sizeof(seen), "%.8s", strlen(ts) > 11 ? ts + 11 : ts);
        row[5] = seen;

        row[6] = ctl_str(e, "nginx", NULL, 0);
        row[7] = ctl_str(e, "module", NULL, 0);

        if (ctl_table_add(&t, row) != 0) {
            goto nomem;
        }
    }

    ctl_table_print_free(&t);

    goto done;

nomem:

    ctl_table_drop(&t);
    rc = ctl_error(err, -1, "out of memory");

done:

    json_decref(res);
    ctl_buf_free(&r.body);

    return rc;
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
    char         path[512], name[CTL_NAME_MAX + 1];
    const char  *file, *nm, *base, *dot;
    ctl_apply_t  ap = { NULL, NULL };
    json_t      *res;
    ctl_buf_t    b = { NULL, 0, 0 };
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

    if (nm == NULL) {
        if (strcmp(file, "-") == 0) {
            return ctl_error(err, CTL_EUSAGE,
                             "apply: --name is required with -f -");
        }

        base = strrchr(file, '/');
        base = base ? base + 1 : file;
        dot = strrchr(base, '.');

        if (dot == NULL || dot == base) {
            dot = base + strlen(base);
        }

        snprintf(name, sizeof(name), "%.*s", (int) (dot - base), base);

        if ((size_t) (dot - base) > CTL_NAME_MAX
            || !mesh_name_valid(name, strlen(name)))
        {
            return ctl_error(err, CTL_EUSAGE,
                             "apply: policy name \"%.64s\" from the file name "
                             "is invalid; pass --name N", name);
        }

        nm = name;

    } else if ((rc = ctl_check_name("policy name", nm, err)) != 0) {
        return rc;
    }

    if (ctl_read_file(file, &b, err) != 0) {
        return -1;
    }

    snprintf(path, sizeof(path), "/v1/policies/%s", nm);

    rc = ctl_call(c, "PUT", path, "application/yaml", b.data, b.len, &r,
                  NULL, err);
    ctl_buf_free(&b);

    if (rc != 0) {
        return -1;
    }

    printf("applied policy %s", nm);

    res = json_loadb(r.body.data, r.body.len, 0, NULL);
    ctl_print_index(res);

    json_decref(res);
    ctl_buf_free(&r.body);

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
    ctl_buf_free(&r.body);

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
        "usage: registryctl [--registry URL] [--token-file F] [--timeout D] "
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
        "  --timeout D       request timeout, e.g. 10s, 500ms "
        "(default 10s)\n"
        "  --weight N        1..1000 (default 1)\n"
        "  --ttl D           instance turns critical without a heartbeat "
        "within D (1s..24h)\n"
        "  --deregister-after D  remove an instance critical that long\n"
        "  --zone Z          zone name\n"
        "  --label k=v       label, repeatable\n"
        "  --json            list: print the registry's JSON\n"
        "  -f FILE           apply: policy YAML file ('-' for stdin, "
        "needs --name)\n"
        "  --name N          apply: policy name (default: file name "
        "without extension)\n"
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

    memset(&ctl, 0, sizeof(ctl));
    ctl.timeout_ms = CTL_DEFAULT_TIMEOUT;
    err[0] = '\0';

    env = getenv("MESH_REGISTRY");
    snprintf(ctl.url, sizeof(ctl.url), "%s",
             env && env[0] ? env : CTL_DEFAULT_URL);

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

    curl_global_init(CURL_GLOBAL_DEFAULT);

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

        return 0;
    }

    fprintf(stderr, "registryctl: %s\n", err[0] ? err : "failed");

    return rc == CTL_EUSAGE ? 2 : 1;
}
