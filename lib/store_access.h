/*
 * store_access.h - access lists (client, HELO, sender, recipient) in the store
 *
 * The rules' access lists (lib/rules.c) can live in rcptgate.conf ([rules]
 * client_access ...) or in the store's access table (written by
 * `rcptgate access add|del`). Both hold entries "KEY ACTION [text]" and
 * both go through the functions here, so a key means the same wherever
 * it is written:
 *
 *   client     an IPv4 or IPv6 address, or a network "addr/bits"
 *              ("[::1]/128" too); stored as "addr" for a whole address,
 *              else "network/bits" with the host bits cleared
 *   helo       a host name (lowercase A-label, no trailing dot), a
 *              parent form ".example.com", or an address literal
 *   sender,    "user@domain" (rcptgate's normal form), "@domain" (any
 *   recipient  user of exactly that domain), "domain" (that domain and,
 *              as Postfix's access(5), its subdomains), ".domain"
 *              (subdomains only), "user@" (that local part anywhere),
 *              "<>" (the null sender)
 *
 * Actions: OK, REJECT, DEFER, WARN (text required), DUNNO (stop looking,
 * no decision). Lookups return -1 / 0 / 1 like every store lookup.
 */
#ifndef RG_STORE_ACCESS_H
#define RG_STORE_ACCESS_H

#include <stddef.h>

#include "store.h"

/* Entry types, as stored. */
#define STORE_ACCESS_CLIENT     "client"
#define STORE_ACCESS_HELO       "helo"
#define STORE_ACCESS_SENDER     "sender"
#define STORE_ACCESS_RCPT       "recipient"

/* Actions. */
enum store_access_action {
    STORE_ACCESS_NONE = 0,      /* not a valid action */
    STORE_ACCESS_OK,
    STORE_ACCESS_REJECT,
    STORE_ACCESS_DEFER,
    STORE_ACCESS_WARN,
    STORE_ACCESS_DUNNO,
};

#define STORE_ACCESS_KEY_SIZE   320     /* a normal-form key (ADDR_KEY_SIZE) */
#define STORE_ACCESS_TEXT_SIZE  400     /* reply text; longer is cut */

/* One entry, copied out of the store (no pointers into it). */
typedef struct store_access {
    char key[STORE_ACCESS_KEY_SIZE];
    int action;                         /* enum store_access_action */
    char text[STORE_ACCESS_TEXT_SIZE];  /* "" when none */
} STORE_ACCESS;

/* store_access_type_ok - is type one of the four entry types? */
int store_access_type_ok(const char *type);

/* store_access_action - an action word (case-insensitive) to its value; STORE_ACCESS_NONE if unknown */
int store_access_action(const char *word);

/* store_access_action_name - "OK", "REJECT" ... for a value */
const char *store_access_action_name(int action);

/*
 * store_access_key - normalise key for an entry of type into out
 * (STORE_ACCESS_KEY_SIZE bytes). 0, or -1 with the reason in err.
 */
int store_access_key(const char *type, const char *key, char *out, char *err, size_t errlen);

/*
 * store_access_entry - check a whole entry as `rcptgate access add` and
 * the config lists give it: key normalised into out->key, action known,
 * WARN with a text, OK/DUNNO without one. 0, or -1 with err set.
 */
int store_access_entry(const char *type, const char *key, const char *action,
                       const char *text, STORE_ACCESS *out, char *err, size_t errlen);

/*
 * store_access_find - the entry of type for the first of keys[0..n-1]
 * (normal-form keys, most specific first) that has one. 1 found (out
 * filled, *which = its index when which is not NULL), 0 none, -1 error.
 * Does not open a transaction: callers wrap it in store_read_begin/end.
 */
int store_access_find(STORE *st, const char *type, const char *const *keys, size_t n,
                      STORE_ACCESS *out, size_t *which);

/*
 * store_access_present - which types have entries at all: bit i of *mask
 * for type i in client, helo, sender, recipient order. Four index
 * probes, so a caller can skip building lookup keys for empty lists.
 * 0 or -1.
 */
int store_access_present(STORE *st, int *mask);

/* store_access_put - add or replace an entry (already checked); 0 or -1 */
int store_access_put(STORE *st, const char *type, const STORE_ACCESS *entry);

/* store_access_del - remove the entry of type with that normal-form key; 1, 0 absent, -1 */
int store_access_del(STORE *st, const char *type, const char *key);

/*
 * store_access_walk - entries of type (NULL: all) in type, key order; fn
 * gets the type and the entry (valid during the call); non-zero stops.
 * 0 or -1.
 */
int store_access_walk(STORE *st, const char *type,
                      int (*fn)(const char *type, const STORE_ACCESS *entry, void *ctx), void *ctx);

#endif
