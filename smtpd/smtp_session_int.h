/*
 * smtp_session_int.h - what smtp_session.c and smtp_command.c share
 *
 * A session's state and the helpers both halves use: smtp_session.c owns
 * the connection (I/O, phases, replies, timers, the DATA byte stream),
 * smtp_command.c the commands. Private to those two files.
 */
#ifndef RG_SMTP_SESSION_INT_H
#define RG_SMTP_SESSION_INT_H

#include <limits.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event_struct.h>

#include "smtpd.h"
#include "smtpd_dns.h"
#include "smtp_auth.h"
#include "smtp_proto.h"
#include "smtp_relay.h"
#include "smtp_session.h"
#include "spool.h"

#define SMTP_AUTH_LINE_MAX  12288           /* RFC 4954 section 4 */
#define SMTP_RELAY_HIGH     (1024 * 1024)   /* pause the client above this downstream backlog */
#define SMTP_CLOSE_WAIT_MS  10000           /* time to flush a last reply */
#define SMTP_OVERSHOOT_MAX  1000            /* such 452s per session before they count (Postfix's default) */
/* Recipients' room in a queue file's envelope (SPOOL_ENV_MAX less the head: sender, client, ...). */
#define SMTP_ENV_RCPT_ROOM  (SPOOL_ENV_MAX - 16384)


enum smtp_phase { PH_GREET, PH_CMD, PH_AUTH, PH_DATA, PH_TLS, PH_CLOSING };
enum smtp_wait { W_NONE, W_DNS, W_RELAY, W_DELAY, W_GREET, W_TLS, W_DRAIN };

/*
 * A transaction's relay mode (relay_mode, or its domain's own): decided at
 * the first accepted recipient; every recipient of a transaction has the
 * same. SMTP_MODE_NONE before that.
 */
enum smtp_mode { SMTP_MODE_NONE, SMTP_MODE_PROXY, SMTP_MODE_QUEUE, SMTP_MODE_PTQ };

/* One accepted recipient of the transaction (for the logs). */
/*
 * SMTP_COUNT_UP - one more of a per-command counter. They are 16 bits to
 * keep idle sessions small; they stop at 65535 rather than wrap, so the
 * disconnect line never under-reports a flood of commands.
 */
#define SMTP_COUNT_UP(n) do { if ((n) < USHRT_MAX) (n)++; } while (0)

typedef struct smtp_rcpt {
    struct smtp_rcpt *next;
    char *orcpt;                        /* ORCPT= as given, NULL */
    int notify;                         /* NOTIFY= bits (SPOOL_NOTIFY_*), 0 not given */
    unsigned char queued_only;          /* the next hop did not take it (4xx or down): the spool only */
    char *why;                          /* then the next hop's reply, for the log; NULL */
    char addr[];
} SMTP_RCPT;

struct smtp_session {
    SMTPD_CLIENT c;
    struct bufferevent *bev;
    struct event timer;                 /* greet pause, delayed replies, deferred free */
    SMTP_SESSION *prev, *next;
    SMTP_RELAY *relay;                  /* the downstream transaction */
    SMTP_AUTH *auth;                    /* an AUTH exchange in progress */
    char *auth_mech;
    char *nexthop;                      /* the transaction's next hop */
    char *mail_params;                  /* ESMTP parameters passed on */
    char *cur_rcpt;                     /* the RCPT being decided (as given) */
    char *cur_rcpt_params;              /* its DSN parameters for the next hop ("NOTIFY=... ORCPT=...") */
    char *cur_orcpt;                    /* its ORCPT=, NULL */
    char *cur_why;                      /* the next hop's 4xx that makes it spool-only, NULL */
    int cur_notify;                     /* its NOTIFY= bits */
    char *envid;                        /* MAIL ENVID=, NULL */
    int ret;                            /* MAIL RET= (SPOOL_RET_*) */
    long long mail_size;                /* MAIL SIZE=, -1 not given */
    SPOOL_FILE *spool_f;                /* the message being spooled (queue, proxy-then-queue) */
    char *defer_reason;                 /* proxy-then-queue: why the next hop was given up (for the log) */
    char *delayed;                      /* a reply waiting for the timer */
    char *connect_reject;               /* smtpd_check_connect's reply for every command */
    SMTP_RCPT *rcpts;
    long long start_ms;
    long long data_start_ms;
    long long data_bytes;               /* message bytes seen (also when discarding) */
    long long our_bytes;                /* and the Received: field we put before them */
    long long mail_ms;                  /* MAIL time, for delay= */
    long long close_ms;                 /* when the last reply was queued */
    unsigned short counts[SMTP_CMD_COUNT][2];   /* [ok, total] per command, saturating */
    unsigned char phase, wait, cur_cmd;
    unsigned char closing_now;          /* free once the output is flushed */
    unsigned char skipping;             /* discarding the rest of an over-long line */
    unsigned char smtputf8;             /* MAIL gave SMTPUTF8 */
    SMTP_DATA_SCAN scan;                /* DATA: where the end of the message is */
    unsigned char d_over, d_failed;     /* DATA: too big / downstream failed: discard */
    unsigned char d_rejected;           /* DATA: a message_reject_characters byte: discard, 550 */
    unsigned char d_hops;               /* DATA: hopcount_limit reached (a mail loop): discard, 554 */
    SMTP_HOPS hops;                     /* DATA: the Received: fields counted so far */
    unsigned char mode;                 /* enum smtp_mode of the transaction */
    unsigned char relay_down;           /* proxy-then-queue: the next hop failed; the rest goes to the spool only */
    unsigned char spool_failed;         /* DATA: a spool write failed: never 250 on the spool's word */
    unsigned char spool_committed;      /* committed before the dot (some recipients are the spool's only) */
    long long spool_next;               /* ... and its next try (unix time) */
    unsigned char pregreet, connect_logged, anvil_counted;
    int errors;
    int overshoot;                      /* 452 4.5.3 "send it again" replies, not counted as errors */
    size_t env_bytes;                   /* the accepted recipients' most room in a queue file's envelope */
    int junk;
};

extern SMTPD_DNS *smtp_session_dns;
extern int smtp_session_stopping;               /* SIGTERM seen */
extern const struct timeval *smtp_session_cmd_tv;   /* command_timeout, a common timeout */
extern int smtp_session_normalize;              /* bare_newline = normalize (set at init/reload) */

/* smtp_session_now - the loop's cached clock in milliseconds */
long long smtp_session_now(void);

/* smtp_session_send - one reply line on the wire as it is (no counting, no delay) */
void smtp_session_send(SMTP_SESSION *s, const char *text);

/* smtp_session_count_reply - per-command success and the error counter */
void smtp_session_count_reply(SMTP_SESSION *s, const char *text);

/* smtp_session_reply - one reply; 4xx/5xx past soft_error_limit are delayed */
void smtp_session_reply(SMTP_SESSION *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* smtp_session_reply_delay - send text after ms (0: now); reading stops meanwhile */
void smtp_session_reply_delay(SMTP_SESSION *s, long long ms, const char *text);

/* smtp_session_goodbye - a last reply, then close once it is sent */
void smtp_session_goodbye(SMTP_SESSION *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* smtp_session_timer_arm - (re)arm the session's one timer */
void smtp_session_timer_arm(SMTP_SESSION *s, long long ms);

/* smtp_session_pause - stop reading while the session waits for w (enum smtp_wait) */
void smtp_session_pause(SMTP_SESSION *s, int w);

/* smtp_session_resume - the wait is over (s->wait reset by the caller): read, take up buffered commands */
void smtp_session_resume(SMTP_SESSION *s);

/* smtp_session_reset - end the transaction (downstream dropped without a dot) */
void smtp_session_reset(SMTP_SESSION *s);

/* smtp_session_close - stop reading; free once the last reply has left */
void smtp_session_close(SMTP_SESSION *s);

/* smtp_session_last - "EHLO", "DATA (123 bytes)", "CONNECT": the last thing the client did */
const char *smtp_session_last(const SMTP_SESSION *s, char *buf, size_t size);

/* smtp_session_qid - a new queue id (hex, like Postfix's) */
char *smtp_session_qid(void);

/* smtp_session_data_put - message bytes (wire format) to the next hop and the spool file, as open */
void smtp_session_data_put(SMTP_SESSION *s, const void *buf, size_t n);

/* smtp_session_escape - the first input line, escaped, for a log line */
void smtp_session_escape(struct evbuffer *in, char *out, size_t size);

/* smtp_session_protocol_error - count a protocol violation */
void smtp_session_protocol_error(void);

/* smtp_session_setcb - our callbacks on the current bufferevent (after STARTTLS) */
void smtp_session_setcb(SMTP_SESSION *s);

/* smtp_session_proto - "ESMTP", "ESMTPSA", "UTF8SMTPS"... for Received: */
const char *smtp_session_proto(const SMTP_SESSION *s);

/* smtp_command_run - one command line (smtp_command.c) */
void smtp_command_run(SMTP_SESSION *s, const char *line);

/* smtp_command_auth_line - one client line of an AUTH exchange */
void smtp_command_auth_line(SMTP_SESSION *s, const char *line);

/* smtp_command_auth_abort - a malformed AUTH response line ends the exchange (501) */
void smtp_command_auth_abort(SMTP_SESSION *s, const char *why);

/* smtp_command_data_end - the client's final dot: pass it on (or 552) */
void smtp_command_data_end(SMTP_SESSION *s);

#endif
