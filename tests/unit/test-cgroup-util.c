/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/shared/cgroup-util.c: /proc/PID/cgroup texts of the hybrid and unified
 * layouts, which paths are (inside) a generation's cgroup, generation and base names, and the
 * keyed files (cpu.stat, cgroup.events) with bad values.
 */

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup-util.h"
#include "macro.h"

START_TEST(test_parse_proc) {
        _cleanup_free_ char *p = NULL;

        /* hybrid: v1 lines first, v2 last */
        ck_assert_int_eq(cgroup_parse_proc("9:name=systemd:/\n4:memory:/x\n0::/system.slice/grm-echo.service\n", &p), 0);
        ck_assert_str_eq(p, "/system.slice/grm-echo.service");
        free(TAKE_PTR(p));
        ck_assert_int_eq(cgroup_parse_proc("0::/", &p), 0);
        ck_assert_str_eq(p, "/");
        free(TAKE_PTR(p));
        ck_assert_int_eq(cgroup_parse_proc("0::/a b/c\n", &p), 0);
        ck_assert_str_eq(p, "/a b/c");
        free(TAKE_PTR(p));

        ck_assert_int_eq(cgroup_parse_proc("9:name=systemd:/\n", &p), -ENOENT);
        ck_assert_int_eq(cgroup_parse_proc("", &p), -ENOENT);
        ck_assert_int_eq(cgroup_parse_proc("0::\n", &p), -EBADMSG);
        ck_assert_int_eq(cgroup_parse_proc("0::relative\n", &p), -EBADMSG);
        ck_assert_ptr_null(p);
}
END_TEST

START_TEST(test_of_pid) {
        _cleanup_free_ char *p = NULL;

        /* Wherever the test runs, a v2 line exists on the project's machines. */
        ck_assert_int_eq(cgroup_of_pid(0, &p), 0);
        ck_assert(p[0] == '/');
        ck_assert_int_eq(cgroup_of_pid(-5, &p), -ESRCH);
}
END_TEST

static const struct {
        const char *base, *path;
        int ret;
        uint32_t gen;
} generation_cases[] = {
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service/gen-7", 1, 7 },
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service/gen-7/sub", 1, 7 },
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service/gen-7.2", 1, 7 },
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service/gen-4294967295", 1, 4294967295U },
        { "/", "/gen-1", 1, 1 },
        { "/grmd-0123456789abcdef", "/grmd-0123456789abcdef/gen-12", 1, 12 },
        /* not a generation */
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service", 0 },
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service/supervisor", 0 },
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service/gen-", 0 },
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service/gen-0", 0 },
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service/gen-x", 0 },
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service/gen-7.", 0 },
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service/gen-7a", 0 },
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.service/gen-4294967296", 0 },
        { "/system.slice/grm-echo.service", "/system.slice/grm-echo.servicegen-7", 0 },
        { "/system.slice/grm-echo.service", "/system.slice/other.service/gen-7", 0 },
        { "/system.slice/grm-echo.service", "/gen-7", 0 },
        { "/a", "/a/b/gen-7", 0 },
};

START_TEST(test_generation_of) {
        uint32_t gen = 0;
        int r = cgroup_generation_of(generation_cases[_i].base, generation_cases[_i].path, &gen);

        ck_assert_msg(r == generation_cases[_i].ret, "case %d (%s): %d", _i, generation_cases[_i].path, r);
        if (r == 1)
                ck_assert_uint_eq(gen, generation_cases[_i].gen);
}
END_TEST

START_TEST(test_names) {
        char buf[32], small[6];

        ck_assert_int_eq(cgroup_generation_name(7, 0, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "gen-7");
        ck_assert_int_eq(cgroup_generation_name(7, 3, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "gen-7.3");
        ck_assert_int_eq(cgroup_generation_name(0, 0, buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(cgroup_generation_name(123, 0, small, sizeof(small)), -ENOBUFS);
        /* What the names say, the parser reads back. */
        ck_assert_int_eq(cgroup_generation_of("/", "/gen-7.3", NULL), 1);

        ck_assert_int_eq(cgroup_base_name("/run/grm-echo/grmd.sock", buf, sizeof(buf)), 0);
        ck_assert_uint_eq(strlen(buf), 21);
        ck_assert(strncmp(buf, "grmd-", 5) == 0);
        {
                char other[32], again[32];
                ck_assert_int_eq(cgroup_base_name("/run/grm-other/grmd.sock", other, sizeof(other)), 0);
                ck_assert_str_ne(buf, other);
                ck_assert_int_eq(cgroup_base_name("/run/grm-echo/grmd.sock", again, sizeof(again)), 0);
                ck_assert_str_eq(buf, again);
        }
        ck_assert_int_eq(cgroup_base_name("/x", small, sizeof(small)), -ENOBUFS);
}
END_TEST

START_TEST(test_keyed) {
        static const char cpu_stat[] = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n";
        uint64_t v;

        ck_assert_int_eq(cgroup_keyed_value(cpu_stat, "usage_usec", &v), 0);
        ck_assert_uint_eq(v, 123456);
        ck_assert_int_eq(cgroup_keyed_value(cpu_stat, "system_usec", &v), 0);
        ck_assert_uint_eq(v, 23456);
        ck_assert_int_eq(cgroup_keyed_value(cpu_stat, "usage", &v), -ENOENT);
        ck_assert_int_eq(cgroup_keyed_value("populated 0\nfrozen 0\n", "populated", &v), 0);
        ck_assert_uint_eq(v, 0);
        ck_assert_int_eq(cgroup_keyed_value("populated 1", "populated", &v), 0);
        ck_assert_uint_eq(v, 1);
        ck_assert_int_eq(cgroup_keyed_value("populated x\n", "populated", &v), -EBADMSG);
        ck_assert_int_eq(cgroup_keyed_value("populated \n", "populated", &v), -EBADMSG);
        ck_assert_int_eq(cgroup_keyed_value("populated 1 2\n", "populated", &v), -EBADMSG);
        ck_assert_int_eq(cgroup_keyed_value("populated 99999999999999999999\n", "populated", &v), -EBADMSG);
        ck_assert_int_eq(cgroup_keyed_value("", "populated", &v), -ENOENT);
}
END_TEST

static Suite *cgroup_util_suite(void) {
        Suite *s = suite_create("cgroup-util");
        TCase *tc;

        tc = tcase_create("cgroup_parse_proc");
        tcase_add_test(tc, test_parse_proc);
        tcase_add_test(tc, test_of_pid);
        suite_add_tcase(s, tc);
        tc = tcase_create("cgroup_generation_of");
        tcase_add_loop_test(tc, test_generation_of, 0, (int) ELEMENTSOF(generation_cases));
        suite_add_tcase(s, tc);
        tc = tcase_create("names");
        tcase_add_test(tc, test_names);
        suite_add_tcase(s, tc);
        tc = tcase_create("cgroup_keyed_value");
        tcase_add_test(tc, test_keyed);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(cgroup_util_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
