/*
 * cmd_source.c - rcptgate source list|del: the sources the store holds
 *
 * A [source NAME] taken out of rcptgate.conf (a forest retired, a source
 * renamed) stays in the store with all it held: rcptgate-syncd no longer
 * pulls it, so its addresses stay valid for good. source list shows every
 * source of the store and whether the file still names it; source del
 * removes one, with its objects, recipients, logins, members and runs.
 * A source the file names is refused (syncd would pull it back at once),
 * and so is "static", which holds the static entries.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "rcptgate.h"
#include "store_sync.h"

/* source_configured - is name a [source NAME] of the file loaded? */
static int source_configured(const char *name)
{
    char section[CFG_NAME_LEN + 8];

    snprintf(section, sizeof(section), "source %s", name);
    return cfg_section_seen(section);
}

/* source_print - one line of source list */
static int source_print(const STORE_SOURCE_INFO *s, void *ctx)
{
    char when[64];
    const char *note = "";

    (void) ctx;
    if (strcmp(s->type, "import") != 0 && strcmp(s->type, "static") != 0 && !source_configured(s->name))
        note = "  (not in the configuration: rcptgate source del removes it)";
    printf("%-20s %-7s %10lld  last sync %s%s\n", s->name, s->type, s->recipients,
           rcptgate_time(s->last_success, when, sizeof(when)), note);
    return 0;
}

/* source_list - every source of the store */
static int source_list(void)
{
    STORE *st = rcptgate_store(0);

    if (st == NULL)
        return RCPTGATE_EX_STORE;
    if (store_source_walk(st, source_print, NULL) < 0) {
        rcptgate_error("source list: %s", store_error(st));
        store_close(st);
        return RCPTGATE_EX_STORE;
    }
    store_close(st);
    return RCPTGATE_EX_OK;
}

/* source_del - remove a source no longer configured, and all it holds */
static int source_del(const char *name)
{
    long long n;
    STORE *st;
    int rc;

    if (strcmp(name, "static") == 0) {
        rcptgate_error("source del: the source \"static\" holds the static entries; use rcptgate static del");
        return RCPTGATE_EX_NOTFOUND;
    }
    if (source_configured(name)) {
        rcptgate_error("source del: source %s is a [source %s] of %s, which rcptgate-syncd pulls: "
                       "remove that section first", name, name, rcptgate_conf_path);
        return RCPTGATE_EX_NOTFOUND;
    }
    if ((st = rcptgate_store(0)) == NULL)
        return RCPTGATE_EX_STORE;
    rc = store_source_del(st, name, &n);
    if (rc < 0) {
        rcptgate_error("source del: %s", store_error(st));
        store_close(st);
        return RCPTGATE_EX_STORE;
    }
    store_close(st);
    if (rc == 0) {
        rcptgate_error("source del: no source %s in the store", name);
        return RCPTGATE_EX_NOTFOUND;
    }
    printf("removed source %s and its %lld recipient%s\n", name, n, n == 1 ? "" : "s");
    return RCPTGATE_EX_OK;
}

/* cmd_source - rcptgate source list | source del NAME */
int cmd_source(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "list") == 0)
        return source_list();
    if (argc == 3 && strcmp(argv[1], "del") == 0)
        return source_del(argv[2]);
    return rcptgate_usage();
}
