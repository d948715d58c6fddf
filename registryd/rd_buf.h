/*
 * rd_buf: a growable byte buffer, with helpers that write JSON.
 *
 * Allocation failure is fatal (the daemon aborts): every caller would
 * otherwise have to unwind a half-written document.
 */

#ifndef RD_BUF_H
#define RD_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
} rd_buf_t;

void rd_buf_init(rd_buf_t *b, size_t cap);
void rd_buf_free(rd_buf_t *b);
void rd_buf_reserve(rd_buf_t *b, size_t more);
void rd_buf_add(rd_buf_t *b, const void *p, size_t n);
void rd_buf_adds(rd_buf_t *b, const char *s);
void rd_buf_addc(rd_buf_t *b, char c);
void rd_buf_printf(rd_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rd_buf_add_u64(rd_buf_t *b, uint64_t v);
/* a JSON string literal, quotes included */
void rd_buf_add_json_str(rd_buf_t *b, const char *s);
/* ensure a terminating NUL after len (not counted) and return data */
char *rd_buf_cstr(rd_buf_t *b);

#endif
