// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
/*
 * grm's steering program: an sk_reuseport program attached to every reuseport group grmd
 * manages. It picks, for each incoming datagram, the socket of the generation that should get it:
 * new flows go to the working generation, existing flows stay on the socket that owns them.
 *
 * One program instance is loaded per group (the group index is a read-only global set before
 * load); every instance shares the maps below, which grmd creates with the first instance.
 *
 * Invariants:
 *  - no packet is left to the kernel's default hash over the group: it would hand new flows to
 *    draining instances, or to the original socket nobody reads. A packet no socket can take is
 *    dropped and counted;
 *  - an existing flow keeps its socket for as long as its generation holds its slot and the socket
 *    is open, whatever the working and pending slots are;
 *  - new flows go to the working generation; with none, to the pending (starting) one; with
 *    neither, to the newest live generation that still has a socket (it then owns the flow);
 *  - every run ends in finish(), which bumps exactly one per-CPU verdict counter.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/types.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "steer-api.h"

/* Index of the reuseport group this instance is attached to. Set by grmd before load. */
const volatile __u32 group_id = 0;

#include "steer-maps.bpf.h"

static __always_inline int finish(enum grm_stat stat, __u32 slot, int action) {
        __u32 key = stat;
        __u64 *counter = bpf_map_lookup_elem(&stats, &key);
        if (counter)
                *counter += 1;
        if (slot < GRM_GEN_SLOTS) {
                counter = bpf_map_lookup_elem(&slot_packets, &slot);
                if (counter)
                        *counter += 1;
        }
        return action;
}

static __always_inline __u32 sock_index(__u32 slot, __u32 sock) {
        return (group_id * GRM_GEN_SLOTS + slot) * GRM_MAX_SOCKS_PER_GEN + sock;
}

/* Selects one of the sockets of a slot, spread by the packet's flow hash. On success stores the
 * chosen index in *ret_index. */
static __always_inline long select_in_slot(struct sk_reuseport_md *ctx, __u32 slot,
                                           __u32 *ret_index) {
        struct grm_slot *s;
        __u32 nsocks, index;

        if (slot >= GRM_GEN_SLOTS)
                return -1;
        s = bpf_map_lookup_elem(&slots, &slot);
        if (!s || s->gen == 0)
                return -1;
        nsocks = s->nsocks;
        if (nsocks == 0 || nsocks > GRM_MAX_SOCKS_PER_GEN)
                return -1;

        /* hash * nsocks / 2^32: the same spread as hash % nsocks without a division. */
        index = sock_index(slot, (__u32) (((__u64) ctx->hash * nsocks) >> 32));
        *ret_index = index;
        return bpf_sk_select_reuseport(ctx, &sockets, &index, 0);
}

/* Reads the remote address and port into key. Returns 0, or -1 if the packet is too short. */
static __always_inline int read_remote(struct sk_reuseport_md *ctx, struct grm_flow_key *key) {
        __u16 sport;

        if (bpf_skb_load_bytes(ctx, 0, &sport, sizeof(sport)) < 0)
                return -1;
        key->port = sport;

        if (ctx->eth_protocol == bpf_htons(ETH_P_IP)) {
                /* saddr at offset 12 of the IPv4 header */
                if (bpf_skb_load_bytes_relative(ctx, 12, &key->addr[3], 4, BPF_HDR_START_NET) < 0)
                        return -1;
                key->addr[0] = 0;
                key->addr[1] = 0;
                key->addr[2] = bpf_htonl(0x0000ffff);
        } else if (ctx->eth_protocol == bpf_htons(ETH_P_IPV6)) {
                /* saddr at offset 8 of the IPv6 header */
                if (bpf_skb_load_bytes_relative(ctx, 8, key->addr, 16, BPF_HDR_START_NET) < 0)
                        return -1;
        } else
                return -1;
        return 0;
}

/* Selects a socket of the newest generation (highest number) whose slot is live and still has
 * a socket to take the packet: where new flows go while nothing works and nothing is pending
 * (the working generation crashed; its replacement is not started yet), so that a healthy older
 * generation keeps serving. A failed selection leaves the previous choice in place, and a slot is
 * only tried if it is newer than the best one so far, so the last successful call is the newest.
 * Returns the chosen slot, or GRM_SLOT_NONE. */
static __always_inline __u32 select_newest_live(struct sk_reuseport_md *ctx, __u32 *ret_gen,
                                                __u32 *ret_index) {
        __u32 best = GRM_SLOT_NONE, best_gen = 0;

        for (__u32 slot = 0; slot < GRM_GEN_SLOTS; slot++) {
                /* A copy for the helpers: the loop counter itself stays out of the stack, where
                 * the verifier could not tell one iteration from the next. */
                __u32 key = slot, index;
                struct grm_slot *s = bpf_map_lookup_elem(&slots, &key);

                if (!s || s->gen <= best_gen)
                        continue;
                if (select_in_slot(ctx, slot, &index) == 0) {
                        best = slot;
                        best_gen = s->gen;
                        *ret_index = index;
                }
        }
        *ret_gen = best_gen;
        return best;
}

SEC("sk_reuseport")
int grm_steer(struct sk_reuseport_md *ctx) {
        struct grm_flow_key key = { .group = group_id };
        struct grm_flow_value *flow = NULL, new_flow = {};
        enum grm_stat verdict = GRM_STAT_FLOW_CREATED;
        struct grm_config *cfg;
        __u32 zero = 0, working, target, index = 0;
        int keyed = 0;
        __u64 now = 0;

        cfg = bpf_map_lookup_elem(&config, &zero);
        if (!cfg)
                return finish(GRM_STAT_ERR_CONFIG, GRM_SLOT_NONE, SK_DROP);
        working = cfg->working_slot;

        /* Existing flows first, whatever the working and pending slots say: a flow keeps its
         * socket while its generation lives, also while no generation works (the working one
         * crashed, its replacement is starting). */
        if (cfg->dissector == GRM_DISSECTOR_FLOW) {
                if (read_remote(ctx, &key) < 0)
                        verdict = GRM_STAT_ERR_PARSE;
                else {
                        keyed = 1;
                        now = bpf_ktime_get_coarse_ns();
                        flow = bpf_map_lookup_elem(&flows, &key);
                }
                if (keyed && flow) {
                        __u32 owner = flow->index;
                        __u32 slot = (owner / GRM_MAX_SOCKS_PER_GEN) % GRM_GEN_SLOTS;
                        __u64 last = flow->last_seen_ns;
                        struct grm_slot *s = bpf_map_lookup_elem(&slots, &slot);

                        if (now > last && now - last > cfg->flow_timeout_ns)
                                verdict = GRM_STAT_FLOW_EXPIRED;
                        else if (!s || s->gen != flow->gen)
                                verdict = GRM_STAT_FLOW_STALE;
                        else if (bpf_sk_select_reuseport(ctx, &sockets, &owner, 0) < 0)
                                /* the owning socket was closed: its instance is gone */
                                verdict = GRM_STAT_FLOW_STALE;
                        else {
                                /* Refresh well within the timeout, or a busy flow "expires". */
                                __u64 touch_ns = cfg->flow_timeout_ns / 2;

                                if (touch_ns > GRM_FLOW_TOUCH_NS)
                                        touch_ns = GRM_FLOW_TOUCH_NS;
                                if (now > last && now - last >= touch_ns)
                                        flow->last_seen_ns = now;
                                return finish(GRM_STAT_FLOW_EXISTING, slot, SK_PASS);
                        }
                }
        } else
                verdict = GRM_STAT_WORKING;

        /* A new flow, or one that has to be treated as new. */
        if (working != GRM_SLOT_NONE) {
                /* Once a generation works, it gets every new flow or the packet is dropped: a
                 * fallback would hand new flows to draining instances. */
                if (select_in_slot(ctx, working, &index) < 0)
                        return finish(GRM_STAT_ERR_SELECT, GRM_SLOT_NONE, SK_DROP);
                target = working;
                {
                        struct grm_slot *s = bpf_map_lookup_elem(&slots, &working);
                        new_flow.gen = s ? s->gen : 0;
                }
        } else {
                /* Nothing works. The starting generation reads its queue once it is ready; it
                 * gets no flow entries, which it creates itself once it works. */
                __u32 pending = cfg->pending_slot;

                if (pending != GRM_SLOT_NONE && select_in_slot(ctx, pending, &index) == 0)
                        return finish(GRM_STAT_PENDING, pending, SK_PASS);
                /* Nothing pending either: the newest generation that still serves takes the flow
                 * and keeps it. Never the kernel's hash, which would pick grmd's or systemd's
                 * original socket, which nobody reads. */
                target = select_newest_live(ctx, &new_flow.gen, &index);
                if (target == GRM_SLOT_NONE)
                        return finish(GRM_STAT_NO_GENERATION, GRM_SLOT_NONE, SK_DROP);
                verdict = GRM_STAT_NEWEST_LIVE;
        }

        if (keyed) {
                new_flow.last_seen_ns = now;
                new_flow.index = index;
                if (bpf_map_update_elem(&flows, &key, &new_flow, BPF_ANY) < 0)
                        verdict = GRM_STAT_ERR_FLOW_UPDATE;
        }
        return finish(verdict, target, SK_PASS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
