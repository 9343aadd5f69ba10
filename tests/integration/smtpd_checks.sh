#!/bin/sh
# smtpd_checks.sh - rcptgate-smtpd's restrictions end to end, with swaks
#
# A private rcptgate-smtpd (tests/lib/smtpd.sh) in front of smtp-sink,
# and swaks as the client: from 127.0.0.1 an outsider, bound to
# 127.0.0.2 a trusted (mynetworks) client. Each case asserts the exact
# reply to RCPT TO; the rejections are also looked for in the log.
# Phases: every check enforcing (relay control, the 16 open-relay forms,
# HELO, sender, recipient, access lists in the config and in the store,
# a store failure), then warn_if_reject (the mail is accepted and the
# log says reject_warning, relay control still refuses), then checks
# switched off one by one. DNSBL, RHSBL and sender-domain lookups are in
# smtpd_dns.sh (they need the test DNS server).
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"
tl_init smtpd_checks

[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd is not built ($RG_SMTPD)"
tl_need_tool "$SWAKS" swaks
tl_need_tool sqlite3 "sqlite3 (the command)"
SINK=${SMTP_SINK:-$(command -v smtp-sink || echo /usr/sbin/smtp-sink)}
tl_need_tool "$SINK" smtp-sink

# The downstream: smtp-sink accepts everything the relay passes on.
SINK_PORT=$(sm_port)
_sink_user=""
[ "$(id -u)" = 0 ] && _sink_user="-u nobody"
# shellcheck disable=SC2086
"$SINK" $_sink_user "127.0.0.1:$SINK_PORT" 20 >"$T/sink.out" 2>&1 &
tl_pids="$tl_pids $!"
HOP="smtp:[127.0.0.1]:$SINK_PORT"

# The store: our domains and recipients, a group for internal senders only.
{
    tl_admin domain add example.com "$HOP" &&
    tl_admin domain add corp.example "$HOP" --subdomains &&
    tl_admin domain add gateway.test "$HOP" &&
    tl_admin static add postmaster@gateway.test &&
    tl_admin static add alice@example.com &&
    tl_admin static add postmaster@example.com &&
    tl_admin static add allstaff@example.com &&
    tl_admin static add bob@sales.corp.example &&
    tl_admin access add sender @spam.example REJECT &&
    tl_admin access add recipient gone@example.com REJECT 5.1.6 moved away &&
    tl_admin access add helo .evil2.example DEFER
} >"$T/setup.log" 2>&1 || { sed 's/^/# /' "$T/setup.log"; echo "Bail out! store setup"; exit 1; }
sqlite3 "$STORE" "UPDATE recipient SET flags = 1 WHERE address = 'allstaff@example.com'" ||
    { echo "Bail out! store flags"; exit 1; }
cp "$CONF" "$T/base.conf"

# phase EXTRA... - (re)start smtpd with these [smtpd] lines
phase() {
    sm_stop
    cp "$T/base.conf" "$CONF"
    sm_init "default_nexthop = $HOP" \
        "sender_access = spammer@bad.example REJECT" \
        "recipient_access = closed@example.com REJECT 5.2.1 mailbox closed" \
        "helo_access = evil.example REJECT forged name" "$@"
    sm_start
}

# ck_form DESC RCPT SWAKS-ARGS... - an open-relay form: refused at RCPT as
# relaying (554), or already by the protocol parser as bad syntax (501)
ck_form() {
    _desc=$1
    _to=$2
    shift 2
    sm_swaks --quit-after RCPT "$@" --to "$_to"
    _got=$(rcpt_reply)
    case "$_got" in
    "554 5.7.1 <$_to>: Relay access denied" | "501 5.1.3 Bad recipient address syntax")
        tl_ok 0 "$_desc: $_got" ;;
    *)
        tl_is "$_got" "554 5.7.1 <$_to>: Relay access denied" "$_desc" ;;
    esac
}

# first_refusal - the first 4xx/5xx reply of the last transcript
first_refusal() {
    sed -n 's/^<\*\* *//p' "$T/swaks.out" | head -1
}

# out WANT DESC RCPT [ARGS] - an outsider with a clean HELO and sender
out() {
    _want=$1
    _desc=$2
    _to=$3
    shift 3
    ck "$_desc" "$_want" --ehlo mail.sender.example --from someone@sender.example --to "$_to" "$@"
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

phase || { echo "Bail out! smtpd did not start"; exit 1; }
sm_swaks --quit-after EHLO --ehlo probe.example
grep -q '^<-  250 ' "$T/swaks.out"
tl_ok $? "EHLO answered"

# ---- relay control
out "$OK" "outsider to a valid recipient" alice@example.com
out "$OK" "outsider to a valid recipient, other case" Alice@EXAMPLE.com
out "$OK" "outsider to a valid recipient with an extension" alice+news@example.com
out "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown" \
    "unknown user" nobody@example.com
logged "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown; from=<someone@sender.example> to=<nobody@example.com>" \
    "unknown user logged as Postfix does"
out "$OK" "subdomain of a domain with subdomains" bob@sales.corp.example
out "550 5.1.1 <carol@sales.corp.example>: Recipient address rejected: User unknown" \
    "unknown user in a subdomain" carol@sales.corp.example
out "554 5.7.1 <someone@elsewhere.example>: Relay access denied" \
    "outsider may not relay" someone@elsewhere.example
out "554 5.7.1 <someone@sub.example.com>: Relay access denied" \
    "no subdomains unless the domain says so" someone@sub.example.com
out "550 5.7.1 <allstaff@example.com>: Recipient address rejected: this group accepts internal senders only" \
    "internal-only group from outside" allstaff@example.com
out "504 5.5.2 <user@localhost>: Recipient address rejected: need fully-qualified address" \
    "non-FQDN recipient" user@localhost
ck "trusted client relays" "$OK" --local-interface 127.0.0.2 \
    --ehlo mail.internal.example --from someone@example.com --to someone@elsewhere.example
ck "trusted client to an internal-only group" "$OK" --local-interface 127.0.0.2 \
    --ehlo mail.internal.example --from someone@example.com --to allstaff@example.com

# ---- the 16 open-relay forms: refused for outsiders and trusted clients alike
for form in \
    'user@elsewhere.example' \
    'user%elsewhere.example@example.com' \
    'user%elsewhere.example@[127.0.0.1]' \
    '"user@elsewhere.example"' \
    '"user%elsewhere.example"' \
    'user@elsewhere.example@example.com' \
    '"user@elsewhere.example"@example.com' \
    '"user@elsewhere.example"@[127.0.0.1]' \
    'user@elsewhere.example@[127.0.0.1]' \
    '@example.com:user@elsewhere.example' \
    '@[127.0.0.1]:user@elsewhere.example' \
    'elsewhere.example!user' \
    'elsewhere.example!user@example.com' \
    'elsewhere.example!user@[127.0.0.1]' \
    'user%elsewhere.example' \
    'user@[192.0.2.200]'; do
    ck_form "relay form $form from outside" "$form" --ehlo mail.sender.example --from someone@sender.example
    [ "$form" = 'user@elsewhere.example' ] && continue
    ck_form "relay form $form from a trusted client" "$form" \
        --local-interface 127.0.0.2 --ehlo mail.internal.example --from someone@example.com
done

# ---- HELO (at RCPT)
ck "invalid HELO" "501 5.5.2 <bad_host!name>: Helo command rejected: Invalid name" \
    --ehlo 'bad_host!name' --from someone@sender.example --to alice@example.com
ck "non-FQDN HELO" "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname" \
    --ehlo localhost --from someone@sender.example --to alice@example.com
ck "a bare address HELO is not an FQDN" "504 5.5.2 <192.0.2.1>: Helo command rejected: need fully-qualified hostname" \
    --ehlo 192.0.2.1 --from someone@sender.example --to alice@example.com
ck "an address literal HELO passes, as in Postfix" "$OK" \
    --ehlo '[192.0.2.1]' --from someone@sender.example --to alice@example.com
ck "an address literal HELO naming our own address is forged" \
    "550 5.7.1 <[127.0.0.1]>: Helo command rejected: forged: that is our own address" \
    --ehlo '[127.0.0.1]' --from someone@sender.example --to alice@example.com
ck "HELO with our host name" "550 5.7.1 <mx.gateway.test>: Helo command rejected: forged: that is our own host name" \
    --ehlo mx.gateway.test --from someone@sender.example --to alice@example.com
ck "HELO with one of our domains" "550 5.7.1 <example.com>: Helo command rejected: forged: that is one of our domains" \
    --ehlo example.com --from someone@sender.example --to alice@example.com
ck "HELO in a domain with subdomains" "550 5.7.1 <host.sales.corp.example>: Helo command rejected: forged: that is one of our domains" \
    --ehlo host.sales.corp.example --from someone@sender.example --to alice@example.com
ck "trusted client: HELO not checked" "$OK" --local-interface 127.0.0.2 \
    --ehlo localhost --from someone@example.com --to alice@example.com

# ---- sender (at RCPT)
ck "non-FQDN sender" "504 5.5.2 <user@localhost>: Sender address rejected: need fully-qualified address" \
    --ehlo mail.sender.example --from user@localhost --to alice@example.com
ck "forged internal sender" "550 5.7.1 <alice@example.com>: Sender address rejected: internal sender address from an untrusted client" \
    --ehlo mail.sender.example --from alice@example.com --to postmaster@example.com
ck "forged internal sender, subdomain" "550 5.7.1 <x@sales.corp.example>: Sender address rejected: internal sender address from an untrusted client" \
    --ehlo mail.sender.example --from x@sales.corp.example --to alice@example.com
ck "internal sender from a trusted client" "$OK" --local-interface 127.0.0.2 \
    --ehlo mail.internal.example --from alice@example.com --to postmaster@example.com
# the README's way to let a real one in (a service sending as helpdesk@): the sender access list
tl_admin access add sender helpdesk@example.com OK >"$T/access.out" 2>&1 || tl_bail "access add: $(cat "$T/access.out")"
ck "forged internal sender let in by a sender access OK (store)" "$OK" \
    --ehlo mail.saas.example --from helpdesk@example.com --to alice@example.com
ck "... only that address" "550 5.7.1 <alice@example.com>: Sender address rejected: internal sender address from an untrusted client" \
    --ehlo mail.saas.example --from alice@example.com --to postmaster@example.com
tl_admin access del sender helpdesk@example.com >"$T/access.out" 2>&1 || tl_bail "access del: $(cat "$T/access.out")"
ck "... and refused again once the entry is gone" \
    "550 5.7.1 <helpdesk@example.com>: Sender address rejected: internal sender address from an untrusted client" \
    --ehlo mail.saas.example --from helpdesk@example.com --to alice@example.com
ck "null sender" "$OK" --ehlo mail.sender.example --from '<>' --to alice@example.com
# Entries that would answer wrong are refused: a 4.x.x code under REJECT, a tab in the text.
tl_admin access add client 192.0.2.9 REJECT 4.7.1 later >"$T/access.out" 2>&1
tl_ok $([ $? = 1 ] && grep -q "REJECT's text starts with a 4.x.x status code" "$T/access.out"; echo $?) \
    "access add: REJECT with a 4.x.x code is refused (it answered 554 5.7.1 4.7.1 ...)"
tl_admin access add client 192.0.2.9 REJECT "$(printf 'a\tb')" >"$T/access.out" 2>&1
tl_ok $([ $? = 1 ] && grep -q "control character" "$T/access.out"; echo $?) "access add: a tab in the text is refused"

# ---- access lists: the configuration's and the store's
ck "sender access REJECT (config)" "554 5.7.1 <spammer@bad.example>: Sender address rejected: Access denied" \
    --ehlo mail.sender.example --from spammer@bad.example --to alice@example.com
ck "sender access REJECT (store, @domain)" "554 5.7.1 <x@spam.example>: Sender address rejected: Access denied" \
    --ehlo mail.sender.example --from x@spam.example --to alice@example.com
out "554 5.2.1 <closed@example.com>: Recipient address rejected: mailbox closed" \
    "recipient access REJECT with a status code (config)" closed@example.com
out "554 5.1.6 <gone@example.com>: Recipient address rejected: moved away" \
    "recipient access REJECT (store)" gone@example.com
ck "HELO access REJECT, parent domain (config)" "554 5.7.1 <mx.evil.example>: Helo command rejected: forged name" \
    --ehlo mx.evil.example --from someone@sender.example --to alice@example.com
ck "HELO access DEFER, subdomains only (store)" "450 4.7.1 <mx.evil2.example>: Helo command rejected: Access denied" \
    --ehlo mx.evil2.example --from someone@sender.example --to alice@example.com
tl_admin access add client 127.0.0.1 REJECT 5.7.1 not from here >>"$T/setup.log" 2>&1
sm_swaks --quit-after RCPT --ehlo mail.sender.example --from someone@sender.example --to alice@example.com
tl_is "$(first_refusal)" "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: not from here" \
    "client access REJECT (store, added while running)"
tl_is "$(sm_spoke "$T/swaks.out" && echo spoke) rcpt='$(rcpt_reply)'" "spoke rcpt=''" \
    "client access REJECT: no RCPT accepted"
tl_admin access del client 127.0.0.1 >>"$T/setup.log" 2>&1
out "$OK" "client access entry removed" alice@example.com

# ---- the store fails: 4xx, never 5xx
opened=$(grep -c 'opened (read-only)' "$T/smtpd.stderr")
sqlite3 "$STORE" "ALTER TABLE recipient RENAME TO recipient_broken"
out "451 4.3.0 <alice@example.com>: Temporary lookup failure" "store failure defers a valid user" alice@example.com
out "451 4.3.0 <nobody@example.com>: Temporary lookup failure" "store failure defers an unknown user" nobody@example.com
sqlite3 "$STORE" "ALTER TABLE recipient_broken RENAME TO recipient"
# A failed lookup closed the store; smtpd opens it again within about a second.
_i=0
while [ "$(grep -c 'opened (read-only)' "$T/smtpd.stderr")" -le "$opened" ] && [ $_i -lt 100 ]; do
    sleep 0.05
    _i=$((_i + 1))
done
out "$OK" "store back" alice@example.com

# ---- warn_if_reject: logged as reject_warning, accepted; relay control still refuses
phase "warn_if_reject = yes" || { echo "Bail out! smtpd did not start (warn)"; exit 1; }
out "$OK" "warn: unknown user accepted" nobody@example.com
logged "reject_warning: RCPT from unknown[127.0.0.1]: 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown;" \
    "warn: unknown user logged as reject_warning"
ck "warn: forged HELO accepted" "$OK" --ehlo mx.gateway.test --from someone@sender.example --to alice@example.com
logged "reject_warning: RCPT from unknown[127.0.0.1]: 550 5.7.1 <mx.gateway.test>: Helo command rejected: forged: that is our own host name;" \
    "warn: forged HELO logged as reject_warning"
ck "warn: forged sender accepted" "$OK" --ehlo mail.sender.example --from alice@example.com --to postmaster@example.com
logged "reject_warning: RCPT from unknown[127.0.0.1]: 550 5.7.1 <alice@example.com>: Sender address rejected: internal sender address" \
    "warn: forged sender logged as reject_warning"
out "554 5.7.1 <someone@elsewhere.example>: Relay access denied" "warn: relay control still refuses" someone@elsewhere.example
out "554 5.7.1 <user%elsewhere.example@example.com>: Relay access denied" "warn: relay forms still refused" \
    'user%elsewhere.example@example.com'
sm_swaks --ehlo mx.gateway.test --from alice@example.com --to nobody@example.com
tl_like "$(grep -E '^<(-|\*\*) +[0-9]{3} ' "$T/swaks.out" | tail -2 | head -1)" '^<-  250 ' \
    "warn: the whole message is accepted and relayed"

# ---- checks switched off one by one
phase "reject_unknown_recipient = off" "reject_forged_helo = off" "reject_forged_sender = off" \
    "reject_internal_only = off" || { echo "Bail out! smtpd did not start (off)"; exit 1; }
: > "$SMTPD_LOG"
out "$OK" "off: unknown user" nobody@example.com
ck "off: forged HELO" "$OK" --ehlo mx.gateway.test --from someone@sender.example --to alice@example.com
ck "off: forged sender" "$OK" --ehlo mail.sender.example --from alice@example.com --to postmaster@example.com
out "$OK" "off: internal-only group" allstaff@example.com
tl_is "sessions=$(grep -c ' connect from unknown\[127\.0\.0\.1\]' "$SMTPD_LOG") rejections=$(grep -c 'reject' "$SMTPD_LOG")" \
    "sessions=4 rejections=0" "off: four sessions logged, nothing logged as a rejection"
out "554 5.7.1 <someone@elsewhere.example>: Relay access denied" "off: relay control still refuses" someone@elsewhere.example

# ---- RCPT TO:<Postmaster> without a domain (RFC 5321 4.5.1): the postmaster
# of our host name's domain (hostname = mx.gateway.test; gateway.test is ours)
phase
sm_chat '<' '>EHLO client.example.net\r\n' '<' '>MAIL FROM:<someone@client.example.net>\r\n' '<' \
    '>RCPT TO:<Postmaster>\r\n' '<' '>QUIT\r\n' '<'
tl_like "$(grep '^250 ' "$T/chat.out" | tail -1)" "^250 2\.1\.5 " "RCPT TO:<Postmaster> without a domain: 250"
tl_like "$(grep -c 'NOQUEUE: reject' "$SMTPD_LOG")" "^0$" "... nothing refused"

# ---- a malformed access entry is a config error
sm_stop
cp "$T/base.conf" "$CONF"
sm_init "client_access = 192.0.2.300 REJECT"
"$RG_SMTPD" -c "$CONF" -n >"$T/check.out" 2>&1
tl_is "$?" 78 "malformed client_access entry: -n exits 78"
tl_like "$(cat "$T/check.out")" 'rcptgate\.conf:[0-9]+: \[smtpd\] client_access: "192\.0\.2\.300 REJECT": "192\.0\.2\.300": not an address' \
    "the error names the file line and the entry"
tl_done
