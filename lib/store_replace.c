/*
 * store_replace.c - replace one source's recipients as one transaction
 *
 * An import hands over the complete new set of a source. The set is
 * staged in a TEMP table of the connection (temp.rg_replace, keyed by
 * address), not in memory: SQLite's temporary database lives in a file
 * (temp_store = FILE) behind a page cache of a few megabytes, so a set of
 * a million addresses, or a file repeating one address three million
 * times, costs the same few megabytes of memory. A repeated address is
 * one row (the last kind wins), deduplicated by the table's key as it
 * comes in.
 *
 * Nothing of the store is locked while the set is loaded (the staging
 * writes touch the temporary database only, in a transaction of their
 * own): the write transaction (BEGIN IMMEDIATE) starts at the first
 * store_replace_diff() or at store_replace_commit(). The comparison is
 * done inside it by SQL over the two tables (a join on the recipient
 * table's primary key), so the counts and what is applied agree with the
 * data that was there, and only the differences are written: a
 * re-import of 1,000,000 unchanged addresses writes nothing but the run
 * record. Until COMMIT readers see the old set; on any error nothing is
 * applied. The source row, the lock and the run record are
 * store_bulk.c's, shared with store_sync.c.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_int.h"
#include "xalloc.h"

struct store_repl {
    STORE_RUN run;              /* source, lock, clocks */
    int loading;                /* the staging transaction is open */
    int merged;                 /* counts are those of the locked store */
    long long added;            /* rows staged (with repeats), for the debug log */
    STORE_COUNTS counts;
};

/* The staging table: created once per connection, emptied after each replacement. */
#define STORE_REPL_TABLE \
    "CREATE TEMP TABLE IF NOT EXISTS rg_replace (address TEXT PRIMARY KEY, kind TEXT NOT NULL) " \
    "WITHOUT ROWID"

/* Statements, prepared on the first replacement and kept with the handle. */
enum store_rstmt {
    RSTMT_STAGE,
    RSTMT_CLEAR,
    RSTMT_COUNT_NEW,
    RSTMT_COUNT_OLD,
    RSTMT_DELETE,
    RSTMT_UPDATE,
    RSTMT_INSERT,
    RSTMT_LOAD_BEGIN,
    RSTMT_LOAD_END,
    RSTMT_GONE,
    RSTMT_COUNT
};

static const char *const store_rsql[RSTMT_COUNT] = {
    [RSTMT_STAGE] = "INSERT INTO temp.rg_replace (address, kind) VALUES (?1, ?2) "
        "ON CONFLICT (address) DO UPDATE SET kind = excluded.kind",
    [RSTMT_CLEAR] = "DELETE FROM temp.rg_replace",
    /* added, changed, kept: each staged address looked up by the primary key */
    [RSTMT_COUNT_NEW] = "SELECT COALESCE(sum(r.address IS NULL), 0), COALESCE(sum(r.kind <> n.kind), 0), "
        "COALESCE(sum(r.kind = n.kind), 0) FROM temp.rg_replace n "
        "LEFT JOIN recipient r ON r.address = n.address AND r.source_id = ?1",
    [RSTMT_COUNT_OLD] = "SELECT count(*) FROM recipient WHERE source_id = ?1",
    [RSTMT_DELETE] = "DELETE FROM recipient WHERE source_id = ?1 "
        "AND address NOT IN (SELECT address FROM temp.rg_replace)",
    [RSTMT_UPDATE] = "UPDATE recipient SET kind = n.kind, last_seen = ?2 FROM temp.rg_replace n "
        "WHERE recipient.address = n.address AND recipient.source_id = ?1 AND recipient.kind <> n.kind",
    [RSTMT_INSERT] = "INSERT INTO recipient (address, source_id, kind, flags, last_seen) "
        "SELECT n.address, ?1, n.kind, 0, ?2 FROM temp.rg_replace n WHERE NOT EXISTS "
        "(SELECT 1 FROM recipient r WHERE r.address = n.address AND r.source_id = ?1)",
    [RSTMT_LOAD_BEGIN] = "BEGIN",
    [RSTMT_LOAD_END] = "COMMIT",
    [RSTMT_GONE] = "SELECT address FROM recipient WHERE source_id = ?1 "
        "AND address NOT IN (SELECT address FROM temp.rg_replace) ORDER BY address LIMIT ?2",
};

_Static_assert(RSTMT_COUNT <= STORE_RSTMT_MAX, "STORE_RSTMT_MAX too small");

/* store_replace_forget - end the replacement: roll back what is open, empty the stage, free */
static void store_replace_forget(STORE *st)
{
    STORE_REPL *r = st->repl;

    if (r == NULL)
        return;
    if (r->loading)
        store_rollback(st);
    store_bulk_run_free(st, &r->run);
    /* The staged rows go; the temporary file keeps its pages for the next one. */
    if (st->rstmt[RSTMT_CLEAR] != NULL && sqlite3_get_autocommit(st->db)) {
        (void) sqlite3_step(st->rstmt[RSTMT_CLEAR]);
        sqlite3_reset(st->rstmt[RSTMT_CLEAR]);
    }
    free(r);
    st->repl = NULL;
}

/* store_replace_close - for store_close: the replacement and its statements */
void store_replace_close(STORE *st)
{
    store_replace_forget(st);
    for (int i = 0; i < STORE_RSTMT_MAX; i++) {
        sqlite3_finalize(st->rstmt[i]);
        st->rstmt[i] = NULL;
    }
}

/* store_replace_stage - the staging table and its statements, once per handle */
static int store_replace_stage(STORE *st)
{
    if (st->rstmt[0] != NULL)
        return 0;
    /* On disk behind a small cache, whatever the build's default: the point is bounded memory. */
    if (sqlite3_exec(st->db, "PRAGMA temp_store = FILE; PRAGMA temp.cache_size = -4096; "
                     STORE_REPL_TABLE, NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(st, "creating the staging table");
    return store_bulk_prepare(st, st->rstmt, store_rsql, RSTMT_COUNT);
}

/* store_replace_begin - start collecting the new set of one source */
int store_replace_begin(STORE *st, const char *source, const char *type)
{
    STORE_REPL *r;

    if (store_bulk_may_begin(st, source, type) < 0 || store_replace_stage(st) < 0)
        return -1;
    store_read_end(st);
    r = xcalloc(1, sizeof(*r));
    store_bulk_run_init(&r->run, source, type, strcmp(type, "import") == 0 ? "import" : "full");
    st->repl = r;
    return 0;
}

/* store_replace_add - one address of the new set; a repeat replaces the earlier one */
int store_replace_add(STORE *st, const char *address, const char *kind)
{
    STORE_REPL *r;
    sqlite3_stmt *s = st->rstmt[RSTMT_STAGE];

    if (store_usable(st) < 0)
        return -1;
    if ((r = st->repl) == NULL)
        return store_errf(st, "no replacement in progress");
    if (address == NULL || *address == 0 || kind == NULL || *kind == 0)
        return store_errf(st, "an empty address or kind");
    if (r->merged)
        return store_errf(st, "the set was compared already: no more addresses");
    /* The staging writes touch only the temporary database: the store stays unlocked. */
    if (!r->loading) {
        if (store_step_done(st, st->rstmt[RSTMT_LOAD_BEGIN], "staging the new set") < 0)
            return -1;
        r->loading = 1;
    }
    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "staging the new set");
    if (store_step_done(st, s, "staging the new set") < 0)
        return -1;
    r->added++;
    return 0;
}

/* store_replace_count - one row of integers from s (bound to the source) into v[] */
static int store_replace_count(STORE *st, sqlite3_stmt *s, long long *v, int n)
{
    int rc;

    if (sqlite3_bind_int64(s, 1, st->repl->run.source_id) != SQLITE_OK)
        return store_fail(st, "comparing with the store");
    if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
        store_fail(st, "comparing with the store");
        sqlite3_reset(s);
        return -1;
    }
    for (int i = 0; i < n; i++)
        v[i] = sqlite3_column_int64(s, i);
    sqlite3_reset(s);
    return 0;
}

/*
 * store_replace_merge - end the staging, take the write lock (once), then
 * count what the new set adds, changes, keeps and removes.
 */
static int store_replace_merge(STORE *st)
{
    STORE_REPL *r = st->repl;
    struct timespec t;
    long long v[3], old;

    if (r->merged)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (r->loading) {
        if (store_step_done(st, st->rstmt[RSTMT_LOAD_END], "staging the new set") < 0)
            return -1;
        r->loading = 0;
    }
    if (store_bulk_lock(st, &r->run) < 0)
        return -1;
    /*
     * Both tables are walked in address order, so a small page cache does:
     * store_bulk_lock's 64 MB would be most of an import's memory.
     */
    if (sqlite3_exec(st->db, "PRAGMA main.cache_size = -8192", NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(st, "sizing the page cache");
    if (store_replace_count(st, st->rstmt[RSTMT_COUNT_NEW], v, 3) < 0
        || store_replace_count(st, st->rstmt[RSTMT_COUNT_OLD], &old, 1) < 0)
        return -1;
    r->counts.added = v[0];
    r->counts.changed = v[1];
    r->counts.kept = v[2];
    r->counts.removed = old - v[1] - v[2];
    log_debug("store %s: %lld addresses staged, %lld distinct", st->path, r->added,
              v[0] + v[1] + v[2]);
    store_bulk_lap(st, "comparing with the store", &t);
    r->merged = 1;
    return 0;
}

/* store_replace_diff - what commit would do, without applying it */
int store_replace_diff(STORE *st, STORE_COUNTS *counts)
{
    if (store_usable(st) < 0)
        return -1;
    if (st->repl == NULL)
        return store_errf(st, "no replacement in progress");
    if (store_replace_merge(st) < 0) {
        store_replace_forget(st);
        return -1;
    }
    *counts = st->repl->counts;
    return 0;
}

/* store_replace_gone - up to limit addresses commit would remove, in address order */
int store_replace_gone(STORE *st, int (*fn)(const char *address, void *ctx), void *ctx, int limit)
{
    sqlite3_stmt *s = st->rstmt[RSTMT_GONE];
    int rc;

    if (store_usable(st) < 0)
        return -1;
    if (st->repl == NULL || !st->repl->merged)
        return store_errf(st, "no compared replacement in progress");
    if (sqlite3_bind_int64(s, 1, st->repl->run.source_id) != SQLITE_OK
        || sqlite3_bind_int(s, 2, limit) != SQLITE_OK)
        return store_fail(st, "listing the removals");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (fn(store_text(s, 0), ctx) != 0)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        store_fail(st, "listing the removals");
        sqlite3_reset(s);
        return -1;
    }
    sqlite3_reset(s);
    return 0;
}

/* store_replace_exec - run one of the apply statements, bound to the source and now */
static int store_replace_exec(STORE *st, sqlite3_stmt *s, long long now, const char *what)
{
    if (sqlite3_bind_int64(s, 1, st->repl->run.source_id) != SQLITE_OK
        || (sqlite3_bind_parameter_count(s) >= 2 && sqlite3_bind_int64(s, 2, now) != SQLITE_OK))
        return store_fail(st, what);
    return store_step_done(st, s, what);
}

/* store_replace_apply - write the differences: removals, changes, additions */
static int store_replace_apply(STORE *st)
{
    long long now = store_now();

    if (st->repl->counts.removed > 0
        && store_replace_exec(st, st->rstmt[RSTMT_DELETE], now, "removing recipients") < 0)
        return -1;
    if (st->repl->counts.changed > 0
        && store_replace_exec(st, st->rstmt[RSTMT_UPDATE], now, "updating recipients") < 0)
        return -1;
    if (st->repl->counts.added > 0
        && store_replace_exec(st, st->rstmt[RSTMT_INSERT], now, "storing recipients") < 0)
        return -1;
    return 0;
}

/* store_replace_commit - apply the difference and record the run */
int store_replace_commit(STORE *st, STORE_COUNTS *counts)
{
    STORE_REPL *r;
    struct timespec t;

    if (store_usable(st) < 0)
        return -1;
    if ((r = st->repl) == NULL)
        return store_errf(st, "no replacement in progress");
    t = r->run.t0;
    store_bulk_lap(st, "loading the new set", &t);
    if (store_replace_merge(st) < 0)
        goto fail;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (store_replace_apply(st) < 0)
        goto fail;
    store_bulk_lap(st, "applying the differences", &t);
    if (store_bulk_run_add(st, &r->run, 1, "ok", "", &r->counts) < 0)
        goto fail;
    if (store_bulk_commit(st, &r->run) < 0)
        goto fail;
    store_bulk_lap(st, "committing", &t);
    if (counts != NULL)
        *counts = r->counts;
    store_replace_forget(st);
    return 0;

fail:
    store_replace_forget(st);
    return -1;
}

/* store_replace_abort - apply nothing; safe after an error or without begin */
void store_replace_abort(STORE *st)
{
    if (st == NULL || st->db == NULL)
        return;
    store_replace_forget(st);
}

/* store_replace_refuse - apply nothing, but record the attempt */
int store_replace_refuse(STORE *st, const char *outcome, const char *message,
                         const STORE_COUNTS *counts)
{
    STORE_REPL *r;
    int rc;

    if (store_usable(st) < 0)
        return -1;
    if ((r = st->repl) == NULL)
        return store_errf(st, "no replacement in progress");
    /* Nothing of the set is written; only the run, in its own transaction. */
    if (r->loading) {
        store_rollback(st);
        r->loading = 0;
    }
    rc = store_bulk_refuse(st, &r->run, outcome, message, counts);
    store_replace_forget(st);
    return rc;
}
