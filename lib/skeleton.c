/*
 * skeleton.c - the main() every rcptgate daemon shares (see skeleton.h)
 *
 * The three daemons had each grown their own copy of these steps, and
 * the copies had drifted: one warned about an unwritable stats file and
 * another did not, one said "see above" after a failed -n and the others
 * not, each kept its own list of start-time values to warn about on
 * reload. Here they are once; what differs is the daemon's hooks.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "paths.h"
#include "skeleton.h"
#include "xalloc.h"

static const int skeleton_signums[3] = {SIGHUP, SIGTERM, SIGINT};

/* skeleton_usage - how to call the daemon */
_Noreturn void skeleton_usage(const SKELETON *sk)
{
    fprintf(stderr, "usage: %s [-c FILE] [-f] [-n] [-v]%s%s\n", sk->name, sk->usage ? " " : "",
            sk->usage ? sk->usage : "");
    exit(RG_EX_USAGE);
}

/* skeleton_options - the common options, and the daemon's own through sk->option */
void skeleton_options(SKELETON *sk, int argc, char **argv)
{
    static const struct option none[] = {{NULL, 0, NULL, 0}};
    const char *conf = cfg_default_path();
    char real[PATH_MAX];
    int ch;

    while ((ch = getopt_long(argc, argv, "c:fnv", sk->longopts ? sk->longopts : none, NULL)) != -1) {
        switch (ch) {
        case 'c':
            conf = optarg;
            break;
        case 'f':
            sk->foreground = 1;
            break;
        case 'n':
            sk->check_only = 1;
            break;
        case 'v':
            sk->verbose = 1;
            break;
        default:
            if (ch == '?' || sk->option == NULL || sk->option(ch, optarg) < 0)
                skeleton_usage(sk);
        }
    }
    if (optind != argc)
        skeleton_usage(sk);

    /* Until we detach, problems go to the terminal too; -n only there. */
    log_init(sk->name, 1, !sk->check_only);
    log_set_debug(sk->verbose);
    paths_umask();
    /* SIGHUP re-reads the file after a chdir("/"): remember where it is. */
    sk->conf_path = xstrdup(realpath(conf, real) ? real : conf);
}

/* skeleton_configure - load; a bad file ends the start or the check */
void skeleton_configure(SKELETON *sk)
{
    if (sk->load() != 0)
        log_fatal_code(RG_EX_CONFIG, "%s: configuration errors; %s", sk->conf_path,
                       sk->check_only ? "see above" : "not starting");
    cfg_commit();
}

/* skeleton_paths - the daemon's places, checked for its user (exits 73 if wrong) */
void skeleton_paths(SKELETON *sk)
{
    PATHS *pl = paths_create();

    sk->paths(pl);
    paths_require(pl, *sk->user, sk->check_only, sk->conf_path);
    paths_free(pl);
}

/* skeleton_check_done - -n: all is well */
int skeleton_check_done(SKELETON *sk, const char *note)
{
    log_info("%s: configuration is valid%s", sk->conf_path, note ? note : "");
    free(sk->conf_path);
    sk->conf_path = NULL;
    return RG_EX_OK;
}

/* skeleton_ignore_sigpipe - writes to a closed socket fail with EPIPE instead */
void skeleton_ignore_sigpipe(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
}

/* skeleton_start - detach, pid file, privileges; the start values pinned */
void skeleton_start(SKELETON *sk, const char *ident)
{
    /* A HUP sent as soon as the pid file appears must wait for the loop, not kill us. */
    daemon_hold_signals(&sk->held);
    daemon_become(ident, sk->foreground, *sk->pidfile, *sk->user, sk->section);
    /* From here on a reload cannot move a listener, the user or the pid file. */
    cfg_restart_pin();
}

/* skeleton_watch_signals - HUP, TERM and INT into the event loop */
void skeleton_watch_signals(SKELETON *sk, struct event_base *base, event_callback_fn cb, void *arg)
{
    for (int i = 0; i < 3; i++) {
        sk->sigs[i] = evsignal_new(base, skeleton_signums[i], cb, arg);
        if (sk->sigs[i] == NULL || event_add(sk->sigs[i], NULL) < 0)
            log_fatal("cannot watch signal %d", skeleton_signums[i]);
    }
    skeleton_release_signals(sk);
}

/* skeleton_release_signals - what was held since skeleton_start may arrive now */
void skeleton_release_signals(SKELETON *sk)
{
    daemon_release_signals(&sk->held);
}

/* skeleton_stats_arm - (re)arm the stats timer at the configured interval */
static void skeleton_stats_arm(SKELETON *sk)
{
    struct timeval tv;

    if (sk->stats_ev == NULL)
        return;
    tv.tv_sec = *sk->stats_ms / 1000;
    tv.tv_usec = (*sk->stats_ms % 1000) * 1000;
    event_add(sk->stats_ev, &tv);
}

/* skeleton_stats_cb - the periodic write */
static void skeleton_stats_cb(evutil_socket_t fd, short what, void *arg)
{
    SKELETON *sk = arg;

    (void) fd;
    (void) what;
    sk->stats_write();
}

/* skeleton_stats_every - write now, then every *interval_ms */
void skeleton_stats_every(SKELETON *sk, struct event_base *base, const int *interval_ms, void (*write)(void))
{
    sk->stats_ms = interval_ms;
    sk->stats_write = write;
    sk->stats_ev = event_new(base, -1, EV_PERSIST, skeleton_stats_cb, sk);
    if (sk->stats_ev == NULL)
        log_fatal("event_new failed");
    skeleton_stats_arm(sk);
    write();
}

/* skeleton_stats_write - header, the daemon's counters, atomically; then the metrics */
void skeleton_stats_write(const char *path, const char *metrics_file, const char *daemon, STORE *st,
                          long long started, void (*body)(FILE *fp, void *arg), void *arg, int *warned)
{
    char tmp[PATH_MAX + 16];
    FILE *fp;
    int bad;

    if (path == NULL || *path == 0)
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if ((fp = fopen(tmp, "w")) == NULL) {
        if (!(*warned)++)
            log_warn("stats file %s: %s", tmp, strerror(errno));
        return;
    }
    fprintf(fp, "started %lld\nupdated %lld\npid %ld\n", started, (long long) time(NULL), (long) getpid());
    body(fp, arg);
    bad = ferror(fp);
    if (fclose(fp) != 0 || bad || rename(tmp, path) < 0) {
        if (!(*warned)++)
            log_warn("stats file %s: %s", path, strerror(errno));
        unlink(tmp);
        return;
    }
    *warned = 0;
    metrics_daemon_write(metrics_file, daemon, path, st);
}

/* skeleton_reload - the one reload sequence */
void skeleton_reload(SKELETON *sk)
{
    char note[256];
    int errors;

    daemon_notify("RELOADING=1");
    log_info("reloading %s", sk->conf_path);
    note[0] = 0;
    if ((errors = sk->reload(note, sizeof(note))) != 0) {
        /* The file may have passed and been assigned before a later step refused it. */
        cfg_rollback();
        log_warn("reload: %s has %d error%s; keeping the running configuration",
                 sk->conf_path, errors, errors == 1 ? "" : "s");
        if (sk->reload_failed)
            sk->reload_failed();
    } else {
        cfg_commit();                   /* applied: the values it replaced may go */
        skeleton_stats_arm(sk);
        log_info("reloaded %s%s", sk->conf_path, note);
    }
    daemon_notify(sk->ready ? sk->ready() : "READY=1");
}

/* skeleton_end - the last stats, the pid file, our events */
void skeleton_end(SKELETON *sk)
{
    if (sk->stats_write)
        sk->stats_write();
    daemon_pidfile_remove(*sk->pidfile);
    for (int i = 0; i < 3; i++) {
        if (sk->sigs[i])
            event_free(sk->sigs[i]);
        sk->sigs[i] = NULL;
    }
    if (sk->stats_ev)
        event_free(sk->stats_ev);
    sk->stats_ev = NULL;
    free(sk->conf_path);
    sk->conf_path = NULL;
}
