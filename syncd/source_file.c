/*
 * source_file.c - a Postfix map file as a source of rcptgate-syncd
 *
 * SYNOPSIS
 *   [source legacy]
 *   type = file
 *   path = /etc/postfix/relay_recipients
 *
 * DESCRIPTION
 *   The file `rcptgate import` reads, through the same reader
 *   (mapfile_keys() in lib/mapfile.c: "key value" lines, # comments,
 *   continuation lines, bounded line length) and the same normaliser
 *   (addr_key()): every key is an address or a catch-all "@domain" and is
 *   stored in its normal form, as `rcptgate import` stores it;
 *   values are ignored. One bad line fails the whole pull with FILE:LINE,
 *   and nothing is applied: unlike a directory value, a line in a file the
 *   postmaster keeps by hand is a mistake to fix, not noise to skip.
 *
 *   Each key is an object of kind "imported" whose identity is the key
 *   itself; a key repeated in the file is one object. The pull then goes
 *   through the same diff, shrink guard and export as a directory's.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "mapfile.h"
#include "params.h"
#include "syncd.h"
#include "xalloc.h"

typedef struct source_file {
    const SOURCE_CONF *conf;
} SOURCE_FILE;

/* A set of the keys seen in this pull (open addressing, FNV-1a). */
typedef struct source_file_set {
    char **slot;
    size_t size;                /* a power of two */
    size_t used;
} SOURCE_FILE_SET;

typedef struct source_file_ctx {
    SYNC_SINK *sink;
    SOURCE_FILE_SET seen;
    int sink_failed;
} SOURCE_FILE_CTX;

/* source_file_of - our struct behind the opaque handle */
static SOURCE_FILE *source_file_of(SOURCE *src)
{
    return (SOURCE_FILE *) (void *) src;
}

/* source_file_hash - FNV-1a of a string */
static uint64_t source_file_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++)
        h = (h ^ (unsigned char) *s) * 1099511628211ULL;
    return h;
}

/* source_file_set_add - 1 added, 0 already there */
static int source_file_set_add(SOURCE_FILE_SET *set, const char *key)
{
    size_t i;

    if (2 * (set->used + 1) > set->size) {
        SOURCE_FILE_SET bigger = {NULL, set->size ? 2 * set->size : 1024, 0};

        bigger.slot = xcalloc(bigger.size, sizeof(char *));
        for (size_t j = 0; j < set->size; j++) {
            if (set->slot[j] == NULL)
                continue;
            for (i = source_file_hash(set->slot[j]) & (bigger.size - 1); bigger.slot[i];
                 i = (i + 1) & (bigger.size - 1))
                ;
            bigger.slot[i] = set->slot[j];
            bigger.used++;
        }
        free(set->slot);
        *set = bigger;
    }
    for (i = source_file_hash(key) & (set->size - 1); set->slot[i]; i = (i + 1) & (set->size - 1))
        if (strcmp(set->slot[i], key) == 0)
            return 0;
    set->slot[i] = xstrdup(key);
    set->used++;
    return 1;
}

/* source_file_set_free - the keys and the table */
static void source_file_set_free(SOURCE_FILE_SET *set)
{
    for (size_t i = 0; i < set->size; i++)
        free(set->slot[i]);
    free(set->slot);
    memset(set, 0, sizeof(*set));
}

/* source_file_entry - one map file key (normalised by mapfile_keys): deduplicate, hand over */
static int source_file_entry(const char *norm, const char *value, int line, void *ctx,
                             char *err, size_t errlen)
{
    SOURCE_FILE_CTX *fc = ctx;
    const char *addrs[1];
    STORE_OBJECT obj;

    (void) value;
    (void) line;
    if (source_stopping()) {
        snprintf(err, errlen, "stopping on a signal");
        return -1;
    }
    if (source_file_set_add(&fc->seen, norm) == 0)
        return 0;
    addrs[0] = norm;
    memset(&obj, 0, sizeof(obj));
    obj.guid = norm;
    obj.dn = "";
    obj.kind = STORE_KIND_IMPORTED;
    obj.addresses = addrs;
    obj.n_addresses = 1;
    if (fc->sink->put(fc->sink, &obj) < 0) {
        snprintf(err, errlen, "not stored");
        fc->sink_failed = 1;
        return -1;
    }
    return 0;
}

/* source_file_open - remember the path; the file is read by each pull */
static SOURCE *source_file_open(const SOURCE_CONF *conf, char *err, size_t errlen)
{
    SOURCE_FILE *sf;

    if (access(conf->path, R_OK) < 0) {
        snprintf(err, errlen, "%s: %s", conf->path, strerror(errno));
        return NULL;
    }
    sf = xcalloc(1, sizeof(*sf));
    sf->conf = conf;
    return (SOURCE *) (void *) sf;
}

/* source_file_full - every key of the file, or nothing */
static int source_file_full(SOURCE *src, SYNC_SINK *sink, char **cookie, char **invocation_id,
                            char *err, size_t errlen)
{
    SOURCE_FILE *sf = source_file_of(src);
    SOURCE_FILE_CTX fc;
    CHECK_OPTS opts;
    int rc;

    *cookie = NULL;
    *invocation_id = NULL;
    memset(&fc, 0, sizeof(fc));
    fc.sink = sink;
    params_check_opts(&opts);
    rc = mapfile_keys(sf->conf->path, opts.addr_flags | ADDR_KEY_CATCHALL, source_file_entry, &fc,
                      err, errlen);
    log_debug("source %s: %zu keys read from %s", sf->conf->name, fc.seen.used, sf->conf->path);
    source_file_set_free(&fc.seen);
    return rc < 0 ? SOURCE_ERR : SOURCE_OK;
}

/* source_file_close - NULL is fine */
static void source_file_close(SOURCE *src)
{
    free(source_file_of(src));
}

const SOURCE_OPS source_file_ops = {
    .type = "file",
    .open = source_file_open,
    .full = source_file_full,
    .close = source_file_close,
    .validate = NULL,                   /* lib/params_source.c checks type = file */
    /* no incremental, no wait: every pull reads the whole file; no persistence, nothing to reload */
};
