/*
 * store_claim.c - who holds an address, and who else claims it (rcptgate query)
 *
 * An address may be carried by several directory objects: by objects of
 * different sources (each source has a recipient row of its own), and,
 * within a source, by a holder (the recipient row) and claimants that
 * came later (the claim table, see sql/003_claim.sql). Lookups answer
 * with the oldest source's row; the sender-login check lets only the
 * holder's logins through (store_login.c); a restriction of any of them
 * holds (store_rcpt_get). This walk lists them all, holders first, for
 * `rcptgate query` to show a postmaster what a collision decided.
 *
 * The statement is prepared per call: the admin command asks once.
 */
#include "config.h"

#include "store_int.h"

/*
 * Holders (recipient rows) in source order, then claims by source and
 * guid. Column 8 says which; the first holder row with an object is the
 * one whose logins may send as the address.
 */
static const char store_claim_sql[] =
    "SELECT s.name, r.kind, COALESCE(o.dn, ''), COALESCE(o.guid, ''), COALESCE(r.object_id, 0),"
    " r.last_seen, r.flags, 1 AS holds, s.id AS sid, '' AS g"
    " FROM recipient r JOIN source s ON s.id = r.source_id LEFT JOIN object o ON o.id = r.object_id"
    " WHERE r.address = ?1"
    " UNION ALL "
    "SELECT s.name, o.kind, o.dn, o.guid, o.id, c.since, o.flags, 0, s.id, o.guid"
    " FROM claim c JOIN object o ON o.id = c.object_id JOIN source s ON s.id = o.source_id"
    " WHERE c.address = ?1"
    " ORDER BY holds DESC, sid, g";

/* store_claim_walk - every holder and claimant of address, holders first; fn non-zero stops */
int store_claim_walk(STORE *st, const char *address, int (*fn)(const STORE_CLAIM *, void *), void *ctx)
{
    sqlite3_stmt *s = NULL;
    int rc, login_given = 0;

    if (store_usable(st) < 0)
        return -1;
    if (sqlite3_prepare_v2(st->db, store_claim_sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail(st, "preparing the claim lookup");
    if (sqlite3_bind_text(s, 1, address, -1, SQLITE_STATIC) != SQLITE_OK) {
        sqlite3_finalize(s);
        return store_fail(st, "claim lookup");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        STORE_CLAIM c;

        c.source = store_text(s, 0);
        c.kind = store_text(s, 1);
        c.dn = store_text(s, 2);
        c.guid = store_text(s, 3);
        c.object_id = sqlite3_column_int64(s, 4);
        c.since = sqlite3_column_int64(s, 5);
        c.flags = sqlite3_column_int(s, 6);
        c.holds = sqlite3_column_int(s, 7);
        c.login = c.holds && c.object_id != 0 && !login_given;
        if (c.login)
            login_given = 1;
        if (fn(&c, ctx) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        store_fail(st, "claim lookup");
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}
