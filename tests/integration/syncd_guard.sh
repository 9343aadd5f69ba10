#!/bin/sh
# syncd_guard.sh - the shrink guard of rcptgate-syncd against a real slapd
#
# A source of 100 people. A pull that would remove more than
# max_remove_share (default 10%) or max_remove_count of the source's
# recipients, or that returns nothing at all (a filter that matches
# nothing, a bind account that suddenly sees nothing), is refused: exit
# 65, the store unchanged, the refusal recorded and shown by `rcptgate
# stats`; --force applies it. Removals within the limits are applied. A
# refusal names what it would have removed: the count and the first 20
# addresses in the log, the first 5 in the run's message (and so in
# `rcptgate stats`).

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init syncd_guard
slapd_require
syncd_require

S=$SLAPD_SUFFIX
PEOPLE="ou=People,$S"

slapd_init || tl_bail "slapd_init failed"
awk -v base="$PEOPLE" -v suffix="$S" 'BEGIN {
    printf "dn: %s\nobjectClass: organizationalUnit\nou: People\n\n", base
    for (i = 0; i < 100; i++) {
        printf "dn: uid=u%03d,%s\nobjectClass: inetOrgPerson\n", i, base
        printf "uid: u%03d\ncn: User %d\nsn: User\nmail: u%03d@guard.example\n\n", i, i, i
    }
}' > "$T/people.ldif"
slapd_load "$T/people.ldif" && slapd_start ||
    { echo "not ok 1 - slapd with 100 people starts"; echo "1..1"; exit 1; }
tl_admin domain add guard.example >/dev/null 2>&1

# guard_conf [key=value ...] - [syncd] with the given guard settings, one source
guard_conf() {
    syncd_conf_reset
    slapd_syncd_conf "$@"
    slapd_source people generic "base=$PEOPLE" $GUARD_SOURCE_EXTRA
}

# remove FROM TO - delete people uFROM..uTO from the directory
remove() {
    i=$1 last=$2
    set --
    while [ "$i" -le "$last" ]; do
        set -- "$@" "uid=u$(printf %03d "$i"),$PEOPLE"
        i=$((i + 1))
    done
    slapd_delete "$@"
}

# count - the source's recipients in the store
count() {
    syncd_sql "SELECT count(*) FROM recipient r JOIN source s ON s.id = r.source_id WHERE s.name = 'people'"
}

# last_outcome - the outcome of the source's latest run
last_outcome() {
    syncd_sql "SELECT r.outcome FROM sync_run r JOIN source s ON s.id = r.source_id
               WHERE s.name = 'people' ORDER BY r.id DESC LIMIT 1"
}

# refused MSG - the last run was refused, and nothing changed
refused() {
    tl_is "$rc" 65 "$1: refused (65)"
    syncd_dump > "$T/after"
    cmp -s "$T/before" "$T/after"
    tl_is "$?" 0 "$1: the store is unchanged"
    tl_is "$(last_outcome)" refused "$1: the run is recorded as refused"
}

guard_conf
syncd_once
tl_is "$rc" 0 "the first pull of 100 people exits 0"
tl_is "$(count)" 100 "100 recipients"

# --- half of them gone
remove 0 49
syncd_dump > "$T/before"
syncd_once
refused "50 of 100 removed"
tl_is "$(rg_query u000@guard.example)" 0 "a removed person still answers"
tl_admin stats >"$T/stats.out" 2>&1
tl_like "$(grep people "$T/stats.out")" "refused" "rcptgate stats shows the refusal"
tl_like "$(grep people "$T/stats.out")" "e\\.g\\. u000@guard\\.example, u001@guard\\.example, u002@guard\\.example, u003@guard\\.example, u004@guard\\.example, \\.\\.\\." \
    "and names the first 5 addresses it would remove"
tl_like "$(cat "$T/syncd.err")" "the refused pull would remove 50 addresses, the first 20: u000@guard\\.example, .*, u019@guard\\.example, \\.\\.\\.\$" \
    "the log gives the count and the first 20 addresses"
tl_is "$(grep -o 'u0[0-9][0-9]@guard.example' "$T/syncd.err" | sort -u | wc -l | tr -d ' ')" 20 \
    "exactly 20 distinct addresses are named in the log"
ok_kept=$(grep -c 'u0[5-9][0-9]@guard.example' "$T/syncd.err")
tl_is "$ok_kept" 0 "none of the addresses that stay is named"
syncd_once
tl_is "$rc" 65 "the next run is refused again (a refusal is not remembered as done)"
syncd_once --force
tl_is "$rc" 0 "--force applies it"
tl_is "$(count)" 50 "50 recipients left"
tl_is "$(rg_query u000@guard.example)" 1 "a removed person is gone"
tl_is "$(last_outcome)" ok "the forced run is recorded as ok"

# --- at the limit and over it (default 10%)
remove 50 54
syncd_once
tl_is "$rc" 0 "5 of 50 removed (10%, not more): applied"
tl_is "$(count)" 45 "45 recipients left"
remove 55 59
syncd_dump > "$T/before"
syncd_once
refused "5 of 45 removed (11%)"

# --- max_remove_share raised
guard_conf max_remove_share=20
syncd_once
tl_is "$rc" 0 "with max_remove_share = 20 the same pull is applied"
tl_is "$(count)" 40 "40 recipients left"

# --- max_remove_count
remove 60 63
guard_conf max_remove_share=50 max_remove_count=3
syncd_dump > "$T/before"
syncd_once
refused "4 removed with max_remove_count = 3"
guard_conf max_remove_share=50 max_remove_count=4
syncd_once
tl_is "$rc" 0 "4 removed with max_remove_count = 4: applied"
tl_is "$(count)" 36 "36 recipients left"

# --- nothing at all: a filter that suddenly matches nothing
GUARD_SOURCE_EXTRA="filter=(mail=nobody@nowhere.example)"
guard_conf max_remove_share=100
syncd_dump > "$T/before"
syncd_once
refused "a filter that matches nothing, even with max_remove_share = 100"
tl_like "$(cat "$T/syncd.err")" "the refused pull would remove 36 addresses, the first 20: u064@guard\\.example, " \
    "an empty pull names the first of all the source's addresses"
GUARD_SOURCE_EXTRA=""

# --- nothing at all: the bind account suddenly sees no one (an ACL change)
slapd_acl "access to attrs=userPassword
	by anonymous auth
	by self read
	by * none
access to dn.children=\"$PEOPLE\"
	by dn.exact=\"$SLAPD_SYNC_DN\" none
	by users read
	by * none
access to *
	by users read
	by * none"
slapd_restart
tl_is "$(slapd_count "$PEOPLE" '(objectClass=*)')" 1 "the sync account now sees only the OU itself"
guard_conf
syncd_dump > "$T/before"
syncd_once
refused "a bind account that sees nothing"
slapd_default_acl
slapd_restart

# --- growth and a small removal together
slapd_add <<EOF
dn: uid=new1,$PEOPLE
objectClass: inetOrgPerson
uid: new1
cn: New
sn: New
mail: new1@guard.example
EOF
remove 64 65
guard_conf
syncd_once
tl_is "$rc" 0 "1 added and 2 of 36 removed (under 10%): applied"
tl_is "$(count)" 35 "35 recipients"
tl_is "$(rg_query new1@guard.example)" 0 "the new person answers"

tl_done
