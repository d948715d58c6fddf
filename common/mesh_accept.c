/*
 * mesh_accept: an Accept header's quality for a media type.
 */

#include <string.h>

#include "mesh_accept.h"


static int mesh_accept_qvalue(const char *s, size_t len);
static int mesh_accept_eq(const char *s, size_t len, const char *t,
    size_t tlen);


#define MESH_ACCEPT_OWS(c)  ((c) == ' ' || (c) == '\t')


int
mesh_accept_quality(const char *accept, size_t len, const char *type)
{
    int          best, best_q, spec, q;
    size_t       tlen, slash, rlen;
    const char  *p, *end, *elt, *eend, *range, *param, *pend, *eq;

    tlen = strlen(type);
    slash = (const char *) memchr(type, '/', tlen) - type;

    best = 0;
    best_q = 0;

    p = accept;
    end = accept + len;

    while (p < end) {

        /* one element: up to the next comma */

        elt = p;
        eend = memchr(p, ',', end - p);
        if (eend == NULL) {
            eend = end;
        }

        p = eend + 1;

        while (elt < eend && MESH_ACCEPT_OWS(*elt)) {
            elt++;
        }

        range = elt;

        while (elt < eend && *elt != ';' && !MESH_ACCEPT_OWS(*elt)) {
            elt++;
        }

        rlen = elt - range;

        if (rlen == 3 && memcmp(range, "*/*", 3) == 0) {
            spec = 1;

        } else if (rlen == slash + 2
                   && mesh_accept_eq(range, slash + 1, type, slash + 1)
                   && range[slash + 1] == '*')
        {
            spec = 2;

        } else if (mesh_accept_eq(range, rlen, type, tlen)) {
            spec = 3;

        } else {
            continue;
        }

        /* its parameters: only q matters */

        q = 1000;

        while (elt < eend) {
            while (elt < eend && (MESH_ACCEPT_OWS(*elt) || *elt == ';')) {
                elt++;
            }

            param = elt;
            pend = memchr(elt, ';', eend - elt);
            if (pend == NULL) {
                pend = eend;
            }

            elt = pend;

            eq = memchr(param, '=', pend - param);
            if (eq == NULL || eq - param != 1
                || (*param != 'q' && *param != 'Q'))
            {
                continue;
            }

            q = mesh_accept_qvalue(eq + 1, pend - (eq + 1));
        }

        if (spec > best) {
            best = spec;
            best_q = q;
        }
    }

    return best_q;
}


/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ); -1: bad */
static int
mesh_accept_qvalue(const char *s, size_t len)
{
    int     q, unit;
    size_t  i;

    while (len && MESH_ACCEPT_OWS(s[len - 1])) {
        len--;
    }

    if (len == 0 || (s[0] != '0' && s[0] != '1')) {
        return 0;
    }

    q = (s[0] - '0') * 1000;

    if (len == 1) {
        return q;
    }

    if (s[1] != '.' || len > 5) {
        return 0;
    }

    unit = 100;

    for (i = 2; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }

        q += (s[i] - '0') * unit;
        unit /= 10;
    }

    return q > 1000 ? 0 : q;
}


/* s equals t, ASCII case-insensitively */
static int
mesh_accept_eq(const char *s, size_t len, const char *t, size_t tlen)
{
    size_t         i;
    unsigned char  a, b;

    if (len != tlen) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        a = (unsigned char) s[i];
        b = (unsigned char) t[i];

        if (a >= 'A' && a <= 'Z') {
            a += 'a' - 'A';
        }

        if (a != b) {
            return 0;
        }
    }

    return 1;
}
