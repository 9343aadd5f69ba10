#!/bin/sh
# golden.sh - the lookup rules, query by query
#
# Builds the store described by rules.setup with the admin command, starts
# lookupd, sends every line of rules.in as one socketmap request (all on
# one connection, pipelined) and compares the replies with rules.ref,
# line by line. One TAP result per query, so a failure names the query.
. "$top_srcdir/tests/lib/testlib.sh"
tl_init golden
G="$top_srcdir/tests/golden"

grep -v '^#' "$G/rules.setup" | grep . | sed "s|@DIR@|$G|g" | while IFS= read -r line; do
    # shellcheck disable=SC2086
    eval "tl_admin $line" >>"$T/setup.log" 2>&1 || echo "setup failed: $line" >>"$T/setup.err"
done
if [ -s "$T/setup.err" ]; then
    cat "$T/setup.err" "$T/setup.log" | sed 's/^/# /'
    echo "not ok 1 - store setup"
    echo "1..1"
    exit 1
fi
tl_start_lookupd || { echo "not ok 1 - lookupd started"; echo "1..1"; exit 1; }

"$RG_CLIENT" "unix:$SOCK" < "$G/rules.in" > "$T/replies" 2>"$T/client.err"
tl_stop_lookupd

n=$(wc -l < "$G/rules.in")
got=$(wc -l < "$T/replies")
tl_is "$got" "$n" "one reply per query"
paste -d '\t' "$G/rules.in" "$T/replies" > "$T/result"
# Compare with the reference as it was: with RG_GOLDEN_WRITE the new one
# is written, but every line that changed is still reported (review it).
cp "$G/rules.ref" "$T/rules.ref.before"
if [ -n "$RG_GOLDEN_WRITE" ]; then
    cp "$T/result" "$G/rules.ref"
fi
i=0
while IFS= read -r want; do
    i=$((i + 1))
    have=$(sed -n "${i}p" "$T/result")
    q=$(printf '%s' "$want" | cut -f1 | cut -c1-60)
    tl_is "$have" "$want" "$q"
done < "$T/rules.ref.before"
tl_done
