// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
/*
 * Baselines of the steering benchmarks (tools/bench/grm-bench-steer), not shipped. Each is an
 * sk_reuseport program attached to a reuseport group built like grm's; their run times under
 * kernel.bpf_stats_enabled, under the same load in the same run, put grm's program in proportion:
 *
 *   grm_empty    returns SK_PASS: the kernel picks the socket by its own hash. The fixed cost of
 *                running any sk_reuseport program (the call and the clock reads around it). This
 *                is the baseline the targets are stated against.
 *   grm_select   selects one socket from a socket array: the least any program that steers does.
 *   grm_minflow  reads the remote address and port, looks them up in a hash table of flows (made
 *                on a miss) and selects the socket the entry names: the least a program that
 *                remembers flows does (no LRU, no timestamps, no generations, no counters).
 *
 * and, in minflow's place (grm-bench-steer --baseline), "select" plus one more step, for what
 * that step costs a packet (tools/bench/step-cost):
 *
 *   grm_address  reads the remote IPv4 address (bpf_skb_load_bytes_relative(), the only way to
 *                the IP header from an sk_reuseport program; grm's flow key needs it);
 *   grm_clock    reads bpf_ktime_get_coarse_ns() (the clock of grm's flow entries);
 *   grm_jiffies  reads bpf_jiffies64() (which the verifier inlines into a load on x86-64).
 *
 * The benchmark puts the select group's socket at index 0 of bench_sockets and the minflow
 * group's at index 1, and sizes bench_flows like grm's flow table before load.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/types.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "steer-api.h"

#define BENCH_INDEX_SELECT  0U
#define BENCH_INDEX_MINFLOW 1U

/* The select and minflow groups' sockets. Written by the benchmark. */
struct {
        __uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
        __uint(max_entries, 2);
        __type(key, __u32);
        __type(value, __u64);
} bench_sockets SEC(".maps");

/* Remote address and port -> socket index, like grm's flow table keys. Written by grm_minflow;
 * sized by the benchmark before load. */
struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(max_entries, 65536);
        __type(key, struct grm_flow_key);
        __type(value, __u32);
} bench_flows SEC(".maps");

SEC("sk_reuseport")
int grm_empty(struct sk_reuseport_md *ctx) {
        return SK_PASS;
}

/* Selects the socket at index of bench_sockets. */
static __always_inline int select_at(struct sk_reuseport_md *ctx, __u32 index) {
        if (bpf_sk_select_reuseport(ctx, &bench_sockets, &index, 0) < 0)
                return SK_DROP;
        return SK_PASS;
}

SEC("sk_reuseport")
int grm_select(struct sk_reuseport_md *ctx) {
        return select_at(ctx, BENCH_INDEX_SELECT);
}

SEC("sk_reuseport")
int grm_minflow(struct sk_reuseport_md *ctx) {
        struct grm_flow_key key = {};
        __u32 index = BENCH_INDEX_MINFLOW, *owner;
        __u16 sport;

        if (ctx->eth_protocol != bpf_htons(ETH_P_IP))
                return SK_DROP;
        if (bpf_skb_load_bytes(ctx, 0, &sport, sizeof(sport)) < 0 ||
            bpf_skb_load_bytes_relative(ctx, 12, &key.addr[3], 4, BPF_HDR_START_NET) < 0)
                return SK_DROP;
        key.port = sport;

        owner = bpf_map_lookup_elem(&bench_flows, &key);
        if (owner)
                index = *owner;
        else
                (void) bpf_map_update_elem(&bench_flows, &key, &index, BPF_ANY);
        if (bpf_sk_select_reuseport(ctx, &bench_sockets, &index, 0) < 0)
                return SK_DROP;
        return SK_PASS;
}

/* Keeps the compiler from dropping a value the program does not use otherwise. */
#define KEEP(x) asm volatile("" : "+r"(x))

/* The steps run in minflow's group: its socket. */
static __always_inline int select_only(struct sk_reuseport_md *ctx) {
        return select_at(ctx, BENCH_INDEX_MINFLOW);
}

SEC("sk_reuseport")
int grm_address(struct sk_reuseport_md *ctx) {
        __u32 addr;

        if (bpf_skb_load_bytes_relative(ctx, 12, &addr, sizeof(addr), BPF_HDR_START_NET) < 0)
                return SK_DROP;
        KEEP(addr);
        return select_only(ctx);
}

SEC("sk_reuseport")
int grm_clock(struct sk_reuseport_md *ctx) {
        __u64 t = bpf_ktime_get_coarse_ns();

        KEEP(t);
        return select_only(ctx);
}

SEC("sk_reuseport")
int grm_jiffies(struct sk_reuseport_md *ctx) {
        __u64 t = bpf_jiffies64();

        KEEP(t);
        return select_only(ctx);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
