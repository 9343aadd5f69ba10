/*
 * store_int.h - what store.c and its bulk writers share; not for others
 *
 * The STORE handle itself and the small helpers that turn SQLite results
 * into -1/0/1 with an error text; then what the bulk writers
 * (store_replace.c, store_sync.c) share, from store_bulk.c. Programs use
 * store.h and store_sync.h only.
 */
#ifndef RG_STORE_INT_H
#define RG_STORE_INT_H

#include <sqlite3.h>
#include <time.h>

#include "log.h"
#include "store.h"

/* A buffer a lookup copies one string into; grows, never shrinks. */
typedef struct store_buf {
    char *data;
    size_t size;
} STORE_BUF;

/* The statements store.c keeps for the life of the handle. */
enum store_stmt {
    STMT_USER_VERSION,
    STMT_BEGIN,
    STMT_BEGIN_IMMEDIATE,
    STMT_COMMIT,
    STMT_RCPT_GET,
    STMT_DOMAIN_GET,
    STMT_DOMAIN_PUT,
    STMT_DOMAIN_DEL,
    STMT_DOMAIN_WALK,
    STMT_STATIC_ADD,
    STMT_STATIC_DEL,
    STMT_RCPT_WALK,
    STMT_STATS,
    STMT_SOURCE_WALK,
    STMT_DATA_VERSION,
    STMT_COUNT
};

/* Room for the bulk writers' statements, prepared on first use. */
#define STORE_RSTMT_MAX 12      /* store_replace.c */
#define STORE_BSTMT_MAX 5       /* store_bulk.c */
#define STORE_SSTMT_MAX 44      /* store_sync.c, store_delta.c */

typedef struct store_repl STORE_REPL;   /* a replacement in progress (store_replace.c) */
typedef struct store_sync STORE_SYNC;   /* a sync in progress (store_sync.c) */

/* The WAL-index header in the -shm file, both copies (SQLite's walformat). */
#define STORE_WAL_HDR 96

struct store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmt[STMT_COUNT];
    sqlite3_stmt *rstmt[STORE_RSTMT_MAX];
    sqlite3_stmt *bstmt[STORE_BSTMT_MAX];
    sqlite3_stmt *sstmt[STORE_SSTMT_MAX];
    char err[512];
    char incomplete[256];       /* non-empty: a source has never synced (store_incomplete_set) */
    unsigned long errors;       /* store_errf() calls: see store_errors() */
    int in_read;                /* store_read_begin() opened a transaction */
    /* copies of the last lookup's strings */
    STORE_BUF b_address, b_kind, b_source, b_dn, b_guid, b_name, b_nexthop, b_relay_mode;
    STORE_REPL *repl;
    STORE_SYNC *sync;
    /* The domain table in memory, for lookups inside read transactions. */
    struct store_dom *dom;      /* sorted by name */
    int dom_count;              /* -1: not loaded */
    int dom_uncached;           /* too many domains to keep: ask SQLite */
    long long dom_version;      /* PRAGMA data_version it was loaded at */
    int dom_checked;            /* checked in this read transaction */
    /* store_read_current(): is the open read transaction still the latest? */
    int wal_mode;               /* 0 not asked yet, 1 WAL, -1 another journal mode */
    int read_done;              /* a read transaction has ended: the -shm is mapped */
    int read_hdr_ok;            /* read_hdr holds the headers from before the read */
    unsigned char read_hdr[STORE_WAL_HDR];
};

/* store_errf - set the handle's error text; returns -1 */
int store_errf(STORE *st, const char *fmt, ...) RG_PRINTF(2, 3);

/* store_fail - SQLite's error for what we were doing; returns -1 */
int store_fail(STORE *st, const char *what);

/* store_usable - 0 if statements can run on st, else -1 with a reason */
int store_usable(STORE *st);

/* store_step_done - run a statement to its end and reset it; 0 or -1 */
int store_step_done(STORE *st, sqlite3_stmt *s, const char *what);

/* store_step_count - run a statement whose one row is one integer; 0 or -1 */
int store_step_count(STORE *st, sqlite3_stmt *s, const char *what, long long *out);

/* store_text - a column's text in place, "" for NULL (valid until the next step) */
const char *store_text(sqlite3_stmt *s, int col);

/* store_rollback - end any open transaction without applying it */
void store_rollback(STORE *st);

/* store_now - the time stored in rows (unix seconds) */
long long store_now(void);

/* store_replace_close - for store_close: free a replacement in progress and its statements */
void store_replace_close(STORE *st);

/* store_sync_close - free a sync in progress and its statements */
void store_sync_close(STORE *st);

/* --- store_bulk.c: what the bulk writers share */

/* An arena: strings and arrays of a set, freed all at once. */
typedef struct store_chunk STORE_CHUNK;
typedef struct store_arena {
    STORE_CHUNK *chunks;
} STORE_ARENA;

/* Arena allocations are aligned for pointers and 64-bit numbers (not long double). */
#define STORE_ARENA_ALIGN 8

/* store_bulk_alloc - n bytes, STORE_ARENA_ALIGN-aligned, valid until the arena is freed */
void *store_bulk_alloc(STORE_ARENA *a, size_t n);
/* store_bulk_strdup - a copy of s in the arena */
const char *store_bulk_strdup(STORE_ARENA *a, const char *s);
/* store_bulk_arena_free - free every chunk; the arena may be used again */
void store_bulk_arena_free(STORE_ARENA *a);
/* store_bulk_arena_size - bytes the arena holds */
size_t store_bulk_arena_size(const STORE_ARENA *a);

/* store_bulk_prepare - prepare n statements into slots once per handle */
int store_bulk_prepare(STORE *st, sqlite3_stmt **slots, const char *const *sql, int n);
/* store_bulk_close - finalise store_bulk.c's statements */
void store_bulk_close(STORE *st);

/* store_bulk_may_begin - 0 if a bulk write of source/type may begin on st, else -1 with why */
int store_bulk_may_begin(STORE *st, const char *source, const char *type);

/* One bulk write of one source, from begin to commit or refusal. */
typedef struct store_run {
    char *source;
    char *type;
    const char *mode;           /* sync_run.mode: "full", "incremental", "import" */
    long long source_id;        /* valid once locked */
    long long started;          /* unix time of begin */
    struct timespec t0;         /* for the run's duration */
    int locked;                 /* the write transaction is open */
} STORE_RUN;

/* store_bulk_run_init - a run begins now (copies source and type; mode must be static) */
void store_bulk_run_init(STORE_RUN *run, const char *source, const char *type, const char *mode);
/* store_bulk_run_free - roll back what is open, free the names */
void store_bulk_run_free(STORE *st, STORE_RUN *run);
/* store_bulk_lock - BEGIN IMMEDIATE and the source's id (created if new); no-op if locked */
int store_bulk_lock(STORE *st, STORE_RUN *run);
/* store_bulk_commit - COMMIT the run's transaction */
int store_bulk_commit(STORE *st, STORE_RUN *run);
/* store_bulk_run_add - in the transaction: source last_run/last_success, a sync_run row */
int store_bulk_run_add(STORE *st, STORE_RUN *run, int success, const char *outcome,
                       const char *message, const STORE_COUNTS *counts);
/* store_bulk_refuse - roll back, then record only the attempt (own transaction) */
int store_bulk_refuse(STORE *st, STORE_RUN *run, const char *outcome, const char *message,
                      const STORE_COUNTS *counts);
/* store_bulk_lap - debug log of how long a step took since *t; restarts *t */
void store_bulk_lap(STORE *st, const char *what, struct timespec *t);

#endif
