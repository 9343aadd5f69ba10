/*
 * cmd_query.c - rcptgate query ADDRESS: the verdict, and why
 *
 * Asks the same rule engine lookupd and smtpd ask (check_rcpt()), and
 * prints what decided: the rule, the matching entry with its kind,
 * source, directory object and when it was last seen, and the domain
 * entry with its next hop. Exit 0 found, 1 not found (or malformed), 2 the
 * store could not answer (its error on stderr).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "check.h"
#include "params.h"
#include "rcptgate.h"

/* cmd_query - rcptgate query ADDRESS */
int cmd_query(int argc, char **argv)
{
    CHECK_OPTS opts;
    CHECK_WHY why;
    STORE *st;
    char when[64];
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
    params_check_opts(&opts);
    memset(&why, 0, sizeof(why));
    rc = check_rcpt(st, &opts, argv[1], strlen(argv[1]), &why);
    printf("address:   %s\n", argv[1]);
    if (why.address[0] && strcmp(why.address, argv[1]) != 0)
        printf("normal:    %s\n", why.address);
    printf("verdict:   %s\n", rc > 0 ? "accept (valid recipient)"
           : rc == 0 ? "reject (not a valid recipient)" : "defer (the store could not answer)");
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
    }
    if (why.domain[0]) {
        printf("domain:    %s\n", why.domain);
        printf("next hop:  %s\n", why.nexthop[0] ? why.nexthop : "(default transport)");
    }
    if (rc < 0) {
        rcptgate_error("store %s: %s", var_store_path, store_error(st));
        store_close(st);
        return RCPTGATE_EX_STORE;
    }
    store_close(st);
    return rc > 0 ? RCPTGATE_EX_OK : RCPTGATE_EX_NOTFOUND;
}
