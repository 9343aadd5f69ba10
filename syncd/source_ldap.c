/*
 * source_ldap.c - an LDAP directory as a source of rcptgate-syncd
 *
 * SYNOPSIS
 *   [source corp]
 *   type = ldap
 *   flavour = generic | ad
 *   uri = ldap://dc1.example.com ldap://dc2.example.com
 *   base = ou=People,dc=example,dc=com
 *
 * DESCRIPTION
 *   libldap's synchronous calls with a timeout on everything: the TCP
 *   connect (connect_timeout), every bind and StartTLS, and every message
 *   of a search (timeout). The URIs are tried in order until one connects,
 *   negotiates TLS and binds; ldap:// to anything but loopback gets
 *   StartTLS unless the postmaster wrote tls = none, and a certificate is
 *   always verified (TLS_REQCERT demand, a context of our own so that no
 *   other setting of the process leaks in).
 *
 *   A full pull is a paged search (RFC 2696, marked critical: a server
 *   that cannot page fails loudly instead of being cut by its size limit)
 *   of every base in turn. Any result but success fails the whole pull:
 *   size limit, time limit, referral, a lost connection. Search references
 *   (continuation references) are not failures: Active Directory returns
 *   them for the naming contexts below a domain (DomainDnsZones ...), which
 *   hold no recipients; they are logged at debug level and not followed.
 *
 *   With dns_domain, the domain controllers come first from DNS: the
 *   _ldap._tcp.dc._msdcs.DOMAIN SRV records (c-ares, asked synchronously
 *   within connect_timeout) in RFC 2782 order, then the uri list as a
 *   fallback. With dns_servers the record targets are resolved by those
 *   servers too and the URIs carry addresses (a private resolver's names
 *   mean nothing to the system's); without, they carry the host names.
 *
 *   Every connection has TCP keepalive, a connect timeout
 *   (LDAP_OPT_NETWORK_TIMEOUT) and an operation timeout (LDAP_OPT_TIMEOUT),
 *   and a read-ahead buffer under TLS and SASL (see source_ldap_readahead).
 *
 *   The generic flavour (OpenLDAP and friends) lives here; the Active
 *   Directory flavour in source_ldap_ad.c.
 *
 * DIAGNOSTICS
 *   Failures come back in err with the URI and the server's own words;
 *   the password is never part of a message.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <ares.h>

#include "log.h"
#include "syncd.h"
#include "xalloc.h"

/* SASL interaction: Cyrus SASL, which Debian's libldap is built with. */
#include <sasl/sasl.h>

/* How a URI is protected. */
#define SOURCE_TLS_NONE     0
#define SOURCE_TLS_START    1   /* StartTLS on ldap:// */
#define SOURCE_TLS_LDAPS    2   /* ldaps:// */

/*
 * TCP keepalive on every connection: a persistent search waits on a quiet
 * connection for hours, and a firewall that forgot it, or a DC that
 * vanished without a FIN, is noticed within idle + probes x interval
 * seconds instead of never (LDAP_OPT_TIMEOUT does not bound a wait that
 * has no timeout of its own).
 */
#define SOURCE_LDAP_KEEPALIVE_IDLE      60
#define SOURCE_LDAP_KEEPALIVE_PROBES    3
#define SOURCE_LDAP_KEEPALIVE_INTERVAL  10

/*
 * liblber reads a message as its tag, then its length, then its body: a
 * few read(2)s for each entry of a search. A read-ahead layer between
 * the socket and TLS turns that into one read per SOURCE_LDAP_READAHEAD
 * bytes (a page of a million-entry pull is a few hundred kB), which cuts
 * syncd's system time on a full pull. libldap's ldap_result asks the
 * layers whether data is buffered before it polls the socket, so waits
 * (persistent searches, change notification) still see a buffered message.
 */
#define SOURCE_LDAP_READAHEAD           65536

#define SOURCE_LDAP_TLS_HINT "if the server is up: is its certificate signed by ca_file, " \
    "and does it name the host of the URI?"

/* source_ldap_of - our struct behind the opaque handle */
static SOURCE_LDAP *source_ldap_of(SOURCE *src)
{
    return (SOURCE_LDAP *) (void *) src;
}

/* source_ldap_tv - milliseconds as a struct timeval */
static struct timeval source_ldap_tv(int ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* source_ldap_diag - ldap_err2string plus the server's diagnostic message */
const char *source_ldap_diag(SOURCE_LDAP *sl, int rc, char *buf, size_t size)
{
    char *diag = NULL;

    if (sl->ld != NULL)
        (void) ldap_get_option(sl->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
    /* libldap's TLS failures leave this text, which says nothing. */
    if (diag != NULL && *diag && strcmp(diag, "(unknown error code)") != 0)
        snprintf(buf, size, "%s (%s)", ldap_err2string(rc), diag);
    else
        snprintf(buf, size, "%s", ldap_err2string(rc));
    ldap_memfree(diag);
    return buf;
}

/*
 * source_ldap_uri_written - is uri one of those the postmaster wrote in
 * uri (not one DNS SRV records named)? Only those may be exempt from TLS:
 * a DNS answer pointing at 127.0.0.1 must not receive the bind password
 * in the clear from whatever listens there.
 */
static int source_ldap_uri_written(const SOURCE_CONF *c, const char *uri)
{
    int n, found = 0;
    char **words = source_words(c->uri, &n);

    for (int i = 0; i < n && !found; i++)
        found = strcasecmp(words[i], uri) == 0;
    source_words_free(words);
    return found;
}

/* source_ldap_tls_mode - what protects this URI under the tls setting */
static int source_ldap_tls_mode(const SOURCE_CONF *c, const char *uri)
{
    if (strncasecmp(uri, "ldaps:", 6) == 0)
        return SOURCE_TLS_LDAPS;
    if (strncasecmp(uri, "ldapi:", 6) == 0)
        return SOURCE_TLS_NONE;         /* a local socket: the kernel names the peer */
    if (strcmp(c->tls, "none") == 0)
        return SOURCE_TLS_NONE;
    if (strcmp(c->tls, "auto") == 0 && source_uri_loopback(uri) && source_ldap_uri_written(c, uri))
        return SOURCE_TLS_NONE;
    return SOURCE_TLS_START;
}

/*
 * source_ldap_interact - answer Cyrus SASL's questions for GSSAPI and
 * EXTERNAL: no authorization identity (act as the authenticated one),
 * and the mechanism's own default for anything else.
 */
static int source_ldap_interact(LDAP *ld, unsigned flags, void *defaults, void *in)
{
    for (sasl_interact_t *it = in; it->id != SASL_CB_LIST_END; it++) {
        const char *v = (it->id == SASL_CB_USER || it->defresult == NULL) ? "" : it->defresult;

        it->result = v;
        it->len = (unsigned) strlen(v);
    }
    return LDAP_SUCCESS;
}

/* source_ldap_tls_setup - TLS options on the handle, in a context of its own */
static int source_ldap_tls_setup(SOURCE_LDAP *sl, LDAP *ld, char *why, size_t size)
{
    const SOURCE_CONF *c = sl->conf;
    int demand = LDAP_OPT_X_TLS_DEMAND;
    int tls12 = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2;
    int client = 0;

    if (ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand) != LDAP_OPT_SUCCESS
        || ldap_set_option(ld, LDAP_OPT_X_TLS_PROTOCOL_MIN, &tls12) != LDAP_OPT_SUCCESS
        || (*c->ca_file && ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, c->ca_file) != LDAP_OPT_SUCCESS)
        || (*c->cert_file && ldap_set_option(ld, LDAP_OPT_X_TLS_CERTFILE, c->cert_file) != LDAP_OPT_SUCCESS)
        || (*c->key_file && ldap_set_option(ld, LDAP_OPT_X_TLS_KEYFILE, c->key_file) != LDAP_OPT_SUCCESS)) {
        snprintf(why, size, "cannot set the TLS options");
        return -1;
    }
    if (ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &client) != LDAP_OPT_SUCCESS) {
        snprintf(why, size, "TLS setup failed: is ca_file%s a readable PEM file?",
                 *c->cert_file ? " (or cert_file, key_file; and is key_file the key of cert_file)" : "");
        return -1;
    }
    return 0;
}

/* source_ldap_unreachable - a bind failure that is really no server: 1 and why */
static int source_ldap_unreachable(SOURCE_LDAP *sl, int rc, char *why, size_t size)
{
    char diag[512];

    if (rc == LDAP_TIMEOUT) {
        snprintf(why, size, "no answer within %d ms (timeout)", sl->conf->timeout_ms);
        return 1;
    }
    if (rc != LDAP_SERVER_DOWN && rc != LDAP_CONNECT_ERROR)
        return 0;
    if (sl->tls == SOURCE_TLS_LDAPS)
        snprintf(why, size, "cannot connect, or the TLS handshake failed: %s (%s)",
                 source_ldap_diag(sl, rc, diag, sizeof(diag)), SOURCE_LDAP_TLS_HINT);
    else
        snprintf(why, size, "cannot connect: %s", source_ldap_diag(sl, rc, diag, sizeof(diag)));
    return 1;
}

/* source_ldap_bind - simple, SASL or anonymous bind on a fresh handle */
static int source_ldap_bind(SOURCE_LDAP *sl, int tls, char *why, size_t size)
{
    const SOURCE_CONF *c = sl->conf;
    char diag[512];
    int rc;

    if (*c->sasl_mech) {
        char mech[32];
        size_t i;

        for (i = 0; c->sasl_mech[i] && i < sizeof(mech) - 1; i++)
            mech[i] = (char) toupper((unsigned char) c->sasl_mech[i]);
        mech[i] = 0;

        /*
         * Over TLS, no SASL security layer on top: Active Directory
         * refuses GSSAPI signing or sealing inside TLS.
         */
        if (tls != SOURCE_TLS_NONE)
            (void) ldap_set_option(sl->ld, LDAP_OPT_X_SASL_SECPROPS, "maxssf=0");
        rc = ldap_sasl_interactive_bind_s(sl->ld, NULL, mech, NULL, NULL, LDAP_SASL_QUIET,
                                          source_ldap_interact, sl);
        if (rc != LDAP_SUCCESS) {
            /*
             * Hints for EXTERNAL over TLS. The mechanism is unavailable on
             * our side when the handshake sent no certificate: the server
             * did not ask for one, or asked for CAs that did not sign
             * cert_file (GnuTLS then sends none). Under TLS 1.3 a server
             * that refuses the certificate does so after the client's side
             * of the handshake, and libldap's SASL code says "Local error".
             */
            const char *hint = "";

            if (tls != SOURCE_TLS_NONE && strcmp(mech, "EXTERNAL") == 0) {
                if (rc == LDAP_AUTH_UNKNOWN)
                    hint = ": no client certificate went to the server (does it ask for one, "
                        "e.g. TLSVerifyClient try, and trust the CA that signed cert_file?)";
                else if (rc == LDAP_LOCAL_ERROR)
                    hint = ": the connection failed after the TLS handshake (did the server refuse "
                        "the client certificate? is cert_file signed by a CA it trusts?)";
            }
            if (!source_ldap_unreachable(sl, rc, why, size))
                snprintf(why, size, "SASL %s bind: %s%s", mech, source_ldap_diag(sl, rc, diag, sizeof(diag)), hint);
            return -1;
        }
        return 0;
    }
    if (*c->bind_dn) {
        struct berval cred;

        if (c->bind_password == NULL) {
            snprintf(why, size, "the password in %s could not be read", c->bind_password_file);
            return -1;
        }
        cred.bv_val = c->bind_password;
        cred.bv_len = strlen(c->bind_password);
        rc = ldap_sasl_bind_s(sl->ld, c->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
        if (rc != LDAP_SUCCESS) {
            if (!source_ldap_unreachable(sl, rc, why, size))
                snprintf(why, size, "bind as %s: %s", c->bind_dn, source_ldap_diag(sl, rc, diag, sizeof(diag)));
            return -1;
        }
        return 0;
    }
    {
        struct berval none = {0, NULL};

        rc = ldap_sasl_bind_s(sl->ld, NULL, LDAP_SASL_SIMPLE, &none, NULL, NULL, NULL);
        if (rc != LDAP_SUCCESS) {
            if (!source_ldap_unreachable(sl, rc, why, size))
                snprintf(why, size, "anonymous bind: %s", source_ldap_diag(sl, rc, diag, sizeof(diag)));
            return -1;
        }
    }
    return 0;
}

/*
 * source_ldap_readahead - the read-ahead layer on the connection, once it
 * is open (after the bind: the connection exists only from the first
 * operation on). It goes right above the socket: below TLS and a SASL
 * security layer, which read through it. Nothing is read ahead yet when
 * it is added (liblber reads no more than the message it decodes), so no
 * byte is skipped.
 * The socket becomes non-blocking with it: the layer tops up a partial
 * message with one more read even when the socket has nothing, which on
 * a blocking socket would wait for the server forever (a hung server
 * would escape the operation timeout). libldap takes EAGAIN as "wait
 * for more" and goes back to its poll with the timeout. Best effort:
 * without the layer only the speed differs; where the socket cannot be
 * made non-blocking there is no layer.
 */
static void source_ldap_readahead(SOURCE_LDAP *sl)
{
    Sockbuf *sb = NULL;
    ber_len_t size = SOURCE_LDAP_READAHEAD;

    if (ldap_get_option(sl->ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS || sb == NULL
        || ber_sockbuf_ctrl(sb, LBER_SB_OPT_HAS_IO, &ber_sockbuf_io_readahead) == 1)
        return;
    if (ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_NONBLOCK, (void *) 1) != 1) {
        log_debug("source %s: no read-ahead on the connection (cannot make it non-blocking)",
                  sl->conf->name);
        return;
    }
    if (ber_sockbuf_add_io(sb, &ber_sockbuf_io_readahead, LBER_SBIOD_LEVEL_PROVIDER, NULL) != 0) {
        (void) ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_NONBLOCK, NULL);
        log_debug("source %s: no read-ahead on the connection", sl->conf->name);
        return;
    }
    (void) ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_READAHEAD, &size);
}

/*
 * source_ldap_ref_worth_saying - is a reference the warning's business?
 * Active Directory answers every subtree search of a domain's root with
 * references to its other naming contexts (CN=Configuration,
 * DC=DomainDnsZones, DC=ForestDnsZones), which hold no recipients: those
 * are debug lines, not advice to use a Global Catalog. Others are said
 * once per source for the process's life (a daemon opens a handle per
 * pull), not at every poll.
 */
static int source_ldap_ref_worth_saying(const SOURCE_LDAP *sl, const char *ref)
{
    static char **said;
    static size_t nsaid;
    LDAPURLDesc *lud = NULL;
    int skip = 0;

    if (ldap_url_parse(ref, &lud) == LDAP_URL_SUCCESS && lud->lud_dn != NULL)
        skip = strncasecmp(lud->lud_dn, "CN=Configuration,", 17) == 0
            || strncasecmp(lud->lud_dn, "DC=DomainDnsZones,", 18) == 0
            || strncasecmp(lud->lud_dn, "DC=ForestDnsZones,", 18) == 0;
    if (lud != NULL)
        ldap_free_urldesc(lud);
    if (skip)
        return 0;
    for (size_t i = 0; i < nsaid; i++)
        if (strcmp(said[i], sl->conf->name) == 0)
            return 0;
    said = xrealloc(said, (nsaid + 1) * sizeof(*said));
    said[nsaid++] = xstrdup(sl->conf->name);
    return 1;
}

/* source_ldap_connect - one URI: handle, options, TLS, bind; 0 or -1 */
static int source_ldap_connect(SOURCE_LDAP *sl, const char *uri, char *why, size_t size)
{
    const SOURCE_CONF *c = sl->conf;
    struct timeval ctv = source_ldap_tv(c->connect_timeout_ms);
    struct timeval tv = source_ldap_tv(c->timeout_ms);
    int v3 = LDAP_VERSION3;
    int idle = SOURCE_LDAP_KEEPALIVE_IDLE, probes = SOURCE_LDAP_KEEPALIVE_PROBES;
    int interval = SOURCE_LDAP_KEEPALIVE_INTERVAL;
    int tls = source_ldap_tls_mode(c, uri);
    char diag[512];
    LDAP *ld = NULL;
    int rc;

    if ((rc = ldap_initialize(&ld, uri)) != LDAP_SUCCESS) {
        snprintf(why, size, "%s", ldap_err2string(rc));
        return -1;
    }
    if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3) != LDAP_OPT_SUCCESS
        || ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) != LDAP_OPT_SUCCESS
        || ldap_set_option(ld, LDAP_OPT_RESTART, LDAP_OPT_ON) != LDAP_OPT_SUCCESS
        || ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &ctv) != LDAP_OPT_SUCCESS
        || ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv) != LDAP_OPT_SUCCESS
        || ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_IDLE, &idle) != LDAP_OPT_SUCCESS
        || ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_PROBES, &probes) != LDAP_OPT_SUCCESS
        || ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_INTERVAL, &interval) != LDAP_OPT_SUCCESS) {
        snprintf(why, size, "cannot set the LDAP options");
        ldap_unbind_ext_s(ld, NULL, NULL);
        return -1;
    }
    if (tls != SOURCE_TLS_NONE && source_ldap_tls_setup(sl, ld, why, size) < 0) {
        ldap_unbind_ext_s(ld, NULL, NULL);
        return -1;
    }
    sl->ld = ld;
    sl->tls = tls;
    if (tls == SOURCE_TLS_START && (rc = ldap_start_tls_s(ld, NULL, NULL)) != LDAP_SUCCESS) {
        if (rc == LDAP_CONNECT_ERROR)   /* the server said yes; the handshake failed */
            snprintf(why, size, "StartTLS: the TLS handshake failed (%s)", SOURCE_LDAP_TLS_HINT);
        else if (!source_ldap_unreachable(sl, rc, why, size))
            snprintf(why, size, "StartTLS: %s", source_ldap_diag(sl, rc, diag, sizeof(diag)));
    } else if (source_ldap_bind(sl, tls, why, size) == 0) {
        source_ldap_readahead(sl);
        log_debug("source %s: connected to %s (%s)", c->name, uri,
                  tls == SOURCE_TLS_START ? "StartTLS" : tls == SOURCE_TLS_LDAPS ? "TLS" : "no TLS");
        return 0;
    }
    ldap_unbind_ext_s(ld, NULL, NULL);
    sl->ld = NULL;
    return -1;
}

/* source_ldap_attr_add - add an attribute to a NULL-terminated list, once */
static void source_ldap_attr_add(char ***list, int *n, const char *attr)
{
    for (int i = 0; i < *n; i++)
        if (strcasecmp((*list)[i], attr) == 0)
            return;
    *list = xrealloc(*list, (size_t) (*n + 2) * sizeof(char *));
    (*list)[(*n)++] = xstrdup(attr);
    (*list)[*n] = NULL;
}

/* source_ldap_attrs_build - what the searches ask for */
static void source_ldap_attrs_build(SOURCE_LDAP *sl)
{
    const SOURCE_CONF *c = sl->conf;
    const SOURCE_LDAP_FLAVOUR *f = sl->flavour;
    char **list = xcalloc(1, sizeof(char *));
    int n = 0;

    sl->addr_attrs = source_words(*c->address_attributes ? c->address_attributes : f->addresses, NULL);
    sl->login_attrs = source_words(*c->login_attributes ? c->login_attributes : f->logins, NULL);
    for (const char *const *a = f->attrs; *a; a++) {
        /*
         * Ask for a range of member explicitly when the step is below
         * AD's own 1,500: servers that range only on request (Samba) then
         * run the same range loop as a large group on AD does.
         */
        if (strcasecmp(*a, "member") == 0 && f == &source_ldap_ad && c->range_step < 1500) {
            char ranged[64];

            snprintf(ranged, sizeof(ranged), "member;range=0-%d", c->range_step - 1);
            source_ldap_attr_add(&list, &n, ranged);
        } else {
            source_ldap_attr_add(&list, &n, *a);
        }
    }
    for (char **a = sl->addr_attrs; *a; a++)
        source_ldap_attr_add(&list, &n, *a);
    for (char **a = sl->login_attrs; *a; a++)
        source_ldap_attr_add(&list, &n, *a);
    sl->attrs = list;
}

/* source_ldap_close - unbind and free; NULL is fine */
static void source_ldap_close(SOURCE *src)
{
    SOURCE_LDAP *sl = source_ldap_of(src);

    if (sl == NULL)
        return;
    if (sl->ld != NULL)
        ldap_unbind_ext_s(sl->ld, NULL, NULL);
    source_words_free(sl->attrs);
    source_words_free(sl->addr_attrs);
    source_words_free(sl->login_attrs);
    source_obj_free(&sl->obj);
    source_ldap_sync_free(sl);
    source_ldap_ad_notify_free(sl);
    free(sl->shared_types);
    free(sl->invocation_id);
    free(sl->naming_context);
    free(sl->dirsync_cookie);
    free(sl->uri);
    free(sl);
}

/* ------------------------------------------------------------ DNS SRV */

/* source_ldap_srv_order - RFC 2782: by priority, and by weighted chance within one */
void source_ldap_srv_order(SOURCE_LDAP_SRV *srv, size_t n, unsigned (*rnd)(void))
{
    /* Priority first, and zero weights first within it (as RFC 2782 asks). */
    for (size_t i = 1; i < n; i++) {
        SOURCE_LDAP_SRV t = srv[i];
        size_t j = i;

        while (j > 0 && (srv[j - 1].priority > t.priority
                         || (srv[j - 1].priority == t.priority && srv[j - 1].weight > 0 && t.weight == 0))) {
            srv[j] = srv[j - 1];
            j--;
        }
        srv[j] = t;
    }
    for (size_t start = 0; start < n;) {
        size_t end = start;

        while (end < n && srv[end].priority == srv[start].priority)
            end++;
        /* Pick each place in turn: the first whose running weight sum reaches a random number. */
        for (size_t k = start; k + 1 < end; k++) {
            unsigned long sum = 0, r, run = 0;
            size_t pick = k;

            for (size_t i = k; i < end; i++)
                sum += srv[i].weight;
            r = sum ? rnd() % (sum + 1) : 0;
            for (size_t i = k; i < end; i++) {
                run += srv[i].weight;
                if (run >= r) {
                    pick = i;
                    break;
                }
            }
            if (pick != k) {
                SOURCE_LDAP_SRV t = srv[pick];

                memmove(&srv[k + 1], &srv[k], (pick - k) * sizeof(*srv));
                srv[k] = t;
            }
        }
        start = end;
    }
}

/* source_ldap_srv_random - the weighted choice's random numbers */
static unsigned source_ldap_srv_random(void)
{
    static int seeded;

    if (!seeded) {
        srandom((unsigned) time(NULL) ^ (unsigned) getpid());
        seeded = 1;
    }
    return (unsigned) random();
}

/* The answers of one synchronous c-ares query. */
typedef struct source_ldap_srv_query {
    int done;
    int status;
    SOURCE_LDAP_SRV *srv;
    size_t n;
    char addr[INET6_ADDRSTRLEN + 2];    /* a host lookup: the first address ([v6]) */
} SOURCE_LDAP_SRV_QUERY;

/* source_ldap_srv_cb - the SRV answer */
static void source_ldap_srv_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    SOURCE_LDAP_SRV_QUERY *q = arg;
    struct ares_srv_reply *reply = NULL;

    (void) timeouts;
    q->done = 1;
    q->status = status;
    if (status != ARES_SUCCESS)
        return;
    if ((q->status = ares_parse_srv_reply(abuf, alen, &reply)) != ARES_SUCCESS)
        return;
    for (struct ares_srv_reply *r = reply; r; r = r->next) {
        q->srv = xrealloc(q->srv, (q->n + 1) * sizeof(*q->srv));
        q->srv[q->n].host = xstrdup(r->host);
        q->srv[q->n].priority = r->priority;
        q->srv[q->n].weight = r->weight;
        q->srv[q->n].port = r->port;
        q->n++;
    }
    ares_free_data(reply);
}

/* source_ldap_host_cb - the address of a record's target */
static void source_ldap_host_cb(void *arg, int status, int timeouts, struct hostent *h)
{
    SOURCE_LDAP_SRV_QUERY *q = arg;
    char buf[INET6_ADDRSTRLEN];

    (void) timeouts;
    q->done = 1;
    q->status = status;
    if (status != ARES_SUCCESS || h == NULL || h->h_addr_list[0] == NULL)
        return;
    if (inet_ntop(h->h_addrtype, h->h_addr_list[0], buf, sizeof(buf)) != NULL)
        snprintf(q->addr, sizeof(q->addr), h->h_addrtype == AF_INET6 ? "[%s]" : "%s", buf);
}

/* source_ldap_ares_wait - run the channel until q is answered or the deadline passes */
static void source_ldap_ares_wait(ares_channel ch, SOURCE_LDAP_SRV_QUERY *q, long long deadline_ms)
{
    while (!q->done) {
        struct timespec now;
        struct timeval tv, *tvp, max;
        fd_set rd, wr;
        long long left;
        int nfds;

        clock_gettime(CLOCK_MONOTONIC, &now);
        left = deadline_ms - ((long long) now.tv_sec * 1000 + now.tv_nsec / 1000000);
        if (left <= 0) {
            ares_cancel(ch);            /* calls back with ARES_ECANCELLED */
            break;
        }
        FD_ZERO(&rd);
        FD_ZERO(&wr);
        nfds = ares_fds(ch, &rd, &wr);
        if (nfds == 0)
            break;
        max.tv_sec = (time_t) (left / 1000);
        max.tv_usec = (suseconds_t) (left % 1000) * 1000;
        tvp = ares_timeout(ch, &max, &tv);
        (void) select(nfds, &rd, &wr, NULL, tvp);
        ares_process(ch, &rd, &wr);
    }
}

/* source_ldap_in_domain - is host domain itself or a name under it (case and a final dot aside)? */
int source_ldap_in_domain(const char *host, const char *domain)
{
    size_t hl = strlen(host), dl = strlen(domain);

    if (hl > 0 && host[hl - 1] == '.')
        hl--;
    if (dl > 0 && domain[dl - 1] == '.')
        dl--;
    if (dl == 0 || hl < dl || strncasecmp(host + hl - dl, domain, dl) != 0)
        return 0;
    return hl == dl || host[hl - dl - 1] == '.';
}

/* source_ldap_srv_uris - domain controllers from _ldap._tcp.dc._msdcs.DOMAIN */
char *source_ldap_srv_uris(const char *domain, const char *servers, int ldaps, int timeout_ms,
                           const char *prefer, char *err, size_t errlen)
{
    static int initialised;
    struct ares_options opt;
    ares_channel ch;
    SOURCE_LDAP_SRV_QUERY q;
    struct timespec now;
    long long deadline;
    char *name = xasprintf("_ldap._tcp.dc._msdcs.%s", domain);
    char *list = NULL;
    char **uris = NULL;
    size_t nuris = 0;
    size_t first_prio = 0;              /* how many of uris are of the first priority, */
    unsigned prio = 0;                  /*   which is this */
    size_t used = 0;
    int rc;

    if (!initialised) {
        if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
            snprintf(err, errlen, "DNS: %s", ares_strerror(rc));
            free(name);
            return NULL;
        }
        initialised = 1;
    }
    memset(&opt, 0, sizeof(opt));
    opt.timeout = timeout_ms / 3 > 100 ? timeout_ms / 3 : 100;
    opt.tries = 3;
    opt.lookups = (char *) "b";         /* DNS only: the records are what is asked */
    if ((rc = ares_init_options(&ch, &opt, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS)) != ARES_SUCCESS) {
        snprintf(err, errlen, "DNS: %s", ares_strerror(rc));
        free(name);
        return NULL;
    }
    if (*servers) {
        int n;
        char **words = source_words(servers, &n);
        char *csv = xstrdup("");

        for (int i = 0; i < n; i++) {
            char *next = xasprintf("%s%s%s", csv, i ? "," : "", words[i]);

            free(csv);
            csv = next;
        }
        source_words_free(words);
        rc = ares_set_servers_ports_csv(ch, csv);
        free(csv);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errlen, "dns_servers \"%s\": %s", servers, ares_strerror(rc));
            goto out;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    deadline = (long long) now.tv_sec * 1000 + now.tv_nsec / 1000000 + timeout_ms;
    memset(&q, 0, sizeof(q));
    ares_query(ch, name, 1 /* C_IN */, 33 /* T_SRV */, source_ldap_srv_cb, &q);
    source_ldap_ares_wait(ch, &q, deadline);
    if (!q.done || q.status != ARES_SUCCESS || q.n == 0) {
        snprintf(err, errlen, "DNS SRV %s: %s", name, !q.done || q.status == ARES_ECANCELLED ? "no answer (timeout)"
                 : q.status != ARES_SUCCESS ? ares_strerror(q.status) : "no records");
        goto free_srv;
    }
    source_ldap_srv_order(q.srv, q.n, source_ldap_srv_random);
    for (size_t i = 0; i < q.n; i++) {
        const char *host = q.srv[i].host;
        char *uri;

        if (strcmp(host, ".") == 0 || *host == 0)
            continue;                   /* "no such service here" */
        if (!source_ldap_in_domain(host, domain)) {
            /* A forged or careless answer must not send the bind elsewhere. */
            log_warn("DNS: %s names %s, outside %s: not used", name, host, domain);
            continue;
        }
        if (*servers) {
            /* A private resolver's names mean nothing to libldap's: use the address. */
            SOURCE_LDAP_SRV_QUERY h;

            memset(&h, 0, sizeof(h));
            ares_gethostbyname(ch, host, AF_INET, source_ldap_host_cb, &h);
            source_ldap_ares_wait(ch, &h, deadline);
            if (h.addr[0] == 0) {
                log_warn("DNS: %s (a domain controller of %s): %s", host, domain,
                         h.done && h.status != ARES_ECANCELLED ? ares_strerror(h.status) : "no answer (timeout)");
                continue;
            }
            uri = ldaps && q.srv[i].port == 389 ? xasprintf("ldaps://%s", h.addr)
                : xasprintf("%s://%s:%u", ldaps ? "ldaps" : "ldap", h.addr, q.srv[i].port);
        } else {
            uri = ldaps && q.srv[i].port == 389 ? xasprintf("ldaps://%s", host)
                : xasprintf("%s://%s:%u", ldaps ? "ldaps" : "ldap", host, q.srv[i].port);
        }
        if (nuris == 0)
            prio = q.srv[i].priority;
        if (q.srv[i].priority == prio)
            first_prio = nuris + 1;
        uris = xrealloc(uris, (nuris + 1) * sizeof(*uris));
        uris[nuris++] = uri;
    }
    /*
     * The controller used last goes first again while it is of the first
     * priority: the weighted choice is for spreading many clients, and one
     * client hopping between controllers each poll costs an AD source on
     * the uSNChanged path a full pull each time (USNs are per controller).
     */
    for (size_t i = 1; prefer != NULL && i < first_prio; i++) {
        if (strcmp(uris[i], prefer) == 0) {
            char *t = uris[i];

            memmove(&uris[1], &uris[0], i * sizeof(*uris));
            uris[0] = t;
            break;
        }
    }
    for (size_t i = 0; i < nuris; i++) {
        list = xrealloc(list, used + strlen(uris[i]) + 2);
        snprintf(list + used, strlen(uris[i]) + 2, "%s%s", used ? " " : "", uris[i]);
        used += strlen(uris[i]) + (used ? 1 : 0);
        free(uris[i]);
    }
    free(uris);
    if (list == NULL)
        snprintf(err, errlen, "DNS SRV %s: no usable domain controller", name);

free_srv:
    for (size_t i = 0; i < q.n; i++)
        free(q.srv[i].host);
    free(q.srv);
out:
    ares_destroy(ch);
    free(name);
    return list;
}

/*
 * The domain controller each source (by name) last reached through DNS
 * SRV records, tried first at its next connection (source_ldap_srv_uris).
 * Kept for the life of the process: a source is reopened for each poll.
 */
typedef struct source_ldap_last_dc {
    char *source;
    char *uri;
    struct source_ldap_last_dc *next;
} SOURCE_LDAP_LAST_DC;

static SOURCE_LDAP_LAST_DC *source_ldap_last_dcs;

/* source_ldap_last_dc - the entry of a source, made when make is set; NULL none */
static SOURCE_LDAP_LAST_DC *source_ldap_last_dc(const char *source, int make)
{
    SOURCE_LDAP_LAST_DC *d;

    for (d = source_ldap_last_dcs; d != NULL; d = d->next)
        if (strcmp(d->source, source) == 0)
            return d;
    if (!make)
        return NULL;
    d = xcalloc(1, sizeof(*d));
    d->source = xstrdup(source);
    d->next = source_ldap_last_dcs;
    source_ldap_last_dcs = d;
    return d;
}

/* source_ldap_open - connect to the first URI that answers, and bind */
static SOURCE *source_ldap_open(const SOURCE_CONF *conf, char *err, size_t errlen)
{
    SOURCE_LDAP *sl = xcalloc(1, sizeof(*sl));
    char why[768];
    size_t used = 0;
    int n;
    char **uris;

    sl->conf = conf;
    sl->flavour = strcmp(conf->flavour, "ad") == 0 ? &source_ldap_ad : &source_ldap_generic;
    sl->filter = *conf->filter ? conf->filter : sl->flavour->filter;
    source_obj_init(&sl->obj, conf->name);
    source_ldap_attrs_build(sl);
    err[0] = 0;
    if (*conf->dns_domain) {
        SOURCE_LDAP_LAST_DC *last = source_ldap_last_dc(conf->name, 0);
        char *found = source_ldap_srv_uris(conf->dns_domain, conf->dns_servers,
                                           strcmp(conf->tls, "ldaps") == 0, conf->connect_timeout_ms,
                                           last ? last->uri : NULL, why, sizeof(why));
        char *all;

        if (found == NULL && *conf->uri == 0) {
            snprintf(err, errlen, "%s", why);
            source_ldap_close((SOURCE *) (void *) sl);
            return NULL;
        }
        if (found == NULL)
            log_warn("source %s: %s; trying uri", conf->name, why);
        else
            log_debug("source %s: domain controllers of %s: %s", conf->name, conf->dns_domain, found);
        all = xasprintf("%s %s", found ? found : "", conf->uri);
        uris = source_words(all, &n);
        free(all);
        free(found);
    } else {
        uris = source_words(conf->uri, &n);
    }
    for (int i = 0; i < n; i++) {
        if (source_ldap_connect(sl, uris[i], why, sizeof(why)) == 0) {
            if (i > 0)
                log_warn("source %s: using %s after: %s", conf->name, uris[i], err);
            sl->uri = xstrdup(uris[i]);
            if (*conf->dns_domain) {
                SOURCE_LDAP_LAST_DC *last = source_ldap_last_dc(conf->name, 1);

                free(last->uri);
                last->uri = xstrdup(uris[i]);
            }
            source_words_free(uris);
            return (SOURCE *) (void *) sl;
        }
        /* Collect every URI's reason: the one clear line names them all. */
        if (used < errlen) {
            int w = snprintf(err + used, errlen - used, "%s%s: %s", used ? "; " : "", uris[i], why);

            used += w > 0 ? (size_t) w : 0;
        }
    }
    source_words_free(uris);
    source_ldap_close((SOURCE *) (void *) sl);
    return NULL;
}

/* ------------------------------------------------------------ searching */

/* source_ldap_result_error - the text for a search result that is not success */
static void source_ldap_result_error(SOURCE_LDAP *sl, const char *base, int code, const char *text,
                                     char **refs, char *err, size_t errlen)
{
    const char *hint = "";

    if (code == LDAP_SIZELIMIT_EXCEEDED)
        hint = "; a size limit cut the result short";
    else if (code == LDAP_REFERRAL)
        hint = "; referrals are not followed: point uri at the server that holds this base";
    else if (code == LDAP_TIMELIMIT_EXCEEDED)
        hint = "; raise timeout, or ask the directory for a higher time limit";
    snprintf(err, errlen, "search of \"%s\": %s%s%s%s%s%s", base, ldap_err2string(code),
             text && *text ? " (" : "", text && *text ? text : "", text && *text ? ")" : "",
             refs && refs[0] ? ", referral to " : "", refs && refs[0] ? refs[0] : "");
    if (*hint && strlen(err) + strlen(hint) < errlen)
        strcat(err, hint);
}

/* source_ldap_search - one (paged) search, every entry to fn */
int source_ldap_search(SOURCE_LDAP *sl, const char *base, int scope, const char *filter,
                       char **attrs, int paged, SOURCE_LDAP_ENTRY_FN fn, void *ctx,
                       char *err, size_t errlen)
{
    return source_ldap_search_ext(sl, base, scope, filter, attrs, paged, NULL, NULL, fn, ctx, err, errlen);
}

/* source_ldap_search_ext - the same with further request controls, and the response's */
int source_ldap_search_ext(SOURCE_LDAP *sl, const char *base, int scope, const char *filter,
                           char **attrs, int paged, LDAPControl *extra, LDAPControl ***rctrls,
                           SOURCE_LDAP_ENTRY_FN fn, void *ctx, char *err, size_t errlen)
{
    struct berval cookie = {0, NULL};
    struct timeval limit = source_ldap_tv(sl->conf->timeout_ms);
    char diag[512];
    long long pages = 0;
    int ret = -1;

    limit.tv_usec = 0;                  /* the server's limit is in seconds */
    sl->last_code = LDAP_SUCCESS;
    if (rctrls != NULL)
        *rctrls = NULL;
    do {
        LDAPControl *page = NULL;
        LDAPControl *ctrls[3] = {NULL, NULL, NULL};
        int nctrl = 0;
        long long entries = 0;          /* on this page */
        int msgid;
        int rc;
        int done = 0;

        if (paged) {
            rc = ldap_create_page_control(sl->ld, sl->conf->page_size, cookie.bv_len ? &cookie : NULL,
                                          1, &page);
            if (rc != LDAP_SUCCESS) {
                snprintf(err, errlen, "paged results control: %s", ldap_err2string(rc));
                goto out;
            }
            ctrls[nctrl++] = page;
        }
        if (extra != NULL)
            ctrls[nctrl++] = extra;
        rc = ldap_search_ext(sl->ld, base, scope, filter, attrs, 0, nctrl ? ctrls : NULL, NULL,
                             &limit, LDAP_NO_LIMIT, &msgid);
        ldap_control_free(page);
        if (rc != LDAP_SUCCESS) {
            sl->last_code = rc;
            snprintf(err, errlen, "search of \"%s\": %s", base, source_ldap_diag(sl, rc, diag, sizeof(diag)));
            goto out;
        }
        while (!done) {
            struct timeval tv = source_ldap_tv(sl->conf->timeout_ms);
            LDAPMessage *msg = NULL;
            int failed = 0;

            rc = ldap_result(sl->ld, msgid, LDAP_MSG_ONE, &tv, &msg);
            if (rc == 0) {
                sl->last_code = LDAP_TIMEOUT;
                (void) ldap_abandon_ext(sl->ld, msgid, NULL, NULL);
                snprintf(err, errlen, "search of \"%s\": no answer within %d ms (timeout)", base,
                         sl->conf->timeout_ms);
                goto out;
            }
            if (rc < 0) {
                int code = LDAP_SERVER_DOWN;

                (void) ldap_get_option(sl->ld, LDAP_OPT_RESULT_CODE, &code);
                sl->last_code = code ? code : LDAP_SERVER_DOWN;
                snprintf(err, errlen, "search of \"%s\": %s", base, source_ldap_diag(sl, code, diag, sizeof(diag)));
                goto out;
            }
            switch (ldap_msgtype(msg)) {
            case LDAP_RES_SEARCH_ENTRY:
                entries++;
                failed = fn(sl, msg, ctx, err, errlen) < 0;
                break;
            case LDAP_RES_SEARCH_REFERENCE:
                /*
                 * A part of the tree another server (or naming context)
                 * holds, such as a child domain: not followed, so its
                 * entries are never pulled. Said once, at warning level,
                 * as what to do; each one at debug level.
                 */
                {
                    char **refs = NULL;

                    if (ldap_parse_reference(sl->ld, msg, &refs, NULL, 0) == LDAP_SUCCESS && refs) {
                        if (source_ldap_ref_worth_saying(sl, refs[0]))
                            log_warn("source %s: search of \"%s\": a reference to %s is not followed, so "
                                     "the entries it holds are not pulled: point uri at a server that "
                                     "holds them all (an Active Directory Global Catalog, port 3268), or "
                                     "add a source for them", sl->conf->name, base, refs[0]);
                        else
                            log_debug("source %s: search of \"%s\": ignoring a reference to %s",
                                      sl->conf->name, base, refs[0]);
                    }
                    ldap_memvfree((void **) refs);
                }
                break;
            case LDAP_RES_SEARCH_RESULT:{
                    int code = LDAP_OTHER;
                    char *text = NULL;
                    char **refs = NULL;
                    LDAPControl **sctrls = NULL;

                    done = 1;
                    rc = ldap_parse_result(sl->ld, msg, &code, NULL, &text, &refs, &sctrls, 0);
                    if (rc != LDAP_SUCCESS) {
                        snprintf(err, errlen, "search of \"%s\": unreadable result: %s", base, ldap_err2string(rc));
                        failed = 1;
                    } else if (code != LDAP_SUCCESS) {
                        sl->last_code = code;
                        source_ldap_result_error(sl, base, code, text, refs, err, errlen);
                        failed = 1;
                    } else if (paged) {
                        LDAPControl *c = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, sctrls, NULL);
                        struct berval next = {0, NULL};
                        ber_int_t estimate;

                        char what[256];

                        snprintf(what, sizeof(what), "paged search of \"%.200s\"", base);
                        if (c == NULL || ldap_parse_pageresponse_control(sl->ld, c, &estimate, &next) != LDAP_SUCCESS) {
                            snprintf(err, errlen, "search of \"%s\": the server's answer has no paged "
                                     "results control", base);
                            failed = 1;
                        } else if (source_pages_check(&pages, cookie.bv_val, cookie.bv_len, next.bv_val,
                                                      next.bv_len, entries, what, err, errlen) < 0) {
                            /* A hostile or broken server, or SIGTERM: the pull fails, nothing applied. */
                            sl->last_code = LDAP_OTHER;
                            ber_memfree(next.bv_val);
                            failed = 1;
                        } else {
                            ber_memfree(cookie.bv_val);
                            cookie = next;
                        }
                    }
                    ldap_memfree(text);
                    ldap_memvfree((void **) refs);
                    if (rctrls != NULL && !failed && !(paged && cookie.bv_len > 0)) {
                        *rctrls = sctrls;       /* the last page's: the caller's now */
                        sctrls = NULL;
                    }
                    ldap_controls_free(sctrls);
                    break;
                }
            default:
                snprintf(err, errlen, "search of \"%s\": unexpected message type 0x%x", base,
                         (unsigned) ldap_msgtype(msg));
                failed = 1;
                break;
            }
            ldap_msgfree(msg);
            if (failed) {
                if (!done)
                    (void) ldap_abandon_ext(sl->ld, msgid, NULL, NULL);
                goto out;
            }
        }
    } while (paged && cookie.bv_len > 0);
    ret = 0;

out:
    ber_memfree(cookie.bv_val);
    return ret;
}

/* source_ldap_entry_first - the DN, and the BER to walk the attributes with */
int source_ldap_entry_first(SOURCE_LDAP *sl, LDAPMessage *e, BerElement **ber, struct berval *dn)
{
    *ber = NULL;
    /*
     * A DN is text: one holding a NUL byte would be cut short when copied,
     * and two different entries could then share a DN (or an empty one
     * become an object's identity).
     */
    if (ldap_get_dn_ber(sl->ld, e, ber, dn) != LDAP_SUCCESS || dn->bv_val == NULL
        || memchr(dn->bv_val, 0, dn->bv_len) != NULL) {
        if (*ber)
            ber_free(*ber, 0);
        *ber = NULL;
        return -1;
    }
    return 0;
}

/* source_ldap_entry_next - the next attribute: 1, 0 at the end, -1 malformed */
int source_ldap_entry_next(SOURCE_LDAP *sl, LDAPMessage *e, BerElement *ber,
                           struct berval *name, struct berval **vals)
{
    *vals = NULL;
    if (ldap_get_attribute_ber(sl->ld, e, ber, name, vals) != LDAP_SUCCESS)
        return -1;
    return name->bv_val != NULL;
}

/* source_ldap_is - a BER name equals attr, ignoring case */
int source_ldap_is(const struct berval *name, const char *attr)
{
    size_t n = strlen(attr);

    return name->bv_len == n && strncasecmp(name->bv_val, attr, n) == 0;
}

/* source_ldap_in - a BER name is in the list */
int source_ldap_in(const struct berval *name, char *const *list)
{
    for (char *const *a = list; *a; a++)
        if (source_ldap_is(name, *a))
            return 1;
    return 0;
}

/* ------------------------------------------------------------ generic flavour */

/*
 * source_ldap_unique_member - the DN of a uniqueMember value: the
 * NameAndOptionalUID syntax may end in "#'0101'B", which is not part of
 * the DN (an unescaped '#' cannot occur inside an RFC 4514 DN otherwise).
 */
static size_t source_ldap_unique_member(const char *v, size_t len)
{
    if (len >= 4 && v[len - 1] == 'B' && v[len - 2] == '\'') {
        for (size_t i = len - 2; i-- > 0;) {
            if (v[i] == '\'') {
                if (i > 0 && v[i - 1] == '#' && (i < 2 || v[i - 2] != '\\'))
                    return i - 1;
                break;
            }
            if (v[i] != '0' && v[i] != '1')
                break;
        }
    }
    return len;
}

/* source_ldap_generic_entry - an OpenLDAP-style entry: person or group */
static int source_ldap_generic_entry(SOURCE_LDAP *sl, LDAPMessage *e, char *err, size_t errlen)
{
    SOURCE_OBJ *o = &sl->obj;
    BerElement *ber;
    struct berval dn;
    struct berval name;
    struct berval *vals;
    int group = 0;
    int r;

    source_obj_reset(o);
    if (source_ldap_entry_first(sl, e, &ber, &dn) < 0 || dn.bv_len == 0) {
        if (ber)
            ber_free(ber, 0);
        snprintf(err, errlen, "an entry without a readable DN");
        return -1;
    }
    source_obj_set_dn(o, dn.bv_val, dn.bv_len);
    while ((r = source_ldap_entry_next(sl, e, ber, &name, &vals)) > 0) {
        int is_addr = source_ldap_in(&name, sl->addr_attrs);
        int is_login = source_ldap_in(&name, sl->login_attrs);
        char attr[64];

        snprintf(attr, sizeof(attr), "%.*s", (int) name.bv_len, name.bv_val);
        for (size_t i = 0; vals && vals[i].bv_val; i++) {
            const struct berval *v = &vals[i];

            if (source_ldap_is(&name, "objectClass")) {
                if (source_ldap_is(v, "groupOfNames") || source_ldap_is(v, "groupOfUniqueNames"))
                    group = 1;
            } else if (source_ldap_is(&name, "entryUUID")) {
                /* Cut short at a NUL, two objects could share an identity: the DN serves instead. */
                if (v->bv_len > 0 && memchr(v->bv_val, 0, v->bv_len) == NULL)
                    source_obj_set_guid(o, v->bv_val, v->bv_len);
                else
                    source_skip_warn(sl->sink, "source %s: %s: entryUUID is empty or holds a NUL byte: "
                                     "using the DN as its identity", sl->conf->name, o->dn);
            } else if (source_ldap_is(&name, "member")) {
                source_obj_member(o, v->bv_val, v->bv_len);
            } else if (source_ldap_is(&name, "uniqueMember")) {
                source_obj_member(o, v->bv_val, source_ldap_unique_member(v->bv_val, v->bv_len));
            }
            if (is_addr) {
                const char *a = v->bv_val;
                size_t alen = v->bv_len;

                /* proxyAddresses is AD's "TYPE:value" wherever it appears. */
                if (!source_ldap_is(&name, "proxyAddresses") || source_ldap_ad_proxy(a, alen, &a, &alen))
                    (void) source_obj_address(o, sl->sink, attr, a, alen);
            }
            if (is_login)
                source_obj_login(o, v->bv_val, v->bv_len);
        }
        ber_memfree(vals);
    }
    ber_free(ber, 0);
    if (r < 0) {
        snprintf(err, errlen, "%s: malformed entry", o->dn);
        return -1;
    }
    if (group) {
        o->kind = STORE_KIND_GROUP;
    } else {
        o->kind = STORE_KIND_USER;
        source_obj_members_clear(o);
    }
    if (o->guid == NULL)                /* no entryUUID: the DN is the identity */
        source_obj_set_guid(o, o->dn, strlen(o->dn));
    if (o->addresses.n == 0) {
        log_debug("source %s: %s: no usable address, left out", sl->conf->name, o->dn);
        return 0;
    }
    if (source_obj_put(o, sl->sink) < 0) {
        snprintf(err, errlen, "%s: not stored", o->dn);
        return -1;
    }
    return 0;
}

static const char *const source_ldap_generic_attrs[] = {
    "objectClass", "entryUUID", "member", "uniqueMember", NULL,
};

const SOURCE_LDAP_FLAVOUR source_ldap_generic = {
    "generic",
    "(|(mail=*)(mailAlternateAddress=*))",
    "mail mailAlternateAddress",
    "uid",
    source_ldap_generic_attrs,
    source_ldap_sync_begin,         /* RFC 4533: source_ldap_sync.c */
    source_ldap_generic_entry,
    source_ldap_sync_end,
    source_ldap_sync_incremental,
};

/* ------------------------------------------------------------ the pull */

/* source_ldap_entry_cb - one entry of the full pull to the flavour */
static int source_ldap_entry_cb(SOURCE_LDAP *sl, LDAPMessage *e, void *ctx, char *err, size_t errlen)
{
    if (source_stopping()) {
        snprintf(err, errlen, "stopping on a signal");
        return -1;
    }
    sl->entries++;
    return sl->flavour->entry(sl, e, err, errlen);
}

/* source_ldap_full - every object under every base */
static int source_ldap_full(SOURCE *src, SYNC_SINK *sink, char **cookie, char **invocation_id,
                            char *err, size_t errlen)
{
    SOURCE_LDAP *sl = source_ldap_of(src);
    char why[1024];
    int nbase = 0;

    *cookie = NULL;
    *invocation_id = NULL;
    sl->sink = sink;
    sl->entries = 0;
    sl->disabled = 0;
    why[0] = 0;
    if (sl->flavour->begin && sl->flavour->begin(sl, why, sizeof(why)) < 0)
        goto fail;
    for (const char *b = sl->conf->base; *b;) {
        size_t len = strcspn(b, "\n");
        char *base = xstrndup(b, len);
        int rc = source_ldap_search(sl, base, LDAP_SCOPE_SUBTREE, sl->filter, sl->attrs, 1,
                                    source_ldap_entry_cb, NULL, why, sizeof(why));

        free(base);
        if (rc < 0)
            goto fail;
        nbase++;
        b += len;
        if (*b)
            b++;
    }
    if (sl->flavour->end)
        sl->flavour->end(sl, cookie, invocation_id);
    sl->sink = NULL;
    log_debug("source %s: %lld entries under %d base%s from %s; %lld disabled accounts left out",
              sl->conf->name, sl->entries, nbase, nbase == 1 ? "" : "s", sl->uri, sl->disabled);
    return SOURCE_OK;

fail:
    sl->sink = NULL;
    snprintf(err, errlen, "%s: %s", sl->uri, why);
    return SOURCE_ERR;
}

/* source_ldap_incremental - the changes since cookie, where the flavour can tell them */
static int source_ldap_incremental(SOURCE *src, const char *cookie, const char *invocation_id,
                                   SYNC_SINK *sink, char **new_cookie, char **new_invocation_id,
                                   char *err, size_t errlen)
{
    SOURCE_LDAP *sl = source_ldap_of(src);
    char why[1024];
    int rc;

    *new_cookie = NULL;
    *new_invocation_id = NULL;
    if (sl->flavour->incremental == NULL) {
        snprintf(err, errlen, "the %s flavour has no incremental pull", sl->flavour->name);
        return SOURCE_FULL;
    }
    sl->sink = sink;
    sl->entries = 0;
    sl->disabled = 0;
    why[0] = 0;
    rc = sl->flavour->incremental(sl, cookie, invocation_id, new_cookie, new_invocation_id,
                                  why, sizeof(why));
    sl->sink = NULL;
    if (rc != SOURCE_OK) {
        free(*new_cookie);
        free(*new_invocation_id);
        *new_cookie = *new_invocation_id = NULL;
    }
    if (rc == SOURCE_ERR)
        snprintf(err, errlen, "%s: %s", sl->uri, why);
    else if (rc == SOURCE_FULL)
        snprintf(err, errlen, "%s", why);
    return rc;
}

/* source_ldap_wait - persistent mode: the flavour's way of waiting for a change */
static int source_ldap_wait(SOURCE *src, int timeout_ms, char *err, size_t errlen)
{
    SOURCE_LDAP *sl = source_ldap_of(src);

    if (sl->flavour == &source_ldap_ad)
        return source_ldap_ad_wait(src, timeout_ms, err, errlen);
    return source_ldap_sync_wait(src, timeout_ms, err, errlen);
}

/* source_ldap_can_persist - mode = persistent: generic with one base (RFC 4533), or ad */
static int source_ldap_can_persist(const SOURCE_CONF *c)
{
    return source_ldap_sync_persistent(c) || source_ldap_ad_persistent(c);
}

const SOURCE_OPS source_ldap_ops = {
    .type = "ldap",
    .open = source_ldap_open,
    .full = source_ldap_full,
    .incremental = source_ldap_incremental,    /* per flavour: ad by uSNChanged */
    .wait = source_ldap_wait,           /* generic: RFC 4533; ad: change notification */
    .close = source_ldap_close,
    .validate = source_validate_ldap,   /* in source.c, beside the checks all types share */
    .can_persist = source_ldap_can_persist,
    .reload = source_ldap_dirsync_forget,       /* DirSync rights may have been granted since */
};
