#!/bin/sh
# stale.sh - [store] max_age: past it, lookupd answers TEMP, never stale data
#
# A file source synced by rcptgate-syncd feeds the store. With max_age set,
# lookupd answers normally while the last sync is recent, TEMP once it is
# older than the limit (checked once a second), and normally again after
# the next successful sync, all without a restart.
. "$top_srcdir/tests/lib/testlib.sh"
tl_init stale
RG_SYNCD=${RG_SYNCD:-"$top_builddir/syncd/rcptgate-syncd"}

sed -i 's/^busy_timeout = 500ms$/busy_timeout = 500ms\nmax_age = 3s/' "$CONF"
printf 'alice@example.com OK\n' > "$T/users.map"
cat >> "$CONF" <<CONF


[source files]
type = file
path = $T/users.map
CONF
tl_admin domain add example.com >/dev/null 2>&1
"$RG_SYNCD" -c "$CONF" --once >"$T/sync.out" 2>&1
tl_is "$?" 0 "first sync applied"

tl_start_lookupd || { echo "not ok 1 - lookupd started"; echo "1..1"; exit 1; }
reply=$(echo "recipients alice@example.com" | "$RG_CLIENT" "unix:$SOCK")
tl_is "$reply" "OK imported" "fresh data: alice is valid"

# Make the last sync 100 s old; within about a second lookupd stops trusting it.
sqlite3 "$STORE" "UPDATE source SET last_success = strftime('%s','now') - 100 WHERE name = 'files'"
sleep 1.5
reply=$(printf 'recipients alice@example.com\nrecipients nobody@example.com\n' | "$RG_CLIENT" "unix:$SOCK")
tl_like "$reply" "^TEMP .*stale" "stale data: TEMP, not OK"
tl_like "$(echo "$reply" | sed -n 2p)" "^TEMP " "stale data: TEMP, not NOTFOUND"
tl_postmap nobody@example.com recipients
tl_like "$(cat "$T/err")" "stale|query error|lookup error" "postmap reports an error, not 'not found'"
tl_like "$(cat "$T/lookupd.log")" "stale" "the staleness is logged"

"$RG_SYNCD" -c "$CONF" --once >>"$T/sync.out" 2>&1
tl_is "$?" 0 "next sync applied"
sleep 1.5
reply=$(echo "recipients alice@example.com" | "$RG_CLIENT" "unix:$SOCK")
tl_is "$reply" "OK imported" "fresh again after a sync"
tl_stop_lookupd
tl_done
