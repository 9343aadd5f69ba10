#!/bin/sh
# incremental.sh - what an incremental pull costs the directory
#
# Run by `make bench-incremental` from the build directory; it builds
# nothing. A private slapd (tests/lib/slapd.sh, generic flavour: N
# inetOrgPerson entries with one mail each, syncprov) also serves its
# cn=Monitor database, whose counters say what the server did: searches
# completed, entries sent, bytes sent. For a directory of
# $BENCH_INCR_ENTRIES entries (default 1,000,000) the report gives, as
# the server counted them:
#   1. a full pull (rcptgate-syncd --once --force): paged search of all;
#   2. for each count C in $BENCH_INCR_CHANGES (default "1 100 10000"):
#      C entries get one more address (ldapmodify, one batch), then one
#      incremental pull (rcptgate-syncd --once --incremental: an RFC 4533
#      refreshOnly search from the stored cookie);
#   3. the same counts with mode = persistent: the running daemon's
#      refreshAndPersist search receives them.
# Each row checks that the store then holds exactly the new addresses,
# and the report prints entries sent per change. The target (issue 12):
# an incremental pull's directory work grows with the changes, not with
# the directory: entries sent <= C + 10 for every row. The monitor reads
# themselves are counted once (two reads back to back) and subtracted.
#
# syncprov keeps a session log of the last $BENCH_INCR_SESSIONLOG changes
# (default 20000, above the largest batch): a cookie older than that can
# only be resumed by the present phase, which lists every entry's UUID.
# Knobs: BENCH_INCR_ENTRIES, BENCH_INCR_CHANGES, BENCH_INCR_SESSIONLOG,
# BENCH_KEEP=1 (keep the directory). Exit 0 when the target is met, 1
# when something failed, 2 when the runs worked but the target was missed.

set -u

. "$(cd "$(dirname "$0")" && pwd)/benchlib.sh"

N=${BENCH_INCR_ENTRIES:-1000000}
CHANGES=${BENCH_INCR_CHANGES:-1 100 10000}
SESSIONLOG=${BENCH_INCR_SESSIONLOG:-20000}
QUIET_MAX=${BENCH_QUIET_MAX:-10}
QUIET_WAIT=${BENCH_QUIET_WAIT:-5}
NOISY=0
DOMAIN=bench.example
SYNCD_PID=
MISSED=0

. "$top_srcdir/tests/lib/testlib.sh"
# The refresh from a cookie is not paged: the account's limit must hold it.
SLAPD_SIZELIMIT=${SLAPD_SIZELIMIT:-100000}
. "$top_srcdir/tests/lib/slapd.sh"

die() {
    bench_die 20 "$*" "$T/syncd.err" "$T/daemon.err" "${SLAPD_DIR:-/nonexistent}/slapd.log" \
        "${SLAPD_DIR:-/nonexistent}/slapadd.log" "${SLAPD_DIR:-/nonexistent}/ldapmodify.log"
}

stop_syncd() {
    if [ -n "$SYNCD_PID" ]; then
        kill -TERM "$SYNCD_PID" 2>/dev/null
        wait "$SYNCD_PID" 2>/dev/null
        SYNCD_PID=
    fi
}

cleanup() {
    stop_syncd
    slapd_resume
    tl_cleanup
    if [ "${BENCH_KEEP:-0}" != 1 ] && [ -n "${T:-}" ]; then
        rm -rf "$T"
    fi
}

# stored - recipients in the store
stored() {
    sqlite3 -batch -noheader "$STORE" "SELECT count(*) FROM recipient" 2>/dev/null
}

# counters - "searches entries bytes" from cn=Monitor, as the root DN
counters() {
    ldapsearch -x -LLL -o ldif-wrap=no -H "$SLAPD_URI" -D "$SLAPD_ROOTDN" -w "$SLAPD_ROOTPW" \
        -b cn=Monitor '(|(cn=Search)(cn=Entries)(cn=Bytes))' monitorOpCompleted monitorCounter \
        2>>"$T/monitor.err" | awk '
        /^dn: cn=Search,cn=Operations,cn=Monitor/ { w = "s" }
        /^dn: cn=Entries,cn=Statistics,cn=Monitor/ { w = "e" }
        /^dn: cn=Bytes,cn=Statistics,cn=Monitor/ { w = "b" }
        /^monitorOpCompleted:/ && w == "s" { s = $2 }
        /^monitorCounter:/ && w == "e" { e = $2 }
        /^monitorCounter:/ && w == "b" { b = $2 }
        END { if (s == "" || e == "" || b == "") exit 1; print s, e, b }'
}

# delta BEFORE AFTER - what happened between two counters readings, less one read's own share
delta() {
    echo "$1 $2 $OVERHEAD" | awk '{ printf "%d %d %d", $4 - $1 - $7, $5 - $2 - $8, $6 - $3 - $9 }'
}

# change C TAG - C distinct entries get one more address each (one ldapmodify)
change() {
    awk -v c="$1" -v n="$N" -v t="$2" -v s="$SLAPD_SUFFIX" -v d="$DOMAIN" 'BEGIN {
        for (k = 0; k < c; k++) {
            u = sprintf("u%07d", (k * 7919 + 13) % n)
            printf "dn: uid=%s,ou=People,%s\nchangetype: modify\nadd: mail\nmail: %s.%s.%d@%s\n\n", u, s, t, u, k, d
        }
    }' </dev/null >"$T/change.ldif"
    slapd_modify "$T/change.ldif" || die "ldapmodify of $1 changes failed"
}

# row LABEL C DELTA SECONDS - one line of the report; checks the target
row() {
    set -- "$1" "$2" $3 "$4"
    per="-"
    [ "$2" -gt 0 ] && per=$(fmt %.2f "$4 / $2")
    say "  $(printf '%-34s %7s %9s %7s %12s %8s %7s' "$1" "$2" "$4" "$per" "$5" "$3" "$(fmt %.2f "$6")")"
    if [ "$2" -gt 0 ] && [ "$4" -gt $(($2 + 10)) ]; then
        MISSED=$((MISSED + 1))
    fi
}

why=$(slapd_missing)
[ -z "$why" ] || die "$why"
command -v sqlite3 >/dev/null 2>&1 || die "sqlite3 (the shell) is missing"

tl_init bench-incremental
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

slapd_init "" || die "slapd_init failed"
trap cleanup EXIT
sed -i 's/^maxsize .*/maxsize 8589934592/; s/^syncprov-sessionlog .*/syncprov-sessionlog '"$SESSIONLOG"'/' \
    "$SLAPD_DIR/slapd.conf"
cat >>"$SLAPD_DIR/slapd.conf" <<EOF

database monitor
access to * by dn.exact="$SLAPD_ROOTDN" read by * none
EOF
awk -v n="$N" -v s="$SLAPD_SUFFIX" -v d="$DOMAIN" 'BEGIN {
    printf "dn: ou=People,%s\nobjectClass: organizationalUnit\nou: People\n\n", s
    for (i = 0; i < n; i++) {
        u = sprintf("u%07d", i)
        printf "dn: uid=%s,ou=People,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nmail: %s@%s\n\n", u, s, u, u, u, u, d
    }
}' </dev/null >"$T/entries.ldif" || die "cannot write the LDIF"
t0=$(now)
"$SLAPADD" -f "$SLAPD_DIR/slapd.conf" -q -w -l "$T/entries.ldif" >>"$SLAPD_DIR/slapadd.log" 2>&1 ||
    die "slapadd of $N entries failed"
rm -f "$T/entries.ldif"
LOAD_S=$(calc "$(now) - $t0")
slapd_start || die "slapd did not start"

a=$(counters) || die "cannot read cn=Monitor (see $T/monitor.err)"
b=$(counters) || die "cannot read cn=Monitor"
OVERHEAD=$(echo "$a $b" | awk '{ print $4 - $1, $5 - $2, $6 - $3 }')

cp "$CONF" "$T/base.conf"
slapd_syncd_conf "poll_interval=1h" "full_interval=24h" "retry_interval=1s"
slapd_source ldap generic "base=ou=People,$SLAPD_SUFFIX" "timeout=600s"
tl_admin domain add "$DOMAIN" >/dev/null 2>&1 || die "rcptgate domain add failed"

say "rcptgate incremental pull benchmark: generic flavour, private slapd (mdb, syncprov,"
say "session log $SESSIONLOG), $N entries (slapadd: $(fmt %.1f "$LOAD_S") s); the directory's work as its"
say "cn=Monitor counted it (one monitor read's own share, $OVERHEAD, subtracted)"
say ""
say "  $(printf '%-34s %7s %9s %7s %12s %8s %7s' "pull" changes "entries" "per chg" "bytes" searches "wall s")"

before=$(counters) || die "cannot read cn=Monitor"
t0=$(now)
"$RG_SYNCD" -c "$CONF" --once --force >"$T/syncd.out" 2>"$T/syncd.err" || die "the full pull failed"
s=$(calc "$(now) - $t0")
after=$(counters) || die "cannot read cn=Monitor"
[ "$(stored)" = "$N" ] || die "the store holds $(stored) recipients after the full pull, not $N"
row "full pull (--once --force)" 0 "$(delta "$before" "$after")" "$s"
FULL=$(delta "$before" "$after" | awk '{ print $2 }')

total=$N
for c in $CHANGES; do
    change "$c" "poll$c"
    total=$((total + c))
    before=$(counters) || die "cannot read cn=Monitor"
    t0=$(now)
    "$RG_SYNCD" -c "$CONF" --once --incremental >"$T/syncd.out" 2>>"$T/syncd.err" ||
        die "the incremental pull after $c changes failed"
    s=$(calc "$(now) - $t0")
    after=$(counters) || die "cannot read cn=Monitor"
    [ "$(stored)" = "$total" ] || die "the store holds $(stored) recipients after $c changes, not $total"
    row "incremental, poll (--incremental)" "$c" "$(delta "$before" "$after")" "$s"
done

# mode = persistent: the daemon holds a refreshAndPersist search open
cp "$T/base.conf" "$CONF"
slapd_syncd_conf "poll_interval=1h" "full_interval=24h" "retry_interval=1s"
slapd_source ldap generic "base=ou=People,$SLAPD_SUFFIX" "mode=persistent" "timeout=600s"
"$RG_SYNCD" -c "$CONF" -f >>"$T/daemon.out" 2>>"$T/daemon.err" &
SYNCD_PID=$!
i=0
until grep -q 'persistent search (RFC 4533' "$T/daemon.err" 2>/dev/null; do
    kill -0 "$SYNCD_PID" 2>/dev/null || die "rcptgate-syncd -f exited"
    i=$((i + 1))
    [ $i -gt 1200 ] && die "rcptgate-syncd did not start its persistent search within 120 s"
    sleep 0.1
done
for c in $CHANGES; do
    before=$(counters) || die "cannot read cn=Monitor"
    t0=$(now)
    change "$c" "persist$c"
    total=$((total + c))
    i=0
    until [ "$(stored)" = "$total" ]; do
        kill -0 "$SYNCD_PID" 2>/dev/null || die "rcptgate-syncd -f exited"
        i=$((i + 1))
        [ $i -gt 6000 ] && die "the store holds $(stored) recipients 600 s after $c changes, not $total"
        sleep 0.1
    done
    s=$(calc "$(now) - $t0")
    after=$(counters) || die "cannot read cn=Monitor"
    row "incremental, persistent" "$c" "$(delta "$before" "$after")" "$s"
done
stop_syncd

say ""
say "  (wall s: the pull's own time for --once; for persistent, from the start of"
say "  ldapmodify to the last change in the store)"
if [ "$MISSED" -gt 0 ]; then
    say "target missed: $MISSED rows sent more than changes + 10 entries (the full pull sent $FULL)"
    exit 2
fi
say "target met: every incremental pull sent at most changes + 10 entries (the full pull sent $FULL)"
exit 0
