/*
 * syncd.c - rcptgate-syncd: directory sources into the store
 *
 * SYNOPSIS
 *   rcptgate-syncd [-c FILE] [-n] [-f] [-v] [--once [--incremental] [--force]] [--source NAME]
 *
 * DESCRIPTION
 *   Reads the [source NAME] sections of rcptgate.conf and keeps the
 *   store's recipients equal to what each source holds.
 *
 *   --once (for cron): one full pull of every source (or of NAME), each
 *   applied as one transaction or not at all, then exit: 0 all applied,
 *   65 the shrink guard refused one (--force applies it anyway), 75 a
 *   directory or store failure (try later), 78 a configuration error.
 *   --once --incremental: an incremental pull instead where the source
 *   can do one from its stored state, a full one where it cannot.
 *
 *   Without --once, a daemon (-f: in the foreground): a full pull of each
 *   source at start, then every poll_interval an incremental pull where
 *   the source can do one and a full one where it cannot (mode = once:
 *   only the full reconciliations), a full reconciliation every
 *   full_interval, and after a failure a retry after retry_interval,
 *   doubling up to ten minutes. A full pull the shrink guard refused is
 *   tried again after an hour (syncd_refused_full_ms), incremental pulls
 *   going on meanwhile from the state the refusal kept. A connection is
 *   opened for each pull and closed after it, so no idle connection goes
 *   stale between polls.
 *   mode = persistent (a generic LDAP source with one base): the source
 *   stays open with an RFC 4533 refreshAndPersist search, waited on
 *   between runs (syncd_persist_wait); each burst of changes is applied
 *   as it comes, a restart resumes from the stored cookie, and a lost
 *   connection is reopened after retry_interval. A server that gives no
 *   cookie (no syncprov) makes the source poll (syncd_persist_start).
 *   An ad source with mode = persistent stays open the same way,
 *   waiting on one change notification search per base
 *   (source_ldap_ad_wait): a notification runs the usual incremental
 *   pull (DirSync or uSNChanged) through the same path.
 *
 *   Signals: SIGHUP re-reads the configuration (a bad file is logged and
 *   the running one kept; a source whose settings changed is pulled at
 *   once). SIGTERM and SIGINT stop: a pull in progress is abandoned with
 *   nothing applied, a commit in progress is finished first (the handlers
 *   only set a flag; no store call is ever interrupted).
 *
 * DIAGNOSTICS
 *   syslog (mail facility), and stderr with -f or --once.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "daemon.h"
#include "log.h"
#include "params.h"
#include "paths.h"
#include "skeleton.h"
#include "syncd.h"
#include "xalloc.h"

#define SYNCD_BACKOFF_MAX_MS    (10 * 60 * 1000)
#define SYNCD_REFUSED_FULL_MS   (60 * 60 * 1000)     /* syncd_refused_full_ms() */

/* ioprio_set(2) has no glibc wrapper: the values of <linux/ioprio.h> */
#define SYNCD_IOPRIO_WHO_PROCESS    1
#define SYNCD_IOPRIO_CLASS_BE       2
#define SYNCD_IOPRIO_CLASS_SHIFT    13
#define SYNCD_IOPRIO_BE_LOWEST      7

volatile sig_atomic_t syncd_stopping;
static volatile sig_atomic_t syncd_reloading;
const char *syncd_conf_path;

/* One source as the daemon schedules it. */
typedef struct syncd_source {
    SOURCE_CONF *conf;
    const SOURCE_OPS *ops;
    long long next_run;             /* monotonic ms */
    long long next_full;            /* monotonic ms */
    long long backoff_ms;           /* the last wait after a failure, 0 none */
    int synced;                     /* a full sync was applied (or refused: syncd_schedule) since start */
    int polling;                    /* persistent mode without sync state to resume from: polling */
    int refused;                    /* the last full pull was refused by the shrink guard */
    SOURCE *src;                    /* persistent mode: kept open between pulls */
} SYNCD_SOURCE;

static SYNCD_SOURCE *syncd_sources;
static int syncd_nsources;
static const char *syncd_only;      /* --source NAME */
static int syncd_once_opt;          /* --once */
static int syncd_force;             /* --force */
static int syncd_incremental;       /* --incremental */
static SKELETON syncd_sk;           /* options, signals, reload: lib/skeleton.c */
static int syncd_is_daemon;         /* not --once: say READY=1 when the store opens */
static STORE *syncd_st;             /* the daemon's store handle, opened on demand */

static int syncd_nice_now = -1;     /* the [syncd] nice applied, -1 none yet */

/* syncd_now - a monotonic clock in milliseconds */
static long long syncd_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* syncd_duration - milliseconds as "90s", "5m", "2h" for messages */
static const char *syncd_duration(long long ms, char *buf, size_t size)
{
    if (ms % 3600000 == 0 && ms >= 3600000)
        snprintf(buf, size, "%lldh", ms / 3600000);
    else if (ms % 60000 == 0 && ms >= 60000)
        snprintf(buf, size, "%lldm", ms / 60000);
    else if (ms % 1000 == 0)
        snprintf(buf, size, "%llds", ms / 1000);
    else
        snprintf(buf, size, "%lldms", ms);
    return buf;
}

/* ------------------------------------------------------------ configuration */

/* syncd_free_sources - the schedule and the settings it holds */
static void syncd_free_sources(SYNCD_SOURCE *sources, int n)
{
    for (int i = 0; i < n; i++) {
        if (sources[i].src != NULL)
            sources[i].ops->close(sources[i].src);
        source_conf_free(sources[i].conf);
    }
    free(sources);
}

/*
 * syncd_load - read the configuration; the number of errors. On success
 * syncd_sources holds the new sources (only --source NAME, if given),
 * not yet scheduled; the caller has set the old ones aside, if any.
 */
static int syncd_load(void)
{
    int errors = cfg_load_families(syncd_conf_path, params_sections_for("syncd"), source_families);
    SOURCE_CONF **confs;
    int n = 0;
    int found = 0;

    if (errors != 0)
        return errors;
    cfg_secret_owner(var_syncd_user);
    if (*var_syncd_user && !daemon_user_exists(var_syncd_user)) {
        log_err("%s: [syncd] user: user \"%s\" does not exist", syncd_conf_path, var_syncd_user);
        errors++;
    }
    confs = source_conf_take(&n);
    if (n == 0) {
        log_err("%s: no [source NAME] section: nothing to sync", syncd_conf_path);
        errors++;
    }
    for (int i = 0; i < n; i++)
        found |= syncd_only != NULL && strcmp(confs[i]->name, syncd_only) == 0;
    if (syncd_only != NULL && !found && n > 0) {
        log_err("%s: no [source %s] (--source)", syncd_conf_path, syncd_only);
        errors++;
    }
    if (errors == 0) {
        SYNCD_SOURCE *fresh = xcalloc((size_t) n, sizeof(*fresh));
        int k = 0;

        for (int i = 0; i < n; i++) {
            if (syncd_only != NULL && strcmp(confs[i]->name, syncd_only) != 0) {
                source_conf_free(confs[i]);
                continue;
            }
            fresh[k].conf = confs[i];
            fresh[k].ops = source_ops_find(confs[i]->type);
            if (fresh[k].ops == NULL)
                log_panic("source %s: no backend for type %s", confs[i]->name, confs[i]->type);
            k++;
        }
        free(confs);
        syncd_free_sources(syncd_sources, syncd_nsources);  /* none: reload set it aside */
        syncd_sources = fresh;
        syncd_nsources = k;
        return 0;
    }
    for (int i = 0; i < n; i++)
        source_conf_free(confs[i]);
    free(confs);
    return errors;
}

/* syncd_notes - what the postmaster should know about a source's settings */
static void syncd_notes(const SOURCE_CONF *c)
{
    if (strcmp(c->mode, "persistent") == 0 && !source_can_persist(c))
        log_info("source %s: mode = persistent is available only for type ldap, flavour "
                 "generic with one base (RFC 4533) or flavour ad (change notification); "
                 "polling every poll_interval instead", c->name);
    if (strcmp(c->type, "ldap") == 0 && strcmp(c->flavour, "ad") != 0 && strcmp(c->incremental, "auto") != 0)
        log_info("source %s: incremental = %s applies to flavour ad only; ignored", c->name, c->incremental);
    if (strcmp(c->type, "ldap") == 0 && strcmp(c->tls, "none") == 0) {
        int n;
        char **uris = source_words(c->uri, &n);

        for (int i = 0; i < n; i++)
            if (strncasecmp(uris[i], "ldap:", 5) == 0 && !source_uri_loopback(uris[i]))
                log_warn("source %s: tls = none: %s is not on this machine, and %s travels "
                         "in clear text", c->name, uris[i],
                         *c->bind_dn ? "the bind password" : "the directory's data");
        source_words_free(uris);
    }
}

/*
 * syncd_priority - [syncd] nice: step aside for rcptgate-lookupd, whose
 * answers Postfix waits for, while a pull is parsed and committed. Above
 * 0: that nice value, SCHED_BATCH (our wakeups never preempt a lookup,
 * and the scheduler treats us as the CPU-bound batch job we are) and the
 * lowest best-effort I/O priority (the commit's writes and the
 * checkpoint's fsync queue behind other disk work). A sync takes a little
 * longer when the machine is busy; it holds no lock that readers wait
 * for (WAL), so that costs nothing but time. 0 at startup leaves the
 * priority as we were started with (e.g. by nice(1)). A reload to a
 * lower value needs privileges an unprivileged daemon lacks: a warning.
 */
static void syncd_priority(void)
{
    struct sched_param sp;
    int level = var_syncd_nice;
    int ioprio;

    if (level == syncd_nice_now || (level == 0 && syncd_nice_now < 0)) {
        syncd_nice_now = level;
        return;
    }
    memset(&sp, 0, sizeof(sp));
    if (setpriority(PRIO_PROCESS, 0, level) < 0) {
        log_warn("[syncd] nice = %d: setpriority: %s%s", level, strerror(errno),
                 syncd_nice_now > level ? " (a lower value needs a restart)" : "");
        return;
    }
    if (sched_setscheduler(0, level > 0 ? SCHED_BATCH : SCHED_OTHER, &sp) < 0)
        log_warn("[syncd] nice = %d: sched_setscheduler: %s", level, strerror(errno));
    /* 0: no class of our own, i.e. the kernel's default (derived from nice) */
    ioprio = level > 0 ? SYNCD_IOPRIO_CLASS_BE << SYNCD_IOPRIO_CLASS_SHIFT | SYNCD_IOPRIO_BE_LOWEST : 0;
    if (syscall(SYS_ioprio_set, SYNCD_IOPRIO_WHO_PROCESS, 0, ioprio) < 0)
        log_warn("[syncd] nice = %d: ioprio_set: %s", level, strerror(errno));
    log_debug("priority: nice %d, %s, I/O %s", level, level > 0 ? "SCHED_BATCH" : "SCHED_OTHER",
              level > 0 ? "best-effort 7" : "default");
    syncd_nice_now = level;
}

/* syncd_apply - settings that take effect at once */
static void syncd_apply(void)
{
    log_set_debug(syncd_sk.verbose || strcmp(var_log_level, "debug") == 0);
    syncd_priority();
    for (int i = 0; i < syncd_nsources; i++)
        syncd_notes(syncd_sources[i].conf);
}

/*
 * syncd_reload - SIGHUP (skeleton_reload): new settings. A source whose
 * settings did not change keeps its schedule; a new or changed one is
 * pulled at once. The number of errors; note says how many sources.
 */
static int syncd_reload(char *note, size_t size)
{
    SYNCD_SOURCE *old = syncd_sources;
    int nold = syncd_nsources;
    long long now = syncd_now();
    int errors;

    syncd_sources = NULL;
    syncd_nsources = 0;
    if ((errors = syncd_load()) != 0) {
        syncd_sources = old;
        syncd_nsources = nold;
        return errors;
    }
    for (int i = 0; i < syncd_nsources; i++) {
        SYNCD_SOURCE *s = &syncd_sources[i];
        int j;

        for (j = 0; j < nold; j++)
            if (old[j].conf && source_conf_equal(old[j].conf, s->conf))
                break;
        if (j < nold) {
            s->next_run = old[j].next_run;
            s->next_full = old[j].next_full;
            s->backoff_ms = old[j].backoff_ms;
            s->synced = old[j].synced;
            s->polling = old[j].polling;
            s->refused = old[j].refused;
            if (old[j].src != NULL)
                s->next_run = now;      /* its persistent search ends with the old settings */
        } else {
            s->next_run = now;
            s->next_full = now;
        }
    }
    syncd_free_sources(old, nold);
    source_ops_reload();                /* e.g. DirSync rights may have been granted since */
    syncd_apply();
    if (syncd_st != NULL && strcmp(store_path(syncd_st), var_store_path) != 0) {
        store_close(syncd_st);
        syncd_st = NULL;
    }
    snprintf(note, size, ": %d source%s", syncd_nsources, syncd_nsources == 1 ? "" : "s");
    return 0;
}

/* ------------------------------------------------------------ one run */

/* syncd_store - the store handle, opened (and created) on demand */
static STORE *syncd_store(char *err, size_t errlen)
{
    if (syncd_st == NULL)
        syncd_st = store_open(var_store_path, STORE_CREATE, var_store_busy_ms, err, errlen);
    if (syncd_st != NULL && syncd_is_daemon)
        daemon_ready("running");        /* the daemon, not --once: its store is open */
    return syncd_st;
}

/*
 * syncd_full_waits - an incremental pull said it needs a full one (no
 * cookie, or one the server no longer resumes from), but the last full
 * pull was refused and its retry is not due: 1, with res saying so
 * (SYNC_NEED_FULL; syncd_schedule waits for the retry), instead of
 * pulling the whole directory at every poll only to be refused again.
 */
static int syncd_full_waits(SYNCD_SOURCE *s, SYNC_RESULT *res)
{
    long long now = syncd_now();
    long long left;
    char when[32];

    if (!s->refused || now >= s->next_full)
        return 0;
    /* In whole seconds, or minutes from one up: "1h", not "3598991ms". */
    left = (s->next_full - now + 999) / 1000 * 1000;
    if (left >= 60000)
        left = (left + 59999) / 60000 * 60000;
    log_info("source %s: an incremental pull needs a full pull, and the last one was refused: "
             "nothing to pull until the full pull is tried again in %s", s->conf->name,
             syncd_duration(left, when, sizeof(when)));
    res->status = SYNC_NEED_FULL;
    return 1;
}

/*
 * syncd_run - one pull of one source: open, incremental or full, close.
 * Returns res->status; every outcome is logged by now.
 */
static int syncd_run(SYNCD_SOURCE *s, int full, int force, SYNC_RESULT *res)
{
    const SOURCE_CONF *c = s->conf;
    char err[sizeof(res->why)];
    STORE *st;
    SOURCE *src;

    memset(res, 0, sizeof(*res));
    res->full = full;
    source_stop_flag(&syncd_stopping);  /* the backends stop between entries on our signals */
    if ((st = syncd_store(err, sizeof(err))) == NULL) {
        snprintf(res->why, sizeof(res->why), "%s", err);  /* it names the store */
        log_err("source %s: sync failed, nothing applied: %s", c->name, res->why);
        res->store_failed = 1;
        return res->status = SYNC_FAILED;
    }
    err[0] = 0;
    if ((src = s->ops->open(c, err, sizeof(err))) == NULL) {
        snprintf(res->why, sizeof(res->why), "%s", err[0] ? err : "cannot open the source");
        log_err("source %s: %s sync failed, nothing applied: %s", c->name, full ? "full" : "incremental",
                res->why);
        sync_apply_failed(st, c, full, res->why);
        return res->status = SYNC_FAILED;
    }
    if (!full && sync_apply_delta(st, c, s->ops, src, force, res) == SYNC_NEED_FULL)
        full = !syncd_full_waits(s, res);
    if (full && !syncd_stopping)
        (void) sync_apply_full(st, c, s->ops, src, force, res);
    else if (full)
        res->status = SYNC_STOPPED;
    s->ops->close(src);
    if (res->store_failed) {
        /* The handle may be what broke: the next run opens a new one. */
        store_close(syncd_st);
        syncd_st = NULL;
    }
    return res->status;
}

/* ------------------------------------------------------------ persistent mode */

static void syncd_schedule(SYNCD_SOURCE *s, const SYNC_RESULT *res);

/* syncd_persistent - does this source run persistently (RFC 4533, AD change notification)? */
static int syncd_persistent(const SYNCD_SOURCE *s)
{
    return s->ops->wait != NULL && s->ops->can_persist != NULL && s->ops->can_persist(s->conf);
}

/* syncd_persist_close - end a persistent source's connection */
static void syncd_persist_close(SYNCD_SOURCE *s)
{
    if (s->src != NULL)
        s->ops->close(s->src);
    s->src = NULL;
}

/*
 * syncd_persist_start - after a full pull was applied, or refused (the
 * refusal kept the last good data and its cookie): start the persistent
 * search from the stored cookie. 1 when it runs; else the connection is
 * closed and 0. Without a cookie to start from (an LDAP server without
 * the syncprov overlay, or one the account may not use it on) another
 * full pull would leave none either: retrying after retry_interval would
 * pull the whole directory every half minute, forever. The source polls
 * instead (syncd_persist_schedule), each poll a full pull that tries the
 * persistent search again, and says so once. res is the full pull's.
 */
static int syncd_persist_start(SYNCD_SOURCE *s, STORE *st, SYNC_RESULT *res)
{
    const SOURCE_CONF *c = s->conf;
    SYNC_RESULT more;
    char when[32];

    switch (sync_apply_delta(st, c, s->ops, s->src, 0, &more)) {
    case SYNC_APPLIED:
        return 1;
    case SYNC_NEED_FULL:
        if (res->status == SYNC_REFUSED)
            break;                      /* no state kept to resume from: the refusal's schedule */
        if (!s->polling)
            log_warn("source %s: mode = persistent, but the persistent search cannot start: the "
                     "full pull left no sync state (RFC 4533 cookie) to resume from; the server "
                     "may lack the syncprov overlay, or the sync account the right to use it. "
                     "Polling every %s instead (poll_interval; each pull a full one while there "
                     "is no cookie), trying the persistent search again after each pull",
                     c->name, syncd_duration(var_syncd_poll_ms, when, sizeof(when)));
        s->polling = 1;
        break;
    case SYNC_REFUSED:
        break;                          /* logged; retried with the refused pull's schedule */
    default:
        log_warn("source %s: the persistent search did not start%s%s; retrying in %lld s",
                 c->name, more.why[0] ? ": " : "", more.why, (long long) var_syncd_retry_ms / 1000);
        res->store_failed |= more.store_failed;
        break;
    }
    syncd_persist_close(s);
    return 0;
}

/*
 * syncd_persist_run - a pull of a persistent source on its kept
 * connection (opened on demand): a full one when due, and then the
 * incremental pull that (re)starts the persistent search from the stored
 * cookie and applies what it brings. A failure closes the connection;
 * the next run reconnects. res->status, as syncd_run. After a refused
 * full pull the search is restarted from the cookie the refusal kept, so
 * that changes keep arriving while the refusal stands.
 */
static int syncd_persist_run(SYNCD_SOURCE *s, int full, SYNC_RESULT *res)
{
    const SOURCE_CONF *c = s->conf;
    char err[sizeof(res->why)];
    int running = 0;                    /* the search runs although the full pull was refused */
    STORE *st;

    memset(res, 0, sizeof(*res));
    res->full = full;
    source_stop_flag(&syncd_stopping);
    if ((st = syncd_store(err, sizeof(err))) == NULL) {
        snprintf(res->why, sizeof(res->why), "%s", err);
        log_err("source %s: sync failed, nothing applied: %s", c->name, res->why);
        res->store_failed = 1;
        return res->status = SYNC_FAILED;
    }
    if (s->src == NULL) {
        err[0] = 0;
        if ((s->src = s->ops->open(c, err, sizeof(err))) == NULL) {
            snprintf(res->why, sizeof(res->why), "%s", err[0] ? err : "cannot open the source");
            log_err("source %s: %s sync failed, nothing applied: %s", c->name,
                    full ? "full" : "incremental", res->why);
            sync_apply_failed(st, c, full, res->why);
            return res->status = SYNC_FAILED;
        }
    }
    if (!full && sync_apply_delta(st, c, s->ops, s->src, 0, res) == SYNC_NEED_FULL)
        full = !syncd_full_waits(s, res);
    if (full && !syncd_stopping) {
        switch (sync_apply_full(st, c, s->ops, s->src, 0, res)) {
        case SYNC_APPLIED:
            (void) syncd_persist_start(s, st, res);
            break;
        case SYNC_REFUSED:
            if (!syncd_stopping && syncd_persist_start(s, st, res))
                running = 1;
            break;
        default:
            break;
        }
    } else if (full) {
        res->status = SYNC_STOPPED;
    }
    if (res->status != SYNC_APPLIED && !running)
        syncd_persist_close(s);
    if (s->src != NULL && s->polling) {
        log_info("source %s: the persistent search runs now", c->name);
        s->polling = 0;
    }
    if (res->store_failed) {
        store_close(syncd_st);
        syncd_st = NULL;
    }
    return res->status;
}

/*
 * syncd_next_full - when the next full reconciliation is due: full_interval
 * from now, lengthened by a random 0-10 %. Gateways started together
 * (one reboot, one configuration push) would otherwise pull the whole
 * directory at the same moment every day; the spread lets them drift
 * apart by a few minutes a day, and the directory sees one pull at a time.
 */
static long long syncd_next_full(long long now)
{
    long long spread = var_syncd_full_ms / 10;

    return now + var_syncd_full_ms + (spread > 0 ? random() % spread : 0);
}

/*
 * syncd_persist_schedule - after a run of a persistent source: with its
 * search running, only the full reconciliation is scheduled; without,
 * a reconnect after retry_interval (failures back off as usual, a
 * refusal waits poll_interval), or the next poll when the source has no
 * sync state to start the search from (syncd_persist_start).
 */
static void syncd_persist_schedule(SYNCD_SOURCE *s, const SYNC_RESULT *res)
{
    if (res->status == SYNC_APPLIED && !s->synced) {
        /* Resumed from the stored cookie: as good as a full pull. */
        s->synced = 1;
        s->next_full = syncd_next_full(syncd_now());
    }
    if (s->src != NULL)
        s->next_run = s->next_full;
    else if (res->status == SYNC_APPLIED)
        s->next_run = syncd_now() + (s->polling ? var_syncd_poll_ms : var_syncd_retry_ms);
}

/*
 * syncd_persist_wait - wait up to ms on the persistent searches (in
 * slices, so that a signal is noticed within a quarter second), applying
 * each burst of changes as it comes. 1 when some source was waited on,
 * 0 when none is open (the caller sleeps instead).
 */
static int syncd_persist_wait(long long ms)
{
    int open = 0;
    long long slice;

    for (int i = 0; i < syncd_nsources; i++)
        open += syncd_sources[i].src != NULL;
    if (open == 0)
        return 0;
    slice = (ms < 250 ? ms : 250) / open;
    if (slice < 10)
        slice = 10;
    for (int i = 0; i < syncd_nsources && !syncd_stopping && !syncd_reloading; i++) {
        SYNCD_SOURCE *s = &syncd_sources[i];
        SYNC_RESULT res;
        char err[1024];
        int rc;

        if (s->src == NULL)
            continue;
        err[0] = 0;
        if ((rc = s->ops->wait(s->src, (int) slice, err, sizeof(err))) == 0)
            continue;
        if (rc < 0) {
            /* slapd restarted, the network broke: reconnect with backoff, resume from the cookie */
            log_warn("source %s: persistent search lost: %s", s->conf->name, err[0] ? err : "error");
            syncd_persist_close(s);
            memset(&res, 0, sizeof(res));
            res.status = SYNC_FAILED;
            s->backoff_ms = 0;          /* the first reconnect comes soon */
            syncd_schedule(s, &res);
            continue;
        }
        syncd_persist_run(s, 0, &res);
        syncd_schedule(s, &res);
        syncd_persist_schedule(s, &res);
    }
    return 1;
}

/* ------------------------------------------------------------ --once */

/* syncd_once - one full (or incremental) pull of each source; the exit status */
static int syncd_once(int force, int incremental)
{
    char err[1024];
    int failed = 0;
    int refused = 0;

    if (syncd_store(err, sizeof(err)) == NULL) {
        log_err("%s; nothing synced", err);     /* it names the store */
        return RG_EX_TEMPFAIL;
    }
    for (int i = 0; i < syncd_nsources && !syncd_stopping; i++) {
        SYNC_RESULT res;

        switch (syncd_run(&syncd_sources[i], !incremental, force, &res)) {
        case SYNC_APPLIED:
            failed |= res.export_failed;
            break;
        case SYNC_REFUSED:
            refused = 1;
            break;
        default:
            failed = 1;
            break;
        }
    }
    if (syncd_stopping) {
        log_warn("stopped by a signal before every source was synced");
        failed = 1;
    }
    store_close(syncd_st);
    syncd_st = NULL;
    /* A refusal needs a person; a failure only time. Say the former first. */
    return refused ? SYNCD_EX_DATAERR : failed ? RG_EX_TEMPFAIL : RG_EX_OK;
}

/* ------------------------------------------------------------ the daemon */

/* syncd_signal - HUP reloads, TERM and INT stop: flags only */
static void syncd_signal(int sig)
{
    if (sig == SIGHUP)
        syncd_reloading = 1;
    else
        syncd_stopping = 1;
}

/* syncd_sleep - wait up to ms, or until a signal arrives */
static void syncd_sleep(long long ms)
{
    sigset_t block, old;
    struct timespec ts;

    sigemptyset(&block);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &old);
    /* Checked with the signals held, then released inside pselect: none is lost. */
    if (!syncd_stopping && !syncd_reloading && ms > 0) {
        ts.tv_sec = (time_t) (ms / 1000);
        ts.tv_nsec = (long) (ms % 1000) * 1000000;
        (void) pselect(0, NULL, NULL, NULL, &ts, &old);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
}

/*
 * syncd_refused_full_ms - how long after a refused full pull the next one
 * comes: an hour, but no sooner than the next poll and no later than
 * full_interval. Each full pull reads the whole directory; one an hour
 * still notices soon enough a directory that recovered by itself.
 */
static long long syncd_refused_full_ms(void)
{
    long long ms = SYNCD_REFUSED_FULL_MS;

    if (ms < var_syncd_poll_ms)
        ms = var_syncd_poll_ms;
    if (ms > var_syncd_full_ms)
        ms = var_syncd_full_ms;
    return ms;
}

/* syncd_schedule - when a source runs next, after a run with this result */
static void syncd_schedule(SYNCD_SOURCE *s, const SYNC_RESULT *res)
{
    long long now = syncd_now();
    char when[32];
    char when2[32];

    switch (res->status) {
    case SYNC_APPLIED:
        s->backoff_ms = 0;
        if (res->full) {
            s->synced = 1;
            s->refused = 0;
            s->next_full = syncd_next_full(now);
        }
        s->next_run = strcmp(s->conf->mode, "once") == 0 ? s->next_full : now + var_syncd_poll_ms;
        break;
    case SYNC_REFUSED:
        /* Not a failure to retry fast: the directory has to change, or a person. */
        s->backoff_ms = 0;
        s->next_run = now + var_syncd_poll_ms;
        if (res->full) {
            /*
             * The refusal kept the last good data and its cookie: incremental
             * pulls go on from there, so that new people keep arriving (and
             * a persistent search keeps running), while the full pull, which
             * stays refused until the directory or a person changes, is not
             * repeated at every poll but after syncd_refused_full_ms().
             */
            s->synced = 1;
            s->refused = 1;
            s->next_full = now + syncd_refused_full_ms();
            if (strcmp(s->conf->mode, "once") == 0)
                s->next_run = s->next_full;
            log_info("source %s: the full pull is tried again in %s%s%s", s->conf->name,
                     syncd_duration(s->next_full - now, when, sizeof(when)),
                     s->ops->incremental != NULL && strcmp(s->conf->mode, "once") != 0
                     ? "; incremental pulls go on meanwhile, every " : "",
                     s->ops->incremental != NULL && strcmp(s->conf->mode, "once") != 0
                     ? syncd_duration(var_syncd_poll_ms, when2, sizeof(when2)) : "");
            break;
        }
        log_info("source %s: next attempt in %s", s->conf->name,
                 syncd_duration(var_syncd_poll_ms, when, sizeof(when)));
        break;
    case SYNC_NEED_FULL:
        s->backoff_ms = 0;
        s->next_run = s->next_full;     /* syncd_full_waits: nothing to pull before */
        break;
    case SYNC_FAILED:
        s->backoff_ms = s->backoff_ms ? 2 * s->backoff_ms : var_syncd_retry_ms;
        /* Doubling stops at 10 minutes, or at retry_interval when that is longer (up to 1h). */
        if (s->backoff_ms > SYNCD_BACKOFF_MAX_MS && s->backoff_ms > var_syncd_retry_ms)
            s->backoff_ms = var_syncd_retry_ms > SYNCD_BACKOFF_MAX_MS ? var_syncd_retry_ms : SYNCD_BACKOFF_MAX_MS;
        s->next_run = now + s->backoff_ms;
        log_info("source %s: next attempt in %s", s->conf->name,
                 syncd_duration(s->backoff_ms, when, sizeof(when)));
        break;
    default:
        break;                          /* stopped */
    }
}

/* syncd_loop - run due sources, sleep until the next is due, until stopped */
static void syncd_loop(void)
{
    long long now = syncd_now();

    for (int i = 0; i < syncd_nsources; i++)
        syncd_sources[i].next_run = syncd_sources[i].next_full = now;
    while (!syncd_stopping) {
        long long next = LLONG_MAX;

        if (syncd_reloading) {
            syncd_reloading = 0;
            skeleton_reload(&syncd_sk);
        }
        for (int i = 0; i < syncd_nsources && !syncd_stopping && !syncd_reloading; i++) {
            SYNCD_SOURCE *s = &syncd_sources[i];
            SYNC_RESULT res;
            int full;

            now = syncd_now();
            if (s->next_run > now)
                continue;
            full = !s->synced || now >= s->next_full || s->ops->incremental == NULL;
            if (syncd_persistent(s)) {
                /* A stored cookie is resumed from, at start too: no full pull until due. */
                syncd_persist_run(s, s->synced && now >= s->next_full, &res);
                syncd_schedule(s, &res);
                syncd_persist_schedule(s, &res);
            } else {
                syncd_run(s, full, 0, &res);
                syncd_schedule(s, &res);
            }
        }
        for (int i = 0; i < syncd_nsources; i++)
            if (syncd_sources[i].next_run < next)
                next = syncd_sources[i].next_run;
        now = syncd_now();
        if (!syncd_persist_wait(next == LLONG_MAX ? 3600000 : next - now))
            syncd_sleep(next == LLONG_MAX ? 3600000 : next - now);
    }
}

/* syncd_daemon - detach, pid file, privileges, signals, the loop */
static int syncd_daemon(void)
{
    syncd_is_daemon = 1;
    skeleton_start(&syncd_sk, SYNCD_NAME);
    /* syncd's handlers only set flags, which the loop reads: nothing to wait for. */
    skeleton_release_signals(&syncd_sk);
    log_info("starting: %d source%s, store %s", syncd_nsources, syncd_nsources == 1 ? "" : "s",
             var_store_path);
    {
        char err[512];

        /* Open (or create) the store now, not at the first pull: READY=1 says it opened. */
        if (syncd_store(err, sizeof(err)) == NULL)
            log_err("%s; ready once it can be opened", err);
    }
    syncd_loop();
    daemon_notify("STOPPING=1");
    store_close(syncd_st);
    syncd_st = NULL;
    skeleton_end(&syncd_sk);            /* the pid file */
    log_info("stopped");
    return RG_EX_OK;
}

/* ------------------------------------------------------------ main */

/* syncd_paths - the places the daemon writes (skeleton_paths checks them for its user) */
static void syncd_paths(PATHS *pl)
{
    params_paths("syncd", 0, pl);
}

/*
 * syncd_once_paths - --once (maybe from root's cron) checks strictly,
 * then becomes [syncd] user, the same way the admin command does; exit
 * 73 if a place is wrong.
 */
static void syncd_once_paths(void)
{
    PATHS *pl = paths_create();
    int as_self = geteuid() != 0 || *var_syncd_user == 0;
    int rc;

    params_paths("syncd", 1, pl);
    rc = paths_act_as(pl, var_syncd_user, "syncd");
    paths_free(pl);
    /*
     * Staying who we are (no [syncd] user, or not root), paths_act_as
     * checks nothing: check the store as ourselves, so that a missing
     * store directory is 73 with its fix, not a bare SQLite error and 75,
     * the "try again later" a cron wrapper retries for ever. Only the
     * store: a place written after the sync (export_file) must not stop
     * the sync itself, as it did not before.
     */
    if (rc == 0 && as_self) {
        pl = paths_create();
        paths_add_store(pl, 0, var_store_path);
        if (paths_check(pl, var_syncd_user, 1) != 0)
            rc = -1;
        paths_free(pl);
    }
    if (rc < 0)
        log_fatal_code(RG_EX_CANTCREAT, "%s: not syncing", syncd_conf_path);
}

/* syncd_option - --once, --force, --incremental, --source NAME */
static int syncd_option(int ch, const char *arg)
{
    switch (ch) {
    case 'O':
        syncd_once_opt = 1;
        return 0;
    case 'F':
        syncd_force = 1;
        return 0;
    case 'I':
        syncd_incremental = 1;
        return 0;
    case 'S':
        syncd_only = arg;
        return 0;
    default:
        return -1;
    }
}

/* main - options, configuration, then --once or the daemon */
int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"once", no_argument, NULL, 'O'},
        {"force", no_argument, NULL, 'F'},
        {"incremental", no_argument, NULL, 'I'},
        {"source", required_argument, NULL, 'S'},
        {NULL, 0, NULL, 0},
    };
    struct sigaction sa;
    char note[64];
    int rc;

    syncd_sk.name = SYNCD_NAME;
    syncd_sk.section = "syncd";
    syncd_sk.usage = "[--once [--incremental] [--force]] [--source NAME]";
    syncd_sk.longopts = longopts;
    syncd_sk.option = syncd_option;
    syncd_sk.user = &var_syncd_user;
    syncd_sk.pidfile = &var_syncd_pidfile;
    syncd_sk.load = syncd_load;
    syncd_sk.paths = syncd_paths;
    syncd_sk.reload = syncd_reload;
    skeleton_options(&syncd_sk, argc, argv);
    /* Each gateway its own sequence for syncd_next_full()'s spread. */
    srandom((unsigned) time(NULL) ^ ((unsigned) getpid() << 16));
    if ((syncd_force || syncd_incremental) && !syncd_once_opt)
        skeleton_usage(&syncd_sk);
    syncd_conf_path = syncd_sk.conf_path;
    skeleton_configure(&syncd_sk);
    if (syncd_sk.check_only || !syncd_once_opt)
        skeleton_paths(&syncd_sk);
    if (syncd_sk.check_only) {
        for (int i = 0; i < syncd_nsources; i++)
            syncd_notes(syncd_sources[i].conf);
        snprintf(note, sizeof(note), " (%d source%s)", syncd_nsources, syncd_nsources == 1 ? "" : "s");
        syncd_free_sources(syncd_sources, syncd_nsources);
        return skeleton_check_done(&syncd_sk, note);
    }
    syncd_apply();

    /*
     * Stop between transactions: the handlers only set flags. SIGHUP
     * reloads the daemon; --once notes it and goes on.
     */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = syncd_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    skeleton_ignore_sigpipe();

    if (syncd_once_opt) {
        /* From cron as root: write the store as the user lookupd shares it with. */
        syncd_once_paths();
        rc = syncd_once(syncd_force, syncd_incremental);
        free(syncd_sk.conf_path);
    } else {
        rc = syncd_daemon();
    }
    syncd_free_sources(syncd_sources, syncd_nsources);
    return rc;
}
