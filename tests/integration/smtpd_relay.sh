#!/bin/sh
# smtpd_relay.sh - rcptgate-smtpd as a before-queue proxy, end to end
#
# A real client (smtp-source, swaks, smtpchat) talks to rcptgate-smtpd,
# which relays to real downstreams started here: smtp-sink processes
# (plain, slow, soft- and hard-refusing) and a private Postfix instance
# that logs the XFORWARDed original client and speaks STARTTLS with a
# certificate from a test CA made here with openssl. Each case checks the
# client's replies and what the downstream really got: the message count,
# nothing for a downstream that is down, nothing partial when smtpd is
# killed mid-DATA, nothing when the downstream's certificate is not
# trusted.
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"
. "$top_srcdir/tests/lib/postfix.sh"

SMTP_SOURCE=${SMTP_SOURCE:-$(command -v smtp-source || echo /usr/sbin/smtp-source)}

tl_init smtpd_relay
[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
tl_need_tool "$SMTP_SINK" smtp-sink
tl_need_tool "$SMTP_SOURCE" smtp-source
tl_need_tool "$POSTFIX" postfix
tl_need_tool "$SWAKS" swaks
tl_need_tool openssl openssl
tl_need_tool python3 python3
[ "$(id -u)" = 0 ] || tl_skip_all "a private Postfix needs root"
trap 'pf_stop; tl_cleanup' EXIT

# count DIR - messages a sink stored there (smtp-sink leaves empty files for aborted sessions)
count() {
    find "$TS/$1" -type f -size +0 | wc -l | tr -d ' '
}

# A test CA, the downstream's certificate for 127.0.0.1, and a CA that did not sign it.
mkdir -p "$T/pki"
(
    cd "$T/pki" || exit 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=rcptgate test CA" -keyout ca.key -out ca.pem &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=another CA" -keyout other.key -out other.pem &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=downstream.test" -keyout pf.key -out pf.csr &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:downstream.test\n' > pf.ext &&
    openssl x509 -req -in pf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile pf.ext -out pf.pem &&
    chmod 600 pf.key
) >"$T/pki.log" 2>&1 || tl_bail "openssl could not make the test certificates"

SINK_PORT=$(( $(sm_port) + 2 ))
sm_init "relay_timeout = 2s" "relay_connect_timeout = 2s"
sm_lsan
sm_sink_start || tl_bail "smtp-sink did not start"
sm_sink slow "" -w 5 || tl_bail "smtp-sink (slow) did not start"
sm_sink soft "" -r RCPT || tl_bail "smtp-sink (soft) did not start"
sm_sink hard "" -f RCPT || tl_bail "smtp-sink (hard) did not start"
sm_sink mailsoft "" -r MAIL || tl_bail "smtp-sink (mailsoft) did not start"
# A next hop that greets with smtpd's own name (tests/lib/smtpd.sh): a route back to us.
sm_sink mirror "" -h mx.gateway.test || tl_bail "smtp-sink (mirror) did not start"
DEAD_PORT=$(sm_port)

PF_TLS_CERT="$T/pki/pf.pem"
PF_TLS_KEY="$T/pki/pf.key"
pf_init
pf_start || tl_bail "the private Postfix did not start"

{
    tl_admin domain add example.com "smtp:[127.0.0.1]:$SINK_PORT" &&
    tl_admin domain add example.net "smtp:[127.0.0.1]:$PF_PORT" &&
    tl_admin domain add down.test "smtp:[127.0.0.1]:$DEAD_PORT" &&
    tl_admin domain add failover.test "smtp:[127.0.0.1]:$DEAD_PORT,smtp:[127.0.0.1]:$SINK_PORT" &&
    tl_admin domain add slow.test "smtp:[127.0.0.1]:$slow_PORT" &&
    tl_admin domain add soft.test "smtp:[127.0.0.1]:$soft_PORT" &&
    tl_admin domain add hard.test "smtp:[127.0.0.1]:$hard_PORT" &&
    tl_admin domain add mailsoft.test "smtp:[127.0.0.1]:$mailsoft_PORT" &&
    tl_admin domain add loop.test "smtp:[127.0.0.1]:$mirror_PORT" &&
    tl_admin domain add loopover.test "smtp:[127.0.0.1]:$mirror_PORT,smtp:[127.0.0.1]:$SINK_PORT" &&
    for d in example.com example.net down.test failover.test slow.test soft.test hard.test mailsoft.test \
        loop.test loopover.test; do
        tl_admin static add "user@$d" || exit 1
    done
} >"$T/admin.out" 2>&1 || tl_bail "rcptgate admin could not set up the domains: $(cat "$T/admin.out")"

sm_start_or_bail

sm_swaks --ehlo client.example.org --from sender@client.test --to user@example.com
tl_ok $? "swaks: a message is relayed"
tl_is "$(count sink)" 1 "a swaks message reached the sink"

# ---------------------------------------------------------------- smtp-source -> smtpd -> smtp-sink
"$SMTP_SOURCE" -s 5 -m 50 -M client.example.org -f sender@client.test -t user@example.com \
    "127.0.0.1:$SMTPD_PORT" >"$T/source.out" 2>&1
tl_is "$?" 0 "smtp-source: 50 messages, 5 sessions at once"
tl_is "$(count sink)" 51 "all 50 reached the sink, none twice"

# Throughput, for the report (not a pass/fail criterion).
start=$(date +%s.%N)
"$SMTP_SOURCE" -s 20 -m 1000 -l 5120 -M client.example.org -f sender@client.test -t user@example.com \
    "127.0.0.1:$SMTPD_PORT" >"$T/source2.out" 2>&1
end=$(date +%s.%N)
tl_is "$(count sink)" 1051 "1000 messages of 5 KB, 20 sessions at once: all arrived"
echo "# relayed $(python3 -c "print(round(1000 / ($end - $start)))") msgs/s (5 KB, 20 sessions, smtp-source -> smtpd -> smtp-sink)"

# ---------------------------------------------------------------- failover
sm_swaks --ehlo client.example.org --from sender@client.test --to user@failover.test
tl_ok "$?" "a dead first next hop: the second takes the message"
tl_is "$(count sink)" 1052 "... and the sink has it"

# ---------------------------------------------------------------- a next hop that is ourselves
# It greets with our own name: relaying there would loop. A temporary
# answer (the route is a mistake to fix, not the recipient's), and the
# next hop of the list, if any, takes the mail.
sm_swaks --ehlo client.example.org --from sender@client.test --to user@loop.test
tl_like "$(awk '/^ *-> RCPT TO:/ { w = 1; next } w && /^<[-~*]* +[0-9]/ { print; exit }' "$T/swaks.out")" \
    '^<[-~*]* +451 4\.4\.6 ' "a next hop greeting with our own name: RCPT 451 4.4.6 (a routing loop)"
tl_is "$(count mirror)" 0 "... the looping hop got no message"
tl_like "$(cat "$SMTPD_LOG")" 'next hop .*greets with my own name mx\.gateway\.test' "... and the log says why"
before=$(count sink)
sm_swaks --ehlo client.example.org --from sender@client.test --to user@loopover.test
tl_ok "$?" "a looping first next hop: the second takes the message"
tl_is "$(count sink)" $((before + 1)) "... and the sink has it"
# relay_loop_check = no (an inside server that must greet with our name): relayed
# reload - SIGHUP smtpd and wait for its next "reloaded" line
reload() {
    _n=$(grep -c 'reloaded' "$SMTPD_LOG")
    kill -HUP "$SMTPD_PID"
    _i=0
    while [ "$(grep -c 'reloaded' "$SMTPD_LOG")" -le "$_n" ] && [ $_i -lt 100 ]; do
        sleep 0.05
        _i=$((_i + 1))
    done
}
sed -i 's/^\[smtpd\]$/[smtpd]\nrelay_loop_check = no/' "$CONF"
reload
sm_swaks --ehlo client.example.org --from sender@client.test --to user@loop.test
tl_ok "$?" "relay_loop_check = no: a next hop greeting with our name takes the message"
tl_is "$(count mirror)" 1 "... the mirror has it"
sed -i '/^relay_loop_check = no$/d' "$CONF"
reload

# ---------------------------------------------------------------- two next hops in one transaction
# An MTA that batches the recipients of two of our inside servers (by MX
# host) hears 452 4.5.3 for the second's, to send them again later; those
# are no client errors: 25 of them (hard_error_limit is 20) end in DATA
# and the message, not in 421 with the accepted recipients lost.
before=$(count sink)
{
    echo "MAIL FROM:<list@client.test>"
    i=0
    while [ $i -lt 25 ]; do
        echo "RCPT TO:<user@example.com>"
        echo "RCPT TO:<user@failover.test>"
        i=$((i + 1))
    done
} | python3 "$top_srcdir/tests/tools/smtp_batch.py" "$SMTPD_PORT" > "$T/twohops.out" 2>&1
tl_like "$(cat "$T/twohops.out")" "^250=26 452=25 other=0 data=354 final=250 " \
    "25 recipients of a second next hop: 452 each, not counted as errors; the message goes on to DATA"
tl_is "$(count sink)" $((before + 1)) "... and reaches the first next hop"

# ---------------------------------------------------------------- the real Postfix, XFORWARD
sm_swaks --ehlo helo.client.example.org --from sender@client.test --to user@example.net
tl_ok "$?" "relayed to a real Postfix"
sleep 1
tl_like "$(grep 'queued as' "$T/swaks.out")" '^<- +250 2\.0\.0 Ok: queued as [0-9A-F]+$' \
    "the client hears Postfix's own final reply"
tl_like "$(pf_log | grep 'orig_client=')" 'client=localhost\[127\.0\.0\.1\], orig_client=unknown\[127\.0\.0\.1\]' \
    "Postfix logs the original client from XFORWARD"
tl_like "$(pf_log | grep 'xforward=')" 'xforward=1 ' "Postfix accepted XFORWARD"
tl_like "$(pf_log | grep 'postfix/smtpd.*TLS connection established')" 'TLSv1\.[23] with cipher' \
    "relay_tls = may: STARTTLS to the Postfix that offers it"
pf_before=$(pf_accepted)
tl_is "$pf_before" 1 "Postfix queued exactly one message"

# ---------------------------------------------------------------- downstream down
before=$(count sink)
sm_swaks --ehlo client.example.org --from sender@client.test --to user@down.test
tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" '^<\*\* +451 4\.4\.1 ' "every next hop down: 451 4.4.1 to RCPT"
tl_is "$(grep -c '^<\*\* *451 4\.4\.1 ' "$T/swaks.out") $(count sink)" "1 $before" \
    "... and after that 451, nothing was accepted anywhere"

# ---------------------------------------------------------------- 4xx, 5xx passed back
# (the refusing sinks' own reply text, "Error: command failed", proves each was talked to)
sm_swaks --ehlo client.example.org --from sender@client.test --to user@soft.test
soft_said=$(grep '^<\*\*' "$T/swaks.out" | head -1)
tl_like "$soft_said" '^<\*\* +450 4\.3\.0 Error: command failed' \
    "a downstream 4xx to RCPT is passed back"
sm_swaks --ehlo client.example.org --from sender@client.test --to user@hard.test
hard_said=$(grep '^<\*\*' "$T/swaks.out" | head -1)
tl_like "$hard_said" '^<\*\* +500 5\.3\.0 Error: command failed' \
    "a downstream 5xx to RCPT is passed back"
sm_swaks --ehlo client.example.org --from sender@client.test --to user@mailsoft.test
mailsoft_said=$(grep '^<\*\*' "$T/swaks.out" | head -1)
tl_like "$mailsoft_said" '^<\*\* +450 4\.3\.0 Error: command failed' \
    "a downstream 4xx to MAIL (the only hop) is passed back"
talked=$(printf '%s\n' "$soft_said" "$hard_said" "$mailsoft_said" | grep -c 'Error: command failed')
tl_is "talked to $talked, stored $(count soft)$(count hard)$(count mailsoft)" "talked to 3, stored 000" \
    "the refusing sinks answered, and stored nothing"

# ---------------------------------------------------------------- slow downstream
sm_swaks --ehlo client.example.org --from sender@client.test --to user@slow.test
tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" '^<\*\* +451 4\.4\.2 ' \
    "a DATA reply slower than relay_timeout: 451 4.4.2"
sleep 4
tl_is "timed out $(grep -c '^<\*\* *451 4\.4\.2 ' "$T/swaks.out"), stored $(count slow)" "timed out 1, stored 0" \
    "... and the slow sink stored nothing"

# ---------------------------------------------------------------- SIGKILL mid-DATA
before=$(count sink)
$SMTPCHAT -t 15 "$SMTPD_PORT" '<' '>EHLO client.example.org\r\n' '<' '>MAIL FROM:<sender@client.test>\r\n' '<' \
    '>RCPT TO:<user@example.com>\r\n' '<' '>DATA\r\n' '<' '>Subject: half\r\n\r\nthe first half\r\n' \
    '~3' '>the second half\r\n.\r\n' '<' end > "$T/chat.out" 2>&1 &
chat=$!
# Kill only once the client is inside DATA (the first half sent, the dot
# not): a loaded machine may take seconds just to start the client.
tl_wait_grep '^354 ' "$T/chat.out" || tl_wait_grep '^354 ' "$T/chat.out"
sleep 0.5
kill -9 "$SMTPD_PID"
wait "$SMTPD_PID" 2>/dev/null
tl_pids=$(echo "$tl_pids" | sed "s/ $SMTPD_PID//")
SMTPD_PID=""
wait "$chat"
got354=$(grep -c '^354 ' "$T/chat.out")
tl_is "$got354" 1 "the client got as far as 354"
tl_is "354: $got354, 250 after it: $(sed -n '/^354 /,$p' "$T/chat.out" | grep -c '^250 ')" "354: 1, 250 after it: 0" \
    "the client never got 250 for the message"
sleep 0.5
tl_is "354: $got354, stored: $(count sink)" "354: 1, stored: $before" "the downstream stored no message"
up=no
kill -0 "$SINK_PID" 2>/dev/null && $SM_PROBE -t 2 "$SINK_PORT" '<' >"$T/probe.out" 2>&1 &&
    grep -q '^220 ' "$T/probe.out" && up=yes
tl_is "354: $got354, sink up: $up" "354: 1, sink up: yes" "smtp-sink survived the cut session (still running, still answers)"

# ---------------------------------------------------------------- STARTTLS with verification
run_tls() {
    sm_stop
    sed -i '/^relay_tls = /d; /^relay_ca_file = /d' "$CONF"
    printf 'relay_tls = verify\nrelay_ca_file = %s\n' "$1" >> "$CONF"
    # Keep what the last smtpd said (its sanitizer report comes at exit).
    cat "$T/smtpd.stderr" >> "$T/smtpd.stderr.all" 2>/dev/null
    : > "$T/smtpd.stderr"
    sm_start_or_bail
    sm_swaks --ehlo client.example.org --from sender@client.test --to user@example.net
}

run_tls "$T/pki/ca.pem"
tl_ok "$?" "relay_tls = verify with the right CA: relayed"
sleep 1
tl_is "$(pf_accepted)" $((pf_before + 1)) "... Postfix queued it"
tl_like "$(grep 'TLS connection established to' "$T/smtpd.stderr")" \
    "Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:$PF_PORT: TLSv1\.[23] with cipher" \
    "smtpd logs a verified TLS connection to the next hop"

run_tls "$T/pki/other.pem"
tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" '^<\*\* +4[0-9][0-9] 4\.7\.5 ' \
    "a next hop whose certificate the CA did not sign: 4xx (4.7.5)"
sleep 1
tl_is "refused $(grep -c '^<\*\* *4[0-9][0-9] 4\.7\.5 ' "$T/swaks.out"), queued $(pf_accepted)" \
    "refused 1, queued $((pf_before + 1))" "... and Postfix got nothing"
tl_like "$(grep 'certificate verification failed' "$T/smtpd.stderr")" 'unable to get local issuer|self.signed|verif' \
    "smtpd says why"

sm_stop
cat "$T/smtpd.stderr" >> "$T/smtpd.stderr.all"
tl_no_sanitizer_reports "$T/smtpd.stderr.all" "$RG_SMTPD" "no sanitizer reports from smtpd"
pf_stop
tl_done
