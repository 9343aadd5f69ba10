/*
 * bench_lookup.c - socketmap load client for the rcptgate-lookupd benchmark
 *
 * SYNOPSIS
 *	bench_lookup -s SOCKET [-c CONNECTIONS] [-d DEPTH]
 *		[-n REQUESTS | -t SECONDS] [-w SECONDS] [-r RATE [-P]]
 *		[-k KEYFILE | -p PATTERN -N KEYS] [-h HIT_PERCENT]
 *		[-m MAP | -R] [-a] [-S SEED] [-L LATFILE]
 *
 * DESCRIPTION
 *	Opens CONNECTIONS persistent connections to a Postfix socketmap
 *	server on a unix socket and sends "MAP KEY" netstring requests, at
 *	most DEPTH outstanding per connection (1, like Postfix, by default).
 *	Keys are random: HIT_PERCENT of them (default 50) are recipients the
 *	store holds, the rest addresses in the same domain that it does not.
 *
 *	Keys come from a pattern that matches the store run.sh generated:
 *	PATTERN holds one "%d" or "%0Wd" that stands for the index; hits
 *	use indexes 0..KEYS-1 and misses KEYS..2*KEYS-1 (same shape, same
 *	domain, never stored). With -k, hits are the first word of each line
 *	of a Postfix map file and misses the same with "x" in front.
 *
 *	Without -r the client sends as fast as the server answers (a closed
 *	loop: the maximum throughput). With -r it paces requests to RATE per
 *	second in total (an open loop), and a request's latency counts from
 *	the moment it was due, not from when a free connection took it, so a
 *	server that falls behind cannot hide its queueing delay.
 *
 *	That paced mode polls without sleeping while requests are due
 *	every few hundred microseconds, so it keeps its core busy; whatever
 *	else runs there delays its clock by whole scheduler slices, and
 *	the latency it records is then the client's. With -P (and -r) the
 *	client sleeps instead: a timerfd armed at the next due time
 *	(absolute, CLOCK_MONOTONIC) wakes epoll_wait, and a request's
 *	latency counts from the moment it was written (the clock is read
 *	just before the write) to the moment its reply was read. Time the
 *	client spends descheduled before it sends does not count; time the
 *	server takes does. A client that wakes more than one interval
 *	(1/RATE) after a request was due sends it at once, counts a "late
 *	send", and puts the next one an interval later rather than sending
 *	the missed ones in a burst, so the rate achieved falls short instead.
 *	A request that finds every connection busy waits for a reply and is
 *	late likewise (the server's queueing shows in the late sends and the
 *	rate, not in the latency).
 *
 *	With -R the same load goes to redis-server instead, as RESP
 *	"GET KEY" (a bulk reply counts as OK, a nil one as NOTFOUND), so the
 *	ceiling can be measured by this very client as well as by
 *	redis-benchmark: same pacing, same latency clock. Use
 *	-p 'key:%012d', the keys redis-benchmark -r asks for.
 *
 *	With -L the client also writes LATFILE: one line per measured
 *	reply, "SENT_US LATENCY_US", SENT_US counted from the start of the
 *	run (after the connections opened), so that a script can take the
 *	latencies of the requests sent while something else ran.
 *
 *	One thread, non-blocking sockets and epoll: the client must stay
 *	cheaper than the server it measures. Every latency is recorded and
 *	sorted at the end.
 *
 * OUTPUT
 *	A human summary, then one line for scripts:
 *	RESULT conns=N depth=D requests=R seconds=S rps=X p50_us=A p99_us=B
 *	    ok=O notfound=F other=E mismatch=M client_cpu=P
 *	and with -P two more fields at the end: late=L (late sends among the
 *	measured requests) lag_p99_us=G (how long after its due time a
 *	request was written, 99th percentile).
 *
 * DIAGNOSTICS
 *	Exit 0 when every reply was "OK <value>" or "NOTFOUND " (with -R:
 *	a bulk string or nil) and (unless
 *	-a) hits got OK and misses NOTFOUND; 1 on any other reply (printed),
 *	a closed connection or a stall; 64 on a usage error.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "netstring.h"
#include "xalloc.h"

#define BENCH_MAX_REPLY   100000        /* socketmap reply limit */
#define BENCH_MAX_KEY     1024
#define BENCH_READ_CHUNK  65536
#define BENCH_STALL_NS    (10ULL * 1000000000ULL)
#define BENCH_DRAIN_NS    (10ULL * 1000000000ULL)

/* One connection and the requests it has outstanding, oldest first. */
typedef struct bench_conn {
    int fd;
    char *in;                   /* replies read, not yet parsed */
    size_t in_len, in_size;
    char *out;                  /* requests not yet written */
    size_t out_off, out_len, out_size;
    int want_out;               /* EPOLLOUT armed */
    uint64_t *t_due;            /* ring: when each request was sent or due */
    int64_t *key;               /* ring: key index, negative = miss */
    unsigned char *measured;    /* ring: counted in the results */
    unsigned head, count;
} BENCH_CONN;

/* Options and results of the one run this process makes. */
typedef struct bench {
    const char *sock;
    const char *map;
    int nconn, depth;
    long long total;            /* measured requests to send, 0 = by time */
    double seconds, warmup, rate;
    int hit_pct;
    int any_answer;             /* -a: do not check hit=OK, miss=NOTFOUND */
    int resp;                   /* -R: talk RESP to redis-server, not socketmap */
    int sleepy;                 /* -P: paced, sleeps, latency from the write */
    /* keys: a pattern, or a list from a file */
    char *pat_pre, *pat_suf;
    int pat_width;
    long long nkeys;
    char **keys;
    uint64_t rng;
    /* run state */
    BENCH_CONN *conns;
    int epfd;
    uint64_t t_start, t_measure, t_stop, t_last_reply;
    long long issued;           /* requests sent or due (paced) */
    long long sent_measured;
    long long outstanding;
    int stopping;
    int tfd;                    /* -P: timerfd that wakes us at next_due */
    uint64_t next_due, t_armed;
    /* results */
    long long ok, notfound, other, mismatch, replies_measured;
    uint32_t *lat;              /* nanoseconds, measured replies only */
    uint32_t *lat_at;           /* -L: microseconds from t_start to each send */
    const char *latfile;
    size_t lat_len, lat_size;
    int failed;
    int complaints;             /* bad replies printed so far */
    long long late;             /* -P: measured sends > 1 interval after due */
    uint32_t *lag;              /* -P: ns from due to write, measured sends */
    size_t lag_len, lag_size;
} BENCH;

/* bench_now - monotonic nanoseconds */
static uint64_t bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

/* bench_rand - xorshift64*: cheap, and good enough to pick keys */
static uint64_t bench_rand(BENCH *b)
{
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return b->rng * 0x2545F4914F6CDD1DULL;
}

/* bench_usage - say how to call us and exit */
static _Noreturn void bench_usage(void)
{
    fprintf(stderr,
            "usage: bench_lookup -s SOCKET [-c CONNECTIONS] [-d DEPTH]\n"
            "         [-n REQUESTS | -t SECONDS] [-w WARMUP_SECONDS] [-r RATE [-P]]\n"
            "         [-k KEYFILE | -p PATTERN -N KEYS] [-h HIT_PERCENT]\n"
            "         [-m MAP | -R] [-a] [-S SEED] [-L LATFILE]\n"
            "defaults: -c 16 -d 1 -t 5 -p user%%06d@bench.example -N 1000000\n"
            "          -h 50 -m recipients; -r 0 = as fast as answered\n"
            "-P: paced without spinning; latency from each request's write\n");
    exit(RG_EX_USAGE);
}

/* bench_pattern - split "pre%0Wdsuf" into its parts; -1 if malformed */
static int bench_pattern(BENCH *b, const char *pat)
{
    const char *p = strchr(pat, '%');
    const char *q;
    int width = 0;

    if (p == NULL)
        return -1;
    q = p + 1;
    while (*q >= '0' && *q <= '9')
        width = width * 10 + (*q++ - '0');
    if (*q != 'd' || width > 20 || strchr(q + 1, '%') != NULL)
        return -1;
    b->pat_pre = xstrndup(pat, (size_t) (p - pat));
    b->pat_suf = xstrdup(q + 1);
    b->pat_width = width;
    return 0;
}

/* bench_keyfile - load the first word of each line of a map file */
static void bench_keyfile(BENCH *b, const char *path)
{
    FILE *fp = fopen(path, "r");
    char line[BENCH_MAX_KEY * 2];
    size_t size = 0;

    if (fp == NULL)
        log_fatal("open %s: %s", path, strerror(errno));
    b->nkeys = 0;
    while (fgets(line, sizeof line, fp) != NULL) {
        char *k = line + strspn(line, " \t");
        size_t n = strcspn(k, " \t\r\n");

        if (n == 0 || *k == '#' || k != line)
            continue;
        if (n >= BENCH_MAX_KEY - 2)
            log_fatal("%s: key too long: %.40s...", path, k);
        if ((size_t) b->nkeys == size) {
            size = size ? size * 2 : 1024;
            b->keys = xrealloc(b->keys, size * sizeof *b->keys);
        }
        b->keys[b->nkeys++] = xstrndup(k, n);
    }
    if (ferror(fp))
        log_fatal("read %s: %s", path, strerror(errno));
    fclose(fp);
    if (b->nkeys == 0)
        log_fatal("%s: no keys", path);
}

/* bench_key - write key number idx (negative: a miss) into buf; its length */
static size_t bench_key(const BENCH *b, int64_t idx, char *buf, size_t size)
{
    int miss = idx < 0;
    uint64_t v = (uint64_t) (miss ? -idx - 1 : idx);
    char digits[24];
    int nd = 0;
    size_t len = 0;

    if (b->keys != NULL) {
        const char *k = b->keys[v];
        size_t kl = strlen(k);

        if (miss)
            buf[len++] = 'x';
        memcpy(buf + len, k, kl);
        return len + kl;
    }
    /* Misses are indexes past the end of the stored range. */
    if (miss)
        v += (uint64_t) b->nkeys;
    do {
        digits[nd++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);
    len = strlen(b->pat_pre);
    memcpy(buf, b->pat_pre, len);
    for (int pad = b->pat_width - nd; pad > 0; pad--)
        buf[len++] = '0';
    while (nd > 0)
        buf[len++] = digits[--nd];
    size_t sl = strlen(b->pat_suf);

    if (len + sl >= size)
        log_fatal("key pattern too long");
    memcpy(buf + len, b->pat_suf, sl);
    return len + sl;
}

/* bench_connect - open one non-blocking connection to the server */
static int bench_connect(const char *path)
{
    struct sockaddr_un sun;
    int fd;

    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path)
        log_fatal("socket path too long: %s", path);
    strcpy(sun.sun_path, path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        log_fatal("socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *) &sun, sizeof sun) < 0)
        log_fatal("connect %s: %s", path, strerror(errno));
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        log_fatal("fcntl: %s", strerror(errno));
    return fd;
}

/* bench_may_send - whether the run still wants new requests */
static int bench_may_send(BENCH *b, uint64_t now)
{
    if (b->stopping)
        return 0;
    if ((b->total > 0 && b->sent_measured >= b->total)
        || (b->total == 0 && now >= b->t_stop)) {
        b->stopping = 1;
        return 0;
    }
    return 1;
}

/* bench_send - queue one random request on c; due is its start time */
static void bench_send(BENCH *b, BENCH_CONN *c, uint64_t due)
{
    char payload[BENCH_MAX_KEY + 64];
    size_t mlen = strlen(b->map);
    int64_t idx;
    size_t plen;
    unsigned slot;

    idx = (int64_t) (bench_rand(b) % (uint64_t) b->nkeys);
    if ((int) (bench_rand(b) % 100) >= b->hit_pct)
        idx = -idx - 1;
    if (b->resp) {
        char key[BENCH_MAX_KEY];
        size_t kl = bench_key(b, idx, key, sizeof key);

        plen = (size_t) snprintf(payload, sizeof payload, "*2\r\n$3\r\nGET\r\n$%zu\r\n", kl);
        memcpy(payload + plen, key, kl);
        memcpy(payload + plen + kl, "\r\n", 2);
        plen += kl + 2;
    } else {
        memcpy(payload, b->map, mlen);
        payload[mlen] = ' ';
        plen = mlen + 1 + bench_key(b, idx, payload + mlen + 1, sizeof payload - mlen - 1);
    }

    if (c->out_len + plen + 16 > c->out_size) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        while (c->out_len + plen + 16 > c->out_size) {
            c->out_size = c->out_size ? c->out_size * 2 : 4096;
            c->out = xrealloc(c->out, c->out_size);
        }
    }
    if (b->resp) {
        memcpy(c->out + c->out_len, payload, plen);
        c->out_len += plen;
    } else {
        c->out_len += netstring_encode(c->out + c->out_len, c->out_size - c->out_len,
                                       payload, plen);
    }

    slot = (c->head + c->count) % (unsigned) b->depth;
    c->t_due[slot] = due;
    c->key[slot] = idx;
    c->measured[slot] = due >= b->t_measure;
    if (c->measured[slot])
        b->sent_measured++;
    c->count++;
    b->outstanding++;
    b->issued++;
}

/* bench_arm - ask epoll for writability only while output is pending */
static void bench_arm(BENCH *b, BENCH_CONN *c, int want_out)
{
    struct epoll_event ev;

    if (c->want_out == want_out)
        return;
    ev.events = EPOLLIN | (want_out ? EPOLLOUT : 0);
    ev.data.ptr = c;
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        log_fatal("epoll_ctl: %s", strerror(errno));
    c->want_out = want_out;
}

/* bench_flush - write what c has queued; -1 if the connection failed */
static int bench_flush(BENCH *b, BENCH_CONN *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                bench_arm(b, c, 1);
                return 0;
            }
            fprintf(stderr, "bench_lookup: write: %s\n", strerror(errno));
            return -1;
        }
        c->out_off += (size_t) n;
    }
    c->out_off = c->out_len = 0;
    bench_arm(b, c, 0);
    return 0;
}

/* bench_reply - judge one reply to the oldest request of c; -1 on error */
static int bench_reply(BENCH *b, BENCH_CONN *c, const char *data, size_t len, uint64_t now)
{
    unsigned slot = c->head;
    int64_t idx = c->key[slot];
    int kind;                   /* 1 OK, 0 NOTFOUND, -1 other */

    if (c->count == 0) {
        fprintf(stderr, "bench_lookup: reply with no request outstanding: '%.*s'\n",
                (int) (len > 200 ? 200 : len), data);
        return -1;
    }
    c->head = (c->head + 1) % (unsigned) b->depth;
    c->count--;
    b->outstanding--;

    if (b->resp)
        kind = data[0] == '$' ? (data[1] == '-' ? 0 : 1) : -1;
    else if (len > 3 && memcmp(data, "OK ", 3) == 0)
        kind = 1;
    else if (len == 9 && memcmp(data, "NOTFOUND ", 9) == 0)
        kind = 0;
    else
        kind = -1;

    if ((kind < 0 || (!b->any_answer && kind != (idx >= 0))) && b->complaints++ < 10) {
        char key[BENCH_MAX_KEY];
        size_t kl = bench_key(b, idx, key, sizeof key);

        fprintf(stderr, "bench_lookup: %s reply to \"%s %.*s\": '%.*s'\n",
                kind < 0 ? "unexpected" : "wrong", b->resp ? "GET" : b->map, (int) kl, key,
                (int) (len > 200 ? 200 : len), data);
    }
    if (!c->measured[slot])
        return kind < 0 ? -1 : 0;

    if (kind < 0)
        b->other++;
    else if (kind == 1)
        b->ok++;
    else
        b->notfound++;
    if (kind >= 0 && kind != (idx >= 0))
        b->mismatch++;
    b->replies_measured++;
    b->t_last_reply = now;
    if (b->lat_len == b->lat_size) {
        b->lat_size = b->lat_size ? b->lat_size * 2 : 1 << 20;
        b->lat = xrealloc(b->lat, b->lat_size * sizeof *b->lat);
        if (b->latfile != NULL)
            b->lat_at = xrealloc(b->lat_at, b->lat_size * sizeof *b->lat_at);
    }
    if (b->latfile != NULL)
        b->lat_at[b->lat_len] = (uint32_t) ((c->t_due[slot] - b->t_start) / 1000);
    uint64_t ns = now > c->t_due[slot] ? now - c->t_due[slot] : 0;

    b->lat[b->lat_len++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t) ns;
    return kind < 0 ? -1 : 0;
}

/*
 * bench_resp_decode - one RESP reply at the start of buf, as netstring_decode
 * does it: data and len cover the whole reply ("$4\r\nuser\r\n", "$-1\r\n",
 * "-ERR ...\r\n"), so the judge can tell them apart by the first bytes.
 */
static int bench_resp_decode(const char *buf, size_t avail, const char **data,
                             size_t *len, size_t *used, const char **why)
{
    const char *eol = avail > 0 ? memchr(buf, '\n', avail) : NULL;
    size_t head;
    long n;

    if (eol == NULL)
        return avail > 1024 ? (*why = "line too long", NETSTRING_BAD) : NETSTRING_MORE;
    head = (size_t) (eol - buf) + 1;
    if (head < 3 || buf[head - 2] != '\r') {
        *why = "line does not end in CRLF";
        return NETSTRING_BAD;
    }
    *data = buf;
    if (buf[0] != '$') {        /* +simple, -error, :integer: judged "other" */
        *len = *used = head;
        return NETSTRING_OK;
    }
    n = strtol(buf + 1, NULL, 10);
    if (n < 0) {
        *len = *used = head;
        return NETSTRING_OK;
    }
    if (n > BENCH_MAX_REPLY) {
        *why = "bulk reply too long";
        return NETSTRING_BAD;
    }
    if (avail < head + (size_t) n + 2)
        return NETSTRING_MORE;
    *len = *used = head + (size_t) n + 2;
    return NETSTRING_OK;
}

/* bench_read - read and judge the replies waiting on c; -1 on error */
static int bench_read(BENCH *b, BENCH_CONN *c, int *got)
{
    ssize_t n;
    size_t off = 0;
    uint64_t now;

    if (c->in_size - c->in_len < BENCH_READ_CHUNK) {
        c->in_size = c->in_len + BENCH_READ_CHUNK;
        c->in = xrealloc(c->in, c->in_size);
    }
    n = read(c->fd, c->in + c->in_len, c->in_size - c->in_len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        fprintf(stderr, "bench_lookup: read: %s\n", strerror(errno));
        return -1;
    }
    if (n == 0) {
        fprintf(stderr, "bench_lookup: server closed a connection with %u request(s) outstanding\n",
                c->count);
        return -1;
    }
    c->in_len += (size_t) n;
    now = bench_now();
    for (;;) {
        const char *data, *why = "?";
        size_t len, used;
        int st = b->resp ? bench_resp_decode(c->in + off, c->in_len - off, &data, &len, &used, &why)
            : netstring_decode(c->in + off, c->in_len - off, BENCH_MAX_REPLY,
                               &data, &len, &used, &why);

        if (st == NETSTRING_MORE)
            break;
        if (st == NETSTRING_BAD) {
            fprintf(stderr, "bench_lookup: malformed reply: %s\n", why);
            return -1;
        }
        off += used;
        (*got)++;
        if (bench_reply(b, c, data, len, now) < 0)
            return -1;
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return 0;
}

/* bench_pace - issue every request due by now on connections with room */
static void bench_pace(BENCH *b, uint64_t now, int *cursor)
{
    double interval = 1e9 / b->rate;

    while (bench_may_send(b, now)) {
        uint64_t due = b->t_start + (uint64_t) ((double) b->issued * interval);
        int tries;

        if (due > now)
            break;
        for (tries = 0; tries < b->nconn; tries++) {
            BENCH_CONN *c = &b->conns[*cursor];

            *cursor = (*cursor + 1) % b->nconn;
            if ((int) c->count < b->depth) {
                bench_send(b, c, due);
                /* Write at once: a paced request must not wait for more. */
                if (bench_flush(b, c) < 0)
                    b->failed = 1;
                break;
            }
        }
        if (tries == b->nconn)
            break;              /* all busy: it stays due, its latency grows */
    }
}

/*
 * bench_pace_sleep - -P: send the request due by now, if a connection has
 * room, stamped with the time of its write; then arm the timer for the next
 */
static void bench_pace_sleep(BENCH *b, uint64_t now, int *cursor)
{
    uint64_t interval = (uint64_t) (1e9 / b->rate);

    while (!b->failed && bench_may_send(b, now) && b->next_due <= now) {
        BENCH_CONN *c = NULL;
        uint64_t t, lag;

        for (int tries = 0; tries < b->nconn; tries++) {
            BENCH_CONN *cand = &b->conns[*cursor];

            *cursor = (*cursor + 1) % b->nconn;
            if ((int) cand->count < b->depth) {
                c = cand;
                break;
            }
        }
        if (c == NULL)
            break;              /* all busy: a reply wakes us, and it is late */
        t = bench_now();
        lag = t - b->next_due;
        bench_send(b, c, t);
        if (bench_flush(b, c) < 0)
            b->failed = 1;
        if (t >= b->t_measure) {
            if (lag > interval)
                b->late++;
            if (b->lag_len == b->lag_size) {
                b->lag_size = b->lag_size ? b->lag_size * 2 : 1 << 16;
                b->lag = xrealloc(b->lag, b->lag_size * sizeof *b->lag);
            }
            b->lag[b->lag_len++] = lag > UINT32_MAX ? UINT32_MAX : (uint32_t) lag;
        }
        /* Behind by more than an interval: late, and no burst to catch up. */
        b->next_due += interval;
        if (b->next_due < t)
            b->next_due = t + interval;
        now = t;
    }
    if (!b->stopping && b->next_due != b->t_armed) {
        struct itimerspec its;

        /* Due already (all connections busy): no timer, a reply wakes us. */
        memset(&its, 0, sizeof its);
        if (b->next_due > now) {
            its.it_value.tv_sec = (time_t) (b->next_due / 1000000000ULL);
            its.it_value.tv_nsec = (long) (b->next_due % 1000000000ULL);
        }
        if (timerfd_settime(b->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
            log_fatal("timerfd_settime: %s", strerror(errno));
        b->t_armed = b->next_due;
    }
}

/* bench_run - the event loop; returns 0 or -1 */
static int bench_run(BENCH *b)
{
    struct epoll_event evs[256];
    uint64_t last_progress;
    int cursor = 0;

    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0)
        log_fatal("epoll_create1: %s", strerror(errno));
    b->conns = xcalloc((size_t) b->nconn, sizeof *b->conns);
    for (int i = 0; i < b->nconn; i++) {
        BENCH_CONN *c = &b->conns[i];
        struct epoll_event ev;

        c->fd = bench_connect(b->sock);
        c->t_due = xcalloc((size_t) b->depth, sizeof *c->t_due);
        c->key = xcalloc((size_t) b->depth, sizeof *c->key);
        c->measured = xcalloc((size_t) b->depth, 1);
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            log_fatal("epoll_ctl: %s", strerror(errno));
    }

    b->t_start = bench_now();
    b->t_measure = b->t_start + (uint64_t) (b->warmup * 1e9);
    b->t_stop = b->t_measure + (uint64_t) (b->seconds * 1e9);
    last_progress = b->t_start;
    b->tfd = -1;
    if (b->sleepy) {
        struct epoll_event ev;

        b->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (b->tfd < 0)
            log_fatal("timerfd_create: %s", strerror(errno));
        ev.events = EPOLLIN;
        ev.data.ptr = NULL;     /* the timer, not a connection */
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->tfd, &ev) < 0)
            log_fatal("epoll_ctl: %s", strerror(errno));
        b->next_due = b->t_start;
        bench_pace_sleep(b, b->t_start, &cursor);
    }
    if (b->rate <= 0) {
        for (int i = 0; i < b->nconn && !b->failed; i++) {
            BENCH_CONN *c = &b->conns[i];

            while ((int) c->count < b->depth && bench_may_send(b, b->t_start))
                bench_send(b, c, bench_now());
            if (bench_flush(b, c) < 0)
                b->failed = 1;
        }
    }

    while (!b->failed && (!b->stopping || b->outstanding > 0)) {
        int timeout = 100;
        uint64_t now;

        /*
         * Paced runs poll without sleeping, as the next request is due in
         * microseconds; only a slow rate lets them sleep until then.
         */
        if (b->rate > 0 && !b->stopping && !b->sleepy) {
            uint64_t next = b->t_start + (uint64_t) ((double) b->issued * 1e9 / b->rate);

            now = bench_now();
            timeout = next > now + 2000000 ? (int) ((next - now) / 1000000 - 1) : 0;
            if (timeout > 100)
                timeout = 100;
        }
        int n = epoll_wait(b->epfd, evs, 256, timeout);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_fatal("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n && !b->failed; i++) {
            BENCH_CONN *c = evs[i].data.ptr;
            int got = 0;

            if (c == NULL) {    /* -P: the timer fired; clear it */
                uint64_t ticks;

                if (read(b->tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                    log_fatal("read timerfd: %s", strerror(errno));
                b->t_armed = 0;
                continue;
            }
            if ((evs[i].events & EPOLLOUT) && bench_flush(b, c) < 0) {
                b->failed = 1;
                break;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (bench_read(b, c, &got) < 0) {
                    b->failed = 1;
                    break;
                }
            }
            if (got > 0 && b->rate <= 0) {
                now = bench_now();
                while ((int) c->count < b->depth && bench_may_send(b, now))
                    bench_send(b, c, now);
                if (bench_flush(b, c) < 0)
                    b->failed = 1;
            }
            if (got > 0)
                last_progress = b->t_last_reply ? b->t_last_reply : bench_now();
        }
        now = bench_now();
        if (b->sleepy)
            bench_pace_sleep(b, now, &cursor);
        else if (b->rate > 0)
            bench_pace(b, now, &cursor);
        else
            (void) bench_may_send(b, now);
        if (b->outstanding > 0 && now - last_progress > BENCH_STALL_NS) {
            fprintf(stderr, "bench_lookup: no reply for 10 s with %lld request(s) outstanding\n",
                    b->outstanding);
            b->failed = 1;
        }
        if (b->stopping && now - b->t_stop > BENCH_DRAIN_NS && b->total == 0) {
            fprintf(stderr, "bench_lookup: %lld request(s) still unanswered 10 s after the end\n",
                    b->outstanding);
            b->failed = 1;
        }
    }
    for (int i = 0; i < b->nconn; i++)
        close(b->conns[i].fd);
    if (b->tfd >= 0)
        close(b->tfd);
    close(b->epfd);
    return b->failed ? -1 : 0;
}

/* bench_cmp_u32 - qsort order for latencies */
static int bench_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

    return (x > y) - (x < y);
}

/* bench_quantile - the q-quantile of n sorted nanoseconds, in microseconds */
static double bench_quantile(const uint32_t *v, size_t n, double q)
{
    size_t i;

    if (n == 0)
        return 0;
    i = (size_t) (q * (double) n);
    if (i >= n)
        i = n - 1;
    return v[i] / 1000.0;
}

/* bench_pct - the q-quantile of the sorted latencies, in microseconds */
static double bench_pct(const BENCH *b, double q)
{
    return bench_quantile(b->lat, b->lat_len, q);
}

/* bench_latfile - -L: write each measured reply's send time and latency */
static void bench_latfile(const BENCH *b)
{
    FILE *fp = fopen(b->latfile, "w");

    if (fp == NULL)
        log_fatal("open %s: %s", b->latfile, strerror(errno));
    for (size_t i = 0; i < b->lat_len; i++)
        fprintf(fp, "%u %.1f\n", b->lat_at[i], b->lat[i] / 1000.0);
    if (fclose(fp) != 0)
        log_fatal("write %s: %s", b->latfile, strerror(errno));
}

/* bench_report - print the figures, for people and for run.sh */
static void bench_report(BENCH *b)
{
    uint64_t end = b->t_last_reply > b->t_measure ? b->t_last_reply : b->t_measure;
    double secs = (double) (end - b->t_measure) / 1e9;
    double rps = secs > 0 ? (double) b->replies_measured / secs : 0;
    double wall = (double) (bench_now() - b->t_start) / 1e9;
    double mean = 0;
    struct rusage ru;
    double cpu;

    getrusage(RUSAGE_SELF, &ru);
    cpu = (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
        + (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    for (size_t i = 0; i < b->lat_len; i++)
        mean += b->lat[i];
    if (b->lat_len > 0)
        mean /= (double) b->lat_len * 1000.0;
    if (b->latfile != NULL)
        bench_latfile(b);       /* before the sort loses the order */
    qsort(b->lat, b->lat_len, sizeof *b->lat, bench_cmp_u32);
    if (b->lag_len > 0)
        qsort(b->lag, b->lag_len, sizeof *b->lag, bench_cmp_u32);

    printf("bench_lookup: %s, %s %s, %d connection(s), depth %d, %s\n",
           b->sock, b->resp ? "redis" : "map", b->resp ? "GET" : b->map, b->nconn, b->depth,
           b->sleepy ? "paced, sleeping, latency from each write"
           : b->rate > 0 ? "paced, latency from each due time" : "as fast as answered");
    if (b->rate > 0)
        printf("  target rate   %.0f/s\n", b->rate);
    if (b->sleepy)
        printf("  sends         %zu measured, late %lld (> %.0f us after due);"
               " lag p50 %.1f  p99 %.1f  max %.1f us\n", b->lag_len, b->late, 1e6 / b->rate,
               bench_quantile(b->lag, b->lag_len, 0.50), bench_quantile(b->lag, b->lag_len, 0.99),
               b->lag_len ? b->lag[b->lag_len - 1] / 1000.0 : 0);
    printf("  lookups       %lld in %.3f s = %.0f lookups/s\n",
           b->replies_measured, secs, rps);
    printf("  replies       OK %lld, NOTFOUND %lld, other %lld, hit/miss mismatch %lld\n",
           b->ok, b->notfound, b->other, b->mismatch);
    printf("  latency (us)  mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
           mean, bench_pct(b, 0.50), bench_pct(b, 0.90), bench_pct(b, 0.99),
           bench_pct(b, 0.999), b->lat_len ? b->lat[b->lat_len - 1] / 1000.0 : 0);
    printf("  client cpu    %.0f%% of one core\n", wall > 0 ? 100 * cpu / wall : 0);
    printf("RESULT conns=%d depth=%d requests=%lld seconds=%.3f rps=%.0f p50_us=%.1f p99_us=%.1f"
           " ok=%lld notfound=%lld other=%lld mismatch=%lld client_cpu=%.0f",
           b->nconn, b->depth, b->replies_measured, secs, rps, bench_pct(b, 0.50),
           bench_pct(b, 0.99), b->ok, b->notfound, b->other, b->mismatch,
           wall > 0 ? 100 * cpu / wall : 0);
    if (b->sleepy)
        printf(" late=%lld lag_p99_us=%.1f", b->late, bench_quantile(b->lag, b->lag_len, 0.99));
    printf("\n");
    fflush(stdout);
}

/* bench_num - parse a non-negative number option or die with usage */
static double bench_num(const char *s, double min, double max)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        bench_usage();
    return v;
}

/* main - parse the options, run, report */
int main(int argc, char **argv)
{
    BENCH b;
    const char *pattern = "user%06d@bench.example";
    const char *keyfile = NULL;
    int have_n = 0, have_t = 0;
    int ch;

    log_init("bench_lookup", 1, 0);
    memset(&b, 0, sizeof b);
    b.map = "recipients";
    b.nconn = 16;
    b.depth = 1;
    b.seconds = 5;
    b.hit_pct = 50;
    b.nkeys = 1000000;
    b.rng = 0x9E3779B97F4A7C15ULL;

    while ((ch = getopt(argc, argv, "s:c:d:n:t:w:r:k:p:N:h:m:aRPS:L:")) != -1) {
        switch (ch) {
        case 's': b.sock = optarg; break;
        case 'c': b.nconn = (int) bench_num(optarg, 1, 10000); break;
        case 'd': b.depth = (int) bench_num(optarg, 1, 10000); break;
        case 'n': b.total = (long long) bench_num(optarg, 1, 1e12); have_n = 1; break;
        case 't': b.seconds = bench_num(optarg, 0.001, 86400); have_t = 1; break;
        case 'w': b.warmup = bench_num(optarg, 0, 3600); break;
        case 'r': b.rate = bench_num(optarg, 0, 1e9); break;
        case 'k': keyfile = optarg; break;
        case 'p': pattern = optarg; break;
        case 'N': b.nkeys = (long long) bench_num(optarg, 1, 1e12); break;
        case 'h': b.hit_pct = (int) bench_num(optarg, 0, 100); break;
        case 'm': b.map = optarg; break;
        case 'a': b.any_answer = 1; break;
        case 'R': b.resp = 1; break;
        case 'P': b.sleepy = 1; break;
        case 'L': b.latfile = optarg; break;
        case 'S': b.rng = (uint64_t) bench_num(optarg, 1, 1e18); break;
        default: bench_usage();
        }
    }
    if (b.sock == NULL || optind != argc || (have_n && have_t) || (b.sleepy && b.rate <= 0))
        bench_usage();
    if (strlen(b.map) > 64)
        bench_usage();
    if (keyfile != NULL)
        bench_keyfile(&b, keyfile);
    else if (bench_pattern(&b, pattern) < 0) {
        fprintf(stderr, "bench_lookup: -p wants one %%d or %%0Wd: %s\n", pattern);
        bench_usage();
    }
    if (have_n)
        b.seconds = 0;
    /* Replies to a closed peer must be an error we see, not a signal. */
    signal(SIGPIPE, SIG_IGN);

    int rc = bench_run(&b);

    bench_report(&b);
    if (b.other > 0 || (!b.any_answer && b.mismatch > 0))
        rc = -1;
    for (long long i = 0; b.keys != NULL && i < b.nkeys; i++)
        free(b.keys[i]);
    free(b.keys);
    free(b.pat_pre);
    free(b.pat_suf);
    free(b.lat);
    free(b.lag);
    free(b.lat_at);
    if (b.conns != NULL) {
        for (int i = 0; i < b.nconn; i++) {
            free(b.conns[i].in);
            free(b.conns[i].out);
            free(b.conns[i].t_due);
            free(b.conns[i].key);
            free(b.conns[i].measured);
        }
        free(b.conns);
    }
    return rc < 0 ? 1 : 0;
}
