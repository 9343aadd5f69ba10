/*
 * mapfile.c - Postfix-style map files ("key value" per line)
 *
 * The format postmap(1) reads, read strictly: what Postfix would only warn
 * about is an error here, because a map file we load becomes the list of
 * valid recipients, and a line we silently skip is mail we bounce.
 *
 *   - a line whose first non-blank character is "#" is a comment; blank
 *     lines are skipped; neither ends an entry;
 *   - a line starting with white space continues the entry above it (the
 *     pieces are joined with one space); one before any entry is an error;
 *   - an entry is a key, white space, and a value; a key without a value
 *     is an error, reported at the entry's first line;
 *   - a line longer than MAPFILE_LINE_MAX bytes, an entry longer than
 *     MAPFILE_ENTRY_MAX, or a NUL byte anywhere is an error.
 *
 * Trailing white space (a CR of a DOS file too) is not part of a value.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "mapfile.h"
#include "xalloc.h"

#define MAPFILE_LINE_MAX    4096        /* bytes per physical line, without the newline */
#define MAPFILE_ENTRY_MAX   65536       /* bytes per entry, continuations joined */

#define MAPFILE_BLANKS      " \t"
#define MAPFILE_SPACE       " \t\r\n\v\f"

/* The entry being collected. */
typedef struct mapfile_entry {
    char *text;
    size_t len;
    int line;                   /* where it starts; 0: none */
} MAPFILE_ENTRY;

/* mapfile_flush - split the collected entry and hand it to fn; 0 or -1 */
static int mapfile_flush(const char *path, MAPFILE_ENTRY *e,
                         int (*fn)(const char *, const char *, int, void *, char *, size_t),
                         void *ctx, char *err, size_t errlen)
{
    char why[512];
    char *key;
    char *value;
    size_t klen;

    if (e->line == 0)
        return 0;
    e->text[e->len] = 0;
    key = e->text;
    klen = strcspn(key, MAPFILE_BLANKS);
    value = key + klen;
    if (*value != 0) {
        *value++ = 0;
        value += strspn(value, MAPFILE_BLANKS);
    }
    if (*value == 0) {
        snprintf(err, errlen, "%s:%d: \"%.200s\" has no value (expected \"key value\")",
                 path, e->line, key);
        return -1;
    }
    why[0] = 0;
    if (fn(key, value, e->line, ctx, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s:%d: %s", path, e->line, why[0] ? why : "rejected");
        return -1;
    }
    e->line = 0;
    e->len = 0;
    return 0;
}

/* mapfile_append - add one piece to the entry; 0 or -1 if it grows too long */
static int mapfile_append(MAPFILE_ENTRY *e, const char *piece, size_t len)
{
    size_t need = e->len + (e->len ? 1 : 0) + len;

    if (need > MAPFILE_ENTRY_MAX)
        return -1;
    if (e->len)
        e->text[e->len++] = ' ';
    memcpy(e->text + e->len, piece, len);
    e->len += len;
    return 0;
}

/* mapfile_read - call fn(key, value, line, ctx) for each entry of path */
int mapfile_read(const char *path,
                 int (*fn)(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen),
                 void *ctx, char *err, size_t errlen)
{
    FILE *fp;
    int ret;

    if ((fp = fopen(path, "r")) == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    ret = mapfile_read_fp(fp, path, fn, ctx, err, errlen);
    fclose(fp);
    return ret;
}

/* mapfile_read_fp - mapfile_read() of an open file, which stays open */
int mapfile_read_fp(FILE *fp, const char *path,
                    int (*fn)(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen),
                    void *ctx, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    int ret = -1;
    MAPFILE_ENTRY e = {NULL, 0, 0};

    e.text = xmalloc(MAPFILE_ENTRY_MAX + 1);
    while ((n = getline(&buf, &cap, fp)) >= 0) {
        size_t len = (size_t) n;
        char *p;

        lineno++;
        if (memchr(buf, 0, len) != NULL) {
            snprintf(err, errlen, "%s:%d: NUL byte in line", path, lineno);
            goto out;
        }
        while (len > 0 && strchr(MAPFILE_SPACE, buf[len - 1]) != NULL)
            len--;
        buf[len] = 0;
        if (len > MAPFILE_LINE_MAX) {
            snprintf(err, errlen, "%s:%d: line longer than %d bytes", path, lineno, MAPFILE_LINE_MAX);
            goto out;
        }
        p = buf + strspn(buf, MAPFILE_SPACE);
        if (*p == 0 || *p == '#')
            continue;
        if (p != buf) {
            if (e.line == 0) {
                snprintf(err, errlen, "%s:%d: continuation line (starts with white space) "
                         "without an entry above it", path, lineno);
                goto out;
            }
        } else if (mapfile_flush(path, &e, fn, ctx, err, errlen) < 0) {
            goto out;
        } else {
            e.line = lineno;
        }
        if (mapfile_append(&e, p, len - (size_t) (p - buf)) < 0) {
            snprintf(err, errlen, "%s:%d: entry longer than %d bytes", path, e.line, MAPFILE_ENTRY_MAX);
            goto out;
        }
    }
    if (ferror(fp)) {
        snprintf(err, errlen, "%s:%d: read error: %s", path, lineno + 1, strerror(errno));
        goto out;
    }
    if (mapfile_flush(path, &e, fn, ctx, err, errlen) < 0)
        goto out;
    ret = 0;

out:
    free(e.text);
    free(buf);
    return ret;
}
