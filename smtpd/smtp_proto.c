/*
 * smtp_proto.c - SMTP command lines, paths and ESMTP parameters
 *
 * SYNOPSIS
 *   cmd = smtp_proto_split(line, &arg);
 *   code = smtp_proto_mail(arg, &path, reply, sizeof(reply));
 *   code = smtp_proto_rcpt(arg, smtputf8, &path, reply, sizeof(reply));
 *
 * DESCRIPTION
 *   The RFC 5321 grammar of a command's argument, and nothing else: what
 *   a path may hold is decided here, what it means (ours, relayed, known)
 *   is for smtpd_check.c. Paths follow RFC 5321 section 4.1.2 with
 *   Postfix's leniency where real senders need it (a blank after "FROM:",
 *   runs of dots in a local part, a path without brackets); a source
 *   route is stripped from addr but kept in raw and flagged, so the
 *   checks see it and refuse to relay it. Non-ASCII octets must be
 *   well-formed UTF-8 and need SMTPUTF8 (RFC 6531).
 *
 * DIAGNOSTICS
 *   Postfix's reply codes and texts, in the caller's buffer.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp_proto.h"

static const struct {
    const char *verb;
    int cmd;
} smtp_proto_verbs[] = {
    {"HELO", SMTP_CMD_HELO}, {"EHLO", SMTP_CMD_EHLO}, {"STARTTLS", SMTP_CMD_STARTTLS},
    {"AUTH", SMTP_CMD_AUTH}, {"MAIL", SMTP_CMD_MAIL}, {"RCPT", SMTP_CMD_RCPT},
    {"DATA", SMTP_CMD_DATA}, {"RSET", SMTP_CMD_RSET}, {"NOOP", SMTP_CMD_NOOP},
    {"VRFY", SMTP_CMD_VRFY}, {"HELP", SMTP_CMD_HELP}, {"QUIT", SMTP_CMD_QUIT},
    {"GET", SMTP_CMD_FORBIDDEN}, {"POST", SMTP_CMD_FORBIDDEN}, {"CONNECT", SMTP_CMD_FORBIDDEN},
};

static const char *smtp_proto_names[SMTP_CMD_COUNT] = {
    "unknown", "helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "rset",
    "noop", "vrfy", "help", "quit", "unknown",
};

/* smtp_proto_cmd_name - the lowercase name of a command for logs */
const char *smtp_proto_cmd_name(int cmd)
{
    if (cmd < 0 || cmd >= SMTP_CMD_COUNT)
        return "unknown";
    return smtp_proto_names[cmd];
}

/* smtp_proto_upper - copy and ASCII-uppercase (locale-independent) */
char *smtp_proto_upper(char *dst, size_t size, const char *src, size_t len)
{
    size_t i;

    if (size == 0)
        return dst;
    for (i = 0; i < len && i + 1 < size && src[i]; i++)
        dst[i] = (src[i] >= 'a' && src[i] <= 'z') ? (char) (src[i] - 'a' + 'A') : src[i];
    dst[i] = 0;
    return dst;
}

/* smtp_proto_split - find the verb and the argument */
int smtp_proto_split(const char *line, const char **arg)
{
    size_t len = strcspn(line, " \t");
    const char *p = line + len;

    while (*p == ' ' || *p == '\t')
        p++;
    *arg = p;
    for (size_t i = 0; i < sizeof(smtp_proto_verbs) / sizeof(smtp_proto_verbs[0]); i++)
        if (strlen(smtp_proto_verbs[i].verb) == len
            && strncasecmp(line, smtp_proto_verbs[i].verb, len) == 0)
            return smtp_proto_verbs[i].cmd;

    /* "Subject: ..." or "From: ...": a message body sent as commands. */
    if (len > 1 && line[len - 1] == ':') {
        for (size_t i = 0; i + 1 < len; i++) {
            unsigned char ch = (unsigned char) line[i];

            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
                  || (ch >= '0' && ch <= '9') || ch == '-'))
                return SMTP_CMD_UNKNOWN;
        }
        return SMTP_CMD_FORBIDDEN;
    }
    return SMTP_CMD_UNKNOWN;
}

/* smtp_proto_group_end - commands that must end a pipelined group */
int smtp_proto_group_end(int cmd)
{
    switch (cmd) {
    case SMTP_CMD_HELO:
    case SMTP_CMD_EHLO:
    case SMTP_CMD_DATA:
    case SMTP_CMD_VRFY:
    case SMTP_CMD_NOOP:
    case SMTP_CMD_QUIT:
    case SMTP_CMD_STARTTLS:
    case SMTP_CMD_AUTH:
        return 1;
    default:
        return 0;
    }
}

/* smtp_proto_utf8 - length of a well-formed UTF-8 sequence at p (0 if not) */
static size_t smtp_proto_utf8(const unsigned char *p, const unsigned char *end)
{
    size_t n;
    unsigned int cp;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if ((size_t) (end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF. */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))
        || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* smtp_proto_atext - RFC 5322 atext (ASCII part) */
static int smtp_proto_atext(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
        || (ch != 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL);
}

/*
 * smtp_proto_domain - check a domain or address literal of len octets;
 * 0 good, -1 bad. *utf8 is set when it holds non-ASCII.
 */
static int smtp_proto_domain(const unsigned char *p, size_t len, int *utf8)
{
    const unsigned char *end = p + len;
    size_t label = 0;

    if (len == 0 || len > SMTP_DOMAIN_MAX)
        return -1;
    if (p[0] == '[') {
        /* Address literal: "[192.0.2.1]", "[IPv6:...]"; the checks judge the content. */
        if (len < 3 || end[-1] != ']')
            return -1;
        for (const unsigned char *q = p + 1; q < end - 1; q++)
            if (*q < 33 || *q > 126 || *q == '[' || *q == ']' || *q == '\\')
                return -1;
        return 0;
    }
    while (p < end) {
        if (*p == '.') {
            /* Empty labels are wrong, but one trailing dot is tolerated. */
            if (label == 0)
                return -1;
            label = 0;
            p++;
            continue;
        }
        if (*p >= 0x80) {
            size_t n = smtp_proto_utf8(p, end);

            if (n == 0)
                return -1;
            *utf8 = 1;
            p += n;
            label += n;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                   || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_') {
            p++;
            label++;
        } else {
            return -1;
        }
        if (label > 63)
            return -1;
    }
    return 0;
}

/*
 * smtp_proto_mailbox - check "local@domain" (or a bare local part) of len
 * octets; 0 good, -1 bad. Sets out->domain and out->is_utf8. A sender's
 * local part may pass SMTP_LOCAL_MAX (SRS, BATV and VERP senders can, and
 * Postfix takes them; RFC 5321 4.5.3.1 asks for tolerance); the path limit
 * bounds it. A recipient's may not: no store key is longer.
 */
static int smtp_proto_mailbox(const char *s, size_t len, int sender, SMTP_PATH *out)
{
    const unsigned char *p = (const unsigned char *) s;
    const unsigned char *end = p + len;
    const unsigned char *local_end;

    if (len == 0)
        return -1;
    if (*p == '"') {
        /* Quoted local part: qtextSMTP, quoted pairs, UTF-8. */
        for (p++;; p++) {
            if (p >= end)
                return -1;
            if (*p == '"')
                break;
            if (*p == '\\') {
                if (p + 1 >= end || p[1] < 32 || p[1] > 126)
                    return -1;
                p++;
            } else if (*p >= 0x80) {
                size_t n = smtp_proto_utf8(p, end);

                if (n == 0)
                    return -1;
                out->is_utf8 = 1;
                p += n - 1;
            } else if (*p < 32 || *p > 126) {
                return -1;
            }
        }
        p++;
    } else {
        /* Dot-string; runs of dots are let through as Postfix does. */
        while (p < end && *p != '@') {
            if (*p >= 0x80) {
                size_t n = smtp_proto_utf8(p, end);

                if (n == 0)
                    return -1;
                out->is_utf8 = 1;
                p += n;
            } else if (*p == '.' || smtp_proto_atext(*p)) {
                p++;
            } else {
                return -1;
            }
        }
    }
    local_end = p;
    if (local_end == (const unsigned char *) s
        || (!sender && (size_t) (local_end - (const unsigned char *) s) > SMTP_LOCAL_MAX))
        return -1;
    if (p == end) {
        out->domain = out->addr + len;
        return 0;
    }
    if (*p != '@')
        return -1;
    p++;
    if (smtp_proto_domain(p, (size_t) (end - p), &out->is_utf8) < 0)
        return -1;
    out->domain = out->addr + ((const char *) p - s);
    return 0;
}

/*
 * smtp_proto_path - parse "<path>" or a bare path at *pp into out; on
 * success *pp is just past it. 0 good, -1 malformed. sender: MAIL's.
 */
static int smtp_proto_path(const char **pp, int sender, SMTP_PATH *out)
{
    const char *p = *pp;
    const char *start;
    const char *end;
    const char *box;
    size_t len;

    if (*p == '<') {
        int quoted = 0;

        start = ++p;
        for (; *p; p++) {
            if (quoted && *p == '\\' && p[1]) {
                p++;
            } else if (*p == '"') {
                quoted = !quoted;
            } else if (*p == '>' && !quoted) {
                break;
            }
        }
        if (*p != '>')
            return -1;
        end = p++;
    } else {
        start = p;
        p += strcspn(p, " \t");
        end = p;
        if (end == start)
            return -1;
    }
    if (*p != 0 && *p != ' ' && *p != '\t')
        return -1;
    len = (size_t) (end - start);
    if (len + 2 > SMTP_PATH_MAX)
        return -1;
    memcpy(out->raw, start, len);
    out->raw[len] = 0;

    box = start;
    if (len > 0 && *start == '@') {
        /* A source route "@a,@b:": stripped, flagged, kept in raw. */
        const char *colon = memchr(start, ':', len);

        if (colon == NULL)
            return -1;
        for (const char *q = start; q < colon;) {
            const char *comma;
            int ignore = 0;

            if (*q != '@')
                return -1;
            q++;
            comma = memchr(q, ',', (size_t) (colon - q));
            if (comma == NULL)
                comma = colon;
            if (smtp_proto_domain((const unsigned char *) q, (size_t) (comma - q), &ignore) < 0)
                return -1;
            q = comma < colon ? comma + 1 : colon;
        }
        out->has_route = 1;
        box = colon + 1;
    }
    len = (size_t) (end - box);
    memcpy(out->addr, box, len);
    out->addr[len] = 0;
    out->domain = out->addr + len;
    if (len == 0) {
        if (out->has_route)
            return -1;
        out->is_null = 1;
    } else if (smtp_proto_mailbox(out->addr, len, sender, out) < 0) {
        return -1;
    }
    *pp = p;
    return 0;
}

/* smtp_proto_param - the next "KEY[=VALUE]"; 0 none left, 1 one, -1 malformed */
static int smtp_proto_param(const char **pp, char *key, size_t keysize, char *val, size_t valsize)
{
    const char *p = *pp;
    size_t n = 0;

    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == 0)
        return 0;
    key[0] = val[0] = 0;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-') {
        if (n + 1 >= keysize)
            return -1;
        key[n++] = *p++;
    }
    key[n] = 0;
    if (n == 0)
        return -1;
    if (*p == '=') {
        p++;
        n = 0;
        while ((unsigned char) *p >= 33 && (unsigned char) *p <= 126 && *p != '=') {
            if (n + 1 >= valsize)
                return -1;
            val[n++] = *p++;
        }
        val[n] = 0;
        if (n == 0)
            return -1;
    }
    if (*p != 0 && *p != ' ' && *p != '\t')
        return -1;
    *pp = p;
    return 1;
}

/*
 * smtp_proto_xtext - is s RFC 3461 xtext ("!".."~" but "+" and "=", or
 * "+XX" with two upper-case hex digits)? Its decoded length, or -1.
 */
static long smtp_proto_xtext(const char *s)
{
    long n = 0;

    for (; *s; s++, n++) {
        unsigned char ch = (unsigned char) *s;

        if (ch == '+') {
            if (!strchr("0123456789ABCDEF", s[1]) || s[1] == 0 || !strchr("0123456789ABCDEF", s[2]) || s[2] == 0)
                return -1;
            s += 2;
        } else if (ch < 33 || ch > 126 || ch == '=') {
            return -1;
        }
    }
    return n;
}

/* smtp_proto_notify - NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY; the bits or -1 */
static int smtp_proto_notify(const char *val)
{
    int bits = 0;

    while (*val) {
        size_t len = strcspn(val, ",");
        int bit;

        if (len == 5 && strncasecmp(val, "NEVER", 5) == 0)
            bit = SMTP_NOTIFY_NEVER;
        else if (len == 7 && strncasecmp(val, "SUCCESS", 7) == 0)
            bit = SMTP_NOTIFY_SUCCESS;
        else if (len == 7 && strncasecmp(val, "FAILURE", 7) == 0)
            bit = SMTP_NOTIFY_FAILURE;
        else if (len == 5 && strncasecmp(val, "DELAY", 5) == 0)
            bit = SMTP_NOTIFY_DELAY;
        else
            return -1;
        if (bits & bit)
            return -1;
        bits |= bit;
        val += len;
        if (*val == ',' && *++val == 0)
            return -1;          /* a trailing comma */
    }
    /* RFC 3461 section 4.1: NEVER must appear by itself */
    if (bits == 0 || ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER))
        return -1;
    return bits;
}

/* smtp_proto_orcpt - ORCPT=addr-type;xtext (RFC 3461 section 4.2): 0 or -1 */
static int smtp_proto_orcpt(const char *val)
{
    const char *semi = strchr(val, ';');

    if (semi == NULL || semi == val || strlen(val) > SMTP_ORCPT_MAX)
        return -1;
    /* addr-type is an atom */
    for (const char *p = val; p < semi; p++)
        if (!smtp_proto_atext((unsigned char) *p))
            return -1;
    return semi[1] != 0 && smtp_proto_xtext(semi + 1) > 0 ? 0 : -1;
}

/* smtp_proto_reset - an empty SMTP_PATH */
static void smtp_proto_reset(SMTP_PATH *out)
{
    memset(out, 0, sizeof(*out));
    out->domain = out->addr;
    out->size = -1;
}

/* smtp_proto_keyword - skip "FROM:" / "TO:" and the blanks Postfix tolerates after it */
static const char *smtp_proto_keyword(const char *arg, const char *kw)
{
    size_t n = strlen(kw);

    if (strncasecmp(arg, kw, n) != 0)
        return NULL;
    arg += n;
    while (*arg == ' ' || *arg == '\t')
        arg++;
    return arg;
}

/* smtp_proto_mail - parse MAIL's argument (see smtp_proto.h) */
int smtp_proto_mail(const char *arg, SMTP_PATH *out, char *reply, size_t replylen)
{
    const char *p;
    char key[32];
    char val[SMTP_ORCPT_MAX + 64];
    size_t plen = 0;
    int rc;

    smtp_proto_reset(out);
    if ((p = smtp_proto_keyword(arg, "FROM:")) == NULL || *p == 0) {
        snprintf(reply, replylen, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return 501;
    }
    if (smtp_proto_path(&p, 1, out) < 0) {
        smtp_proto_reset(out);
        snprintf(reply, replylen, "501 5.1.7 Bad sender address syntax");
        return 501;
    }
    while ((rc = smtp_proto_param(&p, key, sizeof(key), val, sizeof(val))) > 0) {
        if (strcasecmp(key, "SIZE") == 0) {
            long long size = 0;

            if (val[0] == 0 || strspn(val, "0123456789") != strlen(val)) {
                snprintf(reply, replylen, "501 5.5.4 Bad message size syntax");
                return 501;
            }
            for (const char *d = val; *d; d++) {
                if (size > (LLONG_MAX - 9) / 10) {
                    size = LLONG_MAX;
                    break;
                }
                size = size * 10 + (*d - '0');
            }
            out->size = size;
        } else if (strcasecmp(key, "BODY") == 0) {
            if (strcasecmp(val, "7BIT") == 0) {
                out->body = SMTP_BODY_7BIT;
            } else if (strcasecmp(val, "8BITMIME") == 0) {
                out->body = SMTP_BODY_8BITMIME;
            } else {
                snprintf(reply, replylen, "501 5.5.4 Unsupported BODY parameter value");
                return 501;
            }
        } else if (strcasecmp(key, "SMTPUTF8") == 0) {
            if (val[0]) {
                snprintf(reply, replylen, "501 5.5.4 Bad SMTPUTF8 parameter syntax");
                return 501;
            }
            out->smtputf8 = 1;
        } else if (strcasecmp(key, "RET") == 0) {
            if (out->ret != SMTP_RET_NONE) {
                snprintf(reply, replylen, "501 5.5.4 Duplicate RET parameter");
                return 501;
            }
            if (strcasecmp(val, "FULL") == 0) {
                out->ret = SMTP_RET_FULL;
            } else if (strcasecmp(val, "HDRS") == 0) {
                out->ret = SMTP_RET_HDRS;
            } else {
                snprintf(reply, replylen, "501 5.5.4 Bad RET parameter syntax");
                return 501;
            }
        } else if (strcasecmp(key, "ENVID") == 0) {
            long dlen = smtp_proto_xtext(val);

            if (out->envid[0]) {
                snprintf(reply, replylen, "501 5.5.4 Duplicate ENVID parameter");
                return 501;
            }
            if (dlen <= 0 || dlen > SMTP_ENVID_MAX || strlen(val) >= sizeof(out->envid)) {
                snprintf(reply, replylen, "501 5.5.4 Bad ENVID parameter syntax");
                return 501;
            }
            memcpy(out->envid, val, strlen(val) + 1);
        } else if (strcasecmp(key, "AUTH") == 0) {
            /* RFC 4954 AUTH=<mailbox>: accepted and not passed on. */
            if (val[0] == 0) {
                snprintf(reply, replylen, "501 5.5.4 Bad AUTH parameter syntax");
                return 501;
            }
        } else {
            snprintf(reply, replylen, "555 5.5.4 Unsupported option: %s", key);
            return 555;
        }
    }
    if (rc < 0) {
        snprintf(reply, replylen, "501 5.5.4 Bad MAIL parameter syntax");
        return 501;
    }
    if (out->is_utf8 && !out->smtputf8) {
        snprintf(reply, replylen, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
        return 553;
    }
    /* What the next hop hears: only what we understood, in one form. */
    if (out->size >= 0)
        plen += (size_t) snprintf(out->params + plen, sizeof(out->params) - plen, "SIZE=%lld", out->size);
    if (out->body)
        plen += (size_t) snprintf(out->params + plen, sizeof(out->params) - plen, "%sBODY=%s",
                                  plen ? " " : "", out->body == SMTP_BODY_8BITMIME ? "8BITMIME" : "7BIT");
    if (out->smtputf8)
        plen += (size_t) snprintf(out->params + plen, sizeof(out->params) - plen, "%sSMTPUTF8", plen ? " " : "");
    if (out->ret)
        plen += (size_t) snprintf(out->params + plen, sizeof(out->params) - plen, "%sRET=%s",
                                  plen ? " " : "", out->ret == SMTP_RET_FULL ? "FULL" : "HDRS");
    if (out->envid[0])
        snprintf(out->params + plen, sizeof(out->params) - plen, "%sENVID=%s", plen ? " " : "", out->envid);
    return 0;
}

/* smtp_proto_rcpt - parse RCPT's argument (see smtp_proto.h) */
int smtp_proto_rcpt(const char *arg, int smtputf8, SMTP_PATH *out, char *reply, size_t replylen)
{
    const char *p;
    char key[32];
    char val[SMTP_ORCPT_MAX + 64];
    size_t plen = 0;
    int rc;

    smtp_proto_reset(out);
    if ((p = smtp_proto_keyword(arg, "TO:")) == NULL || *p == 0) {
        snprintf(reply, replylen, "501 5.5.4 Syntax: RCPT TO:<address>");
        return 501;
    }
    if (smtp_proto_path(&p, 0, out) < 0 || out->is_null) {
        smtp_proto_reset(out);
        snprintf(reply, replylen, "501 5.1.3 Bad recipient address syntax");
        return 501;
    }
    while ((rc = smtp_proto_param(&p, key, sizeof(key), val, sizeof(val))) > 0) {
        if (strcasecmp(key, "NOTIFY") == 0) {
            int bits = out->notify ? -1 : smtp_proto_notify(val);

            if (bits < 0) {
                snprintf(reply, replylen, "501 5.5.4 Bad NOTIFY parameter syntax");
                return 501;
            }
            out->notify = bits;
        } else if (strcasecmp(key, "ORCPT") == 0) {
            if (out->orcpt[0] || smtp_proto_orcpt(val) < 0) {
                snprintf(reply, replylen, "501 5.5.4 Bad ORCPT parameter syntax");
                return 501;
            }
            memcpy(out->orcpt, val, strlen(val) + 1);
        } else {
            /* DSN's are the only RCPT extension we announce */
            snprintf(reply, replylen, "555 5.5.4 Unsupported option: %s", key);
            return 555;
        }
    }
    if (rc < 0) {
        snprintf(reply, replylen, "501 5.5.4 Bad RCPT parameter syntax");
        return 501;
    }
    if (out->is_utf8 && !smtputf8) {
        snprintf(reply, replylen, "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
        return 553;
    }
    if (out->notify) {
        static const char *names[] = {"NEVER", "SUCCESS", "FAILURE", "DELAY"};

        plen += (size_t) snprintf(out->params + plen, sizeof(out->params) - plen, "NOTIFY=");
        for (int b = 0, first = 1; b < 4; b++)
            if (out->notify & (1 << b)) {
                plen += (size_t) snprintf(out->params + plen, sizeof(out->params) - plen, "%s%s",
                                          first ? "" : ",", names[b]);
                first = 0;
            }
    }
    if (out->orcpt[0])
        snprintf(out->params + plen, sizeof(out->params) - plen, "%sORCPT=%s", plen ? " " : "", out->orcpt);
    return 0;
}

/* smtp_proto_data_init - a scanner at the start of a message */
void smtp_proto_data_init(SMTP_DATA_SCAN *ds, int normalize)
{
    ds->state = 1;
    ds->dot = 0;
    ds->bare = 0;
    ds->normalize = normalize != 0;
}

/*
 * smtp_proto_line_end - a line ends (CR LF, or under normalize a bare CR
 * or LF); SMTP_DATA_END when it ends the message, else SMTP_DATA_MORE.
 * Only CR LF . CR LF ends a message, as in Postfix's normalize: a "."
 * line ended bare, or one after a line that ended bare, is a content line,
 * passed on stuffed (".." CR LF). Otherwise "<LF>.<LF>" or "<LF>.<CR><LF>"
 * from an upstream that passes them on would end the message here and
 * smuggle what follows in as a second one (SMTP smuggling).
 */
static int smtp_proto_line_end(SMTP_DATA_SCAN *ds, int crlf, char *out, size_t *o)
{
    if (ds->dot) {
        ds->dot = 0;
        if (crlf && !ds->bare)
            return SMTP_DATA_END;
        out[(*o)++] = '.';
        out[(*o)++] = '.';
    }
    out[(*o)++] = '\r';
    out[(*o)++] = '\n';
    ds->state = 1;
    ds->bare = !crlf;
    return SMTP_DATA_MORE;
}

/* smtp_proto_data_scan - find the end of a message, pass the rest on (see smtp_proto.h) */
int smtp_proto_data_scan(SMTP_DATA_SCAN *ds, const char *in, size_t len, size_t *used,
                         char *out, size_t outsize, size_t *outlen)
{
    size_t i = 0;
    size_t o = 0;
    int rc = SMTP_DATA_MORE;

    while (i < len) {
        unsigned char ch = (unsigned char) in[i];

        /* Room for the most one byte can make: a stuffed dot line's "..", CR, LF. */
        if (outsize - o < 4) {
            rc = SMTP_DATA_FULL;
            break;
        }
        if (ds->state == 2) {
            if (ch == '\n') {
                i++;
                if ((rc = smtp_proto_line_end(ds, 1, out, &o)) == SMTP_DATA_END)
                    break;
                continue;
            }
            if (!ds->normalize) {
                rc = SMTP_DATA_BARE_CR;
                break;
            }
            /* A bare CR ends its line; ch is looked at again on the next one. */
            (void) smtp_proto_line_end(ds, 0, out, &o);
            continue;
        }
        i++;
        if (ch == '\r') {
            ds->state = 2;
            continue;
        }
        if (ch == '\n') {
            if (!ds->normalize) {
                i--;
                rc = SMTP_DATA_BARE_LF;
                break;
            }
            (void) smtp_proto_line_end(ds, 0, out, &o);
            continue;
        }
        if (ds->state == 1 && ch == '.' && !ds->dot) {
            /* Held back until we know whether it ends the message. */
            ds->dot = 1;
            continue;
        }
        if (ds->dot) {
            out[o++] = '.';
            ds->dot = 0;
        }
        out[o++] = (char) ch;
        ds->state = 0;
    }
    if (rc == SMTP_DATA_END) {
        ds->state = 1;
        ds->dot = 0;
        ds->bare = 0;
    }
    *used = i;
    *outlen = o;
    return rc;
}

/* The hop counter's states: where in the header the next byte falls. */
enum { HOPS_LINE, HOPS_NAME, HOPS_SPACE, HOPS_VALUE, HOPS_BODY };

/* smtp_proto_hops_init - a counter at the start of a message */
void smtp_proto_hops_init(SMTP_HOPS *h)
{
    memset(h, 0, sizeof(*h));
    h->state = HOPS_LINE;
}

/* smtp_proto_hops_field - a field name ended in its colon: count it if it is Received */
static void smtp_proto_hops_field(SMTP_HOPS *h)
{
    if (h->len == 8 && memcmp(h->name, "received", 8) == 0)
        h->count++;
    h->state = HOPS_VALUE;
}

/* smtp_proto_hops_scan - count Received: fields (see smtp_proto.h) */
int smtp_proto_hops_scan(SMTP_HOPS *h, const char *buf, size_t n)
{
    for (size_t i = 0; i < n && h->state != HOPS_BODY; i++) {
        unsigned char ch = (unsigned char) buf[i];

        switch (h->state) {
        case HOPS_LINE:
            if (ch == ' ' || ch == '\t') {
                h->state = HOPS_VALUE;          /* a folded line goes on the field before */
            } else if (ch > ' ' && ch < 0x7f && ch != ':') {
                h->name[0] = (char) (ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
                h->len = 1;
                h->state = HOPS_NAME;
            } else {
                h->state = HOPS_BODY;           /* the empty line, or no field at all */
            }
            break;
        case HOPS_NAME:
            if (ch == ':') {
                smtp_proto_hops_field(h);
            } else if (ch == ' ' || ch == '\t') {
                h->state = HOPS_SPACE;
            } else if (ch > ' ' && ch < 0x7f) {
                if (h->len < sizeof(h->name))
                    h->name[h->len] = (char) (ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
                if (h->len < 255)
                    h->len++;
            } else {
                h->state = HOPS_BODY;
            }
            break;
        case HOPS_SPACE:
            if (ch == ':')
                smtp_proto_hops_field(h);
            else if (ch != ' ' && ch != '\t')
                h->state = HOPS_BODY;
            break;
        case HOPS_VALUE:
            if (ch == '\n')
                h->state = HOPS_LINE;
            break;
        }
    }
    return h->count;
}
