/*
 * addr.c - RFC 5321 paths and the normal form rcptgate compares
 *
 * SYNOPSIS
 *	#include "addr.h"
 *
 *	int addr_parse(const char *in, size_t len, int flags, ADDR *out);
 *	int addr_domain(const char *in, size_t len, char *out);
 *	int addr_strip_extension(const char *local, const char *delims, char *out);
 *	const char *addr_strerror(int err);
 *	int addr_key(const char *in, size_t len, int flags, char *out, char *err, size_t errlen);
 *
 * DESCRIPTION
 *	addr_parse() reads one path ("<local@domain>") or bare mailbox
 *	("local@domain") and writes its normal form: every lookup key in the
 *	store, the socketmap, the policy service and smtpd is made here, so
 *	two spellings of one mailbox always meet on the same key.
 *
 *	The local part is either a dot-string or a quoted string. It is
 *	ASCII-lowercased; UTF-8 (RFC 6531) is kept byte for byte but must be
 *	well formed. A quoted local part is written unquoted when its content
 *	is a dot-atom that would itself parse under the same flags
 *	("John"@x is john@x); otherwise it stays quoted with only '"' and
 *	'\' escaped. So "a@b"@d keeps its quotes and never equals the key
 *	a@b, and "u%v"@d stays quoted unless ADDR_ALLOW_PERCENT makes u%v@d
 *	an address in its own right.
 *
 *	The domain is a lowercase A-label without a trailing dot. Pure ASCII
 *	names are checked here (LDH labels of 1 to 63 octets, no empty label)
 *	without calling libidn2; names with "xn--" labels have each such
 *	label checked by libidn2, which must give it back unchanged. Names with
 *	non-ASCII go to idn2_to_ascii_8z() with IDN2_NFC_INPUT and
 *	IDN2_NONTRANSITIONAL (UTS #46 mapping: "BÜCHER" becomes
 *	"xn--bcher-kva") and the result is checked again as an ASCII name.
 *	There is no fall-back to transitional processing: that mapping drops
 *	ZWJ/ZWNJ and folds "ß" into "ss", so the one input could end up on two
 *	different keys depending on which step succeeded; a name that
 *	non-transitional processing refuses is ADDR_ERR_IDN.
 *
 *	Address literals ("[192.0.2.1]", "[IPv6:2001:db8::1]") are checked
 *	with inet_pton() and written in inet_ntop()'s canonical form, the tag
 *	lowercased ("[ipv6:2001:db8::1]"), so that equal addresses compare
 *	equal. Other tagged literals are refused.
 *
 *	Limits (RFC 5321 4.5.3.1): the local part as written at most 64
 *	octets, the domain 255, the path 256 counting the angle brackets
 *	(added in thought when the input has none). The path limit is checked
 *	first, on the input, and again on the normal form, since an A-label or
 *	a canonical IPv6 literal can be longer than what was written; this
 *	keeps the normal form a fixed point: parsing a key gives the key back.
 *
 *	addr_key() is the one normaliser of stored recipient keys: the admin
 *	command, the map file reader and syncd's directory sources all call
 *	it, so "  Bob@X " from a file and "bob@x" from a directory are one key.
 *	It trims white space, refuses the null path and bare local parts, and
 *	takes "@domain" as a catch-all only where the caller allows one.
 *
 *	This runs for every lookup: nothing here allocates, and libidn2
 *	(which does) is not called for pure-ASCII domains without "xn--"
 *	labels. Its answers are kept in a small per-thread memo, so a
 *	gateway whose own domain is an IDN does not pay for it each time.
 *
 * DIAGNOSTICS
 *	The first problem met is returned as an enum addr_error; the outputs
 *	are then empty strings. libidn2 running out of memory is fatal, like
 *	any other allocation failure.
 */
#include "config.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "log.h"
#include "printable.h"

#define ADDR_LABEL_MAX  63              /* RFC 1035 2.3.4 */
#define ADDR_IDN_IN_MAX 1024            /* longest non-ASCII name handed to libidn2 */
#define ADDR_IDN_FLAGS  (IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL)
#define ADDR_MEMO_SLOTS 32              /* per thread, direct-mapped */

/*
 * A libidn2 call costs some microseconds, fifty times a whole ASCII parse,
 * and a gateway whose own domain is an IDN would pay it on every lookup.
 * Its answers depend on nothing but the name, so the last few are kept,
 * per thread (no locks), in fixed slots (no allocation): the name as
 * given, the result, and the A-label form.
 */
typedef struct addr_memo {
    uint32_t hash;
    uint16_t len;                       /* 0: empty slot */
    int16_t err;
    char in[ADDR_DOMAIN_MAX + 1];
    char out[ADDR_DOMAIN_MAX + 1];
} ADDR_MEMO;

static _Thread_local ADDR_MEMO addr_memo[ADDR_MEMO_SLOTS];

static int addr_name(const unsigned char *in, size_t len, char *out, int *utf8, int ascii_only);

/* addr_lower - ASCII lowercase of one byte; other bytes unchanged */
static inline unsigned char addr_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char) (c + ('a' - 'A')) : c;
}

/* addr_letdig - ASCII letter or digit (RFC 5321 Let-dig) */
static inline int addr_letdig(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* addr_atext - RFC 5322 atext, ASCII part */
static inline int addr_atext(unsigned char c)
{
    if (addr_letdig(c))
        return 1;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '/': case '=': case '?': case '^': case '_':
    case '`': case '{': case '|': case '}': case '~':
        return 1;
    default:
        return 0;
    }
}

/* addr_ctl - control character, space or DEL: never part of an address outside quotes */
static inline int addr_ctl(unsigned char c)
{
    return c <= 0x20 || c == 0x7f;
}

/* addr_punct_syntax - characters that are structure, not a bad domain character */
static inline int addr_punct_syntax(unsigned char c)
{
    return c == '[' || c == ']' || c == '"' || c == '<' || c == '>' || c == '\\';
}

/* addr_c1 - is the 2-byte sequence at p a C1 control (U+0080..U+009F)? */
static inline int addr_c1(const unsigned char *p)
{
    return p[0] == 0xc2 && p[1] <= 0x9f;
}

/* addr_memo_slot - the slot for a name, and its hash; NULL if too long to keep */
static ADDR_MEMO *addr_memo_slot(const void *name, size_t len, uint32_t *hash)
{
    const unsigned char *p = name;
    uint32_t h = 2166136261u;           /* FNV-1a */
    size_t i;

    if (len == 0 || len > ADDR_DOMAIN_MAX)
        return NULL;
    for (i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    *hash = h;
    return &addr_memo[h % ADDR_MEMO_SLOTS];
}

/* addr_memo_find - a kept answer for name: its result, or -1 if none */
static int addr_memo_find(const ADDR_MEMO *m, uint32_t hash, const void *name, size_t len, char *out)
{
    if (m == NULL || m->len != len || m->hash != hash || memcmp(m->in, name, len) != 0)
        return -1;
    if (m->err == ADDR_OK)
        memcpy(out, m->out, strlen(m->out) + 1);
    return m->err;
}

/* addr_memo_keep - remember an answer (out only read when err is ADDR_OK) */
static void addr_memo_keep(ADDR_MEMO *m, uint32_t hash, const void *name, size_t len,
                           int err, const char *out)
{
    if (m == NULL)
        return;
    m->hash = hash;
    m->len = (uint16_t) len;
    m->err = (int16_t) err;
    memcpy(m->in, name, len);
    m->in[len] = 0;
    m->out[0] = 0;
    if (err == ADDR_OK)
        memcpy(m->out, out, strlen(out) + 1);
}

/* addr_alabels_idn2 - addr_alabels() without the memo */
static int addr_alabels_idn2(const char *name, size_t len)
{
    char label[ADDR_LABEL_MAX + 1];
    const char *p = name, *end = name + len, *dot;
    char *res;
    size_t n;
    int rc, same;

    while (p < end) {
        dot = memchr(p, '.', (size_t) (end - p));
        n = (size_t) ((dot ? dot : end) - p);
        if (n >= 4 && memcmp(p, "xn--", 4) == 0) {
            memcpy(label, p, n);        /* n <= ADDR_LABEL_MAX: checked by caller */
            label[n] = 0;
            res = NULL;
            rc = idn2_to_ascii_8z(label, &res, ADDR_IDN_FLAGS);
            if (rc == IDN2_MALLOC)
                log_fatal("idn2_to_ascii_8z: out of memory");
            same = (rc == IDN2_OK && res != NULL && strcmp(res, label) == 0);
            idn2_free(res);
            if (!same)
                return ADDR_ERR_IDN;
        }
        p += n + 1;
    }
    return ADDR_OK;
}

/* addr_alabels - have libidn2 confirm each "xn--" label of a checked ASCII name */
static int addr_alabels(const char *name, size_t len)
{
    ADDR_MEMO *m;
    uint32_t hash = 0;
    char scratch[ADDR_DOMAIN_MAX + 1];
    int err;

    m = addr_memo_slot(name, len, &hash);
    if ((err = addr_memo_find(m, hash, name, len, scratch)) >= 0)
        return err;
    err = addr_alabels_idn2(name, len);
    addr_memo_keep(m, hash, name, len, err, name);
    return err;
}

/* addr_idn2 - addr_idn() without the checks and the memo; buf is scratch */
static int addr_idn2(const unsigned char *in, size_t len, char *out, char *buf)
{
    char *res = NULL;
    int rc, err, utf8 = 1;

    memcpy(buf, in, len);
    buf[len] = 0;
    rc = idn2_to_ascii_8z(buf, &res, ADDR_IDN_FLAGS);
    switch (rc) {
    case IDN2_OK:
        break;
    case IDN2_MALLOC:
        log_fatal("idn2_to_ascii_8z: out of memory");
    case IDN2_TOO_BIG_DOMAIN:
    case IDN2_TOO_BIG_LABEL:
        idn2_free(res);
        return ADDR_ERR_DOMAIN_LONG;
    case IDN2_ENCODING_ERROR:
        idn2_free(res);
        return ADDR_ERR_UTF8;
    default:
        idn2_free(res);
        return ADDR_ERR_IDN;
    }
    /* Whatever libidn2 made must pass the same rules as a name typed in ASCII. */
    err = addr_name((const unsigned char *) res, strlen(res), out, &utf8, 1);
    idn2_free(res);
    return err;
}

/* addr_idn - convert a name with non-ASCII octets to its A-label form */
static int addr_idn(const unsigned char *in, size_t len, char *out, int *utf8)
{
    char buf[ADDR_IDN_IN_MAX + 1];
    ADDR_MEMO *m;
    uint32_t hash = 0;
    size_t i, n;
    int err;

    if (len > ADDR_IDN_IN_MAX)
        return ADDR_ERR_DOMAIN_LONG;
    /* libidn2 wants a C string: every octet must be checked first, NUL included */
    for (i = 0; i < len; i++) {
        if (in[i] < 0x80) {
            if (addr_ctl(in[i]) || addr_punct_syntax(in[i]))
                return ADDR_ERR_SYNTAX;
            continue;
        }
        if ((n = printable_utf8_len(in + i, len - i)) == 0)
            return ADDR_ERR_UTF8;
        i += n - 1;
    }
    *utf8 = 1;
    m = addr_memo_slot(in, len, &hash);
    if ((err = addr_memo_find(m, hash, in, len, out)) >= 0)
        return err;
    err = addr_idn2(in, len, out, buf);
    addr_memo_keep(m, hash, in, len, err, out);
    return err;
}

/*
 * addr_name - check and lowercase a domain name into out (ADDR_DOMAIN_MAX
 * + 1 bytes). One trailing dot is dropped. ascii_only: the name came from
 * libidn2, so a non-ASCII octet means it was refused.
 */
static int addr_name(const unsigned char *in, size_t len, char *out, int *utf8, int ascii_only)
{
    size_t i, lab = 0, n;
    int alabel = 0;
    unsigned char c;

    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0)
        return ADDR_ERR_DOMAIN;
    for (i = 0; i <= len; i++) {
        c = i < len ? in[i] : '.';
        if (addr_letdig(c)) {
            if (i < ADDR_DOMAIN_MAX)
                out[i] = (char) addr_lower(c);
        } else if (c == '-') {
            if (i == lab)
                return ADDR_ERR_DOMAIN;         /* label starts with a hyphen */
            if (i < ADDR_DOMAIN_MAX)
                out[i] = '-';
        } else if (c == '.') {
            n = i - lab;
            if (n == 0)
                return ADDR_ERR_DOMAIN;         /* empty label */
            if (n > ADDR_LABEL_MAX)
                return ADDR_ERR_DOMAIN_LONG;
            if (in[i - 1] == '-')
                return ADDR_ERR_DOMAIN;         /* label ends with a hyphen */
            if (n >= 4 && (in[lab] | 0x20) == 'x' && (in[lab + 1] | 0x20) == 'n'
                && in[lab + 2] == '-' && in[lab + 3] == '-')
                alabel = 1;
            if (i < ADDR_DOMAIN_MAX)
                out[i] = '.';
            lab = i + 1;
        } else if (c >= 0x80) {
            if (ascii_only)
                return ADDR_ERR_IDN;
            return addr_idn(in, len, out, utf8);
        } else if (addr_ctl(c) || addr_punct_syntax(c)) {
            return ADDR_ERR_SYNTAX;
        } else {
            return ADDR_ERR_DOMAIN;
        }
    }
    if (len > ADDR_DOMAIN_MAX)
        return ADDR_ERR_DOMAIN_LONG;
    out[len] = 0;
    if (alabel)
        return addr_alabels(out, len);
    return ADDR_OK;
}

/* addr_literal - check an address literal "[...]" and write its canonical form */
static int addr_literal(const unsigned char *in, size_t len, char *out)
{
    char buf[64];
    unsigned char bin[sizeof(struct in6_addr)];
    const char *tag = "";
    size_t i, n, t;
    int af = AF_INET;

    if (len < 2 || in[len - 1] != ']')
        return ADDR_ERR_SYNTAX;
    in++;
    len -= 2;
    for (i = 0; i < len; i++) {
        if (addr_ctl(in[i]) || in[i] == '[' || in[i] == ']' || in[i] == '\\')
            return ADDR_ERR_SYNTAX;
        if (in[i] >= 0x80)
            return ADDR_ERR_DOMAIN;
    }
    if (len > 5 && strncasecmp((const char *) in, "IPv6:", 5) == 0) {
        af = AF_INET6;
        tag = "ipv6:";
        in += 5;
        len -= 5;
    }
    if (len >= sizeof(buf))
        return ADDR_ERR_DOMAIN;
    memcpy(buf, in, len);
    buf[len] = 0;
    if (inet_pton(af, buf, bin) != 1 || inet_ntop(af, bin, buf, sizeof(buf)) == NULL)
        return ADDR_ERR_DOMAIN;
    n = strlen(buf);
    t = strlen(tag);
    out[0] = '[';
    memcpy(out + 1, tag, t);
    memcpy(out + 1 + t, buf, n);
    out[1 + t + n] = ']';
    out[2 + t + n] = 0;
    return ADDR_OK;
}

/* addr_dom - a domain or address literal, whichever in is */
static int addr_dom(const unsigned char *in, size_t len, char *out, int *literal, int *utf8)
{
    int err;

    if (len > 0 && in[0] == '[') {
        err = addr_literal(in, len, out);
        *literal = (err == ADDR_OK);
    } else {
        err = addr_name(in, len, out, utf8, 0);
    }
    if (err != ADDR_OK)
        out[0] = 0;
    return err;
}

/*
 * addr_route - step over a source route "@a,@b:" at *pp, up to end.
 * Refused unless ADDR_ALLOW_ROUTE; then each hop must be a domain name
 * (RFC 5321 At-domain, no literals) and the route is dropped.
 */
static int addr_route(const unsigned char **pp, const unsigned char *end, int flags)
{
    const unsigned char *p = *pp, *colon, *hop;
    char scratch[ADDR_DOMAIN_MAX + 1];
    int utf8 = 0, err;

    colon = memchr(p, ':', (size_t) (end - p));
    if (colon == NULL)
        return ADDR_ERR_SYNTAX;                 /* "@domain": no local part */
    if (!(flags & ADDR_ALLOW_ROUTE))
        return ADDR_ERR_ROUTE;
    while (p < colon) {
        if (*p != '@')
            return ADDR_ERR_SYNTAX;
        hop = ++p;
        while (p < colon && *p != ',')
            p++;
        if ((err = addr_name(hop, (size_t) (p - hop), scratch, &utf8, 0)) != ADDR_OK)
            return err;
        if (p < colon && ++p == colon)
            return ADDR_ERR_SYNTAX;             /* "@a,:" */
    }
    *pp = colon + 1;
    return ADDR_OK;
}

/*
 * addr_dot_atom - could s (n bytes, lowercase, valid UTF-8) stand unquoted
 * under these flags? UTF-8 counts as atext (RFC 6531).
 */
static int addr_dot_atom(const unsigned char *s, size_t n, int flags)
{
    size_t i;

    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (i = 0; i < n; i++) {
        if (s[i] >= 0x80)
            continue;
        if (s[i] == '.') {
            if (s[i - 1] == '.')
                return 0;
        } else if (!addr_atext(s[i])) {
            return 0;
        } else if (s[i] == '%' && !(flags & ADDR_ALLOW_PERCENT)) {
            return 0;
        } else if (s[i] == '!' && !(flags & ADDR_ALLOW_BANG)) {
            return 0;
        }
    }
    return 1;
}

/*
 * addr_quoted - read a quoted local part at *pp (on the opening quote) and
 * write its normal form to out; *pp ends past the closing quote.
 */
static int addr_quoted(const unsigned char **pp, const unsigned char *end, int flags,
                       char *out, size_t *outlen, int *utf8)
{
    unsigned char buf[ADDR_PATH_MAX];
    const unsigned char *start = *pp, *p = start + 1;
    size_t n = 0, i, o, u;

    for (;;) {
        if (p >= end)
            return ADDR_ERR_SYNTAX;             /* no closing quote */
        if (*p == '"')
            break;
        if (*p == '\\') {
            /* RFC 5321 quoted-pairSMTP: a backslash and one printable ASCII */
            if (++p >= end || *p < 0x20 || *p > 0x7e)
                return ADDR_ERR_SYNTAX;
            buf[n++] = addr_lower(*p++);
        } else if (*p < 0x20 || *p == 0x7f) {
            return ADDR_ERR_SYNTAX;
        } else if (*p < 0x80) {
            buf[n++] = addr_lower(*p++);
        } else {
            if ((u = printable_utf8_len(p, (size_t) (end - p))) == 0)
                return ADDR_ERR_UTF8;
            if (addr_c1(p))
                return ADDR_ERR_SYNTAX;
            memcpy(buf + n, p, u);
            n += u;
            p += u;
            *utf8 = 1;
        }
    }
    p++;
    if ((size_t) (p - start) > ADDR_LOCAL_MAX && !(flags & ADDR_ALLOW_LONG_LOCAL))
        return ADDR_ERR_LOCAL_LONG;
    *pp = p;
    if (addr_dot_atom(buf, n, flags)) {
        memcpy(out, buf, n);
        *outlen = n;
        return ADDR_OK;
    }
    /* Minimal quoting: never longer than the quoted string that came in. */
    o = 0;
    out[o++] = '"';
    for (i = 0; i < n; i++) {
        if (buf[i] == '"' || buf[i] == '\\')
            out[o++] = '\\';
        out[o++] = (char) buf[i];
    }
    out[o++] = '"';
    *outlen = o;
    return ADDR_OK;
}

/* addr_dot_string - read an unquoted local part at *pp, up to "@" or end */
static int addr_dot_string(const unsigned char **pp, const unsigned char *end, int flags,
                           char *out, size_t *outlen, int *utf8)
{
    const unsigned char *p = *pp;
    size_t n = 0, u;
    int atom_start = 1;

    for (; p < end && *p != '@'; p++) {
        if (*p == '.') {
            if (atom_start)
                return ADDR_ERR_SYNTAX;         /* leading or doubled dot */
            atom_start = 1;
            out[n++] = '.';
            continue;
        }
        if (*p < 0x80) {
            if (!addr_atext(*p))
                return ADDR_ERR_SYNTAX;
            if (*p == '%' && !(flags & ADDR_ALLOW_PERCENT))
                return ADDR_ERR_PERCENT;
            if (*p == '!' && !(flags & ADDR_ALLOW_BANG))
                return ADDR_ERR_BANG;
            out[n++] = (char) addr_lower(*p);
        } else {
            if ((u = printable_utf8_len(p, (size_t) (end - p))) == 0)
                return ADDR_ERR_UTF8;
            if (addr_c1(p))
                return ADDR_ERR_SYNTAX;
            memcpy(out + n, p, u);
            n += u;
            p += u - 1;
            *utf8 = 1;
        }
        atom_start = 0;
    }
    if (n == 0 || atom_start)
        return ADDR_ERR_SYNTAX;                 /* empty, or a trailing dot */
    if (n > ADDR_LOCAL_MAX && !(flags & ADDR_ALLOW_LONG_LOCAL))
        return ADDR_ERR_LOCAL_LONG;
    *pp = p;
    *outlen = n;
    return ADDR_OK;
}

/* addr_reset - empty every output field */
static void addr_reset(ADDR *out)
{
    out->local[0] = 0;
    out->domain[0] = 0;
    out->key[0] = 0;
    out->is_null = 0;
    out->is_literal = 0;
    out->is_utf8 = 0;
}

/* addr_parse_path - addr_parse() proper; the caller clears out on error */
static int addr_parse_path(const unsigned char *p, size_t len, int flags, ADDR *out)
{
    const unsigned char *end = p + len;
    size_t llen = 0, dlen = 0;
    int err, utf8 = 0;

    if (len > ADDR_PATH_MAX)
        return ADDR_ERR_PATH_LONG;
    if (*p == '<') {
        if (len < 2 || end[-1] != '>')
            return ADDR_ERR_SYNTAX;
        p++;
        end--;
        if (p == end) {
            if (!(flags & ADDR_ALLOW_NULL))
                return ADDR_ERR_EMPTY;
            out->is_null = 1;
            return ADDR_OK;
        }
    } else if (end[-1] == '>') {
        return ADDR_ERR_SYNTAX;
    } else if (len + 2 > ADDR_PATH_MAX) {
        return ADDR_ERR_PATH_LONG;              /* would not fit in <...> */
    }
    if (*p == '@' && (err = addr_route(&p, end, flags)) != ADDR_OK)
        return err;
    if (p == end)
        return ADDR_ERR_SYNTAX;                 /* a route and nothing after it */

    if (*p == '"')
        err = addr_quoted(&p, end, flags, out->local, &llen, &utf8);
    else
        err = addr_dot_string(&p, end, flags, out->local, &llen, &utf8);
    if (err != ADDR_OK)
        return err;
    out->local[llen] = 0;

    if (p == end) {
        if (!(flags & ADDR_ALLOW_BARE))
            return ADDR_ERR_NO_DOMAIN;
    } else {
        if (*p != '@')
            return ADDR_ERR_SYNTAX;             /* "quoted"junk */
        p++;
        if (memchr(p, '@', (size_t) (end - p)) != NULL)
            return ADDR_ERR_MULTI_AT;
        if ((err = addr_dom(p, (size_t) (end - p), out->domain, &out->is_literal, &utf8)) != ADDR_OK)
            return err;
        dlen = strlen(out->domain);
    }

    /* The normal form must itself fit in a path, or it would not parse back. */
    if (llen + (dlen ? 1 + dlen : 0) + 2 > ADDR_PATH_MAX)
        return ADDR_ERR_PATH_LONG;
    memcpy(out->key, out->local, llen);
    if (dlen) {
        out->key[llen] = '@';
        memcpy(out->key + llen + 1, out->domain, dlen + 1);
    } else {
        out->key[llen] = 0;
    }
    out->is_utf8 = utf8;
    return ADDR_OK;
}

/* addr_parse - parse len bytes at in (not NUL-terminated); ADDR_OK or an error */
int addr_parse(const char *in, size_t len, int flags, ADDR *out)
{
    int err;

    addr_reset(out);
    if (len == 0) {
        /* Postfix hands the null sender over as an empty string. */
        if (!(flags & ADDR_ALLOW_NULL))
            return ADDR_ERR_EMPTY;
        out->is_null = 1;
        return ADDR_OK;
    }
    err = addr_parse_path((const unsigned char *) in, len, flags, out);
    if (err != ADDR_OK)
        addr_reset(out);
    return err;
}

/* addr_domain - normalise a domain name alone; out holds ADDR_DOMAIN_MAX + 1 */
int addr_domain(const char *in, size_t len, char *out)
{
    int literal = 0, utf8 = 0;

    out[0] = 0;
    if (len == 0)
        return ADDR_ERR_EMPTY;
    return addr_dom((const unsigned char *) in, len, out, &literal, &utf8);
}

/* addr_strip_extension - local without its address extension; 1 if one was removed */
int addr_strip_extension(const char *local, const char *delims, char *out)
{
    size_t n = strnlen(local, ADDR_KEY_SIZE - 1), i;

    memcpy(out, local, n);
    out[n] = 0;
    /* A quoted local part is one opaque string: its "+" is not a delimiter. */
    if (delims == NULL || *delims == 0 || n == 0 || local[0] == '"')
        return 0;
    /*
     * With '-' a delimiter, Postfix never splits owner-LIST or LIST-request
     * (mailing list conventions older than extensions): owner-staff is not
     * staff's owner extension, and must not be taken because owner exists.
     */
    if (strchr(delims, '-') != NULL
        && (strncasecmp(local, "owner-", 6) == 0 || (n > 8 && strcasecmp(local + n - 8, "-request") == 0)))
        return 0;
    for (i = 1; i < n; i++) {
        /* Only ASCII delimiters: never cut a UTF-8 sequence in two. */
        if ((unsigned char) local[i] < 0x80 && strchr(delims, local[i]) != NULL) {
            out[i] = 0;
            return 1;
        }
    }
    return 0;
}

/* addr_external - Postfix's internal form back in the external one (addr.h) */
char *addr_external(const char *in, char *out, size_t size)
{
    const char *at = strrchr(in, '@');
    size_t n = at ? (size_t) (at - in) : strlen(in), o = 0;

    /*
     * Quoted only when a special (white space, ",:;<>()[]\\") says the
     * quotes were there: "a..b" stays as it came, and so does a local
     * part with '@' or '"' in it, which cannot be told apart from the
     * forms the rules refuse.
     */
    if (size < 2 * strlen(in) + 3) {
        snprintf(out, size, "%s", "");
        return out;
    }
    if (strcspn(in, " \t,:;<>()[]\\") >= n || memchr(in, '@', n) != NULL || memchr(in, '"', n) != NULL) {
        snprintf(out, size, "%s", in);
        return out;
    }
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\\')
            out[o++] = '\\';
        out[o++] = in[i];
    }
    out[o++] = '"';
    snprintf(out + o, size - o, "%s", in + n);
    return out;
}

/* addr_strerror - short English text for an addr_error value */
const char *addr_strerror(int err)
{
    switch (err) {
    case ADDR_OK:
        return "ok";
    case ADDR_ERR_EMPTY:
        return "empty address";
    case ADDR_ERR_SYNTAX:
        return "address syntax error";
    case ADDR_ERR_PATH_LONG:
        return "address too long";
    case ADDR_ERR_LOCAL_LONG:
        return "local part too long";
    case ADDR_ERR_DOMAIN_LONG:
        return "domain or label too long";
    case ADDR_ERR_NO_DOMAIN:
        return "no domain";
    case ADDR_ERR_DOMAIN:
        return "bad domain syntax";
    case ADDR_ERR_IDN:
        return "bad internationalised domain";
    case ADDR_ERR_ROUTE:
        return "source route not allowed";
    case ADDR_ERR_PERCENT:
        return "percent hack not allowed";
    case ADDR_ERR_BANG:
        return "bang path not allowed";
    case ADDR_ERR_MULTI_AT:
        return "more than one @";
    case ADDR_ERR_UTF8:
        return "invalid utf-8";
    default:
        return "unknown address error";
    }
}

/* addr_key_space - the white space addr_key() trims: ASCII blanks and line ends */
static int addr_key_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* addr_key - the store's key for a recipient address or a catch-all */
int addr_key(const char *in, size_t len, int flags, char *out, char *err, size_t errlen)
{
    ADDR a;
    int rc;

    out[0] = 0;
    while (len > 0 && addr_key_space((unsigned char) *in))
        in++, len--;
    while (len > 0 && addr_key_space((unsigned char) in[len - 1]))
        len--;
    if (len == 0) {
        snprintf(err, errlen, "%s", addr_strerror(ADDR_ERR_EMPTY));
        return -1;
    }
    if (len == 2 && in[0] == '<' && in[1] == '>') {
        snprintf(err, errlen, "the null sender <> is not a recipient");
        return -1;
    }
    if (in[0] == '@') {
        char dom[ADDR_DOMAIN_MAX + 1];

        if (!(flags & ADDR_KEY_CATCHALL)) {
            snprintf(err, errlen, "a catch-all (\"@domain\") is not allowed here");
            return -1;
        }
        if ((rc = addr_domain(in + 1, len - 1, dom)) != ADDR_OK) {
            snprintf(err, errlen, "catch-all: %s", addr_strerror(rc));
            return -1;
        }
        snprintf(out, ADDR_KEY_SIZE, "@%s", dom);
        return 0;
    }
    /* A recipient is never the null path nor a bare local part. */
    flags &= ADDR_ALLOW_ROUTE | ADDR_ALLOW_PERCENT | ADDR_ALLOW_BANG;
    if ((rc = addr_parse(in, len, flags, &a)) != ADDR_OK) {
        snprintf(err, errlen, "%s", addr_strerror(rc));
        return -1;
    }
    if (a.is_null || a.domain[0] == 0) {
        snprintf(err, errlen, "%s", addr_strerror(ADDR_ERR_NO_DOMAIN));
        return -1;
    }
    snprintf(out, ADDR_KEY_SIZE, "%s", a.key);
    return 0;
}
