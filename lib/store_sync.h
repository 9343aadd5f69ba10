/*
 * store_sync.h - directory objects into the store (used by rcptgate-syncd)
 *
 * A directory source hands over objects (a user, a group, a contact ...)
 * with their addresses, login names and group members. Two ways in:
 *
 *  - a full pull: store_sync_begin, store_sync_put for every object,
 *    store_sync_diff to see what would change (for the shrink guard), then
 *    store_sync_commit (one transaction: objects, recipients, logins and
 *    members of that source made equal to what was put) or
 *    store_sync_refuse / store_sync_abort (nothing applied);
 *  - an incremental pull: store_delta_begin, store_delta_put (insert or
 *    replace one object by guid) and store_delta_del (by guid), maybe
 *    store_delta_diff (for the shrink guard), then store_delta_commit or
 *    store_delta_refuse / store_delta_abort.
 *
 * Both commits store the source's cookie (sync state) with the data in the
 * same transaction, so a crash never leaves a cookie ahead of the data.
 * Objects are matched by guid; a renamed object (new DN, same guid) is a
 * change, not a removal plus an addition, and keeps its object id (and so
 * its memberships). Readers are never blocked (WAL): they see the old
 * data until the commit, then all of the new.
 * All functions return 0 or -1 (store_error() says why) unless noted.
 *
 * Everything put is copied; nothing is locked while objects are put, so
 * a long directory pull does not hold up the admin command. The write
 * lock (BEGIN IMMEDIATE) is taken by store_sync_diff (so that the counts
 * and what commit applies agree) or by a commit, and held until commit,
 * refuse or abort. A failed diff, commit or refuse ends the sync (nothing
 * applied, the lock released): later calls fail until the next begin,
 * and abort stays safe. A refused put (a missing guid or kind, an empty
 * address) changes nothing: the caller may go on or abort.
 * One sync or replacement (store.h) at a time per handle. Memory: a full
 * pull is staged in a temporary database (a file in SQLITE_TMPDIR, or
 * TMPDIR, /var/tmp, of about 150 bytes per address) behind a capped page cache, so it takes
 * the same few tens of MB whatever its size (store_sync_stage.c); an
 * incremental pull is held in memory (about 150 bytes per object plus
 * copies of its strings).
 *
 * Semantics of a pull (full and incremental alike):
 *  - an object's recipient rows carry its kind and flags; its addresses
 *    and logins are sets (repeats are one);
 *  - members are DNs, matched ASCII case-insensitively against the DNs of
 *    the same source's objects; DNs that match nothing (a member that is
 *    not mail-enabled, or of another source) are dropped, not remembered:
 *    a group's nested groups are stored as direct members and readers
 *    resolve nesting;
 *  - one address, two objects of the source (full and incremental pulls
 *    alike): the object that holds it in the store keeps it while it
 *    carries it; another object carrying it only claims it (a claim row):
 *    it gets neither the recipient row nor, through it, the sender-login
 *    check, but its "internal senders only" flag still restricts the
 *    address (store_rcpt_get). When the holder lets go or goes, the
 *    claimant with the lowest guid (strcmp) takes it; of several objects
 *    of one pull claiming an address nobody held, the lowest guid, in
 *    whatever order they were put. Across sources each keeps its row
 *    (see store_claim_walk in store.h). A claim is logged once when it
 *    begins (a warning naming the address, both objects and the source)
 *    and once when it ends (a note), not at every pull;
 *  - counts are of recipient addresses of the source: added, changed
 *    (kind, flags or owning object changed; a DN change alone is not a
 *    recipient change), removed, kept (full pulls only);
 *  - cookie and invocation_id are stored as given (NULL stores NULL),
 *    last_success = last_run = now, and a sync_run row records the run.
 */
#ifndef RG_STORE_SYNC_H
#define RG_STORE_SYNC_H

#include <stddef.h>

#include "store.h"

typedef struct store_object {
    const char *guid;           /* objectGUID (hex), entryUUID, Graph id: identity */
    const char *dn;             /* distinguished name ("" if none) */
    const char *kind;           /* STORE_KIND_* */
    int flags;                  /* STORE_FLAG_* */
    const char *const *addresses;   /* normalised keys (lib/addr.c) */
    size_t n_addresses;
    const char *const *logins;      /* login names, lowercased */
    size_t n_logins;
    const char *const *members;     /* DNs of direct members, as the directory gives them */
    size_t n_members;
} STORE_OBJECT;

/* Sync state of one source. */
typedef struct store_sync_state {
    char *cookie;               /* RFC 4533 cookie, highest USN, delta link; NULL none */
    char *invocation_id;        /* AD: the DC the USN belongs to; NULL none */
    long long last_success;     /* unix time of the last applied sync, 0 never */
    char *settings;             /* store_sync_settings() of the commit that stored the cookie; NULL none */
} STORE_SYNC_STATE;

/*
 * store_sync_settings - between a begin (full or incremental) and its
 * commit: the text (a fingerprint of the source's settings) that the
 * commit stores beside the cookie, so that a cookie taken under other
 * settings is known as such (see sql/005_source_settings.sql). Without
 * it the commit stores none. 0, or -1 when no pull is in progress.
 */
int store_sync_settings(STORE *st, const char *settings);

/* store_sync_state_get - 1 found (caller frees with store_sync_state_free), 0 no such source, -1 */
int store_sync_state_get(STORE *st, const char *source, STORE_SYNC_STATE *out);
void store_sync_state_free(STORE_SYNC_STATE *state);

/*
 * Full pull. type is the source type ("ldap", "file", "graph"); the
 * source row is created with it by the first commit or refusal, and a
 * source of another type (or "static") is refused at begin.
 */
int store_sync_begin(STORE *st, const char *source, const char *type);
/*
 * store_sync_put - one object (guid and kind required, dn may be NULL);
 * the later of two puts with the same guid wins. Not after a diff.
 */
int store_sync_put(STORE *st, const STORE_OBJECT *obj);
/*
 * store_sync_diff - counts of recipient addresses commit would add,
 * change, remove (and keep): for the shrink guard, current = changed +
 * removed + kept. Takes the write lock; may be called again (same counts).
 */
int store_sync_diff(STORE *st, STORE_COUNTS *counts);
/*
 * store_sync_commit - apply in one transaction: the source's objects,
 * recipients, logins and members made equal to the pull (objects not put
 * are removed with all that is theirs), cookie/invocation_id stored, a
 * "full" run recorded. Writes only rows that change. counts may be NULL.
 */
int store_sync_commit(STORE *st, const char *cookie, const char *invocation_id, STORE_COUNTS *counts);
/*
 * store_sync_refuse - apply nothing (cookie untouched); record the run
 * ("full", outcome e.g. "refused" or "failed", message, counts or NULL)
 * and the source's last_run, in a transaction of its own.
 */
int store_sync_refuse(STORE *st, const char *outcome, const char *message, const STORE_COUNTS *counts);
/* store_sync_abort - apply and record nothing; safe without begin or after an error */
void store_sync_abort(STORE *st);
/*
 * store_sync_gone - after store_sync_diff: up to limit of the source's
 * addresses commit would remove, in address order, each given to fn
 * (which stops the walk by returning non-zero). For a refusal's message.
 */
int store_sync_gone(STORE *st, int (*fn)(const char *address, void *ctx), void *ctx, int limit);

/*
 * Incremental pull: operations are buffered and applied at commit in
 * arrival order; of several on one guid only the last counts.
 */
int store_delta_begin(STORE *st, const char *source, const char *type);
/*
 * store_delta_expect - the source's stored cookie the pull started from
 * (NULL: none): at commit, under the write lock, the stored one must
 * still be it, or nothing is applied (an error). Another process's commit
 * in between (a full pull from --once beside the daemon) may have rolled
 * back what this pull's changes build on; the next pull starts from the
 * cookie stored now.
 */
int store_delta_expect(STORE *st, const char *cookie);
/*
 * store_delta_put - add or replace one object by guid: dn, kind, flags,
 * and its whole sets of addresses, logins and members. Members resolve at
 * commit against the source's objects as they are after every put and
 * delete of this pull. (A group whose member becomes resolvable later,
 * e.g. mail-enabled, gains it at its own next put or the next full pull.)
 */
int store_delta_put(STORE *st, const STORE_OBJECT *obj);
/* store_delta_del - remove an object by guid, with all that is its; an unknown guid is fine */
int store_delta_del(STORE *st, const char *guid);
/*
 * store_delta_diff - for the shrink guard: take the write lock and write
 * the pull without committing; counts are what the commit would do, and
 * kept (the source's recipients that stay) is set when something would
 * be removed, so that current = changed + removed + kept as for a full
 * pull. The lock is held until commit, refuse or abort. May be skipped.
 */
int store_delta_diff(STORE *st, STORE_COUNTS *counts);
/* store_delta_commit - apply in one transaction, store the state, record an "incremental" run */
int store_delta_commit(STORE *st, const char *cookie, const char *invocation_id, STORE_COUNTS *counts);
/*
 * store_delta_refuse - apply nothing (a diff is rolled back, the cookie
 * stays, so the next pull asks for the same changes again); record an
 * "incremental" run (outcome, message, counts or NULL) and last_run.
 */
int store_delta_refuse(STORE *st, const char *outcome, const char *message, const STORE_COUNTS *counts);
/* store_delta_abort - apply and record nothing; safe without begin or after an error */
void store_delta_abort(STORE *st);

/*
 * store_sync_age - seconds since the oldest last_success among directory
 * sources (type not "import" or "static"); 0 sets *age = -1 when there is
 * no such source. A source that never succeeded (only refusals) counts as
 * synced at time 0, i.e. very stale. For lookupd's staleness limit.
 */
int store_sync_age(STORE *st, long long *age);

/* store_source_synced - has the source name ever had a sync applied? 1 yes, 0 no (or no such source), -1 error */
int store_source_synced(STORE *st, const char *name);

/*
 * store_source_del - remove the source name and everything it holds
 * (objects, recipients, logins, members, claims, runs), in one
 * statement. The source "static" is never removed. 1 removed (*recipients
 * how many it held), 0 no such source, -1 error.
 */
int store_source_del(STORE *st, const char *name, long long *recipients);

#endif
