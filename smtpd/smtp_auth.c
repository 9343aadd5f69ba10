/*
 * smtp_auth.c - SASL AUTH (RFC 4954) through Cyrus SASL
 *
 * NAME
 *   smtp_auth - the server side of AUTH PLAIN and AUTH LOGIN
 *
 * SYNOPSIS
 *   smtp_auth_init() once at startup (after the config is loaded), then
 *   per AUTH command smtp_auth_start() and, while it answers
 *   SMTP_AUTH_CONTINUE, smtp_auth_step() with each client line.
 *
 * DESCRIPTION
 *   Cyrus SASL is initialised with the application name sasl_app_name;
 *   its <sasl_app_name>.conf is looked for in sasl_config_dir when that is
 *   set (a SASL_CB_GETCONFPATH callback), else in Cyrus's default path.
 *   That file chooses the backend (pwcheck_method, auxprop_plugin,
 *   saslauthd, ldapdb) and may narrow mech_list.
 *
 *   Only PLAIN and LOGIN are offered, and only those of the two that the
 *   library really has: they are what an AD or LDAP password backend can
 *   check, and they are safe only inside TLS. So every exchange refuses
 *   to start outside a submission listener (503) or before STARTTLS (530),
 *   whatever the caller checked; given that, the security properties
 *   allow plaintext mechanisms and forbid anonymous ones, and ask for no
 *   SASL security layer (TLS is the layer). SASL_SSF_EXTERNAL is left
 *   unset: the session does not hand us the cipher's strength, and
 *   PLAIN and LOGIN need none once plaintext is allowed.
 *
 *   The realm is Cyrus's default, our host name: a user "alice" is
 *   checked as alice@<hostname> (saslpasswd2 -u <hostname>), and on
 *   success c->sasl_user is SASL_USERNAME, "alice" (or "alice@realm"
 *   when the client named another realm); the sender login check
 *   (store_login_owns) accepts both forms.
 *
 *   Client data is base64 (strict: the alphabet, padding only at the
 *   end, a length that is a multiple of 4; a CR or LF inside is malformed
 *   and answered 501 5.5.2). "=" as an initial response is an empty one;
 *   "*" cancels (501 5.7.0). Replies are Postfix's:
 *       334 <base64 challenge>
 *       235 2.7.0 Authentication successful
 *       535 5.7.8 Error: authentication failed: <reason>
 *       454 4.7.0 Temporary authentication failure: <reason>
 *   A failed password (SMTP_AUTH_FAIL) is logged by the session, which
 *   also counts it (smtpd_anvil), as Postfix logs it so that fail2ban's
 *   postfix[mode=auth] filter works: "warning: host[addr]: SASL PLAIN
 *   authentication failed: authentication failure"; a backend that
 *   cannot decide (454) is logged here in the same form. The reason is
 *   the SASL status text only ("user not found" is reported as
 *   "authentication failure" so a client cannot probe for names); never
 *   what the client sent.
 *
 *   Decoded client data (it holds the password) is wiped before it is
 *   freed, and SASL's own log messages above SASL_LOG_NOTE (traces that
 *   may hold passwords) are dropped.
 *
 *   A backend check runs inside the event loop: sasldb and auxprop are
 *   quick; saslauthd waits on its socket (as one Postfix smtpd process
 *   would).
 *
 * DIAGNOSTICS
 *   smtp_auth_init() fails when the SASL library cannot start; with no
 *   PLAIN or LOGIN available it succeeds with a warning and AUTH is not
 *   offered (smtp_auth_mechs() is "").
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sasl/sasl.h>
#include <sasl/saslutil.h>

#include "log.h"
#include "smtp_auth.h"
#include "params_smtpd.h"
#include "xalloc.h"

struct smtp_auth {
    sasl_conn_t *conn;
    SMTPD_CLIENT *c;
    char mech[16];              /* "PLAIN" or "LOGIN" */
    int login_user;             /* LOGIN: the user name has been given */
};

static int auth_ready;          /* sasl_server_init() succeeded */
static char *auth_confpath;     /* our copy of sasl_config_dir; cfg's may change on reload */
static char auth_mechs[32];     /* "PLAIN LOGIN", "PLAIN", "LOGIN" or "" */

/* The mechanisms we ever offer, in the order of the EHLO line. */
static const char *const auth_wanted[] = {"PLAIN", "LOGIN"};

/* auth_getconfpath - SASL_CB_GETCONFPATH: our sasl_config_dir */
static int auth_getconfpath(void *context, const char **path)
{
    (void) context;
    if (path == NULL)
        return SASL_BADPARAM;
    *path = auth_confpath;
    return SASL_OK;
}

/* auth_log - SASL_CB_LOG: SASL's messages into ours, never its traces */
static int auth_log(void *context, int level, const char *message)
{
    (void) context;
    if (message == NULL)
        return SASL_OK;
    switch (level) {
    case SASL_LOG_ERR:
        log_warn("SASL: %s", message);
        break;
    case SASL_LOG_FAIL:
    case SASL_LOG_WARN:
    case SASL_LOG_NOTE:
        log_debug("SASL: %s", message);
        break;
    default:                    /* DEBUG, TRACE, PASS: may hold secrets */
        break;
    }
    return SASL_OK;
}

typedef int (*auth_cb_fn)(void);

/* The callbacks of sasl_server_init; GETCONFPATH only when a path is set. */
static sasl_callback_t auth_callbacks[] = {
    {SASL_CB_LOG, (auth_cb_fn) (void (*)(void)) auth_log, NULL},
    {SASL_CB_GETCONFPATH, (auth_cb_fn) (void (*)(void)) auth_getconfpath, NULL},
    {SASL_CB_LIST_END, NULL, NULL},
};

/* auth_new_conn - a server connection with our security properties */
static int auth_new_conn(const SMTPD_CLIENT *c, sasl_conn_t **connp)
{
    sasl_security_properties_t props;
    char remote[SMTPD_ADDR_LEN + 16];
    int rc;

    if (c != NULL && c->addr[0] != 0)
        snprintf(remote, sizeof(remote), "%s;%d", c->addr, c->port);
    rc = sasl_server_new(var_smtpd_sasl_service && *var_smtpd_sasl_service ? var_smtpd_sasl_service : "smtp",
                         smtpd_hostname, NULL, NULL,
                         c != NULL && c->addr[0] != 0 ? remote : NULL, NULL, 0, connp);
    if (rc != SASL_OK)
        return rc;
    memset(&props, 0, sizeof(props));
    props.min_ssf = 0;
    props.max_ssf = 0;          /* no SASL security layer: TLS is the layer */
    props.maxbufsize = 0;
    props.security_flags = SASL_SEC_NOANONYMOUS;        /* plaintext is fine inside TLS */
    rc = sasl_setprop(*connp, SASL_SEC_PROPS, &props);
    if (rc != SASL_OK) {
        sasl_dispose(connp);
        *connp = NULL;
    }
    return rc;
}

/* auth_find_mechs - which of PLAIN and LOGIN the library offers us */
static void auth_find_mechs(void)
{
    sasl_conn_t *conn = NULL;
    const char *list;
    unsigned len;
    int count, rc;

    auth_mechs[0] = 0;
    if ((rc = auth_new_conn(NULL, &conn)) != SASL_OK) {
        log_warn("SASL: cannot create a connection: %s", sasl_errstring(rc, NULL, NULL));
        return;
    }
    rc = sasl_listmech(conn, NULL, " ", " ", " ", &list, &len, &count);
    if (rc == SASL_OK) {
        for (size_t i = 0; i < sizeof(auth_wanted) / sizeof(auth_wanted[0]); i++) {
            char word[24];

            snprintf(word, sizeof(word), " %s ", auth_wanted[i]);
            if (strstr(list, word) == NULL)
                continue;
            if (auth_mechs[0] != 0)
                strcat(auth_mechs, " ");
            strcat(auth_mechs, auth_wanted[i]);
        }
    }
    sasl_dispose(&conn);
    if (auth_mechs[0] == 0)
        log_warn("SASL: neither PLAIN nor LOGIN is available (%s.conf mech_list, plugins): AUTH not offered",
                 var_smtpd_sasl_app);
}

/* smtp_auth_init - start Cyrus SASL as sasl_app_name, with sasl_config_dir */
int smtp_auth_init(char *err, size_t errlen)
{
    int rc;

    if (!auth_ready) {
        free(auth_confpath);
        auth_confpath = var_smtpd_sasl_path != NULL && *var_smtpd_sasl_path
            ? xstrdup(var_smtpd_sasl_path) : NULL;
        if (auth_confpath == NULL)
            auth_callbacks[1].id = SASL_CB_LIST_END;
        rc = sasl_server_init(auth_callbacks, var_smtpd_sasl_app && *var_smtpd_sasl_app
                              ? var_smtpd_sasl_app : "rcptgate-smtpd");
        if (rc != SASL_OK) {
            snprintf(err, errlen, "SASL initialisation: %s", sasl_errstring(rc, NULL, NULL));
            return -1;
        }
        auth_ready = 1;
    }
    /* Cyrus reads its configuration once; a reload only looks again at what it has. */
    auth_find_mechs();
    return 0;
}

/* smtp_auth_mechs - the mechanisms for the EHLO AUTH line */
const char *smtp_auth_mechs(void)
{
    return auth_ready ? auth_mechs : "";
}

/* auth_offered - is mech (any case) one of ours? Copies its upper-case name. */
static int auth_offered(const char *mech, char *out, size_t outlen)
{
    for (size_t i = 0; i < sizeof(auth_wanted) / sizeof(auth_wanted[0]); i++) {
        const char *w = auth_wanted[i];
        const char *p = strstr(auth_mechs, w);
        size_t n = strlen(w);

        if (strcasecmp(mech, w) == 0 && p != NULL && (p[n] == 0 || p[n] == ' ')) {
            snprintf(out, outlen, "%s", w);
            return 1;
        }
    }
    return 0;
}

/* auth_b64_valid - strict base64: alphabet, padding only at the end, length % 4 == 0 */
static int auth_b64_valid(const char *s, size_t len)
{
    size_t pad = 0;

    if (len % 4 != 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char) s[i];

        if (ch == '=') {
            if (i < len - 2)
                return 0;
            pad++;
        } else if (pad > 0) {
            return 0;
        } else if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
                     || (ch >= '0' && ch <= '9') || ch == '+' || ch == '/')) {
            return 0;
        }
    }
    return 1;
}

/* auth_decode - base64 text into a new buffer (*out, *outlen); 0 or -1 (malformed) */
static int auth_decode(const char *in, char **out, unsigned *outlen)
{
    size_t len = strlen(in);
    size_t size = len / 4 * 3 + 1;
    char *buf;

    if (!auth_b64_valid(in, len) || len > 65536)
        return -1;
    buf = xmalloc(size);
    if (sasl_decode64(in, (unsigned) len, buf, (unsigned) size, outlen) != SASL_OK) {
        explicit_bzero(buf, size);
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* auth_wipe - clear and free decoded client data */
static void auth_wipe(char *buf, unsigned len)
{
    if (buf != NULL) {
        explicit_bzero(buf, len);
        free(buf);
    }
}

/* auth_release - end the exchange: dispose of the SASL connection, free a */
static void auth_release(SMTP_AUTH *a)
{
    if (a == NULL)
        return;
    if (a->conn != NULL)
        sasl_dispose(&a->conn);
    free(a);
}

/*
 * auth_result - turn a SASL status after start/step into our reply.
 * CONTINUE leaves a alive; every other outcome frees it.
 */
static enum smtp_auth_status auth_result(SMTP_AUTH *a, int rc, const char *out, unsigned outlen,
                                         char *reply, size_t replylen)
{
    SMTPD_CLIENT *c = a->c;
    const void *user = NULL;
    enum smtp_auth_status st;

    switch (rc) {
    case SASL_CONTINUE: {
            /* 334 and the challenge; SASL's are small (LOGIN's "Username:") */
            char enc[1024];
            unsigned enclen = 0;

            if (outlen > (sizeof(enc) - 1) / 4 * 3
                || sasl_encode64(out != NULL ? out : "", outlen, enc, sizeof(enc), &enclen) != SASL_OK) {
                snprintf(reply, replylen, "454 4.7.0 Temporary authentication failure: challenge too long");
                auth_release(a);
                return SMTP_AUTH_ERROR;
            }
            snprintf(reply, replylen, "334 %.*s", (int) enclen, enc);
            return SMTP_AUTH_CONTINUE;
        }
    case SASL_OK:
        if (sasl_getprop(a->conn, SASL_USERNAME, &user) != SASL_OK || user == NULL
            || *(const char *) user == 0) {
            log_warn("%s[%s]: SASL %s: no user name after authentication", c->name, c->addr, a->mech);
            snprintf(reply, replylen, "454 4.7.0 Temporary authentication failure: no user name");
            st = SMTP_AUTH_ERROR;
            break;
        }
        free(c->sasl_user);
        free(c->sasl_method);
        c->sasl_user = xstrdup(user);
        c->sasl_method = xstrdup(a->mech);
        snprintf(reply, replylen, "235 2.7.0 Authentication successful");
        st = SMTP_AUTH_OK;
        break;
    case SASL_NOMEM:
    case SASL_TRYAGAIN:
    case SASL_UNAVAIL:
    case SASL_FAIL:
        /* The backend could not decide: not the client's fault, not counted. */
        log_warn("%s[%s]: SASL %s authentication failed: %s", c->name, c->addr, a->mech,
                 sasl_errstring(rc, NULL, NULL));
        snprintf(reply, replylen, "454 4.7.0 Temporary authentication failure: %s",
                 sasl_errstring(rc, NULL, NULL));
        st = SMTP_AUTH_ERROR;
        break;
    default: {
            /* Wrong password, unknown user, malformed PLAIN, disabled, expired ... */
            const char *why = rc == SASL_NOUSER ? sasl_errstring(SASL_BADAUTH, NULL, NULL)
                : sasl_errstring(rc, NULL, NULL);

            /* The session logs the failure ("SASL ... authentication failed"), with the anvil's verdict. */
            snprintf(reply, replylen, "535 5.7.8 Error: authentication failed: %s", why);
            st = SMTP_AUTH_FAIL;
            break;
        }
    }
    auth_release(a);
    return st;
}

/*
 * auth_empty_login_user - LOGIN's first client data is the user name.
 * An empty one is refused here, never handed to SASL: Cyrus's LOGIN
 * module (2.1.28) then leaks the password's buffer, unwiped, each time.
 */
static int auth_empty_login_user(SMTP_AUTH *a, unsigned inlen)
{
    if (strcmp(a->mech, "LOGIN") != 0 || a->login_user)
        return 0;
    a->login_user = 1;
    return inlen == 0;
}

/* auth_refuse - a failed attempt answered without asking SASL; frees a */
static enum smtp_auth_status auth_refuse(SMTP_AUTH *a, char *reply, size_t replylen)
{
    snprintf(reply, replylen, "535 5.7.8 Error: authentication failed: %s",
             sasl_errstring(SASL_BADAUTH, NULL, NULL));
    auth_release(a);
    return SMTP_AUTH_FAIL;
}

/* smtp_auth_start - "AUTH mech [initial-response]" */
enum smtp_auth_status smtp_auth_start(SMTPD_CLIENT *c, const char *mech, const char *initial,
                                      SMTP_AUTH **ap, char *reply, size_t replylen)
{
    SMTP_AUTH *a;
    const char *out = NULL;
    unsigned outlen = 0, inlen = 0;
    char *in = NULL;
    char name[16];
    int rc;

    *ap = NULL;
    if (!c->submission || !auth_ready || auth_mechs[0] == 0) {
        snprintf(reply, replylen, "503 5.5.1 Error: authentication not enabled");
        return SMTP_AUTH_ERROR;
    }
    if (!c->tls) {
        snprintf(reply, replylen, "530 5.7.0 Must issue a STARTTLS command first");
        return SMTP_AUTH_ERROR;
    }
    if (c->sasl_user != NULL) {
        snprintf(reply, replylen, "503 5.5.1 Error: already authenticated");
        return SMTP_AUTH_ERROR;
    }
    if (c->sender != NULL) {
        snprintf(reply, replylen, "503 5.5.1 Error: MAIL transaction in progress");
        return SMTP_AUTH_ERROR;
    }
    if (mech == NULL || !auth_offered(mech, name, sizeof(name))) {
        snprintf(reply, replylen, "504 5.5.4 Unsupported authentication mechanism");
        return SMTP_AUTH_ERROR;
    }
    if (initial != NULL) {
        if (strcmp(initial, "*") == 0) {
            snprintf(reply, replylen, "501 5.7.0 Authentication aborted");
            return SMTP_AUTH_ERROR;
        }
        if (strcmp(initial, "=") == 0) {
            in = xstrdup("");
        } else if (*initial == 0 || auth_decode(initial, &in, &inlen) < 0) {
            snprintf(reply, replylen, "501 5.5.2 Cannot decode response");
            return SMTP_AUTH_ERROR;
        }
    }
    a = xcalloc(1, sizeof(*a));
    a->c = c;
    snprintf(a->mech, sizeof(a->mech), "%s", name);
    if ((rc = auth_new_conn(c, &a->conn)) != SASL_OK) {
        log_warn("%s[%s]: SASL: cannot create a connection: %s", c->name, c->addr,
                 sasl_errstring(rc, NULL, NULL));
        snprintf(reply, replylen, "454 4.7.0 Temporary authentication failure: %s",
                 sasl_errstring(rc, NULL, NULL));
        auth_wipe(in, inlen);
        auth_release(a);
        return SMTP_AUTH_ERROR;
    }
    if (in != NULL && auth_empty_login_user(a, inlen)) {
        auth_wipe(in, inlen);
        return auth_refuse(a, reply, replylen);
    }
    rc = sasl_server_start(a->conn, a->mech, in, in != NULL ? inlen : 0, &out, &outlen);
    auth_wipe(in, inlen);
    {
        enum smtp_auth_status st = auth_result(a, rc, out, outlen, reply, replylen);

        if (st == SMTP_AUTH_CONTINUE)
            *ap = a;
        return st;
    }
}

/* smtp_auth_step - the client's next line; "*" cancels */
enum smtp_auth_status smtp_auth_step(SMTP_AUTH *a, const char *line, char *reply, size_t replylen)
{
    const char *out = NULL;
    unsigned outlen = 0, inlen = 0;
    char *in = NULL;
    int rc;

    if (a == NULL) {
        snprintf(reply, replylen, "503 5.5.1 Error: no authentication in progress");
        return SMTP_AUTH_ERROR;
    }
    if (strcmp(line, "*") == 0) {
        snprintf(reply, replylen, "501 5.7.0 Authentication aborted");
        auth_release(a);
        return SMTP_AUTH_ERROR;
    }
    if (auth_decode(line, &in, &inlen) < 0) {
        snprintf(reply, replylen, "501 5.5.2 Cannot decode response");
        auth_release(a);
        return SMTP_AUTH_ERROR;
    }
    if (auth_empty_login_user(a, inlen)) {
        auth_wipe(in, inlen);
        return auth_refuse(a, reply, replylen);
    }
    rc = sasl_server_step(a->conn, in, inlen, &out, &outlen);
    auth_wipe(in, inlen);
    return auth_result(a, rc, out, outlen, reply, replylen);
}

/* smtp_auth_free - abandon an exchange */
void smtp_auth_free(SMTP_AUTH *a)
{
    auth_release(a);
}

/* smtp_auth_done - release SASL's global state at exit */
void smtp_auth_done(void)
{
    if (auth_ready) {
        sasl_server_done();
        auth_ready = 0;
    }
    free(auth_confpath);
    auth_confpath = NULL;
    auth_mechs[0] = 0;
}
