/*
 * store_bulk.c - what the store's bulk writers share
 *
 * store_replace.c (a source's recipients replaced as a whole; its set
 * staged in a TEMP table) and store_sync.c (directory objects, full and
 * incremental; its set in memory) both collect a large set while nothing
 * is locked, then take the write lock,
 * compare with what the store holds and write the differences in one
 * transaction, and record the run. The pieces they have in common live
 * here: an arena for the strings of the set, statements prepared on first
 * use, the source row (found, type-checked, created), the write lock, the
 * run record and the refusal of a run, and batched (multi-row) INSERTs.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_int.h"
#include "store_sync_int.h"
#include "xalloc.h"

#define STORE_CHUNK_SIZE    (1024 * 1024)

/* Strings and arrays of a set live in chunks freed all at once. */
struct store_chunk {
    struct store_chunk *next;
    size_t used;
    size_t size;
    _Alignas(STORE_ARENA_ALIGN) char data[];
};

/* The statements of this file, prepared on first use. */
enum store_bstmt {
    BSTMT_SOURCE_GET,
    BSTMT_SOURCE_ADD,
    BSTMT_SOURCE_RUN,
    BSTMT_RUN_ADD,
    BSTMT_RUN_PRUNE,
    BSTMT_COUNT
};

static const char *const store_bsql[BSTMT_COUNT] = {
    [BSTMT_SOURCE_GET] = "SELECT id, type FROM source WHERE name = ?1",
    [BSTMT_SOURCE_ADD] = "INSERT INTO source (name, type) VALUES (?1, ?2)",
    [BSTMT_SOURCE_RUN] = "UPDATE source SET last_run = ?2, "
        "last_success = CASE WHEN ?3 THEN ?2 ELSE last_success END WHERE id = ?1",
    [BSTMT_RUN_ADD] = "INSERT INTO sync_run (source_id, started, duration_ms, mode, "
        "added, changed, removed, outcome, message) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    /* A persistent sync records a run per change batch: keep the latest few. */
    [BSTMT_RUN_PRUNE] = "DELETE FROM sync_run WHERE source_id = ?1 AND id <= "
        "(SELECT id FROM sync_run WHERE source_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
};

/* Sync runs kept per source (older ones are deleted as new ones come). */
#define STORE_RUNS_KEPT 1000

_Static_assert(BSTMT_COUNT <= STORE_BSTMT_MAX, "STORE_BSTMT_MAX too small");

/* store_bulk_alloc - n bytes from the arena, aligned for pointers and 64-bit numbers */
void *store_bulk_alloc(STORE_ARENA *a, size_t n)
{
    STORE_CHUNK *c = a->chunks;
    size_t align = STORE_ARENA_ALIGN;
    size_t at;

    at = c ? (c->used + align - 1) & ~(align - 1) : 0;
    if (c == NULL || at > c->size || c->size - at < n) {
        size_t size = n > STORE_CHUNK_SIZE ? n : STORE_CHUNK_SIZE;

        c = xmalloc(sizeof(*c) + size);
        c->next = a->chunks;
        c->used = 0;
        c->size = size;
        a->chunks = c;
        at = 0;
    }
    c->used = at + n;
    return c->data + at;
}

/* store_bulk_strdup - copy a string into the arena */
const char *store_bulk_strdup(STORE_ARENA *a, const char *s)
{
    size_t len = strlen(s) + 1;
    STORE_CHUNK *c = a->chunks;
    char *p;

    /* Strings need no alignment: pack them. */
    if (c == NULL || c->size - c->used < len)
        p = store_bulk_alloc(a, len);
    else {
        p = c->data + c->used;
        c->used += len;
    }
    memcpy(p, s, len);
    return p;
}

/* store_bulk_arena_free - free every chunk; the arena may be used again */
void store_bulk_arena_free(STORE_ARENA *a)
{
    STORE_CHUNK *c;

    while ((c = a->chunks) != NULL) {
        a->chunks = c->next;
        free(c);
    }
}

/* store_bulk_arena_size - bytes the arena holds (for the debug log) */
size_t store_bulk_arena_size(const STORE_ARENA *a)
{
    size_t n = 0;

    for (const STORE_CHUNK *c = a->chunks; c != NULL; c = c->next)
        n += c->size;
    return n;
}

/* store_bulk_prepare - prepare the statements of a set once per handle */
int store_bulk_prepare(STORE *st, sqlite3_stmt **slots, const char *const *sql, int n)
{
    for (int i = 0; i < n; i++) {
        if (slots[i] != NULL)
            continue;
        if (sqlite3_prepare_v3(st->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &slots[i], NULL) != SQLITE_OK)
            return store_fail(st, "preparing statements");
    }
    return 0;
}

/* store_bulk_close - finalise this file's statements (store_close) */
void store_bulk_close(STORE *st)
{
    for (int i = 0; i < STORE_BSTMT_MAX; i++) {
        sqlite3_finalize(st->bstmt[i]);
        st->bstmt[i] = NULL;
    }
}

/*
 * store_bulk_source_find - the id of source name: 1 found, 0 absent, -1
 * error. A source of another type, or a static one, is refused: a bulk
 * write would wipe rows that something else owns.
 */
static int store_bulk_source_find(STORE *st, const char *name, const char *type, long long *id)
{
    sqlite3_stmt *s;
    int rc;

    if (store_bulk_prepare(st, st->bstmt, store_bsql, BSTMT_COUNT) < 0)
        return -1;
    s = st->bstmt[BSTMT_SOURCE_GET];
    if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "looking up the source");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *have = store_text(s, 1);

        *id = sqlite3_column_int64(s, 0);
        if (strcmp(have, "static") == 0 || strcmp(have, type) != 0) {
            store_errf(st, "source %s is of type %s, not %s: refusing to replace it", name, have, type);
            sqlite3_reset(s);
            return -1;
        }
        sqlite3_reset(s);
        return 1;
    }
    if (rc != SQLITE_DONE)
        store_fail(st, "looking up the source");
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/*
 * store_bulk_may_begin - whether a bulk write of source (of type) may
 * begin on st: one at a time per handle, never of the static entries,
 * and a source of another type is refused now, not after a long load.
 */
int store_bulk_may_begin(STORE *st, const char *source, const char *type)
{
    long long id;

    if (store_usable(st) < 0)
        return -1;
    if (st->repl != NULL || st->sync != NULL)
        return store_errf(st, "a replacement or sync is already in progress on this handle");
    if (source == NULL || *source == 0 || type == NULL || *type == 0)
        return store_errf(st, "a source name and type are needed");
    if (strcmp(type, "static") == 0)
        return store_errf(st, "static entries are not replaced or synced as a whole");
    return store_bulk_source_find(st, source, type, &id) < 0 ? -1 : 0;
}

/* store_bulk_source_id - the source's id, creating the source (inside the write transaction) */
static int store_bulk_source_id(STORE *st, const char *name, const char *type, long long *id)
{
    sqlite3_stmt *s;
    int rc = store_bulk_source_find(st, name, type, id);

    if (rc != 0)
        return rc < 0 ? -1 : 0;
    s = st->bstmt[BSTMT_SOURCE_ADD];
    if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_text(s, 2, type, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "adding the source");
    if (store_step_done(st, s, "adding the source") < 0)
        return -1;
    *id = sqlite3_last_insert_rowid(st->db);
    return 0;
}

/* store_bulk_run_init - start a run of source/type: its name, type and clocks */
void store_bulk_run_init(STORE_RUN *run, const char *source, const char *type, const char *mode)
{
    memset(run, 0, sizeof(*run));
    run->source = xstrdup(source);
    run->type = xstrdup(type);
    run->mode = mode;
    run->started = store_now();
    clock_gettime(CLOCK_MONOTONIC, &run->t0);
}

/* store_bulk_run_free - end a run: roll back what is open, free its names */
void store_bulk_run_free(STORE *st, STORE_RUN *run)
{
    if (run->locked)
        store_rollback(st);
    run->locked = 0;
    free(run->source);
    free(run->type);
    run->source = run->type = NULL;
}

/*
 * store_bulk_lock - take the write lock (BEGIN IMMEDIATE) for run, and
 * find or create its source inside it. A no-op when already locked.
 */
int store_bulk_lock(STORE *st, STORE_RUN *run)
{
    if (run->locked)
        return 0;
    store_read_end(st);
    if (store_step_done(st, st->stmt[STMT_BEGIN_IMMEDIATE], "locking the store for writing") < 0)
        return -1;
    run->locked = 1;
    if (store_bulk_source_id(st, run->source, run->type, &run->source_id) < 0)
        return -1;
    /* A bulk write: a larger page cache keeps the B-trees' inner pages in memory. */
    if (sqlite3_exec(st->db, "PRAGMA cache_size = -65536", NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(st, "sizing the page cache");
    return 0;
}

/* store_bulk_commit - commit run's transaction */
int store_bulk_commit(STORE *st, STORE_RUN *run)
{
    if (store_step_done(st, st->stmt[STMT_COMMIT], "committing") < 0)
        return -1;
    run->locked = 0;
    return 0;
}

/*
 * store_bulk_run_add - inside the write transaction: the source's last run
 * (and last success), and a sync_run row with the run's duration so far
 */
int store_bulk_run_add(STORE *st, STORE_RUN *run, int success, const char *outcome,
                       const char *message, const STORE_COUNTS *counts)
{
    sqlite3_stmt *s = st->bstmt[BSTMT_SOURCE_RUN];
    struct timespec t1;
    long long ms;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (long long) (t1.tv_sec - run->t0.tv_sec) * 1000 + (t1.tv_nsec - run->t0.tv_nsec) / 1000000;
    if (sqlite3_bind_int64(s, 1, run->source_id) != SQLITE_OK
        || sqlite3_bind_int64(s, 2, store_now()) != SQLITE_OK
        || sqlite3_bind_int(s, 3, success) != SQLITE_OK)
        return store_fail(st, "recording the run");
    if (store_step_done(st, s, "recording the run") < 0)
        return -1;
    s = st->bstmt[BSTMT_RUN_ADD];
    if (sqlite3_bind_int64(s, 1, run->source_id) != SQLITE_OK
        || sqlite3_bind_int64(s, 2, run->started) != SQLITE_OK
        || sqlite3_bind_int64(s, 3, ms) != SQLITE_OK
        || sqlite3_bind_text(s, 4, run->mode, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_int64(s, 5, counts ? counts->added : 0) != SQLITE_OK
        || sqlite3_bind_int64(s, 6, counts ? counts->changed : 0) != SQLITE_OK
        || sqlite3_bind_int64(s, 7, counts ? counts->removed : 0) != SQLITE_OK
        || sqlite3_bind_text(s, 8, outcome, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_text(s, 9, message ? message : "", -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "recording the run");
    if (store_step_done(st, s, "recording the run") < 0)
        return -1;
    s = st->bstmt[BSTMT_RUN_PRUNE];
    if (sqlite3_bind_int64(s, 1, run->source_id) != SQLITE_OK
        || sqlite3_bind_int(s, 2, STORE_RUNS_KEPT) != SQLITE_OK)
        return store_fail(st, "pruning old runs");
    return store_step_done(st, s, "pruning old runs");
}

/*
 * store_bulk_refuse - apply nothing of run, but record the attempt in a
 * transaction of its own: the source's last_run and a sync_run row.
 */
int store_bulk_refuse(STORE *st, STORE_RUN *run, const char *outcome, const char *message,
                      const STORE_COUNTS *counts)
{
    if (run->locked) {
        store_rollback(st);
        run->locked = 0;
    }
    if (store_bulk_lock(st, run) < 0
        || store_bulk_run_add(st, run, 0, outcome ? outcome : "refused", message, counts) < 0
        || store_bulk_commit(st, run) < 0)
        return -1;
    return 0;
}

/* store_bulk_lap - debug log of how long a step took; restarts the clock */
void store_bulk_lap(STORE *st, const char *what, struct timespec *t)
{
    struct timespec now;

    if (!log_debug_enabled())
        return;
    clock_gettime(CLOCK_MONOTONIC, &now);
    log_debug("store %s: %s: %lld ms", st->path, what,
              (long long) (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000);
    *t = now;
}

/*
 * --- batched inserts
 *
 * A million single-row INSERTs pay SQLite's per-statement cost (opening
 * and closing a cursor per B-tree, the mutexes, the halt and reset) a
 * million times; one INSERT of many rows (VALUES (...), (...), ...)
 * pays it once per batch. Row values are kept here (text by pointer: it
 * must stay valid until the batch is flushed) and bound when the batch
 * runs; the last, shorter batch gets a statement of its own size.
 */

/* store_bulk_batch_sql - the INSERT text for rows rows */
static char *store_bulk_batch_sql(const STORE_BATCH *b, int rows)
{
    size_t cap = strlen(b->head) + strlen(b->tail) + (size_t) rows * ((size_t) b->ncols * 8 + 4) + 1;
    char *sql = xmalloc(cap);
    size_t len = 0;
    int param = b->nfixed + 1;

    len += (size_t) snprintf(sql + len, cap - len, "%s", b->head);
    for (int r = 0; r < rows; r++) {
        len += (size_t) snprintf(sql + len, cap - len, "%s(", r ? ", " : "");
        for (int c = 0; c < b->ncols; c++)
            len += (size_t) snprintf(sql + len, cap - len, "%s?%d", c ? ", " : "",
                                     b->cols[c] > 0 ? b->cols[c] : param++);
        len += (size_t) snprintf(sql + len, cap - len, ")");
    }
    snprintf(sql + len, cap - len, "%s", b->tail);
    return sql;
}

/* store_bulk_batch_prepare - a statement for rows rows, its fixed parameters bound */
static sqlite3_stmt *store_bulk_batch_prepare(STORE *st, const STORE_BATCH *b, int rows)
{
    char *sql = store_bulk_batch_sql(b, rows);
    sqlite3_stmt *s = NULL;

    if (sqlite3_prepare_v3(st->db, sql, -1, rows == b->max ? SQLITE_PREPARE_PERSISTENT : 0,
                           &s, NULL) != SQLITE_OK) {
        store_fail(st, b->what);
        free(sql);
        return NULL;
    }
    free(sql);
    for (int i = 0; i < b->nfixed; i++) {
        if (sqlite3_bind_int64(s, i + 1, b->fixed[i]) != SQLITE_OK) {
            store_fail(st, b->what);
            sqlite3_finalize(s);
            return NULL;
        }
    }
    return s;
}

/*
 * store_bulk_batch_init - an empty batch of INSERT head (...) VALUES
 * rows tail. cols[c] > 0: column c is fixed parameter cols[c] (1 ..
 * nfixed, values in fixed[]); 0: a value of each row.
 */
void store_bulk_batch_init(STORE_BATCH *b, const char *what, const char *head,
                           const char *tail, const int *cols, int ncols, const long long *fixed,
                           int nfixed)
{
    memset(b, 0, sizeof(*b));
    b->what = what;
    b->head = head;
    b->tail = tail;
    b->cols = cols;
    b->ncols = ncols;
    b->nfixed = nfixed < STORE_BATCH_FIXED ? nfixed : STORE_BATCH_FIXED;
    for (int i = 0; i < b->nfixed; i++)
        b->fixed[i] = fixed[i];
    for (int c = 0; c < ncols; c++)
        if (cols[c] == 0)
            b->nrow++;
    b->max = STORE_BATCH_VALUES / (b->nrow ? b->nrow : 1);
    if (b->max > STORE_BATCH_ROWS)
        b->max = STORE_BATCH_ROWS;
}

/* store_bulk_batch_run - run the batch's rows (a full statement or one of their number) */
static int store_bulk_batch_run(STORE *st, STORE_BATCH *b)
{
    sqlite3_stmt *s;
    int rows = b->nrow ? b->nval / b->nrow : 0;
    int rc = SQLITE_OK;

    if (rows == 0)
        return 0;
    if (rows == b->max) {
        if (b->full == NULL && (b->full = store_bulk_batch_prepare(st, b, rows)) == NULL)
            return -1;
        s = b->full;
    } else if ((s = store_bulk_batch_prepare(st, b, rows)) == NULL) {
        return -1;
    }
    for (int i = 0; i < b->nval && rc == SQLITE_OK; i++) {
        const STORE_BATCH_VAL *v = &b->val[i];

        rc = v->s ? sqlite3_bind_text(s, b->nfixed + i + 1, v->s, -1, SQLITE_STATIC)
            : sqlite3_bind_int64(s, b->nfixed + i + 1, v->i);
    }
    if (rc != SQLITE_OK)
        rc = store_fail(st, b->what);
    else if ((rc = store_step_done(st, s, b->what)) == 0)
        b->changes += sqlite3_changes(st->db);
    if (s != b->full)
        sqlite3_finalize(s);
    b->nval = 0;
    return rc;
}

/* store_bulk_batch_text - the next value of the current row: text, kept by pointer */
void store_bulk_batch_text(STORE_BATCH *b, const char *s)
{
    b->val[b->nval].s = s;
    b->val[b->nval++].i = 0;
}

/* store_bulk_batch_int - the next value of the current row: a number */
void store_bulk_batch_int(STORE_BATCH *b, long long i)
{
    b->val[b->nval].s = NULL;
    b->val[b->nval++].i = i;
}

/* store_bulk_batch_row - the current row is complete: run the batch when full */
int store_bulk_batch_row(STORE *st, STORE_BATCH *b)
{
    if (b->nval < b->max * b->nrow)
        return 0;
    return store_bulk_batch_run(st, b);
}

/* store_bulk_batch_flush - run the rows not run yet */
int store_bulk_batch_flush(STORE *st, STORE_BATCH *b)
{
    return store_bulk_batch_run(st, b);
}

/* store_bulk_batch_free - finalize the batch's statement (rows not flushed are dropped) */
void store_bulk_batch_free(STORE_BATCH *b)
{
    sqlite3_finalize(b->full);
    b->full = NULL;
    b->nval = 0;
}
