/*
 * smtpd_check.c - the restrictions of rcptgate-smtpd
 *
 * SYNOPSIS
 *	smtpd_check_init() at start and on reload; smtpd_check_trusted() at
 *	connect; smtpd_check_connect/helo/mail/rcpt/data() per command.
 *
 * DESCRIPTION
 *	What a careful postmaster's Postfix MX proxy refuses, in Postfix's
 *	order and with its reply texts. As with smtpd_delay_reject = yes,
 *	client, HELO and sender restrictions are evaluated at RCPT, so every
 *	rejection names a recipient; HELO and MAIL are refused for syntax
 *	only. At RCPT, class by class:
 *
 *	client     access list; DNSBL (c->dns)
 *	HELO       access list; invalid name, non-FQDN, forged (our host
 *	           name, one of our domains or addresses)
 *	sender     access list; non-FQDN; sender login mismatch (AUTH);
 *	           forged internal sender; unknown domain (c->dns); RHSBL
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
 *	State built from the configuration (mynetworks, access lists, our
 *	addresses) is swapped in whole by smtpd_check_init(), so a bad
 *	reload keeps the old state.
 *
 * DIAGNOSTICS
 *	smtpd_check_init() names the parameter, line and entry at fault.
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
#include "smtpd_check.h"
#include "smtpd_log.h"
#include "smtpd_params.h"
#include "store_access.h"
#include "xalloc.h"

/* An address or network, in network byte order. */
typedef struct check_net {
    int family;                 /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
} CHECK_NET;

/* The restriction classes, with their access list and reply wording. */
enum check_class { CLASS_CLIENT, CLASS_HELO, CLASS_SENDER, CLASS_RCPT, CLASS_COUNT };

static const char *const check_class_type[CLASS_COUNT] = {
    STORE_ACCESS_CLIENT, STORE_ACCESS_HELO, STORE_ACCESS_SENDER, STORE_ACCESS_RCPT,
};
static const char *const check_class_label[CLASS_COUNT] = {
    "Client host", "Helo command", "Sender address", "Recipient address",
};
static const char *const check_class_param[CLASS_COUNT] = {
    "client_access", "helo_access", "sender_access", "recipient_access",
};

typedef struct check_state {
    CHECK_NET *mynets;
    size_t n_mynets;
    CHECK_NET *ours;            /* our own addresses (getifaddrs) */
    size_t n_ours;
    STORE_ACCESS *lists[CLASS_COUNT];
    size_t n_lists[CLASS_COUNT];
} CHECK_STATE;

static CHECK_STATE *check_state;

/* Candidate keys of one access lookup, most specific first. */
#define CHECK_KEYS_MAX  140     /* an IPv6 address and its 128 networks */

typedef struct check_keys {
    char buf[CHECK_KEYS_MAX][STORE_ACCESS_KEY_SIZE];
    const char *key[CHECK_KEYS_MAX];
    size_t n;
} CHECK_KEYS;

/* What one RCPT check works with. */
typedef struct check_ctx {
    SMTPD_CLIENT *c;
    const char *rcpt;           /* as given, for the logs */
    SMTPD_REPLY *r;
    CHECK_OPTS opts;
    int use_store;              /* consult the store's access table */
    int store_mask;             /* its types that have entries (store_access_present) */
    int at_connect;             /* smtpd_check_connect: only REJECT and DEFER act */
    CHECK_KEYS keys;            /* scratch for the access lookups */
} CHECK_CTX;

/*
 * check_ctx_new - a context with everything but the key scratch zeroed:
 * that is some 45 kB, filled (n = 0 first) before each access lookup
 * reads it, and clearing it for every RCPT would be wasted work.
 */
static CHECK_CTX *check_ctx_new(SMTPD_CLIENT *c, const char *rcpt, SMTPD_REPLY *r)
{
    CHECK_CTX *x = xmalloc(sizeof(*x));

    memset(x, 0, offsetof(CHECK_CTX, keys));
    x->keys.n = 0;
    x->c = c;
    x->rcpt = rcpt;
    x->r = r;
    return x;
}

/* check_state_free - free a state; NULL is fine */
static void check_state_free(CHECK_STATE *s)
{
    if (s == NULL)
        return;
    free(s->mynets);
    free(s->ours);
    for (int i = 0; i < CLASS_COUNT; i++)
        free(s->lists[i]);
    free(s);
}

/* check_net_parse - "addr[/bits]", "[addr]/bits": 0 or -1 */
static int check_net_parse(const char *text, CHECK_NET *net)
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

/* check_net_match - is the address (family, bytes) inside net? */
static int check_net_match(const CHECK_NET *net, int family, const unsigned char *addr)
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

/* check_addr_bin - a textual address to (family, bytes); IPv4-mapped IPv6 becomes IPv4 */
static int check_addr_bin(const char *text, int *family, unsigned char *bin)
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

/* check_sa_bin - a socket address to (family, bytes); -1 for other families */
static int check_sa_bin(const struct sockaddr *sa, int *family, unsigned char *bin)
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
    return check_addr_bin(text, family, bin);
}

/* check_in_nets - is (family, bin) in one of n nets? */
static int check_in_nets(const CHECK_NET *nets, size_t n, int family, const unsigned char *bin)
{
    for (size_t i = 0; i < n; i++)
        if (check_net_match(&nets[i], family, bin))
            return 1;
    return 0;
}

/* check_add_mynet - one mynetworks word into s; 0 or -1 with err */
static int check_add_mynet(CHECK_STATE *s, size_t *cap, const char *word, const char *where,
                           char *err, size_t errlen)
{
    if (s->n_mynets == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        s->mynets = xrealloc(s->mynets, *cap * sizeof(*s->mynets));
    }
    if (check_net_parse(word, &s->mynets[s->n_mynets]) < 0) {
        snprintf(err, errlen, "smtpd.mynetworks: %s%sbad CIDR \"%s\"", where, *where ? ": " : "", word);
        return -1;
    }
    s->n_mynets++;
    return 0;
}

/* check_mynet_file - a mynetworks file, as Postfix reads one: words, "#" comments */
static int check_mynet_file(CHECK_STATE *s, size_t *cap, const char *path, char *err, size_t errlen)
{
    char line[1024], where[600];
    FILE *fp = fopen(path, "r");
    int n = 0, rc = 0;

    if (fp == NULL) {
        snprintf(err, errlen, "smtpd.mynetworks: %s: %m", path);
        return -1;
    }
    while (rc == 0 && fgets(line, sizeof(line), fp) != NULL) {
        char *word, *save = NULL;

        n++;
        line[strcspn(line, "#")] = 0;
        snprintf(where, sizeof(where), "%s line %d", path, n);
        for (word = strtok_r(line, " \t\r\n,", &save); word && rc == 0; word = strtok_r(NULL, " \t\r\n,", &save))
            rc = check_add_mynet(s, cap, word, where, err, errlen);
    }
    fclose(fp);
    return rc;
}

/*
 * check_parse_mynetworks - var_smtpd_mynetworks into s: CIDRs separated
 * by blanks or commas, and "/path" for a file of them (as Postfix's
 * mynetworks = /etc/postfix/mynetworks). 0 or -1 with err.
 */
static int check_parse_mynetworks(CHECK_STATE *s, const char *value, char *err, size_t errlen)
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
            snprintf(err, errlen, "smtpd.mynetworks: bad CIDR \"%.40s...\"", p);
            return -1;
        }
        memcpy(word, p, n);
        word[n] = 0;
        p += n;
        if (word[0] == '/' ? check_mynet_file(s, &cap, word, err, errlen) < 0
            : check_add_mynet(s, &cap, word, "", err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* check_parse_list - one access list ("KEY ACTION [text]" per line) into s */
static int check_parse_list(CHECK_STATE *s, int cls, const char *value, char *err, size_t errlen)
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
            snprintf(err, errlen, "smtpd.%s: entry %d: too long", check_class_param[cls], line);
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
        if (store_access_entry(check_class_type[cls], key, action, text, &e, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "smtpd.%s: entry %d \"%s%s%s\": %s", check_class_param[cls], line,
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

/* check_learn_ours - our own addresses, for the forged-HELO check */
static void check_learn_ours(CHECK_STATE *s)
{
    struct ifaddrs *ifa, *i;
    size_t cap = 0;

    if (getifaddrs(&ifa) < 0) {
        log_warn("smtpd checks: cannot list our own addresses: %m; the forged HELO check "
                 "knows only our host name and domains");
        return;
    }
    for (i = ifa; i != NULL; i = i->ifa_next) {
        CHECK_NET net;

        memset(&net, 0, sizeof(net));
        if (check_sa_bin(i->ifa_addr, &net.family, net.addr) < 0)
            continue;
        net.bits = net.family == AF_INET ? 32 : 128;
        if (check_in_nets(s->ours, s->n_ours, net.family, net.addr))
            continue;
        if (s->n_ours == cap) {
            cap = cap ? cap * 2 : 8;
            s->ours = xrealloc(s->ours, cap * sizeof(*s->ours));
        }
        s->ours[s->n_ours++] = net;
    }
    freeifaddrs(ifa);
}

/* smtpd_check_init - (re)build the state from the [smtpd] variables */
int smtpd_check_init(char *err, size_t errlen)
{
    const char *lists[CLASS_COUNT] = {
        var_smtpd_client_access, var_smtpd_helo_access, var_smtpd_sender_access, var_smtpd_rcpt_access,
    };
    CHECK_STATE *s = xcalloc(1, sizeof(*s));

    if (check_parse_mynetworks(s, var_smtpd_mynetworks, err, errlen) < 0)
        goto fail;
    for (int i = 0; i < CLASS_COUNT; i++)
        if (check_parse_list(s, i, lists[i], err, errlen) < 0)
            goto fail;
    check_learn_ours(s);
    check_state_free(check_state);
    check_state = s;
    return 0;

fail:
    check_state_free(s);
    return -1;
}

/* smtpd_check_trusted - is this address in mynetworks? */
int smtpd_check_trusted(const struct sockaddr *sa)
{
    unsigned char bin[16];
    int family;

    if (check_state == NULL || check_sa_bin(sa, &family, bin) < 0)
        return 0;
    return check_in_nets(check_state->mynets, check_state->n_mynets, family, bin);
}

/* check_privileged - trusted or authenticated: may relay, skips the heuristics */
static int check_privileged(const SMTPD_CLIENT *c)
{
    return c->trusted || c->sasl_user != NULL;
}

/* check_client_name - "name[addr]" as Postfix names a client in replies */
static const char *check_client_name(const SMTPD_CLIENT *c, char *buf, size_t size)
{
    snprintf(buf, size, "%s[%s]", c->name[0] ? c->name : "unknown", c->addr);
    return buf;
}

/*
 * check_refuse - a check that would refuse: by mode, refuse (the reply
 * in x->r, returns code), log a reject_warning and go on (0), or nothing.
 */
static int check_refuse(CHECK_CTX *x, enum smtpd_mode mode, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int check_refuse(CHECK_CTX *x, enum smtpd_mode mode, int code, const char *fmt, ...)
{
    SMTPD_REPLY tmp;
    va_list ap;

    if (mode == SMTPD_OFF)
        return 0;
    memset(&tmp, 0, sizeof(tmp));
    tmp.code = code;
    va_start(ap, fmt);
    vsnprintf(tmp.text, sizeof(tmp.text), fmt, ap);
    va_end(ap);
    if (mode == SMTPD_WARN) {
        smtpd_log_reject(x->c, "RCPT", &tmp, x->rcpt, 1);
        return 0;
    }
    *x->r = tmp;
    return code;
}

/* check_keys_add - one more candidate key: a, b and c joined (too long: left out) */
static void check_keys_add(CHECK_KEYS *k, const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *out;

    if (k->n >= CHECK_KEYS_MAX || la + lb + lc >= STORE_ACCESS_KEY_SIZE)
        return;
    out = k->buf[k->n];
    memcpy(out, a, la);
    memcpy(out + la, b, lb);
    memcpy(out + la + lb, c, lc);
    out[la + lb + lc] = 0;
    k->key[k->n] = out;
    k->n++;
}

/* check_keys_domain - domain, then each parent as "parent" and ".parent" (access(5)) */
static void check_keys_domain(CHECK_KEYS *k, const char *domain)
{
    const char *p;

    check_keys_add(k, domain, "", "");
    if (domain[0] == '[')
        return;
    for (p = strchr(domain, '.'); p != NULL && p[1]; p = strchr(p + 1, '.')) {
        check_keys_add(k, p + 1, "", "");
        check_keys_add(k, p, "", "");
    }
}

/* check_keys_client - the client address, then every network holding it */
static void check_keys_client(CHECK_KEYS *k, const SMTPD_CLIENT *c)
{
    unsigned char bin[16], net[16];
    char text[INET6_ADDRSTRLEN], bits[8];
    int family, max;

    k->n = 0;
    if (check_addr_bin(c->addr, &family, bin) < 0)
        return;
    max = family == AF_INET ? 32 : 128;
    inet_ntop(family, bin, text, sizeof(text));
    check_keys_add(k, text, "", "");
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
        check_keys_add(k, text, bits, "");
    }
}

/* check_keys_mail - an address: itself, without extension, @domain, domain and parents, user@ */
static void check_keys_mail(CHECK_KEYS *k, const ADDR *a, const char *delims)
{
    char local[ADDR_KEY_SIZE];
    int stripped;

    k->n = 0;
    if (a->is_null) {
        check_keys_add(k, "<>", "", "");
        return;
    }
    stripped = delims && *delims && addr_strip_extension(a->local, delims, local);
    if (a->domain[0]) {
        check_keys_add(k, a->key, "", "");
        if (stripped)
            check_keys_add(k, local, "@", a->domain);
        check_keys_add(k, "@", a->domain, "");
        check_keys_domain(k, a->domain);
    }
    check_keys_add(k, a->local, "@", "");
    if (stripped)
        check_keys_add(k, local, "@", "");
}

/* check_list_find - the config list's entry for the first key that has one; *which = its index */
static const STORE_ACCESS *check_list_find(int cls, const CHECK_KEYS *k, size_t *which)
{
    *which = k->n;
    if (check_state == NULL)
        return NULL;
    for (size_t i = 0; i < k->n; i++)
        for (size_t j = 0; j < check_state->n_lists[cls]; j++)
            if (strcmp(check_state->lists[cls][j].key, k->key[i]) == 0) {
                *which = i;
                return &check_state->lists[cls][j];
            }
    return NULL;
}

/* check_dsn - the enhanced status code a text begins with ("5.7.1 ..."), for its class digit */
static const char *check_dsn(const char *text, char cls, char *dsn, size_t size, const char **rest)
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

/* check_access_wanted - does this class have an access list to ask? (else skip building keys) */
static int check_access_wanted(const CHECK_CTX *x, int cls)
{
    return (check_state != NULL && check_state->n_lists[cls] > 0)
        || (x->use_store && (x->store_mask & (1 << cls)));
}

/*
 * check_access - one class's access list (config, then store) for the
 * keys in x->keys. Returns a reply code (refused), or 0; *ok is set for
 * an OK entry. what is the thing named in the reply ("<a@b>").
 */
static int check_access(CHECK_CTX *x, int cls, const char *what, int *ok)
{
    enum smtpd_mode mode = smtpd_mode("enforce");
    STORE_ACCESS found;
    const STORE_ACCESS *e;
    size_t conf_at;
    char dsn[16];
    const char *text;
    int rc;

    *ok = 0;
    if (!check_access_wanted(x, cls))
        return 0;
    /* the most specific key decides; for the same key the configuration wins over the store */
    e = check_list_find(cls, &x->keys, &conf_at);
    if (x->use_store && (x->store_mask & (1 << cls)) && conf_at > 0) {
        rc = store_access_find(smtpd_store, check_class_type[cls], x->keys.key, conf_at, &found, NULL);
        if (rc < 0) {
            log_warn("%s access lookup for %s: %s", check_class_type[cls], what, store_error(smtpd_store));
            return check_refuse(x, mode, 451, "451 4.3.0 %s: Temporary lookup failure", what);
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
        if (check_dsn(e->text, '5', dsn, sizeof(dsn), &text) == NULL)
            snprintf(dsn, sizeof(dsn), "5.7.1");
        return check_refuse(x, mode, 554, "554 %s %s: %s rejected: %s", dsn, what,
                            check_class_label[cls], *text ? text : "Access denied");
    case STORE_ACCESS_DEFER:
        if (check_dsn(e->text, '4', dsn, sizeof(dsn), &text) == NULL)
            snprintf(dsn, sizeof(dsn), "4.7.1");
        return check_refuse(x, mode, 450, "450 %s %s: %s rejected: %s", dsn, what,
                            check_class_label[cls], *text ? text : "Access denied");
    case STORE_ACCESS_WARN: {
        char name[SMTPD_NAME_LEN + SMTPD_ADDR_LEN + 4];

        /* Postfix's line for a WARN action; logged at RCPT, with the envelope */
        if (!x->at_connect)
            log_info("%s: warn: RCPT from %s: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
                     x->c->queue_id ? x->c->queue_id : "NOQUEUE", check_client_name(x->c, name, sizeof(name)),
                     e->text, x->c->sender ? x->c->sender : "", x->rcpt,
                     x->c->esmtp ? "ESMTP" : "SMTP", x->c->helo ? x->c->helo : "");
        return 0;
    }
    default:
        return 0;                       /* DUNNO: no decision */
    }
}

/* check_client - client access list, DNSBL */
static int check_client(CHECK_CTX *x)
{
    SMTPD_CLIENT *c = x->c;
    char what[SMTPD_NAME_LEN + SMTPD_ADDR_LEN + 4], name[sizeof(what) - 2];
    int rc, ok;

    if (check_access_wanted(x, CLASS_CLIENT))
        check_keys_client(&x->keys, c);
    snprintf(what, sizeof(what), "<%s>", check_client_name(c, name, sizeof(name)));
    if ((rc = check_access(x, CLASS_CLIENT, what, &ok)) != 0 || ok || check_privileged(c))
        return rc;
    if (c->dns.dnsbl == SMTPD_DNS_YES) {
        const char *t = c->dns.dnsbl_text;

        return check_refuse(x, smtpd_mode(var_smtpd_dnsbl_mode), 554,
                            "554 5.7.1 Service unavailable; Client host [%s] blocked using %s%s%s",
                            c->addr, c->dns.dnsbl_zone ? c->dns.dnsbl_zone : "?",
                            t && *t ? "; " : "", t && *t ? t : "");
    }
    return 0;
}

/*
 * check_helo_name - is helo a valid host name or address? 1 a name, 2 an
 * address ([literal] or a bare IPv4 address; bin/family set), 0 invalid.
 */
static int check_helo_name(const char *helo, int *family, unsigned char *bin)
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

/* check_same_name - a == b, ASCII case-insensitive, ignoring one trailing dot each */
static int check_same_name(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la > 0 && a[la - 1] == '.')
        la--;
    if (lb > 0 && b[lb - 1] == '.')
        lb--;
    return la == lb && la > 0 && strncasecmp(a, b, la) == 0;
}

/* check_helo - HELO access list, invalid name, non-FQDN, forged */
static int check_helo(CHECK_CTX *x)
{
    SMTPD_CLIENT *c = x->c;
    const char *helo = c->helo;
    char what[SMTPD_REPLY_LEN / 2], dom[ADDR_DOMAIN_MAX + 1];
    unsigned char bin[16];
    enum smtpd_mode mode;
    int rc, ok, kind, family = AF_INET;
    CHECK_WHY why;

    snprintf(what, sizeof(what), "<%s>", helo);
    x->keys.n = 0;
    if (check_access_wanted(x, CLASS_HELO) && addr_domain(helo, strlen(helo), dom) == ADDR_OK)
        check_keys_domain(&x->keys, dom);
    if ((rc = check_access(x, CLASS_HELO, what, &ok)) != 0 || ok || check_privileged(c))
        return rc;

    if ((kind = check_helo_name(helo, &family, bin)) == 0)
        return check_refuse(x, smtpd_mode(var_smtpd_invalid_helo), 501,
                            "501 5.5.2 %s: Helo command rejected: Invalid name", what);
    if (kind == 2 || strchr(helo, '.') == NULL || strchr(helo, '.')[1] == 0) {
        rc = check_refuse(x, smtpd_mode(var_smtpd_non_fqdn_helo), 504,
                          "504 5.5.2 %s: Helo command rejected: need fully-qualified hostname", what);
        if (rc != 0)
            return rc;
    }
    if ((mode = smtpd_mode(var_smtpd_forged_helo)) == SMTPD_OFF)
        return 0;
    if (kind == 2) {
        if (check_state && check_in_nets(check_state->ours, check_state->n_ours, family, bin))
            return check_refuse(x, mode, 550, "550 5.7.1 %s: Helo command rejected: "
                                "forged: that is our own address", what);
        return 0;
    }
    if (check_same_name(helo, smtpd_hostname))
        return check_refuse(x, mode, 550, "550 5.7.1 %s: Helo command rejected: "
                            "forged: that is our own host name", what);
    rc = check_domain(smtpd_store, helo, strlen(helo), &why);
    if (rc < 0) {
        log_warn("forged HELO check for %s: %s", what, store_error(smtpd_store));
        return check_refuse(x, mode, 451, "451 4.3.0 %s: Temporary lookup failure", what);
    }
    if (rc > 0)
        return check_refuse(x, mode, 550, "550 5.7.1 %s: Helo command rejected: "
                            "forged: that is one of our domains", what);
    return 0;
}

/* check_sender - sender access list and checks; the null sender passes */
static int check_sender(CHECK_CTX *x)
{
    SMTPD_CLIENT *c = x->c;
    const char *s = c->sender;
    char what[ADDR_KEY_SIZE + 4];
    enum smtpd_mode mode;
    int rc, ok, ours = 0, unsure = 0;
    CHECK_WHY why;
    ADDR a;
    char base_local[ADDR_KEY_SIZE], base[ADDR_KEY_SIZE + ADDR_DOMAIN_MAX + 2];

    if (addr_parse(s, strlen(s), x->opts.addr_flags | ADDR_ALLOW_NULL | ADDR_ALLOW_BARE
                   | ADDR_ALLOW_ROUTE | ADDR_ALLOW_PERCENT | ADDR_ALLOW_BANG, &a) != ADDR_OK)
        return 0;                       /* refused at MAIL already */
    snprintf(what, sizeof(what), "<%.*s>", ADDR_PATH_MAX, s);
    if (check_access_wanted(x, CLASS_SENDER))
        check_keys_mail(&x->keys, &a, x->opts.delimiters);
    if ((rc = check_access(x, CLASS_SENDER, what, &ok)) != 0 || ok || a.is_null)
        return rc;

    if (a.domain[0] == 0 || (!a.is_literal && strchr(a.domain, '.') == NULL)) {
        rc = check_refuse(x, smtpd_mode(var_smtpd_non_fqdn_sender), 504,
                          "504 5.5.2 %s: Sender address rejected: need fully-qualified address", what);
        if (rc != 0 || a.domain[0] == 0)
            return rc;
    }
    if (c->sasl_user != NULL && (mode = smtpd_mode(var_smtpd_login_mismatch)) != SMTPD_OFF) {
        rc = store_login_owns(smtpd_store, c->sasl_user, a.key);
        /* alice+lists@example.com is alice's as much as alice@example.com is */
        if (rc == 0 && x->opts.delimiters && *x->opts.delimiters
            && addr_strip_extension(a.local, x->opts.delimiters, base_local)) {
            snprintf(base, sizeof(base), "%s@%s", base_local, a.domain);
            rc = store_login_owns(smtpd_store, c->sasl_user, base);
        }
        if (rc < 0) {
            log_warn("sender login check for %s: %s", what, store_error(smtpd_store));
            return check_refuse(x, mode, 451, "451 4.3.0 %s: Temporary lookup failure", what);
        }
        if (rc == 0 && (rc = check_refuse(x, mode, 553, "553 5.7.1 %s: Sender address rejected: "
                                          "not owned by user %.64s", what, c->sasl_user)) != 0)
            return rc;
    }
    if (check_privileged(c) || a.is_literal)
        return 0;

    mode = smtpd_mode(var_smtpd_forged_sender);
    /* is the sender domain ours? for the forged sender check, and to spare it the DNS verdict */
    if (mode == SMTPD_OFF && (smtpd_mode(var_smtpd_unknown_sender_domain) == SMTPD_OFF
                              || (c->dns.sender_domain != SMTPD_DNS_NO
                                  && c->dns.sender_domain != SMTPD_DNS_TEMP)))
        rc = 0;
    else
        rc = check_domain(smtpd_store, a.domain, strlen(a.domain), &why);
    if (rc < 0) {
        log_warn("forged sender check for %s: %s", what, store_error(smtpd_store));
        if ((rc = check_refuse(x, mode, 451, "451 4.3.0 %s: Temporary lookup failure", what)) != 0)
            return rc;
        unsure = 1;                     /* the domain may be ours: no "Domain not found" from DNS */
    } else if (rc > 0) {
        ours = 1;
        if ((rc = check_refuse(x, mode, 550, "550 5.7.1 %s: Sender address rejected: "
                               "internal sender address from an untrusted client", what)) != 0)
            return rc;
    }
    /* our own domains need no DNS to exist (they may have none outside) */
    mode = smtpd_mode(var_smtpd_unknown_sender_domain);
    if (unsure && (c->dns.sender_domain == SMTPD_DNS_NO || c->dns.sender_domain == SMTPD_DNS_TEMP)
        && (rc = check_refuse(x, mode, 451, "451 4.3.0 %s: Temporary lookup failure", what)) != 0)
        return rc;
    if (!ours && !unsure && c->dns.sender_domain == SMTPD_DNS_NO
        && (rc = check_refuse(x, mode, 550, "550 5.1.8 %s: Sender address rejected: Domain not found",
                              what)) != 0)
        return rc;
    if (!ours && !unsure && c->dns.sender_domain == SMTPD_DNS_TEMP
        && (rc = check_refuse(x, mode, 450, "450 4.1.8 %s: Sender address rejected: Domain not found",
                              what)) != 0)
        return rc;
    if (c->dns.rhsbl == SMTPD_DNS_YES) {
        const char *t = c->dns.rhsbl_text;

        return check_refuse(x, smtpd_mode(var_smtpd_rhsbl_mode), 554,
                            "554 5.7.1 Service unavailable; Sender address [%.*s] blocked using %s%s%s",
                            ADDR_PATH_MAX, s, c->dns.rhsbl_zone ? c->dns.rhsbl_zone : "?",
                            t && *t ? "; " : "", t && *t ? t : "");
    }
    return 0;
}

/* check_nexthop - fill info's next hop; 451 when there is none */
static int check_nexthop(CHECK_CTX *x, const char *what, const char *domain_nexthop, SMTPD_RCPT_INFO *info)
{
    const char *hop = domain_nexthop && *domain_nexthop ? domain_nexthop : var_smtpd_default_nexthop;

    if (hop == NULL || *hop == 0) {
        log_warn("no next hop for %s: set [smtpd] default_nexthop, or the domain's next hop "
                 "(rcptgate domain add DOMAIN NEXTHOP)", what);
        return smtpd_reply_set(x->r, 451, "451 4.3.0 %s: Temporary lookup failure", what);
    }
    snprintf(info->nexthop, sizeof(info->nexthop), "%s", hop);
    return 0;
}

/* check_recipient - relay control, recipient access list and checks */
static int check_recipient(CHECK_CTX *x, SMTPD_RCPT_INFO *info)
{
    SMTPD_CLIENT *c = x->c;
    const char *rcpt = x->rcpt;
    char what[ADDR_KEY_SIZE + 4], nexthop[sizeof(info->nexthop)];
    int flags = (x->opts.addr_flags & ~(ADDR_ALLOW_ROUTE | ADDR_ALLOW_PERCENT | ADDR_ALLOW_BANG))
        | ADDR_ALLOW_BARE;
    int rc, ok, ours;
    CHECK_WHY why;
    ADDR a;

    snprintf(what, sizeof(what), "<%.*s>", ADDR_PATH_MAX, rcpt);
    rc = addr_parse(rcpt, strlen(rcpt), flags, &a);

    /* Sender-specified routing is never relayed, for anyone (and never warn-only). */
    if (rc == ADDR_ERR_ROUTE || rc == ADDR_ERR_PERCENT || rc == ADDR_ERR_BANG || rc == ADDR_ERR_MULTI_AT
        || (rc == ADDR_OK && (a.is_literal || strpbrk(a.local, "@%!") != NULL)))
        return smtpd_reply_set(x->r, 554, "554 5.7.1 %s: Relay access denied", what);
    if (rc != ADDR_OK || a.is_null)
        return smtpd_reply_set(x->r, 501, "501 5.1.3 Bad recipient address syntax");
    snprintf(info->address, sizeof(info->address), "%s", a.key);

    if (a.domain[0] == 0 || strchr(a.domain, '.') == NULL) {
        rc = check_refuse(x, smtpd_mode(var_smtpd_non_fqdn_rcpt), 504,
                          "504 5.5.2 %s: Recipient address rejected: need fully-qualified address", what);
        if (rc != 0)
            return rc;
        if (a.domain[0] == 0)
            return smtpd_reply_set(x->r, 554, "554 5.7.1 %s: Relay access denied", what);
    }

    /* relay control */
    ours = check_domain(smtpd_store, a.domain, strlen(a.domain), &why);
    if (ours < 0) {
        log_warn("domain lookup for %s: %s", what, store_error(smtpd_store));
        return smtpd_reply_set(x->r, 451, "451 4.3.0 %s: Temporary lookup failure", what);
    }
    if (!ours && !check_privileged(c))
        return smtpd_reply_set(x->r, 554, "554 5.7.1 %s: Relay access denied", what);
    snprintf(nexthop, sizeof(nexthop), "%s", ours ? why.nexthop : "");

    if (check_access_wanted(x, CLASS_RCPT))
        check_keys_mail(&x->keys, &a, x->opts.delimiters);
    if ((rc = check_access(x, CLASS_RCPT, what, &ok)) != 0)
        return rc;

    if (ours) {
        rc = check_rcpt(smtpd_store, &x->opts, rcpt, strlen(rcpt), &why);
        if (rc < 0) {
            log_warn("recipient lookup for %s: %s", what, store_error(smtpd_store));
            return smtpd_reply_set(x->r, 451, "451 4.3.0 %s: Temporary lookup failure", what);
        }
        if (rc == 0) {
            rc = check_refuse(x, smtpd_mode(var_smtpd_unknown_rcpt), 550,
                              "550 5.1.1 %s: Recipient address rejected: User unknown", what);
            if (rc != 0) {
                x->r->harvest = 1;
                return rc;
            }
        } else if (!ok && (why.rcpt.flags & STORE_FLAG_INTERNAL_ONLY) && !check_privileged(c)
                   && (rc = check_refuse(x, smtpd_mode(var_smtpd_internal_only), 550,
                                         "550 5.7.1 %s: Recipient address rejected: "
                                         "this group accepts internal senders only", what)) != 0) {
            return rc;
        }
    }
    return check_nexthop(x, what, nexthop, info);
}

/*
 * check_store_mask - which of the store's access lists have entries; on
 * a failure, all of them, so that each lookup fails and defers as it should
 */
static void check_store_mask(CHECK_CTX *x)
{
    if (x->use_store && store_access_present(smtpd_store, &x->store_mask) < 0)
        x->store_mask = ~0;
}

/* check_reply_clear - no objection yet */
static void check_reply_clear(SMTPD_REPLY *r)
{
    r->code = 0;
    r->text[0] = 0;
    r->harvest = 0;
    r->disconnect = 0;
}

/* smtpd_check_rcpt - every restriction for one recipient */
int smtpd_check_rcpt(SMTPD_CLIENT *c, const char *rcpt, SMTPD_RCPT_INFO *info, SMTPD_REPLY *r)
{
    CHECK_CTX *x;
    const char *why = NULL;
    int rc;

    check_reply_clear(r);
    snprintf(info->address, sizeof(info->address), "%s", rcpt);
    info->nexthop[0] = 0;
    /* closed, unreadable or stale past max_age: every answer defers */
    if (smtpd_store_use(&why) == NULL || store_read_begin(smtpd_store) < 0) {
        log_warn("RCPT check for <%s>: %s", rcpt, smtpd_store ? store_error(smtpd_store) : why);
        store_read_end(smtpd_store);
        return smtpd_reply_set(r, 451, "451 4.3.0 <%.*s>: Temporary lookup failure", ADDR_PATH_MAX, rcpt);
    }
    x = check_ctx_new(c, rcpt, r);      /* the candidate keys are large for the stack */
    x->use_store = var_smtpd_store_access;
    check_store_mask(x);
    params_check_opts(&x->opts);
    if ((rc = check_client(x)) == 0
        && (c->helo == NULL || (rc = check_helo(x)) == 0)
        && (c->sender == NULL || (rc = check_sender(x)) == 0))
        rc = check_recipient(x, info);
    store_read_end(smtpd_store);
    free(x);
    if (rc == 0)
        check_reply_clear(r);
    return r->code;
}

/* smtpd_check_connect - client access list entries that refuse the session */
int smtpd_check_connect(SMTPD_CLIENT *c, SMTPD_REPLY *r)
{
    char what[SMTPD_NAME_LEN + SMTPD_ADDR_LEN + 4], name[sizeof(what) - 2];
    CHECK_CTX *x;
    int ok;

    check_reply_clear(r);
    /* warn-only entries (warn_if_reject) are logged at RCPT, with the envelope */
    if (smtpd_mode("enforce") != SMTPD_ENFORCE)
        return 0;
    x = check_ctx_new(c, "", r);
    x->at_connect = 1;
    x->use_store = var_smtpd_store_access && smtpd_store != NULL && store_read_begin(smtpd_store) == 0;
    check_store_mask(x);
    if (check_access_wanted(x, CLASS_CLIENT))
        check_keys_client(&x->keys, c);
    snprintf(what, sizeof(what), "<%s>", check_client_name(c, name, sizeof(name)));
    /* a lookup failure here is decided again at RCPT, where it defers */
    if (check_access(x, CLASS_CLIENT, what, &ok) == 451)
        check_reply_clear(r);
    if (x->use_store)
        store_read_end(smtpd_store);
    free(x);
    return r->code;
}

/* smtpd_check_helo - HELO/EHLO syntax only */
int smtpd_check_helo(SMTPD_CLIENT *c, const char *helo, SMTPD_REPLY *r)
{
    check_reply_clear(r);
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
    check_reply_clear(r);
    params_check_opts(&opts);
    if (sender == NULL || addr_parse(sender, strlen(sender), opts.addr_flags | ADDR_ALLOW_NULL
                                     | ADDR_ALLOW_BARE | ADDR_ALLOW_ROUTE | ADDR_ALLOW_PERCENT
                                     | ADDR_ALLOW_BANG, &a) != ADDR_OK)
        return smtpd_reply_set(r, 501, "501 5.1.7 Bad sender address syntax");
    return 0;
}

/* smtpd_check_data - nothing refuses at DATA yet */
int smtpd_check_data(SMTPD_CLIENT *c, SMTPD_REPLY *r)
{
    (void) c;
    check_reply_clear(r);
    return 0;
}
