#!/bin/sh
# config.sh - rcptgate.conf is checked strictly by every program
#
# -n on a good file exits 0; each kind of mistake exits 78 with a message
# naming file and line; sections of other programs are skipped, a
# misspelt section is not; a daemon refuses to start on a bad file.
#
# It runs no client: make check-vacuous stubs the admin command instead.
# vacuous client: RG_ADMIN
. "$top_srcdir/tests/lib/testlib.sh"
tl_init config

# check PROGRAM FILE - run PROGRAM -n -c FILE, leave output in $out, status in $rc
check() {
    out=$("$1" -n -c "$2" 2>&1)
    rc=$?
}

for prog in "$RG_LOOKUPD" "$RG_ADMIN"; do
    name=$(basename "$prog")
    check "$prog" "$CONF"
    tl_is "$rc" 0 "$name -n accepts the test config"

    # Keys of other programs' sections are not lookupd's business; the
    # admin command checks [smtpd] too, and each [source NAME]'s required keys.
    cp "$CONF" "$T/other.conf"
    printf '[smtpd]\nhostname = mx.example.com\nuser =\npid_file = %s/smtpd.pid\nstats_file = %s/smtpd.stats\n[source corp]\ntype = ldap\nuri = ldap://127.0.0.1/\nbase = dc=example,dc=com\n' \
        "$T" "$T" >> "$T/other.conf"
    check "$prog" "$T/other.conf"
    tl_is "$rc" 0 "$name -n takes a good [source NAME] and a good [smtpd]"
    cp "$CONF" "$T/other.conf"
    printf '[smtpd]\nsome_future_key = 1\n' >> "$T/other.conf"
    check "$prog" "$T/other.conf"
    if [ "$name" = rcptgate ]; then
        tl_is "$rc" 78 "$name -n checks [smtpd] keys"
    else
        tl_is "$rc" 0 "$name -n skips [smtpd]"
    fi

    cp "$CONF" "$T/bad.conf"
    printf 'busy_timeot = 5s\n' >> "$T/bad.conf"     # line 15, in [lookupd]
    line=$(wc -l < "$T/bad.conf")
    check "$prog" "$T/bad.conf"
    tl_is "$rc" 78 "$name -n: unknown key exits 78"
    tl_like "$out" "bad.conf:$line: .*busy_timeot" "$name -n: unknown key named with file:line"
    tl_like "$out" "did you mean busy_timeout in \[store\]\?" "$name -n: ... and the key it is a typo of"
    cp "$CONF" "$T/hint.conf"
    printf '[lookupd]\nmynetworks = 10.0.0.0/8\npolcy = unix:/x\n[source x]\ntype = file\npath = /x\nmoed = poll\n' \
        >> "$T/hint.conf"
    check "$prog" "$T/hint.conf"
    tl_like "$out" 'unknown key "mynetworks" in \[lookupd\]: it is a key of \[rules\]' \
        "$name -n: a key in the wrong section: the section it belongs to"
    tl_like "$out" 'unknown key "polcy" in \[lookupd\]: did you mean policy\?' "$name -n: a typo: the key meant"
    if [ "$name" = rcptgate ]; then
        tl_like "$out" 'unknown key "moed" in \[source x\]: did you mean mode\?' "$name -n: a typo in a [source NAME]"
    fi

    printf '[store]\npath = %s\nbusy_timeout = soon\n' "$STORE" > "$T/bad.conf"
    check "$prog" "$T/bad.conf"
    tl_is "$rc" 78 "$name -n: bad time value exits 78"
    tl_like "$out" "bad.conf:3: .*busy_timeout" "$name -n: bad value named with file:line"

    printf '[store]\npath = %s\nbusy_timeout = 2m\n' "$STORE" > "$T/bad.conf"
    check "$prog" "$T/bad.conf"
    tl_is "$rc" 78 "$name -n: out-of-range value exits 78"

    printf '[stroe]\npath = %s\n' "$STORE" > "$T/bad.conf"
    check "$prog" "$T/bad.conf"
    tl_like "$out" "bad.conf:2: unknown section \[stroe\]" "$name -n: misspelt section"

    printf '[store]\npath = relative.db\n' > "$T/bad.conf"
    check "$prog" "$T/bad.conf"
    tl_like "$out" "bad.conf:2: .*absolute" "$name -n: relative store path refused"

    printf '[lookupd]\nsocketmap = tcp:1.2.3.4\n' > "$T/bad.conf"
    check "$prog" "$T/bad.conf"
    tl_like "$out" "bad.conf:2: .*socketmap" "$name -n: bad listener refused"

    printf '[address]\nrecipient_delimiter = x\n' > "$T/bad.conf"
    check "$prog" "$T/bad.conf"
    tl_like "$out" "bad.conf:2: .*recipient_delimiter" "$name -n: letter as delimiter refused"

    printf '[store]\njust some words\n' > "$T/bad.conf"
    check "$prog" "$T/bad.conf"
    tl_like "$out" "bad.conf:2: syntax error" "$name -n: line without = refused"

    printf '[store]\npath = /a\npath = /b\n' > "$T/bad.conf"
    check "$prog" "$T/bad.conf"
    tl_like "$out" "bad.conf:3: duplicate key" "$name -n: duplicate key refused"

    check "$prog" "$T/nonexistent.conf"
    tl_is "$rc" 78 "$name -n: missing file exits 78"
    tl_like "$out" "nonexistent.conf: cannot open" "$name -n: missing file named"

    # several mistakes: all reported, not just the first
    printf '[store]\nbusy_timeout = x\nnope = 1\n[address]\nallow_bang_path = perhaps\n' > "$T/bad.conf"
    check "$prog" "$T/bad.conf"
    n=$(printf '%s\n' "$out" | grep -c 'bad.conf:[0-9]*:')
    tl_is "$n" 3 "$name -n: every mistake reported"
done

# One socket named as both socketmap and policy: lookupd would fail at start, binding it twice.
sed -e "s|^policy = .*|policy = unix:$T/same.sock|" -e "s|^socketmap = .*|socketmap = unix:$T/same.sock|" "$CONF" > "$T/same.conf"
for prog in "$RG_LOOKUPD" "$RG_ADMIN"; do
    check "$prog" "$T/same.conf"
    tl_is "$rc" 78 "$(basename "$prog") -n: one socket as socketmap and policy is refused (78)"
    tl_like "$out" "socketmap and policy name unix:$T/same.sock twice" "... naming it"
done

# [smtpd] listen and dnsbl lines are checked where they are read: every -n refuses them, with file:line.
cp "$CONF" "$T/smtpd.conf"
printf '[smtpd]\nuser =\nlisten = bogus\ndnsbl = zen.example=127.0.0.999 Listed\n' >> "$T/smtpd.conf"
for prog in "$RG_ADMIN" "$top_builddir/smtpd/rcptgate-smtpd"; do
    check "$prog" "$T/smtpd.conf"
    tl_is "$rc" 78 "$(basename "$prog") -n: a bad listen line and a bad dnsbl reply address are refused (78)"
    tl_like "$out" 'smtpd.conf:[0-9]+: \[smtpd\] listen: "bogus": expected HOST:PORT' "... listen with its line"
    tl_like "$out" 'dnsbl: zone zen.example: the reply "127.0.0.999" is not an IPv4 address' "... dnsbl too"
done

# rcptgate -n and rcptgate-syncd -n agree on each [source NAME]'s required and refused keys,
# and on what needs no directory library: URIs' schemes, binds, secret files' modes.
printf 'secret\n' > "$T/pw644"
chmod 644 "$T/pw644"
L='type = ldap\nbase = dc=example,dc=com\nuri = ldap://127.0.0.1/'
for src in 'type = ldap' 'type = graph' 'type = graph\nuri = ldap://127.0.0.1/' 'type = file\npath = /x\ntenant = t' \
    'type = ldap\nbase = dc=example,dc=com\nuri = dc1.corp.example.com' "$L\nbind_dn = cn=sync" \
    "$L\nbind_dn = cn=sync\nbind_password_file = $T/pw644" "$L\ncert_file = $T/pw644" \
    "type = graph\ntenant = example.com\nclient_id = x\nclient_secret_file = $T/pw644"; do
    cp "$CONF" "$T/src.conf"
    printf "[source x]\n$src\n" >> "$T/src.conf"
    check "$RG_ADMIN" "$T/src.conf"
    a=$rc
    check "$top_builddir/syncd/rcptgate-syncd" "$T/src.conf"
    tl_ok $([ "$a" = 78 ] && [ "$rc" = 78 ]; echo $?) "[source x] $(printf "$src" | tr '\n' ' '): rcptgate -n and rcptgate-syncd -n both refuse it (78: $a, $rc)"
done
# ... each problem said once by syncd (its own checks skip what the shared ones said)
tl_is "$(printf '%s\n' "$out" | grep -c 'client_secret_file')" 1 "rcptgate-syncd -n says a secret file's mode once"
printf "[source x]\n$L\nbind_dn = cn=sync\nbind_password_file = $T/pw644\n" >> "$T/src1.conf"
cat "$CONF" "$T/src1.conf" > "$T/src.conf"
check "$RG_ADMIN" "$T/src.conf"
tl_like "$out" "bind_password_file: secret file $T/pw644 is accessible by others \(mode 0644\): chmod 600 it" \
    "rcptgate -n names the secret file open to others and the fix"
# The other subcommands read no secret, and may run as a user that cannot (rcptgate check as a plugin)
out=$("$RG_ADMIN" -c "$T/src.conf" domain list 2>&1)
tl_is "$?/$(printf '%s\n' "$out" | grep -c 'configuration errors\|pw644')" "2/0" \
    "rcptgate domain list does not judge the secret files (2: no store here, not 78)"

# [smtpd] tls_key_file open to others: rcptgate -n refuses it as smtpd does; a
# certificate open to everyone is normal and draws no warning.
printf 'key\n' > "$T/key644"
chmod 644 "$T/key644"
printf 'cert\n' > "$T/cert644"
chmod 644 "$T/cert644"
cp "$CONF" "$T/tls.conf"
printf '[smtpd]\nuser =\npid_file = %s/smtpd.pid\nstats_file = %s/smtpd.stats\ntls_cert_file = %s/cert644\ntls_key_file = %s/key644\n' \
    "$T" "$T" "$T" "$T" >> "$T/tls.conf"
for prog in "$RG_ADMIN" "$top_builddir/smtpd/rcptgate-smtpd"; do
    check "$prog" "$T/tls.conf"
    tl_is "$rc" 78 "$(basename "$prog") -n: a tls_key_file open to others is refused (78)"
    tl_like "$out" "tls_key_file $T/key644 is accessible by others" "... and named"
done
# A key owned by [smtpd] user is smtpd's own: accepted, as smtpd does (root only: a user to own it).
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    D=$(mktemp -d /tmp/rg-key.XXXXXX)
    chmod 755 "$D"
    chown nobody "$D"
    printf 'key\n' > "$D/key.pem"
    chown nobody "$D/key.pem"
    chmod 600 "$D/key.pem"
    # Every place smtpd's user must reach is under $D: the test tree may be under /root (0700).
    sed "s|^path = $STORE\$|path = $D/store.db|" "$CONF" > "$T/own.conf"
    printf '[smtpd]\nuser = nobody\npid_file = %s/smtpd.pid\nstats_file = %s/smtpd.stats\nqueue_directory = %s/queue\ntls_cert_file = %s/key.pem\ntls_key_file = %s/key.pem\n' \
        "$D" "$D" "$D" "$D" "$D" >> "$T/own.conf"
    check "$RG_ADMIN" "$T/own.conf"
    tl_is "$rc" 0 "rcptgate -n: a tls_key_file of mode 0600 owned by [smtpd] user is accepted"
    [ "$rc" = 0 ] || printf '%s\n' "$out" | sed 's/^/#   /'
    rm -rf "$D"
else
    tl_n=$((tl_n + 1))
    echo "ok $tl_n # SKIP a key owned by [smtpd] user: needs root and the user nobody"
fi
chmod 600 "$T/key644"
check "$RG_ADMIN" "$T/tls.conf"
tl_is "$rc/$(printf '%s\n' "$out" | grep -c 'cert644')" "0/0" \
    "rcptgate -n: a key closed to others passes, and a certificate of mode 0644 draws no warning"

# The installed sample, every key commented, is a good file for every
# program, once the user it names exists (here: none) and, for syncd,
# there is a source to sync.
sed 's/^#user = rcptgate$/user =/' "$top_srcdir/etc/rcptgate.conf.sample" > "$T/sample-as-is.conf"
printf '\n[source extra]\ntype = file\npath = %s/extra.map\n' "$T" >> "$T/sample-as-is.conf"
# -n also checks the directories the programs write: here they are under $T.
cp "$T/sample-as-is.conf" "$T/sample.conf"
cat >> "$T/sample.conf" <<CONF

[store]
path = $T/sample.db
[lookupd]
socketmap = unix:$T/sample.sock
pid_file = $T/sample-lookupd.pid
stats_file = $T/sample-lookupd.stats
[smtpd]
pid_file = $T/sample-smtpd.pid
stats_file = $T/sample-smtpd.stats
[syncd]
pid_file = $T/sample-syncd.pid
CONF
for prog in "$RG_LOOKUPD" "$RG_ADMIN" "$top_builddir/syncd/rcptgate-syncd"; do
    check "$prog" "$T/sample.conf"
    tl_is "$rc" 0 "$(basename "$prog") -n accepts etc/rcptgate.conf.sample"
    [ "$rc" = 0 ] || printf '%s\n' "$out" | sed 's/^/#   /'
done
# As it is, on a machine where it was not installed, -n names each missing
# directory and how to make it, and exits 73.
for prog in "$RG_LOOKUPD" "$RG_ADMIN" "$top_builddir/syncd/rcptgate-syncd" "$top_builddir/smtpd/rcptgate-smtpd"; do
    check "$prog" "$T/sample-as-is.conf"
    if [ "$rc" = 0 ]; then
        tl_n=$((tl_n + 1))
        echo "ok $tl_n # SKIP $(basename "$prog") -n on the sample as is: its directories exist here"
        continue
    fi
    tl_is "$rc" 73 "$(basename "$prog") -n on the sample as is: missing directories exit 73"
    tl_like "$out" 'store directory /[^ ]* does not exist: mkdir -p -m 0750 /' \
        "$(basename "$prog") -n on the sample as is: the missing store directory named with its fix"
done
# Without that, the missing default user is named, not silently ignored.
if ! id rcptgate >/dev/null 2>&1; then
    check "$RG_LOOKUPD" "$top_srcdir/etc/rcptgate.conf.sample"
    tl_like "$out" 'user "rcptgate" does not exist' "a missing user is a configuration error"
    check "$RG_ADMIN" "$top_srcdir/etc/rcptgate.conf.sample"
    tl_is "$rc" 78 "rcptgate -n: a missing user is a configuration error (78)"
    tl_like "$out" '\[syncd\] user: user "rcptgate" does not exist' "rcptgate -n: ... and names it"
fi

# The admin command takes -f like the daemons (it is always in the foreground).
tl_admin -f -n >/dev/null 2>&1
tl_is "$?" 0 "rcptgate -f is accepted"

# A daemon does not start on a bad file.
printf '[store]\npath = %s\nbusy_timeout = soon\n' "$STORE" > "$T/bad.conf"
"$RG_LOOKUPD" -f -c "$T/bad.conf" > "$T/start.out" 2>&1 &
pid=$!
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 $pid 2>/dev/null; then
    kill $pid
    tl_ok 1 "lookupd refuses to start on a bad config"
else
    wait $pid
    tl_is "$?" 78 "lookupd refuses to start on a bad config (exit 78)"
fi
tl_done
