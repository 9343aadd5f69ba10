/*
 * rg_spoolput.c - put messages into an rcptgate-smtpd spool, for tests and benchmarks
 *
 *   rg_spoolput [-n COUNT] [-a AGE] [-t DELAY] [-r "DSN REASON"] [-H HELO] [-N NOTIFY] [-e ENVID]
 *               DIR SENDER RCPT... < message
 *
 * Reads one message (LF or CRLF lines) from stdin, turns it into what the
 * spool keeps (CRLF lines, dot-stuffed, no final dot) and queues it COUNT
 * times (default 1) in the spool at DIR (created if needed) through
 * spool_create/spool_write/spool_commit, the functions smtpd uses, then
 * prints each queue id on its own line. SENDER "" is the null sender.
 *
 *   -a AGE     the message arrived AGE seconds ago (its id and arrival say so)
 *   -t DELAY   next try DELAY seconds from now (default 0: due now)
 *   -r TEXT    a last deferral for every recipient: "4.4.1 connect to ...: refused"
 *              (attempts 1), as the queue manager leaves it in defer/
 *   -H HELO    the client's HELO (default mail.example.net; any bytes, for hostile tests)
 *   -N NOTIFY  the recipients' NOTIFY bits (spool.h's SPOOL_NOTIFY_*; default 0)
 *   -e ENVID   the ENVID
 *
 * Exit 0, 1 on an error (printed), 64 on bad usage.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"
#include "xalloc.h"

/* usage - the usage line, exit 64 */
static _Noreturn void usage(void)
{
    fputs("usage: rg_spoolput [-n COUNT] [-a AGE] [-t DELAY] [-r \"DSN REASON\"] [-H HELO] [-N NOTIFY] "
          "[-e ENVID] DIR SENDER RCPT... < message\n", stderr);
    exit(64);
}

/* read_message - stdin as CRLF lines, dot-stuffed; *len bytes */
static char *read_message(size_t *len)
{
    size_t size = 4096, n = 0;
    char *out = xmalloc(size);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;

    while ((got = getline(&line, &cap, stdin)) > 0) {
        size_t l = (size_t) got;

        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
            l--;
        while (n + l + 4 > size) {
            size *= 2;
            out = xrealloc(out, size);
        }
        if (l > 0 && line[0] == '.')
            out[n++] = '.';
        memcpy(out + n, line, l);
        n += l;
        out[n++] = '\r';
        out[n++] = '\n';
    }
    free(line);
    *len = n;
    return out;
}

int main(int argc, char **argv)
{
    long long count = 1, age = 0, delay = 0;
    const char *reason = NULL, *helo = "mail.example.net", *envid = NULL;
    int notify = 0, ch;
    char err[1024];
    SPOOL *sp;
    SPOOL_RCPT *r;
    size_t nrcpt, len;
    char *msg;

    while ((ch = getopt(argc, argv, "n:a:t:r:H:N:e:")) != -1) {
        switch (ch) {
        case 'n':
            count = atoll(optarg);
            break;
        case 'a':
            age = atoll(optarg);
            break;
        case 't':
            delay = atoll(optarg);
            break;
        case 'r':
            reason = optarg;
            break;
        case 'H':
            helo = optarg;
            break;
        case 'N':
            notify = atoi(optarg);
            break;
        case 'e':
            envid = optarg;
            break;
        default:
            usage();
        }
    }
    argc -= optind;
    argv += optind;
    if (argc < 3 || count < 1)
        usage();
    if ((sp = spool_open(argv[0], 1, err, sizeof(err))) == NULL) {
        fprintf(stderr, "rg_spoolput: %s\n", err);
        return 1;
    }
    nrcpt = (size_t) argc - 2;
    r = xcalloc(nrcpt, sizeof(*r));
    for (size_t i = 0; i < nrcpt; i++) {
        r[i].addr = argv[2 + i];
        r[i].state = SPOOL_RCPT_TODO;
        r[i].notify = notify;
    }
    msg = read_message(&len);
    for (long long k = 0; k < count; k++) {
        SPOOL_ENV env;
        SPOOL_FILE *f;
        long long now = (long long) time(NULL);
        char hex[9];

        memset(&env, 0, sizeof(env));
        spool_id_new(env.id);
        env.arrival = now - age;
        if (age > 0) {
            /* the id tells the arrival: its first 8 digits are that time */
            snprintf(hex, sizeof(hex), "%08llX", (unsigned long long) env.arrival & 0xffffffffULL);
            memcpy(env.id, hex, 8);
        }
        env.sender = argv[1];
        env.mail_params = "";
        env.envid = (char *) envid;
        env.client.name = "mail.example.net";
        env.client.addr = "192.0.2.25";
        env.client.port = 42424;
        env.client.helo = (char *) helo;
        env.client.proto = "ESMTP";
        env.rcpt = r;
        env.nrcpt = nrcpt;
        if ((f = spool_create(sp, &env, err, sizeof(err))) == NULL) {
            fprintf(stderr, "rg_spoolput: %s\n", err);
            return 1;
        }
        if (spool_write(f, msg, len) < 0) {
            perror("rg_spoolput: write");
            spool_abort(f);
            return 1;
        }
        if (spool_commit(f, delay ? now + delay : 0, err, sizeof(err)) < 0) {
            fprintf(stderr, "rg_spoolput: %s\n", err);
            return 1;
        }
        if (reason != NULL) {
            char dsn[32];
            const char *sp_at = strchr(reason, ' ');

            snprintf(dsn, sizeof(dsn), "%.*s", sp_at ? (int) (sp_at - reason) : 0, reason);
            for (size_t i = 0; i < nrcpt; i++) {
                r[i].dsn = dsn;
                r[i].reason = (char *) (sp_at ? sp_at + 1 : reason);
            }
            env.attempts = 1;
            if (spool_reason_save(sp, &env) < 0) {
                perror("rg_spoolput: defer reason");
                return 1;
            }
            for (size_t i = 0; i < nrcpt; i++)
                r[i].dsn = r[i].reason = NULL;
        }
        printf("%s\n", env.id);
    }
    free(msg);
    free(r);
    spool_close(sp);
    return fflush(stdout) == 0 ? 0 : 1;
}
