#!/bin/sh
# queue.sh - the queue benchmark: `rcptgate queue` on 100,000 messages, beside Postfix's tools
#
# Run by `make bench-queue` from the build directory (configure it without
# --enable-sanitizers); it builds nothing. In tests/tmp/bench-queue under
# the build tree it makes two queues of $BENCH_QUEUE_MESSAGES messages
# each, one recipient and a last deferral reason apiece:
#   - rcptgate-smtpd's spool, written by tests/tools/rg_spoolput -n (the
#     spool functions smtpd uses; on /dev/shm when it is there, since
#     each message is fsynced twice, then copied beside Postfix's queue
#     with cp -a, so both are on the same filesystem and in its cache);
#   - a private Postfix instance's queue: one real message is queued and
#     deferred by it (defer_transports = smtp), then its queue file and
#     defer logfile are copied under new queue ids into the hashed
#     deferred/ and defer/ directories, as if that many had been
#     deferred. Postfix is stopped again: postqueue -p then reads the
#     queue itself ("Mail system is down -- accessing queue directly"),
#     which is what rcptgate queue list always does.
# Then, each $BENCH_REPEAT times (median), with the machine quiet:
#   1. list:    rcptgate queue list > /dev/null   vs  postqueue -p > /dev/null (mailq)
#   2. check:   rcptgate check (its queue part: counts and the oldest
#               message's age from the ids)       vs  qshape deferred (the
#               nearest Postfix tool: it reads every file)
#   3. flush:   rcptgate queue flush (every message due now, then the
#               trigger; nobody listens here, so it exits 69 as postqueue -f
#               does with Postfix down)            (no peer: postqueue -f only
#               asks a running qmgr to do the work later)
#   4. hold ALL, release ALL                      vs  postsuper -h ALL, -H ALL
#   5. delete ALL (once)                          vs  postsuper -d ALL
# Every list must show all messages (the "in N Requests" line), or the
# run fails. The figures are seconds and ratios; nothing is a target.
# A run on a quiet 2-core VM (ext4, the queues in its cache) gave, for
# 100,000 messages: list 3.6 s (mailq 9.8 s), check 0.5-0.9 s (qshape
# 8.5 s), flush 1.2-1.7 s, hold ALL 2.6 s (postsuper 3.5 s), release ALL
# 1.9 s (1.8 s); delete ALL is bound by the disk (about 5 min for either
# on a busy one).
#
# Knobs (environment): BENCH_QUEUE_MESSAGES (100000), BENCH_REPEAT (3),
# BENCH_QUEUE_FILL (a tmpfs directory to fill rcptgate's spool in;
# default /dev/shm, "" = fill in place), BENCH_QUEUE_DELETE (1; 0 skips
# the deletes, minutes each on a busy disk), BENCH_QUIET_MAX, BENCH_QUIET_WAIT,
# BENCH_KEEP=1 (keep the directory). Exit 0 when every run worked, 1 when
# something failed.

set -u

. "$(cd "$(dirname "$0")" && pwd)/benchlib.sh"


ADMIN=$top_builddir/rcptgate/rcptgate
PUT=$top_builddir/tests/tools/rg_spoolput
POSTFIX=${POSTFIX:-$(command -v postfix || echo /usr/sbin/postfix)}
POSTQUEUE=${POSTQUEUE:-$(command -v postqueue || echo /usr/sbin/postqueue)}
POSTSUPER=${POSTSUPER:-$(command -v postsuper || echo /usr/sbin/postsuper)}
QSHAPE=${QSHAPE:-$(command -v qshape || echo /usr/sbin/qshape)}
SENDMAIL=${SENDMAIL:-/usr/sbin/sendmail}

N=${BENCH_QUEUE_MESSAGES:-100000}
REPEAT=${BENCH_REPEAT:-3}
DELETE=${BENCH_QUEUE_DELETE:-1}
QUIET_MAX=${BENCH_QUIET_MAX:-10}
QUIET_WAIT=${BENCH_QUIET_WAIT:-5}
NOISY=0
missed=0

D=$top_builddir/tests/tmp/bench-queue
CONF=$D/rcptgate.conf
SPOOL=$D/spool
PFC=$D/pfconf
PFQ=$D/pfqueue
FILL_BASE=${BENCH_QUEUE_FILL-/dev/shm}
FILL=
PF_UP=0

die() {
    say "queue.sh: $*" >&2
    [ -s "$D/maillog" ] && tail -n 15 "$D/maillog" >&2
    exit 1
}

pf_stop() {
    if [ "$PF_UP" = 1 ]; then
        "$POSTFIX" -c "$PFC" stop >>"$D/postfix.stderr" 2>&1
        i=0
        while [ -n "${PF_MASTER:-}" ] && kill -0 "$PF_MASTER" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        PF_UP=0
    fi
}

cleanup() {
    pf_stop
    [ -n "$FILL" ] && rm -rf "$FILL"
    if [ "${BENCH_KEEP:-0}" != 1 ]; then
        rm -rf "$D"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

for p in "$ADMIN" "$PUT"; do
    [ -x "$p" ] || die "$p is not built (make rcptgate/rcptgate tests/tools/rg_spoolput)"
done
for p in "$POSTFIX" "$POSTQUEUE" "$POSTSUPER" "$SENDMAIL"; do
    [ -x "$p" ] || die "$p is missing (Debian package postfix)"
done
[ "$(id -u)" = 0 ] || die "needs root (a private Postfix instance)"
command -v python3 >/dev/null || die "needs python3"
if LC_ALL=C grep -aq '__asan_init' "$ADMIN"; then
    say "NOTE: $ADMIN was built with sanitizers: its figures are several times too slow"
fi

rm -rf "$D"
mkdir -p "$D" || die "cannot make $D"
cat >"$CONF" <<EOF
[store]
path = $D/store.db
[syncd]
user =
[smtpd]
queue_directory = $SPOOL
EOF
"$ADMIN" -c "$CONF" domain add bench.example >/dev/null || die "cannot make the store"

# timed LABEL CMD... - run CMD (stdout to $D/out), add the seconds to the list T_LABEL
timed() {
    _lbl=$1
    shift
    quiet
    _t0=$(now)
    "$@" >"$D/out" 2>"$D/err"
    _rc=$?
    _t1=$(now)
    add "T_$_lbl" "$(fmt %.3f "$_t1 - $_t0")"
    return $_rc
}

# requests FILE - the N of the "-- K Kbytes in N Requests." line
requests() {
    tail -n 1 "$1" | sed -n 's/.* in \([0-9]*\) Requests*\.$/\1/p'
}

# ---------------------------------------------------------------- rcptgate's spool
MSG='Subject: queued for the benchmark
From: <sender@example.net>
To: <rcpt@bench.example>
Message-ID: <bench@example.net>

A short message, as most deferred mail is.
'
say "Filling rcptgate's spool with $N messages ..."
t0=$(now)
if [ -n "$FILL_BASE" ] && [ -d "$FILL_BASE" ] && [ -w "$FILL_BASE" ]; then
    FILL=$(mktemp -d "$FILL_BASE/rcptgate-bench.XXXXXX") || die "mktemp in $FILL_BASE"
    printf '%s' "$MSG" | "$PUT" -n "$N" -r "4.4.1 connect to 192.0.2.25[192.0.2.25]:25: Connection refused" \
        "$FILL/spool" sender@example.net rcpt@bench.example >/dev/null || die "rg_spoolput failed"
    cp -a "$FILL/spool" "$SPOOL" || die "cp -a $FILL/spool $SPOOL"
    rm -rf "$FILL"
    FILL=
else
    printf '%s' "$MSG" | "$PUT" -n "$N" -r "4.4.1 connect to 192.0.2.25[192.0.2.25]:25: Connection refused" \
        "$SPOOL" sender@example.net rcpt@bench.example >/dev/null || die "rg_spoolput failed"
fi
say "  done in $(fmt %.1f "$(now) - $t0") s ($(du -sk "$SPOOL" | cut -f1) KiB)"

# ---------------------------------------------------------------- Postfix's queue
say "Filling Postfix's queue with $N messages ..."
t0=$(now)
mkdir -p "$PFC" "$PFQ" "$D/pfdata"
chown postfix "$D/pfdata"
chmod 755 "$D" "$PFQ"
: >"$D/maillog"
chmod 666 "$D/maillog"
cat >"$PFC/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $PFQ
data_directory = $D/pfdata
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
default_transport = smtp
relayhost = [127.0.0.1]:9
defer_transports = smtp
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = $D/maillog
maillog_file_prefixes = $D
syslog_name = postfix-qbench
CF
cat >"$PFC/master.cf" <<CF
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
retry     unix  - - n - - error
smtp      unix  - - n - - smtp
showq     unix  n - n - - showq
postlog   unix-dgram n - n - 1 postlogd
CF
"$POSTFIX" -c "$PFC" check >"$D/postfix.stderr" 2>&1 || die "postfix check failed: $(cat "$D/postfix.stderr")"
"$POSTFIX" -c "$PFC" start >>"$D/postfix.stderr" 2>&1 || die "postfix start failed: $(cat "$D/postfix.stderr")"
PF_UP=1
PF_MASTER=$(tr -d ' ' <"$PFQ/pid/master.pid" 2>/dev/null)
printf '%s' "$MSG" | "$SENDMAIL" -C "$PFC" -f sender@example.net rcpt@bench.example || die "sendmail failed"
TEMPLATE=
i=0
while [ $i -lt 300 ]; do
    TEMPLATE=$(find "$PFQ/deferred" -type f 2>/dev/null | head -n 1)
    [ -n "$TEMPLATE" ] && [ -n "$(find "$PFQ/defer" -type f 2>/dev/null | head -n 1)" ] && break
    sleep 0.1
    i=$((i + 1))
done
pf_stop
[ -n "$TEMPLATE" ] || die "Postfix did not defer the template message"
python3 - "$PFQ" "$TEMPLATE" "$N" <<'PY' || die "copying Postfix's queue file failed"
import os, sys
q, template, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
tid = os.path.basename(template)
sub = os.path.basename(os.path.dirname(template))
assert sub == tid[0], "hash_queue_depth 1 by the id's first character expected"
data = open(template, "rb").read()
reason = open(os.path.join(q, "defer", sub, tid), "rb").read()
st = os.stat(template)
os.unlink(template)
os.unlink(os.path.join(q, "defer", sub, tid))
for i in range(n):
    # distinct 11-digit hex ids (an odd multiplier is a bijection mod 16**11)
    qid = "%011X" % ((i + 1) * 0x9E3779B1 % (16 ** 11))
    for kind, body, mode in (("deferred", data, 0o700), ("defer", reason, 0o600)):
        d = os.path.join(q, kind, qid[0])
        if not os.path.isdir(d):
            os.mkdir(d, 0o700)
            os.chown(d, st.st_uid, st.st_gid)
        p = os.path.join(d, qid)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.write(fd, body)
        os.fchown(fd, st.st_uid, st.st_gid)
        os.close(fd)
PY
say "  done in $(fmt %.1f "$(now) - $t0") s ($(du -sk "$PFQ/deferred" "$PFQ/defer" | awk '{s += $1} END {print s}') KiB)"
sync

# ---------------------------------------------------------------- the runs
say ""
say "Runs ($REPEAT each, median), $N messages in each queue:"
r=1
while [ $r -le "$REPEAT" ]; do
    timed list_rg "$ADMIN" -c "$CONF" queue list || die "rcptgate queue list failed: $(cat "$D/err")"
    [ "$(requests "$D/out")" = "$N" ] || die "rcptgate queue list shows $(requests "$D/out") messages, not $N"
    timed list_pf "$POSTQUEUE" -c "$PFC" -p
    [ "$(requests "$D/out")" = "$N" ] || die "postqueue -p shows $(requests "$D/out") messages, not $N: $(cat "$D/err")"
    timed check_rg "$ADMIN" -c "$CONF" check --no-lookupd --no-smtpd --no-sync
    grep -q "queue: $N deferred" "$D/out" || die "rcptgate check: $(cat "$D/out")"
    if [ -x "$QSHAPE" ]; then
        timed check_pf "$QSHAPE" -c "$PFC" deferred
        grep -q "TOTAL *$N " "$D/out" || die "qshape: $(head -n 3 "$D/out")"
    fi
    timed flush_rg "$ADMIN" -c "$CONF" queue flush
    [ $_rc = 69 ] || die "rcptgate queue flush exited $_rc: $(cat "$D/err")"
    timed hold_rg "$ADMIN" -c "$CONF" queue hold ALL || die "rcptgate queue hold ALL: $(cat "$D/err")"
    grep -q "held $N messages" "$D/err" || die "rcptgate queue hold ALL: $(cat "$D/err")"
    timed hold_pf "$POSTSUPER" -c "$PFC" -h ALL || die "postsuper -h ALL: $(cat "$D/err")"
    timed release_rg "$ADMIN" -c "$CONF" queue release ALL || die "rcptgate queue release ALL: $(cat "$D/err")"
    timed release_pf "$POSTSUPER" -c "$PFC" -H ALL || die "postsuper -H ALL: $(cat "$D/err")"
    r=$((r + 1))
done
if [ "$DELETE" = 1 ]; then
    timed delete_rg "$ADMIN" -c "$CONF" queue delete ALL || die "rcptgate queue delete ALL: $(cat "$D/err")"
    grep -q "deleted $N messages" "$D/err" || die "rcptgate queue delete ALL: $(cat "$D/err")"
    timed delete_pf "$POSTSUPER" -c "$PFC" -d ALL || die "postsuper -d ALL: $(cat "$D/err")"
fi

say ""
printf '  %-40s %10s %10s %8s\n' "seconds (median)" rcptgate postfix ratio
row() {
    eval "_a=\$(median \"\${T_$2_rg:-}\") _b=\$(median \"\${T_$2_pf:-}\")"
    if [ -n "$_b" ]; then
        printf '  %-40s %10s %10s %8s\n' "$1" "$_a" "$_b" "$(fmt %.2f "$_a > 0 ? $_b / $_a : 0")x"
    else
        printf '  %-40s %10s %10s %8s\n' "$1" "$_a" "-" "-"
    fi
}
row "list (rcptgate queue list | mailq)" list
row "check (rcptgate check | qshape deferred)" check
row "flush (every message due now)" flush
row "hold ALL (postsuper -h ALL)" hold
row "release ALL (postsuper -H ALL)" release
[ "$DELETE" = 1 ] && row "delete ALL (postsuper -d ALL, once)" delete
say "  ratio: Postfix's time / rcptgate's (above 1: rcptgate is faster)"
say "  runs: list rcptgate:${T_list_rg} postfix:${T_list_pf}"
[ "$NOISY" -gt 0 ] && say "  ($NOISY runs started on a machine that was not quiet)"
exit 0
