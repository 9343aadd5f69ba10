#!/bin/sh
# syncd_external.sh - rcptgate-syncd binding with SASL EXTERNAL against a real slapd
#
# One private slapd (tests/lib/slapd.sh) with TLS and an ldapi:// socket
# under the test directory asks clients for a certificate of the test CA
# (TLSVerifyClient try) and maps two identities to the sync account with
# authz-regexp: the subject of the client certificate "syncd", and the
# peer credentials of this process on the ldapi socket. The ACLs let only
# the sync account read the people; any other user sees ou=People empty.
# Checked: a pull with EXTERNAL over StartTLS, over ldaps and over ldapi
# is applied; the configurations that cannot work are refused before
# connecting (78): EXTERNAL without TLS or without a certificate, a
# certificate without its key, a key file that others may read (or none),
# EXTERNAL with bind_dn; and every failure at run time leaves the store as
# it was: a certificate of another CA (75; GnuTLS does not even send it),
# a key that does not belong to the certificate (75), a server that does
# not ask for a certificate (75), and identities the ACLs give nothing, by
# certificate or over ldapi (the shrink guard refuses the empty pull, 65).
# Then with TLSVerifyClient demand: another CA's certificate fails the
# handshake (75), and the right one syncs again.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init syncd_external
slapd_require
syncd_require
tl_need_tool ldapwhoami ldapwhoami

S=$SLAPD_SUFFIX
PEOPLE="ou=People,$S"
# slapd's authz-regexp: the certificate's subject and our peer credentials
# become the sync account
AUTHZ_CERT="authz-regexp \"^cn=syncd client,o=rcptgate test\$\" \"$SLAPD_SYNC_DN\""
authz_peer() {
    printf 'authz-regexp "^gidNumber=%s[+]uidNumber=%s,cn=peercred,cn=external,cn=auth$" "%s"\n' \
        "$(id -g)" "$(id -u)" "$1"
}

SLAPD_VERIFY_CLIENT=try
SLAPD_GLOBAL_CONF="$AUTHZ_CERT
$(authz_peer "$SLAPD_SYNC_DN")"
slapd_init tls || tl_bail "slapd_init tls failed (openssl?)"
slapd_ldapi
[ ${#SLAPD_LDAPI} -lt 100 ] || tl_skip_all "the ldapi socket path is too long for a unix socket: $SLAPD_LDAPI"
TLSD="$SLAPD_DIR/tls"
slapd_client_cert syncd "/O=rcptgate test/CN=syncd client" &&
    slapd_client_cert stranger "/O=rcptgate test/CN=stranger" &&
    slapd_client_cert rogue "/O=rcptgate test/CN=syncd client" wrong ||
    tl_bail "openssl could not issue the client certificates"

# Only the sync account reads the people; others see an empty ou=People
slapd_acl "access to attrs=userPassword
	by anonymous auth
	by * none
access to dn.base=\"$PEOPLE\"
	by users read
	by * none
access to *
	by dn.exact=\"$SLAPD_SYNC_DN\" read
	by * none"
awk -v base="$PEOPLE" 'BEGIN {
    printf "dn: %s\nobjectClass: organizationalUnit\nou: People\n\n", base
    for (i = 0; i < 20; i++) {
        printf "dn: uid=x%02d,%s\nobjectClass: inetOrgPerson\n", i, base
        printf "uid: x%02d\ncn: Ext %d\nsn: Ext\nmail: x%02d@ext.example\n\n", i, i, i
    }
}' > "$T/people.ldif"
slapd_load "$T/people.ldif" &&
    slapd_start || { echo "not ok 1 - slapd with TLS and ldapi starts"; echo "1..1"; exit 1; }

tl_admin domain add ext.example >/dev/null 2>&1

# LeakSanitizer: Debian's libldap 2.5 (GnuTLS) never frees the client
# certificate and key it loads into a new TLS context (tls_g.c); they
# are libldap's, allocated by GnuTLS, and nothing else is excused.
printf 'leak:gnutls_x509_privkey_init\nleak:gnutls_x509_crt_init\n' > "$T/lsan.supp"
LSAN_OPTIONS="suppressions=$T/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS

# whoami ARGS... - the identity slapd gives a SASL EXTERNAL bind (lower case)
whoami() {
    ldapwhoami -Q -Y EXTERNAL "$@" 2>"$T/whoami.err" | tr 'A-Z' 'a-z'
}
SYNC_LC=$(echo "$SLAPD_SYNC_DN" | tr 'A-Z' 'a-z')

# The test's own setup: slapd maps the identities as intended
tl_is "$(LDAPTLS_CACERT=$SLAPD_CA LDAPTLS_CERT=$TLSD/syncd.pem LDAPTLS_KEY=$TLSD/syncd.key \
    whoami -H "$SLAPD_URI_TLS")" "dn:$SYNC_LC" "slapd maps the certificate \"syncd client\" to the sync account"
tl_is "$(whoami -H "$SLAPD_URI_LDAPI")" "dn:$SYNC_LC" "slapd maps our peer credentials on ldapi to the sync account"

# ext_source [key=value ...] - the config with one generic source "ext" and
# no simple bind (slapd_source's bind_dn and password file emptied)
ext_source() {
    syncd_conf_reset
    slapd_syncd_conf
    slapd_source ext generic "base=$PEOPLE" bind_dn= bind_password_file= sasl_mech=EXTERNAL "$@"
}

# cert_source URI TLS NAME [KEYFILE [key=value ...]] - EXTERNAL with the
# client certificate NAME and its key (or KEYFILE)
cert_source() {
    _u=$1 _t=$2 _n=$3 _k=${4:-$TLSD/$3.key}
    shift 3
    [ $# -gt 0 ] && shift
    ext_source "uri=$_u" "tls=$_t" "ca_file=$SLAPD_CA" "cert_file=$TLSD/$_n.pem" "key_file=$_k" "$@"
}

# person UID - add a person with mail UID@ext.example
person() {
    slapd_add <<EOF
dn: uid=$1,$PEOPLE
objectClass: inetOrgPerson
uid: $1
cn: $1
sn: $1
mail: $1@ext.example
EOF
}

# check_conf MSG PATTERN - -n and --once both refuse the config with 78
check_conf() {
    "$RG_SYNCD" -c "$CONF" -n >"$T/syncd.out" 2>"$T/syncd.err"
    _n=$?
    syncd_once
    tl_is "$_n/$rc" 78/78 "$1: a configuration error (78) for -n and --once"
    tl_like "$(cat "$T/syncd.err")" "$2" "  and the message says why"
}

# --- configurations that cannot work: 78 before any connection
ext_source "uri=$SLAPD_URI"
check_conf "EXTERNAL over ldap:// to loopback (no TLS)" "needs TLS with a client certificate"
ext_source "uri=$SLAPD_URI" tls=starttls "ca_file=$SLAPD_CA"
check_conf "EXTERNAL over StartTLS without cert_file" "needs TLS with a client certificate"
ext_source "uri=$SLAPD_URI_TLS" tls=ldaps "ca_file=$SLAPD_CA" "cert_file=$TLSD/syncd.pem"
check_conf "cert_file without key_file" "cert_file and key_file go together"
syncd_conf_reset
slapd_syncd_conf
slapd_source ext generic "base=$PEOPLE" sasl_mech=EXTERNAL "uri=$SLAPD_URI_TLS" tls=ldaps "ca_file=$SLAPD_CA" \
    "cert_file=$TLSD/syncd.pem" "key_file=$TLSD/syncd.key"
check_conf "EXTERNAL with a bind_dn" "remove bind_dn"
cp "$TLSD/syncd.key" "$TLSD/open.key"
chmod 0644 "$TLSD/open.key"
cert_source "$SLAPD_URI_TLS" ldaps syncd "$TLSD/open.key"
check_conf "a key file that others may read" "open\\.key"
cert_source "$SLAPD_URI_TLS" ldaps syncd "$TLSD/no-such.key"
check_conf "a missing key file" "no-such\\.key"
tl_is "$(syncd_dump)" "" "nothing was written to the store"

# --- EXTERNAL with the client certificate: StartTLS, then ldaps
cert_source "$SLAPD_URI" starttls syncd
syncd_once -v
tl_is "$rc" 0 "EXTERNAL over StartTLS with the client certificate: exits 0"
tl_is "$(syncd_sql "SELECT count(*) FROM recipient r JOIN source s ON s.id = r.source_id WHERE s.name = 'ext'")" 20 \
    "  all 20 people are stored"
tl_is "$(rg_query x00@ext.example)/$(rg_query x19@ext.example)" 0/0 "  x00 and x19 are valid recipients"
tl_like "$(cat "$T/syncd.err")" "connected to $SLAPD_URI \\(StartTLS\\)" "  the log says StartTLS"

person tls1
cert_source "$SLAPD_URI_TLS" ldaps syncd
syncd_once
tl_is "$rc" 0 "EXTERNAL over ldaps with the client certificate: exits 0"
tl_is "$(rg_query tls1@ext.example)" 0 "  the new person is applied"

# --- EXTERNAL over ldapi: the kernel names the peer, no certificate
person ipc1
ext_source "uri=$SLAPD_URI_LDAPI"
syncd_once -v
tl_is "$rc" 0 "EXTERNAL over ldapi:// (peer credentials): exits 0"
tl_is "$(rg_query ipc1@ext.example)" 0 "  the new person is applied"
tl_like "$(cat "$T/syncd.err")" "connected to ldapi://.* \\(no TLS\\)" "  the log says ldapi without TLS"
tl_is "$(syncd_sql "SELECT outcome FROM sync_run r JOIN source s ON s.id = r.source_id
                    WHERE s.name = 'ext' ORDER BY r.id DESC LIMIT 1")" ok "  the run is recorded as ok"

# --- failures at run time: nothing applied
person pending1
syncd_dump > "$T/before"

cert_source "$SLAPD_URI_TLS" ldaps rogue
syncd_once
tl_is "$rc" 75 "ldaps with a certificate of another CA (same subject): 75"
tl_like "$(cat "$T/syncd.err")" "SASL EXTERNAL bind: .*no client certificate went to the server" \
    "  the message says no certificate reached the server (GnuTLS sends none the server's CAs did not sign)"
cert_source "$SLAPD_URI" starttls rogue
syncd_once
tl_is "$rc" 75 "StartTLS with a certificate of another CA: 75"

cert_source "$SLAPD_URI_TLS" ldaps syncd "$TLSD/stranger.key"
syncd_once
tl_is "$rc" 75 "a key that does not belong to the certificate: 75"
tl_like "$(cat "$T/syncd.err")" "TLS setup failed.*is key_file the key of cert_file" "  and the message asks whether the key belongs to the certificate"

cert_source "$SLAPD_URI_TLS" ldaps stranger
syncd_once
tl_is "$rc" 65 "a certificate of the test CA that slapd maps to nobody (sees no people): the shrink guard refuses (65)"
tl_like "$(cat "$T/syncd.err")" "[Rr]efus" "  and says so"

# slapd stops asking for certificates, and our peer on ldapi becomes an
# account that may read nothing
SLAPD_VERIFY_CLIENT=never
SLAPD_GLOBAL_CONF="$AUTHZ_CERT
$(authz_peer "cn=nobody,ou=Service,$S")"
slapd_restart || { echo "not ok - slapd restarts"; tl_done; exit 1; }
cert_source "$SLAPD_URI_TLS" ldaps syncd
syncd_once
tl_is "$rc" 75 "a server that does not ask for the client certificate: 75"
tl_like "$(cat "$T/syncd.err")" "SASL EXTERNAL bind: .*does it ask for one" "  the message names the bind and asks whether the server asks for a certificate"
ext_source "uri=$SLAPD_URI_LDAPI"
syncd_once
tl_is "$rc" 65 "ldapi with a peer that slapd maps to an account that reads nothing: the shrink guard refuses (65)"

syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "after every failure the store is unchanged"
tl_is "$(rg_query pending1@ext.example)/$(rg_query x05@ext.example)" 1/0 \
    "  the pending person is not in it, the others still answer"

# --- slapd demands a certificate now: another CA's fails the handshake,
# and the right one syncs again
SLAPD_VERIFY_CLIENT=demand
SLAPD_GLOBAL_CONF="$AUTHZ_CERT
$(authz_peer "$SLAPD_SYNC_DN")"
slapd_restart || { echo "not ok - slapd restarts"; tl_done; exit 1; }
cert_source "$SLAPD_URI_TLS" ldaps rogue
syncd_once
tl_is "$rc" 75 "TLSVerifyClient demand, a certificate of another CA: 75"
# Under TLS 1.3 slapd's refusal comes after the client's side of the
# handshake: libldap finds either no certificate sent or a dead connection.
tl_like "$(cat "$T/syncd.err")" "SASL EXTERNAL bind: .*(did the server refuse the client certificate|no client certificate went to the server)" \
    "  the message points at the client certificate"
tl_is "$(rg_query pending1@ext.example)" 1 "  nothing applied"
cert_source "$SLAPD_URI_TLS" ldaps syncd
syncd_once
tl_is "$rc" 0 "TLSVerifyClient demand, the right certificate: EXTERNAL over ldaps exits 0"
tl_is "$(rg_query pending1@ext.example)" 0 "  the pending person is applied"

tl_done
