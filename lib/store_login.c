/*
 * store_login.c - may a logged-in user send as an address? (sender login mismatch)
 *
 * rcptgate-syncd fills the login table from sAMAccountName,
 * userPrincipalName and uid, lowercased; each login row points at a
 * directory object, and the object's recipient rows are the addresses
 * it may send as. The login arrives as the SASL layer gives it, which
 * may be "user", "user@realm" or a UPN, in any case. We compare ASCII
 * case-insensitively (by lowercasing the login, as syncd lowercased the
 * table) and try, in order, stopping at the first name the table knows:
 *
 *   1. the login as given ("jdoe", "jdoe@example.com");
 *   2. "user@realm" given and unknown: "user" (Cyrus SASL appends its
 *      realm to a bare user name; the directory may hold only the
 *      sAMAccountName or uid);
 *   3. "user" given and unknown: "user@<the address's domain>" (the
 *      directory may hold only the userPrincipalName, whose suffix is
 *      usually the mail domain).
 *
 * Only the address's holder passes: see store_login_sql.
 * A name the table knows decides alone: if "jdoe@a.example" is a login
 * of some object, a "jdoe" of another object is never consulted, so one
 * realm's user cannot borrow a namesake's addresses. Exact addresses
 * only: owning a catch-all "@domain" does not grant every address of it.
 *
 * The statement is prepared per call (the store's handle has no slot for
 * it; smtpd asks only for authenticated sessions, at each RCPT, as the
 * sender checks run there), read-only, with bound parameters.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "xalloc.h"

/*
 * Column 0: does the login own the address; column 1: is the login
 * known at all. The address belongs to one object only, its holder: of
 * the rows that have an object, the one of the oldest source (the order
 * store_rcpt_get answers in). Within a source the row points at the
 * object that held the address first; another object carrying it too
 * only claims it (the claim table) and gets nothing here. The recipient
 * primary key finds the address's few rows, the login primary key
 * checks the holder.
 */
static const char store_login_sql[] =
    "SELECT EXISTS (SELECT 1 FROM login l WHERE l.name = ?1 AND l.object_id ="
    " (SELECT r.object_id FROM recipient r WHERE r.address = ?2 AND r.object_id IS NOT NULL"
    " ORDER BY r.source_id LIMIT 1)),"
    " EXISTS (SELECT 1 FROM login WHERE name = ?1)";

/* store_login_ask - 1 owns, 0 known but does not own, 2 unknown login, -1 error */
static int store_login_ask(STORE *st, sqlite3_stmt *s, const char *name, const char *address)
{
    int rc, owns, known;

    sqlite3_reset(s);
    if (sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC) != SQLITE_OK
        || sqlite3_bind_text(s, 2, address, -1, SQLITE_STATIC) != SQLITE_OK)
        return store_fail(st, "login lookup");
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        return store_fail(st, "login lookup");
    owns = sqlite3_column_int(s, 0);
    known = sqlite3_column_int(s, 1);
    sqlite3_reset(s);
    return owns ? 1 : known ? 0 : 2;
}

/* store_login_lower - an ASCII-lowercased copy */
static char *store_login_lower(const char *s)
{
    char *out = xstrdup(s);

    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char) (*p - 'A' + 'a');
    return out;
}

/* store_login_owns - 1 the login's object holds address, 0 not (or unknown login), -1 error */
int store_login_owns(STORE *st, const char *login, const char *address)
{
    sqlite3_stmt *s = NULL;
    char *name, *alt = NULL;
    const char *at, *dom;
    int r;

    if (store_usable(st) < 0)
        return -1;
    if (login == NULL || *login == 0 || address == NULL || *address == 0)
        return 0;
    if (sqlite3_prepare_v2(st->db, store_login_sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail(st, "preparing the login lookup");
    name = store_login_lower(login);
    r = store_login_ask(st, s, name, address);
    if (r == 2) {
        if ((at = strrchr(name, '@')) != NULL) {
            if (at > name && at[1] != 0)
                alt = xstrndup(name, (size_t) (at - name));
        } else if ((dom = strrchr(address, '@')) != NULL && dom[1] != 0) {
            alt = xasprintf("%s%s", name, dom);
        }
        if (alt != NULL)
            r = store_login_ask(st, s, alt, address);
    }
    sqlite3_finalize(s);
    free(name);
    free(alt);
    return r == 2 ? 0 : r;
}
