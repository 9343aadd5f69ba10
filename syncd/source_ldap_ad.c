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
 * For the incremental pulls to come (uSNChanged), a full pull records the
 * DC's highestCommittedUSN as read from the rootDSE before the search
 * began (changes made while the pull runs are then seen again, never
 * missed), or the highest uSNChanged it saw where the rootDSE has none,
 * and the DC's invocationId (rootDSE dsServiceName -> its nTDSDSA
 * object), so that a switch to another DC or a restore can be detected.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "syncd.h"
#include "xalloc.h"

/* msExchRecipientTypeDetails of mailboxes whose accounts are disabled by design. */
#define SOURCE_LDAP_AD_SHARED \
    "4 16 32 8589934592 17179869184 34359738368"
/* Shared, room, equipment; RemoteRoom (0x200000000), RemoteEquipment, RemoteShared. */

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
    *out = strtoll(buf, &end, 10);
    return *end == 0 && (buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9')) ? 0 : -1;
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
    static char *root_attrs[] = {"dsServiceName", "highestCommittedUSN", NULL};
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
    sl->usn_start = root.usn;
    log_debug("source %s: DC %s, highestCommittedUSN %lld, invocationId %s", sl->conf->name,
              root.service ? root.service : "(unknown)", root.usn,
              root.invocation[0] ? root.invocation : "(unknown)");
    free(root.service);
    return 0;
}

/* source_ldap_ad_end - the incremental state of a complete pull */
static void source_ldap_ad_end(SOURCE_LDAP *sl, char **cookie, char **invocation_id)
{
    long long usn = sl->usn_start >= 0 ? sl->usn_start : sl->usn_max;

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
    if (source_ldap_entry_first(sl, e, &ber, &dn) < 0) {
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
        o->kind = ae.rtd >= 0 && source_ldap_ad_is_shared(sl, ae.rtd) ? STORE_KIND_SHARED : STORE_KIND_USER;
        if ((ae.uac & SOURCE_LDAP_AD_UAC_DISABLED) && strcmp(o->kind, STORE_KIND_USER) == 0) {
            log_debug("source %s: %s: account disabled, left out", sl->conf->name, o->dn);
            sl->disabled++;
            return 0;
        }
    }
    if (ae.require_auth)
        o->flags |= STORE_FLAG_INTERNAL_ONLY;
    if (strcmp(o->kind, STORE_KIND_USER) != 0 && strcmp(o->kind, STORE_KIND_SHARED) != 0) {
        for (size_t i = 0; i < o->logins.n; i++)
            free(o->logins.v[i]);
        o->logins.n = 0;
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
        for (size_t i = 0; i < o->members.n; i++)
            free(o->members.v[i]);
        o->members.n = 0;
    }
    if (source_obj_put(o, sl->sink) < 0) {
        snprintf(err, errlen, "%s: not stored", o->dn);
        return -1;
    }
    return 0;
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
    source_ldap_ad_begin,
    source_ldap_ad_entry,
    source_ldap_ad_end,
};
