/* SPDX-License-Identifier: MIT */
/*
 * Server IDs for the quic dissector (see quic-lb.h, bpf/steer-api.h and docs/QUIC.md).
 *
 * The encoding of grm's 3 octets, slot (4 bits) | socket (5 bits) | generation mod 2^15, is what
 * lets the program go from a connection ID to a socket with two array lookups and no per-
 * connection state. The generation bits are compared with the generation the slot holds now: a
 * connection ID of generation G names slot s; a later generation G' reusing s matches it only if
 * G' = G + k * 2^15 (generation numbers only grow, one per restart attempt), so 32,768 restarts
 * must pass before a reused slot can capture an ID of a generation that used it earlier. Live
 * generations never collide at all: they hold different slots.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "quic-lb.h"

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int quic_lb_parse_prefix(const char *s, QuicLbPrefix *ret) {
        QuicLbPrefix p = {};
        size_t n;

        if (!s || !ret)
                return -EINVAL;
        n = strlen(s);
        if (n % 2 != 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (unhex(s[i]) < 0)
                        return -EINVAL;
        if (n / 2 > GRM_QUIC_PREFIX_MAX)
                return -E2BIG;
        for (size_t i = 0; i < n / 2; i++)
                p.bytes[i] = (uint8_t) (unhex(s[2 * i]) << 4 | unhex(s[2 * i + 1]));
        p.len = (uint8_t) (n / 2);
        *ret = p;
        return 0;
}

static void hex_octets(const uint8_t *b, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[b[i] >> 4];
                out[2 * i + 1] = digits[b[i] & 0xf];
        }
        out[2 * n] = 0;
}

const char *quic_lb_prefix_to_string(const QuicLbPrefix *p, char buf[static 2 * GRM_QUIC_PREFIX_MAX + 1]) {
        hex_octets(p->bytes, p->len > GRM_QUIC_PREFIX_MAX ? GRM_QUIC_PREFIX_MAX : p->len, buf);
        return buf;
}

uint32_t quic_lb_grm_id(unsigned slot, unsigned sock, uint32_t gen) {
        if (slot >= GRM_GEN_SLOTS || sock >= GRM_MAX_SOCKS_PER_GEN)
                return UINT32_MAX;
        return (uint32_t) slot << GRM_QUIC_SLOT_SHIFT | (uint32_t) sock << GRM_QUIC_SOCK_SHIFT |
               (gen & GRM_QUIC_GEN_MASK);
}

int quic_lb_server_id(const QuicLbPrefix *prefix, unsigned slot, unsigned sock, uint32_t gen,
                      uint8_t *ret, size_t *ret_len) {
        uint32_t id = quic_lb_grm_id(slot, sock, gen);

        if (id == UINT32_MAX || prefix->len > GRM_QUIC_PREFIX_MAX)
                return -EINVAL;
        memcpy(ret, prefix->bytes, prefix->len);
        ret[prefix->len] = (uint8_t) (id >> 16);
        ret[prefix->len + 1] = (uint8_t) (id >> 8);
        ret[prefix->len + 2] = (uint8_t) id;
        *ret_len = prefix->len + GRM_QUIC_GRM_OCTETS;
        return 0;
}

int quic_lb_server_ids_env(const QuicLbPrefix *prefix, unsigned slot, uint32_t gen,
                           unsigned n_groups, unsigned per_group, char **ret) {
        size_t n = (size_t) n_groups * per_group, each = 2 * (prefix->len + GRM_QUIC_GRM_OCTETS) + 1;
        char *s, *p;

        if (n == 0 || per_group > GRM_MAX_SOCKS_PER_GEN || n_groups > GRM_MAX_GROUPS || slot >= GRM_GEN_SLOTS)
                return -EINVAL;
        s = malloc(n * each);
        if (!s)
                return -ENOMEM;
        p = s;
        for (unsigned g = 0; g < n_groups; g++)
                for (unsigned k = 0; k < per_group; k++) {
                        uint8_t id[QUIC_LB_SERVER_ID_MAX];
                        size_t len;
                        int r = quic_lb_server_id(prefix, slot, k, gen, id, &len);

                        if (r < 0) {
                                free(s);
                                return r;
                        }
                        if (p != s)
                                *p++ = ':';
                        hex_octets(id, len, p);
                        p += 2 * len;
                }
        *ret = s;
        return 0;
}

void quic_lb_config_entry(const QuicLbPrefix *prefix, struct grm_quic_config *ret) {
        *ret = (struct grm_quic_config) { .active = 1, .prefix_len = prefix->len };
        for (unsigned i = 0; i < prefix->len && i < GRM_QUIC_PREFIX_MAX; i++) {
                ret->prefix |= (uint64_t) prefix->bytes[i] << (56 - 8 * i);
                ret->prefix_mask |= (uint64_t) 0xff << (56 - 8 * i);
        }
}

void quic_lb_decode_cid(const struct grm_quic_config configs[GRM_QUIC_CONFIG_IDS], const uint8_t *cid,
                        size_t avail, unsigned wire_len, QuicLbCid *ret) {
        const struct grm_quic_config *c;
        unsigned config_id, length, plen;
        uint32_t id;

        *ret = (QuicLbCid) { .kind = QUIC_LB_CID_FOREIGN };
        if (avail < 1)
                return;
        config_id = cid[0] >> 5;
        length = (cid[0] & 0x1fU) + 1;
        ret->config_id = config_id;
        ret->length = length;
        if (config_id == GRM_QUIC_CONFIG_ID_UNROUTABLE)
                return;
        c = &configs[config_id];
        if (!c->active || c->prefix_len > GRM_QUIC_PREFIX_MAX)
                return;
        plen = c->prefix_len;
        if (length < GRM_QUIC_CID_MIN || length > GRM_QUIC_CID_MAX ||
            length < 1 + plen + GRM_QUIC_GRM_OCTETS + GRM_QUIC_RANDOM_MIN)
                return;
        if (wire_len != 0 && wire_len != length)
                return;
        if (avail < length)
                return;
        for (unsigned i = 0; i < plen; i++)
                if (cid[1 + i] != (uint8_t) (c->prefix >> (56 - 8 * i)))
                        return;
        id = (uint32_t) cid[1 + plen] << 16 | (uint32_t) cid[2 + plen] << 8 | cid[3 + plen];
        ret->kind = QUIC_LB_CID_GRM;
        ret->slot = id >> GRM_QUIC_SLOT_SHIFT;
        ret->sock = (id >> GRM_QUIC_SOCK_SHIFT) & GRM_QUIC_SOCK_MASK;
        ret->gen_bits = id & GRM_QUIC_GEN_MASK;
}
