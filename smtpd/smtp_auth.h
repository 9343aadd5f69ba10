/*
 * smtp_auth.h - SASL AUTH (RFC 4954) through Cyrus SASL
 *
 * Offered only on submission listeners and only after STARTTLS. The SASL
 * configuration (<sasl_app_name>.conf in sasl_config_dir, or Cyrus's
 * default path) decides the backend: sasldb, saslauthd, LDAP. PLAIN and
 * LOGIN are offered (the only ones that make sense over TLS to an AD
 * backend); the session feeds the client's lines and sends our replies.
 * Passwords never reach a log.
 */
#ifndef RG_SMTP_AUTH_H
#define RG_SMTP_AUTH_H

#include <stddef.h>

#include "smtpd.h"

/* smtp_auth_init - sasl_server_init() with our config path; -1 with err set */
int smtp_auth_init(char *err, size_t errlen);

/* smtp_auth_mechs - "PLAIN LOGIN" for the EHLO line ("" if SASL is unusable) */
const char *smtp_auth_mechs(void);

typedef struct smtp_auth SMTP_AUTH;

enum smtp_auth_status {
    SMTP_AUTH_CONTINUE,         /* reply is "334 <base64 challenge>"; feed the next line */
    SMTP_AUTH_OK,               /* reply is "235 2.7.0 Authentication successful"; c->sasl_user set */
    SMTP_AUTH_FAIL,             /* reply is "535 5.7.8 Error: authentication failed: ..."; count it */
    SMTP_AUTH_ERROR,            /* reply is 501/504/454 (syntax, unknown mechanism, SASL down); not a failure of the password */
};

/*
 * smtp_auth_start - "AUTH mech [initial-response]": initial may be NULL,
 * or "=" for an empty one. *ap is set while the exchange continues.
 */
enum smtp_auth_status smtp_auth_start(SMTPD_CLIENT *c, const char *mech, const char *initial,
                                      SMTP_AUTH **ap, char *reply, size_t replylen);

/*
 * smtp_auth_step - the client's next line (without CRLF); "*" cancels
 * (501 5.7.0). On any status but CONTINUE the exchange is over and a is
 * freed.
 */
enum smtp_auth_status smtp_auth_step(SMTP_AUTH *a, const char *line, char *reply, size_t replylen);

/* smtp_auth_free - abandon an exchange (session ends); NULL is fine */
void smtp_auth_free(SMTP_AUTH *a);

/* smtp_auth_done - sasl_done() at exit */
void smtp_auth_done(void);

#endif
