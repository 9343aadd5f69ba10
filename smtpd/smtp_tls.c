/*
 * smtp_tls.c - OpenSSL contexts for both sides of rcptgate-smtpd
 *
 * NAME
 *      smtp_tls - server (STARTTLS for clients) and client (STARTTLS to the
 *      next hop) TLS contexts
 * SYNOPSIS
 *      smtp_tls_load(err, errlen) at start and on SIGHUP, then
 *      smtp_tls_server_new() per client STARTTLS and smtp_tls_client_new(host, verify)
 *      per downstream STARTTLS.
 * DESCRIPTION
 *      The server context takes [smtpd] tls_cert_file (PEM, may hold the
 *      chain) and tls_key_file; the key file must be a regular file that
 *      neither group nor others may read or write, and the key must match
 *      the certificate. The client context trusts relay_ca_file, or the
 *      system store when that is empty; peers are verified (with their
 *      name) only when relay_tls = verify. Both speak TLS 1.2 or newer.
 *
 *      A reload builds fresh contexts and swaps them in only when both
 *      were built; an SSL made earlier holds a reference to its context,
 *      so sessions in progress keep theirs until they end.
 * DIAGNOSTICS
 *      smtp_tls_load returns -1 with err set; the old contexts stay.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cfg.h"
#include "log.h"
#include "params_smtpd.h"
#include "smtp_tls.h"

static SSL_CTX *smtp_tls_server_ctx;    /* NULL: no certificate configured */
static SSL_CTX *smtp_tls_client_ctx;    /* NULL: smtp_tls_load not run (or failed at start) */

/* smtp_tls_ssl_error - the last OpenSSL error as text, queue cleared */
static const char *smtp_tls_ssl_error(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();

    if (e == 0)
        snprintf(buf, size, "unknown error");
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

/* smtp_tls_key_check - refuse a key file that group or others may read, or another user owns */
static int smtp_tls_key_check(const char *path, char *err, size_t errlen)
{
    struct stat sb;

    if (stat(path, &sb) < 0) {
        snprintf(err, errlen, "tls_key_file %s: %s", path, strerror(errno));
        return -1;
    }
    /* As Postfix and Debian have it: a key may be 0640 root:ssl-cert for a daemon in that group. */
    return cfg_secret_ok("tls_key_file", path, &sb, 1, err, errlen) ? 0 : -1;
}

/* smtp_tls_server_build - a server context from the certificate and key files */
static SSL_CTX *smtp_tls_server_build(char *err, size_t errlen)
{
    char ebuf[256];
    SSL_CTX *ctx;

    if (smtp_tls_key_check(var_smtpd_tls_key, err, errlen) < 0)
        return NULL;
    if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        snprintf(err, errlen, "SSL_CTX_new: %s", smtp_tls_ssl_error(ebuf, sizeof(ebuf)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
                        | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate_chain_file(ctx, var_smtpd_tls_cert) != 1) {
        snprintf(err, errlen, "tls_cert_file %s: %s", var_smtpd_tls_cert,
                 smtp_tls_ssl_error(ebuf, sizeof(ebuf)));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, var_smtpd_tls_key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            snprintf(err, errlen, "tls_key_file %s does not match tls_cert_file %s",
                     var_smtpd_tls_key, var_smtpd_tls_cert);
            ERR_clear_error();
            SSL_CTX_free(ctx);
            return NULL;
        }
        snprintf(err, errlen, "tls_key_file %s: %s", var_smtpd_tls_key,
                 smtp_tls_ssl_error(ebuf, sizeof(ebuf)));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls_key_file %s does not match tls_cert_file %s", var_smtpd_tls_key,
                 var_smtpd_tls_cert);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* smtp_tls_client_build - the context for STARTTLS to next hops */
static SSL_CTX *smtp_tls_client_build(char *err, size_t errlen)
{
    char ebuf[256];
    SSL_CTX *ctx;

    if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        snprintf(err, errlen, "SSL_CTX_new: %s", smtp_tls_ssl_error(ebuf, sizeof(ebuf)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (var_smtpd_relay_ca && *var_smtpd_relay_ca) {
        if (SSL_CTX_load_verify_locations(ctx, var_smtpd_relay_ca, NULL) != 1) {
            snprintf(err, errlen, "relay_ca_file %s: %s", var_smtpd_relay_ca,
                     smtp_tls_ssl_error(ebuf, sizeof(ebuf)));
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (strcmp(var_smtpd_relay_tls, "verify") == 0 && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        /*
         * Only verify needs a store (reading the system's costs a few
         * hundred ms on every reload); a failure here is not fatal: the
         * first verified handshake fails loudly.
         */
        log_warn("TLS: cannot load the system CA store: %s", smtp_tls_ssl_error(ebuf, sizeof(ebuf)));
    }
    /* Peer verification is decided per SSL (smtp_tls_client_new), from relay_tls. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

/* smtp_tls_load - (re)build both contexts; keep the old ones on error */
int smtp_tls_load(char *err, size_t errlen)
{
    SSL_CTX *server = NULL;
    SSL_CTX *client;
    int want_server = var_smtpd_tls_cert && *var_smtpd_tls_cert;

    if (want_server != (var_smtpd_tls_key && *var_smtpd_tls_key)) {
        snprintf(err, errlen, "tls_cert_file and tls_key_file must be set together");
        return -1;
    }
    if (want_server && (server = smtp_tls_server_build(err, errlen)) == NULL)
        return -1;
    if ((client = smtp_tls_client_build(err, errlen)) == NULL) {
        SSL_CTX_free(server);
        return -1;
    }
    /* Sessions in progress hold their own references (SSL_new took one). */
    SSL_CTX_free(smtp_tls_server_ctx);
    SSL_CTX_free(smtp_tls_client_ctx);
    smtp_tls_server_ctx = server;
    smtp_tls_client_ctx = client;
    return 0;
}

/* smtp_tls_server_ok - is STARTTLS offered to clients? */
int smtp_tls_server_ok(void)
{
    return smtp_tls_server_ctx != NULL && var_smtpd_tls && strcmp(var_smtpd_tls, "may") == 0;
}

/* smtp_tls_server_new - a server-side SSL for one client, NULL if none configured */
SSL *smtp_tls_server_new(void)
{
    return smtp_tls_server_ctx ? SSL_new(smtp_tls_server_ctx) : NULL;
}

/* smtp_tls_client_new - a client-side SSL for the next hop "host" */
SSL *smtp_tls_client_new(const char *host, int verify)
{
    unsigned char ip[sizeof(struct in6_addr)];
    int is_ip;
    SSL *ssl;

    if (smtp_tls_client_ctx == NULL || (ssl = SSL_new(smtp_tls_client_ctx)) == NULL)
        return NULL;
    is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    /* SNI carries names only (RFC 6066: no address literals). */
    if (!is_ip && *host)
        SSL_set_tlsext_host_name(ssl, host);
    if (verify) {
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        if (is_ip) {
            if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1) {
                SSL_free(ssl);
                return NULL;
            }
        } else if (SSL_set1_host(ssl, host) != 1) {
            SSL_free(ssl);
            return NULL;
        }
    }
    return ssl;
}

/* smtp_tls_describe - protocol and cipher, as in Postfix's TLS log lines */
const char *smtp_tls_describe(SSL *ssl, char *buf, size_t size)
{
    const SSL_CIPHER *c;
    int alg = 0, bits;

    if (ssl == NULL || (c = SSL_get_current_cipher(ssl)) == NULL) {
        snprintf(buf, size, "none");
        return buf;
    }
    bits = SSL_CIPHER_get_bits(c, &alg);
    snprintf(buf, size, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
             SSL_CIPHER_get_name(c), bits, alg);
    return buf;
}

/* smtp_tls_free - drop both contexts (at exit) */
void smtp_tls_free(void)
{
    SSL_CTX_free(smtp_tls_server_ctx);
    SSL_CTX_free(smtp_tls_client_ctx);
    smtp_tls_server_ctx = NULL;
    smtp_tls_client_ctx = NULL;
}
