/*
 * test_netstring.c - unit tests for lib/netstring.c
 *
 * A table of inputs and the verdict each must get, plus the property the
 * server relies on when bytes arrive in pieces: every prefix of a good
 * netstring is "more", and a bad one is refused as soon as the offending
 * byte is there.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "netstring.h"

#define MAXP 10000

typedef struct ns_case {
    const char *in;             /* NUL-free inputs; len from strlen */
    int status;
    const char *payload;        /* NETSTRING_OK: the payload */
    size_t used;                /* NETSTRING_OK: bytes consumed */
    const char *why;            /* NETSTRING_BAD: a word of the reason */
} NS_CASE;

static const NS_CASE ns_cases[] = {
    {"0:,", NETSTRING_OK, "", 3, NULL},
    {"5:hello,", NETSTRING_OK, "hello", 8, NULL},
    {"5:hello,5:world,", NETSTRING_OK, "hello", 8, NULL},
    {"1::,", NETSTRING_OK, ":", 4, NULL},
    {"3:,,,,", NETSTRING_OK, ",,,", 6, NULL},
    {"10:recipient,", NETSTRING_MORE, NULL, 0, NULL},
    {"24:recipients a@example.com,", NETSTRING_OK, "recipients a@example.com", 0, NULL},
    {"", NETSTRING_MORE, NULL, 0, NULL},
    {"1", NETSTRING_MORE, NULL, 0, NULL},
    {"12345", NETSTRING_BAD, NULL, 0, "too long"},
    {"5:hel", NETSTRING_MORE, NULL, 0, NULL},
    {"5:hello", NETSTRING_MORE, NULL, 0, NULL},
    {"5:hello;", NETSTRING_BAD, NULL, 0, "comma"},
    {"5:helloo,", NETSTRING_BAD, NULL, 0, "comma"},
    {"4:hello,", NETSTRING_BAD, NULL, 0, "comma"},
    {"05:hello,", NETSTRING_BAD, NULL, 0, "leading zero"},
    {"00:,", NETSTRING_BAD, NULL, 0, "leading zero"},
    {"+5:hello,", NETSTRING_BAD, NULL, 0, "sign"},
    {"-5:hello,", NETSTRING_BAD, NULL, 0, "sign"},
    {" 5:hello,", NETSTRING_BAD, NULL, 0, "blank"},
    {"5 :hello,", NETSTRING_BAD, NULL, 0, "blank"},
    {"\t5:hello,", NETSTRING_BAD, NULL, 0, "blank"},
    {"5\r\n:hello,", NETSTRING_BAD, NULL, 0, "blank"},
    {"5x:hello,", NETSTRING_BAD, NULL, 0, "non-digit"},
    {"x", NETSTRING_BAD, NULL, 0, "digit"},
    {":hello,", NETSTRING_BAD, NULL, 0, "no length"},
    {"5hello,", NETSTRING_BAD, NULL, 0, "non-digit"},
    {"100000:", NETSTRING_BAD, NULL, 0, "5 digits"},
    {"000001:x,", NETSTRING_BAD, NULL, 0, "leading zero"},
    {"10001:", NETSTRING_BAD, NULL, 0, "too long"},
    {"10000:", NETSTRING_MORE, NULL, 0, NULL},
    {"99999", NETSTRING_BAD, NULL, 0, "too long"},
    {"0x10:", NETSTRING_BAD, NULL, 0, "non-digit"},
};

/* ns_case_ok - does one case get its verdict? */
static int ns_case_ok(const NS_CASE *c)
{
    const char *data = NULL;
    const char *why = NULL;
    size_t len = 0;
    size_t used = 0;
    size_t n = strlen(c->in);
    int rc = netstring_decode(c->in, n, MAXP, &data, &len, &used, &why);

    if (rc != c->status)
        return 0;
    if (rc == NETSTRING_OK)
        return len == strlen(c->payload) && memcmp(data, c->payload, len) == 0
            && data >= c->in && data + len <= c->in + n
            && used == (c->used ? c->used : n);
    if (rc == NETSTRING_BAD)
        return why != NULL && strstr(why, c->why) != NULL;
    return 1;
}

/* ns_table - every case in the table */
static void ns_table(void **state)
{
    for (size_t i = 0; i < sizeof(ns_cases) / sizeof(ns_cases[0]); i++) {
        if (!ns_case_ok(&ns_cases[i]))
            fail_msg("case %zu (\"%s\") got the wrong verdict", i, ns_cases[i].in);
    }
}

/* ns_nul_payload - payload bytes are opaque, NUL included */
static void ns_nul_payload(void **state)
{
    static const char in[] = "3:a\0b,";
    const char *data;
    const char *why;
    size_t len;
    size_t used;

    assert_int_equal(netstring_decode(in, sizeof(in) - 1, MAXP, &data, &len, &used, &why), NETSTRING_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(data, "a\0b", 3);
    assert_int_equal(used, 6);
}

/* ns_prefixes - every prefix of a good netstring asks for more */
static void ns_prefixes(void **state)
{
    static const char in[] = "24:recipients a@example.com,";
    const char *data;
    const char *why;
    size_t len;
    size_t used;

    for (size_t n = 0; n < sizeof(in) - 1; n++)
        assert_int_equal(netstring_decode(in, n, MAXP, &data, &len, &used, &why), NETSTRING_MORE);
    assert_int_equal(netstring_decode(in, sizeof(in) - 1, MAXP, &data, &len, &used, &why), NETSTRING_OK);
}

/* ns_bad_early - a bad byte is refused at once, whatever follows */
static void ns_bad_early(void **state)
{
    const char *data;
    const char *why;
    size_t len;
    size_t used;

    /* The second byte is already wrong: no need to wait for the rest. */
    assert_int_equal(netstring_decode("05", 2, MAXP, &data, &len, &used, &why), NETSTRING_BAD);
    assert_int_equal(netstring_decode("+", 1, MAXP, &data, &len, &used, &why), NETSTRING_BAD);
    assert_int_equal(netstring_decode("123456", 6, MAXP, &data, &len, &used, &why), NETSTRING_BAD);
}

/* ns_limit - the caller's payload limit, exactly */
static void ns_limit(void **state)
{
    static char buf[MAXP + 16];
    const char *data;
    const char *why;
    size_t len;
    size_t used;
    size_t n;

    memcpy(buf, "10000:", 6);
    memset(buf + 6, 'a', MAXP);
    buf[6 + MAXP] = ',';
    n = 6 + MAXP + 1;
    assert_int_equal(netstring_decode(buf, n, MAXP, &data, &len, &used, &why), NETSTRING_OK);
    assert_int_equal(len, MAXP);
    assert_int_equal(used, n);
    assert_int_equal(netstring_decode(buf, n, MAXP - 1, &data, &len, &used, &why), NETSTRING_BAD);
    assert_int_equal(netstring_decode("6:abcdef,", 9, 5, &data, &len, &used, &why), NETSTRING_BAD);
    assert_int_equal(netstring_decode("5:abcde,", 8, 5, &data, &len, &used, &why), NETSTRING_OK);
}

/* ns_encode - encoding, and the size needed when the buffer is short */
static void ns_encode(void **state)
{
    char out[64];
    char big[20000];
    static char payload[12345];

    assert_int_equal(netstring_encode(out, sizeof(out), "OK user", 7), 10);
    assert_memory_equal(out, "7:OK user,", 10);
    assert_int_equal(netstring_encode(out, sizeof(out), "NOTFOUND ", 9), 12);
    assert_memory_equal(out, "9:NOTFOUND ,", 12);
    assert_int_equal(netstring_encode(out, sizeof(out), "", 0), 3);
    assert_memory_equal(out, "0:,", 3);

    /* Too small: the size needed, nothing written. */
    memset(out, 'z', sizeof(out));
    assert_int_equal(netstring_encode(out, 9, "OK user", 7), 10);
    assert_int_equal(out[0], 'z');
    assert_int_equal(netstring_encode(out, 10, "OK user", 7), 10);

    /* Round trip through the decoder. */
    memset(payload, 'p', sizeof(payload));
    {
        size_t n = netstring_encode(big, sizeof(big), payload, sizeof(payload));
        const char *data;
        const char *why;
        size_t len;
        size_t used;

        assert_int_equal(n, 5 + 1 + sizeof(payload) + 1);
        assert_memory_equal(big, "12345:", 6);
        assert_int_equal(netstring_decode(big, n, 99999, &data, &len, &used, &why), NETSTRING_OK);
        assert_int_equal(len, sizeof(payload));
        assert_int_equal(used, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ns_table),
        cmocka_unit_test(ns_nul_payload),
        cmocka_unit_test(ns_prefixes),
        cmocka_unit_test(ns_bad_early),
        cmocka_unit_test(ns_limit),
        cmocka_unit_test(ns_encode),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
