/*
 * xalloc.h - allocation that cannot fail
 *
 * The x-prefixed functions call log_fatal() when memory runs out, so call
 * sites stay free of checks that could only ever lead to the same exit.
 */
#ifndef RG_XALLOC_H
#define RG_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* xasprintf - sprintf into a new buffer the caller frees */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* xfree_secret - zero a NUL-terminated secret, then free it; NULL is fine */
void xfree_secret(char *s);

#endif
