/*
 * smtpd_log.h - log lines in Postfix's smtpd format
 *
 * pflogsumm and fail2ban's postfix filters read Postfix's smtpd lines; we
 * write the same lines so they work unchanged. Through log_info() (lib/
 * log.c) they go to syslog under "<syslog_name>/smtpd" and, when
 * [smtpd] log_file is set, to that file with a syslog-style prefix:
 *
 *   Nov 22 20:27:15 mx1 postfix-rcptgate/smtpd[1234]: connect from host[192.0.2.1]
 *   ... NOQUEUE: reject: RCPT from host[192.0.2.1]: 550 5.1.1 <x@example.com>:
 *       Recipient address rejected: User unknown; from=<s@example.net>
 *       to=<x@example.com> proto=ESMTP helo=<host>          (one line)
 *   ... 4F2A1B3C: client=host[192.0.2.1]
 *   ... 4F2A1B3C: from=<s@example.net>, size=1234, nrcpt=1 (queue active)
 *   ... 4F2A1B3C: to=<u@example.com>, relay=mail.internal[10.0.0.5]:25,
 *       delay=0.2, delays=0/0/0.1/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as ABC)
 *   ... disconnect from host[192.0.2.1] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4
 */
#ifndef RG_SMTPD_LOG_H
#define RG_SMTPD_LOG_H

#include "smtpd.h"

/* smtpd_log_open - start logging as "<syslog_name>/smtpd", also to log_file ("" none) */
int smtpd_log_open(const char *syslog_name, const char *log_file, int to_stderr, char *err, size_t errlen);

/*
 * smtpd_log_give - when smtpd_log_open() created log_file (as root, before
 * the drop), give it to uid:gid, the user smtpd runs as, who reopens it
 * after a SIGHUP; a file that existed keeps its owner. 0 or -1.
 */
int smtpd_log_give(long uid, long gid, char *err, size_t errlen);

/* smtpd_log_reopen - reopen log_file (SIGHUP, logrotate) */
void smtpd_log_reopen(void);

/*
 * smtpd_log_reject - "NOQUEUE: reject: STAGE from name[addr]: <reply>;
 * from=<sender> to=<rcpt> proto=ESMTP helo=<helo>". stage is "CONNECT",
 * "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "AUTH".
 * warn: "reject_warning" (the check is warn-only; the command goes on).
 * rcpt may be NULL (no to=); the sender is c->sender when set. Uses
 * c->queue_id instead of NOQUEUE when one is set.
 */
void smtpd_log_reject(const SMTPD_CLIENT *c, const char *stage, const SMTPD_REPLY *r,
                      const char *rcpt, int warn);

/*
 * Added by the session's author (smtp_session.c, smtpd.c):
 * smtpd_log_ident - "<syslog_name>/smtpd" as given to smtpd_log_open()
 * (for daemon_become(), which re-runs log_init() after detaching).
 */
const char *smtpd_log_ident(void);

/*
 * smtpd_log_printf - one info line; control characters in it (client-
 * supplied text) become '?' in lib/log.c, so a line stays one line.
 */
void smtpd_log_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * smtpd_log_as - one info line as "<syslog_name>/<prog>": the delivery
 * lines are logged as Postfix's qmgr ("QID: from=<>, size=, nrcpt=",
 * "QID: removed") and smtp ("QID: to=<>, relay=, ..., status=sent"),
 * where pflogsumm looks for them.
 */
void smtpd_log_as(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* smtpd_log_stderr - copy lines to stderr or not (off after detaching) */
void smtpd_log_stderr(int on);

/* smtpd_log_close - stop copying to log_file (at exit) */
void smtpd_log_close(void);

#endif
