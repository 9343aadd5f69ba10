/*
 * cmd_static.c - rcptgate static add|del|list: entries no directory owns
 *
 * postmaster@, abuse@ and the like must be valid whatever the directory
 * says (RFC 5321 requires postmaster). They are recipients of the source
 * "static", which no import or sync replaces. ADDRESS is normalised as
 * the lookups will ask for it; "@domain" makes a catch-all.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "check.h"
#include "rcptgate.h"

/* static_print - one line of static list */
static int static_print(const STORE_RCPT *r, void *ctx)
{
    printf("%s\n", r->address);
    return 0;
}

/* static_change - static add/del ADDRESS */
static int static_change(const char *what, const char *address)
{
    char key[ADDR_KEY_SIZE];
    char err[512];
    STORE *st;
    int rc;
    int add = strcmp(what, "add") == 0;

    if (rcptgate_key(address, key, err, sizeof(err)) < 0) {
        rcptgate_error("static %s: %s", what, err);
        return RCPTGATE_EX_NOTFOUND;
    }
    if ((st = rcptgate_store(STORE_CREATE)) == NULL)
        return RCPTGATE_EX_STORE;
    rc = add ? store_static_add(st, key) : store_static_del(st, key);
    if (rc < 0) {
        rcptgate_error("static %s: %s", what, store_error(st));
        store_close(st);
        return RCPTGATE_EX_STORE;
    }
    if (add) {
        const char *domain = strrchr(key, '@');
        CHECK_WHY why;

        printf(rc ? "added static entry %s\n" : "static entry %s exists already\n", key);
        /* Kept all the same (the domain may come next), but mail for it would be relaying: 554. */
        memset(&why, 0, sizeof(why));
        if (domain != NULL && domain[1] != 0 && check_domain(st, domain + 1, strlen(domain + 1), &why) == 0)
            fprintf(stderr, "rcptgate: warning: %s is not a domain we accept mail for: its mail is "
                    "refused as relaying until `rcptgate domain add %s`\n", domain + 1, domain + 1);
        store_close(st);
        return RCPTGATE_EX_OK;
    }
    store_close(st);
    if (rc == 0) {
        rcptgate_error("static del: no static entry %s", key);
        return RCPTGATE_EX_NOTFOUND;
    }
    printf("deleted static entry %s\n", key);
    return RCPTGATE_EX_OK;
}

/* cmd_static - rcptgate static add|del|list */
int cmd_static(int argc, char **argv)
{
    STORE *st;
    int rc;

    if (argc == 3 && (strcmp(argv[1], "add") == 0 || strcmp(argv[1], "del") == 0))
        return static_change(argv[1], argv[2]);
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        if ((st = rcptgate_store(0)) == NULL)
            return RCPTGATE_EX_STORE;
        rc = store_rcpt_walk(st, "static", static_print, NULL);
        if (rc < 0)
            rcptgate_error("static list: %s", store_error(st));
        store_close(st);
        return rc < 0 ? RCPTGATE_EX_STORE : RCPTGATE_EX_OK;
    }
    rcptgate_error("usage: rcptgate static add ADDRESS | del ADDRESS | list");
    return RG_EX_USAGE;
}
