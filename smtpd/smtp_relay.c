/* smtp_relay.c - stub until written (every next hop is "down": 451 4.4.1) */
#include "config.h"

#include <stdlib.h>

#include "xalloc.h"
#include "smtp_relay.h"

struct smtp_relay { SMTP_RELAY_CB cb; void *arg; struct event *ev; };

static void smtp_relay_fire(evutil_socket_t fd, short what, void *arg)
{
    SMTP_RELAY *r = arg;
    (void) fd; (void) what;
    if (r->cb)
        r->cb(r->arg, 451, "451 4.4.1 Next hop not reachable (relay not written yet)");
}
static void smtp_relay_later(SMTP_RELAY *r, SMTP_RELAY_CB cb, void *arg)
{
    r->cb = cb;
    r->arg = arg;
    event_active(r->ev, EV_TIMEOUT, 0);
}
SMTP_RELAY *smtp_relay_open(const SMTP_RELAY_ENV *env, SMTP_RELAY_CB cb, void *arg)
{
    SMTP_RELAY *r = xmalloc(sizeof(*r));
    (void) env;
    r->ev = event_new(smtpd_base, -1, 0, smtp_relay_fire, r);
    smtp_relay_later(r, cb, arg);
    return r;
}
void smtp_relay_rcpt(SMTP_RELAY *r, const char *rcpt, const char *params, SMTP_RELAY_CB cb, void *arg) { (void) rcpt; (void) params; smtp_relay_later(r, cb, arg); }
void smtp_relay_data(SMTP_RELAY *r, SMTP_RELAY_CB cb, void *arg) { smtp_relay_later(r, cb, arg); }
int smtp_relay_write(SMTP_RELAY *r, const void *buf, size_t len) { (void) r; (void) buf; (void) len; return -1; }
size_t smtp_relay_backlog(SMTP_RELAY *r) { (void) r; return 0; }
void smtp_relay_on_drain(SMTP_RELAY *r, void (*cb)(void *), void *arg) { (void) r; (void) cb; (void) arg; }
void smtp_relay_dot(SMTP_RELAY *r, SMTP_RELAY_CB cb, void *arg) { smtp_relay_later(r, cb, arg); }
const char *smtp_relay_peer(const SMTP_RELAY *r) { (void) r; return "none"; }
void smtp_relay_free(SMTP_RELAY *r) { if (r) { event_free(r->ev); free(r); } }
