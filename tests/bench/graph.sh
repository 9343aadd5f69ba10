#!/bin/sh
# graph.sh - the Graph benchmark: rcptgate-syncd's graph source against the fixture
#
# Run by `make bench-graph` from the build directory; it builds nothing.
# tests/tools/graph_fixture.py --generate N serves N synthetic users
# (each with mail and three proxyAddresses, one of them X500) and ten
# groups of 100 members over HTTPS on 127.0.0.1, in pages of 999 (Graph's
# largest $top). One full pull into an empty store (`rcptgate-syncd
# --once`) is measured: wall time, entries/s, syncd's CPU time and its
# peak RSS (VmHWM, through /usr/bin/time -v), next to the bytes of JSON
# served. The peak must stay well below what holding every page would
# take: the source parses, maps and frees one page at a time; what grows
# with N is the store's pending sync (store_sync.h: about 150 bytes per
# object plus its strings).
# The fixture is Python: entries/s is bounded by it more than by syncd;
# syncd's own CPU time says what syncd would do against a faster server.
# Knobs: BENCH_GRAPH_USERS (100000). Exit 0 when the pull worked (and the
# store holds every address), 1 otherwise.

set -u

. "$(cd "$(dirname "$0")" && pwd)/benchlib.sh"

N=${BENCH_GRAPH_USERS:-100000}
QUIET_MAX=${BENCH_QUIET_MAX:-10}
QUIET_WAIT=${BENCH_QUIET_WAIT:-5}
NOISY=0
missed=0

. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init bench-graph
syncd_require
command -v python3 >/dev/null 2>&1 || { say "python3 is needed"; exit 1; }
[ -x /usr/bin/time ] || { say "/usr/bin/time (GNU time) is needed for the peak RSS"; exit 1; }
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
no_proxy=127.0.0.1,localhost
export no_proxy

D="$T/graph"
mkdir -p "$D"
SLAPD_DIR="$T"
slapd_certs || { say "openssl could not make the test certificates"; exit 1; }
printf 'bench-secret\n' > "$D/secret"
chmod 600 "$D/secret"
echo '{"page_size": 999}' > "$D/control.json"
: > "$D/requests.log"

python3 "$top_srcdir/tests/tools/graph_fixture.py" --cert "$T/tls/server.pem" --key "$T/tls/server.key" \
    --data "$D" --port-file "$D/port" --log "$D/requests.log" --secret bench-secret --generate "$N" \
    2>"$D/fixture.err" &
FPID=$!
tl_pids="$tl_pids $FPID"
i=0
while [ ! -s "$D/port" ]; do
    i=$((i + 1))
    [ $i -gt 200 ] && { say "the fixture did not start (see $D/fixture.err)"; exit 1; }
    sleep 0.05
done
PORT=$(cat "$D/port")

syncd_conf_reset
slapd_syncd_conf
cat >> "$CONF" <<CONF

[source bench]
type = graph
tenant = test-tenant
client_id = test-client
client_secret_file = $D/secret
login_url = https://127.0.0.1:$PORT
graph_url = https://127.0.0.1:$PORT
ca_file = $SLAPD_CA
page_size = 999
timeout = 60s
CONF

say "Graph full pull: $N users (+10 groups of 100 members) from the fixture on 127.0.0.1:$PORT"
quiet
t0=$(now)
/usr/bin/time -v "$RG_SYNCD" -c "$CONF" --once >"$T/syncd.out" 2>"$T/time.out"
rc=$?
t1=$(now)
if [ $rc -ne 0 ]; then
    say "rcptgate-syncd --once failed ($rc):"
    grep -v '^	' "$T/time.out" | tail -5
    exit 1
fi
WALL=$(calc "$t1 - $t0")
RSS_KB=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/time.out")
USER_S=$(sed -n 's/.*User time (seconds): //p' "$T/time.out")
SYS_S=$(sed -n 's/.*System time (seconds): //p' "$T/time.out")
CPU=$(calc "$USER_S + $SYS_S")
STORED=$(syncd_sql "SELECT count(*) FROM recipient")
JSON_BYTES=$(sed -n 's/.* bytes=\([0-9]*\)$/\1/p' "$D/requests.log" | awk '{ s += $1 } END { print s + 0 }')
PAGE_MAX=$(sed -n 's/.* bytes=\([0-9]*\)$/\1/p' "$D/requests.log" | sort -n | tail -1)
REQS=$(wc -l < "$D/requests.log")

say "  requests                 $REQS (largest answer $(fmt %.2f "$PAGE_MAX / 1048576") MiB)"
say "  JSON served              $(fmt %.1f "$JSON_BYTES / 1048576") MiB"
say "  wall time                $(fmt %.2f "$WALL") s"
say "  entries/s                $(fmt %.0f "$N / $WALL") (users; bounded by the Python fixture)"
say "  syncd CPU                $(fmt %.2f "$CPU") s = $(fmt %.0f "$N / ($CPU > 0 ? $CPU : 1)") users per CPU-second"
say "  syncd peak RSS (VmHWM)   $(fmt %.1f "$RSS_KB / 1024") MiB"
say "  store                    $STORED recipient addresses"
[ "$NOISY" -gt 0 ] && say "  (the machine was busy: figures are low)"
# users: two addresses each (X500 left out); groups: one each
WANT=$((2 * N + 10))
if [ "$STORED" != "$WANT" ]; then
    say "  the store holds $STORED addresses, not $WANT"
    exit 1
fi
exit 0
