/*
 * rd_log: leveled logging to stderr, one line per message, with a UTC
 * timestamp in milliseconds.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "rd_log.h"

int  rd_log_level = RD_LOG_INFO;

static const char  *rd_log_names[] = { "debug", "info", "warn", "error" };


int
rd_log_parse_level(const char *name)
{
    int  i;

    for (i = 0; i < 4; i++) {
        if (strcmp(name, rd_log_names[i]) == 0) {
            return i;
        }
    }

    return -1;
}


void
rd_log(int level, const char *fmt, ...)
{
    char            line[1024], ts[32];
    va_list         ap;
    struct tm       tm;
    struct timeval  tv;

    if (level < rd_log_level) {
        return;
    }

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);

    /* one fprintf per line keeps lines from several threads whole */
    fprintf(stderr, "%s.%03dZ [%s] %s\n", ts, (int) (tv.tv_usec / 1000),
            rd_log_names[level], line);
}
