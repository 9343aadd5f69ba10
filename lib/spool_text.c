/*
 * spool_text.c - the text of rcptgate-smtpd's queue files: a message's
 * envelope and its defer/ reasons, made and read back (spool.c does the
 * files themselves). A message file is
 *
 *   rcptgate-queue 1                      magic and format version
 *   warned 0                              '1' once the delay warning went out (pwrite)
 *   size 00000000000000001234             message bytes, fixed width (pwrite at commit)
 *   id 6753A1F20C3B2000A3F0001            the file's own name, checked on load
 *   arrival 1733500000
 *   sender a@example.net                  (empty value: the null sender)
 *   params BODY=8BITMIME
 *   envid ...                             only when given
 *   ret 0
 *   kind 0
 *   client_name ... client_addr ... client_port ... client_helo ...
 *   client_proto ... client_login ...     helo and login only when known
 *   T 4 rfc822;a@example.org a@example.org
 *                                         (one per recipient: state, NOTIFY bits,
 *                                         ORCPT or "-", address)
 *   <blank line>
 *   the message, CRLF and dot-stuffed
 *
 * Every value is encoded: a byte <= 0x20, 0x7F and '%' become %XX, so
 * no value can hold a space, a line end or a NUL, whatever a client sent
 * (a HELO with CRLF in it cannot add a recipient line), and a lone "-"
 * is written %2D, so "-" can mean "none". A key this version does not
 * know is skipped, so a later version may add lines.
 *
 * defer/ID holds "attempts N" and one "IDX DSN REASON" line per recipient
 * with a reason (same encoding, "-" for none, the reason cut at
 * SPOOL_REASON_MAX bytes).
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool.h"
#include "spool_int.h"
#include "xalloc.h"

#define SPOOL_REASON_MAX    1000        /* longest reason kept in defer/ (words only) */

/* A growing text buffer for the envelope and the reason file. */
typedef struct spool_buf {
    char *s;
    size_t len;
    size_t size;
} SPOOL_BUF;

/* buf_add - append n bytes */
static void buf_add(SPOOL_BUF *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->size) {
        while (b->len + n + 1 > b->size)
            b->size = b->size ? b->size * 2 : 1024;
        b->s = xrealloc(b->s, b->size);
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

/* buf_str - append a string */
static void buf_str(SPOOL_BUF *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* buf_num - append a decimal number */
static void buf_num(SPOOL_BUF *b, long long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%lld", v);

    buf_add(b, tmp, (size_t) n);
}

/* buf_numline - "key number\n" */
static void buf_numline(SPOOL_BUF *b, const char *key, long long v)
{
    buf_str(b, key);
    buf_add(b, " ", 1);
    buf_num(b, v);
    buf_add(b, "\n", 1);
}

/* enc_byte - is this byte %-encoded in the envelope? */
static int enc_byte(unsigned char c)
{
    return c <= 0x20 || c == 0x7f || c == '%';
}

/* spool_rcpt_bytes - see spool.h */
size_t spool_rcpt_bytes(const char *addr, const char *orcpt)
{
    size_t n = 8;                       /* state, notify, blanks, newline; "-" for no ORCPT */

    for (const char *v = addr; v != NULL; v = v == addr ? orcpt : NULL)
        for (const unsigned char *p = (const unsigned char *) v; *p; p++)
            n += enc_byte(*p) ? 3 : 1;
    return n;
}

/* buf_enc - append s encoded (see the top); NULL or a lone "-" as the caller wants */
static void buf_enc(SPOOL_BUF *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    if (strcmp(s, "-") == 0) {
        buf_str(b, "%2D");
        return;
    }
    for (const unsigned char *p = (const unsigned char *) s; *p != '\0'; p++) {
        if (enc_byte(*p)) {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};

            buf_add(b, e, 3);
        } else
            buf_add(b, (const char *) p, 1);
    }
}

/* buf_line - "key value\n" with value encoded; nothing for NULL */
static void buf_line(SPOOL_BUF *b, const char *key, const char *value)
{
    if (value == NULL)
        return;
    buf_str(b, key);
    buf_add(b, " ", 1);
    buf_enc(b, value);
    buf_add(b, "\n", 1);
}

/* hexval - one hex digit's value, -1 if not one */
static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* dec - decode n bytes of an encoded value into a new string; NULL if malformed */
static char *dec(const char *p, size_t n)
{
    char *out = xmalloc(n + 1);
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) p[i];

        if (c == '%') {
            int hi, lo;

            if (i + 2 >= n) {
                free(out);
                return NULL;
            }
            hi = hexval(p[i + 1]);
            lo = hexval(p[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char) (hi * 16 + lo);
            i += 2;
        } else if (c <= 0x20 || c == 0x7f) {
            free(out);                  /* never written raw: damaged */
            return NULL;
        } else
            out[o++] = (char) c;
    }
    out[o] = '\0';
    return out;
}

/* parse_ll - a decimal number of n bytes within [min, max]; 0 ok, -1 not */
static int parse_ll(const char *p, size_t n, long long min, long long max, long long *out)
{
    long long v = 0;
    int neg = 0;
    size_t i = 0;

    if (n > 0 && p[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i >= n || n - i > SPOOL_SIZE_DIGITS)
        return -1;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (v > (LLONG_MAX - (p[i] - '0')) / 10)
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    if (neg)
        v = -v;
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* ------------------------------------------------------------ made */

/* spool_text_envelope - see spool_int.h */
char *spool_text_envelope(const SPOOL_ENV *env, long long *off, size_t *len)
{
    SPOOL_BUF b = {0};

    buf_str(&b, SPOOL_MAGIC);
    buf_str(&b, SPOOL_WARNED);
    buf_str(&b, env->warned ? "1\n" : "0\n");
    buf_str(&b, SPOOL_SIZE);
    buf_str(&b, "00000000000000000000\n");
    buf_line(&b, "id", env->id);
    buf_numline(&b, "arrival", env->arrival);
    buf_line(&b, "sender", env->sender);
    buf_line(&b, "params", env->mail_params ? env->mail_params : "");
    buf_line(&b, "envid", env->envid);
    buf_numline(&b, "ret", env->ret);
    buf_numline(&b, "kind", env->dsn_kind);
    buf_line(&b, "client_name", env->client.name);
    buf_line(&b, "client_addr", env->client.addr);
    buf_numline(&b, "client_port", env->client.port);
    buf_line(&b, "client_helo", env->client.helo);
    buf_line(&b, "client_proto", env->client.proto);
    buf_line(&b, "client_login", env->client.login);
    for (size_t i = 0; i < env->nrcpt; i++) {
        const SPOOL_RCPT *r = &env->rcpt[i];

        off[i] = (long long) b.len;
        buf_add(&b, &r->state, 1);
        buf_add(&b, " ", 1);
        buf_num(&b, r->notify & 15);
        buf_add(&b, " ", 1);
        if (r->orcpt != NULL)
            buf_enc(&b, r->orcpt);
        else
            buf_str(&b, "-");
        buf_add(&b, " ", 1);
        buf_enc(&b, r->addr);
        buf_add(&b, "\n", 1);
    }
    buf_add(&b, "\n", 1);
    *len = b.len;
    return b.s;
}

/* spool_text_reasons - see spool_int.h */
char *spool_text_reasons(const SPOOL_ENV *env, size_t *len)
{
    SPOOL_BUF b = {0};

    buf_numline(&b, "attempts", env->attempts);
    for (size_t i = 0; i < env->nrcpt; i++) {
        const SPOOL_RCPT *r = &env->rcpt[i];

        if (r->dsn == NULL && r->reason == NULL)
            continue;
        buf_num(&b, (long long) i);
        buf_add(&b, " ", 1);
        if (r->dsn != NULL)
            buf_enc(&b, r->dsn);
        else
            buf_str(&b, "-");
        buf_add(&b, " ", 1);
        if (r->reason != NULL) {
            char *cut = xstrndup(r->reason, SPOOL_REASON_MAX);

            buf_enc(&b, cut);
            free(cut);
        } else
            buf_str(&b, "-");
        buf_add(&b, "\n", 1);
    }
    *len = b.len;
    return b.s;
}

/* ------------------------------------------------------------ read back */

/* text_rcpt - one recipient line "S N ORCPT ADDR" (len bytes, no newline); 0 or -1 */
static int text_rcpt(const char *p, size_t len, SPOOL_RCPT *r)
{
    const char *end = p + len, *f2, *f3, *f4;
    long long notify;

    memset(r, 0, sizeof(*r));
    if (len < 7 || p[1] != ' ')
        return -1;
    r->state = p[0];
    if (r->state != SPOOL_RCPT_TODO && r->state != SPOOL_RCPT_DONE && r->state != SPOOL_RCPT_FAILED)
        return -1;
    f2 = p + 2;
    if ((f3 = memchr(f2, ' ', (size_t) (end - f2))) == NULL)
        return -1;
    if (parse_ll(f2, (size_t) (f3 - f2), 0, 15, &notify) < 0)
        return -1;
    r->notify = (int) notify;
    f3++;
    if ((f4 = memchr(f3, ' ', (size_t) (end - f3))) == NULL)
        return -1;
    if (f4 - f3 == 1 && *f3 == '-')
        r->orcpt = NULL;
    else if (f4 == f3 || (r->orcpt = dec(f3, (size_t) (f4 - f3))) == NULL)
        return -1;
    f4++;
    if (f4 == end || (r->addr = dec(f4, (size_t) (end - f4))) == NULL) {
        free(r->orcpt);
        r->orcpt = NULL;
        return -1;
    }
    return 0;
}

/* spool_text_parse_envelope - see spool_int.h */
int spool_text_parse_envelope(const char *id, const char *text, size_t hlen, SPOOL_ENV *env, char *err, size_t errlen)
{
    const char *p = text, *end = text + hlen - 1;   /* the blank line's newline is not a line */
    size_t nrcpt = 0, line_no = 0;
    int have_arrival = 0;
    long long v;

    memset(env, 0, sizeof(*env));
    snprintf(env->id, sizeof(env->id), "%s", id);
    env->size = -1;
    if (strncmp(text, SPOOL_MAGIC, sizeof(SPOOL_MAGIC) - 1) != 0) {
        snprintf(err, errlen, "%s: damaged: not a rcptgate queue file (or another version)", id);
        return -1;
    }
    for (const char *q = text; q < end; q++)
        if (*q == '\n' && q + 2 <= end && q[1] != '\0' && q[2] == ' ' && q[1] >= 'A' && q[1] <= 'Z')
            nrcpt++;
    env->rcpt = xcalloc(nrcpt ? nrcpt : 1, sizeof(*env->rcpt));

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t) (end - p)), *sp, *val;
        size_t len, klen, vlen;
        char **dst = NULL;

        if (nl == NULL)
            nl = end;
        len = (size_t) (nl - p);
        line_no++;
        if (len >= 2 && p[1] == ' ' && p[0] >= 'A' && p[0] <= 'Z') {
            SPOOL_RCPT *r;

            if (env->nrcpt >= nrcpt)
                goto bad;
            r = &env->rcpt[env->nrcpt];
            if (text_rcpt(p, len, r) < 0)
                goto bad;
            r->offset = (long long) (p - text);
            env->nrcpt++;
            p = nl + 1;
            continue;
        }
        sp = memchr(p, ' ', len);
        klen = sp ? (size_t) (sp - p) : len;
        val = sp ? sp + 1 : nl;
        vlen = (size_t) (nl - val);
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(p, k, klen) == 0)
        if (line_no == 1)
            ;                           /* the magic, checked above */
        else if (KEY("warned")) {
            if (parse_ll(val, vlen, 0, 1, &v) < 0)
                goto bad;
            env->warned = (int) v;
        } else if (KEY("size")) {
            if (parse_ll(val, vlen, 0, LLONG_MAX, &v) < 0)
                goto bad;
            env->size = v;
        } else if (KEY("id")) {
            if (vlen != strlen(id) || memcmp(val, id, vlen) != 0) {
                snprintf(err, errlen, "%s: damaged: the file says it is %.*s", id,
                         (int) (vlen > 40 ? 40 : vlen), val);
                spool_env_free(env);
                return -1;
            }
        } else if (KEY("arrival")) {
            /* Unix time up to the year 9999: anything later is damage, not a date. */
            if (parse_ll(val, vlen, 0, 253402300799LL, &env->arrival) < 0)
                goto bad;
            have_arrival = 1;
        } else if (KEY("ret")) {
            if (parse_ll(val, vlen, 0, 2, &v) < 0)
                goto bad;
            env->ret = (int) v;
        } else if (KEY("kind")) {
            if (parse_ll(val, vlen, 0, 1, &v) < 0)
                goto bad;
            env->dsn_kind = (int) v;
        } else if (KEY("client_port")) {
            if (parse_ll(val, vlen, 0, 65535, &v) < 0)
                goto bad;
            env->client.port = (int) v;
        } else if (KEY("sender"))
            dst = &env->sender;
        else if (KEY("params"))
            dst = &env->mail_params;
        else if (KEY("envid"))
            dst = &env->envid;
        else if (KEY("client_name"))
            dst = &env->client.name;
        else if (KEY("client_addr"))
            dst = &env->client.addr;
        else if (KEY("client_helo"))
            dst = &env->client.helo;
        else if (KEY("client_proto"))
            dst = &env->client.proto;
        else if (KEY("client_login"))
            dst = &env->client.login;
        /* another key: a later version's, ignored */
#undef KEY
        if (dst != NULL) {
            if (*dst != NULL || (*dst = dec(val, vlen)) == NULL)
                goto bad;
        }
        p = nl + 1;
    }
    /* Without a recipient it would be "done" at once and removed: damage must say so instead. */
    if (env->sender == NULL || !have_arrival || env->size < 0 || env->nrcpt == 0) {
        snprintf(err, errlen, "%s: damaged: envelope without %s", id,
                 env->sender == NULL ? "sender" : !have_arrival ? "arrival" : env->size < 0 ? "size"
                 : "recipients");
        spool_env_free(env);
        return -1;
    }
    if (env->mail_params == NULL)
        env->mail_params = xstrdup("");
    return 0;

bad:
    snprintf(err, errlen, "%s: damaged: bad envelope line %zu", id, line_no);
    spool_env_free(env);
    return -1;
}

/* spool_text_parse_reasons - see spool_int.h */
void spool_text_parse_reasons(char *buf, size_t n, SPOOL_ENV *env)
{
    char *p, *end = buf + n;

    buf[n] = '\0';
    for (p = buf; p < end;) {
        char *nl = memchr(p, '\n', (size_t) (end - p)), *s1, *s2;
        long long v;

        if (nl == NULL)
            break;                      /* a cut last line: ignored */
        *nl = '\0';
        s1 = strchr(p, ' ');
        s2 = s1 ? strchr(s1 + 1, ' ') : NULL;
        if (s1 != NULL && strncmp(p, "attempts ", 9) == 0) {
            if (parse_ll(s1 + 1, strlen(s1 + 1), 0, INT_MAX, &v) == 0)
                env->attempts = (int) v;
        } else if (s1 != NULL && s2 != NULL && parse_ll(p, (size_t) (s1 - p), 0, LLONG_MAX, &v) == 0
                   && (unsigned long long) v < env->nrcpt) {
            SPOOL_RCPT *r = &env->rcpt[v];
            char *dsn = NULL, *reason = NULL;

            if (!(s2 - s1 - 1 == 1 && s1[1] == '-'))
                dsn = dec(s1 + 1, (size_t) (s2 - s1 - 1));
            if (strcmp(s2 + 1, "-") != 0)
                reason = dec(s2 + 1, strlen(s2 + 1));
            free(r->dsn);
            free(r->reason);
            r->dsn = dsn;
            r->reason = reason;
        }
        p = nl + 1;
    }
}
