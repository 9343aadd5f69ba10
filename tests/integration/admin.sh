#!/bin/sh
# admin.sh - the admin command rcptgate, driven as a postmaster would
#
# Uses the real binary on a store under the build tree: configuration
# check, domains, static entries, import (good, then a file with a bad
# line 3 that must change nothing, an overlong line read in bounded
# memory, the null sender, and the shrink guard refusing a truncated file
# until --force), query exit codes 0/1/2, export fed back to import and to
# postmap, and stats with and without lookupd's counters.
#
# It starts no daemon: make check-vacuous stubs the admin command instead.
# vacuous daemon: RG_ADMIN

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"

[ -x "$RG_ADMIN" ] || tl_bail "rcptgate not built ($RG_ADMIN)"
tl_init admin

# run CMD... - run the admin command: stdout to $T/out, stderr to $T/err, status in $rc
run() {
    tl_admin "$@" >"$T/out" 2>"$T/err"
    rc=$?
}

# --- configuration
run -n
tl_is "$rc" 0 "-n with a good configuration exits 0"
cat > "$T/bad.conf" <<EOF
[store]
path = $STORE
no_such_key = 1
EOF
"$RG_ADMIN" -c "$T/bad.conf" -n >"$T/out" 2>"$T/err"
tl_is "$?" 78 "-n with a bad configuration exits 78"
tl_like "$(cat "$T/err")" "bad.conf:3:" "the configuration error names file:line"
"$RG_ADMIN" -c "$T/bad.conf" query a@example.com >"$T/out" 2>"$T/err"
tl_is "$?" 78 "a subcommand with a bad configuration exits 78"
run frobnicate
tl_is "$rc" 64 "an unknown subcommand is a usage error (64)"

# -n checks the whole file: [smtpd] and every [source NAME] too, with the
# tables in lib/ (the admin command links neither smtpd nor syncd).
cp "$CONF" "$T/smtpd.conf"
printf '\n[smtpd]\nline_length_limit = 10\n' >> "$T/smtpd.conf"
line=$(wc -l < "$T/smtpd.conf")
"$RG_ADMIN" -c "$T/smtpd.conf" -n >"$T/out" 2>"$T/err"
tl_is "$?" 78 "-n with a bad [smtpd] value exits 78"
tl_like "$(cat "$T/err")" "smtpd\.conf:$line: \[smtpd\] line_length_limit must be between 512 and 1000000, not \"10\"" \
    "... naming file:line, section, key, the bounds and the value"
cp "$CONF" "$T/source.conf"
printf '\n[source corp]\ntype = ldap\nmode = sometimes\n' >> "$T/source.conf"
line=$(wc -l < "$T/source.conf")
"$RG_ADMIN" -c "$T/source.conf" -n >"$T/out" 2>"$T/err"
tl_is "$?" 78 "-n with a bad [source NAME] value exits 78"
tl_like "$(cat "$T/err")" "source\.conf:$line: \[source corp\] mode must be one of once\|poll\|persistent, not \"sometimes\"" \
    "... naming file:line, the source, the key, the choices and the value"
cp "$CONF" "$T/source.conf"
printf '\n[source bad/name]\ntype = file\npath = /nonexistent/map\n[source nokey]\nmode = poll\n' >> "$T/source.conf"
"$RG_ADMIN" -c "$T/source.conf" -n >"$T/out" 2>"$T/err"
tl_is "$?" 78 "-n with a bad source name and a source without type exits 78"
tl_like "$(cat "$T/err")" "\[source bad/name\] the name may hold only" "... the bad name is named"
tl_like "$(cat "$T/err")" "\[source nokey\] type is required" "... and the missing type"
cp "$CONF" "$T/source.conf"
printf '\n[smtpd]\nuser =\npid_file = %s\nstats_file = %s\nline_length_limit = 4096\n' \
    "$T/smtpd.pid" "$T/smtpd.stats" >> "$T/source.conf"
printf '[source files]\ntype = file\npath = /nonexistent/map\n' >> "$T/source.conf"
"$RG_ADMIN" -c "$T/source.conf" -n >"$T/out" 2>"$T/err"
tl_is "$?" 0 "-n with good [smtpd] and [source NAME] sections exits 0"
[ -s "$T/err" ] && sed 's/^/# /' "$T/err"

# --- a reader before the store exists
run query alice@example.com
tl_is "$rc" 2 "query on a missing store exits 2"
tl_like "$(cat "$T/err")" "no such file" "and says the store file is missing"
tl_ok "$([ ! -e "$STORE" ]; echo $?)" "a reader does not create the store"

# --- domains
run domain add Example.COM 'smtp:[10.1.0.2]:25,smtp:[10.1.0.3]:25'
tl_is "$rc" 0 "domain add with a failover next hop"
tl_like "$(cat "$T/out")" 'next hop smtp:\[10\.1\.0\.2\]:25,\[10\.1\.0\.3\]:25$' \
    "failover next hop stored with the transport named once, as Postfix needs it"
run domain add mixed.example 'smtp:[10.1.0.2]:25,relay:[10.1.0.3]:25'
tl_is "$rc" 1 "a failover list naming two transports is refused"
run domain add bücher.example --subdomains
tl_is "$rc" 0 "domain add of an IDN with --subdomains"
run domain add gone.example
tl_is "$rc" 0 "domain add without next hop"
tl_is "$(cat "$T/err")" "" "... and no warning"
# Postfix's transport_maps take any transport; smtpd does not: stored, with a warning
run domain add lmtp.example 'lmtp:[10.1.0.4]:24'
tl_is "$rc" 0 "domain add with an LMTP next hop (Postfix's transport_maps take it)"
tl_like "$(cat "$T/err")" 'warning: next hop lmtp:\[10\.1\.0\.4\]:24: rcptgate-smtpd cannot relay to "lmtp:\[10\.1\.0\.4\]:24": transport "lmtp": rcptgate-smtpd relays by SMTP only' \
    "... with a warning that rcptgate-smtpd cannot relay to it"
# A port or host nobody can use (Postfix neither) is refused, not stored with a warning.
for bad in 'smtp:[10.1.0.4]:0' 'smtp:[10.1.0.4]:99999' 'smtp:host:abc'; do
    run domain add port.example "$bad"
    tl_ok $([ "$rc" = 1 ] && ! tl_admin domain list 2>/dev/null | grep -q '^port\.example'; echo $?) \
        "domain add with next hop $bad: refused (exit $rc), nothing stored"
done
tl_like "$(cat "$T/err")" 'next hop smtp:host:abc: "smtp:host:abc": port "abc": a number from 1 to 65535' "... saying why"
# A service name of /etc/services is a port, as Postfix takes it.
if getent services submission >/dev/null 2>&1; then
    run domain add sub.example 'smtp:[10.1.0.4]:submission'
    tl_is "$rc:$(cat "$T/err")" "0:" "domain add with :submission (a service name): stored, no warning"
    run domain del sub.example
else
    tl_n=$((tl_n + 1)); echo "ok $tl_n # SKIP no /etc/services entry for submission here"
fi
run domain add relayhost.example '[10.1.0.4]:25'
tl_is "$rc:$(cat "$T/err")" '1:rcptgate: next hop "[10.1.0.4]:25": no transport: write smtp:[10.1.0.4]:25' \
    "Postfix's relayhost form without a transport: refused, with the form to write"
run domain add dflt.example ':[10.1.0.4]:2525'
tl_is "$rc:$(cat "$T/err")" "0:" "the default transport (\":[host]\") is SMTP to smtpd: no warning"
run domain add named.example 'smtp:mx1.internal:smtp,smtp:mx2.internal:2525'
tl_is "$rc:$(cat "$T/err")" "0:" "host names with :smtp and :PORT, no brackets: no warning"
run domain del named.example
run domain del lmtp.example
run domain del dflt.example
run domain add bad.example 'smtp [10.1.0.2]'
tl_is "$rc" 1 "a next hop with white space is refused"
run domain add bad.example 'smtp:[10.1.0.2'
tl_is "$rc" 1 "a next hop with an unclosed [ is refused"
run domain add bad.example 'smtp:[mx.bücher.example]'
tl_is "$rc" 1 "a next hop that is not ASCII is refused"
tl_like "$(cat "$T/err")" 'not ASCII: give a host.s A-label' "... with what to give instead"
run domain add 'not a domain'
tl_is "$rc" 1 "a malformed domain is refused"
run domain del gone.example
tl_is "$rc" 0 "domain del"
run domain del gone.example
tl_is "$rc" 1 "domain del of an absent domain exits 1"
run domain list
tl_is "$(cat "$T/out")" "$(printf 'example.com\tsmtp:[10.1.0.2]:25,[10.1.0.3]:25\t-\t-\nxn--bcher-kva.example\t-\tsubdomains\t-')" \
    "domain list: normalised names, next hops, subdomain flag, in order"

# --- static entries
run static add Postmaster@EXAMPLE.com
tl_is "$rc" 0 "static add"
tl_is "$(grep -c 'not a domain we accept' "$T/err")" 0 "static add in an accepted domain: no warning"
run static add postmaster@example.com
tl_like "$(cat "$T/out")" "exists already" "static add twice says it exists"
run static add abuse@example.info
tl_is "$rc" 0 "static add in a domain not accepted: stored all the same (exit 0)"
tl_like "$(cat "$T/err")" "warning: example\.info is not a domain we accept mail for: its mail is refused as relaying until .rcptgate domain add example\.info." \
    "... with a warning that names the fix"
run static del abuse@example.info
run static list
tl_is "$(cat "$T/out")" "postmaster@example.com" "static list shows the normal form"

# --- import
cat > "$T/good.map" <<EOF
# the recipients of example.com
alice@example.com   OK
Bob@Example.COM     OK
carol@example.com
    OK
@bücher.example     OK
EOF
run import "$T/good.map"
tl_is "$rc" 0 "import of a good file"
tl_is "$(cat "$T/out")" "imported 4 recipients into source import: 4 added, 0 changed, 0 removed" \
    "import reports its counts"
run import "$T/good.map"
tl_is "$(cat "$T/out")" "imported 4 recipients into source import: 0 added, 0 changed, 0 removed" \
    "importing the same file again changes nothing"
tl_admin export >"$T/before"
cat > "$T/bad.map" <<EOF
dave@example.com OK
erin@example.com OK
frank@@example.com OK
gina@example.com OK
EOF
run import "$T/bad.map"
tl_is "$rc" 1 "import of a file with a bad line exits 1"
tl_like "$(head -1 "$T/err")" "^rcptgate: .*bad.map:3: " "the error names line 3"
tl_admin export >"$T/after"
tl_ok "$(cmp -s "$T/before" "$T/after"; echo $?)" "after the failed import the store is unchanged"
printf 'dave@example.com OK\nlonely@example.com\n' > "$T/novalue.map"
run import "$T/novalue.map"
tl_is "$rc" 1 "a key without a value is refused"
tl_like "$(head -1 "$T/err")" "novalue.map:2: .*has no value" "with its line"
run import --source static "$T/good.map"
tl_is "$rc" 1 "import into the source static is refused"
sqlite3 "$STORE" "INSERT INTO source (name, type) VALUES ('retired', 'ldap')"
run import --source retired "$T/good.map"
tl_is "$rc" 1 "import into a source of another type (here ldap, not configured): refused with 1, not 2"
tl_like "$(cat "$T/err")" "source retired is of type ldap, not import" "... saying why"
sqlite3 "$STORE" "DELETE FROM source WHERE name = 'retired'"
: > "$T/empty.map"
run import "$T/empty.map"
tl_is "$rc" 1 "an empty file does not empty a source"
printf 'dave@example.com OK\n<> OK\n' > "$T/null.map"
run import "$T/null.map"
tl_is "$rc" 1 "the null sender is not a recipient"
tl_like "$(head -1 "$T/err")" 'null.map:2: "<>": the null sender' "and the error says so with its line"

# An overlong line: an error naming its line, read without holding it (a
# 64 MB line must not cost 64 MB: getline() did; the reader stops at 4 KB).
{
    echo "dave@example.com OK"
    echo "# a comment"
    head -c 67108864 /dev/zero | tr '\0' 'x'
    echo " OK"
} > "$T/long.map"
tl_admin export >"$T/before"
if /usr/bin/time -f '%M' true >/dev/null 2>&1; then
    /usr/bin/time -f '%M' -o "$T/long.rss" "$RG_ADMIN" -c "$CONF" import "$T/long.map" >"$T/out" 2>"$T/err"
    rc=$?
    # the same import of a one-line file, into a store of its own
    printf 'x@example.com OK\n' > "$T/tiny.map"
    sed "s|^path = .*|path = $T/tiny.db|" "$CONF" > "$T/tiny.conf"
    /usr/bin/time -f '%M' -o "$T/tiny.rss" "$RG_ADMIN" -c "$T/tiny.conf" import "$T/tiny.map" \
        >/dev/null 2>&1
    grow=$(( $(tail -1 "$T/long.rss") - $(tail -1 "$T/tiny.rss") ))
    tl_ok "$([ "$grow" -lt 16384 ]; echo $?)" "a 64 MB line costs less than 16 MB more than a one-line file (${grow} kB)"
else
    run import "$T/long.map"
fi
tl_is "$rc" 1 "an overlong line is refused"
tl_like "$(head -1 "$T/err")" "long.map:3: line longer than 4096 bytes" "and the error names line 3"
tl_admin export >"$T/after"
tl_ok "$(cmp -s "$T/before" "$T/after"; echo $?)" "after the overlong line the store is unchanged"

# --- query
run query alice+news@Example.com
tl_is "$rc" 0 "query of a known address (with +extension) exits 0"
tl_like "$(cat "$T/out")" "entry: +alice@example.com" "query names the matching entry"
tl_like "$(cat "$T/out")" "source: +import" "query names the source"
tl_like "$(cat "$T/out")" "last seen: +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z" "query shows last seen in ISO 8601 UTC"
tl_like "$(cat "$T/out")" "next hop: +smtp:\[10.1.0.2\]:25" "query shows the next hop"
tl_like "$(cat "$T/out")" "relay mode: +proxy-then-queue \(\[smtpd\] relay_mode\)" \
    "query shows the relay mode in force, [smtpd]'s for a domain without its own"
run query anyone@sub.xn--bcher-kva.example
tl_is "$rc" 1 "a subdomain without its own catch-all is not found"
run query anyone@sub.example.com
tl_like "$(cat "$T/out")" "note: +example.com is one of our domains, added without --subdomains" \
    "query of a subdomain of ours added without --subdomains says so"
run query anyone@bücher.example
tl_is "$rc" 0 "the catch-all matches its domain"
run query postmaster@example.com
tl_is "$rc" 0 "a static entry is found"
tl_like "$(cat "$T/out")" "^source: +static" "its source is static"
run query nobody@example.com
tl_is "$rc" 1 "query of an unknown address exits 1"
cp "$CONF" "$T/warn.conf"
printf '[rules]\nreject_unknown_recipient = warn\n' >> "$T/warn.conf"
"$RG_ADMIN" -c "$T/warn.conf" query nobody@example.com >"$T/out" 2>"$T/err"
tl_like "$(cat "$T/out")" "note: +rcptgate-smtpd and the policy service accept and log a reject_warning for it \(\[rules\] reject_unknown_recipient = warn\)" \
    "query of an unknown address in warn mode says the daemons accept it"
run query someone@elsewhere.example
tl_is "$rc" 1 "query in a domain we do not accept exits 1"
run query 'not an address'
tl_is "$rc" 1 "query of a malformed address exits 1"
head -c 16384 /dev/urandom > "$T/corrupt.db"
sed "s|^path = .*|path = $T/corrupt.db|" "$CONF" > "$T/corrupt.conf"
"$RG_ADMIN" -c "$T/corrupt.conf" query alice@example.com >"$T/out" 2>"$T/err"
tl_is "$?" 2 "query on a corrupt store exits 2"
tl_like "$(cat "$T/err")" "not a database" "and prints the store error"
mkdir -p "$T/dir.db"
sed "s|^path = .*|path = $T/dir.db|" "$CONF" > "$T/dir.conf"
"$RG_ADMIN" -c "$T/dir.conf" query alice@example.com >"$T/out" 2>"$T/err"
tl_is "$?" 2 "query on a store path that is a directory exits 2"

# --- export: deterministic, feeds import and postmap
run export
tl_is "$(cat "$T/out")" "$(printf '%s\n' '@xn--bcher-kva.example OK' 'alice@example.com OK' \
    'bob@example.com OK' 'carol@example.com OK' 'postmaster@example.com OK')" "export lists every address once, in order"
run export --source import
cp "$T/out" "$T/import.map"
run import --source copy "$T/import.map"
tl_is "$(cat "$T/out")" "imported 4 recipients into source copy: 4 added, 0 changed, 0 removed" \
    "export output imports back"
tl_admin export --source copy >"$T/copy.map"
tl_ok "$(cmp -s "$T/import.map" "$T/copy.map"; echo $?)" "and exports identically (round trip)"
run export --source cpoy
tl_ok $([ "$rc" = 1 ] && [ ! -s "$T/out" ]; echo $?) "export --source of no source: exit 1, nothing printed (not an empty map)"
tl_like "$(cat "$T/err")" "no source cpoy in the store" "... saying so"
# A key that starts with '#' would read back as a comment: left out, with a warning.
tl_admin static add '#sales@example.com' >/dev/null 2>&1
run export --source static
tl_ok $([ "$rc" = 0 ] && ! grep -q sales "$T/out"; echo $?) "export leaves a key starting with '#' out"
tl_like "$(cat "$T/err")" "leaving out \"#sales@example.com\": .*as a comment" "... and says why"
# A [source NAME] of the config is syncd's: no import into it, even before its first pull.
sed '$a [source corp]\ntype = file\npath = /nonexistent/corp.map' "$CONF" > "$T/corp.conf"
"$RG_ADMIN" -c "$T/corp.conf" import --source corp "$T/import.map" >"$T/out" 2>"$T/err"
tl_is "$?" 1 "import into a [source NAME] of rcptgate.conf exits 1"
tl_like "$(cat "$T/err")" "source corp is a \[source corp\] of .*rcptgate-syncd pulls" "... saying whose it is"
if [ -x "$POSTMAP" ]; then
    "$POSTMAP" -c "$T/postfix" -q bob@example.com "texthash:$T/import.map" >"$T/out" 2>"$T/err"
    tl_is "$?:$(cat "$T/out")" "0:OK" "postmap reads the export"
fi
printf 'alice@example.com OK\n' > "$T/shrink.map"
tl_admin export --source import >"$T/before"
run import "$T/shrink.map"
tl_is "$rc" 65 "a file that would remove 3 of 4 recipients is refused by the shrink guard (65)"
tl_like "$(cat "$T/err")" "shrink guard: .*remove 3 of the source's 4 recipients .*max_remove_share = 10%" \
    "and says why"
tl_like "$(cat "$T/err")" "shrink.map would remove: @xn--bcher-kva.example, bob@example.com, carol@example.com$" \
    "and names what would go"
tl_like "$(cat "$T/err")" "import --force" "and how to apply it anyway"
tl_admin export --source import >"$T/after"
tl_ok "$(cmp -s "$T/before" "$T/after"; echo $?)" "the refused import changed nothing"
run stats
tl_like "$(cat "$T/out")" "import +import +4 recipients, last run .* refused: .*shrink.map: it would remove 3" \
    "stats shows the refused run"
# the guard reads [syncd] max_remove_share and max_remove_count, as syncd's full pulls do
sed 's/^\[syncd\]$/[syncd]\nmax_remove_share = 80/' "$CONF" > "$T/share.conf"
sed 's/^\[syncd\]$/[syncd]\nmax_remove_share = 80\nmax_remove_count = 2/' "$CONF" > "$T/count.conf"
run import --source guarded "$T/import.map"
tl_is "$rc" 0 "a fresh source takes the 4 recipients"
"$RG_ADMIN" -c "$T/count.conf" import --source guarded "$T/shrink.map" >"$T/out" 2>"$T/err"
tl_is "$?" 65 "max_remove_count = 2 refuses removing 3"
tl_like "$(cat "$T/err")" "max_remove_count = 2" "and names the setting"
"$RG_ADMIN" -c "$T/share.conf" import --source guarded "$T/shrink.map" >"$T/out" 2>"$T/err"
tl_is "$?" 0 "max_remove_share = 80 lets 3 of 4 (75%) go"
run import --force "$T/shrink.map"
tl_is "$rc" 0 "--force applies it"
tl_is "$(cat "$T/out")" "imported 1 recipients into source import: 0 added, 0 changed, 3 removed" \
    "a smaller file removes what it lacks"
tl_like "$(cat "$T/err")" "--force: applying although it would remove 3" "with a warning"
run query bob@example.com
tl_is "$rc" 0 "an address another source holds stays valid"
tl_like "$(cat "$T/out")" "^source: +copy" "and now comes from that source"

# --- stats
run stats
tl_is "$rc" 0 "stats exits 0"
tl_like "$(cat "$T/out")" "domains: +2" "stats counts domains"
tl_like "$(cat "$T/out")" "import +import +1 recipients, last run [0-9T:-]*Z import ok \(\+0 ~0 -3\)" \
    "stats shows a source's last run, an import"
tl_like "$(cat "$T/out")" "no statistics \(not running\?\)" "stats without lookupd says so"
now=$(date +%s)
printf 'started %s\nupdated %s\npid %s\nconnections_total 7\nconnections_current 1\nsocketmap.recipients.ok 42\n' \
    "$now" "$now" "$$" > "$T/lookupd.stats"
run stats
tl_like "$(cat "$T/out")" "socketmap recipients +ok 42 notfound 0" "stats shows lookupd's counters"
tl_ok "$(grep -q STALE "$T/out"; echo $((1 - $?)))" "fresh counters are not stale"
printf 'started 1\nupdated 100\npid %s\n' "$$" > "$T/lookupd.stats"
run stats
tl_like "$(cat "$T/out")" "STALE" "old counters are marked stale"

tl_done
