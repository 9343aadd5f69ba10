/* smtpd_anvil.c - stub until written (counts nothing) */
#include "config.h"

#include <stddef.h>

#include "smtpd_anvil.h"

void smtpd_anvil_init(int max_entries) { (void) max_entries; }
const char *smtpd_anvil_connect(const char *addr) { (void) addr; return NULL; }
void smtpd_anvil_disconnect(const char *addr) { (void) addr; }
int smtpd_anvil_unknown(const char *addr) { (void) addr; return 0; }
int smtpd_anvil_auth_fail(const char *addr) { (void) addr; return 0; }
int smtpd_anvil_count(void) { return 0; }
