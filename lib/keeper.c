/*
 * keeper.c - the store handle of a daemon that reads it (see keeper.h)
 *
 * lookupd and smtpd once each had their own copy of this, and they had
 * drifted: smtpd ignored [store] max_age (a false "user unknown" from a
 * list that had stopped syncing) and never noticed a replaced store
 * file. Both now keep their handle here.
 *
 * Times are CLOCK_MONOTONIC milliseconds: a retry interval must not
 * stretch or vanish when the wall clock is stepped. The data's age is
 * wall-clock time, as the store records it (store_sync_age()).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cfg.h"
#include "daemon.h"
#include "keeper.h"
#include "log.h"
#include "params.h"
#include "store_sync.h"
#include "xalloc.h"

#define KEEPER_RETRY_MS     1000        /* at most one open attempt per second */
#define KEEPER_REASON_LEN   256

struct keeper {
    STORE *st;                  /* NULL: closed, reason says why */
    STORE **mirror;             /* kept equal to what keeper_store() returns */
    int in_read;                /* keeper_read() began a transaction */
    dev_t dev;                  /* the file we opened */
    ino_t ino;
    char *path;                 /* the path we opened it by */
    unsigned long errors;       /* store_errors() when we last looked */
    long long last_try_ms;
    const char *doing;          /* "answering TEMP" */
    const char *ready;          /* daemon_ready() status */
    char reason[KEEPER_REASON_LEN];     /* why it is closed */
    char stale[KEEPER_REASON_LEN];      /* non-empty: data older than max_age, or a source never synced */
    int partial;                /* stale only by a source never synced: known addresses still answer */
    char line[2 * KEEPER_REASON_LEN + 64];      /* the text of the ready line */
};

/* keeper_now_ms - monotonic milliseconds */
static long long keeper_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * keeper_copy - a reason as printable ASCII, capped: it goes into TEMP
 * replies and log lines, and may come from SQLite or a file name
 */
static void keeper_copy(char *out, size_t size, const char *in)
{
    size_t n = 0;

    if (in == NULL)
        in = "unknown error";
    for (; *in && n + 1 < size; in++) {
        unsigned char c = (unsigned char) *in;

        out[n++] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
    }
    out[n] = 0;
}

/* keeper_sync_mirror - the owner's global handle follows our state */
static void keeper_sync_mirror(KEEPER *k)
{
    if (k->mirror != NULL)
        *k->mirror = (k->st != NULL && (k->stale[0] == 0 || k->partial)) ? k->st : NULL;
}

/* keeper_create - a keeper that has not opened the store yet */
KEEPER *keeper_create(const char *doing, const char *ready)
{
    KEEPER *k = xcalloc(1, sizeof(*k));

    k->doing = doing;
    k->ready = ready;
    k->last_try_ms = LLONG_MIN / 2;
    snprintf(k->reason, sizeof(k->reason), "not opened yet");
    return k;
}

/* keeper_close - give up the handle; reason (may be NULL) says why */
static void keeper_close(KEEPER *k, const char *reason)
{
    if (k->st != NULL) {
        if (k->in_read)
            store_read_end(k->st);
        store_close(k->st);
        k->st = NULL;
    }
    k->in_read = 0;
    k->stale[0] = 0;
    k->partial = 0;
    if (reason != NULL)
        keeper_copy(k->reason, sizeof(k->reason), reason);
    keeper_sync_mirror(k);
}

/* keeper_free - close the store, free the keeper */
void keeper_free(KEEPER *k)
{
    if (k == NULL)
        return;
    keeper_close(k, NULL);
    free(k->path);
    free(k);
}

/* keeper_mirror - keep *where equal to keeper_store()'s answer */
void keeper_mirror(KEEPER *k, STORE **where)
{
    k->mirror = where;
    keeper_sync_mirror(k);
}

/* keeper_sources - the [source NAME]s of the file last loaded into *names (to free); the count */
static int keeper_sources(char (**names)[CFG_NAME_LEN])
{
    int n = cfg_family_seen("source", NULL, 0);

    *names = xcalloc(n > 0 ? (size_t) n : 1, sizeof(**names));
    return cfg_family_seen("source", *names, n);
}

/* keeper_unsynced - a [source NAME] of the file never synced into st? (keeper.h) */
int keeper_unsynced(STORE *st, char *name, size_t size)
{
    char (*names)[CFG_NAME_LEN];
    int n = keeper_sources(&names), rc = 0;

    for (int i = 0; i < n; i++) {
        int synced = store_source_synced(st, names[i]);

        if (synced <= 0) {
            if (synced == 0)
                snprintf(name, size, "%s", names[i]);
            rc = synced < 0 ? -1 : 1;
            break;
        }
    }
    free(names);
    return rc;
}

/*
 * keeper_oldest - seconds since the last applied sync of the [source
 * NAME] of the file synced longest ago, with its name (-1: none synced).
 * Only the file's sources count: one removed from it stays in the store
 * until `rcptgate source del`, and must not make every answer TEMP.
 * A file without any (a daemon given a file of its own) counts every
 * directory source of the store, unnamed. 0 or -1 (a store error).
 */
static int keeper_oldest(STORE *st, char *name, size_t size, long long *age)
{
    char (*names)[CFG_NAME_LEN];
    int n = keeper_sources(&names), rc = 0;
    long long oldest = -1;

    name[0] = 0;
    *age = -1;
    if (n == 0) {
        free(names);
        return store_sync_age(st, age);
    }
    for (int i = 0; i < n && rc == 0; i++) {
        STORE_SYNC_STATE ss;
        int got = store_sync_state_get(st, names[i], &ss);

        if (got < 0)
            rc = -1;
        if (got <= 0)
            continue;                   /* never synced: keeper_unsynced says so */
        if (ss.last_success > 0 && (oldest < 0 || ss.last_success < oldest)) {
            oldest = ss.last_success;
            snprintf(name, size, "%s", names[i]);
        }
        store_sync_state_free(&ss);
    }
    free(names);
    if (rc == 0 && oldest >= 0) {
        *age = (long long) time(NULL) - oldest;
        if (*age < 0)
            *age = 0;                   /* a clock stepped back */
    }
    return rc;
}

/*
 * keeper_judge - keeper_stale, and *partial: 1 when only a source that has
 * never synced makes it so. Past max_age nothing the store says can be
 * trusted; a source not synced yet only makes its absence of an address
 * meaningless (the address may be that source's), while what the other
 * sources hold is as good as ever.
 */
static int keeper_judge(STORE *st, char *why, size_t size, int *partial)
{
    char name[CFG_NAME_LEN];
    long long age;
    int rc;

    why[0] = 0;
    *partial = 0;
    if (var_store_max_age_ms > 0) {
        if (keeper_oldest(st, name, sizeof(name), &age) < 0)
            return -1;
        if (age >= 0 && age * 1000 > var_store_max_age_ms) {
            snprintf(why, size, "directory data is stale: %s%s%slast sync %lld s ago, max_age is %d s",
                     name[0] ? "source " : "", name, name[0] ? ": " : "", age, var_store_max_age_ms / 1000);
            return 1;
        }
    }
    /*
     * A [source NAME] of the configuration that has never had a sync
     * applied: its recipients are not in the store yet, and "user
     * unknown" for them would bounce real mail (a new gateway started
     * before its first pull, a source just added or renamed). Checked
     * whatever max_age says.
     */
    if ((rc = keeper_unsynced(st, name, sizeof(name))) == 1) {
        snprintf(why, size, "source %s has never synced: its recipients are not in the store yet", name);
        *partial = 1;
    }
    return rc;
}

/* keeper_stale - may st answer at all, and is it complete? (keeper.h) */
int keeper_stale(STORE *st, char *why, size_t size)
{
    int partial, rc = keeper_judge(st, why, size, &partial);

    store_incomplete_set(st, rc > 0 && partial ? why : "");
    return rc > 0 && partial ? 0 : rc;
}

/*
 * keeper_stale_check - with [store] max_age set, is the directory data too
 * old to trust? A syncd that has stopped syncing leaves a list that no
 * longer knows new employees; past the limit "try later" is the honest
 * answer. Checked once a second and at each open, not per lookup.
 */
static void keeper_status(KEEPER *k);

/* keeper_doing - what the daemon does while the data is stale */
static const char *keeper_doing(const KEEPER *k)
{
    return k->partial ? "addresses it does not hold get \"try later\" (those it holds are answered)" : k->doing;
}

static void keeper_stale_check(KEEPER *k)
{
    char was[sizeof(k->stale)];
    int was_partial = k->partial;

    memcpy(was, k->stale, sizeof(was));
    k->stale[0] = 0;
    k->partial = 0;
    if (k->st == NULL)
        return;
    if (keeper_judge(k->st, k->stale, sizeof(k->stale), &k->partial) < 0) {
        k->stale[0] = 0;
        k->partial = 0;
        keeper_failed(k, store_error(k->st));
        return;
    }
    store_incomplete_set(k->st, k->partial ? k->stale : "");
    if (k->stale[0] && (was[0] == 0 || was_partial != k->partial))
        log_warn("store %s: %s; %s until a sync succeeds", k->path, k->stale, keeper_doing(k));
    else if (k->stale[0] == 0 && was[0])
        log_info("store %s: directory data fresh again", k->path);
    keeper_sync_mirror(k);
    if ((k->stale[0] != 0) != (was[0] != 0))
        keeper_status(k);               /* systemctl status says stale, then fresh */
}

/* keeper_ready_line - "READY=1", with a STATUS= while closed or stale */
const char *keeper_ready_line(KEEPER *k)
{
    if (k == NULL)
        return "READY=1\nSTATUS=store unavailable";
    if (k->st == NULL)
        snprintf(k->line, sizeof(k->line), "READY=1\nSTATUS=store unavailable, %s", k->doing);
    else if (k->stale[0])
        snprintf(k->line, sizeof(k->line), "READY=1\nSTATUS=%s; %s", k->stale, keeper_doing(k));
    else
        return "READY=1";
    return k->line;
}

/* keeper_status - the daemon's STATUS= (READY=1 the first time) once the store is open */
static void keeper_status(KEEPER *k)
{
    char status[sizeof(k->line)];

    if (k->st == NULL || k->ready == NULL)
        return;
    if (k->stale[0])
        snprintf(status, sizeof(status), "%s; %s", k->stale, keeper_doing(k));
    else
        snprintf(status, sizeof(status), "%s", k->ready);
    daemon_ready(status);
}

/* keeper_try - open the store if it is closed and a retry is due */
static void keeper_try(KEEPER *k)
{
    char err[KEEPER_REASON_LEN];
    char safe[KEEPER_REASON_LEN];
    struct stat sb;
    int have_stat;
    long long now;
    STORE *st;

    if (k->st != NULL)
        return;                 /* the common case, on every lookup: no clock read */
    now = keeper_now_ms();
    if (now - k->last_try_ms < KEEPER_RETRY_MS)
        return;
    k->last_try_ms = now;
    /*
     * The identity first, then the open: a file moved in between is then
     * the one open but not the one recorded, and the next check reopens
     * it. The other order could keep an old file open for good.
     */
    have_stat = stat(var_store_path, &sb) == 0;
    st = store_open(var_store_path, STORE_READONLY, var_store_busy_ms, err, sizeof(err));
    if (st == NULL) {
        keeper_copy(safe, sizeof(safe), err);
        /* Log a new reason once; the same failure every second is noise. */
        if (strcmp(safe, k->reason) != 0)
            log_warn("store %s unavailable: %s; %s until it can be opened", var_store_path, safe,
                     k->doing);
        memcpy(k->reason, safe, sizeof(k->reason));
        return;
    }
    k->st = st;
    k->errors = store_errors(st);
    k->dev = have_stat ? sb.st_dev : 0;
    k->ino = have_stat ? sb.st_ino : 0;
    free(k->path);
    k->path = xstrdup(var_store_path);
    snprintf(k->reason, sizeof(k->reason), "open");
    log_info("store %s opened (read-only)", k->path);
    keeper_stale_check(k);
    keeper_sync_mirror(k);
    keeper_status(k);
}

/* keeper_check_errors - a failure on the handle that its caller did not report */
static void keeper_check_errors(KEEPER *k)
{
    if (k->st != NULL && store_errors(k->st) != k->errors)
        keeper_failed(k, store_error(k->st));
}

/* keeper_check_file - the file we have open is still the one configured */
static void keeper_check_file(KEEPER *k)
{
    struct stat sb;

    if (k->st == NULL)
        return;
    if (strcmp(k->path, var_store_path) != 0) {
        log_info("store path changed from %s to %s; reopening", k->path, var_store_path);
        keeper_close(k, "store path changed");
        k->last_try_ms = LLONG_MIN / 2;
    } else if (stat(k->path, &sb) < 0) {
        char why[KEEPER_REASON_LEN + 64];

        snprintf(why, sizeof(why), "%s: %s", k->path, strerror(errno));
        log_warn("store vanished (%s); %s until it is back", why, k->doing);
        keeper_close(k, why);
    } else if (sb.st_dev != k->dev || sb.st_ino != k->ino) {
        log_info("store %s was replaced; reopening", k->path);
        keeper_close(k, "store file replaced");
        k->last_try_ms = LLONG_MIN / 2;
    }
}

/* keeper_tick - once a second: errors, file, freshness, open if due */
void keeper_tick(KEEPER *k)
{
    keeper_check_errors(k);
    keeper_check_file(k);
    keeper_stale_check(k);
    keeper_try(k);
}

/* keeper_reopen - close now and open again at once */
void keeper_reopen(KEEPER *k)
{
    keeper_close(k, "reopening");
    k->last_try_ms = LLONG_MIN / 2;
    keeper_try(k);
}

/* keeper_store - the handle if it may answer now, else NULL and why */
STORE *keeper_store(KEEPER *k, const char **reason)
{
    keeper_check_errors(k);
    keeper_try(k);
    if (k->st != NULL && k->stale[0] && !(k->in_read && store_read_current(k->st))) {
        /*
         * While the data is not to be trusted, look again at each request
         * that follows a commit (a few reads, and only then): the sync
         * that ends it, such as a source's first, is seen at once, not at
         * the next tick a second later. Without a commit nothing it
         * judges has changed (max_age's clock is the tick's), so an
         * incomplete store that answers keeps its read, as a fresh one.
         * A read kept from an earlier round would see the old data.
         */
        if (k->in_read) {
            store_read_end(k->st);
            k->in_read = 0;
        }
        keeper_stale_check(k);
    }
    if (k->st == NULL) {
        *reason = k->reason;
        return NULL;
    }
    if (k->stale[0] && !k->partial) {
        *reason = k->stale;
        return NULL;
    }
    return k->st;
}

/* keeper_read - keeper_store() inside the round's read transaction */
STORE *keeper_read(KEEPER *k, const char **reason)
{
    STORE *st = keeper_store(k, reason);

    if (st == NULL)
        return st;
    /* A read kept from an earlier round serves only while nothing was committed. */
    if (k->in_read && !store_read_current(st)) {
        store_read_end(st);
        k->in_read = 0;
    }
    if (k->in_read)
        return st;
    if (store_read_begin(st) < 0) {
        keeper_failed(k, store_error(st));
        *reason = k->reason;
        return NULL;
    }
    k->in_read = 1;
    return st;
}

/* keeper_read_end - end the round's read transaction */
void keeper_read_end(KEEPER *k)
{
    if (k->st != NULL && k->in_read)
        store_read_end(k->st);
    k->in_read = 0;
}

/* keeper_failed - a lookup failed: close, answer "try later" until reopened */
void keeper_failed(KEEPER *k, const char *reason)
{
    char copy[KEEPER_REASON_LEN];

    /* reason may live inside the handle we are about to close. */
    keeper_copy(copy, sizeof(copy), reason);
    log_warn("store %s: lookup failed: %s; closing it, %s until it reopens",
             k->path ? k->path : var_store_path, copy, k->doing);
    keeper_close(k, copy);
    k->last_try_ms = keeper_now_ms();
}

int keeper_incomplete(const KEEPER *k)
{
    return k != NULL && k->st != NULL && k->partial;
}

/* keeper_open - 1 if the store is open (fresh or stale) */
int keeper_open(const KEEPER *k)
{
    return k != NULL && k->st != NULL;
}

/* keeper_handle - the open handle even when stale, or NULL */
STORE *keeper_handle(const KEEPER *k)
{
    return k ? k->st : NULL;
}
