/*
 * test_dsn.c - unit tests for lib/dsn.c (cmocka, one TAP line per case)
 *
 * Each case queues an original message in a real spool (spool_create,
 * dot-stuffed wire bytes, spool_commit), loads it back as the queue
 * manager does, calls dsn_make() and reads the report it queued: its
 * envelope (null sender, dsn_kind 1, to the original sender) and its text,
 * unstuffed, taken apart at its MIME boundary. The checks are on the
 * parts, their types and the RFC 3464 fields, on RET, on the dot-stuffing
 * round trip, on the cases where no report is due, and on hostile values
 * (CR/LF in a reason or an ENVID must not make a header field).
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dsn.h"
#include "params_smtpd.h"
#include "spool.h"
#include "xalloc.h"

static char t_dir[] = "/tmp/rg-test-dsn-XXXXXX";
static SPOOL *t_spool;
static void (*t_tweak)(SPOOL_ENV *);  /* changes the loaded envelope before dsn_make (hostile values) */

/* an original message as the client sent it (not yet stuffed) */
static const char ORIG_HEAD[] =
    "Received: from client.example (client.example [192.0.2.1])\r\n"
    "From: Sender <sender@example.net>\r\n"
    "To: <rcpt@example.org>\r\n"
    "Subject: the original\r\n"
    "Message-ID: <orig-1@example.net>\r\n";
static const char ORIG_BODY[] =
    "first body line\r\n"
    ".a line that starts with a dot\r\n"
    "..two dots\r\n"
    ".\r\n"
    "last line\r\n";

/* T_MSG - one queued original and the report made about it */
typedef struct {
    SPOOL_ENV env;              /* loaded back from the spool, as qmgr has it */
    int fd;
    int rc;                     /* dsn_make's */
    char id[SPOOL_ID_LEN];
    char err[256];
    SPOOL_ENV denv;             /* the report's envelope */
    char *stored;               /* the report as stored (stuffed) */
    char *text;                 /* the report unstuffed */
} T_MSG;

/* t_stuff - dot-stuff text into a new string */
static char *t_stuff(const char *s)
{
    char *out = xmalloc(strlen(s) * 2 + 1), *o = out;
    int bol = 1;

    for (; *s; s++) {
        if (bol && *s == '.')
            *o++ = '.';
        *o++ = *s;
        bol = *s == '\n';
    }
    *o = '\0';
    return out;
}

/* t_unstuff - undo dot-stuffing, in place */
static void t_unstuff(char *s)
{
    char *o = s;
    int bol = 1;

    for (; *s; s++) {
        if (bol && *s == '.') {
            bol = 0;
            continue;
        }
        *o++ = *s;
        bol = *s == '\n';
    }
    *o = '\0';
}

static char *t_read_fd(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    ssize_t n;

    while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (cap - len < 2)
            buf = xrealloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    return buf;
}

/*
 * t_run - queue an original (sender, mail params, ret, envid; rcpt i has
 * addrs[i], orcpts[i], notifies[i], dsn "5.1.1" and reasons[i]; body
 * is the message), then dsn_make(kind) about every recipient.
 */
static void t_run(T_MSG *m, const char *sender, const char *params, int ret, const char *envid, int dsn_kind,
                  size_t n, const char *const *addrs, const char *const *orcpts, const int *notifies,
                  const char *const *reasons, const char *body, int kind)
{
    SPOOL_RCPT rc[8];
    SPOOL_ENV env = {
        .arrival = 1796000000, .sender = (char *)sender, .mail_params = (char *)params,
        .envid = (char *)envid, .ret = ret, .dsn_kind = dsn_kind,
        .client = {.name = "client.example", .addr = "192.0.2.1", .port = 4711, .proto = "ESMTP"},
        .nrcpt = n, .rcpt = rc,
    };
    char err[256];
    size_t idx[8];

    memset(m, 0, sizeof(*m));
    m->fd = -1;
    memset(rc, 0, sizeof(rc));
    for (size_t i = 0; i < n; i++) {
        rc[i].addr = (char *)addrs[i];
        rc[i].orcpt = orcpts ? (char *)orcpts[i] : NULL;
        rc[i].notify = notifies ? notifies[i] : 0;
        rc[i].state = SPOOL_RCPT_TODO;
        idx[i] = i;
    }
    spool_id_new(env.id);
    SPOOL_FILE *f = spool_create(t_spool, &env, err, sizeof(err));
    assert_non_null(f);
    char *wire = t_stuff(body);
    assert_int_equal(spool_write(f, wire, strlen(wire)), 0);
    free(wire);
    assert_int_equal(spool_commit(f, 0, err, sizeof(err)), 0);

    assert_int_equal(spool_load(t_spool, SPOOL_DEFERRED, env.id, &m->env, &m->fd, err, sizeof(err)), 0);
    for (size_t i = 0; i < n; i++) {
        m->env.rcpt[i].dsn = xstrdup(kind == DSN_DELAYED ? "4.4.1" : "5.1.1");
        m->env.rcpt[i].reason = xstrdup(reasons[i]);
    }
    if (t_tweak)
        t_tweak(&m->env);
    m->rc = dsn_make(t_spool, &m->env, m->fd, idx, n, kind, "mx.example.com", m->id, m->err, sizeof(m->err));
    if (m->rc != 0)
        return;
    int dfd = -1;
    assert_int_equal(spool_load(t_spool, SPOOL_DEFERRED, m->id, &m->denv, &dfd, err, sizeof(err)), 0);
    assert_true(dfd >= 0);
    /* the fd is at the message's first byte, as spool.h promises */
    m->stored = t_read_fd(dfd);
    close(dfd);
    m->text = xstrdup(m->stored);
    t_unstuff(m->text);
}

static void t_free(T_MSG *m)
{
    if (m->fd >= 0)
        close(m->fd);
    spool_env_free(&m->env);
    if (m->rc == 0) {
        spool_remove(t_spool, m->id);
        spool_env_free(&m->denv);
    }
    spool_remove(t_spool, m->env.id);
    free(m->stored);
    free(m->text);
}

/* t_has_line - does text hold this whole line (CRLF-ended)? */
static int t_has_line(const char *text, const char *line)
{
    size_t l = strlen(line);

    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, line, l) == 0 && p[l] == '\r' && p[l + 1] == '\n')
            return 1;
    return 0;
}

/* t_line_starts - does a line of text start with prefix? */
static int t_line_starts(const char *text, const char *prefix)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, strlen(prefix)) == 0)
            return 1;
    return 0;
}

/*
 * t_parts - split the report at its boundary: the top header section in
 * head, the parts (each with its own header section) in part[0..2].
 * Returns the number of parts; asserts the closing delimiter is last.
 */
static int t_parts(const char *text, char **head, char *part[4])
{
    const char *b = strstr(text, "boundary=\"");
    assert_non_null(b);
    b += 10;
    char boundary[128];
    size_t bl = strcspn(b, "\"");
    assert_true(bl < sizeof(boundary) - 3);
    snprintf(boundary, sizeof(boundary), "\r\n--%.*s", (int)bl, b);

    const char *end = strstr(text, "\r\n\r\n");
    assert_non_null(end);
    *head = xstrndup(text, (size_t)(end - text) + 2);
    int n = 0;
    const char *p = strstr(text, boundary);
    while (p) {
        p += strlen(boundary);
        if (p[0] == '-' && p[1] == '-') {
            assert_string_equal(p, "--\r\n");   /* the closing delimiter ends the report */
            break;
        }
        assert_true(p[0] == '\r' && p[1] == '\n');
        const char *q = strstr(p, boundary);
        assert_non_null(q);
        assert_true(n < 4);
        part[n++] = xstrndup(p + 2, (size_t)(q - p - 2));
        p = q;
    }
    return n;
}

static void t_parts_free(char *head, char *part[], int n)
{
    free(head);
    for (int i = 0; i < n; i++)
        free(part[i]);
}

static const char *const ADDR1[] = {"rcpt@example.org", "other@example.org"};
static const char *const REASON1[] = {
    "host mx.example.org[192.0.2.25] said: 550 5.1.1 <rcpt@example.org>: no such user (in reply to RCPT TO command)",
    "connect to mx.example.org[192.0.2.25]:25: Connection refused",
};

static char *t_body(int with_body)
{
    return xasprintf("%s\r\n%s", ORIG_HEAD, with_body ? ORIG_BODY : "");
}

/* a failure, RET not given: three parts, the headers only, and every field */
static void test_failed_headers(void **state)
{
    (void)state;
    T_MSG m;
    const char *const orcpt[] = {"rfc822;Rcpt+2BTag@example.org", NULL};
    char *body = t_body(1);

    t_run(&m, "sender@example.net", "", SPOOL_RET_DEFAULT, "env+2Bid+3D1", 0, 2, ADDR1, orcpt, NULL, REASON1,
          body, DSN_FAILED);
    free(body);
    assert_int_equal(m.rc, 0);
    /* the report's envelope */
    assert_string_equal(m.denv.sender, "");
    assert_int_equal(m.denv.dsn_kind, 1);
    assert_int_equal((int)m.denv.nrcpt, 1);
    assert_string_equal(m.denv.rcpt[0].addr, "sender@example.net");
    assert_string_equal(m.denv.mail_params, "");

    char *head, *part[4];
    int n = t_parts(m.text, &head, part);
    assert_int_equal(n, 3);
    assert_true(t_has_line(head, "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>"));
    assert_true(t_has_line(head, "To: <sender@example.net>"));
    assert_true(t_has_line(head, "Subject: Undelivered Mail Returned to Sender"));
    assert_true(t_has_line(head, "Auto-Submitted: auto-replied"));
    assert_true(t_has_line(head, "MIME-Version: 1.0"));
    assert_true(t_line_starts(head, "Date: "));
    assert_true(t_line_starts(head, "Message-ID: <"));
    assert_true(t_line_starts(head, "Content-Type: multipart/report; report-type=delivery-status;"));

    assert_true(t_has_line(part[0], "Content-Type: text/plain; charset=us-ascii"));
    assert_true(t_has_line(part[0], "This report comes from the mail system at host mx.example.com."));
    assert_true(t_has_line(part[0], "<rcpt@example.org>:"));
    assert_true(t_has_line(part[0], "<other@example.org>:"));
    assert_true(t_has_line(part[0], "    connect to mx.example.org[192.0.2.25]:25: Connection refused"));

    const char *ds = part[1];
    assert_true(t_has_line(ds, "Content-Type: message/delivery-status"));
    assert_true(t_has_line(ds, "Reporting-MTA: dns; mx.example.com"));
    assert_true(t_has_line(ds, "Original-Envelope-Id: env+id=1"));  /* xtext decoded */
    assert_true(t_line_starts(ds, "Arrival-Date: "));
    assert_true(t_has_line(ds, "Final-Recipient: rfc822; rcpt@example.org"));
    assert_true(t_has_line(ds, "Original-Recipient: rfc822; Rcpt+Tag@example.org"));
    assert_true(t_has_line(ds, "Action: failed"));
    assert_true(t_has_line(ds, "Status: 5.1.1"));
    assert_true(t_has_line(ds, "Remote-MTA: dns; mx.example.org"));
    assert_true(t_has_line(ds, "Diagnostic-Code: smtp; 550 5.1.1 <rcpt@example.org>: no such user"));
    assert_true(t_has_line(ds, "Final-Recipient: rfc822; other@example.org"));
    assert_true(t_has_line(ds,
                           "Diagnostic-Code: X-Rcptgate; connect to mx.example.org[192.0.2.25]:25: Connection refused"));
    assert_true(t_line_starts(ds, "Last-Attempt-Date: "));
    assert_false(t_line_starts(ds, "Will-Retry-Until:"));
    /* the per-message block, then one block per recipient, blank lines apart */
    assert_non_null(strstr(ds, "\r\n\r\nFinal-Recipient: rfc822; rcpt@example.org\r\n"));
    assert_non_null(strstr(ds, "\r\n\r\nFinal-Recipient: rfc822; other@example.org\r\n"));

    assert_true(t_has_line(part[2], "Content-Type: text/rfc822-headers"));
    assert_true(t_has_line(part[2], "Subject: the original"));
    assert_true(t_has_line(part[2], "Message-ID: <orig-1@example.net>"));
    assert_null(strstr(part[2], "first body line"));     /* headers only */
    t_parts_free(head, part, n);
    t_free(&m);
}

/* RET=FULL: the whole message as message/rfc822, its dotted lines as the sender wrote them */
static void test_failed_full_dots(void **state)
{
    (void)state;
    T_MSG m;
    char *body = t_body(1);

    t_run(&m, "sender@example.net", "", SPOOL_RET_FULL, NULL, 0, 1, ADDR1, NULL, NULL, REASON1, body, DSN_FAILED);
    assert_int_equal(m.rc, 0);
    char *head, *part[4];
    int n = t_parts(m.text, &head, part);
    assert_int_equal(n, 3);
    assert_true(t_has_line(part[2], "Content-Type: message/rfc822"));
    /* the returned part is the original, byte for byte, after its own header section */
    const char *ret = strstr(part[2], "\r\n\r\n");
    assert_non_null(ret);
    assert_string_equal(ret + 4, body);
    /* stored on the wire's terms: every line that starts with a dot has one more */
    assert_non_null(strstr(m.stored, "\r\n..a line that starts with a dot\r\n"));
    assert_non_null(strstr(m.stored, "\r\n...two dots\r\n"));
    assert_non_null(strstr(m.stored, "\r\n..\r\nlast line\r\n"));
    assert_null(strstr(m.stored, "\r\n.\r\n"));     /* never a lone dot: it would end the DATA */
    assert_false(t_line_starts(m.text, "Original-Envelope-Id"));
    t_parts_free(head, part, n);
    free(body);
    t_free(&m);
}

/* RET=HDRS: headers only, even when there is a body */
static void test_failed_hdrs(void **state)
{
    (void)state;
    T_MSG m;
    char *body = t_body(1);

    t_run(&m, "sender@example.net", "", SPOOL_RET_HDRS, NULL, 0, 1, ADDR1, NULL, NULL, REASON1, body, DSN_FAILED);
    free(body);
    assert_int_equal(m.rc, 0);
    assert_non_null(strstr(m.text, "Content-Type: text/rfc822-headers\r\n"));
    assert_null(strstr(m.text, "last line"));
    t_free(&m);
}

/* RET=FULL but larger than message_size_limit: headers only, and the text says why */
static void test_failed_too_big(void **state)
{
    (void)state;
    T_MSG m;
    long long saved = var_smtpd_size_limit;
    char *big = xmalloc(20000), *body;

    memset(big, 'x', 19000);
    for (int i = 70; i < 19000; i += 72) {
        big[i] = '\r';
        big[i + 1] = '\n';
    }
    strcpy(big + 19000, "\r\n");
    body = xasprintf("%s\r\n%s", ORIG_HEAD, big);
    var_smtpd_size_limit = 5000;
    t_run(&m, "sender@example.net", "", SPOOL_RET_FULL, NULL, 0, 1, ADDR1, NULL, NULL, REASON1, body, DSN_FAILED);
    var_smtpd_size_limit = saved;
    assert_int_equal(m.rc, 0);
    assert_non_null(strstr(m.text, "Content-Type: text/rfc822-headers\r\n"));
    assert_non_null(strstr(m.text, "too large"));
    assert_null(strstr(m.text, "xxxxxxxx"));
    free(big);
    free(body);
    t_free(&m);
}

/* a header section without end is cut (at a line end) */
static void test_headers_capped(void **state)
{
    (void)state;
    T_MSG m;
    size_t cap = 300 * 1024;
    char *body = xmalloc(cap + 1), *p = body;

    while ((size_t)(p - body) < cap - 100)
        p += sprintf(p, "X-Filler: %060d\r\n", (int)(p - body));
    *p = '\0';
    t_run(&m, "sender@example.net", "", SPOOL_RET_DEFAULT, NULL, 0, 1, ADDR1, NULL, NULL, REASON1, body, DSN_FAILED);
    assert_int_equal(m.rc, 0);
    assert_true(strlen(m.text) < 110 * 1024);
    assert_true(t_line_starts(m.text, "X-Rcptgate-Note: the header section was cut"));
    assert_non_null(strstr(m.text, "\r\n--=_rcptgate_"));
    free(body);
    t_free(&m);
}

/* a delay warning: Action delayed, 4.x.y, Will-Retry-Until, headers only even with RET=FULL */
static void test_delayed(void **state)
{
    (void)state;
    T_MSG m;
    char *body = t_body(1);

    t_run(&m, "sender@example.net", "", SPOOL_RET_FULL, NULL, 0, 1, ADDR1, NULL, NULL, REASON1 + 1, body,
          DSN_DELAYED);
    free(body);
    assert_int_equal(m.rc, 0);
    assert_true(t_has_line(m.text, "Subject: Delayed Mail (still being retried)"));
    assert_true(t_has_line(m.text, "Action: delayed"));
    assert_true(t_has_line(m.text, "Status: 4.4.1"));
    assert_true(t_line_starts(m.text, "Will-Retry-Until: "));
    assert_true(t_has_line(m.text, "Content-Type: text/rfc822-headers"));
    assert_null(strstr(m.text, "first body line"));
    t_free(&m);
}

/*
 * relayed (RFC 3461 5.2.2): only the recipients whose NOTIFY holds
 * SUCCESS, Status 2.x.y, the headers only even for RET=FULL
 */
static void test_relayed(void **state)
{
    (void)state;
    T_MSG m;
    char *body = t_body(1);
    const int notify[] = {SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE, 0};
    const char *const said[] = {"host mx.example.org[192.0.2.1] said: 250 2.0.0 Ok: queued as X "
                                "(in reply to end of DATA command)",
                                "host mx.example.org[192.0.2.1] said: 250 2.0.0 Ok (in reply to end of DATA command)"};

    t_run(&m, "sender@example.net", "", SPOOL_RET_FULL, NULL, 0, 2, ADDR1, NULL, notify, said, body, DSN_RELAYED);
    assert_int_equal(m.rc, 0);
    assert_true(t_has_line(m.text, "Subject: Successful Mail Delivery Report"));
    assert_true(t_has_line(m.text, "Final-Recipient: rfc822; rcpt@example.org"));
    assert_null(strstr(m.text, "other@example.org"));      /* no NOTIFY: no success notice */
    assert_true(t_has_line(m.text, "Action: relayed"));
    assert_true(t_line_starts(m.text, "Status: 2."));       /* class 2, whatever the recorded code */
    assert_true(t_has_line(m.text, "Remote-MTA: dns; mx.example.org"));
    assert_true(t_line_starts(m.text, "Diagnostic-Code: smtp; 250 2.0.0 Ok"));
    assert_null(strstr(m.text, "Will-Retry-Until"));
    assert_true(t_has_line(m.text, "Content-Type: text/rfc822-headers"));
    assert_null(strstr(m.text, "first body line"));
    t_free(&m);
    /* nobody asked */
    t_run(&m, "sender@example.net", "", SPOOL_RET_FULL, NULL, 0, 2, ADDR1, NULL, NULL, said, body, DSN_RELAYED);
    assert_int_equal(m.rc, 1);
    t_free(&m);
    free(body);
}

/* none due: the null sender, a report itself, NOTIFY=NEVER, NOTIFY without the event */
static void test_none_due(void **state)
{
    (void)state;
    T_MSG m;
    char *body = t_body(0);
    const int never[] = {SPOOL_NOTIFY_NEVER, SPOOL_NOTIFY_NEVER};
    const int success[] = {SPOOL_NOTIFY_SUCCESS, SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_DELAY};
    const int failure[] = {SPOOL_NOTIFY_FAILURE, SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_SUCCESS};
    const int mixed[] = {SPOOL_NOTIFY_NEVER, SPOOL_NOTIFY_FAILURE};

    t_run(&m, "", "", 0, NULL, 0, 2, ADDR1, NULL, NULL, REASON1, body, DSN_FAILED);
    assert_int_equal(m.rc, 1);
    t_free(&m);
    t_run(&m, "sender@example.net", "", 0, NULL, 1, 2, ADDR1, NULL, NULL, REASON1, body, DSN_FAILED);
    assert_int_equal(m.rc, 1);
    t_free(&m);
    t_run(&m, "sender@example.net", "", 0, NULL, 0, 2, ADDR1, NULL, never, REASON1, body, DSN_FAILED);
    assert_int_equal(m.rc, 1);
    t_free(&m);
    t_run(&m, "sender@example.net", "", 0, NULL, 0, 2, ADDR1, NULL, success, REASON1, body, DSN_FAILED);
    assert_int_equal(m.rc, 1);
    t_free(&m);
    t_run(&m, "sender@example.net", "", 0, NULL, 0, 2, ADDR1, NULL, failure, REASON1, body, DSN_DELAYED);
    assert_int_equal(m.rc, 1);
    t_free(&m);
    /* NOTIFY=DELAY alone: a warning, but no failure report */
    t_run(&m, "sender@example.net", "", 0, NULL, 0, 2, ADDR1, NULL, success, REASON1, body, DSN_DELAYED);
    assert_int_equal(m.rc, 0);
    assert_true(t_has_line(m.text, "Final-Recipient: rfc822; other@example.org"));
    assert_false(t_has_line(m.text, "Final-Recipient: rfc822; rcpt@example.org"));
    t_free(&m);
    /* NOTIFY not given: failures and delay warnings both (Postfix's default) */
    t_run(&m, "sender@example.net", "", 0, NULL, 0, 2, ADDR1, NULL, NULL, REASON1, body, DSN_DELAYED);
    assert_int_equal(m.rc, 0);
    t_free(&m);
    /* only the recipients that asked are listed */
    t_run(&m, "sender@example.net", "", 0, NULL, 0, 2, ADDR1, NULL, mixed, REASON1, body, DSN_FAILED);
    assert_int_equal(m.rc, 0);
    assert_false(t_line_starts(m.text, "Final-Recipient: rfc822; rcpt@example.org"));
    assert_true(t_has_line(m.text, "Final-Recipient: rfc822; other@example.org"));
    assert_null(strstr(m.text, "<rcpt@example.org>:"));
    t_free(&m);
    free(body);
}

/* t_hostile_env - values no parser should have let through, as if the envelope had them */
static void t_hostile_env(SPOOL_ENV *env)
{
    free(env->envid);
    env->envid = xstrdup("a+0D+0ABcc:+20b");
    free(env->rcpt[0].addr);
    env->rcpt[0].addr = xstrdup("evil\r\nBcc: victim@example.com@example.org");
    free(env->rcpt[0].orcpt);
    env->rcpt[0].orcpt = xstrdup("rfc822;x+0D+0ABcc:+20a@b");
    free(env->rcpt[1].orcpt);
    env->rcpt[1].orcpt = xstrdup("rfc822;\r\nX-Injected: 1");
}

static void t_hostile_sender(SPOOL_ENV *env)
{
    free(env->sender);
    env->sender = xstrdup("sender@example.net\r\nBcc: victim@example.com");
}

/* hostile values: CR/LF in reasons, ENVID, ORCPT and addresses never start a line of their own */
static void test_hostile(void **state)
{
    (void)state;
    T_MSG m;
    char *body = t_body(1);
    const char *const reasons[] = {
        "host evil[192.0.2.9] said: 550 no\r\nBcc: victim@example.com\r\n\r\n--=_rcptgate_x",
        "550 5.7.1 \x1b[2J\nX-Injected: 2\xff\xfe",
    };

    t_tweak = t_hostile_env;
    t_run(&m, "sender@example.net", "", 0, NULL, 0, 2, ADDR1, NULL, NULL, reasons, body, DSN_FAILED);
    t_tweak = NULL;
    assert_int_equal(m.rc, 0);
    assert_int_equal((int)m.denv.nrcpt, 1);
    assert_false(t_line_starts(m.text, "Bcc:"));
    assert_non_null(strstr(m.text, "Final-Recipient: rfc822; evil  Bcc: victim@example.com@example.org\r\n"));
    assert_false(t_line_starts(m.text, "X-Injected:"));
    /* an ENVID whose decoding holds controls is given back as xtext */
    assert_true(t_has_line(m.text, "Original-Envelope-Id: a+0D+0ABcc:+20b"));
    assert_true(t_has_line(m.text, "Original-Recipient: rfc822; x+0D+0ABcc:+20a@b"));
    assert_null(strchr(m.text, '\x1b'));
    assert_null(strstr(m.text, "\xff"));
    /* no bare LF or CR anywhere in what we wrote */
    for (const char *p = m.text; *p; p++) {
        if (*p == '\n' && (p == m.text || p[-1] != '\r'))
            fail_msg("bare LF at offset %ld", (long)(p - m.text));
        if (*p == '\r')
            assert_true(p[1] == '\n');
    }
    char *head, *part[4];
    int n = t_parts(m.text, &head, part);
    assert_int_equal(n, 3);     /* the reason's "--=_rcptgate_x" did not end a part */
    t_parts_free(head, part, n);
    t_free(&m);

    /*
     * A sender no parser should have let through gets no report, and never
     * will (2, not the -1 of a full disk that the queue manager retries):
     * the queue manager logs why and lets the recipients go.
     */
    t_tweak = t_hostile_sender;
    t_run(&m, "sender@example.net", "", 0, NULL, 0, 2, ADDR1, NULL, NULL, reasons, body, DSN_FAILED);
    t_tweak = NULL;
    assert_int_equal(m.rc, 2);
    assert_non_null(strstr(m.err, "control character"));
    t_free(&m);
    free(body);
}

/* t_statuses - a failure report after tweak: the Status of each of the two recipients */
static void t_statuses(void (*tweak)(SPOOL_ENV *), const char *want0, const char *want1)
{
    T_MSG m;
    char *body = t_body(0);
    char want[256];

    t_tweak = tweak;
    t_run(&m, "sender@example.net", "", 0, NULL, 0, 2, ADDR1, NULL, NULL, REASON1, body, DSN_FAILED);
    t_tweak = NULL;
    free(body);
    assert_int_equal(m.rc, 0);
    snprintf(want, sizeof(want), "Final-Recipient: rfc822; rcpt@example.org\r\nAction: failed\r\nStatus: %s\r\n", want0);
    assert_non_null(strstr(m.text, want));
    snprintf(want, sizeof(want), "Final-Recipient: rfc822; other@example.org\r\nAction: failed\r\nStatus: %s\r\n", want1);
    assert_non_null(strstr(m.text, want));
    t_free(&m);
}

/* t_status_env - an expired recipient (last try 4.4.1), one without a status */
static void t_status_env(SPOOL_ENV *env)
{
    free(env->rcpt[0].dsn);
    env->rcpt[0].dsn = xstrdup("4.4.1");
    free(env->rcpt[1].dsn);
    env->rcpt[1].dsn = NULL;
}

/* t_malformed_status_env - a next hop's malformed status codes, as recorded */
static void t_malformed_status_env(SPOOL_ENV *env)
{
    free(env->rcpt[0].dsn);
    env->rcpt[0].dsn = xstrdup("5.1234.5");
    free(env->rcpt[1].dsn);
    env->rcpt[1].dsn = xstrdup("5..1");
}

/*
 * Status: a failure is class 5 (an expired 4.4.1 is 5.4.1), 5.0.0 when
 * none was recorded, and when the one recorded is malformed (RFC 3463's
 * x.y.z: it is not copied)
 */
static void test_status(void **state)
{
    (void)state;
    t_statuses(t_status_env, "5.4.1", "5.0.0");
    t_statuses(t_malformed_status_env, "5.0.0", "5.0.0");
}

/* dsn_status_len: RFC 3463's class.subject.detail, 1 to 3 digits each, then a space or the end */
static void test_status_len(void **state)
{
    (void)state;
    assert_int_equal(dsn_status_len("5.1.1"), 5);
    assert_int_equal(dsn_status_len("4.4.1 Next hop not reachable"), 5);
    assert_int_equal(dsn_status_len("2.123.999"), 9);
    assert_int_equal(dsn_status_len("5.1234.5"), 0);
    assert_int_equal(dsn_status_len("5.1.1234"), 0);
    assert_int_equal(dsn_status_len("5..1"), 0);
    assert_int_equal(dsn_status_len("5...1"), 0);
    assert_int_equal(dsn_status_len("2.0.0.0"), 0);
    assert_int_equal(dsn_status_len("3.1.1"), 0);
    assert_int_equal(dsn_status_len("5.1.1x"), 0);
    assert_int_equal(dsn_status_len("5.1."), 0);
    assert_int_equal(dsn_status_len("5"), 0);
    assert_int_equal(dsn_status_len(""), 0);
}

/* dsn_reply_status: a passed-on reply gets the enhanced status code it lacks, of its own class */
static void t_reply_status(const char *reply, const char *ok2, const char *want)
{
    char out[64];

    dsn_reply_status(out, sizeof(out), reply, ok2);
    assert_string_equal(out, want);
}

static void test_reply_status(void **state)
{
    char small[8];

    (void)state;
    t_reply_status("550 No such user here", "2.1.5", "550 5.0.0 No such user here");
    t_reply_status("450 Mailbox busy", "2.1.5", "450 4.0.0 Mailbox busy");
    t_reply_status("250 Ok", "2.1.5", "250 2.1.5 Ok");
    t_reply_status("250 Ok: queued as 1234", "2.0.0", "250 2.0.0 Ok: queued as 1234");
    t_reply_status("550", "2.1.5", "550 5.0.0");
    t_reply_status("550 ", "2.1.5", "550 5.0.0");
    /* one of its own is kept; one of the wrong class takes the reply's */
    t_reply_status("550 5.1.1 <a@b>: unknown", "2.1.5", "550 5.1.1 <a@b>: unknown");
    t_reply_status("250 2.0.0 Ok", "2.1.5", "250 2.0.0 Ok");
    t_reply_status("550 4.1.1 odd", "2.1.5", "550 5.1.1 odd");
    /* no status where none belongs, and what is no reply is left alone */
    t_reply_status("354 go ahead", "2.0.0", "354 go ahead");
    t_reply_status("5501 x", "2.1.5", "5501 x");
    t_reply_status("ok", "2.1.5", "ok");
    t_reply_status("", "2.1.5", "");
    /* 5.0.0.0 is no status: it is text */
    t_reply_status("550 5.0.0.0 x", "2.1.5", "550 5.0.0 5.0.0.0 x");
    /* truncated, never overrun */
    dsn_reply_status(small, sizeof(small), "550 No such user here", "2.1.5");
    assert_string_equal(small, "550 5.0");
    dsn_reply_status(small, 2, "550 5.1.1 x", "2.1.5");
    assert_string_equal(small, "5");
}

/* 8-bit originals: BODY=8BITMIME makes an 8BITMIME report; SMTPUTF8 uses RFC 6533's types */
static void test_eightbit(void **state)
{
    (void)state;
    T_MSG m;
    char *body = xasprintf("Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n");
    const char *const utf[] = {"j\xc3\xb6rg@example.org"};

    t_run(&m, "sender@example.net", "BODY=8BITMIME", SPOOL_RET_FULL, NULL, 0, 1, ADDR1, NULL, NULL, REASON1, body,
          DSN_FAILED);
    assert_int_equal(m.rc, 0);
    assert_string_equal(m.denv.mail_params, "BODY=8BITMIME");
    assert_true(t_has_line(m.text, "Content-Type: message/rfc822"));
    assert_true(t_has_line(m.text, "Content-Transfer-Encoding: 8bit"));
    assert_true(t_has_line(m.text, "Content-Type: message/delivery-status"));
    assert_non_null(strstr(m.text, "na\xc3\xafve"));
    t_free(&m);

    /* 8-bit bytes without BODY=8BITMIME: the report says 8bit all the same, never a 7bit lie */
    t_run(&m, "sender@example.net", "SIZE=100", SPOOL_RET_FULL, NULL, 0, 1, ADDR1, NULL, NULL, REASON1, body,
          DSN_FAILED);
    assert_int_equal(m.rc, 0);
    assert_string_equal(m.denv.mail_params, "BODY=8BITMIME");
    assert_true(t_has_line(m.text, "Content-Transfer-Encoding: 8bit"));
    assert_false(t_has_line(m.text, "Content-Transfer-Encoding: 7bit"));
    t_free(&m);
    /* a 7-bit original makes a 7-bit report */
    char *plain = t_body(1);
    t_run(&m, "sender@example.net", "", SPOOL_RET_FULL, NULL, 0, 1, ADDR1, NULL, NULL, REASON1, plain, DSN_FAILED);
    free(plain);
    assert_int_equal(m.rc, 0);
    assert_string_equal(m.denv.mail_params, "");
    assert_true(t_has_line(m.text, "Content-Transfer-Encoding: 7bit"));
    assert_false(t_has_line(m.text, "Content-Transfer-Encoding: 8bit"));
    t_free(&m);

    t_run(&m, "s\xc3\xa9nder@example.net", "SMTPUTF8 BODY=8BITMIME", SPOOL_RET_DEFAULT, NULL, 0, 1, utf, NULL, NULL,
          REASON1, body, DSN_FAILED);
    assert_int_equal(m.rc, 0);
    assert_non_null(strstr(m.denv.mail_params, "SMTPUTF8"));
    assert_true(t_has_line(m.text, "Content-Type: text/plain; charset=utf-8"));
    assert_true(t_has_line(m.text, "Content-Type: message/global-delivery-status"));
    assert_non_null(strstr(m.text, "Content-Type: multipart/report; report-type=global-delivery-status;"));
    assert_true(t_has_line(m.text, "Content-Type: message/global-headers"));
    assert_true(t_has_line(m.text, "Final-Recipient: utf-8; j\xc3\xb6rg@example.org"));
    assert_true(t_has_line(m.text, "To: <s\xc3\xa9nder@example.net>"));
    t_free(&m);
    free(body);
}

static int setup(void **state)
{
    char err[256];

    (void)state;
    if (mkdtemp(t_dir) == NULL)
        return -1;
    setenv("TZ", "UTC", 1);
    var_smtpd_size_limit = 10240000;
    var_smtpd_queue_lifetime_ms = 5 * 86400 * 1000;
    char dir[160];
    snprintf(dir, sizeof(dir), "%s/queue", t_dir);
    t_spool = spool_open(dir, 1, err, sizeof(err));
    if (t_spool == NULL) {
        fprintf(stderr, "# spool_open: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    char cmd[200];

    (void)state;
    spool_close(t_spool);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_headers),
        cmocka_unit_test(test_failed_full_dots),
        cmocka_unit_test(test_failed_hdrs),
        cmocka_unit_test(test_failed_too_big),
        cmocka_unit_test(test_headers_capped),
        cmocka_unit_test(test_delayed),
        cmocka_unit_test(test_relayed),
        cmocka_unit_test(test_none_due),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_status_len),
        cmocka_unit_test(test_reply_status),
        cmocka_unit_test(test_eightbit),
    };

    return cmocka_run_group_tests_name("dsn", tests, setup, teardown);
}
