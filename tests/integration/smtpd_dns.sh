#!/bin/sh
# smtpd_dns.sh - rcptgate-smtpd's DNS checks end to end: DNSBL, RHSBL,
# sender domain existence, client names
#
# A private rcptgate-smtpd (tests/lib/smtpd.sh) whose resolver is the
# fixture DNS server tests/tools/rg_dnsd on a free loopback port, with
# smtp-sink as the downstream and swaks as the client (127.0.0.1: an
# outsider; bound to 127.0.0.2: trusted). The zone lists 127.0.0.1 in
# bl.test and spam.example in rhs.test, has sender domains with an MX,
# with only an A record, with a null MX, without any record, one that
# answers SERVFAIL and one that never answers. Each case asserts the
# exact reply to RCPT TO; a DNS failure must give 4xx, never 5xx.
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"
tl_init smtpd_dns
sm_lsan

RG_DNSD="$top_builddir/tests/tools/rg_dnsd"
[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd is not built ($RG_SMTPD)"
[ -x "$RG_DNSD" ] || tl_bail "rg_dnsd is not built"
tl_need_tool "$SWAKS" swaks
tl_need_tool python3 python3
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)

# ---- the DNS server
cat > "$T/zone" <<'ZONE'
# DNSBL: the test client 127.0.0.1 is listed, the trusted 127.0.0.2 too
1.0.0.127.bl.test        A      127.0.0.2
2.0.0.127.bl.test        A      127.0.0.2
# a list's error code (Spamhaus: a query through a public resolver) for 127.0.0.5
5.0.0.127.err.test       A      127.255.255.254
# an error code beside a real listing (127.0.0.6): the listing counts
6.0.0.127.err.test       A      127.255.255.254
6.0.0.127.err.test       A      127.0.0.2
# RHSBL
spam.example.rhs.test    A      127.0.0.2
spam.example             MX     "10 mx.spam.example"
# sender domains
sender.example           MX     "10 mx.sender.example"
a-only.example           A      192.0.2.10
nullmx.example           MX     "0 ."
txt-only.example         TXT    "no mail here"
broken.example           SERVFAIL
slow.example             DROP
# a client name (PTR + forward confirmation) for 127.0.0.2
2.0.0.127.in-addr.arpa   PTR    trusted.example.net
trusted.example.net      A      127.0.0.2
ZONE
"$RG_DNSD" -l 127.0.0.1:0 -z "$T/zone" -p "$T/dnsd.pid" -P "$T/dnsd.port" 2>"$T/dnsd.log" &
tl_pids="$tl_pids $!"
_i=0
while [ ! -s "$T/dnsd.pid" ]; do
    _i=$((_i + 1))
    [ $_i -gt 100 ] && { sed 's/^/# /' "$T/dnsd.log"; echo "Bail out! rg_dnsd did not start"; exit 1; }
    sleep 0.05
done
DNSPORT=$(cat "$T/dnsd.port")

# ---- the downstream and the store
SINK_PORT=$(sm_port)
if [ -x "$SINK" ]; then
    _sink_user=""
    [ "$(id -u)" = 0 ] && _sink_user="-u nobody"
    # shellcheck disable=SC2086
    "$SINK" $_sink_user "127.0.0.1:$SINK_PORT" 20 >"$T/sink.out" 2>&1 &
    tl_pids="$tl_pids $!"
fi
HOP="smtp:[127.0.0.1]:$SINK_PORT"
{
    tl_admin domain add example.com "$HOP" &&
    tl_admin static add alice@example.com
} >"$T/setup.log" 2>&1 || { sed 's/^/# /' "$T/setup.log"; echo "Bail out! store setup"; exit 1; }
cp "$CONF" "$T/base.conf"

# phase EXTRA... - (re)start smtpd with the DNS settings and these [smtpd] lines
phase() {
    sm_stop
    cp "$T/base.conf" "$CONF"
    sm_init
    # sm_init turns these two off; a key may be set once, so take its lines out
    sed -i -e '/^reject_unknown_sender_domain = off$/d' -e '/^reverse_lookup = no$/d' "$CONF"
    {
        echo "default_nexthop = $HOP"
        echo "dns_servers = 127.0.0.1:$DNSPORT"
        echo "dns_timeout = 1s"
        echo "dnsbl = bl.test=127.0.0.2 Listed at bl.test"
        echo "rhsbl = rhs.test Sender listed at rhs.test"
        printf '%s\n' "$@" | grep -q '^reject_unknown_sender_domain' ||
            echo "reject_unknown_sender_domain = enforce"
        printf '%s\n' "$@" | grep -q '^reverse_lookup' ||
            echo "reverse_lookup = no"
        [ $# -gt 0 ] && printf '%s\n' "$@"
    } >> "$CONF"
    sm_start
}

# from WANT DESC SENDER [ARGS] - an outsider with a clean HELO to a valid recipient
from() {
    _want=$1
    _desc=$2
    _from=$3
    shift 3
    ck "$_desc" "$_want" --ehlo mail.sender.example --from "$_from" --to alice@example.com "$@"
}

# logged PATTERN DESC - the smtpd log has a line matching PATTERN (grep -F)
logged() {
    if grep -F -- "$1" "$SMTPD_LOG" >/dev/null; then
        tl_ok 0 "$2"
    else
        tl_ok 1 "$2"
        tail -5 "$SMTPD_LOG" | sed 's/^/#   /'
    fi
}

OK="250 2.1.5 Ok"
BL="554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using bl.test; Listed at bl.test"
NOTFOUND="450 4.1.8 <%s>: Sender address rejected: Domain not found"   # unknown_address_reject_code
TEMP="450 4.1.8 <%s>: Sender address rejected: Domain not found"

phase || { echo "Bail out! smtpd did not start"; exit 1; }
sm_swaks --quit-after EHLO --ehlo probe.example
grep -q '^<-  250 ' "$T/swaks.out"
tl_ok $? "EHLO answered"

# ---- DNSBL, enforcing
from "$BL" "listed client refused at RCPT" someone@sender.example
logged "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: $BL;" "DNSBL refusal logged as Postfix does"
ck "trusted client not looked up in the DNSBL" "$OK" --local-interface 127.0.0.2 \
    --ehlo mail.internal.example --from someone@sender.example --to alice@example.com

# ---- DNSBL warn-only: accepted, logged; now the sender checks
phase "dnsbl_mode = warn" || { echo "Bail out! smtpd did not start (warn)"; exit 1; }
: > "$SMTPD_LOG"
from "$OK" "warn: listed client accepted" someone@sender.example
logged "reject_warning: RCPT from unknown[127.0.0.1]: $BL;" "warn: DNSBL logged as reject_warning"
from "$OK" "sender domain with an MX" someone@sender.example
from "$OK" "sender domain with only an A record" someone@a-only.example
# shellcheck disable=SC2059
from "$(printf "$NOTFOUND" x@no-such-domain.example)" "sender domain NXDOMAIN" x@no-such-domain.example
# shellcheck disable=SC2059
from "$(printf "$NOTFOUND" x@txt-only.example)" "sender domain without MX, A or AAAA" x@txt-only.example
# shellcheck disable=SC2059
from "$(printf "$NOTFOUND" x@nullmx.example)" "sender domain with a null MX" x@nullmx.example
# shellcheck disable=SC2059
from "$(printf "$TEMP" x@broken.example)" "sender domain SERVFAIL: 450, never 5xx" x@broken.example
_t0=$(date +%s)
# shellcheck disable=SC2059
from "$(printf "$TEMP" x@slow.example)" "sender domain not answering: 450, never 5xx" x@slow.example
_t1=$(date +%s)
# shellcheck disable=SC2059
tl_ok "$([ "$(rcpt_reply)" = "$(printf "$TEMP" x@slow.example)" ] && [ $((_t1 - _t0)) -le 4 ] && echo 0 || echo 1)" \
    "no answer costs about dns_timeout (450 after $((_t1 - _t0)) s)"
from "554 5.7.1 Service unavailable; Sender address [x@spam.example] blocked using rhs.test; Sender listed at rhs.test" \
    "RHSBL listed sender domain" x@spam.example
from "$OK" "null sender: no domain to look up" '<>'

# ---- a client that leaves while its lookups are in flight
# shellcheck disable=SC2016
$PYCLIENT -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
f = s.makefile("rb")
f.readline()
s.sendall(b"EHLO mail.sender.example\r\n")
while f.readline()[3:4] == b"-":
    pass
s.sendall(b"MAIL FROM:<x@slow.example>\r\n")
f.readline()
s.sendall(b"RCPT TO:<alice@example.com>\r\n")
time.sleep(0.2)
s.close()
print("left")
' "$SMTPD_PORT" >"$T/leave.out" 2>"$T/leave.err"
sleep 1.5
alive=dead
kill -0 "$SMTPD_PID" 2>/dev/null && alive=alive
tl_is "client $(cat "$T/leave.out") smtpd $alive" "client left smtpd alive" "smtpd survives a client leaving mid-lookup"
from "$OK" "and still answers afterwards" someone@sender.example

# ---- warn-only sender checks, then off
phase "dnsbl_mode = off" "reject_unknown_sender_domain = warn" "rhsbl_mode = warn" ||
    { echo "Bail out! smtpd did not start (sender warn)"; exit 1; }
: > "$SMTPD_LOG"
from "$OK" "warn: unknown sender domain accepted" x@no-such-domain.example
# shellcheck disable=SC2059
logged "reject_warning: RCPT from unknown[127.0.0.1]: $(printf "$NOTFOUND" x@no-such-domain.example);" \
    "warn: unknown sender domain logged as reject_warning"
from "$OK" "warn: RHSBL listed sender accepted" x@spam.example
logged "reject_warning: RCPT from unknown[127.0.0.1]: 554 5.7.1 Service unavailable; Sender address [x@spam.example] blocked using rhs.test" \
    "warn: RHSBL logged as reject_warning"
from "$OK" "dnsbl_mode = off: listed client accepted" someone@sender.example
tl_is "sessions $(grep -c ' connect from unknown\[127\.0\.0\.1\]' "$SMTPD_LOG"), DNSBL lines $(grep -c 'blocked using bl\.test' "$SMTPD_LOG")" \
    "sessions 3, DNSBL lines 0" "dnsbl_mode = off: three sessions logged, no DNSBL line in the log"

# ---- one session, two senders: the second (host!user) has no domain to look up
# (non-FQDN allowed here) and must not inherit the first one's answer
phase "dnsbl_mode = off" "reject_non_fqdn_sender = off" || { echo "Bail out! smtpd did not start (senders)"; exit 1; }
sm_chat '<' '>EHLO mail.sender.example\r\n' '<' '>MAIL FROM:<x@no-such-domain.example>\r\n' '<' \
    '>RCPT TO:<alice@example.com>\r\n' '<' '>RSET\r\n' '<' '>MAIL FROM:<host!user>\r\n' '<' \
    '>RCPT TO:<alice@example.com>\r\n' '<' '>QUIT\r\n' '<'
# shellcheck disable=SC2059
tl_is "$(sm_line 10) / $(sm_line 13)" "$(printf "$NOTFOUND" x@no-such-domain.example) / 250 2.1.5 Ok" \
    "a sender without a domain after one whose domain is not found: not refused for the first one's domain"

# ---- a list's error code (127.255.255.x) is not a listing
phase "dnsbl = err.test Listed at err.test" || { echo "Bail out! smtpd did not start (list errors)"; exit 1; }
: > "$SMTPD_LOG"
ck "a list answering its error code 127.255.255.254: the client is accepted" "$OK" --local-interface 127.0.0.5 \
    --ehlo mail.sender.example --from someone@sender.example --to alice@example.com
tl_wait_grep "dnsbl err.test answered 127.255.255.254, an error code of the list, not a listing" "$T/smtpd.stderr" 5
tl_ok $? "... and smtpd says why, and what to do"
ck "an error code beside a listing in one answer: the listing counts" \
    "554 5.7.1 Service unavailable; Client host [127.0.0.6] blocked using err.test; Listed at err.test" \
    --local-interface 127.0.0.6 --ehlo mail.sender.example --from someone@sender.example --to alice@example.com

# ---- client names: PTR + forward confirmation
phase "dnsbl_mode = off" "reverse_lookup = yes" || { echo "Bail out! smtpd did not start (names)"; exit 1; }
: > "$SMTPD_LOG"
ck "named trusted client" "$OK" --local-interface 127.0.0.2 \
    --ehlo mail.internal.example --from someone@sender.example --to alice@example.com
logged "connect from trusted.example.net[127.0.0.2]" "client named by PTR, forward-confirmed"
from "$OK" "client named from /etc/hosts" someone@sender.example
names=$(sed -n 's/.* connect from \([^ []*\)\[127\.0\.0\.1\]$/\1/p' "$SMTPD_LOG" | sort -u | tr '\n' ' ')
case "$names" in
"" | *unknown*) tl_ok 1 "127.0.0.1 has a name (/etc/hosts, no DNS): logged as '$names'" ;;
*) tl_ok 0 "127.0.0.1 has a name (/etc/hosts, no DNS): $names" ;;
esac

sm_stop
sm_sanitizer_check "no sanitizer report from smtpd"
tl_done
