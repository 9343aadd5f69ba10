/*
 * store.c - the SQLite store of domains, recipients and sync state
 *
 * One connection per STORE, opened without SQLite's mutex (a STORE
 * belongs to one thread). store_open() migrates an older schema in one
 * BEGIN IMMEDIATE transaction, so two programs opening a new store at
 * once cannot both apply the migrations; it refuses a newer schema.
 *
 * Every statement of the hot path is prepared once, with
 * SQLITE_PREPARE_PERSISTENT, and reset after each use, even on error, so
 * that no read lock outlives a lookup. Strings a lookup returns are copied
 * into buffers that belong to the STORE, which is why their pointers are
 * valid until the next call on the same handle.
 *
 * Replacing a source's recipients as a whole lives in store_replace.c.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "store_int.h"
#include "xalloc.h"

/* lib/schema.c, generated from sql/ by sql/gen-schema.sh */
extern const char *const schema_migrations[];
extern const int schema_version;

/*
 * The recipient columns every reader of recipients selects, in the order
 * store_rcpt_fill() expects. last_seen: see store.h.
 */
#define STORE_RCPT_COLUMNS_BUT_FLAGS \
    "r.address, r.kind, s.name, COALESCE(o.dn, ''), COALESCE(o.guid, ''), " \
    "MAX(r.last_seen, COALESCE(s.last_success, 0)), "
#define STORE_RCPT_FROM \
    "FROM recipient r JOIN source s ON s.id = r.source_id " \
    "LEFT JOIN object o ON o.id = r.object_id "
#define STORE_RCPT_COLUMNS STORE_RCPT_COLUMNS_BUT_FLAGS "r.flags " STORE_RCPT_FROM

/* The flags one claimant's restriction puts on an address (STORE_FLAG_INTERNAL_ONLY), as SQL. */
#define STORE_RESTRICTING "1"
_Static_assert(STORE_FLAG_INTERNAL_ONLY == 1, "STORE_RESTRICTING is out of date");

static void store_dom_free(STORE *st);

static const char *const store_sql[STMT_COUNT] = {
    [STMT_USER_VERSION] = "PRAGMA user_version",
    [STMT_BEGIN] = "BEGIN",
    [STMT_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    /*
     * The row of the oldest source answers, but a restriction of any row
     * or claim of the address holds (see store.h): an older static or
     * imported row, or a user holding a restricted group's address, must
     * not lift it. Two more seeks by address, on the primary keys.
     */
    [STMT_RCPT_GET] = "SELECT " STORE_RCPT_COLUMNS_BUT_FLAGS
        "r.flags | (SELECT COALESCE(MAX(x.flags & " STORE_RESTRICTING "), 0) FROM recipient x "
        "WHERE x.address = ?1) | (SELECT COALESCE(MAX(co.flags & " STORE_RESTRICTING "), 0) "
        "FROM claim c CROSS JOIN object co ON co.id = c.object_id WHERE c.address = ?1) "
        STORE_RCPT_FROM "WHERE r.address = ?1 ORDER BY r.source_id LIMIT 1",
    [STMT_DOMAIN_GET] = "SELECT name, nexthop, subdomains, relay_mode FROM domain WHERE name = ?1",
    [STMT_DATA_VERSION] = "PRAGMA data_version",
    [STMT_DOMAIN_PUT] = "INSERT INTO domain (name, nexthop, subdomains, created, relay_mode) "
        "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO UPDATE SET "
        "nexthop = excluded.nexthop, subdomains = excluded.subdomains, relay_mode = excluded.relay_mode",
    [STMT_DOMAIN_DEL] = "DELETE FROM domain WHERE name = ?1",
    [STMT_DOMAIN_WALK] = "SELECT name, nexthop, subdomains, relay_mode FROM domain ORDER BY name",
    [STMT_STATIC_ADD] = "INSERT INTO recipient (address, source_id, kind, flags, last_seen) "
        "VALUES (?1, (SELECT id FROM source WHERE name = 'static'), 'static', 0, ?2) "
        "ON CONFLICT (address, source_id) DO NOTHING",
    [STMT_STATIC_DEL] = "DELETE FROM recipient WHERE address = ?1 "
        "AND source_id = (SELECT id FROM source WHERE name = 'static')",
    [STMT_RCPT_WALK] = "SELECT " STORE_RCPT_COLUMNS
        "WHERE ?1 IS NULL OR s.name = ?1 ORDER BY r.address, r.source_id",
    [STMT_STATS] = "SELECT (SELECT count(*) FROM domain), "
        "(SELECT count(DISTINCT address) FROM recipient), "
        "(SELECT count(*) FROM recipient WHERE source_id = "
        "(SELECT id FROM source WHERE name = 'static')), "
        "(SELECT count(*) FROM source)",
    /* One scan counts every source's rows: there is no index by source. */
    [STMT_SOURCE_WALK] = "SELECT s.name, s.type, COALESCE(c.n, 0), "
        "COALESCE(s.last_success, 0), COALESCE(s.last_run, 0), "
        "COALESCE(sr.outcome || CASE WHEN sr.message <> '' THEN ': ' || sr.message ELSE '' END, ''), "
        "COALESCE(sr.added, 0), COALESCE(sr.changed, 0), COALESCE(sr.removed, 0), COALESCE(sr.mode, ''), "
        "COALESCE((SELECT max(started) FROM sync_run WHERE source_id = s.id AND mode = 'full' "
        "AND outcome = 'ok'), 0), "
        /* The latest full pull applied or refused, when refused: it stands (store_runs.c). */
        "COALESCE((SELECT CASE WHEN outcome = 'refused' THEN message END FROM sync_run "
        "WHERE source_id = s.id AND mode = 'full' AND outcome IN ('ok', 'refused') "
        "ORDER BY started DESC, id DESC LIMIT 1), NULL) "
        "FROM source s "
        "LEFT JOIN (SELECT source_id, count(*) AS n FROM recipient GROUP BY source_id) c "
        "ON c.source_id = s.id "
        "LEFT JOIN sync_run sr ON sr.id = "
        "(SELECT id FROM sync_run WHERE source_id = s.id ORDER BY started DESC, id DESC LIMIT 1) "
        "ORDER BY s.name",
};

/* store_errf - set the handle's error text; returns -1 for "return store_errf(...)" */
int store_errf(STORE *st, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(st->err, sizeof(st->err), fmt, ap);
    va_end(ap);
    st->errors++;
    return -1;
}

/* store_fail - record SQLite's error for what we were doing; returns -1 */
int store_fail(STORE *st, const char *what)
{
    return store_errf(st, "%s: %s", what, sqlite3_errmsg(st->db));
}

/* store_usable - a handle we can run statements on; else -1 with a reason */
int store_usable(STORE *st)
{
    if (st == NULL)
        return -1;
    if (st->db == NULL)
        return store_errf(st, "store is not open");
    return 0;
}

/* store_buf_set - copy n bytes (a column's text) into b, NUL-terminated */
static const char *store_buf_set(STORE_BUF *b, const unsigned char *text, int n)
{
    if (text == NULL || n < 0)
        n = 0;
    if ((size_t) n + 1 > b->size) {
        size_t size = b->size ? b->size : 64;

        while (size < (size_t) n + 1)
            size *= 2;
        b->data = xrealloc(b->data, size);
        b->size = size;
    }
    if (n > 0)
        memcpy(b->data, text, (size_t) n);
    b->data[n] = 0;
    return b->data;
}

/* store_col - a column's text, copied into b */
static const char *store_col(sqlite3_stmt *s, int col, STORE_BUF *b)
{
    const unsigned char *text = sqlite3_column_text(s, col);

    return store_buf_set(b, text, sqlite3_column_bytes(s, col));
}

/* store_text - a column's text in place, "" for NULL (valid until the next step) */
const char *store_text(sqlite3_stmt *s, int col)
{
    const unsigned char *text = sqlite3_column_text(s, col);

    return text ? (const char *) text : "";
}

/* store_now - the time stored in rows */
long long store_now(void)
{
    return (long long) time(NULL);
}

/* store_step_done - run a statement that returns no rows; reset it. 0 or -1 */
int store_step_done(STORE *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);

    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        store_fail(st, what);
        sqlite3_reset(s);
        return -1;
    }
    sqlite3_reset(s);
    return 0;
}

/* store_step_count - run a statement whose one row is one integer; reset it */
int store_step_count(STORE *st, sqlite3_stmt *s, const char *what, long long *out)
{
    int rc = sqlite3_step(s);

    if (rc != SQLITE_ROW) {
        if (rc == SQLITE_DONE)
            store_errf(st, "%s: no result", what);
        else
            store_fail(st, what);
        sqlite3_reset(s);
        return -1;
    }
    *out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return 0;
}

/* store_user_version - read PRAGMA user_version: a real read of the file */
static int store_user_version(STORE *st, sqlite3_stmt *s, int *version)
{
    long long v;

    if (store_step_count(st, s, "reading the schema version", &v) < 0)
        return -1;
    *version = (int) v;
    return 0;
}

/* store_rollback - end any open transaction without applying it */
void store_rollback(STORE *st)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

/* store_journal_cb - sqlite3_exec callback keeping the journal mode PRAGMA's answer */
static int store_journal_cb(void *ctx, int ncol, char **vals, char **names)
{
    char *mode = ctx;

    if (ncol > 0 && vals[0] != NULL)
        snprintf(mode, 16, "%s", vals[0]);
    return 0;
}

/* store_migrate - bring the schema from version to schema_version, in one transaction */
static int store_migrate(STORE *st, sqlite3_stmt *uv, int version)
{
    char mode[16] = "";
    char *msg = NULL;
    int from;

    /* WAL is persistent in the file: whoever migrates sets it for all. */
    if (sqlite3_exec(st->db, "PRAGMA journal_mode = WAL", store_journal_cb, mode, NULL) != SQLITE_OK)
        return store_fail(st, "switching to WAL mode");
    if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
        return store_errf(st, "cannot switch to WAL mode (journal mode is \"%s\")", mode);
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(st, "locking for migration");
    /* Someone else may have migrated while we waited for the lock. */
    if (store_user_version(st, uv, &version) < 0) {
        store_rollback(st);
        return -1;
    }
    if (version > schema_version) {
        store_rollback(st);
        return store_errf(st, "store schema version %d is newer than this program's %d",
                          version, schema_version);
    }
    for (from = version; from < schema_version; from++) {
        if (sqlite3_exec(st->db, schema_migrations[from], NULL, NULL, &msg) != SQLITE_OK) {
            store_errf(st, "migration to schema version %d failed: %s", from + 1,
                       msg ? msg : sqlite3_errmsg(st->db));
            sqlite3_free(msg);
            store_rollback(st);
            return -1;
        }
    }
    if (version < schema_version) {
        char sql[64];

        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", schema_version);
        if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            store_fail(st, "recording the schema version");
            store_rollback(st);
            return -1;
        }
    }
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        store_fail(st, "committing the migration");
        store_rollback(st);
        return -1;
    }
    if (version < schema_version)
        log_info("store %s: schema migrated from version %d to %d", st->path, version, schema_version);
    return 0;
}

/* store_prepare_all - prepare the statements kept for the life of the handle */
static int store_prepare_all(STORE *st)
{
    for (int i = 0; i < STMT_COUNT; i++) {
        if (st->stmt[i] != NULL)
            continue;
        if (sqlite3_prepare_v3(st->db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &st->stmt[i], NULL) != SQLITE_OK)
            return store_fail(st, "preparing statements");
    }
    return 0;
}

/*
 * store_readonly_hint - a read-only open failed at its first read: if the
 * -wal or -shm file is missing, say that this is why (SQLite's own text,
 * "attempt to write a readonly database", points nowhere useful)
 */
static void store_readonly_hint(STORE *st)
{
    static const char *const suffix[] = {"-wal", "-shm"};
    char msg[sizeof(st->err) + 200];

    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        char *p = xasprintf("%s%s", st->path, suffix[i]);
        struct stat sb;
        int missing = lstat(p, &sb) < 0 && errno == ENOENT;

        free(p);
        if (missing) {
            snprintf(msg, sizeof(msg), "%s (its %s file is missing, and a read-only reader cannot "
                     "always create it: rcptgate-syncd or the rcptgate command, run once, makes it)",
                     st->err, suffix[i]);
            snprintf(st->err, sizeof(st->err), "%.*s", (int) sizeof(st->err) - 1, msg);
            return;
        }
    }
}

/* store_open - open the store, migrating its schema if it is older */
STORE *store_open(const char *path, int flags, int busy_ms, char *err, size_t errlen)
{
    STORE *st;
    struct stat sb;
    /*
     * NOFOLLOW: the store's directory belongs to the daemons' user, and
     * root running any subcommand must not create or migrate a database
     * wherever a planted symbolic link points.
     */
    int open_flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW;
    int readonly = (flags & STORE_READONLY) != 0;
    int memory = path != NULL && strcmp(path, ":memory:") == 0;
    int version;
    int rc;

    if (path == NULL || *path == 0) {
        snprintf(err, errlen, "no store path configured");
        return NULL;
    }
    open_flags |= readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if ((flags & STORE_CREATE) && !readonly)
        open_flags |= SQLITE_OPEN_CREATE;
    if (!memory && lstat(path, &sb) < 0) {
        if (errno != ENOENT || !(flags & STORE_CREATE)) {
            snprintf(err, errlen, "store %s: %s", path,
                     errno == ENOENT ? "no such file (it is created by the first write)" : strerror(errno));
            return NULL;
        }
    } else if (!memory && S_ISLNK(sb.st_mode)) {
        /* Said plainly here; SQLite's own refusal (below) closes the race. */
        snprintf(err, errlen, "store %s is a symbolic link, which is not followed: "
                 "set [store] path to the file itself", path);
        return NULL;
    }
    st = xcalloc(1, sizeof(*st));
    st->dom_count = -1;
    st->path = xstrdup(path);
    rc = sqlite3_open_v2(path, &st->db, open_flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "store %s: %s", path,
                 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        store_close(st);
        return NULL;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, busy_ms > 0 ? busy_ms : 0);
    if (!memory) {
        int one = 1;

        /*
         * Keep the -wal and -shm files when this, the last connection,
         * closes: a reader without write access to the directory (smtpd
         * as its own user) cannot create them, and could not open the
         * store after every writer's exit. The WAL is still checkpointed
         * and truncated (journal_size_limit) on close.
         */
        (void) sqlite3_file_control(st->db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
    }
    /* The first real read: a file that is not a database fails here. */
    if (sqlite3_prepare_v3(st->db, store_sql[STMT_USER_VERSION], -1, SQLITE_PREPARE_PERSISTENT,
                           &st->stmt[STMT_USER_VERSION], NULL) != SQLITE_OK) {
        store_fail(st, "reading the schema version");
        goto fail;
    }
    if (store_user_version(st, st->stmt[STMT_USER_VERSION], &version) < 0) {
        if (readonly && !memory)
            store_readonly_hint(st);
        goto fail;
    }
    /*
     * synchronous=NORMAL is durable enough in WAL mode (a power loss may
     * lose the last commit, never corrupt); the size limit truncates the
     * WAL after a checkpoint, so one big import does not leave a WAL file
     * of its size behind.
     */
    /*
     * mmap_size: lookups read pages straight from the page cache instead
     * of copying them with pread(); the kernel shares them between readers.
     * 1 GiB of address space (not memory: the pages are the file's, in the
     * page cache, counted as RssFile) covers a store of 5,000,000
     * recipients (about 280 MB) several times over; a 256 MiB map left
     * its tail to pread() (tests/bench/bigstore.sh). SQLite caps it at its
     * compile-time SQLITE_MAX_MMAP_SIZE.
     */
    if (sqlite3_exec(st->db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; "
                     "PRAGMA journal_size_limit = 67108864; PRAGMA mmap_size = 1073741824",
                     NULL, NULL, NULL) != SQLITE_OK) {
        store_fail(st, "setting options");
        goto fail;
    }
    if (version > schema_version) {
        store_errf(st, "store schema version %d is newer than this program's %d",
                   version, schema_version);
        goto fail;
    }
    if (readonly && version < schema_version) {
        /* A reader never migrates: the writer's next start or run does. */
        store_errf(st, "store schema version %d is older than this program's %d, and a reader "
                   "does not migrate it: rcptgate-syncd or the rcptgate command does", version,
                   schema_version);
        goto fail;
    }
    if (version < schema_version
        && store_migrate(st, st->stmt[STMT_USER_VERSION], version) < 0)
        goto fail;
    if (store_prepare_all(st) < 0)
        goto fail;
    return st;

fail:
    snprintf(err, errlen, "store %s: %s", path, st->err);
    store_close(st);
    return NULL;
}

/* store_close - finalise statements and close; NULL is fine */
void store_close(STORE *st)
{
    if (st == NULL)
        return;
    if (st->db != NULL) {
        /* Each bulk writer frees its own work in progress and statements. */
        store_replace_close(st);
        store_sync_close(st);
        store_bulk_close(st);
        store_read_end(st);
        store_dom_free(st);
        for (int i = 0; i < STMT_COUNT; i++)
            sqlite3_finalize(st->stmt[i]);
        sqlite3_close(st->db);
    }
    free(st->b_address.data);
    free(st->b_kind.data);
    free(st->b_source.data);
    free(st->b_dn.data);
    free(st->b_guid.data);
    free(st->b_name.data);
    free(st->b_nexthop.data);
    free(st->b_relay_mode.data);
    free(st->path);
    free(st);
}

/* store_incomplete_set - the mark check_rcpt reads (store.h) */
void store_incomplete_set(STORE *st, const char *why)
{
    snprintf(st->incomplete, sizeof(st->incomplete), "%s", why ? why : "");
}

/* store_incomplete - the mark, "" when none */
const char *store_incomplete(const STORE *st)
{
    return st ? st->incomplete : "";
}

/* store_error - text of the last error on this handle */
const char *store_error(STORE *st)
{
    if (st == NULL)
        return "store is not open";
    return st->err[0] ? st->err : "no error";
}

/* store_errors - how many errors this handle has had */
unsigned long store_errors(STORE *st)
{
    return st ? st->errors : 0;
}

/* store_path - the file this handle has open */
const char *store_path(STORE *st)
{
    return st ? st->path : "";
}

/* store_schema_version - the schema version this program knows */
int store_schema_version(void)
{
    return schema_version;
}

/*
 * store_wal_hdr - the WAL-index headers in the -shm SQLite has mapped for
 * this handle, or NULL. Only in WAL mode (in another journal mode mapping
 * would create a -shm file) and after a first read transaction, which
 * has made SQLite map it: then xShmMap only hands back its pointer.
 */
static const volatile unsigned char *store_wal_hdr(STORE *st)
{
    sqlite3_file *f = NULL;
    void volatile *p = NULL;

    if (!st->read_done)
        return NULL;
    if (st->wal_mode == 0) {
        char mode[16] = "";

        if (sqlite3_exec(st->db, "PRAGMA journal_mode", store_journal_cb, mode, NULL) != SQLITE_OK)
            return NULL;
        st->wal_mode = strcmp(mode, "wal") == 0 ? 1 : -1;
    }
    if (st->wal_mode < 0)
        return NULL;
    if (sqlite3_file_control(st->db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK
        || f == NULL || f->pMethods == NULL || f->pMethods->iVersion < 2
        || f->pMethods->xShmMap == NULL
        || f->pMethods->xShmMap(f, 0, 32768, 0, &p) != SQLITE_OK || p == NULL)
        return NULL;
    return p;
}

/* store_hdr_copy - the headers out of the shared memory (a writer may be changing them) */
static void store_hdr_copy(unsigned char *dst, const volatile unsigned char *src)
{
    for (size_t i = 0; i < STORE_WAL_HDR; i++)
        dst[i] = src[i];
}

/* store_read_current - the open read transaction has seen every commit */
int store_read_current(STORE *st)
{
    const volatile unsigned char *h;
    unsigned char now[STORE_WAL_HDR];

    if (st == NULL || st->db == NULL || !st->in_read || !st->read_hdr_ok
        || sqlite3_get_autocommit(st->db))
        return 0;
    if ((h = store_wal_hdr(st)) == NULL)
        return 0;
    /*
     * Every commit changes the header (its change counter, frame count,
     * checksums); a torn read differs too, which only renews the read.
     */
    store_hdr_copy(now, h);
    return memcmp(now, st->read_hdr, sizeof(now)) == 0;
}

/* store_read_begin - one read transaction around several lookups */
int store_read_begin(STORE *st)
{
    if (store_usable(st) < 0)
        return -1;
    if (st->in_read || !sqlite3_get_autocommit(st->db))
        return 0;               /* already inside a transaction: nothing to do */
    /*
     * The headers as they are before the snapshot is taken (at the first
     * read, BEGIN is deferred): a commit in between makes them differ
     * from the next look, which renews the read; never the reverse.
     */
    {
        const volatile unsigned char *h = store_wal_hdr(st);

        st->read_hdr_ok = h != NULL;
        if (h != NULL)
            store_hdr_copy(st->read_hdr, h);
    }
    if (store_step_done(st, st->stmt[STMT_BEGIN], "beginning a read") < 0)
        return -1;
    st->in_read = 1;
    st->dom_checked = 0;
    return 0;
}

/* store_read_end - end what store_read_begin started; safe after a failed begin */
void store_read_end(STORE *st)
{
    if (st == NULL || st->db == NULL || !st->in_read)
        return;
    st->in_read = 0;
    st->read_hdr_ok = 0;
    if (sqlite3_get_autocommit(st->db))
        return;
    if (store_step_done(st, st->stmt[STMT_COMMIT], "ending a read") < 0)
        store_rollback(st);
    else
        st->read_done = 1;
}

/* store_rcpt_fill - a recipient row into out; copy says whether to copy into the handle */
static void store_rcpt_fill(STORE *st, sqlite3_stmt *s, STORE_RCPT *out, int copy)
{
    if (copy) {
        out->address = store_col(s, 0, &st->b_address);
        out->kind = store_col(s, 1, &st->b_kind);
        out->source = store_col(s, 2, &st->b_source);
        out->dn = store_col(s, 3, &st->b_dn);
        out->guid = store_col(s, 4, &st->b_guid);
    } else {
        out->address = store_text(s, 0);
        out->kind = store_text(s, 1);
        out->source = store_text(s, 2);
        out->dn = store_text(s, 3);
        out->guid = store_text(s, 4);
    }
    out->last_seen = sqlite3_column_int64(s, 5);
    out->flags = sqlite3_column_int(s, 6);
}

/* store_rcpt_get - exact lookup of a normalised key: one statement step */
int store_rcpt_get(STORE *st, const char *address, STORE_RCPT *out)
{
    sqlite3_stmt *s;
    int rc;

    if (store_usable(st) < 0)
        return -1;
    s = st->stmt[STMT_RCPT_GET];
    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "recipient lookup");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        store_rcpt_fill(st, s, out, 1);
        sqlite3_reset(s);
        return 1;
    }
    if (rc != SQLITE_DONE)
        store_fail(st, "recipient lookup");
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* store_domain_fill - a domain row into out */
static void store_domain_fill(STORE *st, sqlite3_stmt *s, STORE_DOMAIN *out, int copy)
{
    out->name = copy ? store_col(s, 0, &st->b_name) : store_text(s, 0);
    out->nexthop = copy ? store_col(s, 1, &st->b_nexthop) : store_text(s, 1);
    out->subdomains = sqlite3_column_int(s, 2);
    out->relay_mode = copy ? store_col(s, 3, &st->b_relay_mode) : store_text(s, 3);
}

/*
 * The domain table is small and asked on every lookup (the recipient's
 * domain, then its parents), so readers keep it in memory: reloaded when
 * PRAGMA data_version says another connection changed the store, checked
 * once per read transaction, after the transaction's snapshot is taken.
 * Outside a read transaction every call asks SQLite. A table too large
 * to be worth copying is never cached.
 */
#define STORE_DOM_CACHE_MAX 10000

struct store_dom {
    char *name;
    char *nexthop;
    char *relay_mode;
    int subdomains;
};

/* store_dom_free - drop the cached domain table */
static void store_dom_free(STORE *st)
{
    for (int i = 0; i < st->dom_count; i++) {
        free(st->dom[i].name);
        free(st->dom[i].nexthop);
        free(st->dom[i].relay_mode);
    }
    free(st->dom);
    st->dom = NULL;
    st->dom_count = -1;
}

/* store_dom_load - (re)read the domain table into memory; 0 or -1 */
static int store_dom_load(STORE *st)
{
    sqlite3_stmt *s = st->stmt[STMT_DOMAIN_WALK];
    int cap = 0;
    int rc;

    store_dom_free(st);
    st->dom_count = 0;
    st->dom_uncached = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (st->dom_count == STORE_DOM_CACHE_MAX) {
            sqlite3_reset(s);
            store_dom_free(st);
            st->dom_uncached = 1;
            return 0;
        }
        if (st->dom_count == cap) {
            cap = cap ? 2 * cap : 16;
            st->dom = xrealloc(st->dom, (size_t) cap * sizeof(*st->dom));
        }
        st->dom[st->dom_count].name = xstrdup(store_text(s, 0));
        st->dom[st->dom_count].nexthop = xstrdup(store_text(s, 1));
        st->dom[st->dom_count].subdomains = sqlite3_column_int(s, 2);
        st->dom[st->dom_count].relay_mode = xstrdup(store_text(s, 3));
        st->dom_count++;
    }
    if (rc != SQLITE_DONE) {
        store_fail(st, "loading the domains");
        sqlite3_reset(s);
        store_dom_free(st);
        return -1;
    }
    sqlite3_reset(s);
    return 0;
}

/* store_dom_check - once per read transaction: is the cache current? 0 or -1 */
static int store_dom_check(STORE *st)
{
    sqlite3_stmt *s = st->stmt[STMT_DATA_VERSION];
    long long version;
    int rc;

    if (st->dom_checked)
        return 0;
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        store_fail(st, "reading the data version");
        sqlite3_reset(s);
        return -1;
    }
    version = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if ((st->dom_count < 0 && !st->dom_uncached) || version != st->dom_version) {
        if (store_dom_load(st) < 0)
            return -1;
        st->dom_version = version;
    }
    st->dom_checked = 1;
    return 0;
}

/* store_dom_cmp - bsearch comparison of a name with a cached domain */
static int store_dom_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct store_dom *) elem)->name);
}

/* store_domain_get - exact lookup of a normalised domain name */
int store_domain_get(STORE *st, const char *name, STORE_DOMAIN *out)
{
    sqlite3_stmt *s;
    int rc;

    if (store_usable(st) < 0)
        return -1;
    if (st->in_read) {
        if (store_dom_check(st) < 0)
            return -1;
        if (!st->dom_uncached) {
            const struct store_dom *d = st->dom_count <= 0 ? NULL
                : bsearch(name, st->dom, (size_t) st->dom_count, sizeof(*st->dom), store_dom_cmp);

            if (d == NULL)
                return 0;
            out->name = d->name;
            out->nexthop = d->nexthop;
            out->subdomains = d->subdomains;
            out->relay_mode = d->relay_mode;
            return 1;
        }
    }
    s = st->stmt[STMT_DOMAIN_GET];
    if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "domain lookup");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        store_domain_fill(st, s, out, 1);
        sqlite3_reset(s);
        return 1;
    }
    if (rc != SQLITE_DONE)
        store_fail(st, "domain lookup");
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* store_domain_put - add a domain, or update its next hop and subdomain flag (relay mode: the default) */
int store_domain_put(STORE *st, const char *name, const char *nexthop, int subdomains)
{
    return store_domain_put_mode(st, name, nexthop, subdomains, "");
}

/* store_domain_put_mode - the same with the domain's relay mode ("" = [smtpd] relay_mode) */
int store_domain_put_mode(STORE *st, const char *name, const char *nexthop, int subdomains,
                          const char *relay_mode)
{
    sqlite3_stmt *s;

    if (store_usable(st) < 0)
        return -1;
    s = st->stmt[STMT_DOMAIN_PUT];
    if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_text(s, 2, nexthop ? nexthop : "", -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_int(s, 3, subdomains ? 1 : 0) != SQLITE_OK
        || sqlite3_bind_int64(s, 4, store_now()) != SQLITE_OK
        || sqlite3_bind_text(s, 5, relay_mode ? relay_mode : "", -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "adding a domain");
    return store_step_done(st, s, "adding a domain");
}

/* store_domain_del - 1 deleted, 0 absent, -1 error */
int store_domain_del(STORE *st, const char *name)
{
    sqlite3_stmt *s;

    if (store_usable(st) < 0)
        return -1;
    s = st->stmt[STMT_DOMAIN_DEL];
    if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "deleting a domain");
    if (store_step_done(st, s, "deleting a domain") < 0)
        return -1;
    return sqlite3_changes(st->db) > 0 ? 1 : 0;
}

/* store_walk_end - finish a walk: reset, and tell an error from the end */
static int store_walk_end(STORE *st, sqlite3_stmt *s, int rc, const char *what)
{
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        store_fail(st, what);
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* store_domain_walk - call fn for each domain in name order */
int store_domain_walk(STORE *st, int (*fn)(const STORE_DOMAIN *, void *), void *ctx)
{
    sqlite3_stmt *s;
    STORE_DOMAIN d;
    int rc;

    if (store_usable(st) < 0)
        return -1;
    s = st->stmt[STMT_DOMAIN_WALK];
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_domain_fill(st, s, &d, 0);
        if (fn(&d, ctx) != 0)
            break;
    }
    return store_walk_end(st, s, rc, "listing domains");
}

/* store_static_add - 1 added, 0 existed, -1 error */
int store_static_add(STORE *st, const char *address)
{
    sqlite3_stmt *s;

    if (store_usable(st) < 0)
        return -1;
    s = st->stmt[STMT_STATIC_ADD];
    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_int64(s, 2, store_now()) != SQLITE_OK)
        return store_fail(st, "adding a static entry");
    if (store_step_done(st, s, "adding a static entry") < 0)
        return -1;
    return sqlite3_changes(st->db) > 0 ? 1 : 0;
}

/* store_static_del - 1 deleted, 0 absent, -1 error */
int store_static_del(STORE *st, const char *address)
{
    sqlite3_stmt *s;

    if (store_usable(st) < 0)
        return -1;
    s = st->stmt[STMT_STATIC_DEL];
    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "deleting a static entry");
    if (store_step_done(st, s, "deleting a static entry") < 0)
        return -1;
    return sqlite3_changes(st->db) > 0 ? 1 : 0;
}

/* store_rcpt_walk - recipients of one source (NULL: all) in address order */
int store_rcpt_walk(STORE *st, const char *source, int (*fn)(const STORE_RCPT *, void *), void *ctx)
{
    sqlite3_stmt *s;
    STORE_RCPT r;
    int rc;

    if (store_usable(st) < 0)
        return -1;
    s = st->stmt[STMT_RCPT_WALK];
    rc = source ? sqlite3_bind_text(s, 1, source, -1, SQLITE_STATIC) : sqlite3_bind_null(s, 1);
    if (rc != SQLITE_OK)
        return store_fail(st, "listing recipients");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_rcpt_fill(st, s, &r, 0);
        if (fn(&r, ctx) != 0)
            break;
    }
    return store_walk_end(st, s, rc, "listing recipients");
}

/* store_stats - figures for `rcptgate stats` */
int store_stats(STORE *st, STORE_STATS *out)
{
    sqlite3_stmt *s;
    int rc;

    if (store_usable(st) < 0)
        return -1;
    s = st->stmt[STMT_STATS];
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->domains = sqlite3_column_int64(s, 0);
        out->recipients = sqlite3_column_int64(s, 1);
        out->statics = sqlite3_column_int64(s, 2);
        out->sources = sqlite3_column_int64(s, 3);
    } else if (rc == SQLITE_DONE) {
        store_errf(st, "counting: no result");
    } else {
        store_fail(st, "counting");
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* store_source_walk - per source: name, type, recipients, last run */
int store_source_walk(STORE *st, int (*fn)(const STORE_SOURCE_INFO *, void *), void *ctx)
{
    sqlite3_stmt *s;
    STORE_SOURCE_INFO info;
    int rc;

    if (store_usable(st) < 0)
        return -1;
    s = st->stmt[STMT_SOURCE_WALK];
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        info.name = store_text(s, 0);
        info.type = store_text(s, 1);
        info.recipients = sqlite3_column_int64(s, 2);
        info.last_success = sqlite3_column_int64(s, 3);
        info.last_run = sqlite3_column_int64(s, 4);
        info.last_outcome = store_text(s, 5);
        info.added = sqlite3_column_int64(s, 6);
        info.changed = sqlite3_column_int64(s, 7);
        info.removed = sqlite3_column_int64(s, 8);
        info.last_mode = store_text(s, 9);
        info.last_full = sqlite3_column_int64(s, 10);
        info.guard_refused = sqlite3_column_type(s, 11) != SQLITE_NULL;
        info.refused_full = info.guard_refused ? store_text(s, 11) : "";
        if (fn(&info, ctx) != 0)
            break;
    }
    return store_walk_end(st, s, rc, "listing sources");
}
