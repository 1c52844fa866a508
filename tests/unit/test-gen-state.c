/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/shared/gen-state.c: every (state, event) pair against the table written
 * out independently here, out-of-range values, and the name and liveness helpers.
 */

#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "gen-state.h"
#include "macro.h"

#define BAD (-EINVAL)

/* Expected result of every pair: a state, or BAD for -EINVAL. */
static const struct {
        GenState from;
        GenEvent event;
        int expect;
} cases[] = {
        { GEN_STARTING, GEN_EVENT_READY,      GEN_WORKING },
        { GEN_STARTING, GEN_EVENT_SUPERSEDED, BAD },
        { GEN_STARTING, GEN_EVENT_STOP,       GEN_FAILED },
        { GEN_STARTING, GEN_EVENT_FAILED,     GEN_FAILED },
        { GEN_STARTING, GEN_EVENT_DEADLINE,   BAD },
        { GEN_STARTING, GEN_EVENT_EXITED,     GEN_FAILED },
        { GEN_STARTING, GEN_EVENT_STANDBY,    BAD },
        { GEN_STARTING, GEN_EVENT_REINSTATED, BAD },

        { GEN_WORKING,  GEN_EVENT_READY,      GEN_WORKING },
        { GEN_WORKING,  GEN_EVENT_SUPERSEDED, GEN_DRAINING },
        { GEN_WORKING,  GEN_EVENT_STOP,       GEN_DRAINING },
        { GEN_WORKING,  GEN_EVENT_FAILED,     BAD },
        { GEN_WORKING,  GEN_EVENT_DEADLINE,   BAD },
        { GEN_WORKING,  GEN_EVENT_EXITED,     GEN_EXITED },
        { GEN_WORKING,  GEN_EVENT_STANDBY,    GEN_STANDBY },
        { GEN_WORKING,  GEN_EVENT_REINSTATED, BAD },

        { GEN_DRAINING, GEN_EVENT_READY,      GEN_DRAINING },
        { GEN_DRAINING, GEN_EVENT_SUPERSEDED, GEN_DRAINING },
        { GEN_DRAINING, GEN_EVENT_STOP,       GEN_DRAINING },
        { GEN_DRAINING, GEN_EVENT_FAILED,     BAD },
        { GEN_DRAINING, GEN_EVENT_DEADLINE,   GEN_DRAINING },
        { GEN_DRAINING, GEN_EVENT_EXITED,     GEN_EXITED },
        { GEN_DRAINING, GEN_EVENT_STANDBY,    BAD },
        { GEN_DRAINING, GEN_EVENT_REINSTATED, BAD },

        { GEN_EXITED,   GEN_EVENT_READY,      BAD },
        { GEN_EXITED,   GEN_EVENT_SUPERSEDED, BAD },
        { GEN_EXITED,   GEN_EVENT_STOP,       BAD },
        { GEN_EXITED,   GEN_EVENT_FAILED,     BAD },
        { GEN_EXITED,   GEN_EVENT_DEADLINE,   BAD },
        { GEN_EXITED,   GEN_EVENT_EXITED,     BAD },
        { GEN_EXITED,   GEN_EVENT_STANDBY,    BAD },
        { GEN_EXITED,   GEN_EVENT_REINSTATED, BAD },

        { GEN_FAILED,   GEN_EVENT_READY,      BAD },
        { GEN_FAILED,   GEN_EVENT_SUPERSEDED, BAD },
        { GEN_FAILED,   GEN_EVENT_STOP,       BAD },
        { GEN_FAILED,   GEN_EVENT_FAILED,     BAD },
        { GEN_FAILED,   GEN_EVENT_DEADLINE,   BAD },
        { GEN_FAILED,   GEN_EVENT_EXITED,     GEN_FAILED },
        { GEN_FAILED,   GEN_EVENT_STANDBY,    BAD },
        { GEN_FAILED,   GEN_EVENT_REINSTATED, BAD },

        { GEN_STANDBY,  GEN_EVENT_READY,      GEN_STANDBY },
        { GEN_STANDBY,  GEN_EVENT_SUPERSEDED, GEN_DRAINING },
        { GEN_STANDBY,  GEN_EVENT_STOP,       GEN_DRAINING },
        { GEN_STANDBY,  GEN_EVENT_FAILED,     BAD },
        { GEN_STANDBY,  GEN_EVENT_DEADLINE,   BAD },
        { GEN_STANDBY,  GEN_EVENT_EXITED,     GEN_EXITED },
        { GEN_STANDBY,  GEN_EVENT_STANDBY,    GEN_STANDBY },
        { GEN_STANDBY,  GEN_EVENT_REINSTATED, GEN_WORKING },
};

START_TEST(test_next_table) {
        GenState s = (GenState) 99;
        int r;

        r = gen_state_next(cases[_i].from, cases[_i].event, &s);
        if (cases[_i].expect == BAD) {
                ck_assert_int_eq(r, -EINVAL);
                ck_assert_int_eq(s, 99); /* untouched on error */
        } else {
                ck_assert_int_eq(r, 0);
                ck_assert_int_eq(s, cases[_i].expect);
        }
}
END_TEST

START_TEST(test_next_table_complete) {
        /* The table above covers every pair exactly once. */
        unsigned seen[_GEN_STATE_MAX][_GEN_EVENT_MAX] = {};

        ck_assert_uint_eq(ELEMENTSOF(cases), (size_t) _GEN_STATE_MAX * _GEN_EVENT_MAX);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                seen[cases[i].from][cases[i].event]++;
        for (int s = 0; s < _GEN_STATE_MAX; s++)
                for (int e = 0; e < _GEN_EVENT_MAX; e++)
                        ck_assert_uint_eq(seen[s][e], 1);
}
END_TEST

START_TEST(test_next_out_of_range) {
        GenState s = GEN_WORKING;

        ck_assert_int_eq(gen_state_next(_GEN_STATE_MAX, GEN_EVENT_READY, &s), -ERANGE);
        ck_assert_int_eq(gen_state_next((GenState) -1, GEN_EVENT_READY, &s), -ERANGE);
        ck_assert_int_eq(gen_state_next((GenState) 1000, GEN_EVENT_READY, &s), -ERANGE);
        ck_assert_int_eq(gen_state_next(GEN_STARTING, _GEN_EVENT_MAX, &s), -ERANGE);
        ck_assert_int_eq(gen_state_next(GEN_STARTING, (GenEvent) -1, &s), -ERANGE);
        ck_assert_int_eq(s, GEN_WORKING);
}
END_TEST

START_TEST(test_next_lifecycle) {
        /* The paths drawn in gen-state.h. */
        GenState s = GEN_STARTING;

        ck_assert_int_eq(gen_state_next(s, GEN_EVENT_READY, &s), 0);
        ck_assert_int_eq(s, GEN_WORKING);
        ck_assert_int_eq(gen_state_next(s, GEN_EVENT_READY, &s), 0);
        ck_assert_int_eq(s, GEN_WORKING);
        ck_assert_int_eq(gen_state_next(s, GEN_EVENT_SUPERSEDED, &s), 0);
        ck_assert_int_eq(s, GEN_DRAINING);
        ck_assert_int_eq(gen_state_next(s, GEN_EVENT_DEADLINE, &s), 0);
        ck_assert_int_eq(s, GEN_DRAINING);
        ck_assert_int_eq(gen_state_next(s, GEN_EVENT_EXITED, &s), 0);
        ck_assert_int_eq(s, GEN_EXITED);
        ck_assert(!gen_state_is_live(s));

        /* settle: stands by, takes over again, or drains once the newer one settled */
        s = GEN_WORKING;
        ck_assert_int_eq(gen_state_next(s, GEN_EVENT_STANDBY, &s), 0);
        ck_assert_int_eq(s, GEN_STANDBY);
        ck_assert(gen_state_is_live(s));
        ck_assert_int_eq(gen_state_next(s, GEN_EVENT_REINSTATED, &s), 0);
        ck_assert_int_eq(s, GEN_WORKING);
        ck_assert_int_eq(gen_state_next(s, GEN_EVENT_STANDBY, &s), 0);
        ck_assert_int_eq(gen_state_next(s, GEN_EVENT_SUPERSEDED, &s), 0);
        ck_assert_int_eq(s, GEN_DRAINING);

        s = GEN_STARTING;
        ck_assert_int_eq(gen_state_next(s, GEN_EVENT_FAILED, &s), 0);
        ck_assert_int_eq(s, GEN_FAILED);
        ck_assert_int_eq(gen_state_next(s, GEN_EVENT_EXITED, &s), 0);
        ck_assert_int_eq(s, GEN_FAILED);
}
END_TEST

START_TEST(test_state_to_string) {
        static const char *const names[] = {
                [GEN_STARTING] = "starting",
                [GEN_WORKING]  = "working",
                [GEN_DRAINING] = "draining",
                [GEN_EXITED]   = "exited",
                [GEN_FAILED]   = "failed",
                [GEN_STANDBY]  = "standby",
        };

        ck_assert_uint_eq(ELEMENTSOF(names), _GEN_STATE_MAX);
        for (int s = 0; s < _GEN_STATE_MAX; s++)
                ck_assert_str_eq(gen_state_to_string((GenState) s), names[s]);
        ck_assert_ptr_null(gen_state_to_string(_GEN_STATE_MAX));
        ck_assert_ptr_null(gen_state_to_string((GenState) -1));
}
END_TEST

START_TEST(test_event_to_string) {
        static const char *const names[] = {
                [GEN_EVENT_READY]      = "ready",
                [GEN_EVENT_SUPERSEDED] = "superseded",
                [GEN_EVENT_STOP]       = "stop",
                [GEN_EVENT_FAILED]     = "failed",
                [GEN_EVENT_DEADLINE]   = "deadline",
                [GEN_EVENT_EXITED]     = "exited",
                [GEN_EVENT_STANDBY]    = "standby",
                [GEN_EVENT_REINSTATED] = "reinstated",
        };

        ck_assert_uint_eq(ELEMENTSOF(names), _GEN_EVENT_MAX);
        for (int e = 0; e < _GEN_EVENT_MAX; e++)
                ck_assert_str_eq(gen_event_to_string((GenEvent) e), names[e]);
        ck_assert_ptr_null(gen_event_to_string(_GEN_EVENT_MAX));
        ck_assert_ptr_null(gen_event_to_string((GenEvent) -1));
}
END_TEST

START_TEST(test_is_live) {
        ck_assert(gen_state_is_live(GEN_STARTING));
        ck_assert(gen_state_is_live(GEN_WORKING));
        ck_assert(gen_state_is_live(GEN_DRAINING));
        ck_assert(gen_state_is_live(GEN_STANDBY));
        ck_assert(!gen_state_is_live(GEN_EXITED));
        ck_assert(!gen_state_is_live(GEN_FAILED));
        ck_assert(!gen_state_is_live(_GEN_STATE_MAX));
        ck_assert(!gen_state_is_live((GenState) -1));
}
END_TEST

static Suite *gen_state_suite(void) {
        Suite *s = suite_create("gen-state");
        TCase *tc;

        tc = tcase_create("gen_state_next");
        tcase_add_loop_test(tc, test_next_table, 0, (int) ELEMENTSOF(cases));
        tcase_add_test(tc, test_next_table_complete);
        tcase_add_test(tc, test_next_out_of_range);
        tcase_add_test(tc, test_next_lifecycle);
        suite_add_tcase(s, tc);

        tc = tcase_create("gen_state_to_string");
        tcase_add_test(tc, test_state_to_string);
        suite_add_tcase(s, tc);

        tc = tcase_create("gen_event_to_string");
        tcase_add_test(tc, test_event_to_string);
        suite_add_tcase(s, tc);

        tc = tcase_create("gen_state_is_live");
        tcase_add_test(tc, test_is_live);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        SRunner *sr = srunner_create(gen_state_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
