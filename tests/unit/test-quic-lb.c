/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/shared/quic-lb.c: QuicServerIdPrefix= parsing, the layout of grm's 3 octets
 * (slot | socket | generation mod 2^15, big-endian), whole server IDs with a prefix, the
 * GRM_QUIC_SERVER_IDS value, and the decoding of connection IDs the steering program does:
 * every connection ID a server builds by the contract decodes back to its socket, everything
 * else is foreign. Also the wrap-around horizon of the generation bits.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "quic-lb.h"

/* ---- quic_lb_parse_prefix ---- */

static const struct {
        const char *s;
        int ret;
        unsigned len;
        const char *bytes;
} prefix_cases[] = {
        { "",                 0,       0, "" },
        { "00",               0,       1, "\x00" },
        { "c0A8",             0,       2, "\xc0\xa8" },
        { "0123456789abcdef", 0,       8, "\x01\x23\x45\x67\x89\xab\xcd\xef" },
        { "FFFFFFFFFFFFFFFF", 0,       8, "\xff\xff\xff\xff\xff\xff\xff\xff" },
        { "0123456789abcdef01", -E2BIG, 0, "" },
        { "0",                -EINVAL, 0, "" },
        { "abc",              -EINVAL, 0, "" },
        { "0x12",             -EINVAL, 0, "" },
        { "12 34",            -EINVAL, 0, "" },
        { " 12",              -EINVAL, 0, "" },
        { "12:34",            -EINVAL, 0, "" },
        { "gg",               -EINVAL, 0, "" },
        { "-1",               -EINVAL, 0, "" },
        /* Odd length is refused before the length limit. */
        { "0123456789abcdef0", -EINVAL, 0, "" },
};

START_TEST(test_parse_prefix) {
        QuicLbPrefix p = { .len = 99 };
        int r = quic_lb_parse_prefix(prefix_cases[_i].s, &p);

        ck_assert_msg(r == prefix_cases[_i].ret, "\"%s\": %d, expected %d", prefix_cases[_i].s, r,
                      prefix_cases[_i].ret);
        if (r < 0) {
                ck_assert_uint_eq(p.len, 99); /* untouched */
                return;
        }
        ck_assert_uint_eq(p.len, prefix_cases[_i].len);
        ck_assert_mem_eq(p.bytes, prefix_cases[_i].bytes, p.len);
}
END_TEST

START_TEST(test_parse_prefix_misc) {
        QuicLbPrefix p;
        char buf[2 * GRM_QUIC_PREFIX_MAX + 1];

        ck_assert_int_eq(quic_lb_parse_prefix(NULL, &p), -EINVAL);
        ck_assert_int_eq(quic_lb_parse_prefix("00", NULL), -EINVAL);

        ck_assert_int_eq(quic_lb_parse_prefix("C0a80102", &p), 0);
        ck_assert_str_eq(quic_lb_prefix_to_string(&p, buf), "c0a80102");
        ck_assert_int_eq(quic_lb_parse_prefix("", &p), 0);
        ck_assert_str_eq(quic_lb_prefix_to_string(&p, buf), "");
        ck_assert_int_eq(quic_lb_parse_prefix("0123456789abcdef", &p), 0);
        ck_assert_str_eq(quic_lb_prefix_to_string(&p, buf), "0123456789abcdef");
}
END_TEST

/* ---- grm's 3 octets ---- */

START_TEST(test_grm_id_layout) {
        /* slot in the top 4 bits, socket in the next 5, generation mod 2^15 in the low 15. */
        ck_assert_uint_eq(quic_lb_grm_id(0, 0, 0), 0x000000);
        ck_assert_uint_eq(quic_lb_grm_id(5, 0, 1), 0x500001);
        ck_assert_uint_eq(quic_lb_grm_id(5, 1, 1), 0x508001);
        ck_assert_uint_eq(quic_lb_grm_id(15, 31, 0x7fff), 0xffffff);
        ck_assert_uint_eq(quic_lb_grm_id(1, 0, 0), 1U << 20);
        ck_assert_uint_eq(quic_lb_grm_id(0, 1, 0), 1U << 15);
        ck_assert_uint_eq(quic_lb_grm_id(0, 0, 0x8000), 0); /* only 15 bits of the generation */
        ck_assert_uint_eq(quic_lb_grm_id(0, 0, 0x8123), 0x0123);
        ck_assert_uint_eq(quic_lb_grm_id(0, 0, UINT32_MAX), 0x7fff);
        ck_assert_uint_eq(quic_lb_grm_id(GRM_GEN_SLOTS, 0, 1), UINT32_MAX);
        ck_assert_uint_eq(quic_lb_grm_id(0, GRM_MAX_SOCKS_PER_GEN, 1), UINT32_MAX);

        /* Every (slot, socket) pair of one generation gets its own value. */
        for (unsigned slot = 0; slot < GRM_GEN_SLOTS; slot++)
                for (unsigned sock = 0; sock < GRM_MAX_SOCKS_PER_GEN; sock++) {
                        uint32_t id = quic_lb_grm_id(slot, sock, 4242);

                        ck_assert_uint_lt(id, 1U << 24);
                        ck_assert_uint_eq(id >> GRM_QUIC_SLOT_SHIFT, slot);
                        ck_assert_uint_eq((id >> GRM_QUIC_SOCK_SHIFT) & GRM_QUIC_SOCK_MASK, sock);
                        ck_assert_uint_eq(id & GRM_QUIC_GEN_MASK, 4242);
                }
}
END_TEST

/* A slot reused by a later generation matches an older generation's IDs only 2^15 generations
 * later: the wrap-around horizon docs/QUIC.md states. */
START_TEST(test_generation_horizon) {
        static const uint32_t olds[] = { 1, 2, 0x7fff, 0x8000, 123456, UINT32_MAX - 0x8000 };

        for (size_t i = 0; i < ELEMENTSOF(olds); i++) {
                uint32_t old = olds[i], bits = quic_lb_grm_id(0, 0, old) & GRM_QUIC_GEN_MASK;

                ck_assert(quic_lb_gen_matches(old, bits));
                for (uint32_t k = 1; k < (1U << GRM_QUIC_GEN_BITS); k++)
                        ck_assert_msg(!quic_lb_gen_matches(old + k, bits), "gen %u captures gen %u's IDs",
                                      old + k, old);
                ck_assert(quic_lb_gen_matches(old + (1U << GRM_QUIC_GEN_BITS), bits));
        }
        /* A free slot (generation 0) matches nothing, not even the bits 0. */
        ck_assert(!quic_lb_gen_matches(0, 0));
        ck_assert(quic_lb_gen_matches(0x8000, 0));
}
END_TEST

START_TEST(test_server_id) {
        QuicLbPrefix p;
        uint8_t id[QUIC_LB_SERVER_ID_MAX];
        size_t len = 0;

        ck_assert_int_eq(quic_lb_parse_prefix("", &p), 0);
        ck_assert_int_eq(quic_lb_server_id(&p, 5, 1, 1, id, &len), 0);
        ck_assert_uint_eq(len, 3);
        ck_assert_mem_eq(id, "\x50\x80\x01", 3);

        ck_assert_int_eq(quic_lb_parse_prefix("0123456789abcdef", &p), 0);
        ck_assert_int_eq(quic_lb_server_id(&p, 15, 31, 0x7fff, id, &len), 0);
        ck_assert_uint_eq(len, 11);
        ck_assert_mem_eq(id, "\x01\x23\x45\x67\x89\xab\xcd\xef\xff\xff\xff", 11);

        ck_assert_int_eq(quic_lb_server_id(&p, GRM_GEN_SLOTS, 0, 1, id, &len), -EINVAL);
        ck_assert_int_eq(quic_lb_server_id(&p, 0, GRM_MAX_SOCKS_PER_GEN, 1, id, &len), -EINVAL);
}
END_TEST

START_TEST(test_server_ids_env) {
        _cleanup_free_ char *v = NULL;
        QuicLbPrefix p;

        ck_assert_int_eq(quic_lb_parse_prefix("", &p), 0);
        ck_assert_int_eq(quic_lb_server_ids_env(&p, 5, 1, 1, 1, &v), 0);
        ck_assert_str_eq(v, "500001");
        free(v);
        v = NULL;

        /* Two addresses x two sockets, group-major: the k-th socket of each address is socket k. */
        ck_assert_int_eq(quic_lb_parse_prefix("C0A8", &p), 0);
        ck_assert_int_eq(quic_lb_server_ids_env(&p, 11, 40000, 2, 2, &v), 0);
        /* 40000 mod 32768 = 7232 = 0x1c40 */
        ck_assert_str_eq(v, "c0a8b01c40:c0a8b09c40:c0a8b01c40:c0a8b09c40");
        free(v);
        v = NULL;

        /* The longest value: 32 addresses x 32 sockets with an 8-octet prefix. */
        ck_assert_int_eq(quic_lb_parse_prefix("ffffffffffffffff", &p), 0);
        ck_assert_int_eq(quic_lb_server_ids_env(&p, 15, 7, GRM_MAX_GROUPS, GRM_MAX_SOCKS_PER_GEN, &v), 0);
        ck_assert_uint_eq(strlen(v), GRM_MAX_GROUPS * GRM_MAX_SOCKS_PER_GEN * 23 - 1);
        free(v);
        v = NULL;

        ck_assert_int_eq(quic_lb_server_ids_env(&p, 0, 1, 0, 1, &v), -EINVAL);
        ck_assert_int_eq(quic_lb_server_ids_env(&p, 0, 1, 1, 0, &v), -EINVAL);
        ck_assert_int_eq(quic_lb_server_ids_env(&p, GRM_GEN_SLOTS, 1, 1, 1, &v), -EINVAL);
        ck_assert_int_eq(quic_lb_server_ids_env(&p, 0, 1, 1, GRM_MAX_SOCKS_PER_GEN + 1, &v), -EINVAL);
        ck_assert_int_eq(quic_lb_server_ids_env(&p, 0, 1, GRM_MAX_GROUPS + 1, 1, &v), -EINVAL);
        ck_assert_ptr_null(v);
}
END_TEST

/* ---- the quic_configs entry ---- */

START_TEST(test_config_entry) {
        struct grm_quic_config e;
        QuicLbPrefix p;

        ck_assert_int_eq(quic_lb_parse_prefix("", &p), 0);
        quic_lb_config_entry(&p, &e);
        ck_assert_uint_eq(e.active, 1);
        ck_assert_uint_eq(e.prefix_len, 0);
        ck_assert_uint_eq(e.prefix, 0);
        ck_assert_uint_eq(e.prefix_mask, 0);

        ck_assert_int_eq(quic_lb_parse_prefix("c0a801", &p), 0);
        quic_lb_config_entry(&p, &e);
        ck_assert_uint_eq(e.prefix_len, 3);
        ck_assert_uint_eq(e.prefix, 0xc0a8010000000000ULL);
        ck_assert_uint_eq(e.prefix_mask, 0xffffff0000000000ULL);

        ck_assert_int_eq(quic_lb_parse_prefix("0123456789abcdef", &p), 0);
        quic_lb_config_entry(&p, &e);
        ck_assert_uint_eq(e.prefix, 0x0123456789abcdefULL);
        ck_assert_uint_eq(e.prefix_mask, UINT64_MAX);
}
END_TEST

/* ---- decoding connection IDs ---- */

/* A connection ID built the way docs/QUIC.md tells servers to: octet 0, the server ID, random. */
static size_t build_cid(unsigned config_id, unsigned length, const QuicLbPrefix *p, unsigned slot,
                        unsigned sock, uint32_t gen, uint8_t cid[GRM_QUIC_CID_MAX]) {
        size_t len;

        memset(cid, 0xa5, GRM_QUIC_CID_MAX);
        cid[0] = (uint8_t) (config_id << 5 | (length - 1));
        ck_assert_int_eq(quic_lb_server_id(p, slot, sock, gen, cid + 1, &len), 0);
        return length;
}

static void configs_with(struct grm_quic_config configs[GRM_QUIC_CONFIG_IDS], unsigned config_id,
                         const QuicLbPrefix *p) {
        memset(configs, 0, sizeof(struct grm_quic_config) * GRM_QUIC_CONFIG_IDS);
        quic_lb_config_entry(p, &configs[config_id]);
}

START_TEST(test_decode_round_trip) {
        static const char *const prefixes[] = { "", "aa", "0123456789abcdef" };
        struct grm_quic_config configs[GRM_QUIC_CONFIG_IDS];
        uint8_t cid[GRM_QUIC_CID_MAX];
        QuicLbPrefix p;
        QuicLbCid d;

        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
                ck_assert_int_eq(quic_lb_parse_prefix(prefixes[i], &p), 0);
                for (unsigned config_id = 0; config_id <= QUIC_LB_CONFIG_ID_MAX; config_id++) {
                        configs_with(configs, config_id, &p);
                        for (unsigned length = p.len + 8; length <= GRM_QUIC_CID_MAX; length++)
                                for (unsigned slot = 0; slot < GRM_GEN_SLOTS; slot += 5)
                                        for (unsigned sock = 0; sock < GRM_MAX_SOCKS_PER_GEN; sock += 7) {
                                                size_t n = build_cid(config_id, length, &p, slot, sock, 70000, cid);

                                                /* short header: length not on the wire */
                                                quic_lb_decode_cid(configs, cid, n, 0, &d);
                                                ck_assert_int_eq(d.kind, QUIC_LB_CID_GRM);
                                                ck_assert_uint_eq(d.config_id, config_id);
                                                ck_assert_uint_eq(d.length, length);
                                                ck_assert_uint_eq(d.slot, slot);
                                                ck_assert_uint_eq(d.sock, sock);
                                                ck_assert_uint_eq(d.gen_bits, 70000 & GRM_QUIC_GEN_MASK);
                                                /* long header whose length octet agrees */
                                                quic_lb_decode_cid(configs, cid, n, length, &d);
                                                ck_assert_int_eq(d.kind, QUIC_LB_CID_GRM);
                                                ck_assert_uint_eq(d.slot, slot);
                                        }
                }
        }
}
END_TEST

START_TEST(test_decode_foreign) {
        struct grm_quic_config configs[GRM_QUIC_CONFIG_IDS];
        uint8_t cid[GRM_QUIC_CID_MAX];
        QuicLbPrefix p, other;
        QuicLbCid d;
        size_t n;

        ck_assert_int_eq(quic_lb_parse_prefix("c0a8", &p), 0);
        configs_with(configs, 2, &p);
        n = build_cid(2, 12, &p, 3, 1, 9, cid);
        quic_lb_decode_cid(configs, cid, n, 0, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_GRM);

        /* Config id 0b111: QUIC-LB's unroutable, never grm's, even if the table had it. */
        configs[GRM_QUIC_CONFIG_ID_UNROUTABLE] = configs[2];
        cid[0] = (uint8_t) (7 << 5 | 11);
        quic_lb_decode_cid(configs, cid, n, 0, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);
        ck_assert_uint_eq(d.config_id, 7);

        /* A config id grm never gave out. */
        cid[0] = (uint8_t) (3 << 5 | 11);
        quic_lb_decode_cid(configs, cid, n, 0, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);

        /* Length bits: shorter than 8, shorter than prefix + 3 + 4, longer than 20. */
        cid[0] = (uint8_t) (2 << 5 | 6);
        quic_lb_decode_cid(configs, cid, n, 0, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);
        ck_assert_uint_eq(d.length, 7);
        cid[0] = (uint8_t) (2 << 5 | 8); /* 9 octets: 1 + 2 + 3 leaves only 3 random octets */
        quic_lb_decode_cid(configs, cid, n, 0, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);
        cid[0] = (uint8_t) (2 << 5 | 9); /* 10 octets: just enough */
        quic_lb_decode_cid(configs, cid, n, 0, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_GRM);
        cid[0] = (uint8_t) (2 << 5 | 20); /* 21 octets */
        quic_lb_decode_cid(configs, cid, 64, 0, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);
        cid[0] = (uint8_t) (2 << 5 | 31);
        quic_lb_decode_cid(configs, cid, 64, 0, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);
        cid[0] = (uint8_t) (2 << 5 | 11);

        /* A long header's length octet must agree with octet 0. */
        quic_lb_decode_cid(configs, cid, n, 12, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_GRM);
        quic_lb_decode_cid(configs, cid, n, 13, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);
        quic_lb_decode_cid(configs, cid, n, 8, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);

        /* The whole CID must be in the datagram. */
        quic_lb_decode_cid(configs, cid, n - 1, 0, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);
        quic_lb_decode_cid(configs, cid, 0, 0, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);

        /* Another prefix (another host's server ID, for an upstream load balancer). */
        ck_assert_int_eq(quic_lb_parse_prefix("c0a9", &other), 0);
        n = build_cid(2, 12, &other, 3, 1, 9, cid);
        quic_lb_decode_cid(configs, cid, n, 0, &d);
        ck_assert_int_eq(d.kind, QUIC_LB_CID_FOREIGN);
}
END_TEST

static Suite *quic_lb_suite(void) {
        Suite *s = suite_create("quic-lb");
        TCase *tc;

        tc = tcase_create("parse_prefix");
        tcase_add_loop_test(tc, test_parse_prefix, 0, (int) ELEMENTSOF(prefix_cases));
        tcase_add_test(tc, test_parse_prefix_misc);
        suite_add_tcase(s, tc);

        tc = tcase_create("grm_id");
        tcase_add_test(tc, test_grm_id_layout);
        tcase_add_test(tc, test_generation_horizon);
        suite_add_tcase(s, tc);

        tc = tcase_create("server_id");
        tcase_add_test(tc, test_server_id);
        tcase_add_test(tc, test_server_ids_env);
        suite_add_tcase(s, tc);

        tc = tcase_create("config_entry");
        tcase_add_test(tc, test_config_entry);
        suite_add_tcase(s, tc);

        tc = tcase_create("decode_cid");
        tcase_add_test(tc, test_decode_round_trip);
        tcase_add_test(tc, test_decode_foreign);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(quic_lb_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
