/*
 * store_runs.c - every source's sync state without counting its recipients
 *
 * store_source_walk() counts each source's recipients with a scan of the
 * whole recipient table: right for `rcptgate stats`, too slow for a
 * daemon that exports its metrics every stats_interval from inside its
 * event loop while a few million rows sit in the store. This walk reads
 * only the source table and, through the (source_id, started) index,
 * each source's latest sync run; recipients is -1 (not counted). It also
 * tells whether the latest full pull stands refused by the shrink guard:
 * a persistent or polling syncd goes on with incremental runs after a
 * refusal, and their "ok" must not hide that the full list was never
 * applied; or whether an incremental pull was refused and nothing was
 * applied since (its retries are refused too, or fail).
 *
 * The statement is prepared per call: it runs once per stats interval.
 */
#include "config.h"

#include "store_int.h"

static const char store_runs_sql[] =
    "SELECT s.name, s.type, COALESCE(s.last_success, 0), COALESCE(s.last_run, 0), "
    "COALESCE(sr.outcome || CASE WHEN sr.message <> '' THEN ': ' || sr.message ELSE '' END, ''), "
    "COALESCE(sr.added, 0), COALESCE(sr.changed, 0), COALESCE(sr.removed, 0), "
    /*
     * The latest full pull that was applied or refused (a failure decides
     * nothing), or the latest run of either mode that was: an incremental
     * refusal stands until a pull is applied.
     */
    "CASE WHEN COALESCE((SELECT outcome = 'refused' FROM sync_run WHERE source_id = s.id "
    "AND mode = 'full' AND outcome IN ('ok', 'refused') ORDER BY started DESC, id DESC LIMIT 1), 0) "
    "THEN 1 WHEN COALESCE((SELECT outcome = 'refused' FROM sync_run WHERE source_id = s.id "
    "AND outcome IN ('ok', 'refused') ORDER BY started DESC, id DESC LIMIT 1), 0) THEN 2 ELSE 0 END, "
    "COALESCE(sr.mode, ''), COALESCE((SELECT max(started) FROM sync_run WHERE source_id = s.id "
    "AND mode = 'full' AND outcome = 'ok'), 0) "
    "FROM source s LEFT JOIN sync_run sr ON sr.id = "
    "(SELECT id FROM sync_run WHERE source_id = s.id ORDER BY started DESC, id DESC LIMIT 1) "
    "ORDER BY s.name";

/* store_runs_walk - per source in name order: its last runs, recipients -1 */
int store_runs_walk(STORE *st, int (*fn)(const STORE_SOURCE_INFO *, void *), void *ctx)
{
    sqlite3_stmt *s = NULL;
    STORE_SOURCE_INFO info;
    int rc;

    if (store_usable(st) < 0)
        return -1;
    if (sqlite3_prepare_v2(st->db, store_runs_sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail(st, "preparing the sync run summary");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        info.name = store_text(s, 0);
        info.type = store_text(s, 1);
        info.recipients = -1;
        info.last_success = sqlite3_column_int64(s, 2);
        info.last_run = sqlite3_column_int64(s, 3);
        info.last_outcome = store_text(s, 4);
        info.added = sqlite3_column_int64(s, 5);
        info.changed = sqlite3_column_int64(s, 6);
        info.removed = sqlite3_column_int64(s, 7);
        info.guard_refused = sqlite3_column_int(s, 8);
        info.refused_full = "";
        info.last_mode = store_text(s, 9);
        info.last_full = sqlite3_column_int64(s, 10);
        if (fn(&info, ctx) != 0)
            break;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        store_fail(st, "summarising sync runs");
    sqlite3_finalize(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}
