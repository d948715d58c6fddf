/*
 * rd_etcd: a small etcd v3 client over etcd's JSON gateway.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "mesh_alloc.h"
#include "rd_etcd.h"

#define RD_ETCD_ANSWER_MAX  (512 * 1024 * 1024)

struct rd_etcd_s {
    CURL     *curl;
    char     *endpoints[RD_ETCD_ENDPOINTS_MAX];
    size_t    nendpoints;
    size_t    current;
    char     *prefix;
    size_t    prefix_len;
    int64_t   timeout_ms;
};


static void
rd_etcd_free_endpoints(rd_etcd_t *e)
{
    size_t  i;

    for (i = 0; i < e->nendpoints; i++) {
        free(e->endpoints[i]);
        e->endpoints[i] = NULL;
    }

    e->nendpoints = 0;
}


/* "http://127.0.0.1:2379": a scheme, a host, an optional port, no path */
static int
rd_etcd_endpoint_valid(const char *s, size_t n)
{
    size_t       i, skip;

    if (n > 7 && strncmp(s, "http://", 7) == 0) {
        skip = 7;

    } else if (n > 8 && strncmp(s, "https://", 8) == 0) {
        skip = 8;

    } else {
        return 0;
    }

    for (i = skip; i < n; i++) {
        if (s[i] == '/' || s[i] == '?' || s[i] == '#' || s[i] == ' '
            || s[i] == '@')
        {
            return 0;
        }
    }

    return 1;
}


/* the endpoints of a list, into list (NULL: only checked); their count,
 * or -1 */
static int
rd_etcd_parse_endpoints(const char *endpoints, char **list, char *err)
{
    size_t       n, count;
    const char  *p, *comma;

    count = 0;

    for (p = endpoints; *p; p = comma ? comma + 1 : p + n) {
        comma = strchr(p, ',');
        n = comma ? (size_t) (comma - p) : strlen(p);

        if (!rd_etcd_endpoint_valid(p, n)) {
            snprintf(err, RD_ERR_LEN, "etcd endpoint \"%.*s\" is not "
                     "http://HOST:PORT", (int) (n > 128 ? 128 : n), p);
            goto fail;
        }

        if (count == RD_ETCD_ENDPOINTS_MAX) {
            snprintf(err, RD_ERR_LEN, "more than %d etcd endpoints",
                     RD_ETCD_ENDPOINTS_MAX);
            goto fail;
        }

        if (list) {
            list[count] = mesh_xstrndup(p, n);
        }

        count++;

        if (comma == NULL) {
            break;
        }
    }

    if (count == 0) {
        snprintf(err, RD_ERR_LEN, "no etcd endpoints");
        return -1;
    }

    return (int) count;

fail:

    while (list && count) {
        free(list[--count]);
    }

    return -1;
}


int
rd_etcd_endpoints_check(const char *endpoints, char *err)
{
    return rd_etcd_parse_endpoints(endpoints, NULL, err) < 0 ? -1 : 0;
}


int
rd_etcd_set_endpoints(rd_etcd_t *e, const char *endpoints, char *err)
{
    int    n;
    char  *list[RD_ETCD_ENDPOINTS_MAX];

    n = rd_etcd_parse_endpoints(endpoints, list, err);
    if (n < 0) {
        return -1;
    }

    rd_etcd_free_endpoints(e);
    memcpy(e->endpoints, list, (size_t) n * sizeof(char *));
    e->nendpoints = (size_t) n;
    e->current = 0;

    return 0;
}


rd_etcd_t *
rd_etcd_create(const char *endpoints, const char *prefix, int64_t timeout_ms,
    char *err)
{
    rd_etcd_t  *e;

    e = mesh_xcalloc(1, sizeof(rd_etcd_t));

    if (rd_etcd_set_endpoints(e, endpoints, err) != 0) {
        free(e);
        return NULL;
    }

    e->curl = curl_easy_init();
    if (e->curl == NULL) {
        snprintf(err, RD_ERR_LEN, "cannot create a libcurl handle");
        rd_etcd_free(e);
        return NULL;
    }

    e->prefix = mesh_xstrdup(prefix);
    e->prefix_len = strlen(prefix);
    e->timeout_ms = timeout_ms;

    return e;
}


void
rd_etcd_free(rd_etcd_t *e)
{
    if (e == NULL) {
        return;
    }

    if (e->curl) {
        curl_easy_cleanup(e->curl);
    }

    rd_etcd_free_endpoints(e);
    free(e->prefix);
    free(e);
}


const char *
rd_etcd_endpoint(rd_etcd_t *e)
{
    return e->endpoints[e->current];
}


size_t
rd_etcd_endpoints_n(rd_etcd_t *e)
{
    return e->nendpoints;
}


const char *
rd_etcd_prefix(rd_etcd_t *e)
{
    return e->prefix;
}


/* what every call sets: a POST of body (JSON) to url, never proxied */
static void
rd_etcd_setup(rd_etcd_t *e, const char *url, struct curl_slist *hdrs,
    const char *body)
{
    curl_easy_reset(e->curl);
    curl_easy_setopt(e->curl, CURLOPT_URL, url);
    curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e->curl, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
    curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) (e->timeout_ms < 1000 ? e->timeout_ms : 1000));
    /* registryd talks to its etcd directly, never through a proxy */
    curl_easy_setopt(e->curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e->curl, CURLOPT_USERAGENT, "registryd");
}


/* one attempt on the current endpoint */
static int
rd_etcd_post(rd_etcd_t *e, const char *path, const char *body,
    mesh_buf_t *answer, long *status, CURLcode *crc, int *sent)
{
    char                url[1024];
    double              connect;
    mesh_buf_sink_t     sink;
    struct curl_slist  *hdrs;

    snprintf(url, sizeof(url), "%s%s", e->endpoints[e->current], path);

    hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");

    rd_etcd_setup(e, url, hdrs, body);
    curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long) e->timeout_ms);

    sink.b = answer;
    sink.max = RD_ETCD_ANSWER_MAX;
    curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, mesh_buf_sink);
    curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &sink);

    *crc = curl_easy_perform(e->curl);

    curl_slist_free_all(hdrs);

    *status = 0;
    curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, status);

    connect = 0;
    curl_easy_getinfo(e->curl, CURLINFO_CONNECT_TIME, &connect);
    *sent = (connect > 0);

    return *crc == CURLE_OK ? 0 : -1;
}


int
rd_etcd_call(rd_etcd_t *e, const char *path, json_t *req, json_t **res,
    char *err)
{
    int            sent, rc;
    long           status;
    char          *body;
    size_t         tries;
    json_t        *ans, *msg;
    CURLcode       crc;
    mesh_buf_t     b;
    json_error_t   jerr;

    *res = NULL;
    body = json_dumps(req, JSON_COMPACT);
    rc = RD_ETCD_DOWN;

    for (tries = 0; tries < e->nendpoints; tries++) {

        mesh_buf_init(&b, 0);

        if (rd_etcd_post(e, path, body, &b, &status, &crc, &sent) != 0) {
            snprintf(err, RD_ERR_LEN, "store etcd: %s%s: %s",
                     e->endpoints[e->current], path,
                     curl_easy_strerror(crc));
            mesh_buf_free(&b);

            /* the next call starts at the next endpoint either way */
            e->current = (e->current + 1) % e->nendpoints;

            if (sent && crc != CURLE_COULDNT_CONNECT) {
                rc = RD_ETCD_UNKNOWN;
                break;
            }

            continue;
        }

        ans = json_loadb(b.data ? b.data : "", b.len, 0, &jerr);
        mesh_buf_free(&b);

        if (status == 200 && json_is_object(ans)) {
            *res = ans;
            rc = RD_ETCD_OK;
            break;
        }

        msg = json_object_get(ans, "message");

        snprintf(err, RD_ERR_LEN, "store etcd: %s%s: %ld %s",
                 e->endpoints[e->current], path, status,
                 json_is_string(msg) ? json_string_value(msg)
                                     : "answer is not JSON");

        if (status == 503 || status >= 500) {
            /* no leader, or a proposal that timed out inside etcd (it
             * may still be applied) */
            e->current = (e->current + 1) % e->nendpoints;

            if (json_is_string(msg)
                && strstr(json_string_value(msg), "timed out") != NULL)
            {
                json_decref(ans);
                rc = RD_ETCD_UNKNOWN;
                break;
            }

            json_decref(ans);
            continue;
        }

        json_decref(ans);
        rc = RD_ETCD_ERROR;
        break;
    }

    free(body);

    return rc;
}


/* streams */

typedef struct {
    mesh_buf_t        line;
    rd_etcd_line_pt   cb;
    void             *data;
    volatile int     *stop;
    int               ended;        /* cb asked to end */
} rd_etcd_stream_t;


static size_t
rd_etcd_stream_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
    char              *nl;
    size_t             n = size * nmemb, left;
    rd_etcd_stream_t  *st = arg;

    left = n;

    while (left) {
        nl = memchr(ptr, '\n', left);

        if (nl == NULL) {
            if (st->line.len + left > RD_ETCD_ANSWER_MAX) {
                return 0;
            }

            mesh_buf_add(&st->line, ptr, left);
            break;
        }

        mesh_buf_add(&st->line, ptr, (size_t) (nl - ptr));
        left -= (size_t) (nl - ptr) + 1;
        ptr = nl + 1;

        if (st->line.len) {
            mesh_buf_cstr(&st->line);

            if (st->cb(st->data, st->line.data, st->line.len) != 0) {
                st->ended = 1;
                return 0;
            }
        }

        st->line.len = 0;
    }

    return n;
}


static int
rd_etcd_stream_progress(void *arg, curl_off_t dt, curl_off_t dn,
    curl_off_t ut, curl_off_t un)
{
    rd_etcd_stream_t  *st = arg;

    (void) dt;
    (void) dn;
    (void) ut;
    (void) un;

    return *st->stop ? 1 : 0;
}


int
rd_etcd_stream(rd_etcd_t *e, const char *path, json_t *req,
    rd_etcd_line_pt cb, void *data, volatile int *stop, char *err)
{
    int                 rc;
    char                url[1024], *body;
    size_t              tries;
    double              connect;
    CURLcode            crc;
    rd_etcd_stream_t    st;
    struct curl_slist  *hdrs;

    body = json_dumps(req, JSON_COMPACT);
    rc = RD_ETCD_DOWN;

    st.cb = cb;
    st.data = data;
    st.stop = stop;
    mesh_buf_init(&st.line, 4096);

    for (tries = 0; tries < e->nendpoints && !*stop; tries++) {
        snprintf(url, sizeof(url), "%s%s", e->endpoints[e->current], path);
        st.line.len = 0;
        st.ended = 0;

        hdrs = curl_slist_append(NULL, "Content-Type: application/json");

        rd_etcd_setup(e, url, hdrs, body);
        /* a member that dies without a word is noticed within seconds */
        curl_easy_setopt(e->curl, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(e->curl, CURLOPT_TCP_KEEPIDLE, 2L);
        curl_easy_setopt(e->curl, CURLOPT_TCP_KEEPINTVL, 1L);
        curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, rd_etcd_stream_cb);
        curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &st);
        curl_easy_setopt(e->curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e->curl, CURLOPT_XFERINFOFUNCTION,
                         rd_etcd_stream_progress);
        curl_easy_setopt(e->curl, CURLOPT_XFERINFODATA, &st);

        crc = curl_easy_perform(e->curl);
        curl_slist_free_all(hdrs);

        connect = 0;
        curl_easy_getinfo(e->curl, CURLINFO_CONNECT_TIME, &connect);

        if (crc != CURLE_OK && !st.ended && !*stop) {
            snprintf(err, RD_ERR_LEN, "store etcd: %s%s: %s",
                     e->endpoints[e->current], path,
                     curl_easy_strerror(crc));
            e->current = (e->current + 1) % e->nendpoints;
        }

        if (connect > 0 || st.ended) {
            rc = RD_ETCD_OK;
            break;
        }
    }

    mesh_buf_free(&st.line);
    free(body);

    return rc;
}


/* keys and numbers */

static const char  rd_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";


json_t *
rd_etcd_b64(const void *p, size_t n)
{
    size_t                i;
    json_t               *j;
    uint32_t              v;
    mesh_buf_t            b;
    const unsigned char  *s = p;

    mesh_buf_init(&b, (n + 2) / 3 * 4 + 1);

    for (i = 0; i + 2 < n; i += 3) {
        v = (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8 | s[i + 2];
        mesh_buf_addc(&b, rd_b64[v >> 18]);
        mesh_buf_addc(&b, rd_b64[(v >> 12) & 63]);
        mesh_buf_addc(&b, rd_b64[(v >> 6) & 63]);
        mesh_buf_addc(&b, rd_b64[v & 63]);
    }

    if (n - i == 1) {
        v = (uint32_t) s[i] << 16;
        mesh_buf_addc(&b, rd_b64[v >> 18]);
        mesh_buf_addc(&b, rd_b64[(v >> 12) & 63]);
        mesh_buf_adds(&b, "==");

    } else if (n - i == 2) {
        v = (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8;
        mesh_buf_addc(&b, rd_b64[v >> 18]);
        mesh_buf_addc(&b, rd_b64[(v >> 12) & 63]);
        mesh_buf_addc(&b, rd_b64[(v >> 6) & 63]);
        mesh_buf_addc(&b, '=');
    }

    j = json_stringn(b.data ? b.data : "", b.len);
    mesh_buf_free(&b);

    return j;
}


static int
rd_b64_value(int c)
{
    const char  *p;

    if (c == '\0') {
        return -1;
    }

    p = strchr(rd_b64, c);

    return p ? (int) (p - rd_b64) : -1;
}


int
rd_etcd_unb64(const char *s, mesh_buf_t *out)
{
    int       a, b, c, d;
    size_t    i, n;
    uint32_t  v;

    n = strlen(s);

    if (n % 4) {
        return -1;
    }

    mesh_buf_reserve(out, n / 4 * 3 + 1);

    for (i = 0; i < n; i += 4) {
        a = rd_b64_value(s[i]);
        b = rd_b64_value(s[i + 1]);

        if (a < 0 || b < 0) {
            return -1;
        }

        v = (uint32_t) a << 18 | (uint32_t) b << 12;

        if (s[i + 2] == '=') {
            if (s[i + 3] != '=' || i + 4 != n) {
                return -1;
            }

            mesh_buf_addc(out, (char) (v >> 16));
            break;
        }

        c = rd_b64_value(s[i + 2]);
        if (c < 0) {
            return -1;
        }

        v |= (uint32_t) c << 6;

        if (s[i + 3] == '=') {
            if (i + 4 != n) {
                return -1;
            }

            mesh_buf_addc(out, (char) (v >> 16));
            mesh_buf_addc(out, (char) (v >> 8));
            break;
        }

        d = rd_b64_value(s[i + 3]);
        if (d < 0) {
            return -1;
        }

        v |= (uint32_t) d;
        mesh_buf_addc(out, (char) (v >> 16));
        mesh_buf_addc(out, (char) (v >> 8));
        mesh_buf_addc(out, (char) v);
    }

    mesh_buf_cstr(out);

    return 0;
}


json_t *
rd_etcd_key(rd_etcd_t *e, const char *key)
{
    json_t      *j;
    size_t       n;
    mesh_buf_t   b;

    n = strlen(key);
    mesh_buf_init(&b, e->prefix_len + n);
    mesh_buf_add(&b, e->prefix, e->prefix_len);
    mesh_buf_add(&b, key, n);

    j = rd_etcd_b64(b.data, b.len);
    mesh_buf_free(&b);

    return j;
}


json_t *
rd_etcd_prefix_end(rd_etcd_t *e)
{
    json_t  *j;
    char    *end;

    /* the prefix ends in '/': the range ends before '0' */
    end = mesh_xstrdup(e->prefix);
    end[e->prefix_len - 1]++;

    j = rd_etcd_b64(end, e->prefix_len);
    free(end);

    return j;
}


int64_t
rd_etcd_num(json_t *obj, const char *name)
{
    json_t  *v;

    v = json_object_get(obj, name);

    if (json_is_string(v)) {
        return strtoll(json_string_value(v), NULL, 10);
    }

    if (json_is_integer(v)) {
        return (int64_t) json_integer_value(v);
    }

    return 0;
}


json_t *
rd_etcd_num_json(int64_t v)
{
    char  buf[32];

    snprintf(buf, sizeof(buf), "%lld", (long long) v);

    return json_string(buf);
}
