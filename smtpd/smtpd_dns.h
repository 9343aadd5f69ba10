/*
 * smtpd_dns.h - asynchronous DNS for rcptgate-smtpd (c-ares in the event loop)
 *
 * What the checks need from DNS, looked up without blocking the process:
 * the client's name (PTR, then forward confirmation, as Postfix: a name
 * that does not resolve back to the address is "unknown"), whether the
 * client address is listed in the DNSBL zones ([smtpd] dnsbl), whether
 * the sender domain is listed in the RHSBL zones ([smtpd] rhsbl), and
 * whether the sender domain exists (MX, else A or AAAA). Answers land in
 * c->name and c->dns; a timeout or SERVFAIL is SMTPD_DNS_TEMP, never a
 * listing. /etc/hosts is read first, so loopback clients are named
 * without a query.
 */
#ifndef RG_SMTPD_DNS_H
#define RG_SMTPD_DNS_H

#include "smtpd.h"

typedef struct smtpd_dns SMTPD_DNS;

/*
 * smtpd_dns_create - a resolver in base; servers "" reads
 * /etc/resolv.conf, else "127.0.0.1:5353,[::1]:53". NULL with err set.
 */
SMTPD_DNS *smtpd_dns_create(struct event_base *base, const char *servers, int timeout_ms,
                            char *err, size_t errlen);
void smtpd_dns_free(SMTPD_DNS *dns);

/*
 * smtpd_dns_client - start the reverse lookup (when reverse_lookup is on;
 * else c->name = "unknown") and the DNSBL queries (when zones are set and
 * the client is not trusted) for c. c->name is "unknown" until answered.
 */
void smtpd_dns_client(SMTPD_DNS *dns, SMTPD_CLIENT *c);

/*
 * smtpd_dns_sender - start the sender domain lookups: existence (when
 * reject_unknown_sender_domain is not off) and RHSBL zones. domain is
 * the sender's domain (an A-label); nothing for the null sender.
 * Answers of an earlier sender of the same session are discarded.
 */
void smtpd_dns_sender(SMTPD_DNS *dns, SMTPD_CLIENT *c, const char *domain);

/*
 * smtpd_dns_wait - call cb(arg) from the event loop once no lookup of c is
 * pending (soon, if none is). One waiter per client; a new call replaces it.
 */
void smtpd_dns_wait(SMTPD_DNS *dns, SMTPD_CLIENT *c, void (*cb)(void *), void *arg);

/*
 * smtpd_dns_cancel - forget c's lookups and waiter (the session ends);
 * answers that arrive later are dropped. Frees the c->dns strings.
 */
void smtpd_dns_cancel(SMTPD_DNS *dns, SMTPD_CLIENT *c);

/*
 * Where mail for a domain goes (smtp_relay.c with mx set: the queue's
 * mail to outside domains, such as a DSN to its sender): the MX hosts in
 * preference order (equal ones in random order), each with its A then
 * AAAA addresses; with no MX, the domain's own addresses (RFC 5321 5.1).
 */
typedef struct smtpd_dns_mx SMTPD_DNS_MX;

typedef struct smtpd_dns_mx_addr {
    char name[SMTPD_NAME_LEN];  /* the exchanger ("mx1.example.org"), or the domain itself */
    char addr[SMTPD_ADDR_LEN];  /* "192.0.2.25", "2001:db8::25" */
} SMTPD_DNS_MX_ADDR;

/*
 * The answer: status SMTPD_DNS_YES with the addresses to try (n > 0), or
 * a reply line to give for the domain's mail:
 *   SMTPD_DNS_NO   "550 5.4.4 ..." NXDOMAIN, or no MX and no address;
 *                  "556 5.1.10 ..." a null MX (RFC 7505);
 *   SMTPD_DNS_TEMP "451 4.4.3 ..." a timeout or SERVFAIL, or exchangers
 *                  without any address (a DNS mistake is deferred, never
 *                  bounced).
 */
typedef void (*SMTPD_DNS_MX_CB)(void *arg, int status, const SMTPD_DNS_MX_ADDR *addrs, int n,
                                const char *reply);

/*
 * smtpd_dns_mx - start the lookup of domain (an A-label); cb(arg, ...)
 * comes from the event loop exactly once, never from inside this call,
 * unless smtpd_dns_mx_cancel() came first. The handle is gone after cb.
 */
SMTPD_DNS_MX *smtpd_dns_mx(SMTPD_DNS *dns, const char *domain, SMTPD_DNS_MX_CB cb, void *arg);

/*
 * smtpd_dns_name - the addresses of one host name (a next hop written
 * "[name]", or a name where no MX lookup is wanted): the hosts file
 * first (every line naming it), then DNS's A and AAAA records, each
 * family in the order given,
 * IPv4 first, never the MX. The answer comes as smtpd_dns_mx's, with
 * name as each address's name, except that a name without addresses is
 * SMTPD_DNS_TEMP (451 4.4.3): it is the postmaster's next hop, so mail
 * waits for the fix instead of bouncing. Cancelled with
 * smtpd_dns_mx_cancel().
 */
SMTPD_DNS_MX *smtpd_dns_name(SMTPD_DNS *dns, const char *name, SMTPD_DNS_MX_CB cb, void *arg);

/* smtpd_dns_hosts_file - the hosts file smtpd_dns_name reads ("/etc/hosts"; tests change it) */
extern const char *smtpd_dns_hosts_file;

/* smtpd_dns_mx_cancel - no callback any more (call it before smtpd_dns_free); NULL is fine */
void smtpd_dns_mx_cancel(SMTPD_DNS_MX *mx);

#endif
