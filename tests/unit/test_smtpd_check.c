/*
 * test_smtpd_check.c - rcptgate-smtpd's restrictions (smtpd/smtpd_check.c)
 *
 * Drives the checks directly, without sockets, as Postfix's smtpd_check
 * test does: a real store in tests/tmp with domains, directory objects
 * (a user with a login, an internal-only group), static entries and
 * access entries; then every line of tests/golden/smtpd_check.in sets
 * the client or asks a command, and its result (the reply text, or OK
 * with the recipient's normal form and next hop, plus the log lines the
 * command wrote) is compared with the same line of smtpd_check.ref: one
 * TAP result per line. RG_GOLDEN_WRITE=1 rewrites the .ref (review it!).
 *
 * Lines of smtpd_check.in (words separated by blanks):
 *   client ADDR [NAME]        a new session from ADDR (trusted as mynetworks says)
 *   trusted 0|1 / sasl LOGIN|- / hostname NAME
 *   helo NAME|-               HELO (smtpd_check_helo, then c->helo)
 *   mail ADDR|<>              MAIL (smtpd_check_mail, then c->sender)
 *   rcpt ADDR / connect / data
 *   dns dnsbl|rhsbl|sender yes|no|temp|unasked [ZONE [TEXT]]
 *   set PARAM [VALUE]         an [rules] or [smtpd] variable; "\n" in VALUE is a new line
 *   init                      smtpd_check_init()
 *   accessdb TYPE KEY ACTION [TEXT]   an entry in the store's access table
 *   store break|mend TABLE    rename a table away (reads fail) and back
 *   store none | store open   smtpd_store NULL, and opened again
 *   ?login ...                a line that needs store_login_owns(): a marker
 *                             only, compared like every other line (a
 *                             login lookup that stops answering fails it)
 *
 * Before the golden lines, a few plain tests: init errors keep the old
 * state, mynetworks matching, access key normal forms, the access table.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "cfg.h"
#include "log.h"
#include "params.h"
#include "params_rules.h"
#include "smtpd.h"
#include "smtpd_check.h"
#include "smtpd_log.h"
#include "params_smtpd.h"
#include "store.h"
#include "store_access.h"
#include "store_sync.h"
#include "xalloc.h"

static char t_dir[512];
static char t_path[600];

/* What the golden lines produced, and the captured log lines of the current command. */
static char **g_in, **g_out, **g_ref;
static size_t g_n;
static char g_log[4096];

/* strings handed to var_* by "set", freed at the end */
static char **t_strings;
static size_t t_nstrings;

/* log_hook - collect what a command logged */
static void log_hook(int prio, const char *line)
{
    size_t n = strlen(g_log);

    (void) prio;
    snprintf(g_log + n, sizeof(g_log) - n, " | log: %s", line);
}

/* smtpd_log_reject - stands in for smtpd_log.c: the line, as the golden file shows it */
void smtpd_log_reject(const SMTPD_CLIENT *c, const char *stage, const SMTPD_REPLY *r,
                      const char *rcpt, int warn)
{
    size_t n = strlen(g_log);

    snprintf(g_log + n, sizeof(g_log) - n, " | %s: %s from %s[%s]: %s; from=<%s> to=<%s>",
             warn ? "reject_warning" : "reject", stage, c->name, c->addr, r->text,
             c->sender ? c->sender : "", rcpt ? rcpt : "");
}

/* t_string - keep a copy for a var_* */
static char *t_string(const char *s)
{
    t_strings = xrealloc(t_strings, (t_nstrings + 1) * sizeof(*t_strings));
    return t_strings[t_nstrings++] = xstrdup(s);
}

/* ---------------------------------------------------------------- the store */

static int t_store_open(void)
{
    char err[256];

    smtpd_store = store_open(t_path, STORE_CREATE, 200, err, sizeof(err));
    if (smtpd_store == NULL)
        fprintf(stderr, "# store_open: %s\n", err);
    return smtpd_store ? 0 : -1;
}

static int t_store_fill(void)
{
    static const char *const alice_addr[] = {"alice@example.com", "a.smith@example.com"};
    static const char *const alice_login[] = {"alice"};
    static const char *const staff_addr[] = {"allstaff@example.com"};
    static const char *const staff_member[] = {"cn=alice,dc=example,dc=com"};
    static const char *const bob_addr[] = {"bob@corp.example", "carol@sales.corp.example"};
    static const char *const bob_login[] = {"bob"};
    STORE_OBJECT o[3];
    STORE *st = smtpd_store;

    memset(o, 0, sizeof(o));
    o[0] = (STORE_OBJECT) {"g-alice", "cn=alice,dc=example,dc=com", STORE_KIND_USER, 0,
        alice_addr, 2, alice_login, 1, NULL, 0};
    o[1] = (STORE_OBJECT) {"g-staff", "cn=allstaff,dc=example,dc=com", STORE_KIND_GROUP,
        STORE_FLAG_INTERNAL_ONLY, staff_addr, 1, NULL, 0, staff_member, 1};
    o[2] = (STORE_OBJECT) {"g-bob", "cn=bob,dc=example,dc=com", STORE_KIND_USER, 0,
        bob_addr, 2, bob_login, 1, NULL, 0};
    if (store_domain_put(st, "example.com", "smtp:[10.0.0.5]:25", 0) < 0
        || store_domain_put(st, "corp.example", "", 1) < 0
        || store_domain_put(st, "catchall.example", "smtp:[10.0.0.6]", 0) < 0)
        return -1;
    if (store_sync_begin(st, "dir", "ldap") < 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if (store_sync_put(st, &o[i]) < 0)
            return -1;
    if (store_sync_commit(st, NULL, NULL, NULL) < 0)
        return -1;
    if (store_static_add(st, "postmaster@example.com") < 0 || store_static_add(st, "@catchall.example") < 0)
        return -1;
    return 0;
}

/* t_store_table - rename a table from a second connection (break: away, mend: back) */
static const char *t_store_table(const char *how, const char *table)
{
    static char result[256];
    char sql[160];
    char *msg = NULL;
    sqlite3 *db;

    if (sqlite3_open(t_path, &db) != SQLITE_OK)
        return "cannot open";
    if (strcmp(how, "break") == 0)
        snprintf(sql, sizeof(sql), "ALTER TABLE %s RENAME TO %s_broken", table, table);
    else
        snprintf(sql, sizeof(sql), "ALTER TABLE %s_broken RENAME TO %s", table, table);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        snprintf(result, sizeof(result), "error: %s", msg ? msg : "?");
    else
        snprintf(result, sizeof(result), "ok");
    sqlite3_free(msg);
    sqlite3_close(db);
    return result;
}

/* ---------------------------------------------------------------- the client */

static SMTPD_CLIENT t_c;

static void t_client_clear(void)
{
    free(t_c.helo);
    free(t_c.sasl_user);
    free(t_c.sender);
    free(t_c.dns.dnsbl_zone);
    free(t_c.dns.dnsbl_text);
    free(t_c.dns.rhsbl_zone);
    free(t_c.dns.rhsbl_text);
    memset(&t_c, 0, sizeof(t_c));
}

/* t_client - a new session from addr */
static const char *t_client(const char *addr, const char *name)
{
    struct sockaddr_in *sin = (struct sockaddr_in *) &t_c.sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &t_c.sa;

    t_client_clear();
    snprintf(t_c.addr, sizeof(t_c.addr), "%s", addr);
    snprintf(t_c.name, sizeof(t_c.name), "%s", name ? name : "unknown");
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        t_c.salen = sizeof(*sin);
    } else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        t_c.salen = sizeof(*sin6);
    } else {
        return "bad address";
    }
    t_c.esmtp = 1;
    t_c.trusted = smtpd_check_trusted((struct sockaddr *) &t_c.sa);
    return t_c.trusted ? "ok trusted" : "ok untrusted";
}

/* t_dns - dns dnsbl|rhsbl|sender STATUS [ZONE [TEXT]] */
static const char *t_dns(char *what, char *status, char *zone, char *text)
{
    static const char *const names[] = {"unasked", "pending", "yes", "no", "temp"};
    int st = -1;

    for (int i = 0; i < 5; i++)
        if (status && strcmp(status, names[i]) == 0)
            st = i;
    if (st < 0 || what == NULL)
        return "bad dns line";
    if (strcmp(what, "dnsbl") == 0) {
        t_c.dns.dnsbl = st;
        free(t_c.dns.dnsbl_zone);
        free(t_c.dns.dnsbl_text);
        t_c.dns.dnsbl_zone = zone ? xstrdup(zone) : NULL;
        t_c.dns.dnsbl_text = text ? xstrdup(text) : NULL;
    } else if (strcmp(what, "rhsbl") == 0) {
        t_c.dns.rhsbl = st;
        free(t_c.dns.rhsbl_zone);
        free(t_c.dns.rhsbl_text);
        t_c.dns.rhsbl_zone = zone ? xstrdup(zone) : NULL;
        t_c.dns.rhsbl_text = text ? xstrdup(text) : NULL;
    } else if (strcmp(what, "sender") == 0) {
        t_c.dns.sender_domain = st;
    } else {
        return "bad dns line";
    }
    return "ok";
}

/* The variables "set" may change. */
static const struct {
    const char *name;
    char **str;
    int *num;
} t_vars[] = {
    {"mynetworks", &var_rules_mynetworks, NULL},
    {"default_nexthop", &var_smtpd_default_nexthop, NULL},
    {"warn_if_reject", NULL, &var_rules_warn_if_reject},
    {"helo_required", &var_smtpd_helo_required, NULL},
    {"reject_invalid_helo", &var_rules_invalid_helo, NULL},
    {"reject_non_fqdn_helo", &var_rules_non_fqdn_helo, NULL},
    {"reject_forged_helo", &var_rules_forged_helo, NULL},
    {"reject_non_fqdn_sender", &var_rules_non_fqdn_sender, NULL},
    {"reject_unknown_sender_domain", &var_smtpd_unknown_sender_domain, NULL},
    {"unknown_address_reject_code", NULL, &var_smtpd_unknown_reject_code},
    {"reject_forged_sender", &var_rules_forged_sender, NULL},
    {"reject_sender_login_mismatch", &var_rules_login_mismatch, NULL},
    {"reject_non_fqdn_recipient", &var_rules_non_fqdn_rcpt, NULL},
    {"reject_unknown_recipient", &var_rules_unknown_rcpt, NULL},
    {"reject_internal_only", &var_rules_internal_only, NULL},
    {"dnsbl_mode", &var_smtpd_dnsbl_mode, NULL},
    {"rhsbl_mode", &var_smtpd_rhsbl_mode, NULL},
    {"client_access", &var_rules_client_access, NULL},
    {"helo_access", &var_rules_helo_access, NULL},
    {"sender_access", &var_rules_sender_access, NULL},
    {"recipient_access", &var_rules_rcpt_access, NULL},
    {"store_access", NULL, &var_rules_store_access},
    {NULL, NULL, NULL},
};

/* cfg's own strings of the variables "set" replaced, put back at the end */
static char *t_saved[sizeof(t_vars) / sizeof(t_vars[0])];
static int t_was_saved[sizeof(t_vars) / sizeof(t_vars[0])];

static void t_restore(void)
{
    for (size_t i = 0; t_vars[i].name; i++)
        if (t_was_saved[i])
            *t_vars[i].str = t_saved[i];
}

/* t_set - set PARAM VALUE ("\n" in VALUE: a new line) */
static const char *t_set(const char *name, const char *value)
{
    char buf[2048];
    size_t o = 0;

    for (const char *p = value ? value : ""; *p && o + 1 < sizeof(buf); p++) {
        if (p[0] == '\\' && p[1] == 'n') {
            buf[o++] = '\n';
            p++;
        } else {
            buf[o++] = *p;
        }
    }
    buf[o] = 0;
    for (int i = 0; t_vars[i].name; i++) {
        if (strcmp(t_vars[i].name, name) != 0)
            continue;
        if (t_vars[i].str && !t_was_saved[i]) {
            t_saved[i] = *t_vars[i].str;
            t_was_saved[i] = 1;
        }
        if (t_vars[i].str)
            *t_vars[i].str = t_string(buf);
        else
            *t_vars[i].num = atoi(buf);
        return "ok";
    }
    return "unknown parameter";
}

/* t_reply - a reply for the golden output */
static void t_reply(char *out, size_t size, const SMTPD_REPLY *r)
{
    if (r->code == 0)
        snprintf(out, size, "OK");
    else
        snprintf(out, size, "%s%s%s", r->text, r->harvest ? " [harvest]" : "",
                 r->disconnect ? " [disconnect]" : "");
}

/* t_run - one golden line; out gets its result */
static void t_run(char *line, char *out, size_t size)
{
    char copy[1024], *cmd, *a1, *a2, *rest, *save = NULL;
    SMTPD_REPLY r;
    SMTPD_RCPT_INFO info;
    char err[512];

    snprintf(copy, sizeof(copy), "%s", line);
    cmd = strtok_r(copy, " \t", &save);
    if (cmd != NULL && strcmp(cmd, "?login") == 0)
        cmd = strtok_r(NULL, " \t", &save);
    a1 = strtok_r(NULL, " \t", &save);
    rest = save && *save ? save + strspn(save, " \t") : NULL;
    g_log[0] = 0;
    memset(&r, 0, sizeof(r));
    if (cmd == NULL) {
        snprintf(out, size, "empty line");
    } else if (strcmp(cmd, "client") == 0) {
        snprintf(out, size, "%s", t_client(a1 ? a1 : "", rest));
    } else if (strcmp(cmd, "trusted") == 0) {
        t_c.trusted = a1 && atoi(a1);
        snprintf(out, size, "ok");
    } else if (strcmp(cmd, "sasl") == 0) {
        free(t_c.sasl_user);
        t_c.sasl_user = a1 && strcmp(a1, "-") ? xstrdup(a1) : NULL;
        snprintf(out, size, "ok");
    } else if (strcmp(cmd, "hostname") == 0) {
        snprintf(smtpd_hostname, sizeof(smtpd_hostname), "%s", a1 ? a1 : "");
        snprintf(out, size, "ok");
    } else if (strcmp(cmd, "helo") == 0) {
        const char *h = a1 && strcmp(a1, "-") ? line + (a1 - copy) : NULL;

        free(t_c.helo);
        t_c.helo = NULL;
        if (h == NULL) {
            snprintf(out, size, "ok");
        } else {
            smtpd_check_helo(&t_c, h, &r);
            t_reply(out, size, &r);
            if (r.code == 0)
                t_c.helo = xstrdup(h);
        }
    } else if (strcmp(cmd, "mail") == 0) {
        const char *s = a1 == NULL ? "" : strcmp(a1, "<>") == 0 ? "" : a1;

        free(t_c.sender);
        t_c.sender = NULL;
        smtpd_check_mail(&t_c, s, &r);
        t_reply(out, size, &r);
        if (r.code == 0)
            t_c.sender = xstrdup(s);
    } else if (strcmp(cmd, "rcpt") == 0) {
        smtpd_check_rcpt(&t_c, a1 ? a1 : "", &info, &r);
        if (r.code == 0)
            snprintf(out, size, "OK address=%s nexthop=%s", info.address, info.nexthop);
        else
            t_reply(out, size, &r);
    } else if (strcmp(cmd, "connect") == 0) {
        smtpd_check_connect(&t_c, &r);
        t_reply(out, size, &r);
    } else if (strcmp(cmd, "data") == 0) {
        smtpd_check_data(&t_c, &r);
        t_reply(out, size, &r);
    } else if (strcmp(cmd, "dns") == 0) {
        char *status = rest ? strtok_r(NULL, " \t", &save) : NULL;
        char *zone = status ? strtok_r(NULL, " \t", &save) : NULL;
        char *text = zone && save && *save ? save : NULL;

        snprintf(out, size, "%s", t_dns(a1, status, zone, text));
    } else if (strcmp(cmd, "set") == 0) {
        snprintf(out, size, "%s", t_set(a1 ? a1 : "", rest));
    } else if (strcmp(cmd, "init") == 0) {
        if (smtpd_check_init(err, sizeof(err)) < 0)
            snprintf(out, size, "error: %s", err);
        else
            snprintf(out, size, "ok");
    } else if (strcmp(cmd, "accessdb") == 0) {
        char *key = strtok_r(NULL, " \t", &save);
        char *action = key ? strtok_r(NULL, " \t", &save) : NULL;
        char *text = action && save && *save ? save : "";
        STORE_ACCESS e;

        if (store_access_entry(a1, key, action, text, &e, err, sizeof(err)) < 0)
            snprintf(out, size, "error: %s", err);
        else if (store_access_put(smtpd_store, a1, &e) < 0)
            snprintf(out, size, "store error: %s", store_error(smtpd_store));
        else
            snprintf(out, size, "ok %s %s %s", e.key, store_access_action_name(e.action), e.text);
    } else if (strcmp(cmd, "store") == 0) {
        a2 = rest;
        if (a1 && (strcmp(a1, "break") == 0 || strcmp(a1, "mend") == 0) && a2) {
            snprintf(out, size, "%s", t_store_table(a1, a2));
        } else if (a1 && strcmp(a1, "none") == 0) {
            store_close(smtpd_store);
            smtpd_store = NULL;
            snprintf(out, size, "ok");
        } else if (a1 && strcmp(a1, "open") == 0) {
            snprintf(out, size, "%s", t_store_open() == 0 ? "ok" : "error");
        } else {
            snprintf(out, size, "bad store line");
        }
    } else {
        snprintf(out, size, "unknown command");
    }
    if (g_log[0]) {
        size_t n = strlen(out);

        snprintf(out + n, size - n, "%s", g_log);
    }
}

/* t_lines - read a file's lines, without comments and blank lines */
static char **t_lines(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "r");
    char buf[4096];
    char **v = NULL;

    *n = 0;
    if (fp == NULL)
        return NULL;
    while (fgets(buf, sizeof(buf), fp)) {
        buf[strcspn(buf, "\n")] = 0;
        if (buf[0] == 0 || buf[0] == '#')
            continue;
        v = xrealloc(v, (*n + 1) * sizeof(*v));
        v[(*n)++] = xstrdup(buf);
    }
    fclose(fp);
    return v;
}

/* ---------------------------------------------------------------- plain tests */

static void test_init_errors(void **state)
{
    char *saved_mynet = var_rules_mynetworks, *saved_client = var_rules_client_access;
    struct sockaddr_in sin;
    char err[512];

    (void) state;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, "10.20.30.40", &sin.sin_addr);

    var_rules_mynetworks = "10.20.0.0/16";
    assert_int_equal(smtpd_check_init(err, sizeof(err)), 0);
    assert_true(smtpd_check_trusted((struct sockaddr *) &sin));

    /* a bad CIDR: error named, the old state kept */
    var_rules_mynetworks = "127.0.0.0/8, 10.0.0.0/33";
    assert_int_equal(smtpd_check_init(err, sizeof(err)), -1);
    assert_string_equal(err, "rules.mynetworks: bad CIDR \"10.0.0.0/33\"");
    assert_true(smtpd_check_trusted((struct sockaddr *) &sin));
    var_rules_mynetworks = "bogus";
    assert_int_equal(smtpd_check_init(err, sizeof(err)), -1);
    {
        /* a mynetworks file: a comment longer than any buffer is one comment, lines counted right */
        char path[] = "/tmp/rg-mynets-XXXXXX";
        int fd = mkstemp(path);
        FILE *fp = fdopen(fd, "w");

        assert_non_null(fp);
        fputs("# ", fp);
        for (int i = 0; i < 1100; i++)
            fputc('x', fp);
        fputs(" trusted\n10.20.0.0/16\n10.0.0.0/33\n", fp);
        fclose(fp);
        var_rules_mynetworks = path;
        assert_int_equal(smtpd_check_init(err, sizeof(err)), -1);
        assert_non_null(strstr(err, " line 3: bad CIDR \"10.0.0.0/33\""));
        unlink(path);
    }

    /* a malformed access entry: parameter and entry number */
    var_rules_mynetworks = "10.20.0.0/16";
    var_rules_client_access = "192.0.2.1 OK\n192.0.2.300 REJECT";
    assert_int_equal(smtpd_check_init(err, sizeof(err)), -1);
    assert_non_null(strstr(err, "rules.client_access: entry 2 \"192.0.2.300 REJECT\""));
    var_rules_client_access = "192.0.2.1 FROB";
    assert_int_equal(smtpd_check_init(err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unknown action"));
    var_rules_client_access = "192.0.2.1";
    assert_int_equal(smtpd_check_init(err, sizeof(err)), -1);
    var_rules_client_access = "192.0.2.1 WARN";
    assert_int_equal(smtpd_check_init(err, sizeof(err)), -1);
    assert_non_null(strstr(err, "WARN needs a text"));
    var_rules_client_access = "192.0.2.1 OK but why";
    assert_int_equal(smtpd_check_init(err, sizeof(err)), -1);
    var_rules_client_access = "";
    var_rules_sender_access = "a@@b REJECT";
    assert_int_equal(smtpd_check_init(err, sizeof(err)), -1);
    assert_non_null(strstr(err, "rules.sender_access: entry 1"));
    var_rules_sender_access = "";
    assert_true(smtpd_check_trusted((struct sockaddr *) &sin));

    var_rules_mynetworks = saved_mynet;
    var_rules_client_access = saved_client;
    assert_int_equal(smtpd_check_init(err, sizeof(err)), 0);
    assert_false(smtpd_check_trusted((struct sockaddr *) &sin));
}

static void test_mynetworks(void **state)
{
    static const struct {
        const char *addr;
        int trusted;
    } cases[] = {
        {"127.0.0.1", 1}, {"127.255.0.9", 1}, {"128.0.0.1", 0}, {"10.1.2.3", 1}, {"10.1.3.3", 0},
        {"192.0.2.77", 1}, {"192.0.2.78", 0}, {"::1", 1}, {"::2", 0}, {"2001:db8:1:ffff::5", 1},
        {"2001:db8:2::1", 0}, {"::ffff:10.1.2.200", 1}, {"::ffff:11.1.2.200", 0},
    };
    char *saved = var_rules_mynetworks;
    char err[512];

    (void) state;
    var_rules_mynetworks = "127.0.0.0/8 10.1.2.0/24,192.0.2.77\n[::1]/128 [2001:db8:1::]/48";
    assert_int_equal(smtpd_check_init(err, sizeof(err)), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        struct sockaddr_in *sin = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;

        memset(&ss, 0, sizeof(ss));
        if (inet_pton(AF_INET, cases[i].addr, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
        } else {
            assert_int_equal(inet_pton(AF_INET6, cases[i].addr, &sin6->sin6_addr), 1);
            sin6->sin6_family = AF_INET6;
        }
        if (smtpd_check_trusted((struct sockaddr *) &ss) != cases[i].trusted) {
            fprintf(stderr, "# %s: want trusted=%d\n", cases[i].addr, cases[i].trusted);
            fail();
        }
    }
    assert_false(smtpd_check_trusted(NULL));

    /* a file of networks, as Postfix's mynetworks = /etc/postfix/mynetworks */
    {
        char path[700], value[800];
        FILE *fp;
        struct sockaddr_in sin;

        snprintf(path, sizeof(path), "%s/mynetworks", t_dir);
        assert_non_null(fp = fopen(path, "w"));
        fputs("# trusted relays\n10.9.0.0/16   # the DCs\n\n192.0.2.5, 192.0.2.6\n", fp);
        fclose(fp);
        snprintf(value, sizeof(value), "127.0.0.0/8 %s", path);
        var_rules_mynetworks = value;
        assert_int_equal(smtpd_check_init(err, sizeof(err)), 0);
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        inet_pton(AF_INET, "10.9.7.7", &sin.sin_addr);
        assert_true(smtpd_check_trusted((struct sockaddr *) &sin));
        inet_pton(AF_INET, "192.0.2.6", &sin.sin_addr);
        assert_true(smtpd_check_trusted((struct sockaddr *) &sin));
        inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
        assert_false(smtpd_check_trusted((struct sockaddr *) &sin));
        assert_non_null(fp = fopen(path, "a"));
        fputs("10.10.0.0/99\n", fp);
        fclose(fp);
        assert_int_equal(smtpd_check_init(err, sizeof(err)), -1);
        assert_non_null(strstr(err, "mynetworks line 5: bad CIDR \"10.10.0.0/99\""));
        snprintf(value, sizeof(value), "%s.missing", path);
        assert_int_equal(smtpd_check_init(err, sizeof(err)), -1);
        assert_non_null(strstr(err, ".missing: No such file"));
    }
    var_rules_mynetworks = saved;
    assert_int_equal(smtpd_check_init(err, sizeof(err)), 0);
}

static void test_access_keys(void **state)
{
    static const struct {
        const char *type, *in, *out;    /* out NULL: refused */
    } cases[] = {
        {"client", "192.0.2.1", "192.0.2.1"},
        {"client", "192.0.2.1/32", "192.0.2.1"},
        {"client", "192.0.2.77/24", "192.0.2.0/24"},
        {"client", "[192.0.2.0]/24", "192.0.2.0/24"},
        {"client", "[::1]/128", "::1"},
        {"client", "2001:DB8::1/32", "2001:db8::/32"},
        {"client", "0.0.0.0/0", "0.0.0.0/0"},
        {"client", "192.0.2.1/33", NULL},
        {"client", "192.0.2", NULL},
        {"client", "host.example", NULL},
        {"client", "192.0.2.1/", NULL},
        {"helo", "Mail.Example.COM.", "mail.example.com"},
        {"helo", ".Example.com", ".example.com"},
        {"helo", "[192.0.2.1]", "[192.0.2.1]"},
        {"helo", "bad_host!", NULL},
        {"sender", "John@Example.COM", "john@example.com"},
        {"sender", "@Example.COM", "@example.com"},
        {"sender", "Example.COM", "example.com"},
        {"sender", ".Example.COM", ".example.com"},
        {"sender", "John@", "john@"},
        {"sender", "<>", "<>"},
        {"sender", "a@@b.example", NULL},
        {"sender", "@", NULL},
        {"recipient", "x@b\xc3\xbc" "cher.example", "x@xn--bcher-kva.example"},
        {"recipient", "@.example.com", NULL},
        {"nosuch", "x", NULL},
        {"client", "", NULL},
    };
    char out[STORE_ACCESS_KEY_SIZE], err[256];

    (void) state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = store_access_key(cases[i].type, cases[i].in, out, err, sizeof(err));

        if (cases[i].out == NULL ? rc != -1 : rc != 0 || strcmp(out, cases[i].out) != 0) {
            fprintf(stderr, "# %s %s: got %d \"%s\" (%s), want %s\n", cases[i].type, cases[i].in, rc,
                    out, rc < 0 ? err : "", cases[i].out ? cases[i].out : "refused");
            fail();
        }
    }
    assert_int_equal(store_access_action("reject"), STORE_ACCESS_REJECT);
    assert_int_equal(store_access_action("Dunno"), STORE_ACCESS_DUNNO);
    assert_int_equal(store_access_action("PERMIT"), STORE_ACCESS_NONE);
    assert_string_equal(store_access_action_name(STORE_ACCESS_DEFER), "DEFER");
}

struct walk_ctx {
    char text[1024];
};

static int walk_fn(const char *type, const STORE_ACCESS *e, void *ctx)
{
    struct walk_ctx *w = ctx;
    size_t n = strlen(w->text);

    snprintf(w->text + n, sizeof(w->text) - n, "%s %s %s %s;", type, e->key,
             store_access_action_name(e->action), e->text);
    return 0;
}

static void test_access_table(void **state)
{
    const char *keys[] = {"nobody@x.example", "@x.example", "x.example"};
    struct walk_ctx w = {""};
    STORE_ACCESS e, got;
    char err[256];
    size_t which = 99;

    (void) state;
    assert_int_equal(store_access_entry("sender", "X.Example", "reject", "go away", &e, err, sizeof(err)), 0);
    assert_int_equal(store_access_put(smtpd_store, "sender", &e), 0);
    assert_int_equal(store_access_find(smtpd_store, "sender", keys, 3, &got, &which), 1);
    assert_int_equal(which, 2);
    assert_string_equal(got.key, "x.example");
    assert_int_equal(got.action, STORE_ACCESS_REJECT);
    assert_string_equal(got.text, "go away");
    assert_int_equal(store_access_find(smtpd_store, "recipient", keys, 3, &got, NULL), 0);
    /* replace */
    assert_int_equal(store_access_entry("sender", "x.example", "DEFER", "", &e, err, sizeof(err)), 0);
    assert_int_equal(store_access_put(smtpd_store, "sender", &e), 0);
    assert_int_equal(store_access_walk(smtpd_store, "sender", walk_fn, &w), 0);
    assert_non_null(strstr(w.text, "sender x.example DEFER ;"));
    assert_int_equal(store_access_del(smtpd_store, "sender", "x.example"), 1);
    assert_int_equal(store_access_del(smtpd_store, "sender", "x.example"), 0);
    assert_int_equal(store_access_find(smtpd_store, "sender", keys, 3, &got, NULL), 0);

    /* which lists have entries: kept, and forgotten when this process writes */
    {
        int mask = -1;
        STORE_ACCESS helo;
        const char *hk[] = {".evil2.example"};

        /* the golden lines left one HELO entry: take it away for a while */
        if (store_access_find(smtpd_store, "helo", hk, 1, &helo, NULL) == 1)
            assert_int_equal(store_access_del(smtpd_store, "helo", ".evil2.example"), 1);
        else
            helo.key[0] = 0;
        assert_int_equal(store_access_present(smtpd_store, &mask), 0);
        assert_false(mask & 2);
        assert_int_equal(store_access_entry("helo", "Only.Example", "DUNNO", "", &e, err, sizeof(err)), 0);
        assert_int_equal(store_access_put(smtpd_store, "helo", &e), 0);
        assert_int_equal(store_access_present(smtpd_store, &mask), 0);
        assert_true(mask & 2);
        assert_int_equal(store_access_del(smtpd_store, "helo", "only.example"), 1);
        assert_int_equal(store_access_present(smtpd_store, &mask), 0);
        assert_false(mask & 2);
        if (helo.key[0])
            assert_int_equal(store_access_put(smtpd_store, "helo", &helo), 0);
    }
}

/* ---------------------------------------------------------------- golden lines */

static void test_golden(void **state)
{
    size_t i = (size_t) (*state ? *(size_t *) *state : 0);

    if (i >= g_n || g_ref == NULL || g_ref[i] == NULL) {
        fprintf(stderr, "# no .ref line for: %s => %s\n", g_in[i], g_out[i]);
        fail();
    }
    if (strcmp(g_out[i], g_ref[i]) != 0) {
        fprintf(stderr, "# want: %s\n# got:  %s\n", g_ref[i], g_out[i]);
        fail();
    }
}

static size_t *g_index;

static int group_setup(void **state)
{
    char err[512];

    (void) state;
    snprintf(t_dir, sizeof(t_dir), "%s/tests/tmp/test_smtpd_check", getenv("top_builddir") ? getenv("top_builddir") : ".");
    {
        char cmd[1200];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", t_dir, t_dir);
        if (system(cmd) != 0)
            return -1;
    }
    snprintf(t_path, sizeof(t_path), "%s/store.db", t_dir);
    log_init("test_smtpd_check", 0, 0);
    cfg_defaults(params_smtpd_sections());
    t_set("mynetworks", "127.0.0.0/8 [::1]/128 192.0.2.0/25");
    t_set("default_nexthop", "smtp:[10.0.0.9]");
    if (smtpd_check_init(err, sizeof(err)) < 0) {
        fprintf(stderr, "# smtpd_check_init: %s\n", err);
        return -1;
    }
    snprintf(smtpd_hostname, sizeof(smtpd_hostname), "mx.example.com");
    if (t_store_open() < 0 || t_store_fill() < 0) {
        fprintf(stderr, "# store setup: %s\n", smtpd_store ? store_error(smtpd_store) : "");
        return -1;
    }
    log_set_hook(log_hook);
    return 0;
}

static int group_teardown(void **state)
{
    (void) state;
    log_set_hook(NULL);
    t_client_clear();
    store_close(smtpd_store);
    smtpd_store = NULL;
    return 0;
}

int main(void)
{
    const char *src = getenv("top_srcdir") ? getenv("top_srcdir") : "..";
    char in_path[1024], ref_path[1024];
    struct CMUnitTest *tests;
    size_t nref = 0, ntests = 0;
    int rc;

    snprintf(in_path, sizeof(in_path), "%s/tests/golden/smtpd_check.in", src);
    snprintf(ref_path, sizeof(ref_path), "%s/tests/golden/smtpd_check.ref", src);
    if ((g_in = t_lines(in_path, &g_n)) == NULL) {
        printf("1..0 # SKIP cannot read %s\n", in_path);
        return 0;
    }
    g_ref = t_lines(ref_path, &nref);
    g_ref = xrealloc(g_ref, (g_n + 1) * sizeof(*g_ref));
    for (size_t i = nref; i <= g_n; i++)
        g_ref[i] = NULL;
    g_out = xcalloc(g_n + 1, sizeof(*g_out));
    g_index = xcalloc(g_n + 1, sizeof(*g_index));

    /* Run every golden line first, in order (they build on each other); the tests compare. */
    tests = xcalloc(g_n + 8, sizeof(*tests));
    tests[ntests++] = (struct CMUnitTest) cmocka_unit_test(test_init_errors);
    tests[ntests++] = (struct CMUnitTest) cmocka_unit_test(test_mynetworks);
    tests[ntests++] = (struct CMUnitTest) cmocka_unit_test(test_access_keys);
    tests[ntests++] = (struct CMUnitTest) cmocka_unit_test(test_access_table);
    if (group_setup(NULL) < 0) {
        printf("Bail out! setup failed\n");
        return 1;
    }
    for (size_t i = 0; i < g_n; i++) {
        char out[4096];

        t_run(g_in[i], out, sizeof(out));
        g_out[i] = xmalloc(strlen(g_in[i]) + strlen(out) + 8);
        sprintf(g_out[i], "%s => %s", g_in[i], out);
        g_index[i] = i;
        tests[ntests].name = g_in[i];
        tests[ntests].test_func = test_golden;
        tests[ntests].initial_state = &g_index[i];
        ntests++;
    }
    if (getenv("RG_GOLDEN_WRITE")) {
        FILE *fp = fopen(ref_path, "w");

        for (size_t i = 0; fp && i < g_n; i++)
            fprintf(fp, "%s\n", g_out[i]);
        if (fp)
            fclose(fp);
    }
    /* the plain tests after the golden lines: they use the (then open or reopened) store */
    if (smtpd_store == NULL)
        t_store_open();
    rc = _cmocka_run_group_tests("smtpd_check", tests, ntests, NULL, NULL);
    group_teardown(NULL);
    for (size_t i = 0; i < g_n; i++) {
        free(g_in[i]);
        free(g_out[i]);
        free(g_ref[i]);
    }
    free(g_in);
    free(g_out);
    free(g_ref);
    free(g_index);
    free(tests);
    t_restore();
    for (size_t i = 0; i < t_nstrings; i++)
        free(t_strings[i]);
    free(t_strings);
    return rc;
}
