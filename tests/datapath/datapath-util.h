/* SPDX-License-Identifier: MIT */
/*
 * What every datapath test binary (test-steering.c, test-hostile.c) needs besides its own rig:
 * clocks, an fd count for leak checks, and datapath_setup(), which moves the process into a
 * network namespace of its own with only loopback up, checks that the steering program loads
 * and attaches there, and raises the fd limit for thousands of client sockets.
 *
 * Header-only (static functions), included by one test file each.
 */
#pragma once

#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "steering.h"

static inline uint64_t now_msec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static inline void sleep_msec(uint64_t msec) {
        struct timespec ts = { .tv_sec = msec / 1000, .tv_nsec = (msec % 1000) * 1000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static inline unsigned count_open_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        unsigned n = 0;

        ck_assert_msg(d, "opendir(/proc/self/fd): %m");
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1; /* the directory's own fd */
}

/* Exit status for "cannot run here": skipped (77), unless CI forbids skipping. */
static inline int datapath_skip(const char *program, const char *why) {
        const char *no_skip = getenv("GRM_TEST_NO_SKIP");
        bool fail = no_skip && streq(no_skip, "1");

        fprintf(stderr, "%s: %s: %s\n", program,
                fail ? "cannot run (GRM_TEST_NO_SKIP=1)" : "skipped", why);
        return fail ? EXIT_FAILURE : 77;
}

static inline int datapath_loopback_up(void) {
        struct ifreq ifr = {};
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return negative_errno();
        strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                return negative_errno();
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                return negative_errno();
        return 0;
}

/* Loads and attaches the program once, to tell "no bpf() here" from a failing test. */
static inline int datapath_probe_bpf(void) {
        _cleanup_(steering_freep) Steering *s = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        int one = 1, r;

        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();
        r = steering_new(16, &s);
        if (r < 0)
                return r;
        return steering_add_group(s, fd, NULL);
}

/* Enough fds for thousands of client sockets. */
static inline void datapath_raise_fd_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 16384)
                rl.rlim_max = 16384; /* root may raise it */
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
}

/**
 * datapath_setup() - prepare the process for datapath tests: root, a private network
 * namespace with loopback up, a steering program that loads and attaches, a high fd limit.
 * @program: name for messages
 * Return: -1 when the tests can run; otherwise the exit status main() should return (77 when
 * skipped, EXIT_FAILURE on errors or when GRM_TEST_NO_SKIP=1 forbids skipping).
 */
static inline int datapath_setup(const char *program) {
        int r;

        if (geteuid() != 0)
                return datapath_skip(program, "needs root (a private network namespace and bpf())");
        if (unshare(CLONE_NEWNET) < 0) {
                if (errno == EPERM)
                        return datapath_skip(program, "unshare(CLONE_NEWNET) not permitted");
                fprintf(stderr, "%s: unshare(CLONE_NEWNET): %m\n", program);
                return EXIT_FAILURE;
        }
        r = datapath_loopback_up();
        if (r < 0) {
                fprintf(stderr, "%s: cannot bring lo up: %s\n", program, strerror(-r));
                return EXIT_FAILURE;
        }
        r = datapath_probe_bpf();
        if (r == -EPERM)
                return datapath_skip(program,
                                     "bpf() not permitted (loading or attaching the steering program)");
        if (r < 0) {
                fprintf(stderr, "%s: cannot load the steering program: %s\n", program,
                        strerror(-r));
                return EXIT_FAILURE;
        }
        datapath_raise_fd_limit();
        return -1;
}
