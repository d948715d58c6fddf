/*
 * mesh_buf: growable byte buffer and JSON writing helpers, for registryd
 * and registryctl.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_alloc.h"
#include "mesh_buf.h"


void
mesh_buf_init(mesh_buf_t *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;

    if (cap) {
        mesh_buf_reserve(b, cap);
    }
}


void
mesh_buf_free(mesh_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


void
mesh_buf_reserve(mesh_buf_t *b, size_t more)
{
    size_t  cap;

    if (b->len + more + 1 <= b->cap) {
        return;
    }

    cap = b->cap ? b->cap : 64;

    while (cap < b->len + more + 1) {
        cap *= 2;
    }

    b->data = mesh_xrealloc(b->data, cap);
    b->cap = cap;
}


void
mesh_buf_add(mesh_buf_t *b, const void *p, size_t n)
{
    mesh_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}


void
mesh_buf_adds(mesh_buf_t *b, const char *s)
{
    mesh_buf_add(b, s, strlen(s));
}


void
mesh_buf_addc(mesh_buf_t *b, char c)
{
    mesh_buf_reserve(b, 1);
    b->data[b->len++] = c;
}


void
mesh_buf_printf(mesh_buf_t *b, const char *fmt, ...)
{
    int      n;
    va_list  ap;

    mesh_buf_reserve(b, 64);

    va_start(ap, fmt);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);

    if (n < 0) {
        return;
    }

    if ((size_t) n >= b->cap - b->len) {
        mesh_buf_reserve(b, (size_t) n);
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }

    b->len += (size_t) n;
}


void
mesh_buf_add_u64(mesh_buf_t *b, uint64_t v)
{
    char   tmp[24];
    char  *p = tmp + sizeof(tmp);

    do {
        *--p = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    mesh_buf_add(b, p, (size_t) (tmp + sizeof(tmp) - p));
}


void
mesh_buf_add_json_str(mesh_buf_t *b, const char *s)
{
    static const char      hex[] = "0123456789abcdef";
    const unsigned char   *p;
    const unsigned char   *run;

    mesh_buf_addc(b, '"');

    run = (const unsigned char *) s;

    for (p = run; *p; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\') {
            continue;
        }

        mesh_buf_add(b, run, (size_t) (p - run));
        run = p + 1;

        switch (*p) {
        case '"':  mesh_buf_add(b, "\\\"", 2); break;
        case '\\': mesh_buf_add(b, "\\\\", 2); break;
        case '\n': mesh_buf_add(b, "\\n", 2); break;
        case '\r': mesh_buf_add(b, "\\r", 2); break;
        case '\t': mesh_buf_add(b, "\\t", 2); break;
        default:
            mesh_buf_add(b, "\\u00", 4);
            mesh_buf_addc(b, hex[*p >> 4]);
            mesh_buf_addc(b, hex[*p & 0xf]);
        }
    }

    mesh_buf_add(b, run, (size_t) (p - run));
    mesh_buf_addc(b, '"');
}


char *
mesh_buf_cstr(mesh_buf_t *b)
{
    mesh_buf_reserve(b, 0);
    b->data[b->len] = '\0';
    return b->data;
}


size_t
mesh_buf_sink(char *ptr, size_t size, size_t nmemb, void *sink)
{
    size_t            n = size * nmemb;
    mesh_buf_sink_t  *k = sink;

    if (k->b->len + n > k->max) {
        return 0;
    }

    mesh_buf_add(k->b, ptr, n);

    return n;
}
