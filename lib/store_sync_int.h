/*
 * store_sync_int.h - what store_sync.c and store_delta.c share; not for others
 *
 * A pull in progress (full or incremental) and its objects, the prepared
 * statements both use, and the helpers store_sync.c lends store_delta.c:
 * copying objects in, hash tables of guids and DNs (store_sync_map.c),
 * and the row writes.
 * Also the batched INSERT of store_bulk.c, which the bulk writers share.
 * Programs use store_sync.h.
 */
#ifndef RG_STORE_SYNC_INT_H
#define RG_STORE_SYNC_INT_H

#include <stdint.h>

#include "store_int.h"
#include "store_sync.h"

#define SYNC_KINDS  32                  /* distinct kinds in one pull */

/* --- batched inserts (store_bulk.c) */

#define STORE_BATCH_VALUES  512         /* row values per INSERT statement, at most */
#define STORE_BATCH_ROWS    128         /* rows per INSERT statement, at most */
#define STORE_BATCH_FIXED   4           /* parameters shared by every row */

/* One value of a row: text (kept by pointer) or, when s is NULL, a number. */
typedef struct store_batch_val {
    const char *s;
    long long i;
} STORE_BATCH_VAL;

/*
 * A multi-row INSERT in the making: rows are collected and run
 * STORE_BATCH_ROWS (or fewer, see store_bulk_batch_init) at a time.
 * Text values are bound without a copy: they must live until the flush.
 */
typedef struct store_batch {
    const char *what;                   /* for error messages */
    const char *head;                   /* "INSERT INTO t (a, b) VALUES " */
    const char *tail;                   /* "" or e.g. " ON CONFLICT DO NOTHING" */
    const int *cols;                    /* per column: fixed parameter number, or 0 */
    int ncols, nrow, nfixed;            /* columns, values per row, fixed parameters */
    int max;                            /* rows per full statement */
    long long fixed[STORE_BATCH_FIXED];
    sqlite3_stmt *full;                 /* the statement of max rows */
    STORE_BATCH_VAL val[STORE_BATCH_VALUES];
    int nval;                           /* values collected */
    long long changes;                  /* rows the statements changed */
} STORE_BATCH;

/*
 * store_bulk_batch_init - an empty batch of INSERT head VALUES rows tail.
 * cols[c] > 0: column c is fixed parameter cols[c] (1 .. nfixed, values
 * fixed[]); 0: a value of each row, given in column order with
 * store_bulk_batch_text/int, each row ended by store_bulk_batch_row.
 */
void store_bulk_batch_init(STORE_BATCH *b, const char *what, const char *head,
                           const char *tail, const int *cols, int ncols, const long long *fixed,
                           int nfixed);
void store_bulk_batch_text(STORE_BATCH *b, const char *s);
void store_bulk_batch_int(STORE_BATCH *b, long long i);
/* store_bulk_batch_row - end a row; runs the batch when full (0 or -1) */
int store_bulk_batch_row(STORE *st, STORE_BATCH *b);
/* store_bulk_batch_flush - run the rows collected (0 or -1) */
int store_bulk_batch_flush(STORE *st, STORE_BATCH *b);
/* store_bulk_batch_free - finalize its statement; rows not flushed are dropped */
void store_bulk_batch_free(STORE_BATCH *b);

/* What the merge decided for an object or an address. */
enum sync_op {
    SOP_KEEP,                           /* in the store as it is */
    SOP_INSERT,
    SOP_UPDATE,
    SOP_DELETE,                         /* store_delta_del */
    SOP_SKIP,                           /* a later operation on its guid supersedes it */
};

/* sync_obj.dirty: what the login and member merges found missing. */
#define DIRTY_LOGINS    0x01
#define DIRTY_MEMBERS   0x02
#define DIRTY_WRITTEN   0x04            /* sync_apply wrote the object row */

/* One object put. Its strings and list live in the sync's arena. */
typedef struct sync_obj {
    const char *guid;
    const char *dn;
    const char **list;                  /* n_addr addresses, n_login logins, n_member DNs */
    uint32_t n_addr, n_login, n_member;
    long long id;                       /* object id, once known (0 before) */
    int flags;
    uint16_t kind;                      /* index into kinds[] */
    uint8_t op;                         /* enum sync_op */
    uint8_t dirty;                      /* DIRTY_* */
} SYNC_OBJ;

/*
 * A sort key: an 8-byte big-endian prefix of s decides most comparisons
 * without touching the string; then s itself, then a and b. Also the
 * entry of the address list (a: object index, b: enum sync_op).
 */
typedef struct sync_key {
    uint64_t pfx;
    const char *s;
    uint32_t a, b;
} SYNC_KEY;

/* A login or membership row to delete. */
typedef struct sync_row {
    long long id;                       /* object (login) or group (member) */
    long long member;
    const char *name;
} SYNC_ROW;

/*
 * A string -> index hash table (open addressing, linear probing). Key i
 * is the string pointer at base + i * stride: the guid or DN field of
 * the object array, or an array of strings.
 */
/*
 * An address several objects of a full pull claim: its entry in the
 * address list (key), and the claimants, object indexes into claimants[].
 */
typedef struct sync_coll {
    const char *address;
    uint32_t key;                       /* index into addrs: who holds it */
    uint32_t first, n;                  /* claimants[first .. first + n) */
} SYNC_COLL;

typedef struct sync_map {
    uint32_t *slot;                     /* index + 1; 0 empty */
    size_t mask;
    const char *base;
    size_t stride;
    int nocase;                         /* DNs: ASCII case-insensitive */
} SYNC_MAP;

typedef struct sync_stage SYNC_STAGE;    /* a full pull staged in a temporary database (store_sync_stage.c) */

struct store_sync {
    STORE_RUN run;
    int delta;                          /* store_delta_*, not store_sync_* */
    int expect_set;                     /* store_delta_expect: the cookie to find at commit */
    char *expect_cookie;                /* (NULL: none stored) */
    char *settings;                     /* store_sync_settings(): stored with the cookie */
    int legacy;                         /* full: the in-memory merge (store_sync_legacy.c) */
    SYNC_STAGE *stage;                  /* full: the staged pull, unless legacy */
    int fk_off;                         /* full: foreign keys off, cascades by hand */
    int merged;                         /* objects and addresses compared (under the lock) */
    STORE_ARENA arena;
    SYNC_OBJ *objs;
    size_t nobjs, capobjs;
    size_t nmembers;                    /* member DNs over all objects put */
    char *kinds[SYNC_KINDS];
    int nkinds;
    SYNC_KEY *addrs;                    /* full: the wanted addresses, sorted, unique */
    size_t naddrs;
    long long *gone_objs;               /* full: objects of the source not put */
    size_t ngone_objs, capgone_objs;
    const char **gone_addrs;            /* full: addresses of the source not wanted */
    size_t ngone_addrs, capgone_addrs;
    SYNC_ROW *rows;                     /* login/member rows to delete */
    size_t nrows, caprows;
    long long *ids;                     /* scratch: one group's member ids */
    size_t nids, capids;
    uint32_t *byid;                     /* full: object indexes in id order */
    size_t nbyid;                       /*   how many so far (see sync_byid) */
    int byid_unsorted;                  /*   the scan did not come in id order */
    SYNC_MAP guids;                     /* guid -> object */
    SYNC_MAP dns;                       /* full: DN -> object; delta: DN -> need[] */
    const char **need;                  /* delta: the member DNs to resolve */
    long long *need_id;                 /*   their object ids (0: none) */
    const char **need_guid;             /*   and guids (the lowest wins) */
    size_t nneed, capneed;
    SYNC_COLL *colls;                   /* full: addresses claimed by several objects, sorted */
    size_t ncolls, capcolls;
    uint32_t *claimants;                /*   their claimants (object indexes) */
    size_t nclaimants, capclaimants;
    const char **dclaims;               /* delta: one object's addresses held by another */
    long long *dholders;                /*   and who holds each */
    size_t ndclaims, capdclaims;
    const char **fresh;                 /* delta: addresses given a holder by this pull, */
    SYNC_OBJ **fresh_obj;               /*   to which object, */
    size_t nfresh;
    SYNC_MAP fresh_map;                 /*   by address: the lowest guid among them holds */
    int applied;                        /* delta: written under the lock, not committed yet */
    char **notes;                       /* delta: log lines held until the commit (a */
    int *note_warn;                     /*   refusal rolls back what they tell); warning? */
    size_t nnotes, capnotes;
    long long claims_added, claims_removed;
    int others;                         /* other sources have objects: 1, 0, -1 not asked yet */
    STORE_COUNTS counts;                /* recipient addresses */
    long long o_added, o_changed, o_removed;
    long long l_added, l_removed, m_added, m_removed;
};

enum store_sstmt {
    SSTMT_OBJ_SCAN,
    SSTMT_RCPT_SCAN,
    SSTMT_LOGIN_SCAN,
    SSTMT_MEMBER_SCAN,
    SSTMT_OBJ_GET,
    SSTMT_OBJ_INSERT,
    SSTMT_OBJ_UPDATE,
    SSTMT_OBJ_DELETE,
    SSTMT_OBJ_MAX,
    SSTMT_RCPT_GET,
    SSTMT_RCPT_OF,
    SSTMT_RCPT_INSERT,
    SSTMT_RCPT_UPDATE,
    SSTMT_RCPT_DELETE,
    SSTMT_RCPT_DEL_OBJ,
    SSTMT_LOGIN_OF,
    SSTMT_LOGIN_INSERT,
    SSTMT_LOGIN_DELETE,
    SSTMT_MEMBER_OF,
    SSTMT_MEMBER_INSERT,
    SSTMT_MEMBER_DELETE,
    SSTMT_STATE_SET,
    SSTMT_STATE_GET,
    SSTMT_AGE,
    SSTMT_SYNCED,
    SSTMT_FOREIGN_KEYS,
    SSTMT_FK_REFS,
    SSTMT_LOGIN_DEL_OBJ,
    SSTMT_MEMBER_DEL_GROUP,
    SSTMT_MEMBER_DEL_MEMBER,
    SSTMT_CLAIM_SCAN,
    SSTMT_CLAIM_OF,
    SSTMT_CLAIM_INSERT,
    SSTMT_CLAIM_DELETE,
    SSTMT_CLAIM_DEL_OBJ,
    SSTMT_CLAIM_BEST,
    SSTMT_CLAIM_HELD,
    SSTMT_OBJ_BY_ID,
    SSTMT_OTHER_OBJS,
    SSTMT_OTHER_HOLDER,
    SSTMT_CLAIM_COUNT,
    SSTMT_COUNT
};

_Static_assert(SSTMT_COUNT <= STORE_SSTMT_MAX, "STORE_SSTMT_MAX too small");

/* store_sync_logins - an object's logins (sorted, unique) */
static inline const char **store_sync_logins(const SYNC_OBJ *o)
{
    return o->list + o->n_addr;
}

/* store_sync_members - an object's member DNs, as put */
static inline const char **store_sync_members(const SYNC_OBJ *o)
{
    return o->list + o->n_addr + o->n_login;
}

/* store_sync_grow - room for one more element in a growable array */
void *store_sync_grow(void *p, size_t *cap, size_t n, size_t size, size_t first);

/* store_sync_unique_ids - sort ids and drop repeats; the new count */
size_t store_sync_unique_ids(long long *v, size_t n);

/* The guid and DN tables: store_sync_map.c. */

/* store_sync_map_init - an empty table for up to n keys found through base/stride */
void store_sync_map_init(SYNC_MAP *m, size_t n, const void *base, size_t stride, int nocase);

/* store_sync_map_slot - the slot holding key, or the empty slot where it would go */
uint32_t *store_sync_map_slot(const SYNC_MAP *m, const char *key);

/* store_sync_map_free - free a table's slots */
void store_sync_map_free(SYNC_MAP *m);

/*
 * store_sync_index_guids - the guid table over the pull. Of several
 * operations on one guid only the last counts: the earlier become
 * SOP_SKIP, and with compact (a full pull) are dropped from the array.
 */
void store_sync_index_guids(STORE_SYNC *y, int compact);

/*
 * store_sync_test_legacy - TEST ONLY: when set, store_sync_begin runs the
 * full pull through the former in-memory merge (store_sync_legacy.c)
 * instead of the staged one, so that tests/unit/test_sync_equiv can
 * compare the two. Programs never set it.
 */
extern int store_sync_test_legacy;

/* The former in-memory full pull (store_sync_legacy.c): merge (takes the lock) and apply. */
int store_sync_legacy_merge(STORE *st);
int store_sync_legacy_apply(STORE *st);

/* The staged full pull (store_sync_stage.c). */
/* store_sync_stage_begin - the staging database, tables and statements of a full pull */
int store_sync_stage_begin(STORE *st);
/* store_sync_stage_put - stage one object (checked by store_sync_check, which gave kind) */
int store_sync_stage_put(STORE *st, const STORE_OBJECT *obj, int kind);
/* store_sync_stage_merge - take the lock (once), compare with the store, count */
int store_sync_stage_merge(STORE *st);
/* store_sync_stage_apply - write the differences (after the merge) */
int store_sync_stage_apply(STORE *st);
/* store_sync_stage_end - roll back the staging transaction if it is open */
void store_sync_stage_end(STORE *st);
/* store_sync_stage_free - detach the staging database (outside a transaction), free the statements */
void store_sync_stage_free(STORE *st);

/* store_sync_check - refuse what put can not take; the index of the object's kind, or -1 */
int store_sync_check(STORE *st, const STORE_OBJECT *obj, const char *guid);

/* store_sync_unique_strs - sort a list of strings and drop repeats; the new count */
uint32_t store_sync_unique_strs(const char **v, uint32_t n);

/* store_sync_del_obj - remove an object and, with foreign keys off, what cascades from it */
int store_sync_del_obj(STORE *st, long long id);

/* store_sync_start - begin a full (delta 0) or incremental (delta 1) pull */
int store_sync_start(STORE *st, const char *source, const char *type, int delta);

/* store_sync_add - copy an object (op SOP_KEEP) or a deletion (SOP_DELETE) into the pull */
int store_sync_add(STORE *st, const STORE_OBJECT *obj, const char *guid, int op);

/* store_sync_forget - forget a sync in progress: roll back what is open, free */
void store_sync_forget(STORE *st);

/* store_delta_notes_free - drop an incremental pull's held log lines (store_sync_forget) */
void store_delta_notes_free(STORE_SYNC *y);

/*
 * store_sync_obj_text - "dn" (guid G, object N) of source S, for the
 * collision log lines; into buf, which is returned
 */
#define STORE_SYNC_OBJ_TEXT 768          /* room for store_sync_obj_text, never truncated */
const char *store_sync_obj_text(char *buf, size_t size, const char *source, const char *dn,
                                const char *guid, long long id);

/* store_sync_obj_by_id - the guid and dn of object id into buf (as store_sync_obj_text) */
const char *store_sync_obj_by_id(STORE *st, char *buf, size_t size, long long id);

/* store_sync_claim - add (insert 1) or drop (0) the claim of object id on address; rows changed or -1 */
int store_sync_claim(STORE *st, int insert, const char *address, long long id, long long now);

/*
 * store_sync_cross - object o of the pull gets a new row of address: if
 * an object of another source holds it too, log that collision (once:
 * the row is new). 0 or -1.
 */
int store_sync_cross(STORE *st, const char *address, const SYNC_OBJ *o);

/* store_sync_write_obj - insert (setting o->id) or update one object */
int store_sync_write_obj(STORE *st, SYNC_OBJ *o, long long now);

/* store_sync_write_rcpt - insert or update (same binding) one address of object o */
int store_sync_write_rcpt(STORE *st, sqlite3_stmt *s, const char *address, const SYNC_OBJ *o,
                          const char *kind, long long now);

/* store_sync_del_rcpt - delete one address of the source */
int store_sync_del_rcpt(STORE *st, const char *address);

/* store_sync_del_id - run a one-id delete (an object, an object's recipients); rows deleted or -1 */
long long store_sync_del_id(STORE *st, int which, long long id, const char *what);

/* store_sync_pair - a LOGIN_ or MEMBER_ statement on (name or group, id or member); rows changed or -1 */
int store_sync_pair(STORE *st, int which, long long a, const char *name, long long b);

/* store_sync_row_add - a login or membership row to delete once the scan is over */
void store_sync_row_add(STORE_SYNC *y, long long id, const char *name, long long member);

/* store_sync_lock - take the write lock for the pull (no-op if held); checks foreign keys are on */
int store_sync_lock(STORE *st);

/* store_sync_finish - store the state, record the run, commit, log; 0 or -1 */
int store_sync_finish(STORE *st, const char *cookie, const char *invocation_id, STORE_COUNTS *counts);

#endif
