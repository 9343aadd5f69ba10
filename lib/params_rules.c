/*
 * params_rules.c - the [rules] parameter table (see params_rules.h)
 *
 * Defaults are those rcptgate-smtpd had in [smtpd]: every rule enforcing,
 * loopback trusted, the store's access table consulted.
 */
#include "config.h"

#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "params_rules.h"
#include "rules.h"

char *var_rules_hostname;
char *var_rules_mynetworks;
int var_rules_warn_if_reject;
char *var_rules_invalid_helo;
char *var_rules_non_fqdn_helo;
char *var_rules_forged_helo;
char *var_rules_non_fqdn_sender;
char *var_rules_forged_sender;
char *var_rules_login_mismatch;
char *var_rules_non_fqdn_rcpt;
char *var_rules_unknown_rcpt;
char *var_rules_internal_only;
char *var_rules_client_access;
char *var_rules_helo_access;
char *var_rules_sender_access;
char *var_rules_rcpt_access;
int var_rules_store_access;

#define MODES "enforce|warn|off"

/*
 * params_rules_check_hostname - a host name (letters, digits, '-', '.'),
 * or empty for the system's FQDN. The banner and EHLO carry it as it is:
 * "mx1.example.com   # banner" would go out whole.
 */
static int params_rules_check_hostname(const char *value, char *err, size_t errlen)
{
    size_t n = strlen(value);

    if (n == 0)
        return 0;
    if (n > 253 || value[0] == '.' || value[0] == '-' || strstr(value, "..") != NULL
        || strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != n) {
        snprintf(err, errlen, "not a host name: \"%s\"%s", value,
                 strpbrk(value, "#;") ? " (a comment after a value is part of it: write it on a line of its own)" : "");
        return -1;
    }
    return 0;
}

const CFG_PARAM params_rules[] = {
    /* not a rule, but every rule front end needs it: smtpd's banner, the forged HELO rule */
    {"hostname", CFG_STR, "", &var_rules_hostname, 0, 0, NULL, params_rules_check_hostname},
    {"mynetworks", CFG_STR, "127.0.0.0/8 [::1]/128", &var_rules_mynetworks, 0, 0, NULL,
     rules_check_mynetworks},
    {"warn_if_reject", CFG_BOOL, "no", &var_rules_warn_if_reject, 0, 0, NULL, NULL},
    {"reject_invalid_helo", CFG_ENUM, "enforce", &var_rules_invalid_helo, 0, 0, MODES, NULL},
    {"reject_non_fqdn_helo", CFG_ENUM, "enforce", &var_rules_non_fqdn_helo, 0, 0, MODES, NULL},
    {"reject_forged_helo", CFG_ENUM, "enforce", &var_rules_forged_helo, 0, 0, MODES, NULL},
    {"reject_non_fqdn_sender", CFG_ENUM, "enforce", &var_rules_non_fqdn_sender, 0, 0, MODES, NULL},
    {"reject_forged_sender", CFG_ENUM, "enforce", &var_rules_forged_sender, 0, 0, MODES, NULL},
    {"reject_sender_login_mismatch", CFG_ENUM, "enforce", &var_rules_login_mismatch, 0, 0, MODES, NULL},
    {"reject_non_fqdn_recipient", CFG_ENUM, "enforce", &var_rules_non_fqdn_rcpt, 0, 0, MODES, NULL},
    {"reject_unknown_recipient", CFG_ENUM, "enforce", &var_rules_unknown_rcpt, 0, 0, MODES, NULL},
    {"reject_internal_only", CFG_ENUM, "enforce", &var_rules_internal_only, 0, 0, MODES, NULL},
    {"client_access", CFG_LIST, "", &var_rules_client_access, 0, 0, NULL, rules_check_client_access},
    {"helo_access", CFG_LIST, "", &var_rules_helo_access, 0, 0, NULL, rules_check_helo_access},
    {"sender_access", CFG_LIST, "", &var_rules_sender_access, 0, 0, NULL, rules_check_sender_access},
    {"recipient_access", CFG_LIST, "", &var_rules_rcpt_access, 0, 0, NULL, rules_check_recipient_access},
    {"store_access", CFG_BOOL, "yes", &var_rules_store_access, 0, 0, NULL, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

/* params_rules_table - the [rules] parameters */
const CFG_PARAM *params_rules_table(void)
{
    return params_rules;
}

/* The system's name as gethostname() gave it, and what it resolved to (params_rules_hostname). */
static char params_rules_short[256];
static char params_rules_fqdn[256];

/* params_rules_hostname - our own name (see params_rules.h) */
void params_rules_hostname(char *buf, size_t size)
{
    char host[256];
    struct addrinfo hints, *res = NULL;

    if (var_rules_hostname != NULL && *var_rules_hostname) {
        snprintf(buf, size, "%s", var_rules_hostname);
        return;
    }
    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(buf, size, "localhost");
        return;
    }
    host[sizeof(host) - 1] = 0;
    /*
     * The resolver may block for its whole timeout when DNS is down, and a
     * daemon asks again at each reload, inside its event loop: the answer
     * for the same short name is kept for the life of the process.
     */
    if (*params_rules_short && strcmp(host, params_rules_short) == 0) {
        snprintf(buf, size, "%s", params_rules_fqdn);
        return;
    }
    snprintf(params_rules_short, sizeof(params_rules_short), "%s", host);
    /* A short name is what many systems keep; the FQDN is what clients and Postfix's myhostname use. */
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = AI_CANONNAME;
    if (strchr(host, '.') == NULL && getaddrinfo(host, NULL, &hints, &res) == 0) {
        if (res->ai_canonname != NULL && strchr(res->ai_canonname, '.') != NULL)
            snprintf(host, sizeof(host), "%s", res->ai_canonname);
        freeaddrinfo(res);
    }
    snprintf(params_rules_fqdn, sizeof(params_rules_fqdn), "%s", host);
    snprintf(buf, size, "%s", host);
}
