#!/bin/sh
# demo.sh - load the demo recipients, start lookupd, ask it through postmap
#
# Run from the build directory after `make`. Everything lives in ./demo:
# the store, the config, lookupd's socket and pid file. lookupd is left
# running in the background; the last lines say how to stop it.
set -e
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(pwd)
D="$B/demo"
ADMIN="$B/rcptgate/rcptgate"
LOOKUPD="$B/lookupd/rcptgate-lookupd"
[ -x "$ADMIN" ] && [ -x "$LOOKUPD" ] || { echo "demo.sh: run it from the build directory after make" >&2; exit 1; }

if [ -f "$D/lookupd.pid" ]; then
    kill "$(cat "$D/lookupd.pid")" 2>/dev/null || true
    sleep 0.3
fi
rm -rf "$D"
mkdir -p "$D/postfix"
: > "$D/postfix/main.cf"
cat > "$D/rcptgate.conf" <<CONF
# The demo's rcptgate.conf: everything under $D
[store]
path = $D/rcptgate.db

[lookupd]
socketmap = unix:$D/socketmap.sock
policy = unix:$D/policy.sock
user =
pid_file = $D/lookupd.pid
stats_file = $D/lookupd.stats
CONF

run() { echo "\$ $*"; "$@"; }
echo "== load the demo directory"
run "$ADMIN" -c "$D/rcptgate.conf" domain add example.com 'smtp:[10.1.0.2]:25'
run "$ADMIN" -c "$D/rcptgate.conf" domain add example.org 'smtp:[10.1.0.3]:25'
run "$ADMIN" -c "$D/rcptgate.conf" domain add catchall.example.net
run "$ADMIN" -c "$D/rcptgate.conf" import "$top_srcdir/etc/demo-recipients"
run "$ADMIN" -c "$D/rcptgate.conf" static add postmaster@example.com

echo
echo "== start rcptgate-lookupd"
"$LOOKUPD" -c "$D/rcptgate.conf" 2>>"$D/lookupd.log"
i=0
while [ ! -S "$D/socketmap.sock" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
echo "listening on unix:$D/socketmap.sock (pid $(cat "$D/lookupd.pid"))"

echo
echo "== ask it the way Postfix does (postmap -q ... socketmap:unix:...)"
q() {
    printf '%-44s ' "$1 ($2)"
    if out=$(postmap -c "$D/postfix" -q "$1" "socketmap:unix:$D/socketmap.sock:$2" 2>&1); then
        echo "-> $out"
    elif [ -z "$out" ]; then
        echo "-> not found (Postfix: 550 5.1.1 User unknown)"
    else
        echo "-> error: $out"
    fi
}
q alice@example.com recipients
q Alice+newsletter@Example.COM recipients
q carol.jones@example.com recipients
q mallory@example.com recipients
q anyone@catchall.example.net recipients
q postmaster@example.com recipients
q example.com domains
q example.net domains
q example.com transport

echo
echo "== why is an address accepted?"
run "$ADMIN" -c "$D/rcptgate.conf" query Alice+newsletter@Example.COM || true

cat <<MSG

lookupd keeps running. In Postfix's main.cf:
    relay_domains = socketmap:unix:$D/socketmap.sock:domains
    relay_recipient_maps = socketmap:unix:$D/socketmap.sock:recipients
    transport_maps = socketmap:unix:$D/socketmap.sock:transport
Stop it with: kill \$(cat $D/lookupd.pid)
MSG
