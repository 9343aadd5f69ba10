# slapd.sh - a private OpenLDAP slapd for rcptgate-syncd's shell tests
#
# Source it after testlib.sh and tl_init. It runs Debian's slapd as the
# test's own child: a slapd.conf under $T/slapd, an mdb database there
# (suffix dc=test,dc=example), our test schema with Active Directory's
# attribute names, the syncprov overlay (SLAPD_SYNCPROV=no leaves it
# out), and a size limit far below the test's entry counts, so that only
# paged searches (RFC 2696) see a whole directory, as with AD's
# MaxPageSize. slapd listens on a free port of 127.0.0.1 (and, with TLS,
# ldaps on a second one); its pid goes into $tl_pids so testlib's cleanup
# stops it.
#
#   slapd_require            slapd or its tools missing: Bail out (tl_missing)
#   slapd_missing            print what is missing ("" if nothing)
#   slapd_init [tls]         config, database and base entries under $T/slapd
#   slapd_load FILE...       bulk load LDIF with slapadd -w (slapd stopped)
#   slapd_start              start, wait until the rootDSE answers
#   slapd_stop | slapd_kill  SIGTERM (clean) | SIGKILL, and wait
#   slapd_pause | slapd_resume   SIGSTOP | SIGCONT: a server that hangs
#   slapd_restart            stop and start again on the same ports and data
#   slapd_acl TEXT           the database's access rules (applied at the next start)
#   slapd_client_cert NAME SUBJECT [wrong]   a client certificate (after slapd_init tls)
#   slapd_ldapi              also listen on ldapi:// (call before slapd_start)
#   slapd_add / slapd_modify [FILE]   ldapadd / ldapmodify as the rootdn (stdin)
#   slapd_delete DN...       ldapdelete as the rootdn
#   slapd_search ARGS...     ldapsearch -LLL as the rootdn
#   slapd_count BASE FILTER  entries a paged search as the sync account finds
#   slapd_source NAME FLAVOUR [key=value ...]   a [source NAME] in $CONF
#   slapd_syncd_conf [key=value ...]            the [syncd] section in $CONF
#
# After slapd_init: SLAPD_URI (ldap://127.0.0.1:PORT/), SLAPD_URI_TLS
# (ldaps://, with tls), SLAPD_CA (the test CA), SLAPD_WRONG_CA (another
# CA that did not sign the server's certificate), SLAPD_SUFFIX,
# SLAPD_URI_LDAPI (after slapd_ldapi, which sets it; the socket is
# SLAPD_LDAPI),
# SLAPD_ROOTDN/SLAPD_ROOTPW, SLAPD_SYNC_DN/SLAPD_SYNC_PW (the account
# syncd binds as; ordinary user limits apply to it, not the rootdn's).
#
# AppArmor: Debian 12's slapd package ships no AppArmor profile (dpkg -L
# slapd), and containers usually run without AppArmor anyway. Where a
# profile confines slapd to its usual paths (Ubuntu's usr.sbin.slapd), a
# private slapd under the build tree may be denied its files: slapd_start
# then fails, with a hint when dmesg shows an AppArmor denial
# (`aa-complain /usr/sbin/slapd` lifts it on a workstation).

SLAPD=${SLAPD:-/usr/sbin/slapd}
SLAPADD=${SLAPADD:-/usr/sbin/slapadd}
SLAPTEST=${SLAPTEST:-/usr/sbin/slaptest}
SLAPD_MODULES=${SLAPD_MODULES:-/usr/lib/ldap}
SLAPD_SCHEMA=${SLAPD_SCHEMA:-/etc/ldap/schema}
SLAPD_SUFFIX="dc=test,dc=example"
SLAPD_ROOTDN="cn=admin,$SLAPD_SUFFIX"
SLAPD_ROOTPW="root-secret"
SLAPD_SYNC_DN="cn=syncd,ou=Service,$SLAPD_SUFFIX"
SLAPD_SYNC_PW="sync-secret"
# The size limit of ordinary accounts; paged searches get unlimited totals
# in pages of at most 1,000 (as AD). Override before slapd_init.
: "${SLAPD_SIZELIMIT:=10}"
# The total a paged search may return (size.prtotal): unlimited as with
# AD; a number makes paged searches stop with "Size limit exceeded" too,
# as OpenLDAP's defaults do. Applied at the next (re)start.
SLAPD_PRTOTAL=unlimited
# slapd.conf's "security" line, e.g. "simple_bind=128" to refuse simple
# binds without TLS; applied at the next (re)start.
SLAPD_SECURITY=""
# TLSVerifyClient: "try" or "demand" asks clients for a certificate signed
# by the test CA (SASL EXTERNAL); set before slapd_init or slapd_restart.
SLAPD_VERIFY_CLIENT=never
# no: leave the syncprov overlay out (a server without RFC 4533: no
# cookie for syncd); set before slapd_init or slapd_restart.
SLAPD_SYNCPROV=yes
# Lines for slapd.conf's global part, e.g. authz-regexp rules; set before
# slapd_init or slapd_restart.
SLAPD_GLOBAL_CONF=""
SLAPD_PID=""

# Tests must not depend on the machine's ldap.conf or ~/.ldaprc (a
# TLS_CACERT there would make a wrong CA pass), in syncd's libldap too.
# (LDAPNOINIT would also ignore the LDAPTLS_* variables the checks use.)
LDAPCONF=/dev/null
LDAPRC=rcptgate-test-no-ldaprc
export LDAPCONF LDAPRC
unset LDAPNOINIT LDAPTLS_CACERT LDAPTLS_CACERTDIR LDAPTLS_REQCERT LDAPBASE LDAPURI LDAPBINDDN

# slapd_missing - what is missing to run a private slapd ("" when nothing)
slapd_missing() {
    for _sl_p in "$SLAPD" "$SLAPADD"; do
        [ -x "$_sl_p" ] || { echo "slapd not installed ($_sl_p)"; return; }
    done
    for _sl_p in ldapsearch ldapadd ldapmodify ldapdelete openssl perl; do
        command -v "$_sl_p" >/dev/null 2>&1 || { echo "$_sl_p not installed"; return; }
    done
    for _sl_m in back_mdb syncprov; do
        [ -e "$SLAPD_MODULES/$_sl_m.la" ] || [ -e "$SLAPD_MODULES/$_sl_m.so" ] ||
            { echo "slapd module $_sl_m not found in $SLAPD_MODULES"; return; }
    done
}

# slapd_require - slapd or its tools missing: a broken install (tl_missing)
slapd_require() {
    _sl_why=$(slapd_missing)
    [ -z "$_sl_why" ] || tl_missing "$_sl_why"
}

# slapd_port - a pseudo-random port in 10000..31999, below Linux's
# ephemeral range (32768-60999), where client sockets would collide
slapd_port() {
    _sl_n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
    echo $((10000 + _sl_n % 22000))
}

# slapd_certs - a test CA, a server certificate for 127.0.0.1 and a wrong CA
slapd_certs() {
    _sl_d="$SLAPD_DIR/tls"
    mkdir -p "$_sl_d"
    _sl_curve="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
    # shellcheck disable=SC2086
    openssl req -x509 $_sl_curve -nodes -days 2 -subj "/CN=rcptgate test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$_sl_d/ca.key" -out "$_sl_d/ca.pem" 2>>"$_sl_d/openssl.log" || return 1
    # shellcheck disable=SC2086
    openssl req -x509 $_sl_curve -nodes -days 2 -subj "/CN=rcptgate wrong CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$_sl_d/wrong-ca.key" -out "$_sl_d/wrong-ca.pem" 2>>"$_sl_d/openssl.log" || return 1
    # shellcheck disable=SC2086
    openssl req $_sl_curve -nodes -subj "/CN=127.0.0.1" \
        -keyout "$_sl_d/server.key" -out "$_sl_d/server.csr" 2>>"$_sl_d/openssl.log" || return 1
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" > "$_sl_d/server.ext"
    openssl x509 -req -in "$_sl_d/server.csr" -CA "$_sl_d/ca.pem" -CAkey "$_sl_d/ca.key" \
        -CAcreateserial -days 2 -extfile "$_sl_d/server.ext" \
        -out "$_sl_d/server.pem" 2>>"$_sl_d/openssl.log" || return 1
    SLAPD_CA="$_sl_d/ca.pem"
    SLAPD_WRONG_CA="$_sl_d/wrong-ca.pem"
}

# slapd_client_cert NAME SUBJECT [wrong] - a client certificate for SASL
# EXTERNAL, signed by the test CA (or by the wrong CA), in
# $SLAPD_DIR/tls/NAME.pem with its key in NAME.key (mode 0600); SUBJECT as
# openssl writes it, e.g. "/O=rcptgate test/CN=syncd client"
slapd_client_cert() {
    _sl_d="$SLAPD_DIR/tls"
    _sl_ca=ca
    [ "$3" = wrong ] && _sl_ca=wrong-ca
    (umask 077 && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$2" \
        -keyout "$_sl_d/$1.key" -out "$_sl_d/$1.csr" 2>>"$_sl_d/openssl.log") || return 1
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=clientAuth" > "$_sl_d/$1.ext"
    openssl x509 -req -in "$_sl_d/$1.csr" -CA "$_sl_d/$_sl_ca.pem" -CAkey "$_sl_d/$_sl_ca.key" \
        -CAcreateserial -days 2 -extfile "$_sl_d/$1.ext" \
        -out "$_sl_d/$1.pem" 2>>"$_sl_d/openssl.log"
}

# slapd_ldapi - listen on a unix socket under $SLAPD_DIR too (ldapi://,
# with SASL EXTERNAL naming the peer's uid and gid); before slapd_start
slapd_ldapi() {
    SLAPD_LDAPI="$SLAPD_DIR/ldapi"
    # The path, %-encoded as the host part of the URI
    SLAPD_URI_LDAPI="ldapi://$(printf '%s' "$SLAPD_LDAPI" | sed 's/%/%25/g; s|/|%2F|g; s/ /%20/g; s/,/%2C/g')/"
}

# slapd_acl TEXT - the database's access rules; take effect at the next start
slapd_acl() {
    printf '%s\n' "$1" > "$SLAPD_DIR/acl.conf"
}

# slapd_default_acl - the sync account and other users read, nobody else
slapd_default_acl() {
    slapd_acl "access to attrs=userPassword
	by anonymous auth
	by self read
	by * none
access to *
	by users read
	by * none"
}

# slapd_write_conf - slapd.conf for the current ports
slapd_write_conf() {
    {
        echo "# slapd.conf for the test $T (written by tests/lib/slapd.sh)"
        for _sl_s in core cosine inetorgperson; do
            echo "include $SLAPD_SCHEMA/$_sl_s.schema"
        done
        echo "include $top_srcdir/tests/fixtures/rcptgate-test.schema"
        echo "modulepath $SLAPD_MODULES"
        echo "moduleload back_mdb"
        echo "moduleload syncprov"
        echo "pidfile $SLAPD_DIR/slapd.pid"
        echo "argsfile $SLAPD_DIR/slapd.args"
        echo "loglevel none"
        echo "sizelimit $SLAPD_SIZELIMIT"
        [ -n "$SLAPD_SECURITY" ] && echo "security $SLAPD_SECURITY"
        if [ -n "$SLAPD_TLS" ]; then
            echo "TLSCACertificateFile $SLAPD_DIR/tls/ca.pem"
            echo "TLSCertificateFile $SLAPD_DIR/tls/server.pem"
            echo "TLSCertificateKeyFile $SLAPD_DIR/tls/server.key"
            echo "TLSVerifyClient $SLAPD_VERIFY_CLIENT"
        fi
        [ -n "$SLAPD_GLOBAL_CONF" ] && printf '%s\n' "$SLAPD_GLOBAL_CONF"
        # The frontend: the rootDSE and the schema for anyone.
        echo 'access to dn.base="" by * read'
        echo 'access to dn.base="cn=Subschema" by * read'
        echo ""
        echo "database mdb"
        echo "suffix \"$SLAPD_SUFFIX\""
        echo "rootdn \"$SLAPD_ROOTDN\""
        echo "rootpw $SLAPD_ROOTPW"
        echo "directory $SLAPD_DIR/db"
        echo "maxsize 1073741824"
        echo "dbnosync"
        echo "index objectClass,entryUUID,entryCSN eq"
        echo "index mail,proxyAddresses,member,cn,uid eq"
        # As AD: an unpaged search stops at the limit with "Size limit
        # exceeded"; a paged one gets everything, 1,000 a page at most.
        echo "limits users size.soft=$SLAPD_SIZELIMIT size.hard=$SLAPD_SIZELIMIT size.pr=1000 size.prtotal=$SLAPD_PRTOTAL"
        echo "include $SLAPD_DIR/acl.conf"
        if [ "$SLAPD_SYNCPROV" != no ]; then
            echo "overlay syncprov"
            echo "syncprov-checkpoint 100 1"
            echo "syncprov-sessionlog 10000"
        fi
    } > "$SLAPD_DIR/slapd.conf"
}

# slapd_init [tls] - config, database and base entries; does not start slapd
slapd_init() {
    SLAPD_DIR="$T/slapd"
    rm -rf "$SLAPD_DIR"
    mkdir -p "$SLAPD_DIR/db"
    SLAPD_TLS=""
    SLAPD_URI_TLS=""
    SLAPD_LDAPI=""
    SLAPD_URI_LDAPI=""
    SLAPD_PORT=$(slapd_port)
    SLAPD_TLS_PORT=""
    if [ "$1" = tls ]; then
        SLAPD_TLS=1
        slapd_certs || { echo "# slapd_init: openssl failed, see $SLAPD_DIR/tls/openssl.log"; return 1; }
        SLAPD_TLS_PORT=$((SLAPD_PORT + 1))
    fi
    slapd_default_acl
    slapd_write_conf
    cat > "$SLAPD_DIR/base.ldif" <<EOF
dn: $SLAPD_SUFFIX
objectClass: dcObject
objectClass: organization
dc: test
o: rcptgate test directory

dn: ou=Service,$SLAPD_SUFFIX
objectClass: organizationalUnit
ou: Service

dn: $SLAPD_SYNC_DN
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: syncd
userPassword: $SLAPD_SYNC_PW
EOF
    slapd_load "$SLAPD_DIR/base.ldif"
    # The test stops slapd even when it is paused (SIGTERM waits for SIGCONT).
    trap 'slapd_resume; tl_cleanup' EXIT
}

# slapd_load FILE... - bulk load with slapadd -w (the contextCSN follows, so
# a sync consumer's cookie stays meaningful); slapd must not be running
slapd_load() {
    if [ -n "$SLAPD_PID" ]; then
        echo "# slapd_load: slapd is running" >&2
        return 1
    fi
    for _sl_f in "$@"; do
        "$SLAPADD" -f "$SLAPD_DIR/slapd.conf" -w -l "$_sl_f" >>"$SLAPD_DIR/slapadd.log" 2>&1 || {
            echo "# slapadd -l $_sl_f failed:"
            sed 's/^/#   /' "$SLAPD_DIR/slapadd.log" | tail -5
            return 1
        }
    done
}

# slapd_uris - SLAPD_URI and SLAPD_URI_TLS for the current ports
slapd_uris() {
    SLAPD_URI="ldap://127.0.0.1:$SLAPD_PORT/"
    SLAPD_LISTEN="$SLAPD_URI"
    if [ -n "$SLAPD_TLS" ]; then
        SLAPD_URI_TLS="ldaps://127.0.0.1:$SLAPD_TLS_PORT/"
        SLAPD_LISTEN="$SLAPD_LISTEN $SLAPD_URI_TLS"
    fi
    [ -n "$SLAPD_LDAPI" ] && SLAPD_LISTEN="$SLAPD_LISTEN $SLAPD_URI_LDAPI"
    return 0
}

# slapd_run - start slapd on the current ports; 0 ready, 1 it exited, 2 no answer
slapd_run() {
    slapd_uris
    # slapd.log is this start's; earlier ones are kept in slapd-old.log
    [ -f "$SLAPD_DIR/slapd.log" ] && cat "$SLAPD_DIR/slapd.log" >> "$SLAPD_DIR/slapd-old.log"
    : > "$SLAPD_DIR/slapd.log"
    "$SLAPD" -h "$SLAPD_LISTEN" -f "$SLAPD_DIR/slapd.conf" -d "${SLAPD_DEBUG:-0}" \
        >>"$SLAPD_DIR/slapd.log" 2>&1 &
    SLAPD_PID=$!
    _sl_i=0
    while :; do
        if ldapsearch -x -H "$SLAPD_URI" -b "" -s base -LLL namingContexts >/dev/null 2>&1; then
            tl_pids="$tl_pids $SLAPD_PID"
            return 0
        fi
        if ! kill -0 "$SLAPD_PID" 2>/dev/null; then
            wait "$SLAPD_PID" 2>/dev/null
            SLAPD_PID=""
            return 1
        fi
        _sl_i=$((_sl_i + 1))
        if [ $_sl_i -gt 200 ]; then
            kill -KILL "$SLAPD_PID" 2>/dev/null
            wait "$SLAPD_PID" 2>/dev/null
            SLAPD_PID=""
            return 2
        fi
        sleep 0.05
    done
}

# slapd_start - start slapd, on other ports if it cannot start on these
# (with -d 0 slapd says nothing about a port in use: it just exits 1)
slapd_start() {
    _sl_tries=0
    while :; do
        slapd_run
        _sl_rc=$?
        [ $_sl_rc = 0 ] && return 0
        _sl_tries=$((_sl_tries + 1))
        if [ $_sl_rc = 2 ] || [ $_sl_tries -ge 8 ]; then
            [ $_sl_rc = 2 ] && echo "# slapd did not answer on $SLAPD_URI within 10 s"
            [ $_sl_rc = 1 ] && echo "# slapd exited at start $_sl_tries times (last port $SLAPD_PORT)"
            "$SLAPTEST" -f "$SLAPD_DIR/slapd.conf" -u 2>&1 | sed 's/^/#   slaptest: /'
            sed 's/^/#   /' "$SLAPD_DIR/slapd.log" | tail -5
            if command -v dmesg >/dev/null 2>&1 && dmesg 2>/dev/null | grep -q 'apparmor.*slapd'; then
                echo "# AppArmor denies slapd access to the build tree (aa-complain /usr/sbin/slapd)"
            fi
            return 1
        fi
        SLAPD_PORT=$(slapd_port)
        [ -n "$SLAPD_TLS" ] && SLAPD_TLS_PORT=$((SLAPD_PORT + 1))
    done
}

# slapd_forget - drop slapd's pid from the test's list
slapd_forget() {
    tl_pids=$(echo "$tl_pids" | sed "s/ $SLAPD_PID\$//; s/ $SLAPD_PID / /")
    SLAPD_PID=""
}

# slapd_stop - SIGTERM and wait (slapd flushes and exits)
slapd_stop() {
    [ -n "$SLAPD_PID" ] || return 0
    kill -CONT "$SLAPD_PID" 2>/dev/null
    kill -TERM "$SLAPD_PID" 2>/dev/null
    wait "$SLAPD_PID" 2>/dev/null
    slapd_forget
}

# slapd_kill - SIGKILL and wait: a server that dies in the middle of things
slapd_kill() {
    [ -n "$SLAPD_PID" ] || return 0
    kill -KILL "$SLAPD_PID" 2>/dev/null
    wait "$SLAPD_PID" 2>/dev/null
    slapd_forget
}

# slapd_pause - SIGSTOP: the connection stays open, nothing answers
slapd_pause() {
    [ -n "$SLAPD_PID" ] && kill -STOP "$SLAPD_PID" 2>/dev/null
    return 0
}

# slapd_resume - SIGCONT after slapd_pause
slapd_resume() {
    [ -n "$SLAPD_PID" ] && kill -CONT "$SLAPD_PID" 2>/dev/null
    return 0
}

# slapd_restart - the same data on the same ports (rewrites slapd.conf)
slapd_restart() {
    slapd_stop
    slapd_write_conf
    _sl_tries=0
    until slapd_run; do
        _sl_tries=$((_sl_tries + 1))
        if [ $_sl_tries -ge 20 ]; then
            echo "# slapd did not restart on port $SLAPD_PORT:"
            sed 's/^/#   /' "$SLAPD_DIR/slapd.log" | tail -5
            return 1
        fi
        sleep 0.1
    done
}

# slapd_tool PROGRAM ARGS... - an LDAP client bound as the rootdn, over
# StartTLS when slapd has TLS (SLAPD_SECURITY may refuse plain binds)
slapd_tool() {
    _sl_prog=$1
    shift
    if [ -n "$SLAPD_TLS" ]; then
        LDAPTLS_CACERT="$SLAPD_CA" "$_sl_prog" -ZZ -x -H "$SLAPD_URI" \
            -D "$SLAPD_ROOTDN" -w "$SLAPD_ROOTPW" "$@"
    else
        "$_sl_prog" -x -H "$SLAPD_URI" -D "$SLAPD_ROOTDN" -w "$SLAPD_ROOTPW" "$@"
    fi
}

# slapd_add [FILE] - ldapadd as the rootdn (LDIF from FILE or stdin)
slapd_add() {
    slapd_tool ldapadd ${1:+-f "$1"} >>"$SLAPD_DIR/ldapmodify.log" 2>&1
}

# slapd_modify [FILE] - ldapmodify as the rootdn (LDIF with changetype)
slapd_modify() {
    slapd_tool ldapmodify ${1:+-f "$1"} >>"$SLAPD_DIR/ldapmodify.log" 2>&1
}

# slapd_delete DN... - ldapdelete as the rootdn
slapd_delete() {
    slapd_tool ldapdelete "$@" >>"$SLAPD_DIR/ldapmodify.log" 2>&1
}

# slapd_search ARGS... - ldapsearch -LLL as the rootdn (no limits)
slapd_search() {
    slapd_tool ldapsearch -LLL -o ldif-wrap=no "$@"
}

# slapd_count BASE FILTER - entries a paged search as the sync account sees
slapd_count() {
    if [ -n "$SLAPD_TLS" ]; then
        LDAPTLS_CACERT="$SLAPD_CA" ldapsearch -ZZ -x -LLL -o ldif-wrap=no -H "$SLAPD_URI" \
            -D "$SLAPD_SYNC_DN" -w "$SLAPD_SYNC_PW" -E pr=500/noprompt -b "$1" "$2" 1.1
    else
        ldapsearch -x -LLL -o ldif-wrap=no -H "$SLAPD_URI" \
            -D "$SLAPD_SYNC_DN" -w "$SLAPD_SYNC_PW" -E pr=500/noprompt -b "$1" "$2" 1.1
    fi 2>/dev/null | grep -c '^dn:'
}

# slapd_source NAME FLAVOUR [key=value ...] - append [source NAME] to $CONF,
# bound as the sync account with its password in a 0600 file. Keys given
# replace the defaults (uri, bind_dn, tls ...); base may be given several
# times, and without one the source reads the whole suffix.
slapd_source() {
    _sl_name=$1 _sl_flavour=$2
    shift 2
    _sl_pwfile="$T/$_sl_name.password"
    rm -f "$_sl_pwfile"
    (umask 077 && printf '%s' "$SLAPD_SYNC_PW" > "$_sl_pwfile")
    _sl_has_base=""
    for _sl_kv in "$@"; do
        case $_sl_kv in base=*) _sl_has_base=1 ;; esac
    done
    {
        echo ""
        echo "[source $_sl_name]"
        echo "type = ldap"
        echo "flavour = $_sl_flavour"
        for _sl_key in uri bind_dn bind_password_file tls timeout connect_timeout; do
            _sl_set=""
            for _sl_kv in "$@"; do
                case $_sl_kv in "$_sl_key="*) _sl_set=1 ;; esac
            done
            [ -n "$_sl_set" ] && continue
            case $_sl_key in
            uri) echo "uri = $SLAPD_URI" ;;
            bind_dn) echo "bind_dn = $SLAPD_SYNC_DN" ;;
            bind_password_file) echo "bind_password_file = $_sl_pwfile" ;;
            tls) echo "tls = none" ;;
            timeout) echo "timeout = 5s" ;;
            connect_timeout) echo "connect_timeout = 2s" ;;
            esac
        done
        [ -n "$_sl_has_base" ] || echo "base = $SLAPD_SUFFIX"
        for _sl_kv in "$@"; do
            echo "${_sl_kv%%=*} = ${_sl_kv#*=}"
        done
    } >> "$CONF"
}

# slapd_syncd_conf [key=value ...] - more of [syncd] (user and pid_file are tl_init's)
slapd_syncd_conf() {
    {
        echo ""
        echo "[syncd]"
        for _sl_kv in "$@"; do
            echo "${_sl_kv%%=*} = ${_sl_kv#*=}"
        done
    } >> "$CONF"
}

# --- a TCP proxy in front of slapd, to fail a pull at a chosen point
#
# slapd_proxy MODE BYTES - start a proxy to slapd's plain port and set
# PROXY_URI. MODE pass forwards everything; cut closes both sides once
# BYTES have come from slapd in a connection (what a client sees when
# slapd dies mid-pull); hold stops forwarding after BYTES, touches
# $T/proxy.held and keeps the connection open (slapd hangs) until slapd
# closes its side, when it forwards what it held and closes. Perl is
# Essential on Debian; the proxy needs only its core modules.
slapd_proxy() {
    rm -f "$T/proxy.port" "$T/proxy.held"
    cat > "$T/proxy.pl" <<'PERL'
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;

my ($mode, $limit, $upstream, $portfile, $marker) = @ARGV;
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                              Listen => 5, ReuseAddr => 1) or die "listen: $!";
open(my $pf, '>', "$portfile.tmp") or die "$portfile: $!";
print $pf $l->sockport, "\n";
close $pf;
rename "$portfile.tmp", $portfile or die "rename: $!";

sub put_all {
    my ($h, $d) = @_;
    while (length $d) {
        my $w = syswrite($h, $d);
        return unless defined $w && $w > 0;
        substr($d, 0, $w) = '';
    }
}

while (my $c = $l->accept) {
    my $s = IO::Socket::INET->new(PeerAddr => $upstream);
    unless ($s) { close $c; next; }
    my $sel = IO::Select->new($c, $s);
    my ($sent, $held, $holding) = (0, '', 0);
  LOOP: while (1) {
        for my $h ($sel->can_read) {
            my $buf;
            my $n = sysread($h, $buf, 16384);
            if (!$n) {
                put_all($c, $held) if $h == $s && length $held;
                last LOOP;
            }
            if ($h == $c) { put_all($s, $buf); next; }
            if ($holding) { $held .= $buf; next; }
            if ($mode ne 'pass' && $sent + length($buf) >= $limit) {
                my $part = $limit - $sent;
                put_all($c, substr($buf, 0, $part));
                $sent = $limit;
                last LOOP if $mode eq 'cut';
                $holding = 1;
                $held = substr($buf, $part);
                if (open(my $m, '>', $marker)) { close $m; }
                next;
            }
            put_all($c, $buf);
            $sent += length $buf;
        }
    }
    close $c;
    close $s;
}
PERL
    perl "$T/proxy.pl" "$1" "$2" "127.0.0.1:$SLAPD_PORT" "$T/proxy.port" "$T/proxy.held" \
        2>>"$T/proxy.log" &
    PROXY_PID=$!
    tl_pids="$tl_pids $PROXY_PID"
    _sl_i=0
    while [ ! -s "$T/proxy.port" ]; do
        _sl_i=$((_sl_i + 1))
        [ $_sl_i -gt 100 ] && return 1
        sleep 0.05
    done
    PROXY_URI="ldap://127.0.0.1:$(cat "$T/proxy.port")/"
}

# slapd_proxy_stop - stop the proxy
slapd_proxy_stop() {
    [ -n "$PROXY_PID" ] || return 0
    kill "$PROXY_PID" 2>/dev/null
    wait "$PROXY_PID" 2>/dev/null
    tl_pids=$(echo "$tl_pids" | sed "s/ $PROXY_PID\$//; s/ $PROXY_PID / /")
    PROXY_PID=""
}

# --- rcptgate-syncd and the store, as the syncd tests use them
#
#   syncd_require            skip without rcptgate-syncd, rcptgate or sqlite3
#   syncd_once [ARGS]        rcptgate-syncd -c $CONF --once ARGS: status in $rc,
#                            output in $T/syncd.out and $T/syncd.err (all runs
#                            are appended to $T/syncd.log)
#   syncd_sql SQL            sqlite3 on $STORE
#   syncd_dump               every row syncd writes but the run log, sorted
#   rg_query ADDRESS         exit status of `rcptgate query` (0 valid, 1 not, 2 error)
#   syncd_conf_reset         $CONF back to what tl_init wrote (then add sections)

RG_SYNCD=${RG_SYNCD:-"$top_builddir/syncd/rcptgate-syncd"}
# A hanging syncd must fail the test, not stop make check.
SYNCD_LIMIT=${SYNCD_LIMIT:-60}

# syncd_require - skip the test without the programs it drives
syncd_require() {
    [ -x "$RG_SYNCD" ] || tl_bail "rcptgate-syncd not built ($RG_SYNCD)"
    [ -x "$RG_ADMIN" ] || tl_bail "rcptgate not built ($RG_ADMIN)"
    tl_need_tool sqlite3 "sqlite3 (the shell)"
    [ -f "$T/base.conf" ] || cp "$CONF" "$T/base.conf"
}

# syncd_conf_reset - the config as tl_init wrote it
syncd_conf_reset() {
    cp "$T/base.conf" "$CONF"
}

# start_syncd - rcptgate-syncd -f in the background: $syncd_pid (a script may define its own)
start_syncd() {
    "$RG_SYNCD" -c "$CONF" -f >>"$T/daemon.out" 2>>"$T/daemon.err" &
    syncd_pid=$!
    tl_pids="$tl_pids $syncd_pid"
}

# stop_syncd - SIGTERM and wait; $stop_rc
stop_syncd() {
    kill -TERM "$syncd_pid"
    wait "$syncd_pid"
    stop_rc=$?
    tl_pids=$(echo "$tl_pids" | sed "s/ $syncd_pid\$//; s/ $syncd_pid / /")
}

# syncd_once [ARGS] - one run; $rc is its exit status
syncd_once() {
    if command -v timeout >/dev/null 2>&1; then
        timeout -k 5 "$SYNCD_LIMIT" "$RG_SYNCD" -c "$CONF" --once "$@" >"$T/syncd.out" 2>"$T/syncd.err"
    else
        "$RG_SYNCD" -c "$CONF" --once "$@" >"$T/syncd.out" 2>"$T/syncd.err"
    fi
    rc=$?
    {
        echo "=== rcptgate-syncd --once $* -> $rc"
        cat "$T/syncd.out" "$T/syncd.err"
    } >> "$T/syncd.log"
    return 0
}

# syncd_sql SQL - run SQL on the store, one row a line, columns tab-separated
syncd_sql() {
    sqlite3 -batch -noheader -separator '	' "$STORE" "$1"
}

# syncd_dump - objects, recipients, logins and members, for "nothing changed"
syncd_dump() {
    syncd_sql "
SELECT 'rcpt', r.address, s.name, r.kind, r.flags, COALESCE(o.guid, ''), COALESCE(o.dn, '')
  FROM recipient r JOIN source s ON s.id = r.source_id LEFT JOIN object o ON o.id = r.object_id
UNION ALL
SELECT 'object', o.guid, s.name, o.kind, o.flags, o.dn, ''
  FROM object o JOIN source s ON s.id = o.source_id
UNION ALL
SELECT 'login', l.name, o.guid, '', '', '', '' FROM login l JOIN object o ON o.id = l.object_id
UNION ALL
SELECT 'member', g.guid, m.guid, '', '', '', ''
  FROM member x JOIN object g ON g.id = x.group_id JOIN object m ON m.id = x.member_id
ORDER BY 1, 2, 3;" 2>&1
}

# rg_query ADDRESS - print the exit status of rcptgate query (output in $T/query.out)
rg_query() {
    "$RG_ADMIN" -c "$CONF" query "$1" >"$T/query.out" 2>"$T/query.err"
    echo $?
}

# rg_valid ADDR... / rg_invalid ADDR... - one TAP line per address: the
# store (through `rcptgate query`) does / does not accept it
rg_valid() {
    for _rg_a in "$@"; do
        tl_is "$(rg_query "$_rg_a")" 0 "$_rg_a is a valid recipient"
    done
}
rg_invalid() {
    for _rg_a in "$@"; do
        tl_is "$(rg_query "$_rg_a")" 1 "$_rg_a is not a valid recipient"
    done
}
