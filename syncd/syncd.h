/*
 * syncd.h - what the parts of rcptgate-syncd share
 *
 * source.c: the [source NAME] configuration family, the object being
 * built from a directory entry (SOURCE_OBJ; addresses normalised by
 * lib/addr.c's addr_key(), as `rcptgate import` does), and what syncd.c
 * asks of the backends through their SOURCE_OPS (source.h).
 * source_ldap.c and source_ldap_ad.c: the LDAP connection and search
 * helpers, and the two flavours (generic, ad) as small tables.
 * sync_apply.c: a full (or incremental) pull applied to the store, with
 * the shrink guard and the export. syncd.c: main, the --once run and the
 * daemon loop.
 *
 * A SOURCE is opaque to everything but its backend: each backend keeps its
 * own struct and converts the SOURCE pointer it handed out back to it.
 */
#ifndef RG_SYNCD_H
#define RG_SYNCD_H

#include <signal.h>
#include <stddef.h>

#include <ldap.h>

#include "cfg.h"
#include "log.h"
#include "source.h"
#include "store_sync.h"

#define SYNCD_NAME "rcptgate-syncd"

/* Exit statuses of --once (sysexits.h values; see rcptgate-syncd(8)). */
#define SYNCD_EX_DATAERR    65      /* the shrink guard refused a sync */

/* Set by the signal handlers in syncd.c; a pull checks it between entries. */
extern volatile sig_atomic_t syncd_stopping;

/* The configuration file in use (absolute), for messages that suggest a command. */
extern const char *syncd_conf_path;

/* ------------------------------------------------------------ source.c */

/* source_validate_ldap - source_ldap_ops.validate: the settings of a type = ldap source */
int source_validate_ldap(const char *file, int line, const char *name, const SOURCE_CONF *c);

/* The [source NAME] family for cfg_load_families(), NULL-name terminated. */
extern const CFG_FAMILY source_families[];

/*
 * source_conf_take - the instances a good load installed (and their
 * count); the caller owns them and frees each with source_conf_free().
 * NULL with *count 0 when no load has installed any since the last take.
 */
SOURCE_CONF **source_conf_take(int *count);

/* source_conf_free - free one instance, its password zeroed; NULL is fine */
void source_conf_free(SOURCE_CONF *conf);

/* source_conf_equal - do two instances hold the same settings? */
int source_conf_equal(const SOURCE_CONF *a, const SOURCE_CONF *b);

/*
 * source_conf_fingerprint - a short text that changes with any of the
 * source's settings: stored beside the cookie (store_sync_settings), so
 * that an incremental pull from a cookie taken under other settings (a
 * base, filter or attribute changed before a restart) pulls in full.
 */
#define SOURCE_FINGERPRINT_LEN 24
void source_conf_fingerprint(const SOURCE_CONF *c, char out[SOURCE_FINGERPRINT_LEN]);

/*
 * source_words - split a space-separated list into a NULL-terminated
 * array of new strings (free with source_words_free); *count gets the
 * number of words.
 */
char **source_words(const char *list, int *count);
void source_words_free(char **words);

/* source_uri_loopback - 1 when an LDAP URI's host is loopback (127/8, ::1, localhost) */
int source_uri_loopback(const char *uri);

/* A growing list of distinct strings (an index finds repeats once it is long: source.c). */
typedef struct source_list {
    char **v;
    size_t n;
    size_t size;
    size_t *slot;                   /* 1 + index into v by hash, or 0; NULL while the list is short */
    size_t nslot;                   /* a power of two, at least twice n */
} SOURCE_LIST;

/*
 * The object being built from one directory entry. Reused from entry to
 * entry: source_obj_reset() empties it but keeps its arrays.
 */
typedef struct source_obj {
    const char *source;         /* source name, for warnings */
    char *dn;
    char *guid;
    const char *kind;           /* STORE_KIND_* */
    int flags;
    SOURCE_LIST addresses;
    SOURCE_LIST logins;
    SOURCE_LIST members;
} SOURCE_OBJ;

void source_obj_init(SOURCE_OBJ *obj, const char *source);
void source_obj_reset(SOURCE_OBJ *obj);
void source_obj_free(SOURCE_OBJ *obj);
void source_obj_set_dn(SOURCE_OBJ *obj, const char *dn, size_t len);
/* source_obj_set_guid - the identity, lowercased */
void source_obj_set_guid(SOURCE_OBJ *obj, const char *guid, size_t len);

/*
 * source_obj_address - add one address value of attribute attr after
 * normalising it. A value that does not parse is skipped: one warning
 * naming the DN and the value (at most a few per pull, then counted only)
 * and sink->skipped++. 1 added, 0 already there, -1 skipped.
 */
int source_obj_address(SOURCE_OBJ *obj, SYNC_SINK *sink, const char *attr, const char *value, size_t len);

/* source_obj_login - add a login name, lowercased (duplicates dropped) */
void source_obj_login(SOURCE_OBJ *obj, const char *value, size_t len);

/* source_obj_member - add a member DN as the directory gave it (once) */
void source_obj_member(SOURCE_OBJ *obj, const char *value, size_t len);

/* source_obj_members_clear, source_obj_logins_clear - drop the members (logins) added so far */
void source_obj_members_clear(SOURCE_OBJ *obj);
void source_obj_logins_clear(SOURCE_OBJ *obj);

/* source_obj_put - hand the object to the sink; 0, or -1 (the sink's) */
int source_obj_put(SOURCE_OBJ *obj, SYNC_SINK *sink);

/* source_skip_warn - a warning about an unusable value, rate-limited per pull */
void source_skip_warn(SYNC_SINK *sink, const char *fmt, ...) RG_PRINTF(2, 3);

/* ------------------------------------------------------------ source_ldap.c */

typedef struct source_ldap SOURCE_LDAP;

/* What differs between directories: defaults and the entry mapping. */
typedef struct source_ldap_flavour {
    const char *name;
    const char *filter;             /* default filter */
    const char *addresses;          /* default address_attributes */
    const char *logins;             /* default login_attributes */
    const char *const *attrs;       /* further attributes the mapping reads */
    /* begin - before the searches of a full pull (rootDSE reads ...); 0 or -1 */
    int (*begin)(SOURCE_LDAP *sl, char *err, size_t errlen);
    /* entry - map one entry and hand it to sl->sink; 0 or -1 */
    int (*entry)(SOURCE_LDAP *sl, LDAPMessage *e, char *err, size_t errlen);
    /* end - after a complete pull: the incremental state (malloc'd, or NULL) */
    void (*end)(SOURCE_LDAP *sl, char **cookie, char **invocation_id);
    /*
     * incremental - the changes since cookie to sl->sink (SOURCE_OPS'
     * incremental, with sl->sink set): SOURCE_OK and the new state
     * (malloc'd), SOURCE_FULL or SOURCE_ERR with err. NULL: none.
     */
    int (*incremental)(SOURCE_LDAP *sl, const char *cookie, const char *invocation_id,
                       char **new_cookie, char **new_invocation_id, char *err, size_t errlen);
} SOURCE_LDAP_FLAVOUR;

extern const SOURCE_LDAP_FLAVOUR source_ldap_generic;
extern const SOURCE_LDAP_FLAVOUR source_ldap_ad;

/* One open LDAP source. */
struct source_ldap {
    const SOURCE_CONF *conf;        /* borrowed: lives until close */
    const SOURCE_LDAP_FLAVOUR *flavour;
    LDAP *ld;
    int tls;                        /* how the connection is protected (source_ldap.c) */
    char *uri;                      /* the URI we are connected to */
    const char *filter;             /* conf->filter or the flavour's */
    char **attrs;                   /* what the searches request */
    char **addr_attrs;              /* address attributes */
    char **login_attrs;             /* login attributes */
    SOURCE_OBJ obj;                 /* the entry being mapped */
    SYNC_SINK *sink;                /* during a pull */
    long long entries;              /* entries seen in this pull */
    long long disabled;             /* ad: disabled accounts left out */
    /* ad: incremental state and settings */
    long long *shared_types;
    int n_shared_types;
    long long usn_start;            /* highestCommittedUSN before the pull, -1 unknown */
    long long usn_max;              /* highest uSNChanged seen */
    char *invocation_id;
    struct source_ldap_sync *sync;  /* generic: RFC 4533 state (source_ldap_sync.c) */
    struct source_ldap_ad_notify *notify;   /* ad: change notification searches (source_ldap_ad.c) */
    int last_code;                  /* the LDAP result code of the last failed search, else 0 */
    char *naming_context;           /* ad: the rootDSE's defaultNamingContext, NULL unknown */
    char *dirsync_cookie;           /* ad: a full pull's DirSync cookie (base64), NULL none */
};

/* Called for each entry a search returns; 0 or -1 (err set) to stop. */
typedef int (*SOURCE_LDAP_ENTRY_FN)(SOURCE_LDAP *sl, LDAPMessage *e, void *ctx, char *err, size_t errlen);

/*
 * source_ldap_search - one search with the source's timeouts: paged
 * (RFC 2696, critical, page_size) or not, every page until the server's
 * cookie is empty. Search references are ignored (logged at debug level);
 * any result but success (size limit, referral, ...) or a lost connection
 * is an error. 0, or -1 with err set.
 */
int source_ldap_search(SOURCE_LDAP *sl, const char *base, int scope, const char *filter,
                       char **attrs, int paged, SOURCE_LDAP_ENTRY_FN fn, void *ctx,
                       char *err, size_t errlen);

/*
 * source_ldap_search_ext - source_ldap_search with one more request
 * control (extra, or NULL) and, when rctrls is not NULL, the controls of
 * the last result handed to the caller (ldap_controls_free; NULL when
 * none or on failure). On failure sl->last_code holds the LDAP result
 * code (LDAP_TIMEOUT, LDAP_SERVER_DOWN, the server's), 0 when a callback
 * failed.
 */
int source_ldap_search_ext(SOURCE_LDAP *sl, const char *base, int scope, const char *filter,
                           char **attrs, int paged, LDAPControl *extra, LDAPControl ***rctrls,
                           SOURCE_LDAP_ENTRY_FN fn, void *ctx, char *err, size_t errlen);

/*
 * source_ldap_srv_uris - the URIs of the domain controllers of a DNS
 * domain: the _ldap._tcp.dc._msdcs.DOMAIN SRV records (RFC 2782 order:
 * priority, then weight) as "ldap://HOST:PORT" (or ldaps:// when tls =
 * ldaps), asked of servers ("ip[:port] ...", "" the system's) within
 * timeout_ms. prefer (or NULL), when it is one of the URIs of the first
 * priority, goes first. A space-separated list (malloc'd), or NULL with err.
 */
char *source_ldap_srv_uris(const char *domain, const char *servers, int ldaps, int timeout_ms,
                           const char *prefer, char *err, size_t errlen);

/*
 * source_ldap_in_domain - 1 if host is domain or a name under it (case
 * and a final dot aside): an SRV target outside dns_domain is not used.
 */
int source_ldap_in_domain(const char *host, const char *domain);

/* source_ldap_srv_order - sort SRV answers by priority, weighted within one (RFC 2782) */
typedef struct source_ldap_srv {
    char *host;
    unsigned short priority, weight, port;
} SOURCE_LDAP_SRV;
void source_ldap_srv_order(SOURCE_LDAP_SRV *srv, size_t n, unsigned (*rnd)(void));

/*
 * source_ldap_entry_first/next - walk an entry's DN and attributes in one
 * pass over its BER. first gives the DN; next gives each attribute's
 * name and values (ber_memfree(*vals) after use): 1, 0 at the end, -1.
 * Names and values are not NUL-terminated: use their lengths.
 */
int source_ldap_entry_first(SOURCE_LDAP *sl, LDAPMessage *e, BerElement **ber, struct berval *dn);
int source_ldap_entry_next(SOURCE_LDAP *sl, LDAPMessage *e, BerElement *ber,
                           struct berval *name, struct berval **vals);

/* source_ldap_is - does a BER name equal the attribute name (case-insensitively)? */
int source_ldap_is(const struct berval *name, const char *attr);

/* source_ldap_in - is a BER name one of a NULL-terminated list? */
int source_ldap_in(const struct berval *name, char *const *list);

/* source_ldap_diag - a failure's text with the server's diagnostic, into buf */
const char *source_ldap_diag(SOURCE_LDAP *sl, int rc, char *buf, size_t size);

/* ------------------------------------------------------------ source_ldap_ad.c */

/*
 * source_ldap_ad_proxy - the SMTP address of a proxyAddresses value:
 * "SMTP:a@b" (primary) and "smtp:a@b" (any case of the prefix) give
 * addr and alen and 1; X400:, X500:, SIP:, EUM: and other types give 0.
 */
int source_ldap_ad_proxy(const char *value, size_t len, const char **addr, size_t *alen);

/* source_ldap_ad_guid - 16 raw bytes as 32 lowercase hex digits (out holds 33); 0 or -1 */
int source_ldap_ad_guid(const struct berval *bv, char *out);

/*
 * source_ldap_ad_range - parse an attribute name "member;range=LOW-HIGH"
 * (HIGH may be an asterisk: *last = 1). 1 it is a range of attr, 0 it is not.
 */
int source_ldap_ad_range(const struct berval *name, const char *attr, long long *low,
                         long long *high, int *last);

/* source_ldap_ad_shared_types - parse a shared_types list; count, or -1 if malformed */
int source_ldap_ad_shared_types(const char *list, long long **types);

/*
 * source_ldap_ad_since - may an incremental (uSNChanged) pull start from
 * the stored state? cookie: the stored USN; stored_id and current_id: the
 * invocationId stored with it and the one the DC reports now (NULL: none,
 * e.g. a directory that is not AD); current_usn: the DC's
 * highestCommittedUSN now (-1 unknown). 1 and *usn (changes above it are
 * wanted), or 0 with the reason a full pull is needed: no usable cookie,
 * another DC, or a restore (the invocationId or the USN went back).
 */
int source_ldap_ad_since(const char *cookie, const char *stored_id, const char *current_id,
                         long long current_usn, long long *usn, char *why, size_t whylen);

/* Active Directory's limit of outstanding change notification searches per connection. */
#define SOURCE_AD_NOTIFY_MAX 5

/* source_ldap_ad_persistent - 1 when mode = persistent works for the source (ad: change notification) */
int source_ldap_ad_persistent(const SOURCE_CONF *conf);

/* source_ldap_ad_wait - SOURCE_OPS' wait for the ad flavour's change notification searches */
int source_ldap_ad_wait(SOURCE *src, int timeout_ms, char *err, size_t errlen);

/* source_ldap_ad_notify_free - the notification state of a closing source; NULL is fine */
void source_ldap_ad_notify_free(SOURCE_LDAP *sl);

/* One incremental pull of the ad flavour: the pull's sink, and the one the entry mapping puts into. */
typedef struct source_ldap_ad_delta {
    SYNC_SINK wrap;                 /* forwards to sink, noting that the entry was put */
    SYNC_SINK *sink;
    int put;
    long long changed;              /* entries put */
    long long gone;                 /* entries deleted by guid */
} SOURCE_LDAP_AD_DELTA;

/* source_ldap_ad_delta_start/finish - route sl->sink through d during an incremental pull, and back */
void source_ldap_ad_delta_start(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d);
void source_ldap_ad_delta_finish(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d);

/* source_ldap_ad_delta_gone - an object removed: deleted by its guid (hex); 0 or -1 */
int source_ldap_ad_delta_gone(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d, const char *guid,
                              char *err, size_t errlen);

/*
 * source_ldap_ad_delta_read - read one changed object again by its DN
 * with the source's filter and attributes: put when it is a recipient,
 * deleted by guid when it is not, no longer matches the filter or no
 * longer exists. 0 or -1 (a directory or store failure).
 */
int source_ldap_ad_delta_read(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d, const char *dn,
                              const char *guid, char *err, size_t errlen);

/*
 * source_ldap_ad_in_bases - is a DN at or below one of the source's bases?
 * 1 yes, 0 no, -1 the DN or a base cannot be parsed (never "outside").
 */
int source_ldap_ad_in_bases(const SOURCE_LDAP *sl, const char *dn, size_t len);

/* ------------------------------------------------------------ source_ldap_dirsync.c */

#define SOURCE_LDAP_DIRSYNC_PREFIX "dirsync:"   /* a stored DirSync cookie: prefix + base64 */

/*
 * source_ldap_dirsync_start - at the start of a full pull of an ad
 * source: where incremental = auto or dirsync and the bind account may
 * use DirSync, a cookie for "now" into sl->dirsync_cookie (a search that
 * matches nothing), so that the next incremental pull gets every change
 * made from here on. Where it may not (insufficient rights, no such
 * control), that is remembered for the source and 0 returned (the USN
 * then serves), unless incremental = dirsync: -1 with err. -1 with err
 * on any other failure.
 */
int source_ldap_dirsync_start(SOURCE_LDAP *sl, char *err, size_t errlen);

/*
 * source_ldap_dirsync_incremental - the changes since a stored DirSync
 * cookie into d: tombstones deleted by objectGUID, objects moved out of
 * the bases deleted, every other changed object read again
 * (source_ldap_ad_delta_read). SOURCE_OK with *new_cookie, SOURCE_FULL
 * (the cookie is refused, or DirSync is no longer allowed), SOURCE_ERR.
 */
int source_ldap_dirsync_incremental(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d, const char *cookie,
                                    char **new_cookie, char *err, size_t errlen);

/* source_ldap_dirsync_use - should this source use DirSync now (its setting, and what was learnt)? */
int source_ldap_dirsync_use(const SOURCE_LDAP *sl);

/* source_ldap_dirsync_forget - forget which sources DirSync refused (a reload) */
void source_ldap_dirsync_forget(void);

/*
 * source_ldap_dirsync_deleted - the uSNChanged path's deletions: the
 * tombstones changed above usn (the show-deleted control, in the naming
 * context's Deleted Objects container), deleted by objectGUID. Where the
 * control or the container may not be used, a warning once per source
 * and 0: the full reconciliation removes them then. 0 or -1.
 */
int source_ldap_dirsync_deleted(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d, long long usn,
                                char *err, size_t errlen);

/* ------------------------------------------------------------ source_ldap_sync.c */

/* source_ldap_sync_persistent - 1 when mode = persistent works for the source (generic, one base) */
int source_ldap_sync_persistent(const SOURCE_CONF *conf);

/* The generic flavour's begin, end and incremental (RFC 4533; see source_ldap_sync.c). */
int source_ldap_sync_begin(SOURCE_LDAP *sl, char *err, size_t errlen);
void source_ldap_sync_end(SOURCE_LDAP *sl, char **cookie, char **invocation_id);
int source_ldap_sync_incremental(SOURCE_LDAP *sl, const char *cookie, const char *invocation_id,
                                 char **new_cookie, char **new_invocation_id, char *err, size_t errlen);

/* source_ldap_sync_wait - SOURCE_OPS' wait for the persistent search */
int source_ldap_sync_wait(SOURCE *src, int timeout_ms, char *err, size_t errlen);

/* source_ldap_sync_free - the RFC 4533 state of a closing source; NULL is fine */
void source_ldap_sync_free(SOURCE_LDAP *sl);

/* ------------------------------------------------------------ sync_apply.c */

/* Outcomes of one sync. */
#define SYNC_APPLIED    0       /* committed */
#define SYNC_FAILED     1       /* directory or store failure: nothing applied, try later */
#define SYNC_REFUSED    2       /* the shrink guard: nothing applied until forced */
#define SYNC_STOPPED    3       /* SIGTERM during the pull: nothing applied */
#define SYNC_NEED_FULL  4       /* incremental impossible: run a full pull */

typedef struct sync_result {
    int status;                 /* SYNC_* */
    int store_failed;           /* the failure was the store's (reopen it) */
    int full;                   /* it was a full pull */
    int export_failed;          /* applied, but the export (file or command) failed */
    STORE_COUNTS counts;
    long long objects;          /* objects the pull delivered */
    long long skipped;          /* values left out */
    long long ms;               /* how long it took */
    char why[1024];             /* the reason of a failure or refusal */
} SYNC_RESULT;

/*
 * sync_apply_full - one full pull from an open source applied to the
 * store as one diff transaction, unless it fails (nothing applied, the
 * run recorded as "failed") or the shrink guard refuses it (unless force;
 * recorded as "refused"). Logs the outcome in one line. res->status.
 */
int sync_apply_full(STORE *st, const SOURCE_CONF *conf, const SOURCE_OPS *ops, SOURCE *src,
                    int force, SYNC_RESULT *res);

/*
 * sync_apply_delta - an incremental pull (ops->incremental) from the
 * stored cookie, applied as one transaction. No cookie yet, or SOURCE_FULL
 * from the backend (cookie expired, another DC), is SYNC_NEED_FULL: the
 * caller then runs a full pull. The shrink guard judges what it would
 * remove as for a full pull (unless force): SYNC_REFUSED keeps the data
 * and the cookie.
 */
int sync_apply_delta(STORE *st, const SOURCE_CONF *conf, const SOURCE_OPS *ops, SOURCE *src,
                     int force, SYNC_RESULT *res);

/* sync_apply_failed - record a run that failed before its pull (open failed) */
void sync_apply_failed(STORE *st, const SOURCE_CONF *conf, int full, const char *why);

/*
 * sync_apply_export - [syncd] export_file (all recipients as "address OK"
 * lines, written atomically) and then export_command. Nothing when
 * export_file is empty. 0, or -1 with err set.
 */
int sync_apply_export(STORE *st, char *err, size_t errlen);

#endif
