/*
 * lookupd.h - what rcptgate-lookupd's protocol modules share with its loop
 *
 * lookupd.c owns the connections, their buffers, the store handle and the
 * counters; sockmap.c and policyd.c turn the bytes a connection has
 * buffered into replies. A protocol module never reads or writes a socket
 * itself: it consumes complete requests from conn->in, appends replies
 * with lookupd_out_space()/lookupd_out_commit(), and returns how many
 * input bytes it used (or -1: the peer broke the protocol, close it).
 */
#ifndef RG_LOOKUPD_H
#define RG_LOOKUPD_H

#include <stddef.h>
#include <time.h>

#include "check.h"
#include "store.h"

/* A socketmap request is at most this long (payload bytes). */
#define SOCKMAP_REQ_MAX     10000
/* A socketmap reply is at most this long (Postfix's limit is 100,000). */
#define SOCKMAP_REPLY_MAX   4096
/* A policy request: at most this many bytes and attributes. */
#define POLICYD_REQ_MAX     10240
#define POLICYD_ATTR_MAX    100

/* Input buffer: always room for one whole request of either protocol. */
#define LOOKUPD_IN_SIZE     16384

struct event;
typedef struct lookupd_conn LOOKUPD_CONN;

struct lookupd_conn {
    int fd;
    int (*input)(LOOKUPD_CONN *);      /* sockmap_input or policyd_input */
    struct event *ev_read;
    struct event *ev_write;
    char *out;                          /* replies not yet written */
    size_t out_off, out_len, out_cap;
    size_t in_len;
    int partial;                        /* in[] holds part of a request */
    int reading;                        /* ev_read is added */
    int eof;                            /* peer closed its side */
    long long req_start_ms;             /* when the partial request began */
    LOOKUPD_CONN *prev, *next;
    char peer[96];                      /* for logs */
    char in[LOOKUPD_IN_SIZE];
};

/* Counters, written to the stats file. */
enum { SOCKMAP_MAP_RECIPIENTS, SOCKMAP_MAP_DOMAINS, SOCKMAP_MAP_TRANSPORT,
       SOCKMAP_MAP_UNKNOWN, SOCKMAP_MAP_COUNT };
enum { SOCKMAP_OK, SOCKMAP_NOTFOUND, SOCKMAP_TEMP, SOCKMAP_PERM, SOCKMAP_OUTCOME_COUNT };
enum { POLICYD_DUNNO, POLICYD_REJECT, POLICYD_DEFER, POLICYD_OUTCOME_COUNT };

typedef struct lookupd_stats {
    time_t started;
    long long connections_total;
    long long connections_current;
    long long protocol_errors;
    long long timeouts;
    long long sockmap[SOCKMAP_MAP_COUNT][SOCKMAP_OUTCOME_COUNT];
    long long policy[POLICYD_OUTCOME_COUNT];
} LOOKUPD_STATS;

extern LOOKUPD_STATS lookupd_stats;

/* The [address] rules as the rule engine wants them (refreshed on reload). */
extern CHECK_OPTS lookupd_check_opts;

/*
 * Our own name for the policy service's forged HELO rule: [rules]
 * hostname, else the system's FQDN, as smtpd's (refreshed on reload).
 * Postfix sends no such attribute (server_address and server_port only).
 */
#define LOOKUPD_HOSTNAME_LEN 256
extern char lookupd_hostname[LOOKUPD_HOSTNAME_LEN];

/*
 * lookupd_store - the store handle, inside a read transaction that lasts
 * until the loop has answered everything buffered on this connection.
 * NULL when the store cannot be used now; *reason says why (static text,
 * valid until the next call).
 */
STORE *lookupd_store(const char **reason);

/*
 * lookupd_store_failed - a lookup returned -1: remember why, close the
 * handle, and answer "store unavailable" until a reopen (at most once a
 * second) works. reason may be store_error() of the failing handle.
 */
void lookupd_store_failed(const char *reason);

/* lookupd_out_space - room for need more reply bytes at the end of out */
char *lookupd_out_space(LOOKUPD_CONN *conn, size_t need);

/* lookupd_out_commit - n bytes written at lookupd_out_space() are a reply */
void lookupd_out_commit(LOOKUPD_CONN *conn, size_t n);

/* lookupd_safe_text - copy text for a reply or log: printable ASCII only, capped */
size_t lookupd_safe_text(char *out, size_t size, const char *in, size_t len);

/* sockmap.c */
int sockmap_input(LOOKUPD_CONN *conn);
size_t sockmap_reply(const char *req, size_t len, char *out, size_t size);

/* policyd.c */
int policyd_input(LOOKUPD_CONN *conn);

#endif
