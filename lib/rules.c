/*
 * rules.c - the per-transaction rules (see rules.h)
 *
 * SYNOPSIS
 *	rules_init() at start and on reload; rules_trusted() for a client;
 *	rules_connect() at connect; rules_check() per recipient.
 *
 * DESCRIPTION
 *	What a careful postmaster's Postfix MX refuses, in Postfix's order
 *	and with its reply texts, whichever front end asks (rcptgate-smtpd,
 *	lookupd's policy service, `rcptgate query`). As with
 *	smtpd_delay_reject = yes, everything is decided at RCPT, class by
 *	class:
 *
 *	client     access list; [hook: DNSBL]
 *	HELO       access list; invalid name, non-FQDN, forged (our host
 *	           name, one of our domains or addresses)
 *	sender     access list; non-FQDN; sender login mismatch (AUTH);
 *	           forged internal sender; [hook: unknown domain, RHSBL]
 *	recipient  open-relay forms (never relayed, for anyone); non-FQDN;
 *	           relay control; access list; unknown user; internal-only
 *	           groups
 *
 *	An access list entry OK skips the rest of its class only: relay
 *	control and recipient validity always apply. Trusted (mynetworks)
 *	and authenticated clients skip the heuristics (DNSBL, HELO name
 *	checks, forged sender, sender domain, RHSBL), not the access lists,
 *	the non-FQDN address checks or recipient validity, and they may
 *	relay to any domain.
 *
 *	Each rule has a mode (rules_mode()): enforce refuses, warn logs
 *	"reject_warning" and goes on, off skips. Relay control is never
 *	warn-only, whatever warn_if_reject says: an open relay is not a
 *	thing to test in production. A lookup that fails gives 4xx, never
 *	5xx; when the rule that needed it is warn-only, it is logged and the
 *	transaction goes on.
 *
 *	State built from the configuration (mynetworks, access lists, our
 *	addresses) is swapped in whole by rules_init(), so a bad reload
 *	keeps the old state.
 *
 * DIAGNOSTICS
 *	rules_init() names the parameter, line and entry at fault.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <stddef.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "check.h"
#include "log.h"
#include "params.h"
#include "params_rules.h"
#include "rules.h"
#include "store_access.h"
#include "xalloc.h"

/* An address or network, in network byte order. */
typedef struct rules_net {
    int family;                 /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
} RULES_NET;

/* The restriction classes, with their access list and reply wording. */
enum rules_class { RULES_CLIENT, RULES_HELO, RULES_SENDER, RULES_RCPT, RULES_CLASSES };

static const char *const rules_class_type[RULES_CLASSES] = {
    STORE_ACCESS_CLIENT, STORE_ACCESS_HELO, STORE_ACCESS_SENDER, STORE_ACCESS_RCPT,
};
static const char *const rules_class_label[RULES_CLASSES] = {
    "Client host", "Helo command", "Sender address", "Recipient address",
};
static const char *const rules_class_param[RULES_CLASSES] = {
    "client_access", "helo_access", "sender_access", "recipient_access",
};

typedef struct rules_state {
    RULES_NET *mynets;
    size_t n_mynets;
    RULES_NET *ours;            /* our own addresses (getifaddrs) */
    size_t n_ours;
    STORE_ACCESS *lists[RULES_CLASSES];
    size_t n_lists[RULES_CLASSES];
} RULES_STATE;

static RULES_STATE *rules_state;

/* Candidate keys of one access lookup, most specific first. */
#define RULES_KEYS_MAX  140     /* an IPv6 address and its 128 networks */

typedef struct rules_keys {
    char buf[RULES_KEYS_MAX][STORE_ACCESS_KEY_SIZE];
    const char *key[RULES_KEYS_MAX];
    size_t n;
} RULES_KEYS;

/* What one RCPT check works with. */
struct rules_ctx {
    const RULES_INPUT *in;
    const char *rcpt;           /* as given, for the logs */
    RULES_RESULT *out;
    CHECK_OPTS opts;
    int use_store;              /* consult the store's access table */
    int store_mask;             /* its types that have entries (store_access_present) */
    int at_connect;             /* rules_connect: only REJECT and DEFER act */
    RULES_KEYS keys;            /* scratch for the access lookups */
};

/*
 * rules_ctx_new - a context with everything but the key scratch zeroed:
 * that is some 45 kB, filled (n = 0 first) before each access lookup
 * reads it, and clearing it for every RCPT would be wasted work.
 */
static RULES_CTX *rules_ctx_new(const RULES_INPUT *in, const char *rcpt, RULES_RESULT *out)
{
    RULES_CTX *x = xmalloc(sizeof(*x));

    memset(x, 0, offsetof(RULES_CTX, keys));
    x->keys.n = 0;
    x->in = in;
    x->rcpt = rcpt;
    x->out = out;
    return x;
}

/* rules_state_free - free a state; NULL is fine */
static void rules_state_free(RULES_STATE *s)
{
    if (s == NULL)
        return;
    free(s->mynets);
    free(s->ours);
    for (int i = 0; i < RULES_CLASSES; i++)
        free(s->lists[i]);
    free(s);
}

/* rules_net_parse - "addr[/bits]", "[addr]/bits": 0 or -1 */
static int rules_net_parse(const char *text, RULES_NET *net)
{
    char key[STORE_ACCESS_KEY_SIZE];
    char host[INET6_ADDRSTRLEN + 1];
    char err[128];
    const char *slash;
    size_t hlen;

    /* store_access_key() reads and normalises networks for the access lists too */
    if (store_access_key(STORE_ACCESS_CLIENT, text, key, err, sizeof(err)) < 0)
        return -1;
    slash = strchr(key, '/');
    hlen = slash ? (size_t) (slash - key) : strlen(key);
    if (hlen >= sizeof(host))
        return -1;
    memcpy(host, key, hlen);
    host[hlen] = 0;
    memset(net, 0, sizeof(*net));
    if (inet_pton(AF_INET, host, net->addr) == 1) {
        net->family = AF_INET;
        net->bits = 32;
    } else if (inet_pton(AF_INET6, host, net->addr) == 1) {
        net->family = AF_INET6;
        net->bits = 128;
    } else {
        return -1;
    }
    if (slash != NULL)
        net->bits = atoi(slash + 1);
    return 0;
}

/* rules_net_match - is the address (family, bytes) inside net? */
static int rules_net_match(const RULES_NET *net, int family, const unsigned char *addr)
{
    int full = net->bits / 8, rest = net->bits % 8;

    if (net->family != family)
        return 0;
    if (memcmp(net->addr, addr, (size_t) full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((net->addr[full] ^ addr[full]) & (0xff << (8 - rest))) == 0;
}

/* rules_addr_bin - a textual address to (family, bytes); IPv4-mapped IPv6 becomes IPv4 */
static int rules_addr_bin(const char *text, int *family, unsigned char *bin)
{
    if (inet_pton(AF_INET, text, bin) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, bin) != 1)
        return -1;
    *family = AF_INET6;
    if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *) bin)) {
        memmove(bin, bin + 12, 4);
        *family = AF_INET;
    }
    return 0;
}

/* rules_sa_bin - a socket address to (family, bytes); -1 for other families */
static int rules_sa_bin(const struct sockaddr *sa, int *family, unsigned char *bin)
{
    char text[INET6_ADDRSTRLEN];

    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, text, sizeof(text));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, text, sizeof(text));
    else
        return -1;
    return rules_addr_bin(text, family, bin);
}

/* rules_in_nets - is (family, bin) in one of n nets? */
static int rules_in_nets(const RULES_NET *nets, size_t n, int family, const unsigned char *bin)
{
    for (size_t i = 0; i < n; i++)
        if (rules_net_match(&nets[i], family, bin))
            return 1;
    return 0;
}

/* rules_add_mynet - one mynetworks word into s; 0 or -1 with err */
static int rules_add_mynet(RULES_STATE *s, size_t *cap, const char *word, const char *where,
                           char *err, size_t errlen)
{
    if (s->n_mynets == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        s->mynets = xrealloc(s->mynets, *cap * sizeof(*s->mynets));
    }
    if (rules_net_parse(word, &s->mynets[s->n_mynets]) < 0) {
        snprintf(err, errlen, "rules.mynetworks: %s%sbad CIDR \"%s\"", where, *where ? ": " : "", word);
        return -1;
    }
    s->n_mynets++;
    return 0;
}

/* rules_mynet_file - a mynetworks file, as Postfix reads one: words, "#" comments */
static int rules_mynet_file(RULES_STATE *s, size_t *cap, const char *path, char *err, size_t errlen)
{
    char *line = NULL, where[600];
    size_t lcap = 0;
    FILE *fp = fopen(path, "r");
    long long n = 0;
    int rc = 0;

    if (fp == NULL) {
        snprintf(err, errlen, "rules.mynetworks: %s: %m", path);
        return -1;
    }
    /* Whole lines, as Postfix reads them: a long comment is one comment, not two lines. */
    while (rc == 0 && getline(&line, &lcap, fp) >= 0) {
        char *word, *save = NULL;

        n++;
        line[strcspn(line, "#")] = 0;
        snprintf(where, sizeof(where), "%s line %lld", path, n);
        for (word = strtok_r(line, " \t\r\n,", &save); word && rc == 0; word = strtok_r(NULL, " \t\r\n,", &save))
            rc = rules_add_mynet(s, cap, word, where, err, errlen);
    }
    free(line);
    fclose(fp);
    return rc;
}

/*
 * rules_parse_mynetworks - var_rules_mynetworks into s: CIDRs separated
 * by blanks or commas, and "/path" for a file of them (as Postfix's
 * mynetworks = /etc/postfix/mynetworks). 0 or -1 with err.
 */
static int rules_parse_mynetworks(RULES_STATE *s, const char *value, char *err, size_t errlen)
{
    const char *p = value ? value : "";
    size_t cap = 0;

    while (*p) {
        char word[512];
        size_t n = strcspn(p, " \t\r\n,");

        if (n == 0) {
            p++;
            continue;
        }
        if (n >= sizeof(word)) {
            snprintf(err, errlen, "rules.mynetworks: bad CIDR \"%.40s...\"", p);
            return -1;
        }
        memcpy(word, p, n);
        word[n] = 0;
        p += n;
        if (word[0] == '/' ? rules_mynet_file(s, &cap, word, err, errlen) < 0
            : rules_add_mynet(s, &cap, word, "", err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* rules_parse_list - one access list ("KEY ACTION [text]" per line) into s */
static int rules_parse_list(RULES_STATE *s, int cls, const char *value, char *err, size_t errlen)
{
    const char *p = value ? value : "";
    size_t cap = 0;
    int line = 0;

    while (*p) {
        char buf[1024], why[512];
        char *key, *action, *text, *save = NULL;
        size_t n = strcspn(p, "\n");
        STORE_ACCESS e;

        line++;
        if (n >= sizeof(buf)) {
            snprintf(err, errlen, "rules.%s: entry %d: too long", rules_class_param[cls], line);
            return -1;
        }
        memcpy(buf, p, n);
        buf[n] = 0;
        p += n + (p[n] == '\n');
        if ((key = strtok_r(buf, " \t\r", &save)) == NULL || key[0] == '#') {
            line -= key == NULL;        /* empty lines are not entries */
            continue;
        }
        action = strtok_r(NULL, " \t\r", &save);
        text = save ? save + strspn(save, " \t") : "";
        text[strcspn(text, "\r")] = 0;
        if (store_access_entry(rules_class_type[cls], key, action, text, &e, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "rules.%s: entry %d \"%s%s%s\": %s", rules_class_param[cls], line,
                     key, action ? " " : "", action ? action : "", why);
            return -1;
        }
        if (s->n_lists[cls] == cap) {
            cap = cap ? cap * 2 : 8;
            s->lists[cls] = xrealloc(s->lists[cls], cap * sizeof(STORE_ACCESS));
        }
        s->lists[cls][s->n_lists[cls]++] = e;
    }
    return 0;
}

/* rules_learn_ours - our own addresses, for the forged-HELO check */
static void rules_learn_ours(RULES_STATE *s)
{
    struct ifaddrs *ifa, *i;
    size_t cap = 0;

    if (getifaddrs(&ifa) < 0) {
        log_warn("rules: cannot list our own addresses: %m; the forged HELO check "
                 "knows only our host name and domains");
        return;
    }
    for (i = ifa; i != NULL; i = i->ifa_next) {
        RULES_NET net;

        memset(&net, 0, sizeof(net));
        if (rules_sa_bin(i->ifa_addr, &net.family, net.addr) < 0)
            continue;
        net.bits = net.family == AF_INET ? 32 : 128;
        if (rules_in_nets(s->ours, s->n_ours, net.family, net.addr))
            continue;
        if (s->n_ours == cap) {
            cap = cap ? cap * 2 : 8;
            s->ours = xrealloc(s->ours, cap * sizeof(*s->ours));
        }
        s->ours[s->n_ours++] = net;
    }
    freeifaddrs(ifa);
}

/* rules_init - (re)build the state from the [rules] variables */
int rules_init(char *err, size_t errlen)
{
    const char *lists[RULES_CLASSES] = {
        var_rules_client_access, var_rules_helo_access, var_rules_sender_access, var_rules_rcpt_access,
    };
    RULES_STATE *s = xcalloc(1, sizeof(*s));

    if (rules_parse_mynetworks(s, var_rules_mynetworks, err, errlen) < 0)
        goto fail;
    for (int i = 0; i < RULES_CLASSES; i++)
        if (rules_parse_list(s, i, lists[i], err, errlen) < 0)
            goto fail;
    rules_learn_ours(s);
    rules_state_free(rules_state);
    rules_state = s;
    return 0;

fail:
    rules_state_free(s);
    return -1;
}

/*
 * rules_check_value - does value parse as mynetworks (cls < 0) or as one
 * access list? For the [rules] table's check functions: a bad value then
 * fails the configuration load before anything is assigned, so a reload
 * that is refused for it really keeps the running configuration (the
 * other [rules] and [store] values of the same file included). cfg names
 * the parameter and the file line; err says only what is wrong.
 */
static int rules_check_value(int cls, const char *value, char *err, size_t errlen)
{
    RULES_STATE *s = xcalloc(1, sizeof(*s));
    char why[1024];
    const char *p = why;
    int rc;

    rc = cls < 0 ? rules_parse_mynetworks(s, value, why, sizeof(why))
        : rules_parse_list(s, cls, value, why, sizeof(why));
    rules_state_free(s);
    if (rc == 0)
        return 0;
    if (strncmp(p, "rules.", 6) == 0 && strstr(p, ": ") != NULL)
        p = strstr(p, ": ") + 2;
    /* cfg checks a list one line at a time: its "entry 1" would mislead */
    if (cls >= 0 && strncmp(p, "entry ", 6) == 0 && p[6 + strspn(p + 6, "0123456789")] == ' ')
        p += 7 + strspn(p + 6, "0123456789");
    snprintf(err, errlen, "%s", p);
    return -1;
}

/* rules_check_* - cfg check functions of the [rules] parameters (rules.h) */
int rules_check_mynetworks(const char *value, char *err, size_t errlen)
{
    return rules_check_value(-1, value, err, errlen);
}

int rules_check_client_access(const char *value, char *err, size_t errlen)
{
    return rules_check_value(RULES_CLIENT, value, err, errlen);
}

int rules_check_helo_access(const char *value, char *err, size_t errlen)
{
    return rules_check_value(RULES_HELO, value, err, errlen);
}

int rules_check_sender_access(const char *value, char *err, size_t errlen)
{
    return rules_check_value(RULES_SENDER, value, err, errlen);
}

int rules_check_recipient_access(const char *value, char *err, size_t errlen)
{
    return rules_check_value(RULES_RCPT, value, err, errlen);
}

/* rules_free - drop the state */
void rules_free(void)
{
    rules_state_free(rules_state);
    rules_state = NULL;
}

/* rules_trusted_sa - is this socket address in mynetworks? */
int rules_trusted_sa(const struct sockaddr *sa)
{
    unsigned char bin[16];
    int family;

    if (rules_state == NULL || rules_sa_bin(sa, &family, bin) < 0)
        return 0;
    return rules_in_nets(rules_state->mynets, rules_state->n_mynets, family, bin);
}

/* rules_trusted - is this textual address in mynetworks? */
int rules_trusted(const char *addr)
{
    unsigned char bin[16];
    int family;

    if (rules_state == NULL || addr == NULL || rules_addr_bin(addr, &family, bin) < 0)
        return 0;
    return rules_in_nets(rules_state->mynets, rules_state->n_mynets, family, bin);
}

/* rules_mode - a rule's mode, with warn_if_reject applied */
enum rules_mode rules_mode(const char *value)
{
    if (value == NULL || strcmp(value, "off") == 0)
        return RULES_OFF;
    if (strcmp(value, "warn") == 0 || var_rules_warn_if_reject)
        return RULES_WARN;
    return RULES_ENFORCE;
}

/* rules_privileged - trusted or authenticated: may relay, skips the heuristics */
int rules_privileged(const RULES_INPUT *in)
{
    return in->trusted || in->login != NULL;
}

/* rules_client_name - "name[addr]" as Postfix names a client in replies */
static const char *rules_client_name(const RULES_INPUT *in, char *buf, size_t size)
{
    snprintf(buf, size, "%s[%s]", in->client_name && in->client_name[0] ? in->client_name : "unknown",
             in->client_addr ? in->client_addr : "");
    return buf;
}

/* rules_warn_log - a warn-only refusal as Postfix logs one (no front end of its own) */
static void rules_warn_log(const RULES_INPUT *in, const RULES_RESULT *r)
{
    char name[600];

    log_info("%s: reject_warning: RCPT from %s: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
             in->queue_id ? in->queue_id : "NOQUEUE", rules_client_name(in, name, sizeof(name)),
             r->text, in->sender ? in->sender : "", in->rcpt ? in->rcpt : "",
             in->proto ? in->proto : "ESMTP", in->helo ? in->helo : "");
}

/* rules_vset - the reply: code, text and the rule that decided */
static int rules_vset(RULES_RESULT *r, int code, const char *rule, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static int rules_vset(RULES_RESULT *r, int code, const char *rule, const char *fmt, va_list ap)
{
    r->code = code;
    r->rule = rule;
    r->harvest = 0;
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
    return code;
}

/* rules_set - refuse, whatever the modes say (relay control, syntax, store failures) */
static int rules_set(RULES_CTX *x, int code, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int rules_set(RULES_CTX *x, int code, const char *rule, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rules_vset(x->out, code, rule, fmt, ap);
    va_end(ap);
    return code;
}

/*
 * rules_refuse - a rule that would refuse: by mode, refuse (the reply
 * in x->out, returns code), log a reject_warning and go on (0), or nothing.
 */
int rules_refuse(RULES_CTX *x, enum rules_mode mode, int code, const char *rule, const char *fmt, ...)
{
    RULES_RESULT tmp;
    va_list ap;

    if (mode == RULES_OFF)
        return 0;
    memset(&tmp, 0, sizeof(tmp));
    va_start(ap, fmt);
    rules_vset(mode == RULES_WARN ? &tmp : x->out, code, rule, fmt, ap);
    va_end(ap);
    if (mode == RULES_WARN) {
        if (x->in->hooks && x->in->hooks->warn)
            x->in->hooks->warn(x->in, &tmp);
        else
            rules_warn_log(x->in, &tmp);
        x->out->warnings++;
        return 0;
    }
    return code;
}

/* rules_keys_add - one more candidate key: a, b and c joined (too long: left out) */
static void rules_keys_add(RULES_KEYS *k, const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *out;

    if (k->n >= RULES_KEYS_MAX || la + lb + lc >= STORE_ACCESS_KEY_SIZE)
        return;
    out = k->buf[k->n];
    memcpy(out, a, la);
    memcpy(out + la, b, lb);
    memcpy(out + la + lb, c, lc);
    out[la + lb + lc] = 0;
    k->key[k->n] = out;
    k->n++;
}

/* rules_keys_domain - domain, then each parent as "parent" and ".parent" (access(5)) */
static void rules_keys_domain(RULES_KEYS *k, const char *domain)
{
    const char *p;

    rules_keys_add(k, domain, "", "");
    if (domain[0] == '[')
        return;
    for (p = strchr(domain, '.'); p != NULL && p[1]; p = strchr(p + 1, '.')) {
        rules_keys_add(k, p + 1, "", "");
        rules_keys_add(k, p, "", "");
    }
}

/* rules_keys_client - the client address, then every network holding it */
static void rules_keys_client(RULES_KEYS *k, const RULES_INPUT *in)
{
    unsigned char bin[16], net[16];
    char text[INET6_ADDRSTRLEN], bits[8];
    int family, max;

    k->n = 0;
    if (in->client_addr == NULL || rules_addr_bin(in->client_addr, &family, bin) < 0)
        return;
    max = family == AF_INET ? 32 : 128;
    inet_ntop(family, bin, text, sizeof(text));
    rules_keys_add(k, text, "", "");
    for (int b = max - 1; b >= 0; b--) {
        memcpy(net, bin, sizeof(net));
        for (int i = 0; i < max / 8; i++) {
            int keep = b - i * 8;

            if (keep <= 0)
                net[i] = 0;
            else if (keep < 8)
                net[i] &= (unsigned char) (0xff << (8 - keep));
        }
        inet_ntop(family, net, text, sizeof(text));
        snprintf(bits, sizeof(bits), "/%d", b);
        rules_keys_add(k, text, bits, "");
    }
}

/* rules_keys_mail - an address: itself, without extension, @domain, domain and parents, user@ */
static void rules_keys_mail(RULES_KEYS *k, const ADDR *a, const char *delims)
{
    char local[ADDR_KEY_SIZE];
    int stripped;

    k->n = 0;
    if (a->is_null) {
        rules_keys_add(k, "<>", "", "");
        return;
    }
    stripped = delims && *delims && addr_strip_extension(a->local, delims, local);
    if (a->domain[0]) {
        rules_keys_add(k, a->key, "", "");
        if (stripped)
            rules_keys_add(k, local, "@", a->domain);
        rules_keys_add(k, "@", a->domain, "");
        rules_keys_domain(k, a->domain);
    }
    rules_keys_add(k, a->local, "@", "");
    if (stripped)
        rules_keys_add(k, local, "@", "");
}

/* rules_list_find - the config list's entry for the first key that has one; *which = its index */
static const STORE_ACCESS *rules_list_find(int cls, const RULES_KEYS *k, size_t *which)
{
    *which = k->n;
    if (rules_state == NULL)
        return NULL;
    for (size_t i = 0; i < k->n; i++)
        for (size_t j = 0; j < rules_state->n_lists[cls]; j++)
            if (strcmp(rules_state->lists[cls][j].key, k->key[i]) == 0) {
                *which = i;
                return &rules_state->lists[cls][j];
            }
    return NULL;
}

/* rules_dsn - the enhanced status code a text begins with ("5.7.1 ..."), for its class digit */
static const char *rules_dsn(const char *text, char cls, char *dsn, size_t size, const char **rest)
{
    size_t n = strspn(text, "0123456789.");

    *rest = text;
    if (n >= 5 && n < size && text[0] == cls && text[1] == '.' && (text[n] == ' ' || text[n] == 0)) {
        memcpy(dsn, text, n);
        dsn[n] = 0;
        *rest = text + n + strspn(text + n, " ");
        return dsn;
    }
    return NULL;
}

/* rules_access_wanted - does this class have an access list to ask? (else skip building keys) */
static int rules_access_wanted(const RULES_CTX *x, int cls)
{
    return (rules_state != NULL && rules_state->n_lists[cls] > 0)
        || (x->use_store && (x->store_mask & (1 << cls)));
}

/*
 * rules_access - one class's access list (config, then store) for the
 * keys in x->keys. Returns a reply code (refused), or 0; *ok is set for
 * an OK entry. what is the thing named in the reply ("<a@b>").
 */
static int rules_access(RULES_CTX *x, int cls, const char *what, int *ok)
{
    enum rules_mode mode = rules_mode("enforce");
    STORE_ACCESS found;
    const STORE_ACCESS *e;
    size_t conf_at;
    char dsn[16];
    const char *text;
    int rc;

    *ok = 0;
    if (!rules_access_wanted(x, cls))
        return 0;
    /* the most specific key decides; for the same key the configuration wins over the store */
    e = rules_list_find(cls, &x->keys, &conf_at);
    if (x->use_store && (x->store_mask & (1 << cls)) && conf_at > 0) {
        rc = store_access_find(x->in->store, rules_class_type[cls], x->keys.key, conf_at, &found, NULL);
        if (rc < 0) {
            log_warn("%s access lookup for %s: %s", rules_class_type[cls], what, store_error(x->in->store));
            return rules_refuse(x, mode, 451, "store_failure", "451 4.3.0 %s: Temporary lookup failure", what);
        }
        if (rc > 0)
            e = &found;
    }
    if (e == NULL)
        return 0;
    switch (e->action) {
    case STORE_ACCESS_OK:
        *ok = 1;
        return 0;
    case STORE_ACCESS_REJECT:
        if (rules_dsn(e->text, '5', dsn, sizeof(dsn), &text) == NULL)
            snprintf(dsn, sizeof(dsn), "5.7.1");
        return rules_refuse(x, mode, 554, rules_class_param[cls], "554 %s %s: %s rejected: %s", dsn, what,
                            rules_class_label[cls], *text ? text : "Access denied");
    case STORE_ACCESS_DEFER:
        if (rules_dsn(e->text, '4', dsn, sizeof(dsn), &text) == NULL)
            snprintf(dsn, sizeof(dsn), "4.7.1");
        return rules_refuse(x, mode, 450, rules_class_param[cls], "450 %s %s: %s rejected: %s", dsn, what,
                            rules_class_label[cls], *text ? text : "Access denied");
    case STORE_ACCESS_WARN: {
        char name[600];
        const RULES_INPUT *in = x->in;

        /* Postfix's line for a WARN action; logged at RCPT, with the envelope */
        if (!x->at_connect)
            log_info("%s: warn: RCPT from %s: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
                     in->queue_id ? in->queue_id : "NOQUEUE", rules_client_name(in, name, sizeof(name)),
                     e->text, in->sender ? in->sender : "", x->rcpt,
                     in->proto ? in->proto : "ESMTP", in->helo ? in->helo : "");
        return 0;
    }
    default:
        return 0;                       /* DUNNO: no decision */
    }
}

/* rules_client - client access list, then the front end's client rules (DNSBL) */
static int rules_client(RULES_CTX *x)
{
    const RULES_INPUT *in = x->in;
    char what[604], name[600];
    int rc, ok;

    if (rules_access_wanted(x, RULES_CLIENT))
        rules_keys_client(&x->keys, in);
    snprintf(what, sizeof(what), "<%s>", rules_client_name(in, name, sizeof(name)));
    if ((rc = rules_access(x, RULES_CLIENT, what, &ok)) != 0 || ok || rules_privileged(in))
        return rc;
    if (in->hooks && in->hooks->client)
        return in->hooks->client(x, in);
    return 0;
}

/*
 * rules_helo_name - is helo a valid host name or address? 1 a name, 2 an
 * address ([literal] or a bare IPv4 address; bin/family set), 0 invalid.
 */
static int rules_helo_name(const char *helo, int *family, unsigned char *bin)
{
    size_t len = strlen(helo), label = 0;
    const char *p, *last;
    char buf[INET6_ADDRSTRLEN + 8];

    if (len >= 2 && helo[0] == '[' && helo[len - 1] == ']') {
        const char *in = helo + 1;
        size_t n = len - 2;

        if (n > 5 && strncasecmp(in, "ipv6:", 5) == 0) {
            in += 5;
            n -= 5;
            if (n >= sizeof(buf))
                return 0;
            memcpy(buf, in, n);
            buf[n] = 0;
            *family = AF_INET6;
            return inet_pton(AF_INET6, buf, bin) == 1 ? 2 : 0;
        }
        if (n >= sizeof(buf))
            return 0;
        memcpy(buf, in, n);
        buf[n] = 0;
        *family = AF_INET;
        return inet_pton(AF_INET, buf, bin) == 1 ? 2 : 0;
    }
    if (inet_pton(AF_INET, helo, bin) == 1) {
        *family = AF_INET;
        return 2;
    }
    if (len > 0 && helo[len - 1] == '.')
        len--;
    if (len == 0 || len > 255)
        return 0;
    /* labels of letters, digits, '-' and '_', not starting or ending with '-'; top label not numeric */
    for (p = last = helo; p <= helo + len; p++) {
        if (p == helo + len || *p == '.') {
            if (label == 0 || label > 63 || *last == '-' || p[-1] == '-')
                return 0;
            if (p == helo + len && strspn(last, "0123456789") >= label)
                return 0;
            label = 0;
            last = p + 1;
            continue;
        }
        if (!isalnum((unsigned char) *p) && *p != '-' && *p != '_')
            return 0;
        if ((unsigned char) *p >= 0x80)
            return 0;
        label++;
    }
    return 1;
}

/* rules_same_name - a == b, ASCII case-insensitive, ignoring one trailing dot each */
static int rules_same_name(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la > 0 && a[la - 1] == '.')
        la--;
    if (lb > 0 && b[lb - 1] == '.')
        lb--;
    return la == lb && la > 0 && strncasecmp(a, b, la) == 0;
}

/* rules_helo - HELO access list, invalid name, non-FQDN, forged */
static int rules_helo(RULES_CTX *x)
{
    const RULES_INPUT *in = x->in;
    const char *helo = in->helo;
    char what[RULES_REPLY_LEN / 2], dom[ADDR_DOMAIN_MAX + 1];
    unsigned char bin[16];
    enum rules_mode mode;
    int rc, ok, kind, family = AF_INET;
    CHECK_WHY why;

    snprintf(what, sizeof(what), "<%s>", helo);
    x->keys.n = 0;
    if (rules_access_wanted(x, RULES_HELO) && addr_domain(helo, strlen(helo), dom) == ADDR_OK)
        rules_keys_domain(&x->keys, dom);
    if ((rc = rules_access(x, RULES_HELO, what, &ok)) != 0 || ok || rules_privileged(in))
        return rc;

    if ((kind = rules_helo_name(helo, &family, bin)) == 0)
        return rules_refuse(x, rules_mode(var_rules_invalid_helo), 501, "reject_invalid_helo",
                            "501 5.5.2 %s: Helo command rejected: Invalid name", what);
    /*
     * A valid address literal is what RFC 5321 (4.1.4) tells a client
     * without a name to send; Postfix's reject_non_fqdn_helo_hostname lets
     * it through too (it only checks the address). A bare address is not a
     * hostname at all.
     */
    if ((kind == 2 && helo[0] != '[')
        || (kind == 1 && (strchr(helo, '.') == NULL || strchr(helo, '.')[1] == 0))) {
        rc = rules_refuse(x, rules_mode(var_rules_non_fqdn_helo), 504, "reject_non_fqdn_helo",
                          "504 5.5.2 %s: Helo command rejected: need fully-qualified hostname", what);
        if (rc != 0)
            return rc;
    }
    if ((mode = rules_mode(var_rules_forged_helo)) == RULES_OFF)
        return 0;
    if (kind == 2) {
        if (rules_state && rules_in_nets(rules_state->ours, rules_state->n_ours, family, bin))
            return rules_refuse(x, mode, 550, "reject_forged_helo", "550 5.7.1 %s: Helo command rejected: "
                                "forged: that is our own address", what);
        return 0;
    }
    if (in->myhostname && rules_same_name(helo, in->myhostname))
        return rules_refuse(x, mode, 550, "reject_forged_helo", "550 5.7.1 %s: Helo command rejected: "
                            "forged: that is our own host name", what);
    rc = check_domain(in->store, helo, strlen(helo), &why);
    if (rc < 0) {
        log_warn("forged HELO check for %s: %s", what, store_error(in->store));
        return rules_refuse(x, mode, 451, "store_failure", "451 4.3.0 %s: Temporary lookup failure", what);
    }
    if (rc > 0)
        return rules_refuse(x, mode, 550, "reject_forged_helo", "550 5.7.1 %s: Helo command rejected: "
                            "forged: that is one of our domains", what);
    return 0;
}

/*
 * rules_sender_domain - the domain of a sender addr_parse() refuses, into
 * a->domain (a->is_literal set): the text after its last "@", as Postfix's
 * own sender checks take it; "" if there is none or it is not a valid
 * domain. Postfix takes more than RFC 5321 does ("a..b@example.com"), and
 * the policy service must still judge such a sender by its domain.
 */
static void rules_sender_domain(const char *s, ADDR *a)
{
    const char *at = strrchr(s, '@');
    size_t len;

    a->domain[0] = 0;
    if (at == NULL)
        return;
    at++;
    len = strlen(at);
    if (s[0] == '<' && len > 0 && at[len - 1] == '>')
        len--;
    if (addr_domain(at, len, a->domain) == ADDR_OK)
        a->is_literal = a->domain[0] == '[';
}

/*
 * rules_sender_bang - a domain-less "host!user" as Postfix stores it
 * (swap_bangpath, on by default: user@host) into *out; 0 if local is not
 * such a path or that does not parse. Only the login and forged sender
 * rules look at it; the access list and the non-FQDN rule judge the
 * sender as given, as Postfix's do.
 */
static int rules_sender_bang(const char *local, int flags, ADDR *out)
{
    const char *bang = strchr(local, '!');
    char buf[ADDR_KEY_SIZE + 1];

    if (local[0] == '"' || bang == NULL || bang == local || bang[1] == 0)
        return 0;
    snprintf(buf, sizeof(buf), "%s@%.*s", bang + 1, (int) (bang - local), local);
    return addr_parse(buf, strlen(buf), flags & ~(ADDR_ALLOW_BARE | ADDR_ALLOW_NULL), out) == ADDR_OK;
}

/*
 * rules_sender - sender access list and checks; the null sender passes.
 * A sender smtpd takes at MAIL always parses (a local part over 64 octets
 * included); one that does not (Postfix takes it, and the policy service
 * sees it) is still judged by the text after its last "@" (access list by
 * domain, non-FQDN, forged), and no login owns it.
 */
static int rules_sender(RULES_CTX *x)
{
    const RULES_INPUT *in = x->in;
    const char *s = in->sender;
    int flags = x->opts.addr_flags | ADDR_ALLOW_NULL | ADDR_ALLOW_BARE | ADDR_ALLOW_ROUTE | ADDR_ALLOW_PERCENT
        | ADDR_ALLOW_BANG | ADDR_ALLOW_LONG_LOCAL;
    char what[ADDR_KEY_SIZE + 4];
    enum rules_mode mode;
    int rc, ok, ours = 0, unsure = 0, parsed;
    CHECK_WHY why;
    ADDR a, swapped;
    const ADDR *owned;                  /* the address a login must own; NULL: none can */
    char base_local[ADDR_KEY_SIZE], base[ADDR_KEY_SIZE + ADDR_DOMAIN_MAX + 2];

    snprintf(what, sizeof(what), "<%.*s>", ADDR_PATH_MAX, s);
    parsed = addr_parse(s, strlen(s), flags, &a) == ADDR_OK;
    if (!parsed)
        rules_sender_domain(s, &a);
    if (rules_access_wanted(x, RULES_SENDER)) {
        if (parsed) {
            rules_keys_mail(&x->keys, &a, x->opts.delimiters);
        } else {
            x->keys.n = 0;
            if (a.domain[0]) {
                rules_keys_add(&x->keys, "@", a.domain, "");
                rules_keys_domain(&x->keys, a.domain);
            }
        }
    }
    if ((rc = rules_access(x, RULES_SENDER, what, &ok)) != 0 || ok || a.is_null)
        return rc;

    if (a.domain[0] == 0 || (!a.is_literal && strchr(a.domain, '.') == NULL)) {
        rc = rules_refuse(x, rules_mode(var_rules_non_fqdn_sender), 504, "reject_non_fqdn_sender",
                          "504 5.5.2 %s: Sender address rejected: need fully-qualified address", what);
        if (rc != 0)
            return rc;
    }
    /*
     * Warn or off, a sender without a domain goes on to the rules below, as
     * Postfix stores it: host!user as user@host; a bare user, which Postfix
     * completes with its $myorigin (unknown here), as no one's.
     */
    if (parsed && a.domain[0])
        owned = &a;
    else if (parsed && rules_sender_bang(a.local, flags, &swapped))
        owned = &swapped;
    else
        owned = NULL;

    if (in->login != NULL && (mode = rules_mode(var_rules_login_mismatch)) != RULES_OFF) {
        /* the store gives logins only whole addresses: one it cannot hold is no login's */
        rc = owned ? store_login_owns(in->store, in->login, owned->key) : 0;
        /* alice+lists@example.com is alice's as much as alice@example.com is */
        if (rc == 0 && owned && x->opts.delimiters && *x->opts.delimiters
            && addr_strip_extension(owned->local, x->opts.delimiters, base_local)) {
            snprintf(base, sizeof(base), "%s@%s", base_local, owned->domain);
            rc = store_login_owns(in->store, in->login, base);
        }
        if (rc < 0) {
            log_warn("sender login check for %s: %s", what, store_error(in->store));
            return rules_refuse(x, mode, 451, "store_failure", "451 4.3.0 %s: Temporary lookup failure", what);
        }
        /* The pairing may be a source's that has never synced: not a mismatch yet (lib/keeper.c). */
        if (rc == 0 && *store_incomplete(in->store))
            return rules_refuse(x, mode, 451, "store_stale", "451 4.3.0 %s: Temporary lookup failure", what);
        if (rc == 0 && (rc = rules_refuse(x, mode, 553, "reject_sender_login_mismatch",
                                          "553 5.7.1 %s: Sender address rejected: "
                                          "not owned by user %.64s", what, in->login)) != 0)
            return rc;
    }
    if (owned != NULL)
        a = *owned;
    if (rules_privileged(in) || a.is_literal || a.domain[0] == 0)
        return 0;

    mode = rules_mode(var_rules_forged_sender);
    /* is the sender domain ours? for the forged sender check, and to spare it the DNS verdict */
    if (mode == RULES_OFF && !(in->hooks && in->hooks->sender_domain_wanted
                               && in->hooks->sender_domain_wanted(in)))
        rc = 0;
    else
        rc = check_domain(in->store, a.domain, strlen(a.domain), &why);
    if (rc < 0) {
        log_warn("forged sender check for %s: %s", what, store_error(in->store));
        if ((rc = rules_refuse(x, mode, 451, "store_failure", "451 4.3.0 %s: Temporary lookup failure",
                               what)) != 0)
            return rc;
        unsure = 1;                     /* the domain may be ours: no "Domain not found" from DNS */
    } else if (rc > 0) {
        ours = 1;
        if ((rc = rules_refuse(x, mode, 550, "reject_forged_sender", "550 5.7.1 %s: Sender address rejected: "
                               "internal sender address from an untrusted client", what)) != 0)
            return rc;
    }
    if (in->hooks && in->hooks->sender)
        return in->hooks->sender(x, in, ours, unsure, what);
    return 0;
}

/* rules_recipient - relay control, recipient access list and checks */
static int rules_recipient(RULES_CTX *x)
{
    const RULES_INPUT *in = x->in;
    RULES_RESULT *out = x->out;
    const char *rcpt = x->rcpt;
    char what[ADDR_KEY_SIZE + 4];
    int flags = (x->opts.addr_flags & ~(ADDR_ALLOW_ROUTE | ADDR_ALLOW_PERCENT | ADDR_ALLOW_BANG))
        | ADDR_ALLOW_BARE;
    int rc, ok, ours, long_local = 0;
    CHECK_WHY why;
    ADDR a;

    snprintf(what, sizeof(what), "<%.*s>", ADDR_PATH_MAX, rcpt);
    rc = addr_parse(rcpt, strlen(rcpt), flags, &a);
    /*
     * A local part over 64 octets (SRS, VERP) is no syntax error for a
     * domain that is not ours: where to relay it is not ours to judge.
     */
    if (rc == ADDR_ERR_LOCAL_LONG && (rc = addr_parse(rcpt, strlen(rcpt), flags | ADDR_ALLOW_LONG_LOCAL, &a))
        == ADDR_OK)
        long_local = 1;

    /* Sender-specified routing is never relayed, for anyone (and never warn-only). */
    if (rc == ADDR_ERR_ROUTE || rc == ADDR_ERR_PERCENT || rc == ADDR_ERR_BANG || rc == ADDR_ERR_MULTI_AT
        || (rc == ADDR_OK && (a.is_literal || strpbrk(a.local, "@%!") != NULL)))
        return rules_set(x, 554, "open_relay_form", "554 5.7.1 %s: Relay access denied", what);
    if (rc != ADDR_OK || a.is_null)
        return rules_set(x, 501, "address_syntax", "501 5.1.3 Bad recipient address syntax");
    snprintf(out->address, sizeof(out->address), "%s", a.key);

    if (a.domain[0] == 0 || strchr(a.domain, '.') == NULL) {
        rc = rules_refuse(x, rules_mode(var_rules_non_fqdn_rcpt), 504, "reject_non_fqdn_recipient",
                          "504 5.5.2 %s: Recipient address rejected: need fully-qualified address", what);
        if (rc != 0)
            return rc;
        if (a.domain[0] == 0 && !in->relay_elsewhere)
            return rules_set(x, 554, "relay_control", "554 5.7.1 %s: Relay access denied", what);
        if (a.domain[0] == 0) {
            out->rule = "relay_control";    /* Postfix completes it ($myorigin) and judges that */
            return 0;
        }
    }

    /* relay control */
    ours = check_domain(in->store, a.domain, strlen(a.domain), &why);
    if (ours < 0) {
        log_warn("domain lookup for %s: %s", what, store_error(in->store));
        return rules_set(x, 451, "store_failure", "451 4.3.0 %s: Temporary lookup failure", what);
    }
    if (!ours && !rules_privileged(in)) {
        if (!in->relay_elsewhere)
            return rules_set(x, 554, "relay_control", "554 5.7.1 %s: Relay access denied", what);
        out->rule = "relay_control";    /* not ours to judge: see rules_check() */
        return 0;
    }
    if (long_local && ours)
        return rules_set(x, 501, "address_syntax", "501 5.1.3 Bad recipient address syntax");
    out->ours = ours;
    snprintf(out->nexthop, sizeof(out->nexthop), "%s", ours ? why.nexthop : "");
    snprintf(out->relay_mode, sizeof(out->relay_mode), "%s", ours ? why.relay_mode : "");

    if (rules_access_wanted(x, RULES_RCPT))
        rules_keys_mail(&x->keys, &a, x->opts.delimiters);
    if ((rc = rules_access(x, RULES_RCPT, what, &ok)) != 0)
        return rc;

    if (ours) {
        rc = check_rcpt(in->store, &x->opts, rcpt, strlen(rcpt), &why);
        if (rc < 0 && why.rule == CHECK_FAIL_INCOMPLETE)
            return rules_set(x, 451, "store_stale", "451 4.3.0 %s: Temporary lookup failure", what);
        if (rc < 0) {
            log_warn("recipient lookup for %s: %s", what, store_error(in->store));
            return rules_set(x, 451, "store_failure", "451 4.3.0 %s: Temporary lookup failure", what);
        }
        if (rc == 0) {
            rc = rules_refuse(x, rules_mode(var_rules_unknown_rcpt), 550, "reject_unknown_recipient",
                              "550 5.1.1 %s: Recipient address rejected: User unknown", what);
            if (rc != 0) {
                out->harvest = 1;
                return rc;
            }
        } else if (!ok && (why.rcpt.flags & STORE_FLAG_INTERNAL_ONLY) && !rules_privileged(in)
                   && (rc = rules_refuse(x, rules_mode(var_rules_internal_only), 550, "reject_internal_only",
                                         "550 5.7.1 %s: Recipient address rejected: "
                                         "this group accepts internal senders only", what)) != 0) {
            return rc;
        }
    }
    return 0;
}

/*
 * rules_store_mask - which of the store's access lists have entries; on
 * a failure, all of them, so that each lookup fails and defers as it should
 */
static void rules_store_mask(RULES_CTX *x)
{
    if (x->use_store && store_access_present(x->in->store, &x->store_mask) < 0)
        x->store_mask = ~0;
}

/* rules_result_clear - no objection yet */
static void rules_result_clear(RULES_RESULT *r, const char *rcpt)
{
    memset(r, 0, sizeof(*r));
    r->rule = "accept";
    snprintf(r->address, sizeof(r->address), "%s", rcpt ? rcpt : "");
}

/* rules_check - every rule for one recipient */
int rules_check(const RULES_INPUT *in, RULES_RESULT *out)
{
    const char *rcpt = in->rcpt ? in->rcpt : "";
    RULES_CTX *x;
    int rc;

    rules_result_clear(out, rcpt);
    if (in->store == NULL || (!in->in_read && store_read_begin(in->store) < 0)) {
        log_warn("RCPT check for <%s>: %s", rcpt, in->store ? store_error(in->store) : "the store is not open");
        if (!in->in_read)
            store_read_end(in->store);
        out->code = 451;
        out->rule = "store_failure";
        snprintf(out->text, sizeof(out->text), "451 4.3.0 <%.*s>: Temporary lookup failure", ADDR_PATH_MAX, rcpt);
        return out->code;
    }
    x = rules_ctx_new(in, rcpt, out);   /* the candidate keys are large for the stack */
    x->use_store = var_rules_store_access;
    rules_store_mask(x);
    params_check_opts(&x->opts);
    if ((rc = rules_client(x)) == 0
        && (in->helo == NULL || (rc = rules_helo(x)) == 0)
        && (in->sender == NULL || (rc = rules_sender(x)) == 0))
        rc = rules_recipient(x);
    if (!in->in_read)
        store_read_end(in->store);
    free(x);
    if (rc == 0) {
        out->code = 0;
        out->text[0] = 0;
        out->harvest = 0;
        /* "relay_control" stays: a domain not ours, left to the front end in front */
        if (strcmp(out->rule, "relay_control") != 0)
            out->rule = "accept";
    }
    return out->code;
}

/* rules_connect - client access list entries that refuse the session */
int rules_connect(const RULES_INPUT *in, RULES_RESULT *out)
{
    char what[604], name[600];
    RULES_CTX *x;
    int ok;

    rules_result_clear(out, "");
    /* warn-only entries (warn_if_reject) are logged at RCPT, with the envelope */
    if (rules_mode("enforce") != RULES_ENFORCE)
        return 0;
    x = rules_ctx_new(in, "", out);
    x->at_connect = 1;
    x->use_store = var_rules_store_access && in->store != NULL && store_read_begin(in->store) == 0;
    rules_store_mask(x);
    if (rules_access_wanted(x, RULES_CLIENT))
        rules_keys_client(&x->keys, in);
    snprintf(what, sizeof(what), "<%s>", rules_client_name(in, name, sizeof(name)));
    /* a lookup failure here is decided again at RCPT, where it defers */
    if (rules_access(x, RULES_CLIENT, what, &ok) == 451)
        rules_result_clear(out, "");
    if (x->use_store)
        store_read_end(in->store);
    free(x);
    return out->code;
}

/* rules_policy_text - a refusal as a Postfix policy action's text */
void rules_policy_text(const RULES_RESULT *r, const char *rcpt, char *out, size_t size)
{
    const char *t = r->text, *rest = t;
    size_t head = 0, dsn;
    char prefix[ADDR_KEY_SIZE + 64];

    /* "550 5.1.1" stays: Postfix takes the code and the status from there */
    if (strspn(t, "0123456789") == 3 && t[3] == ' ') {
        dsn = strspn(t + 4, "0123456789.");
        head = dsn > 0 ? 4 + dsn : 3;
        rest = t + head + (t[head] == ' ');
    }
    snprintf(prefix, sizeof(prefix), "<%.*s>: Recipient address rejected: ", ADDR_PATH_MAX, rcpt ? rcpt : "");
    if (strncmp(rest, prefix, strlen(prefix)) == 0) {
        rest += strlen(prefix);
    } else {
        static const char *const others[] = {"Sender address rejected", "Helo command rejected",
                                             "Client host rejected", NULL};
        int other = 0;

        snprintf(prefix, sizeof(prefix), "<%.*s>: ", ADDR_PATH_MAX, rcpt ? rcpt : "");
        /* Not a sender's or HELO's head that happens to equal the recipient: it names what was judged. */
        if (strncmp(rest, prefix, strlen(prefix)) == 0) {
            for (const char *const *o = others; *o && !other; o++)
                other = strncmp(rest + strlen(prefix), *o, strlen(*o)) == 0;
            if (!other)
                rest += strlen(prefix);
        }
    }
    snprintf(out, size, "%.*s%s%s", (int) head, t, head ? " " : "", rest);
}
