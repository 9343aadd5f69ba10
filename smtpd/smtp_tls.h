/*
 * smtp_tls.h - OpenSSL for both sides of rcptgate-smtpd
 *
 * The server context (STARTTLS for clients) from [smtpd] tls_cert_file and
 * tls_key_file, reloaded on SIGHUP without dropping sessions (a session
 * keeps the context it started with; OpenSSL counts the references). The
 * key file must not be readable by group or others. The client context
 * (STARTTLS to the next hop) verifies the peer against relay_ca_file (or
 * the system store) when relay_tls = verify.
 */
#ifndef RG_SMTP_TLS_H
#define RG_SMTP_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/*
 * smtp_tls_load - (re)build both contexts from the [smtpd] variables.
 * On error (-1, err set: "tls_key_file /x: mode 0644, must not be
 * readable by others") the previous contexts stay in use.
 */
int smtp_tls_load(char *err, size_t errlen);

/* smtp_tls_server_ok - is STARTTLS offered (tls = may and a certificate loaded)? */
int smtp_tls_server_ok(void);

/* smtp_tls_server_new - a new server-side SSL, NULL if none configured */
SSL *smtp_tls_server_new(void);

/*
 * smtp_tls_client_new - a new client-side SSL for the next hop named
 * host (SNI when a name, and the name or address checked with verify).
 */
SSL *smtp_tls_client_new(const char *host, int verify);

/*
 * smtp_tls_describe - "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384
 * (256/256 bits)" for logs and the Received: header.
 */
const char *smtp_tls_describe(SSL *ssl, char *buf, size_t size);

/* smtp_tls_free - drop the contexts (at exit) */
void smtp_tls_free(void);

#endif
