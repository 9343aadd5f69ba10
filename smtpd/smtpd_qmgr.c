/*
 * smtpd_qmgr.c - rcptgate-smtpd's queue manager: delivers what the spool holds
 *
 * SYNOPSIS
 *   smtpd_qmgr_init(err, errlen);          after the privilege drop, base ready
 *   smtpd_qmgr_accepting(why, whylen);     a session asks before it queues
 *   smtpd_qmgr_queued(id, next_try);       a session committed a message
 *   smtpd_qmgr_counts(&deferred, &hold, &oldest);
 *   smtpd_qmgr_reload(); smtpd_qmgr_stop(all); smtpd_qmgr_running();
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
 *   SIGTERM cuts every transaction that has not sent its final dot, and
 *   the spool keeps the message: the next hop discards what it got. One
 *   waiting for the answer to its dot is let finish, within
 *   shutdown_timeout as the sessions are: its next hop may have the
 *   message already. Only one still waiting past that is cut, and then
 *   delivered again after the restart: at least once, never zero times.
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
 *
 * FILES
 *   This file holds the messages, their next hops' lines, the idle
 *   connections and the scans; smtpd_qmgr_dlv.c runs one transaction and
 *   records its recipients' answers; smtpd_qmgr_int.h is what they share.
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
#include "smtpd_qmgr_int.h"
#include "smtp_relay.h"
#include "smtp_session.h"

SPOOL *smtpd_spool;

static int qmgr_stopping;               /* SIGTERM: nothing new starts */
static int qmgr_broken;                 /* the last scan failed */
static int qmgr_unwritable;             /* a record of a delivery failed: no delivery until writes work */
static struct event *qmgr_scan_ev;      /* the next scan */
static struct event *qmgr_trigger_ev;   /* the FIFO */
static long long qmgr_scan_at_ms;       /* when qmgr_scan_ev fires, 0 not armed */
static long long qmgr_scan_began_ms;    /* when the last scan began */
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
static struct event *qmgr_open_ev;      /* the spool did not open at start: the next try */
static char qmgr_open_err[512];         /* why, as last logged */

static void qmgr_activate(const char *id);

/* smtpd_qmgr_now_ms - wall clock in milliseconds */
long long smtpd_qmgr_now_ms(void)
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
    long long now = smtpd_qmgr_now_ms();

    for (size_t i = 0; i < qmgr_nnb; i++)
        if (qmgr_nb[i].until_ms > now && strcmp(qmgr_nb[i].id, id) == 0)
            return qmgr_nb[i].until_ms;
    return 0;
}

/* qmgr_keep_out - id stays out of deliveries for maximal_backoff_time (one slot per id) */
static void qmgr_keep_out(const char *id)
{
    long long now = smtpd_qmgr_now_ms();
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
 * smtpd_qmgr_unrecorded - writing what happened to id failed (errno): with
 * keep_out (a delivery it would repeat) keep it out; and stop delivering
 * if the spool refuses writes. Out of descriptors or memory is a passing
 * shortage of ours, not the spool's: it does not stop the queue.
 */
void smtpd_qmgr_unrecorded(const char *id, int keep_out)
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
    long long now = smtpd_qmgr_now_ms();
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

/*
 * qmgr_wake_due - a scan for a next try falling due at when_ms, but not
 * sooner than a tenth of queue_run_delay after the last scan began. A
 * scan walks all of deferred/; during an outage of the inside the next
 * tries of thousands of messages fall due a fraction of a second apart,
 * and a walk for each (20,000 entries, back to back) stalled every
 * session of the loop. Postfix waits for its next queue run; a tenth of
 * it keeps a retry near its time. (A flush, the start and room freed
 * wake a scan at once: qmgr_wake_at.)
 */
static void qmgr_wake_due(long long when_ms)
{
    long long floor = qmgr_scan_began_ms + var_smtpd_queue_run_ms / 10;

    qmgr_wake_at(when_ms > floor ? when_ms : floor);
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

/* smtpd_qmgr_dest_gc - forget next hops with nothing running or waiting (a dead one is remembered) */
void smtpd_qmgr_dest_gc(void)
{
    QMGR_DEST **pp = &qmgr_dests, *dst;
    long long now = smtpd_qmgr_now_ms();

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
 * smtpd_qmgr_dest_run - start what the next hop's concurrency allows; while it
 * is dead, defer all that waits. A transaction ending inside the loop
 * (smtpd_qmgr_dlv_done) calls in again: that call returns, the loop goes on.
 */
void smtpd_qmgr_dest_run(QMGR_DEST *dst)
{
    if (dst->running)
        return;
    dst->running = 1;
    while (!qmgr_stopping && dst->wait_head) {
        int dead = dst->dead_until > smtpd_qmgr_now_ms();
        QMGR_DLV *d = dst->wait_head;

        if (!dead && dst->active >= var_smtpd_dest_concurrency)
            break;
        if ((dst->wait_head = d->next) == NULL)
            dst->wait_tail = &dst->wait_head;
        d->next = NULL;
        dst->active++;
        if (dead)
            smtpd_qmgr_dlv_dead(d);
        else
            smtpd_qmgr_dlv_start(d);
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
    smtpd_qmgr_dest_gc();
}

/* smtpd_qmgr_idle_put - keep a connection whose transaction ended for the next message to dst */
void smtpd_qmgr_idle_put(QMGR_DEST *dst, SMTP_RELAY *r, int uses)
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
 * smtpd_qmgr_idle_take - a kept connection to dst that takes another
 * transaction (RSET, MAIL for env; cb gets MAIL's reply), NULL none
 */
SMTP_RELAY *smtpd_qmgr_idle_take(QMGR_DEST *dst, const SMTP_RELAY_ENV *env, SMTP_RELAY_CB cb, void *arg,
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
        smtpd_qmgr_dlv_free(d);
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
 * smtpd_qmgr_report - a report to the sender about idx[0..n); 0 made (queued for
 * delivery), 1 none due or none possible, -1 error (tried again later)
 */
int smtpd_qmgr_report(QMGR_MSG *m, const size_t *idx, size_t n, int kind)
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
    if (n == 0 || smtpd_qmgr_report(m, idx, n, DSN_FAILED) < 0)
        return;                 /* kept to do: tried, and returned, again later */
    for (size_t k = 0; k < n; k++) {
        if (spool_mark(smtpd_spool, m->id, idx[k], SPOOL_RCPT_FAILED) < 0) {
            log_warn("%s: cannot mark <%s> failed: %s", m->id, m->env.rcpt[idx[k]].addr, strerror(errno));
            smtpd_qmgr_unrecorded(m->id, 1);
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
        smtpd_qmgr_unrecorded(m->id, 1);
    } else if (rc == 0) {
        smtpd_log_as("qmgr", "%s: removed", m->id);
        if (qmgr_deferred > 0)
            qmgr_deferred--;
    }
    /* 1: `rcptgate queue delete` was quicker; it said so itself. */
}

/*
 * smtpd_qmgr_deleted - `rcptgate queue delete` unlinked the message while it was
 * being delivered (the file stays readable through m->fd)
 */
int smtpd_qmgr_deleted(const QMGR_MSG *m)
{
    struct stat st;

    return m->fd >= 0 && fstat(m->fd, &st) == 0 && st.st_nlink == 0;
}

/*
 * smtpd_qmgr_on_hold - `rcptgate queue hold` moved the message to hold/ while it
 * was being delivered: what is left waits for the release, not for a try
 */
int smtpd_qmgr_on_hold(const QMGR_MSG *m)
{
    const char *q = spool_find(smtpd_spool, m->id);

    return q != NULL && strcmp(q, SPOOL_HOLD) == 0;
}

/*
 * smtpd_qmgr_msg_finish - every transaction of the try ended: return what
 * failed, then remove the message, expire it, or set its next try
 */
void smtpd_qmgr_msg_finish(QMGR_MSG *m)
{
    size_t *idx = xcalloc(m->env.nrcpt + 1, sizeof(*idx));
    size_t n = 0, todo = 0;
    long long now = smtpd_qmgr_now_ms() / 1000;
    long long lifetime = (long long) (m->env.dsn_kind ? var_smtpd_bounce_lifetime_ms
                                      : var_smtpd_queue_lifetime_ms) / 1000;

    if (smtpd_qmgr_deleted(m)) {
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
    if (todo > 0 && smtpd_qmgr_on_hold(m)) {
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
                smtpd_qmgr_dlv_set_reason(m, idx[k], "4.4.7", "delivery time expired");
        if (*m->env.sender && !m->env.dsn_kind)
            rc = smtpd_qmgr_report(m, idx, n, DSN_FAILED);
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
            if (smtpd_qmgr_report(m, idx, n, DSN_DELAYED) >= 0 && spool_mark_warned(smtpd_spool, m->id) < 0) {
                log_warn("%s: cannot record the delay warning: %s", m->id, strerror(errno));
                smtpd_qmgr_unrecorded(m->id, 0);      /* unwritable: the queue stops, the warning is not repeated */
            }
            m->env.warned = 1;
        }
        m->env.attempts++;
        if (spool_reason_save(smtpd_spool, &m->env) < 0)
            log_warn("%s: cannot save the deferral reasons: %s", m->id, strerror(errno));
        next = smtpd_qmgr_now_ms() + qmgr_backoff_ms(m->env.attempts);
        /* Whole seconds (an mtime), rounded up so the scan then finds it due. */
        if (spool_retry_at(smtpd_spool, m->id, (next + 999) / 1000) < 0) {
            log_warn("%s: cannot set its next try: %s", m->id, strerror(errno));
            smtpd_qmgr_unrecorded(m->id, 0);          /* nothing was delivered: no repeat to keep out */
        }
        qmgr_wake_due(((next + 999) / 1000) * 1000);
    }
done:
    free(idx);
    qmgr_msg_free(m);
    if (qmgr_more && qmgr_nactive <= var_smtpd_active_limit / 2)
        qmgr_wake_at(smtpd_qmgr_now_ms());
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
                (void) spool_retry_at(smtpd_spool, id, (smtpd_qmgr_now_ms() + var_smtpd_max_backoff_ms) / 1000 + 1);
        }
        if (m->fd >= 0)
            close(m->fd);
        free(m);
        return;
    }
    m->active_ms = smtpd_qmgr_now_ms();
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
        if (smtpd_qmgr_dlv_route(m->env.rcpt[i].addr, hop, sizeof(hop), &mx, dsn, sizeof(dsn), why, sizeof(why)) <= 0) {
            smtpd_qmgr_dlv_defer_local(m, i, dsn, why);
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
        smtpd_qmgr_dest_run(d->dest);
    /* Transactions start from the loop, so none has ended yet unless nothing was started. */
    if (--m->pending == 0)
        smtpd_qmgr_msg_finish(m);
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
    qmgr_scan_began_ms = smtpd_qmgr_now_ms();
    memset(&s, 0, sizeof(s));
    s.now = smtpd_qmgr_now_ms() / 1000;
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
    next = smtpd_qmgr_now_ms() + var_smtpd_queue_run_ms;
    if (s.earliest > 0 && s.earliest * 1000 < next)
        next = s.earliest * 1000;
    log_debug("queue %s: scanned %lld deferred, %lld held in %lld ms", spool_dir(smtpd_spool), n, h,
              smtpd_qmgr_now_ms() - qmgr_scan_began_ms);
    qmgr_wake_due(next);
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
    qmgr_wake_at(smtpd_qmgr_now_ms());
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
/* qmgr_start - the spool is open: events, the trigger FIFO, and a scan now */
static void qmgr_start(void)
{
    int tfd;

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
    qmgr_wake_at(smtpd_qmgr_now_ms());
}

/*
 * qmgr_open_cb - the spool could not be opened at start: try again every
 * QMGR_OPEN_RETRY_MS. Its lock is held by an smtpd still draining its
 * sessions after SIGTERM, say, or its directory is being fixed: without
 * this, mail queued before stayed undelivered for the process's life.
 */
static void qmgr_open_cb(evutil_socket_t fd, short what, void *arg)
{
    char err[512];
    struct timeval tv = {QMGR_OPEN_RETRY_MS / 1000, (QMGR_OPEN_RETRY_MS % 1000) * 1000};

    (void) fd;
    (void) what;
    (void) arg;
    /* Stopping, opened meanwhile, or relay_mode set back to proxy by a reload: no more tries. */
    if (qmgr_stopping || smtpd_spool != NULL || !qmgr_wanted())
        return;
    if ((smtpd_spool = spool_open(var_smtpd_queue_dir, 2, err, sizeof(err))) == NULL) {
        if (strcmp(err, qmgr_open_err) != 0) {
            log_warn("queue: %s; relaying as a proxy only until it opens", err);
            snprintf(qmgr_open_err, sizeof(qmgr_open_err), "%s", err);
        }
        evtimer_add(qmgr_open_ev, &tv);
        return;
    }
    log_info("queue %s: opened; mail is queued and delivered again", spool_dir(smtpd_spool));
    qmgr_start();
}

int smtpd_qmgr_init(char *err, size_t errlen)
{
    qmgr_stopping = 0;
    if (!qmgr_wanted())
        return 0;
    if ((smtpd_spool = spool_open(var_smtpd_queue_dir, 2, err, errlen)) == NULL) {
        struct timeval tv = {QMGR_OPEN_RETRY_MS / 1000, (QMGR_OPEN_RETRY_MS % 1000) * 1000};

        snprintf(qmgr_open_err, sizeof(qmgr_open_err), "%s", err);
        if (qmgr_open_ev == NULL && (qmgr_open_ev = evtimer_new(smtpd_base, qmgr_open_cb, NULL)) == NULL)
            log_fatal("queue: out of memory");
        evtimer_add(qmgr_open_ev, &tv);
        return -1;
    }
    qmgr_start();
    return 0;
}

/* smtpd_qmgr_reload - SIGHUP: a scan now plans the next with the new queue_run_delay; the rest is read where used */
void smtpd_qmgr_reload(void)
{
    /* relay_mode from proxy to a queueing mode: the queue opens now, not at the next restart */
    if (smtpd_spool == NULL && !qmgr_stopping && qmgr_wanted()) {
        if (qmgr_open_ev == NULL && (qmgr_open_ev = evtimer_new(smtpd_base, qmgr_open_cb, NULL)) == NULL)
            log_fatal("queue: out of memory");
        event_active(qmgr_open_ev, EV_TIMEOUT, 0);
        return;
    }
    qmgr_wake_at(smtpd_qmgr_now_ms());
}

/* qmgr_msg_at_dot - has one of m's transactions sent its final dot? */
static int qmgr_msg_at_dot(const QMGR_MSG *m)
{
    for (const QMGR_DLV *d = m->dlvs; d; d = d->mnext)
        if (d->relay != NULL && d->dot_sent)
            return 1;
    return 0;
}

int smtpd_qmgr_running(void)
{
    int n = 0;

    /* Transactions, not messages: one of a kept message still in its next hop's line never starts. */
    for (const QMGR_MSG *m = qmgr_active; m; m = m->next)
        for (const QMGR_DLV *d = m->dlvs; d; d = d->mnext)
            n += d->relay != NULL;
    return n;
}

/*
 * smtpd_qmgr_stop - SIGTERM: start nothing more and cut what runs (the
 * spool keeps it), except, until the end (all), a message one of whose
 * transactions has sent its final dot: its next hop may have taken it,
 * and one cut there would be delivered again after the restart. Once no
 * session and no delivery is left, close the spool.
 */
void smtpd_qmgr_stop(int all)
{
    int kept = 0;

    qmgr_stopping = 1;
    if (qmgr_open_ev) {
        event_free(qmgr_open_ev);
        qmgr_open_ev = NULL;
    }
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
    for (QMGR_MSG *m = qmgr_active, *next; m; m = next) {
        int keep = !all && qmgr_msg_at_dot(m);

        next = m->next;
        /* Short of its dot a transaction is cut (the next hop discards it); past it, in a kept message, it ends. */
        for (QMGR_DLV *d = m->dlvs; d; d = d->mnext)
            if (!(keep && d->dot_sent)) {
                smtp_relay_free(d->relay);
                d->relay = NULL;
            }
        if (keep) {
            kept++;
            continue;
        }
        if (m->pending > 0)
            log_info("%s: delivery cut by the stop; it stays queued", m->id);
        qmgr_msg_free(m);
    }
    if (kept > 0)
        log_info("stopping: %d message%s wait%s for the next hop's answer to the final dot "
                 "(at most shutdown_timeout)", kept, kept == 1 ? "" : "s", kept == 1 ? "s" : "");
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
    /*
     * What is let finish counts again, so each next hop's count comes back
     * to 0 as it ends (a transaction still in a line never starts: its
     * message stays until the end, and is cut there).
     */
    for (QMGR_MSG *m = qmgr_active; m; m = m->next)
        for (QMGR_DLV *d = m->dlvs; d; d = d->mnext)
            if (d->relay != NULL)
                d->dest->active++;
    smtpd_qmgr_dest_gc();
    if (smtpd_spool != NULL && smtp_session_count() == 0 && qmgr_active == NULL) {
        spool_close(smtpd_spool);
        smtpd_spool = NULL;
    }
}

/* smtpd_qmgr_queued - a session committed id: try it now if it is due and there is room */
void smtpd_qmgr_queued(const char *id, long long next_try)
{
    long long now = smtpd_qmgr_now_ms();

    qmgr_deferred++;
    if (smtpd_spool == NULL || qmgr_stopping || qmgr_find(id) != NULL)
        return;
    if (next_try * 1000 > now) {
        qmgr_wake_due(next_try * 1000);
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
        long long now = smtpd_qmgr_now_ms();

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
