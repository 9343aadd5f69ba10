/*
 * policyd.c - Postfix policy delegation protocol for rcptgate-lookupd
 *
 * A request is "name=value" lines ended by an empty line; the reply is one
 * "action=..." line and an empty line. Postfix keeps the connection open
 * for many requests. Only RCPT-time requests are judged:
 *
 *   valid recipient                       action=DUNNO
 *   domain not ours, malformed address    action=DUNNO (Postfix's relay
 *                                         rules decide, not us)
 *   our domain, unknown recipient         action=550 5.1.1 TEXT
 *   store failure                         action=451 4.3.0 Temporary lookup failure
 *   any other protocol state              action=DUNNO
 *   a request type other than
 *   smtpd_access_policy                   action=DUNNO, logged
 *
 * The refusals are numeric actions because of what Postfix's smtpd makes
 * of an action: it always writes "<rcpt>: Recipient address rejected: "
 * before the text itself, and takes the reply code from a numeric action
 * (REJECT would be access_map_reject_code, 554). So "550 5.1.1 User
 * unknown" reaches the client as "550 5.1.1 <rcpt>: Recipient address
 * rejected: User unknown", byte for byte what Postfix answers from
 * relay_recipient_maps with show_user_unknown_table_name = no, and log
 * summaries count one reason, not one per address. A store failure gets
 * the code and status Postfix gives a failed table lookup (451 4.3.0);
 * at once, not DEFER_IF_PERMIT, like a table that cannot answer.
 *
 * Input that is not the protocol (a line without "=", a request over
 * 10 KB or 100 attributes, no request= attribute) is logged and the
 * connection closed: answering garbage would only hide a misconfiguration.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "check.h"
#include "log.h"
#include "lookupd.h"
#include "params.h"

static CHECK_WHY policyd_why;

typedef struct policyd_req {
    const char *request, *state, *rcpt;
    size_t request_len, state_len, rcpt_len;
    int have_request;
} POLICYD_REQ;

/* policyd_attr - remember the attributes we act on */
static void policyd_attr(POLICYD_REQ *req, const char *name, size_t nlen, const char *val, size_t vlen)
{
#define POLICYD_IS(s) (nlen == sizeof(s) - 1 && memcmp(name, s, nlen) == 0)
    if (POLICYD_IS("request")) {
        req->request = val;
        req->request_len = vlen;
        req->have_request = 1;
    } else if (POLICYD_IS("protocol_state")) {
        req->state = val;
        req->state_len = vlen;
    } else if (POLICYD_IS("recipient")) {
        req->rcpt = val;
        req->rcpt_len = vlen;
    }
#undef POLICYD_IS
}

/* policyd_eq - value equals a literal */
static int policyd_eq(const char *val, size_t len, const char *lit)
{
    return val != NULL && len == strlen(lit) && memcmp(val, lit, len) == 0;
}

/* policyd_decide - the action for one well-formed request */
static int policyd_decide(LOOKUPD_CONN *conn, const POLICYD_REQ *req, char *action, size_t size)
{
    const char *reason;
    STORE *st;
    int rc;

    if (!policyd_eq(req->request, req->request_len, "smtpd_access_policy")) {
        char rt[80];

        lookupd_safe_text(rt, sizeof(rt), req->request, req->request_len);
        log_warn("policy client %s: unknown request type \"%s\"; answering DUNNO", conn->peer, rt);
        snprintf(action, size, "DUNNO");
        return POLICYD_DUNNO;
    }
    if (!policyd_eq(req->state, req->state_len, "RCPT") || req->rcpt == NULL || req->rcpt_len == 0) {
        snprintf(action, size, "DUNNO");
        return POLICYD_DUNNO;
    }
    st = lookupd_store(&reason);
    if (st == NULL || (rc = check_rcpt(st, &lookupd_check_opts, req->rcpt, req->rcpt_len, &policyd_why)) < 0) {
        if (st != NULL)
            lookupd_store_failed(store_error(st));      /* logs it */
        snprintf(action, size, "451 4.3.0 Temporary lookup failure");
        return POLICYD_DEFER;
    }
    if (rc == 1 || policyd_why.rule != CHECK_MISS_USER) {
        /* Found, or not ours to judge (foreign domain, malformed address). */
        snprintf(action, size, "DUNNO");
        return POLICYD_DUNNO;
    }
    {
        char text[512];

        /* Postfix adds "<rcpt>: Recipient address rejected: " itself. */
        if (lookupd_safe_text(text, sizeof(text), var_lookupd_reject_text, strlen(var_lookupd_reject_text)) == 0)
            snprintf(text, sizeof(text), "User unknown");
        snprintf(action, size, "550 5.1.1 %s", text);
    }
    return POLICYD_REJECT;
}

/*
 * policyd_parse - one request at buf (avail bytes). Returns the bytes it
 * took, 0 if it is not complete yet, -1 (with *why) if it is malformed.
 */
static long policyd_parse(const char *buf, size_t avail, POLICYD_REQ *req, const char **why)
{
    size_t pos = 0;
    int attrs = 0;

    memset(req, 0, sizeof(*req));
    for (;;) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', avail - pos);
        const char *eq;
        size_t len;

        if (nl == NULL) {
            if (avail > POLICYD_REQ_MAX) {
                *why = "request longer than 10240 bytes";
                return -1;
            }
            return 0;
        }
        len = (size_t) (nl - line);
        pos += len + 1;
        if (pos > POLICYD_REQ_MAX) {
            *why = "request longer than 10240 bytes";
            return -1;
        }
        if (len > 0 && line[len - 1] == '\r')
            len--;                      /* tolerate CRLF from hand-typed tests */
        if (len == 0)
            break;                      /* the empty line ends the request */
        if (++attrs > POLICYD_ATTR_MAX) {
            *why = "more than 100 attributes";
            return -1;
        }
        if ((eq = memchr(line, '=', len)) == NULL || eq == line) {
            *why = eq ? "attribute without a name" : "line without \"=\"";
            return -1;
        }
        policyd_attr(req, line, (size_t) (eq - line), eq + 1, len - (size_t) (eq - line) - 1);
    }
    if (!req->have_request) {
        *why = "no request= attribute";
        return -1;
    }
    return (long) pos;
}

/* policyd_input - answer every complete request in conn->in; bytes used or -1 */
int policyd_input(LOOKUPD_CONN *conn)
{
    size_t pos = 0;

    while (pos < conn->in_len) {
        POLICYD_REQ req;
        const char *why;
        char action[1024];
        long used = policyd_parse(conn->in + pos, conn->in_len - pos, &req, &why);
        int outcome;
        int n;
        char *dst;

        if (used == 0)
            break;
        if (used < 0) {
            log_warn("policy client %s: malformed request: %s; closing the connection",
                     conn->peer, why);
            lookupd_stats.protocol_errors++;
            return -1;
        }
        outcome = policyd_decide(conn, &req, action, sizeof(action));
        lookupd_stats.policy[outcome]++;
        if (log_debug_enabled()) {
            char r[300];

            lookupd_safe_text(r, sizeof(r), req.rcpt ? req.rcpt : "", req.rcpt_len);
            log_debug("policy %s -> %s", r, action);
        }
        dst = lookupd_out_space(conn, strlen(action) + 10);
        n = snprintf(dst, strlen(action) + 10, "action=%s\n\n", action);
        lookupd_out_commit(conn, (size_t) n);
        pos += (size_t) used;
    }
    return (int) pos;
}
