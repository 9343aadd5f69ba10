/*
 * smtpd_log.c - log lines of rcptgate-smtpd in Postfix's smtpd format
 *
 * SYNOPSIS
 *   smtpd_log_open(syslog_name, log_file, to_stderr, err, errlen);
 *   smtpd_log_reject(c, "RCPT", &reply, rcpt, 0);
 *   smtpd_log_printf("connect from %s[%s]", c->name, c->addr);
 *
 * DESCRIPTION
 *   Lines go through lib/log.c under the ident "<syslog_name>/smtpd", so
 *   syslog writes them as Postfix's smtpd would and pflogsumm and
 *   fail2ban's postfix filters match them unchanged. When log_file is set
 *   every line is also appended there with syslog's own prefix
 *   ("Nov 22 20:27:15 host ident[pid]: "), one write() per line, so the
 *   file reads like /var/log/mail.log without a syslog daemon (tests,
 *   containers). Control characters from the client never reach a log:
 *   lib/log.c turns them into '?' for every destination.
 *
 * DIAGNOSTICS
 *   A log file that cannot be opened is an error at start (err set) and a
 *   warning on reopen (the old descriptor is kept).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "smtpd_log.h"
#include "params_smtpd.h"

static char smtpd_log_name[128] = "rcptgate/smtpd";
static char smtpd_log_other[128];       /* "<syslog_name>/qmgr" and the like, while in use */
static const char *smtpd_log_cur = smtpd_log_name;
static char smtpd_log_syslog[96] = "rcptgate";
static char smtpd_log_host[64] = "localhost";
static int smtpd_log_fd = -1;
static int smtpd_log_to_stderr;

/* The log file's time stamp changes once a second: formatted then, not for every line. */
static time_t smtpd_log_stamp_time = -1;
static char smtpd_log_stamp[32];

/* smtpd_log_hook - lib/log.c's second destination: the log file */
static void smtpd_log_hook(int prio, const char *line)
{
    char buf[2400];
    time_t now;
    int n;

    (void) prio;
    if (smtpd_log_fd < 0)
        return;
    if ((now = time(NULL)) != smtpd_log_stamp_time) {
        struct tm tm;

        localtime_r(&now, &tm);
        strftime(smtpd_log_stamp, sizeof(smtpd_log_stamp), "%b %e %H:%M:%S", &tm);
        smtpd_log_stamp_time = now;
    }
    n = snprintf(buf, sizeof(buf), "%s %s %s[%ld]: %s", smtpd_log_stamp, smtpd_log_host, smtpd_log_cur,
                 (long) getpid(), line);
    if (n < 0)
        return;
    if ((size_t) n >= sizeof(buf) - 1)
        n = (int) sizeof(buf) - 2;
    buf[n++] = '\n';
    /* One write() with O_APPEND: lines of concurrent writers never interleave. */
    if (write(smtpd_log_fd, buf, (size_t) n) < 0) {
        /* Nothing sensible to do: syslog still has the line. */
    }
}

static int smtpd_log_created;           /* the open log file is one we created */

/*
 * smtpd_log_file_open - open path for appending; fd or -1 with err set.
 * Root opens it at start, in a directory others may write: no link is
 * followed. Whether we created it is noted for smtpd_log_give().
 */
static int smtpd_log_file_open(const char *path, char *err, size_t errlen)
{
    /* O_NONBLOCK: a FIFO planted there must not hold the start forever. */
    int flags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK;
    int fd = open(path, flags);
    struct stat sb;

    smtpd_log_created = 0;
    if (fd < 0 && errno == ENOENT) {
        fd = open(path, flags | O_CREAT | O_EXCL, 0640);
        smtpd_log_created = fd >= 0;
    }
    if (fd < 0) {
        snprintf(err, errlen, "log_file %s: %s", path, strerror(errno));
        return -1;
    }
    /* What was opened, not what a check saw earlier: a plain file with one name (no hard link). */
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1) {
        snprintf(err, errlen, "log_file %s: not a plain file with one link: remove it", path);
        close(fd);
        return -1;
    }
    return fd;
}

/* smtpd_log_give - a log file we created goes to uid:gid (see smtpd_log.h) */
int smtpd_log_give(long uid, long gid, char *err, size_t errlen)
{
    if (smtpd_log_fd < 0 || !smtpd_log_created)
        return 0;
    if (fchown(smtpd_log_fd, (uid_t) uid, (gid_t) gid) < 0) {
        snprintf(err, errlen, "log_file: chown to %ld:%ld: %s", uid, gid, strerror(errno));
        return -1;
    }
    return 0;
}

/* smtpd_log_open - start logging as "<syslog_name>/smtpd" */
int smtpd_log_open(const char *syslog_name, const char *log_file, int to_stderr, char *err, size_t errlen)
{
    char host[256];

    snprintf(smtpd_log_name, sizeof(smtpd_log_name), "%s/smtpd", syslog_name);
    snprintf(smtpd_log_syslog, sizeof(smtpd_log_syslog), "%s", syslog_name);
    smtpd_log_to_stderr = to_stderr;
    if (gethostname(host, sizeof(host)) == 0) {
        host[sizeof(host) - 1] = 0;
        host[strcspn(host, ".")] = 0;
        host[sizeof(smtpd_log_host) - 1] = 0;
        if (host[0])
            memcpy(smtpd_log_host, host, strlen(host) + 1);
    }
    log_init(smtpd_log_name, to_stderr, 1);
    smtpd_log_stamp_time = -1;          /* the time zone may have changed (reload) */
    if (smtpd_log_fd >= 0) {
        close(smtpd_log_fd);
        smtpd_log_fd = -1;
    }
    if (log_file != NULL && *log_file) {
        if ((smtpd_log_fd = smtpd_log_file_open(log_file, err, errlen)) < 0)
            return -1;
    }
    log_set_hook(smtpd_log_hook);
    return 0;
}

/* smtpd_log_ident - the ident lines are logged under */
const char *smtpd_log_ident(void)
{
    return smtpd_log_name;
}

/* smtpd_log_stderr - copy lines to stderr or not (off once detached) */
void smtpd_log_stderr(int on)
{
    smtpd_log_to_stderr = on;
    log_init(smtpd_log_name, on, 1);
}

/*
 * smtpd_log_as - one line under another Postfix program's name. The
 * delivery lines are qmgr's and smtp's in Postfix, and pflogsumm counts
 * messages only from those names.
 */
void smtpd_log_as(const char *prog, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    snprintf(smtpd_log_other, sizeof(smtpd_log_other), "%s/%s", smtpd_log_syslog, prog);
    smtpd_log_cur = smtpd_log_other;
    log_init(smtpd_log_other, smtpd_log_to_stderr, 1);
    log_info("%s", buf);
    smtpd_log_cur = smtpd_log_name;
    log_init(smtpd_log_name, smtpd_log_to_stderr, 1);
}

/* smtpd_log_reopen - reopen log_file as configured now (SIGHUP, logrotate) */
void smtpd_log_reopen(void)
{
    char err[512];
    int fd = -1;

    if (var_smtpd_log_file != NULL && *var_smtpd_log_file) {
        if ((fd = smtpd_log_file_open(var_smtpd_log_file, err, sizeof(err))) < 0) {
            log_warn("%s; still writing to the previous file", err);
            return;
        }
    }
    if (smtpd_log_fd >= 0)
        close(smtpd_log_fd);
    smtpd_log_fd = fd;
}

/* smtpd_log_close - stop writing the log file */
void smtpd_log_close(void)
{
    log_set_hook(NULL);
    if (smtpd_log_fd >= 0)
        close(smtpd_log_fd);
    smtpd_log_fd = -1;
}

/* smtpd_log_printf - one info line */
void smtpd_log_printf(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_info("%s", buf);
}

/* smtpd_log_reject - "NOQUEUE: reject: RCPT from name[addr]: reply; from=<> to=<> proto=ESMTP helo=<>" */
void smtpd_log_reject(const SMTPD_CLIENT *c, const char *stage, const SMTPD_REPLY *r,
                      const char *rcpt, int warn)
{
    char buf[2048];
    size_t n;

    n = (size_t) snprintf(buf, sizeof(buf), "%s: %s: %s from %s[%s]: %s;",
                          c->queue_id ? c->queue_id : "NOQUEUE",
                          warn ? "reject_warning" : "reject", stage, c->name, c->addr, r->text);
    if (n < sizeof(buf) && c->sender != NULL)
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, " from=<%s>", c->sender);
    if (n < sizeof(buf) && rcpt != NULL)
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, " to=<%s>", rcpt);
    if (n < sizeof(buf))
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, " proto=%s", c->esmtp ? "ESMTP" : "SMTP");
    if (n < sizeof(buf) && c->helo != NULL)
        snprintf(buf + n, sizeof(buf) - n, " helo=<%s>", c->helo);
    log_info("%s", buf);
}
