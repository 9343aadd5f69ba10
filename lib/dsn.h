/*
 * dsn.h - delivery status notifications (RFC 3464) for queued mail
 *
 * When a queued message cannot be delivered (a 5xx from the next hop, or
 * its queue lifetime is over), its sender gets it back as a
 * multipart/report: a human part, a message/delivery-status part with a
 * per-recipient block (Final-Recipient, Original-Recipient from ORCPT,
 * Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date), and
 * the returned headers or whole message (RET=HDRS/FULL). A delay warning
 * is the same report with Action: delayed and headers only; a "relayed"
 * notice (RFC 3461 5.2.2: NOTIFY=SUCCESS, and the next hop that took the
 * message does not offer DSN, so it cannot be asked to tell) the same
 * with Action: relayed.
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
#define DSN_RELAYED 3           /* Action: relayed (NOTIFY=SUCCESS, a next hop without DSN) */

/*
 * dsn_make - queue a report to env->sender about the recipients idx[0..n)
 * (their dsn/reason fields say why), reading the original message from
 * body_fd at env->body_offset (pread; the fd's offset is not used).
 * hostname is the Reporting-MTA. 0 made (its queue id in id_out), 1 none
 * is due (null sender, a DSN, NOTIFY), 2 none can ever be made (err set:
 * a sender holding a control character, which only a hand-made queue
 * file has; no report is addressed to it), -1 error, worth another try
 * (err set).
 *
 * NOTIFY: NEVER, or a list without FAILURE (kind DSN_FAILED) or without
 * DELAY (DSN_DELAYED), leaves the recipient out; without NOTIFY a
 * recipient gets both (RFC 3461 4.1 lets the MTA choose; Postfix sends
 * delay warnings then too). DSN_RELAYED is only for a NOTIFY holding
 * SUCCESS. Only the recipients due are listed.
 *
 * Returned: the whole message for RET=FULL and DSN_FAILED when its size
 * is within message_size_limit; otherwise its header section, at most
 * 100 KB (cut at a line end). A reason of the form Postfix logs ("host
 * NAME[ADDR] said: 550 ... (in reply to RCPT TO command)") gives
 * Remote-MTA NAME and "Diagnostic-Code: smtp; 550 ..."; a reason that is
 * not an SMTP reply is "Diagnostic-Code: X-Rcptgate; ...". Status is the
 * recipient's dsn when well formed, its class forced to 5 for
 * DSN_FAILED (an expired 4.4.1 is reported 5.4.1), 4 for DSN_DELAYED and
 * 2 for DSN_RELAYED; 5.0.0 / 4.0.0 / 2.0.0 when there is none. The report's envelope: null sender,
 * dsn_kind 1, one recipient (the sender, no NOTIFY), mail_params
 * "BODY=8BITMIME" (and "SMTPUTF8") when the original needs it.
 */
int dsn_make(SPOOL *sp, const SPOOL_ENV *env, int body_fd, const size_t *idx, size_t n, int kind,
             const char *hostname, char id_out[SPOOL_ID_LEN], char *err, size_t errlen);

/*
 * dsn_status_len - the length of the enhanced status code p starts with
 * (RFC 3463: class 2, 4 or 5, then two numbers of 1 to 3 digits, each
 * after a dot; "5.1.1"), ended by a space or the end of the string; 0
 * when p does not start with one ("5.1234.5", "5..1", "2.0.0.0").
 */
size_t dsn_status_len(const char *p);

/*
 * dsn_reply_status - reply ("550 No such user"), passed on from another
 * server, into out with an enhanced status code where it has none
 * ("550 5.0.0 No such user"): our EHLO advertises ENHANCEDSTATUSCODES,
 * and RFC 2034 then wants one in every reply. A 2xx gets ok2 (the
 * command's own: "2.1.0" MAIL, "2.1.5" RCPT, "2.0.0" the dot), a 4xx
 * 4.0.0 and a 5xx 5.0.0 (other or undefined status, RFC 3463). A code of
 * the wrong class takes the reply's ("550 4.1.1" becomes "550 5.1.1").
 * Anything else (a 3xx, a line that is no reply) is copied as it is.
 */
void dsn_reply_status(char *out, size_t size, const char *reply, const char *ok2);

#endif
