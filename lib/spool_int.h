/*
 * spool_int.h - what spool.c and spool_text.c share: the fixed start of a
 * queue file, and the texts spool_text.c makes and reads (no one else
 * includes this; lib/spool.h is the queue's interface)
 */
#ifndef RG_SPOOL_INT_H
#define RG_SPOOL_INT_H

#include <stddef.h>

#include "spool.h"

/* The first three lines, at fixed offsets: the flag and the size are written in place. */
#define SPOOL_MAGIC         "rcptgate-queue 1\n"
#define SPOOL_WARNED        "warned "
#define SPOOL_SIZE          "size "
#define SPOOL_SIZE_DIGITS   20
#define SPOOL_WARNED_OFF    ((long long) sizeof(SPOOL_MAGIC) - 1 + (long long) sizeof(SPOOL_WARNED) - 1)
#define SPOOL_SIZE_OFF      (SPOOL_WARNED_OFF + 2 + (long long) sizeof(SPOOL_SIZE) - 1)

/*
 * spool_text_envelope - env's envelope text, up to and with its blank
 * line, its size 0 (spool_commit writes it); *len its length, and off[i]
 * recipient i's state byte (off holds env->nrcpt). Never fails.
 */
char *spool_text_envelope(const SPOOL_ENV *env, long long *off, size_t *len);

/*
 * spool_text_parse_envelope - an envelope text (NUL-terminated, hlen bytes
 * with the blank line) of the file named id into env: 0, or -1 with err
 * and env freed. Each recipient's offset is its state byte's.
 */
int spool_text_parse_envelope(const char *id, const char *text, size_t hlen, SPOOL_ENV *env,
                              char *err, size_t errlen);

/* spool_text_reasons - the defer/ file's text for env; *len its length. Never fails. */
char *spool_text_reasons(const SPOOL_ENV *env, size_t *len);

/*
 * spool_text_parse_reasons - a defer/ file's n bytes (buf holds n + 1:
 * lines are cut in place) into env's attempts and recipients' dsn and
 * reason. Best effort: a line that does not parse is skipped.
 */
void spool_text_parse_reasons(char *buf, size_t n, SPOOL_ENV *env);

#endif
