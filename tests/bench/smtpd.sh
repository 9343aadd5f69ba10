#!/bin/sh
# smtpd.sh - the SMTP benchmark: rcptgate-smtpd against Postfix as the same MX proxy
#
# Run by `make bench-smtpd` from the build directory; it builds nothing,
# the programs must be there already. In a private directory under the
# build tree it generates $BENCH_SMTPD_RECIPIENTS recipients
# (0u@bench.example, 1u@bench.example, ...), loads them into the rcptgate
# store (rcptgate import) and into a Postfix lmdb: table, and starts:
#   - rcptgate-smtpd on 127.0.0.1, relaying bench.example to an smtp-sink;
#   - a private Postfix instance (own config and queue directories) on
#     127.0.0.1: relay_domains = bench.example, relay_recipient_maps =
#     lmdb: of the same recipients, transport to its own smtp-sink;
# both with their throttles lifted (error sleep, error limits, per-client
# connection limits, harvest tarpit; Postfix's anvil limits all 0), no
# reverse lookups and no DNS checks. Servers (Postfix: every process of
# it) run on core 0; clients and the two sinks on core 1. Then, side by
# side, alternating and repeated:
#   1. RCPT rejections/s: smtp-source -A -N -r 50 to unknown users;
#   2. sessions/s: bench_idle -S (connect, EHLO, MAIL, one valid RCPT,
#      QUIT, server closes);
#   3. relayed messages/s: smtp-source -l 5120 to valid users, counted
#      when the sink has them all (Postfix queues first; its client-side
#      acceptance rate is shown too);
#   4. memory per idle session: bench_idle holds N sessions open after
#      EHLO; rcptgate: (VmRSS with them - before) / N; Postfix: the
#      growth of the summed Pss (and Rss) of its smtpd processes / N.
# The figures are ratios against Postfix in the same run; nothing here is
# a test that a timing must pass.
#
# Knobs (environment): BENCH_SMTPD_RECIPIENTS (100000), BENCH_REPEAT (3),
# BENCH_SMTPD_CONC (200 client sessions at once), BENCH_SMTPD_SCALE (1:
# multiplies every message/session count below), BENCH_SMTPD_IDLE (10000
# idle sessions for rcptgate-smtpd), BENCH_SMTPD_IDLE_POSTFIX (2000: one
# process each), BENCH_SMTPD_SIDES ("rcptgate postfix"), BENCH_QUIET_MAX,
# BENCH_QUIET_WAIT, BENCH_KEEP=1 (keep the directory: logs, configs).
# Exit 0 when every target is met, 1 when something failed, 2 when the
# runs worked but a target was missed.

set -u

. "$(cd "$(dirname "$0")" && pwd)/benchlib.sh"


RG_SMTPD=$top_builddir/smtpd/rcptgate-smtpd
ADMIN=$top_builddir/rcptgate/rcptgate
IDLE=$top_builddir/tests/bench/bench_idle
SOURCE=${SMTP_SOURCE:-$(command -v smtp-source || echo /usr/sbin/smtp-source)}
SINK=${SMTP_SINK:-$(command -v smtp-sink || echo /usr/sbin/smtp-sink)}
POSTFIX=${POSTFIX:-$(command -v postfix || echo /usr/sbin/postfix)}
POSTMAP=${POSTMAP:-$(command -v postmap || echo /usr/sbin/postmap)}

NREC=${BENCH_SMTPD_RECIPIENTS:-100000}
REPEAT=${BENCH_REPEAT:-3}
CONC=${BENCH_SMTPD_CONC:-200}
SCALE=${BENCH_SMTPD_SCALE:-1}
IDLE_RG=${BENCH_SMTPD_IDLE:-10000}
IDLE_PF=${BENCH_SMTPD_IDLE_POSTFIX:-2000}
SIDES=${BENCH_SMTPD_SIDES:-rcptgate postfix}
QUIET_MAX=${BENCH_QUIET_MAX:-10}
QUIET_WAIT=${BENCH_QUIET_WAIT:-5}
NOISY=0
DOMAIN=bench.example
RCPTS_PER_MSG=50

# Work per run and server, sized for runs of a few seconds on two cores
# (Postfix is slower, so it gets less work; rates are work / time).
count() {
    fmt %.0f "$1 * $SCALE"
}
REJ_RG=$(count 2000)            # sessions of 50 unknown RCPTs
REJ_PF=$(count 400)
SES_RG=$(count 20000)
SES_PF=$(count 3000)
REL_RG=$(count 10000)
REL_PF=$(count 2000)

D=$top_builddir/tests/tmp/bench-smtpd
CONF=$D/rcptgate.conf
PFC=$D/postfix                   # Postfix's config directory
PFQ=$D/pfqueue                   # its queue directory
RG_PID=
SINK_RG_PID=
SINK_PF_PID=
IDLE_PID=
PF_UP=0

# die - give up, after showing the end of the logs
die() {
    bench_die 15 "$*" "$D/smtpd.stderr" "$D/smtpd.maillog" "$D/postfix.maillog" "$D/client.err"
}

# pf_stop - stop the private Postfix instance (its master stops its children)
pf_stop() {
    if [ "$PF_UP" = 1 ]; then
        "$POSTFIX" -c "$PFC" stop >>"$D/postfix.stderr" 2>&1
        # postfix stop returns before master has gone; wait for it.
        i=0
        while [ -n "${PF_MASTER:-}" ] && kill -0 "$PF_MASTER" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        PF_UP=0
    fi
}

# cleanup - stop what we started; drop the directory unless asked to keep it
cleanup() {
    stop_pid "$IDLE_PID"
    IDLE_PID=
    stop_pid "$RG_PID"
    RG_PID=
    pf_stop
    stop_pid "$SINK_RG_PID"
    SINK_RG_PID=
    stop_pid "$SINK_PF_PID"
    SINK_PF_PID=
    if [ "${BENCH_KEEP:-0}" != 1 ]; then
        rm -rf "$D"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# side NAME - is NAME one of the sides to measure
side() {
    case " $SIDES " in *" $1 "*) return 0 ;; esac
    return 1
}

# pick_port - a pseudo-random port below Linux's ephemeral range
pick_port() {
    _n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
    echo $((10000 + _n % 22000))
}

# listening PORT - something listens on 127.0.0.1:PORT (read from /proc: no bash /dev/tcp)
listening() {
    _hex=$(printf '%04X' "$1")
    awk -v p=":$_hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
        /proc/net/tcp
}

# wait_port PORT PID - wait up to 10 s for PORT to listen (while PID, if any, lives)
wait_port() {
    i=0
    while ! listening "$1"; do
        [ -z "$2" ] || kill -0 "$2" 2>/dev/null || return 1
        i=$((i + 1))
        [ $i -gt 200 ] && return 1
        sleep 0.05
    done
    return 0
}

# sink_count FILE - messages an smtp-sink -c has received so far
sink_count() {
    tr '\r' '\n' <"$1" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1 | grep . || echo 0
}

# rss_kb PID / pss_kb PID - resident / proportional set size of a process
rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# pf_smtpd_mem - "RSS PSS COUNT" summed over Postfix's smtpd processes, in KiB
pf_smtpd_mem() {
    _r=0 _p=0 _c=0
    for _pid in $(ps -o pid= --ppid "$PF_MASTER" 2>/dev/null); do
        [ "$(cat "/proc/$_pid/comm" 2>/dev/null)" = smtpd ] || continue
        _m=$(awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } END { print r + 0, p + 0 }' \
            "/proc/$_pid/smaps_rollup" 2>/dev/null) || continue
        _r=$((_r + ${_m% *}))
        _p=$((_p + ${_m#* }))
        _c=$((_c + 1))
    done
    echo "$_r $_p $_c"
}

[ -x "$IDLE" ] || die "$IDLE is missing: run \`make bench-smtpd' in the build directory"
[ -x "$ADMIN" ] || die "$ADMIN is missing: run \`make bench-smtpd' in the build directory"
if side rcptgate; then
    [ -x "$RG_SMTPD" ] || die "$RG_SMTPD is missing: run \`make bench-smtpd' in the build directory"
fi
for p in "$SOURCE" "$SINK" "$POSTFIX" "$POSTMAP"; do
    [ -x "$p" ] || die "$p is missing (Debian package postfix)"
done
if side postfix; then
    mkdir -p "$D" && : >"$D/main.cf" && "$POSTMAP" -c "$D" -q x lmdb:/nonexistent 2>&1 |
        grep -q 'unsupported dictionary type' && die "Postfix has no lmdb: tables (Debian package postfix-lmdb)"
fi
[ "$(id -u)" = 0 ] || die "run as root: the private Postfix instance needs it"

# Servers on core 0; clients and sinks on core 1, when there are two cores.
SERVER_PIN=
CLIENT_PIN=
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN="taskset -c 0"
    CLIENT_PIN="taskset -c 1"
    PINNING="servers on core 0, clients and sinks on core 1"
else
    PINNING="NOT pinned (no taskset or one core): figures are not comparable"
fi

# One descriptor per idle session, and more for the sessions' other ends.
want=$((IDLE_RG * 2 + 1000))
[ "$(ulimit -n)" -ge "$want" ] 2>/dev/null || ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((IDLE_RG + 100)) ]; then
    say "(ulimit -n is $(ulimit -n): holding $((($(ulimit -n) - 100))) idle sessions, not $IDLE_RG)"
    IDLE_RG=$(($(ulimit -n) - 100))
fi

rm -rf "$D"
mkdir -p "$D" "$PFC" || die "cannot make $D"
: >"$D/runs.log"

RG_PORT=$(pick_port)
PF_PORT=$(pick_port)
SINK_RG_PORT=$(pick_port)
SINK_PF_PORT=$(pick_port)

say "rcptgate-smtpd / Postfix benchmark: $NREC recipients, $PINNING"
say "$REPEAT runs of each, alternating servers; rates are the best run, memory the last"
say "$CONC client sessions at once; every server's throttles lifted (see README.md)"
say ""

# ------------------------------------------------------------ recipients
awk -v n="$NREC" -v d="$DOMAIN" 'BEGIN {
    for (i = 0; i < n; i++)
        printf "%du@%s OK\n", i, d
}' </dev/null >"$D/recipients" || die "cannot write the recipients"

# ------------------------------------------------------------ sinks
$CLIENT_PIN "$SINK" -u nobody -c "127.0.0.1:$SINK_RG_PORT" 1000 >"$D/sink-rg.out" 2>"$D/sink-rg.err" &
SINK_RG_PID=$!
$CLIENT_PIN "$SINK" -u nobody -c "127.0.0.1:$SINK_PF_PORT" 1000 >"$D/sink-pf.out" 2>"$D/sink-pf.err" &
SINK_PF_PID=$!
wait_port "$SINK_RG_PORT" "$SINK_RG_PID" || die "smtp-sink did not listen on $SINK_RG_PORT"
wait_port "$SINK_PF_PORT" "$SINK_PF_PID" || die "smtp-sink did not listen on $SINK_PF_PORT"

# ------------------------------------------------------------ rcptgate-smtpd
cat >"$CONF" <<CONF
[store]
path = $D/store.db

[syncd]
# The admin command, run as root, stays root (as the daemons here).
user =

[smtpd]
listen = 127.0.0.1:$RG_PORT
hostname = mx.bench.test
mynetworks = 127.0.0.2/32
user =
pid_file = $D/smtpd.pid
stats_file = $D/smtpd.stats
log_file = $D/smtpd.maillog
tls = none
relay_tls = none
reverse_lookup = no
reject_unknown_sender_domain = off
max_connections = $((IDLE_RG + 5000))
max_connections_per_client = 0
error_sleep_time = 0
soft_error_limit = 1000
hard_error_limit = 1000
junk_command_limit = 100000
harvest_threshold = 100000
harvest_delay = 0
harvest_limit = 1000000
harvest_block_time = 0
harvest_window = 1s
CONF

t0=$(now)
"$ADMIN" -c "$CONF" import "$D/recipients" >"$D/import.log" 2>&1 \
    || { cat "$D/import.log" >&2; die "rcptgate import failed"; }
IMPORT_S=$(calc "$(now) - $t0")
"$ADMIN" -c "$CONF" domain add "$DOMAIN" "smtp:[127.0.0.1]:$SINK_RG_PORT" >>"$D/import.log" 2>&1 \
    || { cat "$D/import.log" >&2; die "rcptgate domain add failed"; }
say "rcptgate import of $NREC recipients: $(fmt %.2f "$IMPORT_S") s"

if side rcptgate; then
    rm -f "$D/smtpd.pid"
    $SERVER_PIN "$RG_SMTPD" -c "$CONF" -f 2>>"$D/smtpd.stderr" &
    RG_PID=$!
    wait_port "$RG_PORT" "$RG_PID" || die "rcptgate-smtpd did not listen on $RG_PORT"
fi

# ------------------------------------------------------------ Postfix
# The same MX proxy as a careful postmaster's Postfix: relay for
# bench.example only, reject unknown recipients from relay_recipient_maps,
# relay the rest to the next hop; every throttle lifted.
mkdir -p "$PFQ" "$D/pfdata" || die "cannot make Postfix's directories"
chown postfix "$D/pfdata" || die "cannot chown $D/pfdata to postfix"
cat >"$PFC/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $PFQ
data_directory = $D/pfdata
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
maillog_file = $D/postfix.maillog
maillog_file_prefixes = $D
syslog_name = postfix-bench
relay_domains = $DOMAIN
relay_recipient_maps = lmdb:$PFC/relay_recipients
transport_maps = inline:{ {$DOMAIN=relay:[127.0.0.1]:$SINK_PF_PORT} }
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_helo_required = yes
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_tls_security_level = none
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
default_process_limit = $((IDLE_PF + 200))
default_destination_concurrency_limit = 100
initial_destination_concurrency = 100
default_destination_recipient_limit = 50
CF
cat >"$PFC/master.cf" <<CF
127.0.0.1:$PF_PORT inet n - n - - smtpd
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
cp "$D/recipients" "$PFC/relay_recipients"
t0=$(now)
"$POSTMAP" -c "$PFC" "lmdb:$PFC/relay_recipients" >"$D/postmap.log" 2>&1 \
    || { cat "$D/postmap.log" >&2; die "postmap lmdb: failed"; }
say "postmap lmdb: of $NREC recipients: $(fmt %.2f "$(calc "$(now) - $t0")") s"

if side postfix; then
    "$POSTFIX" -c "$PFC" check >"$D/postfix.stderr" 2>&1 \
        || { cat "$D/postfix.stderr" >&2; die "postfix check failed"; }
    # Every Postfix process inherits the pinning of its master.
    $SERVER_PIN "$POSTFIX" -c "$PFC" start >>"$D/postfix.stderr" 2>&1 \
        || { cat "$D/postfix.stderr" >&2; die "postfix start failed"; }
    PF_UP=1
    i=0
    while [ ! -s "$PFQ/pid/master.pid" ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    PF_MASTER=$(tr -d ' ' <"$PFQ/pid/master.pid" 2>/dev/null)
    [ -n "$PF_MASTER" ] || die "Postfix's master did not start"
    wait_port "$PF_PORT" "" || die "Postfix did not listen on $PF_PORT"
fi

# ------------------------------------------------------------ the runs
# server_cpu SIDE - clock ticks the side's server has used: rcptgate-smtpd
# itself; for Postfix its master (with the children it has reaped) and
# every live child
server_cpu() {
    if [ "$1" = rcptgate ]; then
        awk '{ print $14 + $15 }' "/proc/$RG_PID/stat"
        return
    fi
    {
        awk '{ print $14 + $15 + $16 + $17 }' "/proc/$PF_MASTER/stat"
        for _p in $(ps -o pid= --ppid "$PF_MASTER" 2>/dev/null); do
            awk '{ print $14 + $15 }' "/proc/$_p/stat" 2>/dev/null
        done
    } | awk '{ t += $1 } END { print t + 0 }'
}

# cpu_start SIDE / cpu_stop SIDE OPS - the server's CPU over a run: sets
# SCPU (% of a core) and SUS (microseconds of server CPU per operation)
cpu_start() {
    _c0=$(server_cpu "$1")
    _cw0=$(now)
}
cpu_stop() {
    _c1=$(server_cpu "$1")
    _cw1=$(now)
    SCPU=$(fmt %.0f "100 * ($_c1 - $_c0) / $TICK / ($_cw1 - $_cw0)")
    SUS=$(fmt %.0f "1e6 * ($_c1 - $_c0) / $TICK / $2")
}

# port_of SIDE / sink_of SIDE
port_of() {
    [ "$1" = rcptgate ] && echo "$RG_PORT" || echo "$PF_PORT"
}
sink_of() {
    [ "$1" = rcptgate ] && echo "$D/sink-rg.out" || echo "$D/sink-pf.out"
}

# rejects SIDE [SESSIONS] - one RCPT rejection run; sets RATE
rejects() {
    _s=$1
    eval "_n=\$REJ_$( [ "$_s" = rcptgate ] && echo RG || echo PF)"
    [ $# -lt 2 ] || _n=$2
    quiet
    cpu_start "$_s"
    w0=$(now)
    $CLIENT_PIN "$SOURCE" -A -N -r $RCPTS_PER_MSG -s "$CONC" -m "$_n" -M client.bench.test \
        -f sender@client.bench.test -t "x@$DOMAIN" "127.0.0.1:$(port_of "$_s")" \
        >"$D/source.out" 2>&1 || { cat "$D/source.out" >>"$D/client.err"; die "smtp-source (rejections, $_s) failed"; }
    w1=$(now)
    cpu_stop "$_s" $((_n * RCPTS_PER_MSG))
    # Every RCPT must have been refused as an unknown user, nothing else.
    _ok=$(grep -c 'recipient rejected: 550 5\.1\.1 ' "$D/source.out")
    if [ "$_ok" != $((_n * RCPTS_PER_MSG)) ]; then
        tail -n 5 "$D/source.out" >>"$D/client.err"
        die "$_s: $_ok of $((_n * RCPTS_PER_MSG)) RCPTs got 550 5.1.1"
    fi
    RATE=$(fmt %.0f "$_n * $RCPTS_PER_MSG / ($w1 - $w0)")
    printf '  %-10s %-22s %8s/s   (%d RCPTs in %.2f s; server cpu %s%%, %s us per RCPT)\n' "$_s" \
        "RCPT rejections" "$RATE" $((_n * RCPTS_PER_MSG)) "$(calc "$w1 - $w0")" "$SCPU" "$SUS"
}

# sessions SIDE - one sessions run; sets RATE
sessions() {
    _s=$1
    eval "_n=\$SES_$( [ "$_s" = rcptgate ] && echo RG || echo PF)"
    quiet
    cpu_start "$_s"
    $CLIENT_PIN "$IDLE" -S -s "127.0.0.1:$(port_of "$_s")" -n "$_n" -c "$CONC" \
        -p "%du@$DOMAIN" -N "$NREC" >"$D/idle.out" 2>>"$D/client.err"
    _rc=$?
    cpu_stop "$_s" "$_n"
    { say "== sessions $_s"; cat "$D/idle.out"; } >>"$D/runs.log"
    _res=$(grep '^RESULT' "$D/idle.out")
    [ $_rc = 0 ] || die "bench_idle -S ($_s) failed: $_res"
    RATE=$(field rate "$_res")
    printf '  %-10s %-22s %8s/s   (%d sessions in %s s; server cpu %s%%, %s us per session; client cpu %s%%)\n' \
        "$_s" "sessions" "$RATE" "$_n" "$(field seconds "$_res")" "$SCPU" "$SUS" "$(field client_cpu "$_res")"
}

# relays SIDE - one relaying run; sets RATE (delivered to the sink) and ACC (accepted)
relays() {
    _s=$1
    eval "_n=\$REL_$( [ "$_s" = rcptgate ] && echo RG || echo PF)"
    _sink=$(sink_of "$_s")
    _before=$(sink_count "$_sink")
    quiet
    cpu_start "$_s"
    w0=$(now)
    $CLIENT_PIN "$SOURCE" -s "$CONC" -m "$_n" -l 5120 -M client.bench.test \
        -f sender@client.bench.test -N -t "u@$DOMAIN" "127.0.0.1:$(port_of "$_s")" \
        >>"$D/client.err" 2>&1 || die "smtp-source (relay, $_s) failed"
    w1=$(now)
    # Postfix has only queued them: wait until its sink has them all.
    _i=0
    while [ "$(sink_count "$_sink")" -lt $((_before + _n)) ]; do
        _i=$((_i + 1))
        [ $_i -gt 6000 ] && die "$_s: the sink got $(($(sink_count "$_sink") - _before)) of $_n messages"
        sleep 0.01
    done
    w2=$(now)
    cpu_stop "$_s" "$_n"
    ACC=$(fmt %.0f "$_n / ($w1 - $w0)")
    RATE=$(fmt %.0f "$_n / ($w2 - $w0)")
    printf '  %-10s %-22s %8s/s   (%d at the sink in %.2f s; accepted %s/s; server cpu %s%%, %s us per message)\n' \
        "$_s" "relayed 5 KB messages" "$RATE" "$_n" "$(calc "$w2 - $w0")" "$ACC" "$SCPU" "$SUS"
}

# warm-up: one small run of each kind per side (not counted)
say ""
say "warm-up (not counted):"
for s in $SIDES; do
    rejects "$s" 50
done

for r in $(seq 1 "$REPEAT"); do
    say ""
    say "run $r of $REPEAT:"
    for s in $SIDES; do
        rejects "$s"
        add "REJ_$s" "$RATE"
        add "REJUS_$s" "$SUS"
    done
    for s in $SIDES; do
        sessions "$s"
        add "SES_$s" "$RATE"
        add "SESUS_$s" "$SUS"
    done
    for s in $SIDES; do
        relays "$s"
        add "REL_$s" "$RATE"
        add "ACC_$s" "$ACC"
        add "RELUS_$s" "$SUS"
    done
done

# ------------------------------------------------------------ idle sessions
# hold SIDE N - hold N idle sessions; sets HELD
hold() {
    : >"$D/idle.out"
    $CLIENT_PIN "$IDLE" -s "127.0.0.1:$(port_of "$1")" -n "$2" -c 100 -w 600 \
        </dev/null >"$D/idle.out" 2>>"$D/client.err" &
    IDLE_PID=$!
    _i=0
    while ! grep -q '^READY' "$D/idle.out"; do
        kill -0 "$IDLE_PID" 2>/dev/null || die "bench_idle ($1) exited: $(cat "$D/idle.out")"
        _i=$((_i + 1))
        [ $_i -gt 6000 ] && die "bench_idle ($1) did not get its sessions up in 600 s"
        sleep 0.1
    done
    HELD=$(field held " $(grep '^READY' "$D/idle.out")")
    # Let the server finish its work for the last sessions.
    sleep 1
}

# unhold - let the idle sessions go
unhold() {
    stop_pid "$IDLE_PID"
    IDLE_PID=
    cat "$D/idle.out" >>"$D/runs.log"
}

say ""
say "idle sessions (open, EHLO answered, then silent):"
if side rcptgate; then
    before=$(rss_kb "$RG_PID")
    hold rcptgate "$IDLE_RG"
    after=$(rss_kb "$RG_PID")
    unhold
    [ "$HELD" -gt 0 ] || die "rcptgate-smtpd held no idle session"
    MEM_rcptgate=$(fmt %.2f "($after - $before) / $HELD")
    printf '  %-10s %6d sessions: VmRSS %d -> %d KiB: %s KiB per session\n' rcptgate "$HELD" \
        "$before" "$after" "$MEM_rcptgate"
fi
if side postfix; then
    b=$(pf_smtpd_mem)
    hold postfix "$IDLE_PF"
    a=$(pf_smtpd_mem)
    unhold
    [ "$HELD" -gt 0 ] || die "Postfix held no idle session"
    set -- $b $a
    # Each held session has a process of its own (idle ones from earlier
    # runs were reused): the cost of a session is the average process.
    [ "$6" -ge "$HELD" ] || die "Postfix holds $HELD sessions in $6 smtpd processes?"
    MEM_postfix=$(fmt %.0f "$5 / $6")
    MEM_postfix_rss=$(fmt %.0f "$4 / $6")
    printf '  %-10s %6d sessions: %d smtpd processes (%d before); Pss %d KiB: %s KiB per session (Rss %s)\n' \
        postfix "$HELD" "$6" "$3" "$5" "$MEM_postfix" "$MEM_postfix_rss"
fi

# ------------------------------------------------------------ summary
missed=0
say ""
say "=== summary: $NREC recipients; $PINNING; best of $REPEAT runs ==="
printf '  %-26s %12s %12s %8s\n' "" rcptgate postfix ratio
row() {
    eval "_a=\$$2_rcptgate _b=\$$2_postfix" 2>/dev/null
    _a=$(best "${_a:-0}")
    _b=$(best "${_b:-0}")
    _r=$(fmt %.2f "$_b > 0 ? $_a / $_b : 0")
    printf '  %-26s %12s %12s %8s\n' "$1" "$_a" "$_b" "$_r"
    eval "R_$2=\$_r"
}
for v in REJ SES REL ACC; do
    for s in rcptgate postfix; do
        eval "[ -n \"\${${v}_$s:-}\" ] || ${v}_$s=0"
    done
done
row "RCPT rejections/s" REJ
row "sessions/s" SES
row "relayed msgs/s (at sink)" REL
row "accepted msgs/s (client)" ACC
# rowus LABEL VAR - median server CPU per operation; ratio = Postfix / rcptgate
rowus() {
    eval "_a=\${$2_rcptgate:-0} _b=\${$2_postfix:-0}"
    _a=$(median "$_a")
    _b=$(median "$_b")
    printf '  %-26s %12s %12s %8s\n' "$1" "$_a" "$_b" "$(fmt %.2f "$_a > 0 ? $_b / $_a : 0")"
}
say "  server CPU, median (ratio: Postfix / rcptgate):"
rowus "  us per rejected RCPT" REJUS
rowus "  us per session" SESUS
rowus "  us per relayed message" RELUS
MEM_rcptgate=${MEM_rcptgate:-0}
MEM_postfix=${MEM_postfix:-0}
printf '  %-26s %12s %12s %8s\n' "KiB per idle session" "$MEM_rcptgate" "$MEM_postfix" \
    "$(fmt %.3f "$MEM_postfix > 0 ? $MEM_rcptgate / $MEM_postfix : 0")"
say "  (rcptgate: VmRSS growth / $IDLE_RG sessions; Postfix: summed Pss of its smtpd processes / their number, $IDLE_PF sessions)"

say ""
say "targets:"
if side rcptgate && side postfix; then
    target "RCPT rejections/s >= 5 x Postfix" "$R_REJ" "$R_REJ >= 5"
    target "sessions/s >= 5 x Postfix" "$R_SES" "$R_SES >= 5"
    target "relayed msgs/s >= 2 x Postfix" "$R_REL" "$R_REL >= 2"
fi
if side rcptgate; then
    target "idle session <= 4 KiB of smtpd memory" "$MEM_rcptgate" "$MEM_rcptgate <= 4"
fi
say ""
if [ "$NOISY" -gt 0 ]; then
    say "WARNING: $NOISY run(s) started while other work kept the machine busy."
fi
say "logs: $D$([ "${BENCH_KEEP:-0}" = 1 ] || echo ' (removed; BENCH_KEEP=1 keeps it)')"
[ $missed = 0 ] || exit 2
exit 0
