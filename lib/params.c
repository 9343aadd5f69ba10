/*
 * params.c - the parameter tables of rcptgate.conf (see params.h)
 *
 * Defaults are chosen for a gateway that must never bounce real mail:
 * the strict address forms, a short lock wait that turns into "try later"
 * rather than a stuck Postfix, and a socket only the mail system can use.
 */
#include "config.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "addr.h"
#include "listen.h"
#include "log.h"
#include "params.h"
#include "params_rules.h"
#include "paths.h"

#ifndef RG_LOCALSTATEDIR
#define RG_LOCALSTATEDIR "/var"
#endif
#ifndef RG_RUNSTATEDIR
#define RG_RUNSTATEDIR "/run"
#endif

char *var_store_path;
int var_store_busy_ms;

char *var_rcpt_delimiters;
int var_allow_percent;
int var_allow_bang;
int var_allow_route;

char *var_log_level;

char *var_lookupd_socketmap;
char *var_lookupd_policy;
char *var_lookupd_user;
char *var_lookupd_pidfile;
char *var_lookupd_statsfile;
char *var_lookupd_metrics_file;
int var_lookupd_stats_ms;
int var_lookupd_idle_ms;
int var_lookupd_request_ms;
int var_lookupd_maxconn;
char *var_lookupd_socket_mode;
char *var_lookupd_socket_group;
char *var_lookupd_reject_text;

char *var_syncd_user;
char *var_syncd_pidfile;
int var_syncd_poll_ms;
int var_syncd_full_ms;
int var_syncd_retry_ms;
int var_syncd_max_remove_pct;
int var_syncd_max_remove_count;
char *var_syncd_export_file;
char *var_syncd_export_command;
int var_syncd_nice;

int var_store_max_age_ms;

/* params_check_delims - recipient delimiters are punctuation, not letters */
static int params_check_delims(const char *value, char *err, size_t errlen)
{
    for (const char *p = value; *p; p++) {
        if (strchr("+-_=.#&~", *p) == NULL) {
            snprintf(err, errlen, "recipient_delimiter may hold only the characters +-_=.#&~");
            return -1;
        }
    }
    return 0;
}

/* params_check_mode - an octal file mode such as 0660 */
static int params_check_mode(const char *value, char *err, size_t errlen)
{
    size_t n = strlen(value);

    if (n < 3 || n > 4 || strspn(value, "01234567") != n) {
        snprintf(err, errlen, "expected an octal mode such as 0660");
        return -1;
    }
    return 0;
}

/* params_check_group - empty, or a group the system knows */
static int params_check_group(const char *value, char *err, size_t errlen)
{
    if (*value == 0 || getgrnam(value) != NULL)
        return 0;
    snprintf(err, errlen, "group \"%s\" does not exist", value);
    return -1;
}

/*
 * params_check_reject_text - the policy service's text, without the prefix
 * Postfix's smtpd writes itself (this setting's default held it once)
 */
static int params_check_reject_text(const char *value, char *err, size_t errlen)
{
    static const char prefix[] = "Recipient address rejected:";

    if (strncasecmp(value, prefix, sizeof(prefix) - 1) != 0 && value[0] != '<')
        return 0;
    snprintf(err, errlen, "Postfix writes \"<recipient>: %s \" itself; give only the text"
             " after it, such as \"User unknown\"", prefix);
    return -1;
}

static const CFG_PARAM params_store[] = {
    {"path", CFG_PATH, RG_LOCALSTATEDIR "/lib/rcptgate/rcptgate.db", &var_store_path, 0, 0, NULL, NULL},
    {"busy_timeout", CFG_TIME, "2s", &var_store_busy_ms, 1, 60000, NULL, NULL},
    {"max_age", CFG_TIME, "0", &var_store_max_age_ms, 0, 2000000000, NULL, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

static const CFG_PARAM params_address[] = {
    {"recipient_delimiter", CFG_STR, "+", &var_rcpt_delimiters, 0, 0, NULL, params_check_delims},
    {"allow_percent_hack", CFG_BOOL, "no", &var_allow_percent, 0, 0, NULL, NULL},
    {"allow_bang_path", CFG_BOOL, "no", &var_allow_bang, 0, 0, NULL, NULL},
    {"allow_source_route", CFG_BOOL, "no", &var_allow_route, 0, 0, NULL, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

static const CFG_PARAM params_log[] = {
    {"level", CFG_ENUM, "info", &var_log_level, 0, 0, "info|debug", NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

static const CFG_PARAM params_lookupd[] = {
    {"socketmap", CFG_STR | CFG_RESTART, "unix:" RG_RUNSTATEDIR "/rcptgate/socketmap", &var_lookupd_socketmap, 0, 0, NULL, listen_check_list},
    {"policy", CFG_STR | CFG_RESTART, "", &var_lookupd_policy, 0, 0, NULL, listen_check_list},
    {"user", CFG_STR | CFG_RESTART, RG_DEFAULT_USER, &var_lookupd_user, 0, 0, NULL, NULL},
    {"pid_file", CFG_PATH | CFG_RESTART, RG_RUNSTATEDIR "/rcptgate/lookupd.pid", &var_lookupd_pidfile, 0, 0, NULL, NULL},
    {"stats_file", CFG_PATH, RG_LOCALSTATEDIR "/lib/rcptgate/lookupd.stats", &var_lookupd_statsfile, 0, 0, NULL, NULL},
    {"stats_interval", CFG_TIME, "10s", &var_lookupd_stats_ms, 1000, 3600000, NULL, NULL},
    {"metrics_file", CFG_PATH, "", &var_lookupd_metrics_file, 0, 0, NULL, NULL},
    {"idle_timeout", CFG_TIME, "300s", &var_lookupd_idle_ms, 1000, 86400000, NULL, NULL},
    {"request_timeout", CFG_TIME, "10s", &var_lookupd_request_ms, 100, 3600000, NULL, NULL},
    {"max_connections", CFG_INT, "1000", &var_lookupd_maxconn, 1, 100000, NULL, NULL},
    {"socket_mode", CFG_STR | CFG_RESTART, "0660", &var_lookupd_socket_mode, 0, 0, NULL, params_check_mode},
    {"socket_group", CFG_STR | CFG_RESTART, "", &var_lookupd_socket_group, 0, 0, NULL, params_check_group},
    {"reject_text", CFG_STR, "User unknown", &var_lookupd_reject_text, 0, 0, NULL, params_check_reject_text},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

static const CFG_PARAM params_syncd[] = {
    {"user", CFG_STR | CFG_RESTART, RG_DEFAULT_USER, &var_syncd_user, 0, 0, NULL, NULL},
    {"pid_file", CFG_PATH | CFG_RESTART, RG_RUNSTATEDIR "/rcptgate/syncd.pid", &var_syncd_pidfile, 0, 0, NULL, NULL},
    {"poll_interval", CFG_TIME, "5m", &var_syncd_poll_ms, 1000, 86400000, NULL, NULL},
    {"full_interval", CFG_TIME, "1d", &var_syncd_full_ms, 60000, 2000000000, NULL, NULL},
    {"retry_interval", CFG_TIME, "30s", &var_syncd_retry_ms, 1000, 3600000, NULL, NULL},
    {"max_remove_share", CFG_INT, "10", &var_syncd_max_remove_pct, 0, 100, NULL, NULL},
    {"max_remove_count", CFG_INT, "0", &var_syncd_max_remove_count, 0, 2000000000, NULL, NULL},
    {"export_file", CFG_PATH, "", &var_syncd_export_file, 0, 0, NULL, NULL},
    {"export_command", CFG_STR, "", &var_syncd_export_command, 0, 0, NULL, NULL},
    {"nice", CFG_INT, "10", &var_syncd_nice, 0, 19, NULL, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

static const CFG_SECTION params_for_syncd[] = {
    {"store", params_store},
    {"address", params_address},
    {"log", params_log},
    {"syncd", params_syncd},
    {NULL, NULL},
};

static const CFG_SECTION params_for_lookupd[] = {
    {"store", params_store},
    {"address", params_address},
    {"log", params_log},
    {"lookupd", params_lookupd},
    {"rules", params_rules},
    {NULL, NULL},
};

static const CFG_SECTION params_for_all[] = {
    {"store", params_store},
    {"address", params_address},
    {"log", params_log},
    {"lookupd", params_lookupd},
    {"syncd", params_syncd},
    {"rules", params_rules},
    {NULL, NULL},
};

/* params_sections_for - the sections a program owns */
const CFG_SECTION *params_sections_for(const char *program)
{
    if (strcmp(program, "lookupd") == 0)
        return params_for_lookupd;
    if (strcmp(program, "syncd") == 0)
        return params_for_syncd;
    return params_for_all;
}

/* params_table - one shared section's parameter table */
const CFG_PARAM *params_table(const char *section)
{
    if (strcmp(section, "store") == 0)
        return params_store;
    if (strcmp(section, "address") == 0)
        return params_address;
    if (strcmp(section, "log") == 0)
        return params_log;
    if (strcmp(section, "rules") == 0)
        return params_rules;
    return NULL;
}

/* params_check_opts - the [address] settings for check_rcpt() */
void params_check_opts(CHECK_OPTS *opts)
{
    opts->delimiters = var_rcpt_delimiters;
    opts->addr_flags = (var_allow_route ? ADDR_ALLOW_ROUTE : 0)
        | (var_allow_percent ? ADDR_ALLOW_PERCENT : 0)
        | (var_allow_bang ? ADDR_ALLOW_BANG : 0);
}

/* params_in_group - may this process give a file group gid (root, or a member)? */
static int params_in_group(gid_t gid)
{
    gid_t groups[256];
    int n;

    if (geteuid() == 0 || getegid() == gid)
        return 1;
    if ((n = getgroups((int) (sizeof(groups) / sizeof(groups[0])), groups)) < 0)
        return 0;
    for (int i = 0; i < n; i++)
        if (groups[i] == gid)
            return 1;
    return 0;
}

/* params_socket_gid - the group of lookupd's unix sockets; -1 to leave it */
long params_socket_gid(void)
{
    struct passwd *pw;
    struct group *gr;

    if (*var_lookupd_socket_group)
        return (gr = getgrnam(var_lookupd_socket_group)) != NULL ? (long) gr->gr_gid : -2;

    /*
     * Postfix's processes run with the group postfix only: where it exists,
     * that is who asks. Started as the user itself (a service manager's
     * User=), that needs the user to be in the group.
     */
    if ((gr = getgrnam(PARAMS_POSTFIX_GROUP)) != NULL && params_in_group(gr->gr_gid))
        return (long) gr->gr_gid;
    if (geteuid() != 0)
        return -1;
    if (*var_lookupd_user && (pw = getpwnam(var_lookupd_user)) != NULL)
        return (long) pw->pw_gid;
    return -1;
}

/* params_paths - the places a program writes (see paths.h) */
void params_paths(const char *program, int once, PATHS *pl)
{
    int lookupd = strcmp(program, "lookupd") == 0;
    int syncd = strcmp(program, "syncd") == 0;

    /*
     * The daemons cope with a broken store (TEMP); the writers that exit do
     * not. lookupd opens it read-only (lib/keeper.c): it needs to read it,
     * as smtpd does, not to write it.
     */
    if (lookupd)
        paths_add_store_read(pl, 1, var_store_path);
    else
        paths_add_store(pl, !once, var_store_path);
    if (lookupd) {
        paths_add_file_dir(pl, 0, "pid file directory", var_lookupd_pidfile, 0755);
        paths_add_file_dir(pl, 1, "stats file directory", var_lookupd_statsfile, 0750);
        paths_add_listeners(pl, var_lookupd_socketmap);
        paths_add_listeners(pl, var_lookupd_policy);
    }
    if (syncd) {
        if (!once)
            paths_add_file_dir(pl, 0, "pid file directory", var_syncd_pidfile, 0755);
        paths_add_file_dir(pl, 0, "export_file directory", var_syncd_export_file, 0755);
    }
}

/* params_lookupd_listeners - one place named twice in socketmap and policy (params.h) */
int params_lookupd_listeners(const char *conf)
{
    LISTEN_ADDR la[2 * LISTEN_MAX];
    char err[512];
    int n = 0, m, errors = 0;

    if ((m = listen_parse_list(var_lookupd_socketmap, la, LISTEN_MAX, err, sizeof(err))) > 0)
        n = m;
    if ((m = listen_parse_list(var_lookupd_policy, la + n, LISTEN_MAX, err, sizeof(err))) > 0)
        n += m;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (la[i].is_unix == la[j].is_unix
                && (la[i].is_unix ? strcmp(la[i].path, la[j].path) == 0
                    : strcmp(la[i].host, la[j].host) == 0 && strcmp(la[i].port, la[j].port) == 0)) {
                log_err("%s: [lookupd] socketmap and policy name %s%s%s%s twice: give each its own",
                        conf, la[i].is_unix ? "unix:" : "", la[i].is_unix ? la[i].path : la[i].host,
                        la[i].is_unix ? "" : ":", la[i].is_unix ? "" : la[i].port);
                errors++;
            }
    return errors;
}
