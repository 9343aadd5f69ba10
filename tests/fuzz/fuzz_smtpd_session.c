/*
 * fuzz_smtpd_session.c - libFuzzer target: a whole rcptgate-smtpd session
 *
 * Drives smtpd/smtp_session.c and smtp_command.c the way the Internet
 * does: the fuzz input arrives on a real socket (one end of a socketpair
 * handed to smtp_session_create), cut into writes by the chunk plan
 * (fuzz_common.h), with the event loop run until quiet between writes,
 * so every split of a line, a command or the message data across reads is
 * tried. The byte after the plan picks the client: bit 0 a trusted
 * address (mynetworks), bit 1 the submission port, bit 2 bare_newline =
 * normalize, bit 3 reject_unauth_pipelining = off (so that commands in
 * one write are not all cut short at the first: pipelining before EHLO,
 * or after a command that must end a group, is 554 and goodbye). Recipients are checked against a real store made at start
 * (fuzz_common.c); accepted transactions are relayed to a fake next hop in
 * this process (an evconnlistener on 127.0.0.1 that answers 220/250/354
 * and takes the message). DNS is off (reverse_lookup = no, no DNSBL,
 * RHSBL or sender domain checks); delays are zero so the fuzzer never
 * waits on a timer.
 *
 * Checked: every complete line the client hears is an SMTP reply
 * ("NNN " or "NNN-", 2xx..5xx), every log line is printable, and once
 * the client has gone every session is freed (ASan reports the rest).
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "store.h"
#include "xalloc.h"
#include "smtpd.h"
#include "params_rules.h"
#include "params_smtpd.h"
#include "smtpd_check.h"
#include "smtpd_dns.h"
#include "smtpd_anvil.h"
#include "smtp_session.h"
#include "smtp_session_int.h"
#include "fuzz_common.h"

static long fuzz_activity;          /* bytes or events seen: the loop is not quiet yet */
static int fuzz_hops;               /* fake next hop connections open */
static long fuzz_lines;             /* reply lines the client heard */
static int fuzz_trace;              /* FUZZ_TRACE set: what the client hears goes to stderr */

/* ------------------------------------------------------------ the fake next hop */

/* One connection from the relay; data: between DATA's 354 and the dot. */
typedef struct fuzz_hop {
    struct bufferevent *bev;
    int data;
} FUZZ_HOP;

/* fuzz_hop_free - the relay left (or broke the connection) */
static void fuzz_hop_free(FUZZ_HOP *h)
{
    bufferevent_free(h->bev);
    free(h);
    fuzz_hops--;
}

/* fuzz_hop_read - answer each command line; swallow the message up to its dot */
static void fuzz_hop_read(struct bufferevent *bev, void *arg)
{
    FUZZ_HOP *h = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(bev);
    char *line;
    size_t n;

    fuzz_activity++;
    for (;;) {
        if (h->data) {
            /* The relay sends CRLF lines, dot-stuffed; "." alone ends it. */
            if ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT)) == NULL)
                return;
            if (strcmp(line, ".") == 0) {
                h->data = 0;
                evbuffer_add_printf(out, "250 2.0.0 Ok: queued as FUZZ\r\n");
            }
            free(line);
            continue;
        }
        if ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT)) == NULL)
            return;
        if (fuzz_trace)
            fprintf(stderr, "HOP<- %s\n", line);
        if (strncasecmp(line, "EHLO", 4) == 0) {
            evbuffer_add_printf(out, "250-hop.example.com\r\n250-PIPELINING\r\n250-SIZE 20000000\r\n"
                                "250-8BITMIME\r\n250-SMTPUTF8\r\n250-XFORWARD NAME ADDR PROTO HELO\r\n"
                                "250 ENHANCEDSTATUSCODES\r\n");
        } else if (strncasecmp(line, "DATA", 4) == 0) {
            h->data = 1;
            evbuffer_add_printf(out, "354 End data with <CR><LF>.<CR><LF>\r\n");
        } else if (strncasecmp(line, "QUIT", 4) == 0) {
            evbuffer_add_printf(out, "221 2.0.0 Bye\r\n");
        } else {
            evbuffer_add_printf(out, "250 2.0.0 Ok\r\n");
        }
        free(line);
    }
}

/* fuzz_hop_event - the relay closed its side */
static void fuzz_hop_event(struct bufferevent *bev, short what, void *arg)
{
    (void) bev;
    fuzz_activity++;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        fuzz_hop_free(arg);
}

/* fuzz_hop_accept - the relay connects: greet it */
static void fuzz_hop_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                            void *arg)
{
    FUZZ_HOP *h = xcalloc(1, sizeof(*h));

    (void) l;
    (void) sa;
    (void) salen;
    (void) arg;
    fuzz_activity++;
    fuzz_hops++;
    h->bev = bufferevent_socket_new(smtpd_base, fd, BEV_OPT_CLOSE_ON_FREE);
    fuzz_check(h->bev != NULL);
    bufferevent_setcb(h->bev, fuzz_hop_read, NULL, fuzz_hop_event, h);
    bufferevent_enable(h->bev, EV_READ | EV_WRITE);
    evbuffer_add_printf(bufferevent_get_output(h->bev), "220 hop.example.com ESMTP\r\n");
}

/* ------------------------------------------------------------ set-up */

/* fuzz_init - config, store, event base, resolver and next hop: once per process */
static void fuzz_init(void)
{
    static int done;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    struct evconnlistener *lev;
    SMTPD_DNS *dns;
    char *store, *conf, nexthop[64], err[256];

    if (done)
        return;
    done = 1;
    signal(SIGPIPE, SIG_IGN);
    fuzz_quiet("fuzz_smtpd_session");
    fuzz_trace = getenv("FUZZ_TRACE") ? atoi(getenv("FUZZ_TRACE")) : 0;
    smtpd_base = event_base_new();
    fuzz_check(smtpd_base != NULL);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lev = evconnlistener_new_bind(smtpd_base, fuzz_hop_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                  64, (struct sockaddr *) &sin, sizeof(sin));
    fuzz_check(lev != NULL);
    fuzz_check(getsockname(evconnlistener_get_fd(lev), (struct sockaddr *) &sin, &len) == 0);
    snprintf(nexthop, sizeof(nexthop), "smtp:[127.0.0.1]:%d", ntohs(sin.sin_port));

    store = fuzz_store(nexthop);
    conf = xasprintf("[store]\npath = %s\n"
                     "[rules]\nmynetworks = 127.0.0.0/8\nhostname = mx.example.net\n"
                     "[smtpd]\nuser =\n"
                     "greet_pause = 0\nerror_sleep_time = 0\nharvest_delay = 0\nauth_failure_delay = 0\n"
                     "min_data_rate = 0\nreverse_lookup = no\nreject_unknown_sender_domain = off\n"
                     "dns_servers = 127.0.0.1:9\ntls = none\nrelay_tls = none\n"
                     "message_size_limit = 100000\nrecipient_limit = 100\n"
                     "relay_connect_timeout = 1s\nrelay_timeout = 1s\n", store);
    fuzz_config(conf, params_smtpd_sections());
    free(conf);
    if (smtpd_check_init(err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz: smtpd_check_init: %s\n", err);
        abort();
    }
    snprintf(smtpd_hostname, sizeof(smtpd_hostname), "%s", var_rules_hostname);
    smtpd_store = store_open(store, 0, 2000, err, sizeof(err));
    fuzz_check(smtpd_store != NULL);
    free(store);
    dns = smtpd_dns_create(smtpd_base, var_smtpd_dns_servers, var_smtpd_dns_timeout_ms, err, sizeof(err));
    fuzz_check(dns != NULL);
    smtpd_anvil_init(var_smtpd_anvil_size);
    smtp_session_init(dns);
}

/* ------------------------------------------------------------ the client side */

/* Reply bytes not yet ending in a line feed. */
static char fuzz_reply[8192];
static size_t fuzz_reply_len;

/* fuzz_reply_line - one complete line from the server is an SMTP reply */
static void fuzz_reply_line(const char *p, size_t n)
{
    fuzz_check(n >= 6 && p[n - 2] == '\r' && p[n - 1] == '\n');
    fuzz_check(p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9');
    fuzz_check(p[3] == ' ' || p[3] == '-');
    fuzz_check(memchr(p, '\r', n - 2) == NULL);
}

/* fuzz_drain - read what the server said and check its complete lines; 0 at its end of file */
static int fuzz_drain(int fd)
{
    for (;;) {
        ssize_t n = read(fd, fuzz_reply + fuzz_reply_len, sizeof(fuzz_reply) - fuzz_reply_len);
        char *nl;

        if (n <= 0)
            return n != 0;
        fuzz_activity++;
        if (fuzz_trace)
            fprintf(stderr, "S: %.*s", (int) n, fuzz_reply + fuzz_reply_len);
        fuzz_reply_len += (size_t) n;
        while ((nl = memchr(fuzz_reply, '\n', fuzz_reply_len)) != NULL) {
            size_t len = (size_t) (nl - fuzz_reply) + 1;

            fuzz_reply_line(fuzz_reply, len);
            fuzz_lines++;
            fuzz_reply_len -= len;
            memmove(fuzz_reply, fuzz_reply + len, fuzz_reply_len);
        }
        /* No reply line is anywhere near this long. */
        fuzz_check(fuzz_reply_len < sizeof(fuzz_reply));
        if ((size_t) n < sizeof(fuzz_reply) - fuzz_reply_len)
            return 1;           /* a short read emptied the socket: no read just for EAGAIN */
    }
}

/* fuzz_client_cb - the loop saw the client's end readable: what the server said */
static void fuzz_client_cb(evutil_socket_t fd, short what, void *arg)
{
    (void) what;
    /* After the server's end of file the event would fire every round for nothing. */
    if (!fuzz_drain(fd))
        event_del(arg);
}

/*
 * fuzz_spin - run the loop until nothing moves for a few rounds. The
 * client's end is an event of the same loop (fuzz_client_cb): a round
 * is one epoll_wait, and the client reads only what is there.
 */
static void fuzz_spin(void)
{
    int quiet = 0;

    for (int i = 0; i < 400 && quiet < 3; i++) {
        long before = fuzz_activity;

        event_base_loop(smtpd_base, EVLOOP_NONBLOCK);
        quiet = fuzz_activity == before ? quiet + 1 : 0;
        if (fuzz_trace > 1)
            fprintf(stderr, "spin %d: activity %ld, quiet %d\n", i, fuzz_activity - before, quiet);
    }
}

/* fuzz_wait - let timers run (closing sessions flush on a 20 ms timer) */
static void fuzz_wait(int ms)
{
    struct timeval tv = {0, ms * 1000};

    event_base_loopexit(smtpd_base, &tv);
    event_base_dispatch(smtpd_base);
}

/* The connection the loop is about to accept. */
static struct {
    int fd;
    int submission;
    struct sockaddr_in sin;
} fuzz_new;

/* fuzz_accept - the session begins inside the loop, as after a real accept() */
static void fuzz_accept(evutil_socket_t fd, short what, void *arg)
{
    (void) fd;
    (void) what;
    (void) arg;
    fuzz_activity++;
    smtp_session_create(fuzz_new.fd, (struct sockaddr *) &fuzz_new.sin, sizeof(fuzz_new.sin),
                        fuzz_new.submission);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_CHUNKS ck;
    const uint8_t *p;
    size_t len;
    struct event *client;
    int sv[2], mode;

    fuzz_init();
    if (fuzz_chunks_init(&ck, data, size) < 0 || ck.size < 1)
        return 0;
    mode = ck.data[ck.pos++];
    if (fuzz_trace)
        fprintf(stderr, "--- input of %zu bytes, mode %d\n", size, mode);
    fuzz_check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fuzz_check(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
    client = event_new(smtpd_base, sv[1], EV_READ | EV_PERSIST, fuzz_client_cb, event_self_cbarg());
    fuzz_check(client != NULL && event_add(client, NULL) == 0);
    evutil_make_socket_nonblocking(sv[0]);
    memset(&fuzz_new.sin, 0, sizeof(fuzz_new.sin));
    fuzz_new.sin.sin_family = AF_INET;
    fuzz_new.sin.sin_port = htons(40000);
    inet_pton(AF_INET, mode & 1 ? "127.0.0.1" : "192.0.2.7", &fuzz_new.sin.sin_addr);
    smtp_session_normalize = (mode & 4) != 0;
    /* Bit 3: reject_unauth_pipelining = off, so that commands in one write go deeper. */
    {
        static char *enforce;
        static char off[] = "off";

        if (enforce == NULL)
            enforce = var_smtpd_unauth_pipelining;
        var_smtpd_unauth_pipelining = mode & 8 ? off : enforce;
    }
    fuzz_reply_len = 0;
    fuzz_lines = 0;
    fuzz_new.fd = sv[0];
    fuzz_new.submission = (mode & 2) != 0;
    /* From the loop, as smtpd.c's accept callback does: the loop's clock is the session's. */
    event_base_once(smtpd_base, -1, EV_TIMEOUT, fuzz_accept, NULL, NULL);
    fuzz_spin();
    /* A client waits for the banner (a timer may stand between, in principle). */
    for (int i = 0; i < 200 && fuzz_lines == 0 && smtp_session_count() > 0; i++) {
        fuzz_wait(1);
        fuzz_spin();
    }
    while (fuzz_chunks_next(&ck, &p, &len)) {
        size_t off = 0;

        while (off < len) {
            ssize_t n = write(sv[1], p + off, len - off);

            if (n <= 0)
                break;          /* the session stopped reading, or closed */
            off += (size_t) n;
            fuzz_spin();
        }
        if (off < len)
            break;
        fuzz_spin();
    }
    /* The client is done talking; then it leaves. */
    shutdown(sv[1], SHUT_WR);
    fuzz_spin();
    event_free(client);
    close(sv[1]);
    fuzz_spin();
    for (int i = 0; i < 20 && (smtp_session_count() > 0 || fuzz_hops > 0); i++) {
        if (fuzz_trace)
            fprintf(stderr, "wait: %d sessions, %d next hop connections\n", smtp_session_count(), fuzz_hops);
        fuzz_wait(25);
    }
    if (smtp_session_count() > 0) {
        fprintf(stderr, "fuzz: %d session(s) still open after the client left\n", smtp_session_count());
        abort();
    }
    /* Per-client counters start afresh: each input is its own client. */
    smtpd_anvil_free();
    smtpd_anvil_init(var_smtpd_anvil_size);
    return 0;
}
