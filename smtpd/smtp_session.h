/*
 * smtp_session.h - one SMTP session of rcptgate-smtpd
 *
 * smtpd.c accepts connections and hands each socket to
 * smtp_session_create(); from then on the session lives in the event
 * loop on its own and frees itself when the client leaves or is sent
 * away. The module keeps the list of live sessions for shutdown and
 * counting.
 */
#ifndef RG_SMTP_SESSION_H
#define RG_SMTP_SESSION_H

#include <sys/socket.h>

#include <event2/util.h>

#include "smtpd_dns.h"

typedef struct smtp_session SMTP_SESSION;

/* Counters for the stats file (since start). */
typedef struct smtp_session_stats {
    long long connections_total;
    long long connections_refused;      /* max_connections, per-client limits, anvil blocks */
    long long messages;                 /* final 2xx from downstream */
    long long rcpt_ok;
    long long rcpt_rejected;
    long long timeouts;
    long long protocol_errors;          /* pregreet, pipelining, bare CR/LF, forbidden commands */
} SMTP_SESSION_STATS;

extern SMTP_SESSION_STATS smtp_session_stats;

/*
 * smtp_session_init - the resolver sessions use, and the per-session
 * settings derived from [smtpd] (timeouts); call again after a reload.
 */
void smtp_session_init(SMTPD_DNS *dns);

/*
 * smtp_session_create - take over fd, accepted on a listener (submission
 * if that listener is one). The total and per-client limits are checked
 * here: a refused client hears 421 and fd is closed. NULL then.
 */
SMTP_SESSION *smtp_session_create(evutil_socket_t fd, const struct sockaddr *sa, socklen_t salen,
                                  int submission);

/* smtp_session_count - live sessions */
int smtp_session_count(void);

/*
 * smtp_session_shutdown - SIGTERM. now = 0: sessions outside a
 * transaction get 421 and close at once, the others at the end of their
 * transaction. now = 1 (shutdown_timeout passed): every session gets 421
 * and is closed; a transaction still open is dropped downstream without
 * a final dot.
 */
void smtp_session_shutdown(int now);

#endif
