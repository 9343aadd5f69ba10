/*
 * cmd_access.c - rcptgate access add|del|list: the rules' access lists in the store
 *
 * The entries the rules consult (with [rules] store_access = yes)
 * besides the lists in rcptgate.conf, so that a postmaster can block a
 * network or let a partner's server through without a reload:
 *
 *   rcptgate access add TYPE KEY ACTION [TEXT]
 *   rcptgate access del TYPE KEY
 *   rcptgate access list [TYPE]
 *
 * TYPE is client, helo, sender or recipient; KEY is normalised as the
 * lookups will ask for it (lib/store_access.c), and the normal form is
 * what add prints and list shows. TEXT is the rest of the command line.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "rcptgate.h"
#include "store_access.h"

/* access_print - one line of access list: TYPE KEY ACTION [TEXT] */
static int access_print(const char *type, const STORE_ACCESS *e, void *ctx)
{
    (void) ctx;
    printf("%s\t%s\t%s%s%s\n", type, e->key, store_access_action_name(e->action),
           e->text[0] ? "\t" : "", e->text);
    return 0;
}

/* access_text - argv[from..argc-1] joined by blanks, into buf */
static const char *access_text(int argc, char **argv, int from, char *buf, size_t size)
{
    size_t n = 0;

    buf[0] = 0;
    for (int i = from; i < argc; i++) {
        int w = snprintf(buf + n, size - n, "%s%s", i > from ? " " : "", argv[i]);

        if (w < 0 || (size_t) w >= size - n)
            return NULL;
        n += (size_t) w;
    }
    return buf;
}

/* access_add - access add TYPE KEY ACTION [TEXT] */
static int access_add(int argc, char **argv)
{
    char text[STORE_ACCESS_TEXT_SIZE], err[512];
    STORE_ACCESS e;
    STORE *st;

    if (access_text(argc, argv, 5, text, sizeof(text)) == NULL) {
        rcptgate_error("access add: text too long");
        return RCPTGATE_EX_NOTFOUND;
    }
    if (store_access_entry(argv[2], argv[3], argv[4], text, &e, err, sizeof(err)) < 0) {
        rcptgate_error("access add %s: %s", argv[2], err);
        return RCPTGATE_EX_NOTFOUND;
    }
    if ((st = rcptgate_store(STORE_CREATE)) == NULL)
        return RCPTGATE_EX_STORE;
    if (store_access_put(st, argv[2], &e) < 0) {
        rcptgate_error("access add: %s", store_error(st));
        store_close(st);
        return RCPTGATE_EX_STORE;
    }
    store_close(st);
    printf("added %s %s %s%s%s\n", argv[2], e.key, store_access_action_name(e.action),
           e.text[0] ? " " : "", e.text);
    return RCPTGATE_EX_OK;
}

/* access_del - access del TYPE KEY */
static int access_del(char **argv)
{
    char key[STORE_ACCESS_KEY_SIZE], err[512];
    STORE *st;
    int rc;

    if (store_access_key(argv[2], argv[3], key, err, sizeof(err)) < 0) {
        rcptgate_error("access del %s \"%s\": %s", argv[2], argv[3], err);
        return RCPTGATE_EX_NOTFOUND;
    }
    if ((st = rcptgate_store(STORE_CREATE)) == NULL)
        return RCPTGATE_EX_STORE;
    if ((rc = store_access_del(st, argv[2], key)) < 0) {
        rcptgate_error("access del: %s", store_error(st));
        store_close(st);
        return RCPTGATE_EX_STORE;
    }
    store_close(st);
    if (rc == 0) {
        rcptgate_error("access del: no %s entry %s", argv[2], key);
        return RCPTGATE_EX_NOTFOUND;
    }
    printf("deleted %s %s\n", argv[2], key);
    return RCPTGATE_EX_OK;
}

/* cmd_access - rcptgate access add|del|list */
int cmd_access(int argc, char **argv)
{
    STORE *st;
    int rc;

    if (argc >= 5 && strcmp(argv[1], "add") == 0)
        return access_add(argc, argv);
    if (argc == 4 && strcmp(argv[1], "del") == 0)
        return access_del(argv);
    if ((argc == 2 || argc == 3) && strcmp(argv[1], "list") == 0) {
        if (argc == 3 && !store_access_type_ok(argv[2])) {
            rcptgate_error("access list: unknown type \"%s\" (client, helo, sender, recipient)", argv[2]);
            return RG_EX_USAGE;
        }
        if ((st = rcptgate_store(0)) == NULL)
            return RCPTGATE_EX_STORE;
        rc = store_access_walk(st, argc == 3 ? argv[2] : NULL, access_print, NULL);
        if (rc < 0)
            rcptgate_error("access list: %s", store_error(st));
        store_close(st);
        return rc < 0 ? RCPTGATE_EX_STORE : RCPTGATE_EX_OK;
    }
    rcptgate_error("usage: rcptgate access add TYPE KEY ACTION [TEXT] | del TYPE KEY | list [TYPE]");
    return RG_EX_USAGE;
}
