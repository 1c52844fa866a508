/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the parts of src/shared/census.c that need no BPF: census_classify() over a
 * table of sockets next to a steered group (same or other address, wildcards, dual stack,
 * connected with and without SO_REUSEPORT, TCP), census_same_group()/census_find(),
 * census_format_address(), and census_find_owners() over a fake /proc tree (symlinks say what
 * the kernel's do) and over this process's own socket. The iterators are tested in
 * tests/datapath/test-census.c.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "census.h"
#include "macro.h"

static CensusSocket sock(int protocol, const char *addr, uint16_t port, uint32_t group) {
        CensusSocket s = { .protocol = protocol, .local_port = port, .group = group, .reuseport = true };

        if (strchr(addr, ':')) {
                s.family = AF_INET6;
                ck_assert_int_eq(inet_pton(AF_INET6, addr, s.local_addr), 1);
        } else {
                s.family = AF_INET;
                ck_assert_int_eq(inet_pton(AF_INET, addr, s.local_addr), 1);
        }
        return s;
}

static CensusSocket connected(CensusSocket s, bool reuseport) {
        s.connected = true;
        s.reuseport = reuseport;
        s.remote_port = 5000;
        return s;
}

static CensusSocket v6only(CensusSocket s) {
        s.ipv6only = true;
        return s;
}

#define U IPPROTO_UDP
#define T IPPROTO_TCP

START_TEST(test_classify) {
        const struct {
                const char *name;
                CensusSocket s, steered;
                CensusVerdict want;
        } cases[] = {
                { "the steered group itself", sock(U, "127.0.0.1", 9000, 1), sock(U, "127.0.0.1", 9000, 1), CENSUS_NORMAL },
                { "another group, same address", sock(U, "127.0.0.1", 9000, 2), sock(U, "127.0.0.1", 9000, 1), CENSUS_OUTSIDE },
                { "in no group, same address", sock(U, "127.0.0.1", 9000, 0), sock(U, "127.0.0.1", 9000, 1), CENSUS_OUTSIDE },
                { "another address", sock(U, "127.0.0.2", 9000, 2), sock(U, "127.0.0.1", 9000, 1), CENSUS_NORMAL },
                { "another port", sock(U, "127.0.0.1", 9001, 2), sock(U, "127.0.0.1", 9000, 1), CENSUS_NORMAL },
                { "other protocol", sock(T, "127.0.0.1", 9000, 2), sock(U, "127.0.0.1", 9000, 1), CENSUS_NORMAL },
                { "specific address under a wildcard group", sock(U, "127.0.0.2", 9000, 2), sock(U, "0.0.0.0", 9000, 1), CENSUS_OUTSIDE },
                { "wildcard next to a specific group", sock(U, "0.0.0.0", 9000, 2), sock(U, "127.0.0.1", 9000, 1), CENSUS_NORMAL },
                { "IPv4 under a dual-stack IPv6 wildcard", sock(U, "127.0.0.1", 9000, 2), sock(U, "::", 9000, 1), CENSUS_OUTSIDE },
                { "IPv4 under an IPv6-only wildcard", sock(U, "127.0.0.1", 9000, 2), v6only(sock(U, "::", 9000, 1)), CENSUS_NORMAL },
                { "IPv6 next to an IPv4 wildcard", sock(U, "::1", 9000, 2), sock(U, "0.0.0.0", 9000, 1), CENSUS_NORMAL },
                { "IPv6, same address", sock(U, "::1", 9000, 0), sock(U, "::1", 9000, 1), CENSUS_OUTSIDE },
                { "connected, SO_REUSEPORT cleared", connected(sock(U, "127.0.0.1", 9000, 0), false), sock(U, "127.0.0.1", 9000, 1), CENSUS_NORMAL },
                { "connected, SO_REUSEPORT kept", connected(sock(U, "127.0.0.1", 9000, 0), true), sock(U, "127.0.0.1", 9000, 1), CENSUS_CONNECTED_REUSEPORT },
                { "connected with SO_REUSEPORT, hosting a foreign group", connected(sock(U, "127.0.0.1", 9000, 3), true), sock(U, "127.0.0.1", 9000, 1), CENSUS_CONNECTED_REUSEPORT },
                { "connected, another address", connected(sock(U, "127.0.0.2", 9000, 0), true), sock(U, "127.0.0.1", 9000, 1), CENSUS_NORMAL },
                { "TCP listener in the group", sock(T, "127.0.0.1", 53, 4), sock(T, "127.0.0.1", 53, 4), CENSUS_NORMAL },
                { "TCP listener outside", sock(T, "127.0.0.1", 53, 5), sock(T, "127.0.0.1", 53, 4), CENSUS_OUTSIDE },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                CensusSocket s = cases[i].s, steered = cases[i].steered;

                s.cookie = 100;
                steered.cookie = 200;
                ck_assert_msg(census_classify(&s, &steered) == cases[i].want, "%s: %s, want %s", cases[i].name,
                              census_verdict_to_string(census_classify(&s, &steered)),
                              census_verdict_to_string(cases[i].want));
        }
}
END_TEST

START_TEST(test_concerns) {
        CensusSocket steered = sock(U, "127.0.0.1", 9000, 1), any = sock(U, "0.0.0.0", 9000, 1);
        CensusSocket client = connected(sock(U, "127.0.0.1", 9000, 0), false), other = sock(U, "127.0.0.9", 9000, 0);
        CensusSocket port = sock(U, "127.0.0.1", 9001, 0), tcp = sock(T, "127.0.0.1", 9000, 0);

        ck_assert(census_concerns(&steered, &steered));
        ck_assert(census_concerns(&client, &steered));
        ck_assert(census_concerns(&other, &any));
        ck_assert(!census_concerns(&other, &steered));
        ck_assert(!census_concerns(&port, &steered));
        ck_assert(!census_concerns(&tcp, &steered));
}
END_TEST

START_TEST(test_classify_same_cookie) {
        /* The steered socket itself, whatever the numbering says (a group of its own). */
        CensusSocket s = sock(U, "127.0.0.1", 9000, 0);

        s.cookie = 7;
        ck_assert_int_eq(census_classify(&s, &s), CENSUS_NORMAL);
}
END_TEST

START_TEST(test_verdict_names) {
        ck_assert_str_eq(census_verdict_to_string(CENSUS_NORMAL), "normal");
        ck_assert_str_eq(census_verdict_to_string(CENSUS_OUTSIDE), "outside");
        ck_assert_str_eq(census_verdict_to_string(CENSUS_CONNECTED_REUSEPORT), "connected-reuseport");
        ck_assert_ptr_null(census_verdict_to_string(_CENSUS_VERDICT_MAX));
}
END_TEST

START_TEST(test_same_group) {
        CensusSocket socks[] = {
                sock(U, "127.0.0.1", 9000, 1), sock(U, "127.0.0.1", 9000, 1),
                sock(U, "127.0.0.1", 9000, 2), sock(U, "127.0.0.1", 9000, 0), sock(U, "127.0.0.1", 9000, 0),
        };

        for (size_t i = 0; i < ELEMENTSOF(socks); i++)
                socks[i].cookie = 10 + i;
        ck_assert_int_eq(census_same_group(socks, ELEMENTSOF(socks), 10, 11), 1);
        ck_assert_int_eq(census_same_group(socks, ELEMENTSOF(socks), 10, 12), 0);
        /* Two sockets in no group are not in one. */
        ck_assert_int_eq(census_same_group(socks, ELEMENTSOF(socks), 13, 14), 0);
        ck_assert_int_eq(census_same_group(socks, ELEMENTSOF(socks), 10, 99), -ENOENT);
        ck_assert_int_eq(census_same_group(socks, 0, 10, 11), -ENOENT);
        ck_assert_ptr_eq(census_find(socks, ELEMENTSOF(socks), 12), &socks[2]);
        ck_assert_ptr_null(census_find(socks, ELEMENTSOF(socks), 1));
}
END_TEST

START_TEST(test_format_address) {
        char buf[CENSUS_ADDRESS_MAX];
        CensusSocket s = connected(sock(U, "127.0.0.1", 9000, 0), false);
        CensusSocket s6 = sock(U, "fe80::1", 53, 0);

        ck_assert_int_eq(inet_pton(AF_INET, "10.1.2.3", s.remote_addr), 1);
        ck_assert_str_eq(census_format_address(&s, false, buf), "127.0.0.1:9000");
        ck_assert_str_eq(census_format_address(&s, true, buf), "10.1.2.3:5000");
        ck_assert_str_eq(census_format_address(&s6, false, buf), "[fe80::1]:53");
        ck_assert_str_eq(census_format_address(&s6, true, buf), "[::]:0");
}
END_TEST

/* A fake /proc: pid directories with fd symlinks to what the kernel's would say. */
static void fake_fd(const char *root, const char *pid, const char *fd, const char *target) {
        char path[512];

        snprintf(path, sizeof(path), "%s/%s", root, pid);
        (void) mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/%s/fd", root, pid);
        (void) mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/%s/fd/%s", root, pid, fd);
        ck_assert_msg(symlink(target, path) == 0, "symlink %s: %m", path);
}

START_TEST(test_find_owners_fake_proc) {
        char root[] = "/tmp/test-census-XXXXXX";
        uint64_t inodes[] = { 42, 43, 44, 0, 45 };
        pid_t pids[ELEMENTSOF(inodes)];
        char cmd[600];

        ck_assert_ptr_nonnull(mkdtemp(root));
        fake_fd(root, "300", "3", "socket:[42]");
        fake_fd(root, "200", "4", "socket:[42]");  /* lowest pid wins */
        fake_fd(root, "200", "5", "socket:[43]");
        fake_fd(root, "100", "0", "pipe:[44]");    /* not a socket */
        fake_fd(root, "100", "1", "socket:[44]x"); /* malformed */
        fake_fd(root, "100", "2", "socket:[]");
        fake_fd(root, "self", "3", "socket:[45]"); /* not a pid */
        fake_fd(root, "0", "3", "socket:[45]");    /* pid 0 is none */
        fake_fd(root, "12ab", "3", "socket:[45]");
        ck_assert_int_eq(census_find_owners(root, inodes, ELEMENTSOF(inodes), pids), 0);
        ck_assert_int_eq(pids[0], 200);
        ck_assert_int_eq(pids[1], 200);
        ck_assert_int_eq(pids[2], 0);
        ck_assert_int_eq(pids[3], 0);
        ck_assert_int_eq(pids[4], 0);
        ck_assert_int_eq(census_find_owners("/nonexistent-census", inodes, 1, pids), -ENOENT);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_find_owners_own_socket) {
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct stat st;
        uint64_t inode;
        pid_t pid = -1;

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(fstat(fd, &st), 0);
        inode = st.st_ino;
        ck_assert_int_eq(census_find_owners("/proc", &inode, 1, &pid), 0);
        ck_assert_int_eq(pid, getpid());
}
END_TEST

START_TEST(test_socket_cookie) {
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        uint64_t a = 0, b = 0;

        ck_assert_int_eq(census_socket_cookie(fd, &a), 0);
        ck_assert_int_eq(census_socket_cookie(fd, &b), 0);
        ck_assert_uint_ne(a, 0);
        ck_assert_uint_eq(a, b);
        ck_assert_int_eq(census_socket_cookie(-1, &a), -EBADF);
}
END_TEST

static Suite *census_suite(void) {
        Suite *s = suite_create("census");
        TCase *tc;

        tc = tcase_create("census_classify");
        tcase_add_test(tc, test_classify);
        tcase_add_test(tc, test_classify_same_cookie);
        tcase_add_test(tc, test_concerns);
        tcase_add_test(tc, test_verdict_names);
        suite_add_tcase(s, tc);
        tc = tcase_create("census_same_group");
        tcase_add_test(tc, test_same_group);
        suite_add_tcase(s, tc);
        tc = tcase_create("census_format_address");
        tcase_add_test(tc, test_format_address);
        suite_add_tcase(s, tc);
        tc = tcase_create("census_find_owners");
        tcase_add_test(tc, test_find_owners_fake_proc);
        tcase_add_test(tc, test_find_owners_own_socket);
        suite_add_tcase(s, tc);
        tc = tcase_create("census_socket_cookie");
        tcase_add_test(tc, test_socket_cookie);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(census_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
