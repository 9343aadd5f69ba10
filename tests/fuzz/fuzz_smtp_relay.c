/*
 * fuzz_smtp_relay.c - libFuzzer target: a next hop's replies to the relay
 *
 * Drives smtpd/smtp_relay.c, rcptgate-smtpd's downstream SMTP client,
 * with the fuzzer as the next hop: an evconnlistener on 127.0.0.1 in this
 * process takes the relay's connections (two hops in the list, both this
 * listener, so a refused banner or EHLO fails over to the second), and
 * the fuzz input is written to the newest connection in the pieces the
 * chunk plan cuts (fuzz_common.h), the loop run until quiet after each.
 * What the relay sends is read and dropped. The relay is driven as a
 * session drives it: MAIL (with XFORWARD of a client), two RCPTs, DATA,
 * the message and the dot, each asked once the previous reply came. The
 * byte after the plan: bit 0 asks the RCPTs right behind MAIL
 * (pipelined), bit 1 frees the relay in the middle of the exchange.
 * relay_tls = may with no client TLS context: an offered STARTTLS is
 * skipped; the relay stays in the clear.
 *
 * Checked: callbacks come one per request, in order, never after
 * smtp_relay_free(); every reply handed back starts with its code, a
 * 2xx..5xx number, and is printable; the relay is always freeable and
 * ASan sees nothing left behind.
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

#include "xalloc.h"
#include "smtpd.h"
#include "params_rules.h"
#include "params_smtpd.h"
#include "smtp_relay.h"
#include "fuzz_common.h"

/* The replies of one exchange fit in far fewer pieces (see fuzz_common.h). */
#ifndef FUZZ_RELAY_PIECES
#define FUZZ_RELAY_PIECES 256
#endif

static long fuzz_activity;
static char fuzz_hops[128];
static int fuzz_trace;

/* The next hop's side: the newest connection gets the input. */
static struct bufferevent *fuzz_conn[8];
static int fuzz_nconn;

/* fuzz_conn_read - what the relay sends is read and dropped */
static void fuzz_conn_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);

    (void) arg;
    fuzz_activity++;
    if (fuzz_trace) {
        size_t n = evbuffer_get_length(in);
        char *p = (char *) evbuffer_pullup(in, (ssize_t) n);

        fprintf(stderr, "R: %.*s", (int) n, p);
    }
    evbuffer_drain(in, evbuffer_get_length(in));
}

/* fuzz_conn_event - the relay closed a connection: keep the bufferevent until the input ends */
static void fuzz_conn_event(struct bufferevent *bev, short what, void *arg)
{
    (void) arg;
    (void) what;
    fuzz_activity++;
    bufferevent_disable(bev, EV_READ | EV_WRITE);
}

/* fuzz_accept - the relay connects to the next hop */
static void fuzz_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct bufferevent *bev;

    (void) l;
    (void) sa;
    (void) salen;
    (void) arg;
    fuzz_activity++;
    if (fuzz_nconn == (int) (sizeof(fuzz_conn) / sizeof(fuzz_conn[0]))) {
        evutil_closesocket(fd);
        return;
    }
    bev = bufferevent_socket_new(smtpd_base, fd, BEV_OPT_CLOSE_ON_FREE);
    fuzz_check(bev != NULL);
    bufferevent_setcb(bev, fuzz_conn_read, NULL, fuzz_conn_event, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    fuzz_conn[fuzz_nconn++] = bev;
}

/* fuzz_init - config, event base and the listener: once per process */
static void fuzz_init(void)
{
    static int done;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    struct evconnlistener *lev;

    if (done)
        return;
    done = 1;
    signal(SIGPIPE, SIG_IGN);
    fuzz_quiet("fuzz_smtp_relay");
    fuzz_trace = getenv("FUZZ_TRACE") != NULL;
    smtpd_base = event_base_new();
    fuzz_check(smtpd_base != NULL);
    fuzz_config("[rules]\nhostname = mx.example.net\n[smtpd]\nuser =\nrelay_tls = may\nxforward = yes\n"
                "relay_connect_timeout = 1s\nrelay_timeout = 1s\n", params_smtpd_sections());
    snprintf(smtpd_hostname, sizeof(smtpd_hostname), "%s", var_rules_hostname);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lev = evconnlistener_new_bind(smtpd_base, fuzz_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                  64, (struct sockaddr *) &sin, sizeof(sin));
    fuzz_check(lev != NULL);
    fuzz_check(getsockname(evconnlistener_get_fd(lev), (struct sockaddr *) &sin, &len) == 0);
    snprintf(fuzz_hops, sizeof(fuzz_hops), "smtp:[127.0.0.1]:%d,smtp:[127.0.0.1]:%d",
             ntohs(sin.sin_port), ntohs(sin.sin_port));
}

/* ------------------------------------------------------------ the session's side */

enum { REQ_MAIL, REQ_RCPT1, REQ_RCPT2, REQ_DATA, REQ_DOT, REQ_DONE };

static struct {
    SMTP_RELAY *r;
    int pipelined;
    int asked;                  /* requests made */
    int answered;               /* callbacks seen */
    int next;                   /* the next request of the script */
    int rcpt_ok;
    int freed;
} fz;

static void fuzz_reply(void *arg, int code, const char *reply);

/* fuzz_ask - make request what */
static void fuzz_ask(int what)
{
    static const char msg[] = "From: a@example.net\r\nSubject: x\r\n\r\n..stuffed\r\nbody\r\n";

    fz.asked++;
    switch (what) {
    case REQ_RCPT1:
        smtp_relay_rcpt(fz.r, "alice@example.com", "", fuzz_reply, (void *) (long) REQ_RCPT1);
        break;
    case REQ_RCPT2:
        smtp_relay_rcpt(fz.r, "bob@example.com", "NOTIFY=NEVER", fuzz_reply, (void *) (long) REQ_RCPT2);
        break;
    case REQ_DATA:
        smtp_relay_data(fz.r, fuzz_reply, (void *) (long) REQ_DATA);
        break;
    case REQ_DOT:
        (void) smtp_relay_write(fz.r, msg, sizeof(msg) - 1);
        (void) smtp_relay_backlog(fz.r);
        smtp_relay_dot(fz.r, fuzz_reply, (void *) (long) REQ_DOT);
        break;
    default:
        abort();
    }
}

/* fuzz_reply - one reply from the relay: in order, well formed; then the next step */
static void fuzz_reply(void *arg, int code, const char *reply)
{
    int what = (int) (long) arg;
    char want[8];

    fuzz_activity++;
    fuzz_check(!fz.freed);
    fuzz_check(what == fz.answered);    /* one per request, in order */
    fz.answered++;
    fuzz_check(fz.answered <= fz.asked);
    fuzz_check(code >= 200 && code <= 599);
    snprintf(want, sizeof(want), "%d", code);
    fuzz_check(strncmp(reply, want, 3) == 0 && (reply[3] == 0 || reply[3] == ' ' || reply[3] == '-'));
    for (const unsigned char *p = (const unsigned char *) reply; *p; p++)
        fuzz_check(*p >= 0x20 && *p != 0x7f);
    if (fuzz_trace)
        fprintf(stderr, "cb %d: %s\n", what, reply);
    if ((what == REQ_RCPT1 || what == REQ_RCPT2) && code / 100 == 2)
        fz.rcpt_ok++;
    if (fz.pipelined && what < REQ_RCPT2)
        return;                 /* the RCPTs were asked already */
    switch (what) {
    case REQ_MAIL:
        if (code / 100 != 2) {
            fz.next = REQ_DONE;
            return;
        }
        fuzz_ask(REQ_RCPT1);
        return;
    case REQ_RCPT1:
        fuzz_ask(REQ_RCPT2);
        return;
    case REQ_RCPT2:
        if (fz.rcpt_ok == 0) {
            fz.next = REQ_DONE;
            return;
        }
        fuzz_ask(REQ_DATA);
        return;
    case REQ_DATA:
        if (code != 354) {
            fz.next = REQ_DONE;
            return;
        }
        fuzz_ask(REQ_DOT);
        return;
    default:
        fz.next = REQ_DONE;
        return;
    }
}

/* fuzz_spin - run the loop until nothing moves for a few rounds */
static void fuzz_spin(void)
{
    int quiet = 0;

    for (int i = 0; i < 400 && quiet < 3; i++) {
        long before = fuzz_activity;

        event_base_loop(smtpd_base, EVLOOP_NONBLOCK);
        quiet = fuzz_activity == before ? quiet + 1 : 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_CHUNKS ck;
    SMTPD_CLIENT client;
    SMTP_RELAY_ENV env;
    const uint8_t *p;
    size_t len;
    int mode, pieces = 0;

    fuzz_init();
    if (fuzz_chunks_init(&ck, data, size) < 0 || ck.size < 1)
        return 0;
    ck.max_pieces = FUZZ_RELAY_PIECES;
    mode = ck.data[ck.pos++];
    memset(&fz, 0, sizeof(fz));
    fz.pipelined = mode & 1;
    memset(&client, 0, sizeof(client));
    snprintf(client.addr, sizeof(client.addr), "192.0.2.7");
    snprintf(client.name, sizeof(client.name), "client.example.net");
    client.port = 40000;
    client.helo = "client.example.net";
    client.esmtp = 1;
    memset(&env, 0, sizeof(env));
    env.nexthops = fuzz_hops;
    env.client = &client;
    env.sender = "sender@example.net";
    env.mail_params = "SIZE=100 BODY=8BITMIME";
    fz.asked = 1;
    fz.r = smtp_relay_open(&env, fuzz_reply, (void *) (long) REQ_MAIL);
    fuzz_check(fz.r != NULL);
    if (fz.pipelined) {
        fuzz_ask(REQ_RCPT1);
        fuzz_ask(REQ_RCPT2);
    }
    fuzz_spin();
    while (fuzz_chunks_next(&ck, &p, &len)) {
        if (fuzz_nconn == 0)
            break;
        bufferevent_write(fuzz_conn[fuzz_nconn - 1], p, len);
        fuzz_spin();
        /* Bit 1: the client goes away in the middle (the session frees its relay). */
        if ((mode & 2) && ++pieces == 3)
            break;
        if (fz.next == REQ_DONE)
            break;
    }
    /* The next hop hangs up; the relay reports that or is freed as it waits. */
    for (int i = 0; i < fuzz_nconn; i++)
        bufferevent_free(fuzz_conn[i]);
    fuzz_nconn = 0;
    fuzz_spin();
    smtp_relay_free(fz.r);
    fz.freed = 1;
    fuzz_spin();
    return 0;
}
