/*
 * nexthop.h - the elements of a next-hop list, as rcptgate-smtpd relays to them
 */
#ifndef RCPTGATE_NEXTHOP_H
#define RCPTGATE_NEXTHOP_H

#include <stddef.h>

/* One element: where to connect. */
typedef struct nexthop_hop {
    char host[256];             /* a name or an address, without brackets */
    int port;                   /* 25 unless given */
    int bracket;                /* [host]: used as it is (no MX lookup) */
} NEXTHOP_HOP;

/*
 * nexthop_element - one element of a list ("smtp:[10.1.0.2]:25",
 * "[b]:2525", ":[c]", "relay:d", "e:2525"; tok is modified) into hop: 0,
 * -2 with why for another transport (which, named on the first element,
 * is every element's), -1 with why for a bad port, an unclosed "[" ...
 */
int nexthop_element(char *tok, NEXTHOP_HOP *hop, char *why, size_t whylen);

/*
 * nexthop_transport_len - does the element t[0..len) start with a
 * transport ("relay:", "lmtp:[h]:24", "local:x"), not a host and its port
 * ("mx:2525", "mx:smtp")? The transport name's length, else 0. As
 * Postfix reads a next hop: "NAME:" followed by a port or "smtp" is a
 * host; followed by anything else, a transport.
 */
size_t nexthop_transport_len(const char *t, size_t len);

/*
 * nexthop_check - can rcptgate-smtpd relay to every element of list
 * (split at commas and white space)? The count, or with why naming the
 * first element it could not use: -2 for another transport than SMTP
 * (Postfix may use it), -1 for what nobody can (a bad port or host).
 */
int nexthop_check(const char *list, char *why, size_t whylen);

#endif
