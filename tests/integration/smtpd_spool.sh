#!/bin/sh
# smtpd_spool.sh - rcptgate-smtpd's relay modes: queue and proxy-then-queue
#
# A real client (swaks, smtpchat) talks to rcptgate-smtpd; the next hops
# are smtp-sink processes started here (plain, without DSN, refusing
# RCPT, DATA or the final dot softly or hard) and a port nobody listens
# on. What each case checks is on both sides: the client's replies (250
# only when the next hop said 250 or the spool holds the message) and
# what the sink and the spool really hold, the spool read back through
# lib/spool.h (tests/tools/rg_spoolcat): the envelope (sender, recipients
# and their states, DSN parameters, the client) and the exact bytes.
# A small Python next hop (tests/tools/smtp_picky.py) takes one recipient
# and defers another in one transaction.
# Then queue_max_messages = 1 (proxy-then-queue then relays as a proxy:
# the next hop's own 250 or 4xx), and a spool on a 1 MB tmpfs in a private
# mount namespace (root only): 452 4.3.1 before DATA, 451 for a message
# that does not fit, and no file left behind.
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"

SPOOLCAT=${SPOOLCAT:-"$top_builddir/tests/tools/rg_spoolcat"}
SPOOLPUT=${SPOOLPUT:-"$top_builddir/tests/tools/rg_spoolput"}

tl_init smtpd_spool
[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
[ -x "$SPOOLCAT" ] || tl_bail "rg_spoolcat not built ($SPOOLCAT)"
[ -x "$SPOOLPUT" ] || tl_bail "rg_spoolput not built ($SPOOLPUT)"
tl_need_tool "$SMTP_SINK" smtp-sink
tl_need_tool "$SWAKS" swaks
tl_need_tool python3 python3

# count NAME - messages a sink stored (smtp-sink leaves empty files for aborted sessions)
count() {
    find "$TS/$1" -type f -size +0 | wc -l | tr -d ' '
}

# queued [DIR] - messages in the spool's deferred/ (through lib/spool.h)
queued() {
    "$SPOOLCAT" "${1:-$T/queue}" | wc -l | tr -d ' '
}

# qid - the queue id of the last swaks transcript's "queued as" reply, "" if none
qid() {
    sed -n 's/^<- *250 2\.0\.0 Ok: queued as \([0-9A-Z]*\)$/\1/p' "$T/swaks.out" | tail -1
}

# final - the server's last reply before QUIT's (the answer to the message), from swaks
final() {
    grep -E '^(<-|<\*\*) ' "$T/swaks.out" | grep -v ' 221 ' | tail -1 | sed -E 's/^(<-|<\*\*) +//'
}

# send TO [SWAKS-ARGS...] - one message from sender@client.test to TO
send() {
    _to=$1
    shift
    sm_swaks --ehlo client.example.org --from sender@client.test --to "$_to" \
        --header "Subject: spool test" --body "body of a message to $_to" "$@"
}

DEAD_PORT=$(sm_port)
SINK_PORT=$(( $(sm_port) + 2 ))
sm_init "relay_mode = proxy-then-queue" "relay_timeout = 3s" "relay_connect_timeout = 2s" \
    "minimal_backoff_time = 300s"
sm_lsan
sm_sink_start || tl_bail "smtp-sink did not start"
sm_sink nodsn "" -N || tl_bail "smtp-sink (no DSN) did not start"
sm_sink soft "" -r RCPT || tl_bail "smtp-sink (soft RCPT) did not start"
sm_sink hard "" -f RCPT || tl_bail "smtp-sink (hard RCPT) did not start"
sm_sink datasoft "" -r DATA || tl_bail "smtp-sink (soft DATA) did not start"
sm_sink dothard "" -f . || tl_bail "smtp-sink (hard dot) did not start"
sm_sink dotsoft "" -r . || tl_bail "smtp-sink (soft dot) did not start"
sm_picky || tl_bail "smtp_picky.py did not start"

{
    tl_admin domain add up.test "smtp:[127.0.0.1]:$SINK_PORT" &&
    tl_admin domain add nodsn.test "smtp:[127.0.0.1]:$nodsn_PORT" &&
    tl_admin domain add down.test "smtp:[127.0.0.1]:$DEAD_PORT" &&
    tl_admin domain add soft.test "smtp:[127.0.0.1]:$soft_PORT" &&
    tl_admin domain add hard.test "smtp:[127.0.0.1]:$hard_PORT" &&
    tl_admin domain add datasoft.test "smtp:[127.0.0.1]:$datasoft_PORT" &&
    tl_admin domain add dothard.test "smtp:[127.0.0.1]:$dothard_PORT" &&
    tl_admin domain add dotsoft.test "smtp:[127.0.0.1]:$dotsoft_PORT" &&
    tl_admin domain add q.test "smtp:[127.0.0.1]:$DEAD_PORT" --relay-mode=queue &&
    tl_admin domain add qup.test "smtp:[127.0.0.1]:$SINK_PORT" --relay-mode=queue &&
    tl_admin domain add proxy.test "smtp:[127.0.0.1]:$DEAD_PORT" --relay-mode=proxy &&
    tl_admin domain add picky.test "smtp:[127.0.0.1]:$PICKY_PORT" &&
    tl_admin domain add qpicky.test "smtp:[127.0.0.1]:$PICKY_PORT" --relay-mode=queue &&
    tl_admin static add slowdot@qpicky.test &&
    tl_admin static add defer1@picky.test && tl_admin static add refuse1@picky.test &&
    tl_admin static add bare1@picky.test &&
    tl_admin static add slowdot@picky.test &&
    for d in up.test nodsn.test down.test soft.test hard.test datasoft.test dothard.test dotsoft.test \
        q.test qup.test proxy.test picky.test; do
        tl_admin static add "user@$d" && tl_admin static add "other@$d" || exit 1
    done
} >"$T/admin.out" 2>&1 || tl_bail "rcptgate admin could not set up the domains: $(cat "$T/admin.out")"

# ---------------------------------------------------------------- the per-domain relay mode
tl_admin domain add bad.test --relay-mode=quene >"$T/out" 2>&1
tl_is "$?" 1 "domain add --relay-mode with an unknown mode is refused"
tl_admin domain list >"$T/out" 2>&1
tl_is "$(grep -E '^(q|proxy|up)\.test' "$T/out" | cut -f1,4 | tr '\t\n' ' ')" \
    "proxy.test proxy q.test queue up.test - " "domain list shows each domain's relay mode (- for the default)"
tl_admin query user@q.test >"$T/out" 2>&1
tl_like "$(grep 'relay mode' "$T/out")" '^relay mode: +queue$' "rcptgate query shows the domain's relay mode"

sm_start_or_bail

# ---------------------------------------------------------------- queue mode: our 250, the spool has it whole
# DSN parameters, exact bytes (a dot-stuffed line, an 8-bit byte): through smtpchat, as sent
sm_chat '<' '>EHLO client.example.org\r\n' '<' \
    '>MAIL FROM:<sender@client.test> RET=HDRS ENVID=env+2Bid1 BODY=8BITMIME\r\n' '<' \
    '>RCPT TO:<user@q.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+40q.test\r\n' '<' \
    '>RCPT TO:<other@q.test> NOTIFY=NEVER\r\n' '<' '>DATA\r\n' '<' \
    '>Subject: queued\r\n\r\nline one\r\n..a dot-stuffed line\r\n8bit: \xe9\r\n.\r\n' '<' '>QUIT\r\n' '<'
tl_like "$(grep -c '^250-DSN$' "$T/chat.out")" '^1$' "EHLO offers DSN"
tl_is "$(grep -E '^(250 2\.1\.|354|250 2\.0\.0)' "$T/chat.out" | cut -c1-9 | tr '\n' ' ')" \
    "250 2.1.0 250 2.1.5 250 2.1.5 354 End d 250 2.0.0 " "queue mode: MAIL, two RCPTs, DATA, dot all answered by us"
Q1=$(sed -n 's/^250 2\.0\.0 Ok: queued as \([0-9A-Z]*\)$/\1/p' "$T/chat.out")
tl_like "$Q1" '^[0-9A-F]{8,}$' "queue mode: 250 2.0.0 Ok: queued as ID"
"$SPOOLCAT" "$T/queue" "$Q1" >"$T/env.out" 2>&1
tl_ok "$?" "the spool holds deferred/$Q1"
tl_is "$(grep -E '^(id|sender|envid|ret) ' "$T/env.out" | tr '\n' '|')" \
    "id $Q1|sender sender@client.test|envid env+2Bid1|ret 2|" "envelope: id, sender, ENVID, RET=HDRS"
tl_like "$(grep '^params ' "$T/env.out")" 'BODY=8BITMIME' "envelope: the MAIL parameters to pass on"
tl_is "$(grep '^rcpt ' "$T/env.out" | tr '\n' '|')" \
    "rcpt T user@q.test 6 rfc822;user+40q.test|rcpt T other@q.test 1 -|" \
    "envelope: both recipients TODO, with NOTIFY bits and ORCPT"
tl_like "$(grep '^client ' "$T/env.out")" '^client unknown 127\.0\.0\.1 [0-9]+ client\.example\.org ESMTP -$' \
    "envelope: the client's XFORWARD facts (name, addr, port, helo, proto)"
arr=$(sed -n 's/^arrival //p' "$T/env.out")
now=$(date +%s)
tl_is "$([ "${arr:-0}" -le "$now" ] && [ "${arr:-0}" -gt $((now - 120)) ] && echo recent)" recent \
    "envelope: the arrival time"
"$SPOOLCAT" -b "$T/queue" "$Q1" >"$T/body.out" 2>&1
printf 'Subject: queued\r\n\r\nline one\r\n..a dot-stuffed line\r\n8bit: \351\r\n' >"$T/body.want"
tl_like "$(head -1 "$T/body.out")" "^Received: from client\\.example\\.org \\(unknown \\[127\\.0\\.0\\.1\\]\\)" \
    "stored bytes start with our Received: header"
tl_is "$(sed '1,/^	by /d' "$T/body.out" | od -An -c | tr -s ' \n' ' ')" \
    "$(od -An -c "$T/body.want" | tr -s ' \n' ' ')" "stored bytes: the message exactly as on the wire (CRLF, dot-stuffed, no final dot)"
tl_like "$(grep "$Q1: from=<sender@client.test>" "$SMTPD_LOG")" 'nrcpt=2 \(queue active\)' \
    "log: qmgr's from= line under the spool's id"
tl_like "$(grep "$Q1: client=" "$SMTPD_LOG")" "$Q1: client=unknown\\[127\\.0\\.0\\.1\\]" \
    "log: the session's client= line has the same id"

# queue mode, next hop up: still ours, still queued (no downstream session at all)
before=$(count sink)
send user@qup.test
QUP=$(qid)
tl_like "$(final)" '^250 2\.0\.0 Ok: queued as [0-9A-F]+$' "queue mode with the next hop up: our 250 queued as ID"
tl_like "$(grep -c "$QUP: client=" "$SMTPD_LOG")" '^1$' "... under our own queue id (not the next hop's)"
# the queue manager delivers it (due now); wait for that, so later spool counts are not racing it
i=0
while [ "$(count sink)" -le "$before" ] && [ $i -lt 200 ]; do
    sleep 0.05
    i=$((i + 1))
done
i=0
while "$SPOOLCAT" "$T/queue" "$QUP" >/dev/null 2>&1 && [ $i -lt 200 ]; do
    sleep 0.05
    i=$((i + 1))
done
tl_is "sink +$(($(count sink) - before)), in the spool: $("$SPOOLCAT" "$T/queue" "$QUP" >/dev/null 2>&1 && echo yes || echo no)" \
    "sink +1, in the spool: no" "... then delivered from the queue and removed"

# ---------------------------------------------------------------- proxy-then-queue, next hop up
sq=$(queued)
before=$(count sink)
send user@up.test
tl_like "$(final)" '^250 2\.0\.0 Ok' "proxy-then-queue, next hop up: the next hop's 250"
tl_is "sink $(($(count sink) - before)), spool $(($(queued) - sq))" "sink 1, spool 0" \
    "... the sink has it, the spool copy was dropped"
tl_is "$(grep -c '^X-Rcpt-Args: <user@up.test>$' "$(ls -t "$TS"/sink/* | head -1)")" 1 \
    "no DSN parameters given, none passed on"

# DSN parameters pass on to a next hop that offers DSN, and are dropped for one that does not
sm_chat '<' '>EHLO client.example.org\r\n' '<' '>MAIL FROM:<sender@client.test> RET=FULL ENVID=e1\r\n' '<' \
    '>RCPT TO:<user@up.test> NOTIFY=DELAY ORCPT=rfc822;user@up.test\r\n' '<' '>DATA\r\n' '<' \
    '>Subject: dsn\r\n\r\nx\r\n.\r\n' '<' '>QUIT\r\n' '<'
f=$(ls -t "$TS"/sink/* | head -1)
tl_is "$(grep -E '^X-(Mail|Rcpt)-Args' "$f" | tr '\n' '|')" \
    "X-Mail-Args: <sender@client.test> RET=FULL ENVID=e1|X-Rcpt-Args: <user@up.test> NOTIFY=DELAY ORCPT=rfc822;user@up.test|" \
    "RET, ENVID, NOTIFY, ORCPT passed on to a next hop offering DSN"
sm_chat '<' '>EHLO client.example.org\r\n' '<' '>MAIL FROM:<sender@client.test> RET=FULL ENVID=e1\r\n' '<' \
    '>RCPT TO:<user@nodsn.test> NOTIFY=DELAY ORCPT=rfc822;user@nodsn.test\r\n' '<' '>DATA\r\n' '<' \
    '>Subject: dsn\r\n\r\nx\r\n.\r\n' '<' '>QUIT\r\n' '<'
f=$(ls -t "$TS"/nodsn/* 2>/dev/null | head -1)
tl_is "$(grep -c '^250 2\.0\.0' "$T/chat.out") $(grep -E '^X-(Mail|Rcpt)-Args' "$f" 2>/dev/null | grep -c -E 'RET|ENVID|NOTIFY|ORCPT')" \
    "1 0" "... and dropped silently for one that does not (the message still goes)"
sm_chat '<' '>EHLO client.example.org\r\n' '<' '>MAIL FROM:<sender@client.test> RET=PART\r\n' '<' \
    '>MAIL FROM:<sender@client.test> ENVID=a+zz\r\n' '<' '>MAIL FROM:<sender@client.test>\r\n' '<' \
    '>RCPT TO:<user@up.test> NOTIFY=NEVER,FAILURE\r\n' '<' '>RCPT TO:<user@up.test> ORCPT=user@up.test\r\n' '<' \
    '>QUIT\r\n' '<'
tl_is "$(grep -E '^5' "$T/chat.out" | tr '\n' '|')" \
    "501 5.5.4 Bad RET parameter syntax|501 5.5.4 Bad ENVID parameter syntax|501 5.5.4 Bad NOTIFY parameter syntax|501 5.5.4 Bad ORCPT parameter syntax|" \
    "malformed RET, ENVID (xtext), NOTIFY (NEVER with another), ORCPT: 501"

# ---------------------------------------------------------------- proxy-then-queue, next hop down
sq=$(queued)
send user@down.test
Q2=$(qid)
tl_like "$(final)" '^250 2\.0\.0 Ok: queued as [0-9A-F]+$' "next hop down: the client hears 250 queued as ID"
tl_is "$(($(queued) - sq)) $("$SPOOLCAT" "$T/queue" "$Q2" 2>&1 | grep -c '^rcpt T user@down.test ')" "1 1" \
    "... one file, its recipient TODO"
nt=$("$SPOOLCAT" "$T/queue" "$Q2" | sed -n 's/^next_try //p')
tl_is "$([ "${nt:-0}" -ge $(($(date +%s) + 200)) ] && echo later)" later \
    "... its next try after minimal_backoff_time (the next hop just failed)"
"$SPOOLCAT" -b "$T/queue" "$Q2" >"$T/body.out" 2>&1
tl_is "$(grep -c "^body of a message to user@down.test$(printf '\r')\$" "$T/body.out")" 1 \
    "... the body is all there"
tl_like "$(grep "$Q2: to=<user@down.test>" "$SMTPD_LOG")" 'relay=none, .*dsn=4\.4\.1, status=deferred \(451 4\.4\.1 ' \
    "log: status=deferred with the next hop's failure, as Postfix's smtp logs it"

# ---------------------------------------------------------------- 4xx / 5xx at each step
sq=$(queued)
send user@soft.test
tl_like "$(final)" '^250 2\.0\.0 Ok: queued as [0-9A-F]+$' "next hop 4xx at RCPT: the client hears 250, queued"
tl_is "spool $(($(queued) - sq)), soft sink $(count soft)" "spool 1, soft sink 0" "... and only the spool has it"
tl_like "$(grep 'user@soft.test' "$SMTPD_LOG" | grep 'queued, not relayed')" '4[0-9][0-9] 4\.[0-9.]+ Error: command failed' \
    "log: the next hop's own 4xx to RCPT (it was asked)"

sq=$(queued)
send user@hard.test
tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" '^<\*\* +5[0-9][0-9] ' "next hop 5xx at RCPT: the client hears the 5xx"
tl_is "$(($(queued) - sq)) $(count hard)" "0 0" "... nothing queued, nothing stored"

sq=$(queued)
send user@datasoft.test
tl_like "$(final)" '^250 2\.0\.0 Ok: queued as [0-9A-F]+$' "next hop 4xx at DATA: 250 queued"
tl_is "$(($(queued) - sq)) $(count datasoft)" "1 0" "... the spool has it, the next hop does not"

sq=$(queued)
send user@dotsoft.test
Q3=$(qid)
tl_like "$(final)" '^250 2\.0\.0 Ok: queued as [0-9A-F]+$' "next hop 4xx at the final dot: 250 queued"
tl_is "$(($(queued) - sq)) $("$SPOOLCAT" "$T/queue" "$Q3" 2>&1 | grep -c '^rcpt T ')" "1 1" \
    "... its recipient TODO (taken at RCPT is not delivered)"

sq=$(queued)
send user@dothard.test
tl_like "$(final)" '^5[0-9][0-9] ' "next hop 5xx at the final dot: the client hears the 5xx"
tl_is "$(($(queued) - sq)) $(ls "$T/queue/incoming" | wc -l | tr -d ' ')" "0 0" "... the spool copy is dropped (nothing in deferred/ or incoming/)"

# one transaction, the next hop takes one recipient and defers the other (tests/tools/smtp_picky.py)
sq=$(queued)
send user@picky.test,defer1@picky.test
Q4=$(qid)
tl_is "$(grep -A1 '^ -> RCPT TO:' "$T/swaks.out" | grep -c '^<- *250 2\.1\.5')" 2 \
    "next hop takes one RCPT, defers the other: the client hears 250 for both"
tl_like "$(final)" '^250 2\.0\.0 Ok: queued as [0-9A-F]+$' "... and, after the next hop's 250 at the dot, 250 queued as ID"
tl_is "$(cat "$T/picky.got" 2>/dev/null)" "MAIL <sender@client.test> RCPT user@picky.test BYTES $(tail -1 "$T/picky.got" 2>/dev/null | sed 's/.*BYTES //')" \
    "... the next hop got the message for the recipient it took, once"
tl_is "$(($(queued) - sq)) $("$SPOOLCAT" "$T/queue" "$Q4" 2>&1 | grep '^rcpt ' | cut -d' ' -f2,3 | tr '\n' '|')" \
    "1 D user@picky.test|T defer1@picky.test|" "... the spool keeps it: the delivered recipient DONE, the deferred one TODO"
tl_admin queue show "$Q4" > "$T/show.out" 2>&1
tl_is "$(grep -A1 '^recipient: defer1@picky.test' "$T/show.out" | sed -n 2p)" \
    "  last: dsn=4.2.0 (450 4.2.0 <defer1@picky.test>: try later)" \
    "... and why, before any retry: rcptgate queue show gives the next hop's 4xx"
send refuse1@picky.test
tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" '^<\*\* +550 5\.1\.1 <refuse1@picky.test>: no such user here' \
    "the next hop's own 5xx to RCPT reaches the client"
send bare1@picky.test
tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" '^<\*\* +550 5\.0\.0 <bare1@picky.test>: no such user here' \
    "... and one without an enhanced status code gets one (we advertise ENHANCEDSTATUSCODES)"

# The same, with `rcptgate queue flush` while the next hop sits on the
# dot (until picky.got.go): the file is committed (defer1 is the spool's alone) and the flush
# makes it due, yet the session still holds it. The queue manager leaves
# it alone, or it would give slowdot@ the message a second time.
send slowdot@picky.test,defer1@picky.test --timeout 30 > /dev/null 2>&1 &
SLOW_SWAKS=$!
tl_wait_grep 'RCPT slowdot@picky.test' "$T/picky.got.hold" 10 || tl_bail "the next hop never got the slow dot"
tl_admin queue flush > "$T/flush.out" 2>&1
tl_is "$?" 0 "flush while the next hop holds the dot: rcptgate queue flush ran"
: > "$T/picky.got.go"   # now the next hop may answer the dot
wait "$SLOW_SWAKS"
tl_like "$(final)" '^250 2\.0\.0 Ok: queued as [0-9A-F]+$' "... the client hears 250 queued"
Q5=$(qid)
# A second delivery would come right after the session's: give it 3 s.
sleep 3
tl_is "$(grep -c 'RCPT slowdot@picky.test' "$T/picky.got") $(grep -c "$Q5: to=<slowdot@picky.test>" "$SMTPD_LOG")" "1 1" \
    "... and the next hop got it once: the queue manager left the session's file alone"
tl_is "$("$SPOOLCAT" "$T/queue" "$Q5" 2>&1 | grep '^rcpt ' | cut -d' ' -f2,3 | tr '\n' '|')" \
    "D slowdot@picky.test|T defer1@picky.test|" "... the file keeps defer1 to do"

# ---------------------------------------------------------------- relay_mode = proxy for one domain
sq=$(queued)
send user@proxy.test
tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" '^<\*\* +451 4\.4\.1 ' \
    "a domain with relay mode proxy, next hop down: 451 4.4.1 to RCPT, as before"
tl_is "$(($(queued) - sq)) $(grep -c '^<- *250 2\.0\.0' "$T/swaks.out")" "0 0" "... nothing queued, no 250"

# recipients of two relay modes do not share a transaction
send user@up.test,user@q.test
tl_like "$(grep -A1 'RCPT TO:<user@q.test>' "$T/swaks.out" | tail -1)" '452 4\.5\.3 ' \
    "a recipient of another relay mode: 452 4.5.3 (a new transaction)"

sm_stop
cat "$T/smtpd.stderr" >> "$T/smtpd.stderr.all"
: > "$T/smtpd.stderr"

# ---------------------------------------------------------------- queue_max_messages
sed -i "s|^queue_directory = .*|queue_directory = $T/queue2|" "$CONF"
echo "queue_max_messages = 1" >> "$CONF"
sm_start_or_bail
send user@q.test
tl_like "$(final)" '^250 2\.0\.0 Ok: queued as ' "queue_max_messages = 1: the first message is queued"
send user@q.test
tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" '^<\*\* +452 4\.3\.1 Insufficient system storage' \
    "... the second hears 452 4.3.1 Insufficient system storage"
tl_is "$(queued "$T/queue2") $(grep -c '^<- *250 2\.0\.0' "$T/swaks.out")" "1 0" "... one in the spool, no 250 for the second"
# proxy-then-queue with the queue full: relayed as a proxy (the inside's verdict), never a 250 on the spool
before=$(count sink)
send user@up.test
tl_is "$(final | cut -c1-9) sink +$(($(count sink) - before)) spool $(queued "$T/queue2")" "250 2.0.0 sink +1 spool 1" \
    "queue full, proxy-then-queue, next hop up: relayed, the next hop's 250"
send user@down.test
tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" '^<\*\* +451 4\.4\.1 ' \
    "queue full, proxy-then-queue, next hop down: its 4xx, as a proxy (no 250 without a spool)"
tl_is "$(queued "$T/queue2") $(grep -c '^<- *250 2\.0\.0' "$T/swaks.out")" "1 0" "... nothing queued"
sm_stop
cat "$T/smtpd.stderr" >> "$T/smtpd.stderr.all"
: > "$T/smtpd.stderr"

# ---------------------------------------------------------------- disk full: a 1 MB tmpfs
# A mount namespace of our own: root, and / a mount point (not a bare chroot).
NS_WHY=""
if [ "$(id -u)" != 0 ]; then
    NS_WHY="mounting a tmpfs needs root"
elif ! unshare -m --propagation private true 2>/dev/null; then
    NS_WHY="no private mount namespace here (unshare -m --propagation private fails: / is not a mount point?)"
fi
if [ -n "$NS_WHY" ]; then
    for what in "the queue on a private tmpfs" "452 4.3.1 before DATA" "no 354, no 250" "451 mid-DATA" \
        "nothing left behind" "smtpd says why" "451 mid-DATA with a recipient the spool's only" \
        "no dot to the next hop" "a message that fits" "read-only: delivered once" "read-only: said why" \
        "read-only: new mail hears 452"; do
        tl_n=$((tl_n + 1))
        echo "ok $tl_n - disk full: $what # SKIP $NS_WHY"
    done
else
    mkdir -p "$T/small"
    sed -i "/^queue_max_messages = /d; s|^queue_directory = .*|queue_directory = $T/small|" "$CONF"
    echo "queue_minfree = 0" >> "$CONF"
    # smtpd in a mount namespace of its own, the tmpfs on $T/small there only
    cat > "$T/smtpd-ns" <<EOF
#!/bin/sh
exec unshare -m --propagation private sh -c 'mount -t tmpfs -o size=1m,mode=0700 rgtest "$T/small" && exec "\$0" "\$@"' "$RG_SMTPD" "\$@"
EOF
    chmod +x "$T/smtpd-ns"
    RG_SMTPD_REAL=$RG_SMTPD
    RG_SMTPD="$T/smtpd-ns"
    sm_start_or_bail
    RG_SMTPD=$RG_SMTPD_REAL
    SMALL="/proc/$SMTPD_PID/root$T/small"
    tl_like "$(grep " $T/small " "/proc/$SMTPD_PID/mounts")" '^rgtest .* tmpfs ' "smtpd's queue is on a private 1 MB tmpfs"
    # no SIZE=: message_size_limit (10 MB) cannot fit
    send user@q.test
    tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" '^<\*\* +452 4\.3\.1 Insufficient system storage' \
        "disk full: 452 4.3.1 before DATA"
    tl_is "$(grep -c '^<- *354' "$T/swaks.out") $(grep -c '^<- *250 2\.0\.0' "$T/swaks.out")" "0 0" "... no 354, no 250"
    # SIZE=1000 fits the test, 2 MB of body does not fit the disk
    sm_chat -t 30 '<' '>EHLO client.example.org\r\n' '<' '>MAIL FROM:<sender@client.test> SIZE=1000\r\n' '<' \
        '>RCPT TO:<user@q.test>\r\n' '<' '>DATA\r\n' '<' '>Subject: big\r\n\r\n' 'fill:2097152:A' '>\r\n.\r\n' '<' \
        '>QUIT\r\n' '<'
    tl_is "$(grep -c '^354 ' "$T/chat.out") $(sed -n '/^354 /,$p' "$T/chat.out" | grep -E '^[245][0-9][0-9] ' | head -1 | cut -c1-9)" \
        "1 451 4.3.0" "disk full mid-DATA: 354, then 451 4.3.0 at the dot, never 250"
    tl_is "$(find "$SMALL/incoming" "$SMALL/deferred" -type f 2>/dev/null | wc -l | tr -d ' ')" 0 \
        "... nothing left in incoming/ or deferred/ (no partial file)"
    tl_like "$(grep 'queue file write error' "$T/smtpd.stderr" "$SMTPD_LOG" | head -1)" 'No space left on device|write error' \
        "... smtpd says why"
    # proxy-then-queue, the next hop takes one recipient and defers the other (the spool's
    # only), and the disk fills mid-DATA: 451, and the next hop must not get the dot, or the
    # client's retry would give the recipient it took the message twice
    picky0=$(wc -l < "$T/picky.got")
    sm_chat -t 30 '<' '>EHLO client.example.org\r\n' '<' '>MAIL FROM:<sender@client.test> SIZE=1000\r\n' '<' \
        '>RCPT TO:<user@picky.test>\r\n' '<' '>RCPT TO:<defer1@picky.test>\r\n' '<' '>DATA\r\n' '<' \
        '>Subject: big\r\n\r\n' 'fill:2097152:A' '>\r\n.\r\n' '<' '>QUIT\r\n' '<'
    tl_is "$(grep -c '^250 2\.1\.5' "$T/chat.out") $(sed -n '/^354 /,$p' "$T/chat.out" | grep -E '^[245][0-9][0-9] ' | head -1 | cut -c1-9)" \
        "2 451 4.3.0" "disk full mid-DATA, one recipient the spool's only: 451 4.3.0 at the dot"
    tl_is "$(($(wc -l < "$T/picky.got") - picky0)) $(find "$SMALL/incoming" "$SMALL/deferred" -type f 2>/dev/null | wc -l | tr -d ' ')" \
        "0 0" "... the next hop did not get the message (no dot), and nothing is queued"
    sm_chat '<' '>EHLO client.example.org\r\n' '<' '>MAIL FROM:<sender@client.test> SIZE=100\r\n' '<' \
        '>RCPT TO:<user@q.test>\r\n' '<' '>DATA\r\n' '<' '>Subject: small\r\n\r\nfits\r\n.\r\n' '<' '>QUIT\r\n' '<'
    tl_is "$(grep -c '^250 2\.0\.0 Ok: queued as ' "$T/chat.out") $(find "$SMALL/deferred" -type f | wc -l | tr -d ' ')" "1 1" \
        "a message that fits is queued afterwards (the space was given back)"
    sm_stop
    cat "$T/smtpd.stderr" >> "$T/smtpd.stderr.all"
    : > "$T/smtpd.stderr"

    # A spool remounted read-only (as after a disk error), a message due in
    # it: delivered, but its record fails, and a file left due would go out
    # again at every queue run (here each second). Once, then no delivery
    # starts and new mail hears 452 until the spool takes writes.
    mkdir -p "$T/queue3"
    printf 'Subject: read-only\n\nonce\n' | "$SPOOLPUT" "$T/queue3" sender@client.test user@qup.test \
        > "$T/ro.id" 2>&1 || tl_bail "rg_spoolput: $(cat "$T/ro.id")"
    mkfifo "$T/queue3/trigger"
    sed -i -e "s|^queue_directory = .*|queue_directory = $T/queue3|" -e '/^queue_max_messages = 1$/d' "$CONF"
    echo "queue_run_delay = 1s" >> "$CONF"
    # smtpd in a mount namespace of its own, where queue3 is a read-only bind mount of itself
    cat > "$T/smtpd-ro" <<EOF
#!/bin/sh
exec unshare -m --propagation private sh -c 'mount --bind "$T/queue3" "$T/queue3" && mount -o remount,bind,ro "$T/queue3" && exec "\$0" "\$@"' "$RG_SMTPD" "\$@"
EOF
    chmod +x "$T/smtpd-ro"
    before=$(count sink)
    RG_SMTPD_REAL=$RG_SMTPD
    RG_SMTPD="$T/smtpd-ro"
    sm_start_or_bail
    RG_SMTPD=$RG_SMTPD_REAL
    tl_wait_grep 'cannot be written' "$SMTPD_LOG" 10
    sleep 4
    tl_is "sink +$(($(count sink) - before))" "sink +1" \
        "read-only spool: the message is delivered once, not again at each queue run"
    tl_like "$(grep 'cannot be written' "$SMTPD_LOG" | head -1)" \
        "queue $T/queue3: cannot be written \\(Read-only file system\\): no delivery starts and new mail hears 452" \
        "... and smtpd says why"
    send user@q.test
    tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" '^<\*\* +452 4\.3\.1 Insufficient system storage' \
        "... new mail for the queue hears 452 4.3.1"
    sm_stop
    cat "$T/smtpd.stderr" >> "$T/smtpd.stderr.all"
fi

# ---------------------------------------------------------------- next tries a fraction of a second apart
# During an outage the next tries of many messages fall due close together:
# a scan walks all of deferred/, so it comes no sooner than a tenth of
# queue_run_delay (here 2 s) after the last, not once for each try.
mkdir -p "$T/queue4"
: > "$T/spread.ids"
i=0
while [ $i -lt 30 ]; do
    printf 'Subject: spread\n\n%d\n' $i | "$SPOOLPUT" "$T/queue4" sender@client.test user@down.test \
        >> "$T/spread.ids" 2>>"$T/spread.err" || break
    i=$((i + 1))
done
now=$(date +%s)
n=0
for id in $(cat "$T/spread.ids"); do
    # due 4 s to 10 s from now, one every 0.2 s
    touch -d "@$((now + 4 + n / 5)).$(((n % 5) * 2))" "$T/queue4/deferred/$id"
    n=$((n + 1))
done
tl_is "$n" 30 "30 messages queued with next tries 0.2 s apart"
sed -i -e "s|^queue_directory = .*|queue_directory = $T/queue4|" -e '/^queue_run_delay = /d' \
    -e '/^queue_max_messages = /d' "$CONF"
echo "queue_run_delay = 20s" >> "$CONF"
: > "$T/smtpd.stderr"
sm_start_or_bail -v
sleep 9
scans=$(grep -c "queue $T/queue4: scanned" "$T/smtpd.stderr")
tl_ok "$([ "$scans" -ge 2 ] && [ "$scans" -le 6 ]; echo $?)" \
    "30 tries due over 6 s: $scans scans of deferred/ in 9 s (2 to 6: a tenth of queue_run_delay apart, not one per try)"
sm_stop
cat "$T/smtpd.stderr" >> "$T/smtpd.stderr.all"

# ---------------------------------------------------------------- SIGTERM while a delivery waits for its dot's answer
# The queue manager's delivery has sent the dot; the next hop holds its
# answer (until picky.got.go) but has the message. The stop waits for that
# answer (within shutdown_timeout) instead of cutting it, which delivered
# the message a second time after the restart.
sed -i -e "s|^queue_directory = .*|queue_directory = $T/queue6|" "$CONF"
: > "$T/smtpd.stderr"
sm_start_or_bail
send slowdot@qpicky.test
tl_like "$(qid)" '^[0-9A-Z]+$' "queue mode: a message to a next hop that holds its answer to the dot"
tl_wait_grep 'RCPT slowdot@qpicky.test' "$T/picky.got.hold" 10 || tl_bail "the next hop never got the dot"
kill -TERM "$SMTPD_PID"
sleep 1
: > "$T/picky.got.go"   # the next hop answers 250 now, after the TERM
wait "$SMTPD_PID"
SMTPD_PID=""
tl_like "$(cat "$SMTPD_LOG")" 'to=<slowdot@qpicky\.test>, relay=.*status=sent' \
    "SIGTERM while the next hop held its answer to the dot: smtpd waited for it (status=sent)"
cat "$T/smtpd.stderr" >> "$T/smtpd.stderr.all"
: > "$T/smtpd.stderr"
sm_start_or_bail
sleep 3
tl_is "$(grep -c 'RCPT slowdot@qpicky.test' "$T/picky.got.hold")" 1 "... and after the restart it is not delivered again"
sm_stop
rm -f "$T/picky.got.go"
cat "$T/smtpd.stderr" >> "$T/smtpd.stderr.all"

# ---------------------------------------------------------------- relay_mode changed by SIGHUP
# From proxy to queue without a restart: the queue opens at the reload.
sed -i -e "s|^queue_directory = .*|queue_directory = $T/queue5|" -e 's/^relay_mode = .*/relay_mode = proxy/' "$CONF"
: > "$T/smtpd.stderr"
sm_start_or_bail
sed -i 's/^relay_mode = .*/relay_mode = queue/' "$CONF"
kill -HUP "$SMTPD_PID"
sm_wait_log "queue $T/queue5: opened; mail is queued and delivered again" 5
tl_ok $? "relay_mode from proxy to queue by SIGHUP: the queue opens at the reload"
send user@up.test
tl_like "$(qid)" '^[0-9A-Z]+$' "... and mail is queued at once (250 queued as ID)"
sm_stop
cat "$T/smtpd.stderr" >> "$T/smtpd.stderr.all"

# ---------------------------------------------------------------- an envelope larger than a queue file holds
# A queue file's envelope is at most 1 MB: recipients past that hear 452 4.5.3
# (send them again), and the message goes on; before, every RCPT was 250 and
# DATA 451 at each try. 1,000 recipients with ORCPTs of 400 '%' need about 1.2 MB.
sed -i -e '/^recipient_limit = /d' "$CONF"
echo "recipient_limit = 5000" >> "$CONF"
: > "$T/smtpd.stderr"
sm_start_or_bail
# each % of the ORCPT is %25 in the envelope
awk 'BEGIN {
    o = "rfc822;"; for (i = 0; i < 400; i++) o = o "%"; o = o "@up.test"
    print "MAIL FROM:<sender@client.test>"
    for (i = 0; i < 1000; i++) print "RCPT TO:<user@up.test> ORCPT=" o
}' | python3 "$top_srcdir/tests/tools/smtp_batch.py" "$SMTPD_PORT" > "$T/bigenv.out" 2>&1
out=$(cat "$T/bigenv.out")
tl_like "$out" "^250=([0-9]+) 452=([1-9][0-9]*) other=0 data=354 final=250 2\.0\.0 Ok: queued as" \
    "1,000 recipients over a queue file's envelope: the rest hear 452 4.5.3, the message is queued ($out)"
sm_stop
cat "$T/smtpd.stderr" >> "$T/smtpd.stderr.all"

tl_no_sanitizer_reports "$T/smtpd.stderr.all" "$RG_SMTPD" "no sanitizer reports from smtpd"
tl_done
