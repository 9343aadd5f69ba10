/* smtp_tls.c - stub until written (no TLS) */
#include "config.h"

#include <stdio.h>

#include "smtp_tls.h"

int smtp_tls_load(char *err, size_t errlen) { (void) err; (void) errlen; return 0; }
int smtp_tls_server_ok(void) { return 0; }
SSL *smtp_tls_server_new(void) { return NULL; }
SSL *smtp_tls_client_new(const char *host) { (void) host; return NULL; }
const char *smtp_tls_describe(SSL *ssl, char *buf, size_t size) { (void) ssl; snprintf(buf, size, "none"); return buf; }
void smtp_tls_free(void) {}
