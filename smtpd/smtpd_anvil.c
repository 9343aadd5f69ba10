/* smtpd_anvil.c - stub until written */
#include "config.h"
extern int smtpd_anvil_stub;
int smtpd_anvil_stub;
