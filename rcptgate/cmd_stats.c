/*
 * cmd_stats.c - rcptgate stats: store figures, lookupd's and smtpd's counters
 *
 * The store part: domains, recipients, static entries, and per source its
 * size and last run (when, outcome, added/changed/removed), so a refused
 * or failed sync is visible here. The daemons' parts come from the files
 * lookupd and smtpd rewrite every stats_interval (lines "name value"); each is marked
 * stale when its "updated" time is older than three intervals or its pid
 * is gone. A store that cannot be read still lets lookupd's part print,
 * and the exit status is then 2.
 *
 * With --openmetrics (OpenMetrics 1.0) or --prometheus (the 0.0.4 text
 * format node_exporter reads) the same figures come out as metrics,
 * through lib/metrics.c as the daemons' metrics_file does, plus the
 * store's sizes, which the daemons leave out (a scan of the recipients).
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "params.h"
#include "rcptgate.h"
#include "params_smtpd.h"

typedef METRICS_STATS STATS_FILE;

/* stats_source - one source's line */
static int stats_source(const STORE_SOURCE_INFO *s, void *ctx)
{
    char when[64];

    printf("  %-16s %-8s %10lld recipients", s->name, s->type, s->recipients);
    if (s->last_run > 0) {
        printf(", last run %s %s%s%s", rcptgate_time(s->last_run, when, sizeof(when)),
               s->last_mode, s->last_mode[0] ? " " : "", s->last_outcome[0] ? s->last_outcome : "?");
        printf(" (+%lld ~%lld -%lld)", s->added, s->changed, s->removed);
        if (s->last_success != s->last_run)
            printf(", last success %s", rcptgate_time(s->last_success, when, sizeof(when)));
        /* Incremental runs bring changes; only a full one reconciles the whole list. */
        if (strcmp(s->last_mode, "incremental") == 0)
            printf(", last full pull %s",
                   s->last_full > 0 ? rcptgate_time(s->last_full, when, sizeof(when)) : "never");
        /* syncd goes on with incremental pulls after a refused full one: the refusal stands. */
        if (s->guard_refused
            && !(strcmp(s->last_mode, "full") == 0 && strncmp(s->last_outcome, "refused", 7) == 0))
            printf(", the shrink guard refused the latest full pull: %s", s->refused_full);
    }
    putchar('\n');
    return 0;
}

/* stats_store - the store's figures; 0 or -1 after printing the error */
static int stats_store(void)
{
    STORE *st;
    STORE_STATS s;

    if ((st = rcptgate_store(0)) == NULL)
        return -1;
    if (store_stats(st, &s) < 0) {
        rcptgate_error("stats: %s", store_error(st));
        store_close(st);
        return -1;
    }
    printf("store:            %s (schema version %d)\n", var_store_path, store_schema_version());
    printf("domains:          %lld\n", s.domains);
    printf("recipients:       %lld distinct addresses\n", s.recipients);
    printf("static entries:   %lld\n", s.statics);
    printf("sources:          %lld\n", s.sources);
    if (store_source_walk(st, stats_source, NULL) < 0) {
        rcptgate_error("stats: %s", store_error(st));
        store_close(st);
        return -1;
    }
    store_close(st);
    return 0;
}

/* stats_read - a daemon's counters; 1 read, 0 no file, -1 unreadable */
static int stats_read(const char *who, const char *path, STATS_FILE *sf)
{
    char err[1024];
    int rc = metrics_stats_read(path, sf, err, sizeof(err));

    if (rc < 0)
        rcptgate_error("%s statistics %s", who, err);
    return rc;
}

/* stats_get - a counter by name, or -1 when absent */
static long long stats_get(const STATS_FILE *sf, const char *name)
{
    return metrics_stats_get(sf, name);
}

/*
 * stats_header - "NAME pid P, started T, updated T" and STALE when the
 * file was not rewritten for three intervals or its process is gone
 */
static void stats_header(const char *who, const STATS_FILE *sf, int interval_ms)
{
    char when[64];
    long long pid = stats_get(sf, "pid");
    long long updated = stats_get(sf, "updated");
    long long started = stats_get(sf, "started");
    long long now = (long long) time(NULL);
    long long stale_after = 3LL * interval_ms / 1000;
    const char *stale = NULL;

    if (updated < 0 || now - updated > (stale_after > 0 ? stale_after : 3))
        stale = "not updated for three stats intervals";
    else if (pid <= 0 || (kill((pid_t) pid, 0) < 0 && errno == ESRCH))
        stale = "its process is gone";
    printf("%-18spid %lld, started %s", who, pid, rcptgate_time(started, when, sizeof(when)));
    printf(", updated %s%s%s%s\n", rcptgate_time(updated, when, sizeof(when)),
           stale ? " (STALE: " : "", stale ? stale : "", stale ? ")" : "");
}

/* stats_count - a counter for printing: absent counts as 0 */
static long long stats_count(const STATS_FILE *sf, const char *name)
{
    long long v = stats_get(sf, name);

    return v < 0 ? 0 : v;
}

/* stats_smtpd - rcptgate-smtpd's part */
static void stats_smtpd(void)
{
    STATS_FILE sf;
    int rc = var_smtpd_statsfile && *var_smtpd_statsfile
        ? stats_read("smtpd", var_smtpd_statsfile, &sf) : 0;

    if (rc <= 0) {
        if (rc == 0)
            printf("smtpd:            no statistics (not running?)\n");
        return;
    }
    stats_header("smtpd:", &sf, var_smtpd_stats_ms);
    printf("  connections:    %lld total, %lld current, %lld refused\n",
           stats_count(&sf, "connections_total"), stats_count(&sf, "connections_current"),
           stats_count(&sf, "connections_refused"));
    printf("  recipients:     %lld accepted, %lld rejected\n",
           stats_count(&sf, "rcpt_ok"), stats_count(&sf, "rcpt_rejected"));
    printf("  messages:       %lld relayed\n", stats_count(&sf, "messages"));
    printf("  protocol errors %lld, timeouts %lld\n",
           stats_count(&sf, "protocol_errors"), stats_count(&sf, "timeouts"));
}

/* stats_lookupd - lookupd's part */
static void stats_lookupd(void)
{
    static const char *const maps[] = {"recipients", "domains", "transport", "unknown", NULL};
    static const char *const outcomes[] = {"ok", "notfound", "temp", "perm", NULL};
    STATS_FILE sf;
    char name[96];
    int rc = var_lookupd_statsfile && *var_lookupd_statsfile
        ? stats_read("lookupd", var_lookupd_statsfile, &sf) : 0;

    if (rc <= 0) {
        if (rc == 0)
            printf("lookupd:          no statistics (not running?)\n");
        return;
    }
    stats_header("lookupd:", &sf, var_lookupd_stats_ms);
    printf("  connections:    %lld total, %lld current\n",
           stats_count(&sf, "connections_total"), stats_count(&sf, "connections_current"));
    printf("  protocol errors %lld, timeouts %lld\n",
           stats_count(&sf, "protocol_errors"), stats_count(&sf, "timeouts"));
    for (int m = 0; maps[m]; m++) {
        printf("  socketmap %-10s", maps[m]);
        for (int o = 0; outcomes[o]; o++) {
            snprintf(name, sizeof(name), "socketmap.%s.%s", maps[m], outcomes[o]);
            printf(" %s %lld", outcomes[o], stats_count(&sf, name));
        }
        putchar('\n');
    }
    printf("  policy          dunno %lld reject %lld defer %lld\n",
           stats_count(&sf, "policy.dunno"), stats_count(&sf, "policy.reject"),
           stats_count(&sf, "policy.defer"));
}

/*
 * stats_metrics - lookupd's and smtpd's counters from their stats files
 * and the store's sync state, as metric text; 2 when the store could not
 * be read (the daemons' counters are printed all the same).
 */
static int stats_metrics(int format)
{
    STATS_FILE sf;
    METRICS *m = metrics_create();
    STORE *st;
    int rc = RCPTGATE_EX_OK;

    if (var_lookupd_statsfile && *var_lookupd_statsfile
        && stats_read("lookupd", var_lookupd_statsfile, &sf) > 0)
        metrics_add_stats(m, "lookupd", &sf);
    if (var_smtpd_statsfile && *var_smtpd_statsfile
        && stats_read("smtpd", var_smtpd_statsfile, &sf) > 0)
        metrics_add_stats(m, "smtpd", &sf);
    if ((st = rcptgate_store(0)) == NULL) {
        rc = RCPTGATE_EX_STORE;
    } else {
        if (metrics_add_store(m, st, 1) < 0) {
            rcptgate_error("stats: %s", store_error(st));
            rc = RCPTGATE_EX_STORE;
        }
        store_close(st);
    }
    if (metrics_print(m, stdout, format) < 0 || fflush(stdout) != 0) {
        rcptgate_error("stats: writing the metrics failed");
        rc = RCPTGATE_EX_STORE;
    }
    metrics_free(m);
    return rc;
}

/* cmd_stats - rcptgate stats [--openmetrics | --prometheus] */
int cmd_stats(int argc, char **argv)
{
    int rc;

    if (argc == 2 && strcmp(argv[1], "--openmetrics") == 0)
        return stats_metrics(METRICS_OPENMETRICS);
    if (argc == 2 && strcmp(argv[1], "--prometheus") == 0)
        return stats_metrics(METRICS_PROMETHEUS);
    if (argc != 1) {
        rcptgate_error("usage: rcptgate stats [--openmetrics | --prometheus]");
        return RG_EX_USAGE;
    }
    rc = stats_store();
    stats_lookupd();
    stats_smtpd();
    return rc < 0 ? RCPTGATE_EX_STORE : RCPTGATE_EX_OK;
}
