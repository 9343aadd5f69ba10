/*
 * listen.h - listener addresses "unix:PATH" and "inet:HOST:PORT"
 *
 * Postfix's notation, so a postmaster writes the same string on both
 * sides: inet:127.0.0.1:10100, inet:[::1]:10100, unix:/run/rcptgate/map.
 * listen_open() makes the socket non-blocking and close-on-exec; for a
 * unix socket it replaces a stale socket file and creates the new one
 * with its mode (and group) already set.
 */
#ifndef RG_LISTEN_H
#define RG_LISTEN_H

#include <stddef.h>

typedef struct listen_addr {
    int is_unix;
    char path[108];             /* unix: socket path */
    char host[256];             /* inet: host name or address */
    char port[32];              /* inet: port */
} LISTEN_ADDR;

/* listen_parse - parse one listener; 0 or -1 with err set */
int listen_parse(const char *spec, LISTEN_ADDR *out, char *err, size_t errlen);

#define LISTEN_MAX 16            /* listeners in one list */

/*
 * listen_parse_list - parse a comma-separated list (blanks around commas
 * allowed) into out[max]. Returns how many (0 for an empty or blank
 * string), or -1 with err set.
 */
int listen_parse_list(const char *value, LISTEN_ADDR *out, int max, char *err, size_t errlen);

/* listen_check - cfg check callback for a comma-separated list of listeners */
int listen_check_list(const char *value, char *err, size_t errlen);

/*
 * listen_open - bind and listen; returns the fd, or -1 with err set. A
 * unix socket gets unix_mode (octal, e.g. 0660) when it is created; an
 * IPv6 one takes IPv6 only (IPV6_V6ONLY, as Postfix), so "0.0.0.0:25"
 * and "[::]:25" are two listeners side by side.
 */
int listen_open(const LISTEN_ADDR *la, int backlog, int unix_mode, char *err, size_t errlen);

/*
 * listen_open_group - listen_open(), and a unix socket is created with
 * group gid (-1: the process's own). As root the file is born with that
 * group; otherwise gid must be one of ours.
 */
int listen_open_group(const LISTEN_ADDR *la, int backlog, int unix_mode, long gid,
                      char *err, size_t errlen);

/* listen_format - "unix:PATH" / "inet:HOST:PORT" for logs */
const char *listen_format(const LISTEN_ADDR *la, char *buf, size_t size);

#endif
