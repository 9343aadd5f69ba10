/*
 * smtpd_qmgr.c - rcptgate-smtpd's queue manager: delivers what the spool holds
 *
 * SYNOPSIS
 *   smtpd_qmgr_init(err, errlen);          after the privilege drop, base ready
 *   smtpd_qmgr_accepting(why, whylen);     a session asks before it queues
 *   smtpd_qmgr_queued(id, next_try);       a session committed a message
 *   smtpd_qmgr_counts(&deferred, &hold, &oldest);
 *   smtpd_qmgr_reload(); smtpd_qmgr_stop();
 *
 * DESCRIPTION
 *   The spool (lib/spool.c) is opened when relay_mode is not "proxy", or
 *   when queue_directory already exists (mail queued before a switch to
 *   proxy is still delivered). Without one, a session that would queue
 *   hears 452 4.3.1 and the next hop's own verdict stays the rule.
 *
 *   It runs in smtpd's event loop, as Postfix's qmgr and smtp would in
 *   one: deferred/ is scanned one entry at a time (spool_scan) at start
 *   (every message left there is recovered), every queue_run_delay, when
 *   `rcptgate queue flush` writes to the trigger FIFO, and when the next
 *   try of a message it knows of is due. A due message (its file's mtime
 *   is its next try) is loaded, at most queue_active_limit at once; the
 *   rest wait for the next scan, so the whole queue is never in memory.
 *
 *   A message's recipients that are still to do are grouped by next hop,
 *   found as a session finds it (the domain's own next hop, else
 *   default_nexthop). Each group is one SMTP transaction through
 *   smtp_relay.c (failover across the hops, STARTTLS, XFORWARD of the
 *   stored client), at most destination_concurrency_limit per next hop
 *   at once; the others wait in that next hop's line. The body is read
 *   from the spool file with pread() in pieces while the relay's backlog
 *   is small, so a large message costs little memory. A connection whose
 *   transaction ended is kept for QMGR_IDLE_MS: the next message to that
 *   next hop goes over it after an RSET (smtp_relay_reuse), at most
 *   QMGR_REUSE_MAX times, logged as conn_use=N. Reports to senders
 *   outside our domains go to default_nexthop, else to their MX.
 *
 *   Each recipient's answer: 2xx marks it done on disk at once; 4xx or a
 *   failure to connect leaves it to do, with its reason; 5xx returns it
 *   to the sender (dsn.c) and marks it failed, the report first so a
 *   crash between the two gives two reports rather than none. Once every
 *   transaction of a try has ended: nothing left to do removes the
 *   message; otherwise it is tried again after a backoff that doubles
 *   with the tries (minimal_backoff_time up to maximal_backoff_time), or,
 *   past maximal_queue_lifetime (bounce_queue_lifetime for a report we
 *   made), returned to the sender. delay_warning_time sends one delay
 *   report. A report is never made for a report or the null sender.
 *
 *   SIGTERM cuts every transaction and the spool keeps the message: one
 *   cut before its final dot is discarded downstream; one cut while it
 *   waits for the answer to its dot may have been delivered, and is
 *   delivered again after the restart. Delivery is at least once, never
 *   zero times.
 *
 * DIAGNOSTICS
 *   Postfix's log lines (qmgr, smtp, bounce), so pflogsumm counts them:
 *     ID: from=<s>, size=N, nrcpt=N (queue active)
 *     ID: to=<r>, relay=h[a]:p, delay=D, delays=a/b/c/d, dsn=X.Y.Z, status=sent|deferred|bounced (why)
 *     ID: sender non-delivery notification: NEWID
 *     ID: from=<s>, status=expired, returned to sender
 *     ID: from=<s>, status=expired, dropped   (no report: NOTIFY, a report, the null sender)
 *     ID: deleted while being delivered: no report to the sender
 *     ID: removed
 *   A spool that cannot be opened or scanned is a warning.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "check.h"
#include "dsn.h"
#include "log.h"
#include "params.h"
#include "params_smtpd.h"
#include "spool.h"
#include "xalloc.h"
#include "smtpd.h"
#include "smtpd_log.h"
#include "smtpd_qmgr.h"
#include "smtp_relay.h"
#include "smtp_session.h"

#define QMGR_CHUNK      65536           /* body bytes read from the spool at once */
#define QMGR_BACKLOG    (256 * 1024)    /* wait for the relay to drain above this */
#define QMGR_HASH       4096            /* buckets of the active messages' ids */
#define QMGR_SOON       256             /* ids just queued, activated from the loop */
#define QMGR_IDLE_MS    2000            /* a connection kept for the next message (Postfix's smtp_connection_cache_time_limit) */
#define QMGR_REUSE_MAX  100             /* transactions on one connection (Postfix's smtp_connection_reuse_count_limit) */

/* A recipient's outcome in this try. */
enum qmgr_result { QR_NONE = 0, QR_SENT, QR_DEFER, QR_FAIL, QR_RELAYED /* sent, a "relayed" notice due */ };

typedef struct qmgr_msg QMGR_MSG;
typedef struct qmgr_dest QMGR_DEST;
typedef struct qmgr_dlv QMGR_DLV;

/* A connection whose transaction ended, kept a moment for the next one to the same next hop. */
typedef struct qmgr_idle {
    SMTP_RELAY *relay;
    int uses;                   /* transactions it carried */
    struct event *timer;        /* QUIT after QMGR_IDLE_MS unused */
    QMGR_DEST *dest;
    struct qmgr_idle *next;
} QMGR_IDLE;

/* One next hop: its deliveries running and waiting, its idle connections. */
struct qmgr_dest {
    char *nexthop;              /* transport syntax, as smtp_relay_open takes it */
    int mx;                     /* a bare domain looked up by MX (outside our domains) */
    int active;
    QMGR_DLV *wait_head, **wait_tail;
    QMGR_IDLE *idle;
    QMGR_DEST *next;
    /*
     * Dead until then (wall clock ms): no hop could be reached, so what
     * waits for it is deferred at once with dead_why, not each after its
     * own connect timeouts, which held the active slots of every other
     * next hop (Postfix's dead destination, for minimal_backoff_time).
     */
    long long dead_until;
    char dead_why[400];
    int running;                /* qmgr_dest_run's loop is on (no re-entry, no gc) */
};

/* The callback argument of one RCPT. */
typedef struct qmgr_rarg {
    QMGR_DLV *d;
    size_t k;                   /* index into d->idx */
} QMGR_RARG;

/* One transaction: a message's recipients for one next hop. */
struct qmgr_dlv {
    QMGR_MSG *m;
    QMGR_DEST *dest;
    size_t *idx;                /* the message's recipient indexes */
    size_t n, cap;              /* used and allocated (idx, accepted, rargs) */
    int *accepted;              /* per k: RCPT got 2xx */
    size_t nacc, nreplies;
    QMGR_RARG *rargs;
    SMTP_RELAY *relay;
    int uses;                   /* this transaction's place on its connection (conn_use=) */
    int failed;                 /* the relay lost the transaction: not worth keeping */
    long long start_ms, conn_ms;
    long long sent;             /* body bytes handed to the relay */
    QMGR_DLV *next;             /* in the destination's line, or the message's list */
    QMGR_DLV *mnext;
};

/* One message being tried. */
struct qmgr_msg {
    char id[SPOOL_ID_LEN];
    SPOOL_ENV env;
    int fd;                     /* the spool file, at the message (pread) */
    long long active_ms;
    enum qmgr_result *result;   /* per recipient */
    int pending;                /* transactions not yet ended */
    QMGR_DLV *dlvs;
    QMGR_MSG *hnext;            /* hash chain */
    QMGR_MSG *prev, *next;      /* all active messages */
};

SPOOL *smtpd_spool;

static int qmgr_stopping;               /* SIGTERM: nothing new starts */
static int qmgr_broken;                 /* the last scan failed */
static int qmgr_unwritable;             /* a record of a delivery failed: no delivery until writes work */
static struct event *qmgr_scan_ev;      /* the next scan */
static struct event *qmgr_trigger_ev;   /* the FIFO */
static long long qmgr_scan_at_ms;       /* when qmgr_scan_ev fires, 0 not armed */
static int qmgr_more;                   /* the last scan left due messages behind */
static long long qmgr_deferred;         /* deferred/: the last scan's count, kept up to date since */
static long long qmgr_hold;             /* hold/ at the last scan */
static long long qmgr_oldest;           /* the oldest arrival seen by the last scan */
static int qmgr_nactive;
static QMGR_MSG *qmgr_active;
static QMGR_MSG *qmgr_hash[QMGR_HASH];
static QMGR_DEST *qmgr_dests;
static char qmgr_soon[QMGR_SOON][SPOOL_ID_LEN];     /* queued and due: activated from the loop */
static int qmgr_nsoon;
static struct event *qmgr_soon_ev;

static void qmgr_dlv_start(QMGR_DLV *d);
static void qmgr_dlv_dead(QMGR_DLV *d);
static void qmgr_msg_finish(QMGR_MSG *m);
static void qmgr_activate(const char *id);
static int qmgr_report(QMGR_MSG *m, const size_t *idx, size_t n, int kind);
static int qmgr_deleted(const QMGR_MSG *m);
static int qmgr_on_hold(const QMGR_MSG *m);

/* qmgr_now_ms - wall clock in milliseconds */
static long long qmgr_now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* qmgr_wanted - is a spool needed: a queueing mode, or a queue left from before */
static int qmgr_wanted(void)
{
    struct stat st;

    if (var_smtpd_relay_mode != NULL && strcmp(var_smtpd_relay_mode, "proxy") != 0)
        return 1;
    return var_smtpd_queue_dir != NULL && *var_smtpd_queue_dir && stat(var_smtpd_queue_dir, &st) == 0;
}

/* qmgr_hash_of - bucket of an id */
static unsigned qmgr_hash_of(const char *id)
{
    unsigned h = 5381;

    while (*id)
        h = h * 33 + (unsigned char) *id++;
    return h % QMGR_HASH;
}

/* qmgr_find - the active message id, NULL */
static QMGR_MSG *qmgr_find(const char *id)
{
    for (QMGR_MSG *m = qmgr_hash[qmgr_hash_of(id)]; m; m = m->hnext)
        if (strcmp(m->id, id) == 0)
            return m;
    return NULL;
}

/*
 * Messages a session has committed and still holds. In proxy-then-queue
 * a message with recipients that only the spool has is committed before
 * the next hop gets the dot, and the session marks the next hop's
 * recipients done when its reply comes. Until then the file's time keeps
 * it from the queue runs, but `rcptgate queue flush` or `release` set
 * that time to now: the queue manager must still leave it alone, or it
 * delivers again what the next hop is taking. Few at a time (one per
 * session waiting on a dot), so a list is enough.
 */
static char (*qmgr_held)[SPOOL_ID_LEN];
static size_t qmgr_nheld, qmgr_held_size;

/* qmgr_is_held - does a session hold id? */
static int qmgr_is_held(const char *id)
{
    for (size_t i = 0; i < qmgr_nheld; i++)
        if (strcmp(qmgr_held[i], id) == 0)
            return 1;
    return 0;
}

/* smtpd_qmgr_session_hold - a session committed id and still holds it: no delivery of it */
void smtpd_qmgr_session_hold(const char *id)
{
    if (qmgr_is_held(id))
        return;
    if (qmgr_nheld == qmgr_held_size) {
        qmgr_held_size = qmgr_held_size ? 2 * qmgr_held_size : 16;
        qmgr_held = xrealloc(qmgr_held, qmgr_held_size * sizeof(*qmgr_held));
    }
    snprintf(qmgr_held[qmgr_nheld++], SPOOL_ID_LEN, "%s", id);
}

/* smtpd_qmgr_session_release - the session is done with id: the queue manager's again */
void smtpd_qmgr_session_release(const char *id)
{
    for (size_t i = 0; i < qmgr_nheld; i++)
        if (strcmp(qmgr_held[i], id) == 0) {
            qmgr_nheld--;
            if (i < qmgr_nheld)
                memcpy(qmgr_held[i], qmgr_held[qmgr_nheld], SPOOL_ID_LEN);
            return;
        }
}

/*
 * When what a delivery did cannot be written (a read-only remount, a disk
 * error, lost permissions), the file stays as it was: due, its
 * recipients to do. Left alone, the queue runs would send it again and
 * again. So the message is kept out for maximal_backoff_time in memory
 * (qmgr_nb: it goes out again at most once for what was not recorded),
 * and while the queue directory refuses a probe write no delivery starts
 * and new mail hears 452 (qmgr_unwritable, probed at each scan).
 */
#define QMGR_NB_MAX 1024
static struct {
    char id[SPOOL_ID_LEN];
    long long until_ms;
} qmgr_nb[QMGR_NB_MAX];
static size_t qmgr_nnb, qmgr_nb_next;

/* qmgr_nb_until - until when id is kept out; 0 if it is not */
static long long qmgr_nb_until(const char *id)
{
    long long now = qmgr_now_ms();

    for (size_t i = 0; i < qmgr_nnb; i++)
        if (qmgr_nb[i].until_ms > now && strcmp(qmgr_nb[i].id, id) == 0)
            return qmgr_nb[i].until_ms;
    return 0;
}

/* qmgr_keep_out - id stays out of deliveries for maximal_backoff_time (one slot per id) */
static void qmgr_keep_out(const char *id)
{
    long long now = qmgr_now_ms();
    size_t slot = QMGR_NB_MAX;

    for (size_t i = 0; i < qmgr_nnb; i++) {
        if (strcmp(qmgr_nb[i].id, id) == 0) {
            slot = i;
            break;
        }
        if (slot == QMGR_NB_MAX && qmgr_nb[i].until_ms <= now)
            slot = i;           /* an expired one, unless id has its own further on */
    }
    if (slot == QMGR_NB_MAX)
        slot = qmgr_nnb < QMGR_NB_MAX ? qmgr_nnb++ : qmgr_nb_next++ % QMGR_NB_MAX;
    snprintf(qmgr_nb[slot].id, SPOOL_ID_LEN, "%s", id);
    qmgr_nb[slot].until_ms = now + var_smtpd_max_backoff_ms;
}

/*
 * qmgr_unrecorded - writing what happened to id failed (errno): with
 * keep_out (a delivery it would repeat) keep it out; and stop delivering
 * if the spool refuses writes. Out of descriptors or memory is a passing
 * shortage of ours, not the spool's: it does not stop the queue.
 */
static void qmgr_unrecorded(const char *id, int keep_out)
{
    int err = errno;

    if (keep_out)
        qmgr_keep_out(id);
    if (!qmgr_unwritable && spool_writable(smtpd_spool) < 0 && errno != EMFILE && errno != ENFILE
        && errno != ENOMEM) {
        log_err("queue %s: cannot be written (%s): no delivery starts and new mail hears 452 "
                "until it can", spool_dir(smtpd_spool), strerror(errno));
        qmgr_unwritable = 1;
    }
    errno = err;
}

/* qmgr_writable_again - at each scan: does the spool take writes again? */
static void qmgr_writable_again(void)
{
    if (!qmgr_unwritable || spool_writable(smtpd_spool) < 0)
        return;
    log_info("queue %s: takes writes again; deliveries go on", spool_dir(smtpd_spool));
    qmgr_unwritable = 0;
}

/* ---------------------------------------------------------------- scheduling */

/* qmgr_wake_at - scan at when_ms unless one comes sooner */
static void qmgr_wake_at(long long when_ms)
{
    long long now = qmgr_now_ms();
    struct timeval tv;

    if (qmgr_scan_ev == NULL || qmgr_stopping)
        return;
    if (qmgr_scan_at_ms != 0 && qmgr_scan_at_ms <= when_ms)
        return;
    if (when_ms < now)
        when_ms = now;
    qmgr_scan_at_ms = when_ms;
    tv.tv_sec = (when_ms - now) / 1000;
    tv.tv_usec = ((when_ms - now) % 1000) * 1000;
    evtimer_add(qmgr_scan_ev, &tv);
}

/* qmgr_backoff_ms - the wait after the attempts-th try: doubling from minimal to maximal_backoff_time */
static long long qmgr_backoff_ms(int attempts)
{
    long long b = var_smtpd_min_backoff_ms;

    for (int i = 1; i < attempts && b < var_smtpd_max_backoff_ms; i++)
        b *= 2;
    if (b > var_smtpd_max_backoff_ms)
        b = var_smtpd_max_backoff_ms;
    return b;
}

/* ---------------------------------------------------------------- destinations */

/* qmgr_dest_get - the next hop's line, made when new */
static QMGR_DEST *qmgr_dest_get(const char *nexthop, int mx)
{
    QMGR_DEST *dst;

    for (dst = qmgr_dests; dst; dst = dst->next)
        if (strcmp(dst->nexthop, nexthop) == 0 && dst->mx == mx)
            return dst;
    dst = xcalloc(1, sizeof(*dst));
    dst->nexthop = xstrdup(nexthop);
    dst->mx = mx;
    dst->wait_tail = &dst->wait_head;
    dst->next = qmgr_dests;
    qmgr_dests = dst;
    return dst;
}

/* qmgr_dest_gc - forget next hops with nothing running or waiting (a dead one is remembered) */
static void qmgr_dest_gc(void)
{
    QMGR_DEST **pp = &qmgr_dests, *dst;
    long long now = qmgr_now_ms();

    while ((dst = *pp) != NULL) {
        if (dst->active == 0 && dst->wait_head == NULL && dst->idle == NULL && !dst->running
            && dst->dead_until <= now) {
            *pp = dst->next;
            free(dst->nexthop);
            free(dst);
        } else
            pp = &dst->next;
    }
}

/*
 * qmgr_dest_run - start what the next hop's concurrency allows; while it
 * is dead, defer all that waits. A transaction ending inside the loop
 * (qmgr_dlv_done) calls in again: that call returns, the loop goes on.
 */
static void qmgr_dest_run(QMGR_DEST *dst)
{
    if (dst->running)
        return;
    dst->running = 1;
    while (!qmgr_stopping && dst->wait_head) {
        int dead = dst->dead_until > qmgr_now_ms();
        QMGR_DLV *d = dst->wait_head;

        if (!dead && dst->active >= var_smtpd_dest_concurrency)
            break;
        if ((dst->wait_head = d->next) == NULL)
            dst->wait_tail = &dst->wait_head;
        d->next = NULL;
        dst->active++;
        if (dead)
            qmgr_dlv_dead(d);
        else
            qmgr_dlv_start(d);
    }
    dst->running = 0;
}

/* ---------------------------------------------------------------- idle connections */

/* qmgr_idle_unlink - take it off its next hop's list and free it (not its relay) */
static void qmgr_idle_unlink(QMGR_IDLE *it)
{
    QMGR_IDLE **pp = &it->dest->idle;

    while (*pp && *pp != it)
        pp = &(*pp)->next;
    if (*pp)
        *pp = it->next;
    event_free(it->timer);
    free(it);
}

/* qmgr_idle_cb - unused for QMGR_IDLE_MS: QUIT */
static void qmgr_idle_cb(evutil_socket_t fd, short what, void *arg)
{
    QMGR_IDLE *it = arg;
    SMTP_RELAY *r = it->relay;

    (void) fd;
    (void) what;
    qmgr_idle_unlink(it);
    smtp_relay_free(r);
    qmgr_dest_gc();
}

/* qmgr_idle_put - keep a connection whose transaction ended for the next message to dst */
static void qmgr_idle_put(QMGR_DEST *dst, SMTP_RELAY *r, int uses)
{
    struct timeval tv = {QMGR_IDLE_MS / 1000, (QMGR_IDLE_MS % 1000) * 1000};
    QMGR_IDLE *it;

    if (qmgr_stopping || uses >= QMGR_REUSE_MAX) {
        smtp_relay_free(r);
        return;
    }
    it = xcalloc(1, sizeof(*it));
    it->relay = r;
    it->uses = uses;
    it->dest = dst;
    if ((it->timer = evtimer_new(smtpd_base, qmgr_idle_cb, it)) == NULL)
        log_fatal("queue: out of memory");
    evtimer_add(it->timer, &tv);
    it->next = dst->idle;
    dst->idle = it;
}

/*
 * qmgr_idle_take - a kept connection to dst that takes another
 * transaction (RSET, MAIL for env; cb gets MAIL's reply), NULL none
 */
static SMTP_RELAY *qmgr_idle_take(QMGR_DEST *dst, const SMTP_RELAY_ENV *env, SMTP_RELAY_CB cb, void *arg,
                                  int *uses)
{
    QMGR_IDLE *it;

    while ((it = dst->idle) != NULL) {
        SMTP_RELAY *r = it->relay;

        *uses = it->uses;
        qmgr_idle_unlink(it);
        if (smtp_relay_reuse(r, env, cb, arg) == 0)
            return r;
        smtp_relay_free(r);     /* closed or failed meanwhile */
    }
    return NULL;
}

/* ---------------------------------------------------------------- recipients */

/* qmgr_fmt_time - seconds as Postfix writes delays: 0.21, 3.4, 3735 */
static const char *qmgr_fmt_time(char *buf, size_t size, double s)
{
    if (s < 0)
        s = 0;
    if (s >= 10)
        snprintf(buf, size, "%.0f", s);
    else
        snprintf(buf, size, "%.2g", s);
    return buf;
}

/* qmgr_status_code - the enhanced status code of a reply ("4.4.1"), else "C.0.0" */
static void qmgr_status_code(int code, const char *reply, char *out, size_t size)
{
    const char *p = reply;
    size_t n;

    if (strlen(p) > 4 && isdigit((unsigned char) p[0]))
        p += 4;
    if ((n = dsn_status_len(p)) > 0) {
        snprintf(out, size, "%.*s", (int) n, p);
        return;
    }
    snprintf(out, size, "%d.0.0", code / 100 >= 2 && code / 100 <= 5 ? code / 100 : 4);
}

/*
 * qmgr_reason - Postfix's words for a reply: "host h[a] said: 550 ...
 * (in reply to RCPT TO command)" when the next hop said it, "connect to
 * h[a]:p: Connection refused" when none could be reached, the relay's
 * own words otherwise
 */
static void qmgr_reason(QMGR_DLV *d, const char *reply, const char *stage, char *out, size_t size)
{
    const char *peer = d && d->relay ? smtp_relay_peer(d->relay) : "none";
    const char *text = reply;
    const char *p;

    if (strlen(text) > 4 && isdigit((unsigned char) text[0]))
        text += 4;
    if ((p = strstr(reply, "Next hop not reachable")) != NULL || strstr(reply, "No next hop reachable")) {
        const char *why = p && (p = strchr(p, ':')) != NULL ? p + 2 : "connection failed";

        snprintf(out, size, "connect to %s: %s", d && d->relay ? smtp_relay_tried(d->relay) : "none", why);
    } else if (strstr(reply, "ext hop") != NULL || strstr(reply, "the relay") != NULL
               || strstr(reply, "Out of resources") != NULL || strcmp(peer, "none") == 0) {
        /* The relay's own words: it lost the next hop, or had none. */
        snprintf(out, size, "%s%s%s", text, strcmp(peer, "none") ? " with " : "",
                 strcmp(peer, "none") ? peer : "");
    } else {
        char host[SMTPD_NAME_LEN + SMTPD_ADDR_LEN + 16];
        char *colon;

        snprintf(host, sizeof(host), "%s", peer);
        if ((colon = strrchr(host, ']')) != NULL)
            colon[1] = 0;
        snprintf(out, size, "host %s said: %s (in reply to %s command)", host, reply, stage);
    }
}

/* qmgr_log_rcpt - the smtp line of one recipient */
static void qmgr_log_rcpt(QMGR_MSG *m, QMGR_DLV *d, size_t i, const char *status, const char *dsn,
                          const char *why)
{
    long long now = qmgr_now_ms();
    double arrival = (double) m->env.arrival;
    double active = (double) m->active_ms / 1000.0;
    double start = d ? (double) d->start_ms / 1000.0 : active;
    double conn = d && d->conn_ms ? (double) d->conn_ms / 1000.0 : start;
    char t0[32], t1[32], t2[32], t3[32], t4[32];

    char use[32] = "";

    if (d && d->uses > 1)
        snprintf(use, sizeof(use), ", conn_use=%d", d->uses);
    smtpd_log_as("smtp", "%s: to=<%s>, relay=%s%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
                 m->id, m->env.rcpt[i].addr, d && d->relay ? smtp_relay_peer(d->relay) : "none", use,
                 qmgr_fmt_time(t0, sizeof(t0), (double) now / 1000.0 - arrival),
                 qmgr_fmt_time(t1, sizeof(t1), active - arrival),
                 qmgr_fmt_time(t2, sizeof(t2), start - active),
                 qmgr_fmt_time(t3, sizeof(t3), conn - start),
                 qmgr_fmt_time(t4, sizeof(t4), (double) now / 1000.0 - conn), dsn, status, why);
}

/* qmgr_set_reason - keep a recipient's last status and reason (for defer/ID and a DSN) */
static void qmgr_set_reason(QMGR_MSG *m, size_t i, const char *dsn, const char *why)
{
    free(m->env.rcpt[i].dsn);
    free(m->env.rcpt[i].reason);
    m->env.rcpt[i].dsn = xstrdup(dsn);
    m->env.rcpt[i].reason = xstrdup(why);
}

/* qmgr_mark_done - recipient i is delivered: so says the file */
static void qmgr_mark_done(QMGR_MSG *m, size_t i)
{
    if (spool_mark(smtpd_spool, m->id, i, SPOOL_RCPT_DONE) < 0) {
        log_warn("%s: cannot mark <%s> delivered: %s (it may be delivered again)", m->id,
                 m->env.rcpt[i].addr, strerror(errno));
        qmgr_unrecorded(m->id, 1);
    }
}

/*
 * qmgr_relayed - the notice for the recipients transaction d relayed to a
 * next hop without DSN (NOTIFY=SUCCESS), made when the transaction ends
 * and before they are marked done on disk: a stop or a crash in between
 * delivers again and tells again, never neither (as for failures). None
 * for a message deleted meanwhile. A notice that cannot be made (a full
 * spool, no descriptor) leaves them to do, as Postfix does: delivered
 * again at the next try, and told then.
 */
static void qmgr_relayed(QMGR_DLV *d)
{
    QMGR_MSG *m = d->m;
    size_t *idx, n = 0, k = 0;

    while (k < d->n && m->result[d->idx[k]] != QR_RELAYED)
        k++;
    if (k == d->n)
        return;                         /* the usual case: nobody asked for a notice */
    idx = xcalloc(d->n, sizeof(*idx));
    for (; k < d->n; k++)
        if (m->result[d->idx[k]] == QR_RELAYED)
            idx[n++] = d->idx[k];
    if (!qmgr_deleted(m) && qmgr_report(m, idx, n, DSN_RELAYED) < 0) {
        for (size_t j = 0; j < n; j++) {
            log_warn("%s: <%s>: delivered, but the sender's notice cannot be made: it stays to do "
                     "and is delivered again, and told, at the next try", m->id, m->env.rcpt[idx[j]].addr);
            qmgr_set_reason(m, idx[j], "4.3.0", "delivered, but the notice to the sender could not be made");
            m->env.rcpt[idx[j]].state = SPOOL_RCPT_TODO;
            m->result[idx[j]] = QR_DEFER;
        }
        qmgr_unrecorded(m->id, 0);      /* a spool that takes no writes stops the queue: no repeats meanwhile */
        free(idx);
        return;
    }
    for (size_t j = 0; j < n; j++) {
        qmgr_mark_done(m, idx[j]);
        m->result[idx[j]] = QR_SENT;
    }
    free(idx);
}

/*
 * qmgr_rcpt_result - one recipient's answer in this try: logged, a 2xx
 * marked done on disk now (one that wants a relayed notice once it is
 * made, a 5xx once its report is)
 */
static void qmgr_rcpt_result(QMGR_MSG *m, QMGR_DLV *d, size_t i, int code, const char *reply,
                             const char *stage)
{
    char dsn[16], why[SMTPD_REPLY_LEN + 600];

    qmgr_status_code(code, reply, dsn, sizeof(dsn));
    if (code / 100 == 2) {
        m->result[i] = QR_SENT;
        if ((m->env.rcpt[i].notify & SPOOL_NOTIFY_SUCCESS) && d && d->relay && !smtp_relay_dsn(d->relay)) {
            /* NOTIFY=SUCCESS could not go on to this next hop: the notice is ours to send (RFC 3461 5.2.2). */
            m->result[i] = QR_RELAYED;
            qmgr_reason(d, reply, stage, why, sizeof(why));
            qmgr_set_reason(m, i, dsn, why);
        }
        qmgr_log_rcpt(m, d, i, "sent", dsn, reply);
        if (m->result[i] != QR_RELAYED)
            qmgr_mark_done(m, i);
        m->env.rcpt[i].state = SPOOL_RCPT_DONE;
        return;
    }
    qmgr_reason(d, reply, stage, why, sizeof(why));
    qmgr_set_reason(m, i, dsn, why);
    if (code / 100 == 5) {
        m->result[i] = QR_FAIL;
        qmgr_log_rcpt(m, d, i, "bounced", dsn, why);
    } else {
        m->result[i] = QR_DEFER;
        qmgr_log_rcpt(m, d, i, "deferred", dsn, why);
    }
}

/* qmgr_rcpt_defer_local - a recipient not tried at all (no route, store down): deferred */
static void qmgr_rcpt_defer_local(QMGR_MSG *m, size_t i, const char *dsn, const char *why)
{
    m->result[i] = QR_DEFER;
    qmgr_set_reason(m, i, dsn, why);
    qmgr_log_rcpt(m, NULL, i, "deferred", dsn, why);
}

/*
 * qmgr_route - the next hop of a recipient, as a session would relay it:
 * its domain's own, else default_nexthop; outside our domains (a report
 * to an outside sender) default_nexthop when set, else the domain by MX
 * (*mx set). 1 found, 0 none (dsn/why set), -1 the store cannot say.
 */
static int qmgr_route(const char *rcpt, char *hop, size_t size, int *mx, char *dsn, size_t dsnlen,
                      char *why, size_t whylen)
{
    const char *reason = NULL;
    STORE *st = smtpd_store_use(&reason);
    CHECK_OPTS opts;
    CHECK_WHY cw;
    const char *at = strrchr(rcpt, '@');
    int rc;

    *mx = 0;
    if (st == NULL) {
        snprintf(dsn, dsnlen, "4.3.0");
        snprintf(why, whylen, "next hop lookup: %s", reason ? reason : "the store is not open");
        return -1;
    }
    params_check_opts(&opts);
    rc = check_transport(st, &opts, rcpt, strlen(rcpt), &cw);
    if (rc < 0) {
        snprintf(dsn, dsnlen, "4.3.0");
        snprintf(why, whylen, "next hop lookup: %s", store_error(st));
        return -1;
    }
    if (rc > 0) {
        snprintf(hop, size, "%s", cw.nexthop);
        return 1;
    }
    if (var_smtpd_default_nexthop && *var_smtpd_default_nexthop) {
        snprintf(hop, size, "%s", var_smtpd_default_nexthop);
        return 1;
    }
    if (cw.rule != CHECK_MISS_NEXTHOP && at != NULL && at[1] != 0 && at[1] != '[') {
        /* Not ours: the Internet's route, its MX (smtp_relay's mx). */
        snprintf(hop, size, "%s", at + 1);
        *mx = 1;
        return 1;
    }
    snprintf(dsn, dsnlen, "4.4.4");
    snprintf(why, whylen, "%s", cw.rule == CHECK_MISS_NEXTHOP
             ? "no next hop for the domain: set the domain's next hop or [smtpd] default_nexthop"
             : "no route to the recipient's domain: set [smtpd] default_nexthop");
    return 0;
}

/* ---------------------------------------------------------------- one transaction */

/* qmgr_dlv_free - a transaction's memory (its relay must be gone) */
static void qmgr_dlv_free(QMGR_DLV *d)
{
    free(d->idx);
    free(d->accepted);
    free(d->rargs);
    free(d);
}

/*
 * qmgr_dlv_done - the transaction ended: free its slot, start the next,
 * finish the message. keep: the connection is between transactions (a
 * final reply, every RCPT or DATA refused) and may carry the next; else
 * it still owes callbacks (MAIL refused) and is closed.
 */
static void qmgr_dlv_done(QMGR_DLV *d, int keep)
{
    QMGR_MSG *m = d->m;
    QMGR_DEST *dst = d->dest;

    qmgr_relayed(d);
    if (d->relay && keep) {
        /* Kept a moment for the next message to this next hop; QUIT later. */
        qmgr_idle_put(dst, d->relay, d->uses);
    } else if (d->relay) {
        smtp_relay_free(d->relay);
    }
    d->relay = NULL;
    dst->active--;
    m->pending--;
    qmgr_dest_run(dst);
    if (m->pending == 0)
        qmgr_msg_finish(m);
    qmgr_dest_gc();
}

/* qmgr_dlv_all - every recipient still open in the transaction gets this reply */
static void qmgr_dlv_all(QMGR_DLV *d, int accepted_only, int code, const char *reply, const char *stage)
{
    for (size_t k = 0; k < d->n; k++)
        if (d->m->result[d->idx[k]] == QR_NONE && (!accepted_only || d->accepted[k]))
            qmgr_rcpt_result(d->m, d, d->idx[k], code, reply, stage);
}

/* qmgr_dot_cb - the final reply: it is every accepted recipient's */
static void qmgr_dot_cb(void *arg, int code, const char *reply)
{
    QMGR_DLV *d = arg;

    qmgr_dlv_all(d, 1, code, reply, "end of DATA");
    qmgr_dlv_done(d, 1);
}

/* qmgr_stream_cut - the body cannot go on: cut before the dot (the downstream discards it), tried again later */
static void qmgr_stream_cut(QMGR_DLV *d, const char *why)
{
    log_warn("%s: %s", d->m->id, why + 10);
    smtp_relay_free(d->relay);
    d->relay = NULL;
    qmgr_dlv_all(d, 1, 451, why, "end of DATA");
    qmgr_dlv_done(d, 0);
}

/* qmgr_stream - hand the body to the relay while its backlog is small; then the dot */
static void qmgr_stream(void *arg)
{
    static char buf[QMGR_CHUNK];
    QMGR_DLV *d = arg;
    QMGR_MSG *m = d->m;

    while (d->sent < m->env.size) {
        long long want = m->env.size - d->sent;
        ssize_t got;

        if (smtp_relay_backlog(d->relay) > QMGR_BACKLOG) {
            smtp_relay_on_drain(d->relay, qmgr_stream, d);
            return;
        }
        if (want > QMGR_CHUNK)
            want = QMGR_CHUNK;
        got = pread(m->fd, buf, (size_t) want, (off_t) (m->env.body_offset + d->sent));
        if (got <= 0) {
            char why[300];

            snprintf(why, sizeof(why), "451 4.3.0 Error reading the queue file: %s",
                     got < 0 ? strerror(errno) : "unexpected end of file");
            qmgr_stream_cut(d, why);
            return;
        }
        d->sent += got;
        if (smtp_relay_write(d->relay, buf, (size_t) got) < 0) {
            if (smtp_relay_failed(d->relay))
                break;          /* it lost the next hop: its answer to the dot says why */
            /* Not failed (no memory to buffer it): a dot now would end a cut message. */
            qmgr_stream_cut(d, "451 4.3.0 Error buffering the message for the next hop");
            return;
        }
    }
    smtp_relay_dot(d->relay, qmgr_dot_cb, d);
}

/* qmgr_data_cb - 354: stream the body; anything else is every accepted recipient's answer */
static void qmgr_data_cb(void *arg, int code, const char *reply)
{
    QMGR_DLV *d = arg;

    if (code != 354) {
        qmgr_dlv_all(d, 1, code, reply, "DATA");
        qmgr_dlv_done(d, 1);
        return;
    }
    qmgr_stream(d);
}

/* qmgr_rcpt_cb - one RCPT's reply; after the last, DATA if any was accepted */
static void qmgr_rcpt_cb(void *arg, int code, const char *reply)
{
    QMGR_RARG *ra = arg;
    QMGR_DLV *d = ra->d;

    if (code / 100 == 2) {
        d->accepted[ra->k] = 1;
        d->nacc++;
    } else {
        qmgr_rcpt_result(d->m, d, d->idx[ra->k], code, reply, "RCPT TO");
    }
    if (++d->nreplies < d->n)
        return;
    if (d->nacc == 0) {
        qmgr_dlv_done(d, 1);
        return;
    }
    smtp_relay_data(d->relay, qmgr_data_cb, d);
}

static void qmgr_dlv_open(QMGR_DLV *d, int reuse);

/* qmgr_mail_cb - MAIL's reply (or no next hop reachable): a refusal is every recipient's */
static void qmgr_mail_cb(void *arg, int code, const char *reply)
{
    QMGR_DLV *d = arg;

    d->conn_ms = qmgr_now_ms();
    if (code / 100 == 2)
        return;
    if (d->uses > 1 && strstr(reply, "Lost connection") != NULL) {
        /* A kept connection that died idle says nothing of the next hop: a new one. */
        smtp_relay_free(d->relay);
        d->relay = NULL;
        qmgr_dlv_open(d, 0);
        return;
    }
    if (d->uses <= 1 && code / 100 == 4 && strstr(reply, " 4.4.1 ") != NULL) {
        /* No hop of a fresh connection answered: the next hop is dead for a while. */
        d->dest->dead_until = qmgr_now_ms() + var_smtpd_min_backoff_ms;
        qmgr_reason(d, reply, "MAIL FROM", d->dest->dead_why, sizeof(d->dest->dead_why));
        log_info("%s: next hop %s marked dead for %d s: %s", d->m->id, d->dest->nexthop,
                 var_smtpd_min_backoff_ms / 1000, d->dest->dead_why);
    }
    qmgr_dlv_all(d, 0, code, reply, "MAIL FROM");
    qmgr_dlv_done(d, 0);
}

/* qmgr_dlv_dead - a transaction for a dead next hop: deferred without trying, as Postfix says it */
static void qmgr_dlv_dead(QMGR_DLV *d)
{
    char why[sizeof(d->dest->dead_why) + 40];

    snprintf(why, sizeof(why), "delivery temporarily suspended: %s", d->dest->dead_why);
    d->start_ms = d->conn_ms = qmgr_now_ms();
    for (size_t k = 0; k < d->n; k++)
        if (d->m->result[d->idx[k]] == QR_NONE)
            qmgr_rcpt_defer_local(d->m, d->idx[k], "4.4.1", why);
    qmgr_dlv_done(d, 0);
}

/* qmgr_mail_params - MAIL's parameters: the stored ones, and RET/ENVID when not among them */
static char *qmgr_mail_params(const SPOOL_ENV *env)
{
    const char *p = env->mail_params ? env->mail_params : "";
    char *out = xstrdup(p), *tmp;

    if (env->ret != SPOOL_RET_DEFAULT && strstr(p, "RET=") == NULL) {
        tmp = xasprintf("%s%sRET=%s", out, *out ? " " : "", env->ret == SPOOL_RET_FULL ? "FULL" : "HDRS");
        free(out);
        out = tmp;
    }
    if (env->envid && *env->envid && strstr(p, "ENVID=") == NULL) {
        tmp = xasprintf("%s%sENVID=%s", out, *out ? " " : "", env->envid);
        free(out);
        out = tmp;
    }
    return out;
}

/* qmgr_rcpt_params - NOTIFY and ORCPT of a recipient, as RCPT parameters */
static void qmgr_rcpt_params(const SPOOL_RCPT *r, char *out, size_t size)
{
    size_t n = 0;

    out[0] = 0;
    if (r->notify) {
        if (r->notify & SPOOL_NOTIFY_NEVER)
            n += (size_t) snprintf(out + n, size - n, "NOTIFY=NEVER");
        else
            n += (size_t) snprintf(out + n, size - n, "NOTIFY=%s%s%s",
                                   r->notify & SPOOL_NOTIFY_SUCCESS ? "SUCCESS," : "",
                                   r->notify & SPOOL_NOTIFY_FAILURE ? "FAILURE," : "",
                                   r->notify & SPOOL_NOTIFY_DELAY ? "DELAY," : "");
        if (n > 0 && out[n - 1] == ',')
            out[--n] = 0;
    }
    if (r->orcpt && *r->orcpt && n + 8 < size)
        snprintf(out + n, size - n, "%sORCPT=%s", n ? " " : "", r->orcpt);
}

/*
 * qmgr_dlv_open - the transaction's MAIL and every RCPT (pipelined when
 * the hop can), on a kept connection when reuse allows, else a new one
 */
static void qmgr_dlv_open(QMGR_DLV *d, int reuse)
{
    QMGR_MSG *m = d->m;
    SMTPD_CLIENT c;
    SMTP_RELAY_ENV env;
    char *params = qmgr_mail_params(&m->env);

    memset(&c, 0, sizeof(c));
    snprintf(c.name, sizeof(c.name), "%s", m->env.client.name ? m->env.client.name : "unknown");
    snprintf(c.addr, sizeof(c.addr), "%s", m->env.client.addr ? m->env.client.addr : "");
    c.port = m->env.client.port;
    c.helo = m->env.client.helo;
    c.esmtp = m->env.client.proto == NULL || strncasecmp(m->env.client.proto, "ESMTP", 5) == 0;
    memset(&env, 0, sizeof(env));
    env.nexthops = d->dest->nexthop;
    env.mx = d->dest->mx;
    env.client = &c;
    env.sender = m->env.sender;
    env.mail_params = params;
    d->relay = reuse ? qmgr_idle_take(d->dest, &env, qmgr_mail_cb, d, &d->uses) : NULL;
    if (d->relay != NULL) {
        d->uses++;
    } else {
        d->relay = smtp_relay_open(&env, qmgr_mail_cb, d);
        d->uses = 1;
    }
    free(params);
    for (size_t k = 0; k < d->n; k++) {
        char rp[1024];

        qmgr_rcpt_params(&m->env.rcpt[d->idx[k]], rp, sizeof(rp));
        smtp_relay_rcpt(d->relay, m->env.rcpt[d->idx[k]].addr, rp, qmgr_rcpt_cb, &d->rargs[k]);
    }
}

/* qmgr_dlv_start - the transaction got its slot: go (not for a message deleted or held while it waited) */
static void qmgr_dlv_start(QMGR_DLV *d)
{
    if (qmgr_deleted(d->m) || qmgr_on_hold(d->m)) {
        for (size_t k = 0; k < d->n; k++)
            if (d->m->result[d->idx[k]] == QR_NONE)
                d->m->result[d->idx[k]] = QR_DEFER;
        qmgr_dlv_done(d, 0);
        return;
    }
    d->start_ms = qmgr_now_ms();
    qmgr_dlv_open(d, 1);
}

/* ---------------------------------------------------------------- one message */

/* qmgr_msg_free - drop a message from memory (its transactions are gone) */
static void qmgr_msg_free(QMGR_MSG *m)
{
    QMGR_MSG **pp = &qmgr_hash[qmgr_hash_of(m->id)];

    while (*pp && *pp != m)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = m->hnext;
    if (m->prev)
        m->prev->next = m->next;
    else
        qmgr_active = m->next;
    if (m->next)
        m->next->prev = m->prev;
    qmgr_nactive--;
    while (m->dlvs) {
        QMGR_DLV *d = m->dlvs;

        m->dlvs = d->mnext;
        qmgr_dlv_free(d);
    }
    if (m->fd >= 0)
        close(m->fd);
    spool_env_free(&m->env);
    free(m->result);
    free(m);
}

/* qmgr_report_name - a report of kind, as Postfix's bounce log names it ("sender ... notification") */
static const char *qmgr_report_name(int kind)
{
    return kind == DSN_FAILED ? "non-delivery" : kind == DSN_DELAYED ? "delay" : "delivery status";
}

/* qmgr_report_state - the recipients' state a report of kind is about */
static const char *qmgr_report_state(int kind)
{
    return kind == DSN_FAILED ? "undeliverable" : kind == DSN_DELAYED ? "delayed" : "relayed";
}

/*
 * qmgr_report - a report to the sender about idx[0..n); 0 made (queued for
 * delivery), 1 none due or none possible, -1 error (tried again later)
 */
static int qmgr_report(QMGR_MSG *m, const size_t *idx, size_t n, int kind)
{
    char newid[SPOOL_ID_LEN], err[512];
    int rc;

    if (n == 0)
        return 1;
    if (*m->env.sender == 0 || m->env.dsn_kind) {
        /* No bounce loops: a report or a null-sender message is never returned. */
        smtpd_log_as("qmgr", "%s: from=<%s>, %s, not returned: %s", m->id, m->env.sender, qmgr_report_state(kind),
                     m->env.dsn_kind ? "it is a delivery report" : "the sender is null");
        return 1;
    }
    rc = dsn_make(smtpd_spool, &m->env, m->fd, idx, n, kind, smtpd_hostname, newid, err, sizeof(err));
    if (rc < 0) {
        log_warn("%s: cannot make the %s report: %s", m->id, qmgr_report_name(kind), err);
        return -1;
    }
    if (rc == 2) {
        /* Never possible (a hand-made file's sender): keeping the recipients to do would retry it forever. */
        log_warn("%s: %s, not returned: %s", m->id, qmgr_report_state(kind), err);
        return 1;
    }
    if (rc == 0) {
        smtpd_log_as("bounce", "%s: sender %s notification: %s", m->id, qmgr_report_name(kind), newid);
        smtpd_qmgr_queued(newid, 0);
    }
    return rc;
}

/* qmgr_fail - return recipients to the sender, then mark them failed (report first: at least once) */
static void qmgr_fail(QMGR_MSG *m, size_t *idx, size_t n)
{
    if (n == 0 || qmgr_report(m, idx, n, DSN_FAILED) < 0)
        return;                 /* kept to do: tried, and returned, again later */
    for (size_t k = 0; k < n; k++) {
        if (spool_mark(smtpd_spool, m->id, idx[k], SPOOL_RCPT_FAILED) < 0) {
            log_warn("%s: cannot mark <%s> failed: %s", m->id, m->env.rcpt[idx[k]].addr, strerror(errno));
            qmgr_unrecorded(m->id, 1);
        }
        m->env.rcpt[idx[k]].state = SPOOL_RCPT_FAILED;
    }
}

/* qmgr_remove - the message is done with */
static void qmgr_remove(QMGR_MSG *m)
{
    int rc = spool_remove(smtpd_spool, m->id);

    if (rc < 0) {
        log_warn("%s: cannot remove it from the queue: %s", m->id, strerror(errno));
        qmgr_unrecorded(m->id, 1);
    } else if (rc == 0) {
        smtpd_log_as("qmgr", "%s: removed", m->id);
        if (qmgr_deferred > 0)
            qmgr_deferred--;
    }
    /* 1: `rcptgate queue delete` was quicker; it said so itself. */
}

/*
 * qmgr_deleted - `rcptgate queue delete` unlinked the message while it was
 * being delivered (the file stays readable through m->fd)
 */
static int qmgr_deleted(const QMGR_MSG *m)
{
    struct stat st;

    return m->fd >= 0 && fstat(m->fd, &st) == 0 && st.st_nlink == 0;
}

/*
 * qmgr_on_hold - `rcptgate queue hold` moved the message to hold/ while it
 * was being delivered: what is left waits for the release, not for a try
 */
static int qmgr_on_hold(const QMGR_MSG *m)
{
    const char *q = spool_find(smtpd_spool, m->id);

    return q != NULL && strcmp(q, SPOOL_HOLD) == 0;
}

/*
 * qmgr_msg_finish - every transaction of the try ended: return what
 * failed, then remove the message, expire it, or set its next try
 */
static void qmgr_msg_finish(QMGR_MSG *m)
{
    size_t *idx = xcalloc(m->env.nrcpt + 1, sizeof(*idx));
    size_t n = 0, todo = 0;
    long long now = qmgr_now_ms() / 1000;
    long long lifetime = (long long) (m->env.dsn_kind ? var_smtpd_bounce_lifetime_ms
                                      : var_smtpd_queue_lifetime_ms) / 1000;

    if (qmgr_deleted(m)) {
        /* The postmaster threw it away: a report now would be backscatter of mail nobody wants. */
        smtpd_log_as("qmgr", "%s: deleted while being delivered: no report to the sender", m->id);
        goto done;
    }
    for (size_t i = 0; i < m->env.nrcpt; i++)
        if (m->result[i] == QR_FAIL && m->env.rcpt[i].state == SPOOL_RCPT_TODO)
            idx[n++] = i;
    qmgr_fail(m, idx, n);
    n = 0;
    for (size_t i = 0; i < m->env.nrcpt; i++)
        if (m->env.rcpt[i].state == SPOOL_RCPT_TODO) {
            idx[n++] = i;
            todo++;
        }
    if (todo > 0 && qmgr_on_hold(m)) {
        /* Neither expired nor warned about while held (as Postfix's hold queue): that waits for the release. */
        smtpd_log_as("qmgr", "%s: on hold: %zu recipient%s left for after its release", m->id, todo,
                     todo == 1 ? "" : "s");
        if (spool_reason_save(smtpd_spool, &m->env) < 0)
            log_warn("%s: cannot save the deferral reasons: %s", m->id, strerror(errno));
        goto done;
    }
    if (todo > 0 && now - m->env.arrival >= lifetime) {
        /* Too old: what is left goes back with its last reason. */
        int rc = 1;

        for (size_t k = 0; k < n; k++)
            if (m->env.rcpt[idx[k]].dsn == NULL)
                qmgr_set_reason(m, idx[k], "4.4.7", "delivery time expired");
        if (*m->env.sender && !m->env.dsn_kind)
            rc = qmgr_report(m, idx, n, DSN_FAILED);
        /* "returned" only when a report was made: NOTIFY=NEVER, say, wanted none. */
        if (rc >= 0) {
            smtpd_log_as("qmgr", "%s: from=<%s>, status=expired, %s", m->id, m->env.sender,
                         rc == 0 ? "returned to sender" : "dropped");
            todo = 0;
        }
    }
    if (todo == 0) {
        qmgr_remove(m);
    } else {
        long long next;

        if (var_smtpd_delay_warning_ms > 0 && !m->env.warned && *m->env.sender && !m->env.dsn_kind
            && (now - m->env.arrival) * 1000 >= var_smtpd_delay_warning_ms) {
            /* One warning per message, as Postfix's delay_warning_time. */
            if (qmgr_report(m, idx, n, DSN_DELAYED) >= 0 && spool_mark_warned(smtpd_spool, m->id) < 0) {
                log_warn("%s: cannot record the delay warning: %s", m->id, strerror(errno));
                qmgr_unrecorded(m->id, 0);      /* unwritable: the queue stops, the warning is not repeated */
            }
            m->env.warned = 1;
        }
        m->env.attempts++;
        if (spool_reason_save(smtpd_spool, &m->env) < 0)
            log_warn("%s: cannot save the deferral reasons: %s", m->id, strerror(errno));
        next = qmgr_now_ms() + qmgr_backoff_ms(m->env.attempts);
        /* Whole seconds (an mtime), rounded up so the scan then finds it due. */
        if (spool_retry_at(smtpd_spool, m->id, (next + 999) / 1000) < 0) {
            log_warn("%s: cannot set its next try: %s", m->id, strerror(errno));
            qmgr_unrecorded(m->id, 0);          /* nothing was delivered: no repeat to keep out */
        }
        qmgr_wake_at(((next + 999) / 1000) * 1000);
    }
done:
    free(idx);
    qmgr_msg_free(m);
    if (qmgr_more && qmgr_nactive <= var_smtpd_active_limit / 2)
        qmgr_wake_at(qmgr_now_ms());
}

/* qmgr_activate - load a due message and start its transactions */
static void qmgr_activate(const char *id)
{
    QMGR_MSG *m;
    char err[512];
    int rc;
    unsigned h;

    if (qmgr_is_held(id) || qmgr_unwritable || qmgr_nb_until(id) > 0)
        return;                 /* a session holds it, or its record failed: a later scan */
    m = xcalloc(1, sizeof(*m));
    snprintf(m->id, sizeof(m->id), "%s", id);
    m->fd = -1;
    rc = spool_load(smtpd_spool, SPOOL_DEFERRED, id, &m->env, &m->fd, err, sizeof(err));
    if (rc != 0) {
        int load_errno = errno;

        if (rc == -2 && spool_corrupt(smtpd_spool, id) == 0) {
            /* Never tried again, never counted: the postmaster looks at it there. */
            log_warn("%s: damaged queue file moved to %s/%s/: %s", id, spool_dir(smtpd_spool), SPOOL_CORRUPT,
                     err);
        } else if (rc < 0) {
            log_warn("%s: cannot read the queue file: %s", id, err);
            /*
             * An I/O error may pass (or the move failed): not every scan
             * again, after the longest backoff. Out of descriptors is a
             * passing shortage of ours, not the file's: the next scan.
             */
            if (load_errno != EMFILE && load_errno != ENFILE)
                (void) spool_retry_at(smtpd_spool, id, (qmgr_now_ms() + var_smtpd_max_backoff_ms) / 1000 + 1);
        }
        if (m->fd >= 0)
            close(m->fd);
        free(m);
        return;
    }
    m->active_ms = qmgr_now_ms();
    m->result = xcalloc(m->env.nrcpt + 1, sizeof(*m->result));
    h = qmgr_hash_of(m->id);
    m->hnext = qmgr_hash[h];
    qmgr_hash[h] = m;
    m->next = qmgr_active;
    if (qmgr_active)
        qmgr_active->prev = m;
    qmgr_active = m;
    qmgr_nactive++;
    smtpd_log_as("qmgr", "%s: from=<%s>, size=%lld, nrcpt=%zu (queue active)", m->id, m->env.sender,
                 m->env.size, m->env.nrcpt);

    /* Group what is left to do by next hop; one transaction per group. */
    m->pending = 1;             /* held until every transaction is set up */
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        char hop[512], dsn[16], why[300];
        QMGR_DLV *d;
        QMGR_DEST *dst;
        int mx;

        if (m->env.rcpt[i].state != SPOOL_RCPT_TODO || m->result[i] != QR_NONE)
            continue;
        if (qmgr_route(m->env.rcpt[i].addr, hop, sizeof(hop), &mx, dsn, sizeof(dsn), why, sizeof(why)) <= 0) {
            qmgr_rcpt_defer_local(m, i, dsn, why);
            continue;
        }
        dst = qmgr_dest_get(hop, mx);
        for (d = m->dlvs; d && d->dest != dst; d = d->mnext)
            ;
        if (d == NULL) {
            d = xcalloc(1, sizeof(*d));
            d->m = m;
            d->dest = dst;
            d->mnext = m->dlvs;
            m->dlvs = d;
        }
        /*
         * Grown as it fills, not sized by the whole message: a file with
         * many recipients, each in a group of its own, would otherwise
         * cost recipients squared. (Nothing points into rargs yet: the
         * RCPTs are sent once every group is set up.)
         */
        if (d->n == d->cap) {
            d->cap = d->cap ? 2 * d->cap : 4;
            d->idx = xrealloc(d->idx, d->cap * sizeof(*d->idx));
            d->accepted = xrealloc(d->accepted, d->cap * sizeof(*d->accepted));
            d->rargs = xrealloc(d->rargs, d->cap * sizeof(*d->rargs));
        }
        d->accepted[d->n] = 0;
        d->rargs[d->n].d = d;
        d->rargs[d->n].k = d->n;
        d->idx[d->n++] = i;
    }
    for (QMGR_DLV *d = m->dlvs; d; d = d->mnext) {
        m->pending++;
        *d->dest->wait_tail = d;
        d->dest->wait_tail = &d->next;
    }
    for (QMGR_DLV *d = m->dlvs; d; d = d->mnext)
        qmgr_dest_run(d->dest);
    /* Transactions start from the loop, so none has ended yet unless nothing was started. */
    if (--m->pending == 0)
        qmgr_msg_finish(m);
}

/* ---------------------------------------------------------------- scans */

typedef struct qmgr_scan {
    long long now;
    long long earliest;         /* the soonest next try in the future, 0 none */
    long long oldest;
} QMGR_SCAN;

/* qmgr_oldest_of - note an id's arrival */
static void qmgr_oldest_of(QMGR_SCAN *s, const char *id)
{
    long long t = spool_id_time(id);    /* the arrival, from the id: no file opened */

    if (t > 0 && (s->oldest == 0 || t < s->oldest))
        s->oldest = t;
}

/* qmgr_scan_one - one deferred/ entry: due and room: activate it */
static int qmgr_scan_one(void *arg, const char *id, long long mtime, long long size)
{
    QMGR_SCAN *s = arg;
    long long until;

    (void) size;
    qmgr_oldest_of(s, id);
    if (qmgr_stopping || qmgr_unwritable || qmgr_find(id) != NULL || qmgr_is_held(id))
        return 0;
    if ((until = qmgr_nb_until(id)) > 0) {
        if (s->earliest == 0 || until / 1000 + 1 < s->earliest)
            s->earliest = until / 1000 + 1;
        return 0;
    }
    if (mtime > s->now) {
        if (s->earliest == 0 || mtime < s->earliest)
            s->earliest = mtime;
        return 0;
    }
    if (qmgr_nactive >= var_smtpd_active_limit) {
        qmgr_more = 1;
        return 0;
    }
    qmgr_activate(id);
    return 0;
}

/* qmgr_hold_one - one hold/ entry: only counted */
static int qmgr_hold_one(void *arg, const char *id, long long mtime, long long size)
{
    (void) mtime;
    (void) size;
    qmgr_oldest_of(arg, id);
    return 0;
}

/* qmgr_scan_cb - walk deferred/ and hold/, start what is due, plan the next scan */
static void qmgr_scan_cb(evutil_socket_t fd, short what, void *arg)
{
    QMGR_SCAN s;
    long long n, h, next;

    (void) fd;
    (void) what;
    (void) arg;
    qmgr_scan_at_ms = 0;
    if (smtpd_spool == NULL || qmgr_stopping)
        return;
    memset(&s, 0, sizeof(s));
    s.now = qmgr_now_ms() / 1000;
    qmgr_more = 0;
    qmgr_writable_again();              /* while it is not, the scan only counts */
    n = spool_scan(smtpd_spool, SPOOL_DEFERRED, qmgr_scan_one, &s);
    h = spool_scan(smtpd_spool, SPOOL_HOLD, qmgr_hold_one, &s);
    if (n < 0 || h < 0) {
        if (!qmgr_broken)
            log_warn("queue %s: cannot scan: %s; new mail is not queued", spool_dir(smtpd_spool), strerror(errno));
        qmgr_broken = 1;
    } else {
        if (qmgr_broken)
            log_info("queue %s: scanning again; new mail is queued", spool_dir(smtpd_spool));
        qmgr_broken = 0;
        qmgr_deferred = n;
        qmgr_hold = h;
        qmgr_oldest = s.oldest;
    }
    next = qmgr_now_ms() + var_smtpd_queue_run_ms;
    if (s.earliest > 0 && s.earliest * 1000 < next)
        next = s.earliest * 1000;
    qmgr_wake_at(next);
}

/* qmgr_trigger_cb - `rcptgate queue flush` wrote to the FIFO: scan now */
static void qmgr_trigger_cb(evutil_socket_t fd, short what, void *arg)
{
    char buf[256];
    ssize_t got;

    (void) what;
    (void) arg;
    while ((got = read(fd, buf, sizeof(buf))) > 0)
        ;
    if (got == 0) {
        /* No writer left and the FIFO at EOF: stop watching rather than spin. */
        log_warn("queue trigger: end of file; `rcptgate queue flush` now waits for queue_run_delay");
        event_del(qmgr_trigger_ev);
    }
    /*
     * As Postfix's flush, forget which next hops are dead: the postmaster
     * who flushes has usually just brought the inside back, and a dead
     * mark would defer everything again without trying.
     */
    for (QMGR_DEST *dst = qmgr_dests; dst; dst = dst->next)
        dst->dead_until = 0;
    qmgr_wake_at(qmgr_now_ms());
}

/* qmgr_soon_cb - activate the messages just queued, room permitting */
static void qmgr_soon_cb(evutil_socket_t fd, short what, void *arg)
{
    (void) fd;
    (void) what;
    (void) arg;
    for (int i = 0; i < qmgr_nsoon && !qmgr_stopping; i++) {
        if (qmgr_find(qmgr_soon[i]) != NULL)
            continue;
        if (qmgr_nactive >= var_smtpd_active_limit) {
            qmgr_more = 1;
            break;
        }
        qmgr_activate(qmgr_soon[i]);
    }
    qmgr_nsoon = 0;
}

/* ---------------------------------------------------------------- the interface */

/* smtpd_qmgr_init - open the spool (clearing incoming/), watch the FIFO, scan at once */
int smtpd_qmgr_init(char *err, size_t errlen)
{
    int tfd;

    qmgr_stopping = 0;
    if (!qmgr_wanted())
        return 0;
    if ((smtpd_spool = spool_open(var_smtpd_queue_dir, 2, err, errlen)) == NULL)
        return -1;
    qmgr_scan_ev = evtimer_new(smtpd_base, qmgr_scan_cb, NULL);
    qmgr_soon_ev = event_new(smtpd_base, -1, 0, qmgr_soon_cb, NULL);
    if (qmgr_scan_ev == NULL || qmgr_soon_ev == NULL)
        log_fatal("queue: out of memory");
    if ((tfd = spool_trigger_fd(smtpd_spool)) < 0)
        log_warn("queue %s: no trigger FIFO: `rcptgate queue flush` waits for queue_run_delay",
                 spool_dir(smtpd_spool));
    else if ((qmgr_trigger_ev = event_new(smtpd_base, tfd, EV_READ | EV_PERSIST, qmgr_trigger_cb, NULL)) == NULL
             || event_add(qmgr_trigger_ev, NULL) < 0)
        log_fatal("queue: cannot watch the trigger FIFO");
    /* Recovery: everything in deferred/ that is due goes out now. */
    qmgr_wake_at(qmgr_now_ms());
    return 0;
}

/* smtpd_qmgr_reload - SIGHUP: a scan now plans the next with the new queue_run_delay; the rest is read where used */
void smtpd_qmgr_reload(void)
{
    qmgr_wake_at(qmgr_now_ms());
}

/*
 * smtpd_qmgr_stop - SIGTERM: start nothing more and cut what runs (the
 * spool keeps it; one waiting on its dot's answer may come again after
 * the restart); once no session is left, close it
 */
void smtpd_qmgr_stop(void)
{
    qmgr_stopping = 1;
    if (qmgr_scan_ev) {
        event_free(qmgr_scan_ev);
        qmgr_scan_ev = NULL;
    }
    if (qmgr_trigger_ev) {
        event_free(qmgr_trigger_ev);
        qmgr_trigger_ev = NULL;
    }
    if (qmgr_soon_ev) {
        event_free(qmgr_soon_ev);
        qmgr_soon_ev = NULL;
    }
    qmgr_nsoon = 0;
    while (qmgr_active) {
        QMGR_MSG *m = qmgr_active;

        for (QMGR_DLV *d = m->dlvs; d; d = d->mnext) {
            smtp_relay_free(d->relay);
            d->relay = NULL;
        }
        if (m->pending > 0)
            log_info("%s: delivery cut by the stop; it stays queued", m->id);
        qmgr_msg_free(m);
    }
    /* The lines of the next hops only point at what was just freed; idle connections QUIT. */
    for (QMGR_DEST *dst = qmgr_dests; dst; dst = dst->next) {
        while (dst->idle) {
            SMTP_RELAY *r = dst->idle->relay;

            qmgr_idle_unlink(dst->idle);
            smtp_relay_close(r);        /* no QUIT: the loop ends before its 221 */
        }
        dst->active = 0;
        dst->wait_head = NULL;
        dst->wait_tail = &dst->wait_head;
    }
    qmgr_dest_gc();
    if (smtpd_spool != NULL && smtp_session_count() == 0) {
        spool_close(smtpd_spool);
        smtpd_spool = NULL;
    }
}

/* smtpd_qmgr_queued - a session committed id: try it now if it is due and there is room */
void smtpd_qmgr_queued(const char *id, long long next_try)
{
    long long now = qmgr_now_ms();

    qmgr_deferred++;
    if (smtpd_spool == NULL || qmgr_stopping || qmgr_find(id) != NULL)
        return;
    if (next_try * 1000 > now) {
        qmgr_wake_at(next_try * 1000);
        return;
    }
    if (qmgr_nsoon >= QMGR_SOON) {
        qmgr_more = 1;          /* the next scan finds it */
        qmgr_wake_at(now);
        return;
    }
    /* From the loop: a session's callback or a finishing message is not the place. */
    snprintf(qmgr_soon[qmgr_nsoon++], SPOOL_ID_LEN, "%s", id);
    event_active(qmgr_soon_ev, EV_TIMEOUT, 0);
}

/* smtpd_qmgr_accepting - 0, or 452 with the client's reply in why */
int smtpd_qmgr_accepting(char *why, size_t whylen)
{
    if (smtpd_spool == NULL || qmgr_broken || qmgr_unwritable) {
        snprintf(why, whylen, "452 4.3.1 Insufficient system storage");
        return 452;
    }
    if (qmgr_deferred + qmgr_hold >= var_smtpd_queue_max) {
        static long long warned;
        long long now = qmgr_now_ms();

        if (now - warned > 60000) {
            log_warn("queue %s: %lld messages, queue_max_messages is %d: new mail hears 452",
                     spool_dir(smtpd_spool), qmgr_deferred + qmgr_hold, var_smtpd_queue_max);
            warned = now;
        }
        snprintf(why, whylen, "452 4.3.1 Insufficient system storage");
        return 452;
    }
    return 0;
}

/* smtpd_qmgr_counts - messages in deferred/ and hold/, the oldest arrival */
void smtpd_qmgr_counts(long long *deferred, long long *hold, long long *oldest)
{
    *deferred = qmgr_deferred;
    *hold = qmgr_hold;
    /* The oldest is the last scan's; an emptied queue has none, whatever that scan saw. */
    *oldest = qmgr_deferred + qmgr_hold > 0 ? qmgr_oldest : 0;
}
