#!/bin/sh
# postmap.sh - Postfix's own socketmap client against rcptgate-lookupd
#
# The store is filled with the admin command, lookupd runs on a unix
# socket under the build tree, and `postmap -q KEY socketmap:unix:...:MAP`
# asks it, exactly as Postfix's smtpd and trivial-rewrite would. Checked:
# the value printed and the exit status (0 found, 1 not found), and that
# postmap complains about nothing: postmap exits 1 for "not found" and for
# a failed lookup alike, only its stderr tells them apart, so every check
# wants it empty.

. "$top_srcdir/tests/lib/testlib.sh"
tl_init postmap

tl_need_tool "$POSTMAP" postmap

cat > "$T/recipients" <<EOF
# a Postfix-style map file: address, then anything
alice@example.com OK
bob.smith@example.com OK
@example.org OK
EOF
tl_admin domain add example.com 'smtp:[10.1.0.2]:25' >/dev/null 2>"$T/admin.err" &&
tl_admin domain add example.org >/dev/null 2>>"$T/admin.err" &&
tl_admin import "$T/recipients" >/dev/null 2>>"$T/admin.err" &&
tl_admin static add postmaster@example.com >/dev/null 2>>"$T/admin.err"
tl_ok $? "store filled with the admin command"
[ -s "$T/admin.err" ] && sed 's/^/# /' "$T/admin.err"

tl_start_lookupd || tl_bail "lookupd did not start ($RG_LOOKUPD)"
tl_ok 0 "lookupd started"

# check KEY MAP WANT_OUT WANT_RC MSG - the value, the exit status, and a silent stderr
check() {
    tl_postmap "$1" "$2"
    rc=$?
    tl_is "$(cat "$T/out") rc=$rc stderr=$(wc -c < "$T/err" | tr -d ' ')" "$3 rc=$4 stderr=0" "$5"
    if [ -s "$T/err" ]; then
        sed 's/^/#   postmap: /' "$T/err"
    fi
}

# The recipient's kind is the value; only that it is not empty matters to
# Postfix, but the kind tells which entry matched.
kind_of() {
    tl_postmap "$1" recipients
    cat "$T/out"
}
IMPORTED=$(kind_of alice@example.com)
tl_like "$IMPORTED" '^[a-z]+$' "imported recipient found, with a non-empty value"

check alice@example.com recipients "$IMPORTED" 0 "recipients: known address"
check bob.smith@example.com recipients "$IMPORTED" 0 "recipients: dotted local part"
check ALICE@Example.COM recipients "$IMPORTED" 0 "recipients: mixed case"
check alice+newsletter@example.com recipients "$IMPORTED" 0 "recipients: +tag stripped"
check carol@example.com recipients "" 1 "recipients: unknown address in our domain"
check carol+alice@example.com recipients "" 1 "recipients: +tag of an unknown address"
check anyone@example.org recipients "$IMPORTED" 0 "recipients: catch-all @example.org"
check postmaster@example.com recipients "static" 0 "recipients: static entry"
check Postmaster@EXAMPLE.COM recipients "static" 0 "recipients: static entry, mixed case"
check alice@foreign.net recipients "" 1 "recipients: domain not ours"
check 'not an address' recipients "" 1 "recipients: malformed key is not found"

check example.com domains "example.com" 0 "domains: ours"
check EXAMPLE.com domains "example.com" 0 "domains: mixed case"
check example.org domains "example.org" 0 "domains: ours, no next hop"
check foreign.net domains "" 1 "domains: not ours"
check sub.example.com domains "" 1 "domains: subdomain not allowed"

check example.com transport "smtp:[10.1.0.2]:25" 0 "transport: next hop of example.com"
check example.org transport "" 1 "transport: our domain with the default next hop"
check foreign.net transport "" 1 "transport: not ours"
# Postfix asks a socketmap transport table with the full address only.
check alice@example.com transport "smtp:[10.1.0.2]:25" 0 "transport: full address, next hop of its domain"
check Alice.Smith+news@Example.COM transport "smtp:[10.1.0.2]:25" 0 "transport: full address, mixed case and +tag"
check carol@example.com transport "smtp:[10.1.0.2]:25" 0 "transport: unknown recipient of our domain, still its next hop"
check anyone@example.org transport "" 1 "transport: address of our domain with the default next hop"
check alice@foreign.net transport "" 1 "transport: address of a domain not ours"
check 'alice@@example.com' transport "" 1 "transport: malformed address"

# An unknown map is a permanent error, which postmap reports, not "not found".
tl_postmap alice@example.com nosuchmap
rc=$?
tl_ok $([ $rc -ne 0 ] && grep -q 'unknown map nosuchmap' "$T/err"; echo $?) \
    "unknown map: postmap reports the PERM reply"

tl_stop_lookupd
tl_ok $? "lookupd stopped with status 0"
tl_done
