/*
 * metrics.h - rcptgate's counters as Prometheus / OpenMetrics text
 *
 * lookupd and smtpd write their counters every stats_interval to a stats
 * file of "name value" lines (read by `rcptgate stats`). This module
 * turns such a file, and the store's per-source sync state, into metric
 * families named as Prometheus wants them (rcptgate_lookups_total{map=
 * "recipients",result="notfound"}, rcptgate_sync_last_success_timestamp_
 * seconds{source="corp"}), and prints them in one of two formats:
 *
 *   METRICS_PROMETHEUS   the text format 0.0.4, which node_exporter's
 *                        textfile collector and `promtool check metrics`
 *                        read: what the daemons' metrics_file holds;
 *   METRICS_OPENMETRICS  OpenMetrics 1.0 text: counter families named
 *                        without "_total", "# EOF" at the end.
 *
 * A METRICS collects samples first and prints them family by family, so
 * two daemons' samples of one family (rcptgate_connections_total for
 * lookupd and smtpd) come out together, as both formats require.
 */
#ifndef RG_METRICS_H
#define RG_METRICS_H

#include <stddef.h>
#include <stdio.h>

#include "store.h"

/* A daemon's stats file as read: numeric "name value" lines. */
#define METRICS_STATS_MAX 64
typedef struct metrics_stats {
    struct {
        char name[96];
        long long value;
    } c[METRICS_STATS_MAX];
    int n;
} METRICS_STATS;

/*
 * metrics_stats_read - read a stats file: 1 read, 0 no such file, -1
 * unreadable (reason in err). Lines that are not "name integer" are skipped.
 */
int metrics_stats_read(const char *path, METRICS_STATS *ms, char *err, size_t errlen);

/* metrics_stats_get - a counter by name, -1 when absent */
long long metrics_stats_get(const METRICS_STATS *ms, const char *name);

enum { METRICS_PROMETHEUS, METRICS_OPENMETRICS };

typedef struct metrics METRICS;

/* metrics_create/metrics_free - an empty collection; free accepts NULL */
METRICS *metrics_create(void);
void metrics_free(METRICS *m);

/*
 * metrics_add_stats - the counters of one daemon's stats file ("lookupd"
 * or "smtpd"), each labelled daemon="..."; names it does not know are
 * left out (the pid, for one).
 */
void metrics_add_stats(METRICS *m, const char *daemon, const METRICS_STATS *ms);

/*
 * metrics_add_store - the store's sync state per source (last success,
 * last run, its outcome and changes). With full, also the recipients per
 * source and the store's totals, which cost a scan of the recipients
 * (the admin command; a daemon passes 0). 0, or -1 (store_error()).
 */
int metrics_add_store(METRICS *m, STORE *st, int full);

/* metrics_print - every family with samples, in format; 0 or -1 (write error) */
int metrics_print(const METRICS *m, FILE *fp, int format);

/*
 * metrics_write_file - print in the Prometheus format to path.tmp, then
 * rename it over path, so that a reader never sees half a file. The file
 * is made 0644 whatever the umask: node_exporter runs as another user,
 * and the metrics hold no addresses. 0, or -1 with err set.
 */
int metrics_write_file(const METRICS *m, const char *path, char *err, size_t errlen);

/*
 * metrics_daemon_write - what a daemon calls right after writing its
 * stats file: that file (and, with st, the sync state as
 * metrics_add_store(st, 0) gives it) to metrics_path. Nothing when
 * metrics_path is empty. Failures are logged once until a write works.
 */
void metrics_daemon_write(const char *metrics_path, const char *daemon, const char *stats_path, STORE *st);

#endif
