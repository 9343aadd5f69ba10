/*
 * shrink.c - the shrink guard: refuse a full replacement that loses too much
 *
 * Shared by syncd's full and incremental pulls (syncd/sync_apply.c) and
 * `rcptgate import` (rcptgate/cmd_import.c): see shrink.h. The counts are
 * those of the store's diff, taken under the write lock, so the decision
 * is about what the commit would really do.
 */
#include "config.h"

#include <stdio.h>

#include "shrink.h"

/* shrink_guard - 1 refuse (why), 0 apply */
int shrink_guard(const STORE_COUNTS *c, long long objects, const char *what, int max_pct,
                 long long max_count, char *why, size_t whylen)
{
    long long current = c->changed + c->removed + c->kept;

    if (current == 0)
        return 0;                       /* nothing to lose */
    if (objects < 0 && c->added + c->changed + c->kept == 0) {
        snprintf(why, whylen, "it would remove all %lld of the source's recipients", current);
        return 1;
    }
    if (objects == 0 || c->added + c->changed + c->kept == 0) {
        snprintf(why, whylen, "%s returned no %s, but the source has %lld recipient%s: "
                 "applying it would remove them all", what, objects == 0 ? "objects" : "addresses",
                 current, current == 1 ? "" : "s");
        return 1;
    }
    if (c->removed * 100 > (long long) max_pct * current) {
        snprintf(why, whylen, "it would remove %lld of the source's %lld recipients (%.1f%%, "
                 "more than max_remove_share = %d%%)", c->removed, current,
                 100.0 * (double) c->removed / (double) current, max_pct);
        return 1;
    }
    if (max_count > 0 && c->removed > max_count) {
        snprintf(why, whylen, "it would remove %lld of the source's %lld recipients (more than "
                 "max_remove_count = %lld)", c->removed, current, max_count);
        return 1;
    }
    return 0;
}
