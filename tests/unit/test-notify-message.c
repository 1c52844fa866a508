/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/shared/notify-message.c: table-driven good and malformed datagrams (NUL
 * bytes, missing '=', bad numbers, oversized messages and STATUS= values), and the state of
 * the result after success and failure.
 */

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "notify-message.h"

/* A literal with its exact length, embedded NUL bytes included. */
#define S(x) x, sizeof(x) - 1

#define NONE UINT64_MAX

static const struct {
        const char *data;
        size_t len;
        int ret;
        bool ready, stopping, reloading;
        const char *status;
        int errno_value;
        uint64_t extend;
        pid_t main_pid;
        unsigned n_unknown;
        int bind_errno;
        const char *bind_address;
} cases[] = {
        /* good */
        { S(""),                                0, .extend = NONE },
        { S("\n\n\n"),                          0, .extend = NONE },
        { S("READY=1"),                         0, .ready = true, .extend = NONE },
        { S("READY=1\n"),                       0, .ready = true, .extend = NONE },
        { S("\nREADY=1\n\n"),                   0, .ready = true, .extend = NONE },
        { S("READY=1\nSTATUS=Listening on 3 sockets\n"),
                                                0, .ready = true, .status = "Listening on 3 sockets",
                                                   .extend = NONE },
        { S("STOPPING=1"),                      0, .stopping = true, .extend = NONE },
        { S("RELOADING=1"),                     0, .reloading = true, .extend = NONE },
        { S("READY=1\nSTOPPING=1\nRELOADING=1"), 0, .ready = true, .stopping = true, .reloading = true,
                                                   .extend = NONE },
        { S("READY=0"),                         0, .extend = NONE, .n_unknown = 1 },
        { S("READY=yes"),                       0, .extend = NONE, .n_unknown = 1 },
        { S("READY=11"),                        0, .extend = NONE, .n_unknown = 1 },
        { S("READY="),                          0, .extend = NONE, .n_unknown = 1 },
        { S("READY=1\r"),                       0, .extend = NONE, .n_unknown = 1 },
        { S("ready=1"),                         0, .extend = NONE, .n_unknown = 1 },
        { S("STOPPING=0\nRELOADING=2"),         0, .extend = NONE, .n_unknown = 2 },
        { S("FDSTORE=1\nX_FOO=bar\nWATCHDOG=1"), 0, .extend = NONE, .n_unknown = 3 },
        { S("STATUS="),                         0, .status = "", .extend = NONE },
        { S("STATUS=a\nSTATUS=b"),              0, .status = "b", .extend = NONE },
        { S("STATUS=a=b c"),                    0, .status = "a=b c", .extend = NONE },
        { S("STATUS=\x01\xff"),                 0, .status = "\x01\xff", .extend = NONE },
        { S("ERRNO=2"),                         0, .errno_value = 2, .extend = NONE },
        { S("ERRNO=0002"),                      0, .errno_value = 2, .extend = NONE },
        { S("ERRNO=4095"),                      0, .errno_value = 4095, .extend = NONE },
        { S("EXTEND_TIMEOUT_USEC=0"),           0, .extend = 0 },
        { S("EXTEND_TIMEOUT_USEC=5000000"),     0, .extend = 5000000 },
        { S("EXTEND_TIMEOUT_USEC=18446744073709551614"), 0, .extend = UINT64_MAX - 1 },
        { S("MAINPID=1234"),                    0, .main_pid = 1234, .extend = NONE },
        { S("MAINPID=2147483647"),              0, .main_pid = 2147483647, .extend = NONE },
        { S("MAINPID=1\nMAINPID=7"),            0, .main_pid = 7, .extend = NONE },
        { S("GRM_BIND_ERROR=98 tcp:127.0.0.1:8953"), 0, .extend = NONE, .bind_errno = 98,
                                                   .bind_address = "tcp:127.0.0.1:8953" },
        { S("GRM_BIND_ERROR=13 udp:[::1]:53\nGRM_BIND_ERROR=98 udp:[::]:1"), 0, .extend = NONE,
                                                   .bind_errno = 98, .bind_address = "udp:[::]:1" },
        { S("GRM_BIND_ERROR=1 0123456789012345678901234567890123456789012345678901234567890123"), 0,
                                                   .extend = NONE, .bind_errno = 1,
                                                   .bind_address = "0123456789012345678901234567890123456789012345678901234567890123" },

        /* malformed */
        { S("\0"),                              -EBADMSG },
        { S("READY=1\0"),                       -EBADMSG },
        { S("READY=1\n\0\n"),                   -EBADMSG },
        { S("STATUS=a\0b"),                     -EBADMSG },
        { S("READY"),                           -EBADMSG },
        { S("READY=1\nbroken"),                 -EBADMSG },
        { S("READY=1\n \n"),                    -EBADMSG },
        { S("=1"),                              -EBADMSG },
        { S("="),                               -EBADMSG },
        { S("ERRNO="),                          -EBADMSG },
        { S("ERRNO=abc"),                       -EBADMSG },
        { S("ERRNO=0"),                         -EBADMSG },
        { S("ERRNO=4096"),                      -EBADMSG },
        { S("ERRNO=-1"),                        -EBADMSG },
        { S("ERRNO=+2"),                        -EBADMSG },
        { S("ERRNO= 2"),                        -EBADMSG },
        { S("ERRNO=2 "),                        -EBADMSG },
        { S("ERRNO=99999999999999999999999"),   -EBADMSG },
        { S("EXTEND_TIMEOUT_USEC="),            -EBADMSG },
        { S("EXTEND_TIMEOUT_USEC=1.5"),         -EBADMSG },
        { S("EXTEND_TIMEOUT_USEC=-1"),          -EBADMSG },
        { S("EXTEND_TIMEOUT_USEC=18446744073709551616"), -EBADMSG },
        { S("MAINPID="),                        -EBADMSG },
        { S("MAINPID=0"),                       -EBADMSG },
        { S("MAINPID=-5"),                      -EBADMSG },
        { S("MAINPID=2147483648"),              -EBADMSG },
        { S("MAINPID=12ab"),                    -EBADMSG },
        { S("GRM_BIND_ERROR="),                 -EBADMSG },
        { S("GRM_BIND_ERROR=98"),               -EBADMSG },
        { S("GRM_BIND_ERROR=98 "),              -EBADMSG },
        { S("GRM_BIND_ERROR= udp:1.2.3.4:5"),   -EBADMSG },
        { S("GRM_BIND_ERROR=0 udp:1.2.3.4:5"),  -EBADMSG },
        { S("GRM_BIND_ERROR=4096 udp:1.2.3.4:5"), -EBADMSG },
        { S("GRM_BIND_ERROR=98 udp:1.2.3.4:5 x"), -EBADMSG },
        { S("GRM_BIND_ERROR=98 udp\x01"),        -EBADMSG },
        { S("GRM_BIND_ERROR=98 udp\xff"),        -EBADMSG },
        { S("GRM_BIND_ERROR=1 01234567890123456789012345678901234567890123456789012345678901234"), -EBADMSG },
};

START_TEST(test_parse_table) {
        _cleanup_(notify_message_done) NotifyMessage m = {};
        int r;

        r = notify_message_parse(cases[_i].data, cases[_i].len, &m);
        ck_assert_msg(r == cases[_i].ret, "case %d: got %d, expected %d", _i, r, cases[_i].ret);

        if (r < 0) {
                /* A failed parse leaves the empty message, nothing allocated. */
                ck_assert(!m.ready && !m.stopping && !m.reloading);
                ck_assert_ptr_null(m.status);
                ck_assert_int_eq(m.errno_value, 0);
                ck_assert_uint_eq(m.extend_timeout_usec, UINT64_MAX);
                ck_assert_int_eq(m.main_pid, 0);
                ck_assert_uint_eq(m.n_unknown, 0);
                ck_assert_int_eq(m.bind_errno, 0);
                ck_assert_ptr_null(m.bind_address);
                return;
        }

        ck_assert_int_eq(m.ready, cases[_i].ready);
        ck_assert_int_eq(m.stopping, cases[_i].stopping);
        ck_assert_int_eq(m.reloading, cases[_i].reloading);
        if (cases[_i].status)
                ck_assert_str_eq(m.status, cases[_i].status);
        else
                ck_assert_ptr_null(m.status);
        ck_assert_int_eq(m.errno_value, cases[_i].errno_value);
        ck_assert_uint_eq(m.extend_timeout_usec, cases[_i].extend);
        ck_assert_int_eq(m.main_pid, cases[_i].main_pid);
        ck_assert_uint_eq(m.n_unknown, cases[_i].n_unknown);
        ck_assert_int_eq(m.bind_errno, cases[_i].bind_errno);
        if (cases[_i].bind_address)
                ck_assert_str_eq(m.bind_address, cases[_i].bind_address);
        else
                ck_assert_ptr_null(m.bind_address);
}
END_TEST

START_TEST(test_parse_failure_frees_partial) {
        /* STATUS= was allocated before the bad line: it must not be visible or leak. */
        static const char msg[] = "STATUS=half done\nREADY=1\nMAINPID=x";
        NotifyMessage m;

        ck_assert_int_eq(notify_message_parse(msg, strlen(msg), &m), -EBADMSG);
        ck_assert_ptr_null(m.status);
        ck_assert(!m.ready);
        notify_message_done(&m);
}
END_TEST

START_TEST(test_parse_not_terminated) {
        /* The parser must stop at len: the bytes after it are not part of the datagram. */
        static const char buf[] = "READY=1\nMAINPID=12garbage";
        _cleanup_(notify_message_done) NotifyMessage m = {};

        ck_assert_int_eq(notify_message_parse(buf, strlen("READY=1\nMAINPID=12"), &m), 0);
        ck_assert(m.ready);
        ck_assert_int_eq(m.main_pid, 12);
}
END_TEST

START_TEST(test_parse_message_size) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_(notify_message_done) NotifyMessage m = {};
        size_t n = NOTIFY_MESSAGE_MAX + 1;

        /* "READY=1\n" then padding lines of "X=yyyy...\n" up to the size wanted. */
        buf = malloc(n);
        ck_assert_ptr_nonnull(buf);
        memset(buf, 'y', n);
        memcpy(buf, "READY=1\nX=", 10);

        ck_assert_int_eq(notify_message_parse(buf, NOTIFY_MESSAGE_MAX, &m), 0);
        ck_assert(m.ready);
        ck_assert_uint_eq(m.n_unknown, 1);
        notify_message_done(&m);

        ck_assert_int_eq(notify_message_parse(buf, NOTIFY_MESSAGE_MAX + 1, &m), -EMSGSIZE);
        ck_assert(!m.ready);
        ck_assert_int_eq(notify_message_parse(buf, SIZE_MAX, &m), -EMSGSIZE);
}
END_TEST

START_TEST(test_parse_status_size) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_(notify_message_done) NotifyMessage m = {};
        size_t prefix = strlen("READY=1\nSTATUS="), status_len;

        /* READY=1 with a 2,000-byte STATUS= (issue 8: it was dropped whole) */
        buf = malloc(NOTIFY_MESSAGE_MAX + 1);
        ck_assert_ptr_nonnull(buf);
        memcpy(buf, "READY=1\nSTATUS=", prefix);
        memset(buf + prefix, 's', NOTIFY_MESSAGE_MAX + 1 - prefix);
        ck_assert_int_eq(notify_message_parse(buf, prefix + 2000, &m), 0);
        ck_assert(m.ready);
        ck_assert_ptr_nonnull(m.status);
        ck_assert_uint_eq(strlen(m.status), 2000);
        notify_message_done(&m);

        /* STATUS= may fill the datagram up to systemd's 4,096 bytes... */
        status_len = NOTIFY_MESSAGE_MAX - prefix;
        ck_assert_int_eq(notify_message_parse(buf, NOTIFY_MESSAGE_MAX, &m), 0);
        ck_assert(m.ready);
        ck_assert_uint_eq(strlen(m.status), status_len);
        notify_message_done(&m);

        /* ... and one byte more rejects the datagram, READY=1 included. */
        ck_assert_int_eq(notify_message_parse(buf, NOTIFY_MESSAGE_MAX + 1, &m), -EMSGSIZE);
        ck_assert(!m.ready);
        ck_assert_ptr_null(m.status);
}
END_TEST

START_TEST(test_parse_bad_arguments) {
        NotifyMessage m;

        ck_assert_int_eq(notify_message_parse(NULL, 0, &m), 0);
        ck_assert(!m.ready);
        notify_message_done(&m);
        ck_assert_int_eq(notify_message_parse(NULL, 5, &m), -EINVAL);
        ck_assert_int_eq(notify_message_parse("READY=1", 7, NULL), -EINVAL);
}
END_TEST

START_TEST(test_done) {
        NotifyMessage m;

        ck_assert_int_eq(notify_message_parse(S("STATUS=x\nERRNO=5\nMAINPID=9\nEXTEND_TIMEOUT_USEC=1"), &m), 0);
        ck_assert_ptr_nonnull(m.status);
        notify_message_done(&m);
        ck_assert_ptr_null(m.status);
        ck_assert_int_eq(m.errno_value, 0);
        ck_assert_int_eq(m.main_pid, 0);
        ck_assert_uint_eq(m.extend_timeout_usec, UINT64_MAX);
        /* Twice, and on NULL, is harmless. */
        notify_message_done(&m);
        notify_message_done(NULL);
}
END_TEST

static Suite *notify_message_suite(void) {
        Suite *s = suite_create("notify-message");
        TCase *tc;

        tc = tcase_create("notify_message_parse");
        tcase_add_loop_test(tc, test_parse_table, 0, (int) ELEMENTSOF(cases));
        tcase_add_test(tc, test_parse_failure_frees_partial);
        tcase_add_test(tc, test_parse_not_terminated);
        tcase_add_test(tc, test_parse_message_size);
        tcase_add_test(tc, test_parse_status_size);
        tcase_add_test(tc, test_parse_bad_arguments);
        suite_add_tcase(s, tc);

        tc = tcase_create("notify_message_done");
        tcase_add_test(tc, test_done);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        SRunner *sr = srunner_create(notify_message_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
