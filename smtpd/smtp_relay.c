/*
 * smtp_relay.c - the downstream SMTP client of the before-queue proxy
 *
 * NAME
 *      smtp_relay - hand one transaction to the next hop while the client
 *      is still connected
 * SYNOPSIS
 *      r = smtp_relay_open(env, cb, arg);     cb: the reply to MAIL
 *      smtp_relay_rcpt(r, rcpt, params, cb, arg) ...
 *      smtp_relay_data(r, cb, arg);           cb: 354
 *      smtp_relay_write(r, bytes, len) ...
 *      smtp_relay_dot(r, cb, arg);            cb: the final reply
 *      smtp_relay_free(r);
 * DESCRIPTION
 *      The next hops (Postfix transport syntax, comma separated) are
 *      tried in order. A hop is left for the next one when the connection
 *      fails or times out, when it answers the banner, EHLO/HELO or MAIL
 *      with 4xx, when TLS is mandatory (relay_tls encrypt|verify) and it
 *      does not offer STARTTLS or the handshake or verification fails.
 *      A 5xx to MAIL is final and given back as it is. With relay_tls =
 *      may a failed handshake retries the same hop once in the clear (like
 *      Postfix's opportunistic TLS); a refused XFORWARD is logged and the
 *      transaction goes on. A next hop given by name ("[mail.corp]") is
 *      looked up with smtpd_dns_name() (the hosts file, then DNS's A and
 *      AAAA records with dns_servers; c-ares), and that hop becomes all
 *      its addresses, tried in turn like bracketed hops and shown as
 *      "name[addr]:port": one server of a name that is down does not stop
 *      the mail, as in Postfix. A name without addresses is that hop's
 *      451 4.4.3. With env->mx (the queue's
 *      mail to outside domains, a DSN to its sender) a bare domain is
 *      first looked up by MX with smtpd_dns_mx(), and that hop becomes
 *      the exchangers' addresses in order, the same way. A
 *      null MX or NXDOMAIN answers MAIL and every later request with its
 *      5xx (the caller returns or drops the mail); a DNS failure is the
 *      hop's 451 4.4.3, so the mail stays queued.
 *
 *      Commands are written straight into the socket at the end of each
 *      loop handler, and EV_WRITE stays off unless the kernel does not
 *      take everything (as smtp_session_flush does for the client): no
 *      write event is added and deleted per command. A next hop that
 *      offers PIPELINING (RFC 2920) gets XFORWARD and MAIL in one go,
 *      with any RCPT already asked for right behind MAIL, and further
 *      RCPTs while earlier ones are in flight; their replies are taken in
 *      order, with the same meaning as one at a time (a refused XFORWARD
 *      is logged, 4xx to MAIL moves to the next hop, where the RCPTs are
 *      sent again). DATA and everything after it wait for every earlier
 *      reply. Requests queue up in
 *      order; a "kick" event starts work, so no callback ever runs inside
 *      the call that asked for it. A callback may free the relay: the
 *      object is only marked, and really freed when the loop handler that
 *      made the callback unwinds.
 *
 *      Once the transaction is lost (connection closed, timeout, 421,
 *      protocol error, a reply the command cannot have such as a 250 to
 *      DATA) every outstanding and later request is answered
 *      "451 4.4.2 Lost connection with next hop ...", or "451 4.4.1 ..." if
 *      no hop could be reached at all. Freeing the relay before the final
 *      reply closes the connection at once, without the final dot, so the
 *      downstream discards what it got.
 * DIAGNOSTICS
 *      Failed hops are logged with log_warn ("connect to host[addr]:port:
 *      Connection refused"); replies given back carry the reason.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "log.h"
#include "nexthop.h"
#include "printable.h"
#include "xalloc.h"
#include "params_smtpd.h"
#include "smtp_tls.h"
#include "smtp_relay.h"
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

static void relay_read_cb(struct bufferevent *, void *);
static void relay_write_cb(struct bufferevent *, void *);
static void relay_event_cb(struct bufferevent *, short, void *);
static void relay_try_hop(SMTP_RELAY *);
static void relay_pump(SMTP_RELAY *);
static void relay_setup_cb(evutil_socket_t, short, void *);
static int relay_mx_start(SMTP_RELAY *);

/* relay_is_addr - is host an IPv4 or IPv6 address (not a name)? */
static int relay_is_addr(const char *host)
{
    struct in6_addr bin;

    return inet_pton(AF_INET, host, &bin) == 1 || inet_pton(AF_INET6, host, &bin) == 1;
}

/* relay_hops_parse - the transport-syntax list into hops (lib/nexthop.c); the count */
static int relay_hops_parse(const char *list, RELAY_HOP **out)
{
    char *copy = xstrdup(list ? list : "");
    char *save = NULL, *tok;
    RELAY_HOP *hops = NULL;
    NEXTHOP_HOP h;
    int n = 0, rc, skipped = 0;

    for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        char orig[256], why[256];

        snprintf(orig, sizeof(orig), "%s", tok);
        if ((rc = nexthop_element(tok, &h, why, sizeof(why))) < 0) {
            if (rc == -2 && n == 0 && !skipped) {
                /* lmtp:[a]:24,[b]:24: the transport is named once, for all: none is SMTP */
                log_warn("relay: ignoring next hop \"%s\": %s", list, why);
                break;
            }
            log_warn("relay: ignoring malformed next hop \"%s\": %s", orig, why);
            skipped = 1;
            continue;
        }
        hops = xrealloc(hops, (size_t) (n + 1) * sizeof(*hops));
        hops[n].host = xstrdup(h.host);
        hops[n].port = h.port;
        hops[n].bracket = h.bracket;
        hops[n].mx_todo = 0;
        hops[n].addr_todo = !relay_is_addr(h.host);
        hops[n].name = NULL;
        n++;
    }
    free(copy);
    *out = hops;
    return n;
}

/* relay_clean - reply text safe to repeat to the client: printable, bounded */
static void relay_clean(char *dst, size_t size, const char *src)
{
    size_t i;

    for (i = 0; i + 1 < size && src[i]; i++)
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
    dst[i] = 0;
}

/* relay_arm_event - (re)start a timer event */
static void relay_arm_event(struct event *ev, int ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(ev, &tv);
}

/* relay_arm - (re)start the deadline timer */
static void relay_arm(SMTP_RELAY *r, int ms)
{
    relay_arm_event(r->timer, ms);
}

/* relay_write_timeout - a downstream that stops reading is given up after relay_timeout */
static void relay_write_timeout(struct bufferevent *bev)
{
    struct timeval tv;

    tv.tv_sec = var_smtpd_relay_timeout_ms / 1000;
    tv.tv_usec = (var_smtpd_relay_timeout_ms % 1000) * 1000;
    bufferevent_set_timeouts(bev, NULL, &tv);
}

/* relay_send - one command line to the downstream, reply deadline armed */
static void relay_send(SMTP_RELAY *r, enum relay_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void relay_send(SMTP_RELAY *r, enum relay_state st, const char *fmt, ...)
{
    va_list ap;

    /*
     * Nothing in flight, yet input waits: it came before this command, so
     * it cannot be its reply (a second 250 at the dot, a reply before
     * MAIL). Taken as one, every later reply would land on the wrong
     * command, a 550 on an accepted recipient; the read loop gives up.
     */
    if (r->inflight == 0 && evbuffer_get_length(bufferevent_get_input(r->bev)) > 0)
        r->stray = 1;
    va_start(ap, fmt);
    evbuffer_add_vprintf(bufferevent_get_output(r->bev), fmt, ap);
    va_end(ap);
    evbuffer_add(bufferevent_get_output(r->bev), "\r\n", 2);
    if (r->inflight > 0 && r->npipe < RELAY_PIPE_MAX) {
        /* Pipelined: its reply comes after the ones already awaited. */
        r->pipe[r->npipe++] = st;
    } else {
        r->state = st;
        r->rcode = 0;
        r->rlines = 0;
    }
    r->inflight++;
    relay_arm(r, var_smtpd_relay_timeout_ms);
}

/*
 * relay_bev_flush - what is queued on bev straight into the socket. As in
 * smtp_session_flush: EV_WRITE stays off while the kernel takes all, so
 * a command costs no epoll_ctl; only a rest turns it on, and libevent
 * then sends it under the write timeout and reports errors the usual
 * way (an error here leaves the data queued for it to meet again). The
 * TLS filter does its own writing.
 */
static void relay_bev_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);

    if (evbuffer_get_length(out) == 0)
        return;
    if (bufferevent_get_underlying(bev) != NULL) {
        bufferevent_enable(bev, EV_WRITE);
        return;
    }
    if (bufferevent_get_enabled(bev) & EV_WRITE)
        return;
    /* libevent keeps the front of a socket bufferevent's output frozen except while it writes. */
    evbuffer_unfreeze(out, 1);
    (void) evbuffer_write(out, bufferevent_getfd(bev));
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(bev, EV_WRITE);
}

/* relay_flush - send what the handler queued; a waiting session hears of an empty backlog */
static void relay_flush(SMTP_RELAY *r)
{
    if (r->zombie)
        return;
    if (r->bev)
        relay_bev_flush(r->bev);
    if (r->drain_cb && smtp_relay_backlog(r) == 0)
        event_active(r->kick, EV_TIMEOUT, 0);
}

/* relay_drop_bev - close the connection at once, no QUIT, no dot */
static void relay_drop_bev(SMTP_RELAY *r)
{
    r->stray = 0;
    if (r->bev) {
        bufferevent_free(r->bev);
        r->bev = NULL;
    }
    if (r->ssl) {
        SSL_free(r->ssl);
        r->ssl = NULL;
    }
    evtimer_del(r->timer);
}

/* Connections waiting for the 221 after QUIT, so that a stop can close them (smtp_relay_quit_cut). */
typedef struct relay_quitting {
    struct bufferevent *bev;
    struct relay_quitting *prev, *next;
} RELAY_QUITTING;

static RELAY_QUITTING *relay_quitting;

/* relay_quit_done - close a quitting connection and forget it */
static void relay_quit_done(RELAY_QUITTING *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        relay_quitting = q->next;
    if (q->next)
        q->next->prev = q->prev;
    bufferevent_free(q->bev);
    free(q);
}

/* relay_quit_read - the QUIT was answered: close */
static void relay_quit_read(struct bufferevent *bev, void *arg)
{
    (void) bev;
    relay_quit_done(arg);
}

/* relay_quit_event - EOF, error or timeout while waiting for the 221 */
static void relay_quit_event(struct bufferevent *bev, short what, void *arg)
{
    (void) bev;
    (void) what;
    relay_quit_done(arg);
}

/* smtp_relay_quit_cut - at exit: close the connections still waiting for their 221 */
void smtp_relay_quit_cut(void)
{
    while (relay_quitting)
        relay_quit_done(relay_quitting);
}

/* relay_quit_bev - say QUIT and let the connection close on its own */
static void relay_quit_bev(SMTP_RELAY *r)
{
    struct timeval tv = {RELAY_QUIT_WAIT, 0};
    struct bufferevent *bev = r->bev;

    if (bev == NULL)
        return;
    r->bev = NULL;
    evtimer_del(r->timer);
    evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
    {
        RELAY_QUITTING *q = xcalloc(1, sizeof(*q));

        q->bev = bev;
        q->next = relay_quitting;
        if (relay_quitting)
            relay_quitting->prev = q;
        relay_quitting = q;
        bufferevent_setcb(bev, relay_quit_read, NULL, relay_quit_event, q);
    }
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_enable(bev, EV_READ);
    bufferevent_write(bev, "QUIT\r\n", 6);
    relay_bev_flush(bev);
}

/* relay_call - one callback; 0 if the relay was freed inside it */
static int relay_call(SMTP_RELAY *r, RELAY_REQ *q, int code, const char *text)
{
    char clean[SMTPD_REPLY_LEN];

    relay_clean(clean, sizeof(clean), text);
    if (q->cb)
        q->cb(q->cbarg, code, clean);
    return !r->zombie;
}

/* relay_pop - take the first request off the queue */
static RELAY_REQ *relay_pop(SMTP_RELAY *r)
{
    RELAY_REQ *q = r->reqs;

    if (q) {
        r->reqs = q->next;
        if (r->reqs == NULL)
            r->reqs_tail = &r->reqs;
    }
    return q;
}

/* relay_req_free - one request */
static void relay_req_free(RELAY_REQ *q)
{
    free(q->arg);
    free(q->params);
    free(q);
}

/* relay_answer_head - answer and drop the first request; 0 if freed meanwhile */
static int relay_answer_head(SMTP_RELAY *r, int code, const char *text)
{
    RELAY_REQ *q = relay_pop(r);
    int alive;

    if (q == NULL)
        return 1;
    alive = relay_call(r, q, code, text);
    relay_req_free(q);
    return alive;
}

/* relay_flush_failed - answer every queued request with fail_text */
static void relay_flush_failed(SMTP_RELAY *r)
{
    while (r->reqs && !r->zombie)
        if (!relay_answer_head(r, atoi(r->fail_text), r->fail_text))
            return;
    /* A session waiting for the backlog to drain must not wait forever. */
    if (r->drain_cb && !r->zombie) {
        void (*cb)(void *) = r->drain_cb;

        r->drain_cb = NULL;
        cb(r->drain_arg);
    }
}

/* relay_fail - the transaction is lost: close, answer everything with text */
static void relay_fail(SMTP_RELAY *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void relay_fail(SMTP_RELAY *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->fail_text, sizeof(r->fail_text), fmt, ap);
    va_end(ap);
    relay_drop_bev(r);
    r->state = ST_FAILED;
    evbuffer_drain(r->early, evbuffer_get_length(r->early));
    relay_flush_failed(r);
}

/* relay_lost - lost after MAIL was accepted: 451 4.4.2 and the reason */
static void relay_lost(SMTP_RELAY *r, const char *why)
{
    log_warn("relay: lost connection with %s (%s)", r->peer, why);
    relay_fail(r, "451 4.4.2 Lost connection with next hop (%s)", why);
}

/* relay_next_hop - give up on this hop (reason in last_fail) and try the next */
static void relay_next_hop(SMTP_RELAY *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void relay_next_hop(SMTP_RELAY *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->last_fail, sizeof(r->last_fail), fmt, ap);
    va_end(ap);
    /* Connection failures were logged as "connect to ..." already. */
    if (strncmp(r->last_fail, "451 4.4.1 Next hop not reachable", 32) != 0)
        log_warn("relay: giving up on next hop %s: %s", r->peer, r->last_fail);
    relay_drop_bev(r);
    r->hop++;
    r->tls_skip = 0;
    relay_try_hop(r);
}

/* relay_peer_set - "name[addr]:port" of the connected hop */
static void relay_peer_set(SMTP_RELAY *r)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char addr[SMTPD_ADDR_LEN] = "unknown";
    evutil_socket_t fd = bufferevent_getfd(r->bev);
    RELAY_HOP *h = &r->hops[r->hop];

    if (fd >= 0 && getpeername(fd, (struct sockaddr *) &ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, addr, sizeof(addr));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &ss)->sin6_addr, addr, sizeof(addr));
    }
    snprintf(r->peer, sizeof(r->peer), "%s[%s]:%d", h->name ? h->name : h->host, addr, h->port);
}

/* relay_pipe_reset - a new hop: nothing in flight, every request still to be sent */
static void relay_pipe_reset(SMTP_RELAY *r)
{
    RELAY_REQ *q;

    r->npipe = r->inflight = r->mail_sent = 0;
    for (q = r->reqs; q; q = q->next)
        q->sent = 0;
}

/*
 * relay_mx_cb - the MX lookup of hops[hop] is in: that hop becomes the
 * addresses to try in order (each "name[addr]:port"), or, when DNS says
 * no or fails, it goes away with the reply as last_fail (5xx for
 * NXDOMAIN and a null MX, 4xx for a failure to get an answer).
 */
static void relay_mx_cb(void *arg, int status, const SMTPD_DNS_MX_ADDR *addrs, int n, const char *reply)
{
    SMTP_RELAY *r = arg;
    RELAY_HOP *h = &r->hops[r->hop];
    int port = h->port;

    r->mxq = NULL;
    r->busy++;
    if (status != SMTPD_DNS_YES) {
        log_warn("relay: %s: %s", h->host, reply);
        snprintf(r->last_fail, sizeof(r->last_fail), "%s", reply);
        if (reply[0] == '5')
            r->mx_perm = 1;
        n = 0;
    } else if (log_debug_enabled()) {
        for (int i = 0; i < n; i++)
            log_debug("relay: %s: mx %d: %s[%s]:%d", h->host, i, addrs[i].name, addrs[i].addr, port);
    }
    /* hops[hop] is replaced by the n addresses, in their order */
    free(h->host);
    free(h->name);
    if (n != 1) {
        r->hops = xrealloc(r->hops, (size_t) (r->nhops + n + 1) * sizeof(*r->hops));
        memmove(&r->hops[r->hop + n], &r->hops[r->hop + 1], (size_t) (r->nhops - r->hop - 1) * sizeof(*r->hops));
    }
    r->nhops += n - 1;
    for (int i = 0; i < n; i++) {
        RELAY_HOP *a = &r->hops[r->hop + i];

        a->host = xstrdup(addrs[i].addr);
        a->name = xstrdup(addrs[i].name);
        a->port = port;
        a->bracket = 1;
        a->mx_todo = a->addr_todo = 0;
    }
    relay_try_hop(r);
    relay_flush(r);
    if (--r->busy == 0 && r->zombie)
        smtp_relay_free(r);
}

/*
 * relay_mx_start - look up the MX of hops[hop] (a bare domain) or the
 * addresses of its name; 1 started, 0 this hop is skipped (last_fail says why)
 */
static int relay_mx_start(SMTP_RELAY *r)
{
    RELAY_HOP *h = &r->hops[r->hop];
    int mx = h->mx_todo;

    h->mx_todo = h->addr_todo = 0;
    if (r->mxdns == NULL) {
        char err[256];

        if ((r->mxdns = smtpd_dns_create(smtpd_base, var_smtpd_dns_servers, var_smtpd_dns_timeout_ms,
                                         err, sizeof(err))) == NULL) {
            log_warn("relay: %s: no resolver for the %s lookup: %s", h->host, mx ? "MX" : "address", err);
            snprintf(r->last_fail, sizeof(r->last_fail), "451 4.4.3 Host or domain name lookup failed: %s",
                     h->host);
            return 0;
        }
    }
    snprintf(r->peer, sizeof(r->peer), "%s[%s]:%d", h->host, h->host, h->port);
    r->state = ST_CONNECT;
    r->mxq = mx ? smtpd_dns_mx(r->mxdns, h->host, relay_mx_cb, r)
        : smtpd_dns_name(r->mxdns, h->host, relay_mx_cb, r);
    return 1;
}

/* relay_try_hop - connect to r->hop, or to the ones after it; all gone: 4.4.1 */
static void relay_try_hop(SMTP_RELAY *r)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *) &ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;
    socklen_t sl;
    RELAY_HOP *h;
    int rc;

    for (; r->hop < r->nhops; r->hop++) {
        h = &r->hops[r->hop];
        if (h->mx_todo || h->addr_todo) {
            if (relay_mx_start(r))
                return;         /* relay_mx_cb goes on */
            continue;
        }
        snprintf(r->peer, sizeof(r->peer), "%s[%s]:%d", h->name ? h->name : h->host, h->host, h->port);
        r->ext = r->xf_attrs = r->tls_done = r->connected = 0;
        relay_pipe_reset(r);
        r->bev = bufferevent_socket_new(smtpd_base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (r->bev == NULL) {
            snprintf(r->last_fail, sizeof(r->last_fail), "451 4.3.0 Out of resources");
            r->tls_skip = 0;
            continue;
        }
        bufferevent_setcb(r->bev, relay_read_cb, relay_write_cb, relay_event_cb, r);
        relay_write_timeout(r->bev);
        /* Not EV_WRITE: the connect watches for writability on its own. */
        bufferevent_enable(r->bev, EV_READ);
        r->state = ST_CONNECT;
        memset(&ss, 0, sizeof(ss));
        if (inet_pton(AF_INET, h->host, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            sin->sin_port = htons((unsigned short) h->port);
            sl = sizeof(*sin);
            rc = bufferevent_socket_connect(r->bev, (struct sockaddr *) &ss, (int) sl);
        } else if (inet_pton(AF_INET6, h->host, &sin6->sin6_addr) == 1) {
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons((unsigned short) h->port);
            sl = sizeof(*sin6);
            rc = bufferevent_socket_connect(r->bev, (struct sockaddr *) &ss, (int) sl);
        } else {
            rc = -1;            /* not reached: a name went through relay_mx_start first */
        }
        if (rc < 0) {
            int err = EVUTIL_SOCKET_ERROR();

            log_warn("connect to %s: %s", r->peer, evutil_socket_error_to_string(err));
            /* Out of descriptors or memory is ours, not the next hop's: not 4.4.1 (a dead hop). */
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
                snprintf(r->last_fail, sizeof(r->last_fail), "451 4.3.0 Insufficient system resources");
            else
                snprintf(r->last_fail, sizeof(r->last_fail), "451 4.4.1 Next hop not reachable");
            relay_drop_bev(r);
            r->tls_skip = 0;
            continue;
        }
        relay_arm(r, var_smtpd_relay_conn_ms);
        return;
    }
    /* Every hop failed: the MAIL request gets the last hop's reason. */
    if (r->nhops == 0 && r->last_fail[0] == 0)
        snprintf(r->last_fail, sizeof(r->last_fail), "451 4.3.5 Server configuration error: no next hop");
    r->state = ST_FAILED;
    snprintf(r->fail_text, sizeof(r->fail_text), "%s", r->last_fail);
    if (r->reqs && r->reqs->kind == REQ_MAIL)
        if (!relay_answer_head(r, atoi(r->last_fail), r->last_fail))
            return;
    if (r->reached)
        snprintf(r->fail_text, sizeof(r->fail_text), "451 4.4.2 Lost connection with next hop");
    else if (r->mx_perm && r->last_fail[0] == '5')
        snprintf(r->fail_text, sizeof(r->fail_text), "%s", r->last_fail);     /* the RCPTs hear it too */
    else
        snprintf(r->fail_text, sizeof(r->fail_text), "451 4.4.1 No next hop reachable");
    relay_flush_failed(r);
}

/* relay_xtext - Postfix's xtext encoding of an XFORWARD value */
static void relay_xtext(char *dst, size_t size, const char *src)
{
    size_t n = 0;
    const unsigned char *s;

    for (s = (const unsigned char *) src; *s && n + 4 < size; s++) {
        if (*s < 33 || *s > 126 || *s == '+' || *s == '=')
            n += (size_t) snprintf(dst + n, size - n, "+%02X", *s);
        else
            dst[n++] = (char) *s;
    }
    dst[n] = 0;
}

/* relay_xforward_build - the XFORWARD commands for the offered attributes */
static char *relay_xforward_build(SMTP_RELAY *r)
{
    struct { int bit; const char *name; char value[600]; } a[5];
    char port[16], raw[300], line[RELAY_XFORWARD_MAX + 1];
    size_t n = 0, i, len = 0, out_len = 0;
    char *out = xstrdup("");

    if (r->xf_attrs & XF_NAME) {
        a[n].name = "NAME";
        relay_xtext(a[n++].value, sizeof(a[0].value),
                    (*r->c_name && strcmp(r->c_name, "unknown") != 0) ? r->c_name : "[UNAVAILABLE]");
    }
    if (r->xf_attrs & XF_ADDR) {
        a[n].name = "ADDR";
        if (*r->c_addr == 0)
            snprintf(raw, sizeof(raw), "[UNAVAILABLE]");
        else
            snprintf(raw, sizeof(raw), "%s%s", strchr(r->c_addr, ':') ? "IPV6:" : "", r->c_addr);
        relay_xtext(a[n++].value, sizeof(a[0].value), raw);
    }
    if (r->xf_attrs & XF_PORT) {
        a[n].name = "PORT";
        snprintf(port, sizeof(port), "%d", r->c_port);
        relay_xtext(a[n++].value, sizeof(a[0].value), r->c_port > 0 ? port : "[UNAVAILABLE]");
    }
    if (r->xf_attrs & XF_PROTO) {
        a[n].name = "PROTO";
        relay_xtext(a[n++].value, sizeof(a[0].value),
                    r->c_helo == NULL ? "[UNAVAILABLE]" : r->c_esmtp ? "ESMTP" : "SMTP");
    }
    if (r->xf_attrs & XF_HELO) {
        a[n].name = "HELO";
        snprintf(raw, sizeof(raw), "%.255s", r->c_helo && *r->c_helo ? r->c_helo : "[UNAVAILABLE]");
        relay_xtext(a[n++].value, sizeof(a[0].value), raw);
    }
    /* Several commands when one would exceed Postfix's line limit. */
    line[0] = 0;
    for (i = 0; i < n; i++) {
        size_t add = strlen(a[i].name) + 2 + strlen(a[i].value);

        if (len > 0 && len + add > RELAY_XFORWARD_MAX) {
            out = xrealloc(out, out_len + len + 2);
            memcpy(out + out_len, line, len);
            out_len += len;
            out[out_len++] = '\n';
            out[out_len] = 0;
            len = 0;
        }
        if (len == 0)
            len = (size_t) snprintf(line, sizeof(line), "XFORWARD");
        if (len + add <= RELAY_XFORWARD_MAX)
            len += (size_t) snprintf(line + len, sizeof(line) - len, " %s=%s", a[i].name, a[i].value);
    }
    if (len > 0) {
        out = xrealloc(out, out_len + len + 2);
        memcpy(out + out_len, line, len);
        out_len += len;
        out[out_len++] = '\n';
        out[out_len] = 0;
    }
    return out;
}

/* relay_send_next_xforward - the next XFORWARD command, or MAIL after the last */
static void relay_send_mail(SMTP_RELAY *);

static void relay_send_next_xforward(SMTP_RELAY *r)
{
    char *nl;

    if (r->xforward_todo && (nl = strchr(r->xforward_todo, '\n')) != NULL) {
        char *rest;

        *nl = 0;
        relay_send(r, ST_XFORWARD, "%s", r->xforward_todo);
        rest = xstrdup(nl + 1);
        free(r->xforward_todo);
        r->xforward_todo = rest;
        return;
    }
    free(r->xforward_todo);
    r->xforward_todo = NULL;
    relay_send_mail(r);
}

/*
 * relay_envelope_ascii - are the sender and every RCPT asked for so far
 * ASCII? (A RCPT asked for later, in a proxy session, is judged in
 * relay_pump: 555 if it needs the SMTPUTF8 that MAIL went without.)
 */
static int relay_envelope_ascii(const SMTP_RELAY *r)
{
    if (!printable_ascii(r->sender))
        return 0;
    for (const RELAY_REQ *q = r->reqs; q; q = q->next)
        if (q->kind == REQ_RCPT && !printable_ascii(q->arg))
            return 0;
    return 1;
}

/* relay_send_mail - MAIL FROM with the parameters this hop understands */
static void relay_send_mail(SMTP_RELAY *r)
{
    char *copy = xstrdup(r->mail_params), *save = NULL, *tok;
    char params[1024];
    size_t n = 0;

    params[0] = 0;
    r->utf8_dropped = 0;
    for (tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        int pass = 0;

        if (strncasecmp(tok, "SIZE=", 5) == 0)
            pass = r->ext & EXT_SIZE;
        else if (strncasecmp(tok, "BODY=", 5) == 0)
            pass = r->ext & EXT_8BITMIME;
        else if (strcasecmp(tok, "SMTPUTF8") == 0) {
            if (r->ext & EXT_SMTPUTF8) {
                pass = 1;
            } else if (relay_envelope_ascii(r)) {
                /*
                 * Asked for, but nothing in the envelope needs it: relayed
                 * without it, as Postfix does (a client may say SMTPUTF8
                 * for every message; the inside need not offer it).
                 */
                log_info("relay: %s does not offer SMTPUTF8; the envelope is ASCII: relayed without it",
                         r->peer);
                r->utf8_dropped = 1;
            } else {
                /* Final, like a 5xx to MAIL: another hop is the same kind of server. */
                free(copy);
                r->state = ST_FAILED;
                log_warn("relay: %s does not offer SMTPUTF8", r->peer);
                snprintf(r->fail_text, sizeof(r->fail_text), "451 4.4.2 Lost connection with next hop");
                relay_quit_bev(r);
                if (relay_answer_head(r, 555, "555 5.6.7 SMTPUTF8 is required, but was not offered "
                                      "by the next hop"))
                    relay_flush_failed(r);
                return;
            }
        } else if (strncasecmp(tok, "RET=", 4) == 0 || strncasecmp(tok, "ENVID=", 6) == 0)
            pass = r->ext & EXT_DSN;
        if (pass && n + strlen(tok) + 2 < sizeof(params))
            n += (size_t) snprintf(params + n, sizeof(params) - n, " %s", tok);
    }
    free(copy);
    relay_send(r, ST_MAIL, "MAIL FROM:<%s>%s", r->sender, params);
    r->mail_sent = 1;
    /* RCPTs asked for already go right behind MAIL when the hop pipelines. */
    relay_pump(r);
}

/*
 * relay_tls_mode - the TLS level for this relay: relay_tls for our next
 * hops; mail sent to the Internet by MX (a report to an outside sender)
 * gets opportunistic TLS, as Postfix's default: relay_tls = verify with an
 * internal relay_ca_file would otherwise defer every such report until it
 * expired, and encrypt would refuse every exchanger without STARTTLS.
 */
static const char *relay_tls_mode(const SMTP_RELAY *r)
{
    const char *mode = var_smtpd_relay_tls ? var_smtpd_relay_tls : "none";

    return r->mx && strcmp(mode, "none") != 0 ? "may" : mode;
}

/* relay_start_session - after EHLO/HELO: STARTTLS, XFORWARD, MAIL as offered */
static void relay_start_session(SMTP_RELAY *r)
{
    const char *mode = relay_tls_mode(r);
    int must = strcmp(mode, "encrypt") == 0 || strcmp(mode, "verify") == 0;

    if (!r->tls_done && !r->tls_skip && strcmp(mode, "none") != 0) {
        if (r->ext & EXT_STARTTLS) {
            const RELAY_HOP *h = &r->hops[r->hop];

            /* an exchanger found by MX is checked (and named in SNI) by its name, not its address */
            if ((r->ssl = smtp_tls_client_new(h->name ? h->name : h->host, strcmp(mode, "verify") == 0)) != NULL) {
                relay_send(r, ST_STARTTLS, "STARTTLS");
                return;
            }
            log_warn("relay: cannot make a TLS client for %s (no TLS context)", r->peer);
        }
        if (must) {
            relay_next_hop(r, "451 4.7.5 TLS is required, but was not offered by the next hop");
            return;
        }
    }
    if (var_smtpd_xforward && (r->ext & EXT_XFORWARD) && r->xf_attrs) {
        free(r->xforward_todo);
        r->xforward_todo = relay_xforward_build(r);
        if (r->ext & EXT_PIPELINING) {
            char *p = r->xforward_todo, *nl;

            /* All XFORWARDs and MAIL in one write; the replies come in order. */
            while ((nl = strchr(p, '\n')) != NULL) {
                *nl = 0;
                relay_send(r, ST_XFORWARD, "%s", p);
                p = nl + 1;
            }
            free(r->xforward_todo);
            r->xforward_todo = NULL;
            relay_send_mail(r);
            return;
        }
        relay_send_next_xforward(r);
        return;
    }
    relay_send_mail(r);
}

/* relay_ehlo_line - note the extension named by one EHLO reply line */
static void relay_ehlo_line(SMTP_RELAY *r, const char *kw)
{
    if (strcasecmp(kw, "STARTTLS") == 0)
        r->ext |= EXT_STARTTLS;
    else if (strcasecmp(kw, "8BITMIME") == 0)
        r->ext |= EXT_8BITMIME;
    else if (strcasecmp(kw, "SMTPUTF8") == 0)
        r->ext |= EXT_SMTPUTF8;
    else if (strcasecmp(kw, "DSN") == 0)
        r->ext |= EXT_DSN;
    else if (strcasecmp(kw, "PIPELINING") == 0)
        r->ext |= EXT_PIPELINING;
    else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == 0 || kw[4] == ' '))
        r->ext |= EXT_SIZE;
    else if (strncasecmp(kw, "XFORWARD", 8) == 0 && (kw[8] == 0 || kw[8] == ' ')) {
        char buf[256], *save = NULL, *t;

        r->ext |= EXT_XFORWARD;
        snprintf(buf, sizeof(buf), "%s", kw + 8);
        for (t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
            if (strcasecmp(t, "NAME") == 0)
                r->xf_attrs |= XF_NAME;
            else if (strcasecmp(t, "ADDR") == 0)
                r->xf_attrs |= XF_ADDR;
            else if (strcasecmp(t, "PORT") == 0)
                r->xf_attrs |= XF_PORT;
            else if (strcasecmp(t, "PROTO") == 0)
                r->xf_attrs |= XF_PROTO;
            else if (strcasecmp(t, "HELO") == 0)
                r->xf_attrs |= XF_HELO;
        }
    }
}

/* relay_starttls - the 220 to STARTTLS: wrap the connection in TLS */
static void relay_starttls(SMTP_RELAY *r)
{
    struct bufferevent *tls;
    struct evbuffer *in = bufferevent_get_input(r->bev);

    /* Anything after the 220 was sent in the clear: an injection attempt. */
    if (evbuffer_get_length(in) > 0) {
        relay_next_hop(r, "451 4.7.5 Next hop sent plaintext after its STARTTLS reply");
        return;
    }
    /*
     * The filter writes through the socket bufferevent: let libevent do
     * that. Its high watermark makes the filter stop taking what a slow
     * next hop does not read, so the backlog (the filter's own buffer)
     * grows, and the session and the queue pause: without it everything
     * went into the socket's buffer, unbounded, and the backlog read 0.
     */
    bufferevent_enable(r->bev, EV_WRITE);
    bufferevent_setwatermark(r->bev, EV_WRITE, 0, RELAY_TLS_UNDER_HIGH);
    tls = bufferevent_openssl_filter_new(smtpd_base, r->bev, r->ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (tls == NULL) {
        relay_next_hop(r, "451 4.7.5 Cannot start TLS with the next hop");
        return;
    }
    r->bev = tls;
    r->ssl = NULL;              /* the filter owns it now */
    bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
    bufferevent_setcb(tls, relay_read_cb, relay_write_cb, relay_event_cb, r);
    relay_write_timeout(tls);
    bufferevent_enable(tls, EV_READ | EV_WRITE);
    r->state = ST_HANDSHAKE;
    relay_arm(r, var_smtpd_relay_timeout_ms);
}

/* relay_handshake_done - TLS is up: log it, EHLO again */
static void relay_handshake_done(SMTP_RELAY *r)
{
    SSL *ssl = bufferevent_openssl_get_ssl(r->bev);
    int verify = strcmp(relay_tls_mode(r), "verify") == 0;
    X509 *cert = SSL_get1_peer_certificate(ssl);
    const char *trust;
    char desc[200];

    if (verify)
        trust = "Verified";
    else if (cert == NULL)
        trust = "Anonymous";
    else if (SSL_get_verify_result(ssl) == X509_V_OK)
        trust = "Trusted";
    else
        trust = "Untrusted";
    X509_free(cert);
    log_info("%s TLS connection established to %s: %s", trust, r->peer,
             smtp_tls_describe(ssl, desc, sizeof(desc)));
    r->tls_done = 1;
    r->ext = r->xf_attrs = 0;
    relay_send(r, ST_EHLO2, "EHLO %s", smtpd_hostname);
}

/* relay_answer_pump - answer the head request, then send what may go next */
static void relay_answer_pump(SMTP_RELAY *r, int code, const char *text)
{
    if (relay_answer_head(r, code, text))
        relay_pump(r);
}

/*
 * relay_lost_reply - after MAIL was accepted, a 421 or a reply the command
 * cannot have loses the transaction (1): a stray 2xx to DATA must not
 * become the answer to the dot, nor a 3xx the answer to RCPT or the dot.
 */
static int relay_lost_reply(SMTP_RELAY *r, enum relay_state st, int code, const char *quoted)
{
    int cls = code / 100;
    int odd = st == ST_DATA ? (cls == 2 || (cls == 3 && code != 354)) : cls == 3;

    if (code == 421)
        relay_lost(r, quoted);
    else if (odd)
        relay_lost(r, "unexpected reply");
    return code == 421 || odd;
}

/* relay_reply - one complete reply (its last line) in the current state */
static void relay_reply(SMTP_RELAY *r, int code, const char *line)
{
    char quoted[SMTPD_REPLY_LEN];
    int cls = code / 100;
    enum relay_state st = r->state;

    /* This reply is the oldest command's; the next pipelined one is awaited now. */
    if (r->inflight > 0)
        r->inflight--;
    if (r->npipe > 0) {
        r->state = r->pipe[0];
        memmove(r->pipe, r->pipe + 1, (size_t) (r->npipe - 1) * sizeof(r->pipe[0]));
        r->npipe--;
    }
    if (r->inflight > 0)
        relay_arm(r, var_smtpd_relay_timeout_ms);
    else
        evtimer_del(r->timer);
    relay_clean(quoted, sizeof(quoted), line);
    switch (st) {
    case ST_BANNER:
        r->reached = 1;
        if (cls != 2) {
            /*
             * Even a 5xx banner is temporary for us: the inside refusing to
             * talk (maintenance, a full disk, a wrong ACL) says nothing
             * about this recipient, and a 5xx here would bounce mail the
             * inside takes once it is back. Postfix's smtp client, with its
             * default smtp_skip_5xx_greeting = yes, defers such mail too.
             */
            relay_next_hop(r, "451 4.4.1 Next hop refused to talk to me: %.200s", quoted);
            return;
        }
        relay_send(r, ST_EHLO, "EHLO %s", smtpd_hostname);
        return;
    case ST_EHLO:
    case ST_EHLO2:
        if (cls == 2) {
            relay_start_session(r);
            return;
        }
        if (cls == 5 && st == ST_EHLO) {
            r->ext = r->xf_attrs = 0;
            relay_send(r, ST_HELO, "HELO %s", smtpd_hostname);
            return;
        }
        relay_next_hop(r, "451 4.4.1 Next hop said to EHLO: %.200s", quoted);
        return;
    case ST_HELO:
        if (cls == 2) {
            relay_start_session(r);
            return;
        }
        relay_next_hop(r, "451 4.4.1 Next hop said to HELO: %.200s", quoted);
        return;
    case ST_STARTTLS:
        if (code == 220) {
            relay_starttls(r);
            return;
        }
        SSL_free(r->ssl);
        r->ssl = NULL;
        if (strcmp(relay_tls_mode(r), "may") == 0) {
            /* Opportunistic: go on in the clear, as Postfix's smtp_tls_security_level=may. */
            r->tls_done = 1;
            relay_start_session(r);
            return;
        }
        relay_next_hop(r, "451 4.7.5 Next hop refused STARTTLS: %.200s", quoted);
        return;
    case ST_XFORWARD:
        if (code == 421) {
            relay_next_hop(r, "451 4.4.1 Next hop said to XFORWARD: %.200s", quoted);
            return;
        }
        /* A refused XFORWARD loses the original client's name in the hop's logs, not mail. */
        if (cls != 2)
            log_warn("relay: %s refused XFORWARD: %s", r->peer, quoted);
        /* Pipelined, the rest is on its way already (xforward_todo is gone). */
        if (r->xforward_todo)
            relay_send_next_xforward(r);
        return;
    case ST_MAIL:
        if (cls == 3) {
            /* No 3xx answers MAIL: never hand it to the client as the verdict. */
            relay_next_hop(r, "451 4.4.1 Next hop: protocol error");
            return;
        }
        if (cls == 4 && code != 421 && r->hop + 1 >= r->nhops) {
            /* The last hop's own temporary refusal is the most useful answer. */
            relay_next_hop(r, "%s", quoted);
            return;
        }
        if (cls == 4) {
            relay_next_hop(r, "451 4.4.1 Next hop said to MAIL: %.200s", quoted);
            return;
        }
        if (cls != 2) {
            r->state = ST_FAILED;
            snprintf(r->fail_text, sizeof(r->fail_text), "503 5.5.1 Error: sender was refused");
            relay_quit_bev(r);
            if (relay_answer_head(r, code, quoted))
                relay_flush_failed(r);
            return;
        }
        if (r->inflight == 0)
            r->state = ST_READY;
        relay_answer_pump(r, code, quoted);
        return;
    case ST_RSET:
        if (cls != 2) {
            relay_lost(r, "RSET refused");
            return;
        }
        /* The same hop, TLS as it was: XFORWARD of the new client, then MAIL. */
        relay_start_session(r);
        return;
    case ST_RCPT:
        if (relay_lost_reply(r, st, code, quoted))
            return;
        r->rcpt_answered = 1;
        if (r->inflight == 0)
            r->state = ST_READY;
        relay_answer_pump(r, code, quoted);
        return;
    case ST_DATA:
        if (relay_lost_reply(r, st, code, quoted))
            return;
        if (code != 354) {
            snprintf(r->data_refused, sizeof(r->data_refused), "%s", quoted);
            evbuffer_drain(r->early, evbuffer_get_length(r->early));
            r->state = ST_READY;
        } else {
            r->state = ST_BODY;
            bufferevent_write_buffer(r->bev, r->early);
        }
        relay_answer_pump(r, code, quoted);
        return;
    case ST_DOT:
        if (relay_lost_reply(r, st, code, quoted))
            return;
        r->state = ST_DONE;
        /* The session logs the delivery in Postfix's format; this is for debugging. */
        log_debug("relay=%s, final reply: %s", r->peer, quoted);
        relay_answer_pump(r, code, quoted);
        return;
    default:
        relay_lost(r, "unexpected reply");
        return;
    }
}

/* relay_read_cb - read reply lines; act on each complete reply */
static void relay_read_cb(struct bufferevent *bev, void *arg)
{
    SMTP_RELAY *r = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char *line;
    size_t len;

    r->busy++;
    while (!r->zombie && r->bev == bev && r->state != ST_FAILED && !r->stray
           && (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
        int code;
        char sep;

        if (len < 3 || !isdigit((unsigned char) line[0]) || !isdigit((unsigned char) line[1])
            || !isdigit((unsigned char) line[2]) || line[0] < '2' || line[0] > '5'
            || (len > 3 && line[3] != ' ' && line[3] != '-') || len > RELAY_LINE_MAX) {
            free(line);
            if (r->state <= ST_MAIL)
                relay_next_hop(r, "451 4.4.1 Next hop: protocol error");
            else
                relay_lost(r, "protocol error");
            break;
        }
        code = atoi(line);
        sep = len > 3 ? line[3] : ' ';
        if ((r->rlines > 0 && code != r->rcode) || ++r->rlines > RELAY_REPLY_LINES) {
            free(line);
            if (r->state <= ST_MAIL)
                relay_next_hop(r, "451 4.4.1 Next hop: malformed reply");
            else
                relay_lost(r, "malformed reply");
            break;
        }
        r->rcode = code;
        if ((r->state == ST_EHLO || r->state == ST_EHLO2) && r->rlines > 1 && len > 4)
            relay_ehlo_line(r, line + 4);
        if (sep == ' ') {
            r->rlines = 0;
            relay_reply(r, code, line);
        }
        free(line);
    }
    if (!r->zombie && r->bev == bev && r->state != ST_FAILED && r->stray) {
        if (r->state <= ST_MAIL)
            relay_next_hop(r, "451 4.4.1 Next hop: protocol error (a reply no command asked for)");
        else
            relay_lost(r, "a reply no command asked for");
    } else if (!r->zombie && r->bev == bev && evbuffer_get_length(in) > RELAY_LINE_MAX) {
        if (r->state <= ST_MAIL)
            relay_next_hop(r, "451 4.4.1 Next hop: reply line too long");
        else
            relay_lost(r, "reply line too long");
    }
    relay_flush(r);
    if (--r->busy == 0 && r->zombie)
        smtp_relay_free(r);
}

/* relay_write_cb - the output buffer drained: tell a waiting session */
static void relay_write_cb(struct bufferevent *bev, void *arg)
{
    SMTP_RELAY *r = arg;
    void (*cb)(void *) = r->drain_cb;

    /* All sent: back to writing straight into the socket. */
    if (bev && bufferevent_get_underlying(bev) == NULL
        && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
    if (cb == NULL || smtp_relay_backlog(r) > 0)
        return;
    r->drain_cb = NULL;
    r->busy++;
    cb(r->drain_arg);
    relay_flush(r);
    if (--r->busy == 0 && r->zombie)
        smtp_relay_free(r);
}

/* relay_event_cb - connected, TLS up, EOF, error or write timeout */
static void relay_event_cb(struct bufferevent *bev, short what, void *arg)
{
    SMTP_RELAY *r = arg;
    char why[300];

    (void) bev;
    r->busy++;
    if (what & BEV_EVENT_CONNECTED) {
        if (r->state == ST_CONNECT) {
            int one = 1;

            /* Small writes (the dot after the body) must not wait for a delayed ACK. */
            (void) setsockopt(bufferevent_getfd(r->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            relay_peer_set(r);
            r->connected = 1;
            r->state = ST_BANNER;
            r->inflight = 1;
            relay_arm(r, var_smtpd_relay_timeout_ms);
        } else if (r->state == ST_HANDSHAKE) {
            relay_handshake_done(r);
        }
    } else if (r->state == ST_HANDSHAKE) {
        SSL *ssl = bufferevent_openssl_get_ssl(r->bev);
        long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;

        if (vr != X509_V_OK)
            snprintf(why, sizeof(why), "certificate verification failed: %s",
                     X509_verify_cert_error_string(vr));
        else
            snprintf(why, sizeof(why), "TLS handshake failed");
        if (strcmp(relay_tls_mode(r), "may") == 0 && !r->tls_skip) {
            /* Opportunistic TLS must not stop mail: the same hop again, in the clear. */
            log_warn("relay: %s: %s; trying again without TLS", r->peer, why);
            relay_drop_bev(r);
            r->tls_skip = 1;
            relay_try_hop(r);
        } else
            relay_next_hop(r, "451 4.7.5 Next hop: %s", why);
    } else if (r->state == ST_CONNECT) {
        int dnserr = bufferevent_socket_get_dns_error(bev);

        snprintf(why, sizeof(why), "%s", dnserr ? evutil_gai_strerror(dnserr)
                 : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        log_warn("connect to %s: %s", r->peer, why);
        relay_next_hop(r, "451 4.4.1 Next hop not reachable: %s", why);
    } else if (r->state <= ST_MAIL) {
        snprintf(why, sizeof(why), "%s", (what & BEV_EVENT_EOF) ? "lost connection"
                 : (what & BEV_EVENT_TIMEOUT) ? "timeout" : "connection error");
        relay_next_hop(r, "451 4.4.1 Next hop: %s", why);
    } else if (r->state != ST_FAILED) {
        snprintf(why, sizeof(why), "%s", (what & BEV_EVENT_EOF) ? "connection closed"
                 : (what & BEV_EVENT_TIMEOUT) ? "timeout while sending" : "connection error");
        relay_lost(r, why);
    }
    relay_flush(r);
    if (--r->busy == 0 && r->zombie)
        smtp_relay_free(r);
}

/* relay_timer_cb - a connect or reply deadline passed */
static void relay_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    SMTP_RELAY *r = arg;

    (void) fd;
    (void) what;
    r->busy++;
    if (r->state == ST_CONNECT) {
        log_warn("connect to %s: Connection timed out", r->peer);
        relay_next_hop(r, "451 4.4.1 Next hop not reachable: connection timed out");
    } else if (r->state <= ST_MAIL) {
        relay_next_hop(r, "451 4.4.1 Next hop: timeout waiting for a reply");
    } else if (r->state != ST_FAILED) {
        relay_lost(r, "timeout waiting for a reply");
    }
    relay_flush(r);
    if (--r->busy == 0 && r->zombie)
        smtp_relay_free(r);
}

/*
 * relay_setup_cb - env->setup_ms passed before the first RCPT's reply:
 * before MAIL's, no hop is tried any more and the MAIL request (and all
 * after it) gets 451 4.4.1; after it, the transaction is lost (4.4.2)
 */
static void relay_setup_cb(evutil_socket_t fd, short what, void *arg)
{
    SMTP_RELAY *r = arg;

    (void) fd;
    (void) what;
    if (r->rcpt_answered || r->state == ST_INIT || r->state > ST_RCPT)
        return;                         /* answered already (or ended) */
    if (r->state > ST_MAIL && r->state != ST_RCPT)
        return;                         /* MAIL answered, no RCPT asked yet: nobody waits on us */
    r->busy++;
    log_warn("relay: no %s reply from the next hop%s%s within %d s (relay_proxy_timeout)",
             r->state == ST_RCPT ? "RCPT" : "MAIL", strcmp(r->peer, "none") != 0 ? " " : "",
             strcmp(r->peer, "none") != 0 ? r->peer : "", r->setup_ms / 1000);
    if (r->state == ST_RCPT) {
        relay_lost(r, "timeout waiting for a reply");
    } else {
        smtpd_dns_mx_cancel(r->mxq);
        r->mxq = NULL;
        r->hop = r->nhops > 0 ? r->nhops - 1 : 0;   /* relay_next_hop goes past the last one */
        relay_next_hop(r, "451 4.4.1 Next hop: no answer in time");
    }
    relay_flush(r);
    if (--r->busy == 0 && r->zombie)
        smtp_relay_free(r);
}

/* relay_rcpt_params - the RCPT parameters this hop understands (DSN's, if it has DSN) */
static void relay_rcpt_params(SMTP_RELAY *r, const char *in, char *out, size_t size)
{
    char *copy = xstrdup(in ? in : ""), *save = NULL, *tok;
    size_t n = 0;

    out[0] = 0;
    for (tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
        if ((r->ext & EXT_DSN) && (strncasecmp(tok, "NOTIFY=", 7) == 0 || strncasecmp(tok, "ORCPT=", 6) == 0)
            && n + strlen(tok) + 2 < size)
            n += (size_t) snprintf(out + n, size - n, " %s", tok);
    free(copy);
}

/* relay_can_pipe - may a RCPT go now, behind the commands in flight? */
static int relay_can_pipe(SMTP_RELAY *r)
{
    if (r->inflight == 0)
        return r->state == ST_READY;
    /* Only behind MAIL and RCPT (and XFORWARD before them), never behind DATA. */
    return (r->ext & EXT_PIPELINING) && r->mail_sent && r->npipe < RELAY_PIPE_MAX
        && (r->state == ST_XFORWARD || r->state == ST_MAIL || r->state == ST_RCPT);
}

/*
 * relay_pump - send what may go now: RCPTs, also behind others in flight
 * when the hop pipelines; DATA and the dot only with nothing in flight.
 */
static void relay_pump(SMTP_RELAY *r)
{
    RELAY_REQ *q;

    while (!r->zombie && r->reqs != NULL) {
        if (r->state == ST_FAILED) {
            relay_flush_failed(r);
            return;
        }
        /* The first request not yet sent (MAIL goes by the session start-up). */
        for (q = r->reqs; q && (q->sent || q->kind == REQ_MAIL); q = q->next)
            ;
        if (q == NULL)
            return;
        if (q->kind == REQ_RCPT && r->utf8_dropped && !printable_ascii(q->arg)) {
            /* It needs the SMTPUTF8 that MAIL went without: refused here, in its turn. */
            if (q != r->reqs || r->inflight > 0)
                return;
            if (!relay_answer_head(r, 555, "555 5.6.7 SMTPUTF8 is required, but was not offered by the next hop"))
                return;
            continue;
        }
        if (q->kind == REQ_RCPT && relay_can_pipe(r)) {
            char params[1024];

            relay_rcpt_params(r, q->params, params, sizeof(params));
            relay_send(r, ST_RCPT, "RCPT TO:%s%s", q->arg, params);
            q->sent = 1;
            continue;
        }
        if (r->inflight > 0 || (r->state != ST_READY && r->state != ST_BODY && r->state != ST_DONE))
            return;             /* busy, or not yet open */
        /* Nothing in flight: q is the first request. */
        if (q->kind == REQ_DATA && r->state == ST_READY) {
            r->data_refused[0] = 0;
            relay_send(r, ST_DATA, "DATA");
            q->sent = 1;
            return;
        }
        if (q->kind == REQ_DOT && r->state == ST_BODY) {
            relay_send(r, ST_DOT, ".");
            q->sent = 1;
            return;
        }
        if (q->kind == REQ_DOT && r->data_refused[0]) {
            if (!relay_answer_head(r, atoi(r->data_refused), r->data_refused))
                return;
            continue;
        }
        if (!relay_answer_head(r, 503, "503 5.5.1 Error: bad sequence of commands to the relay"))
            return;
    }
}

/* relay_kick_cb - start or resume work from the loop */
static void relay_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    SMTP_RELAY *r = arg;

    (void) fd;
    (void) what;
    r->busy++;
    if (r->state == ST_INIT) {
        r->hop = 0;
        relay_try_hop(r);
    } else if (r->state == ST_FAILED)
        relay_flush_failed(r);
    else {
        relay_pump(r);
        if (!r->zombie && r->bev)
            relay_bev_flush(r->bev);
        if (!r->zombie && r->drain_cb && smtp_relay_backlog(r) == 0)
            relay_write_cb(r->bev, r);
    }
    relay_flush(r);
    if (--r->busy == 0 && r->zombie)
        smtp_relay_free(r);
}

/* relay_enqueue - add a request and let the loop look at it */
static RELAY_REQ *relay_enqueue(SMTP_RELAY *r, enum relay_kind kind, char *text, SMTP_RELAY_CB cb, void *arg)
{
    RELAY_REQ *q = xcalloc(1, sizeof(*q));

    q->kind = kind;
    q->arg = text;
    q->cb = cb;
    q->cbarg = arg;
    *r->reqs_tail = q;
    r->reqs_tail = &q->next;
    event_active(r->kick, EV_TIMEOUT, 0);
    return q;
}

/* smtp_relay_open - start the downstream session up to MAIL FROM */
SMTP_RELAY *smtp_relay_open(const SMTP_RELAY_ENV *env, SMTP_RELAY_CB cb, void *arg)
{
    SMTP_RELAY *r = xcalloc(1, sizeof(*r));
    const SMTPD_CLIENT *c = env->client;

    r->reqs_tail = &r->reqs;
    r->nhops = relay_hops_parse(env->nexthops, &r->hops);
    if (env->mx == 1) {
        /* A bare domain goes by its MX; an address or a [host] is used as it is. */
        r->mx = 1;
        for (int i = 0; i < r->nhops; i++)
            if (!r->hops[i].bracket && r->hops[i].addr_todo) {
                r->hops[i].mx_todo = 1;
                r->hops[i].addr_todo = 0;
            }
    }
    r->timer = evtimer_new(smtpd_base, relay_timer_cb, r);
    if (env->setup_ms > 0) {
        r->setup_timer = evtimer_new(smtpd_base, relay_setup_cb, r);
        if (r->setup_timer == NULL)
            log_fatal("relay: out of memory");
        r->setup_ms = env->setup_ms;
        relay_arm_event(r->setup_timer, env->setup_ms);
    }
    r->kick = event_new(smtpd_base, -1, 0, relay_kick_cb, r);
    r->early = evbuffer_new();
    if (r->timer == NULL || r->kick == NULL || r->early == NULL)
        log_fatal("relay: out of memory");
    r->sender = xstrdup(env->sender ? env->sender : "");
    r->mail_params = xstrdup(env->mail_params ? env->mail_params : "");
    r->c_name = xstrdup(c && *c->name ? c->name : "unknown");
    r->c_addr = xstrdup(c ? c->addr : "");
    r->c_helo = c && c->helo ? xstrdup(c->helo) : NULL;
    r->c_port = c ? c->port : 0;
    r->c_esmtp = c ? c->esmtp : 0;
    snprintf(r->peer, sizeof(r->peer), "none");
    r->state = ST_INIT;
    relay_enqueue(r, REQ_MAIL, NULL, cb, arg);
    return r;
}

/* smtp_relay_rcpt - RCPT TO:<rcpt>; parameters filtered when it is sent */
void smtp_relay_rcpt(SMTP_RELAY *r, const char *rcpt, const char *params, SMTP_RELAY_CB cb, void *arg)
{
    RELAY_REQ *q = relay_enqueue(r, REQ_RCPT, xasprintf("<%s>", rcpt), cb, arg);

    q->params = xstrdup(params ? params : "");
}

/* smtp_relay_data - DATA; cb gets 354 or the refusal */
void smtp_relay_data(SMTP_RELAY *r, SMTP_RELAY_CB cb, void *arg)
{
    relay_enqueue(r, REQ_DATA, NULL, cb, arg);
}

/* smtp_relay_write - message bytes, as they go on the wire */
int smtp_relay_write(SMTP_RELAY *r, const void *buf, size_t len)
{
    if (r->state == ST_FAILED)
        return -1;
    if (r->state == ST_BODY && r->bev) {
        /* Sent from the loop, so one write carries what the session hands over at once. */
        event_active(r->kick, EV_TIMEOUT, 0);
        return bufferevent_write(r->bev, buf, len) == 0 ? 0 : -1;
    }
    /* Before the 354 arrives: keep them until it does. */
    return evbuffer_add(r->early, buf, len) == 0 ? 0 : -1;
}

/* smtp_relay_backlog - bytes written but not yet handed to the kernel (or to TLS) */
size_t smtp_relay_backlog(SMTP_RELAY *r)
{
    size_t n = evbuffer_get_length(r->early);

    if (r->bev)
        n += evbuffer_get_length(bufferevent_get_output(r->bev));
    return n;
}

/* smtp_relay_on_drain - one-shot: cb(arg) once the backlog is sent */
void smtp_relay_on_drain(SMTP_RELAY *r, void (*cb)(void *), void *arg)
{
    r->drain_cb = cb;
    r->drain_arg = arg;
    if (smtp_relay_backlog(r) == 0 || r->state == ST_FAILED)
        event_active(r->kick, EV_TIMEOUT, 0);
}

/* smtp_relay_dot - end the message; cb gets the final reply */
void smtp_relay_dot(SMTP_RELAY *r, SMTP_RELAY_CB cb, void *arg)
{
    relay_enqueue(r, REQ_DOT, NULL, cb, arg);
}

/* smtp_relay_peer - "name[addr]:port" of the hop that answered, or "none" */
const char *smtp_relay_peer(const SMTP_RELAY *r)
{
    return r->connected ? r->peer : "none";
}

/* smtp_relay_failed - see smtp_relay.h */
int smtp_relay_failed(const SMTP_RELAY *r)
{
    return r->state == ST_FAILED;
}

/* smtp_relay_dsn - see smtp_relay.h */
int smtp_relay_dsn(const SMTP_RELAY *r)
{
    return r->connected && (r->ext & EXT_DSN) != 0;
}

/* smtp_relay_reuse - RSET and a new transaction on a connection whose last one ended */
int smtp_relay_reuse(SMTP_RELAY *r, const SMTP_RELAY_ENV *env, SMTP_RELAY_CB cb, void *arg)
{
    const SMTPD_CLIENT *c = env->client;

    /* Unread input on an idle connection is a reply nobody asked for: a fresh one, not this. */
    if (r->zombie || r->bev == NULL || r->reqs != NULL || r->inflight > 0
        || (r->state != ST_DONE && r->state != ST_READY)
        || evbuffer_get_length(bufferevent_get_input(r->bev)) > 0)
        return -1;
    free(r->sender);
    free(r->mail_params);
    free(r->c_name);
    free(r->c_addr);
    free(r->c_helo);
    r->sender = xstrdup(env->sender ? env->sender : "");
    r->mail_params = xstrdup(env->mail_params ? env->mail_params : "");
    r->c_name = xstrdup(c && *c->name ? c->name : "unknown");
    r->c_addr = xstrdup(c ? c->addr : "");
    r->c_helo = c && c->helo ? xstrdup(c->helo) : NULL;
    r->c_port = c ? c->port : 0;
    r->c_esmtp = c ? c->esmtp : 0;
    r->data_refused[0] = r->fail_text[0] = 0;
    r->mail_sent = 0;
    evbuffer_drain(r->early, evbuffer_get_length(r->early));
    relay_enqueue(r, REQ_MAIL, NULL, cb, arg);
    relay_send(r, ST_RSET, "RSET");
    return 0;
}

/* smtp_relay_close - free without the QUIT: the connection closes at once */
void smtp_relay_close(SMTP_RELAY *r)
{
    if (r != NULL && !r->busy)
        relay_drop_bev(r);
    smtp_relay_free(r);
}

/* smtp_relay_tried - the last hop tried, answered or not */
const char *smtp_relay_tried(const SMTP_RELAY *r)
{
    return r->peer;
}

/* smtp_relay_free - QUIT when that is safe, else close without the dot; no more callbacks */
void smtp_relay_free(SMTP_RELAY *r)
{
    RELAY_REQ *q;
    int i;

    if (r == NULL)
        return;
    if (r->busy) {
        /* Inside one of our callbacks: finish when the handler unwinds. */
        r->zombie = 1;
        for (q = r->reqs; q; q = q->next)
            q->cb = NULL;
        r->drain_cb = NULL;
        return;
    }
    if (r->bev && (r->state == ST_DONE || r->state == ST_READY) && r->reqs == NULL)
        relay_quit_bev(r);
    else
        relay_drop_bev(r);
    if (r->ssl)
        SSL_free(r->ssl);
    smtpd_dns_mx_cancel(r->mxq);
    smtpd_dns_free(r->mxdns);
    while ((q = relay_pop(r)) != NULL)
        relay_req_free(q);
    for (i = 0; i < r->nhops; i++) {
        free(r->hops[i].host);
        free(r->hops[i].name);
    }
    free(r->hops);
    event_free(r->timer);
    if (r->setup_timer)
        event_free(r->setup_timer);
    event_free(r->kick);
    evbuffer_free(r->early);
    free(r->sender);
    free(r->mail_params);
    free(r->c_name);
    free(r->c_addr);
    free(r->c_helo);
    free(r->xforward_todo);
    free(r);
}
