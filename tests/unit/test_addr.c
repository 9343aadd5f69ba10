/*
 * test_addr.c - unit tests for lib/addr.c (cmocka, one TAP line per case)
 *
 * Case tables: an input (length given, so NULs can be embedded), the
 * flags, the result addr_parse() must return and, when that is ADDR_OK,
 * the key. Every ADDR_OK key is parsed again and must come back unchanged
 * (the normal form is a fixed point). Limits are built at run time.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"

/* B - a string literal as pointer and length, embedded NULs included */
#define B(s)    s, sizeof(s) - 1

#define NUL     ADDR_ALLOW_NULL
#define BARE    ADDR_ALLOW_BARE
#define ROUTE   ADDR_ALLOW_ROUTE
#define PCT     ADDR_ALLOW_PERCENT
#define BANG    ADDR_ALLOW_BANG

struct parse_case {
    const char *in;
    size_t len;
    int flags;
    int err;
    const char *key;
};

static const struct parse_case parse_cases[] = {
    /* plain and mixed case */
    {B("user@example.com"), 0, ADDR_OK, "user@example.com"},
    {B("<user@example.com>"), 0, ADDR_OK, "user@example.com"},
    {B("User@Example.COM"), 0, ADDR_OK, "user@example.com"},
    {B("<John.Doe@EXAMPLE.org>"), 0, ADDR_OK, "john.doe@example.org"},
    {B("first.last+Tag@example.com"), 0, ADDR_OK, "first.last+tag@example.com"},
    {B("a#$&'*+-/=?^_`{|}~z@example.com"), 0, ADDR_OK, "a#$&'*+-/=?^_`{|}~z@example.com"},
    {B("u@localhost"), 0, ADDR_OK, "u@localhost"},
    {B("u@a-b.c-d.example"), 0, ADDR_OK, "u@a-b.c-d.example"},

    /* quoted local parts: unquoted when that changes nothing */
    {B("\"john\"@example.com"), 0, ADDR_OK, "john@example.com"},
    {B("\"John.Doe\"@Example.com"), 0, ADDR_OK, "john.doe@example.com"},
    {B("\"john doe\"@example.com"), 0, ADDR_OK, "\"john doe\"@example.com"},
    {B("<\"John Doe\"@example.com>"), 0, ADDR_OK, "\"john doe\"@example.com"},
    {B("\"a@b\"@example.com"), 0, ADDR_OK, "\"a@b\"@example.com"},
    {B("\"john..doe\"@example.com"), 0, ADDR_OK, "\"john..doe\"@example.com"},
    {B("\".john\"@example.com"), 0, ADDR_OK, "\".john\"@example.com"},
    {B("\"john.\"@example.com"), 0, ADDR_OK, "\"john.\"@example.com"},
    {B("\"\"@example.com"), 0, ADDR_OK, "\"\"@example.com"},
    {B("\"a,b\"@example.com"), 0, ADDR_OK, "\"a,b\"@example.com"},

    /* quoted-pairs: decoded, then escaped again only where needed */
    {B("\"j\\ohn\"@example.com"), 0, ADDR_OK, "john@example.com"},
    {B("\"a\\ b\"@example.com"), 0, ADDR_OK, "\"a b\"@example.com"},
    {B("\"a\\\"b\"@example.com"), 0, ADDR_OK, "\"a\\\"b\"@example.com"},
    {B("\"a\\\\b\"@example.com"), 0, ADDR_OK, "\"a\\\\b\"@example.com"},
    {B("\"\\A\\@\\b\"@example.com"), 0, ADDR_OK, "\"a@b\"@example.com"},
    {B("\"a\\\tb\"@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("\"ab\\\"@example.com"), 0, ADDR_ERR_SYNTAX, NULL},

    /* broken quoting */
    {B("\"abc@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("\"a\"b@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("a\"b\"@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("\"a\".b@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("\"a\tb\"@example.com"), 0, ADDR_ERR_SYNTAX, NULL},

    /* source routes */
    {B("<@a.example,@b.example:user@d.example>"), 0, ADDR_ERR_ROUTE, NULL},
    {B("<@a.example,@b.example:User@D.example>"), ROUTE, ADDR_OK, "user@d.example"},
    {B("@a.example:user@d.example"), ROUTE, ADDR_OK, "user@d.example"},
    {B("<@a_b.example:user@d.example>"), ROUTE, ADDR_ERR_DOMAIN, NULL},
    {B("<@a.example,:user@d.example>"), ROUTE, ADDR_ERR_SYNTAX, NULL},
    {B("<@a.example,b.example:user@d.example>"), ROUTE, ADDR_ERR_SYNTAX, NULL},
    {B("<@a.example:>"), ROUTE, ADDR_ERR_SYNTAX, NULL},
    {B("<@example.com>"), ROUTE, ADDR_ERR_SYNTAX, NULL},
    {B("<@>"), 0, ADDR_ERR_SYNTAX, NULL},

    /* the "%" hack and bang paths */
    {B("u%relay.example@example.com"), 0, ADDR_ERR_PERCENT, NULL},
    {B("u%relay.example@example.com"), PCT, ADDR_OK, "u%relay.example@example.com"},
    {B("\"u%relay.example\"@example.com"), 0, ADDR_OK, "\"u%relay.example\"@example.com"},
    {B("\"u%relay.example\"@example.com"), PCT, ADDR_OK, "u%relay.example@example.com"},
    {B("relay!u@example.com"), 0, ADDR_ERR_BANG, NULL},
    {B("relay!u@example.com"), BANG, ADDR_OK, "relay!u@example.com"},
    {B("\"relay!u\"@example.com"), 0, ADDR_OK, "\"relay!u\"@example.com"},
    {B("\"relay!u\"@example.com"), BANG, ADDR_OK, "relay!u@example.com"},
    {B("relay!u"), BARE, ADDR_ERR_BANG, NULL},

    /* more than one "@" */
    {B("a@b@example.com"), 0, ADDR_ERR_MULTI_AT, NULL},
    {B("<a@b@example.com>"), ADDR_ALLOW_ROUTE | PCT | BANG | BARE, ADDR_ERR_MULTI_AT, NULL},
    {B("\"a@b\"@c@example.com"), 0, ADDR_ERR_MULTI_AT, NULL},

    /* the null path */
    {B("<>"), 0, ADDR_ERR_EMPTY, NULL},
    {B("<>"), NUL, ADDR_OK, ""},
    {B(""), 0, ADDR_ERR_EMPTY, NULL},
    {B(""), NUL, ADDR_OK, ""},
    {B("< >"), NUL, ADDR_ERR_SYNTAX, NULL},

    /* no domain */
    {B("postmaster"), 0, ADDR_ERR_NO_DOMAIN, NULL},
    {B("postmaster"), BARE, ADDR_OK, "postmaster"},
    {B("<PostMaster>"), BARE, ADDR_OK, "postmaster"},
    {B("\"Post Master\""), BARE, ADDR_OK, "\"post master\""},
    {B("user@"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("user@"), BARE, ADDR_ERR_DOMAIN, NULL},

    /* address literals */
    {B("u@[192.0.2.1]"), 0, ADDR_OK, "u@[192.0.2.1]"},
    {B("u@[IPv6:2001:DB8::1]"), 0, ADDR_OK, "u@[ipv6:2001:db8::1]"},
    {B("u@[ipv6:2001:db8:0:0:0:0:0:1]"), 0, ADDR_OK, "u@[ipv6:2001:db8::1]"},
    {B("u@[IPv6:::ffff:192.0.2.1]"), 0, ADDR_OK, "u@[ipv6:::ffff:192.0.2.1]"},
    {B("u@[192.0.2.256]"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@[192.0.2]"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@[2001:db8::1]"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@[IPv6:192.0.2.1]"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@[IPv6:2001:db8::1%eth0]"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@[x400:c=us]"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@[]"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@[192.0.2.1"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u@192.0.2.1]"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u@[192.0.2.1]."), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u@[192.0.2. 1]"), 0, ADDR_ERR_SYNTAX, NULL},

    /* internationalised domains and UTF-8 local parts */
    {B("user@b\xc3\xbc" "cher.example"), 0, ADDR_OK, "user@xn--bcher-kva.example"},
    {B("user@B\xc3\x9c" "CHER.Example"), 0, ADDR_OK, "user@xn--bcher-kva.example"},
    {B("user@xn--bcher-kva.example"), 0, ADDR_OK, "user@xn--bcher-kva.example"},
    {B("user@XN--BCHER-KVA.EXAMPLE"), 0, ADDR_OK, "user@xn--bcher-kva.example"},
    {B("user@fa\xc3\x9f.de"), 0, ADDR_OK, "user@xn--fa-hia.de"},
    {B("user@b\xc3\xbc" "cher.example."), 0, ADDR_OK, "user@xn--bcher-kva.example"},
    {B("user@xn--abc.example"), 0, ADDR_ERR_IDN, NULL},
    {B("user@xn--.example"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("user@exa\xe2\x80\x8dmple.com"), 0, ADDR_ERR_IDN, NULL},
    {B("user@a_b.b\xc3\xbc" "cher.example"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("user@b\xc3\xbc" "cher..example"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("J\xc3\x96hn@example.com"), 0, ADDR_OK, "j\xc3\x96hn@example.com"},
    {B("\"J\xc3\xb6hn\"@example.com"), 0, ADDR_OK, "j\xc3\xb6hn@example.com"},
    {B("\xe7\x94\xa8\xe6\x88\xb7@b\xc3\xbc" "cher.example"), 0, ADDR_OK,
     "\xe7\x94\xa8\xe6\x88\xb7@xn--bcher-kva.example"},

    /* invalid UTF-8 */
    {B("j\xffn@example.com"), 0, ADDR_ERR_UTF8, NULL},
    {B("a\xc3@example.com"), 0, ADDR_ERR_UTF8, NULL},
    {B("\xc0\xaf@example.com"), 0, ADDR_ERR_UTF8, NULL},
    {B("\xed\xa0\x80@example.com"), 0, ADDR_ERR_UTF8, NULL},
    {B("\xf4\x90\x80\x80@example.com"), 0, ADDR_ERR_UTF8, NULL},
    {B("\"\xff\"@example.com"), 0, ADDR_ERR_UTF8, NULL},
    {B("user@b\xc3(r.example"), 0, ADDR_ERR_UTF8, NULL},
    {B("user@b\xbc" "cher.example"), 0, ADDR_ERR_UTF8, NULL},

    /* domain syntax */
    {B("u@example.com."), 0, ADDR_OK, "u@example.com"},
    {B("u@example.com.."), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@.example.com"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@example..com"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@."), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@-example.com"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@example-.com"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@ex_ample.com"), 0, ADDR_ERR_DOMAIN, NULL},
    {B("u@exa$mple.com"), 0, ADDR_ERR_DOMAIN, NULL},

    /* local part syntax */
    {B(".u@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u.@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u..v@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u(comment)@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u\\v@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("@"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("a\xc2\x85" "b@example.com"), 0, ADDR_ERR_SYNTAX, NULL},

    /* whitespace, control characters, NUL, unbalanced brackets */
    {B("u v@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B(" u@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u@example.com "), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u@example.com\r\n"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("<u@example.com> "), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u\0v@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u@exa\0mple.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u@example.com\0"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u@b\xc3\xbc" "cher\0.example"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u\x01@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u@exa\x7fmple.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("<u@example.com"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("u@example.com>"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("<<u@example.com>>"), 0, ADDR_ERR_SYNTAX, NULL},
    {B("<"), NUL, ADDR_ERR_SYNTAX, NULL},
    {B(">"), NUL, ADDR_ERR_SYNTAX, NULL},
};

struct domain_case {
    const char *in;
    size_t len;
    int err;
    const char *out;
};

static const struct domain_case domain_cases[] = {
    {B("Example.COM"), ADDR_OK, "example.com"},
    {B("example.com."), ADDR_OK, "example.com"},
    {B("b\xc3\xbc" "cher.example"), ADDR_OK, "xn--bcher-kva.example"},
    {B("xn--bcher-kva.example"), ADDR_OK, "xn--bcher-kva.example"},
    {B("[192.0.2.1]"), ADDR_OK, "[192.0.2.1]"},
    {B(""), ADDR_ERR_EMPTY, ""},
    {B(".example.com"), ADDR_ERR_DOMAIN, ""},
    {B("example.com.."), ADDR_ERR_DOMAIN, ""},
    {B("a@example.com"), ADDR_ERR_DOMAIN, ""},
    {B("exa mple.com"), ADDR_ERR_SYNTAX, ""},
    {B("example.com\0"), ADDR_ERR_SYNTAX, ""},
    {B("xn--abc.example"), ADDR_ERR_IDN, ""},
    {B("b\xff.example"), ADDR_ERR_UTF8, ""},
};

struct strip_case {
    const char *local;
    const char *delims;
    int ret;
    const char *out;
};

static const struct strip_case strip_cases[] = {
    {"user+tag", "+", 1, "user"},
    {"user+tag+more", "+", 1, "user"},
    {"+tag", "+", 0, "+tag"},
    {"++tag", "+", 1, "+"},
    {"user+", "+", 1, "user"},
    {"user", "+", 0, "user"},
    {"user-tag+x", "+-", 1, "user"},
    {"user+tag-x", "+-", 1, "user"},
    {"user-tag", "+", 0, "user-tag"},
    {"user+tag", "-", 0, "user+tag"},
    {"user+tag", "", 0, "user+tag"},
    {"user+tag", NULL, 0, "user+tag"},
    {"\"user+tag\"", "+", 0, "\"user+tag\""},
    {"\"a b\"+x", "+", 0, "\"a b\"+x"},
    {"j\xc3\xb6hn+tag", "+", 1, "j\xc3\xb6hn"},
    {"", "+", 0, ""},
    /* with '-' a delimiter, owner-LIST and LIST-request are never split (as Postfix) */
    {"owner-staff", "-", 0, "owner-staff"},
    {"owner-staff", "+-", 0, "owner-staff"},
    {"staff-request", "-", 0, "staff-request"},
    {"staff-request+x", "+-", 1, "staff"},
    {"owner-staff+x", "+", 1, "owner-staff"},
    {"-request", "-", 0, "-request"},
    {"owner", "-", 0, "owner"},
    {"user-request-x", "-", 1, "user"},
};

/* case_name - a printable TAP test name: no NUL, control, non-ASCII or '#' */
static char *case_name(const char *prefix, const char *in, size_t len, int flags)
{
    size_t size = strlen(prefix) + 4 * len + 32, o, i;
    char *name = malloc(size);
    unsigned char c;

    if (name == NULL)
        abort();
    o = (size_t) snprintf(name, size, "%s ", prefix);
    for (i = 0; i < len; i++) {
        c = (unsigned char) in[i];
        if (c < 0x20 || c >= 0x7f || c == '#' || c == '\\')
            o += (size_t) snprintf(name + o, size - o, "\\x%02x", c);
        else
            name[o++] = (char) c;
    }
    if (flags >= 0)
        snprintf(name + o, size - o, " flags=0x%02x", flags);
    else
        name[o] = 0;
    return name;
}

/* run_parse_case - one row of parse_cases, and the fixed-point check */
static void run_parse_case(void **state)
{
    const struct parse_case *tc = *state;
    ADDR a, b;
    int err;

    err = addr_parse(tc->in, tc->len, tc->flags, &a);
    if (err != tc->err)
        print_message("# got %s, want %s\n", addr_strerror(err), addr_strerror(tc->err));
    assert_int_equal(err, tc->err);
    if (err != ADDR_OK) {
        assert_string_equal(a.key, "");
        assert_string_equal(a.local, "");
        assert_string_equal(a.domain, "");
        return;
    }
    assert_string_equal(a.key, tc->key);
    assert_true(strlen(a.key) < ADDR_KEY_SIZE);
    err = addr_parse(a.key, strlen(a.key), tc->flags, &b);
    assert_int_equal(err, ADDR_OK);
    assert_string_equal(b.key, a.key);
    assert_string_equal(b.local, a.local);
    assert_string_equal(b.domain, a.domain);
}

/* run_domain_case - one row of domain_cases */
static void run_domain_case(void **state)
{
    const struct domain_case *tc = *state;
    char out[ADDR_DOMAIN_MAX + 1];
    int err;

    memset(out, 'x', sizeof(out));
    err = addr_domain(tc->in, tc->len, out);
    if (err != tc->err)
        print_message("# got %s, want %s\n", addr_strerror(err), addr_strerror(tc->err));
    assert_int_equal(err, tc->err);
    assert_string_equal(out, tc->out);
}

/* run_strip_case - one row of strip_cases */
static void run_strip_case(void **state)
{
    const struct strip_case *tc = *state;
    char out[ADDR_KEY_SIZE];

    assert_int_equal(addr_strip_extension(tc->local, tc->delims, out), tc->ret);
    assert_string_equal(out, tc->out);
}

/* repeat - a string of n copies of c */
static char *repeat(char *buf, int c, size_t n)
{
    memset(buf, c, n);
    buf[n] = 0;
    return buf;
}

/* expect_parse - parse a NUL-terminated s and check result (and key if OK) */
static void expect_parse(const char *s, int flags, int want, const char *key)
{
    ADDR a;
    int err = addr_parse(s, strlen(s), flags, &a);

    if (err != want)
        print_message("# %zu bytes: got %s, want %s\n", strlen(s), addr_strerror(err), addr_strerror(want));
    assert_int_equal(err, want);
    if (key)
        assert_string_equal(a.key, key);
}

/* test_local_limit - 64 octets of local part, as written, and not 65 */
static void test_local_limit(void **state)
{
    char local[80], in[160], key[160];

    (void) state;
    snprintf(in, sizeof(in), "%s@example.com", repeat(local, 'a', 64));
    expect_parse(in, 0, ADDR_OK, in);
    snprintf(in, sizeof(in), "%s@example.com", repeat(local, 'a', 65));
    expect_parse(in, 0, ADDR_ERR_LOCAL_LONG, NULL);
    /* quotes count: "62 x b" is 64 octets, "63 x b" is 65 */
    snprintf(in, sizeof(in), "\"%s\"@example.com", repeat(local, 'b', 62));
    snprintf(key, sizeof(key), "%s@example.com", local);
    expect_parse(in, 0, ADDR_OK, key);         /* and it loses its quotes */
    snprintf(in, sizeof(in), "\"%s\"@example.com", repeat(local, 'b', 63));
    expect_parse(in, 0, ADDR_ERR_LOCAL_LONG, NULL);
    /* UTF-8 counts in octets: 32 two-octet characters fit, 33 do not */
    for (int i = 0; i < 32; i++)
        memcpy(local + 2 * i, "\xc3\xa9", 2);
    local[64] = 0;
    snprintf(in, sizeof(in), "%s@example.com", local);
    expect_parse(in, 0, ADDR_OK, in);
    snprintf(in, sizeof(in), "%s\xc3\xa9@example.com", local);
    expect_parse(in, 0, ADDR_ERR_LOCAL_LONG, NULL);
}

/*
 * test_long_local - ADDR_ALLOW_LONG_LOCAL (senders) lifts the 64-octet
 * limit of the local part, not the path's: 250 octets of local part fit in
 * <...@x.y>, 251 do not; the key still parses back to itself.
 */
static void test_long_local(void **state)
{
    char local[300], in[400], key[400];
    ADDR a;

    (void) state;
    snprintf(in, sizeof(in), "SRS0=AbCd=2Q=%s@Forwarder.example", repeat(local, 'x', 60));
    snprintf(key, sizeof(key), "srs0=abcd=2q=%s@forwarder.example", local);
    expect_parse(in, 0, ADDR_ERR_LOCAL_LONG, NULL);
    expect_parse(in, ADDR_ALLOW_LONG_LOCAL, ADDR_OK, key);
    assert_int_equal(addr_parse(key, strlen(key), ADDR_ALLOW_LONG_LOCAL, &a), ADDR_OK);
    assert_string_equal(a.key, key);
    assert_string_equal(a.domain, "forwarder.example");
    /* quoted, and with the other sender flags */
    snprintf(in, sizeof(in), "\"%s\"@example.com", repeat(local, 'q', 70));
    snprintf(key, sizeof(key), "%s@example.com", local);
    expect_parse(in, ADDR_ALLOW_LONG_LOCAL | NUL | BARE | ROUTE | PCT | BANG, ADDR_OK, key);
    snprintf(in, sizeof(in), "host!%s", repeat(local, 'b', 70));
    expect_parse(in, ADDR_ALLOW_LONG_LOCAL | BARE | BANG, ADDR_OK, in);
    /* the path limit holds: <250 octets@x.y> is 256 octets, and a bare local part 254 */
    snprintf(in, sizeof(in), "%s@x.y", repeat(local, 'l', 250));
    assert_int_equal(strlen(in), 254);
    expect_parse(in, ADDR_ALLOW_LONG_LOCAL, ADDR_OK, in);
    snprintf(in, sizeof(in), "%s@x.y", repeat(local, 'l', 251));
    expect_parse(in, ADDR_ALLOW_LONG_LOCAL, ADDR_ERR_PATH_LONG, NULL);
    snprintf(in, sizeof(in), "<%s>", repeat(local, 'l', 254));
    expect_parse(in, ADDR_ALLOW_LONG_LOCAL | BARE, ADDR_OK, NULL);
    snprintf(in, sizeof(in), "<%s>", repeat(local, 'l', 255));
    expect_parse(in, ADDR_ALLOW_LONG_LOCAL | BARE, ADDR_ERR_PATH_LONG, NULL);
}

/* test_label_limit - a 63-octet label, and a 64-octet one */
static void test_label_limit(void **state)
{
    char label[80], in[160], out[ADDR_DOMAIN_MAX + 1];

    (void) state;
    snprintf(in, sizeof(in), "u@%s.example", repeat(label, 'l', 63));
    expect_parse(in, 0, ADDR_OK, in);
    snprintf(in, sizeof(in), "u@%s.example", repeat(label, 'l', 64));
    expect_parse(in, 0, ADDR_ERR_DOMAIN_LONG, NULL);
    snprintf(in, sizeof(in), "u@example.%s", repeat(label, 'l', 64));
    expect_parse(in, 0, ADDR_ERR_DOMAIN_LONG, NULL);
    assert_int_equal(addr_domain(label, 64, out), ADDR_ERR_DOMAIN_LONG);
    assert_int_equal(addr_domain(label, 63, out), ADDR_OK);
}

/* long_domain - n octets of valid domain name (labels of 63 and the rest) */
static char *long_domain(char *buf, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        buf[i] = (i % 64 == 63) ? '.' : 'd';
    if (n > 0 && buf[n - 1] == '.')
        buf[n - 1] = 'd';
    buf[n] = 0;
    return buf;
}

/* test_domain_limit - addr_domain: 255 octets, 255 with a trailing dot, 256 */
static void test_domain_limit(void **state)
{
    char dom[300], out[ADDR_DOMAIN_MAX + 1];

    (void) state;
    long_domain(dom, 255);
    assert_int_equal(addr_domain(dom, 255, out), ADDR_OK);
    assert_string_equal(out, dom);
    strcat(dom, ".");
    assert_int_equal(addr_domain(dom, 256, out), ADDR_OK);
    assert_int_equal(strlen(out), 255);
    long_domain(dom, 256);
    assert_int_equal(addr_domain(dom, 256, out), ADDR_ERR_DOMAIN_LONG);
    assert_string_equal(out, "");
    long_domain(dom, 299);
    assert_int_equal(addr_domain(dom, 299, out), ADDR_ERR_DOMAIN_LONG);
}

/* test_path_limit - 256 octets of path with brackets; 254 without */
static void test_path_limit(void **state)
{
    char local[80], dom[300], in[400];

    (void) state;
    repeat(local, 'p', 64);
    /* <64 @ 189> is 256 octets */
    snprintf(in, sizeof(in), "<%s@%s>", local, long_domain(dom, 189));
    assert_int_equal(strlen(in), 256);
    expect_parse(in, 0, ADDR_OK, NULL);
    snprintf(in, sizeof(in), "<%s@%s>", local, long_domain(dom, 190));
    expect_parse(in, 0, ADDR_ERR_PATH_LONG, NULL);
    /* without brackets the same limit leaves 254 */
    snprintf(in, sizeof(in), "%s@%s", local, long_domain(dom, 189));
    assert_int_equal(strlen(in), 254);
    expect_parse(in, 0, ADDR_OK, in);
    snprintf(in, sizeof(in), "%s@%s", local, long_domain(dom, 190));
    expect_parse(in, 0, ADDR_ERR_PATH_LONG, NULL);
    /* a route counts towards the path */
    snprintf(in, sizeof(in), "<@r.example:%s@%s>", local, long_domain(dom, 180));
    expect_parse(in, ROUTE, ADDR_ERR_PATH_LONG, NULL);
    snprintf(in, sizeof(in), "<@r.example:%s@%s>", local, long_domain(dom, 177));
    expect_parse(in, ROUTE, ADDR_OK, NULL);
    /* far too long, and not even well formed: still just too long */
    memset(in, '<', sizeof(in) - 1);
    in[sizeof(in) - 1] = 0;
    expect_parse(in, 0, ADDR_ERR_PATH_LONG, NULL);
}

/*
 * test_path_limit_normal_form - an IDN whose A-label pushes the key past
 * the path limit is refused, so every key parses back.
 */
static void test_path_limit_normal_form(void **state)
{
    char local[80], in[400], label[80];
    size_t n;

    (void) state;
    repeat(local, 'p', 64);
    /* "e" x 55 then "é": 57 octets as typed, 63 as an A-label */
    repeat(label, 'e', 55);
    strcat(label, "\xc3\xa9");
    snprintf(in, sizeof(in), "%s@%s.%s.%s", local, label, label, label);
    n = strlen(in);
    assert_true(n + 2 <= ADDR_PATH_MAX);
    expect_parse(in, 0, ADDR_ERR_PATH_LONG, NULL);
    /* the same labels with a short local part fit */
    snprintf(in, sizeof(in), "p@%s.%s.%s", label, label, label);
    expect_parse(in, 0, ADDR_OK, NULL);
}

/* test_fields - the flags and parts besides the key */
static void test_fields(void **state)
{
    ADDR a;

    (void) state;
    assert_int_equal(addr_parse(B("<>"), NUL, &a), ADDR_OK);
    assert_true(a.is_null);
    assert_string_equal(a.key, "");
    assert_string_equal(a.local, "");
    assert_string_equal(a.domain, "");

    assert_int_equal(addr_parse(B("\"A B\"@Example.com."), 0, &a), ADDR_OK);
    assert_false(a.is_null);
    assert_false(a.is_literal);
    assert_false(a.is_utf8);
    assert_string_equal(a.local, "\"a b\"");
    assert_string_equal(a.domain, "example.com");

    assert_int_equal(addr_parse(B("u@[IPv6:::1]"), 0, &a), ADDR_OK);
    assert_true(a.is_literal);
    assert_string_equal(a.domain, "[ipv6:::1]");

    assert_int_equal(addr_parse(B("u@b\xc3\xbc" "cher.example"), 0, &a), ADDR_OK);
    assert_true(a.is_utf8);
    assert_string_equal(a.local, "u");
    assert_string_equal(a.domain, "xn--bcher-kva.example");

    assert_int_equal(addr_parse(B("\xc3\xbc@example.com"), 0, &a), ADDR_OK);
    assert_true(a.is_utf8);

    assert_int_equal(addr_parse(B("postmaster"), BARE, &a), ADDR_OK);
    assert_string_equal(a.local, "postmaster");
    assert_string_equal(a.domain, "");
    assert_false(a.is_null);

    /* an error leaves nothing behind from an earlier success */
    assert_int_equal(addr_parse(B("u@[192.0.2.1]"), 0, &a), ADDR_OK);
    assert_int_equal(addr_parse(B("u@[192.0.2.1]x"), 0, &a), ADDR_ERR_SYNTAX);
    assert_string_equal(a.key, "");
    assert_false(a.is_literal);
}

/* test_equal_forms - different spellings of one mailbox meet on one key */
static void test_equal_forms(void **state)
{
    static const char *const forms[] = {
        "john@xn--bcher-kva.example",
        "John@B\xc3\x9c" "CHER.example",
        "<\"john\"@b\xc3\xbc" "cher.example.>",
        "\"J\\ohn\"@XN--BCHER-KVA.EXAMPLE",
        "<@relay.example:JOHN@b\xc3\xbc" "cher.example>",
    };
    ADDR a;
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        assert_int_equal(addr_parse(forms[i], strlen(forms[i]), ROUTE, &a), ADDR_OK);
        assert_string_equal(a.key, forms[0]);
    }
    /* and the open-relay trick never meets the address it imitates */
    assert_int_equal(addr_parse(B("\"a@b.example\"@example.com"), 0, &a), ADDR_OK);
    assert_string_not_equal(a.key, "a@b.example");
    assert_int_equal(addr_parse(B("\"a@b.example\""), BARE, &a), ADDR_OK);
    assert_string_not_equal(a.key, "a@b.example");
}

/*
 * test_memo - libidn2 answers are remembered per thread: the same name
 * gives the same answer again, good or bad, also after more names than
 * the memo holds have pushed it out.
 */
static void test_memo(void **state)
{
    char in[ADDR_KEY_SIZE], want[ADDR_KEY_SIZE] = "";
    ADDR a;
    int round, i;

    (void) state;
    for (round = 0; round < 3; round++) {
        for (i = 0; i < 100; i++) {
            snprintf(in, sizeof(in), "u@b\xc3\xbc" "cher%d.example", i);
            assert_int_equal(addr_parse(in, strlen(in), 0, &a), ADDR_OK);
            assert_true(a.is_utf8);
            snprintf(in, sizeof(in), "%s", a.key);
            assert_int_equal(addr_parse(in, strlen(in), 0, &a), ADDR_OK);
            assert_string_equal(a.key, in);
            assert_false(a.is_utf8);
        }
        assert_int_equal(addr_parse(B("u@b\xc3\xbc" "cher7.example"), 0, &a), ADDR_OK);
        if (round == 0)
            memcpy(want, a.key, sizeof(want));
        assert_string_equal(a.key, want);
        assert_memory_equal(a.key, "u@xn--bcher7-", 13);
        assert_int_equal(addr_parse(B("u@xn--abc.example"), 0, &a), ADDR_ERR_IDN);
        assert_int_equal(addr_parse(B("u@exa\xe2\x80\x8dmple.com"), 0, &a), ADDR_ERR_IDN);
        assert_int_equal(addr_parse(B("u@xn--bcher-kva.example"), 0, &a), ADDR_OK);
        assert_int_equal(addr_parse(B("u@XN--BCHER-KVA.example"), 0, &a), ADDR_OK);
        assert_string_equal(a.key, "u@xn--bcher-kva.example");
    }
}

/* test_strerror - a distinct short lowercase phrase for every result */
static void test_strerror(void **state)
{
    const char *seen[ADDR_ERR_UTF8 + 1];
    const char *s;
    int e, f;

    (void) state;
    assert_string_equal(addr_strerror(ADDR_ERR_LOCAL_LONG), "local part too long");
    for (e = ADDR_OK; e <= ADDR_ERR_UTF8; e++) {
        s = seen[e] = addr_strerror(e);
        assert_non_null(s);
        assert_true(strlen(s) > 0 && strlen(s) < 40);
        for (; *s; s++)
            assert_false(*s >= 'A' && *s <= 'Z');
        for (f = ADDR_OK; f < e; f++)
            assert_string_not_equal(seen[f], seen[e]);
    }
    assert_non_null(addr_strerror(-1));
    assert_non_null(addr_strerror(ADDR_ERR_UTF8 + 1));
}

#define N(a)    (sizeof(a) / sizeof((a)[0]))

/* test_key_case - addr_key() of in (flags) gives want, or fails when want is NULL */
/* addr_external: Postfix's internal form (quotes taken off) back to what addr_parse reads */
static void test_external(void **state)
{
    char out[200];
    static const char *const cases[][2] = {
        {"john doe@example.com", "\"john doe\"@example.com"},
        {"a\\b c@example.com", "\"a\\\\b c\"@example.com"},
        {"x,y@example.com", "\"x,y\"@example.com"},
        {"plain.user+tag@example.com", "plain.user+tag@example.com"},
        {"a..b@example.com", "a..b@example.com"},         /* no special: as it came */
        {"a b@c@example.com", "a b@c@example.com"},       /* '@' inside: as it came */
        {"\"q\"@example.com", "\"q\"@example.com"},
        {"no domain", "\"no domain\""},
        {"", ""},
    };

    (void) state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(addr_external(cases[i][0], out, sizeof(out)), cases[i][1]);
    assert_string_equal(addr_external("john doe@example.com", out, 10), "");   /* too small: nothing */
}

static void test_key_case(const char *in, int flags, const char *want)
{
    char out[ADDR_KEY_SIZE];
    char why[256] = "";
    int rc = addr_key(in, strlen(in), flags, out, why, sizeof(why));

    if (want == NULL) {
        if (rc != -1)
            fail_msg("addr_key(\"%s\") gave \"%s\", wanted an error", in, out);
        assert_true(why[0] != 0);
        assert_string_equal(out, "");
        return;
    }
    if (rc != 0)
        fail_msg("addr_key(\"%s\") failed: %s", in, why);
    assert_string_equal(out, want);
}

/*
 * addr_key - the one normaliser of stored keys (import, map files, the
 * directory sources): white space, case, the null sender, catch-alls and
 * bad input, with the error text free of the input.
 */
static void test_key(void **state)
{
    char out[ADDR_KEY_SIZE];
    char why[256];

    (void) state;
    /* case */
    test_key_case("Alice@Example.COM", 0, "alice@example.com");
    test_key_case("<Alice@Example.COM>", 0, "alice@example.com");
    test_key_case("x@b\xc3\xbcro.example", 0, "x@xn--bro-hoa.example");
    /* white space around is not part of the key; inside it is an error */
    test_key_case(" bob@x.org \t", 0, "bob@x.org");
    test_key_case("\r\n\tbob@x.org\r\n", 0, "bob@x.org");
    test_key_case("b ob@x.org", 0, NULL);
    test_key_case("bob@x .org", 0, NULL);
    test_key_case(" \t ", 0, NULL);
    /* the null sender, empty and bare local parts are not recipients */
    test_key_case("<>", 0, NULL);
    test_key_case(" <> ", ADDR_KEY_CATCHALL | ADDR_ALLOW_NULL, NULL);
    test_key_case("", ADDR_ALLOW_NULL, NULL);
    test_key_case("postmaster", ADDR_ALLOW_BARE, NULL);
    test_key_case("nodomain", 0, NULL);
    /* catch-all only where allowed */
    test_key_case("@Example.COM", ADDR_KEY_CATCHALL, "@example.com");
    test_key_case(" @B\xc3\xbc" "cher.example ", ADDR_KEY_CATCHALL, "@xn--bcher-kva.example");
    test_key_case("@Example.COM", 0, NULL);
    test_key_case("@", ADDR_KEY_CATCHALL, NULL);
    test_key_case("@bad..example", ADDR_KEY_CATCHALL, NULL);
    /* bad input; the [address] flags pass through */
    test_key_case("bad@@x.org", 0, NULL);
    test_key_case("a%b@x.org", 0, NULL);
    test_key_case("a%b@x.org", ADDR_ALLOW_PERCENT, "a%b@x.org");
    test_key_case("<a@b", 0, NULL);
    test_key_case("a\x01b@x.org", 0, NULL);
    /* the reason does not repeat the input */
    assert_int_equal(addr_key("<>", 2, 0, out, why, sizeof(why)), -1);
    assert_string_equal(why, "the null sender <> is not a recipient");
    assert_int_equal(addr_key("a@@x.org", 8, 0, out, why, sizeof(why)), -1);
    assert_string_equal(why, "more than one @");
    /* length is given: bytes past it are not read */
    assert_int_equal(addr_key("c@x.orgGARBAGE", 7, 0, out, why, sizeof(why)), 0);
    assert_string_equal(out, "c@x.org");
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_local_limit),
        cmocka_unit_test(test_long_local),
        cmocka_unit_test(test_label_limit),
        cmocka_unit_test(test_domain_limit),
        cmocka_unit_test(test_path_limit),
        cmocka_unit_test(test_path_limit_normal_form),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_equal_forms),
        cmocka_unit_test(test_memo),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_external),
    };
    size_t total = N(parse_cases) + N(domain_cases) + N(strip_cases) + N(fixed), i, t = 0;
    struct CMUnitTest *tests = calloc(total, sizeof(*tests));
    int rc;

    if (tests == NULL)
        return 99;
    for (i = 0; i < N(parse_cases); i++, t++) {
        tests[t].name = case_name("parse", parse_cases[i].in, parse_cases[i].len, parse_cases[i].flags);
        tests[t].test_func = run_parse_case;
        tests[t].initial_state = (void *) &parse_cases[i];
    }
    for (i = 0; i < N(domain_cases); i++, t++) {
        tests[t].name = case_name("domain", domain_cases[i].in, domain_cases[i].len, -1);
        tests[t].test_func = run_domain_case;
        tests[t].initial_state = (void *) &domain_cases[i];
    }
    for (i = 0; i < N(strip_cases); i++, t++) {
        char prefix[64];

        snprintf(prefix, sizeof(prefix), "strip delims=[%s]",
                 strip_cases[i].delims ? strip_cases[i].delims : "(null)");
        tests[t].name = case_name(prefix, strip_cases[i].local, strlen(strip_cases[i].local), -1);
        tests[t].test_func = run_strip_case;
        tests[t].initial_state = (void *) &strip_cases[i];
    }
    for (i = 0; i < N(fixed); i++, t++)
        tests[t] = fixed[i];
    rc = _cmocka_run_group_tests("addr", tests, total, NULL, NULL);
    for (i = 0; i < total - N(fixed); i++)
        free((char *) tests[i].name);
    free(tests);
    return rc;
}
