/*
 * rd_log: leveled logging to stderr.
 */

#ifndef RD_LOG_H
#define RD_LOG_H

#define RD_ERR_LEN  256

enum {
    RD_LOG_DEBUG = 0,
    RD_LOG_INFO,
    RD_LOG_WARN,
    RD_LOG_ERROR
};

extern int  rd_log_level;

int rd_log_parse_level(const char *name);
void rd_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define rd_debug(...)  do { if (rd_log_level <= RD_LOG_DEBUG)                \
                                rd_log(RD_LOG_DEBUG, __VA_ARGS__); } while (0)
#define rd_info(...)   rd_log(RD_LOG_INFO, __VA_ARGS__)
#define rd_warn(...)   rd_log(RD_LOG_WARN, __VA_ARGS__)
#define rd_error(...)  rd_log(RD_LOG_ERROR, __VA_ARGS__)

#endif
