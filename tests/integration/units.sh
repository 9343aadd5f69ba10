#!/bin/sh
# units.sh - the systemd units, and the daemons run the way they start them
#
# Each generated unit names the configured paths and passes
# `systemd-analyze verify` (a copy whose ExecStart points into the build
# tree: nothing is installed here), and a unit with a missing program is
# refused (so the verify check can fail). Then each unit's ExecStart line
# is run as the unit runs it: as an unprivileged user (User=; here nobody
# when the test runs as root) whose name is also the config's `user`,
# in the foreground, with NOTIFY_SOCKET pointing at a datagram socket
# that tests/tools/notify_listen.py reads. The only change is `-c FILE`
# for the test's config. READY=1 must come only once the daemon answers:
# the listener probes the daemon the moment READY=1 arrives, and lookupd
# and smtpd started without a store must answer (TEMP, a banner) but stay
# not ready until the store appears. HUP gives RELOADING=1 then READY=1,
# TERM gives STOPPING=1.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"
tl_init units
trap '' PIPE

UNITDIR="$top_builddir/systemd"
NOTIFY_LISTEN="$top_srcdir/tests/tools/notify_listen.py"
RG_SYNCD="$top_builddir/syncd/rcptgate-syncd"
command -v systemd-analyze >/dev/null 2>&1 ||
    tl_skip_all "systemd-analyze not installed (Debian package systemd)"
[ -f "$UNITDIR/rcptgate-lookupd.service" ] || tl_skip_all "built --without-systemd: no units"

# makevar NAME - a variable of the build's Makefile, fully expanded
makevar() {
    printf 'rg-print-%%:\n\t@echo $($*)\n' |
        env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory -C "$top_builddir" \
            -f Makefile -f - "rg-print-$1"
}
SBINDIR=$(makevar sbindir)
LOCALSTATEDIR=$(makevar localstatedir)
RUNSTATEDIR=$(makevar runstatedir)
RGUSER=$(makevar RG_USER)
tl_like "$SBINDIR" '^/' "the build's sbindir is known ($SBINDIR)"

# --- the units name the configured paths and carry the hardening
for u in lookupd smtpd syncd syncd-once; do
    f="$UNITDIR/rcptgate-$u.service"
    prog=rcptgate-${u%-once}
    exec_line=$(sed -n 's/^ExecStart=//p' "$f")
    case $u in
    syncd-once) want="$SBINDIR/$prog --once" ;;
    *) want="$SBINDIR/$prog -f" ;;
    esac
    tl_is "$exec_line" "$want" "$u: ExecStart is the configured program"
    grep -qx "ReadWritePaths=-$LOCALSTATEDIR/lib/rcptgate -$RUNSTATEDIR/rcptgate" "$f"
    tl_ok $? "$u: may write the configured state and run directories"
    missing=""
    for l in "User=$RGUSER" StateDirectory=rcptgate RuntimeDirectory=rcptgate NoNewPrivileges=yes \
        ProtectSystem=strict ProtectHome=yes PrivateTmp=yes SystemCallFilter=@system-service \
        RuntimeDirectoryPreserve=yes; do
        grep -qx "$l" "$f" || missing="$missing $l"
    done
    tl_is "$missing" "" "$u: user, directories and hardening lines present"
    grep -q '^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' "$f"
    tl_ok $? "$u: address families restricted"
    case $u in
    syncd-once)
        grep -qx 'Type=oneshot' "$f"
        tl_ok $? "$u: Type=oneshot (a timer's job has no READY)"
        ;;
    *)
        grep -qx 'Type=notify' "$f" && grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$f"
        tl_ok $? "$u: Type=notify, ExecReload sends HUP"
        ;;
    esac
    case $u in
    smtpd) want=CAP_NET_BIND_SERVICE ;;
    *) want="" ;;
    esac
    tl_is "$(sed -n 's/^CapabilityBoundingSet=//p' "$f")" "$want" "$u: capabilities: '${want:-none}'"
done
grep -qx "d $LOCALSTATEDIR/lib/rcptgate 0750 $RGUSER $RGUSER -" "$UNITDIR/rcptgate.tmpfiles" &&
    grep -qx "d $RUNSTATEDIR/rcptgate 0755 $RGUSER $RGUSER -" "$UNITDIR/rcptgate.tmpfiles"
tl_ok $? "tmpfiles.d: the configured directories, owned by $RGUSER"
grep -q "^u $RGUSER - \".*\" $LOCALSTATEDIR/lib/rcptgate /usr/sbin/nologin\$" "$UNITDIR/rcptgate.sysusers"
tl_ok $? "sysusers.d: the system user $RGUSER"

# --- systemd-analyze verify, on copies that run the build tree's programs
mkdir -p "$T/units"
for u in lookupd smtpd syncd syncd-once; do
    prog=rcptgate-${u%-once}
    dir=${u%-once}
    sed "s|^ExecStart=$SBINDIR/$prog|ExecStart=$top_builddir/$dir/$prog|" \
        "$UNITDIR/rcptgate-$u.service" > "$T/units/rcptgate-$u.service"
done
cp "$top_srcdir/systemd/rcptgate-syncd-once.timer" "$T/units/"
# --man=no: a minimal machine has no man(1) to ask; the pages that
# Documentation= names are checked against the tree below instead.
for f in "$T"/units/*; do
    n=$(basename "$f")
    systemd-analyze verify --man=no "$f" > "$T/verify.out" 2>&1
    rc=$?
    tl_ok $([ $rc = 0 ] && [ ! -s "$T/verify.out" ]; echo $?) "systemd-analyze verify $n: clean"
    [ -s "$T/verify.out" ] && sed 's/^/#   /' "$T/verify.out"
done
# Every man:PAGE(N) a unit's Documentation= names is a page of the tree.
missing=""
docs=0
for page in $(sed -n 's/^Documentation=//p' "$T"/units/* | tr ' ' '\n' | sed -n 's/^man:\(.*\)(\([0-9]\))$/\1.\2/p' | sort -u); do
    docs=$((docs + 1))
    [ -f "$top_srcdir/man/$page" ] || missing="$missing $page"
done
tl_ok $([ $docs -gt 0 ] && [ -z "$missing" ]; echo $?) "the $docs man pages the units name are in man/${missing:+ (missing:$missing)}"
sed 's|^ExecStart=[^ ]*|ExecStart=/nonexistent/rcptgate-lookupd|' "$T/units/rcptgate-lookupd.service" \
    > "$T/rcptgate-broken.service"
systemd-analyze verify --man=no "$T/rcptgate-broken.service" > "$T/verify.out" 2>&1
rc=$?
tl_ok $([ $rc != 0 ] && grep -q /nonexistent "$T/verify.out"; echo $?) \
    "systemd-analyze verify refuses a unit whose program is missing"

# --- each unit's ExecStart, run as the unit runs it
# $AS_USER is a command prefix, not a function: $! must be the daemon's pid.
if [ "$(id -u)" = 0 ]; then
    RUNAS=nobody
    RUNGROUP=$(id -gn nobody)
    AS_USER="setpriv --reuid=$RUNAS --regid=$RUNGROUP --clear-groups"
else
    RUNAS=$(id -un)
    AS_USER=""
fi
# Outside the build tree: the user must be able to enter it (a clone under 0700 /root).
W=$(mktemp -d /tmp/rcptgate-units.XXXXXX) || exit 1
chmod 0755 "$W"
[ "$(id -u)" = 0 ] && chown "$RUNAS:$RUNGROUP" "$W"
trap 'tl_cleanup; rm -rf "$W"' EXIT
SMTPD_PORT=$(sm_port)
cat > "$W/rcptgate.conf" <<CONF
[store]
path = $W/store.db
busy_timeout = 500ms

[lookupd]
socketmap = unix:$W/socketmap.sock
user = $RUNAS
pid_file = $W/lookupd.pid
stats_file = $W/lookupd.stats

[rules]
hostname = mx.gateway.test

[smtpd]
listen = 127.0.0.1:$SMTPD_PORT
user = $RUNAS
pid_file = $W/smtpd.pid
stats_file = $W/smtpd.stats
log_file = $W/smtpd.maillog
reverse_lookup = no
reject_unknown_sender_domain = off

[syncd]
user = $RUNAS
pid_file = $W/syncd.pid

[source files]
type = file
path = $W/recipients.map
CONF
printf 'alice@example.com OK\nbob@example.com OK\n' > "$W/recipients.map"
chmod 0644 "$W/rcptgate.conf" "$W/recipients.map"

# exec_args UNIT - ExecStart's arguments after the program
exec_args() {
    sed -n 's/^ExecStart=[^ ]* *//p' "$UNITDIR/rcptgate-$1.service"
}

# listen NAME PROBE... - start the notify listener; messages in $T/notify.NAME
listen() {
    _n=$1
    shift
    rm -f "$W/notify"
    : > "$T/notify.$_n"
    python3 "$NOTIFY_LISTEN" "$W/notify" "$T/notify.$_n" "$@" &
    LISTEN_PID=$!
    tl_pids="$tl_pids $LISTEN_PID"
    i=0
    while ! grep -q '^listening' "$T/notify.$_n" && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
}

# wait_line FILE PATTERN [TENTHS] - wait until a line matches (default 10 s)
wait_line() {
    i=0
    while ! grep -Eq -- "$2" "$1" && [ $i -lt "${3:-100}" ]; do
        sleep 0.1
        i=$((i + 1))
    done
    grep -Eq -- "$2" "$1"
}

# run_unit UNIT PROG - run the unit's ExecStart (plus -c) as the user, in the background
run_unit() {
    # shellcheck disable=SC2046
    NOTIFY_SOCKET="$W/notify" $AS_USER "$2" $(exec_args "$1") -c "$W/rcptgate.conf" 2>>"$T/$1.err" &
    DPID=$!
    tl_pids="$tl_pids $DPID"
}

# stop_unit NAME - TERM: STOPPING=1 arrives and the daemon exits 0
stop_unit() {
    kill -TERM "$DPID"
    wait "$DPID"
    rc=$?
    tl_is "$rc" 0 "$1: TERM: exits 0"
    wait_line "$T/notify.$1" '^msg: STOPPING=1' 30
    tl_ok $? "$1: TERM: STOPPING=1"
    kill "$LISTEN_PID" 2>/dev/null
    wait "$LISTEN_PID" 2>/dev/null
}

# reload_unit NAME - HUP: RELOADING=1, then READY=1, and the probe at that READY=1 succeeds
reload_unit() {
    before=$(grep -c '^probe ' "$T/notify.$1")
    kill -HUP "$DPID"
    wait_line "$T/notify.$1" '^msg: RELOADING=1' 50
    tl_ok $? "$1: HUP: RELOADING=1"
    i=0
    while [ "$(grep -c '^probe ' "$T/notify.$1")" -le "$before" ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    tl_ok $([ "$(sed -n '/^msg: RELOADING=1/,$p' "$T/notify.$1" | grep -c '^msg: READY=1')" -ge 1 ]; echo $?) \
        "$1: HUP: READY=1 after the reload"
    tl_like "$(grep '^probe ' "$T/notify.$1" | tail -1)" '^probe rc=0 ' "$1: HUP: at that READY=1 it answers"
}

# runs_as NAME - the daemon's effective user is the unit's
runs_as() {
    tl_is "$(awk '/^Uid:/ { print $3 }' "/proc/$DPID/status" 2>&1)" "$(id -u "$RUNAS")" \
        "$1: runs as $RUNAS (config's user = $RUNAS)"
}

# -- lookupd: the socket answers TEMP without a store, READY=1 only once the store opens
listen lookupd sh -c "echo 'recipients alice@example.com' | '$RG_CLIENT' 'unix:$W/socketmap.sock'"
run_unit lookupd "$RG_LOOKUPD"
tl_wait_socket "$W/socketmap.sock"
tl_ok $? "lookupd: its ExecStart binds the socketmap socket as $RUNAS"
runs_as lookupd
got=$(echo 'recipients alice@example.com' | "$RG_CLIENT" "unix:$W/socketmap.sock" 2>&1)
tl_like "$got" '^TEMP ' "lookupd: without a store it answers TEMP"
sleep 2.5                       # two store retries (one a second)
tl_is "$(grep -c 'READY=1' "$T/notify.lookupd")" 0 "lookupd: without a store, no READY=1"
# The store is filled beside its place and then moved in whole: lookupd
# opens it within a second, and must not see it between two commands.
sed "s|^path = $W/store.db\$|path = $W/new.db|" "$W/rcptgate.conf" > "$W/new.conf"
$AS_USER "$RG_ADMIN" -c "$W/new.conf" domain add example.com 'smtp:[192.0.2.25]' >/dev/null 2>"$T/admin.err" &&
    $AS_USER "$RG_SYNCD" -c "$W/new.conf" --once >/dev/null 2>>"$T/admin.err" &&
    mv "$W/new.db" "$W/store.db"
tl_ok $? "the store made by the admin command and syncd --once as $RUNAS"
wait_line "$T/notify.lookupd" '^msg: READY=1' 50
tl_ok $? "lookupd: READY=1 once the store appears"
wait_line "$T/notify.lookupd" '^probe ' 50
tl_like "$(grep -A1 '^msg: READY=1' "$T/notify.lookupd" | sed -n 2p)" '^probe rc=0 out=OK' \
    "lookupd: at READY=1 the socket answers from the store (OK)"
grep -q '^msg: READY=1 | STATUS=' "$T/notify.lookupd"
tl_ok $? "lookupd: READY=1 comes with a STATUS line"
reload_unit lookupd
stop_unit lookupd
: > "$T/j.err"
JS="$(stat -c '%d:%i' "$T/j.err")"
env -u NOTIFY_SOCKET JOURNAL_STREAM="$JS" $AS_USER "$RG_LOOKUPD" -f -c "$W/rcptgate.conf" 2>>"$T/j.err" &
DPID=$!
tl_pids="$tl_pids $DPID"
tl_wait_socket "$W/socketmap.sock"
echo 'recipients alice@example.com' | "$RG_CLIENT" "unix:$W/socketmap.sock" > "$T/j.out" 2>&1
kill -TERM "$DPID"
wait "$DPID"
tl_like "$(cat "$T/j.out")" '^OK ' "lookupd: started without NOTIFY_SOCKET it still runs and answers"
tl_ok $(! grep -q 'starting:' "$T/j.err"; echo $?) \
    "lookupd: with stderr as the journal (JOURNAL_STREAM), lines go to syslog only, not twice"

tl_ok $(! grep -q 'cannot switch' "$T/lookupd.err"; echo $?) \
    "lookupd: started as its own user (user = $RUNAS), no complaint about switching"
sed 's/^user = .*/user = root/' "$W/rcptgate.conf" > "$W/other.conf"
chmod 0644 "$W/other.conf"
$AS_USER "$RG_LOOKUPD" -f -c "$W/other.conf" 2> "$T/other.err" &
DPID=$!
tl_pids="$tl_pids $DPID"
tl_wait_socket "$W/socketmap.sock"
kill -TERM "$DPID"
wait "$DPID"
tl_like "$(cat "$T/other.err")" "user = root, but started without root as uid $(id -u "$RUNAS"): cannot switch" \
    "lookupd: started as another user than its config's, it says so"

# -- smtpd: the banner at READY=1; without a store, 451 to RCPT and no READY=1
probe_banner="import socket, sys
s = socket.create_connection(('127.0.0.1', $SMTPD_PORT), 5)
print(s.makefile().readline().strip())"
mv "$W/store.db" "$W/store.away"
listen smtpd python3 -c "$probe_banner"
run_unit smtpd "$RG_SMTPD"
i=0
until python3 -c "$probe_banner" > "$T/banner" 2>/dev/null || [ $i -gt 100 ]; do
    sleep 0.05
    i=$((i + 1))
done
tl_like "$(cat "$T/banner")" '^220 mx.gateway.test' "smtpd: its ExecStart listens and greets without a store"
runs_as smtpd
sleep 1.5
tl_is "$(grep -c 'READY=1' "$T/notify.smtpd")" 0 "smtpd: without a store, no READY=1"
mv "$W/store.away" "$W/store.db"
wait_line "$T/notify.smtpd" '^msg: READY=1' 50
tl_ok $? "smtpd: READY=1 once the store appears"
wait_line "$T/notify.smtpd" '^probe ' 50
tl_like "$(grep -A1 '^msg: READY=1' "$T/notify.smtpd" | sed -n 2p)" '^probe rc=0 out=220 mx.gateway.test' \
    "smtpd: at READY=1 it greets (220)"
reload_unit smtpd
stop_unit smtpd

# -- syncd: READY=1 once its store is open, the file source pulled as the user
printf 'carol@example.com OK\n' >> "$W/recipients.map"
listen syncd sh -c "test -s '$W/store.db' && echo store"
run_unit syncd "$RG_SYNCD"
wait_line "$T/notify.syncd" '^msg: READY=1' 50
tl_ok $? "syncd: its ExecStart says READY=1"
wait_line "$T/notify.syncd" '^probe ' 50
tl_like "$(grep -A1 '^msg: READY=1' "$T/notify.syncd" | sed -n 2p)" '^probe rc=0 out=store' \
    "syncd: at READY=1 the store exists"
runs_as syncd
i=0
until $AS_USER "$RG_ADMIN" -c "$W/rcptgate.conf" query carol@example.com > "$T/q.out" 2>&1 || [ $i -gt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
tl_like "$(head -1 "$T/q.out")" 'carol@example.com' "syncd: the file source pulled into the store"
reload_unit syncd
stop_unit syncd

# -- syncd-once: the timer's job, a pull and exit 0, no daemon messages
printf 'dave@example.com OK\n' >> "$W/recipients.map"
listen once
# shellcheck disable=SC2046
NOTIFY_SOCKET="$W/notify" $AS_USER "$RG_SYNCD" $(exec_args syncd-once) -c "$W/rcptgate.conf" \
    > "$T/once.out" 2>&1
tl_is "$?" 0 "syncd-once: its ExecStart pulls and exits 0"
$AS_USER "$RG_ADMIN" -c "$W/rcptgate.conf" query dave@example.com > "$T/q.out" 2>&1
tl_is "$?" 0 "syncd-once: the pulled address is in the store"
tl_is "$(grep -c '^msg:' "$T/notify.once")" 0 "syncd-once: sends nothing to NOTIFY_SOCKET (a oneshot)"
kill "$LISTEN_PID" 2>/dev/null
owners=$(find "$W" -user root ! -name rcptgate.conf ! -name new.conf ! -name other.conf ! -name recipients.map ! -name notify | wc -l)
tl_is "$owners" 0 "no file made by the daemons or the admin command belongs to root"

tl_done
