/*
 * printable.c - make text from the network safe to write to a log or terminal
 *
 * SYNOPSIS
 *   printable(line, '?');
 *
 * DESCRIPTION
 *   lib/log.c passes every line through printable() before syslog, stderr
 *   or a log file sees it, so a client's bytes ("GET /\e[2J\a\xff") can
 *   neither forge a log line nor drive the terminal of whoever reads it.
 *   See printable.h for what is kept.
 */
#include "config.h"

#include "printable.h"

/* printable_ascii - is s 7-bit? (printable.h) */
int printable_ascii(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char) *s >= 0x80)
            return 0;
    return 1;
}

/* printable_utf8_len - length of the well-formed UTF-8 sequence at p, or 0 */
size_t printable_utf8_len(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xbf;
    size_t n, i;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* printable - replace controls, DEL, C1 controls and broken UTF-8 by repl */
char *printable(char *s, int repl)
{
    unsigned char *p = (unsigned char *) s;
    size_t left = 0, n;

    while (p[left])
        left++;
    while (*p) {
        if (*p < 0x80) {
            if (*p < 0x20 || *p == 0x7f)
                *p = (unsigned char) repl;
            p++;
            left--;
        } else if ((n = printable_utf8_len(p, left)) == 0 || (p[0] == 0xc2 && p[1] <= 0x9f)) {
            *p++ = (unsigned char) repl;        /* one byte at a time: the rest is judged anew */
            left--;
        } else {
            p += n;
            left -= n;
        }
    }
    return s;
}
