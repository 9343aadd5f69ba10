/*
 * store_sync.c - directory objects into the store (used by rcptgate-syncd)
 *
 * A full pull is collected in memory while nothing is locked (a directory
 * fetch may take minutes and must not block the admin command): every
 * object with copies of its strings in an arena. At store_sync_diff (or
 * store_sync_commit) the write lock is taken and the pull is compared
 * with the store, each table read once in the order it is stored in, so
 * that SQLite neither sorts nor reads at random:
 *
 *  - objects in rowid order, each found by guid in a hash table of the
 *    pull: insert, update (dn, kind, flags; the id stays, so a rename
 *    keeps its memberships), or delete (cascading to logins and
 *    memberships);
 *  - recipients in address order (the primary key) beside the pull's
 *    addresses, sorted: insert, update (kind, flags or owning object
 *    changed), delete;
 *  - logins and memberships in object id order (their indexes), after
 *    the objects are written, so that new objects have their ids.
 *
 * Only the differences are written: a re-sync of an unchanged directory
 * reads the tables once and writes the run record, which keeps the WAL
 * small for the readers sharing the disk. New rows go in with multi-row
 * INSERTs (store_bulk.c), new objects with the ids sync_apply gives them,
 * and with foreign keys off for the transaction: the rows written point
 * only at objects and the source read or written under the same lock,
 * and a removed object's rows are deleted here as ON DELETE CASCADE
 * would (see sync_fk_known). Together that halves the writing time.
 *
 * Member DNs are resolved, ASCII case-insensitively, against the DNs of
 * the objects of the same pull through a hash table; DNs that match
 * nothing (members that are not mail-enabled) are dropped. An address
 * carried by several objects stays with the object that holds it in the
 * store; when none of them does, it goes to the lowest guid, so the
 * choice does not depend on the directory's order. The others' claims
 * are kept in the claim table (sync_apply_claims), and told once.
 *
 * An incremental pull is buffered the same way and applied at commit,
 * object by object with point statements; its member DNs are resolved
 * after the pull's objects are written, by one scan of the source's
 * objects (see delta_index_dns). Both commits store the cookie in the
 * same transaction as the data; any error rolls everything back.
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
    [SSTMT_STATE_SET] = "UPDATE source SET cookie = ?2, invocation_id = ?3 WHERE id = ?1",
    [SSTMT_STATE_GET] = "SELECT cookie, invocation_id, COALESCE(last_success, 0) "
        "FROM source WHERE name = ?1",
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

/* sync_prefix - the first 8 bytes of s as a big-endian number (strcmp order) */
static uint64_t sync_prefix(const char *s)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < 8 && s[i] != 0; i++)
        v = v << 8 | (unsigned char) s[i];
    return i == 0 ? 0 : v << (8 * (8 - i));
}

/* sync_key_cmp - qsort order of SYNC_KEY: s as strcmp, then a, then b */
static int sync_key_cmp(const void *x, const void *y)
{
    const SYNC_KEY *p = x;
    const SYNC_KEY *q = y;
    int d;

    if (p->pfx != q->pfx)
        return p->pfx < q->pfx ? -1 : 1;
    /* Equal prefixes: both strings ended inside it (equal), or both go on. */
    if ((p->pfx & 0xff) != 0 && (d = strcmp(p->s + 8, q->s + 8)) != 0)
        return d;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return (p->b > q->b) - (p->b < q->b);
}

/* sync_key_eq - the same string (keys from sync_prefix) */
static int sync_key_eq(const SYNC_KEY *p, const SYNC_KEY *q)
{
    return p->pfx == q->pfx && ((p->pfx & 0xff) == 0 || strcmp(p->s + 8, q->s + 8) == 0);
}

/*
 * sync_sort_keys - sort keys as sync_key_cmp: a stable LSD radix sort on
 * the prefixes, 16 bits a pass (passes where every key has the same digit
 * are skipped), then qsort on each run of equal prefixes. For a million
 * keys this is several times faster than qsort alone, which pays a
 * function call and often a string comparison per step.
 */
static void sync_sort_keys(SYNC_KEY *k, size_t n)
{
    SYNC_KEY *tmp, *from = k, *to;
    size_t *count;
    size_t i, j;

    if (n < 1024) {
        qsort(k, n, sizeof(*k), sync_key_cmp);
        return;
    }
    tmp = xmalloc(n * sizeof(*tmp));
    count = xmalloc(65536 * sizeof(*count));
    to = tmp;
    for (int shift = 0; shift < 64; shift += 16) {
        size_t sum = 0;

        memset(count, 0, 65536 * sizeof(*count));
        for (i = 0; i < n; i++)
            count[(from[i].pfx >> shift) & 0xffff]++;
        if (count[(from[0].pfx >> shift) & 0xffff] == n)
            continue;                   /* one digit for all: nothing to move */
        for (i = 0; i < 65536; i++) {
            size_t c = count[i];

            count[i] = sum;
            sum += c;
        }
        for (i = 0; i < n; i++)
            to[count[(from[i].pfx >> shift) & 0xffff]++] = from[i];
        to = from;
        from = from == k ? tmp : k;
    }
    if (from != k)
        memcpy(k, from, n * sizeof(*k));
    free(count);
    free(tmp);
    for (i = 0; i < n; i = j) {
        for (j = i + 1; j < n && k[j].pfx == k[i].pfx; j++)
            ;
        if (j - i > 1)
            qsort(k + i, j - i, sizeof(*k), sync_key_cmp);
    }
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

/* sync_unique_strs - sort a list of strings and drop repeats; the new count */
static uint32_t sync_unique_strs(const char **v, uint32_t n)
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

/* sync_index_dns - the DN table of a full pull; of objects sharing a DN the lowest guid stays */
static void sync_index_dns(STORE_SYNC *y)
{
    store_sync_map_init(&y->dns, y->nobjs, y->nobjs ? &y->objs[0].dn : NULL, sizeof(*y->objs), 1);
    for (size_t i = 0; i < y->nobjs; i++) {
        uint32_t *slot;

        if (*y->objs[i].dn == 0)
            continue;
        slot = store_sync_map_slot(&y->dns, y->objs[i].dn);
        if (*slot == 0 || strcmp(y->objs[i].guid, y->objs[*slot - 1].guid) < 0)
            *slot = (uint32_t) i + 1;
    }
}

/* sync_resolve - a group's member ids (sorted, unique) into y->ids, through the DN map */
static void sync_resolve(STORE_SYNC *y, const SYNC_OBJ *g)
{
    const char **dns = store_sync_members(g);

    y->nids = 0;
    for (uint32_t i = 0; i < g->n_member; i++) {
        uint32_t *slot = store_sync_map_slot(&y->dns, dns[i]);

        if (*slot == 0)
            continue;                   /* not in this source: not mail-enabled, say */
        y->ids = store_sync_grow(y->ids, &y->capids, y->nids, sizeof(*y->ids), 64);
        y->ids[y->nids++] = y->objs[*slot - 1].id;
    }
    y->nids = store_sync_unique_ids(y->ids, y->nids);
}

/* --- begin, put, forget */

/* store_sync_forget - forget a sync in progress: roll back what is open, free */
void store_sync_forget(STORE *st)
{
    STORE_SYNC *y = st->sync;

    if (y == NULL)
        return;
    store_bulk_run_free(st, &y->run);
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

/* store_sync_add - copy an object (op SOP_KEEP) or a deletion (SOP_DELETE) into the pull */
int store_sync_add(STORE *st, const STORE_OBJECT *obj, const char *guid, int op)
{
    STORE_SYNC *y = st->sync;
    SYNC_OBJ *o;
    size_t n = 0;
    int kind = 0;

    if (guid == NULL || *guid == 0)
        return store_errf(st, "an object without a guid");
    if (y->nobjs >= UINT32_MAX)
        return store_errf(st, "too many objects in one pull");
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
        o->n_addr = sync_unique_strs(v, (uint32_t) obj->n_addresses);
        for (size_t i = 0; i < obj->n_logins; i++)
            v[o->n_addr + i] = store_bulk_strdup(&y->arena, obj->logins[i]);
        o->n_login = sync_unique_strs(v + o->n_addr, (uint32_t) obj->n_logins);
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
    return store_sync_start(st, source, type, 0);
}

/* store_sync_put - one object of the full pull (copied) */
int store_sync_put(STORE *st, const STORE_OBJECT *obj)
{
    if (store_usable(st) < 0)
        return -1;
    if (st->sync == NULL || st->sync->delta)
        return store_errf(st, "no full sync in progress");
    if (st->sync->merged)
        return store_errf(st, "store_sync_put after store_sync_diff");
    if (obj == NULL)
        return store_errf(st, "no object");
    return store_sync_add(st, obj, obj->guid, SOP_KEEP);
}

/* --- the full pull: merge */

/*
 * sync_sort_addrs - the wanted addresses in address order, one entry per
 * address. An address claimed by several objects is recorded in colls,
 * and goes for now to the claimant with the lowest guid, whatever the
 * order of the pull; sync_merge_addrs gives it back to its holder in the
 * store when that object still claims it.
 */
static void sync_sort_addrs(STORE_SYNC *y)
{
    size_t n = 0, out = 0, i, j;

    for (i = 0; i < y->nobjs; i++)
        n += y->objs[i].n_addr;
    y->addrs = xmalloc((n ? n : 1) * sizeof(*y->addrs));
    for (i = 0; i < y->nobjs; i++) {
        const SYNC_OBJ *o = &y->objs[i];

        for (uint32_t a = 0; a < o->n_addr; a++) {
            SYNC_KEY *k = &y->addrs[out++];

            k->pfx = sync_prefix(o->list[a]);
            k->s = o->list[a];
            k->a = (uint32_t) i;
            k->b = SOP_KEEP;
        }
    }
    sync_sort_keys(y->addrs, n);
    out = 0;
    y->ncolls = y->nclaimants = 0;
    for (i = 0; i < n; i = j) {
        size_t best = i;

        /* A repeat is another object's claim: put made each object's list unique. */
        for (j = i + 1; j < n && sync_key_eq(&y->addrs[i], &y->addrs[j]); j++)
            if (strcmp(y->objs[y->addrs[j].a].guid, y->objs[y->addrs[best].a].guid) < 0)
                best = j;
        if (j - i > 1) {
            SYNC_COLL *c;

            y->colls = store_sync_grow(y->colls, &y->capcolls, y->ncolls, sizeof(*y->colls), 16);
            c = &y->colls[y->ncolls++];
            c->address = y->addrs[i].s;
            c->key = (uint32_t) out;
            c->first = (uint32_t) y->nclaimants;
            c->n = (uint32_t) (j - i);
            for (size_t x = i; x < j; x++) {
                y->claimants = store_sync_grow(y->claimants, &y->capclaimants, y->nclaimants,
                                               sizeof(*y->claimants), 64);
                y->claimants[y->nclaimants++] = y->addrs[x].a;
            }
        }
        y->addrs[out++] = y->addrs[best];
    }
    y->naddrs = out;
}

/* sync_addr_find - the entry of address in the pull's sorted, unique address list, or NULL */
static const SYNC_KEY *sync_addr_find(const STORE_SYNC *y, const char *address)
{
    size_t lo = 0, hi = y->naddrs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = strcmp(y->addrs[mid].s, address);

        if (d == 0)
            return &y->addrs[mid];
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* sync_coll_find - the collision record of address, or NULL */
static const SYNC_COLL *sync_coll_find(const STORE_SYNC *y, const char *address)
{
    size_t lo = 0, hi = y->ncolls;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = strcmp(y->colls[mid].address, address);

        if (d == 0)
            return &y->colls[mid];
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/*
 * sync_merge_objects - compare the pull's objects with the source's: the
 * table in rowid order (a sequential read), each row found by its guid
 * in the pull's table. Objects no row matched are new.
 */
static int sync_merge_objects(STORE *st, STORE_SYNC *y)
{
    sqlite3_stmt *s = st->sstmt[SSTMT_OBJ_SCAN];
    int rc;

    if (sqlite3_bind_int64(s, 1, y->run.source_id) != SQLITE_OK)
        return store_fail(st, "reading the source's objects");
    free(y->byid);
    y->byid = xmalloc((y->nobjs ? y->nobjs : 1) * sizeof(*y->byid));
    y->nbyid = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        uint32_t *slot = store_sync_map_slot(&y->guids, store_text(s, 1));

        if (*slot != 0) {
            SYNC_OBJ *o = &y->objs[*slot - 1];

            o->id = sqlite3_column_int64(s, 0);
            if (y->nbyid > 0 && y->objs[y->byid[y->nbyid - 1]].id >= o->id)
                y->byid_unsorted = 1;
            y->byid[y->nbyid++] = *slot - 1;
            if (strcmp(o->dn, store_text(s, 2)) != 0
                || strcmp(y->kinds[o->kind], store_text(s, 3)) != 0
                || o->flags != sqlite3_column_int(s, 4)) {
                o->op = SOP_UPDATE;
                y->o_changed++;
            } else {
                o->op = SOP_KEEP;
            }
        } else {
            y->gone_objs = store_sync_grow(y->gone_objs, &y->capgone_objs, y->ngone_objs,
                                           sizeof(*y->gone_objs), 1024);
            y->gone_objs[y->ngone_objs++] = sqlite3_column_int64(s, 0);
            y->o_removed++;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_fail(st, "reading the source's objects");
    for (size_t i = 0; i < y->nobjs; i++) {
        if (y->objs[i].id == 0) {
            y->objs[i].op = SOP_INSERT;
            y->o_added++;
        }
    }
    return 0;
}

/*
 * sync_merge_addrs - compare the wanted addresses with the source's
 * recipients, by address. A row is kept when its kind, flags and owning
 * object are what the pull says; a row of an object that is new (id 0
 * yet) or of an imported row (object_id NULL, -1 here) is never kept.
 * An address several objects carry stays with the row's object when that
 * object is one of them: the first holder keeps it.
 */
static int sync_merge_addrs(STORE *st, STORE_SYNC *y)
{
    sqlite3_stmt *s = st->sstmt[SSTMT_RCPT_SCAN];
    size_t i = 0;
    int rc;

    if (sqlite3_bind_int64(s, 1, y->run.source_id) != SQLITE_OK)
        return store_fail(st, "reading the source's recipients");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *addr = store_text(s, 0);
        int d = 1;

        while (i < y->naddrs && (d = strcmp(y->addrs[i].s, addr)) < 0) {
            y->addrs[i++].b = SOP_INSERT;
            y->counts.added++;
        }
        if (i < y->naddrs && d == 0) {
            SYNC_KEY *k = &y->addrs[i++];
            const SYNC_OBJ *o = &y->objs[k->a];
            long long owner = sqlite3_column_type(s, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 1);
            const SYNC_COLL *c;

            /* The first holder keeps it while it claims it: another claim does not move it. */
            if (o->id != owner && owner > 0 && (c = sync_coll_find(y, addr)) != NULL)
                for (uint32_t x = 0; x < c->n; x++)
                    if (y->objs[y->claimants[c->first + x]].id == owner) {
                        k->a = y->claimants[c->first + x];
                        o = &y->objs[k->a];
                        break;
                    }

            if (o->id != owner || strcmp(y->kinds[o->kind], store_text(s, 2)) != 0
                || o->flags != sqlite3_column_int(s, 3)) {
                k->b = SOP_UPDATE;
                y->counts.changed++;
            } else {
                k->b = SOP_KEEP;
                y->counts.kept++;
            }
        } else {
            y->gone_addrs = store_sync_grow(y->gone_addrs, &y->capgone_addrs, y->ngone_addrs,
                                            sizeof(*y->gone_addrs), 1024);
            y->gone_addrs[y->ngone_addrs++] = store_bulk_strdup(&y->arena, addr);
            y->counts.removed++;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_fail(st, "reading the source's recipients");
    for (; i < y->naddrs; i++) {
        y->addrs[i].b = SOP_INSERT;
        y->counts.added++;
    }
    return 0;
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

/* sync_del_obj - remove a removed object and, with foreign keys off, what cascades from it */
static int sync_del_obj(STORE *st, long long id)
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

/* sync_merge - take the write lock, then compare objects and addresses (once) */
static int sync_merge(STORE *st)
{
    STORE_SYNC *y = st->sync;
    struct timespec t;

    if (y->merged)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (store_sync_lock(st) < 0)
        return -1;
    store_bulk_lap(st, "locking", &t);
    store_sync_index_guids(y, 1);
    sync_sort_addrs(y);
    if (log_debug_enabled())
        log_debug("store %s: source %s: %zu objects, %zu addresses, %zu MB of strings",
                  st->path, y->run.source, y->nobjs, y->naddrs,
                  store_bulk_arena_size(&y->arena) >> 20);
    store_bulk_lap(st, "sorting the pull", &t);
    if (sync_merge_objects(st, y) < 0 || sync_merge_addrs(st, y) < 0)
        return -1;
    store_sync_map_free(&y->guids);           /* done with: room for SQLite's page cache */
    store_bulk_lap(st, "comparing with the store", &t);
    y->merged = 1;
    return 0;
}

/* store_sync_diff - counts of recipient addresses commit would add, change, remove */
int store_sync_diff(STORE *st, STORE_COUNTS *counts)
{
    if (store_usable(st) < 0)
        return -1;
    if (st->sync == NULL || st->sync->delta)
        return store_errf(st, "no full sync in progress");
    if (sync_merge(st) < 0) {
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

/*
 * sync_byid - object indexes in id order (once the objects are written).
 * Usually there is nothing to do: the object scan appended the objects it
 * found in id order, and sync_apply the new ones as it gave them ids
 * above every id there was. Otherwise (a scan out of order) sort.
 */
static void sync_byid(STORE_SYNC *y)
{
    /* Sort (id, index) pairs: the id first, so sync_id_cmp serves. */
    struct { long long id; long long i; } *v;

    if (y->byid != NULL && !y->byid_unsorted && y->nbyid == y->nobjs)
        return;
    free(y->byid);
    v = xmalloc((y->nobjs ? y->nobjs : 1) * sizeof(*v));
    for (size_t i = 0; i < y->nobjs; i++) {
        v[i].id = y->objs[i].id;
        v[i].i = (long long) i;
    }
    qsort(v, y->nobjs, sizeof(*v), sync_id_cmp);
    y->byid = xmalloc((y->nobjs ? y->nobjs : 1) * sizeof(*y->byid));
    for (size_t i = 0; i < y->nobjs; i++)
        y->byid[i] = (uint32_t) v[i].i;
    y->nbyid = y->nobjs;
    y->byid_unsorted = 0;
    free(v);
}

/*
 * sync_cursor - walks the pull's objects in id order beside a scan of
 * (object id, value) rows in (id, value) order. sync_cursor_at moves to
 * the row's object: objects passed over had no rows and are marked dirty
 * when they want some; it returns the object of the row, or NULL (a row
 * of no object in the pull: delete it).
 */
typedef struct sync_cursor {
    STORE_SYNC *y;
    uint8_t bit;                        /* DIRTY_LOGINS or DIRTY_MEMBERS */
    size_t k;                           /* next index into byid */
    SYNC_OBJ *cur;                      /* object of the last row */
    long long cur_id;
    size_t j;                           /* next wanted value of cur */
    size_t nwant;                       /* wanted values of cur */
} SYNC_CURSOR;

/* sync_wants - how many values object o wants (logins, or resolved members into y->ids) */
static size_t sync_wants(SYNC_CURSOR *c, const SYNC_OBJ *o)
{
    if (c->bit == DIRTY_LOGINS)
        return o->n_login;
    if (o->n_member == 0)
        return 0;
    sync_resolve(c->y, o);
    return c->y->nids;
}

/* sync_cursor_finish - the object left behind: wanted values not seen make it dirty */
static void sync_cursor_finish(SYNC_CURSOR *c)
{
    if (c->cur != NULL && c->j < c->nwant)
        c->cur->dirty |= c->bit;
    c->cur = NULL;
}

/* sync_cursor_at - move to the object of id; see SYNC_CURSOR */
static SYNC_OBJ *sync_cursor_at(SYNC_CURSOR *c, long long id)
{
    STORE_SYNC *y = c->y;

    if (c->cur != NULL && c->cur_id == id)
        return c->cur;
    sync_cursor_finish(c);
    c->cur_id = id;
    while (c->k < y->nobjs && y->objs[y->byid[c->k]].id < id) {
        SYNC_OBJ *o = &y->objs[y->byid[c->k++]];

        if (c->bit == DIRTY_LOGINS ? o->n_login > 0 : o->n_member > 0)
            o->dirty |= c->bit;
    }
    if (c->k < y->nobjs && y->objs[y->byid[c->k]].id == id) {
        c->cur = &y->objs[y->byid[c->k++]];
        c->j = 0;
        c->nwant = sync_wants(c, c->cur);
        return c->cur;
    }
    return NULL;
}

/* sync_cursor_end - after the last row: the rest had no rows */
static void sync_cursor_end(SYNC_CURSOR *c)
{
    STORE_SYNC *y = c->y;

    sync_cursor_finish(c);
    for (; c->k < y->nobjs; c->k++) {
        SYNC_OBJ *o = &y->objs[y->byid[c->k]];

        if (c->bit == DIRTY_LOGINS ? o->n_login > 0 : o->n_member > 0)
            o->dirty |= c->bit;
    }
}

/*
 * sync_merge_pairs - compare logins (bit DIRTY_LOGINS) or memberships
 * (DIRTY_MEMBERS) of the source's objects with the pull: rows nobody
 * wants are collected for deletion, objects missing a row are marked
 * dirty. Runs after the objects are written, in object id order.
 */
static int sync_merge_pairs(STORE *st, uint8_t bit)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = st->sstmt[bit == DIRTY_LOGINS ? SSTMT_LOGIN_SCAN : SSTMT_MEMBER_SCAN];
    SYNC_CURSOR c = {.y = y, .bit = bit};
    const char *what = bit == DIRTY_LOGINS ? "reading logins" : "reading members";
    int any = 0;
    int rc;

    y->nrows = 0;
    if (sqlite3_bind_int64(s, 1, y->run.source_id) != SQLITE_OK)
        return store_fail(st, what);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        long long id = sqlite3_column_int64(s, 0);
        SYNC_OBJ *o;

        if (!any) {
            any = 1;
            sync_byid(y);
        }
        if ((o = sync_cursor_at(&c, id)) == NULL) {
            store_sync_row_add(y, id, bit == DIRTY_LOGINS ? store_text(s, 1) : NULL, sqlite3_column_int64(s, 1));
            continue;
        }
        if (bit == DIRTY_LOGINS) {
            const char **want = store_sync_logins(o);
            const char *name = store_text(s, 1);
            int d = 1;

            while (c.j < c.nwant && (d = strcmp(want[c.j], name)) < 0) {
                o->dirty |= bit;
                c.j++;
            }
            if (c.j < c.nwant && d == 0)
                c.j++;
            else
                store_sync_row_add(y, id, name, 0);
        } else {
            long long member = sqlite3_column_int64(s, 1);

            while (c.j < c.nwant && y->ids[c.j] < member) {
                o->dirty |= bit;
                c.j++;
            }
            if (c.j < c.nwant && y->ids[c.j] == member)
                c.j++;
            else
                store_sync_row_add(y, id, NULL, member);
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_fail(st, what);
    if (!any) {
        /* Nothing stored: every object that wants a row is missing it. */
        for (size_t i = 0; i < y->nobjs; i++)
            if (bit == DIRTY_LOGINS ? y->objs[i].n_login > 0 : y->objs[i].n_member > 0)
                y->objs[i].dirty |= bit;
    } else {
        sync_cursor_end(&c);
    }
    return 0;
}

/* sync_any_dirty - whether any object misses a row of its logins (or members) */
static int sync_any_dirty(const STORE_SYNC *y, uint8_t bit)
{
    for (size_t i = 0; i < y->nobjs; i++)
        if (y->objs[i].dirty & bit)
            return 1;
    return 0;
}

/*
 * The batched inserts of a full pull (store_bulk.c). Fixed parameters:
 * ?1 the source id, ?2 the time. New objects get their ids here (the
 * largest id so far plus one, in order: what SQLite itself would pick),
 * so that their rows can be inserted many at a time.
 */
static const int sync_obj_cols[] = {0, 1, 0, 0, 0, 0, 2};
static const int sync_rcpt_cols[] = {0, 1, 0, 0, 0, 2};
static const int sync_pair_cols[] = {0, 0};

/* sync_apply_pairs - delete the rows sync_merge_pairs collected, add what dirty objects miss */
static int sync_apply_pairs(STORE *st, STORE_BATCH *b, uint8_t bit)
{
    STORE_SYNC *y = st->sync;
    int del = bit == DIRTY_LOGINS ? SSTMT_LOGIN_DELETE : SSTMT_MEMBER_DELETE;
    long long *removed = bit == DIRTY_LOGINS ? &y->l_removed : &y->m_removed;
    long long *added = bit == DIRTY_LOGINS ? &y->l_added : &y->m_added;
    int n;

    for (size_t i = 0; i < y->nrows; i++) {
        const SYNC_ROW *r = &y->rows[i];

        n = bit == DIRTY_LOGINS ? store_sync_pair(st, del, 0, r->name, r->id)
            : store_sync_pair(st, del, r->id, NULL, r->member);
        if (n < 0)
            return -1;
        *removed += n;
    }
    y->nrows = 0;
    /*
     * Inserting what exists already is a no-op (ON CONFLICT DO NOTHING).
     * In object id order, the order of the login_object index and of the
     * member primary key, so that one of the two B-trees of each table is
     * written in order.
     */
    if (!sync_any_dirty(y, bit))
        return 0;
    sync_byid(y);
    if (bit == DIRTY_LOGINS)
        store_bulk_batch_init(b, "storing logins",
                              "INSERT OR FAIL INTO login (name, object_id) VALUES ",
                              " ON CONFLICT DO NOTHING", sync_pair_cols, 2, NULL, 0);
    else
        store_bulk_batch_init(b, "storing members",
                              "INSERT OR FAIL INTO member (group_id, member_id) VALUES ",
                              " ON CONFLICT DO NOTHING", sync_pair_cols, 2, NULL, 0);
    for (size_t i = 0; i < y->nobjs; i++) {
        SYNC_OBJ *o = &y->objs[y->byid[i]];

        if (!(o->dirty & bit))
            continue;
        if (bit == DIRTY_LOGINS) {
            for (uint32_t j = 0; j < o->n_login; j++) {
                store_bulk_batch_text(b, store_sync_logins(o)[j]);
                store_bulk_batch_int(b, o->id);
                if (store_bulk_batch_row(st, b) < 0)
                    return -1;
            }
        } else {
            sync_resolve(y, o);
            for (size_t j = 0; j < y->nids; j++) {
                store_bulk_batch_int(b, o->id);
                store_bulk_batch_int(b, y->ids[j]);
                if (store_bulk_batch_row(st, b) < 0)
                    return -1;
            }
        }
    }
    if (store_bulk_batch_flush(st, b) < 0)
        return -1;
    *added += b->changes;
    store_bulk_batch_free(b);
    return 0;
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

/* A claim a full pull wants: address, claimant (object index), holder (object index). */
typedef struct sync_claim {
    const char *address;
    long long id;
    uint32_t obj, holder;
} SYNC_CLAIM;

/* sync_claim_cmp - order of the claim table's scan: address, then object id */
static int sync_claim_cmp(const void *x, const void *y)
{
    const SYNC_CLAIM *p = x;
    const SYNC_CLAIM *q = y;
    int d = strcmp(p->address, q->address);

    return d != 0 ? d : (p->id > q->id) - (p->id < q->id);
}

/* sync_claim_vs_row - a wanted claim against a stored one (SYNC_ROW: name, id), in scan order */
static int sync_claim_vs_row(const SYNC_CLAIM *w, const SYNC_ROW *r)
{
    int d = strcmp(w->address, r->name);

    return d != 0 ? d : (w->id > r->id) - (w->id < r->id);
}

/*
 * sync_apply_claims - make the source's claim rows the pull's losing
 * claims: every claimant of a collision but its holder. A claim new to
 * the store is a collision syncd has not told of yet: one warning each,
 * naming both objects. A claim that ends is told once too: its object
 * let go of the address, went, or now holds it (its holder let go).
 * Runs after the objects (ids) and recipients are written, before
 * removed objects go (their claims end here, and are told).
 */
static int sync_apply_claims(STORE *st, long long now)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = st->sstmt[SSTMT_CLAIM_SCAN];
    SYNC_CLAIM *want = NULL;
    size_t nwant = 0, j = 0;
    char a[STORE_SYNC_OBJ_TEXT], b[STORE_SYNC_OBJ_TEXT];
    int rc;

    for (size_t i = 0; i < y->ncolls; i++) {
        const SYNC_COLL *c = &y->colls[i];
        uint32_t holder = y->addrs[c->key].a;

        for (uint32_t x = 0; x < c->n; x++) {
            uint32_t obj = y->claimants[c->first + x];

            if (obj == holder)
                continue;
            if (nwant == 0)
                want = xmalloc((y->nclaimants ? y->nclaimants : 1) * sizeof(*want));
            want[nwant].address = c->address;
            want[nwant].id = y->objs[obj].id;
            want[nwant].obj = obj;
            want[nwant++].holder = holder;
        }
    }
    if (nwant > 1)
        qsort(want, nwant, sizeof(*want), sync_claim_cmp);
    /* The stored claims are read whole first: the writes below must not disturb the scan. */
    y->nrows = 0;
    if (sqlite3_bind_int64(s, 1, y->run.source_id) != SQLITE_OK) {
        free(want);
        return store_fail(st, "reading claims");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        store_sync_row_add(y, sqlite3_column_int64(s, 1), store_text(s, 0), 0);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(want);
        return store_fail(st, "reading claims");
    }
    for (size_t i = 0; i <= y->nrows; i++) {
        const SYNC_ROW *r = i < y->nrows ? &y->rows[i] : NULL;

        /* Wanted claims before this stored one are new. */
        while (j < nwant && (r == NULL || sync_claim_vs_row(&want[j], r) < 0)) {
            const SYNC_CLAIM *w = &want[j++];
            const SYNC_OBJ *o = &y->objs[w->obj], *h = &y->objs[w->holder];

            if (store_sync_claim(st, 1, w->address, o->id, now) < 0)
                goto fail;
            log_warn("source %s: address collision: %s is held by %s and also claimed by %s, "
                     "which does not get it%s", y->run.source, w->address,
                     store_sync_obj_text(a, sizeof(a), y->run.source, h->dn, h->guid, h->id),
                     store_sync_obj_text(b, sizeof(b), y->run.source, o->dn, o->guid, o->id),
                     (o->flags & STORE_FLAG_INTERNAL_ONLY) && !(h->flags & STORE_FLAG_INTERNAL_ONLY)
                     ? "; the address stays restricted to internal senders, as the claimant is" : "");
        }
        if (r == NULL)
            break;
        if (j < nwant && sync_claim_vs_row(&want[j], r) == 0) {
            j++;
            continue;                   /* told when it began */
        }
        /* A stored claim nobody wants any more: say why it ended. */
        {
            const SYNC_KEY *k = sync_addr_find(y, r->name);
            const char *why = "no longer carries it, or went";

            if (k != NULL && y->objs[k->a].id == r->id)
                why = "holds it now: its holder let go of it";
            if (store_sync_claim(st, 0, r->name, r->id, now) < 0)
                goto fail;
            log_info("source %s: address collision over: %s, claimed by %s, which %s",
                     y->run.source, r->name, store_sync_obj_by_id(st, a, sizeof(a), r->id), why);
        }
    }
    y->nrows = 0;
    free(want);
    return 0;
fail:
    free(want);
    return -1;
}

/* sync_apply - write the differences of a full pull */
static int sync_apply(STORE *st)
{
    STORE_SYNC *y = st->sync;
    long long now = store_now();
    long long fixed[2] = {y->run.source_id, now};
    long long maxid = 0;
    STORE_BATCH *b = xmalloc(sizeof(*b));
    struct timespec t;
    int rc = -1;

    clock_gettime(CLOCK_MONOTONIC, &t);
    if (store_step_count(st, st->sstmt[SSTMT_OBJ_MAX], "storing objects", &maxid) < 0)
        goto out;
    if (maxid > INT64_MAX - (long long) y->nobjs) {
        store_errf(st, "object ids exhausted");
        goto out;
    }
    /*
     * Objects first: new ones get the ids their addresses point to. They
     * are inserted (and numbered) in the order of their first address, so
     * that the recipients, written in address order, meet their
     * recipient_object entries in order too (and their objects' rows,
     * when foreign keys are on): a million random visits to those B-trees
     * cost more than one more to the guid index.
     */
    store_bulk_batch_init(b, "storing objects", "INSERT OR FAIL INTO object (id, source_id, guid, "
                          "dn, kind, flags, last_seen) VALUES ", "", sync_obj_cols, 7, fixed, 2);
    for (size_t i = 0; i < y->naddrs + y->nobjs; i++) {
        SYNC_OBJ *o = &y->objs[i < y->naddrs ? y->addrs[i].a : i - y->naddrs];

        if (o->op == SOP_KEEP || (o->dirty & DIRTY_WRITTEN))
            continue;
        o->dirty |= DIRTY_WRITTEN;
        if (o->op != SOP_INSERT) {
            if (store_sync_write_obj(st, o, now) < 0)
                goto out;
            continue;
        }
        o->id = ++maxid;
        if (y->byid != NULL && y->nbyid < y->nobjs)
            y->byid[y->nbyid++] = (uint32_t) (o - y->objs);
        store_bulk_batch_int(b, o->id);
        store_bulk_batch_text(b, o->guid);
        store_bulk_batch_text(b, o->dn);
        store_bulk_batch_text(b, y->kinds[o->kind]);
        store_bulk_batch_int(b, o->flags);
        if (store_bulk_batch_row(st, b) < 0)
            goto out;
    }
    if (store_bulk_batch_flush(st, b) < 0)
        goto out;
    store_bulk_batch_free(b);
    store_bulk_lap(st, "writing objects", &t);
    for (size_t i = 0; i < y->ngone_addrs; i++)
        if (store_sync_del_rcpt(st, y->gone_addrs[i]) < 0)
            goto out;
    store_bulk_batch_init(b, "storing recipients", "INSERT OR FAIL INTO recipient (address, source_id, "
                          "object_id, kind, flags, last_seen) VALUES ", "", sync_rcpt_cols, 6,
                          fixed, 2);
    for (size_t i = 0; i < y->naddrs; i++) {
        const SYNC_KEY *k = &y->addrs[i];
        const SYNC_OBJ *o = &y->objs[k->a];

        if (k->b == SOP_KEEP)
            continue;
        if (k->b == SOP_UPDATE) {
            if (store_sync_write_rcpt(st, st->sstmt[SSTMT_RCPT_UPDATE], k->s, o,
                                      y->kinds[o->kind], now) < 0)
                goto out;
            continue;
        }
        if (store_sync_cross(st, k->s, o) < 0)
            goto out;
        store_bulk_batch_text(b, k->s);
        store_bulk_batch_int(b, o->id);
        store_bulk_batch_text(b, y->kinds[o->kind]);
        store_bulk_batch_int(b, o->flags);
        if (store_bulk_batch_row(st, b) < 0)
            goto out;
    }
    if (store_bulk_batch_flush(st, b) < 0)
        goto out;
    store_bulk_batch_free(b);
    store_bulk_lap(st, "writing recipients", &t);
    if (sync_apply_claims(st, now) < 0)
        goto out;
    /* Their addresses are gone or moved; the cascade takes logins and memberships. */
    for (size_t i = 0; i < y->ngone_objs; i++)
        if (sync_del_obj(st, y->gone_objs[i]) < 0)
            goto out;
    store_bulk_lap(st, "removing objects", &t);
    if (sync_merge_pairs(st, DIRTY_LOGINS) < 0 || sync_apply_pairs(st, b, DIRTY_LOGINS) < 0)
        goto out;
    store_bulk_lap(st, "logins", &t);
    if (y->nmembers > 0)
        sync_index_dns(y);
    if (sync_merge_pairs(st, DIRTY_MEMBERS) < 0 || sync_apply_pairs(st, b, DIRTY_MEMBERS) < 0)
        goto out;
    store_bulk_lap(st, "members", &t);
    rc = 0;
out:
    store_bulk_batch_free(b);
    free(b);
    return rc;
}

/* sync_state_set - the source's cookie and invocation id (in the write transaction) */
static int sync_state_set(STORE *st, const char *cookie, const char *invocation_id)
{
    sqlite3_stmt *s = st->sstmt[SSTMT_STATE_SET];
    int rc;

    rc = sqlite3_bind_int64(s, 1, st->sync->run.source_id);
    if (rc == SQLITE_OK)
        rc = cookie ? sqlite3_bind_text(s, 2, cookie, -1, SQLITE_STATIC) : sqlite3_bind_null(s, 2);
    if (rc == SQLITE_OK)
        rc = invocation_id ? sqlite3_bind_text(s, 3, invocation_id, -1, SQLITE_STATIC)
            : sqlite3_bind_null(s, 3);
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
    rc = sync_merge(st) < 0 || sync_apply(st) < 0
        || store_sync_finish(st, cookie, invocation_id, counts) < 0 ? -1 : 0;
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
    state->cookie = state->invocation_id = NULL;
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
