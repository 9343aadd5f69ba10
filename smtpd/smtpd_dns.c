/* smtpd_dns.c - stub until written */
#include "config.h"
extern int smtpd_dns_stub;
int smtpd_dns_stub;
