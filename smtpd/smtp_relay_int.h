/*
 * smtp_relay_int.h - what smtp_relay.c and smtp_relay_hop.c share
 *
 * One downstream SMTP client's state, and the calls between the two
 * halves: smtp_relay_hop.c gets a transaction open (the list of next
 * hops, their MX and name lookups, the connection, EHLO, STARTTLS,
 * XFORWARD and MAIL); smtp_relay.c owns the connection's reading and
 * writing, the replies, the session's requests in order, and the public
 * interface of smtp_relay.h. Private to those two files.
 */
#ifndef RG_SMTP_RELAY_INT_H
#define RG_SMTP_RELAY_INT_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "smtp_relay.h"
#include "smtpd.h"
#include "smtpd_dns.h"

#define RELAY_TLS_UNDER_HIGH (64 * 1024) /* encrypted bytes queued for the socket under TLS */
#define RELAY_LINE_MAX      2048    /* longest reply line we read */
#define RELAY_REPLY_LINES   200     /* most lines in one reply */
#define RELAY_XFORWARD_MAX  512     /* longest XFORWARD command (Postfix's limit) */
#define RELAY_QUIT_WAIT     5       /* seconds to wait for the 221 after QUIT */
#define RELAY_PIPE_MAX      16      /* most commands in flight behind the oldest */

/* One next hop from the list. */
typedef struct relay_hop {
    char *host;                 /* name or address, no brackets, no "IPv6:" */
    int port;
    int bracket;                /* "[host]": this host, never an MX lookup */
    int mx_todo;                /* env->mx and a bare domain: resolve its MX before trying it */
    int addr_todo;              /* a host name: resolve its addresses before trying it */
    char *name;                 /* an address found by DNS: its host's name (peer, TLS), else NULL */
} RELAY_HOP;

/* One request of the session, answered in order. */
enum relay_kind { REQ_MAIL, REQ_RCPT, REQ_DATA, REQ_DOT };

typedef struct relay_req {
    enum relay_kind kind;
    char *arg;                  /* RCPT: "<rcpt>" */
    char *params;               /* RCPT: the client's parameters */
    int sent;                   /* sent to the current hop, reply not yet in */
    SMTP_RELAY_CB cb;
    void *cbarg;
    struct relay_req *next;
} RELAY_REQ;

/* Where the downstream dialogue is. */
enum relay_state {
    ST_INIT,                    /* nothing started */
    ST_CONNECT,                 /* TCP connect (and name resolution) */
    ST_BANNER, ST_EHLO, ST_HELO, ST_STARTTLS, ST_HANDSHAKE, ST_EHLO2, ST_XFORWARD, ST_MAIL,
    ST_RSET,                    /* a reused connection's RSET: its failure loses the transaction */
    ST_READY,                   /* transaction open, nothing in flight */
    ST_RCPT, ST_DATA,           /* command in flight */
    ST_BODY,                    /* 354 received, message bytes flowing */
    ST_DOT,                     /* final dot sent */
    ST_DONE,                    /* final reply received */
    ST_FAILED,                  /* transaction lost; answer everything with fail_text */
};

/* EHLO extensions of the current hop. */
#define EXT_STARTTLS    (1<<0)
#define EXT_XFORWARD    (1<<1)
#define EXT_SIZE        (1<<2)
#define EXT_8BITMIME    (1<<3)
#define EXT_SMTPUTF8    (1<<4)
#define EXT_DSN         (1<<5)
#define EXT_PIPELINING  (1<<6)

/* XFORWARD attributes offered by the current hop. */
#define XF_NAME     (1<<0)
#define XF_ADDR     (1<<1)
#define XF_PORT     (1<<2)
#define XF_PROTO    (1<<3)
#define XF_HELO     (1<<4)

struct smtp_relay {
    RELAY_HOP *hops;
    int nhops;
    int hop;                    /* index of the hop being tried */
    enum relay_state state;     /* the oldest command in flight (or where we are) */
    enum relay_state pipe[RELAY_PIPE_MAX];      /* commands in flight behind it, in order */
    int npipe;
    int inflight;               /* replies still to come (the banner counts) */
    int stray;                  /* the hop said something no command asked for: give it up */
    int utf8_dropped;           /* MAIL went without the client's SMTPUTF8 (the envelope was ASCII) */
    int mail_sent;              /* MAIL went to this hop: RCPT may follow it */
    struct bufferevent *bev;    /* the top bufferevent (TLS filter after STARTTLS) */
    int mx;                     /* env->mx: bare domains go by their MX (smtpd_dns.c) */
    SMTPD_DNS *mxdns;           /* our resolver for MX and name lookups (made at the first one) */
    SMTPD_DNS_MX *mxq;          /* the MX or name lookup in flight */
    int mx_perm;                /* a domain's DNS said no for good (NXDOMAIN, null MX): last_fail is 5xx */
    SSL *ssl;                   /* made before STARTTLS, owned by bev after the handshake */
    struct event *timer;        /* connect and reply deadlines */
    struct event *setup_timer;  /* env->setup_ms: the deadline for the first RCPT's reply, over all hops */
    int setup_ms;
    int rcpt_answered;          /* a RCPT reply came (the setup deadline is over) */
    struct event *kick;         /* run work from the loop, never from the caller */
    RELAY_REQ *reqs, **reqs_tail;
    struct evbuffer *early;     /* message bytes written before the 354 */
    void (*drain_cb)(void *);
    void *drain_arg;
    /* the current reply */
    int rcode;
    int rlines;
    /* the hop's extensions */
    int ext;
    int xf_attrs;
    int tls_done;
    int tls_skip;               /* relay_tls = may and this hop's handshake failed: retry in the clear */
    int reached;                /* some hop answered its banner */
    int connected;              /* the current hop accepted the connection */
    int loops;                  /* the hop's EHLO/HELO reply names it as us: a routing loop */
    /* envelope and client, copied */
    char *sender;
    char *mail_params;
    char *c_name, *c_addr, *c_helo;
    int c_port, c_esmtp;
    char *xforward_todo;        /* remaining XFORWARD commands, '\n'-separated */
    char peer[SMTPD_NAME_LEN + SMTPD_ADDR_LEN + 16];
    char last_fail[SMTPD_REPLY_LEN];    /* why the last hop was given up */
    char fail_text[SMTPD_REPLY_LEN];    /* answer to everything after a failure */
    char data_refused[SMTPD_REPLY_LEN]; /* DATA was not answered 354: the dot gets this */
    int busy;                   /* inside a loop handler */
    int zombie;                 /* freed during a callback */
};

/* smtp_relay.c: I/O, replies, requests */

/* smtp_relay_arm - (re)start the deadline timer */
void smtp_relay_arm(SMTP_RELAY *r, int ms);

/* smtp_relay_write_timeout - a downstream that stops reading is given up after relay_timeout */
void smtp_relay_write_timeout(struct bufferevent *bev);

/* smtp_relay_send - one command line to the downstream, reply deadline armed */
void smtp_relay_send(SMTP_RELAY *r, enum relay_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* smtp_relay_flush - send what the handler queued; a waiting session hears of an empty backlog */
void smtp_relay_flush(SMTP_RELAY *r);

/* smtp_relay_drop_bev - close the connection at once, no QUIT, no dot */
void smtp_relay_drop_bev(SMTP_RELAY *r);

/* smtp_relay_quit_bev - say QUIT and let the connection close on its own */
void smtp_relay_quit_bev(SMTP_RELAY *r);

/* smtp_relay_answer_head - answer and drop the first request; 0 if freed meanwhile */
int smtp_relay_answer_head(SMTP_RELAY *r, int code, const char *text);

/* smtp_relay_flush_failed - answer every queued request with fail_text */
void smtp_relay_flush_failed(SMTP_RELAY *r);

/* smtp_relay_next_hop - give up on this hop (reason in last_fail) and try the next */
void smtp_relay_next_hop(SMTP_RELAY *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* smtp_relay_pump - send the requests that may go now */
void smtp_relay_pump(SMTP_RELAY *r);

/* smtp_relay_read_cb, _write_cb, _event_cb - the connection's bufferevent callbacks */
void smtp_relay_read_cb(struct bufferevent *bev, void *arg);
void smtp_relay_write_cb(struct bufferevent *bev, void *arg);
void smtp_relay_event_cb(struct bufferevent *bev, short what, void *arg);

/* smtp_relay_hop.c: from the list of next hops to an open transaction */

/* smtp_relay_hop_parse - the transport-syntax list into hops (lib/nexthop.c); the count */
int smtp_relay_hop_parse(const char *list, RELAY_HOP **out);

/* smtp_relay_hop_try - connect to r->hop, or to the ones after it; all gone: 4.4.1 */
void smtp_relay_hop_try(SMTP_RELAY *r);

/* smtp_relay_hop_peer_set - "name[addr]:port" of the connected hop */
void smtp_relay_hop_peer_set(SMTP_RELAY *r);

/* smtp_relay_hop_ehlo_line - note the extension named by one EHLO reply line */
void smtp_relay_hop_ehlo_line(SMTP_RELAY *r, const char *kw);

/* smtp_relay_hop_session - after EHLO/HELO: STARTTLS, XFORWARD, MAIL as offered */
void smtp_relay_hop_session(SMTP_RELAY *r);

/* smtp_relay_hop_starttls - the 220 to STARTTLS: wrap the connection in TLS */
void smtp_relay_hop_starttls(SMTP_RELAY *r);

/* smtp_relay_hop_tls_done - TLS is up: log it, EHLO again */
void smtp_relay_hop_tls_done(SMTP_RELAY *r);

/* smtp_relay_hop_tls_mode - the TLS level for this relay (relay_tls; "may" for mail sent by MX) */
const char *smtp_relay_hop_tls_mode(const SMTP_RELAY *r);

/* smtp_relay_hop_xforward_next - the next XFORWARD command, or MAIL after the last */
void smtp_relay_hop_xforward_next(SMTP_RELAY *r);

#endif
