/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/shared/ratelimit.c: the burst passes, the rest of the window is suppressed
 * and counted, the next window reports how many were suppressed, a flood of a million events
 * lets through only burst per window, and odd clocks (0, backwards) do not suppress forever.
 */

#include <check.h>
#include <stdlib.h>

#include "macro.h"
#include "ratelimit.h"

START_TEST(test_burst_then_suppress) {
        RateLimit rl = RATELIMIT_INIT(10 * USEC_PER_SEC, 3);
        uint64_t suppressed = 99;

        for (unsigned i = 0; i < 3; i++) {
                ck_assert(ratelimit_below(&rl, 1000 + i, &suppressed));
                ck_assert_uint_eq(suppressed, 0);
        }
        for (unsigned i = 0; i < 5; i++)
                ck_assert(!ratelimit_below(&rl, 2000 + i, &suppressed));
        ck_assert_uint_eq(rl.suppressed_total, 5);
        ck_assert_uint_eq(rl.pending_suppressed, 5);

        /* The next window: the first event passes and carries the count of the suppressed. */
        ck_assert(ratelimit_below(&rl, 1000 + 10 * USEC_PER_SEC, &suppressed));
        ck_assert_uint_eq(suppressed, 5);
        ck_assert_uint_eq(rl.pending_suppressed, 0);
        ck_assert(ratelimit_below(&rl, 1001 + 10 * USEC_PER_SEC, &suppressed));
        ck_assert_uint_eq(suppressed, 0);
        ck_assert_uint_eq(rl.suppressed_total, 5);
}
END_TEST

START_TEST(test_window_edges) {
        RateLimit rl = RATELIMIT_INIT(1000, 1);

        ck_assert(ratelimit_below(&rl, 5000, NULL));
        ck_assert(!ratelimit_below(&rl, 5999, NULL));  /* still the same window */
        ck_assert(ratelimit_below(&rl, 6000, NULL));   /* exactly one interval later */
        ck_assert(!ratelimit_below(&rl, 6000, NULL));
}
END_TEST

START_TEST(test_flood) {
        /* One million events in 3 s of clock with 10 per 5 s: one window and a bit. */
        RateLimit rl = RATELIMIT_INIT(5 * USEC_PER_SEC, 10);
        unsigned passed = 0;

        for (uint64_t i = 0; i < 1000000; i++)
                passed += ratelimit_below(&rl, USEC_PER_SEC + i * 3, NULL);
        ck_assert_uint_eq(passed, 10);
        ck_assert_uint_eq(rl.suppressed_total, 1000000 - 10);
}
END_TEST

START_TEST(test_odd_clocks) {
        RateLimit rl = RATELIMIT_INIT(1000, 1);
        uint64_t suppressed;

        /* Time 0 is a valid time, not "no window yet" forever. */
        ck_assert(ratelimit_below(&rl, 0, NULL));
        ck_assert(!ratelimit_below(&rl, 0, NULL));
        ck_assert(!ratelimit_below(&rl, 999, NULL));
        /* A clock that goes backwards starts a new window. */
        ck_assert(ratelimit_below(&rl, 5000, NULL));
        ck_assert(!ratelimit_below(&rl, 5001, NULL));
        ck_assert(ratelimit_below(&rl, 10, &suppressed));
        ck_assert_uint_eq(suppressed, 1);
        /* The end of the clock does not overflow the window arithmetic. */
        ck_assert(ratelimit_below(&rl, UINT64_MAX, NULL));
        ck_assert(!ratelimit_below(&rl, UINT64_MAX, NULL));
}
END_TEST

START_TEST(test_burst_zero) {
        RateLimit rl = RATELIMIT_INIT(1000, 0);

        ck_assert(!ratelimit_below(&rl, 1, NULL));
        ck_assert(!ratelimit_below(&rl, 5000, NULL));
        ck_assert_uint_eq(rl.suppressed_total, 2);
}
END_TEST

static Suite *ratelimit_suite(void) {
        Suite *s = suite_create("ratelimit");
        TCase *tc = tcase_create("ratelimit_below");

        tcase_add_test(tc, test_burst_then_suppress);
        tcase_add_test(tc, test_window_edges);
        tcase_add_test(tc, test_flood);
        tcase_add_test(tc, test_odd_clocks);
        tcase_add_test(tc, test_burst_zero);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(ratelimit_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
