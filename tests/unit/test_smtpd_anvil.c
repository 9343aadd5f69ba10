/*
 * test_smtpd_anvil.c - unit tests for smtpd/smtpd_anvil.c
 *
 * The clock is injected (smtpd_anvil_set_clock), so windows and blocks
 * are tested to the millisecond without sleeping. Each case starts from
 * an empty table and its own parameters. The bound is tested with a
 * million distinct addresses through a table of a thousand entries.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "smtpd_anvil.h"
#include "params_smtpd.h"

#define T0 1000000000LL         /* an arbitrary start time, ms */

/* setup - empty table, known parameters, a fixed clock */
static int setup(void **state)
{
    (void) state;
    smtpd_anvil_free();
    var_smtpd_harvest_free = 3;
    var_smtpd_harvest_step_ms = 100;
    var_smtpd_harvest_limit = 6;
    var_smtpd_harvest_block_ms = 60000;
    var_smtpd_harvest_window_ms = 600000;
    var_smtpd_auth_fail_limit = 4;
    var_smtpd_auth_fail_window_ms = 600000;
    var_smtpd_auth_fail_delay_ms = 1000;
    var_smtpd_maxconn_client = 2;
    smtpd_anvil_init(1000);
    smtpd_anvil_set_clock(T0);
    return 0;
}

static int teardown(void **state)
{
    (void) state;
    smtpd_anvil_free();
    smtpd_anvil_set_clock(-1);
    return 0;
}

/* harvest_counting - free answers, growing delays, then -1 and a block */
static void harvest_counting(void **state)
{
    (void) state;
    assert_null(smtpd_anvil_connect("192.0.2.1"));
    assert_int_equal(smtpd_anvil_unknown("192.0.2.1"), 0);
    assert_int_equal(smtpd_anvil_unknown("192.0.2.1"), 0);
    assert_int_equal(smtpd_anvil_unknown("192.0.2.1"), 0);
    assert_int_equal(smtpd_anvil_unknown("192.0.2.1"), 100);
    assert_int_equal(smtpd_anvil_unknown("192.0.2.1"), 200);
    assert_int_equal(smtpd_anvil_unknown("192.0.2.1"), -1);
    /* blocked: more unknowns and new connections are refused */
    assert_int_equal(smtpd_anvil_unknown("192.0.2.1"), -1);
    const char *why = smtpd_anvil_connect("192.0.2.1");
    assert_non_null(why);
    assert_non_null(strstr(why, "too many unknown recipients from 192.0.2.1"));
    assert_int_equal(smtpd_anvil_connections("192.0.2.1"), 1);  /* the refusal counted nothing */
    /* another client is untouched */
    assert_null(smtpd_anvil_connect("192.0.2.2"));
    assert_int_equal(smtpd_anvil_unknown("192.0.2.2"), 0);
    /* the block ends, and counting starts again */
    smtpd_anvil_set_clock(T0 + 60000 - 1);
    assert_non_null(smtpd_anvil_connect("192.0.2.1"));
    smtpd_anvil_set_clock(T0 + 60000);
    assert_null(smtpd_anvil_connect("192.0.2.1"));
    assert_int_equal(smtpd_anvil_unknown("192.0.2.1"), 0);
    assert_int_equal(smtpd_anvil_connections("192.0.2.1"), 2);
}

/* harvest_window - counts fade when the window has passed */
static void harvest_window(void **state)
{
    (void) state;
    var_smtpd_harvest_free = 1;
    var_smtpd_harvest_window_ms = 10000;
    assert_int_equal(smtpd_anvil_unknown("2001:db8::1"), 0);
    smtpd_anvil_set_clock(T0 + 5000);
    assert_int_equal(smtpd_anvil_unknown("2001:db8::1"), 100);
    smtpd_anvil_set_clock(T0 + 9999);
    assert_int_equal(smtpd_anvil_unknown("2001:db8::1"), 200);
    smtpd_anvil_set_clock(T0 + 10000);
    assert_int_equal(smtpd_anvil_unknown("2001:db8::1"), 0);
    assert_int_equal(smtpd_anvil_unknown("2001:db8::1"), 100);
}

/* harvest_cap - a delay never exceeds SMTPD_ANVIL_DELAY_MAX_MS */
static void harvest_cap(void **state)
{
    (void) state;
    var_smtpd_harvest_free = 0;
    var_smtpd_harvest_step_ms = 4000;
    var_smtpd_harvest_limit = 1000;
    assert_int_equal(smtpd_anvil_unknown("192.0.2.9"), 4000);
    assert_int_equal(smtpd_anvil_unknown("192.0.2.9"), 8000);
    for (int i = 0; i < 900; i++)
        assert_int_equal(smtpd_anvil_unknown("192.0.2.9"), SMTPD_ANVIL_DELAY_MAX_MS);
}

/* harvest_no_block_time - harvest_block_time 0: -1 for that one, no block after */
static void harvest_no_block_time(void **state)
{
    (void) state;
    var_smtpd_harvest_block_ms = 0;
    var_smtpd_harvest_limit = 2;
    var_smtpd_harvest_free = 5;
    assert_int_equal(smtpd_anvil_unknown("192.0.2.7"), 0);
    assert_int_equal(smtpd_anvil_unknown("192.0.2.7"), -1);
    assert_null(smtpd_anvil_connect("192.0.2.7"));
    assert_int_equal(smtpd_anvil_unknown("192.0.2.7"), 0);
}

/* auth_failures - doubling delays, -1 at the limit, blocked for the window */
static void auth_failures(void **state)
{
    (void) state;
    assert_null(smtpd_anvil_connect("198.51.100.1"));
    assert_int_equal(smtpd_anvil_auth_fail("198.51.100.1"), 1000);
    assert_int_equal(smtpd_anvil_auth_fail("198.51.100.1"), 2000);
    assert_int_equal(smtpd_anvil_auth_fail("198.51.100.1"), 4000);
    assert_int_equal(smtpd_anvil_auth_fail("198.51.100.1"), -1);
    assert_int_equal(smtpd_anvil_auth_fail("198.51.100.1"), -1);
    const char *why = smtpd_anvil_connect("198.51.100.1");
    assert_non_null(why);
    assert_non_null(strstr(why, "failed AUTH attempts from 198.51.100.1"));
    /* unknown recipients are counted apart */
    assert_int_equal(smtpd_anvil_unknown("198.51.100.1"), 0);
    smtpd_anvil_set_clock(T0 + 600000);
    assert_null(smtpd_anvil_connect("198.51.100.1"));
    assert_int_equal(smtpd_anvil_auth_fail("198.51.100.1"), 1000);
}

/* auth_window_and_cap - failures fade with the window; doubling stops at the cap */
static void auth_window_and_cap(void **state)
{
    (void) state;
    var_smtpd_auth_fail_limit = 100;
    var_smtpd_auth_fail_window_ms = 1000;
    assert_int_equal(smtpd_anvil_auth_fail("198.51.100.2"), 1000);
    assert_int_equal(smtpd_anvil_auth_fail("198.51.100.2"), 2000);
    smtpd_anvil_set_clock(T0 + 1000);
    assert_int_equal(smtpd_anvil_auth_fail("198.51.100.2"), 1000);
    for (int i = 2; i <= 80; i++) {
        int d = smtpd_anvil_auth_fail("198.51.100.2");

        assert_true(d > 0 && d <= SMTPD_ANVIL_DELAY_MAX_MS);
        if (i >= 5)
            assert_int_equal(d, SMTPD_ANVIL_DELAY_MAX_MS);
    }
}

/* connections_per_client - the limit, per address; a refusal counts nothing */
static void connections_per_client(void **state)
{
    (void) state;
    assert_null(smtpd_anvil_connect("192.0.2.3"));
    assert_null(smtpd_anvil_connect("192.0.2.3"));
    const char *why = smtpd_anvil_connect("192.0.2.3");
    assert_non_null(why);
    assert_string_equal(why, "Too many connections from 192.0.2.3");
    assert_int_equal(smtpd_anvil_connections("192.0.2.3"), 2);
    assert_null(smtpd_anvil_connect("192.0.2.4"));
    smtpd_anvil_disconnect("192.0.2.3");
    assert_null(smtpd_anvil_connect("192.0.2.3"));
    /* 0: no limit */
    var_smtpd_maxconn_client = 0;
    for (int i = 0; i < 100; i++)
        assert_null(smtpd_anvil_connect("192.0.2.5"));
    assert_int_equal(smtpd_anvil_connections("192.0.2.5"), 100);
}

/* never_negative - more disconnects than connects, and of strangers */
static void never_negative(void **state)
{
    (void) state;
    smtpd_anvil_disconnect("192.0.2.6");
    assert_int_equal(smtpd_anvil_connections("192.0.2.6"), 0);
    assert_int_equal(smtpd_anvil_count(), 0);
    assert_null(smtpd_anvil_connect("192.0.2.6"));
    smtpd_anvil_disconnect("192.0.2.6");
    smtpd_anvil_disconnect("192.0.2.6");
    smtpd_anvil_disconnect("192.0.2.6");
    assert_int_equal(smtpd_anvil_connections("192.0.2.6"), 0);
    /* nothing left to remember: the entry is gone */
    assert_int_equal(smtpd_anvil_count(), 0);
    assert_null(smtpd_anvil_connect("192.0.2.6"));
    assert_null(smtpd_anvil_connect("192.0.2.6"));
    assert_int_equal(smtpd_anvil_connections("192.0.2.6"), 2);
    smtpd_anvil_disconnect("192.0.2.6");
    assert_int_equal(smtpd_anvil_connections("192.0.2.6"), 1);
}

/* bounded - a million addresses through a table of a thousand */
static void bounded(void **state)
{
    char addr[64];

    (void) state;
    var_smtpd_maxconn_client = 0;
    var_smtpd_harvest_free = 1;
    assert_null(smtpd_anvil_connect("10.255.255.1"));
    for (int i = 0; i < 1000000; i++) {
        snprintf(addr, sizeof(addr), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        if (i % 7 == 0)
            smtpd_anvil_set_clock(T0 + i);
        assert_int_equal(smtpd_anvil_unknown(addr), 0);
        if (i % 1000 == 0)
            assert_true(smtpd_anvil_count() <= 1000);
    }
    assert_int_equal(smtpd_anvil_count(), 1000);
    /* the client holding a connection was never dropped */
    assert_int_equal(smtpd_anvil_connections("10.255.255.1"), 1);
    /* the last ones are remembered: their second unknown is delayed */
    assert_int_equal(smtpd_anvil_unknown(addr), 100);
}

/* evicts_idle_longest - the entry used least recently goes first */
static void evicts_idle_longest(void **state)
{
    char addr[64];

    (void) state;
    var_smtpd_harvest_free = 0;
    var_smtpd_harvest_limit = 1000;
    smtpd_anvil_init(3);
    assert_int_equal(smtpd_anvil_unknown("a"), 100);
    smtpd_anvil_set_clock(T0 + 1);
    assert_int_equal(smtpd_anvil_unknown("b"), 100);
    smtpd_anvil_set_clock(T0 + 2);
    assert_int_equal(smtpd_anvil_unknown("c"), 100);
    smtpd_anvil_set_clock(T0 + 3);
    assert_int_equal(smtpd_anvil_unknown("a"), 200);  /* a is fresh again; b is idle longest */
    assert_int_equal(smtpd_anvil_unknown("d"), 100);  /* evicts b */
    assert_int_equal(smtpd_anvil_count(), 3);
    assert_int_equal(smtpd_anvil_unknown("a"), 300);
    assert_int_equal(smtpd_anvil_unknown("c"), 200);
    assert_int_equal(smtpd_anvil_unknown("b"), 100);  /* b started over (evicts d) */
    assert_int_equal(smtpd_anvil_count(), 3);

    /* entries holding connections are never evicted: the table grows instead */
    var_smtpd_maxconn_client = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(addr, sizeof(addr), "conn%d", i);
        assert_null(smtpd_anvil_connect(addr));
    }
    assert_int_equal(smtpd_anvil_count(), 10);
    for (int i = 0; i < 10; i++) {
        snprintf(addr, sizeof(addr), "conn%d", i);
        assert_int_equal(smtpd_anvil_connections(addr), 1);
    }
    /* a smaller bound on reload evicts only what holds no connection */
    for (int i = 0; i < 10; i += 2) {
        snprintf(addr, sizeof(addr), "conn%d", i);
        assert_int_equal(smtpd_anvil_unknown(addr), 100);
        smtpd_anvil_disconnect(addr);
    }
    smtpd_anvil_init(5);
    assert_int_equal(smtpd_anvil_count(), 5);
    for (int i = 1; i < 10; i += 2) {
        snprintf(addr, sizeof(addr), "conn%d", i);
        assert_int_equal(smtpd_anvil_connections(addr), 1);
    }
}

/* evicts_unblocked_first - a full table keeps an active block while others can go */
static void evicts_unblocked_first(void **state)
{
    char addr[64];

    (void) state;
    var_smtpd_harvest_limit = 1;
    smtpd_anvil_init(3);
    assert_int_equal(smtpd_anvil_unknown("harvester"), -1);        /* blocked, idle longest */
    var_smtpd_harvest_limit = 1000;
    var_smtpd_harvest_free = 1000;
    for (int i = 0; i < 10; i++) {
        snprintf(addr, sizeof(addr), "other%d", i);
        smtpd_anvil_set_clock(T0 + 1 + i);
        assert_int_equal(smtpd_anvil_unknown(addr), 0);
        assert_int_equal(smtpd_anvil_count(), i < 2 ? i + 2 : 3);
    }
    assert_non_null(smtpd_anvil_connect("harvester"));             /* still blocked */
    smtpd_anvil_disconnect("harvester");

    /* a table of nothing but blocks: the one idle longest goes (bounded memory) */
    var_smtpd_harvest_limit = 1;
    var_smtpd_harvest_free = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(addr, sizeof(addr), "blocked%d", i);
        smtpd_anvil_set_clock(T0 + 100 + i);
        assert_int_equal(smtpd_anvil_unknown(addr), -1);
    }
    assert_int_equal(smtpd_anvil_count(), 3);
}

/* clock_back - a clock stepped back does not stretch a block or a window */
static void clock_back(void **state)
{
    (void) state;
    var_smtpd_harvest_limit = 1;
    assert_int_equal(smtpd_anvil_unknown("192.0.2.8"), -1);
    smtpd_anvil_set_clock(T0 - 3600000);
    assert_non_null(smtpd_anvil_connect("192.0.2.8"));
    smtpd_anvil_set_clock(T0 - 3600000 + 60000);
    assert_null(smtpd_anvil_connect("192.0.2.8"));

    /* nor a window */
    var_smtpd_harvest_limit = 100;
    var_smtpd_harvest_free = 1;
    var_smtpd_harvest_window_ms = 10000;
    smtpd_anvil_set_clock(T0);
    assert_int_equal(smtpd_anvil_unknown("192.0.2.10"), 0);
    smtpd_anvil_set_clock(T0 - 3600000);
    assert_int_equal(smtpd_anvil_unknown("192.0.2.10"), 100);
    smtpd_anvil_set_clock(T0 - 3600000 + 10000);
    assert_int_equal(smtpd_anvil_unknown("192.0.2.10"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(harvest_counting, setup, teardown),
        cmocka_unit_test_setup_teardown(harvest_window, setup, teardown),
        cmocka_unit_test_setup_teardown(harvest_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(harvest_no_block_time, setup, teardown),
        cmocka_unit_test_setup_teardown(auth_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(auth_window_and_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(connections_per_client, setup, teardown),
        cmocka_unit_test_setup_teardown(never_negative, setup, teardown),
        cmocka_unit_test_setup_teardown(bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(evicts_idle_longest, setup, teardown),
        cmocka_unit_test_setup_teardown(evicts_unblocked_first, setup, teardown),
        cmocka_unit_test_setup_teardown(clock_back, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
