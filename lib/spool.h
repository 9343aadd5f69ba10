/*
 * spool.h - rcptgate-smtpd's mail queue on disk: one file per message
 *
 * When the inside cannot take a message now, rcptgate-smtpd keeps it here
 * and delivers it later (smtpd/smtpd_qmgr.c); `rcptgate queue` lists and
 * manages it. The shape is the proven one (Postfix, OpenSMTPD): one file
 * per message, written whole under incoming/, fsynced, renamed into
 * deferred/, and the directory fsynced, so a message is either not
 * there at all or there whole. The client hears 250 only after that.
 *
 * The spool directory ([smtpd] queue_directory, default
 * /var/spool/rcptgate, 0700, owned by smtpd's user) holds:
 *
 *   incoming/ID    a message being written (removed at start: never
 *                  acknowledged, so the client still has it)
 *   deferred/ID    a message waiting; its mtime is the time of its next
 *                  try (Postfix's trick: no rewrite to reschedule)
 *   hold/ID        held by the postmaster: never tried until released
 *   defer/ID       the last deferral reason of each recipient (text,
 *                  replaced whole by rename; losing it loses only words)
 *   trigger        a FIFO: `rcptgate queue flush` writes a byte, smtpd
 *                  scans at once (like Postfix's qmgr fifo)
 *
 * A message file is a text envelope, a blank line, then the message as
 * it goes on the wire: CRLF lines, dot-stuffed, without the final dot
 * (what smtp_relay_write() takes). The envelope's lines are "K value";
 * each recipient's line starts with a one-byte state that delivery
 * overwrites in place (pwrite + fdatasync), as Postfix marks its queue
 * file records done, so a crash after a recipient's 250 repeats at most
 * that recipient (at least once, never zero times).
 *
 * Everything here is safe while smtpd runs and `rcptgate queue` acts:
 * moves are renames, a delete is an unlink, and a reader that loses the
 * race gets ENOENT, which every function reports as "gone" (1), not as
 * an error. The admin command running as root only renames and unlinks,
 * so every file stays owned by smtpd's user.
 *
 * Nothing is loaded for the whole queue at once: spool_scan() walks a
 * directory one entry at a time, and a message is read when it is tried.
 */
#ifndef RG_SPOOL_H
#define RG_SPOOL_H

#include <stddef.h>
#include <sys/types.h>

#define SPOOL_ID_LEN    32              /* a queue id and its NUL ("4F2A91B3C07D5") */
#define SPOOL_ENV_MAX   (1024 * 1024)   /* largest envelope read back (1,000 recipients fit easily) */

/* The queues, as subdirectory names. */
#define SPOOL_INCOMING  "incoming"
#define SPOOL_DEFERRED  "deferred"
#define SPOOL_HOLD      "hold"
#define SPOOL_CORRUPT   "corrupt"       /* damaged files, set aside (made when first needed) */

/* A recipient's state: the first byte of its envelope line. */
#define SPOOL_RCPT_TODO     'T'         /* to deliver */
#define SPOOL_RCPT_DONE     'D'         /* the next hop said 2xx: never again */
#define SPOOL_RCPT_FAILED   'F'         /* refused for good (5xx, expired): a DSN was made (or none is due) */

/* RFC 3461 NOTIFY bits; 0 = not given (default: FAILURE, as if NOTIFY=FAILURE). */
#define SPOOL_NOTIFY_NEVER      1
#define SPOOL_NOTIFY_SUCCESS    2
#define SPOOL_NOTIFY_FAILURE    4
#define SPOOL_NOTIFY_DELAY      8

/* RFC 3461 RET */
#define SPOOL_RET_DEFAULT   0           /* not given: a DSN returns the headers */
#define SPOOL_RET_FULL      1
#define SPOOL_RET_HDRS      2

typedef struct spool SPOOL;

typedef struct spool_rcpt {
    char *addr;                 /* the recipient as given to RCPT TO */
    char *orcpt;                /* ORCPT= as given ("rfc822;a@b", xtext kept), NULL */
    int notify;                 /* SPOOL_NOTIFY_* bits */
    char state;                 /* SPOOL_RCPT_* */
    /* from defer/ID when loaded; what delivery sets before spool_reason_save() */
    char *dsn;                  /* last status "4.4.1", NULL */
    char *reason;               /* last reason "connect to [10.0.0.5]:25: Connection refused", NULL */
    long long offset;           /* set by spool_load(): where the state byte is in the file (ignored by spool_create) */
} SPOOL_RCPT;

/* The client facts, for XFORWARD on delivery and for a DSN's text. */
typedef struct spool_client {
    char *name;                 /* "mail.example.net" or "unknown" */
    char *addr;                 /* "192.0.2.1" */
    int port;
    char *helo;                 /* NULL if none */
    char *proto;                /* "ESMTP", "SMTP", "ESMTPS" ... */
    char *login;                /* SASL login, NULL */
} SPOOL_CLIENT;

/*
 * SPOOL_ENV - a message's envelope. Strings belong to the struct after
 * spool_load() (spool_env_free() frees them); for spool_create() they
 * belong to the caller and are copied to disk.
 */
typedef struct spool_env {
    char id[SPOOL_ID_LEN];
    long long arrival;          /* unix time the client gave it to us */
    char *sender;               /* MAIL FROM, "" for the null sender */
    char *mail_params;          /* ESMTP parameters to pass on again ("BODY=8BITMIME SMTPUTF8"), "" */
    char *envid;                /* ENVID= (xtext as given), NULL */
    int ret;                    /* SPOOL_RET_* */
    int dsn_kind;               /* 0 a message from a client; 1 a DSN we made (a DSN is never bounced) */
    int warned;                 /* a delay warning was sent (loaded; set by spool_mark_warned) */
    SPOOL_CLIENT client;
    size_t nrcpt;
    SPOOL_RCPT *rcpt;
    /* set by spool_load() */
    long long size;             /* message bytes (as stored, dot-stuffed) */
    long long next_try;         /* unix time of the next try (the file's mtime) */
    int attempts;               /* tries so far (from defer/ID) */
    long long body_offset;      /* where the message starts in the file (for pread) */
} SPOOL_ENV;

/*
 * spool_id_new - a fresh queue id, unique in practice: uppercase hex, 8
 * digits of unix time (so the age reads from the name), 5 of
 * microseconds, 6 of pid, 4 of a counter (23 characters).
 */
void spool_id_new(char id[SPOOL_ID_LEN]);

/*
 * spool_id_valid - may id name a queue file? 1 when it is 1 to
 * SPOOL_ID_LEN - 1 characters of [0-9A-Z] (no '/', no '.', not empty),
 * else 0. Every function below that takes an id checks it (EINVAL).
 */
int spool_id_valid(const char *id);

/*
 * spool_rcpt_bytes - the most bytes a recipient (its address, and ORCPT
 * or NULL) takes in a queue file's envelope, which holds SPOOL_ENV_MAX
 */
size_t spool_rcpt_bytes(const char *addr, const char *orcpt);

/* spool_id_time - the unix time an id of spool_id_new() was made, from its first 8 digits; -1 if it has none */
long long spool_id_time(const char *id);

/*
 * spool_open - the spool in dir: create it and its subdirectories (0700)
 * when create, make the trigger FIFO, remove what incoming/ holds (never
 * acknowledged) when create is 2 (smtpd at start), which also locks the
 * spool for this process (a second smtpd on it is refused: NULL, "in use
 * by another rcptgate-smtpd"). NULL with err set.
 */
SPOOL *spool_open(const char *dir, int create, char *err, size_t errlen);
void spool_close(SPOOL *sp);
const char *spool_dir(const SPOOL *sp);

/* --- writing a new message (smtpd's session; a DSN from the queue manager) --- */

typedef struct spool_file SPOOL_FILE;

/*
 * spool_create - start incoming/ID with env's envelope (env->id is the
 * queue id to use: the session's own; EEXIST is an error). Recipient
 * states are written as env gives them. NULL with err set.
 */
SPOOL_FILE *spool_create(SPOOL *sp, const SPOOL_ENV *env, char *err, size_t errlen);

/* spool_write - message bytes as on the wire (CRLF, dot-stuffed, no final dot); -1 on an error (errno) */
int spool_write(SPOOL_FILE *f, const void *buf, size_t len);

/* spool_set_state - a recipient's state before commit (index as in env->rcpt); -1 on an error */
int spool_set_state(SPOOL_FILE *f, size_t idx, char state);

/*
 * spool_commit - make it durable: fsync the file, rename it into
 * deferred/ with next try at next_try (unix time; 0 = now), fsync the
 * directory, free f. 0 only once it is all on stable storage; -1 with
 * err set (the file is removed, nothing was queued).
 */
int spool_commit(SPOOL_FILE *f, long long next_try, char *err, size_t errlen);

/* spool_abort - drop it (the next hop took it all, or it was refused); frees f. NULL is fine. */
void spool_abort(SPOOL_FILE *f);

/* --- reading and delivering --- */

/*
 * spool_load - read queue/id's envelope (queue: SPOOL_DEFERRED or
 * SPOOL_HOLD), its defer/ reasons and stat. 0 ok, 1 gone, -1 an I/O
 * error, -2 damaged: not what smtpd writes (err set, both). *fd_out, when not NULL, gets an open read fd
 * positioned at the message's first byte (the caller closes it): the
 * inode stays readable even if the file is deleted meanwhile.
 */
int spool_load(SPOOL *sp, const char *queue, const char *id, SPOOL_ENV *env, int *fd_out,
               char *err, size_t errlen);
void spool_env_free(SPOOL_ENV *env);

/*
 * spool_mark - a recipient's new state on disk (pwrite of its state byte
 * in deferred/id or hold/id, then fdatasync). 0, 1 gone, -1 error.
 */
int spool_mark(SPOOL *sp, const char *id, size_t idx, char state);

/* spool_mark_warned - record that the delay warning went out. 0, 1 gone, -1 error. */
int spool_mark_warned(SPOOL *sp, const char *id);

/*
 * spool_reason_save - env's per-recipient dsn/reason and attempts into
 * defer/id (temp file and rename; not fsynced: words only). 0 or -1.
 */
int spool_reason_save(SPOOL *sp, const SPOOL_ENV *env);

/* spool_retry_at - the next try of deferred/id (its mtime). 0, 1 gone, -1 error. */
int spool_retry_at(SPOOL *sp, const char *id, long long when);

/*
 * spool_corrupt - set a damaged deferred/id aside in corrupt/ (made 0700
 * if missing), its reasons dropped, as Postfix's corrupt queue: it is no
 * longer tried and no longer counts. 0, 1 gone, -1 error.
 */
int spool_corrupt(SPOOL *sp, const char *id);

/* spool_corrupt_count - how many files corrupt/ holds (0 when it does not exist), -1 error */
long long spool_corrupt_count(SPOOL *sp);

/* spool_remove - delete a message (every queue) and its reasons; fsync the directory. 0, 1 gone, -1 error. */
int spool_remove(SPOOL *sp, const char *id);

/* spool_hold / spool_release - move between deferred/ and hold/ (release: due now). 0, 1 gone, -1 error. */
int spool_hold(SPOOL *sp, const char *id);
int spool_release(SPOOL *sp, const char *id);

/*
 * spool_scan - call cb for each message in queue, one directory entry at
 * a time (no list in memory): its id, mtime (the next try in deferred/)
 * and size. cb returns nonzero to stop. Count of entries seen, or -1.
 */
long long spool_scan(SPOOL *sp, const char *queue,
                     int (*cb)(void *arg, const char *id, long long mtime, long long size), void *arg);

/* spool_find - which queue holds id: SPOOL_DEFERRED, SPOOL_HOLD, or NULL */
const char *spool_find(SPOOL *sp, const char *id);

/*
 * spool_set_batch - on: spool_remove/hold/release skip their directory
 * fsync (`rcptgate queue delete ALL` on 100,000 messages); the caller
 * ends with spool_sync(). Off by default.
 */
void spool_set_batch(SPOOL *sp, int on);

/* spool_sync - fsync the queue directories (after a batch); 0 or -1 */
int spool_sync(SPOOL *sp);

/* --- resources and the trigger --- */

/*
 * spool_space_ok - may a message of about size bytes be taken? Free space
 * (statvfs) must stay above minfree + size. 1 yes, 0 no, -1 error.
 */
int spool_space_ok(SPOOL *sp, long long size, long long minfree);

/*
 * spool_writable - does the queue directory take writes? A probe file
 * made and removed in incoming/ (a read-only remount, a disk error or
 * lost permissions fail it). 0 yes, -1 no (errno).
 */
int spool_writable(SPOOL *sp);

/* spool_trigger_fd - the FIFO's read end (nonblocking) for the event loop, opened once; -1 on error */
int spool_trigger_fd(SPOOL *sp);

/* spool_trigger - wake the queue manager of the spool in dir (nonblocking; 0, or -1 when nobody listens) */
int spool_trigger(const char *dir);

#endif
