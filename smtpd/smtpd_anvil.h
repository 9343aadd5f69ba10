/*
 * smtpd_anvil.h - per-client-IP counters that outlive a connection
 *
 * Like Postfix's anvil, but in-process: how many connections each client
 * address holds now, how many unknown recipients it asked for lately
 * (directory harvest protection: a growing delay, then 421 and a block)
 * and how many AUTH attempts failed. Memory is bounded by [smtpd]
 * client_table_size: when full, the entry idle longest is dropped (a
 * client holding connections is never dropped). Times come from the
 * event loop's cached clock.
 *
 * Counts are kept per window: a counter starts with its first event and
 * is forgotten harvest_window (auth_failure_window) later. A delay never
 * exceeds SMTPD_ANVIL_DELAY_MAX_MS.
 */
#ifndef RG_SMTPD_ANVIL_H
#define RG_SMTPD_ANVIL_H

/* The longest delay smtpd_anvil_unknown / smtpd_anvil_auth_fail ask for. */
#define SMTPD_ANVIL_DELAY_MAX_MS 10000

/* smtpd_anvil_init - size the table (call again after reload; counters kept) */
void smtpd_anvil_init(int max_entries);

/*
 * smtpd_anvil_connect - count a new connection from addr. 0: go on;
 * else a 421 reason for the banner ("Too many connections from ...",
 * "Service unavailable: too many unknown recipients ...") and nothing
 * counted. Checks max_connections_per_client and the harvest/auth blocks.
 * The reason has no code: the session sends "421 4.7.0 <hostname>
 * <reason>". It lives until the next call into this module.
 */
const char *smtpd_anvil_connect(const char *addr);

/* smtpd_anvil_disconnect - a connection from addr ended */
void smtpd_anvil_disconnect(const char *addr);

/*
 * smtpd_anvil_unknown - addr asked for an unknown recipient. Returns the
 * delay in ms before answering it (0 for the first harvest_threshold in
 * harvest_window), or -1: the limit is reached, answer 421 and block addr
 * for harvest_block_time.
 *
 * Unknown number n of the window (1-based): n <= harvest_threshold: 0;
 * n < harvest_limit: harvest_delay * (n - harvest_threshold), at most
 * SMTPD_ANVIL_DELAY_MAX_MS; n >= harvest_limit (or addr already blocked):
 * -1, and the count starts again after the block.
 */
int smtpd_anvil_unknown(const char *addr);

/*
 * smtpd_anvil_auth_fail - an AUTH attempt from addr failed. Returns the
 * delay in ms before answering (auth_failure_delay, doubling), or -1: the
 * limit is reached, answer 421 and block addr for auth_failure_window.
 *
 * Failure number n of the window: n < auth_failure_limit: delay *
 * 2^(n-1), at most SMTPD_ANVIL_DELAY_MAX_MS; else -1.
 */
int smtpd_anvil_auth_fail(const char *addr);

/* smtpd_anvil_count - entries in the table now (for tests and stats) */
int smtpd_anvil_count(void);

/* smtpd_anvil_connections - connections addr holds now (for tests and stats) */
int smtpd_anvil_connections(const char *addr);

/*
 * smtpd_anvil_set_clock - for tests: pretend it is now_ms (milliseconds
 * of any epoch, never going back); a negative value returns to the real
 * clock.
 */
void smtpd_anvil_set_clock(long long now_ms);

/* smtpd_anvil_free - drop the table (at exit; init makes a new one) */
void smtpd_anvil_free(void);

#endif
