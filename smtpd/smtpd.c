/*
 * smtpd.c - rcptgate-smtpd: the recipient-filtering SMTP front end
 *
 * SYNOPSIS
 *   rcptgate-smtpd [-c FILE] [-f] [-n] [-v]
 *
 * DESCRIPTION
 *   One process, one libevent loop. Reads [smtpd] (and the shared
 *   sections), binds every "listen = HOST:PORT [submission]" line (IPv4
 *   and IPv6), loads the TLS certificate and SASL while it may still be
 *   root, then detaches, writes the pid file and becomes [smtpd] user.
 *   Each accepted connection becomes an SMTP session (smtp_session.c).
 *
 *   The store is opened read-only and never migrated (lib/keeper.c); if
 *   it cannot be opened, or its data is older than [store] max_age,
 *   smtpd runs anyway and the checks answer 4xx; the store is tried
 *   again every second, and reopened when its file is replaced. smtpd
 *   needs read access only: it may run as a user that cannot change
 *   the store (README, "smtpd cannot write the store").
 *
 *   SIGHUP re-reads the configuration, the TLS certificate, the checks'
 *   tables and the log file without dropping a session (a bad file is
 *   refused and the running configuration kept; listener, user and pid
 *   file changes need a restart). SIGTERM/SIGINT stop accepting, send
 *   idle sessions 421, let transactions under way finish for up to
 *   shutdown_timeout, then send the rest 421 and exit.
 *
 * DIAGNOSTICS
 *   syslog (mail facility) as "<syslog_name>/smtpd", also log_file; -f
 *   copies to stderr. Exit 78 on a bad configuration.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "cfg.h"
#include "daemon.h"
#include "keeper.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "params.h"
#include "paths.h"
#include "skeleton.h"
#include "store.h"
#include "xalloc.h"
#include "smtpd.h"
#include "params_rules.h"
#include "params_smtpd.h"
#include "smtpd_check.h"
#include "smtpd_dns.h"
#include "smtpd_anvil.h"
#include "smtpd_log.h"
#include "smtpd_qmgr.h"
#include "smtp_auth.h"
#include "smtp_relay.h"
#include "smtp_session.h"
#include "smtp_tls.h"

#define SMTPD_PROG          "rcptgate-smtpd"
#define SMTPD_BACKLOG       1024
#define SMTPD_MAX_LISTEN    16
#define SMTPD_TICK_MS       1000

typedef struct smtpd_listener {
    LISTEN_ADDR la;
    int submission;
    int fd;
    struct evconnlistener *lev;
} SMTPD_LISTENER;

static SMTPD_LISTENER smtpd_listeners[SMTPD_MAX_LISTEN];
static int smtpd_nlisteners;
static SMTPD_DNS *smtpd_dns;
static struct event *smtpd_tick_ev;
static struct event *smtpd_stop_ev;     /* shutdown deadline */
static struct event *smtpd_resume_ev;   /* accept again after EMFILE */
static int smtpd_stopping;
static long long smtpd_stop_ms;
static time_t smtpd_started;
static int smtpd_stats_warned;

static SKELETON smtpd_sk;               /* options, signals, reload: lib/skeleton.c; filled before main() */

/* smtpd_now_ms - wall clock in milliseconds */
static long long smtpd_now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* smtpd_listen_parse - "HOST:PORT [submission]" lines into out; count or -1 with err */
static int smtpd_listen_parse(const char *value, SMTPD_LISTENER *out, int max, char *err, size_t errlen)
{
    char *copy = xstrdup(value);
    char *save = NULL;
    int n = 0;

    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *word, *spec, *wsave = NULL;

        if ((spec = strtok_r(line, " \t", &wsave)) == NULL)
            continue;
        if (n >= max) {
            snprintf(err, errlen, "listen: more than %d listeners", max);
            free(copy);
            return -1;
        }
        memset(&out[n], 0, sizeof(out[n]));
        out[n].fd = -1;
        if (strncmp(spec, "unix:", 5) == 0 || listen_parse(spec, &out[n].la, err, errlen) < 0
            || out[n].la.is_unix) {
            if (strncmp(spec, "unix:", 5) == 0 || out[n].la.is_unix)
                snprintf(err, errlen, "listen: \"%s\": expected HOST:PORT or [ADDRESS]:PORT", spec);
            free(copy);
            return -1;
        }
        while ((word = strtok_r(NULL, " \t", &wsave)) != NULL) {
            if (strcmp(word, "submission") == 0) {
                out[n].submission = 1;
            } else {
                snprintf(err, errlen, "listen: \"%s\": unknown option \"%s\" (only \"submission\")", spec, word);
                free(copy);
                return -1;
            }
        }
        n++;
    }
    free(copy);
    if (n == 0) {
        snprintf(err, errlen, "listen: no listener configured");
        return -1;
    }
    return n;
}

/*
 * smtpd_load - read the configuration; the number of errors. The rules'
 * state is built here, at reload too: a mynetworks file that fails it
 * refuses the whole reload (skeleton_reload rolls the file back), as in
 * lookupd, instead of running the new settings with the old rules.
 */
static int smtpd_load(void)
{
    SMTPD_LISTENER tmp[SMTPD_MAX_LISTEN];
    char err[512];
    int errors = cfg_load(smtpd_sk.conf_path, params_smtpd_sections());

    if (errors != 0)
        return errors;
    if (*var_smtpd_user && !daemon_user_exists(var_smtpd_user)) {
        log_err("%s: [smtpd] user: user \"%s\" does not exist", smtpd_sk.conf_path, var_smtpd_user);
        errors++;
    }
    cfg_secret_owner(var_smtpd_user);
    if (smtpd_listen_parse(var_smtpd_listen, tmp, SMTPD_MAX_LISTEN, err, sizeof(err)) < 0) {
        log_err("%s: [smtpd] %s", smtpd_sk.conf_path, err);
        errors++;
    }
    if (errors == 0 && smtpd_check_init(err, sizeof(err)) < 0) {
        log_err("%s: %s", smtpd_sk.conf_path, err);     /* "rules.mynetworks: ..." */
        errors++;
    }
    return errors;
}

/*
 * smtpd_submission_advice - warn of a submission listener without
 * STARTTLS (after smtp_tls_load): it requires TLS before AUTH and AUTH
 * before MAIL, so with no certificate (or tls = none) every client gets
 * 530 there. A warning, as Postfix gives, not a refusal: port 25 works.
 */
static void smtpd_submission_advice(const SMTPD_LISTENER *l, int n)
{
    char one[300];

    if (smtp_tls_server_ok())
        return;
    for (int i = 0; i < n; i++)
        if (l[i].submission)
            log_warn("%s: [smtpd] listen %s submission: STARTTLS is not offered (%s), so no client "
                     "can authenticate there and every MAIL gets 530 5.7.0",
                     smtpd_sk.conf_path, listen_format(&l[i].la, one, sizeof(one)),
                     strcmp(var_smtpd_tls, "may") != 0 ? "tls = none"
                     : "no tls_cert_file and tls_key_file");
}

/* smtpd_set_hostname - [rules] hostname, else the system's FQDN (the policy service's too) */
static void smtpd_set_hostname(void)
{
    params_rules_hostname(smtpd_hostname, sizeof(smtpd_hostname));
}

/*
 * smtpd_fd_limit - room for the descriptors the limits allow: a session
 * holds its client, its next hop and (queueing) its spool file, a queued
 * message its file and a next hop or two. The usual soft limit (1024) is
 * below what the defaults allow, and past it connects fail with EMFILE.
 * The soft limit is raised to 65536 or what the limits need if more, as
 * far as the hard one lets it (the unit sets LimitNOFILE), and a hard
 * limit below the need is said, with what to change: at start, and at a
 * reload that raised max_connections or queue_active_limit (an
 * unprivileged process may still raise its soft limit to the hard one).
 */
static void smtpd_fd_limit(void)
{
    struct rlimit rl;
    rlim_t need = (rlim_t) var_smtpd_maxconn * 3 + (rlim_t) var_smtpd_active_limit * 3 + 64;
    rlim_t goal = need > 65536 ? need : 65536;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= goal)
        return;
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > rl.rlim_cur) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > goal ? goal : rl.rlim_max;
        struct rlimit up = {want, rl.rlim_max};

        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = want;
    }
    if (rl.rlim_cur < need)
        log_warn("open files are limited to %llu, below the %llu that max_connections = %d and "
                 "queue_active_limit = %d may need: raise the limit (systemd LimitNOFILE, ulimit -n) "
                 "or lower those", (unsigned long long) rl.rlim_cur, (unsigned long long) need,
                 var_smtpd_maxconn, var_smtpd_active_limit);
}

/*
 * smtpd_store_keeper - the keeper of smtpd_store (lib/keeper.c): opened
 * read-only, retried once a second, closed after a failed lookup,
 * reopened when the file is replaced, and smtpd_store is NULL (every
 * check defers) while the data is older than [store] max_age. READY=1
 * waits for the first open: the listeners are bound before it.
 */
static KEEPER *smtpd_store_keeper(void)
{
    if (smtpd_keeper == NULL) {
        smtpd_keeper = keeper_create("deferring recipients", "accepting mail");
        keeper_mirror(smtpd_keeper, &smtpd_store);
    }
    return smtpd_keeper;
}

/* smtpd_stats_body - smtpd's counters, after the skeleton's header lines */
static void smtpd_stats_body(FILE *fp, void *arg)
{
    (void) arg;
    fprintf(fp, "connections_total %lld\nconnections_current %d\nconnections_refused %lld\n",
            smtp_session_stats.connections_total, smtp_session_count(),
            smtp_session_stats.connections_refused);
    fprintf(fp, "messages %lld\nrcpt_ok %lld\nrcpt_rejected %lld\ntimeouts %lld\nprotocol_errors %lld\n",
            smtp_session_stats.messages, smtp_session_stats.rcpt_ok, smtp_session_stats.rcpt_rejected,
            smtp_session_stats.timeouts, smtp_session_stats.protocol_errors);
    fprintf(fp, "store %s\n", smtpd_store ? (keeper_incomplete(smtpd_keeper) ? "incomplete" : "open")
            : keeper_open(smtpd_keeper) ? "stale" : "unavailable");
    /* Also in the last write, after the stop closed the spool: the counts of the last scan. */
    if (smtpd_spool != NULL || strcmp(var_smtpd_relay_mode, "proxy") != 0) {
        long long deferred, hold, oldest;

        smtpd_qmgr_counts(&deferred, &hold, &oldest);
        fprintf(fp, "queue_deferred %lld\nqueue_hold %lld\nqueue_oldest_age %lld\n", deferred, hold,
                oldest > 0 && time(NULL) > oldest ? (long long) time(NULL) - oldest : 0);
    }
}

/* smtpd_stats_write - the stats file and the metrics file */
static void smtpd_stats_write(void)
{
    skeleton_stats_write(var_smtpd_statsfile, var_smtpd_metrics_file, "smtpd", NULL,
                         (long long) smtpd_started, smtpd_stats_body, NULL, &smtpd_stats_warned);
}

/* smtpd_tick_cb - once a second: store, shutdown progress */
static void smtpd_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    long long now = smtpd_now_ms();

    (void) fd;
    (void) what;
    (void) arg;
    keeper_tick(smtpd_store_keeper());
    if (smtpd_stopping && ((smtp_session_count() == 0 && smtpd_qmgr_running() == 0)
                           || now > smtpd_stop_ms + var_smtpd_shutdown_ms + 3000))
        event_base_loopbreak(smtpd_base);
}

/* smtpd_accept_cb - a new client on one of our listeners */
static void smtpd_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                            int salen, void *arg)
{
    SMTPD_LISTENER *l = arg;

    (void) lev;
    smtp_session_create(fd, sa, (socklen_t) salen, l->submission);
}

/* smtpd_resume_cb - accept again after running out of descriptors */
static void smtpd_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void) fd;
    (void) what;
    (void) arg;
    for (int i = 0; i < smtpd_nlisteners; i++)
        if (smtpd_listeners[i].lev)
            evconnlistener_enable(smtpd_listeners[i].lev);
}

/* smtpd_accept_error_cb - accept() failed (EMFILE ...): pause a moment rather than spin */
static void smtpd_accept_error_cb(struct evconnlistener *lev, void *arg)
{
    static long long logged;
    long long now = smtpd_now_ms();
    struct timeval tv = {0, 100000};

    (void) arg;
    if (now - logged > 10000) {
        log_warn("accept: %s; pausing new connections briefly", strerror(errno));
        logged = now;
    }
    evconnlistener_disable(lev);
    event_add(smtpd_resume_ev, &tv);
}

/* smtpd_listen_close - stop accepting */
static void smtpd_listen_close(void)
{
    for (int i = 0; i < smtpd_nlisteners; i++) {
        if (smtpd_listeners[i].lev)
            evconnlistener_free(smtpd_listeners[i].lev);
        else if (smtpd_listeners[i].fd >= 0)
            close(smtpd_listeners[i].fd);
        smtpd_listeners[i].lev = NULL;
        smtpd_listeners[i].fd = -1;
    }
    smtpd_nlisteners = 0;
}

/* smtpd_reload - SIGHUP (skeleton_reload): new settings, same listeners and sessions */
static int smtpd_reload(char *note, size_t size)
{
    char err[512];
    int errors;

    (void) note;
    (void) size;
    if ((errors = smtpd_load()) != 0)
        return errors;
    if (smtp_tls_load(err, sizeof(err)) < 0)
        log_warn("reload: %s; keeping the previous certificate", err);
    smtpd_log_reopen();
    smtpd_set_hostname();
    smtpd_anvil_init(var_smtpd_anvil_size);
    smtp_session_init(smtpd_dns);
    smtpd_qmgr_reload();
    smtpd_fd_limit();
    log_set_debug(smtpd_sk.verbose || strcmp(var_log_level, "debug") == 0);

    /* The path, or the file behind it, may have changed. */
    keeper_reopen(smtpd_store_keeper());
    return 0;
}

/* smtpd_reload_failed - logrotate's HUP must still move us to the new log_file */
static void smtpd_reload_failed(void)
{
    smtpd_log_reopen();
}

/* smtpd_ready - the state line for systemd after a reload */
static const char *smtpd_ready(void)
{
    return keeper_ready_line(smtpd_keeper);
}

/* smtpd_stop_cb - shutdown_timeout passed: everyone goes, deliveries still waiting at their dot too */
static void smtpd_stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void) fd;
    (void) what;
    (void) arg;
    smtp_session_shutdown(1);
    smtpd_qmgr_stop(1);
}

/* smtpd_signal_cb - HUP reloads; TERM and INT stop */
static void smtpd_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct timeval tv;

    (void) what;
    (void) arg;
    if (sig == SIGHUP) {
        /* Stopping, a reload would tell systemd READY=1 after STOPPING=1: nothing is left to apply it to. */
        if (smtpd_stopping)
            log_debug("SIGHUP while stopping: ignored");
        else
            skeleton_reload(&smtpd_sk);
        return;
    }
    if (smtpd_stopping)
        return;
    daemon_notify("STOPPING=1");
    log_info("stopping on signal %s: %d session%s open", sig == SIGTERM ? "TERM" : "INT",
             smtp_session_count(), smtp_session_count() == 1 ? "" : "s");
    smtpd_stopping = 1;
    smtpd_stop_ms = smtpd_now_ms();
    smtpd_listen_close();
    smtp_session_shutdown(0);
    smtpd_qmgr_stop(0);
    tv.tv_sec = var_smtpd_shutdown_ms / 1000;
    tv.tv_usec = (var_smtpd_shutdown_ms % 1000) * 1000;
    event_add(smtpd_stop_ev, &tv);
    if (smtp_session_count() == 0 && smtpd_qmgr_running() == 0)
        event_base_loopbreak(smtpd_base);
}

/* smtpd_paths - the places smtpd writes (skeleton_paths checks them for its user) */
static void smtpd_paths(PATHS *pl)
{
    params_smtpd_paths(pl);
}

/* What the skeleton needs to know of smtpd (the tentative definition above, completed). */
static SKELETON smtpd_sk = {
    .name = SMTPD_PROG,
    .section = "smtpd",
    .user = &var_smtpd_user,
    .pidfile = &var_smtpd_pidfile,
    .load = smtpd_load,
    .paths = smtpd_paths,
    .reload = smtpd_reload,
    .reload_failed = smtpd_reload_failed,
    .ready = smtpd_ready,
};

/* main - configure, bind, detach, drop privileges, run the loop */
int main(int argc, char **argv)
{
    char err[512];

    skeleton_options(&smtpd_sk, argc, argv);
    skeleton_configure(&smtpd_sk);
    /* Directories the user cannot write: say so now, not as a fatal open later. */
    skeleton_paths(&smtpd_sk);
    if (smtpd_sk.check_only) {
        /* The key and certificates as a start would load them: -n must not pass what start refuses. */
        SMTPD_LISTENER tmp[SMTPD_MAX_LISTEN];
        int n = smtpd_listen_parse(var_smtpd_listen, tmp, SMTPD_MAX_LISTEN, err, sizeof(err));

        if (smtp_tls_load(err, sizeof(err)) < 0)
            log_fatal_code(RG_EX_CONFIG, "%s: [smtpd] %s", smtpd_sk.conf_path, err);
        smtpd_submission_advice(tmp, n);
        smtp_tls_free();
        return skeleton_check_done(&smtpd_sk, NULL);
    }
    if (smtpd_log_open(var_smtpd_syslog_name, var_smtpd_log_file, 1, err, sizeof(err)) < 0)
        log_fatal_code(RG_EX_CONFIG, "%s", err);
    if (geteuid() == 0 && *var_smtpd_user) {
        struct passwd *pw = getpwnam(var_smtpd_user);

        /* A log file root just made must stay writable for the user, who reopens it. */
        if (pw != NULL && smtpd_log_give((long) pw->pw_uid, (long) pw->pw_gid, err, sizeof(err)) < 0)
            log_fatal("%s", err);
    }
    log_set_debug(smtpd_sk.verbose || strcmp(var_log_level, "debug") == 0);
    smtpd_set_hostname();
    smtpd_fd_limit();
    skeleton_ignore_sigpipe();

    /* Bind, and read the key and SASL setup, while we may still be root. */
    smtpd_nlisteners = smtpd_listen_parse(var_smtpd_listen, smtpd_listeners, SMTPD_MAX_LISTEN,
                                          err, sizeof(err));
    if (smtpd_nlisteners < 0)
        log_fatal_code(RG_EX_CONFIG, "%s", err);
    for (int i = 0; i < smtpd_nlisteners; i++) {
        smtpd_listeners[i].fd = listen_open(&smtpd_listeners[i].la, SMTPD_BACKLOG, 0, err, sizeof(err));
        if (smtpd_listeners[i].fd < 0)
            log_fatal("%s", err);
    }
    if (smtp_tls_load(err, sizeof(err)) < 0)
        log_fatal_code(RG_EX_CONFIG, "%s", err);
    smtpd_submission_advice(smtpd_listeners, smtpd_nlisteners);
    if (smtp_auth_init(err, sizeof(err)) < 0)
        log_warn("SASL: %s; AUTH is not offered", err);

    /* Not -f: lines go to syslog and log_file only. */
    skeleton_start(&smtpd_sk, smtpd_log_ident());
    if (!smtpd_sk.foreground)
        smtpd_log_stderr(0);

    {
        struct event_config *cfg = event_config_new();

        /*
         * epoll changelist: the interest changes of one loop pass reach the
         * kernel together at the next epoll_wait, and a disable undone in
         * the same pass (a session that pauses reading for a check that is
         * answered at once) costs no epoll_ctl. We never dup() sockets,
         * which is what the changelist cannot cope with.
         */
        if (cfg == NULL || event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) < 0
            || (smtpd_base = event_base_new_with_config(cfg)) == NULL)
            smtpd_base = event_base_new();
        if (cfg != NULL)
            event_config_free(cfg);
    }
    if (smtpd_base == NULL)
        log_fatal("event_base_new failed");
    if ((smtpd_dns = smtpd_dns_create(smtpd_base, var_smtpd_dns_servers, var_smtpd_dns_timeout_ms,
                                      err, sizeof(err))) == NULL)
        log_fatal("DNS: %s", err);
    smtpd_anvil_init(var_smtpd_anvil_size);
    smtp_session_init(smtpd_dns);
    /* As the user the spool belongs to, in the loop its deliveries run in. */
    if (smtpd_qmgr_init(err, sizeof(err)) < 0)
        log_warn("queue: %s; relaying as a proxy only, mail is not queued until it opens "
                 "(tried again every second)", err);
    smtpd_resume_ev = evtimer_new(smtpd_base, smtpd_resume_cb, NULL);
    smtpd_stop_ev = evtimer_new(smtpd_base, smtpd_stop_cb, NULL);
    smtpd_tick_ev = event_new(smtpd_base, -1, EV_PERSIST, smtpd_tick_cb, NULL);
    if (smtpd_resume_ev == NULL || smtpd_stop_ev == NULL || smtpd_tick_ev == NULL)
        log_fatal("event_new failed");
    {
        struct timeval tv = {SMTPD_TICK_MS / 1000, 0};

        event_add(smtpd_tick_ev, &tv);
    }
    for (int i = 0; i < smtpd_nlisteners; i++) {
        SMTPD_LISTENER *l = &smtpd_listeners[i];

        l->lev = evconnlistener_new(smtpd_base, smtpd_accept_cb, l, LEV_OPT_CLOSE_ON_FREE
                                    | LEV_OPT_CLOSE_ON_EXEC, -1, l->fd);
        if (l->lev == NULL)
            log_fatal("cannot watch listener");
        evconnlistener_set_error_cb(l->lev, smtpd_accept_error_cb);
    }
    skeleton_watch_signals(&smtpd_sk, smtpd_base, smtpd_signal_cb, NULL);
    smtpd_started = time(NULL);
    keeper_tick(smtpd_store_keeper());
    {
        char text[1024];
        size_t n = 0;

        text[0] = 0;
        for (int i = 0; i < smtpd_nlisteners && n < sizeof(text); i++) {
            char one[300];

            n += (size_t) snprintf(text + n, sizeof(text) - n, "%s%s%s", n ? " " : "",
                                   listen_format(&smtpd_listeners[i].la, one, sizeof(one)),
                                   smtpd_listeners[i].submission ? " (submission)" : "");
        }
        log_info("starting: %s, hostname %s, store %s (%s), TLS %s, relay_mode %s, queue %s", text,
                 smtpd_hostname, var_store_path, smtpd_store ? "open" : "unavailable",
                 smtp_tls_server_ok() ? "offered" : "not offered", var_smtpd_relay_mode,
                 smtpd_spool ? spool_dir(smtpd_spool) : "none");
    }
    skeleton_stats_every(&smtpd_sk, smtpd_base, &var_smtpd_stats_ms, smtpd_stats_write);

    if (event_base_dispatch(smtpd_base) < 0)
        log_fatal("event loop failed");

    /* Stopping: whoever is left goes now. */
    smtpd_stopping = 1;
    smtp_session_shutdown(1);
    if (smtp_session_count() > 0) {
        /* Two seconds to hand out the last 421s; the tick ends it sooner. */
        struct timeval tv = {2, 0};

        event_base_loopexit(smtpd_base, &tv);
        event_base_dispatch(smtpd_base);
    }
    smtpd_listen_close();
    smtpd_qmgr_stop(1);
    smtp_relay_quit_cut();              /* a QUIT's 221 is not worth waiting for now */
    log_info("stopped: %lld connections, %lld messages relayed", smtp_session_stats.connections_total,
             smtp_session_stats.messages);
    skeleton_end(&smtpd_sk);            /* the last stats, the pid file */
    event_free(smtpd_resume_ev);
    event_free(smtpd_stop_ev);
    event_free(smtpd_tick_ev);
    if (smtp_session_count() == 0) {
        smtpd_dns_free(smtpd_dns);
        event_base_free(smtpd_base);
    }
    keeper_free(smtpd_keeper);
    smtpd_keeper = NULL;
    smtpd_store = NULL;
    smtp_tls_free();
    /*
     * No smtp_auth_done() (sasl_done) at exit: it dlclose()s the SASL
     * plugins, whose never-freed init allocations then show up as leaks
     * of an unknown module; left loaded they are still reachable, and
     * the process ends anyway.
     */
    smtpd_log_close();
    return RG_EX_OK;
}
