/*
 * params_smtpd.c - the [smtpd] parameter table (see params_smtpd.h)
 *
 * Defaults follow Postfix's smtpd where it has one, and otherwise take
 * the side of never losing mail: a check that cannot decide defers, the
 * harvest tarpit leaves well-behaved clients alone, TLS is offered when a
 * certificate is configured.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "cfg.h"
#include "daemon.h"
#include "listen.h"
#include "params.h"
#include "params_rules.h"
#include "paths.h"
#include "params_smtpd.h"
#include "rules.h"
#include "xalloc.h"

#ifndef RG_LOCALSTATEDIR
#define RG_LOCALSTATEDIR "/var"
#endif
#ifndef RG_RUNSTATEDIR
#define RG_RUNSTATEDIR "/run"
#endif

char *var_smtpd_listen;
char *var_smtpd_banner;
char *var_smtpd_user;
char *var_smtpd_pidfile;
char *var_smtpd_log_file;
char *var_smtpd_syslog_name;
char *var_smtpd_statsfile;
char *var_smtpd_metrics_file;
int var_smtpd_stats_ms;

int var_smtpd_line_limit;
long long var_smtpd_size_limit;
int var_smtpd_hopcount_limit;
int var_smtpd_rcpt_limit;
int var_smtpd_cmd_timeout_ms;
int var_smtpd_session_timeout_ms;
int var_smtpd_min_data_rate;
int var_smtpd_maxconn;
int var_smtpd_maxconn_client;
int var_smtpd_soft_errors;
int var_smtpd_hard_errors;
int var_smtpd_error_sleep_ms;
int var_smtpd_junk_limit;
int var_smtpd_greet_pause_ms;
char *var_smtpd_pregreet;
char *var_smtpd_unauth_pipelining;
char *var_smtpd_bare_newline;
char *var_smtpd_reject_chars;
int var_smtpd_shutdown_ms;
int var_smtpd_smtputf8;
int var_smtpd_received;

char *var_smtpd_tls;
char *var_smtpd_tls_cert;
char *var_smtpd_tls_key;

char *var_smtpd_sasl_path;
char *var_smtpd_sasl_app;
char *var_smtpd_sasl_service;
int var_smtpd_auth_fail_limit;
int var_smtpd_auth_fail_window_ms;
int var_smtpd_auth_fail_delay_ms;

char *var_smtpd_default_nexthop;
char *var_smtpd_relay_tls;
char *var_smtpd_relay_ca;
int var_smtpd_relay_conn_ms;
int var_smtpd_relay_timeout_ms;
int var_smtpd_relay_proxy_ms;
int var_smtpd_xforward;
int var_smtpd_relay_loop_check;

char *var_smtpd_relay_mode;
char *var_smtpd_queue_dir;
long long var_smtpd_queue_minfree;
int var_smtpd_queue_max;
int var_smtpd_queue_lifetime_ms;
int var_smtpd_bounce_lifetime_ms;
int var_smtpd_min_backoff_ms;
int var_smtpd_max_backoff_ms;
int var_smtpd_queue_run_ms;
int var_smtpd_delay_warning_ms;
int var_smtpd_dest_concurrency;
int var_smtpd_active_limit;

char *var_smtpd_dns_servers;
int var_smtpd_dns_timeout_ms;
int var_smtpd_reverse_lookup;

char *var_smtpd_helo_required;
char *var_smtpd_unknown_sender_domain;
int var_smtpd_unknown_reject_code;
char *var_smtpd_dnsbl;
char *var_smtpd_dnsbl_mode;
char *var_smtpd_rhsbl;
char *var_smtpd_rhsbl_mode;

int var_smtpd_harvest_free;
int var_smtpd_harvest_step_ms;
int var_smtpd_harvest_limit;
int var_smtpd_harvest_block_ms;
int var_smtpd_harvest_window_ms;
int var_smtpd_anvil_size;

/* params_smtpd_charset - a message_reject_characters list into a byte table */
int params_smtpd_charset(const char *spec, unsigned char set[256], char *err, size_t errlen)
{
    static const char esc_in[] = "abfnrtv\\", esc_out[] = "\a\b\f\n\r\t\v\\";
    const char *p = spec, *e;
    int n = 0;

    memset(set, 0, 256);
    while (*p) {
        unsigned int c = (unsigned char) *p++;

        if (c == '\\') {
            if (*p >= '0' && *p <= '7') {
                c = 0;
                for (int i = 0; i < 3 && *p >= '0' && *p <= '7'; i++)
                    c = c * 8 + (unsigned int) (*p++ - '0');
                if (c > 255) {
                    snprintf(err, errlen, "octal escape over \\377 in \"%s\"", spec);
                    return -1;
                }
            } else if (*p != 0 && (e = strchr(esc_in, *p)) != NULL) {
                c = (unsigned char) esc_out[e - esc_in];
                p++;
            } else {
                snprintf(err, errlen, "unknown escape \\%c in \"%s\" (\\0, \\ooo, \\a \\b \\f \\n \\r \\t \\v \\\\)",
                         *p ? *p : '?', spec);
                return -1;
            }
        }
        if (!set[c]) {
            set[c] = 1;
            n++;
        }
    }
    return n;
}

#define MODES "enforce|warn|off"

/* params_smtpd_check_chars - message_reject_characters must parse (C escapes) */
static int params_smtpd_check_chars(const char *value, char *err, size_t errlen)
{
    unsigned char set[256];

    if (params_smtpd_charset(value, set, err, errlen) < 0)
        return -1;
    /* The scan sees the message as sent, CRLF and all: these would refuse every message. */
    if (set['\r'] || set['\n']) {
        snprintf(err, errlen, "\\r and \\n end every line of every message: leave them out");
        return -1;
    }
    return 0;
}

/* params_smtpd_key_ok - see params_smtpd.h */
int params_smtpd_key_ok(char *err, size_t errlen)
{
    struct stat sb;

    if (*var_smtpd_tls_key == 0)
        return 0;
    if (stat(var_smtpd_tls_key, &sb) < 0) {
        snprintf(err, errlen, "tls_key_file %s: %s", var_smtpd_tls_key, strerror(errno));
        return -1;
    }
    /* smtpd's own user may own it, as smtpd judges it (smtp_tls.c) */
    cfg_secret_owner(var_smtpd_user);
    return cfg_secret_ok("tls_key_file", var_smtpd_tls_key, &sb, 1, err, errlen) ? 0 : -1;
}

/*
 * params_smtpd_check_listen - each line "HOST:PORT [submission]", as
 * rcptgate-smtpd reads them (smtpd.c), so that every -n refuses what it
 * would refuse at start
 */
static int params_smtpd_check_listen(const char *value, char *err, size_t errlen)
{
    char *copy = xstrdup(value), *save = NULL;
    int rc = 0;

    for (char *line = strtok_r(copy, "\n", &save); line && rc == 0; line = strtok_r(NULL, "\n", &save)) {
        char *wsave = NULL, *spec = strtok_r(line, " \t", &wsave), *word;
        LISTEN_ADDR la;
        char why[256];

        if (spec == NULL)
            continue;
        if (strncmp(spec, "unix:", 5) == 0 || listen_parse(spec, &la, why, sizeof(why)) < 0 || la.is_unix) {
            snprintf(err, errlen, "\"%s\": expected HOST:PORT or [ADDRESS]:PORT, then \"submission\" "
                     "for a port 587 listener", spec);
            rc = -1;
        }
        while (rc == 0 && (word = strtok_r(NULL, " \t", &wsave)) != NULL)
            if (strcmp(word, "submission") != 0) {
                snprintf(err, errlen, "\"%s\": unknown option \"%s\" (only \"submission\")", spec, word);
                rc = -1;
            }
    }
    free(copy);
    return rc;
}

#define PARAMS_SMTPD_ZONES_MAX 16       /* smtpd_dns.c uses as many */

/*
 * params_smtpd_check_zones - dnsbl and rhsbl lines "ZONE[=A.B.C.D] [TEXT]":
 * a reply address that is no IPv4 address would switch the zone off at
 * run time without a word at start
 */
static int params_smtpd_check_zones(const char *value, char *err, size_t errlen)
{
    char *copy = xstrdup(value), *save = NULL;
    int rc = 0, n = 0;

    for (char *line = strtok_r(copy, "\n", &save); line && rc == 0; line = strtok_r(NULL, "\n", &save)) {
        char *zone = line + strspn(line, " \t"), *eq;
        struct in_addr a;
        size_t len;

        if (*zone == 0)
            continue;
        zone[strcspn(zone, " \t")] = 0;
        if (++n > PARAMS_SMTPD_ZONES_MAX) {
            snprintf(err, errlen, "more than %d zones", PARAMS_SMTPD_ZONES_MAX);
            rc = -1;
        } else if ((eq = strchr(zone, '=')) != NULL && (*eq = 0, inet_pton(AF_INET, eq + 1, &a) != 1)) {
            snprintf(err, errlen, "zone %s: the reply \"%s\" is not an IPv4 address (ZONE=127.0.0.2)",
                     zone, eq + 1);
            rc = -1;
        } else {
            for (len = strlen(zone); len > 0 && zone[len - 1] == '.'; len--)
                ;
            if (len == 0 || len > 200) {
                snprintf(err, errlen, "\"%s\": not a zone name", zone);
                rc = -1;
            }
        }
    }
    free(copy);
    return rc;
}

static const CFG_PARAM smtpd_params[] = {
    {"listen", CFG_LIST | CFG_RESTART, "0.0.0.0:25", &var_smtpd_listen, 0, 0, NULL, params_smtpd_check_listen},
    {"banner", CFG_STR, "ESMTP", &var_smtpd_banner, 0, 0, NULL, NULL},
    {"user", CFG_STR | CFG_RESTART, RG_DEFAULT_USER, &var_smtpd_user, 0, 0, NULL, NULL},
    {"pid_file", CFG_PATH | CFG_RESTART, RG_RUNSTATEDIR "/rcptgate/smtpd.pid", &var_smtpd_pidfile, 0, 0, NULL, NULL},
    {"log_file", CFG_PATH, "", &var_smtpd_log_file, 0, 0, NULL, NULL},
    {"syslog_name", CFG_STR | CFG_RESTART, "postfix-rcptgate", &var_smtpd_syslog_name, 0, 0, NULL, NULL},
    {"stats_file", CFG_PATH, RG_LOCALSTATEDIR "/lib/rcptgate/smtpd.stats", &var_smtpd_statsfile, 0, 0, NULL, NULL},
    {"stats_interval", CFG_TIME, "10s", &var_smtpd_stats_ms, 1000, 3600000, NULL, NULL},
    {"metrics_file", CFG_PATH, "", &var_smtpd_metrics_file, 0, 0, NULL, NULL},

    {"line_length_limit", CFG_INT, "2048", &var_smtpd_line_limit, 512, 1000000, NULL, NULL},
    {"message_size_limit", CFG_SIZE, "10240000", &var_smtpd_size_limit, 1000, 4000000000LL, NULL, NULL},
    {"recipient_limit", CFG_INT, "1000", &var_smtpd_rcpt_limit, 100, 100000, NULL, NULL},
    {"command_timeout", CFG_TIME, "300s", &var_smtpd_cmd_timeout_ms, 100, 3600000, NULL, NULL},
    {"session_timeout", CFG_TIME, "1h", &var_smtpd_session_timeout_ms, 1000, 86400000, NULL, NULL},
    {"min_data_rate", CFG_INT, "500", &var_smtpd_min_data_rate, 0, 100000000, NULL, NULL},
    {"max_connections", CFG_INT, "10000", &var_smtpd_maxconn, 1, 1000000, NULL, NULL},
    {"max_connections_per_client", CFG_INT, "50", &var_smtpd_maxconn_client, 0, 1000000, NULL, NULL},
    {"soft_error_limit", CFG_INT, "10", &var_smtpd_soft_errors, 0, 1000, NULL, NULL},
    {"hard_error_limit", CFG_INT, "20", &var_smtpd_hard_errors, 1, 1000, NULL, NULL},
    {"error_sleep_time", CFG_TIME, "1s", &var_smtpd_error_sleep_ms, 0, 60000, NULL, NULL},
    {"junk_command_limit", CFG_INT, "100", &var_smtpd_junk_limit, 1, 100000, NULL, NULL},
    {"greet_pause", CFG_TIME, "0", &var_smtpd_greet_pause_ms, 0, 60000, NULL, NULL},
    {"reject_pregreet", CFG_ENUM, "enforce", &var_smtpd_pregreet, 0, 0, MODES, NULL},
    {"reject_unauth_pipelining", CFG_ENUM, "enforce", &var_smtpd_unauth_pipelining, 0, 0, MODES, NULL},
    {"bare_newline", CFG_ENUM, "reject", &var_smtpd_bare_newline, 0, 0, "reject|normalize", NULL},
    {"hopcount_limit", CFG_INT, "50", &var_smtpd_hopcount_limit, 0, 1000, NULL, NULL},
    {"message_reject_characters", CFG_STR, "\\0", &var_smtpd_reject_chars, 0, 0, NULL, params_smtpd_check_chars},
    {"shutdown_timeout", CFG_TIME, "60s", &var_smtpd_shutdown_ms, 0, 3600000, NULL, NULL},
    {"smtputf8", CFG_BOOL, "yes", &var_smtpd_smtputf8, 0, 0, NULL, NULL},
    {"received_header", CFG_BOOL, "yes", &var_smtpd_received, 0, 0, NULL, NULL},

    {"tls", CFG_ENUM, "may", &var_smtpd_tls, 0, 0, "none|may", NULL},
    {"tls_cert_file", CFG_PATH, "", &var_smtpd_tls_cert, 0, 0, NULL, NULL},
    {"tls_key_file", CFG_PATH, "", &var_smtpd_tls_key, 0, 0, NULL, NULL},

    {"sasl_config_dir", CFG_PATH | CFG_RESTART, "", &var_smtpd_sasl_path, 0, 0, NULL, NULL},
    {"sasl_app_name", CFG_STR | CFG_RESTART, "rcptgate-smtpd", &var_smtpd_sasl_app, 0, 0, NULL, NULL},
    {"sasl_service", CFG_STR, "smtp", &var_smtpd_sasl_service, 0, 0, NULL, NULL},
    {"auth_failure_limit", CFG_INT, "5", &var_smtpd_auth_fail_limit, 1, 100000, NULL, NULL},
    {"auth_failure_window", CFG_TIME, "10m", &var_smtpd_auth_fail_window_ms, 1000, 86400000, NULL, NULL},
    {"auth_failure_delay", CFG_TIME, "1s", &var_smtpd_auth_fail_delay_ms, 0, 60000, NULL, NULL},

    {"default_nexthop", CFG_STR, "", &var_smtpd_default_nexthop, 0, 0, NULL, NULL},
    {"relay_tls", CFG_ENUM, "may", &var_smtpd_relay_tls, 0, 0, "none|may|encrypt|verify", NULL},
    {"relay_ca_file", CFG_PATH, "", &var_smtpd_relay_ca, 0, 0, NULL, NULL},
    {"relay_connect_timeout", CFG_TIME, "30s", &var_smtpd_relay_conn_ms, 100, 600000, NULL, NULL},
    {"relay_timeout", CFG_TIME, "300s", &var_smtpd_relay_timeout_ms, 100, 3600000, NULL, NULL},
    {"relay_proxy_timeout", CFG_TIME, "100s", &var_smtpd_relay_proxy_ms, 1000, 3600000, NULL, NULL},
    {"xforward", CFG_BOOL, "yes", &var_smtpd_xforward, 0, 0, NULL, NULL},
    {"relay_loop_check", CFG_BOOL, "yes", &var_smtpd_relay_loop_check, 0, 0, NULL, NULL},

    {"relay_mode", CFG_ENUM, "proxy-then-queue", &var_smtpd_relay_mode, 0, 0, "proxy|queue|proxy-then-queue", NULL},
    {"queue_directory", CFG_PATH | CFG_RESTART, "/var/spool/rcptgate", &var_smtpd_queue_dir, 0, 0, NULL, NULL},
    {"queue_minfree", CFG_SIZE, "100m", &var_smtpd_queue_minfree, 0, 0, NULL, NULL},
    {"queue_max_messages", CFG_INT, "100000", &var_smtpd_queue_max, 1, 100000000, NULL, NULL},
    {"maximal_queue_lifetime", CFG_TIME, "5d", &var_smtpd_queue_lifetime_ms, 1000, 2000000000, NULL, NULL},
    {"bounce_queue_lifetime", CFG_TIME, "5d", &var_smtpd_bounce_lifetime_ms, 1000, 2000000000, NULL, NULL},
    {"minimal_backoff_time", CFG_TIME, "300s", &var_smtpd_min_backoff_ms, 100, 86400000, NULL, NULL},
    {"maximal_backoff_time", CFG_TIME, "4000s", &var_smtpd_max_backoff_ms, 100, 86400000, NULL, NULL},
    {"queue_run_delay", CFG_TIME, "300s", &var_smtpd_queue_run_ms, 100, 86400000, NULL, NULL},
    {"delay_warning_time", CFG_TIME, "0", &var_smtpd_delay_warning_ms, 0, 2000000000, NULL, NULL},
    {"destination_concurrency_limit", CFG_INT, "20", &var_smtpd_dest_concurrency, 1, 1000, NULL, NULL},
    {"queue_active_limit", CFG_INT, "1000", &var_smtpd_active_limit, 1, 1000000, NULL, NULL},

    {"dns_servers", CFG_STR | CFG_RESTART, "", &var_smtpd_dns_servers, 0, 0, NULL, NULL},
    {"dns_timeout", CFG_TIME | CFG_RESTART, "5s", &var_smtpd_dns_timeout_ms, 100, 60000, NULL, NULL},
    {"reverse_lookup", CFG_BOOL, "yes", &var_smtpd_reverse_lookup, 0, 0, NULL, NULL},

    {"helo_required", CFG_ENUM, "enforce", &var_smtpd_helo_required, 0, 0, MODES, NULL},
    {"reject_unknown_sender_domain", CFG_ENUM, "enforce", &var_smtpd_unknown_sender_domain, 0, 0, MODES, NULL},
    {"unknown_address_reject_code", CFG_INT, "450", &var_smtpd_unknown_reject_code, 400, 599, NULL, NULL},
    {"dnsbl", CFG_LIST, "", &var_smtpd_dnsbl, 0, 0, NULL, params_smtpd_check_zones},
    {"dnsbl_mode", CFG_ENUM, "enforce", &var_smtpd_dnsbl_mode, 0, 0, MODES, NULL},
    {"rhsbl", CFG_LIST, "", &var_smtpd_rhsbl, 0, 0, NULL, params_smtpd_check_zones},
    {"rhsbl_mode", CFG_ENUM, "enforce", &var_smtpd_rhsbl_mode, 0, 0, MODES, NULL},

    {"harvest_threshold", CFG_INT, "3", &var_smtpd_harvest_free, 0, 100000, NULL, NULL},
    {"harvest_delay", CFG_TIME, "1s", &var_smtpd_harvest_step_ms, 0, 60000, NULL, NULL},
    {"harvest_limit", CFG_INT, "20", &var_smtpd_harvest_limit, 1, 1000000, NULL, NULL},
    {"harvest_block_time", CFG_TIME, "10m", &var_smtpd_harvest_block_ms, 0, 86400000, NULL, NULL},
    {"harvest_window", CFG_TIME, "10m", &var_smtpd_harvest_window_ms, 1000, 86400000, NULL, NULL},
    {"client_table_size", CFG_INT, "100000", &var_smtpd_anvil_size, 100, 10000000, NULL, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

/* smtpd_mode - a check's mode, with warn_if_reject applied */
enum smtpd_mode smtpd_mode(const char *value)
{
    return (enum smtpd_mode) rules_mode(value);         /* [rules] warn_if_reject */
}

/* params_smtpd_table - the [smtpd] parameters */
const CFG_PARAM *params_smtpd_table(void)
{
    return smtpd_params;
}

/* params_smtpd_sections - [store], [address], [log], [rules] and [smtpd] */
const CFG_SECTION *params_smtpd_sections(void)
{
    static CFG_SECTION sections[6];

    if (sections[0].name == NULL) {
        sections[0] = (CFG_SECTION) {"store", params_table("store")};
        sections[1] = (CFG_SECTION) {"address", params_table("address")};
        sections[2] = (CFG_SECTION) {"log", params_table("log")};
        sections[3] = (CFG_SECTION) {"rules", params_rules_table()};
        sections[4] = (CFG_SECTION) {"smtpd", smtpd_params};
    }
    return sections;
}

/* params_smtpd_paths - the places rcptgate-smtpd writes (see paths.h) */
void params_smtpd_paths(PATHS *pl)
{
    /* smtpd only reads the store: it may run as a user that cannot write it */
    paths_add_store_read(pl, 1, var_store_path);
    paths_add_file_dir(pl, 0, "pid file directory", var_smtpd_pidfile, 0755);
    paths_add_file_dir(pl, 1, "stats file directory", var_smtpd_statsfile, 0750);
    if (*var_smtpd_queue_dir && access(var_smtpd_queue_dir, F_OK) == 0) {
        /*
         * The spool (smtpd_qmgr.c), when it is there: smtpd's user must
         * write it. Soft: without it smtpd relays as a proxy only. A
         * missing one is not a problem here: smtpd makes it when its
         * parent lets it, else says so at start (and `rcptgate check`).
         */
        paths_add(pl, PATHS_DIR_WRITE | PATHS_SOFT, "queue directory", var_smtpd_queue_dir, 0700);
    }
    /*
     * Loaded as root at start, but read again as the user by each reload
     * (SIGHUP, as after a certificate renewal): a key only root can read
     * starts fine, then every reload keeps the old certificate. A warning,
     * -n included: smtpd works, a renewal will not take.
     */
    paths_add(pl, PATHS_FILE_READ | PATHS_ADVISE, "tls_key_file (read again as the user at each reload)",
              var_smtpd_tls_key, 0);
    paths_add(pl, PATHS_FILE_READ | PATHS_ADVISE | PATHS_PUBLIC,
              "tls_cert_file (read again as the user at each reload)", var_smtpd_tls_cert, 0);
    paths_add(pl, PATHS_FILE_READ | PATHS_ADVISE | PATHS_PUBLIC,
              "relay_ca_file (read again as the user at each reload)", var_smtpd_relay_ca, 0);
    if (*var_smtpd_log_file) {
        /* Opened as root at start, reopened as the user after a SIGHUP (log rotation). */
        char *dir = xstrdup(var_smtpd_log_file);
        char *slash = strrchr(dir, '/');

        if (slash != NULL && slash != dir) {
            *slash = 0;
            paths_add(pl, PATHS_DIR_EXISTS, "log_file directory", dir, 0755);
        }
        free(dir);
        paths_add(pl, PATHS_FILE_WRITE, "log_file", var_smtpd_log_file, 0);
    }
}
