/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for tools/quic-util.h, the header grm-quic-echo and grm-quic-load share: the
 * connection IDs grm-quic-echo builds (length, octet 0, server ID, random tail), checked against
 * grm's own decoder (src/shared/quic-lb.c, the C twin of the steering program) for every server
 * ID grmd hands out, so the example server and the kernel side agree on the contract; the hex
 * parser for GRM_QUIC_SERVER_IDS; and the timer heap both event loops run on.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "quic-lb.h"
#include "quic-util.h"

START_TEST(test_cid_length) {
        for (size_t sid = 0; sid <= QUIC_SERVER_ID_MAX; sid++) {
                size_t len = quic_cid_length(sid);

                ck_assert_uint_ge(len, QUIC_CID_MIN);
                ck_assert_uint_le(len, QUIC_CID_MAX);
                ck_assert_uint_ge(len - 1 - sid, QUIC_CID_RANDOM_MIN);
        }
        ck_assert_uint_eq(quic_cid_length(3), 12);   /* grm's 3 octets, no prefix */
        ck_assert_uint_eq(quic_cid_length(11), 20);  /* an 8-octet prefix */
        ck_assert_uint_eq(quic_cid_length(0), 9);
}
END_TEST

START_TEST(test_cid_build) {
        static const uint8_t sid[] = { 0x50, 0x80, 0x01 };
        uint8_t rnd[QUIC_CID_MAX], cid[QUIC_CID_MAX];

        for (size_t i = 0; i < sizeof(rnd); i++)
                rnd[i] = (uint8_t) (0xa0 + i);
        quic_cid_build(cid, 12, 2, sid, sizeof(sid), rnd);
        ck_assert_uint_eq(cid[0], (2u << 5) | 11u);
        ck_assert_mem_eq(cid + 1, sid, sizeof(sid));
        ck_assert_mem_eq(cid + 4, rnd, 8);

        /* No server ID, "unroutable" config: only octet 0 is not random. */
        quic_cid_build(cid, 16, QUIC_CONFIG_UNROUTABLE, NULL, 0, rnd);
        ck_assert_uint_eq(cid[0], 0xef);
        ck_assert_mem_eq(cid + 1, rnd, 15);
}
END_TEST

static const struct {
        const char *s;
        int ret;
        size_t len;
        const char *bytes;
} hex_cases[] = {
        { "500001",  0,       3, "\x50\x00\x01" },
        { "C0a8FF",  0,       3, "\xc0\xa8\xff" },
        { "00",      0,       1, "\x00" },
        { "",        -EINVAL, 0, "" },
        { "5",       -EINVAL, 0, "" },
        { "50000",   -EINVAL, 0, "" },
        { "5g0001",  -EINVAL, 0, "" },
        { "50 001",  -EINVAL, 0, "" },
        { "0102030405060708090a0b0c0d0e0f", 0, 15,
          "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f" },
        { "0102030405060708090a0b0c0d0e0f10", -EINVAL, 0, "" },  /* 16 octets: no room for 4 random */
};

START_TEST(test_parse_hex) {
        uint8_t out[QUIC_SERVER_ID_MAX];
        size_t len = 0;
        int r;

        r = quic_parse_hex(hex_cases[_i].s, strlen(hex_cases[_i].s), out, QUIC_SERVER_ID_MAX, &len);
        ck_assert_int_eq(r, hex_cases[_i].ret);
        if (r == 0) {
                ck_assert_uint_eq(len, hex_cases[_i].len);
                ck_assert_mem_eq(out, hex_cases[_i].bytes, len);
        }
}
END_TEST

/*
 * Every GRM_QUIC_SERVER_IDS value grmd makes (prefixes of 0, 2 and 8 octets, every slot, several
 * sockets and generations, every config id), parsed as grm-quic-echo parses it, built into a CID
 * as grm-quic-echo builds it, decodes in grm's decoder to the same config, slot, socket and
 * generation bits. The unroutable CIDs it issues without the variables decode as foreign.
 */
START_TEST(test_echo_cids_decode) {
        static const char *const prefixes[] = { "", "c0a8", "0102030405060708" };
        static const uint32_t gens[] = { 1, 2, 32767, 32768, 100000 };
        uint8_t rnd[QUIC_CID_MAX];
        size_t checked = 0;

        for (size_t i = 0; i < sizeof(rnd); i++)
                rnd[i] = (uint8_t) (i * 37 + 11);

        for (size_t p = 0; p < ELEMENTSOF(prefixes); p++) {
                QuicLbPrefix prefix;
                struct grm_quic_config configs[GRM_QUIC_CONFIG_IDS] = {};

                ck_assert_int_eq(quic_lb_parse_prefix(prefixes[p], &prefix), 0);
                for (unsigned cfg = 0; cfg <= QUIC_CONFIG_ID_MAX; cfg++) {
                        memset(configs, 0, sizeof(configs));
                        quic_lb_config_entry(&prefix, &configs[cfg]);

                        for (unsigned slot = 0; slot < GRM_GEN_SLOTS; slot++)
                                for (size_t g = 0; g < ELEMENTSOF(gens); g++) {
                                        _cleanup_free_ char *env = NULL;
                                        const char *s;
                                        unsigned k = 0;

                                        ck_assert_int_eq(quic_lb_server_ids_env(&prefix, slot, gens[g], 2, 3, &env), 0);
                                        for (s = env; s; k++) {
                                                const char *end = strchr(s, ':');
                                                size_t n = end ? (size_t) (end - s) : strlen(s), sid_len, len;
                                                uint8_t sid[QUIC_SERVER_ID_MAX], cid[QUIC_CID_MAX];
                                                QuicLbCid d;

                                                ck_assert_int_eq(quic_parse_hex(s, n, sid, QUIC_SERVER_ID_MAX, &sid_len), 0);
                                                len = quic_cid_length(sid_len);
                                                quic_cid_build(cid, len, cfg, sid, sid_len, rnd);
                                                quic_lb_decode_cid(configs, cid, len, 0, &d);
                                                ck_assert_int_eq(d.kind, QUIC_LB_CID_GRM);
                                                ck_assert_uint_eq(d.config_id, cfg);
                                                ck_assert_uint_eq(d.length, len);
                                                ck_assert_uint_eq(d.slot, slot);
                                                ck_assert_uint_eq(d.sock, k % 3);  /* group-major */
                                                ck_assert_uint_eq(d.gen_bits, gens[g] & GRM_QUIC_GEN_MASK);
                                                /* As a long header's DCID, with its length octet. */
                                                quic_lb_decode_cid(configs, cid, len, (unsigned) len, &d);
                                                ck_assert_int_eq(d.kind, QUIC_LB_CID_GRM);
                                                checked++;
                                                s = end ? end + 1 : NULL;
                                        }
                                        ck_assert_uint_eq(k, 6);
                                }
                }
                /* Without the variables: config 0b111, never grm's. */
                {
                        uint8_t cid[QUIC_CID_MAX];
                        QuicLbCid d;

                        for (unsigned cfg = 0; cfg <= QUIC_CONFIG_ID_MAX; cfg++)
                                quic_lb_config_entry(&prefix, &configs[cfg]);
                        quic_cid_build(cid, 16, QUIC_CONFIG_UNROUTABLE, NULL, 0, rnd);
                        quic_lb_decode_cid(configs, cid, 16, 0, &d);
                        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);
                }
        }
        ck_assert_uint_eq(checked, ELEMENTSOF(prefixes) * (QUIC_CONFIG_ID_MAX + 1) * GRM_GEN_SLOTS * ELEMENTSOF(gens) * 6);
}
END_TEST

typedef struct Item {
        QuicTimer timer;
        uint64_t due;  /* the reference: what the heap should hold, UINT64_MAX when disarmed */
} Item;

/* Random arming, re-arming, disarming and popping against a brute-force minimum. */
START_TEST(test_heap) {
        enum { N = 257, OPS = 2000 };
        Item items[N];
        QuicTimerHeap h = {};
        unsigned seed = 12345;

        for (size_t i = 0; i < N; i++)
                items[i] = (Item) { .timer = QUIC_TIMER_INIT, .due = UINT64_MAX };

        for (unsigned op = 0; op < OPS; op++) {
                size_t i = (size_t) rand_r(&seed) % N, n_armed = 0;
                uint64_t min = UINT64_MAX;
                QuicTimer *first;

                if (rand_r(&seed) % 5 == 0)
                        items[i].due = UINT64_MAX;
                else
                        items[i].due = (uint64_t) (rand_r(&seed) % 1000);
                ck_assert_int_eq(quic_timer_set(&h, &items[i].timer, items[i].due), 0);

                if (rand_r(&seed) % 7 == 0 && (first = quic_timer_first(&h))) {
                        Item *it = quic_container_of(first, Item, timer);

                        quic_timer_remove(&h, first);
                        ck_assert_uint_eq(first->index, SIZE_MAX);
                        it->due = UINT64_MAX;
                }

                for (size_t j = 0; j < N; j++)
                        if (items[j].due != UINT64_MAX) {
                                n_armed++;
                                if (items[j].due < min)
                                        min = items[j].due;
                                ck_assert_ptr_eq(h.items[items[j].timer.index], &items[j].timer);
                        } else
                                ck_assert_uint_eq(items[j].timer.index, SIZE_MAX);
                ck_assert_uint_eq(h.n, n_armed);
                first = quic_timer_first(&h);
                if (n_armed == 0)
                        ck_assert_ptr_null(first);
                else
                        ck_assert_uint_eq(first->due, min);
        }
        quic_heap_done(&h);
        ck_assert_uint_eq(h.n, 0);
}
END_TEST

START_TEST(test_timeout_ms) {
        ck_assert_int_eq(quic_timeout_ms(UINT64_MAX, 0), -1);
        ck_assert_int_eq(quic_timeout_ms(5, 10), 0);
        ck_assert_int_eq(quic_timeout_ms(10, 10), 0);
        ck_assert_int_eq(quic_timeout_ms(11, 10), 1);            /* rounded up: never a busy loop */
        ck_assert_int_eq(quic_timeout_ms(2000000 + 10, 10), 2);
        ck_assert_int_eq(quic_timeout_ms(UINT64_MAX - 1, 0), 60000);
}
END_TEST

START_TEST(test_be) {
        uint8_t b[8];

        quic_put_be32(b, 0x47524d51U);
        ck_assert_mem_eq(b, "GRMQ", 4);
        ck_assert_uint_eq(quic_get_be32(b), 0x47524d51U);
        quic_put_be64(b, 0x0102030405060708ULL);
        ck_assert_mem_eq(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
        ck_assert_uint_eq(quic_get_be64(b), 0x0102030405060708ULL);
}
END_TEST

static Suite *quic_util_suite(void) {
        Suite *s = suite_create("quic-util");
        TCase *tc;

        tc = tcase_create("quic_cid_length");
        tcase_add_test(tc, test_cid_length);
        suite_add_tcase(s, tc);

        tc = tcase_create("quic_cid_build");
        tcase_add_test(tc, test_cid_build);
        tcase_add_test(tc, test_echo_cids_decode);
        suite_add_tcase(s, tc);

        tc = tcase_create("quic_parse_hex");
        tcase_add_loop_test(tc, test_parse_hex, 0, ELEMENTSOF(hex_cases));
        suite_add_tcase(s, tc);

        tc = tcase_create("quic_timer");
        tcase_add_test(tc, test_heap);
        tcase_add_test(tc, test_timeout_ms);
        suite_add_tcase(s, tc);

        tc = tcase_create("quic_be");
        tcase_add_test(tc, test_be);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(quic_util_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
