/*
 * dsn.h - delivery status notifications (RFC 3464) for queued mail
 *
 * When a queued message cannot be delivered (a 5xx from the next hop, or
 * its queue lifetime is over), its sender gets it back as a
 * multipart/report: a human part, a message/delivery-status part with a
 * per-recipient block (Final-Recipient, Original-Recipient from ORCPT,
 * Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date), and
 * the returned headers or whole message (RET=HDRS/FULL). A delay warning
 * is the same report with Action: delayed and headers only.
 *
 * The report is itself a queued message (dsn_kind 1) from the null
 * sender, so no bounce of it is ever made: a DSN that fails is logged
 * and dropped. None is made for a null-sender message, for recipients
 * whose NOTIFY excludes the event, or for a DSN.
 */
#ifndef RG_DSN_H
#define RG_DSN_H

#include <stddef.h>

#include "spool.h"

#define DSN_FAILED  1           /* Action: failed */
#define DSN_DELAYED 2           /* Action: delayed (delay_warning_time) */

/*
 * dsn_make - queue a report to env->sender about the recipients idx[0..n)
 * (their dsn/reason fields say why), reading the original message from
 * body_fd at env->body_offset (pread; the fd's offset is not used).
 * hostname is the Reporting-MTA. 0 made (its queue id in id_out), 1 none
 * is due (null sender, a DSN, NOTIFY), -1 error (err set).
 */
int dsn_make(SPOOL *sp, const SPOOL_ENV *env, int body_fd, const size_t *idx, size_t n, int kind,
             const char *hostname, char id_out[SPOOL_ID_LEN], char *err, size_t errlen);

#endif
