# testlib.sh - shared helpers for rcptgate's shell tests (TAP output)
#
# Source it from a test: ". "$top_srcdir/tests/lib/testlib.sh"". It gives
# each test a private directory under the build tree, a config file that
# points every socket there, servers started in the background and
# stopped by their recorded pid (also on exit), and TAP helpers.
#
#   tl_init NAME          make $T (the test's directory), write $T/rcptgate.conf
#   tl_start_lookupd      start lookupd -f on $T/socketmap.sock (and policy.sock)
#   tl_stop_lookupd       SIGTERM it and wait for it to go
#   tl_postmap KEY MAP    postmap -q against lookupd: stdout to $T/out, stderr to $T/err
#   tl_shared_dir         $TS: a scratch directory other users can reach (see there)
#   tl_user_dir USER      $UD: a directory in $TS owned by USER (root only), removed at exit
#   tl_ok COND MSG / tl_is GOT WANT MSG / tl_done
#   tl_bail MSG           "Bail out! MSG" and exit 1: the test cannot go on
#                         (a daemon of ours did not start, a fixture failed)
#   tl_missing WHY        a tool that scripts/deps.sh installs is missing
#   tl_need_tool PATH WHAT  an outside tool that scripts/deps.sh installs:
#                         missing is Bail out (SKIP only with
#                         RG_TEST_SKIP_MISSING=1 and CI not true)
#   tl_sanitized BIN      0 if BIN was built with AddressSanitizer
#   tl_no_sanitizer_reports FILE BIN MSG  one check: FILE exists (BIN
#                         ran) and holds no sanitizer report; SKIP with
#                         the reason when BIN has no sanitizers compiled in
#
# The programs are taken from the environment when set (RG_LOOKUPD,
# RG_ADMIN, RG_CLIENT, POSTMAP): `make check-vacuous` (tests/vacuous.sh)
# points them at stubs to prove that the checks can fail.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$(pwd)}"
export top_srcdir top_builddir

RG_LOOKUPD=${RG_LOOKUPD:-"$top_builddir/lookupd/rcptgate-lookupd"}
RG_ADMIN=${RG_ADMIN:-"$top_builddir/rcptgate/rcptgate"}
RG_CLIENT=${RG_CLIENT:-"$top_builddir/tests/tools/rgclient"}
POSTMAP=${POSTMAP:-$(command -v postmap || echo /usr/sbin/postmap)}

tl_n=0
tl_failed=0
tl_pids=""

# tl_init - private directory and config for the test called NAME
tl_init() {
    T="$top_builddir/tests/tmp/$1"
    rm -rf "$T"
    mkdir -p "$T/postfix"
    : > "$T/postfix/main.cf"
    SOCK="$T/socketmap.sock"
    POLICY="$T/policy.sock"
    STORE="$T/store.db"
    CONF="$T/rcptgate.conf"
    cat > "$CONF" <<CONF
[store]
path = $STORE
busy_timeout = 500ms

[syncd]
# The admin command run as root acts as [syncd] user: here it stays root.
user =
pid_file = $T/syncd.pid

[lookupd]
socketmap = unix:$SOCK
policy = unix:$POLICY
user =
pid_file = $T/lookupd.pid
stats_file = $T/lookupd.stats
stats_interval = 1s
CONF
    trap tl_cleanup EXIT
}

# tl_cleanup - stop whatever the test started, remove the shared scratch
tl_cleanup() {
    for p in $tl_pids; do
        kill "$p" 2>/dev/null
    done
    for p in $tl_pids; do
        wait "$p" 2>/dev/null
    done
    tl_pids=""
    if [ -n "${TS:-}" ] && [ -d "$TS" ]; then
        rm -rf "$TS"
        TS=""
    fi
}

# tl_shared_dir - make $TS, a scratch directory for the servers a test runs
# as other users (smtp-sink as nobody, a private Postfix's postfix-owned
# processes). The build tree may sit where they cannot enter (a clone under
# /root is mode 0700), so this lives under $TMPDIR (or /tmp), mode 0711: its
# users can reach what they are told the path of, nobody can list it. It is
# removed with the test's servers; what a test wants to keep it copies to $T.
tl_shared_dir() {
    [ -n "${TS:-}" ] && [ -d "$TS" ] && return 0
    TS=$(mktemp -d "${TMPDIR:-/tmp}/rcptgate-test.XXXXXX") || return 1
    chmod 711 "$TS"
}

# tl_user_dir USER - a fresh directory in the shared scratch owned by USER,
# set in $UD (USER reaches it where it cannot enter the build tree). Needs root.
tl_user_dir() {
    tl_shared_dir || return 1
    UD=$(mktemp -d "$TS/user.XXXXXX") || return 1
    chmod 0755 "$UD" && chown "$1:$(id -gn "$1")" "$UD"
}

# tl_admin - run the admin command on the test's config
tl_admin() {
    "$RG_ADMIN" -c "$CONF" "$@"
}

# tl_wait_socket PATH [PID] - wait up to 5 s for a socket to appear (and PID to live)
tl_wait_socket() {
    i=0
    while [ ! -S "$1" ]; do
        i=$((i + 1))
        [ $i -gt 100 ] && return 1
        if [ -n "$2" ] && ! kill -0 "$2" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
    done
    return 0
}

# tl_wait_grep PATTERN FILE [SECS] - wait up to SECS (5) s for a line
# matching PATTERN (grep -E) in FILE: a daemon logs after its socket
# appears, not before; 1 on timeout
tl_wait_grep() {
    _tl_i=0
    _tl_max=$(( ${3:-5} * 20 ))
    while ! grep -Eq -- "$1" "$2" 2>/dev/null; do
        _tl_i=$((_tl_i + 1))
        [ $_tl_i -gt $_tl_max ] && return 1
        sleep 0.05
    done
    return 0
}

# tl_start_lookupd - start lookupd in the foreground, in the background
tl_start_lookupd() {
    rm -f "$SOCK" "$POLICY"
    "$RG_LOOKUPD" -c "$CONF" -f "$@" 2>>"$T/lookupd.log" &
    LOOKUPD_PID=$!
    tl_pids="$tl_pids $LOOKUPD_PID"
    if ! tl_wait_socket "$SOCK" "$LOOKUPD_PID"; then
        echo "# lookupd did not start:"
        tail -5 "$T/lookupd.log" 2>/dev/null | sed 's/^/#   /'
        return 1
    fi
    return 0
}

# tl_stop_lookupd - SIGTERM lookupd and wait; returns its exit status
tl_stop_lookupd() {
    kill -TERM "$LOOKUPD_PID" 2>/dev/null
    wait "$LOOKUPD_PID"
    rc=$?
    tl_pids=$(echo "$tl_pids" | sed "s/ $LOOKUPD_PID//")
    return $rc
}

# tl_postmap KEY MAP - ask lookupd through Postfix's own socketmap client
tl_postmap() {
    "$POSTMAP" -c "$T/postfix" -q "$1" "socketmap:unix:$SOCK:$2" >"$T/out" 2>"$T/err"
}

tl_ok() {
    tl_n=$((tl_n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $tl_n - $2"
    else
        echo "not ok $tl_n - $2"
        tl_failed=$((tl_failed + 1))
    fi
}

# tl_is GOT WANT MSG
tl_is() {
    tl_n=$((tl_n + 1))
    if [ "$1" = "$2" ]; then
        echo "ok $tl_n - $3"
    else
        echo "not ok $tl_n - $3"
        echo "#   got:  '$1'"
        echo "#   want: '$2'"
        tl_failed=$((tl_failed + 1))
    fi
}

# tl_like GOT PATTERN MSG - grep -E pattern
tl_like() {
    tl_n=$((tl_n + 1))
    if printf '%s\n' "$1" | grep -Eq -- "$2"; then
        echo "ok $tl_n - $3"
    else
        echo "not ok $tl_n - $3"
        echo "#   got:  '$1'"
        echo "#   want match: '$2'"
        tl_failed=$((tl_failed + 1))
    fi
}

# tl_skip_all REASON - skip the whole test (TAP plan 1..0): only for
# something outside the project that is really not there
tl_skip_all() {
    echo "1..0 # SKIP $1"
    exit 0
}

# tl_bail MSG - the test cannot go on: Bail out (a failure, never a skip)
tl_bail() {
    echo "Bail out! $1"
    exit 1
}

# tl_missing WHY - an outside tool that scripts/deps.sh installs is missing:
# Bail out (a broken install), or SKIP with RG_TEST_SKIP_MISSING=1 outside CI
tl_missing() {
    if [ "${RG_TEST_SKIP_MISSING:-}" = 1 ] && [ "${CI:-}" != true ]; then
        tl_skip_all "$1"
    fi
    tl_bail "$1: run scripts/deps.sh (or RG_TEST_SKIP_MISSING=1 outside CI)"
}

# tl_need_tool PATH WHAT - an outside tool that scripts/deps.sh installs.
# Its absence means a broken install, so it fails the test; a developer
# without it may set RG_TEST_SKIP_MISSING=1 to skip instead (never in CI).
tl_need_tool() {
    if [ -x "$1" ] || command -v "$1" >/dev/null 2>&1; then
        return 0
    fi
    tl_missing "$2 is not installed ($1)"
}

# tl_sanitized BIN - 0 if BIN was built with AddressSanitizer
tl_sanitized() {
    [ -f "$1" ] && LC_ALL=C grep -aq '__asan_init' "$1"
}

# tl_no_sanitizer_reports FILE BIN MSG - the sanitizer check of one daemon:
# FILE (its stderr) must exist, since the daemon ran, and hold no report.
# Only a BIN built without sanitizers makes it a SKIP, with that reason.
tl_no_sanitizer_reports() {
    if ! tl_sanitized "$2"; then
        tl_n=$((tl_n + 1))
        echo "ok $tl_n - $3 # SKIP $2 was not built with --enable-sanitizers"
        return 0
    fi
    if [ ! -f "$1" ]; then
        tl_ok 1 "$3 (no stderr of the daemon: $1)"
        return 1
    fi
    if grep -q 'ERROR: AddressSanitizer\|runtime error:\|ERROR: LeakSanitizer' "$1"; then
        tl_ok 1 "$3"
        grep -A20 'ERROR: \|runtime error:' "$1" | sed 's/^/# /' | head -40
        return 1
    fi
    tl_ok 0 "$3"
}

tl_done() {
    echo "1..$tl_n"
    [ "$tl_failed" = 0 ]
}
