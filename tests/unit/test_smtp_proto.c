/*
 * test_smtp_proto.c - unit tests for smtpd/smtp_proto.c
 *
 * Tables of command lines and MAIL/RCPT arguments with the verdict each
 * must get: the command, the parsed path and parameters, or the exact
 * Postfix reply. The limits of RFC 5321 are probed at the boundary (64,
 * 65; 255, 256 ...) so an off-by-one cannot hide.
 */
#include "config.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "params_smtpd.h"
#include "smtp_proto.h"

typedef struct split_case {
    const char *line;
    int cmd;
    const char *arg;
} SPLIT_CASE;

static const SPLIT_CASE split_cases[] = {
    {"EHLO client.example.net", SMTP_CMD_EHLO, "client.example.net"},
    {"ehlo   x", SMTP_CMD_EHLO, "x"},
    {"HELO", SMTP_CMD_HELO, ""},
    {"MAIL FROM:<a@b>", SMTP_CMD_MAIL, "FROM:<a@b>"},
    {"rcpt TO:<a@b>", SMTP_CMD_RCPT, "TO:<a@b>"},
    {"DATA", SMTP_CMD_DATA, ""},
    {"RSET", SMTP_CMD_RSET, ""},
    {"NOOP hello", SMTP_CMD_NOOP, "hello"},
    {"QUIT", SMTP_CMD_QUIT, ""},
    {"VRFY postmaster", SMTP_CMD_VRFY, "postmaster"},
    {"HELP", SMTP_CMD_HELP, ""},
    {"STARTTLS", SMTP_CMD_STARTTLS, ""},
    {"AUTH PLAIN AGEAYg==", SMTP_CMD_AUTH, "PLAIN AGEAYg=="},
    {"GET / HTTP/1.1", SMTP_CMD_FORBIDDEN, "/ HTTP/1.1"},
    {"POST /x HTTP/1.0", SMTP_CMD_FORBIDDEN, "/x HTTP/1.0"},
    {"CONNECT 10.0.0.1:25 HTTP/1.0", SMTP_CMD_FORBIDDEN, "10.0.0.1:25 HTTP/1.0"},
    {"Subject: hello", SMTP_CMD_FORBIDDEN, "hello"},
    {"X-Mailer: foo", SMTP_CMD_FORBIDDEN, "foo"},
    {"MAILX FROM:<a@b>", SMTP_CMD_UNKNOWN, "FROM:<a@b>"},
    {"EHL", SMTP_CMD_UNKNOWN, ""},
    {"", SMTP_CMD_UNKNOWN, ""},
    {":", SMTP_CMD_UNKNOWN, ""},
    {"a b: c", SMTP_CMD_UNKNOWN, "b: c"},
    {"EXPN list", SMTP_CMD_UNKNOWN, "list"},
};

/* split_table - verbs and arguments */
static void split_table(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(split_cases) / sizeof(split_cases[0]); i++) {
        const char *arg = NULL;
        int cmd = smtp_proto_split(split_cases[i].line, &arg);

        if (cmd != split_cases[i].cmd || strcmp(arg, split_cases[i].arg) != 0)
            fail_msg("\"%s\": got %d \"%s\", want %d \"%s\"", split_cases[i].line, cmd, arg,
                     split_cases[i].cmd, split_cases[i].arg);
    }
}

/* group_end - RFC 2920's commands that end a pipelined group */
static void group_end(void **state)
{
    static const int ends[] = {SMTP_CMD_EHLO, SMTP_CMD_HELO, SMTP_CMD_DATA, SMTP_CMD_VRFY,
                               SMTP_CMD_NOOP, SMTP_CMD_QUIT, SMTP_CMD_STARTTLS, SMTP_CMD_AUTH};
    static const int mid[] = {SMTP_CMD_MAIL, SMTP_CMD_RCPT, SMTP_CMD_RSET};

    (void) state;
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
        assert_int_equal(smtp_proto_group_end(ends[i]), 1);
    for (size_t i = 0; i < sizeof(mid) / sizeof(mid[0]); i++)
        assert_int_equal(smtp_proto_group_end(mid[i]), 0);
    assert_string_equal(smtp_proto_cmd_name(SMTP_CMD_RCPT), "rcpt");
    assert_string_equal(smtp_proto_cmd_name(SMTP_CMD_FORBIDDEN), "unknown");
    assert_string_equal(smtp_proto_cmd_name(-1), "unknown");
    assert_string_equal(smtp_proto_cmd_name(SMTP_CMD_COUNT), "unknown");
}

typedef struct mail_case {
    const char *arg;
    int code;                   /* 0 accepted */
    const char *addr_or_reply;  /* accepted: addr; refused: the reply */
    const char *domain;
    long long size;
    const char *params;
    int flags;                  /* 1 null, 2 route, 4 utf8 */
} MAIL_CASE;

static const MAIL_CASE mail_cases[] = {
    {"FROM:<a@example.com>", 0, "a@example.com", "example.com", -1, "", 0},
    {"from:<a@example.com>", 0, "a@example.com", "example.com", -1, "", 0},
    {"FROM: <a@example.com>", 0, "a@example.com", "example.com", -1, "", 0},
    {"FROM:a@example.com", 0, "a@example.com", "example.com", -1, "", 0},
    {"FROM:<>", 0, "", "", -1, "", 1},
    {"FROM:<> SIZE=0", 0, "", "", 0, "SIZE=0", 1},
    {"FROM:<a@b.c> SIZE=1234 BODY=8BITMIME", 0, "a@b.c", "b.c", 1234, "SIZE=1234 BODY=8BITMIME", 0},
    {"FROM:<a@b.c> body=7bit", 0, "a@b.c", "b.c", -1, "BODY=7BIT", 0},
    {"FROM:<a@b.c> AUTH=<>", 0, "a@b.c", "b.c", -1, "", 0},
    {"FROM:<a@b.c> SIZE=99999999999999999999999999", 0, "a@b.c", "b.c", LLONG_MAX,
     "SIZE=9223372036854775807", 0},
    {"FROM:<\"john doe\"@example.com>", 0, "\"john doe\"@example.com", "example.com", -1, "", 0},
    {"FROM:<\"a>b\"@example.com>", 0, "\"a>b\"@example.com", "example.com", -1, "", 0},
    {"FROM:<\"a\\\"b\"@example.com>", 0, "\"a\\\"b\"@example.com", "example.com", -1, "", 0},
    {"FROM:<a@[192.0.2.1]>", 0, "a@[192.0.2.1]", "[192.0.2.1]", -1, "", 0},
    {"FROM:<a@[IPv6:2001:db8::1]>", 0, "a@[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]", -1, "", 0},
    {"FROM:<@relay.example:a@example.com>", 0, "a@example.com", "example.com", -1, "", 2},
    {"FROM:<@r1.example,@r2.example:a@example.com>", 0, "a@example.com", "example.com", -1, "", 2},
    {"FROM:<postmaster>", 0, "postmaster", "", -1, "", 0},
    {"FROM:<j\xc3\xb6rg@example.com> SMTPUTF8", 0, "j\xc3\xb6rg@example.com", "example.com", -1, "SMTPUTF8", 4},
    {"FROM:<a@b.c> ret=hdrs ENVID=QQ+2B1", 0, "a@b.c", "b.c", -1, "RET=HDRS ENVID=QQ+2B1", 0},
    {"FROM:<a@b.c> SIZE=5 RET=FULL", 0, "a@b.c", "b.c", 5, "SIZE=5 RET=FULL", 0},
    {"FROM:<a@b..c>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<a..b@example.com>", 0, "a..b@example.com", "example.com", -1, "", 0},
    {"FROM:<a@example.com.>", 0, "a@example.com.", "example.com.", -1, "", 0},

    {"", 501, "501 5.5.4 Syntax: MAIL FROM:<address>", NULL, 0, NULL, 0},
    {"FROM:", 501, "501 5.5.4 Syntax: MAIL FROM:<address>", NULL, 0, NULL, 0},
    {"TO:<a@b>", 501, "501 5.5.4 Syntax: MAIL FROM:<address>", NULL, 0, NULL, 0},
    {"FROM a@b", 501, "501 5.5.4 Syntax: MAIL FROM:<address>", NULL, 0, NULL, 0},
    {"FROM:<a@b", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<a@b>x", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<a b@c>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<a@b@c>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<a@-b_c>", 0, "a@-b_c", "-b_c", -1, "", 0},
    {"FROM:<a@b c>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<a(b)@c>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<@relay.example>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<@relay.example:>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<@:a@b>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<\"unterminated@b>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<a@[1.2.3.4>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<a@[]>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<\x01@b>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<a@\xff.example>", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<a\xc0\xaf" "b@example.com> SMTPUTF8", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<a\xed\xa0\x80@example.com> SMTPUTF8", 501, "501 5.1.7 Bad sender address syntax", NULL, 0, NULL, 0},
    {"FROM:<j\xc3\xb6rg@example.com>", 553, "553 5.6.7 Must declare SMTPUTF8 to send unicode address", NULL, 0, NULL, 0},
    {"FROM:<a@b> SIZE=", 501, "501 5.5.4 Bad MAIL parameter syntax", NULL, 0, NULL, 0},
    {"FROM:<a@b> SIZE=12x", 501, "501 5.5.4 Bad message size syntax", NULL, 0, NULL, 0},
    {"FROM:<a@b> SIZE=-1", 501, "501 5.5.4 Bad message size syntax", NULL, 0, NULL, 0},
    {"FROM:<a@b> SIZE", 501, "501 5.5.4 Bad message size syntax", NULL, 0, NULL, 0},
    {"FROM:<a@b> BODY=BINARYMIME", 501, "501 5.5.4 Unsupported BODY parameter value", NULL, 0, NULL, 0},
    {"FROM:<a@b> SMTPUTF8=yes", 501, "501 5.5.4 Bad SMTPUTF8 parameter syntax", NULL, 0, NULL, 0},
    {"FROM:<a@b> RET=PART", 501, "501 5.5.4 Bad RET parameter syntax", NULL, 0, NULL, 0},
    {"FROM:<a@b> RET=FULL RET=HDRS", 501, "501 5.5.4 Duplicate RET parameter", NULL, 0, NULL, 0},
    {"FROM:<a@b> ENVID=a+2", 501, "501 5.5.4 Bad ENVID parameter syntax", NULL, 0, NULL, 0},
    {"FROM:<a@b> ENVID=a+2b", 501, "501 5.5.4 Bad ENVID parameter syntax", NULL, 0, NULL, 0},
    {"FROM:<a@b> ENVID=x ENVID=y", 501, "501 5.5.4 Duplicate ENVID parameter", NULL, 0, NULL, 0},
    {"FROM:<a@b> ENVID=12345678901234567890123456789012345678901234567890"
     "123456789012345678901234567890123456789012345678901", 501, "501 5.5.4 Bad ENVID parameter syntax",
     NULL, 0, NULL, 0},
    {"FROM:<a@b> FOO=x", 555, "555 5.5.4 Unsupported option: FOO", NULL, 0, NULL, 0},
    {"FROM:<a@b> X=1=2", 501, "501 5.5.4 Bad MAIL parameter syntax", NULL, 0, NULL, 0},
    {"FROM:<a@b> =1", 501, "501 5.5.4 Bad MAIL parameter syntax", NULL, 0, NULL, 0},
};

/* mail_check - one MAIL case */
static void mail_check(const MAIL_CASE *mc)
{
    SMTP_PATH p;
    char reply[256] = "";
    int code = smtp_proto_mail(mc->arg, &p, reply, sizeof(reply));

    if (code != mc->code)
        fail_msg("MAIL \"%s\": code %d (%s), want %d", mc->arg, code, reply, mc->code);
    if (code != 0) {
        if (strcmp(reply, mc->addr_or_reply) != 0)
            fail_msg("MAIL \"%s\": reply \"%s\", want \"%s\"", mc->arg, reply, mc->addr_or_reply);
        return;
    }
    if (strcmp(p.addr, mc->addr_or_reply) != 0 || strcmp(p.domain, mc->domain) != 0
        || p.size != mc->size || strcmp(p.params, mc->params) != 0
        || p.is_null != !!(mc->flags & 1) || p.has_route != !!(mc->flags & 2)
        || p.is_utf8 != !!(mc->flags & 4))
        fail_msg("MAIL \"%s\": addr \"%s\" domain \"%s\" size %lld params \"%s\" null %d route %d utf8 %d",
                 mc->arg, p.addr, p.domain, p.size, p.params, p.is_null, p.has_route, p.is_utf8);
}

/* mail_table - MAIL FROM arguments */
static void mail_table(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(mail_cases) / sizeof(mail_cases[0]); i++)
        mail_check(&mail_cases[i]);
}

/* rcpt_table - RCPT TO arguments */
static void rcpt_table(void **state)
{
    static const struct {
        const char *arg;
        int utf8;
        int code;
        const char *want;
        const char *raw;
    } cases[] = {
        {"TO:<user@example.com>", 0, 0, "user@example.com", "user@example.com"},
        {"to: <user@example.com>", 0, 0, "user@example.com", "user@example.com"},
        {"TO:<Postmaster>", 0, 0, "Postmaster", "Postmaster"},
        {"TO:<@evil.example:user@example.com>", 0, 0, "user@example.com", "@evil.example:user@example.com"},
        {"TO:<user%other.example@example.com>", 0, 0, "user%other.example@example.com", NULL},
        {"TO:<other.example!user@example.com>", 0, 0, "other.example!user@example.com", NULL},
        {"TO:<\"user@other\"@example.com>", 0, 0, "\"user@other\"@example.com", NULL},
        {"TO:<j\xc3\xb6rg@example.com>", 1, 0, "j\xc3\xb6rg@example.com", NULL},
        {"TO:<j\xc3\xb6rg@example.com>", 0, 553, "553 5.6.7 Must declare SMTPUTF8 to send unicode address", NULL},
        {"TO:<>", 0, 501, "501 5.1.3 Bad recipient address syntax", NULL},
        {"TO:", 0, 501, "501 5.5.4 Syntax: RCPT TO:<address>", NULL},
        {"FROM:<a@b>", 0, 501, "501 5.5.4 Syntax: RCPT TO:<address>", NULL},
        {"TO:<a@b@c>", 0, 501, "501 5.1.3 Bad recipient address syntax", NULL},
        {"TO:<a@b> NOTIFY=NEVER,SUCCESS", 0, 501, "501 5.5.4 Bad NOTIFY parameter syntax", NULL},
        {"TO:<a@b> NOTIFY=FAILURE,", 0, 501, "501 5.5.4 Bad NOTIFY parameter syntax", NULL},
        {"TO:<a@b> NOTIFY=SOMETIMES", 0, 501, "501 5.5.4 Bad NOTIFY parameter syntax", NULL},
        {"TO:<a@b> NOTIFY=DELAY,DELAY", 0, 501, "501 5.5.4 Bad NOTIFY parameter syntax", NULL},
        {"TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER", 0, 501, "501 5.5.4 Bad NOTIFY parameter syntax", NULL},
        {"TO:<a@b> ORCPT=a@b", 0, 501, "501 5.5.4 Bad ORCPT parameter syntax", NULL},
        {"TO:<a@b> ORCPT=rfc822;", 0, 501, "501 5.5.4 Bad ORCPT parameter syntax", NULL},
        {"TO:<a@b> ORCPT=rfc822;a+b", 0, 501, "501 5.5.4 Bad ORCPT parameter syntax", NULL},
        {"TO:<a@b> XYZ=1", 0, 555, "555 5.5.4 Unsupported option: XYZ", NULL},
        {"TO:<a@b> !", 0, 501, "501 5.5.4 Bad RCPT parameter syntax", NULL},
    };

    (void) state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        SMTP_PATH p;
        char reply[256] = "";
        int code = smtp_proto_rcpt(cases[i].arg, cases[i].utf8, &p, reply, sizeof(reply));

        if (code != cases[i].code)
            fail_msg("RCPT \"%s\": code %d (%s), want %d", cases[i].arg, code, reply, cases[i].code);
        if (strcmp(code ? reply : p.addr, cases[i].want) != 0)
            fail_msg("RCPT \"%s\": got \"%s\", want \"%s\"", cases[i].arg, code ? reply : p.addr, cases[i].want);
        if (code == 0 && cases[i].raw && strcmp(p.raw, cases[i].raw) != 0)
            fail_msg("RCPT \"%s\": raw \"%s\", want \"%s\"", cases[i].arg, p.raw, cases[i].raw);
    }
}

/* rcpt_dsn - RFC 3461 NOTIFY and ORCPT: parsed, and passed on in one form */
static void rcpt_dsn(void **state)
{
    SMTP_PATH p;
    char reply[256];

    (void) state;
    assert_int_equal(smtp_proto_rcpt("TO:<a@b> notify=delay,failure ORCPT=rfc822;a+2Bx@b", 0, &p, reply,
                                     sizeof(reply)), 0);
    assert_int_equal(p.notify, SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
    assert_string_equal(p.orcpt, "rfc822;a+2Bx@b");
    assert_string_equal(p.params, "NOTIFY=FAILURE,DELAY ORCPT=rfc822;a+2Bx@b");
    assert_int_equal(smtp_proto_rcpt("TO:<a@b> NOTIFY=NEVER", 0, &p, reply, sizeof(reply)), 0);
    assert_int_equal(p.notify, SMTP_NOTIFY_NEVER);
    assert_string_equal(p.params, "NOTIFY=NEVER");
    assert_string_equal(p.orcpt, "");
    assert_int_equal(smtp_proto_rcpt("TO:<a@b>", 0, &p, reply, sizeof(reply)), 0);
    assert_int_equal(p.notify, 0);
    assert_string_equal(p.params, "");
    assert_int_equal(smtp_proto_mail("FROM:<a@b> RET=FULL ENVID=id1", &p, reply, sizeof(reply)), 0);
    assert_int_equal(p.ret, SMTP_RET_FULL);
    assert_string_equal(p.envid, "id1");
}

/* limits - RFC 5321 section 4.5.3.1 at the boundary */
static void limits(void **state)
{
    char local[100], label[100], domain[400], arg[1200], big[300];
    SMTP_PATH p;
    char reply[256];

    (void) state;
    /* A recipient's local part: 64 is fine, 65 is not. */
    memset(local, 'a', 64);
    local[64] = 0;
    snprintf(arg, sizeof(arg), "TO:<%s@example.com>", local);
    assert_int_equal(smtp_proto_rcpt(arg, 0, &p, reply, sizeof(reply)), 0);
    snprintf(arg, sizeof(arg), "TO:<%sa@example.com>", local);
    assert_int_equal(smtp_proto_rcpt(arg, 0, &p, reply, sizeof(reply)), 501);
    /* A sender's may be longer (SRS, BATV, VERP; Postfix takes them): the path bounds it. */
    snprintf(arg, sizeof(arg), "FROM:<%sa@example.com>", local);
    assert_int_equal(smtp_proto_mail(arg, &p, reply, sizeof(reply)), 0);
    assert_string_equal(p.domain, "example.com");
    snprintf(arg, sizeof(arg), "FROM:<\"%s a\"@example.com>", local);
    assert_int_equal(smtp_proto_mail(arg, &p, reply, sizeof(reply)), 0);
    memset(big, 'l', 250);
    big[250] = 0;
    snprintf(arg, sizeof(arg), "FROM:<%s@x.y>", big);
    assert_int_equal(smtp_proto_mail(arg, &p, reply, sizeof(reply)), 0);
    assert_string_equal(p.domain, "x.y");
    snprintf(arg, sizeof(arg), "FROM:<%sl@x.y>", big);
    assert_int_equal(smtp_proto_mail(arg, &p, reply, sizeof(reply)), 501);
    assert_string_equal(reply, "501 5.1.7 Bad sender address syntax");

    /* A quoted local part counts its quotes too. */
    memset(local, 'a', 62);
    local[62] = 0;
    snprintf(arg, sizeof(arg), "TO:<\"%s\"@example.com>", local);
    assert_int_equal(smtp_proto_rcpt(arg, 0, &p, reply, sizeof(reply)), 0);
    snprintf(arg, sizeof(arg), "TO:<\"%sa\"@example.com>", local);
    assert_int_equal(smtp_proto_rcpt(arg, 0, &p, reply, sizeof(reply)), 501);

    /* Label: 63 is fine, 64 is not. */
    memset(label, 'b', 63);
    label[63] = 0;
    snprintf(arg, sizeof(arg), "FROM:<a@%s.example>", label);
    assert_int_equal(smtp_proto_mail(arg, &p, reply, sizeof(reply)), 0);
    snprintf(arg, sizeof(arg), "FROM:<a@%sb.example>", label);
    assert_int_equal(smtp_proto_mail(arg, &p, reply, sizeof(reply)), 501);

    /* Path: four labels cut to 251 octets; "<ab@" + 251 + ">" is 256, one more is too long. */
    domain[0] = 0;
    for (int i = 0; i < 4; i++) {
        strcat(domain, label);
        strcat(domain, ".");
    }
    domain[251] = 0;
    assert_int_equal(strlen(domain), 251);
    snprintf(arg, sizeof(arg), "FROM:<ab@%s>", domain);
    assert_int_equal(smtp_proto_mail(arg, &p, reply, sizeof(reply)), 0);
    snprintf(arg, sizeof(arg), "FROM:<abc@%s>", domain);
    assert_int_equal(smtp_proto_mail(arg, &p, reply, sizeof(reply)), 501);
    assert_string_equal(reply, "501 5.1.7 Bad sender address syntax");

    /* A huge argument is refused without trouble. */
    memset(arg, 'x', sizeof(arg) - 1);
    arg[sizeof(arg) - 1] = 0;
    memcpy(arg, "TO:<", 4);
    assert_int_equal(smtp_proto_rcpt(arg, 0, &p, reply, sizeof(reply)), 501);
}

/* params_out - what goes downstream is normalised and bounded */
static void params_out(void **state)
{
    SMTP_PATH p;
    char reply[256];

    (void) state;
    assert_int_equal(smtp_proto_mail("FROM:<a@b> smtputf8 size=00012 BODY=8bitmime AUTH=a+40b", &p, reply,
                                     sizeof(reply)), 0);
    assert_string_equal(p.params, "SIZE=12 BODY=8BITMIME SMTPUTF8");
    assert_int_equal(p.smtputf8, 1);
    assert_int_equal(p.body, SMTP_BODY_8BITMIME);
}


typedef struct data_case {
    int normalize;
    const char *in;
    int status;                 /* after all of in, fed whole */
    const char *out;
    size_t used;
} DATA_CASE;

static const DATA_CASE data_cases[] = {
    {0, "hello\r\n.\r\n", SMTP_DATA_END, "hello\r\n", 10},
    {0, ".\r\n", SMTP_DATA_END, "", 3},
    {0, "\r\n.\r\n", SMTP_DATA_END, "\r\n", 5},
    {0, "..stuffed\r\n.\r\nQUIT\r\n", SMTP_DATA_END, "..stuffed\r\n", 14},
    {0, ". x\r\n.y\r\n.\r\n", SMTP_DATA_END, ". x\r\n.y\r\n", 12},
    {0, "no end yet\r\n", SMTP_DATA_MORE, "no end yet\r\n", 12},
    {0, "line\r\n.", SMTP_DATA_MORE, "line\r\n", 7},
    {0, "line\r\n.\r", SMTP_DATA_MORE, "line\r\n", 8},
    /* The smuggling sequences: refused where the bare byte is. */
    {0, "a\n.\r\nMAIL FROM:<x@y>\r\n", SMTP_DATA_BARE_LF, "a", 1},
    {0, "a\r\n.\n", SMTP_DATA_BARE_LF, "a\r\n", 4},
    {0, "a\n.\n", SMTP_DATA_BARE_LF, "a", 1},
    {0, "a\r\n.\r\r\n", SMTP_DATA_BARE_CR, "a\r\n", 5},
    {0, "a\r.\r", SMTP_DATA_BARE_CR, "a", 2},
    {0, "a\rb\r\n", SMTP_DATA_BARE_CR, "a", 2},
    /*
     * normalize: a bare CR or LF ends a line as CRLF would, but only
     * CRLF . CRLF ends the message (as Postfix's normalize): the
     * smuggling sequences give a literal "." line, stuffed, and what
     * follows stays in the message.
     */
    {1, "a\n.\r\nMAIL", SMTP_DATA_MORE, "a\r\n..\r\nMAIL", 9},
    {1, "a\n.\nX", SMTP_DATA_MORE, "a\r\n..\r\nX", 5},
    {1, "a\r\n.\nX", SMTP_DATA_MORE, "a\r\n..\r\nX", 6},
    {1, "a\r\n.\r\r\n", SMTP_DATA_MORE, "a\r\n..\r\n\r\n", 7},
    {1, "a\r.\rX", SMTP_DATA_MORE, "a\r\n..\r\nX", 5},
    {1, "one\ntwo\rthree\r\n..four\n.\n", SMTP_DATA_MORE, "one\r\ntwo\r\nthree\r\n..four\r\n..\r\n", 24},
    {1, "a\n\r\n.\r\nX", SMTP_DATA_END, "a\r\n\r\n", 7},
    {1, "a\r\n.\r\nX", SMTP_DATA_END, "a\r\n", 6},
    {1, "x\r\r\n", SMTP_DATA_MORE, "x\r\n\r\n", 4},
};

/* data_table - each case fed whole */
static void data_table(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
        const DATA_CASE *dc = &data_cases[i];
        SMTP_DATA_SCAN ds;
        char out[256];
        size_t used, outlen;
        int rc;

        smtp_proto_data_init(&ds, dc->normalize);
        rc = smtp_proto_data_scan(&ds, dc->in, strlen(dc->in), &used, out, sizeof(out), &outlen);
        if (rc != dc->status || used != dc->used || outlen != strlen(dc->out)
            || memcmp(out, dc->out, outlen) != 0)
            fail_msg("data case %zu: status %d used %zu out \"%.*s\"; want %d %zu \"%s\"", i, rc, used,
                     (int) outlen, out, dc->status, dc->used, dc->out);
    }
}

/* data_split - fed in pieces, with a tiny output buffer, the result is the same */
static void data_split(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
        const DATA_CASE *dc = &data_cases[i];

        for (size_t piece = 1; piece <= 4; piece++) {
            for (size_t outsize = 4; outsize <= 6; outsize++) {
                SMTP_DATA_SCAN ds;
                char all[256];
                size_t total = 0, pos = 0, len = strlen(dc->in);
                int rc = SMTP_DATA_MORE;

                smtp_proto_data_init(&ds, dc->normalize);
                while (pos < len) {
                    size_t n = len - pos < piece ? len - pos : piece;
                    size_t used, outlen;
                    char out[8];

                    rc = smtp_proto_data_scan(&ds, dc->in + pos, n, &used, out, outsize, &outlen);
                    assert_true(outlen <= outsize);
                    memcpy(all + total, out, outlen);
                    total += outlen;
                    pos += used;
                    if (rc != SMTP_DATA_MORE && rc != SMTP_DATA_FULL)
                        break;
                }
                if (rc == SMTP_DATA_FULL)
                    rc = SMTP_DATA_MORE;
                if (rc != dc->status || pos != dc->used || total != strlen(dc->out)
                    || memcmp(all, dc->out, total) != 0)
                    fail_msg("data case %zu in pieces of %zu, out %zu: status %d used %zu out \"%.*s\"",
                             i, piece, outsize, rc, pos, (int) total, all);
            }
        }
    }
}

/* charset - message_reject_characters lists, as Postfix writes them */
static void charset(void **state)
{
    unsigned char set[256];
    char err[256];

    (void) state;
    assert_int_equal(params_smtpd_charset("\\0", set, err, sizeof(err)), 1);
    assert_int_equal(set[0], 1);
    assert_int_equal(set['0'], 0);
    assert_int_equal(params_smtpd_charset("", set, err, sizeof(err)), 0);
    assert_int_equal(params_smtpd_charset("ab\\r\\t\\\\\\177\\001", set, err, sizeof(err)), 7);
    assert_true(set['a'] && set['b'] && set['\r'] && set['\t'] && set['\\'] && set[0x7f] && set[1]);
    assert_int_equal(params_smtpd_charset("\\0\\0aa", set, err, sizeof(err)), 2);
    assert_int_equal(params_smtpd_charset("\\377", set, err, sizeof(err)), 1);
    assert_int_equal(set[255], 1);
    assert_int_equal(params_smtpd_charset("\\400", set, err, sizeof(err)), -1);
    assert_int_equal(params_smtpd_charset("\\q", set, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unknown escape \\q"));
    assert_int_equal(params_smtpd_charset("x\\", set, err, sizeof(err)), -1);
}

/* The hop counter: messages (wire format, CRLF) and their Received: fields. */
static const struct {
    const char *msg;
    int hops;
} hops_cases[] = {
    {"Received: a\r\nReceived: b\r\nSubject: x\r\n\r\nbody\r\n", 2},
    {"RECEIVED: a\r\nreceived :b\r\nReceived\t: c\r\n\r\n", 3},
    {"Received: a\r\n\tfolded\r\n Received: still folded\r\n\r\n", 1},
    {"X-Received: a\r\nReceived-SPF: pass\r\nReceive: x\r\nReceivedX: y\r\n\r\n", 0},
    {"Subject: x\r\n\r\nReceived: in the body\r\n", 0},
    {"Received: a\r\nnot a field\r\nReceived: after it\r\n", 1},
    {"Received a\r\nReceived: b\r\n", 0},
    {":Received: a\r\nReceived: b\r\n", 0},
    {"Received: a\r\n\r\n", 1},
    {"Received: a", 1},
    {"Received", 0},
    {"", 0},
    {"Re\200ceived: a\r\nReceived: b\r\n", 0},
};

/* hops - Received: fields in the header only, however the message is cut */
static void hops(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(hops_cases) / sizeof(hops_cases[0]); i++) {
        size_t len = strlen(hops_cases[i].msg);

        for (size_t piece = 1; piece <= len + 1; piece++) {
            SMTP_HOPS h;
            int n = 0;

            smtp_proto_hops_init(&h);
            for (size_t pos = 0; pos < len; pos += piece)
                n = smtp_proto_hops_scan(&h, hops_cases[i].msg + pos, len - pos < piece ? len - pos : piece);
            if (n != hops_cases[i].hops)
                fail_msg("hops case %zu in pieces of %zu: %d, want %d", i, piece, n, hops_cases[i].hops);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_table),
        cmocka_unit_test(group_end),
        cmocka_unit_test(mail_table),
        cmocka_unit_test(rcpt_table),
        cmocka_unit_test(rcpt_dsn),
        cmocka_unit_test(limits),
        cmocka_unit_test(params_out),
        cmocka_unit_test(data_table),
        cmocka_unit_test(data_split),
        cmocka_unit_test(charset),
        cmocka_unit_test(hops),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
