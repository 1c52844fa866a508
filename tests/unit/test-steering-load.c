/* SPDX-License-Identifier: MIT */
/*
 * The steering programs (UDP and TCP) load and attach with exactly the capabilities the shipped
 * unit leaves grmd for BPF: CAP_BPF and CAP_NET_ADMIN, without CAP_PERFMON or CAP_SYS_ADMIN.
 * Without CAP_PERFMON the verifier also follows every speculative path and refuses narrower
 * stores over spilled pointers, so a program that loads as full root can still fail in the unit
 * (EFAULT from libbpf, "The sequence of 8193 jumps is too complex" in the verifier's log). This
 * runs in the unit suite, which every change runs before it lands, so no such program lands.
 *
 * Needs root (to hold CAP_BPF at all); exits 77 ("skipped") without it, a failure under
 * GRM_TEST_NO_SKIP=1 as everywhere else.
 */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "steering.h"

static int bound_socket(int type) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd, one = 1;

        fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            (type == SOCK_STREAM && listen(fd, 16) < 0)) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Keeps only CAP_BPF and CAP_NET_ADMIN, in every set. */
static int drop_to_unit_caps(void) {
        const cap_value_t keep[] = { CAP_BPF, CAP_NET_ADMIN };
        cap_t caps = cap_init();
        int r = 0;

        if (!caps)
                return -errno;
        if (cap_set_flag(caps, CAP_EFFECTIVE, 2, keep, CAP_SET) < 0 ||
            cap_set_flag(caps, CAP_PERMITTED, 2, keep, CAP_SET) < 0 || cap_set_proc(caps) < 0)
                r = -errno;
        cap_free(caps);
        return r;
}

/* In a child with the unit's capabilities: loads the program for a group of the given socket
 * type (twice: the second group shares the first one's maps). Exits 0 on success, else the
 * errno. */
static void load_in_child(int type) {
        Steering *s = NULL;
        int fd1, fd2, r;

        fd1 = bound_socket(type);
        fd2 = bound_socket(type);
        if (fd1 < 0 || fd2 < 0)
                _exit(100);
        r = drop_to_unit_caps();
        if (r < 0)
                _exit(101);
        r = steering_new(4096, &s);
        if (r >= 0)
                r = steering_add_group(s, fd1, NULL);
        if (r >= 0)
                r = steering_add_group(s, fd2, NULL);
        if (r < 0)
                fprintf(stderr, "steering_add_group(%s): %s\n", type == SOCK_STREAM ? "tcp" : "udp", strerror(-r));
        steering_free(s);
        _exit(r < 0 ? -r : 0);
}

static int run_child(int type) {
        pid_t pid = fork();
        int status;

        if (pid < 0)
                return -1;
        if (pid == 0)
                load_in_child(type);
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
                return -1;
        return WEXITSTATUS(status);
}

START_TEST(test_udp_program_loads) {
        int r = run_child(SOCK_DGRAM);
        ck_assert_msg(r == 0, "the UDP steering program does not load with CAP_BPF and CAP_NET_ADMIN only "
                      "(child exit %d): run the verifier as in the comment at the top of this file", r);
}
END_TEST

START_TEST(test_tcp_program_loads) {
        int r = run_child(SOCK_STREAM);
        ck_assert_msg(r == 0, "the TCP steering program does not load with CAP_BPF and CAP_NET_ADMIN only "
                      "(child exit %d)", r);
}
END_TEST

static Suite *steering_load_suite(void) {
        Suite *s = suite_create("steering-load");
        TCase *tc = tcase_create("unit-capabilities");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_udp_program_loads);
        tcase_add_test(tc, test_tcp_program_loads);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr;
        int failed;

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP: loading BPF programs needs root\n");
                if (getenv("GRM_TEST_NO_SKIP") && streq(getenv("GRM_TEST_NO_SKIP"), "1"))
                        return EXIT_FAILURE;
                return 77;
        }
        sr = srunner_create(steering_load_suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
