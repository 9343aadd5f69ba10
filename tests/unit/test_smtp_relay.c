/*
 * test_smtp_relay.c - unit tests for smtpd/smtp_relay.c and smtp_tls.c
 *
 * Each relay case starts real /usr/sbin/smtp-sink processes on loopback
 * ports (with the option that makes them misbehave in the way the case
 * needs), drives one SMTP_RELAY in a real libevent loop, records every
 * callback, and checks the replies and what the sink wrote to its dump
 * directory (one file per delivered message; an aborted transaction
 * leaves none). The TLS cases make a key and certificate with openssl(1).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "cfg.h"
#include "log.h"
#include "xalloc.h"
#include "smtpd.h"
#include "params_smtpd.h"
#include "smtp_relay.h"
#include "smtp_tls.h"

#define SINK "/usr/sbin/smtp-sink"
#define MAXREPLY 16

static char tdir[512];          /* this run's private directory */
/*
 * Where the sinks write: smtp-sink runs as nobody (when we are root), and
 * nobody may not enter the build tree (a clone under /root is mode 0700),
 * so its dumps live in a 0711 directory of their own under $TMPDIR.
 */
static char sdir[512];

/* One running smtp-sink. */
typedef struct sink {
    pid_t pid;
    int port;
    char dump[600];
    char log[600];
} SINK_T;

/* What the callbacks saw. */
static struct {
    int n;
    int code[MAXREPLY];
    char text[MAXREPLY][SMTPD_REPLY_LEN];
    int want;                   /* stop the loop after this many */
    SMTP_RELAY *free_in_cb;     /* free this relay inside callback number free_at */
    int free_at;
} got;

static SMTPD_CLIENT client;
static pid_t children[32];      /* servers still running: a failed case leaves none behind */

static void child_add(pid_t);
static char *cfg_strings[5];

/* free_port - a loopback port nobody listens on right now */
static int free_port(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *) &sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *) &sin, &len), 0);
    port = ntohs(sin.sin_port);
    close(fd);
    return port;
}

/* port_open - does something accept connections on the port? */
static int port_open(int port)
{
    struct sockaddr_in sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short) port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *) &sin, sizeof(sin)) == 0;
    close(fd);
    return ok;
}

/* sink_start - smtp-sink on a fresh port with extra options (NULL-terminated) */
static void sink_start(SINK_T *s, ...)
{
    const char *argv[32];
    char tmpl[700], addr[64];
    int argc = 0, i;
    va_list ap;
    static int seq;

    s->port = free_port();
    snprintf(s->dump, sizeof(s->dump), "%s/dump%d", sdir, ++seq);
    snprintf(s->log, sizeof(s->log), "%s/sink%d.log", tdir, seq);
    mkdir(s->dump, 0777);
    chmod(s->dump, 0777);       /* the sink writes as nobody */
    snprintf(tmpl, sizeof(tmpl), "%s/%%M.", s->dump);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", s->port);
    argv[argc++] = SINK;
    if (geteuid() == 0) {
        argv[argc++] = "-u";
        argv[argc++] = "nobody";
    }
    argv[argc++] = "-v";
    argv[argc++] = "-d";
    argv[argc++] = tmpl;
    va_start(ap, s);
    while (argc < 28 && (argv[argc] = va_arg(ap, const char *)) != NULL)
        argc++;
    va_end(ap);
    argv[argc++] = addr;
    argv[argc++] = "10";
    argv[argc] = NULL;
    if ((s->pid = fork()) == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        dup2(fd, 1);
        dup2(fd, 2);
        execv(SINK, (char *const *) argv);
        _exit(127);
    }
    assert_true(s->pid > 0);
    child_add(s->pid);
    for (i = 0; i < 200 && !port_open(s->port); i++)
        usleep(20000);
    assert_true(port_open(s->port));
}

/* child_add - remember a server we started */
static void child_add(pid_t pid)
{
    size_t i;

    for (i = 0; i < sizeof(children) / sizeof(children[0]); i++)
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
}

/* child_end - stop one server and forget it */
static void child_end(pid_t pid)
{
    size_t i;

    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    for (i = 0; i < sizeof(children) / sizeof(children[0]); i++)
        if (children[i] == pid)
            children[i] = 0;
}

/* teardown - stop whatever a case left running (it failed half way) */
static int teardown(void **state)
{
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(children) / sizeof(children[0]); i++)
        if (children[i] > 0)
            child_end(children[i]);
    return 0;
}

/* sink_stop - end the sink */
static void sink_stop(SINK_T *s)
{
    if (s->pid > 0) {
        child_end(s->pid);
        s->pid = 0;
    }
}

/* sink_count - messages the sink stored */
static int sink_count(SINK_T *s)
{
    DIR *d = opendir(s->dump);
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    /* smtp-sink leaves an empty file for a session it ended with 421 (-Q). */
    while ((e = readdir(d)) != NULL) {
        char path[1200];
        struct stat sb;

        snprintf(path, sizeof(path), "%s/%s", s->dump, e->d_name);
        if (e->d_name[0] != '.' && stat(path, &sb) == 0 && sb.st_size > 0)
            n++;
    }
    closedir(d);
    return n;
}

/* file_slurp - a whole small file as a string */
static char *file_slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf = xmalloc(65536);
    size_t n = 0;

    if (fp) {
        n = fread(buf, 1, 65535, fp);
        fclose(fp);
    }
    buf[n] = 0;
    return buf;
}

/* sink_message - the text of the one stored message */
static char *sink_message(SINK_T *s)
{
    DIR *d = opendir(s->dump);
    struct dirent *e;
    char path[1200];

    path[0] = 0;
    while (d && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            snprintf(path, sizeof(path), "%s/%s", s->dump, e->d_name);
    if (d)
        closedir(d);
    return file_slurp(path);
}

/* record - the callback of every request */
static void record(void *arg, int code, const char *reply)
{
    (void) arg;
    assert_true(got.n < MAXREPLY);
    got.code[got.n] = code;
    snprintf(got.text[got.n], sizeof(got.text[0]), "%s", reply);
    got.n++;
    if (got.free_in_cb && got.n == got.free_at) {
        smtp_relay_free(got.free_in_cb);
        got.free_in_cb = NULL;
    }
    if (got.n >= got.want)
        event_base_loopbreak(smtpd_base);
}

/* run_deadline - the case took too long: stop the loop */
static void run_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void) fd;
    (void) what;
    (void) arg;
    event_base_loopbreak(smtpd_base);
}

/* run - loop until want callbacks arrived (or 10 s passed) */
static void run(int want)
{
    struct timeval tv = {10, 0};
    struct event *deadline = evtimer_new(smtpd_base, run_deadline, NULL);

    got.want = want;
    evtimer_add(deadline, &tv);
    if (got.n < want)
        event_base_dispatch(smtpd_base);
    event_free(deadline);
}

/* settle - let closing connections (QUIT) finish */
static void settle(void)
{
    struct timeval tv = {0, 300000};

    event_base_loopexit(smtpd_base, &tv);
    event_base_dispatch(smtpd_base);
}

/* hop - "smtp:[127.0.0.1]:PORT" */
static const char *hop(int port)
{
    static char buf[4][64];
    static int i;

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "smtp:[127.0.0.1]:%d", port);
    return buf[i];
}

/* open_relay - a relay for the test client and sender */
static SMTP_RELAY *open_relay(const char *nexthops, const char *params)
{
    SMTP_RELAY_ENV env = {0};

    env.nexthops = nexthops;
    env.client = &client;
    env.sender = "sender@client.test";
    env.mail_params = params;
    return smtp_relay_open(&env, record, NULL);
}

static const char body[] = "Subject: relay test\r\nFrom: <sender@client.test>\r\n\r\nline one\r\n..dot-stuffed\r\n";

/* full_transaction - MAIL, two RCPTs, DATA, body, dot; all asked at once */
static SMTP_RELAY *full_transaction(const char *nexthops)
{
    SMTP_RELAY *r = open_relay(nexthops, "BODY=8BITMIME SIZE=100");

    smtp_relay_rcpt(r, "a@example.com", "", record, NULL);
    smtp_relay_rcpt(r, "b@example.com", "NOTIFY=NEVER", record, NULL);
    smtp_relay_data(r, record, NULL);
    assert_int_equal(smtp_relay_write(r, body, sizeof(body) - 1), 0);
    smtp_relay_dot(r, record, NULL);
    run(5);
    return r;
}

static int setup(void **state)
{
    (void) state;
    memset(&got, 0, sizeof(got));
    var_smtpd_relay_timeout_ms = 5000;
    var_smtpd_relay_conn_ms = 2000;
    var_smtpd_xforward = 1;
    var_smtpd_relay_tls = "may";
    return 0;
}

/* test_whole - a transaction arrives exactly, and XFORWARD was sent */
static void test_whole(void **state)
{
    SINK_T s;
    SMTP_RELAY *r;
    char *msg, *log;

    (void) state;
    sink_start(&s, NULL);
    r = full_transaction(hop(s.port));
    assert_int_equal(got.n, 5);
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[1], 250);
    assert_int_equal(got.code[2], 250);
    assert_int_equal(got.code[3], 354);
    assert_int_equal(got.code[4], 250);
    assert_string_equal(got.text[4], "250 2.0.0 Ok");
    {
        char want[64];

        snprintf(want, sizeof(want), "127.0.0.1[127.0.0.1]:%d", s.port);
        assert_string_equal(smtp_relay_peer(r), want);
    }
    smtp_relay_free(r);
    settle();
    assert_int_equal(sink_count(&s), 1);
    msg = sink_message(&s);
    /* SIZE is not offered by smtp-sink, so it is not passed; BODY is; NOTIFY is (DSN). */
    assert_non_null(strstr(msg, "X-Mail-Args: <sender@client.test> BODY=8BITMIME\n"));
    assert_non_null(strstr(msg, "X-Rcpt-Args: <a@example.com>\n"));
    assert_non_null(strstr(msg, "X-Rcpt-Args: <b@example.com> NOTIFY=NEVER\n"));
    assert_non_null(strstr(msg, "X-Helo-Args: mx.gateway.test\n"));
    assert_non_null(strstr(msg, "Subject: relay test\nFrom: <sender@client.test>\n\nline one\n.dot-stuffed\n"));
    free(msg);
    sink_stop(&s);
    log = file_slurp(s.log);
    assert_non_null(strstr(log, "XFORWARD NAME=client.test ADDR=IPV6:2001:db8::7 PROTO=ESMTP "
                           "HELO=helo+20with+2Bspace"));
    assert_non_null(strstr(log, "QUIT"));
    free(log);
}

/* step_cb - drive a transaction one reply at a time, as the session does */
static SMTP_RELAY *step_relay;

static void step_cb(void *arg, int code, const char *reply)
{
    record(arg, code, reply);
    switch (got.n) {
    case 1:
        smtp_relay_rcpt(step_relay, "x@example.com", "", step_cb, NULL);
        break;
    case 2:
        smtp_relay_data(step_relay, step_cb, NULL);
        break;
    case 3:
        assert_int_equal(smtp_relay_write(step_relay, body, sizeof(body) - 1), 0);
        smtp_relay_dot(step_relay, step_cb, NULL);
        break;
    }
}

/* test_stepwise - requests made from inside callbacks; HELO when EHLO is refused */
static void test_stepwise(void **state)
{
    SMTP_RELAY_ENV env = {.nexthops = NULL, .client = &client, .sender = "", .mail_params = ""};
    SINK_T s;
    char *msg;

    (void) state;
    sink_start(&s, "-f", "EHLO", NULL);
    env.nexthops = hop(s.port);
    step_relay = smtp_relay_open(&env, step_cb, NULL);
    run(4);
    assert_int_equal(got.n, 4);
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[2], 354);
    assert_int_equal(got.code[3], 250);
    smtp_relay_free(step_relay);
    settle();
    assert_int_equal(sink_count(&s), 1);
    msg = sink_message(&s);
    assert_non_null(strstr(msg, "X-Client-Proto: SMTP\n"));
    assert_non_null(strstr(msg, "X-Mail-Args: <>\n"));
    free(msg);
    sink_stop(&s);
}

/* test_failover - a dead port first, then a live one */
static void test_failover(void **state)
{
    char list[200];
    SINK_T s;
    SMTP_RELAY *r;

    (void) state;
    sink_start(&s, NULL);
    snprintf(list, sizeof(list), "%s, %s", hop(free_port()), hop(s.port));
    r = full_transaction(list);
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[4], 250);
    smtp_relay_free(r);
    settle();
    assert_int_equal(sink_count(&s), 1);
    sink_stop(&s);
}

/* test_name - a next hop given by name is resolved without blocking (here from /etc/hosts) */
static void test_name(void **state)
{
    char list[200];
    SINK_T s;
    SMTP_RELAY *r;

    (void) state;
    sink_start(&s, NULL);
    snprintf(list, sizeof(list), "relay:localhost:%d", s.port);
    r = full_transaction(list);
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[4], 250);
    {
        char want[64];

        snprintf(want, sizeof(want), "localhost[127.0.0.1]:%d", s.port);
        assert_string_equal(smtp_relay_peer(r), want);
    }
    smtp_relay_free(r);
    settle();
    assert_int_equal(sink_count(&s), 1);
    sink_stop(&s);
}

/* test_banner_421 - a hop that greets with 421 is left for the next */
static void test_banner_421(void **state)
{
    char list[200];
    SINK_T bad, good;
    SMTP_RELAY *r;

    (void) state;
    sink_start(&bad, "-Q", "CONNECT", NULL);
    sink_start(&good, NULL);
    snprintf(list, sizeof(list), "%s,%s", hop(bad.port), hop(good.port));
    r = full_transaction(list);
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[4], 250);
    smtp_relay_free(r);
    settle();
    assert_int_equal(sink_count(&good), 1);
    sink_stop(&bad);
    sink_stop(&good);
}

/*
 * test_banner_5xx - the only hop greets with 5xx: every reply is 451 4.4.x
 * (the inside refusing to talk says nothing about the recipient), never a
 * 5xx that would bounce the mail
 */
static void test_banner_5xx(void **state)
{
    SINK_T bad;
    SMTP_RELAY *r;
    int i;

    (void) state;
    sink_start(&bad, "-f", "CONNECT", NULL);
    r = full_transaction(hop(bad.port));
    assert_int_equal(got.n, 5);
    for (i = 0; i < 5; i++)
        assert_int_equal(strncmp(got.text[i], "451 4.4.", 8), 0);
    assert_int_equal(strncmp(got.text[0], "451 4.4.1 Next hop refused to talk to me: 5", 43), 0);
    smtp_relay_free(r);
    sink_stop(&bad);
}

/* test_xforward_split - a long HELO: the attributes go in two XFORWARD commands */
static void test_xforward_split(void **state)
{
    SINK_T s;
    SMTP_RELAY *r;
    char helo[256], *log, *p;
    int n = 0;

    (void) state;
    memset(helo, ' ', 154);     /* 150 spaces: 450 bytes of xtext, too long for one line with the rest */
    memcpy(helo, "long", 4);
    snprintf(helo + 154, sizeof(helo) - 154, "end");
    client.helo = helo;
    sink_start(&s, NULL);
    r = full_transaction(hop(s.port));
    client.helo = "helo with+space";
    assert_int_equal(got.code[4], 250);
    smtp_relay_free(r);
    settle();
    sink_stop(&s);
    log = file_slurp(s.log);
    for (p = log; (p = strstr(p, "smtp-sink: XFORWARD ")) != NULL; p++)
        n++;
    assert_int_equal(n, 2);
    assert_non_null(strstr(log, "XFORWARD NAME=client.test ADDR=IPV6:2001:db8::7 PROTO=ESMTP\n"));
    assert_non_null(strstr(log, "XFORWARD HELO=long+20+20"));
    free(log);
}

/* big message state: how much is left to write, how often the drain callback came */
static struct {
    SMTP_RELAY *r;
    size_t left;
    int drains;
    int done;
} big;

/* big_pump - write until the backlog passes 1 MB, then wait for the drain */
static void big_pump(void *arg)
{
    static char chunk[65536];
    size_t i;

    (void) arg;
    if (chunk[0] == 0)
        for (i = 0; i < sizeof(chunk); i += 64)
            memcpy(chunk + i, "01234567890123456789012345678901234567890123456789012345678901\r\n", 64);
    big.drains++;
    while (big.left > 0) {
        size_t n = big.left < sizeof(chunk) ? big.left : sizeof(chunk);

        assert_int_equal(smtp_relay_write(big.r, chunk, n), 0);
        big.left -= n;
        if (smtp_relay_backlog(big.r) > 1024 * 1024) {
            smtp_relay_on_drain(big.r, big_pump, NULL);
            return;
        }
    }
    smtp_relay_dot(big.r, record, NULL);
}

/* big_data_cb - 354: start writing */
static void big_data_cb(void *arg, int code, const char *reply)
{
    record(arg, code, reply);
    if (code == 354)
        big_pump(NULL);
}

/* test_big - 8 MB through the backlog and drain callbacks, arriving whole */
static void test_big(void **state)
{
    SINK_T s;
    struct stat sb;
    char path[1200];
    DIR *d;
    struct dirent *e;

    (void) state;
    memset(&big, 0, sizeof(big));
    sink_start(&s, NULL);
    big.r = open_relay(hop(s.port), "");
    big.left = 8 * 1024 * 1024;
    smtp_relay_rcpt(big.r, "a@example.com", "", record, NULL);
    smtp_relay_data(big.r, big_data_cb, NULL);
    run(4);
    assert_int_equal(got.code[2], 354);
    assert_int_equal(got.code[3], 250);
    assert_int_equal(big.left, 0);
    assert_true(big.drains > 1);        /* the backlog limit was reached and drained */
    smtp_relay_free(big.r);
    settle();
    sink_stop(&s);
    assert_int_equal(sink_count(&s), 1);
    path[0] = 0;
    d = opendir(s.dump);
    while (d && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            snprintf(path, sizeof(path), "%s/%s", s.dump, e->d_name);
    if (d)
        closedir(d);
    assert_int_equal(stat(path, &sb), 0);
    /* 8 MB of 64-byte CRLF lines, stored with LF: 8 MB - 1/64, plus the sink's headers. */
    assert_true(sb.st_size >= 8 * 1024 * 1024 - 8 * 1024 * 1024 / 64);
    assert_true(sb.st_size < 8 * 1024 * 1024);
}

/* test_all_down - every hop refuses the connection: 451 4.4.1 to all */
static void test_all_down(void **state)
{
    char list[200];
    SMTP_RELAY *r;
    int i;

    (void) state;
    snprintf(list, sizeof(list), "%s,%s", hop(free_port()), hop(free_port()));
    r = full_transaction(list);
    assert_int_equal(got.n, 5);
    assert_int_equal(strncmp(got.text[0], "451 4.4.1 ", 10), 0);
    for (i = 1; i < 5; i++) {
        assert_int_equal(got.code[i], 451);
        assert_int_equal(strncmp(got.text[i], "451 4.4.1 ", 10), 0);
    }
    assert_int_equal(smtp_relay_write(r, "x\r\n", 3), -1);
    assert_string_equal(smtp_relay_peer(r), "none");
    smtp_relay_free(r);
}

/*
 * test_no_descriptors - a connect that fails for want of descriptors is
 * ours (451 4.3.0), not the next hop's 4.4.1, which the queue manager
 * takes for a dead next hop
 */
static void test_no_descriptors(void **state)
{
    struct rlimit old, low;
    SMTP_RELAY *r;
    char hops[64];
    int lowest;

    (void) state;
    snprintf(hops, sizeof(hops), "%s", hop(free_port()));
    lowest = dup(0);
    assert_true(lowest >= 0);
    close(lowest);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    /* Every number below the lowest free one is in use: the connect's socket() gets EMFILE. */
    low = old;
    low.rlim_cur = (rlim_t) lowest;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    /* The connect is made from the loop. No assertion (which would skip the restore) until the limit is back. */
    r = open_relay(hops, "");
    smtp_relay_rcpt(r, "a@example.com", "", record, NULL);
    run(2);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.code[0], 451);
    assert_string_equal(got.text[0], "451 4.3.0 Insufficient system resources");
    smtp_relay_free(r);
}

/* test_bad_hops - no usable next hop is a configuration error, 4xx */
static void test_bad_hops(void **state)
{
    SMTP_RELAY *r;

    (void) state;
    r = open_relay("lmtp:unix:/x, smtp:[127.0.0.1]:99999, smtp:[::1, lmtp:[127.0.0.1]:24, [127.0.0.1]:0", "");
    run(1);
    assert_int_equal(got.code[0], 451);
    assert_int_equal(strncmp(got.text[0], "451 4.3.5 ", 10), 0);
    assert_string_equal(smtp_relay_peer(r), "none");
    smtp_relay_free(r);
}

/* listen_loopback - a listening socket on 127.0.0.1 (never accepting); its fd, port set */
static int listen_loopback(int *port)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int l = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(l >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *) &sin, sizeof(sin)), 0);
    assert_int_equal(listen(l, 8), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *) &sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return l;
}

/*
 * setup_try - MAIL and one RCPT to hops as the live proxy asks them
 * (setup_ms 1 s, relay_timeout 30 s), until both are answered; the relay,
 * and the milliseconds it took in *ms
 */
static SMTP_RELAY *setup_try(const char *hops, long *ms)
{
    SMTP_RELAY_ENV env = {0};
    struct timespec t0, t1;
    SMTP_RELAY *r;

    var_smtpd_relay_timeout_ms = 30000;
    env.nexthops = hops;
    env.client = &client;
    env.sender = "sender@client.test";
    env.mail_params = "";
    env.setup_ms = 1000;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = smtp_relay_open(&env, record, NULL);
    smtp_relay_rcpt(r, "a@example.com", "", record, NULL);
    run(2);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    return r;
}

/*
 * stall_server - a child that greets, answers EHLO and MAIL, and then
 * never answers RCPT (a next hop stuck in a callout or a milter); its pid
 */
static pid_t stall_server(int *port)
{
    int l = listen_loopback(port);
    pid_t pid;

    if ((pid = fork()) == 0) {
        char line[512];
        FILE *in;
        int c = accept(l, NULL, NULL);

        if (c < 0 || (in = fdopen(dup(c), "r")) == NULL)
            _exit(1);
        if (write(c, "220 stall.test ESMTP\r\n", 22) != 22)
            _exit(1);
        while (fgets(line, sizeof(line), in) != NULL) {
            if (strncasecmp(line, "RCPT", 4) == 0) {
                sleep(30);
                _exit(0);
            }
            if (write(c, "250 ok\r\n", 8) != 8)
                _exit(1);
        }
        _exit(0);
    }
    assert_true(pid > 0);
    close(l);
    return pid;
}

/*
 * test_setup_deadline_rcpt - a client waits (env.setup_ms): a next hop
 * that answers MAIL and never the first RCPT ends in 451 4.4.2 after
 * setup_ms, not after relay_timeout
 */
static void test_setup_deadline_rcpt(void **state)
{
    char hops[64];
    SMTP_RELAY *r;
    pid_t pid;
    long ms;
    int port;

    (void) state;
    pid = stall_server(&port);
    snprintf(hops, sizeof(hops), "smtp:[127.0.0.1]:%d", port);
    r = setup_try(hops, &ms);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[1], 451);
    assert_int_equal(strncmp(got.text[1], "451 4.4.2 ", 10), 0);
    assert_true(ms >= 900 && ms < 8000);
    smtp_relay_free(r);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* test_other_transport - "lmtp:[a]:24,[b]:24": the transport is every element's, so no hop at all */
static void test_other_transport(void **state)
{
    SINK_T s;
    SMTP_RELAY *r;
    char hops[128];

    (void) state;
    sink_start(&s, NULL);
    snprintf(hops, sizeof(hops), "lmtp:[127.0.0.1]:%d,[127.0.0.1]:%d", s.port, s.port);
    r = open_relay(hops, "");
    run(1);
    assert_int_equal(got.code[0], 451);
    assert_int_equal(strncmp(got.text[0], "451 4.3.5 ", 10), 0);
    smtp_relay_free(r);
    settle();
    sink_stop(&s);
    assert_int_equal(sink_count(&s), 0);
}

/* test_mail_4xx - a soft MAIL refusal fails over; on the last hop it is given back */
static void test_mail_4xx(void **state)
{
    char list[200];
    SINK_T bad, good;
    SMTP_RELAY *r;

    (void) state;
    sink_start(&bad, "-r", "MAIL", NULL);
    sink_start(&good, NULL);
    snprintf(list, sizeof(list), "%s,%s", hop(bad.port), hop(good.port));
    r = full_transaction(list);
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[4], 250);
    smtp_relay_free(r);
    settle();
    assert_int_equal(sink_count(&good), 1);
    assert_int_equal(sink_count(&bad), 0);

    memset(&got, 0, sizeof(got));
    r = open_relay(hop(bad.port), "");
    run(1);
    assert_int_equal(got.code[0], 450);
    assert_string_equal(got.text[0], "450 4.3.0 Error: command failed");
    smtp_relay_free(r);
    sink_stop(&bad);
    sink_stop(&good);
}

/* test_mail_5xx - a hard MAIL refusal is final: passed back, no failover */
static void test_mail_5xx(void **state)
{
    char list[200];
    SINK_T bad, good;
    SMTP_RELAY *r;

    (void) state;
    sink_start(&bad, "-f", "MAIL", NULL);
    sink_start(&good, NULL);
    snprintf(list, sizeof(list), "%s,%s", hop(bad.port), hop(good.port));
    r = full_transaction(list);
    assert_int_equal(got.code[0], 500);
    assert_string_equal(got.text[0], "500 5.3.0 Error: command failed");
    assert_true(got.code[4] >= 400);
    assert_int_equal(smtp_relay_write(r, "x\r\n", 3), -1);
    smtp_relay_free(r);
    settle();
    assert_int_equal(sink_count(&good), 0);
    assert_int_equal(sink_count(&bad), 0);
    sink_stop(&bad);
    sink_stop(&good);
}

/* test_rcpt_refused - 4xx and 5xx to RCPT are passed back as they are */
static void test_rcpt_refused(void **state)
{
    SINK_T soft, hard;
    SMTP_RELAY *r;

    (void) state;
    sink_start(&soft, "-r", "RCPT", NULL);
    sink_start(&hard, "-f", "RCPT", NULL);
    r = open_relay(hop(soft.port), "");
    smtp_relay_rcpt(r, "a@example.com", "", record, NULL);
    run(2);
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[1], 450);
    assert_string_equal(got.text[1], "450 4.3.0 Error: command failed");
    smtp_relay_free(r);

    memset(&got, 0, sizeof(got));
    r = open_relay(hop(hard.port), "");
    smtp_relay_rcpt(r, "a@example.com", "", record, NULL);
    smtp_relay_data(r, record, NULL);
    run(3);
    assert_int_equal(got.code[1], 500);
    /* No valid recipient: the downstream refuses DATA, and that is passed back too. */
    assert_true(got.code[2] >= 500);
    smtp_relay_free(r);
    settle();
    assert_int_equal(sink_count(&soft), 0);
    assert_int_equal(sink_count(&hard), 0);
    sink_stop(&soft);
    sink_stop(&hard);
}

/* test_rcpt_421 - the downstream hangs up with 421: lost, 4.4.2 to the rest */
static void test_rcpt_421(void **state)
{
    SINK_T s;
    SMTP_RELAY *r;

    (void) state;
    sink_start(&s, "-Q", "RCPT", NULL);
    r = full_transaction(hop(s.port));
    assert_int_equal(got.code[0], 250);
    assert_int_equal(strncmp(got.text[1], "451 4.4.2 Lost connection with next hop", 39), 0);
    assert_int_equal(strncmp(got.text[4], "451 4.4.2 ", 10), 0);
    smtp_relay_free(r);
    sink_stop(&s);
    assert_int_equal(sink_count(&s), 0);
}

/* test_slow - a DATA reply slower than relay_timeout: 451, nothing delivered */
static void test_slow(void **state)
{
    SINK_T s;
    SMTP_RELAY *r;

    (void) state;
    var_smtpd_relay_timeout_ms = 700;
    sink_start(&s, "-w", "3", NULL);
    r = full_transaction(hop(s.port));
    assert_int_equal(got.code[2], 250);
    assert_int_equal(got.code[3], 451);
    assert_non_null(strstr(got.text[3], "4.4.2"));
    assert_non_null(strstr(got.text[3], "timeout"));
    assert_int_equal(got.code[4], 451);
    smtp_relay_free(r);
    sleep(3);
    sink_stop(&s);
    assert_int_equal(sink_count(&s), 0);
}

/*
 * test_setup_deadline - a client waits (env.setup_ms): two hops that take
 * the connection and never greet end in 451 4.4.1 after setup_ms, not
 * after relay_timeout for each hop
 */
static void test_setup_deadline(void **state)
{
    char hops[128];
    SMTP_RELAY *r;
    long ms;
    int l, port;

    (void) state;
    /* listening, never accepting: the kernel completes the connect, nobody greets */
    l = listen_loopback(&port);
    snprintf(hops, sizeof(hops), "smtp:[127.0.0.1]:%d,[127.0.0.1]:%d", port, port);
    r = setup_try(hops, &ms);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.code[0], 451);
    assert_int_equal(strncmp(got.text[0], "451 4.4.1 ", 10), 0);
    assert_int_equal(got.code[1], 451);
    assert_true(ms >= 900 && ms < 8000);
    smtp_relay_free(r);
    close(l);
}

/* test_free_mid_data - freed after part of the body: no final dot, no message */
static void test_free_mid_data(void **state)
{
    SINK_T s;
    SMTP_RELAY *r;
    char *log;

    (void) state;
    sink_start(&s, NULL);
    r = open_relay(hop(s.port), "");
    smtp_relay_rcpt(r, "a@example.com", "", record, NULL);
    smtp_relay_data(r, record, NULL);
    run(3);
    assert_int_equal(got.code[2], 354);
    assert_int_equal(smtp_relay_write(r, body, sizeof(body) - 1), 0);
    settle();                   /* the bytes reach the sink */
    smtp_relay_free(r);
    settle();
    sink_stop(&s);
    assert_int_equal(sink_count(&s), 0);
    log = file_slurp(s.log);
    assert_non_null(strstr(log, "smtp-sink: DATA\n"));
    assert_null(strstr(log, "smtp-sink: .\n"));     /* no final dot ... */
    assert_null(strstr(log, "QUIT"));               /* ... and no QUIT after the body */
    free(log);
}

/* test_free_in_callback - freeing from inside a callback stops all callbacks */
static void test_free_in_callback(void **state)
{
    SINK_T s;
    SMTP_RELAY *r;

    (void) state;
    sink_start(&s, NULL);
    r = open_relay(hop(s.port), "");
    smtp_relay_rcpt(r, "a@example.com", "", record, NULL);
    smtp_relay_rcpt(r, "b@example.com", "", record, NULL);
    got.free_in_cb = r;
    got.free_at = 2;
    run(2);
    assert_int_equal(got.n, 2);
    settle();                   /* a third callback would come now */
    assert_int_equal(got.n, 2);
    sink_stop(&s);
    assert_int_equal(sink_count(&s), 0);
}

/* test_smtputf8 - SMTPUTF8 to a hop without it: dropped for an ASCII envelope, else refused 5xx */
static void test_smtputf8(void **state)
{
    SINK_T s;
    SMTP_RELAY *r;
    char *log;

    (void) state;
    sink_start(&s, NULL);
    /* Asked for, but the envelope is ASCII: relayed without it, as Postfix does. */
    r = open_relay(hop(s.port), "SMTPUTF8");
    smtp_relay_rcpt(r, "a@example.com", "", record, NULL);
    run(2);
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[1], 250);
    smtp_relay_free(r);
    settle();
    /*
     * In a session's order (proxy): MAIL first, the RCPTs once it is
     * answered. An ASCII one goes; a UTF-8 one, which would need the
     * SMTPUTF8 that MAIL went without, is refused here, in its turn.
     */
    memset(&got, 0, sizeof(got));
    r = open_relay(hop(s.port), "SMTPUTF8");
    run(1);
    assert_int_equal(got.code[0], 250);
    smtp_relay_rcpt(r, "a@example.com", "", record, NULL);
    smtp_relay_rcpt(r, "j\xc3\xb6rg@example.com", "", record, NULL);
    smtp_relay_rcpt(r, "b@example.com", "", record, NULL);
    run(4);
    assert_int_equal(got.code[1], 250);
    assert_int_equal(got.code[2], 555);
    assert_non_null(strstr(got.text[2], "5.6.7 SMTPUTF8"));
    assert_int_equal(got.code[3], 250);
    smtp_relay_free(r);
    settle();
    /* A UTF-8 recipient known at MAIL: 555 to MAIL, for good (another hop is the same kind of server). */
    memset(&got, 0, sizeof(got));
    r = open_relay(hop(s.port), "SMTPUTF8");
    smtp_relay_rcpt(r, "j\xc3\xb6rg@example.com", "", record, NULL);
    run(2);
    assert_int_equal(got.code[0], 555);
    assert_non_null(strstr(got.text[0], "SMTPUTF8"));
    assert_int_equal(got.code[1] / 100, 4);
    smtp_relay_free(r);
    settle();
    sink_stop(&s);
    /* Dropped means dropped: no MAIL went to the hop (which offers no SMTPUTF8) with the keyword. */
    log = file_slurp(s.log);
    assert_non_null(strstr(log, "MAIL FROM:<sender@client.test>"));
    assert_null(strstr(log, "SMTPUTF8"));
    free(log);
}

/*
 * A fake downstream that offers STARTTLS and then breaks it: "garbage"
 * answers the ClientHello with plaintext, "inject" sends a second reply
 * in the clear right behind its 220. Each command it reads is logged.
 */
static const char fake_py[] =
    "import socket, sys\n"
    "mode, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n"
    "srv = socket.socket()\n"
    "srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "srv.bind(('127.0.0.1', port))\n"
    "srv.listen(5)\n"
    "def log(t):\n"
    "    with open(out, 'a') as f:\n"
    "        f.write(t + '\\n')\n"
    "while True:\n"
    "    c, _ = srv.accept()\n"
    "    f = c.makefile('rb')\n"
    "    try:\n"
    "        c.sendall(b'220 fake ESMTP\\r\\n')\n"
    "        while True:\n"
    "            line = f.readline()\n"
    "            if not line:\n"
    "                break\n"
    "            cmd = line.decode('latin-1').strip()\n"
    "            log(cmd)\n"
    "            verb = cmd.split(' ')[0].upper()\n"
    "            if verb == 'EHLO':\n"
    "                c.sendall(b'250-fake\\r\\n250-STARTTLS\\r\\n250 8BITMIME\\r\\n')\n"
    "            elif verb == 'STARTTLS' and mode == 'inject':\n"
    "                c.sendall(b'220 2.0.0 Ready\\r\\n250 injected\\r\\n')\n"
    "                c.recv(4096)\n"
    "                break\n"
    "            elif verb == 'STARTTLS':\n"
    "                c.sendall(b'220 2.0.0 Ready\\r\\n')\n"
    "                c.recv(4096)\n"
    "                c.sendall(b'this is not TLS\\r\\n')\n"
    "                break\n"
    "            elif verb == 'DATA':\n"
    "                c.sendall(b'354 go on\\r\\n')\n"
    "                while f.readline() not in (b'.\\r\\n', b''):\n"
    "                    pass\n"
    "                log('MESSAGE')\n"
    "                c.sendall(b'250 2.0.0 Ok: queued as FAKE\\r\\n')\n"
    "            elif verb == 'QUIT':\n"
    "                c.sendall(b'221 bye\\r\\n')\n"
    "                break\n"
    "            else:\n"
    "                c.sendall(b'250 2.0.0 Ok\\r\\n')\n"
    "    except OSError:\n"
    "        pass\n"
    "    c.close()\n";

/* py_start - run one of the python fakes (text, saved as tdir/name.py) in the given mode */
static void py_start(SINK_T *s, const char *name, const char *text, const char *mode)
{
    char script[700], port[16];
    FILE *fp;
    int i;
    static int seq;

    snprintf(script, sizeof(script), "%s/%s.py", tdir, name);
    fp = fopen(script, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    s->port = free_port();
    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(s->log, sizeof(s->log), "%s/%s%d.log", tdir, name, ++seq);
    s->dump[0] = 0;
    if ((s->pid = fork()) == 0) {
        execlp("python3", "python3", script, mode, port, s->log, (char *) NULL);
        _exit(127);
    }
    assert_true(s->pid > 0);
    child_add(s->pid);
    for (i = 0; i < 200 && !port_open(s->port); i++)
        usleep(20000);
    assert_true(port_open(s->port));
}

/* fake_start - the fake TLS-breaking downstream in the given mode */
static void fake_start(SINK_T *s, const char *mode)
{
    py_start(s, "fake", fake_py, mode);
}

/*
 * A fake downstream that offers PIPELINING and XFORWARD and logs, for
 * each read, the commands that arrived in it ("XFORWARD MAIL RCPT RCPT"
 * is one read: they were pipelined). Mode "mail4xx" answers MAIL 451,
 * "data250" answers DATA with a stray 250 instead of 354. Modes for the
 * stray replies, joined with commas: "nopipe" offers no PIPELINING,
 * "mail250x2" and "dot250x2" answer MAIL or the dot twice in one write,
 * "rcptb550" refuses RCPT TO:<b@...>.
 */
static const char pipe_py[] =
    "import socket, sys, time\n"
    "mode, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n"
    "modes = mode.split(',')\n"
    "srv = socket.socket()\n"
    "srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "srv.bind(('127.0.0.1', port))\n"
    "srv.listen(5)\n"
    "def log(t):\n"
    "    with open(out, 'a') as f:\n"
    "        f.write(t + '\\n')\n"
    "while True:\n"
    "    c, _ = srv.accept()\n"
    "    buf, body, quit = b'', False, False\n"
    "    try:\n"
    "        c.sendall(b'220 fake ESMTP\\r\\n')\n"
    "        while not quit:\n"
    "            time.sleep(0.1)\n"
    "            d = c.recv(65536)\n"
    "            if not d:\n"
    "                break\n"
    "            buf += d\n"
    "            verbs, replies = [], b''\n"
    "            while True:\n"
    "                if body:\n"
    "                    j = (b'\\r\\n' + buf).find(b'\\r\\n.\\r\\n')\n"
    "                    if j < 0:\n"
    "                        break\n"
    "                    buf, body = buf[j + 3:], False\n"
    "                    verbs.append('DOT')\n"
    "                    replies += b'250 2.0.0 Ok: queued as PIPE\\r\\n'\n"
    "                    if 'dot250x2' in modes:\n"
    "                        replies += b'250 2.0.0 Ok: queued again\\r\\n'\n"
    "                    continue\n"
    "                i = buf.find(b'\\r\\n')\n"
    "                if i < 0:\n"
    "                    break\n"
    "                cmd = buf[:i].decode('latin-1')\n"
    "                verb = cmd.split(' ')[0].upper()\n"
    "                buf = buf[i + 2:]\n"
    "                verbs.append(verb)\n"
    "                if verb == 'EHLO' and 'nopipe' in modes:\n"
    "                    replies += b'250-fake\\r\\n250 XFORWARD NAME ADDR\\r\\n'\n"
    "                elif verb == 'EHLO':\n"
    "                    replies += b'250-fake\\r\\n250-PIPELINING\\r\\n250 XFORWARD NAME ADDR\\r\\n'\n"
    "                elif verb == 'MAIL' and 'mail250x2' in modes:\n"
    "                    replies += b'250 2.1.0 Ok\\r\\n250 2.1.0 Ok again\\r\\n'\n"
    "                elif verb == 'RCPT' and 'rcptb550' in modes and '<b@' in cmd:\n"
    "                    replies += b'550 5.1.1 <b@example.com>: User unknown\\r\\n'\n"
    "                elif verb == 'MAIL' and mode == 'mail4xx':\n"
    "                    replies += b'451 4.3.0 Try again later\\r\\n'\n"
    "                elif verb == 'DATA' and mode == 'data250':\n"
    "                    replies += b'250 2.0.0 Ok\\r\\n'\n"
    "                elif verb == 'DATA':\n"
    "                    replies += b'354 go on\\r\\n'\n"
    "                    body = True\n"
    "                elif verb == 'QUIT':\n"
    "                    replies += b'221 bye\\r\\n'\n"
    "                    quit = True\n"
    "                else:\n"
    "                    replies += b'250 2.0.0 Ok\\r\\n'\n"
    "            if verbs:\n"
    "                log(' '.join(verbs))\n"
    "            c.sendall(replies)\n"
    "    except OSError:\n"
    "        pass\n"
    "    c.close()\n";

/* pipe_start - the fake pipelining downstream in the given mode */
static void pipe_start(SINK_T *s, const char *mode)
{
    py_start(s, "pipe", pipe_py, mode);
}

/*
 * test_pipelined - a hop with PIPELINING gets XFORWARD, MAIL and the RCPTs
 * asked for before MAIL's reply in one write; DATA waits for their
 * replies; the message arrives whole at smtp-sink (which pipelines) and
 * at the fake; without PIPELINING (-p) it all goes one at a time.
 */
static void test_pipelined(void **state)
{
    SINK_T s, f;
    SMTP_RELAY *r;
    char *msg, *log;
    int i;

    (void) state;
    pipe_start(&f, "ok");
    r = full_transaction(hop(f.port));
    for (i = 0; i < 3; i++)
        assert_int_equal(got.code[i], 250);
    assert_int_equal(got.code[3], 354);
    assert_string_equal(got.text[4], "250 2.0.0 Ok: queued as PIPE");
    smtp_relay_free(r);
    settle();
    sink_stop(&f);
    log = file_slurp(f.log);
    assert_non_null(strstr(log, "EHLO\nXFORWARD MAIL RCPT RCPT\nDATA\n"));
    free(log);

    /* smtp-sink offers PIPELINING and XFORWARD: the same transaction, exactly. */
    memset(&got, 0, sizeof(got));
    sink_start(&s, NULL);
    r = full_transaction(hop(s.port));
    assert_int_equal(got.n, 5);
    for (i = 0; i < 3; i++)
        assert_int_equal(got.code[i], 250);
    assert_int_equal(got.code[3], 354);
    assert_string_equal(got.text[4], "250 2.0.0 Ok");
    smtp_relay_free(r);
    settle();
    assert_int_equal(sink_count(&s), 1);
    msg = sink_message(&s);
    assert_non_null(strstr(msg, "X-Rcpt-Args: <a@example.com>\n"));
    assert_non_null(strstr(msg, "X-Rcpt-Args: <b@example.com> NOTIFY=NEVER\n"));
    free(msg);
    sink_stop(&s);
    log = file_slurp(s.log);
    assert_non_null(strstr(log, "XFORWARD NAME=client.test ADDR=IPV6:2001:db8::7"));
    free(log);

    /* Without PIPELINING: one command at a time, the same result. */
    memset(&got, 0, sizeof(got));
    sink_start(&s, "-p", NULL);
    r = full_transaction(hop(s.port));
    assert_int_equal(got.n, 5);
    assert_int_equal(got.code[2], 250);
    assert_int_equal(got.code[4], 250);
    smtp_relay_free(r);
    settle();
    assert_int_equal(sink_count(&s), 1);
    sink_stop(&s);
}

/* test_pipelined_mail_4xx - 4xx to a pipelined MAIL: the RCPTs go again to the next hop */
static void test_pipelined_mail_4xx(void **state)
{
    char list[200];
    SINK_T f, s;
    SMTP_RELAY *r;
    char *log, *msg;

    (void) state;
    pipe_start(&f, "mail4xx");
    sink_start(&s, NULL);
    snprintf(list, sizeof(list), "%s,%s", hop(f.port), hop(s.port));
    r = full_transaction(list);
    assert_int_equal(got.n, 5);
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[1], 250);
    assert_int_equal(got.code[2], 250);
    assert_int_equal(got.code[3], 354);
    assert_string_equal(got.text[4], "250 2.0.0 Ok");
    smtp_relay_free(r);
    settle();
    assert_int_equal(sink_count(&s), 1);
    msg = sink_message(&s);
    assert_non_null(strstr(msg, "X-Rcpt-Args: <a@example.com>\n"));
    assert_non_null(strstr(msg, "X-Rcpt-Args: <b@example.com> NOTIFY=NEVER\n"));
    free(msg);
    sink_stop(&s);
    sink_stop(&f);
    log = file_slurp(f.log);
    assert_non_null(strstr(log, "XFORWARD MAIL RCPT RCPT\n"));
    assert_null(strstr(log, "DATA"));
    free(log);

    /* The only hop: its own 4xx is the answer, and every later request gets 451. */
    memset(&got, 0, sizeof(got));
    pipe_start(&f, "mail4xx");
    r = full_transaction(hop(f.port));
    assert_int_equal(got.n, 5);
    assert_string_equal(got.text[0], "451 4.3.0 Try again later");
    assert_int_equal(got.code[1], 451);
    assert_int_equal(got.code[4], 451);
    smtp_relay_free(r);
    sink_stop(&f);
}

/* test_tls_may_fallback - relay_tls = may and a broken handshake: the same hop in the clear */
static void test_tls_may_fallback(void **state)
{
    SINK_T s;
    SMTP_RELAY *r;
    char *log;

    (void) state;
    fake_start(&s, "garbage");
    r = full_transaction(hop(s.port));
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[4], 250);
    assert_string_equal(got.text[4], "250 2.0.0 Ok: queued as FAKE");
    smtp_relay_free(r);
    settle();
    sink_stop(&s);
    log = file_slurp(s.log);
    assert_non_null(strstr(log, "STARTTLS\nEHLO mx.gateway.test\nMAIL FROM:"));
    assert_non_null(strstr(log, "MESSAGE\n"));
    free(log);
}

/* test_tls_broken_mandatory - relay_tls = encrypt: a broken handshake or injection is 4.7.5 */
static void test_tls_broken_mandatory(void **state)
{
    SINK_T s;
    SMTP_RELAY *r;
    char *log;

    (void) state;
    var_smtpd_relay_tls = "encrypt";
    fake_start(&s, "garbage");
    r = full_transaction(hop(s.port));
    assert_int_equal(strncmp(got.text[0], "451 4.7.5 ", 10), 0);
    assert_int_equal(got.code[4], 451);
    smtp_relay_free(r);
    sink_stop(&s);

    memset(&got, 0, sizeof(got));
    fake_start(&s, "inject");
    r = full_transaction(hop(s.port));
    assert_int_equal(strncmp(got.text[0], "451 4.7.5 ", 10), 0);
    assert_non_null(strstr(got.text[0], "plaintext"));
    smtp_relay_free(r);
    sink_stop(&s);
    log = file_slurp(s.log);
    assert_null(strstr(log, "MAIL FROM"));
    free(log);
}

/* test_data_250 - a stray 250 to DATA loses the transaction: never a 250 for the dot */
static void test_data_250(void **state)
{
    SINK_T f;
    SMTP_RELAY *r;

    (void) state;
    pipe_start(&f, "data250");
    r = full_transaction(hop(f.port));
    assert_int_equal(got.n, 5);
    assert_int_equal(got.code[0], 250);
    assert_int_equal(got.code[3], 451);
    assert_int_equal(got.code[4], 451);
    assert_int_equal(strncmp(got.text[4], "451 4.4.2 ", 10), 0);
    smtp_relay_free(r);
    sink_stop(&f);
}

/* The queue manager's way: at the dot's reply, the connection is reused at once. */
static int stray_reused = 99;

/* stray_dot_cb - record the dot's reply, then try a new transaction on the connection */
static void stray_dot_cb(void *arg, int code, const char *reply)
{
    SMTP_RELAY_ENV env = {0};

    env.client = &client;
    env.sender = "next@client.test";
    env.mail_params = "";
    stray_reused = smtp_relay_reuse(arg, &env, record, NULL);
    record(NULL, code, reply);
}

/*
 * test_stray_reply - a reply that came in before its command was sent
 * cannot be that command's reply: taken as one, each later reply would
 * answer the command before it. A MAIL answered twice (no PIPELINING):
 * the RCPTs are 451 and never sent, so b@, which the hop refuses, is
 * never told 250 (it was, with the stray 250 taken as a@'s). A dot
 * answered twice: the connection is not reused for the next message
 * (it was, and the next message's RCPT got RSET's reply).
 */
static void test_stray_reply(void **state)
{
    SINK_T f;
    SMTP_RELAY *r;
    char *log;

    (void) state;
    pipe_start(&f, "nopipe,mail250x2,rcptb550");
    r = full_transaction(hop(f.port));
    assert_int_equal(got.n, 5);
    assert_int_equal(got.code[0], 250);         /* MAIL */
    assert_int_equal(got.code[1], 451);         /* a@ */
    assert_int_equal(got.code[2], 451);         /* b@ */
    assert_non_null(strstr(got.text[1], "451 4.4.2 Lost connection with next hop (a reply no command asked for)"));
    smtp_relay_free(r);
    settle();
    sink_stop(&f);
    log = file_slurp(f.log);
    assert_null(strstr(log, "RCPT"));
    free(log);

    memset(&got, 0, sizeof(got));
    pipe_start(&f, "dot250x2");
    r = open_relay(hop(f.port), "");
    smtp_relay_rcpt(r, "a@example.com", "", record, NULL);
    smtp_relay_data(r, record, NULL);
    assert_int_equal(smtp_relay_write(r, body, sizeof(body) - 1), 0);
    smtp_relay_dot(r, stray_dot_cb, r);
    run(4);
    assert_int_equal(got.n, 4);                 /* MAIL, RCPT, DATA, the dot */
    assert_int_equal(got.code[3], 250);
    assert_int_equal(stray_reused, -1);
    smtp_relay_free(r);
    settle();
    sink_stop(&f);
}

/* test_tls_required - relay_tls = encrypt and the hop has no STARTTLS: 4.7.5, next hop */
static void test_tls_required(void **state)
{
    SINK_T s;
    SMTP_RELAY *r;

    (void) state;
    var_smtpd_relay_tls = "encrypt";
    sink_start(&s, NULL);
    r = full_transaction(hop(s.port));
    assert_int_equal(got.code[0], 451);
    assert_int_equal(strncmp(got.text[0], "451 4.7.5 ", 10), 0);
    assert_int_equal(got.code[4], 451);
    smtp_relay_free(r);
    settle();
    sink_stop(&s);
    assert_int_equal(sink_count(&s), 0);
}

/* shell - run a command, assert it worked */
static void shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void shell(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

/* test_tls_load - key mode, key/cert mismatch, and a failed reload keeping the old contexts */
static void test_tls_load(void **state)
{
    char cert[600], key[600], key2[600], err[512];
    SSL *ssl;
    char desc[100];

    (void) state;
    snprintf(cert, sizeof(cert), "%s/cert.pem", tdir);
    snprintf(key, sizeof(key), "%s/key.pem", tdir);
    snprintf(key2, sizeof(key2), "%s/key2.pem", tdir);
    shell("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
          "-subj /CN=mx.gateway.test -keyout %s -out %s 2>/dev/null", key, cert);
    shell("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s 2>/dev/null", key2);
    var_smtpd_tls = "may";
    var_smtpd_tls_cert = cert;
    var_smtpd_tls_key = key;

    chmod(key, 0644);
    assert_int_equal(smtp_tls_load(err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is accessible by"));
    assert_int_equal(smtp_tls_server_ok(), 0);

    chmod(key, 0600);
    assert_int_equal(smtp_tls_load(err, sizeof(err)), 0);
    assert_int_equal(smtp_tls_server_ok(), 1);
    ssl = smtp_tls_server_new();
    assert_non_null(ssl);

    /* A reload with a key that does not match fails; the old context stays. */
    chmod(key2, 0600);
    var_smtpd_tls_key = key2;
    assert_int_equal(smtp_tls_load(err, sizeof(err)), -1);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(smtp_tls_server_ok(), 1);
    var_smtpd_tls_key = key;
    assert_int_equal(smtp_tls_load(err, sizeof(err)), 0);
    /* The session made before the reload still has a working context. */
    assert_non_null(SSL_get_SSL_CTX(ssl));
    assert_string_equal(smtp_tls_describe(ssl, desc, sizeof(desc)), "none");
    SSL_free(ssl);

    var_smtpd_relay_tls = "verify";
    ssl = smtp_tls_client_new("mx.internal.test", 1);
    assert_non_null(ssl);
    assert_int_equal(SSL_get_verify_mode(ssl), SSL_VERIFY_PEER);
    SSL_free(ssl);
    ssl = smtp_tls_client_new("mx.internal.test", 0);
    assert_non_null(ssl);
    assert_int_equal(SSL_get_verify_mode(ssl), SSL_VERIFY_NONE);
    SSL_free(ssl);
    ssl = smtp_tls_client_new("127.0.0.1", 1);
    assert_non_null(ssl);
    SSL_free(ssl);

    var_smtpd_relay_ca = "/nonexistent/ca.pem";
    assert_int_equal(smtp_tls_load(err, sizeof(err)), -1);
    assert_non_null(strstr(err, "relay_ca_file"));
    var_smtpd_relay_ca = "";
    var_smtpd_tls_cert = "";
    var_smtpd_tls_key = "";
    assert_int_equal(smtp_tls_load(err, sizeof(err)), 0);
    assert_int_equal(smtp_tls_server_ok(), 0);
    smtp_tls_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stepwise, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_banner_421, setup, teardown),
        cmocka_unit_test_setup_teardown(test_banner_5xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xforward_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_descriptors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_hops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mail_4xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mail_5xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rcpt_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rcpt_421, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setup_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_transport, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setup_deadline_rcpt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_mid_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smtputf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_mail_4xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_250, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stray_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_may_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_broken_mandatory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_load, setup, teardown),
    };
    char err[256];
    int rc;

    if (access(SINK, X_OK) != 0) {
        printf("1..0 # SKIP %s not installed\n", SINK);
        return 0;
    }
    log_init("test_smtp_relay", 1, 0);
    signal(SIGPIPE, SIG_IGN);
    snprintf(tdir, sizeof(tdir), "%s/tests/tmp/test_smtp_relay", getenv("top_builddir") ? getenv("top_builddir") : ".");
    {
        char cmd[2048];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s' && chmod 755 '%s'", tdir, tdir, tdir);
        if (system(cmd) != 0)
            return 1;
        snprintf(sdir, sizeof(sdir), "%s/rcptgate-test.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (mkdtemp(sdir) == NULL || chmod(sdir, 0711) < 0) {
            perror(sdir);
            return 1;
        }
    }
    cfg_defaults(params_smtpd_sections());
    /* The cases point these at literals; keep cfg's own strings reachable. */
    cfg_strings[0] = var_smtpd_relay_tls;
    cfg_strings[1] = var_smtpd_tls;
    cfg_strings[2] = var_smtpd_tls_cert;
    cfg_strings[3] = var_smtpd_tls_key;
    cfg_strings[4] = var_smtpd_relay_ca;
    smtpd_base = event_base_new();
    snprintf(smtpd_hostname, sizeof(smtpd_hostname), "mx.gateway.test");
    memset(&client, 0, sizeof(client));
    snprintf(client.addr, sizeof(client.addr), "2001:db8::7");
    snprintf(client.name, sizeof(client.name), "client.test");
    client.port = 54321;
    client.helo = "helo with+space";
    client.esmtp = 1;
    if (smtp_tls_load(err, sizeof(err)) < 0) {
        fprintf(stderr, "smtp_tls_load: %s\n", err);
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    var_smtpd_relay_tls = cfg_strings[0];
    var_smtpd_tls = cfg_strings[1];
    var_smtpd_tls_cert = cfg_strings[2];
    var_smtpd_tls_key = cfg_strings[3];
    var_smtpd_relay_ca = cfg_strings[4];
    smtp_tls_free();
    event_base_free(smtpd_base);
    {
        char cmd[600];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", sdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", sdir);
    }
    return rc;
}
