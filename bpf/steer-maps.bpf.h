/* SPDX-License-Identifier: (MIT OR GPL-2.0-only) */
/*
 * The maps every steering program shares (bpf/steer.bpf.c for UDP, bpf/steer-tcp.bpf.c for TCP),
 * defined once here so that the two objects cannot disagree: grmd creates them with the first
 * program it loads and hands the same maps to every later one (bpf_map__reuse_fd, which refuses
 * a map whose definition differs). Both objects declare every map, used or not, so that whichever
 * loads first creates the whole set (the vault hands all of them to the next grmd).
 *
 * Include after linux/bpf.h, bpf/bpf_helpers.h and steer-api.h.
 */
#pragma once

/* Sockets of every live generation, laid out as in steer-api.h. Written by grmd. */
struct {
        __uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
        __uint(max_entries, GRM_SOCKARRAY_SIZE);
        __type(key, __u32);
        __type(value, __u64);
} sockets SEC(".maps");

/* Working and pending slot, dissector, flow timeout (one entry). Written by grmd. */
struct {
        __uint(type, BPF_MAP_TYPE_ARRAY);
        __uint(max_entries, 1);
        __type(key, __u32);
        __type(value, struct grm_config);
} config SEC(".maps");

/* Generation number and socket count of each slot. Written by grmd. */
struct {
        __uint(type, BPF_MAP_TYPE_ARRAY);
        __uint(max_entries, GRM_GEN_SLOTS);
        __type(key, __u32);
        __type(value, struct grm_slot);
} slots SEC(".maps");

/* Flow table: flow entries, GRM_FLOW_WAYS consecutive ones a bucket (layout, hash and rules in
 * steer-api.h). Mmapable only for its layout: the kernel then starts the values on a page, so
 * every bucket is one cache line (otherwise they start 16 bytes into one and span two). Written
 * by the UDP program; grmd sizes it before load and only reads it (status). */
struct {
        __uint(type, BPF_MAP_TYPE_ARRAY);
        __uint(max_entries, 65536);
        __uint(map_flags, BPF_F_MMAPABLE);
        __type(key, __u32);
        __type(value, struct grm_flow_entry);
} flows SEC(".maps");

/* New flow entries per source (IPv4 address or IPv6 /64, hashed) in the current quota window.
 * Written by the UDP program. */
struct {
        __uint(type, BPF_MAP_TYPE_ARRAY);
        __uint(max_entries, GRM_FLOW_SOURCES);
        __type(key, __u32);
        __type(value, struct grm_flow_source);
} flow_sources SEC(".maps");

/* Per-CPU verdict counters, indexed by enum grm_stat. Written by both programs. */
struct {
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
        __uint(max_entries, _GRM_STAT_MAX);
        __type(key, __u32);
        __type(value, __u64);
} stats SEC(".maps");

/* Per-CPU datagrams steered to each slot. Written by the UDP program, reset by grmd per generation. */
struct {
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
        __uint(max_entries, GRM_GEN_SLOTS);
        __type(key, __u32);
        __type(value, __u64);
} slot_packets SEC(".maps");

/* Per-CPU TCP connections steered to each slot and requests migrated into it. Written by the TCP
 * program, reset by grmd per generation. */
struct {
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
        __uint(max_entries, GRM_GEN_SLOTS);
        __type(key, __u32);
        __type(value, struct grm_slot_tcp);
} slot_tcp SEC(".maps");

/* Dissector quic: the prefix of each QUIC-LB config id grm gave out. Written by grmd. */
struct {
        __uint(type, BPF_MAP_TYPE_ARRAY);
        __uint(max_entries, GRM_QUIC_CONFIG_IDS);
        __type(key, __u32);
        __type(value, struct grm_quic_config);
} quic_configs SEC(".maps");

/* Dissector quic: the first flight of each handshake, client-chosen DCID (per group) -> the
 * socket its first Initial went to, so that every Initial and 0-RTT datagram of the handshake
 * reaches the same generation even if the client's port changes. Written by the UDP program, only
 * for Initial datagrams of at least GRM_QUIC_INITIAL_MIN bytes; entries live
 * GRM_QUIC_FIRST_FLIGHT_NS. grmd sizes it before load. LRU, so old handshakes make room. */
struct {
        __uint(type, BPF_MAP_TYPE_LRU_HASH);
        __uint(max_entries, 16384);
        __type(key, struct grm_first_flight_key);
        __type(value, struct grm_flow_value);
} first_flights SEC(".maps");

/* The nonce of the last steering probe (struct grm_probe) each group's program saw. Written by
 * the UDP program, read by grmd. */
struct {
        __uint(type, BPF_MAP_TYPE_ARRAY);
        __uint(max_entries, GRM_MAX_GROUPS);
        __type(key, __u32);
        __type(value, __u64);
} probes SEC(".maps");
