/*
 * store.h - the SQLite store of domains, recipients and sync state
 *
 * One writer (syncd, the admin command) and many readers (lookupd, smtpd),
 * in WAL mode so readers never wait for the writer. The schema lives in
 * sql/ as numbered migrations compiled in; whoever opens the store first
 * migrates it in one transaction and PRAGMA user_version records how far.
 *
 * Every lookup returns -1 (error: the caller must answer "try later"),
 * 0 (not found) or 1 (found). An SQLite error is always -1, never 0, and
 * store_error() then says what went wrong.
 * const char pointers in returned structs live until the next call on the
 * same STORE; copy what must outlive it.
 *
 * A STORE belongs to one thread (the connection is opened without a
 * mutex). Statements are prepared once at open and kept for the life of
 * the handle.
 */
#ifndef RG_STORE_H
#define RG_STORE_H

#include <stddef.h>

typedef struct store STORE;

/* store_open flags */
#define STORE_CREATE    0x01    /* create the file if it does not exist */
/*
 * A reader that never writes (lookupd, smtpd): the connection is opened
 * read-only (SQLITE_OPEN_READONLY) and never migrates. A schema older or
 * newer than this program's is refused: whoever writes (syncd, the
 * rcptgate command) migrates it, and the reader tries again later.
 * The user needs read access only, to the store and its -wal and -shm
 * files, which must then exist: every connection keeps them on close
 * (SQLITE_FCNTL_PERSIST_WAL), so they do once any writer has run.
 */
#define STORE_READONLY  0x02

/*
 * store_open - open the store, migrating its schema if it is older
 * (unless STORE_READONLY). Fails (NULL, reason in err) when the file is
 * missing (without STORE_CREATE), unreadable, not a database, or its
 * schema is newer than this program knows. busy_ms bounds every wait
 * for a lock.
 */
STORE *store_open(const char *path, int flags, int busy_ms, char *err, size_t errlen);

/* store_close - finalise statements and close; NULL is fine */
void store_close(STORE *st);

/* store_error - text of the last error on this handle (for logs, TEMP) */
const char *store_error(STORE *st);

/*
 * store_incomplete_set - mark the handle's data as lacking a source that
 * has never synced (why, "" for complete again; lib/keeper.c decides):
 * an address the store holds is still valid, but one it does not hold may
 * be the missing source's, so check_rcpt() cannot say "no" for it.
 * store_incomplete - the mark, "" when none.
 */
void store_incomplete_set(STORE *st, const char *why);
const char *store_incomplete(const STORE *st);

/*
 * store_errors - how many errors this handle has had: a caller that
 * does not see every -1 itself (the store keeper) notices new ones.
 */
unsigned long store_errors(STORE *st);

/* store_schema_version - the schema version this program knows */
int store_schema_version(void);

/*
 * store_read_begin/store_read_end - wrap several lookups in one read
 * transaction: one consistent snapshot and one WAL lock round trip.
 * store_read_end is safe to call after a failed begin.
 */
int store_read_begin(STORE *st);
void store_read_end(STORE *st);

/*
 * store_read_current - 1 when the read transaction store_read_begin opened
 * would still see every commit: nobody has committed since it began, so
 * keeping it answers exactly as a new one would. 0 when it must be ended
 * and begun again (something was committed), when none is open, or when
 * it cannot tell (not in WAL mode, first read of the handle). It reads
 * the WAL-index header in the shared memory SQLite has mapped already:
 * no system call, where ending and beginning a read costs two fcntl()
 * locks and an fstat().
 */
int store_read_current(STORE *st);

/* store_path - the file this handle has open */
const char *store_path(STORE *st);

/* Domains we accept mail for. */
typedef struct store_domain {
    const char *name;           /* lowercase A-label */
    const char *nexthop;        /* Postfix transport syntax; "" = default */
    int subdomains;             /* subdomains match too */
    const char *relay_mode;     /* rcptgate-smtpd's relay_mode for it; "" = [smtpd] relay_mode */
} STORE_DOMAIN;

/* store_domain_get - exact lookup of a normalised domain name */
int store_domain_get(STORE *st, const char *name, STORE_DOMAIN *out);
/* store_domain_put - add or update a domain; 0 done, -1 error */
int store_domain_put(STORE *st, const char *name, const char *nexthop, int subdomains);
/* store_domain_put_mode - the same, with the domain's relay mode ("" = the [smtpd] default) */
int store_domain_put_mode(STORE *st, const char *name, const char *nexthop, int subdomains,
                          const char *relay_mode);
int store_domain_del(STORE *st, const char *name);      /* 1 deleted, 0 absent, -1 */
/* store_domain_walk - call fn for each domain in name order; fn non-zero stops */
int store_domain_walk(STORE *st, int (*fn)(const STORE_DOMAIN *, void *), void *ctx);

/* Recipient kinds, as stored. */
#define STORE_KIND_USER         "user"
#define STORE_KIND_SHARED       "shared"
#define STORE_KIND_GROUP        "group"
#define STORE_KIND_CONTACT      "contact"
#define STORE_KIND_PUBFOLDER    "publicfolder"
#define STORE_KIND_STATIC       "static"
#define STORE_KIND_IMPORTED     "imported"

/* Recipient flags. */
#define STORE_FLAG_INTERNAL_ONLY 0x01  /* group: internal senders only */

typedef struct store_rcpt {
    const char *address;        /* normalised key, or "@domain" catch-all */
    const char *kind;
    const char *source;         /* source name ("static" for static entries) */
    const char *dn;             /* directory object, "" when none */
    const char *guid;           /* directory object id, "" when none */
    long long last_seen;        /* unix time (see below) */
    int flags;
} STORE_RCPT;

/*
 * store_rcpt_get - exact lookup of a normalised key. When several sources
 * hold the key, the oldest source wins (static first), so the answer is
 * stable; but flags carry the restriction (STORE_FLAG_INTERNAL_ONLY) of
 * any row or claim of the key (see STORE_CLAIM), so that neither an older
 * static or imported row nor a user holding a restricted group's address
 * lifts it. last_seen is the later of the row's own time (added or changed)
 * and its source's last complete replace, which confirmed every row it
 * kept without rewriting them.
 */
int store_rcpt_get(STORE *st, const char *address, STORE_RCPT *out);

/* Static entries (postmaster@, abuse@): recipients of the source "static". */
int store_static_add(STORE *st, const char *address);   /* 1 added, 0 existed, -1 */
int store_static_del(STORE *st, const char *address);   /* 1 deleted, 0 absent, -1 */

/*
 * store_rcpt_walk - recipients of source (NULL: all sources) in address
 * order, then source order; an address held by several sources comes once
 * per source. The STORE_RCPT given to fn is valid during that call only;
 * fn must not start another walk. fn non-zero stops the walk.
 */
int store_rcpt_walk(STORE *st, const char *source, int (*fn)(const STORE_RCPT *, void *), void *ctx);

/*
 * store_login_owns - may the user who logs in as login (sAMAccountName,
 * userPrincipalName or uid as synced; compared case-insensitively) send
 * as address (a normal form)? 1 yes: the address belongs to that user's
 * directory object, 0 no (including an unknown login), -1 store failure.
 */
int store_login_owns(STORE *st, const char *login, const char *address);

/*
 * One object's (or row's) hold on an address, for `rcptgate query`.
 * Within a source the first object to carry an address holds it while it
 * carries it; another object of the source carrying it too only claims
 * it: it gets neither the recipient row nor the sender-login check, but
 * its restriction (STORE_FLAG_INTERNAL_ONLY) still holds the address.
 * When the holder lets go (or goes), the claimant with the lowest guid
 * takes the address; of several objects new to one pull, the lowest guid
 * holds. Across sources, each has its row; lookups answer with the
 * oldest source's (static first), and only the object of the oldest
 * source's row with an object passes the sender-login check.
 */
typedef struct store_claim {
    const char *source;
    const char *kind;           /* the row's or the claiming object's kind */
    const char *dn;             /* "" when none */
    const char *guid;           /* "" for a row of no object (static, import) */
    long long object_id;        /* 0 for a row of no object */
    long long since;            /* holders: last_seen of the row; claims: first seen */
    int flags;
    int holds;                  /* 1 a recipient row (holds it in its source), 0 a claim */
    int login;                  /* 1 this object's logins may send as the address */
} STORE_CLAIM;

/*
 * store_claim_walk - the holders of address (source order), then the
 * objects that only claim it; fn non-zero stops. The struct is valid
 * during that call only. 0 or -1.
 */
int store_claim_walk(STORE *st, const char *address, int (*fn)(const STORE_CLAIM *, void *), void *ctx);

/*
 * Replacing one source's recipients as one transaction (import): begin,
 * add each address, commit applies the difference (added/removed/kept)
 * and records a sync run. Nothing is visible to readers until commit;
 * abort (or any error) applies nothing. The new set is staged in a TEMP
 * table of the connection (a temporary file), so memory does not grow
 * with the set; repeats are one entry.
 */
typedef struct store_counts {
    long long added, changed, removed, kept;
} STORE_COUNTS;

/*
 * store_replace_begin - start replacing source (created with type when
 * new; an existing source of another type, or of type "static", is
 * refused). The write lock (BEGIN IMMEDIATE) is taken by the first diff
 * or by commit, and held until commit, refuse or abort; the adds before
 * it lock nothing of the store.
 */
int store_replace_begin(STORE *st, const char *source, const char *type);
/* store_replace_add - one address of the new set; a repeated address is one entry (last kind wins) */
int store_replace_add(STORE *st, const char *address, const char *kind);
/*
 * store_replace_diff - what commit would do (counts), without applying
 * it: for a shrink guard that may then refuse. 0 or -1.
 */
int store_replace_diff(STORE *st, STORE_COUNTS *counts);
/*
 * store_replace_gone - after store_replace_diff: call fn with up to limit
 * of the source's addresses that the new set lacks (what commit would
 * remove), in address order; fn non-zero stops. 0 or -1.
 */
int store_replace_gone(STORE *st, int (*fn)(const char *address, void *ctx), void *ctx, int limit);
/*
 * store_replace_commit - apply the difference, set the source's
 * last_success/last_run, record a sync run (mode "import" for sources of
 * type "import", else "full"; outcome "ok"). 0 or -1 (nothing applied).
 */
int store_replace_commit(STORE *st, STORE_COUNTS *counts);
/* store_replace_abort - apply nothing; safe after an error or without begin */
void store_replace_abort(STORE *st);
/*
 * store_replace_refuse - apply nothing, but record the attempt: the
 * source's last_run and a sync run with outcome ("refused", "failed"),
 * message and counts (may be NULL). 0 or -1.
 */
int store_replace_refuse(STORE *st, const char *outcome, const char *message,
                         const STORE_COUNTS *counts);

/* Figures for `rcptgate stats`. */
typedef struct store_stats {
    long long domains;
    long long recipients;       /* distinct addresses, all sources */
    long long statics;          /* entries of the source "static" */
    long long sources;
} STORE_STATS;

int store_stats(STORE *st, STORE_STATS *out);

/*
 * store_source_walk - per source, in name order: name, type, recipients,
 * last run summary. The struct given to fn is valid during that call only.
 */
typedef struct store_source_info {
    const char *name;
    const char *type;
    long long recipients;
    long long last_success;     /* unix time, 0 never */
    long long last_run;         /* unix time, 0 never */
    const char *last_outcome;   /* "ok", "refused: ...", "failed: ..." */
    const char *last_mode;      /* of the last run: "full", "incremental", "import"; "" none */
    long long last_full;        /* unix time of the latest full pull applied, 0 never */
    long long added, changed, removed;  /* of the last run */
    /*
     * 1 the latest full pull was refused by the shrink guard and none was
     * applied since (incremental runs after it do not clear it); from
     * store_runs_walk also 2: the latest pull applied or refused was an
     * incremental one the guard refused.
     */
    int guard_refused;
    const char *refused_full;   /* store_source_walk: that refused full pull's message, else "" */
} STORE_SOURCE_INFO;

int store_source_walk(STORE *st, int (*fn)(const STORE_SOURCE_INFO *, void *), void *ctx);

/*
 * store_runs_walk - as store_source_walk, without counting recipients
 * (recipients is -1): cheap enough for a daemon's periodic metrics.
 */
int store_runs_walk(STORE *st, int (*fn)(const STORE_SOURCE_INFO *, void *), void *ctx);

#endif
