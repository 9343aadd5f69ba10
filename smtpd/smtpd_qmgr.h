/*
 * smtpd_qmgr.h - the queue manager: delivers what the spool holds
 *
 * It runs in rcptgate-smtpd's event loop (smtp_relay.c is already an
 * event-driven SMTP client with failover and STARTTLS). It scans
 * deferred/ every queue_run_delay, when `rcptgate queue flush` writes to
 * the trigger FIFO, and when a session has just queued a message; it
 * keeps at most queue_active_limit messages in memory and
 * destination_concurrency_limit deliveries per next hop. A try that is
 * deferred moves the message's next try out (minimal_backoff_time,
 * doubling up to maximal_backoff_time); a 5xx, or a message older than
 * maximal_queue_lifetime, is returned to its sender (dsn.c). Log lines
 * are Postfix's (smtp/qmgr/bounce), so pflogsumm counts them.
 */
#ifndef RG_SMTPD_QMGR_H
#define RG_SMTPD_QMGR_H

#include "spool.h"

/* The open spool, NULL if relay_mode is proxy everywhere or it could not be opened. */
extern SPOOL *smtpd_spool;

/*
 * smtpd_qmgr_init - open queue_directory (create, clear incoming/), watch
 * the trigger, schedule the first scan (every queued message is
 * recovered). 0, or -1 with err set (smtpd then relays as a proxy only).
 */
int smtpd_qmgr_init(char *err, size_t errlen);

/* smtpd_qmgr_reload - the [smtpd] queue parameters changed (SIGHUP) */
void smtpd_qmgr_reload(void);

/*
 * smtpd_qmgr_stop - SIGTERM (all 0): no new deliveries; those whose final
 * dot went out may finish (their next hop may hold the message already:
 * cut, it would go again after the restart), the others are cut (the
 * spool keeps them). At the end (all 1): whatever is left is cut.
 */
void smtpd_qmgr_stop(int all);

/* smtpd_qmgr_running - transactions still talking to a next hop (after smtpd_qmgr_stop(0): those let finish) */
int smtpd_qmgr_running(void);

/*
 * smtpd_qmgr_session_hold - a session committed id before its next hop's
 * final reply (proxy-then-queue) and still holds it: no delivery of it,
 * whatever its file's time, until smtpd_qmgr_session_release(id).
 */
void smtpd_qmgr_session_hold(const char *id);

/* smtpd_qmgr_session_release - the session is done with id (no-op if it held none) */
void smtpd_qmgr_session_release(const char *id);

/* smtpd_qmgr_queued - a session has just committed id (due at next_try): try it when due */
void smtpd_qmgr_queued(const char *id, long long next_try);

/*
 * smtpd_qmgr_accepting - may a session queue one more message? 0 yes;
 * otherwise a reply for the client is in why ("452 4.3.1 Insufficient
 * system storage"): queue_max_messages reached, or the spool is broken.
 */
int smtpd_qmgr_accepting(char *why, size_t whylen);

/* smtpd_qmgr_counts - messages in deferred/ and hold/ and the oldest arrival (unix time, 0 none), for stats */
void smtpd_qmgr_counts(long long *deferred, long long *hold, long long *oldest);

#endif
