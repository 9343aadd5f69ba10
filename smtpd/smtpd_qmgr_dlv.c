/*
 * smtpd_qmgr_dlv.c - one transaction of a queued message with one next hop
 *
 * The queue manager's second half (smtpd_qmgr.c is the rest): a message's
 * recipients for one next hop go in one SMTP transaction through
 * smtp_relay.c, a connection kept idle from an earlier one if there is
 * one; the body is read from the spool file in pieces while the relay's
 * backlog is small. Each recipient's answer is recorded on disk as it
 * comes (done, deferred with its reason, or failed and reported to the
 * sender) and logged as Postfix's smtp does. When the transaction ends,
 * smtpd_qmgr_dlv_done hands the message back to smtpd_qmgr.c.
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
    long long now = smtpd_qmgr_now_ms();
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

/* smtpd_qmgr_dlv_set_reason - keep a recipient's last status and reason (for defer/ID and a DSN) */
void smtpd_qmgr_dlv_set_reason(QMGR_MSG *m, size_t i, const char *dsn, const char *why)
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
        smtpd_qmgr_unrecorded(m->id, 1);
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
    if (!smtpd_qmgr_deleted(m) && smtpd_qmgr_report(m, idx, n, DSN_RELAYED) < 0) {
        for (size_t j = 0; j < n; j++) {
            log_warn("%s: <%s>: delivered, but the sender's notice cannot be made: it stays to do "
                     "and is delivered again, and told, at the next try", m->id, m->env.rcpt[idx[j]].addr);
            smtpd_qmgr_dlv_set_reason(m, idx[j], "4.3.0", "delivered, but the notice to the sender could not be made");
            m->env.rcpt[idx[j]].state = SPOOL_RCPT_TODO;
            m->result[idx[j]] = QR_DEFER;
        }
        smtpd_qmgr_unrecorded(m->id, 0);      /* a spool that takes no writes stops the queue: no repeats meanwhile */
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
            smtpd_qmgr_dlv_set_reason(m, i, dsn, why);
        }
        qmgr_log_rcpt(m, d, i, "sent", dsn, reply);
        if (m->result[i] != QR_RELAYED)
            qmgr_mark_done(m, i);
        m->env.rcpt[i].state = SPOOL_RCPT_DONE;
        return;
    }
    qmgr_reason(d, reply, stage, why, sizeof(why));
    smtpd_qmgr_dlv_set_reason(m, i, dsn, why);
    if (code / 100 == 5) {
        m->result[i] = QR_FAIL;
        qmgr_log_rcpt(m, d, i, "bounced", dsn, why);
    } else {
        m->result[i] = QR_DEFER;
        qmgr_log_rcpt(m, d, i, "deferred", dsn, why);
    }
}

/* smtpd_qmgr_dlv_defer_local - a recipient not tried at all (no route, store down): deferred */
void smtpd_qmgr_dlv_defer_local(QMGR_MSG *m, size_t i, const char *dsn, const char *why)
{
    m->result[i] = QR_DEFER;
    smtpd_qmgr_dlv_set_reason(m, i, dsn, why);
    qmgr_log_rcpt(m, NULL, i, "deferred", dsn, why);
}

/*
 * smtpd_qmgr_dlv_route - the next hop of a recipient, as a session would relay it:
 * its domain's own, else default_nexthop; outside our domains (a report
 * to an outside sender) default_nexthop when set, else the domain by MX
 * (*mx set). 1 found, 0 none (dsn/why set), -1 the store cannot say.
 */
int smtpd_qmgr_dlv_route(const char *rcpt, char *hop, size_t size, int *mx, char *dsn, size_t dsnlen,
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

/* smtpd_qmgr_dlv_free - a transaction's memory (its relay must be gone) */
void smtpd_qmgr_dlv_free(QMGR_DLV *d)
{
    free(d->idx);
    free(d->accepted);
    free(d->rargs);
    free(d);
}

/*
 * smtpd_qmgr_dlv_done - the transaction ended: free its slot, start the next,
 * finish the message. keep: the connection is between transactions (a
 * final reply, every RCPT or DATA refused) and may carry the next; else
 * it still owes callbacks (MAIL refused) and is closed.
 */
void smtpd_qmgr_dlv_done(QMGR_DLV *d, int keep)
{
    QMGR_MSG *m = d->m;
    QMGR_DEST *dst = d->dest;

    qmgr_relayed(d);
    if (d->relay && keep) {
        /* Kept a moment for the next message to this next hop; QUIT later. */
        smtpd_qmgr_idle_put(dst, d->relay, d->uses);
    } else if (d->relay) {
        smtp_relay_free(d->relay);
    }
    d->relay = NULL;
    dst->active--;
    m->pending--;
    smtpd_qmgr_dest_run(dst);
    if (m->pending == 0)
        smtpd_qmgr_msg_finish(m);
    smtpd_qmgr_dest_gc();
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
    smtpd_qmgr_dlv_done(d, 1);
}

/* qmgr_stream_cut - the body cannot go on: cut before the dot (the downstream discards it), tried again later */
static void qmgr_stream_cut(QMGR_DLV *d, const char *why)
{
    log_warn("%s: %s", d->m->id, why + 10);
    smtp_relay_free(d->relay);
    d->relay = NULL;
    qmgr_dlv_all(d, 1, 451, why, "end of DATA");
    smtpd_qmgr_dlv_done(d, 0);
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
    d->dot_sent = 1;
    smtp_relay_dot(d->relay, qmgr_dot_cb, d);
}

/* qmgr_data_cb - 354: stream the body; anything else is every accepted recipient's answer */
static void qmgr_data_cb(void *arg, int code, const char *reply)
{
    QMGR_DLV *d = arg;

    if (code != 354) {
        qmgr_dlv_all(d, 1, code, reply, "DATA");
        smtpd_qmgr_dlv_done(d, 1);
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
        smtpd_qmgr_dlv_done(d, 1);
        return;
    }
    smtp_relay_data(d->relay, qmgr_data_cb, d);
}

static void qmgr_dlv_open(QMGR_DLV *d, int reuse);

/* qmgr_mail_cb - MAIL's reply (or no next hop reachable): a refusal is every recipient's */
static void qmgr_mail_cb(void *arg, int code, const char *reply)
{
    QMGR_DLV *d = arg;

    d->conn_ms = smtpd_qmgr_now_ms();
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
        d->dest->dead_until = smtpd_qmgr_now_ms() + var_smtpd_min_backoff_ms;
        qmgr_reason(d, reply, "MAIL FROM", d->dest->dead_why, sizeof(d->dest->dead_why));
        log_info("%s: next hop %s marked dead for %d s: %s", d->m->id, d->dest->nexthop,
                 var_smtpd_min_backoff_ms / 1000, d->dest->dead_why);
    }
    qmgr_dlv_all(d, 0, code, reply, "MAIL FROM");
    smtpd_qmgr_dlv_done(d, 0);
}

/* smtpd_qmgr_dlv_dead - a transaction for a dead next hop: deferred without trying, as Postfix says it */
void smtpd_qmgr_dlv_dead(QMGR_DLV *d)
{
    char why[sizeof(d->dest->dead_why) + 40];

    snprintf(why, sizeof(why), "delivery temporarily suspended: %s", d->dest->dead_why);
    d->start_ms = d->conn_ms = smtpd_qmgr_now_ms();
    for (size_t k = 0; k < d->n; k++)
        if (d->m->result[d->idx[k]] == QR_NONE)
            smtpd_qmgr_dlv_defer_local(d->m, d->idx[k], "4.4.1", why);
    smtpd_qmgr_dlv_done(d, 0);
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
    d->relay = reuse ? smtpd_qmgr_idle_take(d->dest, &env, qmgr_mail_cb, d, &d->uses) : NULL;
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

/* smtpd_qmgr_dlv_start - the transaction got its slot: go (not for a message deleted or held while it waited) */
void smtpd_qmgr_dlv_start(QMGR_DLV *d)
{
    if (smtpd_qmgr_deleted(d->m) || smtpd_qmgr_on_hold(d->m)) {
        for (size_t k = 0; k < d->n; k++)
            if (d->m->result[d->idx[k]] == QR_NONE)
                d->m->result[d->idx[k]] = QR_DEFER;
        smtpd_qmgr_dlv_done(d, 0);
        return;
    }
    d->start_ms = smtpd_qmgr_now_ms();
    qmgr_dlv_open(d, 1);
}