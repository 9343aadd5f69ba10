# smtpd.sh - start and talk to a private rcptgate-smtpd in shell tests
#
# Source after testlib.sh and call tl_init first:
#
#   sm_init [EXTRA]       append an [smtpd] section to $CONF: listen on
#                         127.0.0.1:$SMTPD_PORT, log lines in $SMTPD_LOG,
#                         mynetworks = 127.0.0.2/32 (so a test's client at
#                         127.0.0.1 is an outsider and one bound to
#                         127.0.0.2 is trusted), no reverse lookups, DNS
#                         checks off, its queue in $T/queue, relay_mode =
#                         proxy (the tests written before the queue test
#                         the proxy; an EXTRA "relay_mode = ..." replaces
#                         it); EXTRA lines are added to [smtpd].
#   sm_start [ARGS]       start rcptgate-smtpd -f; wait until it listens
#   sm_stop               SIGTERM it and wait
#   sm_swaks ARGS         swaks against it: transcript in $T/swaks.out, exit status returned
#   sm_port               a free-looking port in 10000..31999
#   ck DESC WANT ARGS...  swaks up to RCPT: the reply must be exactly WANT (rcpt_reply)
#   rc SRC PORT STEP...   one session through tests/tools/smtp_timed.py
#                         (each reply timed): rc_line N, rc_ms N, rc_all N
#
#   sm_start_or_bail      sm_start, or Bail out: a dead smtpd is a failure, never a skip
#   sm_spoke [FILE]       0 if the client's transcript (swaks, smtpchat or rc)
#                         holds the server's 220 banner: the session happened
#   sm_sink_same WANT MSG [FILE]  the session in FILE happened, the sink is
#                         up and holds WANT messages ("nothing reached it")
#   sm_sanitizer_check MSG  no sanitizer report in smtpd's stderr (one check)
#
# After sm_init: SMTPD_PORT, SMTPD_SUB_PORT (a submission listener),
# SMTPD_LOG, SMTPD_PID (after sm_start).
#
# Every program is taken from the environment when set (RG_SMTPD, SWAKS,
# SMTPCHAT, SMTP_TIMED, SMTP_SINK, and PYCLIENT: the python3 that runs a
# test's own inline client): `make check-vacuous` points the clients, then
# the daemons, at stubs that exit at once.

RG_SMTPD=${RG_SMTPD:-"$top_builddir/smtpd/rcptgate-smtpd"}
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
queue_directory = $T/queue
CONF
    case " $* " in
    *" relay_mode"*) ;;
    *) echo "relay_mode = proxy" >> "$CONF" ;;
    esac
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

# sm_start_or_bail [ARGS] - sm_start; a daemon of ours that does not start ends the test
sm_start_or_bail() {
    sm_start "$@" || tl_bail "rcptgate-smtpd did not start ($RG_SMTPD)"
}

# sm_spoke [FILE] - the transcript shows the server's banner (swaks "<-  220 ",
# smtpchat "220 ", rc "MS 220 "): the client did talk to a server
sm_spoke() {
    grep -Eq '^(<- +|[0-9]+ )?220[ -]' "${1:-$T/chat.out}" 2>/dev/null
}

# sm_sink_same WANT MSG [FILE] - a "nothing reached the sink" check with its
# precondition: the session in FILE (default $T/chat.out) happened, the sink
# is still up, and it holds WANT messages
sm_sink_same() {
    _sm_s=no
    sm_spoke "${3:-$T/chat.out}" && _sm_s=yes
    _sm_u=down
    kill -0 "$SINK_PID" 2>/dev/null && _sm_u=up
    tl_is "session $_sm_s, sink $_sm_u, sink has $(sm_sink_count)" "session yes, sink up, sink has $1" "$2"
}

# sm_sanitizer_check MSG - smtpd's stderr holds no sanitizer report
sm_sanitizer_check() {
    tl_no_sanitizer_reports "$T/smtpd.stderr" "$RG_SMTPD" "$1"
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

# sm_chat ARGS          raw-bytes SMTP conversation (tests/tools/smtpchat.py
#                       steps, see there) with the MX listener; every reply
#                       line in $T/chat.out ("CLOSED" when smtpd hung up).
#                       -p PORT talks to another listener, -t SECS waits
#                       longer for replies (default 10).
# sm_sink_start [NAME]  start smtp-sink on $SINK_PORT writing each message
#                       to $SINK_DIR, $TS/NAME (default sink; in the shared
#                       scratch, see tl_shared_dir); SINK_PID. For a second
#                       sink, set SINK_PORT again and give another NAME.
# sm_sink NAME PORT [ARGS]  a sink of its own (smtp-sink options ARGS) on
#                       PORT ("": a new one) into $TS/NAME; ${NAME}_PORT,
#                       ${NAME}_PID; sm_unsink NAME stops it
# sm_picky              tests/tools/smtp_picky.py on $PICKY_PORT ($T/picky.got)
# sm_sink_count [DIR]   how many messages reached the sink (or DIR)
# sm_line N [FILE]      line N of $T/chat.out (or FILE)
PYCLIENT=${PYCLIENT:-python3}
SMTPCHAT=${SMTPCHAT:-"${PYTHON3:-python3} $top_srcdir/tests/tools/smtpchat.py"}
# The library's own probe (is the sink listening yet?) is never the stubbed client.
SM_PROBE="${PYTHON3:-python3} $top_srcdir/tests/tools/smtpchat.py"
SMTP_SINK=${SMTP_SINK:-$(command -v smtp-sink || echo /usr/sbin/smtp-sink)}

# sm_lsan - LeakSanitizer: ignore what Cyrus SASL's plugins leak (they
# allocate in sasl_server_init and never free); everything else counts.
sm_lsan() {
    printf 'leak:sasl_server_add_plugin\nleak:sasl_server_init\n' > "$T/lsan.supp"
    LSAN_OPTIONS="suppressions=$T/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
    export LSAN_OPTIONS
}

sm_chat() {
    _sm_p=$SMTPD_PORT
    _sm_t=10
    while :; do
        case "$1" in
        -p) _sm_p=$2; shift 2 ;;
        -t) _sm_t=$2; shift 2 ;;
        *) break ;;
        esac
    done
    $SMTPCHAT -t "$_sm_t" "$_sm_p" "$@" > "$T/chat.out" 2>&1
}

sm_line() {
    sed -n "${1}p" "${2:-$T/chat.out}"
}

sm_sink_start() {
    : "${SINK_PORT:=$(( $(sm_port) + 2 ))}"
    sm_sink "${1:-sink}" "$SINK_PORT" || return 1
    SINK_DIR="$TS/${1:-sink}"
    eval "SINK_PID=\$${1:-sink}_PID"
}

# sm_sink NAME PORT [ARGS...] - one more smtp-sink (ARGS are its options:
# -f RCPT, -w 5, ...) on 127.0.0.1:PORT (a new sm_port when PORT is ""),
# storing each message in $TS/NAME/, its log $T/NAME.log; its port in
# ${NAME}_PORT, its pid in ${NAME}_PID. 1 if it does not answer in 5 s.
sm_sink() {
    _sm_n=$1
    _sm_p=${2:-$(sm_port)}
    shift 2
    tl_shared_dir || return 1
    mkdir -p "$TS/$_sm_n"
    _sm_u=""
    if [ "$(id -u)" = 0 ]; then
        # smtp-sink wants -u when run as root; as nobody it writes here.
        _sm_u="-u nobody"
        chown nobody "$TS/$_sm_n"
    fi
    # shellcheck disable=SC2086
    "$SMTP_SINK" $_sm_u -d "$TS/$_sm_n/%M." "$@" "127.0.0.1:$_sm_p" 100 2>>"$T/$_sm_n.log" &
    eval "${_sm_n}_PID=$! ${_sm_n}_PORT=$_sm_p"
    tl_pids="$tl_pids $!"
    sm_wait_greeting "$_sm_p"
}

# sm_picky - tests/tools/smtp_picky.py (a next hop that answers each
# recipient as its local part says) on a new $PICKY_PORT, appending what it
# takes to $T/picky.got; 1 if it does not answer in 5 s
sm_picky() {
    PICKY_PORT=$(sm_port)
    ${PYTHON3:-python3} "$top_srcdir/tests/tools/smtp_picky.py" "$PICKY_PORT" "$T/picky.got" 2>>"$T/picky.log" &
    tl_pids="$tl_pids $!"
    sm_wait_greeting "$PICKY_PORT"
}

# sm_wait_greeting PORT - wait up to 5 s for a server's greeting on 127.0.0.1:PORT; 1 if none came
sm_wait_greeting() {
    _sm_i=0
    while ! $SM_PROBE -t 2 "$1" '<' >/dev/null 2>&1; do
        _sm_i=$((_sm_i + 1))
        [ $_sm_i -gt 100 ] && return 1
        sleep 0.05
    done
    return 0
}

# sm_unsink NAME - stop that sink and wait for it
sm_unsink() {
    eval "_sm_pid=\$${1}_PID"
    kill "$_sm_pid" 2>/dev/null
    wait "$_sm_pid" 2>/dev/null
}

sm_sink_count() {
    find "${1:-$SINK_DIR}" -type f | wc -l | tr -d ' '
}

# sm_wait_sink DIR N [SECS] - wait up to SECS (20) s until N messages are in
# sink DIR (non-empty files: smtp-sink leaves empty ones for aborted
# sessions); 1 on timeout
sm_wait_sink() {
    _sm_i=0
    _sm_max=$(( ${3:-20} * 20 ))
    while [ "$(find "$1" -type f -size +0 2>/dev/null | wc -l)" -lt "$2" ]; do
        _sm_i=$((_sm_i + 1))
        [ $_sm_i -gt $_sm_max ] && return 1
        sleep 0.05
    done
    return 0
}

# sm_wait_log PATTERN [SECS] - wait up to SECS (20) s for a line matching
# PATTERN (grep -E) in smtpd's log; 1 on timeout
sm_wait_log() {
    tl_wait_grep "$1" "$SMTPD_LOG" "${2:-20}"
}

# ---------------------------------------------------------------- timed raw client
# rc SRC PORT STEPS... - run the raw client; its output in $T/rc.out
SMTP_TIMED=${SMTP_TIMED:-"${PYTHON:-python3} $top_srcdir/tests/tools/smtp_timed.py"}
rc() {
    $SMTP_TIMED "$@" > "$T/rc.out" 2>"$T/rc.err"
}
# rc_line N - the last line of the Nth reply (1 = banner)
rc_line() {
    sed -n "${1}p" "$T/rc.out" | cut -f1 | cut -d' ' -f2-
}
# rc_ms N - how long the Nth reply took, ms
rc_ms() {
    sed -n "${1}p" "$T/rc.out" | cut -d' ' -f1
}
# rc_all N - the whole Nth reply
rc_all() {
    sed -n "${1}p" "$T/rc.out" | cut -f2
}

# ---------------------------------------------------------------- RCPT replies through swaks
# rcpt_reply - the server's reply to RCPT TO in the last transcript
rcpt_reply() {
    awk '/^ -> RCPT TO:/ { if ((getline line) > 0) { sub(/^<(-|\*\*) +/, "", line); print line } exit }' \
        "$T/swaks.out"
}

# ck DESC WANT SWAKS-ARGS... - the reply to RCPT must be exactly WANT
ck() {
    _desc=$1
    _want=$2
    shift 2
    sm_swaks --quit-after RCPT "$@"
    _got=$(rcpt_reply)
    tl_is "$_got" "$_want" "$_desc"
    if [ "$_got" != "$_want" ]; then
        sed 's/^/#   /' "$T/swaks.out" | tail -6
    fi
}
