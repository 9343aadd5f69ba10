/*
 * store_sync_map.c - hash tables of guids and DNs for a pull (store_sync.c, store_delta.c)
 *
 * A pull of a million objects finds objects by guid (the store's rows
 * against the pull) and by DN (group members) in tables of 32-bit
 * indexes into the pull's own arrays: open addressing, linear probing,
 * FNV-1a; DNs compare ASCII case-insensitively, as SQLite's NOCASE.
 * The keys are not copied: a table lives no longer than its array.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store_sync_int.h"
#include "xalloc.h"

/* sync_hash - FNV-1a of s (ASCII-lowercased if nocase) */
static uint64_t sync_hash(const char *s, int nocase)
{
    uint64_t h = 14695981039346656037ULL;

    for (; *s; s++) {
        unsigned char c = (unsigned char) *s;

        h ^= (nocase && c >= 'A' && c <= 'Z') ? c + 32 : c;
        h *= 1099511628211ULL;
    }
    return h;
}

/* sync_nocase_eq - strings equal but for ASCII case (as SQLite's NOCASE) */
static int sync_nocase_eq(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = (unsigned char) *a;
        unsigned char y = (unsigned char) *b;

        if (x >= 'A' && x <= 'Z')
            x += 32;
        if (y >= 'A' && y <= 'Z')
            y += 32;
        if (x != y)
            return 0;
        if (x == 0)
            return 1;
    }
}

/* store_sync_map_init - an empty table for up to n keys found through base/stride */
void store_sync_map_init(SYNC_MAP *m, size_t n, const void *base, size_t stride, int nocase)
{
    size_t size = 16;

    free(m->slot);
    while (size < 2 * n)
        size *= 2;
    m->slot = xcalloc(size, sizeof(*m->slot));
    m->mask = size - 1;
    m->base = base;
    m->stride = stride;
    m->nocase = nocase;
}

/* sync_map_key - key i of the table */
static const char *sync_map_key(const SYNC_MAP *m, uint32_t i)
{
    return *(const char *const *) (const void *) (m->base + (size_t) i * m->stride);
}

/* store_sync_map_slot - the slot holding key, or the empty slot where it would go */
uint32_t *store_sync_map_slot(const SYNC_MAP *m, const char *key)
{
    size_t h;

    for (h = sync_hash(key, m->nocase) & m->mask; m->slot[h] != 0; h = (h + 1) & m->mask) {
        const char *k = sync_map_key(m, m->slot[h] - 1);

        if (m->nocase ? sync_nocase_eq(k, key) : strcmp(k, key) == 0)
            break;
    }
    return &m->slot[h];
}

/* store_sync_map_free - free a table's slots */
void store_sync_map_free(SYNC_MAP *m)
{
    free(m->slot);
    m->slot = NULL;
}
