/*
 * params_rules.h - the [rules] section of rcptgate.conf, as variables
 *
 * The settings of the per-transaction rules (rules.h), read by every
 * front end that applies them: rcptgate-smtpd, lookupd's policy service
 * and `rcptgate query`. One place in the file for one rule. These keys
 * lived in [smtpd] before; written there they are still read, with a
 * warning (cfg.c's moved sections). Strings belong to cfg and change on
 * reload.
 */
#ifndef RG_PARAMS_RULES_H
#define RG_PARAMS_RULES_H

#include "cfg.h"

extern char *var_rules_hostname;        /* hostname: our own name; "" = the system's FQDN */
extern char *var_rules_mynetworks;      /* mynetworks: CIDRs, blank or comma separated, /file */
extern int var_rules_warn_if_reject;    /* warn_if_reject: every rule is warn-only */
extern char *var_rules_invalid_helo;    /* reject_invalid_helo */
extern char *var_rules_non_fqdn_helo;   /* reject_non_fqdn_helo */
extern char *var_rules_forged_helo;     /* reject_forged_helo: our names/IPs from outside */
extern char *var_rules_non_fqdn_sender; /* reject_non_fqdn_sender */
extern char *var_rules_forged_sender;   /* reject_forged_sender: our domains from outside */
extern char *var_rules_login_mismatch;  /* reject_sender_login_mismatch */
extern char *var_rules_non_fqdn_rcpt;   /* reject_non_fqdn_recipient */
extern char *var_rules_unknown_rcpt;    /* reject_unknown_recipient (550 5.1.1 User unknown) */
extern char *var_rules_internal_only;   /* reject_internal_only: restricted groups from outside */
extern char *var_rules_client_access;   /* client_access: repeatable "ADDR|CIDR ACTION [text]" */
extern char *var_rules_helo_access;     /* helo_access: repeatable "NAME ACTION [text]" */
extern char *var_rules_sender_access;   /* sender_access: repeatable "ADDR|@DOMAIN|DOMAIN ACTION [text]" */
extern char *var_rules_rcpt_access;     /* recipient_access: same */
extern int var_rules_store_access;      /* store_access: also consult the store's access table */

/* the [rules] parameters (NULL-name terminated), for the sections lists */
extern const CFG_PARAM params_rules[];

/* params_rules_table - the same, for a program that builds its own section list */
const CFG_PARAM *params_rules_table(void);

/*
 * params_rules_hostname - our own name into buf: [rules] hostname, else
 * the system's fully qualified name (gethostname(), and when that has no
 * dot the canonical name the resolver gives it, as `hostname -f`), else
 * its bare name. What smtpd greets with and what the forged HELO rule
 * calls ours, in smtpd, the policy service and `rcptgate query` alike.
 * May ask the resolver: call it at load, not per request.
 */
void params_rules_hostname(char *buf, size_t size);

#endif
