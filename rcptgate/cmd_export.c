/*
 * cmd_export.c - rcptgate export [--source NAME]: a Postfix map file
 *
 * Writes the recipients as "address OK" lines in address order (bytes,
 * so the output is the same for the same store), one line per address
 * even when several sources hold it. The output feeds postmap (for those
 * who still want an lmdb: table) and rcptgate import alike. A key with
 * white space (a quoted local part) cannot be written in a map file, and
 * one that starts with '#' would be read back as a comment; each is left
 * out with a warning rather than written wrong.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rcptgate.h"

/* export_source_cb - is this the source asked for? */
static int export_source_cb(const STORE_SOURCE_INFO *si, void *ctx)
{
    const char **name = ctx;

    if (*name != NULL && strcmp(si->name, *name) == 0)
        *name = NULL;
    return 0;
}

typedef struct export_ctx {
    char last[ADDR_KEY_SIZE];   /* the previous address, to write each once */
    long long written;
    long long skipped;
} EXPORT_CTX;

/* export_print - one recipient, unless it was just written */
static int export_print(const STORE_RCPT *r, void *ctx)
{
    EXPORT_CTX *ec = ctx;

    if (strcmp(r->address, ec->last) == 0)
        return 0;
    snprintf(ec->last, sizeof(ec->last), "%s", r->address);
    if (strpbrk(r->address, " \t\r\n") != NULL || r->address[0] == '#') {
        rcptgate_error("export: leaving out \"%s\": %s", r->address, r->address[0] == '#'
                       ? "postmap and rcptgate import read a line that starts with '#' as a comment"
                       : "a map file key cannot hold white space");
        ec->skipped++;
        return 0;
    }
    if (printf("%s OK\n", r->address) < 0)
        return -1;
    ec->written++;
    return 0;
}

/* cmd_export - rcptgate export [--source NAME] */
int cmd_export(int argc, char **argv)
{
    const char *source = NULL;
    EXPORT_CTX ec;
    STORE *st;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--source") == 0 && i + 1 < argc)
            source = argv[++i];
        else if (strncmp(argv[i], "--source=", 9) == 0)
            source = argv[i] + 9;
        else
            return rcptgate_usage();
    }
    if ((st = rcptgate_store(0)) == NULL)
        return RCPTGATE_EX_STORE;
    if (source != NULL) {
        /* A name that is no source must not print an empty map: postmap would empty the table. */
        const char *missing = source;

        if (store_runs_walk(st, export_source_cb, &missing) < 0) {
            rcptgate_error("export: %s", store_error(st));
            store_close(st);
            return RCPTGATE_EX_STORE;
        }
        if (missing != NULL) {
            rcptgate_error("export: no source %s in the store (rcptgate stats lists them)", source);
            store_close(st);
            return RCPTGATE_EX_NOTFOUND;
        }
    }
    memset(&ec, 0, sizeof(ec));
    rc = store_rcpt_walk(st, source, export_print, &ec);
    if (rc < 0) {
        rcptgate_error("export: %s", store_error(st));
        store_close(st);
        return RCPTGATE_EX_STORE;
    }
    store_close(st);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        rcptgate_error("export: write error: %s", strerror(errno));
        return RCPTGATE_EX_NOTFOUND;
    }
    if (rcptgate_verbose)
        rcptgate_error("export: %lld recipients written, %lld left out", ec.written, ec.skipped);
    return RCPTGATE_EX_OK;
}
