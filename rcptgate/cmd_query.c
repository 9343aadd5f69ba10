/*
 * cmd_query.c - rcptgate query ADDRESS: the verdict, and why
 *
 * Asks the same rule engine lookupd and smtpd ask (check_rcpt()), and
 * prints what decided: the rule, the matching entry with its kind,
 * source, directory object and when it was last seen, and the domain
 * entry with its next hop; when several directory objects carry the
 * address, which one holds it and which only claim it. Exit 0 found, 1
 * not found (or malformed), 2 the store could not answer (its error on
 * stderr).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ctype.h>

#include "check.h"
#include "keeper.h"
#include "params.h"
#include "params_rules.h"
#include "params_smtpd.h"
#include "rcptgate.h"
#include "rules.h"
#include "xalloc.h"

/*
 * Who holds the address, and who else claims it: one line per recipient
 * row (each source's holder) and per claim (an object of a source whose
 * address another object of that source held first). Printed only when
 * more than one row or object carries the address: a collision.
 */
typedef struct query_claims {
    char **line;
    size_t n;
} QUERY_CLAIMS;

/* query_claim_add - one holder or claimant as a line (c lives only during the call) */
static int query_claim_add(const STORE_CLAIM *c, void *ctx)
{
    QUERY_CLAIMS *q = ctx;
    const char *label = c->holds ? "holder:    " : "claimant:  ";
    const char *end = c->login ? "; its logins may send as it"
        : c->holds ? "" : "; does not get it (nor its logins)";
    char when[64];

    q->line = xrealloc(q->line, (q->n + 1) * sizeof(*q->line));
    if (c->object_id == 0)
        q->line[q->n++] = xasprintf("%ssource %s: a %s row of no directory object%s", label,
                                    c->source, c->kind, end);
    else
        q->line[q->n++] = xasprintf("%ssource %s: %s%s%s(guid %s, object %lld), %s%s%s%s%s", label,
                                    c->source, c->dn[0] ? "\"" : "", c->dn, c->dn[0] ? "\" " : "",
                                    c->guid, c->object_id, c->kind,
                                    c->flags & STORE_FLAG_INTERNAL_ONLY ? ", internal senders only" : "",
                                    c->holds ? "" : ", since ",
                                    c->holds ? "" : rcptgate_time(c->since, when, sizeof(when)), end);
    return 0;
}

/* query_claims - print the holders and claimants of address when there is a collision; -1 store error */
static int query_claims(STORE *st, const char *address)
{
    QUERY_CLAIMS q = {NULL, 0};
    int rc = store_claim_walk(st, address, query_claim_add, &q);

    for (size_t i = 0; i < q.n; i++) {
        if (rc == 0 && q.n > 1)
            printf("%s\n", q.line[i]);
        free(q.line[i]);
    }
    free(q.line);
    return rc;
}

/*
 * query_parent - an address of a subdomain of one of our domains added
 * without --subdomains: say so, that is the postmaster's real question.
 * 0, or -1 on a store error.
 */
static int query_parent(STORE *st, const char *address)
{
    const char *at = strrchr(address, '@');
    char domain[256];
    STORE_DOMAIN d;

    if (at == NULL || strlen(at + 1) >= sizeof(domain))
        return 0;
    for (size_t i = 0; at[1 + i]; i++)
        domain[i] = (char) tolower((unsigned char) at[1 + i]);
    domain[strlen(at + 1)] = 0;
    for (const char *p = strchr(domain, '.'); p != NULL; p = strchr(p + 1, '.')) {
        int rc = store_domain_get(st, p + 1, &d);

        if (rc < 0)
            return -1;
        if (rc > 0 && !d.subdomains) {
            printf("note:      %s is one of our domains, added without --subdomains "
                   "(rcptgate domain add %s ... --subdomains accepts its subdomains)\n", p + 1, p + 1);
            return 0;
        }
    }
    return 0;
}

/*
 * query_warn_only - an unknown recipient the rules only warn about: what
 * smtpd and the policy service do then, beside the tables' verdict
 */
static void query_warn_only(void)
{
    enum rules_mode mode = var_rules_warn_if_reject ? RULES_WARN : rules_mode(var_rules_unknown_rcpt);

    if (mode == RULES_ENFORCE)
        return;
    printf("note:      rcptgate-smtpd and the policy service %s it ([rules] %s): "
           "Postfix's relay_recipient_maps still refuses it\n",
           mode == RULES_WARN ? "accept and log a reject_warning for" : "accept",
           var_rules_warn_if_reject ? "warn_if_reject = yes"
           : mode == RULES_WARN ? "reject_unknown_recipient = warn" : "reject_unknown_recipient = off");
}

/* cmd_query - rcptgate query ADDRESS */
int cmd_query(int argc, char **argv)
{
    CHECK_OPTS opts;
    CHECK_WHY why;
    STORE *st;
    char when[64], key[ADDR_KEY_SIZE + 2], note[512];
    int rc;

    /* a whole transaction (client, HELO, sender, login): cmd_query_rules.c */
    if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
        return cmd_query_rules(argc, argv);
    if (argc != 2) {
        rcptgate_error("usage: rcptgate query ADDRESS");
        return RG_EX_USAGE;
    }
    if ((st = rcptgate_store(0)) == NULL)
        return RCPTGATE_EX_STORE;
    printf("address:   %s\n", argv[1]);
    /*
     * Past [store] max_age both daemons defer every recipient: so does the
     * answer here. While a source has never synced they defer only what
     * the store lacks (check_rcpt says so): judged below, with a note.
     */
    if ((rc = keeper_stale(st, note, sizeof(note))) != 0) {
        printf("verdict:   defer (%s)\n", rc > 0 ? "the directory data is stale" : "the store could not answer");
        printf("rule:      %s\n", rc > 0 ? "store_stale" : "store_failure");
        printf("note:      %s\n", rc > 0 ? note : store_error(st));
        store_close(st);
        return RCPTGATE_EX_STORE;
    }
    params_check_opts(&opts);
    memset(&why, 0, sizeof(why));
    rc = check_rcpt(st, &opts, argv[1], strlen(argv[1]), &why);
    if (why.address[0] && strcmp(why.address, argv[1]) != 0)
        printf("normal:    %s\n", why.address);
    printf("verdict:   %s\n", rc > 0 ? "accept (valid recipient)"
           : rc == 0 && why.rule == CHECK_MISS_DOMAIN ? "reject (not ours: only relayed for mynetworks "
           "and authenticated clients)"
           : rc == 0 ? "reject (not a valid recipient)"
           : why.rule == CHECK_FAIL_INCOMPLETE ? "defer (not in the store, and a source has never synced)"
           : "defer (the store could not answer)");
    printf("rule:      %s", check_rule_text(why.rule));
    if (why.rule == CHECK_MISS_ADDRESS)
        printf(": %s", addr_strerror(why.addr_err));
    putchar('\n');
    if (rc > 0 && why.rcpt.address != NULL) {
        printf("entry:     %s\n", why.key[0] ? why.key : why.rcpt.address);
        printf("kind:      %s\n", why.rcpt.kind);
        printf("source:    %s\n", why.rcpt.source);
        if (why.rcpt.dn && why.rcpt.dn[0])
            printf("dn:        %s\n", why.rcpt.dn);
        if (why.rcpt.guid && why.rcpt.guid[0])
            printf("guid:      %s\n", why.rcpt.guid);
        if (why.rcpt.flags & STORE_FLAG_INTERNAL_ONLY)
            printf("flags:     internal senders only\n");
        printf("last seen: %s\n", rcptgate_time(why.rcpt.last_seen, when, sizeof(when)));
        /* why.rcpt's strings live in the store's buffers: copy the key before asking again */
        snprintf(key, sizeof(key), "%s", why.rcpt.address);
        if (query_claims(st, key) < 0)
            rc = -1;
    }
    if (rc == 0 && why.rule == CHECK_MISS_USER)
        query_warn_only();
    if (rc == 0 && why.rule == CHECK_MISS_DOMAIN && query_parent(st, argv[1]) < 0)
        rc = -1;
    if (why.domain[0]) {
        printf("domain:    %s\n", why.domain);
        printf("next hop:  %s\n", why.nexthop[0] ? why.nexthop : "(default transport)");
        if (why.relay_mode[0])
            printf("relay mode: %s\n", why.relay_mode);
        else
            printf("relay mode: %s ([smtpd] relay_mode)\n", var_smtpd_relay_mode);
    }
    if (*store_incomplete(st))
        printf("note:      %s\n", store_incomplete(st));
    if (rc < 0) {
        if (why.rule != CHECK_FAIL_INCOMPLETE)
            rcptgate_error("store %s: %s", var_store_path, store_error(st));
        store_close(st);
        return RCPTGATE_EX_STORE;
    }
    store_close(st);
    return rc > 0 ? RCPTGATE_EX_OK : RCPTGATE_EX_NOTFOUND;
}
