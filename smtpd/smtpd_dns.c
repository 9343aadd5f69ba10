/* smtpd_dns.c - stub until written (no lookups: every answer is UNASKED) */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "xalloc.h"
#include "smtpd_dns.h"

struct smtpd_dns { struct event_base *base; };

SMTPD_DNS *smtpd_dns_create(struct event_base *base, const char *servers, int timeout_ms, char *err, size_t errlen)
{
    SMTPD_DNS *d = xmalloc(sizeof(*d));
    (void) servers; (void) timeout_ms; (void) err; (void) errlen;
    d->base = base;
    return d;
}
void smtpd_dns_free(SMTPD_DNS *dns) { free(dns); }
void smtpd_dns_client(SMTPD_DNS *dns, SMTPD_CLIENT *c) { (void) dns; snprintf(c->name, sizeof(c->name), "unknown"); }
void smtpd_dns_sender(SMTPD_DNS *dns, SMTPD_CLIENT *c, const char *domain) { (void) dns; (void) c; (void) domain; }
static void smtpd_dns_fire(evutil_socket_t fd, short what, void *arg)
{
    SMTPD_CLIENT *c = arg;
    void (*cb)(void *) = c->dns.waiter;
    (void) fd; (void) what;
    c->dns.waiter = NULL;
    if (cb)
        cb(c->dns.waiter_arg);
}
void smtpd_dns_wait(SMTPD_DNS *dns, SMTPD_CLIENT *c, void (*cb)(void *), void *arg)
{
    c->dns.waiter = cb;
    c->dns.waiter_arg = arg;
    event_base_once(dns->base, -1, EV_TIMEOUT, smtpd_dns_fire, c, NULL);
}
void smtpd_dns_cancel(SMTPD_DNS *dns, SMTPD_CLIENT *c) { (void) dns; c->dns.waiter = NULL; }
