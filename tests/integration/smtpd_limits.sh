#!/bin/sh
# smtpd_limits.sh - rcptgate-smtpd's time limits and its stats file
#
# session_timeout (a whole session, busy or idle, lasts at most that
# long), min_data_rate (a client trickling DATA is cut with 421 4.4.2 and
# nothing reaches the next hop, a real smtp-sink counted by its files),
# the stats file (written at start, rewritten periodically and at exit,
# counters that move with the sessions), and `-n` on the shipped sample
# configuration. Short timeouts keep the whole script under 20 s.
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"

tl_init smtpd_limits
[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
tl_need_tool "$SMTP_SINK" smtp-sink
tl_need_tool python3 python3

# ---------------------------------------------------------------- the sample configuration
# Everything in it is commented out (the defaults) except what we change:
# its user "rcptgate" need not exist on a test machine.
awk '/^\[/ { sec = $0 } sec == "[smtpd]" && /^#user = / { print "user ="; next } { print }' \
    "$top_srcdir/etc/rcptgate.conf.sample" > "$T/sample.conf"
tl_is "$(grep -c '^user =$' "$T/sample.conf")" 1 "sample: [smtpd] user overridden in a copy"
# -n also checks the directories smtpd writes: here, the test's.
printf '[store]\npath = %s/sample.db\n[smtpd]\npid_file = %s/sample.pid\nstats_file = %s/sample.stats\n' \
    "$T" "$T" "$T" >> "$T/sample.conf"
"$RG_SMTPD" -c "$T/sample.conf" -n > "$T/sample.out" 2>&1
tl_is "$?" 0 "sample: rcptgate-smtpd -n accepts etc/rcptgate.conf.sample"
sed -i 's/^#session_timeout = 1h$/session_timeout = soon/' "$T/sample.conf"
"$RG_SMTPD" -c "$T/sample.conf" -n > "$T/sample.out" 2>&1
tl_is "$?" 78 "sample: and refuses it with a bad value (78)"

SINK_PORT=$(( $(sm_port) + 2 ))
# Phase 1: a session may last 2 s; an idle client would otherwise get 5 s.
sm_init "command_timeout = 5s" "session_timeout = 2s" "min_data_rate = 0" "stats_interval = 2s" \
    "max_connections = 500" "queue_active_limit = 100"
sm_sink_start || tl_bail "smtp-sink did not start"
{ tl_admin domain add example.com "smtp:[127.0.0.1]:$SINK_PORT" &&
    tl_admin static add user@example.com; } >"$T/admin.out" 2>&1 || tl_bail "store setup: $(cat "$T/admin.out")"

sm_lsan
# Open files: smtpd started under a soft limit of 256 raises it to 65536
# (500 sessions and 100 queued messages need less: 3 * 600 + 64), as far
# as the hard limit allows.
FD_NEED=65536
FD_HARD=$(ulimit -Hn)
[ "$FD_HARD" != unlimited ] && [ "$FD_HARD" -lt "$FD_NEED" ] && FD_NEED=$FD_HARD
ulimit -Sn 256
sm_start_or_bail
tl_is "$(awk '/^Max open files/ { print $4 }' "/proc/$SMTPD_PID/limits")" "$FD_NEED" \
    "a soft open-files limit of 256 is raised (to 65536, or the hard limit if lower)"
HOST=mx.gateway.test
EHLO='>EHLO client.example.net\r\n'

# stats_value NAME [FILE] - one counter of the stats file
stats_value() {
    sed -n "s/^$1 //p" "${2:-$T/smtpd.stats}"
}

# ---------------------------------------------------------------- stats at start
i=0
while [ ! -s "$T/smtpd.stats" ] && [ $i -lt 40 ]; do
    sleep 0.05
    i=$((i + 1))
done
cp "$T/smtpd.stats" "$T/stats.0" 2>/dev/null
tl_is "$(stats_value pid "$T/stats.0")" "$SMTPD_PID" "stats: written at start, with smtpd's pid"
tl_is "$(stats_value connections_total "$T/stats.0")|$(stats_value timeouts "$T/stats.0")|$(stats_value messages "$T/stats.0")" \
    "0|0|0" "stats: counters start at 0"
tl_like "$(stats_value updated "$T/stats.0")" "^[0-9]{10}$" "stats: updated is a unix time"
UPDATED0=$(stats_value updated "$T/stats.0")
START=$(date +%s)

# ---------------------------------------------------------------- session_timeout
# A busy client (a NOOP every 0.4 s, never idle for command_timeout) and
# an idle one, side by side: both are sent away after about 2 s.
set -- '<' "$EHLO" '<'
i=0
while [ $i -lt 12 ]; do
    set -- "$@" '~0.4' '>NOOP\r\n' '<'
    i=$((i + 1))
done
$SMTPCHAT -t 8 "$SMTPD_PORT" "$@" end > "$T/busy.out" 2>&1 &
BUSY=$!
t0=$(date +%s%N)
sm_chat -t 8 '<' "$EHLO" '<' end
t1=$(date +%s%N)
wait "$BUSY"
tl_is "$(sm_line 9)" "421 4.4.2 $HOST Error: timeout exceeded" "session_timeout: an idle client hears 421 4.4.2"
tl_is "$(sm_line 10)" "CLOSED" "session_timeout: the idle client is disconnected"
ms=$(( (t1 - t0) / 1000000 ))
tl_ok "$([ $ms -ge 1800 ] && [ $ms -lt 4000 ] && echo 0 || echo 1)" \
    "session_timeout: the idle client goes after 2 s, not command_timeout's 5 s (${ms} ms)"
n=$(grep -c '^250 2.0.0 Ok$' "$T/busy.out")
tl_ok "$([ "$n" -ge 3 ] && [ "$n" -le 6 ] && echo 0 || echo 1)" "session_timeout: the busy client's NOOPs are answered for 2 s ($n)"
tl_is "$(grep -v '^250' "$T/busy.out" | sed -n '2p')" "421 4.4.2 $HOST Error: timeout exceeded" \
    "session_timeout: then the busy client hears 421 4.4.2"
tl_is "$(tail -1 "$T/busy.out")" "CLOSED" "session_timeout: and is disconnected"
tl_like "$(grep 'timeout after NOOP' "$SMTPD_LOG" | tail -1)" "timeout after NOOP from unknown\\[127\\.0\\.0\\.1\\]$" \
    "log: timeout after NOOP"
tl_like "$(grep 'timeout after EHLO' "$SMTPD_LOG" | tail -1)" "timeout after EHLO from unknown\\[127\\.0\\.0\\.1\\]$" \
    "log: timeout after EHLO"

# A short session is not touched by it.
sm_chat '<' "$EHLO" '<' '>NOOP\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 10)" "221 2.0.0 Bye" "session_timeout: a short session ends normally"

# ---------------------------------------------------------------- min_data_rate
# Phase 2, by reload: 100 bytes/s, command_timeout 1 s; the data phase may
# last 1 s + size / 100 bytes/s.
sed -i -e 's/^command_timeout = 5s$/command_timeout = 1s/' -e 's/^session_timeout = 2s$/session_timeout = 1h/' \
    -e 's/^min_data_rate = 0$/min_data_rate = 100/' "$CONF"
reloads=$(grep -c 'reloaded' "$SMTPD_LOG")
kill -HUP "$SMTPD_PID"
i=0
while [ "$(grep -c 'reloaded' "$SMTPD_LOG")" = "$reloads" ] && [ $i -lt 100 ]; do
    sleep 0.05
    i=$((i + 1))
done
tl_ok "$([ $i -lt 100 ] && echo 0 || echo 1)" "reload with the data rate settings"

# A message at a good pace (200 bytes every 0.4 s, 2 s in all) is relayed.
set -- '<' "$EHLO" '<' '>MAIL FROM:<sender@sender.test>\r\n' '<' '>RCPT TO:<user@example.com>\r\n' '<' \
    '>DATA\r\n' '<' '>Subject: steady\r\n\r\n'
LINE=$(printf '%0198d' 0)
i=0
while [ $i -lt 5 ]; do
    set -- "$@" '~0.4' ">$LINE\\r\\n"
    i=$((i + 1))
done
sm_chat "$@" '>.\r\n' '<' '>QUIT\r\n' '<'
sleep 0.3
tl_like "$(sm_line 12)" "^250 " "min_data_rate: a message above the rate, longer than command_timeout, is accepted"
tl_is "$(sm_sink_count)" 1 "min_data_rate: it reached the sink"

# A trickle: 2 bytes every 0.25 s (8 bytes/s), never idle for
# command_timeout, 24 bytes in all, then the final dot. The client reads
# only at the end: smtpd's log says how far it got.
set -- '<' "$EHLO" '<' '>MAIL FROM:<sender@sender.test>\r\n' '<' '>RCPT TO:<user@example.com>\r\n' '<' \
    '>DATA\r\n' '<'
i=0
while [ $i -lt 12 ]; do
    set -- "$@" '>ab' '~0.25'
    i=$((i + 1))
done
sm_chat -t 6 "$@" '>\r\n.\r\n' end
tl_is "$(sm_line 11)" "354 End data with <CR><LF>.<CR><LF>" "min_data_rate: DATA 354"
tl_is "$(sm_line 12)" "421 4.4.2 $HOST Error: timeout exceeded" "min_data_rate: a trickle is cut with 421 4.4.2"
tl_is "$(sm_line 13)" "CLOSED" "min_data_rate: and disconnected"
tl_like "$(grep 'timeout after DATA' "$SMTPD_LOG" | tail -1)" \
    "timeout after DATA \\([0-9]+ bytes\\) from unknown\\[127\\.0\\.0\\.1\\]$" "log: timeout after DATA (N bytes)"
n=$(grep 'timeout after DATA' "$SMTPD_LOG" | tail -1 | sed -E 's/.*DATA \(([0-9]+) bytes\).*/\1/')
tl_ok "$([ "${n:-99}" -ge 6 ] && [ "${n:-99}" -le 16 ] && echo 0 || echo 1)" \
    "min_data_rate: cut after about 1 s + size / rate, mid-trickle ($n of 24 bytes)"
sleep 0.5
tl_is "$(sm_sink_count)" 1 "min_data_rate: nothing of the trickled message reached the sink"

# ---------------------------------------------------------------- stats moving
# One rejected recipient and one protocol error for the counters.
sm_chat '<' "$EHLO" '<' '>MAIL FROM:<sender@sender.test>\r\n' '<' '>RCPT TO:<nobody@example.com>\r\n' '<' \
    '>QUIT\r\n' '<'
tl_like "$(sm_line 10)" "^550 5\\.1\\.1 " "an unknown recipient: 550 5.1.1"
sm_chat '<' '>NOOP\n' '<' end
tl_like "$(sm_line 2)" "^521 5\\.5\\.2 " "a bare LF: 521"

# The periodic rewrite (stats_interval 2s): wait for it to show all 7 sessions.
i=0
while [ "$(stats_value connections_total)" != 7 ] && [ $i -lt 60 ]; do
    sleep 0.1
    i=$((i + 1))
done
cp "$T/smtpd.stats" "$T/stats.1"
tl_ok "$([ "$(stats_value updated "$T/stats.1")" -gt "$UPDATED0" ] && echo 0 || echo 1)" \
    "stats: rewritten periodically while smtpd runs ($(( $(date +%s) - START )) s)"
tl_is "$(stats_value pid "$T/stats.1")" "$SMTPD_PID" "stats: same pid"
tl_is "$(stats_value connections_total "$T/stats.1")" 7 "stats: connections_total counts every session (7)"
tl_is "total $(stats_value connections_total "$T/stats.1"), current $(stats_value connections_current "$T/stats.1")" \
    "total 7, current 0" "stats: connections_current is 0 when all have gone"
tl_is "$(stats_value timeouts "$T/stats.1")" 3 "stats: timeouts (session x2, data rate x1)"
tl_is "$(stats_value messages "$T/stats.1")" 1 "stats: messages relayed"
tl_is "$(stats_value rcpt_ok "$T/stats.1")" 2 "stats: rcpt_ok"
tl_is "$(stats_value rcpt_rejected "$T/stats.1")" 1 "stats: rcpt_rejected"
tl_is "$(stats_value protocol_errors "$T/stats.1")" 1 "stats: protocol_errors (the bare LF)"
tl_is "$(stats_value store "$T/stats.1")" open "stats: the store is open"
tl_is "stats file $([ -s "$T/smtpd.stats" ] && echo written || echo missing), temporary files $(find "$T" -maxdepth 1 -name 'smtpd.stats.tmp' | wc -l | tr -d ' ')" \
    "stats file written, temporary files 0" "stats: no temporary file left"
tl_admin stats > "$T/admin.stats" 2>&1
tl_like "$(grep '^smtpd:' "$T/admin.stats")" "^smtpd: +pid $SMTPD_PID, started .*, updated [0-9T:Z-]+$" \
    "rcptgate stats: names smtpd's pid, not stale"
tl_like "$(cat "$T/admin.stats")" "recipients: +2 accepted, 1 rejected" "rcptgate stats: smtpd's recipient counters"
tl_like "$(cat "$T/admin.stats")" "messages: +1 relayed" "rcptgate stats: smtpd's messages"

# And at exit.
sm_chat '<' '>QUIT\r\n' '<'
sm_stop
tl_is "$(stats_value connections_total)" 8 "stats: written again at exit"
tl_admin stats > "$T/admin.stats" 2>&1
tl_like "$(grep '^smtpd:' "$T/admin.stats")" "STALE: its process is gone" "rcptgate stats: a stopped smtpd is shown as stale"
printf '[smtpd]\nstats_interval = often\n' > "$T/bad.conf"
"$RG_ADMIN" -c "$T/bad.conf" -n 2>"$T/bad.err"
tl_is $? 78 "rcptgate -n checks [smtpd] too"
tl_like "$(cat "$T/bad.err")" "bad.conf:2" "rcptgate -n names the line of a bad [smtpd] key"
sm_sanitizer_check "no sanitizer reports"

tl_done
