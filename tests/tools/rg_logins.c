/*
 * rg_logins.c - directory objects with login names into a test store
 *
 * SYNOPSIS
 *   rg_logins STORE fill SOURCE < objects
 *   rg_logins STORE owns LOGIN ADDRESS
 *
 * DESCRIPTION
 *   fill: a full pull of SOURCE (type "ldap") through lib/store_sync.h,
 *   as rcptgate-syncd would make it, from lines
 *       GUID KIND LOGIN,LOGIN,... ADDRESS,ADDRESS,...
 *   ("-" for an empty list; # comments). Logins are stored lowercased,
 *   as syncd stores them; addresses must already be in normal form.
 *   KIND "group-internal" is a group for internal senders only.
 *
 *   owns: prints store_login_owns()'s answer (1, 0 or -1) and exits 0.
 *
 *   For the sender-login-mismatch tests, without a directory server.
 *
 * DIAGNOSTICS
 *   Exit 1 with a message on stderr on any error.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_sync.h"
#include "xalloc.h"

#define MAXV 64

/* rg_split - a comma list into v (in place); "-" is empty */
static size_t rg_split(char *s, const char **v, int lower)
{
    size_t n = 0;

    if (strcmp(s, "-") == 0)
        return 0;
    for (char *t = strtok(s, ","); t != NULL && n < MAXV; t = strtok(NULL, ",")) {
        if (lower)
            for (char *p = t; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char) (*p - 'A' + 'a');
        v[n++] = t;
    }
    return n;
}

/* rg_fill - one full pull from stdin */
static int rg_fill(STORE *st, const char *source)
{
    char line[4096];
    char guid[256], kind[64], logins[1024], addrs[2048];
    const char *lv[MAXV], *av[MAXV];
    STORE_COUNTS counts;

    if (store_sync_begin(st, source, "ldap") < 0)
        return -1;
    while (fgets(line, sizeof(line), stdin) != NULL) {
        STORE_OBJECT o;

        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%255s %63s %1023s %2047s", guid, kind, logins, addrs) != 4) {
            fprintf(stderr, "rg_logins: bad line: %s", line);
            store_sync_abort(st);
            return -1;
        }
        memset(&o, 0, sizeof(o));
        o.guid = guid;
        o.dn = "";
        o.kind = kind;
        if (strcmp(kind, "group-internal") == 0) {
            o.kind = STORE_KIND_GROUP;
            o.flags = STORE_FLAG_INTERNAL_ONLY;
        }
        o.logins = lv;
        o.n_logins = rg_split(logins, lv, 1);
        o.addresses = av;
        o.n_addresses = rg_split(addrs, av, 0);
        if (store_sync_put(st, &o) < 0) {
            store_sync_abort(st);
            return -1;
        }
    }
    if (store_sync_diff(st, &counts) < 0 || store_sync_commit(st, NULL, NULL, &counts) < 0)
        return -1;
    printf("added %lld\n", counts.added);
    return 0;
}

int main(int argc, char **argv)
{
    char err[512];
    STORE *st;
    int rc = 0;

    if (argc < 4 || (strcmp(argv[2], "fill") != 0 && strcmp(argv[2], "owns") != 0)
        || (strcmp(argv[2], "owns") == 0 && argc != 5)) {
        fprintf(stderr, "usage: rg_logins STORE fill SOURCE < objects | STORE owns LOGIN ADDRESS\n");
        return 1;
    }
    if ((st = store_open(argv[1], STORE_CREATE, 2000, err, sizeof(err))) == NULL) {
        fprintf(stderr, "rg_logins: %s\n", err);
        return 1;
    }
    if (strcmp(argv[2], "fill") == 0) {
        if (rg_fill(st, argv[3]) < 0) {
            fprintf(stderr, "rg_logins: %s\n", store_error(st));
            rc = 1;
        }
    } else {
        printf("%d\n", store_login_owns(st, argv[3], argv[4]));
    }
    store_close(st);
    return rc;
}
