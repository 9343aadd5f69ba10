/*
 * netstring.h - strict netstrings for the Postfix socketmap protocol
 *
 * "<length>:<data>," with length in decimal. Strict: 1 to 5 digits, no
 * leading zero (except "0" itself), no sign or blank, a payload no longer
 * than the caller's limit, and the comma right after the payload.
 */
#ifndef RG_NETSTRING_H
#define RG_NETSTRING_H

#include <stddef.h>

#define NETSTRING_MAX_DIGITS 5

enum netstring_status {
    NETSTRING_OK = 1,           /* one netstring decoded */
    NETSTRING_MORE = 0,         /* valid so far; need more bytes */
    NETSTRING_BAD = -1,         /* malformed: close the connection */
};

/*
 * netstring_decode - look for one netstring at the start of buf.
 * NETSTRING_OK: *data and *len give the payload (inside buf) and *used the
 * bytes it took. NETSTRING_BAD: *why says what was wrong.
 */
int netstring_decode(const char *buf, size_t avail, size_t max_payload,
                     const char **data, size_t *len, size_t *used, const char **why);

/*
 * netstring_encode - write data as a netstring into out (size bytes).
 * Returns the length written, or the length needed if it does not fit
 * (nothing written then).
 */
size_t netstring_encode(char *out, size_t size, const char *data, size_t len);

#endif
