/*
 * store_sync.c - directory objects into the store (used by rcptgate-syncd)
 *
 * What full and incremental pulls share: the begin, put, diff, commit,
 * refuse and abort of the API, the write lock (with foreign keys off for
 * a full pull's transaction), the row writes and the collision notes the
 * incremental pull (store_delta.c) uses, and the run's record.
 *
 * A full pull is staged while nothing is locked (a directory fetch may
 * take minutes and must not block the admin command) in a temporary
 * database, and compared with the store in SQL at store_sync_diff (or
 * store_sync_commit), under the write lock: store_sync_stage.c. Its
 * memory does not grow with the directory. The former in-memory merge
 * is kept, for tests only, in store_sync_legacy.c.
 *
 * Objects are matched by guid: a renamed object keeps its id (and so its
 * memberships). Member DNs are resolved, ASCII case-insensitively,
 * against the DNs of the objects of the same pull; DNs that match
 * nothing (members that are not mail-enabled) are dropped. An address
 * carried by several objects stays with the object that holds it in the
 * store; when none of them does, it goes to the lowest guid, so the
 * choice does not depend on the directory's order. The others' claims
 * are kept in the claim table, and told once. Only the differences are
 * written. New rows of a full pull are written with foreign keys off for
 * the transaction: the rows written point only at objects and the source
 * read or written under the same lock, and a removed object's rows are
 * deleted by hand as ON DELETE CASCADE would (see sync_fk_known).
 *
 * An incremental pull is buffered in memory (it holds what changed) and
 * applied at commit, object by object with point statements; its member
 * DNs are resolved after the pull's objects are written, by one scan of
 * the source's objects (see delta_index_dns). Both commits store the
 * cookie in the same transaction as the data; any error rolls
 * everything back.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_sync_int.h"
#include "xalloc.h"

/*
 * The scans read in the order the tables are stored in: objects by rowid
 * (unary + keeps SQLite off the (source_id, guid) index, whose order
 * would make every row a random read; the pull finds them by guid in a
 * hash table; ORDER BY id costs no sort and gives sync_byid its order),
 * recipients by the primary key in BINARY (strcmp) order (there is no
 * index by source: see sql/001_initial.sql), logins by
 * login_object, members by their primary key. CROSS JOIN keeps SQLite
 * from driving those two from the object table, which would need a sort.
 * RCPT_UPDATE binds like RCPT_INSERT, and OBJ_UPDATE like OBJ_INSERT but
 * for ?2 (the id instead of the guid), so one binding serves both.
 */
static const char *const store_ssql[SSTMT_COUNT] = {
    [SSTMT_OBJ_SCAN] = "SELECT id, guid, dn, kind, flags FROM object WHERE +source_id = ?1 "
        "ORDER BY id",
    [SSTMT_RCPT_SCAN] = "SELECT address, object_id, kind, flags FROM recipient "
        "WHERE source_id = ?1 ORDER BY address",
    [SSTMT_LOGIN_SCAN] = "SELECT l.object_id, l.name FROM login l CROSS JOIN object o "
        "ON o.id = l.object_id WHERE o.source_id = ?1 ORDER BY l.object_id, l.name",
    [SSTMT_MEMBER_SCAN] = "SELECT m.group_id, m.member_id FROM member m CROSS JOIN object o "
        "ON o.id = m.group_id WHERE o.source_id = ?1 ORDER BY m.group_id, m.member_id",
    [SSTMT_OBJ_GET] = "SELECT id, dn, kind, flags FROM object WHERE source_id = ?1 AND guid = ?2",
    [SSTMT_OBJ_INSERT] = "INSERT INTO object (source_id, guid, dn, kind, flags, last_seen) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [SSTMT_OBJ_UPDATE] = "UPDATE object SET dn = ?3, kind = ?4, flags = ?5, last_seen = ?6 "
        "WHERE source_id = ?1 AND id = ?2",
    [SSTMT_OBJ_DELETE] = "DELETE FROM object WHERE id = ?1",
    [SSTMT_OBJ_MAX] = "SELECT COALESCE(MAX(id), 0) FROM object",
    [SSTMT_RCPT_GET] = "SELECT object_id FROM recipient WHERE address = ?1 AND source_id = ?2",
    [SSTMT_RCPT_OF] = "SELECT address, kind, flags FROM recipient WHERE object_id = ?1 "
        "ORDER BY address",
    [SSTMT_RCPT_INSERT] = "INSERT INTO recipient (address, source_id, object_id, kind, flags, "
        "last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [SSTMT_RCPT_UPDATE] = "UPDATE recipient SET object_id = ?3, kind = ?4, flags = ?5, "
        "last_seen = ?6 WHERE address = ?1 AND source_id = ?2",
    [SSTMT_RCPT_DELETE] = "DELETE FROM recipient WHERE address = ?1 AND source_id = ?2",
    [SSTMT_RCPT_DEL_OBJ] = "DELETE FROM recipient WHERE object_id = ?1",
    [SSTMT_LOGIN_OF] = "SELECT name FROM login WHERE object_id = ?1 ORDER BY name",
    [SSTMT_LOGIN_INSERT] = "INSERT INTO login (name, object_id) VALUES (?1, ?2) "
        "ON CONFLICT DO NOTHING",
    [SSTMT_LOGIN_DELETE] = "DELETE FROM login WHERE name = ?1 AND object_id = ?2",
    [SSTMT_MEMBER_OF] = "SELECT member_id FROM member WHERE group_id = ?1 ORDER BY member_id",
    [SSTMT_MEMBER_INSERT] = "INSERT INTO member (group_id, member_id) VALUES (?1, ?2) "
        "ON CONFLICT DO NOTHING",
    [SSTMT_MEMBER_DELETE] = "DELETE FROM member WHERE group_id = ?1 AND member_id = ?2",
    [SSTMT_STATE_SET] = "UPDATE source SET cookie = ?2, invocation_id = ?3, settings = ?4 WHERE id = ?1",
    [SSTMT_STATE_GET] = "SELECT cookie, invocation_id, COALESCE(last_success, 0), settings "
        "FROM source WHERE name = ?1",
    [SSTMT_SYNCED] = "SELECT count(*) FROM source WHERE name = ?1 AND COALESCE(last_success, 0) > 0",
    [SSTMT_AGE] = "SELECT count(*), COALESCE(MIN(COALESCE(last_success, 0)), 0) FROM source "
        "WHERE type NOT IN ('import', 'static')",
    [SSTMT_FOREIGN_KEYS] = "PRAGMA foreign_keys",
    [SSTMT_FK_REFS] = "SELECT group_concat(r, ' ') FROM (SELECT m.name || '.' || f.\"from\" || ':' "
        "|| f.on_delete AS r FROM sqlite_master m, pragma_foreign_key_list(m.name) f "
        "WHERE m.type = 'table' AND f.\"table\" = 'object' ORDER BY 1)",
    [SSTMT_LOGIN_DEL_OBJ] = "DELETE FROM login WHERE object_id = ?1",
    [SSTMT_MEMBER_DEL_GROUP] = "DELETE FROM member WHERE group_id = ?1",
    [SSTMT_MEMBER_DEL_MEMBER] = "DELETE FROM member WHERE member_id = ?1",
    /* The claim table is small (collisions are rare): it drives its joins. */
    [SSTMT_CLAIM_SCAN] = "SELECT c.address, c.object_id FROM claim c CROSS JOIN object o "
        "ON o.id = c.object_id WHERE o.source_id = ?1 ORDER BY c.address, c.object_id",
    [SSTMT_CLAIM_OF] = "SELECT address FROM claim WHERE object_id = ?1 ORDER BY address",
    [SSTMT_CLAIM_INSERT] = "INSERT INTO claim (address, object_id, since) VALUES (?1, ?2, ?3) "
        "ON CONFLICT DO NOTHING",
    [SSTMT_CLAIM_DELETE] = "DELETE FROM claim WHERE address = ?1 AND object_id = ?2",
    [SSTMT_CLAIM_DEL_OBJ] = "DELETE FROM claim WHERE object_id = ?1",
    [SSTMT_CLAIM_BEST] = "SELECT o.id, o.kind, o.flags, o.guid, o.dn FROM claim c CROSS JOIN object o "
        "ON o.id = c.object_id WHERE c.address = ?1 AND o.source_id = ?2 ORDER BY o.guid LIMIT 1",
    [SSTMT_CLAIM_HELD] = "SELECT DISTINCT c.address FROM claim c WHERE EXISTS "
        "(SELECT 1 FROM recipient r WHERE r.address = c.address AND r.object_id = ?1) "
        "ORDER BY c.address",
    [SSTMT_OBJ_BY_ID] = "SELECT guid, dn FROM object WHERE id = ?1",
    [SSTMT_CLAIM_COUNT] = "SELECT count(*) FROM claim",
    [SSTMT_OTHER_OBJS] = "SELECT EXISTS (SELECT 1 FROM object WHERE source_id <> ?1)",
    [SSTMT_OTHER_HOLDER] = "SELECT s.name, o.guid, o.dn, o.id, r.source_id < ?2 FROM recipient r "
        "JOIN source s ON s.id = r.source_id JOIN object o ON o.id = r.object_id "
        "WHERE r.address = ?1 AND r.source_id <> ?2 ORDER BY r.source_id LIMIT 1",
};

static int sync_fk_set(STORE *st, int on);

/* store_sync_grow - room for one more element in a growable array */
void *store_sync_grow(void *p, size_t *cap, size_t n, size_t size, size_t first)
{
    if (n < *cap)
        return p;
    *cap = *cap ? *cap * 2 : first;
    return xrealloc(p, *cap * size);
}

/* sync_str_cmp - qsort order of string pointers */
static int sync_str_cmp(const void *x, const void *y)
{
    return strcmp(*(const char *const *) x, *(const char *const *) y);
}

/* sync_id_cmp - qsort order of ids */
static int sync_id_cmp(const void *x, const void *y)
{
    long long p = *(const long long *) x;
    long long q = *(const long long *) y;

    return (p > q) - (p < q);
}

/* store_sync_unique_strs - sort a list of strings and drop repeats; the new count */
uint32_t store_sync_unique_strs(const char **v, uint32_t n)
{
    uint32_t out = 0;

    if (n < 2)
        return n;
    qsort(v, n, sizeof(*v), sync_str_cmp);
    for (uint32_t i = 0; i < n; i++)
        if (out == 0 || strcmp(v[out - 1], v[i]) != 0)
            v[out++] = v[i];
    return out;
}

/* store_sync_unique_ids - sort ids and drop repeats; the new count */
size_t store_sync_unique_ids(long long *v, size_t n)
{
    size_t out = 0;

    if (n < 2)
        return n;
    qsort(v, n, sizeof(*v), sync_id_cmp);
    for (size_t i = 0; i < n; i++)
        if (out == 0 || v[out - 1] != v[i])
            v[out++] = v[i];
    return out;
}

/* --- the guid and DN tables (store_sync_map.c) */

/*
 * store_sync_index_guids - the guid table over the pull. Of several
 * operations on one guid only the last counts: the earlier become
 * SOP_SKIP, and with compact (a full pull) are dropped from the array.
 */
void store_sync_index_guids(STORE_SYNC *y, int compact)
{
    size_t out = 0;
    int skipped = 0;

    store_sync_map_init(&y->guids, y->nobjs, y->nobjs ? &y->objs[0].guid : NULL, sizeof(*y->objs), 0);
    for (size_t i = 0; i < y->nobjs; i++) {
        uint32_t *slot = store_sync_map_slot(&y->guids, y->objs[i].guid);

        if (*slot != 0) {
            y->objs[*slot - 1].op = SOP_SKIP;
            skipped = 1;
        }
        *slot = (uint32_t) i + 1;
    }
    if (!compact || !skipped)
        return;
    for (size_t i = 0; i < y->nobjs; i++)
        if (y->objs[i].op != SOP_SKIP)
            y->objs[out++] = y->objs[i];
    y->nobjs = out;
    store_sync_index_guids(y, 0);
}

/* --- begin, put, forget */

/* store_sync_forget - forget a sync in progress: roll back what is open, free */
void store_sync_forget(STORE *st)
{
    STORE_SYNC *y = st->sync;

    if (y == NULL)
        return;
    store_sync_stage_end(st);
    store_bulk_run_free(st, &y->run);
    store_sync_stage_free(st);
    /* After the transaction (a rollback above, or the commit), where the pragma works. */
    if (y->fk_off && sync_fk_set(st, 1) < 0)
        log_err("store %s: %s", st->path, store_error(st));
    store_bulk_arena_free(&y->arena);
    for (int i = 0; i < y->nkinds; i++)
        free(y->kinds[i]);
    free(y->objs);
    free(y->addrs);
    free(y->gone_objs);
    free(y->gone_addrs);
    free(y->rows);
    free(y->ids);
    free(y->byid);
    store_sync_map_free(&y->guids);
    store_sync_map_free(&y->dns);
    free(y->need);
    free(y->need_id);
    free(y->need_guid);
    free(y->colls);
    free(y->claimants);
    free(y->dclaims);
    free(y->dholders);
    free(y->fresh);
    free(y->fresh_obj);
    store_sync_map_free(&y->fresh_map);
    store_delta_notes_free(y);
    free(y->settings);
    free(y->expect_cookie);
    free(y);
    st->sync = NULL;
}

/* store_sync_close - for store_close: the sync in progress and the statements */
void store_sync_close(STORE *st)
{
    store_sync_forget(st);
    for (int i = 0; i < STORE_SSTMT_MAX; i++) {
        sqlite3_finalize(st->sstmt[i]);
        st->sstmt[i] = NULL;
    }
}

/* store_sync_start - begin a full (delta 0) or incremental (delta 1) pull */
int store_sync_start(STORE *st, const char *source, const char *type, int delta)
{
    STORE_SYNC *y;

    if (store_bulk_may_begin(st, source, type) < 0
        || store_bulk_prepare(st, st->sstmt, store_ssql, SSTMT_COUNT) < 0)
        return -1;
    y = xcalloc(1, sizeof(*y));
    store_bulk_run_init(&y->run, source, type, delta ? "incremental" : "full");
    y->delta = delta;
    y->others = -1;
    st->sync = y;
    return 0;
}

/* sync_kind - the index of kind in the pull's table of kinds */
static int sync_kind(STORE *st, STORE_SYNC *y, const char *kind)
{
    int k;

    for (k = 0; k < y->nkinds; k++)
        if (strcmp(y->kinds[k], kind) == 0)
            return k;
    if (k == SYNC_KINDS)
        return store_errf(st, "more than %d kinds of object in one pull", SYNC_KINDS);
    y->kinds[y->nkinds++] = xstrdup(kind);
    return k;
}

/*
 * store_sync_check - refuse an object put can not take (no guid, no kind,
 * an empty value); the index of its kind (0 for a deletion) or -1
 */
int store_sync_check(STORE *st, const STORE_OBJECT *obj, const char *guid)
{
    STORE_SYNC *y = st->sync;
    size_t n;
    int kind = 0;

    if (guid == NULL || *guid == 0)
        return store_errf(st, "an object without a guid");
    if (obj != NULL) {
        if (obj->kind == NULL || *obj->kind == 0)
            return store_errf(st, "object %s has no kind", guid);
        n = obj->n_addresses + obj->n_logins + obj->n_members;
        if (obj->n_addresses >= UINT32_MAX || obj->n_logins >= UINT32_MAX
            || obj->n_members >= UINT32_MAX || n >= UINT32_MAX)
            return store_errf(st, "object %s has too many values", guid);
        for (size_t i = 0; i < obj->n_addresses; i++)
            if (obj->addresses[i] == NULL || *obj->addresses[i] == 0)
                return store_errf(st, "object %s has an empty address", guid);
        for (size_t i = 0; i < obj->n_logins; i++)
            if (obj->logins[i] == NULL || *obj->logins[i] == 0)
                return store_errf(st, "object %s has an empty login name", guid);
        for (size_t i = 0; i < obj->n_members; i++)
            if (obj->members[i] == NULL)
                return store_errf(st, "object %s has a NULL member", guid);
        if ((kind = sync_kind(st, y, obj->kind)) < 0)
            return -1;
    }
    return kind;
}

/* store_sync_add - copy an object (op SOP_KEEP) or a deletion (SOP_DELETE) into the pull */
int store_sync_add(STORE *st, const STORE_OBJECT *obj, const char *guid, int op)
{
    STORE_SYNC *y = st->sync;
    SYNC_OBJ *o;
    size_t n = 0;
    int kind = 0;

    if (y->nobjs >= UINT32_MAX)
        return store_errf(st, "too many objects in one pull");
    if ((kind = store_sync_check(st, obj, guid)) < 0)
        return -1;
    if (obj != NULL)
        n = obj->n_addresses + obj->n_logins + obj->n_members;
    y->objs = store_sync_grow(y->objs, &y->capobjs, y->nobjs, sizeof(*y->objs), 4096);
    o = &y->objs[y->nobjs];
    memset(o, 0, sizeof(*o));
    o->guid = store_bulk_strdup(&y->arena, guid);
    o->dn = "";
    o->op = (uint8_t) op;
    if (obj != NULL) {
        const char **v = NULL;

        if (obj->dn != NULL && *obj->dn != 0)
            o->dn = store_bulk_strdup(&y->arena, obj->dn);
        o->kind = (uint16_t) kind;
        o->flags = obj->flags;
        if (n > 0)
            v = store_bulk_alloc(&y->arena, n * sizeof(*v));
        for (size_t i = 0; i < obj->n_addresses; i++)
            v[i] = store_bulk_strdup(&y->arena, obj->addresses[i]);
        o->n_addr = store_sync_unique_strs(v, (uint32_t) obj->n_addresses);
        for (size_t i = 0; i < obj->n_logins; i++)
            v[o->n_addr + i] = store_bulk_strdup(&y->arena, obj->logins[i]);
        o->n_login = store_sync_unique_strs(v + o->n_addr, (uint32_t) obj->n_logins);
        for (size_t i = 0; i < obj->n_members; i++)
            v[o->n_addr + o->n_login + i] = store_bulk_strdup(&y->arena, obj->members[i]);
        o->n_member = (uint32_t) obj->n_members;
        o->list = v;
        y->nmembers += o->n_member;
    }
    y->nobjs++;
    return 0;
}

/* store_sync_begin - start collecting a full pull of source */
int store_sync_begin(STORE *st, const char *source, const char *type)
{
    if (store_sync_start(st, source, type, 0) < 0)
        return -1;
    st->sync->legacy = store_sync_test_legacy;
    if (!st->sync->legacy && store_sync_stage_begin(st) < 0) {
        store_sync_forget(st);
        return -1;
    }
    return 0;
}

/* store_sync_put - one object of the full pull (staged, or copied on the test-only legacy path) */
int store_sync_put(STORE *st, const STORE_OBJECT *obj)
{
    int kind;

    if (store_usable(st) < 0)
        return -1;
    if (st->sync == NULL || st->sync->delta)
        return store_errf(st, "no full sync in progress");
    if (st->sync->merged)
        return store_errf(st, "store_sync_put after store_sync_diff");
    if (obj == NULL)
        return store_errf(st, "no object");
    if (st->sync->legacy)
        return store_sync_add(st, obj, obj->guid, SOP_KEEP);
    if ((kind = store_sync_check(st, obj, obj->guid)) < 0)
        return -1;
    return store_sync_stage_put(st, obj, kind);
}

/*
 * Foreign keys during a full pull. With them on, SQLite looks up the
 * parent of every row inserted (the object of each recipient and login,
 * the source of each object and recipient) and must keep a statement
 * journal for every multi-row INSERT (the batches say OR FAIL so that
 * their NOT NULL and UNIQUE checks need none: any error rolls back the
 * whole sync anyway): about a third of the time a large pull spends
 * writing. A full pull turns them off for its transaction
 * (they can only be switched outside one) and keeps what they guarantee
 * by construction: it inserts rows that point only at objects it read or
 * wrote under the same lock and at its own source, and it deletes a
 * removed object's rows itself, as the schema's ON DELETE CASCADE would.
 * That is done only while the references to object in the schema are
 * exactly those it knows (SYNC_FK_REFS), checked before and again under
 * the lock; otherwise the pull runs with foreign keys on, as before.
 * store_sync_forget switches them on again, after the transaction.
 */
#define SYNC_FK_REFS "claim.object_id:CASCADE login.object_id:CASCADE member.group_id:CASCADE " \
    "member.member_id:CASCADE recipient.object_id:CASCADE"

/* sync_fk_known - 1 if the references to object are SYNC_FK_REFS, 0 if not, -1 */
static int sync_fk_known(STORE *st)
{
    sqlite3_stmt *s = st->sstmt[SSTMT_FK_REFS];
    int rc = sqlite3_step(s);
    int known = rc == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_TEXT
        && strcmp(store_text(s, 0), SYNC_FK_REFS) == 0;

    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return store_fail(st, "reading the schema's foreign keys");
    return known;
}

/* sync_fk_set - switch foreign keys on or off (outside a transaction) */
static int sync_fk_set(STORE *st, int on)
{
    if (sqlite3_exec(st->db, on ? "PRAGMA foreign_keys = ON" : "PRAGMA foreign_keys = OFF",
                     NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(st, "switching foreign keys");
    return 0;
}

/* store_sync_lock - the write lock for the pull (once), on a connection that cascades */
int store_sync_lock(STORE *st)
{
    STORE_SYNC *y = st->sync;
    long long fk = 0;
    int known = 0;

    if (y->run.locked)
        return 0;
    if (store_step_count(st, st->sstmt[SSTMT_FOREIGN_KEYS], "checking foreign keys", &fk) < 0)
        return -1;
    if (fk != 1)
        return store_errf(st, "foreign keys are off on this connection");
    store_read_end(st);                 /* the pragma is a no-op inside a transaction */
    if (!y->delta && sqlite3_get_autocommit(st->db) && (known = sync_fk_known(st)) < 0)
        return -1;
    if (known) {
        if (sync_fk_set(st, 0) < 0)
            return -1;
        y->fk_off = 1;
    }
    if (store_bulk_lock(st, &y->run) < 0)
        return -1;
    /* Removed objects take their logins and memberships with them, by cascade or by hand. */
    if (store_step_count(st, st->sstmt[SSTMT_FOREIGN_KEYS], "checking foreign keys", &fk) < 0)
        return -1;
    if (fk != !y->fk_off)
        return store_errf(st, "foreign keys were not switched %s", y->fk_off ? "off" : "on");
    if (y->fk_off && (known = sync_fk_known(st)) != 1)
        return known < 0 ? -1 : store_errf(st, "the store's schema changed during the sync");
    return 0;
}

/* store_sync_del_obj - remove a removed object and, with foreign keys off, what cascades from it */
int store_sync_del_obj(STORE *st, long long id)
{
    static const int cascade[] = {
        SSTMT_RCPT_DEL_OBJ, SSTMT_LOGIN_DEL_OBJ, SSTMT_MEMBER_DEL_GROUP, SSTMT_MEMBER_DEL_MEMBER,
        SSTMT_CLAIM_DEL_OBJ,
    };

    if (st->sync->fk_off)
        for (size_t i = 0; i < sizeof(cascade) / sizeof(cascade[0]); i++)
            if (store_sync_del_id(st, cascade[i], id, "removing objects") < 0)
                return -1;
    return store_sync_del_id(st, SSTMT_OBJ_DELETE, id, "removing objects") < 0 ? -1 : 0;
}

/* store_sync_diff - counts of recipient addresses commit would add, change, remove */
int store_sync_diff(STORE *st, STORE_COUNTS *counts)
{
    if (store_usable(st) < 0)
        return -1;
    if (st->sync == NULL || st->sync->delta)
        return store_errf(st, "no full sync in progress");
    if ((st->sync->legacy ? store_sync_legacy_merge(st) : store_sync_stage_merge(st)) < 0) {
        store_sync_forget(st);
        return -1;
    }
    *counts = st->sync->counts;
    return 0;
}

/* --- the full pull: apply */

/* store_sync_write_obj - insert (setting o->id) or update one object */
int store_sync_write_obj(STORE *st, SYNC_OBJ *o, long long now)
{
    STORE_SYNC *y = st->sync;
    int insert = o->op == SOP_INSERT;
    sqlite3_stmt *s = st->sstmt[insert ? SSTMT_OBJ_INSERT : SSTMT_OBJ_UPDATE];

    if (sqlite3_bind_int64(s, 1, y->run.source_id) != SQLITE_OK
        || (insert ? sqlite3_bind_text(s, 2, o->guid, -1, SQLITE_STATIC)
            : sqlite3_bind_int64(s, 2, o->id)) != SQLITE_OK
        || sqlite3_bind_text(s, 3, o->dn, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_text(s, 4, y->kinds[o->kind], -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_int(s, 5, o->flags) != SQLITE_OK
        || sqlite3_bind_int64(s, 6, now) != SQLITE_OK)
        return store_fail(st, "storing an object");
    if (store_step_done(st, s, "storing an object") < 0)
        return -1;
    if (insert)
        o->id = sqlite3_last_insert_rowid(st->db);
    return 0;
}

/* store_sync_write_rcpt - insert or update (same binding) one address of object o */
int store_sync_write_rcpt(STORE *st, sqlite3_stmt *s, const char *address, const SYNC_OBJ *o,
                          const char *kind, long long now)
{
    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_int64(s, 2, st->sync->run.source_id) != SQLITE_OK
        || sqlite3_bind_int64(s, 3, o->id) != SQLITE_OK
        || sqlite3_bind_text(s, 4, kind, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_int(s, 5, o->flags) != SQLITE_OK
        || sqlite3_bind_int64(s, 6, now) != SQLITE_OK)
        return store_fail(st, "storing recipients");
    return store_step_done(st, s, "storing recipients");
}

/* store_sync_del_rcpt - delete one address of the source */
int store_sync_del_rcpt(STORE *st, const char *address)
{
    sqlite3_stmt *s = st->sstmt[SSTMT_RCPT_DELETE];

    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_int64(s, 2, st->sync->run.source_id) != SQLITE_OK)
        return store_fail(st, "removing recipients");
    return store_step_done(st, s, "removing recipients");
}

/* store_sync_del_id - run a one-id delete (an object, an object's recipients); rows deleted or -1 */
long long store_sync_del_id(STORE *st, int which, long long id, const char *what)
{
    sqlite3_stmt *s = st->sstmt[which];

    if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK)
        return store_fail(st, what);
    if (store_step_done(st, s, what) < 0)
        return -1;
    return sqlite3_changes(st->db);
}

/* store_sync_pair - a LOGIN_ or MEMBER_ statement on (name or group, id or member); rows changed or -1 */
int store_sync_pair(STORE *st, int which, long long a, const char *name, long long b)
{
    sqlite3_stmt *s = st->sstmt[which];
    int rc = name ? sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) : sqlite3_bind_int64(s, 1, a);

    if (rc != SQLITE_OK || sqlite3_bind_int64(s, 2, b) != SQLITE_OK)
        return store_fail(st, "storing logins and members");
    if (store_step_done(st, s, "storing logins and members") < 0)
        return -1;
    return sqlite3_changes(st->db);
}

/* store_sync_row_add - a login or membership row to delete once the scan is over */
void store_sync_row_add(STORE_SYNC *y, long long id, const char *name, long long member)
{
    y->rows = store_sync_grow(y->rows, &y->caprows, y->nrows, sizeof(*y->rows), 256);
    y->rows[y->nrows].id = id;
    y->rows[y->nrows].name = name ? store_bulk_strdup(&y->arena, name) : NULL;
    y->rows[y->nrows].member = member;
    y->nrows++;
}

/* store_sync_obj_text - "dn" (guid G, object N) of source S, for the collision log lines */
const char *store_sync_obj_text(char *buf, size_t size, const char *source, const char *dn,
                                const char *guid, long long id)
{
    if (dn != NULL && *dn != 0)
        snprintf(buf, size, "\"%.300s\" (guid %.100s, object %lld) of source %.100s", dn, guid, id,
                 source);
    else
        snprintf(buf, size, "guid %.100s (object %lld) of source %.100s", guid, id, source);
    return buf;
}

/* store_sync_obj_by_id - the object of id, as store_sync_obj_text (for a holder not in the pull) */
const char *store_sync_obj_by_id(STORE *st, char *buf, size_t size, long long id)
{
    sqlite3_stmt *s = st->sstmt[SSTMT_OBJ_BY_ID];

    if (sqlite3_bind_int64(s, 1, id) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        store_sync_obj_text(buf, size, st->sync->run.source, store_text(s, 1), store_text(s, 0), id);
    else
        snprintf(buf, size, "object %lld of source %.100s", id, st->sync->run.source);
    sqlite3_reset(s);
    return buf;
}

/* store_sync_claim - add (insert 1) or drop (0) the claim of object id on address; rows changed or -1 */
int store_sync_claim(STORE *st, int insert, const char *address, long long id, long long now)
{
    sqlite3_stmt *s = st->sstmt[insert ? SSTMT_CLAIM_INSERT : SSTMT_CLAIM_DELETE];

    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_int64(s, 2, id) != SQLITE_OK
        || (insert && sqlite3_bind_int64(s, 3, now) != SQLITE_OK))
        return store_fail(st, "storing claims");
    if (store_step_done(st, s, "storing claims") < 0)
        return -1;
    if (insert)
        st->sync->claims_added += sqlite3_changes(st->db);
    else
        st->sync->claims_removed += sqlite3_changes(st->db);
    return sqlite3_changes(st->db);
}

/*
 * store_sync_cross - a new row of address for object o: an object of
 * another source holding it too is a collision across sources. Each
 * source keeps its row; lookups answer with the oldest source's, and only
 * its object passes the sender-login check (store_login.c). Told once,
 * by the pull that adds the second row. Asked only when another source
 * has objects at all, so that a store of one directory pays nothing.
 */
int store_sync_cross(STORE *st, const char *address, const SYNC_OBJ *o)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s;
    char a[STORE_SYNC_OBJ_TEXT], b[STORE_SYNC_OBJ_TEXT];
    int rc;

    if (y->others < 0) {
        long long n = 0;

        s = st->sstmt[SSTMT_OTHER_OBJS];
        if (sqlite3_bind_int64(s, 1, y->run.source_id) != SQLITE_OK
            || store_step_count(st, s, "reading objects", &n) < 0)
            return -1;
        y->others = n != 0;
    }
    if (!y->others)
        return 0;
    s = st->sstmt[SSTMT_OTHER_HOLDER];
    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_int64(s, 2, y->run.source_id) != SQLITE_OK)
        return store_fail(st, "reading recipients");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *other = store_text(s, 0);
        int older = sqlite3_column_int(s, 4);

        log_warn("source %s: address collision: %s is held by %s and also by %s; "
                 "lookups and the sender-login check go to the %s, of the older source",
                 y->run.source, address,
                 store_sync_obj_text(a, sizeof(a), other, store_text(s, 2), store_text(s, 1),
                                     sqlite3_column_int64(s, 3)),
                 store_sync_obj_text(b, sizeof(b), y->run.source, o->dn, o->guid, o->id),
                 older ? "first" : "second");
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_fail(st, "reading recipients");
    return 0;
}

/* store_sync_settings - see store_sync.h */
int store_sync_settings(STORE *st, const char *settings)
{
    if (st->sync == NULL)
        return store_errf(st, "no sync in progress");
    free(st->sync->settings);
    st->sync->settings = settings ? xstrdup(settings) : NULL;
    return 0;
}

/* sync_state_set - the source's cookie, invocation id and settings (in the write transaction) */
static int sync_state_set(STORE *st, const char *cookie, const char *invocation_id)
{
    sqlite3_stmt *s = st->sstmt[SSTMT_STATE_SET];
    const char *settings = st->sync->settings;
    int rc;

    rc = sqlite3_bind_int64(s, 1, st->sync->run.source_id);
    if (rc == SQLITE_OK)
        rc = cookie ? sqlite3_bind_text(s, 2, cookie, -1, SQLITE_STATIC) : sqlite3_bind_null(s, 2);
    if (rc == SQLITE_OK)
        rc = invocation_id ? sqlite3_bind_text(s, 3, invocation_id, -1, SQLITE_STATIC)
            : sqlite3_bind_null(s, 3);
    if (rc == SQLITE_OK)
        rc = settings ? sqlite3_bind_text(s, 4, settings, -1, SQLITE_STATIC) : sqlite3_bind_null(s, 4);
    if (rc != SQLITE_OK)
        return store_fail(st, "storing the sync state");
    return store_step_done(st, s, "storing the sync state");
}

/* store_sync_finish - store the state, record the run, commit, log; 0 or -1 */
int store_sync_finish(STORE *st, const char *cookie, const char *invocation_id, STORE_COUNTS *counts)
{
    STORE_SYNC *y = st->sync;
    struct timespec t1;
    char msg[512];

    if (sync_state_set(st, cookie, invocation_id) < 0
        || store_bulk_run_add(st, &y->run, 1, "ok", "", &y->counts) < 0
        || store_bulk_commit(st, &y->run) < 0)
        return -1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* The caller logs one line per run; these details are for debugging. */
    snprintf(msg, sizeof(msg), "store %s: source %s: %s sync applied in %lld ms: recipients "
             "+%lld ~%lld -%lld, objects +%lld ~%lld -%lld, logins +%lld -%lld, members +%lld -%lld, "
             "claims +%lld -%lld",
             st->path, y->run.source, y->run.mode,
             (long long) (t1.tv_sec - y->run.t0.tv_sec) * 1000
             + (t1.tv_nsec - y->run.t0.tv_nsec) / 1000000,
             y->counts.added, y->counts.changed, y->counts.removed,
             y->o_added, y->o_changed, y->o_removed,
             y->l_added, y->l_removed, y->m_added, y->m_removed, y->claims_added, y->claims_removed);
    log_debug("%s", msg);
    if (counts != NULL)
        *counts = y->counts;
    return 0;
}

/* store_sync_commit - apply the full pull in one transaction and record the run */
int store_sync_commit(STORE *st, const char *cookie, const char *invocation_id, STORE_COUNTS *counts)
{
    int rc;

    if (store_usable(st) < 0)
        return -1;
    if (st->sync == NULL || st->sync->delta)
        return store_errf(st, "no full sync in progress");
    if (st->sync->legacy)
        rc = store_sync_legacy_merge(st) < 0 || store_sync_legacy_apply(st) < 0 ? -1 : 0;
    else
        rc = store_sync_stage_merge(st) < 0 || store_sync_stage_apply(st) < 0 ? -1 : 0;
    rc = rc < 0 || store_sync_finish(st, cookie, invocation_id, counts) < 0 ? -1 : 0;
    store_sync_forget(st);
    return rc;
}

/* store_sync_refuse - apply nothing; record the run with outcome and message */
int store_sync_refuse(STORE *st, const char *outcome, const char *message, const STORE_COUNTS *counts)
{
    int rc;

    if (store_usable(st) < 0)
        return -1;
    if (st->sync == NULL || st->sync->delta)
        return store_errf(st, "no full sync in progress");
    store_sync_stage_end(st);           /* the staging transaction, if open */
    rc = store_bulk_refuse(st, &st->sync->run, outcome, message, counts);
    store_sync_forget(st);
    return rc;
}

/* store_sync_abort - apply nothing; safe without begin or after an error */
void store_sync_abort(STORE *st)
{
    if (st == NULL || st->db == NULL || st->sync == NULL || st->sync->delta)
        return;
    store_sync_forget(st);
}

/* --- state */

/* store_sync_state_get - 1 found (caller frees), 0 no such source, -1 */
int store_sync_state_get(STORE *st, const char *source, STORE_SYNC_STATE *out)
{
    sqlite3_stmt *s;
    int rc;

    memset(out, 0, sizeof(*out));
    if (store_usable(st) < 0)
        return -1;
    if (store_bulk_prepare(st, st->sstmt, store_ssql, SSTMT_COUNT) < 0)
        return -1;
    s = st->sstmt[SSTMT_STATE_GET];
    if (sqlite3_bind_text(s, 1, source, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "reading the sync state");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(s, 0) != SQLITE_NULL)
            out->cookie = xstrdup(store_text(s, 0));
        if (sqlite3_column_type(s, 1) != SQLITE_NULL)
            out->invocation_id = xstrdup(store_text(s, 1));
        out->last_success = sqlite3_column_int64(s, 2);
        if (sqlite3_column_type(s, 3) != SQLITE_NULL)
            out->settings = xstrdup(store_text(s, 3));
    } else if (rc != SQLITE_DONE) {
        store_fail(st, "reading the sync state");
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* store_sync_state_free - free what store_sync_state_get copied; NULL is fine */
void store_sync_state_free(STORE_SYNC_STATE *state)
{
    if (state == NULL)
        return;
    free(state->cookie);
    free(state->invocation_id);
    free(state->settings);
    state->cookie = state->invocation_id = state->settings = NULL;
}

/* store_source_synced - has the source name ever had a sync applied? 1 yes, 0 no, -1 error */
int store_source_synced(STORE *st, const char *name)
{
    sqlite3_stmt *s;
    long long n = 0;

    if (store_usable(st) < 0)
        return -1;
    if (store_bulk_prepare(st, st->sstmt, store_ssql, SSTMT_COUNT) < 0)
        return -1;
    s = st->sstmt[SSTMT_SYNCED];
    if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK) {
        sqlite3_reset(s);
        return store_fail(st, "source state");
    }
    if (store_step_count(st, s, "source state", &n) < 0)
        return -1;
    return n > 0;
}

/* store_sync_age - seconds since the oldest last_success of the directory sources */
int store_sync_age(STORE *st, long long *age)
{
    sqlite3_stmt *s;
    int rc;

    if (store_usable(st) < 0)
        return -1;
    if (store_bulk_prepare(st, st->sstmt, store_ssql, SSTMT_COUNT) < 0)
        return -1;
    s = st->sstmt[SSTMT_AGE];
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        long long now = store_now();

        *age = sqlite3_column_int64(s, 0) == 0 ? -1 : now - sqlite3_column_int64(s, 1);
        if (*age < -1)
            *age = 0;                   /* a clock stepped back */
    } else if (rc == SQLITE_DONE) {
        store_errf(st, "sync age: no result");
    } else {
        store_fail(st, "sync age");
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* store_source_del_prepare - a statement bound to the source's name; NULL with the error set */
static sqlite3_stmt *store_source_del_prepare(STORE *st, const char *sql, const char *name)
{
    sqlite3_stmt *s;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        store_fail(st, "removing a source");
        return NULL;
    }
    if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK) {
        store_fail(st, "removing a source");
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

/* store_source_del - a source and all it holds, gone (store_sync.h) */
int store_source_del(STORE *st, const char *name, long long *recipients)
{
    sqlite3_stmt *s;
    int rc = -1;

    *recipients = 0;
    if (store_usable(st) < 0)
        return -1;
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return store_fail(st, "removing a source");
    if ((s = store_source_del_prepare(st, "SELECT count(*) FROM recipient r JOIN source s "
                                      "ON s.id = r.source_id WHERE s.name = ?1", name)) == NULL)
        goto out;
    if (store_step_count(st, s, "removing a source", recipients) < 0) {
        sqlite3_finalize(s);
        goto out;
    }
    sqlite3_finalize(s);
    /* What it holds goes with it: every table refers to source or object ON DELETE CASCADE. */
    if ((s = store_source_del_prepare(st, "DELETE FROM source WHERE name = ?1 AND type <> 'static'",
                                      name)) == NULL)
        goto out;
    if (store_step_done(st, s, "removing a source") == 0)
        rc = sqlite3_changes(st->db) > 0 ? 1 : 0;
    sqlite3_finalize(s);
    if (rc >= 0 && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = store_fail(st, "removing a source");
out:
    if (!sqlite3_get_autocommit(st->db))
        (void) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
