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
 *    replace one object by guid) and store_delta_del (by guid), then
 *    store_delta_commit or store_delta_abort.
 *
 * Both commits store the source's cookie (sync state) with the data in the
 * same transaction, so a crash never leaves a cookie ahead of the data.
 * Objects are matched by guid; a renamed object (new DN, same guid) is a
 * change, not a removal plus an addition. Readers are never blocked.
 * All functions return 0 or -1 (store_error() says why) unless noted.
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
} STORE_SYNC_STATE;

/* store_sync_state_get - 1 found (caller frees with store_sync_state_free), 0 no such source, -1 */
int store_sync_state_get(STORE *st, const char *source, STORE_SYNC_STATE *out);
void store_sync_state_free(STORE_SYNC_STATE *state);

/* Full pull. type is the source type ("ldap", "file", "graph"). */
int store_sync_begin(STORE *st, const char *source, const char *type);
int store_sync_put(STORE *st, const STORE_OBJECT *obj);
/* store_sync_diff - counts of recipient addresses commit would add, change, remove */
int store_sync_diff(STORE *st, STORE_COUNTS *counts);
/* store_sync_commit - apply, store cookie/invocation_id, record a "full" run */
int store_sync_commit(STORE *st, const char *cookie, const char *invocation_id, STORE_COUNTS *counts);
/* store_sync_refuse - apply nothing; record the run with outcome and message */
int store_sync_refuse(STORE *st, const char *outcome, const char *message, const STORE_COUNTS *counts);
void store_sync_abort(STORE *st);

/* Incremental pull. */
int store_delta_begin(STORE *st, const char *source, const char *type);
int store_delta_put(STORE *st, const STORE_OBJECT *obj);
int store_delta_del(STORE *st, const char *guid);
int store_delta_commit(STORE *st, const char *cookie, const char *invocation_id, STORE_COUNTS *counts);
void store_delta_abort(STORE *st);

/*
 * store_sync_age - seconds since the oldest last_success among directory
 * sources (type not "import" or "static"); 0 sets *age = -1 when there is
 * no such source. For lookupd's staleness limit.
 */
int store_sync_age(STORE *st, long long *age);

#endif
