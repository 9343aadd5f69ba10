# benchlib.sh - what the benchmark scripts under tests/bench share
#
# Report lines, floating-point arithmetic, reading RESULT lines, waiting
# for a quiet machine, and printing whether a target is met (the
# functions read the script's QUIET_MAX, QUIET_WAIT, NOISY and missed).
#
# Sourced first, as . "$(cd "$(dirname "$0")" && pwd)/benchlib.sh": it
# also finds the build. The programs are under $top_builddir, else the
# current directory when it is a build directory (make bench-* runs
# there), else the tree around the script (an in-tree build); the sources
# under $top_srcdir, else that tree.
if [ -z "${top_builddir:-}" ]; then
    if [ -f ./config.status ]; then
        top_builddir=$(pwd)
    else
        top_builddir=$(cd "$(dirname "$0")/../.." && pwd)
    fi
fi
top_builddir=$(cd "$top_builddir" && pwd)
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
export top_srcdir top_builddir

TICK=$(getconf CLK_TCK)

# say - a line of the report
say() {
    printf '%s\n' "$*"
}

# bench_die N MESSAGE FILE... - give up: the message (after the script's
# name), then the last N lines of each FILE that is not empty; exit 1
bench_die() {
    _bd_n=$1
    say "$(basename "$0"): $2" >&2
    shift 2
    for _bd_f in "$@"; do
        if [ -s "$_bd_f" ]; then
            say "--- last lines of $_bd_f:" >&2
            tail -n "$_bd_n" "$_bd_f" >&2
        fi
    done
    exit 1
}

# now - seconds since the epoch, with nanoseconds
now() {
    date +%s.%N
}

# calc EXPR - floating point arithmetic (and comparisons: 1 or 0)
calc() {
    awk "BEGIN { printf \"%s\", ($1) }" </dev/null
}

# fmt FORMAT EXPR - calc, printed with a printf format
fmt() {
    awk "BEGIN { printf \"$1\", ($2) }" </dev/null
}

# field NAME LINE - value of NAME=... in a RESULT line
field() {
    printf '%s\n' "$2" | sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p"
}

# core_busy N - clock ticks core N has been busy (not idle, not iowait)
core_busy() {
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# all_busy - clock ticks all cores together have been busy
all_busy() {
    _bl_sum=0
    for _bl_c in $(seq 0 $(($(nproc) - 1))); do
        _bl_sum=$((_bl_sum + $(core_busy "$_bl_c")))
    done
    echo "$_bl_sum"
}

# quiet - wait (at most $QUIET_WAIT s) until other work on this machine
# leaves the cores nearly idle: the machine may be shared, and a compile
# next door halves any figure. Says so (and counts it in NOISY) when it
# gives up waiting.
quiet() {
    _bl_waited=0
    while :; do
        _bl_a=$(all_busy)
        sleep 0.5
        _bl_b=$(all_busy)
        # Busy ticks in 0.5 s over all cores, as % of one core.
        _bl_load=$(fmt %.0f "100 * ($_bl_b - $_bl_a) / $TICK / 0.5")
        [ "$_bl_load" -le "$QUIET_MAX" ] && return 0
        if [ "$_bl_waited" -ge $((QUIET_WAIT * 2)) ]; then
            say "  (machine not quiet: other work uses ${_bl_load}% of a core; measuring anyway)"
            NOISY=$((NOISY + 1))
            return 0
        fi
        _bl_waited=$((_bl_waited + 1))
    done
}

# target NAME VALUE CONDITION - print whether a target is met (counted in missed)
target() {
    if [ "$(calc "$3")" = 1 ]; then
        _bl_verdict=met
    else
        _bl_verdict=MISSED
        missed=$((missed + 1))
    fi
    printf '  %-44s %10s   %s\n' "$1" "$2" "$_bl_verdict"
}

# stop_pid PID - SIGTERM one process we started and wait for it
stop_pid() {
    if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
        kill -TERM "$1" 2>/dev/null
        wait "$1" 2>/dev/null
    fi
}

# best LIST / median LIST - of numbers separated by blanks
best() {
    printf '%s\n' $1 | sort -g | tail -n 1
}
median() {
    printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# add VAR VALUE - append VALUE to the blank-separated list in VAR
add() {
    eval "$1=\"\${$1:-} $2\""
}
