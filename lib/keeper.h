/*
 * keeper.h - the store handle of a daemon that reads it (lookupd, smtpd)
 *
 * One keeper per daemon holds its read-only STORE (store_open with
 * STORE_READONLY) and every rule about when that handle may answer:
 *
 *   - the store may be missing, locked, corrupt, of another schema
 *     version or unreadable: the daemon runs anyway, answers "try later"
 *     and tries to open it again at most once a second;
 *   - a lookup that fails closes the handle (the next open starts clean);
 *   - once a second the keeper checks that the path still names the file
 *     it has open (device and inode): a vanished store closes it, a
 *     replaced one (a new file moved over it) is reopened;
 *   - while a [source NAME] of the file has never synced, the handle
 *     answers, marked incomplete (store_incomplete_set): an address it
 *     holds is valid, one it lacks is "try later" (check_rcpt);
 *   - with [store] max_age set, the directory data is checked once a
 *     second: past the limit every answer is "try later", because a list
 *     that has stopped syncing no longer knows new addresses, and an
 *     "unknown user" from it bounces real mail;
 *   - each new reason is logged once, not once a second.
 *
 * The keeper reads the [store] settings (path, busy_timeout, max_age)
 * each time it opens or checks, so a reload only needs keeper_reopen().
 * NULL from keeper_store() means: answer 4xx / TEMP, with *reason.
 */
#ifndef RG_KEEPER_H
#define RG_KEEPER_H

#include "store.h"

typedef struct keeper KEEPER;

/*
 * keeper_create - a keeper that has not opened the store yet. doing is
 * what the daemon does while the store is unusable, for the logs
 * ("answering TEMP", "deferring recipients"); ready is the status given
 * to daemon_ready() each time the store is opened ("answering"). Both
 * strings must outlive the keeper.
 */
KEEPER *keeper_create(const char *doing, const char *ready);

/* keeper_free - close the store, free the keeper; NULL is fine */
void keeper_free(KEEPER *k);

/*
 * keeper_mirror - keep *where equal to what keeper_store() would return
 * (the handle, or NULL while it is closed or stale) after every change,
 * for code that reads a global handle (smtpd_store).
 */
void keeper_mirror(KEEPER *k, STORE **where);

/*
 * keeper_tick - once a second: is the file still the one open, is the
 * data still fresh, and open the store if it is closed and a retry is due.
 */
void keeper_tick(KEEPER *k);

/* keeper_incomplete - 1 while the open store answers without a source that has never synced */
int keeper_incomplete(const KEEPER *k);

/* keeper_reopen - close now and open again at once (reload: the path may have changed) */
void keeper_reopen(KEEPER *k);

/*
 * keeper_store - the handle if it may answer now (opening it if a retry
 * is due), else NULL and *reason (valid until the next keeper call). A
 * failure recorded on the handle since the last call (store_errors())
 * closes it first, as keeper_failed() does.
 */
STORE *keeper_store(KEEPER *k, const char **reason);

/*
 * keeper_read - as keeper_store(), inside a read transaction that lasts
 * until keeper_read_end(), or until a commit: a transaction kept from an
 * earlier call serves only while store_read_current() says nobody has
 * committed since it began, else it is renewed. lookupd keeps one across
 * loop rounds (a WAL lock round trip saved per request) and ends it in
 * its once-a-second tick.
 */
STORE *keeper_read(KEEPER *k, const char **reason);

/* keeper_read_end - end the round's read transaction, if any */
void keeper_read_end(KEEPER *k);

/*
 * keeper_failed - a lookup returned -1: log it, close the handle, answer
 * "try later" until a reopen (at most once a second) works. reason may
 * be store_error() of the handle.
 */
void keeper_failed(KEEPER *k, const char *reason);

/*
 * keeper_stale - is the directory data in st not to be trusted: a
 * [source NAME] of the configuration has never had a sync applied, or
 * (with [store] max_age set) the data is older than that? 1 (why says
 * so, for replies and logs), 0 fresh or no limit, -1 a store error
 * (store_error()). The keeper's own test, for a command that must judge
 * as the daemons do (rcptgate query). When only a source never synced
 * makes it so, st may still answer as the daemons' does: 0, and st is
 * marked with store_incomplete_set(st, why) (cleared otherwise).
 */
int keeper_stale(STORE *st, char *why, size_t size);

/*
 * keeper_unsynced - has a [source NAME] of the file last loaded never had
 * a sync applied to st? 1 with its name, 0 none, -1 a store error. (Every
 * one is checked, however many.)
 */
int keeper_unsynced(STORE *st, char *name, size_t size);

/*
 * keeper_ready_line - what a daemon tells systemd after a reload: "READY=1",
 * with a STATUS= naming why it defers while the store is closed or stale.
 * The text lives in the keeper until the next call.
 */
const char *keeper_ready_line(KEEPER *k);

/* keeper_open - 1 if the store is open (fresh or stale), else 0 */
int keeper_open(const KEEPER *k);

/* keeper_handle - the open handle even when stale (metrics), or NULL */
STORE *keeper_handle(const KEEPER *k);

#endif
