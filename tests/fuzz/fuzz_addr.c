/*
 * fuzz_addr.c - libFuzzer target for lib/addr.c
 *
 * Feeds the input to addr_parse() under several flag sets and to
 * addr_domain(), and aborts when an invariant breaks: outputs always
 * NUL-terminated and within their sizes, empty on error; an ADDR_OK key is
 * local@domain, fits in a path, and parses back to itself (the normal form
 * is a fixed point); an unquoted local part never hides "@", nor "%" or
 * "!" that the flags refuse; addr_strip_extension() only ever shortens.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int fuzz_flags[] = {
    0,
    ADDR_ALLOW_NULL | ADDR_ALLOW_BARE,
    ADDR_ALLOW_ROUTE | ADDR_ALLOW_PERCENT | ADDR_ALLOW_BANG | ADDR_ALLOW_NULL | ADDR_ALLOW_BARE,
    /* a sender, as the rules parse it */
    ADDR_ALLOW_ROUTE | ADDR_ALLOW_PERCENT | ADDR_ALLOW_BANG | ADDR_ALLOW_NULL | ADDR_ALLOW_BARE
        | ADDR_ALLOW_LONG_LOCAL,
};

/* fuzz_check - abort unless cond holds (kept in release builds too) */
#define fuzz_check(cond)    do { if (!(cond)) abort(); } while (0)

/* fuzz_terminated - is there a NUL within the buffer? */
static int fuzz_terminated(const char *buf, size_t size)
{
    return memchr(buf, 0, size) != NULL;
}

/* fuzz_printable_key - no control characters survive into a key */
static void fuzz_printable_key(const char *key)
{
    for (; *key; key++)
        fuzz_check((unsigned char) *key > 0x1f && (unsigned char) *key != 0x7f);
}

/* fuzz_ok - invariants of one ADDR_OK result */
static void fuzz_ok(const ADDR *a, int flags)
{
    char buf[ADDR_KEY_SIZE], dom[ADDR_DOMAIN_MAX + 1];
    size_t llen = strlen(a->local), dlen = strlen(a->domain), klen = strlen(a->key);
    ADDR b;
    int ret;

    fuzz_check(klen + 2 <= ADDR_PATH_MAX);
    fuzz_printable_key(a->key);
    if (a->is_null) {
        fuzz_check(klen == 0 && llen == 0 && dlen == 0 && (flags & ADDR_ALLOW_NULL));
        fuzz_check(addr_parse("<>", 2, flags, &b) == ADDR_OK && b.is_null);
        return;
    }
    fuzz_check(llen > 0 && (llen <= ADDR_LOCAL_MAX || (flags & ADDR_ALLOW_LONG_LOCAL))
               && dlen <= ADDR_DOMAIN_MAX);
    fuzz_check(memcmp(a->key, a->local, llen) == 0);
    if (dlen == 0) {
        fuzz_check((flags & ADDR_ALLOW_BARE) && klen == llen && !a->is_literal);
    } else {
        fuzz_check(a->key[llen] == '@' && strcmp(a->key + llen + 1, a->domain) == 0);
        fuzz_check(a->is_literal == (a->domain[0] == '['));
        /* the domain alone normalises to itself */
        fuzz_check(addr_domain(a->domain, dlen, dom) == ADDR_OK && strcmp(dom, a->domain) == 0);
        for (const char *p = a->domain; *p; p++)
            fuzz_check(!(*p >= 'A' && *p <= 'Z') && (unsigned char) *p < 0x80);
    }
    if (a->local[0] != '"') {
        /* the open-relay tricks can only survive inside quotes */
        fuzz_check(strchr(a->local, '@') == NULL);
        fuzz_check((flags & ADDR_ALLOW_PERCENT) || strchr(a->local, '%') == NULL);
        fuzz_check((flags & ADDR_ALLOW_BANG) || strchr(a->local, '!') == NULL);
    }
    for (const char *p = a->local; *p; p++)
        fuzz_check(!(*p >= 'A' && *p <= 'Z'));

    /* fixed point */
    fuzz_check(addr_parse(a->key, klen, flags, &b) == ADDR_OK);
    fuzz_check(strcmp(a->key, b.key) == 0);
    fuzz_check(strcmp(a->local, b.local) == 0);
    fuzz_check(strcmp(a->domain, b.domain) == 0);
    fuzz_check(a->is_literal == b.is_literal && !b.is_null);

    ret = addr_strip_extension(a->local, "+-", buf);
    fuzz_check(fuzz_terminated(buf, sizeof(buf)));
    fuzz_check(strncmp(buf, a->local, strlen(buf)) == 0);
    fuzz_check(ret ? strlen(buf) > 0 && strlen(buf) < llen : strcmp(buf, a->local) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dom[ADDR_DOMAIN_MAX + 1];
    ADDR a;
    size_t i;
    int err;

    for (i = 0; i < sizeof(fuzz_flags) / sizeof(fuzz_flags[0]); i++) {
        memset(&a, 0x5a, sizeof(a));
        err = addr_parse((const char *) data, size, fuzz_flags[i], &a);
        fuzz_check(err >= ADDR_OK && err <= ADDR_ERR_UTF8);
        fuzz_check(addr_strerror(err) != NULL);
        fuzz_check(fuzz_terminated(a.key, sizeof(a.key)));
        fuzz_check(fuzz_terminated(a.local, sizeof(a.local)));
        fuzz_check(fuzz_terminated(a.domain, sizeof(a.domain)));
        fuzz_check(strlen(a.key) < ADDR_KEY_SIZE);
        if (err == ADDR_OK)
            fuzz_ok(&a, fuzz_flags[i]);
        else
            fuzz_check(a.key[0] == 0 && a.local[0] == 0 && a.domain[0] == 0);
    }

    memset(dom, 0x5a, sizeof(dom));
    err = addr_domain((const char *) data, size, dom);
    fuzz_check(fuzz_terminated(dom, sizeof(dom)));
    if (err == ADDR_OK) {
        char again[ADDR_DOMAIN_MAX + 1];

        fuzz_check(dom[0] != 0);
        fuzz_check(addr_domain(dom, strlen(dom), again) == ADDR_OK && strcmp(dom, again) == 0);
    } else {
        fuzz_check(dom[0] == 0);
    }
    return 0;
}
