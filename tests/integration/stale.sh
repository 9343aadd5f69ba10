#!/bin/sh
# stale.sh - [store] max_age: past it, lookupd and smtpd answer "try later",
# never from stale data; both reopen a store file moved over theirs
#
# A file source synced by rcptgate-syncd feeds the store. With max_age set,
# the daemons answer normally while the last sync is recent, TEMP (lookupd)
# and 451 4.3.0 (smtpd) once it is older than the limit (checked once a
# second), and normally again after the next successful sync, all without
# a restart. smtpd once ignored max_age: with the source three days old it
# said 550 "User unknown" to an address the directory had gained since (a
# bounce of real mail) and 250 to the stale source's own. rcptgate query
# --client judges as the daemons do then: deferred (store_stale).
#
# Then a new store is moved over the old one (its -wal and -shm removed
# first, as rcptgate(8) says): both daemons notice within a second and
# answer from the new file, without a restart.
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"
tl_init stale
RG_SYNCD=${RG_SYNCD:-"$top_builddir/syncd/rcptgate-syncd"}

sed -i 's/^busy_timeout = 500ms$/busy_timeout = 500ms\nmax_age = 1h/' "$CONF"
printf 'alice@example.com OK\n' > "$T/users.map"
cat >> "$CONF" <<CONF


[source files]
type = file
path = $T/users.map
CONF
# The next hop (RCPT is accepted only once smtpd has reached it).
sm_sink_start || tl_bail "smtp-sink did not start"
HOP="smtp:[127.0.0.1]:$SINK_PORT"
sm_init "default_nexthop = $HOP"
tl_admin domain add example.com "$HOP" >/dev/null 2>&1
"$RG_SYNCD" -c "$CONF" --once >"$T/sync.out" 2>&1
tl_is "$?" 0 "first sync applied"

# lookupd tells systemd (here a stand-in socket) what it is doing.
python3 "$top_srcdir/tests/tools/notify_listen.py" "$T/notify" "$T/notify.out" &
tl_pids="$tl_pids $!"
tl_wait_grep '^listening' "$T/notify.out"
export NOTIFY_SOCKET="$T/notify"
tl_start_lookupd || { echo "not ok 1 - lookupd started"; echo "1..1"; exit 1; }
unset NOTIFY_SOCKET
sm_start_or_bail
reply=$(echo "recipients alice@example.com" | "$RG_CLIENT" "unix:$SOCK")
tl_is "$reply" "OK imported" "fresh data: alice is valid"
OK="250 2.1.5 Ok"
# rcpt DESC WANT ADDRESS - smtpd's reply to RCPT TO:<ADDRESS> must be WANT
rcpt() {
    ck "$1" "$2" --ehlo mail.sender.example --from someone@sender.example --to "$3"
}
UNKNOWN="550 5.1.1 <new@example.com>: Recipient address rejected: User unknown"
rcpt "smtpd, fresh data: alice is valid" "$OK" alice@example.com
rcpt "smtpd, fresh data: an address not in the directory is unknown" "$UNKNOWN" new@example.com

# The last sync three days ago; within about a second both stop trusting it.
sqlite3 "$STORE" "UPDATE source SET last_success = strftime('%s','now') - 3 * 86400 WHERE name = 'files'"
tl_wait_grep "directory data is stale" "$T/lookupd.log"
tl_ok $? "lookupd logs the staleness"
tl_wait_grep "directory data is stale" "$T/smtpd.stderr"
tl_ok $? "smtpd logs the staleness"
tl_wait_grep "STATUS=directory data is stale: .*; answering TEMP" "$T/notify.out"
tl_ok $? "lookupd's systemd STATUS says the data is stale and it answers TEMP"
reply=$(printf 'recipients alice@example.com\nrecipients nobody@example.com\n' | "$RG_CLIENT" "unix:$SOCK")
tl_like "$reply" "^TEMP .*stale" "stale data: TEMP, not OK"
tl_like "$(echo "$reply" | sed -n 2p)" "^TEMP " "stale data: TEMP, not NOTFOUND"
tl_postmap nobody@example.com recipients
# the policy service defers too (Postfix then answers 451 4.3.0), never 550 or DUNNO
pol=$(printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.9\nhelo_name=mail.sender.example\nsender=someone@sender.example\nrecipient=new@example.com\n\n' \
    | "$RG_CLIENT" -p -t 3000 "unix:$POLICY")
tl_is "$pol" "action=451 4.3.0 Temporary lookup failure" "stale data: the policy service defers"
# rcptgate query judges a transaction as the daemons do now: defer, not 550 or accept
out=$(tl_admin query --client 192.0.2.9 --helo mail.sender.example --sender someone@sender.example \
    new@example.com 2>&1)
tl_is "$?" 2 "stale data: rcptgate query --client exits 2 (deferred)"
tl_like "$out" "rule: +store_stale" "stale data: rcptgate query names store_stale"
tl_like "$out" "smtpd: +451 4\.3\.0 <new@example\.com>: Temporary lookup failure" \
    "stale data: rcptgate query shows smtpd's 451, not 550 User unknown"
out=$(tl_admin query alice@example.com 2>&1)
tl_is "$?" 2 "stale data: rcptgate query ADDRESS exits 2 (deferred), not 0"
tl_like "$out" "verdict: +defer \\(the directory data is stale\\)" "... says the answer is defer"
tl_like "$out" "rule: +store_stale" "... and names store_stale"
tl_like "$(cat "$T/err")" "stale|query error|lookup error" "postmap reports an error, not 'not found'"
rcpt "smtpd, stale data: the stale source's own address defers, not 250" \
    "451 4.3.0 <alice@example.com>: Temporary lookup failure" alice@example.com
rcpt "smtpd, stale data: an address it does not know defers, not 550" \
    "451 4.3.0 <new@example.com>: Temporary lookup failure" new@example.com
tl_wait_grep "RCPT check for <new@example.com>: directory data is stale" "$T/smtpd.stderr"
tl_ok $? "smtpd: the deferral is logged with its reason"

"$RG_SYNCD" -c "$CONF" --once >>"$T/sync.out" 2>&1
tl_is "$?" 0 "next sync applied"
tl_wait_grep "directory data fresh again" "$T/lookupd.log"
tl_ok $? "lookupd logs that the data is fresh again"
tl_is "$(grep 'STATUS=' "$T/notify.out" | tail -1)" "msg: STATUS=answering" \
    "... and its systemd STATUS says it answers again"
tl_wait_grep "directory data fresh again" "$T/smtpd.stderr"
tl_ok $? "smtpd logs that the data is fresh again"
reply=$(echo "recipients alice@example.com" | "$RG_CLIENT" "unix:$SOCK")
tl_is "$reply" "OK imported" "fresh again after a sync"
rcpt "smtpd, fresh again: alice is valid" "$OK" alice@example.com
rcpt "smtpd, fresh again: the unknown address is 550 again" "$UNKNOWN" new@example.com

# --- a source added to the configuration, not synced yet: its recipients
# are not in the store, so "unknown" is not known. Both daemons defer an
# address the store does not hold, whatever max_age says, until its first
# sync is applied; one it holds (another source's) is answered as ever.
sed -i 's/^max_age = 1h$/max_age = 0/' "$CONF"
printf 'carol@example.com OK\n' > "$T/extra.map"
printf '\n[source extra]\ntype = file\npath = %s\n' "$T/extra.map" >> "$CONF"
kill -HUP "$LOOKUPD_PID" "$SMTPD_PID"
tl_wait_grep "source extra has never synced" "$T/lookupd.log"
tl_ok $? "lookupd logs that source extra has never synced"
tl_wait_grep "source extra has never synced" "$T/smtpd.stderr"
tl_ok $? "smtpd logs it too"
reply=$(printf 'recipients carol@example.com\nrecipients alice@example.com\n' | "$RG_CLIENT" "unix:$SOCK")
tl_like "$(printf '%s\n' "$reply" | sed -n 1p) / $(printf '%s\n' "$reply" | sed -n 2p)" \
    "^TEMP .*never synced.* / OK imported$" \
    "a source never synced: lookupd says TEMP for an address the store lacks, not NOTFOUND; OK for one it holds"
rcpt "smtpd, a source never synced: its address defers, not 550" \
    "451 4.3.0 <carol@example.com>: Temporary lookup failure" carol@example.com
rcpt "smtpd, a source never synced: an address the store holds is valid" "$OK" alice@example.com
out=$(tl_admin query carol@example.com 2>&1)
tl_is "$?" 2 "... rcptgate query says defer (exit 2)"
out=$(tl_admin query alice@example.com 2>&1)
tl_is "$? $(printf '%s\n' "$out" | grep -c 'never synced')" "0 1" \
    "... and accept (exit 0) for an address the store holds, with a note on the source"
out=$(tl_admin query --client 192.0.2.1 alice@example.com 2>&1)
tl_is "$? $(printf '%s\n' "$out" | grep '^verdict:')" "0 verdict:   accept" "... also when judging a whole transaction"
# A login's sender the store does not pair with it may be the new source's: defer, not 553
out=$(tl_admin query --login carol --sender carol@example.com alice@example.com 2>&1)
tl_is "$? $(printf '%s\n' "$out" | grep '^rule:')" "2 rule:      store_stale" \
    "... and a sender-login pairing the store lacks: defer (store_stale), not 553"
"$RG_SYNCD" -c "$CONF" --once >>"$T/sync.out" 2>&1
tl_is "$?" 0 "the new source's first sync applied"
tl_wait_grep "directory data fresh again" "$T/smtpd.stderr" 5
reply=$(printf 'recipients carol@example.com\nrecipients nobody@example.com\n' | "$RG_CLIENT" "unix:$SOCK")
tl_like "$(printf '%s\n' "$reply" | sed -n 1p) / $(printf '%s\n' "$reply" | sed -n 2p)" "^OK imported / NOTFOUND ?$" \
    "after its first sync: its address is valid, an unknown one NOTFOUND"
rcpt "smtpd, after its first sync: carol is valid" "$OK" carol@example.com

# --- the same for a source past the 32nd of the file (every one is checked)
i=1
while [ $i -le 32 ]; do
    printf 'm%02d@example.com OK\n' $i > "$T/m$i.map"
    printf '\n[source m%02d]\ntype = file\npath = %s\n' $i "$T/m$i.map" >> "$CONF"
    i=$((i + 1))
done
"$RG_SYNCD" -c "$CONF" --once >>"$T/sync.out" 2>&1
tl_is "$?" 0 "32 more sources synced (34 in all)"
printf 'dave@example.com OK\n' > "$T/late.map"
printf '\n[source late]\ntype = file\npath = %s\n' "$T/late.map" >> "$CONF"
kill -HUP "$LOOKUPD_PID"
tl_wait_grep "source late has never synced" "$T/lookupd.log"
tl_ok $? "the 35th source, never synced: lookupd logs it"
reply=$(printf 'recipients dave@example.com\n' | "$RG_CLIENT" "unix:$SOCK")
tl_like "$reply" "^TEMP .*never synced" "... and says TEMP for its address, not NOTFOUND"
"$RG_SYNCD" -c "$CONF" --once >>"$T/sync.out" 2>&1
tl_is "$?" 0 "the 35th source's first sync applied"
reply=$(printf 'recipients dave@example.com\n' | "$RG_CLIENT" "unix:$SOCK")
tl_is "$reply" "OK imported" "... then its address is valid"

# --- a source taken out of the configuration stays in the store until
# rcptgate source del; it no longer counts for max_age (all answers were
# TEMP for good) nor for rcptgate check's ages
sed -i '/^\[source extra\]$/,/^path = /d' "$CONF"
sed -i 's/^max_age = 0$/max_age = 1h/' "$CONF"
sqlite3 "$STORE" "UPDATE source SET last_success = strftime('%s','now') - 3 * 86400 WHERE name = 'extra'"
kill -HUP "$LOOKUPD_PID" "$SMTPD_PID"
sleep 2                                 # the reload, then the keeper's check each second
reply=$(printf 'recipients alice@example.com\nrecipients carol@example.com\n' | "$RG_CLIENT" "unix:$SOCK")
tl_like "$(printf '%s\n' "$reply" | sed -n 1p) / $(printf '%s\n' "$reply" | sed -n 2p)" "^OK imported / OK imported$" \
    "a source out of the file, synced 3 days ago: no TEMP (max_age 1h), its addresses still valid"
out=$(tl_admin check --no-lookupd --no-smtpd --no-queue 2>&1)
tl_is "$?" 1 "rcptgate check: WARNING for a source in the store and not in the file"
tl_like "$out" "source extra is in the store but not in the configuration: .*rcptgate source del extra" \
    "... naming it and the command that removes it"
tl_is "$(printf '%s\n' "$out" | grep -c 'source extra: last sync')" 0 "... and judging no age of it"
out=$(tl_admin source list 2>&1)
tl_like "$out" "extra +file +1 .*not in the configuration" "rcptgate source list marks it"
out=$(tl_admin source del files 2>&1)
tl_is "$?" 1 "source del of a source the file names: refused (1)"
tl_like "$out" "is a \[source files\] of .*remove that section first" "... saying why"
tl_admin source del static >/dev/null 2>&1
tl_is "$?" 1 "source del static: refused (1)"
tl_admin source del nosuch >/dev/null 2>&1
tl_is "$?" 1 "source del of no such source: 1"
out=$(tl_admin source del extra 2>/dev/null)
tl_is "$?" 0 "source del extra: exit 0"
tl_is "$out" "removed source extra and its 1 recipient" "... says what it removed"
tl_is "$(sqlite3 "$STORE" "SELECT count(*) FROM source WHERE name = 'extra'")" 0 "... the source is gone"
reply=$(printf 'recipients carol@example.com\n' | "$RG_CLIENT" "unix:$SOCK")
tl_like "$reply" "^NOTFOUND" "... and its address with it"
sqlite3 "$STORE" "UPDATE source SET last_success = strftime('%s','now') - 3 * 86400 WHERE name = 'm07'"
sleep 1.5
reply=$(printf 'recipients alice@example.com\n' | "$RG_CLIENT" "unix:$SOCK")
tl_like "$reply" "^TEMP .*stale: source m07: last sync 2592[0-9][0-9] s ago" \
    "a configured source past max_age: TEMP, naming it"
"$RG_SYNCD" -c "$CONF" --once --source m07 >>"$T/sync.out" 2>&1
tl_is "$?" 0 "m07 synced again"

# --- a new store moved over the open one: both daemons reopen it. It is
# synced from maps of its own (without alice), as a store is made for good.
printf 'bob@example.com OK\n' > "$T/users2.map"
sed -e "s|^path = $STORE\$|path = $T/new.db|" -e "s|^path = $T/users.map\$|path = $T/users2.map|" "$CONF" > "$T/new.conf"
"$RG_ADMIN" -c "$T/new.conf" domain add example.com "$HOP" >/dev/null 2>&1 &&
    "$RG_ADMIN" -c "$T/new.conf" static add new@example.com >/dev/null 2>&1 &&
    "$RG_SYNCD" -c "$T/new.conf" --once >>"$T/sync.out" 2>&1
tl_is "$?" 0 "a second store made beside the first"
rm -f "$STORE-wal" "$STORE-shm" && mv "$T/new.db" "$STORE"
tl_wait_grep "store .*store.db was replaced; reopening" "$T/lookupd.log"
tl_ok $? "lookupd notices the replaced store"
tl_wait_grep "store .*store.db was replaced; reopening" "$T/smtpd.stderr"
tl_ok $? "smtpd notices the replaced store"
reply=$(printf 'recipients new@example.com\nrecipients alice@example.com\n' | "$RG_CLIENT" "unix:$SOCK")
tl_like "$(printf '%s\n' "$reply" | sed -n 1p) / $(printf '%s\n' "$reply" | sed -n 2p)" "^OK static / NOTFOUND ?$" \
    "lookupd answers from the new store"
rcpt "smtpd answers from the new store: its address is valid" "$OK" new@example.com
rcpt "smtpd answers from the new store: alice is gone" \
    "550 5.1.1 <alice@example.com>: Recipient address rejected: User unknown" alice@example.com
tl_is "$(kill -0 "$SMTPD_PID" 2>/dev/null && kill -0 "$LOOKUPD_PID" 2>/dev/null && echo alive)" "alive" \
    "no restart: the same processes"

sm_stop
sm_sanitizer_check "smtpd: no sanitizer report"
tl_stop_lookupd
tl_done
