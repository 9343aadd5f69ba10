#!/bin/sh
# maps.sh - the maps benchmark: one Postfix, three relay_recipient_maps
#
# Why socketmap to rcptgate-lookupd and not Postfix's own ldap: table? Run
# by `make bench-maps` from the build directory; it builds nothing. One
# private Postfix instance (own config and queue directories) has three
# smtpd services on 127.0.0.1, the same in everything but
# relay_recipient_maps:
#   - lmdb:      a postmap'd table of the $BENCH_MAPS_RECIPIENTS recipients
#                (0u@bench.example ... 99999u@bench.example): the baseline;
#   - socketmap: socketmap:unix:SOCK:recipients to rcptgate-lookupd, whose
#                store one rcptgate-syncd --once pull filled from the slapd;
#   - ldap:      Postfix's ldap: table (Debian's postfix-ldap) against a
#                private slapd (tests/lib/slapd.sh) holding the same
#                recipients as inetOrgPerson entries, indexed on mail;
#   - null:      socketmap to tests/bench/bench_nullmap, a server that looks
#                nothing up (it answers from the shape of the key): the
#                ceiling of any socketmap server, lookupd included. What
#                lmdb has over it is the protocol's cost inside Postfix.
# Postfix, lookupd, slapd and the null server run on core 0, smtp-source on core 1. In
# rounds, alternating the three services (each round starts with another
# one), smtp-source measures
#   1. RCPT rejections/s: sessions of 50 RCPTs to unknown users, every one
#      answered 550 5.1.1;
#   2. RCPT acceptances/s: sessions of 50 RCPTs to distinct known users,
#      every one answered 250 (DATA is then refused by
#      smtpd_data_restrictions = reject, so no message is queued: what is
#      measured is the RCPTs, not the queue).
# Ratios to lmdb are taken within each round and the median reported.
# Then the outage row: slapd stopped, a known recipient through each
# service (swaks): ldap: must answer 451 4.3.0, socketmap 250 from the
# store, lmdb 250. Nothing here is a timed test: only the outage answers
# and the replies to every RCPT are asserted.
#
# Knobs (environment): BENCH_MAPS_RECIPIENTS (100000), BENCH_MAPS_ROUNDS
# (5), BENCH_MAPS_SESSIONS (300 sessions of 50 RCPTs a run),
# BENCH_MAPS_CONC (100 sessions at once), BENCH_MAPS_MAPS ("lmdb socketmap
# ldap null"), BENCH_QUIET_MAX, BENCH_QUIET_WAIT, BENCH_KEEP=1 (keep the
# directory). Exit 0 when the target is met, 1 when something failed, 2
# when the runs worked but the target was missed.

set -u

. "$(cd "$(dirname "$0")" && pwd)/benchlib.sh"

NREC=${BENCH_MAPS_RECIPIENTS:-100000}
ROUNDS=${BENCH_MAPS_ROUNDS:-5}
NSESS=${BENCH_MAPS_SESSIONS:-300}
CONC=${BENCH_MAPS_CONC:-100}
MAPS=${BENCH_MAPS_MAPS:-lmdb socketmap ldap null}
QUIET_MAX=${BENCH_QUIET_MAX:-10}
QUIET_WAIT=${BENCH_QUIET_WAIT:-5}
NOISY=0
DOMAIN=bench.example
RCPTS=50

. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

SOURCE=${SMTP_SOURCE:-$(command -v smtp-source || echo /usr/sbin/smtp-source)}
POSTFIX=${POSTFIX:-$(command -v postfix || echo /usr/sbin/postfix)}
POSTMAP=${POSTMAP:-$(command -v postmap || echo /usr/sbin/postmap)}
SWAKS=${SWAKS:-$(command -v swaks || echo /usr/bin/swaks)}
LOOKUPD_PID=
NULL_PID=
NULLMAP=$top_builddir/tests/bench/bench_nullmap
PF_UP=0
PF_MASTER=

# die - give up, after showing the end of the logs
die() {
    bench_die 15 "$*" "${T:-/nonexistent}/lookupd.log" "${T:-/nonexistent}/postfix.maillog" \
        "${T:-/nonexistent}/syncd.err" "${T:-/nonexistent}/client.err" \
        "${SLAPD_DIR:-/nonexistent}/slapd.log" "${SLAPD_DIR:-/nonexistent}/slapadd.log"
}

# pf_stop - stop the private Postfix (its master stops its children)
pf_stop() {
    [ "$PF_UP" = 1 ] || return 0
    "$POSTFIX" -c "$PFC" stop >>"$T/postfix.stderr" 2>&1
    # postfix stop returns before master has gone; wait for it.
    i=0
    while [ -n "$PF_MASTER" ] && kill -0 "$PF_MASTER" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    PF_UP=0
}

# cleanup - stop what we started (Postfix, then the pids testlib holds:
# lookupd, slapd); drop the directory unless asked to keep it
cleanup() {
    pf_stop
    slapd_resume
    tl_cleanup
    if [ "${BENCH_KEEP:-0}" != 1 ] && [ -n "${T:-}" ]; then
        rm -rf "$T"
    fi
}

# pick_port - a pseudo-random port below Linux's ephemeral range
pick_port() {
    _n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
    echo $((10000 + _n % 22000))
}

# listening PORT - something listens on 127.0.0.1:PORT (from /proc/net/tcp)
listening() {
    _hex=$(printf '%04X' "$1")
    awk -v p=":$_hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
        /proc/net/tcp
}

# map_port MAP - the port of the smtpd service that uses MAP
map_port() {
    case $1 in
    lmdb) echo "$PORT_LMDB" ;;
    socketmap) echo "$PORT_SOCKETMAP" ;;
    ldap) echo "$PORT_LDAP" ;;
    null) echo "$PORT_NULL" ;;
    esac
}

# ------------------------------------------------------------ checks
for p in "$RG_LOOKUPD" "$RG_ADMIN" "$RG_SYNCD" "$NULLMAP"; do
    [ -x "$p" ] || die "$p is missing: run \`make bench-maps' in the build directory"
done
for p in "$SOURCE" "$POSTFIX" "$POSTMAP"; do
    [ -x "$p" ] || die "$p is missing (Debian package postfix)"
done
[ -x "$SWAKS" ] || die "swaks is missing (Debian package swaks)"
why=$(slapd_missing)
[ -z "$why" ] || die "$why"
[ "$(id -u)" = 0 ] || die "run as root: the private Postfix instance needs it"
command -v sqlite3 >/dev/null 2>&1 || die "sqlite3 (the shell) is missing"
case $MAPS in *lmdb*) ;; *) die "BENCH_MAPS_MAPS must include lmdb (the baseline)" ;; esac

SERVER_PIN=
CLIENT_PIN=
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN="taskset -c 0"
    CLIENT_PIN="taskset -c 1"
    PINNING="Postfix, lookupd and slapd on core 0, smtp-source on core 1"
else
    PINNING="NOT pinned (no taskset or one core): figures are not comparable"
fi

[ $((NSESS * RCPTS)) -le "$NREC" ] ||
    die "BENCH_MAPS_SESSIONS x $RCPTS must not exceed BENCH_MAPS_RECIPIENTS (acceptances ask for distinct known users)"

tl_init bench-maps
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
PFC=$T/postfix                  # Postfix's config directory (tl_init made it)
PFQ=$T/pfqueue                  # its queue directory
mkdir -p "$PFQ" "$T/pfdata" || die "cannot make Postfix's directories"
chown postfix "$T/pfdata" || die "cannot chown $T/pfdata to postfix"
# Postfix's smtpd processes (user postfix) connect to lookupd's socket.
chmod 755 "$T"
sed -i 's/^\[lookupd\]$/[lookupd]\nsocket_mode = 0666/' "$CONF"
: >"$T/runs.log"

say "relay_recipient_maps benchmark: one Postfix, $NREC recipients, maps: $MAPS"
say "$PINNING"
say "$ROUNDS rounds, each map once a round (the first map turns with the round);"
say "a run: $NSESS sessions of $RCPTS RCPTs, $CONC at once; ratios to lmdb within each round, median"
say "machine: $(nproc) cores, $(uptime | sed 's/^ *//')"
say ""

# ------------------------------------------------------------ the directory
# ou=People and N inetOrgPersons uid=uN with mail Nu@bench.example: the
# addresses smtp-source -N -t u@bench.example generates.
slapd_init "" || die "slapd_init failed"
trap cleanup EXIT                       # slapd_init set its own
awk -v n="$NREC" -v s="$SLAPD_SUFFIX" -v d="$DOMAIN" 'BEGIN {
    printf "dn: ou=People,%s\nobjectClass: organizationalUnit\nou: People\n\n", s
    for (i = 0; i < n; i++)
        printf "dn: uid=u%d,ou=People,%s\nobjectClass: inetOrgPerson\nuid: u%d\ncn: u%d\nsn: u%d\nmail: %du@%s\n\n", i, s, i, i, i, i, d
}' </dev/null >"$T/entries.ldif" || die "cannot write the LDIF"
"$SLAPADD" -f "$SLAPD_DIR/slapd.conf" -q -w -l "$T/entries.ldif" >>"$SLAPD_DIR/slapadd.log" 2>&1 ||
    die "slapadd of $NREC entries failed"
rm -f "$T/entries.ldif"
slapd_start || die "slapd did not start"
[ -z "$SERVER_PIN" ] || taskset -a -p -c 0 "$SLAPD_PID" >/dev/null || die "cannot pin slapd"

# ------------------------------------------------------------ the store
# Filled from the same directory, as on a gateway: syncd pulls, lookupd
# answers from the store.
slapd_source ldap generic "base=ou=People,$SLAPD_SUFFIX" "timeout=600s"
tl_admin domain add "$DOMAIN" >/dev/null 2>&1 || die "rcptgate domain add failed"
syncd_once
[ "$rc" = 0 ] || die "rcptgate-syncd --once exited $rc"
n=$(sqlite3 -batch -noheader "$STORE" "SELECT count(*) FROM recipient")
[ "$n" = "$NREC" ] || die "the store holds $n recipients, not $NREC"
say "slapd loaded with $NREC entries; rcptgate-syncd pulled them into the store"

rm -f "$SOCK" "$POLICY"
$SERVER_PIN "$RG_LOOKUPD" -c "$CONF" -f 2>>"$T/lookupd.log" &
LOOKUPD_PID=$!
tl_pids="$tl_pids $LOOKUPD_PID"
tl_wait_socket "$SOCK" "$LOOKUPD_PID" || die "rcptgate-lookupd did not start"
NULLSOCK=$T/nullmap.sock
$SERVER_PIN "$NULLMAP" -s "$NULLSOCK" -d "$DOMAIN" 2>>"$T/nullmap.log" &
NULL_PID=$!
tl_pids="$tl_pids $NULL_PID"
tl_wait_socket "$NULLSOCK" "$NULL_PID" || die "bench_nullmap did not start"

# ------------------------------------------------------------ Postfix
awk -v n="$NREC" -v d="$DOMAIN" 'BEGIN {
    for (i = 0; i < n; i++)
        printf "%du@%s OK\n", i, d
}' </dev/null >"$PFC/relay_recipients" || die "cannot write the recipients"
"$POSTMAP" -c "$PFC" "lmdb:$PFC/relay_recipients" >"$T/postmap.log" 2>&1 ||
    { cat "$T/postmap.log" >&2; die "postmap lmdb: failed"; }
# The ldap: table as Postfix's LDAP_README writes one: the whole key in the
# filter (Postfix then asks twice for an unknown user: the address and
# @domain), bound as the test's ordinary account.
cat >"$PFC/ldap-recipients.cf" <<CF
server_host = $SLAPD_URI
version = 3
bind = yes
bind_dn = $SLAPD_SYNC_DN
bind_pw = $SLAPD_SYNC_PW
search_base = ou=People,$SLAPD_SUFFIX
query_filter = (mail=%s)
result_attribute = mail
CF
"$POSTMAP" -c "$PFC" -q "0u@$DOMAIN" "ldap:$PFC/ldap-recipients.cf" >"$T/postmap-ldap.out" 2>&1
grep -q "^0u@$DOMAIN\$" "$T/postmap-ldap.out" ||
    die "Postfix has no working ldap: table (Debian package postfix-ldap): $(cat "$T/postmap-ldap.out")"
"$POSTMAP" -c "$PFC" -q x lmdb:/nonexistent 2>&1 | grep -q 'unsupported dictionary type' &&
    die "Postfix has no lmdb: tables (Debian package postfix-lmdb)"

PORT_LMDB=$(pick_port)
PORT_SOCKETMAP=$((PORT_LMDB + 1))
PORT_LDAP=$((PORT_LMDB + 2))
PORT_NULL=$((PORT_LMDB + 3))
cat >"$PFC/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $PFQ
data_directory = $T/pfdata
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
mynetworks = 127.0.0.2/32
local_recipient_maps =
alias_maps =
alias_database =
biff = no
maillog_file = $T/postfix.maillog
maillog_file_prefixes = $T
syslog_name = postfix-bench
relay_domains = $DOMAIN
relay_recipient_maps = lmdb:$PFC/relay_recipients
# Nothing is queued (DATA is refused); should anything be, it goes nowhere.
relay_transport = discard
default_transport = discard
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_data_restrictions = reject
smtpd_helo_required = yes
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtpd_tls_security_level = none
# Throttles lifted, so what is measured is the work, not a limit.
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
smtpd_client_auth_rate_limit = 0
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_junk_command_limit = 100000
in_flow_delay = 0
default_process_limit = $((CONC + 50))
CF
cat >"$PFC/master.cf" <<CF
127.0.0.1:$PORT_LMDB inet n - n - - smtpd -o syslog_name=postfix-bench/lmdb
127.0.0.1:$PORT_SOCKETMAP inet n - n - - smtpd -o syslog_name=postfix-bench/socketmap -o relay_recipient_maps=socketmap:unix:$SOCK:recipients
127.0.0.1:$PORT_LDAP inet n - n - - smtpd -o syslog_name=postfix-bench/ldap -o relay_recipient_maps=ldap:$PFC/ldap-recipients.cf
127.0.0.1:$PORT_NULL inet n - n - - smtpd -o syslog_name=postfix-bench/null -o relay_recipient_maps=socketmap:unix:$NULLSOCK:recipients
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CF
"$POSTFIX" -c "$PFC" check >"$T/postfix.stderr" 2>&1 ||
    { cat "$T/postfix.stderr" >&2; die "postfix check failed"; }
# Every Postfix process inherits the pinning of its master.
$SERVER_PIN "$POSTFIX" -c "$PFC" start >>"$T/postfix.stderr" 2>&1 ||
    { cat "$T/postfix.stderr" >&2; die "postfix start failed"; }
PF_UP=1
i=0
while [ ! -s "$PFQ/pid/master.pid" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
PF_MASTER=$(tr -d ' ' <"$PFQ/pid/master.pid" 2>/dev/null)
[ -n "$PF_MASTER" ] || die "Postfix's master did not start"
for m in lmdb socketmap ldap null; do
    i=0
    while ! listening "$(map_port $m)"; do
        i=$((i + 1))
        [ $i -gt 200 ] && die "Postfix does not listen on $(map_port $m) ($m)"
        sleep 0.05
    done
done

# ------------------------------------------------------------ the runs
# server_cpu - clock ticks of everything on the server side: Postfix's
# master (with the children it has reaped) and its live children, lookupd
# slapd and the null server (an idle one adds nothing)
server_cpu() {
    {
        awk '{ print $14 + $15 + $16 + $17 }' "/proc/$PF_MASTER/stat"
        for _p in $(ps -o pid= --ppid "$PF_MASTER" 2>/dev/null); do
            awk '{ print $14 + $15 }' "/proc/$_p/stat" 2>/dev/null
        done
        awk '{ print $14 + $15 }' "/proc/$LOOKUPD_PID/stat" 2>/dev/null
        awk '{ print $14 + $15 }' "/proc/$SLAPD_PID/stat" 2>/dev/null
        awk '{ print $14 + $15 }' "/proc/$NULL_PID/stat" 2>/dev/null
    } | awk '{ t += $1 } END { print t + 0 }'
}

# map_cpu - clock ticks of the map servers: "LOOKUPD SLAPD NULL"
map_cpu() {
    _lc=$(awk '{ print $14 + $15 }' "/proc/$LOOKUPD_PID/stat" 2>/dev/null || echo 0)
    _sc=$(awk '{ print $14 + $15 }' "/proc/$SLAPD_PID/stat" 2>/dev/null || echo 0)
    _nc=$(awk '{ print $14 + $15 }' "/proc/$NULL_PID/stat" 2>/dev/null || echo 0)
    echo "${_lc:-0} ${_sc:-0} ${_nc:-0}"
}

# source_run KIND MAP SESSIONS - one smtp-source run; sets RATE and SUS
# (server CPU per RCPT, microseconds). KIND rej: RCPTs to unknown users,
# each must get 550 5.1.1; acc: to distinct known users, none may be
# refused, and every session must have reached DATA (refused by
# smtpd_data_restrictions, which shows its RCPTs were accepted).
source_run() {
    _kind=$1 _map=$2 _n=$3
    if [ "$_kind" = rej ]; then _to="x@$DOMAIN"; else _to="u@$DOMAIN"; fi
    quiet
    _c0=$(server_cpu)
    _m0=$(map_cpu)
    _w0=$(now)
    $CLIENT_PIN "$SOURCE" -A -N -r $RCPTS -s "$CONC" -m "$_n" -M client.bench.test \
        -f sender@client.bench.test -t "$_to" "127.0.0.1:$(map_port "$_map")" \
        >"$T/source.out" 2>&1 || { cat "$T/source.out" >>"$T/client.err"; die "smtp-source ($_kind, $_map) failed"; }
    _w1=$(now)
    _c1=$(server_cpu)
    _m1=$(map_cpu)
    _all=$((_n * RCPTS))
    _rej=$(grep -c 'recipient rejected: ' "$T/source.out")
    if [ "$_kind" = rej ]; then
        _ok=$(grep -c 'recipient rejected: 550 5\.1\.1 ' "$T/source.out")
        if [ "$_ok" != "$_all" ]; then
            { say "== $_kind $_map"; cat "$T/source.out"; } >>"$T/client.err"
            die "$_map: $_ok of $_all RCPTs to unknown users got 550 5.1.1"
        fi
    else
        _data=$(grep -c 'data rejected: 554 ' "$T/source.out")
        if [ "$_rej" != 0 ] || [ "$_data" != "$_n" ]; then
            { say "== $_kind $_map"; cat "$T/source.out"; } >>"$T/client.err"
            die "$_map: $_rej of $_all RCPTs to known users refused, $_data of $_n sessions reached DATA"
        fi
    fi
    RATE=$(fmt %.0f "$_all / ($_w1 - $_w0)")
    SUS=$(fmt %.1f "1e6 * ($_c1 - $_c0) / $TICK / $_all")
    # The map server's share (lookupd for socketmap, slapd for ldap)
    case $_map in
    socketmap) _f=1 ;;
    ldap) _f=2 ;;
    null) _f=3 ;;
    *) _f=0 ;;
    esac
    MUS=0
    if [ $_f != 0 ]; then
        _a=$(echo "$_m0" | cut -d' ' -f$_f)
        _b=$(echo "$_m1" | cut -d' ' -f$_f)
        MUS=$(fmt %.1f "1e6 * ($_b - $_a) / $TICK / $_all")
    fi
    printf '  %-10s %-12s %8s/s   (%d RCPTs in %.2f s; server cpu %s us per RCPT, of it the map server %s)\n' \
        "$_map" "$( [ "$_kind" = rej ] && echo rejections || echo acceptances)" "$RATE" "$_all" \
        "$(calc "$_w1 - $_w0")" "$SUS" "$MUS"
    { say "== $_kind $_map rate=$RATE cpu_us=$SUS"; head -n 5 "$T/source.out"; } >>"$T/runs.log"
}

# rotate N LIST - LIST turned left N times
rotate() {
    _k=$1
    shift
    set -- $*
    _i=0
    while [ "$_i" -lt "$_k" ]; do
        _f=$1
        shift
        set -- "$@" "$_f"
        _i=$((_i + 1))
    done
    echo "$*"
}

say "warm-up (not counted):"
for m in $MAPS; do
    source_run rej "$m" 20
    source_run acc "$m" 20
done

for r in $(seq 1 "$ROUNDS"); do
    order=$(rotate $(((r - 1) % $(echo $MAPS | wc -w))) $MAPS)
    say ""
    say "round $r of $ROUNDS ($order):"
    for kind in rej acc; do
        for m in $order; do
            source_run "$kind" "$m" "$NSESS"
            eval "${kind}_rate_$m=\$RATE"
            add "${kind}_all_$m" "$RATE"
            # A Postfix child reaped between the two readings can make
            # the difference negative: such a run has no CPU figure.
            if [ "$(calc "$SUS >= 0")" = 1 ]; then
                add "${kind}_us_$m" "$SUS"
                add "${kind}_mus_$m" "$MUS"
            fi
        done
        for m in $MAPS; do
            [ "$m" = lmdb ] && continue
            eval "_a=\$${kind}_rate_$m _b=\$${kind}_rate_lmdb"
            add "${kind}_ratio_$m" "$(fmt %.3f "$_a / $_b")"
        done
    done
done

# ------------------------------------------------------------ the outage
# One RCPT to a known user through each service, while slapd runs and
# after it stopped. swaks prints the server's replies after "<~ " / "<~* ".
rcpt_reply() {
    "$SWAKS" --server 127.0.0.1 --port "$(map_port "$1")" --helo client.bench.test \
        --from sender@client.bench.test --to "$2" --quit-after RCPT --timeout 30 \
        >"$T/swaks.out" 2>&1
    # The reply after "-> RCPT TO:": its code and enhanced status code.
    awk '/^ *-> RCPT TO:/ { want = 1; next }
        want && /^<[-~*]* +[0-9][0-9][0-9]/ {
            sub(/^<[-~*]* +/, "")
            print $1 ($2 ~ /^[245]\.[0-9]+\.[0-9]+$/ ? " " $2 : "")
            exit
        }' "$T/swaks.out"
}
say ""
say "outage: one RCPT to 1u@$DOMAIN (known) through each service (swaks)"
OUTAGE_OK=1
for m in lmdb socketmap ldap; do
    a=$(rcpt_reply $m "1u@$DOMAIN")
    eval "UP_$m=\"\$a\""
done
slapd_stop
for m in lmdb socketmap ldap; do
    a=$(rcpt_reply $m "1u@$DOMAIN")
    eval "DOWN_$m=\"\$a\""
    { say "== outage $m"; cat "$T/swaks.out"; } >>"$T/runs.log"
done
printf '  %-10s %-14s %-14s %-12s\n' map "slapd running" "slapd stopped" "expected"
for m in lmdb socketmap ldap; do
    eval "u=\$UP_$m d=\$DOWN_$m"
    case $m in ldap) want="451 4.3.0" ;; *) want="250 2.1.5" ;; esac
    verdict=ok
    if [ "$u" != "250 2.1.5" ] || [ "$d" != "$want" ]; then
        verdict=WRONG
        OUTAGE_OK=0
    fi
    printf '  %-10s %-14s %-14s %-12s %s\n' "$m" "${u:-none}" "${d:-none}" "$want" "$verdict"
done
grep -h 'reject: RCPT.*<1u@' "$T/postfix.maillog" 2>/dev/null | tail -n 1 |
    sed 's/^.*\(postfix-bench\/[a-z]*\)\/smtpd.*: reject: RCPT from [^:]*: /  Postfix logged (\1): /'

# ------------------------------------------------------------ summary
missed=0
say ""
say "=== summary: $NREC recipients; $PINNING; $ROUNDS rounds ==="
say "machine: $(nproc) cores, load now: $(uptime | sed 's/.*load average: //')"
printf '  %-18s %-10s %8s %8s %24s %9s %9s\n' "" map "best/s" "median/s" "ratio to lmdb, median" "cpu us" "map us"
for kind in rej acc; do
    [ $kind = rej ] && label="RCPT rejections" || label="RCPT acceptances"
    for m in $MAPS; do
        eval "_all=\$${kind}_all_$m _us=\$${kind}_us_$m _mus=\$${kind}_mus_$m"
        if [ "$m" = lmdb ]; then
            _r="1 (baseline)"
        else
            eval "_rl=\$${kind}_ratio_$m"
            _r="$(median "$_rl") [$(printf '%s\n' $_rl | sort -g | sed -n '1p;$p' | tr '\n' ' ' | sed 's/ $//; s/ /-/')]"
        fi
        printf '  %-18s %-10s %8s %8s %24s %9s %9s\n' "$label" "$m" "$(best "$_all")" "$(median "$_all")" \
            "$_r" "$(median "$_us")" "$(median "$_mus")"
        label=""
    done
done
say "  (ratio: the map's rate / lmdb's in the same round, [lowest-highest] over the rounds;"
say "   cpu us: server CPU per RCPT, Postfix and the map server, median; map us: of it lookupd's,"
say "   slapd's or the null server's)"
say ""
say "targets:"
case " $MAPS " in
*" socketmap "*)
    R_REJ=$(median "$rej_ratio_socketmap")
    target "socketmap rejections >= 0.95 x lmdb" "$R_REJ" "$R_REJ >= 0.95"
    ;;
esac
# The ceiling: what no socketmap server can beat, and lookupd's distance to it.
case " $MAPS " in
*" null "*)
    N_REJ=$(median "$rej_ratio_null")
    say "  ceiling: the null socketmap server's rejections: $N_REJ x lmdb (no lookup at all)"
    case " $MAPS " in
    *" socketmap "*)
        say "  lookupd's share of the gap: socketmap/null = $(fmt %.3f "$R_REJ / $N_REJ") (of the medians; 1: as cheap as no lookup)"
        ;;
    esac
    ;;
esac
if [ "$OUTAGE_OK" = 1 ]; then
    say "  outage: ldap: 451 4.3.0 with slapd stopped, socketmap 250 from the store: as expected"
else
    say "  outage: NOT as expected (see above)"
fi
say ""
if [ "$NOISY" -gt 0 ]; then
    say "WARNING: $NOISY run(s) started while other work kept the machine busy."
fi
say "logs: $T$([ "${BENCH_KEEP:-0}" = 1 ] || echo ' (removed; BENCH_KEEP=1 keeps it)')"
[ "$OUTAGE_OK" = 1 ] || exit 1
[ $missed = 0 ] || exit 2
exit 0
