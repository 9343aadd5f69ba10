#!/bin/sh
# deps.sh - install what building and testing rcptgate needs (Debian 12, as root)
#
# Postfix is installed for its tools (postmap, smtp-source, smtp-sink) and
# Samba for a private AD domain controller that tests/lib/samba.sh starts
# itself; neither is ever started as a system service: a policy-rc.d that
# refuses service starts is put in place for the install if none exists,
# and removed again afterwards. samba-ad-provision is only a Recommends of
# samba-ad-dc (and recommends are not installed) but provisioning needs it.
# Without recommends, krb5-config is not installed and /etc/krb5.conf is
# left alone; what the tests need of a Recommends is named here instead:
# swaks speaks TLS only with Net::SSLeay and IPv6 only with
# IO::Socket::INET6. python3 runs the tests' SMTP and HTTPS fixtures.
# libsystemd-dev gives the daemons sd_notify; systemd gives the tests
# systemd-analyze (installing it does not make it PID 1).
#
# deps.sh --package installs only what building the Debian package needs
# (debhelper, lintian, and debian/control's Build-Depends through
# apt-get build-dep), not the servers the test suite runs.
set -e
if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: run as root (it uses apt-get)" >&2
    exit 1
fi
if [ "${1:-}" = --package ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends build-essential dpkg-dev debhelper lintian >/dev/null
    cd "$(dirname "$0")/.."
    apt-get build-dep -y -qq --no-install-recommends ./ >/dev/null
    exit 0
fi
# postfix-ldap: Postfix's ldap: table, which `make bench-maps` compares with
# the socketmap (tests/bench/maps.sh).
# prometheus for its promtool (never started either), python3-prometheus-client
# for its OpenMetrics parser, logrotate for `logrotate -d`: check.sh uses them.
PKGS="build-essential autoconf automake pkg-config clang prometheus python3-prometheus-client logrotate \
  libclang-rt-14-dev libsqlite3-dev libevent-dev libinih-dev libidn2-dev libcmocka-dev \
  libldap-dev libsasl2-dev slapd ldap-utils sqlite3 openssl postfix \
  samba-ad-dc samba-ad-provision samba-dsdb-modules ldb-tools \
  libssl-dev libcurl4-openssl-dev libjansson-dev libsasl2-modules libsasl2-modules-gssapi-mit sasl2-bin \
  libc-ares-dev swaks libnet-ssleay-perl libio-socket-inet6-perl \
  fail2ban pflogsumm postfix-lmdb postfix-ldap python3 libsystemd-dev systemd"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=yes
fi
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
exit 0
