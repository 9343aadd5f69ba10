/* source_ldap_dirsync.c - stub until written */
#include "config.h"
extern int source_ldap_dirsync_stub;
int source_ldap_dirsync_stub;
