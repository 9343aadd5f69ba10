/*
 * test_listen.c - unit tests for lib/listen.c: the inet listeners
 *
 * On loopback only: an IPv6 listener takes IPv6 alone (IPV6_V6ONLY, so
 * the documented "0.0.0.0:25" and "[::]:25" pair can both bind; the pair
 * itself would listen beyond loopback), an IPv4 one is bound as before,
 * and a port in use is refused with the listener written as the
 * configuration writes it.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "listen.h"

/* t_free_port - a port free on loopback now (bound and let go: listen_parse takes 1..65535) */
static int t_free_port(int family)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = socket(family, SOCK_STREAM, 0), port;

    assert_true(fd >= 0);
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = (sa_family_t) family;
    if (family == AF_INET6)
        ((struct sockaddr_in6 *) &ss)->sin6_addr = in6addr_loopback;
    else
        ((struct sockaddr_in *) &ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *) &ss, family == AF_INET6 ? sizeof(struct sockaddr_in6)
                          : sizeof(struct sockaddr_in)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *) &ss, &len), 0);
    port = family == AF_INET6 ? ntohs(((struct sockaddr_in6 *) &ss)->sin6_port)
        : ntohs(((struct sockaddr_in *) &ss)->sin_port);
    close(fd);
    return port;
}

/* t_open - listen on spec; the fd (the test fails if it cannot) */
static int t_open(const char *spec)
{
    LISTEN_ADDR la;
    char err[256];
    int fd;

    assert_int_equal(listen_parse(spec, &la, err, sizeof(err)), 0);
    fd = listen_open(&la, 5, 0, err, sizeof(err));
    if (fd < 0)
        fail_msg("%s: %s", spec, err);
    return fd;
}

/* t_port - the port fd is bound to */
static int t_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    assert_int_equal(getsockname(fd, (struct sockaddr *) &ss, &len), 0);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *) &ss)->sin6_port);
    return ntohs(((struct sockaddr_in *) &ss)->sin_port);
}

/* IPv6 listeners are IPv6 only; IPv4 ones are left as they were */
static void test_v6only(void **state)
{
    int fd, v = -1;
    socklen_t len = sizeof(v);
    char spec[64];

    (void) state;
    snprintf(spec, sizeof(spec), "[::1]:%d", t_free_port(AF_INET6));
    fd = t_open(spec);
    assert_int_equal(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len), 0);
    assert_int_equal(v, 1);
    close(fd);
}

/* IPv4 listeners: bound, and a port in use refused the same way */
static void test_v4(void **state)
{
    char spec[64], err[256], want[80];
    LISTEN_ADDR la;
    int fd;

    (void) state;
    snprintf(spec, sizeof(spec), "127.0.0.1:%d", t_free_port(AF_INET));
    fd = t_open(spec);
    assert_true(t_port(fd) > 0);
    snprintf(spec, sizeof(spec), "127.0.0.1:%d", t_port(fd));
    assert_int_equal(listen_parse(spec, &la, err, sizeof(err)), 0);
    assert_int_equal(listen_open(&la, 5, 0, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "bind inet:127.0.0.1:%d: Address already in use", t_port(fd));
    assert_string_equal(err, want);
    close(fd);
}

/* t_have_v6 - does this machine have ::1? */
static int t_have_v6(void)
{
    FILE *fp = fopen("/proc/net/if_inet6", "r");
    char line[256];
    int found = 0;

    while (fp != NULL && !found && fgets(line, sizeof(line), fp) != NULL)
        found = strncmp(line, "00000000000000000000000000000001 ", 33) == 0;
    if (fp != NULL)
        fclose(fp);
    return found;
}

/* a port in use: refused, the listener named as written ("[::1]:N", not "inet:::1:N") */
static void test_in_use(void **state)
{
    char spec[64], err[256], want[80];
    LISTEN_ADDR la;
    int fd;

    (void) state;
    snprintf(spec, sizeof(spec), "[::1]:%d", t_free_port(AF_INET6));
    fd = t_open(spec);
    snprintf(spec, sizeof(spec), "[::1]:%d", t_port(fd));
    assert_int_equal(listen_parse(spec, &la, err, sizeof(err)), 0);
    assert_int_equal(listen_open(&la, 5, 0, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "bind inet:[::1]:%d: Address already in use", t_port(fd));
    assert_string_equal(err, want);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4),
        cmocka_unit_test(test_v6only),         /* these two need ::1 */
        cmocka_unit_test(test_in_use),
    };
    size_t n = sizeof(tests) / sizeof(tests[0]);

    /* Left out, not skipped, without ::1: automake counts a cmocka skip as a failure. */
    if (!t_have_v6()) {
        printf("# no ::1 here: the IPv6 tests are left out\n");
        n = 1;
    }
    return _cmocka_run_group_tests("listen", tests, n, NULL, NULL);
}
