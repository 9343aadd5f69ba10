/*
 * fuzz_lookupd.c - libFuzzer target: rcptgate-lookupd's client connections
 *
 * Drives lookupd/lookupd.c's connection loop (read into the fixed input
 * buffer, hand complete requests to the protocol, keep the rest, write
 * the replies, back-pressure, end of file) with sockmap.c or policyd.c
 * behind it, the way Postfix's bytes arrive: on a real socket (one end of
 * a socketpair), cut into writes by the chunk plan (fuzz_common.h), the
 * loop run until quiet after each write. The byte after the plan picks
 * the protocol: even socketmap, odd policy. Lookups go to a real store
 * made at start (fuzz_common.c).
 *
 * lookupd.c is included here, its main renamed: the loop's functions are
 * static, and the loop is what the bytes meet first.
 *
 * Checked: every socketmap reply is a netstring whose payload is "OK ",
 * "NOTFOUND", "TEMP " or "PERM " and printable; every policy reply is
 * "action=" printable text and an empty line; log lines are printable;
 * once the client has gone the connection is freed.
 */
#include "config.h"

int lookupd_main(int argc, char **argv);
#define main lookupd_main
#include "../../lookupd/lookupd.c"
#undef main

#include <fcntl.h>
#include <sys/socket.h>

#include "netstring.h"
#include "fuzz_common.h"

static long fuzz_activity;
static int fuzz_trace;

/* fuzz_init - config, store, event base: once per process */
static void fuzz_init(void)
{
    static int done;
    char *store, *conf;

    if (done)
        return;
    done = 1;
    signal(SIGPIPE, SIG_IGN);
    fuzz_quiet("fuzz_lookupd");
    fuzz_trace = getenv("FUZZ_TRACE") != NULL;
    store = fuzz_store("smtp:[10.0.0.5]:25");
    conf = xasprintf("[store]\npath = %s\n[lookupd]\nuser =\n", store);
    fuzz_config(conf, params_sections_for("lookupd"));
    free(conf);
    free(store);
    lookupd_base = event_base_new();
    fuzz_check(lookupd_base != NULL);
    lookupd_apply();
}

/* What the client has read and not yet checked. */
static char fuzz_out[65536];
static size_t fuzz_out_len;

/* fuzz_printable - len bytes of printable ASCII */
static int fuzz_printable(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) p[i] < 0x20 || (unsigned char) p[i] >= 0x7f)
            return 0;
    return 1;
}

/* fuzz_sockmap_replies - whole netstrings off the front of fuzz_out; bytes used */
static size_t fuzz_sockmap_replies(void)
{
    size_t pos = 0;

    for (;;) {
        const char *data, *why;
        size_t len, used;
        int rc = netstring_decode(fuzz_out + pos, fuzz_out_len - pos, SOCKMAP_REPLY_MAX + 16,
                                  &data, &len, &used, &why);

        if (rc == NETSTRING_MORE)
            return pos;
        fuzz_check(rc != NETSTRING_BAD);
        fuzz_check(len <= SOCKMAP_REPLY_MAX && fuzz_printable(data, len));
        fuzz_check((len >= 3 && memcmp(data, "OK ", 3) == 0)
                   || (len >= 8 && memcmp(data, "NOTFOUND", 8) == 0)
                   || (len >= 5 && memcmp(data, "TEMP ", 5) == 0)
                   || (len >= 5 && memcmp(data, "PERM ", 5) == 0));
        pos += used;
    }
}

/* fuzz_policy_replies - whole "action=...\n\n" replies off the front; bytes used */
static size_t fuzz_policy_replies(void)
{
    size_t pos = 0;

    for (;;) {
        const char *end = memmem(fuzz_out + pos, fuzz_out_len - pos, "\n\n", 2);
        size_t len;

        if (end == NULL)
            return pos;
        len = (size_t) (end - (fuzz_out + pos));
        fuzz_check(len > 7 && memcmp(fuzz_out + pos, "action=", 7) == 0);
        fuzz_check(fuzz_printable(fuzz_out + pos, len));
        pos += len + 2;
    }
}

/* fuzz_drain - read and check the replies */
static void fuzz_drain(int fd, int policy)
{
    for (;;) {
        ssize_t n = read(fd, fuzz_out + fuzz_out_len, sizeof(fuzz_out) - fuzz_out_len);
        size_t used;

        if (n <= 0)
            return;
        fuzz_activity++;
        if (fuzz_trace)
            fprintf(stderr, "S: %.*s\n", (int) n, fuzz_out + fuzz_out_len);
        fuzz_out_len += (size_t) n;
        used = policy ? fuzz_policy_replies() : fuzz_sockmap_replies();
        fuzz_out_len -= used;
        memmove(fuzz_out, fuzz_out + used, fuzz_out_len);
        fuzz_check(fuzz_out_len < sizeof(fuzz_out));
    }
}

/* fuzz_spin - loop rounds as lookupd's main runs them, until nothing moves */
static void fuzz_spin(int fd, int policy)
{
    int quiet = 0;

    for (int i = 0; i < 200 && quiet < 3; i++) {
        long before = fuzz_activity;

        event_base_loop(lookupd_base, EVLOOP_NONBLOCK);
        lookupd_store_end();
        if (fd >= 0)
            fuzz_drain(fd, policy);
        quiet = fuzz_activity == before ? quiet + 1 : 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    LOOKUPD_LISTENER l;
    struct sockaddr_storage ss;
    FUZZ_CHUNKS ck;
    const uint8_t *p;
    size_t len;
    int sv[2], policy;

    fuzz_init();
    if (fuzz_chunks_init(&ck, data, size) < 0 || ck.size < 1)
        return 0;
    policy = ck.data[ck.pos++] & 1;
    fuzz_check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fuzz_check(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0 && fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
    memset(&l, 0, sizeof(l));
    l.kind = policy ? LISTENER_POLICY : LISTENER_SOCKMAP;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    fuzz_out_len = 0;
    lookupd_conn_create(sv[0], &l, &ss, sizeof(sa_family_t));
    while (fuzz_chunks_next(&ck, &p, &len)) {
        size_t off = 0;

        while (off < len) {
            ssize_t n = write(sv[1], p + off, len - off);

            if (n <= 0)
                break;          /* lookupd stopped reading (back-pressure) or closed */
            off += (size_t) n;
            fuzz_activity++;
            fuzz_spin(sv[1], policy);
        }
        if (off < len)
            break;
    }
    shutdown(sv[1], SHUT_WR);
    fuzz_spin(sv[1], policy);
    close(sv[1]);
    fuzz_spin(-1, policy);
    if (lookupd_conns != NULL) {
        fprintf(stderr, "fuzz: a connection is still open after the client left\n");
        abort();
    }
    return 0;
}
