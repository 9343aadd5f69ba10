/*
 * smtp_session.c - one SMTP session of rcptgate-smtpd: the connection
 *
 * SYNOPSIS
 *   smtp_session_init(dns);
 *   smtp_session_create(fd, sa, salen, submission);
 *
 * DESCRIPTION
 *   A session is a bufferevent on the client's socket (wrapped in an
 *   OpenSSL filter after STARTTLS) and a small struct: strings are
 *   allocated as the client gives them and nothing per-session is sized
 *   for the worst case, so an idle session costs about what libevent
 *   keeps for a socket plus the SMTPD_CLIENT (about 2.5 KiB in all).
 *
 *   This file owns the connection: accepting it (limits, anvil), the
 *   greeting (greet_pause, pregreet), reading command lines (length
 *   limit, bare CR/LF, NUL), replies and their delays, timeouts, the
 *   message byte stream, and closing. What each command does is in
 *   smtp_command.c.
 *
 *   Input is handled one command line at a time. While the session waits
 *   for something (DNS answers, a downstream reply, a tarpit delay, the
 *   TLS handshake) reading stops and pipelined commands stay buffered;
 *   they are taken up again, in order, when the wait ends. Every callback
 *   comes from the event loop, and the session is freed only from its
 *   own event callbacks, never in the middle of handling a command.
 *
 *   The message is relayed as it arrives (smtp_relay.c): only
 *   <CR><LF>.<CR><LF> ends it; a bare CR or LF is refused (521,
 *   bare_newline = reject) or turned into CRLF for both the end-of-data
 *   test and the bytes sent on (normalize). Whatever goes wrong before
 *   the final reply (size, timeout, the client leaving) drops the
 *   downstream session without a final dot.
 *
 * DIAGNOSTICS
 *   Postfix's smtpd log lines through smtpd_log.c.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>

#include "addr.h"
#include "log.h"
#include "xalloc.h"
#include "smtpd.h"
#include "params_smtpd.h"
#include "smtpd_check.h"
#include "smtpd_dns.h"
#include "smtpd_anvil.h"
#include "smtpd_log.h"
#include "smtp_auth.h"
#include "smtp_proto.h"
#include "smtp_relay.h"
#include "smtp_session.h"
#include "smtp_session_int.h"
#include "smtp_tls.h"
#include "smtpd_qmgr.h"
#include "spool.h"

SMTP_SESSION_STATS smtp_session_stats;

SMTPD_DNS *smtp_session_dns;
static SMTP_SESSION *smtp_session_list;
static int smtp_session_n;
int smtp_session_stopping;
const struct timeval *smtp_session_cmd_tv;
int smtp_session_normalize;
/* message_reject_characters as a byte table, and how many it names (set at init/reload) */
static unsigned char smtp_session_reject[256];
static int smtp_session_nreject;
static char *smtp_session_line;         /* the current command line (one at a time) */
static size_t smtp_session_line_size;
static unsigned smtp_session_qid_seq;

static void smtp_session_input(SMTP_SESSION *s);
static void smtp_session_input_run(SMTP_SESSION *s);

/* ------------------------------------------------------------ helpers */

/* smtp_session_now - the loop's cached clock in milliseconds */
long long smtp_session_now(void)
{
    struct timeval tv;

    if (smtpd_base == NULL || event_base_gettimeofday_cached(smtpd_base, &tv) < 0)
        gettimeofday(&tv, NULL);
    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* smtp_session_tv - milliseconds as a timeval */
static struct timeval smtp_session_tv(long long ms)
{
    struct timeval tv;

    if (ms < 0)
        ms = 0;
    tv.tv_sec = (time_t) (ms / 1000);
    tv.tv_usec = (suseconds_t) ((ms % 1000) * 1000);
    return tv;
}

/* smtp_session_init - resolver and derived settings */
void smtp_session_init(SMTPD_DNS *dns)
{
    struct timeval tv = smtp_session_tv(var_smtpd_cmd_timeout_ms);

    smtp_session_dns = dns;
    /* Derived once here (start, reload), not compared at every command line. */
    smtp_session_normalize = strcmp(var_smtpd_bare_newline, "normalize") == 0;
    {
        char err[256];

        /* The parameter's check already accepted it; an empty set costs no scan. */
        smtp_session_nreject = params_smtpd_charset(var_smtpd_reject_chars, smtp_session_reject, err, sizeof(err));
    }
    /* A common timeout keeps ten thousand identical idle timers cheap. */
    smtp_session_cmd_tv = event_base_init_common_timeout(smtpd_base, &tv);
    if (smtp_session_cmd_tv == NULL)
        log_fatal("event_base_init_common_timeout failed");
}

/* smtp_session_count - live sessions */
int smtp_session_count(void)
{
    return smtp_session_n;
}

/* smtp_session_proto - "ESMTP", "ESMTPSA", "UTF8SMTPS", ... (Received:, RFC 3848/6531) */
const char *smtp_session_proto(const SMTP_SESSION *s)
{
    static const char *names[2][2][2] = {
        {{"ESMTP", "ESMTPA"}, {"ESMTPS", "ESMTPSA"}},
        {{"UTF8SMTP", "UTF8SMTPA"}, {"UTF8SMTPS", "UTF8SMTPSA"}},
    };

    if (!s->c.esmtp)
        return "SMTP";
    return names[s->smtputf8 != 0][s->c.tls != 0][s->c.sasl_user != NULL];
}

/* smtp_session_last - what the client did last, for "lost connection after X" */
const char *smtp_session_last(const SMTP_SESSION *s, char *buf, size_t size)
{
    const char *name;

    if (s->phase == PH_DATA) {
        snprintf(buf, size, "DATA (%lld bytes)", s->data_bytes);
        return buf;
    }
    if (s->phase == PH_GREET || s->counts[s->cur_cmd][1] == 0)
        return "CONNECT";
    name = s->phase == PH_AUTH ? "auth" : smtp_proto_cmd_name(s->cur_cmd);
    smtp_proto_upper(buf, size, name, strlen(name));
    if (s->phase == PH_CMD && s->cur_cmd == SMTP_CMD_UNKNOWN)
        snprintf(buf, size, "UNKNOWN");
    return buf;
}

/* smtp_session_qid - a queue id for a transaction's log lines (hex, like Postfix's) */
char *smtp_session_qid(void)
{
    char buf[SPOOL_ID_LEN];
    struct timeval tv;

    /* With a spool, the id a message may be queued under: one id in every log line and reply. */
    if (smtpd_spool != NULL) {
        spool_id_new(buf);
        return xstrdup(buf);
    }
    gettimeofday(&tv, NULL);
    snprintf(buf, sizeof(buf), "%05X%05X%X", (unsigned) (tv.tv_sec & 0xfffff),
             (unsigned) (tv.tv_usec & 0xfffff), ++smtp_session_qid_seq & 0xf);
    return xstrdup(buf);
}

/* smtp_session_escape - the first line of what the client sent, for a log line */
void smtp_session_escape(struct evbuffer *in, char *out, size_t size)
{
    size_t len = evbuffer_get_length(in);
    size_t n = 0;
    unsigned char *p;

    if (len > 100)
        len = 100;
    p = evbuffer_pullup(in, (ev_ssize_t) len);
    for (size_t i = 0; i < len && n + 5 < size; i++) {
        if (p[i] == '\r') {
            out[n++] = '\\';
            out[n++] = 'r';
        } else if (p[i] == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
            break;
        } else {
            out[n++] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char) p[i] : '?';
        }
    }
    out[n] = 0;
}

/* ------------------------------------------------------------ replies */

/* smtp_session_send - put one reply line on the wire as it is */
void smtp_session_send(SMTP_SESSION *s, const char *text)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);

    evbuffer_add(out, text, strlen(text));
    evbuffer_add(out, "\r\n", 2);
}

/*
 * smtp_session_flush - replies queued so far straight onto the socket.
 * A plain session keeps EV_WRITE off while the kernel takes each batch of
 * replies whole, so no write event is added and deleted (two epoll_ctl
 * calls and a loop pass) per reply. Only what the socket would not take
 * turns EV_WRITE on: libevent then sends the rest under the write
 * timeout, as before, and reports a write error the usual way. Called
 * once the input at hand has been handled, so pipelined commands still
 * get their replies in one write. Under TLS the filter does the writing.
 */
static void smtp_session_flush(SMTP_SESSION *s)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);

    if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(s->bev) & EV_WRITE)
        || bufferevent_get_underlying(s->bev) != NULL)
        return;
    /*
     * libevent keeps the front of a socket bufferevent's output frozen
     * except while it writes itself; we do the same. An error (EPIPE,
     * ECONNRESET) leaves the data queued: libevent meets it again and
     * reports it.
     */
    evbuffer_unfreeze(out, 1);
    (void) evbuffer_write(out, bufferevent_getfd(s->bev));
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(s->bev, EV_WRITE);
}

/* smtp_session_count_reply - per-command success and the error counter */
void smtp_session_count_reply(SMTP_SESSION *s, const char *text)
{
    if (text[0] == '2')
        SMTP_COUNT_UP(s->counts[s->cur_cmd][0]);
    else if (text[0] == '4' || text[0] == '5')
        s->errors++;
}

/* smtp_session_timer_arm - (re)arm the session's one timer */
void smtp_session_timer_arm(SMTP_SESSION *s, long long ms)
{
    struct timeval tv = smtp_session_tv(ms);

    event_del(&s->timer);
    event_add(&s->timer, &tv);
}

/* smtp_session_pause - stop reading while the session waits for w */
void smtp_session_pause(SMTP_SESSION *s, int w)
{
    s->wait = (unsigned char) w;
    bufferevent_disable(s->bev, EV_READ);
}

/*
 * smtp_session_reply_delay - send text after ms (0: now). Reading stops
 * meanwhile; pipelined commands wait their turn.
 */
void smtp_session_reply_delay(SMTP_SESSION *s, long long ms, const char *text)
{
    smtp_session_count_reply(s, text);
    if (ms <= 0) {
        smtp_session_send(s, text);
        return;
    }
    free(s->delayed);
    s->delayed = xstrdup(text);
    smtp_session_pause(s, W_DELAY);
    smtp_session_timer_arm(s, ms);
}

/*
 * smtp_session_reply - one reply; past soft_error_limit a 4xx/5xx is
 * delayed by error_sleep_time, as Postfix does.
 */
void smtp_session_reply(SMTP_SESSION *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    long long ms = 0;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if ((buf[0] == '4' || buf[0] == '5') && s->errors >= var_smtpd_soft_errors)
        ms = var_smtpd_error_sleep_ms;
    smtp_session_reply_delay(s, ms, buf);
}

/* smtp_session_goodbye - a last reply, then close once it is sent */
void smtp_session_goodbye(SMTP_SESSION *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (buf[0] == '2')
        SMTP_COUNT_UP(s->counts[s->cur_cmd][0]);
    smtp_session_send(s, buf);
    smtp_session_close(s);
}

/* ------------------------------------------------------------ life cycle */

/* smtp_session_free - the end: log, release everything */
static void smtp_session_free(SMTP_SESSION *s)
{
    char buf[512];
    size_t n;
    unsigned ok = 0, total = 0;
    static const int order[] = {
        SMTP_CMD_HELO, SMTP_CMD_EHLO, SMTP_CMD_STARTTLS, SMTP_CMD_AUTH, SMTP_CMD_MAIL,
        SMTP_CMD_RCPT, SMTP_CMD_DATA, SMTP_CMD_RSET, SMTP_CMD_NOOP, SMTP_CMD_VRFY,
        SMTP_CMD_HELP, SMTP_CMD_QUIT, SMTP_CMD_UNKNOWN,
    };

    /* "disconnect from name[addr] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4" */
    if (s->connect_logged) {
        n = (size_t) snprintf(buf, sizeof(buf), "disconnect from %s[%s]", s->c.name, s->c.addr);
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]) && n < sizeof(buf); i++) {
            unsigned o = s->counts[order[i]][0], t = s->counts[order[i]][1];

            if (t == 0)
                continue;
            ok += o;
            total += t;
            if (o == t)
                n += (size_t) snprintf(buf + n, sizeof(buf) - n, " %s=%u", smtp_proto_cmd_name(order[i]), t);
            else
                n += (size_t) snprintf(buf + n, sizeof(buf) - n, " %s=%u/%u",
                                       smtp_proto_cmd_name(order[i]), o, t);
        }
        if (n < sizeof(buf)) {
            if (ok == total)
                snprintf(buf + n, sizeof(buf) - n, " commands=%u", total);
            else
                snprintf(buf + n, sizeof(buf) - n, " commands=%u/%u", ok, total);
        }
        smtpd_log_printf("%s", buf);
    }
    smtp_session_reset(s);
    smtpd_dns_cancel(smtp_session_dns, &s->c);
    if (s->anvil_counted)
        smtpd_anvil_disconnect(s->c.addr);
    smtp_auth_free(s->auth);
    event_del(&s->timer);
    if (s->bev) {
        evutil_socket_t fd = bufferevent_getfd(s->bev);

        /*
         * Unread input at close() makes the kernel send RST, and the
         * client may then lose our last reply: read what is there first.
         */
        if (fd >= 0) {
            char junk[4096];

            for (int i = 0; i < 64 && recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; i++)
                 /* void */ ;
        }
        bufferevent_free(s->bev);
    }
    if (s->prev)
        s->prev->next = s->next;
    else
        smtp_session_list = s->next;
    if (s->next)
        s->next->prev = s->prev;
    smtp_session_n--;
    free(s->c.helo);
    free(s->c.sasl_user);
    free(s->c.sasl_method);
    free(s->auth_mech);
    free(s->delayed);
    free(s->connect_reject);
    free(s);
}

/*
 * smtp_session_flushed - has the last reply left? Over TLS it must also
 * have left the socket bufferevent under the TLS filter.
 */
static int smtp_session_flushed(SMTP_SESSION *s)
{
    struct bufferevent *under = bufferevent_get_underlying(s->bev);

    return evbuffer_get_length(bufferevent_get_output(s->bev)) == 0
        && (under == NULL || evbuffer_get_length(bufferevent_get_output(under)) == 0);
}

/* smtp_session_close - stop reading; free once the last reply has left */
void smtp_session_close(SMTP_SESSION *s)
{
    struct timeval tv = smtp_session_tv(SMTP_CLOSE_WAIT_MS);

    if (s->phase == PH_CLOSING)
        return;
    s->phase = PH_CLOSING;
    s->wait = W_NONE;
    if (s->relay) {
        /* Whatever was under way downstream ends without a final dot. */
        smtp_relay_free(s->relay);
        s->relay = NULL;
    }
    bufferevent_disable(s->bev, EV_READ);
    bufferevent_set_timeouts(s->bev, NULL, &tv);
    s->closing_now = 1;
    s->close_ms = smtp_session_now();
    event_del(&s->timer);
    smtp_session_flush(s);
    if (smtp_session_flushed(s))
        event_active(&s->timer, EV_TIMEOUT, 0);
    else
        bufferevent_enable(s->bev, EV_WRITE);
}

/* smtp_session_reset - end the transaction (RSET, HELO, after the final reply) */
void smtp_session_reset(SMTP_SESSION *s)
{
    SMTP_RCPT *r, *next;

    if (s->relay) {
        smtp_relay_free(s->relay);
        s->relay = NULL;
    }
    /* Committed before a dot whose reply never came: the queue manager has it now. */
    if (s->spool_committed && s->c.queue_id)
        smtpd_qmgr_session_release(s->c.queue_id);
    /* Never acknowledged: the client still has the message. */
    spool_abort(s->spool_f);
    s->spool_f = NULL;
    for (r = s->rcpts; r; r = next) {
        next = r->next;
        free(r->orcpt);
        free(r->why);
        free(r);
    }
    s->rcpts = NULL;
    free(s->c.sender);
    s->c.sender = NULL;
    free(s->c.queue_id);
    s->c.queue_id = NULL;
    s->c.rcpt_count = 0;
    s->env_bytes = 0;
    free(s->nexthop);
    s->nexthop = NULL;
    free(s->mail_params);
    s->mail_params = NULL;
    free(s->cur_rcpt);
    s->cur_rcpt = NULL;
    free(s->cur_rcpt_params);
    s->cur_rcpt_params = NULL;
    free(s->cur_orcpt);
    s->cur_orcpt = NULL;
    free(s->cur_why);
    s->cur_why = NULL;
    free(s->envid);
    s->envid = NULL;
    free(s->defer_reason);
    s->defer_reason = NULL;
    s->ret = 0;
    s->mail_size = -1;
    s->smtputf8 = 0;
    s->d_over = s->d_failed = s->d_rejected = s->d_hops = 0;
    s->mode = SMTP_MODE_NONE;
    s->relay_down = s->spool_failed = s->spool_committed = 0;
    s->spool_next = 0;
}

/* smtp_session_resume - the wait is over: read again, take up buffered commands */
void smtp_session_resume(SMTP_SESSION *s)
{
    /* Still waiting (a delayed reply was just queued): the wait's own end resumes. */
    if (s->phase == PH_CLOSING || s->wait != W_NONE) {
        if (s->phase != PH_CLOSING)
            smtp_session_flush(s);
        return;
    }
    bufferevent_enable(s->bev, EV_READ);
    smtp_session_input(s);
}

/* smtp_session_protocol_error - log and count a protocol violation */
void smtp_session_protocol_error(void)
{
    smtp_session_stats.protocol_errors++;
}

/* smtp_session_timeout - "421 4.4.2 host Error: timeout exceeded" */
static void smtp_session_timeout(SMTP_SESSION *s)
{
    char last[64];

    smtp_session_stats.timeouts++;
    smtpd_log_printf("timeout after %s from %s[%s]", smtp_session_last(s, last, sizeof(last)),
                     s->c.name, s->c.addr);
    smtp_session_goodbye(s, "421 4.4.2 %s Error: timeout exceeded", smtpd_hostname);
}

/*
 * smtp_session_deadline - session_timeout for a client that goes quiet:
 * once less than command_timeout is left, the read timeout is what is
 * left (recomputed on every input, as each read restarts that timer), so
 * the session ends on time and not command_timeout later.
 */
static void smtp_session_deadline(SMTP_SESSION *s)
{
    long long left = s->start_ms + var_smtpd_session_timeout_ms - smtp_session_now();
    struct timeval tv;

    if (left >= var_smtpd_cmd_timeout_ms || s->phase == PH_CLOSING)
        return;
    tv = smtp_session_tv(left > 0 ? left : 1);
    bufferevent_set_timeouts(s->bev, &tv, smtp_session_cmd_tv);
}

/* ------------------------------------------------------------ greeting */

/* smtp_session_banner - 220, unless the client talked first */
static void smtp_session_banner(SMTP_SESSION *s)
{
    if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0 && !s->pregreet) {
        /* Spoke before we did: read it now as a pregreet. */
        smtp_session_input(s);
        if (s->phase != PH_GREET)
            return;
    }
    s->phase = PH_CMD;
    s->wait = W_NONE;
    evbuffer_add_printf(bufferevent_get_output(s->bev), "220 %s %s\r\n", smtpd_hostname, var_smtpd_banner);
    smtp_session_resume(s);
}

/* smtp_session_greet_dns - the client's name is known: log, connect checks, greet */
static void smtp_session_greet_dns(void *arg)
{
    SMTP_SESSION *s = arg;
    SMTPD_REPLY r;
    long long left;

    if (s->phase != PH_GREET)
        return;
    smtpd_log_printf("connect from %s[%s]", s->c.name, s->c.addr);
    s->connect_logged = 1;
    memset(&r, 0, sizeof(r));
    if (smtpd_check_connect(&s->c, &r) != 0 && r.code >= 400) {
        /* As Postfix with delayed rejects: refused at every command after the banner. */
        s->connect_reject = xstrdup(r.text);
    }
    left = s->start_ms + var_smtpd_greet_pause_ms - smtp_session_now();
    if (left > 0 && !s->pregreet) {
        s->wait = W_GREET;
        smtp_session_timer_arm(s, left);
        return;
    }
    smtp_session_banner(s);
}

/* smtp_session_pregreet - the client talked before the banner */
static void smtp_session_pregreet(SMTP_SESSION *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    char text[256];
    int mode = smtpd_mode(var_smtpd_pregreet);

    s->pregreet = 1;
    bufferevent_disable(s->bev, EV_READ);
    if (mode == SMTPD_OFF)
        return;
    smtp_session_protocol_error();
    smtp_session_escape(in, text, sizeof(text));
    /* One line per event (fail2ban counts lines): smtpd's, not postscreen's PREGREET. */
    smtpd_log_printf("improper command pipelining after CONNECT from %s[%s]: %s",
                     s->c.name, s->c.addr, text);
    if (mode == SMTPD_ENFORCE) {
        if (!s->connect_logged) {
            smtpd_log_printf("connect from %s[%s]", s->c.name, s->c.addr);
            s->connect_logged = 1;
        }
        smtp_session_goodbye(s, "554 5.5.0 Error: SMTP protocol synchronization");
    }
}

/* ------------------------------------------------------------ commands */

/* smtp_session_drained - the downstream caught up: read the client again */
static void smtp_session_drained(void *arg)
{
    SMTP_SESSION *s = arg;

    if (s->wait == W_DRAIN) {
        s->wait = W_NONE;
        smtp_session_resume(s);
    }
}

/* smtp_session_bare - "521 5.5.2 host Error: bare <LF> received" and disconnect */
static void smtp_session_bare(SMTP_SESSION *s, const char *what)
{
    char last[64];

    smtp_session_protocol_error();
    smtpd_log_printf("warning: bare <%s> received after %s from %s[%s]", what,
                     smtp_session_last(s, last, sizeof(last)), s->c.name, s->c.addr);
    smtp_session_goodbye(s, "521 5.5.2 %s Error: bare <%s> received", smtpd_hostname, what);
}

/* smtp_session_rejected - does buf hold a byte of message_reject_characters? */
static int smtp_session_rejected(const char *buf, size_t n)
{
    if (smtp_session_nreject == 1 && smtp_session_reject[0])
        return memchr(buf, 0, n) != NULL;     /* the default, NUL alone: memchr's speed */
    for (size_t i = 0; i < n; i++)
        if (smtp_session_reject[(unsigned char) buf[i]])
            return 1;
    return 0;
}

/* smtp_session_discard - the rest of the message goes nowhere: flag why, drop the downstream (no dot) */
static void smtp_session_discard(SMTP_SESSION *s, unsigned char *why)
{
    *why = 1;
    smtp_relay_free(s->relay);
    s->relay = NULL;
}

/* smtp_session_data_out - n bytes of message for downstream, unless it is discarded */
static void smtp_session_data_out(SMTP_SESSION *s, const char *buf, size_t n)
{
    s->data_bytes += (long long) n;
    /* Too big: the downstream gets nothing more, and no final dot. */
    if (s->data_bytes > var_smtpd_size_limit && !s->d_over)
        smtp_session_discard(s, &s->d_over);
    /* A forbidden byte (NUL by default): the same, and 550 at the dot. */
    if (smtp_session_nreject > 0 && !s->d_rejected && !s->d_over && smtp_session_rejected(buf, n))
        smtp_session_discard(s, &s->d_rejected);
    /*
     * A mail loop: as Postfix, our own Received: field counts (it went
     * down first), and hopcount_limit of them stop the message, before
     * the next hop gets one more copy to send round again.
     */
    if (var_smtpd_hopcount_limit > 0 && !s->d_hops && !s->d_over && !s->d_rejected
        && smtp_proto_hops_scan(&s->hops, buf, n) + (var_smtpd_received != 0) >= var_smtpd_hopcount_limit)
        smtp_session_discard(s, &s->d_hops);
    if (n > 0 && !s->d_over && !s->d_rejected && !s->d_hops)
        smtp_session_data_put(s, buf, n);
}

/*
 * smtp_session_data_put - the same bytes, in wire format, to the next hop
 * and to the spool file. In proxy-then-queue a next hop that fails here
 * is dropped and the spool alone goes on (the dot then commits it); a
 * spool that fails is remembered so that no 250 rests on it.
 */
void smtp_session_data_put(SMTP_SESSION *s, const void *buf, size_t n)
{
    if (s->relay != NULL && !s->d_failed && smtp_relay_write(s->relay, buf, n) < 0) {
        if (s->mode == SMTP_MODE_PTQ && s->spool_f != NULL && !s->spool_failed) {
            smtpd_log_printf("%s: next hop %s failed during DATA: the message goes to the queue",
                             s->c.queue_id ? s->c.queue_id : "NOQUEUE", smtp_relay_peer(s->relay));
            smtp_relay_free(s->relay);
            s->relay = NULL;
            s->relay_down = 1;
            if (s->defer_reason == NULL)
                s->defer_reason = xstrdup("lost connection with the next hop during DATA");
        } else {
            s->d_failed = 1;
        }
    }
    if (s->spool_f != NULL && !s->spool_failed && spool_write(s->spool_f, buf, n) < 0) {
        log_warn("%s: queue file write error: %s", s->c.queue_id ? s->c.queue_id : "NOQUEUE", strerror(errno));
        s->spool_failed = 1;
        if (s->relay == NULL && !s->d_failed)
            s->d_failed = 1;            /* nothing left to take it: 451 at the dot */
    }
}

static int smtp_session_data_chunk(SMTP_SESSION *s, struct evbuffer *in, struct evbuffer_iovec *vec,
                                   char *out, size_t outsize);

/*
 * smtp_session_data_input - the message bytes that have arrived, through
 * the scanner (smtp_proto_data_scan) to the downstream. Returns 1 at the
 * end of the message, 0 when more input is needed, -1 when the session
 * is closing (a bare CR or LF).
 */
static int smtp_session_data_input(SMTP_SESSION *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    struct evbuffer_iovec vec[8];
    char out[8192];
    int rc = SMTP_DATA_MORE;

    while (rc != SMTP_DATA_END && evbuffer_get_length(in) > 0)
        if ((rc = smtp_session_data_chunk(s, in, vec, out, sizeof(out))) < 0)
            return -1;
    return rc == SMTP_DATA_END;
}

/* smtp_session_data_chunk - scan what the first iovecs of in hold; rc or -1 */
static int smtp_session_data_chunk(SMTP_SESSION *s, struct evbuffer *in, struct evbuffer_iovec *vec,
                                   char *out, size_t outsize)
{
    size_t taken = 0;
    int nvec = evbuffer_peek(in, -1, NULL, vec, 8);
    int rc = SMTP_DATA_MORE;

    if (nvec > 8)
        nvec = 8;
    for (int v = 0; v < nvec && rc != SMTP_DATA_END; v++) {
        const char *p = vec[v].iov_base;
        size_t len = vec[v].iov_len;

        while (len > 0) {
            size_t used, outlen;

            rc = smtp_proto_data_scan(&s->scan, p, len, &used, out, outsize, &outlen);
            smtp_session_data_out(s, out, outlen);
            p += used;
            len -= used;
            taken += used;
            if (rc == SMTP_DATA_BARE_CR || rc == SMTP_DATA_BARE_LF) {
                evbuffer_drain(in, taken);
                smtp_session_bare(s, rc == SMTP_DATA_BARE_CR ? "CR" : "LF");
                return -1;
            }
            if (rc != SMTP_DATA_FULL)
                break;
        }
    }
    evbuffer_drain(in, taken);
    return rc;
}

/* smtp_session_data_slow - min_data_rate: the data phase may last cmd_timeout + size / rate */
static int smtp_session_data_slow(SMTP_SESSION *s)
{
    long long allowed;

    if (var_smtpd_min_data_rate <= 0)
        return 0;
    allowed = var_smtpd_cmd_timeout_ms + s->data_bytes * 1000 / var_smtpd_min_data_rate;
    return smtp_session_now() - s->data_start_ms > allowed;
}

/*
 * smtp_session_getline - the next command line into smtp_session_line:
 * 1 got one, 0 need more input, -1 handled here (a reply was given or the
 * session is closing).
 */
static int smtp_session_getline(SMTP_SESSION *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t avail = evbuffer_get_length(in);
    size_t limit = s->phase == PH_AUTH ? SMTP_AUTH_LINE_MAX : (size_t) var_smtpd_line_limit;
    int normalize = smtp_session_normalize;
    size_t n, i, end, skip;
    unsigned char *p;

    if (avail == 0)
        return 0;
    if (s->skipping) {
        struct evbuffer_ptr ptr = evbuffer_search(in, "\n", 1, NULL);

        if (ptr.pos < 0) {
            evbuffer_drain(in, avail);
            return 0;
        }
        evbuffer_drain(in, (size_t) ptr.pos + 1);
        s->skipping = 0;
        goto too_long;
    }
    n = avail < limit + 2 ? avail : limit + 2;
    /* One byte more than is scanned: the LF after a CR at the last scanned byte. */
    p = evbuffer_pullup(in, (ev_ssize_t) (n < avail ? n + 1 : n));
    for (i = 0; i < n && p[i] != '\r' && p[i] != '\n'; i++)
         /* void */ ;
    if (i == n) {
        if (avail > limit) {
            /* No end in sight: drop what we have, and the rest of the line as it comes. */
            s->skipping = 1;
            evbuffer_drain(in, n);
            return smtp_session_getline(s);
        }
        return 0;
    }
    end = i;
    if (p[i] == '\n') {
        /* Bare LF. */
        if (s->phase == PH_AUTH) {
            evbuffer_drain(in, i + 1);
            smtp_command_auth_abort(s, "bare <LF> in AUTH response");
            return -1;
        }
        if (!normalize) {
            smtp_session_bare(s, "LF");
            return -1;
        }
        skip = i + 1;
    } else if (i + 1 >= avail) {
        return 0;                       /* CR: is LF next? */
    } else if (p[i + 1] == '\n') {
        skip = i + 2;
    } else {
        /* Bare CR. */
        if (s->phase == PH_AUTH) {
            struct evbuffer_ptr ptr = evbuffer_search(in, "\n", 1, NULL);

            evbuffer_drain(in, ptr.pos < 0 ? avail : (size_t) ptr.pos + 1);
            smtp_command_auth_abort(s, "bare <CR> in AUTH response");
            return -1;
        }
        if (!normalize) {
            smtp_session_bare(s, "CR");
            return -1;
        }
        skip = i + 1;
    }
    if (end > limit) {
        evbuffer_drain(in, skip);
        goto too_long;
    }
    if (smtp_session_line_size < end + 1) {
        smtp_session_line_size = end + 1 < 1024 ? 1024 : end + 1;
        smtp_session_line = xrealloc(smtp_session_line, smtp_session_line_size);
    }
    memcpy(smtp_session_line, p, end);
    smtp_session_line[end] = 0;
    evbuffer_drain(in, skip);
    if (memchr(smtp_session_line, 0, end) != NULL) {
        smtp_session_protocol_error();
        if (s->phase == PH_AUTH)
            smtp_command_auth_abort(s, "NUL in AUTH response");
        else
            smtp_session_reply(s, "500 5.5.2 Error: bad syntax");
        return -1;
    }
    return 1;

  too_long:
    if (s->phase == PH_AUTH) {
        smtp_command_auth_abort(s, "AUTH response line too long");
        return -1;
    }
    s->cur_cmd = SMTP_CMD_UNKNOWN;
    SMTP_COUNT_UP(s->counts[SMTP_CMD_UNKNOWN][1]);
    smtp_session_reply(s, "500 5.5.2 Error: line too long");
    return -1;
}

/* smtp_session_input - handle what the client sent, as far as we may; send the replies */
static void smtp_session_input(SMTP_SESSION *s)
{
    smtp_session_input_run(s);
    /* Closing flushes (and may free) by itself. */
    if (s->phase != PH_CLOSING)
        smtp_session_flush(s);
}

/* smtp_session_input_run - the commands (or message bytes) buffered so far, while no wait stops us */
static void smtp_session_input_run(SMTP_SESSION *s)
{
    long long now = smtp_session_now();

    if (s->phase == PH_CLOSING)
        return;
    if (s->phase == PH_GREET) {
        if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0 && !s->pregreet)
            smtp_session_pregreet(s);
        return;
    }
    if (now - s->start_ms > var_smtpd_session_timeout_ms) {
        smtp_session_timeout(s);
        return;
    }
    smtp_session_deadline(s);
    while (s->wait == W_NONE && s->phase != PH_CLOSING && s->phase != PH_TLS) {
        if (s->phase == PH_DATA) {
            int rc;

            if (smtp_session_data_slow(s)) {
                smtp_session_timeout(s);
                return;
            }
            if ((rc = smtp_session_data_input(s)) < 0)
                return;
            if (rc == 0) {
                if (s->relay && !s->d_failed && smtp_relay_backlog(s->relay) > SMTP_RELAY_HIGH) {
                    smtp_session_pause(s, W_DRAIN);
                    smtp_relay_on_drain(s->relay, smtp_session_drained, s);
                }
                return;
            }
            smtp_command_data_end(s);
            continue;
        }
        switch (smtp_session_getline(s)) {
        case 0:
            return;
        case -1:
            continue;
        default:
            break;
        }
        if (s->phase == PH_AUTH)
            smtp_command_auth_line(s, smtp_session_line);
        else
            smtp_command_run(s, smtp_session_line);
    }
}

/* ------------------------------------------------------------ events */

/* smtp_session_read_cb - bytes from the client */
static void smtp_session_read_cb(struct bufferevent *bev, void *arg)
{
    (void) bev;
    smtp_session_input(arg);
}

/* smtp_session_write_cb - output flushed: a closing session may go */
static void smtp_session_write_cb(struct bufferevent *bev, void *arg)
{
    SMTP_SESSION *s = arg;

    (void) bev;
    /* libevent also calls this for a writable socket with nothing to write. */
    if (s->phase != PH_CLOSING || !s->closing_now) {
        /* The backlog has left: back to writing replies straight out. */
        if (bufferevent_get_underlying(s->bev) == NULL
            && evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
            bufferevent_disable(s->bev, EV_WRITE);
        return;
    }
    if (smtp_session_flushed(s))
        smtp_session_free(s);
    else
        smtp_session_timer_arm(s, 20);  /* TLS: the socket under the filter is still sending */
}

static void smtp_session_event_cb(struct bufferevent *bev, short what, void *arg);

/* smtp_session_setcb - our callbacks on the current bufferevent */
void smtp_session_setcb(SMTP_SESSION *s)
{
    bufferevent_setcb(s->bev, smtp_session_read_cb, smtp_session_write_cb, smtp_session_event_cb, s);
}

/* smtp_session_tls_ready - handshake complete: everything said before is forgotten */
static void smtp_session_tls_ready(SMTP_SESSION *s)
{
    s->c.tls = 1;
    smtp_session_reset(s);
    free(s->c.helo);
    s->c.helo = NULL;
    s->c.esmtp = 0;
    free(s->c.sasl_user);
    s->c.sasl_user = NULL;
    free(s->c.sasl_method);
    s->c.sasl_method = NULL;
    s->phase = PH_CMD;
    s->wait = W_NONE;
    smtp_session_resume(s);
}

/* smtp_session_event_cb - EOF, errors, timeouts, TLS handshake done */
static void smtp_session_event_cb(struct bufferevent *bev, short what, void *arg)
{
    SMTP_SESSION *s = arg;
    char last[64];

    (void) bev;
    if (what & BEV_EVENT_CONNECTED) {
        if (s->phase == PH_TLS)
            smtp_session_tls_ready(s);
        return;
    }
    if (s->phase == PH_CLOSING) {
        smtp_session_free(s);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (what & BEV_EVENT_READING) {
            smtp_session_timeout(s);
            return;
        }
        smtp_session_stats.timeouts++;
    }
    if (s->phase == PH_TLS) {
        unsigned long e = bufferevent_get_openssl_error(s->bev);

        smtpd_log_printf("warning: TLS handshake failed with %s[%s]: %s", s->c.name, s->c.addr,
                         e ? ERR_reason_error_string(e) : "connection closed");
    }
    if (!s->connect_logged) {
        /* Gone before the banner: still a connect and a disconnect, as Postfix logs it. */
        smtpd_log_printf("connect from %s[%s]", s->c.name, s->c.addr);
        s->connect_logged = 1;
    }
    smtpd_log_printf("lost connection after %s from %s[%s]", smtp_session_last(s, last, sizeof(last)),
                     s->c.name, s->c.addr);
    smtp_session_free(s);
}

/* smtp_session_timer_cb - greet pause over, a delayed reply due, or time to free */
static void smtp_session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    SMTP_SESSION *s = arg;

    (void) fd;
    (void) what;
    if (s->phase == PH_CLOSING) {
        if (smtp_session_flushed(s) || smtp_session_now() - s->close_ms > SMTP_CLOSE_WAIT_MS)
            smtp_session_free(s);
        else
            smtp_session_timer_arm(s, 20);
        return;
    }
    if (s->wait == W_GREET) {
        smtp_session_banner(s);
        return;
    }
    if (s->wait == W_DELAY) {
        char *text = s->delayed;

        s->wait = W_NONE;
        s->delayed = NULL;
        if (text) {
            smtp_session_send(s, text);
            free(text);
        }
        smtp_session_resume(s);
    }
}

/* smtp_session_refuse - 421 straight onto the socket, then close it */
static void smtp_session_refuse(evutil_socket_t fd, const char *text)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "421 4.7.0 %s %s\r\n", smtpd_hostname, text);

    smtp_session_stats.connections_refused++;
    if (n > 0 && send(fd, buf, (size_t) n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* The client is gone already: nothing to tell. */
    }
    evutil_closesocket(fd);
}

/* smtp_session_create - a new client */
SMTP_SESSION *smtp_session_create(evutil_socket_t fd, const struct sockaddr *sa, socklen_t salen,
                                  int submission)
{
    SMTP_SESSION *s;
    char addr[SMTPD_ADDR_LEN] = "unknown";
    int port = 0;
    const char *why;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *) sa;

        inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;

        inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
        port = ntohs(in6->sin6_port);
        /* An IPv4 client on a dual-stack socket is logged as IPv4. */
        if (strncmp(addr, "::ffff:", 7) == 0 && strchr(addr + 7, ':') == NULL)
            memmove(addr, addr + 7, strlen(addr + 7) + 1);
    }
    smtp_session_stats.connections_total++;
    if (smtp_session_stopping) {
        smtp_session_refuse(fd, "Service shutting down");
        return NULL;
    }
    if (smtp_session_n >= var_smtpd_maxconn) {
        log_warn("max_connections (%d) reached: refused %s", var_smtpd_maxconn, addr);
        smtp_session_refuse(fd, "Error: too many connections");
        return NULL;
    }
    if ((why = smtpd_anvil_connect(addr)) != NULL) {
        smtpd_log_printf("NOQUEUE: reject: CONNECT from unknown[%s]: 421 4.7.0 %s %s; proto=SMTP",
                         addr, smtpd_hostname, why);
        smtp_session_refuse(fd, why);
        return NULL;
    }
    s = xmalloc(sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->anvil_counted = 1;
    memcpy(&s->c.sa, sa, salen < sizeof(s->c.sa) ? salen : sizeof(s->c.sa));
    s->c.salen = salen;
    memcpy(s->c.addr, addr, sizeof(addr));
    s->c.port = port;
    snprintf(s->c.name, sizeof(s->c.name), "unknown");
    s->c.submission = submission;
    s->c.trusted = smtpd_check_trusted(sa);
    s->start_ms = smtp_session_now();
    s->phase = PH_GREET;
    s->wait = W_DNS;
    s->bev = bufferevent_socket_new(smtpd_base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (s->bev == NULL) {
        log_warn("bufferevent_socket_new failed for %s", addr);
        smtpd_anvil_disconnect(addr);
        evutil_closesocket(fd);
        free(s);
        return NULL;
    }
    event_assign(&s->timer, smtpd_base, -1, 0, smtp_session_timer_cb, s);
    s->next = smtp_session_list;
    if (s->next)
        s->next->prev = s;
    smtp_session_list = s;
    smtp_session_n++;
    smtp_session_setcb(s);
    bufferevent_set_timeouts(s->bev, smtp_session_cmd_tv, smtp_session_cmd_tv);
    smtp_session_deadline(s);
    /*
     * Reading from the start: a client that talks before the banner is a
     * pregreet. Writing is ours (smtp_session_flush) until the socket is
     * full: a new bufferevent has EV_WRITE on, so turn it off.
     */
    bufferevent_disable(s->bev, EV_WRITE);
    bufferevent_enable(s->bev, EV_READ);
    smtpd_dns_client(smtp_session_dns, &s->c);
    smtpd_dns_wait(smtp_session_dns, &s->c, smtp_session_greet_dns, s);
    return s;
}

/* smtp_session_shutdown - SIGTERM: idle sessions now, busy ones later or at the deadline */
void smtp_session_shutdown(int now)
{
    SMTP_SESSION *s, *next;

    smtp_session_stopping = 1;
    for (s = smtp_session_list; s; s = next) {
        next = s->next;
        if (s->phase == PH_CLOSING)
            continue;
        if (now || (s->c.sender == NULL && s->wait == W_NONE && s->phase == PH_CMD)
            || s->phase == PH_GREET) {
            event_del(&s->timer);
            smtp_session_goodbye(s, "421 4.3.2 %s Service shutting down, closing transmission channel",
                                 smtpd_hostname);
        }
    }
}
