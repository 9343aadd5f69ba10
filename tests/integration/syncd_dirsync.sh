#!/bin/sh
# syncd_dirsync.sh - rcptgate-syncd's incremental pulls by DirSync (flavour ad)
#
# One Samba AD domain controller (tests/lib/samba.sh) for the whole
# script. With incremental = auto and the Administrator (who holds
# "Replicating Directory Changes"), a full pull stores a DirSync cookie
# ("dirsync:" + base64) and each `--once --incremental` after it is a
# DirSync pull, recorded as incremental: a user added, an address changed,
# a user disabled, a group added with members and a member removed, a
# contact whose mail attributes were cleared, and a user and a group
# deleted (their tombstones matched by objectGUID) -- each checked in the
# store right after. Then incremental = usn with the same changes: the
# cookie is a USN, and a deletion is found through the show-deleted
# control on the Deleted Objects container. Then a bind account without
# the right: auto falls back to uSNChanged (logged, a USN stored),
# incremental = dirsync refuses to run (exit 75, the log names the right
# to grant); a stored DirSync cookie under incremental = usn, or one the
# controller cannot read, makes the next pull a full one. Last, a SASL
# GSSAPI bind with a keytab against Samba's own KDC (a private krb5.conf
# under the test directory; skipped without Cyrus SASL's GSSAPI module),
# and one with a keytab that holds no key of the user (exit 75).

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"
. "$top_srcdir/tests/lib/samba.sh"

tl_init syncd_dirsync
SAMBA_SERVICES="ldap, kdc"
samba_require
syncd_require

S=$SAMBA_SUFFIX
OU="OU=DirSync,$S"
OTHER="OU=Elsewhere,$S"
READER_PW="Reader-Pw-12345"

samba_init || { echo "not ok 1 - the Samba domain is provisioned"; echo "1..1"; exit 1; }
samba_start || { echo "not ok 1 - samba starts"; echo "1..1"; exit 1; }
echo "# samba $SAMBA_PID on $SAMBA_URI"

# last_run NAME - mode outcome added changed removed of the source's latest run
last_run() {
    syncd_sql "SELECT r.mode, r.outcome, r.added, r.changed, r.removed FROM sync_run r
               JOIN source s ON s.id = r.source_id WHERE s.name = '$1'
               ORDER BY r.id DESC LIMIT 1" | tr '\t' ' '
}

# cookie_kind NAME - "dirsync", "usn" or "none" for the stored state
cookie_kind() {
    syncd_sql "SELECT CASE WHEN cookie LIKE 'dirsync:%' THEN 'dirsync'
                           WHEN cookie GLOB '[0-9]*' THEN 'usn' ELSE 'none' END
               FROM source WHERE name = '$1'"
}

# members DN - how many members the stored group has
members() {
    syncd_sql "SELECT count(*) FROM member m JOIN object g ON g.id = m.group_id WHERE g.dn = '$1'"
}

# fresh_store - a new store for the next part (each part its own source)
fresh_store() {
    rm -f "$STORE" "$STORE-wal" "$STORE-shm"
    tl_admin domain add test.example.com >/dev/null 2>&1
    tl_admin domain add partner.example >/dev/null 2>&1
}

# user NAME ADDRESS [UAC] - LDIF of a mail user in $OU
user() {
    printf 'dn: CN=%s,%s\nobjectClass: user\nsAMAccountName: %s\nuserAccountControl: %s\nproxyAddresses: SMTP:%s\n\n' \
        "$1" "$OU" "$1" "${3:-544}" "$2"
}

samba_add <<EOF
dn: $OU
objectClass: organizationalUnit

dn: $OTHER
objectClass: organizationalUnit

dn: CN=Vendor,$OU
objectClass: contact
mail: vendor@partner.example
EOF
tl_is "$?" 0 "the OUs and a contact are created"
{ user ann ann@test.example.com; user ben ben@test.example.com; } | samba_add
tl_is "$?" 0 "two users are created"
# A user in another OU: DirSync returns it, but it is not the source's.
printf 'dn: CN=outsider,%s\nobjectClass: user\nsAMAccountName: outsider\nuserAccountControl: 544\nproxyAddresses: SMTP:outsider@test.example.com\n' "$OTHER" |
    samba_add
samba_user reader "$READER_PW"
tl_is "$?" 0 "a bind account without Replicating Directory Changes is created"
fresh_store

# ======================================================= DirSync (auto)
syncd_conf_reset
slapd_syncd_conf max_remove_share=100
samba_source ds "base=$OU"
syncd_once
tl_is "$rc" 0 "the first full pull exits 0"
[ "$rc" = 0 ] || sed 's/^/#   /' "$T/syncd.err" | tail -5
tl_is "$(last_run ds)" "full ok 3 0 0" "it adds ann, ben and the contact"
tl_is "$(cookie_kind ds)" dirsync "with the Administrator, auto stores a DirSync cookie"
rg_invalid outsider@test.example.com

syncd_once --incremental
tl_is "$rc" 0 "a DirSync pull without changes exits 0"
tl_is "$(last_run ds)" "incremental ok 0 0 0" "recorded as incremental, nothing changed"

# --- add
user cay cay@test.example.com | samba_add
syncd_once --incremental
tl_is "$(last_run ds)" "incremental ok 1 0 0" "an added user: incremental, 1 added"
rg_valid cay@test.example.com

# --- modify an address
samba_modify <<EOF
dn: CN=ann,$OU
changetype: modify
add: proxyAddresses
proxyAddresses: smtp:ann.new@test.example.com
-
delete: proxyAddresses
proxyAddresses: SMTP:ann@test.example.com
-
add: proxyAddresses
proxyAddresses: SMTP:ann.primary@test.example.com
EOF
syncd_once --incremental
tl_is "$(last_run ds)" "incremental ok 2 0 1" "a changed address: incremental, 2 added, 1 removed"
rg_valid ann.new@test.example.com ann.primary@test.example.com
rg_invalid ann@test.example.com

# --- disable a user
samba_modify <<EOF
dn: CN=ben,$OU
changetype: modify
replace: userAccountControl
userAccountControl: 514
EOF
syncd_once --incremental
tl_is "$(last_run ds)" "incremental ok 0 0 1" "a disabled user: incremental, 1 removed"
rg_invalid ben@test.example.com

# --- a group with two members, then one member removed
samba_add <<EOF
dn: CN=team,$OU
objectClass: group
sAMAccountName: team
mail: team@test.example.com
member: CN=ann,$OU
member: CN=cay,$OU
EOF
syncd_once --incremental
tl_is "$(last_run ds)" "incremental ok 1 0 0" "an added group: incremental, 1 added"
rg_valid team@test.example.com
tl_is "$(members "CN=team,$OU")" 2 "the group has its two members"
samba_modify <<EOF
dn: CN=team,$OU
changetype: modify
delete: member
member: CN=cay,$OU
EOF
syncd_once --incremental
tl_is "$(last_run ds | cut -d' ' -f1,2)" "incremental ok" "a removed member: incremental"
tl_is "$(members "CN=team,$OU")" 1 "the group has one member left (Samba's uSNChanged would not show it)"

# --- a contact whose mail is cleared; a change outside the bases
samba_modify <<EOF
dn: CN=Vendor,$OU
changetype: modify
delete: mail
EOF
printf 'dn: CN=outsider,%s\nchangetype: modify\nreplace: proxyAddresses\nproxyAddresses: SMTP:outsider2@test.example.com\n' "$OTHER" |
    samba_modify
syncd_once --incremental
tl_is "$(last_run ds)" "incremental ok 0 0 1" "a contact without mail: incremental, 1 removed"
rg_invalid vendor@partner.example outsider2@test.example.com

# --- delete a user and the group: tombstones, matched by objectGUID
samba_delete "CN=cay,$OU" "CN=team,$OU"
tl_is "$?" 0 "a user and a group are deleted in Samba"
syncd_once --incremental
tl_is "$(last_run ds)" "incremental ok 0 0 2" "the deletions: incremental, 2 removed"
rg_invalid cay@test.example.com team@test.example.com
tl_is "$(syncd_sql "SELECT count(*) FROM object WHERE dn IN ('CN=cay,$OU', 'CN=team,$OU')")" 0 \
    "their objects are gone"
rg_valid ann.primary@test.example.com
tl_is "$(syncd_sql "SELECT count(*) FROM sync_run r JOIN source s ON s.id = r.source_id
                    WHERE s.name = 'ds' AND r.mode = 'full'")" 1 "only the first pull of the source was full"
tl_admin stats >"$T/stats.out" 2>&1
tl_like "$(grep ' ds ' "$T/stats.out")" "incremental ok \\(\\+0 ~0 -2\\), last full pull [0-9T:-]*Z\$" \
    "rcptgate stats shows the last run, incremental, and when the last full pull was"

# --- a full pull agrees with what the DirSync pulls made
syncd_once
tl_is "$(last_run ds)" "full ok 0 0 0" "a full reconciliation finds nothing left to change"
tl_is "$(cookie_kind ds)" dirsync "and stores a new DirSync cookie"

# --- a cookie the controller cannot read: a full pull, and a good cookie again
syncd_sql "UPDATE source SET cookie = 'dirsync:AAAAAAAA' WHERE name = 'ds'"
syncd_once --incremental
tl_is "$rc" 0 "a DirSync cookie the controller refuses: exit 0"
tl_is "$(last_run ds)" "full ok 0 0 0" "the pull is a full one"
tl_like "$(cat "$T/syncd.err")" "a full pull is needed: DirSync from the stored cookie: " "the log says why"
tl_is "$(cookie_kind ds)" dirsync "and a new DirSync cookie is stored"

# --- the stored cookie, but DirSync switched off: a full pull
syncd_conf_reset
slapd_syncd_conf max_remove_share=100
samba_source ds "base=$OU" "incremental=usn"
syncd_once --incremental
tl_is "$(last_run ds)" "full ok 0 0 0" "a DirSync cookie under incremental = usn: a full pull"
# (incremental is one of the settings stored with the cookie: the change itself asks for it)
tl_like "$(cat "$T/syncd.err")" "a full pull is needed: the source's settings changed since the stored sync state was taken" \
    "the log says why"
tl_is "$(cookie_kind ds)" usn "which stores a USN"

# ======================================================= uSNChanged + show-deleted
fresh_store
user dan dan@test.example.com | samba_add
syncd_once --incremental
tl_is "$(last_run ds)" "full ok 3 0 0" "incremental = usn: the first pull is full (ann's two addresses, dan)"
tl_is "$(cookie_kind ds)" usn "and stores a USN"
user eve eve@test.example.com | samba_add
syncd_once --incremental
tl_is "$(last_run ds)" "incremental ok 1 0 0" "an added user: incremental by uSNChanged"
samba_delete "CN=dan,$OU"
syncd_once --incremental
tl_is "$(last_run ds)" "incremental ok 0 0 1" "a deleted user: found through show-deleted, incremental"
rg_invalid dan@test.example.com
rg_valid eve@test.example.com

# ======================================================= an account without the right
fresh_store
syncd_conf_reset
slapd_syncd_conf max_remove_share=100
samba_source reader "base=$OU" "bind_dn=CN=reader,CN=Users,$S"
printf '%s' "$READER_PW" > "$T/reader.password"
syncd_once
tl_is "$rc" 0 "auto with an account DirSync refuses: the full pull exits 0"
tl_like "$(cat "$T/syncd.err")" "incremental pulls by uSNChanged: the directory refuses DirSync" \
    "the fallback is logged"
tl_is "$(cookie_kind reader)" usn "a USN is stored"
user fay fay@test.example.com | samba_add
syncd_once --incremental
tl_is "$(last_run reader)" "incremental ok 1 0 0" "the next pull is incremental by uSNChanged"
rg_valid fay@test.example.com

syncd_conf_reset
slapd_syncd_conf max_remove_share=100
samba_source reader "base=$OU" "bind_dn=CN=reader,CN=Users,$S" "incremental=dirsync"
printf '%s' "$READER_PW" > "$T/reader.password"
syncd_dump > "$T/before"
syncd_once
tl_is "$rc" 75 "incremental = dirsync with an account DirSync refuses: exit 75"
tl_like "$(cat "$T/syncd.err")" "Replicating Directory Changes" "the log names the right to grant"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "and nothing is applied"

# ======================================================= GSSAPI with a keytab
why=$(samba_gssapi_missing)
if [ -z "$why" ] && ! samba_krb5 syncer "Syncer-Pw-12345"; then
    why="the Kerberos user or its keytab could not be made (see $SAMBA_DIR/samba-tool.log)"
fi
if [ -z "$why" ]; then
    fresh_store
    syncd_conf_reset
    slapd_syncd_conf max_remove_share=100
    samba_source krb "base=$OU" "bind_dn=" "bind_password_file=" "sasl_mech=GSSAPI"
    syncd_once
    tl_is "$rc" 0 "a SASL GSSAPI bind with the keytab of a domain user: exit 0"
    [ "$rc" = 0 ] || sed 's/^/#   /' "$T/syncd.err" | tail -5
    tl_is "$(last_run krb)" "full ok 4 0 0" "the pull is applied (ann's two addresses, eve, fay)"
    rg_valid ann.primary@test.example.com fay@test.example.com
    tl_ok "$([ -s "$T/syncer.ccache" ]; echo $?)" "the ticket came from Samba's KDC into the test's own cache"
    KRB5_CLIENT_KTNAME="$T/empty.keytab"
    rm -f "$T/syncer.ccache"
    : > "$T/empty.keytab"
    syncd_once
    tl_is "$rc" 75 "a keytab without the user's keys: exit 75"
    tl_like "$(cat "$T/syncd.err")" "SASL GSSAPI bind" "the log names the GSSAPI bind"
    unset KRB5_CONFIG KRB5_CLIENT_KTNAME KRB5CCNAME
else
    echo "# GSSAPI binds not tested: $why"
fi

# ======================================================= a filter on an attribute of its own
# DirSync returns an object only when an attribute it asks for changed:
# the filter's department must be among them, or leaving the filter is
# never seen by an incremental pull (nor is entering it).
FOU="OU=Filtered,$S"
samba_add <<EOF
dn: $FOU
objectClass: organizationalUnit

dn: CN=dept,$FOU
objectClass: user
sAMAccountName: dept
userAccountControl: 544
department: Staff
proxyAddresses: SMTP:dept@test.example.com

dn: CN=stay,$FOU
objectClass: user
sAMAccountName: stay
userAccountControl: 544
department: Staff
proxyAddresses: SMTP:stay@test.example.com
EOF
tl_is "$?" 0 "two users with a department are created"
fresh_store
syncd_conf_reset
slapd_syncd_conf max_remove_share=100
samba_source filt "base=$FOU" "incremental=dirsync" \
    "filter=(&(objectClass=user)(proxyAddresses=*)(!(department=Former)))"
syncd_once
tl_is "$(last_run filt)" "full ok 2 0 0" "a filter on department: the full pull adds dept and stay"
department() {
    printf 'dn: CN=dept,%s\nchangetype: modify\nreplace: department\ndepartment: %s\n' "$FOU" "$1" | samba_modify
}
department Former
syncd_once --incremental
tl_is "$(last_run filt)" "incremental ok 0 0 1" "department set to Former: the DirSync pull removes dept"
rg_invalid dept@test.example.com
department Staff
syncd_once --incremental
tl_is "$(last_run filt)" "incremental ok 1 0 0" "back to Staff: the DirSync pull adds it again"
rg_valid dept@test.example.com

samba_stop
tl_done
