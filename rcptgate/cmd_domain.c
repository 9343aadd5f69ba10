/*
 * cmd_domain.c - rcptgate domain add|del|list: the domains we accept
 *
 *   domain add DOMAIN [NEXTHOP] [--subdomains]
 *   domain del DOMAIN
 *   domain list
 *
 * DOMAIN is stored normalised (lowercase A-label, as addr_domain() gives
 * it), so "Bücher.Example" and "xn--bcher-kva.example" are one entry.
 * NEXTHOP is Postfix transport syntax ("smtp:[10.1.0.2]:25", several
 * comma-separated for failover: "smtp:[10.1.0.2]:25,[10.1.0.3]:25"), handed
 * to Postfix's transport_maps by lookupd: it is checked here, because a
 * typo would otherwise surface only as deferred mail, and stored with the
 * transport named once (see check_nexthop_norm()).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "check.h"
#include "nexthop.h"
#include "rcptgate.h"

/* The next hop must fit CHECK_WHY.nexthop. */
#define DOMAIN_NEXTHOP_MAX  511

/* domain_nexthop_ok - "transport:nexthop[,...]"; 0 or -1 with why */
static int domain_nexthop_ok(const char *nh, char *why, size_t whylen)
{
    const char *p;
    size_t n = strlen(nh);
    size_t tlen;

    if (n == 0 || n > DOMAIN_NEXTHOP_MAX) {
        snprintf(why, whylen, "must be 1 to %d characters", DOMAIN_NEXTHOP_MAX);
        return -1;
    }
    for (p = nh; *p; p++) {
        if ((unsigned char) *p <= ' ' || *p == 0x7f) {
            snprintf(why, whylen, "white space or control characters are not allowed");
            return -1;
        }
        if ((unsigned char) *p >= 0x80) {
            /* Postfix's smtp client takes an internationalised host only as its A-label. */
            snprintf(why, whylen, "not ASCII: give a host's A-label (xn--...)");
            return -1;
        }
    }
    /* The first element names the transport: "smtp:..." or ":..." (default transport). */
    if ((p = strchr(nh, ':')) == NULL) {
        snprintf(why, whylen, "expected transport:nexthop, such as smtp:[10.1.0.2]:25");
        return -1;
    }
    tlen = (size_t) (p - nh);
    if (nh[0] == '[') {
        /* Postfix's relayhost form: the transport is missing, not wrong. */
        snprintf(why, whylen, "no transport: write smtp:%.200s", nh);
        return -1;
    }
    if (strspn(nh, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") < tlen) {
        snprintf(why, whylen, "bad transport name \"%.*s\"", (int) tlen, nh);
        return -1;
    }
    if (strstr(nh, ",,") != NULL || nh[n - 1] == ',' || nh[0] == ',') {
        snprintf(why, whylen, "an empty element in the list");
        return -1;
    }
    /* Every "[" of an address literal is closed before the next element. */
    for (p = nh; *p; p++) {
        if (*p == '[') {
            const char *close = strchr(p, ']');
            const char *comma = strchr(p, ',');

            if (close == NULL || (comma != NULL && comma < close)) {
                snprintf(why, whylen, "unbalanced \"[\"");
                return -1;
            }
            p = close;
        } else if (*p == ']') {
            snprintf(why, whylen, "unbalanced \"]\"");
            return -1;
        }
    }
    return 0;
}

/* domain_name - normalise DOMAIN into out; 0 or -1 after saying why */
static int domain_name(const char *in, char *out)
{
    int rc;

    if (in[0] == '.') {
        rcptgate_error("domain \"%s\": give the parent domain and --subdomains", in);
        return -1;
    }
    if ((rc = addr_domain(in, strlen(in), out)) != ADDR_OK) {
        rcptgate_error("domain \"%s\": %s", in, addr_strerror(rc));
        return -1;
    }
    if (out[0] == '[') {
        rcptgate_error("domain \"%s\": an address literal is not a domain we accept mail for", in);
        return -1;
    }
    return 0;
}

/* domain_print - one line of domain list */
static int domain_print(const STORE_DOMAIN *d, void *ctx)
{
    printf("%s\t%s\t%s\t%s\n", d->name, d->nexthop[0] ? d->nexthop : "-",
           d->subdomains ? "subdomains" : "-", d->relay_mode && d->relay_mode[0] ? d->relay_mode : "-");
    return 0;
}

/* domain_relay_mode_ok - one of rcptgate-smtpd's relay modes (params_smtpd's relay_mode) */
static int domain_relay_mode_ok(const char *mode)
{
    return strcmp(mode, "proxy") == 0 || strcmp(mode, "queue") == 0 || strcmp(mode, "proxy-then-queue") == 0;
}

/* domain_add - domain add DOMAIN [NEXTHOP] [--subdomains] [--relay-mode=MODE] */
static int domain_add(int argc, char **argv)
{
    char name[ADDR_DOMAIN_MAX + 1];
    char why[256];
    char hop[DOMAIN_NEXTHOP_MAX + 1];
    const char *domain = NULL;
    const char *nexthop = NULL;
    const char *relay_mode = "";
    int subdomains = 0, rc;
    STORE_DOMAIN old;
    STORE *st;
    int had;

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--subdomains") == 0)
            subdomains = 1;
        else if (strncmp(argv[i], "--relay-mode=", 13) == 0)
            relay_mode = argv[i] + 13;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return rcptgate_usage();
        else if (domain == NULL)
            domain = argv[i];
        else if (nexthop == NULL)
            nexthop = argv[i];
        else
            return rcptgate_usage();
    }
    if (domain == NULL)
        return rcptgate_usage();
    if (domain_name(domain, name) < 0)
        return RCPTGATE_EX_NOTFOUND;
    /* "" (not given) is the [smtpd] relay_mode; a typo must not silently become it */
    if (*relay_mode && !domain_relay_mode_ok(relay_mode)) {
        rcptgate_error("relay mode \"%s\": expected proxy, queue or proxy-then-queue", relay_mode);
        return RCPTGATE_EX_NOTFOUND;
    }
    if (nexthop != NULL && domain_nexthop_ok(nexthop, why, sizeof(why)) < 0) {
        rcptgate_error("next hop \"%s\": %s", nexthop, why);
        return RCPTGATE_EX_NOTFOUND;
    }

    /*
     * Stored as Postfix's transport tables take a list: the transport
     * named once ("smtp:[a]:25,smtp:[b]:25" becomes "smtp:[a]:25,[b]:25").
     */
    if (nexthop != NULL) {
        if (check_nexthop_norm(nexthop, hop, sizeof(hop)) < 0) {
            rcptgate_error("next hop \"%s\": every element must use the first one's transport"
                           " (Postfix names it once: smtp:[10.1.0.2]:25,[10.1.0.3]:25)", nexthop);
            return RCPTGATE_EX_NOTFOUND;
        }
        nexthop = hop;
        /*
         * Postfix's transport_maps take any transport; rcptgate-smtpd only
         * SMTP. Stored all the same (a Postfix gateway may want it), but a
         * next hop smtpd cannot use would show only as 451 4.3.5 on every
         * recipient of the domain: say so now.
         */
        if ((rc = nexthop_check(nexthop, why, sizeof(why))) == -2)
            fprintf(stderr, "rcptgate: warning: next hop %s: rcptgate-smtpd cannot relay to %s "
                    "(Postfix's transport_maps can)\n", nexthop, why);
        else if (rc < 0) {
            /* A bad port or host: neither Postfix nor smtpd could use it. */
            rcptgate_error("next hop %s: %s", nexthop, why);
            return RCPTGATE_EX_NOTFOUND;
        }
    }
    if ((st = rcptgate_store(STORE_CREATE)) == NULL)
        return RCPTGATE_EX_STORE;
    if ((had = store_domain_get(st, name, &old)) < 0
        || store_domain_put_mode(st, name, nexthop ? nexthop : "", subdomains, relay_mode) < 0) {
        rcptgate_error("domain add: %s", store_error(st));
        store_close(st);
        return RCPTGATE_EX_STORE;
    }
    printf("%s domain %s, next hop %s%s%s%s\n", had ? "updated" : "added", name,
           nexthop ? nexthop : "(default transport)", subdomains ? ", subdomains too" : "",
           *relay_mode ? ", relay mode " : "", relay_mode);
    store_close(st);
    return RCPTGATE_EX_OK;
}

/* cmd_domain - rcptgate domain add|del|list */
int cmd_domain(int argc, char **argv)
{
    char name[ADDR_DOMAIN_MAX + 1];
    STORE *st;
    int rc;

    if (argc >= 2 && strcmp(argv[1], "add") == 0)
        return domain_add(argc, argv);
    if (argc == 3 && strcmp(argv[1], "del") == 0) {
        if (domain_name(argv[2], name) < 0)
            return RCPTGATE_EX_NOTFOUND;
        if ((st = rcptgate_store(STORE_CREATE)) == NULL)
            return RCPTGATE_EX_STORE;
        rc = store_domain_del(st, name);
        if (rc < 0)
            rcptgate_error("domain del: %s", store_error(st));
        else if (rc == 0)
            rcptgate_error("domain del: no such domain %s", name);
        else
            printf("deleted domain %s\n", name);
        store_close(st);
        return rc < 0 ? RCPTGATE_EX_STORE : rc == 0 ? RCPTGATE_EX_NOTFOUND : RCPTGATE_EX_OK;
    }
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        if ((st = rcptgate_store(0)) == NULL)
            return RCPTGATE_EX_STORE;
        rc = store_domain_walk(st, domain_print, NULL);
        if (rc < 0)
            rcptgate_error("domain list: %s", store_error(st));
        store_close(st);
        return rc < 0 ? RCPTGATE_EX_STORE : RCPTGATE_EX_OK;
    }
    rcptgate_error("usage: rcptgate domain add DOMAIN [NEXTHOP] [--subdomains] [--relay-mode=MODE]"
                   " | del DOMAIN | list");
    return RG_EX_USAGE;
}
