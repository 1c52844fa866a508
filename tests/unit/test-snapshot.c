/* SPDX-License-Identifier: MIT */
/*
 * The hand-over format (src/daemon/snapshot.c) as a reader meets it: snapshots of this format,
 * of the format before versions were checked, of a newer format and of other maps ABI versions,
 * and broken ones. The fds a snapshot carries are stand-ins (/dev/null): only ownership matters
 * here, and every one must be closed or handed on, whatever the outcome.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "manager.h"

static unsigned count_fds(void) {
        unsigned n = 0;

        for (int fd = 0; fd < 1024; fd++)
                if (fcntl(fd, F_GETFD) >= 0)
                        n++;
        return n;
}

/* STEERING_N_MAPS map stand-ins, then n_pidfds pidfd stand-ins. */
static size_t make_fds(int *fds, unsigned n_pidfds) {
        size_t n = 0;

        for (unsigned i = 0; i < STEERING_N_MAPS + n_pidfds; i++) {
                fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                ck_assert_int_ge(fds[n], 0);
                n++;
        }
        return n;
}

static int read_text(const char *text, unsigned n_pidfds, Snapshot **ret) {
        int fds[STEERING_N_MAPS + 8];
        size_t n = make_fds(fds, n_pidfds);

        return snapshot_read(text, strlen(text), fds, n, ret);
}

/* A current head record followed by rest. */
static const char *with_head(const char *rest) {
        static char buf[2048];

        snprintf(buf, sizeof(buf),
                 "grmd version=2 seq=7 maps_abi=%u last_gen=4 crash_count=1 restarts_done=3 restarts_failed=1\n%s",
                 GRM_MAPS_ABI_VERSION, rest);
        return buf;
}

START_TEST(test_current) {
        unsigned before = count_fds();
        char why[256];
        Snapshot *s = NULL;

        ck_assert_int_eq(read_text(with_head(
                                   "group index=0 address=udp:127.0.0.1:9000 name=grm\n"
                                   "generation generation=4 slot=4 slot_held=1 state=working pid=200 sockets=1 per_group=1 pidfd=0\n"
                                   "generation generation=3 slot=3 slot_held=1 state=standby pid=199 sockets=1 per_group=1 pidfd=1 status=hello%20there\n"
                                   "generation generation=2 slot=2 slot_held=0 state=exited pid=150 failure=killed\n"),
                                   2, &s), 0);
        ck_assert_uint_eq(s->version, 2);
        ck_assert_uint_eq(s->maps_abi, GRM_MAPS_ABI_VERSION);
        ck_assert_uint_eq(s->seq, 7);
        ck_assert_uint_eq(s->last_gen, 4);
        ck_assert_uint_eq(s->crash_count, 1);
        ck_assert_uint_eq(s->restarts_done, 3);
        ck_assert_uint_eq(s->n_groups, 1);
        ck_assert_str_eq(s->groups[0].address, "udp:127.0.0.1:9000");
        ck_assert_ptr_nonnull(s->generations);
        ck_assert_uint_eq(s->generations->gen, 4);
        ck_assert_int_eq(s->generations->state, GEN_WORKING);
        ck_assert_int_ge(s->generations->pidfd, 0);
        ck_assert_int_eq(s->generations->next->state, GEN_STANDBY);
        ck_assert_str_eq(s->generations->next->status, "hello there");
        ck_assert_int_eq(s->generations->next->next->state, GEN_EXITED);
        ck_assert_int_lt(s->generations->next->next->pidfd, 0);
        ck_assert_int_eq(snapshot_check(s, why, sizeof(why)), 0);
        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                ck_assert_int_ge(s->map_fds[i], 0);
        snapshot_free(s);
        ck_assert_uint_eq(count_fds(), before);
}
END_TEST

/* Format 1 (no maps_abi): read; the maps' own ABI version decides when they are adopted. */
START_TEST(test_format1) {
        unsigned before = count_fds();
        char why[256];
        Snapshot *s = NULL;

        ck_assert_int_eq(read_text("grmd version=1 seq=3 last_gen=1\n"
                                   "generation generation=1 slot=1 slot_held=1 state=working pid=99 pidfd=0\n",
                                   1, &s), 0);
        ck_assert_uint_eq(s->version, 1);
        ck_assert_uint_eq(s->maps_abi, 0);
        ck_assert_int_eq(snapshot_check(s, why, sizeof(why)), 0);
        snapshot_free(s);
        ck_assert_uint_eq(count_fds(), before);
}
END_TEST

/* A newer format, no format at all, other maps: read (so the instances can be named), refused
 * with a reason. */
START_TEST(test_refused) {
        static const struct {
                const char *head;
                const char *reason;
        } cases[] = {
                { "grmd version=3 seq=1\n", "format version 3" },
                { "grmd version=99 seq=1\n", "format version 99" },
                { "grmd seq=1\n", "format version 0" },
                { "grmd version=2 seq=1 maps_abi=1\n", "ABI version 1" },
                { "grmd version=2 seq=1 maps_abi=2\n", "ABI version 2" }, /* coarse-clock ticks */
                { "grmd version=2 seq=1 maps_abi=77\n", "ABI version 77" },
        };
        unsigned before = count_fds();

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char text[256], why[256] = "";
                Snapshot *s = NULL;

                snprintf(text, sizeof(text), "%sgeneration generation=5 slot=1 slot_held=1 state=working pid=300 pidfd=0\n",
                         cases[i].head);
                ck_assert_int_eq(read_text(text, 1, &s), 0);
                ck_assert_int_eq(snapshot_check(s, why, sizeof(why)), -EPROTONOSUPPORT);
                ck_assert_msg(strstr(why, cases[i].reason), "case %zu: reason '%s'", i, why);
                ck_assert_uint_eq(s->generations->pid, 300); /* still named in the refusal */
                snapshot_free(s);
        }
        ck_assert_uint_eq(count_fds(), before);
}
END_TEST

/* Broken snapshots: refused, every fd closed. */
START_TEST(test_broken) {
        static const char *const texts[] = {
                "",
                "garbage",
                "group index=0 address=udp:127.0.0.1:9000\n",        /* no grmd record */
                "grmd version=2\n",                                  /* no seq */
                "grmd version=2 seq=x\n",
                "grmd version=2 seq=1\ngroup address=udp:1.2.3.4:5\n", /* group without index */
        };
        unsigned before = count_fds();

        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                Snapshot *s = NULL;

                ck_assert_msg(read_text(texts[i], 2, &s) < 0, "case %zu parsed", i);
                ck_assert_ptr_null(s);
        }
        /* too few fds for the maps */
        {
                int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                Snapshot *s = NULL;

                ck_assert_int_lt(snapshot_read("grmd version=2 seq=1\n", 21, &fd, 1, &s), 0);
        }
        ck_assert_uint_eq(count_fds(), before);
}
END_TEST

/* Generations of a state or slot this grmd does not know are skipped; a pidfd index past the
 * fds is none. */
START_TEST(test_unknown_generation) {
        unsigned before = count_fds();
        Snapshot *s = NULL;

        ck_assert_int_eq(read_text(with_head(
                                   "generation generation=9 slot=1 state=frobbing pid=1 pidfd=0\n"
                                   "generation generation=8 slot=99 state=working pid=2 pidfd=0\n"
                                   "generation generation=7 slot=2 state=draining pid=3 pidfd=5\n"),
                                   1, &s), 0);
        ck_assert_ptr_nonnull(s->generations);
        ck_assert_uint_eq(s->generations->gen, 7);
        ck_assert_int_lt(s->generations->pidfd, 0);
        ck_assert_ptr_null(s->generations->next);
        snapshot_free(s);
        ck_assert_uint_eq(count_fds(), before);
}
END_TEST

/* Head sockets come after the pidfds ("pidfds" says how many): each group takes its own, a
 * pidfd index cannot reach them, an index past the fds is none, and a snapshot without
 * "pidfds" (before head sockets) gives every fd after the maps to the pidfds. */
START_TEST(test_head_sockets) {
        unsigned before = count_fds();
        Snapshot *s = NULL;
        int fds[STEERING_N_MAPS + 8], head0, head2;
        size_t n;
        char text[1024];

        n = make_fds(fds, 3); /* one pidfd, two heads */
        head0 = fds[STEERING_N_MAPS + 2];
        head2 = fds[STEERING_N_MAPS + 1];
        snprintf(text, sizeof(text), "grmd version=2 seq=9 maps_abi=%u pidfds=1\n"
                 "group index=0 address=udp:127.0.0.1:9000 name=a head=1\n"
                 "group index=1 address=udp:[::1]:9000 name=b\n"
                 "group index=2 address=udp:127.0.0.2:9000 name=c head=0\n"
                 "group index=3 address=udp:127.0.0.3:9000 name=d head=2\n"
                 "generation generation=4 slot=4 slot_held=1 state=working pid=200 pidfd=0\n"
                 "generation generation=3 slot=3 slot_held=1 state=draining pid=199 pidfd=1\n",
                 GRM_MAPS_ABI_VERSION);
        ck_assert_int_eq(snapshot_read(text, strlen(text), fds, n, &s), 0);
        ck_assert_uint_eq(s->n_groups, 4);
        ck_assert_int_eq(s->groups[0].head_fd, head0);
        ck_assert_int_lt(s->groups[1].head_fd, 0);
        ck_assert_int_eq(s->groups[2].head_fd, head2);
        ck_assert_int_lt(s->groups[3].head_fd, 0);             /* past the fds */
        ck_assert_int_ge(s->generations->pidfd, 0);
        ck_assert_int_lt(s->generations->next->pidfd, 0);      /* index 1 is a head's, not a pidfd */
        snapshot_free(s);
        ck_assert_uint_eq(count_fds(), before);

        /* Written before head sockets (no "pidfds": every fd after the maps is a pidfd), and
         * "pidfds" larger than the fds there are: no heads, pidfds as far as they go. */
        static const struct {
                const char *pidfds;
                unsigned n_fds, pidfd;
        } cases[] = { { "", 2, 1 }, { " pidfds=5", 1, 0 } };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                n = make_fds(fds, cases[i].n_fds);
                snprintf(text, sizeof(text), "grmd version=2 seq=9 maps_abi=%u%s\n"
                         "group index=0 address=udp:127.0.0.1:9000 name=a head=0\n"
                         "generation generation=4 slot=4 slot_held=1 state=working pid=200 pidfd=%u\n",
                         GRM_MAPS_ABI_VERSION, cases[i].pidfds, cases[i].pidfd);
                ck_assert_int_eq(snapshot_read(text, strlen(text), fds, n, &s), 0);
                ck_assert_int_lt(s->groups[0].head_fd, 0);
                ck_assert_int_ge(s->generations->pidfd, 0);
                snapshot_free(s);
        }
        ck_assert_uint_eq(count_fds(), before);
}
END_TEST

START_TEST(test_peek_seq) {
        uint64_t seq = 0;

        ck_assert_int_eq(snapshot_peek_seq(with_head(""), 64, &seq), 0);
        ck_assert_uint_eq(seq, 7);
        ck_assert_int_eq(snapshot_peek_seq("grmd version=1 seq=12345", 24, &seq), 0);
        ck_assert_uint_eq(seq, 12345);
        ck_assert_int_lt(snapshot_peek_seq("status version=1 seq=3", 22, &seq), 0);
        ck_assert_int_lt(snapshot_peek_seq("grmd version=1", 14, &seq), 0);
}
END_TEST

static Suite *snapshot_suite(void) {
        Suite *s = suite_create("snapshot");
        TCase *tc;

        tc = tcase_create("snapshot_read");
        tcase_add_test(tc, test_current);
        tcase_add_test(tc, test_format1);
        tcase_add_test(tc, test_broken);
        tcase_add_test(tc, test_unknown_generation);
        tcase_add_test(tc, test_head_sockets);
        suite_add_tcase(s, tc);

        tc = tcase_create("snapshot_check");
        tcase_add_test(tc, test_refused);
        suite_add_tcase(s, tc);

        tc = tcase_create("snapshot_peek_seq");
        tcase_add_test(tc, test_peek_seq);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(snapshot_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
