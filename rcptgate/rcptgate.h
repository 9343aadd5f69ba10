/*
 * rcptgate.h - what the admin command's subcommands share
 *
 * rcptgate.c holds main (options, configuration, dispatch) and the helpers
 * below; each subcommand lives in its own cmd_NAME.c as cmd_NAME(argc,
 * argv), with argv[0] the subcommand's name, and returns the exit status.
 */
#ifndef RG_RCPTGATE_H
#define RG_RCPTGATE_H

#include <stddef.h>

#include "addr.h"
#include "log.h"
#include "store.h"

/* Exit status (see rcptgate(8)); usage and config are RG_EX_USAGE, RG_EX_CONFIG. */
#define RCPTGATE_EX_OK          0
#define RCPTGATE_EX_NOTFOUND    1       /* not found, or bad input */
#define RCPTGATE_EX_STORE       2       /* the store failed */
#define RCPTGATE_EX_REFUSED     65      /* import: the shrink guard refused (as rcptgate-syncd) */
#define RCPTGATE_EX_UNAVAILABLE 69      /* queue flush: smtpd does not listen (as postqueue -f) */

/* -v given */
extern int rcptgate_verbose;

/* the configuration file read (-c) */
extern const char *rcptgate_conf_path;

/* rcptgate_error - "rcptgate: ..." on stderr */
void rcptgate_error(const char *fmt, ...) RG_PRINTF(1, 2);

/* rcptgate_usage - the usage text on stderr; returns RG_EX_USAGE */
int rcptgate_usage(void);

/*
 * rcptgate_store - open the configured store (flags: STORE_CREATE for
 * the subcommands that write). NULL after printing why.
 */
STORE *rcptgate_store(int flags);

/*
 * rcptgate_act_as - as root, become [syncd] user (checked first: it must
 * be able to write the store's directory and files); done by
 * rcptgate_store(). 0, or -1 with the problems and their fixes printed.
 */
int rcptgate_act_as(void);

/*
 * rcptgate_key - addr_key() with the [address] flags, a catch-all
 * "@domain" allowed: a store key as the lookups will ask for it. out
 * holds ADDR_KEY_SIZE. 0, or -1 with "\"IN\": reason" in err.
 */
int rcptgate_key(const char *in, char *out, char *err, size_t errlen);

/* rcptgate_time - unix time as ISO 8601 UTC ("never" for 0) */
const char *rcptgate_time(long long t, char *buf, size_t size);

/* The subcommands. */
int cmd_query(int argc, char **argv);
int cmd_query_rules(int argc, char **argv);    /* query with --client, --helo, --sender, --login */
int cmd_import(int argc, char **argv);
int cmd_domain(int argc, char **argv);
int cmd_static(int argc, char **argv);
int cmd_source(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_access(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_queue(int argc, char **argv);

/* cmd_check_config_failed - rcptgate check's UNKNOWN line for a configuration that does not load */
int cmd_check_config_failed(const char *path);

#endif
