#!/bin/sh
# syncd_ldap.sh - rcptgate-syncd's generic LDAP flavour, connections and failures
#
# A private slapd (tests/lib/slapd.sh) with TLS holds the generic part of
# tests/fixtures/directory.ldif (inetOrgPerson with mail and
# mailAlternateAddress, groupOfNames and groupOfUniqueNames) and 2,000
# bulk-loaded people. Checked: what a generic pull stores (addresses,
# uid logins, entryUUID as the guid, group members); URI failover;
# domain controllers found through DNS SRV records (dns_domain, asked of
# the test DNS server tests/tools/rg_dnsd through dns_servers) in
# priority order with failover, and a DNS failure (exit 75, or the uri
# list as the fallback);
# StartTLS and ldaps with ca_file, and that a wrong or missing CA fails;
# the bind password file (mode 0644 is a configuration error, 78; a wrong
# password 75); and that a pull which fails half-way applies nothing and
# exits 75 (as does a server size limit or a referral), whether slapd is
# killed mid-pull, the connection is cut, or slapd hangs (the operation
# timeout ends it), while the data already in the store keeps answering,
# and that syncing works again afterwards.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init syncd_ldap
slapd_require
syncd_require

S=$SLAPD_SUFFIX
PEOPLE="ou=People,$S"
GRPS="ou=Groups,$S"

slapd_init tls || tl_bail "slapd_init tls failed (openssl?)"
awk -v base="$PEOPLE" 'BEGIN {
    for (i = 0; i < 2000; i++) {
        printf "dn: uid=b%05d,%s\nobjectClass: inetOrgPerson\n", i, base
        printf "uid: b%05d\ncn: Bulk %d\nsn: Bulk\nmail: b%05d@bulk.example\n\n", i, i, i
    }
}' > "$T/bulk.ldif"
slapd_load "$top_srcdir/tests/fixtures/directory.ldif" "$T/bulk.ldif" &&
    slapd_start || { echo "not ok 1 - slapd with the fixture starts"; echo "1..1"; exit 1; }

tl_admin domain add generic.example >/dev/null 2>&1
tl_admin domain add bulk.example >/dev/null 2>&1
tl_admin domain add bücher.example >/dev/null 2>&1

# ldap_source [key=value ...] - the config with one generic source "ldap"
ldap_source() {
    syncd_conf_reset
    slapd_syncd_conf
    slapd_source ldap generic "base=$PEOPLE" "base=$GRPS" "$@"
}

# person UID - add a person with mail UID@generic.example
person() {
    slapd_add <<EOF
dn: uid=$1,$PEOPLE
objectClass: inetOrgPerson
uid: $1
cn: $1
sn: $1
mail: $1@generic.example
EOF
}

# elapsed_since T0 - whole seconds since T0 (date +%s)
elapsed_since() {
    echo $(($(date +%s) - $1))
}

# --- configuration errors: 78, one line naming the problem
ldap_source flavour=bogus
"$RG_SYNCD" -c "$CONF" -n >"$T/syncd.out" 2>"$T/syncd.err"
tl_is "$?" 78 "-n: an unknown flavour is a configuration error (78)"
ldap_source tls=sometimes
syncd_once
tl_is "$rc" 78 "--once: an unknown tls value is a configuration error (78)"
tl_like "$(cat "$T/syncd.err")" "tls" "and the message names the setting"

# --- a plain pull
ldap_source
syncd_once
tl_is "$rc" 0 "--once of the generic directory exits 0"
for a in John.Doe@generic.example jdoe@generic.example j.doe@generic.example \
    max@generic.example pat@bücher.example team@generic.example \
    everyone@generic.example all@generic.example ops@generic.example \
    b00000@bulk.example b01999@bulk.example; do
    tl_is "$(rg_query "$a")" 0 "$a is a valid recipient"
done
for a in nomail@generic.example unix@generic.example nobody@generic.example \
    alice@test.example; do
    tl_is "$(rg_query "$a")" 1 "$a is not a valid recipient"
done
tl_is "$(syncd_sql "SELECT count(*) FROM recipient r JOIN source s ON s.id = r.source_id WHERE s.name = 'ldap'")" 2009 \
    "all 2,009 addresses (past the size limit of 10) are stored"
tl_is "$(syncd_sql "SELECT type FROM source WHERE name = 'ldap'")" ldap "the source is recorded as type ldap"
tl_is "$(syncd_sql "SELECT kind FROM recipient WHERE address = 'john.doe@generic.example'")" user "an inetOrgPerson: kind user"
tl_is "$(syncd_sql "SELECT kind FROM recipient WHERE address = 'ops@generic.example'")" group "a groupOfUniqueNames: kind group"
uuid=$(slapd_search -b "uid=jdoe,$PEOPLE" -s base entryUUID | sed -n 's/^entryUUID: //p')
tl_is "$(syncd_sql "SELECT lower(guid) FROM object WHERE dn = 'uid=jdoe,$PEOPLE'")" "$uuid" "the guid is the entryUUID"
tl_is "$(syncd_sql "SELECT l.name FROM login l JOIN object o ON o.id = l.object_id WHERE o.dn = 'uid=jdoe,$PEOPLE'")" jdoe \
    "the login is the uid"
members() {
    syncd_sql "SELECT m.dn FROM member x JOIN object g ON g.id = x.group_id
               JOIN object m ON m.id = x.member_id WHERE g.dn = '$1' ORDER BY 1" | sed 's/,.*//' | tr '\n' ' '
}
tl_is "$(members "cn=team,$GRPS")" "uid=jdoe uid=mmuster " "groupOfNames members"
tl_is "$(members "cn=everyone,$GRPS")" "cn=team uid=pat " "a nested group is a member; a member without mail is not"
tl_is "$(members "cn=ops,$GRPS")" "uid=jdoe " "groupOfUniqueNames members"

# --- failover: the first URI does not answer
ldap_source "uri=ldap://127.0.0.1:1/ $SLAPD_URI"
person fail1
syncd_once
tl_is "$rc" 0 "a dead first URI: the second one is used"
tl_is "$(rg_query fail1@generic.example)" 0 "and its data applied"

# --- DNS SRV discovery: a dead controller at priority 0, slapd at 10
RG_DNSD="$top_builddir/tests/tools/rg_dnsd"
if [ -x "$RG_DNSD" ]; then
    cat > "$T/zone" <<EOF
_ldap._tcp.dc._msdcs.test.example SRV "10 100 $SLAPD_PORT dc1.test.example"
_ldap._tcp.dc._msdcs.test.example SRV "0 100 1 dead.test.example"
dc1.test.example A 127.0.0.1
dead.test.example A 127.0.0.1
_ldap._tcp.dc._msdcs.slow.example DROP
_ldap._tcp.dc._msdcs.pair.example SRV "0 100 $SLAPD_PORT dc1.pair.example"
_ldap._tcp.dc._msdcs.pair.example SRV "0 100 1 dead.pair.example"
dc1.pair.example A 127.0.0.1
dead.pair.example A 127.0.0.1
_ldap._tcp.dc._msdcs.evil.example SRV "0 100 $SLAPD_PORT dc.attacker.example"
dc.attacker.example A 127.0.0.1
EOF
    rm -f "$T/dnsd.pid" "$T/dnsd.port"
    "$RG_DNSD" -l 127.0.0.1:0 -z "$T/zone" -p "$T/dnsd.pid" -P "$T/dnsd.port" -q 2>"$T/dnsd.err" &
    dnsd_pid=$!
    tl_pids="$tl_pids $dnsd_pid"
    _n=0
    while [ ! -s "$T/dnsd.pid" ] && [ $_n -lt 100 ]; do sleep 0.05; _n=$((_n + 1)); done
    DNS="127.0.0.1:$(cat "$T/dnsd.port")"

    person srv1
    # tls = auto spares only a loopback uri the postmaster wrote: a DNS
    # answer naming 127.0.0.1 still gets StartTLS (which this slapd has).
    ldap_source "uri=" "dns_domain=test.example" "dns_servers=$DNS" tls=auto "ca_file=$SLAPD_CA"
    syncd_once -v
    tl_is "$rc" 0 "dns_domain with tls = auto: the pull is applied"
    tl_like "$(cat "$T/syncd.err")" "connected to ldap://127\\.0\\.0\\.1:$SLAPD_PORT \\(StartTLS\\)" \
        "... over StartTLS: a loopback target from DNS is not exempt from TLS"
    ldap_source "uri=ldap://127.0.0.1:$SLAPD_PORT" tls=auto
    syncd_once -v
    tl_like "$(cat "$T/syncd.err")" "connected to ldap://127\\.0\\.0\\.1:$SLAPD_PORT \\(no TLS\\)" \
        "the same loopback uri written in uri = is (tls = auto)"

    ldap_source "uri=" "dns_domain=test.example" "dns_servers=$DNS" "tls=none"
    syncd_once -v
    tl_is "$rc" 0 "dns_domain: the domain controllers come from the SRV records"
    tl_is "$(rg_query srv1@generic.example)" 0 "and the pull is applied"
    tl_like "$(cat "$T/syncd.err")" "domain controllers of test\\.example: ldap://127\\.0\\.0\\.1:1 ldap://127\\.0\\.0\\.1:$SLAPD_PORT\$" \
        "in priority order, the targets resolved by the same DNS server"
    tl_like "$(cat "$T/syncd.err")" "using ldap://127\\.0\\.0\\.1:$SLAPD_PORT after: ldap://127\\.0\\.0\\.1:1: cannot connect" \
        "the dead controller (priority 0) is tried first, then the next"

    ldap_source "uri=" "dns_domain=evil.example" "dns_servers=$DNS" "tls=none"
    syncd_once
    tl_is "$rc" 75 "an SRV target outside dns_domain is not used (75)"
    tl_like "$(cat "$T/syncd.err")" "names dc\\.attacker\\.example, outside evil\\.example: not used" \
        "... and the log says so"

    ldap_source "uri=" "dns_domain=nowhere.example" "dns_servers=$DNS"
    syncd_once
    tl_is "$rc" 75 "a domain without SRV records and no uri: 75"
    tl_like "$(cat "$T/syncd.err")" "DNS SRV _ldap\\._tcp\\.dc\\._msdcs\\.nowhere\\.example: Domain name not found" \
        "the log names the record and DNS's answer"

    t0=$(date +%s)
    ldap_source "dns_domain=slow.example" "dns_servers=$DNS" connect_timeout=1s
    person srv2
    syncd_once
    tl_is "$rc" 0 "a DNS server that does not answer, with uri as the fallback: 0"
    tl_ok "$([ $(($(date +%s) - t0)) -le 5 ]; echo $?)" "DNS gave up within connect_timeout ($(($(date +%s) - t0)) s)"
    tl_like "$(cat "$T/syncd.err")" "slow\\.example: no answer \\(timeout\\); trying uri" "the log says DNS did not answer"
    tl_is "$(rg_query srv2@generic.example)" 0 "and the pull through uri is applied"

    # Two controllers of one priority, one of them dead, polled by a daemon:
    # the one that answered is tried first at every later poll. (Picking
    # anew each time, an AD source on the uSNChanged path would make a
    # full pull at most polls: its USNs belong to one controller.)
    syncd_conf_reset
    slapd_syncd_conf poll_interval=1s full_interval=1h
    slapd_source ldap generic "base=$PEOPLE" "base=$GRPS" "uri=" "dns_domain=pair.example" \
        "dns_servers=$DNS" "tls=none"
    runs0=$(syncd_sql "SELECT count(*) FROM sync_run")
    : > "$T/pair.err"
    "$RG_SYNCD" -c "$CONF" -f >/dev/null 2>>"$T/pair.err" &
    pair_pid=$!
    tl_pids="$tl_pids $pair_pid"
    _n=0
    while [ "$(syncd_sql "SELECT count(*) FROM sync_run")" -lt $((runs0 + 6)) ] && [ $_n -lt 300 ]; do
        sleep 0.1
        _n=$((_n + 1))
    done
    kill "$pair_pid"
    wait "$pair_pid"
    tl_pids=$(echo "$tl_pids" | sed "s/ $pair_pid//")
    runs=$(($(syncd_sql "SELECT count(*) FROM sync_run") - runs0))
    tl_ok "$([ "$runs" -ge 6 ]; echo $?)" "two controllers of one priority: the daemon polled $runs times"
    hops=$(grep -c "using ldap://127\\.0\\.0\\.1:$SLAPD_PORT after" "$T/pair.err")
    tl_ok "$([ "$hops" -le 1 ]; echo $?)" \
        "... the controller that answered was tried first again (the dead one first $hops time(s), at most the first)"

    kill "$dnsd_pid"
    wait "$dnsd_pid" 2>/dev/null
else
    echo "# tests/tools/rg_dnsd not built: DNS SRV discovery not tested"
fi

# --- TLS: slapd now refuses simple binds without it
SLAPD_SECURITY="simple_bind=128"
slapd_restart
person tls1
ldap_source
syncd_once
tl_is "$rc" 75 "tls = none against a server that requires TLS: 75"
tl_is "$(rg_query tls1@generic.example)" 1 "nothing applied"
ldap_source tls=starttls "ca_file=$SLAPD_CA"
syncd_once
tl_is "$rc" 0 "StartTLS with ca_file: exits 0"
tl_is "$(rg_query tls1@generic.example)" 0 "StartTLS: the change is applied"
person tls2
ldap_source "uri=$SLAPD_URI_TLS" tls=ldaps "ca_file=$SLAPD_CA"
syncd_once
tl_is "$rc" 0 "ldaps with ca_file: exits 0"
tl_is "$(rg_query tls2@generic.example)" 0 "ldaps: the change is applied"
person tls3
syncd_dump > "$T/before"
ldap_source "uri=$SLAPD_URI_TLS" tls=ldaps "ca_file=$SLAPD_WRONG_CA"
syncd_once
tl_is "$rc" 75 "ldaps with a CA that did not sign the server's certificate: 75"
ldap_source tls=starttls "ca_file=$SLAPD_WRONG_CA"
syncd_once
tl_is "$rc" 75 "StartTLS with the wrong CA: 75"
ldap_source tls=starttls
syncd_once
tl_is "$rc" 75 "StartTLS without ca_file does not trust the test CA: 75"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "failed TLS handshakes applied nothing"
tl_is "$(rg_query tls3@generic.example)" 1 "the pending change is not in the store"
SLAPD_SECURITY=""
slapd_restart

# --- the bind password file
ldap_source
chmod 0644 "$T/ldap.password"
syncd_once
tl_is "$rc" 78 "a bind password file readable by others is a configuration error (78)"
tl_like "$(cat "$T/syncd.err")" "ldap\\.password" "and the message names the file"
ldap_source "bind_password_file=$T/no-such.password"
syncd_once
tl_ok "$([ "$rc" = 75 ] || [ "$rc" = 78 ]; echo $?)" "a missing bind password file fails (75 or 78, got $rc)"
ldap_source
printf 'not-the-password' > "$T/ldap.password"
syncd_once
tl_is "$rc" 75 "a wrong bind password: 75"
tl_ok "$([ -s "$T/syncd.err" ]; echo $?)" "and a message says why"
printf '%s\n' "$SLAPD_SYNC_PW" > "$T/ldap.password"
syncd_once
tl_is "$rc" 0 "a password file ending in a newline (echo secret > file) works"
tl_is "$(rg_query tls3@generic.example)" 0 "and the pending change is applied"

# --- a server limit or a referral never truncates a pull silently
person limit1
syncd_dump > "$T/before"
SLAPD_PRTOTAL=1000
slapd_restart
ldap_source
syncd_once
tl_is "$rc" 75 "a paged search stopped by the server's size limit (1,000 of 2,010): 75"
tl_like "$(cat "$T/syncd.err")" "[Ss]ize limit" "and the message says so"
SLAPD_PRTOTAL=unlimited
slapd_restart
slapd_add <<EOF
dn: ou=Elsewhere,$S
objectClass: referral
objectClass: extensibleObject
ou: Elsewhere
ref: ldap://127.0.0.1:1/ou=Elsewhere,$S
EOF
ldap_source "base=ou=Elsewhere,$S"
syncd_once
tl_is "$rc" 75 "a base that is a referral: 75"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "neither applied anything"
tl_is "$(rg_query limit1@generic.example)" 1 "the pending change is not in the store"
slapd_delete "ou=Elsewhere,$S"

# --- a pull that fails half-way applies nothing
person mid1
slapd_delete "uid=b00001,$PEOPLE"
syncd_dump > "$T/before"

# The connection is cut after 100,000 bytes: pages of 100 entries, so
# several pages have arrived when it breaks.
slapd_proxy cut 100000
ldap_source "uri=$PROXY_URI" page_size=100 timeout=2s
syncd_once
tl_is "$rc" 75 "connection cut mid-pull: 75"
slapd_proxy_stop

# slapd is killed while the pull is under way: the proxy holds slapd's
# answer after 100,000 bytes, slapd gets SIGKILL, and the proxy passes on
# what slapd had sent and then the closed connection.
slapd_proxy hold 100000
ldap_source "uri=$PROXY_URI" page_size=100 timeout=5s
"$RG_SYNCD" -c "$CONF" --once >"$T/syncd.out" 2>"$T/syncd.err" &
syncd_pid=$!
i=0
while [ ! -e "$T/proxy.held" ] && [ $i -lt 200 ]; do
    sleep 0.05
    i=$((i + 1))
done
tl_ok "$([ -e "$T/proxy.held" ]; echo $?)" "syncd was mid-pull (100,000 bytes received)"
slapd_kill
wait "$syncd_pid"
tl_is "$?" 75 "slapd killed mid-pull: 75"
slapd_proxy_stop
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "the store is unchanged"
tl_is "$(rg_query mid1@generic.example)" 1 "the new entry is not in the store"
tl_is "$(rg_query b00001@bulk.example)" 0 "the deleted entry still answers"

# slapd is down: 75, and the store keeps answering
syncd_once
tl_is "$rc" 75 "slapd down: 75"
tl_is "$(rg_query john.doe@generic.example)" 0 "the previous data still answers while slapd is down"
slapd_restart

# slapd hangs in the middle of the pull (the proxy stops passing data on):
# the operation timeout ends the run.
slapd_proxy hold 100000
ldap_source "uri=$PROXY_URI" page_size=100 timeout=2s
t0=$(date +%s)
syncd_once
tl_is "$rc" 75 "slapd hangs mid-pull: 75"
tl_ok "$([ "$(elapsed_since "$t0")" -le 15 ]; echo $?)" "ended by the 2 s operation timeout, not hung ($(elapsed_since "$t0") s)"
slapd_proxy_stop

# slapd hangs before it answers anything (SIGSTOP: the kernel still
# accepts the connection)
ldap_source timeout=2s connect_timeout=2s
slapd_pause
t0=$(date +%s)
syncd_once
slapd_resume
tl_is "$rc" 75 "slapd stopped (SIGSTOP): 75"
tl_ok "$([ "$(elapsed_since "$t0")" -le 15 ]; echo $?)" "ended by the timeouts, not hung ($(elapsed_since "$t0") s)"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "after every failed pull the store is unchanged"

# slapd is back: the pending changes are applied
ldap_source
syncd_once
tl_is "$rc" 0 "slapd back: --once exits 0"
tl_is "$(rg_query mid1@generic.example)" 0 "the new entry is applied"
tl_is "$(rg_query b00001@bulk.example)" 1 "the deleted entry is gone"
tl_is "$(syncd_sql "SELECT outcome FROM sync_run r JOIN source s ON s.id = r.source_id
                    WHERE s.name = 'ldap' ORDER BY r.id DESC LIMIT 1")" ok "the last run is recorded as ok"

# --- persistent mode over TLS. The connection reads ahead (a buffer
# below TLS): a burst of additions arrives as several messages in one
# read, and those left in the buffer must still be handed over while
# the daemon waits, without more bytes coming from the socket.
# persist_tls NAME KEY=VALUE... - daemon on that URI; a burst of 40, then one
persist_tls() {
    _pt=$1
    shift
    syncd_conf_reset
    slapd_syncd_conf "poll_interval=1h" "full_interval=1h" "retry_interval=1s"
    slapd_source ldap generic "base=$PEOPLE" "mode=persistent" "ca_file=$SLAPD_CA" "$@"
    : > "$T/daemon.err"
    "$RG_SYNCD" -c "$CONF" -f >/dev/null 2>>"$T/daemon.err" &
    _pt_pid=$!
    tl_pids="$tl_pids $_pt_pid"
    _n=0
    while [ $_n -lt 300 ] && ! grep -q 'persistent search (RFC 4533' "$T/daemon.err"; do
        kill -0 "$_pt_pid" 2>/dev/null || break
        sleep 0.1
        _n=$((_n + 1))
    done
    ok_if "grep -q 'persistent search (RFC 4533' '$T/daemon.err'" "$_pt: the daemon waits on a persistent search"
    awk -v base="$PEOPLE" -v p="$_pt" 'BEGIN {
        for (i = 0; i < 40; i++)
            printf "dn: uid=%s%02d,%s\nobjectClass: inetOrgPerson\nuid: %s%02d\ncn: x\nsn: x\nmail: %s%02d@generic.example\n\n", p, i, base, p, i, p, i
    }' | slapd_add >/dev/null
    _pt_got=$(wait_count "$_pt" 40)
    tl_is "$_pt_got" 40 "$_pt: a burst of 40 additions is in the store, each of them"
    person "${_pt}last" >/dev/null
    _pt_got=$(wait_count "${_pt}last" 1)
    tl_is "$_pt_got" 1 "$_pt: and one addition after it"
    kill -TERM "$_pt_pid"
    wait "$_pt_pid"
    tl_is "$?" 0 "$_pt: SIGTERM ends the daemon, exit 0"
}

# wait_count PREFIX N - up to 15 s for N recipients PREFIX* of generic.example; prints the count
wait_count() {
    _n=0
    while :; do
        _c=$(syncd_sql "SELECT count(*) FROM recipient WHERE address LIKE '$1%@generic.example'")
        [ "$_c" -ge "$2" ] || [ $_n -ge 150 ] && break
        sleep 0.1
        _n=$((_n + 1))
    done
    echo "$_c"
}

# ok_if COMMAND MSG - ok when the shell command succeeds
ok_if() {
    eval "$1"
    tl_ok $? "$2"
}

persist_tls ptl "uri=$SLAPD_URI_TLS" tls=ldaps
persist_tls pst tls=starttls

# --- a reference in the base (a part of the tree another server holds):
# not followed, and the postmaster is told once what to do
slapd_add <<EOF
dn: ou=Elsewhere,$PEOPLE
objectClass: referral
objectClass: extensibleObject
ou: Elsewhere
ref: ldap://elsewhere.invalid/ou=Elsewhere,$S
EOF
tl_is "$?" 0 "a referral object under the base"
ldap_source
syncd_once
tl_is "$rc" 0 "a pull with a reference in its base is applied"
tl_is "$(grep -c 'a reference to ldap://elsewhere.invalid/.* is not followed, so the entries it holds are not pulled' "$T/syncd.err")" 1 \
    "... with one warning that its entries are not pulled, and what to do"

# --- an RFC 4533 incremental pull cannot be paged: more changes than the
# account's size limit (10 here) are pulled in full, not refused at every poll
BURST="ou=Burst,$S"
slapd_add <<EOF
dn: $BURST
objectClass: organizationalUnit
ou: Burst
EOF
syncd_conf_reset
slapd_syncd_conf
slapd_source burst generic "base=$BURST"
syncd_once
tl_is "$rc" 0 "a full pull before a burst of changes"
tl_is "$(syncd_sql "SELECT cookie IS NOT NULL AND cookie <> '' FROM source WHERE name = 'burst'")" 1 \
    "... stores an RFC 4533 cookie"
for i in 01 02 03 04 05 06 07 08 09 10 11 12; do
    slapd_add <<EOF || break
dn: uid=burst$i,$BURST
objectClass: inetOrgPerson
uid: burst$i
cn: burst$i
sn: burst$i
mail: burst$i@generic.example
EOF
done
tl_is "$(slapd_count "$BURST" '(uid=burst*)')" 12 "12 people added, more than the account's size limit"
syncd_once --incremental
tl_is "$rc" 0 "the incremental pull over the size limit exits 0"
tl_like "$(cat "$T/syncd.err")" "more than the sync account may read in one search" \
    "... says the account's size limit is too low for incremental pulls"
tl_like "$(cat "$T/syncd.err")" "full sync applied" "... and pulls in full instead"
rg_valid burst01@generic.example burst12@generic.example

tl_done
