/* smtpd_log.c - stub until written */
#include "config.h"
extern int smtpd_log_stub;
int smtpd_log_stub;
