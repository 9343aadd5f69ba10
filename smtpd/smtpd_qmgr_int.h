/*
 * smtpd_qmgr_int.h - what smtpd_qmgr.c and smtpd_qmgr_dlv.c share
 *
 * The queue manager's messages, next hops and transactions, and the calls
 * between its two halves: smtpd_qmgr_dlv.c runs one transaction of a
 * message with one next hop and records each recipient's answer;
 * smtpd_qmgr.c holds the messages, their next hops' lines, the idle
 * connections, the scans and the public interface of smtpd_qmgr.h.
 * Private to those two files.
 */
#ifndef RG_SMTPD_QMGR_INT_H
#define RG_SMTPD_QMGR_INT_H

#include <stddef.h>

#include <event2/event.h>

#include "spool.h"
#include "smtp_relay.h"

#define QMGR_CHUNK      65536           /* body bytes read from the spool at once */
#define QMGR_BACKLOG    (256 * 1024)    /* wait for the relay to drain above this */
#define QMGR_HASH       4096            /* buckets of the active messages' ids */
#define QMGR_SOON       256             /* ids just queued, activated from the loop */
#define QMGR_IDLE_MS    2000            /* a connection kept for the next message (Postfix's smtp_connection_cache_time_limit) */
#define QMGR_OPEN_RETRY_MS 1000         /* a spool that did not open at start is tried again this often */
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
    int dot_sent;               /* the final dot is on its way: the next hop may have the message */
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

/* smtpd_qmgr.c: messages, next hops, idle connections */

/* smtpd_qmgr_now_ms - wall clock in milliseconds */
long long smtpd_qmgr_now_ms(void);

/*
 * smtpd_qmgr_unrecorded - writing what happened to id failed (errno): with
 * keep_out (a delivery it would repeat) keep it out; and stop delivering
 * if the spool refuses writes. Out of descriptors or memory is a passing
 * shortage of ours, not the spool's: it does not stop the queue.
 */
void smtpd_qmgr_unrecorded(const char *id, int keep_out);

/*
 * smtpd_qmgr_dest_run - start what the next hop's concurrency allows; while it
 * is dead, defer all that waits. A transaction ending inside the loop
 * (smtpd_qmgr_dlv_done) calls in again: that call returns, the loop goes on.
 */
void smtpd_qmgr_dest_run(QMGR_DEST *dst);

/* smtpd_qmgr_dest_gc - forget next hops with nothing running or waiting (a dead one is remembered) */
void smtpd_qmgr_dest_gc(void);

/* smtpd_qmgr_idle_put - keep a connection whose transaction ended for the next message to dst */
void smtpd_qmgr_idle_put(QMGR_DEST *dst, SMTP_RELAY *r, int uses);

/*
 * smtpd_qmgr_idle_take - a kept connection to dst that takes another
 * transaction (RSET, MAIL for env; cb gets MAIL's reply), NULL none
 */
SMTP_RELAY *smtpd_qmgr_idle_take(QMGR_DEST *dst, const SMTP_RELAY_ENV *env, SMTP_RELAY_CB cb, void *arg,
                                  int *uses);

/*
 * smtpd_qmgr_report - a report to the sender about idx[0..n); 0 made (queued for
 * delivery), 1 none due or none possible, -1 error (tried again later)
 */
int smtpd_qmgr_report(QMGR_MSG *m, const size_t *idx, size_t n, int kind);

/*
 * smtpd_qmgr_deleted - `rcptgate queue delete` unlinked the message while it was
 * being delivered (the file stays readable through m->fd)
 */
int smtpd_qmgr_deleted(const QMGR_MSG *m);

/*
 * smtpd_qmgr_on_hold - `rcptgate queue hold` moved the message to hold/ while it
 * was being delivered: what is left waits for the release, not for a try
 */
int smtpd_qmgr_on_hold(const QMGR_MSG *m);

/*
 * smtpd_qmgr_msg_finish - every transaction of the try ended: return what
 * failed, then remove the message, expire it, or set its next try
 */
void smtpd_qmgr_msg_finish(QMGR_MSG *m);

/* smtpd_qmgr_dlv.c: one transaction and its recipients' answers */

/*
 * smtpd_qmgr_dlv_route - the next hop of a recipient, as a session would relay it:
 * its domain's own, else default_nexthop; outside our domains (a report
 * to an outside sender) default_nexthop when set, else the domain by MX
 * (*mx set). 1 found, 0 none (dsn/why set), -1 the store cannot say.
 */
int smtpd_qmgr_dlv_route(const char *rcpt, char *hop, size_t size, int *mx, char *dsn, size_t dsnlen,
                      char *why, size_t whylen);

/* smtpd_qmgr_dlv_set_reason - keep a recipient's last status and reason (for defer/ID and a DSN) */
void smtpd_qmgr_dlv_set_reason(QMGR_MSG *m, size_t i, const char *dsn, const char *why);

/* smtpd_qmgr_dlv_defer_local - a recipient not tried at all (no route, store down): deferred */
void smtpd_qmgr_dlv_defer_local(QMGR_MSG *m, size_t i, const char *dsn, const char *why);

/* smtpd_qmgr_dlv_start - the transaction got its slot: go (not for a message deleted or held while it waited) */
void smtpd_qmgr_dlv_start(QMGR_DLV *d);

/* smtpd_qmgr_dlv_dead - a transaction for a dead next hop: deferred without trying, as Postfix says it */
void smtpd_qmgr_dlv_dead(QMGR_DLV *d);

/*
 * smtpd_qmgr_dlv_done - the transaction ended: free its slot, start the next,
 * finish the message. keep: the connection is between transactions (a
 * final reply, every RCPT or DATA refused) and may carry the next; else
 * it still owes callbacks (MAIL refused) and is closed.
 */
void smtpd_qmgr_dlv_done(QMGR_DLV *d, int keep);

/* smtpd_qmgr_dlv_free - a transaction's memory (its relay must be gone) */
void smtpd_qmgr_dlv_free(QMGR_DLV *d);

#endif
