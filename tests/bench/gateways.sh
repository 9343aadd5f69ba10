#!/bin/sh
# gateways.sh - the many-gateways benchmark: N gateways against one slapd
#
# Run by `make bench-gateways` from the build directory; it builds
# nothing. One private slapd (tests/lib/slapd.sh: mdb, syncprov, plus the
# monitor backend and slapd's stats log) holds $ENTRIES inetOrgPersons
# (generic flavour, uid=uNNNNNNN, mail uNNNNNNN@bench.example). N
# gateways (default 4) each have their own bind account, config, store,
# rcptgate-syncd -f (mode = persistent) and rcptgate-lookupd, whose
# socketmap listens on the gateway's own loopback address (127.0.0.2,
# 127.0.0.3 ...; the same port on each). Measured:
#   1. the initial full pulls, all gateways starting at once: each one's
#      time, and what slapd sent each account and in total;
#   2. $NCHANGES changes, one ldapmodify at a time (a mail added to an
#      entry): from ldapmodify's return to each gateway's socketmap
#      answering OK for the new address (one poller per gateway, about
#      every 10 ms, through rgclient); p50/p99/max per gateway and over
#      all; slapd's work per gateway and in total;
#   3. the last gateway's syncd stopped for $DOWN changes, then started:
#      the time until it answers for the last of them, and what slapd sent
#      it (the changes, from its cookie, or the whole directory);
#   4. with Samba installed (BENCH_GW_SAMBA=0 skips it): the same gateways
#      against a Samba AD DC (flavour ad, mode = persistent: change
#      notification), $AD_USERS users, $AD_CHANGES changes timed as in 2,
#      then the last gateway down for $AD_DOWN changes and back, as in 3.
#      Samba has no monitor backend nor stats log: latency only.
# slapd's work: per gateway from its stats log (each bound connection's
# search operations and the entries sent on them, stats2's ENTRY lines),
# in total from cn=Monitor (entries, PDUs and bytes sent, searches).
# Knobs: see tests/bench/README.md. Exit 0 when every target is met, 1
# when something failed, 2 when the runs worked but a target was missed.

set -u

. "$(cd "$(dirname "$0")" && pwd)/benchlib.sh"

NGW=${BENCH_GW_N:-4}
ENTRIES=${BENCH_GW_ENTRIES:-20000}
NCHANGES=${BENCH_GW_CHANGES:-200}
DOWN=${BENCH_GW_DOWN:-100}
# [syncd] nice for every gateway (unset: syncd's default, 10)
NICE=${BENCH_GW_NICE:-}
QUIET_MAX=${BENCH_QUIET_MAX:-10}
QUIET_WAIT=${BENCH_QUIET_WAIT:-5}
NOISY=0
missed=0
DOMAIN=bench.example

. "$top_srcdir/tests/lib/testlib.sh"
# The refresh after a cookie cannot be paged: the size limit must hold it.
SLAPD_SIZELIMIT=${SLAPD_SIZELIMIT:-100000}
# stats + stats2: each BIND, search operation and entry sent, per connection
SLAPD_DEBUG=768
. "$top_srcdir/tests/lib/slapd.sh"
. "$top_srcdir/tests/lib/samba.sh"
# Part 4, Samba AD: on when Samba is installed (BENCH_GW_SAMBA=0: off)
AD_ON=${BENCH_GW_SAMBA:-1}
AD_USERS=${BENCH_GW_SAMBA_USERS:-1000}
AD_CHANGES=${BENCH_GW_SAMBA_CHANGES:-50}
AD_DOWN=${BENCH_GW_SAMBA_DOWN:-20}
AD_BACK_RUNS=
# The gateways' directories: $T/gwG against slapd, $T/adG against Samba
GWPFX=gw

S=$SLAPD_SUFFIX
PEOPLE="ou=People,$S"

# die - give up, after showing the end of the logs
die() {
    bench_die 10 "$*" "$T"/*/syncd.err "$T"/*/lookupd.log "${SLAPD_DIR:-/nonexistent}/slapadd.log"
}

# cleanup - stop what we started (by pid); drop the directory unless kept
cleanup() {
    slapd_resume
    tl_cleanup
    if [ "${BENCH_KEEP:-0}" != 1 ] && [ -n "${T:-}" ]; then
        rm -rf "$T"
    fi
}

# ms - a clock in milliseconds
ms() {
    echo $(($(date +%s%N) / 1000000))
}

# percentile P FILE - the P-th percentile (nearest rank) of numbers in FILE
percentile() {
    sort -g "$2" | awk -v p="$1" '{ v[NR] = $1 } END {
        r = int(NR * p / 100 + 0.999999); if (r < 1) r = 1; print v[r] }'
}

# gw_addr G - gateway G's own loopback address
gw_addr() {
    echo "127.0.0.$(($1 + 1))"
}

# pid_of KIND G - the pid of gateway G's syncd or lookupd
pid_of() {
    eval echo "\${${1}_pid_$2:-}"
}

# ask G ADDRESS - gateway G's socketmap answer's first word (OK, NOTFOUND ...)
ask() {
    _r=$(printf 'recipients %s\n' "$2" | "$RG_CLIENT" -t 2000 "inet:$(gw_addr "$1"):$PORT" 2>/dev/null)
    echo "${_r%% *}"
}

# poll G ADDRESS WANT TRIES - ask gateway G for ADDRESS about every 10 ms,
# over one socketmap connection (rgclient -i through two fifos: a request
# costs the poller two builtins and a sleep, not a client started each
# time), until it answers WANT; writes the ms since $T0 (when ldapmodify
# returned) to $T/reach.G, or "timeout" after TRIES requests
poll() {
    _d=$T/poll.$1
    rm -f "$_d.in" "$_d.out" "$T/reach.$1"
    mkfifo "$_d.in" "$_d.out" || return 1
    "$RG_CLIENT" -i -t 5000 "inet:$(gw_addr "$1"):$PORT" <"$_d.in" >"$_d.out" 2>/dev/null &
    _cp=$!
    exec 3>"$_d.in" 4<"$_d.out"
    _res=timeout
    _n=0
    while [ $_n -lt "$4" ]; do
        printf 'recipients %s\n' "$2" >&3
        IFS= read -r _line <&4 || break
        if [ "${_line%% *}" = "$3" ]; then
            _res=$(($(ms) - T0))
            break
        fi
        sleep 0.01
        _n=$((_n + 1))
    done
    exec 3>&- 4<&-
    wait "$_cp"
    echo "$_res" > "$T/reach.$1"
}

# gw_conf G - gateway G's directory, config and store under $T/gwG (the
# slapd parts) or $T/adG (Samba's: GWPFX=ad)
gw_conf() {
    _g=$T/$GWPFX$1
    mkdir -p "$_g"
    (umask 077 && printf 'gw%d-secret' "$1" > "$_g/bind.password")
    cat > "$_g/rcptgate.conf" <<EOF
[store]
path = $_g/store.db
busy_timeout = 500ms

[syncd]
user =
pid_file = $_g/syncd.pid
poll_interval = 1h
full_interval = 24h
retry_interval = 1s
${NICE:+nice = $NICE}

[lookupd]
socketmap = inet:$(gw_addr "$1"):$PORT
policy = unix:$_g/policy.sock
user =
pid_file = $_g/lookupd.pid
stats_file = $_g/lookupd.stats
stats_interval = 1s
EOF
    _c=$CONF
    CONF=$_g/rcptgate.conf
    if [ "$GWPFX" = ad ]; then
        samba_source ldap "base=$AD_OU" "mode=persistent" "timeout=600s"
    else
        slapd_source ldap generic "base=$PEOPLE" "mode=persistent" "timeout=600s" \
            "bind_dn=cn=gw$1,ou=Service,$S" "bind_password_file=$_g/bind.password"
    fi
    CONF=$_c
}

# start_lookupd G - gateway G's lookupd, waited for until it answers
start_lookupd() {
    "$RG_LOOKUPD" -c "$T/$GWPFX$1/rcptgate.conf" -f 2>>"$T/$GWPFX$1/lookupd.log" &
    eval "lookupd_pid_$1=$!"
    tl_pids="$tl_pids $!"
    _n=0
    while [ -z "$(ask "$1" probe@$DOMAIN)" ]; do
        _n=$((_n + 1))
        [ $_n -gt 200 ] && die "gateway $1: lookupd does not answer on $(gw_addr "$1"):$PORT"
        sleep 0.05
    done
}

# start_syncd G - gateway G's rcptgate-syncd -f
start_syncd() {
    "$RG_SYNCD" -c "$T/$GWPFX$1/rcptgate.conf" -f >>"$T/$GWPFX$1/syncd.out" 2>>"$T/$GWPFX$1/syncd.err" &
    eval "syncd_pid_$1=$!"
    tl_pids="$tl_pids $!"
}

# stop_syncd G - SIGTERM gateway G's syncd and wait
stop_syncd() {
    _p=$(pid_of syncd "$1")
    kill -TERM "$_p" 2>/dev/null
    wait "$_p" 2>/dev/null
    tl_pids=$(echo "$tl_pids" | sed "s/ $_p\$//; s/ $_p / /")
}

# searching G [COUNT] - has gateway G's syncd started COUNT persistent searches?
searching() {
    [ "$(grep -c 'persistent search (RFC 4533' "$T/$GWPFX$1/syncd.err" 2>/dev/null)" -ge "${2:-1}" ]
}

# log_lines - lines in slapd's log so far
log_lines() {
    wc -l < "$SLAPD_DIR/slapd.log"
}

# work G FROM TO - "searches entries" slapd did for gateway G's account in
# lines FROM..TO-1 of its log: search operations (each page of a paged
# search is one) and entries sent. A connection is G's once it bound as
# G's account (its whole log counts for that).
work() {
    awk -v dn="$(printf 'bind dn="cn=gw%d,ou=service,%s"' "$1" "$S" | tr 'A-Z' 'a-z')" \
        -v from="$2" -v to="$3" '
        / BIND dn="/ && index(tolower($0), dn) { mine[$3] = 1 }
        NR >= from && NR < to && ($3 in mine) && / SRCH base=/ { s++ }
        NR >= from && NR < to && ($3 in mine) && / ENTRY dn=/ { e++ }
        END { print s + 0, e + 0 }' "$SLAPD_DIR/slapd.log"
}

# monitor - "entries pdus bytes searches" slapd has sent and done so far (cn=Monitor)
monitor() {
    slapd_search -b cn=Monitor '(|(cn=Entries)(cn=PDU)(cn=Bytes)(cn=Search))' \
        monitorCounter monitorOpCompleted 2>/dev/null | awk '
        /^dn: cn=Entries,cn=Statistics/ { k = "e" } /^dn: cn=PDU,cn=Statistics/ { k = "p" }
        /^dn: cn=Bytes,cn=Statistics/ { k = "b" } /^dn: cn=Search,cn=Operations/ { k = "s" }
        /^dn: / && !/cn=Statistics|cn=Operations/ { k = "" }
        /^monitorCounter: / && k != "" && k != "s" { v[k] = $2 }
        /^monitorOpCompleted: / && k == "s" { v[k] = $2 }
        END { print v["e"] + 0, v["p"] + 0, v["b"] + 0, v["s"] + 0 }'
}

# monitor_delta BEFORE AFTER - "entries pdus bytes searches" between two monitor lines
monitor_delta() {
    printf '%s %s\n' "$1" "$2" | awk '{ print $5 - $1, $6 - $2, $7 - $3, $8 - $4 }'
}

# load_report TITLE MON_BEFORE MON_AFTER FROM TO - slapd's work in a phase,
# per gateway and in total
load_report() {
    say "  $1:"
    for _g in $GWS; do
        _w=$(work "$_g" "$4" "$5")
        say "$(printf '    gateway %d (cn=gw%d)   %6d search operations  %8d entries sent' "$_g" "$_g" ${_w% *} ${_w#* })"
    done
    _d=$(monitor_delta "$2" "$3")
    set -- $_d
    say "$(printf '    all (cn=Monitor)       %6d search operations  %8d entries  %7d PDUs  %.2f MiB sent' \
        "$4" "$1" "$2" "$(calc "$3 / 1048576")")"
    say "    (cn=Monitor's totals include its own query: 1 search operation, 4 entries)"
}

# changes COUNT - COUNT changes one at a time, each ldapmodify (slapd) or
# Samba's ldapmodify adding an address to an entry; from its return to
# each gateway answering OK for it: the ms into $T/delays.G and $T/delays
# (30000 and counted in FAILS when not seen within 30 s)
changes() {
    : > "$T/delays"
    for g in $GWS; do
        : > "$T/delays.$g"
    done
    FAILS=0
    k=1
    while [ "$k" -le "$1" ]; do
        if [ "$GWPFX" = ad ]; then
            u=$(printf 'u%07d' $(((k * 7919) % AD_USERS)))
            addr=$(printf 'new%04d@%s' "$k" "$DOMAIN")
            printf 'dn: CN=%s,%s\nchangetype: modify\nadd: proxyAddresses\nproxyAddresses: smtp:%s\n' \
                "$u" "$AD_OU" "$addr" >"$T/change.ldif"
            samba_modify "$T/change.ldif" >/dev/null 2>&1 || die "Samba's ldapmodify failed"
        else
            u=$(printf 'u%07d' $(((k * 7919) % ENTRIES)))
            addr=$(printf 'new%04d@%s' "$k" "$DOMAIN")
            printf 'dn: uid=%s,%s\nchangetype: modify\nadd: mail\nmail: %s\n' "$u" "$PEOPLE" "$addr" >"$T/change.ldif"
            slapd_modify "$T/change.ldif" || die "ldapmodify failed (see $SLAPD_DIR/ldapmodify.log)"
        fi
        T0=$(ms)
        pp=""
        for g in $GWS; do
            poll "$g" "$addr" OK 3000 &
            pp="$pp $!"
        done
        # shellcheck disable=SC2086
        wait $pp
        for g in $GWS; do
            d=$(cat "$T/reach.$g" 2>/dev/null || echo timeout)
            if [ "$d" = timeout ]; then
                FAILS=$((FAILS + 1))
                d=30000
            fi
            echo "$d" >> "$T/delays.$g"
            echo "$d" >> "$T/delays"
        done
        k=$((k + 1))
    done
}

# delay_report - p50/p99/max per gateway and over all; P50 P99 PMAX
delay_report() {
    for g in $GWS; do
        say "$(printf '  gateway %d (%s)  p50 %4d ms  p99 %4d ms  max %4d ms' "$g" "$(gw_addr "$g")" \
            "$(percentile 50 "$T/delays.$g")" "$(percentile 99 "$T/delays.$g")" "$(percentile 100 "$T/delays.$g")")"
    done
    P50=$(percentile 50 "$T/delays")
    P99=$(percentile 99 "$T/delays")
    PMAX=$(percentile 100 "$T/delays")
    say "  all $(wc -l < "$T/delays") answers    p50 $P50 ms  p99 $P99 ms  max $PMAX ms  (not seen within 30 s: $FAILS)"
    say "  (one request of a poller and its 10 ms sleep take $POLL_MS ms: the resolution of these figures)"
}

# gen_ldif FILE - ou=People, the gateways' bind accounts, $ENTRIES people
gen_ldif() {
    awk -v n="$ENTRIES" -v ngw="$NGW" -v s="$S" -v d="$DOMAIN" 'BEGIN {
        printf "dn: ou=People,%s\nobjectClass: organizationalUnit\nou: People\n\n", s
        for (g = 1; g <= ngw; g++)
            printf "dn: cn=gw%d,ou=Service,%s\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\ncn: gw%d\nuserPassword: gw%d-secret\n\n", g, s, g, g
        for (i = 0; i < n; i++) {
            u = sprintf("u%07d", i)
            printf "dn: uid=%s,ou=People,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nmail: %s@%s\n\n", u, s, u, u, u, u, d
        }
    }' </dev/null >"$1"
}

# ------------------------------------------------------------ checks
RG_CLIENT=${RG_CLIENT:-$top_builddir/tests/tools/rgclient}
for p in "$RG_SYNCD" "$RG_LOOKUPD" "$RG_ADMIN" "$RG_CLIENT"; do
    [ -x "$p" ] || die "$p is missing: run \`make bench-gateways' in the build directory"
done
why=$(slapd_missing)
[ -z "$why" ] || die "$why"
command -v sqlite3 >/dev/null 2>&1 || die "sqlite3 (the shell) is missing"
[ "$NGW" -ge 2 ] && [ "$NGW" -le 250 ] || die "BENCH_GW_N must be 2..250"
tl_sanitized "$RG_SYNCD" && say "(rcptgate-syncd was built with sanitizers: the figures will be slow)"

tl_init bench-gateways
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

GWS=$(seq 1 "$NGW")
LAST=$NGW

say "rcptgate many-gateways benchmark: $NGW gateways, one slapd (mdb, syncprov), $ENTRIES entries"
say "$(nproc) cores, everything on this machine; each gateway: own bind account, store, syncd"
say "(mode = persistent${NICE:+, nice = $NICE}) and lookupd on its own loopback address"
say ""

slapd_init "" || die "slapd_init failed"
trap cleanup EXIT
gen_ldif "$T/entries.ldif" || die "cannot write the LDIF"
"$SLAPADD" -f "$SLAPD_DIR/slapd.conf" -q -w -l "$T/entries.ldif" >>"$SLAPD_DIR/slapadd.log" 2>&1 ||
    die "slapadd of $ENTRIES entries failed"
rm -f "$T/entries.ldif"
# The monitor backend, for the rootdn only: slapd's own totals.
cat >> "$SLAPD_DIR/slapd.conf" <<EOF

database monitor
limits dn.exact="$SLAPD_ROOTDN" size=unlimited time=unlimited
access to * by dn.exact="$SLAPD_ROOTDN" read by * none
EOF
slapd_start || die "slapd did not start"
[ -n "$(monitor | awk '$1 > 0 || $4 > 0')" ] || die "cn=Monitor gives no counters"

# The socketmap port, the same on each gateway's address
PORT=$(slapd_port)
while grep -qi ":$(printf '%04X' "$PORT") " /proc/net/tcp 2>/dev/null || [ "$PORT" = "$SLAPD_PORT" ]; do
    PORT=$(slapd_port)
done
for g in $GWS; do
    gw_conf "$g"
    "$RG_ADMIN" -c "$T/$GWPFX$g/rcptgate.conf" domain add "$DOMAIN" >/dev/null 2>&1 ||
        die "gateway $g: rcptgate domain add failed"
    start_lookupd "$g"
done

# What one round of a poller costs (a request and the sleep): the resolution
T0=$(ms)
poll 1 "nobody@$DOMAIN" OK 50
POLL_MS=$(fmt %.1f "($(ms) - $T0) / 50")
[ "$(cat "$T/reach.1")" = timeout ] || die "the poller's calibration got an answer it should not"

# ------------------------------------------------------------ 1. full pulls
say "1. the initial full pulls, all $NGW gateways started at once"
quiet
from=$(($(log_lines) + 1))
m0=$(monitor)
t0=$(ms)
for g in $GWS; do
    start_syncd "$g"
done
left=$GWS
while [ -n "$left" ]; do
    next=""
    for g in $left; do
        if searching "$g"; then
            eval "ready_$g=$(($(ms) - t0))"
        else
            kill -0 "$(pid_of syncd "$g")" 2>/dev/null || die "gateway $g: rcptgate-syncd -f exited"
            next="$next $g"
        fi
    done
    left=$next
    [ $(($(ms) - t0)) -gt 600000 ] && die "the full pulls did not end within 10 minutes"
    [ -n "$left" ] && sleep 0.05
done
ALL_S=$(calc "($(ms) - $t0) / 1000")
m1=$(monitor)
to=$(($(log_lines) + 1))
for g in $GWS; do
    have=$(sqlite3 -batch -noheader "$T/$GWPFX$g/store.db" "SELECT count(*) FROM recipient")
    [ "$have" = "$ENTRIES" ] || die "gateway $g's store holds $have recipients, not $ENTRIES"
    applied=$(sed -n 's/.*full sync applied: .* in \([0-9]*\) ms.*/\1/p' "$T/$GWPFX$g/syncd.err" | head -n 1)
    say "$(printf '  gateway %d: searching after %5.1f s (the full sync itself: %s ms)' "$g" \
        "$(calc "$(eval echo "\$ready_$g") / 1000")" "${applied:-?}")"
done
say "  all $NGW in $(fmt %.1f "$ALL_S") s"
load_report "slapd's work for the full pulls" "$m0" "$m1" "$from" "$to"
FULL_W=$(work 1 "$from" "$to")
say ""

# ------------------------------------------------------------ 2. changes one at a time
say "2. $NCHANGES changes, one ldapmodify at a time (add a mail to an entry): ldapmodify"
say "   returns -> each gateway's socketmap answers OK (one poller per gateway, ~10 ms)"
quiet
from=$(($(log_lines) + 1))
m0=$(monitor)
changes "$NCHANGES"
m1=$(monitor)
to=$(($(log_lines) + 1))
delay_report
load_report "slapd's work for the $NCHANGES changes" "$m0" "$m1" "$from" "$to"
SLAPD_P99=$P99
SLAPD_FAILS=$FAILS
say ""

# ------------------------------------------------------------ 3. a gateway down, then back
say "3. gateway $LAST's syncd stopped for $DOWN changes, then started again"
stop_syncd "$LAST"
awk -v n="$DOWN" -v live="$ENTRIES" -v base="$PEOPLE" -v d="$DOMAIN" 'BEGIN {
    for (i = 1; i <= n; i++)
        printf "dn: uid=u%07d,%s\nchangetype: modify\nadd: mail\nmail: down%04d@%s\n\n", (i * 104729) % live, base, i, d
}' </dev/null > "$T/down.ldif"
slapd_modify "$T/down.ldif" || die "ldapmodify of $DOWN changes failed"
last=$(printf 'down%04d@%s' "$DOWN" "$DOMAIN")
n=0
until [ "$(ask 1 "$last")" = OK ]; do
    n=$((n + 1))
    [ $n -gt 600 ] && die "gateway 1 did not get the $DOWN changes within 30 s"
    sleep 0.05
done
[ "$(ask "$LAST" "$last")" = NOTFOUND ] || die "gateway $LAST answers for $last while its syncd is stopped"
quiet
from=$(($(log_lines) + 1))
m0=$(monitor)
T0=$(ms)
start_syncd "$LAST"
until [ "$(ask "$LAST" "$last")" = OK ]; do
    [ $(($(ms) - T0)) -gt 120000 ] && die "gateway $LAST did not catch up within 120 s"
    sleep 0.01
done
CATCH_MS=$(($(ms) - T0))
n=0
until searching "$LAST" 2; do
    n=$((n + 1))
    [ $n -gt 600 ] && die "gateway $LAST did not resume its persistent search"
    sleep 0.05
done
m1=$(monitor)
to=$(($(log_lines) + 1))
got=$(sqlite3 -batch -noheader "$T/gw$LAST/store.db" "SELECT count(*) FROM recipient WHERE address LIKE 'down%'")
[ "$got" = "$DOWN" ] || die "gateway $LAST holds $got of the $DOWN changes"
BACK_FULLS=$(grep -c 'full sync applied' "$T/gw$LAST/syncd.err")
say "  gateway $LAST answers for the last change $CATCH_MS ms after its syncd started; all $DOWN are in"
say "  its store; full pulls in its log: $BACK_FULLS (the first start only)"
say "  its log: $(grep 'incremental sync applied' "$T/gw$LAST/syncd.err" | tail -n 1 | sed 's/^.*source /source /')"
load_report "slapd's work for gateway $LAST's return" "$m0" "$m1" "$from" "$to"
BACK_W=$(work "$LAST" "$from" "$to")
say "  (its full pull in part 1: ${FULL_W% *} search operations, ${FULL_W#* } entries)"
say ""

# ------------------------------------------------------------ 4. Samba AD
AD_P99=
if [ "$AD_ON" = 1 ] && [ -n "$(samba_missing)" ]; then
    say "4. Samba AD: skipped, $(samba_missing)"
elif [ "$AD_ON" = 1 ]; then
    say "4. the same against a Samba AD DC: $NGW gateways, flavour ad, mode = persistent"
    say "   (change notification, then an incremental uSNChanged pull), $AD_USERS users,"
    say "   $AD_CHANGES changes (a proxyAddress added to a user), bound as Administrator;"
    say "   samba -M ${SAMBA_MODEL:-single} (SAMBA_MODEL=prefork: Debian's default)"
    for g in $GWS; do
        stop_syncd "$g"
        _p=$(pid_of lookupd "$g")
        kill -TERM "$_p" 2>/dev/null
        wait "$_p" 2>/dev/null
    done
    slapd_stop
    t0=$(ms)
    samba_init || die "the Samba domain could not be provisioned (see $T/samba)"
    samba_start || die "samba did not start"
    say "  Samba provisioned and started in $(fmt %.1f "($(ms) - $t0) / 1000") s on $SAMBA_URI"
    AD_OU="OU=Gateways,$SAMBA_SUFFIX"
    DOMAIN=test.example.com
    awk -v n="$AD_USERS" -v ou="$AD_OU" -v d="$DOMAIN" 'BEGIN {
        printf "dn: %s\nobjectClass: organizationalUnit\n\n", ou
        for (i = 0; i < n; i++)
            printf "dn: CN=u%07d,%s\nobjectClass: user\nsAMAccountName: u%07d\nuserAccountControl: 544\nproxyAddresses: SMTP:u%07d@%s\n\n", i, ou, i, i, d
    }' </dev/null > "$T/ad.ldif"
    t0=$(ms)
    samba_add "$T/ad.ldif" >/dev/null 2>&1 || die "ldapadd of $AD_USERS users to Samba failed"
    say "  $AD_USERS users added in $(fmt %.1f "($(ms) - $t0) / 1000") s"
    GWPFX=ad
    for g in $GWS; do
        gw_conf "$g"
        "$RG_ADMIN" -c "$T/$GWPFX$g/rcptgate.conf" domain add "$DOMAIN" >/dev/null 2>&1 ||
            die "gateway $g: rcptgate domain add failed"
        start_lookupd "$g"
    done
    t0=$(ms)
    for g in $GWS; do
        start_syncd "$g"
    done
    # As syncd_notify.sh: a full pull, an incremental one after it, and one
    # more once the notification searches are open.
    for g in $GWS; do
        n=0
        until [ "$(sqlite3 -batch -noheader "$T/ad$g/store.db" "SELECT count(*) FROM sync_run
                WHERE mode = 'incremental' AND outcome = 'ok'" 2>/dev/null)" -ge 2 ]; do
            kill -0 "$(pid_of syncd "$g")" 2>/dev/null || die "gateway $g: rcptgate-syncd -f exited"
            n=$((n + 1))
            [ $n -gt 6000 ] && die "gateway $g: no notification searches within 10 minutes"
            sleep 0.1
        done
        have=$(sqlite3 -batch -noheader "$T/ad$g/store.db" "SELECT count(*) FROM recipient")
        [ "$have" = "$AD_USERS" ] || die "gateway $g's store holds $have recipients, not $AD_USERS"
    done
    say "  all $NGW gateways pulled and wait on change notification after $(fmt %.1f "($(ms) - $t0) / 1000") s"
    quiet
    changes "$AD_CHANGES"
    delay_report
    AD_P99=$P99
    AD_FAILS=$FAILS
    fulls=0
    for g in $GWS; do
        fulls=$((fulls + $(sqlite3 -batch -noheader "$T/ad$g/store.db" "SELECT count(*) FROM sync_run WHERE mode = 'full'")))
    done
    say "  full pulls in the gateways' run logs: $fulls (one each, at start); the changes came by"
    say "  incremental pulls: $(sqlite3 -batch -noheader "$T/ad1/store.db" "SELECT count(*) FROM sync_run WHERE mode = 'incremental'") on gateway 1"
    # Gateway $LAST down for $AD_DOWN changes, then back (uSNChanged from its stored cookie)
    stop_syncd "$LAST"
    runs0=$(sqlite3 -batch -noheader "$T/ad$LAST/store.db" "SELECT max(id) FROM sync_run")
    awk -v n="$AD_DOWN" -v users="$AD_USERS" -v ou="$AD_OU" -v d="$DOMAIN" 'BEGIN {
        for (i = 1; i <= n; i++)
            printf "dn: CN=u%07d,%s\nchangetype: modify\nadd: proxyAddresses\nproxyAddresses: smtp:down%04d@%s\n\n", (i * 104729) % users, ou, i, d
    }' </dev/null > "$T/ad-down.ldif"
    samba_modify "$T/ad-down.ldif" >/dev/null 2>&1 || die "Samba's ldapmodify of $AD_DOWN changes failed"
    last=$(printf 'down%04d@%s' "$AD_DOWN" "$DOMAIN")
    T0=$(ms)
    poll 1 "$last" OK 3000
    [ "$(cat "$T/reach.1")" != timeout ] || die "gateway 1 did not get Samba's $AD_DOWN changes"
    [ "$(ask "$LAST" "$last")" = NOTFOUND ] || die "gateway $LAST answers for $last while its syncd is stopped"
    T0=$(ms)
    start_syncd "$LAST"
    poll "$LAST" "$last" OK 3000
    AD_BACK=$(cat "$T/reach.$LAST")
    [ "$AD_BACK" != timeout ] || die "gateway $LAST did not catch up from Samba within 30 s"
    got=$(sqlite3 -batch -noheader "$T/ad$LAST/store.db" "SELECT count(*) FROM recipient WHERE address LIKE 'down%'")
    AD_BACK_RUNS=$(sqlite3 -batch -noheader "$T/ad$LAST/store.db" "SELECT group_concat(mode || ':' || outcome, ' ')
        FROM (SELECT mode, outcome FROM sync_run WHERE id > $runs0 ORDER BY id)")
    say "  gateway $LAST stopped for $AD_DOWN changes, then started: it answers for the last after"
    say "  $AD_BACK ms, $got of $AD_DOWN in its store; its runs since: $AD_BACK_RUNS"
    say ""
fi

# ------------------------------------------------------------ targets
say "targets"
target "slapd: change -> answer p99, all gateways (ms)" "$SLAPD_P99" "$SLAPD_P99 <= 1000 && $SLAPD_FAILS == 0"
target "slapd: catch-up from the cookie (entries sent)" "${BACK_W#* }" "${BACK_W#* } <= $DOWN && $BACK_FULLS == 1"
if [ -n "$AD_P99" ]; then
    target "Samba AD: change -> answer p99, all gateways (ms)" "$AD_P99" "$AD_P99 <= 1000 && $AD_FAILS == 0"
    case " $AD_BACK_RUNS" in *" full:"*) _full=1 ;; *) _full=0 ;; esac
    target "Samba AD: catch-up without a full pull" "$_full full" "$_full == 0"
fi
[ "$NOISY" -gt 0 ] && say "($NOISY measurements started on a busy machine)"
say "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$missed" -eq 0 ] || exit 2
exit 0
