#!/bin/sh
# smtpd_logs.sh - rcptgate-smtpd's log lines read by fail2ban and pflogsumm
#
# Drives a private rcptgate-smtpd through sessions that are refused
# (unknown users, relay denied, unauthorised pipelining, a pre-greeting
# talker) and sessions that are relayed to an smtp-sink, then reads its
# log_file with the tools that read Postfix's logs:
#   - fail2ban-regex with Debian's /etc/fail2ban/filter.d/postfix.conf, in
#     its default mode and in mode=aggressive: one match per refusal, and
#     no match for anything else;
#   - pflogsumm (--syslog-name=postfix-rcptgate, our default syslog_name):
#     its "received", "delivered" and "rejected" counts.
# A line that does not match is printed (as TAP comments) with the tool's
# verdict, so the log format can be fixed.

. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"

F2B=$(command -v fail2ban-regex || true)
PFLOGSUMM=$(command -v pflogsumm || echo /usr/sbin/pflogsumm)
FILTER=/etc/fail2ban/filter.d/postfix.conf
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)

[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
tl_need_tool "$SWAKS" swaks
tl_need_tool "$SINK" "smtp-sink (package postfix)"
tl_need_tool python3 python3
tl_need_tool "${F2B:-fail2ban-regex}" fail2ban-regex
[ -f "$FILTER" ] || tl_missing "fail2ban's $FILTER is missing"
tl_need_tool "$PFLOGSUMM" pflogsumm

tl_init smtpd_logs

# listening PORT - something listens on 127.0.0.1:PORT
listening() {
    awk -v p=":$(printf '%04X' "$1")" \
        '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' /proc/net/tcp
}

# greet_pause makes a pre-greeting talker certain to talk first.
sm_init "greet_pause = 300ms" "relay_tls = none" "tls = none" "received_header = yes"

# ---------------------------------------------------------------- the downstream
SINK_PORT=$(sm_port)
while [ "$SINK_PORT" = "$SMTPD_PORT" ] || [ "$SINK_PORT" = "$SMTPD_SUB_PORT" ]; do
    SINK_PORT=$(sm_port)
done
if [ "$(id -u)" = 0 ]; then
    "$SINK" -u nobody -c "127.0.0.1:$SINK_PORT" 100 >"$T/sink.out" 2>"$T/sink.err" &
else
    "$SINK" -c "127.0.0.1:$SINK_PORT" 100 >"$T/sink.out" 2>"$T/sink.err" &
fi
SINK_PID=$!
tl_pids="$tl_pids $SINK_PID"
i=0
while ! listening "$SINK_PORT"; do
    i=$((i + 1))
    [ $i -gt 100 ] && tl_bail "smtp-sink did not start: $(cat "$T/sink.err")"
    sleep 0.05
done

printf 'user1@gateway.test OK\nuser2@gateway.test OK\nuser3@gateway.test OK\n' >"$T/recipients"
tl_admin import "$T/recipients" >"$T/admin.out" 2>&1 &&
    tl_admin domain add gateway.test "smtp:[127.0.0.1]:$SINK_PORT" >>"$T/admin.out" 2>&1
tl_ok $? "store: 3 recipients, gateway.test relayed to smtp-sink"

sm_start_or_bail
tl_ok 0 "rcptgate-smtpd starts"

FROM=sender@client.example.org
HELO=client.example.org

# raw WHAT - a client that misbehaves: "pipelining" sends HELO, MAIL and
# RCPT in one packet after the banner; "pregreet" talks before the banner.
# Prints everything the server sent until it closed (or 10 s passed).
raw() {
    $PYCLIENT - "$SMTPD_PORT" "$1" <<'PY'
import socket, sys
port, what = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=10)
got = b""
if what == "pipelining":
    while b"\n" not in got:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    s.sendall(b"HELO client.example.org\r\nMAIL FROM:<sender@client.example.org>\r\n"
              b"RCPT TO:<user1@gateway.test>\r\n")
else:
    s.sendall(b"EHLO client.example.org\r\n")
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
except OSError:
    pass
sys.stdout.write(got.decode("latin-1"))
PY
}

# ---------------------------------------------------------------- refused sessions
# Four unknown users in three sessions, one relay attempt.
sm_swaks --from "$FROM" --helo "$HELO" --to nobody1@gateway.test
grep -q '550 5\.1\.1' "$T/swaks.out"
tl_ok $? "unknown user: 550 5.1.1"
sm_swaks --from "$FROM" --helo "$HELO" --to nobody2@gateway.test,nobody3@gateway.test
tl_is "$(grep -c '550 5\.1\.1' "$T/swaks.out")" 2 "two unknown users in one session: 550 5.1.1 twice"
sm_swaks --from "$FROM" --helo "$HELO" --to nobody4@gateway.test
grep -q '550 5\.1\.1' "$T/swaks.out"
tl_ok $? "another unknown user: 550 5.1.1"
sm_swaks --from "$FROM" --helo "$HELO" --to someone@elsewhere.example
grep -q '554 5\.7\.1' "$T/swaks.out"
tl_ok $? "relay access denied: 554 5.7.1"
UNKNOWN=4
RELAY=1

out=$(raw pipelining)
tl_like "$out" '(^|[[:space:]])554 5\.5\.0' "unauthorised pipelining: 554 5.5.0 and disconnect"
out=$(raw pregreet)
tl_like "$out" '(^|[[:space:]])554 5\.5\.0' "pre-greeting talker: 554 5.5.0 and disconnect"
PROTO=2                         # the pipelining and pregreet refusals

# ---------------------------------------------------------------- relayed sessions
RELAYED=0
for u in user1 user2 user3; do
    # swaks exits 0 only when every command got its positive reply.
    if sm_swaks --from "$FROM" --helo "$HELO" --to "$u@gateway.test" --body "to $u"; then
        RELAYED=$((RELAYED + 1))
    else
        sed 's/^/#   /' "$T/swaks.out"
    fi
done
tl_is "$RELAYED" 3 "three messages relayed (250 to every command)"

sm_stop
SINK_GOT=$(tr '\r' '\n' <"$T/sink.out" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1)
tl_is "${SINK_GOT:-0}" 3 "smtp-sink received 3 messages"

LOG=$SMTPD_LOG
tl_is "$(grep -c 'postfix-rcptgate/smtpd\[[0-9]*\]: connect from unknown\[127\.0\.0\.1\]' "$LOG")" 9 \
    "9 'connect from unknown[127.0.0.1]' lines"
tl_is "$(grep -c 'postfix-rcptgate/smtpd\[[0-9]*\]: disconnect from unknown\[127\.0\.0\.1\]' "$LOG")" 9 \
    "9 'disconnect from' lines"
tl_is "$(grep -c 'NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 550 5\.1\.1 <nobody[1-4]@gateway\.test>: Recipient address rejected: User unknown[^;]*; from=<sender@client\.example\.org> to=<nobody[1-4]@gateway\.test> proto=ESMTP helo=<client\.example\.org>$' "$LOG")" \
    $UNKNOWN "one Postfix-style reject line per unknown user"

# ---------------------------------------------------------------- fail2ban
# f2b MODE - fail2ban-regex over the log; sets MATCHED and keeps its report
f2b() {
    if [ "$1" = default ]; then
        _filter=$FILTER
    else
        _filter="$FILTER[mode=$1]"
    fi
    "$F2B" --print-all-missed "$LOG" "$_filter" >"$T/f2b-$1.out" 2>&1
    MATCHED=$(sed -n 's/^Lines: .*, \([0-9]*\) matched, .*/\1/p' "$T/f2b-$1.out")
}

# f2b_explain MODE - show each refusal line and whether the filter matched it
f2b_explain() {
    grep -E 'reject:|reject_warning:|pipelining|PREGREET|pregreet|greeting|too many errors' "$LOG" |
        while IFS= read -r line; do
            printf '%s\n' "$line" >"$T/one.log"
            "$F2B" "$T/one.log" "$_filter" 2>/dev/null | grep -q '^Lines: 1 lines, 0 ignored, 1 matched' &&
                v=matched || v=MISSED
            printf '#   [%s] %s: %s\n' "$1" "$v" "$line"
        done
}

REJECTS=$((UNKNOWN + RELAY + PROTO))
for mode in default aggressive; do
    f2b "$mode"
    # One line per refusal: a pre-greeting talker is logged once, as
    # smtpd's "improper command pipelining after CONNECT", not also as
    # postscreen's "PREGREET", which mode=aggressive would count again.
    tl_is "$MATCHED" "$REJECTS" "fail2ban postfix filter ($mode mode) matches each of the $REJECTS refusals"
    [ "$MATCHED" = "$REJECTS" ] || f2b_explain "$mode"
done

# ---------------------------------------------------------------- pflogsumm
# pfls ARGS - pflogsumm's Grand Totals: sets RECEIVED DELIVERED REJECTED
pfls() {
    "$PFLOGSUMM" "$@" "$LOG" >"$T/pflogsumm.out" 2>"$T/pflogsumm.err"
    RECEIVED=$(awk '$2 == "received" { print $1; exit }' "$T/pflogsumm.out")
    DELIVERED=$(awk '$2 == "delivered" { print $1; exit }' "$T/pflogsumm.out")
    REJECTED=$(awk '$2 == "rejected" { print $1; exit }' "$T/pflogsumm.out")
}

pfls
echo "# pflogsumm with its default syslog name (postfix): received=$RECEIVED delivered=$DELIVERED rejected=$REJECTED"
pfls --syslog-name=postfix-rcptgate
REJECT_LINES=$(grep -c ': reject: ' "$LOG")
tl_is "$RECEIVED" 3 "pflogsumm --syslog-name=postfix-rcptgate: 3 received"
# pflogsumm counts a delivery ("QID: to=<>, relay=, ..., status=sent") and
# the message size ("QID: from=<>, size=") only from programs other than
# smtpd, as Postfix logs them (smtp, qmgr).
tl_is "$DELIVERED" 3 "pflogsumm --syslog-name=postfix-rcptgate: 3 delivered"
tl_ok "$([ "$REJECT_LINES" -gt 0 ] && [ "$REJECTED" = "$REJECT_LINES" ] && echo 0 || echo 1)" \
    "pflogsumm: rejected ($REJECTED) = the $REJECT_LINES reject lines (some)"
tl_ok "$([ "${REJECTED:-0}" -ge $((UNKNOWN + RELAY)) ] && echo 0 || echo 1)" \
    "pflogsumm counts at least the $((UNKNOWN + RELAY)) RCPT rejects"
if [ "$DELIVERED" != 3 ] || [ "$RECEIVED" != 3 ]; then
    echo "# the relay lines pflogsumm read:"
    grep -E ': (client=|from=<|to=<)' "$LOG" | sed 's/^/#   /'
fi

# ---------------------------------------------------------------- syslog_name = postfix
# With syslog_name = postfix, pflogsumm needs no option at all.
echo "syslog_name = postfix" >>"$CONF"      # [smtpd] is the file's last section
: >"$SMTPD_LOG"
sm_start
tl_ok $? "rcptgate-smtpd starts with syslog_name = postfix"
sm_swaks --from "$FROM" --helo "$HELO" --to nobody5@gateway.test
sm_swaks --from "$FROM" --helo "$HELO" --to user1@gateway.test --body "again"
tl_ok $? "one more message relayed"
sm_stop
pfls
tl_is "$RECEIVED/$DELIVERED/$REJECTED" "1/1/1" "plain pflogsumm on postfix/smtpd lines: received/delivered/rejected"
f2b default
tl_is "$MATCHED" 1 "fail2ban postfix filter matches the postfix/smtpd reject line"

tl_done
