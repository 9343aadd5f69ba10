#!/bin/sh
# check.sh - `rcptgate check` (a monitoring plugin) and the metrics exposition
#
# Every exit status of rcptgate check provoked for real: OK with a fresh
# sync (a file source synced by rcptgate-syncd --once) and a running
# lookupd and smtpd; WARNING and CRITICAL from an old sync time (set in
# the store with sqlite3: waiting a day is not a test) and from a source
# that never synced; CRITICAL with lookupd stopped, with lookupd answering
# TEMP, with smtpd stopped, with a listener that accepts but never
# greets (the check must end by its timeout, not hang), with a refused
# shrink guard (also after an incremental run), with a missing, a
# corrupt and a locked store, and by its alarm when a 60 s busy_timeout
# would hold it; UNKNOWN for a bad configuration and bad options.
#
# The metrics: lookupd's and smtpd's metrics_file and `rcptgate stats
# --prometheus` are fed to promtool check metrics; `rcptgate stats
# --openmetrics` to the OpenMetrics parser of python3-prometheus-client;
# and the counters must move by exactly the lookups postmap made.
# Finally etc/rcptgate.logrotate passes logrotate -d, and a real rotation
# (its postrotate HUP) moves smtpd's log_file lines to the new file.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"
. "$top_srcdir/tests/lib/smtpd.sh"

[ -x "$RG_LOOKUPD" ] || tl_skip_all "rcptgate-lookupd not built"
[ -x "$RG_SMTPD" ] || tl_skip_all "rcptgate-smtpd not built"
tl_init check
syncd_require
PROMTOOL=${PROMTOOL:-$(command -v promtool || echo /usr/bin/promtool)}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

MAP="$T/corp.map"
LOOKUPD_METRICS="$T/lookupd.prom"
SMTPD_METRICS="$T/smtpd.prom"

# write_map N - u000..u(N-1) @check.example
write_map() {
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "u%03d@check.example OK\n", i }' > "$MAP.tmp"
    mv "$MAP.tmp" "$MAP"
}

# check [ARGS] - rcptgate check: the status line in $out, exit status in $rc
check() {
    "$RG_ADMIN" -c "$CONF" check -t 3s "$@" >"$T/check.out" 2>"$T/check.err"
    rc=$?
    out=$(cat "$T/check.out")
    echo "# check $*: $rc $out"
}

# metric NAME{LABELS} FILE - the value of one sample, "" when absent
metric() {
    awk -v k="$1" '$1 == k { print $2 }' "$2"
}

# wait_metric NAME{LABELS} FILE WANT - wait up to 5 s for a sample to reach WANT
wait_metric() {
    _i=0
    while [ "$(metric "$1" "$2")" != "$3" ] && [ $_i -lt 50 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    metric "$1" "$2"
}

# --- the config: lookupd with a metrics file, one file source, syncd
printf 'metrics_file = %s\n' "$LOOKUPD_METRICS" >> "$CONF"
slapd_syncd_conf
printf '\n[source corp]\ntype = file\npath = %s\n' "$MAP" >> "$CONF"
cp "$CONF" "$T/nosmtpd.conf"

tl_admin domain add check.example >/dev/null 2>&1
write_map 100

# --- UNKNOWN: bad configuration, bad options
printf '[store]\npath = %s\nno_such_key = 1\n' "$STORE" > "$T/bad.conf"
"$RG_ADMIN" -c "$T/bad.conf" check >"$T/check.out" 2>"$T/check.err"
tl_is "$?" 3 "a bad configuration is UNKNOWN (3)"
tl_like "$(cat "$T/check.out")" "^RCPTGATE UNKNOWN - .*bad.conf: configuration errors" \
    "and the status line on stdout says so"
check -w 2d -c 1d
tl_is "$rc" 3 "a warning age above the critical age is UNKNOWN"
check --frobnicate
tl_is "$rc" 3 "an unknown option is UNKNOWN"
tl_like "$out" "^RCPTGATE UNKNOWN - usage: " "with the usage in the status line"

# --- CRITICAL: a source that never synced (lookupd not yet started either)
check --no-lookupd
tl_is "$rc" 2 "a configured source that never synced is CRITICAL"
tl_like "$out" "^RCPTGATE CRITICAL - source corp: never synced" "the line names the source"

# --- a fresh sync, lookupd running: OK
syncd_once
tl_is "$rc" 0 "syncd --once applied the file source (precondition)"
tl_start_lookupd
tl_ok $? "lookupd started"
check
tl_is "$rc" 0 "fresh sync and running lookupd: OK"
tl_like "$out" "^RCPTGATE OK - 1 source synced, store readable \\(100 recipients\\), lookupd answers \\| " \
    "the OK line lists what was checked"
tl_like "$out" "'sync_age_corp'=[0-9]+s;7200;86400;0 " "perfdata: the sync age with the default thresholds"
tl_like "$out" "'lookupd_time'=0\\.[0-9]{6}s;;;0" "perfdata: lookupd's answer time"
tl_like "$out" "'recipients'=100;;;0" "perfdata: the recipients"

# the probe is a real socketmap lookup: lookupd counted it
sleep 1.2
tl_is "$(wait_metric 'rcptgate_lookups_total{map="domains",result="ok"}' "$LOOKUPD_METRICS" 1)" 1 \
    "the check's probe is one domains lookup with result ok in lookupd's counters"
check -d nowhere.example
tl_is "$rc" 0 "-d: a domain lookupd does not know (NOTFOUND) is alive too"
tl_is "$(wait_metric 'rcptgate_lookups_total{map="domains",result="notfound"}' "$LOOKUPD_METRICS" 1)" 1 \
    "and the probe for it is one domains lookup with result notfound"

# --- WARNING / CRITICAL by the age of the last sync
syncd_sql "UPDATE source SET last_success = strftime('%s','now') - 3 * 3600 WHERE name = 'corp'"
check
tl_is "$rc" 1 "a sync 3h old is WARNING (default warning 2h)"
tl_like "$out" "^RCPTGATE WARNING - source corp: last sync 3h0m ago \\(warning 2h0m\\)" "the line says how old"
check -w 4h -c 8h
tl_is "$rc" 0 "with -w 4h -c 8h the same sync is OK"
check --sync-warning 1h --sync-critical 2h
tl_is "$rc" 2 "with --sync-critical 2h it is CRITICAL"
tl_like "$out" "'sync_age_corp'=10[0-9]{3}s;3600;7200;0" "perfdata carries the thresholds given"
syncd_sql "UPDATE source SET last_success = strftime('%s','now') - 2 * 86400 WHERE name = 'corp'"
check
tl_is "$rc" 2 "a sync two days old is CRITICAL (default critical 1d)"
check --no-sync
tl_is "$rc" 0 "--no-sync leaves the sync ages out"

# [store] max_age sets the defaults: warning at half, critical at max_age
sed 's/^busy_timeout = 500ms$/busy_timeout = 500ms\nmax_age = 8h/' "$CONF" > "$T/maxage.conf"
syncd_sql "UPDATE source SET last_success = strftime('%s','now') - 5 * 3600 WHERE name = 'corp'"
"$RG_ADMIN" -c "$T/maxage.conf" check -t 3s --no-lookupd >"$T/check.out" 2>&1
tl_is "$?" 1 "max_age = 8h: a sync 5h old is WARNING (half of max_age)"
tl_like "$(cat "$T/check.out")" "'sync_age_corp'=[0-9]+s;14400;28800;0" "thresholds 4h and 8h from max_age"

# lookupd answering TEMP is CRITICAL: with max_age 1h the data is stale for it
syncd_once
sed 's/^busy_timeout = 500ms$/busy_timeout = 500ms\nmax_age = 1h/' "$CONF" > "$T/stale.conf"
tl_stop_lookupd
"$RG_LOOKUPD" -c "$T/stale.conf" -f 2>>"$T/lookupd.log" &
LOOKUPD_PID=$!
tl_pids="$tl_pids $LOOKUPD_PID"
tl_wait_socket "$SOCK"
syncd_sql "UPDATE source SET last_success = strftime('%s','now') - 2 * 3600 WHERE name = 'corp'"
sleep 1.5
tl_postmap check.example domains
tl_like "$(cat "$T/err")" "socketmap server temporary error: .*directory data is stale" \
    "postmap: lookupd answers TEMP for stale data (precondition)"
check -w 3h -c 4h
tl_is "$rc" 2 "lookupd answering TEMP is CRITICAL, with fresh enough thresholds"
tl_like "$out" "lookupd: unix:.*socketmap.sock answers \"TEMP [^\"]*stale" "the line quotes lookupd's TEMP"
tl_stop_lookupd
syncd_once
tl_start_lookupd

# --- CRITICAL with lookupd stopped
tl_stop_lookupd
check
tl_is "$rc" 2 "lookupd stopped is CRITICAL"
tl_like "$out" "^RCPTGATE CRITICAL - lookupd: unix:$SOCK: (Connection refused|No such file)" \
    "the line says lookupd's socket refuses"
check --no-lookupd
tl_is "$rc" 0 "--no-lookupd skips the probe"

# a socket that accepts and never answers: CRITICAL within the timeout, no hang
rm -f "$SOCK"
$PY -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(5)
open(sys.argv[2], "w").close()
c, _ = s.accept(); time.sleep(30)
' "$SOCK" "$T/mute.ready" &
MUTE_PID=$!
tl_pids="$tl_pids $MUTE_PID"
i=0; while [ ! -e "$T/mute.ready" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
t0=$(date +%s)
"$RG_ADMIN" -c "$CONF" check -t 1s >"$T/check.out" 2>&1
rc=$?
t1=$(date +%s)
tl_is "$rc" 2 "a lookupd that accepts but never answers is CRITICAL"
tl_like "$(cat "$T/check.out")" "lookupd: unix:.*: no answer within 1 s" "the line says it did not answer in time"
tl_ok "$([ $((t1 - t0)) -le 3 ]; echo $?)" "and the check ended by its 1 s timeout ($((t1 - t0)) s)"
kill "$MUTE_PID" 2>/dev/null; wait "$MUTE_PID" 2>/dev/null
rm -f "$SOCK"

# --- CRITICAL with a refused shrink guard
tl_start_lookupd
write_map 50
syncd_once
tl_is "$rc" 65 "syncd refused removing half the source (precondition)"
check
tl_is "$rc" 2 "a shrink guard refusal is CRITICAL"
tl_like "$out" "source corp: the shrink guard refused the last sync \\(refused" "the line says the guard refused"
sleep 1.2
tl_is "$(wait_metric 'rcptgate_sync_last_run_outcome{source="corp",outcome="refused"}' "$LOOKUPD_METRICS" 1)" 1 \
    "lookupd's metrics file shows the refusal"
tl_is "$(metric 'rcptgate_sync_shrink_guard_refused{source="corp"}' "$LOOKUPD_METRICS")" 1 \
    "and rcptgate_sync_shrink_guard_refused{source=corp} is 1"
# An incremental run after the refusal (as a polling syncd makes) does not hide it.
syncd_sql "INSERT INTO sync_run (source_id, started, mode, outcome)
    SELECT id, strftime('%s','now'), 'incremental', 'ok' FROM source WHERE name = 'corp'"
check
tl_is "$rc" 2 "an incremental ok after the refusal: still CRITICAL"
tl_like "$out" "source corp: the shrink guard refused the last full sync, and none was applied since" \
    "the line says the full sync stands refused"
sleep 1.2
tl_is "$(wait_metric 'rcptgate_sync_last_run_outcome{source="corp",outcome="ok"}' "$LOOKUPD_METRICS" 1)" 1 \
    "the metrics' last run is the incremental ok (precondition)"
tl_is "$(metric 'rcptgate_sync_shrink_guard_refused{source="corp"}' "$LOOKUPD_METRICS")" 1 \
    "while rcptgate_sync_shrink_guard_refused stays 1"
syncd_once --force
tl_is "$rc" 0 "--force applies it"
check
tl_is "$rc" 0 "after an applied sync: OK again"
tl_is "$(wait_metric 'rcptgate_sync_shrink_guard_refused{source="corp"}' "$LOOKUPD_METRICS" 0)" 0 \
    "and rcptgate_sync_shrink_guard_refused is 0"

# --- CRITICAL with an unreadable store
mv "$STORE" "$STORE.away"
check --no-lookupd
tl_is "$rc" 2 "a missing store is CRITICAL"
tl_like "$out" "^RCPTGATE CRITICAL - store .*store\\.db: no such file" "the line names the store"
mv "$STORE.away" "$STORE"
printf 'this is not a database, just 64 bytes of text to fill a header...' > "$T/junk.db"
sed "s|^path = $STORE|path = $T/junk.db|" "$CONF" > "$T/junk.conf"
"$RG_ADMIN" -c "$T/junk.conf" check --no-lookupd >"$T/check.out" 2>&1
tl_is "$?" 2 "a file that is not a database is CRITICAL"

# A store another process holds locked: CRITICAL after busy_timeout; and
# with a busy_timeout longer than the check may take, the alarm ends it.
# (lookupd, stopped meanwhile, would hold a shared lock that keeps
# sqlite3 from taking the exclusive one.)
tl_stop_lookupd
mkfifo "$T/lock.fifo"
sqlite3 "$STORE" < "$T/lock.fifo" > "$T/lock.out" 2>&1 &
LOCK_PID=$!
tl_pids="$tl_pids $LOCK_PID"
exec 3>"$T/lock.fifo"
printf 'PRAGMA locking_mode=EXCLUSIVE;\nBEGIN EXCLUSIVE;\nCOMMIT;\nSELECT 42;\n' >&3
i=0; while ! grep -q '^42$' "$T/lock.out" && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
sqlite3 "$STORE" "SELECT count(*) FROM recipient" > "$T/locked.out" 2>&1
tl_like "$(tr '\n' ' ' < "$T/lock.out")/ $(cat "$T/locked.out")" "^exclusive 42 / .*database is locked" \
    "sqlite3 holds the store locked: another reader is refused (precondition)"
check --no-lookupd
tl_is "$rc" 2 "a locked store is CRITICAL"
tl_like "$out" "^RCPTGATE CRITICAL - store .*: database is locked" "the line says it is locked"
sed 's/^busy_timeout = 500ms$/busy_timeout = 60s/' "$CONF" > "$T/patient.conf"
t0=$(date +%s)
"$RG_ADMIN" -c "$T/patient.conf" check -t 1s --no-lookupd >"$T/check.out" 2>&1
rc=$?
t1=$(date +%s)
tl_is "$rc" 2 "a check stuck behind a 60 s busy_timeout is CRITICAL"
tl_is "$(cat "$T/check.out")" "RCPTGATE CRITICAL - the check did not finish within 8 s" \
    "the alarm (3 x -t + 5 s) ends it with a status line"
tl_ok "$([ $((t1 - t0)) -le 10 ]; echo $?)" "within the alarm's time ($((t1 - t0)) s), not the busy timeout's"
exec 3>&-
wait "$LOCK_PID"
tl_pids=$(echo "$tl_pids" | sed "s/ $LOCK_PID//")
check --no-lookupd
tl_is "$rc" 0 "the lock gone, the store is readable again"
tl_start_lookupd
tl_ok $? "lookupd started again"

# --- metrics: counters move by exactly the lookups made
sleep 1.2
before_ok=$(metric 'rcptgate_lookups_total{map="recipients",result="ok"}' "$LOOKUPD_METRICS")
before_nf=$(metric 'rcptgate_lookups_total{map="recipients",result="notfound"}' "$LOOKUPD_METRICS")
tl_like "$before_ok/$before_nf" "^[0-9]+/[0-9]+$" "lookupd's metrics file has the recipients counters"
tl_postmap u001@check.example recipients
tl_is "$?/$(cat "$T/out")" "0/imported" "postmap: a known recipient is found"
tl_postmap u002@check.example recipients
tl_postmap nobody@check.example recipients
tl_is "$?" 1 "postmap: an unknown recipient is not found"
tl_is "$(cat "$T/err")" "" "and that is no lookup error"
tl_is "$(wait_metric 'rcptgate_lookups_total{map="recipients",result="ok"}' "$LOOKUPD_METRICS" $((before_ok + 2)))" \
    $((before_ok + 2)) "rcptgate_lookups_total{map=recipients,result=ok} moved by 2"
tl_is "$(metric 'rcptgate_lookups_total{map="recipients",result="notfound"}' "$LOOKUPD_METRICS")" \
    $((before_nf + 1)) "rcptgate_lookups_total{map=recipients,result=notfound} moved by 1"
tl_like "$(metric 'rcptgate_sync_last_success_timestamp_seconds{source="corp"}' "$LOOKUPD_METRICS")" \
    "^1[0-9]{9}$" "the metrics file has the source's last success time"
tl_is "$(stat -c %a "$LOOKUPD_METRICS")" 644 "the metrics file is readable by node_exporter (0644)"
tl_is "$(ls "$(dirname "$LOOKUPD_METRICS")" | grep -c '\.tmp$')" 0 "no temporary file is left behind"

if [ -x "$PROMTOOL" ]; then
    "$PROMTOOL" check metrics < "$LOOKUPD_METRICS" >"$T/promtool.out" 2>&1
    tl_is "$?" 0 "promtool check metrics accepts lookupd's metrics file"
    sed 's/^/# /' "$T/promtool.out"
else
    tl_ok 1 "promtool is installed (Debian package prometheus, see scripts/deps.sh)"
fi

# --- smtpd: the banner probe and its metrics
cp "$T/nosmtpd.conf" "$CONF"
# relay_mode = proxy: no queue directory here, so check reports none (queue_admin.sh tests that part)
sm_init "metrics_file = $SMTPD_METRICS" "stats_interval = 1s" "relay_mode = proxy"
sm_sink_start
tl_ok $? "smtp-sink started as the next hop"
tl_admin domain add check.example "smtp:[127.0.0.1]:$SINK_PORT" >/dev/null
sm_start
tl_ok $? "smtpd started"
check
tl_is "$rc" 0 "lookupd and smtpd running: OK"
tl_like "$out" "lookupd answers, smtpd answers \\| " "the line says both answer"
tl_like "$out" "'smtpd_time'=0\\.[0-9]{6}s;;;0" "perfdata: smtpd's banner time"
tl_like "$(grep -c "connect from" "$SMTPD_LOG")" "^[1-9]" "smtpd logged the probe's connection"
tl_like "$(cat "$SMTPD_LOG")" "disconnect from .* quit=1" "the probe said QUIT"
conns=$(wait_metric 'rcptgate_connections_total{daemon="smtpd"}' "$SMTPD_METRICS" 1)
tl_is "$conns" 1 "smtpd's metrics file counts the probe's connection"
sm_swaks --to u001@check.example --ehlo mail.sender.test --from a@sender.test --quit-after RCPT
tl_like "$(rcpt_reply)" "^250 " "swaks: a known recipient is accepted (precondition)"
sm_swaks --to nobody@check.example --ehlo mail.sender.test --from a@sender.test --quit-after RCPT
tl_like "$(rcpt_reply)" "^550 5\\.1\\.1" "swaks: an unknown recipient is refused (precondition)"
tl_is "$(wait_metric 'rcptgate_smtpd_recipients_total{daemon="smtpd",result="rejected"}' "$SMTPD_METRICS" 1)" 1 \
    "rcptgate_smtpd_recipients_total{result=rejected} is 1"
tl_is "$(metric 'rcptgate_smtpd_recipients_total{daemon="smtpd",result="accepted"}' "$SMTPD_METRICS")" 1 \
    "rcptgate_smtpd_recipients_total{result=accepted} is 1"
tl_is "$(metric 'rcptgate_connections_total{daemon="smtpd"}' "$SMTPD_METRICS")" $((conns + 2)) \
    "rcptgate_connections_total{daemon=smtpd} moved by the two sessions"
if [ -x "$PROMTOOL" ]; then
    "$PROMTOOL" check metrics < "$SMTPD_METRICS" >"$T/promtool.out" 2>&1
    tl_is "$?" 0 "promtool check metrics accepts smtpd's metrics file"
    sed 's/^/# /' "$T/promtool.out"
fi

# rcptgate stats: both daemons and the store, in both formats
run_stats() {
    "$RG_ADMIN" -c "$CONF" stats "$@" >"$T/stats.out" 2>"$T/stats.err"
    rc=$?
}
run_stats --prometheus
tl_is "$rc" 0 "stats --prometheus exits 0"
tl_like "$(grep -c '^rcptgate_connections_total{daemon="\(lookupd\|smtpd\)"}' "$T/stats.out")" "^2$" \
    "it has both daemons' connection counters"
tl_is "$(grep -c '^# TYPE rcptgate_connections_total counter$' "$T/stats.out")" 1 \
    "one family: their samples come together under one TYPE line"
tl_like "$(metric 'rcptgate_store_recipients' "$T/stats.out")" "^50$" "rcptgate_store_recipients is 50"
tl_like "$(metric 'rcptgate_sync_recipients{source="corp"}' "$T/stats.out")" "^50$" "rcptgate_sync_recipients{source=corp} is 50"
if [ -x "$PROMTOOL" ]; then
    "$PROMTOOL" check metrics < "$T/stats.out" >"$T/promtool.out" 2>&1
    tl_is "$?" 0 "promtool check metrics accepts stats --prometheus"
    sed 's/^/# /' "$T/promtool.out"
fi
run_stats --openmetrics
tl_is "$rc" 0 "stats --openmetrics exits 0"
tl_is "$(tail -1 "$T/stats.out")" "# EOF" "it ends with # EOF"
tl_is "$(grep -c '^# TYPE rcptgate_lookups counter$' "$T/stats.out")" 1 "counter families are named without _total"
if "$PY" -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
    "$PY" -c '
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
fams = list(text_string_to_metric_families(open(sys.argv[1]).read()))
n = sum(len(f.samples) for f in fams)
print("%d families, %d samples" % (len(fams), n))
' "$T/stats.out" >"$T/om.out" 2>&1
    tl_ok $? "the OpenMetrics parser of python3-prometheus-client accepts it"
    sed 's/^/# /' "$T/om.out"
else
    tl_ok 1 "python3-prometheus-client is installed (see scripts/deps.sh)"
fi
run_stats --frobnicate
tl_is "$rc" 64 "stats with an unknown option is a usage error"

# --- CRITICAL with smtpd stopped, or greeting with something else than 220
sm_stop
check
tl_is "$rc" 2 "smtpd stopped is CRITICAL"
tl_like "$out" "smtpd: 127\\.0\\.0\\.1:$SMTPD_PORT: Connection refused" "the line names smtpd's address"
check --no-smtpd
tl_is "$rc" 0 "--no-smtpd skips the probe"
$PY -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(5)
open(sys.argv[2], "w").close()
c, _ = s.accept(); c.sendall(b"554-go away\r\n554 really | not\r\n"); c.recv(100); c.close()
' "$SMTPD_PORT" "$T/554.ready" &
FAKE_PID=$!
tl_pids="$tl_pids $FAKE_PID"
i=0; while [ ! -e "$T/554.ready" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
check
tl_is "$rc" 2 "a listener greeting with 554 is CRITICAL"
tl_like "$out" "smtpd: 127\\.0\\.0\\.1:$SMTPD_PORT greets with \"554 really / not\"" \
    "the line quotes the greeting (a | in it made a /: it would start the perfdata)"
tl_is "$(printf '%s\n' "$out" | tr -cd '|' | wc -c | tr -d ' ')" 1 "one | in the line: before the perfdata"
wait "$FAKE_PID" 2>/dev/null

# --- logrotate: the installed file, and a real rotation of smtpd's log_file
LOGROTATE=${LOGROTATE:-$(command -v logrotate || echo /usr/sbin/logrotate)}
LR="$top_builddir/etc/rcptgate.logrotate"
if [ -x "$LOGROTATE" ] && [ -f "$LR" ]; then
    "$LOGROTATE" -d -s "$T/logrotate.state" "$LR" >"$T/lr.out" 2>&1
    tl_is "$?" 0 "logrotate -d accepts etc/rcptgate.logrotate"
    tl_like "$(cat "$T/lr.out")" "rotating pattern: .*rcptgate/\\*\\.log" "and reads its log pattern"
    # The same file with the test's paths, rotated for real while smtpd runs.
    sed -e "s|^[^ ]*/rcptgate/\\*\\.log |$T/*.maillog |" -e "s|[^ \"]*/rcptgate/smtpd\\.pid|$T/smtpd.pid|g" \
        "$LR" > "$T/lr.conf"
    sm_start
    sm_swaks --to u001@check.example --ehlo mail.sender.test --from a@sender.test --quit-after RCPT
    tl_like "$(cat "$SMTPD_LOG")" "connect from" "smtpd wrote its log_file (precondition)"
    "$LOGROTATE" -f -s "$T/logrotate.state" "$T/lr.conf" >"$T/lr.out" 2>&1
    tl_is "$?" 0 "logrotate -f rotated smtpd's log_file"
    sed 's/^/# /' "$T/lr.out"
    tl_ok "$(grep -q "connect from" "$SMTPD_LOG.1"; echo $?)" "the old lines are in smtpd.maillog.1"
    i=0; while ! grep -q "reloaded" "$SMTPD_LOG" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    old=$(grep -c "connect from" "$SMTPD_LOG.1")
    sm_swaks --to u002@check.example --ehlo mail.sender.test --from a@sender.test --quit-after RCPT
    tl_like "$(grep -c "connect from" "$SMTPD_LOG" 2>/dev/null)" "^[1-9]" \
        "after postrotate's HUP smtpd writes its new sessions to the new log_file"
    tl_is "$(grep -c "connect from" "$SMTPD_LOG.1")" "$old" "and no longer to the rotated one"
    sm_stop
else
    tl_ok 1 "logrotate is installed and etc/rcptgate.logrotate built"
fi

tl_cleanup
tl_done
