/*
 * params_source.c - the [source NAME] family's table (see params_source.h)
 *
 * Defaults are those of a plain LDAP poll: a page size every server
 * allows, timeouts that fail a pull (and retry it later) long before
 * Postfix would notice, and TLS whenever the server is not this machine.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "log.h"
#include "params_source.h"
#include "xalloc.h"

/* params_source_check_sasl - sasl_mech: empty (simple bind), GSSAPI or EXTERNAL */
static int params_source_check_sasl(const char *value, char *err, size_t errlen)
{
    if (*value == 0 || strcasecmp(value, "GSSAPI") == 0 || strcasecmp(value, "EXTERNAL") == 0)
        return 0;
    snprintf(err, errlen, "sasl_mech must be GSSAPI or EXTERNAL (empty for a simple bind), not \"%s\"", value);
    return -1;
}

#define S(field) CFG_OFFSET(SOURCE_CONF, field)

const CFG_PARAM params_source[] = {
    {"type", CFG_ENUM, NULL, S(type), 0, 0, "ldap|file|graph", NULL},
    {"flavour", CFG_ENUM, "generic", S(flavour), 0, 0, "generic|ad", NULL},
    {"mode", CFG_ENUM, "poll", S(mode), 0, 0, "once|poll|persistent", NULL},
    {"uri", CFG_STR, "", S(uri), 0, 0, NULL, NULL},
    {"base", CFG_LIST, "", S(base), 0, 0, NULL, NULL},
    {"filter", CFG_STR, "", S(filter), 0, 0, NULL, NULL},
    {"bind_dn", CFG_STR, "", S(bind_dn), 0, 0, NULL, NULL},
    {"bind_password_file", CFG_PATH, "", S(bind_password_file), 0, 0, NULL, NULL},
    {"sasl_mech", CFG_STR, "", S(sasl_mech), 0, 0, NULL, params_source_check_sasl},
    {"tls", CFG_ENUM, "auto", S(tls), 0, 0, "auto|none|starttls|ldaps", NULL},
    {"ca_file", CFG_PATH, "", S(ca_file), 0, 0, NULL, NULL},
    {"cert_file", CFG_PATH, "", S(cert_file), 0, 0, NULL, NULL},
    {"key_file", CFG_PATH, "", S(key_file), 0, 0, NULL, NULL},
    {"address_attributes", CFG_STR, "", S(address_attributes), 0, 0, NULL, NULL},
    {"login_attributes", CFG_STR, "", S(login_attributes), 0, 0, NULL, NULL},
    {"shared_types", CFG_STR, "", S(shared_types), 0, 0, NULL, NULL},
    {"path", CFG_PATH, "", S(path), 0, 0, NULL, NULL},
    {"page_size", CFG_INT, "500", S(page_size), 1, 1000, NULL, NULL},
    {"range_step", CFG_INT, "1500", S(range_step), 1, 100000, NULL, NULL},
    {"timeout", CFG_TIME, "30s", S(timeout_ms), 1000, 3600000, NULL, NULL},
    {"connect_timeout", CFG_TIME, "10s", S(connect_timeout_ms), 100, 600000, NULL, NULL},
    /* ldap: incremental pulls (source_ldap_dirsync.c) and DC discovery (source_ldap.c) */
    {"incremental", CFG_ENUM, "auto", S(incremental), 0, 0, "auto|dirsync|usn", NULL},
    {"dns_domain", CFG_STR, "", S(dns_domain), 0, 0, NULL, NULL},
    {"dns_servers", CFG_STR, "", S(dns_servers), 0, 0, NULL, NULL},
    /* graph: see source_graph.c */
    {"tenant", CFG_STR, "", S(tenant), 0, 0, NULL, NULL},
    {"client_id", CFG_STR, "", S(client_id), 0, 0, NULL, NULL},
    {"client_secret_file", CFG_PATH, "", S(client_secret_file), 0, 0, NULL, NULL},
    {"client_cert_file", CFG_PATH, "", S(client_cert_file), 0, 0, NULL, NULL},
    {"client_key_file", CFG_PATH, "", S(client_key_file), 0, 0, NULL, NULL},
    {"login_url", CFG_STR, "https://login.microsoftonline.com", S(login_url), 0, 0, NULL, NULL},
    {"graph_url", CFG_STR, "https://graph.microsoft.com", S(graph_url), 0, 0, NULL, NULL},
    {"shared_unlicensed", CFG_BOOL, "yes", S(shared_unlicensed), 0, 0, NULL, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

#undef S

/* params_source_err - one problem as file:line: [source NAME] text */
void params_source_err(const char *file, int line, const char *name, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_err("%s:%d: [source %s] %s", file, line, name, buf);
}

/* params_source_name_ok - a source name: letters, digits and "._-", as long as a [source NAME] line allows */
static int params_source_name_ok(const char *name)
{
    size_t n = strlen(name);

    return n > 0 && n <= 42
        && strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/*
 * params_source_graph - what a type = graph source needs and refuses,
 * short of reading its files (rcptgate-syncd -n does that too)
 */
/*
 * params_source_secret - a secret file: readable, closed to others, and
 * (unless empty_ok) not empty. The admin command's -n judges it as
 * rcptgate-syncd -n does (the file is read and wiped at once). 0 or 1 error.
 */
static int params_source_secret(const char *file, int line, const char *name, const char *key, const char *path,
                                int empty_ok)
{
    char why[512];
    char *secret = NULL;
    int errors = 0;

    if (!cfg_check_secrets)
        return 0;
    if (cfg_secret_read(path, &secret, why, sizeof(why)) < 0) {
        params_source_err(file, line, name, "%s: %s", key, why);
        errors++;
    } else if (*secret == 0 && !empty_ok) {
        params_source_err(file, line, name, "%s %s is empty", key, path);
        errors++;
    }
    xfree_secret(secret);
    return errors;
}

/* params_source_ldap_uris - each URI of uri is ldap://, ldaps:// or ldapi:// (syncd parses them further) */
static int params_source_ldap_uris(const char *file, int line, const char *name, const SOURCE_CONF *c)
{
    int errors = 0;

    for (const char *u = c->uri; *(u += strspn(u, " \t\n"));) {
        size_t len = strcspn(u, " \t\n");

        if (!params_source_ldap_scheme(u)) {
            params_source_err(file, line, name, "uri \"%.*s\" is not an LDAP URI: write ldap://HOST, "
                              "ldaps://HOST or ldapi://", (int) len, u);
            errors++;
        }
        u += len;
    }
    return errors;
}

/* params_source_ldap - the LDAP settings that need no directory library (syncd checks the rest) */
static int params_source_ldap(const char *file, int line, const char *name, const SOURCE_CONF *c)
{
    int errors = params_source_ldap_uris(file, line, name, c);

    if (*c->sasl_mech) {
        if (*c->bind_dn || *c->bind_password_file) {
            params_source_err(file, line, name, "sasl_mech = %s takes its identity from %s: "
                              "remove bind_dn and bind_password_file", c->sasl_mech,
                              strcasecmp(c->sasl_mech, "GSSAPI") == 0 ? "the Kerberos ticket"
                              : "the client certificate or the ldapi:// peer");
            errors++;
        }
    } else if (*c->bind_dn && *c->bind_password_file == 0) {
        params_source_err(file, line, name, "bind_dn needs bind_password_file (or use sasl_mech)");
        errors++;
    } else if (*c->bind_dn == 0 && *c->bind_password_file) {
        params_source_err(file, line, name, "bind_password_file needs bind_dn");
        errors++;
    }
    if (*c->bind_password_file)
        errors += params_source_secret(file, line, name, "bind_password_file", c->bind_password_file, 1);
    if ((*c->cert_file == 0) != (*c->key_file == 0)) {
        params_source_err(file, line, name, "cert_file and key_file go together");
        errors++;
    }
    return errors;
}

/* params_source_ldap_scheme - does the URI start with ldap://, ldaps:// or ldapi://? (params_source.h) */
int params_source_ldap_scheme(const char *uri)
{
    return strncasecmp(uri, "ldap://", 7) == 0 || strncasecmp(uri, "ldaps://", 8) == 0
        || strncasecmp(uri, "ldapi://", 8) == 0;
}

static int params_source_graph(const char *file, int line, const char *name, const SOURCE_CONF *c)
{
    int errors = 0;

    if (*c->tenant == 0 || strspn(c->tenant, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789.-") != strlen(c->tenant)) {
        params_source_err(file, line, name, "tenant (the directory id or its domain) is required "
                          "for type = graph, letters, digits, '.' and '-' only");
        errors++;
    }
    if (*c->client_id == 0) {
        params_source_err(file, line, name, "client_id is required for type = graph");
        errors++;
    }
    if ((*c->client_secret_file != 0) == (*c->client_cert_file != 0)) {
        params_source_err(file, line, name, "give either client_secret_file or client_cert_file "
                          "(with client_key_file)");
        errors++;
    }
    if ((*c->client_cert_file == 0) != (*c->client_key_file == 0)) {
        params_source_err(file, line, name, "client_cert_file and client_key_file go together");
        errors++;
    }
    if (*c->client_secret_file)
        errors += params_source_secret(file, line, name, "client_secret_file", c->client_secret_file, 0);
    /* A private key is a secret: the same rules as a password file (syncd reads the PEM). */
    if (*c->client_key_file)
        errors += params_source_secret(file, line, name, "client_key_file", c->client_key_file, 1);
    if (*c->uri || *c->base || *c->bind_dn || *c->bind_password_file || *c->sasl_mech || *c->filter
        || *c->cert_file || *c->key_file || *c->shared_types || *c->path
        || *c->address_attributes || *c->login_attributes || *c->dns_domain || *c->dns_servers) {
        params_source_err(file, line, name, "type = graph does not read the LDAP or file settings "
                          "(uri, base, bind_dn, cert_file, path ...): remove them");
        errors++;
    }
    return errors;
}

/*
 * params_source_validate - the name, and each type's required and
 * refused settings: what needs no directory library, so that rcptgate -n
 * and rcptgate-syncd -n agree (syncd then checks URIs, DNs and files)
 */
int params_source_validate(const char *file, int line, const char *name, const SOURCE_CONF *c)
{
    int errors = 0;

    if (!params_source_name_ok(name)) {
        params_source_err(file, line, name, "the name may hold only letters, digits, '.', '_' and '-', at most 42");
        errors++;
    } else if (strcmp(name, "static") == 0) {
        params_source_err(file, line, name, "\"static\" is the source of rcptgate's static entries; "
                          "choose another name");
        errors++;
    }
    if (c->type != NULL && strcmp(c->type, "graph") == 0)
        return errors + params_source_graph(file, line, name, c);
    if (c->type != NULL && strcmp(c->type, "ldap") == 0) {
        if (*c->uri == 0 && *c->dns_domain == 0) {
            params_source_err(file, line, name, "uri (or dns_domain) is required for type = ldap");
            errors++;
        }
        if (*c->base == 0) {
            params_source_err(file, line, name, "base is required for type = ldap (it may be repeated)");
            errors++;
        }
        if (*c->tenant || *c->client_id || *c->client_secret_file || *c->client_cert_file
            || *c->client_key_file || *c->path) {
            params_source_err(file, line, name, "type = ldap does not read the Graph or file settings "
                              "(tenant, client_id, client_secret_file, path ...): remove them");
            errors++;
        }
        return errors + params_source_ldap(file, line, name, c);
    }
    if (c->type == NULL || strcmp(c->type, "file") != 0)
        return errors;
    if (*c->path == 0) {
        params_source_err(file, line, name, "path is required for type = file");
        errors++;
    }
    if (*c->uri || *c->base || *c->bind_dn || *c->bind_password_file || *c->sasl_mech
        || *c->filter || *c->ca_file || *c->cert_file || *c->key_file || *c->shared_types
        || *c->address_attributes || *c->login_attributes || *c->tenant || *c->client_id
        || *c->client_secret_file || *c->client_cert_file || *c->client_key_file) {
        params_source_err(file, line, name, "type = file reads only path (and mode); "
                          "remove the LDAP and Graph settings");
        errors++;
    }
    return errors;
}

/* params_source_check - the admin command's validate callback */
static int params_source_check(const char *file, int line, const char *name, void *instance)
{
    return params_source_validate(file, line, name, instance);
}

/* params_source_drop - the admin command keeps no instance: checked, then freed */
static void params_source_drop(void **instances, int count);

static const CFG_FAMILY params_source_family[] = {
    {"source", params_source, sizeof(SOURCE_CONF), params_source_check, params_source_drop, "syncd", "user"},
    {NULL, NULL, 0, NULL, NULL, NULL, NULL},
};

static void params_source_drop(void **instances, int count)
{
    for (int i = 0; i < count; i++)
        cfg_family_free(&params_source_family[0], instances[i]);
    free(instances);
}

/* params_source_families - the family for the admin command (static array) */
const CFG_FAMILY *params_source_families(void)
{
    return params_source_family;
}
