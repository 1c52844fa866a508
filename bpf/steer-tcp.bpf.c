// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
/*
 * grm's TCP steering program: an sk_reuseport program of expected attach type
 * BPF_SK_REUSEPORT_SELECT_OR_MIGRATE (section "sk_reuseport/migrate") attached to every TCP
 * reuseport group grmd manages. The kernel runs it in two cases:
 *
 *  - a SYN looks for a listener (ctx->migrating_sk is NULL): the new connection goes to a
 *    listener of the working generation;
 *  - a listener is closed (or shut down) with requests in its queue (ctx->migrating_sk is the
 *    request: a full socket in the accept queue, or a request still in SYN_RECV, whose final ACK
 *    or SYN-ACK retransmission finds its listener gone): the request moves to a listener of the
 *    working generation instead of being reset. Because of this attach type the kernel migrates
 *    through this program whatever net.ipv4.tcp_migrate_req says (reuseport_migrate_sock() in
 *    net/core/sock_reuseport.c only consults the sysctl when the program is not of this type).
 *
 * Established connections are the instance's own sockets: no program ever sees them again.
 *
 * One program instance is loaded per TCP group (group_id set before load); all share the maps of
 * steer-maps.bpf.h with the UDP program.
 *
 * Invariants:
 *  - nothing is ever SK_DROPped: for a SYN the kernel answers a drop with a reset (the lookup
 *    finds no listener), for a migrating request a drop resets it. What no generation can take
 *    is left to the kernel's choice among the group's listeners, which is then the original
 *    socket: grmd re-queues its queue to the working generation at the next flip;
 *  - every run ends in finish(), which bumps exactly one per-CPU verdict counter.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "steer-api.h"
#include "steer-maps.bpf.h"

/* Index of the reuseport group this instance is attached to. Set by grmd before load. */
const volatile __u32 group_id = 0;

static __always_inline int finish(enum grm_stat stat, __u32 slot, int migrated, int action) {
        __u32 key = stat;
        __u64 *counter = bpf_map_lookup_elem(&stats, &key);

        if (counter)
                *counter += 1;
        if (slot < GRM_GEN_SLOTS) {
                struct grm_slot_tcp *t = bpf_map_lookup_elem(&slot_tcp, &slot);

                if (t) {
                        if (migrated)
                                t->migrated += 1;
                        else
                                t->connections += 1;
                }
        }
        return action;
}

static __always_inline __u32 sock_index(__u32 slot, __u32 sock) {
        return (group_id * GRM_GEN_SLOTS + slot) * GRM_MAX_SOCKS_PER_GEN + sock;
}

/* Every field a whole stack slot: without CAP_PERFMON the verifier refuses a narrower store
 * into a slot the compiler used for a spilled pointer before. */
struct scan_ctx {
        struct sk_reuseport_md *md;
        __u64 base;                     /* socket array index of the slot's listener 0 */
        __u64 first;                    /* the one already tried */
        __u64 nsocks;
        __u64 found;
        __u64 best;                     /* newest live slot found so far, or GRM_SLOT_NONE */
        __u64 best_gen;
};

/* bpf_loop() callback: tries listener i of the slot. The verifier checks a callback once, where
 * it would follow an open-coded loop iteration by iteration and, without CAP_PERFMON (the shipped
 * unit has CAP_BPF and CAP_NET_ADMIN only), every speculative path of each: more than it allows. */
static long scan_listener(__u64 i, void *data) {
        struct scan_ctx *c = data;
        __u32 index;

        if (i >= c->nsocks)
                return 1;
        if (i == c->first)
                return 0;
        index = c->base + (__u32) i;
        if (bpf_sk_select_reuseport(c->md, &sockets, &index, 0) == 0) {
                c->found = 1;
                return 1;
        }
        return 0;
}

/* Selects a listener of a slot: the one the connection's hash points at, or, with scan set and
 * that one closed (an instance closes its listeners one after the other), any other still open.
 * Returns 0 on success. */
static __always_inline long select_in_slot(struct scan_ctx *c, __u32 slot, int scan) {
        struct sk_reuseport_md *ctx = c->md;
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

        c->first = (__u32) (((__u64) ctx->hash * nsocks) >> 32);
        c->base = sock_index(slot, 0);
        index = c->base + c->first;
        if (bpf_sk_select_reuseport(ctx, &sockets, &index, 0) == 0)
                return 0;
        if (!scan)
                return -1;
        c->nsocks = nsocks;
        c->found = 0;
        bpf_loop(GRM_MAX_SOCKS_PER_GEN, scan_listener, c, 0);
        return c->found ? 0 : -1;
}

/* bpf_loop() callback for slot i of the scan for the newest live generation: a slot newer than
 * the best so far whose listener for this connection's hash is open becomes the best. A failed
 * selection leaves the previous choice in place, so the last successful one is the newest. */
static long try_newer_slot(__u64 i, void *data) {
        struct scan_ctx *c = data;
        __u32 slot = (__u32) i;
        struct grm_slot *s = bpf_map_lookup_elem(&slots, &slot);

        if (!s || s->gen <= c->best_gen)
                return 0;
        if (select_in_slot(c, slot, 0) == 0) {
                c->best = slot;
                c->best_gen = s->gen;
        }
        return 0;
}

/* The newest generation (highest number) whose listener for this connection's hash is still
 * open: where connections go while nothing works and nothing is pending. No scan within a slot
 * here (one loop, not two nested). Returns its slot, or GRM_SLOT_NONE. */
static __always_inline __u32 select_newest_live(struct scan_ctx *c) {
        c->best = GRM_SLOT_NONE;
        c->best_gen = 0;
        bpf_loop(GRM_GEN_SLOTS, try_newer_slot, c, 0);
        return (__u32) c->best;
}

/* A request leaving a closing listener: the working generation takes it; with none (or none of
 * its listeners open: it is the one closing), the starting one, then the newest live one. */
static __always_inline int migrate(struct scan_ctx *c, struct grm_config *cfg,
                                   struct bpf_sock *request) {
        enum grm_stat verdict = request->state == BPF_TCP_NEW_SYN_RECV ? GRM_STAT_TCP_MIGRATED_SYN_RECV
                                                                       : GRM_STAT_TCP_MIGRATED;
        __u32 target;

        if (!cfg)
                return finish(GRM_STAT_TCP_MIGRATE_KERNEL, GRM_SLOT_NONE, 1, SK_PASS);
        target = cfg->working_slot;
        if (target != GRM_SLOT_NONE && select_in_slot(c, target, 1) == 0)
                return finish(verdict, target, 1, SK_PASS);
        target = cfg->pending_slot;
        if (target != GRM_SLOT_NONE && select_in_slot(c, target, 1) == 0)
                return finish(verdict, target, 1, SK_PASS);
        target = select_newest_live(c);
        if (target != GRM_SLOT_NONE)
                return finish(verdict, target, 1, SK_PASS);
        /* SK_PASS without a selection: the kernel picks among the listeners left. */
        return finish(GRM_STAT_TCP_MIGRATE_KERNEL, GRM_SLOT_NONE, 1, SK_PASS);
}

SEC("sk_reuseport/migrate")
int grm_steer_tcp(struct sk_reuseport_md *ctx) {
        struct bpf_sock *request = ctx->migrating_sk;
        /* One for the whole run, so that the compiler never reuses its stack for a narrower
         * variable (see struct scan_ctx). */
        struct scan_ctx scan = { .md = ctx };
        struct scan_ctx *c = &scan;
        struct grm_config *cfg;
        __u32 zero = 0, target;

        cfg = bpf_map_lookup_elem(&config, &zero);
        if (request)
                return migrate(c, cfg, request);
        if (!cfg)
                return finish(GRM_STAT_TCP_ERR_CONFIG, GRM_SLOT_NONE, 0, SK_PASS);

        target = cfg->working_slot;
        if (target != GRM_SLOT_NONE) {
                /* Once a generation works it gets every new connection: the others are draining
                 * and closing their listeners. With all of its listeners closed (it is going
                 * away; grmd starts another), the kernel picks. */
                if (select_in_slot(c, target, 1) < 0)
                        return finish(GRM_STAT_TCP_ERR_SELECT, GRM_SLOT_NONE, 0, SK_PASS);
                return finish(GRM_STAT_TCP_WORKING, target, 0, SK_PASS);
        }
        target = cfg->pending_slot;
        if (target != GRM_SLOT_NONE && select_in_slot(c, target, 1) == 0)
                return finish(GRM_STAT_TCP_PENDING, target, 0, SK_PASS);
        target = select_newest_live(c);
        if (target != GRM_SLOT_NONE)
                return finish(GRM_STAT_TCP_NEWEST_LIVE, target, 0, SK_PASS);
        /* No generation listens: the kernel picks (the original listener), and the connection
         * waits there until a generation works. */
        return finish(GRM_STAT_TCP_NO_LISTENER, GRM_SLOT_NONE, 0, SK_PASS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
