/*
 * cmd_import.c - rcptgate import [--source NAME] [--allow-empty] FILE
 *
 * Replaces one source's recipients with the keys of a Postfix map file
 * (values are ignored: Postfix's own relay_recipients files say "OK" or
 * "x"). Every key must be an address addr_parse() accepts, or a catch-all
 * "@domain"; the normal form is stored. The first bad line stops the
 * import with "FILE:LINE: reason" and nothing is applied, because half a
 * list of valid recipients bounces the other half.
 *
 * A file without entries would empty the source: refused unless
 * --allow-empty says that is what is wanted.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mapfile.h"
#include "rcptgate.h"

/* What the map file reader's callback needs. */
typedef struct import_ctx {
    STORE *st;
    long long lines;
    int store_failed;           /* the error is the store's, not the file's */
} IMPORT_CTX;

/* import_entry - validate one key and add its normal form to the new set */
static int import_entry(const char *key, const char *value, int line, void *ctx,
                        char *err, size_t errlen)
{
    IMPORT_CTX *ic = ctx;
    char norm[ADDR_KEY_SIZE];

    if (rcptgate_key(key, norm, err, errlen) < 0)
        return -1;
    if (store_replace_add(ic->st, norm, STORE_KIND_IMPORTED) < 0) {
        snprintf(err, errlen, "%s", store_error(ic->st));
        ic->store_failed = 1;
        return -1;
    }
    ic->lines++;
    return 0;
}

/* import_source_ok - a source name: letters, digits and "._-" */
static int import_source_ok(const char *name)
{
    size_t n = strlen(name);

    return n > 0 && n <= 64
        && strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* cmd_import - rcptgate import [--source NAME] [--allow-empty] FILE */
int cmd_import(int argc, char **argv)
{
    const char *source = "import";
    const char *file = NULL;
    int allow_empty = 0;
    IMPORT_CTX ic;
    STORE_COUNTS counts;
    char err[1024];
    struct timespec t0, t1;
    FILE *fp;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--source") == 0 && i + 1 < argc) {
            source = argv[++i];
        } else if (strncmp(argv[i], "--source=", 9) == 0) {
            source = argv[i] + 9;
        } else if (strcmp(argv[i], "--allow-empty") == 0) {
            allow_empty = 1;
        } else if (argv[i][0] == '-' && argv[i][1] != 0) {
            rcptgate_error("import: unknown option %s", argv[i]);
            return rcptgate_usage();
        } else if (file == NULL) {
            file = argv[i];
        } else {
            return rcptgate_usage();
        }
    }
    if (file == NULL)
        return rcptgate_usage();
    if (strcmp(source, "static") == 0) {
        rcptgate_error("import: the source \"static\" holds the static entries; "
                       "use rcptgate static add/del");
        return RCPTGATE_EX_NOTFOUND;
    }
    if (!import_source_ok(source)) {
        rcptgate_error("import: bad source name \"%s\" (letters, digits, '.', '_', '-')", source);
        return RCPTGATE_EX_NOTFOUND;
    }
    memset(&ic, 0, sizeof(ic));
    clock_gettime(CLOCK_MONOTONIC, &t0);

    /* Open the file first: root may import a file the store's user cannot read. */
    if ((fp = fopen(file, "r")) == NULL) {
        rcptgate_error("%s: %s", file, strerror(errno));
        rcptgate_error("nothing imported; source %s is unchanged", source);
        return RCPTGATE_EX_NOTFOUND;
    }
    if ((ic.st = rcptgate_store(STORE_CREATE)) == NULL) {
        fclose(fp);
        return RCPTGATE_EX_STORE;
    }
    if (store_replace_begin(ic.st, source, "import") < 0) {
        rcptgate_error("import: %s", store_error(ic.st));
        store_close(ic.st);
        fclose(fp);
        return RCPTGATE_EX_STORE;
    }
    rc = mapfile_read_fp(fp, file, import_entry, &ic, err, sizeof(err));
    fclose(fp);
    if (rc < 0) {
        store_replace_abort(ic.st);
        rcptgate_error("%s", err);
        rcptgate_error("nothing imported; source %s is unchanged", source);
        store_close(ic.st);
        return ic.store_failed ? RCPTGATE_EX_STORE : RCPTGATE_EX_NOTFOUND;
    }
    if (ic.lines == 0 && !allow_empty) {
        store_replace_abort(ic.st);
        rcptgate_error("%s: no entries; refusing to empty source %s (--allow-empty does)",
                       file, source);
        store_close(ic.st);
        return RCPTGATE_EX_NOTFOUND;
    }
    if (store_replace_commit(ic.st, &counts) < 0) {
        rcptgate_error("import: %s; nothing imported", store_error(ic.st));
        store_close(ic.st);
        return RCPTGATE_EX_STORE;
    }
    store_close(ic.st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("imported %lld recipients into source %s: %lld added, %lld changed, %lld removed\n",
           counts.added + counts.changed + counts.kept, source,
           counts.added, counts.changed, counts.removed);
    if (rcptgate_verbose)
        printf("%lld entries read from %s in %.2f s\n", ic.lines, file,
               (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return RCPTGATE_EX_OK;
}
