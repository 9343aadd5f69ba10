#!/bin/sh
# run.sh - the lookup benchmark: rcptgate-lookupd against redis-server
#
# Run by `make bench` from the build directory; it builds nothing, the
# programs must be there already. In a private directory under the build
# tree it writes a map of $BENCH_RECIPIENTS recipients, times `rcptgate
# import` of it, and starts rcptgate-lookupd and redis-server (holding the
# same number of keys), each on a unix socket, both pinned to core 0; every
# client runs pinned to core 1. Then:
#   1. maximum throughput at each connection count: lookupd driven by
#      bench_lookup, redis by redis-benchmark GET (the ceiling the issue
#      names) and by bench_lookup -R (the same client, for a like-for-like
#      check);
#   2. p50/p99 latency at half lookupd's best rate, paced (open loop), and
#      the same paced load on redis with bench_lookup -R: the floor this
#      machine allows;
#   3. lookupd's peak RSS (VmHWM).
# Runs alternate between the servers and repeat, because a shared virtual
# machine has slow spells: throughput is the best of the repeats, latency
# the median. Every client keeps one request outstanding per connection
# (bench_lookup -d 1, redis-benchmark -P 1), as Postfix does. Servers are
# stopped by their pid on exit.
#
# Knobs (environment): BENCH_RECIPIENTS (1000000), BENCH_SECONDS per run
# (3), BENCH_REPEAT (3), BENCH_CONNS ("16 64"), BENCH_HALF_CONNS (16),
# BENCH_DEPTH (1), BENCH_QUIET_MAX (10: % of a core others may use before
# a run starts), BENCH_QUIET_WAIT (5 s at most to wait for that),
# BENCH_KEEP=1 keeps the directory (store, logs).
# Exit 0 when every target is met, 1 when something failed, 2 when the
# runs worked but a target was missed.

set -u

. "$(cd "$(dirname "$0")" && pwd)/benchlib.sh"


LOOKUPD=$top_builddir/lookupd/rcptgate-lookupd
ADMIN=$top_builddir/rcptgate/rcptgate
CLIENT=$top_builddir/tests/bench/bench_lookup

NREC=${BENCH_RECIPIENTS:-1000000}
SECS=${BENCH_SECONDS:-3}
REPEAT=${BENCH_REPEAT:-3}
CONNS=${BENCH_CONNS:-16 64}
HALF_CONNS=${BENCH_HALF_CONNS:-16}
DEPTH=${BENCH_DEPTH:-1}
QUIET_MAX=${BENCH_QUIET_MAX:-10}
QUIET_WAIT=${BENCH_QUIET_WAIT:-5}
NOISY=0
DOMAIN=bench.example
PATTERN="user%06d@$DOMAIN"
RPATTERN="key:%012d"            # what redis-benchmark -r asks for

D=$top_builddir/tests/tmp/bench
SOCK=$D/socketmap.sock
RSOCK=$D/redis.sock
CONF=$D/rcptgate.conf
LPID=
RPID=

# die - give up, after showing the end of the logs
die() {
    bench_die 20 "$*" "$D/client.err" "$D/lookupd.log" "$D/redis.log"
}

# cleanup - stop what we started; drop the directory unless asked to keep it
cleanup() {
    stop_pid "$LPID"
    LPID=
    stop_pid "$RPID"
    RPID=
    if [ "${BENCH_KEEP:-0}" != 1 ]; then
        rm -rf "$D"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# cpu_ticks PID - user + system clock ticks the process has used
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# others TICKS SECONDS - ticks others took on core 0, as % of it; the two
# clocks (per-core ticks, per-task accounting) differ by a little, so a
# small negative result is rounded up to 0
others() {
    fmt %.0f "(100 * ($1) / $TICK / ($2)) < 0 ? 0 : 100 * ($1) / $TICK / ($2)"
}

# wait_socket PATH PID - wait up to 10 s for a server's socket
wait_socket() {
    i=0
    while [ ! -S "$1" ]; do
        kill -0 "$2" 2>/dev/null || return 1
        i=$((i + 1))
        [ $i -gt 200 ] && return 1
        sleep 0.05
    done
    return 0
}

for p in "$LOOKUPD" "$ADMIN" "$CLIENT"; do
    [ -x "$p" ] || die "$p is missing: run \`make bench' in the build directory"
done
for p in redis-server redis-cli redis-benchmark; do
    command -v $p >/dev/null 2>&1 || die "$p is missing (Debian package redis-server)"
done

# Servers on core 0, clients on core 1, when there are two cores.
SERVER_PIN=
CLIENT_PIN=
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN="taskset -c 0"
    CLIENT_PIN="taskset -c 1"
    PINNING="servers on core 0, clients on core 1"
else
    PINNING="NOT pinned (no taskset or one core): figures are not comparable"
fi

rm -rf "$D"
mkdir -p "$D" || die "cannot make $D"
: >"$D/runs.log"

say "rcptgate lookup benchmark: $NREC recipients, $PINNING"
say "every client keeps 1 request outstanding per connection, as Postfix does"
say "(bench_lookup -d $DEPTH; redis-benchmark -P 1, its default)"
say "$REPEAT runs of each, ${SECS} s each, alternating servers:"
say "throughput = best run, latency at half load = median run"
say "each run waits (up to ${QUIET_WAIT} s) for the machine to be idle; 'others' is the"
say "CPU that other processes took on the servers' core during the run"
say ""

# ------------------------------------------------------------ the store
awk -v n="$NREC" -v d="$DOMAIN" 'BEGIN {
    for (i = 0; i < n; i++)
        printf "user%06d@%s user\n", i, d
}' </dev/null >"$D/recipients.map" || die "cannot write the map file"

cat >"$CONF" <<CONF
[store]
path = $D/store.db

[syncd]
# The admin command, run as root, stays root (as the daemons here).
user =

[lookupd]
socketmap = unix:$SOCK
user =
pid_file = $D/lookupd.pid
stats_file = $D/lookupd.stats
CONF

t0=$(now)
"$ADMIN" -c "$CONF" import "$D/recipients.map" >"$D/import.log" 2>&1 \
    || { cat "$D/import.log" >&2; die "rcptgate import failed"; }
t1=$(now)
IMPORT_S=$(calc "$t1 - $t0")
"$ADMIN" -c "$CONF" domain add "$DOMAIN" >>"$D/import.log" 2>&1 \
    || { cat "$D/import.log" >&2; die "rcptgate domain add failed"; }
STORE_MIB=$(du -k "$D/store.db" 2>/dev/null | awk '{ printf "%.0f", $1 / 1024 }')
say "import of $NREC lines: $(fmt %.2f "$IMPORT_S") s (store file ${STORE_MIB:-?} MiB)"

# ------------------------------------------------------------ servers
rm -f "$SOCK" "$RSOCK"
$SERVER_PIN "$LOOKUPD" -c "$CONF" -f 2>>"$D/lookupd.log" &
LPID=$!
wait_socket "$SOCK" "$LPID" || die "rcptgate-lookupd did not open $SOCK"

$SERVER_PIN redis-server --port 0 --unixsocket "$RSOCK" --unixsocketperm 700 \
    --save '' --appendonly no --dir "$D" --logfile "$D/redis.log" &
RPID=$!
wait_socket "$RSOCK" "$RPID" || die "redis-server did not open $RSOCK"
awk -v n="$NREC" 'BEGIN {
    for (i = 0; i < n; i++)
        printf "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$4\r\nuser\r\n", i
}' </dev/null | redis-cli -s "$RSOCK" --pipe >"$D/redis-load.log" 2>&1 \
    || { cat "$D/redis-load.log" >&2; die "loading redis failed"; }
n=$(redis-cli -s "$RSOCK" dbsize)
[ "$n" = "$NREC" ] || die "redis holds $n keys, not $NREC"
say "redis-server loaded with $NREC keys"

# client LABEL PID ARGS... - one bench_lookup run against the server PID;
# sets RESULT and SCPU (the server's CPU use, % of one core)
client() {
    label=$1
    pid=$2
    shift 2
    quiet
    c0=$(cpu_ticks "$pid")
    k0=$(core_busy 0)
    w0=$(now)
    $CLIENT_PIN "$CLIENT" -d "$DEPTH" "$@" >"$D/client.out" 2>"$D/client.err"
    rc=$?
    w1=$(now)
    k1=$(core_busy 0)
    c1=$(cpu_ticks "$pid")
    { say "== $label: bench_lookup $*"; cat "$D/client.out" "$D/client.err"; } >>"$D/runs.log"
    [ $rc = 0 ] || { cat "$D/client.out" >&2; die "bench_lookup failed (exit $rc)"; }
    RESULT=$(grep '^RESULT ' "$D/client.out")
    SCPU=$(fmt %.0f "100 * ($c1 - $c0) / $TICK / ($w1 - $w0)")
    SUS=$(fmt %.2f "1e6 * ($c1 - $c0) / $TICK / $(field requests "$RESULT")")
    OTHER=$(others "$k1 - $k0 - ($c1 - $c0)" "$w1 - $w0")
    printf '  %-36s %7s/s  p50 %7s us  p99 %8s us  cpu: server %3s%% client %3s%% others %3s%%\n' \
        "$label" "$(field rps "$RESULT")" "$(field p50_us "$RESULT")" \
        "$(field p99_us "$RESULT")" "$SCPU" "$(field client_cpu "$RESULT")" "$OTHER"
}

# lookupd_run LABEL ARGS... / redis_run LABEL ARGS... - bench_lookup runs
lookupd_run() {
    l=$1
    shift
    client "$l" "$LPID" -s "$SOCK" -N "$NREC" -p "$PATTERN" "$@"
}
redis_run() {
    l=$1
    shift
    client "$l" "$RPID" -s "$RSOCK" -R -N "$NREC" -p "$RPATTERN" "$@"
}

# rbench LABEL CONNS - one redis-benchmark GET run; sets RB_RPS RB_P50 RB_P99
rbench() {
    # About $SECS seconds at the target rate.
    nreq=$(fmt %.0f "$SECS * 150000")
    quiet
    c0=$(cpu_ticks "$RPID")
    k0=$(core_busy 0)
    w0=$(now)
    out=$($CLIENT_PIN redis-benchmark -s "$RSOCK" -c "$2" -r "$NREC" -n "$nreq" \
        -t get --csv 2>>"$D/client.err") || die "redis-benchmark failed"
    w1=$(now)
    k1=$(core_busy 0)
    c1=$(cpu_ticks "$RPID")
    { say "== $1: redis-benchmark -c $2 -r $NREC -n $nreq -t get"; say "$out"; } >>"$D/runs.log"
    line=$(printf '%s\n' "$out" | grep '^"GET"')
    [ -n "$line" ] || die "no GET line from redis-benchmark: $out"
    RB_RPS=$(printf '%s\n' "$line" | awk -F'"' '{ printf "%.0f", $4 }')
    RB_P50=$(printf '%s\n' "$line" | awk -F'"' '{ printf "%.1f", $10 * 1000 }')
    RB_P99=$(printf '%s\n' "$line" | awk -F'"' '{ printf "%.1f", $14 * 1000 }')
    RB_US=$(fmt %.2f "1e6 * ($c1 - $c0) / $TICK / $nreq")
    printf '  %-36s %7s/s  p50 %7s us  p99 %8s us  cpu: server %3s%% client   - others %3s%%\n' \
        "$1" "$RB_RPS" "$RB_P50" "$RB_P99" \
        "$(fmt %.0f "100 * ($c1 - $c0) / $TICK / ($w1 - $w0)")" \
        "$(others "$k1 - $k0 - ($c1 - $c0)" "$w1 - $w0")"
}

say ""
say "warm-up and check (not counted):"
lookupd_run "lookupd warm-up, 16 conns" -c 16 -t 2
redis_run "redis warm-up, 16 conns" -c 16 -t 1

# ------------------------------------------------------------ 1. throughput
for r in $(seq 1 "$REPEAT"); do
    say ""
    say "max throughput, run $r of $REPEAT:"
    for c in $CONNS; do
        lookupd_run "lookupd, $c conns" -c "$c" -t "$SECS"
        add "L_RPS_$c" "$(field rps "$RESULT")"
        add "L_P99_$c" "$(field p99_us "$RESULT")"
        add "L_CPU_$c" "$SCPU"
        add L_US "$SUS"
        rbench "redis (redis-benchmark), $c conns" "$c"
        add "RB_RPS_$c" "$RB_RPS"
        add RB_US "$RB_US"
        redis_run "redis (bench_lookup -R), $c conns" -c "$c" -t "$SECS"
        add "RC_RPS_$c" "$(field rps "$RESULT")"
        add RC_US "$SUS"
    done
done

L_BEST=0
L_BEST_C=
RB_BEST=0
RC_BEST=0
for c in $CONNS; do
    eval "v=\$L_RPS_$c"
    b=$(best "$v")
    if [ "$(calc "$b > $L_BEST")" = 1 ]; then
        L_BEST=$b
        L_BEST_C=$c
    fi
    eval "v=\$RB_RPS_$c"
    b=$(best "$v")
    [ "$(calc "$b > $RB_BEST")" = 1 ] && RB_BEST=$b
    eval "v=\$RC_RPS_$c"
    b=$(best "$v")
    [ "$(calc "$b > $RC_BEST")" = 1 ] && RC_BEST=$b
done

# ------------------------------------------------------------ 2. latency
HALF=$(fmt %.0f "$L_BEST / 2")
for r in $(seq 1 "$REPEAT"); do
    say ""
    say "half load ($HALF lookups/s paced over $HALF_CONNS conns), run $r of $REPEAT:"
    lookupd_run "lookupd, half load" -c "$HALF_CONNS" -t "$SECS" -r "$HALF"
    add H_L_P50 "$(field p50_us "$RESULT")"
    add H_L_P99 "$(field p99_us "$RESULT")"
    add H_L_RPS "$(field rps "$RESULT")"
    redis_run "redis (bench_lookup -R), same load" -c "$HALF_CONNS" -t "$SECS" -r "$HALF"
    add H_R_P50 "$(field p50_us "$RESULT")"
    add H_R_P99 "$(field p99_us "$RESULT")"
done

# ------------------------------------------------------------ 3. memory
RSS_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$LPID/status")
R_RSS_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$RPID/status")
stop_pid "$LPID"
LPID=
stop_pid "$RPID"
RPID=

# ------------------------------------------------------------ summary
say ""
say "=== summary: $NREC recipients; $PINNING ==="
say "=== 1 request outstanding per connection everywhere (redis-benchmark -P 1) ==="
say ""
say "max throughput, requests/s (best of $REPEAT; all runs in brackets):"
for c in $CONNS; do
    eval "l=\$L_RPS_$c rb=\$RB_RPS_$c rc=\$RC_RPS_$c lc=\$L_CPU_$c"
    say "  $c connections:"
    say "    lookupd                   $(best "$l")  [$l ]  lookupd cpu [$lc ] %"
    say "    redis (redis-benchmark)   $(best "$rb")  [$rb ]"
    say "    redis (bench_lookup -R)   $(best "$rc")  [$rc ]"
    say "    ratio lookupd/redis       $(fmt %.2f "$(best "$l") / $(best "$rb")") (redis-benchmark), $(fmt %.2f "$(best "$l") / $(best "$rc")") (same client)"
done
RATIO=$(fmt %.2f "$L_BEST / $RB_BEST")
say "  best lookupd $L_BEST / best redis-benchmark $RB_BEST = $RATIO"
say "  (same client: best lookupd / best bench_lookup -R on redis = $(fmt %.2f "$L_BEST / $RC_BEST"))"
# The least CPU a request cost the server, in any run: less sensitive to a
# busy machine than throughput, and 1e6 / it bounds what one core can do.
least() {
    printf '%s\n' $1 | sort -g | head -n 1
}
ceiling() {
    fmt %.0f "$1 > 0 ? 1e6 / $1 : 0"
}
L_US_MIN=$(least "$L_US")
say ""
say "server CPU per request, least of all max-throughput runs (1e6 / it = one core's ceiling):"
say "  lookupd                     $L_US_MIN us  (~ $(ceiling "$L_US_MIN")/s)"
say "  redis (redis-benchmark)     $(least "$RB_US") us  (~ $(ceiling "$(least "$RB_US")")/s)"
say "  redis (bench_lookup -R)     $(least "$RC_US") us  (~ $(ceiling "$(least "$RC_US")")/s)"
say ""
say "half load, $HALF/s over $HALF_CONNS connections (median of $REPEAT; all runs in brackets):"
HP50=$(median "$H_L_P50")
HP99=$(median "$H_L_P99")
say "  lookupd                     p50 $HP50 us [$H_L_P50 ]  p99 $HP99 us [$H_L_P99 ]"
say "  redis, same client and load p50 $(median "$H_R_P50") us [$H_R_P50 ]  p99 $(median "$H_R_P99") us [$H_R_P99 ]"
say ""
RSS_MIB=$(fmt %.1f "$RSS_KB / 1024")
say "peak RSS (VmHWM): lookupd $RSS_MIB MiB, redis-server $(fmt %.1f "$R_RSS_KB / 1024") MiB"
say "import: $(fmt %.2f "$IMPORT_S") s"

missed=0
say ""
say "targets:"
target ">= 150,000 lookups/s (best: $L_BEST_C conns)" "$L_BEST" "$L_BEST >= 150000"
target ">= 0.75 x redis-server" "$RATIO" "$RATIO >= 0.75"
target "p99 < 100 us at half load" "$HP99" "$HP99 < 100"
target "peak RSS < 100 MiB" "$RSS_MIB" "$RSS_MIB < 100"
target "import of $NREC lines < 10 s" "$(fmt %.2f "$IMPORT_S")" "$IMPORT_S < 10"
say ""
if [ "$NOISY" -gt 0 ]; then
    say "WARNING: $NOISY run(s) started while other work kept the machine busy:"
    say "         these figures understate what lookupd and redis can do."
fi
say "every run's full output: $D/runs.log$([ "${BENCH_KEEP:-0}" = 1 ] || echo ' (removed; BENCH_KEEP=1 keeps it)')"

[ $missed = 0 ] || exit 2
exit 0
