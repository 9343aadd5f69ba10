/*
 * store_sync_legacy.c - the full pull's former in-memory merge, kept only
 * as the reference the tests compare the staged merge with
 *
 * Before issue 12 a full pull was held in memory (every object with
 * copies of its strings, a sorted address list, guid and DN hash tables)
 * and compared with the store by merge-joins over table scans. That
 * costs memory in proportion to the directory (294 MiB at 1,000,000
 * entries), so rcptgate-syncd now stages the pull in a temporary database and
 * compares it in SQL (store_sync_stage.c). This file is that old path,
 * unchanged but for its entry points, so that tests/unit/test_sync_equiv
 * can run the same random pulls through both and compare every table,
 * ids included. Nothing but the test-only switch store_sync_test_legacy
 * selects it; programs never set it.
 *
 * How it worked: at store_sync_diff (or commit) the write lock is taken
 * and the pull compared with the store, each table read once in the order
 * it is stored in: objects in rowid order, each found by guid in a hash
 * table of the pull; recipients in address order beside the pull's
 * addresses, sorted; logins and memberships in object id order after the
 * objects are written. New rows go in with multi-row INSERTs
 * (store_bulk.c), new objects with the ids sync_apply gives them.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_sync_int.h"
#include "xalloc.h"

/* TEST ONLY (see store_sync_int.h): full pulls through this file instead of the staged merge. */
int store_sync_test_legacy;

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

/* sync_id_cmp - qsort order of ids */
static int sync_id_cmp(const void *x, const void *y)
{
    long long p = *(const long long *) x;
    long long q = *(const long long *) y;

    return (p > q) - (p < q);
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

/* store_sync_legacy_merge - take the write lock, then compare objects and addresses (once) */
int store_sync_legacy_merge(STORE *st)
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

/* store_sync_legacy_apply - write the differences of a full pull (after store_sync_legacy_merge) */
int store_sync_legacy_apply(STORE *st)
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
        if (store_sync_del_obj(st, y->gone_objs[i]) < 0)
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

