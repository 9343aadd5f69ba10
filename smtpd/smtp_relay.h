/*
 * smtp_relay.h - the downstream SMTP client of the before-queue proxy
 *
 * One SMTP_RELAY is one transaction handed to the next hop of the
 * recipients' domain while the client is still connected: connect (the
 * next hops in order, failing over), EHLO, STARTTLS when offered (or
 * required by relay_tls), XFORWARD of the original client when offered,
 * MAIL, then each RCPT as the client gives it, DATA, the message bytes,
 * and the final dot. The client hears the downstream's own replies, so it
 * hears 250 only once the downstream took the message.
 *
 * Next hops are in Postfix transport syntax, comma-separated for
 * failover: "smtp:[10.0.0.5]:25,[mx2.internal]:2525". The brackets
 * mean "this host, no MX lookup" (the only form an internal relay needs);
 * a name is resolved without blocking. With env->mx a bare domain is
 * looked up by MX (the queue's mail to outside domains). A next hop that refuses the
 * connection, or answers the banner, EHLO or MAIL with 4xx, is skipped
 * for the next; a 5xx to MAIL is passed back as it is.
 *
 * Callbacks come from the event loop, never from inside the call that
 * asked, one per request, in order. After a downstream failure every
 * pending and later request is answered "451 4.4.2 ..." (or 4.4.1 when
 * no next hop could be reached). smtp_relay_free() at any point before
 * the final reply closes the downstream without a final dot, so nothing
 * partial is ever delivered.
 */
#ifndef RG_SMTP_RELAY_H
#define RG_SMTP_RELAY_H

#include <stddef.h>

#include "smtpd.h"

typedef struct smtp_relay SMTP_RELAY;

/*
 * A reply from downstream: code (250, 354, 451, 550 ...) and the whole
 * reply as one line to repeat to the client, "250 2.1.5 Ok"
 * (a multi-line reply is given by its last line).
 */
typedef void (*SMTP_RELAY_CB)(void *arg, int code, const char *reply);

typedef struct smtp_relay_env {
    const char *nexthops;       /* transport syntax list, see above */
    const SMTPD_CLIENT *client; /* XFORWARD NAME/ADDR/PORT/HELO/PROTO (copied) */
    const char *sender;         /* MAIL FROM address, "" null sender */
    const char *mail_params;    /* ESMTP parameters to pass on ("SIZE=123 BODY=8BITMIME"), "" */
    /*
     * mx = 1: a bare domain in nexthops ("example.org", "example.org:2525")
     * is resolved by MX with dns_servers (smtpd_dns_mx(): preference
     * order, then each exchanger's A/AAAA; no MX: the domain's own
     * addresses; a null MX is "556 5.1.10", NXDOMAIN "550 5.4.4", a DNS
     * failure "451 4.4.3": the MAIL reply, and the later ones, say so).
     * "[host]" and addresses are used as they are. 0: a bare name is one
     * host, as always. Callers must zero the whole struct ({0}) so that
     * fields added later start off.
     */
    int mx;
    /*
     * setup_ms > 0: a client is waiting (the live proxy), so the whole way
     * to MAIL's reply, over every hop, ends after this long with "451
     * 4.4.1" (Postfix's smtpd_proxy_timeout): each hop's own relay_timeout
     * would keep a sender's RCPT waiting past its own 5 minutes. 0: none.
     */
    int setup_ms;
} SMTP_RELAY_ENV;

/*
 * smtp_relay_open - start the downstream session up to MAIL FROM;
 * cb gets the reply to MAIL (or the failure). Uses smtpd_base and the
 * relay_* parameters.
 */
SMTP_RELAY *smtp_relay_open(const SMTP_RELAY_ENV *env, SMTP_RELAY_CB cb, void *arg);

/* smtp_relay_rcpt - RCPT TO:<rcpt> params; cb gets its reply */
void smtp_relay_rcpt(SMTP_RELAY *r, const char *rcpt, const char *params, SMTP_RELAY_CB cb, void *arg);

/* smtp_relay_data - DATA; cb gets the reply (354 to go on) */
void smtp_relay_data(SMTP_RELAY *r, SMTP_RELAY_CB cb, void *arg);

/*
 * smtp_relay_write - message bytes exactly as they go on the wire: CRLF
 * lines, dot-stuffed, without the final ".\r\n". 0, or -1 once the
 * downstream failed (the final reply will say so).
 */
int smtp_relay_write(SMTP_RELAY *r, const void *buf, size_t len);

/* smtp_relay_backlog - bytes written but not yet sent (pause the client above a limit) */
size_t smtp_relay_backlog(SMTP_RELAY *r);

/* smtp_relay_on_drain - call cb(arg) once the backlog is sent (one-shot) */
void smtp_relay_on_drain(SMTP_RELAY *r, void (*cb)(void *), void *arg);

/* smtp_relay_dot - end the message; cb gets the final reply ("250 2.0.0 Ok: queued as X") */
void smtp_relay_dot(SMTP_RELAY *r, SMTP_RELAY_CB cb, void *arg);

/*
 * smtp_relay_peer - "name[addr]:port" of the next hop that answered, for
 * the relay= of log lines; "none" before one did.
 */
const char *smtp_relay_peer(const SMTP_RELAY *r);

/*
 * smtp_relay_dsn - 1 when the next hop that answered offers DSN, so the
 * RCPTs' NOTIFY and ORCPT went on to it and it reports from now on
 */
int smtp_relay_dsn(const SMTP_RELAY *r);

/*
 * smtp_relay_failed - 1 when the relay has given up (lost its next hop):
 * every request from now on, the dot included, is answered with why.
 */
int smtp_relay_failed(const SMTP_RELAY *r);

/*
 * smtp_relay_reuse - another transaction on r's connection once its last
 * one ended (its final reply, or every RCPT refused): RSET, XFORWARD of
 * env's client, MAIL with env's sender; cb gets the reply to MAIL, and
 * smtp_relay_rcpt() ... follow as after smtp_relay_open(). A lost
 * connection is "451 4.4.2 Lost connection ..." (no failover: open a new
 * one). 0, or -1 when r cannot carry another (closed, failed, busy).
 */
int smtp_relay_reuse(SMTP_RELAY *r, const SMTP_RELAY_ENV *env, SMTP_RELAY_CB cb, void *arg);

/* smtp_relay_quit_cut - at exit: close the connections of freed relays still waiting for their 221 */
void smtp_relay_quit_cut(void);

/* smtp_relay_close - smtp_relay_free() without a QUIT: close at once (at shutdown) */
void smtp_relay_close(SMTP_RELAY *r);

/*
 * smtp_relay_tried - "host[addr]:port" of the last next hop tried, even
 * one that never answered (for "connect to ...: Connection refused")
 */
const char *smtp_relay_tried(const SMTP_RELAY *r);

/*
 * smtp_relay_free - end it: QUIT after a final reply, otherwise close at
 * once without a final dot. No callback is made after this. NULL is fine.
 */
void smtp_relay_free(SMTP_RELAY *r);

#endif
