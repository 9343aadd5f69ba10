/*
 * source_graph.c - Microsoft Entra ID (Azure AD) as a source of rcptgate-syncd
 *
 * SYNOPSIS
 *   [source cloud]
 *   type = graph
 *   tenant = contoso.onmicrosoft.com
 *   client_id = 00000000-0000-0000-0000-000000000000
 *   client_secret_file = /etc/rcptgate/graph.secret
 *
 * DESCRIPTION
 *   Reads users, groups and organisational contacts from Microsoft Graph
 *   (libcurl, jansson) with
 *   an application's own identity: the OAuth 2.0 client-credentials grant
 *   at LOGIN_URL/TENANT/oauth2/v2.0/token with a client secret, or with a
 *   client certificate (an RS256-signed JWT assertion carrying the
 *   certificate's SHA-1 thumbprint as x5t), for the scope
 *   GRAPH_URL/.default. The token is kept (across pulls, too) until
 *   shortly before it expires, and renewed at once when Graph answers 401
 *   in the middle of a pull (one new token, the request tried again).
 *
 *   A full pull first asks /users/delta, /groups/delta (with members
 *   selected, so that membership changes come too) and /contacts/delta for
 *   the current delta links ($deltatoken=latest: no objects, only the
 *   link), then reads /users, /groups and /contacts with $select and
 *   $top, following @odata.nextLink to the end, and each mail-enabled
 *   group's members (/groups/{id}/members?$select=id, paged). Changes made
 *   while the pull runs are thus seen again by the next incremental pull,
 *   never missed. The links, as a small JSON object, are the source's
 *   cookie. Contacts need OrgContact.Read.All (or Directory.Read.All): an
 *   application without it (403) is warned about and pulled without
 *   contacts, and its cookie has no contacts link.
 *
 *   An incremental pull follows the stored delta links: an entry with
 *   @removed is deleted by its id; any other is mapped as in a full pull
 *   and put, or deleted when it is no recipient now (disabled, no SMTP
 *   address left). Graph may send only the properties that changed: an
 *   entry without the properties the mapping needs is read again whole
 *   (/users/{id}, /groups/{id}); a changed group's member list is always
 *   read whole, since the store replaces an object's members as a set.
 *   410 Gone (or a "resync required" error) asks for a full pull.
 *
 *   The JSON is read one page at a time: a page is parsed, mapped, handed
 *   to the sink and freed before the next is asked for. Any page that
 *   fails (HTTP error, TLS failure, timeout, a truncated transfer, JSON
 *   that does not parse or lacks "value") fails the whole pull, and
 *   sync_apply.c then applies nothing.
 *
 * MAPPING (the AD rules where Graph has them)
 *   addresses   mail, and proxyAddresses of type SMTP ("SMTP:" primary,
 *               "smtp:" others, any case); other types ignored.
 *   users       kind user; userType Guest: kind contact (a guest's mail
 *               is elsewhere; it has no login here).
 *   contacts    organisational contacts (Exchange Online mail contacts,
 *               synchronised ones): kind contact, their addresses only.
 *   disabled    accountEnabled false: left out, unless shared_unlicensed
 *               (the default) and the user holds no licence
 *               (assignedLicenses empty): that is how an Exchange Online
 *               shared, room or equipment mailbox looks through Graph (its
 *               account is disabled by design and needs no licence),
 *               stored as kind shared. Graph v1.0 lists no recipient type.
 *   groups      mailEnabled true: kind group (distribution, mail-enabled
 *               security and Microsoft 365 groups; dynamic ones with the
 *               members Graph has computed). The "internal senders only"
 *               flag is not available from Graph's listings.
 *   logins      userPrincipalName and onPremisesSamAccountName, lowercased.
 *   identity    the Graph id (a GUID), lowercased; it is also the DN, so
 *               that member ids match the objects they name.
 *
 * HTTP
 *   HTTPS, the token, throttling, retries and paging: source_graph_http.c.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "log.h"
#include "source_graph.h"
#include "xalloc.h"

#define SOURCE_GRAPH_USER_SELECT \
    "id,mail,proxyAddresses,accountEnabled,userPrincipalName,userType,assignedLicenses," \
    "onPremisesSamAccountName"
#define SOURCE_GRAPH_GROUP_SELECT "id,mail,proxyAddresses,mailEnabled,securityEnabled,groupTypes"
#define SOURCE_GRAPH_CONTACT_SELECT "id,mail,proxyAddresses"

/* source_graph_of - our struct behind the opaque handle */
static SOURCE_GRAPH *source_graph_of(SOURCE *src)
{
    return (SOURCE_GRAPH *) (void *) src;
}

/* source_graph_trim - a copy of a URL without trailing slashes */
static char *source_graph_trim(const char *url)
{
    size_t n = strlen(url);

    while (n > 0 && url[n - 1] == '/')
        n--;
    return xstrndup(url, n);
}

/* source_graph_id_ok - a Graph id as it may go into a URL path: GUID characters */
static int source_graph_id_ok(const char *id)
{
    size_t n = strlen(id);

    return n > 0 && n <= 64 && strspn(id, "0123456789abcdefABCDEF-") == n;
}

/* ------------------------------------------------------------ configuration */

/* source_graph_validate - the settings of a type = graph source */
int source_graph_validate(const char *file, int line, const char *name, const SOURCE_CONF *c)
{
    int errors = 0;
    char why[512];
    char *origin;

    /*
     * The settings present and absent, and the secret files' modes:
     * params_source_validate (lib/), which ran first. Here what needs
     * OpenSSL: the key must be one.
     */
    if (*c->client_key_file) {
        char *key = NULL;

        if (cfg_secret_read(c->client_key_file, &key, why, sizeof(why)) == 0) {
            BIO *bio = BIO_new_mem_buf(key, -1);
            EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;

            if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
                params_source_err(file, line, name, "client_key_file %s is not an unencrypted PEM "
                                  "RSA key", c->client_key_file);
                errors++;
            }
            EVP_PKEY_free(pk);
            BIO_free(bio);
        }
        xfree_secret(key);
    }
    if (*c->client_cert_file) {
        FILE *fp = fopen(c->client_cert_file, "r");
        X509 *x = fp ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;

        if (fp == NULL) {
            params_source_err(file, line, name, "client_cert_file %s: %s", c->client_cert_file,
                              strerror(errno));
            errors++;
        } else if (x == NULL) {
            params_source_err(file, line, name, "client_cert_file %s is not a PEM certificate",
                              c->client_cert_file);
            errors++;
        }
        X509_free(x);
        if (fp)
            fclose(fp);
    }
    if (*c->ca_file && access(c->ca_file, R_OK) < 0) {
        params_source_err(file, line, name, "ca_file %s: %s", c->ca_file, strerror(errno));
        errors++;
    }
    if ((origin = source_graph_http_origin(c->login_url)) == NULL) {
        params_source_err(file, line, name, "login_url \"%s\" is not an https:// URL", c->login_url);
        errors++;
    }
    free(origin);
    if ((origin = source_graph_http_origin(c->graph_url)) == NULL) {
        params_source_err(file, line, name, "graph_url \"%s\" is not an https:// URL", c->graph_url);
        errors++;
    }
    free(origin);

    return errors;
}


/* ------------------------------------------------------------ mapping */

/* source_graph_addresses - mail and the SMTP proxyAddresses of an object */
static void source_graph_addresses(SOURCE_GRAPH *sg, json_t *item)
{
    SOURCE_OBJ *o = &sg->obj;
    const char *mail = json_string_value(json_object_get(item, "mail"));
    json_t *proxies = json_object_get(item, "proxyAddresses");
    json_t *v;
    size_t i;

    if (mail && *mail)
        (void) source_obj_address(o, sg->sink, "mail", mail, strlen(mail));
    if (!json_is_array(proxies))
        return;
    json_array_foreach(proxies, i, v) {
        const char *s = json_string_value(v);
        const char *a;
        size_t alen;

        /* Only SMTP proxy addresses are mail addresses. */
        if (s && source_ldap_ad_proxy(s, strlen(s), &a, &alen))
            (void) source_obj_address(o, sg->sink, "proxyAddresses", a, alen);
    }
}

/* source_graph_start - a new object of the id in item; 0, or -1 for an item without a usable id */
static int source_graph_start(SOURCE_GRAPH *sg, json_t *item, const char **idp)
{
    const char *id = json_string_value(json_object_get(item, "id"));

    source_obj_reset(&sg->obj);
    if (id == NULL || !source_graph_id_ok(id)) {
        source_skip_warn(sg->sink, "source %s: skipping an object without a usable id (\"%.80s\")",
                         sg->conf->name, id ? id : "");
        return -1;
    }
    source_obj_set_dn(&sg->obj, id, strlen(id));
    source_obj_set_guid(&sg->obj, id, strlen(id));
    *idp = id;
    return 0;
}

/* source_graph_done - hand a mapped object over (put), or in a delta pull delete one that is none */
static int source_graph_done(SOURCE_GRAPH *sg, int recipient, char *err, size_t errlen)
{
    SOURCE_OBJ *o = &sg->obj;

    if (recipient) {
        if (source_obj_put(o, sg->sink) < 0) {
            snprintf(err, errlen, "%s: not stored", o->guid);
            return -1;
        }
        sg->put++;
        return 0;
    }
    if (sg->delta) {
        if (sg->sink->del(sg->sink, o->guid) < 0) {
            snprintf(err, errlen, "%s: not stored", o->guid);
            return -1;
        }
        sg->gone++;
    }
    return 0;
}

/* source_graph_user - one user object to a recipient, or left out */
static int source_graph_user(SOURCE_GRAPH *sg, json_t *u, char *err, size_t errlen)
{
    SOURCE_OBJ *o = &sg->obj;
    json_t *enabled = json_object_get(u, "accountEnabled");
    json_t *lic = json_object_get(u, "assignedLicenses");
    const char *type = json_string_value(json_object_get(u, "userType"));
    const char *s;
    const char *id;

    if (source_graph_start(sg, u, &id) < 0)
        return 0;
    sg->users++;
    o->kind = type && strcasecmp(type, "Guest") == 0 ? STORE_KIND_CONTACT : STORE_KIND_USER;
    if (json_is_false(enabled)) {
        if (sg->conf->shared_unlicensed && json_is_array(lic) && json_array_size(lic) == 0
            && strcmp(o->kind, STORE_KIND_USER) == 0) {
            o->kind = STORE_KIND_SHARED;
        } else {
            log_debug("source %s: user %s: account disabled, left out", sg->conf->name, id);
            sg->disabled++;
            return source_graph_done(sg, 0, err, errlen);
        }
    }
    source_graph_addresses(sg, u);
    if (strcmp(o->kind, STORE_KIND_CONTACT) != 0) {
        if ((s = json_string_value(json_object_get(u, "userPrincipalName"))) != NULL)
            source_obj_login(o, s, strlen(s));
        if ((s = json_string_value(json_object_get(u, "onPremisesSamAccountName"))) != NULL)
            source_obj_login(o, s, strlen(s));
    }
    if (o->addresses.n == 0)
        log_debug("source %s: user %s: no SMTP address, left out", sg->conf->name, id);
    return source_graph_done(sg, o->addresses.n > 0, err, errlen);
}

/* source_graph_member - one member of a group: its id */
static int source_graph_member(SOURCE_GRAPH *sg, json_t *m, void *ctx, char *err, size_t errlen)
{
    const char *id = json_string_value(json_object_get(m, "id"));

    (void) ctx;
    (void) err;
    (void) errlen;
    if (id && source_graph_id_ok(id)) {
        char *lower = xstrdup(id);

        for (char *p = lower; *p; p++)
            *p = (char) tolower((unsigned char) *p);
        source_obj_member(&sg->obj, lower, strlen(lower));
        free(lower);
        sg->members++;
    }
    return 0;
}

/*
 * source_graph_group - one group object to a recipient with its members,
 * or left out. The member list is read whole (paged): a group with half
 * its members would drop the rest from its restrictions.
 */
static int source_graph_group(SOURCE_GRAPH *sg, json_t *g, char *err, size_t errlen)
{
    SOURCE_OBJ *o = &sg->obj;
    const char *id;
    char *url;
    int rc;

    if (source_graph_start(sg, g, &id) < 0)
        return 0;
    sg->groups++;
    o->kind = STORE_KIND_GROUP;
    if (!json_is_true(json_object_get(g, "mailEnabled"))) {
        log_debug("source %s: group %s: not mail-enabled, left out", sg->conf->name, id);
        return source_graph_done(sg, 0, err, errlen);
    }
    source_graph_addresses(sg, g);
    if (o->addresses.n == 0) {
        log_debug("source %s: group %s: no SMTP address, left out", sg->conf->name, id);
        return source_graph_done(sg, 0, err, errlen);
    }
    url = xasprintf("%s/groups/%s/members?$select=id&$top=%d", sg->api, o->guid, SOURCE_GRAPH_TOP_MAX);
    rc = source_graph_http_pages(sg, url, source_graph_member, NULL, NULL, err, errlen);
    free(url);
    if (rc == GRAPH_FORBIDDEN) {
        /*
         * A group with hidden membership, and no Member.Read.Hidden: its
         * addresses are what matter (Graph marks no group internal-only,
         * the one rule members serve), so it is stored without members.
         */
        log_warn("source %s: group %s (%s): its members may not be read (%s; a group with hidden "
                 "membership needs the Member.Read.Hidden permission): stored without members",
                 sg->conf->name, o->guid, o->addresses.v[0], err);
        err[0] = 0;
        source_obj_members_clear(o);
        return source_graph_done(sg, 1, err, errlen);
    }
    if (rc != GRAPH_OK) {
        /*
         * A 404 included: Graph is eventually consistent, and a replica
         * may not hold the group yet. Leaving it out (or, in a delta,
         * deleting it) would refuse its address; the pull fails and is
         * tried again (a deleted group is then gone from the listing).
         */
        if (rc == GRAPH_GONE || rc == GRAPH_NOTFOUND)
            snprintf(err, errlen, "group %s: its members could not be read (HTTP %s)", o->guid,
                     rc == GRAPH_GONE ? "410" : "404");
        return -1;
    }
    return source_graph_done(sg, 1, err, errlen);
}

/* source_graph_contact - one organisational contact to a recipient, or left out */
static int source_graph_contact(SOURCE_GRAPH *sg, json_t *c, char *err, size_t errlen)
{
    SOURCE_OBJ *o = &sg->obj;
    const char *id;

    if (source_graph_start(sg, c, &id) < 0)
        return 0;
    sg->contacts++;
    o->kind = STORE_KIND_CONTACT;
    source_graph_addresses(sg, c);
    if (o->addresses.n == 0)
        log_debug("source %s: contact %s: no SMTP address, left out", sg->conf->name, id);
    return source_graph_done(sg, o->addresses.n > 0, err, errlen);
}

/* source_graph_contact_cb - a page's contact (full pull) */
static int source_graph_contact_cb(SOURCE_GRAPH *sg, json_t *item, void *ctx, char *err, size_t errlen)
{
    (void) ctx;
    return source_graph_contact(sg, item, err, errlen);
}

/* source_graph_user_cb - a page's user (full pull) */
static int source_graph_user_cb(SOURCE_GRAPH *sg, json_t *item, void *ctx, char *err, size_t errlen)
{
    (void) ctx;
    return source_graph_user(sg, item, err, errlen);
}

/* source_graph_group_cb - a page's group (full pull) */
static int source_graph_group_cb(SOURCE_GRAPH *sg, json_t *item, void *ctx, char *err, size_t errlen)
{
    (void) ctx;
    return source_graph_group(sg, item, err, errlen);
}

/* ------------------------------------------------------------ delta */

/* What a delta pull of one collection ("users", "groups" or "contacts") needs. */
typedef struct source_graph_delta {
    const char *what;               /* users | groups | contacts */
    const char *select;             /* of one object read again */
    const char *delta_select;       /* of the delta query */
    const char *const *needed;      /* properties the mapping cannot do without */
} SOURCE_GRAPH_DELTA;

/*
 * Every property source_graph_user reads: an entry without one of them is
 * read again whole. Graph sends "at least" what changed, so a missing
 * property says nothing of its value; taken as absent, a missing
 * assignedLicenses would drop a shared mailbox whose account was just
 * disabled, and a missing userPrincipalName the user's logins. The cost is
 * one GET per changed object that lacks one (a property never set, such
 * as onPremisesSamAccountName of a cloud-only user, may never come).
 */
static const char *const source_graph_user_needed[] = {
    "accountEnabled", "proxyAddresses", "mail", "assignedLicenses", "userType", "userPrincipalName",
    "onPremisesSamAccountName", NULL,
};
/* Every property source_graph_group reads (its members are always read whole). */
static const char *const source_graph_group_needed[] = {"mailEnabled", "proxyAddresses", "mail", NULL};

static const SOURCE_GRAPH_DELTA source_graph_users = {
    "users", SOURCE_GRAPH_USER_SELECT, SOURCE_GRAPH_USER_SELECT, source_graph_user_needed,
};

/* A group's membership changes come through its delta only with members selected. */
static const SOURCE_GRAPH_DELTA source_graph_groups = {
    "groups", SOURCE_GRAPH_GROUP_SELECT, SOURCE_GRAPH_GROUP_SELECT ",members", source_graph_group_needed,
};

static const char *const source_graph_contact_needed[] = {"proxyAddresses", "mail", NULL};

static const SOURCE_GRAPH_DELTA source_graph_contacts = {
    "contacts", SOURCE_GRAPH_CONTACT_SELECT, SOURCE_GRAPH_CONTACT_SELECT, source_graph_contact_needed,
};

/* source_graph_delete - an object gone from the directory, deleted by its id */
static int source_graph_delete(SOURCE_GRAPH *sg, const char *id, char *err, size_t errlen)
{
    char *lower = xstrdup(id);
    int rc;

    for (char *p = lower; *p; p++)
        *p = (char) tolower((unsigned char) *p);
    rc = sg->sink->del(sg->sink, lower);
    free(lower);
    if (rc < 0) {
        snprintf(err, errlen, "%s: not stored", id);
        return -1;
    }
    sg->gone++;
    return 0;
}

/* source_graph_unread_drop - id no longer waits for an answer (its @removed, or a whole copy, came) */
static void source_graph_unread_drop(SOURCE_GRAPH *sg, const char *id)
{
    for (size_t i = 0; i < sg->nunread; i++)
        if (strcmp(sg->unread[i], id) == 0) {
            free(sg->unread[i]);
            sg->unread[i] = sg->unread[--sg->nunread];
            return;
        }
}

/* source_graph_delta_cb - one entry of a delta page: removed, changed, or to be read again */
static int source_graph_delta_cb(SOURCE_GRAPH *sg, json_t *item, void *ctx, char *err, size_t errlen)
{
    const SOURCE_GRAPH_DELTA *d = ctx;
    const char *id = json_string_value(json_object_get(item, "id"));
    json_t *whole = NULL;
    int rc;

    if (source_stopping()) {
        snprintf(err, errlen, "stopping on a signal");
        return -1;
    }
    if (id == NULL || !source_graph_id_ok(id)) {
        source_skip_warn(sg->sink, "source %s: skipping a %s delta entry without a usable id",
                         sg->conf->name, d->what);
        return 0;
    }
    if (json_object_get(item, "@removed") != NULL) {
        /* Removed later in the round than a re-read that found nothing: that answers it. */
        source_graph_unread_drop(sg, id);
        return source_graph_delete(sg, id, err, errlen);
    }
    for (const char *const *p = d->needed; *p; p++) {
        if (json_object_get(item, *p) == NULL) {
            /* Only what changed came: read the whole object. */
            char *url = xasprintf("%s/%s/%s?$select=%s", sg->api, d->what, id, d->select);

            rc = source_graph_http_get(sg, url, &whole, err, errlen);
            free(url);
            /*
             * 404: a replica that does not hold it yet (Graph is eventually
             * consistent), or deleted since the delta was made. Only the
             * delta's @removed deletes: the object is neither put nor
             * deleted, and unless a later page of this round removes it
             * (an object may come more than once in a round), the pull
             * fails at its end and keeps its link, and the next one reads
             * it, or gets the @removed.
             */
            if (rc == GRAPH_GONE || rc == GRAPH_NOTFOUND) {
                log_debug("source %s: %s/%s: HTTP %s on reading it again; waiting for its @removed",
                          sg->conf->name, d->what, id, rc == GRAPH_GONE ? "410" : "404");
                sg->unread = xrealloc(sg->unread, (sg->nunread + 1) * sizeof(*sg->unread));
                sg->unread[sg->nunread++] = xstrdup(id);
                return 0;
            }
            if (rc != GRAPH_OK)
                return -1;
            item = whole;
            break;
        }
    }
    /* Whole now (as it came, or read again): an earlier re-read of it that found nothing is answered. */
    source_graph_unread_drop(sg, id);
    rc = d == &source_graph_users ? source_graph_user(sg, item, err, errlen)
        : d == &source_graph_groups ? source_graph_group(sg, item, err, errlen)
        : source_graph_contact(sg, item, err, errlen);
    json_decref(whole);
    return rc;
}

/* source_graph_cookie - the delta links as the stored cookie (contacts: NULL when not readable) */
static char *source_graph_cookie(const char *users, const char *groups, const char *contacts)
{
    json_t *j = json_pack("{s:s, s:s}", "users", users, "groups", groups);
    char *s;

    if (contacts != NULL)
        json_object_set_new(j, "contacts", json_string(contacts));
    s = json_dumps(j, JSON_COMPACT);
    char *out;

    json_decref(j);
    if (s == NULL)
        log_fatal("out of memory");
    out = xstrdup(s);
    free(s);
    return out;
}

/* ------------------------------------------------------------ the backend */

/* source_graph_close - NULL is fine; the token stays cached for the next pull */
static void source_graph_close(SOURCE *src)
{
    SOURCE_GRAPH *sg = source_graph_of(src);

    if (sg == NULL)
        return;
    source_graph_http_close(sg);
    source_obj_free(&sg->obj);
    free(sg->login);
    free(sg->graph);
    free(sg->api);
    free(sg->token_url);
    free(sg->origin);
    free(sg);
}

/* source_graph_open - set up libcurl; the first request fetches a token */
static SOURCE *source_graph_open(const SOURCE_CONF *conf, char *err, size_t errlen)
{
    SOURCE_GRAPH *sg = xcalloc(1, sizeof(*sg));

    sg->conf = conf;
    source_obj_init(&sg->obj, conf->name);
    sg->login = source_graph_trim(conf->login_url);
    sg->graph = source_graph_trim(conf->graph_url);
    sg->api = xasprintf("%s/v1.0", sg->graph);
    sg->token_url = xasprintf("%s/%s/oauth2/v2.0/token", sg->login, conf->tenant);
    if ((sg->origin = source_graph_http_origin(sg->graph)) == NULL) {
        snprintf(err, errlen, "graph_url \"%s\" is not an https:// URL", conf->graph_url);
        source_graph_close((SOURCE *) (void *) sg);
        return NULL;
    }
    if (source_graph_http_open(sg, err, errlen) < 0) {
        source_graph_close((SOURCE *) (void *) sg);
        return NULL;
    }
    return (SOURCE *) (void *) sg;
}

/* source_graph_none_cb - an object where none may come */
static int source_graph_none_cb(SOURCE_GRAPH *sg, json_t *item, void *ctx, char *err, size_t errlen)
{
    (void) sg;
    (void) item;
    (void) ctx;
    snprintf(err, errlen, "$deltatoken=latest returned objects: the delta links are not usable");
    return -1;
}

/*
 * source_graph_latest - the delta link of a collection as it is now
 * ($deltatoken=latest): 0, 1 for a 403 (err says it), or -1 with err
 */
static int source_graph_latest(SOURCE_GRAPH *sg, const SOURCE_GRAPH_DELTA *d, char **link,
                               char *err, size_t errlen)
{
    char *url = xasprintf("%s/%s/delta?$select=%s&$deltatoken=latest", sg->api, d->what, d->delta_select);
    int rc = source_graph_http_pages(sg, url, source_graph_none_cb, NULL, link, err, errlen);

    free(url);
    if (rc == GRAPH_GONE || rc == GRAPH_NOTFOUND)
        snprintf(err, errlen, "%s/delta: HTTP %s", d->what, rc == GRAPH_GONE ? "410" : "404");
    return rc == GRAPH_OK ? 0 : rc == GRAPH_FORBIDDEN ? 1 : -1;
}

/* source_graph_no_contacts - the application may not read contacts: said, and the pull goes on */
static void source_graph_no_contacts(SOURCE_GRAPH *sg, const char *err)
{
    log_warn("source %s: organisational contacts not pulled: %s (the application needs the "
             "OrgContact.Read.All permission, or Directory.Read.All)", sg->conf->name, err);
}

/* source_graph_full - every user and group, and the delta links to go on from */
static int source_graph_full(SOURCE *src, SYNC_SINK *sink, char **cookie, char **invocation_id,
                             char *err, size_t errlen)
{
    SOURCE_GRAPH *sg = source_graph_of(src);
    char *users_link = NULL, *groups_link = NULL, *contacts_link = NULL, *url;
    int top = sg->conf->page_size > SOURCE_GRAPH_TOP_MAX ? SOURCE_GRAPH_TOP_MAX : sg->conf->page_size;
    int rc = SOURCE_ERR, r;
    long long t0 = source_graph_http_now();

    *cookie = NULL;
    *invocation_id = NULL;
    sg->sink = sink;
    sg->delta = 0;
    sg->users = sg->groups = sg->contacts = sg->members = sg->disabled = sg->put = sg->gone = sg->requests = 0;
    /* The links first: what changes during the pull is seen again, not missed. */
    if (source_graph_latest(sg, &source_graph_users, &users_link, err, errlen) != 0
        || source_graph_latest(sg, &source_graph_groups, &groups_link, err, errlen) != 0
        || (r = source_graph_latest(sg, &source_graph_contacts, &contacts_link, err, errlen)) < 0)
        goto done;
    if (r == 1)
        source_graph_no_contacts(sg, err);
    url = xasprintf("%s/users?$select=%s&$top=%d", sg->api, SOURCE_GRAPH_USER_SELECT, top);
    rc = source_graph_http_pages(sg, url, source_graph_user_cb, NULL, NULL, err, errlen);
    free(url);
    if (rc == GRAPH_OK) {
        url = xasprintf("%s/groups?$select=%s&$top=%d", sg->api, SOURCE_GRAPH_GROUP_SELECT, top);
        rc = source_graph_http_pages(sg, url, source_graph_group_cb, NULL, NULL, err, errlen);
        free(url);
    }
    if (rc == GRAPH_OK && contacts_link != NULL) {
        url = xasprintf("%s/contacts?$select=%s&$top=%d", sg->api, SOURCE_GRAPH_CONTACT_SELECT, top);
        rc = source_graph_http_pages(sg, url, source_graph_contact_cb, NULL, NULL, err, errlen);
        free(url);
        if (rc == GRAPH_FORBIDDEN && sg->contacts == 0) {
            source_graph_no_contacts(sg, err);
            free(contacts_link);
            contacts_link = NULL;
            rc = GRAPH_OK;
        }
    }
    if (rc != GRAPH_OK) {
        if (rc == GRAPH_GONE || rc == GRAPH_NOTFOUND)
            snprintf(err, errlen, "/users, /groups or /contacts: HTTP %s", rc == GRAPH_GONE ? "410" : "404");
        rc = SOURCE_ERR;
        goto done;
    }
    *cookie = source_graph_cookie(users_link, groups_link, contacts_link);
    rc = SOURCE_OK;
    log_debug("source %s: full pull: %lld users (%lld disabled left out), %lld groups, %lld members, "
              "%lld contacts, %lld objects put, %lld requests in %lld ms", sg->conf->name, sg->users,
              sg->disabled, sg->groups, sg->members, sg->contacts, sg->put, sg->requests,
              source_graph_http_now() - t0);

  done:
    free(users_link);
    free(groups_link);
    free(contacts_link);
    sg->sink = NULL;
    return rc;
}

/* source_graph_incremental - the changes since the stored delta links */
static int source_graph_incremental(SOURCE *src, const char *cookie, const char *invocation_id,
                                    SYNC_SINK *sink, char **new_cookie, char **new_invocation_id,
                                    char *err, size_t errlen)
{
    SOURCE_GRAPH *sg = source_graph_of(src);
    json_t *j = json_loads(cookie, 0, NULL);
    const char *links[3];
    char *next[3] = {NULL, NULL, NULL};
    const SOURCE_GRAPH_DELTA *ds[3] = {&source_graph_users, &source_graph_groups, &source_graph_contacts};
    int rc = SOURCE_ERR;

    (void) invocation_id;
    *new_cookie = NULL;
    *new_invocation_id = NULL;
    links[0] = json_string_value(json_object_get(j, "users"));
    links[1] = json_string_value(json_object_get(j, "groups"));
    /* No contacts link: the application may not read them (or the cookie is older than contacts). */
    links[2] = json_string_value(json_object_get(j, "contacts"));
    if (links[0] == NULL || links[1] == NULL) {
        snprintf(err, errlen, "the stored state is not a pair of Graph delta links");
        json_decref(j);
        return SOURCE_FULL;
    }
    sg->sink = sink;
    sg->delta = 1;
    sg->users = sg->groups = sg->contacts = sg->members = sg->disabled = sg->put = sg->gone = sg->requests = 0;
    for (int i = 0; i < 3; i++) {
        int r;

        if (links[i] == NULL)
            continue;
        if (strncasecmp(links[i], sg->origin, strlen(sg->origin)) != 0) {
            snprintf(err, errlen, "the stored delta link is not of graph_url %s", sg->origin);
            rc = SOURCE_FULL;
            goto done;
        }
        r = source_graph_http_pages(sg, links[i], source_graph_delta_cb, (void *) ds[i], &next[i], err, errlen);
        if (r == GRAPH_GONE || r == GRAPH_NOTFOUND) {
            snprintf(err, errlen, "the %s delta link has expired (HTTP %s)", ds[i]->what,
                     r == GRAPH_GONE ? "410 Gone" : "404");
            rc = SOURCE_FULL;
            goto done;
        }
        if (r == GRAPH_FORBIDDEN && i == 2 && sg->contacts == 0) {
            /*
             * Contacts no longer readable: the users' and groups' changes
             * go on, the stored contacts stay, and their link is kept for
             * when the permission is back. (A full pull without it drops
             * them, within the shrink guard.)
             */
            source_graph_no_contacts(sg, err);
            err[0] = 0;
            free(next[2]);
            next[2] = xstrdup(links[2]);
            continue;
        }
        if (r != GRAPH_OK)
            goto done;
    }
    if (sg->nunread > 0) {
        snprintf(err, errlen, "object %s: HTTP 404 on reading it again whole, and not removed by the delta "
                 "(%zu such; tried at the next pull)", sg->unread[0], sg->nunread);
        goto done;
    }
    *new_cookie = source_graph_cookie(next[0], next[1], next[2]);
    rc = SOURCE_OK;
    log_debug("source %s: delta: %lld users, %lld groups, %lld contacts seen, %lld objects put, "
              "%lld deleted, %lld requests", sg->conf->name, sg->users, sg->groups, sg->contacts, sg->put,
              sg->gone, sg->requests);

  done:
    free(next[0]);
    free(next[1]);
    free(next[2]);
    json_decref(j);
    for (size_t i = 0; i < sg->nunread; i++)
        free(sg->unread[i]);
    free(sg->unread);
    sg->unread = NULL;
    sg->nunread = 0;
    sg->sink = NULL;
    return rc;
}

const SOURCE_OPS source_graph_ops = {
    .type = "graph",
    .open = source_graph_open,
    .full = source_graph_full,
    .incremental = source_graph_incremental,
    .wait = NULL,                       /* no push from Graph: mode = poll follows the delta links */
    .close = source_graph_close,
    .validate = source_graph_validate,
    .can_persist = NULL,
    .reload = NULL,
};
