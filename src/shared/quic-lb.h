/* SPDX-License-Identifier: MIT */
/*
 * Server IDs for the quic dissector: the QUIC-LB plaintext server ID every socket of every
 * generation gets (QuicServerIdPrefix= followed by grm's 3 octets), how it is handed to an
 * instance (GRM_QUIC_SERVER_IDS, GRM_QUIC_CONFIG_ID), and the decoding the steering program does
 * on a connection ID, written once more in C so that it can be tested without a kernel. The
 * layout is in bpf/steer-api.h; docs/QUIC.md is the contract for server authors.
 *
 * Library code: does not log.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/types.h> /* the __u32 types steer-api.h expects */
#include "steer-api.h"

#define QUIC_LB_SERVER_ID_MAX    (GRM_QUIC_PREFIX_MAX + GRM_QUIC_GRM_OCTETS)
/* Hex digits of the longest server ID, plus a NUL. */
#define QUIC_LB_SERVER_ID_HEX_MAX (2 * QUIC_LB_SERVER_ID_MAX + 1)
#define QUIC_LB_CONFIG_ID_MAX    6U /* 0b111 is QUIC-LB's "unroutable" */

typedef struct QuicLbPrefix {
        uint8_t len;                            /* 0..GRM_QUIC_PREFIX_MAX */
        uint8_t bytes[GRM_QUIC_PREFIX_MAX];
} QuicLbPrefix;

/**
 * quic_lb_parse_prefix() - parse QuicServerIdPrefix=: hex digits (either case), two per octet,
 * 0 to 8 octets; "" is the empty prefix.
 * Return: 0, -EINVAL (not hex, odd number of digits), -E2BIG (more than 8 octets).
 */
int quic_lb_parse_prefix(const char *s, QuicLbPrefix *ret);

/* Lowercase hex of the prefix into buf (2 * 8 digits + NUL at most). Returns buf. */
const char *quic_lb_prefix_to_string(const QuicLbPrefix *p, char buf[static 2 * GRM_QUIC_PREFIX_MAX + 1]);

/**
 * quic_lb_grm_id() - grm's 3 octets of a server ID as a 24-bit number (big-endian on the wire).
 * @slot: 0..GRM_GEN_SLOTS-1
 * @sock: the socket's number within its generation and group, 0..GRM_MAX_SOCKS_PER_GEN-1
 * @gen: the generation number; only its low GRM_QUIC_GEN_BITS bits are kept
 * Return: the number, or UINT32_MAX if slot or sock is out of range.
 */
uint32_t quic_lb_grm_id(unsigned slot, unsigned sock, uint32_t gen);

/**
 * quic_lb_server_id() - the server ID of one socket: the prefix, then grm's 3 octets.
 * @ret: at least QUIC_LB_SERVER_ID_MAX octets
 * @ret_len: the server ID's length (prefix length + 3)
 * Return: 0, -EINVAL for a slot or socket out of range.
 */
int quic_lb_server_id(const QuicLbPrefix *prefix, unsigned slot, unsigned sock, uint32_t gen,
                      uint8_t *ret, size_t *ret_len);

/**
 * quic_lb_server_ids_env() - the value of GRM_QUIC_SERVER_IDS for an instance: one server ID
 * per LISTEN_FDS socket in order (group-major: n_groups groups of per_group sockets each; the
 * k-th socket of every group has socket number k), lowercase hex, ':'-separated.
 * @ret: malloc'ed string
 * Return: 0, -EINVAL (slot or per_group out of range, no sockets), -ENOMEM.
 */
int quic_lb_server_ids_env(const QuicLbPrefix *prefix, unsigned slot, uint32_t gen,
                           unsigned n_groups, unsigned per_group, char **ret);

/* The quic_configs map entry for a config id whose generations use this prefix. */
void quic_lb_config_entry(const QuicLbPrefix *prefix, struct grm_quic_config *ret);

/* What the steering program makes of a connection ID (the DCID of a datagram). */
typedef enum QuicLbCidKind {
        QUIC_LB_CID_FOREIGN,  /* not grm's shape: the server ignores grm's variables */
        QUIC_LB_CID_GRM,      /* grm's shape: slot, sock and generation bits are valid */
} QuicLbCidKind;

typedef struct QuicLbCid {
        QuicLbCidKind kind;
        unsigned config_id;
        unsigned length;      /* the CID length octet 0 announces */
        unsigned slot;
        unsigned sock;
        uint32_t gen_bits;    /* generation mod 2^GRM_QUIC_GEN_BITS */
} QuicLbCid;

/**
 * quic_lb_decode_cid() - decode a connection ID the way the steering program does.
 * @configs: the quic_configs map's entries (GRM_QUIC_CONFIG_IDS of them)
 * @cid: the connection ID's first octets (the DCID of a short header starts at octet 1 of the
 *       packet, a long header's at octet 6)
 * @avail: octets of the datagram from cid on
 * @wire_len: for a long header, the DCID length its length octet announces; 0 for a short header
 *            (whose CID length is not on the wire)
 * Grm's shape: config id not 0b111 and active in configs; announced length 8..20, at least
 * prefix + 3 + 4 octets, equal to wire_len when given, all within the datagram; the prefix
 * octet for octet.
 * Anything else is QUIC_LB_CID_FOREIGN.
 */
void quic_lb_decode_cid(const struct grm_quic_config configs[GRM_QUIC_CONFIG_IDS], const uint8_t *cid,
                        size_t avail, unsigned wire_len, QuicLbCid *ret);

/* Whether a slot holding generation slot_gen (0: free) is the one a decoded CID names. */
static inline bool quic_lb_gen_matches(uint32_t slot_gen, uint32_t gen_bits) {
        return slot_gen != 0 && (slot_gen & GRM_QUIC_GEN_MASK) == gen_bits;
}
