/*
 * listen.c - listener addresses "unix:PATH" and "inet:HOST:PORT"
 *
 * Parsing follows Postfix's notation so that the string in rcptgate.conf
 * and the one in main.cf look alike. A bare "HOST:PORT" is taken as inet,
 * as Postfix does. IPv6 literals are written in brackets: inet:[::1]:10100.
 *
 * listen_open() never logs: it reports through err so that callers (the
 * daemons at startup, the test client) decide what to do with a failure.
 * A unix socket path that already exists is replaced only when it is a
 * socket nobody answers on; a regular file, or a live server, is an error.
 * A new unix socket is created with its final mode and group (see
 * listen_bind_as()), never changed by name after bind().
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"

/* listen_parse - parse one listener; 0 or -1 with err set */
int listen_parse(const char *spec, LISTEN_ADDR *out, char *err, size_t errlen)
{
    const char *hp;
    const char *colon;
    size_t hlen;

    memset(out, 0, sizeof(*out));
    if (strncmp(spec, "unix:", 5) == 0) {
        const char *path = spec + 5;
        size_t plen = strlen(path);

        if (plen == 0) {
            snprintf(err, errlen, "\"%s\": empty socket path", spec);
            return -1;
        }
        /* Relative, it would be made in whatever directory the daemon started in, and left there. */
        if (path[0] != '/') {
            snprintf(err, errlen, "\"%s\": the socket path must be absolute (Postfix's side may be "
                     "relative to its queue directory; rcptgate's may not)", spec);
            return -1;
        }
        if (plen >= sizeof(out->path)) {
            snprintf(err, errlen, "\"%s\": socket path longer than %zu bytes",
                     spec, sizeof(out->path) - 1);
            return -1;
        }
        out->is_unix = 1;
        memcpy(out->path, path, plen + 1);
        return 0;
    }
    hp = strncmp(spec, "inet:", 5) == 0 ? spec + 5 : spec;

    /* "tcp:h:p", "local:/p": a type we do not know, not a strange host. */
    if (hp == spec) {
        size_t alpha = strspn(spec, "abcdefghijklmnopqrstuvwxyz");

        if (alpha > 0 && spec[alpha] == ':'
            && (spec[alpha + 1] == '/' || strchr(spec + alpha + 1, ':') != NULL)) {
            snprintf(err, errlen, "\"%s\": unknown listener type \"%.*s\": "
                     "expected unix:PATH or inet:HOST:PORT", spec, (int) alpha, spec);
            return -1;
        }
    }
    if (*hp == '[') {
        const char *close = strchr(hp, ']');

        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "\"%s\": expected inet:[ADDRESS]:PORT", spec);
            return -1;
        }
        hlen = (size_t) (close - hp - 1);
        hp++;
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "\"%s\": expected unix:PATH or inet:HOST:PORT", spec);
            return -1;
        }
        hlen = (size_t) (colon - hp);
        if (memchr(hp, ':', hlen) != NULL) {
            snprintf(err, errlen, "\"%s\": write an IPv6 address in brackets: inet:[::1]:PORT", spec);
            return -1;
        }
    }
    if (hlen == 0 || hlen >= sizeof(out->host)) {
        snprintf(err, errlen, "\"%s\": bad host", spec);
        return -1;
    }
    {
        const char *port = colon + 1;
        size_t pl = strlen(port);
        unsigned long v = 0;

        if (pl == 0 || pl > 5 || strspn(port, "0123456789") != pl) {
            snprintf(err, errlen, "\"%s\": port must be a number from 1 to 65535", spec);
            return -1;
        }
        for (size_t k = 0; k < pl; k++)
            v = v * 10 + (unsigned long) (port[k] - '0');
        if (v == 0 || v > 65535) {
            snprintf(err, errlen, "\"%s\": port must be a number from 1 to 65535", spec);
            return -1;
        }
        memcpy(out->port, port, pl + 1);
    }
    memcpy(out->host, hp, hlen);
    out->host[hlen] = 0;
    return 0;
}

/* listen_parse_list - split and parse a comma-separated list */
int listen_parse_list(const char *value, LISTEN_ADDR *out, int max, char *err, size_t errlen)
{
    const char *p = value;
    int count = 0;

    if (value[strspn(value, " \t")] == 0)
        return 0;                       /* empty or blank: no listener */
    for (;;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t) (end - p) : strlen(p);
        char one[512];

        /* Whitespace around commas is allowed; an empty item is not. */
        while (n > 0 && (*p == ' ' || *p == '\t'))
            p++, n--;
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == 0) {
            snprintf(err, errlen, "empty listener in \"%s\"", value);
            return -1;
        }
        if (n >= sizeof(one)) {
            snprintf(err, errlen, "listener too long in \"%s\"", value);
            return -1;
        }
        if (count >= max) {
            snprintf(err, errlen, "more than %d listeners in \"%s\"", max, value);
            return -1;
        }
        memcpy(one, p, n);
        one[n] = 0;
        if (listen_parse(one, out + count, err, errlen) < 0)
            return -1;
        count++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return count;
}

/* listen_check_list - cfg check callback for a comma-separated list */
int listen_check_list(const char *value, char *err, size_t errlen)
{
    LISTEN_ADDR la[LISTEN_MAX];

    return listen_parse_list(value, la, LISTEN_MAX, err, errlen) < 0 ? -1 : 0;
}

/* listen_set_flags - non-blocking and close-on-exec */
static int listen_set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

/* listen_unix_stale - make room for a unix socket: 0 free, -1 err set */
static int listen_unix_stale(const char *path, char *err, size_t errlen)
{
    struct stat st;
    struct sockaddr_un sun;
    int fd;
    int rc;
    int saved;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s: exists and is not a socket", path);
        return -1;
    }

    /* A socket file: in use if someone accepts on it, stale otherwise. */
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    rc = connect(fd, (struct sockaddr *) &sun, sizeof(sun));
    saved = errno;
    close(fd);
    if (rc == 0) {
        snprintf(err, errlen, "%s: another process is listening there", path);
        return -1;
    }
    /*
     * Only a refusal says nobody listens. EACCES (a socket we may not
     * use) or EAGAIN (a full backlog) may be a running daemon's, and
     * removing it would leave that daemon unreachable.
     */
    if (saved != ECONNREFUSED && saved != ENOENT) {
        snprintf(err, errlen, "%s: cannot tell whether another process listens there (%s); "
                 "remove it by hand if none does", path, strerror(saved));
        return -1;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        snprintf(err, errlen, "remove stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * listen_bind_as - bind fd to sun so that the socket file is born with
 * mode and group: the umask gives the mode, and (as root) the effective
 * group the group. Nothing is changed by path afterwards, because the
 * directory usually belongs to the daemon's user, who could swap the new
 * file for a symbolic link before a chmod() or chown() by name. Not
 * root, a group we belong to is set with lchown(), which follows nothing.
 */
static int listen_bind_as(int fd, const struct sockaddr_un *sun, int unix_mode, long gid,
                          char *err, size_t errlen)
{
    gid_t egid = getegid();
    int switched = 0;
    mode_t old;
    int rc;
    int saved;

    if (gid >= 0 && geteuid() == 0 && (gid_t) gid != egid) {
        if (setegid((gid_t) gid) < 0) {
            snprintf(err, errlen, "bind %s: setegid(%ld): %s", sun->sun_path, gid, strerror(errno));
            return -1;
        }
        switched = 1;
    }
    old = umask((mode_t) (~unix_mode & 0777));
    rc = bind(fd, (const struct sockaddr *) sun, sizeof(*sun));
    saved = errno;
    (void) umask(old);
    if (switched && setegid(egid) < 0) {
        /* Cannot happen as root; if it did, we must not go on half-switched. */
        snprintf(err, errlen, "bind %s: setegid(%ld) back: %s", sun->sun_path, (long) egid,
                 strerror(errno));
        if (rc == 0)
            (void) unlink(sun->sun_path);
        return -1;
    }
    if (rc < 0) {
        snprintf(err, errlen, "bind %s: %s", sun->sun_path, strerror(saved));
        return -1;
    }
    if (gid >= 0 && !switched) {
        struct stat st;

        /* Not root (or a set-group-ID directory decided): set it, not following links. */
        if (lstat(sun->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode)
            || (st.st_gid != (gid_t) gid && lchown(sun->sun_path, (uid_t) -1, (gid_t) gid) < 0)) {
            snprintf(err, errlen, "%s: set group %ld: %s%s", sun->sun_path, gid, strerror(errno),
                     errno == EPERM ? " (not root: the user must be a member of that group)" : "");
            (void) unlink(sun->sun_path);
            return -1;
        }
    }
    return 0;
}

/* listen_open_unix - bind a unix socket with mode and group */
static int listen_open_unix(const LISTEN_ADDR *la, int backlog, int unix_mode, long gid,
                            char *err, size_t errlen)
{
    struct sockaddr_un sun;
    int fd;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, la->path, strlen(la->path) + 1);
    if (listen_unix_stale(la->path, err, errlen) < 0)
        return -1;
    if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (listen_bind_as(fd, &sun, unix_mode, gid, err, errlen) < 0) {
        close(fd);
        return -1;
    }
    if (listen(fd, backlog) < 0 || listen_set_flags(fd) < 0) {
        snprintf(err, errlen, "%s: %s", la->path, strerror(errno));
        close(fd);
        unlink(la->path);
        return -1;
    }
    return fd;
}

/* listen_open_inet - bind the first address host:port resolves to */
static int listen_open_inet(const LISTEN_ADDR *la, int backlog, char *err, size_t errlen)
{
    struct addrinfo hints;
    struct addrinfo *res;
    struct addrinfo *ai;
    int fd = -1;
    int on = 1;
    int gai;
    int saved = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if ((gai = getaddrinfo(la->host, la->port, &hints, &res)) != 0) {
        snprintf(err, errlen, "inet:%s:%s: %s", la->host, la->port, gai_strerror(gai));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        if ((fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol)) < 0) {
            saved = errno;
            continue;
        }
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        /*
         * An IPv6 listener takes IPv6 only, as Postfix's: otherwise "[::]:25"
         * also holds IPv4's port 25 (Linux's bindv6only = 0), and the
         * "0.0.0.0:25, [::]:25" pair the documentation shows fails to bind.
         */
        if (ai->ai_family == AF_INET6)
            (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0
            && listen(fd, backlog) == 0 && listen_set_flags(fd) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        char name[300];

        snprintf(err, errlen, "bind %s: %s", listen_format(la, name, sizeof(name)), strerror(saved));
    }
    return fd;
}

/* listen_open - bind and listen; returns the fd, or -1 with err set */
int listen_open(const LISTEN_ADDR *la, int backlog, int unix_mode, char *err, size_t errlen)
{
    return listen_open_group(la, backlog, unix_mode, -1, err, errlen);
}

/* listen_open_group - listen_open, a unix socket also with group gid (-1: ours) */
int listen_open_group(const LISTEN_ADDR *la, int backlog, int unix_mode, long gid,
                      char *err, size_t errlen)
{
    if (la->is_unix)
        return listen_open_unix(la, backlog, unix_mode, gid, err, errlen);
    return listen_open_inet(la, backlog, err, errlen);
}

/* listen_format - "unix:PATH" / "inet:HOST:PORT" for logs */
const char *listen_format(const LISTEN_ADDR *la, char *buf, size_t size)
{
    if (la->is_unix)
        snprintf(buf, size, "unix:%s", la->path);
    else if (strchr(la->host, ':') != NULL)
        snprintf(buf, size, "inet:[%s]:%s", la->host, la->port);
    else
        snprintf(buf, size, "inet:%s:%s", la->host, la->port);
    return buf;
}
