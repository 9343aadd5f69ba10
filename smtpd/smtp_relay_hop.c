/*
 * smtp_relay_hop.c - from the list of next hops to an open transaction
 *
 * The relay's first half (smtp_relay.c is the rest): the next hops of a
 * domain in Postfix transport syntax become a list of hops; a name is
 * looked up for its addresses, and a bare domain of mail sent to the
 * Internet for its MX, each address then tried in turn. On the
 * connection that answers: EHLO (HELO after a 5xx), STARTTLS as
 * relay_tls asks, XFORWARD with the client's attributes when offered,
 * and MAIL FROM with the parameters the hop understands. Every reply is
 * read by smtp_relay.c, which calls back here for the next step.
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


static int relay_mx_start(SMTP_RELAY *);

/* relay_is_addr - is host an IPv4 or IPv6 address (not a name)? */
static int relay_is_addr(const char *host)
{
    struct in6_addr bin;

    return inet_pton(AF_INET, host, &bin) == 1 || inet_pton(AF_INET6, host, &bin) == 1;
}

/* smtp_relay_hop_parse - the transport-syntax list into hops (lib/nexthop.c); the count */
int smtp_relay_hop_parse(const char *list, RELAY_HOP **out)
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

/* smtp_relay_hop_peer_set - "name[addr]:port" of the connected hop */
void smtp_relay_hop_peer_set(SMTP_RELAY *r)
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
    smtp_relay_hop_try(r);
    smtp_relay_flush(r);
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

/* smtp_relay_hop_try - connect to r->hop, or to the ones after it; all gone: 4.4.1 */
void smtp_relay_hop_try(SMTP_RELAY *r)
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
        bufferevent_setcb(r->bev, smtp_relay_read_cb, smtp_relay_write_cb, smtp_relay_event_cb, r);
        smtp_relay_write_timeout(r->bev);
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
            smtp_relay_drop_bev(r);
            r->tls_skip = 0;
            continue;
        }
        smtp_relay_arm(r, var_smtpd_relay_conn_ms);
        return;
    }
    /* Every hop failed: the MAIL request gets the last hop's reason. */
    if (r->nhops == 0 && r->last_fail[0] == 0)
        snprintf(r->last_fail, sizeof(r->last_fail), "451 4.3.5 Server configuration error: no next hop");
    r->state = ST_FAILED;
    snprintf(r->fail_text, sizeof(r->fail_text), "%s", r->last_fail);
    if (r->reqs && r->reqs->kind == REQ_MAIL)
        if (!smtp_relay_answer_head(r, atoi(r->last_fail), r->last_fail))
            return;
    if (r->reached)
        snprintf(r->fail_text, sizeof(r->fail_text), "451 4.4.2 Lost connection with next hop");
    else if (r->mx_perm && r->last_fail[0] == '5')
        snprintf(r->fail_text, sizeof(r->fail_text), "%s", r->last_fail);     /* the RCPTs hear it too */
    else
        snprintf(r->fail_text, sizeof(r->fail_text), "451 4.4.1 No next hop reachable");
    smtp_relay_flush_failed(r);
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

/* smtp_relay_hop_xforward_next - the next XFORWARD command, or MAIL after the last */
static void relay_send_mail(SMTP_RELAY *);

void smtp_relay_hop_xforward_next(SMTP_RELAY *r)
{
    char *nl;

    if (r->xforward_todo && (nl = strchr(r->xforward_todo, '\n')) != NULL) {
        char *rest;

        *nl = 0;
        smtp_relay_send(r, ST_XFORWARD, "%s", r->xforward_todo);
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
 * smtp_relay_pump: 555 if it needs the SMTPUTF8 that MAIL went without.)
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
                smtp_relay_quit_bev(r);
                if (smtp_relay_answer_head(r, 555, "555 5.6.7 SMTPUTF8 is required, but was not offered "
                                      "by the next hop"))
                    smtp_relay_flush_failed(r);
                return;
            }
        } else if (strncasecmp(tok, "RET=", 4) == 0 || strncasecmp(tok, "ENVID=", 6) == 0)
            pass = r->ext & EXT_DSN;
        if (pass && n + strlen(tok) + 2 < sizeof(params))
            n += (size_t) snprintf(params + n, sizeof(params) - n, " %s", tok);
    }
    free(copy);
    smtp_relay_send(r, ST_MAIL, "MAIL FROM:<%s>%s", r->sender, params);
    r->mail_sent = 1;
    /* RCPTs asked for already go right behind MAIL when the hop pipelines. */
    smtp_relay_pump(r);
}

/*
 * smtp_relay_hop_tls_mode - the TLS level for this relay: relay_tls for our next
 * hops; mail sent to the Internet by MX (a report to an outside sender)
 * gets opportunistic TLS, as Postfix's default: relay_tls = verify with an
 * internal relay_ca_file would otherwise defer every such report until it
 * expired, and encrypt would refuse every exchanger without STARTTLS.
 */
const char *smtp_relay_hop_tls_mode(const SMTP_RELAY *r)
{
    const char *mode = var_smtpd_relay_tls ? var_smtpd_relay_tls : "none";

    return r->mx && strcmp(mode, "none") != 0 ? "may" : mode;
}

/* smtp_relay_hop_session - after EHLO/HELO: STARTTLS, XFORWARD, MAIL as offered */
void smtp_relay_hop_session(SMTP_RELAY *r)
{
    const char *mode = smtp_relay_hop_tls_mode(r);
    int must = strcmp(mode, "encrypt") == 0 || strcmp(mode, "verify") == 0;

    if (!r->tls_done && !r->tls_skip && strcmp(mode, "none") != 0) {
        if (r->ext & EXT_STARTTLS) {
            const RELAY_HOP *h = &r->hops[r->hop];

            /* an exchanger found by MX is checked (and named in SNI) by its name, not its address */
            if ((r->ssl = smtp_tls_client_new(h->name ? h->name : h->host, strcmp(mode, "verify") == 0)) != NULL) {
                smtp_relay_send(r, ST_STARTTLS, "STARTTLS");
                return;
            }
            log_warn("relay: cannot make a TLS client for %s (no TLS context)", r->peer);
        }
        if (must) {
            smtp_relay_next_hop(r, "451 4.7.5 TLS is required, but was not offered by the next hop");
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
                smtp_relay_send(r, ST_XFORWARD, "%s", p);
                p = nl + 1;
            }
            free(r->xforward_todo);
            r->xforward_todo = NULL;
            relay_send_mail(r);
            return;
        }
        smtp_relay_hop_xforward_next(r);
        return;
    }
    relay_send_mail(r);
}

/* smtp_relay_hop_ehlo_line - note the extension named by one EHLO reply line */
void smtp_relay_hop_ehlo_line(SMTP_RELAY *r, const char *kw)
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

/* smtp_relay_hop_starttls - the 220 to STARTTLS: wrap the connection in TLS */
void smtp_relay_hop_starttls(SMTP_RELAY *r)
{
    struct bufferevent *tls;
    struct evbuffer *in = bufferevent_get_input(r->bev);

    /* Anything after the 220 was sent in the clear: an injection attempt. */
    if (evbuffer_get_length(in) > 0) {
        smtp_relay_next_hop(r, "451 4.7.5 Next hop sent plaintext after its STARTTLS reply");
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
        smtp_relay_next_hop(r, "451 4.7.5 Cannot start TLS with the next hop");
        return;
    }
    r->bev = tls;
    r->ssl = NULL;              /* the filter owns it now */
    bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
    bufferevent_setcb(tls, smtp_relay_read_cb, smtp_relay_write_cb, smtp_relay_event_cb, r);
    smtp_relay_write_timeout(tls);
    bufferevent_enable(tls, EV_READ | EV_WRITE);
    r->state = ST_HANDSHAKE;
    smtp_relay_arm(r, var_smtpd_relay_timeout_ms);
}

/* smtp_relay_hop_tls_done - TLS is up: log it, EHLO again */
void smtp_relay_hop_tls_done(SMTP_RELAY *r)
{
    SSL *ssl = bufferevent_openssl_get_ssl(r->bev);
    int verify = strcmp(smtp_relay_hop_tls_mode(r), "verify") == 0;
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
    smtp_relay_send(r, ST_EHLO2, "EHLO %s", smtpd_hostname);
}