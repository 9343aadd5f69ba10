#!/bin/sh
# vacuous.sh - prove that the integration tests can fail (make check-vacuous)
#
# A check that passes when its action never happened proves nothing. This
# runs every integration script (the INTEGRATION_TESTS of Makefile.am,
# less the Samba ones, whose fixed ports another run could hold) twice:
#
#   client  every client is a stub that exits at once without connecting:
#           swaks, smtpchat.py, smtp_timed.py, inline Python clients,
#           smtp-source, postmap, rgclient, and rcptgate-syncd (the LDAP
#           and Graph client);
#   daemon  rcptgate-smtpd, rcptgate-lookupd and rcptgate-syncd are a stub
#           that exits with status 1 at start.
#
# A script with nothing of one kind (admin.sh runs no daemon, config.sh
# no client) names the programs to stub in that mode instead, in a line
# "# vacuous MODE: VAR..." (e.g. "# vacuous daemon: RG_ADMIN").
#
# In both modes every script must report a failure: a non-zero exit, a
# "not ok" or a "Bail out!". Passes and skips alone mean that some check
# (or a gate in front of them) cannot fail. Prints, per script and mode,
# how many checks passed, failed and were skipped, and exits 1 if any
# script reported no failure or ran past its time limit.
#
# usage: tests/vacuous.sh [SCRIPT...]   (from the build tree; top_srcdir
# and top_builddir as make check sets them). VACUOUS_LIMIT: seconds per
# script and mode (default 180); VACUOUS_JOBS: scripts at once (default 3; mostly waits).

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$(pwd)}"
export top_srcdir top_builddir
LIMIT=${VACUOUS_LIMIT:-180}

V="$top_builddir/tests/tmp/vacuous"
NC="$V/bin/noclient"
ND="$V/bin/nodaemon"

# run MODE SCRIPT - one script in one mode; prints the summary line, 0 if it failed as it must
run() {
    _out="$V/$(basename "$2" .sh).$1.out"
    _t0=$(date +%s)
    # the script's own additions for this mode
    _stub=$NC
    [ "$1" = daemon ] && _stub=$ND
    _extra=$(sed -n "s/^# vacuous $1: *//p" "$top_srcdir/$2" | tr ' ' '\n' | grep . | sed "s|\$|=$_stub|")
    case $1 in
    client)
        # shellcheck disable=SC2086
        env SWAKS="$NC" SMTPCHAT="$NC" SMTP_TIMED="$NC" PYCLIENT="$NC" SMTP_SOURCE="$NC" \
            POSTMAP="$NC" RG_CLIENT="$NC" RG_SYNCD="$NC" $_extra \
            timeout -k 5 "$LIMIT" sh "$top_srcdir/$2" > "$_out" 2>&1 < /dev/null
        ;;
    daemon)
        # shellcheck disable=SC2086
        env RG_SMTPD="$ND" RG_LOOKUPD="$ND" RG_SYNCD="$ND" $_extra \
            timeout -k 5 "$LIMIT" sh "$top_srcdir/$2" > "$_out" 2>&1 < /dev/null
        ;;
    esac
    _rc=$?
    _secs=$(($(date +%s) - _t0))
    _skip=$(grep -Eci '^ok .*# *skip|^1\.\.0 *# *skip' "$_out")
    _ok=$(($(grep -c '^ok ' "$_out") - $(grep -Eci '^ok .*# *skip' "$_out")))
    _fail=$(grep -c '^not ok ' "$_out")
    _bail=$(grep -c '^Bail out!' "$_out")
    _verdict=failed
    if [ $_rc -eq 124 ] || [ $_rc -eq 137 ]; then
        _verdict="TIMEOUT after ${LIMIT}s"
    elif [ "$_fail" = 0 ] && [ "$_bail" = 0 ] && [ $_rc = 0 ]; then
        _verdict="NO FAILURE REPORTED"
    fi
    printf '%-7s %-40s pass %4d  fail %4d  skip %3d  bail %d  exit %3d  %4ds  %s\n' \
        "$1" "$2" "$_ok" "$_fail" "$_skip" "$_bail" "$_rc" "$_secs" "$_verdict"
}

# The script list: Makefile.am's INTEGRATION_TESTS, without the Samba tests.
if [ "$1" != --one ] && [ $# -eq 0 ]; then
    # shellcheck disable=SC2046 # one word per script path, none has a blank
    set -- $(sed -n '/^INTEGRATION_TESTS = /,/^[^	]/p' "$top_srcdir/Makefile.am" |
        tr -s ' \\\t' '\n' | grep '^tests/.*\.sh$' |
        while read -r s; do
            grep -q 'samba\.sh' "$top_srcdir/$s" || echo "$s"
        done)
fi

if [ "$1" != --one ]; then
    rm -rf "$V"
    mkdir -p "$V/bin"
    # The client stub: says what it is on stderr, talks to nobody.
    cat > "$V/bin/noclient" <<'EOF'
#!/bin/sh
echo "noclient: a stub client that never connects" >&2
exit 1
EOF
    # The daemon stub: exits at start, as a daemon that cannot start would.
    cat > "$V/bin/nodaemon" <<'EOF'
#!/bin/sh
echo "nodaemon: a stub daemon that exits at start" >&2
exit 1
EOF
    chmod 755 "$V/bin/noclient" "$V/bin/nodaemon"
fi

# One script, both modes, one after the other (both use the same test directory).
if [ "$1" = --one ]; then
    run client "$2"
    run daemon "$2"
    exit 0
fi

JOBS=${VACUOUS_JOBS:-3}
start=$(date +%s)
echo "# each script with clients that never connect (client), then with daemons that exit at start (daemon)"
echo "# every script must report a failure in both modes; transcripts in $V/"
echo "# $# scripts, $JOBS at a time, at most ${LIMIT}s each per mode"
for s in "$@"; do
    echo "$s"
done | xargs -P "$JOBS" -I{} sh "$0" --one {} > "$V/summary.unsorted"
# In Makefile.am's order.
for s in "$@"; do
    grep -F " $s " "$V/summary.unsorted"
done | tee "$V/summary"
runs=$(wc -l < "$V/summary" | tr -d ' ')
bad=$(grep -c 'NO FAILURE REPORTED\|TIMEOUT' "$V/summary")
echo "# $runs runs of $# scripts in $(($(date +%s) - start)) s; $bad reported no failure or timed out"
if [ "$runs" != $(($# * 2)) ]; then
    echo "# expected $(($# * 2)) runs"
    exit 1
fi
[ "$bad" = 0 ]
