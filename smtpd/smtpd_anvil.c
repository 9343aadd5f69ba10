/*
 * smtpd_anvil.c - per-client-IP counters: connections, harvest, AUTH failures
 *
 * One hash table keyed by the client address text, in the one event loop
 * (no locking). Each entry holds the connections the address has open
 * now, the unknown recipients it asked for in the current harvest window
 * and the AUTH failures of the current failure window, and when a block
 * of either kind ends.
 *
 * Bounded memory: at most max_entries entries. Entries that hold no
 * connection sit on an "idle" list in the order they were last used;
 * when the table is full the head of that list (idle longest) is
 * dropped to make room, one under a block last (anvil_evict). An entry
 * holding connections is never dropped:
 * if every entry holds one (more connections than client_table_size)
 * the table grows past its bound, by at most max_connections. An entry
 * left with no connection and nothing to remember is freed at once.
 *
 * The hash is seeded at random so that a client choosing its addresses
 * (IPv6 gives it plenty) cannot aim them at one chain.
 *
 * Windows are fixed: a counter starts at its first event and is
 * forgotten when the window has passed. The wall clock may step; a step
 * back never makes a window or a block longer than configured.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "smtpd.h"
#include "smtpd_anvil.h"
#include "params_smtpd.h"
#include "xalloc.h"

typedef struct anvil_entry {
    struct anvil_entry *hnext;  /* hash chain */
    struct anvil_entry *prev;   /* idle list (conns == 0 only) */
    struct anvil_entry *next;
    uint64_t hash;
    long long last;             /* last use, ms */
    long long h_start;          /* harvest window began */
    long long h_until;          /* harvest block ends (0 none) */
    long long a_start;          /* AUTH failure window began */
    long long a_until;          /* AUTH block ends (0 none) */
    int h_count;                /* unknown recipients in the window */
    int a_count;                /* AUTH failures in the window */
    int conns;                  /* connections open now */
    char addr[];                /* the key */
} ANVIL_ENTRY;

static ANVIL_ENTRY **anvil_buckets;
static size_t anvil_nbuckets;   /* a power of two */
static int anvil_entries;
static int anvil_max;
static uint64_t anvil_seed;
static ANVIL_ENTRY *anvil_idle_head;    /* idle longest */
static ANVIL_ENTRY *anvil_idle_tail;    /* idle shortest */
static long long anvil_fake_now = -1;
static char anvil_reason[SMTPD_ADDR_LEN + 96];

#define ANVIL_MIN_BUCKETS 256
#define ANVIL_DEFAULT_MAX 100000

/* anvil_now - milliseconds: the test clock, the loop's cached time, or the real clock */
static long long anvil_now(void)
{
    struct timeval tv;
    struct timespec ts;

    if (anvil_fake_now >= 0)
        return anvil_fake_now;
    if (smtpd_base != NULL && event_base_gettimeofday_cached(smtpd_base, &tv) == 0)
        return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* smtpd_anvil_set_clock - tests: a fixed time, or back to the real clock */
void smtpd_anvil_set_clock(long long now_ms)
{
    anvil_fake_now = now_ms < 0 ? -1 : now_ms;
}

/* anvil_hash - seeded FNV-1a of the address, with a final mix */
static uint64_t anvil_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ anvil_seed;

    for (; *s; s++) {
        h ^= (unsigned char) *s;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

/* anvil_idle_unlink - take e off the idle list (if it is on it) */
static void anvil_idle_unlink(ANVIL_ENTRY *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else if (anvil_idle_head == e)
        anvil_idle_head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else if (anvil_idle_tail == e)
        anvil_idle_tail = e->prev;
    e->prev = e->next = NULL;
}

/* anvil_idle_append - e was used just now and holds no connection */
static void anvil_idle_append(ANVIL_ENTRY *e)
{
    e->next = NULL;
    e->prev = anvil_idle_tail;
    if (anvil_idle_tail != NULL)
        anvil_idle_tail->next = e;
    else
        anvil_idle_head = e;
    anvil_idle_tail = e;
}

/* anvil_remove - unlink e from its chain and the idle list, and free it */
static void anvil_remove(ANVIL_ENTRY *e)
{
    ANVIL_ENTRY **pp = &anvil_buckets[e->hash & (anvil_nbuckets - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->conns == 0)
        anvil_idle_unlink(e);
    anvil_entries--;
    free(e);
}

/* anvil_grow - double the bucket array (the load stays at most one) */
static void anvil_grow(void)
{
    size_t n = anvil_nbuckets * 2;
    ANVIL_ENTRY **b = xcalloc(n, sizeof(*b));

    for (size_t i = 0; i < anvil_nbuckets; i++) {
        ANVIL_ENTRY *e = anvil_buckets[i], *next;

        for (; e != NULL; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(anvil_buckets);
    anvil_buckets = b;
    anvil_nbuckets = n;
}

/*
 * anvil_evict - drop idle entries until there is room for one more. An
 * entry under a harvest or AUTH block is passed over (moved to the idle
 * list's tail) while others can go: evicting it lifted the block, so a
 * blocked harvester came back fresh once client_table_size other
 * addresses had asked something. At most ANVIL_EVICT_SKIP are passed
 * over in one call, so that a table full of blocks costs no long walk:
 * then the one idle longest goes, blocked or not, and memory stays bounded.
 */
#define ANVIL_EVICT_SKIP 64

static void anvil_evict(void)
{
    long long now = anvil_now();
    int skipped = 0;

    while (anvil_entries >= anvil_max && anvil_idle_head != NULL) {
        ANVIL_ENTRY *e = anvil_idle_head;

        if (skipped < ANVIL_EVICT_SKIP && skipped < anvil_entries
            && ((e->h_until != 0 && now < e->h_until) || (e->a_until != 0 && now < e->a_until))) {
            anvil_idle_unlink(e);
            anvil_idle_append(e);
            skipped++;
            continue;
        }
        anvil_remove(e);
    }
}

/* smtpd_anvil_init - size the table; a smaller bound evicts at once */
void smtpd_anvil_init(int max_entries)
{
    anvil_max = max_entries > 0 ? max_entries : 1;
    if (anvil_buckets == NULL) {
        if (getrandom(&anvil_seed, sizeof(anvil_seed), GRND_NONBLOCK) != sizeof(anvil_seed))
            anvil_seed = (uint64_t) anvil_now() * 0x9e3779b97f4a7c15ULL ^ (uint64_t) getpid();
        anvil_nbuckets = ANVIL_MIN_BUCKETS;
        anvil_buckets = xcalloc(anvil_nbuckets, sizeof(*anvil_buckets));
    }
    while (anvil_entries > anvil_max && anvil_idle_head != NULL)
        anvil_remove(anvil_idle_head);
}

/* smtpd_anvil_free - drop every entry and the table */
void smtpd_anvil_free(void)
{
    for (size_t i = 0; i < anvil_nbuckets; i++) {
        ANVIL_ENTRY *e = anvil_buckets[i], *next;

        for (; e != NULL; e = next) {
            next = e->hnext;
            free(e);
        }
    }
    free(anvil_buckets);
    anvil_buckets = NULL;
    anvil_nbuckets = 0;
    anvil_entries = 0;
    anvil_idle_head = anvil_idle_tail = NULL;
}

/* anvil_refresh - forget windows that have passed and blocks that ended */
static void anvil_refresh(ANVIL_ENTRY *e, long long now)
{
    long long hw = var_smtpd_harvest_window_ms, aw = var_smtpd_auth_fail_window_ms;

    /* A clock stepped back must not stretch a window or a block. */
    if (e->h_start > now)
        e->h_start = now;
    if (e->a_start > now)
        e->a_start = now;
    if (e->h_until > now + var_smtpd_harvest_block_ms)
        e->h_until = now + var_smtpd_harvest_block_ms;
    if (e->a_until > now + aw)
        e->a_until = now + aw;

    if (e->h_count > 0 && now - e->h_start >= hw)
        e->h_count = 0;
    if (e->a_count > 0 && now - e->a_start >= aw)
        e->a_count = 0;
    if (e->h_until != 0 && now >= e->h_until)
        e->h_until = 0;
    if (e->a_until != 0 && now >= e->a_until)
        e->a_until = 0;
}

/* anvil_empty - e holds nothing worth keeping */
static int anvil_empty(const ANVIL_ENTRY *e)
{
    return e->conns == 0 && e->h_count == 0 && e->a_count == 0
        && e->h_until == 0 && e->a_until == 0;
}

/*
 * anvil_get - the entry of addr, refreshed and marked used now; with
 * create, a new one if there is none (making room first). NULL otherwise.
 */
static ANVIL_ENTRY *anvil_get(const char *addr, long long now, int create)
{
    uint64_t h;
    ANVIL_ENTRY *e;
    size_t len;

    if (anvil_buckets == NULL)
        smtpd_anvil_init(var_smtpd_anvil_size > 0 ? var_smtpd_anvil_size : ANVIL_DEFAULT_MAX);
    h = anvil_hash(addr);
    for (e = anvil_buckets[h & (anvil_nbuckets - 1)]; e != NULL; e = e->hnext)
        if (e->hash == h && strcmp(e->addr, addr) == 0)
            break;
    if (e != NULL) {
        anvil_refresh(e, now);
        e->last = now;
        if (e->conns == 0) {
            anvil_idle_unlink(e);
            anvil_idle_append(e);
        }
        return e;
    }
    if (!create)
        return NULL;
    anvil_evict();
    if ((size_t) anvil_entries >= anvil_nbuckets)
        anvil_grow();
    len = strlen(addr);
    e = xcalloc(1, sizeof(*e) + len + 1);
    memcpy(e->addr, addr, len + 1);
    e->hash = h;
    e->last = now;
    e->hnext = anvil_buckets[h & (anvil_nbuckets - 1)];
    anvil_buckets[h & (anvil_nbuckets - 1)] = e;
    anvil_idle_append(e);
    anvil_entries++;
    return e;
}

/* anvil_forget_if_empty - free an entry with nothing to remember */
static void anvil_forget_if_empty(ANVIL_ENTRY *e)
{
    if (anvil_empty(e))
        anvil_remove(e);
}

/* smtpd_anvil_connect - count a connection, or say why it is refused */
const char *smtpd_anvil_connect(const char *addr)
{
    long long now = anvil_now();
    ANVIL_ENTRY *e = anvil_get(addr, now, 1);

    if (e->h_until != 0) {
        snprintf(anvil_reason, sizeof(anvil_reason),
                 "Service unavailable: too many unknown recipients from %s", addr);
    } else if (e->a_until != 0) {
        snprintf(anvil_reason, sizeof(anvil_reason),
                 "Service unavailable: too many failed AUTH attempts from %s", addr);
    } else if (var_smtpd_maxconn_client > 0 && e->conns >= var_smtpd_maxconn_client) {
        snprintf(anvil_reason, sizeof(anvil_reason), "Too many connections from %s", addr);
    } else {
        if (e->conns++ == 0)
            anvil_idle_unlink(e);
        return NULL;
    }
    anvil_forget_if_empty(e);
    return anvil_reason;
}

/* smtpd_anvil_disconnect - a connection ended; never counts below zero */
void smtpd_anvil_disconnect(const char *addr)
{
    long long now = anvil_now();
    ANVIL_ENTRY *e = anvil_get(addr, now, 0);

    if (e == NULL || e->conns == 0)
        return;
    if (--e->conns == 0)
        anvil_idle_append(e);
    anvil_forget_if_empty(e);
}

/* anvil_cap - a delay in ms, at most SMTPD_ANVIL_DELAY_MAX_MS */
static int anvil_cap(long long ms)
{
    return ms > SMTPD_ANVIL_DELAY_MAX_MS ? SMTPD_ANVIL_DELAY_MAX_MS : (int) ms;
}

/* smtpd_anvil_unknown - count an unknown recipient: the delay, or -1 (blocked) */
int smtpd_anvil_unknown(const char *addr)
{
    long long now = anvil_now();
    ANVIL_ENTRY *e = anvil_get(addr, now, 1);
    int n;

    if (e->h_until != 0)
        return -1;
    if (e->h_count == 0)
        e->h_start = now;
    n = ++e->h_count;
    if (n >= var_smtpd_harvest_limit) {
        log_info("%s: blocked for %d s: %d unknown recipients in %d s", addr,
                 var_smtpd_harvest_block_ms / 1000, n, var_smtpd_harvest_window_ms / 1000);
        e->h_count = 0;
        e->h_until = var_smtpd_harvest_block_ms > 0 ? now + var_smtpd_harvest_block_ms : 0;
        anvil_forget_if_empty(e);
        return -1;
    }
    if (n <= var_smtpd_harvest_free)
        return 0;
    return anvil_cap((long long) var_smtpd_harvest_step_ms * (n - var_smtpd_harvest_free));
}

/* smtpd_anvil_auth_fail - count a failed AUTH: the delay, or -1 (blocked) */
int smtpd_anvil_auth_fail(const char *addr)
{
    long long now = anvil_now();
    ANVIL_ENTRY *e = anvil_get(addr, now, 1);
    int n;

    if (e->a_until != 0)
        return -1;
    if (e->a_count == 0)
        e->a_start = now;
    n = ++e->a_count;
    if (n >= var_smtpd_auth_fail_limit) {
        log_info("%s: blocked for %d s: %d failed AUTH attempts", addr,
                 var_smtpd_auth_fail_window_ms / 1000, n);
        e->a_count = 0;
        e->a_until = now + var_smtpd_auth_fail_window_ms;
        return -1;
    }
    /* delay * 2^(n-1), without overflowing: past 2^20 the cap holds anyway */
    return anvil_cap((long long) var_smtpd_auth_fail_delay_ms << (n - 1 < 20 ? n - 1 : 20));
}

/* smtpd_anvil_count - entries in the table */
int smtpd_anvil_count(void)
{
    return anvil_entries;
}

/* smtpd_anvil_connections - connections addr holds now */
int smtpd_anvil_connections(const char *addr)
{
    ANVIL_ENTRY *e;
    uint64_t h;

    if (anvil_buckets == NULL)
        return 0;
    h = anvil_hash(addr);
    for (e = anvil_buckets[h & (anvil_nbuckets - 1)]; e != NULL; e = e->hnext)
        if (e->hash == h && strcmp(e->addr, addr) == 0)
            return e->conns;
    return 0;
}
