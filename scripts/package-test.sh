#!/bin/sh
# package-test.sh - install the built rcptgate .deb and check what it promises
#
#   sh scripts/package-test.sh PATH/rcptgate_VERSION_ARCH.deb
#
# Run as root on a Debian 12 machine or in a fresh Debian 12 root where
# systemd is not PID 1 (CI's fresh-root stage): it installs the package
# with apt-get (and Postfix, for postmap; no service is started by
# either), then checks the user, the directories, the conffile with the
# sample's defaults, `rcptgate-lookupd -n`, which units are enabled,
# and that a lookupd started by hand with the unit's ExecStart line as
# the unit's User answers postmap -q for an imported address; then it
# purges the package and checks that the config and the state are gone.
# Prints TAP ("ok N - ...", "not ok N - ...", a plan) and exits non-zero
# on any failure. On a machine where systemd runs, the package's own
# lookupd is already running: stop it first (systemctl stop
# rcptgate-lookupd), since the hand-started one binds the same socket.
set -u

if [ "$(id -u)" != 0 ]; then
    echo "package-test.sh: run as root" >&2
    exit 2
fi
if [ $# != 1 ] || [ ! -f "$1" ]; then
    echo "usage: package-test.sh PATH/rcptgate_VERSION_ARCH.deb" >&2
    exit 2
fi
case $1 in
/*) DEB=$1 ;;
*) DEB=$(pwd)/$1 ;;
esac

n=0
failed=0
# ok STATUS TEXT - one TAP line; STATUS 0 is a pass
ok() {
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        failed=$((failed + 1))
    fi
}
# is GOT WANT TEXT
is() {
    [ "$1" = "$2" ]
    ok $? "$3"
    [ "$1" = "$2" ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"
}
# bail TEXT - a step everything after depends on failed
bail() {
    echo "Bail out! $1"
    exit 1
}

W=$(mktemp -d /tmp/package-test.XXXXXX) || bail "mktemp"
LOOKUPD_PID=""
trap '[ -n "$LOOKUPD_PID" ] && kill "$LOOKUPD_PID" 2>/dev/null; rm -rf "$W"' EXIT
export DEBIAN_FRONTEND=noninteractive

# --- install (Postfix only for postmap: never started)
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=yes
fi
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq > "$W/apt.log" 2>&1 &&
    apt-get install -y -qq --no-install-recommends postfix sqlite3 >> "$W/apt.log" 2>&1
ok $? "postfix installed (for postmap), and sqlite3"
# An older store, as an upgrade finds it: the schema one version back.
DB=/var/lib/rcptgate/rcptgate.db
schema=""
if [ -e "$DB" ]; then
    # as the store's owner, as everything that writes it
    schema=$(runuser -u rcptgate -- sqlite3 "$DB" 'PRAGMA user_version')
    runuser -u rcptgate -- sqlite3 "$DB" "ALTER TABLE source DROP COLUMN settings; PRAGMA user_version = $((schema - 1))"
fi
# --reinstall: the README's command may have installed this very .deb
# before Postfix was here; its postinst must run with Postfix present.
apt-get install -y -qq --no-install-recommends --reinstall "$DEB" >> "$W/apt.log" 2>&1
rc=$?
[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
ok $rc "apt-get install $(basename "$DEB")"
[ $rc = 0 ] || { sed 's/^/# /' "$W/apt.log" | tail -30; bail "the package did not install"; }
is "$(dpkg-query -W -f='${Status}' rcptgate 2>/dev/null)" "install ok installed" "dpkg: rcptgate is installed"
if [ -n "$schema" ]; then
    is "$(sqlite3 "$DB" 'PRAGMA user_version')" "$schema" "the upgrade migrated the store (schema $((schema - 1)) to $schema)"
    is "$(stat -c '%U' "$DB" "$DB-wal" "$DB-shm" 2>/dev/null | sort -u | tr '\n' ' ')" "rcptgate " \
        "... as rcptgate: the store and its WAL files stay its own"
else
    echo "# no store from an earlier install: the migration at upgrade is not tested"
fi

# --- the user and the directories
pw=$(getent passwd rcptgate)
ok $? "user rcptgate exists"
uid=$(echo "$pw" | cut -d: -f3)
ok $([ -n "$uid" ] && [ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ]; echo $?) "rcptgate is a system user (uid $uid)"
is "$(echo "$pw" | cut -d: -f6-7)" "/var/lib/rcptgate:/usr/sbin/nologin" "its home is the state directory, no login shell"
getent group rcptgate > /dev/null
ok $? "group rcptgate exists"
is "$(stat -c '%U:%G %a' /var/lib/rcptgate 2>&1)" "rcptgate:rcptgate 750" "/var/lib/rcptgate: rcptgate's, 0750"
is "$(stat -c '%U:%G' /run/rcptgate 2>&1)" "rcptgate:rcptgate" "/run/rcptgate: rcptgate's"
is "$(stat -c '%U:%G %a' /var/spool/rcptgate 2>&1)" "rcptgate:rcptgate 700" "/var/spool/rcptgate (smtpd's queue): rcptgate's, 0700"
grep -q '^d /var/spool/rcptgate 0700 rcptgate rcptgate' /usr/lib/tmpfiles.d/rcptgate.conf
ok $? "tmpfiles.d makes the queue directory too"
grep -q '^ReadWritePaths=-/var/spool/rcptgate$' /lib/systemd/system/rcptgate-smtpd.service
ok $? "rcptgate-smtpd.service may write its queue (ProtectSystem=strict)"
is "$(stat -c '%U' /var/lib/rcptgate/rcptgate.db 2>&1)" "rcptgate" "an empty store made at install, rcptgate's"
for f in /usr/lib/sysusers.d/rcptgate.conf /usr/lib/tmpfiles.d/rcptgate.conf; do
    [ -s "$f" ]
    ok $? "$f installed"
done

# --- the configuration
dpkg-query -W -f='${Conffiles}\n' rcptgate | grep -q '^ /etc/rcptgate/rcptgate.conf '
ok $? "/etc/rcptgate/rcptgate.conf is a conffile"
cmp -s /etc/rcptgate/rcptgate.conf /usr/share/doc/rcptgate/examples/rcptgate.conf.sample
ok $? "the config is the sample (every key at its default)"
rcptgate-lookupd -n > "$W/n.out" 2>&1
ok $? "rcptgate-lookupd -n passes"
sed 's/^/# /' "$W/n.out"

# --- units: lookupd enabled, smtpd and syncd installed but not enabled
U=/lib/systemd/system
for u in rcptgate-lookupd.service rcptgate-smtpd.service rcptgate-syncd.service \
    rcptgate-syncd-once.service rcptgate-syncd-once.timer; do
    [ -f "$U/$u" ]
    ok $? "unit $u installed"
done
for u in rcptgate-lookupd rcptgate-smtpd rcptgate-syncd; do
    prog=$(sed -n 's/^ExecReload=\([^ ]*\).*/\1/p' "$U/$u.service")
    [ -n "$prog" ] && [ -x "$prog" ]
    ok $? "$u's ExecReload program ($prog) is installed"
done
[ -L /etc/systemd/system/multi-user.target.wants/rcptgate-lookupd.service ]
ok $? "rcptgate-lookupd.service is enabled (multi-user.target.wants)"
for u in multi-user.target.wants/rcptgate-smtpd.service multi-user.target.wants/rcptgate-syncd.service \
    timers.target.wants/rcptgate-syncd-once.timer; do
    [ ! -e "/etc/systemd/system/$u" ] && [ ! -L "/etc/systemd/system/$u" ]
    ok $? "${u#*/} is not enabled"
done

# --- import, then lookupd as its unit starts it, asked by postmap
cat > "$W/recipients" <<EOF
alice@example.com OK
bob@example.com OK
EOF
chmod 0644 "$W/recipients"
chmod 0755 "$W"
# As the store's owner: a root-run admin command could leave root's files beside it.
runuser -u rcptgate -- rcptgate domain add example.com 'smtp:[192.0.2.25]:25' > "$W/admin.out" 2>&1 &&
    runuser -u rcptgate -- rcptgate import "$W/recipients" >> "$W/admin.out" 2>&1
ok $? "rcptgate domain add + import (as rcptgate)"
sed 's/^/# /' "$W/admin.out"

exec_line=$(sed -n 's/^ExecStart=//p' "$U/rcptgate-lookupd.service")
unit_user=$(sed -n 's/^User=//p' "$U/rcptgate-lookupd.service")
is "$exec_line" "/usr/sbin/rcptgate-lookupd -f" "lookupd's ExecStart"
is "$unit_user" "rcptgate" "lookupd's User"
# shellcheck disable=SC2086
setpriv --reuid="$unit_user" --regid="$unit_user" --init-groups $exec_line 2> "$W/lookupd.err" &
LOOKUPD_PID=$!
i=0
while [ ! -S /run/rcptgate/socketmap ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ -S /run/rcptgate/socketmap ]
ok $? "lookupd started by hand as $unit_user listens on /run/rcptgate/socketmap"
# minbase has no ps: the effective uid from /proc
is "$(awk '/^Uid:/ { print $3 }' "/proc/$LOOKUPD_PID/status" 2>&1)" "$(id -u "$unit_user")" "lookupd runs as $unit_user"
is "$(id -nG rcptgate | tr ' ' '\n' | grep -cx postfix)" 1 "postinst put rcptgate in group postfix"
is "$(stat -c '%a %G' /run/rcptgate/socketmap 2>&1)" "660 postfix" \
    "the socket is 0660, group postfix: Postfix's processes may use it, other users may not"
mkdir -p "$W/postfix" && : > "$W/postfix/main.cf"
# As Postfix's processes ask: user and group postfix (root would pass any mode).
pm() { runuser -u postfix -- postmap -c "$W/postfix" "$@"; }
got=$(pm -q alice@example.com socketmap:unix:/run/rcptgate/socketmap:recipients 2> "$W/pm.err")
rc=$?
ok $([ $rc = 0 ] && [ -n "$got" ]; echo $?) "postmap -q alice@example.com as user postfix: found ($got)"
got=$(pm -q example.com socketmap:unix:/run/rcptgate/socketmap:domains 2>> "$W/pm.err")
ok $([ $? = 0 ] && [ -n "$got" ]; echo $?) "postmap -q example.com in domains: found ($got)"
got=$(pm -q nobody@example.com socketmap:unix:/run/rcptgate/socketmap:recipients 2> "$W/pm2.err")
rc=$?
ok $([ $rc = 1 ] && [ -z "$got" ] && [ ! -s "$W/pm2.err" ]; echo $?) \
    "postmap -q nobody@example.com: not found, and no lookup error"
sed 's/^/# postmap: /' "$W/pm.err" "$W/pm2.err"
# The packaged file's [lookupd] has no key set: check must probe lookupd all the same.
got=$(rcptgate check 2>&1)
rc=$?
ok $([ $rc = 0 ] && echo "$got" | grep -q 'lookupd answers'; echo $?) "rcptgate check probes lookupd: $got"
kill -TERM "$LOOKUPD_PID"
wait "$LOOKUPD_PID"
ok $? "lookupd stops on TERM with status 0"
LOOKUPD_PID=""
got=$(rcptgate check 2>&1)
rc=$?
ok $([ $rc = 2 ] && echo "$got" | grep -q 'CRITICAL - lookupd'; echo $?) "rcptgate check with lookupd stopped: $got"
grep -q 'starting: socketmap unix:/run/rcptgate/socketmap' "$W/lookupd.err"
ok $? "lookupd's start line names the installed socket"
[ $? = 0 ] || sed 's/^/# lookupd: /' "$W/lookupd.err"

# --- purge
apt-get purge -y -qq rcptgate > "$W/purge.log" 2>&1
ok $? "apt-get purge rcptgate"
is "$(dpkg-query -W -f='${Status}' rcptgate 2>/dev/null)" "" "dpkg: rcptgate is gone"
for p in /etc/rcptgate /var/lib/rcptgate /usr/sbin/rcptgate-lookupd \
    /etc/systemd/system/multi-user.target.wants/rcptgate-lookupd.service; do
    [ ! -e "$p" ] && [ ! -L "$p" ]
    ok $? "purge removed $p"
done

echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ "$failed" = 0 ]
