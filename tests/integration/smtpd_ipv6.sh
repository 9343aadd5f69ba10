#!/bin/sh
# smtpd_ipv6.sh - rcptgate-smtpd on an IPv6 listener ([::1])
#
# An IPv6 client is logged as name[::1], is an outsider unless an IPv6
# network in mynetworks covers it, is refused unknown users and relaying
# like an IPv4 one, and a trusted one relays; the relayed message reaches
# the next hop (a real smtp-sink) with the client's address in the
# Received: header. Skipped where the machine has no ::1.
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"

tl_init smtpd_ipv6
[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
tl_need_tool "$SMTP_SINK" smtp-sink
tl_need_tool "$SWAKS" swaks
grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null || tl_skip_all "no ::1 here"

SINK_PORT=$(( $(sm_port) + 2 ))
sm_init
V6_PORT=$((SMTPD_PORT + 3))
printf 'listen = [::1]:%s\n' "$V6_PORT" >> "$CONF"
sm_sink_start || tl_bail "smtp-sink did not start"
{ tl_admin domain add example.com "smtp:[127.0.0.1]:$SINK_PORT" &&
    tl_admin static add user@example.com; } >"$T/admin.out" 2>&1 || tl_bail "store setup: $(cat "$T/admin.out")"
sm_lsan
sm_start_or_bail

# v6 ARGS - swaks to [::1]:V6_PORT; transcript in $T/swaks.out
v6() {
    "$SWAKS" --server ::1 --port "$V6_PORT" -6 --timeout 20 --hide-informational \
        --ehlo client.example.net --from sender@example.net "$@" > "$T/swaks.out" 2>&1
}

v6 --to user@example.com --quit-after RCPT
tl_like "$(cat "$T/swaks.out")" "<- +220 mx\\.gateway\\.test " "IPv6: the banner"
tl_like "$(cat "$T/swaks.out")" "<- +250 2\\.1\\.5 " "IPv6: a known recipient is accepted"
tl_like "$(grep 'connect from' "$SMTPD_LOG" | tail -n 1)" "connect from unknown\\[::1\\]" "IPv6: logged as unknown[::1]"

v6 --to nobody@example.com --quit-after RCPT
tl_like "$(cat "$T/swaks.out")" "<\\*\\* +550 5\\.1\\.1 <nobody@example\\.com>: Recipient address rejected: User unknown" \
    "IPv6: an unknown user gets 550 5.1.1"
v6 --to someone@example.net --quit-after RCPT
tl_like "$(cat "$T/swaks.out")" "<\\*\\* +554 5\\.7\\.1 <someone@example\\.net>: Relay access denied" \
    "IPv6: ::1 is not in mynetworks (127.0.0.2/32): relaying refused"
tl_like "$(grep 'NOQUEUE: reject: RCPT' "$SMTPD_LOG" | tail -n 1)" "RCPT from unknown\\[::1\\]: 554 5\\.7\\.1 " \
    "IPv6: the reject line names [::1]"

before=$(sm_sink_count)
v6 --to user@example.com
tl_like "$(cat "$T/swaks.out")" "<- +250 2\\.0\\.0 " "IPv6: a message to a known user is relayed"
tl_is "$(sm_sink_count)" "$((before + 1))" "IPv6: the next hop got it"
tl_like "$(cat "$SINK_DIR"/* | tr -d '\r')" "from client\\.example\\.net \\(unknown \\[IPv6:::1\\]\\)" \
    "IPv6: the Received: header names the client as [IPv6:::1]"

# mynetworks with an IPv6 network: ::1 becomes trusted and may relay.
sm_stop
sed -i 's|^mynetworks = .*|mynetworks = 127.0.0.2/32, [::1]/128|' "$CONF"
# (Written before the start: a HUP right after the pid file appears may
# come before smtpd watches for it, and end it.)
printf 'default_nexthop = smtp:[127.0.0.1]:%s\n' "$SINK_PORT" >> "$CONF"
sm_start_or_bail
v6 --to someone@example.net --quit-after RCPT
tl_like "$(cat "$T/swaks.out")" "<- +250 2\\.1\\.5 " "IPv6: [::1]/128 in mynetworks: relaying allowed"

sm_stop
sm_sanitizer_check "no sanitizer reports"
tl_done
