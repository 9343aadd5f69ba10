/*
 * rcptgate.c - the admin command: options, configuration, dispatch
 *
 *   rcptgate [-c FILE] [-n] [-v] SUBCOMMAND [ARGS]
 *
 * Reads rcptgate.conf (all sections), then runs one subcommand, each in
 * its own cmd_NAME.c. Subcommands that write open the store with
 * STORE_CREATE (and so create and migrate a new one); the others open it
 * as lookupd does and fail if it is missing.
 *
 * Exit status: 0 success, 1 not found or bad input, 2 store (or queue)
 * failure, 64 usage, 65 an import refused by the shrink guard, 69 a queue
 * flush nobody listens to, 78 configuration. Messages go to stderr as "rcptgate: ...".
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "cfg.h"
#include "daemon.h"
#include "log.h"
#include "params.h"
#include "paths.h"
#include "rcptgate.h"
#include "params_smtpd.h"
#include "params_source.h"
#include "rules.h"

int rcptgate_verbose;
const char *rcptgate_conf_path;

/* The subcommands, as typed. */
static const struct rcptgate_cmd {
    const char *name;
    int (*fn)(int, char **);
} rcptgate_cmds[] = {
    {"query", cmd_query},
    {"import", cmd_import},
    {"domain", cmd_domain},
    {"static", cmd_static},
    {"source", cmd_source},
    {"stats", cmd_stats},
    {"export", cmd_export},
    {"access", cmd_access},
    {"check", cmd_check},
    {"queue", cmd_queue},
    {NULL, NULL},
};

/* rcptgate_error - "rcptgate: ..." on stderr */
void rcptgate_error(const char *fmt, ...)
{
    va_list ap;

    fputs("rcptgate: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* rcptgate_usage_text - the usage text */
static const char rcptgate_usage_text[] =
          "usage: rcptgate [-c FILE] [-f] [-n] [-v] SUBCOMMAND [ARGS]\n"
          "  query ADDRESS                      the verdict for ADDRESS, and why\n"
          "  query [--client ADDR] [--client-name NAME] [--helo NAME] [--sender ADDR|<>]\n"
          "        [--login USER] [--hostname NAME] ADDRESS\n"
          "                                     a whole transaction: the verdict and the rule\n"
          "  import [--source NAME] [--allow-empty] [--force] FILE\n"
          "                                     replace a source's recipients with a map file\n"
          "  domain add DOMAIN [NEXTHOP] [--subdomains] [--relay-mode=MODE]\n"
          "  domain del DOMAIN | domain list\n"
          "  static add ADDRESS | static del ADDRESS | static list\n"
          "  source list | source del NAME      the store's sources; remove one no longer configured\n"
          "  stats [--openmetrics | --prometheus]\n"
          "                                     store, lookupd and smtpd figures (or as metrics)\n"
          "  export [--source NAME]             recipients as a Postfix map file\n"
          "  access add TYPE KEY ACTION [TEXT] | access del TYPE KEY | access list [TYPE]\n"
          "                                     the access lists in the store (smtpd, policy service)\n"
          "  check [-w AGE] [-c AGE] [-t TIMEOUT] [-d DOMAIN] [--no-lookupd] [--no-smtpd] [--no-sync]\n"
          "        [--queue-warning AGE] [--no-queue]\n"
          "                                     monitoring plugin: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN\n"
          "  queue list | queue show ID | queue flush [ID|DOMAIN]\n"
          "  queue hold|release|delete ID...|ALL|-\n"
          "                                     smtpd's mail queue (like mailq, postqueue, postsuper)\n"
          "  -c FILE  configuration (default " RG_SYSCONFDIR "/rcptgate/rcptgate.conf)\n"
          "  -f       log to syslog too, as the daemons in the foreground\n"
          "  -n       check the configuration and exit\n"
          "  -v       verbose\n"
          "  -h, --help  this text\n";

/* rcptgate_usage - the usage text on stderr, for a mistake */
int rcptgate_usage(void)
{
    fputs(rcptgate_usage_text, stderr);
    return RG_EX_USAGE;
}

/*
 * rcptgate_act_as - run as root: become [syncd] user before the store is
 * touched, as rcptgate-syncd --once does, so that a store, -wal or -shm
 * file we create belongs to the user the daemons write and read it as.
 * Once per process; -1 (problems logged) when that user cannot.
 */
int rcptgate_act_as(void)
{
    static int done;
    PATHS *pl;
    int rc;

    if (done)
        return 0;
    pl = paths_create();
    params_paths("rcptgate", 1, pl);
    rc = paths_act_as(pl, var_syncd_user, "syncd");
    paths_free(pl);
    if (rc < 0)
        return -1;
    done = 1;
    return 0;
}

/* rcptgate_store - open the configured store (as [syncd] user when root) */
STORE *rcptgate_store(int flags)
{
    char err[1024];
    STORE *st;

    if (rcptgate_act_as() < 0)
        return NULL;
    if ((st = store_open(var_store_path, flags, var_store_busy_ms, err, sizeof(err))) == NULL)
        rcptgate_error("%s", err);
    return st;
}

/*
 * rcptgate_users - -n: the user of each program whose section the file
 * has, and [syncd]'s (the admin command's own, as root), must exist, as
 * each daemon's own -n says: [lookupd] even without a key (the package
 * runs lookupd with its defaults), [smtpd] with one (the package does
 * not start smtpd, and its file has the section with every key
 * commented out). The number of errors.
 */
static int rcptgate_users(const char *conf)
{
    static const char *const sections[3] = {"syncd", "lookupd", "smtpd"};
    const char *users[3] = {var_syncd_user, var_lookupd_user, var_smtpd_user};
    int errors = 0;

    for (int i = 0; i < 3; i++) {
        if (i > 0 && !(i == 1 ? cfg_section_listed(sections[i]) : cfg_section_seen(sections[i])))
            continue;
        if (*users[i] && !daemon_user_exists(users[i])) {
            rcptgate_error("%s: [%s] user: user \"%s\" does not exist", conf, sections[i], users[i]);
            errors++;
        }
    }
    return errors;
}

/*
 * rcptgate_paths - -n: the store, as the admin command writes it, and the
 * places of each daemon whose section the file has, each checked for its
 * own user (programs that share a user share one list, so that a shared
 * directory is named once). The number of errors.
 */
static int rcptgate_paths(void)
{
    static const char *const progs[3] = {"syncd", "lookupd", "smtpd"};
    const char *users[3] = {var_syncd_user, var_lookupd_user, var_smtpd_user};
    PATHS *pl[3] = {NULL, NULL, NULL};
    int errors = 0;

    for (int i = 0; i < 3; i++) {
        int j = 0;

        while (j < i && strcmp(users[j], users[i]) != 0)
            j++;
        if (pl[j] == NULL)
            pl[j] = paths_create();
        if (i == 0)
            params_paths("rcptgate", 1, pl[j]);
        if (!(i == 1 ? cfg_section_listed(progs[i]) : cfg_section_seen(progs[i])))
            continue;
        if (i == 2)
            params_smtpd_paths(pl[j]);
        else
            params_paths(progs[i], 0, pl[j]);
    }
    for (int i = 0; i < 3; i++) {
        if (pl[i] != NULL)
            errors += paths_check(pl[i], users[i], 1);
        paths_free(pl[i]);
    }
    return errors;
}

/* rcptgate_key - normalise an address or "@domain" as the store holds it */
int rcptgate_key(const char *in, char *out, char *err, size_t errlen)
{
    CHECK_OPTS opts;
    char why[256];

    params_check_opts(&opts);
    if (addr_key(in, strlen(in), opts.addr_flags | ADDR_KEY_CATCHALL, out, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "\"%.300s\": %s", in, why);
        return -1;
    }
    return 0;
}

/* rcptgate_time - unix time as ISO 8601 UTC */
const char *rcptgate_time(long long t, char *buf, size_t size)
{
    time_t tt = (time_t) t;
    struct tm tm;

    if (t <= 0 || gmtime_r(&tt, &tm) == NULL)
        snprintf(buf, size, "never");
    else
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/*
 * rcptgate_sections - every section of rcptgate.conf: the shared ones,
 * lookupd's, syncd's and smtpd's, so that -n checks the whole file (main
 * adds every [source NAME]) and stats finds smtpd's counters.
 */
static const CFG_SECTION *rcptgate_sections(void)
{
    static CFG_SECTION all[16];
    int n = 0;

    if (all[0].name == NULL) {
        for (const CFG_SECTION *s = params_sections_for("rcptgate"); s->name && n < 14; s++)
            all[n++] = *s;
        all[n++] = (CFG_SECTION) {"smtpd", params_smtpd_table()};
    }
    return all;
}

int main(int argc, char **argv)
{
    const char *conf = cfg_default_path();
    int check_only = 0;
    int ch;

    log_init("rcptgate", 1, 0);
    paths_umask();
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        fputs(rcptgate_usage_text, stdout);
        return 0;
    }
    /* "+": options end at the subcommand, which has options of its own. */
    while ((ch = getopt(argc, argv, "+c:fhnv")) != -1) {
        switch (ch) {
        case 'h':
            fputs(rcptgate_usage_text, stdout);
            return 0;
        case 'c':
            conf = optarg;
            break;
        case 'f':
            /* Always in the foreground; -f adds syslog, as for the daemons. */
            log_init("rcptgate", 1, 1);
            break;
        case 'n':
            check_only = 1;
            break;
        case 'v':
            rcptgate_verbose = 1;
            log_set_debug(1);
            break;
        default:
            return rcptgate_usage();
        }
    }
    argc -= optind;
    argv += optind;
    rcptgate_conf_path = conf;
    cfg_check_secrets = check_only;
    if (cfg_load_families(conf, rcptgate_sections(), params_source_families()) != 0) {
        rcptgate_error("%s: configuration errors", conf);
        /* A monitoring plugin says UNKNOWN, on stdout, with exit 3. */
        if (!check_only && argc >= 1 && strcmp(argv[0], "check") == 0)
            return cmd_check_config_failed(conf);
        return RG_EX_CONFIG;
    }
    if (check_only) {
        char err[512];

        /* [rules]: mynetworks (and its files) and the access lists must parse */
        if (rules_init(err, sizeof(err)) < 0) {
            rcptgate_error("%s: %s", conf, err);
            return RG_EX_CONFIG;
        }
        rules_free();
        if ((cfg_section_listed("lookupd") && params_lookupd_listeners(conf) != 0) || rcptgate_users(conf) != 0) {
            rcptgate_error("%s: configuration errors", conf);
            return RG_EX_CONFIG;
        }
        if (cfg_section_seen("smtpd") && params_smtpd_key_ok(err, sizeof(err)) < 0) {
            rcptgate_error("%s: [smtpd] %s", conf, err);
            return RG_EX_CONFIG;
        }
        if (rcptgate_paths() != 0) {
            rcptgate_error("%s: directories or files the programs write need fixing (see above)", conf);
            return RG_EX_CANTCREAT;
        }
        if (rcptgate_verbose)
            printf("%s: configuration is good\n", conf);
        return RG_EX_OK;
    }
    if (argc < 1)
        return rcptgate_usage();
    for (const struct rcptgate_cmd *c = rcptgate_cmds; c->name; c++)
        if (strcmp(argv[0], c->name) == 0)
            return c->fn(argc, argv);
    rcptgate_error("unknown subcommand \"%s\"", argv[0]);
    return rcptgate_usage();
}
