#!/bin/sh
# syncd_notify.sh - rcptgate-syncd's persistent mode for Active Directory
#
# A Samba AD domain controller (tests/lib/samba.sh) and rcptgate-syncd -f
# with flavour ad, mode = persistent and poll and full intervals of an
# hour, so that only the change notification control
# (1.2.840.113556.1.4.528) can bring a change in time. After the initial
# full pull: a user added with proxyAddresses is valid, and a changed
# address moves (old invalid, new valid), each within 5 s (Samba re-runs
# a notification search at once after a write through the process that
# holds it, as here with -M single, and otherwise on a 5 s timer); the
# runs after the full one are
# incremental (uSNChanged), never full; after Samba is restarted the
# daemon reconnects and a later change still arrives; the waiting
# connection has a TCP keepalive timer; SIGTERM stops the daemon promptly
# with exit 0 while it waits on the notification searches. The measured
# times are printed as TAP comments.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"
. "$top_srcdir/tests/lib/samba.sh"

tl_init syncd_notify
samba_require
syncd_require

S=$SAMBA_SUFFIX
OU="OU=Notify,$S"

samba_init || { echo "not ok 1 - the Samba domain is provisioned"; echo "1..1"; exit 1; }
samba_start || { echo "not ok 1 - samba starts"; echo "1..1"; exit 1; }
echo "# samba $SAMBA_PID on $SAMBA_URI"

# ok_if COMMAND MSG - ok when the shell command succeeds
ok_if() {
    eval "$1"
    tl_ok $? "$2"
}

# ms - a clock in milliseconds
ms() {
    echo $(($(date +%s%N) / 1000000))
}

# until_query ADDRESS WANT [LIMIT_MS] - poll every 50 ms until rg_query
# gives WANT (0 found, 1 not); prints the milliseconds it took, or "timeout"
until_query() {
    _t0=$(ms)
    _limit=${3:-15000}
    while :; do
        [ "$(rg_query "$1")" = "$2" ] && { echo $(($(ms) - _t0)); return; }
        [ $(($(ms) - _t0)) -gt "$_limit" ] && { echo timeout; return; }
        sleep 0.05
    done
}

# within_5s MS - is a measured time under five seconds?
within_5s() {
    [ "$1" != timeout ] && [ "$1" -lt 5000 ]
}

# wait_sql SQL WANT - up to 30 s for SQL to give WANT; prints what it gave last
wait_sql() {
    _n=0
    while [ $_n -lt 300 ]; do
        _v=$(syncd_sql "$1")
        [ "$_v" = "$2" ] && break
        sleep 0.1
        _n=$((_n + 1))
    done
    echo "$_v"
}

# runs_since ID - mode:outcome of the runs after sync_run ID
runs_since() {
    syncd_sql "SELECT coalesce(group_concat(mode || ':' || outcome, ' '), '') FROM
        (SELECT mode, outcome FROM sync_run WHERE id > $1 ORDER BY id)"
}

samba_add <<EOF
dn: $OU
objectClass: organizationalUnit

dn: CN=First User,$OU
objectClass: user
sAMAccountName: first
userAccountControl: 544
proxyAddresses: SMTP:first@test.example.com
EOF
tl_is "$?" 0 "an OU with one mail user is created in Samba"
tl_admin domain add test.example.com >/dev/null 2>&1

# Samba itself accepts the control on a subtree search of the base.
timeout 3 ldapsearch -x -LLL -H "$SAMBA_URI" -D "$SAMBA_ADMIN_DN" -w "$SAMBA_ADMIN_PW" \
    -E '!serverNotif' -b "$OU" -s sub '(objectClass=*)' uSNChanged >"$T/notif.out" 2>&1
tl_is "$?" 124 "Samba keeps a subtree search with the change notification control open"

syncd_conf_reset
# A renamed address is one removal of the source's 3 recipients: more than
# the shrink guard's default share (tested in syncd_persist.sh and others).
slapd_syncd_conf "poll_interval=1h" "full_interval=1h" "retry_interval=1s" "max_remove_share=100"
samba_source samba "base=$OU" "mode=persistent"

"$RG_SYNCD" -c "$CONF" -f >>"$T/daemon.out" 2>>"$T/daemon.err" &
syncd_pid=$!
tl_pids="$tl_pids $syncd_pid"

tl_is "$(wait_sql "SELECT count(*) FROM sync_run WHERE mode = 'full' AND outcome = 'ok'" 1)" 1 \
    "the daemon's first run is a full pull"
tl_is "$(rg_query first@test.example.com)" 0 "the full pull is in the store"
# The incremental pull after the full one, and one more when the first
# wait has opened the notification searches (for a change in between).
tl_is "$(wait_sql "SELECT count(*) FROM sync_run WHERE mode = 'incremental' AND outcome = 'ok'" 2)" 2 \
    "two incremental pulls follow: after the full pull and once the notification searches are open"
tl_wait_grep "change notification searches open on 1 base on $SAMBA_URI" "$T/daemon.err"
tl_is "$?" 0 "the daemon logs (at info, without -v) that it waits on the notification search"
sleep 1
last=$(syncd_sql "SELECT max(id) FROM sync_run")

# --- an added user: valid within 5 s
samba_add <<EOF
dn: CN=Notify One,$OU
objectClass: user
sAMAccountName: notify1
userAccountControl: 544
proxyAddresses: SMTP:notify.one@test.example.com
proxyAddresses: smtp:n1@test.example.com
EOF
t=$(until_query notify.one@test.example.com 0)
echo "# added user valid after $t ms"
ok_if "within_5s $t" "an added user is valid within 5 s ($t ms)"
tl_is "$(rg_query n1@test.example.com)" 0 "with its secondary address"

# --- a changed address: the old one invalid, the new one valid, within 5 s
samba_modify <<EOF
dn: CN=Notify One,$OU
changetype: modify
delete: proxyAddresses
proxyAddresses: smtp:n1@test.example.com
-
add: proxyAddresses
proxyAddresses: smtp:n1.new@test.example.com
EOF
t=$(until_query n1.new@test.example.com 0)
echo "# changed address valid after $t ms"
ok_if "within_5s $t" "a new address is valid within 5 s ($t ms)"
tl_is "$(rg_query n1@test.example.com)" 1 "and the old one is invalid"
tl_is "$(rg_query notify.one@test.example.com)" 0 "the primary address stays valid"

# --- the waiting connection has TCP keepalive (a DC gone without a FIN is noticed)
if command -v ss >/dev/null 2>&1; then
    ss -tnoH state established "dst $SAMBA_IP:389" >"$T/ss.out" 2>&1
    tl_like "$(cat "$T/ss.out")" "timer:\\(keepalive," "the daemon's connection to the DC has a keepalive timer"
else
    echo "# ss not installed: keepalive not checked"
fi

runs=$(runs_since "$last")
echo "# runs after the start: $runs"
ok_if "echo '$runs' | grep -q 'incremental:ok'" "the changes came through incremental runs"
ok_if "! echo '$runs' | grep -q 'full'" "and no full pull ran"
tl_is "$(syncd_sql "SELECT count(*) FROM sync_run WHERE mode = 'full'")" 1 "only the first run was full"

# --- Samba restarted: the daemon reconnects with backoff, opens the
# notification searches again, and a later change still arrives
ok_before=$(syncd_sql "SELECT count(*) FROM sync_run WHERE mode = 'incremental' AND outcome = 'ok'")
samba_stop
_n=0
while [ $_n -lt 100 ] && ! grep -q "persistent search lost" "$T/daemon.err"; do
    sleep 0.1
    _n=$((_n + 1))
done
ok_if "grep -q 'persistent search lost' '$T/daemon.err'" "the daemon notices that Samba went away"
samba_run
tl_is "$?" 0 "samba starts again on $SAMBA_URI"
tl_is "$(wait_sql "SELECT count(*) >= $((ok_before + 2)) FROM sync_run WHERE mode = 'incremental' AND outcome = 'ok'" 1)" 1 \
    "it reconnects: an incremental pull, and another once the notification searches are open again"
sleep 1
samba_add <<EOF
dn: CN=Notify Two,$OU
objectClass: user
sAMAccountName: notify2
userAccountControl: 544
proxyAddresses: SMTP:notify.two@test.example.com
EOF
t=$(until_query notify.two@test.example.com 0)
echo "# user added after the restart valid after $t ms"
ok_if "within_5s $t" "a user added after the restart is valid within 5 s ($t ms)"
tl_is "$(syncd_sql "SELECT count(*) FROM sync_run WHERE mode = 'full'")" 1 "still no full pull after the reconnect"

# --- SIGTERM while waiting on the notification searches
t0=$(ms)
kill -TERM "$syncd_pid"
wait "$syncd_pid"
stop_rc=$?
stop_ms=$(($(ms) - t0))
echo "# stopped in $stop_ms ms"
tl_is "$stop_rc" 0 "SIGTERM stops the daemon with exit 0"
ok_if "[ $stop_ms -lt 5000 ]" "promptly, within 5 s, not at the next poll an hour away ($stop_ms ms)"
[ "$stop_rc" = 0 ] || sed 's/^/#   /' "$T/daemon.err" | tail -10

samba_stop
tl_done
