#!/bin/sh
# incremental_ad.sh - what an incremental pull costs Samba AD: DirSync and uSNChanged
#
# Run by `make bench-incremental-ad` from the build directory; it builds
# nothing. A private Samba AD DC (tests/lib/samba.sh, one process: -M
# single) holds $BENCH_AD_ENTRIES contacts with a mail address each in
# one OU (default 10,000: Samba takes them over LDAP at a few hundred a
# second). For each way of pulling changes that flavour ad has
# (incremental = dirsync, then incremental = usn), into a fresh store:
#   1. a full pull (rcptgate-syncd --once --force);
#   2. for each count C in $BENCH_AD_CHANGES (default "1 100 1000"): C
#      contacts get a new address (ldapmodify, one batch), then one
#      `--once --incremental` pull.
# Samba has no cn=Monitor; what the directory did is measured as the CPU
# time the Samba process spent during the pull (utime + stime from
# /proc, all its threads) and the entries the pull received (syncd's
# "N objects" and the store's counts), beside the pull's wall time. The
# store is checked after each row to hold exactly the new addresses.
# The target (issue 12): an incremental pull's directory work grows with
# the changes, not with the directory: for C = 1, Samba's CPU for the
# pull is below 10% of a full pull's. Knobs: BENCH_AD_ENTRIES,
# BENCH_AD_CHANGES, BENCH_KEEP=1. Exit 0 target met, 1 failure, 2 missed.

set -u

. "$(cd "$(dirname "$0")" && pwd)/benchlib.sh"

M=${BENCH_AD_ENTRIES:-10000}
CHANGES=${BENCH_AD_CHANGES:-1 100 1000}
QUIET_MAX=${BENCH_QUIET_MAX:-10}
QUIET_WAIT=${BENCH_QUIET_WAIT:-5}
NOISY=0
DOMAIN=test.example.com
MISSED=0

. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"
. "$top_srcdir/tests/lib/samba.sh"

die() {
    bench_die 20 "$*" "$T/syncd.err" "${SAMBA_DIR:-/nonexistent}/ldapmodify.log" "${SAMBA_DIR:-/nonexistent}/samba.log"
}

cleanup() {
    tl_cleanup
    if [ "${BENCH_KEEP:-0}" != 1 ] && [ -n "${T:-}" ]; then
        rm -rf "$T"
    fi
}

# samba_cpu - clock ticks the Samba process has used (all threads)
samba_cpu() {
    awk '{ print $14 + $15 }' "/proc/$SAMBA_PID/stat" 2>/dev/null || echo 0
}

stored() {
    sqlite3 -batch -noheader "$STORE" "SELECT count(*) FROM recipient" 2>/dev/null
}

# received - the objects the last run applied, from syncd's log line
received() {
    sed -n 's/.* \([0-9][0-9]*\) objects.*/\1/p' "$T/syncd.err" | tail -1
}

# change C TAG - C distinct contacts get one more address (one ldapmodify)
change() {
    awk -v c="$1" -v m="$M" -v t="$2" -v ou="$OU" -v d="$DOMAIN" 'BEGIN {
        for (k = 0; k < c; k++) {
            i = (k * 7919 + 13) % m
            printf "dn: CN=c%06d,%s\nchangetype: modify\nadd: proxyAddresses\nproxyAddresses: smtp:c%06d.%s.%d@%s\n\n", i, ou, i, t, k, d
        }
    }' </dev/null >"$T/change.ldif"
    samba_modify "$T/change.ldif" || die "ldapmodify of $1 changes failed"
}

# pull LABEL C ARGS... - one --once run, timed, with Samba's CPU; one report line
pull() {
    label=$1 c=$2
    shift 2
    cpu0=$(samba_cpu)
    t0=$(now)
    syncd_once "$@"
    s=$(calc "$(now) - $t0")
    cpu=$(calc "($(samba_cpu) - $cpu0) / $TICK")
    [ "$rc" = 0 ] || die "rcptgate-syncd --once $* exited $rc"
    say "  $(printf '%-22s %7s %9s %10s %8s' "$label" "$c" "$(received)" "$(fmt %.3f "$cpu")" "$(fmt %.2f "$s")")"
    LAST_CPU=$cpu
}

why=$(samba_missing)
[ -z "$why" ] || die "$why"
command -v sqlite3 >/dev/null 2>&1 || die "sqlite3 (the shell) is missing"

tl_init bench-incremental-ad
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
cp "$CONF" "$T/base.conf"
SYNCD_LIMIT=600

samba_init || die "the Samba domain could not be provisioned"
trap cleanup EXIT
samba_start || die "samba did not start"
OU="OU=Bench,$SAMBA_SUFFIX"
{
    printf 'dn: %s\nobjectClass: organizationalUnit\n\n' "$OU"
    awk -v m="$M" -v ou="$OU" -v d="$DOMAIN" 'BEGIN {
        for (i = 0; i < m; i++)
            printf "dn: CN=c%06d,%s\nobjectClass: contact\nmail: c%06d@%s\n\n", i, ou, i, d
    }' </dev/null
} >"$T/contacts.ldif"
t0=$(now)
samba_add "$T/contacts.ldif" || die "loading $M contacts failed"
LOAD_S=$(calc "$(now) - $t0")

say "rcptgate incremental pull benchmark against Samba AD ($(samba -V 2>/dev/null)), one process,"
say "$M contacts with mail in one OU (loaded over LDAP in $(fmt %.1f "$LOAD_S") s); Samba's CPU = what"
say "the directory did during the pull (ticks of $(fmt %.0f "1000 / $TICK") ms)"

total=$M
for how in dirsync usn; do
    say ""
    say "  incremental = $how"
    say "  $(printf '%-22s %7s %9s %10s %8s' pull changes objects "samba cpu s" "wall s")"
    syncd_conf_reset
    rm -f "$STORE" "$STORE-wal" "$STORE-shm"
    tl_admin domain add "$DOMAIN" >/dev/null 2>&1 || die "rcptgate domain add failed"
    slapd_syncd_conf max_remove_share=100
    samba_source "b$how" "base=$OU" "incremental=$how" "timeout=600s"
    pull "full (--force)" 0 --force
    FULL_CPU=$LAST_CPU
    [ "$(stored)" = "$total" ] || die "the store holds $(stored) recipients after the full pull, not $total"
    for c in $CHANGES; do
        change "$c" "$how$c"
        total=$((total + c))
        pull "incremental" "$c" --incremental
        [ "$(stored)" = "$total" ] || die "the store holds $(stored) recipients after $c changes, not $total"
        if [ "$c" = 1 ] && [ "$(calc "$LAST_CPU > 0.1 * $FULL_CPU + 2 / $TICK")" = 1 ]; then
            MISSED=$((MISSED + 1))
        fi
    done
done

say ""
if [ "$MISSED" -gt 0 ]; then
    say "target missed: an incremental pull of 1 change cost Samba more than 10% of a full pull"
    exit 2
fi
say "target met: an incremental pull of 1 change cost Samba less than 10% of a full pull"
exit 0
