/*
 * fuzz_mapfile.c - libFuzzer target: map files as `rcptgate import` and
 * syncd's file source read them
 *
 * Drives lib/mapfile.c's reader through stdio, with the bytes arriving in
 * the pieces the chunk plan cuts (fuzz_common.h): a fopencookie() stream
 * whose read function hands out one piece per call, so the line reader meets
 * every split of a line, a CR LF pair or a continuation. Each entry's key
 * then goes through addr_key() as the file source and import normalise it
 * (catch-all "@domain" allowed).
 *
 * Checked: the pieces make no difference (the same entries, values, line
 * numbers, result and error text as one whole read); a key holds no
 * blank, a value starts with none and ends in no white space; a normalised key is
 * normalised again to itself, and has no white space or control
 * character; log lines are printable.
 */
#include "config.h"

#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "mapfile.h"
#include "xalloc.h"
#include "syncd.h"
#include "fuzz_common.h"

/* syncd.c's globals, which the source code reads. */
volatile sig_atomic_t syncd_stopping;
const char *syncd_conf_path = "fuzz.conf";

/* A stream over the input that returns at most one piece per read. */
typedef struct fuzz_stream {
    FUZZ_CHUNKS ck;
    const uint8_t *piece;
    size_t left;
} FUZZ_STREAM;

/* fuzz_stream_read - the rest of the current piece, or the next one */
static ssize_t fuzz_stream_read(void *cookie, char *buf, size_t size)
{
    FUZZ_STREAM *fs = cookie;
    size_t n;

    if (fs->left == 0 && !fuzz_chunks_next(&fs->ck, &fs->piece, &fs->left))
        return 0;
    n = fs->left < size ? fs->left : size;
    memcpy(buf, fs->piece, n);
    fs->piece += n;
    fs->left -= n;
    return (ssize_t) n;
}

/* What one read produced, entry by entry. */
typedef struct fuzz_seen {
    char *text;
    size_t len, size;
} FUZZ_SEEN;

/* fuzz_seen_add - append a record "a TAB b TAB line" */
static void fuzz_seen_add(FUZZ_SEEN *s, const char *a, const char *b, int line)
{
    int n = snprintf(NULL, 0, "%s\t%s\t%d\n", a, b, line);

    if (s->len + (size_t) n + 1 > s->size) {
        s->size = (s->len + (size_t) n + 1) * 2;
        s->text = xrealloc(s->text, s->size);
    }
    snprintf(s->text + s->len, s->size - s->len, "%s\t%s\t%d\n", a, b, line);
    s->len += (size_t) n;
}

/* fuzz_entry - one entry: its invariants, its normal form, recorded */
static int fuzz_entry(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen)
{
    FUZZ_SEEN *s = ctx;
    char norm[ADDR_KEY_SIZE], again[ADDR_KEY_SIZE], why[256];
    size_t kl = strlen(key), vl = strlen(value);

    fuzz_check(kl > 0 && vl > 0 && line > 0);
    /* Blanks separate; the end of an entry loses all white space. */
    fuzz_check(strpbrk(key, " \t") == NULL);
    fuzz_check(strchr(" \t", value[0]) == NULL && strchr(" \t\r\n\v\f", value[vl - 1]) == NULL);
    fuzz_seen_add(s, key, value, line);
    if (addr_key(key, kl, ADDR_KEY_CATCHALL, norm, why, sizeof(why)) < 0) {
        /* As the file source does: a bad key stops the read. */
        snprintf(err, errlen, "\"%.300s\": %s", key, why);
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *) norm; *p; p++)
        fuzz_check(*p > 0x20 && *p != 0x7f);
    fuzz_check(addr_key(norm, strlen(norm), ADDR_KEY_CATCHALL, again, why, sizeof(why)) == 0);
    fuzz_check(strcmp(norm, again) == 0);
    fuzz_seen_add(s, "=", norm, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const cookie_io_functions_t io = {fuzz_stream_read, NULL, NULL, NULL};
    static int ready;
    FUZZ_STREAM whole, pieces;
    FUZZ_SEEN s1 = {NULL, 0, 0}, s2 = {NULL, 0, 0};
    char err1[1024] = "", err2[1024] = "";
    FILE *fp;
    int rc1, rc2;

    if (!ready) {
        fuzz_quiet("fuzz_mapfile");
        ready = 1;
    }
    if (fuzz_chunks_init(&pieces.ck, data, size) < 0)
        return 0;
    pieces.left = 0;
    /* The same bytes in one piece: plan byte 255 is "all that is left". */
    whole = pieces;
    memset(whole.ck.plan, 255, sizeof(whole.ck.plan));

    fp = fopencookie(&whole, "r", io);
    fuzz_check(fp != NULL);
    rc1 = mapfile_read_fp(fp, "map", fuzz_entry, &s1, err1, sizeof(err1));
    fclose(fp);
    fp = fopencookie(&pieces, "r", io);
    fuzz_check(fp != NULL);
    rc2 = mapfile_read_fp(fp, "map", fuzz_entry, &s2, err2, sizeof(err2));
    fclose(fp);

    fuzz_check(rc1 == rc2 && strcmp(err1, err2) == 0);
    fuzz_check(s1.len == s2.len && (s1.len == 0 || memcmp(s1.text, s2.text, s1.len) == 0));
    if (rc1 < 0)
        fuzz_check(strncmp(err1, "map:", 4) == 0);
    free(s1.text);
    free(s2.text);
    return 0;
}
