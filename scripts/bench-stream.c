/*
 * bench-stream: the load of scripts/bench-stream, TCP on 127.0.0.1.
 *
 *   bench-stream conn PORT CONNS SECONDS ANSWER
 *   bench-stream bytes PORT CONNS SECONDS PATH
 *
 * conn: CONNS connections at a time, each one connected, read to the
 * end (the server's ANSWER, then its close) and closed, and at once
 * replaced by a new one, for SECONDS. Prints
 *
 *   conns N errors E seconds S p50_us P p99_us Q
 *
 * N connections completed with exactly ANSWER before the server's close,
 * E that failed (refused, reset, another answer), S the time taken, and
 * the connections' durations from connect() to the server's close.
 *
 * bytes: CONNS connections held for SECONDS, each sending
 * "GET PATH HTTP/1.1" again as soon as the previous response has been
 * read (nginx serving a file: the bytes flow server to client). Prints
 *
 *   bytes B responses R errors E seconds S
 *
 * B bytes read (headers and bodies), R responses read in full.
 *
 * One thread, epoll; a connection still open when the time is up is
 * closed and not counted (bytes: its bytes read so far are). Exits 1 on
 * bad arguments or when nothing was done (conn: no connection completed,
 * bytes: no byte read); errors are counted, the script decides.
 */

#define _GNU_SOURCE                     /* strcasestr() */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define BS_BUF      (256 * 1024)
#define BS_HEADER   4096


typedef struct {
    int          fd;
    double       start;         /* conn: when connect() was called */
    size_t       got;           /* conn: answer bytes; bytes: header bytes */
    int64_t      left;          /* bytes: body bytes still to read, -1: header */
    char         header[BS_HEADER];
} bs_conn_t;


static struct sockaddr_in   bs_addr;
static int                  bs_ep;
static int                  bs_bytes_mode;
static const char          *bs_answer;
static size_t               bs_answer_len;
static char                 bs_request[1024];
static size_t               bs_request_len;

static uint64_t             bs_done;
static uint64_t             bs_errors;
static uint64_t             bs_read;
static uint32_t            *bs_lat;
static size_t               bs_nlat;
static size_t               bs_alat;

static char                 bs_buf[BS_BUF];


static double
bs_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static int
bs_open(bs_conn_t *c)
{
    int                 fd, one;
    struct epoll_event  ev;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        perror("bench-stream: socket");
        return -1;
    }

    one = 1;
    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    c->fd = fd;
    c->start = bs_now();
    c->got = 0;
    c->left = -1;

    if (connect(fd, (struct sockaddr *) &bs_addr, sizeof(bs_addr)) == -1
        && errno != EINPROGRESS)
    {
        /* counted as a failed connection, tried again */
        close(fd);
        c->fd = -1;
        bs_errors++;
        return 0;
    }

    ev.events = EPOLLIN | EPOLLRDHUP | (bs_bytes_mode ? EPOLLOUT : 0);
    ev.data.ptr = c;

    if (epoll_ctl(bs_ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
        perror("bench-stream: epoll_ctl");
        return -1;
    }

    return 0;
}


static void
bs_close(bs_conn_t *c)
{
    close(c->fd);
    c->fd = -1;
}


static void
bs_latency(double us)
{
    uint32_t  *p;

    if (bs_nlat == bs_alat) {
        bs_alat = bs_alat ? bs_alat * 2 : 65536;
        p = realloc(bs_lat, bs_alat * sizeof(uint32_t));
        if (p == NULL) {
            return;
        }
        bs_lat = p;
    }

    bs_lat[bs_nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t) us;
}


/* conn: read what there is; 1: the connection is over (counted), 0: not */

static int
bs_conn_read(bs_conn_t *c)
{
    ssize_t  n;

    for ( ;; ) {
        n = read(c->fd, bs_buf, sizeof(bs_buf));

        if (n > 0) {
            if (c->got + n > bs_answer_len
                || memcmp(bs_buf, bs_answer + c->got, n) != 0)
            {
                bs_errors++;
                return 1;
            }

            c->got += n;
            continue;
        }

        if (n == 0) {
            if (c->got == bs_answer_len) {
                bs_done++;
                bs_latency((bs_now() - c->start) * 1e6);

            } else {
                bs_errors++;
            }

            return 1;
        }

        if (errno == EAGAIN || errno == EINTR) {
            return 0;
        }

        bs_errors++;
        return 1;
    }
}


static int
bs_send_request(bs_conn_t *c)
{
    ssize_t  n;

    /* a short request into an empty socket buffer goes out whole */

    n = write(c->fd, bs_request, bs_request_len);
    if (n != (ssize_t) bs_request_len) {
        bs_errors++;
        return 1;
    }

    c->got = 0;
    c->left = -1;

    return 0;
}


/* bytes: a response's header is complete in c->header: its body length */

static int
bs_parse_header(bs_conn_t *c, size_t len)
{
    char  *p;

    c->header[len] = '\0';

    if (strncmp(c->header, "HTTP/1.1 200 ", 13) != 0) {
        return -1;
    }

    p = strcasestr(c->header, "\r\nContent-Length:");
    if (p == NULL) {
        return -1;
    }

    c->left = strtoll(p + 17, NULL, 10);

    return c->left > 0 ? 0 : -1;
}


/* bytes: read what there is; 1: the connection failed, 0: it goes on */

static int
bs_bytes_read(bs_conn_t *c)
{
    char     *end;
    size_t    hlen, rest;
    ssize_t   n;

    for ( ;; ) {
        n = read(c->fd, bs_buf, sizeof(bs_buf));

        if (n == 0) {
            bs_errors++;
            return 1;
        }

        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return 0;
            }

            bs_errors++;
            return 1;
        }

        bs_read += n;

        if (c->left < 0) {

            /* the header, perhaps with a body's start after it */

            rest = sizeof(c->header) - 1 - c->got;
            if ((size_t) n < rest) {
                rest = n;
            }

            memcpy(c->header + c->got, bs_buf, rest);
            c->header[c->got + rest] = '\0';

            end = strstr(c->header, "\r\n\r\n");
            if (end == NULL) {
                c->got += rest;

                if (c->got == sizeof(c->header) - 1) {
                    bs_errors++;
                    return 1;
                }

                continue;
            }

            hlen = end + 4 - c->header;

            if (bs_parse_header(c, hlen) != 0) {
                bs_errors++;
                return 1;
            }

            /* what came after the header in this read */
            n -= hlen - c->got;
        }

        if (n > c->left) {
            /* nothing was asked for beyond this response */
            bs_errors++;
            return 1;
        }

        c->left -= n;

        if (c->left == 0) {
            bs_done++;

            if (bs_send_request(c) != 0) {
                return 1;
            }
        }
    }
}


static int
bs_cmp(const void *a, const void *b)
{
    uint32_t  x = *(const uint32_t *) a, y = *(const uint32_t *) b;

    return (x > y) - (x < y);
}


static int
bs_usage(void)
{
    fprintf(stderr, "usage: bench-stream conn PORT CONNS SECONDS ANSWER\n"
                    "       bench-stream bytes PORT CONNS SECONDS PATH\n");
    return 1;
}


int
main(int argc, char **argv)
{
    int                  i, n, nconns, port, err;
    char                *end;
    double               secs, start, stop, now, p50, p99;
    socklen_t            len;
    bs_conn_t           *conns, *c;
    struct epoll_event   evs[256], ev;

    if (argc != 6) {
        return bs_usage();
    }

    if (strcmp(argv[1], "bytes") == 0) {
        bs_bytes_mode = 1;

    } else if (strcmp(argv[1], "conn") != 0) {
        return bs_usage();
    }

    port = strtol(argv[2], &end, 10);
    if (*end != '\0' || port < 1 || port > 65535) {
        return bs_usage();
    }

    nconns = strtol(argv[3], &end, 10);
    if (*end != '\0' || nconns < 1 || nconns > 10000) {
        return bs_usage();
    }

    secs = strtod(argv[4], &end);
    if (*end != '\0' || secs <= 0) {
        return bs_usage();
    }

    if (bs_bytes_mode) {
        bs_request_len = snprintf(bs_request, sizeof(bs_request),
                                  "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n",
                                  argv[5]);
        if (bs_request_len >= sizeof(bs_request)) {
            return bs_usage();
        }

    } else {
        bs_answer = argv[5];
        bs_answer_len = strlen(argv[5]);

        /* the shell cannot pass a newline as easily: \n stands for one */
        end = strstr(argv[5], "\\n");
        if (end != NULL && end[2] == '\0') {
            end[0] = '\n';
            end[1] = '\0';
            bs_answer_len--;
        }
    }

    bs_addr.sin_family = AF_INET;
    bs_addr.sin_port = htons(port);
    bs_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    bs_ep = epoll_create1(EPOLL_CLOEXEC);
    if (bs_ep == -1) {
        perror("bench-stream: epoll_create1");
        return 1;
    }

    conns = calloc(nconns, sizeof(bs_conn_t));
    if (conns == NULL) {
        perror("bench-stream: calloc");
        return 1;
    }

    start = bs_now();
    stop = start + secs;

    for (i = 0; i < nconns; i++) {
        if (bs_open(&conns[i]) != 0) {
            return 1;
        }
    }

    for ( ;; ) {
        now = bs_now();
        if (now >= stop) {
            break;
        }

        n = epoll_wait(bs_ep, evs, 256, (int) ((stop - now) * 1000) + 1);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            perror("bench-stream: epoll_wait");
            return 1;
        }

        for (i = 0; i < n; i++) {
            c = evs[i].data.ptr;

            if (c->fd == -1) {
                continue;
            }

            if (bs_bytes_mode && (evs[i].events & EPOLLOUT)) {

                /* connected (or not): the first request, then reads only */

                err = 0;
                len = sizeof(err);
                (void) getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);

                ev.events = EPOLLIN | EPOLLRDHUP;
                ev.data.ptr = c;

                if (err != 0
                    || epoll_ctl(bs_ep, EPOLL_CTL_MOD, c->fd, &ev) == -1)
                {
                    bs_errors++;
                    bs_close(c);

                } else if (bs_send_request(c) != 0) {
                    bs_close(c);
                }

            } else if (bs_bytes_mode) {
                if (bs_bytes_read(c) != 0) {
                    bs_close(c);
                }

            } else if (bs_conn_read(c) != 0) {
                bs_close(c);
            }

            if (c->fd == -1 && bs_now() < stop) {
                if (bs_open(c) != 0) {
                    return 1;
                }
            }
        }

        /* connections that failed at connect(): try again */
        for (i = 0; i < nconns; i++) {
            if (conns[i].fd == -1 && bs_now() < stop) {
                if (bs_open(&conns[i]) != 0) {
                    return 1;
                }
            }
        }
    }

    secs = bs_now() - start;

    for (i = 0; i < nconns; i++) {
        if (conns[i].fd != -1) {
            bs_close(&conns[i]);
        }
    }

    if (bs_bytes_mode) {
        printf("bytes %llu responses %llu errors %llu seconds %.3f\n",
               (unsigned long long) bs_read, (unsigned long long) bs_done,
               (unsigned long long) bs_errors, secs);

    } else {
        p50 = p99 = 0;

        if (bs_nlat) {
            qsort(bs_lat, bs_nlat, sizeof(uint32_t), bs_cmp);
            p50 = bs_lat[bs_nlat / 2];
            p99 = bs_lat[bs_nlat * 99 / 100];
        }

        printf("conns %llu errors %llu seconds %.3f p50_us %.0f p99_us %.0f\n",
               (unsigned long long) bs_done, (unsigned long long) bs_errors,
               secs, p50, p99);
    }

    return (bs_bytes_mode ? bs_read : bs_done) ? 0 : 1;
}
