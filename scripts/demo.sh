#!/bin/sh
# demo.sh - a demo directory in a private slapd, synced into the store,
# answered by rcptgate-lookupd, asked through Postfix's postmap
#
# Run from the build directory after `make`. Everything lives in ./demo:
# slapd's config and database (an Active Directory look-alike from
# etc/demo-directory.ldif, on a loopback port), the store, rcptgate.conf,
# lookupd's socket. slapd and lookupd are left running; the last lines
# say how to change the directory, sync again, and stop them.
set -e
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(pwd)
D="$B/demo"
ADMIN="$B/rcptgate/rcptgate"
LOOKUPD="$B/lookupd/rcptgate-lookupd"
SYNCD="$B/syncd/rcptgate-syncd"
for p in "$ADMIN" "$LOOKUPD" "$SYNCD"; do
    [ -x "$p" ] || { echo "demo.sh: run it from the build directory after make ($p missing)" >&2; exit 1; }
done
[ -x /usr/sbin/slapd ] || { echo "demo.sh: slapd is not installed (sh scripts/deps.sh)" >&2; exit 1; }

# A previous demo's servers go first.
for pidfile in "$D/lookupd.pid" "$D/slapd/slapd.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
done
sleep 0.3
rm -rf "$D"
mkdir -p "$D/postfix" "$D/slapd/db"
: > "$D/postfix/main.cf"
LDAPCONF=/dev/null
export LDAPCONF

echo "== a demo directory in a private slapd"
cat > "$D/slapd/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include $top_srcdir/tests/fixtures/rcptgate-test.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $D/slapd/slapd.pid
loglevel none
database mdb
suffix "dc=demo,dc=example"
rootdn "cn=admin,dc=demo,dc=example"
rootpw demo-secret
directory $D/slapd/db
CONF
/usr/sbin/slapadd -q -w -f "$D/slapd/slapd.conf" -l "$top_srcdir/etc/demo-directory.ldif"
port=""
for try in 1 2 3 4 5; do
    p=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 10000))
    /usr/sbin/slapd -h "ldap://127.0.0.1:$p/" -f "$D/slapd/slapd.conf" 2>>"$D/slapd/slapd.log" || continue
    i=0
    while [ $i -lt 30 ]; do
        if ldapsearch -x -LLL -H "ldap://127.0.0.1:$p/" -s base -b "" >/dev/null 2>&1; then
            port=$p
            break 2
        fi
        sleep 0.1
        i=$((i + 1))
    done
done
[ -n "$port" ] || { echo "demo.sh: slapd did not start (see $D/slapd/slapd.log)" >&2; exit 1; }
echo "slapd on ldap://127.0.0.1:$port/ with $(grep -c '^dn:' "$top_srcdir/etc/demo-directory.ldif") entries (pid $(cat "$D/slapd/slapd.pid"))"

printf 'demo-secret\n' > "$D/bind.password"
chmod 600 "$D/bind.password"
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

[syncd]
user =
pid_file = $D/syncd.pid

[source corp]
type = ldap
flavour = ad
uri = ldap://127.0.0.1:$port/
base = ou=Users,dc=demo,dc=example
base = ou=Groups,dc=demo,dc=example
bind_dn = cn=admin,dc=demo,dc=example
bind_password_file = $D/bind.password
CONF

run() { echo "\$ $*"; "$@"; }
echo
echo "== the domains we accept mail for, and a static entry"
run "$ADMIN" -c "$D/rcptgate.conf" domain add example.com 'smtp:[10.1.0.2]:25' 2>/dev/null
run "$ADMIN" -c "$D/rcptgate.conf" domain add example.org 'smtp:[10.1.0.3]:25'
run "$ADMIN" -c "$D/rcptgate.conf" static add postmaster@example.com

echo
echo "== sync the directory into the store"
run "$SYNCD" -c "$D/rcptgate.conf" --once

echo
echo "== start rcptgate-lookupd"
"$LOOKUPD" -c "$D/rcptgate.conf" 2>>"$D/lookupd.log"
i=0
while [ ! -S "$D/socketmap.sock" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
echo "listening on unix:$D/socketmap.sock (pid $(cat "$D/lookupd.pid"))"

echo
echo "== ask it the way Postfix does (postmap -q KEY socketmap:unix:...:MAP)"
q() {
    printf '%-40s %-11s ' "$1" "$2"
    if out=$(postmap -c "$D/postfix" -q "$1" "socketmap:unix:$D/socketmap.sock:$2" 2>&1); then
        echo "-> $out"
    elif [ -n "$out" ]; then
        echo "-> error: $out"
    else
        case $2 in
        recipients) echo "-> not found: Postfix answers 550 5.1.1 User unknown" ;;
        domains) echo "-> not found: not a domain we relay for" ;;
        transport) echo "-> not found: Postfix uses its default transport" ;;
        esac
    fi
}
q alice@example.com recipients
q A.Smith+newsletter@Example.COM recipients
q bob@example.org recipients
q carol@example.com recipients
q info@example.com recipients
q sales@example.com recipients
q dave.partner@example.com recipients
q mallory@example.com recipients
q postmaster@example.com recipients
q example.com domains
q example.net domains
q example.com transport

echo
echo "== why is an address accepted, or not?"
run "$ADMIN" -c "$D/rcptgate.conf" query A.Smith+newsletter@Example.COM || true
echo
run "$ADMIN" -c "$D/rcptgate.conf" query carol@example.com || true

cat <<MSG

slapd and lookupd keep running. Change the directory and sync again:
    ldapmodify -x -H ldap://127.0.0.1:$port/ -D cn=admin,dc=demo,dc=example -w demo-secret
    $SYNCD -c $D/rcptgate.conf --once
In Postfix's main.cf:
    relay_domains = socketmap:unix:$D/socketmap.sock:domains
    relay_recipient_maps = socketmap:unix:$D/socketmap.sock:recipients
    transport_maps = socketmap:unix:$D/socketmap.sock:transport
Stop both with: kill \$(cat $D/lookupd.pid) \$(cat $D/slapd/slapd.pid)
MSG
