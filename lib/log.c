/*
 * log.c - diagnostics to syslog and stderr
 *
 * One line per event. syslog is opened with LOG_PID under facility mail,
 * where postmasters look for mail-system messages. Lines longer than the
 * internal buffer are truncated, never split.
 *
 * Every line is passed through printable() first, whatever its
 * destination: text a client sent (a command, a HELO, an address) cannot
 * forge a line or send escape sequences to whoever reads the log.
 *
 * Where nothing listens on the syslog socket (containers, test machines)
 * glibc's syslog() tries socket() and connect() again for every line and
 * drops it. So we look for a listener ourselves at log_init() and then at
 * most once a minute, and skip syslog() while there is none: the same
 * lines are lost, without two failing system calls each.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "log.h"
#include "printable.h"

static const char *log_ident = "rcptgate";
static int log_stderr = 1;
static int log_syslog = 0;
static int log_debug_on = 0;
static void (*log_hook)(int, const char *);

#ifndef LOG_SYSLOG_PATH
#define LOG_SYSLOG_PATH     "/dev/log"  /* glibc's _PATH_LOG */
#endif
#define LOG_RECHECK_SECS    60          /* how often to look for the syslog socket again */

static int log_syslog_up = 0;           /* a syslog daemon listens (at the last check) */
static time_t log_syslog_checked = 0;   /* when we last looked */

/* log_syslog_probe - does something accept connections on the syslog socket? */
static int log_syslog_probe(void)
{
    static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
    struct sockaddr_un sun;
    int saved = errno;
    int ok = 0;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", LOG_SYSLOG_PATH);
    /* As glibc does: a datagram socket, or a stream one where the daemon wants that. */
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]) && !ok; i++) {
        int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);

        if (fd < 0)
            break;
        if (connect(fd, (struct sockaddr *) &sun, sizeof(sun)) == 0)
            ok = 1;
        else if (errno != EPROTOTYPE) {
            close(fd);
            break;
        }
        close(fd);
    }
    errno = saved;
    return ok;
}

/* log_syslog_check - look for the syslog socket (again); open or close syslog to match */
static void log_syslog_check(time_t now)
{
    int up = log_syslog_probe();

    log_syslog_checked = now;
    if (up && !log_syslog_up)
        openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
    else if (!up && log_syslog_up)
        closelog();
    log_syslog_up = up;
}

/* log_stderr_journal - stderr is systemd's journal stream (JOURNAL_STREAM names it) */
static int log_stderr_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat sb;

    if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &sb) < 0)
        return 0;
    return (unsigned long long) sb.st_dev == dev && (unsigned long long) sb.st_ino == ino;
}

/* log_init - name the program and choose where lines go */
void log_init(const char *ident, int to_stderr, int to_syslog)
{
    /* Under systemd both reach the journal: every line once, through syslog. */
    if (to_stderr && to_syslog && log_stderr_journal())
        to_stderr = 0;
    log_ident = ident;
    log_stderr = to_stderr;
    if (!to_syslog) {
        if (log_syslog && log_syslog_up)
            closelog();
        log_syslog = 0;
        log_syslog_up = 0;
        return;
    }
    if (log_syslog) {
        /*
         * Already on: only the ident changes. Connected, the socket stays
         * (no close and reconnect); not, the next timed check looks again.
         */
        if (log_syslog_up)
            openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
        return;
    }
    log_syslog = 1;
    log_syslog_up = 0;
    log_syslog_check(time(NULL));
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
    printable(buf, '?');
    if (log_syslog) {
        time_t now = time(NULL);

        if (now - log_syslog_checked >= LOG_RECHECK_SECS || now < log_syslog_checked)
            log_syslog_check(now);
        if (log_syslog_up)
            syslog(prio, "%s%s", level, buf);
    }
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
