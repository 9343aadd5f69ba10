/*
 * bench_nullmap.c - a socketmap server that looks nothing up: the ceiling
 * of the maps benchmark
 *
 * SYNOPSIS
 *	bench_nullmap -s SOCKET [-m MAP] [-d DOMAIN]
 *
 * DESCRIPTION
 *	Listens on the unix socket SOCKET (mode 0666: Postfix's smtpd runs
 *	as postfix) and answers Postfix socketmap requests "MAP KEY" with no
 *	store behind them: "OK" when MAP is the map asked for (default
 *	recipients) and KEY has the shape of a known recipient of the maps
 *	benchmark (digits, "u@", DOMAIN; default bench.example): "OK OK",
 *	a value as relay_recipient_maps wants one (Postfix takes a bare
 *	"OK" for no answer); "NOTFOUND " for any other key. That is the answer tests/bench/maps.sh expects
 *	of rcptgate-lookupd, at the least cost a socketmap server can have:
 *	one thread, epoll, one read and one write per request, no lookup.
 *
 *	What it measures is the protocol, not a server: Postfix's smtpd
 *	talking to a process over a unix socket instead of reading an lmdb
 *	file in its own address space. A ratio to lmdb that this server
 *	cannot reach, rcptgate-lookupd cannot either, whatever it does.
 *
 *	Runs until SIGTERM or SIGINT. A malformed request closes its
 *	connection, as Postfix's own reading of a bad netstring would.
 *
 * EXIT STATUS
 *	0 after a signal, 1 on a setup failure, 2 on a usage error.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define NULLMAP_BUF     4096            /* a request is a key of at most a few hundred bytes */
#define NULLMAP_EVENTS  64

typedef struct {
    int fd;
    size_t len;                         /* bytes in buf */
    char buf[NULLMAP_BUF];
} NULLMAP_CONN;

static volatile sig_atomic_t nullmap_stop;
static const char *nullmap_map = "recipients";
static const char *nullmap_domain = "bench.example";

static void nullmap_on_signal(int sig)
{
    (void) sig;
    nullmap_stop = 1;
}

/* nullmap_known - does key look like a known recipient: DIGITS "u@" DOMAIN? */
static int nullmap_known(const char *key, size_t len)
{
    size_t i = 0, dlen = strlen(nullmap_domain);

    while (i < len && isdigit((unsigned char) key[i]))
        i++;
    return i > 0 && len - i == 2 + dlen && key[i] == 'u' && key[i + 1] == '@'
        && strncasecmp(key + i + 2, nullmap_domain, dlen) == 0;
}

/*
 * nullmap_serve - answer every whole netstring in c's buffer; keep a
 * partial one. -1 when the connection must close (malformed, write failed).
 */
static int nullmap_serve(NULLMAP_CONN *c)
{
    size_t off = 0;

    for (;;) {
        size_t n = 0, i = off, mlen = strlen(nullmap_map);
        const char *req, *answer;
        char out[64];
        int outlen;

        while (i < c->len && isdigit((unsigned char) c->buf[i]) && i - off < 5)
            n = n * 10 + (size_t) (c->buf[i++] - '0');
        if (i == c->len)
            break;                      /* the length is not all here yet */
        if (i == off || c->buf[i] != ':' || n > NULLMAP_BUF - 16)
            return -1;
        if (c->len - i - 1 < n + 1)
            break;                      /* the body or its comma is not here yet */
        req = c->buf + i + 1;
        if (req[n] != ',')
            return -1;
        answer = n > mlen && memcmp(req, nullmap_map, mlen) == 0 && req[mlen] == ' '
            && nullmap_known(req + mlen + 1, n - mlen - 1) ? "OK OK" : "NOTFOUND ";
        outlen = snprintf(out, sizeof(out), "%zu:%s,", strlen(answer), answer);
        if (write(c->fd, out, (size_t) outlen) != outlen)
            return -1;                  /* Postfix reads its answer before it asks again */
        off = (size_t) (req - c->buf) + n + 1;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return c->len == sizeof(c->buf) ? -1 : 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    struct sockaddr_un sun;
    struct epoll_event ev, events[NULLMAP_EVENTS];
    struct sigaction sa;
    int opt, lfd, ep;

    while ((opt = getopt(argc, argv, "s:m:d:")) != -1) {
        switch (opt) {
        case 's':
            path = optarg;
            break;
        case 'm':
            nullmap_map = optarg;
            break;
        case 'd':
            nullmap_domain = optarg;
            break;
        default:
            fprintf(stderr, "usage: bench_nullmap -s SOCKET [-m MAP] [-d DOMAIN]\n");
            return 2;
        }
    }
    if (path == NULL || strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "usage: bench_nullmap -s SOCKET [-m MAP] [-d DOMAIN]\n");
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = nullmap_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    (void) unlink(path);
    if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0
        || bind(lfd, (struct sockaddr *) &sun, sizeof(sun)) < 0 || chmod(path, 0666) < 0
        || listen(lfd, 512) < 0 || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        fprintf(stderr, "bench_nullmap: %s: %s\n", path, strerror(errno));
        return 1;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;                 /* NULL: the listening socket */
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
        fprintf(stderr, "bench_nullmap: epoll: %s\n", strerror(errno));
        return 1;
    }
    while (!nullmap_stop) {
        int n = epoll_wait(ep, events, NULLMAP_EVENTS, -1);

        for (int i = 0; i < n; i++) {
            NULLMAP_CONN *c = events[i].data.ptr;

            if (c == NULL) {
                int fd;

                while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                    c = calloc(1, sizeof(*c));
                    if (c == NULL) {
                        close(fd);
                        continue;
                    }
                    c->fd = fd;
                    ev.events = EPOLLIN;
                    ev.data.ptr = c;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        close(fd);
                        free(c);
                    }
                }
                continue;
            }
            ssize_t got = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);

            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got > 0) {
                c->len += (size_t) got;
                if (nullmap_serve(c) == 0)
                    continue;
            }
            close(c->fd);               /* also leaves the epoll set */
            free(c);
        }
    }
    (void) unlink(path);
    return 0;
}
