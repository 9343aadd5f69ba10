#!/bin/sh
# gateways.sh - four gateways against one directory (issue 12, short form)
#
# The design's answer to outgrowing one machine: several MX hosts of equal
# preference, each with its own rcptgate-syncd, store and lookupd, and the
# directory as the one source of truth. Here one private slapd (syncprov)
# serves four gateways. Each has its own bind account, config, store,
# rcptgate-syncd -f in persistent mode and rcptgate-lookupd, whose
# socketmap listens on the gateway's own loopback address (127.0.0.2 ...
# 127.0.0.5, the same port on each). Checked, through the socketmap
# protocol (rgclient) on each gateway's address: an add, a change of
# address and a delete made with ldapmodify reach every gateway's
# answers, with the time from ldapmodify's return to each gateway's
# answer measured (polled every ~10 ms); a gateway whose syncd is stopped
# misses changes and keeps answering from its store; restarted, it
# catches up from its cookie (an incremental run, no second full pull,
# and slapd's stats log shows it was sent the changes only, not the
# directory); the other gateways are not disturbed. The benchmark with
# 20,000 entries and 200 changes is tests/bench/gateways.sh.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init gateways
slapd_require
syncd_require
[ -x "$RG_CLIENT" ] || tl_bail "rgclient not built ($RG_CLIENT)"

N=4
PEOPLE_N=100
DOMAIN=gw.example
# The test's bound on a change reaching a gateway. The issue's target
# (p99 <= 1 s) is judged by the benchmark, without sanitizers; here eight
# daemons built with them share two cores with the pollers, and one
# rgclient call took 0.5 s at a load average of 9.
LIMIT_MS=${GW_LIMIT_MS:-5000}
# A refresh from a cookie cannot be paged: the size limit must hold it.
SLAPD_SIZELIMIT=1000
# stats + stats2: slapd logs each BIND and each entry it sends, per connection.
SLAPD_DEBUG=768
S=$SLAPD_SUFFIX
PEOPLE="ou=People,$S"

slapd_init || tl_bail "slapd_init failed"
{
    printf 'dn: %s\nobjectClass: organizationalUnit\nou: People\n\n' "$PEOPLE"
    i=1
    while [ $i -le $N ]; do
        printf 'dn: cn=gw%d,ou=Service,%s\nobjectClass: applicationProcess\n' $i "$S"
        printf 'objectClass: simpleSecurityObject\ncn: gw%d\nuserPassword: gw%d-secret\n\n' $i $i
        i=$((i + 1))
    done
    awk -v n=$PEOPLE_N -v base="$PEOPLE" -v d=$DOMAIN 'BEGIN {
        for (i = 0; i < n; i++)
            printf "dn: uid=p%03d,%s\nobjectClass: inetOrgPerson\nuid: p%03d\ncn: p\nsn: p\nmail: p%03d@%s\n\n", i, base, i, i, d
    }' </dev/null
} > "$T/directory.ldif"
slapd_load "$T/directory.ldif" && slapd_start || tl_bail "slapd with $PEOPLE_N people does not start"

# ms - a clock in milliseconds
ms() {
    echo $(($(date +%s%N) / 1000000))
}

# The socketmap port, the same on each gateway's address; free on all four.
port_free() {
    ! grep -qi ":$(printf '%04X' "$1") " /proc/net/tcp 2>/dev/null
}
PORT=$(slapd_port)
while ! port_free "$PORT" || [ "$PORT" = "$SLAPD_PORT" ]; do
    PORT=$(slapd_port)
done

# gw_addr G - gateway G's own loopback address
gw_addr() {
    echo "127.0.0.$(($1 + 1))"
}

# gw_conf G - gateway G's directory, config and store under $T/gwG
gw_conf() {
    _g=$T/gw$1
    mkdir -p "$_g"
    (umask 077 && printf 'gw%d-secret' "$1" > "$_g/bind.password")
    cat > "$_g/rcptgate.conf" <<EOF
# gateway $1 of $N: its own store, syncd and lookupd, one directory for all
[store]
path = $_g/store.db
busy_timeout = 500ms

[syncd]
user =
pid_file = $_g/syncd.pid
poll_interval = 1h
full_interval = 1h
retry_interval = 1s
# a change of address removes one of $PEOPLE_N: not a shrink to guard against
max_remove_share = 100

[lookupd]
socketmap = inet:$(gw_addr "$1"):$PORT
policy = unix:$_g/policy.sock
user =
pid_file = $_g/lookupd.pid
stats_file = $_g/lookupd.stats
stats_interval = 1s
EOF
    CONF=$_g/rcptgate.conf
    slapd_source ldap generic "base=$PEOPLE" "mode=persistent" \
        "bind_dn=cn=gw$1,ou=Service,$S" "bind_password_file=$_g/bind.password"
    CONF=$T/rcptgate.conf
}

# gw_admin G ARGS... - the admin command on gateway G's config
gw_admin() {
    _g=$1
    shift
    "$RG_ADMIN" -c "$T/gw$_g/rcptgate.conf" "$@"
}

# gw_sql G SQL - sqlite3 on gateway G's store
gw_sql() {
    sqlite3 -batch -noheader "$T/gw$1/store.db" "$2"
}

# ask G ADDRESS - gateway G's socketmap answer's first word (OK, NOTFOUND, TEMP ...)
ask() {
    _r=$(printf 'recipients %s\n' "$2" | "$RG_CLIENT" -t 2000 "inet:$(gw_addr "$1"):$PORT" 2>/dev/null)
    echo "${_r%% *}"
}

# start_lookupd G - gateway G's lookupd, waited for until it answers
start_lookupd() {
    "$RG_LOOKUPD" -c "$T/gw$1/rcptgate.conf" -f 2>>"$T/gw$1/lookupd.log" &
    eval "lookupd_pid_$1=$!"
    tl_pids="$tl_pids $!"
    _n=0
    while [ -z "$(ask "$1" probe@$DOMAIN)" ]; do
        _n=$((_n + 1))
        [ $_n -gt 200 ] && return 1
        kill -0 "$(eval echo "\$lookupd_pid_$1")" 2>/dev/null || return 1
        sleep 0.05
    done
}

# start_syncd G - gateway G's rcptgate-syncd -f
start_syncd() {
    "$RG_SYNCD" -c "$T/gw$1/rcptgate.conf" -f >>"$T/gw$1/syncd.out" 2>>"$T/gw$1/syncd.err" &
    eval "syncd_pid_$1=$!"
    tl_pids="$tl_pids $!"
}

# stop_syncd G - SIGTERM gateway G's syncd and wait; its exit status in $stop_rc
stop_syncd() {
    _p=$(eval echo "\$syncd_pid_$1")
    kill -TERM "$_p"
    wait "$_p"
    stop_rc=$?
    tl_pids=$(echo "$tl_pids" | sed "s/ $_p\$//; s/ $_p / /")
}

# log_count G TEXT - lines of gateway G's syncd log with TEXT
log_count() {
    grep -c "$2" "$T/gw$1/syncd.err" 2>/dev/null
}

# wait_log G TEXT [COUNT] - up to 20 s for COUNT lines with TEXT
wait_log() {
    _n=0
    while [ "$(log_count "$1" "$2")" -lt "${3:-1}" ]; do
        _n=$((_n + 1))
        [ $_n -gt 400 ] && return 1
        kill -0 "$(eval echo "\$syncd_pid_$1")" 2>/dev/null || return 1
        sleep 0.05
    done
}

# sent G [FROM] - entries slapd sent to gateway G's bind account on
# connections opened at or after line FROM of slapd's log (stats2)
sent() {
    awk -v dn="bind dn=\"cn=gw$1,ou=service,$(echo "$S" | tr 'A-Z' 'a-z')\"" -v from="${2:-1}" '
        NR >= from && / BIND dn="/ && index(tolower($0), dn) { mine[$3] = 1 }
        / ENTRY dn="/ && ($3 in mine) { n++ }
        END { print n + 0 }' "$SLAPD_DIR/slapd.log"
}

# log_lines - lines in slapd's log so far
log_lines() {
    wc -l < "$SLAPD_DIR/slapd.log"
}

# reach WANT ADDRESS GATEWAY... - poll each gateway's socketmap about every
# 10 ms until it answers WANT for ADDRESS, one poller per gateway at once
# (in turn, a gateway's figure would include the others' round trips); the
# time since $T0 (when ldapmodify returned) goes to $ms_G, "timeout" after 15 s
reach() {
    _want=$1 _addr=$2
    shift 2
    _pp=""
    for _g in "$@"; do
        rm -f "$T/reach.$_g"
        (
            while :; do
                if [ "$(ask "$_g" "$_addr")" = "$_want" ]; then
                    echo $(($(ms) - T0)) > "$T/reach.$_g"
                    exit 0
                fi
                [ $(($(ms) - T0)) -gt 15000 ] && break
                sleep 0.01
            done
            echo timeout > "$T/reach.$_g"
        ) &
        _pp="$_pp $!"
    done
    # shellcheck disable=SC2086
    wait $_pp
    for _g in "$@"; do
        eval "ms_$_g=\$(cat \"\$T/reach.\$_g\" 2>/dev/null || echo timeout)"
    done
}

# each_within WHAT GATEWAY... - one check per gateway: $ms_G under the limit
each_within() {
    _what=$1
    shift
    for _g in "$@"; do
        _t=$(eval echo "\$ms_$_g")
        [ "$_t" != timeout ] && [ "$_t" -lt "$LIMIT_MS" ]
        tl_ok $? "gateway $_g ($(gw_addr "$_g")): $_what in $_t ms"
    done
}

ALL=""
i=1
while [ $i -le $N ]; do
    ALL="$ALL $i"
    i=$((i + 1))
done

# --- four gateways start: a full pull each, then the persistent search
for g in $ALL; do
    gw_conf "$g"
    gw_admin "$g" domain add $DOMAIN >/dev/null 2>&1 || tl_bail "gateway $g: rcptgate domain add failed"
    start_lookupd "$g" || tl_bail "gateway $g: lookupd did not start on $(gw_addr "$g"):$PORT"
    start_syncd "$g"
done
for g in $ALL; do
    wait_log "$g" 'persistent search (RFC 4533'
    tl_ok $? "gateway $g: a full pull, then the persistent search"
done
for g in $ALL; do
    tl_is "$(ask "$g" p042@$DOMAIN) $(ask "$g" nobody@$DOMAIN)" "OK NOTFOUND" \
        "gateway $g answers from its own store on $(gw_addr "$g"):$PORT"
done
for g in $ALL; do
    tl_is "$(sent "$g")" "$PEOPLE_N" \
        "gateway $g's full pull: slapd sent its account the $PEOPLE_N people"
done

# --- add, change, delete: each reaches every gateway
printf 'dn: uid=new1,%s\nobjectClass: inetOrgPerson\nuid: new1\ncn: n\nsn: n\nmail: new1@%s\n' \
    "$PEOPLE" $DOMAIN > "$T/add.ldif"
slapd_add "$T/add.ldif"
T0=$(ms)
reach OK new1@$DOMAIN $ALL
# shellcheck disable=SC2086
each_within "an added person answers OK" $ALL

printf 'dn: uid=p001,%s\nchangetype: modify\nreplace: mail\nmail: p001.renamed@%s\n' \
    "$PEOPLE" $DOMAIN > "$T/change.ldif"
slapd_modify "$T/change.ldif"
T0=$(ms)
reach OK p001.renamed@$DOMAIN $ALL
# shellcheck disable=SC2086
each_within "a new address answers OK" $ALL
for g in $ALL; do
    tl_is "$(ask "$g" p001@$DOMAIN)" NOTFOUND "gateway $g: and the old address NOTFOUND"
done

slapd_delete "uid=p002,$PEOPLE"
T0=$(ms)
reach NOTFOUND p002@$DOMAIN $ALL
# shellcheck disable=SC2086
each_within "a deleted person answers NOTFOUND" $ALL

# --- gateway 4's syncd stops: it misses changes, the others do not
for g in $ALL; do
    eval "searches_$g=\$(log_count $g 'persistent search (RFC 4533')"
done
stop_syncd 4
tl_is "$stop_rc" 0 "gateway 4's syncd stops on SIGTERM"
OTHERS="1 2 3"
printf 'dn: uid=down1,%s\nobjectClass: inetOrgPerson\nuid: down1\ncn: d\nsn: d\nmail: down1@%s\n' \
    "$PEOPLE" $DOMAIN > "$T/add2.ldif"
slapd_add "$T/add2.ldif"
printf 'dn: uid=p003,%s\nchangetype: modify\nreplace: mail\nmail: p003.renamed@%s\n' \
    "$PEOPLE" $DOMAIN > "$T/change2.ldif"
slapd_modify "$T/change2.ldif"
slapd_delete "uid=p004,$PEOPLE"
T0=$(ms)
reach NOTFOUND p004@$DOMAIN $OTHERS
# shellcheck disable=SC2086
each_within "three changes while gateway 4 is down: the last one answers" $OTHERS
for g in $OTHERS; do
    tl_is "$(ask "$g" down1@$DOMAIN) $(ask "$g" p003.renamed@$DOMAIN) $(ask "$g" p003@$DOMAIN)" \
        "OK OK NOTFOUND" "gateway $g has all three"
done
tl_is "$(ask 4 down1@$DOMAIN) $(ask 4 p003.renamed@$DOMAIN) $(ask 4 p003@$DOMAIN) $(ask 4 p004@$DOMAIN)" \
    "NOTFOUND NOTFOUND OK OK" "gateway 4 missed them and answers from its last data"

# --- gateway 4 comes back: it catches up from its cookie
runs0=$(gw_sql 4 "SELECT max(id) FROM sync_run")
from=$(($(log_lines) + 1))
start_syncd 4
T0=$(ms)
reach NOTFOUND p004@$DOMAIN 4
tl_ok "$([ "$ms_4" != timeout ]; echo $?)" "gateway 4 restarted: it catches up ($ms_4 ms from its start)"
tl_is "$(ask 4 down1@$DOMAIN) $(ask 4 p003.renamed@$DOMAIN) $(ask 4 p003@$DOMAIN)" "OK OK NOTFOUND" \
    "gateway 4 has all three changes"
wait_log 4 'persistent search (RFC 4533' 2
tl_ok $? "gateway 4's persistent search resumes"
tl_is "$(gw_sql 4 "SELECT group_concat(mode || ':' || outcome, ' ') FROM sync_run WHERE id > $runs0")" \
    "incremental:ok" "gateway 4 caught up in one incremental run from its cookie"
tl_is "$(log_count 4 'full sync applied')" 1 "gateway 4: one full pull in all (its first start)"
tl_like "$(grep 'persistent search (RFC 4533' "$T/gw4/syncd.err" | tail -n 1)" "from the stored cookie" \
    "gateway 4's log: the search resumed from the stored cookie"
tl_like "$(grep 'incremental sync applied' "$T/gw4/syncd.err" | tail -n 1)" \
    "2 added, 0 changed, 2 removed" "gateway 4's log: the catch-up applied the three changes (+2 -2)"
tl_like "$(gw_admin 4 stats 2>&1)" "ldap .* incremental ok \(\+2 ~0 -2\), last full pull [0-9T:-]*Z" \
    "rcptgate stats on gateway 4 shows that last run, incremental, and its last full pull"
# The added and the changed entry come as entries; slapd 2.5 sends the
# deletion as an identifier in a syncIdSet message (not an entry).
n=$(sent 4 "$from")
[ "$n" -ge 1 ] && [ "$n" -le 3 ]
tl_ok $? "slapd sent gateway 4 the changed entries only on its return: $n, not the $PEOPLE_N people"

# --- the others were not disturbed: same search, no full pull, still live
for g in $OTHERS; do
    _s=$(eval echo "\$searches_$g")
    tl_is "$(log_count "$g" 'persistent search (RFC 4533') $(log_count "$g" 'full sync applied')" "$_s 1" \
        "gateway $g: the same persistent search throughout, one full pull"
done
printf 'dn: uid=new2,%s\nobjectClass: inetOrgPerson\nuid: new2\ncn: n\nsn: n\nmail: new2@%s\n' \
    "$PEOPLE" $DOMAIN > "$T/add3.ldif"
slapd_add "$T/add3.ldif"
T0=$(ms)
reach OK new2@$DOMAIN $ALL
# shellcheck disable=SC2086
each_within "a change after gateway 4's return" $ALL

for g in $ALL; do
    stop_syncd "$g"
    tl_is "$stop_rc" 0 "gateway $g's syncd stops on SIGTERM"
done
for g in $ALL; do
    tl_no_sanitizer_reports "$T/gw$g/syncd.err" "$RG_SYNCD" "gateway $g's syncd: no sanitizer report"
done

tl_done
