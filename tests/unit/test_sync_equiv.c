/*
 * test_sync_equiv.c - the staged full pull stores exactly what the old in-memory one did
 *
 * Issue 12 replaced the full pull's in-memory merge (now
 * lib/store_sync_legacy.c, selected only by the test-only switch
 * store_sync_test_legacy) with one staged in TEMP tables and compared in
 * SQL (lib/store_sync_stage.c). This test feeds the same random sequences
 * of full pulls to two stores, one through each path, and after every
 * pull compares:
 *  - every table the sync writes, dumped whole with the ids (object,
 *    recipient, login, member, claim, source, sync_run; only the clock
 *    columns left out);
 *  - the counts the diff and the commit return;
 *  - the rows each pull wrote, per table and operation (triggers), so
 *    that "only what changed is written" holds the same;
 *  - the log lines (collisions begun and ended, across sources too).
 * The pulls mix renames, DNs shared and differing only in case, members
 * that resolve or not, repeated puts of a guid, addresses several
 * objects carry, kinds and flags that change, objects that come and go,
 * a second source carrying some of the same addresses, and refusals
 * after a diff. The random sequence is seeded, so a failure repeats.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "log.h"
#include "store.h"
#include "store_sync.h"
#include "store_sync_int.h"

#define E_GUIDS     14
#define E_ADDRS     12
#define E_DNS       8
#define E_ROUNDS    300
#define E_DUMP      65536

static char test_dir[256];
static uint64_t e_rand_state;

/* What the log hook collected since the last e_log_take. */
static char e_log[E_DUMP];

/* e_rand - xorshift64*, 0 .. n-1 */
static unsigned e_rand(unsigned n)
{
    e_rand_state ^= e_rand_state >> 12;
    e_rand_state ^= e_rand_state << 25;
    e_rand_state ^= e_rand_state >> 27;
    return (unsigned) ((e_rand_state * 0x2545F4914F6CDD1DULL) >> 33) % n;
}

/* e_hook - collect log lines but debug ones (which name the store's path) */
static void e_hook(int prio, const char *line)
{
    size_t len = strlen(e_log);

    if (prio == LOG_DEBUG)
        return;
    snprintf(e_log + len, sizeof(e_log) - len, "%d %s\n", prio, line);
}

/* e_cat - append to a dump */
static void e_cat(char *buf, const char *fmt, ...)
{
    size_t len = strlen(buf);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf + len, E_DUMP - len, fmt, ap);
    va_end(ap);
}

/* e_dump - every table the sync writes, ids included, clocks left out, and the writes logged */
static void e_dump(const char *path, char *out)
{
    static const char *const q[] = {
        "SELECT 'o', id, source_id, guid, dn, kind, flags FROM object ORDER BY id",
        "SELECT 'r', address, source_id, object_id, kind, flags FROM recipient ORDER BY address, source_id",
        "SELECT 'l', name, object_id FROM login ORDER BY 2, 3",
        "SELECT 'm', group_id, member_id FROM member ORDER BY 2, 3",
        "SELECT 'c', address, object_id FROM claim ORDER BY 2, 3",
        "SELECT 's', id, name, type, cookie, last_success IS NULL FROM source ORDER BY id",
        "SELECT 'y', id, source_id, mode, added, changed, removed, outcome, message FROM sync_run ORDER BY id",
        "SELECT 'w', what, count(*) FROM writes GROUP BY what ORDER BY what",
        NULL
    };
    sqlite3 *db;

    out[0] = 0;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    for (int i = 0; q[i] != NULL; i++) {
        sqlite3_stmt *s;
        int rc;

        if (sqlite3_prepare_v2(db, q[i], -1, &s, NULL) != SQLITE_OK)
            fail_msg("%s: %s", q[i], sqlite3_errmsg(db));
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(s); c++) {
                const unsigned char *t = sqlite3_column_text(s, c);

                e_cat(out, "%s%s", c ? "|" : "", t ? (const char *) t : "NULL");
            }
            e_cat(out, "\n");
        }
        assert_int_equal(rc, SQLITE_DONE);
        sqlite3_finalize(s);
    }
    assert_int_equal(sqlite3_exec(db, "DELETE FROM writes", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* e_triggers - log every write to the sync's tables into "writes" */
static void e_triggers(const char *path)
{
    static const char *const tables[] = {"object", "recipient", "login", "member", "claim", NULL};
    static const char *const ops[] = {"INSERT", "UPDATE", "DELETE"};
    char sql[8192] = "CREATE TABLE writes (what TEXT);";
    sqlite3 *db;

    for (const char *const *t = tables; *t; t++)
        for (int op = 0; op < 3; op++)
            snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql),
                     "CREATE TRIGGER w_%s_%d AFTER %s ON %s BEGIN "
                     "INSERT INTO writes VALUES ('%s %s'); END;", *t, op, ops[op], *t, ops[op], *t);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* One object of a pull. */
typedef struct eobj {
    char guid[16], dn[40], kind[12];
    int flags;
    int naddr, nlogin, nmember;
    char addr[4][24], login[3][12], member[3][40];
} EOBJ;

/* e_dn - one of a few DNs, in a random mix of case */
static void e_dn(char *buf, size_t size, unsigned which)
{
    snprintf(buf, size, "cn=n%u,ou=people,dc=x", which);
    for (char *p = buf; *p; p++)
        if (*p >= 'a' && *p <= 'z' && e_rand(4) == 0)
            *p = (char) (*p - 32);
}

/* e_obj - a random object of guid number g */
static void e_obj(EOBJ *o, int g)
{
    static const char *const kinds[] = {"user", "group", "contact"};

    memset(o, 0, sizeof(*o));
    snprintf(o->guid, sizeof(o->guid), "g%02d", (g * 7) % E_GUIDS);   /* put order is not guid order */
    if (e_rand(5) > 0)
        e_dn(o->dn, sizeof(o->dn), e_rand(E_DNS));
    snprintf(o->kind, sizeof(o->kind), "%s", kinds[e_rand(3)]);
    o->flags = e_rand(4) == 0;
    o->naddr = (int) e_rand(4);
    for (int a = 0; a < o->naddr; a++)     /* repeats are fine: put makes them one */
        snprintf(o->addr[a], sizeof(o->addr[a]), "a%u@x.test", e_rand(E_ADDRS));
    o->nlogin = (int) e_rand(3);
    for (int l = 0; l < o->nlogin; l++)
        snprintf(o->login[l], sizeof(o->login[l]), "login%u", e_rand(4));
    o->nmember = (int) e_rand(4);
    for (int m = 0; m < o->nmember; m++)
        e_dn(o->member[m], sizeof(o->member[m]), e_rand(E_DNS + 2));
}

/* e_put - store_sync_put one object */
static void e_put(STORE *st, const EOBJ *o)
{
    const char *av[4], *lv[3], *mv[3];
    STORE_OBJECT so;

    for (int i = 0; i < o->naddr; i++)
        av[i] = o->addr[i];
    for (int i = 0; i < o->nlogin; i++)
        lv[i] = o->login[i];
    for (int i = 0; i < o->nmember; i++)
        mv[i] = o->member[i];
    memset(&so, 0, sizeof(so));
    so.guid = o->guid;
    so.dn = o->dn[0] ? o->dn : NULL;
    so.kind = o->kind;
    so.flags = o->flags;
    so.addresses = av;
    so.n_addresses = (size_t) o->naddr;
    so.logins = lv;
    so.n_logins = (size_t) o->nlogin;
    so.members = mv;
    so.n_members = (size_t) o->nmember;
    if (store_sync_put(st, &so) != 0)
        fail_msg("put %s: %s", o->guid, store_error(st));
}

/* The pull of one round, the same for both stores. */
typedef struct epull {
    const char *source;
    EOBJ objs[2 * E_GUIDS];
    int n;
    int how;                            /* 0 commit, 1 diff then commit, 2 diff then refuse */
} EPULL;

/* e_run - one pull into st through the old (legacy 1) or the staged path; its counts into out */
static void e_run(STORE *st, int legacy, const EPULL *p, char *out)
{
    STORE_COUNTS d, c;

    memset(&d, 0, sizeof(d));
    memset(&c, 0, sizeof(c));
    store_sync_test_legacy = legacy;
    if (store_sync_begin(st, p->source, "ldap") != 0)
        fail_msg("begin: %s", store_error(st));
    for (int i = 0; i < p->n; i++)
        e_put(st, &p->objs[i]);
    if (p->how > 0 && store_sync_diff(st, &d) != 0)
        fail_msg("diff: %s", store_error(st));
    if (p->how == 2) {
        if (store_sync_refuse(st, "refused", "test", &d) != 0)
            fail_msg("refuse: %s", store_error(st));
    } else if (store_sync_commit(st, p->how == 1 ? "cookie" : NULL, NULL, &c) != 0) {
        fail_msg("commit: %s", store_error(st));
    }
    store_sync_test_legacy = 0;
    snprintf(out, 256, "diff +%lld ~%lld -%lld =%lld commit +%lld ~%lld -%lld =%lld\n",
             d.added, d.changed, d.removed, d.kept, c.added, c.changed, c.removed, c.kept);
}

/* e_open - a new store at dir/name, with write triggers */
static STORE *e_open(const char *name, char *path, size_t size)
{
    char err[512];
    STORE *st;

    snprintf(path, size, "%s/%s", test_dir, name);
    st = store_open(path, STORE_CREATE, 200, err, sizeof(err));
    if (st == NULL)
        fail_msg("store_open %s: %s", path, err);
    store_close(st);
    e_triggers(path);
    st = store_open(path, 0, 200, err, sizeof(err));
    if (st == NULL)
        fail_msg("store_open %s: %s", path, err);
    return st;
}

static void test_equiv(void **state)
{
    char old_path[300], new_path[300];
    STORE *old_st, *new_st;
    static char old_dump[E_DUMP], new_dump[E_DUMP], old_log[E_DUMP];
    static EPULL p;
    char old_counts[256], new_counts[256];
    long long collisions = 0, claims = 0, members = 0;

    (void) state;
    e_rand_state = 0x243f6a8885a308d3ULL;
    old_st = e_open("old.db", old_path, sizeof(old_path));
    new_st = e_open("new.db", new_path, sizeof(new_path));
    log_set_hook(e_hook);
    for (int round = 0; round < E_ROUNDS; round++) {
        int order[E_GUIDS];

        memset(&p, 0, sizeof(p));
        /* One round in eight is the second source's, with a few objects of its own. */
        p.source = e_rand(8) == 0 ? "other" : "dir";
        for (int i = 0; i < E_GUIDS; i++)
            order[i] = i;
        for (int i = E_GUIDS - 1; i > 0; i--) {
            int j = (int) e_rand((unsigned) i + 1), t = order[i];

            order[i] = order[j];
            order[j] = t;
        }
        for (int k = 0; k < E_GUIDS; k++) {
            if (e_rand(10) >= (strcmp(p.source, "dir") == 0 ? 7u : 3u))
                continue;
            if (e_rand(6) == 0)
                e_obj(&p.objs[p.n++], order[k]);    /* put twice: the later wins */
            e_obj(&p.objs[p.n++], order[k]);
        }
        p.how = (int) e_rand(6);
        p.how = p.how < 3 ? 0 : p.how < 5 ? 1 : 2;

        e_log[0] = 0;
        e_run(old_st, 1, &p, old_counts);
        snprintf(old_log, sizeof(old_log), "%s", e_log);
        e_dump(old_path, old_dump);
        e_log[0] = 0;
        e_run(new_st, 0, &p, new_counts);
        e_dump(new_path, new_dump);
        if (strcmp(old_counts, new_counts) != 0)
            fail_msg("round %d: counts differ\n--- old: %s--- new: %s", round, old_counts, new_counts);
        if (strcmp(old_dump, new_dump) != 0)
            fail_msg("round %d: the stores differ\n--- old:\n%s--- new:\n%s", round, old_dump, new_dump);
        if (strcmp(old_log, e_log) != 0)
            fail_msg("round %d: the logs differ\n--- old:\n%s--- new:\n%s", round, old_log, e_log);
        collisions += strstr(e_log, "address collision") != NULL;
        claims += strstr(new_dump, "\nc|") != NULL;
        members += strstr(new_dump, "\nm|") != NULL;
    }
    log_set_hook(NULL);
    /* The sequence must have exercised what it is for. */
    print_message("%d rounds: %lld logged collisions, %lld with claims, %lld with members\n",
                  E_ROUNDS, collisions, claims, members);
    assert_true(collisions > 10);
    assert_true(claims > 10);
    assert_true(members > 10);
    store_close(old_st);
    store_close(new_st);
}

static int group_setup(void **state)
{
    (void) state;
    snprintf(test_dir, sizeof(test_dir), "/tmp/test_sync_equiv.XXXXXX");
    if (mkdtemp(test_dir) == NULL)
        return -1;
    log_init("test_sync_equiv", 0, 0);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[300];

    (void) state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equiv),
    };

    return cmocka_run_group_tests_name("sync_equiv", tests, group_setup, group_teardown);
}
