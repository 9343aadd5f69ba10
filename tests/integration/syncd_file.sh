#!/bin/sh
# syncd_file.sh - rcptgate-syncd's file source, and two sources in one store
#
# A source of type file reads a Postfix map file by the rules of
# `rcptgate import`: synced, changed, synced again; a malformed line or a
# missing file fails the run (75) and applies nothing. One file synced by
# a file source and imported by `rcptgate import` gives the same
# recipients (the tables dumped and compared), and a bad line the same
# error. Then a file source
# and an LDAP source (a private slapd) feed one store, each owning its
# own entries: an address both hold stays valid while either holds it,
# and --source syncs one of them alone.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init syncd_file
syncd_require

MAP="$T/recipients.map"

# file_conf - [syncd] and the file source "files"
file_conf() {
    syncd_conf_reset
    slapd_syncd_conf
    file_source
}

# file_source - append the file source "files"
file_source() {
    printf '\n[source files]\ntype = file\npath = %s\n' "$MAP" >> "$CONF"
}

# write_map FIRST LAST [EXTRA LINE...] - fNN@file.example for FIRST..LAST, then extra lines
write_map() {
    {
        echo "# recipients of file.example"
        i=$1
        while [ "$i" -le "$2" ]; do
            printf 'f%02d@file.example OK\n' "$i"
            i=$((i + 1))
        done
        shift 2
        for l in "$@"; do
            echo "$l"
        done
    } > "$MAP.tmp" && mv "$MAP.tmp" "$MAP"
}

# count SOURCE - recipients of a source
count() {
    syncd_sql "SELECT count(*) FROM recipient r JOIN source s ON s.id = r.source_id WHERE s.name = '$1'"
}

tl_admin domain add file.example >/dev/null 2>&1
tl_admin domain add both.example >/dev/null 2>&1

# --- a file source alone
write_map 0 19 "Shared@Both.Example OK"
file_conf
syncd_once
tl_is "$rc" 0 "--once with a file source exits 0"
tl_is "$(count files)" 21 "21 recipients from the file"
tl_is "$(syncd_sql "SELECT type FROM source WHERE name = 'files'")" file "the source is recorded as type file"
tl_is "$(rg_query f00@file.example)" 0 "an entry of the file is valid"
tl_is "$(rg_query shared@both.example)" 0 "an entry in mixed case is valid"
tl_is "$(rg_query f20@file.example)" 1 "an address not in the file is not"

write_map 0 18 "shared@both.example OK" "f20@file.example OK"
syncd_once
tl_is "$rc" 0 "after a change of the file: exits 0"
tl_is "$(rg_query f19@file.example)" 1 "a line removed from the file is gone"
tl_is "$(rg_query f20@file.example)" 0 "a line added is valid"

# --- failures apply nothing
syncd_dump > "$T/before"
{
    echo "f00@file.example OK"
    echo "f21@file.example OK"
    echo "frank@@file.example OK"
    echo "f22@file.example OK"
} > "$MAP"
syncd_once
tl_is "$rc" 75 "a malformed line: 75"
tl_like "$(cat "$T/syncd.err")" "recipients\\.map:3" "the message names file and line"
rm -f "$MAP"
syncd_once
tl_is "$rc" 75 "a missing file: 75"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "neither failure changed the store"
tl_is "$(rg_query f21@file.example)" 1 "an entry of the bad file is not applied"

# --- the daemon: a reload that changes a restart-only parameter (pid_file)
# is logged once and ignored; the daemon keeps and removes its own pid file
write_map 0 18 "shared@both.example OK" "f20@file.example OK"
file_conf
grep -q "^pid_file = $T/syncd.pid\$" "$CONF"
tl_ok $? "the daemon's config names pid_file $T/syncd.pid"
rm -f "$T/syncd.pid" "$T/moved.pid"
: > "$T/syncd_daemon.err"
"$RG_SYNCD" -c "$CONF" -f 2>>"$T/syncd_daemon.err" &
spid=$!
tl_pids="$tl_pids $spid"
tl_wait_grep "starting: 1 source" "$T/syncd_daemon.err"
tl_ok $? "the daemon starts"
tl_wait_grep "^$spid\$" "$T/syncd.pid"
tl_ok $? "... and writes its pid file"
sed -i "s|^pid_file = $T/syncd.pid\$|pid_file = $T/moved.pid|" "$CONF"
kill -HUP "$spid"
tl_wait_grep "reloaded .*: 1 source" "$T/syncd_daemon.err"
tl_ok $? "SIGHUP: reloaded"
tl_is "$(grep -c 'reload: \[syncd\] pid_file changes take effect only after a restart; ignored' "$T/syncd_daemon.err")" 1 \
    "a new pid_file: logged once as ignored"
tl_ok $([ ! -e "$T/moved.pid" ] && [ "$(cat "$T/syncd.pid" 2>/dev/null)" = "$spid" ]; echo $?) \
    "... the running pid file stays, none is made at the new path"
kill -TERM "$spid"
wait "$spid"
tl_is "$?" 0 "SIGTERM: exit status 0"
tl_pids=$(echo "$tl_pids" | sed "s/ $spid//")
tl_ok $([ ! -e "$T/syncd.pid" ]; echo $?) "... and the pid file it started with is removed"
[ "$tl_failed" = 0 ] || sed 's/^/# /' "$T/syncd_daemon.err"
# --- one reader: `rcptgate import` and type = file take a file the same way
write_map 0 18 "shared@both.example OK" "f20@file.example OK"
printf '# comments, blanks, continuations, case, white space, repeats, a catch-all, CR LF\n' > "$T/same.map"
printf '   # an indented comment\n\n \t \nAlice@File.EXAMPLE\tOK\n' >> "$T/same.map"
printf 'bob@file.example   some value   \ncarol@file.example\n    OK\n# between\n  and more\n' >> "$T/same.map"
printf '@B\303\274cher.example OK\ndup@file.example OK\nDUP@File.Example x\n<dan@file.example> OK\n' >> "$T/same.map"
printf 'crlf@file.example OK\r\n"Erin"@file.example OK\nlast@file.example OK' >> "$T/same.map"
file_conf
printf '\n[source same]\ntype = file\npath = %s\n' "$T/same.map" >> "$CONF"
syncd_once --source same
tl_is "$rc" 0 "a file source reads the tricky file"
tl_admin import --source imp "$T/same.map" >"$T/imp.out" 2>"$T/imp.err"
tl_is "$?" 0 "rcptgate import reads the same file"
rows() {
    syncd_sql "SELECT r.address, r.kind, r.flags FROM recipient r JOIN source s ON s.id = r.source_id
               WHERE s.name = '$1' ORDER BY r.address"
}
rows same > "$T/same.rows"
rows imp > "$T/imp.rows"
tl_is "$(wc -l < "$T/same.rows")" 9 "9 distinct recipients from the file"
tl_is "$(cut -f1 "$T/same.rows" | tr '\n' ' ')" \
    "@xn--bcher-kva.example alice@file.example bob@file.example carol@file.example crlf@file.example dan@file.example dup@file.example erin@file.example last@file.example " \
    "in their normal forms"
cmp -s "$T/same.rows" "$T/imp.rows"
tl_is "$?" 0 "import and type = file store the same rows (address, kind, flags)"
tl_is "$(tl_admin export --source same | cksum)" "$(tl_admin export --source imp | cksum)" \
    "and export the same map"
# a bad line: the same error from both, nothing applied by either
printf 'ok1@file.example OK\nok2@file.example OK\n<> OK\nok3@file.example OK\n' > "$T/same.map"
rows same > "$T/same.before"
rows imp > "$T/imp.before"
syncd_once --source same
tl_is "$rc" 75 "a null sender line fails the file source"
tl_admin import --source imp "$T/same.map" >"$T/imp.out" 2>"$T/imp.err"
tl_is "$?" 1 "and the import"
err_of() { grep -o 'same\.map:[0-9]*: .*' "$1" | head -1 | sed 's/[;.] *nothing.*//'; }
tl_like "$(err_of "$T/syncd.err")" 'same\.map:3: "<>": the null sender <> is not a recipient' \
    "the file source names line 3 and why"
tl_is "$(err_of "$T/imp.err")" "$(err_of "$T/syncd.err")" "the import says the same"
rows same > "$T/same.after"
rows imp > "$T/imp.after"
cmp -s "$T/same.before" "$T/same.after" && cmp -s "$T/imp.before" "$T/imp.after"
tl_is "$?" 0 "neither applied anything"

# --- a file source and an LDAP source in one store
why=$(slapd_missing)
if [ -n "$why" ]; then
    tl_n=$((tl_n + 1))
    echo "ok $tl_n # SKIP two sources: $why"
    tl_done
    exit $?
fi
S=$SLAPD_SUFFIX
PEOPLE="ou=People,$S"
slapd_init || tl_bail "slapd_init failed"
awk -v base="$PEOPLE" 'BEGIN {
    printf "dn: %s\nobjectClass: organizationalUnit\nou: People\n\n", base
    for (i = 0; i < 20; i++) {
        printf "dn: uid=l%02d,%s\nobjectClass: inetOrgPerson\n", i, base
        printf "uid: l%02d\ncn: L %d\nsn: L\nmail: l%02d@both.example\n\n", i, i, i
    }
    printf "dn: uid=shared,%s\nobjectClass: inetOrgPerson\n", base
    printf "uid: shared\ncn: Shared\nsn: Shared\nmail: shared@both.example\n\n"
}' > "$T/people.ldif"
slapd_load "$T/people.ldif" && slapd_start ||
    { tl_ok 1 "slapd with 21 people starts"; tl_done; exit 1; }

write_map 0 18 "shared@both.example OK" "f20@file.example OK"
syncd_conf_reset
slapd_syncd_conf
file_source
slapd_source ldap generic "base=$PEOPLE"
syncd_once
tl_is "$rc" 0 "--once with a file and an LDAP source exits 0"
tl_is "$(count files) $(count ldap)" "21 21" "each source holds its 21 recipients"
tl_is "$(syncd_sql "SELECT count(*) FROM recipient WHERE address = 'shared@both.example'")" 2 \
    "an address in both sources is held by each"
tl_is "$(rg_query l00@both.example)" 0 "an LDAP entry is valid"

# the file drops the shared address: the LDAP source still holds it
write_map 0 18 "f20@file.example OK" "f22@file.example OK"
syncd_once --source files
tl_is "$rc" 0 "--source files exits 0"
tl_is "$(rg_query f22@file.example)" 0 "the file's change is applied"
tl_is "$(rg_query shared@both.example)" 0 "the shared address is still valid (the LDAP source holds it)"
tl_is "$(syncd_sql "SELECT s.name FROM recipient r JOIN source s ON s.id = r.source_id WHERE r.address = 'shared@both.example'")" ldap \
    "and only the LDAP source holds it now"

# --source ldap leaves the file's entries alone
slapd_delete "uid=shared,$PEOPLE"
slapd_add <<EOF
dn: uid=l20,$PEOPLE
objectClass: inetOrgPerson
uid: l20
cn: L 20
sn: L
mail: l20@both.example
EOF
write_map 0 18 "f20@file.example OK" "f22@file.example OK" "f23@file.example OK"
syncd_once --source ldap
tl_is "$rc" 0 "--source ldap exits 0"
tl_is "$(rg_query l20@both.example)" 0 "the LDAP addition is applied"
tl_is "$(rg_query shared@both.example)" 1 "the shared address, now in neither source, is gone"
tl_is "$(rg_query f23@file.example)" 1 "the file source was not synced"
tl_is "$(count files)" 21 "the file source's entries are untouched"

syncd_once --source nosuch
tl_ok "$([ "$rc" != 0 ]; echo $?)" "--source with an unknown name fails (got $rc)"

# both again: the file change arrives, nothing else moves
syncd_once
tl_is "$rc" 0 "both sources again: exits 0"
tl_is "$(rg_query f23@file.example)" 0 "the file's pending change is applied"
tl_is "$(count files) $(count ldap)" "22 21" "22 and 21 recipients"

# ---- export_file while a source has never synced: a map without its
# addresses would make Postfix refuse them as unknown, so none is written
syncd_conf_reset
file_source
printf '\n[source later]\ntype = file\npath = %s\n' "$T/later.map" >> "$CONF"
printf '\n[syncd]\nexport_file = %s\n' "$T/export.map" >> "$CONF"
syncd_once
tl_is "$rc $([ -e "$T/export.map" ] && echo written || echo absent)" "75 absent" \
    "export_file: not written while a source has never synced (its map is missing: 75)"
grep -q 'export_file .* not written yet: source later has never synced' "$T/syncd.err"
tl_ok $? "... the log says why"
printf 'late@later.example OK\n' > "$T/later.map"
syncd_once
tl_is "$rc $(grep -c '^late@later\.example' "$T/export.map" 2>/dev/null) $(grep -c '^f01@file\.example' "$T/export.map" 2>/dev/null)" \
    "0 1 1" "once it has synced: written, with both sources' addresses"

# --- --once with a store directory that does not exist, staying who we are
# ([syncd] user empty): 73 and the fix, not a bare SQLite error and 75
syncd_conf_reset
file_source
sed -i "s|^path = $STORE\$|path = $T/no-such-dir/store.db|" "$CONF"
syncd_once
tl_is "$rc" 73 "--once, store directory missing, no [syncd] user: exit 73"
tl_like "$(cat "$T/syncd.err")" "store directory $T/no-such-dir does not exist: mkdir -p -m 0750 $T/no-such-dir" \
    "... naming the directory and the fix"
# ... but a place written after the sync (export_file) does not stop the sync itself
syncd_conf_reset
file_source
printf '\n[syncd]\nexport_file = %s/no-export-dir/export.map\n' "$T" >> "$CONF"
syncd_once
tl_is "$rc" 75 "--once, export_file's directory missing: the sync is applied, the export fails (75)"
tl_like "$(cat "$T/syncd.err")" "full sync applied" "... the sync itself was applied"

tl_done
