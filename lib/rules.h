/*
 * rules.h - the per-transaction rules, once for every front end
 *
 * rcptgate-smtpd (smtpd_check.c), lookupd's policy service (policyd.c)
 * and `rcptgate query` judge a transaction here: client, HELO and sender
 * access lists and checks, relay control (mynetworks), recipient access,
 * unknown users, "internal senders only" groups, the sender-login
 * mismatch of authenticated users, forged own-domain senders and HELOs.
 * Everything a Postfix policy request carries (client_address,
 * client_name, helo_name, sender, recipient, sasl_username) is enough to
 * feed them; the rules that need DNS answers (DNSBL, RHSBL, unknown
 * sender domain) are smtpd's, and come in through RULES_HOOKS at their
 * place in the order.
 *
 * The settings are the [rules] section (params_rules.h). Each rule has a
 * mode (rules_mode()): enforce refuses, warn logs "reject_warning" and
 * lets the transaction through, off skips. A lookup that fails gives 4xx
 * (451 4.3.0), never 5xx. Relay control and the open-relay forms are
 * never warn-only.
 *
 * The reply texts are Postfix's (smtpd_delay_reject = yes: every refusal
 * happens at RCPT and names the recipient or the thing refused).
 */
#ifndef RG_RULES_H
#define RG_RULES_H

#include <stddef.h>
#include <sys/socket.h>

#include "store.h"

/* The modes of the rules. */
enum rules_mode { RULES_OFF = 0, RULES_WARN = 1, RULES_ENFORCE = 2 };

/*
 * rules_mode - a rule's mode from its parameter string ("enforce",
 * "warn", "off"), with [rules] warn_if_reject applied (an enforcing rule
 * becomes warn-only).
 */
enum rules_mode rules_mode(const char *value);

#define RULES_REPLY_LEN 512

/* The verdict on one transaction (one recipient). */
typedef struct rules_result {
    int code;                   /* 0 accept; 4xx / 5xx refuse */
    char text[RULES_REPLY_LEN]; /* the whole reply: "550 5.1.1 <a@b>: Recipient address rejected: User unknown" */
    const char *rule;           /* the rule that decided ("reject_unknown_recipient"), "accept" when none refused */
    int harvest;                /* an unknown user of ours (harvest protection) */
    int warnings;               /* warn-only refusals logged on the way */
    char address[320];          /* the recipient's normal form (or as given) */
    char nexthop[512];          /* its domain's next hop when ours, "" for the default */
    char relay_mode[20];        /* its domain's smtpd relay_mode when ours, "" for the default */
    int ours;                   /* the recipient domain is one of ours */
} RULES_RESULT;

typedef struct rules_ctx RULES_CTX;
typedef struct rules_input RULES_INPUT;

/*
 * What a front end adds: where a warn-only refusal is logged, and the
 * DNS-based rules in their place in the order. Each hook returns a reply
 * code (refused through rules_refuse()) or 0. Any member may be NULL.
 */
typedef struct rules_hooks {
    /* a warn-only refusal (r->text, r->rule); default: a Postfix-style reject_warning line */
    void (*warn)(const RULES_INPUT *in, const RULES_RESULT *r);
    /* after the client access list, for outsiders (DNSBL) */
    int (*client)(RULES_CTX *x, const RULES_INPUT *in);
    /* does the sender rule need to know whether the sender domain is ours, forged rule off? */
    int (*sender_domain_wanted)(const RULES_INPUT *in);
    /*
     * after the forged sender rule, for outsiders: ours = the sender domain
     * is ours, unsure = the store could not tell; what = "<sender>"
     */
    int (*sender)(RULES_CTX *x, const RULES_INPUT *in, int ours, int unsure, const char *what);
} RULES_HOOKS;

/* One transaction, as a front end saw it. Strings are not kept. */
struct rules_input {
    STORE *store;               /* read-only; NULL: every rule that needs it defers */
    int in_read;                /* the caller holds a read transaction: rules neither begin nor end one */
    const char *client_addr;    /* "192.0.2.1", "2001:db8::1" */
    const char *client_name;    /* verified name; NULL or "" is "unknown" */
    const char *helo;           /* HELO/EHLO argument; NULL: none (its rules are skipped) */
    const char *sender;         /* MAIL FROM, "" the null sender; NULL: none */
    const char *rcpt;           /* the recipient as given, without brackets */
    const char *login;          /* SASL login; NULL: not authenticated */
    int trusted;                /* client in mynetworks (rules_trusted()) */
    /*
     * relaying is decided in front of us (Postfix's reject_unauth_destination,
     * which knows its own local and virtual domains too): a domain not ours
     * is let through (rule "relay_control", code 0) instead of refused
     */
    int relay_elsewhere;
    const char *myhostname;     /* our host name, for the forged HELO rule; NULL: none */
    const char *queue_id;       /* for log lines; NULL is NOQUEUE */
    const char *proto;          /* "ESMTP" or "SMTP", for log lines */
    const RULES_HOOKS *hooks;   /* NULL: none */
    void *hook_ctx;             /* the front end's own, for its hooks */
};

/*
 * rules_init - (re)build the state from the [rules] variables: mynetworks,
 * the access lists, our own addresses. 0, or -1 with err set
 * ("rules.mynetworks: bad CIDR ...") and the previous state kept.
 */
int rules_init(char *err, size_t errlen);

/*
 * rules_check_mynetworks, rules_check_*_access - the [rules] table's cfg
 * check functions: 0 if value parses as rules_init() would read it, else
 * -1 and err. A bad value so fails the load before any value is
 * assigned, and a refused reload keeps all of the running configuration.
 */
int rules_check_mynetworks(const char *value, char *err, size_t errlen);
int rules_check_client_access(const char *value, char *err, size_t errlen);
int rules_check_helo_access(const char *value, char *err, size_t errlen);
int rules_check_sender_access(const char *value, char *err, size_t errlen);
int rules_check_recipient_access(const char *value, char *err, size_t errlen);

/* rules_free - drop the state (tests, exit) */
void rules_free(void);

/* rules_trusted - is this textual address in mynetworks? (IPv4-mapped IPv6 is IPv4) */
int rules_trusted(const char *addr);

/* rules_trusted_sa - the same for a socket address */
int rules_trusted_sa(const struct sockaddr *sa);

/*
 * rules_check - every rule for one recipient, in Postfix's order: client
 * access (then hooks->client), HELO, sender (hooks->sender), relay
 * control, recipient access, recipient checks. Reads one store snapshot.
 * Returns out->code: 0 accepted (out->address, nexthop, ours filled;
 * out->rule "relay_control" when a domain not ours was left to
 * relay_elsewhere), 4xx or 5xx refused.
 */
int rules_check(const RULES_INPUT *in, RULES_RESULT *out);

/*
 * rules_connect - the client access list at connect time: only REJECT
 * and DEFER entries act, a lookup failure is decided again at RCPT.
 * Nothing is done unless rules are enforcing. Returns out->code.
 */
int rules_connect(const RULES_INPUT *in, RULES_RESULT *out);

/* rules_privileged - trusted or authenticated: may relay, skips the heuristics */
int rules_privileged(const RULES_INPUT *in);

/*
 * rules_refuse - for a hook: a rule that would refuse. By mode: refuse
 * (the reply kept, returns code), log a reject_warning and go on (0), or
 * nothing (0). fmt gives the whole reply text.
 */
int rules_refuse(RULES_CTX *x, enum rules_mode mode, int code, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * rules_policy_text - the text of a refusal as a Postfix policy action
 * gives it: Postfix's smtpd writes "<rcpt>: Recipient address rejected: "
 * itself, so that prefix (or a bare "<rcpt>: ") is left out, and a
 * recipient refusal reads byte for byte as smtpd's. "550 5.1.1 User
 * unknown". out holds size bytes.
 */
void rules_policy_text(const RULES_RESULT *r, const char *rcpt, char *out, size_t size);

#endif
