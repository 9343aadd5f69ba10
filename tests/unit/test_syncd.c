/*
 * test_syncd.c - unit tests of rcptgate-syncd's parts that need no server
 *
 * The AD value rules (proxyAddresses types, objectGUID, member ranges,
 * shared mailbox types), loopback detection, address normalisation and
 * the object builder, the [source NAME] validation through the real
 * configuration loader, and sync_apply.c against a real store with a
 * scripted source: applied, refused by the shrink guard, forced, failed,
 * and the export file; entries with a DN or entryUUID no directory should
 * send (a NUL byte, empty), handed to the flavours' mapping through
 * libldap on a socketpair. The LDAP paths run against slapd in
 * tests/integration/syncd_*.sh.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "addr.h"
#include "shrink.h"
#include "cfg.h"
#include "log.h"
#include "params.h"
#include "store.h"
#include "syncd.h"
#include "xalloc.h"

/* What syncd.c defines for the other parts. */
volatile sig_atomic_t syncd_stopping;
const char *syncd_conf_path = "/test/rcptgate.conf";

static char test_dir[256];

/* test_file - write text to dir/name; the path in a static buffer */
static const char *test_file(const char *name, const char *text, int mode)
{
    static char path[512];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", test_dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    chmod(path, (mode_t) mode);
    return path;
}

/* bv - a berval of a C string */
static struct berval bv(const char *s)
{
    struct berval b;

    b.bv_val = (char *) s;
    b.bv_len = strlen(s);
    return b;
}

/* ------------------------------------------------------------ AD rules */

static void test_proxy(void **state)
{
    const char *a;
    size_t n;
    const char *smtp[] = {"SMTP:Ann@Example.org", "smtp:ann@example.org", "sMtP:x@y.z"};
    const char *other[] = {"X500:/o=Corp/cn=ann", "X400:c=US;a= ;p=Corp;", "SIP:ann@example.org",
                           "EUM:1234;phone-context=x", "smtp", "smtpx:a@b.c", "", "MS:CORP/ANN"};

    for (size_t i = 0; i < sizeof(smtp) / sizeof(smtp[0]); i++) {
        assert_int_equal(source_ldap_ad_proxy(smtp[i], strlen(smtp[i]), &a, &n), 1);
        assert_int_equal(n, strlen(smtp[i]) - 5);
        assert_memory_equal(a, smtp[i] + 5, n);
    }
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        assert_int_equal(source_ldap_ad_proxy(other[i], strlen(other[i]), &a, &n), 0);
}

static void test_guid(void **state)
{
    char raw[16];
    char hex[33];
    struct berval b = {16, raw};

    for (int i = 0; i < 16; i++)
        raw[i] = (char) (i * 17);
    assert_int_equal(source_ldap_ad_guid(&b, hex), 0);
    assert_string_equal(hex, "00112233445566778899aabbccddeeff");
    raw[0] = (char) 0xfe;
    assert_int_equal(source_ldap_ad_guid(&b, hex), 0);
    assert_string_equal(hex, "fe112233445566778899aabbccddeeff");
    b.bv_len = 15;
    assert_int_equal(source_ldap_ad_guid(&b, hex), -1);
}

static void test_range(void **state)
{
    long long lo, hi;
    int last;
    struct berval b;

    b = bv("member;range=0-1499");
    assert_int_equal(source_ldap_ad_range(&b, "member", &lo, &hi, &last), 1);
    assert_true(lo == 0 && hi == 1499 && last == 0);
    b = bv("Member;Range=1500-*");
    assert_int_equal(source_ldap_ad_range(&b, "member", &lo, &hi, &last), 1);
    assert_true(lo == 1500 && last == 1);
    b = bv("member;range=20-29");
    assert_int_equal(source_ldap_ad_range(&b, "member", &lo, &hi, &last), 1);
    assert_true(lo == 20 && hi == 29 && last == 0);

    const char *bad[] = {"member", "member;range=", "member;range=5-3", "member;range=-5",
                         "member;range=0-*x", "member;range=0-", "memberOf;range=0-9",
                         "member;range=a-9", "member;range=0--1", "member;range=0-1-2"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        b = bv(bad[i]);
        assert_int_equal(source_ldap_ad_range(&b, "member", &lo, &hi, &last), 0);
    }
}

static void test_shared_types(void **state)
{
    long long *t = NULL;

    assert_int_equal(source_ldap_ad_shared_types("4 16 32 8589934592 17179869184 34359738368", &t), 6);
    assert_true(t[0] == 4 && t[3] == 8589934592LL && t[5] == 34359738368LL);
    free(t);
    assert_int_equal(source_ldap_ad_shared_types("4 room", &t), -1);
    assert_null(t);
    assert_int_equal(source_ldap_ad_shared_types("-4", &t), -1);
    assert_int_equal(source_ldap_ad_shared_types("", &t), 0);
    free(t);
}

/* The uSNChanged state rules: when an incremental pull may start, and from where. */
static void test_usn_since(void **state)
{
    static const char *x = "5f3a0c1e9b2d4c6f8a7e1d2c3b4a5968";
    static const char *y = "0123456789abcdef0123456789abcdef";
    char why[256];
    long long usn = -1;

    /* Same DC (the id in either case), its USN at or past the stored one. */
    assert_int_equal(source_ldap_ad_since("12026", x, x, 13000, &usn, why, sizeof(why)), 1);
    assert_true(usn == 12026);
    assert_int_equal(source_ldap_ad_since("12026", x, "5F3A0C1E9B2D4C6F8A7E1D2C3B4A5968", 12026, &usn,
                                          why, sizeof(why)), 1);
    assert_int_equal(source_ldap_ad_since("9007199254740993", x, x, -1, &usn, why, sizeof(why)), 1);
    assert_true(usn == 9007199254740993LL);

    /* Neither side knows a DC (a directory that is not AD): the USN alone. */
    assert_int_equal(source_ldap_ad_since("12026", NULL, NULL, -1, &usn, why, sizeof(why)), 1);
    assert_true(usn == 12026);

    /* Another DC, or a restore: a full pull, and the reason names both ids. */
    why[0] = 0;
    assert_int_equal(source_ldap_ad_since("12026", x, y, 13000, &usn, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "another domain controller"));
    assert_non_null(strstr(why, x));
    assert_non_null(strstr(why, y));
    assert_int_equal(source_ldap_ad_since("12026", NULL, y, 13000, &usn, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "names no domain controller"));
    assert_int_equal(source_ldap_ad_since("12026", x, NULL, 13000, &usn, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "could not be read"));
    assert_int_equal(source_ldap_ad_since("12026", x, x, 12025, &usn, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "below the stored"));

    /* No usable cookie. */
    assert_int_equal(source_ldap_ad_since(NULL, NULL, NULL, -1, &usn, why, sizeof(why)), 0);
    assert_int_equal(source_ldap_ad_since("", NULL, NULL, -1, &usn, why, sizeof(why)), 0);
    assert_int_equal(source_ldap_ad_since("-5", NULL, NULL, -1, &usn, why, sizeof(why)), 0);
    assert_int_equal(source_ldap_ad_since("12a", x, x, -1, &usn, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "not a USN"));
    assert_int_equal(source_ldap_ad_since("99999999999999999999999", x, x, -1, &usn, why, sizeof(why)), 0);
}

/* ------------------------------------------------------------ helpers */

static void test_loopback(void **state)
{
    assert_true(source_uri_loopback("ldap://127.0.0.1:389"));
    assert_true(source_uri_loopback("ldap://127.9.9.9/"));
    assert_true(source_uri_loopback("ldap://[::1]:3389"));
    assert_true(source_uri_loopback("ldap://localhost"));
    assert_true(source_uri_loopback("ldapi:///"));
    assert_true(source_uri_loopback("ldapi://%2Frun%2Fslapd%2Fldapi"));
    assert_false(source_uri_loopback("ldap://dc1.example.com"));
    assert_false(source_uri_loopback("ldaps://10.0.0.1"));
    assert_false(source_uri_loopback("ldap://128.0.0.1"));
    assert_false(source_uri_loopback("ldap://[::2]"));
    assert_false(source_uri_loopback("ldap:///"));
    assert_false(source_uri_loopback("not a uri"));
}

/* The sink of the object tests: counts puts, keeps the last object's first address. */
static int obj_puts;
static char obj_first[ADDR_KEY_SIZE];
static char obj_last_guid[512];

static int obj_put(SYNC_SINK *sink, const STORE_OBJECT *o)
{
    obj_puts++;
    snprintf(obj_last_guid, sizeof(obj_last_guid), "%s", o->guid);
    snprintf(obj_first, sizeof(obj_first), "%s", o->n_addresses ? o->addresses[0] : "");
    return 0;
}

static void test_obj(void **state)
{
    SOURCE_OBJ o;
    SYNC_SINK sink;

    memset(&sink, 0, sizeof(sink));
    sink.put = obj_put;
    source_obj_init(&o, "t");
    source_obj_set_dn(&o, "cn=X,dc=y", 9);
    source_obj_set_guid(&o, "ABCdef", 6);
    assert_string_equal(o.guid, "abcdef");
    assert_int_equal(source_obj_address(&o, &sink, "mail", "A@B.C", 5), 1);
    assert_int_equal(source_obj_address(&o, &sink, "mail", "a@b.c", 5), 0);
    assert_int_equal(source_obj_address(&o, &sink, "mail", "not an address", 14), -1);
    assert_int_equal(source_obj_address(&o, &sink, "proxyAddresses", "@b.c", 4), -1);
    assert_int_equal(sink.skipped, 2);
    assert_int_equal(o.addresses.n, 1);
    source_obj_login(&o, "Ann", 3);
    source_obj_login(&o, "ANN", 3);
    source_obj_login(&o, "", 0);
    assert_int_equal(o.logins.n, 1);
    assert_string_equal(o.logins.v[0], "ann");
    source_obj_member(&o, "cn=m,dc=y", 9);
    assert_int_equal(o.members.n, 1);
    assert_int_equal(source_obj_put(&o, &sink), 0);
    assert_int_equal(obj_puts, 1);
    assert_string_equal(obj_first, "a@b.c");
    source_obj_reset(&o);
    assert_int_equal(o.addresses.n + o.logins.n + o.members.n, 0);
    assert_null(o.dn);

    /* Long lists: repeats are found through the index as they were by the scan, after a reset too. */
    for (int round = 0; round < 2; round++) {
        char a[64];

        for (int i = 0; i < 3000; i++) {
            int n = snprintf(a, sizeof(a), "u%d@b.c", i % 2000);

            (void) source_obj_address(&o, &sink, "proxyAddresses", a, (size_t) n);
            n = snprintf(a, sizeof(a), "cn=m%d,dc=y", i % 1500);
            source_obj_member(&o, a, (size_t) n);
            n = snprintf(a, sizeof(a), "L%d", i % 40);
            source_obj_login(&o, a, (size_t) n);
        }
        assert_int_equal(o.addresses.n, 2000);
        assert_int_equal(o.members.n, 1500);
        assert_int_equal(o.logins.n, 40);
        assert_string_equal(o.addresses.v[1999], "u1999@b.c");
        source_obj_members_clear(&o);
        assert_int_equal(o.members.n, 0);
        source_obj_reset(&o);
    }
    source_obj_free(&o);
}

/*
 * test_pages - the progress guard of paged listings (LDAP paged results,
 * Graph nextLink): no mock LDAP server can be made to hand back its
 * cookie, so the rule both backends call is checked here.
 */
static void test_pages(void **state)
{
    char err[256];
    long long pages = 0;

    (void) state;
    /* The first page (no cookie asked), then a page with a new cookie, then the last. */
    assert_int_equal(source_pages_check(&pages, NULL, 0, "c1", 2, 500, "search", err, sizeof(err)), 0);
    assert_int_equal(source_pages_check(&pages, "c1", 2, "c2", 2, 500, "search", err, sizeof(err)), 0);
    assert_int_equal(source_pages_check(&pages, "c2", 2, "", 0, 7, "search", err, sizeof(err)), 0);
    assert_int_equal(pages, 3);
    /* A new cookie on an empty page is progress (a server may skip what the filter drops). */
    assert_int_equal(source_pages_check(&pages, "c2", 2, "c3", 2, 0, "search", err, sizeof(err)), 0);
    /* The same cookie with entries: allowed (cookies may be opaque handles); the cap ends it. */
    assert_int_equal(source_pages_check(&pages, "c3", 2, "c3", 2, 1, "search", err, sizeof(err)), 0);
    /* The same cookie back, and nothing else: a loop. */
    err[0] = 0;
    assert_int_equal(source_pages_check(&pages, "c3", 2, "c3", 2, 0, "search of x", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "search of x: page 6 returned no entries and the same continuation"));
    /* A prefix is not the same cookie. */
    assert_int_equal(source_pages_check(&pages, "c3", 2, "c3x", 3, 0, "search", err, sizeof(err)), 0);
    /* The cap. */
    pages = SOURCE_PAGES_MAX - 2;
    assert_int_equal(source_pages_check(&pages, "a", 1, "b", 1, 1, "search", err, sizeof(err)), 0);
    err[0] = 0;
    assert_int_equal(source_pages_check(&pages, "b", 1, "c", 1, 1, "search", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "still not at the end after 1000000 pages"));
    /* SIGTERM between pages stops the listing; after the last page there is nothing to stop. */
    pages = 0;
    source_stop_flag(&syncd_stopping);
    syncd_stopping = 1;
    err[0] = 0;
    assert_int_equal(source_pages_check(&pages, NULL, 0, "c1", 2, 500, "search", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "search: stopped by a signal between pages"));
    assert_int_equal(source_pages_check(&pages, "c1", 2, "", 0, 500, "search", err, sizeof(err)), 0);
    syncd_stopping = 0;
    source_stop_flag(NULL);
}

static void test_guard(void **state)
{
    STORE_COUNTS c;
    char why[512];

    memset(&c, 0, sizeof(c));
    c.added = 10;
    assert_int_equal(shrink_guard(&c, 10, "the pull", 10, 0, why, sizeof(why)), 0);    /* a new source */
    assert_int_equal(shrink_guard(&c, 0, "the pull", 10, 0, why, sizeof(why)), 0);     /* nothing to lose */
    memset(&c, 0, sizeof(c));
    c.removed = 5;
    assert_int_equal(shrink_guard(&c, 0, "the pull", 100, 0, why, sizeof(why)), 1);    /* emptied */
    assert_non_null(strstr(why, "no objects"));
    c.removed = 2;
    c.kept = 5;
    assert_int_equal(shrink_guard(&c, 5, "the pull", 10, 0, why, sizeof(why)), 1);     /* 2 of 7 */
    assert_non_null(strstr(why, "2 of the source's 7"));
    assert_int_equal(shrink_guard(&c, 5, "the pull", 30, 0, why, sizeof(why)), 0);     /* 28.6% <= 30% */
    c.removed = 1;
    c.kept = 9;
    assert_int_equal(shrink_guard(&c, 9, "the pull", 10, 0, why, sizeof(why)), 0);     /* exactly 10% */
    assert_int_equal(shrink_guard(&c, 9, "the pull", 9, 0, why, sizeof(why)), 1);
    c.removed = 3;
    c.kept = 997;
    assert_int_equal(shrink_guard(&c, 997, "the pull", 10, 2, why, sizeof(why)), 1);   /* count limit */
    assert_non_null(strstr(why, "max_remove_count"));
    assert_int_equal(shrink_guard(&c, 997, "the pull", 10, 3, why, sizeof(why)), 0);
    c.removed = 0;
    c.kept = 0;
    c.changed = 4;
    assert_int_equal(shrink_guard(&c, 0, "the pull", 10, 0, why, sizeof(why)), 1);     /* objects but none seen */
}

/* ------------------------------------------------------------ configuration */

/* load - cfg_load_families on text; the error count, the instances in *confs */
static int load(const char *text, SOURCE_CONF ***confs, int *n)
{
    const char *path = test_file("t.conf", text, 0600);
    int errors = cfg_load_families(path, params_sections_for("syncd"), source_families);

    *confs = source_conf_take(n);
    return errors;
}

/* free_confs - what load() took */
static void free_confs(SOURCE_CONF **confs, int n)
{
    for (int i = 0; i < n; i++)
        source_conf_free(confs[i]);
    free(confs);
}

static void test_conf_good(void **state)
{
    SOURCE_CONF **c;
    int n;
    char text[2048];
    const char *pw = test_file("pw", "s3cret\n", 0600);

    snprintf(text, sizeof(text),
             "[syncd]\nuser =\n"
             "[source corp]\ntype = ldap\nflavour = ad\nuri = ldap://dc1.example.com ldaps://dc2.example.com\n"
             "base = OU=A,DC=x\nbase = OU=B,DC=x\nbind_dn = CN=s,DC=x\nbind_password_file = %s\n"
             "[source people]\ntype = ldap\nuri = ldapi:///\nbase = dc=y\nsasl_mech = external\n"
             "[source legacy]\ntype = file\npath = /etc/postfix/relay_recipients\n", pw);
    assert_int_equal(load(text, &c, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(c[0]->name, "corp");
    assert_string_equal(c[0]->flavour, "ad");
    assert_string_equal(c[0]->base, "OU=A,DC=x\nOU=B,DC=x");
    assert_string_equal(c[0]->bind_password, "s3cret");
    assert_string_equal(c[0]->tls, "auto");
    assert_string_equal(c[0]->mode, "poll");
    assert_int_equal(c[0]->page_size, 500);
    assert_int_equal(c[0]->range_step, 1500);
    assert_int_equal(c[0]->timeout_ms, 30000);
    assert_int_equal(c[0]->connect_timeout_ms, 10000);
    assert_string_equal(c[1]->flavour, "generic");
    assert_null(c[1]->bind_password);
    assert_string_equal(c[2]->type, "file");
    assert_true(source_conf_equal(c[0], c[0]));
    assert_false(source_conf_equal(c[0], c[1]));
    assert_ptr_equal(source_ops_find("ldap"), &source_ldap_ops);
    assert_ptr_equal(source_ops_find("file"), &source_file_ops);
    assert_ptr_equal(source_ops_find("graph"), &source_graph_ops);
    assert_null(source_ops_find("nis"));
    free_confs(c, n);
}

/* conf_errors - the number of errors a [source t] body gives */
static int conf_errors(const char *body)
{
    SOURCE_CONF **c;
    int n;
    char text[2048];
    int errors;

    snprintf(text, sizeof(text), "[syncd]\nuser =\n[source t]\n%s", body);
    errors = load(text, &c, &n);
    assert_null(c);                     /* nothing installed from a bad file */
    free_confs(c, n);
    return errors;
}

static void test_conf_bad(void **state)
{
    char body[512];
    const char *open_pw = test_file("openpw", "x\n", 0644);

    snprintf(body, sizeof(body), "type = ldap\nuri = ldap://dc\nbase = dc=x\nbind_dn = cn=a\n"
             "bind_password_file = %s\n", open_pw);
    assert_int_equal(conf_errors(body), 1);             /* the secret file's mode */
    assert_true(conf_errors("type = graph\n") >= 1);        /* tenant, client id, credential */
    assert_true(conf_errors("type = nis\n") >= 1);
    assert_int_equal(conf_errors("type = ldap\n"), 2);  /* uri and base */
    assert_int_equal(conf_errors("type = ldap\nuri = http://x\nbase = dc=x\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x/dc=y\nbase = dc=x\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldaps://x\ntls = starttls\nbase = dc=x\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\ntls = ldaps\nbase = dc=x\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\nbase = not a dn\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\nbase = dc=x\nfilter = (a=b)(c=d)\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\nbase = dc=x\nfilter = mail=*\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\nbase = dc=x\nbind_dn = cn=a\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\nbase = dc=x\nsasl_mech = NTLM\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\nbase = dc=x\nsasl_mech = EXTERNAL\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\nbase = dc=x\nshared_types = 4\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nflavour = ad\nuri = ldap://x\nbase = dc=x\nshared_types = 4 room\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\nbase = dc=x\npage_size = 5000\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\nbase = dc=x\nca_file = /nonexistent/ca.pem\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\nbase = dc=x\nmode = sometimes\n"), 1);
    assert_int_equal(conf_errors("type = file\n"), 1);
    assert_int_equal(conf_errors("type = file\npath = /x\nuri = ldap://x\n"), 1);
    assert_int_equal(conf_errors("type = ldap\nuri = ldap://x\nbase = dc=x\nbogus = 1\n"), 1);
    {
        SOURCE_CONF **c;
        int n;

        assert_int_equal(load("[syncd]\nuser =\n[source static]\ntype = file\npath = /x\n", &c, &n), 1);
        free_confs(c, n);
    }
}

/* ------------------------------------------------------------ sync_apply */

/* A scripted source: what full() delivers, or that it fails. */
static const char *const *script_addrs;     /* one object per address */
static int script_fail;

static SOURCE *script_open(const SOURCE_CONF *conf, char *err, size_t errlen)
{
    return (SOURCE *) (void *) xstrdup("script");
}

static int script_full(SOURCE *src, SYNC_SINK *sink, char **cookie, char **invocation_id,
                       char *err, size_t errlen)
{
    *cookie = xstrdup("42");
    *invocation_id = NULL;
    for (size_t i = 0; script_addrs && script_addrs[i]; i++) {
        STORE_OBJECT o;
        const char *a[1] = {script_addrs[i]};

        memset(&o, 0, sizeof(o));
        o.guid = script_addrs[i];
        o.dn = "";
        o.kind = STORE_KIND_USER;
        o.addresses = a;
        o.n_addresses = 1;
        if (sink->put(sink, &o) < 0) {
            snprintf(err, errlen, "sink refused");
            return SOURCE_ERR;
        }
        if (script_fail && i == 1) {
            snprintf(err, errlen, "connection lost after two objects");
            return SOURCE_ERR;
        }
    }
    return SOURCE_OK;
}

static void script_close(SOURCE *src)
{
    free(src);
}

static const SOURCE_OPS script_ops = {.type = "ldap", .open = script_open, .full = script_full, .close = script_close};

/* run - one scripted full sync; its status */
static int run(STORE *st, const char *const *addrs, int fail, int force, SYNC_RESULT *res)
{
    SOURCE_CONF conf;
    SOURCE *src;
    char err[256];
    int rc;

    memset(&conf, 0, sizeof(conf));
    conf.name = "script";
    conf.type = "ldap";
    script_addrs = addrs;
    script_fail = fail;
    src = script_ops.open(&conf, err, sizeof(err));
    rc = sync_apply_full(st, &conf, &script_ops, src, force, res);
    script_ops.close(src);
    return rc;
}

/* count_rcpt - recipients of the store */
static int count_cb(const STORE_RCPT *r, void *ctx)
{
    (*(int *) ctx)++;
    return 0;
}

static int count_rcpt(STORE *st)
{
    int n = 0;

    assert_int_equal(store_rcpt_walk(st, "script", count_cb, &n), 0);
    return n;
}

static void test_apply(void **state)
{
    static const char *const ten[] = {"a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org",
                                      "f@x.org", "g@x.org", "h@x.org", "i@x.org", "j@x.org", NULL};
    static const char *const nine[] = {"a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org",
                                       "f@x.org", "g@x.org", "h@x.org", "i@x.org", NULL};
    static const char *const half[] = {"a@x.org", "b@x.org", "c@x.org", "d@x.org", "z@x.org", NULL};
    static const char *const none[] = {NULL};
    char path[512];
    char err[512];
    char buf[4096];
    SYNC_RESULT res;
    STORE *st;
    FILE *fp;
    size_t len;

    /* The file names the one source ("script"): the export waits for every [source] of it. */
    {
        SOURCE_CONF **confs;
        int n;

        assert_int_equal(load("[syncd]\nuser =\n[source script]\ntype = file\npath = /x\n", &confs, &n), 0);
        free_confs(confs, n);
    }
    snprintf(path, sizeof(path), "%s/store.db", test_dir);
    st = store_open(path, STORE_CREATE, 2000, err, sizeof(err));
    assert_non_null(st);

    /* A new source: applied, cookie stored, exported. */
    free(var_syncd_export_file);
    var_syncd_export_file = xasprintf("%s/export.map", test_dir);
    free(var_syncd_export_command);
    var_syncd_export_command = xasprintf("echo done > %s/command.out", test_dir);
    assert_int_equal(run(st, ten, 0, 0, &res), SYNC_APPLIED);
    assert_int_equal(res.objects, 10);
    assert_int_equal(res.counts.added, 10);
    assert_int_equal(count_rcpt(st), 10);
    fp = fopen(var_syncd_export_file, "r");
    assert_non_null(fp);
    len = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[len] = 0;
    fclose(fp);
    assert_non_null(strstr(buf, "a@x.org OK\nb@x.org OK\n"));
    assert_non_null(strstr(buf, "j@x.org OK\n"));
    snprintf(path, sizeof(path), "%s/command.out", test_dir);
    assert_int_equal(access(path, F_OK), 0);
    {
        STORE_SYNC_STATE s;

        assert_int_equal(store_sync_state_get(st, "script", &s), 1);
        assert_string_equal(s.cookie, "42");
        store_sync_state_free(&s);
    }

    /* One of ten removed: exactly max_remove_share, applied. */
    assert_int_equal(run(st, nine, 0, 0, &res), SYNC_APPLIED);
    assert_int_equal(res.counts.removed, 1);
    assert_int_equal(count_rcpt(st), 9);

    /* Half gone: refused, nothing changed; --force applies it. */
    assert_int_equal(run(st, half, 0, 0, &res), SYNC_REFUSED);
    assert_int_equal(res.counts.removed, 5);
    assert_int_equal(count_rcpt(st), 9);
    assert_int_equal(run(st, half, 0, 1, &res), SYNC_APPLIED);
    assert_int_equal(count_rcpt(st), 5);

    /* Empty: refused even with a share limit of 100%. */
    var_syncd_max_remove_pct = 100;
    assert_int_equal(run(st, none, 0, 0, &res), SYNC_REFUSED);
    assert_int_equal(count_rcpt(st), 5);
    var_syncd_max_remove_pct = 10;

    /* A pull that breaks off: nothing applied, the run recorded as failed. */
    assert_int_equal(run(st, ten, 1, 0, &res), SYNC_FAILED);
    assert_non_null(strstr(res.why, "connection lost"));
    assert_int_equal(res.store_failed, 0);
    assert_int_equal(count_rcpt(st), 5);

    /* A signal during the pull: stopped, nothing applied. */
    syncd_stopping = 1;
    assert_int_equal(run(st, ten, 0, 0, &res), SYNC_STOPPED);
    syncd_stopping = 0;
    assert_int_equal(count_rcpt(st), 5);

    /* A failing export command is reported, the sync still applied. */
    free(var_syncd_export_command);
    var_syncd_export_command = xstrdup("exit 3");
    assert_int_equal(run(st, half, 0, 0, &res), SYNC_APPLIED);
    assert_int_equal(res.export_failed, 1);
    store_close(st);
}

/*
 * An incremental pull as a DirSync, syncrepl, uSNChanged or Graph delta
 * hands it over: objects put (guid, one address) and guids deleted. The
 * backends' own feeds are tested against real servers (integration);
 * this is the apply path they all share, with a feed that deletes all.
 */
typedef struct delta_op {
    const char *guid;
    const char *addr;           /* NULL: delete guid */
} DELTA_OP;

static const DELTA_OP *delta_ops;
static const char *delta_cookie;
static char *delta_base;        /* the scripted source's base (settings); NULL none */

static int delta_incremental(SOURCE *src, const char *cookie, const char *invocation_id, SYNC_SINK *sink,
                             char **new_cookie, char **new_invocation_id, char *err, size_t errlen)
{
    *new_cookie = xstrdup(delta_cookie);
    *new_invocation_id = NULL;
    for (size_t i = 0; delta_ops[i].guid; i++) {
        STORE_OBJECT o;
        const char *a[1] = {delta_ops[i].addr};
        int rc;

        memset(&o, 0, sizeof(o));
        o.guid = delta_ops[i].guid;
        o.dn = "";
        o.kind = STORE_KIND_USER;
        o.addresses = a;
        o.n_addresses = 1;
        rc = delta_ops[i].addr ? sink->put(sink, &o) : sink->del(sink, delta_ops[i].guid);
        if (rc < 0) {
            snprintf(err, errlen, "sink refused");
            return SOURCE_ERR;
        }
    }
    return SOURCE_OK;
}

static const SOURCE_OPS delta_src_ops = {.type = "ldap", .open = script_open, .full = script_full,
                                         .incremental = delta_incremental, .close = script_close};

/* run_delta - one scripted incremental pull leading to cookie; its status */
static int run_delta(STORE *st, const DELTA_OP *ops, const char *cookie, int force, SYNC_RESULT *res)
{
    SOURCE_CONF conf;
    SOURCE *src;
    char err[256];
    int rc;

    memset(&conf, 0, sizeof(conf));
    conf.name = "script";
    conf.type = "ldap";
    conf.base = delta_base;
    delta_ops = ops;
    delta_cookie = cookie;
    src = delta_src_ops.open(&conf, err, sizeof(err));
    rc = sync_apply_delta(st, &conf, &delta_src_ops, src, force, res);
    delta_src_ops.close(src);
    return rc;
}

/* cookie_is - the stored cookie of the scripted source */
static void cookie_is(STORE *st, const char *want)
{
    STORE_SYNC_STATE s;

    assert_int_equal(store_sync_state_get(st, "script", &s), 1);
    assert_string_equal(s.cookie, want);
    store_sync_state_free(&s);
}

typedef struct guard_seen {
    int guard_refused;
    char outcome[1024];
} GUARD_SEEN;

static int guard_cb(const STORE_SOURCE_INFO *info, void *ctx)
{
    GUARD_SEEN *g = ctx;

    if (strcmp(info->name, "script") == 0) {
        g->guard_refused = info->guard_refused;
        snprintf(g->outcome, sizeof(g->outcome), "%s", info->last_outcome);
    }
    return 0;
}

/* guard_seen - what rcptgate check and the metrics read of the source */
static GUARD_SEEN guard_seen(STORE *st)
{
    GUARD_SEEN g;

    memset(&g, 0, sizeof(g));
    g.guard_refused = -1;
    assert_int_equal(store_runs_walk(st, guard_cb, &g), 0);
    return g;
}

/*
 * A cookie lists the changes within the scope it was taken in: after the
 * source's settings changed (a base added before a restart), an
 * incremental pull is not resumed from it. The full pull stores the new
 * settings, and incrementals go on from its cookie. A store that does not
 * say which settings its cookie was taken with (written before they were
 * stored) is taken as the settings are now, and then records them.
 */
static void test_apply_delta_settings(void **state)
{
    static const char *const two[] = {"a@x.org", "b@x.org", NULL};
    static const DELTA_OP add_c[] = {{"c", "c@x.org"}, {NULL, NULL}};
    static const DELTA_OP add_d[] = {{"d", "d@x.org"}, {NULL, NULL}};
    char path[512];
    char err[512];
    SYNC_RESULT res;
    STORE *st;
    sqlite3 *raw;

    (void) state;
    snprintf(path, sizeof(path), "%s/settings.db", test_dir);
    st = store_open(path, STORE_CREATE, 2000, err, sizeof(err));
    assert_non_null(st);
    free(var_syncd_export_file);
    var_syncd_export_file = xstrdup("");
    var_syncd_max_remove_pct = 10;
    var_syncd_max_remove_count = 0;
    assert_int_equal(run(st, two, 0, 0, &res), SYNC_APPLIED);
    cookie_is(st, "42");
    assert_int_equal(run_delta(st, add_c, "43", 0, &res), SYNC_APPLIED);
    cookie_is(st, "43");
    assert_int_equal(count_rcpt(st), 3);

    /* Another base: a full pull is needed, nothing applied, the cookie kept. */
    delta_base = "ou=more,dc=x";
    assert_int_equal(run_delta(st, add_d, "44", 0, &res), SYNC_NEED_FULL);
    cookie_is(st, "43");
    assert_int_equal(count_rcpt(st), 3);
    delta_base = NULL;

    /* The settings the cookie was taken with: resumed. */
    assert_int_equal(run_delta(st, add_d, "44", 0, &res), SYNC_APPLIED);
    cookie_is(st, "44");

    /*
     * A store written before the settings were stored beside the cookie:
     * trusted as the settings are now (resumed), and they are stored.
     */
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, "UPDATE source SET settings = NULL WHERE name = 'script'", NULL,
                                  NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    assert_int_equal(run_delta(st, add_d, "45", 0, &res), SYNC_APPLIED);
    cookie_is(st, "45");
    delta_base = "ou=more,dc=x";
    assert_int_equal(run_delta(st, add_d, "46", 0, &res), SYNC_NEED_FULL);
    cookie_is(st, "45");
    delta_base = NULL;
    store_close(st);
}

static void test_apply_delta(void **state)
{
    static const char *const ten[] = {"a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org",
                                      "f@x.org", "g@x.org", "h@x.org", "i@x.org", "j@x.org", NULL};
    /* Every object tombstoned (or out of the filter, or @removed): the sync-wipe. */
    static const DELTA_OP wipe[] = {
        {"a@x.org", NULL}, {"b@x.org", NULL}, {"c@x.org", NULL}, {"d@x.org", NULL}, {"e@x.org", NULL},
        {"f@x.org", NULL}, {"g@x.org", NULL}, {"h@x.org", NULL}, {"i@x.org", NULL}, {"j@x.org", NULL},
        {NULL, NULL}};
    static const DELTA_OP one_gone[] = {{"j@x.org", NULL}, {"k", "k@x.org"}, {NULL, NULL}};
    static const DELTA_OP two_gone[] = {{"a@x.org", NULL}, {"b@x.org", NULL}, {NULL, NULL}};
    /* A newcomer claims c@x.org, which c's object holds: a claim, nothing else. */
    static const DELTA_OP claim[] = {{"claimant", "c@x.org"}, {NULL, NULL}};
    /* c's holder goes (c passes to the claimant: a change) and d's (a removal). */
    static const DELTA_OP pass_on[] = {{"c@x.org", NULL}, {"d@x.org", NULL}, {NULL, NULL}};
    char path[512];
    char err[512];
    SYNC_RESULT res;
    GUARD_SEEN g;
    STORE *st;

    snprintf(path, sizeof(path), "%s/delta.db", test_dir);
    st = store_open(path, STORE_CREATE, 2000, err, sizeof(err));
    assert_non_null(st);
    free(var_syncd_export_file);
    var_syncd_export_file = xstrdup("");
    var_syncd_max_remove_pct = 10;
    var_syncd_max_remove_count = 0;
    assert_int_equal(run(st, ten, 0, 0, &res), SYNC_APPLIED);
    cookie_is(st, "42");

    /* Every object deleted in one poll: refused, data and cookie kept, visible. */
    assert_int_equal(run_delta(st, wipe, "43", 0, &res), SYNC_REFUSED);
    assert_int_equal(res.counts.removed, 10);
    assert_int_equal(res.counts.kept, 0);
    assert_non_null(strstr(res.why, "incremental pull"));
    assert_non_null(strstr(res.why, "would remove all 10"));
    assert_int_equal(count_rcpt(st), 10);
    cookie_is(st, "42");
    g = guard_seen(st);
    assert_int_equal(g.guard_refused, 2);
    assert_non_null(strstr(g.outcome, "refused: incremental pull"));
    /* Retried from the old cookie, the same feed is refused again. */
    assert_int_equal(run_delta(st, wipe, "43", 0, &res), SYNC_REFUSED);
    assert_int_equal(count_rcpt(st), 10);
    cookie_is(st, "42");

    /* Even at 100%, a poll that would leave nothing is refused. */
    var_syncd_max_remove_pct = 100;
    assert_int_equal(run_delta(st, wipe, "43", 0, &res), SYNC_REFUSED);
    assert_int_equal(count_rcpt(st), 10);
    var_syncd_max_remove_pct = 10;

    /* One of ten removed (one added besides): exactly the share, applied; the refusal clears. */
    assert_int_equal(run_delta(st, one_gone, "44", 0, &res), SYNC_APPLIED);
    assert_int_equal(res.counts.removed, 1);
    assert_int_equal(res.counts.added, 1);
    assert_int_equal(count_rcpt(st), 10);
    cookie_is(st, "44");
    g = guard_seen(st);
    assert_int_equal(g.guard_refused, 0);

    /* Two of ten: over the share, refused. */
    assert_int_equal(run_delta(st, two_gone, "45", 0, &res), SYNC_REFUSED);
    assert_int_equal(res.counts.removed, 2);
    assert_int_equal(res.counts.kept, 8);
    assert_non_null(strstr(res.why, "max_remove_share = 10%"));
    cookie_is(st, "44");
    /* A failed poll after the refusal does not clear it. */
    assert_int_equal(store_delta_begin(st, "script", "ldap"), 0);
    assert_int_equal(store_delta_refuse(st, "failed", "connection lost", NULL), 0);
    g = guard_seen(st);
    assert_int_equal(g.guard_refused, 2);

    /* An address whose holder goes to a claimant is a change, not a removal. */
    var_syncd_max_remove_pct = 100;
    var_syncd_max_remove_count = 1;
    assert_int_equal(run_delta(st, claim, "46", 0, &res), SYNC_APPLIED);
    assert_int_equal(res.counts.added + res.counts.changed + res.counts.removed, 0);
    assert_int_equal(run_delta(st, pass_on, "47", 0, &res), SYNC_APPLIED);
    assert_int_equal(res.counts.removed, 1);
    assert_int_equal(res.counts.changed, 1);
    assert_int_equal(count_rcpt(st), 9);
    cookie_is(st, "47");
    /* max_remove_count: two of nine is more than 1. */
    assert_int_equal(run_delta(st, two_gone, "48", 0, &res), SYNC_REFUSED);
    assert_non_null(strstr(res.why, "max_remove_count = 1"));
    assert_int_equal(count_rcpt(st), 9);
    cookie_is(st, "47");
    var_syncd_max_remove_pct = 10;
    var_syncd_max_remove_count = 0;

    /* --force applies a refused incremental, and stores its cookie. */
    assert_int_equal(run_delta(st, wipe, "49", 1, &res), SYNC_APPLIED);
    assert_int_equal(count_rcpt(st), 2);      /* k@x.org, and c@x.org with its claimant */
    cookie_is(st, "49");
    g = guard_seen(st);
    assert_int_equal(g.guard_refused, 0);
    store_close(st);
}

/* ------------------------------------------------------------ main */

static int group_setup(void **state)
{
    snprintf(test_dir, sizeof(test_dir), "%s/test_syncd.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(test_dir) == NULL)
        return -1;
    log_init("test_syncd", 0, 0);           /* the tests provoke errors on purpose */
    cfg_defaults(params_sections_for("syncd"));
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/*
 * ldap_init_fd(3) (see ldap_open(3)) is exported by libldap but declared
 * only in its private header: an LDAP handle on a socket we made.
 */
#ifndef LDAP_PROTO_TCP
#define LDAP_PROTO_TCP 1
int ldap_init_fd(ber_socket_t fd, int proto, const char *url, LDAP **ldp);
#endif

/*
 * entry_map - one search result entry (dn of dnlen bytes, then name/value
 * pairs, NULL-terminated) through libldap on a socketpair to the
 * flavour's mapping, as a directory's answer comes: its return code,
 * err filled.
 */
static int entry_map(const SOURCE_LDAP_FLAVOUR *fl, SYNC_SINK *sink, const char *dn, size_t dnlen,
                     const char *const *pairs, char *err, size_t errlen)
{
    SOURCE_CONF conf;
    SOURCE_LDAP sl;
    LDAP *ld;
    LDAPMessage *res = NULL, *e;
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    struct berval *flat = NULL, bdn = {dnlen, (char *) dn};
    struct timeval tv = {5, 0};
    char junk[4096];
    int sv[2], msgid, v3 = LDAP_VERSION3, n, rc;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(ldap_init_fd(sv[0], LDAP_PROTO_TCP, "ldap://test.invalid", &ld), LDAP_SUCCESS);
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    assert_int_equal(ldap_search_ext(ld, "dc=example,dc=com", LDAP_SCOPE_SUBTREE, "(objectClass=*)", NULL, 0,
                                     NULL, NULL, NULL, 0, &msgid), LDAP_SUCCESS);
    assert_true(read(sv[1], junk, sizeof(junk)) > 0);      /* the request */
    assert_true(ber_printf(ber, "{it{O{", msgid, LDAP_RES_SEARCH_ENTRY, &bdn) >= 0);
    for (const char *const *p = pairs; *p; p += 2)
        assert_true(ber_printf(ber, "{s[s]N}", p[0], p[1]) >= 0);
    assert_true(ber_printf(ber, "}N}N}{it{ess}}", msgid, LDAP_RES_SEARCH_RESULT, LDAP_SUCCESS, "", "") >= 0);
    assert_true(ber_flatten(ber, &flat) == 0);
    assert_int_equal(write(sv[1], flat->bv_val, flat->bv_len), (ssize_t) flat->bv_len);
    assert_int_equal(ldap_result(ld, msgid, LDAP_MSG_ONE, &tv, &res), LDAP_RES_SEARCH_ENTRY);
    assert_non_null(e = ldap_first_entry(ld, res));

    memset(&conf, 0, sizeof(conf));
    conf.name = "t";
    memset(&sl, 0, sizeof(sl));
    sl.conf = &conf;
    sl.flavour = fl;
    sl.ld = ld;
    sl.sink = sink;
    sl.addr_attrs = source_words(fl->addresses, &n);
    sl.login_attrs = source_words(fl->logins, &n);
    source_obj_init(&sl.obj, conf.name);
    err[0] = 0;
    rc = fl->entry(&sl, e, err, errlen);
    source_obj_free(&sl.obj);
    source_words_free(sl.addr_attrs);
    source_words_free(sl.login_attrs);
    ldap_msgfree(res);
    ber_bvfree(flat);
    ber_free(ber, 1);
    ldap_unbind_ext(ld, NULL, NULL);
    close(sv[1]);
    return rc;
}

/*
 * test_entry_nul - a DN or entryUUID holding a NUL byte (found by
 * fuzz_ldap_entry: the DN "\0cn=staff,..." became an object with an
 * empty identity) is never cut short into an identity
 */
static void test_entry_nul(void **state)
{
    static const char *const person[] = {"objectClass", "inetOrgPerson", "mail", "carol@example.com", NULL};
    static const char *const user[] = {"objectClass", "user", "mail", "carol@example.com", NULL};
    static const char nul_dn[] = "\0cn=staff,dc=example,dc=com";
    static const char good_dn[] = "cn=carol,dc=example,dc=com";
    SYNC_SINK sink;
    char err[256];
    int before;

    (void) state;
    memset(&sink, 0, sizeof(sink));
    sink.put = obj_put;
    /* The precondition: the same entry with a clean DN is put, identity its DN. */
    before = obj_puts;
    assert_int_equal(entry_map(&source_ldap_generic, &sink, good_dn, sizeof(good_dn) - 1, person,
                               err, sizeof(err)), 0);
    assert_int_equal(obj_puts, before + 1);
    assert_string_equal(obj_last_guid, "cn=carol,dc=example,dc=com");

    /* Generic and AD flavours: a NUL in the DN, or an empty DN, fails the entry (the pull applies nothing). */
    for (int ad = 0; ad < 2; ad++) {
        const SOURCE_LDAP_FLAVOUR *fl = ad ? &source_ldap_ad : &source_ldap_generic;

        before = obj_puts;
        assert_int_equal(entry_map(fl, &sink, nul_dn, sizeof(nul_dn) - 1, ad ? user : person,
                                   err, sizeof(err)), -1);
        assert_string_equal(err, "an entry without a readable DN");
        assert_int_equal(entry_map(fl, &sink, "", 0, ad ? user : person, err, sizeof(err)), -1);
        assert_int_equal(obj_puts, before);
    }

    /* An empty entryUUID (or one holding a NUL): not an identity; the DN serves, the value is counted skipped. */
    {
        static const char *const uuid_nul[] = {"objectClass", "inetOrgPerson", "mail", "carol@example.com",
                                               "entryUUID", "", NULL};

        before = obj_puts;
        sink.skipped = 0;
        assert_int_equal(entry_map(&source_ldap_generic, &sink, good_dn, sizeof(good_dn) - 1, uuid_nul,
                                   err, sizeof(err)), 0);
        assert_int_equal(obj_puts, before + 1);
        assert_string_equal(obj_last_guid, "cn=carol,dc=example,dc=com");
        assert_int_equal(sink.skipped, 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy),
        cmocka_unit_test(test_guid),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_shared_types),
        cmocka_unit_test(test_usn_since),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_obj),
        cmocka_unit_test(test_guard),
        cmocka_unit_test(test_pages),
        cmocka_unit_test(test_conf_good),
        cmocka_unit_test(test_conf_bad),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_apply_delta),
        cmocka_unit_test(test_apply_delta_settings),
        cmocka_unit_test(test_entry_nul),
    };

    return cmocka_run_group_tests_name("syncd", tests, group_setup, group_teardown);
}
