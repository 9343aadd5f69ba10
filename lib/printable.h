/*
 * printable.h - make text from the network safe to write to a log or terminal
 *
 * printable() replaces, in place, every byte that could change what a log
 * reader sees: ASCII controls (a forged line end, an escape sequence that
 * clears a terminal, a bell), DEL, C1 controls and bytes that are not
 * well-formed UTF-8. Well-formed UTF-8 stays (SMTPUTF8 addresses are
 * legitimate). printable_utf8_len() is the UTF-8 test it uses.
 */
#ifndef RG_PRINTABLE_H
#define RG_PRINTABLE_H

#include <stddef.h>

/*
 * printable_utf8_len - length of the well-formed UTF-8 sequence of two to
 * four bytes at p (avail bytes), 0 if there is none: no overlong forms, no
 * surrogates, nothing past U+10FFFF (RFC 3629). ASCII gives 0.
 */
size_t printable_utf8_len(const unsigned char *p, size_t avail);

/* printable_ascii - is s (NULL counts as "") 7-bit ASCII? */
int printable_ascii(const char *s);

/* printable - replace what is not safe to show by repl, in place; returns s */
char *printable(char *s, int repl);

#endif
