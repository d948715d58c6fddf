
/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * Reading the registry's answer: the HTTP/1.x header block, a chunked
 * body, a gzip one, a refusal's reason. Plain buffers in, plain buffers out: the poller owns
 * the connection and decides what a failure means.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <zlib.h>

#include "ngx_http_mesh_module.h"


/*
 * The header block of the len bytes read into buf: status,
 * Content-Length, chunked, gzip, keep-alive. NGX_AGAIN until it is
 * complete; NGX_ERROR with *reason when it cannot be used, or announces a
 * body of more than limit bytes.
 */
ngx_int_t
ngx_http_mesh_answer_header(ngx_http_mesh_answer_t *a, u_char *buf,
    size_t len, size_t limit, const char **reason)
{
    u_char  *hdr, *line, *eol, *v, *vend;
    size_t   n;

    hdr = ngx_strlcasestrn(buf, buf + len, (u_char *) "\r\n\r\n", 4 - 1);

    if (hdr == NULL) {
        if (len > NGX_HTTP_MESH_HEADER_MAX) {
            *reason = "the answer's header block is larger than 16k";
            return NGX_ERROR;
        }

        return NGX_AGAIN;
    }

    if (hdr - buf > NGX_HTTP_MESH_HEADER_MAX) {
        *reason = "the answer's header block is larger than 16k";
        return NGX_ERROR;
    }

    if (len < 12 || ngx_strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ') {
        *reason = "not an HTTP answer";
        return NGX_ERROR;
    }

    a->status = ngx_atoi(buf + 9, 3);
    a->body = hdr + 4;
    a->content_length = -1;
    a->chunked = 0;
    a->gzip = 0;
    a->close = (buf[7] == '0');      /* HTTP/1.0 */

    line = ngx_strlchr(buf, hdr, '\n');

    while (line && line < hdr + 2) {
        line++;
        eol = ngx_strlchr(line, hdr + 2, '\n');
        if (eol == NULL) {
            break;
        }

        v = ngx_strlchr(line, eol, ':');
        if (v == NULL) {
            line = eol;
            continue;
        }

        n = v - line;

        for (v++; v < eol && (*v == ' ' || *v == '\t'); v++) { /* void */ }

        for (vend = eol; vend > v && (vend[-1] == '\r' || vend[-1] == ' ');
             vend--)
        { /* void */ }

        if (n == 14 && ngx_strncasecmp(line, (u_char *) "Content-Length", 14)
                       == 0)
        {
            a->content_length = ngx_atoof(v, vend - v);
            if (a->content_length < 0) {
                *reason = "invalid Content-Length";
                return NGX_ERROR;
            }

        } else if (n == 17
                   && ngx_strncasecmp(line, (u_char *) "Transfer-Encoding",
                                      17) == 0)
        {
            if (vend - v == 7
                && ngx_strncasecmp(v, (u_char *) "chunked", 7) == 0)
            {
                a->chunked = 1;

            } else {
                *reason = "a transfer encoding other than chunked";
                return NGX_ERROR;
            }

        } else if (n == 16
                   && ngx_strncasecmp(line, (u_char *) "Content-Encoding",
                                      16) == 0)
        {
            if (vend - v == 4 && ngx_strncasecmp(v, (u_char *) "gzip", 4)
                                 == 0)
            {
                a->gzip = 1;

            } else if (!(vend - v == 8
                         && ngx_strncasecmp(v, (u_char *) "identity", 8)
                            == 0))
            {
                *reason = "a content encoding other than gzip";
                return NGX_ERROR;
            }

        } else if (n == 10
                   && ngx_strncasecmp(line, (u_char *) "Connection", 10)
                      == 0)
        {
            if (ngx_strlcasestrn(v, vend, (u_char *) "close", 5 - 1)) {
                a->close = 1;
            }
        }

        line = eol;
    }

    if (a->chunked) {
        a->content_length = -1;
    }

    if (a->content_length > (off_t) limit) {
        *reason = "the answer is larger than mesh_zone";
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Decode a chunked body in place: NGX_OK with *len the data's length
 * once the last chunk is there (*last: where the encoding ends),
 * NGX_AGAIN before, NGX_ERROR when it is not chunked encoding. Runs again
 * over the whole body as more arrives, so it only writes once complete.
 */
ngx_int_t
ngx_http_mesh_dechunk(u_char *p, u_char *end, size_t *len, u_char **last)
{
    u_char   *s, *out;
    size_t    size;
    ngx_int_t pass;

    for (pass = 0; pass < 2; pass++) {
        s = p;
        out = p;

        for ( ;; ) {
            size = 0;

            if (s == end) {
                return NGX_AGAIN;
            }

            if (ngx_hextoi(s, 1) < 0) {
                return NGX_ERROR;
            }

            while (s < end && ngx_hextoi(s, 1) >= 0) {
                if (size > NGX_MAX_SIZE_T_VALUE / 16 - 16) {
                    return NGX_ERROR;
                }

                size = size * 16 + ngx_hextoi(s, 1);
                s++;
            }

            /* chunk extensions up to the end of the line */
            while (s < end && *s != '\n') {
                s++;
            }

            if (s == end) {
                return NGX_AGAIN;
            }

            s++;

            if (size == 0) {
                /* trailers, then an empty line */
                for ( ;; ) {
                    u_char *eol = ngx_strlchr(s, end, '\n');

                    if (eol == NULL) {
                        return NGX_AGAIN;
                    }

                    if (eol == s || (eol == s + 1 && *s == '\r')) {
                        s = eol + 1;
                        break;
                    }

                    s = eol + 1;
                }

                if (pass == 1) {
                    *len = out - p;
                    *last = s;
                }

                break;
            }

            if ((size_t) (end - s) < size + 2) {
                return NGX_AGAIN;
            }

            if (pass == 1) {
                ngx_memmove(out, s, size);
            }

            out += size;
            s += size;

            if (*s == '\r') {
                s++;
            }

            if (*s != '\n') {
                return NGX_ERROR;
            }

            s++;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_mesh_inflate(u_char *in, size_t len, size_t limit, u_char **out,
    size_t *outlen, ngx_log_t *log)
{
    int        rc;
    u_char    *buf, *nb;
    size_t     size;
    z_stream   zs;

    size = ngx_min(ngx_max(len * 4, 4096), limit) + 1;

    buf = ngx_alloc(size, log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&zs, sizeof(z_stream));

    /* 15 + 16: a gzip wrapper */
    if (inflateInit2(&zs, 15 + 16) != Z_OK) {
        ngx_free(buf);
        return NGX_ERROR;
    }

    zs.next_in = in;
    zs.avail_in = (uInt) len;
    zs.next_out = buf;
    zs.avail_out = (uInt) (size - 1);

    for ( ;; ) {
        rc = inflate(&zs, Z_NO_FLUSH);

        if (rc == Z_STREAM_END) {
            break;
        }

        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            goto failed;
        }

        if (zs.avail_out == 0) {
            if (size - 1 >= limit) {
                goto failed;
            }

            nb = ngx_alloc(ngx_min(size * 2, limit + 1), log);
            if (nb == NULL) {
                goto failed;
            }

            ngx_memcpy(nb, buf, zs.total_out);
            ngx_free(buf);
            buf = nb;
            size = ngx_min(size * 2, limit + 1);

            zs.next_out = buf + zs.total_out;
            zs.avail_out = (uInt) (size - 1 - zs.total_out);
            continue;
        }

        if (rc == Z_BUF_ERROR || zs.avail_in == 0) {
            goto failed;        /* truncated */
        }
    }

    *out = buf;
    *outlen = zs.total_out;
    buf[*outlen] = '\0';

    inflateEnd(&zs);

    return NGX_OK;

failed:

    inflateEnd(&zs);
    ngx_free(buf);

    return NGX_DECLINED;
}


/*
 * A refusal's reason, for the status: the "error" string of registryd's
 * JSON answer ({"error": "..."}), its \" and \\ read back, in buf (size
 * bytes, NUL-terminated); "" without one.
 */
void
ngx_http_mesh_answer_error(u_char *body, size_t len, u_char *buf,
    size_t size)
{
    u_char  *p, *end;
    size_t   n;

    end = body + len;
    n = 0;

    p = ngx_strlcasestrn(body, body + ngx_min(len, 512),
                         (u_char *) "\"error\":\"", 9 - 1);

    for (p = p ? p + 9 : NULL; p && p < end && *p != '"' && n < size - 1;
         p++)
    {
        if (*p == '\\' && p + 1 < end) {
            p++;
        }

        buf[n++] = *p;
    }

    buf[n] = '\0';
}
