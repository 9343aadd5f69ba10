/*
 * fuzz_netstring.c - libFuzzer target for lib/netstring.c
 *
 * Walks the input as a stream of netstrings, the way lookupd does, and
 * aborts when an invariant breaks: a decoded payload lies inside the
 * input and within the limit, "used" is the canonical encoding's length
 * (so re-encoding the payload gives back exactly the bytes consumed),
 * every shorter prefix of an accepted netstring asks for more rather than
 * being refused, and a verdict never depends on bytes past the input.
 * The first byte picks the payload limit so that small limits get tried.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netstring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* fuzz_check - abort unless cond holds (kept in release builds too) */
#define fuzz_check(cond)    do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[] = {10000, 0, 1, 9, 10, 99, 100000};
    static char enc[100016];
    const char *buf;
    size_t maxp;
    size_t pos = 0;

    if (size < 1)
        return 0;
    maxp = limits[data[0] % (sizeof(limits) / sizeof(limits[0]))];
    buf = (const char *) data + 1;
    size--;

    while (pos < size) {
        const char *payload = NULL;
        const char *why = NULL;
        size_t len = 0;
        size_t used = 0;
        int rc = netstring_decode(buf + pos, size - pos, maxp, &payload, &len, &used, &why);

        if (rc == NETSTRING_MORE)
            break;
        if (rc == NETSTRING_BAD) {
            fuzz_check(why != NULL && *why != 0);
            break;
        }
        fuzz_check(rc == NETSTRING_OK);
        fuzz_check(len <= maxp);
        fuzz_check(used >= len + 3 && used <= size - pos);
        fuzz_check(payload > buf + pos && payload + len < buf + pos + used);

        /* Canonical: encoding the payload gives back the bytes consumed. */
        fuzz_check(netstring_encode(enc, sizeof(enc), payload, len) == used);
        fuzz_check(memcmp(enc, buf + pos, used) == 0);

        /* Streaming: any shorter prefix is "more", never "bad". */
        for (size_t n = 0; n < used; n += 1 + n / 8) {
            const char *p2;
            const char *w2;
            size_t l2;
            size_t u2;

            fuzz_check(netstring_decode(buf + pos, n, maxp, &p2, &l2, &u2, &w2) == NETSTRING_MORE);
        }
        pos += used;
    }
    return 0;
}
