#!/bin/sh
# queue_admin.sh - rcptgate queue and the queue part of rcptgate check, as a postmaster uses them
#
# A spool is built with tests/tools/rg_spoolput (the functions smtpd
# queues with), then: list (mailq's shape, reasons, the null sender, a
# held message's '!', the total line, a damaged file reported without
# stopping the list), show (envelope, states, reasons, next try, headers;
# a hostile HELO shown on one line), flush of one id, of everything and of
# a domain (the next-try times change; the trigger FIFO gets its byte when
# a reader listens, and exit 69 says so when none does), hold / release /
# delete by id, ALL and ids on stdin, bad ids (never a path), a missing
# spool (said, not created), and as root: a spool owned by nobody keeps
# every file nobody's. rcptgate check: counts, the oldest message's age
# from the ids (WARNING past --queue-warning), nothing for a missing spool
# with relay_mode = proxy, a WARNING when smtpd should queue.
#
# It starts no daemon (the trigger's reader is a small python3 process):
# make check-vacuous stubs the admin command as the client, and
# rg_spoolput, which makes the spool, as the daemon.
# vacuous client: RG_ADMIN
# vacuous daemon: RG_SPOOLPUT

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"

PUT=${RG_SPOOLPUT:-"$top_builddir/tests/tools/rg_spoolput"}
[ -x "$RG_ADMIN" ] || tl_bail "rcptgate not built ($RG_ADMIN)"
[ -x "$PUT" ] || tl_bail "rg_spoolput not built ($PUT)"
tl_need_tool python3 "python3"
tl_init queue_admin

Q="$T/queue"
cat >> "$CONF" <<EOF

[smtpd]
queue_directory = $Q
# Run as root, queue commands act as this user: here they stay root (but see "as root" below).
user =
EOF

# run CMD... - the admin command: stdout to $T/out, stderr to $T/err, status in $rc
run() {
    tl_admin "$@" >"$T/out" 2>"$T/err"
    rc=$?
}

# put [OPTIONS] DIR SENDER RCPT... - rg_spoolput a small message; its id in $id
put() {
    id=$(printf 'Subject: hello\nFrom: <a@example.net>\n\nbody\n.dot line\n' | "$PUT" "$@") \
        || tl_bail "rg_spoolput $* failed"
}

# mtime ID QUEUE - the file's mtime (its next try in deferred/)
mtime() {
    stat -c %Y "$Q/$2/$1" 2>/dev/null
}

# --- a missing spool: said, never created
run queue list
tl_is "$rc" 2 "list: a missing spool exits 2"
tl_like "$(cat "$T/err")" "queue directory $Q does not exist" "... and says the directory does not exist"
tl_ok $([ ! -e "$Q" ]; echo $?) "... and does not create it"
run queue frob
tl_is "$rc" 64 "an unknown queue subcommand is a usage error"
run queue show
tl_is "$rc" 64 "show without an id is a usage error"

# --- the spool
put -r "4.4.1 connect to [10.0.0.5]:25: Connection refused" -t 3600 "$Q" a@example.net x@example.org y@example.com
A=$id
put "$Q" "" z@example.org
B=$id
put -H "$(printf 'evil\r\nT 0 - injected@example.org\r\n')" -t 3600 "$Q" c@example.net w@example.net
C=$id
tl_like "$A" '^[0-9A-F]{23}$' "rg_spoolput prints a queue id (23 hex digits)"
tl_is "$(stat -c %a "$Q" "$Q/deferred" "$Q/deferred/$A" | tr '\n' ' ')" "700 700 600 " \
    "the spool is private: directories 0700, messages 0600"

run queue list
tl_is "$rc" 0 "list exits 0"
tl_like "$(head -1 "$T/out")" '^-Queue ID- +--Size-- ----Arrival Time---- +-Sender/Recipient-------$' "list: mailq's header"
tl_like "$(cat "$T/out")" "^$A +[0-9]+ [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8} +a@example\.net\$" \
    "list: id, size, arrival, sender"
tl_is "$(grep -A3 "^$A" "$T/out" | sed 's/^ *//' | sed -n 2,4p | tr '\n' '|')" \
    "(connect to [10.0.0.5]:25: Connection refused)|x@example.org|y@example.com|" \
    "list: the last deferral's reason once, then the pending recipients"
tl_like "$(grep "^$B" "$T/out")" "MAILER-DAEMON\$" "list: the null sender is MAILER-DAEMON"
tl_like "$(tail -1 "$T/out")" '^-- [0-9]+ Kbytes in 3 Requests\.$' "list: the total line"
tl_ok $(grep -q injected "$T/out"; [ $? = 1 ]; echo $?) "list: the hostile HELO added no recipient"

# --- show
run queue show "$A"
tl_is "$rc" 0 "show exits 0"
tl_like "$(cat "$T/out")" "^id: $A\$" "show: the id"
tl_like "$(cat "$T/out")" "^next try: [0-9T:Z-]+ \(in [0-9]+ s\)\$" "show: the next try, an hour ahead"
tl_like "$(cat "$T/out")" '^sender: a@example\.net$' "show: the sender"
tl_like "$(cat "$T/out")" '^recipient: y@example\.com pending$' "show: a recipient and its state"
tl_like "$(cat "$T/out")" '^  last: dsn=4\.4\.1 \(connect to \[10\.0\.0\.5\]:25: Connection refused\)$' "show: its last reason"
tl_like "$(cat "$T/out")" '^attempts: 1$' "show: the attempts"
tl_like "$(cat "$T/out")" '^client: mail\.example\.net\[192\.0\.2\.25\]:42424 helo=mail\.example\.net proto=ESMTP$' "show: the client"
tl_is "$(sed -n '/^-- headers$/,$p' "$T/out" | tr '\n' '|')" "-- headers|Subject: hello|From: <a@example.net>|" \
    "show: the headers, not the body"
run queue show "$C"
tl_like "$(grep '^client:' "$T/out")" 'helo=evil\?\?T 0 - injected@example\.org\? proto' "show: a hostile HELO on one line, controls replaced"
tl_is "$(grep -c '^recipient:' "$T/out")" 1 "show: ... and it added no recipient"
run queue show ../../etc/passwd
tl_is "$rc" 1 "show: a path is not a queue id (exit 1)"
tl_like "$(cat "$T/err")" 'not a queue id' "... and says so"
run queue show ABCDEF0123
tl_is "$rc" 1 "show: an unknown id exits 1"
tl_like "$(cat "$T/err")" 'ABCDEF0123: no such message' "... and says so"

# --- flush: nobody listens, then a reader on the trigger
before=$(mtime "$A" deferred)
run queue flush "$A"
tl_is "$rc" 69 "flush ID without smtpd exits 69"
tl_like "$(cat "$T/err")" 'does not read .*/trigger' "... saying nobody reads the trigger"
now=$(date +%s)
tl_ok $([ "$before" -gt $((now + 3000)) ] && [ "$(mtime "$A" deferred)" -le "$now" ]; echo $?) \
    "flush ID: the message is due now all the same (next try $before -> $(mtime "$A" deferred))"

# reader: holds the FIFO open (as smtpd does, read-write), says ready, prints the first byte
python3 - "$Q/trigger" "$T/reader.ready" >"$T/reader.out" 2>&1 <<'PY' &
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDWR)
open(sys.argv[2], "w").close()
if select.select([fd], [], [], 20)[0]:
    sys.stdout.write(os.read(fd, 1).decode())
PY
READER=$!
tl_pids="$tl_pids $READER"
i=0
while [ ! -e "$T/reader.ready" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
[ -e "$T/reader.ready" ] || tl_bail "the trigger reader did not start"
run queue flush
tl_is "$rc" 0 "flush with a reader on the trigger exits 0"
wait "$READER"
tl_is "$(cat "$T/reader.out")" "F" "flush: the reader got the trigger byte"
now=$(date +%s)
tl_ok $([ "$(mtime "$C" deferred)" -le "$now" ]; echo $?) "flush: every deferred message is due now"

put -t 3600 "$Q" d@example.net one@EXAMPLE.com
D=$id
put -t 3600 "$Q" e@example.net two@example.org
E=$id
run queue flush example.com
tl_is "$rc" 69 "flush DOMAIN (no reader: 69)"
tl_like "$(cat "$T/err")" '2 messages due now' "flush DOMAIN: the two with a recipient there (A and D)"
now=$(date +%s)
tl_ok $([ "$(mtime "$D" deferred)" -le "$now" ] && [ "$(mtime "$E" deferred)" -gt $((now + 3000)) ]; echo $?) \
    "flush DOMAIN: only the message with a recipient there (any case) is due"
run queue flush 'bad domain'
tl_is "$rc" 1 "flush: neither an id nor a domain exits 1"

# --- hold, release, delete
run queue hold "$A"
tl_is "$rc" 0 "hold ID exits 0"
tl_ok $([ -f "$Q/hold/$A" ] && [ ! -e "$Q/deferred/$A" ]; echo $?) "hold: the file moved to hold/"
run queue list
tl_like "$(cat "$T/out")" "^$A! " "list: a held message has '!'"
run queue show "$A"
tl_like "$(cat "$T/out")" '^next try: none, held' "show: a held message has no next try"
run queue flush "$A"
tl_is "$rc" 1 "flush of a held message exits 1"
tl_like "$(cat "$T/err")" "on hold: rcptgate queue release $A" "... and says how to release it"
run queue hold "$A"
tl_like "$(cat "$T/err")" 'already on hold' "hold twice says it is already held"
run queue release "$A"
tl_is "$rc" 0 "release ID exits 0"
now=$(date +%s)
tl_ok $([ -f "$Q/deferred/$A" ] && [ "$(mtime "$A" deferred)" -le "$now" ]; echo $?) "release: back in deferred/, due now"
run queue release "$A"
tl_is "$rc" 1 "release of a message not held exits 1"
run queue hold ALL
tl_is "$rc" 0 "hold ALL exits 0"
tl_like "$(cat "$T/err")" 'held 5 messages' "hold ALL: 5 messages"
tl_is "$(ls "$Q/deferred" | wc -l)" 0 "hold ALL: deferred/ is empty"
run queue release ALL
tl_like "$(cat "$T/err")" 'released 5 messages' "release ALL: 5 messages"
run queue delete "$B" ../hold "$B"
tl_is "$rc" 1 "delete: a bad id and a repeated one exit 1"
tl_like "$(cat "$T/err")" 'deleted 1 message$' "delete: the good one is deleted"
tl_like "$(cat "$T/err")" '"\.\./hold": not a queue id' "delete: a path is refused"
tl_ok $([ ! -e "$Q/deferred/$B" ] && [ -d "$Q/hold" ]; echo $?) "delete: the message is gone, hold/ is not"
tl_ok $([ -e "$Q/defer/$A" ] && [ ! -e "$Q/defer/$B" ]; echo $?) "delete: not the reasons of other messages"
tl_admin queue hold "$E" >/dev/null 2>&1
printf '%s\n%s!\n' "$D" "$E" | tl_admin queue delete - >"$T/out" 2>"$T/err"
tl_is "$?" 0 "delete - (ids on stdin, a held one with list's '!') exits 0"
tl_like "$(cat "$T/err")" 'deleted 2 messages' "delete -: both"
# A line longer than any buffer is one line: its tail is not read as an id of its own.
printf '%s%s\n' "$(printf 'X%.0s' $(seq 255))" "$A" | tl_admin queue hold - >"$T/out" 2>"$T/err"
tl_ok $([ "$?" = 1 ] && [ -e "$Q/deferred/$A" ]; echo $?) "hold -: a 255-byte word then an id is one bad word, not the id"
# queue list as it is, head and foot included, feeds hold - and release -.
tl_admin queue list | tl_admin queue hold - >"$T/out" 2>"$T/err"
tl_ok $([ "$?" = 0 ] && [ -e "$Q/hold/$A" ]; echo $?) "queue list | hold -: exit 0, its messages held"
tl_admin queue release ALL >/dev/null 2>&1

# --- a damaged file is reported, the rest still listed
printf 'rcptgate-queue 1\nwarned 0\n' > "$Q/deferred/0000000000DAMAGED"
run queue list
tl_is "$rc" 2 "list with a damaged file exits 2"
tl_like "$(cat "$T/err")" '0000000000DAMAGED: damaged' "... naming it"
tl_like "$(tail -1 "$T/out")" 'in 2 Requests\.$' "... and lists the others"
rm -f "$Q/deferred/0000000000DAMAGED"

# --- rcptgate check
tl_admin domain add example.org >/dev/null 2>&1 || tl_bail "cannot create the store"
CHK="--no-lookupd --no-smtpd --no-sync"
run check $CHK
tl_is "$rc" 0 "check: a young queue is OK"
tl_like "$(cat "$T/out")" "queue: 2 deferred, the oldest [0-9]+s old, 0 held" "check: counts and the oldest's age"
tl_like "$(cat "$T/out")" "'queue_deferred'=2;;;0 'queue_hold'=0;;;0 'queue_oldest_age'=[0-9]+s;3600;;0" "check: performance data"
put -a 7300 "$Q" old@example.net x@example.org
OLD=$id
idtime=$(printf '%d' "0x$(printf '%s' "$OLD" | cut -c1-8)")
tl_ok $([ $(($(date +%s) - 7300 - idtime)) -le 2 ] && [ $(($(date +%s) - 7300 - idtime)) -ge 0 ]; echo $?) \
    "rg_spoolput -a: the id tells the arrival"
run queue hold "$A"
run check $CHK
tl_is "$rc" 1 "check: a deferred message older than 1h is a WARNING"
tl_like "$(cat "$T/out")" "^RCPTGATE WARNING - queue: 2 deferred, the oldest 2h[0-9]+m old \(warning 1h0m\), 1 held" \
    "check: ... saying how old, and the held count"
run check $CHK --queue-warning 3h
tl_is "$rc" 0 "check --queue-warning 3h: OK"
mkdir -m 0700 "$Q/corrupt" && : > "$Q/corrupt/0BAD"
run check $CHK --queue-warning 3h
tl_is "$rc" 1 "check: a damaged file smtpd set aside in corrupt/ is a WARNING"
tl_like "$(cat "$T/out")" "queue: 1 damaged file set aside in $Q/corrupt/ \(see smtpd's log\)" "... saying where"
rm -r "$Q/corrupt"
run check $CHK --no-queue
tl_ok $(grep -q queue "$T/out"; [ $? = 1 ]; echo $?) "check --no-queue: no queue finding"

mv "$Q" "$T/queue.away"
run check $CHK
tl_is "$rc" 1 "check: a missing spool with relay_mode proxy-then-queue is a WARNING"
tl_like "$(cat "$T/out")" "queue: $Q does not exist \(relay_mode = proxy-then-queue\)" "... saying so"
printf 'relay_mode = proxy\n' >> "$CONF"
run check $CHK
tl_is "$rc" 0 "check: a missing spool with relay_mode = proxy is fine"
tl_ok $(grep -q queue "$T/out"; [ $? = 1 ]; echo $?) "... and not mentioned"
mv "$T/queue.away" "$Q"

# --- as root: every file stays the spool owner's
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    # Run as root, queue commands act as [smtpd] user: the spool moves where
    # nobody can reach it (the tree may be a clone under /root, mode 0700).
    QD=$(mktemp -d "${TMPDIR:-/tmp}/rg-queue-admin.XXXXXX") && chmod 0711 "$QD" && mv "$Q" "$QD/queue" ||
        tl_bail "cannot move the spool to $QD"
    Q=$QD/queue
    sed -i -e "s|^queue_directory = .*|queue_directory = $Q|" -e 's/^user =$/user = nobody/' "$CONF"
    chown -R nobody "$Q"
    # deferred/ made a link by whoever holds smtpd's user: root's delete ALL must
    # not follow it (the directory behind it is one nobody may write in).
    mkdir -m 0777 "$QD/victim" && echo precious > "$QD/victim/README"
    mv "$Q/deferred" "$Q/deferred.real" && ln -s "$QD/victim" "$Q/deferred" && chown -h nobody "$Q/deferred"
    run queue delete ALL
    tl_ok $([ "$rc" != 0 ] && [ -e "$QD/victim/README" ]; echo $?) \
        "as root: a deferred/ that is a link is not followed (exit $rc, the file behind it is still there)"
    tl_like "$(cat "$T/err")" "deferred: a symbolic link or not a directory" "... and says why"
    rm "$Q/deferred" && mv "$Q/deferred.real" "$Q/deferred"
    run queue hold ALL
    run queue release "$A"
    run queue flush
    run queue delete "$OLD"
    run queue list
    tl_is "$(find "$Q" ! -user nobody | wc -l)" 0 "as root: every file in the spool is still nobody's"
    tl_like "$(tail -1 "$T/out")" 'in 2 Requests\.$' "as root: the actions happened"
    rm -rf "$T/none"
    sed -i "s|^queue_directory = .*|queue_directory = $T/none|" "$CONF"
    run queue flush
    tl_ok $([ "$rc" = 2 ] && [ ! -e "$T/none" ]; echo $?) "as root: a missing spool is not created"
    sed -i "s|^queue_directory = .*|queue_directory = $Q|" "$CONF"
    sed -i 's/^user = nobody$/user =/' "$CONF"
else
    tl_n=$((tl_n + 1)); echo "ok $tl_n # SKIP a link as root: needs root and the user nobody"
    tl_n=$((tl_n + 1)); echo "ok $tl_n # SKIP a link as root: needs root and the user nobody"
    tl_n=$((tl_n + 1)); echo "ok $tl_n # SKIP ownership as root: needs root and the user nobody"
    tl_n=$((tl_n + 1)); echo "ok $tl_n # SKIP ownership as root: needs root and the user nobody"
    tl_n=$((tl_n + 1)); echo "ok $tl_n # SKIP ownership as root: needs root and the user nobody"
fi

run queue delete ALL
tl_is "$rc" 0 "delete ALL exits 0"
run queue list
tl_is "$(cat "$T/out")" "Mail queue is empty" "list: an empty queue says so"
tl_is "$(find "$Q/deferred" "$Q/hold" "$Q/defer" -type f | wc -l)" 0 "delete ALL: no message and no reason file is left"
[ -n "${QD:-}" ] && rm -rf "$QD"

tl_done
