/*
 * lookupd.c - rcptgate-lookupd: answers Postfix socketmap and policy queries
 *
 * SYNOPSIS
 *   rcptgate-lookupd [-c FILE] [-f] [-n] [-v]
 *
 * DESCRIPTION
 *   One process, one libevent loop, one read-only handle on the store.
 *   Listeners come from [lookupd] socketmap and policy; each accepted
 *   connection gets a fixed input buffer big enough for one whole request
 *   and a reply buffer that grows once and is then reused, so that a busy
 *   connection allocates nothing per request. Every complete request that
 *   one read() brought in is answered before the replies leave in a
 *   single write().
 *
 *   The store may be missing, locked, corrupt, of an older or newer schema
 *   (lookupd never migrates it) or stale past [store] max_age: lookupd
 *   starts anyway and answers "try later" (socketmap TEMP, policy 451
 *   4.3.0) until it can use it. A lookup error closes the handle; it is
 *   reopened at most once a second, so a broken store costs one busy
 *   timeout per second rather than one per request. The handle and these
 *   rules live in lib/keeper.c, shared with smtpd.
 *
 *   SIGHUP re-reads the configuration (a bad file is logged and the old
 *   one kept) and reopens the store; open connections stay. Listener, user
 *   and pid file changes need a restart and are logged as ignored.
 *   SIGTERM/SIGINT stop: listeners close, pending replies get one last
 *   write, the stats file is written and the pid file removed.
 *
 * DIAGNOSTICS
 *   syslog (mail facility); with -f also stderr. Exit 78 on a bad config.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cfg.h"
#include "daemon.h"
#include "keeper.h"
#include "listen.h"
#include "log.h"
#include "lookupd.h"
#include "metrics.h"
#include "params.h"
#include "params_rules.h"
#include "rules.h"
#include "paths.h"
#include "skeleton.h"
#include "store.h"
#include "store_sync.h"
#include "xalloc.h"

#define LOOKUPD_NAME        "rcptgate-lookupd"
#define LOOKUPD_BACKLOG     1024
#define LOOKUPD_OUT_HIGH    (256 * 1024)   /* stop reading while this much is unsent */
#define LOOKUPD_ACCEPT_MAX  64             /* accepts per wakeup, to stay fair */
#define LOOKUPD_TICK_MS     1000           /* store health check interval */

LOOKUPD_STATS lookupd_stats;
CHECK_OPTS lookupd_check_opts;
char lookupd_hostname[LOOKUPD_HOSTNAME_LEN];

enum { LISTENER_SOCKMAP, LISTENER_POLICY };

typedef struct lookupd_listener {
    int fd;
    int kind;
    struct event *ev;
    LISTEN_ADDR la;
    dev_t dev;                          /* unix: the socket file we made */
    ino_t ino;
} LOOKUPD_LISTENER;

static struct event_base *lookupd_base;
static volatile int lookupd_stopping;   /* SIGTERM/SIGINT seen */
static LOOKUPD_LISTENER lookupd_listeners[2 * LISTEN_MAX];
static int lookupd_nlisteners;
static LOOKUPD_CONN *lookupd_conns;
static struct event *lookupd_tick_ev;   /* once a second: store health */
static struct event *lookupd_resume_ev; /* resume accepting after EMFILE */
static const struct timeval *lookupd_idle_tv;

static SKELETON lookupd_sk;             /* options, signals, reload: lib/skeleton.c; filled before main() */

/* The store handle, why it is not there, and when it is stale (lib/keeper.c). */
static KEEPER *lookupd_keeper;

/* Refused connections, logged once per burst. */
static long long lookupd_refused;
static long long lookupd_refused_logged_ms = LLONG_MIN / 2;
static int lookupd_stats_warned;

static void lookupd_conn_free(LOOKUPD_CONN *conn);

/* lookupd_now_ms - a monotonic clock in milliseconds: a step of the wall clock moves no deadline */
static long long lookupd_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* lookupd_ms_tv - milliseconds as a struct timeval */
static struct timeval lookupd_ms_tv(long long ms)
{
    struct timeval tv;

    if (ms < 0)
        ms = 0;
    tv.tv_sec = (time_t) (ms / 1000);
    tv.tv_usec = (suseconds_t) (ms % 1000) * 1000;
    return tv;
}

/* lookupd_safe_text - printable ASCII only, capped at size - 1 bytes */
size_t lookupd_safe_text(char *out, size_t size, const char *in, size_t len)
{
    size_t n = 0;

    if (size == 0)
        return 0;
    for (size_t i = 0; i < len && n + 1 < size; i++) {
        unsigned char c = (unsigned char) in[i];

        out[n++] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
    }
    out[n] = 0;
    return n;
}

/* ------------------------------------------------------------ the store */

/* lookupd_keeper_get - the keeper, made on first use (the fuzz target has no main) */
static KEEPER *lookupd_keeper_get(void)
{
    if (lookupd_keeper == NULL)
        lookupd_keeper = keeper_create("answering TEMP", "answering");
    return lookupd_keeper;
}

/* lookupd_store - the handle inside the loop round's read transaction, or NULL and why */
STORE *lookupd_store(const char **reason)
{
    return keeper_read(lookupd_keeper_get(), reason);
}

/* lookupd_store_end - end the read transaction kept across loop rounds */
static void lookupd_store_end(void)
{
    keeper_read_end(lookupd_keeper_get());
}

/* lookupd_store_failed - a lookup failed: close, answer TEMP until reopened */
void lookupd_store_failed(const char *reason)
{
    keeper_failed(lookupd_keeper_get(), reason);
}

/* ------------------------------------------------------------ statistics */

/* lookupd_stats_body - lookupd's counters, after the skeleton's header lines */
static void lookupd_stats_body(FILE *fp, void *arg)
{
    static const char *maps[] = {"recipients", "domains", "transport", "unknown"};
    static const char *outcomes[] = {"ok", "notfound", "temp", "perm"};
    static const char *pol[] = {"dunno", "reject", "defer"};

    (void) arg;
    fprintf(fp, "connections_total %lld\nconnections_current %lld\n",
            lookupd_stats.connections_total, lookupd_stats.connections_current);
    fprintf(fp, "protocol_errors %lld\ntimeouts %lld\n",
            lookupd_stats.protocol_errors, lookupd_stats.timeouts);
    for (int m = 0; m < SOCKMAP_MAP_COUNT; m++)
        for (int o = 0; o < SOCKMAP_OUTCOME_COUNT; o++)
            fprintf(fp, "socketmap.%s.%s %lld\n", maps[m], outcomes[o], lookupd_stats.sockmap[m][o]);
    for (int p = 0; p < POLICYD_OUTCOME_COUNT; p++)
        fprintf(fp, "policy.%s %lld\n", pol[p], lookupd_stats.policy[p]);
}

/* lookupd_stats_write - the stats file and the metrics file */
static void lookupd_stats_write(void)
{
    skeleton_stats_write(var_lookupd_statsfile, var_lookupd_metrics_file, "lookupd", keeper_handle(lookupd_keeper),
                         (long long) lookupd_stats.started, lookupd_stats_body, NULL, &lookupd_stats_warned);
}

/* ------------------------------------------------------------ connections */

/* lookupd_out_space - room for need more reply bytes */
char *lookupd_out_space(LOOKUPD_CONN *conn, size_t need)
{
    /*
     * What was sent goes from the front: a client that pipelines and
     * reads a little slower than it writes never lets the buffer drain
     * whole, and appending behind the sent bytes would grow it for ever.
     */
    if (conn->out_off > 0) {
        memmove(conn->out, conn->out + conn->out_off, conn->out_len - conn->out_off);
        conn->out_len -= conn->out_off;
        conn->out_off = 0;
    }
    if (conn->out_cap - conn->out_len < need) {
        size_t cap = conn->out_cap ? conn->out_cap : 4096;

        while (cap - conn->out_len < need)
            cap *= 2;
        conn->out = xrealloc(conn->out, cap);
        conn->out_cap = cap;
    }
    return conn->out + conn->out_len;
}

/* lookupd_out_commit - n bytes of reply were written at the end of out */
void lookupd_out_commit(LOOKUPD_CONN *conn, size_t n)
{
    conn->out_len += n;
}

/* lookupd_conn_flush - write what we can; -1 if the peer is gone */
static int lookupd_conn_flush(LOOKUPD_CONN *conn)
{
    while (conn->out_off < conn->out_len) {
        ssize_t n = send(conn->fd, conn->out + conn->out_off, conn->out_len - conn->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            log_debug("client %s: write: %s", conn->peer, strerror(errno));
            return -1;
        }
        conn->out_off += (size_t) n;
    }
    conn->out_off = conn->out_len = 0;
    return 0;
}

/* lookupd_conn_arm - set the read timer: request deadline or idle timeout */
static void lookupd_conn_arm(LOOKUPD_CONN *conn, int progress)
{
    if (conn->in_len > 0) {
        long long now = lookupd_now_ms();
        struct timeval tv;

        /* A request must arrive whole within request_timeout of its start. */
        if (!conn->partial || progress)
            conn->req_start_ms = now;
        conn->partial = 1;
        tv = lookupd_ms_tv(conn->req_start_ms + var_lookupd_request_ms - now);
        event_add(conn->ev_read, &tv);
    } else if (conn->partial || !conn->reading) {
        conn->partial = 0;
        event_add(conn->ev_read, lookupd_idle_tv);
    }
    /* Otherwise EV_PERSIST already restarted the idle timer on this read. */
    conn->reading = 1;
}

/* lookupd_conn_after_output - flush, then decide between reading and writing */
static void lookupd_conn_after_output(LOOKUPD_CONN *conn, int progress)
{
    size_t pending;

    if (lookupd_conn_flush(conn) < 0) {
        lookupd_conn_free(conn);
        return;
    }
    pending = conn->out_len - conn->out_off;
    if (pending > 0) {
        struct timeval tv = lookupd_ms_tv(var_lookupd_request_ms);

        /* A client has request_timeout to take its replies. */
        event_add(conn->ev_write, &tv);
    } else {
        event_del(conn->ev_write);
        if (conn->eof) {
            lookupd_conn_free(conn);
            return;
        }
    }

    /* Back-pressure: a client that does not read gets no more answers. */
    if (pending > LOOKUPD_OUT_HIGH || conn->eof) {
        if (conn->reading) {
            event_del(conn->ev_read);
            conn->reading = 0;
        }
    } else {
        /* Reading again after back-pressure: the stall was ours, the request's clock starts again. */
        lookupd_conn_arm(conn, progress || !conn->reading);
    }
}

/* lookupd_conn_read_cb - bytes from a client (or its timer ran out) */
static void lookupd_conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOKUPD_CONN *conn = arg;
    ssize_t n;
    int used;

    if (what & EV_TIMEOUT) {
        if (conn->partial) {
            log_warn("client %s: request not complete within %d ms; closing the connection",
                     conn->peer, var_lookupd_request_ms);
            lookupd_stats.timeouts++;
        } else {
            log_debug("client %s: idle for %d ms; closing the connection",
                      conn->peer, var_lookupd_idle_ms);
        }
        lookupd_conn_free(conn);
        return;
    }
    n = read(fd, conn->in + conn->in_len, sizeof(conn->in) - conn->in_len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        log_debug("client %s: read: %s", conn->peer, strerror(errno));
        lookupd_conn_free(conn);
        return;
    }
    if (n == 0) {
        if (conn->in_len > 0)
            log_debug("client %s: closed in the middle of a request", conn->peer);
        conn->eof = 1;
        conn->in_len = 0;
        lookupd_conn_after_output(conn, 0);
        return;
    }
    conn->in_len += (size_t) n;
    /* The read transaction stays open for the rest of this loop round. */
    used = conn->input(conn);
    if (used < 0) {
        /* Replies to the good requests before the bad one still go out. */
        (void) lookupd_conn_flush(conn);
        lookupd_conn_free(conn);
        return;
    }
    if (used > 0) {
        conn->in_len -= (size_t) used;
        if (conn->in_len > 0)
            memmove(conn->in, conn->in + used, conn->in_len);
    }
    if (conn->in_len == sizeof(conn->in)) {
        /* Cannot happen with the protocol limits; never spin on a full buffer. */
        log_warn("client %s: request too long; closing the connection", conn->peer);
        lookupd_stats.protocol_errors++;
        lookupd_conn_free(conn);
        return;
    }
    lookupd_conn_after_output(conn, used > 0);
}

/* lookupd_conn_write_cb - the client can take more replies (or timed out) */
static void lookupd_conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOKUPD_CONN *conn = arg;

    if (what & EV_TIMEOUT) {
        log_warn("client %s: did not read its replies within %d ms; closing the connection",
                 conn->peer, var_lookupd_request_ms);
        lookupd_stats.timeouts++;
        lookupd_conn_free(conn);
        return;
    }
    lookupd_conn_after_output(conn, 0);
}

/* lookupd_conn_peer - a name for the client, for logs */
static void lookupd_conn_peer(LOOKUPD_CONN *conn, const struct sockaddr_storage *ss,
                              socklen_t sslen, const LOOKUPD_LISTENER *l)
{
    if (ss->ss_family == AF_UNIX) {
#ifdef SO_PEERCRED
        struct ucred cred;
        socklen_t cl = sizeof(cred);

        if (getsockopt(conn->fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
            snprintf(conn->peer, sizeof(conn->peer), "pid=%ld uid=%ld",
                     (long) cred.pid, (long) cred.uid);
            return;
        }
#endif
        snprintf(conn->peer, sizeof(conn->peer), "unix:%.80s", l->la.path);
    } else {
        char host[NI_MAXHOST];
        char port[NI_MAXSERV];

        if (getnameinfo((const struct sockaddr *) ss, sslen, host, sizeof(host), port, sizeof(port),
                        NI_NUMERICHOST | NI_NUMERICSERV) == 0)
            snprintf(conn->peer, sizeof(conn->peer), "%.64s:%.16s", host, port);
        else
            snprintf(conn->peer, sizeof(conn->peer), "inet");
    }
}

/* lookupd_conn_create - a new client on listener l */
static void lookupd_conn_create(int fd, const LOOKUPD_LISTENER *l,
                                const struct sockaddr_storage *ss, socklen_t sslen)
{
    LOOKUPD_CONN *conn = xmalloc(sizeof(*conn));

    memset(conn, 0, offsetof(LOOKUPD_CONN, in));
    conn->fd = fd;
    conn->input = l->kind == LISTENER_SOCKMAP ? sockmap_input : policyd_input;
    conn->ev_read = event_new(lookupd_base, fd, EV_READ | EV_PERSIST, lookupd_conn_read_cb, conn);
    conn->ev_write = event_new(lookupd_base, fd, EV_WRITE | EV_PERSIST, lookupd_conn_write_cb, conn);
    if (conn->ev_read == NULL || conn->ev_write == NULL)
        log_fatal("event_new: out of memory");
    lookupd_conn_peer(conn, ss, sslen, l);
    conn->next = lookupd_conns;
    if (lookupd_conns)
        lookupd_conns->prev = conn;
    lookupd_conns = conn;
    lookupd_stats.connections_total++;
    lookupd_stats.connections_current++;
    lookupd_conn_arm(conn, 0);
    log_debug("client %s: connected", conn->peer);
}

/* lookupd_conn_free - close and forget a connection; NULL is fine */
static void lookupd_conn_free(LOOKUPD_CONN *conn)
{
    if (conn == NULL)
        return;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        lookupd_conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    event_free(conn->ev_read);
    event_free(conn->ev_write);
    close(conn->fd);
    free(conn->out);
    free(conn);
    lookupd_stats.connections_current--;
}

/* ------------------------------------------------------------ listeners */

/* lookupd_accept_pause - stop accepting for a moment (out of descriptors) */
static void lookupd_accept_pause(void)
{
    struct timeval tv = lookupd_ms_tv(100);

    for (int i = 0; i < lookupd_nlisteners; i++)
        event_del(lookupd_listeners[i].ev);
    event_add(lookupd_resume_ev, &tv);
}

/* lookupd_accept_resume_cb - accept again after a pause */
static void lookupd_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    for (int i = 0; i < lookupd_nlisteners; i++)
        event_add(lookupd_listeners[i].ev, NULL);
}

/* lookupd_accept_cb - new connections on a listener */
static void lookupd_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    LOOKUPD_LISTENER *l = arg;

    for (int i = 0; i < LOOKUPD_ACCEPT_MAX; i++) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *) &ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("accept: %s; pausing for 100 ms", strerror(errno));
                lookupd_accept_pause();
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
                       && errno != ECONNABORTED) {
                log_warn("accept: %s", strerror(errno));
            }
            return;
        }
        if (lookupd_stats.connections_current >= var_lookupd_maxconn) {
            long long now = lookupd_now_ms();

            /* Refuse by closing at once; one log line per burst (10 s). */
            close(fd);
            lookupd_refused++;
            if (now - lookupd_refused_logged_ms >= 10000) {
                log_warn("max_connections (%d) reached: refused %lld connection%s",
                         var_lookupd_maxconn, lookupd_refused, lookupd_refused == 1 ? "" : "s");
                lookupd_refused = 0;
                lookupd_refused_logged_ms = now;
            }
            continue;
        }
        lookupd_conn_create(fd, l, &ss, sslen);
    }
}

/* lookupd_listen_list - bind every listener of a comma-separated list */
static void lookupd_listen_list(const char *list, int kind, int mode)
{
    LISTEN_ADDR la[LISTEN_MAX];
    char err[512];
    int n = listen_parse_list(list, la, LISTEN_MAX, err, sizeof(err));
    long gid = params_socket_gid();

    if (n < 0)
        log_fatal_code(RG_EX_CONFIG, "%s", err);
    if (gid == -2)
        log_fatal_code(RG_EX_CONFIG, "[lookupd] socket_group: group \"%s\" does not exist",
                       var_lookupd_socket_group);
    for (int i = 0; i < n; i++) {
        LOOKUPD_LISTENER *l = &lookupd_listeners[lookupd_nlisteners];
        struct stat sb;

        l->fd = listen_open_group(&la[i], LOOKUPD_BACKLOG, mode, gid, err, sizeof(err));
        if (l->fd < 0)
            log_fatal("%s", err);
        l->kind = kind;
        l->la = la[i];
        if (l->la.is_unix && lstat(l->la.path, &sb) == 0) {
            l->dev = sb.st_dev;
            l->ino = sb.st_ino;
        }
        lookupd_nlisteners++;
    }
}

/* lookupd_listen_close - stop accepting; remove the unix sockets we made */
static void lookupd_listen_close(void)
{
    for (int i = 0; i < lookupd_nlisteners; i++) {
        LOOKUPD_LISTENER *l = &lookupd_listeners[i];
        struct stat sb;

        if (l->ev)
            event_free(l->ev);
        close(l->fd);

        /* Only our own socket: a successor may already have bound the path. */
        if (l->la.is_unix && lstat(l->la.path, &sb) == 0
            && sb.st_dev == l->dev && sb.st_ino == l->ino)
            (void) unlink(l->la.path);
    }
    lookupd_nlisteners = 0;
}

/* lookupd_listen_text - "unix:A, inet:B" for the start line */
static void lookupd_listen_text(int kind, char *buf, size_t size)
{
    size_t n = 0;

    buf[0] = 0;
    for (int i = 0; i < lookupd_nlisteners && n < size; i++) {
        char one[300];

        if (lookupd_listeners[i].kind != kind)
            continue;
        n += (size_t) snprintf(buf + n, size - n, "%s%s", n ? " " : "",
                               listen_format(&lookupd_listeners[i].la, one, sizeof(one)));
    }
    if (n == 0)
        snprintf(buf, size, "none");
}

/* ------------------------------------------------------------ configuration */

/* lookupd_apply - settings that take effect at once, at start and reload */
static void lookupd_apply(void)
{
    struct timeval tv = lookupd_ms_tv(var_lookupd_idle_ms);
    static int idle_ms;

    params_check_opts(&lookupd_check_opts);
    params_rules_hostname(lookupd_hostname, sizeof(lookupd_hostname));
    log_set_debug(lookupd_sk.verbose || strcmp(var_log_level, "debug") == 0);
    if (lookupd_base != NULL && (lookupd_idle_tv == NULL || var_lookupd_idle_ms != idle_ms)) {
        /*
         * Common timeouts keep thousands of identical idle timers cheap.
         * libevent holds at most 256 of them per loop, and never frees
         * one: a new one only when the value changed, and past that limit
         * a plain timer (slower with many connections, never a stop).
         */
        static struct timeval plain;

        idle_ms = var_lookupd_idle_ms;
        if ((lookupd_idle_tv = event_base_init_common_timeout(lookupd_base, &tv)) == NULL) {
            log_warn("idle_timeout: no common timer left (a restart gives one back); using a plain one");
            plain = tv;
            lookupd_idle_tv = &plain;
        }
    }
}

/* lookupd_paths - the places lookupd writes (skeleton_paths checks them for its user) */
static void lookupd_paths(PATHS *pl)
{
    params_paths("lookupd", 0, pl);
}

/* lookupd_socket_mode - the octal socket_mode setting */
static int lookupd_socket_mode(void)
{
    return (int) strtol(var_lookupd_socket_mode, NULL, 8);
}

/* lookupd_load - read the configuration; number of errors */
static int lookupd_load(void)
{
    char err[512];
    int errors = cfg_load(lookupd_sk.conf_path, params_sections_for("lookupd"));

    if (errors == 0 && *var_lookupd_user && !daemon_user_exists(var_lookupd_user)) {
        log_err("%s: [lookupd] user: user \"%s\" does not exist", lookupd_sk.conf_path, var_lookupd_user);
        errors++;
    }
    if (errors == 0)
        errors += params_lookupd_listeners(lookupd_sk.conf_path);
    /* the policy service's rules: mynetworks and the access lists (a bad reload keeps the old ones) */
    if (errors == 0 && rules_init(err, sizeof(err)) < 0) {
        log_err("%s: %s", lookupd_sk.conf_path, err);
        errors++;
    }
    return errors;
}

/*
 * lookupd_reload - SIGHUP (skeleton_reload): new settings, same listeners
 * and connections; the store is reopened, since the path, or the file
 * behind it, may have changed. A load that fails after cfg assigned the
 * file (the user, rules_init) is rolled back by skeleton_reload before
 * anything reads a value: lookupd_check_opts keeps pointing at the
 * running delimiters, which cfg has not freed.
 */
static int lookupd_reload(char *note, size_t size)
{
    int errors;

    (void) note;
    (void) size;
    if ((errors = lookupd_load()) != 0)
        return errors;
    lookupd_apply();
    /* Reopen the store now: the path, or the file behind it, may have changed. */
    keeper_reopen(lookupd_keeper_get());
    return 0;
}

/* lookupd_ready - the state line for systemd after a reload */
static const char *lookupd_ready(void)
{
    return keeper_ready_line(lookupd_keeper);
}

/* ------------------------------------------------------------ signals, loop */

/*
 * lookupd_tick_cb - once a second: is the store still the file we opened,
 * is its data fresh? A store that appears is opened now, not at the next
 * request: READY=1 waits for it.
 */
static void lookupd_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    /* An idle lookupd holds no snapshot for more than a second. */
    lookupd_store_end();
    keeper_tick(lookupd_keeper_get());
}

/* lookupd_signal_cb - HUP reloads; TERM and INT stop the loop */
static void lookupd_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    if (sig == SIGHUP) {
        skeleton_reload(&lookupd_sk);
        return;
    }
    daemon_notify("STOPPING=1");
    log_info("stopping on signal %s", sig == SIGTERM ? "TERM" : "INT");
    lookupd_stopping = 1;
    event_base_loopbreak(lookupd_base);
}

/* lookupd_shutdown - close everything, last stats, remove the pid file */
static void lookupd_shutdown(void)
{
    long long requests = 0;

    lookupd_listen_close();
    while (lookupd_conns != NULL) {
        (void) lookupd_conn_flush(lookupd_conns);
        lookupd_conn_free(lookupd_conns);
    }
    for (int m = 0; m < SOCKMAP_MAP_COUNT; m++)
        for (int o = 0; o < SOCKMAP_OUTCOME_COUNT; o++)
            requests += lookupd_stats.sockmap[m][o];
    for (int p = 0; p < POLICYD_OUTCOME_COUNT; p++)
        requests += lookupd_stats.policy[p];
    skeleton_end(&lookupd_sk);          /* the last stats, the pid file */
    keeper_free(lookupd_keeper);
    lookupd_keeper = NULL;
    log_info("stopped: %lld connections, %lld requests, %lld protocol errors, %lld timeouts",
             lookupd_stats.connections_total, requests, lookupd_stats.protocol_errors,
             lookupd_stats.timeouts);
}

/* What the skeleton needs to know of lookupd (the tentative definition above, completed). */
static SKELETON lookupd_sk = {
    .name = LOOKUPD_NAME,
    .section = "lookupd",
    .user = &var_lookupd_user,
    .pidfile = &var_lookupd_pidfile,
    .load = lookupd_load,
    .paths = lookupd_paths,
    .reload = lookupd_reload,
    .ready = lookupd_ready,
};

/* main - parse arguments, bind, detach, drop privileges, run the loop */
int main(int argc, char **argv)
{
    char smtext[1024];
    char potext[1024];

    skeleton_options(&lookupd_sk, argc, argv);
    skeleton_configure(&lookupd_sk);
    skeleton_paths(&lookupd_sk);
    if (lookupd_sk.check_only)
        return skeleton_check_done(&lookupd_sk, NULL);
    lookupd_apply();
    if (*var_lookupd_socketmap == 0 && *var_lookupd_policy == 0)
        log_fatal_code(RG_EX_CONFIG, "%s: [lookupd] has neither socketmap nor policy listeners",
                       lookupd_sk.conf_path);

    /* A client that vanishes must not kill us; send() also says MSG_NOSIGNAL. */
    skeleton_ignore_sigpipe();

    /* Bind while we may still be root (a socket in /run, a low port). */
    lookupd_listen_list(var_lookupd_socketmap, LISTENER_SOCKMAP, lookupd_socket_mode());
    lookupd_listen_list(var_lookupd_policy, LISTENER_POLICY, lookupd_socket_mode());

    skeleton_start(&lookupd_sk, LOOKUPD_NAME);

    if ((lookupd_base = event_base_new()) == NULL)
        log_fatal("event_base_new failed");
    lookupd_apply();
    for (int i = 0; i < lookupd_nlisteners; i++) {
        LOOKUPD_LISTENER *l = &lookupd_listeners[i];

        l->ev = event_new(lookupd_base, l->fd, EV_READ | EV_PERSIST, lookupd_accept_cb, l);
        if (l->ev == NULL || event_add(l->ev, NULL) < 0)
            log_fatal("cannot watch listener");
    }
    skeleton_watch_signals(&lookupd_sk, lookupd_base, lookupd_signal_cb, NULL);
    lookupd_resume_ev = evtimer_new(lookupd_base, lookupd_accept_resume_cb, NULL);
    lookupd_tick_ev = event_new(lookupd_base, -1, EV_PERSIST, lookupd_tick_cb, NULL);
    if (lookupd_resume_ev == NULL || lookupd_tick_ev == NULL)
        log_fatal("event_new failed");
    {
        struct timeval tv = lookupd_ms_tv(LOOKUPD_TICK_MS);

        event_add(lookupd_tick_ev, &tv);
    }

    lookupd_stats.started = time(NULL);
    keeper_tick(lookupd_keeper_get());
    lookupd_listen_text(LISTENER_SOCKMAP, smtext, sizeof(smtext));
    lookupd_listen_text(LISTENER_POLICY, potext, sizeof(potext));
    log_info("starting: socketmap %s, policy %s, store %s (%s), hostname %s", smtext, potext,
             var_store_path, keeper_open(lookupd_keeper) ? "open" : "unavailable", lookupd_hostname);
    skeleton_stats_every(&lookupd_sk, lookupd_base, &var_lookupd_stats_ms, lookupd_stats_write);

    /*
     * One loop round answers every client that has a request ready, all
     * inside one store read transaction. The transaction is kept for the
     * next rounds as long as nobody commits (lookupd_store() asks
     * store_read_current() before each lookup): Postfix sends one request
     * per connection and waits, so a round often holds one request, and
     * ending and beginning a read costs two fcntl() locks and an fstat(),
     * as many system calls as the request's read, write and epoll_wait.
     * A commit is seen by the first lookup after it, as when every round
     * began a new read; the tick ends the read once a second, so an idle
     * lookupd holds back no checkpoint.
     */
    while (!lookupd_stopping) {
        int rc = event_base_loop(lookupd_base, EVLOOP_ONCE);

        if (rc < 0)
            log_fatal("event loop failed");
    }

    lookupd_shutdown();
    event_free(lookupd_resume_ev);
    event_free(lookupd_tick_ev);
    event_base_free(lookupd_base);
    return RG_EX_OK;
}
