/*
 * params_smtpd.h - the [smtpd] section of rcptgate.conf, as variables
 *
 * One table (params_smtpd.c) names each parameter, its default and its
 * bounds; the parts of rcptgate-smtpd read these variables. It lives in lib/ so that
 * the admin command's -n checks [smtpd] without linking smtpd. The defaults
 * are Postfix's where Postfix has one, so a postmaster who knows main.cf
 * finds no surprise. Strings belong to cfg and change on reload: do not
 * keep pointers to them across a SIGHUP.
 */
#ifndef RG_PARAMS_SMTPD_H
#define RG_PARAMS_SMTPD_H

#include "cfg.h"
#include "paths.h"

/* Listeners and identity. */
extern char *var_smtpd_listen;          /* listen: repeatable "HOST:PORT [submission]" ('\n'-joined) */
extern char *var_smtpd_banner;          /* banner: text after "220 hostname " */
extern char *var_smtpd_user;            /* user: unprivileged user after binding */
extern char *var_smtpd_pidfile;         /* pid_file */
extern char *var_smtpd_log_file;        /* log_file: also write syslog-format lines here ("" none) */
extern char *var_smtpd_syslog_name;     /* syslog_name: lines read "<syslog_name>/smtpd[pid]: ..." */
extern char *var_smtpd_statsfile;       /* stats_file */
extern int var_smtpd_stats_ms;          /* stats_interval: how often stats_file is rewritten */
extern char *var_smtpd_metrics_file;    /* metrics_file: Prometheus text for node_exporter, "" = none */

/* Limits (Postfix's names in comments). */
extern int var_smtpd_line_limit;        /* line_length_limit (2048): longer command -> 500 5.5.2 */
extern long long var_smtpd_size_limit;  /* message_size_limit (10240000) -> 552 5.3.4 */
extern int var_smtpd_hopcount_limit;    /* hopcount_limit (50; 0 none): Received: fields -> 554 5.4.0 */
extern int var_smtpd_rcpt_limit;        /* recipient_limit (smtpd_recipient_limit 1000) -> 452 4.5.3 */
extern int var_smtpd_cmd_timeout_ms;    /* command_timeout (smtpd_timeout 300s) */
extern int var_smtpd_session_timeout_ms;/* session_timeout: a whole session at most */
extern int var_smtpd_min_data_rate;     /* min_data_rate (smtpd_min_data_rate 500 bytes/s), 0 = off */
extern int var_smtpd_maxconn;           /* max_connections: in total -> 421 */
extern int var_smtpd_maxconn_client;    /* max_connections_per_client (50) -> 421 */
extern int var_smtpd_soft_errors;       /* soft_error_limit (10): then each reply is delayed */
extern int var_smtpd_hard_errors;       /* hard_error_limit (20): then 421 and disconnect */
extern int var_smtpd_error_sleep_ms;    /* error_sleep_time (1s): the soft-error delay */
extern int var_smtpd_junk_limit;        /* junk_command_limit (100): NOOP/RSET/VRFY/HELP */
extern int var_smtpd_greet_pause_ms;    /* greet_pause: wait before the banner; talkers are rejected */
extern char *var_smtpd_pregreet;        /* reject_pregreet: enforce|warn|off */
extern char *var_smtpd_unauth_pipelining; /* reject_unauth_pipelining: enforce|warn|off */
extern char *var_smtpd_bare_newline;    /* bare_newline: reject|normalize */
extern char *var_smtpd_reject_chars;    /* message_reject_characters: C escapes, default \0 */
extern int var_smtpd_shutdown_ms;       /* shutdown_timeout: SIGTERM lets sessions finish this long */
extern int var_smtpd_smtputf8;          /* smtputf8: offer SMTPUTF8 */
extern int var_smtpd_received;          /* received_header: add one Received: header */

/* TLS (server side). */
extern char *var_smtpd_tls;             /* tls: none|may (port 25: offer STARTTLS) */
extern char *var_smtpd_tls_cert;        /* tls_cert_file (PEM, may hold the chain) */
extern char *var_smtpd_tls_key;         /* tls_key_file (PEM, mode 0600 or 0400, not world readable) */

/* SASL AUTH (submission listeners, after STARTTLS). */
extern char *var_smtpd_sasl_path;       /* sasl_config_dir: where <sasl_app_name>.conf is ("" = Cyrus default) */
extern char *var_smtpd_sasl_app;        /* sasl_app_name: "rcptgate-smtpd" */
extern char *var_smtpd_sasl_service;    /* sasl_service: "smtp" */
extern int var_smtpd_auth_fail_limit;   /* auth_failure_limit (5 per client IP in auth_failure_window) -> 421 */
extern int var_smtpd_auth_fail_window_ms; /* auth_failure_window (10m) */
extern int var_smtpd_auth_fail_delay_ms;/* auth_failure_delay (1s), doubled per failure */

/* Relaying to the next hop. */
extern char *var_smtpd_default_nexthop; /* default_nexthop: for domains without one ("" = 451) */
extern char *var_smtpd_relay_tls;       /* relay_tls: none|may|encrypt|verify */
extern char *var_smtpd_relay_ca;        /* relay_ca_file ("" = system store) */
extern int var_smtpd_relay_conn_ms;     /* relay_connect_timeout (30s) */
extern int var_smtpd_relay_timeout_ms;  /* relay_timeout (300s) per downstream reply */
extern int var_smtpd_relay_proxy_ms;    /* relay_proxy_timeout (100s): a waiting client, to the first RCPT's reply */
extern int var_smtpd_xforward;          /* xforward: pass client name/addr/helo when offered */
extern int var_smtpd_relay_loop_check;  /* relay_loop_check: a hop greeting with our name is a loop */

/* The queue (relay_mode queue and proxy-then-queue; Postfix's names where it has one). */
extern char *var_smtpd_relay_mode;      /* relay_mode: proxy|queue|proxy-then-queue (per domain too) */
extern char *var_smtpd_queue_dir;       /* queue_directory (/var/spool/rcptgate), smtpd's user, 0700 */
extern long long var_smtpd_queue_minfree; /* queue_minfree (100m): free space kept, else 452 4.3.1 */
extern int var_smtpd_queue_max;         /* queue_max_messages (100000): then new mail hears 452 4.3.1 */
extern int var_smtpd_queue_lifetime_ms; /* maximal_queue_lifetime (5d): then returned to the sender */
extern int var_smtpd_bounce_lifetime_ms;/* bounce_queue_lifetime (5d): for a DSN we made */
extern int var_smtpd_min_backoff_ms;    /* minimal_backoff_time (300s) */
extern int var_smtpd_max_backoff_ms;    /* maximal_backoff_time (4000s) */
extern int var_smtpd_queue_run_ms;      /* queue_run_delay (300s): how often deferred/ is scanned */
extern int var_smtpd_delay_warning_ms;  /* delay_warning_time (0 = off) */
extern int var_smtpd_dest_concurrency;  /* destination_concurrency_limit (20): deliveries per next hop */
extern int var_smtpd_active_limit;      /* queue_active_limit (1000): messages in memory at once */

/* DNS. */
extern char *var_smtpd_dns_servers;     /* dns_servers: "127.0.0.1:5353,..." ("" = /etc/resolv.conf) */
extern int var_smtpd_dns_timeout_ms;    /* dns_timeout (5s): a lookup gives up, never rejects */
extern int var_smtpd_reverse_lookup;    /* reverse_lookup: PTR + forward confirmation of clients */

/*
 * Checks: each "enforce", "warn" (log reject_warning, accept) or "off".
 * The rules every front end shares are [rules] (params_rules.h); these
 * are smtpd's own (the session, and the rules that need DNS).
 */
extern char *var_smtpd_helo_required;   /* helo_required */
extern char *var_smtpd_unknown_sender_domain; /* reject_unknown_sender_domain */
extern int var_smtpd_unknown_reject_code;       /* unknown_address_reject_code (Postfix's, 450) */
extern char *var_smtpd_dnsbl;           /* dnsbl: repeatable "ZONE[=127.0.0.N] reply text" */
extern char *var_smtpd_dnsbl_mode;      /* dnsbl_mode */
extern char *var_smtpd_rhsbl;           /* rhsbl: repeatable "ZONE[=127.0.0.N] reply text" (sender domain) */
extern char *var_smtpd_rhsbl_mode;      /* rhsbl_mode */

/* Directory harvest protection (per client IP, across connections). */
extern int var_smtpd_harvest_free;      /* harvest_threshold (3): unknown recipients answered at once */
extern int var_smtpd_harvest_step_ms;   /* harvest_delay (1s): added per unknown past the threshold */
extern int var_smtpd_harvest_limit;     /* harvest_limit (20): then 421 and refused */
extern int var_smtpd_harvest_block_ms;  /* harvest_block_time (10m) */
extern int var_smtpd_harvest_window_ms; /* harvest_window (10m): counts fade after this */
extern int var_smtpd_anvil_size;        /* client_table_size (100000): per-IP entries kept at most */

/* The modes of the checks. */
enum smtpd_mode { SMTPD_OFF = 0, SMTPD_WARN = 1, SMTPD_ENFORCE = 2 };

/*
 * smtpd_mode - a check's mode from its parameter string, with
 * [rules] warn_if_reject applied (an enforcing check becomes warn-only).
 */
enum smtpd_mode smtpd_mode(const char *value);

/* params_smtpd_table - the [smtpd] table alone (for the admin command's -n and stats) */
const CFG_PARAM *params_smtpd_table(void);

/* params_smtpd_sections - the sections rcptgate-smtpd reads (static array) */
const CFG_SECTION *params_smtpd_sections(void);

/*
 * params_smtpd_paths - add the places rcptgate-smtpd writes to pl: the
 * store (soft), the pid and stats directories, log_file and its directory.
 */
void params_smtpd_paths(PATHS *pl);

/*
 * params_smtpd_charset - parse a character list as Postfix writes
 * message_reject_characters: plain bytes and C escapes (\0 or \ooo octal,
 * \a \b \f \n \r \t \v, \\); set[c] becomes 1 for each. Returns
 * how many were named, or -1 with err set for a bad escape.
 */
int params_smtpd_charset(const char *spec, unsigned char set[256], char *err, size_t errlen);

/*
 * params_smtpd_key_ok - rcptgate -n: tls_key_file as rcptgate-smtpd
 * judges it at start (smtp_tls.c: a regular file of root's or [smtpd]
 * user's, closed to others, 0640 for a group of its own), so that the
 * whole-file check refuses what smtpd would. 0, or -1 with err set.
 * (It sets cfg_secret_owner to [smtpd] user.)
 */
int params_smtpd_key_ok(char *err, size_t errlen);

#endif
