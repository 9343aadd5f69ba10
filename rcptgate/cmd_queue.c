/*
 * cmd_queue.c - rcptgate queue: list and manage rcptgate-smtpd's mail queue
 *
 *   rcptgate queue list                      like mailq
 *   rcptgate queue show ID                   envelope, states, reasons, headers
 *   rcptgate queue flush [ID|DOMAIN]         due now, and wake smtpd (postqueue -f / -s / -i)
 *   rcptgate queue hold ID...|ALL|-          like postsuper -h
 *   rcptgate queue release ID...|ALL|-       like postsuper -H
 *   rcptgate queue delete ID...|ALL|-        like postsuper -d
 *
 * The spool is [smtpd] queue_directory. Everything here is safe while
 * smtpd runs: it only renames, unlinks and sets times (lib/spool.c), so
 * run as root it creates no file and every file stays smtpd's; it opens
 * the spool without creating it and says so when it is missing. Nothing
 * is loaded for the whole queue: spool_scan() walks a directory and each
 * message is read on its own, so a queue of 100,000 lists in constant
 * memory. What a client sent (addresses, HELO, reasons, headers) is shown
 * through printable(), so it cannot forge lines or drive the terminal.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "params_smtpd.h"
#include "paths.h"
#include "printable.h"
#include "rcptgate.h"
#include "spool.h"
#include "xalloc.h"

#define QUEUE_HEADERS_MAX   65536       /* header bytes `show` prints at most */

/*
 * queue_open - the configured spool, never created; NULL after saying
 * why. Run as root, it is opened as [smtpd] user: the spool is that
 * user's, the user the Internet-facing daemon runs as, and root acting in
 * it would follow whatever that user put there (a deferred/ made a link
 * to another directory: root's `queue delete ALL` would empty it).
 */
static SPOOL *queue_open(void)
{
    char err[1200];
    SPOOL *sp;
    PATHS *pl = paths_create();
    int rc = paths_act_as(pl, var_smtpd_user, "smtpd");

    paths_free(pl);
    if (rc < 0)
        return NULL;
    if ((sp = spool_open(var_smtpd_queue_dir, 0, err, sizeof(err))) == NULL) {
        if (strstr(err, "does not exist") != NULL)
            rcptgate_error("%s: rcptgate-smtpd makes it when it starts with relay_mode queue or "
                           "proxy-then-queue ([smtpd] queue_directory in %s)", err, rcptgate_conf_path);
        else
            rcptgate_error("%s", err);
    }
    return sp;
}

/* queue_safe - a copy of s fit for a terminal (the caller frees) */
static char *queue_safe(const char *s)
{
    return printable(xstrdup(s ? s : ""), '?');
}

/* queue_print - one line "prefix value" with value made printable */
static void queue_print(const char *prefix, const char *value)
{
    char *v = queue_safe(value);

    printf("%s%s\n", prefix, v);
    free(v);
}

/* queue_state_name - a recipient state for people */
static const char *queue_state_name(char st)
{
    switch (st) {
    case SPOOL_RCPT_TODO:
        return "pending";
    case SPOOL_RCPT_DONE:
        return "delivered";
    case SPOOL_RCPT_FAILED:
        return "failed";
    default:
        return "?";
    }
}

/* ------------------------------------------------------------ list */

typedef struct queue_list {
    SPOOL *sp;
    const char *queue;
    long long bytes;
    long long count;
    int errors;
} QUEUE_LIST;

/* queue_list_cb - one message, as mailq shows it */
static int queue_list_cb(void *arg, const char *id, long long mtime, long long size)
{
    QUEUE_LIST *ql = arg;
    SPOOL_ENV env;
    char err[1024], when[64];
    const char *last_reason = NULL;
    time_t t;
    struct tm tm;
    int rc;

    (void) mtime;
    (void) size;
    rc = spool_load(ql->sp, ql->queue, id, &env, NULL, err, sizeof(err));
    if (rc == 1)
        return 0;                       /* delivered, moved or deleted meanwhile */
    if (rc < 0) {
        rcptgate_error("%s/%s: %s", spool_dir(ql->sp), ql->queue, err);
        ql->errors++;
        return 0;
    }
    if (ql->count == 0)
        printf("%-24s %8s %-20s  %s\n", "-Queue ID-", "--Size--", "----Arrival Time----",
               "-Sender/Recipient-------");
    t = (time_t) env.arrival;
    if (localtime_r(&t, &tm) == NULL || strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm) == 0)
        snprintf(when, sizeof(when), "%lld", env.arrival);
    {
        char *sender = queue_safe(env.sender[0] ? env.sender : "MAILER-DAEMON");

        printf("%-23s%c %8lld %-20s  %s\n", id, strcmp(ql->queue, SPOOL_HOLD) == 0 ? '!' : ' ', env.size,
               when, sender);
        free(sender);
    }
    for (size_t i = 0; i < env.nrcpt; i++) {
        const SPOOL_RCPT *r = &env.rcpt[i];

        if (r->state != SPOOL_RCPT_TODO)
            continue;
        /* the reason once for a run of recipients with the same one, as mailq does */
        if (r->reason != NULL && (last_reason == NULL || strcmp(last_reason, r->reason) != 0)) {
            char *why = queue_safe(r->reason);

            printf("%*s(%s)\n", 42, "", why);
            free(why);
            last_reason = r->reason;
        }
        {
            char *to = queue_safe(r->addr);

            printf("%*s%s\n", 42, "", to);
            free(to);
        }
    }
    putchar('\n');
    ql->bytes += env.size;
    ql->count++;
    spool_env_free(&env);
    return 0;
}

/* queue_list - rcptgate queue list */
static int queue_list(SPOOL *sp)
{
    QUEUE_LIST ql = {.sp = sp};
    static const char *const queues[] = {SPOOL_DEFERRED, SPOOL_HOLD};

    for (int i = 0; i < 2; i++) {
        ql.queue = queues[i];
        if (spool_scan(sp, queues[i], queue_list_cb, &ql) < 0) {
            rcptgate_error("cannot read %s/%s: %s", spool_dir(sp), queues[i], strerror(errno));
            return RCPTGATE_EX_STORE;
        }
    }
    if (ql.count == 0)
        printf("Mail queue is empty\n");
    else
        printf("-- %lld Kbytes in %lld Request%s.\n", (ql.bytes + 1023) / 1024, ql.count, ql.count == 1 ? "" : "s");
    return ql.errors ? RCPTGATE_EX_STORE : RCPTGATE_EX_OK;
}

/* ------------------------------------------------------------ show */

/* queue_show_headers - the message's header lines from fd (dots unstuffed), at most QUEUE_HEADERS_MAX bytes */
static void queue_show_headers(int fd)
{
    char *buf = xmalloc(QUEUE_HEADERS_MAX + 1);
    size_t len = 0;
    ssize_t n;

    while (len < QUEUE_HEADERS_MAX && (n = read(fd, buf + len, QUEUE_HEADERS_MAX - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t) n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL || strncmp(buf, "\r\n", 2) == 0)
            break;
    }
    buf[len] = '\0';
    printf("-- headers\n");
    for (char *p = buf; *p != '\0';) {
        char *eol = strstr(p, "\r\n");

        if (eol == NULL) {
            if (len == QUEUE_HEADERS_MAX)
                printf("(more headers not shown)\n");
            break;
        }
        if (eol == p)
            break;                      /* the blank line: the body follows */
        *eol = '\0';
        if (*p == '.')
            p++;                        /* dot-stuffed on the wire */
        queue_print("", p);
        p = eol + 2;
    }
    free(buf);
}

/* queue_show - rcptgate queue show ID */
static int queue_show(SPOOL *sp, const char *id)
{
    SPOOL_ENV env;
    const char *queue;
    char err[1024], t1[64], t2[64];
    long long now = (long long) time(NULL);
    int fd = -1, rc;

    if (!spool_id_valid(id)) {
        rcptgate_error("\"%.60s\": not a queue id", id);
        return RCPTGATE_EX_NOTFOUND;
    }
    if ((queue = spool_find(sp, id)) == NULL
        || (rc = spool_load(sp, queue, id, &env, &fd, err, sizeof(err))) == 1) {
        rcptgate_error("%s: no such message in the queue", id);
        return RCPTGATE_EX_NOTFOUND;
    }
    if (rc < 0) {
        rcptgate_error("%s/%s: %s", spool_dir(sp), queue, err);
        return RCPTGATE_EX_STORE;
    }
    printf("id: %s\n", id);
    printf("queue: %s\n", queue);
    printf("arrival: %s (%lld s ago)\n", rcptgate_time(env.arrival, t1, sizeof(t1)), now - env.arrival);
    if (strcmp(queue, SPOOL_HOLD) == 0)
        printf("next try: none, held (rcptgate queue release %s)\n", id);
    else if (env.next_try <= now)
        printf("next try: now (due since %s)\n", rcptgate_time(env.next_try, t2, sizeof(t2)));
    else
        printf("next try: %s (in %lld s)\n", rcptgate_time(env.next_try, t2, sizeof(t2)), env.next_try - now);
    printf("attempts: %d\n", env.attempts);
    printf("size: %lld\n", env.size);
    queue_print("sender: ", env.sender[0] ? env.sender : "<>");
    if (env.mail_params[0])
        queue_print("parameters: ", env.mail_params);
    if (env.envid != NULL)
        queue_print("envid: ", env.envid);
    printf("ret: %s\n", env.ret == SPOOL_RET_FULL ? "FULL" : env.ret == SPOOL_RET_HDRS ? "HDRS" : "default");
    printf("kind: %s\n", env.dsn_kind ? "delivery status notification" : "message");
    printf("delay warning sent: %s\n", env.warned ? "yes" : "no");
    {
        char *name = queue_safe(env.client.name), *addr = queue_safe(env.client.addr);
        char *helo = queue_safe(env.client.helo), *proto = queue_safe(env.client.proto);
        char *login = queue_safe(env.client.login);

        printf("client: %s[%s]:%d helo=%s proto=%s%s%s\n", name, addr, env.client.port,
               env.client.helo ? helo : "(none)", proto, env.client.login ? " login=" : "",
               env.client.login ? login : "");
        free(name);
        free(addr);
        free(helo);
        free(proto);
        free(login);
    }
    for (size_t i = 0; i < env.nrcpt; i++) {
        const SPOOL_RCPT *r = &env.rcpt[i];
        char *to = queue_safe(r->addr), *orcpt = queue_safe(r->orcpt);
        char notify[64] = "";

        if (r->notify & SPOOL_NOTIFY_NEVER)
            snprintf(notify, sizeof(notify), "NEVER");
        else if (r->notify)
            snprintf(notify, sizeof(notify), "%s%s%s", r->notify & SPOOL_NOTIFY_SUCCESS ? "SUCCESS," : "",
                     r->notify & SPOOL_NOTIFY_FAILURE ? "FAILURE," : "",
                     r->notify & SPOOL_NOTIFY_DELAY ? "DELAY," : "");
        if (notify[0] && notify[strlen(notify) - 1] == ',')
            notify[strlen(notify) - 1] = '\0';
        printf("recipient: %s %s%s%s%s%s\n", to, queue_state_name(r->state), notify[0] ? " notify=" : "", notify,
               r->orcpt ? " orcpt=" : "", r->orcpt ? orcpt : "");
        free(to);
        free(orcpt);
        if (r->dsn != NULL || r->reason != NULL) {
            char *dsn = queue_safe(r->dsn ? r->dsn : "-"), *why = queue_safe(r->reason ? r->reason : "");

            printf("  last: dsn=%s (%s)\n", dsn, why);
            free(dsn);
            free(why);
        }
    }
    if (fd >= 0) {
        queue_show_headers(fd);
        close(fd);
    }
    spool_env_free(&env);
    return RCPTGATE_EX_OK;
}

/* ------------------------------------------------------------ flush */

typedef struct queue_act {
    SPOOL *sp;
    const char *domain;                 /* flush DOMAIN: lower case, no '@' */
    long long now;
    long long done, gone;
    int errors;
    int action;                         /* QUEUE_HOLD, ... */
} QUEUE_ACT;

/* queue_domain_match - has env a pending recipient in domain? */
static int queue_domain_match(const SPOOL_ENV *env, const char *domain)
{
    for (size_t i = 0; i < env->nrcpt; i++) {
        const char *at;

        if (env->rcpt[i].state != SPOOL_RCPT_TODO || (at = strrchr(env->rcpt[i].addr, '@')) == NULL)
            continue;
        if (strcasecmp(at + 1, domain) == 0)
            return 1;
    }
    return 0;
}

/* queue_flush_cb - one deferred message due now (in domain, if one was given) */
static int queue_flush_cb(void *arg, const char *id, long long mtime, long long size)
{
    QUEUE_ACT *qa = arg;
    int rc;

    (void) mtime;
    (void) size;
    if (qa->domain != NULL) {
        SPOOL_ENV env;
        char err[1024];
        int match;

        rc = spool_load(qa->sp, SPOOL_DEFERRED, id, &env, NULL, err, sizeof(err));
        if (rc == 1)
            return 0;
        if (rc < 0) {
            rcptgate_error("%s/%s: %s", spool_dir(qa->sp), SPOOL_DEFERRED, err);
            qa->errors++;
            return 0;
        }
        match = queue_domain_match(&env, qa->domain);
        spool_env_free(&env);
        if (!match)
            return 0;
    }
    rc = spool_retry_at(qa->sp, id, qa->now);
    if (rc == 0)
        qa->done++;
    else if (rc < 0) {
        rcptgate_error("%s: %s", id, strerror(errno));
        qa->errors++;
    }
    return 0;
}

/* queue_flush - rcptgate queue flush [ID|DOMAIN] */
static int queue_flush(SPOOL *sp, const char *what)
{
    QUEUE_ACT qa = {.sp = sp, .now = (long long) time(NULL)};
    char domain[256];
    int rc;

    if (what != NULL && spool_id_valid(what)) {
        const char *where = spool_find(sp, what);

        if (where != NULL && strcmp(where, SPOOL_HOLD) == 0) {
            rcptgate_error("%s: on hold: rcptgate queue release %s", what, what);
            return RCPTGATE_EX_NOTFOUND;
        }
        if (where == NULL || (rc = spool_retry_at(sp, what, qa.now)) == 1) {
            rcptgate_error("%s: no such message in the queue", what);
            return RCPTGATE_EX_NOTFOUND;
        }
        if (rc < 0) {
            rcptgate_error("%s: %s", what, strerror(errno));
            return RCPTGATE_EX_STORE;
        }
        qa.done = 1;
    } else {
        if (what != NULL) {
            size_t n = 0;

            if (*what == '@')
                what++;
            for (; what[n] != '\0' && n + 1 < sizeof(domain); n++) {
                unsigned char c = (unsigned char) what[n];

                if (c <= ' ' || c == 0x7f || c == '@' || c == '/') {
                    rcptgate_error("\"%.100s\": neither a queue id nor a domain", what);
                    return RCPTGATE_EX_NOTFOUND;
                }
                domain[n] = (char) tolower(c);
            }
            domain[n] = '\0';
            if (n == 0 || what[n] != '\0') {
                rcptgate_error("\"%.100s\": neither a queue id nor a domain", what);
                return RCPTGATE_EX_NOTFOUND;
            }
            qa.domain = domain;
        }
        if (spool_scan(sp, SPOOL_DEFERRED, queue_flush_cb, &qa) < 0) {
            rcptgate_error("cannot read %s/%s: %s", spool_dir(sp), SPOOL_DEFERRED, strerror(errno));
            return RCPTGATE_EX_STORE;
        }
    }
    if (rcptgate_verbose || qa.domain != NULL)
        fprintf(stderr, "rcptgate: %lld message%s due now\n", qa.done, qa.done == 1 ? "" : "s");
    if (spool_trigger(spool_dir(sp)) < 0) {
        rcptgate_error("rcptgate-smtpd does not read %s/trigger (%s): it is not running, or not queueing; "
                       "the messages are due and go out when it runs", spool_dir(sp),
                       errno == ENXIO ? "no reader" : strerror(errno));
        return RCPTGATE_EX_UNAVAILABLE;
    }
    return qa.errors ? RCPTGATE_EX_STORE : RCPTGATE_EX_OK;
}

/* ------------------------------------------------------------ hold, release, delete */

#define QUEUE_HOLD      1
#define QUEUE_RELEASE   2
#define QUEUE_DELETE    3

/* queue_act_one - act on one id: 0 done, 1 not there, -1 error (said) */
static int queue_act_one(QUEUE_ACT *qa, const char *id)
{
    int rc;

    switch (qa->action) {
    case QUEUE_HOLD:
        rc = spool_hold(qa->sp, id);
        break;
    case QUEUE_RELEASE:
        rc = spool_release(qa->sp, id);
        break;
    default:
        rc = spool_remove(qa->sp, id);
        break;
    }
    if (rc == 0)
        qa->done++;
    else if (rc == 1)
        qa->gone++;
    else {
        rcptgate_error("%s: %s", id, strerror(errno));
        qa->errors++;
    }
    return rc;
}

/* queue_act_cb - ALL: every message of the queue scanned */
static int queue_act_cb(void *arg, const char *id, long long mtime, long long size)
{
    (void) mtime;
    (void) size;
    queue_act_one(arg, id);
    return 0;
}

/* queue_act_id - one id from the command line or stdin */
static void queue_act_id(QUEUE_ACT *qa, const char *id, int *notfound)
{
    if (!spool_id_valid(id)) {
        rcptgate_error("\"%.60s\": not a queue id", id);
        (*notfound)++;
        return;
    }
    if (qa->action == QUEUE_HOLD && spool_find(qa->sp, id) != NULL
        && strcmp(spool_find(qa->sp, id), SPOOL_HOLD) == 0) {
        rcptgate_error("%s: already on hold", id);
        return;
    }
    if (queue_act_one(qa, id) == 1) {
        rcptgate_error("%s: no such message %s", id, qa->action == QUEUE_HOLD ? "in deferred/"
                       : qa->action == QUEUE_RELEASE ? "on hold" : "in the queue");
        (*notfound)++;
    }
}

/* queue_act - hold, release or delete: ID..., ALL, or - (ids on stdin) */
static int queue_act(SPOOL *sp, int action, int argc, char **argv)
{
    QUEUE_ACT qa = {.sp = sp, .action = action};
    static const char *const verb[] = {"", "held", "released", "deleted"};
    int notfound = 0;

    if (argc == 1 && strcmp(argv[0], "ALL") == 0) {
        /* one directory sync at the end instead of one per message */
        spool_set_batch(sp, 1);
        if (action != QUEUE_RELEASE && spool_scan(sp, SPOOL_DEFERRED, queue_act_cb, &qa) < 0)
            qa.errors++;
        if (action != QUEUE_HOLD && spool_scan(sp, SPOOL_HOLD, queue_act_cb, &qa) < 0)
            qa.errors++;
        if (spool_sync(sp) < 0)
            qa.errors++;
    } else if (argc == 1 && strcmp(argv[0], "-") == 0) {
        char *line = NULL;
        size_t cap = 0;

        spool_set_batch(sp, 1);
        /*
         * Whole lines, however long (a cut one's rest would be read as
         * another id). The first word of a line of queue list will do:
         * its indented recipient lines and its "-Queue ID-" head and
         * "-- N Kbytes" foot name no message.
         */
        while (getline(&line, &cap, stdin) >= 0) {
            line[strcspn(line, " \t\r\n")] = '\0';
            if (line[0] == '-')
                continue;
            /* drop a held message's '!' */
            if (line[0] != '\0' && line[strlen(line) - 1] == '!')
                line[strlen(line) - 1] = '\0';
            if (line[0] != '\0')
                queue_act_id(&qa, line, &notfound);
        }
        free(line);
        if (spool_sync(sp) < 0)
            qa.errors++;
    } else {
        for (int i = 0; i < argc; i++)
            queue_act_id(&qa, argv[i], &notfound);
    }
    fprintf(stderr, "rcptgate: %s %lld message%s\n", verb[action], qa.done, qa.done == 1 ? "" : "s");
    /* released messages are due now: wake smtpd if it listens (if not, they wait for it) */
    if (action == QUEUE_RELEASE && qa.done > 0)
        (void) spool_trigger(spool_dir(sp));
    if (qa.errors)
        return RCPTGATE_EX_STORE;
    return notfound ? RCPTGATE_EX_NOTFOUND : RCPTGATE_EX_OK;
}

/* ------------------------------------------------------------ the subcommand */

/* queue_usage - the queue subcommand's own usage */
static int queue_usage(void)
{
    fputs("usage: rcptgate queue list\n"
          "       rcptgate queue show ID\n"
          "       rcptgate queue flush [ID|DOMAIN]\n"
          "       rcptgate queue hold ID...|ALL|-\n"
          "       rcptgate queue release ID...|ALL|-\n"
          "       rcptgate queue delete ID...|ALL|-\n", stderr);
    return RG_EX_USAGE;
}

/* cmd_queue - rcptgate queue */
int cmd_queue(int argc, char **argv)
{
    const char *sub = argc >= 2 ? argv[1] : "";
    SPOOL *sp;
    int rc;

    if (strcmp(sub, "list") == 0 ? argc != 2
        : strcmp(sub, "show") == 0 ? argc != 3
        : strcmp(sub, "flush") == 0 ? argc > 3
        : (strcmp(sub, "hold") == 0 || strcmp(sub, "release") == 0 || strcmp(sub, "delete") == 0) ? argc < 3
        : 1)
        return queue_usage();
    if ((sp = queue_open()) == NULL)
        return RCPTGATE_EX_STORE;
    if (strcmp(sub, "list") == 0)
        rc = queue_list(sp);
    else if (strcmp(sub, "show") == 0)
        rc = queue_show(sp, argv[2]);
    else if (strcmp(sub, "flush") == 0)
        rc = queue_flush(sp, argc == 3 ? argv[2] : NULL);
    else
        rc = queue_act(sp, strcmp(sub, "hold") == 0 ? QUEUE_HOLD : strcmp(sub, "release") == 0 ? QUEUE_RELEASE
                       : QUEUE_DELETE, argc - 2, argv + 2);
    if (fflush(stdout) != 0 && rc == RCPTGATE_EX_OK)
        rc = RCPTGATE_EX_STORE;
    spool_close(sp);
    return rc;
}
