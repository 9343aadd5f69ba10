/*
 * store_sync_stage.c - a full pull staged in a temporary database and compared in SQL
 *
 * A full pull used to be held in memory, every object and a copy of each
 * of its strings, until the diff: memory in proportion to the directory
 * (294 MiB at 1,000,000 entries). Here each object is written as it
 * arrives into tables of a private temporary database attached to the
 * store's connection (ATTACH '' AS rg_stage; store_replace.c stages an
 * import the same way in TEMP tables): a file in SQLITE_TMPDIR (or
 * TMPDIR, /var/tmp, /tmp), about 150 bytes per address, which SQLite
 * deletes when it is detached at the pull's end, behind a page cache of
 * a few megabytes, so the pull costs the same memory whatever its size.
 *
 *   rg_sync_obj    (seq, guid, dn, kind, flags, id, op)  one row per put
 *   rg_sync_addr   (seq, address)    the object's addresses, unique
 *   rg_sync_login  (seq, name)       its logins, unique
 *   rg_sync_member (seq, dn)         its member DNs, as put
 *
 * Staging touches only the temporary database, in a transaction of its
 * own, so nothing of the store is locked while the directory is read.
 * At store_sync_diff (or commit) the write lock is taken and the pull is
 * compared with the store by SQL. The rules are those of the in-memory
 * merge that came before (store_sync_legacy.c), which
 * tests/unit/test_sync_equiv checks table by table, ids included:
 *
 *  - of several puts of one guid the last counts;
 *  - objects match by guid and keep their id (a rename is an update);
 *  - rg_sync_want holds one row per wanted address and who gets it: the
 *    object that holds it in the store while it still carries it, or else
 *    the carrier with the lowest guid. The others' claims go to the claim
 *    table, each told once when it begins and when it ends;
 *  - new objects are numbered from the largest id so far, in the order
 *    of the first address they hold, then in put order;
 *  - member DNs resolve ASCII case-insensitively (NOCASE) against the
 *    DNs of the pull's objects; of objects sharing a DN the lowest guid.
 *
 * Only differences are written. The indexes the comparison needs are
 * built on the staged tables after the load, by sorting, not row by row.
 * While the pull is compared and applied, the main database's page cache
 * is capped (SYNC_STAGE_CACHE_KB; SQLite's sorter takes no more than that
 * either) and its memory map switched off (mapped pages count in the
 * resident size; set back at the end). The staging database keeps no
 * journal and never syncs: it is thrown away whatever happens.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_sync_int.h"
#include "xalloc.h"

/* Page caches while a full pull is staged, compared and applied (KiB). */
#define SYNC_STAGE_CACHE_KB         16384
#define SYNC_STAGE_TEMP_CACHE_KB    8192
#define STAGE_STR_(x) #x
#define STAGE_STR(x) STAGE_STR_(x)

enum stage_stmt {
    GSTMT_BEGIN,
    GSTMT_COMMIT,
    GSTMT_ANY_DUPS,
    GSTMT_DUPS,
    GSTMT_OBJ_MATCH,
    GSTMT_WANT,
    GSTMT_WANT_HOLDER,
    GSTMT_WANT_OP,
    GSTMT_COUNT_WANT,
    GSTMT_COUNT_OLD,
    GSTMT_COUNT_OBJ,
    GSTMT_GONE,
    GSTMT_HAD_OBJECTS,
    GSTMT_COUNT_ADDR,
    GSTMT_COUNT
};

static const char *const stage_stmts[GSTMT_COUNT] = {
    [GSTMT_BEGIN] = "BEGIN",
    [GSTMT_COMMIT] = "COMMIT",
    /* Is any guid put twice? One pass over the guid index, a third of GSTMT_DUPS's cost. */
    [GSTMT_ANY_DUPS] = "SELECT (SELECT count(DISTINCT guid) FROM rg_stage.rg_sync_obj) "
        "< (SELECT count(*) FROM rg_stage.rg_sync_obj)",
    /* Earlier puts of a guid put again: the last one counts. */
    [GSTMT_DUPS] = "INSERT INTO rg_stage.rg_sync_dup (seq) SELECT o.seq FROM rg_stage.rg_sync_obj o "
        "WHERE EXISTS (SELECT 1 FROM rg_stage.rg_sync_obj p WHERE p.guid = o.guid AND p.seq > o.seq)",
    /* Objects already stored: their id, and whether dn, kind or flags change (op 2) or not (0). */
    [GSTMT_OBJ_MATCH] = "UPDATE rg_stage.rg_sync_obj SET (id, op) = (SELECT o.id, CASE WHEN "
        "o.dn = rg_sync_obj.dn AND o.kind = rg_sync_obj.kind AND o.flags = rg_sync_obj.flags "
        "THEN 0 ELSE 2 END FROM main.object o WHERE o.source_id = ?1 AND o.guid = rg_sync_obj.guid "
        "UNION ALL SELECT NULL, 1 LIMIT 1)",
    /* One row per address: the carrier with the lowest guid, and how many carry it. */
    [GSTMT_WANT] = "INSERT INTO rg_stage.rg_sync_want (address, seq, n) SELECT a.address, "
        "CASE WHEN count(*) = 1 THEN max(a.seq) ELSE (SELECT a2.seq FROM rg_stage.rg_sync_addr a2 "
        "JOIN rg_stage.rg_sync_obj o2 ON o2.seq = a2.seq WHERE a2.address = a.address "
        "ORDER BY o2.guid LIMIT 1) END, count(*) FROM rg_stage.rg_sync_addr a GROUP BY a.address",
    /* An address several carry stays with the object holding it in the store, if it carries it. */
    [GSTMT_WANT_HOLDER] = "UPDATE rg_stage.rg_sync_want SET seq = COALESCE((SELECT a.seq "
        "FROM rg_stage.rg_sync_addr a JOIN rg_stage.rg_sync_obj o ON o.seq = a.seq "
        "WHERE a.address = rg_sync_want.address AND o.id = (SELECT r.object_id FROM main.recipient r "
        "WHERE r.address = rg_sync_want.address AND r.source_id = ?1)), seq) WHERE n > 1",
    /* Rows that exist: kept (0) when object, kind and flags are the same, else changed (2). */
    [GSTMT_WANT_OP] = "UPDATE rg_stage.rg_sync_want SET op = CASE WHEN r.object_id = o.id "
        "AND r.kind = o.kind AND r.flags = o.flags THEN 0 ELSE 2 END "
        "FROM main.recipient r, rg_stage.rg_sync_obj o WHERE r.address = rg_sync_want.address "
        "AND r.source_id = ?1 AND o.seq = rg_sync_want.seq",
    [GSTMT_COUNT_WANT] = "SELECT COALESCE(sum(op = 1), 0), COALESCE(sum(op = 2), 0), "
        "COALESCE(sum(op = 0), 0) FROM rg_stage.rg_sync_want",
    [GSTMT_COUNT_OLD] = "SELECT count(*) FROM main.recipient WHERE source_id = ?1",
    [GSTMT_COUNT_OBJ] = "SELECT COALESCE(sum(op = 1), 0), COALESCE(sum(op = 2), 0) FROM rg_stage.rg_sync_obj",
    [GSTMT_GONE] = "SELECT address FROM main.recipient WHERE source_id = ?1 AND address NOT IN "
        "(SELECT address FROM rg_stage.rg_sync_want) ORDER BY address LIMIT ?2",
    [GSTMT_COUNT_ADDR] = "SELECT count(*) FROM rg_stage.rg_sync_addr",
    [GSTMT_HAD_OBJECTS] = "SELECT EXISTS (SELECT 1 FROM main.object WHERE source_id = ?1)",
};

/* The staging tables, created at each full pull's begin (the file goes at its end). */
static const char stage_create[] =
    "CREATE TABLE rg_stage.rg_sync_obj (seq INTEGER PRIMARY KEY, guid TEXT NOT NULL, dn TEXT NOT NULL, "
    "kind TEXT NOT NULL, flags INTEGER NOT NULL, id INTEGER, op INTEGER NOT NULL DEFAULT 1); "
    "CREATE TABLE rg_stage.rg_sync_addr (seq INTEGER NOT NULL, address TEXT NOT NULL); "
    "CREATE TABLE rg_stage.rg_sync_login (seq INTEGER NOT NULL, name TEXT NOT NULL); "
    "CREATE TABLE rg_stage.rg_sync_member (seq INTEGER NOT NULL, dn TEXT NOT NULL); "
    "CREATE TABLE rg_stage.rg_sync_dup (seq INTEGER PRIMARY KEY); "
    "CREATE TABLE rg_stage.rg_sync_want (address TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
    "n INTEGER NOT NULL, op INTEGER NOT NULL DEFAULT 1) WITHOUT ROWID; "
    "CREATE TABLE rg_stage.rg_sync_new (n INTEGER PRIMARY KEY, seq INTEGER NOT NULL UNIQUE); "
    "CREATE TABLE rg_stage.rg_sync_gone (id INTEGER PRIMARY KEY); "
    "CREATE TABLE rg_stage.rg_sync_wlogin (object_id INTEGER NOT NULL, name TEXT NOT NULL, "
    "PRIMARY KEY (object_id, name)) WITHOUT ROWID; "
    "CREATE TABLE rg_stage.rg_sync_dn (dn TEXT NOT NULL COLLATE NOCASE PRIMARY KEY, id INTEGER NOT NULL) "
    "WITHOUT ROWID; "
    "CREATE TABLE rg_stage.rg_sync_wmember (group_id INTEGER NOT NULL, member_id INTEGER NOT NULL, "
    "PRIMARY KEY (group_id, member_id)) WITHOUT ROWID";

/*
 * The staging writes are multi-row INSERTs (store_bulk.c): a put costs a
 * few bound values, not a statement per row. Their text lives in an
 * arena until the batches run, which they all do when it holds
 * SYNC_STAGE_ARENA bytes, so that it stays small.
 */
#define SYNC_STAGE_ARENA    (2 * 1024 * 1024)

static const int stage_cols5[] = {0, 0, 0, 0, 0};
static const int stage_cols2[] = {0, 0};

struct sync_stage {
    sqlite3_stmt *stmt[GSTMT_COUNT];
    STORE_BATCH *b_obj, *b_addr, *b_login, *b_member;
    STORE_ARENA arena;
    size_t arena_used;                  /* bytes copied into it since the last flush */
    long long seq;                      /* the last put's number */
    int had_objects;                    /* the source had objects before this pull */
    long long addr_rows;                /* staged (object, address) rows after the merge */
    int loading;                        /* the staging transaction is open */
    int failed;                         /* a staging write failed: the pull is partial */
    int created;                        /* rg_stage is attached */
    long long mmap_size;                /* the connection's, set back at the end */
    long long puts, members;            /* objects and member DNs staged */
    const char **scratch;               /* one object's values, to sort */
    size_t capscratch;
};

/* stage_exec - run SQL of several statements; 0 or -1 */
static int stage_exec(STORE *st, const char *sql, const char *what)
{
    if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(st, what);
    return 0;
}

/* stage_run - run a prepared statement of the stage bound to the source (?1) and maybe ?2 */
static int stage_run(STORE *st, sqlite3_stmt *s, long long two, const char *what)
{
    int n = sqlite3_bind_parameter_count(s);

    if ((n >= 1 && sqlite3_bind_int64(s, 1, st->sync->run.source_id) != SQLITE_OK)
        || (n >= 2 && sqlite3_bind_int64(s, 2, two) != SQLITE_OK))
        return store_fail(st, what);
    return store_step_done(st, s, what);
}

/* stage_sql - prepare and run one statement (bound as stage_run); rows changed or -1 */
static long long stage_sql(STORE *st, const char *sql, long long two, const char *what)
{
    sqlite3_stmt *s;
    int rc;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail(st, what);
    rc = stage_run(st, s, two, what);
    sqlite3_finalize(s);
    return rc < 0 ? -1 : sqlite3_changes(st->db);
}

/* stage_ints - one row of n integers from s (bound as stage_run) into v */
static int stage_ints(STORE *st, sqlite3_stmt *s, long long *v, int n, const char *what)
{
    if (sqlite3_bind_parameter_count(s) >= 1
        && sqlite3_bind_int64(s, 1, st->sync->run.source_id) != SQLITE_OK)
        return store_fail(st, what);
    if (sqlite3_step(s) != SQLITE_ROW) {
        store_fail(st, what);
        sqlite3_reset(s);
        return -1;
    }
    for (int i = 0; i < n; i++)
        v[i] = sqlite3_column_int64(s, i);
    sqlite3_reset(s);
    return 0;
}

/* store_sync_stage_begin - the staging database, tables and statements of a full pull */
int store_sync_stage_begin(STORE *st)
{
    SYNC_STAGE *g = xcalloc(1, sizeof(*g));
    sqlite3_stmt *s;

    st->sync->stage = g;
    store_read_end(st);
    /* On disk behind a small cache, whatever the build's default: the point is bounded memory. */
    /*
     * A private temporary database of its own (ATTACH ''): a file that
     * SQLite deletes when it is detached, so that ending the pull costs no
     * freeing of its pages. Sorts and SQLite's own temporary tables go to
     * files too (temp_store = FILE).
     */
    /* One left over by a pull that could not detach it (it ended inside a transaction). */
    (void) sqlite3_exec(st->db, "DETACH DATABASE rg_stage", NULL, NULL, NULL);
    if (stage_exec(st, "PRAGMA temp_store = FILE; ATTACH DATABASE '' AS rg_stage",
                   "creating the staging tables") < 0)
        return -1;
    g->created = 1;
    if (stage_exec(st, "PRAGMA rg_stage.cache_size = -" STAGE_STR(SYNC_STAGE_TEMP_CACHE_KB) "; "
                   "PRAGMA rg_stage.journal_mode = OFF; PRAGMA rg_stage.synchronous = OFF",
                   "creating the staging tables") < 0
        || stage_exec(st, stage_create, "creating the staging tables") < 0)
        return -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA main.mmap_size", -1, &s, NULL) != SQLITE_OK)
        return store_fail(st, "reading mmap_size");
    g->mmap_size = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    for (int i = 0; i < GSTMT_COUNT; i++)
        if (sqlite3_prepare_v3(st->db, stage_stmts[i], -1, 0, &g->stmt[i], NULL) != SQLITE_OK)
            return store_fail(st, "preparing the staging statements");
    g->b_obj = xmalloc(sizeof(*g->b_obj));
    g->b_addr = xmalloc(sizeof(*g->b_addr));
    g->b_login = xmalloc(sizeof(*g->b_login));
    g->b_member = xmalloc(sizeof(*g->b_member));
    store_bulk_batch_init(g->b_obj, "staging the pull", "INSERT INTO rg_stage.rg_sync_obj "
                          "(seq, guid, dn, kind, flags) VALUES ", "", stage_cols5, 5, NULL, 0);
    store_bulk_batch_init(g->b_addr, "staging the pull", "INSERT INTO rg_stage.rg_sync_addr "
                          "(seq, address) VALUES ", "", stage_cols2, 2, NULL, 0);
    store_bulk_batch_init(g->b_login, "staging the pull", "INSERT INTO rg_stage.rg_sync_login "
                          "(seq, name) VALUES ", "", stage_cols2, 2, NULL, 0);
    store_bulk_batch_init(g->b_member, "staging the pull", "INSERT INTO rg_stage.rg_sync_member "
                          "(seq, dn) VALUES ", "", stage_cols2, 2, NULL, 0);
    return 0;
}

/* stage_flush - run every batch's rows, then free the text they bound */
static int stage_flush(STORE *st, SYNC_STAGE *g)
{
    if (store_bulk_batch_flush(st, g->b_obj) < 0 || store_bulk_batch_flush(st, g->b_addr) < 0
        || store_bulk_batch_flush(st, g->b_login) < 0 || store_bulk_batch_flush(st, g->b_member) < 0)
        return -1;
    store_bulk_arena_free(&g->arena);
    g->arena_used = 0;
    return 0;
}

/* stage_copy - text a batch binds, copied until the flush */
static const char *stage_copy(SYNC_STAGE *g, const char *s)
{
    g->arena_used += strlen(s) + 1;
    return store_bulk_strdup(&g->arena, s);
}

/* stage_text - one (seq, text) row into batch b */
static int stage_text(STORE *st, SYNC_STAGE *g, STORE_BATCH *b, const char *text)
{
    store_bulk_batch_int(b, g->seq);
    store_bulk_batch_text(b, stage_copy(g, text));
    return store_bulk_batch_row(st, b);
}

/* stage_unique - copy n values into the scratch list, sorted and unique; the count */
static uint32_t stage_unique(SYNC_STAGE *g, const char *const *v, size_t n)
{
    if (n > g->capscratch) {
        g->capscratch = n < 16 ? 16 : n;
        g->scratch = xrealloc(g->scratch, g->capscratch * sizeof(*g->scratch));
    }
    for (size_t i = 0; i < n; i++)
        g->scratch[i] = v[i];
    return store_sync_unique_strs(g->scratch, (uint32_t) n);
}

/* store_sync_stage_put - stage one object (checked by store_sync_check; kind its index) */
int store_sync_stage_put(STORE *st, const STORE_OBJECT *obj, int kind)
{
    SYNC_STAGE *g = st->sync->stage;
    uint32_t n;

    if (g->failed)
        return store_errf(st, "staging the pull failed before");
    /* The staging writes touch only the temporary database: the store stays unlocked. */
    if (!g->loading) {
        if (store_step_done(st, g->stmt[GSTMT_BEGIN], "staging the pull") < 0)
            return -1;
        g->loading = 1;
    }
    g->failed = 1;                      /* until the whole object is in */
    g->seq++;
    store_bulk_batch_int(g->b_obj, g->seq);
    store_bulk_batch_text(g->b_obj, stage_copy(g, obj->guid));
    store_bulk_batch_text(g->b_obj, obj->dn ? stage_copy(g, obj->dn) : "");
    store_bulk_batch_text(g->b_obj, st->sync->kinds[kind]);
    store_bulk_batch_int(g->b_obj, obj->flags);
    if (store_bulk_batch_row(st, g->b_obj) < 0)
        return -1;
    n = stage_unique(g, obj->addresses, obj->n_addresses);
    for (uint32_t i = 0; i < n; i++)
        if (stage_text(st, g, g->b_addr, g->scratch[i]) < 0)
            return -1;
    n = stage_unique(g, obj->logins, obj->n_logins);
    for (uint32_t i = 0; i < n; i++)
        if (stage_text(st, g, g->b_login, g->scratch[i]) < 0)
            return -1;
    for (size_t i = 0; i < obj->n_members; i++)
        if (stage_text(st, g, g->b_member, obj->members[i]) < 0)
            return -1;
    if (g->arena_used >= SYNC_STAGE_ARENA && stage_flush(st, g) < 0)
        return -1;
    g->members += (long long) obj->n_members;
    g->puts++;
    g->failed = 0;
    return 0;
}

/* store_sync_stage_end - roll back the staging transaction if it is open */
void store_sync_stage_end(STORE *st)
{
    SYNC_STAGE *g = st->sync ? st->sync->stage : NULL;

    if (g != NULL && g->loading) {
        store_rollback(st);
        g->loading = 0;
    }
}

/* store_sync_stage_free - detach the staging database (outside a transaction), free the statements */
void store_sync_stage_free(STORE *st)
{
    SYNC_STAGE *g = st->sync ? st->sync->stage : NULL;
    char sql[64];

    if (g == NULL)
        return;
    for (int i = 0; i < GSTMT_COUNT; i++)
        sqlite3_finalize(g->stmt[i]);
    for (STORE_BATCH **b = (STORE_BATCH *[]) {g->b_obj, g->b_addr, g->b_login, g->b_member, NULL};
         *b != NULL; b++) {
        store_bulk_batch_free(*b);
        free(*b);
    }
    store_bulk_arena_free(&g->arena);
    if (sqlite3_get_autocommit(st->db)) {
        /* The staging file goes as a whole. */
        if (g->created && sqlite3_exec(st->db, "DETACH DATABASE rg_stage", NULL, NULL, NULL) != SQLITE_OK)
            log_warn("store %s: detaching the staging tables: %s", st->path, sqlite3_errmsg(st->db));
        snprintf(sql, sizeof(sql), "PRAGMA main.mmap_size = %lld", g->mmap_size);
        (void) sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    }
    free(g->scratch);
    free(g);
    st->sync->stage = NULL;
}

/* stage_index - the indexes the comparison needs, built by sorting once the load is over */
static int stage_index(STORE *st)
{
    return stage_exec(st, "CREATE INDEX rg_stage.rg_sync_obj_guid ON rg_sync_obj (guid, seq); "
                      "CREATE INDEX rg_stage.rg_sync_addr_address ON rg_sync_addr (address, seq)",
                      "indexing the pull");
}

/* stage_dedup - drop earlier puts of a guid put again, with their values */
static int stage_dedup(STORE *st)
{
    SYNC_STAGE *g = st->sync->stage;
    long long any;

    /* A pull rarely puts a guid twice: look for one first, cheaply. */
    if (stage_ints(st, g->stmt[GSTMT_ANY_DUPS], &any, 1, "comparing with the store") < 0)
        return -1;
    if (!any)
        return 0;
    if (stage_run(st, g->stmt[GSTMT_DUPS], 0, "comparing with the store") < 0)
        return -1;
    if (sqlite3_changes(st->db) == 0)
        return 0;
    return stage_exec(st, "DELETE FROM rg_stage.rg_sync_addr WHERE seq IN (SELECT seq FROM rg_stage.rg_sync_dup); "
                      "DELETE FROM rg_stage.rg_sync_login WHERE seq IN (SELECT seq FROM rg_stage.rg_sync_dup); "
                      "DELETE FROM rg_stage.rg_sync_member WHERE seq IN (SELECT seq FROM rg_stage.rg_sync_dup); "
                      "DELETE FROM rg_stage.rg_sync_obj WHERE seq IN (SELECT seq FROM rg_stage.rg_sync_dup)",
                      "comparing with the store");
}

/* store_sync_stage_merge - end the staging, take the lock (once), compare with the store, count */
int store_sync_stage_merge(STORE *st)
{
    STORE_SYNC *y = st->sync;
    SYNC_STAGE *g = y->stage;
    struct timespec t;
    long long v[3], old;

    if (y->merged)
        return 0;
    if (g->failed)
        return store_errf(st, "staging the pull failed: nothing applied");
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (g->loading) {
        if (stage_flush(st, g) < 0) {
            g->failed = 1;
            return -1;
        }
        if (store_step_done(st, g->stmt[GSTMT_COMMIT], "staging the pull") < 0)
            return -1;
        g->loading = 0;
    }
    store_bulk_lap(st, "staging the pull", &t);
    /* Mapped pages would count in the resident size: a full pull reads the whole table. */
    if (stage_exec(st, "PRAGMA main.mmap_size = 0", "sizing the memory map") < 0
        || store_sync_lock(st) < 0)
        return -1;
    /* store_bulk_lock's 64 MB would be most of the memory; the scans go in key order. */
    if (stage_exec(st, "PRAGMA main.cache_size = -" STAGE_STR(SYNC_STAGE_CACHE_KB),
                   "sizing the page cache") < 0)
        return -1;
    store_bulk_lap(st, "locking", &t);
    if (stage_index(st) < 0 || stage_dedup(st) < 0)
        return -1;
    store_bulk_lap(st, "indexing the pull", &t);
    /* A source with nothing stored yet (a first pull) skips what would find nothing. */
    if (stage_ints(st, g->stmt[GSTMT_HAD_OBJECTS], v, 1, "comparing with the store") < 0
        || stage_ints(st, g->stmt[GSTMT_COUNT_OLD], &old, 1, "comparing with the store") < 0)
        return -1;
    g->had_objects = v[0] != 0;
    if ((g->had_objects && stage_run(st, g->stmt[GSTMT_OBJ_MATCH], 0, "comparing with the store") < 0)
        || stage_run(st, g->stmt[GSTMT_WANT], 0, "comparing with the store") < 0
        || (old > 0 && stage_run(st, g->stmt[GSTMT_WANT_HOLDER], 0, "comparing with the store") < 0)
        || (old > 0 && stage_run(st, g->stmt[GSTMT_WANT_OP], 0, "comparing with the store") < 0)
        || stage_ints(st, g->stmt[GSTMT_COUNT_WANT], v, 3, "comparing with the store") < 0
        || stage_ints(st, g->stmt[GSTMT_COUNT_ADDR], &g->addr_rows, 1, "comparing with the store") < 0)
        return -1;
    y->counts.added = v[0];
    y->counts.changed = v[1];
    y->counts.kept = v[2];
    y->counts.removed = old - v[1] - v[2];
    if (stage_ints(st, g->stmt[GSTMT_COUNT_OBJ], v, 2, "comparing with the store") < 0)
        return -1;
    y->o_added = v[0];
    y->o_changed = v[1];
    log_debug("store %s: source %s: %lld objects staged", st->path, y->run.source, g->puts);
    store_bulk_lap(st, "comparing with the store", &t);
    y->merged = 1;
    return 0;
}

/* store_sync_gone - up to limit addresses commit would remove, in address order */
int store_sync_gone(STORE *st, int (*fn)(const char *address, void *ctx), void *ctx, int limit)
{
    sqlite3_stmt *s;
    int rc;

    if (store_usable(st) < 0)
        return -1;
    if (st->sync == NULL || st->sync->delta || st->sync->stage == NULL || !st->sync->merged)
        return store_errf(st, "no compared full sync in progress");
    s = st->sync->stage->stmt[GSTMT_GONE];
    if (sqlite3_bind_int64(s, 1, st->sync->run.source_id) != SQLITE_OK
        || sqlite3_bind_int(s, 2, limit) != SQLITE_OK)
        return store_fail(st, "listing the removals");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (fn(store_text(s, 0), ctx) != 0)
            break;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_fail(st, "listing the removals");
    return 0;
}

/* stage_cross - new rows of an address another source holds too: told once (store_sync_cross) */
static int stage_cross(STORE *st)
{
    sqlite3_stmt *s;
    SYNC_OBJ o;
    int rc;

    if (sqlite3_prepare_v2(st->db, "SELECT w.address, o.guid, o.dn, o.id FROM rg_stage.rg_sync_want w "
                           "JOIN rg_stage.rg_sync_obj o ON o.seq = w.seq WHERE w.op = 1 ORDER BY w.address",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail(st, "reading the pull");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        memset(&o, 0, sizeof(o));
        o.guid = store_text(s, 1);
        o.dn = store_text(s, 2);
        o.id = sqlite3_column_int64(s, 3);
        if (store_sync_cross(st, store_text(s, 0), &o) < 0) {
            sqlite3_finalize(s);
            return -1;
        }
        if (st->sync->others == 0)
            break;                      /* no other source: nothing to tell */
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_fail(st, "reading the pull");
    return 0;
}

/* A claim: address, claimant (id, dn, guid, flags), holder (the same). */
typedef struct stage_claim {
    char *address;
    long long id, hid;
    char *dn, *guid, *hdn, *hguid;
    int flags, hflags;
} STAGE_CLAIM;

/* A stored claim of the source. */
typedef struct stage_row {
    char *address;
    long long id;
} STAGE_ROW;

/* stage_claim_vs_row - a wanted claim against a stored one, in the scan's order (address, id) */
static int stage_claim_vs_row(const STAGE_CLAIM *w, const STAGE_ROW *r)
{
    int d = strcmp(w->address, r->address);

    return d != 0 ? d : (w->id > r->id) - (w->id < r->id);
}

/* stage_holder_id - the id of the object the pull gives address to, or 0 */
static long long stage_holder_id(STORE *st, const char *address)
{
    sqlite3_stmt *s;
    long long id = 0;

    if (sqlite3_prepare_v2(st->db, "SELECT o.id FROM rg_stage.rg_sync_want w JOIN rg_stage.rg_sync_obj o "
                           "ON o.seq = w.seq WHERE w.address = ?1", -1, &s, NULL) != SQLITE_OK)
        return 0;
    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        id = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return id;
}

/* stage_dup - a copy of a column's text */
static char *stage_dup(sqlite3_stmt *s, int col)
{
    return xstrdup(store_text(s, col));
}

/*
 * stage_claims - make the source's claim rows the pull's losing claims,
 * told as the in-memory merge told them (store_sync_legacy.c): a new
 * claim warns, naming both objects; an ended one is a note. Collisions
 * are rare, so both lists are read into memory.
 */
static int stage_claims(STORE *st, long long now)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = NULL;
    STAGE_CLAIM *want = NULL;
    STAGE_ROW *rows = NULL;
    size_t nwant = 0, capwant = 0, nrows = 0, caprows = 0, j = 0;
    char a[STORE_SYNC_OBJ_TEXT], b[STORE_SYNC_OBJ_TEXT];
    long long nclaims = 0;
    int rc, ret = -1;

    /* No address carried twice and no claim stored: nothing to compare. */
    if (y->stage->addr_rows == y->counts.added + y->counts.changed + y->counts.kept
        && store_step_count(st, st->sstmt[SSTMT_CLAIM_COUNT], "reading claims", &nclaims) == 0
        && nclaims == 0)
        return 0;

    if (sqlite3_prepare_v2(st->db, "SELECT a.address, o.id, o.dn, o.guid, o.flags, h.id, h.dn, h.guid, "
                           "h.flags FROM rg_stage.rg_sync_want w JOIN rg_stage.rg_sync_addr a "
                           "ON a.address = w.address JOIN rg_stage.rg_sync_obj o ON o.seq = a.seq "
                           "JOIN rg_stage.rg_sync_obj h ON h.seq = w.seq WHERE w.n > 1 AND a.seq <> w.seq "
                           "ORDER BY a.address, o.id", -1, &s, NULL) != SQLITE_OK)
        return store_fail(st, "reading claims");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        STAGE_CLAIM *w;

        want = store_sync_grow(want, &capwant, nwant, sizeof(*want), 16);
        w = &want[nwant++];
        w->address = stage_dup(s, 0);
        w->id = sqlite3_column_int64(s, 1);
        w->dn = stage_dup(s, 2);
        w->guid = stage_dup(s, 3);
        w->flags = sqlite3_column_int(s, 4);
        w->hid = sqlite3_column_int64(s, 5);
        w->hdn = stage_dup(s, 6);
        w->hguid = stage_dup(s, 7);
        w->hflags = sqlite3_column_int(s, 8);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        store_fail(st, "reading claims");
        goto out;
    }
    /* The stored claims are read whole first: the writes below must not disturb the scan. */
    s = st->sstmt[SSTMT_CLAIM_SCAN];
    if (sqlite3_bind_int64(s, 1, y->run.source_id) != SQLITE_OK) {
        store_fail(st, "reading claims");
        goto out;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        rows = store_sync_grow(rows, &caprows, nrows, sizeof(*rows), 16);
        rows[nrows].address = stage_dup(s, 0);
        rows[nrows++].id = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        store_fail(st, "reading claims");
        goto out;
    }
    for (size_t i = 0; i <= nrows; i++) {
        const STAGE_ROW *r = i < nrows ? &rows[i] : NULL;

        /* Wanted claims before this stored one are new. */
        while (j < nwant && (r == NULL || stage_claim_vs_row(&want[j], r) < 0)) {
            const STAGE_CLAIM *w = &want[j++];

            if (store_sync_claim(st, 1, w->address, w->id, now) < 0)
                goto out;
            log_warn("source %s: address collision: %s is held by %s and also claimed by %s, "
                     "which does not get it%s", y->run.source, w->address,
                     store_sync_obj_text(a, sizeof(a), y->run.source, w->hdn, w->hguid, w->hid),
                     store_sync_obj_text(b, sizeof(b), y->run.source, w->dn, w->guid, w->id),
                     (w->flags & STORE_FLAG_INTERNAL_ONLY) && !(w->hflags & STORE_FLAG_INTERNAL_ONLY)
                     ? "; the address stays restricted to internal senders, as the claimant is" : "");
        }
        if (r == NULL)
            break;
        if (j < nwant && stage_claim_vs_row(&want[j], r) == 0) {
            j++;
            continue;                   /* told when it began */
        }
        /* A stored claim nobody wants any more: say why it ended. */
        {
            const char *why = stage_holder_id(st, r->address) == r->id
                ? "holds it now: its holder let go of it" : "no longer carries it, or went";

            if (store_sync_claim(st, 0, r->address, r->id, now) < 0)
                goto out;
            log_info("source %s: address collision over: %s, claimed by %s, which %s",
                     y->run.source, r->address, store_sync_obj_by_id(st, a, sizeof(a), r->id), why);
        }
    }
    ret = 0;
out:
    for (size_t i = 0; i < nwant; i++) {
        free(want[i].address);
        free(want[i].dn);
        free(want[i].guid);
        free(want[i].hdn);
        free(want[i].hguid);
    }
    for (size_t i = 0; i < nrows; i++)
        free(rows[i].address);
    free(want);
    free(rows);
    return ret;
}

/* stage_step - one apply statement (?1 the source, ?2 now or an id); rows changed into *n, 0 or -1 */
static int stage_step(STORE *st, const char *sql, long long two, long long *n, const char *what)
{
    long long c = stage_sql(st, sql, two, what);

    if (c < 0)
        return -1;
    if (n != NULL)
        *n += c;
    return 0;
}

/*
 * stage_pairs - make the logins (or memberships) of the source's objects
 * the wanted set, rg_sync_wlogin (object_id, name) or rg_sync_wmember
 * (group_id, member_id): delete what is not wanted, insert what is missing.
 */
static int stage_pairs(STORE *st, int logins)
{
    STORE_SYNC *y = st->sync;
    const char *what = logins ? "storing logins" : "storing members";

    /* The source's objects are all new: none has a row yet. */
    if (!y->stage->had_objects)
        return logins ? stage_step(st, "INSERT OR FAIL INTO main.login (name, object_id) "
                                   "SELECT name, object_id FROM rg_stage.rg_sync_wlogin", 0,
                                   &y->l_added, what)
            : stage_step(st, "INSERT OR FAIL INTO main.member (group_id, member_id) "
                         "SELECT group_id, member_id FROM rg_stage.rg_sync_wmember", 0, &y->m_added, what);

    if (logins)
        return stage_step(st, "DELETE FROM main.login WHERE (name, object_id) IN (SELECT l.name, "
                          "l.object_id FROM main.login l CROSS JOIN main.object o ON o.id = l.object_id "
                          "WHERE o.source_id = ?1 AND NOT EXISTS (SELECT 1 FROM rg_stage.rg_sync_wlogin w "
                          "WHERE w.object_id = l.object_id AND w.name = l.name))", 0,
                          &y->l_removed, what) < 0
            || stage_step(st, "INSERT OR FAIL INTO main.login (name, object_id) SELECT w.name, "
                          "w.object_id FROM rg_stage.rg_sync_wlogin w WHERE NOT EXISTS (SELECT 1 FROM "
                          "main.login l WHERE l.name = w.name AND l.object_id = w.object_id)", 0,
                          &y->l_added, what) < 0 ? -1 : 0;
    /* Driven by the member and login tables, in their order, as the joins say (CROSS JOIN). */
    return stage_step(st, "DELETE FROM main.member WHERE (group_id, member_id) IN (SELECT m.group_id, "
                      "m.member_id FROM main.member m CROSS JOIN main.object o ON o.id = m.group_id "
                      "WHERE o.source_id = ?1 AND NOT EXISTS (SELECT 1 FROM rg_stage.rg_sync_wmember w "
                      "WHERE w.group_id = m.group_id AND w.member_id = m.member_id))", 0,
                      &y->m_removed, what) < 0
        || stage_step(st, "INSERT OR FAIL INTO main.member (group_id, member_id) SELECT w.group_id, "
                      "w.member_id FROM rg_stage.rg_sync_wmember w WHERE NOT EXISTS (SELECT 1 FROM "
                      "main.member m WHERE m.group_id = w.group_id AND m.member_id = w.member_id)", 0,
                      &y->m_added, what) < 0 ? -1 : 0;
}

/* stage_remove_objects - the source's objects the pull did not have, with all that is theirs */
static int stage_remove_objects(STORE *st)
{
    STORE_SYNC *y = st->sync;
    const char *what = "removing objects";

    if (!y->stage->had_objects)
        return 0;                       /* a first pull removes nothing */
    if (stage_step(st, "INSERT INTO rg_stage.rg_sync_gone (id) SELECT o.id FROM main.object o "
                   "WHERE o.source_id = ?1 AND NOT EXISTS (SELECT 1 FROM rg_stage.rg_sync_obj s "
                   "WHERE s.guid = o.guid)", 0, NULL, what) < 0)
        return -1;
    if (sqlite3_changes(st->db) == 0)
        return 0;
    /* With foreign keys off (store_sync_lock), what ON DELETE CASCADE would take, by hand. */
    if (y->fk_off
        && (stage_step(st, "DELETE FROM main.recipient WHERE object_id IN (SELECT id FROM rg_stage.rg_sync_gone)",
                       0, NULL, what) < 0
            || stage_step(st, "DELETE FROM main.login WHERE object_id IN (SELECT id FROM rg_stage.rg_sync_gone)",
                          0, NULL, what) < 0
            || stage_step(st, "DELETE FROM main.member WHERE group_id IN (SELECT id FROM rg_stage.rg_sync_gone)",
                          0, NULL, what) < 0
            || stage_step(st, "DELETE FROM main.member WHERE member_id IN (SELECT id FROM rg_stage.rg_sync_gone)",
                          0, NULL, what) < 0
            || stage_step(st, "DELETE FROM main.claim WHERE object_id IN (SELECT id FROM rg_stage.rg_sync_gone)",
                          0, NULL, what) < 0))
        return -1;
    return stage_step(st, "DELETE FROM main.object WHERE id IN (SELECT id FROM rg_stage.rg_sync_gone)", 0,
                      &y->o_removed, what);
}

/* store_sync_stage_apply - write the differences of the staged pull (after the merge) */
int store_sync_stage_apply(STORE *st)
{
    STORE_SYNC *y = st->sync;
    SYNC_STAGE *g = y->stage;
    long long now = store_now();
    long long maxid = 0, numbered = 0;
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    if (store_step_count(st, st->sstmt[SSTMT_OBJ_MAX], "storing objects", &maxid) < 0)
        return -1;
    if (maxid > INT64_MAX - g->puts)
        return store_errf(st, "object ids exhausted");
    /*
     * New objects are numbered in the order of the first address they
     * hold, then in put order: the order the recipients are written in,
     * so that they meet their recipient_object entries in order too.
     * The second pass, for new objects that got no address, is skipped
     * when the first numbered them all (the usual case: a scan saved).
     */
    if (y->o_added > 0
        && (stage_step(st, "INSERT INTO rg_stage.rg_sync_new (seq) SELECT w.seq FROM rg_stage.rg_sync_want w "
                       "JOIN rg_stage.rg_sync_obj o ON o.seq = w.seq WHERE o.op = 1 ORDER BY w.address "
                       "ON CONFLICT DO NOTHING", 0, &numbered, "storing objects") < 0
            || (numbered < y->o_added
                && stage_step(st, "INSERT INTO rg_stage.rg_sync_new (seq) SELECT o.seq FROM "
                              "rg_stage.rg_sync_obj o WHERE o.op = 1 AND NOT EXISTS (SELECT 1 FROM "
                              "rg_stage.rg_sync_new n WHERE n.seq = o.seq) ORDER BY o.seq", 0, NULL,
                              "storing objects") < 0)
            || stage_step(st, "UPDATE rg_stage.rg_sync_obj SET id = ?2 + (SELECT n.n FROM "
                          "rg_stage.rg_sync_new n WHERE n.seq = rg_sync_obj.seq) WHERE op = 1", maxid,
                          NULL, "storing objects") < 0
            || stage_step(st, "INSERT OR FAIL INTO main.object (id, source_id, guid, dn, kind, flags, "
                          "last_seen) SELECT s.id, ?1, s.guid, s.dn, s.kind, s.flags, ?2 FROM "
                          "rg_stage.rg_sync_new n JOIN rg_stage.rg_sync_obj s ON s.seq = n.seq ORDER BY n.n",
                          now, NULL, "storing objects") < 0))
        return -1;
    if (y->o_changed > 0
        && stage_step(st, "UPDATE main.object SET dn = s.dn, kind = s.kind, flags = s.flags, "
                      "last_seen = ?2 FROM rg_stage.rg_sync_obj s WHERE s.op = 2 AND main.object.id = s.id",
                      now, NULL, "storing objects") < 0)
        return -1;
    store_bulk_lap(st, "writing objects", &t);
    if (y->counts.removed > 0
        && stage_step(st, "DELETE FROM main.recipient WHERE source_id = ?1 AND address NOT IN "
                      "(SELECT address FROM rg_stage.rg_sync_want)", 0, NULL, "removing recipients") < 0)
        return -1;
    if (y->counts.changed > 0
        && stage_step(st, "UPDATE main.recipient SET object_id = o.id, kind = o.kind, flags = o.flags, "
                      "last_seen = ?2 FROM rg_stage.rg_sync_want w JOIN rg_stage.rg_sync_obj o ON o.seq = w.seq "
                      "WHERE w.op = 2 AND main.recipient.address = w.address "
                      "AND main.recipient.source_id = ?1", now, NULL, "storing recipients") < 0)
        return -1;
    if (y->counts.added > 0
        && (stage_cross(st) < 0
            || stage_step(st, "INSERT OR FAIL INTO main.recipient (address, source_id, object_id, kind, "
                          "flags, last_seen) SELECT w.address, ?1, o.id, o.kind, o.flags, ?2 FROM "
                          "rg_stage.rg_sync_want w JOIN rg_stage.rg_sync_obj o ON o.seq = w.seq WHERE w.op = 1 "
                          "ORDER BY w.address", now, NULL, "storing recipients") < 0))
        return -1;
    store_bulk_lap(st, "writing recipients", &t);
    if (stage_claims(st, now) < 0)
        return -1;
    store_bulk_lap(st, "claims", &t);
    /* Their addresses are gone or moved; what else is theirs goes with them. */
    if (stage_remove_objects(st) < 0)
        return -1;
    store_bulk_lap(st, "removing objects", &t);
    if (stage_step(st, "INSERT INTO rg_stage.rg_sync_wlogin (object_id, name) SELECT o.id, l.name "
                   "FROM rg_stage.rg_sync_login l JOIN rg_stage.rg_sync_obj o ON o.seq = l.seq "
                   "WHERE true ORDER BY 1, 2 ON CONFLICT DO NOTHING", 0, NULL, "storing logins") < 0
        || stage_pairs(st, 1) < 0)
        return -1;
    store_bulk_lap(st, "logins", &t);
    /* Of objects sharing a DN (ASCII case aside) the lowest guid is the one members name. */
    if (g->members > 0
        && (stage_step(st, "INSERT INTO rg_stage.rg_sync_dn (dn, id) SELECT dn, id FROM rg_stage.rg_sync_obj "
                       "WHERE dn <> '' ORDER BY guid ON CONFLICT DO NOTHING", 0, NULL,
                       "storing members") < 0
            || stage_step(st, "INSERT INTO rg_stage.rg_sync_wmember (group_id, member_id) SELECT o.id, d.id "
                          "FROM rg_stage.rg_sync_member m JOIN rg_stage.rg_sync_obj o ON o.seq = m.seq "
                          "JOIN rg_stage.rg_sync_dn d ON d.dn = m.dn WHERE true ORDER BY 1, 2 "
                          "ON CONFLICT DO NOTHING", 0, NULL, "storing members") < 0))
        return -1;
    if (stage_pairs(st, 0) < 0)
        return -1;
    store_bulk_lap(st, "members", &t);
    return 0;
}
