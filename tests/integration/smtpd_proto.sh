#!/bin/sh
# smtpd_proto.sh - rcptgate-smtpd's SMTP conversation, reply by reply
#
# Golden conversations against a private smtpd relaying to a real
# smtp-sink: the greeting, the EHLO keywords, every command in and out of
# order, the limits (line length, SIZE, recipients, errors, junk
# commands, timeouts), the submission rules before TLS, the log lines,
# reload and shutdown. Every reply code and text is asserted exactly.
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"

tl_init smtpd_proto
[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
tl_need_tool "$SMTP_SINK" smtp-sink
tl_need_tool "$SWAKS" swaks
tl_need_tool python3 python3

SINK_PORT=$(( $(sm_port) + 2 ))
sm_init "recipient_limit = 100" "command_timeout = 2s"
sm_sink_start || tl_bail "smtp-sink did not start"
{
    tl_admin domain add example.com "smtp:[127.0.0.1]:$SINK_PORT" &&
    tl_admin static add user@example.com &&
    tl_admin static add other@example.com &&
    # Another next hop (never reached: its recipients only come second), and none.
    tl_admin domain add example.org "smtp:[127.0.0.1]:9" &&
    tl_admin static add user@example.org &&
    tl_admin domain add nohop.test &&
    tl_admin static add user@nohop.test
} >"$T/admin.out" 2>&1 || tl_bail "store setup: $(cat "$T/admin.out")"

# The configuration check: good is 0, bad is 78.
"$RG_SMTPD" -c "$CONF" -n >/dev/null 2>&1
tl_is "$?" 0 "-n: the configuration is valid"
cp "$CONF" "$T/bad.conf"
printf 'recipient_limit = lots\n' >> "$T/bad.conf"
"$RG_SMTPD" -c "$T/bad.conf" -n >/dev/null 2>&1
tl_is "$?" 78 "-n: a bad value is a configuration error (78)"

sm_lsan
sm_start_or_bail

EHLO='>EHLO client.example.net\r\n'
HOST=mx.gateway.test

# ---------------------------------------------------------------- greeting, EHLO, HELO
sm_chat '<' "$EHLO" '<' '>QUIT\r\n' '<' end
tl_is "$(sm_line 1)" "220 $HOST ESMTP" "banner"
tl_is "$(sed -n '2,8p' "$T/chat.out" | tr '\n' '|')" \
    "250-$HOST|250-PIPELINING|250-SIZE 10240000|250-ENHANCEDSTATUSCODES|250-8BITMIME|250-DSN|250 SMTPUTF8|" \
    "EHLO keywords (no STARTTLS without a certificate, no AUTH on port 25)"
tl_is "$(sm_line 9)" "221 2.0.0 Bye" "QUIT"
tl_is "$(sm_line 10)" "CLOSED" "QUIT closes the connection"

sm_chat '<' '>HELO client.example.net\r\n' '<' '>HELO\r\n' '<' '>EHLO\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 2)" "250 $HOST" "HELO"
tl_is "$(sm_line 3)" "501 5.5.4 Syntax: HELO hostname" "HELO without a name"
tl_is "$(sm_line 4)" "501 5.5.4 Syntax: EHLO hostname" "EHLO without a name"

# ---------------------------------------------------------------- commands out of order
sm_chat '<' '>MAIL FROM:<a@sender.test>\r\n' '<' '>RCPT TO:<user@example.com>\r\n' '<' \
    '>DATA\r\n' '<' "$EHLO" '<' '>DATA\r\n' '<' '>RCPT TO:<user@example.com>\r\n' '<' \
    '>MAIL FROM:<a@sender.test>\r\n' '<' '>MAIL FROM:<b@sender.test>\r\n' '<' \
    '>DATA\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 2)" "503 5.5.1 Error: send HELO/EHLO first" "MAIL before EHLO"
tl_is "$(sm_line 3)" "503 5.5.1 Error: need MAIL command" "RCPT before MAIL"
tl_is "$(sm_line 4)" "503 5.5.1 Error: need RCPT command" "DATA before MAIL"
tl_is "$(sm_line 12)" "503 5.5.1 Error: need RCPT command" "DATA after EHLO, before MAIL"
tl_is "$(sm_line 13)" "503 5.5.1 Error: need MAIL command" "RCPT after EHLO, before MAIL"
tl_is "$(sm_line 14)" "250 2.1.0 Ok" "MAIL"
tl_is "$(sm_line 15)" "503 5.5.1 Error: nested MAIL command" "nested MAIL"
tl_is "$(sm_line 16)" "554 5.5.1 Error: no valid recipients" "DATA without a recipient"

# ---------------------------------------------------------------- the small commands
sm_chat '<' "$EHLO" '<' '>NOOP\r\n' '<' '>VRFY user@example.com\r\n' '<' '>VRFY nobody@example.com\r\n' '<' \
    '>VRFY\r\n' '<' '>HELP\r\n' '<' '>XYZZY\r\n' '<' '>MAIL FROM:<a@sender.test>\r\n' '<' \
    '>RSET\r\n' '<' '>RCPT TO:<user@example.com>\r\n' '<' '>RSET now\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 9)" "250 2.0.0 Ok" "NOOP"
tl_is "$(sm_line 10)" "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery" "VRFY of a valid user: 252"
tl_is "$(sm_line 11)" "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery" "VRFY of an unknown user: the same 252"
tl_is "$(sm_line 12)" "501 5.5.4 Syntax: VRFY address" "VRFY without an address"
tl_like "$(sm_line 13)" "^214 2\.0\.0 " "HELP"
tl_is "$(sm_line 14)" "502 5.5.2 Error: command not recognized" "unknown command"
tl_is "$(sm_line 16)" "250 2.0.0 Ok" "RSET"
tl_is "$(sm_line 17)" "503 5.5.1 Error: need MAIL command" "RSET ended the transaction"
tl_is "$(sm_line 18)" "501 5.5.4 Syntax: RSET" "RSET with an argument"

# ---------------------------------------------------------------- syntax and limits
sm_chat '<' "$EHLO" '<' '>MAIL FROM a@sender.test\r\n' '<' '>MAIL FROM:<a@sender.test> SIZE=20000000\r\n' '<' \
    '>MAIL FROM:<a@sender.test> FOO=bar\r\n' '<' '>MAIL FROM:<a@sender.test> SIZE=12x\r\n' '<' \
    '>MAIL FROM:<a@sender.test> BODY=9BIT\r\n' '<' '>MAIL FROM:<a@sender.test> SIZE=1000 BODY=8BITMIME\r\n' '<' \
    '>RCPT user@example.com\r\n' '<' '>RCPT TO:<>\r\n' '<' '>RCPT TO:<user@example.com> NOTIFY=NEVER,DELAY\r\n' '<' \
    '>QUIT\r\n' '<'
tl_is "$(sm_line 9)" "501 5.5.4 Syntax: MAIL FROM:<address>" "MAIL without FROM:"
tl_is "$(sm_line 10)" "552 5.3.4 Message size exceeds fixed limit" "SIZE above message_size_limit"
tl_is "$(sm_line 11)" "555 5.5.4 Unsupported option: FOO" "unknown MAIL parameter"
tl_is "$(sm_line 12)" "501 5.5.4 Bad message size syntax" "malformed SIZE"
tl_is "$(sm_line 13)" "501 5.5.4 Unsupported BODY parameter value" "unknown BODY"
tl_is "$(sm_line 14)" "250 2.1.0 Ok" "MAIL with SIZE and BODY"
tl_is "$(sm_line 15)" "501 5.5.4 Syntax: RCPT TO:<address>" "RCPT without TO:"
tl_is "$(sm_line 16)" "501 5.1.3 Bad recipient address syntax" "RCPT TO:<>"
tl_is "$(sm_line 17)" "501 5.5.4 Bad NOTIFY parameter syntax" "RCPT NOTIFY=NEVER with another keyword: 501 (RFC 3461)"

LONG=$(printf '%03000d' 0)
sm_chat '<' "$EHLO" '<' ">NOOP $LONG\\r\\n" '<' '>NOOP\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 9)" "500 5.5.2 Error: line too long" "a command over line_length_limit"
tl_is "$(sm_line 10)" "250 2.0.0 Ok" "the session goes on after a long line"

# ---------------------------------------------------------------- relaying
sm_swaks --ehlo client.example.net --from sender@sender.test --to user@example.com
tl_ok $? "swaks: a message for a valid user is relayed"
tl_like "$(grep -A1 '^ -> \.$' "$T/swaks.out" | tail -1)" "^<- +250 2\.0\.0 Ok" \
    "the client hears the downstream's final reply"
sleep 0.3
tl_is "$(sm_sink_count)" 1 "the sink got the message"
tl_like "$(cat "$SINK_DIR"/* 2>/dev/null | grep -c '^Received: from client.example.net (unknown \[127.0.0.1\])')" "^1$" \
    "one Received: header"
QID=$(grep -E ': [0-9A-F]+: client=unknown\[127\.0\.0\.1\]$' "$SMTPD_LOG" | tail -1 | sed -E 's/.*: ([0-9A-F]+): client=.*/\1/')
tl_like "$QID" "^[0-9A-F]{8,}$" "log: QID: client=name[addr]"
tl_like "$(grep "$QID: from=" "$SMTPD_LOG")" "$QID: from=<sender@sender.test>, size=[0-9]+, nrcpt=1 \\(queue active\\)$" \
    "log: from=<>, size=, nrcpt="
tl_like "$(grep "$QID: to=" "$SMTPD_LOG")" "$QID: to=<user@example.com>, relay=.*127\\.0\\.0\\.1.*, delay=.*, dsn=2\\.0\\.0, status=sent \\(250 " \
    "log: to=<>, relay=, status=sent"
tl_like "$(grep 'disconnect from' "$SMTPD_LOG" | tail -1)" \
    "disconnect from unknown\\[127\\.0\\.0\\.1\\] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5$" \
    "log: the disconnect line counts the commands"

sm_swaks --ehlo client.example.net --from sender@sender.test --to nobody@example.com
tl_like "$(grep '^<\*\*' "$T/swaks.out" | head -1)" "^<\\*\\* +550 5\\.1\\.1 <nobody@example\\.com>: Recipient address rejected: User unknown" \
    "unknown user: 550 5.1.1"
tl_like "$(grep 'NOQUEUE: reject: RCPT' "$SMTPD_LOG" | tail -1)" \
    "NOQUEUE: reject: RCPT from unknown\\[127\\.0\\.0\\.1\\]: 550 5\\.1\\.1 <nobody@example\\.com>: Recipient address rejected: User unknown; from=<sender@sender\\.test> to=<nobody@example\\.com> proto=ESMTP helo=<client\\.example\\.net>$" \
    "log: NOQUEUE: reject: RCPT ... in Postfix's format"
tl_like "$(grep 'disconnect from' "$SMTPD_LOG" | tail -1)" "ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4$" \
    "log: rcpt=0/1 commands=3/4"
sm_sink_same 1 "nothing more reached the sink" "$T/swaks.out"

# ---------------------------------------------------------------- recipient limit
set -- '<' "$EHLO" '<' '>MAIL FROM:<sender@sender.test>\r\n' '<'
i=0
while [ $i -lt 101 ]; do
    set -- "$@" '>RCPT TO:<user@example.com>\r\n'
    i=$((i + 1))
done
set -- "$@" '<101' '>RSET\r\n' '<' '>QUIT\r\n' '<'
sm_chat "$@"
tl_is "$(sed -n '10,109p' "$T/chat.out" | sort -u)" "250 2.1.5 Ok" "recipient_limit = 100: 100 recipients accepted"
tl_is "$(sm_line 110)" "452 4.5.3 Error: too many recipients" "the 101st: 452 4.5.3"
sm_sink_same 1 "no message without DATA"

# ---------------------------------------------------------------- next hops
sm_chat '<' "$EHLO" '<' '>MAIL FROM:<sender@sender.test>\r\n' '<' '>RCPT TO:<user@example.com>\r\n' '<' \
    '>RCPT TO:<user@example.org>\r\n' '<' '>RCPT TO:<user@nohop.test>\r\n' '<' '>RSET\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 10)" "250 2.1.5 Ok" "the first recipient sets the transaction's next hop"
tl_is "$(sm_line 11)" "452 4.5.3 Error: too many recipients" "a recipient for another next hop: 452 4.5.3"
tl_is "$(sm_line 12)" "451 4.3.0 <user@nohop.test>: Temporary lookup failure" "a domain without a next hop: 451 4.3.0"
tl_like "$(grep 'no next hop' "$SMTPD_LOG" | tail -1)" "warning: no next hop for .*<user@nohop\.test>" \
    "log: no next hop is a warning"
sm_sink_same 1 "nothing relayed without DATA"

# ---------------------------------------------------------------- forbidden commands
sm_chat '<' '>GET / HTTP/1.0\r\n' '<' end
tl_is "$(sm_line 2)" "221 2.7.0 Error: I can break rules, too. Goodbye." "GET: 221 and goodbye"
tl_is "$(sm_line 3)" "CLOSED" "GET: disconnected"
sm_chat '<' "$EHLO" '<' '>Subject: hello\r\n' '<' end
tl_is "$(sm_line 9)" "221 2.7.0 Error: I can break rules, too. Goodbye." "a header line as a command: 221"
sm_chat '<' '>CONNECT 10.0.0.1:25 HTTP/1.0\r\n' '<' end
tl_is "$(sm_line 2)" "221 2.7.0 Error: I can break rules, too. Goodbye." "CONNECT: 221"

# ---------------------------------------------------------------- error limits
set -- '<' "$EHLO" '<'
i=0
while [ $i -lt 21 ]; do
    set -- "$@" '>BOGUS\r\n' '<'
    i=$((i + 1))
done
sm_chat "$@" end
tl_is "$(sed -n '9,28p' "$T/chat.out" | sort -u)" "502 5.5.2 Error: command not recognized" "20 errors answered"
tl_is "$(sm_line 29)" "421 4.7.0 $HOST Error: too many errors" "hard_error_limit: 421"
tl_is "$(sm_line 30)" "CLOSED" "hard_error_limit: disconnected"
tl_like "$(grep 'too many errors after' "$SMTPD_LOG" | tail -1)" "too many errors after UNKNOWN from unknown\\[127\\.0\\.0\\.1\\]$" \
    "log: too many errors after ..."

set -- '<' "$EHLO" '<'
i=0
while [ $i -lt 125 ]; do
    set -- "$@" '>NOOP\r\n' '<'
    i=$((i + 1))
done
sm_chat "$@" end
tl_is "$(grep -c '^250 2.0.0 Ok$' "$T/chat.out")" 120 "junk_command_limit: 100 free NOOPs, then each counts as an error"
tl_is "$(grep '^421' "$T/chat.out")" "421 4.7.0 $HOST Error: too many errors" "junk commands end in 421"

# ---------------------------------------------------------------- timeouts
sm_chat '<' "$EHLO" '<' '~3' '<' end
tl_is "$(sm_line 9)" "421 4.4.2 $HOST Error: timeout exceeded" "command_timeout: 421 4.4.2"
tl_like "$(grep 'timeout after' "$SMTPD_LOG" | tail -1)" "timeout after EHLO from unknown\\[127\\.0\\.0\\.1\\]$" \
    "log: timeout after EHLO"

sm_chat '<' "$EHLO" '<' '>MAIL FROM:<a@sender.test>\r\n' '<' '>RCPT TO:<user@example.com>\r\n' '<' \
    '>DATA\r\n' '<' '>Subject: slow\r\n\r\nhalf a message' '~3' end
tl_is "$(sm_line 11)" "354 End data with <CR><LF>.<CR><LF>" "DATA: 354"
tl_is "$(sm_line 12)" "421 4.4.2 $HOST Error: timeout exceeded" "timeout in DATA: 421"
sleep 0.3
sm_sink_same 1 "a message cut short by a timeout is not delivered"

sm_chat '<' "$EHLO" '<' '>MAIL FROM:<a@sender.test>\r\n' '<' '>RCPT TO:<user@example.com>\r\n' '<' \
    '>DATA\r\n' '<' '>Subject: gone\r\n\r\nthe client vanishes\r\n'
sleep 0.5
tl_like "$(grep 'lost connection after' "$SMTPD_LOG" | tail -1)" "lost connection after DATA \\([0-9]+ bytes\\) from unknown\\[127\\.0\\.0\\.1\\]$" \
    "log: lost connection after DATA"
sm_sink_same 1 "a client leaving mid-DATA delivers nothing"

# ---------------------------------------------------------------- submission before TLS
sm_chat -p "$SMTPD_SUB_PORT" '<' "$EHLO" '<' '>AUTH PLAIN AGFsaWNlAHB3\r\n' '<' \
    '>MAIL FROM:<a@sender.test>\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(grep -c '^250[ -]' "$T/chat.out" | sed 's/^[1-9][0-9]*$/EHLO answered/') AUTH=$(grep -c '^250-AUTH' "$T/chat.out")" \
    "EHLO answered AUTH=0" "submission: no AUTH offered before TLS"
tl_is "$(grep '^530' "$T/chat.out" | head -1)" "530 5.7.0 Must issue a STARTTLS command first" "submission: AUTH before TLS"
tl_is "$(grep '^530' "$T/chat.out" | sed -n 2p)" "530 5.7.0 Must issue a STARTTLS command first" "submission: MAIL before TLS and AUTH"
sm_chat '<' "$EHLO" '<' '>AUTH PLAIN AGFsaWNlAHB3\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 9)" "503 5.5.1 Error: authentication not enabled" "AUTH on port 25"

# ---------------------------------------------------------------- reload, shutdown
$SMTPCHAT "$SMTPD_PORT" '<' "$EHLO" '<' '~1.5' '>NOOP\r\n' '<' '>QUIT\r\n' '<' > "$T/held.out" 2>&1 &
HELD=$!
sleep 0.5
cp "$CONF" "$T/good.conf"
printf 'recipient_limit = lots\n' >> "$CONF"
kill -HUP "$SMTPD_PID"
sleep 0.3
tl_like "$(grep 'reload:' "$SMTPD_LOG" | tail -1)" "keeping the running configuration" "SIGHUP with a bad file: refused, old config kept"
cp "$T/good.conf" "$CONF"
kill -HUP "$SMTPD_PID"
wait "$HELD"
tl_is "$(sm_line 9 "$T/held.out")" "250 2.0.0 Ok" "a session lives through two reloads"
kill -0 "$SMTPD_PID" 2>/dev/null
tl_ok $? "smtpd still runs after the reloads"
tl_like "$(grep 'reloaded' "$SMTPD_LOG" | tail -1)" "reloaded " "SIGHUP with a good file: reloaded"

# listen is restart-only: a reload that moves it is logged once and ignored,
# and the listener it had keeps serving.
sed -i "s|^listen = 127.0.0.1:$SMTPD_PORT\$|listen = 127.0.0.1:$((SMTPD_PORT + 2))|" "$CONF"
grep -q "^listen = 127.0.0.1:$((SMTPD_PORT + 2))\$" "$CONF"
tl_ok $? "the test moved listen in the file"
reloads=$(grep -c 'reloaded' "$SMTPD_LOG")
kill -HUP "$SMTPD_PID"
i=0
while [ "$(grep -c 'reloaded' "$SMTPD_LOG")" = "$reloads" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
tl_is "$(grep -c 'reload: \[smtpd\] listen changes take effect only after a restart; ignored' "$SMTPD_LOG")" 1 \
    "reload of a new listen: logged once as ignored"
sm_chat '<' '>QUIT\r\n' '<'
tl_like "$(sm_line 1)" "^220 $HOST " "... the old listener still greets"
cp "$T/good.conf" "$CONF"
reloads=$(grep -c 'reloaded' "$SMTPD_LOG")
kill -HUP "$SMTPD_PID"
i=0
while [ "$(grep -c 'reloaded' "$SMTPD_LOG")" = "$reloads" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done

# max_connections, changed by a reload: the one over the limit hears 421 at once.
printf 'max_connections = 1\n' >> "$CONF"
reloads=$(grep -c 'reloaded' "$SMTPD_LOG")
kill -HUP "$SMTPD_PID"
i=0
while [ "$(grep -c 'reloaded' "$SMTPD_LOG")" = "$reloads" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
# The held session stays (NOOPs within command_timeout) a few seconds: a
# loaded machine may take that long to start the second client.
$SMTPCHAT "$SMTPD_PORT" '<' '~1.5' '>NOOP\r\n' '<' '~1.5' '>NOOP\r\n' '<' '~1.5' '>QUIT\r\n' '<' \
    > "$T/held.out" 2>&1 &
HELD=$!
# It is in (it has its greeting) before the second comes: a loaded machine
# may take seconds to start python, and without the wait the second client
# would be the one in.
tl_wait_grep '^220 ' "$T/held.out" 30 || tl_bail "the held client never got its greeting"
sm_chat '<' end
tl_is "$(sm_line 1)" "421 4.7.0 $HOST Error: too many connections" "max_connections: 421 4.7.0"
wait "$HELD"
tl_is "$(sm_line 4 "$T/held.out")" "221 2.0.0 Bye" "max_connections: the session within the limit is served"
# soft_error_limit: past it each error reply waits error_sleep_time.
cp "$T/good.conf" "$CONF"
sed -i 's/^error_sleep_time = 0$/error_sleep_time = 1s/' "$CONF"
printf 'soft_error_limit = 2\n' >> "$CONF"
reloads=$(grep -c 'reloaded' "$SMTPD_LOG")
kill -HUP "$SMTPD_PID"
i=0
while [ "$(grep -c 'reloaded' "$SMTPD_LOG")" = "$reloads" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
# Each reply timed by the client itself (not the client's start-up).
rc 127.0.0.1 "$SMTPD_PORT" "C:EHLO client.example.net" "C:BOGUS" "C:BOGUS" "C:BOGUS" "C:BOGUS" "C:NOOP"
tl_is "$(rc_line 7)" "250 2.0.0 Ok" "soft_error_limit: replies go on"
tl_is "$(rc_line 3)" "502 5.5.2 Error: command not recognized" "soft_error_limit: the first error is answered"
tl_ok "$([ "$(rc_ms 3)" -lt 900 ] && [ "$(rc_ms 4)" -lt 900 ] && echo 0 || echo 1)" \
    "soft_error_limit: two errors are not delayed ($(rc_ms 3), $(rc_ms 4) ms)"
tl_ok "$([ "$(rc_ms 5)" -ge 950 ] && [ "$(rc_ms 6)" -ge 950 ] && echo 0 || echo 1)" \
    "soft_error_limit: the third and fourth wait error_sleep_time ($(rc_ms 5), $(rc_ms 6) ms)"
cp "$T/good.conf" "$CONF"
kill -HUP "$SMTPD_PID"
sleep 0.5

# A trusted client's HELO is not checked, but it cannot shape the header.
before=$(sm_sink_count)
sm_swaks --local-interface 127.0.0.2 --ehlo 'x (by mx.google.com with ESMTPS; Mon, 1 Jan 2024) <a@b>' \
    --from sender@sender.test --to user@example.com
tl_ok $? "a trusted client whose HELO forges a clause is relayed"
sleep 0.3
tl_is "$(sm_sink_count)" $((before + 1)) "... the sink has it"
tl_is "$(grep -h '^Received: from x' $(ls -t "$SINK_DIR"/* | head -1) | tr -d '\r')" \
    'Received: from x??by?mx.google.com?with?ESMTPS??Mon,?1?Jan?2024???a?b? (unknown [127.0.0.2])' \
    "... its Received: header has the HELO's space, ( ) ; < > @ as ?"

# Nor can a HELO far longer than a host name: the field still ends its
# line (it lost its CRLF, and the message's first header line was glued on).
before=$(sm_sink_count)
sm_swaks --local-interface 127.0.0.2 --ehlo "h$(printf '%01980d' 0).example" \
    --from sender@sender.test --to user@example.com --header "Subject: long helo"
tl_ok $? "a trusted client with a 1,989-byte HELO is relayed"
sleep 0.3
tl_is "$(sm_sink_count)" $((before + 1)) "... the sink has it"
MSG=$(ls -t "$SINK_DIR"/* | head -1)
tl_is "$(grep -c '^Subject: long helo' "$MSG") $(grep '^Received: from h0' "$MSG" | tr -d '\r' | awk '{ print length($3) }')" "1 255" \
    "... its Subject: is a header line of its own, the HELO in Received: cut to 255 bytes"

sent_before=$(sm_sink_count)
connects=$(grep -c ': connect from' "$SMTPD_LOG")
$SMTPCHAT "$SMTPD_PORT" '<' "$EHLO" '<' end > "$T/term.out" 2>&1 &
HELD=$!
$SMTPCHAT "$SMTPD_PORT" '<' "$EHLO" '<' '>MAIL FROM:<sender@sender.test>\r\n' '<' '>RCPT TO:<user@example.com>\r\n' '<' \
    '>DATA\r\n' '<' '~1.5' '>Subject: in flight\r\n\r\nbody\r\n.\r\n' '<' end > "$T/term2.out" 2>&1 &
BUSY=$!
# Both clients connected (a loaded machine starts python slowly), then
# the busy one is in its DATA pause when the TERM comes.
i=0
while [ "$(grep -c ': connect from' "$SMTPD_LOG")" -lt $((connects + 2)) ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
sleep 0.6
sm_stop
wait "$HELD"
wait "$BUSY"
tl_is "$(sm_line 9 "$T/term.out")" "421 4.3.2 $HOST Service shutting down, closing transmission channel" \
    "SIGTERM: an idle session hears 421"
tl_is "$(sed -n '12,13p' "$T/term2.out" | tr '\n' '|')" \
    "250 2.0.0 Ok|421 4.3.2 $HOST Service shutting down, closing transmission channel|" \
    "SIGTERM: a transaction under way finishes, then 421"
tl_is "$(sm_sink_count)" $((sent_before + 1)) "SIGTERM: the message in flight was delivered"
tl_is "$(grep -c 'stopping on signal TERM' "$SMTPD_LOG") stop line(s), pid file $([ -e "$T/smtpd.pid" ] && echo there || echo gone)" \
    "1 stop line(s), pid file gone" "SIGTERM: smtpd stopped, and the pid file is removed"
sm_sanitizer_check "no sanitizer reports"

tl_done
