/*
 * store_delta.c - incremental pulls into the store (used by rcptgate-syncd)
 *
 * A DirSync, uSNChanged, syncrepl or Graph delta pull hands over changed
 * objects (each complete: dn, kind, flags, addresses, logins, members)
 * and deleted guids. They are buffered like a full pull (store_sync.c)
 * and applied at commit in one transaction, in arrival order, the last
 * operation on each guid alone: each object with point statements
 * through the (source_id, guid), recipient_object, login_object and
 * member indexes, writing only rows that change. Group members resolve
 * after every object of the pull is written, so a group may come before
 * its new members; see delta_index_dns for how. An address another object
 * of the source holds is only claimed, and passes on when its holder lets
 * go, by the rule a full pull applies (store_sync.h): see delta_rcpts.
 *
 * The shrink guard judges incremental pulls too: store_delta_diff writes
 * the pull under the write lock without committing, so that its counts
 * are exactly what the commit would do (an address passing to a claimant
 * is a change, not a removal); the caller then commits or refuses, which
 * rolls it back. The collision lines the writes tell are held until the
 * commit (delta_note), so that a refused pull, retried at every poll,
 * does not tell what never happened.
 */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_sync_int.h"
#include "xalloc.h"

/* store_delta_begin - start collecting an incremental pull of source */
int store_delta_begin(STORE *st, const char *source, const char *type)
{
    return store_sync_start(st, source, type, 1);
}

/* store_delta_expect - see store_sync.h */
int store_delta_expect(STORE *st, const char *cookie)
{
    if (store_usable(st) < 0)
        return -1;
    if (st->sync == NULL || !st->sync->delta)
        return store_errf(st, "no incremental sync in progress");
    free(st->sync->expect_cookie);
    st->sync->expect_cookie = cookie ? xstrdup(cookie) : NULL;
    st->sync->expect_set = 1;
    return 0;
}

/* delta_cookie_same - under the lock: is the stored cookie still the one the pull started from? */
static int delta_cookie_same(STORE *st)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = NULL;
    int rc, same;

    if (!y->expect_set)
        return 0;
    if (sqlite3_prepare_v2(st->db, "SELECT cookie FROM source WHERE id = ?1", -1, &s, NULL) != SQLITE_OK
        || sqlite3_bind_int64(s, 1, y->run.source_id) != SQLITE_OK) {
        sqlite3_finalize(s);
        return store_fail(st, "reading the sync state");
    }
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(s);
        return store_fail(st, "reading the sync state");
    }
    {
        const char *now = (const char *) sqlite3_column_text(s, 0);

        same = (now == NULL && y->expect_cookie == NULL)
            || (now != NULL && y->expect_cookie != NULL && strcmp(now, y->expect_cookie) == 0);
    }
    sqlite3_finalize(s);
    if (!same)
        return store_errf(st, "the source's sync state changed during the pull (another rcptgate-syncd "
                          "committed meanwhile): nothing applied; the next pull starts from it");
    return 0;
}

/* store_delta_put - one object, added or replaced by guid at commit */
int store_delta_put(STORE *st, const STORE_OBJECT *obj)
{
    if (store_usable(st) < 0)
        return -1;
    if (st->sync == NULL || !st->sync->delta)
        return store_errf(st, "no incremental sync in progress");
    if (obj == NULL)
        return store_errf(st, "no object");
    return store_sync_add(st, obj, obj->guid, SOP_KEEP);
}

/* store_delta_del - one object removed by guid at commit (an unknown guid is no error) */
int store_delta_del(STORE *st, const char *guid)
{
    if (store_usable(st) < 0)
        return -1;
    if (st->sync == NULL || !st->sync->delta)
        return store_errf(st, "no incremental sync in progress");
    return store_sync_add(st, NULL, guid, SOP_DELETE);
}

/* delta_note - a log line of the pull, told at its commit (warn: a warning, else a note) */
static void delta_note(STORE_SYNC *y, int warn, const char *fmt, ...) RG_PRINTF(3, 4);
static void delta_note(STORE_SYNC *y, int warn, const char *fmt, ...)
{
    va_list ap;
    char *line;

    va_start(ap, fmt);
    if (vasprintf(&line, fmt, ap) < 0)
        line = NULL;
    va_end(ap);
    if (line == NULL)
        return;                         /* out of memory: a log line is not worth dying for */
    if (y->nnotes == y->capnotes) {
        y->capnotes = y->capnotes ? 2 * y->capnotes : 16;
        y->notes = xrealloc(y->notes, y->capnotes * sizeof(*y->notes));
        y->note_warn = xrealloc(y->note_warn, y->capnotes * sizeof(*y->note_warn));
    }
    y->notes[y->nnotes] = line;
    y->note_warn[y->nnotes++] = warn;
}

/* delta_notes_tell - log the held lines of a committed pull */
static void delta_notes_tell(STORE_SYNC *y)
{
    for (size_t i = 0; i < y->nnotes; i++) {
        if (y->note_warn[i])
            log_warn("%s", y->notes[i]);
        else
            log_info("%s", y->notes[i]);
    }
}

/* store_delta_notes_free - drop the held lines (told or not) */
void store_delta_notes_free(STORE_SYNC *y)
{
    for (size_t i = 0; i < y->nnotes; i++)
        free(y->notes[i]);
    free(y->notes);
    free(y->note_warn);
    y->notes = NULL;
    y->note_warn = NULL;
    y->nnotes = y->capnotes = 0;
}

/* delta_obj_get - the stored object of guid: 1 found (id, and whether dn/kind/flags differ), 0, -1 */
static int delta_obj_get(STORE *st, SYNC_OBJ *o, int *differs)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = st->sstmt[SSTMT_OBJ_GET];
    int rc;

    if (sqlite3_bind_int64(s, 1, y->run.source_id) != SQLITE_OK
        || sqlite3_bind_text(s, 2, o->guid, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "looking up an object");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        o->id = sqlite3_column_int64(s, 0);
        if (differs != NULL && o->op != SOP_DELETE)
            *differs = strcmp(o->dn, store_text(s, 1)) != 0
                || strcmp(y->kinds[o->kind], store_text(s, 2)) != 0
                || o->flags != sqlite3_column_int(s, 3);
    } else if (rc != SQLITE_DONE) {
        store_fail(st, "looking up an object");
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* delta_rcpt_holder - the source's row of address: 1 (*holder its object, 0 none), 0 no row, -1 */
static int delta_rcpt_holder(STORE *st, const char *address, long long *holder)
{
    sqlite3_stmt *s = st->sstmt[SSTMT_RCPT_GET];
    int rc;

    *holder = 0;
    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_int64(s, 2, st->sync->run.source_id) != SQLITE_OK)
        return store_fail(st, "looking up a recipient");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *holder = sqlite3_column_int64(s, 0);
    else if (rc != SQLITE_DONE)
        store_fail(st, "looking up a recipient");
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* delta_fresh_add - address got a holder, o, in this pull (address must live until the commit) */
static void delta_fresh_add(STORE_SYNC *y, const char *address, SYNC_OBJ *o)
{
    uint32_t *slot = store_sync_map_slot(&y->fresh_map, address);

    if (*slot == 0) {
        y->fresh[y->nfresh] = address;
        *slot = (uint32_t) ++y->nfresh;
    }
    y->fresh_obj[*slot - 1] = o;
}

/*
 * delta_promote - address has just lost its holder (from, which let go
 * of it or went): the object of the source that claims it too with the
 * lowest guid takes it, as a full pull would decide. 1 promoted, 0 none
 * claims it, -1.
 */
static int delta_promote(STORE *st, const char *address, const char *from, long long now)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = st->sstmt[SSTMT_CLAIM_BEST];
    SYNC_OBJ *heir;
    const char *kind = NULL;
    char a[STORE_SYNC_OBJ_TEXT];
    int rc;

    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_int64(s, 2, y->run.source_id) != SQLITE_OK)
        return store_fail(st, "reading claims");
    rc = sqlite3_step(s);
    /* In the arena: the fresh table (delta_fresh_take) keeps it until the commit. */
    heir = store_bulk_alloc(&y->arena, sizeof(*heir));
    memset(heir, 0, sizeof(*heir));
    if (rc == SQLITE_ROW) {
        heir->id = sqlite3_column_int64(s, 0);
        kind = store_bulk_strdup(&y->arena, store_text(s, 1));
        heir->flags = sqlite3_column_int(s, 2);
        heir->guid = store_bulk_strdup(&y->arena, store_text(s, 3));
        heir->dn = store_bulk_strdup(&y->arena, store_text(s, 4));
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return store_fail(st, "reading claims");
    if (store_sync_claim(st, 0, address, heir->id, now) < 0
        || store_sync_write_rcpt(st, st->sstmt[SSTMT_RCPT_INSERT], address, heir, kind, now) < 0)
        return -1;
    /* Its holder changed in this pull: a newcomer of a lower guid may still take it. */
    delta_fresh_add(y, address, heir);
    delta_note(y, 0, "source %s: address collision over: %s, claimed by %s, which holds it now: "
               "its holder %s let go of it", y->run.source, address,
               store_sync_obj_text(a, sizeof(a), y->run.source, heir->dn, heir->guid, heir->id), from);
    return 1;
}

/*
 * delta_claims - make object o's claim rows y->dclaims: the addresses it
 * carries that another object of the source holds. A new claim is told
 * (once: while it lasts, later puts find its row); an old one that ends
 * too, now that o holds the address or no longer carries it.
 */
static int delta_claims(STORE *st, SYNC_OBJ *o, long long now)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = st->sstmt[SSTMT_CLAIM_OF];
    char a[STORE_SYNC_OBJ_TEXT], b[STORE_SYNC_OBJ_TEXT];
    size_t j = 0;
    int rc;

    y->nrows = 0;
    if (sqlite3_bind_int64(s, 1, o->id) != SQLITE_OK)
        return store_fail(st, "reading claims");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *addr = store_text(s, 0);
        int d = 1;

        while (j < y->ndclaims && (d = strcmp(y->dclaims[j], addr)) < 0) {
            store_sync_row_add(y, y->dholders[j], y->dclaims[j], SOP_INSERT);
            j++;
        }
        if (j < y->ndclaims && d == 0)
            j++;
        else
            store_sync_row_add(y, 0, addr, SOP_DELETE);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_fail(st, "reading claims");
    for (; j < y->ndclaims; j++)
        store_sync_row_add(y, y->dholders[j], y->dclaims[j], SOP_INSERT);
    for (size_t i = 0; i < y->nrows; i++) {
        const SYNC_ROW *r = &y->rows[i];
        long long holder = 0;

        if (r->member == SOP_DELETE) {
            if (store_sync_claim(st, 0, r->name, o->id, now) < 0
                || delta_rcpt_holder(st, r->name, &holder) < 0)
                return -1;
            delta_note(y, 0, "source %s: address collision over: %s, claimed by %s, which %s",
                       y->run.source, r->name,
                       store_sync_obj_text(a, sizeof(a), y->run.source, o->dn, o->guid, o->id),
                       holder == o->id ? "holds it now" : "no longer claims it");
            continue;
        }
        if (store_sync_claim(st, 1, r->name, o->id, now) < 0)
            return -1;
        store_sync_obj_by_id(st, b, sizeof(b), r->id);
        delta_note(y, 1, "source %s: address collision: %s is held by %s and also claimed by %s, "
                   "which does not get it%s", y->run.source, r->name, b,
                   store_sync_obj_text(a, sizeof(a), y->run.source, o->dn, o->guid, o->id),
                   (o->flags & STORE_FLAG_INTERNAL_ONLY)
                   ? "; the address stays restricted to internal senders, as the claimant is" : "");
    }
    return 0;
}

/*
 * delta_fresh_take - o carries address, which holder got earlier in this
 * same pull (nobody held it before): as a full pull would, the lower guid
 * holds it, whatever the order the directory sent them in. 1 o took it
 * (holder's claim recorded and told), 0 not (o claims it as usual), -1.
 */
static int delta_fresh_take(STORE *st, SYNC_OBJ *o, const char *address, long long holder,
                            long long now)
{
    STORE_SYNC *y = st->sync;
    uint32_t *slot = store_sync_map_slot(&y->fresh_map, address);
    SYNC_OBJ *h;
    char a[STORE_SYNC_OBJ_TEXT], b[STORE_SYNC_OBJ_TEXT];

    if (*slot == 0 || (h = y->fresh_obj[*slot - 1])->id != holder || strcmp(o->guid, h->guid) >= 0)
        return 0;
    if (store_sync_write_rcpt(st, st->sstmt[SSTMT_RCPT_UPDATE], address, o, y->kinds[o->kind], now) < 0
        || store_sync_claim(st, 0, address, o->id, now) < 0
        || store_sync_claim(st, 1, address, h->id, now) < 0)
        return -1;
    y->fresh_obj[*slot - 1] = o;
    delta_note(y, 1, "source %s: address collision: %s is held by %s and also claimed by %s, "
               "which does not get it%s", y->run.source, address,
               store_sync_obj_text(a, sizeof(a), y->run.source, o->dn, o->guid, o->id),
               store_sync_obj_text(b, sizeof(b), y->run.source, h->dn, h->guid, h->id),
               (h->flags & STORE_FLAG_INTERNAL_ONLY) && !(o->flags & STORE_FLAG_INTERNAL_ONLY)
               ? "; the address stays restricted to internal senders, as the claimant is" : "");
    return 1;
}

/*
 * delta_rcpts - make object o's recipient rows its addresses. An address
 * another object of the source holds stays with it: the first holder
 * keeps an address while it carries it, and o's claim is recorded
 * (delta_claims). An address o lets go of passes to the next claimant,
 * if any (delta_promote). Decisions are made while the object's rows are
 * read, the writes after (y->rows: name = address, member = enum sync_op).
 */
static int delta_rcpts(STORE *st, SYNC_OBJ *o, long long now)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = st->sstmt[SSTMT_RCPT_OF];
    const char *kind = y->kinds[o->kind];
    char self[STORE_SYNC_OBJ_TEXT];
    uint32_t j = 0;
    int rc;

    y->nrows = 0;
    y->ndclaims = 0;
    if (sqlite3_bind_int64(s, 1, o->id) != SQLITE_OK)
        return store_fail(st, "reading an object's recipients");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *addr = store_text(s, 0);
        int d = 1;

        while (j < o->n_addr && (d = strcmp(o->list[j], addr)) < 0)
            store_sync_row_add(y, 0, o->list[j++], SOP_INSERT);
        if (j < o->n_addr && d == 0) {
            if (strcmp(kind, store_text(s, 1)) != 0 || o->flags != sqlite3_column_int(s, 2))
                store_sync_row_add(y, 0, o->list[j], SOP_UPDATE);
            j++;
        } else {
            store_sync_row_add(y, 0, addr, SOP_DELETE);
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_fail(st, "reading an object's recipients");
    while (j < o->n_addr)
        store_sync_row_add(y, 0, o->list[j++], SOP_INSERT);
    for (size_t i = 0; i < y->nrows; i++) {
        /* delta_promote and delta_claims reuse y->rows: copy the row first */
        SYNC_ROW r = y->rows[i];
        int op = (int) r.member;
        long long holder;

        if (op == SOP_DELETE) {
            if (store_sync_del_rcpt(st, r.name) < 0
                || (rc = delta_promote(st, r.name, store_sync_obj_text(self, sizeof(self), y->run.source,
                                                                       o->dn, o->guid, o->id),
                                       now)) < 0)
                return -1;
            if (rc)
                y->counts.changed++;
            else
                y->counts.removed++;
            continue;
        }
        if (op == SOP_INSERT) {
            if ((rc = delta_rcpt_holder(st, r.name, &holder)) < 0)
                return -1;
            if (rc && holder != 0 && holder != o->id) {
                int took = delta_fresh_take(st, o, r.name, holder, now);

                if (took < 0)
                    return -1;
                if (took)
                    continue;           /* from an object new to it in this pull */
                /* Another object holds it: o only claims it (r.name lives in the arena). */
                y->dclaims = store_sync_grow(y->dclaims, &y->capdclaims, y->ndclaims,
                                             sizeof(*y->dclaims), 16);
                y->dholders = xrealloc(y->dholders, y->capdclaims * sizeof(*y->dholders));
                y->dclaims[y->ndclaims] = r.name;
                y->dholders[y->ndclaims++] = holder;
                continue;
            }
            op = rc ? SOP_UPDATE : SOP_INSERT;
            delta_fresh_add(y, r.name, o);
            if (op == SOP_INSERT && store_sync_cross(st, r.name, o) < 0)
                return -1;
            if (op == SOP_INSERT)
                y->counts.added++;
            else
                y->counts.changed++;
        } else {
            y->counts.changed++;
        }
        if (store_sync_write_rcpt(st, st->sstmt[op == SOP_INSERT ? SSTMT_RCPT_INSERT : SSTMT_RCPT_UPDATE],
                                  r.name, o, kind, now) < 0)
            return -1;
    }
    return delta_claims(st, o, now);
}

/* delta_logins - make object o's login rows its logins */
static int delta_logins(STORE *st, SYNC_OBJ *o)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = st->sstmt[SSTMT_LOGIN_OF];
    const char **want = store_sync_logins(o);
    uint32_t j = 0;
    int rc;

    y->nrows = 0;
    if (sqlite3_bind_int64(s, 1, o->id) != SQLITE_OK)
        return store_fail(st, "reading an object's logins");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *name = store_text(s, 0);
        int d = 1;

        while (j < o->n_login && (d = strcmp(want[j], name)) < 0) {
            o->dirty |= DIRTY_LOGINS;
            j++;
        }
        if (j < o->n_login && d == 0)
            j++;
        else
            store_sync_row_add(y, o->id, name, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_fail(st, "reading an object's logins");
    if (j < o->n_login)
        o->dirty |= DIRTY_LOGINS;
    for (size_t i = 0; i < y->nrows; i++) {
        if ((rc = store_sync_pair(st, SSTMT_LOGIN_DELETE, 0, y->rows[i].name, o->id)) < 0)
            return -1;
        y->l_removed += rc;
    }
    for (j = 0; (o->dirty & DIRTY_LOGINS) && j < o->n_login; j++) {
        if ((rc = store_sync_pair(st, SSTMT_LOGIN_INSERT, 0, want[j], o->id)) < 0)
            return -1;
        y->l_added += rc;
    }
    return 0;
}

/*
 * delta_index_dns - the object ids of every member DN of the pull's puts,
 * from one read of the source's objects (after the pull's objects are
 * written). Without an index on DNs, which would cost a full pull of a
 * million objects seconds of random B-tree writes, this is the cheapest
 * way: a sequential scan, once per incremental pull with members.
 */
static int delta_index_dns(STORE *st)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = st->sstmt[SSTMT_OBJ_SCAN];
    int rc;

    for (size_t i = 0; i < y->nobjs; i++) {
        const SYNC_OBJ *o = &y->objs[i];

        if (o->op == SOP_SKIP || o->op == SOP_DELETE)
            continue;
        for (uint32_t j = 0; j < o->n_member; j++) {
            y->need = store_sync_grow(y->need, &y->capneed, y->nneed, sizeof(*y->need), 256);
            y->need[y->nneed++] = store_sync_members(o)[j];
        }
    }
    if (y->nneed == 0)
        return 0;
    y->need_id = xcalloc(y->nneed, sizeof(*y->need_id));
    y->need_guid = xcalloc(y->nneed, sizeof(*y->need_guid));
    store_sync_map_init(&y->dns, y->nneed, y->need, sizeof(*y->need), 1);
    for (size_t i = 0; i < y->nneed; i++) {
        uint32_t *slot = store_sync_map_slot(&y->dns, y->need[i]);

        if (*slot == 0)
            *slot = (uint32_t) i + 1;
    }
    if (sqlite3_bind_int64(s, 1, y->run.source_id) != SQLITE_OK)
        return store_fail(st, "resolving members");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *dn = store_text(s, 2);
        const char *guid = store_text(s, 1);
        uint32_t *slot;
        size_t i;

        if (*dn == 0 || *(slot = store_sync_map_slot(&y->dns, dn)) == 0)
            continue;
        i = *slot - 1;
        if (y->need_guid[i] == NULL || strcmp(guid, y->need_guid[i]) < 0) {
            y->need_id[i] = sqlite3_column_int64(s, 0);
            y->need_guid[i] = store_bulk_strdup(&y->arena, guid);
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_fail(st, "resolving members");
    return 0;
}

/* delta_resolve - a group's member ids (sorted, unique) into y->ids */
static void delta_resolve(STORE *st, const SYNC_OBJ *g)
{
    STORE_SYNC *y = st->sync;
    const char **dns = store_sync_members(g);

    y->nids = 0;
    for (uint32_t i = 0; i < g->n_member; i++) {
        uint32_t *slot = store_sync_map_slot(&y->dns, dns[i]);
        long long id = *slot ? y->need_id[*slot - 1] : 0;

        if (id == 0)
            continue;                   /* not in this source: not mail-enabled, say */
        y->ids = store_sync_grow(y->ids, &y->capids, y->nids, sizeof(*y->ids), 64);
        y->ids[y->nids++] = id;
    }
    y->nids = store_sync_unique_ids(y->ids, y->nids);
}

/* delta_members - make group o's membership rows its resolved members */
static int delta_members(STORE *st, SYNC_OBJ *o)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = st->sstmt[SSTMT_MEMBER_OF];
    size_t j = 0;
    int rc;

    if (o->n_member > 0)
        delta_resolve(st, o);
    else
        y->nids = 0;
    y->nrows = 0;
    if (sqlite3_bind_int64(s, 1, o->id) != SQLITE_OK)
        return store_fail(st, "reading a group's members");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        long long member = sqlite3_column_int64(s, 0);

        while (j < y->nids && y->ids[j] < member) {
            o->dirty |= DIRTY_MEMBERS;
            j++;
        }
        if (j < y->nids && y->ids[j] == member)
            j++;
        else
            store_sync_row_add(y, o->id, NULL, member);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_fail(st, "reading a group's members");
    if (j < y->nids)
        o->dirty |= DIRTY_MEMBERS;
    for (size_t i = 0; i < y->nrows; i++) {
        if ((rc = store_sync_pair(st, SSTMT_MEMBER_DELETE, o->id, NULL, y->rows[i].member)) < 0)
            return -1;
        y->m_removed += rc;
    }
    for (j = 0; (o->dirty & DIRTY_MEMBERS) && j < y->nids; j++) {
        if ((rc = store_sync_pair(st, SSTMT_MEMBER_INSERT, o->id, NULL, y->ids[j])) < 0)
            return -1;
        y->m_added += rc;
    }
    return 0;
}

/* delta_addr_list - append the addresses statement which (bound to id) returns to y->rows (member: which) */
static int delta_addr_list(STORE *st, int which, long long id)
{
    STORE_SYNC *y = st->sync;
    sqlite3_stmt *s = st->sstmt[which];
    int rc;

    if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK)
        return store_fail(st, "reading claims");
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        store_sync_row_add(y, 0, store_text(s, 0), which);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_fail(st, "reading claims");
}

/*
 * delta_del_obj - remove object o with all that is its. Its addresses
 * that other objects claim pass to them (delta_promote); its own claims
 * end, and are told.
 */
static int delta_del_obj(STORE *st, SYNC_OBJ *o, long long now)
{
    STORE_SYNC *y = st->sync;
    char self[STORE_SYNC_OBJ_TEXT];
    long long n;
    int rc;

    store_sync_obj_by_id(st, self, sizeof(self), o->id);
    /* What it holds that others claim, and what it claims: both lists in y->rows. */
    y->nrows = 0;
    if (delta_addr_list(st, SSTMT_CLAIM_HELD, o->id) < 0 || delta_addr_list(st, SSTMT_CLAIM_OF, o->id) < 0)
        return -1;
    /* Recipients explicitly, to count them; the cascade takes the rest (claims too). */
    if ((n = store_sync_del_id(st, SSTMT_RCPT_DEL_OBJ, o->id, "removing recipients")) < 0
        || store_sync_del_id(st, SSTMT_OBJ_DELETE, o->id, "removing objects") < 0)
        return -1;
    y->counts.removed += n;
    y->o_removed++;
    for (size_t i = 0; i < y->nrows; i++) {
        SYNC_ROW r = y->rows[i];

        if (r.member == SSTMT_CLAIM_OF) {
            delta_note(y, 0, "source %s: address collision over: %s, claimed by %s, which went",
                       y->run.source, r.name, self);
            continue;
        }
        if ((rc = delta_promote(st, r.name, self, now)) < 0)
            return -1;
        if (rc) {
            y->counts.removed--;
            y->counts.changed++;
        }
    }
    return 0;
}

/* delta_one - apply one operation: delete, or add/update an object with its addresses and logins */
static int delta_one(STORE *st, SYNC_OBJ *o, long long now)
{
    STORE_SYNC *y = st->sync;
    int differs = 0;
    int rc = delta_obj_get(st, o, &differs);

    if (rc < 0)
        return -1;
    if (o->op == SOP_DELETE) {
        if (rc == 0)
            return 0;                   /* never had it, or already gone */
        return delta_del_obj(st, o, now);
    }
    if (rc == 0 || differs) {
        o->op = rc == 0 ? SOP_INSERT : SOP_UPDATE;
        if (store_sync_write_obj(st, o, now) < 0)
            return -1;
        if (rc == 0)
            y->o_added++;
        else
            y->o_changed++;
    }
    return delta_rcpts(st, o, now) < 0 || delta_logins(st, o) < 0 ? -1 : 0;
}

/* delta_apply - every operation in arrival order (the last per guid), then memberships */
static int delta_apply(STORE *st)
{
    STORE_SYNC *y = st->sync;
    long long now = store_now();
    long long naddr = 0;

    store_sync_index_guids(y, 0);
    /*
     * Room in the fresh table: each address put gets a holder once, and
     * each promotion uses up a claim, stored before or made by this pull.
     */
    if (store_step_count(st, st->sstmt[SSTMT_CLAIM_COUNT], "reading claims", &naddr) < 0)
        return -1;
    for (size_t i = 0; i < y->nobjs; i++)
        naddr += 2 * (long long) y->objs[i].n_addr;
    y->fresh = xmalloc((size_t) (naddr ? naddr : 1) * sizeof(*y->fresh));
    y->fresh_obj = xmalloc((size_t) (naddr ? naddr : 1) * sizeof(*y->fresh_obj));
    store_sync_map_init(&y->fresh_map, (size_t) naddr, y->fresh, sizeof(*y->fresh), 0);
    for (size_t i = 0; i < y->nobjs; i++)
        if (y->objs[i].op != SOP_SKIP && delta_one(st, &y->objs[i], now) < 0)
            return -1;
    /* Members resolve against the store now holding every object of the pull. */
    if (delta_index_dns(st) < 0)
        return -1;
    for (size_t i = 0; i < y->nobjs; i++)
        if (y->objs[i].op != SOP_SKIP && y->objs[i].op != SOP_DELETE
            && delta_members(st, &y->objs[i]) < 0)
            return -1;
    return 0;
}

/*
 * delta_write - take the lock and write the pull (once), not committed:
 * afterwards y->counts are the commit's
 */
static int delta_write(STORE *st)
{
    STORE_SYNC *y = st->sync;

    if (y->applied)
        return 0;
    if (store_sync_lock(st) < 0 || delta_cookie_same(st) < 0 || delta_apply(st) < 0)
        return -1;
    y->applied = 1;
    return 0;
}

/* delta_source_size - the source's recipients now (in the pull's transaction) */
static int delta_source_size(STORE *st, long long *n)
{
    sqlite3_stmt *s = NULL;
    int rc;

    /* No index leads with source_id: a scan, so only when the pull removes something. */
    if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM recipient WHERE source_id = ?1", -1, &s,
                           NULL) != SQLITE_OK
        || sqlite3_bind_int64(s, 1, st->sync->run.source_id) != SQLITE_OK) {
        sqlite3_finalize(s);
        return store_fail(st, "counting the source's recipients");
    }
    rc = store_step_count(st, s, "counting the source's recipients", n);
    sqlite3_finalize(s);
    return rc;
}

/* store_delta_diff - write the pull under the lock, uncommitted; the counts, kept included */
int store_delta_diff(STORE *st, STORE_COUNTS *counts)
{
    STORE_SYNC *y;
    long long after = 0;

    if (store_usable(st) < 0)
        return -1;
    if ((y = st->sync) == NULL || !y->delta)
        return store_errf(st, "no incremental sync in progress");
    if (delta_write(st) < 0 || (y->counts.removed > 0 && delta_source_size(st, &after) < 0)) {
        store_sync_forget(st);
        return -1;
    }
    *counts = y->counts;
    /* Rows after = before + added - removed (a promotion is a change: one row out, one in). */
    if (y->counts.removed > 0)
        counts->kept = after - y->counts.added - y->counts.changed;
    return 0;
}

/* store_delta_commit - apply the incremental pull in one transaction and record the run */
int store_delta_commit(STORE *st, const char *cookie, const char *invocation_id, STORE_COUNTS *counts)
{
    STORE_SYNC *y;
    int rc;

    if (store_usable(st) < 0)
        return -1;
    if ((y = st->sync) == NULL || !y->delta)
        return store_errf(st, "no incremental sync in progress");
    rc = delta_write(st) < 0 || store_sync_finish(st, cookie, invocation_id, counts) < 0 ? -1 : 0;
    if (rc == 0)
        delta_notes_tell(y);
    store_sync_forget(st);
    return rc;
}

/* store_delta_refuse - apply nothing (roll back a diff); record the incremental run */
int store_delta_refuse(STORE *st, const char *outcome, const char *message, const STORE_COUNTS *counts)
{
    int rc;

    if (store_usable(st) < 0)
        return -1;
    if (st->sync == NULL || !st->sync->delta)
        return store_errf(st, "no incremental sync in progress");
    rc = store_bulk_refuse(st, &st->sync->run, outcome, message, counts);
    store_sync_forget(st);
    return rc;
}

/* store_delta_abort - apply nothing; safe without begin or after an error */
void store_delta_abort(STORE *st)
{
    if (st == NULL || st->db == NULL || st->sync == NULL || !st->sync->delta)
        return;
    store_sync_forget(st);
}
