/*
 * mesh_regex: compile once, match many times; one match block per regex
 * (a regex is used by one thread: an nginx worker, or registryd's check).
 */

#define PCRE2_CODE_UNIT_WIDTH  8

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>

#include "mesh_regex.h"


struct mesh_regex_s {
    pcre2_code        *code;
    pcre2_match_data  *md;
};


mesh_regex_t *
mesh_regex_compile(const char *pattern, size_t len, char *err,
    size_t errlen)
{
    int            ecode;
    PCRE2_SIZE     eoff;
    PCRE2_UCHAR    msg[160];
    mesh_regex_t  *re;

    re = calloc(1, sizeof(mesh_regex_t));
    if (re == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    re->code = pcre2_compile((PCRE2_SPTR) pattern, len,
                             PCRE2_ANCHORED | PCRE2_ENDANCHORED, &ecode,
                             &eoff, NULL);
    if (re->code == NULL) {
        if (pcre2_get_error_message(ecode, msg, sizeof(msg)) < 0) {
            snprintf((char *) msg, sizeof(msg), "error %d", ecode);
        }

        snprintf(err, errlen, "invalid regex \"%.64s\" at offset %zu: %s",
                 pattern, (size_t) eoff, (char *) msg);
        free(re);
        return NULL;
    }

    /* a JIT is a speed-up where there is one, not a condition */
    (void) pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);

    re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (re->md == NULL) {
        snprintf(err, errlen, "out of memory");
        mesh_regex_free(re);
        return NULL;
    }

    return re;
}


int
mesh_regex_match(mesh_regex_t *re, const char *s, size_t len)
{
    int  rc;

    rc = pcre2_match(re->code, (PCRE2_SPTR) (s ? s : ""), s ? len : 0, 0, 0,
                     re->md, NULL);

    if (rc >= 0) {
        return 1;
    }

    return rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}


void
mesh_regex_free(mesh_regex_t *re)
{
    if (re == NULL) {
        return;
    }

    pcre2_match_data_free(re->md);
    pcre2_code_free(re->code);
    free(re);
}
