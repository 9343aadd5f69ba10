#!/bin/sh
# reload_late.sh - a reload refused after the file itself passed keeps the
# running configuration whole
#
# The file's values are checked before any is assigned; a few things can
# only fail after that: here a mynetworks file that changes between cfg's
# check of it and rules_init() reading it again. lookupd must then go on
# with every setting it ran with (the recipient delimiter, the policy's
# reject_text), not with the new file's values, and nothing may point at
# a value the refused load freed (the sanitizer build reports that).
# A FIFO stands in for the changing file: its first reader (cfg's check)
# gets a good network, every later reader a bad one. Then the same for
# rcptgate-smtpd, whose reload now refuses such a file whole too (it used
# to apply the rest and keep only the old rules).

. "$top_srcdir/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/smtpd.sh"
tl_init reload_late
trap '' PIPE
[ -x "$RG_SMTPD" ] || tl_bail "rcptgate-smtpd not built ($RG_SMTPD)"

# feed_start PID - serve $T/mynetworks (a FIFO) to daemon PID: the first
# reader gets 127.0.0.0/8, and is gone from PID's descriptors before
# anyone else is served (or the next line would reach it too); every
# later reader gets a bad CIDR. FEEDER is its pid; $T/feeder.log says
# "opened by reader N" as each one opens it.
feed_start() {
    rm -f "$T/mynetworks"
    mkfifo "$T/mynetworks"
    python3 - "$T/mynetworks" "$1" > "$T/feeder.log" 2>&1 <<'PY' &
import os, sys, time
path, fds = sys.argv[1], "/proc/%s/fd" % sys.argv[2]
def reading():
    for fd in os.listdir(fds):
        try:
            if os.readlink(os.path.join(fds, fd)) == path:
                return True
        except OSError:
            pass
    return False
n = 0
while True:
    with open(path, "w") as f:
        n += 1
        print("opened by reader", n, flush=True)
        f.write("127.0.0.0/8\n" if n == 1 else "192.0.2.0/33\n")
        f.flush()
        # held open: the first reader cannot see the end before we see it
        while n == 1 and not reading():
            time.sleep(0.005)
    while n == 1 and reading():
        time.sleep(0.005)
PY
    FEEDER=$!
    tl_pids="$tl_pids $FEEDER"
}
# feed_stop - end the feeder
feed_stop() {
    kill "$FEEDER" 2>/dev/null
    wait "$FEEDER" 2>/dev/null
    tl_pids=$(echo "$tl_pids" | sed "s/ $FEEDER//")
}

printf 'alice@example.com OK\n' > "$T/recipients"
tl_admin domain add example.com >/dev/null 2>"$T/admin.err" &&
tl_admin import "$T/recipients" >/dev/null 2>>"$T/admin.err"
tl_ok $? "store filled with the admin command"
[ -s "$T/admin.err" ] && sed 's/^/# /' "$T/admin.err"

cat >> "$CONF" <<EOF

[address]
recipient_delimiter = +
EOF
cp "$CONF" "$T/base.conf"
tl_start_lookupd || tl_bail "lookupd did not start ($RG_LOOKUPD)"
tl_wait_socket "$POLICY" || tl_bail "no policy socket"

# ask LINE - one socketmap request, the reply
ask() {
    echo "$1" | "$RG_CLIENT" "unix:$SOCK"
}
# policy RCPT - the policy action for RCPT TO:<RCPT> (Postfix 3.7's attributes)
policy() {
    printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.10\nclient_name=mx.sender.test\nreverse_client_name=mx.sender.test\nserver_address=127.0.0.1\nserver_port=25\nhelo_name=mx.sender.test\nsender=someone@sender.test\nrecipient=%s\nrecipient_count=0\nqueue_id=\n\n' "$1" \
        | "$RG_CLIENT" -p -t 5000 "unix:$POLICY" | sed -n 's/^action=//p'
}
# reloads_refused - how many reloads lookupd has refused so far
reloads_refused() {
    grep -c 'keeping the running configuration' "$T/lookupd.log"
}

tl_like "$(ask 'recipients alice+x@example.com')" '^OK ' "before: '+' is the delimiter"
tl_is "$(policy nobody@example.com)" "550 5.1.1 User unknown" "before: the policy's reject_text"

# --- the late refusal
feed_start "$LOOKUPD_PID"

sed -e 's/^recipient_delimiter = +$/recipient_delimiter = -/' "$T/base.conf" > "$CONF"
cat >> "$CONF" <<EOF

[lookupd]
reject_text = No such person here

[rules]
mynetworks = $T/mynetworks
EOF
kill -HUP "$LOOKUPD_PID"
tl_wait_grep 'keeping the running configuration' "$T/lookupd.log" 10
tl_ok $? "the reload is refused (mynetworks changed under it)"
tl_like "$(grep 'rules.mynetworks' "$T/lookupd.log")" "192.0.2.0/33" "... for the bad network rules_init read"
tl_wait_grep 'opened by reader 2' "$T/feeder.log"
tl_ok $? "... on its second reading, after cfg's check passed the first"
feed_stop

tl_like "$(ask 'recipients alice+x@example.com')" '^OK ' "refused reload: '+' still is the delimiter"
tl_is "$(ask 'recipients alice-x@example.com')" "NOTFOUND " "refused reload: '-' is not (the new file's)"
tl_is "$(policy nobody@example.com)" "550 5.1.1 User unknown" "refused reload: the running reject_text"
kill -0 "$LOOKUPD_PID"
tl_ok $? "lookupd still running"

# --- the same file, readable now: the reload takes it all
refused=$(reloads_refused)
reloads=$(grep -c 'reloaded ' "$T/lookupd.log")
sed -i "s|^mynetworks = $T/mynetworks\$|mynetworks = 127.0.0.0/8|" "$CONF"
kill -HUP "$LOOKUPD_PID"
i=0
while [ "$(grep -c 'reloaded ' "$T/lookupd.log")" = "$reloads" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
tl_is "$(grep -c 'reloaded ' "$T/lookupd.log") $(reloads_refused)" "$((reloads + 1)) $refused" "a good reload is taken"
tl_like "$(ask 'recipients alice-x@example.com')" '^OK ' "good reload: '-' is the delimiter"
tl_is "$(ask 'recipients alice+x@example.com')" "NOTFOUND " "good reload: '+' no longer is"
tl_is "$(policy nobody@example.com)" "550 5.1.1 No such person here" "good reload: the new reject_text"

tl_stop_lookupd
tl_is "$?" 0 "lookupd stops cleanly"
tl_no_sanitizer_reports "$T/lookupd.log" "$RG_LOOKUPD" "no sanitizer report from lookupd"

# ---------------------------------------------------------------- smtpd
cp "$T/base.conf" "$CONF"
sm_init "banner = ESMTP first"
sm_start_or_bail
sm_chat '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 1)" "220 mx.gateway.test ESMTP first" "smtpd: the banner"
feed_start "$SMTPD_PID"
sed -i -e 's/^banner = ESMTP first$/banner = ESMTP second/' \
    -e "s|^mynetworks = 127.0.0.2/32\$|mynetworks = $T/mynetworks|" "$CONF"
kill -HUP "$SMTPD_PID"
tl_wait_grep 'keeping the running configuration' "$SMTPD_LOG" 10
tl_ok $? "smtpd: the reload is refused (mynetworks changed under it)"
tl_wait_grep 'opened by reader 2' "$T/feeder.log"
tl_ok $? "smtpd: ... on its second reading, after cfg's check passed the first"
feed_stop
sm_chat '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 1)" "220 mx.gateway.test ESMTP first" "smtpd: refused reload: the running banner"
sed -i "s|^mynetworks = $T/mynetworks\$|mynetworks = 127.0.0.2/32|" "$CONF"
reloads=$(grep -c 'reloaded ' "$SMTPD_LOG")
kill -HUP "$SMTPD_PID"
i=0
while [ "$(grep -c 'reloaded ' "$SMTPD_LOG")" = "$reloads" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
sm_chat '<' '>QUIT\r\n' '<'
tl_is "$(sm_line 1)" "220 mx.gateway.test ESMTP second" "smtpd: a good reload is taken"
sm_stop
sm_sanitizer_check "no sanitizer report from smtpd"
tl_done
