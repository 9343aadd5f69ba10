/*
 * test_store_sync.c - unit tests of directory syncs into the store (lib/store_sync.c)
 *
 * Each test gets a fresh store file. What a sync wrote is checked with
 * plain SQLite beside the store's own lookups; "only what changed is
 * written" is checked with triggers that log every write to the object,
 * recipient, login and member tables. Failures are provoked from another
 * connection (a lock held, a table renamed, a trigger that aborts late in
 * the commit) and must be -1 with nothing applied.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "log.h"
#include "store.h"
#include "store_sync.h"

static char test_dir[256];
static char test_path[300];
static int test_seq;

/* raw_exec - run SQL on the store file with plain SQLite, as another program would */
static void raw_exec(const char *sql)
{
    sqlite3 *db;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(test_path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("raw_exec %s: %s", sql, msg);
    sqlite3_close(db);
}

/* raw_int - one integer from plain SQLite */
static long long raw_int(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    long long v;

    assert_int_equal(sqlite3_open(test_path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("raw_int %s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* raw_text - one row's text, columns joined by "|", into a static buffer */
static const char *raw_text(const char *sql)
{
    static char buf[1024];
    sqlite3 *db;
    sqlite3_stmt *s;
    int rc;

    buf[0] = 0;
    assert_int_equal(sqlite3_open(test_path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("raw_text %s: %s", sql, sqlite3_errmsg(db));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(s); i++) {
            const unsigned char *t = sqlite3_column_text(s, i);

            snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s",
                     i ? "|" : (buf[0] ? ";" : ""), t ? (const char *) t : "NULL");
        }
    }
    assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return buf;
}

/* count_writes_on - log every write to the sync's tables in a table "writes" */
static void count_writes_on(void)
{
    static const char *const tables[] = {"object", "recipient", "login", "member", NULL};
    char sql[4096] = "CREATE TABLE writes (what TEXT);";

    for (const char *const *t = tables; *t; t++)
        for (int op = 0; op < 3; op++) {
            static const char *const ops[] = {"INSERT", "UPDATE", "DELETE"};

            snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql),
                     "CREATE TRIGGER w_%s_%d AFTER %s ON %s BEGIN "
                     "INSERT INTO writes VALUES ('%s %s'); END;", *t, op, ops[op], *t, ops[op], *t);
        }
    raw_exec(sql);
}

/* writes - what count_writes_on logged, then forget it */
static const char *writes(void)
{
    static char buf[1024];

    snprintf(buf, sizeof(buf), "%s", raw_text("SELECT what, count(*) FROM writes GROUP BY what ORDER BY what"));
    raw_exec("DELETE FROM writes");
    return buf;
}

/* open_new - create a store at a new path */
static STORE *open_new(void)
{
    char err[512];
    STORE *st = store_open(test_path, STORE_CREATE, 200, err, sizeof(err));

    if (st == NULL)
        fail_msg("store_open: %s", err);
    return st;
}

/* A test object: NULL-terminated lists. */
typedef struct tobj {
    const char *guid;
    const char *dn;
    const char *kind;
    int flags;
    const char *addrs[6];
    const char *logins[4];
    const char *members[8];
} TOBJ;

/* nlist - length of a NULL-terminated list */
static size_t nlist(const char *const *v, size_t max)
{
    size_t n = 0;

    while (n < max && v[n] != NULL)
        n++;
    return n;
}

/* to_object - a STORE_OBJECT viewing t */
static STORE_OBJECT to_object(const TOBJ *t)
{
    STORE_OBJECT o;

    memset(&o, 0, sizeof(o));
    o.guid = t->guid;
    o.dn = t->dn;
    o.kind = t->kind ? t->kind : STORE_KIND_USER;
    o.flags = t->flags;
    o.addresses = t->addrs;
    o.n_addresses = nlist(t->addrs, 6);
    o.logins = t->logins;
    o.n_logins = nlist(t->logins, 4);
    o.members = t->members;
    o.n_members = nlist(t->members, 8);
    return o;
}

/* put_all - store_sync_put each of n objects */
static void put_all(STORE *st, const TOBJ *objs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        STORE_OBJECT o = to_object(&objs[i]);

        if (store_sync_put(st, &o) != 0)
            fail_msg("put %s: %s", objs[i].guid, store_error(st));
    }
}

/* full - a full sync of source "dir" (type ldap) with objs; counts out */
static void full(STORE *st, const TOBJ *objs, size_t n, const char *cookie, STORE_COUNTS *c)
{
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    put_all(st, objs, n);
    if (store_sync_commit(st, cookie, NULL, c) != 0)
        fail_msg("commit: %s", store_error(st));
}

/* assert_counts - added, changed, removed */
static void assert_counts(const STORE_COUNTS *c, long long a, long long ch, long long r)
{
    if (c->added != a || c->changed != ch || c->removed != r)
        fail_msg("counts +%lld ~%lld -%lld, wanted +%lld ~%lld -%lld",
                 c->added, c->changed, c->removed, a, ch, r);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const TOBJ base_objs[] = {
    {"g-alice", "CN=Alice,OU=Users,DC=example,DC=com", STORE_KIND_USER, 0,
     {"alice@example.com", "a.smith@example.com"}, {"alice", "alice@example.com"}, {NULL}},
    {"g-bob", "CN=Bob,OU=Users,DC=example,DC=com", STORE_KIND_USER, 0,
     {"bob@example.com"}, {"bob"}, {NULL}},
    {"g-room", "CN=Room 1,OU=Rooms,DC=example,DC=com", STORE_KIND_SHARED, 0,
     {"room1@example.com"}, {NULL}, {NULL}},
    {"g-staff", "CN=Staff,OU=Groups,DC=example,DC=com", STORE_KIND_GROUP, STORE_FLAG_INTERNAL_ONLY,
     {"staff@example.com"}, {NULL},
     {"cn=alice,ou=users,dc=example,dc=com", "CN=BOB,OU=Users,DC=Example,DC=Com",
      "CN=Not Mail Enabled,OU=Users,DC=example,DC=com", "CN=Sales,OU=Groups,DC=example,DC=com",
      "CN=Alice,OU=Users,DC=example,DC=com"}},
    {"g-sales", "CN=Sales,OU=Groups,DC=example,DC=com", STORE_KIND_GROUP, 0,
     {"sales@example.com"}, {NULL}, {"CN=Room 1,OU=Rooms,DC=example,DC=com"}},
};

static int setup(void **state)
{
    snprintf(test_path, sizeof(test_path), "%s/store-%d.db", test_dir, ++test_seq);
    return 0;
}

static int group_setup(void **state)
{
    snprintf(test_dir, sizeof(test_dir), "/tmp/test_store_sync.XXXXXX");
    if (mkdtemp(test_dir) == NULL)
        return -1;
    log_init("test_store_sync", 0, 0);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[300];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A full sync into an empty store: every address found, with its object. */
static void test_full_empty(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    STORE_SYNC_STATE ss;

    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    put_all(st, base_objs, N(base_objs));
    assert_int_equal(store_sync_diff(st, &c), 0);
    assert_counts(&c, 6, 0, 0);
    assert_int_equal(c.kept, 0);
    assert_int_equal(store_sync_diff(st, &c), 0);       /* again: the same */
    assert_counts(&c, 6, 0, 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_sync_commit(st, "cookie-1", "dc-1", &c), 0);
    assert_counts(&c, 6, 0, 0);

    assert_int_equal(store_rcpt_get(st, "a.smith@example.com", &r), 1);
    assert_string_equal(r.kind, STORE_KIND_USER);
    assert_string_equal(r.source, "dir");
    assert_string_equal(r.dn, "CN=Alice,OU=Users,DC=example,DC=com");
    assert_string_equal(r.guid, "g-alice");
    assert_true(r.last_seen > 0);
    assert_int_equal(r.flags, 0);
    assert_int_equal(store_rcpt_get(st, "staff@example.com", &r), 1);
    assert_string_equal(r.kind, STORE_KIND_GROUP);
    assert_int_equal(r.flags, STORE_FLAG_INTERNAL_ONLY);
    assert_int_equal(store_rcpt_get(st, "room1@example.com", &r), 1);
    assert_string_equal(r.kind, STORE_KIND_SHARED);
    assert_string_equal(r.guid, "g-room");
    assert_int_equal(store_rcpt_get(st, "nobody@example.com", &r), 0);

    assert_string_equal(raw_text("SELECT type, cookie, invocation_id, last_success = last_run, "
                                 "last_success > 0 FROM source WHERE name = 'dir'"),
                        "ldap|cookie-1|dc-1|1|1");
    assert_string_equal(raw_text("SELECT mode, added, changed, removed, outcome FROM sync_run"),
                        "full|6|0|0|ok");
    assert_int_equal(raw_int("SELECT count(*) FROM object"), 5);
    assert_string_equal(raw_text("SELECT l.name FROM login l JOIN object o ON o.id = l.object_id "
                                 "ORDER BY o.guid, l.name"),
                        "alice;alice@example.com;bob");
    assert_int_equal(store_sync_state_get(st, "dir", &ss), 1);
    assert_string_equal(ss.cookie, "cookie-1");
    assert_string_equal(ss.invocation_id, "dc-1");
    assert_true(ss.last_success > 0);
    store_sync_state_free(&ss);
    store_sync_state_free(&ss);                 /* twice is harmless */
    store_sync_state_free(NULL);
    store_close(st);
}

/* member_list - "group>member;..." of the source's memberships, by guid */
static const char *member_list(void)
{
    return raw_text("SELECT g.guid || '>' || m.guid FROM member x JOIN object g ON g.id = x.group_id "
                    "JOIN object m ON m.id = x.member_id ORDER BY 1");
}

/* claim_list - the claim table as "address<claimant guid" */
static const char *claim_list(void)
{
    return raw_text("SELECT c.address || '<' || o.guid FROM claim c JOIN object o ON o.id = c.object_id "
                    "ORDER BY 1");
}

/* Groups: members by DN in any case, unknown DNs dropped, nesting stored as direct membership. */
static void test_groups(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    TOBJ objs[N(base_objs)];

    full(st, base_objs, N(base_objs), NULL, &c);
    assert_string_equal(member_list(), "g-sales>g-room;g-staff>g-alice;g-staff>g-bob;g-staff>g-sales");

    /* Bob leaves Staff, Room 1 joins it; one member DN given twice in two cases. */
    memcpy(objs, base_objs, sizeof(objs));
    objs[3].members[1] = "CN=Room 1,OU=Rooms,DC=example,DC=com";
    objs[3].members[2] = "cn=room 1,ou=rooms,dc=example,dc=com";
    count_writes_on();
    full(st, objs, N(objs), NULL, &c);
    assert_counts(&c, 0, 0, 0);
    assert_string_equal(member_list(), "g-sales>g-room;g-staff>g-alice;g-staff>g-room;g-staff>g-sales");
    assert_string_equal(writes(), "DELETE member|1;INSERT member|1");

    /* A group whose members are all gone. */
    objs[4].members[0] = NULL;
    full(st, objs, N(objs), NULL, &c);
    assert_string_equal(member_list(), "g-staff>g-alice;g-staff>g-room;g-staff>g-sales");
    assert_string_equal(writes(), "DELETE member|1");
    store_close(st);
}

/* A re-sync of the same directory writes nothing but the run. */
static void test_resync_unchanged(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    TOBJ objs[N(base_objs)];

    full(st, base_objs, N(base_objs), "c1", &c);
    count_writes_on();
    raw_exec("UPDATE object SET last_seen = 1; UPDATE recipient SET last_seen = 1; DELETE FROM writes");

    /* The same objects in another order, names in other orders, a repeated put. */
    for (size_t i = 0; i < N(base_objs); i++)
        objs[i] = base_objs[N(base_objs) - 1 - i];
    objs[1].members[0] = "CN=Alice,OU=Users,DC=example,DC=com";     /* Staff's list shuffled */
    objs[1].members[4] = "cn=alice,ou=users,dc=example,dc=com";
    objs[4].logins[0] = "alice@example.com";                        /* Alice's logins swapped */
    objs[4].logins[1] = "alice";
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    put_all(st, objs, N(objs));
    put_all(st, objs + 2, 1);
    assert_int_equal(store_sync_commit(st, "c2", NULL, &c), 0);
    assert_counts(&c, 0, 0, 0);
    assert_int_equal(c.kept, 6);
    assert_string_equal(writes(), "");
    assert_int_equal(raw_int("SELECT count(*) FROM object WHERE last_seen <> 1")
                     + raw_int("SELECT count(*) FROM recipient WHERE last_seen <> 1"), 0);
    assert_string_equal(raw_text("SELECT cookie FROM source WHERE name = 'dir'"), "c2");
    assert_int_equal(raw_int("SELECT count(*) FROM sync_run WHERE outcome = 'ok'"), 2);
    store_close(st);
}

/* A rename keeps the object (id, memberships); addresses and kinds are diffed. */
static void test_rename(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    TOBJ objs[N(base_objs)];
    long long alice = 0;

    full(st, base_objs, N(base_objs), NULL, &c);
    alice = raw_int("SELECT id FROM object WHERE guid = 'g-alice'");
    memcpy(objs, base_objs, sizeof(objs));
    /* Alice: new DN, a.smith@ replaced by alice.jones@; Staff lists her new DN. */
    objs[0].dn = "CN=Alice Jones,OU=Users,DC=example,DC=com";
    objs[0].addrs[1] = "alice.jones@example.com";
    objs[3].members[0] = "CN=Alice Jones,OU=Users,DC=example,DC=com";
    objs[3].members[4] = NULL;
    /* Room 1 becomes a user: its address changes kind. */
    objs[2].kind = STORE_KIND_USER;
    count_writes_on();
    full(st, objs, N(objs), NULL, &c);
    assert_counts(&c, 1, 1, 1);
    assert_int_equal(c.kept, 4);
    assert_int_equal(raw_int("SELECT id FROM object WHERE guid = 'g-alice'"), alice);
    assert_int_equal(store_rcpt_get(st, "a.smith@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "alice.jones@example.com", &r), 1);
    assert_string_equal(r.dn, "CN=Alice Jones,OU=Users,DC=example,DC=com");
    assert_int_equal(store_rcpt_get(st, "alice@example.com", &r), 1);
    assert_string_equal(r.dn, "CN=Alice Jones,OU=Users,DC=example,DC=com");
    assert_string_equal(r.guid, "g-alice");
    assert_int_equal(store_rcpt_get(st, "room1@example.com", &r), 1);
    assert_string_equal(r.kind, STORE_KIND_USER);
    assert_string_equal(member_list(), "g-sales>g-room;g-staff>g-alice;g-staff>g-bob;g-staff>g-sales");
    assert_string_equal(writes(), "DELETE recipient|1;INSERT recipient|1;UPDATE object|2;UPDATE recipient|1");
    store_close(st);
}

/* An address moving from one object to another is a change of owner. */
static void test_address_moves(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    TOBJ objs[N(base_objs)];

    full(st, base_objs, N(base_objs), NULL, &c);
    memcpy(objs, base_objs, sizeof(objs));
    objs[0].addrs[1] = NULL;                            /* Alice gives up a.smith@ */
    objs[1].addrs[1] = "a.smith@example.com";           /* to Bob */
    full(st, objs, N(objs), NULL, &c);
    assert_counts(&c, 0, 1, 0);
    assert_int_equal(store_rcpt_get(st, "a.smith@example.com", &r), 1);
    assert_string_equal(r.guid, "g-bob");
    assert_string_equal(r.dn, "CN=Bob,OU=Users,DC=example,DC=com");

    /* Bob goes, and his address moves to a new object in the same pull. */
    objs[1].guid = "g-robert";
    full(st, objs, N(objs), NULL, &c);
    assert_counts(&c, 0, 2, 0);
    assert_int_equal(store_rcpt_get(st, "bob@example.com", &r), 1);
    assert_string_equal(r.guid, "g-robert");
    assert_int_equal(raw_int("SELECT count(*) FROM object WHERE guid = 'g-bob'"), 0);
    store_close(st);
}

/* Two objects claiming one address: the lowest guid keeps it, whatever the order. */
static void test_conflict(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    TOBJ objs[3] = {
        {"g-2", "CN=Two", NULL, 0, {"shared@example.com", "two@example.com"}, {NULL}, {NULL}},
        {"g-1", "CN=One", NULL, 0, {"one@example.com", "shared@example.com"}, {NULL}, {NULL}},
        {"g-3", "CN=Three", NULL, 0, {"shared@example.com"}, {NULL}, {NULL}},
    };
    TOBJ swapped[3] = {objs[2], objs[1], objs[0]};

    full(st, objs, 3, NULL, &c);
    assert_counts(&c, 3, 0, 0);
    assert_int_equal(store_rcpt_get(st, "shared@example.com", &r), 1);
    assert_string_equal(r.guid, "g-1");
    full(st, swapped, 3, NULL, &c);
    assert_counts(&c, 0, 0, 0);
    assert_int_equal(store_rcpt_get(st, "shared@example.com", &r), 1);
    assert_string_equal(r.guid, "g-1");
    /* g-1 lets go: the next lowest takes it. */
    objs[1].addrs[1] = NULL;
    full(st, objs, 3, NULL, &c);
    assert_counts(&c, 0, 1, 0);
    assert_int_equal(store_rcpt_get(st, "shared@example.com", &r), 1);
    assert_string_equal(r.guid, "g-2");

    /* One guid put twice: the later put wins, whole (DN, kind, addresses). */
    {
        TOBJ again = {"g-3", NULL, STORE_KIND_CONTACT, 0, {"three@example.com"}, {NULL}, {NULL}};

        assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
        put_all(st, objs, 3);
        put_all(st, &again, 1);
        assert_int_equal(store_sync_commit(st, NULL, NULL, &c), 0);
    }
    assert_counts(&c, 1, 0, 0);
    assert_int_equal(store_rcpt_get(st, "three@example.com", &r), 1);
    assert_string_equal(r.kind, STORE_KIND_CONTACT);
    assert_string_equal(r.dn, "");
    assert_int_equal(raw_int("SELECT count(*) FROM object WHERE guid = 'g-3'"), 1);
    store_close(st);
}

/* Objects not in the pull go, with their addresses, logins and memberships. */
static void test_remove_objects(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    TOBJ objs[N(base_objs)];
    TOBJ other[1] = {{"g-x", "CN=X", NULL, 0, {"x@example.org"}, {"x"}, {NULL}}};

    full(st, base_objs, N(base_objs), NULL, &c);
    /* Another source's rows are not this source's business. */
    assert_int_equal(store_sync_begin(st, "other", "ldap"), 0);
    put_all(st, other, 1);
    assert_int_equal(store_sync_commit(st, NULL, NULL, &c), 0);

    memcpy(objs, base_objs + 1, 3 * sizeof(*objs));    /* Alice and Sales gone */
    full(st, objs, 3, NULL, &c);
    assert_counts(&c, 0, 0, 3);
    assert_int_equal(store_rcpt_get(st, "alice@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "a.smith@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "bob@example.com", &r), 1);
    assert_int_equal(raw_int("SELECT count(*) FROM login l JOIN object o ON o.id = l.object_id "
                             "WHERE o.guid = 'g-alice'"), 0);
    assert_int_equal(raw_int("SELECT count(*) FROM login"), 2);         /* bob, x */
    assert_string_equal(member_list(), "g-staff>g-bob");

    /* An empty pull (forced) empties the source, and only it. */
    full(st, NULL, 0, NULL, &c);
    assert_counts(&c, 0, 0, 3);
    assert_int_equal(raw_int("SELECT count(*) FROM object"), 1);
    assert_int_equal(raw_int("SELECT count(*) FROM recipient"), 1);
    assert_int_equal(store_rcpt_get(st, "x@example.org", &r), 1);
    store_close(st);
}

/* Logins are sets per object: added, removed, unchanged rows untouched. */
static void test_logins(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    TOBJ objs[N(base_objs)];

    full(st, base_objs, N(base_objs), NULL, &c);
    memcpy(objs, base_objs, sizeof(objs));
    objs[0].logins[1] = "asmith";               /* alice@example.com -> asmith */
    objs[1].logins[0] = NULL;                   /* Bob has none now */
    objs[2].logins[0] = "room1";                /* Room 1 gets one */
    objs[2].logins[1] = "room1";                /* (repeated) */
    count_writes_on();
    full(st, objs, N(objs), NULL, &c);
    assert_counts(&c, 0, 0, 0);
    assert_string_equal(raw_text("SELECT o.guid || ':' || l.name FROM login l JOIN object o "
                                 "ON o.id = l.object_id ORDER BY 1"),
                        "g-alice:alice;g-alice:asmith;g-room:room1");
    assert_string_equal(writes(), "DELETE login|2;INSERT login|2");
    store_close(st);
}

/* Refuse applies nothing and records the run; abort applies and records nothing. */
static void test_refuse_abort(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    STORE_SYNC_STATE ss;
    TOBJ one[1] = {{"g-new", "CN=New", NULL, 0, {"new@example.com"}, {NULL}, {NULL}}};

    full(st, base_objs, N(base_objs), "c1", &c);
    raw_exec("UPDATE source SET last_success = 1000, last_run = 1000 WHERE name = 'dir'");

    /* Refused after a diff (the write lock held). */
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    put_all(st, one, 1);
    assert_int_equal(store_sync_diff(st, &c), 0);
    assert_counts(&c, 1, 0, 6);
    assert_int_equal(store_sync_refuse(st, "refused", "would remove 6 of 6 recipients", &c), 0);
    assert_int_equal(store_rcpt_get(st, "new@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "alice@example.com", &r), 1);
    assert_string_equal(raw_text("SELECT mode, added, removed, outcome, message FROM sync_run "
                                 "ORDER BY id DESC LIMIT 1"),
                        "full|1|6|refused|would remove 6 of 6 recipients");
    assert_string_equal(raw_text("SELECT last_success = 1000, last_run > 1000, cookie FROM source "
                                 "WHERE name = 'dir'"), "1|1|c1");
    assert_int_equal(store_static_add(st, "postmaster@example.com"), 1);     /* lock released */

    /* Refused without a diff, counts NULL; a new source is created to hold the run. */
    assert_int_equal(store_sync_begin(st, "fresh", "ldap"), 0);
    put_all(st, one, 1);
    assert_int_equal(store_sync_refuse(st, "failed", "connection lost", NULL), 0);
    assert_string_equal(raw_text("SELECT s.last_success IS NULL, r.outcome, r.message FROM source s "
                                 "JOIN sync_run r ON r.source_id = s.id WHERE s.name = 'fresh'"),
                        "1|failed|connection lost");

    /* Aborted, before and after a diff: nothing at all. */
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    put_all(st, one, 1);
    store_sync_abort(st);
    store_sync_abort(st);                       /* twice is harmless */
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    put_all(st, one, 1);
    assert_int_equal(store_sync_diff(st, &c), 0);
    store_sync_abort(st);
    assert_int_equal(store_rcpt_get(st, "new@example.com", &r), 0);
    assert_int_equal(raw_int("SELECT count(*) FROM sync_run"), 3);
    assert_int_equal(store_sync_state_get(st, "dir", &ss), 1);
    assert_string_equal(ss.cookie, "c1");
    assert_int_equal(ss.last_success, 1000);
    store_sync_state_free(&ss);
    assert_int_equal(store_static_add(st, "abuse@example.com"), 1);          /* not locked */
    store_close(st);
}

/* Misuse is an error with a reason, and leaves the handle usable. */
static void test_misuse(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_OBJECT o;
    TOBJ bad[1] = {{"g-bad", "CN=Bad", NULL, 0, {"ok@example.com", ""}, {NULL}, {NULL}}};
    STORE_SYNC_STATE ss;

    o = to_object(&base_objs[0]);
    assert_int_equal(store_sync_put(st, &o), -1);                   /* no begin */
    assert_int_equal(store_sync_diff(st, &c), -1);
    assert_int_equal(store_sync_commit(st, NULL, NULL, &c), -1);
    assert_int_equal(store_sync_refuse(st, "refused", "", NULL), -1);
    assert_int_equal(store_delta_put(st, &o), -1);
    assert_int_equal(store_delta_commit(st, NULL, NULL, &c), -1);
    store_sync_abort(st);
    store_delta_abort(st);
    store_sync_abort(NULL);
    assert_int_equal(store_sync_begin(st, "static", "ldap"), -1);   /* static's type */
    assert_non_null(strstr(store_error(st), "static"));
    assert_int_equal(store_sync_begin(st, "dir", "static"), -1);
    assert_int_equal(store_sync_begin(st, "", "ldap"), -1);

    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), -1);      /* nested */
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), -1);
    assert_int_equal(store_replace_begin(st, "imp", "import"), -1);
    assert_int_equal(store_delta_put(st, &o), -1);                  /* wrong kind of pull */
    o.guid = "";
    assert_int_equal(store_sync_put(st, &o), -1);
    o = to_object(&base_objs[0]);
    o.kind = NULL;
    assert_int_equal(store_sync_put(st, &o), -1);
    o = to_object(&bad[0]);
    assert_int_equal(store_sync_put(st, &o), -1);
    assert_non_null(strstr(store_error(st), "empty address"));
    o = to_object(&base_objs[0]);
    assert_int_equal(store_sync_put(st, &o), 0);
    assert_int_equal(store_sync_diff(st, &c), 0);
    assert_int_equal(store_sync_put(st, &o), -1);                   /* after the diff */
    assert_int_equal(store_sync_commit(st, NULL, NULL, &c), 0);
    assert_counts(&c, 2, 0, 0);

    /* A source of another type is refused at begin. */
    assert_int_equal(store_sync_begin(st, "dir", "graph"), -1);
    assert_non_null(strstr(store_error(st), "type ldap"));
    assert_int_equal(store_sync_state_get(st, "nosuch", &ss), 0);
    assert_null(ss.cookie);
    /* A replacement and a sync take turns on one handle. */
    assert_int_equal(store_replace_begin(st, "imp", "import"), 0);
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), -1);
    assert_int_equal(store_replace_add(st, "imported@example.com", STORE_KIND_IMPORTED), 0);
    assert_int_equal(store_replace_commit(st, NULL), 0);
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    store_sync_abort(st);
    store_close(st);
}

/* The cookie is stored with the data, and a failed commit keeps the old one. */
static void test_cookie(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_SYNC_STATE ss;
    STORE_RCPT r;
    TOBJ objs[N(base_objs)];

    assert_int_equal(store_sync_state_get(st, "dir", &ss), 0);
    full(st, base_objs, N(base_objs), "usn:100", &c);
    assert_int_equal(store_sync_state_get(st, "dir", &ss), 1);
    assert_string_equal(ss.cookie, "usn:100");
    assert_null(ss.invocation_id);
    store_sync_state_free(&ss);

    /* The commit fails at its very end (the run record): nothing of it stays. */
    memcpy(objs, base_objs, sizeof(objs));
    objs[1].addrs[0] = "robert@example.com";
    objs[1].logins[0] = "robert";
    objs[3].members[1] = NULL;
    raw_exec("CREATE TRIGGER boom BEFORE INSERT ON sync_run BEGIN SELECT RAISE(ABORT, 'boom'); END");
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    put_all(st, objs, N(objs));
    assert_int_equal(store_sync_commit(st, "usn:200", "dc-2", &c), -1);
    assert_non_null(strstr(store_error(st), "boom"));
    assert_int_equal(store_sync_commit(st, "usn:200", "dc-2", &c), -1);         /* it is over */
    assert_int_equal(store_rcpt_get(st, "robert@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "bob@example.com", &r), 1);
    assert_int_equal(raw_int("SELECT count(*) FROM login WHERE name = 'bob'"), 1);
    assert_string_equal(member_list(), "g-sales>g-room;g-staff>g-alice;g-staff>g-bob;g-staff>g-sales");
    assert_int_equal(store_sync_state_get(st, "dir", &ss), 1);
    assert_string_equal(ss.cookie, "usn:100");
    assert_null(ss.invocation_id);
    store_sync_state_free(&ss);

    /* The same for an incremental pull. */
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    {
        STORE_OBJECT o = to_object(&objs[1]);

        assert_int_equal(store_delta_put(st, &o), 0);
    }
    assert_int_equal(store_delta_del(st, "g-alice"), 0);
    assert_int_equal(store_delta_commit(st, "usn:300", NULL, &c), -1);
    assert_int_equal(store_rcpt_get(st, "robert@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "alice@example.com", &r), 1);
    raw_exec("DROP TRIGGER boom");
    assert_int_equal(store_sync_state_get(st, "dir", &ss), 1);
    assert_string_equal(ss.cookie, "usn:100");
    store_sync_state_free(&ss);
    full(st, objs, N(objs), "usn:400", &c);
    assert_int_equal(store_sync_state_get(st, "dir", &ss), 1);
    assert_string_equal(ss.cookie, "usn:400");
    store_sync_state_free(&ss);
    assert_int_equal(store_rcpt_get(st, "robert@example.com", &r), 1);
    store_close(st);
}

/* delta - an incremental pull of puts (TOBJ) and deletions (guid, TOBJ NULL) */
typedef struct dop {
    const TOBJ *put;
    const char *del;
} DOP;

static void delta(STORE *st, const DOP *ops, size_t n, const char *cookie, STORE_COUNTS *c)
{
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    for (size_t i = 0; i < n; i++) {
        if (ops[i].put) {
            STORE_OBJECT o = to_object(ops[i].put);

            assert_int_equal(store_delta_put(st, &o), 0);
        } else {
            assert_int_equal(store_delta_del(st, ops[i].del), 0);
        }
    }
    if (store_delta_commit(st, cookie, NULL, c) != 0)
        fail_msg("delta commit: %s", store_error(st));
}

/* Incremental pulls: put, replace, delete by guid; members resolved against store and pull. */
static void test_delta(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    STORE_SYNC_STATE ss;
    long long bob;
    TOBJ carol = {"g-carol", "CN=Carol,OU=Users,DC=example,DC=com", NULL, 0,
                  {"carol@example.com"}, {"carol"}, {NULL}};
    TOBJ bob2 = {"g-bob", "CN=Robert,OU=Users,DC=example,DC=com", NULL, 0,
                 {"robert@example.com", "bob@example.com"}, {"robert"}, {NULL}};
    TOBJ team = {"g-team", "CN=Team,OU=Groups,DC=example,DC=com", STORE_KIND_GROUP, 0,
                 {"team@example.com"}, {NULL},
                 {"CN=CAROL,OU=Users,DC=example,DC=com", "CN=Robert,OU=Users,DC=example,DC=com",
                  "CN=Staff,OU=Groups,DC=example,DC=com", "CN=Ghost,DC=example,DC=com"}};
    TOBJ ghost = {"g-ghost", "CN=Ghost,DC=example,DC=com", NULL, 0, {"ghost@example.com"}, {NULL}, {NULL}};
    DOP ops1[] = {
        {&team, NULL},                          /* before its members in the pull */
        {&carol, NULL},
        {&bob2, NULL},
        {NULL, "g-room"},
        {NULL, "g-unknown"},                    /* no error */
        {&ghost, NULL},
        {NULL, "g-ghost"},                      /* put, then deleted: gone */
    };

    full(st, base_objs, N(base_objs), "c1", &c);
    bob = raw_int("SELECT id FROM object WHERE guid = 'g-bob'");
    count_writes_on();
    delta(st, ops1, N(ops1), "c2", &c);
    /* + carol, robert, team; - room1 (ghost never stored) */
    assert_counts(&c, 3, 0, 1);
    assert_int_equal(store_rcpt_get(st, "carol@example.com", &r), 1);
    assert_string_equal(r.guid, "g-carol");
    assert_int_equal(store_rcpt_get(st, "robert@example.com", &r), 1);
    assert_string_equal(r.dn, "CN=Robert,OU=Users,DC=example,DC=com");
    assert_int_equal(raw_int("SELECT id FROM object WHERE guid = 'g-bob'"), bob);
    assert_int_equal(store_rcpt_get(st, "room1@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "ghost@example.com", &r), 0);
    assert_string_equal(member_list(), "g-staff>g-alice;g-staff>g-bob;g-staff>g-sales;"
                        "g-team>g-bob;g-team>g-carol;g-team>g-staff");
    assert_string_equal(raw_text("SELECT l.name FROM login l JOIN object o ON o.id = l.object_id "
                                 "WHERE o.guid IN ('g-bob', 'g-carol') ORDER BY 1"), "carol;robert");
    assert_string_equal(raw_text("SELECT mode, added, changed, removed, outcome FROM sync_run "
                                 "ORDER BY id DESC LIMIT 1"), "incremental|3|0|1|ok");
    assert_int_equal(store_sync_state_get(st, "dir", &ss), 1);
    assert_string_equal(ss.cookie, "c2");
    store_sync_state_free(&ss);
    writes();

    /* The same again changes nothing; a kind change does; an address another object holds is only claimed. */
    delta(st, ops1, 3, "c3", &c);
    assert_counts(&c, 0, 0, 0);
    assert_string_equal(writes(), "");
    carol.kind = STORE_KIND_CONTACT;
    carol.addrs[1] = "alice@example.com";
    carol.logins[0] = NULL;
    {
        DOP ops2[] = {{&carol, NULL}};

        delta(st, ops2, 1, "c4", &c);
    }
    assert_counts(&c, 0, 1, 0);
    assert_int_equal(store_rcpt_get(st, "alice@example.com", &r), 1);
    assert_string_equal(r.guid, "g-alice");
    assert_string_equal(r.kind, STORE_KIND_USER);
    assert_string_equal(writes(), "DELETE login|1;UPDATE object|1;UPDATE recipient|1");
    assert_string_equal(claim_list(), "alice@example.com<g-carol");

    /* A deleted group takes its memberships; a deleted member leaves its groups. */
    {
        DOP ops3[] = {{NULL, "g-staff"}, {NULL, "g-carol"}, {&carol, NULL}, {NULL, "g-carol"}};

        delta(st, ops3, N(ops3), "c5", &c);
    }
    assert_counts(&c, 0, 0, 2);                 /* staff@, carol@ (alice@ stays alice's) */
    assert_string_equal(claim_list(), "");
    assert_string_equal(member_list(), "g-team>g-bob");
    store_close(st);
}

/* Lines the store logged (warnings and notes), one per line, for the collision tests. */
static char log_lines[8192];

/* log_keep - log hook: keep collision lines */
static void log_keep(int prio, const char *line)
{
    (void) prio;
    if (strstr(line, "collision") != NULL)
        snprintf(log_lines + strlen(log_lines), sizeof(log_lines) - strlen(log_lines), "%s\n", line);
}

/* logged - how many kept lines contain each of the NULL-terminated words; then forget them */
static int logged(const char *word, ...)
{
    int n = 0;

    for (char *line = log_lines, *end; *line; line = end + 1) {
        va_list ap;
        const char *w;
        int all = 1;

        end = strchr(line, '\n');
        *end = 0;
        va_start(ap, word);
        for (w = word; w != NULL && all; w = va_arg(ap, const char *))
            all = strstr(line, w) != NULL;
        va_end(ap);
        n += all;
        *end = '\n';
    }
    return n;
}

/*
 * A directory state for the collision tests: a full pull puts them all;
 * an incremental pull puts them all (what did not change is a no-op) and
 * deletes the guids of prev that are gone.
 */
static void pull_state(STORE *st, int incremental, const TOBJ *objs, size_t n, const TOBJ *prev,
                       size_t nprev)
{
    STORE_COUNTS c;

    if (!incremental) {
        full(st, objs, n, NULL, &c);
        return;
    }
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    for (size_t i = 0; i < n; i++) {
        STORE_OBJECT o = to_object(&objs[i]);

        assert_int_equal(store_delta_put(st, &o), 0);
    }
    for (size_t i = 0; i < nprev; i++) {
        size_t j;

        for (j = 0; j < n && strcmp(prev[i].guid, objs[j].guid) != 0; j++)
            ;
        if (j == n)
            assert_int_equal(store_delta_del(st, prev[i].guid), 0);
    }
    if (store_delta_commit(st, NULL, NULL, &c) != 0)
        fail_msg("delta commit: %s", store_error(st));
}

/* holder - the guid store_rcpt_get answers with, and its flags, as "guid/flags" */
static const char *holder(STORE *st, const char *address)
{
    static char buf[128];
    STORE_RCPT r;
    int rc = store_rcpt_get(st, address, &r);

    if (rc != 1)
        snprintf(buf, sizeof(buf), "(%d)", rc);
    else
        snprintf(buf, sizeof(buf), "%s/%d", r.guid, r.flags);
    return buf;
}

/*
 * One address, two objects: the first holder keeps it (and its login)
 * while it carries it, a later claimant gets neither, an internal-only
 * group's restriction holds whoever holds the address; each collision is
 * logged once, when it begins and when it ends. Full and incremental
 * pulls decide alike, from the same directory history.
 */
static void test_collision_modes(void **state)
{
    static const TOBJ s1[] = {
        {"g-z-user", "CN=Zed,DC=example,DC=com", STORE_KIND_USER, 0,
         {"team@example.com", "zed@example.com"}, {"zed"}, {NULL}},
        {"g-y-alice", "CN=Alice,DC=example,DC=com", STORE_KIND_USER, 0,
         {"alice@example.com"}, {"alice"}, {NULL}},
    };
    /* A restricted group and a second user carry addresses already held (lower guids). */
    static const TOBJ s2[] = {
        s1[0], s1[1],
        {"g-a-staff", "CN=Staff,DC=example,DC=com", STORE_KIND_GROUP, STORE_FLAG_INTERNAL_ONLY,
         {"team@example.com"}, {NULL}, {NULL}},
        {"g-b-mallory", "CN=Mallory,DC=example,DC=com", STORE_KIND_USER, 0,
         {"alice@example.com", "mallory@example.com"}, {"mallory"}, {NULL}},
    };
    /* Zed lets go of team@: the group takes it. */
    static const TOBJ s3[] = {
        {"g-z-user", "CN=Zed,DC=example,DC=com", STORE_KIND_USER, 0,
         {"zed@example.com"}, {"zed"}, {NULL}},
        s2[1], s2[2], s2[3],
    };
    /* Alice goes: Mallory, the one left carrying alice@, takes it. */
    static const TOBJ s4[] = {s3[0], s3[2], s3[3]};

    for (int incremental = 0; incremental < 2; incremental++) {
        STORE *st;

        snprintf(test_path, sizeof(test_path), "%s/store-%d.db", test_dir, ++test_seq);
        st = open_new();
        log_lines[0] = 0;
        log_set_hook(log_keep);
        pull_state(st, incremental, s1, N(s1), NULL, 0);
        pull_state(st, incremental, s2, N(s2), s1, N(s1));
        assert_string_equal(holder(st, "team@example.com"), "g-z-user/1");
        assert_string_equal(holder(st, "alice@example.com"), "g-y-alice/0");
        assert_string_equal(claim_list(), "alice@example.com<g-b-mallory;team@example.com<g-a-staff");
        assert_int_equal(store_login_owns(st, "zed", "team@example.com"), 1);
        assert_int_equal(store_login_owns(st, "alice", "alice@example.com"), 1);
        assert_int_equal(store_login_owns(st, "mallory", "alice@example.com"), 0);
        assert_int_equal(store_login_owns(st, "mallory", "mallory@example.com"), 1);
        assert_int_equal(logged("address collision: team@example.com is held by \"CN=Zed,DC=example,DC=com\" "
                                "(guid g-z-user, object ", "of source dir and also claimed by "
                                "\"CN=Staff,DC=example,DC=com\" (guid g-a-staff, object ",
                                "which does not get it; the address stays restricted", NULL), 1);
        assert_int_equal(logged("address collision: alice@example.com is held by", "g-y-alice",
                                "claimed by", "g-b-mallory", NULL), 1);
        assert_int_equal(logged("collision", NULL), 2);
        log_lines[0] = 0;

        /* The same again: nothing written, nothing told. */
        count_writes_on();
        pull_state(st, incremental, s2, N(s2), s2, N(s2));
        assert_string_equal(writes(), "");
        assert_int_equal(logged("collision", NULL), 0);

        pull_state(st, incremental, s3, N(s3), s2, N(s2));
        assert_string_equal(holder(st, "team@example.com"), "g-a-staff/1");
        assert_string_equal(claim_list(), "alice@example.com<g-b-mallory");
        assert_int_equal(store_login_owns(st, "zed", "team@example.com"), 0);
        assert_int_equal(logged("collision over: team@example.com", "g-a-staff", "holds it now", NULL), 1);
        assert_int_equal(logged("collision", NULL), 1);
        log_lines[0] = 0;

        pull_state(st, incremental, s4, N(s4), s3, N(s3));
        assert_string_equal(holder(st, "alice@example.com"), "g-b-mallory/0");
        assert_string_equal(claim_list(), "");
        assert_int_equal(store_login_owns(st, "mallory", "alice@example.com"), 1);
        assert_int_equal(logged("collision over: alice@example.com", "g-b-mallory", "holds it now", NULL), 1);
        log_set_hook(NULL);
        store_close(st);
    }
}

/*
 * The other order: a user carries an address a restricted group holds.
 * The group keeps it and the restriction, the user's login gets nothing;
 * an older static row or an import of the address answers lookups but
 * does not lift the restriction. Two objects new to an address in one
 * pull, full or incremental, in either order: the lowest guid holds.
 */
static void test_collision_group_first(void **state)
{
    static const TOBJ s1[] = {
        {"g-z-staff", "CN=Staff,DC=example,DC=com", STORE_KIND_GROUP, STORE_FLAG_INTERNAL_ONLY,
         {"staff@example.com"}, {NULL}, {NULL}},
    };
    static const TOBJ s2[] = {
        s1[0],
        {"g-a-user", "CN=Eve,DC=example,DC=com", STORE_KIND_USER, 0,
         {"staff@example.com", "eve@example.com"}, {"eve"}, {NULL}},
    };

    for (int incremental = 0; incremental < 2; incremental++) {
        STORE *st;
        STORE_RCPT r;
        STORE_COUNTS c;

        snprintf(test_path, sizeof(test_path), "%s/store-%d.db", test_dir, ++test_seq);
        st = open_new();
        pull_state(st, incremental, s1, N(s1), NULL, 0);
        pull_state(st, incremental, s2, N(s2), s1, N(s1));
        assert_string_equal(holder(st, "staff@example.com"), "g-z-staff/1");
        assert_string_equal(claim_list(), "staff@example.com<g-a-user");
        assert_int_equal(store_login_owns(st, "eve", "staff@example.com"), 0);
        assert_int_equal(store_login_owns(st, "eve", "eve@example.com"), 1);

        /* A static row (the oldest source) answers, and the restriction stays. */
        assert_int_equal(store_static_add(st, "staff@example.com"), 1);
        assert_int_equal(store_rcpt_get(st, "staff@example.com", &r), 1);
        assert_string_equal(r.source, "static");
        assert_int_equal(r.flags, STORE_FLAG_INTERNAL_ONLY);
        assert_int_equal(store_login_owns(st, "eve", "staff@example.com"), 0);
        assert_int_equal(store_static_del(st, "staff@example.com"), 1);
        /* So does an import of it, older than the directory (a lower source id). */
        raw_exec("INSERT INTO source (id, name, type) VALUES (0, 'old-map', 'import')");
        assert_int_equal(store_replace_begin(st, "old-map", "import"), 0);
        assert_int_equal(store_replace_add(st, "staff@example.com", STORE_KIND_IMPORTED), 0);
        assert_int_equal(store_replace_commit(st, &c), 0);
        assert_int_equal(store_rcpt_get(st, "staff@example.com", &r), 1);
        assert_string_equal(r.source, "old-map");
        assert_int_equal(r.flags, STORE_FLAG_INTERNAL_ONLY);
        /* The user holding it alone, a claim by the group still restricts it. */
        {
            TOBJ swap[2] = {s2[0], s2[1]};

            swap[0].guid = "g-0-staff";         /* the group goes, a new one comes ... */
            pull_state(st, incremental, &swap[1], 1, s2, N(s2));   /* ... after the user alone */
            pull_state(st, incremental, swap, 2, &swap[1], 1);
        }
        assert_string_equal(claim_list(), "staff@example.com<g-0-staff");
        raw_exec("DELETE FROM recipient WHERE source_id = (SELECT id FROM source WHERE name = 'old-map')");
        assert_string_equal(holder(st, "staff@example.com"), "g-a-user/1");
        assert_int_equal(store_login_owns(st, "eve", "staff@example.com"), 1);
        store_close(st);
    }
    /* Both new in one pull, full or incremental: the lowest guid holds, whatever the order. */
    for (int i = 0; i < 4; i++) {
        STORE *st;
        TOBJ both[2] = {s2[1], s1[0]};

        if (i & 2) {
            both[0] = s1[0];
            both[1] = s2[1];
        }
        snprintf(test_path, sizeof(test_path), "%s/store-%d.db", test_dir, ++test_seq);
        st = open_new();
        log_lines[0] = 0;
        log_set_hook(log_keep);
        pull_state(st, i & 1, both, 2, NULL, 0);
        log_set_hook(NULL);
        assert_string_equal(holder(st, "staff@example.com"), "g-a-user/1");
        assert_string_equal(claim_list(), "staff@example.com<g-z-staff");
        assert_int_equal(store_login_owns(st, "eve", "staff@example.com"), 1);
        assert_int_equal(logged("address collision: staff@example.com is held by \"CN=Eve,DC=example,DC=com\"",
                                "claimed by \"CN=Staff,DC=example,DC=com\"", "stays restricted", NULL), 1);
        assert_int_equal(logged("collision", NULL), 1);
        store_close(st);
    }
}

/*
 * The holder lets go of an address in the pull where a newcomer carries
 * it: the claimants (an old one and the newcomer) are equal, the lowest
 * guid takes it, in a full pull and in an incremental one in either order.
 */
static void test_collision_release(void **state)
{
    static const TOBJ before[] = {
        {"g-9", "CN=Holder", STORE_KIND_USER, 0, {"x@example.com", "h@example.com"}, {"holder"}, {NULL}},
        {"g-5", "CN=Old Claimant", STORE_KIND_USER, 0, {"x@example.com"}, {"old"}, {NULL}},
    };
    static const TOBJ after[] = {
        {"g-9", "CN=Holder", STORE_KIND_USER, 0, {"h@example.com"}, {"holder"}, {NULL}},
        before[1],
        {"g-1", "CN=Newcomer", STORE_KIND_USER, 0, {"x@example.com"}, {"new"}, {NULL}},
    };
    const TOBJ reversed[] = {after[2], after[1], after[0]};

    for (int i = 0; i < 3; i++) {
        STORE *st;

        snprintf(test_path, sizeof(test_path), "%s/store-%d.db", test_dir, ++test_seq);
        st = open_new();
        full(st, before, 1, NULL, NULL);
        full(st, before, N(before), NULL, NULL);
        assert_string_equal(holder(st, "x@example.com"), "g-9/0");
        pull_state(st, i > 0, i == 2 ? reversed : after, N(after), before, N(before));
        assert_string_equal(holder(st, "x@example.com"), "g-1/0");
        assert_string_equal(claim_list(), "x@example.com<g-5");
        assert_int_equal(store_login_owns(st, "new", "x@example.com"), 1);
        assert_int_equal(store_login_owns(st, "old", "x@example.com"), 0);
        assert_int_equal(store_login_owns(st, "holder", "x@example.com"), 0);
        store_close(st);
    }
}

/*
 * Two sources, one address: each keeps its row; lookups answer with the
 * older source's, whose object alone passes the sender-login check; the
 * newer source's restricted group still restricts it; told once.
 */
static void test_collision_sources(void **state)
{
    static const TOBJ one[] = {
        {"g-1", "CN=Ann", STORE_KIND_USER, 0, {"ann@example.com"}, {"ann"}, {NULL}},
    };
    static const TOBJ two[] = {
        {"g-0", "CN=Ann Group", STORE_KIND_GROUP, STORE_FLAG_INTERNAL_ONLY, {"ann@example.com"}, {"annex"}, {NULL}},
    };
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;

    full(st, one, 1, NULL, NULL);
    log_lines[0] = 0;
    log_set_hook(log_keep);
    for (int i = 0; i < 2; i++) {
        STORE_OBJECT o = to_object(&two[0]);

        assert_int_equal(store_sync_begin(st, "dir2", "ldap"), 0);
        assert_int_equal(store_sync_put(st, &o), 0);
        assert_int_equal(store_sync_commit(st, NULL, NULL, &c), 0);
    }
    log_set_hook(NULL);
    assert_int_equal(logged("source dir2: address collision: ann@example.com is held by \"CN=Ann\" (guid g-1, "
                            "object 1) of source dir and also by \"CN=Ann Group\" (guid g-0, object 2) of "
                            "source dir2; lookups and the sender-login check go to the first", NULL), 1);
    assert_int_equal(logged("collision", NULL), 1);
    assert_int_equal(store_rcpt_get(st, "ann@example.com", &r), 1);
    assert_string_equal(r.source, "dir");
    assert_int_equal(r.flags, STORE_FLAG_INTERNAL_ONLY);
    assert_int_equal(store_login_owns(st, "ann", "ann@example.com"), 1);
    assert_int_equal(store_login_owns(st, "annex", "ann@example.com"), 0);
    store_close(st);
}

/*
 * A store of schema version 2 (before claims) opens, is migrated, and its
 * rows read as before; the next pull records the collisions it had lost.
 */
static void test_collision_migrate(void **state)
{
    STORE *st = open_new();
    char err[256];
    static const TOBJ objs[] = {
        {"g-2", "CN=Two", STORE_KIND_USER, 0, {"shared@example.com"}, {"two"}, {NULL}},
        {"g-1", "CN=One", STORE_KIND_GROUP, STORE_FLAG_INTERNAL_ONLY, {"shared@example.com"}, {NULL}, {NULL}},
    };

    full(st, objs, 1, NULL, NULL);
    store_close(st);
    raw_exec("DROP TABLE claim; ALTER TABLE domain DROP COLUMN relay_mode; ALTER TABLE source DROP COLUMN settings; "
             "PRAGMA user_version = 2");
    st = store_open(test_path, 0, 200, err, sizeof(err));
    if (st == NULL)
        fail_msg("store_open: %s", err);
    assert_int_equal(raw_int("PRAGMA user_version"), store_schema_version());
    assert_string_equal(holder(st, "shared@example.com"), "g-2/0");
    full(st, objs, 2, NULL, NULL);
    assert_string_equal(holder(st, "shared@example.com"), "g-2/1");
    assert_string_equal(claim_list(), "shared@example.com<g-1");
    store_close(st);
    /* A full pull knows every reference to object, so it may keep foreign keys off (store_sync.c). */
    assert_string_equal(raw_text("SELECT group_concat(r, ' ') FROM (SELECT m.name || '.' || f.\"from\" "
                                 "|| ':' || f.on_delete AS r FROM sqlite_master m, "
                                 "pragma_foreign_key_list(m.name) f WHERE m.type = 'table' "
                                 "AND f.\"table\" = 'object' ORDER BY 1)"),
                        "claim.object_id:CASCADE login.object_id:CASCADE member.group_id:CASCADE "
                        "member.member_id:CASCADE recipient.object_id:CASCADE");
}

/* An aborted or refused incremental pull applies nothing. */
static void test_delta_abort(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    STORE_OBJECT o;
    TOBJ carol = {"g-carol", "CN=Carol", NULL, 0, {"carol@example.com"}, {NULL}, {NULL}};

    full(st, base_objs, N(base_objs), "c1", &c);
    o = to_object(&carol);
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    assert_int_equal(store_delta_put(st, &o), 0);
    assert_int_equal(store_delta_del(st, "g-alice"), 0);
    assert_int_equal(store_delta_del(st, ""), -1);
    assert_int_equal(store_sync_put(st, &o), -1);                   /* wrong kind of pull */
    store_sync_abort(st);                                           /* not this one's */
    store_delta_abort(st);
    store_delta_abort(st);
    assert_int_equal(store_rcpt_get(st, "carol@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "alice@example.com", &r), 1);
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    assert_int_equal(store_delta_put(st, &o), 0);
    assert_int_equal(store_delta_refuse(st, "failed", "DirSync cookie rejected", NULL), 0);
    assert_int_equal(store_rcpt_get(st, "carol@example.com", &r), 0);
    assert_string_equal(raw_text("SELECT mode, outcome, message FROM sync_run ORDER BY id DESC LIMIT 1"),
                        "incremental|failed|DirSync cookie rejected");
    assert_string_equal(raw_text("SELECT cookie FROM source WHERE name = 'dir'"), "c1");
    assert_int_equal(raw_int("SELECT count(*) FROM sync_run"), 2);
    store_close(st);
}

/*
 * An incremental pull whose source's cookie another handle changed
 * meanwhile (a full pull from a second process) applies nothing: its
 * changes may build on what that commit rolled back. From the cookie
 * it started from, it commits.
 */
static void test_delta_cookie_moved(void **state)
{
    STORE *st = open_new(), *other;
    STORE_COUNTS c;
    STORE_RCPT r;
    STORE_OBJECT o;
    char err[256];
    TOBJ carol = {"g-carol", "CN=Carol", NULL, 0, {"carol@example.com"}, {NULL}, {NULL}};

    (void) state;
    full(st, base_objs, N(base_objs), "c1", &c);
    o = to_object(&carol);
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    assert_int_equal(store_delta_expect(st, "c1"), 0);
    assert_int_equal(store_delta_put(st, &o), 0);
    other = store_open(test_path, 0, 200, err, sizeof(err));
    if (other == NULL)
        fail_msg("store_open: %s", err);
    full(other, base_objs, N(base_objs), "c9", &c);         /* committed in between */
    store_close(other);
    assert_int_equal(store_delta_commit(st, "c2", NULL, &c), -1);
    assert_non_null(strstr(store_error(st), "sync state changed during the pull"));
    assert_int_equal(store_rcpt_get(st, "carol@example.com", &r), 0);
    assert_string_equal(raw_text("SELECT cookie FROM source WHERE name = 'dir'"), "c9");

    /* Started from the cookie stored now: applied. */
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    assert_int_equal(store_delta_expect(st, "c9"), 0);
    assert_int_equal(store_delta_put(st, &o), 0);
    assert_int_equal(store_delta_commit(st, "c10", NULL, &c), 0);
    assert_int_equal(store_rcpt_get(st, "carol@example.com", &r), 1);
    assert_string_equal(raw_text("SELECT cookie FROM source WHERE name = 'dir'"), "c10");
    store_close(st);
}

/*
 * store_delta_diff: the pull written under the lock, its counts exactly
 * the commit's (a claimant taking an address is a change), kept set; a
 * refusal rolls it back, keeps the cookie and tells no collision; a
 * commit after a diff applies it and tells them.
 */
static void test_delta_diff(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    STORE_OBJECT o;
    /* Claims bob@example.com, which g-bob holds. */
    TOBJ bob2 = {"g-bob2", "CN=Bob Two", NULL, 0, {"bob@example.com", "bob2@example.com"}, {NULL}, {NULL}};
    long long runs;

    full(st, base_objs, N(base_objs), "c1", &c);
    o = to_object(&bob2);
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    assert_int_equal(store_delta_put(st, &o), 0);
    assert_int_equal(store_delta_commit(st, "c2", NULL, &c), 0);
    assert_counts(&c, 1, 0, 0);

    /* g-bob and g-alice go: bob@ passes to g-bob2 (a change), alice's two addresses are removed. */
    log_lines[0] = 0;
    log_set_hook(log_keep);
    runs = raw_int("SELECT count(*) FROM sync_run");
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    assert_int_equal(store_delta_del(st, "g-bob"), 0);
    assert_int_equal(store_delta_del(st, "g-alice"), 0);
    assert_int_equal(store_delta_diff(st, &c), 0);
    assert_counts(&c, 0, 1, 2);
    assert_int_equal(c.kept, 4);        /* room1, staff, sales, bob2; bob@ is the change */
    assert_int_equal(store_delta_diff(st, &c), 0);     /* again: the same counts */
    assert_counts(&c, 0, 1, 2);
    assert_int_equal(store_delta_refuse(st, "refused", "too much", &c), 0);
    assert_int_equal(logged("collision", NULL), 0);     /* nothing happened: nothing told */
    assert_int_equal(store_rcpt_get(st, "alice@example.com", &r), 1);
    assert_string_equal(holder(st, "bob@example.com"), "g-bob/0");
    assert_string_equal(raw_text("SELECT cookie FROM source WHERE name = 'dir'"), "c2");
    assert_string_equal(raw_text("SELECT mode, outcome, message, added, changed, removed FROM sync_run "
                                 "ORDER BY id DESC LIMIT 1"), "incremental|refused|too much|0|1|2");
    assert_int_equal(raw_int("SELECT count(*) FROM sync_run"), runs + 1);

    /* The same pull, diffed then committed. */
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    assert_int_equal(store_delta_del(st, "g-bob"), 0);
    assert_int_equal(store_delta_del(st, "g-alice"), 0);
    assert_int_equal(store_delta_diff(st, &c), 0);
    assert_int_equal(store_delta_commit(st, "c3", NULL, &c), 0);
    assert_counts(&c, 0, 1, 2);
    assert_int_equal(logged("collision over", "bob@example.com", NULL), 1);
    log_set_hook(NULL);
    assert_int_equal(store_rcpt_get(st, "alice@example.com", &r), 0);
    assert_string_equal(holder(st, "bob@example.com"), "g-bob2/0");
    assert_string_equal(raw_text("SELECT cookie FROM source WHERE name = 'dir'"), "c3");

    /* Nothing removed: kept is not counted (the scan costs), the commit as before. */
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    assert_int_equal(store_delta_diff(st, &c), 0);
    assert_counts(&c, 0, 0, 0);
    assert_int_equal(c.kept, 0);
    store_delta_abort(st);
    assert_int_equal(store_delta_diff(st, &c), -1);    /* no pull in progress */
    store_close(st);
}

/* store_sync_age: the oldest directory source's last success. */
static void test_age(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    long long age = 0;

    assert_int_equal(store_sync_age(st, &age), 0);
    assert_int_equal(age, -1);                  /* only "static" */
    assert_int_equal(store_replace_begin(st, "imp", "import"), 0);
    assert_int_equal(store_replace_commit(st, NULL), 0);
    assert_int_equal(store_sync_age(st, &age), 0);
    assert_int_equal(age, -1);                  /* imports do not count */
    full(st, base_objs, 1, NULL, &c);
    assert_int_equal(store_sync_age(st, &age), 0);
    assert_in_range(age, 0, 5);
    raw_exec("UPDATE source SET last_success = strftime('%s', 'now') - 3600 WHERE name = 'dir'");
    assert_int_equal(store_sync_age(st, &age), 0);
    assert_in_range(age, 3600, 3605);
    /* A second source that never succeeded is as stale as can be. */
    assert_int_equal(store_sync_begin(st, "other", "ldap"), 0);
    assert_int_equal(store_sync_refuse(st, "refused", "empty pull", NULL), 0);
    assert_int_equal(store_sync_age(st, &age), 0);
    assert_true(age > 1000000000LL);
    raw_exec("DROP TABLE sync_run; DROP TABLE source");
    assert_int_equal(store_sync_age(st, &age), -1);
    assert_non_null(strstr(store_error(st), "source"));
    store_close(st);
}

/* SQLite failures are -1 with a reason, and apply nothing. */
static void test_failures(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    sqlite3 *db;
    TOBJ objs[N(base_objs)];

    full(st, base_objs, N(base_objs), "c1", &c);
    memcpy(objs, base_objs, sizeof(objs));
    objs[1].addrs[0] = "robert@example.com";

    /* Another writer holds the lock past the busy timeout: at diff, and at commit. */
    assert_int_equal(sqlite3_open(test_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);        /* collecting needs no lock */
    put_all(st, objs, N(objs));
    assert_int_equal(store_sync_diff(st, &c), -1);
    assert_non_null(strstr(store_error(st), "locked"));
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    put_all(st, objs, N(objs));
    assert_int_equal(store_sync_commit(st, NULL, NULL, &c), -1);
    assert_int_equal(store_delta_begin(st, "dir", "ldap"), 0);
    assert_int_equal(store_delta_del(st, "g-bob"), 0);
    assert_int_equal(store_delta_commit(st, NULL, NULL, &c), -1);
    /* Readers are not blocked by that writer (WAL). */
    assert_int_equal(store_rcpt_get(st, "bob@example.com", &r), 1);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);

    /* A table renamed behind our back: the login step fails after objects and recipients. */
    raw_exec("ALTER TABLE login RENAME TO login_gone");
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    put_all(st, objs, N(objs));
    assert_int_equal(store_sync_commit(st, "c2", NULL, &c), -1);
    assert_non_null(strstr(store_error(st), "login"));
    raw_exec("ALTER TABLE login_gone RENAME TO login");

    /* A failure late in the member step. */
    raw_exec("CREATE TRIGGER boom BEFORE DELETE ON member BEGIN SELECT RAISE(ABORT, 'member boom'); END");
    objs[3].members[1] = NULL;
    assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
    put_all(st, objs, N(objs));
    assert_int_equal(store_sync_commit(st, "c3", NULL, &c), -1);
    assert_non_null(strstr(store_error(st), "member boom"));
    raw_exec("DROP TRIGGER boom");

    assert_int_equal(store_rcpt_get(st, "robert@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "bob@example.com", &r), 1);
    assert_string_equal(member_list(), "g-sales>g-room;g-staff>g-alice;g-staff>g-bob;g-staff>g-sales");
    assert_string_equal(raw_text("SELECT cookie FROM source WHERE name = 'dir'"), "c1");
    assert_int_equal(raw_int("SELECT count(*) FROM sync_run"), 1);
    /* The handle works on. */
    full(st, objs, N(objs), "c4", &c);
    assert_counts(&c, 1, 0, 1);
    assert_string_equal(member_list(), "g-sales>g-room;g-staff>g-alice");
    store_close(st);
}

/* Readers see the old data while a sync holds the write lock, then all of the new. */
static void test_reader(void **state)
{
    char err[512];
    STORE *w = open_new();
    STORE *rd;
    STORE_COUNTS c;
    STORE_RCPT r;
    TOBJ objs[N(base_objs)];

    full(w, base_objs, N(base_objs), NULL, &c);
    rd = store_open(test_path, 0, 200, err, sizeof(err));
    assert_non_null(rd);
    memcpy(objs, base_objs, sizeof(objs));
    objs[1].addrs[0] = "robert@example.com";
    assert_int_equal(store_sync_begin(w, "dir", "ldap"), 0);
    put_all(w, objs, N(objs));
    assert_int_equal(store_sync_diff(w, &c), 0);
    assert_int_equal(store_rcpt_get(rd, "bob@example.com", &r), 1);
    assert_int_equal(store_rcpt_get(rd, "robert@example.com", &r), 0);
    assert_int_equal(store_sync_commit(w, NULL, NULL, &c), 0);
    assert_int_equal(store_rcpt_get(rd, "bob@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(rd, "robert@example.com", &r), 1);
    assert_string_equal(r.guid, "g-bob");
    store_close(rd);
    store_close(w);
}

/* A larger pull: a few thousand objects, then a partial change (exercises the sort). */
static void test_larger(void **state)
{
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    char guid[32], dn[64], addr[64], login[32], mdn[64];

    for (int round = 0; round < 3; round++) {
        assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
        for (int i = 0; i < 5000; i++) {
            const char *a[1] = {addr};
            const char *l[1] = {login};
            const char *m[1] = {mdn};
            STORE_OBJECT o = {guid, dn, STORE_KIND_USER, 0, a, 1, l, 1, m, 0};

            if (round == 2 && i % 10 == 5)
                continue;               /* 10% gone */
            snprintf(guid, sizeof(guid), "%08x", (unsigned) (i * 2654435761u));
            snprintf(dn, sizeof(dn), "CN=U%d,DC=example", i);
            snprintf(addr, sizeof(addr), "u%d%s@example.com", (i * 7919) % 5000, round == 2 && i % 10 == 1 ? "x" : "");
            snprintf(login, sizeof(login), "u%d", i);
            if (i % 100 == 0) {
                o.kind = STORE_KIND_GROUP;
                snprintf(mdn, sizeof(mdn), "cn=u%d,dc=EXAMPLE", i + 1);
                o.n_members = 1;
            }
            assert_int_equal(store_sync_put(st, &o), 0);
        }
        assert_int_equal(store_sync_commit(st, NULL, NULL, &c), 0);
        if (round == 0)
            assert_counts(&c, 5000, 0, 0);
        else if (round == 1)
            assert_counts(&c, 0, 0, 0);
        else
            assert_counts(&c, 500, 0, 1000);
    }
    assert_int_equal(raw_int("SELECT count(*) FROM recipient"), 4500);
    assert_int_equal(raw_int("SELECT count(*) FROM login"), 4500);
    assert_int_equal(raw_int("SELECT count(*) FROM member"), 50);
    assert_int_equal(store_rcpt_get(st, "u4595@example.com", &r), 0);      /* i = 5: gone */
    assert_int_equal(store_rcpt_get(st, "u2919@example.com", &r), 0);      /* i = 1: renamed */
    assert_int_equal(store_rcpt_get(st, "u2919x@example.com", &r), 1);
    assert_int_equal(store_rcpt_get(st, "u838@example.com", &r), 1);       /* i = 2: kept */
    store_close(st);
}

/*
 * --- random full pulls against a model
 *
 * A small universe (10 guids, 8 addresses, DNs that differ in case, 4
 * logins) and 400 random full pulls into one store: objects missing,
 * put twice (the later wins), carrying the same address (collisions),
 * sharing a DN, naming members that match nothing. After each commit
 * the store, dumped by guid, must equal what a plain model of the
 * documented semantics (store_sync.h) says, and so must the counts:
 * the first holder keeps an address while it carries it, otherwise the
 * lowest guid among its carriers; the others are claims; members are
 * resolved ASCII case-insensitively against the pull's DNs, the lowest
 * guid where several objects share one. A rewrite of the full pull
 * (streaming, say) must keep this test passing unchanged.
 */
#define M_GUIDS     10
#define M_ADDRS     8
#define M_DNS       6
#define M_LOGINS    4
#define M_DUMP      16384

/* One object of a random pull. */
typedef struct mobj {
    int present;
    char guid[8];
    char dn[32];
    const char *kind;
    int flags;
    int addr[3], naddr;                 /* indexes into the address pool (repeats allowed) */
    int login[2], nlogin;
    char member[3][32];
    int nmember;
} MOBJ;

static unsigned long long m_rand_state;

/* m_rand - xorshift64*: a number below n */
static unsigned m_rand(unsigned n)
{
    m_rand_state ^= m_rand_state >> 12;
    m_rand_state ^= m_rand_state << 25;
    m_rand_state ^= m_rand_state >> 27;
    return (unsigned) ((m_rand_state * 2685821657736338717ULL) >> 33) % n;
}

/* m_dn - DN number d, in one of two spellings that differ only in ASCII case */
static void m_dn(char *buf, size_t size, unsigned d, unsigned upper)
{
    snprintf(buf, size, upper ? "CN=Obj%u,DC=Example" : "cn=obj%u,dc=example", d);
}

/* m_random_obj - a random object for guid i */
static void m_random_obj(MOBJ *o, int i)
{
    memset(o, 0, sizeof(*o));
    o->present = 1;
    snprintf(o->guid, sizeof(o->guid), "g%d", i);
    if (m_rand(8) == 0)
        o->dn[0] = 0;
    else
        m_dn(o->dn, sizeof(o->dn), m_rand(M_DNS), m_rand(2));
    o->kind = m_rand(3) == 0 ? STORE_KIND_GROUP : STORE_KIND_USER;
    o->flags = m_rand(4) == 0 ? STORE_FLAG_INTERNAL_ONLY : 0;
    o->naddr = (int) m_rand(4);
    for (int a = 0; a < o->naddr; a++)
        o->addr[a] = (int) m_rand(M_ADDRS);
    o->nlogin = (int) m_rand(3);
    for (int l = 0; l < o->nlogin; l++)
        o->login[l] = (int) m_rand(M_LOGINS);
    o->nmember = strcmp(o->kind, STORE_KIND_GROUP) == 0 ? (int) m_rand(4) : 0;
    for (int m = 0; m < o->nmember; m++) {
        if (m_rand(5) == 0)
            snprintf(o->member[m], sizeof(o->member[m]), "cn=nobody,dc=example");
        else
            m_dn(o->member[m], sizeof(o->member[m]), m_rand(M_DNS), m_rand(2));
    }
}

/* m_carries - does o carry address a? */
static int m_carries(const MOBJ *o, int a)
{
    for (int i = 0; i < o->naddr; i++)
        if (o->addr[i] == a)
            return 1;
    return 0;
}

/* m_nocase_eq - ASCII case-insensitive equality */
static int m_nocase_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        int x = (*a >= 'A' && *a <= 'Z') ? *a + 32 : *a;
        int y = (*b >= 'A' && *b <= 'Z') ? *b + 32 : *b;

        if (x != y)
            return 0;
    }
    return *a == *b;
}

/* m_cat - append a formatted line to a dump */
static void m_cat(char *dump, const char *fmt, ...)
{
    size_t len = strlen(dump);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(dump + len, M_DUMP - len, fmt, ap);
    va_end(ap);
}

/* m_store_dump - the source's tables by guid, as sorted lines */
static void m_store_dump(char *dump)
{
    static const char *const sql[] = {
        "SELECT 'o ' || guid || ' ' || COALESCE(dn, '') || ' ' || kind || ' ' || flags FROM object ORDER BY 1",
        "SELECT 'r ' || r.address || ' ' || o.guid || ' ' || r.kind || ' ' || r.flags FROM recipient r "
            "JOIN object o ON o.id = r.object_id ORDER BY 1",
        "SELECT 'c ' || c.address || ' ' || o.guid FROM claim c JOIN object o ON o.id = c.object_id ORDER BY 1",
        "SELECT 'l ' || o.guid || ' ' || l.name FROM login l JOIN object o ON o.id = l.object_id ORDER BY 1",
        "SELECT 'm ' || g.guid || ' ' || m.guid FROM member x JOIN object g ON g.id = x.group_id "
            "JOIN object m ON m.id = x.member_id ORDER BY 1",
        "SELECT 'n ' || count(*) FROM recipient WHERE object_id IS NULL",
    };
    sqlite3 *db;

    dump[0] = 0;
    assert_int_equal(sqlite3_open(test_path, &db), SQLITE_OK);
    for (size_t q = 0; q < N(sql); q++) {
        sqlite3_stmt *s;

        if (sqlite3_prepare_v2(db, sql[q], -1, &s, NULL) != SQLITE_OK)
            fail_msg("dump %s: %s", sql[q], sqlite3_errmsg(db));
        while (sqlite3_step(s) == SQLITE_ROW)
            m_cat(dump, "%s\n", (const char *) sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
}

/* m_line_cmp - qsort order of lines */
static int m_line_cmp(const void *x, const void *y)
{
    return strcmp(*(const char *const *) x, *(const char *const *) y);
}

/*
 * m_model - what the store must hold after a pull of objs (the last put
 * of each guid), given who held each address before (holder[a]: a guid
 * index, -1 none); updates holder and sets the expected counts
 */
static void m_model(const MOBJ *objs, int *holder, STORE_COUNTS *c, char *dump)
{
    char *lines[512];
    char buf[512][96];
    int n = 0;

    memset(c, 0, sizeof(*c));
    for (int i = 0; i < M_GUIDS; i++) {
        const MOBJ *o = &objs[i];

        if (!o->present)
            continue;
        snprintf(buf[n], sizeof(buf[n]), "o %s %s %s %d", o->guid, o->dn, o->kind, o->flags);
        n++;
        for (int l = 0; l < M_LOGINS; l++)
            for (int x = 0; x < o->nlogin; x++)
                if (o->login[x] == l) {
                    snprintf(buf[n++], sizeof(buf[0]), "l %s login%d", o->guid, l);
                    break;
                }
        /* Members: the lowest guid among the objects with that DN (guids g0..g9 sort as their index). */
        for (int t = 0; t < M_GUIDS; t++) {
            int hit = 0;

            if (!objs[t].present || objs[t].dn[0] == 0)
                continue;
            for (int m = 0; m < o->nmember && !hit; m++) {
                int first = -1;

                for (int u = 0; u < M_GUIDS && first < 0; u++)
                    if (objs[u].present && objs[u].dn[0] && m_nocase_eq(objs[u].dn, o->member[m]))
                        first = u;
                hit = first == t;
            }
            if (hit)
                snprintf(buf[n++], sizeof(buf[0]), "m %s %s", o->guid, objs[t].guid);
        }
    }
    for (int a = 0; a < M_ADDRS; a++) {
        int keep = -1, low = -1;
        const MOBJ *h;

        for (int i = 0; i < M_GUIDS; i++)
            if (objs[i].present && m_carries(&objs[i], a)) {
                if (low < 0)
                    low = i;
                if (i == holder[a])
                    keep = i;
            }
        if (low < 0) {
            if (holder[a] >= 0)
                c->removed++;
            holder[a] = -1;
            continue;
        }
        if (keep < 0)
            keep = low;
        h = &objs[keep];
        snprintf(buf[n++], sizeof(buf[0]), "r a%d@x.test %s %s %d", a, h->guid, h->kind, h->flags);
        for (int i = 0; i < M_GUIDS; i++)
            if (i != keep && objs[i].present && m_carries(&objs[i], a))
                snprintf(buf[n++], sizeof(buf[0]), "c a%d@x.test %s", a, objs[i].guid);
        holder[a] = keep;
    }
    for (int i = 0; i < n; i++)
        lines[i] = buf[i];
    qsort(lines, (size_t) n, sizeof(*lines), m_line_cmp);
    dump[0] = 0;
    /* The store's dump is per table; so is this one (o, r, c, l, m), each sorted. */
    for (const char *t = "orclm"; *t; t++)
        for (int i = 0; i < n; i++)
            if (lines[i][0] == *t)
                m_cat(dump, "%s\n", lines[i]);
    m_cat(dump, "n 0\n");
}

/* m_put - store_sync_put one model object */
static void m_put(STORE *st, const MOBJ *o)
{
    char addrs[3][32], logins[2][16];
    const char *av[3], *lv[2], *mv[3];
    STORE_OBJECT so;

    for (int a = 0; a < o->naddr; a++) {
        snprintf(addrs[a], sizeof(addrs[a]), "a%d@x.test", o->addr[a]);
        av[a] = addrs[a];
    }
    for (int l = 0; l < o->nlogin; l++) {
        snprintf(logins[l], sizeof(logins[l]), "login%d", o->login[l]);
        lv[l] = logins[l];
    }
    for (int m = 0; m < o->nmember; m++)
        mv[m] = o->member[m];
    memset(&so, 0, sizeof(so));
    so.guid = o->guid;
    so.dn = o->dn;
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

static void test_random_model(void **state)
{
    STORE *st = open_new();
    static char want[M_DUMP], got[M_DUMP];
    int holder[M_ADDRS];
    long long prev_addrs = 0;

    (void) state;
    m_rand_state = 0x9e3779b97f4a7c15ULL;
    for (int a = 0; a < M_ADDRS; a++)
        holder[a] = -1;
    for (int round = 0; round < 400; round++) {
        MOBJ objs[M_GUIDS], early;
        int order[M_GUIDS];
        STORE_COUNTS c, wc;
        long long now_addrs;

        for (int i = 0; i < M_GUIDS; i++) {
            m_random_obj(&objs[i], i);
            objs[i].present = m_rand(10) < 7;
            order[i] = i;
        }
        for (int i = M_GUIDS - 1; i > 0; i--) {
            int j = (int) m_rand((unsigned) i + 1), t = order[i];

            order[i] = order[j];
            order[j] = t;
        }
        assert_int_equal(store_sync_begin(st, "dir", "ldap"), 0);
        for (int k = 0; k < M_GUIDS; k++) {
            int i = order[k];

            if (!objs[i].present)
                continue;
            if (m_rand(6) == 0) {       /* put twice: the later wins */
                m_random_obj(&early, i);
                m_put(st, &early);
            }
            m_put(st, &objs[i]);
        }
        if (store_sync_commit(st, NULL, NULL, &c) != 0)
            fail_msg("round %d: commit: %s", round, store_error(st));
        m_model(objs, holder, &wc, want);
        m_store_dump(got);
        if (strcmp(want, got) != 0)
            fail_msg("round %d: the store differs from the model\n--- model:\n%s--- store:\n%s",
                     round, want, got);
        /* Counts: added and removed against the model; the store's identity holds. */
        now_addrs = raw_int("SELECT count(*) FROM recipient");
        if (c.removed != wc.removed || c.changed + c.removed + c.kept != prev_addrs
            || c.added + c.changed + c.kept != now_addrs)
            fail_msg("round %d: counts +%lld ~%lld -%lld =%lld, model -%lld, %lld -> %lld addresses",
                     round, c.added, c.changed, c.removed, c.kept, wc.removed, prev_addrs, now_addrs);
        prev_addrs = now_addrs;
    }
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_full_empty, setup),
        cmocka_unit_test_setup(test_groups, setup),
        cmocka_unit_test_setup(test_resync_unchanged, setup),
        cmocka_unit_test_setup(test_rename, setup),
        cmocka_unit_test_setup(test_address_moves, setup),
        cmocka_unit_test_setup(test_conflict, setup),
        cmocka_unit_test_setup(test_remove_objects, setup),
        cmocka_unit_test_setup(test_logins, setup),
        cmocka_unit_test_setup(test_refuse_abort, setup),
        cmocka_unit_test_setup(test_misuse, setup),
        cmocka_unit_test_setup(test_cookie, setup),
        cmocka_unit_test_setup(test_delta, setup),
        cmocka_unit_test_setup(test_delta_abort, setup),
        cmocka_unit_test_setup(test_delta_cookie_moved, setup),
        cmocka_unit_test_setup(test_delta_diff, setup),
        cmocka_unit_test_setup(test_collision_modes, setup),
        cmocka_unit_test_setup(test_collision_group_first, setup),
        cmocka_unit_test_setup(test_collision_release, setup),
        cmocka_unit_test_setup(test_collision_sources, setup),
        cmocka_unit_test_setup(test_collision_migrate, setup),
        cmocka_unit_test_setup(test_age, setup),
        cmocka_unit_test_setup(test_failures, setup),
        cmocka_unit_test_setup(test_reader, setup),
        cmocka_unit_test_setup(test_larger, setup),
        cmocka_unit_test_setup(test_random_model, setup),
    };

    return cmocka_run_group_tests_name("store_sync", tests, group_setup, group_teardown);
}
