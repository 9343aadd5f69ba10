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
 *
 *      This file reads and writes the connection, takes the replies and
 *      answers the requests; smtp_relay_hop.c gets each hop as far as an
 *      open transaction (hops, lookups, EHLO, STARTTLS, XFORWARD, MAIL);
 *      smtp_relay_int.h is what the two share.
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
#include "smtp_relay_int.h"
#include "smtpd_dns.h"


static void relay_setup_cb(evutil_socket_t, short, void *);

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

/* smtp_relay_arm - (re)start the deadline timer */
void smtp_relay_arm(SMTP_RELAY *r, int ms)
{
    relay_arm_event(r->timer, ms);
}

/* smtp_relay_write_timeout - a downstream that stops reading is given up after relay_timeout */
void smtp_relay_write_timeout(struct bufferevent *bev)
{
    struct timeval tv;

    tv.tv_sec = var_smtpd_relay_timeout_ms / 1000;
    tv.tv_usec = (var_smtpd_relay_timeout_ms % 1000) * 1000;
    bufferevent_set_timeouts(bev, NULL, &tv);
}

/* smtp_relay_send - one command line to the downstream, reply deadline armed */

void smtp_relay_send(SMTP_RELAY *r, enum relay_state st, const char *fmt, ...)
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
    smtp_relay_arm(r, var_smtpd_relay_timeout_ms);
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

/* smtp_relay_flush - send what the handler queued; a waiting session hears of an empty backlog */
void smtp_relay_flush(SMTP_RELAY *r)
{
    if (r->zombie)
        return;
    if (r->bev)
        relay_bev_flush(r->bev);
    if (r->drain_cb && smtp_relay_backlog(r) == 0)
        event_active(r->kick, EV_TIMEOUT, 0);
}

/* smtp_relay_drop_bev - close the connection at once, no QUIT, no dot */
void smtp_relay_drop_bev(SMTP_RELAY *r)
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

/* smtp_relay_quit_bev - say QUIT and let the connection close on its own */
void smtp_relay_quit_bev(SMTP_RELAY *r)
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

/* smtp_relay_answer_head - answer and drop the first request; 0 if freed meanwhile */
int smtp_relay_answer_head(SMTP_RELAY *r, int code, const char *text)
{
    RELAY_REQ *q = relay_pop(r);
    int alive;

    if (q == NULL)
        return 1;
    alive = relay_call(r, q, code, text);
    relay_req_free(q);
    return alive;
}

/* smtp_relay_flush_failed - answer every queued request with fail_text */
void smtp_relay_flush_failed(SMTP_RELAY *r)
{
    while (r->reqs && !r->zombie)
        if (!smtp_relay_answer_head(r, atoi(r->fail_text), r->fail_text))
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
    smtp_relay_drop_bev(r);
    r->state = ST_FAILED;
    evbuffer_drain(r->early, evbuffer_get_length(r->early));
    smtp_relay_flush_failed(r);
}

/* relay_lost - lost after MAIL was accepted: 451 4.4.2 and the reason */
static void relay_lost(SMTP_RELAY *r, const char *why)
{
    log_warn("relay: lost connection with %s (%s)", r->peer, why);
    relay_fail(r, "451 4.4.2 Lost connection with next hop (%s)", why);
}

/* smtp_relay_next_hop - give up on this hop (reason in last_fail) and try the next */

void smtp_relay_next_hop(SMTP_RELAY *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->last_fail, sizeof(r->last_fail), fmt, ap);
    va_end(ap);
    /* Connection failures were logged as "connect to ..." already. */
    if (strncmp(r->last_fail, "451 4.4.1 Next hop not reachable", 32) != 0)
        log_warn("relay: giving up on next hop %s: %s", r->peer, r->last_fail);
    smtp_relay_drop_bev(r);
    r->hop++;
    r->tls_skip = 0;
    smtp_relay_hop_try(r);
}

/*
 * relay_greets_as_us - note whether the first line of an EHLO or HELO
 * reply names the hop as this host: its first word is the server's name
 * (RFC 5321 4.1.1.1). A next_hop (or MX) that leads back here would have
 * smtpd relay to itself, each session opening another until its limits
 * refuse them (proxy), or a message go round until its Received: count
 * bounces it (queue).
 */
static void relay_greets_as_us(SMTP_RELAY *r, const char *line, size_t len)
{
    size_t n = strlen(smtpd_hostname), w = 0;

    if (!var_smtpd_relay_loop_check || len <= 4 || n == 0)
        return;
    while (4 + w < len && line[4 + w] != ' ')
        w++;
    /* A trailing dot names the same host ("mx.example.com." is mx.example.com). */
    if (w == n + 1 && line[4 + n] == '.')
        w--;
    if (w == n && strncasecmp(line + 4, smtpd_hostname, n) == 0)
        r->loops = 1;
}

/*
 * relay_loops - the hop greeted as us: give it up with a temporary answer,
 * as for a hop that cannot be reached. Postfix's smtp client says
 * "mail for DOMAIN loops back to myself" and bounces; for a gateway a loop
 * is a routing mistake to be fixed while the mail waits, not a reason to
 * return it (X.4.6: routing loop detected).
 */
static int relay_loops(SMTP_RELAY *r)
{
    if (!r->loops)
        return 0;
    log_warn("relay: next hop %s greets with my own name %s: mail to it would loop back to me "
             "(check next_hop and the domain's MX records, or give this host another [rules] hostname)",
             r->peer, smtpd_hostname);
    smtp_relay_next_hop(r, "451 4.4.6 Next hop loops back to myself");
    return 1;
}

/* relay_answer_pump - answer the head request, then send what may go next */
static void relay_answer_pump(SMTP_RELAY *r, int code, const char *text)
{
    if (smtp_relay_answer_head(r, code, text))
        smtp_relay_pump(r);
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
        smtp_relay_arm(r, var_smtpd_relay_timeout_ms);
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
            smtp_relay_next_hop(r, "451 4.4.1 Next hop refused to talk to me: %.200s", quoted);
            return;
        }
        r->loops = 0;
        smtp_relay_send(r, ST_EHLO, "EHLO %s", smtpd_hostname);
        return;
    case ST_EHLO:
    case ST_EHLO2:
        if (cls == 2 && relay_loops(r))
            return;
        if (cls == 2) {
            smtp_relay_hop_session(r);
            return;
        }
        if (cls == 5 && st == ST_EHLO) {
            r->ext = r->xf_attrs = 0;
            smtp_relay_send(r, ST_HELO, "HELO %s", smtpd_hostname);
            return;
        }
        smtp_relay_next_hop(r, "451 4.4.1 Next hop said to EHLO: %.200s", quoted);
        return;
    case ST_HELO:
        if (cls == 2 && relay_loops(r))
            return;
        if (cls == 2) {
            smtp_relay_hop_session(r);
            return;
        }
        smtp_relay_next_hop(r, "451 4.4.1 Next hop said to HELO: %.200s", quoted);
        return;
    case ST_STARTTLS:
        if (code == 220) {
            smtp_relay_hop_starttls(r);
            return;
        }
        SSL_free(r->ssl);
        r->ssl = NULL;
        if (strcmp(smtp_relay_hop_tls_mode(r), "may") == 0) {
            /* Opportunistic: go on in the clear, as Postfix's smtp_tls_security_level=may. */
            r->tls_done = 1;
            smtp_relay_hop_session(r);
            return;
        }
        smtp_relay_next_hop(r, "451 4.7.5 Next hop refused STARTTLS: %.200s", quoted);
        return;
    case ST_XFORWARD:
        if (code == 421) {
            smtp_relay_next_hop(r, "451 4.4.1 Next hop said to XFORWARD: %.200s", quoted);
            return;
        }
        /* A refused XFORWARD loses the original client's name in the hop's logs, not mail. */
        if (cls != 2)
            log_warn("relay: %s refused XFORWARD: %s", r->peer, quoted);
        /* Pipelined, the rest is on its way already (xforward_todo is gone). */
        if (r->xforward_todo)
            smtp_relay_hop_xforward_next(r);
        return;
    case ST_MAIL:
        if (cls == 3) {
            /* No 3xx answers MAIL: never hand it to the client as the verdict. */
            smtp_relay_next_hop(r, "451 4.4.1 Next hop: protocol error");
            return;
        }
        if (cls == 4 && code != 421 && r->hop + 1 >= r->nhops) {
            /* The last hop's own temporary refusal is the most useful answer. */
            smtp_relay_next_hop(r, "%s", quoted);
            return;
        }
        if (cls == 4) {
            smtp_relay_next_hop(r, "451 4.4.1 Next hop said to MAIL: %.200s", quoted);
            return;
        }
        if (cls != 2) {
            r->state = ST_FAILED;
            snprintf(r->fail_text, sizeof(r->fail_text), "503 5.5.1 Error: sender was refused");
            smtp_relay_quit_bev(r);
            if (smtp_relay_answer_head(r, code, quoted))
                smtp_relay_flush_failed(r);
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
        smtp_relay_hop_session(r);
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

/* smtp_relay_read_cb - read reply lines; act on each complete reply */
void smtp_relay_read_cb(struct bufferevent *bev, void *arg)
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
                smtp_relay_next_hop(r, "451 4.4.1 Next hop: protocol error");
            else
                relay_lost(r, "protocol error");
            break;
        }
        code = atoi(line);
        sep = len > 3 ? line[3] : ' ';
        if ((r->rlines > 0 && code != r->rcode) || ++r->rlines > RELAY_REPLY_LINES) {
            free(line);
            if (r->state <= ST_MAIL)
                smtp_relay_next_hop(r, "451 4.4.1 Next hop: malformed reply");
            else
                relay_lost(r, "malformed reply");
            break;
        }
        r->rcode = code;
        if ((r->state == ST_EHLO || r->state == ST_EHLO2 || r->state == ST_HELO) && r->rlines == 1
            && code / 100 == 2)
            relay_greets_as_us(r, line, len);
        if ((r->state == ST_EHLO || r->state == ST_EHLO2) && r->rlines > 1 && len > 4)
            smtp_relay_hop_ehlo_line(r, line + 4);
        if (sep == ' ') {
            r->rlines = 0;
            relay_reply(r, code, line);
        }
        free(line);
    }
    if (!r->zombie && r->bev == bev && r->state != ST_FAILED && r->stray) {
        if (r->state <= ST_MAIL)
            smtp_relay_next_hop(r, "451 4.4.1 Next hop: protocol error (a reply no command asked for)");
        else
            relay_lost(r, "a reply no command asked for");
    } else if (!r->zombie && r->bev == bev && evbuffer_get_length(in) > RELAY_LINE_MAX) {
        if (r->state <= ST_MAIL)
            smtp_relay_next_hop(r, "451 4.4.1 Next hop: reply line too long");
        else
            relay_lost(r, "reply line too long");
    }
    smtp_relay_flush(r);
    if (--r->busy == 0 && r->zombie)
        smtp_relay_free(r);
}

/* smtp_relay_write_cb - the output buffer drained: tell a waiting session */
void smtp_relay_write_cb(struct bufferevent *bev, void *arg)
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
    smtp_relay_flush(r);
    if (--r->busy == 0 && r->zombie)
        smtp_relay_free(r);
}

/* smtp_relay_event_cb - connected, TLS up, EOF, error or write timeout */
void smtp_relay_event_cb(struct bufferevent *bev, short what, void *arg)
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
            smtp_relay_hop_peer_set(r);
            r->connected = 1;
            r->state = ST_BANNER;
            r->inflight = 1;
            smtp_relay_arm(r, var_smtpd_relay_timeout_ms);
        } else if (r->state == ST_HANDSHAKE) {
            smtp_relay_hop_tls_done(r);
        }
    } else if (r->state == ST_HANDSHAKE) {
        SSL *ssl = bufferevent_openssl_get_ssl(r->bev);
        long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;

        if (vr != X509_V_OK)
            snprintf(why, sizeof(why), "certificate verification failed: %s",
                     X509_verify_cert_error_string(vr));
        else
            snprintf(why, sizeof(why), "TLS handshake failed");
        if (strcmp(smtp_relay_hop_tls_mode(r), "may") == 0 && !r->tls_skip) {
            /* Opportunistic TLS must not stop mail: the same hop again, in the clear. */
            log_warn("relay: %s: %s; trying again without TLS", r->peer, why);
            smtp_relay_drop_bev(r);
            r->tls_skip = 1;
            smtp_relay_hop_try(r);
        } else
            smtp_relay_next_hop(r, "451 4.7.5 Next hop: %s", why);
    } else if (r->state == ST_CONNECT) {
        int dnserr = bufferevent_socket_get_dns_error(bev);

        snprintf(why, sizeof(why), "%s", dnserr ? evutil_gai_strerror(dnserr)
                 : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        log_warn("connect to %s: %s", r->peer, why);
        smtp_relay_next_hop(r, "451 4.4.1 Next hop not reachable: %s", why);
    } else if (r->state <= ST_MAIL) {
        snprintf(why, sizeof(why), "%s", (what & BEV_EVENT_EOF) ? "lost connection"
                 : (what & BEV_EVENT_TIMEOUT) ? "timeout" : "connection error");
        smtp_relay_next_hop(r, "451 4.4.1 Next hop: %s", why);
    } else if (r->state != ST_FAILED) {
        snprintf(why, sizeof(why), "%s", (what & BEV_EVENT_EOF) ? "connection closed"
                 : (what & BEV_EVENT_TIMEOUT) ? "timeout while sending" : "connection error");
        relay_lost(r, why);
    }
    smtp_relay_flush(r);
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
        smtp_relay_next_hop(r, "451 4.4.1 Next hop not reachable: connection timed out");
    } else if (r->state <= ST_MAIL) {
        smtp_relay_next_hop(r, "451 4.4.1 Next hop: timeout waiting for a reply");
    } else if (r->state != ST_FAILED) {
        relay_lost(r, "timeout waiting for a reply");
    }
    smtp_relay_flush(r);
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
        r->hop = r->nhops > 0 ? r->nhops - 1 : 0;   /* smtp_relay_next_hop goes past the last one */
        smtp_relay_next_hop(r, "451 4.4.1 Next hop: no answer in time");
    }
    smtp_relay_flush(r);
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
 * smtp_relay_pump - send what may go now: RCPTs, also behind others in flight
 * when the hop pipelines; DATA and the dot only with nothing in flight.
 */
void smtp_relay_pump(SMTP_RELAY *r)
{
    RELAY_REQ *q;

    while (!r->zombie && r->reqs != NULL) {
        if (r->state == ST_FAILED) {
            smtp_relay_flush_failed(r);
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
            if (!smtp_relay_answer_head(r, 555, "555 5.6.7 SMTPUTF8 is required, but was not offered by the next hop"))
                return;
            continue;
        }
        if (q->kind == REQ_RCPT && relay_can_pipe(r)) {
            char params[1024];

            relay_rcpt_params(r, q->params, params, sizeof(params));
            smtp_relay_send(r, ST_RCPT, "RCPT TO:%s%s", q->arg, params);
            q->sent = 1;
            continue;
        }
        if (r->inflight > 0 || (r->state != ST_READY && r->state != ST_BODY && r->state != ST_DONE))
            return;             /* busy, or not yet open */
        /* Nothing in flight: q is the first request. */
        if (q->kind == REQ_DATA && r->state == ST_READY) {
            r->data_refused[0] = 0;
            smtp_relay_send(r, ST_DATA, "DATA");
            q->sent = 1;
            return;
        }
        if (q->kind == REQ_DOT && r->state == ST_BODY) {
            smtp_relay_send(r, ST_DOT, ".");
            q->sent = 1;
            return;
        }
        if (q->kind == REQ_DOT && r->data_refused[0]) {
            if (!smtp_relay_answer_head(r, atoi(r->data_refused), r->data_refused))
                return;
            continue;
        }
        if (!smtp_relay_answer_head(r, 503, "503 5.5.1 Error: bad sequence of commands to the relay"))
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
        smtp_relay_hop_try(r);
    } else if (r->state == ST_FAILED)
        smtp_relay_flush_failed(r);
    else {
        smtp_relay_pump(r);
        if (!r->zombie && r->bev)
            relay_bev_flush(r->bev);
        if (!r->zombie && r->drain_cb && smtp_relay_backlog(r) == 0)
            smtp_relay_write_cb(r->bev, r);
    }
    smtp_relay_flush(r);
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
    r->nhops = smtp_relay_hop_parse(env->nexthops, &r->hops);
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
    smtp_relay_send(r, ST_RSET, "RSET");
    return 0;
}

/* smtp_relay_close - free without the QUIT: the connection closes at once */
void smtp_relay_close(SMTP_RELAY *r)
{
    if (r != NULL && !r->busy)
        smtp_relay_drop_bev(r);
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
        smtp_relay_quit_bev(r);
    else
        smtp_relay_drop_bev(r);
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
