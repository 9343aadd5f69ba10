/*
 * log.c - diagnostics to syslog and stderr
 *
 * One line per event. syslog is opened lazily with LOG_PID under facility
 * mail, where postmasters look for mail-system messages. Lines longer than
 * the internal buffer are truncated, never split.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "log.h"

static const char *log_ident = "rcptgate";
static int log_stderr = 1;
static int log_syslog = 0;
static int log_debug_on = 0;
static void (*log_hook)(int, const char *);

/* log_init - name the program and choose where lines go */
void log_init(const char *ident, int to_stderr, int to_syslog)
{
    log_ident = ident;
    log_stderr = to_stderr;
    if (log_syslog)
        closelog();
    log_syslog = to_syslog;
    if (to_syslog)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

/* log_set_hook - a second destination for every line */
void log_set_hook(void (*fn)(int prio, const char *line))
{
    log_hook = fn;
}

void log_set_debug(int on)
{
    log_debug_on = on;
}

int log_debug_enabled(void)
{
    return log_debug_on;
}

/* log_vemit - format one line and send it where it belongs */
static void __attribute__((format(printf, 3, 0))) log_vemit(int prio, const char *level, const char *fmt, va_list ap)
{
    char buf[2048];

    vsnprintf(buf, sizeof(buf), fmt, ap);
    if (log_syslog)
        syslog(prio, "%s%s", level, buf);
    if (log_stderr)
        fprintf(stderr, "%s: %s%s\n", log_ident, level, buf);
    if (log_hook) {
        char line[2100];

        snprintf(line, sizeof(line), "%s%s", level, buf);
        log_hook(prio, line);
    }
}

#define LOG_FN(name, prio, level) \
    void name(const char *fmt, ...) \
    { \
        va_list ap; \
        va_start(ap, fmt); \
        log_vemit(prio, level, fmt, ap); \
        va_end(ap); \
    }

void log_debug(const char *fmt, ...)
{
    va_list ap;

    if (!log_debug_on)
        return;
    va_start(ap, fmt);
    log_vemit(LOG_DEBUG, "debug: ", fmt, ap);
    va_end(ap);
}

LOG_FN(log_info, LOG_INFO, "")
LOG_FN(log_warn, LOG_WARNING, "warning: ")
LOG_FN(log_err, LOG_ERR, "error: ")

void log_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vemit(LOG_CRIT, "fatal: ", fmt, ap);
    va_end(ap);
    exit(RG_EX_SOFTWARE);
}

void log_fatal_code(int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vemit(LOG_CRIT, "fatal: ", fmt, ap);
    va_end(ap);
    exit(code);
}

void log_panic(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vemit(LOG_CRIT, "panic: ", fmt, ap);
    va_end(ap);
    abort();
}
