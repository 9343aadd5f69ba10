/*
 * rg_spoolcat.c - what rcptgate-smtpd's spool holds, for the shell tests
 *
 * SYNOPSIS
 *   rg_spoolcat DIR                list: the ids in deferred/, one a line
 *   rg_spoolcat DIR ID             the envelope of deferred/ID, one "key value" a line
 *   rg_spoolcat -b DIR ID          the message bytes of deferred/ID, exactly as stored
 *
 * DESCRIPTION
 *   Reads through lib/spool.h (spool_scan, spool_load), as the queue
 *   manager does, so a test checks what delivery will see, not the file
 *   format. The envelope lines are:
 *       id ID / arrival T / sender S / params P / envid E / ret R
 *       client NAME ADDR PORT HELO PROTO LOGIN ("-" for none)
 *       rcpt STATE ADDR NOTIFY ORCPT   (one per recipient, in order)
 *       size N / next_try T
 *
 * DIAGNOSTICS
 *   Exit 1 with a message on stderr when the spool or the message cannot
 *   be read; 2 when the message is not there.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool.h"

/* rg_list_cb - one id of deferred/ */
static int rg_list_cb(void *arg, const char *id, long long mtime, long long size)
{
    (void) arg;
    (void) mtime;
    (void) size;
    printf("%s\n", id);
    return 0;
}

/* rg_s - a string or "-" */
static const char *rg_s(const char *s)
{
    return s && *s ? s : "-";
}

int main(int argc, char **argv)
{
    char err[256];
    SPOOL *sp;
    SPOOL_ENV env;
    int body = 0, fd = -1, rc;

    if (argc > 1 && strcmp(argv[1], "-b") == 0) {
        body = 1;
        argv++;
        argc--;
    }
    if (argc < 2 || argc > 3 || (body && argc != 3)) {
        fprintf(stderr, "usage: rg_spoolcat [-b] DIR [ID]\n");
        return 1;
    }
    if ((sp = spool_open(argv[1], 0, err, sizeof(err))) == NULL) {
        fprintf(stderr, "rg_spoolcat: %s\n", err);
        return 1;
    }
    if (argc == 2) {
        rc = spool_scan(sp, SPOOL_DEFERRED, rg_list_cb, NULL) < 0;
        spool_close(sp);
        return rc;
    }
    memset(&env, 0, sizeof(env));
    rc = spool_load(sp, SPOOL_DEFERRED, argv[2], &env, body ? &fd : NULL, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "rg_spoolcat: %s: %s\n", argv[2], rc > 0 ? "gone" : err);
        spool_close(sp);
        return rc > 0 ? 2 : 1;
    }
    if (body) {
        char buf[65536];
        ssize_t n;

        while ((n = read(fd, buf, sizeof(buf))) > 0)
            fwrite(buf, 1, (size_t) n, stdout);
        close(fd);
    } else {
        printf("id %s\narrival %lld\nsender %s\nparams %s\nenvid %s\nret %d\n", env.id, env.arrival,
               rg_s(env.sender), rg_s(env.mail_params), rg_s(env.envid), env.ret);
        printf("client %s %s %d %s %s %s\n", rg_s(env.client.name), rg_s(env.client.addr), env.client.port,
               rg_s(env.client.helo), rg_s(env.client.proto), rg_s(env.client.login));
        for (size_t i = 0; i < env.nrcpt; i++)
            printf("rcpt %c %s %d %s\n", env.rcpt[i].state, env.rcpt[i].addr, env.rcpt[i].notify,
                   rg_s(env.rcpt[i].orcpt));
        printf("size %lld\nnext_try %lld\n", env.size, env.next_try);
    }
    spool_env_free(&env);
    spool_close(sp);
    return 0;
}
