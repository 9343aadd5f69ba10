#!/bin/sh
# postfix_gateway.sh - a running Postfix configured as the README says
#
# A private Postfix instance (tests/lib/postfix.sh) gets the main.cf lines
# of the README's "Using it with Postfix" section as they are printed there,
# only the socket paths substituted, and swaks talks to its smtpd, so every
# lookup is the one Postfix's smtpd and trivial-rewrite really make (postmap
# -q cannot show that). lookupd's sockets are in the shared scratch with
# their installed mode and group (0660, postfix), as on a real gateway.
#
# Checked: two domains with two different next hops (two smtp-sinks): each
# valid recipient's mail reaches its own domain's sink, so transport_maps
# routes; an unknown recipient gets Postfix's own table reject; a foreign
# domain is not relayed; lookupd stopped gives 451 4.3.0 and a restarted
# lookupd serves the running Postfix again. Then the README's policy line:
# the same 550 reply byte for byte, the policy's 451 with the tables out of
# the way, and pflogsumm filing every reject under "User unknown".
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"
. "$top_srcdir/tests/lib/postfix.sh"

tl_init postfix_gateway
[ -x "$POSTFIX" ] || tl_skip_all "postfix not installed"
[ -x "$SWAKS" ] || tl_skip_all "swaks not installed"
[ -x "$SMTP_SINK" ] || tl_skip_all "no smtp-sink"
[ "$(id -u)" = 0 ] || tl_skip_all "a private Postfix needs root"
getent group postfix >/dev/null || tl_skip_all "no postfix group"
PFLOGSUMM=${PFLOGSUMM:-$(command -v pflogsumm || echo /usr/sbin/pflogsumm)}

# lookupd's sockets where Postfix's processes (user postfix) can reach them.
tl_shared_dir || tl_skip_all "no shared scratch directory"
mkdir -p "$TS/rcptgate"
chmod 755 "$TS/rcptgate"
SOCK="$TS/rcptgate/socketmap"
POLICY="$TS/rcptgate/policy"
sed -i -e "s|^socketmap = .*|socketmap = unix:$SOCK|" -e "s|^policy = .*|policy = unix:$POLICY|" "$CONF"

# readme_block MARKER - the indented block after the README line starting
# with MARKER, unindented, with lookupd's sockets moved to the test's
readme_block() {
    awk -v m="$1" '
        index($0, m) == 1 { on = 1; next }
        on && /^    / { sub(/^    /, ""); print; got = 1; next }
        on && got && !/^    / { exit }
    ' "$top_srcdir/README.md" | sed -e "s|/run/rcptgate/socketmap|$SOCK|g" -e "s|/run/rcptgate/policy|$POLICY|g"
}
# shellcheck disable=SC2016
readme_block 'In `main.cf`:' > "$T/readme-tables.cf"
readme_block 'Instead of (or beside) the tables, the policy service:' > "$T/readme-policy.cf"
sed 's/^/# tables: /' "$T/readme-tables.cf"
sed 's/^/# policy: /' "$T/readme-policy.cf"
tl_is "$(grep -c "socketmap:unix:$SOCK:" "$T/readme-tables.cf")" 3 \
    "README: relay_domains, relay_recipient_maps and transport_maps use the socketmap"
tl_ok "$(grep -q "^show_user_unknown_table_name = no" "$T/readme-tables.cf"; echo $?)" \
    "README: show_user_unknown_table_name = no"
tl_ok "$(grep -q "check_policy_service unix:$POLICY\$" "$T/readme-policy.cf"; echo $?)" \
    "README: the policy line names the policy socket"

# Two domains, two next hops: a.test and b.test (with its subdomains); and
# c.test with a failover list whose first hop is down, written with the
# transport on every element as rcptgate's docs once had it.
SINK_PORT=$(( $(sm_port) + 2 ))
SINK_A_PORT=$SINK_PORT
sm_sink_start sink-a || tl_skip_all "smtp-sink does not start"
SINK_A=$SINK_DIR
SINK_PORT=$((SINK_A_PORT + 1))
SINK_B_PORT=$SINK_PORT
sm_sink_start sink-b || tl_skip_all "smtp-sink does not start"
SINK_B=$SINK_DIR

cat > "$T/recipients" <<EOF
alice.smith@a.test OK
bob@b.test OK
carol@sub.b.test OK
dave@c.test OK
EOF
DEAD_PORT=$((SINK_A_PORT + 7))
! pf_listening "$DEAD_PORT"
tl_ok $? "nothing listens on c.test's first next hop (127.0.0.1:$DEAD_PORT)"
{
    tl_admin domain add c.test "smtp:[127.0.0.1]:$DEAD_PORT,smtp:[127.0.0.1]:$SINK_B_PORT" &&
    tl_admin domain add a.test "smtp:[127.0.0.1]:$SINK_A_PORT" &&
    tl_admin domain add b.test "smtp:[127.0.0.1]:$SINK_B_PORT" --subdomains &&
    tl_admin import "$T/recipients"
} >/dev/null 2>"$T/admin.err"
tl_ok $? "store: a.test, b.test and c.test with their next hops, four recipients"

# -v: lookupd logs every key Postfix asks, and its answer.
tl_start_lookupd -v
tl_ok $? "lookupd started"
tl_wait_socket "$POLICY"
tl_is "$(stat -c '%a %G' "$SOCK") $(stat -c '%a %G' "$POLICY")" "660 postfix 660 postfix" \
    "lookupd's sockets: mode 0660, group postfix (what an installed lookupd does)"

pf_gateway_init
trap 'pf_stop; tl_cleanup' EXIT     # Postfix's master is not a child of this shell
pf_gateway_conf "$T/readme-tables.cf"
pf_start
tl_ok $? "Postfix started with the README's main.cf lines"
SMTPD_PORT=$PF_PORT
PF_MASTER=$(tr -d ' ' < "$PF_DIR/queue/pid/master.pid")

# at DESC WANT RCPT - Postfix's reply to RCPT TO:<RCPT> must be exactly WANT
at() {
    ck "$1" "$2" --ehlo client.sender.test --from someone@sender.test --to "$3"
}

# send RCPT - a whole message through Postfix; 0 when it was queued
send() {
    sm_swaks --ehlo client.sender.test --from someone@sender.test --to "$1" --header "Subject: to $1"
}

# sink_rcpts DIR - the envelope recipients smtp-sink saw (its X-Rcpt-Args lines)
sink_rcpts() {
    cat "$1"/* 2>/dev/null | tr -d '\r' | sed -n 's/^X-Rcpt-Args: \(<[^>]*>\).*/\1/p' | sort | tr '\n' ' '
}

# ---------------------------------------------------------------- the tables
# RCPT replies: Postfix's own, from the lookupd tables.
UNKNOWN_A="550 5.1.1 <nobody@a.test>: Recipient address rejected: User unknown"
at "valid recipient, mixed case and +tag: 250" "250 2.1.5 Ok" Alice.Smith+news@A.test
at "unknown recipient: Postfix's table reject, exactly" "$UNKNOWN_A" nobody@a.test
at "unknown recipient in a subdomain: the same" \
    "550 5.1.1 <nobody@sub.b.test>: Recipient address rejected: User unknown" nobody@sub.b.test
at "subdomain of a domain without --subdomains: relay access denied" \
    "454 4.7.1 <x@sub.a.test>: Relay access denied" x@sub.a.test
at "foreign domain: relay access denied" \
    "454 4.7.1 <x@foreign.test>: Relay access denied" x@foreign.test

# Mail: each recipient at the sink of its own domain's next hop.
send Alice.Smith+news@A.test
tl_ok $? "mail to Alice.Smith+news@A.test queued"
send bob@b.test
tl_ok $? "mail to bob@b.test queued"
send carol@sub.b.test
tl_ok $? "mail to carol@sub.b.test queued"
send dave@c.test
tl_ok $? "mail to dave@c.test queued"
sm_wait_sink "$SINK_A" 1
sm_wait_sink "$SINK_B" 3
tl_is "$(sink_rcpts "$SINK_A")" "<Alice.Smith+news@A.test> " "a.test's next hop got a.test's mail, and only that"
tl_is "$(sink_rcpts "$SINK_B")" "<bob@b.test> <carol@sub.b.test> <dave@c.test> " \
    "b.test's next hop got b.test's and its subdomain's mail, and c.test's after its dead first hop"
tl_like "$(grep "to=<dave@c.test>" "$PF_LOG" | grep 'status=sent')" "relay=127\.0\.0\.1\[127\.0\.0\.1\]:$SINK_B_PORT" \
    "c.test: Postfix failed over to the second next hop"
tl_is "$(grep -c 'fatal:\|throttling' "$PF_LOG")" 0 "no Postfix process died on a next hop"
tl_is "$(grep -c 'status=bounced' "$PF_LOG")" 0 "no mail fell through to the default route (relay_transport bounces)"
tl_like "$(grep 'status=sent' "$PF_LOG" | grep -c "relay=127.0.0.1\[127.0.0.1\]:$SINK_A_PORT")" '^1$' \
    "Postfix logs a.test's mail as sent to a.test's next hop"

# What Postfix asked: the transport table with the whole address as it
# came (trivial-rewrite keeps its case; smtpd lower-cases its recipients
# lookups), and "*" (the wildcard entry); never with a domain.
tl_like "$(grep -c "socketmap transport Alice.Smith+news@A.test -> OK smtp:\[127.0.0.1\]:$SINK_A_PORT" "$T/lookupd.log")" \
    '^[1-9]' "Postfix asked transport with the whole address as it came, lookupd answered the next hop"
tl_like "$(grep -c "socketmap recipients alice.smith+news@a.test -> OK" "$T/lookupd.log")" \
    '^[1-9]' "Postfix asked recipients with the address lower-cased"
tl_is "$(grep 'socketmap transport ' "$T/lookupd.log" | grep -v 'socketmap transport [^ ]*@' | sort -u | sed 's/.*socketmap //')" \
    "transport * -> NOTFOUND " "Postfix asked transport with no domain, only with \"*\" (not found)"

# lookupd stopped: a known recipient is deferred, never refused or accepted.
tl_stop_lookupd
tl_ok $? "lookupd stopped"
at "lookupd stopped: known recipient gets 451 4.3.0" \
    "451 4.3.0 <bob@b.test>: Temporary lookup failure" bob@b.test

# Started again: the running Postfix is served again, no restart.
tl_start_lookupd -v
tl_ok $? "lookupd started again"
at "lookupd back: known recipient 250" "250 2.1.5 Ok" bob@b.test
at "lookupd back: unknown recipient 550 5.1.1" "$UNKNOWN_A" nobody@a.test
send alice.smith@a.test
tl_ok $? "lookupd back: mail to alice.smith@a.test queued"
sm_wait_sink "$SINK_A" 2
tl_is "$(sm_sink_count "$SINK_A") $(sm_sink_count "$SINK_B")" "2 3" "lookupd back: the mail reached a.test's next hop"
tl_is "$(tr -d ' ' < "$PF_DIR/queue/pid/master.pid")" "$PF_MASTER" "the same Postfix master throughout"
pf_stop

# ---------------------------------------------------------------- the policy service
# The README's policy line beside the tables: the policy answers first.
pf_gateway_conf "$T/readme-tables.cf" "$T/readme-policy.cf"
pf_start
tl_ok $? "Postfix started with the README's tables and policy lines"
at "policy: unknown recipient gets exactly the table's reply" "$UNKNOWN_A" nobody@a.test
at "policy: unknown +tag recipient" \
    "550 5.1.1 <Nobody+x@A.test>: Recipient address rejected: User unknown" Nobody+x@A.test
tl_like "$(grep -c 'policy nobody@a.test -> 550 5.1.1 User unknown' "$T/lookupd.log")" '^[1-9]' \
    "policy: the reject came from the policy service (lookupd's log)"
at "policy: valid recipient 250" "250 2.1.5 Ok" bob@b.test
at "policy: foreign domain, relay access denied" \
    "454 4.7.1 <x@foreign.test>: Relay access denied" x@foreign.test
send carol@sub.b.test
tl_ok $? "policy: mail to carol@sub.b.test queued"
sm_wait_sink "$SINK_B" 4
tl_is "$(sm_sink_count "$SINK_A") $(sm_sink_count "$SINK_B")" "2 4" "policy: the mail reached b.test's next hop"
pf_stop

# The policy alone, with the tables out of the way (relay domains listed in
# main.cf): the policy's own 550, and its 451 when the store cannot answer.
# (relay_transport as Postfix's default, so that smtpd's resolve at RCPT
# time does not ask lookupd either.)
cat > "$T/policy-only.cf" <<EOF
relay_domains = a.test, b.test
relay_transport = relay
EOF
pf_gateway_conf "$T/policy-only.cf" "$T/readme-policy.cf"
pf_start
tl_ok $? "Postfix started with the policy line only"
at "policy only: unknown recipient, the same reply" "$UNKNOWN_A" nobody@a.test
at "policy only: valid recipient 250" "250 2.1.5 Ok" Alice.Smith@a.test
# Postfix sends the policy server no name of its own (server_address and
# server_port only): [rules] hostname set to its myhostname is how the
# forged HELO rule knows it, as in smtpd (and mynetworks set to Postfix's,
# as the README says, so that 127.0.0.1 is an outsider here too).
printf '\n[rules]\nhostname = gateway.test\nmynetworks = 127.0.0.2/32\n' >> "$CONF"
reloads=$(grep -c 'reloaded ' "$T/lookupd.log")
kill -HUP "$LOOKUPD_PID"
i=0
while [ "$(grep -c 'reloaded ' "$T/lookupd.log")" = "$reloads" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
ck "policy only: Postfix's own name as HELO from outside: forged" \
    "550 5.7.1 <alice.smith@a.test>: Recipient address rejected: <gateway.test>: Helo command rejected: forged: that is our own host name" \
    --ehlo gateway.test --from someone@sender.test --to alice.smith@a.test

mv "$STORE" "$STORE.away"
printf 'not a database\n%.0s' 1 2 3 4 5 6 7 8 9 10 > "$STORE"
sleep 1.5       # lookupd notices a replaced store file within a second
at "policy only, store broken: 451 4.3.0, never a 5xx" \
    "451 4.3.0 <alice.smith@a.test>: Recipient address rejected: Temporary lookup failure" \
    alice.smith@a.test
tl_like "$(grep -c 'policy alice.smith@a.test -> 451 4.3.0 Temporary lookup failure' "$T/lookupd.log")" '^[1-9]' \
    "policy only, store broken: the 451 came from the policy service"
rm -f "$STORE"
mv "$STORE.away" "$STORE"
sleep 1.5
at "policy only, store back: 250" "250 2.1.5 Ok" alice.smith@a.test

# lookupd away: Postfix's own answer for a policy service it cannot reach.
tl_stop_lookupd
at "policy only, lookupd stopped: Postfix's 451 4.3.5" \
    "451 4.3.5 <alice.smith@a.test>: Recipient address rejected: Server configuration problem" \
    alice.smith@a.test
pf_stop

# ---------------------------------------------------------------- pflogsumm
# Table and policy rejects read the same, so the log summary has one reason.
table=$(grep -c 'reject: RCPT from .*: 550 5.1.1 <[^>]*>: Recipient address rejected: User unknown;' "$PF_LOG")
tl_is "$table" 6 "Postfix logged six 550 5.1.1 User unknown rejects (three from the tables, three from the policy)"
# (a HELO, sender or client refusal names what it refuses after it: not a repeat)
tl_is "$(grep 'Recipient address rejected: <' "$PF_LOG" \
    | grep -vc '>: \(Helo command\|Sender address\|Client host\) rejected: ')" 0 \
    "no reject repeats Postfix's prefix"
if [ -x "$PFLOGSUMM" ]; then
    "$PFLOGSUMM" --detail 10 "$PF_LOG" > "$T/pflogsumm.out" 2>"$T/pflogsumm.err"
    tl_ok $? "pflogsumm read the maillog"
    tl_like "$(grep -i 'User unknown' "$T/pflogsumm.out" | head -1)" 'User unknown.*\(total: 6\)' \
        "pflogsumm files all six under \"User unknown\""
    tl_is "$(grep -c '@a\.test>: Recipient\|@sub\.b\.test>: Recipient\|@A\.test>: Recipient' "$T/pflogsumm.out")" 0 \
        "pflogsumm lists no address as a reason of its own"
    sed -n '/message reject detail/,/^$/p' "$T/pflogsumm.out" | sed 's/^/# /' | head -30
fi

tl_done
