/*
 * smtpd_check.c - the restrictions of rcptgate-smtpd
 *
 * SYNOPSIS
 *	smtpd_check_init() at start and on reload; smtpd_check_trusted() at
 *	connect; smtpd_check_connect/helo/mail/rcpt/data() per command.
 *
 * DESCRIPTION
 *	A front end over lib/rules.c, where the rules every front end
 *	shares live (smtpd, lookupd's policy service, rcptgate query). What
 *	is smtpd's own: HELO and MAIL syntax, the rules that need DNS answers
 *	(DNSBL, RHSBL, unknown sender domain: Postfix does not send a policy
 *	server what they need), given to the rules as hooks at their place
 *	in the order, and the next hop for the relay. As with
 *	smtpd_delay_reject = yes, client, HELO and sender restrictions are
 *	evaluated at RCPT, so every rejection names a recipient. At RCPT,
 *	class by class (DNS-based rules marked *):
 *
 *	client     access list; DNSBL*
 *	HELO       access list; invalid name, non-FQDN, forged (our host
 *	           name, one of our domains or addresses)
 *	sender     access list; non-FQDN; sender login mismatch (AUTH);
 *	           forged internal sender; unknown domain*; RHSBL*
 *	recipient  open-relay forms (never relayed, for anyone); non-FQDN;
 *	           relay control; access list; unknown user; internal-only
 *	           groups; the next hop
 *
 *	An access list entry OK skips the rest of its class only: relay
 *	control and recipient validity always apply. Trusted (mynetworks)
 *	and authenticated clients skip the heuristics (DNSBL, HELO name
 *	checks, forged sender, sender domain, RHSBL), not the access lists,
 *	the non-FQDN address checks or recipient validity, and they may
 *	relay to any domain.
 *
 *	Each check has a mode (smtpd_mode()): enforce refuses, warn logs
 *	"reject_warning" and goes on, off skips. Relay control is never
 *	warn-only, whatever warn_if_reject says: an open relay is not a
 *	thing to test in production. A lookup that fails gives 4xx, never
 *	5xx; when the check that needed it is warn-only, it is logged and
 *	the command goes on.
 *
 *	The settings of the shared rules are [rules] (params_rules.h); the
 *	DNS-based rules' modes stay in [smtpd].
 *
 * DIAGNOSTICS
 *	smtpd_check_init() names the parameter, line and entry at fault.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "log.h"
#include "params.h"
#include "rules.h"
#include "smtpd_check.h"
#include "smtpd_log.h"
#include "params_smtpd.h"

/* smtpd_check_init - (re)build the shared rules' state */
int smtpd_check_init(char *err, size_t errlen)
{
    return rules_init(err, errlen);
}

/* smtpd_check_trusted - is this address in mynetworks? */
int smtpd_check_trusted(const struct sockaddr *sa)
{
    return rules_trusted_sa(sa);
}

/* smtpd_check_warn - a warn-only refusal, in smtpd's log line */
static void smtpd_check_warn(const RULES_INPUT *in, const RULES_RESULT *r)
{
    SMTPD_REPLY tmp;

    memset(&tmp, 0, sizeof(tmp));
    tmp.code = r->code;
    snprintf(tmp.text, sizeof(tmp.text), "%s", r->text);
    smtpd_log_reject(in->hook_ctx, "RCPT", &tmp, in->rcpt, 1);
}

/* smtpd_check_dnsbl - the client's DNSBL verdict (c->dns) */
static int smtpd_check_dnsbl(RULES_CTX *x, const RULES_INPUT *in)
{
    const SMTPD_CLIENT *c = in->hook_ctx;
    const char *t = c->dns.dnsbl_text;

    if (c->dns.dnsbl != SMTPD_DNS_YES)
        return 0;
    return rules_refuse(x, rules_mode(var_smtpd_dnsbl_mode), 554, "dnsbl",
                        "554 5.7.1 Service unavailable; Client host [%s] blocked using %s%s%s",
                        c->addr, c->dns.dnsbl_zone ? c->dns.dnsbl_zone : "?",
                        t && *t ? "; " : "", t && *t ? t : "");
}

/* smtpd_check_domain_wanted - will the unknown sender domain rule need to know the domain is ours? */
static int smtpd_check_domain_wanted(const RULES_INPUT *in)
{
    const SMTPD_CLIENT *c = in->hook_ctx;

    return smtpd_mode(var_smtpd_unknown_sender_domain) != SMTPD_OFF
        && (c->dns.sender_domain == SMTPD_DNS_NO || c->dns.sender_domain == SMTPD_DNS_TEMP);
}

/* smtpd_check_sender_dns - unknown sender domain and RHSBL (c->dns), after the forged sender rule */
static int smtpd_check_sender_dns(RULES_CTX *x, const RULES_INPUT *in, int ours, int unsure, const char *what)
{
    const SMTPD_CLIENT *c = in->hook_ctx;
    enum rules_mode mode = rules_mode(var_smtpd_unknown_sender_domain);
    int rc;

    /* our own domains need no DNS to exist (they may have none outside) */
    if (unsure && (c->dns.sender_domain == SMTPD_DNS_NO || c->dns.sender_domain == SMTPD_DNS_TEMP)
        && (rc = rules_refuse(x, mode, 451, "store_failure",
                              "451 4.3.0 %s: Temporary lookup failure", what)) != 0)
        return rc;
    /*
     * 450 by default, as Postfix's unknown_address_reject_code: a resolver
     * that answers NXDOMAIN to everything (broken, or a filter in front of
     * the MX) then delays mail from outside, where 550 bounced all of it.
     */
    if (!ours && !unsure && c->dns.sender_domain == SMTPD_DNS_NO
        && (rc = rules_refuse(x, mode, var_smtpd_unknown_reject_code, "reject_unknown_sender_domain",
                              "%d %d.1.8 %s: Sender address rejected: Domain not found",
                              var_smtpd_unknown_reject_code, var_smtpd_unknown_reject_code / 100, what)) != 0)
        return rc;
    if (!ours && !unsure && c->dns.sender_domain == SMTPD_DNS_TEMP
        && (rc = rules_refuse(x, mode, 450, "reject_unknown_sender_domain",
                              "450 4.1.8 %s: Sender address rejected: Domain not found", what)) != 0)
        return rc;
    if (c->dns.rhsbl == SMTPD_DNS_YES) {
        const char *t = c->dns.rhsbl_text;

        return rules_refuse(x, rules_mode(var_smtpd_rhsbl_mode), 554, "rhsbl",
                            "554 5.7.1 Service unavailable; Sender address [%.*s] blocked using %s%s%s",
                            ADDR_PATH_MAX, in->sender, c->dns.rhsbl_zone ? c->dns.rhsbl_zone : "?",
                            t && *t ? "; " : "", t && *t ? t : "");
    }
    return 0;
}

static const RULES_HOOKS smtpd_check_hooks = {
    smtpd_check_warn, smtpd_check_dnsbl, smtpd_check_domain_wanted, smtpd_check_sender_dns,
};

/* smtpd_check_input - the rules' view of this session */
static void smtpd_check_input(SMTPD_CLIENT *c, const char *rcpt, RULES_INPUT *in)
{
    memset(in, 0, sizeof(*in));
    in->store = smtpd_store;
    in->client_addr = c->addr;
    in->client_name = c->name;
    in->helo = c->helo;
    in->sender = c->sender;
    in->rcpt = rcpt;
    in->login = c->sasl_user;
    in->trusted = c->trusted;
    in->myhostname = smtpd_hostname;
    in->queue_id = c->queue_id;
    in->proto = c->esmtp ? "ESMTP" : "SMTP";
    in->hooks = &smtpd_check_hooks;
    in->hook_ctx = c;
}

/* smtpd_check_reply - a rules verdict as smtpd's reply */
static int smtpd_check_reply(const RULES_RESULT *res, SMTPD_REPLY *r)
{
    r->code = res->code;
    r->harvest = res->harvest;
    r->disconnect = 0;
    snprintf(r->text, sizeof(r->text), "%s", res->code ? res->text : "");
    return r->code;
}

/* smtpd_check_reply_clear - no objection yet */
static void smtpd_check_reply_clear(SMTPD_REPLY *r)
{
    r->code = 0;
    r->text[0] = 0;
    r->harvest = 0;
    r->disconnect = 0;
}

/* smtpd_check_rcpt - every restriction for one recipient, then its next hop */
int smtpd_check_rcpt(SMTPD_CLIENT *c, const char *rcpt, SMTPD_RCPT_INFO *info, SMTPD_REPLY *r)
{
    RULES_INPUT in;
    RULES_RESULT res;
    const char *hop;
    const char *why = NULL;

    smtpd_check_reply_clear(r);
    snprintf(info->address, sizeof(info->address), "%s", rcpt);
    info->nexthop[0] = info->relay_mode[0] = 0;
    /* closed, unreadable or stale past max_age: every answer defers */
    if (smtpd_store_use(&why) == NULL) {
        log_warn("RCPT check for <%.*s>: %s", ADDR_PATH_MAX, rcpt, why);
        return smtpd_reply_set(r, 451, "451 4.3.0 <%.*s>: Temporary lookup failure", ADDR_PATH_MAX, rcpt);
    }
    smtpd_check_input(c, rcpt, &in);
    rules_check(&in, &res);
    snprintf(info->address, sizeof(info->address), "%s", res.address);
    if (smtpd_check_reply(&res, r) != 0)
        return r->code;
    hop = res.nexthop[0] ? res.nexthop : var_smtpd_default_nexthop;
    if (hop == NULL || *hop == 0) {
        log_warn("no next hop for <%.*s>: set [smtpd] default_nexthop, or the domain's next hop "
                 "(rcptgate domain add DOMAIN NEXTHOP)", ADDR_PATH_MAX, rcpt);
        return smtpd_reply_set(r, 451, "451 4.3.0 <%.*s>: Temporary lookup failure", ADDR_PATH_MAX, rcpt);
    }
    snprintf(info->nexthop, sizeof(info->nexthop), "%s", hop);
    snprintf(info->relay_mode, sizeof(info->relay_mode), "%s", res.relay_mode);
    return 0;
}

/* smtpd_check_connect - client access list entries that refuse the session */
int smtpd_check_connect(SMTPD_CLIENT *c, SMTPD_REPLY *r)
{
    RULES_INPUT in;
    RULES_RESULT res;

    smtpd_check_reply_clear(r);
    smtpd_check_input(c, "", &in);
    rules_connect(&in, &res);
    return smtpd_check_reply(&res, r);
}

/* smtpd_check_helo - HELO/EHLO syntax only */
int smtpd_check_helo(SMTPD_CLIENT *c, const char *helo, SMTPD_REPLY *r)
{
    smtpd_check_reply_clear(r);
    if (helo == NULL || *helo == 0)
        return smtpd_reply_set(r, 501, "501 5.5.2 Syntax: %s hostname", c->esmtp ? "EHLO" : "HELO");
    for (const char *p = helo; *p; p++)
        if ((unsigned char) *p < 0x20 || *p == 0x7f)
            return smtpd_reply_set(r, 501, "501 5.5.2 Syntax: %s hostname", c->esmtp ? "EHLO" : "HELO");
    return 0;
}

/* smtpd_check_mail - sender syntax (HELO first, helo_required, is the session's) */
int smtpd_check_mail(SMTPD_CLIENT *c, const char *sender, SMTPD_REPLY *r)
{
    CHECK_OPTS opts;
    ADDR a;

    (void) c;
    smtpd_check_reply_clear(r);
    params_check_opts(&opts);
    /* the rules parse a sender so too (rules_sender()): a long local part is taken, as by Postfix */
    if (sender == NULL || addr_parse(sender, strlen(sender), opts.addr_flags | ADDR_ALLOW_NULL
                                     | ADDR_ALLOW_BARE | ADDR_ALLOW_ROUTE | ADDR_ALLOW_PERCENT
                                     | ADDR_ALLOW_BANG | ADDR_ALLOW_LONG_LOCAL, &a) != ADDR_OK)
        return smtpd_reply_set(r, 501, "501 5.1.7 Bad sender address syntax");
    return 0;
}

/* smtpd_check_data - nothing refuses at DATA yet */
int smtpd_check_data(SMTPD_CLIENT *c, SMTPD_REPLY *r)
{
    (void) c;
    smtpd_check_reply_clear(r);
    return 0;
}
