/*
 * store_access.c - access lists in the store, and the normal form of their keys
 *
 * The access table (sql/002_access.sql) is small and read a few times
 * per recipient by rcptgate-smtpd. Its statements are prepared per call
 * rather than kept on the handle: store.c finalises only the statements
 * it knows of before sqlite3_close(), and a statement left behind would
 * keep the connection open. Preparing costs microseconds, far below the
 * cost of the SMTP round trip that asks.
 *
 * Keys are normalised here, once, for both the config lists (smtpd_
 * check.c) and the store (rcptgate access add), so that "10.1.2.3/8",
 * "[10.0.0.0]/8" and "10.0.0.0/8" are one entry and a lookup is a string
 * equality per candidate key.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sqlite3.h>

#include "addr.h"
#include "store_access.h"
#include "store_int.h"

static const char *const store_access_types[] = {
    STORE_ACCESS_CLIENT, STORE_ACCESS_HELO, STORE_ACCESS_SENDER, STORE_ACCESS_RCPT, NULL,
};

static const char *const store_access_names[] = {
    [STORE_ACCESS_NONE] = "?",
    [STORE_ACCESS_OK] = "OK",
    [STORE_ACCESS_REJECT] = "REJECT",
    [STORE_ACCESS_DEFER] = "DEFER",
    [STORE_ACCESS_WARN] = "WARN",
    [STORE_ACCESS_DUNNO] = "DUNNO",
};

/* store_access_type_ok - one of the four entry types? */
int store_access_type_ok(const char *type)
{
    for (int i = 0; type != NULL && store_access_types[i] != NULL; i++)
        if (strcmp(type, store_access_types[i]) == 0)
            return 1;
    return 0;
}

/* store_access_action - action word to value */
int store_access_action(const char *word)
{
    for (int i = STORE_ACCESS_OK; i <= STORE_ACCESS_DUNNO; i++)
        if (word != NULL && strcasecmp(word, store_access_names[i]) == 0)
            return i;
    return STORE_ACCESS_NONE;
}

/* store_access_action_name - value to action word */
const char *store_access_action_name(int action)
{
    if (action < STORE_ACCESS_NONE || action > STORE_ACCESS_DUNNO)
        action = STORE_ACCESS_NONE;
    return store_access_names[action];
}

/* store_access_net - "addr[/bits]" (brackets allowed) to its normal form */
static int store_access_net(const char *key, char *out, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 8];
    unsigned char bin[16];
    const char *slash = strchr(key, '/');
    size_t hlen = slash ? (size_t) (slash - key) : strlen(key);
    int family, max, bits;
    char *end;

    if (hlen >= 2 && key[0] == '[' && key[hlen - 1] == ']') {
        key++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        snprintf(err, errlen, "not an address or network");
        return -1;
    }
    memcpy(host, key, hlen);
    host[hlen] = 0;
    if (inet_pton(AF_INET, host, bin) == 1) {
        family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, bin) == 1) {
        family = AF_INET6;
        max = 128;
    } else {
        snprintf(err, errlen, "not an address or network");
        return -1;
    }
    bits = max;
    if (slash != NULL) {
        long v;

        if (!isdigit((unsigned char) slash[1]) || (v = strtol(slash + 1, &end, 10), *end != 0)
            || v < 0 || v > max) {
            snprintf(err, errlen, "bad prefix length");
            return -1;
        }
        bits = (int) v;
    }
    for (int i = 0; i < max / 8; i++) {
        int keep = bits - i * 8;

        if (keep <= 0)
            bin[i] = 0;
        else if (keep < 8)
            bin[i] &= (unsigned char) (0xff << (8 - keep));
    }
    inet_ntop(family, bin, host, sizeof(host));
    if (bits == max)
        snprintf(out, STORE_ACCESS_KEY_SIZE, "%s", host);
    else
        snprintf(out, STORE_ACCESS_KEY_SIZE, "%s/%d", host, bits);
    return 0;
}

/* store_access_domain - a domain or ".parent" form to its normal form */
static int store_access_domain(const char *key, char *out, char *err, size_t errlen)
{
    char dom[ADDR_DOMAIN_MAX + 1];
    int dot = key[0] == '.';
    int rc;

    if ((rc = addr_domain(key + dot, strlen(key + dot), dom)) != ADDR_OK) {
        snprintf(err, errlen, "bad domain: %s", addr_strerror(rc));
        return -1;
    }
    snprintf(out, STORE_ACCESS_KEY_SIZE, "%s%s", dot ? "." : "", dom);
    return 0;
}

/* store_access_mail - a sender/recipient key to its normal form */
static int store_access_mail(const char *key, char *out, char *err, size_t errlen)
{
    const char *at = strrchr(key, '@');
    size_t len = strlen(key);
    ADDR a;
    int rc;

    if (strcmp(key, "<>") == 0) {
        snprintf(out, STORE_ACCESS_KEY_SIZE, "<>");
        return 0;
    }
    if (at == NULL)
        return store_access_domain(key, out, err, errlen);
    if (at == key) {                    /* @domain */
        char dom[STORE_ACCESS_KEY_SIZE];

        if (key[1] == '.' || store_access_domain(key + 1, dom, err, errlen) < 0) {
            snprintf(err, errlen, "bad domain after \"@\"");
            return -1;
        }
        out[0] = '@';
        memcpy(out + 1, dom, strlen(dom) + 1);      /* a domain is at most 255 */
        return 0;
    }
    if (at[1] == 0) {                   /* user@: the local part in any domain */
        char probe[ADDR_KEY_SIZE + 16];

        if (len > ADDR_LOCAL_MAX + 1) {
            snprintf(err, errlen, "local part too long");
            return -1;
        }
        snprintf(probe, sizeof(probe), "%.*s@example.org", (int) (len - 1), key);
        if ((rc = addr_parse(probe, strlen(probe), 0, &a)) != ADDR_OK) {
            snprintf(err, errlen, "bad local part: %s", addr_strerror(rc));
            return -1;
        }
        len = strlen(a.local);
        if (len + 2 > STORE_ACCESS_KEY_SIZE) {
            snprintf(err, errlen, "local part too long");
            return -1;
        }
        memcpy(out, a.local, len);
        memcpy(out + len, "@", 2);
        return 0;
    }
    if ((rc = addr_parse(key, len, 0, &a)) != ADDR_OK || a.is_null) {
        snprintf(err, errlen, "bad address: %s", addr_strerror(rc ? rc : ADDR_ERR_EMPTY));
        return -1;
    }
    snprintf(out, STORE_ACCESS_KEY_SIZE, "%s", a.key);
    return 0;
}

/* store_access_key - normalise a key of type */
int store_access_key(const char *type, const char *key, char *out, char *err, size_t errlen)
{
    out[0] = 0;
    if (!store_access_type_ok(type)) {
        snprintf(err, errlen, "unknown access type \"%s\" (client, helo, sender, recipient)",
                 type ? type : "");
        return -1;
    }
    if (key == NULL || *key == 0) {
        snprintf(err, errlen, "empty key");
        return -1;
    }
    if (strcmp(type, STORE_ACCESS_CLIENT) == 0)
        return store_access_net(key, out, err, errlen);
    if (strcmp(type, STORE_ACCESS_HELO) == 0)
        return store_access_domain(key, out, err, errlen);
    return store_access_mail(key, out, err, errlen);
}

/* store_access_entry - check a whole entry */
int store_access_entry(const char *type, const char *key, const char *action,
                       const char *text, STORE_ACCESS *out, char *err, size_t errlen)
{
    char why[256];

    memset(out, 0, sizeof(*out));
    if (text == NULL)
        text = "";
    if (store_access_key(type, key, out->key, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "\"%s\": %s", key ? key : "", why);
        return -1;
    }
    if ((out->action = store_access_action(action)) == STORE_ACCESS_NONE) {
        snprintf(err, errlen, "\"%s\": unknown action \"%s\" (OK, REJECT, DEFER, WARN, DUNNO)",
                 key, action ? action : "");
        return -1;
    }
    if (out->action == STORE_ACCESS_WARN && *text == 0) {
        snprintf(err, errlen, "\"%s\": WARN needs a text to log", key);
        return -1;
    }
    if ((out->action == STORE_ACCESS_OK || out->action == STORE_ACCESS_DUNNO) && *text != 0) {
        snprintf(err, errlen, "\"%s\": %s takes no text", key, store_access_action_name(out->action));
        return -1;
    }
    if (strlen(text) >= sizeof(out->text) || strpbrk(text, "\r\n") != NULL) {
        snprintf(err, errlen, "\"%s\": text too long or with a line break", key);
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "\"%s\": a control character in the text (a tab would cut access list's columns)",
                     key);
            return -1;
        }
    /* "REJECT 4.7.1 ..." would answer 554 5.7.1 4.7.1 ...: the code belongs to the other action. */
    if ((out->action == STORE_ACCESS_REJECT && text[0] == '4' && text[1] == '.')
        || (out->action == STORE_ACCESS_DEFER && text[0] == '5' && text[1] == '.')) {
        snprintf(err, errlen, "\"%s\": %s's text starts with a %c.x.x status code: use %s, or a %c.x.x code",
                 key, store_access_action_name(out->action), text[0],
                 out->action == STORE_ACCESS_REJECT ? "DEFER" : "REJECT", text[0] == '4' ? '5' : '4');
        return -1;
    }
    snprintf(out->text, sizeof(out->text), "%s", text);
    return 0;
}

/* store_access_prepare - a statement for this call; NULL with the error set */
static sqlite3_stmt *store_access_prepare(STORE *st, const char *sql)
{
    sqlite3_stmt *s = NULL;

    if (store_usable(st) < 0)
        return NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        store_fail(st, "preparing an access table statement");
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

/* store_access_fill - a result row (key, action, text) into out */
static void store_access_fill(sqlite3_stmt *s, STORE_ACCESS *out)
{
    snprintf(out->key, sizeof(out->key), "%s", store_text(s, 0));
    out->action = store_access_action(store_text(s, 1));
    snprintf(out->text, sizeof(out->text), "%s", store_text(s, 2));
}

/* store_access_find - the entry for the first key that has one */
int store_access_find(STORE *st, const char *type, const char *const *keys, size_t n,
                      STORE_ACCESS *out, size_t *which)
{
    sqlite3_stmt *s;
    int rc = 0;

    if ((s = store_access_prepare(st, "SELECT key, action, text FROM access "
                                  "WHERE type = ?1 AND key = ?2")) == NULL)
        return -1;
    sqlite3_bind_text(s, 1, type, -1, SQLITE_STATIC);
    for (size_t i = 0; i < n && rc == 0; i++) {
        int step;

        sqlite3_bind_text(s, 2, keys[i], -1, SQLITE_STATIC);
        step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            store_access_fill(s, out);
            if (which != NULL)
                *which = i;
            rc = 1;
        } else if (step != SQLITE_DONE) {
            rc = store_fail(st, "reading the access table");
        }
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    return rc;
}

/*
 * What store_access_present() found, for one handle: smtpd asks for
 * every recipient, and most stores have no access entries at all, so the
 * answer is kept until another connection changes the file (PRAGMA
 * data_version, which store.c keeps prepared) or this process writes the
 * table. A few seconds at most, in case a closed handle's address is
 * reused by the next one.
 */
static struct {
    const STORE *st;
    const sqlite3 *db;
    long long version;
    time_t when;
    int mask;
} store_access_cache;

#define STORE_ACCESS_CACHE_SECS 2

/* store_access_version - the handle's PRAGMA data_version; -1 on error */
static long long store_access_version(STORE *st)
{
    sqlite3_stmt *s = st->stmt[STMT_DATA_VERSION];
    long long v = -1;

    if (s != NULL && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    if (s != NULL)
        sqlite3_reset(s);
    return v;
}

/* store_access_present - a bit per type that has entries */
int store_access_present(STORE *st, int *mask)
{
    sqlite3_stmt *s;
    long long version;
    time_t now = time(NULL);
    int rc = 0;

    *mask = 0;
    if (store_usable(st) < 0)
        return -1;
    version = store_access_version(st);
    if (version >= 0 && store_access_cache.st == st && store_access_cache.db == st->db
        && store_access_cache.version == version && now >= store_access_cache.when
        && now - store_access_cache.when < STORE_ACCESS_CACHE_SECS) {
        *mask = store_access_cache.mask;
        return 0;
    }
    store_access_cache.st = NULL;
    if ((s = store_access_prepare(st, "SELECT "
                                  "EXISTS (SELECT 1 FROM access WHERE type = 'client'), "
                                  "EXISTS (SELECT 1 FROM access WHERE type = 'helo'), "
                                  "EXISTS (SELECT 1 FROM access WHERE type = 'sender'), "
                                  "EXISTS (SELECT 1 FROM access WHERE type = 'recipient')")) == NULL)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW) {
        for (int i = 0; i < 4; i++)
            if (sqlite3_column_int(s, i))
                *mask |= 1 << i;
        if (version >= 0) {
            store_access_cache.st = st;
            store_access_cache.db = st->db;
            store_access_cache.version = version;
            store_access_cache.when = now;
            store_access_cache.mask = *mask;
        }
    } else {
        rc = store_fail(st, "reading the access table");
    }
    sqlite3_finalize(s);
    return rc;
}

/* store_access_put - add or replace an entry */
int store_access_put(STORE *st, const char *type, const STORE_ACCESS *entry)
{
    sqlite3_stmt *s;
    int rc;

    if ((s = store_access_prepare(st, "INSERT INTO access (type, key, action, text, created) "
                                  "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (type, key) DO UPDATE "
                                  "SET action = excluded.action, text = excluded.text")) == NULL)
        return -1;
    sqlite3_bind_text(s, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, entry->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, store_access_action_name(entry->action), -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, entry->text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, store_now());
    store_access_cache.st = NULL;
    rc = store_step_done(st, s, "writing the access table");
    sqlite3_finalize(s);
    return rc;
}

/* store_access_del - remove one entry */
int store_access_del(STORE *st, const char *type, const char *key)
{
    sqlite3_stmt *s;
    int rc;

    if ((s = store_access_prepare(st, "DELETE FROM access WHERE type = ?1 AND key = ?2")) == NULL)
        return -1;
    sqlite3_bind_text(s, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    store_access_cache.st = NULL;
    rc = store_step_done(st, s, "deleting from the access table");
    if (rc == 0)
        rc = sqlite3_changes(st->db) > 0;
    sqlite3_finalize(s);
    return rc;
}

/* store_access_walk - entries in type, key order */
int store_access_walk(STORE *st, const char *type,
                      int (*fn)(const char *type, const STORE_ACCESS *entry, void *ctx), void *ctx)
{
    STORE_ACCESS e;
    sqlite3_stmt *s;
    int step, rc = 0;

    if ((s = store_access_prepare(st, "SELECT key, action, text, type FROM access "
                                  "WHERE ?1 IS NULL OR type = ?1 ORDER BY type, key")) == NULL)
        return -1;
    if (type != NULL)
        sqlite3_bind_text(s, 1, type, -1, SQLITE_STATIC);
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        char t[16];

        store_access_fill(s, &e);
        snprintf(t, sizeof(t), "%s", store_text(s, 3));
        if (fn(t, &e, ctx) != 0)
            break;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = store_fail(st, "reading the access table");
    sqlite3_finalize(s);
    return rc;
}
