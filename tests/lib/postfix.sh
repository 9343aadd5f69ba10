# postfix.sh - a private Postfix instance as a downstream in shell tests
#
# Source after testlib.sh and smtpd.sh (for sm_port), and call tl_init first. The instance lives in
# $TS/pf (its own main.cf/master.cf, queue, data directory and log file; in
# the shared scratch of tl_shared_dir, since Postfix's processes run as
# postfix and may not enter the build tree; pf_stop copies the log to $T),
# listens only on 127.0.0.1:$PF_PORT, trusts loopback for XFORWARD and
# relaying, and hands every message to a local smtp-sink (pf_start with a
# sink port) or to the discard transport.
#
#   pf_init [SINKPORT]    write the instance's config; PF_PORT is picked.
#                         Set PF_TLS_CERT/PF_TLS_KEY before to offer STARTTLS.
#   pf_start              postfix -c DIR check, then start; wait for the port
#   pf_stop               postfix -c DIR stop, and wait for the master to go
#   pf_log                the instance's log ($PF_LOG) on stdout
#   pf_accepted           how many messages it queued
#
# The same instance as the gateway in front (the role rcptgate's README
# gives Postfix), instead of pf_init:
#
#   pf_gateway_init       the directories, PF_PORT and PF_LOG
#   pf_gateway_conf FILE...  main.cf: the instance's own settings (below),
#                         then the main.cf lines in FILE... as they are.
#                         Between pf_stop and pf_start to change variant.
#
# The gateway's own settings: no local delivery, mynetworks 127.0.0.2/32
# (a client at 127.0.0.1 is an outsider, as on the Internet), Postfix's
# default relay restrictions, and mail for a relay domain that no
# transport_maps entry routes bounced at once by relay_transport (logged
# "status=bounced (no next hop from transport_maps)") instead of going to
# DNS; bounces themselves are discarded.
#
# After pf_init or pf_gateway_init: PF_DIR, PF_PORT, PF_LOG.

POSTFIX=${POSTFIX:-$(command -v postfix || echo /usr/sbin/postfix)}

# pf_wait_port PORT - wait up to 10 s for a listener on 127.0.0.1:PORT
pf_wait_port() {
    _pf_i=0
    while ! python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
        "$1" 2>/dev/null; do
        _pf_i=$((_pf_i + 1))
        [ $_pf_i -gt 200 ] && return 1
        sleep 0.05
    done
    return 0
}

# pf_dirs - PF_DIR, PF_PORT, PF_LOG and the instance's directories
pf_dirs() {
    tl_shared_dir || return 1
    PF_DIR="$TS/pf"
    PF_PORT=$(sm_port)
    PF_LOG="$PF_DIR/maillog"
    mkdir -p "$PF_DIR/queue" "$PF_DIR/data"
    chown postfix "$PF_DIR/data" 2>/dev/null
    chmod 755 "$PF_DIR" "$PF_DIR/queue"
    : > "$PF_LOG"
    chmod 666 "$PF_LOG"
}

# pf_listening PORT - 0 when something listens on 127.0.0.1:PORT now
pf_listening() {
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
        "$1" 2>/dev/null
}

# pf_init [SINKPORT] - the private instance's configuration
pf_init() {
    pf_dirs || return 1
    if [ -n "$1" ]; then
        _pf_deliver="relayhost = [127.0.0.1]:$1
default_transport = smtp"
    else
        _pf_deliver="default_transport = discard"
    fi
    cat > "$PF_DIR/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $PF_DIR/queue
data_directory = $PF_DIR/data
mail_owner = postfix
setgid_group = postdrop
myhostname = downstream.test
mydomain = downstream.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = all
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_authorized_xforward_hosts = 127.0.0.0/8
smtp_tls_security_level = none
$_pf_deliver
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = $PF_LOG
maillog_file_prefixes = $TS
smtpd_banner = \$myhostname ESMTP
smtp_connect_timeout = 5s
master_service_disable = pickup
CF
    if [ -n "$PF_TLS_CERT" ]; then
        cat >> "$PF_DIR/main.cf" <<CF
smtpd_tls_security_level = may
smtpd_tls_cert_file = $PF_TLS_CERT
smtpd_tls_key_file = $PF_TLS_KEY
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
CF
    fi
    pf_master_cf
}

# pf_master_cf - master.cf: every service unchrooted, smtpd on 127.0.0.1:$PF_PORT
pf_master_cf() {
    cat > "$PF_DIR/master.cf" <<CF
127.0.0.1:$PF_PORT inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
showq     unix  n - n - - showq
CF
}

# pf_gateway_init - a private instance to stand in front as the gateway
pf_gateway_init() {
    pf_dirs && pf_master_cf
}

# pf_gateway_conf FILE... - main.cf: the instance's settings, then FILE...
pf_gateway_conf() {
    cat > "$PF_DIR/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $PF_DIR/queue
data_directory = $PF_DIR/data
mail_owner = postfix
setgid_group = postdrop
myhostname = gateway.test
mydomain = gateway.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.2/32
smtp_tls_security_level = none
relay_transport = error:5.3.5 no next hop from transport_maps
default_transport = discard
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = $PF_LOG
maillog_file_prefixes = $TS
smtpd_banner = \$myhostname ESMTP
smtp_connect_timeout = 5s
master_service_disable = pickup
CF
    cat "$@" >> "$PF_DIR/main.cf"
}

# pf_start - check the config and start the instance
pf_start() {
    if ! "$POSTFIX" -c "$PF_DIR" check > "$PF_DIR/check.out" 2>&1; then
        echo "# postfix check failed:" >&2
        sed 's/^/# /' "$PF_DIR/check.out" >&2
        return 1
    fi
    if ! "$POSTFIX" -c "$PF_DIR" start > "$PF_DIR/start.out" 2>&1; then
        echo "# postfix start failed:" >&2
        sed 's/^/# /' "$PF_DIR/start.out" "$PF_LOG" >&2
        return 1
    fi
    PF_RUNNING=1
    pf_wait_port "$PF_PORT"
}

# pf_stop - stop the instance and wait for its master to exit
pf_stop() {
    [ -n "$PF_RUNNING" ] || return 0
    _pf_pid=$(cat "$PF_DIR/queue/pid/master.pid" 2>/dev/null | tr -d ' ')
    "$POSTFIX" -c "$PF_DIR" stop > /dev/null 2>&1
    _pf_i=0
    while [ -n "$_pf_pid" ] && kill -0 "$_pf_pid" 2>/dev/null && [ $_pf_i -lt 100 ]; do
        _pf_i=$((_pf_i + 1))
        sleep 0.05
    done
    PF_RUNNING=""
    cp "$PF_LOG" "$T/postfix.maillog" 2>/dev/null
}

# pf_log - the instance's log lines
pf_log() {
    cat "$PF_LOG"
}

# pf_accepted - messages the instance queued (one qmgr "from=" line each)
pf_accepted() {
    grep -c 'postfix/qmgr.*: from=<.*(queue active)' "$PF_LOG"
}
