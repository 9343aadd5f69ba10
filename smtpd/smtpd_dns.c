/*
 * smtpd_dns.c - asynchronous DNS for rcptgate-smtpd (c-ares in the event loop)
 *
 * SYNOPSIS
 *   #include "smtpd_dns.h"
 *
 *   dns = smtpd_dns_create(base, servers, timeout_ms, err, errlen);
 *   smtpd_dns_client(dns, c);              at connect: name, DNSBL
 *   smtpd_dns_sender(dns, c, domain);      at MAIL FROM: existence, RHSBL
 *   smtpd_dns_wait(dns, c, cb, arg);       cb(arg) once nothing is pending
 *   smtpd_dns_cancel(dns, c);              the session ends
 *   smtpd_dns_free(dns);
 *
 * DESCRIPTION
 *   One c-ares channel runs inside the libevent loop: c-ares tells us
 *   which sockets it wants watched (ARES_OPT_SOCK_STATE_CB), each gets a
 *   persistent event, and one timer follows ares_timeout(). /etc/hosts is
 *   consulted before DNS ("fb"), and the search list is off: every name
 *   we ask for is already absolute.
 *
 *   Each lookup is a small record (struct smtpd_dns_query) on the
 *   client's list c->dns.queries and counted in c->dns.pending. A c-ares
 *   callback finds its client through the record. Cancelling, or a new
 *   sender replacing the old one, detaches records (rec->c = NULL) and
 *   takes them off the list; c-ares still calls back for them later and
 *   the callback then only frees the record, so a session and its client
 *   may be freed right after smtpd_dns_cancel(). The waiter is always
 *   called from an event of its own, never from inside an API call.
 *
 *   The client name follows Postfix: PTR, then the name must resolve
 *   back to the client address, else it is "unknown". DNSBL queries ask
 *   for the A records of the reversed address under each zone; any
 *   127.0.0.0/8 answer lists, or only the 127.0.0.N a zone names. The
 *   sender domain exists if it has an MX (other than RFC 7505's null MX
 *   "."), else an A, else an AAAA record. NXDOMAIN or no records is
 *   SMTPD_DNS_NO; a timeout or SERVFAIL anywhere is SMTPD_DNS_TEMP.
 *
 *   DNSBL queries are not sent for trusted (mynetworks) clients; the
 *   sender lookups run for every client, and the checks decide whom
 *   they apply to. Zone lists are parsed again only when the parameter
 *   text changes (a reload).
 *
 *   A client may have at most SMTPD_DNS_MAXQ lookups in flight; a check
 *   that could not be started for that reason is SMTPD_DNS_TEMP.
 *
 * DIAGNOSTICS
 *   smtpd_dns_create() fails with a message in err when c-ares cannot be
 *   set up or the server list is malformed. Lookup failures are never
 *   logged as errors: they are answers (TEMP) for the checks.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <ares.h>
#include <event2/event.h>

#include "log.h"
#include "xalloc.h"
#include "smtpd_dns.h"
#include "params_smtpd.h"

#define SMTPD_DNS_MAXQ    32    /* lookups in flight per client */
#define SMTPD_DNS_MAXZONE 16    /* DNSBL or RHSBL zones used */
#define SMTPD_DNS_TRIES   2

/* The wire values we ask for (arpa/nameser.h is not everywhere). */
#define DNS_C_IN    1
#define DNS_T_A     1
#define DNS_T_MX    15
#define DNS_T_AAAA  28

/* What a lookup record is for. */
enum smtpd_dns_kind {
    Q_PTR,                      /* reverse lookup of the client */
    Q_FWD,                      /* forward confirmation of its PTR name */
    Q_DNSBL,                    /* client address in one DNSBL zone */
    Q_RHSBL,                    /* sender domain in one RHSBL zone */
    Q_MX, Q_A, Q_AAAA,          /* sender domain existence, in this order */
    Q_WAKE,                     /* not a lookup: the waiter's event */
};

struct smtpd_dns_query {
    struct smtpd_dns_query *next;       /* on c->dns.queries */
    SMTPD_DNS *dns;
    SMTPD_CLIENT *c;            /* NULL once detached: the answer is dropped */
    enum smtpd_dns_kind kind;
    int sibling_temp;           /* another zone of this group failed to answer */
    char *zone;                 /* DNSBL/RHSBL: the zone and its reply text */
    char *text;
    struct in_addr want;        /* DNSBL/RHSBL: the answer that lists (0: any 127/8) */
    char *domain;               /* Q_MX/A/AAAA: the sender domain */
    struct event *ev;           /* Q_WAKE */
};

/* One parsed "ZONE[=127.0.0.N] reply text" line. */
typedef struct smtpd_dns_zone {
    char *zone;
    struct in_addr want;
    char *text;
} SMTPD_DNS_ZONE;

/* A zone list parsed once per configuration string. */
typedef struct smtpd_dns_zones {
    char *source;               /* the var_* text it came from (a copy) */
    SMTPD_DNS_ZONE zone[SMTPD_DNS_MAXZONE];
    int count;
} SMTPD_DNS_ZONES;

/* A socket c-ares asked us to watch. */
typedef struct smtpd_dns_sock {
    struct smtpd_dns_sock *next;
    ares_socket_t fd;
    struct event *ev;
    SMTPD_DNS *dns;
} SMTPD_DNS_SOCK;

struct smtpd_dns {
    struct event_base *base;
    ares_channel channel;
    int channel_ok;
    struct event *timer;
    SMTPD_DNS_SOCK *socks;
    SMTPD_DNS_ZONES dnsbl;
    SMTPD_DNS_ZONES rhsbl;
};

static void smtpd_dns_schedule(SMTPD_DNS *dns);
static void smtpd_dns_finish(struct smtpd_dns_query *q);

/* ---------------------------------------------------------------- event glue */

/* smtpd_dns_sock_event - a socket c-ares watches is ready */
static void smtpd_dns_sock_event(evutil_socket_t fd, short what, void *arg)
{
    SMTPD_DNS_SOCK *s = arg;
    SMTPD_DNS *dns = s->dns;

    /* s may be freed by the state callback inside ares_process_fd(). */
    ares_process_fd(dns->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    smtpd_dns_schedule(dns);
}

/* smtpd_dns_sock_state - c-ares opens, changes or closes a socket */
static void smtpd_dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    SMTPD_DNS *dns = data;
    SMTPD_DNS_SOCK **pp, *s;

    for (pp = &dns->socks; (s = *pp) != NULL; pp = &s->next)
        if (s->fd == fd)
            break;
    if (s != NULL) {
        event_free(s->ev);
        if (!readable && !writable) {
            *pp = s->next;
            free(s);
            return;
        }
    } else {
        if (!readable && !writable)
            return;
        s = xcalloc(1, sizeof(*s));
        s->fd = fd;
        s->dns = dns;
        s->next = dns->socks;
        dns->socks = s;
    }
    s->ev = event_new(dns->base, fd, EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0),
                      smtpd_dns_sock_event, s);
    if (s->ev == NULL || event_add(s->ev, NULL) < 0)
        log_fatal("smtpd_dns: cannot watch a resolver socket");
}

/* smtpd_dns_timer - c-ares's next timeout has come */
static void smtpd_dns_timer(evutil_socket_t fd, short what, void *arg)
{
    SMTPD_DNS *dns = arg;

    (void) fd; (void) what;
    ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    smtpd_dns_schedule(dns);
}

/* smtpd_dns_schedule - set the timer to c-ares's next deadline */
static void smtpd_dns_schedule(SMTPD_DNS *dns)
{
    struct timeval tv, *tvp;

    if (!dns->channel_ok)
        return;
    if ((tvp = ares_timeout(dns->channel, NULL, &tv)) != NULL)
        evtimer_add(dns->timer, tvp);
    else
        evtimer_del(dns->timer);
}

/* ---------------------------------------------------------------- resolver */

/* smtpd_dns_create - a resolver in base, servers from the string or resolv.conf */
SMTPD_DNS *smtpd_dns_create(struct event_base *base, const char *servers, int timeout_ms,
                            char *err, size_t errlen)
{
    SMTPD_DNS *dns;
    struct ares_options opt;
    int rc, nservers = 1;

    if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        return NULL;
    }
    if (servers && *servers)
        for (const char *p = servers; *p; p++)
            nservers += (*p == ',');
    /*
     * c-ares tries each server per round and doubles the wait in later
     * rounds: t*n + 2t*n for two rounds. Split timeout_ms so the whole
     * lookup ends within it.
     */
    memset(&opt, 0, sizeof(opt));
    opt.timeout = timeout_ms / (3 * nservers);
    if (opt.timeout < 10)
        opt.timeout = 10;
    opt.tries = SMTPD_DNS_TRIES;
    opt.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
    opt.lookups = (char *) "fb";
    dns = xcalloc(1, sizeof(*dns));
    dns->base = base;
    opt.sock_state_cb = smtpd_dns_sock_state;
    opt.sock_state_cb_data = dns;
    rc = ares_init_options(&dns->channel, &opt, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS
                           | ARES_OPT_LOOKUPS | ARES_OPT_SOCK_STATE_CB);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        free(dns);
        ares_library_cleanup();
        return NULL;
    }
    dns->channel_ok = 1;
    if (servers && *servers && (rc = ares_set_servers_ports_csv(dns->channel, servers)) != ARES_SUCCESS) {
        snprintf(err, errlen, "dns_servers \"%s\": %s", servers, ares_strerror(rc));
        smtpd_dns_free(dns);
        return NULL;
    }
    if (servers == NULL || *servers == 0) {
        struct ares_addr_node *list = NULL;
        int n = 0;

        /* resolv.conf may name several servers: split the time among them. */
        if (ares_get_servers(dns->channel, &list) == ARES_SUCCESS) {
            for (struct ares_addr_node *a = list; a; a = a->next)
                n++;
            ares_free_data(list);
        }
        if (n > nservers) {
            opt.timeout = timeout_ms / (3 * n);
            if (opt.timeout < 10)
                opt.timeout = 10;
            ares_destroy(dns->channel);
            rc = ares_init_options(&dns->channel, &opt, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES
                                   | ARES_OPT_FLAGS | ARES_OPT_LOOKUPS | ARES_OPT_SOCK_STATE_CB);
            if (rc != ARES_SUCCESS) {
                snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
                dns->channel_ok = 0;
                ares_library_cleanup();
                smtpd_dns_free(dns);
                return NULL;
            }
        }
    }
    if ((dns->timer = evtimer_new(base, smtpd_dns_timer, dns)) == NULL) {
        snprintf(err, errlen, "cannot create the resolver timer");
        smtpd_dns_free(dns);
        return NULL;
    }
    return dns;
}

/* smtpd_dns_zones_clear - forget a parsed zone list */
static void smtpd_dns_zones_clear(SMTPD_DNS_ZONES *zs)
{
    for (int i = 0; i < zs->count; i++) {
        free(zs->zone[i].zone);
        free(zs->zone[i].text);
    }
    free(zs->source);
    memset(zs, 0, sizeof(*zs));
}

/* smtpd_dns_free - cancel what is in flight and free the resolver; NULL is fine */
void smtpd_dns_free(SMTPD_DNS *dns)
{
    if (dns == NULL)
        return;
    if (dns->channel_ok) {
        /* Calls back every query with ARES_EDESTRUCTION and closes the sockets. */
        ares_destroy(dns->channel);
        dns->channel_ok = 0;
        ares_library_cleanup();
    }
    while (dns->socks) {
        SMTPD_DNS_SOCK *s = dns->socks;

        dns->socks = s->next;
        event_free(s->ev);
        free(s);
    }
    if (dns->timer)
        event_free(dns->timer);
    smtpd_dns_zones_clear(&dns->dnsbl);
    smtpd_dns_zones_clear(&dns->rhsbl);
    free(dns);
}

/*
 * smtpd_dns_zones - the parsed list for text (a var_smtpd_dnsbl/rhsbl
 * value, lines '\n'-joined), parsed again only when the text changed.
 */
static const SMTPD_DNS_ZONES *smtpd_dns_zones(SMTPD_DNS_ZONES *zs, const char *text, const char *what)
{
    char *copy, *line, *save;

    if (text == NULL)
        text = "";
    if (zs->source && strcmp(zs->source, text) == 0)
        return zs;
    smtpd_dns_zones_clear(zs);
    zs->source = xstrdup(text);
    copy = xstrdup(text);
    for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *p = line + strspn(line, " \t"), *end, *eq;
        SMTPD_DNS_ZONE *z;

        if (*p == 0)
            continue;
        if (zs->count == SMTPD_DNS_MAXZONE) {
            log_warn("%s: more than %d zones, \"%s\" and later ones ignored", what, SMTPD_DNS_MAXZONE, p);
            break;
        }
        end = p + strcspn(p, " \t");
        if (*end)
            *end++ = 0;
        end += strspn(end, " \t");
        z = &zs->zone[zs->count];
        memset(z, 0, sizeof(*z));
        if ((eq = strchr(p, '=')) != NULL) {
            *eq++ = 0;
            if (inet_pton(AF_INET, eq, &z->want) != 1) {
                log_warn("%s: zone %s: bad reply address \"%s\", zone ignored", what, p, eq);
                continue;
            }
        }
        for (size_t n = strlen(p); n > 0 && p[n - 1] == '.'; n--)
            p[n - 1] = 0;
        if (*p == 0 || strlen(p) > 200) {
            log_warn("%s: bad zone name, line ignored", what);
            continue;
        }
        for (size_t n = strlen(end); n > 0 && isspace((unsigned char) end[n - 1]); n--)
            end[n - 1] = 0;
        z->zone = xstrdup(p);
        z->text = *end ? xstrdup(end) : NULL;
        zs->count++;
    }
    free(copy);
    return zs;
}

/* ---------------------------------------------------------------- records */

/* smtpd_dns_query_new - a record for c, on its list and counted as pending */
static struct smtpd_dns_query *smtpd_dns_query_new(SMTPD_DNS *dns, SMTPD_CLIENT *c, enum smtpd_dns_kind kind)
{
    struct smtpd_dns_query *q = xcalloc(1, sizeof(*q));

    q->dns = dns;
    q->c = c;
    q->kind = kind;
    q->next = c->dns.queries;
    c->dns.queries = q;
    if (kind != Q_WAKE)
        c->dns.pending++;
    return q;
}

/* smtpd_dns_query_free - free a record that is on no list */
static void smtpd_dns_query_free(struct smtpd_dns_query *q)
{
    if (q->ev)
        event_free(q->ev);
    free(q->zone);
    free(q->text);
    free(q->domain);
    free(q);
}

/* smtpd_dns_unlink - take q off its client's list (and out of the pending count) */
static void smtpd_dns_unlink(struct smtpd_dns_query *q)
{
    SMTPD_CLIENT *c = q->c;
    struct smtpd_dns_query **pp;

    if (c == NULL)
        return;
    for (pp = &c->dns.queries; *pp; pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    }
    if (q->kind != Q_WAKE)
        c->dns.pending--;
    q->next = NULL;
}

/* smtpd_dns_count - how many lookups c has in flight */
static int smtpd_dns_count(SMTPD_CLIENT *c)
{
    return c->dns.pending;
}

/* smtpd_dns_wake_event - the waiter's turn, from its own event */
static void smtpd_dns_wake_event(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_dns_query *q = arg;
    SMTPD_CLIENT *c = q->c;
    void (*cb)(void *);
    void *cb_arg;

    (void) fd; (void) what;
    smtpd_dns_unlink(q);
    smtpd_dns_query_free(q);
    if (c == NULL || c->dns.pending > 0 || c->dns.waiter == NULL)
        return;                 /* a new lookup began: its answer wakes the waiter */
    cb = c->dns.waiter;
    cb_arg = c->dns.waiter_arg;
    c->dns.waiter = NULL;
    c->dns.waiter_arg = NULL;
    cb(cb_arg);                 /* may free c: touch nothing after */
}

/* smtpd_dns_wake - schedule the waiter of c if nothing is pending */
static void smtpd_dns_wake(SMTPD_DNS *dns, SMTPD_CLIENT *c)
{
    struct smtpd_dns_query *q;
    struct event_base *base = dns ? dns->base : NULL;

    if (c->dns.pending > 0 || c->dns.waiter == NULL)
        return;
    for (q = c->dns.queries; q; q = q->next)
        if (q->kind == Q_WAKE)
            return;             /* already scheduled */
    if (base == NULL)
        base = smtpd_base;
    q = smtpd_dns_query_new(dns, c, Q_WAKE);
    if ((q->ev = event_new(base, -1, 0, smtpd_dns_wake_event, q)) == NULL)
        log_fatal("smtpd_dns: cannot schedule a DNS waiter");
    /* Active, not called: the waiter runs from the loop, never from our caller. */
    event_active(q->ev, EV_TIMEOUT, 0);
}

/* ---------------------------------------------------------------- answers */

/* smtpd_dns_temp_status - is this c-ares status a failure to get an answer? */
static int smtpd_dns_temp_status(int status)
{
    return status != ARES_SUCCESS && status != ARES_ENOTFOUND && status != ARES_ENODATA;
}

/* smtpd_dns_listed - does an A answer list the address (want, or any 127/8)? */
static int smtpd_dns_listed(const unsigned char *abuf, int alen, struct in_addr want)
{
    struct ares_addrttl addrs[16];
    int n = 16;
    struct hostent *host = NULL;

    if (ares_parse_a_reply(abuf, alen, &host, addrs, &n) != ARES_SUCCESS)
        return 0;
    if (host)
        ares_free_hostent(host);
    int error = 0;

    for (int i = 0; i < n; i++) {
        uint32_t a = ntohl(addrs[i].ipaddr.s_addr);

        if (want.s_addr ? addrs[i].ipaddr.s_addr == want.s_addr : (a >> 24) == 127 && (a >> 8) != 0x7fffff)
            return 1;                   /* a listing wins over an error code beside it */
        if (!want.s_addr && (a >> 8) == 0x7fffff && error == 0)
            error = -(int) (a & 0xff) - 1;  /* 127.255.255.x: the list's error code */
    }
    return error;
}

/*
 * smtpd_dns_bl_error - a list answered 127.255.255.x, which lists use for
 * their own errors (Spamhaus: .254 a query through a public resolver,
 * .255 too many queries, .252 a typo in the zone). Counted as a listing,
 * it refused every client (a gateway behind 8.8.8.8 with zen.spamhaus.org):
 * not listed, and said once a minute.
 */
static void smtpd_dns_bl_error(const char *zone, int code)
{
    static long long said;
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (said != 0 && now.tv_sec - said < 60)
        return;
    said = now.tv_sec;
    log_warn("dnsbl %s answered 127.255.255.%d, an error code of the list, not a listing (a query through a "
             "public resolver, or over the list's limit?): not counted; ask it through a resolver of your own, "
             "or give the listing address (zone=127.0.0.N)", zone, code);
}

/*
 * smtpd_dns_bl_done - one DNSBL or RHSBL zone answered (listed 1, not 0,
 * no answer -1): the first listing decides; after the last zone,
 * NO, or TEMP if a zone did not answer.
 */
static void smtpd_dns_bl_done(struct smtpd_dns_query *q, int listed)
{
    SMTPD_CLIENT *c = q->c;
    int *status = q->kind == Q_DNSBL ? &c->dns.dnsbl : &c->dns.rhsbl;
    char **zone = q->kind == Q_DNSBL ? &c->dns.dnsbl_zone : &c->dns.rhsbl_zone;
    char **text = q->kind == Q_DNSBL ? &c->dns.dnsbl_text : &c->dns.rhsbl_text;
    int others = 0;

    if (listed > 0 && *status != SMTPD_DNS_YES) {
        *status = SMTPD_DNS_YES;
        free(*zone);
        free(*text);
        *zone = xstrdup(q->zone);
        *text = q->text ? xstrdup(q->text) : NULL;
    }
    for (struct smtpd_dns_query *o = c->dns.queries; o; o = o->next) {
        if (o != q && o->kind == q->kind) {
            others++;
            if (listed < 0)
                o->sibling_temp = 1;
        }
    }
    if (others == 0 && *status == SMTPD_DNS_PENDING)
        *status = (listed < 0 || q->sibling_temp) ? SMTPD_DNS_TEMP : SMTPD_DNS_NO;
}

/*
 * smtpd_dns_query_next - the next sender domain lookup after q found
 * nothing; 0 if there is none left.
 */
static int smtpd_dns_query_next(struct smtpd_dns_query *q);

/* smtpd_dns_answer - a c-ares answer for one DNS query record */
static void smtpd_dns_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct smtpd_dns_query *q = arg;
    SMTPD_CLIENT *c = q->c;
    int temp = smtpd_dns_temp_status(status);

    (void) timeouts;
    if (c == NULL) {            /* detached: the client may be gone */
        smtpd_dns_query_free(q);
        return;
    }
    if (log_debug_enabled())
        log_debug("dns: %s: kind %d: %s", c->addr, (int) q->kind, ares_strerror(status));
    switch (q->kind) {
    case Q_DNSBL:
    case Q_RHSBL:
        {
            int listed = temp || status != ARES_SUCCESS ? 0 : smtpd_dns_listed(abuf, alen, q->want);

            if (listed < 0) {
                smtpd_dns_bl_error(q->zone, -listed - 1);
                listed = 0;
            }
            smtpd_dns_bl_done(q, temp ? -1 : listed);
        }
        break;
    case Q_MX:
        if (status == ARES_SUCCESS) {
            struct ares_mx_reply *mx = NULL;
            int real = 0, null_mx = 0;

            if (ares_parse_mx_reply(abuf, alen, &mx) == ARES_SUCCESS) {
                for (struct ares_mx_reply *m = mx; m; m = m->next) {
                    if (m->host == NULL || *m->host == 0 || strcmp(m->host, ".") == 0)
                        null_mx = 1;
                    else
                        real = 1;
                }
                ares_free_data(mx);
            }
            /* RFC 7505: a null MX says the domain takes no mail. */
            if (null_mx || real) {
                c->dns.sender_domain = (null_mx && !real) ? SMTPD_DNS_NO : SMTPD_DNS_YES;
                break;
            }
            status = ARES_ENODATA;      /* an answer we cannot read: try the addresses */
        }
        /* FALLTHROUGH */
    case Q_A:
    case Q_AAAA:
        if (temp)
            c->dns.sender_domain = SMTPD_DNS_TEMP;
        else if (status == ARES_ENOTFOUND)
            c->dns.sender_domain = SMTPD_DNS_NO;
        else if (status == ARES_SUCCESS && q->kind != Q_MX)
            c->dns.sender_domain = SMTPD_DNS_YES;
        else if (smtpd_dns_query_next(q))
            return;             /* q moved on to the next type */
        else
            c->dns.sender_domain = SMTPD_DNS_NO;
        break;
    default:
        log_panic("smtpd_dns_answer: kind %d", (int) q->kind);
    }
    smtpd_dns_finish(q);
}

/* smtpd_dns_finish - q is done: free it, and wake the waiter if it was the last */
static void smtpd_dns_finish(struct smtpd_dns_query *q)
{
    SMTPD_CLIENT *c = q->c;
    SMTPD_DNS *dns = q->dns;

    smtpd_dns_unlink(q);
    smtpd_dns_query_free(q);
    if (c)
        smtpd_dns_wake(dns, c);
}

/* smtpd_dns_query_next - ask for the next type of the sender domain */
static int smtpd_dns_query_next(struct smtpd_dns_query *q)
{
    int type;

    if (q->kind == Q_MX) {
        q->kind = Q_A;
        type = DNS_T_A;
    } else if (q->kind == Q_A) {
        q->kind = Q_AAAA;
        type = DNS_T_AAAA;
    } else {
        return 0;
    }
    ares_query(q->dns->channel, q->domain, DNS_C_IN, type, smtpd_dns_answer, q);
    return 1;
}

/* smtpd_dns_addr_match - does host list the client's address? */
static int smtpd_dns_addr_match(const struct hostent *host, int family, const void *bin)
{
    size_t len = family == AF_INET ? 4 : 16;

    if (host == NULL || host->h_addrtype != family)
        return 0;
    for (char **a = host->h_addr_list; a && *a; a++)
        if (memcmp(*a, bin, len) == 0)
            return 1;
    return 0;
}

/* smtpd_dns_valid_name - is name a plausible host name (letters, digits, '-', '.')? */
static int smtpd_dns_valid_name(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n >= SMTPD_NAME_LEN || name[0] == '.' || name[0] == '-')
        return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char) *p) && *p != '-' && *p != '.' && *p != '_')
            return 0;
    return 1;
}

/* smtpd_dns_client_bin - c's address in binary; the family, or 0 if unparsable */
static int smtpd_dns_client_bin(const SMTPD_CLIENT *c, unsigned char bin[16])
{
    if (inet_pton(AF_INET, c->addr, bin) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, c->addr, bin) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

        /* An IPv4 client on an IPv6 socket is an IPv4 client. */
        if (memcmp(bin, mapped, 12) == 0) {
            memmove(bin, bin + 12, 4);
            return AF_INET;
        }
        return AF_INET6;
    }
    return 0;
}

/* smtpd_dns_host - a c-ares answer for the PTR or the forward lookup */
static void smtpd_dns_host(void *arg, int status, int timeouts, struct hostent *host)
{
    struct smtpd_dns_query *q = arg;
    SMTPD_CLIENT *c = q->c;
    unsigned char bin[16];
    int family;

    (void) timeouts;
    if (c == NULL) {
        smtpd_dns_query_free(q);
        return;
    }
    family = smtpd_dns_client_bin(c, bin);
    if (q->kind == Q_PTR) {
        if (status == ARES_SUCCESS && host && host->h_name && smtpd_dns_valid_name(host->h_name)) {
            /* Confirm it: the name must resolve back to the address. */
            q->kind = Q_FWD;
            free(q->domain);
            q->domain = xstrdup(host->h_name);
            for (char *p = q->domain; *p; p++)
                *p = (char) tolower((unsigned char) *p);
            ares_gethostbyname(q->dns->channel, q->domain, family, smtpd_dns_host, q);
            return;
        }
    } else if (status == ARES_SUCCESS && smtpd_dns_addr_match(host, family, bin)) {
        snprintf(c->name, sizeof(c->name), "%s", q->domain);
    }
    smtpd_dns_finish(q);
}

/* ---------------------------------------------------------------- requests */

/* smtpd_dns_reverse - the reversed address for DNSBL queries; 0 if unusable */
static int smtpd_dns_reverse(const SMTPD_CLIENT *c, char *buf, size_t len)
{
    unsigned char bin[16];
    size_t n = 0;

    switch (smtpd_dns_client_bin(c, bin)) {
    case AF_INET:
        snprintf(buf, len, "%u.%u.%u.%u", bin[3], bin[2], bin[1], bin[0]);
        return 1;
    case AF_INET6:
        if (len < 64)
            return 0;
        for (int i = 15; i >= 0; i--) {
            static const char hex[] = "0123456789abcdef";

            buf[n++] = hex[bin[i] & 15];
            buf[n++] = '.';
            buf[n++] = hex[bin[i] >> 4];
            buf[n++] = i ? '.' : 0;
        }
        return 1;
    default:
        return 0;
    }
}

/*
 * smtpd_dns_bl_start - one A query per zone for "prefix.zone" (DNSBL or
 * RHSBL); the status becomes PENDING, or TEMP when nothing could start.
 */
static void smtpd_dns_bl_start(SMTPD_DNS *dns, SMTPD_CLIENT *c, enum smtpd_dns_kind kind,
                               const SMTPD_DNS_ZONES *zs, const char *prefix, int *status)
{
    struct smtpd_dns_query *qs[SMTPD_DNS_MAXZONE];
    char *names[SMTPD_DNS_MAXZONE];
    int n = 0;

    *status = SMTPD_DNS_PENDING;
    /* Link every record first: an answer may come back inside ares_query(). */
    for (int i = 0; i < zs->count; i++) {
        if (smtpd_dns_count(c) >= SMTPD_DNS_MAXQ) {
            log_warn("dns: %s: too many lookups in flight; zone %s not asked", c->addr, zs->zone[i].zone);
            break;
        }
        qs[n] = smtpd_dns_query_new(dns, c, kind);
        qs[n]->zone = xstrdup(zs->zone[i].zone);
        qs[n]->text = zs->zone[i].text ? xstrdup(zs->zone[i].text) : NULL;
        qs[n]->want = zs->zone[i].want;
        names[n] = xasprintf("%s.%s", prefix, zs->zone[i].zone);
        n++;
    }
    if (n < zs->count) {
        /* Some zones were not asked: the verdict cannot be a clean NO. */
        for (int i = 0; i < n; i++)
            qs[i]->sibling_temp = 1;
        if (n == 0) {
            *status = SMTPD_DNS_TEMP;
            return;
        }
    }
    for (int i = 0; i < n; i++) {
        ares_query(dns->channel, names[i], DNS_C_IN, DNS_T_A, smtpd_dns_answer, qs[i]);
        free(names[i]);
    }
}

/* smtpd_dns_client - start the reverse lookup and the DNSBL queries for c */
void smtpd_dns_client(SMTPD_DNS *dns, SMTPD_CLIENT *c)
{
    const SMTPD_DNS_ZONES *zs;
    unsigned char bin[16];
    char rev[80];
    int family;

    snprintf(c->name, sizeof(c->name), "unknown");
    if (dns == NULL || !dns->channel_ok || (family = smtpd_dns_client_bin(c, bin)) == 0)
        return;
    zs = smtpd_dns_zones(&dns->dnsbl, var_smtpd_dnsbl, "dnsbl");
    if (zs->count > 0 && !c->trusted && smtpd_mode(var_smtpd_dnsbl_mode) != SMTPD_OFF
        && smtpd_dns_reverse(c, rev, sizeof(rev)))
        smtpd_dns_bl_start(dns, c, Q_DNSBL, zs, rev, &c->dns.dnsbl);
    if (var_smtpd_reverse_lookup && smtpd_dns_count(c) < SMTPD_DNS_MAXQ) {
        struct smtpd_dns_query *q = smtpd_dns_query_new(dns, c, Q_PTR);

        ares_gethostbyaddr(dns->channel, bin, family == AF_INET ? 4 : 16, family, smtpd_dns_host, q);
    }
    smtpd_dns_schedule(dns);
}

/* smtpd_dns_drop_sender - detach the lookups of an earlier sender and forget its answers */
static void smtpd_dns_drop_sender(SMTPD_CLIENT *c)
{
    struct smtpd_dns_query **pp = &c->dns.queries, *q;

    while ((q = *pp) != NULL) {
        if (q->kind == Q_RHSBL || q->kind == Q_MX || q->kind == Q_A || q->kind == Q_AAAA) {
            *pp = q->next;
            q->next = NULL;
            q->c = NULL;        /* c-ares still owns it; its callback frees it */
            c->dns.pending--;
        } else {
            pp = &q->next;
        }
    }
    free(c->dns.rhsbl_zone);
    free(c->dns.rhsbl_text);
    c->dns.rhsbl_zone = c->dns.rhsbl_text = NULL;
    c->dns.rhsbl = SMTPD_DNS_UNASKED;
    c->dns.sender_domain = SMTPD_DNS_UNASKED;
}

/* smtpd_dns_sender - start the sender domain lookups: existence and RHSBL */
void smtpd_dns_sender(SMTPD_DNS *dns, SMTPD_CLIENT *c, const char *domain)
{
    const SMTPD_DNS_ZONES *zs;
    char name[SMTPD_NAME_LEN];
    size_t n;

    smtpd_dns_drop_sender(c);
    if (dns == NULL || !dns->channel_ok || domain == NULL || *domain == 0) {
        smtpd_dns_wake(dns, c);
        return;
    }
    snprintf(name, sizeof(name), "%s", domain);
    for (char *p = name; *p; p++)
        *p = (char) tolower((unsigned char) *p);
    if ((n = strlen(name)) > 0 && name[n - 1] == '.')
        name[n - 1] = 0;
    if (*name == 0 || strlen(domain) >= sizeof(name)) {
        smtpd_dns_wake(dns, c);
        return;
    }
    if (smtpd_mode(var_smtpd_unknown_sender_domain) != SMTPD_OFF) {
        if (smtpd_dns_count(c) >= SMTPD_DNS_MAXQ) {
            c->dns.sender_domain = SMTPD_DNS_TEMP;
        } else {
            struct smtpd_dns_query *q = smtpd_dns_query_new(dns, c, Q_MX);

            c->dns.sender_domain = SMTPD_DNS_PENDING;
            q->domain = xstrdup(name);
            ares_query(dns->channel, name, DNS_C_IN, DNS_T_MX, smtpd_dns_answer, q);
        }
    }
    zs = smtpd_dns_zones(&dns->rhsbl, var_smtpd_rhsbl, "rhsbl");
    if (zs->count > 0 && smtpd_mode(var_smtpd_rhsbl_mode) != SMTPD_OFF)
        smtpd_dns_bl_start(dns, c, Q_RHSBL, zs, name, &c->dns.rhsbl);
    smtpd_dns_schedule(dns);
    smtpd_dns_wake(dns, c);     /* the dropped lookups may have been all a waiter waited for */
}

/* smtpd_dns_wait - call cb(arg) from the event loop once nothing of c is pending */
void smtpd_dns_wait(SMTPD_DNS *dns, SMTPD_CLIENT *c, void (*cb)(void *), void *arg)
{
    c->dns.waiter = cb;
    c->dns.waiter_arg = arg;
    smtpd_dns_wake(dns, c);
}

/* smtpd_dns_cancel - forget c's lookups and waiter; late answers are dropped */
void smtpd_dns_cancel(SMTPD_DNS *dns, SMTPD_CLIENT *c)
{
    struct smtpd_dns_query *q;

    (void) dns;
    while ((q = c->dns.queries) != NULL) {
        c->dns.queries = q->next;
        q->next = NULL;
        if (q->kind == Q_WAKE) {
            smtpd_dns_query_free(q);    /* our own event: gone with it */
        } else {
            q->c = NULL;        /* c-ares calls back later; only the record is freed then */
        }
    }
    c->dns.pending = 0;
    c->dns.waiter = NULL;
    c->dns.waiter_arg = NULL;
    free(c->dns.dnsbl_zone);
    free(c->dns.dnsbl_text);
    free(c->dns.rhsbl_zone);
    free(c->dns.rhsbl_text);
    c->dns.dnsbl_zone = c->dns.dnsbl_text = NULL;
    c->dns.rhsbl_zone = c->dns.rhsbl_text = NULL;
}

/* ---------------------------------------------------------------- MX for delivery */

#define SMTPD_DNS_MX_HOSTS   10         /* exchangers looked up (most domains have 1 to 4) */
#define SMTPD_DNS_MX_ADDRS   12         /* addresses tried in all (Postfix tries fewer sessions) */
#define SMTPD_DNS_HOST_ADDRS 4          /* addresses of one family kept per exchanger */

/* The hosts file smtpd_dns_name reads first (a test points it elsewhere). */
const char *smtpd_dns_hosts_file = "/etc/hosts";

/* One exchanger: its preference and what its A and AAAA lookups gave. */
struct smtpd_dns_mx_host {
    char name[SMTPD_NAME_LEN];
    int pref;
    unsigned order;             /* a random tie-break among equal preferences (RFC 5321 5.1) */
    int temp;                   /* a lookup of it failed for now */
    int n4, n6;
    char a4[SMTPD_DNS_HOST_ADDRS][INET_ADDRSTRLEN];
    char a6[SMTPD_DNS_HOST_ADDRS][INET6_ADDRSTRLEN];
};

/* One c-ares query of an MX lookup: which host, which type. */
struct smtpd_dns_mxq {
    SMTPD_DNS_MX *mx;
    int host;                   /* -1: the MX query itself */
    int type;
};

struct smtpd_dns_mx {
    SMTPD_DNS *dns;
    char domain[SMTPD_NAME_LEN];
    SMTPD_DNS_MX_CB cb;
    void *arg;
    int pending;                /* c-ares queries not answered yet */
    int cancelled;
    int in_cb;
    int implicit;               /* no MX: the domain itself (RFC 5321 5.1) */
    int host_only;              /* smtpd_dns_name: a next hop's name, never its MX */
    int status;
    char reply[SMTPD_REPLY_LEN];
    struct smtpd_dns_mx_host host[SMTPD_DNS_MX_HOSTS];
    int nhost;
    struct smtpd_dns_mxq q[1 + 2 * SMTPD_DNS_MX_HOSTS];
    struct event *ev;           /* the answer goes out from the loop */
};

static void smtpd_dns_mx_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen);
static void smtpd_dns_mx_settle(SMTPD_DNS_MX *mx);

/* smtpd_dns_mx_release - free mx (no query of it may be pending) */
static void smtpd_dns_mx_release(SMTPD_DNS_MX *mx)
{
    if (mx->ev)
        event_free(mx->ev);
    free(mx);
}

/* smtpd_dns_mx_done - the answer is known: hand it over from the loop */
static void smtpd_dns_mx_done(SMTPD_DNS_MX *mx, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void smtpd_dns_mx_done(SMTPD_DNS_MX *mx, int status, const char *fmt, ...)
{
    va_list ap;

    mx->status = status;
    va_start(ap, fmt);
    vsnprintf(mx->reply, sizeof(mx->reply), fmt, ap);
    va_end(ap);
    event_active(mx->ev, EV_TIMEOUT, 0);
}

/* smtpd_dns_mx_ask - one more query for mx (counted before it is sent: c-ares may answer at once) */
static void smtpd_dns_mx_ask(SMTPD_DNS_MX *mx, int slot, int host, const char *name, int type)
{
    struct smtpd_dns_mxq *q = &mx->q[slot];

    q->mx = mx;
    q->host = host;
    q->type = type;
    mx->pending++;
    ares_query(mx->dns->channel, name, DNS_C_IN, type, smtpd_dns_mx_answer, q);
}

/* smtpd_dns_mx_cmp - preference order, ties in random order */
static int smtpd_dns_mx_cmp(const void *a, const void *b)
{
    const struct smtpd_dns_mx_host *x = a, *y = b;

    if (x->pref != y->pref)
        return x->pref < y->pref ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* smtpd_dns_mx_hosts - the MX answer: exchangers sorted, their addresses asked for; 0, or -1 null MX only */
static int smtpd_dns_mx_hosts(SMTPD_DNS_MX *mx, const unsigned char *abuf, int alen)
{
    struct ares_mx_reply *list = NULL;
    int null_mx = 0;

    if (ares_parse_mx_reply(abuf, alen, &list) == ARES_SUCCESS) {
        for (struct ares_mx_reply *m = list; m; m = m->next) {
            if (m->host == NULL || *m->host == 0 || strcmp(m->host, ".") == 0) {
                null_mx = 1;
                continue;
            }
            if (!smtpd_dns_valid_name(m->host))
                continue;
            /* keep the best SMTPD_DNS_MX_HOSTS: replace the worst when full */
            struct smtpd_dns_mx_host h = {.pref = m->priority, .order = (unsigned) random()};
            snprintf(h.name, sizeof(h.name), "%s", m->host);
            if (mx->nhost < SMTPD_DNS_MX_HOSTS) {
                mx->host[mx->nhost++] = h;
            } else {
                qsort(mx->host, (size_t) mx->nhost, sizeof(mx->host[0]), smtpd_dns_mx_cmp);
                if (smtpd_dns_mx_cmp(&h, &mx->host[mx->nhost - 1]) < 0)
                    mx->host[mx->nhost - 1] = h;
            }
        }
        ares_free_data(list);
    }
    if (mx->nhost == 0)
        return null_mx ? -1 : 0;
    qsort(mx->host, (size_t) mx->nhost, sizeof(mx->host[0]), smtpd_dns_mx_cmp);
    return 0;
}

/* smtpd_dns_mx_addrs - one exchanger's A or AAAA answer into its slots */
static void smtpd_dns_mx_addrs(struct smtpd_dns_mx_host *h, int type, const unsigned char *abuf, int alen)
{
    if (type == DNS_T_A) {
        struct ares_addrttl a[SMTPD_DNS_HOST_ADDRS];
        int n = SMTPD_DNS_HOST_ADDRS;

        if (ares_parse_a_reply(abuf, alen, NULL, a, &n) != ARES_SUCCESS)
            return;
        for (int i = 0; i < n && h->n4 < SMTPD_DNS_HOST_ADDRS; i++)
            inet_ntop(AF_INET, &a[i].ipaddr, h->a4[h->n4++], INET_ADDRSTRLEN);
    } else {
        struct ares_addr6ttl a[SMTPD_DNS_HOST_ADDRS];
        int n = SMTPD_DNS_HOST_ADDRS;

        if (ares_parse_aaaa_reply(abuf, alen, NULL, a, &n) != ARES_SUCCESS)
            return;
        for (int i = 0; i < n && h->n6 < SMTPD_DNS_HOST_ADDRS; i++)
            inet_ntop(AF_INET6, &a[i].ip6addr, h->a6[h->n6++], INET6_ADDRSTRLEN);
    }
}

/* smtpd_dns_mx_answer - a c-ares answer for one query of an MX lookup */
static void smtpd_dns_mx_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct smtpd_dns_mxq *q = arg;
    SMTPD_DNS_MX *mx = q->mx;
    int temp = smtpd_dns_temp_status(status);

    (void) timeouts;
    mx->pending--;
    if (mx->cancelled) {
        if (mx->pending == 0)
            smtpd_dns_mx_release(mx);
        return;
    }
    if (log_debug_enabled())
        log_debug("dns: mx %s: host %d type %d: %s", mx->domain, q->host, q->type, ares_strerror(status));
    if (q->host < 0) {
        /* the MX query */
        if (temp) {
            smtpd_dns_mx_done(mx, SMTPD_DNS_TEMP, "451 4.4.3 Host or domain name lookup failed: "
                              "name=%s type=MX: %s", mx->domain, ares_strerror(status));
            return;
        }
        if (status == ARES_ENOTFOUND) {
            smtpd_dns_mx_done(mx, SMTPD_DNS_NO, "550 5.4.4 Host or domain name not found: "
                              "name=%s type=MX: Host not found", mx->domain);
            return;
        }
        if (status == ARES_SUCCESS && smtpd_dns_mx_hosts(mx, abuf, alen) < 0) {
            /* RFC 7505 3 and 4.1: the domain takes no mail; 556 and 5.1.10 as Postfix says it */
            smtpd_dns_mx_done(mx, SMTPD_DNS_NO, "556 5.1.10 Domain %s does not accept mail (nullMX)",
                              mx->domain);
            return;
        }
        if (mx->nhost == 0) {
            /* no MX (or none we can use): the domain is its own exchanger (RFC 5321 5.1) */
            mx->implicit = 1;
            snprintf(mx->host[0].name, sizeof(mx->host[0].name), "%s", mx->domain);
            mx->nhost = 1;
        }
        mx->pending++;          /* held while asking: an answer given at once must not settle it early */
        for (int i = 0; i < mx->nhost; i++) {
            smtpd_dns_mx_ask(mx, 1 + 2 * i, i, mx->host[i].name, DNS_T_A);
            smtpd_dns_mx_ask(mx, 2 + 2 * i, i, mx->host[i].name, DNS_T_AAAA);
        }
        if (--mx->pending == 0)
            smtpd_dns_mx_settle(mx);
        return;
    }
    /* an exchanger's address */
    struct smtpd_dns_mx_host *h = &mx->host[q->host];
    if (temp)
        h->temp = 1;
    else if (status == ARES_SUCCESS)
        smtpd_dns_mx_addrs(h, q->type, abuf, alen);
    if (mx->pending == 0)
        smtpd_dns_mx_settle(mx);
}

/* smtpd_dns_mx_settle - every address lookup is in: the answer */
static void smtpd_dns_mx_settle(SMTPD_DNS_MX *mx)
{
    int n = 0, temps = 0;
    for (int i = 0; i < mx->nhost; i++) {
        n += mx->host[i].n4 + mx->host[i].n6;
        temps += mx->host[i].temp;
    }
    if (n > 0)
        smtpd_dns_mx_done(mx, SMTPD_DNS_YES, "250 2.0.0 Ok");
    else if (mx->host_only)
        /* our own next hop's name: a configuration or DNS mistake defers, never bounces */
        smtpd_dns_mx_done(mx, SMTPD_DNS_TEMP, "451 4.4.3 Host or domain name lookup failed: "
                          "name=%s: %s", mx->domain, temps ? "DNS failure" : "no A or AAAA record");
    else if (temps > 0 || !mx->implicit)
        /* an exchanger without an address may be a passing mistake: defer, never bounce for it */
        smtpd_dns_mx_done(mx, SMTPD_DNS_TEMP, "451 4.4.3 Host or domain name lookup failed: "
                          "no address for the mail exchanger%s of %s%s", mx->implicit ? "" : "s",
                          mx->domain, temps ? " (DNS failure)" : "");
    else
        smtpd_dns_mx_done(mx, SMTPD_DNS_NO, "550 5.4.4 Host or domain name not found: "
                          "name=%s has no MX, A or AAAA record", mx->domain);
}

/* smtpd_dns_mx_event - hand the answer over, from the loop, then free the lookup */
static void smtpd_dns_mx_event(evutil_socket_t fd, short what, void *arg)
{
    SMTPD_DNS_MX *mx = arg;
    SMTPD_DNS_MX_ADDR list[SMTPD_DNS_MX_ADDRS];
    int n = 0;

    (void) fd; (void) what;
    if (mx->cancelled) {
        smtpd_dns_mx_release(mx);
        return;
    }
    /* in preference order; per exchanger IPv4 first (what the loopback tests and most MX have) */
    for (int i = 0; i < mx->nhost && mx->status == SMTPD_DNS_YES; i++) {
        struct smtpd_dns_mx_host *h = &mx->host[i];

        for (int j = 0; j < h->n4 + h->n6 && n < SMTPD_DNS_MX_ADDRS; j++, n++) {
            snprintf(list[n].name, sizeof(list[n].name), "%s", h->name);
            snprintf(list[n].addr, sizeof(list[n].addr), "%s", j < h->n4 ? h->a4[j] : h->a6[j - h->n4]);
        }
    }
    mx->in_cb = 1;
    mx->cb(mx->arg, mx->status, list, n, mx->reply);
    smtpd_dns_mx_release(mx);
}

/* smtpd_dns_mx_new - a lookup of domain (lowercased) answering cb; nothing asked yet */
static SMTPD_DNS_MX *smtpd_dns_mx_new(SMTPD_DNS *dns, const char *domain, SMTPD_DNS_MX_CB cb, void *arg)
{
    SMTPD_DNS_MX *mx = xcalloc(1, sizeof(*mx));

    mx->dns = dns;
    mx->cb = cb;
    mx->arg = arg;
    snprintf(mx->domain, sizeof(mx->domain), "%s", domain);
    for (char *p = mx->domain; *p; p++)
        *p = (char) tolower((unsigned char) *p);
    if ((mx->ev = event_new(dns->base, -1, 0, smtpd_dns_mx_event, mx)) == NULL)
        log_fatal("smtpd_dns: cannot schedule an MX answer");
    return mx;
}

/*
 * smtpd_dns_name_file - the name's addresses in the hosts file, into h:
 * every line that names it, in file order (c-ares's own lookup stops at
 * the first line, and two servers under one name are often two lines).
 */
static void smtpd_dns_name_file(struct smtpd_dns_mx_host *h)
{
    FILE *fp = fopen(smtpd_dns_hosts_file, "r");
    char line[1024];

    if (fp == NULL)
        return;
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *save = NULL, *addr, *name;
        struct in6_addr bin;

        line[strcspn(line, "#\n")] = 0;
        if ((addr = strtok_r(line, " \t\r", &save)) == NULL)
            continue;
        while ((name = strtok_r(NULL, " \t\r", &save)) != NULL && strcasecmp(name, h->name) != 0)
            ;
        if (name == NULL)
            continue;
        if (inet_pton(AF_INET, addr, &bin) == 1 && h->n4 < SMTPD_DNS_HOST_ADDRS)
            snprintf(h->a4[h->n4++], INET_ADDRSTRLEN, "%s", addr);
        else if (inet_pton(AF_INET6, addr, &bin) == 1 && h->n6 < SMTPD_DNS_HOST_ADDRS)
            inet_ntop(AF_INET6, &bin, h->a6[h->n6++], INET6_ADDRSTRLEN);
    }
    fclose(fp);
}

/* smtpd_dns_name - the addresses of a next hop's name; cb from the loop, exactly once unless cancelled */
SMTPD_DNS_MX *smtpd_dns_name(SMTPD_DNS *dns, const char *name, SMTPD_DNS_MX_CB cb, void *arg)
{
    SMTPD_DNS_MX *mx = smtpd_dns_mx_new(dns, name, cb, arg);
    struct smtpd_dns_mx_host *h = &mx->host[0];

    mx->implicit = mx->host_only = 1;
    mx->nhost = 1;
    snprintf(h->name, sizeof(h->name), "%s", mx->domain);
    if (!dns->channel_ok) {
        smtpd_dns_mx_done(mx, SMTPD_DNS_TEMP, "451 4.4.3 Host or domain name lookup failed: no resolver");
        return mx;
    }
    /* The hosts file first, as for a client's name: internal servers are often only there. */
    smtpd_dns_name_file(h);
    if (h->n4 + h->n6 > 0) {
        smtpd_dns_mx_done(mx, SMTPD_DNS_YES, "250 2.0.0 Ok");
        return mx;
    }
    if (!smtpd_dns_valid_name(mx->domain)) {
        smtpd_dns_mx_done(mx, SMTPD_DNS_TEMP, "451 4.4.3 Host or domain name lookup failed: "
                          "name=%s: not a host name", mx->domain);
        return mx;
    }
    mx->pending++;              /* held while asking, as in smtpd_dns_mx_answer */
    smtpd_dns_mx_ask(mx, 1, 0, h->name, DNS_T_A);
    smtpd_dns_mx_ask(mx, 2, 0, h->name, DNS_T_AAAA);
    if (--mx->pending == 0)
        smtpd_dns_mx_settle(mx);
    return mx;
}

/* smtpd_dns_mx - look up where mail for domain goes; cb from the loop, exactly once unless cancelled */
SMTPD_DNS_MX *smtpd_dns_mx(SMTPD_DNS *dns, const char *domain, SMTPD_DNS_MX_CB cb, void *arg)
{
    SMTPD_DNS_MX *mx = smtpd_dns_mx_new(dns, domain, cb, arg);

    if (!dns->channel_ok)
        smtpd_dns_mx_done(mx, SMTPD_DNS_TEMP, "451 4.4.3 Host or domain name lookup failed: no resolver");
    else if (!smtpd_dns_valid_name(mx->domain) || strstr(mx->domain, "..") || mx->domain[strlen(mx->domain) - 1] == '-')
        smtpd_dns_mx_done(mx, SMTPD_DNS_NO, "550 5.1.2 Bad destination domain \"%s\"", mx->domain);
    else
        smtpd_dns_mx_ask(mx, 0, -1, mx->domain, DNS_T_MX);
    return mx;
}

/* smtpd_dns_mx_cancel - no callback any more; the lookup is freed once c-ares is done with it */
void smtpd_dns_mx_cancel(SMTPD_DNS_MX *mx)
{
    if (mx == NULL || mx->cancelled)
        return;
    mx->cancelled = 1;
    if (mx->in_cb)
        return;                 /* smtpd_dns_mx_event frees it when the callback returns */
    if (mx->pending == 0)
        smtpd_dns_mx_release(mx);
}
