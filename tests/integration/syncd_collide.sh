#!/bin/sh
# syncd_collide.sh - one address, two directory objects (rcptgate-syncd, flavour ad)
#
# A private slapd (tests/lib/slapd.sh) holds tests/fixtures/directory.ldif
# with AD's attribute names (as syncd_usn.sh does), and this test adds
# objects whose addresses collide:
#   - a restricted group (msExchRequireAuthToSendTo) carrying a user's
#     address, and a user carrying a restricted group's address;
#   - a second user carrying an existing user's address.
# The claimants get lower objectGUIDs than the holders, so a "lowest guid
# wins" rule would hand them the address. Checked twice, once with full
# pulls and once with incremental ones (uSNChanged, bumped by hand as a
# DC would): the first holder keeps the address (`rcptgate query`), only
# its login may send as it (store_login_owns, through tests/tools/rg_logins),
# a restricted group keeps the address restricted whichever side it is on
# (and an older static entry of it does not lift that),
# syncd logs each collision once (not again at the next pull, nor when
# the claimant changes otherwise), and when the holder lets go the
# claimant takes it, which is logged too.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init syncd_collide
slapd_require
syncd_require
RG_LOGINS="$top_builddir/tests/tools/rg_logins"
[ -x "$RG_LOGINS" ] || tl_bail "tests/tools/rg_logins not built"

S=$SLAPD_SUFFIX
USERS="ou=Users,$S"
DLS="ou=Exchange Distribution Lists,$S"

slapd_init || tl_bail "slapd_init failed"
slapd_load "$top_srcdir/tests/fixtures/directory.ldif" || { echo "not ok 1 - fixture loads"; echo "1..1"; exit 1; }
slapd_start || { echo "not ok 1 - slapd starts"; echo "1..1"; exit 1; }

tl_admin domain add test.example >/dev/null 2>&1
syncd_conf_reset
slapd_syncd_conf
slapd_source ad ad "base=$USERS" "base=$DLS"

USN=20000
# guid HIGH N - a base64 objectGUID: 16 bytes, the first 0xff (HIGH 1) or 0x00,
# the second the pass ($pass), the last N: stored as 32 hex digits
guid() {
    # octal escapes: POSIX printf has no \x
    if [ "$1" = 1 ]; then _g='\377'; else _g='\000'; fi
    printf "$_g\\$(printf %03o "$pass")\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\$(printf %03o "$2")" | base64
}

# user CN SAM GUID ADDR... - add a user mailbox; the first address is primary
user() {
    _cn=$1 _sam=$2 _guid=$3
    shift 3
    USN=$((USN + 1))
    {
        cat <<EOF
dn: cn=$_cn,$USERS
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: user
cn: $_cn
sn: $_cn
sAMAccountName: $_sam
userAccountControl: 512
msExchRecipientTypeDetails: 1
mail: $1
objectGUID:: $_guid
uSNCreated: $USN
uSNChanged: $USN
EOF
        _p=SMTP
        for _a in "$@"; do
            echo "proxyAddresses: $_p:$_a"
            _p=smtp
        done
    } | slapd_add
}

# group CN GUID ADDR - add a distribution group restricted to internal senders
group() {
    USN=$((USN + 1))
    slapd_add <<EOF
dn: cn=$1,$DLS
objectClass: top
objectClass: group
cn: $1
groupType: 8
msExchRecipientTypeDetails: 256
msExchRequireAuthToSendTo: TRUE
mail: $3
proxyAddresses: SMTP:$3
objectGUID:: $2
uSNCreated: $USN
uSNChanged: $USN
EOF
}

# pull MODE - a full pull, or an incremental one (mode incremental)
pull() {
    if [ "$1" = incremental ]; then
        syncd_once --incremental
    else
        syncd_once
    fi
    cat "$T/syncd.err" >> "$T/all.err"
}

# holder ADDR - the DN rcptgate query names for ADDR
holder() {
    rg_query "$1" >/dev/null
    sed -n 's/^dn: *//p' "$T/query.out"
}

# owns LOGIN ADDR - store_login_owns' answer
owns() {
    "$RG_LOGINS" "$STORE" owns "$1" "$2"
}

# collisions - how many collision lines the last pull logged
collisions() {
    grep -c "address collision" "$T/syncd.err"
}

pass=0
for mode in full incremental; do
    pass=$((pass + 1))
    p=$(echo "$mode" | cut -c1)         # f / i: each pass has objects and addresses of its own
    pull "$mode"
    tl_is "$rc" 0 "$mode: the first pull exits 0"

    # The first holders (high guids).
    user "Zed $p" "zed$p" "$(guid 1 1)" "zed$p@test.example" "team$p@test.example"
    user "Owner $p" "owner$p" "$(guid 1 2)" "owner$p@test.example" "shared$p@test.example"
    group "Board $p" "$(guid 1 3)" "board$p@test.example"
    pull "$mode"
    tl_is "$rc" 0 "$mode: the holders' pull exits 0"
    tl_is "$(holder "team$p@test.example")" "cn=Zed $p,$USERS" "$mode: team$p@ is Zed's"

    # The later claimants (low guids).
    group "Staff $p" "$(guid 0 1)" "team$p@test.example"
    user "Mallory $p" "mallory$p" "$(guid 0 2)" "mallory$p@test.example" "shared$p@test.example"
    user "Eve $p" "eve$p" "$(guid 0 3)" "eve$p@test.example" "board$p@test.example"
    pull "$mode"
    tl_is "$rc" 0 "$mode: the claimants' pull exits 0"
    tl_is "$(syncd_sql "SELECT mode FROM sync_run ORDER BY id DESC LIMIT 1")" "$mode" \
        "$mode: it was a $mode pull"

    # A restricted group claims a user's address: the user keeps it, restricted.
    tl_is "$(holder "team$p@test.example")" "cn=Zed $p,$USERS" "$mode: team$p@ stays with its first holder, Zed"
    tl_like "$(cat "$T/query.out")" "flags: +internal senders only" \
        "$mode: ... and is restricted to internal senders, as the claiming group is"
    tl_like "$(cat "$T/query.out")" "holder: +source ad: \"cn=Zed $p,$USERS\" .*; its logins may send as it" \
        "$mode: query names the holder"
    tl_like "$(cat "$T/query.out")" "claimant: +source ad: \"cn=Staff $p,$DLS\" .*group, internal senders only, since .*; does not get it" \
        "$mode: ... and the group that claims it"
    tl_is "$(owns "zed$p" "team$p@test.example")" 1 "$mode: Zed's login may still send as team$p@"
    tl_like "$(cat "$T/syncd.err")" "address collision: team$p@test.example is held by \"cn=Zed $p,$USERS\" \\(guid ff0${pass}0+1, object [0-9]+\\) of source ad and also claimed by \"cn=Staff $p,$DLS\" \\(guid 000${pass}0+1, object [0-9]+\\) of source ad, which does not get it; the address stays restricted to internal senders" \
        "$mode: the collision is logged, naming both objects and the holder"

    # A second user claims an existing user's address: no login moves.
    tl_is "$(holder "shared$p@test.example")" "cn=Owner $p,$USERS" "$mode: shared$p@ stays with Owner"
    tl_is "$(owns "mallory$p" "shared$p@test.example")" 0 "$mode: Mallory's login may not send as shared$p@"
    tl_is "$(owns "owner$p" "shared$p@test.example")" 1 "$mode: Owner's login still may"
    tl_is "$(owns "mallory$p" "mallory$p@test.example")" 1 "$mode: Mallory's own address is hers"
    tl_like "$(cat "$T/syncd.err")" "address collision: shared$p@test.example is held by \"cn=Owner $p,$USERS\" .* also claimed by \"cn=Mallory $p,$USERS\" .*which does not get it" \
        "$mode: that collision is logged too"

    # A user claims a restricted group's address: the group keeps it and the restriction.
    tl_is "$(holder "board$p@test.example")" "cn=Board $p,$DLS" "$mode: board$p@ stays with the group"
    tl_like "$(cat "$T/query.out")" "flags: +internal senders only" "$mode: ... restricted"
    tl_is "$(owns "eve$p" "board$p@test.example")" 0 "$mode: Eve's login may not send as board$p@"
    tl_is "$(collisions)" 3 "$mode: three collisions, three lines"

    # An older static entry of the address answers, but does not lift the restriction.
    tl_admin static add "board$p@test.example" >/dev/null 2>&1
    rg_query "board$p@test.example" >/dev/null
    tl_like "$(cat "$T/query.out")" "source: +static" "$mode: a static entry of board$p@ answers the lookup"
    tl_like "$(cat "$T/query.out")" "flags: +internal senders only" "$mode: ... and the address stays restricted"
    tl_is "$(owns "eve$p" "board$p@test.example")" 0 "$mode: ... and Eve's login still may not send as it"
    tl_admin static del "board$p@test.example" >/dev/null 2>&1

    # Once per collision: not at the next pull, nor when a claimant changes otherwise.
    USN=$((USN + 1))
    slapd_modify <<EOF
dn: cn=Mallory $p,$USERS
changetype: modify
add: proxyAddresses
proxyAddresses: smtp:mallory2$p@test.example
-
replace: uSNChanged
uSNChanged: $USN
EOF
    pull "$mode"
    tl_is "$rc" 0 "$mode: a pull with a claimant changed exits 0"
    tl_is "$(holder "mallory2$p@test.example")" "cn=Mallory $p,$USERS" "$mode: the change is applied"
    tl_is "$(collisions)" 0 "$mode: no collision is logged again"
    tl_is "$(owns "mallory$p" "shared$p@test.example")" 0 "$mode: Mallory still may not send as shared$p@"

    # The holder lets go: the claimant takes the address, and that is logged.
    USN=$((USN + 1))
    slapd_modify <<EOF
dn: cn=Zed $p,$USERS
changetype: modify
delete: proxyAddresses
proxyAddresses: smtp:team$p@test.example
-
replace: uSNChanged
uSNChanged: $USN
EOF
    pull "$mode"
    tl_is "$rc" 0 "$mode: the pull where Zed lets go exits 0"
    tl_is "$(holder "team$p@test.example")" "cn=Staff $p,$DLS" "$mode: team$p@ passes to the group"
    tl_like "$(cat "$T/query.out")" "flags: +internal senders only" "$mode: ... restricted"
    tl_is "$(owns "zed$p" "team$p@test.example")" 0 "$mode: Zed's login no longer may send as it"
    tl_like "$(cat "$T/syncd.err")" "address collision over: team$p@test.example, claimed by \"cn=Staff $p,$DLS\" .*which holds it now" \
        "$mode: the end of the collision is logged"
    tl_is "$(collisions)" 1 "$mode: one line"
done

tl_no_sanitizer_reports "$T/all.err" "$RG_SYNCD" "no sanitizer report from rcptgate-syncd"
tl_done
