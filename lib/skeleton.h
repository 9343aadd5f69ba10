/*
 * skeleton.h - the main() every rcptgate daemon shares
 *
 * rcptgate-lookupd, rcptgate-smtpd and rcptgate-syncd start, check, reload
 * and stop the same way; only what they serve differs. A daemon fills in
 * a SKELETON (its name, its section's user and pid_file, how it loads and
 * reloads its configuration) and calls, in this order:
 *
 *   skeleton_options()        -c FILE, -f, -n, -v (and its own long options)
 *   skeleton_configure()      load; a bad file is fatal (exit 78)
 *   skeleton_paths()          may the user write where we will? (exit 73)
 *   skeleton_check_done()     -n: "configuration is valid", exit status 0
 *   skeleton_ignore_sigpipe() ... bind its listeners while still root ...
 *   skeleton_start()          hold HUP/TERM/INT, detach, pid file, drop
 *                             privileges, pin the restart-only parameters
 *   skeleton_watch_signals()  (event loop daemons) or skeleton_release_signals()
 *   skeleton_stats_every()    write stats_file every stats_interval
 *   skeleton_reload()         on SIGHUP: the one reload sequence
 *   skeleton_end()            last stats, pid file removed, all freed
 *
 * A parameter whose new value a reload cannot apply carries CFG_RESTART
 * in its table (lib/cfg.h): cfg logs and ignores its change, so no daemon
 * keeps copies of its start values or writes its own warning.
 */
#ifndef RG_SKELETON_H
#define RG_SKELETON_H

#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include <event2/event.h>

#include "paths.h"
#include "store.h"

typedef struct skeleton SKELETON;

struct skeleton {
    /* Filled in by the daemon. */
    const char *name;                   /* "rcptgate-lookupd": log ident and usage */
    const char *section;                /* "lookupd": where user and pid_file are */
    const char *usage;                  /* its own options for the usage line, or NULL */
    const struct option *longopts;      /* its own long options, or NULL */
    int (*option)(int ch, const char *arg);     /* one of them: 0, or -1 for a usage error */
    char **user;                        /* &var_*_user */
    char **pidfile;                     /* &var_*_pidfile */
    int (*load)(void);                  /* read the configuration: the number of errors */
    void (*paths)(PATHS *pl);           /* add the places it writes (skeleton_paths) */
    /*
     * reload - after SIGHUP: load, and on success apply; the number of
     * errors (note: ": 2 sources"). Errors only before anything is applied:
     * the skeleton then rolls the loaded values back (cfg_rollback()).
     */
    int (*reload)(char *note, size_t size);
    void (*reload_failed)(void);        /* after a refused reload (log file reopening), or NULL */
    const char *(*ready)(void);         /* the state line after a reload, NULL "READY=1" */

    /* Set by the skeleton. */
    char *conf_path;                    /* -c, made absolute (SIGHUP comes after chdir("/")) */
    int foreground;                     /* -f */
    int check_only;                     /* -n */
    int verbose;                        /* -v */

    /* The skeleton's own. */
    sigset_t held;
    struct event *sigs[3];
    struct event *stats_ev;
    const int *stats_ms;
    void (*stats_write)(void);
};

/*
 * skeleton_options - parse -c FILE, -f, -n, -v and sk->longopts (through
 * sk->option); start logging (to the terminal too until we detach; to
 * syslog unless -n) and set the umask. A usage error exits 64.
 */
void skeleton_options(SKELETON *sk, int argc, char **argv);

/* skeleton_usage - the usage line on stderr, exit 64 */
_Noreturn void skeleton_usage(const SKELETON *sk);

/*
 * skeleton_configure - sk->load(); errors are fatal: "FILE: configuration
 * errors; not starting" (-n: "; see above"), exit 78.
 */
void skeleton_configure(SKELETON *sk);

/*
 * skeleton_paths - sk->paths() checked for the daemon's user: -n reports
 * and exits 73 on a problem, a start creates what it may and exits 73
 * on what it cannot.
 */
void skeleton_paths(SKELETON *sk);

/* skeleton_check_done - -n passed: log "FILE: configuration is valid" + note; returns 0 */
int skeleton_check_done(SKELETON *sk, const char *note);

/* skeleton_ignore_sigpipe - a client that vanishes must not end us */
void skeleton_ignore_sigpipe(void);

/*
 * skeleton_start - once the listeners are bound: hold HUP, TERM and INT
 * (released by skeleton_watch_signals or skeleton_release_signals), then
 * daemon_become() as ident with [section] user and pid_file, and pin the
 * restart-only parameters (cfg_restart_pin).
 */
void skeleton_start(SKELETON *sk, const char *ident);

/* skeleton_watch_signals - HUP, TERM and INT as events of base, to cb; then release them */
void skeleton_watch_signals(SKELETON *sk, struct event_base *base, event_callback_fn cb, void *arg);

/* skeleton_release_signals - release them, for a daemon with handlers of its own */
void skeleton_release_signals(SKELETON *sk);

/*
 * skeleton_stats_every - call write() now and every *interval_ms (re-read
 * after each good reload) from base's loop.
 */
void skeleton_stats_every(SKELETON *sk, struct event_base *base, const int *interval_ms, void (*write)(void));

/*
 * skeleton_stats_write - the stats file: "started", "updated" and "pid"
 * lines, then body(fp, arg), written to path.tmp and renamed, so a reader
 * never sees half a file; then the metrics file (metrics.h) as daemon
 * (st: the store for its figures, or NULL). An empty path writes nothing.
 * A failure is logged once until a write succeeds again (*warned).
 */
void skeleton_stats_write(const char *path, const char *metrics_file, const char *daemon, STORE *st,
                          long long started, void (*body)(FILE *fp, void *arg), void *arg, int *warned);

/*
 * skeleton_reload - SIGHUP: RELOADING=1 to systemd, "reloading FILE",
 * sk->reload(); a file with errors is refused (every value it assigned
 * rolled back, "keeping the running configuration", then
 * sk->reload_failed), a good one committed, logged "reloaded
 * FILE" with the daemon's note and the stats timer re-armed; then
 * sk->ready() (or READY=1) to systemd.
 */
void skeleton_reload(SKELETON *sk);

/* skeleton_end - the last stats file, pid file removed, the skeleton's events and path freed */
void skeleton_end(SKELETON *sk);

#endif
