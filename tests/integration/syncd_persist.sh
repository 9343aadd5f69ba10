#!/bin/sh
# syncd_persist.sh - rcptgate-syncd's persistent mode (RFC 4533 refreshAndPersist)
#
# A private slapd with the syncprov overlay holds the generic part of
# tests/fixtures/directory.ldif; rcptgate-syncd -f runs with
# mode = persistent. Checked: an add, a change of address and a delete
# are in the store within a second; SIGTERM stops the daemon promptly
# while it waits on the persistent search; a restarted daemon resumes
# from the stored cookie (an incremental run, no full pull) and gets what
# changed while it was down; after a slapd restart it reconnects and a
# later change still arrives; SIGHUP restarts the search from the cookie;
# when slapd lost its session log while the daemon was down, the server's
# present phase leads to a full pull (the deletion applied). A burst of
# 200 additions is a few transactions. Also mode = poll: RFC 4533
# refreshOnly incremental pulls from the cookie. Last, the shrink guard:
# everyone deleted while the daemon was down comes as one delete list
# when the persistent search resumes from the cookie; it is refused, the
# data and the cookie kept, the retries refused too (and so a --once
# --incremental, exit 65), until --once --force applies a full pull.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init syncd_persist
slapd_require
syncd_require

# An RFC 4533 refresh cannot be paged: the sync account's size limit must
# hold what comes back after a cookie (full pulls stay paged).
SLAPD_SIZELIMIT=1000
S=$SLAPD_SUFFIX
PEOPLE="ou=People,$S"

slapd_init || tl_bail "slapd_init failed"
slapd_load "$top_srcdir/tests/fixtures/directory.ldif" &&
    slapd_start || { echo "not ok 1 - slapd with the fixture starts"; echo "1..1"; exit 1; }
tl_admin domain add generic.example >/dev/null 2>&1

# ok_if COMMAND MSG - ok when the shell command succeeds
ok_if() {
    eval "$1"
    tl_ok $? "$2"
}

# ms - a clock in milliseconds
ms() {
    echo $(($(date +%s%N) / 1000000))
}

# person UID - add a person with mail UID@generic.example
person() {
    slapd_add >/dev/null <<EOF
dn: uid=$1,$PEOPLE
objectClass: inetOrgPerson
uid: $1
cn: $1
sn: $1
mail: $1@generic.example
EOF
}

# until_query ADDRESS WANT [LIMIT_MS] - poll every 50 ms until rg_query
# gives WANT (0 found, 1 not); prints the milliseconds it took, or
# "timeout"
until_query() {
    _t0=$(ms)
    _limit=${3:-10000}
    while :; do
        [ "$(rg_query "$1")" = "$2" ] && { echo $(($(ms) - _t0)); return; }
        [ $(($(ms) - _t0)) -gt "$_limit" ] && { echo timeout; return; }
        # a daemon that is gone changes nothing more
        kill -0 "$syncd_pid" 2>/dev/null || { echo timeout; return; }
        sleep 0.05
    done
}

# within_1s MS - is a measured time under a second?
within_1s() {
    [ "$1" != timeout ] && [ "$1" -lt 1000 ]
}

# start_syncd - the daemon in the foreground, in the background
start_syncd() {
    "$RG_SYNCD" -c "$CONF" -f >>"$T/daemon.out" 2>>"$T/daemon.err" &
    syncd_pid=$!
    tl_pids="$tl_pids $syncd_pid"
}

# stop_syncd - SIGTERM; $stop_rc and $stop_ms
stop_syncd() {
    _t0=$(ms)
    kill -TERM "$syncd_pid"
    wait "$syncd_pid"
    stop_rc=$?
    stop_ms=$(($(ms) - _t0))
}

# wait_log TEXT - up to 15 s for the daemon's log to say TEXT (count of lines)
wait_log() {
    _n=0
    while [ $_n -lt 150 ]; do
        _c=$(grep -c "$1" "$T/daemon.err" 2>/dev/null)
        [ "${_c:-0}" -ge "${2:-1}" ] && break
        kill -0 "$syncd_pid" 2>/dev/null || break
        sleep 0.1
        _n=$((_n + 1))
    done
    echo "${_c:-0}"
}

runs_since() {
    syncd_sql "SELECT coalesce(group_concat(mode || ':' || outcome, ' '), '') FROM
        (SELECT mode, outcome FROM sync_run WHERE id > $1 ORDER BY id)"
}

syncd_conf_reset
# A change of address is one removal of the few people here: more than
# the shrink guard's default share, which is tested at the end.
slapd_syncd_conf "poll_interval=1h" "full_interval=1h" "retry_interval=1s" "max_remove_share=100"
slapd_source ldap generic "base=$PEOPLE" "mode=persistent"

# --- start: a full pull, then the persistent search
start_syncd
ok_if "[ $(wait_log 'persistent search (RFC 4533') -ge 1 ]" "the daemon starts a persistent search after its full pull"
tl_is "$(rg_query jdoe@generic.example)" 0 "the full pull is in the store"
tl_is "$(syncd_sql "SELECT cookie LIKE '%csn=%' FROM source WHERE name = 'ldap'")" 1 \
    "the full pull stored an RFC 4533 cookie"

# --- add, modify, delete: each in the store within a second
person pers1
t=$(until_query pers1@generic.example 0)
ok_if "within_1s $t" "an added person is in the store within 1 s ($t ms)"
cookie1=$(syncd_sql "SELECT cookie FROM source WHERE name = 'ldap'")

slapd_modify >/dev/null <<EOF
dn: uid=pers1,$PEOPLE
changetype: modify
replace: mail
mail: pers1.new@generic.example
EOF
t=$(until_query pers1.new@generic.example 0)
ok_if "within_1s $t" "a new address is in the store within 1 s ($t ms)"
tl_is "$(rg_query pers1@generic.example)" 1 "and the old one is gone"
cookie2=$(syncd_sql "SELECT cookie FROM source WHERE name = 'ldap'")
ok_if "[ '$cookie1' != '$cookie2' ]" "each change stores the new cookie with the data"

slapd_delete "uid=pers1,$PEOPLE" >/dev/null
t=$(until_query pers1.new@generic.example 1)
ok_if "within_1s $t" "a deleted person leaves the store within 1 s ($t ms)"

# --- a burst of changes is a few transactions, not one per change
runs0=$(syncd_sql "SELECT max(id) FROM sync_run")
awk -v base="$PEOPLE" 'BEGIN {
    for (i = 0; i < 200; i++)
        printf "dn: uid=burst%03d,%s\nobjectClass: inetOrgPerson\nuid: burst%03d\ncn: b\nsn: b\nmail: burst%03d@generic.example\n\n", i, base, i, i
}' | slapd_add >/dev/null
t=$(until_query burst199@generic.example 0)
ok_if "[ '$t' != timeout ]" "200 quick additions arrive ($t ms)"
sleep 0.3
tl_is "$(syncd_sql "SELECT count(*) FROM recipient WHERE address LIKE 'burst%'")" 200 "all 200 of them"
n=$(syncd_sql "SELECT count(*) FROM sync_run WHERE id > $runs0")
ok_if "[ $n -lt 100 ]" "in batches: $n transactions for 200 changes"

# --- SIGTERM while waiting on the persistent search
stop_syncd
tl_is "$stop_rc" 0 "SIGTERM stops the daemon (exit 0)"
ok_if "[ $stop_ms -lt 1500 ]" "promptly, while it waits on the persistent search ($stop_ms ms)"

# --- a restart resumes from the stored cookie
person pers2
runs0=$(syncd_sql "SELECT max(id) FROM sync_run")
start_syncd
t=$(until_query pers2@generic.example 0)
ok_if "[ '$t' != timeout ]" "a person added while the daemon was down arrives after its restart"
tl_is "$(runs_since "$runs0")" "incremental:ok" "through an incremental run from the cookie, no full pull"
person pers3
t=$(until_query pers3@generic.example 0)
ok_if "within_1s $t" "and the restarted daemon's persistent search runs ($t ms)"

# --- slapd restarts under the daemon
slapd_restart || tl_ok 1 "slapd restarts"
ok_if "[ $(wait_log 'persistent search lost') -ge 1 ]" "the daemon notices the lost connection"
ok_if "[ $(wait_log 'persistent search (RFC 4533' 3) -ge 3 ]" "and reconnects"
person pers4
t=$(until_query pers4@generic.example 0 15000)
ok_if "[ '$t' != timeout ]" "a change made after the slapd restart arrives ($t ms)"
slapd_delete "uid=pers3,$PEOPLE" >/dev/null
t=$(until_query pers3@generic.example 1)
ok_if "within_1s $t" "and so does a deletion, within 1 s ($t ms)"
tl_is "$(rg_query jdoe@generic.example)" 0 "the fixture's people are still there"

# --- SIGHUP: the search restarts with the new settings, from the cookie
n=$(grep -c 'persistent search (RFC 4533' "$T/daemon.err")
kill -HUP "$syncd_pid"
ok_if "[ $(wait_log 'persistent search (RFC 4533' $((n + 1))) -gt $n ]" "SIGHUP restarts the persistent search"
person pers6
t=$(until_query pers6@generic.example 0)
ok_if "within_1s $t" "and changes keep arriving within 1 s ($t ms)"
stop_syncd
tl_is "$stop_rc" 0 "the daemon stops on SIGTERM"
tl_is "$(grep -c 'full sync applied' "$T/daemon.err")" 1 "one full pull in all (the first start)"

# --- changes while the daemon is down, then slapd restarts (its session log lost)
slapd_delete "uid=pers6,$PEOPLE" >/dev/null
person pers7
slapd_restart || tl_ok 1 "slapd restarts"
start_syncd
t=$(until_query pers7@generic.example 0)
ok_if "[ '$t' != timeout ]" "after a slapd restart while the daemon was down: an addition arrives"
t=$(until_query pers6@generic.example 1)
ok_if "[ '$t' != timeout ]" "and so does the deletion"
tl_like "$(grep 'full pull is needed' "$T/daemon.err")" "present" \
    "through a full pull, the server having only the present phase for the cookie"
person pers8
t=$(until_query pers8@generic.example 0)
ok_if "within_1s $t" "then the persistent search runs ($t ms)"
stop_syncd
tl_is "$stop_rc" 0 "the daemon stops on SIGTERM"

# --- mode = poll: RFC 4533 refreshOnly pulls from the cookie
syncd_conf_reset
slapd_syncd_conf "poll_interval=1s" "full_interval=1h"
slapd_source ldap generic "base=$PEOPLE" "mode=poll"
runs0=$(syncd_sql "SELECT max(id) FROM sync_run")
start_syncd
full0=$(grep -c 'full sync applied' "$T/daemon.err")
ok_if "[ $(wait_log 'full sync applied' $((full0 + 1))) -gt $full0 ]" "mode = poll: the daemon starts with a full pull"
slapd_delete "uid=pers2,$PEOPLE" >/dev/null
person pers5
t=$(until_query pers5@generic.example 0)
ok_if "[ '$t' != timeout ]" "mode = poll: an addition arrives ($t ms)"
t=$(until_query pers2@generic.example 1)
ok_if "[ '$t' != timeout ]" "and a deletion"
ok_if "[ $(syncd_sql "SELECT count(*) FROM sync_run WHERE id > $runs0 AND mode = 'incremental'
    AND added + removed > 0") -ge 1 ]" "through incremental pulls"
stop_syncd
tl_is "$stop_rc" 0 "the daemon stops on SIGTERM"

# --- the shrink guard: everyone deleted while the daemon was down
syncd_conf_reset
slapd_syncd_conf "poll_interval=1s" "full_interval=1h" "retry_interval=1s"
slapd_source ldap generic "base=$PEOPLE" "mode=persistent"
n=$(syncd_sql "SELECT count(*) FROM recipient r JOIN source s ON s.id = r.source_id WHERE s.name = 'ldap'")
cookie1=$(syncd_sql "SELECT cookie FROM source WHERE name = 'ldap'")
syncd_dump > "$T/before"
slapd_search -b "$PEOPLE" -s one 1.1 | sed -n 's/^dn: //p' > "$T/people.dns"
slapd_delete -f "$T/people.dns"
tl_is "$?" 0 "everyone under $PEOPLE deleted ($(wc -l < "$T/people.dns") entries)"
refused0=$(grep -c 'not applying this incremental sync' "$T/daemon.err")
runs0=$(syncd_sql "SELECT max(id) FROM sync_run")
start_syncd
ok_if "[ $(wait_log 'not applying this incremental sync' $((refused0 + 2))) -ge $((refused0 + 2)) ]" \
    "the delete list from the cookie is refused, and so is the retry a poll later"
tl_like "$(grep 'not applying this incremental sync' "$T/daemon.err" | tail -n 1)" \
    "it would remove all $n of the source's recipients" "the log says how many"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "the refusals changed nothing"
tl_is "$(rg_query jdoe@generic.example)" 0 "the last good data keeps serving"
tl_is "$(syncd_sql "SELECT cookie FROM source WHERE name = 'ldap'")" "$cookie1" "the cookie stays where it was"
tl_is "$(syncd_sql "SELECT count(*) FROM sync_run WHERE id > $runs0 AND mode = 'full'")" 0 \
    "no full pull in between: the retries resume from the old cookie"
stop_syncd
tl_is "$stop_rc" 0 "the daemon stops on SIGTERM"
"$RG_ADMIN" -c "$CONF" check -t 3s --no-lookupd --no-smtpd >"$T/check.out" 2>&1
tl_is "$?" 2 "rcptgate check is CRITICAL"
tl_like "$(cat "$T/check.out")" "ldap: the shrink guard refused the last sync \(refused: incremental pull" "and says why"
tl_like "$(tl_admin stats 2>&1)" "ldap .*refused: incremental pull: it would remove all $n" "rcptgate stats shows it"
syncd_once --incremental
tl_is "$rc" 65 "--once --incremental: refused too, 65"
syncd_once --force
tl_is "$rc" 0 "--once --force applies what the directory holds now"
tl_is "$(rg_query jdoe@generic.example)" 1 "the deleted people are gone"
"$RG_ADMIN" -c "$CONF" check -t 3s --no-lookupd --no-smtpd >"$T/check.out" 2>&1
tl_unlike_guard=$(grep -c 'shrink guard' "$T/check.out")
tl_is "$tl_unlike_guard" 0 "rcptgate check no longer reports the refusal"

tl_done
