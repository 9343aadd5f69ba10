/*
 * source_ldap_ad.c - the Active Directory flavour of the LDAP source
 *
 * What an AD entry means as a recipient:
 *
 *   addresses   proxyAddresses values of type SMTP (SMTP: the primary,
 *               smtp: the others; the prefix in any case), and mail.
 *               X400:, X500:, SIP:, EUM: and every other type are not
 *               mail addresses and are left out.
 *   kind        group (distribution and security groups, and dynamic
 *               distribution groups, whose members are a query and so are
 *               not stored), contact, publicfolder, and for users: shared
 *               when msExchRecipientTypeDetails is one of shared_types
 *               (shared, room and equipment mailboxes, and their remote
 *               variants), else user.
 *   disabled    userAccountControl bit 2: the account is left out, unless
 *               it is such a shared mailbox, whose account is disabled by
 *               design.
 *   flags       msExchRequireAuthToSendTo TRUE: internal senders only.
 *   identity    objectGUID, 16 bytes, as 32 lowercase hex digits in the
 *               order the directory stores them.
 *   logins      sAMAccountName and userPrincipalName, lowercased (users
 *               and shared mailboxes only: nobody logs in as a group).
 *   members     member, with range retrieval: an answer carrying
 *               "member;range=0-1499" is followed by requests for the next
 *               range of that DN until a range ends in "*".
 *
 * For incremental pulls, a full pull records the DC's highestCommittedUSN
 * as read from the rootDSE before the search began (changes made while
 * the pull runs are then seen again, never missed), or the highest
 * uSNChanged it saw where the rootDSE has none (a directory that only
 * looks like AD, as the tests' slapd), and the DC's invocationId (rootDSE
 * dsServiceName -> its nTDSDSA object), so that a switch to another DC or
 * a restore can be detected.
 *
 * An incremental pull reads the same two values again. Another
 * invocationId than the stored one (or one where none was stored, or none
 * where one was), or a highestCommittedUSN below the stored USN, asks for
 * a full pull. Otherwise each base is searched for
 * (&FILTER(uSNChanged>=USN+1)), every entry mapped as in a full pull: put
 * when it is a recipient, deleted by its guid when it is not (disabled, no
 * SMTP address left); and for (&(uSNChanged>=USN+1)(!FILTER)), the objects
 * that no longer match the filter (mail attributes cleared), deleted by
 * guid. Deleted objects are not visible to such a search (their tombstones
 * need DirSync or the show-deleted control): a search of the Deleted
 * Objects container with show-deleted finds them where the account may
 * read it (source_ldap_dirsync.c), else the scheduled full reconciliation
 * removes them. With incremental = auto or dirsync and an account that
 * may use it, DirSync replaces all of this (source_ldap_dirsync.c); the
 * stored state says which: "dirsync:..." or a USN.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "syncd.h"
#include "xalloc.h"

/* msExchRecipientTypeDetails of mailboxes whose accounts are disabled by design. */
#define SOURCE_LDAP_AD_SHARED \
    "2 4 16 32 8589934592 17179869184 34359738368 2199023255552"
/*
 * Linked (2), shared, room, equipment; RemoteRoom (0x200000000),
 * RemoteEquipment, RemoteShared; LinkedRoom (0x20000000000). In an
 * Exchange resource forest every mailbox is linked: its account there is
 * disabled, and its owner logs on with an account of another forest.
 */
#define SOURCE_LDAP_AD_RTD_LINKED   2LL

#define SOURCE_LDAP_AD_UAC_DISABLED 0x2

/* What one entry said about itself, besides its addresses. */
typedef struct source_ldap_ad_entry {
    int group, dynamic, contact, pubfolder, user, computer;
    long long uac;
    long long rtd;                  /* msExchRecipientTypeDetails, -1 none */
    int require_auth;
    int range_pending;              /* member came in ranges and more are due */
    long long range_next;
} SOURCE_LDAP_AD_ENTRY;

/* The state of one range request. */
typedef struct source_ldap_ad_range_ctx {
    long long want;                 /* the first index asked for */
    int found;
    int last;
    long long next;
} SOURCE_LDAP_AD_RANGE_CTX;

/* ------------------------------------------------------------ value rules */

/* source_ldap_ad_proxy - the address in an SMTP-type proxyAddresses value */
int source_ldap_ad_proxy(const char *value, size_t len, const char **addr, size_t *alen)
{
    if (len < 5 || strncasecmp(value, "smtp:", 5) != 0)
        return 0;
    *addr = value + 5;
    *alen = len - 5;
    return 1;
}

/* source_ldap_ad_guid - objectGUID bytes as hex */
int source_ldap_ad_guid(const struct berval *bv, char *out)
{
    static const char hex[] = "0123456789abcdef";

    if (bv->bv_len != 16) {
        out[0] = 0;
        return -1;
    }
    for (size_t i = 0; i < 16; i++) {
        unsigned char c = (unsigned char) bv->bv_val[i];

        out[2 * i] = hex[c >> 4];
        out[2 * i + 1] = hex[c & 15];
    }
    out[32] = 0;
    return 0;
}

/* source_ldap_ad_number - a decimal value (possibly negative); 0 or -1 */
static int source_ldap_ad_number(const char *s, size_t len, long long *out)
{
    char buf[32];
    char *end;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    errno = 0;
    *out = strtoll(buf, &end, 10);
    return *end == 0 && errno == 0 && (buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9')) ? 0 : -1;
}

/* source_ldap_ad_range - "member;range=LOW-HIGH" or "member;range=LOW-*" */
int source_ldap_ad_range(const struct berval *name, const char *attr, long long *low,
                         long long *high, int *last)
{
    size_t n = strlen(attr);
    const char *p;
    const char *end = name->bv_val + name->bv_len;
    const char *dash;

    if (name->bv_len <= n + 7 || strncasecmp(name->bv_val, attr, n) != 0
        || strncasecmp(name->bv_val + n, ";range=", 7) != 0)
        return 0;
    p = name->bv_val + n + 7;
    if ((dash = memchr(p, '-', (size_t) (end - p))) == NULL || dash == p
        || source_ldap_ad_number(p, (size_t) (dash - p), low) < 0 || *low < 0)
        return 0;
    p = dash + 1;
    if (end - p == 1 && *p == '*') {
        *high = -1;
        *last = 1;
        return 1;
    }
    if (p == end || *p == '-' || source_ldap_ad_number(p, (size_t) (end - p), high) < 0 || *high < *low)
        return 0;
    *last = 0;
    return 1;
}

/* source_ldap_ad_shared_types - a list of msExchRecipientTypeDetails numbers */
int source_ldap_ad_shared_types(const char *list, long long **types)
{
    int n;
    char **words = source_words(list, &n);
    long long *v = xcalloc((size_t) n + 1, sizeof(long long));

    for (int i = 0; i < n; i++) {
        if (strspn(words[i], "0123456789") != strlen(words[i])
            || source_ldap_ad_number(words[i], strlen(words[i]), &v[i]) < 0) {
            source_words_free(words);
            free(v);
            *types = NULL;
            return -1;
        }
    }
    source_words_free(words);
    *types = v;
    return n;
}

/* source_ldap_ad_is_shared - is this recipient type one whose account is disabled by design? */
static int source_ldap_ad_is_shared(const SOURCE_LDAP *sl, long long rtd)
{
    for (int i = 0; i < sl->n_shared_types; i++)
        if (sl->shared_types[i] == rtd)
            return 1;
    return 0;
}

/* ------------------------------------------------------------ rootDSE */

/* The rootDSE values begin() reads. */
typedef struct source_ldap_ad_root {
    char *service;                  /* dsServiceName */
    char *context;                  /* defaultNamingContext */
    long long usn;                  /* highestCommittedUSN, -1 none */
    char invocation[33];
} SOURCE_LDAP_AD_ROOT;

/* source_ldap_ad_root_cb - dsServiceName and highestCommittedUSN of the rootDSE */
static int source_ldap_ad_root_cb(SOURCE_LDAP *sl, LDAPMessage *e, void *ctx, char *err, size_t errlen)
{
    SOURCE_LDAP_AD_ROOT *root = ctx;
    BerElement *ber;
    struct berval dn, name, *vals;

    if (source_ldap_entry_first(sl, e, &ber, &dn) < 0)
        return 0;
    while (source_ldap_entry_next(sl, e, ber, &name, &vals) > 0) {
        if (vals && vals[0].bv_val) {
            if (source_ldap_is(&name, "dsServiceName") && root->service == NULL)
                root->service = xstrndup(vals[0].bv_val, vals[0].bv_len);
            else if (source_ldap_is(&name, "defaultNamingContext") && root->context == NULL)
                root->context = xstrndup(vals[0].bv_val, vals[0].bv_len);
            else if (source_ldap_is(&name, "highestCommittedUSN"))
                (void) source_ldap_ad_number(vals[0].bv_val, vals[0].bv_len, &root->usn);
            else if (source_ldap_is(&name, "invocationId"))
                (void) source_ldap_ad_guid(&vals[0], root->invocation);
        }
        ber_memfree(vals);
    }
    ber_free(ber, 0);
    return 0;
}

/*
 * source_ldap_ad_begin - settings, and the DC's USN and invocationId.
 * A directory without them (a test slapd) is not an error: the cookie
 * then falls back to the highest uSNChanged seen, the id to none.
 */
static int source_ldap_ad_begin(SOURCE_LDAP *sl, char *err, size_t errlen)
{
    static char *root_attrs[] = {"dsServiceName", "highestCommittedUSN", "defaultNamingContext", NULL};
    static char *dsa_attrs[] = {"invocationId", NULL};
    SOURCE_LDAP_AD_ROOT root;
    char why[512];

    if (sl->shared_types == NULL) {
        const char *list = *sl->conf->shared_types ? sl->conf->shared_types : SOURCE_LDAP_AD_SHARED;

        if ((sl->n_shared_types = source_ldap_ad_shared_types(list, &sl->shared_types)) < 0) {
            snprintf(err, errlen, "shared_types \"%s\" is malformed", list);
            return -1;
        }
    }
    free(sl->invocation_id);
    sl->invocation_id = NULL;
    free(sl->naming_context);
    sl->naming_context = NULL;
    sl->usn_max = -1;
    memset(&root, 0, sizeof(root));
    root.usn = -1;
    if (source_ldap_search(sl, "", LDAP_SCOPE_BASE, "(objectClass=*)", root_attrs, 0,
                           source_ldap_ad_root_cb, &root, why, sizeof(why)) < 0)
        log_debug("source %s: rootDSE: %s", sl->conf->name, why);
    if (root.service != NULL
        && source_ldap_search(sl, root.service, LDAP_SCOPE_BASE, "(objectClass=*)", dsa_attrs, 0,
                              source_ldap_ad_root_cb, &root, why, sizeof(why)) < 0)
        log_debug("source %s: %s: %s", sl->conf->name, root.service, why);
    if (root.invocation[0])
        sl->invocation_id = xstrdup(root.invocation);
    sl->naming_context = root.context;
    sl->usn_start = root.usn;
    log_debug("source %s: DC %s, highestCommittedUSN %lld, invocationId %s", sl->conf->name,
              root.service ? root.service : "(unknown)", root.usn,
              root.invocation[0] ? root.invocation : "(unknown)");
    free(root.service);
    return 0;
}

/* source_ldap_ad_full_begin - before a full pull: begin, and a DirSync cookie where it serves */
static int source_ldap_ad_full_begin(SOURCE_LDAP *sl, char *err, size_t errlen)
{
    free(sl->dirsync_cookie);
    sl->dirsync_cookie = NULL;
    if (source_ldap_ad_begin(sl, err, errlen) < 0)
        return -1;
    return source_ldap_dirsync_start(sl, err, errlen);
}

/* source_ldap_ad_end - the incremental state of a complete pull: a DirSync cookie, or the USN */
static void source_ldap_ad_end(SOURCE_LDAP *sl, char **cookie, char **invocation_id)
{
    long long usn = sl->usn_start >= 0 ? sl->usn_start : sl->usn_max;

    if (sl->dirsync_cookie != NULL) {
        *cookie = xasprintf("%s%s", SOURCE_LDAP_DIRSYNC_PREFIX, sl->dirsync_cookie);
        free(sl->dirsync_cookie);       /* one pull's: a later pull on this handle starts anew */
        sl->dirsync_cookie = NULL;
    } else
        *cookie = usn >= 0 ? xasprintf("%lld", usn) : NULL;
    *invocation_id = sl->invocation_id ? xstrdup(sl->invocation_id) : NULL;
}

/* ------------------------------------------------------------ ranges */

/* source_ldap_ad_range_cb - one answer of a member range request */
static int source_ldap_ad_range_cb(SOURCE_LDAP *sl, LDAPMessage *e, void *ctx, char *err, size_t errlen)
{
    SOURCE_LDAP_AD_RANGE_CTX *rc = ctx;
    BerElement *ber;
    struct berval dn, name, *vals;
    long long low, high;
    int last;

    if (source_ldap_entry_first(sl, e, &ber, &dn) < 0) {
        snprintf(err, errlen, "%s: an answer without a readable DN", sl->obj.dn);
        return -1;
    }
    while (source_ldap_entry_next(sl, e, ber, &name, &vals) > 0) {
        if (source_ldap_ad_range(&name, "member", &low, &high, &last) && low == rc->want && !rc->found) {
            rc->found = 1;
            rc->last = last;
            rc->next = last ? -1 : high + 1;
            for (size_t i = 0; vals && vals[i].bv_val; i++)
                source_obj_member(&sl->obj, vals[i].bv_val, vals[i].bv_len);
        }
        ber_memfree(vals);
    }
    ber_free(ber, 0);
    return 0;
}

/*
 * source_ldap_ad_members - fetch the member ranges after the first. A
 * group that cannot be read whole fails the pull: a group with half its
 * members would drop the rest from its restrictions.
 */
static int source_ldap_ad_members(SOURCE_LDAP *sl, long long next, char *err, size_t errlen)
{
    int step = sl->conf->range_step;
    int rounds = 0;

    while (next >= 0) {
        SOURCE_LDAP_AD_RANGE_CTX rc;
        char attr[80];
        char *attrs[2] = {attr, NULL};

        snprintf(attr, sizeof(attr), "member;range=%lld-%lld", next, next + step - 1);
        memset(&rc, 0, sizeof(rc));
        rc.want = next;
        if (source_ldap_search(sl, sl->obj.dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0,
                               source_ldap_ad_range_cb, &rc, err, errlen) < 0)
            return -1;
        if (!rc.found) {
            snprintf(err, errlen, "%s: range retrieval of member: no member;range=%lld-... in the "
                     "answer (did the group change during the pull?)", sl->obj.dn, next);
            return -1;
        }
        if (!rc.last && rc.next <= next) {
            snprintf(err, errlen, "%s: range retrieval of member makes no progress at %lld", sl->obj.dn, next);
            return -1;
        }
        next = rc.next;
        rounds++;
    }
    log_debug("source %s: %s: %zu members in %d further range%s", sl->conf->name, sl->obj.dn,
              sl->obj.members.n, rounds, rounds == 1 ? "" : "s");
    return 0;
}

/* ------------------------------------------------------------ entries */

/* source_ldap_ad_class - note what an objectClass value makes of the entry */
static void source_ldap_ad_class(SOURCE_LDAP_AD_ENTRY *ae, const struct berval *v)
{
    if (source_ldap_is(v, "group"))
        ae->group = 1;
    else if (source_ldap_is(v, "msExchDynamicDistributionList"))
        ae->dynamic = 1;
    else if (source_ldap_is(v, "contact"))
        ae->contact = 1;
    else if (source_ldap_is(v, "publicFolder"))
        ae->pubfolder = 1;
    else if (source_ldap_is(v, "computer"))
        ae->computer = 1;
    else if (source_ldap_is(v, "user"))
        ae->user = 1;
}

/* source_ldap_ad_attr - one attribute of an entry with all its values */
static void source_ldap_ad_attr(SOURCE_LDAP *sl, SOURCE_LDAP_AD_ENTRY *ae, const struct berval *name,
                                const struct berval *vals)
{
    SOURCE_OBJ *o = &sl->obj;
    int is_addr = source_ldap_in(name, sl->addr_attrs);
    int is_proxy = source_ldap_is(name, "proxyAddresses");
    int is_login = source_ldap_in(name, sl->login_attrs);
    long long low, high, n;
    int last;
    char attr[64];

    snprintf(attr, sizeof(attr), "%.*s", (int) name->bv_len, name->bv_val);
    if (source_ldap_ad_range(name, "member", &low, &high, &last)) {
        for (size_t i = 0; vals && vals[i].bv_val; i++)
            source_obj_member(o, vals[i].bv_val, vals[i].bv_len);
        ae->range_pending = !last;
        ae->range_next = last ? -1 : high + 1;
        return;
    }
    for (size_t i = 0; vals && vals[i].bv_val; i++) {
        const struct berval *v = &vals[i];

        if (source_ldap_is(name, "objectClass")) {
            source_ldap_ad_class(ae, v);
        } else if (source_ldap_is(name, "objectGUID")) {
            char hex[33];

            if (source_ldap_ad_guid(v, hex) == 0)
                source_obj_set_guid(o, hex, 32);
            else
                source_skip_warn(sl->sink, "source %s: %s: objectGUID is %zu bytes, not 16: "
                                 "using the DN as its identity", sl->conf->name, o->dn, (size_t) v->bv_len);
        } else if (source_ldap_is(name, "userAccountControl")) {
            if (source_ldap_ad_number(v->bv_val, v->bv_len, &n) == 0)
                ae->uac = n;
        } else if (source_ldap_is(name, "msExchRecipientTypeDetails")) {
            if (source_ldap_ad_number(v->bv_val, v->bv_len, &n) == 0)
                ae->rtd = n;
        } else if (source_ldap_is(name, "msExchRequireAuthToSendTo")) {
            ae->require_auth = source_ldap_is(v, "TRUE");
        } else if (source_ldap_is(name, "uSNChanged")) {
            if (source_ldap_ad_number(v->bv_val, v->bv_len, &n) == 0 && n > sl->usn_max)
                sl->usn_max = n;
        } else if (source_ldap_is(name, "member")) {
            source_obj_member(o, v->bv_val, v->bv_len);
        }
        if (is_addr) {
            const char *a = v->bv_val;
            size_t alen = v->bv_len;

            /* Only SMTP proxy addresses are mail addresses. */
            if (!is_proxy || source_ldap_ad_proxy(v->bv_val, v->bv_len, &a, &alen))
                (void) source_obj_address(o, sl->sink, attr, a, alen);
        }
        if (is_login)
            source_obj_login(o, v->bv_val, v->bv_len);
    }
}

/* source_ldap_ad_entry - an AD entry to an object, or left out */
static int source_ldap_ad_entry(SOURCE_LDAP *sl, LDAPMessage *e, char *err, size_t errlen)
{
    SOURCE_OBJ *o = &sl->obj;
    SOURCE_LDAP_AD_ENTRY ae;
    BerElement *ber;
    struct berval dn, name, *vals;
    int r;

    source_obj_reset(o);
    memset(&ae, 0, sizeof(ae));
    ae.rtd = -1;
    ae.range_next = -1;
    if (source_ldap_entry_first(sl, e, &ber, &dn) < 0 || dn.bv_len == 0) {
        if (ber)
            ber_free(ber, 0);
        snprintf(err, errlen, "an entry without a readable DN");
        return -1;
    }
    source_obj_set_dn(o, dn.bv_val, dn.bv_len);
    while ((r = source_ldap_entry_next(sl, e, ber, &name, &vals)) > 0) {
        source_ldap_ad_attr(sl, &ae, &name, vals);
        ber_memfree(vals);
    }
    ber_free(ber, 0);
    if (r < 0) {
        snprintf(err, errlen, "%s: malformed entry", o->dn);
        return -1;
    }

    if (ae.computer) {
        log_debug("source %s: %s: a computer, left out", sl->conf->name, o->dn);
        return 0;
    }
    if (ae.group || ae.dynamic) {
        o->kind = STORE_KIND_GROUP;
    } else if (ae.contact) {
        o->kind = STORE_KIND_CONTACT;
    } else if (ae.pubfolder) {
        o->kind = STORE_KIND_PUBFOLDER;
    } else {
        int by_design = ae.rtd >= 0 && source_ldap_ad_is_shared(sl, ae.rtd);

        /* A linked mailbox is a person's, whose account lives in another forest: kind user. */
        o->kind = by_design && ae.rtd != SOURCE_LDAP_AD_RTD_LINKED ? STORE_KIND_SHARED : STORE_KIND_USER;
        if ((ae.uac & SOURCE_LDAP_AD_UAC_DISABLED) && !by_design) {
            log_debug("source %s: %s: account disabled, left out", sl->conf->name, o->dn);
            sl->disabled++;
            return 0;
        }
    }
    if (ae.require_auth)
        o->flags |= STORE_FLAG_INTERNAL_ONLY;
    if (strcmp(o->kind, STORE_KIND_USER) != 0 && strcmp(o->kind, STORE_KIND_SHARED) != 0) {
        source_obj_logins_clear(o);
    }
    if (o->guid == NULL)
        source_obj_set_guid(o, o->dn, strlen(o->dn));
    if (o->addresses.n == 0) {
        log_debug("source %s: %s: no SMTP address, left out", sl->conf->name, o->dn);
        return 0;
    }
    if (strcmp(o->kind, STORE_KIND_GROUP) == 0 && ae.range_pending
        && source_ldap_ad_members(sl, ae.range_next, err, errlen) < 0)
        return -1;
    if (ae.dynamic || strcmp(o->kind, STORE_KIND_GROUP) != 0) {
        /* A dynamic group's members are a query; other kinds have none. */
        source_obj_members_clear(o);
    }
    if (source_obj_put(o, sl->sink) < 0) {
        snprintf(err, errlen, "%s: not stored", o->dn);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ incremental pulls */

/* source_ldap_ad_since - may an incremental pull start from the stored state? */
int source_ldap_ad_since(const char *cookie, const char *stored_id, const char *current_id,
                         long long current_usn, long long *usn, char *why, size_t whylen)
{
    if (cookie == NULL || strspn(cookie, "0123456789") != strlen(cookie)
        || source_ldap_ad_number(cookie, strlen(cookie), usn) < 0 || *usn == LLONG_MAX) {
        snprintf(why, whylen, "the stored state \"%s\" is not a USN", cookie ? cookie : "");
        return 0;
    }
    /* Neither knows a DC (not AD): the USN is all the state there is. */
    if (stored_id == NULL && current_id == NULL)
        return 1;
    if (stored_id == NULL) {
        snprintf(why, whylen, "the stored USN names no domain controller, and this one has "
                 "invocationId %s", current_id);
        return 0;
    }
    if (current_id == NULL) {
        snprintf(why, whylen, "the domain controller's invocationId could not be read "
                 "(the stored USN is of %s)", stored_id);
        return 0;
    }
    if (strcasecmp(stored_id, current_id) != 0) {
        snprintf(why, whylen, "another domain controller, or one restored from a backup "
                 "(invocationId %s; the stored USN is of %s)", current_id, stored_id);
        return 0;
    }
    if (current_usn >= 0 && current_usn < *usn) {
        snprintf(why, whylen, "the domain controller's highestCommittedUSN %lld is below the "
                 "stored %lld (restored from a backup?)", current_usn, *usn);
        return 0;
    }
    return 1;
}

/* source_ldap_ad_delta_put - the wrapped sink's put: forward, and note it */
static int source_ldap_ad_delta_put(SYNC_SINK *wrap, const STORE_OBJECT *obj)
{
    SOURCE_LDAP_AD_DELTA *d = wrap->ctx;

    d->put = 1;
    return d->sink->put(d->sink, obj);
}

/* source_ldap_ad_delta_start - route the entry mapping's puts through d */
void source_ldap_ad_delta_start(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d)
{
    memset(d, 0, sizeof(*d));
    d->sink = sl->sink;
    d->wrap.put = source_ldap_ad_delta_put;
    d->wrap.del = sl->sink->del;
    d->wrap.ctx = d;
    sl->sink = &d->wrap;
}

/* source_ldap_ad_delta_finish - the pull's own sink back, with what was skipped */
void source_ldap_ad_delta_finish(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d)
{
    d->sink->skipped += d->wrap.skipped;
    d->wrap.skipped = 0;
    sl->sink = d->sink;
}

/* source_ldap_ad_delta_gone - delete an object by its guid */
int source_ldap_ad_delta_gone(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d, const char *guid,
                              char *err, size_t errlen)
{
    if (d->sink->del(d->sink, guid) < 0) {
        snprintf(err, errlen, "the deletion of %s: not stored", guid);
        return -1;
    }
    d->gone++;
    log_debug("source %s: object %s deleted", sl->conf->name, guid);
    return 0;
}

/* source_ldap_ad_delta_del - delete the object of sl->obj by its guid (the DN without one) */
static int source_ldap_ad_delta_del(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d, char *err, size_t errlen)
{
    SOURCE_OBJ *o = &sl->obj;

    if (o->guid == NULL)
        source_obj_set_guid(o, o->dn, strlen(o->dn));
    if (d->sink->del(d->sink, o->guid) < 0) {
        snprintf(err, errlen, "%s: not stored", o->dn);
        return -1;
    }
    d->gone++;
    return 0;
}

/*
 * source_ldap_ad_changed_cb - a changed entry that matches the filter:
 * mapped as in a full pull; one that is no recipient now is deleted.
 */
static int source_ldap_ad_changed_cb(SOURCE_LDAP *sl, LDAPMessage *e, void *ctx, char *err, size_t errlen)
{
    SOURCE_LDAP_AD_DELTA *d = ctx;

    if (source_stopping()) {
        snprintf(err, errlen, "stopping on a signal");
        return -1;
    }
    sl->entries++;
    d->put = 0;
    if (source_ldap_ad_entry(sl, e, err, errlen) < 0)
        return -1;
    if (d->put) {
        d->changed++;
        return 0;
    }
    return source_ldap_ad_delta_del(sl, d, err, errlen);
}

/* source_ldap_ad_unmatched_cb - a changed entry that no longer matches the filter: deleted */
static int source_ldap_ad_unmatched_cb(SOURCE_LDAP *sl, LDAPMessage *e, void *ctx, char *err, size_t errlen)
{
    SOURCE_LDAP_AD_DELTA *d = ctx;
    SOURCE_OBJ *o = &sl->obj;
    BerElement *ber;
    struct berval dn, name, *vals;
    long long n;
    char hex[33];

    if (source_stopping()) {
        snprintf(err, errlen, "stopping on a signal");
        return -1;
    }
    sl->entries++;
    source_obj_reset(o);
    if (source_ldap_entry_first(sl, e, &ber, &dn) < 0 || dn.bv_len == 0) {
        if (ber)
            ber_free(ber, 0);
        snprintf(err, errlen, "an entry without a readable DN");
        return -1;
    }
    source_obj_set_dn(o, dn.bv_val, dn.bv_len);
    while (source_ldap_entry_next(sl, e, ber, &name, &vals) > 0) {
        if (vals && vals[0].bv_val) {
            /* The same identity as the full pull gives it. */
            if (source_ldap_is(&name, "objectGUID") && source_ldap_ad_guid(&vals[0], hex) == 0)
                source_obj_set_guid(o, hex, 32);
            else if (source_ldap_is(&name, "uSNChanged")
                     && source_ldap_ad_number(vals[0].bv_val, vals[0].bv_len, &n) == 0 && n > sl->usn_max)
                sl->usn_max = n;
        }
        ber_memfree(vals);
    }
    ber_free(ber, 0);
    return source_ldap_ad_delta_del(sl, d, err, errlen);
}

/* source_ldap_ad_moved_cb - the object found again by its GUID: changed when still in a base, else gone */
static int source_ldap_ad_moved_cb(SOURCE_LDAP *sl, LDAPMessage *e, void *ctx, char *err, size_t errlen)
{
    char *dn = ldap_get_dn(sl->ld, e);
    int in = dn != NULL ? source_ldap_ad_in_bases(sl, dn, strlen(dn)) : -1;

    ldap_memfree(dn);
    if (in < 0) {
        snprintf(err, errlen, "an entry read by its GUID without a readable DN");
        return -1;
    }
    if (in == 0)
        return 0;                       /* moved out of every base: the caller deletes it */
    return source_ldap_ad_changed_cb(sl, e, ctx, err, errlen);
}

/*
 * source_ldap_ad_delta_read - one changed object read again by its DN.
 * An object renamed or moved between DirSync's answer and this read is
 * not at that DN any more: it is read again by its GUID (AD's
 * <GUID=hex> base), and only when that finds nothing, or finds it out
 * of every base, is it deleted. (Deleting it on the first miss refused
 * its mail until the next pull brought the rename.)
 */
int source_ldap_ad_delta_read(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d, const char *dn,
                              const char *guid, char *err, size_t errlen)
{
    long long before = d->changed + d->gone;

    if (source_ldap_search(sl, dn, LDAP_SCOPE_BASE, sl->filter, sl->attrs, 0,
                           source_ldap_ad_changed_cb, d, err, errlen) < 0) {
        char base[48];

        if (sl->last_code != LDAP_NO_SUCH_OBJECT)
            return -1;
        err[0] = 0;
        if (strlen(guid) != 32 || strspn(guid, "0123456789abcdef") != 32)
            return source_ldap_ad_delta_gone(sl, d, guid, err, errlen);
        snprintf(base, sizeof(base), "<GUID=%s>", guid);
        if (source_ldap_search(sl, base, LDAP_SCOPE_BASE, sl->filter, sl->attrs, 0,
                               source_ldap_ad_moved_cb, d, err, errlen) < 0) {
            if (sl->last_code != LDAP_NO_SUCH_OBJECT)
                return -1;
            err[0] = 0;                 /* deleted since: gone */
        } else if (d->changed + d->gone != before) {
            log_debug("source %s: %s was renamed or moved since the change was read; found by its GUID",
                      sl->conf->name, dn);
        }
    }
    if (d->changed + d->gone == before)
        return source_ldap_ad_delta_gone(sl, d, guid, err, errlen);
    return 0;
}

/*
 * source_ldap_ad_in_bases - is a DN at or below one of the source's bases?
 * 1 yes, 0 no, -1 when a DN cannot be parsed: the caller deletes on 0, so
 * an unreadable DN must not pass for one outside the bases.
 */
int source_ldap_ad_in_bases(const SOURCE_LDAP *sl, const char *dn, size_t len)
{
    char *copy = xstrndup(dn, len);
    char *norm = NULL;
    int yes = 0;

    /* Compare the normal forms: AD and the postmaster may space a DN differently. */
    if (ldap_dn_normalize(copy, LDAP_DN_FORMAT_LDAPV3, &norm, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS) {
        free(copy);
        return -1;
    }
    for (const char *b = sl->conf->base; *b && yes == 0;) {
        size_t blen = strcspn(b, "\n");
        char *base = xstrndup(b, blen);
        char *bnorm = NULL;

        if (ldap_dn_normalize(base, LDAP_DN_FORMAT_LDAPV3, &bnorm, LDAP_DN_FORMAT_LDAPV3) == LDAP_SUCCESS) {
            size_t n = strlen(norm), m = strlen(bnorm);

            yes = n >= m && strcasecmp(norm + n - m, bnorm) == 0 && (n == m || norm[n - m - 1] == ',');
            ldap_memfree(bnorm);
        } else {
            yes = -1;
        }
        free(base);
        b += blen;
        if (*b)
            b++;
    }
    ldap_memfree(norm);
    free(copy);
    return yes;
}

/* source_ldap_ad_bases - one search of every base; 0 or -1 */
static int source_ldap_ad_bases(SOURCE_LDAP *sl, const char *filter, char **attrs,
                                SOURCE_LDAP_ENTRY_FN fn, void *ctx, char *err, size_t errlen)
{
    for (const char *b = sl->conf->base; *b;) {
        size_t len = strcspn(b, "\n");
        char *base = xstrndup(b, len);
        int rc = source_ldap_search(sl, base, LDAP_SCOPE_SUBTREE, filter, attrs, 1, fn, ctx, err, errlen);

        free(base);
        if (rc < 0)
            return -1;
        b += len;
        if (*b)
            b++;
    }
    return 0;
}

/* source_ldap_ad_incremental - the objects changed since the stored USN */
static int source_ldap_ad_incremental(SOURCE_LDAP *sl, const char *cookie, const char *invocation_id,
                                      char **new_cookie, char **new_invocation_id, char *err, size_t errlen)
{
    static char *unmatched_attrs[] = {"objectGUID", "uSNChanged", NULL};
    SOURCE_LDAP_AD_DELTA d;
    const char *f = sl->filter;
    int paren = *f == '(';
    char *changed, *unmatched;
    long long usn;
    int rc;

    if (source_ldap_ad_begin(sl, err, errlen) < 0)
        return SOURCE_ERR;
    if (cookie != NULL && strncmp(cookie, SOURCE_LDAP_DIRSYNC_PREFIX, strlen(SOURCE_LDAP_DIRSYNC_PREFIX)) == 0) {
        if (!source_ldap_dirsync_use(sl)) {
            snprintf(err, errlen, "the stored state is a DirSync cookie, but DirSync is not used now "
                     "(incremental = %s)", sl->conf->incremental);
            return SOURCE_FULL;
        }
        source_ldap_ad_delta_start(sl, &d);
        rc = source_ldap_dirsync_incremental(sl, &d, cookie + strlen(SOURCE_LDAP_DIRSYNC_PREFIX),
                                             new_cookie, err, errlen);
        source_ldap_ad_delta_finish(sl, &d);
        if (rc != SOURCE_OK)
            return rc;
        *new_invocation_id = sl->invocation_id ? xstrdup(sl->invocation_id) : NULL;
        log_debug("source %s: incremental by DirSync: %lld changed entries put, %lld deleted "
                  "(%lld disabled accounts)", sl->conf->name, d.changed, d.gone, sl->disabled);
        return SOURCE_OK;
    }
    if (strcmp(sl->conf->incremental, "dirsync") == 0) {
        snprintf(err, errlen, "incremental = dirsync, and the stored state is a USN");
        return SOURCE_FULL;
    }
    if (!source_ldap_ad_since(cookie, invocation_id, sl->invocation_id, sl->usn_start, &usn, err, errlen))
        return SOURCE_FULL;
    /* Where the cookie is the highest uSNChanged seen, it never goes back. */
    sl->usn_max = usn;

    source_ldap_ad_delta_start(sl, &d);
    changed = xasprintf("(&%s%s%s(uSNChanged>=%lld))", paren ? "" : "(", f, paren ? "" : ")", usn + 1);
    unmatched = xasprintf("(&(uSNChanged>=%lld)(!%s%s%s))", usn + 1, paren ? "" : "(", f, paren ? "" : ")");
    rc = source_ldap_ad_bases(sl, changed, sl->attrs, source_ldap_ad_changed_cb, &d, err, errlen);
    if (rc == 0)
        rc = source_ldap_ad_bases(sl, unmatched, unmatched_attrs, source_ldap_ad_unmatched_cb, &d, err, errlen);
    if (rc == 0)
        rc = source_ldap_dirsync_deleted(sl, &d, usn, err, errlen);
    free(changed);
    free(unmatched);
    source_ldap_ad_delta_finish(sl, &d);
    if (rc < 0)
        return SOURCE_ERR;
    source_ldap_ad_end(sl, new_cookie, new_invocation_id);
    log_debug("source %s: incremental from USN %lld: %lld changed entries put, %lld deleted "
              "(%lld disabled accounts); new USN %s", sl->conf->name, usn, d.changed, d.gone,
              sl->disabled, *new_cookie ? *new_cookie : "(none)");
    return SOURCE_OK;
}

static const char *const source_ldap_ad_attrs[] = {
    "objectClass", "objectGUID", "userAccountControl", "msExchRecipientTypeDetails",
    "msExchRequireAuthToSendTo", "uSNChanged", "member", NULL,
};

const SOURCE_LDAP_FLAVOUR source_ldap_ad = {
    "ad",
    "(&(|(objectClass=user)(objectClass=group)(objectClass=contact)(objectClass=publicFolder)"
    "(objectClass=msExchDynamicDistributionList))(!(objectClass=computer))"
    "(|(proxyAddresses=*)(mail=*)))",
    "proxyAddresses mail",
    "sAMAccountName userPrincipalName",
    source_ldap_ad_attrs,
    source_ldap_ad_full_begin,
    source_ldap_ad_entry,
    source_ldap_ad_end,
    source_ldap_ad_incremental,
};

/* ------------------------------------------------------------ persistent mode */

/*
 * mode = persistent: one asynchronous search per base with the change
 * notification control (LDAP_SERVER_NOTIFICATION_OID, critical; AD wants
 * the filter (objectClass=*) and allows a few such searches per
 * connection), opened on the source's connection the first time the
 * daemon waits on it. An entry returned by any of them says only that
 * something under the base changed: after a short quiet time that
 * gathers a burst, the daemon runs the usual uSNChanged pull. The
 * searches die with the connection; the daemon then reconnects with
 * backoff and they are opened again.
 */
#define SOURCE_LDAP_AD_NOTIFY_OID   "1.2.840.113556.1.4.528"
#define SOURCE_LDAP_AD_DEBOUNCE_MS  200

struct source_ldap_ad_notify {
    int *msgids;                    /* one search per base */
    char **bases;
    int n;
};

/* source_ldap_ad_now - a monotonic clock in milliseconds */
static long long source_ldap_ad_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* source_ldap_ad_persistent - 1 when mode = persistent works for this source (ad) */
int source_ldap_ad_persistent(const SOURCE_CONF *c)
{
    return strcmp(c->type, "ldap") == 0 && strcmp(c->flavour, "ad") == 0
        && strcmp(c->mode, "persistent") == 0 && *c->base;
}

/* source_ldap_ad_notify_free - the notification state of a closing source; NULL is fine */
void source_ldap_ad_notify_free(SOURCE_LDAP *sl)
{
    struct source_ldap_ad_notify *nt = sl->notify;

    if (nt == NULL)
        return;
    for (int i = 0; i < nt->n; i++)
        free(nt->bases[i]);
    free(nt->bases);
    free(nt->msgids);
    free(nt);
    sl->notify = NULL;
}

/* source_ldap_ad_notify_open - start the notification search of each base; 0 or -1 */
static int source_ldap_ad_notify_open(SOURCE_LDAP *sl, char *err, size_t errlen)
{
    static char *attrs[] = {"uSNChanged", NULL};
    struct source_ldap_ad_notify *nt = xcalloc(1, sizeof(*nt));
    LDAPControl *ctrl = NULL;
    LDAPControl *ctrls[2] = {NULL, NULL};
    char diag[512];
    int rc;

    sl->notify = nt;
    if ((rc = ldap_control_create(SOURCE_LDAP_AD_NOTIFY_OID, 1, NULL, 0, &ctrl)) != LDAP_SUCCESS) {
        snprintf(err, errlen, "change notification control: %s", ldap_err2string(rc));
        return -1;
    }
    ctrls[0] = ctrl;
    for (const char *b = sl->conf->base; *b;) {
        size_t len = strcspn(b, "\n");
        int msgid;

        if (nt->n == SOURCE_AD_NOTIFY_MAX) {
            /* The configuration check refuses this; AD would end the sixth search. */
            snprintf(err, errlen, "more than %d bases to watch on one connection", SOURCE_AD_NOTIFY_MAX);
            ldap_control_free(ctrl);
            return -1;
        }
        nt->msgids = xrealloc(nt->msgids, (size_t) (nt->n + 1) * sizeof(*nt->msgids));
        nt->bases = xrealloc(nt->bases, (size_t) (nt->n + 1) * sizeof(*nt->bases));
        nt->bases[nt->n] = xstrndup(b, len);
        /* No time limit: the search is meant to run as long as the connection. */
        rc = ldap_search_ext(sl->ld, nt->bases[nt->n], LDAP_SCOPE_SUBTREE, "(objectClass=*)", attrs,
                             0, ctrls, NULL, NULL, LDAP_NO_LIMIT, &msgid);
        if (rc != LDAP_SUCCESS) {
            snprintf(err, errlen, "change notification search of %s: %s", nt->bases[nt->n],
                     source_ldap_diag(sl, rc, diag, sizeof(diag)));
            free(nt->bases[nt->n]);
            ldap_control_free(ctrl);
            return -1;
        }
        nt->msgids[nt->n++] = msgid;
        b += len;
        if (*b)
            b++;
    }
    ldap_control_free(ctrl);
    /* As the RFC 4533 persistent search does: a postmaster sees that changes will come at once. */
    log_info("source %s: change notification searches open on %d base%s on %s", sl->conf->name, nt->n,
             nt->n == 1 ? "" : "s", sl->uri);
    return 0;
}

/* source_ldap_ad_notify_base - the base of a notification search's msgid, or NULL */
static const char *source_ldap_ad_notify_base(const struct source_ldap_ad_notify *nt, int msgid)
{
    for (int i = 0; i < nt->n; i++)
        if (nt->msgids[i] == msgid)
            return nt->bases[i];
    return NULL;
}

/*
 * source_ldap_ad_wait - SOURCE_OPS' wait for the ad flavour: 1 when a
 * notification came (after SOURCE_LDAP_AD_DEBOUNCE_MS more of them are
 * gathered), or when the searches were just opened (a change made since
 * the last pull would otherwise wait for the next one); 0 nothing within
 * timeout_ms; -1 the connection failed or the server ended a search.
 */
int source_ldap_ad_wait(SOURCE *src, int timeout_ms, char *err, size_t errlen)
{
    SOURCE_LDAP *sl = (SOURCE_LDAP *) (void *) src;
    struct source_ldap_ad_notify *nt;
    long long deadline;
    int got = 0;

    if (sl->notify == NULL) {
        if (source_ldap_ad_notify_open(sl, err, errlen) < 0) {
            snprintf(err + strlen(err), errlen - strlen(err), " (%s)", sl->uri);
            return -1;
        }
        return 1;
    }
    nt = sl->notify;
    deadline = source_ldap_ad_now() + timeout_ms;
    while (!source_stopping()) {
        long long left = deadline - source_ldap_ad_now();
        struct timeval tv;
        LDAPMessage *msg = NULL;
        const char *base;
        char diag[512];
        int rc;

        if (left < 0)
            left = 0;
        tv.tv_sec = (time_t) (left / 1000);
        tv.tv_usec = (suseconds_t) (left % 1000) * 1000;
        rc = ldap_result(sl->ld, LDAP_RES_ANY, LDAP_MSG_ONE, &tv, &msg);
        if (rc == 0)
            break;
        if (rc < 0) {
            int code = LDAP_SERVER_DOWN;

            if (source_stopping())
                return 0;
            (void) ldap_get_option(sl->ld, LDAP_OPT_RESULT_CODE, &code);
            snprintf(err, errlen, "change notification: %s (%s)",
                     source_ldap_diag(sl, code, diag, sizeof(diag)), sl->uri);
            return -1;
        }
        if ((base = source_ldap_ad_notify_base(nt, ldap_msgid(msg))) == NULL) {
            ldap_msgfree(msg);          /* left over from an abandoned search */
            continue;
        }
        if (rc == LDAP_RES_SEARCH_RESULT) {
            int code = LDAP_OTHER;
            char *text = NULL;

            (void) ldap_parse_result(sl->ld, msg, &code, NULL, &text, NULL, NULL, 1);
            snprintf(err, errlen, "the server ended the change notification search of %s: %s%s%s (%s)",
                     base, ldap_err2string(code), text && *text ? ": " : "", text ? text : "", sl->uri);
            ldap_memfree(text);
            return -1;
        }
        ldap_msgfree(msg);
        if (rc == LDAP_RES_SEARCH_ENTRY && !got) {
            /* Gather the rest of a burst (a user and its groups) into one pull. */
            got = 1;
            deadline = source_ldap_ad_now() + SOURCE_LDAP_AD_DEBOUNCE_MS;
        }
    }
    return got;
}
