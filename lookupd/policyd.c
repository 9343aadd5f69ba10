/*
 * policyd.c - Postfix policy delegation protocol for rcptgate-lookupd
 *
 * A request is "name=value" lines ended by an empty line; the reply is one
 * "action=..." line and an empty line. Postfix keeps the connection open
 * for many requests. Only RCPT-time requests are judged, by the rules
 * every front end shares (lib/rules.c), with the same [rules] settings
 * and mynetworks as rcptgate-smtpd:
 *
 *   client_address      client access list; trusted when in mynetworks
 *   client_name         named in client access replies
 *   helo_name           HELO access list, invalid, non-FQDN, forged HELO
 *                       (our own name is [rules] hostname, as smtpd's:
 *                       Postfix sends its server_address, not its
 *                       myhostname)
 *   sender              sender access list, non-FQDN, forged own-domain
 *                       sender from an untrusted unauthenticated client
 *   sasl_username       authenticated: the sender must be the login's own
 *                       (reject_sender_login_mismatch), and the client
 *                       may relay and skips the heuristics
 *   recipient           the open-relay address forms, recipient access
 *                       list, unknown user, "internal senders only" groups
 *
 * What smtpd adds and this service does not (Postfix sends no DNS
 * answers): DNSBL, RHSBL, the unknown sender domain; Postfix's own
 * reject_rbl_client and reject_unknown_sender_domain do those. Relaying
 * is Postfix's to decide: it knows its own local and virtual domains
 * (postmaster@ the gateway itself), which the store does not, and its
 * reject_unauth_destination refuses the rest with the very reply smtpd
 * gives ("554 5.7.1 <rcpt>: Relay access denied"). Answers:
 *
 *   accepted, not at RCPT, or a domain    action=DUNNO (Postfix's other
 *   not ours                              restrictions still apply)
 *   refused                               action=CODE X.Y.Z TEXT
 *   store failure                         action=451 4.3.0 Temporary lookup failure
 *   a request type other than
 *   smtpd_access_policy                   action=DUNNO, logged
 *
 * The refusals are numeric actions because of what Postfix's smtpd makes
 * of an action: it always writes "<rcpt>: Recipient address rejected: "
 * before the text itself, and takes the reply code from a numeric action
 * (REJECT would be access_map_reject_code, 554). So the text is what
 * follows that prefix in smtpd's own reply (rules_policy_text()), and
 * "550 5.1.1 User unknown" reaches the client as "550 5.1.1 <rcpt>:
 * Recipient address rejected: User unknown", byte for byte what Postfix
 * answers from relay_recipient_maps with show_user_unknown_table_name =
 * no, and log summaries count one reason, not one per address. A store
 * failure gets the code and status Postfix gives a failed table lookup
 * (451 4.3.0); at once, not DEFER_IF_PERMIT, like a table that cannot
 * answer. A warn-only rule logs "reject_warning" here and answers DUNNO.
 *
 * Input that is not the protocol (a line without "=", a NUL byte, a
 * request over 10 KB or 100 attributes, no request= attribute) is logged
 * and the connection closed: answering garbage would only hide a
 * misconfiguration.
 */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "lookupd.h"
#include "params.h"
#include "rules.h"

/* One attribute's value, as given (not NUL-terminated). */
typedef struct policyd_val {
    const char *p;
    size_t len;
} POLICYD_VAL;

typedef struct policyd_req {
    POLICYD_VAL request, state, rcpt, client_addr, client_name, helo, sender, login, queue_id, proto;
    int have_request;
} POLICYD_REQ;

/* policyd_attr - remember the attributes we act on */
static void policyd_attr(POLICYD_REQ *req, const char *name, size_t nlen, const char *val, size_t vlen)
{
    static const struct {
        const char *name;
        size_t off;
    } attrs[] = {
        {"request", offsetof(POLICYD_REQ, request)},
        {"protocol_state", offsetof(POLICYD_REQ, state)},
        {"recipient", offsetof(POLICYD_REQ, rcpt)},
        {"client_address", offsetof(POLICYD_REQ, client_addr)},
        {"client_name", offsetof(POLICYD_REQ, client_name)},
        {"helo_name", offsetof(POLICYD_REQ, helo)},
        {"sender", offsetof(POLICYD_REQ, sender)},
        {"sasl_username", offsetof(POLICYD_REQ, login)},
        {"queue_id", offsetof(POLICYD_REQ, queue_id)},
        {"protocol_name", offsetof(POLICYD_REQ, proto)},
    };

    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
        if (nlen == strlen(attrs[i].name) && memcmp(name, attrs[i].name, nlen) == 0) {
            POLICYD_VAL *v = (POLICYD_VAL *) ((char *) req + attrs[i].off);

            v->p = val;
            v->len = vlen;
            if (i == 0)
                req->have_request = 1;
            return;
        }
    }
}

/* policyd_eq - value equals a literal */
static int policyd_eq(const POLICYD_VAL *v, const char *lit)
{
    return v->p != NULL && v->len == strlen(lit) && memcmp(v->p, lit, v->len) == 0;
}

/*
 * policyd_str - a value as a string in buf: NULL when absent or empty and
 * empty_null is set. Longer than buf is cut: every buffer is larger than
 * the longest name the rules take, so a cut one is refused as malformed,
 * never read as another; the addresses' hold a whole request, never cut
 * (a cut sender would be judged by the domain the cut left it).
 */
static const char *policyd_str(const POLICYD_VAL *v, char *buf, size_t size, int empty_null)
{
    size_t n;

    if (v->p == NULL || (v->len == 0 && empty_null))
        return empty_null ? NULL : "";
    n = v->len < size - 1 ? v->len : size - 1;
    memcpy(buf, v->p, n);
    buf[n] = 0;
    return buf;
}

/* policyd_decide - the action for one well-formed request */
static int policyd_decide(LOOKUPD_CONN *conn, const POLICYD_REQ *req, char *action, size_t size)
{
    char rcpt[POLICYD_REQ_MAX + 1], sender[POLICYD_REQ_MAX + 1], addr[128], name[600], helo[600],
        login[600], qid[64], proto[16], text[RULES_REPLY_LEN], safe[RULES_REPLY_LEN];
    static char rcpt_ext[2 * POLICYD_REQ_MAX + 3], sender_ext[2 * POLICYD_REQ_MAX + 3];
    const char *reason;
    RULES_INPUT in;
    RULES_RESULT res;
    STORE *st;

    if (!policyd_eq(&req->request, "smtpd_access_policy")) {
        char rt[80];

        lookupd_safe_text(rt, sizeof(rt), req->request.p, req->request.len);
        log_warn("policy client %s: unknown request type \"%s\"; answering DUNNO", conn->peer, rt);
        snprintf(action, size, "DUNNO");
        return POLICYD_DUNNO;
    }
    if (!policyd_eq(&req->state, "RCPT") || req->rcpt.p == NULL || req->rcpt.len == 0) {
        snprintf(action, size, "DUNNO");
        return POLICYD_DUNNO;
    }
    if ((st = lookupd_store(&reason)) == NULL) {
        snprintf(action, size, "451 4.3.0 Temporary lookup failure");
        return POLICYD_DEFER;
    }
    memset(&in, 0, sizeof(in));
    in.store = st;
    in.in_read = 1;                     /* lookupd_store()'s, ended by the loop */
    /* Postfix sends addresses in its internal form: "john doe@example.com" for <"john doe"@example.com>. */
    in.rcpt = addr_external(policyd_str(&req->rcpt, rcpt, sizeof(rcpt), 0), rcpt_ext, sizeof(rcpt_ext));
    in.client_addr = policyd_str(&req->client_addr, addr, sizeof(addr), 0);
    in.client_name = policyd_str(&req->client_name, name, sizeof(name), 1);
    in.helo = policyd_str(&req->helo, helo, sizeof(helo), 1);
    /* Postfix sends "sender=" for the null sender; no attribute at all: no MAIL FROM known */
    in.sender = req->sender.p ? addr_external(policyd_str(&req->sender, sender, sizeof(sender), 0),
                                              sender_ext, sizeof(sender_ext)) : NULL;
    in.login = policyd_str(&req->login, login, sizeof(login), 1);
    in.trusted = rules_trusted(in.client_addr);
    /* Postfix's reject_unauth_destination decides relaying: it knows its own local and virtual domains */
    in.relay_elsewhere = 1;
    in.myhostname = lookupd_hostname;
    in.queue_id = policyd_str(&req->queue_id, qid, sizeof(qid), 1);
    in.proto = policyd_str(&req->proto, proto, sizeof(proto), 1);
    if (rules_check(&in, &res) == 0) {
        snprintf(action, size, "DUNNO");
        return POLICYD_DUNNO;
    }
    if (strcmp(res.rule, "store_failure") == 0 && *store_error(st))
        lookupd_store_failed(store_error(st));  /* logs it; answers TEMP until reopened */
    if (strcmp(res.rule, "reject_unknown_recipient") == 0 && *var_lookupd_reject_text)
        snprintf(text, sizeof(text), "%d 5.1.1 %s", res.code, var_lookupd_reject_text);
    else
        rules_policy_text(&res, in.rcpt, text, sizeof(text));
    /* one line, printable: the text may hold what the client sent (HELO, sender) */
    if (lookupd_safe_text(safe, sizeof(safe), text, strlen(text)) == 0)
        snprintf(safe, sizeof(safe), "%d %s", res.code, res.code >= 500 ? "5.7.1 Rejected" : "4.3.0 Try again later");
    snprintf(action, size, "%s", safe);
    return res.code >= 500 ? POLICYD_REJECT : POLICYD_DEFER;
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
        if (memchr(line, 0, len) != NULL) {
            *why = "NUL byte in an attribute";
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

            lookupd_safe_text(r, sizeof(r), req.rcpt.p ? req.rcpt.p : "", req.rcpt.len);
            log_debug("policy %s -> %s", r, action);
        }
        dst = lookupd_out_space(conn, strlen(action) + 10);
        n = snprintf(dst, strlen(action) + 10, "action=%s\n\n", action);
        lookupd_out_commit(conn, (size_t) n);
        pos += (size_t) used;
    }
    return (int) pos;
}
