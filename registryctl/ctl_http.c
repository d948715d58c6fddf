/*
 * ctl_http: a request to registryd (libcurl, the token, the timeout), its
 * status turned into one line, its JSON body.
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


/* HTTP */

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


/* the token of --token-file, read once: before a command starts
 * anything (run), or with its first request */
int
ctl_load_token(ctl_t *c, char *err)
{
    char  tok[MESH_TOKEN_MAX + 1];

    if (c->token_file == NULL || c->token != NULL) {
        return 0;
    }

    if (mesh_token_read(c->token_file, tok, sizeof(tok), err, CTL_ERR_LEN)
        != 0)
    {
        return -1;
    }

    c->token = mesh_xstrdup(tok);

    return 0;
}


/*
 * A request to the registry in use, set up on c->curl (x holds what the
 * transfer writes to and must live until it ends; so must body):
 * performed at once by ctl_http_once, or driven by a command's own loop
 * through a curl multi handle (ctl_xfer_start).  timeout_ms 0: --timeout.
 */
static int
ctl_http_setup(ctl_t *c, ctl_xfer_t *x, const char *method,
    const char *path, const char *ctype, const char *body, size_t len,
    long timeout_ms, char *err)
{
    CURL  *h;
    char   url[2048], hdr[1024];

    memset(x, 0, sizeof(*x));

    x->timeout_ms = timeout_ms ? timeout_ms : c->timeout_ms;

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

    x->hdrs = curl_slist_append(x->hdrs, "Expect:");
    x->hdrs = curl_slist_append(x->hdrs, "Accept: application/json");

    /* "Content-Type:" alone stops libcurl from adding its own */
    snprintf(hdr, sizeof(hdr), "Content-Type:%s%s", ctype ? " " : "",
             ctype ? ctype : "");
    x->hdrs = curl_slist_append(x->hdrs, hdr);

    if (c->token) {
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", c->token);
        x->hdrs = curl_slist_append(x->hdrs, hdr);
    }

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "registryctl/" CTL_VERSION);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, x->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     x->timeout_ms < c->timeout_ms ? x->timeout_ms
                                                   : c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->cerr);
    x->sink.b = &x->r.body;
    x->sink.max = CTL_MAX_BODY;
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, mesh_buf_sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x->sink);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, ctl_header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x->r);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");

    if (c->cacert) {
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
    }

    if (c->cert) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, c->key ? c->key : c->cert);
    }

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

    return 0;
}


/*
 * The end of a transfer set up by ctl_http_setup: 0 when an HTTP answer
 * arrived (any status, in x->r), -1 when none did; x->unreached: the
 * registry could not be reached at all (the next one may be).
 */
static int
ctl_http_result(ctl_t *c, ctl_xfer_t *x, CURLcode rc, char *err)
{
    long  oserr;

    oserr = 0;
    curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &oserr);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &x->r.status);

    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;

    if (rc == CURLE_OK) {
        mesh_buf_cstr(&x->r.body);

        return 0;
    }

    mesh_buf_free(&x->r.body);
    x->r.status = 0;

    x->unreached = (rc == CURLE_COULDNT_CONNECT
                    || rc == CURLE_COULDNT_RESOLVE_HOST);

    switch (rc) {

    case CURLE_COULDNT_CONNECT:
        return ctl_error(err, -1, "cannot reach registry %s: %s", c->url,
                         oserr ? strerror((int) oserr) : "connection failed");

    case CURLE_COULDNT_RESOLVE_HOST:
        return ctl_error(err, -1, "cannot reach registry %s: cannot resolve "
                         "host", c->url);

    case CURLE_OPERATION_TIMEDOUT:
        return ctl_error(err, -1, "registry %s: no answer within %ldms",
                         c->url, x->timeout_ms);

    case CURLE_PEER_FAILED_VERIFICATION:
        return ctl_error(err, -1, "registry %s: its certificate does not "
                         "verify (%s); --cacert names the CA that signs it",
                         c->url, x->cerr[0] ? x->cerr
                                            : curl_easy_strerror(rc));

    case CURLE_WRITE_ERROR:
        return ctl_error(err, -1, "registry %s: answer larger than %d "
                         "bytes", c->url, CTL_MAX_BODY);

    default:
        return ctl_error(err, -1, "registry %s: %s", c->url,
                         x->cerr[0] ? x->cerr : curl_easy_strerror(rc));
    }
}


/* one request to the registry in use, performed at once */
static int
ctl_http_once(ctl_t *c, const char *method, const char *path,
    const char *ctype, const char *body, size_t len, ctl_resp_t *r,
    int *unreached, char *err)
{
    int         rc;
    ctl_xfer_t  x;

    if (ctl_http_setup(c, &x, method, path, ctype, body, len, 0, err) != 0) {
        curl_slist_free_all(x.hdrs);
        *r = x.r;
        return -1;
    }

    rc = ctl_http_result(c, &x, curl_easy_perform(c->curl), err);

    *r = x.r;
    *unreached = x.unreached;

    return rc;
}


/*
 * One request, to the registries of --registry in turn: one that cannot
 * be reached is left for the next (writes are PUT and DELETE: sending
 * one again is safe).
 */
static int
ctl_http(ctl_t *c, const char *method, const char *path, const char *ctype,
    const char *body, size_t len, ctl_resp_t *r, char *err)
{
    int     unreached;
    size_t  tries;

    for (tries = 0; ; tries++) {
        unreached = 0;

        if (ctl_http_once(c, method, path, ctype, body, len, r, &unreached,
                          err)
            == 0)
        {
            return 0;
        }

        if (!unreached || tries + 1 >= c->nurls) {
            return -1;
        }

        c->cur = (c->cur + 1) % c->nurls;
        memcpy(c->url, c->urls[c->cur], sizeof(c->url));
    }
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
int
ctl_call(ctl_t *c, const char *method, const char *path, const char *ctype,
    const char *body, size_t len, ctl_resp_t *r, json_t **json, char *err)
{
    if (ctl_http(c, method, path, ctype, body, len, r, err) != 0) {
        return -1;
    }

    if (ctl_check_status(r, err) != 0) {
        mesh_buf_free(&r->body);
        return -1;
    }

    if (json) {
        *json = json_loadb(r->body.data, r->body.len, 0, NULL);
        if (*json == NULL) {
            mesh_buf_free(&r->body);
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


void
ctl_print_index(json_t *j)
{
    long long  idx = ctl_index(j);

    if (idx >= 0) {
        printf(" (index %lld)", idx);
    }

    printf("\n");
}


/*
 * Requests a command drives itself (run, watch), one at a time on
 * c->curl, through the curl multi handle m: its loop waits with
 * ctl_xfer_poll on the transfer and on its own descriptors (a signalfd)
 * at once, so that a registry that is slow to answer never holds up a
 * signal.
 */
int
ctl_xfer_start(ctl_t *c, CURLM *m, ctl_xfer_t *x, const char *method,
    const char *path, const char *body, long timeout_ms, char *err)
{
    if (ctl_http_setup(c, x, method, path, body ? "application/json" : NULL,
                       body, body ? strlen(body) : 0, timeout_ms, err)
        != 0)
    {
        curl_slist_free_all(x->hdrs);
        x->hdrs = NULL;
        return -1;
    }

    if (curl_multi_add_handle(m, c->curl) != CURLM_OK) {
        curl_slist_free_all(x->hdrs);
        x->hdrs = NULL;
        return ctl_error(err, -1, "cannot start a request (libcurl)");
    }

    x->active = 1;

    return 0;
}


/*
 * Waits at most timeout_ms for the transfer (if one is active) or one of
 * fds, then moves the transfer on; x->done is set when it has ended.
 */
void
ctl_xfer_poll(CURLM *m, ctl_xfer_t *x, struct curl_waitfd *fds,
    unsigned nfds, int timeout_ms)
{
    int       running, left;
    CURLMsg  *msg;

    curl_multi_poll(m, fds, nfds, timeout_ms, NULL);

    if (!x->active) {
        return;
    }

    curl_multi_perform(m, &running);

    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE) {
            x->rc = msg->data.result;
            x->done = 1;
        }
    }
}


/*
 * The end of a transfer that is done: 0 for a 2xx answer (its JSON in
 * *json when json is not NULL), -1 with the reason; x->r.status is the
 * answer's status (0: none came), x->unreached says the registry could
 * not be reached, and the next request then goes to the next registry
 * of --registry.
 */
int
ctl_xfer_end(ctl_t *c, CURLM *m, ctl_xfer_t *x, json_t **json, char *err)
{
    int  rc;

    curl_multi_remove_handle(m, c->curl);
    x->active = 0;
    x->done = 0;

    if (json) {
        *json = NULL;
    }

    rc = ctl_http_result(c, x, x->rc, err);

    if (rc != 0) {
        if (x->unreached && c->nurls > 1) {
            c->cur = (c->cur + 1) % c->nurls;
            memcpy(c->url, c->urls[c->cur], sizeof(c->url));
        }

        return -1;
    }

    if (ctl_check_status(&x->r, err) != 0) {
        return -1;
    }

    if (json) {
        *json = json_loadb(x->r.body.data, x->r.body.len, 0, NULL);
        if (*json == NULL) {
            return ctl_error(err, -1, "registry %s: %ld answer is not JSON",
                             c->url, x->r.status);
        }
    }

    return 0;
}


/* a transfer given up before its end (x may be inactive) */
void
ctl_xfer_free(ctl_t *c, CURLM *m, ctl_xfer_t *x)
{
    if (x->active) {
        curl_multi_remove_handle(m, c->curl);
        x->active = 0;
    }

    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    mesh_buf_free(&x->r.body);
}
