/*
 * rg_dnsd.c - a small authoritative DNS server for rcptgate's tests
 *
 * SYNOPSIS
 *   rg_dnsd -l 127.0.0.1:PORT [-l [::1]:PORT ...] -z ZONEFILE [-p PIDFILE]
 *           [-P PORTFILE] [-q]
 *
 * DESCRIPTION
 *   Answers UDP DNS queries on the given loopback addresses from one zone
 *   file, with libevent's evdns server. Each -l adds a listener; PORT 0
 *   picks a free port (write it out with -P PORTFILE). The pid file is
 *   written once every listener is bound, so a test may start rg_dnsd in
 *   the background and wait for the file. SIGHUP re-reads the zone file
 *   (a file with errors is refused and the old zone kept); SIGTERM and
 *   SIGINT exit. Each query is logged to stderr unless -q.
 *
 * ZONE FILE
 *   One record a line, "NAME TYPE DATA"; '#' starts a comment; names are
 *   case-insensitive and a trailing dot is optional. DATA may be written
 *   in double quotes (needed when it holds blanks). A name may carry many
 *   records, also several of one type.
 *
 *     mail.example.net     A      127.0.0.2
 *     mail.example.net     AAAA   ::1
 *     example.net          MX     "10 mx.example.net"
 *     nullmx.example       MX     "0 ."
 *     example.net          TXT    "some text"
 *     2.0.0.127.in-addr.arpa PTR  host.example.net
 *     _ldap._tcp.example.net SRV  "0 100 389 dc1.example.net"
 *     www.example.net      CNAME  mail.example.net
 *     broken.example       SERVFAIL
 *     slow.example         DROP
 *
 *   NAME SERVFAIL answers every query for NAME with SERVFAIL; NAME DROP
 *   never answers (the client times out). A CNAME is followed (up to 8
 *   links) within the zone for queries of other types. A name not in the
 *   file gets NXDOMAIN; a name in the file without records of the asked
 *   type gets NOERROR with an empty answer section. Every answer has the
 *   AA flag and a TTL of 60. There are no wildcards, no SOA in negative
 *   answers and no TCP: keep answers under 512 bytes.
 *
 * EXIT STATUS
 *   0 after SIGTERM, 1 when a listener or the zone cannot be set up,
 *   64 on usage.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>
#include <event2/util.h>

#include "log.h"
#include "xalloc.h"

#define RG_DNSD_MAXL    8       /* listeners */
#define RG_DNSD_TTL     60

/* Record kinds beyond the wire types: the two directives. */
#define RG_DNSD_SERVFAIL  (-1)
#define RG_DNSD_DROP      (-2)
#define RG_DNSD_TYPE_SRV  33

typedef struct rg_dnsd_rr {
    char *name;                 /* lowercase, no trailing dot */
    int type;                   /* EVDNS_TYPE_*, SRV, or a directive */
    int is_name;                /* data is a domain name (PTR, CNAME) */
    char *data;                 /* wire RDATA, or a name when is_name */
    int datalen;
} RG_DNSD_RR;

typedef struct rg_dnsd_zone {
    RG_DNSD_RR *rr;
    int count;
} RG_DNSD_ZONE;

static RG_DNSD_ZONE *rg_dnsd_zone;
static const char *rg_dnsd_zonefile;
static int rg_dnsd_quiet;

/* rg_dnsd_zone_free - free a zone; NULL is fine */
static void rg_dnsd_zone_free(RG_DNSD_ZONE *z)
{
    if (z == NULL)
        return;
    for (int i = 0; i < z->count; i++) {
        free(z->rr[i].name);
        free(z->rr[i].data);
    }
    free(z->rr);
    free(z);
}

/* rg_dnsd_canon - lowercase a name in place and drop one trailing dot */
static void rg_dnsd_canon(char *name)
{
    size_t n;

    for (char *p = name; *p; p++)
        *p = (char) tolower((unsigned char) *p);
    n = strlen(name);
    if (n > 1 && name[n - 1] == '.')
        name[n - 1] = 0;
}

/*
 * rg_dnsd_wire_name - encode name as uncompressed wire labels into out
 * (at least 256 bytes); "." or "" is the root. Returns the length, -1 if
 * the name is not valid.
 */
static int rg_dnsd_wire_name(const char *name, unsigned char *out)
{
    int len = 0;
    const char *p = name;

    if (strcmp(p, ".") == 0 || *p == 0) {
        out[0] = 0;
        return 1;
    }
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t) (dot - p) : strlen(p);

        if (l == 0 || l > 63 || len + (int) l + 2 > 255)
            return -1;
        out[len++] = (unsigned char) l;
        memcpy(out + len, p, l);
        len += (int) l;
        p += l;
        if (*p == '.')
            p++;
    }
    out[len++] = 0;
    return len;
}

/* rg_dnsd_type - a record type or directive by name, 0 if unknown */
static int rg_dnsd_type(const char *s)
{
    static const struct { const char *name; int type; } types[] = {
        {"A", EVDNS_TYPE_A}, {"AAAA", EVDNS_TYPE_AAAA}, {"MX", EVDNS_TYPE_MX},
        {"TXT", EVDNS_TYPE_TXT}, {"PTR", EVDNS_TYPE_PTR}, {"CNAME", EVDNS_TYPE_CNAME},
        {"SRV", RG_DNSD_TYPE_SRV}, {"SERVFAIL", RG_DNSD_SERVFAIL}, {"DROP", RG_DNSD_DROP},
    };

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcasecmp(s, types[i].name) == 0)
            return types[i].type;
    return 0;
}

/*
 * rg_dnsd_rdata - turn the DATA text of one record into rr's RDATA.
 * Returns 0, or -1 with a reason in err.
 */
static int rg_dnsd_rdata(RG_DNSD_RR *rr, const char *data, char *err, size_t errlen)
{
    unsigned char buf[600];
    int len = 0;

    switch (rr->type) {
    case EVDNS_TYPE_A:
        if (inet_pton(AF_INET, data, buf) != 1)
            return snprintf(err, errlen, "bad IPv4 address \"%s\"", data), -1;
        len = 4;
        break;
    case EVDNS_TYPE_AAAA:
        if (inet_pton(AF_INET6, data, buf) != 1)
            return snprintf(err, errlen, "bad IPv6 address \"%s\"", data), -1;
        len = 16;
        break;
    case EVDNS_TYPE_TXT: {
        size_t n = strlen(data);

        /* One character-string per 255 bytes. */
        do {
            size_t chunk = n > 255 ? 255 : n;

            if (len + (int) chunk + 1 > (int) sizeof(buf))
                return snprintf(err, errlen, "TXT data too long"), -1;
            buf[len++] = (unsigned char) chunk;
            memcpy(buf + len, data, chunk);
            len += (int) chunk;
            data += chunk;
            n -= chunk;
        } while (n > 0);
        break;
    }
    case EVDNS_TYPE_PTR:
    case EVDNS_TYPE_CNAME: {
        char *name = xstrdup(data);

        rg_dnsd_canon(name);
        if (rg_dnsd_wire_name(name, buf) < 0) {
            free(name);
            return snprintf(err, errlen, "bad name \"%s\"", data), -1;
        }
        rr->is_name = 1;
        rr->data = name;
        rr->datalen = -1;
        return 0;
    }
    case EVDNS_TYPE_MX:
    case RG_DNSD_TYPE_SRV: {
        unsigned v[3];
        char target[300];
        int nv = rr->type == EVDNS_TYPE_MX ? 1 : 3, n, got;

        if (nv == 1)
            got = sscanf(data, "%u %299s%n", &v[0], target, &n);
        else
            got = sscanf(data, "%u %u %u %299s%n", &v[0], &v[1], &v[2], target, &n);
        if (got != nv + 1 || data[n] != 0)
            return snprintf(err, errlen, "bad %s data \"%s\"",
                            nv == 1 ? "MX" : "SRV", data), -1;
        for (int i = 0; i < nv; i++) {
            if (v[i] > 65535)
                return snprintf(err, errlen, "number out of range in \"%s\"", data), -1;
            buf[len++] = (unsigned char) (v[i] >> 8);
            buf[len++] = (unsigned char) (v[i] & 0xff);
        }
        rg_dnsd_canon(target);
        if ((n = rg_dnsd_wire_name(target, buf + len)) < 0)
            return snprintf(err, errlen, "bad name in \"%s\"", data), -1;
        len += n;
        break;
    }
    default:                    /* the directives carry no data */
        if (*data)
            return snprintf(err, errlen, "directive takes no data"), -1;
        return 0;
    }
    rr->data = xmalloc((size_t) len);
    memcpy(rr->data, buf, (size_t) len);
    rr->datalen = len;
    return 0;
}

/*
 * rg_dnsd_zone_load - read a zone file. NULL after logging each bad line
 * (file:line), or when the file cannot be read.
 */
static RG_DNSD_ZONE *rg_dnsd_zone_load(const char *path)
{
    RG_DNSD_ZONE *z = xcalloc(1, sizeof(*z));
    FILE *fp = fopen(path, "r");
    char line[2048];
    int lineno = 0, errors = 0, cap = 0;

    if (fp == NULL) {
        log_err("open %s: %s", path, strerror(errno));
        free(z);
        return NULL;
    }
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *p = line, *name, *type, *data, *end, err[256];
        RG_DNSD_RR rr;

        lineno++;
        if (strchr(line, '\n') == NULL && !feof(fp)) {
            log_err("%s:%d: line too long", path, lineno);
            errors++;
            break;
        }
        /* A '#' outside quotes starts a comment. */
        for (int q = 0; *p; p++) {
            if (*p == '"')
                q = !q;
            else if (*p == '#' && !q) {
                *p = 0;
                break;
            }
        }
        p = line;
        name = strtok_r(p, " \t\r\n", &end);
        if (name == NULL)
            continue;
        type = strtok_r(NULL, " \t\r\n", &end);
        data = end + strspn(end, " \t");
        data[strcspn(data, "\r\n")] = 0;
        for (size_t n = strlen(data); n > 0 && (data[n - 1] == ' ' || data[n - 1] == '\t'); n--)
            data[n - 1] = 0;
        if (*data == '"') {
            size_t n = strlen(data);

            if (n < 2 || data[n - 1] != '"') {
                log_err("%s:%d: unbalanced quote", path, lineno);
                errors++;
                continue;
            }
            data[n - 1] = 0;
            data++;
        }
        memset(&rr, 0, sizeof(rr));
        if (type == NULL || (rr.type = rg_dnsd_type(type)) == 0) {
            log_err("%s:%d: unknown or missing type \"%s\"", path, lineno, type ? type : "");
            errors++;
            continue;
        }
        if (rr.type > 0 && *data == 0) {
            log_err("%s:%d: %s needs data", path, lineno, type);
            errors++;
            continue;
        }
        if (rg_dnsd_rdata(&rr, data, err, sizeof(err)) < 0) {
            log_err("%s:%d: %s", path, lineno, err);
            errors++;
            continue;
        }
        rr.name = xstrdup(name);
        rg_dnsd_canon(rr.name);
        if (z->count == cap) {
            cap = cap ? cap * 2 : 32;
            z->rr = xrealloc(z->rr, (size_t) cap * sizeof(*z->rr));
        }
        z->rr[z->count++] = rr;
    }
    fclose(fp);
    if (errors) {
        rg_dnsd_zone_free(z);
        return NULL;
    }
    return z;
}

/* rg_dnsd_has - does the zone hold a record of type for name (0 = any)? */
static const RG_DNSD_RR *rg_dnsd_find(const char *name, int type)
{
    for (int i = 0; i < rg_dnsd_zone->count; i++) {
        const RG_DNSD_RR *rr = &rg_dnsd_zone->rr[i];

        if ((type == 0 || rr->type == type) && strcmp(rr->name, name) == 0)
            return rr;
    }
    return NULL;
}

/* rg_dnsd_add - add name's records of type to req's answers; returns the count */
static int rg_dnsd_add(struct evdns_server_request *req, const char *qname,
                       const char *name, int type)
{
    int n = 0;

    for (int i = 0; i < rg_dnsd_zone->count; i++) {
        const RG_DNSD_RR *rr = &rg_dnsd_zone->rr[i];

        if ((rr->type != type && type != EVDNS_QTYPE_ALL) || rr->type < 0
            || strcmp(rr->name, name) != 0)
            continue;
        if (evdns_server_request_add_reply(req, EVDNS_ANSWER_SECTION, qname, rr->type,
                                           EVDNS_CLASS_INET, RG_DNSD_TTL, rr->datalen,
                                           rr->is_name, rr->data) == 0)
            n++;
    }
    return n;
}

/* rg_dnsd_request - answer one query from the zone */
static void rg_dnsd_request(struct evdns_server_request *req, void *arg)
{
    const struct evdns_server_question *q;
    char name[300];
    int rcode = 0;

    (void) arg;
    if (req->nquestions != 1) {
        evdns_server_request_respond(req, 1);       /* FORMERR */
        return;
    }
    q = req->questions[0];
    snprintf(name, sizeof(name), "%s", q->name);
    rg_dnsd_canon(name);
    if (!rg_dnsd_quiet)
        log_info("query %s type %d", name, q->type);
    if (rg_dnsd_find(name, RG_DNSD_DROP)) {
        evdns_server_request_drop(req);
        return;
    }
    evdns_server_request_set_flags(req, EVDNS_FLAGS_AA);
    if (rg_dnsd_find(name, RG_DNSD_SERVFAIL)) {
        evdns_server_request_respond(req, 2);
        return;
    }
    if (!rg_dnsd_find(name, 0)) {
        evdns_server_request_respond(req, 3);       /* NXDOMAIN */
        return;
    }
    if (rg_dnsd_add(req, q->name, name, q->type) == 0 && q->type != EVDNS_TYPE_CNAME) {
        /* Follow CNAMEs inside the zone, as an authoritative server would. */
        const RG_DNSD_RR *cn;
        const char *owner = q->name;
        char cur[300];

        snprintf(cur, sizeof(cur), "%s", name);
        for (int hops = 0; hops < 8 && (cn = rg_dnsd_find(cur, EVDNS_TYPE_CNAME)); hops++) {
            evdns_server_request_add_reply(req, EVDNS_ANSWER_SECTION, owner, EVDNS_TYPE_CNAME,
                                           EVDNS_CLASS_INET, RG_DNSD_TTL, -1, 1, cn->data);
            snprintf(cur, sizeof(cur), "%s", cn->data);
            owner = cn->data;
            if (rg_dnsd_add(req, owner, cur, q->type) > 0)
                break;
        }
    }
    evdns_server_request_respond(req, rcode);
}

/* rg_dnsd_hup - re-read the zone file; keep the old zone if the new one is bad */
static void rg_dnsd_hup(evutil_socket_t sig, short what, void *arg)
{
    RG_DNSD_ZONE *z;

    (void) sig; (void) what; (void) arg;
    if ((z = rg_dnsd_zone_load(rg_dnsd_zonefile)) == NULL) {
        log_warn("%s: not reloaded, keeping the old zone", rg_dnsd_zonefile);
        return;
    }
    rg_dnsd_zone_free(rg_dnsd_zone);
    rg_dnsd_zone = z;
    log_info("%s: reloaded, %d records", rg_dnsd_zonefile, z->count);
}

/* rg_dnsd_term - leave the loop */
static void rg_dnsd_term(evutil_socket_t sig, short what, void *arg)
{
    (void) sig; (void) what;
    event_base_loopbreak(arg);
}

/* rg_dnsd_bind - a UDP socket bound to "HOST:PORT" or "[V6]:PORT"; -1 on error */
static evutil_socket_t rg_dnsd_bind(const char *spec, int *port)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    evutil_socket_t fd;
    char host[INET6_ADDRSTRLEN + 2], *colon, *end;
    long pnum;

    /* By hand, not evutil_parse_sockaddr_port(): that one refuses port 0. */
    memset(&ss, 0, sizeof(ss));
    snprintf(host, sizeof(host), "%s", spec);
    if ((colon = strrchr(host, ':')) == NULL)
        goto bad;
    *colon = 0;
    pnum = strtol(colon + 1, &end, 10);
    if (colon[1] == 0 || *end || pnum < 0 || pnum > 65535)
        goto bad;
    if (host[0] == '[') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;
        size_t n = strlen(host);

        if (n < 3 || host[n - 1] != ']')
            goto bad;
        host[n - 1] = 0;
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
            goto bad;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t) pnum);
        sslen = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;

        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            goto bad;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t) pnum);
        sslen = sizeof(*s4);
    }
    if ((fd = socket(ss.ss_family, SOCK_DGRAM, 0)) < 0) {
        log_err("socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *) &ss, sslen) < 0) {
        log_err("bind %s: %s", spec, strerror(errno));
        close(fd);
        return -1;
    }
    sslen = sizeof(ss);
    getsockname(fd, (struct sockaddr *) &ss, &sslen);
    *port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *) &ss)->sin_port
                  : ((struct sockaddr_in6 *) &ss)->sin6_port);
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    return fd;

bad:
    log_err("bad listen address \"%s\" (want HOST:PORT or [V6]:PORT)", spec);
    return -1;
}

/* rg_dnsd_write - write text to path atomically (tmp + rename) */
static int rg_dnsd_write(const char *path, const char *text)
{
    char *tmp = xasprintf("%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    int ok;

    if (fp == NULL) {
        log_err("open %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    ok = fputs(text, fp) >= 0;
    ok = (fclose(fp) == 0) && ok && rename(tmp, path) == 0;
    if (!ok)
        log_err("write %s: %s", path, strerror(errno));
    free(tmp);
    return ok ? 0 : -1;
}

static void rg_dnsd_usage(void)
{
    fprintf(stderr, "usage: rg_dnsd -l HOST:PORT [-l ...] -z ZONEFILE [-p PIDFILE] [-P PORTFILE] [-q]\n");
    exit(RG_EX_USAGE);
}

int main(int argc, char **argv)
{
    const char *listen[RG_DNSD_MAXL], *pidfile = NULL, *portfile = NULL;
    struct evdns_server_port *ports[RG_DNSD_MAXL];
    evutil_socket_t fds[RG_DNSD_MAXL];
    struct event *ev_hup, *ev_term, *ev_int;
    struct event_base *base;
    int nlisten = 0, ch, first_port = 0;

    log_init("rg_dnsd", 1, 0);
    while ((ch = getopt(argc, argv, "l:z:p:P:q")) != -1) {
        switch (ch) {
        case 'l':
            if (nlisten == RG_DNSD_MAXL)
                rg_dnsd_usage();
            listen[nlisten++] = optarg;
            break;
        case 'z':
            rg_dnsd_zonefile = optarg;
            break;
        case 'p':
            pidfile = optarg;
            break;
        case 'P':
            portfile = optarg;
            break;
        case 'q':
            rg_dnsd_quiet = 1;
            break;
        default:
            rg_dnsd_usage();
        }
    }
    if (nlisten == 0 || rg_dnsd_zonefile == NULL || optind != argc)
        rg_dnsd_usage();
    if ((rg_dnsd_zone = rg_dnsd_zone_load(rg_dnsd_zonefile)) == NULL)
        return 1;
    for (int i = 0; i < nlisten; i++) {
        int port;

        if ((fds[i] = rg_dnsd_bind(listen[i], &port)) < 0) {
            while (i-- > 0)
                close(fds[i]);
            rg_dnsd_zone_free(rg_dnsd_zone);
            return 1;
        }
        if (i == 0)
            first_port = port;
    }
    if ((base = event_base_new()) == NULL)
        log_fatal("event_base_new failed");
    for (int i = 0; i < nlisten; i++) {
        ports[i] = evdns_add_server_port_with_base(base, fds[i], 0, rg_dnsd_request, NULL);
        if (ports[i] == NULL)
            log_fatal("evdns_add_server_port failed");
    }
    ev_hup = evsignal_new(base, SIGHUP, rg_dnsd_hup, NULL);
    ev_term = evsignal_new(base, SIGTERM, rg_dnsd_term, base);
    ev_int = evsignal_new(base, SIGINT, rg_dnsd_term, base);
    event_add(ev_hup, NULL);
    event_add(ev_term, NULL);
    event_add(ev_int, NULL);
    if (portfile) {
        char buf[32];

        snprintf(buf, sizeof(buf), "%d\n", first_port);
        if (rg_dnsd_write(portfile, buf) < 0)
            return 1;
    }
    if (pidfile) {
        char buf[32];

        snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());
        if (rg_dnsd_write(pidfile, buf) < 0)
            return 1;
    }
    if (!rg_dnsd_quiet)
        log_info("listening (first port %d), %d records", first_port, rg_dnsd_zone->count);
    event_base_dispatch(base);
    for (int i = 0; i < nlisten; i++)
        evdns_close_server_port(ports[i]);
    event_free(ev_hup);
    event_free(ev_term);
    event_free(ev_int);
    event_base_free(base);
    rg_dnsd_zone_free(rg_dnsd_zone);
    if (pidfile)
        unlink(pidfile);
    return 0;
}
