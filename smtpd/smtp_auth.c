/* smtp_auth.c - stub until written */
#include "config.h"
extern int smtp_auth_stub;
int smtp_auth_stub;
