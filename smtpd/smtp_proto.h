/*
 * smtp_proto.h - SMTP command lines, paths and ESMTP parameters, parsed
 *
 * Pure parsing: no I/O, no allocation, no global state, so the unit test
 * and the fuzz target drive it directly. Input is one command line
 * without its CRLF; the session has already refused NUL bytes, bare CR
 * and bare LF in it. Replies for malformed input are Postfix's, written
 * into a caller's buffer ("501 5.5.4 Syntax: MAIL FROM:<address>").
 */
#ifndef RG_SMTP_PROTO_H
#define RG_SMTP_PROTO_H

#include <stddef.h>

/* The commands we know; SMTP_CMD_UNKNOWN for anything else. */
enum smtp_cmd {
    SMTP_CMD_UNKNOWN = 0,
    SMTP_CMD_HELO, SMTP_CMD_EHLO, SMTP_CMD_STARTTLS, SMTP_CMD_AUTH,
    SMTP_CMD_MAIL, SMTP_CMD_RCPT, SMTP_CMD_DATA, SMTP_CMD_RSET,
    SMTP_CMD_NOOP, SMTP_CMD_VRFY, SMTP_CMD_HELP, SMTP_CMD_QUIT,
    SMTP_CMD_FORBIDDEN,         /* GET, POST, CONNECT, "Header:" (a web proxy or a message body) */
    SMTP_CMD_COUNT
};

/* smtp_proto_cmd_name - "ehlo", "mail", ... "unknown" (the disconnect line's names) */
const char *smtp_proto_cmd_name(int cmd);

/*
 * smtp_proto_upper - at most len bytes of src, ASCII-uppercased, into dst
 * (NUL-terminated, cut to size - 1). Returns dst. For log lines and
 * mechanism names: verbs and mechanisms are case-insensitive.
 */
char *smtp_proto_upper(char *dst, size_t size, const char *src, size_t len);

/*
 * smtp_proto_split - the verb of line (case-insensitive) and where its
 * argument starts (after blanks; "" if none). Returns the command.
 */
int smtp_proto_split(const char *line, const char **arg);

/*
 * smtp_proto_group_end - 1 if RFC 2920 allows cmd only as the last
 * command of a pipelined group (EHLO, HELO, DATA, VRFY, NOOP, QUIT,
 * STARTTLS, AUTH): input that follows it before our reply is improper.
 */
int smtp_proto_group_end(int cmd);

/* RFC 5321 limits, counted in octets. */
#define SMTP_LOCAL_MAX      64          /* a recipient's; a sender's is bounded by the path */
#define SMTP_DOMAIN_MAX     255
#define SMTP_PATH_MAX       256         /* with the angle brackets */

#define SMTP_BODY_NONE      0
#define SMTP_BODY_7BIT      1
#define SMTP_BODY_8BITMIME  2

/* RFC 3461: the same values as spool.h's SPOOL_RET_* and SPOOL_NOTIFY_* */
#define SMTP_RET_NONE       0
#define SMTP_RET_FULL       1
#define SMTP_RET_HDRS       2
#define SMTP_NOTIFY_NEVER   1
#define SMTP_NOTIFY_SUCCESS 2
#define SMTP_NOTIFY_FAILURE 4
#define SMTP_NOTIFY_DELAY   8
#define SMTP_ENVID_MAX      100         /* RFC 3461 section 4.4: ENVID, decoded */
#define SMTP_ORCPT_MAX      500         /* RFC 3461 section 4.2: ORCPT, as given (type and xtext) */

/* A parsed MAIL FROM or RCPT TO. */
typedef struct smtp_path {
    char addr[SMTP_PATH_MAX + 1];       /* the mailbox without brackets or route; "" null path */
    char raw[SMTP_PATH_MAX + 1];        /* the path as given, without brackets (route kept) */
    const char *domain;                 /* points into addr after '@'; "" if none */
    int is_null;                        /* <> */
    int has_route;                      /* a source route was given (and stripped from addr) */
    int is_utf8;                        /* non-ASCII octets in the mailbox */
    /* ESMTP parameters (MAIL) */
    long long size;                     /* SIZE=, -1 if not given; LLONG_MAX if absurd */
    int body;                           /* SMTP_BODY_* */
    int smtputf8;                       /* SMTPUTF8 given */
    /* RFC 3461 DSN parameters, validated; xtext kept as given */
    int ret;                            /* MAIL RET=: SMTP_RET_* */
    char envid[SMTP_ENVID_MAX + 1];     /* MAIL ENVID=, "" none */
    int notify;                         /* RCPT NOTIFY=: SMTP_NOTIFY_* bits, 0 not given */
    char orcpt[SMTP_ORCPT_MAX + 1];     /* RCPT ORCPT= ("rfc822;a@b"), "" none */
    /* what to pass on downstream: "SIZE=123 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x",
       for RCPT "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b" (the relay drops DSN's
       when the next hop does not offer DSN) */
    char params[SMTP_ENVID_MAX + SMTP_ORCPT_MAX + 128];
} SMTP_PATH;

/*
 * smtp_proto_mail - parse the argument of MAIL ("FROM:<a@b> SIZE=10").
 * The sender's local part may be longer than SMTP_LOCAL_MAX (the path
 * limit holds); a recipient's may not.
 * 0 and *out filled, or an SMTP reply code with reply set: 501 syntax,
 * 553 non-ASCII without SMTPUTF8, 555 unknown parameter. SIZE is not
 * compared with any limit here. RET and ENVID (RFC 3461) are checked:
 * RET=FULL|HDRS, ENVID xtext of at most 100 octets decoded, each once.
 */
int smtp_proto_mail(const char *arg, SMTP_PATH *out, char *reply, size_t replylen);

/*
 * smtp_proto_rcpt - parse the argument of RCPT ("TO:<a@b>"); as
 * smtp_proto_mail. NOTIFY (NEVER alone, or SUCCESS, FAILURE, DELAY) and
 * ORCPT (addr-type ";" xtext) as RFC 3461 has them, each once.
 */
int smtp_proto_rcpt(const char *arg, int smtputf8, SMTP_PATH *out, char *reply, size_t replylen);

/*
 * The message scanner (DATA). Only <CR><LF>.<CR><LF> ends a message. A
 * bare CR or LF is an error, or with normalize a line end, for finding
 * the end and for the bytes passed on alike (so nothing downstream can
 * see an end of data, or a line, that we did not). Output is CRLF lines
 * with dot-stuffing as it came, without the final dot line.
 */
typedef struct smtp_data_scan {
    unsigned char state;        /* 0 inside a line, 1 at a line start, 2 after CR */
    unsigned char dot;          /* the line so far is a single "." (held back) */
    unsigned char normalize;    /* bare CR/LF end a line instead of being errors */
    unsigned char bare;         /* normalize: the last line ended bare, so a "." line cannot end the message */
} SMTP_DATA_SCAN;

enum smtp_data_status {
    SMTP_DATA_MORE,             /* all input taken; the message goes on */
    SMTP_DATA_END,              /* the final dot was taken; the rest of the input is commands */
    SMTP_DATA_FULL,             /* out is full: pass it on, call again with the rest */
    SMTP_DATA_BARE_CR,          /* a bare CR (not normalize) */
    SMTP_DATA_BARE_LF,          /* a bare LF (not normalize) */
};

/* smtp_proto_data_init - a scanner at the start of a message */
void smtp_proto_data_init(SMTP_DATA_SCAN *ds, int normalize);

/*
 * smtp_proto_data_scan - scan len bytes of message input; *used is what
 * was taken, out[0..*outlen) what goes downstream (outsize >= 4).
 * Returns an smtp_data_status. Input may be split anywhere.
 */
int smtp_proto_data_scan(SMTP_DATA_SCAN *ds, const char *in, size_t len, size_t *used,
                         char *out, size_t outsize, size_t *outlen);

/*
 * The hop counter (DATA): how many Received: fields the message's header
 * holds, as the scanner passes its output on, so that a mail loop stops
 * (hopcount_limit). The header ends at the first empty line or at the
 * first line that is neither a field ("name:", white space allowed
 * before the colon) nor the continuation of one; the body is not read.
 */
typedef struct smtp_hops {
    unsigned char state;        /* enum in smtp_proto.c: where in a header line */
    unsigned char len;          /* bytes of the field name so far (saturates) */
    char name[8];               /* its first bytes, lowercase: is it "received"? */
    int count;                  /* Received: fields so far */
} SMTP_HOPS;

/* smtp_proto_hops_init - a counter at the start of a message */
void smtp_proto_hops_init(SMTP_HOPS *h);

/* smtp_proto_hops_scan - count the Received: fields in n more bytes of the message; the count so far */
int smtp_proto_hops_scan(SMTP_HOPS *h, const char *buf, size_t n);

#endif
