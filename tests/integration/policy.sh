#!/bin/sh
# policy.sh - the Postfix policy delegation protocol on lookupd's policy socket
#
# Requests are the attribute lists Postfix's check_policy_service sends;
# the reply must be exactly one "action=..." line and an empty line.

. "$top_srcdir/tests/lib/testlib.sh"
tl_init policy
trap '' PIPE

printf 'alice@example.com OK\n' > "$T/recipients"
tl_admin domain add example.com >/dev/null 2>"$T/admin.err" &&
tl_admin import "$T/recipients" >/dev/null 2>>"$T/admin.err"
tl_ok $? "store filled with the admin command"
[ -s "$T/admin.err" ] && sed 's/^/# /' "$T/admin.err"

tl_start_lookupd || tl_bail "lookupd did not start ($RG_LOOKUPD)"
tl_ok 0 "lookupd started"
tl_wait_socket "$POLICY"
tl_ok $? "policy socket is there"

# req STATE RECIPIENT - a request as Postfix 3.7 writes it: every attribute
# it sends, and only those (no server_hostname: our own name is ours to know)
req() {
    cat <<EOF
request=smtpd_access_policy
protocol_state=$1
protocol_name=ESMTP
client_address=${CLIENT:-192.0.2.10}
client_name=mx.sender.test
client_port=41234
reverse_client_name=mx.sender.test
server_address=127.0.0.1
server_port=25
helo_name=${HELO:-mx.sender.test}
sender=${SENDER:-someone@sender.test}
recipient=$2
recipient_count=0
queue_id=
instance=1a2b.5f6e7d8c.9a0b1.0
size=0
etrn_domain=
stress=
sasl_method=
sasl_username=${LOGIN:-}
sasl_sender=
ccert_subject=
ccert_issuer=
ccert_fingerprint=
ccert_pubkey_fingerprint=
encryption_protocol=TLSv1.3
encryption_cipher=TLS_AES_256_GCM_SHA384
encryption_keysize=256
policy_context=

EOF
}

# ask - send stdin to the policy socket, print the replies
ask() {
    "$RG_CLIENT" -p -t 3000 "unix:$POLICY"
}

# Postfix writes "<rcpt>: Recipient address rejected: " before the text and
# takes the code from a numeric action: 550 5.1.1 as from its own table.
REJECT="action=550 5.1.1 User unknown"

tl_is "$(req RCPT alice@example.com | ask)" "action=DUNNO" "valid recipient: DUNNO"
tl_is "$(req RCPT Alice+news@EXAMPLE.com | ask)" "action=DUNNO" "valid recipient, mixed case and +tag: DUNNO"
tl_is "$(req RCPT bob@example.com | ask)" "$REJECT" "unknown recipient in our domain: 550 5.1.1"
# Relaying is Postfix's (reject_unauth_destination knows its local domains too).
tl_is "$(req RCPT bob@foreign.test | ask)" "action=DUNNO" "domain not ours: DUNNO (relay control is Postfix's)"
# The rules smtpd applies apply here too (lib/rules.c), with [rules] mynetworks.
tl_is "$(SENDER=bob@example.com req RCPT alice@example.com | ask)" \
    "action=550 5.7.1 <bob@example.com>: Sender address rejected: internal sender address from an untrusted client" \
    "our domain as sender, client outside mynetworks: 550 5.7.1 (reject_forged_sender)"
tl_is "$(CLIENT=127.0.0.1 SENDER=bob@example.com req RCPT alice@example.com | ask)" "action=DUNNO" \
    "our domain as sender, client in mynetworks: DUNNO"
tl_is "$(req RCPT 'bad address@@example.com' | ask)" "action=501 5.1.3 Bad recipient address syntax" \
    "malformed recipient: 501 5.1.3 as from smtpd"
tl_is "$(req RCPT 'user@elsewhere.test@example.com' | ask)" "action=554 5.7.1 Relay access denied" \
    "two @: an open-relay form, 554 5.7.1 as from smtpd"
tl_is "$(req MAIL '' | ask)" "action=DUNNO" "MAIL state: DUNNO"
tl_is "$(req DATA bob@example.com | ask)" "action=DUNNO" "DATA state: DUNNO even for an unknown recipient"
tl_is "$(req END-OF-MESSAGE bob@example.com | ask)" "action=DUNNO" "END-OF-MESSAGE state: DUNNO"

# The exact bytes: one action line and an empty line.
out=$(req RCPT bob@example.com | "$RG_CLIENT" -p "unix:$POLICY" | od -An -c | tr -s ' ' | tr -d '\n')
tl_like "$out" 'u n k n o w n \\n \\n *$' "reply ends with exactly one empty line"

# Several requests on one connection, pipelined, answered in order.
out=$( { req RCPT alice@example.com; req RCPT bob@example.com; req RCPT carol@foreign.test; } | ask)
want=$(printf 'action=DUNNO\n\n%s\n\naction=DUNNO' "$REJECT")
tl_is "$out" "$want" "three requests on one connection, in order"

# A well-formed request of another type: DUNNO, and logged.
out=$(printf 'request=junk_policy\nprotocol_state=RCPT\nrecipient=bob@example.com\n\n' | ask)
tl_is "$out" "action=DUNNO" "unknown request type: DUNNO"
grep -q 'unknown request type "junk_policy"' "$T/lookupd.log"
tl_ok $? "unknown request type: logged"

# Garbage closes the connection without an answer.
garbage() {
    out=$(printf "$2" | ask)
    tl_is "$out" "CLOSED" "$1: connection closed"
}
garbage "line without =" 'request=smtpd_access_policy\nprotocol_state RCPT\n\n'
garbage "attribute without a name" 'request=smtpd_access_policy\n=RCPT\n\n'
garbage "no request attribute" 'protocol_state=RCPT\nrecipient=bob@example.com\n\n'
garbage "empty request" '\n'
i=0
attrs=""
while [ $i -lt 101 ]; do
    attrs="${attrs}x$i=y\\n"
    i=$((i + 1))
done
garbage "101 attributes" "request=smtpd_access_policy\\n$attrs\\n"
big=$(head -c 10300 /dev/zero | tr '\0' x)
garbage "request over 10 KB" "request=smtpd_access_policy\\nccert_subject=$big\\n\\n"
big=$(head -c 12000 /dev/zero | tr '\0' x)
garbage "10 KB without a newline" "request=smtpd_access_policy\\nccert_subject=$big"
n=$(grep -c 'policy client .*malformed request' "$T/lookupd.log")
tl_is "$n" 7 "one log line per malformed request"

# 100 attributes is still fine.
i=0
attrs=""
while [ $i -lt 97 ]; do
    attrs="${attrs}x$i=y\\n"
    i=$((i + 1))
done
out=$(printf "request=smtpd_access_policy\\nprotocol_state=RCPT\\nrecipient=bob@example.com\\n$attrs\\n" | ask)
tl_is "$out" "$REJECT" "100 attributes: answered"

tl_stop_lookupd
tl_ok $? "lookupd stopped with status 0"
counts=$(sed -n 's/^\(policy\.[a-z]*\) /\1=/p' "$T/lookupd.stats" | tr '\n' ' ')
tl_is "$counts" "policy.dunno=10 policy.reject=7 policy.defer=0 " "policy counters in the stats file"

# reject_text is the text after Postfix's own "<rcpt>: Recipient address rejected: ".
printf 'reject_text = No such person here\n' >> "$CONF"
tl_start_lookupd
tl_wait_socket "$POLICY"
tl_is "$(req RCPT bob@example.com | ask)" "action=550 5.1.1 No such person here" "reject_text: the text of the 550"
tl_stop_lookupd
tl_ok $? "lookupd stopped with status 0"

# mynetworks and the rules are [rules]' keys, smtpd's and ours alike; the old
# [smtpd] spelling is still read (with a warning), here too.
cp "$CONF" "$T/base.conf"
printf '\n[smtpd]\nmynetworks = 192.0.2.0/24\n' >> "$CONF"
tl_start_lookupd
tl_wait_socket "$POLICY"
tl_is "$(SENDER=bob@example.com req RCPT alice@example.com | ask)" "action=DUNNO" \
    "[smtpd] mynetworks (old spelling) is read: the client is trusted"
tl_like "$(cat "$T/lookupd.log")" "mynetworks has moved from \[smtpd\] to \[rules\]" "and a warning says it moved"
tl_stop_lookupd
printf '\n[rules]\nmynetworks = 127.0.0.0/8\n' >> "$CONF"
"$RG_LOOKUPD" -c "$CONF" -n > "$T/n.out" 2>&1
tl_is "$?" 78 "mynetworks in [rules] and in [smtpd]: lookupd -n exits 78"
tl_like "$(cat "$T/n.out")" 'is set in \[rules\] .* and in \[smtpd\]' "and says which to keep"
cp "$T/base.conf" "$CONF"
printf '\n[rules]\nmynetworks = 192.0.2.0/24\n' >> "$CONF"
tl_start_lookupd
tl_wait_socket "$POLICY"
tl_is "$(SENDER=bob@example.com req RCPT alice@example.com | ask)" "action=DUNNO" \
    "[rules] mynetworks: the client is trusted"
tl_is "$(CLIENT=198.51.100.1 SENDER=bob@example.com req RCPT alice@example.com | ask | cut -c1-16)" "action=550 5.7.1" \
    "[rules] mynetworks: another client is not"
tl_stop_lookupd
cp "$T/base.conf" "$CONF"

# Senders Postfix takes (it has no 64-octet limit on a local part, and
# takes "a..b@x") are judged by their domain all the same, and owned by no
# login but as the store says; one without a domain as Postfix stores it.
cp "$T/base.conf" "$CONF"
printf '\n[rules]\nsender_access = spam.example REJECT\n' >> "$CONF"
tl_start_lookupd
tl_wait_socket "$POLICY"
x65=$(head -c 65 /dev/zero | tr '\0' x)
DENIED="Sender address rejected: Access denied"
FORGED="Sender address rejected: internal sender address from an untrusted client"
tl_is "$(SENDER=$x65@spam.example req RCPT alice@example.com | ask)" \
    "action=554 5.7.1 <$x65@spam.example>: $DENIED" "65-octet local part: the sender access list sees its domain"
tl_is "$(SENDER=$x65@example.com req RCPT alice@example.com | ask)" \
    "action=550 5.7.1 <$x65@example.com>: $FORGED" "65-octet local part in our domain from outside: forged"
tl_is "$(SENDER=$x65@sender.test req RCPT alice@example.com | ask)" "action=DUNNO" \
    "65-octet local part elsewhere: DUNNO, as smtpd takes it"
tl_is "$(SENDER=a..b@spam.example req RCPT alice@example.com | ask)" \
    "action=554 5.7.1 <a..b@spam.example>: $DENIED" "a sender addr_parse refuses: the access list sees the text after its last @"
tl_is "$(SENDER=a..b@Example.COM req RCPT alice@example.com | ask)" \
    "action=550 5.7.1 <a..b@Example.COM>: $FORGED" "a sender addr_parse refuses, in our domain from outside: forged"
tl_is "$(SENDER=a..b@localhost req RCPT alice@example.com | ask)" \
    "action=504 5.5.2 <a..b@localhost>: Sender address rejected: need fully-qualified address" \
    "a sender addr_parse refuses, domain not qualified: non-FQDN"
tl_is "$(SENDER='a..b@-bad-.example' req RCPT alice@example.com | ask)" \
    "action=504 5.5.2 <a..b@-bad-.example>: Sender address rejected: need fully-qualified address" \
    "a sender whose domain is not valid: non-FQDN, as Postfix's reject_non_fqdn_sender"
tl_is "$(CLIENT=127.0.0.1 LOGIN=alice SENDER=a..b@sender.test req RCPT alice@example.com | ask)" \
    "action=553 5.7.1 <a..b@sender.test>: Sender address rejected: not owned by user alice" \
    "a sender addr_parse refuses is no login's"
tl_is "$(CLIENT=127.0.0.1 SENDER=a..b@example.com req RCPT alice@example.com | ask)" "action=DUNNO" \
    "a sender addr_parse refuses, from mynetworks: DUNNO"
tl_stop_lookupd
printf 'reject_non_fqdn_sender = warn\n' >> "$CONF"
tl_start_lookupd
tl_wait_socket "$POLICY"
tl_is "$(CLIENT=127.0.0.1 LOGIN=alice SENDER='example.com!ceo' req RCPT bob@example.com | ask)" \
    "action=553 5.7.1 <example.com!ceo>: Sender address rejected: not owned by user alice" \
    "non-FQDN warn: host!user from a login is judged as user@host"
tl_is "$(CLIENT=127.0.0.1 LOGIN=alice SENDER=ceo req RCPT bob@example.com | ask)" \
    "action=553 5.7.1 <ceo>: Sender address rejected: not owned by user alice" \
    "non-FQDN warn: a bare user is no login's"
tl_is "$(SENDER='example.com!ceo' req RCPT alice@example.com | ask)" \
    "action=550 5.7.1 <example.com!ceo>: $FORGED" "non-FQDN warn: host!user in our domain from outside is forged"
tl_is "$(SENDER='sender.test!ceo' req RCPT alice@example.com | ask)" "action=DUNNO" \
    "non-FQDN warn: host!user elsewhere from outside: DUNNO"
tl_stop_lookupd
tl_ok $? "lookupd stopped with status 0"
cp "$T/base.conf" "$CONF"

# Our own host name for the forged HELO rule: Postfix does not send it, so
# it is [rules] hostname, as smtpd's, else the system's fully qualified
# name, the one the start line shows (a test machine may have a bare one:
# the non-FQDN rule is off here to reach this one).
printf '\n[rules]\nreject_non_fqdn_helo = off\n' >> "$CONF"
tl_start_lookupd
tl_wait_socket "$POLICY"
own=$(sed -n 's/.*starting: .*, hostname \([^ ]*\)$/\1/p' "$T/lookupd.log" | tail -n 1)
tl_like "$own" '^[A-Za-z0-9]' "no hostname set: the start line names the system's"
FORGED="action=550 5.7.1 <%s>: Helo command rejected: forged: that is our own host name"
# shellcheck disable=SC2059
tl_is "$(HELO=$own req RCPT alice@example.com | ask)" "$(printf "$FORGED" "$own")" \
    "no hostname set: the system's name as HELO from outside is forged"
tl_stop_lookupd
cp "$T/base.conf" "$CONF"
printf '\n[rules]\nhostname = gateway.example.com\n' >> "$CONF"
tl_start_lookupd
tl_wait_socket "$POLICY"
tl_wait_grep 'starting: .*, hostname gateway\.example\.com$' "$T/lookupd.log"
tl_ok $? "[rules] hostname: on the start line"
# shellcheck disable=SC2059
tl_is "$(HELO=gateway.example.com req RCPT alice@example.com | ask)" \
    "$(printf "$FORGED" gateway.example.com)" \
    "[rules] hostname as HELO from outside, as Postfix asks (no server_hostname): 550 5.7.1 forged"
tl_is "$(CLIENT=127.0.0.1 HELO=gateway.example.com req RCPT alice@example.com | ask)" "action=DUNNO" \
    "[rules] hostname as HELO from mynetworks: DUNNO"
{ req RCPT alice@example.com | sed '/^$/d'; printf 'server_hostname=other.example.com\n\n'; } > "$T/extra.req"
sed -i 's/^helo_name=.*/helo_name=gateway.example.com/' "$T/extra.req"
tl_is "$(ask < "$T/extra.req")" "$(printf "$FORGED" gateway.example.com)" \
    "a server_hostname attribute (Postfix sends none) changes nothing"
tl_stop_lookupd
cp "$T/base.conf" "$CONF"
# The old spelling in [smtpd] names smtpd's and ours alike.
printf '\n[smtpd]\nhostname = gateway.example.com\n' >> "$CONF"
tl_start_lookupd
tl_wait_socket "$POLICY"
# shellcheck disable=SC2059
tl_is "$(HELO=gateway.example.com req RCPT alice@example.com | ask)" \
    "$(printf "$FORGED" gateway.example.com)" "[smtpd] hostname (old spelling) is ours too"
tl_stop_lookupd
cp "$T/base.conf" "$CONF"

# Postfix's own prefix in reject_text would be said twice: a configuration error.
sed 's/^reject_text = .*/reject_text = Recipient address rejected: User unknown/' "$CONF" > "$T/prefix.conf"
"$RG_LOOKUPD" -c "$T/prefix.conf" -n > "$T/n.out" 2>&1
rc=$?
tl_is "$rc" 78 "reject_text with Postfix's prefix: lookupd -n exits 78"
tl_like "$(cat "$T/n.out")" 'reject_text.*Postfix writes' "and says Postfix writes the prefix itself"

# Addresses as Postfix sends them: its internal form has the local part's
# quotes taken off; local parts over 64 octets (SRS, VERP) are Postfix's to
# relay; a recipient without a domain, when not refused for it, is Postfix's.
tl_admin static add '"john doe"@example.com' >/dev/null 2>&1
printf 'reject_non_fqdn_recipient = off\n' > "$T/rules.add"
sed '/^\[rules\]/r '"$T/rules.add" "$T/base.conf" > "$CONF"
grep -q '^\[rules\]' "$CONF" || printf '\n[rules]\nreject_non_fqdn_recipient = off\n' >> "$CONF"
tl_start_lookupd
tl_wait_socket "$POLICY"
tl_is "$(req RCPT 'john doe@example.com' | ask)" "action=DUNNO" \
    "recipient in Postfix's internal form (<\"john doe\"@example.com>): found, DUNNO"
tl_like "$(req RCPT 'jane doe@example.com' | ask)" "^action=550 5\.1\.1 " "... an unknown one: 550 5.1.1, not 501"
long=$(printf 'x%.0s' $(seq 70))
tl_is "$(CLIENT=127.0.0.1 req RCPT "SRS0=$long@lists.foreign.test" | ask)" "action=DUNNO" \
    "a 74-octet local part in a domain not ours: DUNNO (Postfix relays it), not 501"
tl_is "$(req RCPT "SRS0=$long@example.com" | ask)" "action=501 5.1.3 Bad recipient address syntax" \
    "... in our domain: 501 5.1.3 as from smtpd"
tl_is "$(CLIENT=127.0.0.1 req RCPT abuse | ask)" "action=DUNNO" \
    "a recipient without a domain, reject_non_fqdn_recipient = off: DUNNO (Postfix appends \$myorigin)"
# A sender's head stays when the sender happens to be the recipient too (mail to oneself).
tl_is "$(CLIENT=198.51.100.1 SENDER=alice@example.com req RCPT alice@example.com | ask)" \
    "action=550 5.7.1 <alice@example.com>: Sender address rejected: internal sender address from an untrusted client" \
    "sender = recipient: the text still names the sender"
# A sender longer than any buffer is judged whole, not by the domain a cut would leave.
big=$(printf 'a%.0s' $(seq 1011))
tl_is "$(SENDER="$big@example.com.attacker.test" req RCPT alice@example.com | ask)" "action=DUNNO" \
    "a 1 KB sender in a domain not ours: DUNNO (cut at 1 KB it ended in @example.com: forged)"
tl_stop_lookupd
cp "$T/base.conf" "$CONF"

# A broken store: 451 4.3.0 (as Postfix's own failed table lookup), never a 5xx.
rm -f "$STORE" "$STORE-wal" "$STORE-shm"
printf 'garbage, not a database\n%.0s' 1 2 3 4 5 6 7 8 9 10 > "$STORE"
tl_start_lookupd || tl_bail "lookupd did not start ($RG_LOOKUPD)"
tl_wait_socket "$POLICY"
out=$(req RCPT bob@example.com | ask)
tl_is "$out" 'action=451 4.3.0 Temporary lookup failure' "corrupt store: 451 4.3.0 for an unknown recipient"
out=$(req RCPT alice@example.com | ask)
tl_is "$out" 'action=451 4.3.0 Temporary lookup failure' "corrupt store: 451 4.3.0 for a known recipient"
tl_is "$(req MAIL '' | ask)" "action=DUNNO" "corrupt store: other states still DUNNO"

tl_stop_lookupd
tl_ok $? "lookupd stopped with status 0"
tl_done
