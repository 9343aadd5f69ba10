/*
 * smtp_command.c - the SMTP commands of rcptgate-smtpd's sessions
 *
 * SYNOPSIS
 *   smtp_command_run(s, line);
 *   smtp_command_auth_line(s, line);
 *   smtp_command_data_end(s);
 *
 * DESCRIPTION
 *   What each command does, with Postfix's replies: EHLO/HELO, MAIL
 *   (syntax, SIZE, the submission rules), RCPT (DNS answers awaited, the
 *   checks, harvest tarpit, then the downstream's own reply), DATA and
 *   the final dot (the downstream's final reply, never a 250 of our
 *   own), STARTTLS (buffered plaintext discarded, state reset after the
 *   handshake), AUTH (SASL steps, failures delayed per client), and the
 *   small ones. Unauthorised pipelining is detected here, before a
 *   command runs. The connection itself (reading, replies, timers,
 *   closing, the message byte stream) is smtp_session.c's.
 *
 * DIAGNOSTICS
 *   Postfix's smtpd log lines through smtpd_log.c.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/bufferevent_ssl.h>

#include "addr.h"
#include "check.h"
#include "dsn.h"
#include "log.h"
#include "xalloc.h"
#include "params_smtpd.h"
#include "smtpd_check.h"
#include "smtpd_anvil.h"
#include "smtpd_log.h"
#include "smtp_session_int.h"
#include "smtp_tls.h"
#include "smtpd_qmgr.h"
#include "spool.h"

/* smtp_command_ehlo - HELO and EHLO */
static void smtp_command_ehlo(SMTP_SESSION *s, const char *arg, int esmtp)
{
    SMTPD_REPLY r;
    char buf[256];
    char auth[256];
    const char *lines[10];
    int n = 0;

    if (*arg == 0) {
        smtp_session_reply(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        return;
    }
    memset(&r, 0, sizeof(r));
    if (smtpd_check_helo(&s->c, arg, &r) != 0 && r.code >= 400) {
        smtpd_log_reject(&s->c, esmtp ? "EHLO" : "HELO", &r, NULL, 0);
        smtp_session_reply(s, "%s", r.text);
        return;
    }
    smtp_session_reset(s);
    free(s->c.helo);
    s->c.helo = xstrdup(arg);
    /*
     * As Postfix does: what the checks let through (a trusted or
     * authenticated client's HELO is not checked) must still not be able
     * to shape our Received: header, XFORWARD or log lines, so the
     * characters that delimit their fields become '?'. A HELO like
     * "x (by mx.example.com with ESMTPS; date)" forged a clause.
     */
    for (char *p = s->c.helo; *p; p++)
        if (strchr(" <>()\\\";@", *p) != NULL)
            *p = '?';
    s->c.esmtp = esmtp;
    if (!esmtp) {
        smtp_session_reply(s, "250 %s", smtpd_hostname);
        return;
    }
    lines[n++] = "PIPELINING";
    snprintf(buf, sizeof(buf), "SIZE %lld", var_smtpd_size_limit);
    lines[n++] = buf;
    if (!s->c.tls && smtp_tls_server_ok())
        lines[n++] = "STARTTLS";
    if (s->c.submission && s->c.tls && s->c.sasl_user == NULL && *smtp_auth_mechs()) {
        snprintf(auth, sizeof(auth), "AUTH %s", smtp_auth_mechs());
        lines[n++] = auth;
    }
    lines[n++] = "ENHANCEDSTATUSCODES";
    lines[n++] = "8BITMIME";
    /* RFC 3461: kept with the message (queued) and passed on when the next hop offers it */
    lines[n++] = "DSN";
    if (var_smtpd_smtputf8)
        lines[n++] = "SMTPUTF8";
    {
        struct evbuffer *out = bufferevent_get_output(s->bev);

        evbuffer_add_printf(out, "250-%s\r\n", smtpd_hostname);
        for (int i = 0; i < n; i++)
            evbuffer_add_printf(out, "250%c%s\r\n", i + 1 < n ? '-' : ' ', lines[i]);
        SMTP_COUNT_UP(s->counts[s->cur_cmd][0]);
    }
}

/* smtp_command_helo_required - MAIL before HELO/EHLO; 1 if refused */
static int smtp_command_helo_required(SMTP_SESSION *s)
{
    SMTPD_REPLY r;
    int mode;

    if (s->c.helo != NULL || (mode = smtpd_mode(var_smtpd_helo_required)) == SMTPD_OFF)
        return 0;
    memset(&r, 0, sizeof(r));
    smtpd_reply_set(&r, 503, "503 5.5.1 Error: send HELO/EHLO first");
    smtpd_log_reject(&s->c, "MAIL", &r, NULL, mode == SMTPD_WARN);
    if (mode == SMTPD_WARN)
        return 0;
    smtp_session_reply(s, "%s", r.text);
    return 1;
}

/* smtp_command_mail - MAIL FROM */
static void smtp_command_mail(SMTP_SESSION *s, const char *arg)
{
    SMTP_PATH path;
    SMTPD_REPLY r;
    char reply[256];

    if (smtp_command_helo_required(s))
        return;
    if (s->c.sender != NULL) {
        smtp_session_reply(s, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    if (s->c.submission && s->c.sasl_user == NULL) {
        if (!s->c.tls)
            smtp_session_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
        else
            smtp_session_reply(s, "530 5.7.0 Authentication required");
        return;
    }
    if (smtp_proto_mail(arg, &path, reply, sizeof(reply)) != 0) {
        smtp_session_reply(s, "%s", reply);
        return;
    }
    if (path.smtputf8 && !var_smtpd_smtputf8) {
        smtp_session_reply(s, "555 5.5.4 Unsupported option: SMTPUTF8");
        return;
    }
    if (path.size > var_smtpd_size_limit) {
        smtp_session_reply(s, "552 5.3.4 Message size exceeds fixed limit");
        return;
    }
    memset(&r, 0, sizeof(r));
    if (smtpd_check_mail(&s->c, path.addr, &r) != 0 && r.code >= 400) {
        smtpd_log_reject(&s->c, "MAIL", &r, NULL, 0);
        if (r.disconnect) {
            smtp_session_goodbye(s, "%s", r.text);
            return;
        }
        smtp_session_reply(s, "%s", r.text);
        return;
    }
    s->c.sender = xstrdup(path.addr);
    s->mail_params = xstrdup(path.params);
    s->ret = path.ret;
    s->envid = path.envid[0] ? xstrdup(path.envid) : NULL;
    s->mail_size = path.size;
    s->smtputf8 = (unsigned char) path.smtputf8;
    s->mail_ms = smtp_session_now();
    {
        char domain[ADDR_DOMAIN_MAX + 1];
        int have = !path.is_null && *path.domain && *path.domain != '['
            && addr_domain(path.domain, strlen(path.domain), domain) == ADDR_OK;

        /* Always: a sender without a domain to look up must not inherit the last one's answers. */
        smtpd_dns_sender(smtp_session_dns, &s->c, have ? domain : NULL);
    }
    smtp_session_reply(s, "250 2.1.0 Ok");
}

/*
 * smtp_command_overshoot - the 452 4.5.3 just answered asks the client
 * to send the recipient again in a new transaction (recipient_limit, or
 * another next hop or relay mode): not a client error. Counted as one,
 * an MTA that batches 20 recipients of a second inside server got 421
 * before DATA, the accepted recipients lost with the session, at every
 * retry. Postfix counts these apart too (smtpd_recipient_overshoot_limit).
 */
static void smtp_command_overshoot(SMTP_SESSION *s)
{
    if (++s->overshoot <= SMTP_OVERSHOOT_MAX && s->errors > 0)
        s->errors--;
}

/*
 * smtp_command_rcpt_done - the client hears the RCPT reply; log and count
 * it. queued_only: accepted for the spool alone (the next hop did not
 * take it).
 */
static void smtp_command_rcpt_done(SMTP_SESSION *s, int code, const char *reply, int queued_only)
{
    SMTPD_REPLY r;

    if (code / 100 == 2) {
        size_t len = strlen(s->cur_rcpt);
        SMTP_RCPT *rc = xmalloc(sizeof(*rc) + len + 1);
        SMTP_RCPT **tail = &s->rcpts;

        memcpy(rc->addr, s->cur_rcpt, len + 1);
        rc->next = NULL;
        rc->orcpt = s->cur_orcpt;
        s->cur_orcpt = NULL;
        rc->notify = s->cur_notify;
        rc->queued_only = (unsigned char) (queued_only != 0);
        rc->why = s->cur_why;
        s->cur_why = NULL;
        while (*tail)
            tail = &(*tail)->next;
        *tail = rc;
        s->c.rcpt_count++;
        s->env_bytes += spool_rcpt_bytes(rc->addr, rc->orcpt);
        smtp_session_stats.rcpt_ok++;
        if (s->c.queue_id == NULL) {
            /* Like Postfix: the queue id exists from the first accepted recipient. */
            s->c.queue_id = smtp_session_qid();
            if (s->c.sasl_user)
                smtpd_log_printf("%s: client=%s[%s], sasl_method=%s, sasl_username=%s",
                                 s->c.queue_id, s->c.name, s->c.addr,
                                 s->c.sasl_method ? s->c.sasl_method : "", s->c.sasl_user);
            else
                smtpd_log_printf("%s: client=%s[%s]", s->c.queue_id, s->c.name, s->c.addr);
        }
    } else {
        smtp_session_stats.rcpt_rejected++;
        memset(&r, 0, sizeof(r));
        smtpd_reply_set(&r, code, "%s", reply);
        smtpd_log_reject(&s->c, "RCPT", &r, s->cur_rcpt, 0);
    }
    smtp_session_reply(s, "%s", reply);
    free(s->cur_rcpt);
    s->cur_rcpt = NULL;
    free(s->cur_rcpt_params);
    s->cur_rcpt_params = NULL;
    free(s->cur_orcpt);
    s->cur_orcpt = NULL;
    free(s->cur_why);
    s->cur_why = NULL;
}

/* smtp_command_mode_of - a relay_mode value as enum smtp_mode (a bad stored value: the default's) */
static int smtp_command_mode_of(const char *name)
{
    if (name != NULL && strcmp(name, "proxy") == 0)
        return SMTP_MODE_PROXY;
    if (name != NULL && strcmp(name, "queue") == 0)
        return SMTP_MODE_QUEUE;
    if (name != NULL && strcmp(name, "proxy-then-queue") == 0)
        return SMTP_MODE_PTQ;
    return 0;
}

/* smtp_command_relay_lost - proxy-then-queue gives the next hop up for this transaction (why: for the log) */
static void smtp_command_relay_lost(SMTP_SESSION *s, const char *why)
{
    smtp_relay_free(s->relay);
    s->relay = NULL;
    s->relay_down = 1;
    if (s->defer_reason == NULL)
        s->defer_reason = xstrdup(why);
}

/* smtp_command_can_queue - may this transaction put one more recipient in the spool now? */
static int smtp_command_can_queue(void)
{
    char why[128];

    return smtpd_spool != NULL && smtpd_qmgr_accepting(why, sizeof(why)) == 0;
}

/*
 * smtp_command_rcpt_queue - proxy-then-queue: the next hop deferred this
 * recipient (or is down): the client hears 250 and the spool alone will
 * hold it, when the spool can; otherwise the client hears the next
 * hop's own 4xx, as in proxy mode. Invariant: 250 only on the next hop's
 * 250 or a spool commit, so the final dot checks again.
 */
static void smtp_command_rcpt_queue(SMTP_SESSION *s, int code, const char *reply)
{
    if (code / 100 == 4 && smtp_command_can_queue()) {
        char *rcpt = xstrdup(s->cur_rcpt);

        /* logged after the recipient is taken: the transaction's queue id exists from then on */
        free(s->cur_why);
        s->cur_why = xstrdup(reply);
        smtp_command_rcpt_done(s, 250, "250 2.1.5 Ok", 1);
        smtpd_log_printf("%s: to=<%s>: next hop said \"%s\": queued, not relayed", s->c.queue_id, rcpt, reply);
        free(rcpt);
        return;
    }
    smtp_command_rcpt_done(s, code, reply, 0);
}

/* smtp_command_relay_rcpt_cb - the downstream's answer to RCPT */
static void smtp_command_relay_rcpt_cb(void *arg, int code, const char *said)
{
    SMTP_SESSION *s = arg;
    char reply[SMTPD_REPLY_LEN + 8];

    dsn_reply_status(reply, sizeof(reply), said, "2.1.5");

    s->wait = W_NONE;
    if (s->mode == SMTP_MODE_PTQ && code / 100 == 4)
        smtp_command_rcpt_queue(s, code, reply);
    else
        smtp_command_rcpt_done(s, code, reply, 0);
    smtp_session_resume(s);
}

/* smtp_command_relay_mail_cb - the downstream took (or refused) MAIL FROM */
static void smtp_command_relay_mail_cb(void *arg, int code, const char *said)
{
    SMTP_SESSION *s = arg;
    char reply[SMTPD_REPLY_LEN + 8];

    /* A refused MAIL is the answer to the RCPT that opened the transaction. */
    dsn_reply_status(reply, sizeof(reply), said, "2.1.5");

    if (code / 100 != 2) {
        s->wait = W_NONE;
        if (s->mode == SMTP_MODE_PTQ && code / 100 == 4 && smtp_command_can_queue()) {
            /* Down or deferring: the rest of this transaction goes to the spool alone. */
            smtp_command_relay_lost(s, reply);
            smtp_command_rcpt_queue(s, code, reply);
            smtp_session_resume(s);
            return;
        }
        /* No downstream transaction: this recipient hears why; the next one tries again. */
        smtp_relay_free(s->relay);
        s->relay = NULL;
        free(s->nexthop);
        s->nexthop = NULL;
        if (s->c.rcpt_count == 0)
            s->mode = SMTP_MODE_NONE;
        smtp_command_rcpt_done(s, code, reply, 0);
        smtp_session_resume(s);
        return;
    }
    smtp_relay_rcpt(s->relay, s->cur_rcpt, s->cur_rcpt_params, smtp_command_relay_rcpt_cb, s);
}

/* smtp_command_rcpt_check - DNS answers are in: run the checks, then relay */
static void smtp_command_rcpt_check(void *arg)
{
    SMTP_SESSION *s = arg;
    SMTPD_RCPT_INFO info;
    SMTPD_REPLY r;
    int mode;

    if (s->phase == PH_CLOSING || s->wait != W_DNS)
        return;
    s->wait = W_NONE;
    memset(&r, 0, sizeof(r));
    memset(&info, 0, sizeof(info));
    if (smtpd_check_rcpt(&s->c, s->cur_rcpt, &info, &r) != 0 && r.code >= 400) {
        int delay = 0;

        smtp_session_stats.rcpt_rejected++;
        /*
         * A harvester past its limit hears 421, and the log says so too.
         * Clients of mynetworks and authenticated ones are not counted (as
         * Postfix exempts mynetworks from anvil's limits): an inside server
         * relaying its users' typos would block all of the inside's mail.
         */
        if (r.harvest && !s->c.trusted && s->c.sasl_user == NULL
            && (delay = smtpd_anvil_unknown(s->c.addr)) < 0) {
            smtpd_reply_set(&r, 421, "421 4.7.0 %s Error: too many unknown recipients, try again later",
                            smtpd_hostname);
            r.disconnect = 1;
        }
        smtpd_log_reject(&s->c, "RCPT", &r, s->cur_rcpt, 0);
        free(s->cur_rcpt);
        s->cur_rcpt = NULL;
        if (r.disconnect) {
            smtp_session_goodbye(s, "%s", r.text);
            return;
        }
        {
            long long ms = delay;

            if (s->errors >= var_smtpd_soft_errors && var_smtpd_error_sleep_ms > ms)
                ms = var_smtpd_error_sleep_ms;
            smtp_session_reply_delay(s, ms, r.text);
        }
        smtp_session_resume(s);
        return;
    }
    if (info.nexthop[0] == 0) {
        char text[SMTPD_REPLY_LEN];

        /* The checks normally defer these themselves; this is the last line of defence. */
        log_warn("no next hop for the domain of <%s>: set the domain's next hop or [smtpd] default_nexthop",
                 info.address[0] ? info.address : s->cur_rcpt);
        snprintf(text, sizeof(text), "451 4.3.0 <%s>: Temporary lookup failure", s->cur_rcpt);
        smtp_command_rcpt_done(s, 451, text, 0);
        smtp_session_resume(s);
        return;
    }
    /* The domain's own relay mode, else [smtpd] relay_mode. */
    mode = smtp_command_mode_of(info.relay_mode);
    if (mode == 0 && (mode = smtp_command_mode_of(var_smtpd_relay_mode)) == 0)
        mode = SMTP_MODE_PROXY;
    /* No spool to fall back on: proxy-then-queue is a proxy (see RELAY MODES in rcptgate-smtpd(8)). */
    if (mode == SMTP_MODE_PTQ && smtpd_spool == NULL)
        mode = SMTP_MODE_PROXY;
    if ((s->nexthop != NULL && strcmp(s->nexthop, info.nexthop) != 0)
        || (s->mode != SMTP_MODE_NONE && s->mode != mode)) {
        /* Another next hop or relay mode: the client sends it again in a new transaction. */
        smtp_command_rcpt_done(s, 452, "452 4.5.3 Error: too many recipients", 0);
        smtp_command_overshoot(s);
        smtp_session_resume(s);
        return;
    }
    s->mode = (unsigned char) mode;
    if (s->nexthop == NULL)
        s->nexthop = xstrdup(info.nexthop);
    if (mode == SMTP_MODE_QUEUE) {
        char why[SMTPD_REPLY_LEN];

        /* Nothing downstream now: the spool takes it, or the client hears why not. */
        if (smtpd_spool == NULL || smtpd_qmgr_accepting(why, sizeof(why)) != 0) {
            if (smtpd_spool == NULL)
                snprintf(why, sizeof(why), "452 4.3.1 Insufficient system storage");
            if (s->c.rcpt_count == 0) {
                s->mode = SMTP_MODE_NONE;
                free(s->nexthop);
                s->nexthop = NULL;
            }
            smtp_command_rcpt_done(s, atoi(why) > 0 ? atoi(why) : 452, why, 0);
        } else {
            smtp_command_rcpt_done(s, 250, "250 2.1.5 Ok", 1);
        }
        smtp_session_resume(s);
        return;
    }
    if (s->relay_down) {
        /* proxy-then-queue after the next hop failed in this transaction */
        smtp_command_rcpt_queue(s, 451, s->defer_reason ? s->defer_reason : "451 4.4.1 next hop unavailable");
        smtp_session_resume(s);
        return;
    }
    s->wait = W_RELAY;
    if (s->relay == NULL) {
        SMTP_RELAY_ENV env = {0};       /* mx and any later field: off */

        env.nexthops = s->nexthop;
        env.client = &s->c;
        env.sender = s->c.sender;
        env.mail_params = s->mail_params ? s->mail_params : "";
        env.setup_ms = var_smtpd_relay_proxy_ms;       /* the client waits on its RCPT */
        s->relay = smtp_relay_open(&env, smtp_command_relay_mail_cb, s);
        return;
    }
    smtp_relay_rcpt(s->relay, s->cur_rcpt, s->cur_rcpt_params, smtp_command_relay_rcpt_cb, s);
}

/* smtp_command_rcpt - RCPT TO */
/*
 * smtp_command_postmaster - RCPT TO:<Postmaster>, without a domain, which
 * RFC 5321 (4.5.1) says a server must take: postmaster@ the domain of our
 * host name, or of its nearest parent, that is one of ours. 1 with out
 * set, 0 none of ours (the checks refuse it as any bare address), -1 the
 * store cannot say (the checks defer it, as they would the rewritten one).
 */
static int smtp_command_postmaster(char *out, size_t size)
{
    const char *reason, *dot;
    STORE *st = smtpd_store_use(&reason);

    if (st == NULL)
        return -1;
    for (const char *d = smtpd_hostname; (dot = strchr(d, '.')) != NULL; d = dot + 1) {
        CHECK_WHY why;
        int rc;

        memset(&why, 0, sizeof(why));
        if ((rc = check_domain(st, d, strlen(d), &why)) != 0) {
            /* The host name is at most SMTPD_NAME_LEN; a caller's smaller buffer takes no part of it. */
            if (rc > 0 && (size_t) snprintf(out, size, "postmaster@%s", d) >= size)
                return 0;
            return rc;
        }
    }
    return 0;
}

static void smtp_command_rcpt(SMTP_SESSION *s, const char *arg)
{
    SMTP_PATH path;
    char reply[256];
    int pm = 0;

    if (s->c.sender == NULL) {
        smtp_session_reply(s, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (smtp_proto_rcpt(arg, s->smtputf8, &path, reply, sizeof(reply)) != 0) {
        smtp_session_reply(s, "%s", reply);
        return;
    }
    /*
     * Past recipient_limit, or past what a queue file's envelope holds (a
     * large recipient_limit, long addresses): the client sends the rest in
     * another transaction. Taking them would have answered 451 at DATA at
     * every try, the message never taken.
     */
    if (s->c.rcpt_count >= var_smtpd_rcpt_limit
        || (smtpd_spool != NULL
            && s->env_bytes + spool_rcpt_bytes(path.addr, path.orcpt) > SMTP_ENV_RCPT_ROOM)) {
        smtp_session_reply(s, "452 4.5.3 Error: too many recipients");
        smtp_command_overshoot(s);
        return;
    }
    if (!path.has_route && strcasecmp(path.addr, "postmaster") == 0
        && (pm = smtp_command_postmaster(path.addr, sizeof(path.addr))) > 0)
        log_debug("RCPT TO:<%s> taken as <%s>", path.raw, path.addr);
    /* A source-routed path goes to the checks whole, so they can refuse it. */
    free(s->cur_rcpt);
    s->cur_rcpt = xstrdup(path.has_route ? path.raw : path.addr);
    free(s->cur_rcpt_params);
    s->cur_rcpt_params = xstrdup(path.params);
    free(s->cur_orcpt);
    s->cur_orcpt = path.orcpt[0] ? xstrdup(path.orcpt) : NULL;
    s->cur_notify = path.notify;
    if (pm < 0) {
        /* Not the 5xx of a bare address: the store's failure is temporary. */
        snprintf(reply, sizeof(reply), "451 4.3.0 <%s>: Temporary lookup failure", s->cur_rcpt);
        smtp_command_rcpt_done(s, 451, reply, 0);
        return;
    }
    smtp_session_pause(s, W_DNS);
    smtpd_dns_wait(smtp_session_dns, &s->c, smtp_command_rcpt_check, s);
}

/* smtp_command_received - our Received: header, first thing downstream (and in the spool) */
static void smtp_command_received(SMTP_SESSION *s)
{
    char buf[2048];
    char date[64];
    char tlsdesc[256];
    time_t now = time(NULL);
    struct tm tm;
    size_t n;
    SSL *ssl = s->c.tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;

    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm);
    /* RFC 5321 TCP-info: an IPv6 address literal carries its "IPv6:" tag */
    /* A HELO beyond a host name's 255 bytes is cut here, so the field always ends in its CRLF. */
    n = (size_t) snprintf(buf, sizeof(buf), "Received: from %.255s (%s [%s%s])\r\n",
                          s->c.helo ? s->c.helo : s->c.name, s->c.name,
                          strchr(s->c.addr, ':') ? "IPv6:" : "", s->c.addr);
    if (ssl != NULL && n < sizeof(buf))
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "\t(using %s)\r\n",
                               smtp_tls_describe(ssl, tlsdesc, sizeof(tlsdesc)));
    if (n < sizeof(buf))
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "\tby %s (rcptgate) with %s id %s",
                               smtpd_hostname, smtp_session_proto(s), s->c.queue_id);
    if (n < sizeof(buf) && s->c.rcpt_count == 1 && s->rcpts)
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "\r\n\tfor <%s>", s->rcpts->addr);
    if (n < sizeof(buf))
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "; %s\r\n", date);
    if (n >= sizeof(buf)) {
        /* Never reached with the limits above; were it, the field still ends its line. */
        n = sizeof(buf) - 1;
        buf[n - 2] = '\r';
        buf[n - 1] = '\n';
    }
    /* Client-supplied names must not break the header. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char) buf[i] < 0x20 && buf[i] != '\r' && buf[i] != '\n' && buf[i] != '\t')
            buf[i] = '?';
    smtp_session_data_put(s, buf, n);
    s->our_bytes = (long long) n;
}

/* smtp_command_data_go - 354: the message bytes follow */
static void smtp_command_data_go(SMTP_SESSION *s)
{
    smtp_session_send(s, "354 End data with <CR><LF>.<CR><LF>");
    s->phase = PH_DATA;
    smtp_proto_data_init(&s->scan, smtp_session_normalize);
    smtp_proto_hops_init(&s->hops);
    s->d_over = s->d_rejected = s->d_hops = 0;
    s->d_failed = 0;
    s->spool_failed = 0;
    s->data_bytes = s->our_bytes = 0;
    s->data_start_ms = smtp_session_now();
    if (var_smtpd_received)
        smtp_command_received(s);
}

/* smtp_command_data_refuse - DATA refused (4xx/5xx): log it, end the transaction */
static void smtp_command_data_refuse(SMTP_SESSION *s, int code, const char *reply)
{
    SMTPD_REPLY r;

    memset(&r, 0, sizeof(r));
    smtpd_reply_set(&r, code, "%s", reply);
    smtpd_log_reject(&s->c, "DATA", &r, NULL, 0);
    smtp_session_reply(s, "%s", reply);
    smtp_session_reset(s);
}

/* smtp_command_relay_data_cb - the downstream's answer to DATA */
static void smtp_command_relay_data_cb(void *arg, int code, const char *said)
{
    SMTP_SESSION *s = arg;
    char reply[SMTPD_REPLY_LEN + 8];

    dsn_reply_status(reply, sizeof(reply), said, "2.0.0");

    s->wait = W_NONE;
    if (code != 354) {
        if (s->mode == SMTP_MODE_PTQ && code / 100 != 5 && s->spool_f != NULL) {
            /* Deferred or down at DATA: we take the message for the spool alone. */
            smtpd_log_printf("%s: next hop %s said \"%s\" to DATA: the message goes to the queue",
                             s->c.queue_id, smtp_relay_peer(s->relay), reply);
            smtp_command_relay_lost(s, reply);
            smtp_command_data_go(s);
        } else {
            smtp_command_data_refuse(s, code, reply);
        }
        smtp_session_resume(s);
        return;
    }
    smtp_command_data_go(s);
    smtp_session_resume(s);
}

/* smtp_command_queued_only - how many recipients only the spool holds (the next hop did not take them) */
static int smtp_command_queued_only(const SMTP_SESSION *s)
{
    int n = 0;

    for (const SMTP_RCPT *rc = s->rcpts; rc; rc = rc->next)
        n += rc->queued_only;
    return n;
}

/*
 * smtp_command_spool_start - the spool file of this message, recipients
 * all TODO, before 354: queue_max_messages and free space are checked
 * first. 0 and s->spool_f set; or -1 with the client's reply in why.
 */
static int smtp_command_spool_start(SMTP_SESSION *s, char *why, size_t whylen)
{
    SPOOL_ENV env;
    SPOOL_RCPT *rv;
    char err[256];
    size_t i = 0;
    long long size = s->mail_size > 0 ? s->mail_size : var_smtpd_size_limit;
    int ok;

    if (smtpd_spool == NULL) {
        snprintf(why, whylen, "452 4.3.1 Insufficient system storage");
        return -1;
    }
    if (smtpd_qmgr_accepting(why, whylen) != 0) {
        smtpd_log_printf("%s: queue full (queue_max_messages %d) or unusable: %s", s->c.queue_id,
                         var_smtpd_queue_max, why);
        return -1;
    }
    /* Postfix's queue_minfree test, with the message's declared (or largest) size on top */
    if ((ok = spool_space_ok(smtpd_spool, size, var_smtpd_queue_minfree)) <= 0) {
        if (ok < 0)
            log_warn("%s: cannot tell the free space of %s: %s", s->c.queue_id, spool_dir(smtpd_spool),
                     strerror(errno));
        else
            log_warn("%s: not enough free space in %s for %lld bytes above queue_minfree %lld",
                     s->c.queue_id, spool_dir(smtpd_spool), size, var_smtpd_queue_minfree);
        snprintf(why, whylen, "452 4.3.1 Insufficient system storage");
        return -1;
    }
    memset(&env, 0, sizeof(env));
    snprintf(env.id, sizeof(env.id), "%s", s->c.queue_id);
    env.arrival = (long long) time(NULL);
    env.sender = s->c.sender;
    env.mail_params = s->mail_params ? s->mail_params : "";
    env.envid = s->envid;
    env.ret = s->ret;
    env.client.name = s->c.name;
    env.client.addr = s->c.addr;
    env.client.port = s->c.port;
    env.client.helo = s->c.helo;
    env.client.proto = (char *) smtp_session_proto(s);
    env.client.login = s->c.sasl_user;
    env.nrcpt = (size_t) s->c.rcpt_count;
    rv = xmalloc((env.nrcpt ? env.nrcpt : 1) * sizeof(*rv));
    for (const SMTP_RCPT *rc = s->rcpts; rc && i < env.nrcpt; rc = rc->next, i++) {
        memset(&rv[i], 0, sizeof(rv[i]));
        rv[i].addr = (char *) rc->addr;
        rv[i].orcpt = rc->orcpt;
        rv[i].notify = rc->notify;
        rv[i].state = SPOOL_RCPT_TODO;
    }
    env.nrcpt = i;
    env.rcpt = rv;
    s->spool_f = spool_create(smtpd_spool, &env, err, sizeof(err));
    free(rv);
    if (s->spool_f == NULL) {
        log_warn("%s: cannot create a queue file: %s", s->c.queue_id, err);
        snprintf(why, whylen, "451 4.3.0 Error: queue file write error");
        return -1;
    }
    return 0;
}

/* smtp_command_data - DATA */
static void smtp_command_data(SMTP_SESSION *s, const char *arg)
{
    SMTPD_REPLY r;

    if (*arg) {
        smtp_session_reply(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (s->c.rcpt_count == 0 || (s->relay == NULL && s->mode != SMTP_MODE_QUEUE && !s->relay_down)) {
        if (s->c.sender == NULL)
            smtp_session_reply(s, "503 5.5.1 Error: need RCPT command");
        else
            smtp_session_reply(s, "554 5.5.1 Error: no valid recipients");
        return;
    }
    memset(&r, 0, sizeof(r));
    if (smtpd_check_data(&s->c, &r) != 0 && r.code >= 400) {
        smtpd_log_reject(&s->c, "DATA", &r, NULL, 0);
        smtp_session_reply(s, "%s", r.text);
        return;
    }
    if (s->mode == SMTP_MODE_QUEUE || s->mode == SMTP_MODE_PTQ) {
        char why[SMTPD_REPLY_LEN];

        if (smtp_command_spool_start(s, why, sizeof(why)) < 0) {
            if (s->mode == SMTP_MODE_PTQ && s->relay != NULL && smtp_command_queued_only(s) == 0) {
                /*
                 * No room or no spool: the next hop alone takes it, the
                 * client hears its verdict (a 4xx as in proxy mode). What is
                 * relayed live loses nothing; refusing would defer mail the
                 * inside could take now.
                 */
                smtpd_log_printf("%s: queue unavailable (%s): relayed as a proxy", s->c.queue_id, why);
                s->mode = SMTP_MODE_PROXY;
            } else {
                smtp_command_data_refuse(s, atoi(why), why);
                return;
            }
        }
    }
    if (s->relay != NULL && s->spool_f != NULL && smtp_command_queued_only(s) == s->c.rcpt_count) {
        /* The next hop took none of the recipients: it gets no DATA (it would say 503). */
        smtp_command_relay_lost(s, "the next hop deferred every recipient");
    }
    if (s->relay != NULL) {
        smtp_session_pause(s, W_RELAY);
        smtp_relay_data(s->relay, smtp_command_relay_data_cb, s);
        return;
    }
    /* queue, or proxy-then-queue with the next hop down: our own 354 */
    smtp_command_data_go(s);
}

/* smtp_command_dsn - the enhanced status of a deferral reply ("451 4.4.2 ..." gives 4.4.2), else 4.0.0 */
static const char *smtp_command_dsn(const char *reply, char *buf, size_t size)
{
    size_t n = strlen(reply) > 4 && reply[4] == '4' ? dsn_status_len(reply + 4) : 0;

    if (n > 0)
        snprintf(buf, size, "%.*s", (int) n, reply + 4);
    else
        snprintf(buf, size, "4.0.0");
    return buf;
}

/* smtp_command_log_done - the message's qmgr line and one line per recipient, as Postfix's qmgr and smtp */
static void smtp_command_log_done(SMTP_SESSION *s, int sent_ok, const char *relay, const char *reply)
{
    double delay = (double) (smtp_session_now() - s->mail_ms) / 1000.0;
    char dsn[32];

    /* size as Postfix's: the message as it went on, our Received: field included (the queue's figure too) */
    smtpd_log_as("qmgr", "%s: from=<%s>, size=%lld, nrcpt=%d (queue active)", s->c.queue_id,
                 s->c.sender, s->data_bytes + s->our_bytes, s->c.rcpt_count);
    for (SMTP_RCPT *rc = s->rcpts; rc; rc = rc->next) {
        if (sent_ok && !rc->queued_only)
            smtpd_log_as("smtp", "%s: to=<%s>, relay=%s, delay=%.1f, delays=0/0/0/%.1f, dsn=%c.0.0, status=sent (%s)",
                         s->c.queue_id, rc->addr, relay, delay, delay, reply[0], reply);
        else if (reply != NULL)
            /* the next hop's answer, as Postfix logs a deferral (pflogsumm counts it) */
            smtpd_log_as("smtp", "%s: to=<%s>, relay=%s, delay=%.1f, delays=0/0/0/%.1f, dsn=%s, "
                         "status=deferred (%s)", s->c.queue_id, rc->addr, relay, delay, delay,
                         smtp_command_dsn(rc->queued_only && rc->why ? rc->why : reply, dsn, sizeof(dsn)),
                         rc->queued_only && rc->why ? rc->why : reply);
    }
}

static int smtp_command_spool_commit(SMTP_SESSION *s, long long next_try);
static void smtp_command_spool_lost(SMTP_SESSION *s);
static void smtp_command_queued(SMTP_SESSION *s, long long next_try, int sent_ok, const char *relay,
                                const char *reply);

/*
 * smtp_command_commit - make the spooled copy durable and tell the client
 * "250 ... queued as ID"; a commit that fails is 451, never 250.
 * next_try: 0 now (queue mode), or after minimal_backoff_time (the next
 * hop has just failed).
 */
static void smtp_command_commit(SMTP_SESSION *s, long long next_try, int sent_ok, const char *relay,
                                const char *reply)
{
    if (smtp_command_spool_commit(s, next_try) < 0) {
        smtp_command_spool_lost(s);
        return;
    }
    smtp_command_queued(s, next_try, sent_ok, relay, reply);
}

/*
 * smtp_command_spool_reasons - why the spool alone holds some recipients
 * (the next hop's 4xx, or its failure), saved as the queue manager saves
 * a try's: `rcptgate queue list` shows them before the first retry
 */
static void smtp_command_spool_reasons(SMTP_SESSION *s)
{
    size_t cap = s->c.rcpt_count > 0 ? (size_t) s->c.rcpt_count : 1, i = 0, n = 0;
    const SMTP_RCPT *rc = s->rcpts;
    SPOOL_RCPT *rv;
    char (*dsn)[16];
    SPOOL_ENV env;

    while (rc != NULL && !(rc->queued_only && rc->why))
        rc = rc->next;
    if (rc == NULL)
        return;                         /* the usual case: the next hop took them all */
    rv = xcalloc(cap, sizeof(*rv));
    dsn = xcalloc(cap, sizeof(*dsn));
    memset(&env, 0, sizeof(env));
    snprintf(env.id, sizeof(env.id), "%s", s->c.queue_id);
    for (rc = s->rcpts; rc && i < cap; rc = rc->next, i++)
        if (rc->queued_only && rc->why) {
            (void) smtp_command_dsn(rc->why, dsn[i], sizeof(dsn[i]));       /* writes it there */
            rv[i].dsn = dsn[i];
            rv[i].reason = rc->why;
            n++;
        }
    env.nrcpt = i;
    env.rcpt = rv;
    if (n > 0 && spool_reason_save(smtpd_spool, &env) < 0)
        log_warn("%s: cannot save the deferral reasons: %s", s->c.queue_id, strerror(errno));
    free(dsn);
    free(rv);
}

/* smtp_command_spool_commit - make the spooled copy durable (s->spool_f goes); 0, or -1 (logged) */
static int smtp_command_spool_commit(SMTP_SESSION *s, long long next_try)
{
    char err[256];
    SPOOL_FILE *f = s->spool_f;

    s->spool_f = NULL;
    if (f != NULL && s->spool_failed) {
        spool_abort(f);
        return -1;
    }
    if (f == NULL || spool_commit(f, next_try, err, sizeof(err)) < 0) {
        if (f != NULL)
            log_warn("%s: queue file commit failed: %s", s->c.queue_id, err);
        return -1;
    }
    smtp_command_spool_reasons(s);
    return 0;
}

/* smtp_command_spool_lost - the client's 451: the spool could not take the message */
static void smtp_command_spool_lost(SMTP_SESSION *s)
{
    SMTPD_REPLY r;

    memset(&r, 0, sizeof(r));
    smtpd_reply_set(&r, 451, "451 4.3.0 Error: queue file write error");
    smtpd_log_reject(&s->c, "END-OF-MESSAGE", &r, NULL, 0);
    smtp_session_reply(s, "%s", r.text);
}

/* smtp_command_queued - the message is in deferred/: log it, "250 ... queued as ID", wake the queue manager */
static void smtp_command_queued(SMTP_SESSION *s, long long next_try, int sent_ok, const char *relay,
                                const char *reply)
{
    char ok[SPOOL_ID_LEN + 64];

    SMTP_COUNT_UP(s->counts[SMTP_CMD_DATA][0]);
    smtp_session_stats.messages++;
    if (reply != NULL)
        smtp_command_log_done(s, sent_ok, relay, reply);
    else
        smtpd_log_as("qmgr", "%s: from=<%s>, size=%lld, nrcpt=%d (queue active)", s->c.queue_id,
                     s->c.sender, s->data_bytes + s->our_bytes, s->c.rcpt_count);
    snprintf(ok, sizeof(ok), "250 2.0.0 Ok: queued as %s", s->c.queue_id);
    smtp_session_send(s, ok);
    smtpd_qmgr_queued(s->c.queue_id, next_try);
}

/* smtp_command_backoff - the next try after a next hop's failure: now + minimal_backoff_time */
static long long smtp_command_backoff(void)
{
    return (long long) time(NULL) + (var_smtpd_min_backoff_ms + 999) / 1000;
}

/* smtp_command_after_dot - the transaction is over: reset, and end the session on SIGTERM */
static void smtp_command_after_dot(SMTP_SESSION *s)
{
    smtp_session_reset(s);
    if (smtp_session_stopping) {
        /* SIGTERM came during this transaction: it is done, so is the session. */
        smtp_session_goodbye(s, "421 4.3.2 %s Service shutting down, closing transmission channel",
                             smtpd_hostname);
        return;
    }
    smtp_session_resume(s);
}

/* smtp_command_retry - a file committed before the dot gets the usual backoff now; its next try */
static long long smtp_command_retry(SMTP_SESSION *s)
{
    long long next = smtp_command_backoff();

    /* If that fails, the later time stands: the message is tried then, nothing is lost. */
    return spool_retry_at(smtpd_spool, s->c.queue_id, next) == 0 ? next : s->spool_next;
}

/* smtp_command_relay_dot_cb - the downstream's final word on the message */
static void smtp_command_relay_dot_cb(void *arg, int code, const char *said)
{
    SMTP_SESSION *s = arg;
    char reply[SMTPD_REPLY_LEN + 8];
    SMTPD_REPLY r;
    const char *peer = smtp_relay_peer(s->relay);

    dsn_reply_status(reply, sizeof(reply), said, "2.0.0");
    s->wait = W_NONE;
    /* The marks below are this session's last word on its file: the queue manager's after them. */
    if (s->spool_committed)
        smtpd_qmgr_session_release(s->c.queue_id);
    if (s->spool_committed && code / 100 == 2) {
        size_t i = 0;

        /* Delivered to those the next hop took; the others stay TODO in the committed file. */
        for (SMTP_RCPT *rc = s->rcpts; rc; rc = rc->next, i++)
            if (!rc->queued_only && spool_mark(smtpd_spool, s->c.queue_id, i, SPOOL_RCPT_DONE) < 0)
                log_warn("%s: to=<%s> was delivered, but its queue file could not say so: "
                         "it may be delivered again", s->c.queue_id, rc->addr);
        smtp_command_queued(s, smtp_command_retry(s), 1, peer, reply);
    } else if (s->spool_committed && code / 100 == 4) {
        /* A recipient the next hop took at RCPT is delivered only by a 2xx here: all stay TODO. */
        smtp_command_queued(s, smtp_command_retry(s), 0, peer, reply);
    } else if (s->spool_committed) {
        /* The next hop refused the message itself: the client hears why, the queued copy goes. */
        if (spool_remove(smtpd_spool, s->c.queue_id) < 0)
            log_warn("%s: the next hop refused the message, but its queue file could not be removed: "
                     "the recipients it holds may get it later", s->c.queue_id);
        memset(&r, 0, sizeof(r));
        smtpd_reply_set(&r, code, "%s", reply);
        smtpd_log_reject(&s->c, "END-OF-MESSAGE", &r, NULL, 0);
        smtp_session_reply(s, "%s", reply);
    } else if (code / 100 == 2) {
        SMTP_COUNT_UP(s->counts[SMTP_CMD_DATA][0]);
        smtp_session_stats.messages++;
        /* Logged as Postfix's qmgr and smtp would: pflogsumm counts them there. */
        smtp_command_log_done(s, 1, peer, reply);
        smtpd_log_as("qmgr", "%s: removed", s->c.queue_id);
        smtp_session_send(s, reply);
    } else if (code / 100 == 4 && s->mode == SMTP_MODE_PTQ && s->spool_f != NULL && !s->spool_failed) {
        /* A recipient the next hop took at RCPT is delivered only by a 2xx here: all stay TODO. */
        smtp_command_commit(s, smtp_command_backoff(), 0, peer, reply);
    } else {
        memset(&r, 0, sizeof(r));
        smtpd_reply_set(&r, code, "%s", reply);
        smtpd_log_reject(&s->c, "END-OF-MESSAGE", &r, NULL, 0);
        smtp_session_reply(s, "%s", reply);
    }
    smtp_command_after_dot(s);
}

/* smtp_command_data_end - the client's final dot */
void smtp_command_data_end(SMTP_SESSION *s)
{
    s->phase = PH_CMD;
    if (s->d_over || s->d_failed || s->d_rejected || s->d_hops) {
        SMTPD_REPLY r;

        memset(&r, 0, sizeof(r));
        /*
         * A write to the downstream failed: what it holds is cut short, so
         * it must not get the dot (and perhaps say 250 to half a message).
         * The reset closes it without one; the client hears 4xx and retries.
         * Too big, holding a forbidden byte or looping (hopcount_limit),
         * it was cut off the same way.
         * The spooled copy is dropped by the reset.
         */
        if (s->d_over)
            smtpd_reply_set(&r, 552, "552 5.3.4 Message size exceeds fixed limit");
        else if (s->d_rejected)
            smtpd_reply_set(&r, 550, "550 5.7.1 Message content rejected");
        else if (s->d_hops)
            smtpd_reply_set(&r, 554, "554 5.4.0 Error: too many hops");
        else if (s->spool_failed && s->relay == NULL)
            smtpd_reply_set(&r, 451, "451 4.3.0 Error: queue file write error");
        else
            smtpd_reply_set(&r, 451, "451 4.3.0 Error: message transfer to the next hop failed");
        smtpd_log_reject(&s->c, "END-OF-MESSAGE", &r, NULL, 0);
        smtp_session_reply(s, "%s", r.text);
        smtp_session_reset(s);
        return;
    }
    if (s->relay != NULL && smtp_command_queued_only(s) > 0) {
        /*
         * Some recipients only the spool holds: it is made durable before
         * the next hop gets the dot. Once the next hop has said 250 to the
         * others, a commit that failed could only be answered 451, and the
         * client would send them the message again. Without the dot, the
         * reset drops the next hop's copy, so the 451 is true for all.
         * Its first try is put past the longest wait for the next hop's
         * answer, so that the queue manager cannot deliver the recipients
         * the next hop took before the answer marks them done; the answer
         * brings it back to the usual backoff (smtp_command_retry).
         */
        s->spool_next = smtp_command_backoff() + (var_smtpd_relay_timeout_ms + 999) / 1000;
        if (smtp_command_spool_commit(s, s->spool_next) < 0) {
            smtp_command_spool_lost(s);
            smtp_session_reset(s);
            return;
        }
        s->spool_committed = 1;
        smtpd_qmgr_session_hold(s->c.queue_id);
    }
    if (s->relay != NULL) {
        smtp_session_pause(s, W_RELAY);
        smtp_relay_dot(s->relay, smtp_command_relay_dot_cb, s);
        return;
    }
    /* The spool alone has it: queue mode (due now), or the next hop failed earlier (back off). */
    smtp_command_commit(s, s->mode == SMTP_MODE_QUEUE ? 0 : smtp_command_backoff(), 0,
                        s->mode == SMTP_MODE_QUEUE ? NULL : "none",
                        s->mode == SMTP_MODE_QUEUE ? NULL
                        : s->defer_reason ? s->defer_reason : "next hop unavailable");
    smtp_command_after_dot(s);
}

/* smtp_command_starttls - STARTTLS: 220, forget buffered plaintext, wrap the socket in TLS */
static void smtp_command_starttls(SMTP_SESSION *s, const char *arg)
{
    SSL *ssl;
    struct bufferevent *tls;
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t junk;

    if (*arg) {
        smtp_session_reply(s, "501 5.5.4 Syntax: STARTTLS");
        return;
    }
    if (s->c.tls) {
        smtp_session_reply(s, "554 5.5.1 Error: TLS already active");
        return;
    }
    if (!smtp_tls_server_ok() || (ssl = smtp_tls_server_new()) == NULL) {
        smtp_session_reply(s, "502 5.5.2 Error: command not recognized");
        return;
    }
    if (s->c.sender != NULL) {
        SSL_free(ssl);
        smtp_session_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    /* Straight out, never delayed: the handshake follows it on the wire. */
    SMTP_COUNT_UP(s->counts[s->cur_cmd][0]);
    smtp_session_send(s, "220 2.0.0 Ready to start TLS");

    /* Plaintext sent after STARTTLS is an injection attempt: it never counts as a command. */
    if ((junk = evbuffer_get_length(in)) > 0) {
        smtp_session_protocol_error();
        smtpd_log_printf("warning: %s[%s]: %zu bytes of plaintext after STARTTLS discarded",
                         s->c.name, s->c.addr, junk);
        evbuffer_drain(in, junk);
    }
    /* The socket is the filter's now: it writes as libevent pleases, as it did before. */
    bufferevent_enable(s->bev, EV_WRITE);
    tls = bufferevent_openssl_filter_new(smtpd_base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (tls == NULL) {
        log_warn("%s[%s]: cannot start TLS", s->c.name, s->c.addr);
        SSL_free(ssl);
        smtp_session_close(s);
        return;
    }
    s->bev = tls;
    s->phase = PH_TLS;
    s->wait = W_TLS;
    bufferevent_set_timeouts(tls, smtp_session_cmd_tv, smtp_session_cmd_tv);
    smtp_session_setcb(s);
    bufferevent_enable(tls, EV_READ | EV_WRITE);
}

/* smtp_command_auth_result - act on what SASL said */
static void smtp_command_auth_result(SMTP_SESSION *s, enum smtp_auth_status st, const char *reply)
{
    if (st == SMTP_AUTH_CONTINUE) {
        s->phase = PH_AUTH;
        smtp_session_send(s, reply);
        return;
    }
    s->auth = NULL;
    s->phase = PH_CMD;
    if (st == SMTP_AUTH_FAIL) {
        int delay = smtpd_anvil_auth_fail(s->c.addr);
        const char *why = strstr(reply, "authentication failed");

        /* Postfix's line, which fail2ban's postfix-sasl filter reads: the reason is SASL's. */
        why = why ? why + strlen("authentication failed") : "";
        log_warn("%s[%s]: SASL %s authentication failed%s", s->c.name, s->c.addr,
                 s->auth_mech ? s->auth_mech : "", why);
        if (delay < 0) {
            smtp_session_goodbye(s, "421 4.7.0 %s Error: too many authentication failures", smtpd_hostname);
            return;
        }
        if (var_smtpd_error_sleep_ms > delay && s->errors >= var_smtpd_soft_errors)
            delay = var_smtpd_error_sleep_ms;
        smtp_session_reply_delay(s, delay, reply);
        return;
    }
    if (st == SMTP_AUTH_OK && s->auth_mech && s->c.sasl_method == NULL)
        s->c.sasl_method = xstrdup(s->auth_mech);
    smtp_session_reply(s, "%s", reply);
}

/* smtp_command_auth - AUTH mechanism [initial-response] */
static void smtp_command_auth(SMTP_SESSION *s, const char *arg)
{
    char reply[1024];
    char mech[64];
    char upper[sizeof(mech)];
    const char *initial;
    size_t len;
    enum smtp_auth_status st;

    if (!s->c.submission || *smtp_auth_mechs() == 0) {
        smtp_session_reply(s, "503 5.5.1 Error: authentication not enabled");
        return;
    }
    if (!s->c.tls) {
        smtp_session_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
        return;
    }
    if (s->c.sasl_user != NULL) {
        smtp_session_reply(s, "503 5.5.1 Error: already authenticated");
        return;
    }
    if (s->c.sender != NULL) {
        smtp_session_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    len = strcspn(arg, " \t");
    if (len == 0 || len >= sizeof(mech)) {
        smtp_session_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
        return;
    }
    memcpy(mech, arg, len);
    mech[len] = 0;
    initial = arg + len;
    while (*initial == ' ' || *initial == '\t')
        initial++;
    free(s->auth_mech);
    s->auth_mech = xstrdup(smtp_proto_upper(upper, sizeof(upper), mech, len));
    st = smtp_auth_start(&s->c, mech, *initial ? initial : NULL, &s->auth, reply, sizeof(reply));
    smtp_command_auth_result(s, st, reply);
}

/* smtp_command_auth_line - one line of an AUTH exchange */
void smtp_command_auth_line(SMTP_SESSION *s, const char *line)
{
    char reply[1024];
    enum smtp_auth_status st = smtp_auth_step(s->auth, line, reply, sizeof(reply));

    smtp_command_auth_result(s, st, reply);
}

/* smtp_command_auth_abort - a malformed AUTH response line ends the exchange */
void smtp_command_auth_abort(SMTP_SESSION *s, const char *why)
{
    smtp_auth_free(s->auth);
    s->auth = NULL;
    s->phase = PH_CMD;
    smtp_session_reply(s, "501 5.5.2 Error: %s", why);
}

/* smtp_command_junk - NOOP, RSET, VRFY, HELP past junk_command_limit count as errors */
static void smtp_command_junk(SMTP_SESSION *s)
{
    if (++s->junk > var_smtpd_junk_limit)
        s->errors++;
}

/* smtp_command_pipelined - input follows a command where RFC 2920 forbids it; 1 if refused */
/*
 * smtp_command_auth_one_step - AUTH PLAIN or EXTERNAL with its initial
 * response: one round trip, no security layer. RFC 4954 (section 4) lets
 * a client pipeline the commands after it; they are read after its reply.
 */
static int smtp_command_auth_one_step(const char *line)
{
    const char *mech = line + strcspn(line, " ");
    size_t len;

    mech += strspn(mech, " ");
    len = strcspn(mech, " ");
    if (!((len == 5 && strncasecmp(mech, "PLAIN", 5) == 0) || (len == 8 && strncasecmp(mech, "EXTERNAL", 8) == 0)))
        return 0;
    mech += len;
    mech += strspn(mech, " ");
    return *mech != 0;
}

static int smtp_command_pipelined(SMTP_SESSION *s, int cmd, const char *line)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    char text[256];
    char verb[16];
    int mode;

    if (evbuffer_get_length(in) == 0 || cmd == SMTP_CMD_QUIT || cmd == SMTP_CMD_STARTTLS
        || (s->c.esmtp && !smtp_proto_group_end(cmd))
        || (s->c.esmtp && cmd == SMTP_CMD_AUTH && smtp_command_auth_one_step(line)))
        return 0;
    if ((mode = smtpd_mode(var_smtpd_unauth_pipelining)) == SMTPD_OFF)
        return 0;
    smtp_session_protocol_error();
    smtp_session_escape(in, text, sizeof(text));
    smtpd_log_printf("improper command pipelining after %s from %s[%s]: %s",
                     smtp_proto_upper(verb, sizeof(verb), line, strcspn(line, " \t")),
                     s->c.name, s->c.addr, text);
    if (mode == SMTPD_WARN)
        return 0;
    smtp_session_goodbye(s, "554 5.5.0 Error: SMTP protocol synchronization");
    return 1;
}

/* smtp_command_run - one command line */
void smtp_command_run(SMTP_SESSION *s, const char *line)
{
    const char *arg;
    int cmd = smtp_proto_split(line, &arg);

    s->cur_cmd = (unsigned char) (cmd == SMTP_CMD_FORBIDDEN ? SMTP_CMD_UNKNOWN : cmd);
    SMTP_COUNT_UP(s->counts[s->cur_cmd][1]);
    if (s->errors >= var_smtpd_hard_errors) {
        char last[64];

        smtpd_log_printf("too many errors after %s from %s[%s]",
                         smtp_session_last(s, last, sizeof(last)), s->c.name, s->c.addr);
        smtp_session_goodbye(s, "421 4.7.0 %s Error: too many errors", smtpd_hostname);
        return;
    }
    if (smtp_command_pipelined(s, cmd, line))
        return;
    if (smtp_session_stopping && s->c.sender == NULL && cmd != SMTP_CMD_QUIT) {
        smtp_session_goodbye(s, "421 4.3.2 %s Service shutting down, closing transmission channel",
                             smtpd_hostname);
        return;
    }
    if (s->connect_reject != NULL && cmd != SMTP_CMD_QUIT) {
        SMTPD_REPLY r;
        char stage[16];

        memset(&r, 0, sizeof(r));
        smtpd_reply_set(&r, atoi(s->connect_reject), "%s", s->connect_reject);
        smtp_session_last(s, stage, sizeof(stage));
        smtpd_log_reject(&s->c, stage, &r, NULL, 0);
        smtp_session_reply(s, "%s", s->connect_reject);
        return;
    }
    switch (cmd) {
    case SMTP_CMD_HELO:
    case SMTP_CMD_EHLO:
        smtp_command_ehlo(s, arg, cmd == SMTP_CMD_EHLO);
        break;
    case SMTP_CMD_MAIL:
        smtp_command_mail(s, arg);
        break;
    case SMTP_CMD_RCPT:
        smtp_command_rcpt(s, arg);
        break;
    case SMTP_CMD_DATA:
        smtp_command_data(s, arg);
        break;
    case SMTP_CMD_RSET:
        smtp_command_junk(s);
        if (*arg) {
            smtp_session_reply(s, "501 5.5.4 Syntax: RSET");
            break;
        }
        smtp_session_reset(s);
        smtp_session_reply(s, "250 2.0.0 Ok");
        break;
    case SMTP_CMD_NOOP:
        smtp_command_junk(s);
        smtp_session_reply(s, "250 2.0.0 Ok");
        break;
    case SMTP_CMD_VRFY:
        smtp_command_junk(s);
        if (*arg == 0) {
            smtp_session_reply(s, "501 5.5.4 Syntax: VRFY address");
            break;
        }
        /* Never says whether a recipient exists: that is what harvesters want. */
        smtp_session_reply(s, "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
        break;
    case SMTP_CMD_HELP:
        smtp_command_junk(s);
        smtp_session_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY");
        break;
    case SMTP_CMD_QUIT:
        smtp_session_goodbye(s, "221 2.0.0 Bye");
        break;
    case SMTP_CMD_STARTTLS:
        smtp_command_starttls(s, arg);
        break;
    case SMTP_CMD_AUTH:
        smtp_command_auth(s, arg);
        break;
    case SMTP_CMD_FORBIDDEN:
        smtp_session_protocol_error();
        log_warn("non-SMTP command from %s[%s]: %.100s", s->c.name, s->c.addr, line);
        smtp_session_goodbye(s, "221 2.7.0 Error: I can break rules, too. Goodbye.");
        break;
    default:
        smtp_session_reply(s, "502 5.5.2 Error: command not recognized");
        break;
    }
}
