/*
 * smtpd_state.c - the process-wide state of rcptgate-smtpd, and replies
 *
 * The event base, the store and our host name are shared by every
 * session; they live here, in the library, so that the unit tests of the
 * parts link without smtpd.c's main.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "keeper.h"
#include "smtpd.h"

struct event_base *smtpd_base;
STORE *smtpd_store;
KEEPER *smtpd_keeper;
char smtpd_hostname[SMTPD_NAME_LEN] = "localhost";

/* smtpd_reply_set - fill a reply: its code and its whole text */
int smtpd_reply_set(SMTPD_REPLY *r, int code, const char *fmt, ...)
{
    va_list ap;

    r->code = code;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
    va_end(ap);
    return code;
}

/* smtpd_store_use - the handle a check may use now, or NULL and why */
STORE *smtpd_store_use(const char **reason)
{
    if (smtpd_keeper != NULL)
        return keeper_store(smtpd_keeper, reason);      /* also sets smtpd_store */
    if (smtpd_store == NULL)
        *reason = "the store is not open";
    return smtpd_store;
}
