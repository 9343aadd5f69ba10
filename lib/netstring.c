/*
 * netstring.c - strict netstrings for the Postfix socketmap protocol
 *
 * netstring_decode() looks at the bytes a connection has buffered and says
 * whether they start with a whole netstring, could still become one, or
 * can never be one. It is strict on purpose: the only client that matters
 * (Postfix) always writes canonical netstrings, so anything else is a
 * confused or hostile peer and the caller closes the connection. Nothing
 * is copied: the payload is returned as a pointer into the caller's buffer.
 */
#include "config.h"

#include <string.h>

#include "netstring.h"

/* netstring_decode - look for one netstring at the start of buf */
int netstring_decode(const char *buf, size_t avail, size_t max_payload,
                     const char **data, size_t *len, size_t *used, const char **why)
{
    size_t n = 0;
    size_t i;

    /*
     * The length: 1 to NETSTRING_MAX_DIGITS digits, no leading zero. Each
     * byte is judged as soon as it arrives, so that garbage is refused at
     * once instead of after a request timeout.
     */
    for (i = 0; i < avail; i++) {
        unsigned char c = (unsigned char) buf[i];

        if (c == ':')
            break;
        if (c < '0' || c > '9') {
            *why = (i == 0 && (c == '+' || c == '-')) ? "sign before the length"
                : (c == ' ' || c == '\t' || c == '\r' || c == '\n') ? "blank in the length"
                : i == 0 ? "length does not start with a digit"
                : "non-digit in the length";
            return NETSTRING_BAD;
        }
        if (i == 1 && buf[0] == '0') {
            *why = "leading zero in the length";
            return NETSTRING_BAD;
        }
        if (i >= NETSTRING_MAX_DIGITS) {
            *why = "length has more than 5 digits";
            return NETSTRING_BAD;
        }
        n = n * 10 + (size_t) (c - '0');
        if (n > max_payload) {
            *why = "payload too long";
            return NETSTRING_BAD;
        }
    }
    if (i == avail)
        return NETSTRING_MORE;
    if (i == 0) {
        *why = "no length before the colon";
        return NETSTRING_BAD;
    }

    /* i is the colon; payload follows, then the comma. */
    if (avail - i - 1 < n + 1)
        return NETSTRING_MORE;
    if (buf[i + 1 + n] != ',') {
        *why = "no comma after the payload";
        return NETSTRING_BAD;
    }
    *data = buf + i + 1;
    *len = n;
    *used = i + 1 + n + 1;
    return NETSTRING_OK;
}

/* netstring_encode - write data as a netstring into out */
size_t netstring_encode(char *out, size_t size, const char *data, size_t len)
{
    char digits[24];
    size_t nd = 0;
    size_t need;
    size_t v = len;

    /* Digits in reverse, then copied the right way round. */
    do {
        digits[nd++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);
    need = nd + 1 + len + 1;
    if (need > size)
        return need;
    for (size_t k = 0; k < nd; k++)
        out[k] = digits[nd - 1 - k];
    out[nd] = ':';
    if (len > 0)
        memcpy(out + nd + 1, data, len);
    out[nd + 1 + len] = ',';
    return need;
}
