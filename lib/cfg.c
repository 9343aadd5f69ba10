/*
 * cfg.c - read rcptgate.conf (see cfg.h)
 *
 * inih splits the file into (section, key, value); a reader of our own
 * feeds it line by line so that every key is known with its line number,
 * and so that an over-long line is an error instead of being cut in two.
 * Loading is two passes over the collected entries: first every value is
 * checked and every problem reported, then, only if there were none, the
 * variables are assigned. A bad reload therefore changes nothing.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "xalloc.h"

#ifndef RG_SYSCONFDIR
#define RG_SYSCONFDIR "/etc"
#endif

#define CFG_MAX_LINE    4096
#define CFG_SECTION_MAX 49      /* inih keeps 50 bytes of a section name, the NUL included */
/* A secret file: a password, or a private key (an RSA-4096 key with its certificate in one PEM is 5 kB) */
#define CFG_MAX_SECRET  65536

/*
 * Every section any rcptgate program reads. A program skips the ones it
 * does not own; a name not listed here is a typo and an error.
 */
static const char *const cfg_known_sections[] = {
    "store", "address", "log", "rules", "lookupd", "syncd", "smtpd", NULL,
};

/*
 * Sections whose keys moved to another: [rules] holds what was [smtpd]'s
 * (the rules every front end shares). A program that owns the new
 * section still reads such a key in its old one, and says so once.
 */
static const struct {
    const char *from, *to;
} cfg_moved[] = {
    {"smtpd", "rules"},
    {NULL, NULL},
};
static int cfg_moved_warned;            /* the warning is given once per process */
static const char *const cfg_known_families[] = {
    "source", NULL,             /* [source NAME] */
};

typedef struct cfg_entry {
    char *section;
    char *key;
    char *value;
    int line;
} CFG_ENTRY;

typedef struct cfg_parse {
    const char *path;
    FILE *fp;
    int line;                   /* lines handed to inih so far */
    int errors;
    CFG_ENTRY *entries;
    size_t count, size;
    char **long_values;         /* every value, kept whole (cfg_reader) */
    size_t long_count;
    char *headers;              /* "name\n" for each [name] line, even without keys */
    size_t headers_len;
} CFG_PARSE;

/* cfg_error - report one problem as file:line: message */
static void RG_PRINTF(3, 4) cfg_error(CFG_PARSE *cp, int line, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (line > 0)
        log_err("%s:%d: %s", cp->path, line, buf);
    else
        log_err("%s: %s", cp->path, buf);
    cp->errors++;
}

/*
 * cfg_header - note a "[name]" line's name, as inih reads it (up to the
 * first ']'), so that a section with no key under it still counts as
 * there: the packaged file has [lookupd] with every key commented out.
 */
static void cfg_header(CFG_PARSE *cp, const char *line)
{
    const char *p = line + strspn(line, " \t"), *end;
    size_t n;

    if (*p != '[' || (end = strchr(p + 1, ']')) == NULL || end == p + 1 || memchr(p, '\n', (size_t) (end - p)))
        return;
    n = (size_t) (end - p - 1);
    cp->headers = xrealloc(cp->headers, cp->headers_len + n + 2);
    memcpy(cp->headers + cp->headers_len, p + 1, n);
    cp->headers_len += n;
    cp->headers[cp->headers_len++] = '\n';
    cp->headers[cp->headers_len] = 0;
}

/*
 * cfg_reader - hand inih one line, counting lines.
 *
 * Every line is judged here, so that one rule holds whatever its length
 * (Debian's inih reads into a fixed 200-byte buffer, and strips " ;..."
 * as a comment and joins indented lines to the key above, which
 * rcptgate.conf(5) does not have):
 *   - blank, or '#' or ';' first: a comment, however long;
 *   - "[name]": handed on, unless the name is longer than inih keeps
 *     (CFG_SECTION_MAX: it would be cut, and two sections merged);
 *   - "key = value": the value is kept aside whole, text after a ';'
 *     included, and inih sees "key = \001N"; cfg_handler swaps the value
 *     back in;
 *   - anything else is an error: indented text continues no value.
 * Lines over CFG_MAX_LINE are errors.
 */
static char *cfg_reader(char *str, int num, void *stream)
{
    CFG_PARSE *cp = stream;
    char *line = NULL, *p, *eq;
    size_t cap = 0;
    ssize_t len;

    if ((len = getline(&line, &cap, cp->fp)) < 0) {
        free(line);
        return NULL;
    }
    cp->line++;
    p = line;
    if (cp->line == 1 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;                         /* a UTF-8 byte order mark */
    p += strspn(p, " \t");
    snprintf(str, (size_t) num, "\n");
    if ((size_t) len != strlen(line)) {
        cfg_error(cp, cp->line, "NUL character in line");
    } else if (len > CFG_MAX_LINE) {
        cfg_error(cp, cp->line, "line longer than %d characters", CFG_MAX_LINE);
    } else if (*p == '\0' || *p == '\r' || *p == '\n' || *p == '#' || *p == ';') {
        ;                               /* blank or a comment */
    } else if (*p == '[') {
        char *end = strchr(p, ']');

        cfg_header(cp, p);
        if (end != NULL && end - p - 1 > CFG_SECTION_MAX)
            cfg_error(cp, cp->line, "section name longer than %d characters: [%.60s...]", CFG_SECTION_MAX, p + 1);
        else
            snprintf(str, (size_t) num, "%s", p);       /* fits: inih says what else is wrong */
    } else if ((eq = strchr(p, '=')) == NULL || eq - p > num / 2) {
        cfg_error(cp, cp->line, p > line && eq == NULL && cp->count > 0
                  ? "indented text: a value does not continue on the next line"
                  : "syntax error: expected key = value");
    } else {
        char *value = eq + 1;

        value += strspn(value, " \t");
        value[strcspn(value, "\r\n")] = 0;
        for (char *end = value + strlen(value); end > value && (end[-1] == ' ' || end[-1] == '\t');)
            *--end = 0;
        cp->long_values = xrealloc(cp->long_values, (cp->long_count + 1) * sizeof(char *));
        cp->long_values[cp->long_count] = xstrdup(value);
        snprintf(str, (size_t) num, "%.*s= \001%zu\n", (int) (eq - p), p, cp->long_count++);
    }
    free(line);
    return str;
}

/* cfg_handler - collect one key = value */
static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
    CFG_PARSE *cp = user;
    CFG_ENTRY *e;

    if (cp->count == cp->size) {
        cp->size = cp->size ? 2 * cp->size : 32;
        cp->entries = xrealloc(cp->entries, cp->size * sizeof(*cp->entries));
    }
    e = &cp->entries[cp->count++];
    e->section = xstrdup(section);
    e->key = xstrdup(name);
    if (value && value[0] == '\001') {
        size_t n = strtoul(value + 1, NULL, 10);

        e->value = xstrdup(n < cp->long_count ? cp->long_values[n] : "");
    } else {
        e->value = xstrdup(value ? value : "");
    }
    e->line = cp->line;
    return 1;
}

/* cfg_parse_free - release collected entries */
static void cfg_parse_free(CFG_PARSE *cp)
{
    for (size_t i = 0; i < cp->count; i++) {
        free(cp->entries[i].section);
        free(cp->entries[i].key);
        free(cp->entries[i].value);
    }
    free(cp->entries);
    for (size_t i = 0; i < cp->long_count; i++)
        free(cp->long_values[i]);
    free(cp->long_values);
    free(cp->headers);
}

/* cfg_section_known - is this a section name some program reads? */
static int cfg_section_known(const char *name)
{
    for (int i = 0; cfg_known_sections[i]; i++)
        if (strcmp(name, cfg_known_sections[i]) == 0)
            return 1;
    for (int i = 0; cfg_known_families[i]; i++) {
        size_t n = strlen(cfg_known_families[i]);

        if (strncmp(name, cfg_known_families[i], n) == 0 && name[n] == ' ' && name[n + 1] != 0)
            return 1;
    }
    return 0;
}

/* cfg_find_section - the owned section of that name, or NULL */
static const CFG_SECTION *cfg_find_section(const CFG_SECTION *sections, const char *name)
{
    for (const CFG_SECTION *s = sections; s->name; s++)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

/* cfg_find_param - the parameter of that name in a section, or NULL */
static const CFG_PARAM *cfg_find_param(const CFG_SECTION *s, const char *name)
{
    for (const CFG_PARAM *p = s->params; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

/* cfg_distance - edit distance of a and b (insert, delete, replace, swap), capped at 3 */
static int cfg_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int d[CFG_NAME_LEN + 1][CFG_NAME_LEN + 1];

    if (la > CFG_NAME_LEN || lb > CFG_NAME_LEN || (la > lb ? la - lb : lb - la) > 2)
        return 3;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int) i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int) j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);

            if (d[i - 1][j] + 1 < c)
                c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c)
                c = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[la][lb] < 3 ? d[la][lb] : 3;
}

/*
 * cfg_unknown_key - an unknown key's error, with a hint: the section of
 * the program's that has such a key ([lookupd] mynetworks is [rules]'),
 * else a key of this section it may be a typo of ("polcy": policy)
 */
static void cfg_unknown_key(CFG_PARSE *cp, const CFG_SECTION *sections, const CFG_SECTION *own,
                            const CFG_ENTRY *e)
{
    const CFG_PARAM *best = NULL;
    const CFG_SECTION *best_s = NULL;
    int best_d = 3;

    for (const CFG_SECTION *s = sections; s->name; s++)
        if (s != own && cfg_find_param(s, e->key) != NULL) {
            cfg_error(cp, e->line, "unknown key \"%s\" in [%s]: it is a key of [%s]", e->key, e->section,
                      s->name);
            return;
        }
    /* This section's keys first: a typo there is likelier than a key misplaced and misspelt. */
    for (int pass = 0; pass < 2 && best == NULL; pass++)
        for (const CFG_SECTION *s = pass == 0 ? own : sections; s && s->name; s = pass == 0 ? NULL : s + 1)
            for (const CFG_PARAM *p = s->params; p->name; p++) {
                int d = cfg_distance(e->key, p->name);

                if (d < best_d && d <= (strlen(e->key) > 4 ? 2 : 1)) {
                    best_d = d;
                    best = p;
                    best_s = s;
                }
            }
    if (best != NULL && best_s == own)
        cfg_error(cp, e->line, "unknown key \"%s\" in [%s]: did you mean %s?", e->key, e->section, best->name);
    else if (best != NULL)
        cfg_error(cp, e->line, "unknown key \"%s\" in [%s]: did you mean %s in [%s]?", e->key, e->section,
                  best->name, best_s->name);
    else
        cfg_error(cp, e->line, "unknown key \"%s\" in [%s]", e->key, e->section);
}

/*
 * cfg_moved_param - for a key in its old section (not one the section
 * still has, if owned), the parameter of the owned section it moved to;
 * *to names that section. NULL if the key did not move.
 */
static const CFG_PARAM *cfg_moved_param(const CFG_SECTION *sections, const char *section,
                                        const char *key, const char **to)
{
    const CFG_SECTION *old = cfg_find_section(sections, section), *s;
    const CFG_PARAM *p;

    if (old != NULL && cfg_find_param(old, key) != NULL)
        return NULL;
    for (int i = 0; cfg_moved[i].from; i++) {
        if (strcmp(cfg_moved[i].from, section) != 0 || (s = cfg_find_section(sections, cfg_moved[i].to)) == NULL)
            continue;
        if ((p = cfg_find_param(s, key)) != NULL) {
            *to = s->name;
            return p;
        }
    }
    return NULL;
}

/* cfg_parse_number - decimal with an optional unit suffix from a table */
static long long cfg_parse_number(const char *value, const char *const *units, const long long *mult)
{
    char *end;
    long long n;

    if (*value < '0' || *value > '9')
        return -1;
    errno = 0;
    n = strtoll(value, &end, 10);
    if (errno != 0)
        return -1;
    for (int i = 0; units[i]; i++) {
        if (strcmp(end, units[i]) == 0) {
            if (n > LLONG_MAX / mult[i])
                return -1;
            return n * mult[i];
        }
    }
    return -1;
}

/* cfg_parse_time - "30s" to milliseconds; a bare number is seconds */
long long cfg_parse_time(const char *value)
{
    static const char *const units[] = {"", "ms", "s", "m", "h", "d", NULL};
    static const long long mult[] = {1000, 1, 1000, 60000, 3600000, 86400000};

    return cfg_parse_number(value, units, mult);
}

/* cfg_parse_size - "10m" to bytes */
long long cfg_parse_size(const char *value)
{
    static const char *const units[] = {"", "k", "m", "g", "K", "M", "G", NULL};
    static const long long mult[] = {1, 1024, 1048576, 1073741824, 1024, 1048576, 1073741824};

    return cfg_parse_number(value, units, mult);
}

/* cfg_parse_bool - yes/no and friends */
int cfg_parse_bool(const char *value)
{
    static const char *const yes[] = {"yes", "true", "on", "1", NULL};
    static const char *const no[] = {"no", "false", "off", "0", NULL};

    for (int i = 0; yes[i]; i++)
        if (strcasecmp(value, yes[i]) == 0)
            return 1;
    for (int i = 0; no[i]; i++)
        if (strcasecmp(value, no[i]) == 0)
            return 0;
    return -1;
}

/* cfg_enum_ok - is value one of the '|'-separated choices? */
static int cfg_enum_ok(const char *value, const char *choices)
{
    size_t n = strlen(value);

    for (const char *c = choices; c && *c;) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t) (bar - c) : strlen(c);

        if (len == n && strncmp(c, value, n) == 0)
            return 1;
        c = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* cfg_bounds - describe [min, max] for a message */
static const char *cfg_bounds(const CFG_PARAM *p, char *buf, size_t size)
{
    if (CFG_TYPE(p) == CFG_TIME)
        snprintf(buf, size, "between %lldms and %lldms", p->min, p->max);
    else
        snprintf(buf, size, "between %lld and %lld", p->min, p->max);
    return buf;
}

/*
 * cfg_value - check one value and, when assign is set, store it.
 * Returns 0, or -1 with the reason in err. CFG_ASSIGN_CHECKED stores a
 * value cfg_check() has already judged without calling p->check again:
 * a check may read a file (a mynetworks file) that has changed since,
 * and that is for the program's own later steps (rules_init()) to find,
 * not a reason to stop an assignment half done.
 */
#define CFG_ASSIGN_CHECKED 2
static int cfg_value(const CFG_PARAM *p, const char *value, int assign, char *base, char *err, size_t errlen)
{
    void *var = base ? base + (uintptr_t) p->var : p->var;

    long long n = 0;
    char bounds[80];

    switch (CFG_TYPE(p)) {
    case CFG_STR:
    case CFG_LIST:
        break;
    case CFG_PATH:
        if (*value && *value != '/') {
            snprintf(err, errlen, "%s must be an absolute path", p->name);
            return -1;
        }
        break;
    case CFG_ENUM:
        if (!cfg_enum_ok(value, p->choices)) {
            snprintf(err, errlen, "%s must be one of %s, not \"%s\"", p->name, p->choices, value);
            return -1;
        }
        break;
    case CFG_BOOL:
        if ((n = cfg_parse_bool(value)) < 0) {
            snprintf(err, errlen, "%s must be yes or no, not \"%s\"", p->name, value);
            return -1;
        }
        break;
    case CFG_INT:{
            char *end;

            errno = 0;
            n = strtoll(value, &end, 10);
            if (*value == 0 || *end != 0 || errno != 0) {
                snprintf(err, errlen, "%s must be a whole number, not \"%s\"", p->name, value);
                return -1;
            }
            break;
        }
    case CFG_TIME:
        if ((n = cfg_parse_time(value)) < 0) {
            snprintf(err, errlen, "%s must be a time such as 30s, 5m or 250ms, not \"%s\"", p->name, value);
            return -1;
        }
        break;
    case CFG_SIZE:
        if ((n = cfg_parse_size(value)) < 0) {
            snprintf(err, errlen, "%s must be a size such as 10m or 512k, not \"%s\"", p->name, value);
            return -1;
        }
        break;
    }
    if ((CFG_TYPE(p) == CFG_INT || CFG_TYPE(p) == CFG_TIME || CFG_TYPE(p) == CFG_SIZE)
        && (p->min || p->max) && (n < p->min || n > p->max)) {
        snprintf(err, errlen, "%s must be %s, not \"%s\"", p->name, cfg_bounds(p, bounds, sizeof(bounds)), value);
        return -1;
    }
    if (p->check && assign != CFG_ASSIGN_CHECKED && p->check(value, err, errlen) < 0) {
        char *why = xstrdup(err);

        snprintf(err, errlen, "%s: %s", p->name, why);
        free(why);
        return -1;
    }
    if (!assign)
        return 0;
    switch (CFG_TYPE(p)) {
    case CFG_STR:
    case CFG_LIST:
    case CFG_PATH:
    case CFG_ENUM:
        free(*(char **) var);
        *(char **) var = xstrdup(value);
        break;
    case CFG_BOOL:
    case CFG_INT:
    case CFG_TIME:
        *(int *) var = (int) n;
        break;
    case CFG_SIZE:
        *(long long *) var = n;
        break;
    }
    return 0;
}

/* cfg_defaults - assign every default */
void cfg_defaults(const CFG_SECTION *sections)
{
    char err[256];

    for (const CFG_SECTION *s = sections; s->name; s++)
        for (const CFG_PARAM *p = s->params; p->name; p++)
            if (p->defval && cfg_value(p, p->defval, 1, NULL, err, sizeof(err)) < 0)
                log_panic("default of [%s] %s is invalid: %s", s->name, p->name, err);
}

/*
 * cfg_entry_value - the value of entry i for assignment: for a list, the
 * values of every entry with the same section and key, joined by newlines
 * (NULL for all but the first, which carries them all). Caller frees.
 */
static char *cfg_entry_value(CFG_PARSE *cp, size_t i, const CFG_PARAM *p)
{
    CFG_ENTRY *e = &cp->entries[i];
    char *joined;
    size_t len = 0;

    if (CFG_TYPE(p) != CFG_LIST)
        return xstrdup(e->value);
    for (size_t j = 0; j < i; j++)
        if (strcmp(cp->entries[j].section, e->section) == 0 && strcmp(cp->entries[j].key, e->key) == 0)
            return NULL;
    for (size_t j = i; j < cp->count; j++)
        if (strcmp(cp->entries[j].section, e->section) == 0 && strcmp(cp->entries[j].key, e->key) == 0)
            len += strlen(cp->entries[j].value) + 1;
    joined = xmalloc(len + 1);
    joined[0] = 0;
    for (size_t j = i; j < cp->count; j++) {
        if (strcmp(cp->entries[j].section, e->section) == 0 && strcmp(cp->entries[j].key, e->key) == 0) {
            if (joined[0])
                strcat(joined, "\n");
            strcat(joined, cp->entries[j].value);
        }
    }
    return joined;
}

/* cfg_check_duplicate - report entry i if its key was set before in its section */
static void cfg_check_duplicate(CFG_PARSE *cp, size_t i, const CFG_PARAM *p)
{
    CFG_ENTRY *e = &cp->entries[i];

    if (CFG_TYPE(p) == CFG_LIST)
        return;

    for (size_t j = 0; j < i; j++) {
        if (strcmp(cp->entries[j].section, e->section) == 0
            && strcmp(cp->entries[j].key, e->key) == 0) {
            cfg_error(cp, e->line, "duplicate key \"%s\" in [%s] (first set on line %d)",
                      e->key, e->section, cp->entries[j].line);
            return;
        }
    }
}

/* cfg_family_name - for "[source corp]" of family "source": "corp", else NULL */
static const char *cfg_family_name(const CFG_FAMILY *f, const char *section)
{
    size_t n = strlen(f->name);

    if (strncmp(section, f->name, n) == 0 && section[n] == ' ' && section[n + 1] != 0)
        return section + n + 1;
    return NULL;
}

/* cfg_find_family - the owned family a section belongs to, or NULL */
static const CFG_FAMILY *cfg_find_family(const CFG_FAMILY *families, const char *section)
{
    for (const CFG_FAMILY *f = families; f && f->name; f++)
        if (cfg_family_name(f, section))
            return f;
    return NULL;
}

/* cfg_find_family_param - a family's parameter by name */
static const CFG_PARAM *cfg_find_family_param(const CFG_FAMILY *f, const char *name)
{
    for (const CFG_PARAM *p = f->params; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

/* cfg_family_free - free an instance and the strings it holds */
void cfg_family_free(const CFG_FAMILY *f, void *instance)
{
    if (instance == NULL)
        return;
    for (const CFG_PARAM *p = f->params; p->name; p++)
        if (CFG_TYPE(p) == CFG_STR || CFG_TYPE(p) == CFG_PATH || CFG_TYPE(p) == CFG_ENUM
            || CFG_TYPE(p) == CFG_LIST)
            free(*(char **) ((char *) instance + (uintptr_t) p->var));
    free(*(char **) instance);
    free(instance);
}

/*
 * cfg_build_family - one instance per [FAMILY NAME] section: defaults,
 * then values, then the family's own validation. On success (and only
 * then, since errors may come from any part of the file) install() takes
 * them; otherwise they are freed.
 */
static void cfg_build_family(CFG_PARSE *cp, const CFG_FAMILY *f, int install)
{
    void **inst = NULL;
    int n = 0;
    char err[512];

    for (size_t i = 0; i < cp->count; i++) {
        const char *name = cfg_family_name(f, cp->entries[i].section);
        int seen = 0;
        int before;
        char *base;

        if (name == NULL)
            continue;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(cp->entries[j].section, cp->entries[i].section) == 0;
        if (seen)
            continue;
        base = xcalloc(1, f->size);
        *(char **) base = xstrdup(name);
        before = cp->errors;
        for (const CFG_PARAM *p = f->params; p->name; p++) {
            size_t j;

            if (p->defval && cfg_value(p, p->defval, 1, base, err, sizeof(err)) < 0)
                log_panic("default of [%s] %s is invalid: %s", f->name, p->name, err);
            for (j = i; j < cp->count; j++)
                if (strcmp(cp->entries[j].section, cp->entries[i].section) == 0
                    && strcmp(cp->entries[j].key, p->name) == 0)
                    break;
            if (j < cp->count) {
                char *value = cfg_entry_value(cp, j, p);

                (void) cfg_value(p, value, 1, base, err, sizeof(err));
                free(value);
            }
            else if (p->defval == NULL)
                cfg_error(cp, cp->entries[i].line, "[%s] %s is required", cp->entries[i].section, p->name);
        }
        /* validate() may rely on every required value being there */
        if (f->validate && cp->errors == before)
            cp->errors += f->validate(cp->path, cp->entries[i].line, name, base);
        inst = xrealloc(inst, (size_t) (n + 1) * sizeof(*inst));
        inst[n++] = base;
    }
    if (install && cp->errors == 0) {
        f->install(inst, n);
        return;
    }
    for (int k = 0; k < n; k++)
        cfg_family_free(f, inst[k]);
    free(inst);
}

/* cfg_check - first pass: report every problem, counting them in cp */
static void cfg_check(CFG_PARSE *cp, const CFG_SECTION *sections, const CFG_FAMILY *families)
{
    char err[512];
    const char *to;
    int moved = 0;

    for (size_t i = 0; i < cp->count; i++) {
        CFG_ENTRY *e = &cp->entries[i];
        const CFG_SECTION *s;
        const CFG_FAMILY *f;
        const CFG_PARAM *p;

        if (*e->section == 0) {
            cfg_error(cp, e->line, "\"%s\" is outside any [section]", e->key);
            continue;
        }
        if ((f = cfg_find_family(families, e->section)) != NULL) {
            if ((p = cfg_find_family_param(f, e->key)) == NULL) {
                /* A family's keys as a section of their own, for the typo hint. */
                const CFG_SECTION fs[2] = {{e->section, f->params}, {NULL, NULL}};

                cfg_unknown_key(cp, fs, &fs[0], e);
            }
            else if (cfg_value(p, e->value, 0, NULL, err, sizeof(err)) < 0)
                cfg_error(cp, e->line, "[%s] %s", e->section, err);
            else
                cfg_check_duplicate(cp, i, p);
            continue;
        }
        if ((p = cfg_moved_param(sections, e->section, e->key, &to)) != NULL) {
            /* the old spelling: read as the new one, unless the new one is there too */
            for (size_t j = 0; j < cp->count; j++)
                if (strcmp(cp->entries[j].section, to) == 0 && strcmp(cp->entries[j].key, e->key) == 0) {
                    cfg_error(cp, e->line, "\"%s\" is set in [%s] (line %d) and in [%s], its old place:"
                              " keep the one in [%s]", e->key, to, cp->entries[j].line, e->section, to);
                    break;
                }
            cfg_check_duplicate(cp, i, p);
            if (cfg_value(p, e->value, 0, NULL, err, sizeof(err)) < 0)
                cfg_error(cp, e->line, "[%s] %s", e->section, err);
            else if (!cfg_moved_warned)
                moved++;
            continue;
        }
        if ((s = cfg_find_section(sections, e->section)) == NULL) {
            /* Report an unknown section once, at its first key. */
            if (!cfg_section_known(e->section)
                && (i == 0 || strcmp(cp->entries[i - 1].section, e->section) != 0))
                cfg_error(cp, e->line, "unknown section [%s]", e->section);
            continue;
        }
        if ((p = cfg_find_param(s, e->key)) == NULL) {
            cfg_unknown_key(cp, sections, s, e);
            continue;
        }
        cfg_check_duplicate(cp, i, p);
        if (cfg_value(p, e->value, 0, NULL, err, sizeof(err)) < 0)
            cfg_error(cp, e->line, "[%s] %s", e->section, err);
    }
    /* Keys in their old section: once per process, each named with its line. */
    if (moved > 0 && cp->errors == 0) {
        for (size_t i = 0; i < cp->count; i++)
            if (cfg_moved_param(sections, cp->entries[i].section, cp->entries[i].key, &to) != NULL)
                log_warn("%s:%d: %s has moved from [%s] to [%s], where every front end reads it;"
                         " it is still read in [%s], but write it in [%s]",
                         cp->path, cp->entries[i].line, cp->entries[i].key, cp->entries[i].section, to,
                         cp->entries[i].section, to);
        cfg_moved_warned = 1;
    }
    /* Required keys. */
    for (const CFG_SECTION *s = sections; s->name; s++) {
        for (const CFG_PARAM *p = s->params; p->name; p++) {
            size_t i;

            if (p->defval)
                continue;
            for (i = 0; i < cp->count; i++)
                if (strcmp(cp->entries[i].section, s->name) == 0
                    && strcmp(cp->entries[i].key, p->name) == 0)
                    break;
            if (i == cp->count)
                cfg_error(cp, 0, "[%s] %s is required", s->name, p->name);
        }
    }
}

/* cfg_load - read and apply path (see cfg.h) */
int cfg_load(const char *path, const CFG_SECTION *sections)
{
    return cfg_load_families(path, sections, NULL);
}

/*
 * The sections with a key in the file last loaded without errors, for
 * cfg_section_seen(): "[smtpd]" absent means smtpd is not set up here;
 * and every [name] line of it, keys or not, for cfg_section_listed().
 */
static char *cfg_seen;                  /* "\n"-separated, with one at each end */
static char *cfg_listed;                /* the same */

/* cfg_seen_record - remember the sections of a good file */
static void cfg_seen_record(const CFG_PARSE *cp)
{
    size_t len = 2;
    char *p;

    for (size_t i = 0; i < cp->count; i++)
        len += strlen(cp->entries[i].section) + 1;
    free(cfg_seen);
    cfg_seen = p = xmalloc(len);
    *p++ = '\n';
    *p = 0;
    for (size_t i = 0; i < cp->count; i++) {
        const char *name = cp->entries[i].section;

        if (i > 0 && strcmp(cp->entries[i - 1].section, name) == 0)
            continue;
        p += strlen(p);
        sprintf(p, "%s\n", name);
    }
    /* Every [name] line, keys or not. */
    free(cfg_listed);
    cfg_listed = xmalloc(cp->headers_len + 2);
    snprintf(cfg_listed, cp->headers_len + 2, "\n%s", cp->headers ? cp->headers : "");
}

/* cfg_family_seen - the [family NAME] sections of the file last loaded (cfg.h) */
int cfg_family_seen(const char *family, char (*names)[CFG_NAME_LEN], int max)
{
    size_t n = strlen(family);
    int count = 0;

    for (const char *p = cfg_seen; p != NULL && *p; ) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t) (end - p) : strlen(p);

        if (len > n + 1 && strncmp(p, family, n) == 0 && p[n] == ' ') {
            if (count < max)
                snprintf(names[count], CFG_NAME_LEN, "%.*s", (int) (len - n - 1), p + n + 1);
            count++;
        }
        p = end ? end + 1 : p + len;
    }
    return count;
}

/* cfg_in_record - is name a whole line of the record? */
static int cfg_in_record(const char *record, const char *name)
{
    const char *p = record;
    size_t n = strlen(name);

    while (p != NULL && (p = strstr(p, name)) != NULL) {
        if (p > record && p[-1] == '\n' && p[n] == '\n')
            return 1;
        p += n;
    }
    return 0;
}

/* cfg_section_seen - did the file last loaded have a key in [name] (cfg.h)? */
int cfg_section_seen(const char *name)
{
    return cfg_in_record(cfg_seen, name);
}

/* cfg_section_listed - did the file last loaded have a [name] line, keys or not (cfg.h)? */
int cfg_section_listed(const char *name)
{
    return cfg_in_record(cfg_listed, name);
}

/*
 * The values of CFG_RESTART parameters: "last" as the last good load had
 * them, "pinned" as the running daemon started with them (once
 * cfg_restart_pin() was called). Values are compared as text, the list
 * values joined, so "10s" and "10000ms" count as a change: a reload that
 * merely rewrites a value is told to restart too, which does no harm.
 */
typedef struct cfg_fixed {
    const char *section;            /* static: the table's own strings */
    const char *name;
    char *value;
} CFG_FIXED;

static CFG_FIXED *cfg_fixed_last;
static size_t cfg_fixed_nlast;
static CFG_FIXED *cfg_fixed_pinned;
static size_t cfg_fixed_npinned;

/* cfg_fixed_free - a list of restart-only values */
static void cfg_fixed_free(CFG_FIXED *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i].value);
    free(list);
}

/*
 * cfg_fixed_value - the text a parameter was given by this file (its
 * default when absent), in its own section or in the old one it moved
 * from: a key written in its old place is the value the daemon runs with
 */
static char *cfg_fixed_value(CFG_PARSE *cp, const CFG_SECTION *sections, const CFG_SECTION *s,
                             const CFG_PARAM *p)
{
    const char *to;

    for (size_t i = 0; i < cp->count; i++) {
        const CFG_ENTRY *e = &cp->entries[i];

        if (strcmp(e->key, p->name) != 0)
            continue;
        if (strcmp(e->section, s->name) == 0
            || (cfg_moved_param(sections, e->section, e->key, &to) == p && strcmp(to, s->name) == 0))
            return cfg_entry_value(cp, i, p);
    }
    return xstrdup(p->defval ? p->defval : "");
}

/*
 * cfg_fixed_apply - after a good load: record the restart-only values;
 * where one is pinned and the file now says otherwise, log that once
 * and put the pinned value back.
 */
static void cfg_fixed_apply(CFG_PARSE *cp, const CFG_SECTION *sections)
{
    char err[512];

    cfg_fixed_free(cfg_fixed_last, cfg_fixed_nlast);
    cfg_fixed_last = NULL;
    cfg_fixed_nlast = 0;
    for (const CFG_SECTION *s = sections; s->name; s++) {
        for (const CFG_PARAM *p = s->params; p->name; p++) {
            char *value;

            if (!(p->type & CFG_RESTART))
                continue;
            value = cfg_fixed_value(cp, sections, s, p);
            for (size_t i = 0; i < cfg_fixed_npinned; i++) {
                CFG_FIXED *f = &cfg_fixed_pinned[i];

                if (strcmp(f->section, s->name) != 0 || strcmp(f->name, p->name) != 0
                    || strcmp(f->value, value) == 0)
                    continue;
                log_warn("reload: [%s] %s changes take effect only after a restart; ignored",
                         s->name, p->name);
                if (cfg_value(p, f->value, 1, NULL, err, sizeof(err)) < 0)
                    log_warn("reload: [%s] the running %s", s->name, err);
                free(value);
                value = xstrdup(f->value);
                break;
            }
            cfg_fixed_last = xrealloc(cfg_fixed_last, (cfg_fixed_nlast + 1) * sizeof(*cfg_fixed_last));
            cfg_fixed_last[cfg_fixed_nlast++] = (CFG_FIXED) {s->name, p->name, value};
        }
    }
}

/* cfg_restart_pin - keep the restart-only values of the last good load */
void cfg_restart_pin(void)
{
    cfg_fixed_free(cfg_fixed_pinned, cfg_fixed_npinned);
    cfg_fixed_pinned = xcalloc(cfg_fixed_nlast ? cfg_fixed_nlast : 1, sizeof(*cfg_fixed_pinned));
    cfg_fixed_npinned = cfg_fixed_nlast;
    for (size_t i = 0; i < cfg_fixed_nlast; i++)
        cfg_fixed_pinned[i] = (CFG_FIXED) {cfg_fixed_last[i].section, cfg_fixed_last[i].name,
                                           xstrdup(cfg_fixed_last[i].value)};
}

static uid_t cfg_secret_uid = (uid_t) -1;     /* cfg_secret_owner()'s user, if any */
static char cfg_secret_user[64];

/*
 * cfg_family_owner - before a family's instances are validated (which
 * reads their secret files), tell cfg_secret_ok whose files they may be:
 * the user this file gives the family's daemon (its default if absent).
 * Otherwise root checking a file with -n, or running --once, judges by
 * the owner of the last load (none at first) and refuses the daemon's
 * own 0600 file. The caller puts the old owner back if the load fails.
 */
static void cfg_family_owner(CFG_PARSE *cp, const CFG_SECTION *sections, const CFG_FAMILY *f)
{
    const CFG_SECTION *s;
    const CFG_PARAM *p;
    char *user;

    if (f->owner_section == NULL || (s = cfg_find_section(sections, f->owner_section)) == NULL
        || (p = cfg_find_param(s, f->owner_key)) == NULL)
        return;
    user = cfg_fixed_value(cp, sections, s, p);
    cfg_secret_owner(user);
    free(user);
}

/*
 * The values a load replaced, until the program says whether it keeps
 * them (see cfg.h): a daemon's reload may still fail after the file was
 * found good (a user gone, a mynetworks file changed since it was
 * checked), and must then go on exactly as before. The replaced strings
 * are kept, not freed, so that whatever still points at them stays valid
 * until cfg_commit().
 */
typedef union cfg_saved {
    char *str;
    int num;
    long long size;
} CFG_SAVED;

static struct {
    int active;
    const CFG_PARAM **params;           /* every parameter of the load's sections */
    CFG_SAVED *values;                  /* each one's value before it */
    size_t count;
    CFG_FIXED *fixed_last;              /* cfg_fixed_last before the load */
    size_t nfixed_last;
    char *seen;                         /* cfg_seen before the load */
    char *listed;                       /* cfg_listed before the load */
} cfg_prev;

/* cfg_is_string - does the parameter's variable hold a string cfg owns? */
static int cfg_is_string(const CFG_PARAM *p)
{
    return CFG_TYPE(p) == CFG_STR || CFG_TYPE(p) == CFG_LIST || CFG_TYPE(p) == CFG_PATH
        || CFG_TYPE(p) == CFG_ENUM;
}

/* cfg_prev_save - set the current values aside before a load assigns new ones */
static void cfg_prev_save(const CFG_SECTION *sections)
{
    size_t n = 0;

    for (const CFG_SECTION *s = sections; s->name; s++)
        for (const CFG_PARAM *p = s->params; p->name; p++)
            n++;
    cfg_prev.params = xcalloc(n ? n : 1, sizeof(*cfg_prev.params));
    cfg_prev.values = xcalloc(n ? n : 1, sizeof(*cfg_prev.values));
    cfg_prev.count = n;
    n = 0;
    for (const CFG_SECTION *s = sections; s->name; s++) {
        for (const CFG_PARAM *p = s->params; p->name; p++, n++) {
            cfg_prev.params[n] = p;
            if (cfg_is_string(p)) {
                /* taken, not freed: the assignment's free() then finds NULL */
                cfg_prev.values[n].str = *(char **) p->var;
                *(char **) p->var = NULL;
            } else if (CFG_TYPE(p) == CFG_SIZE) {
                cfg_prev.values[n].size = *(long long *) p->var;
            } else {
                cfg_prev.values[n].num = *(int *) p->var;
            }
        }
    }
    cfg_prev.fixed_last = cfg_fixed_last;
    cfg_prev.nfixed_last = cfg_fixed_nlast;
    cfg_fixed_last = NULL;
    cfg_fixed_nlast = 0;
    cfg_prev.seen = cfg_seen;
    cfg_seen = NULL;
    cfg_prev.listed = cfg_listed;
    cfg_listed = NULL;
    cfg_prev.active = 1;
}

/* cfg_prev_end - forget what was set aside */
static void cfg_prev_end(void)
{
    free(cfg_prev.params);
    free(cfg_prev.values);
    memset(&cfg_prev, 0, sizeof(cfg_prev));
}

/* cfg_commit - keep the values of the last load (see cfg.h) */
void cfg_commit(void)
{
    if (!cfg_prev.active)
        return;
    for (size_t i = 0; i < cfg_prev.count; i++)
        if (cfg_is_string(cfg_prev.params[i]))
            free(cfg_prev.values[i].str);
    cfg_fixed_free(cfg_prev.fixed_last, cfg_prev.nfixed_last);
    free(cfg_prev.seen);
    free(cfg_prev.listed);
    cfg_prev_end();
}

/* cfg_rollback - back to the values before the last load (see cfg.h) */
void cfg_rollback(void)
{
    if (!cfg_prev.active)
        return;
    /* Backwards: should two entries share a variable, the first one's old value is what is left. */
    for (size_t i = cfg_prev.count; i-- > 0;) {
        const CFG_PARAM *p = cfg_prev.params[i];

        if (cfg_is_string(p)) {
            free(*(char **) p->var);
            *(char **) p->var = cfg_prev.values[i].str;
        } else if (CFG_TYPE(p) == CFG_SIZE) {
            *(long long *) p->var = cfg_prev.values[i].size;
        } else {
            *(int *) p->var = cfg_prev.values[i].num;
        }
    }
    cfg_fixed_free(cfg_fixed_last, cfg_fixed_nlast);
    cfg_fixed_last = cfg_prev.fixed_last;
    cfg_fixed_nlast = cfg_prev.nfixed_last;
    free(cfg_seen);
    cfg_seen = cfg_prev.seen;
    free(cfg_listed);
    cfg_listed = cfg_prev.listed;
    cfg_prev_end();
}

/* cfg_load_families - cfg_load, plus [FAMILY NAME] sections */
int cfg_load_families(const char *path, const CFG_SECTION *sections, const CFG_FAMILY *families)
{
    CFG_PARSE cp;
    int rc;
    char err[512];
    uid_t saved_uid;
    char saved_user[sizeof(cfg_secret_user)];

    /* A load nobody decided on keeps its values; a failed one then sets nothing aside. */
    cfg_commit();
    memset(&cp, 0, sizeof(cp));
    cp.path = path;
    if ((cp.fp = fopen(path, "r")) == NULL) {
        cfg_error(&cp, 0, "cannot open: %s", strerror(errno));
        return cp.errors;
    }
    rc = ini_parse_stream(cfg_reader, &cp, cfg_handler, &cp);
    if (ferror(cp.fp))
        cfg_error(&cp, 0, "read error: %s", strerror(errno));
    fclose(cp.fp);
    if (rc > 0)
        cfg_error(&cp, rc, "syntax error: expected [section], key = value, or a # comment");
    else if (rc < 0)
        cfg_error(&cp, 0, "out of memory parsing");
    cfg_check(&cp, sections, families);
    /* Build (and validate) family instances; install only if all is well. */
    saved_uid = cfg_secret_uid;
    memcpy(saved_user, cfg_secret_user, sizeof(saved_user));
    for (const CFG_FAMILY *f = families; f && f->name; f++) {
        cfg_family_owner(&cp, sections, f);
        cfg_build_family(&cp, f, 0);
    }
    if (cp.errors != 0) {
        cfg_secret_uid = saved_uid;
        memcpy(cfg_secret_user, saved_user, sizeof(saved_user));
    }
    if (cp.errors == 0) {
        for (const CFG_FAMILY *f = families; f && f->name; f++)
            cfg_build_family(&cp, f, 1);
        cfg_prev_save(sections);
        cfg_defaults(sections);
        for (size_t i = 0; i < cp.count; i++) {
            const CFG_SECTION *s = cfg_find_section(sections, cp.entries[i].section);
            const CFG_PARAM *p = s ? cfg_find_param(s, cp.entries[i].key) : NULL;
            const char *to;

            if (p == NULL)
                p = cfg_moved_param(sections, cp.entries[i].section, cp.entries[i].key, &to);

            char *value = p ? cfg_entry_value(&cp, i, p) : NULL;

            if (value && cfg_value(p, value, CFG_ASSIGN_CHECKED, NULL, err, sizeof(err)) < 0)
                log_panic("value checked once failed later: %s", err);
            free(value);
        }
        cfg_fixed_apply(&cp, sections);
        cfg_seen_record(&cp);
    }
    cfg_parse_free(&cp);
    return cp.errors;
}

int cfg_check_secrets = 1;

/* cfg_secret_owner - the daemon's user may own secret files too */
void cfg_secret_owner(const char *user)
{
    struct passwd *pw = user && *user ? getpwnam(user) : NULL;

    cfg_secret_uid = pw ? pw->pw_uid : (uid_t) -1;
    snprintf(cfg_secret_user, sizeof(cfg_secret_user), "%s", pw ? user : "");
}

/* cfg_secret_ok - a regular file of root's, ours or the daemon user's, closed to others */
int cfg_secret_ok(const char *what, const char *path, const struct stat *sb, int group_read,
                  char *why, size_t size)
{
    mode_t forbidden = group_read ? (S_IWGRP | S_IRWXO) : (S_IRWXG | S_IRWXO);

    if (!S_ISREG(sb->st_mode)) {
        snprintf(why, size, "%s %s: not a regular file", what, path);
        return 0;
    }
    if (sb->st_uid != 0 && sb->st_uid != geteuid() && sb->st_uid != cfg_secret_uid) {
        struct passwd *pw = getpwuid(sb->st_uid);
        char owner[64], fix[96];

        if (pw)
            snprintf(owner, sizeof(owner), "%s", pw->pw_name);
        else
            snprintf(owner, sizeof(owner), "uid %lu", (unsigned long) sb->st_uid);
        if (*cfg_secret_user)
            snprintf(fix, sizeof(fix), "chown root (or %s) it", cfg_secret_user);
        else
            snprintf(fix, sizeof(fix), "chown root it");
        snprintf(why, size, "%s %s belongs to %s, who could change it: %s", what, path, owner, fix);
        return 0;
    }
    if (sb->st_mode & forbidden) {
        snprintf(why, size, "%s %s is accessible by %s (mode %04o): chmod %s it", what, path,
                 (sb->st_mode & S_IRWXO) ? "others" : "its group", (unsigned) (sb->st_mode & 07777),
                 group_read ? "600 (or 640 for a group of its own)" : "600");
        return 0;
    }
    return 1;
}

/* cfg_secret_read - a secret from a file only its owner can read */
int cfg_secret_read(const char *path, char **out, char *err, size_t errlen)
{
    struct stat sb;
    char *buf;
    ssize_t n;
    size_t len = 0;
    int fd;

    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)) < 0) {
        snprintf(err, errlen, "secret file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) < 0) {
        snprintf(err, errlen, "secret file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!cfg_secret_ok("secret file", path, &sb, 0, err, errlen)) {
        close(fd);
        return -1;
    }
    buf = xmalloc(CFG_MAX_SECRET + 1);
    while (len < CFG_MAX_SECRET && (n = read(fd, buf + len, CFG_MAX_SECRET - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errlen, "secret file %s: %s", path, strerror(errno));
            close(fd);
            buf[len] = 0;
            xfree_secret(buf);
            return -1;
        }
        len += (size_t) n;
    }
    close(fd);
    buf[len] = 0;
    if (len == CFG_MAX_SECRET || strlen(buf) != len) {
        snprintf(err, errlen, "secret file %s: too long or not text", path);
        xfree_secret(buf);
        return -1;
    }
    if (len > 0 && buf[len - 1] == '\n')
        buf[--len] = 0;
    if (len > 0 && buf[len - 1] == '\r')
        buf[--len] = 0;
    if (len == 0) {
        snprintf(err, errlen, "secret file %s is empty", path);
        xfree_secret(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* cfg_default_path - where the configuration lives by default */
const char *cfg_default_path(void)
{
    return RG_SYSCONFDIR "/rcptgate/rcptgate.conf";
}
