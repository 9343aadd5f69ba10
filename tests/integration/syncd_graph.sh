#!/bin/sh
# syncd_graph.sh - rcptgate-syncd's graph source (Microsoft Entra ID) against a fixture
#
# tests/tools/graph_fixture.py plays the token endpoint and Microsoft
# Graph over HTTPS on 127.0.0.1, with a test CA made here: a full pull
# across several pages (users, groups, group members), the AD rules
# (SMTP/smtp proxyAddresses only, disabled users left out unless they look
# like shared mailboxes, guests as contacts, logins), incremental pulls
# through delta links (additions, changes, @removed, entries carrying only
# what changed), an expired delta token (410 -> full pull), throttling
# (429 with Retry-After), a token refused mid-pull (401 -> a new token),
# a client certificate instead of a secret; and failures that must apply
# nothing and exit 75: malformed JSON, a truncated page, a page that hands
# back its own nextLink with no entries (no end), a server error
# that persists, a server that does not answer (timeout), a certificate
# that does not verify, a refused secret. Then the shrink guard, the
# daemon polling the delta links, and configuration checks. Last, a delta
# with @removed for every user and group: the shrink guard refuses it,
# keeps the delta links, refuses the retry, applies the retry once the
# tenant is back, and --force applies it.

. "${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/testlib.sh"
. "$top_srcdir/tests/lib/slapd.sh"

tl_init syncd_graph
syncd_require
tl_need_tool python3 python3
tl_need_tool openssl openssl

# Never through a proxy of the machine: the fixture is on loopback.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
no_proxy=127.0.0.1,localhost
export no_proxy

FIXTURE="$top_srcdir/tests/tools/graph_fixture.py"
D="$T/graph"
mkdir -p "$D"
SLAPD_DIR="$T"
slapd_certs || tl_bail "openssl could not make the test certificates"
CA=$SLAPD_CA
WRONG_CA=$SLAPD_WRONG_CA

# A client certificate (RSA: the assertion is RS256) for the second credential.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=rcptgate graph client" \
    -keyout "$D/client.key" -out "$D/client.pem" 2>>"$T/tls/openssl.log" ||
    tl_bail "openssl could not make the client certificate"
chmod 600 "$D/client.key"
printf 'fixture-secret~&=+%%\n' > "$D/secret"
chmod 600 "$D/secret"

# --- the directory, written by a small generator

# write_state [CHANGE...] - the base directory with changes applied:
#   dave           add user dave (and make him a member of staff)
#   robert         bob gains smtp:robert@corp.example
#   drop16         user u16 deleted
#   alice-off      alice disabled (she holds a licence)
#   first          u01 gains smtp:first@corp.example
#   shrink         users u05..u16 deleted
#   wipe           every user and group deleted (the delta: @removed for all)
write_state() {
    python3 - "$D/state.json" "$@" <<'PY'
import json, os, sys
path, changes = sys.argv[1], set(sys.argv[2:])
def gid(n): return "%08d-aaaa-4bbb-8ccc-%012d" % (n, n)
def user(n, name, mail=None, proxies=(), enabled=True, lic=True, utype="Member", sam=None):
    return {"id": gid(n), "mail": mail, "proxyAddresses": list(proxies), "accountEnabled": enabled,
            "userPrincipalName": "%s@corp.example" % name, "userType": utype,
            "assignedLicenses": [{"skuId": "e3"}] if lic else [], "onPremisesSamAccountName": sam}
users = [
    user(1, "alice", "alice@corp.example", ["SMTP:alice@corp.example", "smtp:a.smith@corp.example",
         "X500:/o=Corp/ou=Exchange/cn=alice", "SIP:alice@corp.example", "eum:1234;phone-context=corp"],
         sam="ALICE", enabled="alice-off" not in changes),
    user(2, "bob", "Bob@Corp.Example", ["SMTP:Bob@Corp.Example"] + (["smtp:robert@corp.example"] if "robert" in changes else [])),
    user(3, "carol", "carol@corp.example", ["SMTP:carol@corp.example"], enabled=False),
    user(4, "shared", "info@corp.example", ["SMTP:info@corp.example", "smtp:sales@corp.example"], enabled=False, lic=False),
    user(5, "guest_partner.example#EXT#", "guest@partner.example", [], utype="Guest"),
    user(6, "nomail"),
]
for i in range(1, 17):
    if "drop16" in changes and i == 16: continue
    if "shrink" in changes and i >= 5: continue
    px = ["SMTP:u%02d@corp.example" % i]
    if i == 1 and "first" in changes: px.append("smtp:first@corp.example")
    if i == 2:
        # unlicensed; u02-shared: turned into a shared mailbox (account disabled, new primary address)
        sh = "u02-shared" in changes
        users.append(user(102, "u02", "desk@corp.example" if sh else "u02@corp.example",
                          ["SMTP:desk@corp.example", "smtp:u02@corp.example"] if sh else px,
                          enabled=not sh, lic=False))
        continue
    users.append(user(100 + i, "u%02d" % i, "u%02d@corp.example" % i, px))
if "dave" in changes:
    users.append(user(7, "dave", "dave@corp.example", ["SMTP:dave@corp.example"]))
staff = [gid(1), gid(2), gid(4), gid(3)] + ([gid(7)] if "dave" in changes else [])
groups = [
    {"id": gid(900), "mail": "staff@corp.example", "proxyAddresses": ["SMTP:staff@corp.example", "X400:c=us"],
     "mailEnabled": True, "securityEnabled": False, "groupTypes": [], "_members": staff},
    {"id": gid(901), "mail": None, "proxyAddresses": [], "mailEnabled": False, "securityEnabled": True,
     "groupTypes": [], "_members": [gid(1)]},
    {"id": gid(902), "mail": "team@corp.example", "proxyAddresses": ["SMTP:team@corp.example"],
     "mailEnabled": True, "securityEnabled": False, "groupTypes": ["Unified"],
     "_members": [gid(100 + i) for i in range(1, 8)]},
]
# An Exchange Online mail contact with an alias in our domain; contact2: its address changed.
contacts = []
if "contact" in changes or "contact2" in changes:
    alias = "vendor-new@corp.example" if "contact2" in changes else "vendor-alias@corp.example"
    contacts.append({"id": gid(950), "mail": "vendor@partner.example",
                     "proxyAddresses": ["SMTP:vendor@partner.example", "smtp:" + alias, "X500:/o=x"]})
    contacts.append({"id": gid(951), "mail": None, "proxyAddresses": []})
if "wipe" in changes:
    users, groups = [], []
with open(path + ".tmp", "w") as f:
    json.dump({"users": users, "groups": groups, "contacts": contacts}, f)
os.rename(path + ".tmp", path)
PY
}

# control JSON - the fixture's failure switches
control() {
    printf '%s\n' "$1" > "$D/control.json.tmp" && mv "$D/control.json.tmp" "$D/control.json"
}

# start_fixture - the fixture on a free port: $PORT
start_fixture() {
    rm -f "$D/port"
    python3 "$FIXTURE" --cert "$T/tls/server.pem" --key "$T/tls/server.key" --data "$D" \
        --port-file "$D/port" --log "$D/requests.log" --tenant test-tenant --client-id test-client \
        --secret 'fixture-secret~&=+%' --client-cert "$D/client.pem" 2>>"$D/fixture.err" &
    FIXTURE_PID=$!
    tl_pids="$tl_pids $FIXTURE_PID"
    i=0
    while [ ! -s "$D/port" ]; do
        i=$((i + 1))
        [ $i -gt 100 ] && return 1
        sleep 0.05
    done
    PORT=$(cat "$D/port")
}

# graph_conf [key=value ...] - [syncd] and the graph source "cloud"; the
# arguments replace the defaults of the same key (client_* the secret)
graph_conf() {
    syncd_conf_reset
    # shellcheck disable=SC2086
    slapd_syncd_conf ${SYNCD_KV:-}
    {
        echo ""
        echo "[source cloud]"
        for _kv in "type=graph" "tenant=test-tenant" "client_id=test-client" \
            "login_url=https://127.0.0.1:$PORT" "graph_url=https://127.0.0.1:$PORT/" "ca_file=$CA" \
            "page_size=3" "timeout=10s" "connect_timeout=2s" "client_secret_file=$D/secret"; do
            _k=${_kv%%=*}
            _given=""
            for _a in "$@"; do
                case "${_a%%=*}" in
                "$_k") _given=1 ;;
                client_cert_file | client_key_file) [ "$_k" = client_secret_file ] && _given=1 ;;
                esac
            done
            [ -n "$_given" ] || echo "$_k = ${_kv#*=}"
        done
        for _kv in "$@"; do
            echo "${_kv%%=*} = ${_kv#*=}"
        done
    } >> "$CONF"
}

# requests PATTERN - how many fixture requests since the last mark match
requests() {
    tail -n +"$((MARK + 1))" "$D/requests.log" | grep -Ec -- "$1"
}
mark() {
    MARK=$(wc -l < "$D/requests.log" 2>/dev/null || echo 0)
}

# members GROUPMAIL - the store's member count of the group owning the address
members() {
    syncd_sql "SELECT count(*) FROM member x JOIN recipient r ON r.object_id = x.group_id
               WHERE r.address = '$1'"
}

# kind ADDRESS
kind() {
    syncd_sql "SELECT kind FROM recipient WHERE address = '$1'"
}

count() {
    syncd_sql "SELECT count(*) FROM recipient r JOIN source s ON s.id = r.source_id WHERE s.name = 'cloud'"
}

tl_admin domain add corp.example >/dev/null 2>&1
tl_admin domain add partner.example >/dev/null 2>&1
write_state
control '{}'
: > "$D/requests.log"
start_fixture || { tl_ok 1 "the fixture starts"; tl_done; exit 1; }
MARK=0

# --- configuration checks
graph_conf
"$RG_SYNCD" -c "$CONF" -n >"$T/check.out" 2>&1
tl_is "$?" 0 "a graph source with a client secret passes -n"
chmod 644 "$D/secret"
"$RG_SYNCD" -c "$CONF" -n >"$T/check.out" 2>&1
tl_is "$?" 78 "a client secret file others can read: 78"
chmod 600 "$D/secret"
graph_conf tenant=
"$RG_SYNCD" -c "$CONF" -n >"$T/check.out" 2>&1
tl_is "$?" 78 "no tenant: 78"
tl_like "$(cat "$T/check.out")" "tenant" "the message names tenant"
graph_conf "client_cert_file=$D/client.pem"
"$RG_SYNCD" -c "$CONF" -n >"$T/check.out" 2>&1
tl_is "$?" 78 "a certificate without its key: 78"
graph_conf "client_cert_file=$D/client.pem" "client_key_file=$D/secret"
"$RG_SYNCD" -c "$CONF" -n >"$T/check.out" 2>&1
tl_is "$?" 78 "a key file that holds no key: 78"
graph_conf graph_url=http://127.0.0.1:1/
"$RG_SYNCD" -c "$CONF" -n >"$T/check.out" 2>&1
tl_is "$?" 78 "graph_url over plain http: 78"

# --- a full pull across several pages
graph_conf
mark
syncd_once
tl_is "$rc" 0 "full pull: exits 0"
rg_valid alice@corp.example a.smith@corp.example bob@corp.example info@corp.example \
    sales@corp.example guest@partner.example staff@corp.example team@corp.example u16@corp.example
rg_invalid carol@corp.example nomail@corp.example
tl_is "$(count)" 24 "24 recipient addresses from Graph"
tl_is "$(kind info@corp.example)" shared "a disabled user without licences is a shared mailbox"
tl_is "$(kind guest@partner.example)" contact "a guest is a contact"
tl_is "$(kind staff@corp.example)" group "a mail-enabled group is a group"
tl_is "$(syncd_sql "SELECT count(*) FROM recipient WHERE address LIKE '%/o=corp%' OR address LIKE '%phone%'")" 0 \
    "X500, SIP and EUM proxy addresses are not addresses"
tl_is "$(members staff@corp.example)" 3 "staff has its 3 mail-enabled members (the disabled one is not stored)"
tl_is "$(members team@corp.example)" 7 "team has 7 members, read across 3 pages"
tl_is "$(syncd_sql "SELECT group_concat(name, ' ') FROM (SELECT l.name FROM login l JOIN object o ON o.id = l.object_id
          WHERE o.guid = '00000001-aaaa-4bbb-8ccc-000000000001' ORDER BY 1)")" "alice alice@corp.example" \
    "alice's logins: onPremisesSamAccountName and userPrincipalName, lowercased"
tl_is "$(syncd_sql "SELECT dn FROM object WHERE guid = '00000002-aaaa-4bbb-8ccc-000000000002'")" \
    "00000002-aaaa-4bbb-8ccc-000000000002" "objects are stored by their Graph id"
tl_ok "$([ "$(requests 'GET /v1.0/users\?.*skiptoken')" -ge 5 ] && echo 0 || echo 1)" "the users came in several pages"
tl_like "$(syncd_sql "SELECT cookie FROM source WHERE name = 'cloud'")" '"users": *"https://127.0.0.1:[0-9]+/v1.0/users/delta' \
    "the delta links are the source's cookie"
tl_is "$(requests 'token secret')" 1 "one token for the whole pull"
tl_is "$(requests 'GET /v1.0/groups/delta\?\$select=[a-zA-Z,]*,members&\$deltatoken=latest')" 1 \
    "the groups' delta link tracks members"

# --- incremental: additions, changes, @removed
# (3 of 24 addresses go: more than the shrink guard's default share, tested at the end)
SYNCD_KV="max_remove_share=100"
graph_conf
write_state dave robert drop16 alice-off
mark
syncd_once --incremental
tl_is "$rc" 0 "incremental pull: exits 0"
tl_is "$(requests 'GET /v1.0/users\?')" 0 "no full listing was read"
tl_ok "$([ "$(requests 'GET /v1.0/users/delta\?\$deltatoken=[0-9]')" -ge 1 ] && echo 0 || echo 1)" "the delta link was followed"
rg_valid dave@corp.example robert@corp.example bob@corp.example
rg_invalid u16@corp.example alice@corp.example a.smith@corp.example
tl_is "$(members staff@corp.example)" 3 "staff now: bob, shared, dave"
tl_is "$(count)" 23 "23 addresses after the delta"

# --- a delta whose entries carry only what changed
control '{"delta_partial": true}'
write_state dave robert drop16 alice-off first
mark
syncd_once --incremental
tl_is "$rc" 0 "a partial delta entry: exits 0"
tl_is "$(requests 'GET /v1.0/users/00000101-aaaa')" 1 "the partial user was read again whole"
rg_valid first@corp.example u01@corp.example
# An unlicensed user made a shared mailbox: the entry has accountEnabled,
# mail and proxyAddresses but not the unchanged assignedLicenses and
# userPrincipalName, so it is read again and stays (kind shared, login kept).
write_state dave robert drop16 alice-off first u02-shared
mark
syncd_once --incremental
tl_is "$rc" 0 "a partial entry of a user made a shared mailbox: exits 0"
tl_is "$(requests 'GET /v1.0/users/00000102-aaaa')" 1 "... it was read again whole"
rg_valid desk@corp.example u02@corp.example
tl_is "$(syncd_sql "SELECT kind FROM recipient WHERE address = 'desk@corp.example'")" shared "... stored as a shared mailbox"
tl_is "$(syncd_sql "SELECT count(*) FROM login WHERE name = 'u02@corp.example'")" 1 "... its login kept"

# --- the re-read answers 404 (a Graph replica that does not hold the
# change yet): only @removed deletes. The pull fails with its link kept;
# the next one reads bob again and applies the change.
control '{"delta_partial": true, "lag_reads": 1}'
write_state dave drop16 alice-off first u02-shared
mark
syncd_once --incremental
tl_is "$rc" 75 "a partial entry whose re-read answers 404: the pull fails (75)"
rg_valid bob@corp.example robert@corp.example
syncd_once --incremental
tl_is "$rc" 0 "the next pull reads it: exits 0"
rg_valid bob@corp.example
rg_invalid robert@corp.example
# One round lists dave changed (his re-read: 404) and, later, removed: the
# @removed answers the 404, and the rest of the round is applied.
control '{"removed_also_changed": true, "page_size": 2}'
write_state drop16 alice-off first u02-shared
mark
syncd_once --incremental
tl_is "$rc" 0 "an object changed and then removed in one round: exits 0"
tl_is "$(requests 'GET /v1.0/users/00000007-aaaa')" 1 "... its re-read was tried (and answered 404)"
rg_invalid dave@corp.example
# One round lists u02 first by its id alone (its re-read: 404) and later
# whole: the whole copy answers the 404, and the round is applied.
control '{"changed_twice": true, "lag_reads": 100}'
write_state drop16 alice-off first
mark
syncd_once --incremental
tl_is "$rc" 0 "an object listed first by its id (re-read: 404) and later whole in one round: exits 0"
tl_is "$(requests 'GET /v1.0/users/00000102-aaaa')" 1 "... its re-read was tried (and answered 404)"
rg_invalid desk@corp.example
control '{}'

# --- a failed delta applies nothing, not even the users' half
control '{"delta_error": true}'
write_state dave robert alice-off first
syncd_dump > "$T/before"
cookie=$(syncd_sql "SELECT cookie FROM source WHERE name = 'cloud'")
syncd_once --incremental
tl_is "$rc" 75 "the groups' delta fails: 75"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "nothing of the users' delta was applied"
tl_is "$(syncd_sql "SELECT cookie FROM source WHERE name = 'cloud'")" "$cookie" "the cookie stays where it was"
rg_invalid u16@corp.example

# --- an expired delta token: 410 -> a full pull
SYNCD_KV=""
graph_conf
control '{"delta_gone": true}'
write_state dave robert drop16
mark
syncd_once --incremental
tl_is "$rc" 0 "410 Gone: a full pull instead, exits 0"
tl_is "$(requests 'delta.* 410')" 1 "the fixture answered 410"
tl_ok "$([ "$(requests 'GET /v1.0/users\?')" -ge 1 ] && echo 0 || echo 1)" "then the users were listed"
tl_like "$(cat "$T/syncd.err")" "full pull is needed" "syncd says why"
rg_valid alice@corp.example
rg_invalid first@corp.example

# --- throttling: 429 with Retry-After
control '{"throttle": 2, "retry_after": 1}'
mark
t0=$(date +%s)
syncd_once
t1=$(date +%s)
tl_is "$rc" 0 "two 429 answers: waited, then exits 0"
tl_is "$(requests ' 429')" 2 "two 429 answers were given"
tl_ok "$([ $((t1 - t0)) -ge 2 ] && echo 0 || echo 1)" "Retry-After was honoured ($((t1 - t0)) s)"
tl_like "$(cat "$T/syncd.err")" "Retry-After" "syncd says it waits"

# --- a token refused mid-pull
control '{"token_max_uses": 4}'
mark
syncd_once
tl_is "$rc" 0 "401 mid-pull: a new token, exits 0"
tl_ok "$([ "$(requests ' 401')" -ge 1 ] && echo 0 || echo 1)" "the fixture refused a used-up token"
tl_ok "$([ "$(requests 'token secret')" -ge 2 ] && echo 0 || echo 1)" "syncd fetched a new token"
rg_valid alice@corp.example dave@corp.example

# --- a client certificate instead of a secret
control '{}'
graph_conf "client_cert_file=$D/client.pem" "client_key_file=$D/client.key"
mark
syncd_once
tl_is "$rc" 0 "a client certificate: exits 0"
tl_is "$(requests 'token assertion')" 1 "the token came for a signed assertion"

# --- failures apply nothing
graph_conf
write_state dave robert
syncd_dump > "$T/before"
control '{"malformed_page": 1}'
syncd_once
tl_is "$rc" 75 "malformed JSON on page 2: 75"
tl_like "$(cat "$T/syncd.err")" "malformed JSON" "the message says malformed JSON"
control '{"truncate_page": 1}'
syncd_once
tl_is "$rc" 75 "a truncated page: 75"
control '{"error_page": 2}'
syncd_once
tl_is "$rc" 75 "a page that keeps failing with 500: 75"
control '{"loop_page": 1}'
mark
limit0=$SYNCD_LIMIT
SYNCD_LIMIT=30      # the pull that never ends, as it did, must fail the test (124), not hang it
syncd_once
SYNCD_LIMIT=$limit0
tl_is "$rc" 75 "a page without entries whose nextLink is its own link: 75, not a pull without end"
tl_like "$(cat "$T/syncd.err")" "page 2 returned no entries and the same continuation it was asked with" \
    "the message says the server makes no progress"
tl_is "$(requests ' loop')" 1 "the looping page was asked for once"
control '{"loop_members": true}'
mark
SYNCD_LIMIT=30
syncd_once
SYNCD_LIMIT=$limit0
tl_is "$rc" 75 "a members page with entries whose nextLink is its own link: 75, not a pull without end"
tl_like "$(cat "$T/syncd.err")" "links back to itself as the next page" "... saying so"
tl_is "$(requests ' loop')" 1 "... after one such page"
control '{"hang_page": 1}'
graph_conf timeout=1s
t0=$(date +%s)
syncd_once
t1=$(date +%s)
tl_is "$rc" 75 "a page that never comes: 75"
tl_ok "$([ $((t1 - t0)) -lt 20 ] && echo 0 || echo 1)" "timeout ends it ($((t1 - t0)) s for three tries)"
# SIGTERM in the middle of that wait ends it within a second or so, not at the timeout
graph_conf timeout=60s
"$RG_SYNCD" -c "$CONF" --once >"$T/syncd.out" 2>"$T/syncd.err" &
spid=$!
sleep 3     # the token, then page 0; page 1 hangs
t0=$(date +%s)
kill -TERM "$spid"
wait "$spid"
rc=$?
t1=$(date +%s)
tl_ok "$([ "$rc" != 0 ] && [ $((t1 - t0)) -le 5 ] && echo 0 || echo 1)" \
    "SIGTERM while a page is awaited: syncd stops in $((t1 - t0)) s (exit $rc), not at the 60 s timeout"
control '{}'
graph_conf "ca_file=$WRONG_CA"
syncd_once
tl_is "$rc" 75 "a server certificate that does not verify: 75"
tl_like "$(cat "$T/syncd.err")" "certificate|SSL" "the message says why"
# A handshake cut short (a proxy or load balancer resetting the
# connection) is a network error, tried again; only a certificate that
# does not verify fails at once.
python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(5)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1])); __import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
n = 0
while True:
    c, _ = s.accept(); n += 1
    open(sys.argv[1] + ".n", "w").write(str(n))
    c.recv(10); c.close()
' "$T/reset.port" &
tl_pids="$tl_pids $!"
tl_wait_grep "^[0-9]+$" "$T/reset.port" || tl_bail "the resetting server did not start"
graph_conf "login_url=https://127.0.0.1:$(cat "$T/reset.port")"
syncd_once
tl_is "$rc" 75 "every TLS handshake reset: 75 in the end"
tl_ok "$([ "$(cat "$T/reset.port.n" 2>/dev/null || echo 0)" -ge 2 ] && echo 0 || echo 1)" \
    "... after trying again ($(cat "$T/reset.port.n" 2>/dev/null || echo 0) connections), not at the first reset"
printf 'wrong\n' > "$D/bad-secret"
chmod 600 "$D/bad-secret"
graph_conf "client_secret_file=$D/bad-secret"
syncd_once
tl_is "$rc" 75 "a refused client secret: 75"
tl_like "$(cat "$T/syncd.err")" "AADSTS7000215" "the token endpoint's reason is shown"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "no failure changed the store"
rg_invalid u16@corp.example

# --- the shrink guard
graph_conf
write_state shrink
syncd_once
tl_is "$rc" 65 "a pull that removes half of the users is refused: 65"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "the refusal changed nothing"
syncd_once --force
tl_is "$rc" 0 "--force applies it"
rg_invalid u16@corp.example
rg_valid u04@corp.example

# --- the daemon follows the delta links every poll_interval
SYNCD_KV="poll_interval=1s full_interval=1h retry_interval=1s"
graph_conf mode=poll
mark
"$RG_SYNCD" -c "$CONF" -f >>"$T/daemon.out" 2>>"$T/daemon.err" &
syncd_pid=$!
tl_pids="$tl_pids $syncd_pid"
# wait_until CMD WANT - up to 15 s for the output of CMD to be WANT
wait_until() {
    _n=0
    # (not past the daemon's end: a daemon that died answers nothing more)
    while [ "$(eval "$1")" != "$2" ] && [ $_n -lt 150 ] && kill -0 "$syncd_pid" 2>/dev/null; do
        sleep 0.1
        _n=$((_n + 1))
    done
    eval "$1"
}
tl_is "$(wait_until 'grep -c "incremental sync applied\|full sync applied" "$T/daemon.err"' 1)" 1 \
    "the daemon's first pull is applied"
write_state shrink dave
tl_is "$(wait_until 'rg_query dave@corp.example' 0)" 0 "a user added in Entra ID is valid within a few polls"
tl_like "$(cat "$T/daemon.err")" "incremental sync applied" "through an incremental pull"
write_state shrink
tl_is "$(wait_until 'rg_query dave@corp.example' 1)" 1 "and invalid again once deleted"
kill -TERM "$syncd_pid"
wait "$syncd_pid"
tl_is "$?" 0 "SIGTERM stops the daemon (0)"
tl_ok "$([ "$(requests 'delta\?\$deltatoken=[0-9]')" -ge 4 ] && echo 0 || echo 1)" "the daemon polled several times"
tl_is "$(requests 'token secret')" 1 "with one token, kept between its pulls"
tl_pids=$(echo "$tl_pids" | sed "s/ $syncd_pid//")

# --- the shrink guard on a delta: @removed for every user and group
SYNCD_KV=""
graph_conf
syncd_once --incremental
tl_is "$rc" 0 "guard: an incremental pull first"
n=$(count)
syncd_dump > "$T/before"
cookie=$(syncd_sql "SELECT cookie FROM source WHERE name = 'cloud'")
write_state wipe
mark
syncd_once --incremental
tl_is "$rc" 65 "a delta that removes everything is refused: 65"
tl_is "$(requests 'GET /v1.0/users\?')" 0 "it was a delta (no full listing)"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "the refusal changed nothing"
tl_is "$(syncd_sql "SELECT cookie FROM source WHERE name = 'cloud'")" "$cookie" "the delta links stay where they were"
tl_like "$(cat "$T/syncd.err")" "shrink guard: not applying this incremental sync: it would remove all $n of the source's recipients" \
    "the log says what and how many"
tl_like "$(cat "$T/syncd.err")" "--once --force --source cloud" "and how to apply it anyway"
tl_is "$(syncd_sql "SELECT mode || ' ' || outcome || ' ' || removed FROM sync_run ORDER BY id DESC LIMIT 1")" \
    "incremental refused $n" "the run is recorded as a refused incremental one"
tl_like "$(tl_admin stats 2>&1)" "cloud .*refused: incremental pull: it would remove all $n" "rcptgate stats shows it"
tl_admin check -t 3s --no-lookupd --no-smtpd >"$T/check.out" 2>&1
tl_is "$?" 2 "rcptgate check is CRITICAL"
tl_like "$(cat "$T/check.out")" "cloud: the shrink guard refused the last sync \\(refused: incremental pull" "and says why"
syncd_once --incremental
tl_is "$rc" 65 "the next poll asks for the same changes again, and is refused again"
rg_valid alice@corp.example u04@corp.example
# The tenant comes back: the retry from the kept delta links finds nothing removed.
write_state shrink
syncd_once --incremental
tl_is "$rc" 0 "once the directory is back, the retry is applied"
syncd_dump > "$T/after"
cmp -s "$T/before" "$T/after"
tl_is "$?" 0 "and nothing was lost"
tl_admin check -t 3s --no-lookupd --no-smtpd >"$T/check.out" 2>&1
tl_is "$?" 0 "rcptgate check is OK again"
write_state wipe
syncd_once --incremental --force
tl_is "$rc" 0 "--once --incremental --force applies a refused delta"
tl_is "$(count)" 0 "and the source is empty"
tl_like "$(cat "$T/syncd.err")" "--force: applying although" "saying so"

write_state
control '{}'
syncd_once --force
tl_is "$(members team@corp.example)" 7 "back to the first state: team has its 7 members"

# --- organisational contacts (/contacts): their SMTP addresses, kind contact
write_state contact
syncd_once
tl_is "$rc" 0 "a full pull with contacts: exits 0"
rg_valid vendor-alias@corp.example vendor@partner.example
tl_is "$(kind vendor-alias@corp.example)" contact "a mail contact is a contact"
write_state contact2
syncd_once --incremental
tl_is "$rc" 0 "a contact's change through /contacts/delta: exits 0"
rg_valid vendor-new@corp.example
rg_invalid vendor-alias@corp.example
write_state
syncd_once --incremental
tl_is "$rc" 0 "a contact removed: exits 0"
rg_invalid vendor-new@corp.example vendor@partner.example
# The permission taken away: the incremental pulls go on, and the contacts stay.
write_state contact
syncd_once --incremental
rg_valid vendor-alias@corp.example
control '{"contacts_forbidden": true}'
syncd_once --incremental
tl_is "$rc" 0 "contacts answer 403 to an incremental pull: it goes on (0)"
rg_valid vendor-alias@corp.example
tl_like "$(cat "$T/syncd.err")" "organisational contacts not pulled" "... with the warning"
# An application without OrgContact.Read.All: warned, pulled without contacts.
syncd_once
tl_is "$rc" 0 "contacts answer 403: the pull goes on (0)"
rg_invalid vendor-alias@corp.example
rg_valid team@corp.example
tl_like "$(cat "$T/syncd.err")" "organisational contacts not pulled: .*403.*OrgContact.Read.All" \
    "... and a warning names the permission"
tl_is "$(syncd_sql "SELECT cookie FROM source WHERE name = 'cloud'" | grep -c contacts)" 0 \
    "... and the cookie has no contacts link"
mark
syncd_once --incremental
tl_is "$rc" 0 "the incremental pulls go on without contacts"
tl_is "$(requests 'GET /v1.0/contacts')" 0 "... asking nothing of /contacts"
control '{}'
# A group with hidden membership (no Member.Read.Hidden): 403 on its members.
control '{"members_forbidden": "00000902-aaaa-4bbb-8ccc-000000000902"}'
syncd_once
tl_is "$rc" 0 "a group whose members may not be read (403): the pull goes on (0)"
rg_valid team@corp.example
tl_is "$(members team@corp.example)" 0 "... the group stored without members"
tl_like "$(cat "$T/syncd.err")" "group 00000902-.* \(team@corp.example\): its members may not be read .*Member.Read.Hidden" \
    "... and a warning names the group and the permission"
control '{}'
syncd_once
tl_is "$(members team@corp.example)" 7 "readable again: its 7 members are back"

tl_done
