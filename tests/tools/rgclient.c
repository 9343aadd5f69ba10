/*
 * rgclient.c - a small socketmap / policy client for rcptgate's shell tests
 *
 * SYNOPSIS
 *   rgclient [-p | -r] [-i] [-q] [-k SECONDS] [-t MS] unix:PATH | inet:HOST:PORT
 *
 * DESCRIPTION
 *   socketmap mode (default): each line of stdin is sent as one netstring
 *   request; all requests go out first (pipelined), then each reply's
 *   payload is printed on a line of its own. With -i, one request at a
 *   time: send a line, print its reply, then read the next line (for
 *   tests that keep a connection open across events, through a fifo).
 *
 *   -r raw: stdin is sent byte for byte, except that \xNN stands for the
 *   byte NN and \\ for a backslash; whatever comes back is printed as it
 *   is, then "CLOSED" if the server closed the connection, or "OPEN" if
 *   it was still open after -t MS (default 2000) of silence.
 *
 *   -p policy: stdin is sent as it is; replies are printed as they come
 *   until one has arrived per request (an empty line ends a request).
 *
 *   In every mode "CLOSED" is printed when the server closes before all
 *   replies came. -q sends and closes without reading any reply. -k
 *   keeps the connection open SECONDS longer before closing it.
 *
 * EXIT STATUS
 *   0 when the exchange ran, 1 when the connection failed, 64 on usage.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"
#include "netstring.h"

static int rgclient_timeout_ms = 2000;

/* rgclient_connect - connect to unix:PATH or inet:HOST:PORT */
static int rgclient_connect(const char *spec)
{
    LISTEN_ADDR la;
    char err[512];
    int fd = -1;

    if (listen_parse(spec, &la, err, sizeof(err)) < 0) {
        fprintf(stderr, "rgclient: %s\n", err);
        return -1;
    }
    if (la.is_unix) {
        struct sockaddr_un sun;

        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        memcpy(sun.sun_path, la.path, strlen(la.path) + 1);
        if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0
            || connect(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0) {
            fprintf(stderr, "rgclient: connect %s: %s\n", la.path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
    } else {
        struct addrinfo hints, *res, *ai;

        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(la.host, la.port, &hints, &res) != 0) {
            fprintf(stderr, "rgclient: cannot resolve %s\n", spec);
            return -1;
        }
        for (ai = res; ai; ai = ai->ai_next) {
            if ((fd = socket(ai->ai_family, ai->ai_socktype, 0)) < 0)
                continue;
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
                break;
            close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0) {
            fprintf(stderr, "rgclient: connect %s: %s\n", spec, strerror(errno));
            return -1;
        }
    }
    return fd;
}

/* rgclient_slurp - all of stdin */
static char *rgclient_slurp(size_t *len)
{
    size_t cap = 65536;
    char *buf = malloc(cap);
    size_t n = 0;
    size_t got;

    if (buf == NULL)
        exit(1);
    while ((got = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n == cap && (buf = realloc(buf, cap *= 2)) == NULL)
            exit(1);
    }
    *len = n;
    return buf;
}

/* rgclient_send - write it all (a reset peer is reported, not fatal) */
static int rgclient_send(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t) n;
    }
    return 0;
}

/* rgclient_recv - read with the timeout: >0 bytes, 0 closed, -1 timeout/error */
static ssize_t rgclient_recv(int fd, char *buf, size_t size)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int rc = poll(&pfd, 1, rgclient_timeout_ms);

    if (rc <= 0) {
        errno = rc == 0 ? ETIMEDOUT : errno;
        return -1;
    }
    return read(fd, buf, size);
}

/* rgclient_unescape - \xNN and \\ in raw mode */
static size_t rgclient_unescape(char *buf, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\\' && i + 1 < len && buf[i + 1] == '\\') {
            buf[o++] = '\\';
            i++;
        } else if (buf[i] == '\\' && i + 3 < len && buf[i + 1] == 'x') {
            char hex[3] = {buf[i + 2], buf[i + 3], 0};

            buf[o++] = (char) strtol(hex, NULL, 16);
            i += 3;
        } else {
            buf[o++] = buf[i];
        }
    }
    return o;
}

/* rgclient_raw - send bytes, print what comes back and how it ended */
static int rgclient_raw(int fd, char *in, size_t len, int quiet)
{
    char buf[65536];
    ssize_t n;
    int last = '\n';

    len = rgclient_unescape(in, len);
    (void) rgclient_send(fd, in, len);
    if (quiet)
        return 0;
    while ((n = rgclient_recv(fd, buf, sizeof(buf))) > 0) {
        fwrite(buf, 1, (size_t) n, stdout);
        last = buf[n - 1];
    }

    /* The verdict on a line of its own, whatever came before it. */
    if (last != '\n')
        putchar('\n');
    printf("%s\n", n == 0 || (n < 0 && errno == ECONNRESET) ? "CLOSED" : "OPEN");
    return 0;
}

/* rgclient_read_replies - read and print count netstring replies */
static int rgclient_read_replies(int fd, long count)
{
    static char buf[300000];
    size_t have = 0;

    while (count > 0) {
        const char *data;
        const char *why;
        size_t len;
        size_t used;
        int rc = netstring_decode(buf, have, 100000, &data, &len, &used, &why);

        if (rc == NETSTRING_OK) {
            printf("%.*s\n", (int) len, data);
            memmove(buf, buf + used, have - used);
            have -= used;
            count--;
            continue;
        }
        if (rc == NETSTRING_BAD) {
            printf("BAD REPLY: %s\n", why);
            return 1;
        }
        ssize_t n = rgclient_recv(fd, buf + have, sizeof(buf) - have);

        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            printf("CLOSED\n");
            return 0;
        }
        if (n < 0) {
            printf("TIMEOUT\n");
            return 0;
        }
        have += (size_t) n;
    }
    fflush(stdout);
    return 0;
}

/* rgclient_sockmap - each stdin line one request */
static int rgclient_sockmap(int fd, int interactive, int quiet)
{
    char line[20000];
    char *out = NULL;
    size_t olen = 0;
    size_t ocap = 0;
    long count = 0;

    while (fgets(line, sizeof(line), stdin) != NULL) {
        size_t n = strlen(line);
        size_t need;

        if (n > 0 && line[n - 1] == '\n')
            line[--n] = 0;
        need = n + 16;
        if (olen + need > ocap) {
            ocap = (olen + need) * 2;
            if ((out = realloc(out, ocap)) == NULL)
                exit(1);
        }
        olen += netstring_encode(out + olen, ocap - olen, line, n);
        count++;
        if (interactive) {
            if (rgclient_send(fd, out, olen) < 0) {
                printf("CLOSED\n");
                break;
            }
            olen = 0;
            count = 0;
            rgclient_read_replies(fd, 1);
            fflush(stdout);
        }
    }
    if (!interactive) {
        if (rgclient_send(fd, out, olen) < 0 && !quiet)
            printf("CLOSED\n");
        else if (!quiet)
            rgclient_read_replies(fd, count);
    }
    free(out);
    return 0;
}

/* rgclient_policy - send stdin, print one reply per request */
static int rgclient_policy(int fd, const char *in, size_t len, int quiet)
{
    char buf[65536];
    long want = 0;
    long got = 0;
    int nl = 1;

    /* A request ends with an empty line: count empty lines. */
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\n') {
            if (nl)
                want++;
            nl = 1;
        } else if (in[i] != '\r') {
            nl = 0;
        }
    }
    /* No complete request: wait for an answer or the close anyway. */
    if (want == 0)
        want = 1;
    (void) rgclient_send(fd, in, len);
    if (quiet)
        return 0;
    nl = 0;
    while (got < want) {
        ssize_t n = rgclient_recv(fd, buf, sizeof(buf));

        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            printf("CLOSED\n");
            return 0;
        }
        if (n < 0) {
            printf("TIMEOUT\n");
            return 0;
        }
        fwrite(buf, 1, (size_t) n, stdout);
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                if (nl)
                    got++;
                nl = 1;
            } else {
                nl = 0;
            }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int policy = 0;
    int raw = 0;
    int interactive = 0;
    int quiet = 0;
    int keep = 0;
    int fd;
    int ch;

    while ((ch = getopt(argc, argv, "iprqk:t:")) != -1) {
        switch (ch) {
        case 'i':
            interactive = 1;
            break;
        case 'p':
            policy = 1;
            break;
        case 'r':
            raw = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'k':
            keep = atoi(optarg);
            break;
        case 't':
            rgclient_timeout_ms = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: rgclient [-p|-r] [-i] [-q] [-k SECONDS] [-t MS] unix:PATH|inet:HOST:PORT\n");
            return 64;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: rgclient [-p|-r] [-i] [-q] [-k SECONDS] [-t MS] unix:PATH|inet:HOST:PORT\n");
        return 64;
    }
    signal(SIGPIPE, SIG_IGN);
    if ((fd = rgclient_connect(argv[optind])) < 0)
        return 1;
    if (policy || raw) {
        size_t len;
        char *in = rgclient_slurp(&len);

        if (raw)
            rgclient_raw(fd, in, len, quiet);
        else
            rgclient_policy(fd, in, len, quiet);
        free(in);
    } else {
        rgclient_sockmap(fd, interactive, quiet);
    }
    fflush(stdout);
    if (keep > 0)
        sleep((unsigned) keep);
    close(fd);
    return 0;
}
