/* smtpd_check.c - stub until written (accepts everything; the real one is being written) */
#include "config.h"

#include <stdio.h>
#include "smtpd_check.h"

int smtpd_check_init(char *err, size_t errlen) { (void) err; (void) errlen; return 0; }
int smtpd_check_trusted(const struct sockaddr *sa) { (void) sa; return 0; }
int smtpd_check_connect(SMTPD_CLIENT *c, SMTPD_REPLY *r) { (void) c; r->code = 0; return 0; }
int smtpd_check_helo(SMTPD_CLIENT *c, const char *helo, SMTPD_REPLY *r) { (void) c; (void) helo; r->code = 0; return 0; }
int smtpd_check_mail(SMTPD_CLIENT *c, const char *sender, SMTPD_REPLY *r) { (void) c; (void) sender; r->code = 0; return 0; }
int smtpd_check_rcpt(SMTPD_CLIENT *c, const char *rcpt, SMTPD_RCPT_INFO *info, SMTPD_REPLY *r)
{
    (void) c;
    snprintf(info->address, sizeof(info->address), "%s", rcpt);
    snprintf(info->nexthop, sizeof(info->nexthop), "%s", "");
    r->code = 0;
    return 0;
}
int smtpd_check_data(SMTPD_CLIENT *c, SMTPD_REPLY *r) { (void) c; r->code = 0; return 0; }
