/*
 * metrics.c - rcptgate's counters as Prometheus / OpenMetrics text (see metrics.h)
 *
 * The families are one table: name (without "_total" for counters),
 * type and help. Stats file keys map to a family plus labels; a sample
 * is kept as (family, label text, value) and printing walks the table,
 * so the order of the output is the table's whatever order the samples
 * came in.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "xalloc.h"

enum metrics_fam {
    FAM_START, FAM_UPDATED, FAM_CONN, FAM_CONN_OPEN, FAM_CONN_REFUSED,
    FAM_PROTO, FAM_TIMEOUTS, FAM_LOOKUPS, FAM_POLICY, FAM_RCPT, FAM_MESSAGES,
    FAM_STORE_DOMAINS, FAM_STORE_RCPTS, FAM_SYNC_RCPTS, FAM_SYNC_SUCCESS,
    FAM_SYNC_RUN, FAM_SYNC_OUTCOME, FAM_SYNC_CHANGES, FAM_SYNC_GUARD,
    FAM_QUEUE, FAM_QUEUE_AGE, FAM_COUNT
};

static const struct metrics_family {
    const char *name;
    int counter;                /* 1: counter (samples end in _total), 0: gauge */
    const char *help;
} metrics_families[FAM_COUNT] = {
    [FAM_START] = {"rcptgate_start_time_seconds", 0, "When the daemon started, in unix time."},
    [FAM_UPDATED] = {"rcptgate_stats_updated_timestamp_seconds", 0, "When the daemon last wrote its counters, in unix time."},
    [FAM_CONN] = {"rcptgate_connections", 1, "Connections accepted since the daemon started."},
    [FAM_CONN_OPEN] = {"rcptgate_connections_open", 0, "Connections open now."},
    [FAM_CONN_REFUSED] = {"rcptgate_connections_refused", 1, "Connections refused at a connection limit."},
    [FAM_PROTO] = {"rcptgate_protocol_errors", 1, "Connections closed or answered for breaking the protocol."},
    [FAM_TIMEOUTS] = {"rcptgate_timeouts", 1, "Connections closed on a timeout."},
    [FAM_LOOKUPS] = {"rcptgate_lookups", 1, "Socketmap lookups answered, by map and result."},
    [FAM_POLICY] = {"rcptgate_policy_requests", 1, "Policy delegation requests answered, by action."},
    [FAM_RCPT] = {"rcptgate_smtpd_recipients", 1, "RCPT TO commands accepted or rejected by rcptgate-smtpd."},
    [FAM_MESSAGES] = {"rcptgate_smtpd_messages_relayed", 1, "Messages rcptgate-smtpd relayed or queued."},
    [FAM_STORE_DOMAINS] = {"rcptgate_store_domains", 0, "Domains in the store."},
    [FAM_STORE_RCPTS] = {"rcptgate_store_recipients", 0, "Distinct recipient addresses in the store."},
    [FAM_SYNC_RCPTS] = {"rcptgate_sync_recipients", 0, "Recipient entries a source holds in the store."},
    [FAM_SYNC_SUCCESS] = {"rcptgate_sync_last_success_timestamp_seconds", 0, "When a source's last sync was applied, in unix time; 0 never."},
    [FAM_SYNC_RUN] = {"rcptgate_sync_last_run_timestamp_seconds", 0, "When a source's last sync was attempted, in unix time; 0 never."},
    [FAM_SYNC_OUTCOME] = {"rcptgate_sync_last_run_outcome", 0, "1 for the outcome of a source's last sync run (refused: the shrink guard)."},
    [FAM_SYNC_CHANGES] = {"rcptgate_sync_last_run_changes", 0, "Entries a source's last sync run added, changed or removed (or would have)."},
    [FAM_SYNC_GUARD] = {"rcptgate_sync_shrink_guard_refused", 0, "1 while a source's latest full sync, or its latest incremental one, stands refused by the shrink guard."},
    [FAM_QUEUE] = {"rcptgate_smtpd_queue_messages", 0, "Messages in rcptgate-smtpd's queue, by queue (deferred, hold)."},
    [FAM_QUEUE_AGE] = {"rcptgate_smtpd_queue_oldest_age_seconds", 0, "Age of the oldest message in rcptgate-smtpd's queue; 0 when empty."},
};

/* Stats file keys with a fixed meaning; socketmap.* and policy.* are built below. */
static const struct metrics_key {
    const char *key;
    int fam;
    const char *labels;         /* extra labels after daemon="..." */
} metrics_keys[] = {
    {"started", FAM_START, NULL},
    {"updated", FAM_UPDATED, NULL},
    {"connections_total", FAM_CONN, NULL},
    {"connections_current", FAM_CONN_OPEN, NULL},
    {"connections_refused", FAM_CONN_REFUSED, NULL},
    {"protocol_errors", FAM_PROTO, NULL},
    {"timeouts", FAM_TIMEOUTS, NULL},
    {"messages", FAM_MESSAGES, NULL},
    {"rcpt_ok", FAM_RCPT, "result=\"accepted\""},
    {"rcpt_rejected", FAM_RCPT, "result=\"rejected\""},
    {"queue_deferred", FAM_QUEUE, "queue=\"deferred\""},
    {"queue_hold", FAM_QUEUE, "queue=\"hold\""},
    {"queue_oldest_age", FAM_QUEUE_AGE, NULL},
    {NULL, 0, NULL},
};

typedef struct metrics_sample {
    int fam;
    char *labels;               /* label text without braces, "" for none */
    long long value;
} METRICS_SAMPLE;

struct metrics {
    METRICS_SAMPLE *s;
    int n, cap;
};

static int metrics_warned;      /* metrics_daemon_write logged a failure */

/* metrics_stats_read - a daemon's stats file into ms */
int metrics_stats_read(const char *path, METRICS_STATS *ms, char *err, size_t errlen)
{
    FILE *fp;
    char line[256];

    ms->n = 0;
    if ((fp = fopen(path, "r")) == NULL) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), fp) != NULL && ms->n < METRICS_STATS_MAX) {
        char *sp = strchr(line, ' ');
        char *end;
        long long v;

        if (sp == NULL || sp == line || (size_t) (sp - line) >= sizeof(ms->c[0].name))
            continue;
        errno = 0;
        v = strtoll(sp + 1, &end, 10);
        if (end == sp + 1 || errno != 0 || (*end != '\n' && *end != 0))
            continue;
        memcpy(ms->c[ms->n].name, line, (size_t) (sp - line));
        ms->c[ms->n].name[sp - line] = 0;
        ms->c[ms->n].value = v;
        ms->n++;
    }
    fclose(fp);
    return 1;
}

/* metrics_stats_get - a counter by name, or -1 */
long long metrics_stats_get(const METRICS_STATS *ms, const char *name)
{
    for (int i = 0; i < ms->n; i++)
        if (strcmp(ms->c[i].name, name) == 0)
            return ms->c[i].value;
    return -1;
}

/* metrics_create - an empty collection */
METRICS *metrics_create(void)
{
    return xcalloc(1, sizeof(METRICS));
}

/* metrics_free - the collection and its samples; NULL is fine */
void metrics_free(METRICS *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < m->n; i++)
        free(m->s[i].labels);
    free(m->s);
    free(m);
}

/* metrics_escape - a label value as the text formats want it (\\, \", \n) */
static void metrics_escape(const char *in, char *out, size_t size)
{
    size_t o = 0;

    for (; *in && o + 3 < size; in++) {
        if (*in == '\\' || *in == '"') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = 0;
}

/* metrics_add - one sample; labels is copied */
static void metrics_add(METRICS *m, int fam, const char *labels, long long value)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->s = xrealloc(m->s, (size_t) m->cap * sizeof(*m->s));
    }
    m->s[m->n].fam = fam;
    m->s[m->n].labels = xstrdup(labels);
    m->s[m->n].value = value;
    m->n++;
}

/* metrics_add_stats - one daemon's stats file */
void metrics_add_stats(METRICS *m, const char *daemon, const METRICS_STATS *ms)
{
    char d[64], labels[256], a[64], b[64];

    metrics_escape(daemon, d, sizeof(d));
    for (int i = 0; i < ms->n; i++) {
        const char *key = ms->c[i].name;
        const char *dot;

        if (strncmp(key, "socketmap.", 10) == 0 && (dot = strchr(key + 10, '.')) != NULL
            && (size_t) (dot - key - 10) < sizeof(a)) {
            /* socketmap.MAP.RESULT: the lookups family */
            memcpy(a, key + 10, (size_t) (dot - key - 10));
            a[dot - key - 10] = 0;
            metrics_escape(dot + 1, b, sizeof(b));
            snprintf(labels, sizeof(labels), "map=\"%s\",result=\"%s\"", a, b);
            metrics_add(m, FAM_LOOKUPS, labels, ms->c[i].value);
            continue;
        }
        if (strncmp(key, "policy.", 7) == 0) {
            metrics_escape(key + 7, a, sizeof(a));
            snprintf(labels, sizeof(labels), "action=\"%s\"", a);
            metrics_add(m, FAM_POLICY, labels, ms->c[i].value);
            continue;
        }
        for (const struct metrics_key *k = metrics_keys; k->key; k++) {
            if (strcmp(k->key, key) != 0)
                continue;
            snprintf(labels, sizeof(labels), "daemon=\"%s\"%s%s", d,
                     k->labels ? "," : "", k->labels ? k->labels : "");
            metrics_add(m, k->fam, labels, ms->c[i].value);
            break;
        }
    }
}

/* metrics_source_size - one source's recipients (store_source_walk callback) */
static int metrics_source_size(const STORE_SOURCE_INFO *s, void *ctx)
{
    char src[256], labels[320];

    metrics_escape(s->name, src, sizeof(src));
    snprintf(labels, sizeof(labels), "source=\"%s\"", src);
    metrics_add(ctx, FAM_SYNC_RCPTS, labels, s->recipients);
    return 0;
}

/* metrics_source - one source's sync state (store_runs_walk callback) */
static int metrics_source(const STORE_SOURCE_INFO *s, void *ctx)
{
    static const char *const outcomes[] = {"ok", "refused", "failed", NULL};
    METRICS *m = ctx;
    char src[256], labels[320];
    size_t olen = strcspn(s->last_outcome, ":");

    metrics_escape(s->name, src, sizeof(src));
    snprintf(labels, sizeof(labels), "source=\"%s\"", src);
    /* Static entries are typed in, never synced. */
    if (strcmp(s->type, "static") == 0)
        return 0;
    metrics_add(m, FAM_SYNC_SUCCESS, labels, s->last_success);
    metrics_add(m, FAM_SYNC_RUN, labels, s->last_run);
    metrics_add(m, FAM_SYNC_GUARD, labels, s->guard_refused != 0);
    if (s->last_run <= 0)
        return 0;
    for (int i = 0; outcomes[i]; i++) {
        snprintf(labels, sizeof(labels), "source=\"%s\",outcome=\"%s\"", src, outcomes[i]);
        metrics_add(m, FAM_SYNC_OUTCOME, labels,
                    strlen(outcomes[i]) == olen && strncmp(s->last_outcome, outcomes[i], olen) == 0);
    }
    snprintf(labels, sizeof(labels), "source=\"%s\",change=\"added\"", src);
    metrics_add(m, FAM_SYNC_CHANGES, labels, s->added);
    snprintf(labels, sizeof(labels), "source=\"%s\",change=\"changed\"", src);
    metrics_add(m, FAM_SYNC_CHANGES, labels, s->changed);
    snprintf(labels, sizeof(labels), "source=\"%s\",change=\"removed\"", src);
    metrics_add(m, FAM_SYNC_CHANGES, labels, s->removed);
    return 0;
}

/* metrics_add_store - the store's sync state, and with full its sizes */
int metrics_add_store(METRICS *m, STORE *st, int full)
{
    STORE_STATS ss;

    if (full) {
        if (store_stats(st, &ss) < 0)
            return -1;
        metrics_add(m, FAM_STORE_DOMAINS, "", ss.domains);
        metrics_add(m, FAM_STORE_RCPTS, "", ss.recipients);
        if (store_source_walk(st, metrics_source_size, m) < 0)
            return -1;
    }
    return store_runs_walk(st, metrics_source, m);
}

/* metrics_print - family by family, in the table's order */
int metrics_print(const METRICS *m, FILE *fp, int format)
{
    for (int f = 0; f < FAM_COUNT; f++) {
        const struct metrics_family *fam = &metrics_families[f];
        const char *suffix = fam->counter ? "_total" : "";
        /* OpenMetrics names a counter family without _total, the 0.0.4 format with it. */
        const char *fsuffix = format == METRICS_OPENMETRICS ? "" : suffix;
        int seen = 0;

        for (int i = 0; i < m->n; i++) {
            const METRICS_SAMPLE *s = &m->s[i];

            if (s->fam != f)
                continue;
            if (!seen++) {
                fprintf(fp, "# HELP %s%s %s\n", fam->name, fsuffix, fam->help);
                fprintf(fp, "# TYPE %s%s %s\n", fam->name, fsuffix, fam->counter ? "counter" : "gauge");
            }
            if (*s->labels)
                fprintf(fp, "%s%s{%s} %lld\n", fam->name, suffix, s->labels, s->value);
            else
                fprintf(fp, "%s%s %lld\n", fam->name, suffix, s->value);
        }
    }
    if (format == METRICS_OPENMETRICS)
        fputs("# EOF\n", fp);
    return ferror(fp) ? -1 : 0;
}

/* metrics_write_file - Prometheus text to path, atomically, mode 0644 */
int metrics_write_file(const METRICS *m, const char *path, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    FILE *fp;
    int fd, bad;

    /*
     * The temporary name is this process's own (lookupd and smtpd may
     * share a directory), made anew: a link planted there in a directory
     * another user owns (node_exporter's) is neither followed nor reused.
     */
    if ((size_t) snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long) getpid()) >= sizeof(tmp)) {
        snprintf(err, errlen, "metrics_file %s: name too long", path);
        return -1;
    }
    (void) unlink(tmp);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644)) < 0) {
        snprintf(err, errlen, "metrics_file %s: %s", tmp, strerror(errno));
        return -1;
    }
    /* The umask may have taken the read bits node_exporter needs. */
    (void) fchmod(fd, 0644);
    if ((fp = fdopen(fd, "w")) == NULL) {
        snprintf(err, errlen, "metrics_file %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    bad = metrics_print(m, fp, METRICS_PROMETHEUS);
    if (fclose(fp) != 0 || bad < 0 || rename(tmp, path) < 0) {
        snprintf(err, errlen, "metrics_file %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* metrics_daemon_write - a daemon's stats file (and sync state) to its metrics file */
void metrics_daemon_write(const char *metrics_path, const char *daemon, const char *stats_path, STORE *st)
{
    METRICS_STATS ms;
    METRICS *m;
    char err[PATH_MAX + 128];
    int rc;

    if (metrics_path == NULL || *metrics_path == 0)
        return;
    if (stats_path == NULL || *stats_path == 0) {
        if (!metrics_warned++)
            log_warn("metrics_file %s: needs stats_file, which is empty", metrics_path);
        return;
    }
    if ((rc = metrics_stats_read(stats_path, &ms, err, sizeof(err))) <= 0) {
        if (!metrics_warned++)
            log_warn("metrics_file %s: stats file %s", metrics_path, rc == 0 ? "missing" : err);
        return;
    }
    m = metrics_create();
    metrics_add_stats(m, daemon, &ms);
    /* Without the sync state the counters are still worth writing. */
    if (st != NULL && metrics_add_store(m, st, 0) < 0)
        log_debug("metrics_file %s: sync state: %s", metrics_path, store_error(st));
    if (metrics_write_file(m, metrics_path, err, sizeof(err)) < 0) {
        if (!metrics_warned++)
            log_warn("%s", err);
    } else {
        metrics_warned = 0;
    }
    metrics_free(m);
}
