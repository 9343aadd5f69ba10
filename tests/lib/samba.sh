# samba.sh - a private Samba Active Directory domain controller for shell tests
#
# Source it after testlib.sh (and slapd.sh, for the syncd_* helpers) and
# tl_init. It runs Debian's samba as the test's own child: a domain
# TEST.EXAMPLE.COM (DC=test,DC=example,DC=com) provisioned under $T/samba
# with its own smb.conf (every path under $T/samba, only the LDAP service),
# listening on a loopback address of its own, 127.0.0.N: Samba's LDAP ports
# (389, 636, 3268, 3269) cannot be moved, so parallel instances differ by
# address. Provisioning takes seconds, so the first run keeps a provisioned
# template under $top_builddir/tests/tmp/samba-template and later runs
# copy it (its database names its partitions by relative paths). The pid
# goes into $tl_pids so testlib's cleanup stops it; --maximum-runtime makes
# a forgotten instance exit by itself.
#
#   samba_require            skip the whole test (1..0 # SKIP) without Samba
#   samba_missing            print what is missing ("" if nothing)
#   samba_init               the domain under $T/samba (from the template)
#   samba_start / samba_stop start (wait for the rootDSE) / SIGTERM and wait
#   samba_add / samba_modify [FILE]   ldapadd / ldapmodify as Administrator
#   samba_delete DN...       ldapdelete as Administrator
#   samba_search ARGS...     ldapsearch -LLL as Administrator (no wrapping)
#   samba_hex BASE ATTR      a binary attribute of one entry as lowercase hex
#   samba_source NAME [key=value ...]   a [source NAME] (flavour ad) in $CONF
#   samba_user NAME PASSWORD  a plain domain user (samba-tool on the database)
#   samba_krb5 NAME PASSWORD  a user with a keytab and a private krb5.conf for
#                            GSSAPI binds (needs SAMBA_SERVICES with kdc; sets
#                            and exports KRB5_CONFIG, KRB5_CLIENT_KTNAME,
#                            KRB5CCNAME, all under $T: nothing in /etc)
#   samba_gssapi_missing     what is missing for GSSAPI binds ("" if nothing)
#
# SAMBA_SERVICES (before samba_init; default "ldap"): Samba's services,
# e.g. "ldap, kdc" for a test that binds with Kerberos.
#
# After samba_init: SAMBA_IP, SAMBA_URI (ldap://SAMBA_IP), SAMBA_URI_TLS
# (ldaps://), SAMBA_SUFFIX, SAMBA_ADMIN_DN/SAMBA_ADMIN_PW, SAMBA_CA (the
# test CA that signed Samba's certificate for SAMBA_IP) and SAMBA_WRONG_CA
# (a CA that did not).
#
# Samba's schema is Active Directory's base schema: proxyAddresses, mail,
# userAccountControl, objectGUID, uSNChanged and invocationId are there;
# Exchange's attributes (msExchRecipientTypeDetails,
# msExchRequireAuthToSendTo, targetAddress) are not.

SAMBA=${SAMBA:-/usr/sbin/samba}
SAMBA_TOOL=${SAMBA_TOOL:-/usr/bin/samba-tool}
SAMBA_SUFFIX="DC=test,DC=example,DC=com"
SAMBA_REALM="TEST.EXAMPLE.COM"
SAMBA_ADMIN_DN="CN=Administrator,CN=Users,$SAMBA_SUFFIX"
SAMBA_ADMIN_PW="Rcptgate-Test-1"
SAMBA_PID=""
SAMBA_SERVICES=${SAMBA_SERVICES:-ldap}

# As slapd.sh: no ldap.conf or ~/.ldaprc of the machine's in the tests.
LDAPCONF=/dev/null
LDAPRC=rcptgate-test-no-ldaprc
export LDAPCONF LDAPRC
unset LDAPNOINIT LDAPTLS_CACERT LDAPTLS_CACERTDIR LDAPTLS_REQCERT LDAPBASE LDAPURI LDAPBINDDN

# samba_missing - what is missing to run a private Samba DC ("" when nothing)
samba_missing() {
    [ -x "$SAMBA" ] || { echo "samba not installed ($SAMBA; Debian: samba-ad-dc)"; return; }
    [ -x "$SAMBA_TOOL" ] || { echo "samba-tool not installed ($SAMBA_TOOL)"; return; }
    for _sb_p in ldapsearch ldapadd ldapmodify ldapdelete base64 od openssl; do
        command -v "$_sb_p" >/dev/null 2>&1 || { echo "$_sb_p not installed"; return; }
    done
    # samba-ad-provision (only a Recommends of samba-ad-dc) holds the
    # provisioning data; samba-dsdb-modules the directory's ldb modules.
    if command -v dpkg-query >/dev/null 2>&1; then
        for _sb_p in samba-ad-dc samba-ad-provision samba-dsdb-modules; do
            dpkg-query -W -f='${Status}' "$_sb_p" 2>/dev/null | grep -q "ok installed" ||
                { echo "package $_sb_p not installed"; return; }
        done
    fi
    # Samba's DC wants root (it changes ownership of its sockets and files).
    [ "$(id -u)" = 0 ] || { echo "a Samba DC needs root"; return; }
}

# samba_require - skip the whole test cleanly when Samba or its tools are missing
samba_require() {
    _sb_why=$(samba_missing)
    [ -z "$_sb_why" ] || tl_skip_all "$_sb_why"
}

# samba_template - provision the template once (a stamp names the Samba
# version that made it); later calls find it ready
samba_template() {
    SAMBA_TEMPLATE="$top_builddir/tests/tmp/samba-template"
    _sb_ver=$("$SAMBA" -V 2>/dev/null)
    if [ -f "$SAMBA_TEMPLATE/stamp" ] && [ "$(cat "$SAMBA_TEMPLATE/stamp")" = "$_sb_ver" ]; then
        return 0
    fi
    # Provision beside it and rename, so that parallel runs never see half a
    # template: the loser of a race throws its copy away.
    _sb_new="$SAMBA_TEMPLATE.$$"
    rm -rf "$_sb_new"
    mkdir -p "$_sb_new"
    "$SAMBA_TOOL" domain provision --use-rfc2307 --realm="$SAMBA_REALM" --domain=TEST \
        --host-name=dc1 --server-role=dc --dns-backend=NONE --adminpass="$SAMBA_ADMIN_PW" \
        --targetdir="$_sb_new" >"$_sb_new.log" 2>&1 || {
        echo "# samba-tool domain provision failed:"
        sed 's/^/#   /' "$_sb_new.log" | tail -5
        rm -rf "$_sb_new"
        return 1
    }
    printf '%s\n' "$_sb_ver" > "$_sb_new/stamp"
    rm -rf "$SAMBA_TEMPLATE.old"
    [ -d "$SAMBA_TEMPLATE" ] && mv "$SAMBA_TEMPLATE" "$SAMBA_TEMPLATE.old" 2>/dev/null
    mv -T "$_sb_new" "$SAMBA_TEMPLATE" 2>/dev/null || rm -rf "$_sb_new"
    rm -rf "$SAMBA_TEMPLATE.old" "$_sb_new.log"
    [ -f "$SAMBA_TEMPLATE/stamp" ]
}

# samba_listening IP - whether anything listens on IP:389
samba_listening() {
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -ltnH "src $1:389" 2>/dev/null)" ]
    else
        ldapsearch -x -H "ldap://$1" -o nettimeout=1 -b "" -s base 1.1 >/dev/null 2>&1
    fi
}

# samba_pick_ip - a loopback address in 127.0.0.100-249 where nothing listens
samba_pick_ip() {
    _sb_i=0
    while [ $_sb_i -lt 20 ]; do
        _sb_n=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
        SAMBA_IP="127.0.0.$((100 + _sb_n % 150))"
        samba_listening "$SAMBA_IP" || return 0
        _sb_i=$((_sb_i + 1))
    done
    return 1
}

# samba_certs - a test CA and a certificate for $SAMBA_IP it signed, for
# Samba's LDAPS and StartTLS (the certificate Samba generates itself names
# DC1.test.example.com, which a client reaching it by address cannot match
# without an /etc/hosts entry), and a wrong CA that signed nothing
samba_certs() {
    _sb_d="$SAMBA_DIR/certs"
    rm -rf "$_sb_d"
    mkdir -p "$_sb_d"
    _sb_curve="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
    for _sb_ca in ca wrong-ca; do
        # shellcheck disable=SC2086
        openssl req -x509 $_sb_curve -nodes -days 2 -subj "/CN=rcptgate Samba test $_sb_ca" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$_sb_d/$_sb_ca.key" -out "$_sb_d/$_sb_ca.pem" 2>>"$_sb_d/openssl.log" || return 1
    done
    # shellcheck disable=SC2086
    openssl req $_sb_curve -nodes -subj "/CN=$SAMBA_IP" \
        -keyout "$_sb_d/server.key" -out "$_sb_d/server.csr" 2>>"$_sb_d/openssl.log" || return 1
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=IP:$SAMBA_IP" > "$_sb_d/server.ext"
    openssl x509 -req -in "$_sb_d/server.csr" -CA "$_sb_d/ca.pem" -CAkey "$_sb_d/ca.key" \
        -CAcreateserial -days 2 -extfile "$_sb_d/server.ext" \
        -out "$_sb_d/server.pem" 2>>"$_sb_d/openssl.log" || return 1
    chmod 600 "$_sb_d/server.key"       # Samba refuses a key others may read
    SAMBA_CA="$_sb_d/ca.pem"
    SAMBA_WRONG_CA="$_sb_d/wrong-ca.pem"
}

# samba_write_conf - smb.conf: every path under $SAMBA_DIR, LDAP only, on $SAMBA_IP
samba_write_conf() {
    samba_certs || { echo "# openssl failed, see $SAMBA_DIR/certs/openssl.log"; return 1; }
    cat > "$SAMBA_DIR/etc/smb.conf" <<EOF
# smb.conf for the test $T (written by tests/lib/samba.sh)
[global]
	netbios name = DC1
	workgroup = TEST
	realm = $SAMBA_REALM
	server role = active directory domain controller
	server services = $SAMBA_SERVICES
	interfaces = $SAMBA_IP/8
	bind interfaces only = yes
	ldap server require strong auth = no
	private dir = $SAMBA_DIR/private
	lock directory = $SAMBA_DIR
	state directory = $SAMBA_DIR/state
	cache directory = $SAMBA_DIR/cache
	binddns dir = $SAMBA_DIR/bind-dns
	ncalrpc dir = $SAMBA_DIR/ncalrpc
	pid directory = $SAMBA_DIR/run
	log file = $SAMBA_DIR/log/log.%m
	logging = file
	log level = 1
	idmap_ldb:use rfc2307 = yes
	tls enabled = yes
	tls certfile = $SAMBA_DIR/certs/server.pem
	tls keyfile = $SAMBA_DIR/certs/server.key
	tls cafile = $SAMBA_DIR/certs/ca.pem
EOF
}

# samba_init - the domain under $T/samba, copied from the template
samba_init() {
    samba_template || return 1
    SAMBA_DIR="$T/samba"
    rm -rf "$SAMBA_DIR"
    cp -a "$SAMBA_TEMPLATE" "$SAMBA_DIR" || return 1
    mkdir -p "$SAMBA_DIR/etc" "$SAMBA_DIR/cache" "$SAMBA_DIR/run" "$SAMBA_DIR/log" "$SAMBA_DIR/ncalrpc"
    samba_pick_ip || { echo "# no free loopback address for Samba"; return 1; }
    SAMBA_URI="ldap://$SAMBA_IP"
    SAMBA_URI_TLS="ldaps://$SAMBA_IP"
    samba_write_conf
}

# samba_listener_ours - is a process holding $SAMBA_IP:389 ours ($SAMBA_PID
# or, in prefork, one of its descendants)?
samba_listener_ours() {
    for _sb_l in $(ss -ltnpH "src $SAMBA_IP:389" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2); do
        while [ -n "$_sb_l" ] && [ "$_sb_l" -gt 1 ]; do
            [ "$_sb_l" = "$SAMBA_PID" ] && return 0
            _sb_l=$(awk '/^PPid:/ { print $2 }' "/proc/$_sb_l/status" 2>/dev/null)
        done
    done
    return 1
}

# samba_run - start samba on $SAMBA_IP; 0 ready, 1 it exited, 2 no answer,
# 3 another server answers there
samba_run() {
    [ -f "$SAMBA_DIR/samba.log" ] && cat "$SAMBA_DIR/samba.log" >> "$SAMBA_DIR/samba-old.log"
    : > "$SAMBA_DIR/samba.log"
    # -M single (the default of $SAMBA_MODEL here): one process, so that
    # its pid is the listener's. Debian's default is prefork (a master
    # and its workers, the listener shared): benches may ask for it.
    (cd "$SAMBA_DIR" && exec "$SAMBA" -i -M "${SAMBA_MODEL:-single}" -s "$SAMBA_DIR/etc/smb.conf" \
        --maximum-runtime=7200 </dev/null >>"$SAMBA_DIR/samba.log" 2>&1) &
    SAMBA_PID=$!
    _sb_i=0
    while :; do
        if ldapsearch -x -H "$SAMBA_URI" -b "" -s base -LLL dsServiceName >/dev/null 2>&1; then
            # Another test's Samba may have taken the address first.
            if command -v ss >/dev/null 2>&1 && ! samba_listener_ours; then
                kill -TERM "$SAMBA_PID" 2>/dev/null
                wait "$SAMBA_PID" 2>/dev/null
                SAMBA_PID=""
                return 3
            fi
            tl_pids="$tl_pids $SAMBA_PID"
            return 0
        fi
        if ! kill -0 "$SAMBA_PID" 2>/dev/null; then
            wait "$SAMBA_PID" 2>/dev/null
            SAMBA_PID=""
            return 1
        fi
        _sb_i=$((_sb_i + 1))
        if [ $_sb_i -gt 300 ]; then
            kill -KILL "$SAMBA_PID" 2>/dev/null
            wait "$SAMBA_PID" 2>/dev/null
            SAMBA_PID=""
            return 2
        fi
        sleep 0.1
    done
}

# samba_start - start samba, on another address if this one is taken
samba_start() {
    _sb_tries=0
    while :; do
        samba_run
        _sb_rc=$?
        [ $_sb_rc = 0 ] && return 0
        _sb_tries=$((_sb_tries + 1))
        # 1: perhaps another instance took the address between the check
        # and the bind (samba exits when it cannot listen); 3: it did.
        if [ $_sb_rc = 2 ] || [ $_sb_tries -ge 5 ]; then
            [ $_sb_rc = 1 ] && echo "# samba exited at start"
            [ $_sb_rc = 2 ] && echo "# samba did not answer on $SAMBA_URI within 30 s"
            [ $_sb_rc = 3 ] && echo "# another server kept answering on $SAMBA_URI"
            sed 's/^/#   /' "$SAMBA_DIR/samba.log" | tail -5
            return 1
        fi
        samba_pick_ip || return 1
        SAMBA_URI="ldap://$SAMBA_IP"
        SAMBA_URI_TLS="ldaps://$SAMBA_IP"
        samba_write_conf || return 1
    done
}

# samba_stop - SIGTERM and wait
samba_stop() {
    [ -n "$SAMBA_PID" ] || return 0
    kill -TERM "$SAMBA_PID" 2>/dev/null
    wait "$SAMBA_PID" 2>/dev/null
    tl_pids=$(echo "$tl_pids" | sed "s/ $SAMBA_PID\$//; s/ $SAMBA_PID / /")
    SAMBA_PID=""
}

# samba_tool PROGRAM ARGS... - an LDAP client bound as Administrator
samba_tool() {
    _sb_prog=$1
    shift
    "$_sb_prog" -x -H "$SAMBA_URI" -D "$SAMBA_ADMIN_DN" -w "$SAMBA_ADMIN_PW" "$@"
}

# samba_add [FILE] - ldapadd as Administrator (LDIF from FILE or stdin)
samba_add() {
    samba_tool ldapadd ${1:+-f "$1"} >>"$SAMBA_DIR/ldapmodify.log" 2>&1
}

# samba_modify [FILE] - ldapmodify as Administrator (LDIF with changetype)
samba_modify() {
    samba_tool ldapmodify ${1:+-f "$1"} >>"$SAMBA_DIR/ldapmodify.log" 2>&1
}

# samba_delete DN... - ldapdelete as Administrator
samba_delete() {
    samba_tool ldapdelete "$@" >>"$SAMBA_DIR/ldapmodify.log" 2>&1
}

# samba_search ARGS... - ldapsearch -LLL as Administrator, lines unwrapped
samba_search() {
    samba_tool ldapsearch -LLL -o ldif-wrap=no "$@"
}

# samba_hex DN ATTR - a binary attribute (objectGUID, invocationId) of one
# entry, its bytes in order as lowercase hex
samba_hex() {
    samba_search -b "$1" -s base "(objectClass=*)" "$2" 2>/dev/null |
        sed -n "s/^$2:: //p" | base64 -d | od -An -v -tx1 | tr -d ' \n'
}

# samba_source NAME [key=value ...] - append [source NAME] (flavour ad) to
# $CONF, bound as Administrator with the password in a 0600 file. Keys
# given replace the defaults; base may be given several times.
samba_source() {
    _sb_name=$1
    shift
    _sb_pwfile="$T/$_sb_name.password"
    rm -f "$_sb_pwfile"
    (umask 077 && printf '%s' "$SAMBA_ADMIN_PW" > "$_sb_pwfile")
    {
        echo ""
        echo "[source $_sb_name]"
        echo "type = ldap"
        echo "flavour = ad"
        for _sb_key in uri bind_dn bind_password_file tls timeout connect_timeout base; do
            _sb_set=""
            for _sb_kv in "$@"; do
                case $_sb_kv in "$_sb_key="*) _sb_set=1 ;; esac
            done
            [ -n "$_sb_set" ] && continue
            case $_sb_key in
            uri) echo "uri = $SAMBA_URI" ;;
            bind_dn) echo "bind_dn = $SAMBA_ADMIN_DN" ;;
            bind_password_file) echo "bind_password_file = $_sb_pwfile" ;;
            tls) echo "tls = none" ;;
            timeout) echo "timeout = 10s" ;;
            connect_timeout) echo "connect_timeout = 3s" ;;
            base) echo "base = $SAMBA_SUFFIX" ;;
            esac
        done
        for _sb_kv in "$@"; do
            echo "${_sb_kv%%=*} = ${_sb_kv#*=}"
        done
    } >> "$CONF"
}

# samba_user NAME PASSWORD - a domain user CN=NAME,CN=Users (no mail)
samba_user() {
    "$SAMBA_TOOL" user create "$1" "$2" -s "$SAMBA_DIR/etc/smb.conf" >>"$SAMBA_DIR/samba-tool.log" 2>&1
}

# samba_gssapi_missing - what a GSSAPI bind needs that is not here ("" if nothing)
samba_gssapi_missing() {
    ls /usr/lib/*/sasl2/libgssapiv2.so* >/dev/null 2>&1 ||
        { echo "Cyrus SASL's GSSAPI module is not installed (Debian: libsasl2-modules-gssapi-mit)"; return; }
    case $SAMBA_SERVICES in
    *kdc*) ;;
    *) echo "Samba runs without its KDC (SAMBA_SERVICES)" ;;
    esac
}

# samba_krb5 NAME PASSWORD - a user, a keytab of its keys and a krb5.conf
# that knows only this realm and this KDC, for GSSAPI binds to
# ldap://$SAMBA_IP: the DC's account gets the SPN ldap/$SAMBA_IP, and
# the client neither asks DNS for the KDC nor canonicalises the host, so
# the service ticket is for the address the URI names
samba_krb5() {
    samba_user "$1" "$2" || return 1
    "$SAMBA_TOOL" spn add "ldap/$SAMBA_IP" 'DC1$' -s "$SAMBA_DIR/etc/smb.conf" \
        >>"$SAMBA_DIR/samba-tool.log" 2>&1 || return 1
    rm -f "$T/$1.keytab"
    "$SAMBA_TOOL" domain exportkeytab "$T/$1.keytab" --principal="$1@$SAMBA_REALM" \
        -s "$SAMBA_DIR/etc/smb.conf" >>"$SAMBA_DIR/samba-tool.log" 2>&1 || return 1
    cat > "$T/krb5.conf" <<EOF
[libdefaults]
	default_realm = $SAMBA_REALM
	dns_lookup_kdc = false
	dns_lookup_realm = false
	rdns = false
	dns_canonicalize_hostname = false
	udp_preference_limit = 1
[realms]
	$SAMBA_REALM = {
		kdc = $SAMBA_IP
	}
[domain_realm]
	$SAMBA_IP = $SAMBA_REALM
EOF
    KRB5_CONFIG="$T/krb5.conf"
    KRB5_CLIENT_KTNAME="$T/$1.keytab"
    KRB5CCNAME="FILE:$T/$1.ccache"
    export KRB5_CONFIG KRB5_CLIENT_KTNAME KRB5CCNAME
}
