/*
 * params.h - every rcptgate.conf parameter, as typed tables and variables
 *
 * As Postfix's mail_params: one place names each parameter, its default
 * and its bounds, and the programs read the variables (var_*). A program
 * passes cfg_load() the sections it owns: params_sections_for("lookupd").
 */
#ifndef RG_PARAMS_H
#define RG_PARAMS_H

#include "cfg.h"
#include "check.h"
#include "paths.h"

/* [store] */
extern char *var_store_path;            /* path: the SQLite file */
extern int var_store_busy_ms;           /* busy_timeout: wait for a lock at most this long */

/* [address] */
extern char *var_rcpt_delimiters;       /* recipient_delimiter, default "+" */
extern int var_allow_percent;           /* allow_percent_hack */
extern int var_allow_bang;              /* allow_bang_path */
extern int var_allow_route;             /* allow_source_route */

/* [log] */
extern char *var_log_level;             /* level: info | debug */

/* [lookupd] */
extern char *var_lookupd_socketmap;     /* socketmap: listeners, comma-separated */
extern char *var_lookupd_policy;        /* policy: listeners, "" = none */
extern char *var_lookupd_user;          /* user: unprivileged user after binding */
extern char *var_lookupd_pidfile;       /* pid_file */
extern char *var_lookupd_statsfile;     /* stats_file */
extern int var_lookupd_stats_ms;        /* stats_interval */
extern char *var_lookupd_metrics_file;  /* metrics_file: Prometheus text for node_exporter, "" = none */
extern int var_lookupd_idle_ms;         /* idle_timeout */
extern int var_lookupd_request_ms;      /* request_timeout: a request must arrive whole within */
extern int var_lookupd_maxconn;         /* max_connections */
extern char *var_lookupd_socket_mode;   /* socket_mode: octal mode of unix sockets */
extern char *var_lookupd_socket_group;  /* socket_group: their group; "" = postfix, else user's */
extern char *var_lookupd_reject_text;   /* policy reject text */

/* [syncd] */
extern char *var_syncd_user;            /* user */
extern char *var_syncd_pidfile;         /* pid_file */
extern int var_syncd_poll_ms;           /* poll_interval: incremental pulls when not persistent */
extern int var_syncd_full_ms;           /* full_interval: full reconciliation */
extern int var_syncd_retry_ms;          /* retry_interval: first wait after a failure (doubles) */
extern int var_syncd_max_remove_pct;    /* max_remove_share: percent of a source's recipients */
extern int var_syncd_max_remove_count;  /* max_remove_count: 0 = no count limit */
extern char *var_syncd_export_file;     /* export_file: Postfix map written after each applied sync */
extern char *var_syncd_export_command;  /* export_command: run after export_file is written */
extern int var_syncd_nice;              /* nice: CPU and I/O priority below lookupd's; 0 = unchanged */

/* [store] max_age: lookupd answers TEMP when the directory data is older; 0 = never */
extern int var_store_max_age_ms;

/*
 * params_sections_for - the sections a program owns: "lookupd", "rcptgate"
 * (the admin command reads them all). The array is static.
 */
const CFG_SECTION *params_sections_for(const char *program);

/*
 * params_table - the parameters of one shared section ("store", "address",
 * "log", "rules"), for a program that builds its own section list (smtpd).
 * NULL for an unknown name.
 */
const CFG_PARAM *params_table(const char *section);

/* params_check_opts - the [address] settings as the rule engine wants them */
void params_check_opts(CHECK_OPTS *opts);

/* The group Postfix's processes run with, the default of socket_group. */
#define PARAMS_POSTFIX_GROUP    "postfix"

/*
 * params_socket_gid - the group lookupd's unix sockets are created with:
 * socket_group if set (-2 if it vanished since the check), else the group
 * postfix where it exists and we may use it (root, or a member), else as
 * root the primary group of [lookupd] user; -1: leave it (our own).
 */
long params_socket_gid(void);

/*
 * params_paths - add the places program ("lookupd", "syncd") writes to
 * pl: the store, and its pid, stats, socket and export directories. once:
 * a run that writes the store and exits (no pid file; the store is not
 * soft).
 */
void params_paths(const char *program, int once, PATHS *pl);

/*
 * params_lookupd_listeners - [lookupd] socketmap and policy must not name
 * one place twice (lookupd would fail at start, binding it twice): the
 * number of such errors, each logged with conf's name
 */
int params_lookupd_listeners(const char *conf);

#endif
