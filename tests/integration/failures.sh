#!/bin/sh
# failures.sh - a store lookupd cannot use means TEMP, never NOTFOUND
#
# For each way the store can fail (missing, not a database, unreadable,
# locked past the busy timeout, schema too new or too old (lookupd reads
# the store read-only and never migrates it), vanished while running,
# a path through a non-directory) the raw socketmap reply must start with
# "TEMP ", and Postfix's postmap must report an error rather than "not
# found". Once the store is fixed, the same lookupd process must answer
# again without a restart.

. "$top_srcdir/tests/lib/testlib.sh"
tl_init failures

cat > "$T/recipients" <<EOF
alice@example.com OK
EOF
tl_admin domain add example.com >/dev/null 2>"$T/admin.err" &&
tl_admin import "$T/recipients" >/dev/null 2>>"$T/admin.err"
tl_ok $? "store filled with the admin command"
[ -s "$T/admin.err" ] && sed 's/^/# /' "$T/admin.err"
cp "$STORE" "$T/good.db"
SCHEMA=$(sqlite3 "$STORE" 'PRAGMA user_version')

# ask ADDRESS - the socketmap reply for recipients ADDRESS
ask() {
    echo "recipients $1" | "$RG_CLIENT" "unix:$SOCK"
}

# reset_store - put the good store back
reset_store() {
    rm -f "$STORE" "$STORE-wal" "$STORE-shm"
    cp "$T/good.db" "$STORE"
}

# expect_temp CASE - rgclient sees TEMP, postmap an error
expect_temp() {
    r=$(ask alice@example.com)
    tl_like "$r" '^TEMP ' "$1: reply is TEMP"
    tl_postmap alice@example.com recipients
    rc=$?
    if [ $rc -ne 0 ] && [ ! -s "$T/out" ] && grep -q 'temporary error' "$T/err"; then
        tl_ok 0 "$1: postmap reports a temporary error, not \"not found\""
    else
        tl_ok 1 "$1: postmap reports a temporary error, not \"not found\""
        echo "#   rc=$rc out='$(cat "$T/out")' err='$(cat "$T/err")'"
    fi
}

# expect_recover CASE - the same lookupd answers OK again within 5 s
expect_recover() {
    i=0
    while [ $i -lt 50 ]; do
        # no connection at all (exit 1) is no recovery to wait for
        r=$(ask alice@example.com) || break
        case $r in OK*) break ;; esac
        sleep 0.1
        i=$((i + 1))
    done
    tl_like "$r" '^OK ' "$1: answers recover after the fix, no restart"
    # the same process, once it answered again
    case $r in OK*) _r=answers ;; *) _r="does not answer" ;; esac
    kill -0 "$LOOKUPD_PID" 2>/dev/null && _r="$_r, same process"
    tl_is "$_r" "answers, same process" "$1: still the same lookupd process"
}

# --- missing at startup, then created
rm -f "$STORE"
tl_start_lookupd
rc=$?
tl_ok $rc "lookupd starts without a store"
[ $rc = 0 ] || tl_bail "lookupd did not start ($RG_LOOKUPD)"
expect_temp "missing store"
reset_store
expect_recover "missing store"

# --- vanishes while running, then comes back
mv "$STORE" "$T/away.db"
i=0
while [ $i -lt 30 ]; do
    r=$(ask alice@example.com)
    case $r in TEMP*) break ;; esac
    sleep 0.1
    i=$((i + 1))
done
tl_like "$r" '^TEMP ' "vanished store: reply turns TEMP within 3 s"
mv "$T/away.db" "$STORE"
expect_recover "vanished store"

# --- a lookup fails on a handle that is open: the table went away
sqlite3 "$STORE" 'DROP TABLE recipient'
r=$(ask alice@example.com)
tl_like "$r" '^TEMP store error: ' "lookup error on an open store: TEMP with the store's reason"
grep -q 'lookup failed' "$T/lookupd.log"
tl_ok $? "lookup error on an open store: logged"
expect_temp "lookup error on an open store"
reset_store
expect_recover "lookup error on an open store"
tl_stop_lookupd

# --- not a database
rm -f "$STORE" "$STORE-wal" "$STORE-shm"
i=0
while [ $i -lt 200 ]; do
    echo "this is not an SQLite database, just garbage bytes"
    i=$((i + 1))
done > "$STORE"
tl_start_lookupd || tl_bail "lookupd did not start ($RG_LOOKUPD)"
expect_temp "garbage store"
r=$(ask alice@example.com)
tl_like "$r" 'not a database|file is not|malformed|corrupt' "garbage store: the reason says so"
reset_store
expect_recover "garbage store"
tl_stop_lookupd

# --- schema newer than this program
sqlite3 "$STORE" 'PRAGMA user_version = 999'
tl_start_lookupd || tl_bail "lookupd did not start ($RG_LOOKUPD)"
expect_temp "schema too new"
r=$(ask alice@example.com)
tl_like "$r" 'newer|999' "schema too new: the reason says so"
sqlite3 "$STORE" "PRAGMA user_version = $SCHEMA"
expect_recover "schema too new"
tl_stop_lookupd

# --- schema older than this program: a reader never migrates it
reset_store
sqlite3 "$STORE" "PRAGMA user_version = $((SCHEMA - 1))"
tl_start_lookupd || tl_bail "lookupd did not start ($RG_LOOKUPD)"
expect_temp "schema too old"
r=$(ask alice@example.com)
tl_like "$r" 'older.*does not migrate' "schema too old: the reason says so"
tl_like "$(grep 'schema version' "$T/lookupd.log" | tail -1)" \
    "store .* unavailable: .*schema version $((SCHEMA - 1)) is older than this program's $SCHEMA.*answering TEMP" \
    "schema too old: one clear log line"
tl_is "$(sqlite3 "$STORE" 'PRAGMA user_version')" "$((SCHEMA - 1))" "schema too old: lookupd left it alone"
sqlite3 "$STORE" "PRAGMA user_version = $SCHEMA"
expect_recover "schema too old (a writer migrated it)"
tl_stop_lookupd

# --- held locked by another process past the busy timeout (500ms)
reset_store
mkfifo "$T/lockfifo"
sqlite3 "$STORE" < "$T/lockfifo" > "$T/locker.out" 2>&1 &
LOCKER=$!
tl_pids="$tl_pids $LOCKER"
exec 4>"$T/lockfifo"
printf 'PRAGMA locking_mode=EXCLUSIVE;\nBEGIN EXCLUSIVE;\nSELECT count(*) FROM domain;\n' >&4
i=0
while [ ! -s "$T/locker.out" ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
tl_start_lookupd 4>&- || tl_bail "lookupd did not start ($RG_LOOKUPD)"           # lookupd must not hold the fifo open too
sleep 1.2                       # past the reopen interval: the next request waits
t0=$(date +%s%N)
r=$(ask alice@example.com)
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
tl_like "$r" '^TEMP ' "locked store: reply is TEMP"
# No hang: at most the busy timeout and a little. (lookupd also retries the
# store each second on its own, so a request may arrive in the middle of
# such a wait and be answered sooner than 500 ms.)
tl_ok $([ $ms -lt 3000 ]; echo $?) "locked store: TEMP within the busy timeout and a little, no hang (${ms} ms)"
expect_temp "locked store"
exec 4>&-                       # the locker sees EOF and lets go
wait "$LOCKER"
tl_pids=$(echo "$tl_pids" | sed "s/ $LOCKER//")
expect_recover "locked store"
tl_stop_lookupd

# --- the path runs through something that is not a directory
printf 'plain file\n' > "$T/notadir"
sed "s|^path = .*|path = $T/notadir/store.db|" "$CONF" > "$T/notadir.conf"
SAVED_CONF=$CONF
CONF="$T/notadir.conf"
tl_start_lookupd || tl_bail "lookupd did not start ($RG_LOOKUPD)"
expect_temp "path through a file"
# A reload with the right path recovers, again without a restart.
CONF=$SAVED_CONF
sed "s|^path = .*|path = $STORE|" "$T/notadir.conf" > "$T/notadir.conf.new"
mv "$T/notadir.conf.new" "$T/notadir.conf"
kill -HUP "$LOOKUPD_PID"
expect_recover "path through a file (after SIGHUP)"
tl_stop_lookupd

# --- unreadable: root reads everything, so run lookupd as nobody then
reset_store
if [ "$(id -u)" != 0 ]; then
    chmod 000 "$STORE"
    tl_start_lookupd || tl_bail "lookupd did not start ($RG_LOOKUPD)"
    expect_temp "unreadable store"
    chmod 644 "$STORE"
    expect_recover "unreadable store"
    tl_stop_lookupd
elif id nobody >/dev/null 2>&1; then
    # lookupd's places are nobody's, in /tmp (nobody may not enter the tree).
    tl_user_dir nobody
    cp "$T/good.db" "$UD/store.db"
    chmod 600 "$UD/store.db"            # root's, and nobody may not read it
    SAVED_SOCK=$SOCK
    SOCK="$UD/socketmap.sock"
    sed -e "s|^path = .*|path = $UD/store.db|" -e "s|^user =.*|user = nobody|" \
        -e "s|^pid_file = .*|pid_file = $UD/lookupd.pid|" -e "s|^stats_file = .*|stats_file = $UD/lookupd.stats|" \
        -e "s|^socketmap = .*|socketmap = unix:$SOCK|" -e "s|^policy = .*|policy = unix:$UD/policy.sock|" \
        "$CONF" > "$T/nobody.conf"
    SAVED_CONF=$CONF
    CONF="$T/nobody.conf"
    tl_start_lookupd
    tl_ok $? "unreadable store: lookupd as nobody starts anyway"
    CONF=$SAVED_CONF
    grep -qF "warning: store file $UD/store.db is not readable by user nobody (owner root, mode 0600): give the user the file's group, or chmod g+r $UD/store.db" "$T/lookupd.log"
    tl_ok $? "unreadable store: the start-up check warns with the fix"
    expect_temp "unreadable store (lookupd as nobody)"
    chown nobody "$UD/store.db"
    expect_recover "unreadable store (lookupd as nobody)"
    tl_stop_lookupd
    SOCK=$SAVED_SOCK
else
    tl_n=$((tl_n + 1))
    echo "ok $tl_n # SKIP unreadable store: root reads everything, and there is no user nobody"
fi

tl_done
