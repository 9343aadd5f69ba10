/*
 * fuzz_ldap_entry.c - libFuzzer target: LDAP entries to recipients
 *
 * Drives the flavours' entry mapping of syncd (source_ldap_ad.c's
 * source_ldap_ad_entry for Active Directory: objectClass, mail,
 * proxyAddresses, objectGUID, userAccountControl,
 * msExchRecipientTypeDetails, msExchRequireAuthToSendTo, member...;
 * source_ldap.c's generic entry: mail, mailAlternateAddress, uid,
 * entryUUID, member, uniqueMember) with entries built from the fuzz
 * input, and no LDAP server: the fuzzer writes a SearchResultEntry in BER
 * to one end of a socketpair whose other end libldap reads as a
 * connection (ldap_init_fd), so the entry reaches the mapping through
 * libldap's own parsing, exactly as a directory's answer does.
 *
 * The input: byte 0 picks the flavour (bit 0: AD) and the shared mailbox
 * types; the rest is lines, the first the DN, each next "name:value" (one
 * value of that attribute; lines of the same name in a row make one
 * attribute with several values) or "name" alone (an attribute without
 * values). Values may hold any byte but a line feed. A member range that
 * is not the last ("member;range=0-1499") is left out: it would make the
 * mapping ask the directory for the next range.
 *
 * Checked, in a sink that stands for the store: a put object has a
 * non-empty identity, a known kind, at least one address, every address
 * already in its normal form and unique, logins lowercase, members only
 * on groups; log lines are printable.
 */
#include "config.h"

#include <ctype.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>

#include <lber.h>
#include <ldap.h>

#include "addr.h"
#include "syncd.h"
#include "fuzz_common.h"

/*
 * ldap_init_fd(3) (documented in ldap_open(3)) is exported by libldap but
 * declared only in its private header: an LDAP handle on a socket we made.
 */
#ifndef LDAP_PROTO_TCP
#define LDAP_PROTO_TCP 1
int ldap_init_fd(ber_socket_t fd, int proto, const char *url, LDAP **ldp);
#endif

/* syncd.c's globals, which the source code reads. */
volatile sig_atomic_t syncd_stopping;
const char *syncd_conf_path = "fuzz.conf";

#define FUZZ_ATTRS_MAX 64
#define FUZZ_VALS_MAX 64

/* fuzz_put - the sink's put: what the store would get */
static int fuzz_put(SYNC_SINK *sink, const STORE_OBJECT *obj)
{
    char norm[ADDR_KEY_SIZE], why[256];

    (void) sink;
    if (getenv("FUZZ_TRACE"))
        fprintf(stderr, "put %s %s %zu addresses (first %s), %zu logins, %zu members\n", obj->guid, obj->kind,
                obj->n_addresses, obj->n_addresses ? obj->addresses[0] : "-", obj->n_logins, obj->n_members);
    fuzz_check(obj->guid != NULL && *obj->guid);
    fuzz_check(strcmp(obj->kind, STORE_KIND_USER) == 0 || strcmp(obj->kind, STORE_KIND_SHARED) == 0
               || strcmp(obj->kind, STORE_KIND_CONTACT) == 0 || strcmp(obj->kind, STORE_KIND_GROUP) == 0
               || strcmp(obj->kind, STORE_KIND_PUBFOLDER) == 0);
    fuzz_check(obj->n_addresses > 0);
    for (size_t i = 0; i < obj->n_addresses; i++) {
        const char *a = obj->addresses[i];

        fuzz_check(addr_key(a, strlen(a), 0, norm, why, sizeof(why)) == 0 && strcmp(a, norm) == 0);
        for (size_t j = 0; j < i; j++)
            fuzz_check(strcmp(a, obj->addresses[j]) != 0);
    }
    for (size_t i = 0; i < obj->n_logins; i++)
        for (const char *p = obj->logins[i]; *p; p++)
            fuzz_check(!isupper((unsigned char) *p));
    fuzz_check(obj->n_members == 0 || strcmp(obj->kind, STORE_KIND_GROUP) == 0);
    return 0;
}

/* fuzz_del - the sink's delete (not used by a full pull's entry) */
static int fuzz_del(SYNC_SINK *sink, const char *guid)
{
    (void) sink;
    (void) guid;
    abort();
}

/* fuzz_range_pending - a member range that is not the last */
static int fuzz_range_pending(const char *name, size_t len)
{
    static const char r[] = ";range=";

    for (size_t i = 0; i + sizeof(r) - 1 <= len; i++)
        if (strncasecmp(name + i, r, sizeof(r) - 1) == 0)
            return name[len - 1] != '*';
    return 0;
}

/* fuzz_ber - the input as a SearchResultEntry of msgid, then SearchResultDone; NULL if unusable */
static BerElement *fuzz_ber(int msgid, const char *in, size_t len)
{
    BerElement *ber = ber_alloc_t(LBER_USE_DER);
    const char *end = in + len, *nl;
    struct berval dn;
    int nattrs = 0;

    fuzz_check(ber != NULL);
    nl = memchr(in, '\n', len);
    dn.bv_val = (char *) in;
    dn.bv_len = nl ? (size_t) (nl - in) : len;
    in = nl ? nl + 1 : end;
    if (ber_printf(ber, "{it{O{", msgid, LDAP_RES_SEARCH_ENTRY, &dn) < 0)
        goto bad;
    while (in < end && nattrs < FUZZ_ATTRS_MAX) {
        struct berval name, vals[FUZZ_VALS_MAX];
        int nvals = 0;

        nl = memchr(in, '\n', (size_t) (end - in));
        {
            const char *le = nl ? nl : end;
            const char *eq = memchr(in, ':', (size_t) (le - in));

            name.bv_val = (char *) in;
            name.bv_len = (size_t) ((eq ? eq : le) - in);
            if (eq) {
                vals[nvals].bv_val = (char *) eq + 1;
                vals[nvals++].bv_len = (size_t) (le - eq - 1);
            }
            in = nl ? nl + 1 : end;
        }
        /* More values of the same name, on the lines right after. */
        while (in < end && nvals > 0 && nvals < FUZZ_VALS_MAX) {
            const char *le, *eq;

            nl = memchr(in, '\n', (size_t) (end - in));
            le = nl ? nl : end;
            eq = memchr(in, ':', (size_t) (le - in));
            if (eq == NULL || (size_t) (eq - in) != name.bv_len || memcmp(in, name.bv_val, name.bv_len) != 0)
                break;
            vals[nvals].bv_val = (char *) eq + 1;
            vals[nvals++].bv_len = (size_t) (le - eq - 1);
            in = nl ? nl + 1 : end;
        }
        if (name.bv_len == 0 || fuzz_range_pending(name.bv_val, name.bv_len))
            continue;
        if (ber_printf(ber, "{O[", &name) < 0)
            goto bad;
        for (int i = 0; i < nvals; i++)
            if (ber_printf(ber, "O", &vals[i]) < 0)
                goto bad;
        if (ber_printf(ber, "]N}") < 0)
            goto bad;
        nattrs++;
    }
    if (ber_printf(ber, "}N}N}") < 0)
        goto bad;
    if (ber_printf(ber, "{it{ess}}", msgid, LDAP_RES_SEARCH_RESULT, LDAP_SUCCESS, "", "") < 0)
        goto bad;
    return ber;
bad:
    ber_free(ber, 1);
    return NULL;
}

/* fuzz_write_all - the whole buffer onto the socket (the pair's buffer holds it) */
static int fuzz_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t) n;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static char *names[] = {"fuzz", NULL};
    SOURCE_CONF conf;
    SOURCE_LDAP sl;
    SYNC_SINK sink;
    LDAP *ld = NULL;
    LDAPMessage *res = NULL, *e;
    BerElement *ber = NULL;
    struct berval *bv = NULL;
    struct timeval tv = {2, 0};
    char err[1024], junk[4096];
    int sv[2], msgid, v3 = LDAP_VERSION3, ad, rc, n;

    if (!ready) {
        signal(SIGPIPE, SIG_IGN);
        fuzz_quiet("fuzz_ldap_entry");
        ready = 1;
    }
    if (size < 1 || size > 60000)
        return 0;
    ad = data[0] & 1;
    fuzz_check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    if (ldap_init_fd(sv[0], LDAP_PROTO_TCP, "ldap://fuzz.invalid", &ld) != LDAP_SUCCESS) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    fuzz_check(ldap_search_ext(ld, "dc=example,dc=com", LDAP_SCOPE_SUBTREE, "(objectClass=*)", NULL, 0,
                               NULL, NULL, NULL, 0, &msgid) == LDAP_SUCCESS);
    fuzz_check(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
    while (read(sv[1], junk, sizeof(junk)) > 0)
         /* the request: not ours to check */ ;
    if ((ber = fuzz_ber(msgid, (const char *) data + 1, size - 1)) == NULL || ber_flatten(ber, &bv) < 0)
        goto out;
    fuzz_check(fcntl(sv[1], F_SETFL, 0) == 0);
    if (fuzz_write_all(sv[1], bv->bv_val, bv->bv_len) < 0)
        goto out;

    memset(&conf, 0, sizeof(conf));
    conf.name = names[0];
    memset(&sink, 0, sizeof(sink));
    sink.put = fuzz_put;
    sink.del = fuzz_del;
    memset(&sl, 0, sizeof(sl));
    sl.conf = &conf;
    sl.flavour = ad ? &source_ldap_ad : &source_ldap_generic;
    sl.ld = ld;
    sl.sink = &sink;
    sl.usn_start = -1;
    sl.addr_attrs = source_words(ad ? "mail proxyAddresses" : sl.flavour->addresses, &n);
    sl.login_attrs = source_words(sl.flavour->logins, &n);
    if (ad)
        sl.n_shared_types = source_ldap_ad_shared_types(data[0] & 2 ? "4 16 32" : "4 16 32 8589934592",
                                                        &sl.shared_types);
    source_obj_init(&sl.obj, conf.name);

    rc = ldap_result(ld, msgid, LDAP_MSG_ONE, &tv, &res);
    if (rc == LDAP_RES_SEARCH_ENTRY && (e = ldap_first_entry(ld, res)) != NULL) {
        err[0] = 0;
        if (sl.flavour->entry(&sl, e, err, sizeof(err)) < 0)
            fuzz_check(err[0] != 0);
    }
    source_obj_free(&sl.obj);
    source_words_free(sl.addr_attrs);
    source_words_free(sl.login_attrs);
    free(sl.shared_types);
out:
    if (res)
        ldap_msgfree(res);
    if (bv)
        ber_bvfree(bv);
    if (ber)
        ber_free(ber, 1);
    ldap_unbind_ext(ld, NULL, NULL);
    close(sv[1]);
    return 0;
}
