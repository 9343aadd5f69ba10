/*
 * params_source.h - the [source NAME] sections of rcptgate.conf
 *
 * The family's table lives here, in lib/, with the other parameter
 * tables, so that the admin command's -n checks every [source NAME]
 * (names, types, choices, bounds, required keys and what needs no
 * directory library) without linking syncd. rcptgate-syncd adds its
 * own validation of what needs the backends (LDAP URIs and DNs, Graph
 * settings, secret files) in syncd/source.c.
 */
#ifndef RG_PARAMS_SOURCE_H
#define RG_PARAMS_SOURCE_H

#include "cfg.h"
#include "log.h"

/* One [source NAME] section, filled by cfg from params_source[]. */
typedef struct source_conf {
    char *name;                 /* must stay first (cfg families) */
    char *type;                 /* ldap | file | graph */
    char *flavour;              /* ad | generic */
    char *mode;                 /* once | poll | persistent */
    char *uri;                  /* LDAP URIs, space-separated, tried in order */
    char *base;                 /* search bases, one per line (key repeated) */
    char *filter;               /* "" = the flavour's default */
    char *bind_dn;
    char *bind_password_file;
    char *sasl_mech;            /* "" simple bind; GSSAPI, EXTERNAL */
    char *tls;                  /* none | starttls | ldaps */
    char *ca_file;
    char *cert_file;
    char *key_file;
    char *address_attributes;   /* generic: space-separated, default "mail mailAlternateAddress" */
    char *login_attributes;     /* generic: default "uid"; ad: sAMAccountName userPrincipalName */
    char *shared_types;         /* ad: msExchRecipientTypeDetails values kept when disabled */
    char *path;                 /* file: the map file */
    int page_size;
    int range_step;             /* ad: member;range step */
    int timeout_ms;             /* every LDAP operation */
    int connect_timeout_ms;
    char *incremental;          /* ad: auto | dirsync | usn */
    char *dns_domain;           /* ldap: DCs from _ldap._tcp.dc._msdcs.DOMAIN SRV records */
    char *dns_servers;          /* ldap: resolvers for dns_domain (ip[:port] ...), "" the system's */
    /* graph (Microsoft Entra ID over Microsoft Graph; source_graph.c) */
    char *tenant;               /* directory (tenant) id or domain */
    char *client_id;            /* the application (client) id */
    char *client_secret_file;   /* a client secret, or: */
    char *client_cert_file;     /* a certificate (PEM) and its key: signed JWT assertion */
    char *client_key_file;
    char *login_url;            /* https://login.microsoftonline.com (national clouds differ) */
    char *graph_url;            /* https://graph.microsoft.com */
    int shared_unlicensed;      /* a disabled user without licences is a shared mailbox */
    /* Not parameters: filled when a good configuration is installed. */
    char *bind_password;        /* read from bind_password_file (xfree_secret) */
    char *client_secret;        /* graph: read from client_secret_file (xfree_secret) */
    char *client_key;           /* graph: the PEM of client_key_file (xfree_secret) */
} SOURCE_CONF;

/* The family's parameters (var = offsets into SOURCE_CONF), ended by a NULL name. */
extern const CFG_PARAM params_source[];

/*
 * params_source_validate - the checks of one [source NAME] that need no
 * backend: the name, and the settings of type = file. Each problem is
 * reported as file:line: [source NAME] ...; returns the count.
 */
int params_source_validate(const char *file, int line, const char *name, const SOURCE_CONF *conf);

/* params_source_ldap_scheme - does the URI start with ldap://, ldaps:// or ldapi://? */
int params_source_ldap_scheme(const char *uri);

/*
 * params_source_families - the family as the admin command checks it:
 * params_source_validate(), and the instances freed once checked.
 */
const CFG_FAMILY *params_source_families(void);

/*
 * params_source_err - one problem with a [source NAME] section, logged as
 * "file:line: [source NAME] text": the family's own checks here and the
 * backends' validate in syncd say it the same way.
 */
void RG_PRINTF(4, 5) params_source_err(const char *file, int line, const char *name, const char *fmt, ...);

#endif
