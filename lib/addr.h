/*
 * addr.h - RFC 5321 paths and the normal form rcptgate compares
 *
 * addr_parse() takes an address as SMTP or Postfix presents it (with or
 * without the angle brackets of a path) and yields its normal form: the
 * local part unquoted where quoting adds nothing and ASCII-lowercased
 * (UTF-8 bytes kept as they are), the domain as a lowercase A-label
 * (libidn2). Everything that compares addresses goes through here, so the
 * store, the socketmap, the policy service and smtpd agree.
 *
 * Refused unless a flag allows them: source routes (<@a,@b:u@d>), the
 * "%" hack (u%other@d), bang paths (a!u@d) and more than one unquoted "@".
 *
 * The normal form, precisely:
 * - a quoted local part loses its quotes when the content is a dot-atom
 *   that would parse unquoted under the same flags ("John"@x is john@x);
 *   otherwise it keeps them, escaping only '"' and '\'. "a@b"@d therefore
 *   never equals a@b, and "u%v"@d stays quoted unless ADDR_ALLOW_PERCENT;
 * - the domain has no trailing dot; IDNs use UTS #46 non-transitional
 *   processing with no transitional fall-back (refused: ADDR_ERR_IDN);
 * - an address literal is written in inet_ntop() form with a lowercase
 *   tag: "[192.0.2.1]", "[ipv6:2001:db8::1]";
 * - the key parses back to itself with the same flags (a fixed point).
 * Limits: the path limit counts "<" and ">" even when the input has none,
 * and applies to the normal form too (an A-label can be longer than the
 * name that was typed).
 */
#ifndef RG_ADDR_H
#define RG_ADDR_H

#include <stddef.h>

#define ADDR_LOCAL_MAX  64      /* RFC 5321 4.5.3.1.1 */
#define ADDR_DOMAIN_MAX 255     /* RFC 5321 4.5.3.1.2 */
#define ADDR_PATH_MAX   256     /* RFC 5321 4.5.3.1.3, with the brackets */
#define ADDR_KEY_SIZE   (ADDR_PATH_MAX + 64)

/* addr_parse flags */
#define ADDR_ALLOW_ROUTE    0x01    /* accept a source route and ignore it */
#define ADDR_ALLOW_PERCENT  0x02    /* "%" in a local part is an ordinary character */
#define ADDR_ALLOW_BANG     0x04    /* "!" in a local part is an ordinary character */
#define ADDR_ALLOW_NULL     0x08    /* accept the null path <> (a sender) */
#define ADDR_ALLOW_BARE     0x10    /* accept a local part without domain (RCPT TO:<postmaster>) */
/*
 * accept a local part over ADDR_LOCAL_MAX (the path limit still holds): for
 * senders, whose SRS, BATV and VERP local parts can be longer and which
 * Postfix and the other common MTAs take; never for the store's keys
 */
#define ADDR_ALLOW_LONG_LOCAL 0x20

/* addr_parse results */
enum addr_error {
    ADDR_OK = 0,
    ADDR_ERR_EMPTY,             /* nothing, or <> without ADDR_ALLOW_NULL */
    ADDR_ERR_SYNTAX,            /* not an RFC 5321 mailbox */
    ADDR_ERR_PATH_LONG,         /* more than ADDR_PATH_MAX */
    ADDR_ERR_LOCAL_LONG,        /* local part over ADDR_LOCAL_MAX octets (without ADDR_ALLOW_LONG_LOCAL) */
    ADDR_ERR_DOMAIN_LONG,       /* domain over ADDR_DOMAIN_MAX or a label over 63 */
    ADDR_ERR_NO_DOMAIN,         /* no "@domain" */
    ADDR_ERR_DOMAIN,            /* domain syntax */
    ADDR_ERR_IDN,               /* internationalised domain libidn2 refuses */
    ADDR_ERR_ROUTE,             /* source route */
    ADDR_ERR_PERCENT,           /* "%" hack */
    ADDR_ERR_BANG,              /* bang path */
    ADDR_ERR_MULTI_AT,          /* user@a@b */
    ADDR_ERR_UTF8,              /* invalid UTF-8 */
};

typedef struct addr {
    char local[ADDR_KEY_SIZE];          /* normal form of the local part */
    char domain[ADDR_DOMAIN_MAX + 1];   /* lowercase A-label, "[...]" for a literal, "" if none */
    char key[ADDR_KEY_SIZE];            /* local@domain; "" for the null path */
    int is_null;                        /* <> */
    int is_literal;                     /* domain is an address literal */
    int is_utf8;                        /* non-ASCII in local part or domain */
} ADDR;

/*
 * addr_parse - parse len bytes at in (not NUL-terminated); ADDR_OK or an error.
 * An empty input or "<>" is the null path (is_null, key "") with
 * ADDR_ALLOW_NULL, else ADDR_ERR_EMPTY. With ADDR_ALLOW_BARE a local part
 * alone gives domain "" and key = local. is_utf8: the local part or the
 * domain as given held non-ASCII. On error every string in out is "".
 * Allocates nothing itself; libidn2 (which does) is called only for
 * non-ASCII names and names with "xn--" labels.
 */
int addr_parse(const char *in, size_t len, int flags, ADDR *out);

/* addr_strerror - short English text for an addr_error value */
const char *addr_strerror(int err);

/*
 * addr_domain - normalise a domain name alone (A-label, lowercase, no
 * trailing dot); out must hold ADDR_DOMAIN_MAX + 1. ADDR_OK or an error.
 * The same rules as the domain of addr_parse(), literals included; an
 * empty input is ADDR_ERR_EMPTY. out is "" on error.
 */
int addr_domain(const char *in, size_t len, char *out);

/*
 * addr_strip_extension - copy local to out without its address extension:
 * the first character of delims found after the first position ends the
 * local part ("user+tag" -> "user"). Returns 1 if something was removed,
 * 0 if not (out then equals local). out holds ADDR_KEY_SIZE.
 * local is a normal-form local part: a quoted one (leading '"') is never
 * cut, "+tag" keeps its leading "+", and "user+" becomes "user". Only
 * ASCII characters of delims count.
 */
int addr_strip_extension(const char *local, const char *delims, char *out);

/* addr_key flags, besides ADDR_ALLOW_ROUTE, _PERCENT and _BANG */
#define ADDR_KEY_CATCHALL   0x100   /* "@domain" is a catch-all key */

/*
 * addr_key - the store's key for a recipient: the one normaliser of the
 * admin command, the map file reader and syncd's sources. White space
 * (ASCII blanks, CR, LF) around in is ignored; the rest must be an
 * address with a domain (addr_parse() with the ROUTE/PERCENT/BANG bits of
 * flags; the null path "<>", an empty input and a bare local part are
 * refused) or, with ADDR_KEY_CATCHALL, "@domain" (out "@" + addr_domain()).
 * out holds ADDR_KEY_SIZE. Returns 0, or -1 with the reason (which does
 * not repeat the input) in err.
 */
int addr_key(const char *in, size_t len, int flags, char *out, char *err, size_t errlen);

/*
 * addr_external - an address in Postfix's internal form, as its policy
 * delegation sends it (the local part's quotes taken off: "john
 * doe@example.com"), in the external form addr_parse reads: the local
 * part, before the last '@', quoted ("\"john doe\"@example.com") when it
 * holds white space or one of ",:;<>()[]\\" (and no '@' or '"'). out
 * holds at least 2 * strlen(in) + 3 bytes (else it is ""); returns out.
 */
char *addr_external(const char *in, char *out, size_t size);

#endif
