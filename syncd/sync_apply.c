/*
 * sync_apply.c - a pull from a source applied to the store
 *
 * One apply path for every backend. A source hands objects to a SYNC_SINK
 * whose put() copies them into the store's pending sync; nothing is
 * written while the directory is read. After a full pull the store says
 * what the commit would add, change and remove, and the shrink guard
 * decides (lib/shrink.c, shared with `rcptgate import`):
 *
 *   - a pull that returned nothing while the source has recipients (an
 *     emptied OU, a bind account that suddenly sees nothing) is refused;
 *   - so is one that would remove more than max_remove_share percent of
 *     the source's recipients, or more than max_remove_count of them;
 *
 * and a refused or failed pull applies nothing: the last good data keeps
 * serving, and the run is recorded with its reason for `rcptgate stats`.
 * Incremental pulls meet the same limits, relative to the source's size
 * (sync_apply_delta_guard); a refused one keeps the old cookie too.
 * `rcptgate-syncd --once --force` skips the guard, on purpose.
 *
 * After an applied sync, [syncd] export_file is rewritten atomically with
 * every recipient of the store ("address OK", the format of Postfix's
 * relay_recipients) and export_command (e.g. postmap lmdb:FILE) is run.
 *
 * DIAGNOSTICS
 *   One line per run: "source NAME: full sync applied: ...", or why
 *   nothing was applied.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "cfg.h"
#include "keeper.h"
#include "log.h"
#include "params.h"
#include "shrink.h"
#include "syncd.h"
#include "xalloc.h"

/* What the sink needs. */
typedef struct sync_apply_ctx {
    STORE *st;
    int delta;                  /* store_delta_*, not store_sync_* */
    long long objects;
    int store_failed;
    int stopped;
} SYNC_APPLY_CTX;

/* Addresses a refusal names: in the log, and (fewer) in the run's message. */
#define SYNC_APPLY_SHOW_LOG     20
#define SYNC_APPLY_SHOW_RUN     5

/* What a refused full pull would remove: how many, and the first few. */
typedef struct sync_apply_gone {
    long long n;
    int shown;
    char list[SYNC_APPLY_SHOW_LOG * 80];    /* "a@b, c@d, ..." */
    char run[SYNC_APPLY_SHOW_RUN * 80];
} SYNC_APPLY_GONE;

/* sync_apply_ms - a monotonic clock in milliseconds */
static long long sync_apply_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* sync_apply_put - the sink's put: one object into the pending sync */
static int sync_apply_put(SYNC_SINK *sink, const STORE_OBJECT *obj)
{
    SYNC_APPLY_CTX *ctx = sink->ctx;

    if (syncd_stopping) {
        ctx->stopped = 1;
        return -1;
    }
    if ((ctx->delta ? store_delta_put(ctx->st, obj) : store_sync_put(ctx->st, obj)) < 0) {
        ctx->store_failed = 1;
        return -1;
    }
    ctx->objects++;
    return 0;
}

/* sync_apply_gone_cb - one address a refused pull would remove, into the lists */
static int sync_apply_gone_cb(const char *address, void *arg)
{
    SYNC_APPLY_GONE *g = arg;
    size_t len;

    if ((len = strlen(g->list)) + strlen(address) + 3 < sizeof(g->list))
        snprintf(g->list + len, sizeof(g->list) - len, "%s%s", len ? ", " : "", address);
    if (g->shown < SYNC_APPLY_SHOW_RUN && (len = strlen(g->run)) + strlen(address) + 3 < sizeof(g->run))
        snprintf(g->run + len, sizeof(g->run) - len, "%s%s", len ? ", " : "", address);
    g->shown++;
    return 0;
}

/*
 * sync_apply_gone - what a refused full pull would have removed: how many
 * (the diff's count) and the first few in address order, which the store
 * lists from the staged pull; 0, or -1 when the store could not be read.
 */
static int sync_apply_gone(SYNC_APPLY_CTX *ctx, const STORE_COUNTS *counts, SYNC_APPLY_GONE *g)
{
    memset(g, 0, sizeof(*g));
    g->n = counts->removed;
    if (g->n == 0)
        return 0;
    return store_sync_gone(ctx->st, sync_apply_gone_cb, g, SYNC_APPLY_SHOW_LOG);
}

/* sync_apply_del - the sink's del: an object gone since the cookie */
static int sync_apply_del(SYNC_SINK *sink, const char *guid)
{
    SYNC_APPLY_CTX *ctx = sink->ctx;

    if (!ctx->delta) {
        log_panic("a full pull reported a deletion");
    }
    if (syncd_stopping) {
        ctx->stopped = 1;
        return -1;
    }
    if (store_delta_del(ctx->st, guid) < 0) {
        ctx->store_failed = 1;
        return -1;
    }
    return 0;
}

/* sync_apply_sink - a sink into ctx */
static void sync_apply_sink(SYNC_SINK *sink, SYNC_APPLY_CTX *ctx, STORE *st, int delta)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->st = st;
    ctx->delta = delta;
    memset(sink, 0, sizeof(*sink));
    sink->put = sync_apply_put;
    sink->del = sync_apply_del;
    sink->ctx = ctx;
}

/* sync_apply_record_failure - record a failed pull (nothing applied) in the store */
static void sync_apply_record_failure(STORE *st, const SOURCE_CONF *conf, int delta, const char *why)
{
    int rc = delta ? store_delta_refuse(st, "failed", why, NULL) : store_sync_refuse(st, "failed", why, NULL);

    if (rc < 0) {
        log_warn("source %s: could not record the failed run: %s", conf->name, store_error(st));
        if (delta)
            store_delta_abort(st);
        else
            store_sync_abort(st);
    }
}

/* sync_apply_failed - a full or incremental run that failed before it could pull (open failed) */
void sync_apply_failed(STORE *st, const SOURCE_CONF *conf, int full, const char *why)
{
    int rc;

    if (st == NULL)
        return;
    rc = full ? store_sync_begin(st, conf->name, conf->type)
        : store_delta_begin(st, conf->name, conf->type);
    if (rc < 0) {
        log_warn("source %s: could not record the failed run: %s", conf->name, store_error(st));
        return;
    }
    sync_apply_record_failure(st, conf, !full, why);
}

/*
 * sync_apply_pull_failed - the end of a pull that did not complete:
 * stopped by a signal (abort, not recorded: nothing was wrong), or failed
 * (recorded with its reason). Sets res.
 */
static int sync_apply_pull_failed(STORE *st, const SOURCE_CONF *conf, SYNC_APPLY_CTX *ctx,
                                  const char *why, const char *what, SYNC_RESULT *res)
{
    if (ctx->stopped || syncd_stopping) {
        if (ctx->delta)
            store_delta_abort(st);
        else
            store_sync_abort(st);
        snprintf(res->why, sizeof(res->why), "stopped by a signal during the pull");
        log_info("source %s: %s sync stopped by a signal; nothing applied", conf->name, what);
        return res->status = SYNC_STOPPED;
    }
    if (ctx->store_failed) {
        snprintf(res->why, sizeof(res->why), "store %s: %s", var_store_path, store_error(st));
        res->store_failed = 1;
        if (ctx->delta)
            store_delta_abort(st);
        else
            store_sync_abort(st);
    } else {
        snprintf(res->why, sizeof(res->why), "%s", why);
        sync_apply_record_failure(st, conf, ctx->delta, res->why);
    }
    log_err("source %s: %s sync failed, nothing applied: %s", conf->name, what, res->why);
    return res->status = SYNC_FAILED;
}

/* sync_apply_store_failed - a store call failed after the pull: nothing applied */
static int sync_apply_store_failed(STORE *st, const SOURCE_CONF *conf, const char *what, SYNC_RESULT *res)
{
    snprintf(res->why, sizeof(res->why), "store %s: %s", var_store_path, store_error(st));
    res->store_failed = 1;
    store_sync_abort(st);
    store_delta_abort(st);
    log_err("source %s: %s sync failed, nothing applied: %s", conf->name, what, res->why);
    return res->status = SYNC_FAILED;
}

/* sync_apply_skipped - "; 3 unusable values skipped" when there were any */
static const char *sync_apply_skipped(long long skipped, char *buf, size_t size)
{
    if (skipped > 0)
        snprintf(buf, size, "; %lld unusable value%s skipped", skipped, skipped == 1 ? "" : "s");
    else
        buf[0] = 0;
    return buf;
}

/* sync_apply_after - the export after an applied sync */
static void sync_apply_after(STORE *st, const SOURCE_CONF *conf, SYNC_RESULT *res)
{
    char err[1024];

    if (sync_apply_export(st, err, sizeof(err)) < 0) {
        res->export_failed = 1;
        log_err("source %s: sync applied, but the export failed: %s", conf->name, err);
    }
}

/* sync_apply_full - one full pull, guarded, as one transaction */
int sync_apply_full(STORE *st, const SOURCE_CONF *conf, const SOURCE_OPS *ops, SOURCE *src,
                    int force, SYNC_RESULT *res)
{
    SYNC_APPLY_CTX ctx;
    SYNC_SINK sink;
    char *cookie = NULL;
    char *invocation_id = NULL;
    char why[1024];
    char skipped[96];
    char settings[SOURCE_FINGERPRINT_LEN];
    long long t0 = sync_apply_ms();
    int rc;

    memset(res, 0, sizeof(*res));
    res->full = 1;
    source_conf_fingerprint(conf, settings);
    if (store_sync_begin(st, conf->name, conf->type) < 0 || store_sync_settings(st, settings) < 0)
        return sync_apply_store_failed(st, conf, "full", res);
    sync_apply_sink(&sink, &ctx, st, 0);
    why[0] = 0;
    rc = ops->full(src, &sink, &cookie, &invocation_id, why, sizeof(why));
    res->objects = ctx.objects;
    res->skipped = sink.skipped;
    if (rc == SOURCE_OK && (ctx.store_failed || ctx.stopped))
        rc = SOURCE_ERR;                /* a put failed: the pull is partial, whatever the source says */
    if (rc != SOURCE_OK) {
        free(cookie);
        free(invocation_id);
        res->ms = sync_apply_ms() - t0;
        return sync_apply_pull_failed(st, conf, &ctx, why[0] ? why : "the source failed", "full", res);
    }
    if (store_sync_diff(st, &res->counts) < 0) {
        free(cookie);
        free(invocation_id);
        return sync_apply_store_failed(st, conf, "full", res);
    }
    if (shrink_guard(&res->counts, res->objects, "the pull", var_syncd_max_remove_pct,
                     var_syncd_max_remove_count, res->why, sizeof(res->why))) {
        if (!force) {
            SYNC_APPLY_GONE *g = xcalloc(1, sizeof(*g));
            size_t len = strlen(res->why);

            free(cookie);
            free(invocation_id);
            res->ms = sync_apply_ms() - t0;
            /* Name some of what would go: the run's message is what rcptgate stats shows. */
            if (sync_apply_gone(&ctx, &res->counts, g) < 0) {
                log_warn("source %s: cannot list what the refused pull would remove: %s", conf->name,
                         store_error(st));
                g->n = 0;
            } else if (g->n > 0) {
                snprintf(res->why + len, sizeof(res->why) - len, "; e.g. %s%s", g->run,
                         g->n > SYNC_APPLY_SHOW_RUN ? ", ..." : "");
            }
            if (store_sync_refuse(st, "refused", res->why, &res->counts) < 0) {
                log_warn("source %s: could not record the refused run: %s", conf->name, store_error(st));
                store_sync_abort(st);
            }
            res->why[len] = 0;
            log_err("source %s: shrink guard: not applying this full sync: %s. Nothing was "
                    "changed; the last good data keeps serving. If this is what the directory "
                    "really holds now, apply it with: rcptgate-syncd -c %s --once --force --source %s",
                    conf->name, res->why, syncd_conf_path, conf->name);
            if (g->n > 0)
                log_err("source %s: the refused pull would remove %lld address%s%s: %s%s", conf->name,
                        g->n, g->n == 1 ? "" : "es", g->n > SYNC_APPLY_SHOW_LOG ? ", the first 20" : "",
                        g->list, g->n > SYNC_APPLY_SHOW_LOG ? ", ..." : "");
            free(g);
            return res->status = SYNC_REFUSED;
        }
        log_warn("source %s: --force: applying although %s", conf->name, res->why);
    }
    res->why[0] = 0;
    rc = store_sync_commit(st, cookie, invocation_id, &res->counts);
    free(cookie);
    free(invocation_id);
    if (rc < 0)
        return sync_apply_store_failed(st, conf, "full", res);
    res->ms = sync_apply_ms() - t0;
    log_info("source %s: full sync applied: %lld objects, %lld added, %lld changed, %lld removed "
             "in %lld ms%s", conf->name, res->objects, res->counts.added, res->counts.changed,
             res->counts.removed, res->ms, sync_apply_skipped(res->skipped, skipped, sizeof(skipped)));
    sync_apply_after(st, conf, res);
    return res->status = SYNC_APPLIED;
}

/*
 * sync_apply_delta_guard - the shrink guard on an incremental pull whose
 * diff is written: 1 refused (recorded and logged, res set), 0 apply.
 * The refusal keeps the stored cookie, so the next poll asks for the
 * same changes again: a directory that recovers (access restored) then
 * passes, and a real mass removal waits for a person.
 */
static int sync_apply_delta_guard(STORE *st, const SOURCE_CONF *conf, int force, SYNC_RESULT *res)
{
    char why[sizeof(res->why) - 32];

    if (res->counts.removed == 0
        || !shrink_guard(&res->counts, -1, "the incremental pull", var_syncd_max_remove_pct,
                         var_syncd_max_remove_count, why, sizeof(why)))
        return 0;
    if (force) {
        log_warn("source %s: --force: applying although %s", conf->name, why);
        return 0;
    }
    snprintf(res->why, sizeof(res->why), "incremental pull: %s", why);
    if (store_delta_refuse(st, "refused", res->why, &res->counts) < 0) {
        log_warn("source %s: could not record the refused run: %s", conf->name, store_error(st));
        store_delta_abort(st);
    }
    log_err("source %s: shrink guard: not applying this incremental sync: %s. Nothing was "
            "changed and the sync state (cookie) was kept: the next poll asks for the same changes "
            "again, and is refused again while they remove as much; the last good data keeps serving. "
            "If this is what the directory really holds now, apply it with a full pull: "
            "rcptgate-syncd -c %s --once --force --source %s, or raise [syncd] max_remove_share "
            "(now %d%%) or max_remove_count (now %d)", conf->name, why, syncd_conf_path, conf->name,
            var_syncd_max_remove_pct, var_syncd_max_remove_count);
    res->status = SYNC_REFUSED;
    return 1;
}

/* sync_apply_delta - the changes since the stored cookie, guarded, as one transaction */
int sync_apply_delta(STORE *st, const SOURCE_CONF *conf, const SOURCE_OPS *ops, SOURCE *src,
                     int force, SYNC_RESULT *res)
{
    STORE_SYNC_STATE state;
    SYNC_APPLY_CTX ctx;
    SYNC_SINK sink;
    char *cookie = NULL;
    char *invocation_id = NULL;
    char why[1024];
    char skipped[96];
    char settings[SOURCE_FINGERPRINT_LEN];
    long long t0 = sync_apply_ms();
    int rc;

    memset(res, 0, sizeof(*res));
    if (ops->incremental == NULL)
        return res->status = SYNC_NEED_FULL;
    if ((rc = store_sync_state_get(st, conf->name, &state)) < 0)
        return sync_apply_store_failed(st, conf, "incremental", res);
    if (rc == 0 || state.cookie == NULL) {
        store_sync_state_free(&state);
        return res->status = SYNC_NEED_FULL;
    }
    /*
     * A cookie lists changes within the scope it was taken in: another
     * scope needs a full pull. A state stored before the settings were
     * (an upgraded store) is trusted as the settings are now, and this
     * pull's commit records them: forcing a full pull there would stop a
     * source whose full pull the shrink guard refuses at the upgrade.
     */
    source_conf_fingerprint(conf, settings);
    if (state.settings != NULL && strcmp(state.settings, settings) != 0) {
        log_info("source %s: a full pull is needed: the source's settings changed since the stored "
                 "sync state was taken", conf->name);
        store_sync_state_free(&state);
        return res->status = SYNC_NEED_FULL;
    }
    if (store_delta_begin(st, conf->name, conf->type) < 0 || store_sync_settings(st, settings) < 0
        || store_delta_expect(st, state.cookie) < 0) {
        store_sync_state_free(&state);
        return sync_apply_store_failed(st, conf, "incremental", res);
    }
    sync_apply_sink(&sink, &ctx, st, 1);
    why[0] = 0;
    rc = ops->incremental(src, state.cookie, state.invocation_id, &sink, &cookie, &invocation_id,
                          why, sizeof(why));
    store_sync_state_free(&state);
    res->objects = ctx.objects;
    res->skipped = sink.skipped;
    if (rc != SOURCE_ERR && (ctx.store_failed || ctx.stopped))
        rc = SOURCE_ERR;                /* a put or del failed: the pull is partial */
    if (rc == SOURCE_FULL) {
        store_delta_abort(st);
        free(cookie);
        free(invocation_id);
        log_info("source %s: a full pull is needed: %s", conf->name, why[0] ? why : "the source says so");
        return res->status = SYNC_NEED_FULL;
    }
    if (rc != SOURCE_OK) {
        free(cookie);
        free(invocation_id);
        res->ms = sync_apply_ms() - t0;
        return sync_apply_pull_failed(st, conf, &ctx, why[0] ? why : "the source failed", "incremental", res);
    }
    if (store_delta_diff(st, &res->counts) < 0) {
        free(cookie);
        free(invocation_id);
        return sync_apply_store_failed(st, conf, "incremental", res);
    }
    if (sync_apply_delta_guard(st, conf, force, res)) {
        free(cookie);
        free(invocation_id);
        res->ms = sync_apply_ms() - t0;
        return res->status;
    }
    rc = store_delta_commit(st, cookie, invocation_id, &res->counts);
    free(cookie);
    free(invocation_id);
    if (rc < 0)
        return sync_apply_store_failed(st, conf, "incremental", res);
    res->ms = sync_apply_ms() - t0;
    if (res->objects > 0 || res->counts.added + res->counts.changed + res->counts.removed > 0) {
        log_info("source %s: incremental sync applied: %lld objects, %lld added, %lld changed, "
                 "%lld removed in %lld ms%s", conf->name, res->objects, res->counts.added,
                 res->counts.changed, res->counts.removed, res->ms,
                 sync_apply_skipped(res->skipped, skipped, sizeof(skipped)));
        sync_apply_after(st, conf, res);
    }
    return res->status = SYNC_APPLIED;
}

/* ------------------------------------------------------------ export */

typedef struct sync_apply_export_ctx {
    FILE *fp;
    char last[ADDR_KEY_SIZE];
    long long written;
    long long left_out;
} SYNC_APPLY_EXPORT_CTX;

/* sync_apply_export_line - one recipient, each address once */
static int sync_apply_export_line(const STORE_RCPT *r, void *ctx)
{
    SYNC_APPLY_EXPORT_CTX *ec = ctx;

    if (strcmp(r->address, ec->last) == 0)
        return 0;
    snprintf(ec->last, sizeof(ec->last), "%s", r->address);
    if (strpbrk(r->address, " \t\r\n") != NULL) {
        ec->left_out++;                 /* a map file key cannot hold white space */
        return 0;
    }
    if (fprintf(ec->fp, "%s OK\n", r->address) < 0)
        return -1;
    ec->written++;
    return 0;
}

/* sync_apply_fsync_dir - make a rename in path's directory durable */
static void sync_apply_fsync_dir(const char *path)
{
    char *copy = xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        (void) fsync(fd);
        close(fd);
    }
    free(copy);
}

/* sync_apply_command - run export_command through /bin/sh; 0 if it exited 0 */
static int sync_apply_command(const char *command, char *err, size_t errlen)
{
    pid_t pid;
    int status;

    if ((pid = fork()) < 0) {
        snprintf(err, errlen, "export_command: fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        int fd = open("/dev/null", O_RDONLY);

        /* The command gets a plain signal setup and no terminal input. */
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        if (fd >= 0 && fd != 0) {
            dup2(fd, 0);
            close(fd);
        }
        execl("/bin/sh", "sh", "-c", command, (char *) NULL);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            snprintf(err, errlen, "export_command: waitpid: %s", strerror(errno));
            return -1;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        log_info("export: \"%s\" done", command);
        return 0;
    }
    if (WIFEXITED(status))
        snprintf(err, errlen, "export_command \"%s\" exited with status %d", command, WEXITSTATUS(status));
    else
        snprintf(err, errlen, "export_command \"%s\" was killed by signal %d", command,
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return -1;
}

/* sync_apply_export - every recipient as a Postfix map file, then the command */
int sync_apply_export(STORE *st, char *err, size_t errlen)
{
    const char *path = var_syncd_export_file;
    SYNC_APPLY_EXPORT_CTX ec;
    char *tmp;
    int fd;
    int rc;

    if (path == NULL || *path == 0)
        return 0;
    /*
     * A source never synced is not in the store: a map without its
     * addresses would make Postfix say 550 for them, where lookupd says
     * TEMP. The last file stays until every source has synced.
     */
    {
        char name[CFG_NAME_LEN];
        int rc_u = keeper_unsynced(st, name, sizeof(name));

        if (rc_u < 0) {
            snprintf(err, errlen, "export_file %s: reading the store: %s", path, store_error(st));
            return -1;
        }
        if (rc_u > 0) {
            /* Not a failure of this pull: that source's own pull fails, or comes later in this run. */
            log_warn("export_file %s not written yet: source %s has never synced, and a map without its "
                     "addresses would refuse them as unknown", path, name);
            return 0;
        }
    }
    memset(&ec, 0, sizeof(ec));
    tmp = xasprintf("%s.%ld.tmp", path, (long) getpid());
    /* Every valid address: readable by the user's group (Postfix's postmap), no one else. */
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640)) < 0
        || (ec.fp = fdopen(fd, "w")) == NULL) {
        snprintf(err, errlen, "export_file %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(tmp);
        return -1;
    }
    rc = store_rcpt_walk(st, NULL, sync_apply_export_line, &ec);
    if (rc < 0) {
        snprintf(err, errlen, "export_file %s: reading the store: %s", path, store_error(st));
    } else if (fflush(ec.fp) != 0 || ferror(ec.fp) || fsync(fileno(ec.fp)) < 0) {
        snprintf(err, errlen, "export_file %s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (fclose(ec.fp) != 0 && rc == 0) {
        snprintf(err, errlen, "export_file %s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && rename(tmp, path) < 0) {
        snprintf(err, errlen, "export_file: rename %s to %s: %s", tmp, path, strerror(errno));
        rc = -1;
    }
    if (rc < 0) {
        (void) unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    sync_apply_fsync_dir(path);
    log_info("export: %lld recipients written to %s%s", ec.written, path,
             ec.left_out ? " (addresses with white space left out)" : "");
    if (*var_syncd_export_command)
        return sync_apply_command(var_syncd_export_command, err, errlen);
    return 0;
}
