/*
 * dsn.c - delivery status notifications (RFC 3464) for queued mail
 *
 * dsn_make() writes a multipart/report into the spool as a new message
 * from the null sender (dsn_kind 1, so it is never bounced itself):
 *
 *   1. text/plain: what happened, in words, one line per recipient;
 *   2. message/delivery-status: the per-message fields, then one block
 *      per recipient (RFC 3464 section 2.3);
 *   3. the returned message: message/rfc822 whole for RET=FULL when it is
 *      not too large, otherwise text/rfc822-headers (headers only). A
 *      delay warning always returns the headers only.
 *
 * An original sent with SMTPUTF8 is returned with RFC 6533's types
 * (message/global-delivery-status, message/global, message/global-headers)
 * and the report is sent with SMTPUTF8 too; an 8BITMIME original makes an
 * 8BITMIME report whose returned part is "8bit". Everything this file
 * writes itself is 7-bit (or UTF-8 under SMTPUTF8) with controls replaced,
 * so a reason or address holding CR or LF cannot add a header field.
 *
 * The spool keeps a message as it goes on the wire (CRLF, dot-stuffed):
 * the copy of the original is unstuffed as it is read, and the report as a
 * whole is stuffed as it is written, so the returned part holds the
 * sender's own lines. The original is read with pread() in blocks, never
 * whole in memory.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "dsn.h"
#include "params_smtpd.h"
#include "printable.h"
#include "xalloc.h"

#define DSN_HEADERS_MAX     (100 * 1024)    /* returned headers, as Postfix's header_size_limit */
#define DSN_LINE_MAX        998             /* RFC 5322 line limit, for a returned header without a line end */
#define DSN_TEXT_MAX        900             /* a reason or address written into the report */
#define DSN_BLOCK           65536           /* pread block */

/* What differs between the three kinds of report (dsn.h's DSN_FAILED ...), in one place. */
typedef struct dsn_kind_text {
    const char *action;         /* Action: */
    const char *status;         /* Status: when none was recorded; its class is forced on one that was */
    const char *subject;
    const char *listed;         /* part 1's heading of the recipients */
    const char *returned;       /* part 3's Content-Description, headers only */
} DSN_KIND_TEXT;

static const DSN_KIND_TEXT dsn_kinds[] = {
    [DSN_FAILED] = {"failed", "5.0.0", "Undelivered Mail Returned to Sender",
                    "Recipients that failed:", "Undelivered Message Headers"},
    /* a delay is transient, whatever the last try said */
    [DSN_DELAYED] = {"delayed", "4.0.0", "Delayed Mail (still being retried)",
                     "Recipients still waiting:", "Undelivered Message Headers"},
    [DSN_RELAYED] = {"relayed", "2.0.0", "Successful Mail Delivery Report",
                     "Recipients passed on:", "Message Headers"},
};

/* dsn_kind - the texts of a kind (an unknown one is a failure report) */
static const DSN_KIND_TEXT *dsn_kind(int kind)
{
    return kind == DSN_DELAYED || kind == DSN_RELAYED ? &dsn_kinds[kind] : &dsn_kinds[DSN_FAILED];
}

/* DSN_OUT - the report on its way into the spool: dot-stuffing, buffered */
typedef struct dsn_out {
    SPOOL_FILE *f;
    int at_bol;                 /* the next byte starts a line (stuff a leading '.') */
    int failed;                 /* a spool_write failed (errno kept in err) */
    int err;
    size_t len;
    char buf[16384];
} DSN_OUT;

/* dsn_flush - hand the buffer to the spool */
static void dsn_flush(DSN_OUT *o)
{
    if (o->len > 0 && !o->failed && spool_write(o->f, o->buf, o->len) < 0) {
        o->failed = 1;
        o->err = errno;
    }
    o->len = 0;
}

/* dsn_put - report bytes, dot-stuffed on the way (a line that starts with '.' gets one more) */
static void dsn_put(DSN_OUT *o, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (o->len + 2 > sizeof(o->buf))
            dsn_flush(o);
        if (o->at_bol && p[i] == '.')
            o->buf[o->len++] = '.';
        o->buf[o->len++] = p[i];
        o->at_bol = p[i] == '\n';
    }
}

static void dsn_puts(DSN_OUT *o, const char *s)
{
    dsn_put(o, s, strlen(s));
}

/* dsn_printf - a formatted piece of the report (our own lines: callers end them with CRLF) */
static void dsn_printf(DSN_OUT *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dsn_printf(DSN_OUT *o, const char *fmt, ...)
{
    va_list ap;
    char small[1024];

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        dsn_put(o, small, (size_t)n);
        return;
    }
    char *big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    dsn_put(o, big, (size_t)n);
    free(big);
}

/*
 * dsn_clean - src made safe for one header field or text line: at most
 * DSN_TEXT_MAX bytes, controls (CR and LF among them) become spaces, and
 * 8-bit bytes become '?' unless utf8 (then well-formed UTF-8 stays).
 */
static void dsn_clean(char *dst, size_t size, const char *src, int utf8)
{
    size_t max = size - 1 < DSN_TEXT_MAX ? size - 1 : DSN_TEXT_MAX;
    size_t j = 0;

    for (const unsigned char *p = (const unsigned char *)(src ? src : ""); *p && j < max;) {
        if (*p >= 0x80) {
            size_t ul = utf8 ? printable_utf8_len(p, strlen((const char *)p)) : 0;
            if (ul > 0 && j + ul <= max) {
                memcpy(dst + j, p, ul);
                j += ul;
                p += ul;
            } else {
                dst[j++] = '?';
                p++;
            }
        } else {
            dst[j++] = (*p < 0x20 || *p == 0x7f) ? ' ' : (char)*p;
            p++;
        }
    }
    dst[j] = '\0';
}

/*
 * dsn_xtext_decode - RFC 3461 xtext ("+HH" is a byte) into dst; 0, or -1
 * when the decoded value holds a control or an 8-bit byte (which a header
 * field may not carry), so the caller keeps the xtext as it was given.
 */
static int dsn_xtext_decode(char *dst, size_t size, const char *src)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;

    for (const char *p = src; *p; p++) {
        int c = (unsigned char)*p;
        if (c == '+') {
            const char *h1 = p[1] ? strchr(hex, p[1]) : NULL;
            const char *h2 = h1 && p[2] ? strchr(hex, p[2]) : NULL;
            if (!h1 || !h2)
                return -1;
            c = (int)((h1 - hex) * 16 + (h2 - hex));
            p += 2;
        }
        if (c < 0x21 || c > 0x7e || j + 1 >= size)
            return -1;
        dst[j++] = (char)c;
    }
    dst[j] = '\0';
    return 0;
}

/* dsn_date - an RFC 5322 date of t in local time ("Sun, 6 Dec 2026 15:04:05 +0100"), not locale-dependent */
static void dsn_date(char *dst, size_t size, long long t)
{
    static const char *const day[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t tt = (time_t)t;
    struct tm tm;
    char zone[16];

    /* A time localtime cannot take (a damaged queue file's) is shown as the epoch. */
    if (localtime_r(&tt, &tm) == NULL) {
        tt = 0;
        if (gmtime_r(&tt, &tm) == NULL)
            memset(&tm, 0, sizeof(tm));
    }
    if (strftime(zone, sizeof(zone), "%z", &tm) == 0)
        snprintf(zone, sizeof(zone), "+0000");
    snprintf(dst, size, "%s, %d %s %d %02d:%02d:%02d %s", day[tm.tm_wday % 7], tm.tm_mday,
             mon[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zone);
}

/* dsn_param - does the ESMTP parameter list hold word (case-insensitive, a whole word or KEY=)? */
static int dsn_param(const char *params, const char *word)
{
    size_t wl = strlen(word);

    for (const char *p = params ? params : ""; *p;) {
        while (*p == ' ')
            p++;
        size_t l = strcspn(p, " ");
        if (l >= wl && strncasecmp(p, word, wl) == 0 && (l == wl || word[wl - 1] == '='))
            return 1;
        p += l;
    }
    return 0;
}

/* dsn_due - does recipient r want a report of kind? (RFC 3461 NOTIFY; see dsn.h and the man page) */
static int dsn_due(const SPOOL_RCPT *r, int kind)
{
    if (r->notify & SPOOL_NOTIFY_NEVER)
        return 0;
    if (kind == DSN_RELAYED)    /* only when asked for: RFC 3461 5.2.2 */
        return (r->notify & SPOOL_NOTIFY_SUCCESS) != 0;
    if (r->notify == 0)         /* not given: failures, and delay warnings when they are on (Postfix) */
        return 1;
    return (r->notify & (kind == DSN_DELAYED ? SPOOL_NOTIFY_DELAY : SPOOL_NOTIFY_FAILURE)) != 0;
}

/*
 * DSN_COPY - reading the original back: unstuffed, and for the headers
 * only, up to their end (the first empty line) or DSN_HEADERS_MAX.
 */
typedef struct dsn_copy {
    int headers_only;
    int at_bol;                 /* in the original */
    size_t line_len;            /* bytes of the current line so far (no CR/LF) */
    size_t total;
    int done;
    int truncated;              /* headers cut at DSN_HEADERS_MAX */
    int ends_nl;                /* the last byte given out was '\n' */
    /* the sink: a report, or a search for the boundary */
    DSN_OUT *out;
    const char *marker;         /* "--boundary" sought at a line start */
    size_t marker_len, match;
    int marker_bol, found;
    int eight;                  /* an 8-bit byte was seen (the report must say 8bit then) */
} DSN_COPY;

/* dsn_sink - one unstuffed byte of the original, to the report or to the boundary search */
static void dsn_sink(DSN_COPY *c, char ch)
{
    c->total++;
    c->ends_nl = ch == '\n';
    if ((unsigned char)ch >= 0x80)
        c->eight = 1;
    if (c->out) {
        dsn_put(c->out, &ch, 1);
        return;
    }
    if (c->marker_bol) {
        c->match = 0;
        c->marker_bol = 0;
    }
    if (c->match < c->marker_len && c->match != (size_t)-1) {
        if (ch == c->marker[c->match]) {
            if (++c->match == c->marker_len)
                c->found = 1;
        } else {
            c->match = (size_t)-1;
        }
    }
    if (ch == '\n')
        c->marker_bol = 1;
}

/* dsn_feed - a block of the stored original: undo dot-stuffing, stop after the headers when asked */
static void dsn_feed(DSN_COPY *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !c->done; i++) {
        char ch = p[i];
        if (c->at_bol) {
            c->at_bol = 0;
            c->line_len = 0;
            if (ch == '.')      /* the stuffed dot: the sender's line starts after it */
                continue;
            if (c->headers_only) {
                if (ch == '\r' || ch == '\n') {
                    c->done = 1;    /* the empty line: end of the header section */
                    break;
                }
                if (c->total >= DSN_HEADERS_MAX && ch != ' ' && ch != '\t') {
                    c->done = c->truncated = 1;
                    break;
                }
            }
        }
        if (ch == '\n') {
            c->at_bol = 1;
        } else if (ch != '\r') {
            c->line_len++;
            if (c->headers_only && c->total >= DSN_HEADERS_MAX + DSN_LINE_MAX) {
                c->done = c->truncated = 1;     /* one endless line: cut it */
                break;
            }
        }
        dsn_sink(c, ch);
    }
}

/*
 * dsn_copy - read the original (env->size stored bytes at body_offset,
 * or to the end of the file) through c. 0, or -1 on a read error.
 */
static int dsn_copy(const SPOOL_ENV *env, int fd, DSN_COPY *c)
{
    char *buf = xmalloc(DSN_BLOCK);
    long long off = env->body_offset;
    long long left = env->size > 0 ? env->size : -1;
    int rc = 0;

    c->at_bol = 1;
    c->marker_bol = 1;
    c->ends_nl = 1;
    while (!c->done && left != 0) {
        size_t want = DSN_BLOCK;
        if (left > 0 && (long long)want > left)
            want = (size_t)left;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = -1;
            break;
        }
        if (got == 0)
            break;
        dsn_feed(c, buf, (size_t)got);
        off += got;
        if (left > 0)
            left -= got;
    }
    free(buf);
    return rc;
}

/* DSN_DIAG - a recipient's reason taken apart: the remote MTA and the reply, when it is one */
typedef struct dsn_diag {
    char mta[256];              /* "mx.example.org", "" unknown */
    char text[DSN_TEXT_MAX + 1];/* the reply or our own words */
    int smtp;                   /* text is a remote SMTP reply ("smtp;"), else our words ("X-Rcptgate;") */
} DSN_DIAG;

/*
 * dsn_diag - "host NAME[ADDR] said: 550 5.1.1 ... (in reply to RCPT TO
 * command)" (Postfix's words, which the queue manager writes) gives the
 * Remote-MTA NAME and the reply; a bare "550 ..." is a reply from an
 * unknown host; anything else ("connect to ...: Connection refused") is
 * our own diagnosis.
 */
static void dsn_diag(DSN_DIAG *d, const char *reason, int utf8)
{
    char clean[DSN_TEXT_MAX + 1];
    const char *p = clean;

    dsn_clean(clean, sizeof(clean), reason && *reason ? reason : "delivery failed", utf8);
    d->mta[0] = '\0';
    d->smtp = 0;
    if (strncmp(p, "host ", 5) == 0) {
        const char *said = strstr(p, " said: ");
        size_t nl = strcspn(p + 5, "[ ");
        if (said && nl > 0 && nl < sizeof(d->mta)) {
            memcpy(d->mta, p + 5, nl);
            d->mta[nl] = '\0';
            p = said + 7;
        }
    }
    d->smtp = p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
              (p[3] == ' ' || p[3] == '-' || p[3] == '\0');
    snprintf(d->text, sizeof(d->text), "%s", p);
    if (d->smtp) {              /* the reply alone, without Postfix's "(in reply to ...)" */
        char *tail = strstr(d->text, " (in reply to ");
        if (tail)
            *tail = '\0';
    }
}

size_t dsn_status_len(const char *p)
{
    size_t n = 1;

    if (p[0] != '2' && p[0] != '4' && p[0] != '5')
        return 0;
    for (int part = 0; part < 2; part++) {
        size_t digits = 0;

        if (p[n++] != '.')
            return 0;
        while (p[n] >= '0' && p[n] <= '9' && digits < 4) {
            n++;
            digits++;
        }
        if (digits == 0 || digits > 3)
            return 0;
    }
    return p[n] == ' ' || p[n] == '\0' ? n : 0;
}

void dsn_reply_status(char *out, size_t size, const char *reply, const char *ok2)
{
    const char *text = reply + 3;
    char cls = reply[0];
    size_t n;

    if (size == 0)
        return;
    if ((cls != '2' && cls != '4' && cls != '5') || reply[1] < '0' || reply[1] > '9'
        || reply[2] < '0' || reply[2] > '9' || (*text != ' ' && *text != '\0')) {
        snprintf(out, size, "%s", reply);
        return;
    }
    if (*text == ' ')
        text++;
    if ((n = dsn_status_len(text)) > 0) {
        snprintf(out, size, "%s", reply);
        if ((size_t) (text - reply) < size)
            out[text - reply] = cls;    /* the status's class is the reply's */
        return;
    }
    snprintf(out, size, "%.3s %s%s%s", reply, cls == '2' ? ok2 : cls == '4' ? "4.0.0" : "5.0.0",
             *text ? " " : "", text);
}

/* dsn_status - a recipient's status "5.1.1": as recorded when it is well formed (its class the kind's), else the kind's default */
static const char *dsn_status(const SPOOL_RCPT *r, int kind, char *buf, size_t size)
{
    const char *s = r->dsn;

    if (s && dsn_status_len(s) == strlen(s)) {
        /* The kind's class: an expired 4.x.y fails as 5.x.y (RFC 3463), a delay is 4.x.y. */
        snprintf(buf, size, "%s", s);
        buf[0] = dsn_kind(kind)->status[0];
        return buf;
    }
    return dsn_kind(kind)->status;
}

/* dsn_addr_field - "rfc822; a@b", or "utf-8; ..." for a non-ASCII address under SMTPUTF8 (RFC 6533) */
static void dsn_addr_field(DSN_OUT *o, const char *name, const char *addr, int utf8)
{
    char clean[DSN_TEXT_MAX + 1];

    dsn_clean(clean, sizeof(clean), addr, utf8);
    dsn_printf(o, "%s: %s; %s\r\n", name, printable_ascii(clean) ? "rfc822" : "utf-8", clean);
}

/* dsn_orcpt_field - Original-Recipient from ORCPT "type;xtext": decoded (RFC 3461 4.2), or kept when that would not be safe */
static void dsn_orcpt_field(DSN_OUT *o, const char *orcpt, int utf8)
{
    char type[64], val[DSN_TEXT_MAX + 1], dec[DSN_TEXT_MAX + 1];
    const char *semi = strchr(orcpt, ';');

    if (!semi || semi == orcpt || (size_t)(semi - orcpt) >= sizeof(type))
        return;
    memcpy(type, orcpt, (size_t)(semi - orcpt));
    type[semi - orcpt] = '\0';
    dsn_clean(type, sizeof(type), type, 0);
    if (strspn(type, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != strlen(type))
        return;
    dsn_clean(val, sizeof(val), semi + 1, utf8);
    if (strcasecmp(type, "rfc822") == 0 && dsn_xtext_decode(dec, sizeof(dec), val) == 0)
        dsn_printf(o, "Original-Recipient: %s; %s\r\n", type, dec);
    else
        dsn_printf(o, "Original-Recipient: %s; %s\r\n", type, val);
}

/* dsn_boundary - a boundary for the report: the new queue id and a tag, numbered again if the original holds it */
static void dsn_boundary(char *dst, size_t size, const char *id, int attempt)
{
    if (attempt == 0)
        snprintf(dst, size, "=_rcptgate_%s_=", id);
    else
        snprintf(dst, size, "=_rcptgate_%s_%d_=", id, attempt);
}

/* dsn_human - part 1: what happened, in words */
static void dsn_human(DSN_OUT *o, const SPOOL_ENV *env, const size_t *due, size_t ndue, int kind,
                      const char *host, int utf8, int returned_full, int too_big)
{
    char until[64];

    dsn_printf(o, "This report comes from the mail system at host %s.\r\n\r\n", host);
    if (kind == DSN_DELAYED) {
        dsn_date(until, sizeof(until), env->arrival + var_smtpd_queue_lifetime_ms / 1000);
        dsn_printf(o, "This is a warning only: nothing needs to be sent again.\r\n\r\n"
                      "Your message has not reached the recipients listed below yet.\r\n"
                      "Delivery will be tried again until %s.\r\n"
                      "If it still fails by then, another report will tell you.\r\n\r\n", until);
    } else if (kind == DSN_RELAYED) {
        dsn_puts(o, "This is a notice only: nothing needs to be sent again.\r\n\r\n"
                    "You asked to be told when your message was delivered. It has\r\n"
                    "been passed on for the recipients listed below to a mail\r\n"
                    "server that does not send such notices, so this is the last\r\n"
                    "you will hear of it unless delivery fails further on.\r\n\r\n");
    } else {
        dsn_puts(o, "Your message could not be delivered to the recipients listed\r\n"
                    "below, and the mail system has given up trying. The reason\r\n"
                    "given for each recipient follows its address.\r\n\r\n");
    }
    if (returned_full)
        dsn_puts(o, "Your message is attached after the delivery report.\r\n");
    else if (too_big)
        dsn_puts(o, "Your message was too large to send back whole: only its\r\n"
                    "header section is attached after the delivery report.\r\n");
    else
        dsn_puts(o, "The header section of your message is attached after the\r\n"
                    "delivery report.\r\n");
    dsn_puts(o, "\r\nIf you need help, ask your own postmaster and include this report.\r\n\r\n");
    dsn_printf(o, "%s\r\n\r\n", dsn_kind(kind)->listed);
    for (size_t i = 0; i < ndue; i++) {
        const SPOOL_RCPT *r = &env->rcpt[due[i]];
        char addr[DSN_TEXT_MAX + 1], why[DSN_TEXT_MAX + 1];
        dsn_clean(addr, sizeof(addr), r->addr, utf8);
        dsn_clean(why, sizeof(why), r->reason && *r->reason ? r->reason : "no reason was recorded", utf8);
        dsn_printf(o, "<%s>:\r\n    %s\r\n\r\n", addr, why);
    }
}

/* dsn_status_part - part 2: the machine-readable report (RFC 3464 2.2 and 2.3) */
static void dsn_status_part(DSN_OUT *o, const SPOOL_ENV *env, const size_t *due, size_t ndue,
                            int kind, const char *host, int utf8)
{
    char buf[DSN_TEXT_MAX + 1], dec[DSN_TEXT_MAX + 1], date[64], now[64], st[16];

    dsn_printf(o, "Reporting-MTA: dns; %s\r\n", host);
    dsn_clean(buf, sizeof(buf), env->id, 0);
    dsn_printf(o, "X-Rcptgate-Queue-ID: %s\r\n", buf);
    dsn_addr_field(o, "X-Rcptgate-Sender", env->sender, utf8);
    if (env->envid && *env->envid) {
        /* RFC 3461 4.4: the ENVID is given back decoded; kept as xtext when decoding would give unsafe bytes */
        dsn_clean(buf, sizeof(buf), env->envid, 0);
        dsn_printf(o, "Original-Envelope-Id: %s\r\n", dsn_xtext_decode(dec, sizeof(dec), buf) == 0 ? dec : buf);
    }
    dsn_date(date, sizeof(date), env->arrival);
    dsn_printf(o, "Arrival-Date: %s\r\n", date);
    dsn_date(now, sizeof(now), (long long)time(NULL));
    for (size_t i = 0; i < ndue; i++) {
        const SPOOL_RCPT *r = &env->rcpt[due[i]];
        DSN_DIAG d;
        dsn_puts(o, "\r\n");
        dsn_addr_field(o, "Final-Recipient", r->addr, utf8);
        if (r->orcpt && *r->orcpt)
            dsn_orcpt_field(o, r->orcpt, utf8);
        dsn_printf(o, "Action: %s\r\n", dsn_kind(kind)->action);
        dsn_printf(o, "Status: %s\r\n", dsn_status(r, kind, st, sizeof(st)));
        dsn_diag(&d, r->reason, utf8);
        if (d.mta[0])
            dsn_printf(o, "Remote-MTA: dns; %s\r\n", d.mta);
        dsn_printf(o, "Diagnostic-Code: %s; %s\r\n", d.smtp ? "smtp" : "X-Rcptgate", d.text);
        dsn_printf(o, "Last-Attempt-Date: %s\r\n", now);
        if (kind == DSN_DELAYED) {
            dsn_date(date, sizeof(date), env->arrival + var_smtpd_queue_lifetime_ms / 1000);
            dsn_printf(o, "Will-Retry-Until: %s\r\n", date);
        }
    }
}

int dsn_make(SPOOL *sp, const SPOOL_ENV *env, int body_fd, const size_t *idx, size_t n, int kind,
             const char *hostname, char id_out[SPOOL_ID_LEN], char *err, size_t errlen)
{
    if (!env->sender || !*env->sender || env->dsn_kind == 1)
        return 1;               /* never a report to the null sender, nor about a report */

    size_t *due = xcalloc(n ? n : 1, sizeof(*due));
    size_t ndue = 0;
    for (size_t i = 0; i < n; i++)
        if (idx[i] < env->nrcpt && dsn_due(&env->rcpt[idx[i]], kind))
            due[ndue++] = idx[i];
    if (ndue == 0) {
        free(due);
        return 1;
    }

    for (const unsigned char *p = (const unsigned char *)env->sender; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {     /* smtpd never takes such a sender: do not write it as an address */
            snprintf(err, errlen, "the sender address holds a control character");
            free(due);
            return 2;
        }

    int utf8 = dsn_param(env->mail_params, "SMTPUTF8");
    int eightbit = utf8 || dsn_param(env->mail_params, "BODY=8BITMIME");
    long long limit = var_smtpd_size_limit > 0 ? var_smtpd_size_limit : 10240000;
    int too_big = env->size > limit;
    int full = kind == DSN_FAILED && env->ret == SPOOL_RET_FULL && !too_big;
    char host[256], sender[DSN_TEXT_MAX + 1], id[SPOOL_ID_LEN], boundary[96], marker[100], date[64];

    dsn_clean(host, sizeof(host), hostname && *hostname ? hostname : "localhost", 0);
    dsn_clean(sender, sizeof(sender), env->sender, utf8);
    spool_id_new(id);

    /*
     * A boundary the returned part does not hold at a line start (RFC
     * 2046 5.1.1). The same pass finds 8-bit bytes in a message that did
     * not declare BODY=8BITMIME: the report then says 8bit, not a 7bit lie.
     */
    for (int attempt = 0;; attempt++) {
        dsn_boundary(boundary, sizeof(boundary), id, attempt);
        snprintf(marker, sizeof(marker), "--%s", boundary);
        DSN_COPY scan = {.headers_only = !full, .marker = marker, .marker_len = strlen(marker)};
        if (dsn_copy(env, body_fd, &scan) < 0) {
            snprintf(err, errlen, "read %s: %s", env->id, strerror(errno));
            free(due);
            return -1;
        }
        if (scan.eight)
            eightbit = 1;
        if (!scan.found)
            break;
        if (attempt >= 10) {
            snprintf(err, errlen, "%s: no MIME boundary absent from the message", env->id);
            free(due);
            return -1;
        }
    }

    /* the report's envelope: from the null sender, a DSN itself */
    SPOOL_RCPT rcpt = {.addr = (char *)env->sender, .state = SPOOL_RCPT_TODO};
    SPOOL_ENV denv = {
        .arrival = (long long)time(NULL),
        .sender = "",
        .mail_params = utf8 ? "SMTPUTF8 BODY=8BITMIME" : eightbit ? "BODY=8BITMIME" : "",
        .ret = SPOOL_RET_DEFAULT,
        .dsn_kind = 1,
        .client = {.name = "localhost", .addr = "127.0.0.1", .proto = "ESMTP"},
        .nrcpt = 1,
        .rcpt = &rcpt,
    };
    memcpy(denv.id, id, sizeof(denv.id));
    SPOOL_FILE *f = spool_create(sp, &denv, err, errlen);
    if (!f) {
        free(due);
        return -1;
    }
    DSN_OUT *o = xcalloc(1, sizeof(*o));
    o->f = f;
    o->at_bol = 1;

    dsn_date(date, sizeof(date), denv.arrival);
    dsn_printf(o, "Date: %s\r\n", date);
    dsn_printf(o, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host);
    dsn_printf(o, "To: <%s>\r\n", sender);
    dsn_printf(o, "Subject: %s\r\n", dsn_kind(kind)->subject);
    dsn_printf(o, "Message-ID: <%s.dsn@%s>\r\n", id, host);
    dsn_puts(o, "Auto-Submitted: auto-replied\r\n");
    dsn_puts(o, "MIME-Version: 1.0\r\n");
    /* report-type names the second part's subtype (RFC 6522), global-delivery-status under SMTPUTF8 (RFC 6533) */
    dsn_printf(o, "Content-Type: multipart/report; report-type=%s;\r\n\tboundary=\"%s\"\r\n",
               utf8 ? "global-delivery-status" : "delivery-status", boundary);
    dsn_printf(o, "Content-Transfer-Encoding: %s\r\n", eightbit ? "8bit" : "7bit");
    dsn_puts(o, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    dsn_printf(o, "--%s\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=%s\r\n\r\n",
               boundary, utf8 ? "utf-8" : "us-ascii");
    dsn_human(o, env, due, ndue, kind, host, utf8, full, too_big && kind == DSN_FAILED && env->ret == SPOOL_RET_FULL);

    dsn_printf(o, "\r\n--%s\r\nContent-Description: Delivery report\r\nContent-Type: %s\r\n\r\n", boundary,
               utf8 ? "message/global-delivery-status" : "message/delivery-status");
    dsn_status_part(o, env, due, ndue, kind, host, utf8);

    dsn_printf(o, "\r\n--%s\r\nContent-Description: %s\r\nContent-Type: %s\r\n", boundary,
               full ? "Undelivered Message" : dsn_kind(kind)->returned,
               full ? (utf8 ? "message/global" : "message/rfc822")
                    : (utf8 ? "message/global-headers" : "text/rfc822-headers"));
    if (eightbit)
        dsn_puts(o, "Content-Transfer-Encoding: 8bit\r\n");
    dsn_puts(o, "\r\n");
    DSN_COPY copy = {.headers_only = !full, .out = o};
    int rc = dsn_copy(env, body_fd, &copy);
    int saved = errno;
    if (!copy.ends_nl)
        dsn_puts(o, "\r\n");
    if (copy.truncated)
        dsn_puts(o, "X-Rcptgate-Note: the header section was cut here (too long)\r\n");
    dsn_printf(o, "\r\n--%s--\r\n", boundary);
    dsn_flush(o);
    free(due);

    if (rc < 0) {
        snprintf(err, errlen, "read %s: %s", env->id, strerror(saved));
        spool_abort(f);
        free(o);
        return -1;
    }
    if (o->failed) {
        snprintf(err, errlen, "write report %s: %s", id, strerror(o->err));
        spool_abort(f);
        free(o);
        return -1;
    }
    free(o);
    /* the report ends with CRLF and no final dot, as the spool keeps every message */
    if (spool_commit(f, 0, err, errlen) < 0)
        return -1;
    memcpy(id_out, id, SPOOL_ID_LEN);
    return 0;
}
