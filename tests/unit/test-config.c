/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/shared/config.c: the value parsers (numbers, time spans, signals,
 * dissectors, listen addresses, command lines), the strv helpers, the config file parser on
 * good and malformed files (unknown sections and keys, bad values, NUL bytes, oversized lines
 * and files, continuations, comments), its all-or-nothing behaviour, and merge, defaults and
 * validation.
 */

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/types.h>

#include "config.h"
#include "macro.h"
#include "steer-api.h"

#define S(x) x, sizeof(x) - 1
#define SEC(n) ((uint64_t) (n) * USEC_PER_SEC)

/* ---- parse_unsigned ---- */

static const struct {
        const char *s;
        uint64_t min, max;
        int ret;
        uint64_t expect;
} unsigned_cases[] = {
        { "0",                      0, 10,         0,       0 },
        { "10",                     0, 10,         0,       10 },
        { "007",                    0, 10,         0,       7 },
        { "6",                      6, 10,         0,       6 },
        { "18446744073709551615",   0, UINT64_MAX, 0,       UINT64_MAX },
        { "11",                     0, 10,         -ERANGE, 0 },
        { "5",                      6, 10,         -ERANGE, 0 },
        { "18446744073709551616",   0, UINT64_MAX, -ERANGE, 0 },
        { "99999999999999999999999", 0, UINT64_MAX, -ERANGE, 0 },
        { "99999999999999999999x",  0, UINT64_MAX, -EINVAL, 0 },
        { "",                       0, 10,         -EINVAL, 0 },
        { "-1",                     0, 10,         -EINVAL, 0 },
        { "+1",                     0, 10,         -EINVAL, 0 },
        { " 1",                     0, 10,         -EINVAL, 0 },
        { "1 ",                     0, 10,         -EINVAL, 0 },
        { "0x1",                    0, 10,         -EINVAL, 0 },
        { "1.5",                    0, 10,         -EINVAL, 0 },
        { "1e1",                    0, 100,        -EINVAL, 0 },
};

START_TEST(test_parse_unsigned) {
        uint64_t v = 4242;

        ck_assert_int_eq(parse_unsigned(unsigned_cases[_i].s, unsigned_cases[_i].min,
                                        unsigned_cases[_i].max, &v), unsigned_cases[_i].ret);
        ck_assert_uint_eq(v, unsigned_cases[_i].ret == 0 ? unsigned_cases[_i].expect : 4242);
}
END_TEST

static const struct {
        const char *s;
        int ret;
        uint64_t expect;
} size_cases[] = {
        { "4096",      0,       4096 },
        { "64K",       0,       65536 },
        { "8M",        0,       8U << 20 },
        { "1G",        0,       1U << 30 },
        { "2G",        -ERANGE, 0 },     /* over max */
        { "4095",      -ERANGE, 0 },     /* under min */
        { "",          -EINVAL, 0 },
        { "K",         -EINVAL, 0 },
        { "8m",        -EINVAL, 0 },     /* suffixes are upper case, as in systemd */
        { "8 M",       -EINVAL, 0 },
        { "-8M",       -EINVAL, 0 },
        { "99999999999999999999K", -ERANGE, 0 },
        { "17179869184G", -ERANGE, 0 },  /* overflows when multiplied */
};

START_TEST(test_parse_size) {
        uint64_t v = 4242;

        ck_assert_int_eq(parse_size(size_cases[_i].s, 4096, 1U << 30, &v), size_cases[_i].ret);
        ck_assert_uint_eq(v, size_cases[_i].ret == 0 ? size_cases[_i].expect : 4242);
}
END_TEST

START_TEST(test_parse_unsigned_null) {
        ck_assert_int_eq(parse_unsigned(NULL, 0, 10, NULL), -EINVAL);
        ck_assert_int_eq(parse_unsigned("3", 0, 10, NULL), 0);
}
END_TEST

/* ---- parse_sec ---- */

static const struct {
        const char *s;
        int ret;
        uint64_t expect;
} sec_cases[] = {
        { "0",                       0, 0 },
        { "60",                      0, SEC(60) },
        { "1.5",                     0, 1500000 },
        { "500ms",                   0, 500000 },
        { "500msec",                 0, 500000 },
        { "2s",                      0, SEC(2) },
        { "2sec",                    0, SEC(2) },
        { "3min",                    0, SEC(180) },
        { "3m",                      0, SEC(180) },
        { "1h",                      0, SEC(3600) },
        { "1hr",                     0, SEC(3600) },
        { "1d",                      0, SEC(86400) },
        { "1w",                      0, SEC(7 * 86400) },
        { "250us",                   0, 250 },
        { "250usec",                 0, 250 },
        { "1min 30s",                0, SEC(90) },
        { "1min30s",                 0, SEC(90) },
        { "1h 1min 1s 1ms 1us",      0, SEC(3661) + 1001 },
        { "  5s  ",                  0, SEC(5) },
        { "2 h",                     0, SEC(7200) },
        { "0.5ms",                   0, 500 },
        { "1.25min",                 0, SEC(75) },
        { "1.0000001s",              0, SEC(1) },
        { "1.9999999s",              0, 1999999 },
        { "1.5us",                   0, 1 },
        { "infinity",                0, UINT64_MAX },
        { " infinity ",              0, UINT64_MAX },
        { "18446744073709551614us",  0, UINT64_MAX - 1 },
        { "213503982d",              0, 213503982ULL * 86400ULL * 1000000ULL },

        { "18446744073709551615us",  -ERANGE, 0 }, /* would be infinity */
        { "18446744073709551616us",  -ERANGE, 0 },
        { "99999999999999999999999s", -ERANGE, 0 },
        { "213503983d",              -ERANGE, 0 },
        { "213503982d 213503982d",   -ERANGE, 0 },
        { "18446744073709551614us 1us", -ERANGE, 0 },

        { "",                        -EINVAL, 0 },
        { "   ",                     -EINVAL, 0 },
        { "s",                       -EINVAL, 0 },
        { "min",                     -EINVAL, 0 },
        { "-1",                      -EINVAL, 0 },
        { "+1",                      -EINVAL, 0 },
        { "-1s",                     -EINVAL, 0 },
        { "1x",                      -EINVAL, 0 },
        { "1 x",                     -EINVAL, 0 },
        { "5S",                      -EINVAL, 0 },
        { "5sx",                     -EINVAL, 0 },
        { "5s.5",                    -EINVAL, 0 },
        { "1.",                      -EINVAL, 0 },
        { "1.s",                     -EINVAL, 0 },
        { ".5",                      -EINVAL, 0 },
        { "1..5",                    -EINVAL, 0 },
        { "1.5.5",                   -EINVAL, 0 },
        { "1e3",                     -EINVAL, 0 },
        { "0x10",                    -EINVAL, 0 },
        { "1min-3s",                 -EINVAL, 0 },
        { "1,5s",                    -EINVAL, 0 },
        { "infinityx",               -EINVAL, 0 },
        { "infinity 5",              -EINVAL, 0 },
        { "5 infinity",              -EINVAL, 0 },
        { "Infinity",                -EINVAL, 0 },
        { "inf",                     -EINVAL, 0 },
};

START_TEST(test_parse_sec) {
        uint64_t v = 4242;

        ck_assert_msg(parse_sec(sec_cases[_i].s, &v) == sec_cases[_i].ret, "\"%s\"", sec_cases[_i].s);
        ck_assert_uint_eq(v, sec_cases[_i].ret == 0 ? sec_cases[_i].expect : 4242);
}
END_TEST

START_TEST(test_parse_sec_null) {
        ck_assert_int_eq(parse_sec(NULL, NULL), -EINVAL);
        ck_assert_int_eq(parse_sec("1s", NULL), 0);
}
END_TEST

/* ---- parse_signal, signal_to_name ---- */

static const struct {
        const char *s;
        int ret;
} signal_cases[] = {
        { "SIGTERM",   SIGTERM },
        { "TERM",      SIGTERM },
        { "term",      SIGTERM },
        { "sigterm",   SIGTERM },
        { "SigTerm",   SIGTERM },
        { "15",        15 },
        { "9",         9 },
        { "SIGKILL",   SIGKILL },
        { "HUP",       SIGHUP },
        { "SIGINT",    SIGINT },
        { "SIGQUIT",   SIGQUIT },
        { "SIGUSR1",   SIGUSR1 },
        { "usr2",      SIGUSR2 },
        { "SIGWINCH",  SIGWINCH },
        { "SIGCHLD",   SIGCHLD },
        { "SIGCONT",   SIGCONT },
        { "SIGPWR",    SIGPWR },
        { "",          -EINVAL },
        { "SIG",       -EINVAL },
        { "SIGFOO",    -EINVAL },
        { "SIGSIGTERM", -EINVAL },
        { "0",         -EINVAL },
        { "-1",        -EINVAL },
        { "+15",       -EINVAL },
        { "15x",       -EINVAL },
        { " 15",       -EINVAL },
        { "SIGTERM ",  -EINVAL },
        { " SIGTERM",  -EINVAL },
        { "99999999999999999999999", -EINVAL },
        { "SIGRTMIN+", -EINVAL },
        { "SIGRTMIN-1", -EINVAL },
        { "SIGRTMAX+1", -EINVAL },
        { "SIGRTMIN+x", -EINVAL },
        { "SIGRTMIN+ 1", -EINVAL },
        { "SIGRTMIN+99", -EINVAL },
        { "SIGRTMINX", -EINVAL },
};

START_TEST(test_parse_signal) {
        ck_assert_msg(parse_signal(signal_cases[_i].s) == signal_cases[_i].ret, "\"%s\"",
                      signal_cases[_i].s);
}
END_TEST

START_TEST(test_parse_signal_rt) {
        char buf[32];

        ck_assert_int_eq(parse_signal(NULL), -EINVAL);
        ck_assert_int_eq(parse_signal("SIGRTMIN"), SIGRTMIN);
        ck_assert_int_eq(parse_signal("RTMIN+1"), SIGRTMIN + 1);
        ck_assert_int_eq(parse_signal("sigrtmin+2"), SIGRTMIN + 2);
        ck_assert_int_eq(parse_signal("SIGRTMAX"), SIGRTMAX);
        ck_assert_int_eq(parse_signal("SIGRTMAX-1"), SIGRTMAX - 1);
        snprintf(buf, sizeof(buf), "SIGRTMIN+%d", SIGRTMAX - SIGRTMIN);
        ck_assert_int_eq(parse_signal(buf), SIGRTMAX);
        snprintf(buf, sizeof(buf), "SIGRTMIN+%d", SIGRTMAX - SIGRTMIN + 1);
        ck_assert_int_eq(parse_signal(buf), -EINVAL);
        snprintf(buf, sizeof(buf), "%d", SIGRTMAX);
        ck_assert_int_eq(parse_signal(buf), SIGRTMAX);
        snprintf(buf, sizeof(buf), "%d", SIGRTMAX + 1);
        ck_assert_int_eq(parse_signal(buf), -EINVAL);
}
END_TEST

START_TEST(test_signal_to_name) {
        ck_assert_str_eq(signal_to_name(SIGTERM), "SIGTERM");
        ck_assert_str_eq(signal_to_name(SIGKILL), "SIGKILL");
        ck_assert_str_eq(signal_to_name(SIGHUP), "SIGHUP");
        ck_assert_str_eq(signal_to_name(SIGUSR1), "SIGUSR1");
        ck_assert_str_eq(signal_to_name(SIGSYS), "SIGSYS");
        ck_assert_str_eq(signal_to_name(SIGRTMIN), "SIGRTMIN");
        ck_assert_str_eq(signal_to_name(SIGRTMIN + 2), "SIGRTMIN+2");
        ck_assert_str_eq(signal_to_name(SIGRTMAX), "SIGRTMAX");
        ck_assert_ptr_null(signal_to_name(0));
        ck_assert_ptr_null(signal_to_name(-1));
        ck_assert_ptr_null(signal_to_name(SIGRTMAX + 1));
        ck_assert_ptr_null(signal_to_name(1000));
}
END_TEST

START_TEST(test_signal_round_trip) {
        unsigned named = 0;

        /* Every named signal parses back to itself, by name and without "SIG". */
        for (int sig = 1; sig <= SIGRTMAX; sig++) {
                const char *name = signal_to_name(sig);

                if (!name)
                        continue;
                named++;
                ck_assert_int_eq(strncmp(name, "SIG", 3), 0);
                ck_assert_int_eq(parse_signal(name), sig);
                ck_assert_int_eq(parse_signal(name + 3), sig);
        }
        /* The 31 standard signals (30 where SIGSTKFLT does not exist) and the real-time ones. */
        ck_assert_uint_ge(named, 30 + (unsigned) (SIGRTMAX - SIGRTMIN + 1));
}
END_TEST

/* ---- dissector ---- */

START_TEST(test_dissector_from_string) {
        ck_assert_int_eq(dissector_from_string("none"), GRM_DISSECTOR_NONE);
        ck_assert_int_eq(dissector_from_string("flow"), GRM_DISSECTOR_FLOW);
        ck_assert_int_eq(dissector_from_string("quic"), GRM_DISSECTOR_QUIC);
        ck_assert_int_eq(dissector_from_string("QUIC"), -EINVAL);
        ck_assert_int_eq(dissector_from_string("Flow"), -EINVAL);
        ck_assert_int_eq(dissector_from_string("flow "), -EINVAL);
        ck_assert_int_eq(dissector_from_string(""), -EINVAL);
        ck_assert_int_eq(dissector_from_string(NULL), -EINVAL);
}
END_TEST

START_TEST(test_dissector_to_string) {
        ck_assert_str_eq(dissector_to_string(GRM_DISSECTOR_NONE), "none");
        ck_assert_str_eq(dissector_to_string(GRM_DISSECTOR_FLOW), "flow");
        ck_assert_str_eq(dissector_to_string(GRM_DISSECTOR_QUIC), "quic");
        ck_assert_ptr_null(dissector_to_string(_GRM_DISSECTOR_MAX));
        ck_assert_ptr_null(dissector_to_string(-1));
}
END_TEST

/* ---- parse_listen_address ---- */

static const struct {
        const char *s;
        int ret;
        int family;
        const char *addr;
        uint16_t port;
        uint32_t scope;
        int type;                       /* 0: SOCK_DGRAM */
} listen_cases[] = {
        { "udp:127.0.0.1:9000",        0, AF_INET,  "127.0.0.1", 9000 },
        { "127.0.0.1:9000",            0, AF_INET,  "127.0.0.1", 9000 },
        { "0.0.0.0:53",                0, AF_INET,  "0.0.0.0",   53 },
        { "1.2.3.4:1",                 0, AF_INET,  "1.2.3.4",   1 },
        { "1.2.3.4:65535",             0, AF_INET,  "1.2.3.4",   65535 },
        { "1.2.3.4:0080",              0, AF_INET,  "1.2.3.4",   80 },
        { "udp:[::1]:9000",            0, AF_INET6, "::1",       9000 },
        { "[::]:53",                   0, AF_INET6, "::",        53 },
        { "[2001:db8::42]:443",        0, AF_INET6, "2001:db8::42", 443 },
        { "[::ffff:10.0.0.1]:443",     0, AF_INET6, "::ffff:10.0.0.1", 443 },
        { "udp:[fe80::1%1]:9000",      0, AF_INET6, "fe80::1",   9000, 1 },
        { "[fe80::1%4294967295]:9000", 0, AF_INET6, "fe80::1",   9000, 4294967295U },

        { "tcp:127.0.0.1:80",          0, AF_INET,  "127.0.0.1", 80, 0, SOCK_STREAM },
        { "tcp:[::1]:80",              0, AF_INET6, "::1",       80, 0, SOCK_STREAM },
        { "tcp:[::]:53",               0, AF_INET6, "::",        53, 0, SOCK_STREAM },
        { "tcp:[fe80::1%1]:443",       0, AF_INET6, "fe80::1",   443, 1, SOCK_STREAM },
        { "tcp:",                      -EINVAL },
        { "tcp:1.2.3.4",               -EINVAL },
        { "tcp:1.2.3.4:0",             -EINVAL },
        { "tcp:tcp:1.2.3.4:5",         -EINVAL },
        { "tcp6:[::1]:80",             -EPROTONOSUPPORT },
        { "TCP:1.2.3.4:5",             -EPROTONOSUPPORT },
        { "sctp:1.2.3.4:5",            -EPROTONOSUPPORT },
        { "unix:/run/x",               -EPROTONOSUPPORT },
        { "udp6:[::1]:53",             -EPROTONOSUPPORT },

        { "",                          -EINVAL },
        { "udp:",                      -EINVAL },
        { "udp:127.0.0.1",             -EINVAL },
        { "127.0.0.1",                 -EINVAL },
        { "127.0.0.1:",                -EINVAL },
        { ":53",                       -EINVAL },
        { "udp::53",                   -EINVAL },
        { "127.0.0.1:0",               -EINVAL },
        { "127.0.0.1:65536",           -EINVAL },
        { "127.0.0.1:99999999999999999999", -EINVAL },
        { "127.0.0.1:-1",              -EINVAL },
        { "127.0.0.1:+80",             -EINVAL },
        { "127.0.0.1:80x",             -EINVAL },
        { "127.0.0.1:80 ",             -EINVAL },
        { "127.0.0.1: 80",             -EINVAL },
        { " 127.0.0.1:80",             -EINVAL },
        { "127.0.0.1 :80",             -EINVAL },
        { "256.0.0.1:80",              -EINVAL },
        { "1.2.3:80",                  -EINVAL },
        { "1.2.3.4.5:80",              -EINVAL },
        { "localhost:80",              -EINVAL },
        { "*:80",                      -EINVAL },
        { "::1:53",                    -EINVAL },
        { "fe80::1:53",                -EINVAL },
        { "udp:udp:1.2.3.4:5",         -EINVAL },
        { "[::1]",                     -EINVAL },
        { "[::1]:",                    -EINVAL },
        { "[::1]53",                   -EINVAL },
        { "[::1:53",                   -EINVAL },
        { "::1]:53",                   -EINVAL },
        { "[]:53",                     -EINVAL },
        { "[1.2.3.4]:53",              -EINVAL },
        { "[::1]:0",                   -EINVAL },
        { "[::1]:65536",               -EINVAL },
        { "[::1]:53]",                 -EINVAL },
        { "[[::1]]:53",                -EINVAL },
        { "[::g]:53",                  -EINVAL },
        { "[fe80::1%]:53",             -EINVAL },
        { "[fe80::1%0]:53",            -EINVAL },
        { "[fe80::1%4294967296]:53",   -EINVAL },
        { "[fe80::1%no-such-if0]:53",  -EINVAL },
        { "[fe80::1%0123456789abcdefghij]:53", -EINVAL },
        { "[fe80::1%1%1]:53",          -EINVAL },
        { "[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000]:53", -EINVAL },
};

START_TEST(test_parse_listen_address) {
        struct sockaddr_storage ss;
        socklen_t len = 12345;
        char text[INET6_ADDRSTRLEN];
        int r, type = 12345;

        memset(&ss, 0xaa, sizeof(ss));
        r = parse_listen_address(listen_cases[_i].s, &type, &ss, &len);
        ck_assert_msg(r == listen_cases[_i].ret, "\"%s\": got %d", listen_cases[_i].s, r);

        if (r < 0) {
                /* Nothing is written on failure. */
                ck_assert_int_eq(type, 12345);
                ck_assert_uint_eq(len, 12345);
                ck_assert_uint_eq(((unsigned char *) &ss)[0], 0xaa);
                return;
        }

        ck_assert_int_eq(type, listen_cases[_i].type ? listen_cases[_i].type : SOCK_DGRAM);
        ck_assert_int_eq(ss.ss_family, listen_cases[_i].family);
        if (listen_cases[_i].family == AF_INET) {
                struct sockaddr_in *sin = (struct sockaddr_in *) &ss;

                ck_assert_uint_eq(len, sizeof(struct sockaddr_in));
                ck_assert_ptr_nonnull(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)));
                ck_assert_str_eq(text, listen_cases[_i].addr);
                ck_assert_uint_eq(ntohs(sin->sin_port), listen_cases[_i].port);
        } else {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;

                ck_assert_uint_eq(len, sizeof(struct sockaddr_in6));
                ck_assert_ptr_nonnull(inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)));
                ck_assert_str_eq(text, listen_cases[_i].addr);
                ck_assert_uint_eq(ntohs(sin6->sin6_port), listen_cases[_i].port);
                ck_assert_uint_eq(sin6->sin6_scope_id, listen_cases[_i].scope);
                ck_assert_uint_eq(sin6->sin6_flowinfo, 0);
        }
}
END_TEST

START_TEST(test_parse_listen_address_misc) {
        _cleanup_free_ char *long_v4 = NULL, *long_v6 = NULL;
        struct sockaddr_storage ss;
        socklen_t len;
        unsigned lo = if_nametoindex("lo");

        ck_assert_int_eq(parse_listen_address(NULL, NULL, &ss, &len), -EINVAL);
        /* The outputs are optional: a plain syntax check. */
        ck_assert_int_eq(parse_listen_address("1.2.3.4:5", NULL, NULL, NULL), 0);

        /* Scope by interface name, where the loopback interface is visible. */
        if (lo > 0) {
                ck_assert_int_eq(parse_listen_address("[fe80::1%lo]:53", NULL, &ss, &len), 0);
                ck_assert_uint_eq(((struct sockaddr_in6 *) &ss)->sin6_scope_id, lo);
        }

        /* Long garbage is refused without reading past it. */
        long_v4 = malloc(5000);
        ck_assert_ptr_nonnull(long_v4);
        memset(long_v4, '1', 4990);
        strcpy(long_v4 + 4990, ":53");
        ck_assert_int_eq(parse_listen_address(long_v4, NULL, &ss, &len), -EINVAL);

        long_v6 = malloc(5000);
        ck_assert_ptr_nonnull(long_v6);
        long_v6[0] = '[';
        memset(long_v6 + 1, ':', 4980);
        strcpy(long_v6 + 4981, "]:53");
        ck_assert_int_eq(parse_listen_address(long_v6, NULL, &ss, &len), -EINVAL);
}
END_TEST

/* ---- strv_split_quoted, strv_copy, strv_extend ---- */

#define WORDS_MAX 6

static const struct {
        const char *s;
        int ret;
        const char *words[WORDS_MAX + 1];
} split_cases[] = {
        { "",                          0, { NULL } },
        { "   \t\n ",                  0, { NULL } },
        { "a",                         0, { "a", NULL } },
        { "  a  b\tc\n",               0, { "a", "b", "c", NULL } },
        { "/bin/echo 'a b' \"c d\"",   0, { "/bin/echo", "a b", "c d", NULL } },
        { "a\"b c\"d",                 0, { "ab cd", NULL } },
        { "'a'\"b\"c",                 0, { "abc", NULL } },
        { "'' \"\"",                   0, { "", "", NULL } },
        { "'a\\nb'",                   0, { "a\\nb", NULL } },
        { "'a\\'",                     0, { "a\\", NULL } },
        { "\"a\\nb\"",                 0, { "a\nb", NULL } },
        { "\"a\\tb\"",                 0, { "a\tb", NULL } },
        { "a\\tb",                     0, { "a\tb", NULL } },
        { "a\\ b",                     0, { "a b", NULL } },
        { "\\x41\\x62",                0, { "Ab", NULL } },
        { "\"\\x41\\x7e\"",            0, { "A~", NULL } },
        { "\\xff",                     0, { "\xff", NULL } },
        { "\\\\",                      0, { "\\", NULL } },
        { "\"\\\"\"",                  0, { "\"", NULL } },
        { "\"\\\\\"",                  0, { "\\", NULL } },
        { "\\'",                       0, { "'", NULL } },
        { "'\"'",                      0, { "\"", NULL } },
        { "\"'\"",                     0, { "'", NULL } },
        { "\\$HOME",                   0, { "$HOME", NULL } },
        { "a \"b  c\" 'd\te'",         0, { "a", "b  c", "d\te", NULL } },

        { "'abc",                      -EINVAL },
        { "\"abc",                     -EINVAL },
        { "a 'b",                      -EINVAL },
        { "abc\\",                     -EINVAL },
        { "\"abc\\",                   -EINVAL },
        { "\"abc\\\"",                 -EINVAL },
        { "\\x",                       -EINVAL },
        { "\\x4",                      -EINVAL },
        { "\\xzz",                     -EINVAL },
        { "\\x4z",                     -EINVAL },
        { "\\x00",                     -EINVAL },
        { "\"\\x0\"",                  -EINVAL },
        { "\"\\x00\"",                 -EINVAL },
};

START_TEST(test_strv_split_quoted) {
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0;

        ck_assert_msg(strv_split_quoted(split_cases[_i].s, &l) == split_cases[_i].ret,
                      "\"%s\"", split_cases[_i].s);
        if (split_cases[_i].ret < 0) {
                ck_assert_ptr_null(l);
                return;
        }

        ck_assert_ptr_nonnull(l); /* an empty array, not NULL */
        while (split_cases[_i].words[n])
                n++;
        ck_assert_uint_eq(strv_length(l), n);
        for (size_t i = 0; i < n; i++)
                ck_assert_str_eq(l[i], split_cases[_i].words[i]);
}
END_TEST

START_TEST(test_strv_split_quoted_misc) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *big = NULL;

        ck_assert_int_eq(strv_split_quoted(NULL, &l), -EINVAL);
        ck_assert_int_eq(strv_split_quoted("a", NULL), -EINVAL);

        /* Many words. */
        big = malloc(20001);
        ck_assert_ptr_nonnull(big);
        for (size_t i = 0; i < 10000; i++)
                memcpy(big + 2 * i, "x ", 2);
        big[20000] = 0;
        ck_assert_int_eq(strv_split_quoted(big, &l), 0);
        ck_assert_uint_eq(strv_length(l), 10000);
}
END_TEST

START_TEST(test_strv_copy) {
        char *src[] = { (char *) "a", (char *) "bc", NULL };
        char *empty[] = { NULL };
        _cleanup_strv_free_ char **c = NULL, **e = NULL;
        char **n = (char **) 0x1;

        ck_assert_int_eq(strv_copy(src, &c), 0);
        ck_assert_uint_eq(strv_length(c), 2);
        ck_assert_str_eq(c[0], "a");
        ck_assert_str_eq(c[1], "bc");
        ck_assert_ptr_ne(c[0], src[0]); /* deep */

        ck_assert_int_eq(strv_copy(empty, &e), 0);
        ck_assert_ptr_nonnull(e);
        ck_assert_uint_eq(strv_length(e), 0);

        ck_assert_int_eq(strv_copy(NULL, &n), 0);
        ck_assert_ptr_null(n);
}
END_TEST

START_TEST(test_strv_extend) {
        _cleanup_strv_free_ char **l = NULL;
        char buf[] = "x";

        ck_assert_int_eq(strv_extend(&l, "a"), 0);
        ck_assert_int_eq(strv_extend(&l, buf), 0);
        ck_assert_int_eq(strv_extend(&l, ""), 0);
        buf[0] = 'y'; /* a copy was stored */
        ck_assert_uint_eq(strv_length(l), 3);
        ck_assert_str_eq(l[0], "a");
        ck_assert_str_eq(l[1], "x");
        ck_assert_str_eq(l[2], "");
        ck_assert_ptr_null(l[3]);

        ck_assert_int_eq(strv_extend(&l, NULL), -EINVAL);
        ck_assert_int_eq(strv_extend(NULL, "a"), -EINVAL);
        ck_assert_uint_eq(strv_length(l), 3);
}
END_TEST

/* ---- config_init, config_done ---- */

static void assert_unset(const Config *c) {
        ck_assert_ptr_null(c->listen);
        ck_assert_ptr_null(c->control_path);
        ck_assert_int_eq(c->dissector, -1);
        ck_assert_uint_eq(c->sockets_per_generation, 0);
        ck_assert_uint_eq(c->flow_table_size, 0);
        ck_assert_uint_eq(c->flow_timeout_usec, UINT64_MAX);
        ck_assert_uint_eq(c->start_timeout_usec, UINT64_MAX);
        ck_assert_uint_eq(c->drain_timeout_usec, UINT64_MAX);
        ck_assert_int_eq(c->drain_signal, 0);
        ck_assert(!c->quic_prefix_set);
        ck_assert_int_eq(c->quic_config_id, -1);
        ck_assert_int_eq(c->intercept_bind, -1);
        ck_assert_int_eq(c->connect_per_client, -1);
        ck_assert_ptr_null(c->exec_check);
        ck_assert_ptr_null(c->user);
        ck_assert_ptr_null(c->command);
}

START_TEST(test_config_init_done) {
        Config c = {};

        config_done(&c); /* a zeroed Config is fine */
        assert_unset(&c);

        config_init(&c);
        assert_unset(&c);
        ck_assert_int_eq(strv_extend(&c.listen, "udp:1.2.3.4:5"), 0);
        ck_assert_int_eq(strv_extend(&c.command, "/bin/true"), 0);
        c.user = strdup("nobody");
        c.dissector = 1;
        config_done(&c);
        assert_unset(&c);
        config_done(NULL);
}
END_TEST

/* ---- config_parse_string: good input ---- */

static const char full_config[] =
        "# grmd configuration\n"
        "; another comment\n"
        "\n"
        "[Listen]\n"
        "Datagram=udp:127.0.0.1:9000\n"
        "  Datagram  =  [::1]:9000  \n"
        "ReceiveBuffer=8M\n"
        "\n"
        "[Steering]\n"
        "Dissector=none\n"
        "SocketsPerGeneration=4\n"
        "FlowTableSize=1024\n"
        "FlowTimeoutSec=2min\n"
        "FlowsPerSource=100\n"
        "QuicServerIdPrefix=C0a80102\n"
        "QuicConfigId=6\n"
        "\n"
        "[Instance]\n"
        "ExecStart=/usr/bin/grm-echo --port \"9 000\" \\\n"
        "        --verbose\n"
        "ExecCheck=/bin/true check\n"
        "User=nobody\n"
        "StartTimeoutSec=5s\n"
        "DrainTimeoutSec=1min 30s\n"
        "DrainSignal=SIGUSR1\n"
        "\n"
        "[Control]\n"
        "Socket=/run/grm/control\n";

static void assert_strv(char **l, const char *const *expect) {
        size_t n = 0;

        while (expect[n])
                n++;
        ck_assert_ptr_nonnull(l);
        ck_assert_uint_eq(strv_length(l), n);
        for (size_t i = 0; i < n; i++)
                ck_assert_str_eq(l[i], expect[i]);
}

START_TEST(test_parse_string_full) {
        static const char *const listen_expect[] = { "udp:127.0.0.1:9000", "udp:[::1]:9000", NULL };
        static const char *const command_expect[] = {
                "/usr/bin/grm-echo", "--port", "9 000", "--verbose", NULL };
        static const char *const check_expect[] = { "/bin/true", "check", NULL };
        _cleanup_(config_done) Config c;
        char *error = (char *) 0x1;

        config_init(&c);
        ck_assert_int_eq(config_parse_string(full_config, strlen(full_config), "grmd.conf", &c, &error), 0);
        ck_assert_ptr_null(error);

        assert_strv(c.listen, listen_expect);
        ck_assert_uint_eq(c.receive_buffer, 8U << 20);
        ck_assert_int_eq(c.dissector, GRM_DISSECTOR_NONE);
        ck_assert_uint_eq(c.sockets_per_generation, 4);
        ck_assert_uint_eq(c.flow_table_size, 1024);
        ck_assert_uint_eq(c.flow_timeout_usec, SEC(120));
        ck_assert_int_eq(c.flows_per_source, 100);
        ck_assert(c.quic_prefix_set);
        ck_assert_uint_eq(c.quic_prefix.len, 4);
        ck_assert_mem_eq(c.quic_prefix.bytes, "\xc0\xa8\x01\x02", 4);
        ck_assert_int_eq(c.quic_config_id, 6);
        assert_strv(c.command, command_expect);
        assert_strv(c.exec_check, check_expect);
        ck_assert_str_eq(c.user, "nobody");
        ck_assert_uint_eq(c.start_timeout_usec, SEC(5));
        ck_assert_uint_eq(c.drain_timeout_usec, SEC(90));
        ck_assert_int_eq(c.drain_signal, SIGUSR1);
        ck_assert_str_eq(c.control_path, "/run/grm/control");

        ck_assert_int_eq(config_validate(&c, NULL), 0);
}
END_TEST

START_TEST(test_parse_string_empty) {
        _cleanup_(config_done) Config c;
        char *error = NULL;

        config_init(&c);
        ck_assert_int_eq(config_parse_string(NULL, 0, "empty.conf", &c, &error), 0);
        ck_assert_int_eq(config_parse_string(S("\n\n# nothing\n   \n"), "x.conf", &c, &error), 0);
        ck_assert_int_eq(config_parse_string(S("[Instance]\n[Listen]\n"), NULL, &c, NULL), 0);
        ck_assert_ptr_null(error);
        assert_unset(&c);
}
END_TEST

START_TEST(test_parse_string_override) {
        static const char *const listen3[] = { "udp:1.1.1.1:1", "udp:2.2.2.2:2", "udp:3.3.3.3:3", NULL };
        static const char *const listen4[] = { "udp:4.4.4.4:4", NULL };
        static const char *const cmd_b[] = { "/bin/b", NULL };
        _cleanup_(config_done) Config c;

        config_init(&c);
        /* Later keys override earlier ones; Datagram= accumulates, also across calls. */
        ck_assert_int_eq(config_parse_string(S("[Instance]\nExecStart=/bin/a\nExecStart=/bin/b\n"
                                               "DrainSignal=HUP\nDrainSignal=2\n"
                                               "[Listen]\nDatagram=1.1.1.1:1\nDatagram=2.2.2.2:2\n"),
                                             "a", &c, NULL), 0);
        assert_strv(c.command, cmd_b);
        ck_assert_int_eq(c.drain_signal, 2);
        ck_assert_int_eq(config_parse_string(S("[Listen]\nDatagram=udp:3.3.3.3:3\n"), "b", &c, NULL), 0);
        assert_strv(c.listen, listen3);

        /* An empty assignment resets the list. */
        ck_assert_int_eq(config_parse_string(S("[Listen]\nDatagram=\nDatagram=4.4.4.4:4\n"), "c", &c, NULL), 0);
        assert_strv(c.listen, listen4);
        ck_assert_int_eq(config_parse_string(S("[Listen]\nDatagram=\n"), "d", &c, NULL), 0);
        ck_assert_ptr_null(c.listen);

        /* Stream= shares the list (the order is the fds' order); an empty Datagram= or Stream=
         * resets only its own transport. */
        {
                static const char *const mixed[] = { "udp:1.1.1.1:53", "tcp:1.1.1.1:53", "tcp:[::1]:53",
                                                     "udp:[::1]:53", NULL };
                static const char *const udp_only[] = { "udp:1.1.1.1:53", "udp:[::1]:53", NULL };
                static const char *const tcp_only[] = { "tcp:2.2.2.2:80", NULL };

                ck_assert_int_eq(config_parse_string(S("[Listen]\nDatagram=1.1.1.1:53\nStream=1.1.1.1:53\n"
                                                       "Stream=tcp:[::1]:53\nDatagram=udp:[::1]:53\n"),
                                                     "g", &c, NULL), 0);
                assert_strv(c.listen, mixed);
                ck_assert_int_eq(config_parse_string(S("[Listen]\nStream=\n"), "h", &c, NULL), 0);
                assert_strv(c.listen, udp_only);
                ck_assert_int_eq(config_parse_string(S("[Listen]\nDatagram=\nStream=2.2.2.2:80\n"), "i", &c, NULL), 0);
                assert_strv(c.listen, tcp_only);
                ck_assert_int_eq(config_parse_string(S("[Listen]\nStream=\n"), "j", &c, NULL), 0);
                ck_assert_ptr_null(c.listen);
        }

        /* ExecCheck= unsets. */
        ck_assert_int_eq(config_parse_string(S("[Instance]\nExecCheck=/bin/check\n"), "e", &c, NULL), 0);
        ck_assert_ptr_nonnull(c.exec_check);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nExecCheck=\n"), "f", &c, NULL), 0);
        ck_assert_ptr_null(c.exec_check);
        assert_strv(c.command, cmd_b); /* untouched */

        /* DrainTimeoutSec=infinity is not "unset". */
        ck_assert_int_eq(config_parse_string(S("[Instance]\nDrainTimeoutSec=infinity\n"), "g", &c, NULL), 0);
        ck_assert_uint_eq(c.drain_timeout_usec, CONFIG_DRAIN_TIMEOUT_INFINITY);
        config_fill_defaults(&c);
        ck_assert_uint_eq(c.drain_timeout_usec, CONFIG_DRAIN_TIMEOUT_INFINITY);
}
END_TEST

/* systemd's spellings set the same fields as grmd's own, and errors name the key as written. */
START_TEST(test_parse_string_systemd_spelling) {
        static const char *const listen2[] = { "udp:1.1.1.1:1", "udp:[::1]:2", "tcp:1.1.1.1:1", "tcp:[::1]:2", NULL };
        _cleanup_(config_done) Config c;
        _cleanup_free_ char *error = NULL;

        config_init(&c);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nTimeoutStartSec=7s\nTimeoutStopSec=3min\n"
                                               "KillSignal=SIGINT\n"
                                               "[Listen]\nListenDatagram=1.1.1.1:1\nDatagram=udp:[::1]:2\n"
                                               "ListenStream=1.1.1.1:1\nStream=tcp:[::1]:2\n"),
                                             "a", &c, NULL), 0);
        ck_assert_uint_eq(c.start_timeout_usec, SEC(7));
        ck_assert_uint_eq(c.drain_timeout_usec, SEC(180));
        ck_assert_int_eq(c.drain_signal, SIGINT);
        assert_strv(c.listen, listen2);

        /* Either spelling overrides the other: the later line wins. */
        ck_assert_int_eq(config_parse_string(S("[Instance]\nStartTimeoutSec=1s\nTimeoutStartSec=2s\n"
                                               "TimeoutStopSec=1s\nDrainTimeoutSec=infinity\n"
                                               "DrainSignal=HUP\nKillSignal=USR2\n"),
                                             "b", &c, NULL), 0);
        ck_assert_uint_eq(c.start_timeout_usec, SEC(2));
        ck_assert_uint_eq(c.drain_timeout_usec, CONFIG_DRAIN_TIMEOUT_INFINITY);
        ck_assert_int_eq(c.drain_signal, SIGUSR2);

        /* The same checks apply, and the message says the key the file used. */
        ck_assert_int_eq(config_parse_string(S("[Instance]\nTimeoutStartSec=infinity\n"), "c", &c, &error), -EINVAL);
        ck_assert_str_eq(error, "c:2: Invalid TimeoutStartSec=infinity: must be finite");
        free(TAKE_PTR(error));
        ck_assert_int_eq(config_parse_string(S("[Instance]\nTimeoutStopSec=0\n"), "d", &c, &error), -EINVAL);
        ck_assert_str_eq(error, "d:2: Invalid TimeoutStopSec=0: must be greater than zero");
        free(TAKE_PTR(error));
        ck_assert_int_eq(config_parse_string(S("[Instance]\nKillSignal=SIGNOPE\n"), "e", &c, &error), -EINVAL);
        ck_assert_ptr_nonnull(strstr(error, "Invalid KillSignal=SIGNOPE"));
        free(TAKE_PTR(error));
        /* Only in the section the setting belongs to. */
        ck_assert_int_eq(config_parse_string(S("[Steering]\nTimeoutStartSec=1s\n"), "f", &c, &error), -EINVAL);
        ck_assert_str_eq(error, "f:2: Unknown key TimeoutStartSec= in section [Steering]");
        ck_assert_uint_eq(c.start_timeout_usec, SEC(2));
}
END_TEST

START_TEST(test_parse_boolean) {
        static const char *const yes[] = { "yes", "YES", "true", "on", "1", "y", "T" };
        static const char *const no[] = { "no", "No", "false", "off", "0", "n", "f" };
        static const char *const bad[] = { "", "2", "yess", "ja", " yes", "-1" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                ck_assert_int_eq(parse_boolean(yes[i]), 1);
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                ck_assert_int_eq(parse_boolean(no[i]), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_int_eq(parse_boolean(bad[i]), -EINVAL);
        ck_assert_int_eq(parse_boolean(NULL), -EINVAL);
}
END_TEST

/* InterceptBind= is a boolean of [Instance]; "no" is set (merged over a "yes"), not unset. */
START_TEST(test_parse_string_settle) {
        _cleanup_(config_done) Config c, d;
        uint64_t usec = 0;

        config_init(&c);
        config_init(&d);
        ck_assert_uint_eq(c.settle_usec, UINT64_MAX); /* unset */
        config_fill_defaults(&c);
        ck_assert_uint_eq(c.settle_usec, CONFIG_DEFAULT_SETTLE_USEC);
        ck_assert_uint_ge(CONFIG_DEFAULT_SETTLE_USEC, USEC_PER_SEC);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nSettleSec=0\n"), "a", &d, NULL), 0);
        ck_assert_uint_eq(d.settle_usec, 0); /* 0 is a value, not "unset" */
        ck_assert_int_eq(config_merge(&c, &d), 0);
        ck_assert_uint_eq(c.settle_usec, 0);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nSettleSec=1500ms\n"), "b", &d, NULL), 0);
        ck_assert_uint_eq(d.settle_usec, 1500 * USEC_PER_MSEC);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nSettleSec=1h\n"), "c", &d, NULL), 0);
        ck_assert_uint_eq(d.settle_usec, 3600 * USEC_PER_SEC);

        ck_assert_int_eq(parse_settle("2s", &usec), 0);
        ck_assert_uint_eq(usec, 2 * USEC_PER_SEC);
        ck_assert_int_eq(parse_settle("infinity", &usec), -ERANGE);
        ck_assert_int_eq(parse_settle("1h 1s", &usec), -ERANGE);
        ck_assert_int_eq(parse_settle("soon", &usec), -EINVAL);
        ck_assert_uint_eq(usec, 2 * USEC_PER_SEC); /* untouched on error */
}
END_TEST

START_TEST(test_parse_string_intercept_bind) {
        _cleanup_(config_done) Config c, d;
        _cleanup_free_ char *error = NULL;

        config_init(&c);
        config_init(&d);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nInterceptBind=yes\n"), "a", &c, NULL), 0);
        ck_assert_int_eq(c.intercept_bind, 1);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nInterceptBind=off\n"), "b", &d, NULL), 0);
        ck_assert_int_eq(d.intercept_bind, 0);
        ck_assert_int_eq(config_merge(&c, &d), 0);
        ck_assert_int_eq(c.intercept_bind, 0);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nInterceptBind=maybe\n"), "c", &c, &error), -EINVAL);
        ck_assert_str_eq(error, "c:2: Invalid InterceptBind=maybe: expected a boolean (yes or no)");
        ck_assert_int_eq(c.intercept_bind, 0);
        free(TAKE_PTR(error));
        ck_assert_int_eq(config_parse_string(S("[Steering]\nInterceptBind=yes\n"), "d", &c, &error), -EINVAL);
        ck_assert_str_eq(error, "d:2: Unknown key InterceptBind= in section [Steering]");
}
END_TEST

/* ConnectPerClient= likewise: a boolean of [Instance], independent of InterceptBind=. */
START_TEST(test_parse_string_connect_per_client) {
        _cleanup_(config_done) Config c, d;
        _cleanup_free_ char *error = NULL;

        config_init(&c);
        config_init(&d);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nConnectPerClient=yes\n"), "a", &c, NULL), 0);
        ck_assert_int_eq(c.connect_per_client, 1);
        ck_assert_int_eq(c.intercept_bind, -1);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nConnectPerClient=no\nInterceptBind=yes\n"), "b", &d, NULL), 0);
        ck_assert_int_eq(d.connect_per_client, 0);
        ck_assert_int_eq(d.intercept_bind, 1);
        ck_assert_int_eq(config_merge(&c, &d), 0);
        ck_assert_int_eq(c.connect_per_client, 0);
        ck_assert_int_eq(c.intercept_bind, 1);
        config_done(&d);
        config_init(&d);
        ck_assert_int_eq(config_merge(&c, &d), 0); /* unset leaves it */
        ck_assert_int_eq(c.connect_per_client, 0);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nConnectPerClient=sometimes\n"), "c", &c, &error), -EINVAL);
        ck_assert_str_eq(error, "c:2: Invalid ConnectPerClient=sometimes: expected a boolean (yes or no)");
        ck_assert_int_eq(c.connect_per_client, 0);
        free(TAKE_PTR(error));
        ck_assert_int_eq(config_parse_string(S("[Instance]\nConnectPerClient=\n"), "e", &c, &error), -EINVAL);
        ck_assert_str_eq(error, "e:2: Invalid ConnectPerClient=: expected a boolean (yes or no)");
        free(TAKE_PTR(error));
        ck_assert_int_eq(config_parse_string(S("[Listen]\nConnectPerClient=yes\n"), "d", &c, &error), -EINVAL);
        ck_assert_str_eq(error, "d:2: Unknown key ConnectPerClient= in section [Listen]");
}
END_TEST

START_TEST(test_parse_string_syntax) {
        static const char *const cmd_ab[] = { "/bin/echo", "a", "b", NULL };
        static const char *const cmd_bs[] = { "/bin/echo", "a\\", NULL };
        static const char *const cmd_a[] = { "/bin/echo", "a", NULL };
        _cleanup_(config_done) Config c;

        config_init(&c);

        /* Continuation: the backslash becomes a space; comments in between are skipped. */
        ck_assert_int_eq(config_parse_string(S("[Instance]\nExecStart=/bin/echo \\\n# comment\n; more\n"
                                               "   a\\\nb\n"), "t", &c, NULL), 0);
        assert_strv(c.command, cmd_ab);

        /* An escaped backslash does not continue the line. */
        ck_assert_int_eq(config_parse_string(S("[Instance]\nExecStart=/bin/echo a\\\\\nUser=x\n"), "t", &c, NULL), 0);
        assert_strv(c.command, cmd_bs);
        ck_assert_str_eq(c.user, "x");

        /* A backslash on the last line continues into nothing. */
        ck_assert_int_eq(config_parse_string(S("[Instance]\nExecStart=/bin/echo a\\"), "t", &c, NULL), 0);
        assert_strv(c.command, cmd_a);

        /* CRLF, whitespace around everything, no final newline. */
        ck_assert_int_eq(config_parse_string(S("  [Instance]  \r\n\t User \t=\t nobody \r\n"
                                               "DrainSignal = TERM"), "t", &c, NULL), 0);
        ck_assert_str_eq(c.user, "nobody");
        ck_assert_int_eq(c.drain_signal, SIGTERM);

        /* The value keeps inner '=' and whitespace. */
        ck_assert_int_eq(config_parse_string(S("[Instance]\nExecStart=/bin/env A=B  'C = D'\n"), "t", &c, NULL), 0);
        ck_assert_str_eq(c.command[1], "A=B");
        ck_assert_str_eq(c.command[2], "C = D");

        /* Only the bytes given are parsed. */
        ck_assert_int_eq(config_parse_string("[Instance]\nUser=abcdef", strlen("[Instance]\nUser=abc"),
                                             "t", &c, NULL), 0);
        ck_assert_str_eq(c.user, "abc");
}
END_TEST

/* ---- config_parse_string: malformed input ---- */

static const struct {
        const char *text;
        size_t len;
        int ret;
        const char *message; /* must be a substring of the error message */
} bad_configs[] = {
        { S("Datagram=1.2.3.4:5\n"),                    -EINVAL, "t.conf:1: Assignment outside of a section" },
        { S("\n# c\nUser=x\n"),                         -EINVAL, "t.conf:3: Assignment outside" },
        { S("[Nope]\n"),                                -EINVAL, "t.conf:1: Unknown section [Nope]" },
        { S("[listen]\n"),                              -EINVAL, "Unknown section [listen]" },
        { S("[ Listen ]\n"),                            -EINVAL, "Unknown section" },
        { S("[Listen\n"),                               -EINVAL, "t.conf:1: Invalid section header" },
        { S("[]\n"),                                    -EINVAL, "Invalid section header" },
        { S("[Listen]x\n"),                             -EINVAL, "Invalid section header" },
        { S("[Listen]\nFoo=bar\n"),                     -EINVAL, "t.conf:2: Unknown key Foo= in section [Listen]" },
        { S("[Listen]\ndatagram=1.2.3.4:5\n"),          -EINVAL, "Unknown key datagram=" },
        { S("[Steering]\nDatagram=1.2.3.4:5\n"),        -EINVAL, "Unknown key Datagram= in section [Steering]" },
        { S("[Listen]\nDatagram\n"),                    -EINVAL, "t.conf:2: Missing '='" },
        { S("[Listen]\n=1.2.3.4:5\n"),                  -EINVAL, "t.conf:2: Missing key" },
        { S("[Listen]\n  = x\n"),                       -EINVAL, "Missing key" },
        { S("[Listen]\nDatagram=tcp:1.2.3.4:80\n"),     -EINVAL, "t.conf:2: Invalid Datagram=tcp:1.2.3.4:80: only udp" },
        { S("[Listen]\nDatagram=1.2.3.4:0\n"),          -EINVAL, "Invalid Datagram=1.2.3.4:0" },
        { S("[Listen]\nStream=udp:1.2.3.4:80\n"),       -EINVAL, "t.conf:2: Invalid Stream=udp:1.2.3.4:80: only tcp: here; use Datagram=" },
        { S("[Listen]\nStream=sctp:1.2.3.4:80\n"),      -EINVAL, "Invalid Stream=sctp:1.2.3.4:80: only udp: and tcp:" },
        { S("[Listen]\nStream=1.2.3.4:0\n"),            -EINVAL, "Invalid Stream=1.2.3.4:0" },
        { S("[Listen]\nStream=[::1]\n"),                -EINVAL, "Invalid Stream=" },
        { S("[Listen]\nDatagram=localhost:53\n"),       -EINVAL, "Invalid Datagram=" },
        { S("[Steering]\nDissector=QUIC\n"),            -EINVAL, "Invalid Dissector=QUIC" },
        { S("[Steering]\nQuicServerIdPrefix=abc\n"),    -EINVAL, "Invalid QuicServerIdPrefix=abc: expected hex digits" },
        { S("[Steering]\nQuicServerIdPrefix=0x12\n"),   -EINVAL, "Invalid QuicServerIdPrefix=0x12" },
        { S("[Steering]\nQuicServerIdPrefix=12 34\n"),  -EINVAL, "Invalid QuicServerIdPrefix" },
        { S("[Steering]\nQuicServerIdPrefix=12:34\n"),  -EINVAL, "Invalid QuicServerIdPrefix" },
        { S("[Steering]\nQuicServerIdPrefix=gg\n"),     -EINVAL, "Invalid QuicServerIdPrefix" },
        { S("[Steering]\nQuicServerIdPrefix=001122334455667788\n"), -EINVAL, "longer than 8 octets" },
        { S("[Steering]\nQuicConfigId=7\n"),            -EINVAL, "Invalid QuicConfigId=7: expected an integer in 0..6" },
        { S("[Steering]\nQuicConfigId=-1\n"),           -EINVAL, "Invalid QuicConfigId" },
        { S("[Steering]\nQuicConfigId=\n"),             -EINVAL, "Invalid QuicConfigId" },
        { S("[Steering]\nQuicConfigId=0x1\n"),          -EINVAL, "Invalid QuicConfigId" },
        { S("[Instance]\nQuicConfigId=1\n"),            -EINVAL, "Unknown key QuicConfigId= in section [Instance]" },
        { S("[Steering]\nDissector=\n"),                -EINVAL, "Invalid Dissector=" },
        { S("[Steering]\nSocketsPerGeneration=0\n"),    -EINVAL, "Invalid SocketsPerGeneration=0" },
        { S("[Steering]\nSocketsPerGeneration=33\n"),   -EINVAL, "Invalid SocketsPerGeneration=33" },
        { S("[Steering]\nSocketsPerGeneration=-1\n"),   -EINVAL, "Invalid SocketsPerGeneration" },
        { S("[Steering]\nSocketsPerGeneration=1x\n"),   -EINVAL, "Invalid SocketsPerGeneration" },
        { S("[Steering]\nSocketsPerGeneration=\n"),     -EINVAL, "Invalid SocketsPerGeneration" },
        { S("[Steering]\nFlowTableSize=1023\n"),        -EINVAL, "Invalid FlowTableSize=1023" },
        { S("[Steering]\nFlowsPerSource=16777217\n"),   -EINVAL, "Invalid FlowsPerSource" },
        { S("[Steering]\nFlowsPerSource=-1\n"),         -EINVAL, "Invalid FlowsPerSource" },
        { S("[Steering]\nFlowTableSize=16777217\n"),    -EINVAL, "Invalid FlowTableSize" },
        { S("[Steering]\nFlowTableSize=99999999999999999999999\n"), -EINVAL, "Invalid FlowTableSize" },
        { S("[Steering]\nFlowTimeoutSec=0\n"),          -EINVAL, "Invalid FlowTimeoutSec=0: must be greater than zero" },
        { S("[Steering]\nFlowTimeoutSec=infinity\n"),   -EINVAL, "Invalid FlowTimeoutSec=infinity: must be finite" },
        { S("[Steering]\nFlowTimeoutSec=abc\n"),        -EINVAL, "Invalid FlowTimeoutSec=abc" },
        { S("[Steering]\nFlowTimeoutSec=18446744073709552us\n"), -EINVAL, "too large" },
        { S("[Steering]\nFlowTimeoutSec=99999999999999999999999d\n"), -EINVAL, "too large" },
        { S("[Instance]\nExecStart=\n"),                -EINVAL, "Invalid ExecStart=: no command" },
        { S("[Instance]\nExecStart=\"/bin/x\n"),        -EINVAL, "Invalid ExecStart=" },
        { S("[Instance]\nExecStart=\"\"\n"),            -EINVAL, "empty program name" },
        { S("[Instance]\nExecStart=/bin/x \\x00\n"),    -EINVAL, "Invalid ExecStart=" },
        { S("[Instance]\nExecCheck='\n"),               -EINVAL, "Invalid ExecCheck=" },
        { S("[Instance]\nExecCheck=''\n"),              -EINVAL, "empty program name" },
        { S("[Instance]\nUser=\n"),                     -EINVAL, "Invalid User=" },
        { S("[Instance]\nStartTimeoutSec=0\n"),         -EINVAL, "Invalid StartTimeoutSec=0" },
        { S("[Instance]\nStartTimeoutSec=infinity\n"),  -EINVAL, "must be finite" },
        { S("[Instance]\nStartTimeoutSec=5x\n"),        -EINVAL, "Invalid StartTimeoutSec" },
        { S("[Instance]\nDrainTimeoutSec=0\n"),         -EINVAL, "Invalid DrainTimeoutSec=0" },
        { S("[Instance]\nDrainTimeoutSec=-1\n"),        -EINVAL, "Invalid DrainTimeoutSec" },
        { S("[Instance]\nSettleSec=infinity\n"),        -EINVAL, "must be finite and at most 1h" },
        { S("[Instance]\nSettleSec=2h\n"),              -EINVAL, "must be finite and at most 1h" },
        { S("[Instance]\nSettleSec=-1\n"),              -EINVAL, "Invalid SettleSec=-1: expected a time span" },
        { S("[Instance]\nDrainSignal=SIGFOO\n"),        -EINVAL, "Invalid DrainSignal=SIGFOO" },
        { S("[Instance]\nDrainSignal=0\n"),             -EINVAL, "Invalid DrainSignal" },
        { S("[Instance]\nDrainSignal=\n"),              -EINVAL, "Invalid DrainSignal" },
        { S("[Control]\nSocket=run/grm\n"),             -EINVAL, "Invalid Socket=run/grm: not an absolute path" },
        { S("[Control]\nSocket=\n"),                    -EINVAL, "Invalid Socket=" },
        { S("[Control]\nSocket=/0123456789012345678901234567890123456789012345678901234567890123456789"
            "01234567890123456789012345678901234567\n"), -EINVAL, "longer than" },
        { S("[Listen]\nDatag\0ram=1.2.3.4:5\n"),        -EINVAL, "t.conf:2: NUL byte" },
        { S("\0"),                                      -EINVAL, "t.conf:1: NUL byte" },
        { S("[Instance]\nUser=x\0"),                    -EINVAL, "t.conf:2: NUL byte" },
        /* Line numbers count physical lines; a continued line is reported where it starts. */
        { S("# c\n\n[Instance]\nExecStart=/bin/a \\\n  b\nBogus=1\n"), -EINVAL, "t.conf:6: Unknown key Bogus=" },
        { S("[Instance]\nStartTimeoutSec=\\\n# c\nbad\n"), -EINVAL, "t.conf:2: Invalid StartTimeoutSec" },
        /* A bad line after good ones. */
        { S("[Instance]\nUser=a\nExecStart=/bin/a\n[Oops]\n"), -EINVAL, "t.conf:4: Unknown section [Oops]" },
};

START_TEST(test_parse_string_bad) {
        _cleanup_(config_done) Config c;
        _cleanup_free_ char *error = NULL;

        config_init(&c);
        ck_assert_int_eq(config_parse_string(bad_configs[_i].text, bad_configs[_i].len, "t.conf", &c, &error),
                         bad_configs[_i].ret);
        ck_assert_ptr_nonnull(error);
        ck_assert_msg(strstr(error, bad_configs[_i].message), "case %d: \"%s\" lacks \"%s\"",
                      _i, error, bad_configs[_i].message);
        /* All or nothing: nothing of the file was stored. */
        assert_unset(&c);
}
END_TEST

START_TEST(test_parse_string_atomic) {
        static const char *const cmd[] = { "/bin/old", NULL };
        static const char *const listen_old[] = { "udp:1.1.1.1:1", NULL };
        _cleanup_(config_done) Config c;
        _cleanup_free_ char *error = NULL;

        config_init(&c);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nExecStart=/bin/old\nUser=old\n"
                                               "[Listen]\nDatagram=1.1.1.1:1\n"), "a", &c, NULL), 0);

        /* Settings before the error are not applied either, and the old ones are intact. */
        ck_assert_int_eq(config_parse_string(S("[Instance]\nExecStart=/bin/new\nUser=new\n"
                                               "[Listen]\nDatagram=\nDatagram=2.2.2.2:2\n"
                                               "[Steering]\nDissector=none\nDissector=bad\n"),
                                             "b", &c, &error), -EINVAL);
        ck_assert_ptr_nonnull(strstr(error, "b:9:"));
        assert_strv(c.command, cmd);
        assert_strv(c.listen, listen_old);
        ck_assert_str_eq(c.user, "old");
        ck_assert_int_eq(c.dissector, -1);
}
END_TEST

START_TEST(test_parse_string_sanitized_error) {
        _cleanup_(config_done) Config c;
        _cleanup_free_ char *error = NULL, *long_value = NULL, *text = NULL;

        config_init(&c);

        /* Control characters from the file do not reach the terminal or the journal. */
        ck_assert_int_eq(config_parse_string(S("[Listen]\nFoo\x1b[31m=1\n"), "t", &c, &error), -EINVAL);
        ck_assert_ptr_null(strchr(error, '\x1b'));
        free(error);
        error = NULL;
        ck_assert_int_eq(config_parse_string(S("[Steering]\nDissector=\x07\xff\n"), "t", &c, &error), -EINVAL);
        ck_assert_ptr_null(strchr(error, '\x07'));
        ck_assert_ptr_null(strchr(error, '\xff'));
        free(error);
        error = NULL;

        /* A long bad value is quoted truncated. */
        long_value = malloc(3001);
        ck_assert_ptr_nonnull(long_value);
        memset(long_value, 'q', 3000);
        long_value[3000] = 0;
        ck_assert_int_ge(asprintf(&text, "[Steering]\nDissector=%s\n", long_value), 0);
        ck_assert_int_eq(config_parse_string(text, strlen(text), "t", &c, &error), -EINVAL);
        ck_assert_uint_lt(strlen(error), 300);
        ck_assert_ptr_nonnull(strstr(error, "..."));
}
END_TEST

START_TEST(test_parse_string_limits) {
        _cleanup_(config_done) Config c;
        _cleanup_free_ char *buf = NULL, *error = NULL;
        size_t prefix = strlen("[Instance]\nUser=");
        size_t n;

        config_init(&c);
        buf = malloc(CONFIG_FILE_MAX + 2);
        ck_assert_ptr_nonnull(buf);

        /* A line of exactly CONFIG_LINE_MAX bytes is fine; one more byte is not. */
        memcpy(buf, "[Instance]\nUser=", prefix);
        n = CONFIG_LINE_MAX - strlen("User=");
        memset(buf + prefix, 'u', n + 1);
        ck_assert_int_eq(config_parse_string(buf, prefix + n, "t", &c, &error), 0);
        ck_assert_uint_eq(strlen(c.user), n);
        ck_assert_int_eq(config_parse_string(buf, prefix + n + 1, "t", &c, &error), -E2BIG);
        ck_assert_ptr_nonnull(strstr(error, "t:2: Line too long"));
        free(error);
        error = NULL;

        /* The same through continuation lines of 1000 bytes each. */
        n = prefix;
        for (unsigned i = 0; i < 5; i++) {
                memset(buf + n, 'v', 999);
                memcpy(buf + n + 999, "\\\n", 2);
                n += 1001;
        }
        memcpy(buf + n, "v\n", 2);
        ck_assert_int_eq(config_parse_string(buf, n + 2, "t", &c, &error), -E2BIG);
        ck_assert_ptr_nonnull(strstr(error, "t:2: Continued line too long"));
        free(error);
        error = NULL;

        /* File size: exactly CONFIG_FILE_MAX bytes (of empty lines) is fine, one more is not. */
        memset(buf, '\n', CONFIG_FILE_MAX + 1);
        ck_assert_int_eq(config_parse_string(buf, CONFIG_FILE_MAX, "t", &c, &error), 0);
        ck_assert_int_eq(config_parse_string(buf, CONFIG_FILE_MAX + 1, "t", &c, &error), -E2BIG);
        ck_assert_ptr_nonnull(strstr(error, "t: File too large"));
        free(error);
        error = NULL;
        ck_assert_int_eq(config_parse_string(buf, SIZE_MAX, "t", &c, NULL), -E2BIG);

        /* At most CONFIG_LISTEN_MAX listen addresses. */
        {
                _cleanup_free_ char *text = NULL;
                size_t size = 0;
                FILE *f = open_memstream(&text, &size);

                ck_assert_ptr_nonnull(f);
                fputs("[Listen]\n", f);
                for (unsigned i = 0; i < CONFIG_LISTEN_MAX; i++)
                        fprintf(f, "Datagram=127.0.0.1:%u\n", 1000 + i);
                ck_assert_int_eq(fclose(f), 0);
                ck_assert_int_eq(config_parse_string(text, size, "t", &c, &error), 0);
                ck_assert_uint_eq(strv_length(c.listen), CONFIG_LISTEN_MAX);
                ck_assert_int_eq(config_parse_string(S("[Listen]\nDatagram=127.0.0.1:9\n"), "t", &c, &error),
                                 -EINVAL);
                ck_assert_ptr_nonnull(strstr(error, "too many"));
                ck_assert_uint_eq(strv_length(c.listen), CONFIG_LISTEN_MAX);
        }
}
END_TEST

START_TEST(test_parse_string_bad_arguments) {
        Config c;
        char *error = (char *) 0x1;

        config_init(&c);
        ck_assert_int_eq(config_parse_string(NULL, 5, "t", &c, &error), -EINVAL);
        ck_assert_ptr_null(error);
        ck_assert_int_eq(config_parse_string("", 0, "t", NULL, NULL), -EINVAL);
        /* No name: a placeholder is used in messages. */
        ck_assert_int_eq(config_parse_string(S("x=1\n"), NULL, &c, &error), -EINVAL);
        ck_assert_ptr_nonnull(error);
        free(error);
        config_done(&c);
}
END_TEST

/* ---- config_parse_file ---- */

static char *write_temp(const void *data, size_t len) {
        char *path = strdup("/tmp/test-config-XXXXXX");
        int fd;

        ck_assert_ptr_nonnull(path);
        fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        for (size_t done = 0; done < len;) {
                ssize_t k = write(fd, (const char *) data + done, len - done);

                ck_assert_int_gt(k, 0);
                done += (size_t) k;
        }
        ck_assert_int_eq(close(fd), 0);
        return path;
}

START_TEST(test_parse_file) {
        _cleanup_(config_done) Config c;
        _cleanup_free_ char *path = NULL, *error = NULL, *expect = NULL;

        config_init(&c);
        path = write_temp(full_config, strlen(full_config));
        ck_assert_int_eq(config_parse_file(path, &c, &error), 0);
        ck_assert_ptr_null(error);
        ck_assert_str_eq(c.user, "nobody");
        ck_assert_uint_eq(strv_length(c.listen), 2);
        ck_assert_int_eq(unlink(path), 0);
        free(path);

        /* Errors name the file. */
        path = write_temp(S("[Instance]\nUser=x\nNope=1\n"));
        ck_assert_int_eq(config_parse_file(path, &c, &error), -EINVAL);
        ck_assert_int_ge(asprintf(&expect, "%s:3: Unknown key Nope=", path), 0);
        ck_assert_int_eq(strncmp(error, expect, strlen(expect)), 0);
        ck_assert_str_eq(c.user, "nobody"); /* unchanged */
        ck_assert_int_eq(unlink(path), 0);
}
END_TEST

START_TEST(test_parse_file_errors) {
        _cleanup_(config_done) Config c;
        _cleanup_free_ char *error = NULL, *path = NULL, *big = NULL;

        config_init(&c);

        ck_assert_int_eq(config_parse_file("/nonexistent/grmd.conf", &c, &error), -ENOENT);
        ck_assert_ptr_nonnull(strstr(error, "/nonexistent/grmd.conf"));
        free(error);
        error = NULL;

        ck_assert_int_eq(config_parse_file("/", &c, &error), -EISDIR);
        ck_assert_ptr_nonnull(error);
        free(error);
        error = NULL;

        ck_assert_int_eq(config_parse_file(NULL, &c, &error), -EINVAL);
        ck_assert_int_eq(config_parse_file("/dev/null", NULL, &error), -EINVAL);
        ck_assert_int_eq(config_parse_file("/dev/null", &c, NULL), 0);

        /* Size: exactly CONFIG_FILE_MAX is fine, one byte more is not. */
        big = malloc(CONFIG_FILE_MAX + 1);
        ck_assert_ptr_nonnull(big);
        memset(big, '\n', CONFIG_FILE_MAX + 1);
        memcpy(big, "[Instance]\nUser=big\n", 20);
        path = write_temp(big, CONFIG_FILE_MAX);
        ck_assert_int_eq(config_parse_file(path, &c, &error), 0);
        ck_assert_str_eq(c.user, "big");
        ck_assert_int_eq(unlink(path), 0);
        free(path);
        path = write_temp(big, CONFIG_FILE_MAX + 1);
        ck_assert_int_eq(config_parse_file(path, &c, &error), -E2BIG);
        ck_assert_ptr_nonnull(strstr(error, "too large"));
        ck_assert_int_eq(unlink(path), 0);
}
END_TEST

/* ---- config_merge ---- */

START_TEST(test_merge) {
        static const char *const listen_src[] = { "udp:2.2.2.2:2", NULL };
        static const char *const cmd_dst[] = { "/bin/dst", NULL };
        _cleanup_(config_done) Config dst, src, empty;

        config_init(&dst);
        config_init(&src);
        config_init(&empty);
        ck_assert_int_eq(config_parse_string(S("[Instance]\nExecStart=/bin/dst\nUser=dst\nDrainSignal=HUP\n"
                                               "[Listen]\nDatagram=1.1.1.1:1\n"
                                               "[Steering]\nFlowTableSize=2048\nDissector=none\n"),
                                             "dst", &dst, NULL), 0);
        ck_assert_int_eq(config_parse_string(S("[Listen]\nDatagram=2.2.2.2:2\n"
                                               "[Instance]\nUser=src\nExecCheck=/bin/check\n"
                                               "StartTimeoutSec=3\nDrainTimeoutSec=infinity\n"
                                               "[Steering]\nSocketsPerGeneration=2\nDissector=flow\n"
                                               "FlowTimeoutSec=7\n[Control]\nSocket=/run/x\n"),
                                             "src", &src, NULL), 0);

        /* Merging an all-unset Config changes nothing. */
        ck_assert_int_eq(config_merge(&dst, &empty), 0);
        ck_assert_str_eq(dst.user, "dst");
        ck_assert_uint_eq(dst.flow_table_size, 2048);

        ck_assert_int_eq(config_merge(&dst, &src), 0);
        /* Set in src: replaced (lists too, not appended). */
        assert_strv(dst.listen, listen_src);
        ck_assert_str_eq(dst.user, "src");
        ck_assert_str_eq(dst.exec_check[0], "/bin/check");
        ck_assert_str_eq(dst.control_path, "/run/x");
        ck_assert_int_eq(dst.dissector, GRM_DISSECTOR_FLOW);
        ck_assert_uint_eq(dst.sockets_per_generation, 2);
        ck_assert_uint_eq(dst.flow_timeout_usec, SEC(7));
        ck_assert_uint_eq(dst.start_timeout_usec, SEC(3));
        ck_assert_uint_eq(dst.drain_timeout_usec, CONFIG_DRAIN_TIMEOUT_INFINITY);
        /* Unset in src: kept. */
        assert_strv(dst.command, cmd_dst);
        ck_assert_uint_eq(dst.flow_table_size, 2048);
        ck_assert_int_eq(dst.drain_signal, SIGHUP);

        /* Deep copies: src can go away. */
        ck_assert_ptr_ne(dst.user, src.user);
        ck_assert_ptr_ne(dst.listen, src.listen);
        ck_assert_ptr_ne(dst.listen[0], src.listen[0]);
        config_done(&src);
        ck_assert_str_eq(dst.user, "src");
        ck_assert_str_eq(dst.listen[0], "udp:2.2.2.2:2");

        /* The QUIC keys: a set prefix (even the empty one) and config id 0 count as set. */
        ck_assert_int_eq(config_parse_string(S("[Steering]\nQuicServerIdPrefix=ab\nQuicConfigId=3\n"),
                                             "s", &src, NULL), 0);
        ck_assert_int_eq(config_merge(&dst, &src), 0);
        ck_assert_uint_eq(dst.quic_prefix.len, 1);
        ck_assert_uint_eq(dst.quic_prefix.bytes[0], 0xab);
        ck_assert_int_eq(dst.quic_config_id, 3);
        config_done(&src);
        ck_assert_int_eq(config_merge(&dst, &src), 0); /* unset: kept */
        ck_assert_uint_eq(dst.quic_prefix.len, 1);
        ck_assert_int_eq(dst.quic_config_id, 3);
        ck_assert_int_eq(config_parse_string(S("[Steering]\nQuicServerIdPrefix=\nQuicConfigId=0\n"),
                                             "s", &src, NULL), 0);
        ck_assert(src.quic_prefix_set);
        ck_assert_int_eq(config_merge(&dst, &src), 0);
        ck_assert_uint_eq(dst.quic_prefix.len, 0);
        ck_assert_int_eq(dst.quic_config_id, 0);
        config_done(&src);

        /* dissector "none" (0) counts as set. */
        ck_assert_int_eq(config_parse_string(S("[Steering]\nDissector=none\n"), "s", &src, NULL), 0);
        ck_assert_int_eq(config_merge(&dst, &src), 0);
        ck_assert_int_eq(dst.dissector, GRM_DISSECTOR_NONE);
}
END_TEST

/* ---- config_fill_defaults ---- */

START_TEST(test_fill_defaults) {
        _cleanup_(config_done) Config c;

        config_init(&c);
        config_fill_defaults(&c);
        ck_assert_int_eq(c.dissector, GRM_DISSECTOR_FLOW);
        ck_assert_uint_eq(c.sockets_per_generation, 1);
        ck_assert_uint_eq(c.flow_table_size, 65536);
        ck_assert_int_eq(c.flows_per_source, CONFIG_DEFAULT_FLOWS_PER_SOURCE);
        ck_assert_uint_eq(c.flow_timeout_usec, SEC(125));
        ck_assert_uint_eq(c.start_timeout_usec, SEC(90));
        ck_assert_uint_eq(c.drain_timeout_usec, SEC(60));
        ck_assert_int_eq(c.drain_signal, SIGTERM);
        ck_assert_int_eq(c.intercept_bind, 0);
        ck_assert_int_eq(c.connect_per_client, 0);
        ck_assert(c.quic_prefix_set);
        ck_assert_uint_eq(c.quic_prefix.len, 0);
        ck_assert_int_eq(c.quic_config_id, 0);
        /* Left unset: they have no default. */
        ck_assert_ptr_null(c.listen);
        ck_assert_ptr_null(c.control_path);
        ck_assert_ptr_null(c.exec_check);
        ck_assert_ptr_null(c.user);
        ck_assert_ptr_null(c.command);

        /* Set values are kept. */
        config_done(&c);
        ck_assert_int_eq(config_parse_string(S("[Steering]\nDissector=none\nSocketsPerGeneration=3\n"
                                               "FlowTableSize=4096\nFlowTimeoutSec=1\n"
                                               "[Instance]\nStartTimeoutSec=2\nDrainTimeoutSec=3\n"
                                               "DrainSignal=USR2\n[Steering]\nDissector=quic\n"
                                               "QuicServerIdPrefix=ffffffffffffffff\nQuicConfigId=6\n"),
                                             "t", &c, NULL), 0);
        config_fill_defaults(&c);
        ck_assert_int_eq(c.dissector, GRM_DISSECTOR_QUIC);
        ck_assert_uint_eq(c.quic_prefix.len, 8);
        ck_assert_int_eq(c.quic_config_id, 6);
        c.dissector = GRM_DISSECTOR_NONE;
        ck_assert_int_eq(c.dissector, GRM_DISSECTOR_NONE);
        ck_assert_uint_eq(c.sockets_per_generation, 3);
        ck_assert_uint_eq(c.flow_table_size, 4096);
        ck_assert_uint_eq(c.flow_timeout_usec, SEC(1));
        ck_assert_uint_eq(c.start_timeout_usec, SEC(2));
        ck_assert_uint_eq(c.drain_timeout_usec, SEC(3));
        ck_assert_int_eq(c.drain_signal, SIGUSR2);
}
END_TEST

/* ---- config_validate ---- */

/* A valid, filled config with the command /bin/app. */
static void valid_config(Config *c) {
        config_init(c);
        ck_assert_int_eq(strv_extend(&c->command, "/bin/app"), 0);
        config_fill_defaults(c);
}

static void expect_invalid(Config *c, const char *message) {
        _cleanup_free_ char *error = NULL;

        ck_assert_int_eq(config_validate(c, &error), -EINVAL);
        ck_assert_ptr_nonnull(error);
        ck_assert_msg(strstr(error, message), "\"%s\" lacks \"%s\"", error, message);
        ck_assert_int_eq(config_validate(c, NULL), -EINVAL);
        config_done(c);
}

START_TEST(test_validate) {
        _cleanup_(config_done) Config c;
        char *error = (char *) 0x1;

        valid_config(&c);
        ck_assert_int_eq(config_validate(&c, &error), 0);
        ck_assert_ptr_null(error);
        ck_assert_int_eq(strv_extend(&c.listen, "udp:127.0.0.1:9000"), 0);
        ck_assert_int_eq(strv_extend(&c.listen, "udp:[::1]:9000"), 0);
        ck_assert_int_eq(strv_extend(&c.listen, "127.0.0.1:9001"), 0);
        c.control_path = strdup("/run/grm.sock");
        c.user = strdup("1000");
        ck_assert_int_eq(strv_extend(&c.exec_check, "/bin/check"), 0);
        c.drain_timeout_usec = CONFIG_DRAIN_TIMEOUT_INFINITY;
        c.drain_signal = SIGRTMIN + 1;
        ck_assert_int_eq(config_validate(&c, NULL), 0);
        config_done(&c);

        /* Bounds are inclusive. */
        valid_config(&c);
        c.sockets_per_generation = CONFIG_SOCKETS_MAX;
        c.flow_table_size = CONFIG_FLOW_TABLE_MAX;
        ck_assert_int_eq(config_validate(&c, NULL), 0);
        c.sockets_per_generation = 1;
        c.flow_table_size = CONFIG_FLOW_TABLE_MIN;
        ck_assert_int_eq(config_validate(&c, NULL), 0);
}
END_TEST

START_TEST(test_validate_bad) {
        Config c;

        config_init(&c);
        config_fill_defaults(&c);
        expect_invalid(&c, "ExecStart=");

        valid_config(&c);
        strv_free(c.command);
        c.command = calloc(1, sizeof(char *));
        expect_invalid(&c, "ExecStart=");

        valid_config(&c);
        free(c.command[0]);
        c.command[0] = strdup("");
        expect_invalid(&c, "ExecStart=");

        valid_config(&c);
        c.exec_check = calloc(1, sizeof(char *));
        expect_invalid(&c, "ExecCheck=");

        valid_config(&c);
        c.user = strdup("");
        expect_invalid(&c, "User=");

        valid_config(&c);
        c.control_path = strdup("relative");
        expect_invalid(&c, "not an absolute path");

        valid_config(&c);
        ck_assert_int_eq(strv_extend(&c.listen, "udp:1.2.3.4:0"), 0);
        expect_invalid(&c, "Listen address \"udp:1.2.3.4:0\"");

        valid_config(&c);
        ck_assert_int_eq(strv_extend(&c.listen, "sctp:1.2.3.4:1"), 0);
        expect_invalid(&c, "only udp: and tcp:");

        /* One address over UDP and over TCP: two groups, both fine. */
        valid_config(&c);
        ck_assert_int_eq(strv_extend(&c.listen, "udp:127.0.0.1:53"), 0);
        ck_assert_int_eq(strv_extend(&c.listen, "tcp:127.0.0.1:53"), 0);
        ck_assert_int_eq(config_validate(&c, NULL), 0);
        config_done(&c);

        valid_config(&c);
        ck_assert_int_eq(strv_extend(&c.listen, "tcp:[::1]:53"), 0);
        ck_assert_int_eq(strv_extend(&c.listen, "tcp:[::1]:53"), 0);
        expect_invalid(&c, "\"tcp:[::1]:53\" given twice");

        valid_config(&c);
        ck_assert_int_eq(strv_extend(&c.listen, "udp:127.0.0.1:53"), 0);
        ck_assert_int_eq(strv_extend(&c.listen, "udp:[::1]:53"), 0);
        ck_assert_int_eq(strv_extend(&c.listen, "127.0.0.1:53"), 0);
        expect_invalid(&c, "\"127.0.0.1:53\" given twice");

        valid_config(&c);
        for (unsigned i = 0; i < CONFIG_LISTEN_MAX + 1; i++) {
                char a[32];

                snprintf(a, sizeof(a), "udp:127.0.0.1:%u", 100 + i);
                ck_assert_int_eq(strv_extend(&c.listen, a), 0);
        }
        expect_invalid(&c, "Too many listen addresses");

        valid_config(&c);
        c.dissector = -1;
        expect_invalid(&c, "Dissector=");
        valid_config(&c);
        c.dissector = _GRM_DISSECTOR_MAX;
        expect_invalid(&c, "Dissector=");

        valid_config(&c);
        c.quic_config_id = 7;
        expect_invalid(&c, "QuicConfigId=7");
        valid_config(&c);
        c.quic_config_id = -1;
        expect_invalid(&c, "QuicConfigId=");
        valid_config(&c);
        c.quic_prefix_set = false;
        expect_invalid(&c, "QuicServerIdPrefix=");
        valid_config(&c);
        c.quic_prefix.len = GRM_QUIC_PREFIX_MAX + 1;
        expect_invalid(&c, "QuicServerIdPrefix=");

        valid_config(&c);
        c.sockets_per_generation = 0;
        expect_invalid(&c, "SocketsPerGeneration=0");
        valid_config(&c);
        c.sockets_per_generation = CONFIG_SOCKETS_MAX + 1;
        expect_invalid(&c, "SocketsPerGeneration=33");

        valid_config(&c);
        c.flow_table_size = CONFIG_FLOW_TABLE_MIN - 1;
        expect_invalid(&c, "FlowTableSize=");
        valid_config(&c);
        c.flow_table_size = CONFIG_FLOW_TABLE_MAX + 1;
        expect_invalid(&c, "FlowTableSize=");

        valid_config(&c);
        c.flow_timeout_usec = 0;
        expect_invalid(&c, "FlowTimeoutSec=");
        valid_config(&c);
        c.flow_timeout_usec = UINT64_MAX;
        expect_invalid(&c, "FlowTimeoutSec=");

        valid_config(&c);
        c.start_timeout_usec = 0;
        expect_invalid(&c, "StartTimeoutSec=");
        valid_config(&c);
        c.start_timeout_usec = UINT64_MAX;
        expect_invalid(&c, "StartTimeoutSec=");

        valid_config(&c);
        c.drain_timeout_usec = 0;
        expect_invalid(&c, "DrainTimeoutSec=");
        valid_config(&c);
        c.drain_timeout_usec = UINT64_MAX; /* unset, not infinity */
        expect_invalid(&c, "DrainTimeoutSec=");

        valid_config(&c);
        c.drain_signal = 0;
        expect_invalid(&c, "DrainSignal=");
        valid_config(&c);
        c.drain_signal = SIGRTMAX + 1;
        expect_invalid(&c, "DrainSignal=");
}
END_TEST

static Suite *config_suite(void) {
        Suite *s = suite_create("config");
        TCase *tc;

        tc = tcase_create("parse_unsigned");
        tcase_add_loop_test(tc, test_parse_unsigned, 0, (int) ELEMENTSOF(unsigned_cases));
        tcase_add_test(tc, test_parse_unsigned_null);
        suite_add_tcase(s, tc);

        tc = tcase_create("parse_size");
        tcase_add_loop_test(tc, test_parse_size, 0, (int) ELEMENTSOF(size_cases));
        suite_add_tcase(s, tc);

        tc = tcase_create("parse_sec");
        tcase_add_loop_test(tc, test_parse_sec, 0, (int) ELEMENTSOF(sec_cases));
        tcase_add_test(tc, test_parse_sec_null);
        suite_add_tcase(s, tc);

        tc = tcase_create("parse_boolean");
        tcase_add_test(tc, test_parse_boolean);
        suite_add_tcase(s, tc);

        tc = tcase_create("parse_signal");
        tcase_add_loop_test(tc, test_parse_signal, 0, (int) ELEMENTSOF(signal_cases));
        tcase_add_test(tc, test_parse_signal_rt);
        tcase_add_test(tc, test_signal_round_trip);
        suite_add_tcase(s, tc);

        tc = tcase_create("signal_to_name");
        tcase_add_test(tc, test_signal_to_name);
        suite_add_tcase(s, tc);

        tc = tcase_create("dissector_from_string");
        tcase_add_test(tc, test_dissector_from_string);
        suite_add_tcase(s, tc);

        tc = tcase_create("dissector_to_string");
        tcase_add_test(tc, test_dissector_to_string);
        suite_add_tcase(s, tc);

        tc = tcase_create("parse_listen_address");
        tcase_add_loop_test(tc, test_parse_listen_address, 0, (int) ELEMENTSOF(listen_cases));
        tcase_add_test(tc, test_parse_listen_address_misc);
        suite_add_tcase(s, tc);

        tc = tcase_create("strv_split_quoted");
        tcase_add_loop_test(tc, test_strv_split_quoted, 0, (int) ELEMENTSOF(split_cases));
        tcase_add_test(tc, test_strv_split_quoted_misc);
        suite_add_tcase(s, tc);

        tc = tcase_create("strv_copy");
        tcase_add_test(tc, test_strv_copy);
        suite_add_tcase(s, tc);

        tc = tcase_create("strv_extend");
        tcase_add_test(tc, test_strv_extend);
        suite_add_tcase(s, tc);

        tc = tcase_create("config_init_done");
        tcase_add_test(tc, test_config_init_done);
        suite_add_tcase(s, tc);

        tc = tcase_create("config_parse_string");
        tcase_add_test(tc, test_parse_string_full);
        tcase_add_test(tc, test_parse_string_empty);
        tcase_add_test(tc, test_parse_string_override);
        tcase_add_test(tc, test_parse_string_systemd_spelling);
        tcase_add_test(tc, test_parse_string_intercept_bind);
        tcase_add_test(tc, test_parse_string_connect_per_client);
        tcase_add_test(tc, test_parse_string_settle);
        tcase_add_test(tc, test_parse_string_syntax);
        tcase_add_loop_test(tc, test_parse_string_bad, 0, (int) ELEMENTSOF(bad_configs));
        tcase_add_test(tc, test_parse_string_atomic);
        tcase_add_test(tc, test_parse_string_sanitized_error);
        tcase_add_test(tc, test_parse_string_limits);
        tcase_add_test(tc, test_parse_string_bad_arguments);
        suite_add_tcase(s, tc);

        tc = tcase_create("config_parse_file");
        tcase_add_test(tc, test_parse_file);
        tcase_add_test(tc, test_parse_file_errors);
        suite_add_tcase(s, tc);

        tc = tcase_create("config_merge");
        tcase_add_test(tc, test_merge);
        suite_add_tcase(s, tc);

        tc = tcase_create("config_fill_defaults");
        tcase_add_test(tc, test_fill_defaults);
        suite_add_tcase(s, tc);

        tc = tcase_create("config_validate");
        tcase_add_test(tc, test_validate);
        tcase_add_test(tc, test_validate_bad);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        SRunner *sr = srunner_create(config_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
