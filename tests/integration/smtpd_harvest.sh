#!/bin/sh
# smtpd_harvest.sh - directory harvest protection in rcptgate-smtpd
#
# One client address asks for 30 unknown recipients over several
# connections: the first harvest_threshold are answered at once, the
# next ones after a growing delay (measured), the harvest_limit-th gets
# 421, and new connections from that address are refused while it is
# blocked. A client asking only for valid recipients is never delayed,
# and another client address (127.0.0.3) is not touched by the block.
#
# Settings: harvest_threshold 3, harvest_delay 400ms, harvest_limit 10,
# harvest_block_time 60s: unknown n (n = 4..9) waits 400 * (n - 3) ms.

. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"

tl_init smtpd_harvest

RG_LOGINS="$top_builddir/tests/tools/rg_logins"
SINK=${SMTP_SINK:-$(command -v smtp-sink || echo /usr/sbin/smtp-sink)}
PYTHON=${PYTHON:-$(command -v python3 || echo /usr/bin/python3)}

[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
tl_need_tool "$SWAKS" swaks
tl_need_tool "$SINK" smtp-sink
tl_need_tool "$PYTHON" python3
[ -x "$RG_LOGINS" ] || tl_bail "tests/tools/rg_logins not built"

# The raw client: rc, rc_line, rc_ms, rc_all (tests/lib/smtpd.sh).

# ms_at_least MS N MSG / ms_below MS N MSG - timing of the Nth reply
ms_at_least() {
    tl_ok "$([ "$(rc_ms "$2")" -ge "$1" ] && echo 0 || echo 1)" "$3 (took $(rc_ms "$2") ms)"
}
ms_below() {
    tl_ok "$([ "$(rc_ms "$2")" -lt "$1" ] && echo 0 || echo 1)" "$3 (took $(rc_ms "$2") ms)"
}

# ---------------------------------------------------------------- fixtures
"$RG_LOGINS" "$STORE" fill dir > "$T/fill.out" 2>&1 <<EOF || tl_bail "rg_logins fill: $(cat "$T/fill.out")"
g-alice user alice alice@gateway.test
g-bob user bob bob@gateway.test
EOF
SINK_PORT=$(sm_port)
sm_init \
    "relay_tls = none" \
    "harvest_threshold = 3" \
    "harvest_limit = 10" \
    "harvest_block_time = 60s"
# sm_init turns the harvest delay off for the other tests; we want it.
sed -i 's/^harvest_delay = 0$/harvest_delay = 400ms/' "$CONF"
grep -q '^harvest_delay = 400ms$' "$CONF" || tl_bail "could not set harvest_delay"
tl_admin domain add gateway.test "smtp:[127.0.0.1]:$SINK_PORT" > "$T/admin.out" 2>&1 \
    || tl_bail "store setup: $(cat "$T/admin.out")"

"$SINK" -u nobody -c "127.0.0.1:$SINK_PORT" 100 > "$T/sink.out" 2>"$T/sink.err" &
tl_pids="$tl_pids $!"

sm_start_or_bail

# An unknown user gets 550 5.1.1 (from an address of its own, outside the counts below).
rc 127.0.0.12 "$SMTPD_PORT" "C:EHLO probe.example.net" "C:MAIL FROM:<probe@example.net>" \
    "C:RCPT TO:<nobody@gateway.test>" "C:QUIT"
tl_like "$(rc_line 4)" "^550 5\.1\.1 " "an unknown recipient: 550 5.1.1"

HELLO="C:EHLO client.example.net"
FROM="C:MAIL FROM:<sender@example.net>"

# ---------------------------------------------------------------- a well-behaved client
rc 127.0.0.4 "$SMTPD_PORT" "$HELLO" "$FROM" "C:RCPT TO:<alice@gateway.test>" \
    "C:RCPT TO:<bob@gateway.test>" "C:RCPT TO:<alice@gateway.test>" "C:QUIT"
for n in 4 5 6; do
    tl_like "$(rc_line $n)" "^250 " "valid recipient $((n - 3)): 250"
    ms_below 300 $n "valid recipient $((n - 3)): not delayed"
done

# ---------------------------------------------------------------- the harvester
# Connection 1: unknowns 1..5. 1..3 at once, 4 and 5 after 400 and 800 ms.
rc 127.0.0.1 "$SMTPD_PORT" "$HELLO" "$FROM" "C:RCPT TO:<u1@gateway.test>" "C:RCPT TO:<u2@gateway.test>" \
    "C:RCPT TO:<u3@gateway.test>" "C:RCPT TO:<u4@gateway.test>" "C:RCPT TO:<u5@gateway.test>" "C:QUIT"
cp "$T/rc.out" "$T/rc.conn1"
for n in 4 5 6; do
    tl_like "$(rc_line $n)" "^550 5\.1\.1 " "unknown $((n - 3)): 550 5.1.1"
    ms_below 300 $n "unknown $((n - 3)) (within harvest_threshold): answered at once"
done
tl_like "$(rc_line 7)" "^550 5\.1\.1 " "unknown 4: 550 5.1.1"
ms_at_least 350 7 "unknown 4: delayed"
tl_like "$(rc_line 8)" "^550 5\.1\.1 " "unknown 5: 550 5.1.1"
ms_at_least 750 8 "unknown 5: delayed longer"

# Connection 2: unknowns 6..10; 9 waits 2.4 s; the 10th is harvest_limit: 421.
rc 127.0.0.1 "$SMTPD_PORT" "$HELLO" "$FROM" "C:RCPT TO:<u6@gateway.test>" "C:RCPT TO:<u7@gateway.test>" \
    "C:RCPT TO:<u8@gateway.test>" "C:RCPT TO:<u9@gateway.test>" "C:RCPT TO:<u10@gateway.test>" "C:QUIT"
cp "$T/rc.out" "$T/rc.conn2"
tl_like "$(rc_line 1)" "^220 " "the harvester may still connect before the limit"
tl_like "$(rc_line 7)" "^550 5\.1\.1 " "unknown 9: 550 5.1.1"
ms_at_least 2300 7 "unknown 9: delayed 2.4 s (counted across connections)"
tl_like "$(rc_line 8)" "^421 " "unknown 10 (harvest_limit): 421"
tl_like "$(grep 'NOQUEUE: reject: RCPT' "$SMTPD_LOG" | tail -n 1)" ": 421 4\.7\.0 .*too many unknown recipients" \
    "the log says 421 for the recipient that got 421, not 550"
tl_like "$(rc_line 9)" "^EOF" "and the connection is closed"

# Connections 3..6: unknowns 11..30 never get as far as RCPT.
refused=0
for c in 3 4 5 6; do
    rc 127.0.0.1 "$SMTPD_PORT" "$HELLO" "$FROM" "C:RCPT TO:<v${c}a@gateway.test>" \
        "C:RCPT TO:<v${c}b@gateway.test>" "C:RCPT TO:<v${c}c@gateway.test>" \
        "C:RCPT TO:<v${c}d@gateway.test>" "C:RCPT TO:<v${c}e@gateway.test>" "C:QUIT"
    case "$(rc_line 1)" in 421*) refused=$((refused + 1)) ;; esac
    [ $c = 3 ] && cp "$T/rc.out" "$T/rc.conn3"
done
tl_is "$refused" 4 "while blocked, every new connection from the harvester gets 421"
tl_like "$(sed -n 1p "$T/rc.conn3" | cut -f1)" "unknown recipients" "the 421 says why"
x=0
grep -q "	.*250 " "$T/rc.conn3" && x=1
tl_is "$(sed -n 1p "$T/rc.conn3" | cut -d' ' -f2) accepted=$x" "421 accepted=0" \
    "a refused connection (421 at connect) accepts nothing"

# ---------------------------------------------------------------- others are untouched
rc 127.0.0.3 "$SMTPD_PORT" "$HELLO" "$FROM" "C:RCPT TO:<w1@gateway.test>" "C:RCPT TO:<alice@gateway.test>" "C:QUIT"
tl_like "$(rc_line 1)" "^220 " "127.0.0.3: connects while 127.0.0.1 is blocked"
tl_like "$(rc_line 4)" "^550 5\.1\.1 " "127.0.0.3: its unknown recipient gets 550, not 421"
ms_below 300 4 "127.0.0.3: its first unknown is not delayed"
tl_like "$(rc_line 5)" "^250 " "127.0.0.3: a valid recipient is accepted"

t0=$(date +%s%N)
sm_swaks --local-interface 127.0.0.3 --ehlo client.example.net --from sender@example.net --to alice@gateway.test
x=$?
t1=$(date +%s%N)
tl_ok "$x" "swaks from 127.0.0.3 to a valid recipient: delivered"
tl_ok "$([ "$x" = 0 ] && [ $(((t1 - t0) / 1000000)) -lt 3000 ] && echo 0 || echo 1)" \
    "swaks from 127.0.0.3: delivered, no tarpit ($(((t1 - t0) / 1000000)) ms)"

# ---------------------------------------------------------------- mynetworks is not counted
# An inside server relaying its users' typos must not block the inside's mail.
rc 127.0.0.2 "$SMTPD_PORT" "$HELLO" "$FROM" "C:RCPT TO:<t1@gateway.test>" "C:RCPT TO:<t2@gateway.test>" \
    "C:RCPT TO:<t3@gateway.test>" "C:RCPT TO:<t4@gateway.test>" "C:RCPT TO:<t5@gateway.test>" \
    "C:RCPT TO:<t6@gateway.test>" "C:RCPT TO:<t7@gateway.test>" "C:RCPT TO:<t8@gateway.test>" \
    "C:RCPT TO:<t9@gateway.test>" "C:RCPT TO:<t10@gateway.test>" "C:RCPT TO:<t11@gateway.test>" "C:QUIT"
tl_like "$(rc_line 14)" "^550 5\.1\.1 " "a trusted client's 11th unknown (harvest_limit 10): 550, not 421"
ms_below 300 14 "... and not delayed"
rc 127.0.0.2 "$SMTPD_PORT" "$HELLO" "$FROM" "C:RCPT TO:<alice@gateway.test>" "C:QUIT"
tl_like "$(rc_line 1) / $(rc_line 4)" "^220 .* / 250 " "... nor blocked: its next session is served"

rc 127.0.0.4 "$SMTPD_PORT" "$HELLO" "$FROM" "C:RCPT TO:<alice@gateway.test>" "C:QUIT"
tl_like "$(rc_line 4)" "^250 " "the well-behaved client is still served"
ms_below 300 4 "the well-behaved client is still not delayed"

sm_stop
tl_done
