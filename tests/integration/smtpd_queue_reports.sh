#!/bin/sh
# smtpd_queue_reports.sh - when the queue manager must not write to the sender
#
# A report to the sender is right for mail that failed; it is backscatter
# or an endless retry in three cases, each checked beside one that does
# get its report (so a test here cannot pass because reports never work):
#   - NOTIFY=NEVER: an expired message is logged "status=expired,
#     dropped", not "returned to sender", and no report goes out;
#   - a sender no report can be addressed to (a control character, which
#     only a hand-made queue file holds): a 5xx or an expiry is logged
#     with the reason, the message removed, never retried;
#   - `rcptgate queue delete` of a message while it is being delivered:
#     the 5xx of one of its recipients does not come back as a report.
# And one report that a success must bring: NOTIFY=SUCCESS to a next hop
# without DSN gets a "relayed" notice from us (RFC 3461 5.2.2); to one
# with DSN the NOTIFY goes on, and the notice is that hop's to send. When
# the notice cannot be made (smtpd out of descriptors: prlimit), the
# recipient stays to do and is delivered again and told, never neither.
# A message deleted while its transaction waits for a slot to its next
# hop (destination_concurrency_limit 1, the slot held) is not delivered;
# one held meanwhile waits for its release.
# Messages are put into the spool with rg_spoolput (as old as needed)
# before smtpd starts; the one deleted mid-delivery comes through swaks.
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"

SPOOLPUT=${SPOOLPUT:-"$top_builddir/tests/tools/rg_spoolput"}

tl_init smtpd_queue_reports
[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
[ -x "$SPOOLPUT" ] || tl_bail "rg_spoolput not built ($SPOOLPUT)"
tl_need_tool "$SMTP_SINK" smtp-sink
tl_need_tool "$SWAKS" swaks
tl_need_tool python3 python3
tl_shared_dir || tl_bail "no shared scratch directory"

# stored NAME - messages the sink NAME stored (smtp-sink leaves empty files for aborted sessions)
stored() {
    find "$TS/$1" -type f -size +0 2>/dev/null | wc -l | tr -d ' '
}

# put SENDER RCPT [rg_spoolput options] - a message two hours old, its id in PUT_ID
put() {
    _s=$1
    _r=$2
    shift 2
    PUT_ID=$(printf 'Subject: put for %s\n\nbody\n' "$_r" | "$SPOOLPUT" -a 7200 "$@" "$T/queue" "$_s" "$_r" 2>>"$T/put.err")
    [ -n "$PUT_ID" ] || tl_bail "rg_spoolput failed: $(cat "$T/put.err")"
}

# qfile ID - the queue file of ID, in deferred/ or hold/ ("" none)
qfile() {
    for _q in deferred hold; do
        [ -f "$T/queue/$_q/$1" ] && echo "$T/queue/$_q/$1"
    done
}

DEAD_PORT=$(sm_port)
dsn_PORT=$(sm_port)
# Reports to outside senders go to the dsn sink (the outbound route).
sm_init "relay_mode = queue" "minimal_backoff_time = 1s" "maximal_backoff_time = 2s" \
    "destination_concurrency_limit = 1" \
    "queue_run_delay = 1s" "relay_connect_timeout = 2s" "relay_timeout = 20s" \
    "maximal_queue_lifetime = 1h" "default_nexthop = smtp:[127.0.0.1]:$dsn_PORT"
sm_lsan
sm_sink dsn "$dsn_PORT" || tl_bail "smtp-sink (reports) did not start"
sm_sink hard "" -f RCPT || tl_bail "smtp-sink (hard) did not start"
sm_sink up "" || tl_bail "smtp-sink (up) did not start"
# Refuses refuse*@, sits on the dot for slowdot*@ until picky.got.go (tests/tools/smtp_picky.py).
sm_picky || tl_bail "smtp_picky.py did not start"
{
    tl_admin domain add dead.test "smtp:[127.0.0.1]:$DEAD_PORT" &&
    tl_admin domain add hard.test "smtp:[127.0.0.1]:$hard_PORT" &&
    tl_admin domain add picky.test "smtp:[127.0.0.1]:$PICKY_PORT" &&
    tl_admin domain add up.test "smtp:[127.0.0.1]:$up_PORT" &&
    tl_admin static add user@picky.test && tl_admin static add user@up.test &&
    tl_admin static add user@dead.test && tl_admin static add user@hard.test &&
    tl_admin static add refuse1@picky.test && tl_admin static add slowdot@picky.test
} >"$T/admin.out" 2>&1 || tl_bail "rcptgate admin could not set up the domains: $(cat "$T/admin.out")"

# An hour past its lifetime, next hop down: three to expire, one to bounce at RCPT.
put sender@outside.test user@dead.test
EXPIRED=$PUT_ID
put sender@outside.test user@dead.test -N 1
NEVER=$PUT_ID
put "$(printf 's\001er@outside.test')" user@dead.test
CTL_EXPIRED=$PUT_ID
put "$(printf 's\001er@outside.test')" user@hard.test -a 0
CTL_BOUNCED=$PUT_ID
tl_is "$(ls "$T/queue/deferred" | wc -l | tr -d ' ')" 4 "four messages put into the spool before the start"

sm_start_or_bail

# ---------------------------------------------------------------- the control: a report
sm_wait_log "$EXPIRED: from=<sender@outside.test>, status=expired, returned to sender" 20
tl_ok $? "expired, no NOTIFY: returned to sender"
sm_wait_sink "$TS/dsn" 1 15
tl_is "$(stored dsn)" 1 "... its report reaches the sender's route"

# ---------------------------------------------------------------- NOTIFY=NEVER
sm_wait_log "$NEVER: from=<sender@outside.test>, status=expired, dropped" 20
tl_ok $? "expired with NOTIFY=NEVER: logged as dropped"
tl_is "$(grep -c "$NEVER: .*returned to sender\|$NEVER: sender non-delivery notification" "$SMTPD_LOG")" 0 \
    "... not as returned to sender, and no report made"
sm_wait_log "$NEVER: removed" 5
tl_is "$(qfile "$NEVER")" "" "... and the message is removed"

# ---------------------------------------------------------------- a sender no report can go to
sm_wait_log "$CTL_EXPIRED: undeliverable, not returned: the sender address holds a control character" 20
tl_ok $? "expired, a sender with a control character: the log says why there is no report"
sm_wait_log "$CTL_EXPIRED: from=<.*>, status=expired, dropped" 5
tl_ok $? "... logged as dropped"
sm_wait_log "$CTL_EXPIRED: removed" 5
tl_is "$(qfile "$CTL_EXPIRED")" "" "... and removed, not kept to try the report again"
sm_wait_log "$CTL_BOUNCED: to=<user@hard.test>, .*status=bounced" 15
tl_ok $? "a 5xx for a sender with a control character: bounced"
sm_wait_log "$CTL_BOUNCED: removed" 5
tl_is "$(qfile "$CTL_BOUNCED")" "" "... the message is removed, not retried"
tl_is "$(grep -c "$CTL_BOUNCED: undeliverable, not returned: the sender address holds a control character" "$SMTPD_LOG")" 1 \
    "... the reason logged once"

# ---------------------------------------------------------------- deleted while being delivered
# One message, one transaction: refuse1@ hears 5xx at RCPT, slowdot@ is taken
# and the next hop sits on the dot; the message is deleted meanwhile.
# When the try ends the 5xx would be returned to the sender: but the
# postmaster threw the mail away.
before=$(stored dsn)
sm_swaks --ehlo client.example.org --from sender@outside.test --to refuse1@picky.test,slowdot@picky.test \
    --header "Subject: to be deleted" --body "deleted while being delivered"
DEL=$(sed -n 's/^<- *250 .*queued as \([0-9A-Z]*\).*/\1/p' "$T/swaks.out" | tail -1)
[ -n "$DEL" ] || tl_bail "no \"250 ... queued as ID\": $(tail -3 "$T/swaks.out" | tr '\n' ' ')"
tl_wait_grep 'RCPT slowdot@picky.test' "$T/picky.got.hold" 15 || tl_bail "the next hop never got the slow dot"
tl_admin queue delete "$DEL" >"$T/delete.out" 2>&1
tl_is "$?" 0 "rcptgate queue delete while the next hop sits on the message's dot"
tl_is "$(grep -c "$DEL: to=<slowdot@picky.test>" "$SMTPD_LOG")" 0 "... before the try ended"
: > "$T/picky.got.go"   # now the next hop may answer the dot
sm_wait_log "$DEL: deleted while being delivered: no report to the sender" 20
tl_ok $? "when the try ends: deleted, no report to the sender (logged)"
tl_like "$(grep "$DEL: to=<refuse1@picky.test>" "$SMTPD_LOG")" 'status=bounced' "... its refused recipient was logged as bounced"
sleep 1.5
tl_is "$(grep -c "$DEL: sender non-delivery notification" "$SMTPD_LOG")/$(($(stored dsn) - before))" "0/0" \
    "... yet no report made, none at the sender's route"
tl_is "$(qfile "$DEL")" "" "... and no file left"

# ---------------------------------------------------------------- NOTIFY=SUCCESS
# notify RCPT - one message from sender@outside.test, RCPT with NOTIFY=SUCCESS; its id in NID
notify() {
    sm_chat '<' '>EHLO client.example.org\r\n' '<' '>MAIL FROM:<sender@outside.test> ENVID=nid1\r\n' '<' \
        ">RCPT TO:<$1> NOTIFY=SUCCESS ORCPT=rfc822;$1\\r\\n" '<' '>DATA\r\n' '<' \
        '>Subject: tell me\r\n\r\nbody\r\n.\r\n' '<' '>QUIT\r\n' '<'
    NID=$(sed -n 's/^250 2\.0\.0 Ok: queued as \([0-9A-Z]*\)$/\1/p' "$T/chat.out")
    [ -n "$NID" ] || tl_bail "no \"250 ... queued as ID\" for <$1>: $(tr '\n' ' ' < "$T/chat.out")"
}
before=$(stored dsn)
notify user@picky.test
sm_wait_log "$NID: to=<user@picky.test>, .*status=sent" 15
tl_ok $? "NOTIFY=SUCCESS to a next hop without DSN: sent"
# (the session's "queue active" line and the queue manager's give one size, as pflogsumm takes the first)
sed -n "s/.*$NID: from=<sender@outside.test>, size=\([0-9]*\), .*(queue active)/\1/p" "$SMTPD_LOG" > "$T/sizes"
tl_is "$(wc -l < "$T/sizes" | tr -d ' ') $(sort -u "$T/sizes" | wc -l | tr -d ' ')" "2 1" \
    "... its two 'queue active' lines (the session's, the queue manager's) give the same size"
sm_wait_log "$NID: sender delivery status notification: [0-9A-Z]+" 5
tl_ok $? "... and a delivery status notification is made"
sm_wait_sink "$TS/dsn" $((before + 1)) 15
NOTICE=$(grep -l "^Final-Recipient: rfc822; *user@picky.test" $(find "$TS/dsn" -type f -size +0) /dev/null 2>/dev/null | head -1)
tl_is "$(grep -ci '^Action: relayed\|^Status: 2\.0\.0\|^Original-Envelope-Id: nid1\|^Subject: Successful Mail Delivery Report' "${NOTICE:-/dev/null}")" 4 \
    "... it reaches the sender: Action: relayed, Status: 2.0.0, the ENVID, a success subject"
tl_like "$(grep -i '^Diagnostic-Code:' "${NOTICE:-/dev/null}")" '^Diagnostic-Code: smtp; 250 ' "... with the next hop's 250"
before=$(stored dsn)
notify user@up.test
sm_wait_log "$NID: to=<user@up.test>, .*status=sent" 15
tl_ok $? "NOTIFY=SUCCESS to a next hop with DSN: sent"
sm_wait_log "$NID: removed" 5
sleep 1
tl_is "$(grep -c "$NID: sender delivery status notification" "$SMTPD_LOG")/$(($(stored dsn) - before))" "0/0" \
    "... no notice of ours: the NOTIFY went on to that hop"
tl_like "$(cat "$TS/up/"* 2>/dev/null | grep -c 'tell me')" '^1$' "... which got the message"

# held N - wait up to 20 s until the next hop has sat on N dots in all
held() {
    _i=0
    while [ "$(cat "$T/picky.got.hold" 2>/dev/null | wc -l)" -lt "$1" ] && [ $_i -lt 200 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    [ "$(cat "$T/picky.got.hold" 2>/dev/null | wc -l)" -ge "$1" ]
}
# lowest_free_fd PID - the descriptor a process's next open would get
lowest_free_fd() {
    python3 -c 'import os, sys
fds = {int(x) for x in os.listdir("/proc/%s/fd" % sys.argv[1])}
i = 0
while i in fds:
    i += 1
print(i)' "$1"
}

# ---------------------------------------------------------------- a notice that cannot be made
# The next hop sits on the dot of a NOTIFY=SUCCESS message; meanwhile
# smtpd may open no more descriptors, so when the 250 comes the notice's
# queue file cannot be created.
holds=$(cat "$T/picky.got.hold" | wc -l)
before=$(stored dsn)
notify slowdot@picky.test
SID=$NID
held $((holds + 1)) || tl_bail "the next hop never got the NOTIFY=SUCCESS message's dot"
soft=$(prlimit --pid "$SMTPD_PID" --nofile --noheadings --output SOFT | tr -d ' ')
prlimit --pid "$SMTPD_PID" --nofile="$(lowest_free_fd "$SMTPD_PID"):" || tl_bail "prlimit failed"
: > "$T/picky.got.go"
sm_wait_log "$SID: <slowdot@picky.test>: delivered, but the sender's notice cannot be made: it stays to do" 20
tl_ok $? "NOTIFY=SUCCESS, the notice cannot be made: the recipient stays to do (logged)"
prlimit --pid "$SMTPD_PID" --nofile="$soft:" || tl_bail "prlimit could not give the descriptors back"
tl_is "$(grep -c "$SID: sender delivery status notification" "$SMTPD_LOG") $(qfile "$SID" | wc -l | tr -d ' ')" "0 1" \
    "... no notice made yet, and the message is still queued"
held $((holds + 2))
tl_ok $? "... once descriptors are back, it is delivered again"
: > "$T/picky.got.go"
sm_wait_log "$SID: sender delivery status notification: [0-9A-Z]+" 20
tl_ok $? "... and this time the notice is made"
sm_wait_log "$SID: removed" 10
tl_ok $? "... and the message removed"
sm_wait_sink "$TS/dsn" $((before + 1)) 15
tl_is "$(($(stored dsn) - before))" 1 "... one notice reaches the sender"

# ---------------------------------------------------------------- deleted while it waits for a slot
# The one slot to picky.test is held by a message whose dot the next hop
# sits on; a second message to picky.test waits for it and is deleted.
rm -f "$T/picky.got.go"         # a go the part above left unused would release the dot at once
holds=$(cat "$T/picky.got.hold" | wc -l)
sm_swaks --ehlo client.example.org --from holder@outside.test --to slowdot@picky.test --body "holds the slot"
HOLDER=$(sed -n 's/^<- *250 .*queued as \([0-9A-Z]*\).*/\1/p' "$T/swaks.out" | tail -1)
[ -n "$HOLDER" ] || tl_bail "no \"250 ... queued as ID\" for the slot's holder"
held $((holds + 1)) || tl_bail "the next hop never got the holder's dot"
sm_swaks --ehlo client.example.org --from waiter@outside.test --to user@picky.test --body "waits for the slot"
WAITER=$(sed -n 's/^<- *250 .*queued as \([0-9A-Z]*\).*/\1/p' "$T/swaks.out" | tail -1)
[ -n "$WAITER" ] || tl_bail "no \"250 ... queued as ID\" for the waiting message"
# its second "queue active" line is the queue manager's: it is in the next hop's line
_i=0
while [ "$(grep -c "$WAITER: from=<waiter@outside.test>, .*(queue active)" "$SMTPD_LOG")" -lt 2 ] && [ $_i -lt 100 ]; do
    sleep 0.1
    _i=$((_i + 1))
done
tl_admin queue delete "$WAITER" >"$T/delete.out" 2>&1
tl_is "$?" 0 "rcptgate queue delete of a message waiting for its next hop's only slot"
: > "$T/picky.got.go"
sm_wait_log "$HOLDER: removed" 20
tl_ok $? "... the slot's holder is delivered"
sm_wait_log "$WAITER: deleted while being delivered: no report to the sender" 20
tl_ok $? "... the deleted one then ends without a report (logged)"
tl_is "$(grep -c '^MAIL <waiter@outside.test> ' "$T/picky.got")/$(grep -c '^MAIL <holder@outside.test> ' "$T/picky.got")" "0/1" \
    "... and it never reaches the next hop (the holder did)"

# ---------------------------------------------------------------- held while it waits for a slot
# The same, put on hold instead: not delivered until released, and not
# expired or warned about meanwhile (as Postfix's hold queue).
# queued_behind SENDER SUBJECT - one message from SENDER, waiting behind a
# holder of the slot; their ids in HOLDER and WAITER
queued_behind() {
    rm -f "$T/picky.got.go"
    holds=$(cat "$T/picky.got.hold" | wc -l)
    sm_swaks --ehlo client.example.org --from holder@outside.test --to slowdot@picky.test --body "holds the slot"
    HOLDER=$(sed -n 's/^<- *250 .*queued as \([0-9A-Z]*\).*/\1/p' "$T/swaks.out" | tail -1)
    [ -n "$HOLDER" ] || tl_bail "no \"250 ... queued as ID\" for the slot's holder"
    held $((holds + 1)) || tl_bail "the next hop never got the holder's dot"
    sm_swaks --ehlo client.example.org --from "$1" --to user@picky.test --body "$2"
    WAITER=$(sed -n 's/^<- *250 .*queued as \([0-9A-Z]*\).*/\1/p' "$T/swaks.out" | tail -1)
    [ -n "$WAITER" ] || tl_bail "no \"250 ... queued as ID\" for the waiting message"
    _i=0
    while [ "$(grep -c "$WAITER: from=<$1>, .*(queue active)" "$SMTPD_LOG")" -lt 2 ] && [ $_i -lt 100 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
}
queued_behind hwaiter@outside.test "held while it waits"
tl_admin queue hold "$WAITER" >"$T/hold.out" 2>&1
tl_is "$?" 0 "rcptgate queue hold of a message waiting for its next hop's only slot"
: > "$T/picky.got.go"
sm_wait_log "$HOLDER: removed" 20
tl_ok $? "... the slot's holder is delivered"
sm_wait_log "$WAITER: on hold: 1 recipient left for after its release" 20
tl_ok $? "... the held one is left for after its release (logged)"
sleep 1.5
tl_is "$(grep -c '^MAIL <hwaiter@outside.test> ' "$T/picky.got") $(qfile "$WAITER")" "0 $T/queue/hold/$WAITER" \
    "... it does not reach the next hop, and stays in hold/"
tl_admin queue release "$WAITER" >"$T/hold.out" 2>&1
sm_wait_log "$WAITER: removed" 20
tl_ok $? "released: then it is delivered"
tl_is "$(grep -c '^MAIL <hwaiter@outside.test> ' "$T/picky.got")" 1 "... once, to the next hop"

sm_stop
sm_sanitizer_check "no sanitizer report from rcptgate-smtpd"
tl_done
