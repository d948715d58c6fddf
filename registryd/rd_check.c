/*
 * rd_check: a health check's definition and its threshold counting.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rd_check.h"
#include "rd_log.h"
#include "rd_util.h"


static int
rd_check_duration(json_t *v, const char *name, int64_t min, int64_t *out,
    char *err, const char **field)
{
    int64_t  ms;

    ms = json_is_string(v) ? mesh_duration_parse(json_string_value(v)) : -1;

    if (ms < min || ms > 3600000) {
        snprintf(err, RD_ERR_LEN, "check.%s must be a duration between "
                 "%lldms and 1h, such as \"5s\"", name, (long long) min);
        *field = (name[0] == 'i') ? "check.interval" : "check.timeout";
        return -1;
    }

    *out = ms;
    return 0;
}


static int
rd_check_threshold(json_t *v, const char *name, int *out, char *err,
    const char **field)
{
    json_int_t  n;

    n = json_is_integer(v) ? json_integer_value(v) : 0;

    if (n < 1 || n > RD_CHECK_THRESHOLD_MAX) {
        snprintf(err, RD_ERR_LEN, "check.%s must be an integer 1..%d", name,
                 RD_CHECK_THRESHOLD_MAX);
        *field = (name[0] == 'h') ? "check.healthy_threshold"
                                  : "check.unhealthy_threshold";
        return -1;
    }

    *out = (int) n;
    return 0;
}


/* "200", "200-399" or 200 */
static int
rd_check_status(json_t *v, rd_check_t *c)
{
    int          lo, hi, n;
    const char  *s;

    if (json_is_integer(v)) {
        if (json_integer_value(v) < 100 || json_integer_value(v) > 599) {
            return -1;
        }
        c->status_min = (int) json_integer_value(v);
        c->status_max = c->status_min;
        return 0;
    }

    s = json_string_value(v);
    if (s == NULL) {
        return -1;
    }

    n = 0;
    if (sscanf(s, "%3d%n", &lo, &n) != 1 || n != 3) {
        return -1;
    }

    hi = lo;
    s += 3;

    if (*s == '-') {
        n = 0;
        if (sscanf(s + 1, "%3d%n", &hi, &n) != 1 || n != 3) {
            return -1;
        }
        s += 4;
    }

    if (*s != '\0' || lo < 100 || hi > 599 || lo > hi
        || s[-1] < '0' || s[-1] > '9')
    {
        return -1;
    }

    c->status_min = lo;
    c->status_max = hi;
    return 0;
}


int
rd_check_from_json(json_t *obj, rd_check_t *c, char *err, const char **field)
{
    int          kinds = 0, have_status = 0;
    json_t      *v;
    const char  *k, *path;

    memset(c, 0, sizeof(rd_check_t));
    c->status_min = RD_CHECK_STATUS_MIN;
    c->status_max = RD_CHECK_STATUS_MAX;
    c->interval = RD_CHECK_INTERVAL;
    c->timeout = RD_CHECK_TIMEOUT;
    c->healthy_threshold = 1;
    c->unhealthy_threshold = 1;

    *field = "check";

    if (!json_is_object(obj)) {
        snprintf(err, RD_ERR_LEN, "check must be an object");
        return -1;
    }

    json_object_foreach(obj, k, v) {
        if (strcmp(k, "http") == 0) {
            path = json_string_value(v);

            if (path == NULL || path[0] != '/'
                || json_string_length(v) > RD_CHECK_PATH_MAX
                || strlen(path) != json_string_length(v)
                || strpbrk(path, " \r\n\t"))
            {
                snprintf(err, RD_ERR_LEN, "check.http must be a path "
                         "starting with \"/\"");
                *field = "check.http";
                return -1;
            }

            strcpy(c->path, path);
            c->kind = RD_CHECK_HTTP;
            kinds++;

        } else if (strcmp(k, "tcp") == 0) {
            if (!json_is_boolean(v)) {
                snprintf(err, RD_ERR_LEN, "check.tcp must be true or false");
                *field = "check.tcp";
                return -1;
            }

            if (json_is_true(v)) {
                c->kind = RD_CHECK_TCP;
                kinds++;
            }

        } else if (strcmp(k, "status") == 0) {
            if (rd_check_status(v, c) != 0) {
                snprintf(err, RD_ERR_LEN, "check.status must be a status "
                         "or a range such as \"200-399\" (100..599)");
                *field = "check.status";
                return -1;
            }
            have_status = 1;

        } else if (strcmp(k, "interval") == 0) {
            if (rd_check_duration(v, "interval", 100, &c->interval, err,
                                  field) != 0)
            {
                return -1;
            }

        } else if (strcmp(k, "timeout") == 0) {
            if (rd_check_duration(v, "timeout", 10, &c->timeout, err,
                                  field) != 0)
            {
                return -1;
            }

        } else if (strcmp(k, "healthy_threshold") == 0) {
            if (rd_check_threshold(v, "healthy_threshold",
                                   &c->healthy_threshold, err, field) != 0)
            {
                return -1;
            }

        } else if (strcmp(k, "unhealthy_threshold") == 0) {
            if (rd_check_threshold(v, "unhealthy_threshold",
                                   &c->unhealthy_threshold, err, field) != 0)
            {
                return -1;
            }

        } else {
            snprintf(err, RD_ERR_LEN, "unknown field \"check.%.64s\"", k);
            *field = "check";
            return -1;
        }
    }

    if (kinds != 1) {
        snprintf(err, RD_ERR_LEN, "check needs exactly one of \"http\" or "
                 "\"tcp\"");
        *field = "check";
        return -1;
    }

    if (have_status && c->kind != RD_CHECK_HTTP) {
        snprintf(err, RD_ERR_LEN, "check.status applies to http checks "
                 "only");
        *field = "check.status";
        return -1;
    }

    return 0;
}


int
rd_check_parse(const char *text, rd_check_t *c, char *err)
{
    int           rc;
    json_t       *obj;
    const char   *field;
    json_error_t  jerr;

    obj = json_loads(text, 0, &jerr);
    if (obj == NULL) {
        snprintf(err, RD_ERR_LEN, "check: %s", jerr.text);
        return -1;
    }

    rc = rd_check_from_json(obj, c, err, &field);
    json_decref(obj);

    return rc;
}


int
rd_check_status_ok(const rd_check_t *c, long status)
{
    return status >= c->status_min && status <= c->status_max;
}


int
rd_check_count(rd_check_state_t *s, const rd_check_t *c, int ok)
{
    if (ok) {
        s->failures = 0;
        if (s->successes < RD_CHECK_THRESHOLD_MAX) {
            s->successes++;
        }

        if (s->critical && s->successes >= c->healthy_threshold) {
            s->critical = 0;
            return 1;
        }

        return 0;
    }

    s->successes = 0;
    if (s->failures < RD_CHECK_THRESHOLD_MAX) {
        s->failures++;
    }

    if (!s->critical && s->failures >= c->unhealthy_threshold) {
        s->critical = 1;
        return 1;
    }

    return 0;
}
