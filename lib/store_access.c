/* store_access.c - stub until written */
#include "config.h"
extern int store_access_stub;
int store_access_stub;
