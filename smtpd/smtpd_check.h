/*
 * smtpd_check.h - the restrictions of rcptgate-smtpd
 *
 * As Postfix's smtpd_check.c: relay control, HELO, sender and recipient
 * checks and the access lists, each switchable and each with a warn-only
 * mode (warn logs "reject_warning" through smtpd_log_reject() and lets
 * the command through). The rules themselves are lib/rules.c's, shared
 * with lookupd's policy service and rcptgate query; smtpd adds the ones
 * that need DNS answers. Like Postfix with
 * smtpd_delay_reject=yes, client, HELO and sender restrictions are
 * evaluated at RCPT time, so a rejection names the recipient and the
 * sender; MAIL and HELO themselves are refused only for syntax.
 *
 * The checks are synchronous: the session starts the DNS lookups a check
 * needs (smtpd_dns.c) and waits for them before calling here; the answers
 * are in c->dns. Every failure to decide (store error, DNS TEMP where the
 * rule needs an answer) gives 4xx, never 5xx. The store is smtpd_store;
 * each call reads one snapshot (store_read_begin/end).
 */
#ifndef RG_SMTPD_CHECK_H
#define RG_SMTPD_CHECK_H

#include "smtpd.h"

/*
 * smtpd_check_init - (re)build what the checks need from the [rules]
 * variables: mynetworks, the access lists, our own IP addresses
 * (rules_init()). 0, or -1 with err set ("rules.mynetworks: bad CIDR ...")
 * and the previous state kept. Called at start and on every reload.
 */
int smtpd_check_init(char *err, size_t errlen);

/* smtpd_check_trusted - is this address in mynetworks? (sets c->trusted at connect) */
int smtpd_check_trusted(const struct sockaddr *sa);

/*
 * smtpd_check_connect - client access list at connect time, for entries
 * that must refuse the session at once (REJECT of a client address);
 * code 0 = go on. A 5xx here is given to every command after the banner
 * (as Postfix does), not by dropping the connection.
 */
int smtpd_check_connect(SMTPD_CLIENT *c, SMTPD_REPLY *r);

/*
 * smtpd_check_helo - HELO/EHLO syntax only (501 5.5.2 for an empty or
 * malformed argument); the HELO restrictions proper run at RCPT.
 */
int smtpd_check_helo(SMTPD_CLIENT *c, const char *helo, SMTPD_REPLY *r);

/*
 * smtpd_check_mail - MAIL FROM syntax and the checks that cannot wait
 * (sender address malformed: 501 5.1.7). The sender is the address
 * without brackets, "" for the null sender.
 */
int smtpd_check_mail(SMTPD_CLIENT *c, const char *sender, SMTPD_REPLY *r);

/* What a recipient check found out, for the relay. */
typedef struct smtpd_rcpt_info {
    char nexthop[512];          /* the recipient domain's next hop (transport syntax), or default_nexthop */
    char address[320];          /* the normal form of the recipient */
    char relay_mode[20];        /* the domain's own relay_mode ("proxy", "queue", ...), "" = [smtpd] relay_mode */
} SMTPD_RCPT_INFO;

/*
 * smtpd_check_rcpt - every restriction for one recipient, in Postfix's
 * order: client access, HELO checks, sender checks (with DNS answers),
 * relay control (554 5.7.1 Relay access denied), recipient access, the
 * recipient checks (non-FQDN, unknown user 550 5.1.1 ... User unknown,
 * internal-only groups 550 5.7.1). rcpt is the address without brackets.
 * Returns r->code: 0 accepted (info filled), 4xx or 5xx refused. Warn-
 * only rules that would refuse are logged here and do not refuse.
 * r->harvest is set for an unknown user in one of our domains.
 */
int smtpd_check_rcpt(SMTPD_CLIENT *c, const char *rcpt, SMTPD_RCPT_INFO *info, SMTPD_REPLY *r);

/*
 * smtpd_check_data - checks at DATA (none refuse by default; an access
 * list entry may). code 0 = go on.
 */
int smtpd_check_data(SMTPD_CLIENT *c, SMTPD_REPLY *r);

#endif
