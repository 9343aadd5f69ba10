/*
 * fuzz_common.h - what the libFuzzer targets that drive whole daemons share
 *
 * A private scratch directory (removed at exit), a small real store made
 * once per process, a configuration file loaded through cfg_load(), and
 * the chunk plan: how the fuzz input is cut into the pieces that reach a
 * socket one write at a time. The targets are built only with
 * --enable-fuzzing (clang's libFuzzer).
 */
#ifndef RG_FUZZ_COMMON_H
#define RG_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* fuzz_check - abort unless cond holds (kept in release builds too) */
#define fuzz_check(cond)    do { if (!(cond)) abort(); } while (0)

/* fuzz_dir - this process's scratch directory (made on first use, removed at exit) */
const char *fuzz_dir(void);

/* fuzz_path - a file name inside fuzz_dir() (static buffer per call site: copy it) */
char *fuzz_path(const char *name);

/*
 * fuzz_store - make the store once: example.com (next hop nexthop, may be
 * NULL) with alice, bob, sales (a group) and postmaster; example.org with
 * subdomains and a catch-all. Returns its path (malloc'd).
 */
char *fuzz_store(const char *nexthop);

/* fuzz_config - write text as a config file and load it for sections; aborts on errors */
void fuzz_config(const char *text, const CFG_SECTION *sections);

/*
 * fuzz_quiet - log nothing (libFuzzer's own output stays readable) but
 * check every log line: no control characters reach a log.
 */
void fuzz_quiet(const char *ident);

/*
 * The chunk plan: the first FUZZ_PLAN_LEN bytes of the input are the
 * sizes of the writes, used in turn: 0 is "up to and including the next
 * line feed" (a client that writes line by line), 255 "all that is left",
 * 1..127 are themselves, 128..254 are (n - 127) * 64 bytes (64 to 8128).
 * max_pieces, when a target sets it, makes the piece of that number all
 * that is left: a plan of 1s over a 4 KiB input is otherwise 4,000 writes
 * and as many turns of the loop, and one such input costs what hundreds of
 * short ones do. A split anywhere stays reachable: a plan may start with
 * a long piece and go on in single bytes.
 */
#define FUZZ_PLAN_LEN 4

typedef struct fuzz_chunks {
    const uint8_t *data;
    size_t size, pos;
    uint8_t plan[FUZZ_PLAN_LEN];
    unsigned turn;
    unsigned max_pieces;        /* 0: no limit */
} FUZZ_CHUNKS;

/* fuzz_chunks_init - take the plan off the front of data; 0, or -1 if data is too short */
int fuzz_chunks_init(FUZZ_CHUNKS *ck, const uint8_t *data, size_t size);

/* fuzz_chunks_next - the next piece: 1 with *p, *len, 0 at the end */
int fuzz_chunks_next(FUZZ_CHUNKS *ck, const uint8_t **p, size_t *len);

#endif
