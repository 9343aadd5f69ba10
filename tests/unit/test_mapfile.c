/*
 * test_mapfile.c - unit tests of the map file reader (lib/mapfile.c)
 *
 * Each case writes a small file and checks either the entries the reader
 * delivers (key, value, line) or the exact "file:line: reason" it fails
 * with.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "addr.h"
#include "mapfile.h"

static char test_dir[256];
static char test_path[300];

/* write_file - the test file with len bytes of data (may hold NULs) */
static void write_file(const char *data, size_t len)
{
    FILE *fp = fopen(test_path, "wb");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

/* collect - fn for mapfile_read: append "line:key=value;" to the context */
static int collect(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen)
{
    char *out = ctx;

    snprintf(out + strlen(out), 1024 - strlen(out), "%d:%s=%s;", line, key, value);
    return 0;
}

/* refuse_bad - fn that rejects the key "bad" */
static int refuse_bad(const char *key, const char *value, int line, void *ctx, char *err, size_t errlen)
{
    if (strcmp(key, "bad") == 0) {
        snprintf(err, errlen, "no bad keys");
        return -1;
    }
    return 0;
}

/* read_ok - read text, expect success and the collected entries */
static void read_ok(const char *text, const char *want)
{
    char got[1024] = "";
    char err[512] = "";

    write_file(text, strlen(text));
    if (mapfile_read(test_path, collect, got, err, sizeof(err)) != 0)
        fail_msg("unexpected error: %s", err);
    assert_string_equal(got, want);
}

/* read_fail - read len bytes, expect failure with "path:" + want */
static void read_fail_n(const char *text, size_t len, const char *want)
{
    char got[1024] = "";
    char err[512] = "";
    char full[600];

    write_file(text, len);
    assert_int_equal(mapfile_read(test_path, collect, got, err, sizeof(err)), -1);
    snprintf(full, sizeof(full), "%s:%s", test_path, want);
    assert_string_equal(err, full);
}

static void read_fail(const char *text, const char *want)
{
    read_fail_n(text, strlen(text), want);
}

static int group_setup(void **state)
{
    snprintf(test_dir, sizeof(test_dir), "/tmp/test_mapfile.XXXXXX");
    if (mkdtemp(test_dir) == NULL)
        return -1;
    snprintf(test_path, sizeof(test_path), "%s/map", test_dir);
    return 0;
}

static int group_teardown(void **state)
{
    unlink(test_path);
    return rmdir(test_dir);
}

/* Plain entries; white space around and between key and value. */
static void test_entries(void **state)
{
    read_ok("a@example.com OK\nb@example.com\t\tsome value  \n", "1:a@example.com=OK;2:b@example.com=some value;");
    read_ok("", "");
    read_ok("last@example.com OK", "1:last@example.com=OK;");    /* no final newline */
    read_ok("dos@example.com OK\r\n", "1:dos@example.com=OK;");
}

/* Comments and blank lines are skipped and do not end an entry. */
static void test_comments(void **state)
{
    read_ok("# a comment\n   # an indented comment\n\n \t \na@example.com OK\n#x\n",
            "5:a@example.com=OK;");
    read_ok("a@example.com first\n# between\n  second\n", "1:a@example.com=first second;");
    read_ok("a@example.com OK # not a comment\n", "1:a@example.com=OK # not a comment;");
}

/* A line starting with white space continues the entry above it. */
static void test_continuation(void **state)
{
    read_ok("a@example.com one\n  two\n\tthree\nb@example.com OK\n",
            "1:a@example.com=one two three;4:b@example.com=OK;");
    /* the value may come on the continuation line only */
    read_ok("a@example.com\n  OK\n", "1:a@example.com=OK;");
    read_fail("  a@example.com OK\n", "1: continuation line (starts with white space) without an entry above it");
    read_fail("# only a comment\n\n\tx OK\n", "3: continuation line (starts with white space) without an entry above it");
}

/* A key without a value is an error at the entry's line. */
static void test_missing_value(void **state)
{
    read_fail("a@example.com OK\nb@example.com OK\nlonely@example.com\nc@example.com OK\n",
              "3: \"lonely@example.com\" has no value (expected \"key value\")");
    read_fail("a@example.com OK\nlast@example.com   \n", "2: \"last@example.com\" has no value (expected \"key value\")");
}

/* Lines over 4096 bytes are refused; 4096 itself is fine. */
static void test_long_line(void **state)
{
    char buf[6000];
    char got[1024] = "";
    char err[512] = "";

    memset(buf, 'k', 4093);
    memcpy(buf + 4093, " OK\n", 5);         /* 4096 bytes + newline */
    write_file(buf, strlen(buf));
    assert_int_equal(mapfile_read(test_path, refuse_bad, got, err, sizeof(err)), 0);
    strcpy(buf, "a OK\n");
    memset(buf + 5, 'k', 4094);
    memcpy(buf + 5 + 4094, " OK\n", 5);     /* 4097 bytes on line 2 */
    read_fail(buf, "2: line longer than 4096 bytes");
}

/*
 * An overlong line is not read beyond the limit (bounded memory: the
 * reader stops at the first byte past 4096 that is not white space), and
 * trailing white space past the limit does not count.
 */
static void test_long_line_bounded(void **state)
{
    size_t big = 1024 * 1024;
    char *buf = malloc(big + 8192);
    char got[1024] = "";
    char err[512] = "";
    char want[600];
    FILE *fp;

    assert_non_null(buf);
    strcpy(buf, "a OK\n# c\n");
    memset(buf + 9, 'x', big);
    strcpy(buf + 9 + big, " OK\n");
    write_file(buf, strlen(buf));
    fp = fopen(test_path, "r");
    assert_non_null(fp);
    assert_int_equal(mapfile_read_fp(fp, test_path, collect, got, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:3: line longer than 4096 bytes", test_path);
    assert_string_equal(err, want);
    /* 9 bytes of lines 1-2, then 4096 + 1 of line 3: no further */
    assert_int_equal(ftell(fp), 9 + 4096 + 1);
    fclose(fp);
    /* 4096 bytes, then a megabyte of blanks and a CR: fine */
    memset(buf, 'k', 4093);
    memcpy(buf + 4093, " OK", 3);
    memset(buf + 4096, ' ', big);
    strcpy(buf + 4096 + big, "\r\n");
    write_file(buf, strlen(buf));
    assert_int_equal(mapfile_read(test_path, refuse_bad, NULL, err, sizeof(err)), 0);
    free(buf);
}

/* keys_ok - mapfile_keys of text (catch-alls allowed): the normalised entries */
static void keys_ok(const char *text, const char *want)
{
    char got[1024] = "";
    char err[512] = "";

    write_file(text, strlen(text));
    if (mapfile_keys(test_path, ADDR_KEY_CATCHALL, collect, got, err, sizeof(err)) != 0)
        fail_msg("unexpected error: %s", err);
    assert_string_equal(got, want);
}

/* keys_fail - mapfile_keys of text fails with "path:" + want */
static void keys_fail(const char *text, int flags, const char *want)
{
    char got[1024] = "";
    char err[512] = "";
    char full[600];

    write_file(text, strlen(text));
    assert_int_equal(mapfile_keys(test_path, flags, collect, got, err, sizeof(err)), -1);
    snprintf(full, sizeof(full), "%s:%s", test_path, want);
    assert_string_equal(err, full);
}

/* mapfile_keys: each key through addr_key(), a bad one stops the read with its line. */
static void test_keys(void **state)
{
    keys_ok("Alice@Example.COM OK\n<Bob@X.org> x\n@B\xc3\xbc" "cher.example OK\n",
            "1:alice@example.com=OK;2:bob@x.org=x;3:@xn--bcher-kva.example=OK;");
    keys_ok("a@x.org OK\nA@X.ORG again\n", "1:a@x.org=OK;2:a@x.org=again;");   /* repeats are the caller's */
    keys_fail("a@x.org OK\n<> OK\n", ADDR_KEY_CATCHALL, "2: \"<>\": the null sender <> is not a recipient");
    keys_fail("a@x.org OK\nfrank@@x.org OK\n", ADDR_KEY_CATCHALL, "2: \"frank@@x.org\": more than one @");
    keys_fail("@x.org OK\n", 0, "1: \"@x.org\": a catch-all (\"@domain\") is not allowed here");
    keys_fail("a@x.org OK\npostmaster OK\n", ADDR_KEY_CATCHALL, "2: \"postmaster\": no domain");
    keys_fail("u%v@x.org OK\n", ADDR_KEY_CATCHALL, "1: \"u%v@x.org\": percent hack not allowed");
    {
        char got[1024] = "";
        char err[512] = "";

        assert_int_equal(mapfile_keys(test_path, ADDR_ALLOW_PERCENT, collect, got, err, sizeof(err)), 0);
        assert_string_equal(got, "1:u%v@x.org=OK;");
    }
}

/* A NUL byte anywhere is an error with its line. */
static void test_nul(void **state)
{
    static const char data[] = "a@example.com OK\nb@exa\0mple.com OK\n";

    read_fail_n(data, sizeof(data) - 1, "2: NUL byte in line");
}

/* The callback's refusal becomes "file:line: reason" and stops the read. */
static void test_callback_error(void **state)
{
    char err[512] = "";
    char want[600];

    write_file("good OK\n\n# c\nbad OK\nnever OK\n", 29);
    assert_int_equal(mapfile_read(test_path, refuse_bad, NULL, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:4: no bad keys", test_path);
    assert_string_equal(err, want);
}

/* A missing file says so. */
static void test_missing_file(void **state)
{
    char err[512] = "";

    assert_int_equal(mapfile_read("/nonexistent/map", collect, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/map: No such file or directory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_continuation),
        cmocka_unit_test(test_missing_value),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_long_line_bounded),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_nul),
        cmocka_unit_test(test_callback_error),
        cmocka_unit_test(test_missing_file),
    };

    return cmocka_run_group_tests_name("mapfile", tests, group_setup, group_teardown);
}
