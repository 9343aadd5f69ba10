/* store_login.c - stub until written */
#include "config.h"
extern int store_login_stub;
int store_login_stub;
