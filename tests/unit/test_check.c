/*
 * test_check.c - unit tests for the rule engine (lib/check.c)
 *
 * A real store in a temporary file, filled through the store API, and a
 * table of addresses with the verdict and rule each must get. The last
 * cases break the store from a second connection and check that a lookup
 * then fails (-1) instead of answering "not found".
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "check.h"
#include "log.h"
#include "store.h"

static char t_dir[] = "/tmp/rg-test-check-XXXXXX";
static char t_path[128];
static STORE *t_store;

static int setup(void **state)
{
    char err[256];

    (void) state;
    if (mkdtemp(t_dir) == NULL)
        return -1;
    snprintf(t_path, sizeof(t_path), "%s/store.db", t_dir);
    t_store = store_open(t_path, STORE_CREATE, 200, err, sizeof(err));
    if (t_store == NULL) {
        fprintf(stderr, "# store_open: %s\n", err);
        return -1;
    }
    if (store_domain_put(t_store, "example.com", "smtp:[10.1.0.2]:25", 0) < 0
        || store_domain_put(t_store, "example.net", "", 1) < 0
        || store_domain_put(t_store, "xn--bcher-kva.example", "", 0) < 0
        || store_domain_put(t_store, "catchall.example", "", 0) < 0
        || store_domain_put(t_store, "routed.example", "relay:[10.3.0.1]:25", 1) < 0
        || store_domain_put(t_store, "failover.example", "smtp:[10.4.0.1]:25,smtp:[10.4.0.2]:25", 0) < 0)
        return -1;
    if (store_replace_begin(t_store, "test", "import") < 0
        || store_replace_add(t_store, "john@example.com", STORE_KIND_USER) < 0
        || store_replace_add(t_store, "sales@example.net", STORE_KIND_GROUP) < 0
        || store_replace_add(t_store, "x@sub.example.net", STORE_KIND_USER) < 0
        || store_replace_add(t_store, "info@xn--bcher-kva.example", STORE_KIND_USER) < 0
        || store_replace_add(t_store, "@catchall.example", STORE_KIND_USER) < 0
        || store_replace_commit(t_store, NULL) < 0)
        return -1;
    if (store_static_add(t_store, "postmaster@example.com") < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char cmd[256];

    (void) state;
    store_close(t_store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
    return system(cmd) == 0 ? 0 : -1;
}

struct rcpt_case {
    const char *addr;
    const char *delims;
    int want;
    enum check_rule rule;
    const char *key;            /* store key expected to match, or NULL */
};

static const struct rcpt_case rcpt_cases[] = {
    {"john@example.com", "+", 1, CHECK_MATCH_EXACT, "john@example.com"},
    {"John@EXAMPLE.com", "+", 1, CHECK_MATCH_EXACT, "john@example.com"},
    {"<john@example.com>", "+", 1, CHECK_MATCH_EXACT, "john@example.com"},
    {"john+tag@example.com", "+", 1, CHECK_MATCH_EXTENSION, "john@example.com"},
    {"john-tag@example.com", "+", 0, CHECK_MISS_USER, NULL},
    {"john-tag@example.com", "+-", 1, CHECK_MATCH_EXTENSION, "john@example.com"},
    {"john+tag@example.com", "", 0, CHECK_MISS_USER, NULL},
    {"nobody@example.com", "+", 0, CHECK_MISS_USER, NULL},
    {"postmaster@example.com", "+", 1, CHECK_MATCH_EXACT, "postmaster@example.com"},
    {"john@example.org", "+", 0, CHECK_MISS_DOMAIN, NULL},
    {"john@sub.example.com", "+", 0, CHECK_MISS_DOMAIN, NULL},
    {"x@sub.example.net", "+", 1, CHECK_MATCH_EXACT, "x@sub.example.net"},
    {"y@sub.example.net", "+", 0, CHECK_MISS_USER, NULL},
    {"sales@example.net", "+", 1, CHECK_MATCH_EXACT, "sales@example.net"},
    {"anyone@catchall.example", "+", 1, CHECK_MATCH_CATCHALL, "@catchall.example"},
    {"anyone@sub.catchall.example", "+", 0, CHECK_MISS_DOMAIN, NULL},
    {"info@b\xc3\xbc" "cher.example", "+", 1, CHECK_MATCH_EXACT, "info@xn--bcher-kva.example"},
    {"john@@example.com", "+", 0, CHECK_MISS_ADDRESS, NULL},
    {"john%evil@example.com", "+", 0, CHECK_MISS_ADDRESS, NULL},
    {"@a.test:john@example.com", "+", 0, CHECK_MISS_ADDRESS, NULL},
    {"john@[10.1.0.2]", "+", 0, CHECK_MISS_DOMAIN, NULL},
    {"john", "+", 0, CHECK_MISS_ADDRESS, NULL},
    {"", "+", 0, CHECK_MISS_ADDRESS, NULL},
};

static void test_rcpt(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
        const struct rcpt_case *c = &rcpt_cases[i];
        CHECK_OPTS opts = {c->delims, 0};
        CHECK_WHY why;
        int rc = check_rcpt(t_store, &opts, c->addr, strlen(c->addr), &why);

        if (rc != c->want || why.rule != c->rule) {
            fprintf(stderr, "# %s: got %d rule %d (%s), want %d rule %d\n", c->addr, rc, why.rule,
                    check_rule_text(why.rule), c->want, c->rule);
            fail();
        }
        if (c->key)
            assert_string_equal(why.key, c->key);
    }
}

static void test_rcpt_why(void **state)
{
    CHECK_OPTS opts = {"+", 0};
    CHECK_WHY why;

    (void) state;
    assert_int_equal(check_rcpt(t_store, &opts, "John+x@Example.com", 18, &why), 1);
    assert_string_equal(why.address, "john+x@example.com");
    assert_string_equal(why.domain, "example.com");
    assert_string_equal(why.nexthop, "smtp:[10.1.0.2]:25");
    assert_string_equal(why.rcpt.source, "test");
    assert_string_equal(why.rcpt.kind, STORE_KIND_USER);
    assert_int_equal(check_rcpt(t_store, &opts, "postmaster@example.com", 22, &why), 1);
    assert_string_equal(why.rcpt.source, "static");
    assert_string_equal(why.relay_mode, "");
    /* the domain's own relay mode comes with its next hop, for smtpd's session */
    assert_int_equal(store_domain_put_mode(t_store, "example.com", "smtp:[10.1.0.2]:25", 0, "proxy"), 0);
    assert_int_equal(check_rcpt(t_store, &opts, "postmaster@example.com", 22, &why), 1);
    assert_string_equal(why.relay_mode, "proxy");
    assert_int_equal(check_domain(t_store, "example.com", 11, &why), 1);
    assert_string_equal(why.relay_mode, "proxy");
    assert_int_equal(store_domain_put(t_store, "example.com", "smtp:[10.1.0.2]:25", 0), 0);
}

struct domain_case {
    const char *name;
    int want;
    enum check_rule rule;
    const char *domain;
};

static const struct domain_case domain_cases[] = {
    {"example.com", 1, CHECK_MATCH_DOMAIN, "example.com"},
    {"EXAMPLE.COM.", 1, CHECK_MATCH_DOMAIN, "example.com"},
    {"sub.example.com", 0, CHECK_MISS_DOMAIN, NULL},
    {".example.com", 0, CHECK_MISS_DOMAIN, NULL},
    {"example.net", 1, CHECK_MATCH_DOMAIN, "example.net"},
    {"a.b.example.net", 1, CHECK_MATCH_PARENT, "example.net"},
    {".example.net", 1, CHECK_MATCH_PARENT, "example.net"},
    {".sub.example.net", 1, CHECK_MATCH_PARENT, "example.net"},
    {"example.org", 0, CHECK_MISS_DOMAIN, NULL},
    {"b\xc3\xbc" "cher.example", 1, CHECK_MATCH_DOMAIN, "xn--bcher-kva.example"},
    {"exa mple.com", 0, CHECK_MISS_ADDRESS, NULL},
    {"", 0, CHECK_MISS_ADDRESS, NULL},
    {".", 0, CHECK_MISS_ADDRESS, NULL},
};

static void test_domain(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(domain_cases) / sizeof(domain_cases[0]); i++) {
        const struct domain_case *c = &domain_cases[i];
        CHECK_WHY why;
        int rc = check_domain(t_store, c->name, strlen(c->name), &why);

        if (rc != c->want || why.rule != c->rule) {
            fprintf(stderr, "# %s: got %d rule %d (%s), want %d rule %d\n", c->name, rc, why.rule,
                    check_rule_text(why.rule), c->want, c->rule);
            fail();
        }
        if (c->domain)
            assert_string_equal(why.domain, c->domain);
    }
}

struct transport_case {
    const char *key;
    int want;
    enum check_rule rule;
    const char *nexthop;        /* expected with want 1, or NULL */
};

/*
 * transport_maps keys: Postfix's full address in any spelling, and the
 * domain forms other clients use. An unknown recipient of our domain still
 * gets the domain's next hop (validity is the recipients table's job).
 */
static const struct transport_case transport_cases[] = {
    {"john@example.com", 1, CHECK_MATCH_DOMAIN, "smtp:[10.1.0.2]:25"},
    {"John.Smith+news@Example.COM", 1, CHECK_MATCH_DOMAIN, "smtp:[10.1.0.2]:25"},
    {"<john@example.com>", 1, CHECK_MATCH_DOMAIN, "smtp:[10.1.0.2]:25"},
    {"\"john doe\"@example.com", 1, CHECK_MATCH_DOMAIN, "smtp:[10.1.0.2]:25"},
    {"nobody@example.com", 1, CHECK_MATCH_DOMAIN, "smtp:[10.1.0.2]:25"},
    {"john@example.com.", 1, CHECK_MATCH_DOMAIN, "smtp:[10.1.0.2]:25"},
    {"example.com", 1, CHECK_MATCH_DOMAIN, "smtp:[10.1.0.2]:25"},
    {"EXAMPLE.com", 1, CHECK_MATCH_DOMAIN, "smtp:[10.1.0.2]:25"},
    {"x@routed.example", 1, CHECK_MATCH_DOMAIN, "relay:[10.3.0.1]:25"},
    {"x+y@A.B.Routed.Example", 1, CHECK_MATCH_PARENT, "relay:[10.3.0.1]:25"},
    {"a.routed.example", 1, CHECK_MATCH_PARENT, "relay:[10.3.0.1]:25"},
    {".routed.example", 1, CHECK_MATCH_PARENT, "relay:[10.3.0.1]:25"},
    {"x@failover.example", 1, CHECK_MATCH_DOMAIN, "smtp:[10.4.0.1]:25,[10.4.0.2]:25"},
    {"john@sub.example.com", 0, CHECK_MISS_DOMAIN, NULL},
    {".example.com", 0, CHECK_MISS_DOMAIN, NULL},
    {"sales@example.net", 0, CHECK_MISS_NEXTHOP, NULL},
    {"x@sub.example.net", 0, CHECK_MISS_NEXTHOP, NULL},
    {"example.net", 0, CHECK_MISS_NEXTHOP, NULL},
    {"john@example.org", 0, CHECK_MISS_DOMAIN, NULL},
    {"example.org", 0, CHECK_MISS_DOMAIN, NULL},
    {"john@[10.1.0.2]", 0, CHECK_MISS_DOMAIN, NULL},
    {"john@@example.com", 0, CHECK_MISS_ADDRESS, NULL},
    {"john%evil@example.com", 0, CHECK_MISS_ADDRESS, NULL},
    {"@example.com", 0, CHECK_MISS_ADDRESS, NULL},
    {"", 0, CHECK_MISS_ADDRESS, NULL},
};

static void test_transport(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(transport_cases) / sizeof(transport_cases[0]); i++) {
        const struct transport_case *c = &transport_cases[i];
        CHECK_OPTS opts = {"+", 0};
        CHECK_WHY why;
        int rc = check_transport(t_store, &opts, c->key, strlen(c->key), &why);

        if (rc != c->want || why.rule != c->rule) {
            fprintf(stderr, "# %s: got %d rule %d (%s), want %d rule %d\n", c->key, rc, why.rule,
                    check_rule_text(why.rule), c->want, c->rule);
            fail();
        }
        if (c->nexthop)
            assert_string_equal(why.nexthop, c->nexthop);
        assert_int_equal(why.nexthop_mixed, 0);
    }
    {
        /* An entry stored before domain add refused two transports: flagged for lookupd's TEMP. */
        CHECK_OPTS opts = {"+", 0};
        CHECK_WHY why;

        assert_int_equal(store_domain_put(t_store, "mixed.example", "smtp:[10.5.0.1]:25,relay:[10.5.0.2]:25", 0), 0);
        assert_int_equal(check_transport(t_store, &opts, "a@mixed.example", 15, &why), 1);
        assert_int_equal(why.nexthop_mixed, 1);
        assert_int_equal(store_domain_del(t_store, "mixed.example"), 1);
    }
}

/*
 * Next-hop lists as Postfix's transport tables need them: the transport
 * named once. Postfix's smtp client dies on "smtp:[a]:25,smtp:[b]:25".
 */
static void test_nexthop_norm(void **state)
{
    static const struct {
        const char *in, *out;
        int rc;
    } cases[] = {
        {"smtp:[10.1.0.2]:25", "smtp:[10.1.0.2]:25", 0},
        {"smtp:[10.1.0.2]:25,smtp:[10.1.0.3]:25", "smtp:[10.1.0.2]:25,[10.1.0.3]:25", 0},
        {"SMTP:[a]:25,smtp:[b]:25,Smtp:c.example:2525", "SMTP:[a]:25,[b]:25,c.example:2525", 0},
        {"smtp:[10.1.0.2]:25,[10.1.0.3]:25", "smtp:[10.1.0.2]:25,[10.1.0.3]:25", 0},
        {"relay:[a]:25, relay:[b]:25", "relay:[a]:25,[b]:25", 0},
        {"smtp:mx.example:2525,mx2.example:2525", "smtp:mx.example:2525,mx2.example:2525", 0},
        {"smtp:[a]:25,relay:[b]:25", "smtp:[a]:25,relay:[b]:25", -1},
        {"smtp:[a]:25,relay:mx2.example", "smtp:[a]:25,relay:mx2.example", -1},
        {"smtp:[a]:25,relay:mx2.example:25", "smtp:[a]:25,relay:mx2.example:25", -1},
        {"smtp:[a],lmtp:inet:h:24", "smtp:[a],lmtp:inet:h:24", -1},
        {"smtp:[a]:25,mx2.example:smtp", "smtp:[a]:25,mx2.example:smtp", 0},
        {"smtp:[a]:25,smtp:mx2.example", "smtp:[a]:25,mx2.example", 0},
        {":[10.1.0.2]", ":[10.1.0.2]", 0},
        {"", "", 0},
    };
    char out[512];
    char small[12];

    (void) state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = check_nexthop_norm(cases[i].in, out, sizeof(out));

        if (rc != cases[i].rc || strcmp(out, cases[i].out) != 0) {
            fprintf(stderr, "# %s: got %d \"%s\", want %d \"%s\"\n", cases[i].in, rc, out,
                    cases[i].rc, cases[i].out);
            fail();
        }
    }
    /* truncated, never overrun */
    assert_int_equal(check_nexthop_norm("smtp:[10.1.0.2]:25,smtp:[10.1.0.3]:25", small, sizeof(small)), 0);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

/*
 * Readers keep the domain table in memory inside read transactions; a
 * change by another connection must show in the next transaction.
 */
static void test_domain_cache(void **state)
{
    char err[256];
    STORE *r = store_open(t_path, 0, 200, err, sizeof(err));
    CHECK_WHY why;

    (void) state;
    assert_non_null(r);
    assert_int_equal(store_read_begin(r), 0);
    assert_int_equal(check_domain(r, "new.example", 11, &why), 0);
    assert_int_equal(check_domain(r, "example.com", 11, &why), 1);
    store_read_end(r);

    assert_int_equal(store_domain_put(t_store, "new.example", "smtp:[10.9.9.9]", 0), 0);
    assert_int_equal(store_read_begin(r), 0);
    assert_int_equal(check_domain(r, "new.example", 11, &why), 1);
    assert_string_equal(why.nexthop, "smtp:[10.9.9.9]");
    store_read_end(r);

    assert_int_equal(store_domain_put(t_store, "new.example", "smtp:[10.8.8.8]", 1), 0);
    assert_int_equal(store_read_begin(r), 0);
    assert_int_equal(check_domain(r, "a.new.example", 13, &why), 1);
    assert_string_equal(why.nexthop, "smtp:[10.8.8.8]");
    store_read_end(r);

    assert_int_equal(store_domain_del(t_store, "new.example"), 1);
    assert_int_equal(store_read_begin(r), 0);
    assert_int_equal(check_domain(r, "new.example", 11, &why), 0);
    store_read_end(r);
    /* outside a transaction too */
    assert_int_equal(check_domain(r, "new.example", 11, &why), 0);
    assert_int_equal(check_domain(r, "example.com", 11, &why), 1);
    store_close(r);
}

/*
 * A store that cannot answer is a failure to decide (-1), never "not
 * found": here another process takes the tables away under our prepared
 * statements, then puts them back.
 */
static void test_broken(void **state)
{
    sqlite3 *db;
    CHECK_OPTS opts = {"+", 0};
    CHECK_WHY why;

    (void) state;
    assert_int_equal(sqlite3_open(t_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "ALTER TABLE recipient RENAME TO r2;"
                                  "ALTER TABLE domain RENAME TO d2;", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(check_rcpt(t_store, &opts, "nobody@example.com", 18, &why), -1);
    assert_int_equal(why.rule, CHECK_FAIL_STORE);
    assert_int_equal(check_domain(t_store, "example.org", 11, &why), -1);
    assert_int_equal(why.rule, CHECK_FAIL_STORE);
    assert_int_equal(check_transport(t_store, &opts, "john@example.com", 16, &why), -1);
    assert_int_equal(why.rule, CHECK_FAIL_STORE);
    assert_int_equal(check_transport(t_store, &opts, "example.com", 11, &why), -1);
    assert_int_equal(why.rule, CHECK_FAIL_STORE);
    assert_int_equal(sqlite3_exec(db, "ALTER TABLE r2 RENAME TO recipient;"
                                  "ALTER TABLE d2 RENAME TO domain;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    /* and it answers again once the store is whole */
    assert_int_equal(check_rcpt(t_store, &opts, "john@example.com", 16, &why), 1);
}

/* A store locked by another process when we open it: the open fails. */
static void test_locked(void **state)
{
    sqlite3 *db;
    STORE *st;
    char err[256];

    (void) state;
    store_close(t_store);
    assert_int_equal(sqlite3_open(t_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;"
                                  " UPDATE source SET last_run = 1;", NULL, NULL, NULL), SQLITE_OK);
    st = store_open(t_path, 0, 100, err, sizeof(err));
    assert_null(st);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    t_store = store_open(t_path, 0, 100, err, sizeof(err));
    assert_non_null(t_store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rcpt),
        cmocka_unit_test(test_rcpt_why),
        cmocka_unit_test(test_domain),
        cmocka_unit_test(test_transport),
        cmocka_unit_test(test_nexthop_norm),
        cmocka_unit_test(test_domain_cache),
        cmocka_unit_test(test_broken),
        cmocka_unit_test(test_locked),
    };

    log_init("test_check", 1, 0);
    return cmocka_run_group_tests(tests, setup, teardown);
}
