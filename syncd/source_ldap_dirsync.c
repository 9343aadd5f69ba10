/*
 * source_ldap_dirsync.c - Active Directory's DirSync control, and tombstones
 *
 * SYNOPSIS
 *   [source corp]
 *   flavour = ad
 *   incremental = auto | dirsync | usn
 *
 * DESCRIPTION
 *   DirSync (1.2.840.113556.1.4.841) asks a domain controller for the
 *   objects changed since a cookie it handed out before. Unlike a search
 *   on uSNChanged it also returns deleted objects (their tombstones, which
 *   keep objectGUID and isDeleted but lose mail and proxyAddresses, so
 *   they are matched by objectGUID) and it carries its own record of which
 *   DC and which changes the cookie stands for. Its rules, as AD and Samba
 *   apply them:
 *
 *   - the base must be a naming context (the domain's root): the source's
 *     bases must all lie in the rootDSE's defaultNamingContext, and what
 *     comes back from outside them is ours only to delete;
 *   - the bind account needs the "Replicating Directory Changes" right;
 *     without it the answer is insufficientAccessRights. A directory that
 *     does not know the control answers unavailableCriticalExtension. In
 *     both cases incremental = auto falls back to the uSNChanged pull
 *     (source_ldap_ad.c) and remembers that for the source until the
 *     process ends or reloads; incremental = dirsync makes it an error;
 *   - an object is returned only when one of the requested attributes
 *     changed, and then with the changed attributes only: so the search
 *     asks for the attributes that make a recipient (not uSNChanged, which
 *     every change moves), with the filter (objectClass=*) so that
 *     tombstones and objects whose mail attributes were cleared come back
 *     too, and each changed object in the bases is read again in full
 *     with the source's filter (source_ldap_ad_delta_read).
 *
 *   A full pull takes its cookie before it starts, with a DirSync search
 *   that matches nothing: a change made during the pull is then seen again
 *   by the next incremental pull, never missed. The cookie is stored as
 *   "dirsync:" and its base64.
 *
 *   Deletions on the uSNChanged path: a search of the naming context's
 *   Deleted Objects container with the show-deleted control
 *   (1.2.840.113556.1.4.417) for the tombstones changed since the stored
 *   USN. Where that is not allowed, a warning once per source: the full
 *   reconciliation removes them then.
 *
 * DIAGNOSTICS
 *   The choice made for a source is logged once (info); failures come back
 *   in err with the server's words.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "syncd.h"
#include "xalloc.h"

/* What was learnt about a source's DirSync, for the life of the process. */
typedef struct source_ldap_dirsync_memo {
    char *key;                      /* source name, bind DN */
    int denied;                     /* DirSync refused: use uSNChanged */
    int no_tombstones;              /* show-deleted refused: warned once */
} SOURCE_LDAP_DIRSYNC_MEMO;

static SOURCE_LDAP_DIRSYNC_MEMO *source_ldap_dirsync_memos;
static int source_ldap_dirsync_nmemos;

/* Changed objects in the bases, to be read again after the DirSync answers. */
typedef struct source_ldap_dirsync_pull {
    SOURCE_LDAP_AD_DELTA *d;
    char **dns;
    char **guids;
    size_t n, size;
    long long seen;                 /* entries DirSync returned */
} SOURCE_LDAP_DIRSYNC_PULL;

/* source_ldap_dirsync_memo - the memo of this source (created on first use) */
static SOURCE_LDAP_DIRSYNC_MEMO *source_ldap_dirsync_memo(const SOURCE_LDAP *sl)
{
    char *key = xasprintf("%s\n%s", sl->conf->name, sl->conf->bind_dn);
    SOURCE_LDAP_DIRSYNC_MEMO *m;

    for (int i = 0; i < source_ldap_dirsync_nmemos; i++) {
        if (strcmp(source_ldap_dirsync_memos[i].key, key) == 0) {
            free(key);
            return &source_ldap_dirsync_memos[i];
        }
    }
    source_ldap_dirsync_memos = xrealloc(source_ldap_dirsync_memos, (size_t) (source_ldap_dirsync_nmemos + 1)
                                         * sizeof(SOURCE_LDAP_DIRSYNC_MEMO));
    m = &source_ldap_dirsync_memos[source_ldap_dirsync_nmemos++];
    memset(m, 0, sizeof(*m));
    m->key = key;
    return m;
}

/* source_ldap_dirsync_forget - forget what was learnt (SIGHUP: rights may have been granted) */
void source_ldap_dirsync_forget(void)
{
    for (int i = 0; i < source_ldap_dirsync_nmemos; i++)
        free(source_ldap_dirsync_memos[i].key);
    free(source_ldap_dirsync_memos);
    source_ldap_dirsync_memos = NULL;
    source_ldap_dirsync_nmemos = 0;
}

/* source_ldap_dirsync_refused - a result code that means "not for you / not here" */
static int source_ldap_dirsync_refused(int code)
{
    return code == LDAP_INSUFFICIENT_ACCESS || code == LDAP_UNAVAILABLE_CRITICAL_EXTENSION
        || code == LDAP_UNWILLING_TO_PERFORM || code == LDAP_STRONG_AUTH_REQUIRED;
}

/* source_ldap_dirsync_use - DirSync for this source now? */
int source_ldap_dirsync_use(const SOURCE_LDAP *sl)
{
    if (strcmp(sl->conf->incremental, "usn") == 0)
        return 0;
    if (strcmp(sl->conf->incremental, "dirsync") == 0)
        return 1;
    return !source_ldap_dirsync_memo(sl)->denied;
}

/* source_ldap_dirsync_in_context - do all bases lie in the naming context? */
static int source_ldap_dirsync_in_context(SOURCE_LDAP *sl, char *why, size_t whylen)
{
    if (sl->naming_context == NULL) {
        snprintf(why, whylen, "the rootDSE names no defaultNamingContext");
        return 0;
    }
    for (const char *b = sl->conf->base; *b;) {
        size_t len = strcspn(b, "\n");
        char *base = xstrndup(b, len);
        char *nc = sl->naming_context;
        char *bnorm = NULL, *cnorm = NULL;
        int in = 0;

        if (ldap_dn_normalize(base, LDAP_DN_FORMAT_LDAPV3, &bnorm, LDAP_DN_FORMAT_LDAPV3) == LDAP_SUCCESS
            && ldap_dn_normalize(nc, LDAP_DN_FORMAT_LDAPV3, &cnorm, LDAP_DN_FORMAT_LDAPV3) == LDAP_SUCCESS) {
            size_t n = strlen(bnorm), m = strlen(cnorm);

            in = n >= m && strcasecmp(bnorm + n - m, cnorm) == 0 && (n == m || bnorm[n - m - 1] == ',');
        }
        ldap_memfree(bnorm);
        ldap_memfree(cnorm);
        if (!in) {
            snprintf(why, whylen, "base \"%s\" is not in the naming context %s", base, nc);
            free(base);
            return 0;
        }
        free(base);
        b += len;
        if (*b)
            b++;
    }
    return 1;
}

/* source_ldap_dirsync_listed - is the attribute type name (len bytes) in list[0..n)? */
static int source_ldap_dirsync_listed(char **list, int n, const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strncasecmp(list[i], name, len) == 0 && list[i][len] == 0)
            return 1;
    return 0;
}

/*
 * source_ldap_dirsync_filter_attrs - add to list the attribute types the
 * filter tests. DirSync returns an object only when an attribute it was
 * asked for changed: a filter on department or extensionAttribute1 would
 * never see an object enter or leave it until the next full pull.
 * (memberOf changes on the group, not the member: no incremental pull
 * sees it.) Each "(" of a valid filter opens a filter or an item, and an
 * item starts with its type; a "(" inside a value is escaped as \28.
 */
static int source_ldap_dirsync_filter_attrs(const char *filter, char **list, int n)
{
    static const char type_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.";

    for (const char *p = filter; p != NULL && (p = strchr(p, '(')) != NULL;) {
        size_t len = strspn(++p, type_chars);
        const char *after = p + len;

        if (len == 0)
            continue;                   /* (&, (|, (! */
        while (*after == ';')           /* options: member;range=0-1499 */
            after += 1 + strspn(after + 1, type_chars);
        if (strchr("=~<>:", *after) == NULL || *after == 0)
            continue;
        if ((len == 10 && strncasecmp(p, "uSNChanged", 10) == 0) || source_ldap_dirsync_listed(list, n, p, len))
            continue;                   /* uSNChanged moves with every change: it would return them all */
        list[n++] = xstrndup(p, len);
    }
    return n;
}

/* source_ldap_dirsync_attrs - what DirSync asks for: the recipient's attributes, unranged, and the filter's */
static char **source_ldap_dirsync_attrs(SOURCE_LDAP *sl)
{
    int n = 0;
    char **list;

    for (char **a = sl->attrs; *a; a++)
        n++;
    for (const char *p = sl->filter; p != NULL && (p = strchr(p, '(')) != NULL; p++)
        n++;
    list = xcalloc((size_t) n + 4, sizeof(char *));
    n = 0;
    list[n++] = xstrdup("objectGUID");
    list[n++] = xstrdup("isDeleted");
    list[n++] = xstrdup("name");        /* a rename or a move */
    for (char **a = sl->attrs; *a; a++) {
        /* uSNChanged moves with every change: asking for it returns them all. */
        if (strcasecmp(*a, "uSNChanged") == 0 || strcasecmp(*a, "objectGUID") == 0)
            continue;
        list[n++] = strncasecmp(*a, "member;", 7) == 0 ? xstrdup("member") : xstrdup(*a);
    }
    n = source_ldap_dirsync_filter_attrs(sl->filter, list, n);
    list[n] = NULL;
    return list;
}

/* source_ldap_dirsync_b64 - base64 of a cookie (malloc'd) */
static char *source_ldap_dirsync_b64(const struct berval *bv)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = (const unsigned char *) bv->bv_val;
    size_t n = bv->bv_len;
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    char *o = out;

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned) p[i] << 16 | (i + 1 < n ? (unsigned) p[i + 1] << 8 : 0)
            | (i + 2 < n ? p[i + 2] : 0);

        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = 0;
    return out;
}

/* source_ldap_dirsync_unb64 - a stored cookie back to bytes; 0 or -1 (malformed) */
static int source_ldap_dirsync_unb64(const char *in, struct berval *bv)
{
    size_t len = strlen(in);
    unsigned char *out;
    size_t o = 0;
    unsigned v = 0;
    int bits = 0;

    bv->bv_val = NULL;
    bv->bv_len = 0;
    if (len == 0 || len % 4 != 0)
        return -1;
    out = xmalloc(len / 4 * 3 + 1);
    for (size_t i = 0; i < len; i++) {
        const char c = in[i];
        int d;

        if (c >= 'A' && c <= 'Z')
            d = c - 'A';
        else if (c >= 'a' && c <= 'z')
            d = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            d = c - '0' + 52;
        else if (c == '+')
            d = 62;
        else if (c == '/')
            d = 63;
        else if (c == '=' && i >= len - 2 && (i == len - 1 || in[i + 1] == '='))
            break;
        else {
            free(out);
            return -1;
        }
        v = v << 6 | (unsigned) d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char) (v >> bits & 0xff);
        }
    }
    bv->bv_val = (char *) out;
    bv->bv_len = o;
    return 0;
}

/* source_ldap_dirsync_none - a DirSync answer while only the cookie is wanted: ignored */
static int source_ldap_dirsync_none(SOURCE_LDAP *sl, LDAPMessage *e, void *ctx, char *err, size_t errlen)
{
    (void) sl;
    (void) e;
    (void) ctx;
    (void) err;
    (void) errlen;
    return 0;
}

/* source_ldap_dirsync_entry - one DirSync answer: a tombstone, an object moved out, or one to read again */
static int source_ldap_dirsync_entry(SOURCE_LDAP *sl, LDAPMessage *e, void *ctx, char *err, size_t errlen)
{
    SOURCE_LDAP_DIRSYNC_PULL *p = ctx;
    BerElement *ber;
    struct berval dn, name, *vals;
    char guid[33] = "";
    int deleted = 0;
    int in = 1;
    int r;

    if (source_stopping()) {
        snprintf(err, errlen, "stopping on a signal");
        return -1;
    }
    p->seen++;
    if (source_ldap_entry_first(sl, e, &ber, &dn) < 0) {
        snprintf(err, errlen, "a DirSync answer without a readable DN");
        return -1;
    }
    while ((r = source_ldap_entry_next(sl, e, ber, &name, &vals)) > 0) {
        if (vals && vals[0].bv_val) {
            if (source_ldap_is(&name, "objectGUID"))
                (void) source_ldap_ad_guid(&vals[0], guid);
            else if (source_ldap_is(&name, "isDeleted"))
                deleted = source_ldap_is(&vals[0], "TRUE");
        }
        ber_memfree(vals);
    }
    ber_free(ber, 0);
    if (r < 0) {
        /* Half an answer could lack isDeleted: deleting or keeping would be a guess. */
        snprintf(err, errlen, "%.*s: a malformed DirSync answer", (int) dn.bv_len, dn.bv_val);
        return -1;
    }
    if (guid[0] == 0) {
        snprintf(err, errlen, "%.*s: a DirSync answer without objectGUID", (int) dn.bv_len, dn.bv_val);
        return -1;
    }
    if (!deleted && (in = source_ldap_ad_in_bases(sl, dn.bv_val, dn.bv_len)) < 0) {
        snprintf(err, errlen, "%.*s: a DirSync answer with an unreadable DN", (int) dn.bv_len, dn.bv_val);
        return -1;
    }
    if (deleted || in == 0)
        return source_ldap_ad_delta_gone(sl, p->d, guid, err, errlen);   /* unknown guids are fine */
    if (p->n == p->size) {
        p->size = p->size ? 2 * p->size : 64;
        p->dns = xrealloc(p->dns, p->size * sizeof(char *));
        p->guids = xrealloc(p->guids, p->size * sizeof(char *));
    }
    p->dns[p->n] = xstrndup(dn.bv_val, dn.bv_len);
    p->guids[p->n++] = xstrdup(guid);
    return 0;
}

/*
 * source_ldap_dirsync_run - DirSync searches of the naming context from
 * cookie (NULL: from the beginning) until the server has no more, each
 * entry to fn; the last cookie as base64 into *out. 0, or -1 with err
 * and sl->last_code.
 */
static int source_ldap_dirsync_run(SOURCE_LDAP *sl, const struct berval *cookie, const char *filter,
                                   SOURCE_LDAP_ENTRY_FN fn, void *ctx, char **out, char *err, size_t errlen)
{
    char **attrs = source_ldap_dirsync_attrs(sl);
    struct berval cur = {0, NULL};
    int more = 1;
    int rounds = 0;
    int ret = -1;

    *out = NULL;
    if (cookie != NULL && cookie->bv_len > 0) {
        cur.bv_val = xmalloc(cookie->bv_len);
        memcpy(cur.bv_val, cookie->bv_val, cookie->bv_len);
        cur.bv_len = cookie->bv_len;
    }
    while (more) {
        LDAPControl *ctrl = NULL;
        LDAPControl **rctrls = NULL;
        LDAPControl *resp;
        struct berval next = {0, NULL};
        int rc;

        /* Flags 0: every object the account may replicate; no byte limit of ours. */
        /* libldap wants a cookie even for the first request: an empty one. */
        if ((rc = ldap_create_dirsync_control(sl->ld, 0, 0, &cur, &ctrl)) != LDAP_SUCCESS) {
            snprintf(err, errlen, "DirSync control: %s", ldap_err2string(rc));
            sl->last_code = LDAP_OTHER;
            goto out;
        }
        ctrl->ldctl_iscritical = 1;
        rc = source_ldap_search_ext(sl, sl->naming_context, LDAP_SCOPE_SUBTREE, filter, attrs, 0,
                                    ctrl, &rctrls, fn, ctx, err, errlen);
        ldap_control_free(ctrl);
        if (rc < 0)
            goto out;
        resp = ldap_control_find(LDAP_CONTROL_X_DIRSYNC, rctrls, NULL);
        if (resp == NULL || ldap_parse_dirsync_control(sl->ld, resp, &more, &next) != LDAP_SUCCESS) {
            ldap_controls_free(rctrls);
            snprintf(err, errlen, "DirSync search of %s: the answer carries no DirSync control",
                     sl->naming_context);
            sl->last_code = LDAP_PROTOCOL_ERROR;
            goto out;
        }
        ldap_controls_free(rctrls);
        if (next.bv_len > 0) {
            free(cur.bv_val);
            cur.bv_val = xmalloc(next.bv_len);
            memcpy(cur.bv_val, next.bv_val, next.bv_len);
            cur.bv_len = next.bv_len;
        }
        ber_memfree(next.bv_val);
        if (++rounds > 100000) {
            snprintf(err, errlen, "DirSync of %s does not end", sl->naming_context);
            goto out;
        }
    }
    if (cur.bv_len == 0) {
        snprintf(err, errlen, "DirSync of %s: the server gave no cookie", sl->naming_context);
        sl->last_code = LDAP_PROTOCOL_ERROR;
        goto out;
    }
    *out = source_ldap_dirsync_b64(&cur);
    ret = 0;

out:
    free(cur.bv_val);
    source_words_free(attrs);
    return ret;
}

/* source_ldap_dirsync_start - a cookie for "now" before a full pull, where DirSync serves */
int source_ldap_dirsync_start(SOURCE_LDAP *sl, char *err, size_t errlen)
{
    SOURCE_LDAP_DIRSYNC_MEMO *m;
    int forced = strcmp(sl->conf->incremental, "dirsync") == 0;
    char why[1024];

    if (!source_ldap_dirsync_use(sl))
        return 0;
    m = source_ldap_dirsync_memo(sl);
    if (!source_ldap_dirsync_in_context(sl, why, sizeof(why))) {
        if (forced) {
            snprintf(err, errlen, "incremental = dirsync, but %s", why);
            return -1;
        }
        log_info("source %s: incremental pulls by uSNChanged: DirSync cannot serve: %s", sl->conf->name, why);
        m->denied = 1;
        return 0;
    }
    /* A filter that matches nothing: only the cookie is wanted. */
    if (source_ldap_dirsync_run(sl, NULL, "(&(objectClass=top)(!(objectClass=top)))",
                                source_ldap_dirsync_none, NULL, &sl->dirsync_cookie, why, sizeof(why)) == 0) {
        log_debug("source %s: DirSync cookie taken before the full pull", sl->conf->name);
        return 0;
    }
    if (!source_ldap_dirsync_refused(sl->last_code)) {
        /*
         * A time limit, a busy controller: with incremental = auto the
         * cookie is an extra and must not fail the full pull, the one
         * pull that has to succeed. This pull stores a USN; the next full
         * one asks DirSync again. (A dead connection fails the pull's own
         * search right after.)
         */
        if (forced) {
            snprintf(err, errlen, "%s", why);
            return -1;
        }
        free(sl->dirsync_cookie);
        sl->dirsync_cookie = NULL;
        log_warn("source %s: no DirSync cookie this time (%s): this pull stores a USN, and the next full "
                 "pull asks DirSync again", sl->conf->name, why);
        return 0;
    }
    if (forced) {
        snprintf(err, errlen, "incremental = dirsync, but the directory refuses DirSync to %s: %s "
                 "(grant the account \"Replicating Directory Changes\", or set incremental = auto)",
                 *sl->conf->bind_dn ? sl->conf->bind_dn : "this account", why);
        return -1;
    }
    log_info("source %s: incremental pulls by uSNChanged: the directory refuses DirSync to %s (%s)",
             sl->conf->name, *sl->conf->bind_dn ? sl->conf->bind_dn : "this account", why);
    m->denied = 1;
    return 0;
}

/* source_ldap_dirsync_incremental - the changes since a stored DirSync cookie */
int source_ldap_dirsync_incremental(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d, const char *cookie,
                                    char **new_cookie, char *err, size_t errlen)
{
    SOURCE_LDAP_DIRSYNC_PULL p;
    struct berval bv;
    char why[1024];
    int rc = SOURCE_OK;

    *new_cookie = NULL;
    if (source_ldap_dirsync_unb64(cookie, &bv) < 0) {
        snprintf(err, errlen, "the stored DirSync cookie is malformed");
        return SOURCE_FULL;
    }
    if (!source_ldap_dirsync_in_context(sl, why, sizeof(why))) {
        free(bv.bv_val);
        snprintf(err, errlen, "DirSync cannot serve: %s", why);
        return SOURCE_FULL;
    }
    memset(&p, 0, sizeof(p));
    p.d = d;
    if (source_ldap_dirsync_run(sl, &bv, "(objectClass=*)", source_ldap_dirsync_entry, &p,
                                new_cookie, why, sizeof(why)) < 0) {
        if (source_ldap_dirsync_refused(sl->last_code) || sl->last_code == LDAP_PROTOCOL_ERROR
            || sl->last_code == LDAP_OTHER) {
            /* Rights taken away, or a cookie the DC does not take: start again with a full pull. */
            if (sl->last_code == LDAP_INSUFFICIENT_ACCESS && strcmp(sl->conf->incremental, "auto") == 0)
                source_ldap_dirsync_memo(sl)->denied = 1;
            snprintf(err, errlen, "DirSync from the stored cookie: %s", why);
            rc = SOURCE_FULL;
        } else {
            snprintf(err, errlen, "%s", why);
            rc = SOURCE_ERR;
        }
    }
    free(bv.bv_val);
    for (size_t i = 0; i < p.n && rc == SOURCE_OK; i++)
        if (source_ldap_ad_delta_read(sl, d, p.dns[i], p.guids[i], err, errlen) < 0)
            rc = SOURCE_ERR;
    if (rc == SOURCE_OK) {
        char *plain = *new_cookie;

        *new_cookie = xasprintf("%s%s", SOURCE_LDAP_DIRSYNC_PREFIX, plain);
        free(plain);
        log_debug("source %s: DirSync returned %lld entries; %zu in the bases read again",
                  sl->conf->name, p.seen, p.n);
    }
    for (size_t i = 0; i < p.n; i++) {
        free(p.dns[i]);
        free(p.guids[i]);
    }
    free(p.dns);
    free(p.guids);
    if (rc != SOURCE_OK) {
        free(*new_cookie);
        *new_cookie = NULL;
    }
    return rc;
}

/* source_ldap_dirsync_deleted_cb - one tombstone: deleted by guid */
static int source_ldap_dirsync_deleted_cb(SOURCE_LDAP *sl, LDAPMessage *e, void *ctx, char *err, size_t errlen)
{
    SOURCE_LDAP_AD_DELTA *d = ctx;
    BerElement *ber;
    struct berval dn, name, *vals;
    char guid[33] = "";

    if (source_ldap_entry_first(sl, e, &ber, &dn) < 0)
        return 0;
    while (source_ldap_entry_next(sl, e, ber, &name, &vals) > 0) {
        if (vals && vals[0].bv_val && source_ldap_is(&name, "objectGUID"))
            (void) source_ldap_ad_guid(&vals[0], guid);
        ber_memfree(vals);
    }
    ber_free(ber, 0);
    if (guid[0] == 0)
        return 0;
    return source_ldap_ad_delta_gone(sl, d, guid, err, errlen);
}

/* source_ldap_dirsync_deleted - tombstones changed since usn, by show-deleted */
int source_ldap_dirsync_deleted(SOURCE_LDAP *sl, SOURCE_LDAP_AD_DELTA *d, long long usn,
                                char *err, size_t errlen)
{
    static char *attrs[] = {"objectGUID", "isDeleted", NULL};
    SOURCE_LDAP_DIRSYNC_MEMO *m;
    LDAPControl *ctrl = NULL;
    char *base, *filter;
    char why[1024];
    int rc;

    if (sl->naming_context == NULL)
        return 0;                       /* not AD (a test slapd): the full pull removes */
    m = source_ldap_dirsync_memo(sl);
    if (m->no_tombstones)
        return 0;
    if ((rc = ldap_create_show_deleted_control(sl->ld, &ctrl)) != LDAP_SUCCESS) {
        snprintf(err, errlen, "show-deleted control: %s", ldap_err2string(rc));
        return -1;
    }
    ctrl->ldctl_iscritical = 1;
    base = xasprintf("CN=Deleted Objects,%s", sl->naming_context);
    filter = xasprintf("(&(isDeleted=TRUE)(uSNChanged>=%lld))", usn + 1);
    rc = source_ldap_search_ext(sl, base, LDAP_SCOPE_SUBTREE, filter, attrs, 1, ctrl, NULL,
                                source_ldap_dirsync_deleted_cb, d, why, sizeof(why));
    ldap_control_free(ctrl);
    free(filter);
    if (rc < 0 && (source_ldap_dirsync_refused(sl->last_code) || sl->last_code == LDAP_NO_SUCH_OBJECT)) {
        log_warn("source %s: deleted objects cannot be read (%s): deletions wait for the full "
                 "reconciliation", sl->conf->name, why);
        m->no_tombstones = 1;
        rc = 0;
    } else if (rc < 0) {
        snprintf(err, errlen, "%s", why);
    }
    free(base);
    return rc;
}
