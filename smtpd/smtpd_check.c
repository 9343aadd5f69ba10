/* smtpd_check.c - stub until written */
#include "config.h"
extern int smtpd_check_stub;
int smtpd_check_stub;
