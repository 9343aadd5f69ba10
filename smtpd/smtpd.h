/*
 * smtpd.h - what the parts of rcptgate-smtpd share
 *
 * rcptgate-smtpd is one event-driven process (libevent) that talks SMTP to
 * the Internet, checks every command with the shared rule engine (lib/
 * check.c) and its own restrictions (smtpd_check.c), and relays accepted
 * transactions as a before-queue proxy (smtp_relay.c). Its rooms:
 *
 *   smtpd.c         main: config, listeners, signals, reload, privilege drop
 *   smtp_session.c  one SMTP session: I/O, limits, timeouts, DATA, relaying
 *   smtp_command.c  the SMTP commands of a session (EHLO ... AUTH, STARTTLS)
 *   smtp_proto.c    parsing command lines, paths and ESMTP parameters
 *   smtpd_check.c   the restrictions (relay, HELO, sender, recipient, access)
 *   smtpd_dns.c     asynchronous DNS: client name, DNSBL, RHSBL, sender domain
 *   smtpd_anvil.c   per-client-IP counters: connections, harvest, AUTH failures
 *   smtp_relay.c    the downstream SMTP client (next hops, XFORWARD, STARTTLS)
 *   smtp_tls.c      OpenSSL contexts for both sides
 *   smtp_auth.c     SASL AUTH through Cyrus SASL
 *   smtpd_log.c     log lines in Postfix's format (pflogsumm, fail2ban)
 *   smtpd_qmgr.c    the queue manager: delivers what the spool holds
 *
 * Everything runs in the one event loop: no call here may block for long,
 * and a callback is never invoked from inside the call that registered it.
 */
#ifndef RG_SMTPD_H
#define RG_SMTPD_H

#include <sys/socket.h>

#include <event2/event.h>

#include "store.h"

/* Answers of the asynchronous DNS checks. */
enum smtpd_dns_status {
    SMTPD_DNS_UNASKED = 0,      /* not looked up (check off, trusted client, ...) */
    SMTPD_DNS_PENDING,          /* asked, no answer yet */
    SMTPD_DNS_YES,              /* listed (DNSBL/RHSBL) / exists (sender domain) */
    SMTPD_DNS_NO,               /* not listed / does not exist (NXDOMAIN, no MX, A or AAAA) */
    SMTPD_DNS_TEMP,             /* no answer in time, SERVFAIL: never a reason to reject */
};

struct smtpd_dns_query;         /* smtpd_dns.c's own */

typedef struct smtpd_dns_state {
    int dnsbl;                  /* client address in a DNSBL zone */
    char *dnsbl_zone;           /* the zone that listed it (xstrdup'd), NULL */
    char *dnsbl_text;           /* its configured reply text, NULL */
    int rhsbl;                  /* sender domain in an RHSBL zone */
    char *rhsbl_zone;
    char *rhsbl_text;
    int sender_domain;          /* sender domain has MX or A/AAAA records */
    /* smtpd_dns.c's bookkeeping */
    struct smtpd_dns_query *queries;
    int pending;
    void (*waiter)(void *);
    void *waiter_arg;
} SMTPD_DNS_STATE;

#define SMTPD_ADDR_LEN  64      /* a textual IPv4 or IPv6 address */
#define SMTPD_NAME_LEN  256     /* a host name */

/*
 * What a session knows about its client, as the checks, the relay and the
 * logs read it. The session (smtp_session.c) owns it and its strings.
 */
typedef struct smtpd_client {
    struct sockaddr_storage sa;
    socklen_t salen;
    char addr[SMTPD_ADDR_LEN];  /* "192.0.2.1", "2001:db8::1" (no brackets) */
    int port;
    char name[SMTPD_NAME_LEN];  /* forward-confirmed reverse name, or "unknown" */
    char *helo;                 /* HELO/EHLO argument as given; NULL before */
    int esmtp;                  /* EHLO (proto=ESMTP) rather than HELO (proto=SMTP) */
    int tls;                    /* STARTTLS completed */
    char *sasl_user;            /* AUTH succeeded as this login; NULL */
    char *sasl_method;          /* its mechanism */
    int submission;             /* arrived on a submission listener */
    int trusted;                /* client address in mynetworks */
    char *sender;               /* MAIL FROM address, "" null sender; NULL outside a transaction */
    int rcpt_count;             /* recipients accepted in this transaction */
    char *queue_id;             /* this transaction's id for the logs (like Postfix's) */
    SMTPD_DNS_STATE dns;
} SMTPD_CLIENT;

/*
 * A decision that refuses something. code 0: no objection. text is the
 * whole reply line without CRLF: "550 5.1.1 <a@b>: Recipient address
 * rejected: User unknown".
 */
#define SMTPD_REPLY_LEN 512

typedef struct smtpd_reply {
    int code;                   /* 0 accept; 4xx / 5xx refuse */
    char text[SMTPD_REPLY_LEN];
    int harvest;                /* an unknown user: counts toward harvest protection */
    int disconnect;             /* close the session after this reply (421) */
} SMTPD_REPLY;

/*
 * smtpd_reply_set - fill r: code and a printf-style text that must begin
 * with the code ("550 5.1.1 <%s>: ..."). Returns code.
 */
int smtpd_reply_set(SMTPD_REPLY *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The process-wide things every session uses (smtpd.c sets them). */
extern struct event_base *smtpd_base;
/*
 * smtpd_store is the read-only handle the checks use: NULL while the store
 * is closed, unreadable or stale past [store] max_age (every check then
 * defers, 451 4.3.0). smtpd.c's keeper (lib/keeper.c) keeps it so; the
 * unit tests and fuzzers, which have no keeper, set it themselves.
 */
extern STORE *smtpd_store;
extern struct keeper *smtpd_keeper;

/*
 * smtpd_store_use - before a check: let the keeper notice a failure of
 * the last check, retry an open that is due, and then say whether the
 * store may answer. smtpd_store, or NULL with *reason set.
 */
STORE *smtpd_store_use(const char **reason);
extern char smtpd_hostname[SMTPD_NAME_LEN];

#endif
