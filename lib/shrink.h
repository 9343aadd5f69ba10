/*
 * shrink.h - the shrink guard: refuse a full replacement that loses too much
 *
 * A full pull of a directory and `rcptgate import` of a map file both
 * replace a source's whole set. An emptied OU, a bind account that
 * suddenly sees nothing, or a truncated map file would then drop most
 * valid recipients at once, and their mail would bounce. Both writers ask
 * shrink_guard() before they commit, with [syncd] max_remove_share and
 * max_remove_count, so one rule protects every source. syncd's
 * incremental pulls ask too: a bind account that loses read access while
 * every object's uSNChanged moves, or a mass delete list, removes as much
 * in one poll as an empty full pull.
 */
#ifndef RG_SHRINK_H
#define RG_SHRINK_H

#include <stddef.h>

#include "store.h"

/*
 * shrink_guard - the decision for a diff (store_sync_diff or
 * store_replace_diff): 1 refuse, with the reason in why, 0 apply.
 * objects: what the new set held (directory objects, map file entries),
 * or -1 for an incremental pull (counts from store_delta_diff, kept
 * included); what names it in the reason ("the pull", "the file"). A
 * source that has nothing yet always passes; an empty set, or an
 * incremental pull that would leave nothing, never passes a source that
 * has recipients; otherwise removing more than max_pct percent of the
 * source's recipients, or more than max_count of them (0: no count
 * limit), is refused.
 */
int shrink_guard(const STORE_COUNTS *counts, long long objects, const char *what, int max_pct,
                 long long max_count, char *why, size_t whylen);

#endif
