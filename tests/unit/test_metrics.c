/*
 * test_metrics.c - unit tests of the metrics exposition (lib/metrics.c)
 *
 * Stats files as lookupd and smtpd write them go in, and the exact text
 * comes out: families grouped across daemons under one HELP and TYPE,
 * counters named as each format wants, label values escaped, the sync
 * state of a real store (applied, then refused by a guard), and the
 * metrics file written whole and readable whatever the umask.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics.h"
#include "store.h"

static char test_dir[256];
static char test_path[300];

/* write_file - the test file with text */
static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* print - the collection in format, as a new string */
static char *print(const METRICS *m, int format)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);

    assert_non_null(fp);
    assert_int_equal(metrics_print(m, fp, format), 0);
    fclose(fp);
    return buf;
}

/* count - how often needle occurs in text */
static int count(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* Numeric "name value" lines are kept; anything else is skipped. */
static void test_stats_read(void **state)
{
    METRICS_STATS ms;
    char err[512] = "";

    write_file(test_path, "started 100\nupdated 200\npid 7\nstore open\nbogus\n"
               "timeouts 12x\nsocketmap.recipients.notfound 4\n");
    assert_int_equal(metrics_stats_read(test_path, &ms, err, sizeof(err)), 1);
    assert_int_equal(ms.n, 4);
    assert_int_equal(metrics_stats_get(&ms, "updated"), 200);
    assert_int_equal(metrics_stats_get(&ms, "socketmap.recipients.notfound"), 4);
    assert_int_equal(metrics_stats_get(&ms, "store"), -1);
    assert_int_equal(metrics_stats_get(&ms, "timeouts"), -1);
    assert_int_equal(metrics_stats_read("/nonexistent/x.stats", &ms, err, sizeof(err)), 0);
}

/* Two daemons' samples of one family come out together, in both formats. */
static void test_two_daemons(void **state)
{
    METRICS_STATS ms;
    METRICS *m = metrics_create();
    char err[512] = "";
    char *text;

    write_file(test_path, "started 100\nupdated 200\npid 7\nconnections_total 5\n"
               "socketmap.recipients.ok 3\npolicy.reject 2\n");
    assert_int_equal(metrics_stats_read(test_path, &ms, err, sizeof(err)), 1);
    metrics_add_stats(m, "lookupd", &ms);
    write_file(test_path, "updated 300\nconnections_total 9\nrcpt_rejected 1\n");
    assert_int_equal(metrics_stats_read(test_path, &ms, err, sizeof(err)), 1);
    metrics_add_stats(m, "smtpd", &ms);

    text = print(m, METRICS_PROMETHEUS);
    assert_string_equal(text,
        "# HELP rcptgate_start_time_seconds When the daemon started, in unix time.\n"
        "# TYPE rcptgate_start_time_seconds gauge\n"
        "rcptgate_start_time_seconds{daemon=\"lookupd\"} 100\n"
        "# HELP rcptgate_stats_updated_timestamp_seconds When the daemon last wrote its counters, in unix time.\n"
        "# TYPE rcptgate_stats_updated_timestamp_seconds gauge\n"
        "rcptgate_stats_updated_timestamp_seconds{daemon=\"lookupd\"} 200\n"
        "rcptgate_stats_updated_timestamp_seconds{daemon=\"smtpd\"} 300\n"
        "# HELP rcptgate_connections_total Connections accepted since the daemon started.\n"
        "# TYPE rcptgate_connections_total counter\n"
        "rcptgate_connections_total{daemon=\"lookupd\"} 5\n"
        "rcptgate_connections_total{daemon=\"smtpd\"} 9\n"
        "# HELP rcptgate_lookups_total Socketmap lookups answered, by map and result.\n"
        "# TYPE rcptgate_lookups_total counter\n"
        "rcptgate_lookups_total{map=\"recipients\",result=\"ok\"} 3\n"
        "# HELP rcptgate_policy_requests_total Policy delegation requests answered, by action.\n"
        "# TYPE rcptgate_policy_requests_total counter\n"
        "rcptgate_policy_requests_total{action=\"reject\"} 2\n"
        "# HELP rcptgate_smtpd_recipients_total RCPT TO commands accepted or rejected by rcptgate-smtpd.\n"
        "# TYPE rcptgate_smtpd_recipients_total counter\n"
        "rcptgate_smtpd_recipients_total{daemon=\"smtpd\",result=\"rejected\"} 1\n");
    free(text);

    text = print(m, METRICS_OPENMETRICS);
    assert_non_null(strstr(text, "# TYPE rcptgate_connections counter\n"
                           "rcptgate_connections_total{daemon=\"lookupd\"} 5\n"));
    assert_non_null(strstr(text, "# HELP rcptgate_lookups Socketmap"));
    assert_null(strstr(text, "# TYPE rcptgate_lookups_total"));
    assert_string_equal(text + strlen(text) - 6, "# EOF\n");
    free(text);
    metrics_free(m);
    metrics_free(NULL);
}

/* add - one replacement of source with n addresses; refused when refuse */
static void add(STORE *st, const char *source, int n, int refuse)
{
    STORE_COUNTS c;
    char addr[64];

    assert_int_equal(store_replace_begin(st, source, "file"), 0);
    for (int i = 0; i < n; i++) {
        snprintf(addr, sizeof(addr), "u%d@example.com", i);
        assert_int_equal(store_replace_add(st, addr, "user"), 0);
    }
    if (refuse) {
        assert_int_equal(store_replace_diff(st, &c), 0);
        assert_int_equal(store_replace_refuse(st, "refused", "too much", &c), 0);
    } else {
        assert_int_equal(store_replace_commit(st, &c), 0);
    }
}

/* A store's sources: sync times, the last outcome, changes; names escaped. */
static void test_store(void **state)
{
    char path[320], err[512], *text, line[256];
    STORE *st;
    METRICS *m;

    snprintf(path, sizeof(path), "%s/store.db", test_dir);
    st = store_open(path, STORE_CREATE, 1000, err, sizeof(err));
    assert_non_null(st);
    add(st, "corp", 10, 0);
    add(st, "we\"ird\\", 4, 0);
    add(st, "we\"ird\\", 1, 1);

    m = metrics_create();
    assert_int_equal(metrics_add_store(m, st, 0), 0);
    text = print(m, METRICS_PROMETHEUS);
    /* Without full: no recipient counts, no store totals. */
    assert_null(strstr(text, "rcptgate_sync_recipients"));
    assert_null(strstr(text, "rcptgate_store_recipients"));
    assert_non_null(strstr(text, "rcptgate_sync_last_run_outcome{source=\"corp\",outcome=\"ok\"} 1\n"));
    assert_non_null(strstr(text, "rcptgate_sync_last_run_outcome{source=\"corp\",outcome=\"refused\"} 0\n"));
    assert_non_null(strstr(text, "rcptgate_sync_last_run_outcome{source=\"we\\\"ird\\\\\",outcome=\"refused\"} 1\n"));
    assert_non_null(strstr(text, "rcptgate_sync_last_run_changes{source=\"we\\\"ird\\\\\",change=\"removed\"} 3\n"));
    assert_non_null(strstr(text, "rcptgate_sync_last_run_changes{source=\"corp\",change=\"added\"} 10\n"));
    assert_non_null(strstr(text, "rcptgate_sync_shrink_guard_refused{source=\"corp\"} 0\n"));
    assert_non_null(strstr(text, "rcptgate_sync_shrink_guard_refused{source=\"we\\\"ird\\\\\"} 1\n"));
    /* The static entries never sync: no sync times for them. */
    assert_null(strstr(text, "source=\"static\""));
    assert_int_equal(sscanf(strstr(text, "rcptgate_sync_last_success_timestamp_seconds{source=\"corp\"} "),
                            "rcptgate_sync_last_success_timestamp_seconds{source=\"corp\"} %255s", line), 1);
    assert_true(atoll(line) > 1700000000LL);
    free(text);
    metrics_free(m);

    m = metrics_create();
    assert_int_equal(metrics_add_store(m, st, 1), 0);
    text = print(m, METRICS_PROMETHEUS);
    assert_non_null(strstr(text, "rcptgate_store_recipients 10\n"));
    assert_non_null(strstr(text, "rcptgate_sync_recipients{source=\"corp\"} 10\n"));
    assert_non_null(strstr(text, "rcptgate_sync_recipients{source=\"we\\\"ird\\\\\"} 4\n"));
    assert_non_null(strstr(text, "rcptgate_sync_recipients{source=\"static\"} 0\n"));
    /* The sync state comes once, from the cheap walk. */
    assert_non_null(strstr(text, "rcptgate_sync_shrink_guard_refused{source=\"corp\"} 0\n"));
    assert_int_equal(count(text, "rcptgate_sync_last_run_outcome{source=\"corp\",outcome=\"ok\"} 1\n"), 1);
    free(text);
    metrics_free(m);
    store_close(st);
    unlink(path);
}

/* The file is the Prometheus text, whole, 0644 under any umask, no temp left. */
static void test_write_file(void **state)
{
    METRICS_STATS ms;
    METRICS *m = metrics_create();
    char path[320], tmp[400], err[512] = "", buf[4096];
    struct stat sb;
    mode_t old;
    FILE *fp;
    size_t n;
    char *text;

    write_file(test_path, "connections_total 5\n");
    assert_int_equal(metrics_stats_read(test_path, &ms, err, sizeof(err)), 1);
    metrics_add_stats(m, "lookupd", &ms);
    snprintf(path, sizeof(path), "%s/x.prom", test_dir);
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long) getpid());
    old = umask(077);
    assert_int_equal(metrics_write_file(m, path, err, sizeof(err)), 0);
    umask(old);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0644);
    assert_int_equal(access(tmp, F_OK), -1);
    fp = fopen(path, "r");
    assert_non_null(fp);
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = 0;
    fclose(fp);
    text = print(m, METRICS_PROMETHEUS);
    assert_string_equal(buf, text);
    free(text);
    unlink(path);

    /* A directory that does not exist: an error that names the file. */
    assert_int_equal(metrics_write_file(m, "/nonexistent/dir/x.prom", err, sizeof(err)), -1);
    snprintf(tmp, sizeof(tmp), "metrics_file /nonexistent/dir/x.prom.%ld.tmp: No such file or directory",
             (long) getpid());
    assert_string_equal(err, tmp);
    metrics_free(m);
}

static int group_setup(void **state)
{
    snprintf(test_dir, sizeof(test_dir), "/tmp/test_metrics.XXXXXX");
    if (mkdtemp(test_dir) == NULL)
        return -1;
    snprintf(test_path, sizeof(test_path), "%s/x.stats", test_dir);
    return 0;
}

static int group_teardown(void **state)
{
    char p[400];

    unlink(test_path);
    snprintf(p, sizeof(p), "%s/store.db-wal", test_dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/store.db-shm", test_dir);
    unlink(p);
    return rmdir(test_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_read),
        cmocka_unit_test(test_two_daemons),
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_write_file),
    };

    return cmocka_run_group_tests_name("metrics", tests, group_setup, group_teardown);
}
