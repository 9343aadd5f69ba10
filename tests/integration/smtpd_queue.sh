#!/bin/sh
# smtpd_queue.sh - rcptgate-smtpd's queue manager, end to end
#
# A private rcptgate-smtpd with relay_mode = queue (short backoff and
# queue run delay) takes messages from swaks, answers 250 queued as ID,
# and delivers them from its spool to smtp-sink next hops started here:
#   - a next hop that is down, then up: deferred (logged, the file stays
#     in deferred/), then delivered, removed, the file gone;
#   - a 4 MB message streamed from the spool;
#   - a next hop answering 4xx, then 2xx;
#   - a next hop answering 5xx: bounced, and the report (a multipart/report)
#     delivered to the sender's route (a second sink as default_nexthop);
#   - the null sender's 5xx: no report;
#   - maximal_queue_lifetime (made short by a SIGHUP): expired, returned;
#   - destination_concurrency_limit = 1 (by SIGHUP): three messages to one
#     next hop go one at a time, over one connection (conn_use=2, 3);
#   - recovery: messages put into the spool (rg_spoolput) before smtpd
#     starts are delivered at start; what is queued when smtpd stops goes
#     out after a restart;
#   - `rcptgate queue flush` (the trigger FIFO) sends a message whose next
#     try is an hour away at once;
#   - delay_warning_time: one delay report, the message stays queued;
#   - SIGTERM in the middle of a delivery: the sink stores nothing
#     partial, the spool keeps the message, the next start delivers it;
#   - pflogsumm counts the deferred and bounced messages;
#   - the stats file holds the queue's size.
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"

PFLOGSUMM=${PFLOGSUMM:-$(command -v pflogsumm || echo /usr/sbin/pflogsumm)}
SPOOLPUT=${SPOOLPUT:-"$top_builddir/tests/tools/rg_spoolput"}

tl_init smtpd_queue
[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
[ -x "$SPOOLPUT" ] || tl_bail "rg_spoolput not built ($SPOOLPUT)"
tl_need_tool "$SMTP_SINK" smtp-sink
tl_need_tool "$SWAKS" swaks
tl_need_tool python3 python3
tl_need_tool "$PFLOGSUMM" pflogsumm
tl_shared_dir || tl_bail "no shared scratch directory"

# count NAME - messages the sink stored (smtp-sink leaves empty files for aborted sessions)
count() {
    find "$TS/$1" -type f -size +0 2>/dev/null | wc -l | tr -d ' '
}

# queue_id - the id of "250 2.0.0 Ok: queued as ID" in the last swaks transcript ("" none)
queue_id() {
    sed -n 's/^<- *250 .*queued as \([0-9A-Z]*\).*/\1/p' "$T/swaks.out" | tail -1
}

# send FROM TO - one message through smtpd; its queue id in QID
send() {
    sm_swaks --ehlo client.example.org --from "$1" --to "$2" \
        --header "Subject: queue test to $2" --body "queued for $2"
    QID=$(queue_id)
    # Without a queued message every later wait would only time out.
    [ -n "$QID" ] || tl_bail "no \"250 ... queued as ID\" for <$2>: $(tail -3 "$T/swaks.out" | tr '\n' ' ')"
}

# established PORT - a TCP connection to 127.0.0.1:PORT is open
established() {
    [ "$(connections "$1")" -gt 0 ]
}

# connections PORT - how many TCP connections smtpd has open to 127.0.0.1:PORT.
# Only smtpd's own sockets (by inode, from /proc/PID/fd) count: under a
# parallel make check another test's client may talk to the same port
# number on another loopback address.
connections() {
    ls -l "/proc/$SMTPD_PID/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' >"$T/inodes"
    awk -v p="0100007F:$(printf '%04X' "$1")" \
        'FNR == NR { mine[$1] = 1; next } $4 == "01" && $3 == p && ($10 in mine) { n++ } END { print n + 0 }' \
        "$T/inodes" /proc/net/tcp
}

# hup - SIGHUP smtpd and wait until it logs the reload done
hup() {
    _r=$(grep -c 'reloaded ' "$SMTPD_LOG")
    kill -HUP "$SMTPD_PID"
    _i=0
    until [ "$(grep -c 'reloaded ' "$SMTPD_LOG")" -gt "$_r" ]; do
        _i=$((_i + 1))
        [ $_i -gt 200 ] && tl_bail "smtpd did not reload"
        sleep 0.05
    done
}

# qfile ID - the queue file of ID, in deferred/ or hold/ ("" none)
qfile() {
    for _q in deferred hold; do
        [ -f "$T/queue/$_q/$1" ] && echo "$T/queue/$_q/$1"
    done
}

UP_PORT=$(sm_port)
SOFT_PORT=$((UP_PORT + 3))
HARD_PORT=$((UP_PORT + 5))
DSN_PORT=$((UP_PORT + 7))
REC_PORT=$((UP_PORT + 9))
SLOW_PORT=$((UP_PORT + 11))
DEAD_PORT=$((UP_PORT + 13))
CONC_PORT=$((UP_PORT + 15))
PRE_PORT=$((UP_PORT + 17))
FLUSH_PORT=$((UP_PORT + 19))
WARN_PORT=$((UP_PORT + 21))
GONE_PORT=$((UP_PORT + 23))

{
    tl_admin domain add up.test "smtp:[127.0.0.1]:$UP_PORT" &&
    tl_admin domain add soft.test "smtp:[127.0.0.1]:$SOFT_PORT" &&
    tl_admin domain add hard.test "smtp:[127.0.0.1]:$HARD_PORT" &&
    tl_admin domain add rec.test "smtp:[127.0.0.1]:$REC_PORT" &&
    tl_admin domain add slow.test "smtp:[127.0.0.1]:$SLOW_PORT" &&
    tl_admin domain add dead.test "smtp:[127.0.0.1]:$DEAD_PORT" &&
    tl_admin domain add conc.test "smtp:[127.0.0.1]:$CONC_PORT" &&
    tl_admin domain add pre.test "smtp:[127.0.0.1]:$PRE_PORT" &&
    tl_admin domain add flush.test "smtp:[127.0.0.1]:$FLUSH_PORT" &&
    tl_admin domain add warn.test "smtp:[127.0.0.1]:$WARN_PORT" &&
    tl_admin domain add gone.test "smtp:[127.0.0.1]:$GONE_PORT" &&
    for d in up.test soft.test hard.test rec.test slow.test dead.test conc.test pre.test flush.test warn.test \
        gone.test; do
        tl_admin static add "user@$d" || exit 1
    done
} >"$T/admin.out" 2>&1 || tl_bail "rcptgate admin could not set up the domains: $(cat "$T/admin.out")"

# Reports to outside senders go to the sink on DSN_PORT (the outbound route).
sm_init "relay_mode = queue" "minimal_backoff_time = 1s" "maximal_backoff_time = 2s" \
    "queue_run_delay = 1s" "relay_connect_timeout = 2s" "relay_timeout = 20s" \
    "stats_interval = 1s" "metrics_file = $T/smtpd.prom" "default_nexthop = smtp:[127.0.0.1]:$DSN_PORT"
sm_lsan
sm_sink dsn "$DSN_PORT" || tl_bail "smtp-sink (reports) did not start"

# ---------------------------------------------------------------- recovery at start
# Three messages in the spool before smtpd ever ran (one to six recipients:
# more than a transaction's first allocation).
sm_sink pre "$PRE_PORT" || tl_bail "smtp-sink (pre) did not start"
printf 'Subject: before the start\n\nput by rg_spoolput\n' |
    "$SPOOLPUT" -n 2 "$T/queue" sender@outside.test user@pre.test > "$T/pre.ids" 2>"$T/pre.err"
printf 'Subject: before the start, two\n\nput by rg_spoolput\n' |
    "$SPOOLPUT" "$T/queue" sender@outside.test user@pre.test other@pre.test r3@pre.test r4@pre.test \
        r5@pre.test r6@pre.test >> "$T/pre.ids" 2>>"$T/pre.err"
tl_is "$(wc -l < "$T/pre.ids" | tr -d ' ')/$(ls "$T/queue/deferred" | wc -l | tr -d ' ')" "3/3" \
    "three messages queued before smtpd starts"
sm_start_or_bail
sm_wait_sink "$TS/pre" 3 15
tl_is "$(count pre)" 3 "smtpd recovers them at start: the sink gets three messages"
for _id in $(cat "$T/pre.ids"); do
    sm_wait_log "$_id: removed" 5 || break
done
tl_is "$(grep -c "to=<[a-z0-9]*@pre.test>, .*status=sent" "$SMTPD_LOG")/$(ls "$T/queue/deferred" | wc -l | tr -d ' ')" "8/0" \
    "eight recipients logged as sent, the deferred queue is empty"

# ---------------------------------------------------------------- one smtpd per spool
# A second smtpd on the same queue_directory (its own port, pid and log)
# must neither deliver the first one's queue nor clear its incoming/: it
# relays as a proxy only, and says why.
: > "$T/queue/incoming/SECONDTEST"
sed -e "s|^listen = 127.0.0.1:$SMTPD_PORT\$|listen = 127.0.0.1:$(sm_port)|" -e '/ submission$/d' \
    -e "s|^pid_file = .*|pid_file = $T/smtpd2.pid|" -e "s|^stats_file = .*|stats_file = $T/smtpd2.stats|" \
    -e "s|^log_file = .*|log_file = $T/smtpd2.maillog|" "$CONF" > "$T/second.conf"
"$RG_SMTPD" -c "$T/second.conf" -f 2>>"$T/smtpd2.stderr" &
SECOND_PID=$!
tl_pids="$tl_pids $SECOND_PID"
tl_wait_grep "in use by another rcptgate-smtpd" "$T/smtpd2.maillog" 10
tl_is "$?" 0 "a second smtpd on the same spool says it is in use by another and relays as a proxy only"
tl_is "$(ls "$T/queue/incoming")" "SECONDTEST" "... and leaves the first one's incoming/ alone"
kill -TERM "$SECOND_PID" 2>/dev/null
wait "$SECOND_PID" 2>/dev/null
rm -f "$T/queue/incoming/SECONDTEST"
cat "$T/smtpd2.stderr" >> "$T/smtpd.stderr" 2>/dev/null

# ---------------------------------------------------------------- a damaged queue file
# Not what smtpd writes (here: cut short): set aside in corrupt/, as
# Postfix does, never tried again; nothing else is lost.
printf 'rcptgate-queue 1\nwarned 0\nsize 00000000000000000100\nid 0DAMAGED\n' > "$T/queue/deferred/0DAMAGED"
tl_admin queue flush >/dev/null 2>&1
sm_wait_log "0DAMAGED: damaged queue file moved to $T/queue/corrupt/: .*truncated envelope" 10
tl_ok $? "a damaged queue file is moved to corrupt/, and the log says why"
tl_is "$(ls "$T/queue/deferred" | wc -l | tr -d ' ') $(ls "$T/queue/corrupt")" "0 0DAMAGED" \
    "... it left deferred/ for corrupt/"

# ---------------------------------------------------------------- down, then up
send sender@outside.test user@up.test
ID1=$QID
tl_like "$ID1" '^[0-9A-Z]+$' "next hop down: the client hears 250 queued as ID"
sm_wait_log "$ID1: to=<user@up.test>, relay=none, .*dsn=4\.4\.1, status=deferred \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:$UP_PORT: " 15
tl_ok $? "the try is logged as deferred (connect to ...)"
tl_is "$(qfile "$ID1" | sed 's|.*/queue/||')" "deferred/$ID1" "the message waits in deferred/"
sm_sink up "$UP_PORT" || tl_bail "smtp-sink (up) did not start"
sm_wait_log "$ID1: to=<user@up.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$UP_PORT, .*dsn=2\.0\.0, status=sent \(250 " 15
tl_ok $? "next hop up: the message is delivered (status=sent)"
sm_wait_log "$ID1: removed" 5
tl_ok $? "... and removed"
tl_is "$(count up)/$(qfile "$ID1")" "1/" "the sink holds it, the queue file is gone"
grep -l "queued for user@up.test" "$TS"/up/* >/dev/null 2>&1
tl_ok $? "the sink has the body as sent"

# ---------------------------------------------------------------- a large message
# 4 MB read from the spool in pieces while the connection keeps up (smtp_relay_on_drain).
{
    printf 'Subject: large\n\n'
    awk 'BEGIN { for (i = 0; i < 50000; i++) printf "line %06d ..........................................................................\n", i; print "the last line" }'
} > "$T/large.txt"
BIG=$("$SPOOLPUT" "$T/queue" sender@outside.test user@up.test < "$T/large.txt")
tl_admin queue flush >/dev/null 2>&1
sm_wait_log "$BIG: to=<user@up.test>, .*status=sent" 20
tl_ok $? "a 4 MB message from the spool is delivered"
_f=$(grep -l '^the last line' "$TS"/up/* 2>/dev/null | head -1)
tl_ok "$([ -n "$_f" ] && [ "$(wc -c < "$_f")" -gt 4000000 ] && grep -c '^line [0-9]' "$_f" | grep -qx 50000; echo $?)" \
    "... whole: 50,000 lines and the last one at the sink"

# ---------------------------------------------------------------- 4xx, then 2xx
sm_sink soft "$SOFT_PORT" -r RCPT || tl_bail "smtp-sink (soft) did not start"
send sender@outside.test user@soft.test
ID2=$QID
sm_wait_log "$ID2: to=<user@soft.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$SOFT_PORT, .*dsn=4\.[0-9.]+, status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 4[0-9][0-9] .*\(in reply to RCPT TO command\)\)" 15
tl_ok $? "next hop 4xx: deferred, with the host's words"
tl_is "$(count soft)" 0 "the soft-refusing sink stored nothing"
sm_unsink soft
sm_sink soft2 "$SOFT_PORT" || tl_bail "smtp-sink (soft2) did not start"
sm_wait_log "$ID2: to=<user@soft.test>, .*status=sent" 15
tl_ok $? "then 2xx: delivered"
sm_wait_log "$ID2: removed" 5
tl_is "$(count soft2)/$(qfile "$ID2")" "1/" "the sink holds it, the queue file is gone"

# ---------------------------------------------------------------- 5xx: returned to the sender
sm_sink hard "$HARD_PORT" -f RCPT || tl_bail "smtp-sink (hard) did not start"
send sender@outside.test user@hard.test
ID3=$QID
sm_wait_log "$ID3: to=<user@hard.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$HARD_PORT, .*dsn=5\.[0-9.]+, status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 5[0-9][0-9] " 15
tl_ok $? "next hop 5xx: bounced"
sm_wait_log "$ID3: sender non-delivery notification: [0-9A-Z]+" 5
tl_ok $? "a non-delivery report is made"
DSNID=$(sed -n "s/.*$ID3: sender non-delivery notification: \([0-9A-Z]*\).*/\1/p" "$SMTPD_LOG" | head -1)
sm_wait_sink "$TS/dsn" 1 15
tl_is "$(count dsn)" 1 "the report reaches the sender's route (default_nexthop)"
sm_wait_log "${DSNID:-none}: to=<sender@outside.test>, .*status=sent" 5
tl_ok $? "... logged as sent under its own id"
DSNFILE=$(find "$TS/dsn" -type f -size +0 | head -1)
grep -qi '^Content-Type: multipart/report; *report-type=delivery-status' "${DSNFILE:-/nonexistent}"
tl_ok $? "the report is a multipart/report (delivery-status)"
grep -qi '^Final-Recipient: rfc822; *user@hard.test' "${DSNFILE:-/nonexistent}"
tl_ok $? "it names the failed recipient"
sm_wait_log "$ID3: removed" 5
tl_is "$(qfile "$ID3")/$(count hard)" "/0" "the bounced message is removed; the refusing sink stored nothing"

# ---------------------------------------------------------------- the null sender
sm_swaks --ehlo client.example.org --from '<>' --to user@hard.test --body "a bounce of ours"
ID4=$(queue_id)
[ -n "$ID4" ] || tl_bail "no \"250 ... queued as ID\" for the null sender"
tl_like "$ID4" '^[0-9A-Z]+$' "null sender: queued"
sm_wait_log "$ID4: to=<user@hard.test>, .*status=bounced" 15
tl_ok $? "null sender: its 5xx is logged as bounced"
sm_wait_log "$ID4: removed" 5
tl_ok $? "... and the message removed"
tl_is "$(grep -c "$ID4: sender non-delivery notification" "$SMTPD_LOG")/$(count dsn)" "0/1" \
    "no report for the null sender (the report sink still holds one)"

# ---------------------------------------------------------------- stats
sleep 1.2
tl_like "$(grep '^queue_deferred ' "$T/smtpd.stats")" '^queue_deferred [0-9]+$' "the stats file has the queue's size"
tl_like "$(grep -c '^rcptgate_smtpd_queue_messages{daemon="smtpd",queue="\(deferred\|hold\)"} [0-9]*$\|^rcptgate_smtpd_queue_oldest_age_seconds{daemon="smtpd"} [0-9]*$' "$T/smtpd.prom")" '^3$' \
    "the metrics file has the queue's size (deferred, hold) and its oldest message's age"

# ---------------------------------------------------------------- lifetime
# Short lifetimes by SIGHUP: the running queue manager reads them at the next try.
sed -i 's/^relay_mode = queue$/relay_mode = queue\nmaximal_queue_lifetime = 3s/' "$CONF"
hup
send sender@outside.test user@dead.test
ID5=$QID
sm_wait_log "$ID5: to=<user@dead.test>, .*status=deferred" 15
tl_ok $? "next hop never up: deferred"
sm_wait_log "$ID5: from=<sender@outside.test>, status=expired, returned to sender" 20
tl_ok $? "after maximal_queue_lifetime: expired, returned to sender"
sm_wait_sink "$TS/dsn" 2 15
tl_is "$(count dsn)" 2 "the expiry report reaches the sender's route"
sm_wait_log "$ID5: removed" 5
tl_is "$(qfile "$ID5")" "" "the expired message is removed"
sed -i '/^maximal_queue_lifetime = 3s$/d' "$CONF"
hup

# ---------------------------------------------------------------- concurrency and reuse
# The sink waits 1 s before it answers DATA, so the three are queued before the first is done.
sm_sink conc "$CONC_PORT" -w 1 || tl_bail "smtp-sink (conc) did not start"
sed -i 's/^relay_mode = queue$/relay_mode = queue\ndestination_concurrency_limit = 1/' "$CONF"
hup
send sender@outside.test user@conc.test
C1=$QID
send sender@outside.test user@conc.test
C2=$QID
send sender@outside.test user@conc.test
C3=$QID
MAXC=0
_i=0
while [ "$(count conc)" -lt 3 ] && [ $_i -lt 400 ]; do
    _c=$(connections "$CONC_PORT")
    [ "$_c" -gt "$MAXC" ] && MAXC=$_c
    _i=$((_i + 1))
    sleep 0.05
done
tl_is "$(count conc)" 3 "destination_concurrency_limit = 1: three messages delivered"
_first_sent=$(grep -n "to=<user@conc.test>, .*status=sent" "$SMTPD_LOG" | head -1 | cut -d: -f1)
_last_active=$(grep -n "$C3: from=<sender@outside.test>, size=" "$SMTPD_LOG" | tail -1 | cut -d: -f1)
tl_ok "$([ -n "$_first_sent" ] && [ -n "$_last_active" ] && [ "$_last_active" -lt "$_first_sent" ]; echo $?)" \
    "... all three were queued before the first was delivered"
tl_is "$MAXC" 1 "... yet at most one connection to the next hop was open"
tl_like "$(grep -E "($C1|$C2|$C3): to=<user@conc.test>, .*status=sent" "$SMTPD_LOG" | grep -o 'conn_use=[0-9]*' | tr '\n' ' ')" \
    '^conn_use=2 conn_use=3 $' "... and one connection carried them (conn_use=2, 3)"
sed -i '/^destination_concurrency_limit = 1$/d' "$CONF"
hup

# ---------------------------------------------------------------- flush
sm_sink flush "$FLUSH_PORT" || tl_bail "smtp-sink (flush) did not start"
FID=$(printf 'Subject: flush me\n\nflushed\n' | "$SPOOLPUT" -t 3600 "$T/queue" sender@outside.test user@flush.test)
sleep 2.5
tl_is "$(count flush)/$(grep -c "$FID: " "$SMTPD_LOG")" "0/0" "a message due in an hour is left alone by the queue runs"
tl_admin queue flush >"$T/flush.out" 2>&1
tl_ok $? "rcptgate queue flush"
sm_wait_log "$FID: to=<user@flush.test>, .*status=sent" 10
tl_ok $? "... wakes smtpd through the trigger FIFO: delivered at once"
tl_is "$(count flush)" 1 "the sink got it"

# ---------------------------------------------------------------- a dead next hop
# Three messages for a next hop that refuses connections, one at a time:
# the first try marks it dead for minimal_backoff_time, and the other two
# are deferred at once without a connection of their own.
sed -i -e 's/^relay_mode = queue$/relay_mode = queue\ndestination_concurrency_limit = 1/' \
    -e 's/^minimal_backoff_time = 1s$/minimal_backoff_time = 20s/' "$CONF"
hup
printf 'Subject: to a dead next hop\n\nput by rg_spoolput\n' |
    "$SPOOLPUT" -n 3 "$T/queue" sender@outside.test user@gone.test > "$T/gone.ids" 2>"$T/gone.err"
tl_admin queue flush >/dev/null 2>&1
for _id in $(cat "$T/gone.ids"); do
    sm_wait_log "$_id: to=<user@gone.test>, .*status=deferred" 15 || break
done
tl_is "$(grep -c "to=<user@gone.test>, .*status=deferred" "$SMTPD_LOG")" 3 "a dead next hop: the three messages are deferred"
tl_is "$(grep -c "warning: connect to 127\.0\.0\.1\[127\.0\.0\.1\]:$GONE_PORT: Connection refused" "$SMTPD_LOG")" 1 \
    "... after one connection attempt"
tl_is "$(grep -c "next hop smtp:\[127\.0\.0\.1\]:$GONE_PORT marked dead for 20 s" "$SMTPD_LOG")" 1 \
    "... which marked the next hop dead for minimal_backoff_time"
tl_is "$(grep -c "to=<user@gone.test>, relay=none, .*dsn=4\.4\.1, status=deferred (delivery temporarily suspended: connect to 127\.0\.0\.1\[127\.0\.0\.1\]:$GONE_PORT: Connection refused)" "$SMTPD_LOG")" 2 \
    "... the other two deferred at once, saying why (as Postfix: delivery temporarily suspended)"
# The inside is back, and the postmaster flushes: as Postfix's flush, that
# forgets the dead mark (still 20 s to run), so all three go now.
sm_sink gone "$GONE_PORT" || tl_bail "smtp-sink (gone) did not start"
tl_admin queue flush >/dev/null 2>&1
for _id in $(cat "$T/gone.ids"); do
    sm_wait_log "$_id: to=<user@gone.test>, .*status=sent" 10 || break
done
tl_is "$(count gone)" 3 "flush after the next hop came back: the dead mark is forgotten, all three delivered at once"
sm_unsink gone
for _id in $(cat "$T/gone.ids"); do
    tl_admin queue delete "$_id" >/dev/null 2>&1
done
sed -i -e '/^destination_concurrency_limit = 1$/d' -e 's/^minimal_backoff_time = 20s$/minimal_backoff_time = 1s/' "$CONF"
hup

# ---------------------------------------------------------------- delay warning
# A message two hours old, its next hop down: one delay report, and it stays queued.
sed -i 's/^relay_mode = queue$/relay_mode = queue\ndelay_warning_time = 1h/' "$CONF"
hup
_before=$(count dsn)
WID=$(printf 'Subject: slow going\n\nwaiting\n' | "$SPOOLPUT" -a 7200 "$T/queue" sender@outside.test user@warn.test)
tl_admin queue flush >/dev/null 2>&1
sm_wait_log "$WID: sender delay notification: [0-9A-Z]+" 15
tl_ok $? "delay_warning_time: a delay report is made"
sm_wait_sink "$TS/dsn" $((_before + 1)) 15
tl_is "$(count dsn)" $((_before + 1)) "... and reaches the sender's route"
_w=$(find "$TS/dsn" -type f -size +0 -newer "$T/pre.ids" | xargs grep -l '^Action: delayed' 2>/dev/null | wc -l | tr -d ' ')
tl_is "$_w" 1 "... with Action: delayed"
sm_wait_log "$WID: to=<user@warn.test>, .*status=deferred" 10
tl_is "$(qfile "$WID" | sed 's|.*/queue/||')" "deferred/$WID" "the message stays queued"
tl_admin queue flush >/dev/null 2>&1
_i=0
until [ "$(grep -c "$WID: to=<user@warn.test>, .*status=deferred" "$SMTPD_LOG")" -ge 2 ] || [ $_i -gt 200 ]; do
    _i=$((_i + 1))
    sleep 0.05
done
tl_is "$(grep -c "$WID: to=<user@warn.test>, .*status=deferred" "$SMTPD_LOG")/$(grep -c "$WID: sender delay notification" "$SMTPD_LOG")" \
    "2/1" "tried again: still one warning only"
tl_admin queue delete "$WID" >/dev/null 2>&1
sed -i '/^delay_warning_time = 1h$/d' "$CONF"
hup

# ---------------------------------------------------------------- recovery after a stop
send sender@outside.test user@rec.test
ID6=$QID
sm_wait_log "$ID6: to=<user@rec.test>, .*status=deferred" 15
tl_ok $? "recovery: deferred while its next hop is down"
sm_stop
tl_is "$(qfile "$ID6" | sed 's|.*/queue/||')" "deferred/$ID6" "smtpd stopped: the message is in deferred/"
sm_sink rec "$REC_PORT" || tl_bail "smtp-sink (rec) did not start"
sm_start_or_bail
sm_wait_log "$ID6: to=<user@rec.test>, .*status=sent" 15
tl_ok $? "restarted: the queued message is delivered"
sm_wait_log "$ID6: removed" 5
tl_is "$(count rec)/$(qfile "$ID6")" "1/" "the sink holds it once, the queue file is gone"

# ---------------------------------------------------------------- SIGTERM mid-delivery
# The sink waits 30 s before it answers DATA: smtpd is stopped while it waits.
sm_sink slow "$SLOW_PORT" -w 30 || tl_bail "smtp-sink (slow) did not start"
send sender@outside.test user@slow.test
ID7=$QID
_i=0
until established "$SLOW_PORT" && grep -q "$ID7: from=<sender@outside.test>, size=" "$SMTPD_LOG"; do
    _i=$((_i + 1))
    [ $_i -gt 200 ] && break
    sleep 0.05
done
sleep 0.5
established "$SLOW_PORT"
tl_ok $? "a delivery to the slow sink is under way"
sm_stop
tl_is "$(grep -c "$ID7: to=<user@slow.test>" "$SMTPD_LOG")/$(count slow)" "0/0" \
    "SIGTERM cut it: no outcome logged, nothing stored at the sink"
tl_is "$(qfile "$ID7" | sed 's|.*/queue/||')" "deferred/$ID7" "the spool kept the message"
sm_unsink slow
sm_sink slow2 "$SLOW_PORT" || tl_bail "smtp-sink (slow2) did not start"
sm_start_or_bail
sm_wait_log "$ID7: to=<user@slow.test>, .*status=sent" 15
tl_ok $? "the next start delivers it"
sm_wait_log "$ID7: removed" 5
tl_is "$(count slow2)/$(qfile "$ID7")" "1/" "delivered once, the queue file is gone"
sm_stop

# ---------------------------------------------------------------- a queue locked at start
# Its lock held at start (an smtpd stopping, still draining its sessions):
# smtpd relays as a proxy, and takes the queue up once the lock is free.
printf 'Subject: locked\n\nput while the lock was held\n' |
    "$SPOOLPUT" "$T/queue" sender@outside.test locked@pre.test > "$T/locked.id" 2>>"$T/pre.err"
flock -n "$T/queue" sleep 3 &
LOCK_PID=$!
tl_pids="$tl_pids $LOCK_PID"
sleep 0.3
sm_start_or_bail
sm_wait_log "queue directory .* is in use by another rcptgate-smtpd" 5
tl_ok $? "the queue's lock held at start: smtpd says so and starts as a proxy"
wait "$LOCK_PID"
sm_wait_log "queue .*: opened; mail is queued and delivered again" 5
tl_ok $? "the lock freed: smtpd opens the queue within a second or two"
sm_wait_log "$(cat "$T/locked.id"): to=<locked@pre.test>, .*status=sent" 15
tl_ok $? "... and delivers what was queued before"
sm_stop

# ---------------------------------------------------------------- pflogsumm
"$PFLOGSUMM" --syslog-name=postfix-rcptgate "$SMTPD_LOG" >"$T/pflogsumm.out" 2>"$T/pflogsumm.err"
tl_ok $? "pflogsumm read smtpd's log"
DEFERRED=$(awk '$2 == "deferred" { print $1; exit }' "$T/pflogsumm.out")
BOUNCED=$(awk '$2 == "bounced" { print $1; exit }' "$T/pflogsumm.out")
DELIVERED=$(awk '$2 == "delivered" { print $1; exit }' "$T/pflogsumm.out")
echo "# pflogsumm: deferred=$DEFERRED bounced=$BOUNCED delivered=$DELIVERED"
# Deferred: up, soft, dead, the three gone, warn, rec; bounced: hard and the null sender's (an expiry is a report).
tl_is "$DEFERRED" 8 "pflogsumm counts the 8 deferred messages"
tl_is "$BOUNCED" 2 "pflogsumm counts the 2 bounced messages"
# Delivered: 8 recipients put before the start, up, large, soft, 3 conc, flush, the three gone after the flush, rec, slow,
# locked; 3 reports.
tl_is "$DELIVERED" 24 "pflogsumm counts the 24 deliveries (21 recipients, 3 reports)"

sm_sanitizer_check "no sanitizer report from rcptgate-smtpd"
tl_done
