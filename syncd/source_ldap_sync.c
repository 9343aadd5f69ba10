/*
 * source_ldap_sync.c - RFC 4533 content synchronisation for the generic LDAP flavour
 *
 * DESCRIPTION
 *   OpenLDAP's syncprov overlay answers a search carrying the sync
 *   request control with the entries changed since a cookie, the UUIDs
 *   of entries deleted since then, and a new cookie. rcptgate-syncd uses
 *   it in two ways:
 *
 *   - mode = poll: each incremental pull is a refreshOnly search from the
 *     stored cookie;
 *   - mode = persistent: one refreshAndPersist search stays open on the
 *     source's connection; the daemon waits on it (source_ldap_sync_wait)
 *     and each burst of changes becomes one store transaction, committed
 *     when the stream has been quiet for 100 ms or after 1,000 changes,
 *     with the cookie of its last change.
 *
 *   The cookie a full pull stores is fetched just before its paged search,
 *   by a refreshOnly search that matches nothing: changes made during the
 *   pull then come again in the next incremental pull, which is harmless
 *   (an object put twice is the same object), while none is lost. The
 *   full pull itself stays paged, so a server size limit still cannot cut
 *   it short.
 *
 *   Each entry is mapped by the generic flavour's own entry function; an
 *   entry without a usable address any more is removed. Resuming from a
 *   cookie needs the server to say what was deleted (a session log: the
 *   delete phase). When it can only list what is present (the present
 *   phase, e.g. after a slapd restart lost its session log) or says the
 *   cookie is too old (e-syncRefreshRequired), a full pull is done
 *   instead: the shrink guard then watches over the removals.
 *
 *   Only a source with one search base takes part: a cookie belongs to
 *   one search. Others pull in full every time.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"
#include "syncd.h"
#include "xalloc.h"

#define SOURCE_LDAP_SYNC_QUIET_MS   100     /* a burst ends after this much silence */
#define SOURCE_LDAP_SYNC_BATCH      1000    /* changes per transaction at most */
#define SOURCE_LDAP_SYNC_STEP_MS    200     /* how often a long wait looks at SIGTERM */

/* A filter no entry matches: the cookie fetch wants no entries. */
#define SOURCE_LDAP_SYNC_NOTHING    "(&(objectClass=*)(!(objectClass=*)))"

/* The synchronisation state of one open source. */
struct source_ldap_sync {
    int msgid;                  /* the running sync search, 0 none */
    int persist;                /* it is refreshAndPersist */
    int refreshing;             /* its refresh phase is not done yet */
    int resumed;                /* it started from a cookie */
    int ended;                  /* the server ended a refreshAndPersist search */
    char *cookie;               /* the newest cookie the server gave */
    char *committed;            /* the cookie the last pull returned */
    LDAPMessage *pending;       /* a message wait() read, for the next pull */
};

/* What one pull collects. */
typedef struct source_ldap_sync_pull {
    SOURCE_LDAP *sl;
    SYNC_SINK *sink;            /* the real sink */
    SYNC_SINK wrap;             /* counts the flavour's puts */
    long long puts;
    long long changes;
    int need_full;
    char why[512];              /* why a full pull is needed */
} SOURCE_LDAP_SYNC_PULL;

/* source_ldap_sync_of - the state of sl, created on demand */
static struct source_ldap_sync *source_ldap_sync_of(SOURCE_LDAP *sl)
{
    if (sl->sync == NULL)
        sl->sync = xcalloc(1, sizeof(*sl->sync));
    return sl->sync;
}

/* source_ldap_sync_usable - 1 when this source can use RFC 4533 */
static int source_ldap_sync_usable(const SOURCE_CONF *c)
{
    return strcmp(c->type, "ldap") == 0 && strcmp(c->flavour, "generic") == 0
        && strcmp(c->mode, "once") != 0 && *c->base && strchr(c->base, '\n') == NULL;
}

/* source_ldap_sync_persistent - 1 when mode = persistent works for this source */
int source_ldap_sync_persistent(const SOURCE_CONF *c)
{
    return source_ldap_sync_usable(c) && strcmp(c->mode, "persistent") == 0;
}

/* source_ldap_sync_set - replace a cookie with a BER value (not NUL-terminated) */
static void source_ldap_sync_set(char **slot, const struct berval *bv)
{
    if (bv->bv_val == NULL || memchr(bv->bv_val, 0, bv->bv_len) != NULL)
        return;                         /* no cookie, or one we could not store as text */
    free(*slot);
    *slot = xstrndup(bv->bv_val, bv->bv_len);
}

/* source_ldap_sync_stop - abandon the running search */
static void source_ldap_sync_stop(SOURCE_LDAP *sl)
{
    struct source_ldap_sync *s = sl->sync;

    if (s == NULL)
        return;
    if (s->msgid > 0 && sl->ld != NULL)
        (void) ldap_abandon_ext(sl->ld, s->msgid, NULL, NULL);
    s->msgid = 0;
    ldap_msgfree(s->pending);
    s->pending = NULL;
}

/* source_ldap_sync_free - the state, at close; NULL is fine */
void source_ldap_sync_free(SOURCE_LDAP *sl)
{
    if (sl == NULL || sl->sync == NULL)
        return;
    ldap_msgfree(sl->sync->pending);
    free(sl->sync->cookie);
    free(sl->sync->committed);
    free(sl->sync);
    sl->sync = NULL;
}

/* source_ldap_sync_search - send a sync search of the base; 0 or -1 */
static int source_ldap_sync_search(SOURCE_LDAP *sl, int mode, const char *cookie, const char *filter,
                                   char **attrs, char *err, size_t errlen)
{
    struct source_ldap_sync *s = source_ldap_sync_of(sl);
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    LDAPControl *ctrls[2] = {NULL, NULL};
    struct berval value;
    char diag[512];
    int rc;

    if (ber == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rc = ber_printf(ber, "{e", (ber_int_t) mode);
    if (rc >= 0 && cookie != NULL) {
        struct berval c;

        c.bv_val = (char *) cookie;
        c.bv_len = strlen(cookie);
        rc = ber_printf(ber, "O", &c);
    }
    if (rc >= 0)
        rc = ber_printf(ber, "N}");
    if (rc < 0 || ber_flatten2(ber, &value, 0) < 0
        || ldap_control_create(LDAP_CONTROL_SYNC, 1, &value, 1, &ctrls[0]) != LDAP_SUCCESS) {
        ber_free(ber, 1);
        snprintf(err, errlen, "cannot build the sync request control");
        return -1;
    }
    ber_free(ber, 1);
    rc = ldap_search_ext(sl->ld, sl->conf->base, LDAP_SCOPE_SUBTREE, filter, attrs, 0, ctrls, NULL,
                         NULL, LDAP_NO_LIMIT, &s->msgid);
    ldap_control_free(ctrls[0]);
    if (rc != LDAP_SUCCESS) {
        s->msgid = 0;
        snprintf(err, errlen, "sync search of \"%s\": %s", sl->conf->base,
                 source_ldap_diag(sl, rc, diag, sizeof(diag)));
        return -1;
    }
    s->persist = mode == LDAP_SYNC_REFRESH_AND_PERSIST;
    s->ended = 0;
    s->refreshing = 1;
    s->resumed = cookie != NULL;
    return 0;
}

/*
 * source_ldap_sync_result - the next message of the search, waiting up
 * to ms in steps that notice SIGTERM. 1 (*msg), 0 timeout, -1 error.
 */
static int source_ldap_sync_result(SOURCE_LDAP *sl, int ms, LDAPMessage **msg, char *err, size_t errlen)
{
    struct source_ldap_sync *s = sl->sync;
    char diag[512];

    *msg = NULL;
    if (s->pending != NULL) {
        *msg = s->pending;
        s->pending = NULL;
        return 1;
    }
    for (;;) {
        int step = ms < SOURCE_LDAP_SYNC_STEP_MS ? ms : SOURCE_LDAP_SYNC_STEP_MS;
        struct timeval tv;
        int rc;

        if (source_stopping()) {
            snprintf(err, errlen, "stopping on a signal");
            return -1;
        }
        tv.tv_sec = step / 1000;
        tv.tv_usec = (step % 1000) * 1000;
        rc = ldap_result(sl->ld, s->msgid, LDAP_MSG_ONE, &tv, msg);
        if (rc > 0)
            return 1;
        if (rc < 0) {
            int code = LDAP_SERVER_DOWN;

            (void) ldap_get_option(sl->ld, LDAP_OPT_RESULT_CODE, &code);
            snprintf(err, errlen, "sync search of \"%s\": %s", sl->conf->base,
                     source_ldap_diag(sl, code, diag, sizeof(diag)));
            s->msgid = 0;
            return -1;
        }
        if ((ms -= step) <= 0)
            return 0;
    }
}

/* source_ldap_sync_uuid - 16 raw bytes as the text form of entryUUID (out holds 37) */
static int source_ldap_sync_uuid(const struct berval *bv, char *out)
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;

    if (bv->bv_len != 16)
        return -1;
    for (int i = 0; i < 16; i++) {
        unsigned char b = (unsigned char) bv->bv_val[i];

        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b >> 4];
        *p++ = hex[b & 15];
    }
    *p = 0;
    return 0;
}

/* source_ldap_sync_put - the wrapper sink's put: count, then pass on */
static int source_ldap_sync_put(SYNC_SINK *wrap, const STORE_OBJECT *obj)
{
    SOURCE_LDAP_SYNC_PULL *p = wrap->ctx;

    p->puts++;
    return p->sink->put(p->sink, obj);
}

/* source_ldap_sync_del - one deletion by raw UUID; 0 or -1 */
static int source_ldap_sync_del(SOURCE_LDAP_SYNC_PULL *p, const struct berval *uuid, char *err, size_t errlen)
{
    char guid[40];

    if (source_ldap_sync_uuid(uuid, guid) < 0) {
        snprintf(err, errlen, "a sync message with a malformed entryUUID");
        return -1;
    }
    p->changes++;
    if (p->sink->del(p->sink, guid) < 0) {
        snprintf(err, errlen, "%s: deletion not stored", guid);
        return -1;
    }
    return 0;
}

/* source_ldap_sync_entry - one entry with its sync state; 0 or -1 */
static int source_ldap_sync_entry(SOURCE_LDAP_SYNC_PULL *p, LDAPMessage *e, char *err, size_t errlen)
{
    SOURCE_LDAP *sl = p->sl;
    LDAPControl **ctrls = NULL;
    LDAPControl *c;
    BerElement *ber = NULL;
    struct berval uuid = {0, NULL};
    struct berval cookie = {0, NULL};
    ber_int_t state = -1;
    ber_len_t len;
    char guid[40];
    int rc = -1;

    if (ldap_get_entry_controls(sl->ld, e, &ctrls) != LDAP_SUCCESS
        || (c = ldap_control_find(LDAP_CONTROL_SYNC_STATE, ctrls, NULL)) == NULL) {
        snprintf(err, errlen, "a sync entry without its state control");
        goto out;
    }
    if ((ber = ber_init(&c->ldctl_value)) == NULL || ber_scanf(ber, "{em", &state, &uuid) == LBER_ERROR || source_ldap_sync_uuid(&uuid, guid) < 0) {
        snprintf(err, errlen, "a malformed sync state control");
        goto out;
    }
    if (ber_peek_tag(ber, &len) == LDAP_TAG_SYNC_COOKIE && ber_scanf(ber, "m", &cookie) != LBER_ERROR)
        source_ldap_sync_set(&sl->sync->cookie, &cookie);
    switch (state) {
    case LDAP_SYNC_ADD:
    case LDAP_SYNC_MODIFY: {
            long long before = p->puts;

            p->changes++;
            sl->entries++;
            sl->sink = &p->wrap;
            rc = sl->flavour->entry(sl, e, err, errlen);
            sl->sink = p->sink;
            /* Mapped to nothing (no usable address any more): it is gone for us. */
            if (rc == 0 && p->puts == before && p->sink->del(p->sink, guid) < 0) {
                snprintf(err, errlen, "%s: deletion not stored", guid);
                rc = -1;
            }
            break;
        }
    case LDAP_SYNC_DELETE:
        rc = source_ldap_sync_del(p, &uuid, err, errlen);
        break;
    case LDAP_SYNC_PRESENT:
        /* Only a present phase sends these: resuming needs the deletions. */
        if (sl->sync->resumed && !p->need_full) {
            p->need_full = 1;
            snprintf(p->why, sizeof(p->why), "the server lists present entries instead of the "
                     "deleted ones (no session log for this cookie)");
        }
        rc = 0;
        break;
    default:
        snprintf(err, errlen, "a sync state %d this client does not know", (int) state);
        break;
    }
out:
    if (ber != NULL)
        ber_free(ber, 1);
    ldap_controls_free(ctrls);
    return rc;
}

/* source_ldap_sync_present - the server used the present phase after a cookie */
static void source_ldap_sync_present(SOURCE_LDAP_SYNC_PULL *p)
{
    if (p->sl->sync->resumed && !p->need_full) {
        p->need_full = 1;
        snprintf(p->why, sizeof(p->why), "the server resumes with a present phase, which "
                 "cannot tell deletions (no session log for this cookie)");
    }
}

/* source_ldap_sync_info - a syncInfo intermediate message; 0 or -1 */
static int source_ldap_sync_info(SOURCE_LDAP_SYNC_PULL *p, LDAPMessage *msg, char *err, size_t errlen)
{
    SOURCE_LDAP *sl = p->sl;
    struct source_ldap_sync *s = sl->sync;
    BerElement *ber = NULL;
    struct berval *data = NULL;
    struct berval cookie = {0, NULL};
    char *oid = NULL;
    ber_tag_t tag;
    ber_len_t len;
    ber_int_t flag;
    int rc = -1;

    if (ldap_parse_intermediate(sl->ld, msg, &oid, &data, NULL, 0) != LDAP_SUCCESS
        || oid == NULL || strcmp(oid, LDAP_SYNC_INFO) != 0 || data == NULL) {
        rc = 0;                         /* not ours: ignore */
        goto out;
    }
    if ((ber = ber_init(data)) == NULL)
        goto bad;
    switch ((tag = ber_peek_tag(ber, &len))) {
    case LDAP_TAG_SYNC_NEW_COOKIE:
        if (ber_scanf(ber, "m", &cookie) == LBER_ERROR)
            goto bad;
        source_ldap_sync_set(&s->cookie, &cookie);
        break;
    case LDAP_TAG_SYNC_REFRESH_DELETE:
    case LDAP_TAG_SYNC_REFRESH_PRESENT:
        flag = 1;                       /* refreshDone DEFAULT TRUE */
        if (ber_scanf(ber, "{") == LBER_ERROR)
            goto bad;
        if (ber_peek_tag(ber, &len) == LDAP_TAG_SYNC_COOKIE) {
            if (ber_scanf(ber, "m", &cookie) == LBER_ERROR)
                goto bad;
            source_ldap_sync_set(&s->cookie, &cookie);
        }
        if (ber_peek_tag(ber, &len) == LDAP_TAG_REFRESHDONE && ber_scanf(ber, "b", &flag) == LBER_ERROR)
            goto bad;
        if (tag == LDAP_TAG_SYNC_REFRESH_PRESENT)
            source_ldap_sync_present(p);
        if (flag)
            s->refreshing = 0;
        break;
    case LDAP_TAG_SYNC_ID_SET: {
            BerVarray uuids = NULL;

            flag = 0;                   /* refreshDeletes DEFAULT FALSE */
            if (ber_scanf(ber, "{") == LBER_ERROR)
                goto bad;
            if (ber_peek_tag(ber, &len) == LDAP_TAG_SYNC_COOKIE) {
                if (ber_scanf(ber, "m", &cookie) == LBER_ERROR)
                    goto bad;
                source_ldap_sync_set(&s->cookie, &cookie);
            }
            if (ber_peek_tag(ber, &len) == LDAP_TAG_REFRESHDELETES && ber_scanf(ber, "b", &flag) == LBER_ERROR)
                goto bad;
            if (ber_scanf(ber, "[W]", &uuids) == LBER_ERROR)
                goto bad;
            rc = 0;
            if (!flag)
                source_ldap_sync_present(p);
            else
                for (int i = 0; uuids && uuids[i].bv_val && rc == 0; i++)
                    rc = source_ldap_sync_del(p, &uuids[i], err, errlen);
            ber_bvarray_free(uuids);
            goto out;
        }
    default:
        break;                          /* a later addition to the protocol: skip it */
    }
    rc = 0;
    goto out;
bad:
    snprintf(err, errlen, "a malformed syncInfo message");
out:
    if (ber != NULL)
        ber_free(ber, 1);
    ldap_memfree(oid);
    ber_bvfree(data);
    return rc;
}

/*
 * source_ldap_sync_done - the search's result: 1 done, 0 a full pull is
 * needed (p->why), -1 error.
 */
static int source_ldap_sync_done(SOURCE_LDAP_SYNC_PULL *p, LDAPMessage *msg, char *err, size_t errlen)
{
    SOURCE_LDAP *sl = p->sl;
    LDAPControl **ctrls = NULL;
    LDAPControl *c;
    char *text = NULL;
    int code = LDAP_OTHER;
    int rc = -1;

    sl->sync->msgid = 0;
    if (ldap_parse_result(sl->ld, msg, &code, NULL, &text, NULL, &ctrls, 0) != LDAP_SUCCESS) {
        snprintf(err, errlen, "sync search of \"%s\": unreadable result", sl->conf->base);
    } else if (code == LDAP_SYNC_REFRESH_REQUIRED) {
        snprintf(p->why, sizeof(p->why), "the server no longer knows the stored cookie (%s)",
                 text && *text ? text : "e-syncRefreshRequired");
        p->need_full = 1;
        rc = 0;
    } else if (code == LDAP_SIZELIMIT_EXCEEDED || code == LDAP_ADMINLIMIT_EXCEEDED) {
        /*
         * A sync search cannot be paged: more changes since the cookie
         * than the account may read at once (a bulk import) would fail
         * every retry until full_interval, the new addresses refused
         * meanwhile. A paged full pull gets them and a fresh cookie.
         */
        snprintf(p->why, sizeof(p->why), "the changes since the stored cookie are more than the sync "
                 "account may read in one search (%s): raise its size limit for incremental pulls "
                 "(OpenLDAP: limits ... size=unlimited)", ldap_err2string(code));
        p->need_full = 1;
        rc = 0;
    } else if (code != LDAP_SUCCESS) {
        snprintf(err, errlen, "sync search of \"%s\": %s%s%s%s", sl->conf->base, ldap_err2string(code),
                 text && *text ? " (" : "", text && *text ? text : "", text && *text ? ")" : "");
    } else {
        rc = 1;
        if ((c = ldap_control_find(LDAP_CONTROL_SYNC_DONE, ctrls, NULL)) != NULL && c->ldctl_value.bv_len) {
            BerElement *ber;
            struct berval cookie = {0, NULL};
            ber_int_t deletes = 0;
            ber_len_t len;

            if ((ber = ber_init(&c->ldctl_value)) != NULL && ber_scanf(ber, "{") != LBER_ERROR) {
                if (ber_peek_tag(ber, &len) == LDAP_TAG_SYNC_COOKIE && ber_scanf(ber, "m", &cookie) != LBER_ERROR)
                    source_ldap_sync_set(&sl->sync->cookie, &cookie);
                if (ber_peek_tag(ber, &len) == LDAP_TAG_REFRESHDELETES)
                    (void) ber_scanf(ber, "b", &deletes);
            }
            if (ber != NULL)
                ber_free(ber, 1);
            if (!deletes)
                source_ldap_sync_present(p);
        }
        sl->sync->refreshing = 0;
    }
    ldap_memfree(text);
    ldap_controls_free(ctrls);
    return rc;
}

/*
 * source_ldap_sync_begin - the generic flavour's begin: the cookie a full
 * pull stores, fetched before its search. Never fails the pull: without
 * a cookie (no syncprov, no rights) incremental pulls are full ones.
 */
int source_ldap_sync_begin(SOURCE_LDAP *sl, char *err, size_t errlen)
{
    struct source_ldap_sync *s;
    SOURCE_LDAP_SYNC_PULL p;
    char *attrs[] = {(char *) LDAP_NO_ATTRS, NULL};
    char why[768];
    int rc = 0;

    if (!source_ldap_sync_usable(sl->conf))
        return 0;
    s = source_ldap_sync_of(sl);
    source_ldap_sync_stop(sl);          /* a running search restarts from the new cookie */
    free(s->cookie);
    s->cookie = NULL;
    memset(&p, 0, sizeof(p));
    p.sl = sl;
    why[0] = 0;
    if (source_ldap_sync_search(sl, LDAP_SYNC_REFRESH_ONLY, NULL, SOURCE_LDAP_SYNC_NOTHING, attrs,
                                why, sizeof(why)) == 0) {
        while (rc == 0) {
            LDAPMessage *msg;

            if ((rc = source_ldap_sync_result(sl, sl->conf->timeout_ms, &msg, why, sizeof(why))) <= 0) {
                if (rc == 0)
                    snprintf(why, sizeof(why), "no answer within %d ms", sl->conf->timeout_ms);
                rc = -1;
                break;
            }
            if (ldap_msgtype(msg) == LDAP_RES_SEARCH_RESULT)
                rc = source_ldap_sync_done(&p, msg, why, sizeof(why)) > 0 ? 1 : -1;
            ldap_msgfree(msg);
        }
        if (rc < 0)
            source_ldap_sync_stop(sl);
    } else {
        rc = -1;
    }
    s->msgid = 0;
    if (rc < 0 || s->cookie == NULL) {
        free(s->cookie);
        s->cookie = NULL;
        log_warn("source %s: no RFC 4533 cookie from %s (%s): changes are pulled in full",
                 sl->conf->name, sl->uri, why[0] ? why : "the server sent none");
    }
    (void) err;
    (void) errlen;
    return 0;
}

/* source_ldap_sync_end - the generic flavour's end: the cookie begin fetched */
void source_ldap_sync_end(SOURCE_LDAP *sl, char **cookie, char **invocation_id)
{
    *cookie = sl->sync && sl->sync->cookie ? xstrdup(sl->sync->cookie) : NULL;
    *invocation_id = NULL;
}

/*
 * source_ldap_sync_incremental - the generic flavour's incremental pull:
 * continue the running refreshAndPersist search when it is where the
 * store is, else start a search from the stored cookie; deliver one
 * burst of changes to sl->sink.
 */
int source_ldap_sync_incremental(SOURCE_LDAP *sl, const char *cookie, const char *invocation_id,
                                 char **new_cookie, char **new_invocation_id, char *err, size_t errlen)
{
    const SOURCE_CONF *c = sl->conf;
    struct source_ldap_sync *s = source_ldap_sync_of(sl);
    SOURCE_LDAP_SYNC_PULL p;
    int persist = strcmp(c->mode, "persistent") == 0;

    (void) invocation_id;
    *new_cookie = NULL;
    *new_invocation_id = NULL;
    if (!source_ldap_sync_usable(c)) {
        snprintf(err, errlen, "RFC 4533 needs exactly one base");
        return SOURCE_FULL;
    }
    memset(&p, 0, sizeof(p));
    p.sl = sl;
    p.sink = sl->sink;
    p.wrap.put = source_ldap_sync_put;
    p.wrap.del = p.sink->del;
    p.wrap.ctx = &p;
    if (s->msgid == 0 || s->committed == NULL || strcmp(s->committed, cookie) != 0) {
        source_ldap_sync_stop(sl);
        free(s->cookie);
        s->cookie = xstrdup(cookie);
        if (source_ldap_sync_search(sl, persist ? LDAP_SYNC_REFRESH_AND_PERSIST : LDAP_SYNC_REFRESH_ONLY,
                                    cookie, sl->filter, sl->attrs, err, errlen) < 0)
            return SOURCE_ERR;
        if (persist)
            log_info("source %s: persistent search (RFC 4533 refreshAndPersist) from the stored "
                     "cookie on %s", c->name, sl->uri);
        else
            log_debug("source %s: refreshOnly search from the stored cookie", c->name);
    }
    /*
     * A refreshOnly search is read to its end: the next poll may be far
     * off. So is a refresh phase: it is one list of changes from the
     * server (the catch-up after a restart, say), judged by the shrink
     * guard as one, and committed with the cookie that ends it; cut into
     * batches, each batch passed the guard alone and stored the old cookie.
     */
    while (s->msgid > 0 && !p.need_full
           && (!s->persist || s->refreshing || p.changes < SOURCE_LDAP_SYNC_BATCH)) {
        LDAPMessage *msg;
        int wait_ms = s->refreshing ? c->timeout_ms : SOURCE_LDAP_SYNC_QUIET_MS;
        int rc = source_ldap_sync_result(sl, wait_ms, &msg, err, errlen);

        if (rc < 0) {
            source_ldap_sync_stop(sl);
            goto fail;
        }
        if (rc == 0) {
            if (!s->refreshing)
                break;                  /* quiet: commit this burst */
            snprintf(err, errlen, "sync search of \"%s\": no answer within %d ms (timeout)", c->base,
                     c->timeout_ms);
            source_ldap_sync_stop(sl);
            goto fail;
        }
        switch (ldap_msgtype(msg)) {
        case LDAP_RES_SEARCH_ENTRY:
            rc = source_ldap_sync_entry(&p, msg, err, errlen);
            break;
        case LDAP_RES_INTERMEDIATE:
            rc = source_ldap_sync_info(&p, msg, err, errlen);
            break;
        case LDAP_RES_SEARCH_RESULT:
            rc = source_ldap_sync_done(&p, msg, err, errlen) < 0 ? -1 : 0;
            s->ended = rc == 0 && s->persist && !p.need_full;
            break;
        default:
            rc = 0;                     /* references: not followed, as in a full pull */
            break;
        }
        ldap_msgfree(msg);
        if (rc < 0) {
            source_ldap_sync_stop(sl);
            goto fail;
        }
    }
    p.sink->skipped += p.wrap.skipped;
    if (p.need_full) {
        source_ldap_sync_stop(sl);
        snprintf(err, errlen, "%s", p.why);
        return SOURCE_FULL;
    }
    free(s->committed);
    s->committed = xstrdup(s->cookie ? s->cookie : cookie);
    *new_cookie = xstrdup(s->committed);
    return SOURCE_OK;

fail:
    p.sink->skipped += p.wrap.skipped;
    return SOURCE_ERR;
}

/*
 * source_ldap_sync_wait - SOURCE_OPS' wait: 1 when the persistent search
 * has something (or is not running: the next pull starts it), 0 nothing
 * within timeout_ms, -1 the connection failed.
 */
int source_ldap_sync_wait(SOURCE *src, int timeout_ms, char *err, size_t errlen)
{
    SOURCE_LDAP *sl = (SOURCE_LDAP *) (void *) src;
    struct source_ldap_sync *s = sl->sync;
    LDAPMessage *msg;
    int rc;

    if (s != NULL && s->ended) {
        /* Reconnect after retry_interval, rather than search again at once. */
        s->ended = 0;
        snprintf(err, errlen, "the server ended the persistent search (%s)", sl->uri);
        return -1;
    }
    if (s == NULL || s->msgid == 0 || s->pending != NULL)
        return 1;
    if (source_stopping())
        return 0;
    if ((rc = source_ldap_sync_result(sl, timeout_ms, &msg, err, errlen)) < 0) {
        if (source_stopping())
            return 0;
        snprintf(err + strlen(err), errlen - strlen(err), " (%s)", sl->uri);
        return -1;
    }
    if (rc > 0)
        s->pending = msg;
    return rc;
}
