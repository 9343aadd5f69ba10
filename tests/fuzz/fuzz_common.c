/*
 * fuzz_common.c - scratch directory, store, config, quiet logs and the
 * chunk plan of the libFuzzer targets (see fuzz_common.h)
 */
#include "config.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "store.h"
#include "xalloc.h"
#include "fuzz_common.h"

static char fuzz_tmp[512];

/* fuzz_rm_one - nftw callback: remove one entry */
static int fuzz_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) flag;
    (void) ftw;
    remove(path);
    return 0;
}

/* fuzz_cleanup - atexit: the scratch directory goes */
static void fuzz_cleanup(void)
{
    if (fuzz_tmp[0])
        nftw(fuzz_tmp, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* fuzz_dir - the scratch directory, made on first use */
const char *fuzz_dir(void)
{
    if (fuzz_tmp[0] == 0) {
        const char *t = getenv("TMPDIR");

        snprintf(fuzz_tmp, sizeof(fuzz_tmp), "%s/rg-fuzz.XXXXXX", t && *t ? t : "/tmp");
        if (mkdtemp(fuzz_tmp) == NULL) {
            perror(fuzz_tmp);
            abort();
        }
        atexit(fuzz_cleanup);
    }
    return fuzz_tmp;
}

/* fuzz_path - dir/name (malloc'd) */
char *fuzz_path(const char *name)
{
    return xasprintf("%s/%s", fuzz_dir(), name);
}

/* fuzz_store - the store every target that looks things up reads */
char *fuzz_store(const char *nexthop)
{
    static const char *const users[] = {
        "alice@example.com", "bob@example.com", "alice.smith@example.com", "@example.org", NULL,
    };
    char *path = fuzz_path("rcptgate.db");
    char err[256];
    STORE_COUNTS c;
    STORE *st = store_open(path, STORE_CREATE, 2000, err, sizeof(err));

    if (st == NULL) {
        fprintf(stderr, "fuzz: store_open %s: %s\n", path, err);
        abort();
    }
    fuzz_check(store_domain_put(st, "example.com", nexthop, 0) == 0);
    fuzz_check(store_domain_put(st, "example.org", nexthop, 1) == 0);
    fuzz_check(store_replace_begin(st, "fuzz", "import") == 0);
    for (const char *const *u = users; *u; u++)
        fuzz_check(store_replace_add(st, *u, STORE_KIND_USER) == 0);
    fuzz_check(store_replace_add(st, "sales@example.com", STORE_KIND_GROUP) == 0);
    fuzz_check(store_replace_commit(st, &c) == 0);
    fuzz_check(store_static_add(st, "postmaster@example.com") == 1);
    store_close(st);
    return path;
}

/* fuzz_config - write and load a config file */
void fuzz_config(const char *text, const CFG_SECTION *sections)
{
    char *path = fuzz_path("rcptgate.conf");
    FILE *fp = fopen(path, "w");

    fuzz_check(fp != NULL);
    fputs(text, fp);
    fuzz_check(fclose(fp) == 0);
    if (cfg_load(path, sections) != 0) {
        fprintf(stderr, "fuzz: %s has errors:\n%s", path, text);
        abort();
    }
    free(path);
}

/* fuzz_log_hook - every log line is printable (a client's bytes are escaped) */
static void fuzz_log_hook(int prio, const char *line)
{
    (void) prio;
    for (const unsigned char *p = (const unsigned char *) line; *p; p++)
        fuzz_check(*p >= 0x20 && *p != 0x7f);
}

/* fuzz_quiet - no log output, but every line checked */
void fuzz_quiet(const char *ident)
{
    log_init(ident, 0, 0);
    log_set_hook(fuzz_log_hook);
    log_set_debug(getenv("FUZZ_DEBUG") != NULL);
}

/* fuzz_chunks_init - the plan from the front of the input */
int fuzz_chunks_init(FUZZ_CHUNKS *ck, const uint8_t *data, size_t size)
{
    if (size < FUZZ_PLAN_LEN)
        return -1;
    memcpy(ck->plan, data, FUZZ_PLAN_LEN);
    ck->data = data + FUZZ_PLAN_LEN;
    ck->size = size - FUZZ_PLAN_LEN;
    ck->pos = 0;
    ck->turn = 0;
    ck->max_pieces = 0;
    return 0;
}

/* fuzz_chunks_next - the next piece of the input, as the plan cuts it */
int fuzz_chunks_next(FUZZ_CHUNKS *ck, const uint8_t **p, size_t *len)
{
    size_t left = ck->size - ck->pos;
    uint8_t b;
    size_t n;

    if (left == 0)
        return 0;
    b = ck->plan[ck->turn++ % FUZZ_PLAN_LEN];
    if (ck->max_pieces && ck->turn >= ck->max_pieces)
        b = 255;
    if (b == 0) {
        const uint8_t *nl = memchr(ck->data + ck->pos, '\n', left);

        n = nl ? (size_t) (nl - (ck->data + ck->pos)) + 1 : left;
    } else {
        n = b == 255 ? left : b < 128 ? b : (size_t) (b - 127) * 64;
    }
    if (n > left)
        n = left;
    *p = ck->data + ck->pos;
    *len = n;
    ck->pos += n;
    return 1;
}
