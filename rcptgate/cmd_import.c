/*
 * cmd_import.c - rcptgate import [--source NAME] [--allow-empty] [--force] FILE
 *
 * Replaces one source's recipients with the keys of a Postfix map file
 * (values are ignored: Postfix's own relay_recipients files say "OK" or
 * "x"). The file is read by mapfile_keys_fp(), the reader and key
 * normaliser (addr_key()) that syncd's type = file source uses too, so
 * one file gives the same recipients either way. The first bad line stops
 * the import with "FILE:LINE: reason" and nothing is applied, because
 * half a list of valid recipients bounces the other half.
 *
 * Memory stays bounded whatever the file holds: lines are read into a
 * fixed buffer and the set is staged in SQLite (store_replace.c), not in
 * memory, so repeats cost nothing and a million addresses a few MB.
 *
 * A truncated file must not silently drop most of a source: before
 * applying, the difference goes through the shrink guard of syncd's full
 * pulls (lib/shrink.c, [syncd] max_remove_share and max_remove_count). A
 * refused import changes nothing, says why, is recorded as a refused run
 * for `rcptgate stats`, and exits 65; --force applies it anyway. A file
 * without entries is refused unless --allow-empty says that emptying the
 * source is what is wanted (which then needs no --force).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cfg.h"
#include "mapfile.h"
#include "params.h"
#include "rcptgate.h"
#include "shrink.h"

/* What the map file reader's callback needs. */
typedef struct import_ctx {
    STORE *st;
    long long lines;
    int store_failed;           /* the error is the store's, not the file's */
} IMPORT_CTX;

/* import_entry - one key (normalised by mapfile_keys_fp) into the staged set */
static int import_entry(const char *norm, const char *value, int line, void *ctx,
                        char *err, size_t errlen)
{
    IMPORT_CTX *ic = ctx;

    (void) value;
    (void) line;
    if (store_replace_add(ic->st, norm, STORE_KIND_IMPORTED) < 0) {
        snprintf(err, errlen, "%s", store_error(ic->st));
        ic->store_failed = 1;
        return -1;
    }
    ic->lines++;
    return 0;
}

/* What import_type_cb looks for, and what it found. */
typedef struct import_type {
    const char *name;
    char type[32];
} IMPORT_TYPE;

/* import_type_cb - the type of the source named (store_runs_walk) */
static int import_type_cb(const STORE_SOURCE_INFO *info, void *ctx)
{
    IMPORT_TYPE *t = ctx;

    if (strcmp(info->name, t->name) != 0)
        return 0;
    snprintf(t->type, sizeof(t->type), "%s", info->type);
    return 1;
}

/* import_source_ok - a source name: letters, digits and "._-" */
static int import_source_ok(const char *name)
{
    size_t n = strlen(name);

    return n > 0 && n <= 64
        && strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* Addresses a refusal names. */
#define IMPORT_SHOW_GONE    10

/* import_gone_cb - one address the refused file lacks, appended to the list */
static int import_gone_cb(const char *address, void *ctx)
{
    char *list = ctx;
    size_t len = strlen(list);

    snprintf(list + len, IMPORT_SHOW_GONE * 80 - len, "%s%s", len ? ", " : "", address);
    return 0;
}

/* import_refuse - the shrink guard said no: record the refused run, explain */
static int import_refuse(IMPORT_CTX *ic, const char *file, const char *source,
                         const STORE_COUNTS *counts, const char *why)
{
    char msg[1200];
    char gone[IMPORT_SHOW_GONE * 80] = "";

    /* Name some of what would go: a truncated file shows at a glance. */
    if (store_replace_gone(ic->st, import_gone_cb, gone, IMPORT_SHOW_GONE) < 0)
        gone[0] = 0;
    snprintf(msg, sizeof(msg), "%s: %s", file, why);
    if (store_replace_refuse(ic->st, "refused", msg, counts) < 0)
        rcptgate_error("import: could not record the refused run: %s", store_error(ic->st));
    rcptgate_error("import: shrink guard: not applying %s to source %s: %s", file, source, why);
    if (gone[0])
        rcptgate_error("import: %s would remove: %s%s", file, gone,
                       counts->removed > IMPORT_SHOW_GONE ? ", ..." : "");
    rcptgate_error("nothing imported; source %s is unchanged. If the file is complete, "
                   "apply it with: rcptgate import --force --source %s %s", source, source, file);
    store_close(ic->st);
    return RCPTGATE_EX_REFUSED;
}

/* cmd_import - rcptgate import [--source NAME] [--allow-empty] [--force] FILE */
int cmd_import(int argc, char **argv)
{
    const char *source = "import";
    const char *file = NULL;
    int allow_empty = 0;
    int force = 0;
    IMPORT_CTX ic;
    STORE_COUNTS counts;
    CHECK_OPTS opts;
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
        } else if (strcmp(argv[i], "--force") == 0) {
            force = 1;
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
    {
        /*
         * A [source NAME] of rcptgate.conf is rcptgate-syncd's: an import
         * there before its first pull would make the source an import one,
         * and every pull of it would then be refused.
         */
        char section[CFG_NAME_LEN + 8];

        snprintf(section, sizeof(section), "source %s", source);
        if (cfg_section_seen(section)) {
            rcptgate_error("import: source %s is a [source %s] of %s, which rcptgate-syncd pulls; "
                           "import into another name (--source)", source, source, rcptgate_conf_path);
            return RCPTGATE_EX_NOTFOUND;
        }
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
    {
        /* Another type's source (a [source NAME] taken out of the file, say): a mistake, not a store failure. */
        IMPORT_TYPE t = {source, ""};

        if (store_runs_walk(ic.st, import_type_cb, &t) == 0 && t.type[0] && strcmp(t.type, "import") != 0) {
            rcptgate_error("import: source %s is of type %s, not import: rcptgate import replaces only its "
                           "own sources (give another --source; rcptgate source del removes a source no "
                           "longer configured)", source, t.type);
            store_close(ic.st);
            fclose(fp);
            return RCPTGATE_EX_NOTFOUND;
        }
    }
    if (store_replace_begin(ic.st, source, "import") < 0) {
        rcptgate_error("import: %s", store_error(ic.st));
        store_close(ic.st);
        fclose(fp);
        return RCPTGATE_EX_STORE;
    }
    params_check_opts(&opts);
    rc = mapfile_keys_fp(fp, file, opts.addr_flags | ADDR_KEY_CATCHALL, import_entry, &ic, err, sizeof(err));
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
    if (store_replace_diff(ic.st, &counts) < 0) {
        rcptgate_error("import: %s; nothing imported", store_error(ic.st));
        store_close(ic.st);
        return RCPTGATE_EX_STORE;
    }
    /* An empty file with --allow-empty is a wish to empty the source: no guard. */
    if (!(ic.lines == 0 && allow_empty)
        && shrink_guard(&counts, ic.lines, "the file", var_syncd_max_remove_pct,
                        var_syncd_max_remove_count, err, sizeof(err))) {
        if (!force)
            return import_refuse(&ic, file, source, &counts, err);
        rcptgate_error("import: --force: applying although %s", err);
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
