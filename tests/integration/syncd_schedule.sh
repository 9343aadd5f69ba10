#!/bin/sh
# syncd_schedule.sh - when rcptgate-syncd's daemon pulls after the cases
# that used to make it pull the whole directory over and over
#
# 1. mode = persistent against a slapd without the syncprov overlay: the
#    full pull stores no RFC 4533 cookie, so the persistent search cannot
#    start. The source polls (every poll_interval, not every
#    retry_interval), says so once, and once slapd has syncprov the next
#    poll starts the persistent search.
#    1b. Then, the sync account no longer seeing one person, the full
#    reconciliation of a persistent source is refused: the persistent
#    search runs again after it, and a new person arrives through it.
# 2. A full pull refused by the shrink guard (flavour ad, whose uSNChanged
#    incremental pulls do not see deletions): incremental pulls go on from
#    the stored state, so that a new user arrives while the refusal
#    stands (rcptgate check and stats keep showing it); the full pull is
#    not repeated at every poll.
# 3. mode = persistent, a cookie that needs a full pull and a full pull
#    that is refused: the source waits for the full pull's retry instead
#    of pulling in full at every poll.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init syncd_schedule
slapd_require
syncd_require

S=$SLAPD_SUFFIX
PEOPLE="ou=People,$S"
USERS="ou=Users,$S"

SLAPD_SYNCPROV=no
slapd_init || tl_bail "slapd_init failed"
slapd_load "$top_srcdir/tests/fixtures/directory.ldif" &&
    slapd_start || { echo "not ok 1 - slapd with the fixture starts"; echo "1..1"; exit 1; }
tl_admin domain add generic.example >/dev/null 2>&1
tl_admin domain add test.example >/dev/null 2>&1

# ms - a clock in milliseconds
ms() {
    echo $(($(date +%s%N) / 1000000))
}

# wait_for SQL WANT [LIMIT_S] - up to LIMIT_S (15) seconds for a query to
# give WANT; prints its last answer
wait_for() {
    _n=0
    _limit=$((${3:-15} * 20))
    while [ $_n -lt $_limit ]; do
        _got=$(syncd_sql "$1")
        [ "$_got" = "$2" ] && break
        kill -0 "$syncd_pid" 2>/dev/null || break    # the daemon is gone: nothing will change
        sleep 0.05
        _n=$((_n + 1))
    done
    echo "$_got"
}

# wait_log TEXT [COUNT] - up to 15 s for the daemon's log to say TEXT
# COUNT times (default 1); prints how often it does
wait_log() {
    _n=0
    while [ $_n -lt 300 ]; do
        _c=$(grep -c "$1" "$T/daemon.err" 2>/dev/null)
        [ "${_c:-0}" -ge "${2:-1}" ] && break
        kill -0 "$syncd_pid" 2>/dev/null || break
        sleep 0.05
        _n=$((_n + 1))
    done
    echo "${_c:-0}"
}

# runs SOURCE MODE - how many runs of that mode the source has recorded
runs() {
    syncd_sql "SELECT count(*) FROM sync_run r JOIN source s ON s.id = r.source_id
               WHERE s.name = '$1' AND r.mode = '$2'"
}

# ------------------------------------------------------------ 1. no syncprov

syncd_conf_reset
# A retry_interval far below poll_interval: a full pull at each retry
# would show as runs a second apart.
slapd_syncd_conf "poll_interval=4s" "retry_interval=1s" "full_interval=1h"
slapd_source people generic "base=$PEOPLE" "mode=persistent"
start_syncd
tl_is "$(wait_for "SELECT count(*) FROM sync_run r JOIN source s ON s.id = r.source_id
    WHERE s.name = 'people' AND r.mode = 'full' AND r.outcome = 'ok'" 1)" 1 \
    "no syncprov: the daemon's first full pull is applied"
t0=$(ms)
tl_is "$(rg_query jdoe@generic.example)" 0 "the directory's people are in the store"
tl_is "$(wait_log 'the persistent search cannot start')" 1 \
    "the log says the persistent search cannot start"
tl_like "$(grep 'the persistent search cannot start' "$T/daemon.err")" \
    "no sync state \\(RFC 4533 cookie\\) to resume from; the server may lack the syncprov overlay.*Polling every 4s instead" \
    "why, and that the source polls every poll_interval instead"
tl_is "$(wait_for "SELECT count(*) FROM sync_run r JOIN source s ON s.id = r.source_id
    WHERE s.name = 'people' AND r.mode = 'full'" 2)" 2 "a second full pull comes"
gap=$(($(ms) - t0))
ok=0
[ "$gap" -ge 3000 ] && ok=1
tl_is "$ok" 1 "a poll_interval later, not a retry_interval later ($gap ms; poll 4 s, retry 1 s)"
tl_is "$(wait_for "SELECT count(*) FROM sync_run r JOIN source s ON s.id = r.source_id
    WHERE s.name = 'people' AND r.mode = 'full'" 3)" 3 "and a third"
tl_is "$(grep -c 'the persistent search cannot start' "$T/daemon.err")" 1 \
    "the reason is logged once, not at every poll"
tl_is "$(grep -c 'did not start' "$T/daemon.err")" 0 "no \"retrying in\" a retry_interval"

# --- slapd gains syncprov: the next poll starts the persistent search
SLAPD_SYNCPROV=yes
slapd_restart || tl_bail "slapd restarts with syncprov"
tl_is "$(wait_log 'persistent search (RFC 4533')" 1 "with syncprov, a later poll starts the persistent search"
tl_is "$(wait_log 'the persistent search runs now')" 1 "and says so"
tl_is "$(syncd_sql "SELECT cookie LIKE '%csn=%' FROM source WHERE name = 'people'")" 1 \
    "the full pull stored an RFC 4533 cookie"
full0=$(runs people full)
slapd_add <<EOF
dn: uid=sched1,$PEOPLE
objectClass: inetOrgPerson
uid: sched1
cn: sched1
sn: sched1
mail: sched1@generic.example
EOF
tl_is "$(wait_for "SELECT count(*) FROM recipient WHERE address = 'sched1@generic.example'" 1 3)" 1 \
    "a person added now arrives within 3 s (less than a poll_interval)"
tl_is "$(runs people full)" "$full0" "through the persistent search, no full pull"
stop_syncd
tl_is "$stop_rc" 0 "the daemon stops on SIGTERM"

# ------------------------------------------------------------ 1b. refused full pull, persistent

# The sync account stops seeing jdoe (an ACL change; the stored cookie is
# current, so the persistent search resumes without a full pull). The
# full reconciliation, a minute later, would remove his three addresses
# and is refused; the persistent search must run again after it, from
# the cookie the refusal kept.
slapd_acl "access to attrs=userPassword
	by anonymous auth
	by self read
	by * none
access to dn.exact=\"uid=jdoe,$PEOPLE\"
	by dn.exact=\"$SLAPD_SYNC_DN\" none
	by users read
	by * none
access to *
	by users read
	by * none"
slapd_restart || tl_bail "slapd restarts with the new access rules"
syncd_conf_reset
# full_interval at its minimum: the reconciliation comes after 60-66 s.
slapd_syncd_conf "poll_interval=1s" "retry_interval=1s" "full_interval=1m"
slapd_source people generic "base=$PEOPLE" "mode=persistent"
runs0=$(syncd_sql "SELECT max(id) FROM sync_run")
n=$(grep -c 'persistent search (RFC 4533' "$T/daemon.err")
start_syncd
tl_is "$(wait_log 'persistent search (RFC 4533' $((n + 1)))" $((n + 1)) \
    "persistent: the daemon resumes from the cookie"
tl_is "$(wait_for "SELECT count(*) FROM sync_run WHERE id > $runs0 AND mode = 'full' AND outcome = 'refused'" 1 90)" 1 \
    "its full reconciliation a minute later is refused (jdoe's addresses would go)"
tl_is "$(wait_log 'persistent search (RFC 4533' $((n + 2)))" $((n + 2)) \
    "the persistent search starts again from the cookie the refusal kept"
slapd_add <<EOF
dn: uid=sched2,$PEOPLE
objectClass: inetOrgPerson
uid: sched2
cn: sched2
sn: sched2
mail: sched2@generic.example
EOF
tl_is "$(wait_for "SELECT count(*) FROM recipient WHERE address = 'sched2@generic.example'" 1 3)" 1 \
    "a person added after the refusal arrives within 3 s (poll_interval 1 s, but no poll: the search)"
tl_is "$(syncd_sql "SELECT group_concat(mode || ':' || outcome, ' ') FROM sync_run WHERE id > $runs0 AND mode = 'full'")" \
    "full:refused" "one full pull in all, the refused one"
tl_is "$(rg_query jdoe@generic.example)" 0 "jdoe still answers (the refusal stands)"
stop_syncd
tl_is "$stop_rc" 0 "the daemon stops on SIGTERM"

# ------------------------------------------------------------ 2. refused full pull

syncd_conf_reset
slapd_syncd_conf "poll_interval=1s" "retry_interval=1s"
slapd_source ad ad "base=$USERS"
syncd_once
tl_is "$rc" 0 "flavour ad: a first full pull"
n=$(syncd_sql "SELECT count(*) FROM recipient r JOIN source s ON s.id = r.source_id WHERE s.name = 'ad'")
tl_is "$(rg_query dave@test.example)" 0 "dave is a recipient"
# uSNChanged pulls do not see deletions: only the full reconciliation does.
slapd_delete "cn=Alice Smith,$USERS" "cn=Bob Jones,$USERS" "cn=Dave Brown,$USERS" "cn=Grace Hopper,$USERS"
tl_is "$?" 0 "four users deleted (more than max_remove_share of $n addresses)"
syncd_dump > "$T/before"
start_syncd
tl_is "$(wait_for "SELECT count(*) FROM sync_run r JOIN source s ON s.id = r.source_id
    WHERE s.name = 'ad' AND r.mode = 'full' AND r.outcome = 'refused'" 1)" 1 \
    "the daemon's first full pull is refused by the shrink guard"
tl_like "$(wait_log 'the full pull is tried again'; grep 'the full pull is tried again' "$T/daemon.err")" \
    "source ad: the full pull is tried again in 1h; incremental pulls go on meanwhile, every 1s" \
    "the log says when the full pull comes again, and that incremental pulls go on"
tl_is "$(wait_for "SELECT count(*) FROM sync_run r JOIN source s ON s.id = r.source_id
    WHERE s.name = 'ad' AND r.mode = 'incremental' AND r.outcome = 'ok'" 2)" 2 \
    "incremental pulls follow, from the state the refusal kept"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "nothing was removed"
guid=$(openssl rand -base64 16)
slapd_add <<EOF
dn: cn=Newton Late,$USERS
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: user
cn: Newton Late
sn: Late
sAMAccountName: newton
userAccountControl: 512
mail: newton@test.example
objectGUID:: $guid
uSNCreated: 20001
uSNChanged: 20001
EOF
tl_is "$?" 0 "a new user added while the refusal stands"
tl_is "$(wait_for "SELECT count(*) FROM recipient WHERE address = 'newton@test.example'" 1)" 1 \
    "the new user arrives"
tl_is "$(syncd_sql "SELECT mode FROM sync_run WHERE added > 0 ORDER BY id DESC LIMIT 1")" incremental \
    "through an incremental pull"
tl_is "$(rg_query dave@test.example)" 0 "a deleted user still answers (the refusal stands)"
tl_is "$(runs ad full)" 2 "one full pull by the daemon (and the first --once): not one at every poll"
"$RG_ADMIN" -c "$CONF" check -t 3s --no-lookupd --no-smtpd >"$T/check.out" 2>&1
tl_is "$?" 2 "rcptgate check is CRITICAL"
tl_like "$(cat "$T/check.out")" "ad: the shrink guard refused the last full sync, and none was applied since" \
    "and says the full sync stands refused"
tl_like "$(tl_admin stats 2>&1 | grep "^  ad ")" "incremental ok .*, the shrink guard refused the latest full pull: it would remove" \
    "rcptgate stats shows the standing refusal after the incremental runs"
stop_syncd
tl_is "$stop_rc" 0 "the daemon stops on SIGTERM"

# ------------------------------------------------------------ 3. refused full pull, persistent

# slapd restarts and loses its session log, while the stored cookie is
# behind (part 2 changed ou=Users): the cookie can only be resumed from
# with a present phase, which needs a full pull, and the full pull would
# remove jdoe's three addresses (hidden since 1b): refused. The
# incremental pulls that follow need a full pull too: they must wait for
# its retry, not pull the whole directory again at every poll.
slapd_restart || tl_bail "slapd restarts"
syncd_conf_reset
slapd_syncd_conf "poll_interval=1s" "retry_interval=1s"
slapd_source people generic "base=$PEOPLE" "mode=persistent"
runs0=$(syncd_sql "SELECT max(id) FROM sync_run")
start_syncd
tl_is "$(wait_for "SELECT count(*) FROM sync_run WHERE id > $runs0 AND mode = 'full' AND outcome = 'refused'" 1)" 1 \
    "persistent: the full pull the cookie needs is refused (jdoe's addresses would go)"
tl_like "$(wait_log 'source people: an incremental pull needs a full pull'
    grep 'source people: an incremental pull needs a full pull' "$T/daemon.err")" \
    "and the last one was refused: nothing to pull until the full pull is tried again in 1h" \
    "the next incremental pull, needing a full one, waits for the full pull's retry"
tl_is "$(wait_for "SELECT count(*) FROM sync_run WHERE id > $runs0 AND mode = 'full'" 2 4)" 1 \
    "no second full pull within 4 s (poll_interval 1 s)"
tl_is "$(grep -c 'source people: an incremental pull needs a full pull' "$T/daemon.err")" 1 \
    "nor a second attempt"
tl_is "$(rg_query jdoe@generic.example)" 0 "jdoe still answers (the refusal stands)"
stop_syncd
tl_is "$stop_rc" 0 "the daemon stops on SIGTERM"

# --- a retry_interval over the 10 minutes the doubling stops at is kept:
# the first wait after a failed pull is 30m, not 10m
syncd_conf_reset
slapd_syncd_conf "retry_interval=30m"
slapd_source gone generic "base=ou=Nowhere,$S"
: > "$T/daemon.err"
start_syncd
tl_like "$(wait_log 'source gone: next attempt in'
    grep 'source gone: next attempt in' "$T/daemon.err")" "next attempt in 30m" \
    "retry_interval = 30m: the first retry waits 30m"
stop_syncd

tl_done
