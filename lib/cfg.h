/*
 * cfg.h - rcptgate.conf, one INI file for every program
 *
 * A program describes what it reads as typed tables of parameters, one
 * table per section it owns (its own section plus the shared ones such as
 * [store] and [address]). cfg_load() reads the whole file with inih,
 * reports every problem as "file:line: message" through log_err(), and
 * assigns the variables only when the whole file is good: a failed reload
 * leaves the running configuration untouched.
 *
 * Sections that belong to other programs ([smtpd] while lookupd reads)
 * are skipped; a section name no program knows is an error, and so is an
 * unknown key, a bad value or a missing required key in an owned section.
 */
#ifndef RG_CFG_H
#define RG_CFG_H

#include <stddef.h>
#include <sys/stat.h>

enum cfg_type {
    CFG_STR,        /* char **: any string, may be empty */
    CFG_PATH,       /* char **: empty, or an absolute path */
    CFG_INT,        /* int *: decimal integer in [min, max] */
    CFG_BOOL,       /* int *: yes/no, true/false, on/off, 1/0 */
    CFG_TIME,       /* int * in milliseconds: "250ms", "30", "30s", "5m", "2h", "1d" */
    CFG_SIZE,       /* long long * in bytes: "1000", "10k", "50m", "1g" */
    CFG_ENUM,       /* char **: one of the '|'-separated choices */
    CFG_LIST,       /* char **: the key may be repeated; values joined by '\n' */
};

/*
 * CFG_RESTART - OR'ed into a table entry's type ("CFG_STR | CFG_RESTART"):
 * the program uses the value only when it starts (a listener, the user,
 * the pid file). Once cfg_restart_pin() has been called, a reload that
 * changes such a value logs it once as ignored and keeps the old one.
 * CFG_TYPE() is the type without the flag.
 */
#define CFG_RESTART     0x100
#define CFG_TYPE(p)     ((enum cfg_type) ((p)->type & 0xff))

typedef struct cfg_param {
    const char *name;
    enum cfg_type type;         /* with CFG_RESTART, maybe */
    const char *defval;         /* NULL: the key is required */
    void *var;
    long long min, max;         /* bounds for INT, TIME (ms), SIZE; both 0: none */
    const char *choices;        /* CFG_ENUM: "none|starttls|ldaps" */
    /* optional extra check of a syntactically valid value; 0 good, -1 bad */
    int (*check)(const char *value, char *err, size_t errlen);
} CFG_PARAM;

/* A section this program owns; params end with a NULL name. */
typedef struct cfg_section {
    const char *name;
    const CFG_PARAM *params;
} CFG_SECTION;

/*
 * cfg_load - read path, apply tables (NULL-name terminated array).
 * Returns the number of errors found (0: variables assigned). Strings held
 * by CFG_STR/CFG_PATH/CFG_ENUM variables belong to cfg and are replaced on
 * the next successful load; do not keep pointers to them across reloads.
 */
int cfg_load(const char *path, const CFG_SECTION *sections);

/*
 * After a load that returned 0, the replaced values are kept aside until
 * the program decides: cfg_commit() frees them (the new values stay),
 * cfg_rollback() puts them back and frees the new ones, so that a daemon
 * whose own checks refuse the new file after it loaded (a user that no
 * longer exists, rules_init() failing) runs on exactly as before, and
 * nothing it still points at has been freed. Every load first commits
 * one nobody decided on, so after a load that failed (and assigned
 * nothing) both do nothing.
 */
void cfg_commit(void);
void cfg_rollback(void);

/*
 * cfg_section_seen - 1 if the file last loaded without errors had a key
 * in [name] (a family section by its full name, "source corp").
 */
int cfg_section_seen(const char *name);

/*
 * cfg_section_listed - 1 if the file last loaded without errors had a
 * [name] line, keys under it or not: the packaged file's [lookupd], with
 * every key commented out, is lookupd set up with its defaults.
 */
int cfg_section_listed(const char *name);

/*
 * cfg_family_seen - the names of the [family NAME] sections in the file
 * last loaded without errors ("corp" for "[source corp]"), whether or not
 * this program loads that family: into names[max], the count found (more
 * than max are counted, not kept).
 */
#define CFG_NAME_LEN 64
int cfg_family_seen(const char *family, char (*names)[CFG_NAME_LEN], int max);

/*
 * A family of sections, such as [source corp] and [source cloud]: one
 * instance per section. The instance is a struct of instance_size bytes
 * that must begin with "char *name" (set to the part after the family
 * word); the params' var fields are offsets into it (CFG_OFFSET).
 */
#define CFG_OFFSET(type, field) ((void *) offsetof(type, field))

typedef struct cfg_family {
    const char *name;                   /* "source" */
    const CFG_PARAM *params;            /* var = CFG_OFFSET(struct, field) */
    size_t size;                        /* sizeof the instance struct */
    /* check one filled-in instance; report with log_err("file:line: ..."), return the count */
    int (*validate)(const char *file, int line, const char *name, void *instance);
    /* a good load hands over every instance (the array and each one) */
    void (*install)(void **instances, int count);
    /*
     * the parameter naming the user the family's daemon runs as ([SECTION]
     * KEY, e.g. syncd user), or NULL: its secret files may belong to that
     * user (cfg_secret_owner), known before validate() reads them
     */
    const char *owner_section;
    const char *owner_key;
} CFG_FAMILY;

/*
 * cfg_load_families - cfg_load() plus family sections (array ended by a
 * NULL name). install() is called only when the whole file is good.
 */
int cfg_load_families(const char *path, const CFG_SECTION *sections, const CFG_FAMILY *families);

/* cfg_family_free - free one instance and the strings it holds; NULL is fine */
void cfg_family_free(const CFG_FAMILY *family, void *instance);

/*
 * cfg_restart_pin - a daemon that has started calls this once: from now
 * on every CFG_RESTART parameter keeps the value of the last good load.
 * A later load that changes one logs "reload: [SECTION] NAME changes take
 * effect only after a restart; ignored" and assigns the pinned value.
 */
void cfg_restart_pin(void);

/* cfg_defaults - assign every default without reading a file (for tests) */
void cfg_defaults(const CFG_SECTION *sections);

/* cfg_parse_time - "30s" style value to milliseconds; -1 if malformed */
long long cfg_parse_time(const char *value);

/* cfg_parse_size - "10m" style value to bytes; -1 if malformed */
long long cfg_parse_size(const char *value);

/* cfg_parse_bool - 1 true, 0 false, -1 not a boolean */
int cfg_parse_bool(const char *value);

/*
 * cfg_secret_read - read a secret (password, client secret) from a file.
 * The file must be a regular file not readable or writable by group or
 * others. One trailing newline is removed. On success *out is a new string
 * for xfree_secret(); on failure err says why (never the secret itself).
 */
int cfg_secret_read(const char *path, char **out, char *err, size_t errlen);

/*
 * cfg_secret_owner - the daemon's user, whose files secrets may also be
 * (besides root's and the running user's), so that -n run as root judges
 * a file as the daemon will. NULL, empty or unknown: no one else.
 */
void cfg_secret_owner(const char *user);

/*
 * cfg_check_secrets - whether loading a configuration judges the secret
 * files it names (their modes, that they can be read): 1, the default,
 * for the daemons and every -n. The admin command's other subcommands
 * set 0: they read no secret, and may run as a user that cannot (a
 * monitoring plugin's rcptgate check).
 */
extern int cfg_check_secrets;

/*
 * cfg_secret_ok - may a secret (password, private key) be read from path,
 * whose fstat() or stat() is sb? It must be a regular file owned by root,
 * the running user or cfg_secret_owner()'s (a file of another user's is
 * that user's to change), and open to no others; with group_read its
 * group may read it (Debian keeps keys 0640 root:ssl-cert) but never
 * write it. 1, or 0 with why set to what is wrong and the fix. what
 * names the setting in the message ("secret file", "tls_key_file").
 */
int cfg_secret_ok(const char *what, const char *path, const struct stat *sb, int group_read,
                  char *why, size_t size);

/* cfg_default_path - the compiled-in configuration file path */
const char *cfg_default_path(void);

#endif
