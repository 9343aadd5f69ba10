/* smtp_auth.c - stub until written (no mechanisms) */
#include "config.h"

#include <stdio.h>

#include "smtp_auth.h"

int smtp_auth_init(char *err, size_t errlen) { (void) err; (void) errlen; return 0; }
const char *smtp_auth_mechs(void) { return ""; }
enum smtp_auth_status smtp_auth_start(SMTPD_CLIENT *c, const char *mech, const char *initial,
                                      SMTP_AUTH **ap, char *reply, size_t replylen)
{
    (void) c; (void) mech; (void) initial;
    *ap = NULL;
    snprintf(reply, replylen, "504 5.5.4 Unsupported authentication mechanism");
    return SMTP_AUTH_ERROR;
}
enum smtp_auth_status smtp_auth_step(SMTP_AUTH *a, const char *line, char *reply, size_t replylen)
{
    (void) a; (void) line;
    snprintf(reply, replylen, "501 5.7.0 Authentication aborted");
    return SMTP_AUTH_ERROR;
}
void smtp_auth_free(SMTP_AUTH *a) { (void) a; }
void smtp_auth_done(void) {}
