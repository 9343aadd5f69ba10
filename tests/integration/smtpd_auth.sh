#!/bin/sh
# smtpd_auth.sh - SASL AUTH on the submission listener of rcptgate-smtpd
#
# A real rcptgate-smtpd with a test certificate, Cyrus SASL configured
# through a private rcptgate-smtpd.conf (auxprop sasldb, users made with
# saslpasswd2) and a store filled by tests/tools/rg_logins (directory
# objects with their login names, as rcptgate-syncd stores them). Mail
# relayed to a foreign domain goes to default_nexthop, an smtp-sink.
# swaks drives the ordinary conversations; a small raw client (Python,
# written below) drives the ones swaks will not: AUTH before TLS, AUTH
# on port 25, "*", malformed base64, CRLF and bare LF inside a response,
# and the timing of failures.

. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"

tl_init smtpd_auth

RG_LOGINS="$top_builddir/tests/tools/rg_logins"
SINK=${SMTP_SINK:-$(command -v smtp-sink || echo /usr/sbin/smtp-sink)}
SASLPASSWD=${SASLPASSWD:-$(command -v saslpasswd2 || echo /usr/sbin/saslpasswd2)}
OPENSSL=${OPENSSL:-$(command -v openssl || echo /usr/bin/openssl)}
PYTHON=${PYTHON:-$(command -v python3 || echo /usr/bin/python3)}

[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
tl_need_tool "$SWAKS" swaks
tl_need_tool "$SINK" smtp-sink
tl_need_tool "$SASLPASSWD" saslpasswd2
tl_need_tool "$PYTHON" python3
[ -x "$RG_LOGINS" ] || tl_bail "tests/tools/rg_logins not built"
tl_need_tool sqlite3 sqlite3

# The raw client: rc, rc_line, rc_ms, rc_all (tests/lib/smtpd.sh).

# sent - did the last swaks see its message accepted (250 after the final dot)?
sent() {
    grep -A1 '^ ~> \.$' "$T/swaks.out" | tail -n 1 | grep -q '^<~ *250 ' && echo 0 || echo 1
}

b64() {
    printf "$1" | base64 | tr -d '\n'
}

# ---------------------------------------------------------------- fixtures
mkdir -p "$T/sasl"
umask 077
"$OPENSSL" req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" \
    -days 2 -subj "/CN=mx.gateway.test" >"$T/openssl.log" 2>&1 \
    || tl_bail "openssl could not make a test certificate"
chmod 600 "$T/key.pem" "$T/cert.pem"
umask 022

cat > "$T/sasl/rcptgate-smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $T/sasldb
mech_list: PLAIN LOGIN
EOF
# Users in the realm smtpd uses by default (its host name).
for u in alice:alice-pw bob:bob-pw carol:carol-pw; do
    printf '%s' "${u#*:}" | "$SASLPASSWD" -f "$T/sasldb" -c -p -u mx.gateway.test "${u%%:*}" \
        || tl_bail "saslpasswd2 failed"
done

# The directory: alice owns two addresses, bob one; carol's login is her
# UPN only (the store tries "carol@<sender domain>" for a bare login).
"$RG_LOGINS" "$STORE" fill dir > "$T/fill.out" 2>&1 <<EOF || tl_bail "rg_logins fill: $(cat "$T/fill.out")"
g-alice user alice,alice@gateway.test alice@gateway.test,a.smith@gateway.test
g-bob user BOB bob@gateway.test
g-carol user carol@gateway.test carol@gateway.test
g-jdoe-a user jdoe@a.test jdoe@a.test
g-jdoe-b user jdoe jdoe@b.test
EOF

# ---------------------------------------------------------------- the store's answer
# store_login_owns() itself, through rg_logins: which logins may use
# which sender addresses (these run even before smtpd can).
owns() {
    "$RG_LOGINS" "$STORE" owns "$1" "$2" 2>"$T/owns.err"
}
tl_is "$(owns alice alice@gateway.test)" 1 "store: alice owns alice@gateway.test"
tl_is "$(owns ALICE a.smith@gateway.test)" 1 "store: login compared case-insensitively"
tl_is "$(owns alice@gateway.test a.smith@gateway.test)" 1 "store: her UPN is a login too"
tl_is "$(owns alice@MX.GATEWAY.TEST alice@gateway.test)" 1 "store: user@realm unknown as such: tried as user"
tl_is "$(owns alice bob@gateway.test)" 0 "store: alice does not own bob's address"
tl_is "$(owns bob bob@gateway.test)" 1 "store: bob (synced as BOB, lowercased) owns his"
tl_is "$(owns carol carol@gateway.test)" 1 "store: bare login unknown: tried as user@<sender domain>"
tl_is "$(owns carol alice@gateway.test)" 0 "store: carol does not own alice's address"
tl_is "$(owns nobody bob@gateway.test)" 0 "store: unknown login: 0"
tl_is "$(owns jdoe@a.test jdoe@b.test)" 0 "store: a known user@realm never borrows the bare namesake's addresses"
tl_is "$(owns jdoe jdoe@b.test)" 1 "store: the bare namesake owns his own"
cp "$STORE" "$T/broken.db"
sqlite3 "$T/broken.db" "DROP TABLE login" 2>/dev/null
tl_is "$("$RG_LOGINS" "$T/broken.db" owns alice alice@gateway.test 2>/dev/null)" -1 \
    "store: a failing store is -1, never 'not owned'"

# tls_up - "tls-ehlo=250" when the last rc session got as far as EHLO inside TLS:
# the precondition of every "not authenticated" check below
tls_up() {
    echo "tls-ehlo=$(rc_line 4 | cut -c1-3)"
}

SINK_PORT=$(sm_port)
sm_init \
    "tls_cert_file = $T/cert.pem" \
    "tls_key_file = $T/key.pem" \
    "sasl_config_dir = $T/sasl" \
    "default_nexthop = smtp:[127.0.0.1]:$SINK_PORT" \
    "relay_tls = none" \
    "auth_failure_limit = 3" \
    "auth_failure_delay = 300ms"
tl_admin domain add gateway.test "smtp:[127.0.0.1]:$SINK_PORT" > "$T/admin.out" 2>&1 \
    || tl_bail "store setup: $(cat "$T/admin.out")"

"$SINK" -u nobody -c "127.0.0.1:$SINK_PORT" 100 > "$T/sink.out" 2>"$T/sink.err" &
tl_pids="$tl_pids $!"

# sink_count - messages the sink has taken
sink_count() {
    tr '\r' '\n' < "$T/sink.out" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1 | grep . || echo 0
}

sm_start_or_bail

rc 127.0.0.1 "$SMTPD_SUB_PORT" "C:EHLO client.example.net" "C:STARTTLS" TLS "C:EHLO client.example.net" "C:QUIT"
tl_like "$(rc_all 4)" "AUTH PLAIN LOGIN" "submission: AUTH PLAIN LOGIN offered after STARTTLS"

# ---------------------------------------------------------------- offering AUTH
rc 127.0.0.1 "$SMTPD_SUB_PORT" "C:EHLO client.example.net" "C:QUIT"
case "$(rc_all 2)" in *AUTH*) x=1 ;; *) x=0 ;; esac
tl_is "$(rc_line 2 | cut -c1-3) auth=$x" "250 auth=0" "submission: EHLO answered, no AUTH offered before STARTTLS"
case "$(rc_all 2)" in *STARTTLS*) x=0 ;; *) x=1 ;; esac
tl_ok "$x" "submission: STARTTLS offered"

rc 127.0.0.1 "$SMTPD_SUB_PORT" "C:EHLO client.example.net" "C:AUTH PLAIN $(b64 '\0alice\0alice-pw')" "C:QUIT"
tl_like "$(rc_line 3)" "^530 5\.7\.0 " "AUTH before STARTTLS: 530 5.7.0"

rc 127.0.0.1 "$SMTPD_PORT" "C:EHLO client.example.net" "C:STARTTLS" TLS "C:EHLO client.example.net" \
    "C:AUTH PLAIN $(b64 '\0alice\0alice-pw')" "C:QUIT"
case "$(rc_all 4)" in *AUTH*) x=1 ;; *) x=0 ;; esac
tl_is "$(tls_up) auth=$x" "tls-ehlo=250 auth=0" "port 25: no AUTH offered, even after STARTTLS"
tl_like "$(rc_line 5)" "^503 5\.5\.1 " "AUTH on port 25: 503 5.5.1"

# ---------------------------------------------------------------- good passwords
before=$(sink_count)
sm_swaks --port "$SMTPD_SUB_PORT" --tls --auth PLAIN --auth-user alice --auth-password alice-pw \
    --ehlo client.example.net --from alice@gateway.test --to someone@foreign.example
tl_ok "$(sent)" "AUTH PLAIN (swaks): the message goes through"
tl_like "$(cat "$T/swaks.out")" "<~ +235 2\.7\.0 Authentication successful" "AUTH PLAIN: 235 2.7.0"
tl_like "$(grep -A1 'RCPT TO:<someone@foreign.example>' "$T/swaks.out" | tail -n 1)" "^<~ +250 " \
    "authenticated: relaying to a foreign domain allowed"
i=0
while [ "$(sink_count)" -le "$before" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
tl_is "$(sink_count)" $((before + 1)) "the relayed message reached default_nexthop"

sm_swaks --port "$SMTPD_SUB_PORT" --tls --auth LOGIN --auth-user bob --auth-password bob-pw \
    --ehlo client.example.net --from bob@gateway.test --to someone@foreign.example
tl_ok "$(sent)" "AUTH LOGIN (swaks): the message goes through"
tl_like "$(cat "$T/swaks.out")" "<~ +235 2\.7\.0 Authentication successful" "AUTH LOGIN: 235 2.7.0"

rc 127.0.0.1 "$SMTPD_SUB_PORT" "C:EHLO client.example.net" "C:STARTTLS" TLS "C:EHLO client.example.net" \
    "C:AUTH LOGIN $(b64 alice)" "C:$(b64 alice-pw)" "C:QUIT"
tl_like "$(rc_line 5)" "^334 UGFzc3dvcmQ6$" "AUTH LOGIN with an initial response: 334 Password:"
tl_like "$(rc_line 6)" "^235 2\.7\.0 " "AUTH LOGIN with an initial response: 235"

rc 127.0.0.1 "$SMTPD_SUB_PORT" "C:EHLO client.example.net" "C:STARTTLS" TLS "C:EHLO client.example.net" \
    "C:AUTH PLAIN" "C:$(b64 '\0alice\0alice-pw')" "C:AUTH PLAIN $(b64 '\0alice\0alice-pw')" "C:QUIT"
tl_like "$(rc_line 5)" "^334 ?$" "AUTH PLAIN without initial response: empty 334"
tl_like "$(rc_line 6)" "^235 2\.7\.0 " "AUTH PLAIN in two steps: 235"
tl_like "$(rc_line 7)" "^503 5\.5\.1 " "AUTH twice: 503 5.5.1"

# ---------------------------------------------------------------- not authenticated
sm_swaks --port "$SMTPD_SUB_PORT" --tls --ehlo client.example.net \
    --from alice@gateway.test --to someone@foreign.example
# (530 at MAIL: the submission listener wants AUTH first; or 554 at RCPT)
tl_like "$(cat "$T/swaks.out")" "<[*~]\* +(530 5\.7\.0|554 5\.7\.1) " \
    "not authenticated: relaying to a foreign domain denied"
tl_is "$(sm_spoke "$T/swaks.out" && echo spoke) sent=$(sent)" "spoke sent=1" "not authenticated: nothing relayed"

# ---------------------------------------------------------------- wrong password
# Each failing case comes from an address of its own (127.0.0.7 ...), so
# that failures do not add up to a block of the others.
sm_swaks --local-interface 127.0.0.7 --port "$SMTPD_SUB_PORT" --tls --auth PLAIN --auth-user carol --auth-password wrong \
    --ehlo client.example.net --from carol@gateway.test --to someone@foreign.example
tl_like "$(cat "$T/swaks.out")" "<[*~]\* +535 5\.7\.8 Error: authentication failed: " "wrong password: 535 5.7.8"
x=0
grep -q "wrong" "$SMTPD_LOG" "$T/smtpd.stderr" && x=1
y=0
grep -q 'unknown\[127\.0\.0\.7\]: SASL PLAIN authentication failed' "$SMTPD_LOG" && y=1
tl_is "failure logged=$y password logged=$x" "failure logged=1 password logged=0" \
    "the failed AUTH is logged, the password is not in the logs"
tl_like "$(cat "$SMTPD_LOG")" "warning: unknown\[127\.0\.0\.7\]: SASL PLAIN authentication failed: " \
    "the failure is logged as Postfix logs it (fail2ban)"
tl_like "$(grep 'unknown\[127\.0\.0\.7\]: SASL' "$SMTPD_LOG")" \
    "warning: unknown\[127\.0\.0\.7\]: SASL PLAIN authentication failed: authentication failure$" \
    "the failure's reason is SASL's, once"

sm_swaks --local-interface 127.0.0.8 --port "$SMTPD_SUB_PORT" --tls --auth PLAIN --auth-user nobody --auth-password x \
    --ehlo client.example.net --from carol@gateway.test --to someone@foreign.example
tl_like "$(cat "$T/swaks.out")" "<[*~]\* +535 5\.7\.8 Error: authentication failed: authentication failure" \
    "unknown user: the same 535 as a wrong password"

# ---------------------------------------------------------------- protocol edges
# rc_tls SRC STEPS... - rc on the submission port after STARTTLS (replies 2..4 are the preamble)
rc_tls() {
    _src=$1
    shift
    rc "$_src" "$SMTPD_SUB_PORT" "C:EHLO client.example.net" "C:STARTTLS" TLS "C:EHLO client.example.net" "$@"
}

rc_tls 127.0.0.1 "C:AUTH LOGIN" "C:*" "C:NOOP" "C:QUIT"
tl_like "$(rc_line 5)" "^334 VXNlcm5hbWU6$" "AUTH LOGIN: 334 Username:"
tl_like "$(rc_line 6)" "^501 5\.7\.0 Authentication aborted" "\"*\" cancels: 501 5.7.0"
tl_like "$(rc_line 7)" "^250 " "the session goes on after a cancel"
tl_like "$(rc_line 8)" "^221 " "QUIT inside TLS: 221"

rc_tls 127.0.0.1 "C:AUTH PLAIN *" "C:AUTH PLAIN AGFs!aWNl" "C:AUTH PLAIN AGFsaWNl=AA" "C:AUTH CRAM-MD5" "C:QUIT"
tl_like "$(rc_line 5)" "^501 5\.7\.0 " "\"*\" as initial response: 501 5.7.0"
tl_like "$(rc_line 6)" "^501 5\.5\.2 " "malformed base64: 501 5.5.2"
tl_like "$(rc_line 7)" "^501 5\.5\.2 " "padding inside base64: 501 5.5.2"
tl_like "$(rc_line 8)" "^504 5\.5\.4 " "unknown mechanism: 504 5.5.4"

# An empty LOGIN user name is a failure (answered without Cyrus's LOGIN module, which leaks then).
rc_tls 127.0.0.13 "C:AUTH LOGIN" "C:" "C:AUTH LOGIN =" "C:QUIT"
tl_like "$(rc_line 6)" "^535 5\.7\.8 " "AUTH LOGIN, empty user name: 535"
tl_like "$(rc_line 7)" "^535 5\.7\.8 " "AUTH LOGIN =, empty user name: 535"

# CRLF inside a response: the halves are two lines, neither authenticates.
half1=$(b64 '\0alice\0alice-pw' | cut -c1-8)
half2=$(b64 '\0alice\0alice-pw' | cut -c9-)
rc_tls 127.0.0.9 "C:AUTH PLAIN" "S:$half1\r\n$half2\r\n" R R "C:MAIL FROM:<alice@gateway.test>" \
    "C:RCPT TO:<someone@foreign.example>" "C:QUIT"
x=0
grep -q "	.*235 " "$T/rc.out" && x=1
tl_is "$(tls_up) 235=$x" "tls-ehlo=250 235=0" "CRLF inside an AUTH response: not authenticated"
tl_like "$(rc_line 6)" "^(501|535) " "CRLF inside an AUTH response: the first half is refused"
tl_like "$(rc_line 8)$(rc_line 9)" "^5[0-9][0-9] .*5[0-9][0-9] " "CRLF inside an AUTH response: no relaying afterwards"

rc_tls 127.0.0.10 "S:AUTH PLAIN $half1\n$half2\r\n" R "C:MAIL FROM:<alice@gateway.test>" \
    "C:RCPT TO:<someone@foreign.example>" "C:QUIT"
x=0
grep -q "	.*235 " "$T/rc.out" && x=1
tl_is "$(tls_up) 235=$x" "tls-ehlo=250 235=0" "bare LF inside an AUTH command: not authenticated"
tl_like "$(rc_line 5)" "^5" "bare LF inside an AUTH command: refused"

# AUTH PLAIN with its initial response, MAIL pipelined behind it (RFC 4954 section 4 allows it)
rc_tls 127.0.0.14 "S:AUTH PLAIN $(b64 '\0alice\0alice-pw')\r\nMAIL FROM:<alice@gateway.test>\r\n" R R "C:QUIT"
tl_like "$(rc_line 5) / $(rc_line 6)" "^235 2\.7\.0 .* / 250 " \
    "AUTH PLAIN with an initial response, MAIL in the same write: 235, then MAIL's 250 (not 554)"

rc_tls 127.0.0.11 "C:AUTH LOGIN" "S:$(b64 alice)\n$(b64 alice-pw)\r\n" R R "C:QUIT"
x=0
grep -q "	.*235 " "$T/rc.out" && x=1
tl_is "$(tls_up) 235=$x" "tls-ehlo=250 235=0" "bare LF inside an AUTH response: not authenticated"

# ---------------------------------------------------------------- sender login mismatch
sm_swaks --port "$SMTPD_SUB_PORT" --tls --auth PLAIN --auth-user alice --auth-password alice-pw \
    --ehlo client.example.net --from bob@gateway.test --to someone@foreign.example
tl_like "$(cat "$T/swaks.out")" "<[*~]\* +553 5\.7\.1 <bob@gateway\.test>: Sender address rejected: not owned by user alice" \
    "alice sending as bob: 553 5.7.1 not owned by user"
before=$(sink_count)
sm_swaks --port "$SMTPD_SUB_PORT" --tls --auth PLAIN --auth-user alice --auth-password alice-pw \
    --ehlo client.example.net --from A.Smith@Gateway.test --to someone@foreign.example
tl_ok "$(sent)" "alice sending as her other address (any case): accepted"
sm_swaks --port "$SMTPD_SUB_PORT" --tls --auth PLAIN --auth-user alice --auth-password alice-pw \
    --ehlo client.example.net --from alice+lists@gateway.test --to someone@foreign.example
tl_ok "$(sent)" "alice sending as alice+lists (an address extension of hers): accepted"
sm_swaks --port "$SMTPD_SUB_PORT" --tls --auth PLAIN --auth-user alice --auth-password alice-pw \
    --ehlo client.example.net --from bob+alice@gateway.test --to someone@foreign.example
tl_like "$(cat "$T/swaks.out")" "<[*~]\\* +553 5\\.7\\.1 <bob\\+alice@gateway\\.test>: .*not owned by user alice" \
    "alice sending as bob+alice: still 553 5.7.1"
sm_swaks --port "$SMTPD_SUB_PORT" --tls --auth PLAIN --auth-user bob --auth-password bob-pw \
    --ehlo client.example.net --from bob@gateway.test --to alice@gateway.test
tl_ok "$(sent)" "bob (login stored as BOB, lowercased) sending as himself: accepted"
sm_swaks --port "$SMTPD_SUB_PORT" --tls --auth PLAIN --auth-user carol --auth-password carol-pw \
    --ehlo client.example.net --from carol@gateway.test --to someone@foreign.example
tl_ok "$(sent)" "carol (only her UPN is a login) sending as herself: accepted"
sm_swaks --port "$SMTPD_SUB_PORT" --tls --auth PLAIN --auth-user carol --auth-password carol-pw \
    --ehlo client.example.net --from alice@gateway.test --to someone@foreign.example
tl_like "$(cat "$T/swaks.out")" "<[*~]\* +553 5\.7\.1 .*not owned by user carol" "carol sending as alice: 553 5.7.1"

# ---------------------------------------------------------------- repeated failures
# From 127.0.0.5 so the block does not touch the cases above.
bad=$(b64 '\0alice\0nope')
rc_tls 127.0.0.5 "C:AUTH PLAIN $bad" "C:AUTH PLAIN $bad" "C:AUTH PLAIN $bad" "R"
tl_like "$(rc_line 5)" "^535 5\.7\.8 " "first failure: 535"
tl_ok "$([ "$(rc_ms 5)" -ge 250 ] && echo 0 || echo 1)" "first failure delayed (auth_failure_delay 300ms; took $(rc_ms 5) ms)"
tl_like "$(rc_line 6)" "^535 5\.7\.8 " "second failure: 535"
tl_ok "$([ "$(rc_ms 6)" -ge 550 ] && echo 0 || echo 1)" "second failure delayed twice as long (took $(rc_ms 6) ms)"
tl_like "$(rc_line 7)" "^421 " "third failure (auth_failure_limit 3): 421"
tl_like "$(rc_line 8)" "^EOF" "and the connection is closed"
rc 127.0.0.5 "$SMTPD_SUB_PORT" "C:QUIT"
tl_like "$(rc_line 1)" "^421 " "a new connection from that address is refused while blocked"
rc 127.0.0.6 "$SMTPD_SUB_PORT" "C:QUIT"
tl_like "$(rc_line 1)" "^220 " "another address is not"

sm_stop

# ---------------------------------------------------------------- a submission port nobody can use
# Without STARTTLS (no certificate, or tls = none) a submission listener
# refuses every MAIL with 530: -n (and the start) say so; with the
# certificate above, nothing is said.
check_n() {
    "$RG_SMTPD" -c "$1" -n >"$T/check.out" 2>&1
    echo "exit=$?"
}
tl_is "$(check_n "$CONF")" "exit=0" "-n: the certificate's configuration passes"
tl_is "$(grep -c 'STARTTLS is not offered' "$T/check.out")" 0 "-n: no warning with a certificate"
grep -v '^tls_cert_file\|^tls_key_file' "$CONF" > "$T/nocert.conf"
tl_is "$(check_n "$T/nocert.conf")" "exit=0" "-n without a certificate: a warning, not an error"
tl_like "$(cat "$T/check.out")" \
    "listen inet:127\.0\.0\.1:$SMTPD_SUB_PORT submission: STARTTLS is not offered \(no tls_cert_file and tls_key_file\), so no client can authenticate there and every MAIL gets 530 5\.7\.0" \
    "-n without a certificate names the submission listener and why"
sed 's/^\[smtpd\]$/[smtpd]\ntls = none/' "$CONF" > "$T/notls.conf"
check_n "$T/notls.conf" >/dev/null
tl_like "$(cat "$T/check.out")" "submission: STARTTLS is not offered \(tls = none\)" "-n with tls = none: the same warning"

tl_done
