#!/bin/sh
# run.sh - run libFuzzer targets one after the other on their seed corpora
#
#   sh tests/fuzz/run.sh -runs=10000000 SEEDS_DIR tests/fuzz/fuzz_NAME...   (make fuzz-long)
#   sh tests/fuzz/run.sh -max_total_time=10 SEEDS_DIR tests/fuzz/fuzz_NAME...  (make fuzz-short, CI)
#
# Each target fuzz_NAME starts from SEEDS_DIR/NAME (the corpus kept in the
# tree, only read) and a working corpus of its own under $FUZZ_WORK
# (default tests/tmp/fuzz in the build tree), where libFuzzer writes what
# it finds, so the tree's seeds stay small. Prints each target's
# executions and time; a crash stops the run with the target's log and
# the crashing input named, and exits 1. One target at a time: the
# machine's cores are shared. $FUZZ_FLAGS (e.g. -rss_limit_mb=1024) goes to
# every target. The targets' scratch files (a store, a config file written
# at every input) go under $TMPDIR, by default /dev/shm where it is a
# writable tmpfs: on a disk, writeback was a tenth of fuzz_cfg's time.
set -u

if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    TMPDIR=/dev/shm
    export TMPDIR
fi

limit=$1
seeds=$2
shift 2
work=${FUZZ_WORK:-tests/tmp/fuzz}
status=0
for t in "$@"; do
    name=$(basename "$t")
    name=${name#fuzz_}
    mkdir -p "$work/$name" "$work/$name.artifacts" || exit 1
    set -- "$work/$name"
    [ -d "$seeds/$name" ] && set -- "$@" "$seeds/$name"
    log=$work/$name.log
    # shellcheck disable=SC2086 # FUZZ_FLAGS is a list of options
    "$t" "$limit" ${FUZZ_FLAGS:-} -print_final_stats=1 -artifact_prefix="$work/$name.artifacts/" "$@" >"$log" 2>&1
    rc=$?
    done_line=$(grep '^Done [0-9]* runs in' "$log" | tail -1)
    if [ $rc -ne 0 ] || [ -z "$done_line" ]; then
        echo "FAIL fuzz_$name (exit $rc): see $log"
        grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5
        status=1
        continue
    fi
    # "Done 123456 runs in 10 second(s)"
    echo "$done_line" | awk -v n="fuzz_$name" '{
        rate = $5 > 0 ? sprintf("%d/s", $2 / $5) : "under 1 s"
        printf "%-22s %12d executions in %6d s (%s)\n", n, $2, $5, rate }'
done
exit $status
