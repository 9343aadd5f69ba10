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
 *
 * Memory is bounded whatever the file holds: a line is read into a buffer
 * of MAPFILE_LINE_MAX bytes and no more; the first byte past it that is
 * not trailing white space ends the read with "file:line: line longer
 * than ..." (a 200 MB line costs 4 KB, not 200 MB as getline() did).
 *
 * mapfile_keys() is the reader of recipient lists, shared by `rcptgate
 * import` and syncd's type = file source so that both take the same file
 * the same way: every key goes through addr_key() (white space, case,
 * "@domain" catch-alls, the null sender refused) and a bad key stops the
 * read with "file:line: \"key\": reason". Values are not looked at.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "addr.h"
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

/* Results of mapfile_getline. */
#define MAPFILE_LINE_OK     1
#define MAPFILE_LINE_EOF    0
#define MAPFILE_LINE_LONG  -1
#define MAPFILE_LINE_NUL   -2
#define MAPFILE_LINE_ERROR -3

/*
 * mapfile_getline - one line into buf (MAPFILE_LINE_MAX + 1 bytes), without
 * the newline and trailing white space, NUL-terminated, its length in *len.
 * Reads no further than the line's first byte beyond the limit that is
 * not white space: an overlong line is never held in memory.
 */
static int mapfile_getline(FILE *fp, char *buf, size_t *len)
{
    size_t n = 0;
    size_t keep = 0;            /* n without trailing white space */
    int c;
    int any = 0;

    while ((c = getc_unlocked(fp)) != EOF) {
        any = 1;
        if (c == '\n')
            break;
        if (c == 0)
            return MAPFILE_LINE_NUL;
        if (n < MAPFILE_LINE_MAX) {
            buf[n++] = (char) c;
            if (strchr(MAPFILE_SPACE, c) == NULL)
                keep = n;
        } else if (strchr(MAPFILE_SPACE, c) == NULL) {
            return MAPFILE_LINE_LONG;
        }
    }
    if (c == EOF && ferror(fp))
        return MAPFILE_LINE_ERROR;
    if (!any)
        return MAPFILE_LINE_EOF;
    buf[keep] = 0;
    *len = keep;
    return MAPFILE_LINE_OK;
}

/* mapfile_read_fp - mapfile_read() of an open file, which stays open */
int mapfile_read_fp(FILE *fp, const char *path,
                    int (*fn)(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen),
                    void *ctx, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    int lineno = 0;
    int ret = -1;
    int rc;
    MAPFILE_ENTRY e = {NULL, 0, 0};

    buf = xmalloc(MAPFILE_LINE_MAX + 1);
    e.text = xmalloc(MAPFILE_ENTRY_MAX + 1);
    flockfile(fp);
    while ((rc = mapfile_getline(fp, buf, &len)) == MAPFILE_LINE_OK) {
        char *p;

        lineno++;
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
    switch (rc) {
    case MAPFILE_LINE_LONG:
        snprintf(err, errlen, "%s:%d: line longer than %d bytes", path, lineno + 1, MAPFILE_LINE_MAX);
        goto out;
    case MAPFILE_LINE_NUL:
        snprintf(err, errlen, "%s:%d: NUL byte in line", path, lineno + 1);
        goto out;
    case MAPFILE_LINE_ERROR:
        snprintf(err, errlen, "%s:%d: read error: %s", path, lineno + 1, strerror(errno));
        goto out;
    }
    if (mapfile_flush(path, &e, fn, ctx, err, errlen) < 0)
        goto out;
    ret = 0;

out:
    funlockfile(fp);
    free(e.text);
    free(buf);
    return ret;
}

/* What mapfile_keys hands on. */
typedef struct mapfile_keys_ctx {
    int flags;
    int (*fn)(const char *, const char *, int, void *, char *, size_t);
    void *ctx;
} MAPFILE_KEYS_CTX;

/* mapfile_keys_entry - normalise one entry's key, then the caller's fn */
static int mapfile_keys_entry(const char *key, const char *value, int line, void *ctx,
                              char *err, size_t errlen)
{
    MAPFILE_KEYS_CTX *kc = ctx;
    char norm[ADDR_KEY_SIZE];
    char why[256];

    if (addr_key(key, strlen(key), kc->flags, norm, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "\"%.300s\": %s", key, why);
        return -1;
    }
    return kc->fn(norm, value, line, kc->ctx, err, errlen);
}

/* mapfile_keys_fp - mapfile_read_fp() with each key in addr_key()'s normal form */
int mapfile_keys_fp(FILE *fp, const char *path, int flags,
                    int (*fn)(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen),
                    void *ctx, char *err, size_t errlen)
{
    MAPFILE_KEYS_CTX kc = {flags, fn, ctx};

    return mapfile_read_fp(fp, path, mapfile_keys_entry, &kc, err, errlen);
}

/* mapfile_keys - mapfile_keys_fp() of a file it opens */
int mapfile_keys(const char *path, int flags,
                 int (*fn)(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen),
                 void *ctx, char *err, size_t errlen)
{
    MAPFILE_KEYS_CTX kc = {flags, fn, ctx};

    return mapfile_read(path, mapfile_keys_entry, &kc, err, errlen);
}
