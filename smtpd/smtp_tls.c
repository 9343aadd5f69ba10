/* smtp_tls.c - stub until written */
#include "config.h"
extern int smtp_tls_stub;
int smtp_tls_stub;
