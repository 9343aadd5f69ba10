/*
 * test_store.c - unit tests of the SQLite store (lib/store.c)
 *
 * Each test gets a fresh store file in a private directory. The file is
 * also changed behind the store's back with plain SQLite (a schema from
 * the future, a dropped table, a lock held elsewhere) to check that every
 * failure is -1 with a reason, never "not found". The read-only open of
 * the daemons and their store keeper (lib/keeper.c) are tested here too.
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

#include "keeper.h"
#include "log.h"
#include "params.h"
#include "store.h"

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
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
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

/* replace - replace source with the NULL-terminated addresses; counts out */
static void replace(STORE *st, const char *source, const char *const *addrs, const char *kind,
                    STORE_COUNTS *c)
{
    assert_int_equal(store_replace_begin(st, source, "import"), 0);
    for (; *addrs; addrs++)
        assert_int_equal(store_replace_add(st, *addrs, kind), 0);
    if (store_replace_commit(st, c) != 0)
        fail_msg("commit: %s", store_error(st));
}

static int setup(void **state)
{
    snprintf(test_path, sizeof(test_path), "%s/store-%d.db", test_dir, ++test_seq);
    return 0;
}

static int group_setup(void **state)
{
    snprintf(test_dir, sizeof(test_dir), "/tmp/test_store.XXXXXX");
    if (mkdtemp(test_dir) == NULL)
        return -1;
    log_init("test_store", 0, 0);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[300];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A new store is migrated to the current schema, in WAL mode, and reopens. */
static void test_migrate_new(void **state)
{
    char err[512];
    STORE *st = open_new();
    STORE_RCPT r;

    assert_int_equal(store_rcpt_get(st, "nobody@example.com", &r), 0);
    store_close(st);
    assert_int_equal(raw_int("PRAGMA user_version"), store_schema_version());
    assert_true(store_schema_version() >= 1);
    st = store_open(test_path, 0, 200, err, sizeof(err));
    assert_non_null(st);
    assert_string_equal(store_path(st), test_path);
    store_close(st);
    {
        sqlite3 *db;
        sqlite3_stmt *s;

        assert_int_equal(sqlite3_open(test_path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_string_equal((const char *) sqlite3_column_text(s, 0), "wal");
        sqlite3_finalize(s);
        sqlite3_close(db);
    }
}

/* Without STORE_CREATE a missing file is refused with a reason. */
static void test_missing(void **state)
{
    char err[512] = "";

    assert_null(store_open(test_path, 0, 200, err, sizeof(err)));
    assert_non_null(strstr(err, test_path));
    assert_non_null(strstr(err, "no such file"));
    assert_int_equal(access(test_path, F_OK), -1);
}

/* A schema from a newer program is refused, and left alone. */
static void test_schema_too_new(void **state)
{
    char err[512] = "";
    char want[128];

    store_close(open_new());
    raw_exec("PRAGMA user_version = 999");
    assert_null(store_open(test_path, STORE_CREATE, 200, err, sizeof(err)));
    snprintf(want, sizeof(want), "store schema version 999 is newer than this program's %d",
             store_schema_version());
    assert_non_null(strstr(err, want));
    assert_int_equal(raw_int("PRAGMA user_version"), 999);
}

/* An older schema is migrated on open (version 0 with tables absent). */
static void test_schema_older(void **state)
{
    char err[512];
    STORE *st;

    raw_exec("CREATE TABLE unrelated (x)");     /* a database at user_version 0 */
    st = store_open(test_path, 0, 200, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(store_static_add(st, "postmaster@example.com"), 1);
    store_close(st);
    assert_int_equal(raw_int("PRAGMA user_version"), store_schema_version());
}

/* A file that is not a database fails at open, not at the first lookup. */
static void test_corrupt(void **state)
{
    char err[512] = "";
    FILE *fp = fopen(test_path, "w");

    assert_non_null(fp);
    for (int i = 0; i < 400; i++)
        fputs("this is not an SQLite database at all, only text\n", fp);
    fclose(fp);
    assert_null(store_open(test_path, 0, 200, err, sizeof(err)));
    assert_non_null(strstr(err, "not a database"));
    assert_null(store_open(test_path, STORE_CREATE, 200, err, sizeof(err)));
}

/* A corrupted page behind a valid header fails at open as well. */
static void test_corrupt_schema(void **state)
{
    char err[512] = "";
    FILE *fp;

    store_close(open_new());
    fp = fopen(test_path, "r+");
    assert_non_null(fp);
    fseek(fp, 100, SEEK_SET);   /* the schema table's page, after the header */
    for (int i = 0; i < 3000; i++)
        fputc(0xa5, fp);
    fclose(fp);
    assert_null(store_open(test_path, 0, 200, err, sizeof(err)));
    assert_true(err[0] != 0);
}

/* Replacing computes added / changed / removed / kept and applies them. */
static void test_replace_counts(void **state)
{
    static const char *const first[] = {"a@example.com", "b@example.com", "c@example.com", NULL};
    static const char *const second[] = {"b@example.com", "c@example.com", "d@example.com",
        "c@example.com", NULL};
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;

    replace(st, "import", first, STORE_KIND_IMPORTED, &c);
    assert_int_equal(c.added, 3);
    assert_int_equal(c.changed, 0);
    assert_int_equal(c.removed, 0);
    assert_int_equal(c.kept, 0);

    /* Same set again: nothing changes. */
    replace(st, "import", first, STORE_KIND_IMPORTED, &c);
    assert_int_equal(c.added, 0);
    assert_int_equal(c.removed, 0);
    assert_int_equal(c.kept, 3);

    /* b changes kind, c is repeated, a goes, d comes. */
    assert_int_equal(store_replace_begin(st, "import", "import"), 0);
    assert_int_equal(store_replace_add(st, "b@example.com", STORE_KIND_USER), 0);
    for (const char *const *a = second + 1; *a; a++)
        assert_int_equal(store_replace_add(st, *a, STORE_KIND_IMPORTED), 0);
    assert_int_equal(store_replace_diff(st, &c), 0);
    assert_int_equal(c.added, 1);
    assert_int_equal(c.changed, 1);
    assert_int_equal(c.removed, 1);
    assert_int_equal(c.kept, 1);
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_replace_commit(st, &c), 0);
    assert_int_equal(c.added, 1);
    assert_int_equal(c.changed, 1);
    assert_int_equal(c.removed, 1);
    assert_int_equal(c.kept, 1);

    assert_int_equal(store_rcpt_get(st, "a@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "d@example.com", &r), 1);
    assert_string_equal(r.address, "d@example.com");
    assert_string_equal(r.source, "import");
    assert_string_equal(r.kind, STORE_KIND_IMPORTED);
    assert_string_equal(r.dn, "");
    assert_string_equal(r.guid, "");
    assert_true(r.last_seen > 0);
    assert_int_equal(store_rcpt_get(st, "b@example.com", &r), 1);
    assert_string_equal(r.kind, STORE_KIND_USER);
    assert_int_equal(raw_int("SELECT count(*) FROM recipient"), 3);
    assert_int_equal(raw_int("SELECT count(*) FROM sync_run WHERE mode = 'import' AND outcome = 'ok'"), 3);
    store_close(st);
}

/* Two sources hold their own rows; replacing one leaves the other. */
/* Only the latest 1,000 runs of a source are kept. */
static void test_runs_pruned(void **state)
{
    static const char *const one[] = {"x@example.com", NULL};
    STORE *st = open_new();
    STORE_COUNTS c;
    sqlite3 *db;
    sqlite3_stmt *q;

    (void) state;
    for (int i = 0; i < 1010; i++)
        replace(st, "import", one, STORE_KIND_IMPORTED, &c);
    store_close(st);
    assert_int_equal(sqlite3_open(test_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*), min(id), max(id) FROM sync_run", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 1000);
    assert_int_equal(sqlite3_column_int(q, 2) - sqlite3_column_int(q, 1), 999);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void test_replace_sources(void **state)
{
    static const char *const one[] = {"x@example.com", "shared@example.com", NULL};
    static const char *const two[] = {"y@example.com", "shared@example.com", NULL};
    static const char *const none[] = {NULL};
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;

    replace(st, "one", one, STORE_KIND_IMPORTED, &c);
    replace(st, "two", two, STORE_KIND_IMPORTED, &c);
    assert_int_equal(store_rcpt_get(st, "shared@example.com", &r), 1);
    assert_string_equal(r.source, "one");       /* the older source, stably */
    replace(st, "one", none, STORE_KIND_IMPORTED, &c);
    assert_int_equal(c.removed, 2);
    assert_int_equal(store_rcpt_get(st, "x@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "shared@example.com", &r), 1);
    assert_string_equal(r.source, "two");
    store_close(st);
}

/* Abort, or an error on the way, applies nothing; refuse records the run only. */
static void test_replace_abort(void **state)
{
    static const char *const first[] = {"a@example.com", "b@example.com", NULL};
    STORE *st = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;

    replace(st, "import", first, STORE_KIND_IMPORTED, &c);
    assert_int_equal(store_replace_begin(st, "import", "import"), 0);
    assert_int_equal(store_replace_add(st, "z@example.com", STORE_KIND_IMPORTED), 0);
    store_replace_abort(st);
    store_replace_abort(st);                    /* twice is harmless */
    assert_int_equal(store_rcpt_get(st, "z@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "a@example.com", &r), 1);

    /* A new source begun and aborted leaves no source row. */
    assert_int_equal(store_replace_begin(st, "fresh", "import"), 0);
    store_replace_abort(st);
    assert_int_equal(raw_int("SELECT count(*) FROM source WHERE name = 'fresh'"), 0);

    /* Errors: adding without begin, empty address, commit without begin. */
    assert_int_equal(store_replace_add(st, "q@example.com", STORE_KIND_IMPORTED), -1);
    assert_int_equal(store_replace_commit(st, &c), -1);
    assert_int_equal(store_replace_begin(st, "import", "import"), 0);
    assert_int_equal(store_replace_begin(st, "import", "import"), -1);   /* nested */
    assert_int_equal(store_replace_add(st, "", STORE_KIND_IMPORTED), -1);
    store_replace_abort(st);

    /* Refused: nothing applied, but the attempt is visible. */
    assert_int_equal(store_replace_begin(st, "import", "import"), 0);
    c.added = 0, c.changed = 0, c.removed = 2, c.kept = 0;
    assert_int_equal(store_replace_refuse(st, "refused", "would remove 100%", &c), 0);
    assert_int_equal(store_rcpt_get(st, "a@example.com", &r), 1);
    assert_int_equal(raw_int("SELECT count(*) FROM sync_run WHERE outcome = 'refused' AND removed = 2"), 1);

    /* Refused after a diff (the write lock held): the same, and the lock is released. */
    assert_int_equal(store_replace_begin(st, "import", "import"), 0);
    assert_int_equal(store_replace_add(st, "only@example.com", STORE_KIND_IMPORTED), 0);
    assert_int_equal(store_replace_diff(st, &c), 0);
    assert_int_equal(c.added, 1);
    assert_int_equal(c.removed, 2);
    assert_int_equal(store_replace_refuse(st, "refused", "shrink guard", &c), 0);
    assert_int_equal(store_rcpt_get(st, "only@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "b@example.com", &r), 1);
    assert_int_equal(raw_int("SELECT count(*) FROM sync_run WHERE message = 'shrink guard' AND added = 1"), 1);
    assert_int_equal(store_static_add(st, "x@example.com"), 1);        /* not locked any more */
    store_close(st);
}

/* source_walk_cb - check the "import" source's last run */
static int source_walk_cb(const STORE_SOURCE_INFO *info, void *ctx)
{
    int *seen = ctx;

    if (strcmp(info->name, "import") == 0) {
        assert_string_equal(info->type, "import");
        assert_int_equal(info->recipients, 2);
        assert_string_equal(info->last_outcome, "refused: would remove 100%");
        assert_int_equal(info->removed, 2);
        assert_true(info->last_run >= info->last_success);
        assert_true(info->last_success > 0);
        *seen |= 1;
    } else if (strcmp(info->name, "static") == 0) {
        assert_string_equal(info->type, "static");
        assert_int_equal(info->recipients, 1);
        assert_int_equal(info->last_run, 0);
        assert_string_equal(info->last_outcome, "");
        *seen |= 2;
    }
    return 0;
}

/* Statistics and the per-source summary. */
static void test_stats(void **state)
{
    static const char *const first[] = {"a@example.com", "b@example.com", NULL};
    STORE *st = open_new();
    STORE_STATS s;
    STORE_COUNTS c;
    int seen = 0;

    replace(st, "import", first, STORE_KIND_IMPORTED, &c);
    assert_int_equal(store_static_add(st, "a@example.com"), 1);
    assert_int_equal(store_domain_put(st, "example.com", "", 0), 0);
    assert_int_equal(store_stats(st, &s), 0);
    assert_int_equal(s.domains, 1);
    assert_int_equal(s.recipients, 2);          /* distinct addresses */
    assert_int_equal(s.statics, 1);
    assert_int_equal(s.sources, 2);
    assert_int_equal(store_replace_begin(st, "import", "import"), 0);
    c.added = 0, c.changed = 0, c.removed = 2, c.kept = 0;
    assert_int_equal(store_replace_refuse(st, "refused", "would remove 100%", &c), 0);
    assert_int_equal(store_source_walk(st, source_walk_cb, &seen), 0);
    assert_int_equal(seen, 3);
    store_close(st);
}

/* The static source and other types are not replaced as a whole. */
static void test_replace_refuses(void **state)
{
    STORE *st = open_new();

    assert_int_equal(store_replace_begin(st, "static", "import"), -1);
    assert_non_null(strstr(store_error(st), "static"));
    assert_int_equal(store_replace_begin(st, "x", "static"), -1);
    assert_int_equal(store_replace_begin(st, "ldap1", "ldap"), 0);
    assert_int_equal(store_replace_commit(st, NULL), 0);
    assert_int_equal(store_replace_begin(st, "ldap1", "import"), -1);
    assert_non_null(strstr(store_error(st), "type ldap"));
    assert_int_equal(raw_int("SELECT count(*) FROM sync_run WHERE mode = 'full'"), 1);
    /* the handle still works after the refusals */
    assert_int_equal(store_replace_begin(st, "import", "import"), 0);
    assert_int_equal(store_replace_commit(st, NULL), 0);
    store_close(st);
}

/* domain_walk_cb - collect "name nexthop subdomains;" */
static int domain_walk_cb(const STORE_DOMAIN *d, void *ctx)
{
    char *out = ctx;

    snprintf(out + strlen(out), 256 - strlen(out), "%s %s %d;", d->name, d->nexthop, d->subdomains);
    return 0;
}

/* Domains: put (insert, update), get, del, walk in name order. */
static void test_domains(void **state)
{
    STORE *st = open_new();
    STORE_DOMAIN d;
    char list[256] = "";

    assert_int_equal(store_domain_get(st, "example.com", &d), 0);
    assert_int_equal(store_domain_put(st, "example.com", "smtp:[10.1.0.2]:25", 0), 0);
    assert_int_equal(store_domain_put(st, "a.example", "", 1), 0);
    assert_int_equal(store_domain_get(st, "example.com", &d), 1);
    assert_string_equal(d.name, "example.com");
    assert_string_equal(d.nexthop, "smtp:[10.1.0.2]:25");
    assert_int_equal(d.subdomains, 0);
    assert_int_equal(store_domain_put(st, "example.com", "relay:[10.1.0.3]", 1), 0);
    assert_int_equal(store_domain_get(st, "example.com", &d), 1);
    assert_string_equal(d.nexthop, "relay:[10.1.0.3]");
    assert_int_equal(d.subdomains, 1);
    assert_int_equal(store_domain_walk(st, domain_walk_cb, list), 0);
    assert_string_equal(list, "a.example  1;example.com relay:[10.1.0.3] 1;");
    assert_int_equal(store_domain_del(st, "example.com"), 1);
    assert_int_equal(store_domain_del(st, "example.com"), 0);
    assert_int_equal(store_domain_get(st, "example.com", &d), 0);
    assert_int_equal(store_domain_get(st, "a.example", &d), 1);
    assert_string_equal(d.relay_mode, "");
    /* a domain's own relay mode (sql/004), asked outside and inside a read transaction (the cache) */
    assert_int_equal(store_domain_put_mode(st, "q.example", "smtp:[10.1.0.4]", 0, "queue"), 0);
    assert_int_equal(store_domain_get(st, "q.example", &d), 1);
    assert_string_equal(d.relay_mode, "queue");
    assert_int_equal(store_read_begin(st), 0);
    assert_int_equal(store_domain_get(st, "q.example", &d), 1);
    assert_string_equal(d.relay_mode, "queue");
    assert_int_equal(store_domain_get(st, "a.example", &d), 1);
    assert_string_equal(d.relay_mode, "");
    store_read_end(st);
    /* replaced whole: without a mode it follows the default again */
    assert_int_equal(store_domain_put(st, "q.example", "smtp:[10.1.0.4]", 0), 0);
    assert_int_equal(store_domain_get(st, "q.example", &d), 1);
    assert_string_equal(d.relay_mode, "");
    store_close(st);
}

/* Static entries: add, add again, find, delete. */
static void test_static(void **state)
{
    STORE *st = open_new();
    STORE_RCPT r;

    assert_int_equal(store_static_add(st, "postmaster@example.com"), 1);
    assert_int_equal(store_static_add(st, "postmaster@example.com"), 0);
    assert_int_equal(store_rcpt_get(st, "postmaster@example.com", &r), 1);
    assert_string_equal(r.source, "static");
    assert_string_equal(r.kind, STORE_KIND_STATIC);
    assert_int_equal(store_static_del(st, "postmaster@example.com"), 1);
    assert_int_equal(store_static_del(st, "postmaster@example.com"), 0);
    assert_int_equal(store_rcpt_get(st, "postmaster@example.com", &r), 0);
    store_close(st);
}

/* rcpt_walk_cb - collect "address/source;" */
static int rcpt_walk_cb(const STORE_RCPT *r, void *ctx)
{
    char *out = ctx;

    snprintf(out + strlen(out), 256 - strlen(out), "%s/%s;", r->address, r->source);
    return 0;
}

/* Walks in address order, all sources or one. */
static void test_rcpt_walk(void **state)
{
    static const char *const addrs[] = {"c@example.com", "a@example.com", "@example.org", NULL};
    STORE *st = open_new();
    STORE_COUNTS c;
    char list[256] = "";

    replace(st, "import", addrs, STORE_KIND_IMPORTED, &c);
    assert_int_equal(store_static_add(st, "a@example.com"), 1);
    assert_int_equal(store_rcpt_walk(st, NULL, rcpt_walk_cb, list), 0);
    assert_string_equal(list, "@example.org/import;a@example.com/static;a@example.com/import;"
                        "c@example.com/import;");
    list[0] = 0;
    assert_int_equal(store_rcpt_walk(st, "static", rcpt_walk_cb, list), 0);
    assert_string_equal(list, "a@example.com/static;");
    list[0] = 0;
    assert_int_equal(store_rcpt_walk(st, "nosuch", rcpt_walk_cb, list), 0);
    assert_string_equal(list, "");
    store_close(st);
}

/* A reader's read transaction is one snapshot; a writer elsewhere does not disturb it. */
static void test_read_snapshot(void **state)
{
    static const char *const first[] = {"a@example.com", NULL};
    static const char *const second[] = {"b@example.com", NULL};
    char err[512];
    STORE *w = open_new();
    STORE *r = store_open(test_path, 0, 200, err, sizeof(err));
    STORE_COUNTS c;
    STORE_RCPT rc;

    assert_non_null(r);
    replace(w, "import", first, STORE_KIND_IMPORTED, &c);
    assert_int_equal(store_read_begin(r), 0);
    assert_int_equal(store_read_begin(r), 0);   /* nested begin is harmless */
    assert_int_equal(store_rcpt_get(r, "a@example.com", &rc), 1);
    replace(w, "import", second, STORE_KIND_IMPORTED, &c);      /* WAL: not blocked by the reader */
    assert_int_equal(store_rcpt_get(r, "a@example.com", &rc), 1);
    assert_int_equal(store_rcpt_get(r, "b@example.com", &rc), 0);
    store_read_end(r);
    store_read_end(r);                          /* twice is harmless */
    assert_int_equal(store_rcpt_get(r, "a@example.com", &rc), 0);
    assert_int_equal(store_rcpt_get(r, "b@example.com", &rc), 1);
    store_close(r);
    store_close(w);
}

/*
 * store_read_current: a read kept open is current until someone commits,
 * then not, so a reader that keeps it between requests sees every commit
 * as one that began a new read would. Never current outside a read or on
 * a handle's first read (the -shm is not known to be mapped yet).
 */
static void test_read_current(void **state)
{
    char err[512];
    STORE *w = open_new();
    STORE *r = store_open(test_path, 0, 200, err, sizeof(err));
    STORE_RCPT rc;

    assert_non_null(r);
    assert_int_equal(store_read_current(NULL), 0);
    assert_int_equal(store_read_current(r), 0);         /* no read open */
    assert_int_equal(store_read_begin(r), 0);
    assert_int_equal(store_rcpt_get(r, "a@example.com", &rc), 0);
    assert_int_equal(store_read_current(r), 0);         /* first read: cannot tell */
    store_read_end(r);

    assert_int_equal(store_read_begin(r), 0);
    assert_int_equal(store_rcpt_get(r, "a@example.com", &rc), 0);
    assert_int_equal(store_read_current(r), 1);
    assert_int_equal(store_rcpt_get(r, "a@example.com", &rc), 0);
    assert_int_equal(store_read_current(r), 1);         /* reading changes nothing */
    assert_int_equal(store_static_add(w, "a@example.com"), 1);
    assert_int_equal(store_read_current(r), 0);         /* a commit elsewhere */
    assert_int_equal(store_rcpt_get(r, "a@example.com", &rc), 0);  /* the old snapshot */
    store_read_end(r);
    assert_int_equal(store_read_current(r), 0);

    assert_int_equal(store_read_begin(r), 0);
    assert_int_equal(store_rcpt_get(r, "a@example.com", &rc), 1);
    assert_int_equal(store_read_current(r), 1);
    store_read_end(r);

    /* A commit between begin and the first read (BEGIN is deferred) is caught too. */
    assert_int_equal(store_read_begin(r), 0);
    assert_int_equal(store_static_del(w, "a@example.com"), 1);
    assert_int_equal(store_rcpt_get(r, "a@example.com", &rc), 0);
    assert_int_equal(store_read_current(r), 0);
    store_read_end(r);
    store_close(r);
    store_close(w);
}

/* A broken store is -1 with a reason, never 0. */
static void test_broken(void **state)
{
    STORE *st = open_new();
    STORE_RCPT r;
    STORE_DOMAIN d;
    STORE_STATS s;

    assert_int_equal(store_rcpt_get(NULL, "a@example.com", &r), -1);
    assert_int_equal(store_domain_get(NULL, "example.com", &d), -1);
    assert_int_equal(store_read_begin(NULL), -1);
    store_read_end(NULL);
    store_close(NULL);
    assert_int_equal(store_static_add(st, "a@example.com"), 1);
    raw_exec("DROP TABLE recipient; DROP TABLE domain");
    assert_int_equal(store_rcpt_get(st, "a@example.com", &r), -1);
    assert_non_null(strstr(store_error(st), "recipient"));
    assert_int_equal(store_rcpt_get(st, "b@example.com", &r), -1);
    assert_int_equal(store_domain_get(st, "example.com", &d), -1);
    assert_int_equal(store_static_add(st, "b@example.com"), -1);
    assert_int_equal(store_stats(st, &s), -1);
    store_close(st);
}

/*
 * A lock held elsewhere past the busy timeout is a failure with a reason
 * ("locked"), never an empty answer. In WAL mode only a connection in
 * exclusive locking mode can shut readers out, and only while no other
 * connection has the file open, so the store is opened while it is held.
 */
static void test_locked(void **state)
{
    STORE *st = open_new();
    STORE_RCPT r;
    sqlite3 *db;
    char err[512] = "";

    assert_int_equal(store_static_add(st, "a@example.com"), 1);
    store_close(st);
    assert_int_equal(sqlite3_open(test_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; "
                                  "INSERT INTO domain VALUES ('x.example', '', 0, 0, '')",
                                  NULL, NULL, NULL), SQLITE_OK);
    assert_null(store_open(test_path, 0, 100, err, sizeof(err)));
    assert_non_null(strstr(err, "locked"));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    st = store_open(test_path, 0, 100, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(store_rcpt_get(st, "a@example.com", &r), 1);
    store_close(st);
}

/* gone_cb - collect "address;" into the context */
static int gone_cb(const char *address, void *ctx)
{
    char *out = ctx;

    snprintf(out + strlen(out), 256 - strlen(out), "%s;", address);
    return 0;
}

/*
 * The staged set (a TEMP table, not memory): repeats are one entry and the
 * last kind wins, the store stays unlocked while the set is staged, the
 * removals can be listed before commit, a refusal in the middle of
 * staging records the run and applies nothing, and the handle stages
 * again afterwards.
 */
static void test_replace_staged(void **state)
{
    static const char *const first[] = {"a@example.com", "b@example.com", "c@example.com",
                                        "d@example.com", NULL};
    STORE *st = open_new();
    STORE *other = open_new();
    STORE_COUNTS c;
    STORE_RCPT r;
    char gone[256] = "";

    replace(st, "import", first, STORE_KIND_IMPORTED, &c);
    assert_int_equal(c.added, 4);

    assert_int_equal(store_replace_begin(st, "import", "import"), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(store_replace_add(st, "a@example.com", STORE_KIND_IMPORTED), 0);
    assert_int_equal(store_replace_add(st, "b@example.com", STORE_KIND_IMPORTED), 0);
    assert_int_equal(store_replace_add(st, "b@example.com", STORE_KIND_USER), 0);  /* the last kind wins */
    /* staging locks nothing: another handle writes meanwhile */
    assert_int_equal(store_static_add(other, "postmaster@example.com"), 1);
    assert_int_equal(store_replace_diff(st, &c), 0);
    assert_int_equal(c.added, 0);
    assert_int_equal(c.changed, 1);
    assert_int_equal(c.kept, 1);
    assert_int_equal(c.removed, 2);
    assert_int_equal(store_replace_gone(st, gone_cb, gone, 10), 0);
    assert_string_equal(gone, "c@example.com;d@example.com;");
    gone[0] = 0;
    assert_int_equal(store_replace_gone(st, gone_cb, gone, 1), 0);
    assert_string_equal(gone, "c@example.com;");
    assert_int_equal(store_replace_add(st, "e@example.com", STORE_KIND_IMPORTED), -1);   /* after the diff */
    assert_int_equal(store_replace_commit(st, &c), 0);
    assert_int_equal(c.removed, 2);
    assert_int_equal(store_rcpt_get(st, "b@example.com", &r), 1);
    assert_string_equal(r.kind, STORE_KIND_USER);
    assert_int_equal(store_rcpt_get(st, "c@example.com", &r), 0);

    /* refused while staging: nothing applied, the run recorded, the stage emptied */
    assert_int_equal(store_replace_begin(st, "import", "import"), 0);
    assert_int_equal(store_replace_add(st, "z@example.com", STORE_KIND_IMPORTED), 0);
    assert_int_equal(store_replace_refuse(st, "refused", "test", NULL), 0);
    assert_int_equal(store_rcpt_get(st, "z@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "a@example.com", &r), 1);
    /* aborted while staging: the same */
    assert_int_equal(store_replace_begin(st, "import", "import"), 0);
    assert_int_equal(store_replace_add(st, "y@example.com", STORE_KIND_IMPORTED), 0);
    store_replace_abort(st);
    /* and the next replacement starts from an empty stage */
    assert_int_equal(store_replace_begin(st, "import", "import"), 0);
    assert_int_equal(store_replace_add(st, "a@example.com", STORE_KIND_IMPORTED), 0);
    assert_int_equal(store_replace_commit(st, &c), 0);
    assert_int_equal(c.added, 0);
    assert_int_equal(c.kept, 1);
    assert_int_equal(c.removed, 1);
    assert_int_equal(store_rcpt_get(st, "y@example.com", &r), 0);
    assert_int_equal(store_rcpt_get(st, "z@example.com", &r), 0);
    store_close(other);
    store_close(st);
}

/*
 * A read-only open reads, cannot write, and never migrates; the -wal and
 * -shm files outlive the last connection, so that a reader that may not
 * create them can still open the store.
 */
static void test_readonly(void **state)
{
    char err[512] = "";
    char wal[320], shm[320];
    STORE *st = open_new();
    STORE *ro;
    STORE_RCPT r;

    assert_int_equal(store_static_add(st, "a@example.com"), 1);
    store_close(st);
    snprintf(wal, sizeof(wal), "%s-wal", test_path);
    snprintf(shm, sizeof(shm), "%s-shm", test_path);
    assert_int_equal(access(wal, F_OK), 0);
    assert_int_equal(access(shm, F_OK), 0);

    ro = store_open(test_path, STORE_READONLY, 200, err, sizeof(err));
    if (ro == NULL)
        fail_msg("read-only open: %s", err);
    assert_int_equal(store_rcpt_get(ro, "a@example.com", &r), 1);
    assert_int_equal(store_errors(ro), 0);
    assert_int_equal(store_static_add(ro, "b@example.com"), -1);
    assert_non_null(strstr(store_error(ro), "readonly"));
    assert_int_equal(store_errors(ro), 1);
    /* a writer's commit is seen by the next read */
    st = store_open(test_path, 0, 200, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(store_static_add(st, "c@example.com"), 1);
    assert_int_equal(store_rcpt_get(ro, "c@example.com", &r), 1);
    store_close(st);
    store_close(ro);
    assert_int_equal(access(wal, F_OK), 0);
    assert_int_equal(access(shm, F_OK), 0);
    assert_int_equal(raw_int("SELECT count(*) FROM recipient"), 2);
}

/* A schema too old for a reader is refused, not migrated; a writer migrates it. */
static void test_readonly_older(void **state)
{
    char err[512] = "";
    STORE *st;

    raw_exec("PRAGMA journal_mode = WAL; CREATE TABLE unrelated (x)");
    assert_null(store_open(test_path, STORE_READONLY, 200, err, sizeof(err)));
    assert_non_null(strstr(err, "store schema version 0 is older than this program's"));
    assert_non_null(strstr(err, "does not migrate"));
    assert_int_equal(raw_int("PRAGMA user_version"), 0);
    st = store_open(test_path, 0, 200, err, sizeof(err));
    assert_non_null(st);
    store_close(st);
    st = store_open(test_path, STORE_READONLY, 200, err, sizeof(err));
    assert_non_null(st);
    store_close(st);
    raw_exec("PRAGMA user_version = 999");
    assert_null(store_open(test_path, STORE_READONLY, 200, err, sizeof(err)));
    assert_non_null(strstr(err, "newer"));
}

/* keeper_setup - a store with one directory source synced now; the keeper's settings */
static void keeper_setup(void)
{
    static char path[300];
    STORE *st = open_new();
    STORE_COUNTS c;

    assert_int_equal(store_domain_put(st, "example.com", "", 0), 0);
    assert_int_equal(store_replace_begin(st, "files", "file"), 0);
    assert_int_equal(store_replace_add(st, "alice@example.com", "user"), 0);
    assert_int_equal(store_replace_commit(st, &c), 0);
    store_close(st);
    snprintf(path, sizeof(path), "%s", test_path);
    var_store_path = path;
    var_store_busy_ms = 200;
    var_store_max_age_ms = 3600 * 1000;
}

/*
 * The keeper: opens read-only, answers while fresh, NULL (with the reason)
 * past max_age and again once a sync is recorded, and its mirror follows.
 */
static void test_keeper_stale(void **state)
{
    KEEPER *k;
    STORE *mirror = (STORE *) &mirror;  /* anything but NULL: the keeper must set it */
    STORE_RCPT r;
    const char *why = NULL;
    STORE *st;

    keeper_setup();
    k = keeper_create("answering TEMP", NULL);
    keeper_mirror(k, &mirror);
    assert_null(mirror);
    assert_int_equal(keeper_open(k), 0);
    st = keeper_store(k, &why);
    assert_non_null(st);
    assert_ptr_equal(mirror, st);
    assert_int_equal(store_rcpt_get(st, "alice@example.com", &r), 1);

    raw_exec("UPDATE source SET last_success = strftime('%s','now') - 7200 WHERE name = 'files'");
    keeper_tick(k);
    assert_null(keeper_store(k, &why));
    assert_non_null(strstr(why, "stale"));
    assert_null(mirror);
    assert_int_equal(keeper_open(k), 1);
    assert_non_null(keeper_handle(k));

    raw_exec("UPDATE source SET last_success = strftime('%s','now') WHERE name = 'files'");
    keeper_tick(k);
    assert_non_null(keeper_store(k, &why));
    assert_non_null(mirror);

    /* max_age off: never stale */
    raw_exec("UPDATE source SET last_success = 1 WHERE name = 'files'");
    var_store_max_age_ms = 0;
    keeper_tick(k);
    assert_non_null(keeper_store(k, &why));
    keeper_free(k);
}

/*
 * replace_file - move the store from over the store to, as a postmaster
 * must: with the old -wal and -shm removed first, since SQLite would
 * apply what the old write-ahead log holds to the new file
 */
static void replace_file(const char *from, const char *to)
{
    char aside[320];

    snprintf(aside, sizeof(aside), "%s-wal", to);
    (void) unlink(aside);
    snprintf(aside, sizeof(aside), "%s-shm", to);
    (void) unlink(aside);
    assert_int_equal(rename(from, to), 0);
}

/*
 * The keeper: a failure on the handle closes it (answer NULL until a
 * reopen), a replaced file is reopened, a vanished one closed.
 */
static void test_keeper_file(void **state)
{
    char err[512] = "";
    char other[320], path[300];
    KEEPER *k;
    STORE *mirror = NULL;
    STORE_RCPT r;
    const char *why = NULL;
    STORE *st, *st2;

    keeper_setup();
    snprintf(path, sizeof(path), "%s", test_path);
    k = keeper_create("answering TEMP", NULL);
    keeper_mirror(k, &mirror);
    st = keeper_read(k, &why);
    assert_non_null(st);
    assert_int_equal(store_rcpt_get(st, "alice@example.com", &r), 1);
    keeper_read_end(k);

    /* a failed lookup nobody reported: noticed at the next call */
    raw_exec("DROP TABLE domain");
    assert_int_equal(store_domain_get(st, "example.com", &(STORE_DOMAIN) {0}), -1);
    assert_null(keeper_store(k, &why));
    assert_null(mirror);
    assert_int_equal(keeper_open(k), 0);
    /* the file is broken now: a reopen fails, and says why */
    keeper_reopen(k);
    assert_null(keeper_store(k, &why));

    /* a new store moved over the path is opened */
    snprintf(test_path, sizeof(test_path), "%s/store-%d.db", test_dir, ++test_seq);
    st2 = open_new();
    assert_int_equal(store_static_add(st2, "new@example.com"), 1);
    store_close(st2);
    snprintf(other, sizeof(other), "%s", test_path);
    snprintf(test_path, sizeof(test_path), "%s", path);
    replace_file(other, path);
    keeper_reopen(k);
    st = keeper_store(k, &why);
    if (st == NULL)
        fail_msg("reopen: %s", why);
    assert_int_equal(store_rcpt_get(st, "new@example.com", &r), 1);

    /* replaced while open: the next tick reopens the new file */
    snprintf(test_path, sizeof(test_path), "%s/store-%d.db", test_dir, ++test_seq);
    st2 = open_new();
    assert_int_equal(store_static_add(st2, "newer@example.com"), 1);
    store_close(st2);
    snprintf(other, sizeof(other), "%s", test_path);
    snprintf(test_path, sizeof(test_path), "%s", path);
    replace_file(other, path);
    keeper_tick(k);
    st = keeper_store(k, &why);
    if (st == NULL)
        fail_msg("after the replace: %s", why);
    assert_int_equal(store_rcpt_get(st, "newer@example.com", &r), 1);

    /* vanished: closed, and the reason names the file */
    assert_int_equal(unlink(path), 0);
    keeper_tick(k);
    assert_null(keeper_store(k, &why));
    assert_non_null(strstr(why, path));
    keeper_free(k);
    (void) err;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_migrate_new, setup),
        cmocka_unit_test_setup(test_runs_pruned, setup),
        cmocka_unit_test_setup(test_missing, setup),
        cmocka_unit_test_setup(test_schema_too_new, setup),
        cmocka_unit_test_setup(test_schema_older, setup),
        cmocka_unit_test_setup(test_corrupt, setup),
        cmocka_unit_test_setup(test_corrupt_schema, setup),
        cmocka_unit_test_setup(test_replace_counts, setup),
        cmocka_unit_test_setup(test_replace_sources, setup),
        cmocka_unit_test_setup(test_replace_abort, setup),
        cmocka_unit_test_setup(test_replace_refuses, setup),
        cmocka_unit_test_setup(test_replace_staged, setup),
        cmocka_unit_test_setup(test_stats, setup),
        cmocka_unit_test_setup(test_domains, setup),
        cmocka_unit_test_setup(test_static, setup),
        cmocka_unit_test_setup(test_rcpt_walk, setup),
        cmocka_unit_test_setup(test_read_snapshot, setup),
        cmocka_unit_test_setup(test_read_current, setup),
        cmocka_unit_test_setup(test_broken, setup),
        cmocka_unit_test_setup(test_locked, setup),
        cmocka_unit_test_setup(test_readonly, setup),
        cmocka_unit_test_setup(test_readonly_older, setup),
        cmocka_unit_test_setup(test_keeper_stale, setup),
        cmocka_unit_test_setup(test_keeper_file, setup),
    };

    return cmocka_run_group_tests_name("store", tests, group_setup, group_teardown);
}
