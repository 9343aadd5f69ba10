/*
 * bench_idle.c - SMTP session client for the rcptgate-smtpd benchmark
 *
 * SYNOPSIS
 *	bench_idle -s HOST:PORT -n SESSIONS [-c CONCURRENCY] [-H HELO]
 *		[-b SOURCE_ADDRESS] [-w TIMEOUT_SECONDS]
 *	bench_idle -S -s HOST:PORT -n SESSIONS [-c CONCURRENCY] [-H HELO]
 *		[-f SENDER] -p PATTERN -N KEYS [-b SOURCE_ADDRESS]
 *
 * DESCRIPTION
 *	Hold mode (the default) measures what an idle session costs a
 *	server. It opens SESSIONS TCP connections to the server, at most
 *	CONCURRENCY (default 100) of them still waiting for their banner or
 *	their EHLO reply at any time, so a server that forks per connection
 *	is not flooded beyond its listen queue. On each it reads the banner,
 *	sends "EHLO HELO" and reads the whole reply. When every session has
 *	got its EHLO reply (or failed) it prints
 *
 *	    READY held=H failed=F seconds=S
 *
 *	and flushes stdout, then holds the sessions open, silent, until it
 *	gets SIGTERM or SIGINT, or until stdin reaches end of file when stdin
 *	is a pipe or a terminal. It then closes them all and prints a RESULT
 *	line. A session the server closes while held counts as "dropped".
 *
 *	Sessions mode (-S) measures complete short sessions: connect, read
 *	the banner, "EHLO HELO", "MAIL FROM:<SENDER>", one "RCPT TO:<KEY>",
 *	"QUIT", then wait for the server to close. CONCURRENCY sessions run
 *	at once, SESSIONS in all. Keys come from PATTERN, which holds one
 *	"%d" standing for 0..KEYS-1, taken in turn. Every command waits for
 *	its reply (no pipelining).
 *
 *	One thread, non-blocking sockets and epoll, so the client stays
 *	cheaper than the server it measures.
 *
 * OUTPUT
 *	RESULT mode=hold sessions=N held=H failed=F dropped=D seconds=S
 *	RESULT mode=sessions sessions=N done=D failed=F seconds=S rate=R
 *	    rcpt_ok=O rcpt_other=X client_cpu=P
 *
 * DIAGNOSTICS
 *	Exit 0 when every session worked (sessions mode: also every RCPT got
 *	250), 1 otherwise (the first few failures are printed), 64 on a
 *	usage error.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "xalloc.h"

#define IDLE_BUF        2048    /* one reply, EHLO's included */
#define IDLE_MAX_EVENTS 256
#define IDLE_SHOW_ERRS  5

/* Where a session is in its short conversation. */
enum idle_state {
    IDLE_FREE = 0,              /* slot unused */
    IDLE_CONNECTING,            /* connect() in progress */
    IDLE_BANNER,                /* waiting for 220 */
    IDLE_EHLO,                  /* waiting for the EHLO reply */
    IDLE_MAIL,                  /* waiting for the MAIL reply */
    IDLE_RCPT,                  /* waiting for the RCPT reply */
    IDLE_QUIT,                  /* waiting for 221 */
    IDLE_CLOSE,                 /* waiting for the server to close */
    IDLE_HELD,                  /* hold mode: EHLO answered, now silent */
};

typedef struct idle_conn {
    int fd;
    enum idle_state state;
    size_t len;                 /* bytes in buf */
    char buf[IDLE_BUF];
} IDLE_CONN;

typedef struct idle {
    struct sockaddr_in server;
    struct sockaddr_in source;  /* sin_family 0: let the kernel choose */
    int sessions_mode;
    int total;                  /* sessions to run / hold */
    int concurrency;
    const char *helo;
    const char *sender;
    const char *pattern;
    long keys;
    long next_key;
    int timeout_s;
    int epfd;
    IDLE_CONN *conns;           /* one slot per concurrent session (hold: per session) */
    int nslots;
    int started;                /* sessions begun */
    int active;                 /* connecting or talking (not held) */
    int held, failed, dropped, done;
    long rcpt_ok, rcpt_other;
    int shown;
} IDLE;

static volatile sig_atomic_t idle_stop;

/* idle_now - monotonic seconds */
static double idle_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* idle_cpu - user + system seconds this process has used */
static double idle_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
        + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* idle_signal - SIGTERM/SIGINT: stop holding */
static void idle_signal(int sig)
{
    (void) sig;
    idle_stop = 1;
}

/* idle_usage - print the synopsis and exit 64 */
static _Noreturn void idle_usage(void)
{
    fprintf(stderr,
            "usage: bench_idle -s HOST:PORT -n SESSIONS [-c CONCURRENCY] [-H HELO]\n"
            "                  [-b SOURCE_ADDRESS] [-w TIMEOUT_SECONDS]\n"
            "       bench_idle -S -s HOST:PORT -n SESSIONS [-c CONCURRENCY] [-H HELO]\n"
            "                  [-f SENDER] -p PATTERN -N KEYS [-b SOURCE_ADDRESS]\n");
    exit(64);
}

/* idle_addr - parse "A.B.C.D[:PORT]" into sa; -1 when malformed */
static int idle_addr(const char *text, struct sockaddr_in *sa, int need_port)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    size_t n = colon ? (size_t) (colon - text) : strlen(text);
    long port = 0;

    if (n == 0 || n >= sizeof host || (need_port && colon == NULL))
        return -1;
    memcpy(host, text, n);
    host[n] = 0;
    if (colon) {
        char *end;

        port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535)
            return -1;
    }
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t) port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* idle_fail - count a failed session and show the first few reasons */
static void idle_fail(IDLE *b, IDLE_CONN *c, const char *why)
{
    if (b->shown < IDLE_SHOW_ERRS) {
        fprintf(stderr, "bench_idle: session failed in state %d: %s\n", (int) c->state, why);
        b->shown++;
    }
    b->failed++;
}

/* idle_close - close a session's socket and free its slot */
static void idle_close(IDLE *b, IDLE_CONN *c)
{
    if (c->fd >= 0) {
        epoll_ctl(b->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    if (c->state != IDLE_HELD && c->state != IDLE_FREE)
        b->active--;
    c->fd = -1;
    c->state = IDLE_FREE;
    c->len = 0;
}

/* idle_start - begin one session in slot c; 0 ok, -1 it failed at once */
static int idle_start(IDLE *b, IDLE_CONN *c)
{
    struct epoll_event ev;
    int one = 1;

    b->started++;
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->state = IDLE_CONNECTING;
        idle_fail(b, c, strerror(errno));
        c->state = IDLE_FREE;
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (b->source.sin_family
        && bind(c->fd, (struct sockaddr *) &b->source, sizeof b->source) < 0) {
        c->state = IDLE_CONNECTING;
        idle_fail(b, c, strerror(errno));
        close(c->fd);
        c->fd = -1;
        c->state = IDLE_FREE;
        return -1;
    }
    c->state = IDLE_CONNECTING;
    b->active++;
    if (connect(c->fd, (struct sockaddr *) &b->server, sizeof b->server) < 0
        && errno != EINPROGRESS) {
        idle_fail(b, c, strerror(errno));
        idle_close(b, c);
        return -1;
    }
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = c;
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        idle_fail(b, c, strerror(errno));
        idle_close(b, c);
        return -1;
    }
    return 0;
}

/* idle_send - write one command line; -1 on error */
static int idle_send(IDLE_CONN *c, const char *line)
{
    size_t n = strlen(line);
    ssize_t w = send(c->fd, line, n, MSG_NOSIGNAL);

    /* A command line is far smaller than any socket buffer. */
    return w == (ssize_t) n ? 0 : -1;
}

/*
 * idle_reply - the code of the complete reply in c->buf, 0 when it is not
 * complete yet, -1 when it is malformed. A complete reply is consumed.
 */
static int idle_reply(IDLE_CONN *c)
{
    size_t start = 0;

    for (;;) {
        char *nl = memchr(c->buf + start, '\n', c->len - start);
        size_t end;
        int code;

        if (nl == NULL)
            return c->len >= sizeof c->buf - 1 ? -1 : 0;
        end = (size_t) (nl - c->buf) + 1;
        if (end - start < 4 || c->buf[start] < '1' || c->buf[start] > '5')
            return -1;
        if (c->buf[start + 3] == '-') {
            start = end;
            continue;
        }
        code = atoi(c->buf + start);
        memmove(c->buf, c->buf + end, c->len - end);
        c->len -= end;
        return code;
    }
}

/* idle_step - act on a complete reply; 0 go on, -1 the session failed */
static int idle_step(IDLE *b, IDLE_CONN *c, int code)
{
    char line[1100];

    switch (c->state) {
    case IDLE_BANNER:
        if (code != 220)
            return -1;
        snprintf(line, sizeof line, "EHLO %s\r\n", b->helo);
        c->state = IDLE_EHLO;
        return idle_send(c, line);
    case IDLE_EHLO:
        if (code != 250)
            return -1;
        if (!b->sessions_mode) {
            struct epoll_event ev = {.events = EPOLLIN,.data.ptr = c };

            c->state = IDLE_HELD;
            b->active--;
            b->held++;
            epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev);
            return 0;
        }
        snprintf(line, sizeof line, "MAIL FROM:<%s>\r\n", b->sender);
        c->state = IDLE_MAIL;
        return idle_send(c, line);
    case IDLE_MAIL:
        if (code != 250)
            return -1;
        {
            const char *pct = strstr(b->pattern, "%d");

            /* The key is the pattern with its "%d" replaced by the index. */
            snprintf(line, sizeof line, "RCPT TO:<%.*s%ld%s>\r\n", (int) (pct - b->pattern),
                     b->pattern, b->next_key++ % b->keys, pct + 2);
        }
        c->state = IDLE_RCPT;
        return idle_send(c, line);
    case IDLE_RCPT:
        if (code == 250)
            b->rcpt_ok++;
        else
            b->rcpt_other++;
        c->state = IDLE_QUIT;
        return idle_send(c, "QUIT\r\n");
    case IDLE_QUIT:
        if (code != 221)
            return -1;
        /* Let the server close first: its TIME_WAIT, not a client port's. */
        c->state = IDLE_CLOSE;
        return 0;
    default:
        return -1;
    }
}

/* idle_event - handle readiness of one session */
static void idle_event(IDLE *b, IDLE_CONN *c, uint32_t events)
{
    if (c->state == IDLE_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        struct epoll_event ev = {.events = EPOLLIN,.data.ptr = c };

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            idle_fail(b, c, strerror(err ? err : errno));
            idle_close(b, c);
            return;
        }
        c->state = IDLE_BANNER;
        epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        if (!(events & EPOLLIN))
            return;
    }
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
        int code;

        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            if (c->state == IDLE_CLOSE) {
                b->done++;
            } else if (c->state == IDLE_HELD) {
                b->dropped++;
                b->held--;
            } else {
                idle_fail(b, c, r == 0 ? "connection closed by the server" : strerror(errno));
            }
            idle_close(b, c);
            return;
        }
        c->len += (size_t) r;
        if (c->state == IDLE_HELD || c->state == IDLE_CLOSE) {
            c->len = 0;             /* nothing more is expected; ignore it */
            continue;
        }
        while ((code = idle_reply(c)) != 0) {
            if (code < 0 || idle_step(b, c, code) < 0) {
                char why[80];

                snprintf(why, sizeof why, "unexpected reply %d", code);
                idle_fail(b, c, why);
                idle_close(b, c);
                return;
            }
            if (c->state == IDLE_HELD || c->state == IDLE_CLOSE)
                break;
        }
    }
}

/* idle_loop - run until the sessions are all done (or held) */
static int idle_loop(IDLE *b, double deadline)
{
    struct epoll_event evs[IDLE_MAX_EVENTS];
    int next_slot = 0;

    for (;;) {
        int i, n;

        /* Keep CONCURRENCY sessions talking. */
        while (b->started < b->total && b->active < b->concurrency) {
            IDLE_CONN *c = NULL;

            for (i = 0; i < b->nslots; i++) {
                int k = (next_slot + i) % b->nslots;

                if (b->conns[k].state == IDLE_FREE) {
                    c = &b->conns[k];
                    next_slot = (k + 1) % b->nslots;
                    break;
                }
            }
            if (c == NULL)
                break;
            idle_start(b, c);
        }
        if (b->started >= b->total && b->active == 0)
            return 0;
        if (idle_stop || idle_now() > deadline)
            return -1;
        n = epoll_wait(b->epfd, evs, IDLE_MAX_EVENTS, 200);
        if (n < 0 && errno != EINTR) {
            perror("bench_idle: epoll_wait");
            return -1;
        }
        for (i = 0; i < n; i++)
            idle_event(b, evs[i].data.ptr, evs[i].events);
    }
}

/* idle_hold - keep the held sessions open until told to stop */
static void idle_hold(IDLE *b)
{
    struct epoll_event ev = {.events = EPOLLIN,.data.ptr = NULL };
    struct epoll_event evs[IDLE_MAX_EVENTS];
    int watch_stdin = epoll_ctl(b->epfd, EPOLL_CTL_ADD, 0, &ev) == 0;

    while (!idle_stop) {
        int i, n = epoll_wait(b->epfd, evs, IDLE_MAX_EVENTS, 1000);

        for (i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                char junk[256];

                if (read(0, junk, sizeof junk) <= 0)
                    idle_stop = 1;
                continue;
            }
            idle_event(b, evs[i].data.ptr, evs[i].events);
        }
    }
    if (watch_stdin)
        epoll_ctl(b->epfd, EPOLL_CTL_DEL, 0, NULL);
}

/* idle_num - a bounded integer option, or exit 64 */
static long idle_num(const char *s, long min, long max)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == 0 || *end || v < min || v > max)
        idle_usage();
    return v;
}

int main(int argc, char **argv)
{
    IDLE b;
    struct sigaction sa;
    struct rlimit rl;
    double t0, t1, c0;
    int ch, i, rc;

    memset(&b, 0, sizeof b);
    b.concurrency = 100;
    b.helo = "client.bench.test";
    b.sender = "sender@client.bench.test";
    b.timeout_s = 300;
    b.server.sin_family = 0;
    while ((ch = getopt(argc, argv, "Ss:n:c:H:b:w:f:p:N:")) != -1) {
        switch (ch) {
        case 'S':
            b.sessions_mode = 1;
            break;
        case 's':
            if (idle_addr(optarg, &b.server, 1) < 0)
                idle_usage();
            break;
        case 'n':
            b.total = (int) idle_num(optarg, 1, 100000000);
            break;
        case 'c':
            b.concurrency = (int) idle_num(optarg, 1, 100000);
            break;
        case 'H':
            b.helo = optarg;
            break;
        case 'b':
            if (idle_addr(optarg, &b.source, 0) < 0)
                idle_usage();
            break;
        case 'w':
            b.timeout_s = (int) idle_num(optarg, 1, 86400);
            break;
        case 'f':
            b.sender = optarg;
            break;
        case 'p':
            b.pattern = optarg;
            break;
        case 'N':
            b.keys = idle_num(optarg, 1, 2000000000);
            break;
        default:
            idle_usage();
        }
    }
    if (optind != argc || b.server.sin_family == 0 || b.total == 0)
        idle_usage();
    if (b.sessions_mode) {
        const char *pct = b.pattern ? strchr(b.pattern, '%') : NULL;

        /* The pattern is a printf format: exactly one %d, nothing else. */
        if (b.keys == 0 || pct == NULL || pct[1] != 'd' || strchr(pct + 2, '%'))
            idle_usage();
    }

    /* Hold mode needs a descriptor per session. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = idle_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    b.nslots = b.sessions_mode ? b.concurrency : b.total;
    if (b.sessions_mode && b.concurrency > b.total)
        b.nslots = b.concurrency = b.total;
    b.conns = xmalloc(sizeof *b.conns * (size_t) b.nslots);
    for (i = 0; i < b.nslots; i++) {
        b.conns[i].fd = -1;
        b.conns[i].state = IDLE_FREE;
        b.conns[i].len = 0;
    }
    b.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b.epfd < 0) {
        perror("bench_idle: epoll_create1");
        return 1;
    }

    c0 = idle_cpu();
    t0 = idle_now();
    rc = idle_loop(&b, t0 + b.timeout_s);
    t1 = idle_now();

    if (b.sessions_mode) {
        double secs = t1 - t0;

        printf("RESULT mode=sessions sessions=%d done=%d failed=%d seconds=%.3f rate=%.0f "
               "rcpt_ok=%ld rcpt_other=%ld client_cpu=%.0f\n",
               b.total, b.done, b.failed, secs, secs > 0 ? b.done / secs : 0.0,
               b.rcpt_ok, b.rcpt_other, secs > 0 ? 100 * (idle_cpu() - c0) / secs : 0.0);
        return rc == 0 && b.failed == 0 && b.done == b.total && b.rcpt_other == 0 ? 0 : 1;
    }

    printf("READY held=%d failed=%d seconds=%.3f\n", b.held, b.failed, t1 - t0);
    fflush(stdout);
    if (rc == 0)
        idle_hold(&b);
    for (i = 0; i < b.nslots; i++)
        if (b.conns[i].fd >= 0)
            idle_close(&b, &b.conns[i]);
    printf("RESULT mode=hold sessions=%d held=%d failed=%d dropped=%d seconds=%.3f\n",
           b.total, b.held, b.failed, b.dropped, t1 - t0);
    return rc == 0 && b.failed == 0 && b.dropped == 0 ? 0 : 1;
}
