/*
 * log.h - diagnostics for every rcptgate program
 *
 * Three levels, as in Postfix: log_panic() is a bug (abort), log_fatal() is
 * a startup or configuration failure (exit), log_warn()/log_err() are
 * something one request or one peer caused: log and return an error.
 * Messages go to syslog (facility mail) and, in the foreground or when
 * syslog is not wanted, to stderr too. Secrets are never passed here.
 */
#ifndef RG_LOG_H
#define RG_LOG_H

#include <stdarg.h>

#define RG_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Exit codes shared by all programs (sysexits.h values). */
#define RG_EX_OK        0
#define RG_EX_USAGE     64
#define RG_EX_SOFTWARE  70
#define RG_EX_CANTCREAT 73      /* a directory or file to write is missing or not writable */
#define RG_EX_TEMPFAIL  75
#define RG_EX_CONFIG    78

/*
 * log_init - name the program; to_stderr also copies every line to stderr,
 * unless stderr is systemd's journal and syslog is on (it reaches the
 * journal too: the line would be there twice).
 */
void log_init(const char *ident, int to_stderr, int to_syslog);

/*
 * log_set_hook - also hand every line to fn (NULL: none): its syslog
 * priority and the text as syslog gets it ("warning: ..."). rcptgate-smtpd
 * uses it to copy its lines to a log file. log_init() keeps the hook.
 */
void log_set_hook(void (*fn)(int prio, const char *line));

/* log_set_debug - enable or disable debug messages */
void log_set_debug(int on);
int log_debug_enabled(void);

void log_debug(const char *fmt, ...) RG_PRINTF(1, 2);
void log_info(const char *fmt, ...) RG_PRINTF(1, 2);
void log_warn(const char *fmt, ...) RG_PRINTF(1, 2);
void log_err(const char *fmt, ...) RG_PRINTF(1, 2);

/* log_fatal - log and exit with RG_EX_SOFTWARE (or log_fatal_code's code) */
_Noreturn void log_fatal(const char *fmt, ...) RG_PRINTF(1, 2);
_Noreturn void log_fatal_code(int code, const char *fmt, ...) RG_PRINTF(2, 3);

/* log_panic - a bug: log and abort() */
_Noreturn void log_panic(const char *fmt, ...) RG_PRINTF(1, 2);

#endif
