/*
 * mapfile.h - Postfix-style map files ("key value" per line)
 *
 * The format postmap reads: a key, white space, a value; "#" at the start
 * of a line (after optional blanks) begins a comment; a line starting with
 * white space continues the previous one. Used by `rcptgate import` and
 * by syncd's file source, so both read a file the same way. Memory is
 * bounded: a line is never held beyond MAPFILE_LINE_MAX bytes.
 */
#ifndef RG_MAPFILE_H
#define RG_MAPFILE_H

#include <stddef.h>
#include <stdio.h>

/*
 * mapfile_read - call fn(key, value, line, ctx) for each entry of path.
 * fn returns 0 to go on, or -1 after writing its reason into err (the
 * line number is added). Returns 0, or -1 with "file:line: reason" in err.
 */
int mapfile_read(const char *path,
                 int (*fn)(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen),
                 void *ctx, char *err, size_t errlen);

/*
 * mapfile_read_fp - mapfile_read() of a file the caller opened (and
 * closes); path names it in messages. For a caller that opens the file
 * before it changes identity.
 */
int mapfile_read_fp(FILE *fp, const char *path,
                    int (*fn)(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen),
                    void *ctx, char *err, size_t errlen);

/*
 * mapfile_keys_fp - a list of recipients: mapfile_read_fp() with each key
 * passed through addr_key(key, flags) first (flags: the [address] bits,
 * and ADDR_KEY_CATCHALL for "@domain"), so fn sees the store's key. A key
 * addr_key() refuses stops the read: "file:line: \"key\": reason". The
 * one reader of `rcptgate import` and syncd's type = file source.
 */
int mapfile_keys_fp(FILE *fp, const char *path, int flags,
                    int (*fn)(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen),
                    void *ctx, char *err, size_t errlen);

/* mapfile_keys - mapfile_keys_fp() of path, which it opens and closes */
int mapfile_keys(const char *path, int flags,
                 int (*fn)(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen),
                 void *ctx, char *err, size_t errlen);

#endif
