#!/bin/sh
# daemon.sh - rcptgate-lookupd as a daemon: config check, signals, pid
# file, privileges, counters, connection limit, TCP, detaching

. "$top_srcdir/tests/lib/testlib.sh"
tl_init daemon
trap '' PIPE

printf 'alice@example.com OK\n' > "$T/recipients"
tl_admin domain add example.com 'smtp:[192.0.2.25]' >/dev/null 2>"$T/admin.err" &&
tl_admin import "$T/recipients" >/dev/null 2>>"$T/admin.err"
tl_ok $? "store filled with the admin command"
[ -s "$T/admin.err" ] && sed 's/^/# /' "$T/admin.err"

# ask LINE... - socketmap requests on one connection, replies printed
ask() {
    for l in "$@"; do echo "$l"; done | "$RG_CLIENT" "unix:$SOCK" 5>&- 6>&-
}

# --- -n: configuration check
"$RG_LOOKUPD" -c "$CONF" -n > "$T/n.out" 2>&1
tl_is "$?" 0 "-n: good config exits 0"

# badconf NAME LINE - append LINE under [lookupd], -n must exit 78 with file:line
badconf() {
    cp "$CONF" "$T/bad.conf"
    echo "$2" >> "$T/bad.conf"
    line=$(wc -l < "$T/bad.conf")
    "$RG_LOOKUPD" -c "$T/bad.conf" -n > "$T/n.out" 2>&1
    tl_is "$?" 78 "-n: $1 exits 78"
    grep -q "bad.conf:$line" "$T/n.out"
    tl_ok $? "-n: $1 names bad.conf:$line"
    [ $? = 0 ] || sed 's/^/#   /' "$T/n.out"
}
badconf "unknown key" "no_such_key = 1"
badconf "bad number" "max_connections = lots"
badconf "bad listener" "socketmap = tcp:127.0.0.1"
badconf "bad time" "idle_timeout = soon"
badconf "bad socket mode" "socket_mode = rw-rw-rw-"

cp "$CONF" "$T/bad.conf"
sed -i 's/^user =.*/user = no-such-user-rcptgate/' "$T/bad.conf"
"$RG_LOOKUPD" -c "$T/bad.conf" -n > "$T/n.out" 2>&1
tl_is "$?" 78 "-n: a user that does not exist exits 78"
grep -q 'no-such-user-rcptgate' "$T/n.out"
tl_ok $? "-n: ... and names the user"
"$RG_LOOKUPD" -c "$T/no-such.conf" -n > "$T/n.out" 2>&1
tl_is "$?" 78 "-n: a missing config file exits 78"
"$RG_LOOKUPD" -c "$T/bad.conf" -f > "$T/n.out" 2>&1
tl_is "$?" 78 "a bad config stops a real start too (78)"

# --- start, start line, pid file, a second instance
tl_start_lookupd 5>&- 6>&- || tl_bail "lookupd did not start ($RG_LOOKUPD)"
tl_ok $? "lookupd started"
tl_wait_grep "starting: socketmap unix:$SOCK, policy unix:$POLICY, store $STORE" "$T/lookupd.log"
tl_ok $? "one start line naming listeners and store"
tl_is "$(cat "$T/lookupd.pid" 2>/dev/null)" "$LOOKUPD_PID" "pid file holds lookupd's pid"
"$RG_LOOKUPD" -c "$CONF" -f > "$T/second.out" 2>&1
rc=$?
tl_ok $([ $rc -ne 0 ]; echo $?) "a second instance on the same socket refuses to start"
KIND=$(ask 'recipients alice@example.com')
tl_like "$KIND" '^OK [a-z]+$' "the first still answers"
# Without that answer, no later reply may match it by being empty too.
: "${KIND:=(no answer to the first request)}"

# --- SIGHUP: reload keeps connections, picks up a changed setting
mkfifo "$T/hup.in"
# The client's shell opens hup.out only once the fifo has a writer: make it
# first, or the first wait below may read a file that is not there yet.
: > "$T/hup.out"
"$RG_CLIENT" -i -t 5000 "unix:$SOCK" < "$T/hup.in" > "$T/hup.out" &
HUPC=$!
tl_pids="$tl_pids $HUPC"
exec 5>"$T/hup.in"
n=0
# hup_ask REQUEST - ask on the held connection; the reply lands in $reply
hup_ask() {
    n=$((n + 1))
    echo "$1" >&5
    i=0
    while [ "$(wc -l < "$T/hup.out")" -lt $n ] && [ $i -lt 50 ] && kill -0 "$HUPC" 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
    done
    reply=$(sed -n "${n}p" "$T/hup.out")
}
hup_ask 'recipients alice-tag@example.com'
tl_is "$reply" "NOTFOUND " "before reload: '-' is no delimiter"
cat >> "$CONF" <<EOF

[address]
recipient_delimiter = +-
EOF
kill -HUP "$LOOKUPD_PID"
i=0
while ! grep -q 'reloaded' "$T/lookupd.log" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
hup_ask 'recipients alice-tag@example.com'
tl_is "$reply" "$KIND" "after reload, same connection: '-' is a delimiter"
hup_ask 'recipients alice+tag@example.com'
tl_is "$reply" "$KIND" "after reload: '+' still is"
cp "$CONF" "$T/good.conf"
echo "bogus_key = 1" >> "$CONF"
kill -HUP "$LOOKUPD_PID"
i=0
while ! grep -q 'keeping the running configuration' "$T/lookupd.log" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
grep -q 'keeping the running configuration' "$T/lookupd.log"
tl_ok $? "bad config on reload: logged, old one kept"
hup_ask 'recipients alice-tag@example.com'
tl_is "$reply" "$KIND" "bad reload: setting and connection unchanged"
kill -0 "$LOOKUPD_PID"
tl_ok $? "bad reload: lookupd still running"
cp "$T/good.conf" "$CONF"

# --- a restart-only parameter changed by a reload: logged once, ignored
# (socketmap: cfg keeps the running value; the rest of the file applies)
RESTART_MSG='reload: \[lookupd\] socketmap changes take effect only after a restart; ignored'
# hup_wait - SIGHUP lookupd and wait for its next "reloaded" line
hup_wait() {
    reloads=$(grep -c 'reloaded' "$T/lookupd.log")
    kill -HUP "$LOOKUPD_PID"
    i=0
    while [ "$(grep -c 'reloaded' "$T/lookupd.log")" = "$reloads" ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
}
sed -i "s|^socketmap = unix:$SOCK\$|socketmap = unix:$T/moved.sock|" "$CONF"
sed -i 's/^recipient_delimiter = +-$/recipient_delimiter = +/' "$CONF"
grep -q "^socketmap = unix:$T/moved.sock\$" "$CONF"
tl_ok $? "the test moved socketmap in the file"
hup_wait
tl_is "$(grep -c "$RESTART_MSG" "$T/lookupd.log")" 1 "reload of a new socketmap: logged once as ignored"
hup_ask 'recipients alice+tag@example.com'
tl_is "$reply" "$KIND" "... the old socket still answers on the held connection"
tl_is "$(ask 'recipients alice@example.com')" "$KIND" "... and to a new connection"
tl_ok $([ ! -e "$T/moved.sock" ]; echo $?) "... no socket was made at the new path"
hup_ask 'recipients alice-tag@example.com'
tl_is "$reply" "NOTFOUND " "... while the rest of the file applied ('-' no delimiter again)"
cp "$T/good.conf" "$CONF"
hup_wait
tl_is "$(grep -c "$RESTART_MSG" "$T/lookupd.log")" 1 "back to the running socketmap: nothing more logged"
exec 5>&-
wait "$HUPC"
tl_pids=$(echo "$tl_pids" | sed "s/ $HUPC//")

# --- counters in the stats file match what was asked
tl_stop_lookupd
tl_start_lookupd 5>&- 6>&-
ask 'recipients alice@example.com' 'recipients ALICE@example.com' 'recipients bob@example.com' \
    'domains example.com' 'domains foreign.test' 'domains example.com' \
    'transport example.com' 'transport alice@example.com' 'transport x@foreign.test' 'nosuch x' 'nospace' > /dev/null
ask 'recipients alice@example.com' > /dev/null
printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=bob@example.com\n\n' |
    "$RG_CLIENT" -p "unix:$POLICY" > /dev/null
printf 'x' | "$RG_CLIENT" -r -t 300 "unix:$SOCK" > /dev/null   # a protocol error
sleep 1.5                                   # stats_interval is 1s: the file is current
stat_of() { sed -n "s/^$1 //p" "$T/lookupd.stats"; }
tl_is "$(stat_of socketmap.recipients.ok) $(stat_of socketmap.recipients.notfound)" "3 1" "stats: recipients ok/notfound"
tl_is "$(stat_of socketmap.domains.ok) $(stat_of socketmap.domains.notfound)" "2 1" "stats: domains ok/notfound"
tl_is "$(stat_of socketmap.transport.ok) $(stat_of socketmap.transport.notfound)" "2 1" "stats: transport ok/notfound"
tl_is "$(stat_of socketmap.unknown.perm)" "2" "stats: unknown map and malformed request"
tl_is "$(stat_of socketmap.recipients.ok) ok, $(stat_of socketmap.recipients.temp) TEMP" "3 ok, 0 TEMP" "stats: no TEMP"
tl_is "$(stat_of policy.reject)" "1" "stats: policy reject"
tl_is "$(stat_of protocol_errors)" "1" "stats: protocol errors"
tl_is "$(stat_of connections_total)" "4" "stats: connections"
tl_is "$(stat_of connections_total) in all, $(stat_of connections_current) now" "4 in all, 0 now" "stats: none open now"
tl_is "$(stat_of pid)" "$LOOKUPD_PID" "stats: pid"
now=$(date +%s)
upd=$(stat_of updated)
tl_ok $([ $((now - upd)) -le 3 ]; echo $?) "stats: updated recently"

# --- SIGTERM: exit 0, pid file and socket gone
tl_stop_lookupd
tl_is "$?" 0 "SIGTERM: exit status 0"
tl_ok $([ ! -e "$T/lookupd.pid" ]; echo $?) "SIGTERM: pid file removed"
tl_ok $([ ! -e "$SOCK" ]; echo $?) "SIGTERM: socket removed"
grep -q '^rcptgate-lookupd: stopped' "$T/lookupd.log"
tl_ok $? "SIGTERM: a stop line in the log"

# --- max_connections
cp "$CONF" "$T/saved.conf"
sed -i 's/^\[lookupd\]$/[lookupd]\nmax_connections = 2/' "$CONF"
tl_start_lookupd 5>&- 6>&-
echo "recipients alice@example.com" | "$RG_CLIENT" -k 3 "unix:$SOCK" > "$T/held1" 5>&- 6>&- &
H1=$!
echo "recipients alice@example.com" | "$RG_CLIENT" -k 3 "unix:$SOCK" > "$T/held2" 5>&- 6>&- &
H2=$!
tl_pids="$tl_pids $H1 $H2"
i=0
while { [ ! -s "$T/held1" ] || [ ! -s "$T/held2" ]; } && [ $i -lt 50 ] &&
    { kill -0 "$H1" || kill -0 "$H2"; } 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
out=$(printf '28:recipients alice@example.com,' | "$RG_CLIENT" -r -t 2000 "unix:$SOCK" 5>&- 6>&-)
tl_is "$out" "CLOSED" "max_connections=2: a third connection is closed unanswered"
grep -q 'max_connections (2) reached' "$T/lookupd.log"
tl_ok $? "max_connections: logged"
wait $H1 $H2
tl_pids=$(echo "$tl_pids" | sed -e "s/ $H1//" -e "s/ $H2//")
tl_is "$(cat "$T/held1")" "$KIND" "max_connections: the held ones were answered"
tl_is "$(ask 'recipients alice@example.com')" "$KIND" "max_connections: served again once they left"
tl_stop_lookupd
cp "$T/saved.conf" "$CONF"

# --- TCP on loopback, when configured
port=$((20000 + $$ % 20000))
sed -i "s|^socketmap = .*|socketmap = unix:$SOCK, inet:127.0.0.1:$port|" "$CONF"
tl_start_lookupd 5>&- 6>&-
tl_is "$(echo 'recipients alice@example.com' | "$RG_CLIENT" "inet:127.0.0.1:$port")" "$KIND" "TCP listener on 127.0.0.1 answers"
"$POSTMAP" -c "$T/postfix" -q alice@example.com "socketmap:inet:127.0.0.1:$port:recipients" > "$T/out" 2>&1
tl_is "$(cat "$T/out")" "${KIND#OK }" "postmap over TCP"
tl_stop_lookupd
cp "$T/saved.conf" "$CONF"

# --- detached (no -f): the parent returns, the daemon writes its pid file
rm -f "$SOCK" "$POLICY"
"$RG_LOOKUPD" -c "$CONF" 2>> "$T/lookupd.log"
tl_is "$?" 0 "without -f: the starting process exits 0"
tl_wait_socket "$SOCK"
i=0
while [ ! -s "$T/lookupd.pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
DPID=$(cat "$T/lookupd.pid" 2>/dev/null)
tl_ok $([ -n "$DPID" ] && kill -0 "$DPID"; echo $?) "without -f: the daemon runs with the pid in its pid file"
tl_is "$(ask 'recipients alice@example.com')" "$KIND" "without -f: it answers"
tl_is "$(awk '/^PPid/ {print $2}' /proc/"$DPID"/status 2>/dev/null)" "1" "without -f: detached (parent is init)"
# A second one with its own sockets but the same pid file: refused before it
# detaches, so the terminal (or the init script) hears it, and the exit status.
sed -e "s|unix:$SOCK|unix:$T/other.sock|" -e "s|unix:$POLICY|unix:$T/other.policy|" "$CONF" > "$T/other.conf"
"$RG_LOOKUPD" -c "$T/other.conf" > "$T/other.out" 2>&1
tl_is "$?" 70 "without -f, a second instance with the same pid file: exit 70, as any fatal error"
tl_like "$(cat "$T/other.out")" "lookupd.pid: already running as pid $DPID" "... said on its stderr, before detaching"
tl_is "$(cat "$T/lookupd.pid" 2>/dev/null)" "$DPID" "... and the pid file still names the first"
kill -TERM "$DPID"
i=0
while kill -0 "$DPID" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
tl_ok $([ ! -e "$T/lookupd.pid" ]; echo $?) "without -f: SIGTERM removes the pid file"

# --- dropping privileges: as root with user = nobody
if [ "$(id -u)" != 0 ]; then
    tl_n=$((tl_n + 1))
    echo "ok $tl_n # SKIP privilege drop: not running as root"
elif ! id nobody >/dev/null 2>&1; then
    tl_n=$((tl_n + 1))
    echo "ok $tl_n # SKIP privilege drop: no user nobody"
else
    # Every place lookupd writes is nobody's, in /tmp: nobody may not enter the tree.
    tl_user_dir nobody
    cp "$STORE" "$UD/store.db"
    chown nobody "$UD/store.db"
    SAVED_SOCK=$SOCK SAVED_POLICY=$POLICY
    SOCK="$UD/socketmap.sock" POLICY="$UD/policy.sock"
    sed -e "s|^path = .*|path = $UD/store.db|" -e "s|^user =.*|user = nobody|" \
        -e "s|^stats_file = .*|stats_file = $UD/lookupd.stats|" \
        -e "s|^pid_file = .*|pid_file = $UD/lookupd.pid|" \
        -e "s|^socketmap = .*|socketmap = unix:$SOCK|" -e "s|^policy = .*|policy = unix:$POLICY|" \
        "$CONF" > "$T/nobody.conf"
    CONF="$T/nobody.conf"
    tl_start_lookupd 5>&- 6>&-
    tl_ok $? "user = nobody: lookupd started with its directories in $UD"
    CONF="$T/saved.conf"
    uid=$(awk '/^Uid:/ {print $2, $3, $4, $5}' /proc/"$LOOKUPD_PID"/status)
    nuid=$(id -u nobody)
    tl_is "$uid" "$nuid $nuid $nuid $nuid" "user = nobody: real, effective, saved and fs uid are nobody's"
    gid=$(awk '/^Gid:/ {print $2, $3, $4, $5}' /proc/"$LOOKUPD_PID"/status)
    ngid=$(id -g nobody)
    tl_is "$gid" "$ngid $ngid $ngid $ngid" "user = nobody: gids are nobody's primary group"
    tl_is "$(awk '/^Groups:/ {print $2}' /proc/"$LOOKUPD_PID"/status)" "$ngid" "user = nobody: no other groups"
    tl_like "$(stat -c %U "$SOCK")" '^root$' "socket bound before the drop"
    tl_is "$(ask 'recipients alice@example.com')" "$KIND" "as nobody: answers"
    tl_stop_lookupd
    tl_is "$?" 0 "as nobody: SIGTERM exit status 0"
    tl_ok $([ ! -e "$UD/lookupd.pid" ] && [ ! -e "$SOCK" ]; echo $?) \
        "as nobody: pid file and socket removed at stop"
    SOCK=$SAVED_SOCK POLICY=$SAVED_POLICY
fi

# --- a HUP as soon as the pid file appears (logrotate, systemd, a script)
# reloads lookupd or waits for it; it never meets the default action
started=0 died=0
for try in 1 2 3 4 5; do
    rm -f "$T/lookupd.pid"
    "$RG_LOOKUPD" -c "$CONF" -f 2>>"$T/lookupd.log" &
    p=$!
    j=0
    while [ ! -s "$T/lookupd.pid" ] && kill -0 "$p" 2>/dev/null && [ $j -lt 20000 ]; do j=$((j + 1)); done
    if [ -s "$T/lookupd.pid" ]; then
        started=$((started + 1))
        kill -HUP "$p"
        sleep 0.3
        kill -0 "$p" 2>/dev/null || died=$((died + 1))
    fi
    kill "$p" 2>/dev/null
    wait "$p" 2>/dev/null
done
tl_is "$started/$died" "5/0" "a HUP the moment the pid file appears: 5 starts, none ended by it"

tl_done
