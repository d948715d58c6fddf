/*
 * mesh_json: a small strict JSON reader shared by the snapshot and the
 * policy parsers.
 *
 * One pass over the text, no tree: a parser reads the fields it knows into
 * plain structures as they come, and checks and skips anything else.
 * Strings are copied (decoded when they hold escapes) into an arena of
 * malloc'ed blocks that mesh_arena_destroy() releases at once. Growing
 * arrays live in scratch vectors (mesh_vec_t) owned by the parser.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_json.h"


#define MESH_ARENA_MIN        (64 * 1024)
#define MESH_ARENA_MAX        (4 * 1024 * 1024)
#define MESH_ALIGN            16      /* enough for any type here */


struct mesh_arena_block_s {
    mesh_arena_block_t  *next;
    size_t               size;
    size_t               used;
};


static size_t mesh_json_utf8(const unsigned char *p, const unsigned char *end);
static int mesh_json_hex4(const unsigned char *p, const unsigned char *end,
    uint32_t *cp);


/* bytes that end the fast path of a string: '"', '\\', controls, non-ASCII */

static const unsigned char  mesh_json_special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
};


void
mesh_json_error(mesh_json_t *j, const unsigned char *at, const char *fmt,
    ...)
{
    int             n;
    va_list         args;
    unsigned char  *p;

    if (j->failed) {
        return;
    }

    j->failed = 1;

    if (j->err == NULL || j->errlen == 0) {
        return;
    }

    n = snprintf(j->err, j->errlen, "%s: byte %zu: ",
                 j->what ? j->what : "json", (size_t) (at - j->start));

    if (n < 0 || (size_t) n >= j->errlen) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(j->err + n, j->errlen - n, fmt, args);
    va_end(args);

    /* names quoted from the input must not break the line */

    for (p = (unsigned char *) j->err + n; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }
}


void
mesh_json_ws(mesh_json_t *j)
{
    const unsigned char  *p, *end;

    p = j->pos;
    end = j->end;

    while (p < end
           && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    {
        p++;
    }

    j->pos = p;
}


int
mesh_json_expect(mesh_json_t *j, unsigned char c)
{
    if (j->pos == j->end) {
        mesh_json_error(j, j->pos, "unexpected end of input, expected '%c'",
                        c);
        return -1;
    }

    if (*j->pos != c) {
        mesh_json_error(j, j->pos, "expected '%c'", c);
        return -1;
    }

    j->pos++;

    return 0;
}


/*
 * After '{' or a member's value: 1 and the next key, the position at its
 * value; 0 after the closing '}'; -1 on an error. *n counts the members.
 * key == NULL only checks the key.
 */

int
mesh_json_next_member(mesh_json_t *j, size_t *n, const unsigned char **key,
    size_t *klen)
{
    mesh_json_ws(j);

    if (j->pos < j->end && *j->pos == '}') {
        j->pos++;
        return 0;
    }

    if (*n > 0) {
        if (j->pos < j->end && *j->pos != ',') {
            mesh_json_error(j, j->pos, "expected ',' or '}'");
            return -1;
        }

        if (mesh_json_expect(j, ',') != 0) {
            return -1;
        }

        mesh_json_ws(j);
    }

    if (j->pos == j->end) {
        mesh_json_error(j, j->pos, "unexpected end of input in an object");
        return -1;
    }

    if (*j->pos != '"') {
        mesh_json_error(j, j->pos, "expected a string key");
        return -1;
    }

    j->key_at = j->pos;

    if (mesh_json_string(j, key, klen) != 0) {
        return -1;
    }

    mesh_json_ws(j);

    if (mesh_json_expect(j, ':') != 0) {
        return -1;
    }

    mesh_json_ws(j);

    if (j->pos == j->end) {
        mesh_json_error(j, j->pos,
                        "unexpected end of input, expected a value");
        return -1;
    }

    (*n)++;

    return 1;
}


/* as mesh_json_next_member(), for arrays: 1 at the next value */

int
mesh_json_next_element(mesh_json_t *j, size_t *n)
{
    mesh_json_ws(j);

    if (j->pos < j->end && *j->pos == ']') {
        j->pos++;
        return 0;
    }

    if (*n > 0) {
        if (j->pos < j->end && *j->pos != ',') {
            mesh_json_error(j, j->pos, "expected ',' or ']'");
            return -1;
        }

        if (mesh_json_expect(j, ',') != 0) {
            return -1;
        }

        mesh_json_ws(j);
    }

    if (j->pos == j->end) {
        mesh_json_error(j, j->pos, "unexpected end of input in an array");
        return -1;
    }

    (*n)++;

    return 1;
}


/*
 * A string at j->pos (on its '"'): *data and *len get its decoded bytes,
 * which point into the input when it has no escape and into j->buf, valid
 * until the next string, when it has. UTF-8 is checked. data == NULL only
 * checks.
 */

int
mesh_json_string(mesh_json_t *j, const unsigned char **data, size_t *len)
{
    size_t                k, size;
    uint32_t              cp, lo;
    unsigned char        *d;
    const unsigned char  *p, *q, *end, *open;

    open = j->pos;
    end = j->end;
    p = open + 1;

    while (p < end && !mesh_json_special[*p]) {
        p++;
    }

    if (p < end && *p == '"') {
        if (data) {
            *data = open + 1;
            *len = p - (open + 1);
        }

        j->pos = p + 1;
        return 0;
    }

    /* the slow path: check all up to the closing quote, then decode */

    for ( ;; ) {
        if (p == end) {
            mesh_json_error(j, open, "unterminated string");
            return -1;
        }

        if (*p == '"') {
            break;
        }

        if (*p < 0x20) {
            mesh_json_error(j, p, "a control character in a string");
            return -1;
        }

        if (*p >= 0x80) {
            k = mesh_json_utf8(p, end);
            if (k == 0) {
                mesh_json_error(j, p, "invalid UTF-8 in a string");
                return -1;
            }

            p += k;
            continue;
        }

        if (*p != '\\') {
            p++;
            continue;
        }

        if (p + 1 == end) {
            mesh_json_error(j, open, "unterminated string");
            return -1;
        }

        switch (p[1]) {

        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
            p += 2;
            continue;

        case 'u':
            break;

        default:
            mesh_json_error(j, p, "invalid escape in a string");
            return -1;
        }

        if (mesh_json_hex4(p + 2, end, &cp) != 0) {
            mesh_json_error(j, p, "invalid \\u escape in a string");
            return -1;
        }

        if (cp >= 0xdc00 && cp <= 0xdfff) {
            mesh_json_error(j, p, "a lone low surrogate in a string");
            return -1;
        }

        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (end - p < 12 || p[6] != '\\' || p[7] != 'u'
                || mesh_json_hex4(p + 8, end, &lo) != 0
                || lo < 0xdc00 || lo > 0xdfff)
            {
                mesh_json_error(j, p, "a lone high surrogate in a string");
                return -1;
            }

            p += 12;
            continue;
        }

        p += 6;
    }

    j->pos = p + 1;

    if (data == NULL) {
        return 0;
    }

    /* decoded is never longer than the escaped text */

    size = p - open;

    if (size > j->buf_size) {
        free(j->buf);

        j->buf_size = size < 256 ? 256 : size;
        j->buf = malloc(j->buf_size);

        if (j->buf == NULL) {
            j->buf_size = 0;
            mesh_json_error(j, open, "out of memory");
            return -1;
        }
    }

    d = j->buf;
    end = p;

    for (q = open + 1; q < end; /* void */ ) {
        if (*q != '\\') {
            *d++ = *q++;
            continue;
        }

        switch (q[1]) {
        case 'b': *d++ = '\b'; q += 2; continue;
        case 'f': *d++ = '\f'; q += 2; continue;
        case 'n': *d++ = '\n'; q += 2; continue;
        case 'r': *d++ = '\r'; q += 2; continue;
        case 't': *d++ = '\t'; q += 2; continue;
        case 'u': break;
        default: *d++ = q[1]; q += 2; continue;
        }

        (void) mesh_json_hex4(q + 2, end, &cp);
        q += 6;

        if (cp >= 0xd800 && cp <= 0xdbff) {
            (void) mesh_json_hex4(q + 2, end, &lo);
            q += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }

        if (cp < 0x80) {
            *d++ = (unsigned char) cp;

        } else if (cp < 0x800) {
            *d++ = (unsigned char) (0xc0 | (cp >> 6));
            *d++ = (unsigned char) (0x80 | (cp & 0x3f));

        } else if (cp < 0x10000) {
            *d++ = (unsigned char) (0xe0 | (cp >> 12));
            *d++ = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            *d++ = (unsigned char) (0x80 | (cp & 0x3f));

        } else {
            *d++ = (unsigned char) (0xf0 | (cp >> 18));
            *d++ = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
            *d++ = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            *d++ = (unsigned char) (0x80 | (cp & 0x3f));
        }
    }

    *data = j->buf;
    *len = d - j->buf;

    return 0;
}


/* the length of a well-formed UTF-8 sequence at p (RFC 3629), or 0 */

static size_t
mesh_json_utf8(const unsigned char *p, const unsigned char *end)
{
    size_t         n, i;
    unsigned char  c, lo, hi;

    c = p[0];
    lo = 0x80;
    hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;

        if (c == 0xe0) {
            lo = 0xa0;              /* overlong */

        } else if (c == 0xed) {
            hi = 0x9f;              /* surrogates */
        }

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;

        if (c == 0xf0) {
            lo = 0x90;              /* overlong */

        } else if (c == 0xf4) {
            hi = 0x8f;              /* above U+10FFFF */
        }

    } else {
        return 0;
    }

    if ((size_t) (end - p) < n) {
        return 0;
    }

    if (p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}


static int
mesh_json_hex4(const unsigned char *p, const unsigned char *end,
    uint32_t *cp)
{
    size_t         i;
    uint32_t       v;
    unsigned char  c;

    if (end - p < 4) {
        return -1;
    }

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            v = v * 16 + (c - '0');

        } else if (c >= 'a' && c <= 'f') {
            v = v * 16 + (c - 'a' + 10);

        } else if (c >= 'A' && c <= 'F') {
            v = v * 16 + (c - 'A' + 10);

        } else {
            return -1;
        }
    }

    *cp = v;

    return 0;
}


/*
 * A number at j->pos, checked against the JSON grammar. *integer tells
 * whether it is a non-negative integer without fraction or exponent that
 * fits in 64 bits, and *value then holds it.
 */

int
mesh_json_number(mesh_json_t *j, int *integer, uint64_t *value)
{
    int                   neg, overflow;
    uint64_t              v;
    const unsigned char  *p, *end, *start;

    p = j->pos;
    end = j->end;
    start = p;

    neg = 0;
    overflow = 0;
    v = 0;

    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }

    if (p == end || *p < '0' || *p > '9') {
        mesh_json_error(j, start, "invalid number");
        return -1;
    }

    if (*p == '0') {
        p++;

        if (p < end && *p >= '0' && *p <= '9') {
            mesh_json_error(j, start, "a number with a leading zero");
            return -1;
        }

    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (v > (UINT64_MAX - (*p - '0')) / 10) {
                overflow = 1;
            }

            v = v * 10 + (*p - '0');
            p++;
        }
    }

    *integer = !neg && !overflow;

    if (p < end && *p == '.') {
        p++;
        *integer = 0;

        if (p == end || *p < '0' || *p > '9') {
            mesh_json_error(j, start, "invalid number");
            return -1;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        *integer = 0;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == end || *p < '0' || *p > '9') {
            mesh_json_error(j, start, "invalid number");
            return -1;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    *value = v;
    j->pos = p;

    return 0;
}


/* check and pass over any value; depth is that of its container */

int
mesh_json_skip(mesh_json_t *j, int depth)
{
    int                   rc, integer;
    size_t                n;
    uint64_t              v;

    if (j->pos == j->end) {
        mesh_json_error(j, j->pos,
                        "unexpected end of input, expected a value");
        return -1;
    }

    switch (*j->pos) {

    case '{':
    case '[':
        if (depth >= MESH_JSON_MAX_DEPTH) {
            mesh_json_error(j, j->pos, "nested deeper than %d",
                            MESH_JSON_MAX_DEPTH);
            return -1;
        }

        n = 0;

        if (*j->pos++ == '{') {
            while ((rc = mesh_json_next_member(j, &n, NULL, NULL)) == 1) {
                if (mesh_json_skip(j, depth + 1) != 0) {
                    return -1;
                }
            }

        } else {
            while ((rc = mesh_json_next_element(j, &n)) == 1) {
                if (mesh_json_skip(j, depth + 1) != 0) {
                    return -1;
                }
            }
        }

        return rc;

    case '"':
        return mesh_json_string(j, NULL, NULL);

    case 't':
        if (j->end - j->pos >= 4 && memcmp(j->pos, "true", 4) == 0) {
            j->pos += 4;
            return 0;
        }

        break;

    case 'f':
        if (j->end - j->pos >= 5 && memcmp(j->pos, "false", 5) == 0) {
            j->pos += 5;
            return 0;
        }

        break;

    case 'n':
        if (j->end - j->pos >= 4 && memcmp(j->pos, "null", 4) == 0) {
            j->pos += 4;
            return 0;
        }

        break;

    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return mesh_json_number(j, &integer, &v);
    }

    mesh_json_error(j, j->pos, "unexpected character, expected a value");

    return -1;
}


/* a string value copied into the arena, NUL-terminated */

char *
mesh_json_cstr(mesh_json_t *j, const char *what)
{
    char                 *s;
    size_t                len;
    const unsigned char  *data, *at;

    at = j->pos;

    if (*at != '"') {
        mesh_json_error(j, at, "%s must be a string", what);
        return NULL;
    }

    if (mesh_json_string(j, &data, &len) != 0) {
        return NULL;
    }

    /* they become C strings */

    if (memchr(data, '\0', len)) {
        mesh_json_error(j, at, "%s holds \\u0000", what);
        return NULL;
    }

    s = mesh_arena_alloc(j->arena, len + 1);
    if (s == NULL) {
        mesh_json_error(j, at, "out of memory");
        return NULL;
    }

    memcpy(s, data, len);
    s[len] = '\0';

    return s;
}


int
mesh_json_uint(mesh_json_t *j, const char *what, uint64_t min, uint64_t max,
    uint64_t *value)
{
    int                   integer;
    uint64_t              v;
    const unsigned char  *at;

    at = j->pos;

    if (*at != '-' && (*at < '0' || *at > '9')) {
        mesh_json_error(j, at, "\"%s\" must be an integer", what);
        return -1;
    }

    if (mesh_json_number(j, &integer, &v) != 0) {
        return -1;
    }

    if (!integer || v < min || v > max) {
        if (max == UINT64_MAX) {
            mesh_json_error(j, at, "\"%s\" must be an integer >= %llu", what,
                            (unsigned long long) min);

        } else {
            mesh_json_error(j, at, "\"%s\" must be an integer %llu..%llu",
                            what, (unsigned long long) min,
                            (unsigned long long) max);
        }

        return -1;
    }

    *value = v;

    return 0;
}


/* memory */

void *
mesh_vec_push(mesh_json_t *j, mesh_vec_t *v)
{
    void    *elts;
    size_t   n;

    if (v->nelts == v->nalloc) {
        n = v->nalloc ? v->nalloc * 2 : 16;

        if (n > (size_t) -1 / 2 / v->size) {
            mesh_json_error(j, j->pos, "out of memory");
            return NULL;
        }

        elts = realloc(v->elts, n * v->size);
        if (elts == NULL) {
            mesh_json_error(j, j->pos, "out of memory");
            return NULL;
        }

        v->elts = elts;
        v->nalloc = n;
    }

    return (char *) v->elts + v->size * v->nelts++;
}


void *
mesh_arena_alloc(mesh_arena_t *a, size_t size)
{
    size_t               hdr, bsize;
    mesh_arena_block_t  *b;

    hdr = (sizeof(mesh_arena_block_t) + MESH_ALIGN - 1) & ~(MESH_ALIGN - 1);

    if (size > (size_t) -1 / 2) {
        return NULL;
    }

    size = (size + MESH_ALIGN - 1) & ~(MESH_ALIGN - 1);

    b = a->head;

    if (b == NULL || b->size - b->used < size) {
        if (a->next_size == 0) {
            a->next_size = MESH_ARENA_MIN;
        }

        bsize = a->next_size;

        if (a->next_size < MESH_ARENA_MAX) {
            a->next_size *= 2;
        }

        if (bsize < size) {
            bsize = size;
        }

        b = malloc(hdr + bsize);
        if (b == NULL) {
            return NULL;
        }

        b->size = bsize;
        b->used = 0;

        /* a large lone allocation must not retire a roomy current block */

        if (a->head && bsize == size
            && a->head->size - a->head->used > MESH_ARENA_MIN / 4)
        {
            b->next = a->head->next;
            a->head->next = b;
            b->used = size;
            return (char *) b + hdr;
        }

        b->next = a->head;
        a->head = b;
    }

    b->used += size;

    return (char *) b + hdr + b->used - size;
}


void
mesh_arena_destroy(mesh_arena_t *a)
{
    mesh_arena_block_t  *b, *next;

    if (a == NULL) {
        return;
    }

    for (b = a->head; b; b = next) {
        next = b->next;
        free(b);
    }

    free(a);
}
