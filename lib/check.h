/*
 * check.h - the recipient and domain rules, once for every front end
 *
 * lookupd's socketmap and policy service, the admin command's query and
 * smtpd all ask here; a check never knows which front end asked. Results
 * are -1 (could not tell: answer TEMP / 4xx), 0 (no), 1 (yes), and a
 * CHECK_WHY says which rule decided, for logs and `rcptgate query`.
 *
 * The checks do not open a transaction of their own: a caller that wants
 * one snapshot for several checks wraps them in store_read_begin/end.
 */
#ifndef RG_CHECK_H
#define RG_CHECK_H

#include "addr.h"
#include "store.h"

/* How addresses are read and matched ([address] in rcptgate.conf). */
typedef struct check_opts {
    const char *delimiters;     /* recipient_delimiter: "+" by default, "" none */
    int addr_flags;             /* ADDR_ALLOW_* for the parser */
} CHECK_OPTS;

/* Which rule decided. */
enum check_rule {
    CHECK_MATCH_EXACT = 1,      /* the address itself is in the store */
    CHECK_MATCH_EXTENSION,      /* the address without its +extension */
    CHECK_MATCH_CATCHALL,       /* the catch-all @domain */
    CHECK_MATCH_DOMAIN,         /* domain checks: the domain is ours */
    CHECK_MATCH_PARENT,         /* domain checks: a parent allowing subdomains */
    CHECK_MISS_ADDRESS,         /* malformed address (see addr_err) */
    CHECK_MISS_DOMAIN,          /* the domain is not one we accept */
    CHECK_MISS_USER,            /* our domain, no such recipient */
    CHECK_MISS_NEXTHOP,         /* transport: our domain, default next hop */
    CHECK_FAIL_STORE,           /* the store could not answer */
    CHECK_FAIL_INCOMPLETE,      /* not in the store, which lacks a source never synced (store_incomplete) */
};

typedef struct check_why {
    enum check_rule rule;
    int addr_err;                       /* with CHECK_MISS_ADDRESS */
    char address[ADDR_KEY_SIZE];        /* the normal form asked about */
    char key[ADDR_KEY_SIZE];            /* the store key that matched */
    char domain[ADDR_DOMAIN_MAX + 2];   /* our domain entry that covers it */
    char nexthop[512];                  /* that domain's next hop, "" default */
    int nexthop_mixed;                  /* it names two transports: Postfix cannot use it */
    char relay_mode[20];                /* that domain's smtpd relay_mode, "" default */
    STORE_RCPT rcpt;                    /* the entry; pointers valid until next store call */
} CHECK_WHY;

/*
 * check_rcpt - is this a valid recipient? addr is as Postfix or SMTP
 * gave it (len bytes, brackets optional). 1 yes, 0 no, -1 store failure,
 * or (why->rule CHECK_FAIL_INCOMPLETE) no such recipient in a store that
 * lacks a source: "try later", but the handle is sound.
 */
int check_rcpt(STORE *st, const CHECK_OPTS *opts, const char *addr, size_t len, CHECK_WHY *why);

/*
 * check_domain - do we accept mail for this domain? name may be a domain
 * or Postfix's parent form ".example.com" (a subdomain of example.com).
 * 1 yes (why->domain, why->nexthop set), 0 no, -1 store failure.
 */
int check_domain(STORE *st, const char *name, size_t len, CHECK_WHY *why);

/*
 * check_transport - the next hop for a transport_maps key. Postfix asks a
 * socketmap table with the full recipient address only ("Alice+x@Example.COM",
 * never the domain); postmap -q and other clients may ask with a domain or
 * ".parent". An address is read with the recipients rules and routed by its
 * domain, whether or not the recipient itself is valid (validity is
 * relay_recipient_maps' job; the domain's own server bounces what it does not
 * know). 1: ours with a next hop of its own (why->nexthop); 0: ours with the
 * default next hop (CHECK_MISS_NEXTHOP, why->domain set), not ours, or
 * malformed; -1 store failure.
 */
int check_transport(STORE *st, const CHECK_OPTS *opts, const char *key, size_t len, CHECK_WHY *why);

/*
 * check_nexthop_norm - a next-hop list as Postfix's transport tables take
 * it: the transport named once, before the first element
 * ("smtp:[10.1.0.2]:25,[10.1.0.3]:25"). A later element that names the
 * first one's transport again ("smtp:[a]:25,smtp:[b]:25") loses the name.
 * 0, or -1 when a later element names another transport ("smtp:[a],relay:[b]":
 * one list has one transport). out holds size bytes (truncated to fit).
 */
int check_nexthop_norm(const char *in, char *out, size_t size);

/* check_rule_text - a short phrase for a rule, for logs and query output */
const char *check_rule_text(enum check_rule rule);

#endif
