/*
 * cmd_query_rules.c - rcptgate query --client ... ADDRESS: a whole transaction
 *
 * Judges one transaction (client, HELO, sender, login, recipient) with
 * the rules smtpd and lookupd's policy service apply (lib/rules.c), from
 * the same [rules] settings, and prints the verdict, the reply each front
 * end gives and the rule that decided. The verdict is smtpd's; the policy
 * service differs in one place only, a domain not ours, which it leaves
 * to Postfix's own relay control (DUNNO). The rules that need DNS answers
 * (DNSBL, RHSBL, unknown sender domain) are smtpd's only and not asked
 * here. Without --client the client is an outsider with no address.
 * Exit 0 accepted, 1 refused (5xx), 2 deferred (4xx: a store failure,
 * data older than [store] max_age, or a DEFER entry).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keeper.h"
#include "params.h"
#include "params_rules.h"
#include "params_smtpd.h"
#include "rcptgate.h"
#include "rules.h"

/* cmd_query_rules_warn - a warn-only rule that would have refused: shown, not logged */
static void cmd_query_rules_warn(const RULES_INPUT *in, const RULES_RESULT *r)
{
    (void) in;
    printf("warn-only: %s (%s): logged as reject_warning, let through\n", r->text, r->rule);
}

static const RULES_HOOKS cmd_query_rules_hooks = {cmd_query_rules_warn, NULL, NULL, NULL};

/* cmd_query_rules_opt - "--name VALUE" or "--name=VALUE" at argv[*i]; NULL if not that option */
static const char *cmd_query_rules_opt(int argc, char **argv, int *i, const char *name, int *bad)
{
    size_t n = strlen(name);

    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != 0)
        return NULL;
    if (*i + 1 >= argc) {
        *bad = 1;
        return NULL;
    }
    return argv[++*i];
}

/* cmd_query_rules - rcptgate query [--client ADDR] [--helo NAME] [--sender ADDR] [--login USER] ADDRESS */
int cmd_query_rules(int argc, char **argv)
{
    const char *client = NULL, *client_name = NULL, *helo = NULL, *sender = NULL, *login = NULL,
        *hostname = NULL, *rcpt = NULL, *v;
    char host[256], err[512], policy[RULES_REPLY_LEN], why[512];
    RULES_INPUT in;
    RULES_RESULT res;
    STORE *st;
    int bad = 0, stale;

    for (int i = 1; i < argc && !bad; i++) {
        if ((v = cmd_query_rules_opt(argc, argv, &i, "--client-name", &bad)) != NULL)
            client_name = v;
        else if ((v = cmd_query_rules_opt(argc, argv, &i, "--client", &bad)) != NULL)
            client = v;
        else if ((v = cmd_query_rules_opt(argc, argv, &i, "--helo", &bad)) != NULL)
            helo = v;
        else if ((v = cmd_query_rules_opt(argc, argv, &i, "--sender", &bad)) != NULL)
            sender = strcmp(v, "<>") == 0 ? "" : v;
        else if ((v = cmd_query_rules_opt(argc, argv, &i, "--login", &bad)) != NULL)
            login = *v ? v : NULL;
        else if ((v = cmd_query_rules_opt(argc, argv, &i, "--hostname", &bad)) != NULL)
            hostname = v;
        else if (argv[i][0] == '-' || rcpt != NULL)
            bad = 1;
        else
            rcpt = argv[i];
    }
    if (bad || rcpt == NULL) {
        rcptgate_error("usage: rcptgate query [--client ADDR] [--client-name NAME] [--helo NAME]"
                       " [--sender ADDR|<>] [--login USER] [--hostname NAME] ADDRESS");
        return RG_EX_USAGE;
    }
    if (rules_init(err, sizeof(err)) < 0) {
        rcptgate_error("%s: %s", rcptgate_conf_path, err);
        return RG_EX_CONFIG;
    }
    /* the name smtpd and the policy service call ours */
    if (hostname == NULL) {
        params_rules_hostname(host, sizeof(host));
        hostname = host;
    }
    /* a store that cannot be opened is what the daemons see too: every rule that needs it defers */
    st = rcptgate_store(0);

    memset(&in, 0, sizeof(in));
    in.store = st;
    in.client_addr = client ? client : "";
    in.client_name = client_name;
    in.helo = helo;
    in.sender = sender;
    in.rcpt = rcpt;
    in.login = login;
    in.trusted = client != NULL && rules_trusted(client);
    in.myhostname = hostname;
    in.proto = "ESMTP";
    in.hooks = &cmd_query_rules_hooks;

    printf("client:    %s (%s)\n", client ? client : "(none)",
           in.trusted ? "in mynetworks" : client ? "outside mynetworks" : "an outsider");
    if (helo)
        printf("helo:      %s\n", helo);
    if (sender)
        printf("sender:    <%s>\n", sender);
    if (login)
        printf("login:     %s\n", login);
    printf("recipient: %s\n", rcpt);
    /*
     * Past [store] max_age both daemons defer every recipient before any
     * rule runs (lib/keeper.c); judging from the stale data here would
     * show a verdict neither gives.
     */
    if (st != NULL && (stale = keeper_stale(st, why, sizeof(why))) != 0) {
        if (stale < 0)
            snprintf(why, sizeof(why), "%s", store_error(st));
        printf("verdict:   defer\n");
        printf("rule:      %s\n", stale > 0 ? "store_stale" : "store_failure");
        printf("smtpd:     451 4.3.0 <%s>: Temporary lookup failure\n", rcpt);
        printf("policy:    action=451 4.3.0 Temporary lookup failure\n");
        printf("note:      %s\n", why);
        store_close(st);
        rules_free();
        return RCPTGATE_EX_STORE;
    }
    rules_check(&in, &res);
    if (res.code == 0) {
        printf("verdict:   accept\n");
        printf("rule:      accept (no rule refused)\n");
        printf("smtpd:     (accepted; the next hop's own reply)\n");
        printf("policy:    action=DUNNO\n");
        if (res.ours) {
            printf("next hop:  %s\n", res.nexthop[0] ? res.nexthop : "(default)");
            printf("relay mode: %s%s\n", res.relay_mode[0] ? res.relay_mode : var_smtpd_relay_mode,
                   res.relay_mode[0] ? "" : " ([smtpd] relay_mode)");
        }
    } else {
        /* as lookupd answers: [lookupd] reject_text is the text of its 550 5.1.1 */
        if (strcmp(res.rule, "relay_control") == 0)
            snprintf(policy, sizeof(policy), "DUNNO");
        else if (strcmp(res.rule, "reject_unknown_recipient") == 0 && *var_lookupd_reject_text)
            snprintf(policy, sizeof(policy), "%d 5.1.1 %s", res.code, var_lookupd_reject_text);
        else
            rules_policy_text(&res, rcpt, policy, sizeof(policy));
        printf("verdict:   %s\n", res.code >= 500 ? "reject" : "defer");
        printf("rule:      %s\n", res.rule);
        printf("smtpd:     %s\n", res.text);
        printf("policy:    action=%s\n", policy);
        if (strcmp(res.rule, "relay_control") == 0)
            printf("note:      the policy service leaves relaying to Postfix's reject_unauth_destination,"
                   " which gives the same 554 5.7.1\n");
    }
    if (st != NULL && *store_incomplete(st))
        printf("note:      %s\n", store_incomplete(st));
    if (st != NULL && strcmp(res.rule, "store_failure") == 0 && *store_error(st))
        rcptgate_error("store %s: %s", var_store_path, store_error(st));
    store_close(st);
    rules_free();
    return res.code == 0 ? RCPTGATE_EX_OK : res.code >= 500 ? RCPTGATE_EX_NOTFOUND : RCPTGATE_EX_STORE;
}
