#!/bin/sh
# smtpd_queue_postfix.sh - rcptgate-smtpd's queue with a real Postfix as the next hop
#
# smtp-sink answers what it is told; a private Postfix (tests/lib/postfix.sh,
# handing what it takes to an smtp-sink) answers as an internal mail server
# does. rcptgate-smtpd runs with the default relay_mode, proxy-then-queue;
# the domain pfq.test has its own mode, queue. Postfix refuses
# bad@pf(q).test with 550 and defers slow@pf.test with 450 through a
# check_recipient_access table. Checked:
#   1. Postfix up: its own "250 ... queued as" reaches the client, nothing
#      is queued; its 550 at RCPT reaches the client;
#   2. Postfix stopped: the client hears "250 ... queued as ID", the file
#      waits in deferred/, the try is logged deferred; Postfix started and
#      `rcptgate queue flush`: Postfix takes it (its Received: line names
#      the original client's HELO: XFORWARD from the spool), smtpd logs
#      status=sent with Postfix's queue id, and removes the file;
#   3. Postfix's 450 for one recipient, then (the table changed, postfix
#      reload) 250: deferred, then sent;
#   4. queue mode (pfq.test): Postfix's 550 from the queue bounces the
#      recipient, and the report, a multipart/report quoting Postfix's
#      reply, reaches the sender's route (an smtp-sink as default_nexthop);
#      pflogsumm counts the deferred and bounced.
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"
. "$top_srcdir/tests/lib/postfix.sh"

PFLOGSUMM=${PFLOGSUMM:-$(command -v pflogsumm || echo /usr/sbin/pflogsumm)}

tl_init smtpd_queue_postfix
trap 'pf_stop; tl_cleanup' EXIT     # Postfix's master is not a child of this shell
[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
tl_need_tool "$SMTP_SINK" smtp-sink
tl_need_tool "$SWAKS" swaks
tl_need_tool "$POSTFIX" postfix
tl_need_tool "$PFLOGSUMM" pflogsumm
tl_need_tool python3 python3
tl_shared_dir || tl_bail "no shared scratch directory"

# queue_id - the id in "250 2.0.0 Ok: queued as ID" of the last swaks run
queue_id() {
    sed -n 's/^<- *250 .*queued as \([0-9A-Za-z]*\).*/\1/p' "$T/swaks.out" | tail -1
}

# send TO [SUBJECT] - one message; swaks's status in SENT, the reply's id in QID
send() {
    sm_swaks --ehlo client.example.org --from sender@outside.test --to "$1" \
        --header "Subject: ${2:-to $1}" --body "queued for $1"
    SENT=$?
    QID=$(queue_id)
}

# need_id WHAT - without a queue id every later wait would only time out
need_id() {
    [ -n "$QID" ] || tl_bail "no \"250 ... queued as ID\" $1: $(tail -3 "$T/swaks.out" | tr '\n' ' ')"
}

# pf_access ENTRIES - Postfix's recipient table (inline:, each {key=value} braced:
# the values hold spaces), then reload when running
pf_access() {
    sed -i '/^smtpd_recipient_restrictions/d' "$PF_DIR/main.cf"
    echo "smtpd_recipient_restrictions = check_recipient_access inline:{ $1 } permit_mynetworks, reject" \
        >> "$PF_DIR/main.cf"
    [ -n "$PF_RUNNING" ] && "$POSTFIX" -c "$PF_DIR" reload >/dev/null 2>&1
    return 0
}

# Postfix hands what it takes to the sink "inside"; reports go to the sink "dsn".
SINK_PORT=$(( $(sm_port) + 2 ))
sm_sink_start inside || tl_bail "smtp-sink (inside) did not start"
INSIDE=$SINK_DIR
INSIDE_PORT=$SINK_PORT
SINK_PORT=$(( $(sm_port) + 4 ))
sm_sink_start dsn || tl_bail "smtp-sink (reports) did not start"
DSN_DIR=$SINK_DIR

pf_init "$INSIDE_PORT" || tl_bail "the private Postfix's configuration"
pf_access "{bad@pf.test=550 5.1.1 No such user here}, {bad@pfq.test=550 5.1.1 No such user here}, {slow@pf.test=450 4.2.0 Mailbox busy, try later}"

{
    tl_admin domain add pf.test "smtp:[127.0.0.1]:$PF_PORT" &&
    tl_admin domain add pfq.test "smtp:[127.0.0.1]:$PF_PORT" --relay-mode=queue &&
    for a in good bad slow later; do tl_admin static add "$a@pf.test" || exit 1; done &&
    tl_admin static add bad@pfq.test
} >"$T/admin.out" 2>&1 || tl_bail "rcptgate admin could not set up the domains: $(cat "$T/admin.out")"

sm_init "relay_mode = proxy-then-queue" "minimal_backoff_time = 1s" "maximal_backoff_time = 2s" \
    "queue_run_delay = 1s" "relay_connect_timeout = 2s" "relay_timeout = 20s" \
    "default_nexthop = smtp:[127.0.0.1]:$SINK_PORT"
sm_lsan
sm_start_or_bail

# ---------------------------------------------------------------- 1. Postfix up: a proxy
pf_start || tl_bail "the private Postfix did not start"
send good@pf.test "proxied"
need_id "from Postfix"
tl_ok "$SENT" "Postfix up: swaks gets its message through"
tl_like "$(grep '^<- *250 .*queued as' "$T/swaks.out" | tail -1)" '250 2\.0\.0 Ok: queued as [0-9A-Za-z]+' \
    "the client hears Postfix's own 250 after the dot"
tl_is "$(ls "$T/queue/deferred" 2>/dev/null | wc -l | tr -d ' ')" 0 "... and nothing is queued"
sm_wait_sink "$INSIDE" 1 10
tl_is "$(find "$INSIDE" -type f -size +0 | wc -l | tr -d ' ')" 1 "Postfix handed it on"
send bad@pf.test
tl_like "$(grep -E '^<(-|\*\*) *5' "$T/swaks.out" | head -1)" '550 5\.1\.1 .*No such user here' \
    "Postfix's 550 at RCPT reaches the client"
tl_is "$(ls "$T/queue/deferred" | wc -l | tr -d ' ')" 0 "... and nothing is queued for it"

# ---------------------------------------------------------------- 2. Postfix down, then up
pf_stop
send later@pf.test "while postfix was down"
need_id "with Postfix stopped"
tl_ok "$SENT" "Postfix stopped: swaks still gets its message through"
ID=$QID
tl_like "$ID" '^[0-9A-Z]+$' "... the client hears 250 queued as ID (smtpd's own)"
tl_ok "$([ -f "$T/queue/deferred/$ID" ]; echo $?)" "the message waits in deferred/"
sm_wait_log "$ID: to=<later@pf.test>, relay=none, .*dsn=4\.[0-9.]+, status=deferred" 15
tl_ok $? "the next try is logged as deferred"
pf_start || tl_bail "the private Postfix did not start again"
tl_admin queue flush >"$T/flush.out" 2>&1
tl_ok $? "rcptgate queue flush reaches smtpd's trigger"
sm_wait_log "$ID: to=<later@pf.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$PF_PORT, .*dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as [0-9A-Za-z]+\)" 15
tl_ok $? "Postfix takes it from the queue: status=sent with Postfix's queue id"
sm_wait_log "$ID: removed" 5
tl_ok $? "... the message is removed"
tl_ok "$([ ! -e "$T/queue/deferred/$ID" ]; echo $?)" "... and its file is gone"
sm_wait_sink "$INSIDE" 2 10
_f=$(grep -l "queued for later@pf.test" "$INSIDE"/* 2>/dev/null | head -1)
tl_ok "$([ -n "$_f" ]; echo $?)" "Postfix handed the queued message on, body intact"
grep -q "^Received: from client\.example\.org " "$_f" 2>/dev/null
tl_ok $? "Postfix's Received: line names the original client's HELO (XFORWARD from the spool)"

# ---------------------------------------------------------------- 3. Postfix 450, then 250
send slow@pf.test "busy mailbox"
need_id "for Postfix's 450"
ID=$QID
tl_like "$ID" '^[0-9A-Z]+$' "Postfix's 450 at RCPT: the client hears 250 queued as ID"
sm_wait_log "$ID: to=<slow@pf.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$PF_PORT, .*dsn=4\.2\.0, status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 450 4\.2\.0 .*Mailbox busy" 15
tl_ok $? "the try from the queue is deferred with Postfix's own reply"
pf_access "{bad@pf.test=550 5.1.1 No such user here}, {bad@pfq.test=550 5.1.1 No such user here}"
tl_admin queue flush >/dev/null 2>&1
sm_wait_log "$ID: to=<slow@pf.test>, .*status=sent \(250 " 15
tl_ok $? "once Postfix takes it (table changed, reloaded): status=sent"
sm_wait_log "$ID: removed" 5
tl_ok $? "... and removed"

# ---------------------------------------------------------------- 4. queue mode: 550 from the queue
send bad@pfq.test "to a user postfix does not know"
need_id "in queue mode"
ID=$QID
tl_like "$ID" '^[0-9A-Z]+$' "queue mode (pfq.test): the client hears 250 queued as ID before Postfix is asked"
sm_wait_log "$ID: to=<bad@pfq.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$PF_PORT, .*dsn=5\.1\.1, status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 .*No such user here" 15
tl_ok $? "Postfix's 550 from the queue: status=bounced"
sm_wait_log "$ID: sender non-delivery notification: [0-9A-Z]+" 5
tl_ok $? "... a report is made"
sm_wait_sink "$DSN_DIR" 1 15
_r=$(find "$DSN_DIR" -type f -size +0 | head -1)
grep -q "^Content-Type: multipart/report; report-type=delivery-status" "$_r" 2>/dev/null
tl_ok $? "the report reaches the sender's route (default_nexthop): a multipart/report"
grep -q "^Final-Recipient: rfc822; *bad@pfq.test" "$_r" 2>/dev/null &&
    grep -q "^Diagnostic-Code: smtp; *550 5.1.1 .*No such user here" "$_r" 2>/dev/null
tl_ok $? "... naming the recipient and quoting Postfix's reply"
sm_wait_log "$ID: removed" 5
tl_ok $? "the bounced message is removed"

"$PFLOGSUMM" --syslog-name=postfix-rcptgate "$SMTPD_LOG" >"$T/pflogsumm.out" 2>"$T/pflogsumm.err"
tl_ok $? "pflogsumm read smtpd's log"
DEFERRED=$(awk '$2 == "deferred" { print $1; exit }' "$T/pflogsumm.out")
BOUNCED=$(awk '$2 == "bounced" { print $1; exit }' "$T/pflogsumm.out")
# Deferred: later@ (Postfix down) and slow@ (its 450); bounced: bad@pfq.test.
tl_is "$DEFERRED" 2 "pflogsumm counts the 2 deferred messages"
tl_is "$BOUNCED" 1 "pflogsumm counts the bounced message"

pf_stop
sm_stop
sm_sanitizer_check "no sanitizer report from smtpd"
tl_done
