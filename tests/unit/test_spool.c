/*
 * test_spool.c - unit tests of the mail queue on disk (lib/spool.c)
 *
 * Messages go in through spool_create/spool_write/spool_commit and come
 * back whole through spool_load: every envelope field, hostile values
 * (a HELO with CRLF that tries to add a recipient), the body bytes, the
 * recipient states marked in place (also by a fresh handle that has to
 * find the offsets again), the reasons in defer/. Then the moves (hold,
 * release, remove, find, scan), what spool_open clears, damaged files
 * (each refused with a reason, none crashes), id validation, the space
 * check and the trigger FIFO with and without a reader.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "spool.h"

static char test_dir[256];
static char spool_path[300];

/* path_of - test_dir/spool/rel into a static buffer */
static const char *path_of(const char *rel)
{
    static char buf[600];

    snprintf(buf, sizeof(buf), "%s/%s", spool_path, rel);
    return buf;
}

/* count_entries - the ids in one queue */
static long long count_entries(SPOOL *sp, const char *queue)
{
    return spool_scan(sp, queue, NULL, NULL);
}

/* write_file - a file under the spool with given bytes */
static void write_file(const char *rel, const char *data, size_t len)
{
    FILE *fp = fopen(path_of(rel), "w");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

/* queue_one - commit a small message with n recipients r0@example.org...; its id in id */
static void queue_one(SPOOL *sp, char id[SPOOL_ID_LEN], size_t n, long long next_try)
{
    SPOOL_RCPT r[8];
    char addr[8][32];
    SPOOL_ENV env;
    SPOOL_FILE *f;
    char err[256];

    memset(&env, 0, sizeof(env));
    memset(r, 0, sizeof(r));
    spool_id_new(env.id);
    env.arrival = time(NULL);
    env.sender = "s@example.net";
    env.client.name = "unknown";
    env.client.addr = "192.0.2.1";
    env.client.proto = "ESMTP";
    for (size_t i = 0; i < n; i++) {
        snprintf(addr[i], sizeof(addr[i]), "r%zu@example.org", i);
        r[i].addr = addr[i];
        r[i].state = SPOOL_RCPT_TODO;
    }
    env.rcpt = r;
    env.nrcpt = n;
    f = spool_create(sp, &env, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(spool_write(f, "Subject: x\r\n\r\nhi\r\n", 18), 0);
    assert_int_equal(spool_commit(f, next_try, err, sizeof(err)), 0);
    memcpy(id, env.id, SPOOL_ID_LEN);
}

static int setup(void **state)
{
    char err[256];
    SPOOL *sp;

    snprintf(test_dir, sizeof(test_dir), "/tmp/test_spool.XXXXXX");
    if (mkdtemp(test_dir) == NULL)
        return -1;
    snprintf(spool_path, sizeof(spool_path), "%s/spool", test_dir);
    sp = spool_open(spool_path, 1, err, sizeof(err));
    if (sp == NULL) {
        fprintf(stderr, "spool_open: %s\n", err);
        return -1;
    }
    *state = sp;
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];

    spool_close(*state);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
    return system(cmd);
}

/* Ids: the time first, only [0-9A-Z], unique; hostile names refused. */
static void test_ids(void **state)
{
    char a[SPOOL_ID_LEN], b[SPOOL_ID_LEN];
    long long now = time(NULL);

    (void) state;
    spool_id_new(a);
    spool_id_new(b);
    assert_int_equal(strlen(a), 23);
    assert_string_not_equal(a, b);
    assert_true(spool_id_valid(a));
    assert_true(spool_id_time(a) >= now - 1 && spool_id_time(a) <= now + 1);
    assert_true(spool_id_valid("ABC123"));
    assert_false(spool_id_valid(""));
    assert_false(spool_id_valid(NULL));
    assert_false(spool_id_valid(".."));
    assert_false(spool_id_valid("../ABC"));
    assert_false(spool_id_valid("ABC/DEF"));
    assert_false(spool_id_valid("abc"));
    assert_false(spool_id_valid("ABC DEF"));
    assert_false(spool_id_valid("tmp.ABC"));
    assert_true(spool_id_valid("0123456789ABCDEF0123456789ABCDE"));      /* 31: fits */
    assert_false(spool_id_valid("0123456789ABCDEF0123456789ABCDEF"));    /* 32: too long */
    assert_int_equal(spool_id_time("ABC"), -1);
    assert_int_equal(spool_id_time("5F5E100Z0000"), -1);
    assert_int_equal(spool_id_time("5F5E1000ZZZZ"), 1600000000);
}

/* Every field comes back as written, hostile values included, and the body too. */
static void test_round_trip(void **state)
{
    SPOOL *sp = *state;
    SPOOL_RCPT r[3];
    SPOOL_ENV env, got;
    SPOOL_FILE *f;
    char err[256], big[100000], back[200000];
    long long future = time(NULL) + 3600;
    struct stat st;
    int fd = -1;
    ssize_t n;

    memset(&env, 0, sizeof(env));
    memset(r, 0, sizeof(r));
    spool_id_new(env.id);
    env.arrival = 1700000000;
    env.sender = "odd sender%41@example.net";
    env.mail_params = "BODY=8BITMIME SMTPUTF8";
    env.envid = "QQ+2Bx";
    env.ret = SPOOL_RET_HDRS;
    env.dsn_kind = 1;
    env.client.name = "mail.example.net";
    env.client.addr = "2001:db8::1";
    env.client.port = 40025;
    env.client.helo = "evil\r\nT 4 - injected@example.org\r\n\r\nbody";
    env.client.proto = "ESMTPS";
    env.client.login = "-";
    r[0].addr = "a@example.org";
    r[0].orcpt = "rfc822;a+2B@example.org";
    r[0].notify = SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY;
    r[0].state = SPOOL_RCPT_TODO;
    r[1].addr = "\"quoted local\"@example.org";
    r[1].state = SPOOL_RCPT_DONE;
    r[2].addr = "j\xc3\xb6rg@b\xc3\xbc" "cher.example";
    r[2].notify = SPOOL_NOTIFY_NEVER;
    r[2].state = SPOOL_RCPT_FAILED;
    env.rcpt = r;
    env.nrcpt = 3;

    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char) ("ab\r\n.x"[i % 6]);
    f = spool_create(sp, &env, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(stat(path_of("incoming/"), &st), 0);
    assert_int_equal(count_entries(sp, SPOOL_INCOMING), 1);
    assert_int_equal(spool_write(f, "Subject: t\r\n\r\n", 14), 0);
    assert_int_equal(spool_write(f, big, sizeof(big)), 0);          /* over the write buffer */
    assert_int_equal(spool_write(f, "end\r\n", 5), 0);
    assert_int_equal(spool_commit(f, future, err, sizeof(err)), 0);
    assert_int_equal(count_entries(sp, SPOOL_INCOMING), 0);
    assert_int_equal(count_entries(sp, SPOOL_DEFERRED), 1);
    assert_string_equal(spool_find(sp, env.id), SPOOL_DEFERRED);

    char rel[64];
    snprintf(rel, sizeof(rel), "deferred/%s", env.id);
    assert_int_equal(stat(path_of(rel), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal((long long) st.st_mtime, future);

    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, env.id, &got, &fd, err, sizeof(err)), 0);
    assert_string_equal(got.id, env.id);
    assert_int_equal(got.arrival, 1700000000);
    assert_string_equal(got.sender, env.sender);
    assert_string_equal(got.mail_params, env.mail_params);
    assert_string_equal(got.envid, env.envid);
    assert_int_equal(got.ret, SPOOL_RET_HDRS);
    assert_int_equal(got.dsn_kind, 1);
    assert_int_equal(got.warned, 0);
    assert_string_equal(got.client.name, env.client.name);
    assert_string_equal(got.client.addr, env.client.addr);
    assert_int_equal(got.client.port, 40025);
    assert_string_equal(got.client.helo, env.client.helo);
    assert_string_equal(got.client.proto, "ESMTPS");
    assert_string_equal(got.client.login, "-");
    assert_int_equal(got.nrcpt, 3);         /* the HELO added none */
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(got.rcpt[i].addr, r[i].addr);
        assert_int_equal(got.rcpt[i].notify, r[i].notify);
        assert_int_equal(got.rcpt[i].state, r[i].state);
        assert_null(got.rcpt[i].dsn);
        assert_null(got.rcpt[i].reason);
    }
    assert_string_equal(got.rcpt[0].orcpt, r[0].orcpt);
    assert_null(got.rcpt[1].orcpt);
    assert_int_equal(got.size, 14 + (long long) sizeof(big) + 5);
    assert_int_equal(got.next_try, future);
    assert_int_equal(got.attempts, 0);
    assert_int_equal(got.body_offset + got.size, st.st_size);
    assert_true(fd >= 0);
    n = read(fd, back, sizeof(back));
    assert_int_equal(n, got.size);
    assert_memory_equal(back, "Subject: t\r\n\r\n", 14);
    assert_memory_equal(back + 14, big, sizeof(big));
    assert_memory_equal(back + 14 + sizeof(big), "end\r\n", 5);
    close(fd);
    spool_env_free(&got);
    spool_env_free(&got);                   /* twice is harmless */

    /* the null sender, no envid, no helo, no login: absent stays absent */
    memset(&env, 0, sizeof(env));
    spool_id_new(env.id);
    env.sender = "";
    env.rcpt = r;
    env.nrcpt = 1;
    f = spool_create(sp, &env, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(spool_commit(f, 0, err, sizeof(err)), 0);
    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, env.id, &got, NULL, err, sizeof(err)), 0);
    assert_string_equal(got.sender, "");
    assert_string_equal(got.mail_params, "");
    assert_null(got.envid);
    assert_null(got.client.helo);
    assert_null(got.client.login);
    assert_int_equal(got.size, 0);
    assert_true(got.next_try >= time(NULL) - 2 && got.next_try <= time(NULL));
    spool_env_free(&got);

    /* the same id twice is refused (O_EXCL on incoming, no replace into deferred) */
    f = spool_create(sp, &env, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(spool_commit(f, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "File exists"));
    assert_int_equal(count_entries(sp, SPOOL_INCOMING), 0);
    assert_int_equal(count_entries(sp, SPOOL_DEFERRED), 2);
}

/* States set before commit and marked after, by this handle and a fresh one. */
static void test_marks(void **state)
{
    SPOOL *sp = *state, *sp2;
    SPOOL_RCPT r[3];
    SPOOL_ENV env, got;
    SPOOL_FILE *f;
    char err[256], id[SPOOL_ID_LEN], path[1024];
    struct stat st;
    long long next;

    memset(&env, 0, sizeof(env));
    memset(r, 0, sizeof(r));
    spool_id_new(env.id);
    env.sender = "s@example.net";
    r[0].addr = "a@example.org";
    r[1].addr = "b@example.org";
    r[2].addr = "c@example.org";
    r[0].state = r[1].state = r[2].state = SPOOL_RCPT_TODO;
    env.rcpt = r;
    env.nrcpt = 3;
    f = spool_create(sp, &env, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(spool_set_state(f, 0, SPOOL_RCPT_DONE), 0);
    assert_int_equal(spool_set_state(f, 3, SPOOL_RCPT_DONE), -1);
    assert_int_equal(spool_set_state(f, 1, 'X'), -1);
    assert_int_equal(spool_write(f, "x\r\n", 3), 0);
    next = (long long) time(NULL) + 3600;
    assert_int_equal(spool_commit(f, next, err, sizeof(err)), 0);
    memcpy(id, env.id, sizeof(id));

    assert_int_equal(spool_mark(sp, id, 1, SPOOL_RCPT_FAILED), 0);     /* offsets from the commit */
    assert_int_equal(spool_mark(sp, id, 3, SPOOL_RCPT_DONE), -1);
    assert_int_equal(spool_mark(sp, id, 0, 'Q'), -1);
    assert_int_equal(spool_mark_warned(sp, id), 0);
    /* The mtime is the next try: marks leave it as the commit set it, not "now". */
    snprintf(path, sizeof(path), "%s/%s/%s", spool_path, SPOOL_DEFERRED, id);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((long long) st.st_mtime, next);

    sp2 = spool_open(spool_path, 0, err, sizeof(err));      /* no cache: reads the envelope */
    assert_non_null(sp2);
    assert_int_equal(spool_hold(sp2, id), 0);                /* marks follow it into hold/ */
    assert_int_equal(spool_mark(sp2, id, 2, SPOOL_RCPT_DONE), 0);
    assert_int_equal(spool_mark(sp, id, 0, SPOOL_RCPT_TODO), 0);
    spool_close(sp2);

    assert_int_equal(spool_load(sp, SPOOL_HOLD, id, &got, NULL, err, sizeof(err)), 0);
    assert_int_equal(got.rcpt[0].state, SPOOL_RCPT_TODO);
    assert_int_equal(got.rcpt[1].state, SPOOL_RCPT_FAILED);
    assert_int_equal(got.rcpt[2].state, SPOOL_RCPT_DONE);
    assert_int_equal(got.warned, 1);
    assert_int_equal(got.size, 3);
    assert_true(got.rcpt[1].offset > 0);
    spool_env_free(&got);

    /* gone: 1, not an error */
    assert_int_equal(spool_remove(sp, id), 0);
    assert_int_equal(spool_mark(sp, id, 0, SPOOL_RCPT_DONE), 1);
    assert_int_equal(spool_mark_warned(sp, id), 1);
    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, id, &got, NULL, err, sizeof(err)), 1);
}

/* Reasons and attempts in defer/, hostile words included; a damaged file loses only words. */
static void test_reasons(void **state)
{
    SPOOL *sp = *state;
    SPOOL_ENV got;
    char err[256], id[SPOOL_ID_LEN], rel[64];

    queue_one(sp, id, 3, 0);
    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, id, &got, NULL, err, sizeof(err)), 0);
    got.attempts = 3;
    got.rcpt[0].dsn = strdup("4.4.1");
    got.rcpt[0].reason = strdup("connect to [10.0.0.5]:25: Connection refused");
    got.rcpt[2].reason = strdup("450 4.2.0 <c>: nope\r\n1 5.0.0 forged - line %%");
    assert_int_equal(spool_reason_save(sp, &got), 0);
    spool_env_free(&got);
    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, id, &got, NULL, err, sizeof(err)), 0);
    assert_int_equal(got.attempts, 3);
    assert_string_equal(got.rcpt[0].dsn, "4.4.1");
    assert_string_equal(got.rcpt[0].reason, "connect to [10.0.0.5]:25: Connection refused");
    assert_null(got.rcpt[1].dsn);
    assert_null(got.rcpt[1].reason);
    assert_null(got.rcpt[2].dsn);
    assert_string_equal(got.rcpt[2].reason, "450 4.2.0 <c>: nope\r\n1 5.0.0 forged - line %%");
    spool_env_free(&got);

    snprintf(rel, sizeof(rel), "defer/%s", id);
    write_file(rel, "attempts x\n99 4.0.0 out-of-range\n1 %ZZ bad\n0 5.1.1", 51);
    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, id, &got, NULL, err, sizeof(err)), 0);
    assert_int_equal(got.attempts, 0);
    assert_null(got.rcpt[0].dsn);
    assert_null(got.rcpt[1].dsn);
    spool_env_free(&got);
    assert_int_equal(spool_remove(sp, id), 0);
    assert_int_equal(access(path_of(rel), F_OK), -1);       /* reasons go with the message */
    /* a delivery that ends after the message was deleted leaves no reasons behind */
    memset(&got, 0, sizeof(got));
    memcpy(got.id, id, sizeof(got.id));
    got.attempts = 1;
    assert_int_equal(spool_reason_save(sp, &got), 0);
    assert_int_equal(access(path_of(rel), F_OK), -1);
}

/* Abort drops the file; commit's time is the mtime. */
static void test_abort(void **state)
{
    SPOOL *sp = *state;
    SPOOL_RCPT r = {.addr = "a@example.org", .state = SPOOL_RCPT_TODO};
    SPOOL_ENV env;
    SPOOL_FILE *f;
    char err[256];

    memset(&env, 0, sizeof(env));
    spool_id_new(env.id);
    env.sender = "";
    env.rcpt = &r;
    env.nrcpt = 1;
    f = spool_create(sp, &env, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(spool_write(f, "x", 1), 0);
    spool_abort(f);
    spool_abort(NULL);
    assert_int_equal(count_entries(sp, SPOOL_INCOMING), 0);
    assert_null(spool_find(sp, env.id));

    /* bad input is refused before anything is written */
    r.state = 'Z';
    assert_null(spool_create(sp, &env, err, sizeof(err)));
    r.state = SPOOL_RCPT_TODO;
    snprintf(env.id, sizeof(env.id), "../../etc");
    assert_null(spool_create(sp, &env, err, sizeof(err)));
    assert_non_null(strstr(err, "invalid"));
    assert_int_equal(count_entries(sp, SPOOL_INCOMING), 0);

    /* an envelope that could not be read back (over SPOOL_ENV_MAX) is refused at create */
    static char long_addr[1001];
    SPOOL_RCPT *many = calloc(2000, sizeof(*many));

    assert_non_null(many);
    memset(long_addr, 'a', 1000);
    for (size_t i = 0; i < 2000; i++)
        many[i] = (SPOOL_RCPT) {.addr = long_addr, .state = SPOOL_RCPT_TODO};
    spool_id_new(env.id);
    env.rcpt = many;
    env.nrcpt = 2000;
    assert_null(spool_create(sp, &env, err, sizeof(err)));
    assert_non_null(strstr(err, "too large"));
    env.nrcpt = 1000;                                       /* 1,000 long ones fit */
    f = spool_create(sp, &env, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(spool_commit(f, 0, err, sizeof(err)), 0);
    SPOOL_ENV got;
    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, env.id, &got, NULL, err, sizeof(err)), 0);
    assert_int_equal(got.nrcpt, 1000);
    assert_int_equal(strlen(got.rcpt[999].addr), 1000);
    spool_env_free(&got);
    free(many);
}

struct scan_seen {
    int n;
    int stop_at;
    long long mtime_sum;
};

static int scan_cb(void *arg, const char *id, long long mtime, long long size)
{
    struct scan_seen *s = arg;

    assert_true(spool_id_valid(id));
    assert_true(size > 0);
    s->n++;
    s->mtime_sum += mtime;
    return s->stop_at > 0 && s->n >= s->stop_at;
}

/* hold, release, retry_at, remove, find, scan; the races answer "gone". */
static void test_moves(void **state)
{
    SPOOL *sp = *state;
    char a[SPOOL_ID_LEN], b[SPOOL_ID_LEN], c[SPOOL_ID_LEN];
    struct scan_seen seen = {0};
    long long later = time(NULL) + 7200;
    SPOOL_ENV got;
    char err[256];

    queue_one(sp, a, 1, later);
    queue_one(sp, b, 2, later);
    queue_one(sp, c, 1, later);
    write_file("deferred/.hidden", "x", 1);
    write_file("deferred/tmp.ABC", "x", 1);
    assert_int_equal(spool_scan(sp, SPOOL_DEFERRED, scan_cb, &seen), 3);       /* only ids */
    assert_int_equal(seen.mtime_sum, 3 * later);
    seen = (struct scan_seen) {.stop_at = 2};
    assert_int_equal(spool_scan(sp, SPOOL_DEFERRED, scan_cb, &seen), 2);
    assert_int_equal(spool_scan(sp, "bogus", scan_cb, &seen), -1);
    assert_int_equal(spool_scan(sp, "../deferred", scan_cb, &seen), -1);

    assert_int_equal(spool_hold(sp, a), 0);
    assert_int_equal(spool_hold(sp, a), 1);
    assert_string_equal(spool_find(sp, a), SPOOL_HOLD);
    assert_int_equal(count_entries(sp, SPOOL_HOLD), 1);
    assert_int_equal(count_entries(sp, SPOOL_DEFERRED), 2);
    assert_int_equal(spool_retry_at(sp, a, 1), 1);          /* held: not in deferred/ */
    assert_int_equal(spool_release(sp, a), 0);
    assert_int_equal(spool_release(sp, a), 1);
    assert_string_equal(spool_find(sp, a), SPOOL_DEFERRED);
    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, a, &got, NULL, err, sizeof(err)), 0);
    assert_true(got.next_try <= time(NULL) && got.next_try >= time(NULL) - 2);    /* due now */
    spool_env_free(&got);

    assert_int_equal(spool_retry_at(sp, b, 1000), 0);
    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, b, &got, NULL, err, sizeof(err)), 0);
    assert_int_equal(got.next_try, 1000);
    spool_env_free(&got);

    assert_int_equal(spool_hold(sp, c), 0);
    assert_int_equal(spool_remove(sp, c), 0);               /* from hold/ too */
    assert_int_equal(spool_remove(sp, c), 1);
    assert_null(spool_find(sp, c));
    assert_int_equal(spool_release(sp, c), 1);
    assert_int_equal(spool_retry_at(sp, c, 5), 1);
    /* a batch: no directory fsync per move, one spool_sync() at the end */
    spool_set_batch(sp, 1);
    assert_int_equal(spool_hold(sp, a), 0);
    assert_int_equal(spool_release(sp, a), 0);
    assert_int_equal(spool_remove(sp, a), 0);
    assert_int_equal(spool_remove(sp, b), 0);
    assert_int_equal(spool_sync(sp), 0);
    spool_set_batch(sp, 0);
    assert_int_equal(count_entries(sp, SPOOL_DEFERRED), 0);

    /* invalid ids: an error, never a path outside the spool */
    const char *bad[] = {"", "..", "../hold/X", "A/B", ".hidden", "tmp.ABC", "abc"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(spool_remove(sp, bad[i]), -1);
        assert_int_equal(spool_hold(sp, bad[i]), -1);
        assert_int_equal(spool_release(sp, bad[i]), -1);
        assert_int_equal(spool_retry_at(sp, bad[i], 0), -1);
        assert_int_equal(spool_mark(sp, bad[i], 0, SPOOL_RCPT_DONE), -1);
        assert_int_equal(spool_mark_warned(sp, bad[i]), -1);
        assert_int_equal(spool_load(sp, SPOOL_DEFERRED, bad[i], &got, NULL, err, sizeof(err)), -1);
        assert_null(spool_find(sp, bad[i]));
    }
    assert_int_equal(access(path_of("deferred/.hidden"), F_OK), 0);
    assert_int_equal(spool_load(sp, "incoming/..", "X", &got, NULL, err, sizeof(err)), -1);
}

/*
 * spool_open: create=2 clears incoming/, defer/tmp.* and the reasons of
 * messages that are gone, and locks the spool; create=1 does not;
 * create=0 creates nothing.
 */
static void test_open(void **state)
{
    SPOOL *sp = *state, *sp2;
    SPOOL_RCPT r = {.addr = "a@example.org", .state = SPOOL_RCPT_TODO};
    SPOOL_ENV env;
    SPOOL_FILE *f;
    char err[256], missing[400], kept[SPOOL_ID_LEN], rel[64];
    struct stat st;

    queue_one(sp, kept, 1, 0);
    snprintf(rel, sizeof(rel), "defer/%s", kept);
    write_file(rel, "attempts 1\n", 11);

    memset(&env, 0, sizeof(env));
    spool_id_new(env.id);
    env.sender = "";
    env.rcpt = &r;
    env.nrcpt = 1;
    f = spool_create(sp, &env, err, sizeof(err));
    assert_non_null(f);
    assert_int_equal(spool_write(f, "x\r\n", 3), 0);
    write_file("defer/tmp.ABC", "attempts 1\n", 11);
    write_file("defer/ABC", "attempts 1\n", 11);

    sp2 = spool_open(spool_path, 1, err, sizeof(err));
    assert_non_null(sp2);
    assert_int_equal(count_entries(sp2, SPOOL_INCOMING), 1);
    spool_close(sp2);
    sp2 = spool_open(spool_path, 2, err, sizeof(err));       /* smtpd at start */
    assert_non_null(sp2);
    assert_int_equal(count_entries(sp2, SPOOL_INCOMING), 0);
    assert_int_equal(access(path_of("defer/tmp.ABC"), F_OK), -1);
    assert_int_equal(access(path_of("defer/ABC"), F_OK), -1);    /* no message ABC */
    assert_int_equal(access(path_of(rel), F_OK), 0);             /* its message is queued */
    /* a second smtpd on the same spool is refused while the first holds it */
    assert_null(spool_open(spool_path, 2, err, sizeof(err)));
    assert_non_null(strstr(err, "in use by another rcptgate-smtpd"));
    spool_close(sp2);
    sp2 = spool_open(spool_path, 2, err, sizeof(err));       /* and taken again once it is gone */
    assert_non_null(sp2);
    spool_close(sp2);
    assert_int_equal(spool_remove(sp, kept), 0);
    /* the writer that lost its file: commit fails, nothing queued */
    assert_int_equal(spool_commit(f, 0, err, sizeof(err)), -1);
    assert_null(spool_find(sp, env.id));

    assert_int_equal(stat(path_of("trigger"), &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(spool_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_string_equal(spool_dir(sp), spool_path);

    snprintf(missing, sizeof(missing), "%s/none", test_dir);
    assert_null(spool_open(missing, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "does not exist"));
    assert_int_equal(access(missing, F_OK), -1);
    assert_int_equal(mkdir(missing, 0700), 0);              /* a directory but not a spool */
    assert_null(spool_open(missing, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "incoming"));
    assert_int_equal(rmdir(missing), 0);
    assert_null(spool_open("", 1, err, sizeof(err)));
}

/* Damaged files: each refused with a reason (never a crash, never unbounded memory). */
static void test_damaged(void **state)
{
    SPOOL *sp = *state;
    SPOOL_ENV got;
    char err[256];
    static const struct {
        const char *name, *data, *why;
    } cases[] = {
        {"D1", "garbage", "truncated envelope"},
        {"D2", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid D2\narrival 1\n", "truncated"},
        {"D3", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid D3\narrival 1\n\n", "sender"},
        {"D4", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000009\nid D4\narrival 1\nsender \nT 0 - a\n\nshort",
         "bytes"},
        {"D5", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid D5\narrival 1\nsender %0\n\n", "line 6"},
        {"D6", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid D6\narrival 1\nsender a\tb\n\n", "line 6"},
        {"D7", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid XX\narrival 1\nsender \n\n", "says it is XX"},
        {"D8", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid D8\narrival 1\nsender \nX 0 - a\n\n", "line 7"},
        {"D9", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid D9\narrival 1\nsender \nT 99 - a\n\n", "line 7"},
        {"DA", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid DA\narrival 1\nsender \nT 0 -\n\n", "line 7"},
        {"DB", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid DB\narrival x\nsender \n\n", "line 5"},
        {"DC", "rcptgate-queue 9\n\n", "another version"},
        {"DD", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid DD\narrival 1\nsender a\nsender b\n\n", "line 7"},
        {"DE", "", "truncated"},
        /* no recipient: it would be "done" at once and removed without a word */
        {"DF", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid DF\narrival 1\nsender \n\n", "recipients"},
        /* an arrival past the year 9999 (localtime could not show it in a report) */
        {"DG", "rcptgate-queue 1\nwarned 0\nsize 00000000000000000000\nid DG\narrival 99999999999999999\nsender \n"
         "T 0 - a\n\n", "line 5"},
        /* a size near LLONG_MAX: compared without overflowing */
        {"DH", "rcptgate-queue 1\nwarned 0\nsize 09223372036854775807\nid DH\narrival 1\nsender \nT 0 - a\n\n",
         "bytes"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char rel[64];

        snprintf(rel, sizeof(rel), "deferred/%s", cases[i].name);
        write_file(rel, cases[i].data, strlen(cases[i].data));
        err[0] = '\0';
        assert_int_equal(spool_load(sp, SPOOL_DEFERRED, cases[i].name, &got, NULL, err, sizeof(err)), -2);
        if (strstr(err, cases[i].why) == NULL)
            fail_msg("%s: \"%s\" does not say \"%s\"", cases[i].name, err, cases[i].why);
        assert_int_equal(spool_mark(sp, cases[i].name, 0, SPOOL_RCPT_DONE), -1);
        assert_int_equal(spool_mark_warned(sp, cases[i].name), cases[i].data[0] == 'r' && i != 11 ? 0 : -1);
    }

    /* an envelope with no end within SPOOL_ENV_MAX: refused after reading a bounded amount */
    size_t len = SPOOL_ENV_MAX + 200000;
    char *huge = malloc(len);

    assert_non_null(huge);
    memset(huge, 'x', len);
    memcpy(huge, "rcptgate-queue 1\n", 17);
    write_file("deferred/HUGE", huge, len);
    free(huge);
    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, "HUGE", &got, NULL, err, sizeof(err)), -2);
    assert_non_null(strstr(err, "no end of envelope"));

    /* a directory or a symlink where a message should be */
    assert_int_equal(mkdir(path_of("deferred/DIR"), 0700), 0);
    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, "DIR", &got, NULL, err, sizeof(err)), -2);
    assert_int_equal(symlink("/etc/passwd", path_of("deferred/LINK")), 0);
    assert_int_equal(spool_load(sp, SPOOL_DEFERRED, "LINK", &got, NULL, err, sizeof(err)), -2);
    assert_int_equal(spool_scan(sp, SPOOL_DEFERRED, NULL, NULL), (long long) (sizeof(cases) / sizeof(cases[0])) + 1);

    /* set aside in corrupt/ (made 0700 when first needed), with its reasons */
    write_file("defer/D1", "attempts 1\n", 11);
    assert_int_equal(spool_corrupt(sp, "D1"), 0);
    assert_int_equal(access(path_of("deferred/D1"), F_OK), -1);
    assert_int_equal(access(path_of("corrupt/D1"), F_OK), 0);
    assert_int_equal(access(path_of("defer/D1"), F_OK), -1);
    {
        struct stat st;

        assert_int_equal(stat(path_of("corrupt"), &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
    }
    assert_int_equal(spool_corrupt(sp, "D1"), 1);           /* gone from deferred/ */
    assert_int_equal(spool_corrupt(sp, "../D2"), -1);       /* never outside the spool */
}

/* Random damage to a good file: every load ends in 0 or -1 (never a crash, never past the buffer). */
static void test_mutations(void **state)
{
    SPOOL *sp = *state;
    char id[SPOOL_ID_LEN], rel[64], err[256], *good;
    SPOOL_ENV got;
    FILE *fp;
    long len;
    int ok = 0, bad = 0;

    queue_one(sp, id, 3, 0);
    snprintf(rel, sizeof(rel), "deferred/%s", id);
    fp = fopen(path_of(rel), "r");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    len = ftell(fp);
    rewind(fp);
    good = malloc((size_t) len);
    assert_non_null(good);
    assert_int_equal(fread(good, 1, (size_t) len, fp), (size_t) len);
    fclose(fp);
    srand(11);
    for (int round = 0; round < 3000; round++) {
        char *m = malloc((size_t) len);
        long mlen = len;

        memcpy(m, good, (size_t) len);
        for (int k = 0; k < 1 + round % 4; k++) {
            long at = rand() % len;

            switch (rand() % 4) {
            case 0:
                m[at] = (char) (rand() % 256);
                break;
            case 1:
                m[at] = "\n %0TDF-"[rand() % 9];
                break;
            case 2:
                mlen = at;              /* truncated */
                break;
            default:
                m[at] = '\n';
                break;
            }
        }
        write_file(rel, m, (size_t) mlen);
        free(m);
        int rc = spool_load(sp, SPOOL_DEFERRED, id, &got, NULL, err, sizeof(err));

        assert_true(rc == 0 || rc == -2);       /* damage, never an I/O error */
        if (rc == 0) {
            ok++;
            spool_env_free(&got);
        } else
            bad++;
        (void) spool_mark(sp, id, 0, SPOOL_RCPT_DONE);
    }
    assert_true(bad > 0);
    free(good);
}

/* Free space through statvfs. */
static void test_space(void **state)
{
    SPOOL *sp = *state;

    assert_int_equal(spool_space_ok(sp, 1000, 0), 1);
    assert_int_equal(spool_space_ok(sp, 0, LLONG_MAX / 2), 0);
    assert_int_equal(spool_space_ok(sp, LLONG_MAX / 2, 0), 0);
    assert_int_equal(spool_space_ok(sp, -5, -5), 1);
}

/* The trigger: nobody listening is -1 (ENXIO); with smtpd's end open, a byte arrives. */
static void test_trigger(void **state)
{
    SPOOL *sp = *state;
    char c, missing[400];
    int fd;

    errno = 0;
    assert_int_equal(spool_trigger(spool_path), -1);
    assert_int_equal(errno, ENXIO);
    fd = spool_trigger_fd(sp);
    assert_true(fd >= 0);
    assert_int_equal(spool_trigger_fd(sp), fd);             /* opened once */
    assert_int_equal(read(fd, &c, 1), -1);                  /* nonblocking, no end of file */
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(spool_trigger(spool_path), 0);
    assert_int_equal(spool_trigger(spool_path), 0);
    assert_int_equal(read(fd, &c, 1), 1);
    assert_int_equal(read(fd, &c, 1), 1);
    assert_int_equal(read(fd, &c, 1), -1);
    assert_int_equal(errno, EAGAIN);

    snprintf(missing, sizeof(missing), "%s/none", test_dir);
    assert_int_equal(spool_trigger(missing), -1);
    write_file("notfifo", "", 0);
    snprintf(missing, sizeof(missing), "%s/notfifo", spool_path);
    /* a regular file named trigger is never written */
    assert_int_equal(rename(missing, path_of("trigger")), 0);
    assert_int_equal(spool_trigger(spool_path), -1);
    assert_int_equal(errno, EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reasons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trigger, setup, teardown),
    };

    return cmocka_run_group_tests_name("spool", tests, NULL, NULL);
}
