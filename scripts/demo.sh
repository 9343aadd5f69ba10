#!/bin/sh
# demo.sh - a demo directory in a private slapd, synced into the store,
# answered by rcptgate-lookupd, asked through Postfix's postmap, and
# rcptgate-smtpd as the MX in front of an internal mail server
#
# Run from the build directory after `make`. Everything lives in ./demo:
# slapd's config and database (an Active Directory look-alike from
# etc/demo-directory.ldif, on a loopback port), the store, rcptgate.conf,
# lookupd's socket, Postfix's smtp-sink standing in for the internal mail
# server (it keeps each message it takes in ./demo/sink), rcptgate-smtpd
# and its log. The servers are left running; the last lines say how to
# change the directory, sync again, and stop them.
set -e
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(pwd)
D="$B/demo"
ADMIN="$B/rcptgate/rcptgate"
LOOKUPD="$B/lookupd/rcptgate-lookupd"
SYNCD="$B/syncd/rcptgate-syncd"
SMTPD="$B/smtpd/rcptgate-smtpd"
SMTP_SINK=/usr/sbin/smtp-sink
for p in "$ADMIN" "$LOOKUPD" "$SYNCD" "$SMTPD"; do
    [ -x "$p" ] || { echo "demo.sh: run it from the build directory after make ($p missing)" >&2; exit 1; }
done
[ -x /usr/sbin/slapd ] || { echo "demo.sh: slapd is not installed (sh scripts/deps.sh)" >&2; exit 1; }
for p in "$SMTP_SINK" swaks; do
    command -v "$p" >/dev/null || { echo "demo.sh: $p is not installed (sh scripts/deps.sh)" >&2; exit 1; }
done

# A previous demo's servers go first; wait (5 s at most) until they are gone.
pids=""
for pidfile in "$D/smtpd.pid" "$D/sink.pid" "$D/lookupd.pid" "$D/slapd/slapd.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then pids="$pids $pid"; fi
done
i=0
for pid in $pids; do
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
done
# The sink's messages may live outside ./demo (see below).
if [ -L "$D/sink" ]; then
    case $(readlink "$D/sink") in
    /tmp/rcptgate-demo-sink.*) rm -rf "$(readlink "$D/sink")" ;;
    esac
fi
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
for _ in 1 2 3 4 5; do
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

echo
echo "== the internal mail server: Postfix's smtp-sink, keeping each message in $D/sink"
# As root smtp-sink must drop to a user (-u nobody), who must be able to
# write there; a build tree under /root is out of nobody's reach, so the
# messages then go to a directory in /tmp that ./demo/sink points to.
sink_user=""
sink_dir="$D/sink"
mkdir -p "$sink_dir"
if [ "$(id -u)" = 0 ]; then
    sink_user="-u nobody"
    chown nobody "$sink_dir"
    if ! runuser -u nobody -- test -w "$sink_dir" 2>/dev/null; then
        rmdir "$sink_dir"
        sink_dir=$(mktemp -d /tmp/rcptgate-demo-sink.XXXXXX)
        chown nobody "$sink_dir"
        ln -s "$sink_dir" "$D/sink"
    fi
fi
sink_port=""
for _ in 1 2 3 4 5; do
    p=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 10000))
    # shellcheck disable=SC2086
    nohup "$SMTP_SINK" $sink_user -d "$sink_dir/%M." "127.0.0.1:$p" 100 </dev/null >>"$D/sink.log" 2>&1 &
    echo $! > "$D/sink.pid"
    i=0
    while [ $i -lt 30 ] && kill -0 "$(cat "$D/sink.pid")" 2>/dev/null; do
        if swaks --server "127.0.0.1:$p" --quit-after connect --hide-all >/dev/null 2>&1; then
            sink_port=$p
            break 2
        fi
        sleep 0.1
        i=$((i + 1))
    done
    kill "$(cat "$D/sink.pid")" 2>/dev/null || true
done
[ -n "$sink_port" ] || { echo "demo.sh: smtp-sink did not start (see $D/sink.log)" >&2; exit 1; }
echo "smtp-sink on 127.0.0.1:$sink_port (pid $(cat "$D/sink.pid"))"

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

[rules]
# The demo's client at 127.0.0.1 is an outsider: only 127.0.0.2 may relay.
mynetworks = 127.0.0.2/32
hostname = mx.example.com

[smtpd]
# Port 25 in real life; there is no DNS here.
listen = 127.0.0.1:$((port + 1))
user =
pid_file = $D/smtpd.pid
stats_file = $D/smtpd.stats
log_file = $D/smtpd.maillog
# Mail smtpd takes while the inside is down waits here (relay_mode
# proxy-then-queue, the default); in real life /var/spool/rcptgate.
queue_directory = $D/queue
minimal_backoff_time = 5s
reverse_lookup = no
reject_unknown_sender_domain = off

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
echo "== the domains we accept mail for, with their next hop (here: smtp-sink), and a static entry"
run "$ADMIN" -c "$D/rcptgate.conf" domain add example.com "smtp:[127.0.0.1]:$sink_port" 2>/dev/null
run "$ADMIN" -c "$D/rcptgate.conf" domain add example.org "smtp:[127.0.0.1]:$sink_port"
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

echo
echo "== start rcptgate-smtpd, the MX, relaying to smtp-sink"
smtpd_port=""
for _ in 1 2 3 4 5; do
    p=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 10000))
    sed -i "s/^listen = 127\.0\.0\.1:.*/listen = 127.0.0.1:$p/" "$D/rcptgate.conf"
    # It binds, then detaches; the pid file appears once it serves.
    "$SMTPD" -c "$D/rcptgate.conf" 2>>"$D/smtpd.stderr" || continue
    i=0
    while [ ! -s "$D/smtpd.pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    [ -s "$D/smtpd.pid" ] && { smtpd_port=$p; break; }
done
[ -n "$smtpd_port" ] || { echo "demo.sh: rcptgate-smtpd did not start (see $D/smtpd.stderr, $D/smtpd.maillog)" >&2; exit 1; }
echo "listening on 127.0.0.1:$smtpd_port (pid $(cat "$D/smtpd.pid")), log lines in $D/smtpd.maillog"

echo
echo "== send it mail with swaks, from 127.0.0.1 (not in mynetworks)"
# send_to TO: one transaction; of swaks's transcript only MAIL, RCPT, DATA,
# the final dot and their replies (swaks exits non-zero on a rejection)
send_to() {
    echo "\$ swaks --server 127.0.0.1:$smtpd_port --ehlo client.example.net --from sender@example.net --to $1"
    _out=$(swaks --server "127.0.0.1:$smtpd_port" --ehlo client.example.net \
        --from sender@example.net --to "$1" 2>&1) || true
    printf '%s\n' "$_out" | awk '
        /^ -> (MAIL|RCPT|DATA|\.$)/ { show = 1; print "    " $0; next }
        /^ -> / { show = 0; next }
        /^(<-|<\*\*) / && show { print "    " $0 }'
}
sinkcount() { find "$D/sink/" -type f | wc -l | tr -d ' '; }
echo "-- alice is in the directory: accepted, relayed; the 250 after the dot is smtp-sink's"
send_to alice@example.com
n=$(sinkcount)
[ "$n" -gt 0 ] || { echo "demo.sh: nothing reached smtp-sink (see $D/smtpd.maillog, $D/sink.log)" >&2; exit 1; }
echo "smtp-sink holds $n message(s); the Received: header rcptgate-smtpd added:"
grep -h -A2 '^Received: from client\.example\.net' "$D"/sink/* | sed 's/^/    /'
echo "-- mallory is not: refused at RCPT, before any DATA"
send_to mallory@example.com
echo "-- example.net is not our domain, and 127.0.0.1 may not relay"
send_to someone@example.net
echo "smtp-sink still holds $(sinkcount) message(s)"

echo
echo "== the inside goes down: smtpd keeps the mail and delivers it later"
kill "$(cat "$D/sink.pid")" 2>/dev/null
i=0
while swaks --server "127.0.0.1:$sink_port" --quit-after connect --hide-all >/dev/null 2>&1 && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
before=$(sinkcount)
echo "-- smtp-sink is stopped; alice's next mail is queued, and the 250 says so"
send_to alice@example.com
run "$ADMIN" -c "$D/rcptgate.conf" queue list || true
echo "-- smtp-sink comes back; 'rcptgate queue flush' asks smtpd to try now"
# shellcheck disable=SC2086
nohup "$SMTP_SINK" $sink_user -d "$sink_dir/%M." "127.0.0.1:$sink_port" 100 </dev/null >>"$D/sink.log" 2>&1 &
echo $! > "$D/sink.pid"
i=0
until swaks --server "127.0.0.1:$sink_port" --quit-after connect --hide-all >/dev/null 2>&1 || [ $i -ge 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
run "$ADMIN" -c "$D/rcptgate.conf" queue flush || true
i=0
while [ "$(sinkcount)" -le "$before" ] && [ $i -lt 150 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ "$(sinkcount)" -gt "$before" ] || { echo "demo.sh: the queued message did not reach smtp-sink (see $D/smtpd.maillog)" >&2; exit 1; }
echo "smtp-sink now holds $(sinkcount) message(s)"
run "$ADMIN" -c "$D/rcptgate.conf" queue list || true

echo
echo "== what smtpd logged, in Postfix's format ($D/smtpd.maillog)"
sleep 0.2
grep -E 'NOQUEUE: reject|: (client|from|to)=|: removed|status=deferred' "$D/smtpd.maillog" | sed 's/^/    /' || true

cat <<MSG

slapd, lookupd, smtp-sink and smtpd keep running. Change the directory and sync again:
    ldapmodify -x -H ldap://127.0.0.1:$port/ -D cn=admin,dc=demo,dc=example -w demo-secret
    $SYNCD -c $D/rcptgate.conf --once
In Postfix's main.cf:
    relay_domains = socketmap:unix:$D/socketmap.sock:domains
    relay_recipient_maps = socketmap:unix:$D/socketmap.sock:recipients
    transport_maps = socketmap:unix:$D/socketmap.sock:transport
Send mail through the MX yourself:
    swaks --server 127.0.0.1:$smtpd_port --ehlo client.example.net --from you@example.net --to bob@example.org
Stop everything with:
    kill \$(cat $D/smtpd.pid) \$(cat $D/sink.pid) \$(cat $D/lookupd.pid) \$(cat $D/slapd/slapd.pid)
MSG
