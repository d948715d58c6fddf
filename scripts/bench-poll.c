/*
 * bench-poll: how long after a write's 2xx a waiting long-poll of
 * registryd has the change, over http:// or https:// alike (built and run
 * by scripts/bench-registryd with BENCH_TLS=1).
 *
 *   bench-poll URL CHANGES [CACERT]
 *
 * CHANGES times (after one more that opens the connections): the
 * current index I is read (GET /healthz), a
 * GET /v1/snapshot?index=I&wait=30s is sent and seen waiting in
 * registryd (registryd_snapshot_waiters in /metrics), then a PUT moves
 * instance "i1" of service "tlsbench" to another port. One libcurl multi
 * loop drives the poll and the PUT, each on its own kept-alive
 * connection (as nginx keeps its poll's), and notes the moment each
 * answer is complete. One line per change on stdout:
 *
 *   PUT_MS POLL_MS
 *
 * both from sending the PUT: PUT_MS to its 2xx (the fsynced commit),
 * POLL_MS to the poll's answer holding index > I. POLL_MS - PUT_MS is
 * the time from the 2xx to the poll having the change (below 0 when the
 * poll's answer came first, as registryd releases the polls before it
 * answers the writes). Exits 1 on any other outcome.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

typedef struct {
    char    *data;
    size_t   len;
    long     index;         /* X-Mesh-Index, -1: none */
} bp_buf_t;


static double
bp_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}


static size_t
bp_body(char *p, size_t size, size_t n, void *arg)
{
    bp_buf_t  *b = arg;
    char      *d;

    d = realloc(b->data, b->len + size * n + 1);
    if (d == NULL) {
        return 0;
    }

    memcpy(d + b->len, p, size * n);
    b->data = d;
    b->len += size * n;
    b->data[b->len] = '\0';

    return size * n;
}


static size_t
bp_header(char *p, size_t size, size_t n, void *arg)
{
    bp_buf_t  *b = arg;

    if (size * n > 13 && strncasecmp(p, "X-Mesh-Index:", 13) == 0) {
        b->index = strtol(p + 13, NULL, 10);
    }

    return size * n;
}


static CURL *
bp_handle(const char *cacert, bp_buf_t *b)
{
    CURL  *h = curl_easy_init();

    if (h == NULL) {
        fprintf(stderr, "bench-poll: curl_easy_init failed\n");
        exit(1);
    }

    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 40L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bp_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, bp_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, b);

    if (cacert) {
        curl_easy_setopt(h, CURLOPT_CAINFO, cacert);
    }

    return h;
}


static void
bp_reset(bp_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->index = -1;
}


/* a GET on its own (blocking) handle; the body in b */
static void
bp_get(CURL *h, const char *base, const char *path, bp_buf_t *b)
{
    char      url[512];
    long      status = 0;
    CURLcode  rc;

    bp_reset(b);
    snprintf(url, sizeof(url), "%s%s", base, path);
    curl_easy_setopt(h, CURLOPT_URL, url);

    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);

    if (rc != CURLE_OK || status != 200 || b->data == NULL) {
        fprintf(stderr, "bench-poll: GET %s: %s, status %ld\n", url,
                curl_easy_strerror(rc), status);
        exit(1);
    }
}


int
main(int argc, char **argv)
{
    int                 i, n, running, waiting, tries, done_put,
                        done_poll;
    long                index, status;
    char                url[512], body[128];
    const char         *base, *cacert, *p;
    double              t_send, t_put, t_poll;
    CURL               *poll, *put, *side;
    CURLM              *multi;
    CURLMsg            *msg;
    bp_buf_t            bpoll = { NULL, 0, -1 }, bput = { NULL, 0, -1 },
                        bside = { NULL, 0, -1 };
    struct curl_slist  *hdrs = NULL;

    if (argc < 3) {
        fprintf(stderr, "usage: bench-poll URL CHANGES [CACERT]\n");
        return 2;
    }

    base = argv[1];
    n = atoi(argv[2]);
    cacert = argc > 3 ? argv[3] : NULL;

    curl_global_init(CURL_GLOBAL_DEFAULT);

    multi = curl_multi_init();
    poll = bp_handle(cacert, &bpoll);
    put = bp_handle(cacert, &bput);
    side = bp_handle(cacert, &bside);

    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    snprintf(url, sizeof(url), "%s/v1/services/tlsbench/instances/i1", base);
    curl_easy_setopt(put, CURLOPT_URL, url);
    curl_easy_setopt(put, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(put, CURLOPT_HTTPHEADER, hdrs);

    /* change -1 opens the connections (and makes the TLS handshakes): it
     * is not printed */
    for (i = -1; i < n; i++) {
        bp_get(side, base, "/healthz", &bside);
        p = strstr(bside.data, "\"index\":");
        index = p ? strtol(p + 8, NULL, 10) : -1;

        bp_reset(&bpoll);
        snprintf(url, sizeof(url), "%s/v1/snapshot?index=%ld&wait=30s",
                 base, index);
        curl_easy_setopt(poll, CURLOPT_URL, url);
        curl_multi_add_handle(multi, poll);

        /* drive the poll until registryd holds it (at most 2 s) */
        for (waiting = 0, tries = 0; !waiting && tries < 200; tries++) {
            curl_multi_perform(multi, &running);
            curl_multi_poll(multi, NULL, 0, 10, NULL);
            curl_multi_perform(multi, &running);
            bp_get(side, base, "/metrics", &bside);
            if (strstr(bside.data, "\nregistryd_snapshot_waiters 1\n")) {
                waiting = 1;
            }
        }

        if (!waiting) {
            fprintf(stderr, "bench-poll: change %d: the poll is not seen "
                    "waiting\n", i);
            return 1;
        }

        bp_reset(&bput);
        snprintf(body, sizeof(body), "{\"address\":\"127.0.0.1\","
                 "\"port\":%d}", 1025 + i % 60000);
        curl_easy_setopt(put, CURLOPT_POSTFIELDS, body);
        curl_multi_add_handle(multi, put);

        t_send = bp_now_ms();
        t_put = t_poll = 0;
        done_put = done_poll = 0;

        while (!done_put || !done_poll) {
            curl_multi_perform(multi, &running);

            while ((msg = curl_multi_info_read(multi, &running))) {
                if (msg->msg != CURLMSG_DONE) {
                    continue;
                }

                status = 0;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE,
                                  &status);

                if (msg->data.result != CURLE_OK || status / 100 != 2) {
                    fprintf(stderr, "bench-poll: change %d: %s: %s, "
                            "status %ld\n", i,
                            msg->easy_handle == put ? "PUT" : "poll",
                            curl_easy_strerror(msg->data.result), status);
                    return 1;
                }

                if (msg->easy_handle == put) {
                    t_put = bp_now_ms();
                    done_put = 1;

                } else {
                    t_poll = bp_now_ms();
                    done_poll = 1;
                }

                curl_multi_remove_handle(multi, msg->easy_handle);
            }

            if (!done_put || !done_poll) {
                curl_multi_poll(multi, NULL, 0, 100, NULL);
            }
        }

        if (bpoll.index <= index) {
            fprintf(stderr, "bench-poll: change %d: the poll answered "
                    "index %ld, not after %ld\n", i, bpoll.index, index);
            return 1;
        }

        if (i >= 0) {
            printf("%.3f %.3f\n", t_put - t_send, t_poll - t_send);
        }
    }

    curl_slist_free_all(hdrs);
    curl_easy_cleanup(poll);
    curl_easy_cleanup(put);
    curl_easy_cleanup(side);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    bp_reset(&bpoll);
    bp_reset(&bput);
    bp_reset(&bside);

    return 0;
}
