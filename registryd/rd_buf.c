/*
 * rd_buf: growable byte buffer and JSON writing helpers.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd_buf.h"


void
rd_buf_init(rd_buf_t *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;

    if (cap) {
        rd_buf_reserve(b, cap);
    }
}


void
rd_buf_free(rd_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


void
rd_buf_reserve(rd_buf_t *b, size_t more)
{
    char    *p;
    size_t   cap;

    if (b->len + more + 1 <= b->cap) {
        return;
    }

    cap = b->cap ? b->cap : 64;

    while (cap < b->len + more + 1) {
        cap *= 2;
    }

    p = realloc(b->data, cap);
    if (p == NULL) {
        fprintf(stderr, "rd_buf: out of memory (%zu bytes)\n", cap);
        abort();
    }

    b->data = p;
    b->cap = cap;
}


void
rd_buf_add(rd_buf_t *b, const void *p, size_t n)
{
    rd_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}


void
rd_buf_adds(rd_buf_t *b, const char *s)
{
    rd_buf_add(b, s, strlen(s));
}


void
rd_buf_addc(rd_buf_t *b, char c)
{
    rd_buf_reserve(b, 1);
    b->data[b->len++] = c;
}


void
rd_buf_printf(rd_buf_t *b, const char *fmt, ...)
{
    int      n;
    va_list  ap;

    rd_buf_reserve(b, 64);

    va_start(ap, fmt);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);

    if (n < 0) {
        return;
    }

    if ((size_t) n >= b->cap - b->len) {
        rd_buf_reserve(b, (size_t) n);
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }

    b->len += (size_t) n;
}


void
rd_buf_add_u64(rd_buf_t *b, uint64_t v)
{
    char   tmp[24];
    char  *p = tmp + sizeof(tmp);

    do {
        *--p = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    rd_buf_add(b, p, (size_t) (tmp + sizeof(tmp) - p));
}


void
rd_buf_add_json_str(rd_buf_t *b, const char *s)
{
    static const char      hex[] = "0123456789abcdef";
    const unsigned char   *p;
    const unsigned char   *run;

    rd_buf_addc(b, '"');

    run = (const unsigned char *) s;

    for (p = run; *p; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\') {
            continue;
        }

        rd_buf_add(b, run, (size_t) (p - run));
        run = p + 1;

        switch (*p) {
        case '"':  rd_buf_add(b, "\\\"", 2); break;
        case '\\': rd_buf_add(b, "\\\\", 2); break;
        case '\n': rd_buf_add(b, "\\n", 2); break;
        case '\r': rd_buf_add(b, "\\r", 2); break;
        case '\t': rd_buf_add(b, "\\t", 2); break;
        default:
            rd_buf_add(b, "\\u00", 4);
            rd_buf_addc(b, hex[*p >> 4]);
            rd_buf_addc(b, hex[*p & 0xf]);
        }
    }

    rd_buf_add(b, run, (size_t) (p - run));
    rd_buf_addc(b, '"');
}


char *
rd_buf_cstr(rd_buf_t *b)
{
    rd_buf_reserve(b, 0);
    b->data[b->len] = '\0';
    return b->data;
}
