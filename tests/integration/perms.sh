#!/bin/sh
# perms.sh - files belong to the daemons' user, are not readable by others,
# and -n and start-up say what is wrong with a directory, with the fix
#
# Everything the programs write lives in a fresh directory under /tmp
# (the user nobody may not be able to enter the build tree, e.g. a clone
# under /root). As root the programs run as nobody (user = nobody) and the
# admin command, run as root, must write the store as nobody; without root
# they run as whoever runs the test, and the checks that need root are
# skipped, each saying so.
. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"
tl_init perms
RG_SYNCD="$top_builddir/syncd/rcptgate-syncd"

if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    ROOT=1 RUNAS=nobody RUNGRP=$(id -gn nobody) USERLINE="user = nobody"
else
    ROOT=0 RUNAS=$(id -un) RUNGRP=$(id -gn) USERLINE="user ="
fi

# skip MSG - one skipped check that needs root
skip() {
    tl_n=$((tl_n + 1))
    echo "ok $tl_n # SKIP $1: needs root and the user nobody"
}

# mode_of FILE / owner_of FILE - octal mode, owner name
mode_of() { stat -c %a "$1" 2>/dev/null; }
owner_of() { stat -c %U "$1" 2>/dev/null; }

# private MODE - 1 if an octal mode gives nothing to others and no write to the group
private() {
    m=$(printf '%04d' "$1")
    g=$(printf '%s' "$m" | cut -c3)
    o=$(printf '%s' "$m" | cut -c4)
    [ "$o" = 0 ] && [ "$g" != 2 ] && [ "$g" != 3 ] && [ "$g" != 6 ] && [ "$g" != 7 ]
}

tl_shared_dir || { echo "Bail out! mktemp -d"; exit 1; }
B="$TS/b"
mkdir -m 0755 "$B"
mkdir "$B/lib" "$B/run"
chmod 0750 "$B/lib"
[ $ROOT = 1 ] && chown "$RUNAS:$RUNGRP" "$B/lib" "$B/run"
DB="$B/lib/rcptgate.db"
SOCKMAP="$B/run/socketmap"
PORT=$(sm_port)
printf 'bob@example.com OK\n' > "$B/users.map"
chmod 0644 "$B/users.map"

# conf FILE [LOOKUPD LINE...] - the test's config, with extra [lookupd] lines
conf() {
    f=$1
    shift
    cat > "$f" <<CONF
[store]
path = $DB
busy_timeout = 500ms

[syncd]
$USERLINE
pid_file = $B/run/syncd.pid
export_file = $B/lib/export.map

[source f]
type = file
path = $B/users.map

[rules]
hostname = mx.perms.test

[smtpd]
listen = 127.0.0.1:$PORT
$USERLINE
pid_file = $B/run/smtpd.pid
stats_file = $B/lib/smtpd.stats
stats_interval = 1s
log_file = $B/lib/smtpd.log
reverse_lookup = no

[lookupd]
socketmap = unix:$SOCKMAP
policy = unix:$B/run/policy
$USERLINE
pid_file = $B/run/lookupd.pid
stats_file = $B/lib/lookupd.stats
stats_interval = 1s
CONF
    [ $# -gt 0 ] && printf '%s\n' "$@" >> "$f"
    return 0
}
CONF="$B/rc.conf"
conf "$CONF"

# run PROGRAM ARGS... - output in $out, status in $rc
run() {
    out=$("$@" 2>&1)
    rc=$?
}

# start_lookupd [CONF] - lookupd -f in the background; wait for its socket
start_lookupd() {
    rm -f "$SOCKMAP"
    "$RG_LOOKUPD" -c "${1:-$CONF}" -f 2>>"$T/lookupd.log" &
    LOOKUPD_PID=$!
    tl_pids="$tl_pids $LOOKUPD_PID"
    tl_wait_socket "$SOCKMAP"
}

# stop_pid PID - SIGTERM and wait
stop_pid() {
    kill -TERM "$1" 2>/dev/null
    wait "$1"
    _rc=$?
    tl_pids=$(echo "$tl_pids" | sed "s/ $1//")
    return $_rc
}

# ask ADDRESS - lookupd's socketmap answer
ask() {
    echo "recipients $1" | "$RG_CLIENT" "unix:$SOCKMAP"
}

# --- the admin command (as root: acting as nobody) creates a private store
tl_admin domain add example.com >"$T/admin.out" 2>&1
tl_is "$?" 0 "rcptgate domain add creates the store"
tl_is "$(owner_of "$DB") $(mode_of "$DB")" "$RUNAS 640" "the store belongs to $RUNAS, mode 0640"

if [ $ROOT = 1 ]; then
    # Root may import a file the store's user cannot read: it is opened first.
    printf 'alice@example.com OK\n' > "$T/private.map"
    chmod 0600 "$T/private.map"
    tl_admin import "$T/private.map" >"$T/admin.out" 2>&1
    tl_is "$?" 0 "as root: import of a root-only file"
    # (rcptgate query would say defer: [source f] has not synced yet)
    tl_is "$(sqlite3 "$DB" "SELECT count(*) FROM recipient WHERE address = 'alice@example.com'")" 1 \
        "as root: ... its address is in the store"
else
    skip "import of a root-only file"
    skip "its address is in the store"
fi

# --- syncd --once (as root: it becomes nobody) writes the store the admin made
run "$RG_SYNCD" -c "$CONF" --once
tl_is "$rc" 0 "rcptgate-syncd --once writes the store rcptgate made"
[ "$rc" = 0 ] || printf '%s\n' "$out" | sed 's/^/#   /'
tl_is "$(owner_of "$DB") $(mode_of "$DB")" "$RUNAS 640" "after the sync: the store is still $RUNAS's, 0640"
tl_is "$(owner_of "$B/lib/export.map") $(mode_of "$B/lib/export.map")" "$RUNAS 640" \
    "export_file belongs to $RUNAS, mode 0640"

# --- lookupd: socket mode and group, stats file, -wal and -shm
if [ $ROOT = 1 ]; then
    if getent group postfix >/dev/null 2>&1; then DEFGRP=postfix; else DEFGRP=$RUNGRP; fi
elif id -Gn | tr ' ' '\n' | grep -qx postfix; then
    DEFGRP=postfix
else
    DEFGRP=$(id -gn)
fi
start_lookupd
tl_ok $? "lookupd started as $RUNAS"
tl_is "$(stat -c '%a %G' "$SOCKMAP" 2>/dev/null)" "660 $DEFGRP" "socketmap socket: mode 0660, group $DEFGRP"
tl_is "$(stat -c '%a %G' "$B/run/policy" 2>/dev/null)" "660 $DEFGRP" "policy socket: mode 0660, group $DEFGRP"
tl_like "$(ask bob@example.com)" '^OK ' "lookupd as $RUNAS answers from the store"
i=0
while [ ! -f "$B/lib/lookupd.stats" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
tl_is "$(owner_of "$B/lib/lookupd.stats") $(mode_of "$B/lib/lookupd.stats")" "$RUNAS 640" \
    "lookupd's stats file belongs to $RUNAS, mode 0640"
tl_ok $([ -f "$DB-shm" ]; echo $?) "the store's -shm file exists while lookupd has it open"
for f in "$DB-wal" "$DB-shm"; do
    [ -f "$f" ] || continue
    m=$(mode_of "$f")
    private "$m"
    tl_ok $? "$(basename "$f") is not readable by others (mode $m)"
    tl_is "$(owner_of "$f")" "$RUNAS" "$(basename "$f") belongs to $RUNAS"
done
stop_pid "$LOOKUPD_PID"
tl_is "$?" 0 "lookupd stopped"
tl_ok $([ ! -e "$B/run/lookupd.pid" ] && [ ! -e "$SOCKMAP" ]; echo $?) \
    "lookupd removed its pid file and socket (as $RUNAS)"

if [ $ROOT = 1 ] && getent group daemon >/dev/null 2>&1; then
    conf "$B/group.conf" "socket_group = daemon" "socket_mode = 0640"
    start_lookupd "$B/group.conf"
    tl_is "$(stat -c '%a %G %U' "$SOCKMAP" 2>/dev/null)" "640 daemon root" \
        "socket_group = daemon, socket_mode = 0640: the socket is born so"
    stop_pid "$LOOKUPD_PID"
else
    skip "socket_group set to another group"
fi
# Started as the user itself with the group postfix added (a unit's User=
# and SupplementaryGroups=): the default group is still postfix.
if [ $ROOT = 1 ] && getent group postfix >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1; then
    conf "$B/asuser.conf"
    sed -i 's/^user = nobody$/user =/' "$B/asuser.conf"
    rm -f "$SOCKMAP"
    setpriv --reuid=nobody --regid="$RUNGRP" --groups="$(getent group postfix | cut -d: -f3)" \
        "$RG_LOOKUPD" -c "$B/asuser.conf" -f 2>>"$T/lookupd.log" &
    LOOKUPD_PID=$!
    tl_pids="$tl_pids $LOOKUPD_PID"
    tl_wait_socket "$SOCKMAP"
    tl_is "$(stat -c '%a %G %U' "$SOCKMAP" 2>/dev/null)" "660 postfix nobody" \
        "started as nobody in the group postfix: the socket's group is postfix"
    stop_pid "$LOOKUPD_PID"
else
    skip "started as nobody in the group postfix"
fi
conf "$B/badgroup.conf" "socket_group = no-such-group-rcptgate"
run "$RG_LOOKUPD" -c "$B/badgroup.conf" -n
tl_is "$rc" 78 "-n: a socket_group that does not exist is a configuration error"
tl_like "$out" 'group "no-such-group-rcptgate" does not exist' "-n: ... and is named"

# --- smtpd: stats file and log_file are private
"$RG_SMTPD" -c "$CONF" -f 2>>"$T/smtpd.log" &
SMTPD_PID=$!
tl_pids="$tl_pids $SMTPD_PID"
i=0
while [ ! -f "$B/lib/smtpd.stats" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
tl_is "$(owner_of "$B/lib/smtpd.stats") $(mode_of "$B/lib/smtpd.stats")" "$RUNAS 640" \
    "smtpd's stats file belongs to $RUNAS, mode 0640"
m=$(mode_of "$B/lib/smtpd.log")
[ -n "$m" ] && private "$m"
tl_ok $? "smtpd's log_file is not readable by others (mode $m)"
stop_pid "$SMTPD_PID"
tl_is "$?" 0 "smtpd stopped"
tl_is "$(owner_of "$B/lib/smtpd.log")" "$RUNAS" "smtpd's log_file, made at start, belongs to $RUNAS (who reopens it)"
run "$RG_SMTPD" -c "$CONF" -n
tl_is "$rc" 0 "smtpd -n after a run: the log file it made passes the check"
[ "$rc" = 0 ] || printf '%s\n' "$out" | sed 's/^/#   /'

# --- a TLS key only root can read: smtpd starts (it loads the key as root),
# but each reload reads it again as the user, and would keep the old
# certificate after a renewal. -n passes, with a warning and the fix.
if [ "$ROOT" = 1 ] && command -v openssl >/dev/null 2>&1; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$B/key.pem" -out "$B/cert.pem" -days 2 \
        -subj /CN=mx.perms.test >/dev/null 2>&1 || tl_bail "openssl cannot make a certificate"
    chmod 600 "$B/key.pem"
    chmod 644 "$B/cert.pem"
    sed "s|^\[smtpd\]\$|[smtpd]\ntls_cert_file = $B/cert.pem\ntls_key_file = $B/key.pem|" "$CONF" > "$T/tls.conf"
    run "$RG_SMTPD" -c "$T/tls.conf" -n
    tl_is "$rc" 0 "smtpd -n, a TLS key only root can read: passes (a start loads it as root)"
    tl_like "$out" "warning: tls_key_file \\(read again as the user at each reload\\) $B/key.pem is not readable by user nobody \\(owner root, mode 0600\\): give the user the file's group" \
        "... but warns that a reload, as nobody, could not read it, and says how to fix it"
    chgrp "$RUNGRP" "$B/key.pem" && chmod 640 "$B/key.pem"
    run "$RG_SMTPD" -c "$T/tls.conf" -n
    tl_is "$rc/$(printf '%s\n' "$out" | grep -c 'tls_key_file')" "0/0" "... the key readable by nobody's group (0640): no warning"
else
    skip "a TLS key only root can read: -n warns (needs openssl too)"
    skip "... with the fix"
    skip "... the fix silences it"
fi

# --- smtpd as a user that may read the store and not write it (README,
# "smtpd cannot write the store"): here the user daemon with the store's
# group, the store 0640. It answers from the store, sees what the admin
# command and syncd commit while it runs, and cannot write the store.
if [ $ROOT = 1 ] && id daemon >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1 \
    && [ "$(id -u daemon)" != "$(id -u "$RUNAS")" ]; then
    RD="$B/smtpd-ro"
    mkdir -m 0755 "$RD"
    chown daemon "$RD"
    sm_sink_start || tl_bail "smtp-sink did not start"
    tl_admin domain add example.com "smtp:[127.0.0.1]:$SINK_PORT" >"$T/admin.out" 2>&1
    tl_is "$?" 0 "reader: the domain's next hop set by the admin command"
    conf "$B/ro.conf"
    sed -i -e '/^\[smtpd\]/,/^\[/ s/^user = .*$/user =/' \
        -e "s|^pid_file = $B/run/smtpd.pid\$|pid_file = $RD/smtpd.pid|" \
        -e "s|^stats_file = $B/lib/smtpd.stats\$|stats_file = $RD/smtpd.stats|" \
        -e "s|^log_file = $B/lib/smtpd.log\$|log_file = $RD/smtpd.log|" "$B/ro.conf"
    # as_reader CMD... - run as the user daemon, in the store's group only
    as_reader() {
        setpriv --reuid=daemon --regid="$RUNGRP" --clear-groups "$@"
    }
    tl_is "$(stat -c '%U %G %a' "$DB")" "$RUNAS $RUNGRP 640" "reader: the store is $RUNAS's, group $RUNGRP, 0640"
    run as_reader "$RG_SMTPD" -c "$B/ro.conf" -n
    tl_is "$rc" 0 "reader: smtpd -n as a user that may only read the store"
    [ "$rc" = 0 ] || printf '%s\n' "$out" | sed 's/^/#   /'
    setpriv --reuid=daemon --regid="$RUNGRP" --clear-groups \
        "$RG_SMTPD" -c "$B/ro.conf" -f 2>>"$T/smtpd-ro.log" &
    SMTPD_PID=$!
    tl_pids="$tl_pids $SMTPD_PID"
    tl_wait_grep "store .* opened \(read-only\)" "$T/smtpd-ro.log"
    tl_ok $? "reader: smtpd opened the store read-only"
    tl_is "$(ps -o user= -p "$SMTPD_PID" 2>/dev/null | tr -d ' ')" "daemon" "reader: smtpd runs as daemon"
    SMTPD_PORT=$PORT
    # rd DESC WANT ADDRESS - smtpd's reply to RCPT TO:<ADDRESS>
    rd() {
        ck "$1" "$2" --ehlo mail.sender.example --from someone@sender.example --to "$3"
    }
    rd "reader: a known address is accepted" "250 2.1.5 Ok" bob@example.com
    rd "reader: an unknown address is refused" \
        "550 5.1.1 <carol@example.com>: Recipient address rejected: User unknown" carol@example.com
    tl_admin static add carol@example.com >"$T/admin.out" 2>&1
    tl_is "$?" 0 "reader: the admin command adds an address while smtpd reads"
    rd "reader: ... smtpd sees it at once" "250 2.1.5 Ok" carol@example.com
    printf 'bob@example.com OK\ndave@example.com OK\n' > "$B/users.map"
    run "$RG_SYNCD" -c "$CONF" --once
    tl_is "$rc" 0 "reader: syncd commits a new address while smtpd reads"
    rd "reader: ... smtpd sees it at once" "250 2.1.5 Ok" dave@example.com
    rd "reader: ... and still knows the others" "250 2.1.5 Ok" bob@example.com
    before=$(sqlite3 "$DB" "SELECT name || ' ' || nexthop FROM domain ORDER BY name")
    out=$(as_reader sqlite3 "$DB" "UPDATE domain SET nexthop = 'smtp:[192.0.2.66]:25'" 2>&1)
    tl_ok $([ $? != 0 ]; echo $?) "reader: as its user, a write to the store fails"
    tl_like "$out" "readonly|read-only|unable to open" "reader: ... because the store is read-only to it"
    tl_is "$(sqlite3 "$DB" "SELECT name || ' ' || nexthop FROM domain ORDER BY name")" "$before" \
        "reader: ... and the domain table is unchanged"
    tl_is "$(stat -c '%U %a' "$DB" "$DB-wal" "$DB-shm" | tr '\n' ' ')" \
        "$RUNAS 640 $RUNAS 640 $RUNAS 640 " "reader: the store and its -wal and -shm are still $RUNAS's, 0640"
    kill -0 "$SMTPD_PID" 2>/dev/null
    tl_ok $? "reader: smtpd still running"
    stop_pid "$SMTPD_PID"
    tl_is "$?" 0 "reader: smtpd stopped"
    printf 'bob@example.com OK\n' > "$B/users.map"
else
    for c in "next hop" "store mode" "smtpd -n" "opened read-only" "runs as daemon" "known" "unknown" \
        "admin adds" "sees it" "syncd adds" "sees it" "others" "write fails" "read-only" "unchanged" \
        "modes" "running" "stopped"; do
        skip "reader: $c"
    done
fi

# --- -n and start-up: a missing runtime directory, named with its fix
rm -rf "$B/run"
if [ $ROOT = 1 ]; then
    FIX="install -d -o $RUNAS -g $RUNGRP -m 0755 $B/run"
else
    FIX="mkdir -p -m 0755 $B/run"
fi
WANT="pid file directory $B/run does not exist: $FIX"
for prog in "$RG_LOOKUPD" "$RG_SYNCD" "$RG_SMTPD" "$RG_ADMIN"; do
    name=$(basename "$prog")
    run "$prog" -c "$CONF" -n
    tl_is "$rc" 73 "$name -n: a missing pid file directory exits 73"
    printf '%s\n' "$out" | grep -qF -- "$WANT"
    tl_ok $? "$name -n: names it with the fix"
    [ $? = 0 ] || printf '%s\n' "$out" | sed 's/^/#   /'
done
run "$RG_LOOKUPD" -c "$CONF" -f
tl_is "$rc" 73 "lookupd start-up refuses (73) without its pid file directory"
printf '%s\n' "$out" | grep -qF -- "$WANT"
tl_ok $? "lookupd start-up: the same message as -n"
printf '%s\n' "$out" | grep -q 'tmp: No such file'
tl_ok $([ $? != 0 ]; echo $?) "lookupd start-up: no bare 'No such file' about a temporary file"
run "$RG_SMTPD" -c "$CONF" -f
tl_is "$rc" 73 "smtpd start-up refuses (73) without its pid file directory"
printf '%s\n' "$out" | grep -qF -- "$WANT"
tl_ok $? "smtpd start-up: the same message as -n"
mkdir "$B/run"
[ $ROOT = 1 ] && chown "$RUNAS:$RUNGRP" "$B/run"
run "$RG_LOOKUPD" -c "$CONF" -n
tl_is "$rc" 0 "-n is content once the directory is made"

# --- a store directory the user may not write
chmod 0550 "$B/lib"
for prog in "$RG_LOOKUPD" "$RG_SYNCD" "$RG_ADMIN"; do
    # lookupd only reads the store (read-only open); its stats file lives there too
    what="store directory"
    [ "$prog" = "$RG_LOOKUPD" ] && what="stats file directory"
    WANT="$what $B/lib is not writable by user $RUNAS (owner $RUNAS, mode 0550): chmod u+rwx $B/lib"
    run "$prog" -c "$CONF" -n
    tl_is "$rc" 73 "$(basename "$prog") -n: an unwritable store directory exits 73"
    printf '%s\n' "$out" | grep -qF -- "$WANT"
    tl_ok $? "$(basename "$prog") -n: names it with the fix"
    [ $? = 0 ] || printf '%s\n' "$out" | sed 's/^/#   /'
done
chmod 0750 "$B/lib"

if [ $ROOT = 1 ]; then
    # The README's trap: a store directory (or store) that root owns.
    chown root "$B/lib"
    WANT="store directory $B/lib is not writable by user nobody (owner root): chown nobody $B/lib"
    sum=$(cksum < "$DB")
    run "$RG_ADMIN" -c "$CONF" domain add other.example
    tl_ok $([ "$rc" != 0 ]; echo $?) "as root: the admin command refuses a store directory nobody cannot write"
    printf '%s\n' "$out" | grep -qF -- "$WANT"
    tl_ok $? "as root: ... naming the directory, the user and the fix"
    printf '%s\n' "$out" | grep -q 'user nobody (\[syncd\] user)'
    tl_ok $? "as root: ... and the [syncd] user it acts as"
    tl_is "$(cksum < "$DB")" "$sum" "as root: ... and the store is unchanged"
    run "$RG_SYNCD" -c "$CONF" -n
    printf '%s\n' "$out" | grep -qF -- "$WANT"
    tl_ok $? "syncd -n: the same message"
    chown nobody "$B/lib"

    chown root "$DB"
    WANT="store file $DB is not writable by user nobody (owner root): chown nobody $DB"
    run "$RG_SYNCD" -c "$CONF" -n
    tl_is "$rc" 73 "syncd -n: a store file nobody cannot write exits 73"
    printf '%s\n' "$out" | grep -qF -- "$WANT"
    tl_ok $? "syncd -n: names the store file with the fix"
    run "$RG_SYNCD" -c "$CONF" --once
    tl_is "$rc" 73 "syncd --once refuses it (not 'attempt to write a readonly database')"
    printf '%s\n' "$out" | grep -qF -- "$WANT"
    tl_ok $? "syncd --once: the same message"
    # lookupd opens the store read-only: a file it can read will do, one it cannot read will not
    run "$RG_LOOKUPD" -c "$CONF" -n
    tl_is "$rc" 0 "lookupd -n: content with a store file it may read but not write (mode $(stat -c %a "$DB"))"
    chmod 0600 "$DB"
    run "$RG_LOOKUPD" -c "$CONF" -n
    tl_like "$out" "store file $DB is not readable by user nobody \\(owner root" \
        "lookupd -n: a store file it cannot read is named"
    chmod 0640 "$DB"
    chown nobody "$DB"

    conf "$B/nouser.conf"
    sed -i '/^\[syncd\]/,/^\[/ s/^user = nobody$/user = no-such-rcptgate-user/' "$B/nouser.conf"
    run "$RG_ADMIN" -c "$B/nouser.conf" domain add other.example
    tl_ok $([ "$rc" != 0 ]; echo $?) "as root: the admin command refuses when [syncd] user does not exist"
    tl_like "$out" '\[syncd\] user "no-such-rcptgate-user" does not exist.*useradd --system' \
        "as root: ... naming the user and how to create it"

    # A bind password file of the daemon's user's (what the systemd units,
    # which run syncd as its user, need): root's -n and --once judge it as
    # the daemon will, from the [syncd] user this very file names.
    printf 's3cret\n' > "$B/bind.pw"
    chmod 0600 "$B/bind.pw"
    chown nobody "$B/bind.pw"
    conf "$B/secret.conf"
    cat >> "$B/secret.conf" <<CONF

[source corp]
type = ldap
uri = ldap://127.0.0.1:9
base = dc=perms,dc=test
bind_dn = cn=sync,dc=perms,dc=test
bind_password_file = $B/bind.pw
CONF
    run "$RG_SYNCD" -c "$B/secret.conf" -n
    tl_is "$rc" 0 "as root: syncd -n takes a 0600 bind_password_file that [syncd] user owns"
    run "$RG_ADMIN" -c "$B/secret.conf" -n
    tl_is "$rc" 0 "as root: rcptgate -n takes it too"
    chown daemon "$B/bind.pw"
    run "$RG_SYNCD" -c "$B/secret.conf" -n
    tl_is "$rc" 78 "as root: syncd -n refuses one that another user owns"
    tl_like "$out" "belongs to daemon, who could change it: chown root \\(or nobody\\) it" \
        "as root: ... naming the owner and the fix"
else
    for c in "admin refuses a root-owned store directory" "its message" "its user" "store unchanged" \
        "syncd -n message" "store file not writable: syncd -n" "its message" "syncd --once refuses" \
        "its message" "lookupd -n: readable store" "lookupd -n: unreadable store" "missing [syncd] user" "its message" \
        "syncd -n: the daemon user's secret" "rcptgate -n: the same" "syncd -n: another user's secret" "its message"; do
        skip "$c"
    done
fi

# --- the pid file's temporary name: a planted link is not followed
printf 'precious\n' > "$B/victim"
chmod 0644 "$B/victim"
rm -f "$SOCKMAP"
# shellcheck disable=SC2016
sh -c 'ln -s "$1" "$2.$$.tmp" && exec "$3" -c "$4" -f' sh "$B/victim" "$B/run/lookupd.pid" \
    "$RG_LOOKUPD" "$CONF" 2>>"$T/lookupd.log" &
LOOKUPD_PID=$!
tl_pids="$tl_pids $LOOKUPD_PID"
tl_wait_socket "$SOCKMAP"
tl_ok $? "lookupd starts although a link was planted at its pid file's temporary name"
tl_ok $([ -L "$B/run/lookupd.pid.$LOOKUPD_PID.tmp" ] || [ -e "$B/run/lookupd.pid.$LOOKUPD_PID.tmp" ]; [ $? != 0 ]; echo $?) \
    "the planted link was removed, not followed"
tl_is "$(cat "$B/victim")" "precious" "the file the link named is untouched"
tl_is "$(cat "$B/run/lookupd.pid" 2>/dev/null)" "$LOOKUPD_PID" "the pid file holds lookupd's pid"
stop_pid "$LOOKUPD_PID"

# --- a store that is a symbolic link is refused, and nothing is created where it points
mv "$DB" "$B/lib/real.db"
ln -s "$B/lib/elsewhere.db" "$DB"
conf "$B/root.conf"
sed -i '/^\[syncd\]/,/^\[/ s/^user = .*$/user =/' "$B/root.conf"
run "$RG_ADMIN" -c "$B/root.conf" domain add other.example
tl_ok $([ "$rc" != 0 ]; echo $?) "a symlinked store: domain add refuses"
tl_like "$out" "store $DB is a symbolic link, which is not followed" "a symlinked store: ... and says why"
run "$RG_ADMIN" -c "$B/root.conf" stats
tl_ok $([ "$rc" != 0 ]; echo $?) "a symlinked store: stats refuses too"
tl_ok $([ ! -e "$B/lib/elsewhere.db" ]; echo $?) "a symlinked store: nothing was created where the link points"
run "$RG_LOOKUPD" -c "$CONF" -n
tl_is "$rc" 73 "a symlinked store: lookupd -n exits 73"
tl_like "$out" "store file $DB is a symbolic link, which is not followed" "a symlinked store: lookupd -n says why"
rm -f "$DB"
mv "$B/lib/real.db" "$DB"

# --- smtpd's log_file: a planted link is refused, its target untouched
rm -f "$B/lib/smtpd.log"
ln -s "$B/victim" "$B/lib/smtpd.log"
run "$RG_SMTPD" -c "$CONF" -f
tl_is "$rc" 73 "smtpd refuses a log_file that is a symbolic link"
tl_like "$out" "log_file $B/lib/smtpd.log is a symbolic link" "smtpd: ... and says why"
tl_is "$(cat "$B/victim")" "precious" "smtpd: the file the link named is untouched"

# --- started with SIGCHLD ignored (some supervisors pass that on): the
# check as the daemons' user still sees its child's verdict.
if [ $ROOT = 1 ]; then
    run "$RG_LOOKUPD" -c "$CONF" -n
    want=$rc
    out=$(python3 -c 'import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])' "$RG_LOOKUPD" -c "$CONF" -n 2>&1)
    tl_is "$?" "$want" "SIGCHLD ignored at start: lookupd -n says what it says otherwise ($want)"
    tl_ok "$(printf '%s' "$out" | grep -c 'No child processes' | grep -qx 0; echo $?)" \
        "SIGCHLD ignored at start: no waitpid failure"
fi

tl_done
