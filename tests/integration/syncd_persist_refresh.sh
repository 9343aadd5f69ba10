#!/bin/sh
# syncd_persist_refresh.sh - a persistent search's refresh phase is one commit for the shrink guard
#
# A private slapd holds 12,000 people. rcptgate-syncd -f (mode =
# persistent, max_remove_share = 10) pulls them, starts its RFC 4533
# persistent search and is stopped; 2,400 of the people (20 %) are then
# deleted. Started again, the daemon resumes from its stored cookie and
# the refresh phase brings the 2,400 deletions in one list: more than the
# source's 10 %, so the guard refuses it and the store keeps all 12,000,
# with the old cookie. (Cut into batches of 1,000, 8 % each, as it was,
# the list passed the guard batch by batch.) The control: deleting 600
# (5 %) the same way is applied.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init syncd_persist_refresh
slapd_require
syncd_require

# An RFC 4533 refresh cannot be paged: the sync account's size limit must
# hold what comes back after a cookie (full pulls stay paged).
SLAPD_SIZELIMIT=1000
S=$SLAPD_SUFFIX
PEOPLE="ou=People,$S"
N=12000

slapd_init || tl_bail "slapd_init failed"
awk -v n="$N" -v s="$S" 'BEGIN {
    printf "dn: ou=People,%s\nobjectClass: organizationalUnit\nou: People\n\n", s
    for (i = 0; i < n; i++)
        printf "dn: uid=p%05d,ou=People,%s\nobjectClass: inetOrgPerson\nuid: p%05d\ncn: p%05d\nsn: p%05d\nmail: p%05d@generic.example\n\n", i, s, i, i, i, i
}' </dev/null > "$T/people.ldif"
slapd_load "$T/people.ldif" && slapd_start || tl_bail "slapd with $N people did not start"
tl_admin domain add generic.example >/dev/null 2>&1

# wait_log TEXT [N] - up to 30 s for the daemon's log to hold N lines with TEXT
wait_log() {
    _n=0
    while [ $_n -lt 300 ]; do
        [ "$(grep -c "$1" "$T/daemon.err" 2>/dev/null)" -ge "${2:-1}" ] && return 0
        kill -0 "$syncd_pid" 2>/dev/null || return 1
        sleep 0.1
        _n=$((_n + 1))
    done
    return 1
}

# delete FIRST COUNT - delete people pFIRST.. (COUNT of them) in one ldapdelete
delete() {
    awk -v f="$1" -v c="$2" -v b="$PEOPLE" 'BEGIN { for (i = f; i < f + c; i++) printf "uid=p%05d,%s\n", i, b }' \
        </dev/null > "$T/gone.dns"
    slapd_delete -f "$T/gone.dns"
}

stored() {
    syncd_sql "SELECT count(*) FROM recipient"
}

syncd_conf_reset
slapd_syncd_conf "poll_interval=1h" "full_interval=1h" "retry_interval=30s" "max_remove_share=10"
slapd_source ldap generic "base=$PEOPLE" "mode=persistent"

start_syncd
wait_log 'persistent search (RFC 4533'
tl_ok $? "the daemon pulls the $N people and starts its persistent search"
tl_is "$(stored)" "$N" "... all $N in the store"
stop_syncd

# --- the control: 600 deleted (5 %) while it was down: applied
delete 0 600
tl_is "$?" 0 "600 people deleted while the daemon is down"
start_syncd
wait_log 'incremental sync applied'
tl_ok $? "resumed from its cookie: the refresh's 600 deletions are applied"
tl_is "$(stored)" $((N - 600)) "... $((N - 600)) left in the store"
stop_syncd

# --- 2,280 more (20 % of what is left): one list, refused
cookie=$(syncd_sql "SELECT cookie FROM source WHERE name = 'ldap'")
delete 600 2280
tl_is "$?" 0 "2,280 more deleted while the daemon is down"
start_syncd
wait_log 'shrink guard: not applying this incremental sync'
tl_ok $? "resumed: the refresh's 2,280 deletions are refused as one list (shrink guard)"
tl_is "$(stored) $(grep -c 'incremental sync applied' "$T/daemon.err")" "$((N - 600)) 1" \
    "... none of them applied, in any batch"
tl_is "$(syncd_sql "SELECT cookie FROM source WHERE name = 'ldap'")" "$cookie" "... and the cookie kept"
stop_syncd

tl_done
