/*
 * source.c - directory sources of rcptgate-syncd: configuration and objects
 *
 * The [source NAME] sections of rcptgate.conf as a cfg family: the typed
 * table (lib/params_source.c, which also checks what needs no backend),
 * and a validation that refuses what cannot work (an LDAP source
 * without a URI or a base, a plain-text simple bind to a remote server
 * the postmaster did not ask for, a password file others can read) with
 * file:line, before any connection is tried. A good load installs the
 * instances here, with their passwords read, until syncd.c takes them.
 *
 * Also what every backend uses to build objects: SOURCE_OBJ, and the
 * address rules (the same as `rcptgate import`) with a warning per bad
 * value rather than a failed pull, because one mistyped proxyAddresses
 * value must not stop a whole domain's sync.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "params.h"
#include "syncd.h"
#include "xalloc.h"

#define SOURCE_WARN_MAX 20      /* warnings about bad values per pull */

static int source_validate(const char *file, int line, const char *name, void *instance);
static void source_install(void **instances, int count);

const CFG_FAMILY source_families[] = {
    {"source", params_source, sizeof(SOURCE_CONF), source_validate, source_install, "syncd", "user"},
    {NULL, NULL, 0, NULL, NULL, NULL, NULL},
};

/* What the last good load installed, until syncd.c takes it. */
static SOURCE_CONF **source_pending;
static int source_pending_count;

/* ------------------------------------------------------------ backends */

/* source_ops_find - the backend for a type, or NULL */
const SOURCE_OPS *source_ops_find(const char *type)
{
    if (strcmp(type, "ldap") == 0)
        return &source_ldap_ops;
    if (strcmp(type, "file") == 0)
        return &source_file_ops;
    if (strcmp(type, "graph") == 0)
        return &source_graph_ops;
    return NULL;
}

/* source_can_persist - can a source with these settings run persistently (its backend says)? */
int source_can_persist(const SOURCE_CONF *conf)
{
    const SOURCE_OPS *ops = source_ops_find(conf->type);

    return ops != NULL && ops->wait != NULL && ops->can_persist != NULL && ops->can_persist(conf);
}

/* source_ops_reload - SIGHUP: every backend forgets what it learnt */
void source_ops_reload(void)
{
    static const SOURCE_OPS *const all[] = {&source_ldap_ops, &source_file_ops, &source_graph_ops};

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (all[i]->reload != NULL)
            all[i]->reload();
}

/* The daemon's stop flag, as source_stop_flag() set it. */
static volatile sig_atomic_t *source_stop;

/* source_stop_flag - the flag source_stopping() reads */
void source_stop_flag(volatile sig_atomic_t *flag)
{
    source_stop = flag;
}

/* source_stopping - has the daemon been asked to stop? */
int source_stopping(void)
{
    return source_stop != NULL && *source_stop != 0;
}

/* source_pages_check - may a paged listing go on to the next page? (source.h) */
int source_pages_check(long long *pages, const void *asked, size_t asked_len, const void *next,
                       size_t next_len, long long entries, const char *what, char *err, size_t errlen)
{
    ++*pages;
    if (next_len == 0)
        return 0;                       /* the last page: nothing more to ask */
    if (source_stopping()) {
        snprintf(err, errlen, "%s: stopped by a signal between pages", what);
        return -1;
    }
    if (entries == 0 && asked_len == next_len && memcmp(asked, next, next_len) == 0) {
        snprintf(err, errlen, "%s: page %lld returned no entries and the same continuation "
                 "it was asked with; the server makes no progress, the listing would never end",
                 what, *pages);
        return -1;
    }
    if (*pages >= SOURCE_PAGES_MAX) {
        snprintf(err, errlen, "%s: still not at the end after %d pages; the server makes no "
                 "progress, or the listing would never end", what, SOURCE_PAGES_MAX);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ helpers */

/* source_words - split a space-separated list */
char **source_words(const char *list, int *count)
{
    char **words = xmalloc(sizeof(char *));
    int n = 0;

    for (const char *p = list; p && *p;) {
        size_t len;

        p += strspn(p, " \t\n");
        if ((len = strcspn(p, " \t\n")) == 0)
            break;
        words = xrealloc(words, (size_t) (n + 2) * sizeof(char *));
        words[n++] = xstrndup(p, len);
        p += len;
    }
    words[n] = NULL;
    if (count)
        *count = n;
    return words;
}

/* source_words_free - free what source_words() made; NULL is fine */
void source_words_free(char **words)
{
    if (words == NULL)
        return;
    for (char **w = words; *w; w++)
        free(*w);
    free(words);
}

/* source_uri_loopback - is the URI's host on this machine's loopback? */
int source_uri_loopback(const char *uri)
{
    LDAPURLDesc *lud = NULL;
    unsigned char a[16];
    int yes = 0;

    if (ldap_url_parse(uri, &lud) != LDAP_URL_SUCCESS)
        return 0;
    if (strcasecmp(lud->lud_scheme, "ldapi") == 0) {
        yes = 1;
    } else if (lud->lud_host == NULL || *lud->lud_host == 0) {
        yes = 0;                        /* libldap's default host: not known here */
    } else if (strcasecmp(lud->lud_host, "localhost") == 0) {
        yes = 1;
    } else if (inet_pton(AF_INET, lud->lud_host, a) == 1) {
        yes = a[0] == 127;
    } else if (inet_pton(AF_INET6, lud->lud_host, a) == 1) {
        static const unsigned char one[16] = {[15] = 1};

        yes = memcmp(a, one, 16) == 0;
    }
    ldap_free_urldesc(lud);
    return yes;
}

/* source_printable - a value for a log line: control characters as '?' */
static const char *source_printable(const char *in, size_t len, char *buf, size_t size)
{
    size_t n = 0;

    for (size_t i = 0; i < len && n + 4 < size; i++) {
        unsigned char c = (unsigned char) in[i];

        buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char) c;
    }
    if (n + 4 >= size && len > n) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = 0;
    return buf;
}

/* source_skip_warn - count an unusable value; warn about the first few */
void source_skip_warn(SYNC_SINK *sink, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    sink->skipped++;
    if (sink->skipped > SOURCE_WARN_MAX)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_warn("%s%s", buf, sink->skipped == SOURCE_WARN_MAX
             ? " (further values like this are only counted in this run's summary)" : "");
}

/* ------------------------------------------------------------ objects */

/*
 * A list is searched from end to end while it is short; from
 * SOURCE_LIST_INDEX_MIN strings on, through an index by hash, so that
 * an object with tens of thousands of values (a hostile server's, or a
 * huge group's members) costs linear time, not quadratic.
 */
#define SOURCE_LIST_INDEX_MIN 16

/* source_list_hash - FNV-1a of len bytes */
static size_t source_list_hash(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ULL;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char) s[i]) * 1099511628211ULL;
    return (size_t) h;
}

/* source_list_slot - where v[i] goes in the index */
static void source_list_slot(SOURCE_LIST *l, size_t i)
{
    size_t h = source_list_hash(l->v[i], strlen(l->v[i])) & (l->nslot - 1);

    while (l->slot[h] != 0)
        h = (h + 1) & (l->nslot - 1);
    l->slot[h] = i + 1;
}

/* source_list_index - (re)build the index for n strings and more */
static void source_list_index(SOURCE_LIST *l)
{
    size_t want = 64;

    while (want < 4 * l->n)
        want *= 2;
    free(l->slot);
    l->nslot = want;
    l->slot = xcalloc(want, sizeof(*l->slot));
    for (size_t i = 0; i < l->n; i++)
        source_list_slot(l, i);
}

/* source_list_add - append a copy of a string */
static void source_list_add(SOURCE_LIST *l, const char *s, size_t len)
{
    if (l->n == l->size) {
        l->size = l->size ? 2 * l->size : 8;
        l->v = xrealloc(l->v, l->size * sizeof(char *));
    }
    l->v[l->n++] = xstrndup(s, len);
    if (l->n >= SOURCE_LIST_INDEX_MIN && 2 * l->n > l->nslot)
        source_list_index(l);
    else if (l->slot != NULL)
        source_list_slot(l, l->n - 1);
}

/* source_list_has - are these len bytes a string of the list already? */
static int source_list_has(const SOURCE_LIST *l, const char *s, size_t len)
{
    if (l->slot != NULL) {
        for (size_t h = source_list_hash(s, len) & (l->nslot - 1); l->slot[h] != 0; h = (h + 1) & (l->nslot - 1)) {
            const char *v = l->v[l->slot[h] - 1];

            if (strncmp(v, s, len) == 0 && v[len] == 0)
                return 1;
        }
        return 0;
    }
    for (size_t i = 0; i < l->n; i++)
        if (strncmp(l->v[i], s, len) == 0 && l->v[i][len] == 0)
            return 1;
    return 0;
}

/* source_list_clear - free the strings and the index, keep the array */
static void source_list_clear(SOURCE_LIST *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    l->n = 0;
    free(l->slot);
    l->slot = NULL;
    l->nslot = 0;
}

/* source_obj_init - an empty object of the named source */
void source_obj_init(SOURCE_OBJ *obj, const char *source)
{
    memset(obj, 0, sizeof(*obj));
    obj->source = source;
    obj->kind = STORE_KIND_USER;
}

/* source_obj_reset - empty the object for the next entry */
void source_obj_reset(SOURCE_OBJ *obj)
{
    free(obj->dn);
    free(obj->guid);
    obj->dn = obj->guid = NULL;
    obj->kind = STORE_KIND_USER;
    obj->flags = 0;
    source_list_clear(&obj->addresses);
    source_list_clear(&obj->logins);
    source_list_clear(&obj->members);
}

/* source_obj_free - release everything; the struct itself is the caller's */
void source_obj_free(SOURCE_OBJ *obj)
{
    if (obj == NULL)
        return;
    source_obj_reset(obj);
    free(obj->addresses.v);
    free(obj->logins.v);
    free(obj->members.v);
    obj->addresses.v = obj->logins.v = obj->members.v = NULL;
    obj->addresses.size = obj->logins.size = obj->members.size = 0;
}

/* source_obj_set_dn - the entry's DN, copied */
void source_obj_set_dn(SOURCE_OBJ *obj, const char *dn, size_t len)
{
    free(obj->dn);
    obj->dn = xstrndup(dn, len);
}

/* source_obj_set_guid - the identity, copied and lowercased */
void source_obj_set_guid(SOURCE_OBJ *obj, const char *guid, size_t len)
{
    free(obj->guid);
    obj->guid = xstrndup(guid, len);
    for (char *p = obj->guid; *p; p++)
        *p = (char) tolower((unsigned char) *p);
}

/* source_obj_address - add a normalised address, or skip a bad value */
int source_obj_address(SOURCE_OBJ *obj, SYNC_SINK *sink, const char *attr, const char *value, size_t len)
{
    char key[ADDR_KEY_SIZE];
    char why[256];
    char shown[256];
    CHECK_OPTS opts;

    /* A directory value never makes a catch-all: an "smtp:@domain" typo would accept the domain. */
    params_check_opts(&opts);
    if (addr_key(value, len, opts.addr_flags, key, why, sizeof(why)) < 0) {
        source_skip_warn(sink, "source %s: %s: skipping %s value \"%s\": %s", obj->source,
                         obj->dn ? obj->dn : "?", attr,
                         source_printable(value, len, shown, sizeof(shown)), why);
        return -1;
    }
    if (source_list_has(&obj->addresses, key, strlen(key)))
        return 0;
    source_list_add(&obj->addresses, key, strlen(key));
    return 1;
}

/* source_obj_login - a login name, lowercased; empty values are dropped */
void source_obj_login(SOURCE_OBJ *obj, const char *value, size_t len)
{
    char *lower;

    if (len == 0 || memchr(value, 0, len) != NULL)
        return;
    lower = xstrndup(value, len);
    for (char *p = lower; *p; p++)
        *p = (char) tolower((unsigned char) *p);
    if (!source_list_has(&obj->logins, lower, len))
        source_list_add(&obj->logins, lower, len);
    free(lower);
}

/* source_obj_member - a member DN as the directory gave it, once */
void source_obj_member(SOURCE_OBJ *obj, const char *value, size_t len)
{
    if (len > 0 && memchr(value, 0, len) == NULL && !source_list_has(&obj->members, value, len))
        source_list_add(&obj->members, value, len);
}

/* source_obj_members_clear - no members after all (they could not be read, or the kind has none) */
void source_obj_members_clear(SOURCE_OBJ *obj)
{
    source_list_clear(&obj->members);
}

/* source_obj_logins_clear - no logins after all (the kind has none) */
void source_obj_logins_clear(SOURCE_OBJ *obj)
{
    source_list_clear(&obj->logins);
}

/* source_obj_put - the object as the store wants it, to the sink */
int source_obj_put(SOURCE_OBJ *obj, SYNC_SINK *sink)
{
    STORE_OBJECT so;

    memset(&so, 0, sizeof(so));
    so.guid = obj->guid ? obj->guid : "";
    so.dn = obj->dn ? obj->dn : "";
    so.kind = obj->kind;
    so.flags = obj->flags;
    so.addresses = (const char *const *) obj->addresses.v;
    so.n_addresses = obj->addresses.n;
    so.logins = (const char *const *) obj->logins.v;
    so.n_logins = obj->logins.n;
    so.members = (const char *const *) obj->members.v;
    so.n_members = obj->members.n;
    return sink->put(sink, &so);
}

/* ------------------------------------------------------------ configuration */

/* source_filter_ok - a filter in parentheses, balanced (the server checks the rest) */
static int source_filter_ok(const char *f)
{
    int depth = 0;
    size_t n = strlen(f);

    if (n < 3 || f[0] != '(' || f[n - 1] != ')')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (f[i] == '(') {
            depth++;
        } else if (f[i] == ')') {
            if (--depth < 0 || (depth == 0 && i != n - 1))
                return 0;               /* unbalanced, or "(a)(b)": two filters */
        } else if (depth == 0) {
            return 0;                   /* text outside the parentheses */
        }
    }
    return depth == 0;
}

/* source_file_exists - a file the settings name must at least exist */
static int source_file_exists(const char *path, char *why, size_t size)
{
    struct stat sb;

    if (stat(path, &sb) < 0) {
        snprintf(why, size, "%s: %s", path, strerror(errno));
        return 0;
    }
    return 1;
}

/*
 * source_key_file_ok - a private key that others may not touch. Unlike a
 * password file, a group may read it: Debian's keys are 0640 root:ssl-cert
 * for the daemons in that group. Writable by the group or open to others
 * is refused, as a leaked key is a leaked identity.
 */
static int source_key_file_ok(const char *path, char *why, size_t size)
{
    struct stat sb;

    if (stat(path, &sb) < 0) {
        snprintf(why, size, "%s: %s", path, strerror(errno));
        return 0;
    }
    return cfg_secret_ok("key file", path, &sb, 1, why, size);
}

/* source_validate_uris - each URI parses and is ldap://, ldaps:// or ldapi:// */
static int source_validate_uris(const char *file, int line, const char *name, const SOURCE_CONF *c)
{
    int errors = 0;
    int n;
    char **uris = source_words(c->uri, &n);

    for (int i = 0; i < n; i++) {
        LDAPURLDesc *lud = NULL;
        const char *u = uris[i];

        if (!params_source_ldap_scheme(u))
            continue;                   /* said by params_source_validate, which ran first */
        if (ldap_url_parse(u, &lud) != LDAP_URL_SUCCESS) {
            params_source_err(file, line, name, "uri \"%s\" is not an LDAP URI", u);
            errors++;
            continue;
        }
        if (strcasecmp(lud->lud_scheme, "ldap") != 0 && strcasecmp(lud->lud_scheme, "ldaps") != 0
            && strcasecmp(lud->lud_scheme, "ldapi") != 0) {
            params_source_err(file, line, name, "uri \"%s\": only ldap://, ldaps:// and ldapi:// are supported", u);
            errors++;
        } else if ((lud->lud_dn && *lud->lud_dn) || lud->lud_attrs || lud->lud_filter) {
            params_source_err(file, line, name, "uri \"%s\" carries a DN, attributes or a filter: "
                        "give only scheme, host and port (the base goes in base =)", u);
            errors++;
        } else if (strcasecmp(lud->lud_scheme, "ldaps") == 0
                   && (strcmp(c->tls, "none") == 0 || strcmp(c->tls, "starttls") == 0)) {
            params_source_err(file, line, name, "uri \"%s\" is TLS from the start, but tls = %s", u, c->tls);
            errors++;
        } else if (strcasecmp(lud->lud_scheme, "ldap") == 0 && strcmp(c->tls, "ldaps") == 0) {
            params_source_err(file, line, name, "tls = ldaps, but uri \"%s\" is ldap:// (write ldaps://)", u);
            errors++;
        } else if (strcasecmp(lud->lud_scheme, "ldapi") != 0 && strcasecmp(c->sasl_mech, "EXTERNAL") == 0
                   && (*c->cert_file == 0 || strcmp(c->tls, "none") == 0
                       || (strcmp(c->tls, "auto") == 0 && strcasecmp(lud->lud_scheme, "ldap") == 0
                           && source_uri_loopback(u)))) {
            params_source_err(file, line, name, "sasl_mech = EXTERNAL over \"%s\" needs TLS with a client "
                        "certificate (cert_file, key_file), or an ldapi:// URI", u);
            errors++;
        }
        ldap_free_urldesc(lud);
    }
    source_words_free(uris);
    return errors;
}

/* source_validate_ldap - the settings of an LDAP source (source_ldap_ops.validate) */
int source_validate_ldap(const char *file, int line, const char *name, const SOURCE_CONF *c)
{
    int errors = source_validate_uris(file, line, name, c);
    int nbase = 0;
    char why[512];

    for (const char *b = c->base; *b;) {
        size_t len = strcspn(b, "\n");
        char *one = xstrndup(b, len);
        LDAPDN dn = NULL;

        if (*one == 0 || ldap_str2dn(one, &dn, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS) {
            params_source_err(file, line, name, "base \"%s\" is not a distinguished name", one);
            errors++;
        }
        if (dn)
            ldap_dnfree(dn);
        free(one);
        nbase++;
        b += len;
        if (*b)
            b++;
    }
    if (nbase > SOURCE_AD_NOTIFY_MAX && strcmp(c->flavour, "ad") == 0 && strcmp(c->mode, "persistent") == 0) {
        /* AD ends a connection's sixth outstanding notification search with an error. */
        params_source_err(file, line, name, "mode = persistent watches each base with a change notification "
                    "search, and Active Directory allows %d per connection: give at most %d bases, "
                    "or split them over several [source] sections", SOURCE_AD_NOTIFY_MAX, SOURCE_AD_NOTIFY_MAX);
        errors++;
    }
    if (*c->filter && !source_filter_ok(c->filter)) {
        params_source_err(file, line, name, "filter \"%s\" is not one LDAP filter in parentheses", c->filter);
        errors++;
    }
    /* bind_dn, bind_password_file, sasl_mech, cert_file with key_file: params_source_validate. */
    if (*c->ca_file && !source_file_exists(c->ca_file, why, sizeof(why))) {
        params_source_err(file, line, name, "ca_file %s", why);
        errors++;
    }
    if (*c->cert_file && !source_file_exists(c->cert_file, why, sizeof(why))) {
        params_source_err(file, line, name, "cert_file %s", why);
        errors++;
    }
    if (*c->key_file && !source_key_file_ok(c->key_file, why, sizeof(why))) {
        params_source_err(file, line, name, "key_file %s", why);
        errors++;
    }
    if (strcmp(c->flavour, "ad") == 0) {
        long long *types = NULL;

        if (*c->shared_types && source_ldap_ad_shared_types(c->shared_types, &types) < 0) {
            params_source_err(file, line, name, "shared_types must be msExchRecipientTypeDetails numbers "
                        "separated by spaces, not \"%s\"", c->shared_types);
            errors++;
        }
        free(types);
    } else if (*c->shared_types) {
        params_source_err(file, line, name, "shared_types is for flavour = ad");
        errors++;
    }
    if (*c->path) {
        params_source_err(file, line, name, "path is for type = file");
        errors++;
    }
    return errors;
}

/* source_validate - check one [source NAME] (cfg family callback) */
static int source_validate(const char *file, int line, const char *name, void *instance)
{
    SOURCE_CONF *c = instance;
    const SOURCE_OPS *ops;
    int errors = params_source_validate(file, line, name, c);   /* the name, type = file */

    if (c->type == NULL)                /* a bad type: already reported */
        return errors;
    /* What each type needs is its backend's to say. */
    if ((ops = source_ops_find(c->type)) != NULL && ops->validate != NULL)
        errors += ops->validate(file, line, name, c);
    return errors;
}

/* source_install - a good load: keep the instances, their passwords read */
static void source_install(void **instances, int count)
{
    char why[512];

    for (int i = 0; i < source_pending_count; i++)
        source_conf_free(source_pending[i]);
    free(source_pending);
    source_pending = (SOURCE_CONF **) instances;
    source_pending_count = count;
    for (int i = 0; i < count; i++) {
        SOURCE_CONF *c = source_pending[i];

        /* Validation just read it; a failure now is a race, reported at connect. */
        if (*c->bind_password_file
            && cfg_secret_read(c->bind_password_file, &c->bind_password, why, sizeof(why)) < 0)
            c->bind_password = NULL;
        if (*c->client_secret_file
            && cfg_secret_read(c->client_secret_file, &c->client_secret, why, sizeof(why)) < 0)
            c->client_secret = NULL;
        if (*c->client_key_file
            && cfg_secret_read(c->client_key_file, &c->client_key, why, sizeof(why)) < 0)
            c->client_key = NULL;
    }
}

/* source_conf_take - hand the installed instances to the caller */
SOURCE_CONF **source_conf_take(int *count)
{
    SOURCE_CONF **confs = source_pending;

    *count = source_pending_count;
    source_pending = NULL;
    source_pending_count = 0;
    return confs;
}

/* source_conf_free - one instance and everything it holds */
void source_conf_free(SOURCE_CONF *conf)
{
    if (conf == NULL)
        return;
    xfree_secret(conf->bind_password);
    conf->bind_password = NULL;
    xfree_secret(conf->client_secret);
    conf->client_secret = NULL;
    xfree_secret(conf->client_key);
    conf->client_key = NULL;
    cfg_family_free(&source_families[0], conf);
}

/*
 * The settings a cookie depends on: which directory (and as whom), which
 * objects, and how they map to addresses and logins. How and when a
 * source is pulled (mode, intervals, timeouts, TLS files, page size) does
 * not change what its cookie lists, and changing it must not cost a full
 * pull of a large directory.
 */
static const char *const source_scope_params[] = {
    "type", "flavour", "uri", "dns_domain", "base", "filter", "bind_dn", "sasl_mech", "cert_file", "incremental",
    "address_attributes", "login_attributes", "shared_types", "path",
    "tenant", "client_id", "graph_url", "shared_unlicensed", NULL,
};

/* source_fnv - FNV-1a (64 bits) of s and its terminating NUL, continuing h */
static uint64_t source_fnv(uint64_t h, const char *s)
{
    do
        h = (h ^ (unsigned char) *s) * 1099511628211ULL;
    while (*s++ != 0);
    return h;
}

/*
 * source_conf_fingerprint - see syncd.h: FNV-1a over the name and value
 * of each setting of source_scope_params, each with its NUL (no two lists
 * of pairs hash the same text). It is only ever compared with the
 * fingerprint of an earlier load of the same source, so any stable hash
 * serves: a change it misses would need a collision.
 */
void source_conf_fingerprint(const SOURCE_CONF *c, char out[SOURCE_FINGERPRINT_LEN])
{
    uint64_t h = 14695981039346656037ULL;
    char num[32];

    for (const char *const *name = source_scope_params; *name; name++) {
        const CFG_PARAM *p = params_source;
        const char *v;
        const char *text;

        while (p->name && strcmp(p->name, *name) != 0)
            p++;
        if (p->name == NULL)
            log_panic("source_scope_params: no parameter %s", *name);
        v = (const char *) c + (uintptr_t) p->var;
        switch (CFG_TYPE(p)) {
        case CFG_INT:
        case CFG_TIME:
        case CFG_BOOL:
            snprintf(num, sizeof(num), "%d", *(const int *) v);
            text = num;
            break;
        case CFG_SIZE:
            snprintf(num, sizeof(num), "%lld", *(const long long *) v);
            text = num;
            break;
        default:
            text = *(char *const *) v ? *(char *const *) v : "";
            break;
        }
        h = source_fnv(source_fnv(h, p->name), text);
    }
    snprintf(out, SOURCE_FINGERPRINT_LEN, "v1:%016llx", (unsigned long long) h);
}

/* source_conf_equal - the same settings, parameter by parameter */
int source_conf_equal(const SOURCE_CONF *a, const SOURCE_CONF *b)
{
    if (strcmp(a->name, b->name) != 0)
        return 0;
    for (const CFG_PARAM *p = params_source; p->name; p++) {
        const char *va = (const char *) a + (uintptr_t) p->var;
        const char *vb = (const char *) b + (uintptr_t) p->var;

        switch (CFG_TYPE(p)) {
        case CFG_INT:
        case CFG_TIME:
        case CFG_BOOL:
            if (*(const int *) va != *(const int *) vb)
                return 0;
            break;
        case CFG_SIZE:
            if (*(const long long *) va != *(const long long *) vb)
                return 0;
            break;
        default:
            if (strcmp(*(char *const *) va, *(char *const *) vb) != 0)
                return 0;
            break;
        }
    }
    /* A password file rewritten in place is a change too. */
    if ((a->bind_password == NULL) != (b->bind_password == NULL)
        || (a->bind_password && strcmp(a->bind_password, b->bind_password) != 0))
        return 0;
    if ((a->client_secret == NULL) != (b->client_secret == NULL)
        || (a->client_secret && strcmp(a->client_secret, b->client_secret) != 0))
        return 0;
    if ((a->client_key == NULL) != (b->client_key == NULL)
        || (a->client_key && strcmp(a->client_key, b->client_key) != 0))
        return 0;
    return 1;
}
