#!/bin/sh
# transactions.sh - one rule engine, three front ends, the same verdicts
#
# Every transaction of transactions.in goes through
#   smtpd    a real rcptgate-smtpd, with swaks from the client's own
#            loopback address (login: the submission port, STARTTLS, AUTH)
#   policy   a real lookupd's policy socket, the request as Postfix 3.7
#            writes it (no server_hostname: lookupd knows its own name)
#   query    rcptgate query --client --helo --sender --login (no --hostname)
# all reading the same rcptgate.conf ([rules]) and store. Each front end's
# answer is reduced to its verdict ("accept", or the code and enhanced
# status) and compared with transactions.ref, which also holds the rule
# that decided (from query) and smtpd's exact reply. Besides:
#   - query's "smtpd:" line is the reply smtpd really gave,
#   - the policy action is query's "policy:" line, and, for a recipient
#     refusal, reads after Postfix's own "<rcpt>: Recipient address
#     rejected: " byte for byte as smtpd's reply.
# The policy service differs in one verdict, by design: a domain not ours
# (rule relay_control) is DUNNO there, left to Postfix's
# reject_unauth_destination, which knows its own local and virtual domains
# and refuses the rest with smtpd's very reply.
# A front end that never answered gives "no answer": a failure.
# The directive "rules KEY = VALUE" sets a [rules] key for the transactions
# after it: smtpd and lookupd are restarted on the new file.
# RG_GOLDEN_WRITE=1 rewrites the .ref from query's answers (review it).
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"
tl_init transactions
G="$top_srcdir/tests/golden"

RG_LOGINS="$top_builddir/tests/tools/rg_logins"
SASLPASSWD=${SASLPASSWD:-$(command -v saslpasswd2 || echo /usr/sbin/saslpasswd2)}
OPENSSL=${OPENSSL:-$(command -v openssl || echo /usr/bin/openssl)}

[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"
tl_need_tool "$SWAKS" swaks
tl_need_tool "$SMTP_SINK" smtp-sink
tl_need_tool "$SASLPASSWD" saslpasswd2
tl_need_tool "$OPENSSL" openssl
tl_need_tool sqlite3 sqlite3
[ -x "$RG_LOGINS" ] || tl_bail "tests/tools/rg_logins not built"

# ---------------------------------------------------------------- fixtures
mkdir -p "$T/sasl"
umask 077
"$OPENSSL" req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" \
    -days 2 -subj "/CN=mx.gateway.test" >"$T/openssl.log" 2>&1 \
    || tl_bail "openssl could not make a test certificate"
umask 022
cat > "$T/sasl/rcptgate-smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $T/sasldb
mech_list: PLAIN LOGIN
EOF
for u in alice bob; do
    printf '%s-pw' "$u" | "$SASLPASSWD" -f "$T/sasldb" -c -p -u mx.gateway.test "$u" \
        || tl_bail "saslpasswd2 failed"
done

"$RG_LOGINS" "$STORE" fill dir > "$T/fill.out" 2>&1 <<EOF || tl_bail "rg_logins fill: $(cat "$T/fill.out")"
g-alice user alice alice@example.test,a.smith@example.test
g-bob user bob bob@example.test
g-closed user - closed@example.test
g-staff group-internal - allstaff@example.test
EOF

sm_sink_start || tl_bail "smtp-sink did not start"
sm_init \
    "tls_cert_file = $T/cert.pem" \
    "tls_key_file = $T/key.pem" \
    "sasl_config_dir = $T/sasl" \
    "default_nexthop = smtp:[127.0.0.1]:$SINK_PORT" \
    "relay_tls = none" \
    "harvest_threshold = 100"
# One place for the rules: [rules], read by smtpd, lookupd and query alike;
# our own name too (the policy request carries none, query takes it from here).
sed -i -e '/^mynetworks = /d' -e '/^hostname = /d' "$CONF"
cat >> "$CONF" <<EOF

[rules]
hostname = mx.gateway.test
mynetworks = 127.0.0.2/32
client_access = 127.0.0.66 REJECT
sender_access = bad.test REJECT
recipient_access = closed@example.test REJECT 5.2.1 mailbox closed
EOF
tl_admin domain add example.test "smtp:[127.0.0.1]:$SINK_PORT" > "$T/admin.out" 2>&1 \
    || tl_bail "store setup: $(cat "$T/admin.out")"
tl_admin -n > "$T/n.out" 2>&1 || tl_bail "rcptgate -n: $(cat "$T/n.out")"

sm_start_or_bail
tl_start_lookupd || tl_bail "lookupd did not start ($RG_LOOKUPD)"
tl_wait_socket "$POLICY" || tl_bail "no policy socket"

# ---------------------------------------------------------------- the front ends
# verdict TEXT - "accept" for "", else the code and enhanced status of a reply
verdict() {
    case $1 in
        "") echo "no answer" ;;
        accept | DUNNO) echo accept ;;
        *) printf '%s\n' "$1" | awk '{ if ($2 ~ /^[245]\.[0-9]+\.[0-9]+$/) print $1, $2; else print $1 }' ;;
    esac
}

# ask_smtpd - the first refusal of the session, "accept" when RCPT got a 2xx,
# "" when there was no session
ask_smtpd() {
    set -- --local-interface "$client" --quit-after RCPT --helo "$helo" --to "$rcpt"
    set -- "$@" --from "$sender"        # swaks reads "<>" as the null sender
    if [ -n "$login" ]; then
        set -- "$@" --port "$SMTPD_SUB_PORT" --tls --auth PLAIN --auth-user "$login" --auth-password "$login-pw"
    fi
    sm_swaks "$@" < /dev/null
    sm_spoke "$T/swaks.out" || return 0
    awk '
        /^<(\*\*|~\*) +[45][0-9][0-9] / { sub(/^<(\*\*|~\*) +/, ""); print; found = 1; exit }
        /^ *[-~]> RCPT TO:/ { rcpt = 1; next }
        rcpt && /^<[-~] +2[0-9][0-9] / { print "accept"; found = 1; exit }
    ' "$T/swaks.out"
}

# ask_policy - the action lookupd gives, "accept" for DUNNO
ask_policy() {
    _s=$sender
    [ "$_s" = "<>" ] && _s=""
    printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=%s\nclient_name=unknown\nreverse_client_name=unknown\nserver_address=127.0.0.1\nserver_port=25\nhelo_name=%s\nsender=%s\nrecipient=%s\nrecipient_count=0\nqueue_id=\nsasl_method=%s\nsasl_username=%s\nencryption_protocol=\npolicy_context=\n\n' \
        "$client" "$helo" "$_s" "$rcpt" "${login:+PLAIN}" "$login" \
        | "$RG_CLIENT" -p -t 5000 "unix:$POLICY" 2>"$T/client.err" | sed -n 's/^action=//p' | head -n 1
}

# ask_query - rcptgate query's answer lines in $T/query.out
ask_query() {
    set -- --client "$client" --helo "$helo" --sender "$sender"
    [ -n "$login" ] && set -- "$@" --login "$login"
    tl_admin query "$@" "$rcpt" > "$T/query.out" 2>"$T/query.err" < /dev/null
}
qline() {
    sed -n "s/^$1: *//p" "$T/query.out" | head -n 1
}

# rules_set KEY VALUE - one [rules] key (the file's last section), and both daemons started again on it
rules_set() {
    sed -i "/^$1 = /d" "$CONF"
    printf '%s = %s\n' "$1" "$2" >> "$CONF"
    sm_stop
    tl_stop_lookupd
    sm_start_or_bail
    tl_start_lookupd || tl_bail "lookupd did not start again ($RG_LOOKUPD)"
    tl_wait_socket "$POLICY" || tl_bail "no policy socket"
}

# ---------------------------------------------------------------- the transactions
cp "$G/transactions.ref" "$T/ref.before" 2>/dev/null || : > "$T/ref.before"
: > "$T/ref.new"
grep -v '^#' "$G/transactions.in" | grep . > "$T/in"
k=0
while IFS= read -r line; do
    case $line in
        "store break "*)
            tbl=${line#store break }
            sqlite3 "$STORE" "ALTER TABLE $tbl RENAME TO ${tbl}_broken" 2>"$T/sqlite.err"
            tl_ok $? "$line"
            continue ;;
        "rules "*" = "*)
            kv=${line#rules }
            rules_set "${kv%% = *}" "${kv#* = }"
            tl_is "$(sed -n "s/^${kv%% = *} = //p" "$CONF")" "${kv#* = }" "$line"
            continue ;;
    esac
    client="" helo="" sender="" rcpt="" login=""
    for w in $line; do
        case $w in
            client=*) client=${w#client=} ;;
            helo=*) helo=${w#helo=} ;;
            sender=*) sender=${w#sender=} ;;
            rcpt=*) rcpt=${w#rcpt=} ;;
            login=*) login=${w#login=} ;;
        esac
    done
    s_reply=$(ask_smtpd)
    p_action=$(ask_policy)
    ask_query
    q_verdict=$(qline verdict)
    q_rule=$(qline rule | cut -d' ' -f1)
    q_smtpd=$(qline smtpd)
    q_policy=$(qline policy)

    # the query's answer, as the .ref line
    if [ "$q_verdict" = accept ]; then
        q_text=accept
    else
        q_text=$q_smtpd
    fi
    printf '%s => %s %s | %s\n' "$line" "$(verdict "$q_text")" "$q_rule" "$q_text" >> "$T/ref.new"

    # the k-th .ref line is this transaction's (the same one may come again, after a store break)
    k=$((k + 1))
    want=$(sed -n "${k}p" "$T/ref.before" | awk -v l="$line" 'index($0, l " => ") == 1 { print substr($0, length(l) + 5) }')
    want_verdict=${want%% | *}
    want_verdict=$(printf '%s' "$want_verdict" | awk '{ if ($1 == "accept") print "accept"; else print $1, $2 }')
    want_text=${want#* | }
    short=$(printf '%s' "$line" | sed 's/client=//; s/ helo=[^ ]*//; s/sender=//; s/rcpt=//' | cut -c1-70)

    tl_is "$(verdict "$s_reply") | $s_reply" "$want_verdict | $want_text" "smtpd:  $short"
    # relaying is Postfix's own (reject_unauth_destination: the same 554 5.7.1 <rcpt>: Relay access denied)
    p_want=$want_verdict
    case $want in
        *" relay_control | "*) p_want=accept ;;
    esac
    tl_is "$(verdict "${p_action:-}")" "$p_want" "policy: $short"
    if [ "$p_action" = DUNNO ]; then
        p_show=DUNNO
    else
        p_show=$p_action
    fi
    tl_is "$(verdict "$q_text") $q_rule | $q_text" "$want" "query:  $short"
    tl_is "$p_show" "${q_policy#action=}" "policy action is query's: $short"
    # a recipient refusal: Postfix's own prefix and the action read as smtpd's reply
    case $s_reply in
        [45][0-9][0-9]\ *\ "<$rcpt>: Recipient address rejected: "*)
            code=$(printf '%s' "$p_action" | cut -d' ' -f1-2)
            rest=$(printf '%s' "$p_action" | cut -d' ' -f3-)
            tl_is "$code <$rcpt>: Recipient address rejected: $rest" "$s_reply" \
                "through Postfix, the policy reply is smtpd's: $short" ;;
    esac
done < "$T/in"

if [ -n "$RG_GOLDEN_WRITE" ]; then
    cp "$T/ref.new" "$G/transactions.ref"
fi
n_in=$(grep -Evc '^(store|rules) ' "$T/in")
tl_is "$(wc -l < "$T/ref.before" | tr -d ' ')" "$n_in" "one .ref line per transaction"
sm_stop
tl_stop_lookupd
tl_ok $? "lookupd stopped with status 0"
sm_sanitizer_check "no sanitizer report from smtpd"
tl_done
