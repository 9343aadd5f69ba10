/*
 * test_cfg.c - unit tests for lib/cfg.c
 *
 * Each case writes a config file, loads it against a small table of every
 * type, and checks the values assigned or that nothing was assigned.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfg.h"
#include "log.h"
#include "params_rules.h"
#include "xalloc.h"

static char *v_str;
static char *v_path;
static int v_int;
static int v_bool;
static int v_time;
static long long v_size;
static char *v_enum;
static char *v_req;

static int check_no_x(const char *value, char *err, size_t errlen)
{
    if (strchr(value, 'x')) {
        snprintf(err, errlen, "no x allowed");
        return -1;
    }
    return 0;
}

static const CFG_PARAM t_params[] = {
    {"str", CFG_STR, "dflt", &v_str, 0, 0, NULL, check_no_x},
    {"path", CFG_PATH, "/var/x", &v_path, 0, 0, NULL, NULL},
    {"int", CFG_INT, "5", &v_int, 1, 100, NULL, NULL},
    {"bool", CFG_BOOL, "no", &v_bool, 0, 0, NULL, NULL},
    {"time", CFG_TIME, "2s", &v_time, 10, 3600000, NULL, NULL},
    {"size", CFG_SIZE, "1k", &v_size, 0, 0, NULL, NULL},
    {"mode", CFG_ENUM, "none", &v_enum, 0, 0, "none|starttls|ldaps", NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

static const CFG_PARAM t_req[] = {
    {"needed", CFG_STR, NULL, &v_req, 0, 0, NULL, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

static const CFG_SECTION t_sections[] = {
    {"store", t_params},
    {"lookupd", t_req},
    {NULL, NULL},
};

static char t_path[] = "/tmp/rg-test-cfg-XXXXXX";

/* load - write text to the temp file and load it */
static int load(const char *text)
{
    FILE *fp = fopen(t_path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return cfg_load(t_path, t_sections);
}

static void test_good(void **state)
{
    (void) state;
    assert_int_equal(load("# comment\n; also a comment\n[store]\nstr = hello world\npath = /a/b\n"
                          "int = 42\nbool = yes\ntime = 250ms\nsize = 10m\nmode = ldaps\n"
                          "[lookupd]\nneeded = here\n[smtpd]\nanything = goes\n"
                          "[source corp]\ntype = ldap\n"), 0);
    assert_string_equal(v_str, "hello world");
    assert_string_equal(v_path, "/a/b");
    assert_int_equal(v_int, 42);
    assert_int_equal(v_bool, 1);
    assert_int_equal(v_time, 250);
    assert_int_equal(v_size, 10 * 1024 * 1024);
    assert_string_equal(v_enum, "ldaps");
    assert_string_equal(v_req, "here");
}

/*
 * cfg_section_seen: the sections with a key in the last good file, exactly
 * by name; cfg_section_listed: every [name] line, keys or not (the packaged
 * file's [lookupd] has every key commented out); "[source x]" alone is no
 * source.
 */
static void test_section_seen(void **state)
{
    char names[4][CFG_NAME_LEN];

    (void) state;
    assert_int_equal(load("[lookupd]\nneeded = x\n[smtpd]\nanything = goes\n"
                          "[source corp]\ntype = ldap\n  [syncd]   # set up with its defaults\n"
                          "# [address]\n[source bare]\n"), 0);
    assert_true(cfg_section_seen("lookupd"));
    assert_true(cfg_section_seen("smtpd"));
    assert_true(cfg_section_seen("source corp"));
    assert_false(cfg_section_seen("store"));        /* not in the file */
    assert_false(cfg_section_seen("syncd"));        /* a header without keys */
    assert_true(cfg_section_listed("syncd"));       /* ... is listed */
    assert_true(cfg_section_listed("lookupd"));
    assert_false(cfg_section_listed("address"));    /* a comment */
    assert_false(cfg_section_listed("store"));
    assert_false(cfg_section_seen("source bare"));  /* a family's header without keys */
    assert_int_equal(cfg_family_seen("source", names, 4), 1);
    assert_string_equal(names[0], "corp");
    assert_false(cfg_section_seen("source"));       /* not a prefix match */
    assert_false(cfg_section_seen("corp"));
    /* A bad file leaves the record of the last good one. */
    assert_int_equal(load("[store]\nint = lots\n[lookupd]\nneeded = x\n"), 1);
    assert_true(cfg_section_seen("smtpd"));
    assert_false(cfg_section_seen("store"));
}

/*
 * One rule for every line, whatever its length: a ';' in a value is part
 * of it (an export_command may chain commands), a comment may be long,
 * indented text continues nothing, a section name inih would cut is an
 * error, a byte order mark is skipped.
 */
static void test_lines(void **state)
{
    char line[400];

    (void) state;
    assert_int_equal(load("[store]\nstr = a ; b\n[lookupd]\nneeded = y ; z\n"), 0);
    assert_string_equal(v_str, "a ; b");
    assert_string_equal(v_req, "y ; z");
    memset(line, 'c', sizeof(line) - 1);
    line[0] = '#';
    line[sizeof(line) - 1] = 0;
    {
        char text[600];

        snprintf(text, sizeof(text), "[store]\n%s\n  ; indented comment\n[lookupd]\nneeded = q\n", line);
        assert_int_equal(load(text), 0);
    }
    assert_int_equal(load("[store]\nstr = one\n  two\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\n   str = indented key\n[lookupd]\nneeded = y\n"), 0);
    assert_string_equal(v_str, "indented key");
    assert_int_equal(load("\xEF\xBB\xBF[store]\nint = 9\n[lookupd]\nneeded = y\n"), 0);
    assert_int_equal(v_int, 9);
    assert_true(load("[lookupd]\nneeded = y\n[source abcdefghij-abcdefghij-abcdefghij-abcdefghij-abc]\n"
                     "type = file\n") > 0);
}

static void test_defaults(void **state)
{
    (void) state;
    assert_int_equal(load("[lookupd]\nneeded = x\n"), 0);
    assert_string_equal(v_str, "dflt");
    assert_int_equal(v_int, 5);
    assert_int_equal(v_time, 2000);
    assert_int_equal(v_size, 1024);
}

/* A bad file must change nothing: the values of the last good load stay. */
static void test_bad_keeps_old(void **state)
{
    (void) state;
    assert_int_equal(load("[store]\nint = 7\n[lookupd]\nneeded = y\n"), 0);
    assert_int_equal(v_int, 7);
    assert_int_equal(load("[store]\nint = 8\nbool = maybe\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(v_int, 7);
}

/*
 * A load the program then refuses (a daemon's own later checks) is rolled
 * back whole, and the values it replaced were never freed in between:
 * what the daemon still points at stays valid.
 */
static void test_rollback(void **state)
{
    const char *running;

    (void) state;
    assert_int_equal(load("[store]\nstr = one\nint = 7\n[lookupd]\nneeded = y\n"), 0);
    cfg_commit();
    running = v_str;
    assert_int_equal(load("[store]\nstr = two\nint = 8\nsize = 2k\n[lookupd]\nneeded = z\n[smtpd]\nk = v\n"), 0);
    assert_string_equal(v_str, "two");
    assert_string_equal(running, "one");        /* still there (the sanitizer build would say) */
    assert_true(cfg_section_seen("smtpd"));
    cfg_rollback();
    assert_ptr_equal(v_str, running);
    assert_string_equal(v_str, "one");
    assert_int_equal(v_int, 7);
    assert_int_equal(v_size, 1024);
    assert_string_equal(v_req, "y");
    assert_false(cfg_section_seen("smtpd"));
    cfg_rollback();                             /* nothing aside: nothing changes */
    assert_string_equal(v_str, "one");

    /* committed: the new values stay, and a rollback after it changes nothing */
    assert_int_equal(load("[store]\nstr = two\nint = 8\n[lookupd]\nneeded = z\n"), 0);
    cfg_commit();
    cfg_rollback();
    assert_string_equal(v_str, "two");
    assert_int_equal(v_int, 8);
    /* a load nobody decided on is kept by the next one */
    assert_int_equal(load("[store]\nstr = three\n[lookupd]\nneeded = z\n"), 0);
    assert_int_equal(load("[store]\nstr = four\n[lookupd]\nneeded = z\n"), 0);
    cfg_rollback();
    assert_string_equal(v_str, "three");
    /* a failed load sets nothing aside: a rollback after it keeps the running values */
    assert_int_equal(load("[store]\nstr = five\n[lookupd]\nneeded = z\n"), 0);
    assert_int_equal(load("[store]\nint = lots\n[lookupd]\nneeded = z\n"), 1);
    cfg_rollback();
    assert_string_equal(v_str, "five");
}

static void test_errors(void **state)
{
    (void) state;
    /* one error each */
    assert_int_equal(load("[store]\nnosuch = 1\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[stroe]\nint = 1\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\nint = 101\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\nint = 0\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\nint = 5x\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\nint = \n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\ntime = 5 s\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\ntime = 5ms\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\ntime = -5\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\nsize = 1t\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\npath = relative/path\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\nmode = tls\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\nstr = has x\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\nint = 1\nint = 2\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[store]\n"), 1);     /* required key missing */
    assert_int_equal(load("int = 1\n[lookupd]\nneeded = y\n"), 1);      /* outside a section */
    assert_int_equal(load("[store]\njust a line\n[lookupd]\nneeded = y\n"), 1);
    assert_int_equal(load("[source]\ntype = x\n[lookupd]\nneeded = y\n"), 1);   /* family needs a name */
    /* several errors are all counted */
    assert_int_equal(load("[store]\nint = 0\nbool = perhaps\nnosuch = 1\n"), 4);
}

/*
 * Keys moved from [smtpd] to [rules]: a program that owns [rules] reads
 * them in [smtpd] too (owning [smtpd] or not), never in both places.
 */
static char *v_nets;
static int v_warn;
static char *v_listen;

static const CFG_PARAM t_rules[] = {
    {"mynetworks", CFG_STR, "127.0.0.0/8", &v_nets, 0, 0, NULL, NULL},
    {"warn_if_reject", CFG_BOOL, "no", &v_warn, 0, 0, NULL, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};
static const CFG_PARAM t_smtpd[] = {
    {"listen", CFG_STR, "0.0.0.0:25", &v_listen, 0, 0, NULL, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

static int load_with(const char *text, const CFG_SECTION *sections)
{
    FILE *fp = fopen(t_path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return cfg_load(t_path, sections);
}

static void test_moved(void **state)
{
    const CFG_SECTION both[] = {{"rules", t_rules}, {"smtpd", t_smtpd}, {NULL, NULL}};
    const CFG_SECTION rules_only[] = {{"rules", t_rules}, {NULL, NULL}};
    const CFG_SECTION smtpd_only[] = {{"smtpd", t_smtpd}, {NULL, NULL}};

    (void) state;
    /* the new place */
    assert_int_equal(load_with("[rules]\nmynetworks = 10.0.0.0/8\n[smtpd]\nlisten = 1.2.3.4:25\n", both), 0);
    assert_string_equal(v_nets, "10.0.0.0/8");
    assert_string_equal(v_listen, "1.2.3.4:25");
    /* the old place, for a program owning both sections and for one owning [rules] only */
    assert_int_equal(load_with("[smtpd]\nmynetworks = 10.1.0.0/16\nwarn_if_reject = yes\nlisten = 1.2.3.4:25\n",
                               both), 0);
    assert_string_equal(v_nets, "10.1.0.0/16");
    assert_int_equal(v_warn, 1);
    assert_int_equal(load_with("[smtpd]\nmynetworks = 10.2.0.0/16\nlisten = 1.2.3.4:25\n", rules_only), 0);
    assert_string_equal(v_nets, "10.2.0.0/16");
    assert_int_equal(v_warn, 0);
    /* a bad value in the old place is an error there too */
    assert_int_equal(load_with("[smtpd]\nwarn_if_reject = perhaps\n", rules_only), 1);
    /* both places: an error, nothing changes */
    assert_int_equal(load_with("[rules]\nmynetworks = 10.3.0.0/16\n[smtpd]\nmynetworks = 10.4.0.0/16\n", both), 1);
    assert_string_equal(v_nets, "10.2.0.0/16");
    /* a program without [rules] still finds the key unknown in its [smtpd] */
    assert_int_equal(load_with("[smtpd]\nmynetworks = 10.5.0.0/16\n", smtpd_only), 1);
}

static void test_long_line(void **state)
{
    char *text = xmalloc(10000);

    (void) state;
    strcpy(text, "[store]\nstr = ");
    memset(text + strlen(text), 'a', 6000);
    strcpy(text + 14 + 6000, "\n[lookupd]\nneeded = y\n");
    assert_int_equal(load(text), 1);
    free(text);
    /* a long-ish line under the limit is fine */
    text = xmalloc(10000);
    strcpy(text, "[store]\nstr = ");
    memset(text + strlen(text), 'a', 3000);
    strcpy(text + 14 + 3000, "\n[lookupd]\nneeded = y\n");
    assert_int_equal(load(text), 0);
    assert_int_equal(strlen(v_str), 3000);
    free(text);
}

static void test_missing_file(void **state)
{
    (void) state;
    assert_int_equal(cfg_load("/nonexistent/rcptgate.conf", t_sections), 1);
}

static void test_parsers(void **state)
{
    (void) state;
    assert_int_equal(cfg_parse_time("30"), 30000);
    assert_int_equal(cfg_parse_time("30s"), 30000);
    assert_int_equal(cfg_parse_time("5m"), 300000);
    assert_int_equal(cfg_parse_time("1h"), 3600000);
    assert_int_equal(cfg_parse_time("1d"), 86400000);
    assert_int_equal(cfg_parse_time("7ms"), 7);
    assert_int_equal(cfg_parse_time("s"), -1);
    assert_int_equal(cfg_parse_time(""), -1);
    assert_int_equal(cfg_parse_time("+5"), -1);
    assert_int_equal(cfg_parse_time("99999999999999999999"), -1);
    assert_int_equal(cfg_parse_size("2k"), 2048);
    assert_int_equal(cfg_parse_size("2G"), 2LL << 30);
    assert_int_equal(cfg_parse_bool("On"), 1);
    assert_int_equal(cfg_parse_bool("FALSE"), 0);
    assert_int_equal(cfg_parse_bool("2"), -1);
}

/* write_secret - a file with the given content and mode */
static void write_secret(const char *path, const char *content, mode_t mode)
{
    FILE *fp;

    unlink(path);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_secret(void **state)
{
    char path[64];
    char err[256];
    char *s = NULL;

    (void) state;
    snprintf(path, sizeof(path), "%s.secret", t_path);
    write_secret(path, "s3cret\n", 0600);
    assert_int_equal(cfg_secret_read(path, &s, err, sizeof(err)), 0);
    assert_string_equal(s, "s3cret");
    xfree_secret(s);
    write_secret(path, "s3cret\n", 0640);
    assert_int_equal(cfg_secret_read(path, &s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod 600"));
    assert_null(strstr(err, "s3cret"));
    write_secret(path, "s3cret\n", 0604);
    assert_int_equal(cfg_secret_read(path, &s, err, sizeof(err)), -1);
    write_secret(path, "", 0600);
    assert_int_equal(cfg_secret_read(path, &s, err, sizeof(err)), -1);
    unlink(path);
    assert_int_equal(cfg_secret_read(path, &s, err, sizeof(err)), -1);
    assert_int_equal(cfg_secret_read("/tmp", &s, err, sizeof(err)), -1);
    if (geteuid() == 0 && getpwnam("nobody") != NULL) {
        /* Another user's file is that user's to change: refused unless it is the daemon's user. */
        write_secret(path, "s3cret\n", 0600);
        assert_int_equal(chown(path, getpwnam("nobody")->pw_uid, 0), 0);
        cfg_secret_owner("");
        assert_int_equal(cfg_secret_read(path, &s, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "belongs to nobody"));
        assert_non_null(strstr(err, "chown root it"));
        cfg_secret_owner("nobody");
        assert_int_equal(cfg_secret_read(path, &s, err, sizeof(err)), 0);
        xfree_secret(s);
        cfg_secret_owner("daemon");
        assert_int_equal(cfg_secret_read(path, &s, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "chown root (or daemon) it"));
        cfg_secret_owner(NULL);
        unlink(path);
    }
}

struct t_src {
    char *name;
    char *type;
    int port;
    char *base;
};

static const CFG_PARAM t_src_params[] = {
    {"type", CFG_ENUM, NULL, CFG_OFFSET(struct t_src, type), 0, 0, "ldap|file", NULL},
    {"port", CFG_INT, "389", CFG_OFFSET(struct t_src, port), 1, 65535, NULL, NULL},
    {"base", CFG_LIST, "", CFG_OFFSET(struct t_src, base), 0, 0, NULL, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

static void **t_inst;
static int t_ninst = -1;

static int t_src_validate(const char *file, int line, const char *name, void *instance)
{
    struct t_src *src = instance;

    if (strcmp(src->type, "file") == 0 && src->port != 389) {
        log_err("%s:%d: [source %s] a file source has no port", file, line, name);
        return 1;
    }
    return 0;
}

static void t_src_install(void **inst, int n)
{
    t_inst = inst;
    t_ninst = n;
}

static const CFG_FAMILY t_families[] = {
    {"source", t_src_params, sizeof(struct t_src), t_src_validate, t_src_install, NULL, NULL},
    {NULL, NULL, 0, NULL, NULL, NULL, NULL},
};

static void t_free_inst(void)
{
    for (int i = 0; i < t_ninst; i++)
        cfg_family_free(&t_families[0], t_inst[i]);
    free(t_inst);
    t_inst = NULL;
    t_ninst = -1;
}

/* load_fam - write text and load it with the source family */
static int load_fam(const char *text)
{
    FILE *fp = fopen(t_path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return cfg_load_families(t_path, t_sections, t_families);
}

static void test_family(void **state)
{
    struct t_src *a, *b;

    (void) state;
    assert_int_equal(load_fam("[lookupd]\nneeded = y\n[source corp]\ntype = ldap\nport = 636\n"
                              "base = ou=a,dc=x\nbase = ou=b,dc=x\n[source files]\ntype = file\n"), 0);
    assert_int_equal(t_ninst, 2);
    a = t_inst[0];
    b = t_inst[1];
    assert_string_equal(a->name, "corp");
    assert_string_equal(a->type, "ldap");
    assert_int_equal(a->port, 636);
    assert_string_equal(a->base, "ou=a,dc=x\nou=b,dc=x");
    assert_string_equal(b->name, "files");
    assert_int_equal(b->port, 389);
    assert_string_equal(b->base, "");
    t_free_inst();

    /* errors: nothing installed */
    assert_int_equal(load_fam("[lookupd]\nneeded = y\n[source corp]\nport = 636\n"), 1);   /* type missing */
    assert_int_equal(t_ninst, -1);
    assert_int_equal(load_fam("[lookupd]\nneeded = y\n[source corp]\ntype = ldap\nbogus = 1\n"), 1);
    assert_int_equal(load_fam("[lookupd]\nneeded = y\n[source corp]\ntype = ldap\nport = 0\n"), 1);
    assert_int_equal(load_fam("[lookupd]\nneeded = y\n[source f]\ntype = file\nport = 1\n"), 1);
    /* an error elsewhere in the file also installs nothing */
    assert_int_equal(load_fam("[lookupd]\nneeded = y\nbad = 1\n[source corp]\ntype = ldap\n"), 1);
    assert_int_equal(t_ninst, -1);
    /* no sources at all: install is called with none */
    assert_int_equal(load_fam("[lookupd]\nneeded = y\n"), 0);
    assert_int_equal(t_ninst, 0);
    t_free_inst();
}

/*
 * CFG_RESTART: before cfg_restart_pin() every load assigns; after it, a
 * changed restart-only value is ignored (the pinned one stays) while the
 * others change; a list compares all its values; a value back to the
 * pinned one is quiet again.
 */
static char *r_listen;
static int r_port;
static char *r_level;

static const CFG_PARAM r_params[] = {
    {"listen", CFG_LIST | CFG_RESTART, "a", &r_listen, 0, 0, NULL, NULL},
    {"port", CFG_INT | CFG_RESTART, "25", &r_port, 1, 65535, NULL, NULL},
    {"level", CFG_ENUM, "info", &r_level, 0, 0, "info|debug", NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

static const CFG_SECTION r_sections[] = {
    {"syncd", r_params},
    {NULL, NULL},
};

/* rload - write text and load it against r_sections */
static int rload(const char *text)
{
    FILE *fp = fopen(t_path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return cfg_load(t_path, r_sections);
}

static void test_restart(void **state)
{
    (void) state;
    assert_int_equal(rload("[syncd]\nport = 26\n"), 0);
    assert_int_equal(r_port, 26);
    assert_int_equal(rload("[syncd]\nport = 27\nlisten = b\nlisten = c\n"), 0);
    assert_int_equal(r_port, 27);               /* not pinned yet: a start may load twice */
    assert_string_equal(r_listen, "b\nc");
    cfg_restart_pin();
    assert_int_equal(rload("[syncd]\nport = 28\nlisten = b\nlisten = d\nlevel = debug\n"), 0);
    assert_int_equal(r_port, 27);
    assert_string_equal(r_listen, "b\nc");
    assert_string_equal(r_level, "debug");      /* the rest of the reload applies */
    assert_int_equal(rload("[syncd]\nport = 27\nlisten = b\nlisten = c\n"), 0);
    assert_int_equal(r_port, 27);
    assert_string_equal(r_level, "info");
    /* Absent: the default, which differs from the pinned value, is ignored too. */
    assert_int_equal(rload("[syncd]\n"), 0);
    assert_int_equal(r_port, 27);
    assert_string_equal(r_listen, "b\nc");
    /* A bad file still changes nothing at all. */
    assert_int_equal(rload("[syncd]\nport = 0\n"), 1);
    assert_int_equal(r_port, 27);
}

/*
 * A restart-only key that moved to [rules], written in its old [smtpd]:
 * the running value is the one written there, and moving the line to
 * [rules] with the same value is no change (it once reverted the running
 * value to the default: the pin had read only [rules]).
 */
static char *m_fixed;

static const CFG_PARAM m_rules[] = {
    {"fixed", CFG_STR | CFG_RESTART, "dflt", &m_fixed, 0, 0, NULL, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL, NULL},
};

static void test_moved_restart(void **state)
{
    const CFG_SECTION both[] = {{"rules", m_rules}, {"smtpd", t_smtpd}, {NULL, NULL}};

    (void) state;
    assert_int_equal(load_with("[smtpd]\nfixed = old\nlisten = 1.2.3.4:25\n", both), 0);
    assert_string_equal(m_fixed, "old");
    cfg_restart_pin();
    /* the same value in its new place: nothing changes */
    assert_int_equal(load_with("[rules]\nfixed = old\n[smtpd]\nlisten = 1.2.3.4:25\n", both), 0);
    assert_string_equal(m_fixed, "old");
    /* a new value in the old place is a restart-only change like any other: ignored */
    assert_int_equal(load_with("[smtpd]\nfixed = new\nlisten = 1.2.3.4:25\n", both), 0);
    assert_string_equal(m_fixed, "old");
}

/*
 * [rules] mynetworks and the access lists are checked by the load itself:
 * a file with a bad one is refused before anything is assigned, so the
 * daemon that refuses the reload really runs on with its old values, the
 * other keys of that file included (a bad mynetworks used to be found
 * only by rules_init(), after cfg had assigned the rest).
 */
static void test_rules_checked(void **state)
{
    const CFG_SECTION rs[] = {{"rules", params_rules_table()}, {NULL, NULL}};

    (void) state;
    assert_int_equal(load_with("[rules]\nmynetworks = 10.0.0.0/8\nclient_access = 192.0.2.1 OK\n"
                               "client_access = 192.0.2.2 REJECT\n", rs), 0);
    assert_string_equal(var_rules_unknown_rcpt, "enforce");
    assert_string_equal(var_rules_client_access, "192.0.2.1 OK\n192.0.2.2 REJECT");
    assert_int_equal(load_with("[rules]\nreject_unknown_recipient = off\nmynetworks = 10.0.0.0/33\n", rs), 1);
    assert_string_equal(var_rules_unknown_rcpt, "enforce");
    assert_string_equal(var_rules_mynetworks, "10.0.0.0/8");
    assert_int_equal(load_with("[rules]\nreject_unknown_recipient = off\nclient_access = 192.0.2.1 OK\n"
                               "client_access = 192.0.2.300 REJECT\n", rs), 1);
    assert_string_equal(var_rules_unknown_rcpt, "enforce");
    assert_int_equal(load_with("[rules]\nsender_access = a@@b REJECT\n", rs), 1);
    assert_int_equal(load_with("[rules]\nhelo_access = x.example FROB\n", rs), 1);
    assert_int_equal(load_with("[rules]\nrecipient_access = a@b.example WARN\n", rs), 1);
    assert_string_equal(var_rules_client_access, "192.0.2.1 OK\n192.0.2.2 REJECT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_section_seen),
        cmocka_unit_test(test_bad_keeps_old),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_secret),
        cmocka_unit_test(test_family),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_moved),
        cmocka_unit_test(test_moved_restart),
        cmocka_unit_test(test_rules_checked),
        cmocka_unit_test(test_lines),
    };
    int fd, rc;

    log_init("test_cfg", 0, 0);
    fd = mkstemp(t_path);
    if (fd < 0)
        return 99;
    close(fd);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(t_path);
    return rc;
}
