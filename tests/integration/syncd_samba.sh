#!/bin/sh
# syncd_samba.sh - rcptgate-syncd (flavour ad) against a real Active Directory
#
# A Samba AD domain controller (tests/lib/samba.sh) provisioned from a
# cached template and started on a loopback address of its own. The test
# creates an OU of mail objects as Administrator over LDAP, syncs it with
# `rcptgate-syncd --once` and checks the store: users with SMTP:/smtp:
# proxyAddresses and mail, a disabled user left out, a computer left out,
# a contact and a group with their kinds, objectGUID and the DC's
# invocationId as Samba reports them, logins; paged results (page_size
# below the entry count), ranged member retrieval (range_step below the
# group's size), an incremental pull by Samba's own uSNChanged and
# highestCommittedUSN (incremental = usn; DirSync is syncd_dirsync.sh's), a deletion caught by the next full pull, and LDAPS
# and StartTLS binds with the CA that signed Samba's certificate (exit 0)
# and with one that did not (exit 75, nothing applied). Samba's schema has no
# Exchange attributes, so shared mailboxes and the "internal senders
# only" flag are tested against slapd (syncd_ad.sh) only.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"
. "$top_srcdir/tests/lib/samba.sh"

tl_init syncd_samba
samba_require
syncd_require

S=$SAMBA_SUFFIX
OU="OU=Mail,$S"
NUSERS=120

samba_init || { echo "not ok 1 - the Samba domain is provisioned"; echo "1..1"; exit 1; }
samba_start || { echo "not ok 1 - samba starts"; echo "1..1"; exit 1; }
echo "# samba $SAMBA_PID on $SAMBA_URI"

# last_run - mode outcome added changed removed of the source's latest run
last_run() {
    syncd_sql "SELECT r.mode, r.outcome, r.added, r.changed, r.removed FROM sync_run r
               JOIN source s ON s.id = r.source_id WHERE s.name = 'samba'
               ORDER BY r.id DESC LIMIT 1" | tr '\t' ' '
}

# obj SQL-COLUMN DN - a column of the stored object with that DN
obj() {
    syncd_sql "SELECT $1 FROM object WHERE dn = '$2'"
}

# --- the directory: an OU of mail objects, then $NUSERS users in one LDIF
samba_add <<EOF
dn: $OU
objectClass: organizationalUnit

dn: CN=Alice Smith,$OU
objectClass: user
sAMAccountName: alice
userPrincipalName: Alice.Smith@TEST.example.com
userAccountControl: 544
mail: alice@test.example.com
proxyAddresses: SMTP:Alice.Smith@test.example.com
proxyAddresses: smtp:alice.s@test.example.com
proxyAddresses: X400:c=US;a= ;p=Test;o=Ex;s=Smith;
proxyAddresses: SIP:alice.sip@test.example.com

dn: CN=Bob Jones,$OU
objectClass: user
sAMAccountName: bob
userAccountControl: 544
proxyAddresses: sMtP:bob.jones@test.example.com

dn: CN=Carol Off,$OU
objectClass: user
sAMAccountName: carol
userAccountControl: 514
mail: carol@test.example.com
proxyAddresses: SMTP:carol.off@test.example.com

dn: CN=WS1,$OU
objectClass: computer
sAMAccountName: WS1\$
userAccountControl: 4096
mail: ws1@test.example.com

dn: CN=Vendor Contact,$OU
objectClass: contact
mail: vendor@partner.example
proxyAddresses: SMTP:vendor.contact@test.example.com

dn: CN=Sales,$OU
objectClass: group
sAMAccountName: sales
mail: sales@test.example.com
proxyAddresses: SMTP:sales@test.example.com
proxyAddresses: smtp:vertrieb@test.example.com
member: CN=Alice Smith,$OU
member: CN=Bob Jones,$OU
EOF
tl_is "$?" 0 "the mail objects are created in Samba"

{
    i=1
    while [ $i -le $NUSERS ]; do
        printf 'dn: CN=User %03d,%s\nobjectClass: user\nsAMAccountName: user%03d\nuserAccountControl: 544\nmail: user%03d@test.example.com\n\n' \
            $i "$OU" $i $i
        i=$((i + 1))
    done
    printf 'dn: CN=Everyone,%s\nobjectClass: group\nsAMAccountName: everyone\nmail: everyone@test.example.com\n' "$OU"
    i=1
    while [ $i -le $NUSERS ]; do
        printf 'member: CN=User %03d,%s\n' $i "$OU"
        i=$((i + 1))
    done
} > "$T/bulk.ldif"
samba_add "$T/bulk.ldif"
tl_is "$?" 0 "$NUSERS users and a group of all of them are created in one ldapadd"

tl_admin domain add test.example.com >/dev/null 2>&1
tl_admin domain add partner.example >/dev/null 2>&1

syncd_conf_reset
slapd_syncd_conf
samba_source samba "base=$OU" "page_size=50" "range_step=50" "incremental=usn"

# --- the full pull
syncd_once
tl_is "$rc" 0 "rcptgate-syncd --once against Samba exits 0"
[ "$rc" = 0 ] || sed 's/^/#   /' "$T/syncd.err" | tail -5
# added counts addresses: alice 3, bob 1, the contact 2, the groups 2 + 1, the users
tl_is "$(last_run)" "full ok $((NUSERS + 9)) 0 0" \
    "a full run adds the addresses of alice, bob, the contact, two groups and $NUSERS users"

rg_valid alice@test.example.com Alice.Smith@test.example.com alice.s@test.example.com \
    bob.jones@test.example.com vendor@partner.example vendor.contact@test.example.com \
    sales@test.example.com vertrieb@test.example.com everyone@test.example.com
rg_invalid alice.sip@test.example.com carol@test.example.com carol.off@test.example.com \
    ws1@test.example.com
tl_is "$(obj "count(*)" "CN=Carol Off,$OU")" 0 "a disabled user (userAccountControl 514) is not stored"
tl_is "$(obj "count(*)" "CN=WS1,$OU")" 0 "a computer account is not stored"
tl_is "$(obj kind "CN=Alice Smith,$OU")" user "alice is a user"
tl_is "$(obj kind "CN=Vendor Contact,$OU")" contact "the contact is a contact"
tl_is "$(obj kind "CN=Sales,$OU")" group "the group is a group"
tl_is "$(syncd_sql "SELECT kind FROM recipient WHERE address = 'vertrieb@test.example.com'")" group \
    "the group's secondary address is of kind group"

# objectGUID and invocationId as Samba reports them
guid=$(samba_hex "CN=Alice Smith,$OU" objectGUID)
tl_like "$guid" '^[0-9a-f]{32}$' "Samba's objectGUID of alice reads as 32 hex digits"
tl_is "$(obj guid "CN=Alice Smith,$OU" | tr 'A-F' 'a-f')" "$guid" "the stored GUID is Samba's objectGUID"
tl_is "$(obj "length(guid)" "CN=Vendor Contact,$OU")" 32 "the contact's GUID is 32 hex digits too"
dsa=$(samba_search -b "" -s base "(objectClass=*)" dsServiceName | sed -n 's/^dsServiceName: //p')
inv=$(samba_hex "$dsa" invocationId)
tl_like "$inv" '^[0-9a-f]{32}$' "the DC's invocationId (from its NTDS Settings) reads as 32 hex digits"
tl_is "$(syncd_sql "SELECT lower(invocation_id) FROM source WHERE name = 'samba'")" "$inv" \
    "the stored invocationId is the DC's"
hcu=$(samba_search -b "" -s base "(objectClass=*)" highestCommittedUSN | sed -n 's/^highestCommittedUSN: //p')
tl_is "$(syncd_sql "SELECT cookie FROM source WHERE name = 'samba'")" "$hcu" \
    "the stored USN is the DC's highestCommittedUSN"

# logins
tl_is "$(syncd_sql "SELECT group_concat(l.name, ' ') FROM (SELECT l.name FROM login l JOIN object o ON o.id = l.object_id
                    WHERE o.dn = 'CN=Alice Smith,$OU' ORDER BY l.name) l")" \
    "alice alice.smith@test.example.com" "alice's logins: sAMAccountName and the userPrincipalName lowercased"
tl_is "$(syncd_sql "SELECT count(*) FROM login l JOIN object o ON o.id = l.object_id WHERE o.kind = 'group'")" 0 \
    "a group has no logins"

# paging and ranged members
tl_is "$(syncd_sql "SELECT count(*) FROM recipient WHERE address LIKE 'user___@test.example.com'")" "$NUSERS" \
    "all $NUSERS users arrive through pages of 50"
rg_valid user001@test.example.com user050@test.example.com user051@test.example.com user$NUSERS@test.example.com
tl_is "$(samba_search -b "CN=Everyone,$OU" -s base "(objectClass=*)" "member;range=0-49" | grep -c '^member;range=0-49:')" 50 \
    "Samba answers member;range=0-49 with 50 members (so the range loop runs)"
tl_is "$(syncd_sql "SELECT count(*) FROM member m JOIN object g ON g.id = m.group_id WHERE g.dn = 'CN=Everyone,$OU'")" \
    "$NUSERS" "all $NUSERS members of a group arrive through member;range steps of 50"
tl_like "$(syncd_sql "SELECT count(*) FROM member m JOIN object g ON g.id = m.group_id WHERE g.dn = 'CN=Sales,$OU'")" \
    '^[2-9]' "the small group's members are stored"

# --- nothing changed: an incremental pull is empty
syncd_once --incremental
tl_is "$rc" 0 "an incremental pull without changes exits 0"
tl_is "$(last_run)" "incremental ok 0 0 0" "it is recorded as an incremental run that changed nothing"

# --- a changed address: Samba bumps uSNChanged itself
samba_modify <<EOF
dn: CN=Alice Smith,$OU
changetype: modify
delete: proxyAddresses
proxyAddresses: smtp:alice.s@test.example.com
-
add: proxyAddresses
proxyAddresses: smtp:alice.new@test.example.com
EOF
tl_is "$?" 0 "alice's proxyAddresses are changed"
syncd_once --incremental
tl_is "$rc" 0 "the incremental pull after the change exits 0"
tl_is "$(last_run)" "incremental ok 1 0 1" "recorded as incremental: the new address added, the old one removed"
rg_valid alice.new@test.example.com alice@test.example.com
rg_invalid alice.s@test.example.com
hcu=$(samba_search -b "" -s base "(objectClass=*)" highestCommittedUSN | sed -n 's/^highestCommittedUSN: //p')
tl_is "$(syncd_sql "SELECT cookie FROM source WHERE name = 'samba'")" "$hcu" \
    "the stored USN follows the DC's highestCommittedUSN"

# --- a deleted user: the next full pull removes it
samba_delete "CN=Bob Jones,$OU"
tl_is "$?" 0 "bob is deleted in Samba"
syncd_once
tl_is "$rc" 0 "the full pull after the deletion exits 0"
tl_is "$(last_run)" "full ok 0 0 1" "the full pull removes one address"
rg_invalid bob.jones@test.example.com
tl_is "$(obj "count(*)" "CN=Bob Jones,$OU")" 0 "the deleted user's object is gone"
rg_valid alice.new@test.example.com user077@test.example.com

# --- TLS: Samba's LDAPS and StartTLS with the test CA that signed its
# certificate for its address (samba.sh), and with a CA that did not
nrcpt=$(syncd_sql "SELECT count(*) FROM recipient")
for mode in ldaps starttls; do
    uri=$SAMBA_URI
    [ $mode = ldaps ] && uri=$SAMBA_URI_TLS
    syncd_conf_reset
    slapd_syncd_conf
    samba_source samba "base=$OU" "uri=$uri" "tls=$mode" "ca_file=$SAMBA_WRONG_CA"
    syncd_once
    tl_is "$rc" 75 "$mode with a CA that did not sign Samba's certificate exits 75"
    tl_is "$(last_run)" "full failed 0 0 0" "it is recorded as a failed run"
    tl_like "$(syncd_sql "SELECT message FROM sync_run ORDER BY id DESC LIMIT 1")" "TLS handshake failed" \
        "the run's message names the TLS handshake"
    tl_is "$(syncd_sql "SELECT count(*) FROM recipient")" "$nrcpt" "and nothing is applied"

    syncd_conf_reset
    slapd_syncd_conf
    samba_source samba "base=$OU" "uri=$uri" "tls=$mode" "ca_file=$SAMBA_CA"
    syncd_once
    tl_is "$rc" 0 "$mode with the CA that signed Samba's certificate exits 0"
    [ "$rc" = 0 ] || sed 's/^/#   /' "$T/syncd.err" | tail -5
    tl_is "$(last_run)" "full ok 0 0 0" "the pull over $mode finds nothing changed"
done
rg_valid alice.new@test.example.com

# --- base at the domain's root: AD answers with references to its other
# naming contexts (CN=Configuration, DomainDnsZones, ForestDnsZones), which
# hold no recipients: debug lines, not a warning to use a Global Catalog
syncd_conf_reset
slapd_syncd_conf
samba_source root "base=$S"
syncd_once
tl_is "$rc" 0 "a source based at the domain's root: exit 0"
tl_is "$(grep -c 'is not followed' "$T/syncd.err")" 0 "... and no warning about AD's other naming contexts"

samba_stop
tl_done
