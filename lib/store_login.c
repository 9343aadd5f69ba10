/* store_login.c - stub until written */
#include "config.h"

#include "store.h"

int store_login_owns(STORE *st, const char *login, const char *address) { (void) st; (void) login; (void) address; return 0; }
