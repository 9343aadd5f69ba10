#!/bin/sh
# syncd_usn.sh - rcptgate-syncd's incremental pulls by uSNChanged (flavour ad)
#
# A private slapd (tests/lib/slapd.sh) holds tests/fixtures/directory.ldif
# with AD's attribute names. There uSNChanged is an ordinary integer
# attribute that the test bumps by hand with each change, as a DC would,
# and the rootDSE has neither highestCommittedUSN nor dsServiceName: the
# stored USN is then the highest uSNChanged a pull saw, and there is no
# invocationId on either side (the invocationId rules are unit-tested in
# tests/unit/test_syncd.c). The test checks with `--once --incremental`
# that a changed entry arrives, a disabled user and an entry whose mail
# attributes were cleared disappear, an entry whose uSNChanged was not
# bumped is not re-read, a deletion waits for the full reconciliation,
# and a stored state that does not fit makes it a full pull; then that the
# daemon pulls incrementally every poll_interval after its first full pull.
# Last, the shrink guard on an incremental pull, AD's sync-wipe: what the
# sync account sees when it loses read on mail and proxyAddresses while
# every object's uSNChanged moves; every object drops out of the filter in
# one poll. The pull is refused, the data and the stored USN kept, the
# retry refused again; once the attributes are back, the retry is applied.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init syncd_usn
slapd_require
syncd_require

S=$SLAPD_SUFFIX
USERS="ou=Users,$S"
DLS="ou=Exchange Distribution Lists,$S"
PFS="ou=Microsoft Exchange System Objects,$S"

slapd_init || tl_bail "slapd_init failed"
slapd_load "$top_srcdir/tests/fixtures/directory.ldif" || { echo "not ok 1 - fixture loads"; echo "1..1"; exit 1; }
slapd_start || { echo "not ok 1 - slapd starts"; echo "1..1"; exit 1; }

# last_run - mode outcome added changed removed of the source's latest run
last_run() {
    syncd_sql "SELECT r.mode, r.outcome, r.added, r.changed, r.removed FROM sync_run r
               JOIN source s ON s.id = r.source_id WHERE s.name = 'ad'
               ORDER BY r.id DESC LIMIT 1" | tr '\t' ' '
}

# state - the stored cookie and invocationId ("-" for NULL)
state() {
    syncd_sql "SELECT COALESCE(cookie, '-') || ' ' || COALESCE(invocation_id, '-')
               FROM source WHERE name = 'ad'"
}

tl_admin domain add test.example >/dev/null 2>&1
tl_admin domain add partner.example >/dev/null 2>&1

syncd_conf_reset
# 4 of 28 addresses go in one poll below: more than the shrink guard's
# default share, which is tested at the end.
slapd_syncd_conf max_remove_share=100
slapd_source ad ad "base=$USERS" "base=$DLS" "base=$PFS"

# --- no state yet: --incremental pulls in full
syncd_once --incremental
tl_is "$rc" 0 "--once --incremental without a stored state exits 0"
tl_is "$(last_run)" "full ok 28 0 0" "without a stored state the pull is a full one"
tl_is "$(state)" "12026 -" "the stored USN is the highest uSNChanged seen (no highestCommittedUSN here)"
rg_valid alice.smith@test.example bob.jones@test.example vendor.contact@test.example \
    vendor@partner.example dave@test.example
rg_invalid carol@test.example

# --- nothing changed
syncd_once --incremental
tl_is "$rc" 0 "an incremental pull without changes exits 0"
tl_is "$(last_run)" "incremental ok 0 0 0" "it is recorded as an incremental run that changed nothing"
tl_is "$(state)" "12026 -" "the stored USN stays where it was"

# --- changes, each with a new uSNChanged; one without
slapd_modify <<EOF
dn: cn=Alice Smith,$USERS
changetype: modify
delete: proxyAddresses
proxyAddresses: smtp:alice.smith@test.example
-
add: proxyAddresses
proxyAddresses: smtp:alice.s@test.example
-
replace: uSNChanged
uSNChanged: 13001

dn: cn=Bob Jones,$USERS
changetype: modify
replace: userAccountControl
userAccountControl: 514
-
replace: uSNChanged
uSNChanged: 13002

dn: cn=Vendor Contact,$USERS
changetype: modify
delete: mail
-
delete: proxyAddresses
-
replace: uSNChanged
uSNChanged: 13003

dn: cn=Carol Gone,$USERS
changetype: modify
replace: userAccountControl
userAccountControl: 512
-
replace: uSNChanged
uSNChanged: 13004

dn: cn=Sales,$DLS
changetype: modify
replace: msExchRequireAuthToSendTo
msExchRequireAuthToSendTo: TRUE
-
replace: uSNChanged
uSNChanged: 13005

dn: cn=Grace Hopper,$USERS
changetype: modify
add: proxyAddresses
proxyAddresses: smtp:grace.h@test.example
EOF
tl_is "$?" 0 "directory changes made"
slapd_delete "cn=Dave Brown,$USERS"
tl_is "$?" 0 "a user deleted"

syncd_once --incremental
tl_is "$rc" 0 "the incremental pull after the changes exits 0"
tl_is "$(last_run)" "incremental ok 2 1 4" \
    "recorded: 2 added (alice.s, carol), 1 changed (the flag), 4 removed"
tl_is "$(state)" "13005 -" "the stored USN is the highest uSNChanged of the changes"
rg_valid alice.s@test.example alice@test.example carol@test.example
rg_invalid alice.smith@test.example
tl_is "$(syncd_sql "SELECT count(DISTINCT object_id) FROM recipient WHERE address IN ('alice.s@test.example', 'alice@test.example')")" 1 \
    "the renamed address belongs to the same object"
rg_invalid bob.jones@test.example
tl_is "$(syncd_sql "SELECT count(*) FROM object WHERE dn = 'cn=Bob Jones,$USERS'")" 0 \
    "a user disabled since the last pull is removed"
rg_invalid vendor.contact@test.example vendor@partner.example
tl_is "$(syncd_sql "SELECT count(*) FROM object WHERE dn = 'cn=Vendor Contact,$USERS'")" 0 \
    "a contact whose mail attributes were cleared (it no longer matches the filter) is removed"
tl_is "$(syncd_sql "SELECT kind || ' ' || flags FROM recipient WHERE address = 'sales@test.example'")" "group 1" \
    "a group made restricted gets the flag"
rg_invalid grace.h@test.example
rg_valid dave@test.example

# --- the full reconciliation catches what an incremental pull cannot see
syncd_once
tl_is "$rc" 0 "a full pull exits 0"
tl_is "$(last_run)" "full ok 1 0 1" "the full pull adds the change without a new uSNChanged and removes the deleted user"
rg_valid grace.h@test.example
rg_invalid dave@test.example
tl_is "$(state)" "13005 -" "the full pull stores the highest uSNChanged again"

# --- a stored state that does not fit this directory: a full pull
syncd_sql "UPDATE source SET invocation_id = '0123456789abcdef0123456789abcdef' WHERE name = 'ad'"
syncd_once --incremental
tl_is "$rc" 0 "--incremental with the stored state of another DC exits 0"
tl_is "$(last_run)" "full ok 0 0 0" "a stored invocationId this directory does not report: a full pull"
tl_like "$(cat "$T/syncd.err")" "a full pull is needed: the domain controller's invocationId could not be read" \
    "the log says why"
tl_is "$(state)" "13005 -" "and the full pull stores this directory's state"
syncd_sql "UPDATE source SET cookie = 'garbage' WHERE name = 'ad'"
syncd_once --incremental
tl_is "$(last_run)" "full ok 0 0 0" "a stored USN that is not a number: a full pull"

# --- a failure applies nothing
slapd_stop
syncd_once --incremental
tl_is "$rc" 75 "--incremental with the directory down exits 75"
slapd_start
rg_valid alice.s@test.example

# --- the daemon: full at start, then incremental every poll_interval
syncd_conf_reset
slapd_syncd_conf "poll_interval=1s" "full_interval=1h"
slapd_source ad ad "base=$USERS" "base=$DLS" "base=$PFS"
runs0=$(syncd_sql "SELECT max(id) FROM sync_run")
"$RG_SYNCD" -c "$CONF" -f >"$T/daemon.out" 2>"$T/daemon.err" &
syncd_pid=$!
tl_pids="$tl_pids $syncd_pid"

# wait_for SQL WANT - up to 15 s for a query to give WANT; its last answer
wait_for() {
    _n=0
    while [ $_n -lt 150 ]; do
        _got=$(syncd_sql "$1")
        [ "$_got" = "$2" ] && break
        kill -0 "$syncd_pid" 2>/dev/null || break    # the daemon is gone: nothing will change
        sleep 0.1
        _n=$((_n + 1))
    done
    echo "$_got"
}

tl_is "$(wait_for "SELECT count(*) FROM sync_run WHERE id > $runs0 AND mode = 'incremental'" 2)" 2 \
    "the daemon pulls incrementally after its first pull"
slapd_modify <<EOF
dn: cn=Grace Hopper,$USERS
changetype: modify
add: proxyAddresses
proxyAddresses: smtp:grace.new@test.example
-
replace: uSNChanged
uSNChanged: 14001
EOF
tl_is "$(wait_for "SELECT count(*) FROM recipient WHERE address = 'grace.new@test.example'" 1)" 1 \
    "a change reaches the store within a few poll intervals"
tl_is "$(syncd_sql "SELECT mode || ' ' || added FROM sync_run WHERE id > $runs0 AND added > 0")" "incremental 1" \
    "through an incremental pull"
tl_is "$(syncd_sql "SELECT group_concat(mode) FROM sync_run WHERE id > $runs0 AND mode = 'full'")" "full" \
    "the daemon made one full pull (at start) and no more"
kill -TERM "$syncd_pid"
wait "$syncd_pid"
tl_is "$?" 0 "the daemon stops on SIGTERM"
tl_like "$(cat "$T/daemon.err")" "incremental sync applied: 1 objects, 1 added, 0 changed, 0 removed" \
    "the daemon logs the incremental sync"

# --- the shrink guard on an incremental pull: every object drops out of the filter
syncd_conf_reset
slapd_syncd_conf
slapd_source ad ad "base=$USERS" "base=$DLS" "base=$PFS"
syncd_once
tl_is "$rc" 0 "guard: a full pull first"
n=$(syncd_sql "SELECT count(*) FROM recipient r JOIN source s ON s.id = r.source_id WHERE s.name = 'ad'")
usn0=$(state)
syncd_dump > "$T/before"
# What the sync account sees when it may no longer read mail and
# proxyAddresses while security descriptor propagation bumps every
# object's uSNChanged: every object without its mail attributes, changed.
# (An ACL cannot show it with slapd: there a filter on an attribute the
# reader may not search is undefined, and so is its negation.) All but
# one: slapd would not take juergen's non-ASCII mail back by ldapmodify.
for b in "$USERS" "$DLS" "$PFS"; do
    slapd_search -b "$b" "(|(mail=*)(proxyAddresses=*))" mail proxyAddresses
done > "$T/mail.ldif"
awk -v wipe="$T/wipe.ldif" -v back="$T/back.ldif" '
    function flush() {
        if (dn == "" || m ~ /^mail:: /) { dn = ""; m = ""; p = ""; return }
        usn++
        printf "dn: %s\nchangetype: modify\n", dn > wipe
        printf "dn: %s\nchangetype: modify\n", dn > back
        if (m != "") { printf "add: mail\n%s-\n", m > back; printf "delete: mail\n-\n" > wipe }
        if (p != "") { printf "add: proxyAddresses\n%s-\n", p > back; printf "delete: proxyAddresses\n-\n" > wipe }
        printf "replace: uSNChanged\nuSNChanged: %d\n\n", 20000 + usn > wipe
        printf "replace: uSNChanged\nuSNChanged: %d\n\n", 30000 + usn > back
        dn = ""; m = ""; p = ""
    }
    /^dn: / { flush(); dn = substr($0, 5); next }
    /^mail::? / { m = m $0 "\n"; next }
    /^proxyAddresses::? / { p = p $0 "\n"; next }
    END { flush() }' "$T/mail.ldif"
slapd_modify "$T/wipe.ldif"
tl_is "$?" 0 "every object's mail attributes gone, its uSNChanged bumped"
syncd_once --incremental
tl_is "$rc" 65 "an incremental pull that would remove nearly all $n recipients is refused: 65"
gone=$(syncd_sql "SELECT count(*) FROM recipient r JOIN source s ON s.id = r.source_id JOIN object o ON o.id = r.object_id
    WHERE s.name = 'ad' AND o.dn NOT LIKE 'cn=Juergen%'")
tl_is "$(last_run)" "incremental refused 0 0 $gone" "recorded as a refused incremental run, with what it would remove"
tl_is "$(state)" "$usn0" "the stored USN stays where it was"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "the refusal changed nothing"
rg_valid alice.s@test.example sales@test.example
tl_like "$(cat "$T/syncd.err")" "shrink guard: not applying this incremental sync: it would remove $gone of the source's $n recipients \\([0-9.]+%, more than max_remove_share = 10%\\)" \
    "the log says what"
tl_like "$(cat "$T/syncd.err")" "cookie\\) was kept.*--once --force --source ad.*max_remove_share \\(now 10%\\)" \
    "and how to apply it anyway"
tl_like "$(tl_admin stats 2>&1)" "ad .*refused: incremental pull: it would remove $gone of the source's $n" "rcptgate stats shows it"
syncd_once --incremental
tl_is "$rc" 65 "the retry asks for the same changes again, and is refused again"
# Read access restored: the objects come back whole, nothing is removed.
slapd_modify "$T/back.ldif"
tl_is "$?" 0 "read access restored: every object's mail attributes back, its uSNChanged bumped again"
syncd_once --incremental
tl_is "$rc" 0 "once the sync account reads again, the retry from the kept USN is applied"
tl_is "$(last_run)" "incremental ok 0 0 0" "and removes nothing"
usn1=$(state)
tl_ok "$([ "${usn1%% *}" -gt 30000 ] && echo 0 || echo 1)" "the stored USN moves on ($usn0 -> $usn1)"
rg_valid alice.s@test.example sales@test.example

tl_done
