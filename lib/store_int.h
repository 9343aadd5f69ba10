/*
 * store_int.h - what store.c and store_replace.c share; not for others
 *
 * The STORE handle itself and the small helpers that turn SQLite results
 * into -1/0/1 with an error text. Programs use store.h only.
 */
#ifndef RG_STORE_INT_H
#define RG_STORE_INT_H

#include <sqlite3.h>

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
    STMT_COUNT
};

/* Room for store_replace.c's statements, prepared on first use. */
#define STORE_RSTMT_MAX 12

typedef struct store_repl STORE_REPL;   /* a replacement in progress (store_replace.c) */

struct store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmt[STMT_COUNT];
    sqlite3_stmt *rstmt[STORE_RSTMT_MAX];
    char err[512];
    int in_read;                /* store_read_begin() opened a transaction */
    /* copies of the last lookup's strings */
    STORE_BUF b_address, b_kind, b_source, b_dn, b_guid, b_name, b_nexthop;
    STORE_REPL *repl;
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

/* store_replace_close - free a replacement and its statements (store_close) */
void store_replace_close(STORE *st);

#endif
