/*
 * nexthop.c - the elements of a next-hop list, as rcptgate-smtpd relays to them
 *
 * A domain's next hop is stored in Postfix's transport syntax, the
 * transport named once: "smtp:[10.1.0.2]:25,[10.1.0.3]:25". Postfix's
 * transport_maps take any transport (lmtp:, a custom one); rcptgate-smtpd
 * speaks SMTP only, so it takes an element as
 *
 *   [smtp: | relay: | :] ( [host] | [ipv6:addr] | host ) [:port | :smtp]
 *
 * where ":" alone is Postfix's default transport (smtp). Both smtpd's
 * relay (smtp_relay.c) and the admin command, which warns when it stores a
 * next hop smtpd could not use, read the list here, so the two cannot
 * disagree on what smtpd will do with it.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

#include "nexthop.h"
#include "xalloc.h"

size_t nexthop_transport_len(const char *t, size_t len)
{
    size_t name = strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.");
    size_t rest;

    if (name == 0 || name >= len || t[name] != ':')
        return 0;
    rest = len - name - 1;
    if (rest == 4 && strncasecmp(t + name + 1, "smtp", 4) == 0)
        return 0;                       /* host:smtp */
    if (rest > 0 && t[name + 1] != '[' && memchr(t + name + 1, ':', rest) == NULL
        && strspn(t + name + 1, "0123456789") >= rest)
        return 0;                       /* host:port */
    return name;
}

/* nexthop_transport - strip a transport smtpd speaks; -1 with why for another */
static int nexthop_transport(char **tok, char *why, size_t whylen)
{
    char *t = *tok;
    size_t name;

    if (strncasecmp(t, "smtp:", 5) == 0)
        *tok = t + 5;
    else if (strncasecmp(t, "relay:", 6) == 0)
        *tok = t + 6;
    else if (t[0] == ':')
        *tok = t + 1;                   /* the default transport: SMTP */
    else if ((name = nexthop_transport_len(t, strlen(t))) > 0) {
        /* "lmtp:[h]:24", "lmtp:unix:/x", "local:x": a transport, not host:port (or host:smtp) */
        snprintf(why, whylen, "transport \"%.*s\": rcptgate-smtpd relays by SMTP only", (int) name, t);
        return -2;
    }
    return 0;
}

/* nexthop_element - see nexthop.h */
int nexthop_element(char *tok, NEXTHOP_HOP *hop, char *why, size_t whylen)
{
    char *host, *p;
    long port = 25;

    if (nexthop_transport(&tok, why, whylen) < 0)
        return -2;
    hop->bracket = *tok == '[';
    if (hop->bracket) {
        host = tok + 1;
        if ((p = strchr(host, ']')) == NULL) {
            snprintf(why, whylen, "unbalanced \"[\"");
            return -1;
        }
        *p++ = 0;
        if (strncasecmp(host, "ipv6:", 5) == 0)
            host += 5;
    } else {
        host = tok;
        p = strchr(tok, ':');
        if (p != NULL && strchr(p + 1, ':') != NULL) {
            snprintf(why, whylen, "an IPv6 address needs brackets: [ipv6:ADDRESS]");
            return -1;
        }
    }
    if (p != NULL && *p == ':') {
        char *end;
        struct servent *se;

        *p++ = 0;
        if (strcasecmp(p, "smtp") == 0) {
            port = 25;
        } else if (*p != 0 && strspn(p, "0123456789") == strlen(p)) {
            errno = 0;
            port = strtol(p, &end, 10);
            if (errno || *end || end == p || port < 1 || port > 65535) {
                snprintf(why, whylen, "port \"%.32s\": a number from 1 to 65535 (or a service name)", p);
                return -1;
            }
        } else if ((se = getservbyname(p, "tcp")) != NULL) {
            port = ntohs((uint16_t) se->s_port);        /* ":submission", as Postfix takes it */
        } else {
            snprintf(why, whylen, "port \"%.32s\": a number from 1 to 65535, or a service name of "
                     "/etc/services", p);
            return -1;
        }
    } else if (p != NULL && *p) {
        snprintf(why, whylen, "\"%.32s\" after \"]\": expected :PORT", p);
        return -1;
    }
    if (*host == 0) {
        snprintf(why, whylen, "no host");
        return -1;
    }
    if (strlen(host) >= sizeof(hop->host)) {
        snprintf(why, whylen, "host name too long");
        return -1;
    }
    snprintf(hop->host, sizeof(hop->host), "%s", host);
    hop->port = (int) port;
    return 0;
}

/* nexthop_check - see nexthop.h */
int nexthop_check(const char *list, char *why, size_t whylen)
{
    char *copy = xstrdup(list ? list : "");
    char *save = NULL, *tok;
    NEXTHOP_HOP hop;
    int n = 0, rc = 0;

    for (tok = strtok_r(copy, ", \t", &save); tok && rc == 0; tok = strtok_r(NULL, ", \t", &save)) {
        char elem[128], sub[200];

        snprintf(elem, sizeof(elem), "%s", tok);
        if ((rc = nexthop_element(tok, &hop, sub, sizeof(sub))) < 0)
            snprintf(why, whylen, "\"%s\": %s", elem, sub);
        n++;
    }
    free(copy);
    if (rc == 0 && n == 0) {
        snprintf(why, whylen, "no next hop");
        rc = -1;
    }
    return rc < 0 ? rc : n;
}
