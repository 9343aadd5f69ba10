/*
 * check.c - the recipient and domain rules (see check.h)
 *
 * A recipient is valid when its domain is one we accept (the domain
 * itself, or a parent that lets subdomains match) and the store holds,
 * in this order: the address, the address without its extension
 * ("user+tag" -> "user"), or the catch-all "@domain". Each step is one
 * indexed lookup; the first store error ends the check with -1, because
 * "could not tell" must never become "no such user".
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "check.h"
#include "nexthop.h"
#include "store.h"

/* check_copy - bounded copy into a why buffer */
static void check_copy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);

    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

/*
 * check_nexthop_norm - the transport named once in a next-hop list.
 * Postfix's smtp client splits the next hop at commas and white space and
 * takes each element for a host: "smtp:[b]:25" there is a malformed host,
 * a fatal error that throttles the whole transport.
 */
int check_nexthop_norm(const char *in, char *out, size_t size)
{
    const char *colon = strchr(in, ':');
    const char *p = in;
    size_t tlen;
    size_t n = 0;
    int first = 1;
    int rc = 0;

    if (size == 0)
        return -1;
    out[0] = 0;
    if (colon == NULL || strcspn(in, ", \t") < (size_t) (colon - in)) {
        check_copy(out, size, in);      /* no transport name: nothing to repeat */
        return 0;
    }
    tlen = (size_t) (colon - in);
    while (*p) {
        size_t len;
        size_t name;

        p += strspn(p, ", \t");
        if ((len = strcspn(p, ", \t")) == 0)
            break;
        if (!first) {
            name = nexthop_transport_len(p, len);
            if (name == tlen && strncasecmp(p, in, tlen) == 0) {
                p += tlen + 1;          /* the same transport again */
                len -= tlen + 1;
            } else if (name > 0) {
                rc = -1;                /* "relay:[b]" or "relay:b" after "smtp:[a]" */
            }
            if (n + 1 < size)
                out[n++] = ',';
        }
        {
            size_t take = len < size - 1 - n ? len : size - 1 - n;

            memcpy(out + n, p, take);
            n += take;
        }
        p += len;
        first = 0;
    }
    out[n] = 0;
    return rc;
}

/* check_found - record the domain entry that decided */
static int check_found(const STORE_DOMAIN *dom, enum check_rule rule, CHECK_WHY *why)
{
    why->rule = rule;
    check_copy(why->domain, sizeof(why->domain), dom->name);
    check_copy(why->relay_mode, sizeof(why->relay_mode), dom->relay_mode ? dom->relay_mode : "");

    /* An entry written before the admin command normalised it, answered as Postfix needs it. */
    why->nexthop_mixed = check_nexthop_norm(dom->nexthop ? dom->nexthop : "", why->nexthop,
                                            sizeof(why->nexthop)) < 0;
    return 1;
}

/*
 * check_ancestors - does name, or any parent of it, have an entry that
 * lets subdomains match? (name is then a subdomain of that entry.)
 */
static int check_ancestors(STORE *st, const char *name, CHECK_WHY *why)
{
    STORE_DOMAIN dom;
    int rc;

    for (; name != NULL; name = strchr(name, '.') ? strchr(name, '.') + 1 : NULL) {
        if ((rc = store_domain_get(st, name, &dom)) < 0) {
            why->rule = CHECK_FAIL_STORE;
            return -1;
        }
        if (rc > 0 && dom.subdomains)
            return check_found(&dom, CHECK_MATCH_PARENT, why);
    }
    why->rule = CHECK_MISS_DOMAIN;
    return 0;
}

/* check_domain_norm - is the normalised domain ours, itself or by a parent? */
static int check_domain_norm(STORE *st, const char *domain, CHECK_WHY *why)
{
    STORE_DOMAIN dom;
    const char *parent = strchr(domain, '.');
    int rc;

    if ((rc = store_domain_get(st, domain, &dom)) < 0) {
        why->rule = CHECK_FAIL_STORE;
        return -1;
    }
    if (rc > 0)
        return check_found(&dom, CHECK_MATCH_DOMAIN, why);
    if (parent == NULL) {
        why->rule = CHECK_MISS_DOMAIN;
        return 0;
    }
    return check_ancestors(st, parent + 1, why);
}

/* check_domain - do we accept mail for this domain (or ".parent" form)? */
int check_domain(STORE *st, const char *name, size_t len, CHECK_WHY *why)
{
    char domain[ADDR_DOMAIN_MAX + 1];
    int parent_form = 0;

    why->addr_err = 0;
    why->key[0] = why->domain[0] = why->nexthop[0] = why->relay_mode[0] = 0;
    if (len > 0 && name[0] == '.') {
        parent_form = 1;
        name++;
        len--;
    }
    if ((why->addr_err = addr_domain(name, len, domain)) != ADDR_OK) {
        why->address[0] = 0;
        why->rule = CHECK_MISS_ADDRESS;
        return 0;
    }
    snprintf(why->address, sizeof(why->address), "%s%s", parent_form ? "." : "", domain);

    /*
     * Postfix asks ".example.com" for "any subdomain of example.com": yes
     * when example.com, or a parent of it, lets subdomains match.
     */
    if (parent_form)
        return check_ancestors(st, domain, why);
    return check_domain_norm(st, domain, why);
}

/* check_rcpt_key - look one key up; 1 sets the entry and the rule */
static int check_rcpt_key(STORE *st, const char *key, enum check_rule rule, CHECK_WHY *why)
{
    int rc = store_rcpt_get(st, key, &why->rcpt);

    if (rc > 0) {
        why->rule = rule;
        check_copy(why->key, sizeof(why->key), key);
    } else if (rc < 0) {
        why->rule = CHECK_FAIL_STORE;
    }
    return rc;
}

/*
 * check_address - parse an address as Postfix or SMTP gave it into *a:
 * 1 when it names a domain to look up, 0 with why->rule (and addr_err)
 * set when it cannot be ours (bad syntax, null sender, address literal)
 */
static int check_address(const CHECK_OPTS *opts, const char *addr, size_t len, ADDR *a, CHECK_WHY *why)
{
    why->addr_err = 0;
    why->address[0] = why->key[0] = why->domain[0] = why->nexthop[0] = why->relay_mode[0] = 0;
    why->nexthop_mixed = 0;
    if ((why->addr_err = addr_parse(addr, len, opts->addr_flags, a)) != ADDR_OK) {
        why->rule = CHECK_MISS_ADDRESS;
        return 0;
    }
    check_copy(why->address, sizeof(why->address), a->key);
    if (a->is_null || a->is_literal || a->domain[0] == 0) {
        why->rule = CHECK_MISS_DOMAIN;
        return 0;
    }
    return 1;
}

/* check_rcpt - is this a valid recipient? */
int check_rcpt(STORE *st, const CHECK_OPTS *opts, const char *addr, size_t len, CHECK_WHY *why)
{
    ADDR a;
    char key[ADDR_KEY_SIZE + ADDR_DOMAIN_MAX + 2];
    char local[ADDR_KEY_SIZE];
    int rc;

    if (!check_address(opts, addr, len, &a, why))
        return 0;
    if ((rc = check_domain_norm(st, a.domain, why)) <= 0)
        return rc;

    if ((rc = check_rcpt_key(st, a.key, CHECK_MATCH_EXACT, why)) != 0)
        return rc;
    if (opts->delimiters && *opts->delimiters
        && addr_strip_extension(a.local, opts->delimiters, local)) {
        snprintf(key, sizeof(key), "%s@%s", local, a.domain);
        if ((rc = check_rcpt_key(st, key, CHECK_MATCH_EXTENSION, why)) != 0)
            return rc;
    }
    snprintf(key, sizeof(key), "@%s", a.domain);
    if ((rc = check_rcpt_key(st, key, CHECK_MATCH_CATCHALL, why)) != 0)
        return rc;
    /* A source that has never synced may hold it: not "user unknown", which bounces real mail. */
    if (*store_incomplete(st)) {
        why->rule = CHECK_FAIL_INCOMPLETE;
        return -1;
    }
    why->rule = CHECK_MISS_USER;
    return 0;
}

/*
 * check_transport_domain - the domain's next hop once its entry is known:
 * a domain entry without one means Postfix's default route
 */
static int check_transport_domain(int rc, CHECK_WHY *why)
{
    if (rc <= 0)
        return rc;
    if (why->nexthop[0] == 0) {
        why->rule = CHECK_MISS_NEXTHOP;
        return 0;
    }
    return 1;
}

/* check_transport - the next hop for an address, a domain or ".parent" */
int check_transport(STORE *st, const CHECK_OPTS *opts, const char *key, size_t len, CHECK_WHY *why)
{
    ADDR a;

    if (memchr(key, '@', len) == NULL)
        return check_transport_domain(check_domain(st, key, len, why), why);

    /*
     * A full address, as Postfix's trivial-rewrite asks: parsed exactly as
     * for relay_recipient_maps (case, quoting, IDN; the extension changes
     * nothing, the next hop is per domain), so one spelling routes like
     * every other. The recipient is not looked up: see check.h.
     */
    if (!check_address(opts, key, len, &a, why))
        return 0;
    return check_transport_domain(check_domain_norm(st, a.domain, why), why);
}

/* check_rule_text - a short phrase for logs and `rcptgate query` */
const char *check_rule_text(enum check_rule rule)
{
    switch (rule) {
    case CHECK_MATCH_EXACT:
        return "address found";
    case CHECK_MATCH_EXTENSION:
        return "address found without its extension";
    case CHECK_MATCH_CATCHALL:
        return "catch-all for the domain";
    case CHECK_MATCH_DOMAIN:
        return "domain accepted";
    case CHECK_MATCH_PARENT:
        return "parent domain accepts subdomains";
    case CHECK_MISS_ADDRESS:
        return "malformed address";
    case CHECK_MISS_DOMAIN:
        return "not a domain we accept";
    case CHECK_MISS_USER:
        return "no such recipient";
    case CHECK_MISS_NEXTHOP:
        return "domain uses the default next hop";
    case CHECK_FAIL_STORE:
        return "store failure";
    case CHECK_FAIL_INCOMPLETE:
        return "not in the store, which lacks a source never synced";
    }
    return "unknown rule";
}
