#!/bin/sh
# syncd_ad.sh - rcptgate-syncd's Active Directory flavour against a real slapd
#
# A private slapd (tests/lib/slapd.sh) holds tests/fixtures/directory.ldif:
# AD's attribute names on every kind of recipient and every rule of the
# ad flavour. Its size limit (10) is far below the entry count, so only a
# paged pull sees everything. The test syncs with `rcptgate-syncd --once`
# and checks the store with `rcptgate query` (as Postfix would get it) and
# sqlite3: kinds, the disabled-account rule and its shared-mailbox
# exception, proxyAddresses prefixes, logins, nested groups, the
# restricted flag, and the whole result against tests/golden/directory.ref.
# Then a second search base, 1,600 bulk-loaded users and a group with all
# of them as members, and changes: an address renamed, a user deleted, one
# disabled, one enabled, a shared mailbox turned into a plain one.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init syncd_ad
slapd_require
syncd_require

S=$SLAPD_SUFFIX
USERS="ou=Users,$S"
DLS="ou=Exchange Distribution Lists,$S"
PFS="ou=Microsoft Exchange System Objects,$S"

slapd_init || tl_bail "slapd_init failed"
slapd_load "$top_srcdir/tests/fixtures/directory.ldif" || { echo "not ok 1 - fixture loads"; echo "1..1"; exit 1; }
slapd_start || { echo "not ok 1 - slapd starts"; echo "1..1"; exit 1; }

# last_run - outcome added changed removed of the source's latest run
last_run() {
    syncd_sql "SELECT r.outcome, r.added, r.changed, r.removed FROM sync_run r
               JOIN source s ON s.id = r.source_id WHERE s.name = 'ad'
               ORDER BY r.id DESC LIMIT 1" | tr '\t' ' '
}

# --- the fixture is what the tests assume
ldapsearch -x -LLL -H "$SLAPD_URI" -D "$SLAPD_SYNC_DN" -w "$SLAPD_SYNC_PW" \
    -b "$USERS" '(objectClass=*)' 1.1 >/dev/null 2>&1
tl_is "$?" 4 "fixture: an unpaged search of OU=Users by the sync account hits the size limit"
tl_is "$(slapd_count "$USERS" '(objectClass=*)')" 18 "fixture: a paged search sees all 18 entries"

tl_admin domain add test.example >/dev/null 2>&1
tl_admin domain add bücher.example >/dev/null 2>&1
tl_admin domain add eve.example >/dev/null 2>&1

# --- one base: users, mailboxes and contacts, no groups yet
syncd_conf_reset
slapd_syncd_conf
slapd_source ad ad "base=$USERS"
"$RG_SYNCD" -c "$CONF" -n >"$T/syncd.out" 2>"$T/syncd.err"
tl_is "$?" 0 "rcptgate-syncd -n accepts the configuration"
syncd_once
tl_is "$rc" 0 "--once with one base exits 0"
rg_valid alice@test.example
rg_invalid sales@test.example
tl_is "$(last_run)" "ok 18 0 0" "the run is recorded: 18 addresses added"

# --- three bases: groups and the public folder too
syncd_conf_reset
slapd_syncd_conf
slapd_source ad ad "base=$USERS" "base=$DLS" "base=$PFS"
syncd_once
tl_is "$rc" 0 "--once with three bases exits 0"
tl_is "$(last_run)" "ok 10 0 0" "the second and third base add 10 addresses, remove none"

# kinds and the account rules
rg_valid alice@test.example alice.smith@test.example a.smith@test.example \
    Bob.Jones@Test.Example grace@test.example dave@test.example \
    info@test.example contact-us@test.example room.berlin@test.example \
    beamer@test.example helpdesk@test.example ext.user@test.example \
    eve@test.example eve.second@test.example \
    juergen@bücher.example J.Mueller@xn--bcher-kva.example \
    vendor.contact@test.example \
    sales@test.example sales-emea@test.example sales-de@test.example \
    staff@test.example all-staff@test.example board@test.example \
    empty-list@test.example all-employees@test.example \
    support-folder@test.example pf.support@test.example
rg_invalid carol@test.example frank@test.example alice.sip@test.example \
    alice.eum@test.example ws01@test.example outsider@test.example \
    nobody@test.example
tl_is "$(syncd_sql "SELECT count(*) FROM recipient WHERE address LIKE '@%'")" 0 \
    "no catch-all came from the value \"smtp:@eve.example\""
rg_invalid anyone@eve.example
tl_is "$(syncd_sql "SELECT kind FROM recipient WHERE address = 'vendor@partner.example'")" contact \
    "a contact's external address is stored too"

kind() {
    syncd_sql "SELECT kind || ' ' || flags FROM recipient WHERE address = '$1'"
}
tl_is "$(kind alice@test.example)" "user 0" "a mailbox user: kind user"
tl_is "$(kind info@test.example)" "shared 0" "a disabled shared mailbox: kind shared"
tl_is "$(kind room.berlin@test.example)" "shared 0" "a room: kind shared"
tl_is "$(kind helpdesk@test.example)" "shared 0" "a remote shared mailbox (34359738368): kind shared"
tl_is "$(kind ext.user@test.example)" "user 0" "a mail user: kind user"
tl_is "$(kind vendor.contact@test.example)" "contact 0" "a contact: kind contact"
tl_is "$(kind staff@test.example)" "group 0" "a mail-enabled security group: kind group"
tl_is "$(kind board@test.example)" "group 1" "a restricted group: flag 1 (internal senders only)"
tl_is "$(kind sales@test.example)" "group 0" "msExchRequireAuthToSendTo FALSE: no flag"
tl_is "$(kind all-employees@test.example)" "group 0" "a dynamic distribution group: kind group"
tl_is "$(kind support-folder@test.example)" "publicfolder 0" "a public folder: kind publicfolder"

# what rcptgate query says about an entry
rg_query alice.smith@test.example >/dev/null
tl_like "$(cat "$T/query.out")" "dn: +cn=Alice Smith,ou=Users,dc=test,dc=example" "query names the directory object"
tl_like "$(cat "$T/query.out")" "source: +ad$" "query names the source"
guid=$(slapd_search -b "cn=Alice Smith,$USERS" -s base objectGUID | sed -n 's/^objectGUID:: //p' |
    base64 -d | od -An -tx1 | tr -d ' \n')
tl_is "$(syncd_sql "SELECT lower(guid) FROM object WHERE dn = 'cn=Alice Smith,$USERS'")" "$guid" \
    "the object's guid is objectGUID in hex"
tl_like "$(cat "$T/query.out")" "guid: +$guid" "query shows the guid"
rg_query board@test.example >/dev/null
tl_like "$(cat "$T/query.out")" "internal senders only" "query shows a restricted group's flag"

# logins
logins() {
    syncd_sql "SELECT l.name FROM login l JOIN object o ON o.id = l.object_id
               WHERE o.dn = '$1' ORDER BY 1" | tr '\n' ' '
}
tl_is "$(logins "cn=Alice Smith,$USERS")" "alice alice.smith@corp.test.example " \
    "logins: sAMAccountName and userPrincipalName, lowercased"
tl_is "$(syncd_sql "SELECT count(*) FROM login WHERE name IN ('carol', 'ws01\$', 'nomail', 'outsider')")" 0 \
    "no logins for accounts that are not recipients"

# groups, resolved through nesting as a reader does
expand() {
    syncd_sql "WITH RECURSIVE g(id) AS (
                 SELECT id FROM object WHERE dn = '$1'
                 UNION SELECT x.member_id FROM member x JOIN g ON x.group_id = g.id)
               SELECT o.dn FROM g JOIN object o ON o.id = g.id
               WHERE o.kind <> 'group' ORDER BY 1" | sed 's/,.*//; s/^cn=//' | tr '\n' ';'
}
tl_is "$(expand "cn=Sales,$DLS")" "Alice Smith;Bob Jones;Dave Brown;Grace Hopper;Vendor Contact;" \
    "Sales expands through two levels of nesting (a disabled member is left out)"
tl_is "$(expand "cn=Staff,$DLS")" "Alice Smith;Dave Brown;Info;" "a security group's members"
tl_is "$(expand "cn=Empty List,$DLS")" "" "a group without members"

# the whole store against the golden file
{
    syncd_sql "
SELECT 'rcpt' || char(9) || r.address || char(9) || r.kind || char(9) || r.flags || char(9) || COALESCE(o.dn, '')
  FROM recipient r JOIN source s ON s.id = r.source_id LEFT JOIN object o ON o.id = r.object_id
 WHERE s.name = 'ad';
SELECT 'login' || char(9) || l.name || char(9) || o.dn
  FROM login l JOIN object o ON o.id = l.object_id JOIN source s ON s.id = o.source_id
 WHERE s.name = 'ad';
SELECT 'member' || char(9) || g.dn || char(9) || m.dn
  FROM member x JOIN object g ON g.id = x.group_id JOIN object m ON m.id = x.member_id
  JOIN source s ON s.id = g.source_id WHERE s.name = 'ad';"
} | LC_ALL=C sort > "$T/directory.out"
grep -v '^#' "$top_srcdir/tests/golden/directory.ref" > "$T/directory.ref"
diff -u "$T/directory.ref" "$T/directory.out" > "$T/directory.diff"
tl_is "$?" 0 "the store matches tests/golden/directory.ref"
[ -s "$T/directory.diff" ] && sed 's/^/#   /' "$T/directory.diff"

# nothing changed, nothing to do
syncd_once
tl_is "$rc" 0 "a second run exits 0"
tl_is "$(last_run)" "ok 0 0 0" "a second run adds, changes and removes nothing"

# --- more entries than the size limit, and a group of 1,600 members
slapd_stop
awk -v base="$USERS" -v dls="$DLS" 'BEGIN {
    for (i = 0; i < 1600; i++) {
        printf "dn: cn=Bulk %04d,%s\nobjectClass: top\nobjectClass: person\n", i, base
        printf "objectClass: organizationalPerson\nobjectClass: user\n"
        printf "cn: Bulk %04d\nsn: Bulk\nsAMAccountName: bulk%04d\n", i, i
        printf "userAccountControl: 512\nmsExchRecipientTypeDetails: 1\n"
        printf "objectGUID: bulk-guid-%06d\nuSNChanged: %d\n", i, 20000 + i
        printf "proxyAddresses: SMTP:bulk%04d@test.example\n\n", i
    }
    printf "dn: cn=Big List,%s\nobjectClass: top\nobjectClass: group\ncn: Big List\n", dls
    printf "groupType: 8\nmsExchRecipientTypeDetails: 256\nobjectGUID: big-list-guid-00\n"
    printf "proxyAddresses: SMTP:big-list@test.example\n"
    for (i = 0; i < 1600; i++)
        printf "member: cn=Bulk %04d,%s\n", i, base
    printf "\n"
}' > "$T/bulk.ldif"
slapd_load "$T/bulk.ldif"
tl_is "$?" 0 "1,600 users and a group of them bulk-loaded"
slapd_restart
syncd_once
tl_is "$rc" 0 "--once with 1,629 recipients (paged past the size limit) exits 0"
tl_is "$(syncd_sql "SELECT count(*) FROM recipient r JOIN source s ON s.id = r.source_id WHERE s.name = 'ad'")" 1629 \
    "every bulk user is in the store"
rg_valid bulk0000@test.example bulk1599@test.example big-list@test.example
tl_is "$(syncd_sql "SELECT count(*) FROM member x JOIN object g ON g.id = x.group_id WHERE g.dn = 'cn=Big List,$DLS'")" 1600 \
    "the group has all 1,600 members"

# --- changes: rename an address, delete, disable, enable, un-share
slapd_modify <<EOF
dn: cn=Alice Smith,$USERS
changetype: modify
delete: proxyAddresses
proxyAddresses: smtp:alice.smith@test.example
-
add: proxyAddresses
proxyAddresses: smtp:alice.s@test.example
-
replace: uSNChanged
uSNChanged: 30001

dn: cn=Bob Jones,$USERS
changetype: modify
replace: userAccountControl
userAccountControl: 514
-
replace: uSNChanged
uSNChanged: 30002

dn: cn=Carol Gone,$USERS
changetype: modify
replace: userAccountControl
userAccountControl: 512
-
replace: uSNChanged
uSNChanged: 30003

dn: cn=Info,$USERS
changetype: modify
replace: msExchRecipientTypeDetails
msExchRecipientTypeDetails: 1
-
replace: uSNChanged
uSNChanged: 30004

dn: cn=Sales,$DLS
changetype: modify
replace: msExchRequireAuthToSendTo
msExchRequireAuthToSendTo: TRUE
-
replace: uSNChanged
uSNChanged: 30005

dn: cn=Board,$DLS
changetype: modify
delete: member
member: cn=Grace Hopper,$USERS
-
replace: uSNChanged
uSNChanged: 30006
EOF
tl_is "$?" 0 "directory changes made"
slapd_delete "cn=Dave Brown,$USERS"
tl_is "$?" 0 "a user deleted"
syncd_once
tl_is "$rc" 0 "--once after the changes exits 0"
rg_invalid alice.smith@test.example
rg_valid alice.s@test.example alice@test.example
tl_is "$(syncd_sql "SELECT count(DISTINCT object_id) FROM recipient WHERE address IN ('alice.s@test.example', 'alice@test.example')")" 1 \
    "the renamed address belongs to the same object"
rg_invalid dave@test.example
tl_is "$(syncd_sql "SELECT count(*) FROM object WHERE dn = 'cn=Dave Brown,$USERS'")" 0 "the deleted user's object is gone"
tl_is "$(expand "cn=Staff,$DLS")" "Alice Smith;" "and so is its membership (and Info's, no longer a recipient)"
rg_invalid bob.jones@test.example
rg_valid carol@test.example
rg_invalid info@test.example contact-us@test.example
tl_is "$(kind sales@test.example)" "group 1" "a group made restricted gets the flag"
tl_is "$(expand "cn=Board,$DLS")" "Alice Smith;" "a member removed from a group"
tl_is "$(last_run)" "ok 2 1 5" "the run: 2 added, 1 changed (the flag), 5 removed"

# --- an Exchange resource forest: linked mailboxes (2) and linked rooms
# (2199023255552) have accounts disabled by design, as shared mailboxes do
cat >"$T/linked.ldif" <<EOF
dn: cn=Linked User,$USERS
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: user
cn: Linked User
sn: User
sAMAccountName: linked.user
userAccountControl: 514
msExchRecipientTypeDetails: 2
proxyAddresses: SMTP:linked.user@test.example

dn: cn=Linked Room,$USERS
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: user
cn: Linked Room
sn: Room
sAMAccountName: linked.room
userAccountControl: 514
msExchRecipientTypeDetails: 2199023255552
proxyAddresses: SMTP:linked.room@test.example

dn: cn=Plain Leaver,$USERS
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: user
cn: Plain Leaver
sn: Leaver
sAMAccountName: plain.leaver
userAccountControl: 514
msExchRecipientTypeDetails: 1
proxyAddresses: SMTP:plain.leaver@test.example
EOF
slapd_add "$T/linked.ldif"
tl_is "$?" 0 "linked mailboxes added to the directory"
syncd_once
tl_is "$rc" 0 "--once with linked mailboxes exits 0"
rg_valid linked.user@test.example linked.room@test.example
rg_invalid plain.leaver@test.example
tl_is "$(kind linked.user@test.example)" "user 0" "a linked mailbox (disabled by design): kind user"
tl_is "$(kind linked.room@test.example)" "shared 0" "a linked room mailbox: kind shared"

# --- the [source] settings of incremental and persistent pulls (-n only)
# check_conf KEY=VALUE... - rcptgate-syncd -n on one ad source; $rc, $out
check_conf() {
    syncd_conf_reset
    slapd_syncd_conf
    slapd_source ad ad "$@"
    out=$("$RG_SYNCD" -c "$CONF" -n 2>&1)
    rc=$?
}
check_conf mode=persistent "base=ou=A,$S" "base=ou=B,$S" "base=ou=C,$S" "base=ou=D,$S" "base=ou=E,$S"
tl_is "$rc" 0 "mode = persistent with 5 bases: accepted (AD allows 5 notification searches a connection)"
check_conf mode=persistent "base=ou=A,$S" "base=ou=B,$S" "base=ou=C,$S" "base=ou=D,$S" "base=ou=E,$S" "base=ou=F,$S"
tl_is "$rc" 78 "mode = persistent with 6 bases: a configuration error (78)"
tl_like "$out" "Active Directory allows 5 per connection" "the message says why"
check_conf mode=poll "base=ou=A,$S" "base=ou=B,$S" "base=ou=C,$S" "base=ou=D,$S" "base=ou=E,$S" "base=ou=F,$S"
tl_is "$rc" 0 "mode = poll with 6 bases: accepted"
for v in auto dirsync usn; do
    check_conf "incremental=$v"
    tl_is "$rc" 0 "incremental = $v: accepted"
done
check_conf incremental=sometimes
tl_is "$rc" 78 "incremental = sometimes: a configuration error (78)"
check_conf "uri=" dns_domain=example.com "dns_servers=127.0.0.1:5353"
tl_is "$rc" 0 "dns_domain without uri: accepted"
check_conf "uri="
tl_is "$rc" 78 "neither uri nor dns_domain: a configuration error (78)"
tl_like "$out" "uri \\(or dns_domain\\) is required" "the message names both"

tl_done
