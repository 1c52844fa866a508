/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/shared/sock-diag.c: the "not read" rule over sample sequences (growing,
 * stuck, full and dropping, busy but drained, gone), and a real lookup by cookie of a loopback
 * socket of this process (sock_diag needs no privilege for the caller's own namespace).
 */

#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "sock-diag.h"

static SockQueue sample(uint32_t queued, uint32_t drops) {
        return (SockQueue) { .found = true, .queued_bytes = queued, .drops = drops };
}

/* Feeds the samples (queued bytes; UINT32_MAX: socket gone) and checks the verdict after each
 * and which ones changed it. */
static const struct {
        const char *name;
        uint32_t queued[8];
        bool unread[8];
        unsigned n;
} sequences[] = {
        { "growing: unread after 3 samples", { 100, 200, 300, 400 }, { 0, 0, 1, 1 }, 4 },
        { "stuck at the same size", { 512, 512, 512, 512, 512 }, { 0, 0, 1, 1, 1 }, 5 },
        { "busy but drained between samples", { 100, 50, 300, 10, 900, 0 }, { 0, 0, 0, 0, 0, 0 }, 6 },
        { "empty", { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, 4 },
        { "read again once it shrinks", { 10, 20, 30, 40, 5, 6 }, { 0, 0, 1, 1, 0, 0 }, 6 },
        { "read again once it empties", { 10, 20, 30, 0, 1, 2, 3 }, { 0, 0, 1, 0, 0, 0, 1 }, 7 },
        { "socket gone", { 10, 20, 30, UINT32_MAX, 40 }, { 0, 0, 1, 0, 0 }, 5 },
};

START_TEST(test_watch_sequences) {
        SockWatch w = {};

        for (unsigned i = 0; i < sequences[_i].n; i++) {
                SockQueue q = sample(sequences[_i].queued[i], i);
                bool was = w.unread, changed;

                if (sequences[_i].queued[i] == UINT32_MAX)
                        q = (SockQueue) { .found = false };
                changed = sock_watch_update(&w, &q);
                ck_assert_msg(w.unread == sequences[_i].unread[i], "%s: sample %u: unread %d", sequences[_i].name, i,
                              w.unread);
                ck_assert_int_eq(changed, was != w.unread);
        }
}
END_TEST

START_TEST(test_watch_full_and_dropping) {
        SockWatch w = {};
        SockQueue q = sample(212992, 0);

        for (unsigned i = 0; i < SOCK_WATCH_SAMPLES; i++) {
                q.drops += 100;
                (void) sock_watch_update(&w, &q);
        }
        ck_assert(w.unread);
        ck_assert_uint_eq(w.last_drops, 300);
}
END_TEST

#define DELIVERY_TIMEOUT_MSEC 2000

START_TEST(test_diag_lookup) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa), clen = sizeof(uint64_t);
        SockQueue q[2] = {};
        char buf[100] = "x";
        struct pollfd pfd;
        int fd;

        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &q[0].cookie, &clen), 0);
        q[1].cookie = q[0].cookie + 1000000; /* no such socket */

        ck_assert_int_eq(sock_diag_queues(IPPROTO_UDP, q, 2), 0);
        ck_assert(q[0].found);
        ck_assert(!q[1].found);
        ck_assert_uint_eq(q[0].queued_bytes, 0);
        ck_assert_uint_gt(q[0].rcvbuf, 0);

        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(sendto(fd, buf, sizeof(buf), 0, (struct sockaddr *) &sa, sizeof(sa)), (int) sizeof(buf));
        /* Loopback delivery is not done when sendto() returns: on a loaded machine the softirq
         * that queues the datagrams can be deferred to ksoftirqd. So wait for the first, then
         * for the queue to grow past the three (every 10 ms, DELIVERY_TIMEOUT_MSEC in all). */
        pfd = (struct pollfd) { .fd = fd, .events = POLLIN };
        ck_assert_int_eq(poll(&pfd, 1, DELIVERY_TIMEOUT_MSEC), 1);
        for (unsigned waited = 0;; waited += 10) {
                ck_assert_int_eq(sock_diag_queues(IPPROTO_UDP, q, 2), 0);
                ck_assert(q[0].found);
                if (q[0].queued_bytes > 3 * sizeof(buf) || waited >= DELIVERY_TIMEOUT_MSEC)
                        break;
                (void) usleep(10 * 1000);
        }
        ck_assert_uint_gt(q[0].queued_bytes, 3 * sizeof(buf));

        for (int i = 0; i < 3; i++) {
                ck_assert_int_eq(poll(&pfd, 1, DELIVERY_TIMEOUT_MSEC), 1);
                ck_assert_int_eq(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), (int) sizeof(buf));
        }
        ck_assert_int_eq(sock_diag_queues(IPPROTO_UDP, q, 2), 0);
        ck_assert_uint_eq(q[0].queued_bytes, 0);

        close(fd);
        ck_assert_int_eq(sock_diag_queues(IPPROTO_UDP, q, 2), 0);
        ck_assert(!q[0].found);
        ck_assert_int_eq(sock_diag_queues(IPPROTO_UDP, NULL, 0), 0);
        ck_assert_int_eq(sock_diag_queues(IPPROTO_UDP, NULL, 1), -EINVAL);
}
END_TEST

static Suite *sock_diag_suite(void) {
        Suite *s = suite_create("sock-diag");
        TCase *tc;

        tc = tcase_create("sock_watch_update");
        tcase_add_loop_test(tc, test_watch_sequences, 0, (int) ELEMENTSOF(sequences));
        tcase_add_test(tc, test_watch_full_and_dropping);
        suite_add_tcase(s, tc);

        tc = tcase_create("sock_diag_queues");
        tcase_add_test(tc, test_diag_lookup);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(sock_diag_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
