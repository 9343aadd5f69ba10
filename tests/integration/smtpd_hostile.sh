#!/bin/sh
# smtpd_hostile.sh - rcptgate-smtpd against hostile input
#
# SMTP smuggling sequences, bare CR and LF in commands and data, a 10 MB
# line, NUL bytes, STARTTLS injection and STARTTLS twice, AUTH before
# TLS, pregreet, unauthorised pipelining, over-long paths, absurd SIZE=,
# too many recipients, an oversized message. Each case asserts smtpd's
# reply and that nothing reached the downstream smtp-sink (after the
# client's transcript shows smtpd's banner, and with the sink still up:
# "nothing arrived" from a session that never happened proves nothing).
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"

tl_init smtpd_hostile
[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
tl_need_tool "$SMTP_SINK" smtp-sink
tl_need_tool python3 python3
tl_need_tool openssl openssl

# A throw-away certificate for STARTTLS.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 2 \
    -subj /CN=mx.gateway.test >/dev/null 2>&1 || tl_bail "openssl cannot make a certificate"
chmod 600 "$T/key.pem"

SINK_PORT=$(( $(sm_port) + 2 ))
sm_init "recipient_limit = 100" "message_size_limit = 50000" "greet_pause = 200ms" \
    "tls_cert_file = $T/cert.pem" "tls_key_file = $T/key.pem" "relay_tls = none"
sm_sink_start || tl_bail "smtp-sink did not start"
{ tl_admin domain add example.com "smtp:[127.0.0.1]:$SINK_PORT" &&
    tl_admin static add user@example.com; } >"$T/admin.out" 2>&1 || tl_bail "store setup: $(cat "$T/admin.out")"
sm_lsan
sm_start_or_bail

HOST=mx.gateway.test
EHLO='>EHLO client.example.net\r\n'
MAIL='>MAIL FROM:<sender@sender.test>\r\n'
RCPT='>RCPT TO:<user@example.com>\r\n'
SINK_WANT=0

# sink_same MSG - the last session happened (smtpd's banner is in the
# transcript), the sink is still up, and nothing new reached it
sink_same() {
    sleep 0.2
    _spoke=no
    sm_spoke && _spoke=yes
    _up=down
    kill -0 "$SINK_PID" 2>/dev/null && _up=up
    tl_is "session $_spoke, sink $_up, sink has $(sm_sink_count)" "session yes, sink up, sink has $SINK_WANT" \
        "$1: nothing reached the sink"
}

# reply_of PATTERN - the first reply line matching PATTERN (grep -E)
reply_of() {
    grep -E "$1" "$T/chat.out" | head -1
}

# The control: a good message does arrive, so "nothing arrived" means something.
sm_chat '<' "$EHLO" '<' "$MAIL" '<' "$RCPT" '<' '>DATA\r\n' '<' '>Subject: ok\r\n\r\nfine\r\n.\r\n' '<' '>QUIT\r\n' '<'
tl_like "$(reply_of '^250 2\.0\.0')" "^250 2\\.0\\.0 Ok" "control: a clean message is relayed"
SINK_WANT=1
sink_same "control"
STARTTLS_OFFERED=$(grep -c '^250-STARTTLS' "$T/chat.out")

# ---------------------------------------------------------------- smuggling
n=0
for seq in '\n.\r\n' '\n.\n' '\r\n.\r\r\n' '\r.\r'; do
    n=$((n + 1))
    name=$(echo "LF.CRLF LF.LF CRLF.CRCRLF CR.CR" | cut -d' ' -f$n)
    sm_chat '<' "$EHLO" '<' "$MAIL" '<' "$RCPT" '<' '>DATA\r\n' '<' \
        ">Subject: smuggle $n\\r\\n\\r\\nfirst${seq}MAIL FROM:<evil@sender.test>\\r\\nRCPT TO:<user@example.com>\\r\\nDATA\\r\\n\\r\\nsmuggled\\r\\n.\\r\\n" \
        '<' end
    tl_like "$(reply_of '^5')" "^521 5\\.5\\.2 $HOST Error: bare <(LF|CR)> received$" "smuggling <$name>: 521 bare newline"
    tl_is "$(tail -1 "$T/chat.out")" "CLOSED" "smuggling <$name>: disconnected"
    sink_same "smuggling <$name>"
done
tl_like "$(grep 'bare <LF> received after DATA' "$SMTPD_LOG" | tail -1)" "warning: bare <LF> received after DATA \\([0-9]+ bytes\\) from unknown\\[127\\.0\\.0\\.1\\]" \
    "log: bare <LF> in DATA"

# ---------------------------------------------------------------- bare CR/LF in commands, long lines, NUL
sm_chat '<' '>EHLO client.example.net\n' '<' end
tl_is "$(sm_line 2)" "521 5.5.2 $HOST Error: bare <LF> received" "bare LF after a command: 521"
sm_chat '<' '>EHLO client\r.example.net\r\n' '<' end
tl_is "$(sm_line 2)" "521 5.5.2 $HOST Error: bare <CR> received" "bare CR inside a command: 521"
tl_is "$(sm_line 3)" "CLOSED" "bare CR: disconnected"

sm_chat -t 30 '<' "$EHLO" '<' 'fill:10485760:A' '>\r\n' '<' '>NOOP\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 10)" "500 5.5.2 Error: line too long" "a 10 MB line: 500"
tl_is "$(sm_line 11)" "250 2.0.0 Ok" "after a 10 MB line the session goes on"

# A CR as the last byte of a full-length line, its LF in the next write:
# the reader must not look past what it pulled up (an ASan build aborted).
X1996=$(printf '%1996s' '' | tr ' ' X)
A2044=$(printf '%2044s' '' | tr ' ' A)
sm_chat '<' "$EHLO" '<' ">$X1996\r\nNOOP $A2044\r" '~0.2' '>\nQUIT\r\n' '<3'
tl_is "$(tail -n 3 "$T/chat.out" | head -n 2 | tr '\n' '|')" \
    "502 5.5.2 Error: command not recognized|500 5.5.2 Error: line too long|" \
    "a CR ending a full buffer, LF in the next packet: both lines refused"
tl_is "$(tail -n 1 "$T/chat.out")" "221 2.0.0 Bye" "... and the session goes on to QUIT"
tl_ok $(kill -0 "$SMTPD_PID" 2>/dev/null; echo $?) "... and smtpd is still running"

# Control characters and broken UTF-8 from a client reach no log destination raw.
sm_chat '<' '>GET /\x1b[2J\x07\xff\xc3\xa9 HTTP/1.0\r\n' '<' end
tl_like "$(sm_line 2)" "^221 " "a GET line: refused (the session happened)"
tl_like "$(grep 'non-SMTP command' "$T/smtpd.stderr" | tail -1)" 'GET /\?\[2J\?\?é HTTP' \
    "stderr: the GET line is logged with ESC, BEL and 0xff replaced by ?, UTF-8 kept"
tl_like "$(grep 'non-SMTP command' "$SMTPD_LOG" | tail -1)" 'GET /\?\[2J\?\?é HTTP' \
    "log_file: the same, well-formed UTF-8 kept"
tl_is "$(LC_ALL=C grep -c "$(printf '[\033\007\377]')" "$T/smtpd.stderr" "$SMTPD_LOG" | cut -d: -f2 | tr '\n' ' ')" "0 0 " \
    "no ESC, BEL or 0xff byte in stderr or the log file"

sm_chat '<' "$EHLO" '<' '>MAIL FROM:<sen\x00der@sender.test>\r\n' '<' "$MAIL" '<' \
    '>RCPT TO:<us\x00er@example.com>\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 10)" "500 5.5.2 Error: bad syntax" "NUL in a sender address: 500"
tl_is "$(sm_line 12)" "500 5.5.2 Error: bad syntax" "NUL in a recipient address: 500"
sink_same "NUL bytes"

# NUL in message data (message_reject_characters, default \0): RFC 5322
# forbids it and inside servers mis-parse it, so it never goes down.
sm_chat '<' "$EHLO" '<' "$MAIL" '<' "$RCPT" '<' '>DATA\r\n' '<' \
    '>Subject: nul\r\n\r\nbefore\x00after\r\n.\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(reply_of '^354')" "354 End data with <CR><LF>.<CR><LF>" "NUL in DATA: the message was sent (354)"
tl_is "$(reply_of '^550')" "550 5.7.1 Message content rejected" "NUL in DATA: 550 5.7.1 at the dot"
tl_is "$(tail -n 1 "$T/chat.out")" "221 2.0.0 Bye" "NUL in DATA: the session goes on"
sink_same "NUL in DATA"
tl_like "$(grep 'END-OF-MESSAGE' "$SMTPD_LOG" | tail -1)" 'reject: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: 550 5\.7\.1 Message content rejected;' \
    "NUL in DATA: logged as a reject"
# A mail loop (hopcount_limit, default 50): 48 Received: fields from the
# client, one more written "received :" and folded, and smtpd's own make
# 50: refused at the dot, nothing downstream. 48 of them and Received
# lines that are not header fields (X-Received:, one in the body) pass.
HOPS=
i=0
while [ $i -lt 48 ]; do
    HOPS="${HOPS}Received: from hop$i.example.net by hop$((i + 1)).example.net; Sun, 6 Dec 2026 00:00:00 +0000\r\n"
    i=$((i + 1))
done
sm_chat '<' "$EHLO" '<' "$MAIL" '<' "$RCPT" '<' '>DATA\r\n' '<' \
    ">${HOPS}received : from loop.example.net\r\n\tby loop.example.net; Sun, 6 Dec 2026 00:00:00 +0000\r\nSubject: loop\r\n\r\nround again\r\n.\r\n" \
    '<' '>QUIT\r\n' '<'
tl_is "$(reply_of '^554')" "554 5.4.0 Error: too many hops" "hopcount_limit: 49 Received: fields and ours: 554 5.4.0 at the dot"
tl_is "$(tail -n 1 "$T/chat.out")" "221 2.0.0 Bye" "hopcount_limit: the session goes on"
sink_same "a mail loop"
tl_like "$(grep 'END-OF-MESSAGE' "$SMTPD_LOG" | tail -1)" 'reject: END-OF-MESSAGE from .*: 554 5\.4\.0 Error: too many hops;' \
    "hopcount_limit: logged as a reject"
sm_chat '<' "$EHLO" '<' "$MAIL" '<' "$RCPT" '<' '>DATA\r\n' '<' \
    ">${HOPS}X-Received: by filter.example.net\r\nSubject: far\r\n\r\nReceived: in the body\r\n.\r\n" \
    '<' '>QUIT\r\n' '<'
tl_like "$(reply_of '^250 2\.0\.0')" "^250 2\\.0\\.0 Ok" "hopcount_limit: 48 Received: fields and ours pass"
SINK_WANT=$((SINK_WANT + 1))
sleep 0.2
tl_is "$(sm_sink_count)" "$SINK_WANT" "hopcount_limit: ... and reach the sink"
MSG=$(ls -t "$SINK_DIR"/* | head -1)
tl_is "$(grep -c '^Received: from hop' "$MSG") $(grep -c 'by mx.gateway.test (rcptgate)' "$MSG")" "48 1" \
    "hopcount_limit: ... with the 48 and ours"
sed 's/^bare_newline = .*//' "$CONF" > "$T/bad-chars.conf"
printf 'message_reject_characters = \\0\\q\n' >> "$T/bad-chars.conf"
"$RG_SMTPD" -c "$T/bad-chars.conf" -n > "$T/n.out" 2>&1
tl_is "$?" 78 "message_reject_characters with an unknown escape: -n exits 78"
tl_like "$(cat "$T/n.out")" 'message_reject_characters.*unknown escape \\q' "... and names the escape"
sed 's/^bare_newline = .*//' "$CONF" > "$T/bad-chars.conf"
printf 'message_reject_characters = \\0\\r\n' >> "$T/bad-chars.conf"
"$RG_SMTPD" -c "$T/bad-chars.conf" -n > "$T/n.out" 2>&1
tl_is "$?" 78 "message_reject_characters with \\r (every line ends in it): -n exits 78"

# -n loads the TLS key as a start would: one others may read, or owned by
# another user, is refused there too.
cp "$T/key.pem" "$T/key-open.pem"
chmod 644 "$T/key-open.pem"
sed "s|^tls_key_file = .*|tls_key_file = $T/key-open.pem|" "$CONF" > "$T/open-key.conf"
"$RG_SMTPD" -c "$T/open-key.conf" -n > "$T/n.out" 2>&1
tl_is "$?" 78 "-n: a tls_key_file others may read exits 78"
tl_like "$(cat "$T/n.out")" "tls_key_file $T/key-open.pem is accessible by others \\(mode 0644\\): chmod 600 \\(or 640 for a group of its own\\) it" \
    "... and says why and the fix"
"$RG_SMTPD" -c "$CONF" -n > "$T/n.out" 2>&1
tl_is "$?" 0 "-n: the running config with its 0600 key passes"
if [ "$(id -u)" = 0 ]; then
    chmod 600 "$T/key-open.pem"
    chown nobody "$T/key-open.pem"
    "$RG_SMTPD" -c "$T/open-key.conf" -n > "$T/n.out" 2>&1
    tl_is "$?" 78 "-n: a tls_key_file owned by nobody exits 78"
    tl_like "$(cat "$T/n.out")" "belongs to nobody, who could change it: chown root it" "... and names the owner"
fi

# ---------------------------------------------------------------- STARTTLS
# (a certificate is configured: STARTTLS must be offered, or these fail)
tl_is "$STARTTLS_OFFERED" 1 "EHLO offers STARTTLS once a certificate is configured"
sm_chat '<' "$EHLO" '<' '>STARTTLS\r\nMAIL FROM:<evil@sender.test>\r\nRCPT TO:<user@example.com>\r\n' '<' \
    'tls' "$EHLO" '<' "$RCPT" '<' '>STARTTLS\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(reply_of '^220 2')" "220 2.0.0 Ready to start TLS" "STARTTLS: 220"
tl_like "$(reply_of '^TLS')" "^TLS TLSv1\\.[23]$" "STARTTLS: handshake"
tl_is "$(grep -c '^250-STARTTLS' "$T/chat.out")" 1 "STARTTLS is not offered again after TLS"
tl_is "$(reply_of '^503')" "503 5.5.1 Error: need MAIL command" "STARTTLS injection: the plaintext MAIL was discarded"
tl_is "$(reply_of '^554')" "554 5.5.1 Error: TLS already active" "STARTTLS twice: 554"
sink_same "STARTTLS injection"

sm_chat -p "$SMTPD_SUB_PORT" '<' "$EHLO" '<' '>STARTTLS\r\n' '<' 'tls' "$EHLO" '<' '>QUIT\r\n' '<'
tl_is "$(grep -c '^TLS TLSv1' "$T/chat.out") $(sed -n '/^TLS/q;p' "$T/chat.out" | grep -c AUTH)" "1 0" \
    "submission: TLS came up, and no AUTH was offered before it"

sm_chat -p "$SMTPD_SUB_PORT" '<' "$EHLO" '<' '>AUTH PLAIN AHVzZXIAcHc=\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(reply_of '^530')" "530 5.7.0 Must issue a STARTTLS command first" "AUTH before TLS: 530"

# ---------------------------------------------------------------- order, pregreet, pipelining
sm_chat '<' '>DATA\r\n' '<' "$RCPT" '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 2)" "503 5.5.1 Error: need RCPT command" "DATA first: 503"
tl_is "$(sm_line 3)" "503 5.5.1 Error: need MAIL command" "RCPT before MAIL: 503"

sm_chat "$EHLO" '<' end
tl_is "$(sm_line 1)" "554 5.5.0 Error: SMTP protocol synchronization" "pregreet: 554 instead of the banner"
tl_is "$(sm_line 2)" "CLOSED" "pregreet: disconnected"
tl_like "$(grep 'pipelining after CONNECT' "$SMTPD_LOG" | tail -1)" "improper command pipelining after CONNECT from unknown\\[127\\.0\\.0\\.1\\]: EHLO" \
    "log: improper command pipelining after CONNECT"
tl_is "$(grep -c 'pipelining after CONNECT' "$SMTPD_LOG")" 1 "log: one line for one pregreet"

sm_chat '<' '>EHLO client.example.net\r\nMAIL FROM:<sender@sender.test>\r\n' '<' end
tl_is "$(sm_line 2)" "554 5.5.0 Error: SMTP protocol synchronization" "commands pipelined after EHLO: 554"
tl_is "$(sm_line 3)" "CLOSED" "unauthorised pipelining: disconnected"
sm_chat '<' '>HELO client.example.net\r\n' '<' '>MAIL FROM:<sender@sender.test>\r\nRCPT TO:<user@example.com>\r\n' '<' end
tl_is "$(sm_line 3)" "554 5.5.0 Error: SMTP protocol synchronization" "pipelining without EHLO (HELO client): 554"
sm_chat '<' "$EHLO" '<' "$MAIL" '<' "$RCPT" '<' '>DATA\r\nSubject: early\r\n\r\nno wait\r\n.\r\n' '<' end
tl_is "$(sm_line 12)" "554 5.5.0 Error: SMTP protocol synchronization" "message sent before 354: 554"
sink_same "unauthorised pipelining"
sm_chat '<' "$EHLO" '<' '>MAIL FROM:<sender@sender.test>\r\nRCPT TO:<user@example.com>\r\nRSET\r\n' '<3' '>QUIT\r\n' '<'
tl_is "$(sed -n '10,12p' "$T/chat.out" | tr '\n' '|')" "250 2.1.0 Ok|250 2.1.5 Ok|250 2.0.0 Ok|" \
    "PIPELINING after EHLO is fine"

# ---------------------------------------------------------------- paths and sizes
L65=$(printf 'a%.0s' $(seq 1 65))
L64=$(printf 'a%.0s' $(seq 1 64))
LAB64=$(printf 'b%.0s' $(seq 1 64))
D=$(printf 'abcdefghi.%.0s' $(seq 1 26))
L251=$(printf 'l%.0s' $(seq 1 251))
sm_chat '<' "$EHLO" '<' ">MAIL FROM:<$L251@x.y>\\r\\n" '<' ">MAIL FROM:<s@$LAB64.test>\\r\\n" '<' \
    ">MAIL FROM:<s@${D}test>\\r\\n" '<' "$MAIL" '<' ">RCPT TO:<$L65@example.com>\\r\\n" '<' \
    ">RCPT TO:<$L64@${D}test>\\r\\n" '<' '>RSET\r\n' '<' ">MAIL FROM:<$L65@sender.test>\\r\\n" '<' \
    '>QUIT\r\n' '<'
tl_is "$(sm_line 10)" "501 5.1.7 Bad sender address syntax" "sender path over 256 octets"
tl_is "$(sm_line 11)" "501 5.1.7 Bad sender address syntax" "domain label of 64 octets"
tl_is "$(sm_line 12)" "501 5.1.7 Bad sender address syntax" "domain over 255 octets"
tl_is "$(sm_line 14)" "501 5.1.3 Bad recipient address syntax" "recipient local part of 65 octets"
tl_is "$(sm_line 15)" "501 5.1.3 Bad recipient address syntax" "recipient path over 256 octets"
# a sender's local part may pass 64 octets (SRS, BATV, VERP), as Postfix takes it
tl_is "$(sm_line 17)" "250 2.1.0 Ok" "sender local part of 65 octets"

sm_chat '<' "$EHLO" '<' '>MAIL FROM:<sender@sender.test> SIZE=999999999999999999999999999999\r\n' '<' \
    '>MAIL FROM:<sender@sender.test> SIZE=50001\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 4)" "250-SIZE 50000" "EHLO announces SIZE message_size_limit"
tl_is "$(sm_line 10)" "552 5.3.4 Message size exceeds fixed limit" "an absurd SIZE=: 552"
tl_is "$(sm_line 11)" "552 5.3.4 Message size exceeds fixed limit" "SIZE= one above the limit: 552"

BIG=$(printf '%0100d' 0)
sm_chat '<' "$EHLO" '<' "$MAIL" '<' "$RCPT" '<' '>DATA\r\n' '<' '>Subject: big\r\n\r\n' \
    'fill:60000:x' '>\r\n.\r\n' '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 13)" "552 5.3.4 Message size exceeds fixed limit" "a message over the limit: 552 after the dot"
sink_same "oversized message"

set -- '<' "$EHLO" '<' "$MAIL" '<'
i=0
while [ $i -lt 105 ]; do
    set -- "$@" "$RCPT"
    i=$((i + 1))
done
set -- "$@" '<105' '>RSET\r\n' '<' '>QUIT\r\n' '<'
sm_chat "$@"
tl_is "$(grep -c '^250 2.1.5' "$T/chat.out")" 100 "105 recipients: 100 accepted"
tl_is "$(grep -c '^452 4.5.3 Error: too many recipients$' "$T/chat.out")" 5 "105 recipients: 5 x 452 4.5.3"
sink_same "too many recipients"

# ---------------------------------------------------------------- normalize
sed 's/^greet_pause = .*/bare_newline = normalize/' "$CONF" > "$T/conf.new" && cat "$T/conf.new" > "$CONF"
kill -HUP "$SMTPD_PID"
i=0
while ! grep -q 'reloaded' "$SMTPD_LOG" && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
# "<LF>.<LF>" does not end the message (only CRLF . CRLF does, as in
# Postfix's normalize): what follows it is not a command smuggled in
# but more of the message, and the "." a line of it.
sm_chat '<' "$EHLO" '<' "$MAIL" '<' "$RCPT" '<' '>DATA\r\n' '<' \
    '>Subject: norm\r\n\r\nline one\nline two\rline three\r\n..stuffed\n.\nRSET\r\n.\r\n' '<' '>QUIT\r\n' '<'
tl_like "$(sm_line 13)" "^250 2\\.0\\.0" "normalize: CRLF . CRLF ends the data"
tl_like "$(sm_line 14)" "^221 " "normalize: the bare-LF dot line did not: RSET was not taken as a command"
SINK_WANT=3
sleep 0.3
tl_is "$(sm_sink_count)" 3 "normalize: one message reached the sink"
MSG=$(ls -t "$SINK_DIR"/* | head -1)
# smtp-sink stores LF lines: three "line" lines mean the bare CR and LF ended lines;
# a CR that went down raw would still be in the file.
tl_is "$(grep -c '^line ' "$MSG")" 3 "normalize: bare CR and LF became line ends"
tl_is "$(grep -c '^\.stuffed$' "$MSG")" 1 "normalize: dot-stuffing passed through unchanged"
tl_is "$(grep -c '^\.$' "$MSG") $(grep -c '^RSET$' "$MSG")" "1 1" \
    "normalize: the bare-LF dot line and what followed it reached the next hop as lines of the message"
tl_is "message $([ -s "$MSG" ] && echo stored || echo missing), CRs $(tr -cd '\r' < "$MSG" 2>/dev/null | wc -c | tr -d ' ')" \
    "message stored, CRs 0" "normalize: no bare CR went downstream"

sm_stop
sm_sanitizer_check "no sanitizer reports"
tl_done
