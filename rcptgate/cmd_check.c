/*
 * cmd_check.c - rcptgate check: a monitoring plugin for Nagios, Icinga, Zabbix
 *
 *   rcptgate check [-w AGE] [-c AGE] [-t TIMEOUT] [-d DOMAIN]
 *                  [--no-lookupd] [--no-smtpd] [--no-sync]
 *
 * Follows the monitoring-plugins conventions: one line on stdout,
 * "RCPTGATE STATE - what | performance data", and the exit status 0 OK,
 * 1 WARNING, 2 CRITICAL, 3 UNKNOWN. It checks, each as the gateway's
 * clients would see it:
 *
 *   the store: opened read-only and its figures read (CRITICAL if not);
 *   every directory source ([source NAME] sections and the store's
 *     non-import sources): the age of its last applied sync against the
 *     thresholds (-w/-c; by default half of [store] max_age and max_age,
 *     or 2h and 1d without one), CRITICAL when it never synced, and
 *     CRITICAL when its last run, or the last full or incremental pull
 *     that was applied or refused, was refused by the shrink guard;
 *   lookupd, when rcptgate.conf has a [lookupd] section: a socketmap
 *     request "domains DOMAIN" to its first socketmap listener; OK or
 *     NOTFOUND is alive, TEMP (store unusable or stale) and anything else
 *     are CRITICAL;
 *   smtpd, when rcptgate.conf has an [smtpd] section: its first listen
 *     address must greet with 220; the check then says QUIT;
 *   smtpd's queue ([smtpd] queue_directory), with an [smtpd] section:
 *     the messages deferred and held and the age of the oldest deferred
 *     one, read from the queue ids (no message is opened), WARNING when
 *     it is older than --queue-warning (default 1h: Postfix's first
 *     retries are 5 minutes apart, so an hour means several failed tries
 *     and an inside that is down for real); nothing when the spool does
 *     not exist and relay_mode is proxy, WARNING when it does not exist
 *     but smtpd should queue, UNKNOWN when this user cannot read it.
 *
 * Every probe has a deadline (-t, default 10s) and an alarm bounds the
 * whole run, so a hung daemon is CRITICAL and never a hung check. A bad
 * configuration or bad options are UNKNOWN (main() prints the line for a
 * configuration that does not load).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "listen.h"
#include "netstring.h"
#include "params.h"
#include "rcptgate.h"
#include "params_smtpd.h"
#include "spool.h"
#include "xalloc.h"

#define CHECK_MSGS      64              /* findings kept */
#define CHECK_SOURCE_MAX 64              /* sources checked */
#define CHECK_QUEUE_WARN 3600            /* --queue-warning default: the oldest deferred message's age */

static const char *const check_state_name[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};

typedef struct check_run {
    int state;                          /* worst so far */
    struct {
        int state;
        char text[400];
    } msg[CHECK_MSGS];
    int nmsg;
    char perf[2048];                    /* performance data so far */
    int timeout_ms;
    long long warn_s, crit_s;           /* sync age thresholds */
    /* sections rcptgate.conf has */
    int has_lookupd, has_smtpd;            /* rcptgate.conf has [lookupd], [smtpd] */
    char sources[CHECK_SOURCE_MAX][CFG_NAME_LEN];  /* [source NAME] */
    int nsources;
} CHECK_RUN;

/* -t, for the messages of the probes */
static int check_timeout_ms;

/* The status line of a run that the alarm cut short. */
static char check_alarm_line[256];

/* check_worse - is state a worse than b? CRITICAL > WARNING > UNKNOWN > OK */
static int check_worse(int a, int b)
{
    static const int rank[] = {0, 2, 3, 1};

    return rank[a] > rank[b];
}

/* check_say - record a finding and its state */
static void check_say(CHECK_RUN *cr, int state, const char *fmt, ...) RG_PRINTF(3, 4);
static void check_say(CHECK_RUN *cr, int state, const char *fmt, ...)
{
    va_list ap;

    if (check_worse(state, cr->state))
        cr->state = state;
    if (cr->nmsg >= CHECK_MSGS)
        return;
    cr->msg[cr->nmsg].state = state;
    va_start(ap, fmt);
    vsnprintf(cr->msg[cr->nmsg].text, sizeof(cr->msg[0].text), fmt, ap);
    va_end(ap);
    /* A daemon's text must not start the performance data or a second line. */
    for (char *p = cr->msg[cr->nmsg].text; *p; p++)
        if (*p == '|')
            *p = '/';
        else if ((unsigned char) *p < 0x20 || *p == 0x7f)
            *p = ' ';
    cr->nmsg++;
}

/* check_perf - one 'label'=value[UOM];warn;crit;min;max item */
static void check_perf(CHECK_RUN *cr, const char *label, const char *value)
{
    size_t n = strlen(cr->perf);
    char clean[128];
    size_t o = 0;

    /* A quote or '=' in a label would break the plugin format. */
    for (const char *p = label; *p && o + 1 < sizeof(clean); p++)
        clean[o++] = (*p == '\'' || *p == '=' || *p == ' ') ? '_' : *p;
    clean[o] = 0;
    snprintf(cr->perf + n, sizeof(cr->perf) - n, "%s'%s'=%s", n ? " " : "", clean, value);
}

/* check_now_ms - monotonic milliseconds */
static long long check_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* check_wait - poll fd for events until deadline; 1 ready, 0 timed out, -1 error */
static int check_wait(int fd, short events, long long deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};

    for (;;) {
        long long left = deadline - check_now_ms();
        int rc;

        if (left <= 0)
            return 0;
        rc = poll(&pfd, 1, (int) left);
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* check_loopback - a wildcard listen address is probed on loopback */
static void check_loopback(LISTEN_ADDR *la)
{
    if (la->is_unix)
        return;
    if (la->host[0] == 0 || strcmp(la->host, "*") == 0 || strcmp(la->host, "0.0.0.0") == 0)
        snprintf(la->host, sizeof(la->host), "127.0.0.1");
    else if (strcmp(la->host, "::") == 0)
        snprintf(la->host, sizeof(la->host), "::1");
}

/* check_connect_sa - non-blocking connect to one address; fd or -1 with err */
static int check_connect_sa(const struct sockaddr *sa, socklen_t len, long long deadline,
                            char *err, size_t errlen)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int soerr = 0;
    socklen_t sl = sizeof(soerr);

    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, sa, len) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    switch (check_wait(fd, POLLOUT, deadline)) {
    case 1:
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
            return fd;
        snprintf(err, errlen, "%s", strerror(soerr ? soerr : errno));
        break;
    case 0:
        snprintf(err, errlen, "connect timed out");
        break;
    default:
        snprintf(err, errlen, "poll: %s", strerror(errno));
        break;
    }
    close(fd);
    return -1;
}

/* check_connect - connect to a listener within the deadline; fd or -1 with err */
static int check_connect(const LISTEN_ADDR *la, long long deadline, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    int fd = -1, rc;

    if (la->is_unix) {
        struct sockaddr_un sun;

        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", la->path);
        return check_connect_sa((struct sockaddr *) &sun, sizeof(sun), deadline, err, errlen);
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    /* A name rather than an address: resolved as the daemon did (the alarm bounds it). */
    if ((rc = getaddrinfo(la->host, la->port, &hints, &res)) == EAI_NONAME) {
        hints.ai_flags = AI_NUMERICSERV;
        rc = getaddrinfo(la->host, la->port, &hints, &res);
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s", gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = check_connect_sa(ai->ai_addr, ai->ai_addrlen, deadline, err, errlen);
    freeaddrinfo(res);
    return fd;
}

/* check_send - write all of buf before the deadline; 0 or -1 with err */
static int check_send(int fd, const char *buf, size_t len, long long deadline, char *err, size_t errlen)
{
    while (len > 0) {
        ssize_t n;

        if (check_wait(fd, POLLOUT, deadline) <= 0) {
            snprintf(err, errlen, "sending timed out");
            return -1;
        }
        if ((n = send(fd, buf, len, MSG_NOSIGNAL)) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            snprintf(err, errlen, "send: %s", strerror(errno));
            return -1;
        }
        buf += n;
        len -= (size_t) n;
    }
    return 0;
}

/*
 * check_recv - append what arrives to buf (*len so far, size in all)
 * once; 1 got bytes, 0 the peer closed, -1 timeout or error (err set)
 */
static int check_recv(int fd, char *buf, size_t *len, size_t size, long long deadline, char *err, size_t errlen)
{
    ssize_t n;

    for (;;) {
        if (*len + 1 >= size) {
            snprintf(err, errlen, "reply too long");
            return -1;
        }
        if (check_wait(fd, POLLIN, deadline) <= 0) {
            snprintf(err, errlen, "no answer within %g s", check_timeout_ms / 1000.0);
            return -1;
        }
        if ((n = recv(fd, buf + *len, size - 1 - *len, 0)) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            snprintf(err, errlen, "recv: %s", strerror(errno));
            return -1;
        }
        *len += (size_t) n;
        buf[*len] = 0;
        return n > 0;
    }
}

/* check_start_ns - monotonic nanoseconds */
static long long check_start_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* check_elapsed - "0.001234s;;;0": the time since start_ns, for performance data */
static void check_elapsed(long long start_ns, char *buf, size_t size)
{
    snprintf(buf, size, "%.6fs;;;0", (double) (check_start_ns() - start_ns) / 1e9);
}

/* check_lookupd - one socketmap request to lookupd's first socketmap listener */
static void check_lookupd(CHECK_RUN *cr, const char *domain)
{
    LISTEN_ADDR la[LISTEN_MAX];
    char err[512], where[400], req[600], out[700], buf[4200], perf[64];
    long long deadline = check_now_ms() + cr->timeout_ms;
    long long t0 = check_start_ns();
    const char *data, *why;
    size_t len = 0, dlen, used, olen;
    int fd, rc, n;

    if ((n = listen_parse_list(var_lookupd_socketmap, la, LISTEN_MAX, err, sizeof(err))) <= 0) {
        check_say(cr, 3, "lookupd: no socketmap listener to probe%s%s", n < 0 ? ": " : "", n < 0 ? err : "");
        return;
    }
    check_loopback(&la[0]);
    listen_format(&la[0], where, sizeof(where));
    if ((fd = check_connect(&la[0], deadline, err, sizeof(err))) < 0) {
        check_say(cr, 2, "lookupd: %s: %s", where, err);
        return;
    }
    snprintf(req, sizeof(req), "domains %s", domain);
    olen = netstring_encode(out, sizeof(out), req, strlen(req));
    if (check_send(fd, out, olen, deadline, err, sizeof(err)) < 0) {
        check_say(cr, 2, "lookupd: %s: %s", where, err);
        close(fd);
        return;
    }
    for (;;) {
        rc = check_recv(fd, buf, &len, sizeof(buf), deadline, err, sizeof(err));
        if (rc <= 0) {
            if (rc == 0)
                snprintf(err, sizeof(err), "closed the connection without an answer");
            check_say(cr, 2, "lookupd: %s: %s", where, err);
            close(fd);
            return;
        }
        rc = netstring_decode(buf, len, sizeof(buf), &data, &dlen, &used, &why);
        if (rc == NETSTRING_OK)
            break;
        if (rc == NETSTRING_BAD) {
            check_say(cr, 2, "lookupd: %s: malformed answer (%s)", where, why);
            close(fd);
            return;
        }
    }
    close(fd);
    check_elapsed(t0, perf, sizeof(perf));
    check_perf(cr, "lookupd_time", perf);
    if ((dlen >= 3 && memcmp(data, "OK ", 3) == 0) || (dlen >= 8 && memcmp(data, "NOTFOUND", 8) == 0))
        check_say(cr, 0, "lookupd answers");
    else
        check_say(cr, 2, "lookupd: %s answers \"%.*s\" for domains %s", where,
                  (int) (dlen > 200 ? 200 : dlen), data, domain);
}

/* check_smtp_reply - the last line of a complete SMTP reply in buf, or NULL */
static const char *check_smtp_reply(const char *buf)
{
    const char *line = buf;

    for (;;) {
        const char *nl = strchr(line, '\n');

        if (nl == NULL)
            return NULL;
        if (nl - line >= 4 && line[3] == ' ')
            return line;
        if (nl - line >= 3 && nl - line < 5 && (line[3] == '\r' || line[3] == '\n'))
            return line;                /* "220" alone */
        line = nl + 1;
    }
}

/* check_smtpd - smtpd's first listen address must greet with 220 */
static void check_smtpd(CHECK_RUN *cr)
{
    LISTEN_ADDR la;
    char *first, *sp, err[512], where[400], buf[4096], perf[64];
    long long deadline = check_now_ms() + cr->timeout_ms;
    long long t0 = check_start_ns();
    const char *last;
    size_t len = 0;
    int fd, rc;

    first = xstrdup(var_smtpd_listen ? var_smtpd_listen : "");
    first[strcspn(first, "\n")] = 0;
    if ((sp = strpbrk(first, " \t")) != NULL)
        *sp = 0;
    if (*first == 0 || listen_parse(first, &la, err, sizeof(err)) < 0 || la.is_unix) {
        check_say(cr, 3, "smtpd: no listen address to probe");
        free(first);
        return;
    }
    free(first);
    check_loopback(&la);
    snprintf(where, sizeof(where), "%s%s%s:%s", strchr(la.host, ':') ? "[" : "", la.host,
             strchr(la.host, ':') ? "]" : "", la.port);
    if ((fd = check_connect(&la, deadline, err, sizeof(err))) < 0) {
        check_say(cr, 2, "smtpd: %s: %s", where, err);
        return;
    }
    while ((last = check_smtp_reply(len ? buf : "")) == NULL) {
        if ((rc = check_recv(fd, buf, &len, sizeof(buf), deadline, err, sizeof(err))) <= 0) {
            if (rc == 0)
                snprintf(err, sizeof(err), "closed the connection without a greeting");
            check_say(cr, 2, "smtpd: %s: %s", where, err);
            close(fd);
            return;
        }
    }
    check_elapsed(t0, perf, sizeof(perf));
    if (strncmp(last, "220", 3) != 0) {
        check_say(cr, 2, "smtpd: %s greets with \"%.*s\"", where, (int) strcspn(last, "\r\n"), last);
        close(fd);
        return;
    }
    /* A polite goodbye; its answer is not waited for beyond the deadline. */
    if (check_send(fd, "QUIT\r\n", 6, deadline, err, sizeof(err)) == 0) {
        len = 0;
        buf[0] = 0;
        while (check_smtp_reply(buf) == NULL
               && check_recv(fd, buf, &len, sizeof(buf), deadline, err, sizeof(err)) > 0)
            ;
    }
    close(fd);
    check_perf(cr, "smtpd_time", perf);
    check_say(cr, 0, "smtpd answers");
}

/* Sources the store holds, as the walk gives them. */
typedef struct check_source {
    char *name;
    long long last_success;
    char *outcome;
    int guard_refused;
    int configured;                     /* a [source NAME] of the file */
} CHECK_SOURCE;

typedef struct check_sources {
    CHECK_SOURCE s[CHECK_SOURCE_MAX];
    int n;
} CHECK_SOURCES;

/* check_source_find - a source by name, added when new (NULL when full) */
static CHECK_SOURCE *check_source_find(CHECK_SOURCES *cs, const char *name)
{
    for (int i = 0; i < cs->n; i++)
        if (strcmp(cs->s[i].name, name) == 0)
            return &cs->s[i];
    if (cs->n >= CHECK_SOURCE_MAX)
        return NULL;
    memset(&cs->s[cs->n], 0, sizeof(cs->s[0]));
    cs->s[cs->n].name = xstrdup(name);
    cs->s[cs->n].outcome = xstrdup("");
    return &cs->s[cs->n++];
}

/* check_source_cb - the store's directory sources (import and static entries never sync) */
static int check_source_cb(const STORE_SOURCE_INFO *info, void *ctx)
{
    CHECK_SOURCE *s;

    if (strcmp(info->type, "static") == 0 || strcmp(info->type, "import") == 0)
        return 0;
    if ((s = check_source_find(ctx, info->name)) == NULL)
        return 0;
    s->last_success = info->last_success;
    free(s->outcome);
    s->outcome = xstrdup(info->last_outcome);
    s->guard_refused = info->guard_refused;
    return 0;
}

/* check_age_text - "3h12m" style */
static const char *check_age_text(long long s, char *buf, size_t size)
{
    if (s >= 86400)
        snprintf(buf, size, "%lldd%lldh", s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(buf, size, "%lldh%lldm", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(buf, size, "%lldm%llds", s / 60, s % 60);
    else
        snprintf(buf, size, "%llds", s);
    return buf;
}

/* check_sync - every source's last applied sync, and shrink guard refusals */
static void check_sync(CHECK_RUN *cr, STORE *st)
{
    CHECK_SOURCES cs;
    long long now = (long long) time(NULL);
    char age[32], w[32], c[32], perf[128], label[160];
    int fresh = 0;

    cs.n = 0;
    for (int i = 0; i < cr->nsources; i++) {
        CHECK_SOURCE *s = check_source_find(&cs, cr->sources[i]);

        if (s != NULL)
            s->configured = 1;
    }
    if (store_runs_walk(st, check_source_cb, &cs) < 0) {
        check_say(cr, 2, "store: reading the sync state: %s", store_error(st));
        goto out;
    }
    for (int i = 0; i < cs.n; i++) {
        CHECK_SOURCE *s = &cs.s[i];
        long long a = now - s->last_success;

        /*
         * A source taken out of the file is pulled no more, and its
         * addresses stay valid until it is removed: say so once, rather
         * than judge an age that will only grow. (A file without any
         * [source NAME], one of its own for a daemon, judges them all.)
         */
        if (!s->configured && cr->nsources > 0) {
            check_say(cr, 1, "source %s is in the store but not in the configuration: its addresses "
                      "are still valid; rcptgate source del %s removes them", s->name, s->name);
            continue;
        }
        if (s->guard_refused && strncmp(s->outcome, "refused", 7) == 0)
            check_say(cr, 2, "source %s: the shrink guard refused the last sync (%s)", s->name, s->outcome);
        else if (s->guard_refused)
            check_say(cr, 2, "source %s: the shrink guard refused the last %s sync, and none was applied since",
                      s->name, s->guard_refused == 2 ? "incremental" : "full");
        if (s->last_success <= 0) {
            check_say(cr, 2, "source %s: never synced", s->name);
            continue;
        }
        if (a < 0)
            a = 0;
        snprintf(label, sizeof(label), "sync_age_%s", s->name);
        snprintf(perf, sizeof(perf), "%llds;%lld;%lld;0", a, cr->warn_s, cr->crit_s);
        check_perf(cr, label, perf);
        if (a > cr->crit_s)
            check_say(cr, 2, "source %s: last sync %s ago (critical %s)", s->name,
                      check_age_text(a, age, sizeof(age)), check_age_text(cr->crit_s, c, sizeof(c)));
        else if (a > cr->warn_s)
            check_say(cr, 1, "source %s: last sync %s ago (warning %s)", s->name,
                      check_age_text(a, age, sizeof(age)), check_age_text(cr->warn_s, w, sizeof(w)));
        else
            fresh++;
    }
    if (fresh > 0)
        check_say(cr, 0, "%d source%s synced", fresh, fresh == 1 ? "" : "s");
out:
    for (int i = 0; i < cs.n; i++) {
        free(cs.s[i].name);
        free(cs.s[i].outcome);
    }
}

/* What a walk of a queue directory found. */
typedef struct check_queue_count {
    long long n;
    long long oldest;                   /* arrival from the id, 0 none */
} CHECK_QUEUE_COUNT;

/* check_queue_cb - count a message and keep the oldest arrival its id tells */
static int check_queue_cb(void *arg, const char *id, long long mtime, long long size)
{
    CHECK_QUEUE_COUNT *qc = arg;
    long long t = spool_id_time(id);

    (void) size;
    if (t <= 0)
        t = mtime;                      /* an id of another shape: its file's time will do */
    qc->n++;
    if (qc->oldest == 0 || t < qc->oldest)
        qc->oldest = t;
    return 0;
}

/* check_queue - smtpd's queue: counts and the oldest deferred message's age */
static void check_queue(CHECK_RUN *cr, long long warn_s)
{
    CHECK_QUEUE_COUNT def = {0, 0}, hold = {0, 0};
    char err[1200], perf[96], age[32], w[32];
    struct stat st;
    long long a = 0, corrupt;
    SPOOL *sp;

    if (stat(var_smtpd_queue_dir, &st) < 0 && errno == ENOENT) {
        if (strcmp(var_smtpd_relay_mode, "proxy") != 0)
            check_say(cr, 1, "queue: %s does not exist (relay_mode = %s): smtpd cannot queue", var_smtpd_queue_dir,
                      var_smtpd_relay_mode);
        return;
    }
    if ((sp = spool_open(var_smtpd_queue_dir, 0, err, sizeof(err))) == NULL) {
        check_say(cr, 3, "queue: %s%s", err, strstr(err, "Permission denied") ? " (run the check as root or "
                  "smtpd's user, or with --no-queue)" : "");
        return;
    }
    if (spool_scan(sp, SPOOL_DEFERRED, check_queue_cb, &def) < 0
        || spool_scan(sp, SPOOL_HOLD, check_queue_cb, &hold) < 0) {
        check_say(cr, 2, "queue: cannot read %s: %s", var_smtpd_queue_dir, strerror(errno));
        spool_close(sp);
        return;
    }
    corrupt = spool_corrupt_count(sp);
    spool_close(sp);
    /* smtpd set them aside: nothing delivers them, a person must look. */
    if (corrupt > 0)
        check_say(cr, 1, "queue: %lld damaged file%s set aside in %s/%s/ (see smtpd's log)", corrupt,
                  corrupt == 1 ? "" : "s", var_smtpd_queue_dir, SPOOL_CORRUPT);
    if (def.oldest > 0 && (a = (long long) time(NULL) - def.oldest) < 0)
        a = 0;
    snprintf(perf, sizeof(perf), "%lld;;;0", def.n);
    check_perf(cr, "queue_deferred", perf);
    snprintf(perf, sizeof(perf), "%lld;;;0", hold.n);
    check_perf(cr, "queue_hold", perf);
    snprintf(perf, sizeof(perf), "%llds;%lld;;0", a, warn_s);
    check_perf(cr, "queue_oldest_age", perf);
    if (def.n > 0 && a > warn_s)
        check_say(cr, 1, "queue: %lld deferred, the oldest %s old (warning %s), %lld held", def.n,
                  check_age_text(a, age, sizeof(age)), check_age_text(warn_s, w, sizeof(w)), hold.n);
    else if (def.n > 0)
        check_say(cr, 0, "queue: %lld deferred, the oldest %s old, %lld held", def.n,
                  check_age_text(a, age, sizeof(age)), hold.n);
    else
        check_say(cr, 0, "queue: none deferred, %lld held", hold.n);
}

/* check_domain_cb - the first domain of the store, for the socketmap probe */
static int check_domain_cb(const STORE_DOMAIN *d, void *ctx)
{
    snprintf(ctx, 256, "%s", d->name);
    return 1;
}

/* check_alarm - the whole run took too long: CRITICAL, now */
static void check_alarm(int sig)
{
    (void) sig;
    if (write(STDOUT_FILENO, check_alarm_line, strlen(check_alarm_line)) < 0)
        _exit(2);
    _exit(2);
}

/* check_time_opt - an AGE option value in seconds, or -1 */
static long long check_time_opt(const char *v)
{
    long long ms = cfg_parse_time(v);

    return ms < 0 ? -1 : ms / 1000;
}

/* check_unknown - UNKNOWN with a reason (bad usage) */
static int check_unknown(const char *why)
{
    printf("RCPTGATE UNKNOWN - %s\n", why);
    return 3;
}

/* cmd_check_config_failed - the status line when rcptgate.conf does not load */
int cmd_check_config_failed(const char *path)
{
    char why[1200];

    snprintf(why, sizeof(why), "%s: configuration errors (rcptgate -n -c %s says which)", path, path);
    return check_unknown(why);
}

/* cmd_check - rcptgate check */
int cmd_check(int argc, char **argv)
{
    CHECK_RUN cr;
    const char *domain = NULL;
    char dombuf[256] = "", err[1024], perf[96];
    int no_lookupd = 0, no_smtpd = 0, no_sync = 0, no_queue = 0, i;
    long long warn = -2, crit = -2, queue_warn = CHECK_QUEUE_WARN, t;
    STORE *st;
    STORE_STATS ss;

    memset(&cr, 0, sizeof(cr));
    cr.timeout_ms = 10000;
    for (i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(o, "--no-lookupd") == 0) {
            no_lookupd = 1;
        } else if (strcmp(o, "--no-smtpd") == 0) {
            no_smtpd = 1;
        } else if (strcmp(o, "--no-sync") == 0) {
            no_sync = 1;
        } else if (strcmp(o, "--no-queue") == 0) {
            no_queue = 1;
        } else if (v != NULL && strcmp(o, "--queue-warning") == 0) {
            if ((queue_warn = check_time_opt(v)) < 0)
                return check_unknown("--queue-warning: expected an age such as 1h");
            i++;
        } else if (v != NULL && (strcmp(o, "-w") == 0 || strcmp(o, "--sync-warning") == 0)) {
            if ((warn = check_time_opt(v)) < 0)
                return check_unknown("-w: expected an age such as 2h");
            i++;
        } else if (v != NULL && (strcmp(o, "-c") == 0 || strcmp(o, "--sync-critical") == 0)) {
            if ((crit = check_time_opt(v)) < 0)
                return check_unknown("-c: expected an age such as 1d");
            i++;
        } else if (v != NULL && (strcmp(o, "-t") == 0 || strcmp(o, "--timeout") == 0)) {
            if ((t = cfg_parse_time(v)) <= 0 || t > 3600000)
                return check_unknown("-t: expected a timeout such as 10s");
            cr.timeout_ms = (int) t;
            i++;
        } else if (v != NULL && (strcmp(o, "-d") == 0 || strcmp(o, "--domain") == 0)) {
            domain = v;
            i++;
        } else {
            snprintf(err, sizeof(err), "usage: rcptgate check [-w AGE] [-c AGE] [-t TIMEOUT] "
                     "[-d DOMAIN] [--no-lookupd] [--no-smtpd] [--no-sync] [--queue-warning AGE] [--no-queue] "
                     "(at \"%.100s\")", o);
            return check_unknown(err);
        }
    }
    /* Defaults: with [store] max_age, lookupd turns stale data into TEMP at max_age. */
    if (crit == -2)
        crit = var_store_max_age_ms > 0 ? var_store_max_age_ms / 1000 : 86400;
    if (warn == -2)
        warn = var_store_max_age_ms > 0 ? crit / 2 : (crit < 7200 ? crit / 2 : 7200);
    if (warn > crit)
        return check_unknown("the warning age is above the critical age");
    check_timeout_ms = cr.timeout_ms;
    cr.warn_s = warn;
    cr.crit_s = crit;

    /* Every probe has its deadline; this bounds what has none (DNS, a stuck disk). */
    snprintf(check_alarm_line, sizeof(check_alarm_line),
             "RCPTGATE CRITICAL - the check did not finish within %d s\n", 3 * cr.timeout_ms / 1000 + 5);
    signal(SIGALRM, check_alarm);
    alarm((unsigned) (3 * cr.timeout_ms / 1000 + 5));

    /*
     * What rcptgate.conf sets up (it was loaded already): lookupd even with
     * no key in its section (the package runs it with its defaults), smtpd
     * with one (the packaged file has [smtpd] with every key commented out).
     */
    cr.has_lookupd = cfg_section_listed("lookupd");
    cr.has_smtpd = cfg_section_seen("smtpd");
    cr.nsources = cfg_family_seen("source", cr.sources, CHECK_SOURCE_MAX);
    if (cr.nsources > CHECK_SOURCE_MAX)
        cr.nsources = CHECK_SOURCE_MAX;

    /* The store, read-only, as lookupd opens it (a check migrates nothing). */
    if ((st = store_open(var_store_path, STORE_READONLY, var_store_busy_ms, err, sizeof(err))) == NULL) {
        check_say(&cr, 2, "%s", err);       /* "store PATH: why" */
    } else if (store_stats(st, &ss) < 0) {
        check_say(&cr, 2, "store %s: %s", var_store_path, store_error(st));
    } else {
        snprintf(perf, sizeof(perf), "%lld;;;0", ss.recipients);
        check_perf(&cr, "recipients", perf);
        if (!no_sync)
            check_sync(&cr, st);
        if (domain == NULL && store_domain_walk(st, check_domain_cb, dombuf) == 0 && dombuf[0])
            domain = dombuf;
        check_say(&cr, 0, "store readable (%lld recipients)", ss.recipients);
    }
    store_close(st);
    if (domain == NULL)
        domain = "rcptgate-check.invalid";

    if (cr.has_lookupd && !no_lookupd)
        check_lookupd(&cr, domain);
    if (cr.has_smtpd && !no_smtpd)
        check_smtpd(&cr);
    if (cr.has_smtpd && !no_queue)
        check_queue(&cr, queue_warn);
    alarm(0);

    /* Worst findings first, then the rest; performance data after the bar. */
    printf("RCPTGATE %s -", check_state_name[cr.state]);
    for (int pass = 0, first = 1; pass < 4; pass++) {
        static const int order[] = {2, 1, 3, 0};

        for (int m = 0; m < cr.nmsg; m++) {
            if (cr.msg[m].state != order[pass])
                continue;
            printf("%s %s", first ? "" : ",", cr.msg[m].text);
            first = 0;
        }
    }
    if (cr.perf[0])
        printf(" | %s", cr.perf);
    putchar('\n');
    fflush(stdout);
    return cr.state;
}
