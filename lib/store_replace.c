/*
 * store_replace.c - replace one source's recipients as one transaction
 *
 * An import or a full sync hands over the complete new set of a source.
 * The set is kept in memory (an arena of strings and an array of entries),
 * sorted once, and merged with the source's rows read in address order
 * (the primary key's order, so one scan and no sort). The merge yields
 * the differences, and only those are written, with point statements in
 * address order: a re-import of 1,000,000 unchanged addresses reads the
 * table once and writes nothing but the run record.
 *
 * Nothing is locked while the set is loaded (a directory fetch may take
 * minutes): the write transaction (BEGIN IMMEDIATE) starts at the first
 * store_replace_diff() or at store_replace_commit(), and the merge is done
 * inside it, so the counts and what is applied agree with the data that
 * was there. Until COMMIT readers see the old set; on any error nothing is
 * applied. The arena, the source row, the lock and the run record are
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

#define STORE_REPL_KINDS    32          /* distinct kinds in one set */

/* What the merge decided for a new entry. */
enum store_op {
    OP_KEEP,
    OP_INSERT,
    OP_UPDATE,
};

/* One address of the new set. seq orders repeats: the last one wins. */
typedef struct store_entry {
    const char *address;
    uint32_t seq;
    uint16_t kind;              /* index into kinds[] */
    uint16_t op;                /* enum store_op, after the merge */
} STORE_ENTRY;

struct store_repl {
    STORE_RUN run;              /* source, lock, clocks */
    int merged;                 /* entries[] sorted, unique and merged */
    STORE_ARENA arena;          /* the set's strings */
    STORE_ENTRY *entries;
    size_t nentries, capentries;
    uint32_t seq;
    char *kinds[STORE_REPL_KINDS];
    int nkinds;
    const char **gone;          /* rows of the source missing from the set */
    size_t ngone, capgone;
    STORE_COUNTS counts;
};

/* Statements, prepared on the first replacement and kept with the handle. */
enum store_rstmt {
    RSTMT_SCAN,
    RSTMT_DELETE,
    RSTMT_INSERT,
    RSTMT_UPDATE,
    RSTMT_COUNT
};

static const char *const store_rsql[RSTMT_COUNT] = {
    /* In primary key order: the merge needs BINARY (strcmp) order. */
    [RSTMT_SCAN] = "SELECT address, kind FROM recipient WHERE source_id = ?1 ORDER BY address",
    [RSTMT_DELETE] = "DELETE FROM recipient WHERE address = ?1 AND source_id = ?2",
    [RSTMT_INSERT] = "INSERT INTO recipient (address, source_id, kind, flags, last_seen) "
        "VALUES (?1, ?2, ?3, 0, ?4)",
    [RSTMT_UPDATE] = "UPDATE recipient SET kind = ?3, last_seen = ?4 "
        "WHERE address = ?1 AND source_id = ?2",
};

_Static_assert(RSTMT_COUNT <= STORE_RSTMT_MAX, "STORE_RSTMT_MAX too small");

/* store_replace_forget - end the replacement: roll back what is open, free */
static void store_replace_forget(STORE *st)
{
    STORE_REPL *r = st->repl;

    if (r == NULL)
        return;
    store_bulk_run_free(st, &r->run);
    store_bulk_arena_free(&r->arena);
    for (int i = 0; i < r->nkinds; i++)
        free(r->kinds[i]);
    free(r->entries);
    free(r->gone);
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

/* store_replace_begin - start collecting the new set of one source */
int store_replace_begin(STORE *st, const char *source, const char *type)
{
    STORE_REPL *r;

    if (store_bulk_may_begin(st, source, type) < 0
        || store_bulk_prepare(st, st->rstmt, store_rsql, RSTMT_COUNT) < 0)
        return -1;
    r = xcalloc(1, sizeof(*r));
    store_bulk_run_init(&r->run, source, type, strcmp(type, "import") == 0 ? "import" : "full");
    st->repl = r;
    return 0;
}

/* store_replace_add - one address of the new set; a repeat replaces the earlier one */
int store_replace_add(STORE *st, const char *address, const char *kind)
{
    STORE_REPL *r;
    STORE_ENTRY *e;
    int k;

    if (store_usable(st) < 0)
        return -1;
    if ((r = st->repl) == NULL)
        return store_errf(st, "no replacement in progress");
    if (address == NULL || *address == 0 || kind == NULL || *kind == 0)
        return store_errf(st, "an empty address or kind");
    for (k = 0; k < r->nkinds; k++)
        if (strcmp(r->kinds[k], kind) == 0)
            break;
    if (k == r->nkinds) {
        if (k == STORE_REPL_KINDS)
            return store_errf(st, "more than %d kinds of recipient in one set", STORE_REPL_KINDS);
        r->kinds[r->nkinds++] = xstrdup(kind);
    }
    if (r->seq == UINT32_MAX)
        return store_errf(st, "too many addresses in one set");
    if (r->nentries == r->capentries) {
        r->capentries = r->capentries ? r->capentries * 2 : 4096;
        r->entries = xrealloc(r->entries, r->capentries * sizeof(*r->entries));
    }
    e = &r->entries[r->nentries++];
    e->address = store_bulk_strdup(&r->arena, address);
    e->seq = r->seq++;
    e->kind = (uint16_t) k;
    e->op = OP_KEEP;
    r->merged = 0;
    return 0;
}

/* store_entry_cmp - address order (bytes, as SQLite's BINARY), then arrival */
static int store_entry_cmp(const void *a, const void *b)
{
    const STORE_ENTRY *x = a;
    const STORE_ENTRY *y = b;
    int d = strcmp(x->address, y->address);

    if (d != 0)
        return d;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* store_repl_sort - sort the set and keep the last of each repeated address */
static void store_repl_sort(STORE_REPL *r)
{
    size_t out = 0;

    if (r->nentries < 2)
        return;
    qsort(r->entries, r->nentries, sizeof(*r->entries), store_entry_cmp);
    for (size_t i = 0; i < r->nentries; i++) {
        if (i + 1 < r->nentries && strcmp(r->entries[i].address, r->entries[i + 1].address) == 0)
            continue;
        r->entries[out++] = r->entries[i];
    }
    r->nentries = out;
}

/* store_repl_gone - note a row of the source that the new set lacks */
static void store_repl_gone(STORE_REPL *r, const char *address)
{
    if (r->ngone == r->capgone) {
        r->capgone = r->capgone ? r->capgone * 2 : 1024;
        r->gone = xrealloc(r->gone, r->capgone * sizeof(*r->gone));
    }
    r->gone[r->ngone++] = store_bulk_strdup(&r->arena, address);
}

/*
 * store_replace_merge - take the write lock (once), then compare the
 * sorted set with the source's rows: mark each entry insert/update/keep,
 * collect the rows to delete, count.
 */
static int store_replace_merge(STORE *st)
{
    STORE_REPL *r = st->repl;
    sqlite3_stmt *s = st->rstmt[RSTMT_SCAN];
    struct timespec t;
    size_t i = 0;
    int rc;

    if (r->merged)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (store_bulk_lock(st, &r->run) < 0)
        return -1;
    store_repl_sort(r);
    store_bulk_lap(st, "sorting the new set", &t);
    memset(&r->counts, 0, sizeof(r->counts));
    r->ngone = 0;
    if (sqlite3_bind_int64(s, 1, r->run.source_id) != SQLITE_OK)
        return store_fail(st, "reading the source");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *old = store_text(s, 0);
        int d = 1;

        while (i < r->nentries && (d = strcmp(r->entries[i].address, old)) < 0) {
            r->entries[i++].op = OP_INSERT;
            r->counts.added++;
        }
        if (i < r->nentries && d == 0) {
            if (strcmp(r->kinds[r->entries[i].kind], store_text(s, 1)) != 0) {
                r->entries[i].op = OP_UPDATE;
                r->counts.changed++;
            } else {
                r->entries[i].op = OP_KEEP;
                r->counts.kept++;
            }
            i++;
        } else {
            store_repl_gone(r, old);
            r->counts.removed++;
        }
    }
    if (rc != SQLITE_DONE) {
        store_fail(st, "reading the source");
        sqlite3_reset(s);
        return -1;
    }
    sqlite3_reset(s);
    for (; i < r->nentries; i++) {
        r->entries[i].op = OP_INSERT;
        r->counts.added++;
    }
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

/* store_replace_apply - write the merge's differences */
static int store_replace_apply(STORE *st)
{
    STORE_REPL *r = st->repl;
    sqlite3_stmt *del = st->rstmt[RSTMT_DELETE];
    sqlite3_stmt *ins = st->rstmt[RSTMT_INSERT];
    sqlite3_stmt *upd = st->rstmt[RSTMT_UPDATE];
    long long now = store_now();

    if (sqlite3_bind_int64(del, 2, r->run.source_id) != SQLITE_OK
        || sqlite3_bind_int64(ins, 2, r->run.source_id) != SQLITE_OK
        || sqlite3_bind_int64(ins, 4, now) != SQLITE_OK
        || sqlite3_bind_int64(upd, 2, r->run.source_id) != SQLITE_OK
        || sqlite3_bind_int64(upd, 4, now) != SQLITE_OK)
        return store_fail(st, "applying the replacement");
    for (size_t i = 0; i < r->ngone; i++) {
        if (sqlite3_bind_text(del, 1, r->gone[i], -1, SQLITE_STATIC) != SQLITE_OK)
            return store_fail(st, "removing recipients");
        if (store_step_done(st, del, "removing recipients") < 0)
            return -1;
    }
    for (size_t i = 0; i < r->nentries; i++) {
        STORE_ENTRY *e = &r->entries[i];
        sqlite3_stmt *s = e->op == OP_INSERT ? ins : e->op == OP_UPDATE ? upd : NULL;

        if (s == NULL)
            continue;
        if (sqlite3_bind_text(s, 1, e->address, -1, SQLITE_STATIC) != SQLITE_OK
            || sqlite3_bind_text(s, 3, r->kinds[e->kind], -1, SQLITE_STATIC) != SQLITE_OK)
            return store_fail(st, "storing recipients");
        if (store_step_done(st, s, "storing recipients") < 0)
            return -1;
    }
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
    rc = store_bulk_refuse(st, &r->run, outcome, message, counts);
    store_replace_forget(st);
    return rc;
}
