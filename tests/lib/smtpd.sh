# smtpd.sh - start and talk to a private rcptgate-smtpd in shell tests
#
# Source after testlib.sh and call tl_init first:
#
#   sm_init [EXTRA]       append an [smtpd] section to $CONF: listen on
#                         127.0.0.1:$SMTPD_PORT, log lines in $SMTPD_LOG,
#                         mynetworks = 127.0.0.2/32 (so a test's client at
#                         127.0.0.1 is an outsider and one bound to
#                         127.0.0.2 is trusted), no reverse lookups, DNS
#                         checks off; EXTRA lines are added to [smtpd].
#   sm_start [ARGS]       start rcptgate-smtpd -f; wait until it listens
#   sm_stop               SIGTERM it and wait
#   sm_swaks ARGS         swaks against it: transcript in $T/swaks.out, exit status returned
#   sm_port               a free-looking port in 10000..31999
#
# After sm_init: SMTPD_PORT, SMTPD_SUB_PORT (a submission listener),
# SMTPD_LOG, SMTPD_PID (after sm_start).

RG_SMTPD="$top_builddir/smtpd/rcptgate-smtpd"
SWAKS=${SWAKS:-$(command -v swaks || echo /usr/bin/swaks)}

# sm_port - a pseudo-random port below Linux's ephemeral range
sm_port() {
    _sm_n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
    echo $((10000 + _sm_n % 22000))
}

# sm_init - the [smtpd] section of the test's config
sm_init() {
    SMTPD_PORT=$(sm_port)
    SMTPD_SUB_PORT=$((SMTPD_PORT + 1))
    SMTPD_LOG="$T/smtpd.maillog"
    cat >> "$CONF" <<CONF

[smtpd]
listen = 127.0.0.1:$SMTPD_PORT
listen = 127.0.0.1:$SMTPD_SUB_PORT submission
hostname = mx.gateway.test
mynetworks = 127.0.0.2/32
user =
pid_file = $T/smtpd.pid
stats_file = $T/smtpd.stats
log_file = $SMTPD_LOG
reverse_lookup = no
reject_unknown_sender_domain = off
error_sleep_time = 0
harvest_delay = 0
CONF
    [ $# -gt 0 ] && printf '%s\n' "$@" >> "$CONF"
    : > "$SMTPD_LOG"
    return 0
}

# sm_start - start smtpd in the foreground, in the background; wait for its pid file
sm_start() {
    rm -f "$T/smtpd.pid"
    "$RG_SMTPD" -c "$CONF" -f "$@" 2>>"$T/smtpd.stderr" &
    SMTPD_PID=$!
    tl_pids="$tl_pids $SMTPD_PID"
    _sm_i=0
    while [ ! -s "$T/smtpd.pid" ]; do
        _sm_i=$((_sm_i + 1))
        if [ $_sm_i -gt 200 ] || ! kill -0 "$SMTPD_PID" 2>/dev/null; then
            echo "# smtpd did not start:" >&2
            sed 's/^/# /' "$T/smtpd.stderr" >&2
            return 1
        fi
        sleep 0.05
    done
    return 0
}

# sm_stop - SIGTERM smtpd and wait for it
sm_stop() {
    [ -n "$SMTPD_PID" ] || return 0
    kill "$SMTPD_PID" 2>/dev/null
    wait "$SMTPD_PID" 2>/dev/null
    SMTPD_PID=""
}

# sm_swaks - swaks to the MX listener (add --port for another); transcript in $T/swaks.out
sm_swaks() {
    "$SWAKS" --server 127.0.0.1 --port "$SMTPD_PORT" --timeout 20 --hide-informational "$@" > "$T/swaks.out" 2>&1
}
