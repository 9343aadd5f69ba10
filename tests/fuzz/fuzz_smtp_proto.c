/*
 * fuzz_smtp_proto.c - libFuzzer target for smtpd/smtp_proto.c
 *
 * The first byte picks what the rest is fed to: a command line
 * (smtp_proto_split), a MAIL argument or a RCPT argument (with and
 * without SMTPUTF8). Aborts when an invariant breaks: replies are
 * NUL-terminated, start with their code and fit; an accepted path fits
 * RFC 5321's limits, holds no control character, has its domain inside
 * addr after the last '@' (or at its end), and passes on only the
 * parameters we understood. Message bytes (first byte 4..7) go through
 * the DATA scanner whole and split at a point the input chooses, with a
 * small output buffer: both must agree, and the output never holds a
 * bare CR or LF, nor a line "." (the end of data downstream).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* fuzz_check - abort unless cond holds (kept in release builds too) */
#define fuzz_check(cond)    do { if (!(cond)) abort(); } while (0)

/*
 * fuzz_params - what is passed on downstream is only the parameters we
 * know (RFC 1870, 6152, 6531, 3461), one space between them, each with
 * printable ASCII only: nothing a client sent can smuggle a command.
 */
static void fuzz_params(const char *params)
{
    static const char *const known[] = {"SIZE=", "BODY=", "SMTPUTF8", "RET=", "ENVID=", "NOTIFY=", "ORCPT="};
    const char *p = params;

    while (*p) {
        size_t n = strcspn(p, " ");
        int ok = 0;

        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            if (strncmp(p, known[i], strlen(known[i])) == 0)
                ok = 1;
        fuzz_check(ok && n > 0);
        for (size_t i = 0; i < n; i++)
            fuzz_check((unsigned char) p[i] > 0x20 && (unsigned char) p[i] < 0x7f);
        p += n;
        if (*p == ' ')
            fuzz_check(*++p != 0 && *p != ' ');
    }
}

/* fuzz_path - invariants of an accepted path */
static void fuzz_path(const SMTP_PATH *p)
{
    size_t len = strlen(p->addr);

    fuzz_check(len + 2 <= SMTP_PATH_MAX);
    fuzz_check(strlen(p->raw) + 2 <= SMTP_PATH_MAX);
    fuzz_check(p->domain >= p->addr && p->domain <= p->addr + len);
    fuzz_check(strlen(p->domain) <= SMTP_DOMAIN_MAX);
    if (*p->domain)
        fuzz_check(p->domain[-1] == '@');
    fuzz_check(p->is_null == (len == 0));
    for (const char *c = p->addr; *c; c++)
        fuzz_check((unsigned char) *c >= 0x20 && *c != 0x7f);
    fuzz_check(memchr(p->params, 0, sizeof(p->params)) != NULL);
    fuzz_params(p->params);
}

/* fuzz_scan - run the scanner over in in pieces of at most piece bytes; output into all */
static int fuzz_scan(const char *in, size_t len, int normalize, size_t piece, size_t outsize,
                     char *all, size_t *total, size_t *pos)
{
    SMTP_DATA_SCAN ds;
    int rc = SMTP_DATA_MORE;

    smtp_proto_data_init(&ds, normalize);
    *total = *pos = 0;
    while (*pos < len) {
        size_t n = len - *pos < piece ? len - *pos : piece;
        size_t used, outlen;
        char out[64];

        rc = smtp_proto_data_scan(&ds, in + *pos, n, &used, out, outsize, &outlen);
        fuzz_check(outlen <= outsize && used <= n);
        fuzz_check(used > 0 || outlen > 0 || rc != SMTP_DATA_FULL);
        memcpy(all + *total, out, outlen);
        *total += outlen;
        *pos += used;
        if (rc != SMTP_DATA_MORE && rc != SMTP_DATA_FULL)
            break;
    }
    return rc == SMTP_DATA_FULL ? SMTP_DATA_MORE : rc;
}

/* fuzz_data - the DATA scanner: pieces agree with the whole; output is clean CRLF */
static void fuzz_data(const uint8_t *data, size_t size, int normalize)
{
    const char *in = (const char *) data + 2;
    size_t len = size - 2;
    size_t total1, pos1, total2, pos2;
    char *all1 = malloc(2 * len + 8);
    char *all2 = malloc(2 * len + 8);
    int rc1, rc2;

    if (all1 == NULL || all2 == NULL) {
        free(all1);
        free(all2);
        return;
    }
    rc1 = fuzz_scan(in, len, normalize, len ? len : 1, 64, all1, &total1, &pos1);
    rc2 = fuzz_scan(in, len, normalize, 1 + data[1] % 7, 4 + data[1] % 5, all2, &total2, &pos2);
    fuzz_check(rc1 == rc2 && pos1 == pos2 && total1 == total2 && memcmp(all1, all2, total1) == 0);
    for (size_t i = 0; i < total1; i++) {
        if (all1[i] == '\r')
            fuzz_check(i + 1 < total1 && all1[i + 1] == '\n');
        if (all1[i] == '\n')
            fuzz_check(i > 0 && all1[i - 1] == '\r');
        /* No line "." downstream: a dot line the client meant as data was stuffed. */
        if ((i == 0 || all1[i - 1] == '\n') && all1[i] == '.')
            fuzz_check(!(i + 1 < total1 && all1[i + 1] == '\r'));
    }
    free(all1);
    free(all2);
}

/* fuzz_reply - invariants of a refusal */
static void fuzz_reply(int code, const char *reply, size_t size)
{
    char want[8];

    fuzz_check(memchr(reply, 0, size) != NULL);
    fuzz_check(code >= 500 && code <= 555);
    snprintf(want, sizeof(want), "%d ", code);
    fuzz_check(strncmp(reply, want, 4) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line;
    char reply[256];
    SMTP_PATH p;
    const char *arg;
    int code;

    if (size < 1)
        return 0;
    if (data[0] % 8 >= 4) {
        if (size >= 2)
            fuzz_data(data, size, data[0] % 8 >= 6);
        return 0;
    }
    /* The session never hands over NUL bytes: the parser sees C strings. */
    line = malloc(size);
    if (line == NULL)
        return 0;
    memcpy(line, data + 1, size - 1);
    line[size - 1] = 0;
    switch (data[0] % 4) {
    case 0:
        code = smtp_proto_split(line, &arg);
        fuzz_check(code >= 0 && code < SMTP_CMD_COUNT);
        fuzz_check(arg >= line && arg <= line + strlen(line));
        break;
    case 1:
        if ((code = smtp_proto_mail(line, &p, reply, sizeof(reply))) == 0)
            fuzz_path(&p);
        else
            fuzz_reply(code, reply, sizeof(reply));
        if (code == 0 && p.is_utf8)
            fuzz_check(p.smtputf8);
        break;
    default:
        if ((code = smtp_proto_rcpt(line, data[0] % 4 == 3, &p, reply, sizeof(reply))) == 0) {
            fuzz_path(&p);
            fuzz_check(!p.is_null);
        } else {
            fuzz_reply(code, reply, sizeof(reply));
        }
        break;
    }
    free(line);
    return 0;
}
