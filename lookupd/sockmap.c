/*
 * sockmap.c - Postfix socketmap protocol for rcptgate-lookupd
 *
 * Reads netstring requests "<map> <key>" and answers OK / NOTFOUND / TEMP /
 * PERM. A connection carries many requests; every complete request in the
 * input buffer is answered in one go, in order, and the replies leave in
 * one write. Malformed input closes the connection.
 *
 * Maps:
 *   recipients  relay_recipient_maps: "OK <kind>" for a valid recipient
 *   domains     relay_domains: "OK <our domain entry>"
 *   transport   transport_maps: "OK <nexthop>" for an address (or a domain)
 *               of one of our domains that has a next hop of its own.
 *               Postfix asks a socketmap table with the full recipient
 *               address only, never with the domain or ".parent"; other
 *               clients (postmap -q) may ask with a domain.
 * A store failure is "TEMP <reason>", never NOTFOUND: Postfix then defers
 * (4xx) instead of bouncing mail for a recipient we could not check.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "check.h"
#include "log.h"
#include "lookupd.h"
#include "netstring.h"

/* The rule engine's answer; large, so kept out of the stack. */
static CHECK_WHY sockmap_why;

/* sockmap_put - "<status> <text>" into out; returns the length */
static size_t sockmap_put(char *out, size_t size, const char *status, const char *text, size_t tlen)
{
    size_t sl = strlen(status);
    size_t n;

    memcpy(out, status, sl);
    out[sl] = ' ';
    n = lookupd_safe_text(out + sl + 1, size - sl - 1, text, tlen);
    return sl + 1 + n;
}

/* sockmap_temp - TEMP answer after a store failure */
static size_t sockmap_temp(char *out, size_t size, STORE *st, const char *unavailable)
{
    char text[300];
    const char *err;

    if (st == NULL) {
        snprintf(text, sizeof(text), "store unavailable: %s", unavailable);
    } else {
        err = store_error(st);
        snprintf(text, sizeof(text), "store error: %s", err && *err ? err : "unknown");
        lookupd_store_failed(err);
    }
    return sockmap_put(out, size, "TEMP", text, strlen(text));
}

/* sockmap_recipients - relay_recipient_maps */
static size_t sockmap_recipients(const char *key, size_t klen, char *out, size_t size, int *outcome)
{
    const char *reason;
    STORE *st = lookupd_store(&reason);
    int rc;

    if (st == NULL || (rc = check_rcpt(st, &lookupd_check_opts, key, klen, &sockmap_why)) < 0) {
        *outcome = SOCKMAP_TEMP;
        if (st != NULL && sockmap_why.rule == CHECK_FAIL_INCOMPLETE)
            return sockmap_temp(out, size, NULL, store_incomplete(st));     /* the handle is sound */
        return sockmap_temp(out, size, st, reason);
    }
    if (rc == 0) {
        *outcome = SOCKMAP_NOTFOUND;
        return sockmap_put(out, size, "NOTFOUND", "", 0);
    }

    /* Postfix treats "OK" with no value as a broken table: always say something. */
    {
        const char *kind = sockmap_why.rcpt.kind;

        if (kind == NULL || *kind == 0)
            kind = "valid";
        *outcome = SOCKMAP_OK;
        return sockmap_put(out, size, "OK", kind, strlen(kind));
    }
}

/* sockmap_domains - relay_domains */
static size_t sockmap_domains(const char *key, size_t klen, char *out, size_t size, int *outcome)
{
    const char *reason;
    STORE *st = lookupd_store(&reason);
    const char *dom;
    int rc;

    if (st == NULL || (rc = check_domain(st, key, klen, &sockmap_why)) < 0) {
        *outcome = SOCKMAP_TEMP;
        return sockmap_temp(out, size, st, reason);
    }
    if (rc == 0) {
        *outcome = SOCKMAP_NOTFOUND;
        return sockmap_put(out, size, "NOTFOUND", "", 0);
    }
    dom = sockmap_why.domain[0] ? sockmap_why.domain : "ok";
    *outcome = SOCKMAP_OK;
    return sockmap_put(out, size, "OK", dom, strlen(dom));
}

/* sockmap_printable - is s printable ASCII without spaces, as a next hop must be? */
static int sockmap_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char) *s <= ' ' || (unsigned char) *s >= 0x7f)
            return 0;
    return 1;
}

/* sockmap_transport - transport_maps: the next hop of the key's domain */
static size_t sockmap_transport(const char *key, size_t klen, char *out, size_t size, int *outcome)
{
    const char *reason;
    STORE *st = lookupd_store(&reason);
    int rc;

    /* Postfix asks with the full address; check_transport() reads it (see check.h). */
    if (st == NULL || (rc = check_transport(st, &lookupd_check_opts, key, klen, &sockmap_why)) < 0) {
        *outcome = SOCKMAP_TEMP;
        return sockmap_temp(out, size, st, reason);
    }

    /* Not ours, or ours with the default next hop: Postfix's default applies. */
    if (rc == 0) {
        *outcome = SOCKMAP_NOTFOUND;
        return sockmap_put(out, size, "NOTFOUND", "", 0);
    }
    /*
     * An entry stored before domain add refused them: Postfix's smtp
     * client dies on "smtp:[a],relay:[b]" and throttles the whole
     * transport, so the mail for this one domain waits instead.
     */
    if (sockmap_why.nexthop_mixed || !sockmap_printable(sockmap_why.nexthop)) {
        char why[ADDR_DOMAIN_MAX + 120];

        /* Not ASCII: sent as it is Postfix would take it for a malformed host, sent cleaned a wrong one. */
        snprintf(why, sizeof(why), "next hop of %s %s: rcptgate domain add it again", sockmap_why.domain,
                 sockmap_why.nexthop_mixed ? "names two transports" : "is not printable ASCII");
        log_warn("transport: %s", why);
        *outcome = SOCKMAP_TEMP;
        return sockmap_put(out, size, "TEMP", why, strlen(why));
    }
    *outcome = SOCKMAP_OK;
    return sockmap_put(out, size, "OK", sockmap_why.nexthop, strlen(sockmap_why.nexthop));
}

/* sockmap_reply - answer one request payload; returns the reply's length */
size_t sockmap_reply(const char *req, size_t len, char *out, size_t size)
{
    const char *sp = memchr(req, ' ', len);
    const char *key;
    size_t mlen;
    size_t klen;
    size_t n;
    int map;
    int outcome = SOCKMAP_PERM;

    if (sp == NULL || sp == req) {
        lookupd_stats.sockmap[SOCKMAP_MAP_UNKNOWN][SOCKMAP_PERM]++;
        static const char bad[] = "malformed request: expected \"<map> <key>\"";

        return sockmap_put(out, size, "PERM", bad, sizeof(bad) - 1);
    }
    mlen = (size_t) (sp - req);
    key = sp + 1;
    klen = len - mlen - 1;

#define SOCKMAP_IS(name) (mlen == sizeof(name) - 1 && memcmp(req, name, mlen) == 0)
    if (SOCKMAP_IS("recipients"))
        map = SOCKMAP_MAP_RECIPIENTS;
    else if (SOCKMAP_IS("domains"))
        map = SOCKMAP_MAP_DOMAINS;
    else if (SOCKMAP_IS("transport"))
        map = SOCKMAP_MAP_TRANSPORT;
    else {
        char text[128];
        size_t tl;

        memcpy(text, "unknown map ", 12);
        tl = 12 + lookupd_safe_text(text + 12, 65, req, mlen);
        lookupd_stats.sockmap[SOCKMAP_MAP_UNKNOWN][SOCKMAP_PERM]++;
        return sockmap_put(out, size, "PERM", text, tl);
    }
#undef SOCKMAP_IS

    if (klen == 0) {
        n = sockmap_put(out, size, "PERM", "empty key", 9);
    } else if (map == SOCKMAP_MAP_RECIPIENTS) {
        n = sockmap_recipients(key, klen, out, size, &outcome);
    } else if (map == SOCKMAP_MAP_DOMAINS) {
        n = sockmap_domains(key, klen, out, size, &outcome);
    } else {
        n = sockmap_transport(key, klen, out, size, &outcome);
    }
    lookupd_stats.sockmap[map][outcome]++;
    if (log_debug_enabled()) {
        char k[300];

        lookupd_safe_text(k, sizeof(k), key, klen);
        log_debug("socketmap %.*s %s -> %.*s", (int) mlen, req, k, (int) n, out);
    }
    return n;
}

/* sockmap_input - answer every complete request in conn->in; bytes used or -1 */
int sockmap_input(LOOKUPD_CONN *conn)
{
    char reply[SOCKMAP_REPLY_MAX];
    size_t pos = 0;

    for (;;) {
        const char *data;
        const char *why;
        size_t len;
        size_t used;
        size_t rlen;
        size_t need;
        char *dst;
        int rc;

        rc = netstring_decode(conn->in + pos, conn->in_len - pos, SOCKMAP_REQ_MAX,
                              &data, &len, &used, &why);
        if (rc == NETSTRING_MORE)
            break;
        if (rc == NETSTRING_BAD) {
            log_warn("socketmap client %s: malformed netstring: %s; closing the connection",
                     conn->peer, why);
            lookupd_stats.protocol_errors++;
            return -1;
        }
        rlen = sockmap_reply(data, len, reply, sizeof(reply));

        /* The reply goes straight into the connection's output buffer. */
        need = rlen + NETSTRING_MAX_DIGITS + 2;
        dst = lookupd_out_space(conn, need);
        lookupd_out_commit(conn, netstring_encode(dst, need, reply, rlen));
        pos += used;
    }
    return (int) pos;
}
