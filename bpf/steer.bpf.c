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
/* The token of grmd's steering probes (struct grm_probe); 0: none are recognised. */
const volatile __u64 probe_token = 0;

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
        void *data = (void *) (long) ctx->data, *data_end = (void *) (long) ctx->data_end;
        __u16 sport;

        /* The UDP header is almost always in the linear part: read the port directly. */
        if (data + sizeof(sport) <= data_end)
                sport = *(__u16 *) data;
        else if (bpf_skb_load_bytes(ctx, 0, &sport, sizeof(sport)) < 0)
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

/* Where a datagram goes: the slot and socket array index chosen (the last successful
 * bpf_sk_select_reuseport() of the run), and the generation that then owns it. slot is
 * GRM_SLOT_NONE when the datagram is dropped. */
struct choice {
        __u32 slot;
        __u32 index;
        __u32 gen;
};

/*
 * The flow table (rules in steer-api.h), in two calls for whatever dissector keeps flows:
 *
 *   flow_find()       reads the packet's key and looks its flow up. A live entry whose
 *                     generation still holds its slot and whose socket is open: the socket is
 *                     selected, the entry refreshed, the choice filled, GRM_STAT_FLOW_EXISTING.
 *                     Otherwise the verdict of a new flow (FLOW_CREATED; FLOW_EXPIRED or
 *                     FLOW_STALE when the flow's own entry no longer counts; ERR_PARSE without a
 *                     key), and the probe says where the flow's buckets are.
 *   grm_flow_place()  once the caller selected a socket for the new flow: records it (index,
 *                     gen) in the flow's own expired or stale entry, else in an entry nothing
 *                     live holds, in one of its two buckets. Returns the verdict to count: the
 *                     caller's on success, FLOW_UNTRACKED (no room), FLOW_OVER_QUOTA (the source
 *                     made its quota of entries this window) or ERR_FLOW_UPDATE (another CPU
 *                     took the entry at the same moment; the flow's next packet tries again).
 *
 * Concurrency, without locks: an entry is claimed by one compare-and-swap of its first 8 bytes
 * (tag and generation) from the value that was judged free; only one CPU wins a given entry. A
 * free entry stays free until claimed (it is expired, and only live entries are refreshed; or
 * stale, and a slot's generation never comes back), so the winner never overwrites a live flow.
 * The swap writes the tag with GRM_GEN_CLAIMING, then the time and socket, then the generation:
 * until then the entry is neither free nor any generation's. (Swapping in the generation at
 * once let another CPU judge the entry by the old time and socket, find it stale or expired
 * again, and take it from the flow that had just won it.) A reader of the flow's own tag that
 * meets GRM_GEN_CLAIMING treats the packet as new, and may take the entry over for the same
 * flow. Stores are not reordered with stores on x86 (the only JIT this runs on here); a reader
 * may see the generation before the time and socket are visible only on a weaker machine.
 */
#define MATCH_NONE (2 * GRM_FLOW_WAYS)

/* Keeps clang from turning a choice between two loaded values back into a load from a chosen
 * address: pointer arithmetic on a variable, which the verifier refuses to a loader without
 * CAP_PERFMON. */
#define OPAQUE(x) asm volatile("" : "+r"(x))

struct flow_probe {
        struct grm_flow_key key;
        __u32 match;    /* the flow's own entry, expired or stale: bucket (0, 1) * GRM_FLOW_WAYS +
                         * way, or MATCH_NONE (no pointer kept on the stack: the verifier would
                         * not follow it into grm_flow_place()) */
        __u32 bucket[2];
        __u32 tag;
        __u32 now;      /* ticks */
};

/* Whether an entry last seen age ticks ago (now - seen, modulo 2^32) is expired. Another CPU
 * may stamp an entry with a tick newer than the now this CPU read a moment before: such an "age"
 * wraps to 2^32 - 1 and the like, and means just seen. */
static __always_inline int flow_age_expired(const struct grm_config *cfg, __u32 age) {
        return age > cfg->flow_timeout_ticks && age < GRM_FLOW_AGE_FUTURE;
}

/* An entry nothing live holds: empty, idle past the timeout, or of a generation that left its
 * slot. (An entry of a live generation whose socket was closed is not: it goes with its
 * generation.) */
static __always_inline int entry_free(const struct grm_config *cfg, __u32 tag, __u32 gen,
                                      __u32 seen, __u32 index, __u32 now) {
        __u32 slot = (index / GRM_MAX_SOCKS_PER_GEN) % GRM_GEN_SLOTS;
        struct grm_slot *s;

        if (gen == GRM_GEN_CLAIMING)
                return 0;
        if (tag == 0 || flow_age_expired(cfg, now - seen))
                return 1;
        s = bpf_map_lookup_elem(&slots, &slot);
        return !s || s->gen != gen;
}

/* Looks for the probe's tag in one of its buckets (which: 0 or 1). Returns the verdict if the
 * flow's entry is there, -1 if not. */
static __always_inline int find_in_bucket(struct sk_reuseport_md *ctx, const struct grm_config *cfg,
                                          struct flow_probe *p, struct choice *c, __u32 bucket,
                                          __u32 which) {
        /* Entry by entry, each an array lookup of its own and unrolled: no pointer arithmetic on
         * a variable, which the verifier refuses to a loader without CAP_PERFMON. */
#pragma unroll
        for (__u32 w = 0; w < GRM_FLOW_WAYS; w++) {
                __u32 key = bucket * GRM_FLOW_WAYS + w, index, slot, age;
                struct grm_flow_entry *e = bpf_map_lookup_elem(&flows, &key);
                struct grm_slot *s;

                if (!e || e->tag != p->tag)
                        continue;
                /* The flow's entry (a key has one): live, or the flow is new again. */
                p->match = which * GRM_FLOW_WAYS + w;
                age = p->now - e->seen;
                index = e->index;
                slot = (index / GRM_MAX_SOCKS_PER_GEN) % GRM_GEN_SLOTS;
                if (flow_age_expired(cfg, age))
                        return GRM_STAT_FLOW_EXPIRED;
                s = bpf_map_lookup_elem(&slots, &slot);
                if (!s || s->gen != e->gen ||
                    /* the owning socket was closed: its instance is gone */
                    bpf_sk_select_reuseport(ctx, &sockets, &index, 0) < 0)
                        return GRM_STAT_FLOW_STALE;
                /* Refresh well within the timeout, or a busy flow "expires". */
                if (age >= cfg->flow_touch_ticks && age < GRM_FLOW_AGE_FUTURE)
                        e->seen = p->now;
                c->slot = slot;
                c->index = index;
                c->gen = s->gen;
                return GRM_STAT_FLOW_EXISTING;
        }
        return -1;
}

static __always_inline enum grm_stat flow_find(struct sk_reuseport_md *ctx,
                                               const struct grm_config *cfg,
                                               struct flow_probe *p, struct choice *c) {
        __u64 hash;
        int r;

        p->key = (struct grm_flow_key) { .group = group_id };
        p->match = MATCH_NONE;
        if (read_remote(ctx, &p->key) < 0)
                return GRM_STAT_ERR_PARSE;
        hash = grm_flow_hash(&p->key, cfg->flow_hash_seed);
        p->tag = grm_flow_tag(hash);
        p->bucket[0] = grm_flow_bucket1(hash, cfg->flow_buckets);
        p->bucket[1] = grm_flow_bucket2(hash, cfg->flow_buckets);
        p->now = (__u32) bpf_jiffies64();

        /* A flow sits in its second bucket one time in five or so (grm_flow_place()): start
         * that bucket's cache miss now, beside the first one's, instead of after it. */
        if (p->bucket[1] != p->bucket[0]) {
                __u32 second = p->bucket[1] * GRM_FLOW_WAYS;
                struct grm_flow_entry *e2 = bpf_map_lookup_elem(&flows, &second);

                if (e2) {
                        __u32 tag2 = *(volatile __u32 *) &e2->tag;

                        OPAQUE(tag2);
                }
        }
        r = find_in_bucket(ctx, cfg, p, c, p->bucket[0], 0);
        if (r < 0 && p->bucket[1] != p->bucket[0])
                r = find_in_bucket(ctx, cfg, p, c, p->bucket[1], 1);
        return r < 0 ? GRM_STAT_FLOW_CREATED : r;
}

/* Counts the entries of a bucket that a new flow may take; *ret_way is the first of them. */
static __always_inline __u32 bucket_free(const struct grm_config *cfg, __u32 bucket, __u32 now,
                                         __u32 *ret_way) {
        __u32 n = 0;

#pragma unroll
        for (__u32 w = 0; w < GRM_FLOW_WAYS; w++) {
                __u32 key = bucket * GRM_FLOW_WAYS + w;
                struct grm_flow_entry *e = bpf_map_lookup_elem(&flows, &key);

                if (e && entry_free(cfg, e->tag, e->gen, e->seen, e->index, now)) {
                        if (n == 0)
                                *ret_way = w;
                        n++;
                }
        }
        return n;
}

/* The quota counter of the packet's source: the IPv4 address, or the IPv6 /64. */
static __always_inline struct grm_flow_source *flow_source(const struct grm_config *cfg,
                                                           const struct grm_flow_key *key) {
        struct grm_flow_key src = {};
        __u32 index;

        if (key->addr[0] == 0 && key->addr[1] == 0 && key->addr[2] == bpf_htonl(0x0000ffff)) {
                src.addr[2] = key->addr[2];
                src.addr[3] = key->addr[3];
        } else {
                src.addr[0] = key->addr[0];
                src.addr[1] = key->addr[1];
        }
        index = (__u32) (grm_flow_hash(&src, cfg->flow_hash_seed) >> 32) % GRM_FLOW_SOURCES;
        return bpf_map_lookup_elem(&flow_sources, &index);
}

/* Takes entry e for the probe's flow if it still holds the value that was judged free (or the
 * flow's own tag): one compare-and-swap of tag and generation, then time and socket. */
static __always_inline int claim(const struct grm_config *cfg, struct flow_probe *p,
                                 struct grm_flow_entry *e, __u32 index, __u32 gen) {
        __u64 old = *(volatile __u64 *) e, new = (__u64) GRM_GEN_CLAIMING << 32 | p->tag;
        __u32 tag = (__u32) old, egen = (__u32) (old >> 32);

        if (tag != p->tag && !entry_free(cfg, tag, egen, e->seen, e->index, p->now))
                return -1;
        if (__sync_val_compare_and_swap((__u64 *) e, old, new) != old)
                return -1;
        *(volatile __u32 *) &e->seen = p->now;
        *(volatile __u16 *) &e->index = (__u16) index;
        *(volatile __u32 *) &e->gen = gen;
        return 0;
}

/* A global function, verified once on its own: inlined, it would be verified again for every
 * way the lookup can end, and loading would take seconds. Only new flows pay for the call. */
__attribute__((noinline)) int grm_flow_place(const struct grm_config *cfg, struct flow_probe *p,
                                             __u32 index, __u32 gen, int verdict) {
        struct grm_flow_source *source = NULL;
        struct grm_flow_entry *e;
        __u32 key;

        if (!cfg || !p)
                return GRM_STAT_ERR_FLOW_UPDATE;
        if (p->match < MATCH_NONE) {
                __u32 b0 = p->bucket[0], b1 = p->bucket[1];

                OPAQUE(b0);
                OPAQUE(b1);
                key = (p->match < GRM_FLOW_WAYS ? b0 : b1) * GRM_FLOW_WAYS + p->match % GRM_FLOW_WAYS;
        } else {
                __u32 way1 = 0, way2 = 0, free1, free2 = 0;

                /* The first bucket while it is at most half full, else the emptier one (the
                 * first on a tie): most flows sit in their first bucket (one read per packet),
                 * and buckets fill evenly enough that a table at half its size leaves about 20
                 * flows in a million untracked (tools/bench/flow-table-scale measures it). */
                free1 = bucket_free(cfg, p->bucket[0], p->now, &way1);
                if (free1 <= GRM_FLOW_WAYS / 2 && p->bucket[1] != p->bucket[0])
                        free2 = bucket_free(cfg, p->bucket[1], p->now, &way2);
                if (free1 == 0 && free2 == 0)
                        return GRM_STAT_FLOW_UNTRACKED;
                key = free2 > free1 ? p->bucket[1] * GRM_FLOW_WAYS + way2 : p->bucket[0] * GRM_FLOW_WAYS + way1;

                /* A quota only limits taking new entries; the flow's own entry is its own. */
                if (cfg->flow_source_quota > 0) {
                        __u32 window = p->now / cfg->flow_quota_window_ticks;

                        source = flow_source(cfg, &p->key);
                        if (source) {
                                /* Racing CPUs may each reset or count once: the quota is exact
                                 * to within the number of CPUs. */
                                if (source->window != window) {
                                        source->window = window;
                                        source->created = 0;
                                }
                                if (source->created >= cfg->flow_source_quota)
                                        return GRM_STAT_FLOW_OVER_QUOTA;
                        }
                }
        }

        e = bpf_map_lookup_elem(&flows, &key);
        if (!e || claim(cfg, p, e, index, gen) < 0)
                return GRM_STAT_ERR_FLOW_UPDATE;
        if (source)
                __sync_fetch_and_add(&source->created, 1);
        return verdict;
}

/* State of the scan for the newest live generation. Every field a whole stack slot: without
 * CAP_PERFMON (the shipped unit has CAP_BPF and CAP_NET_ADMIN only) the verifier refuses a
 * narrower store into a slot that held a spilled pointer. */
struct newest_scan {
        struct sk_reuseport_md *md;
        __u64 best;                     /* slot chosen so far, or 0xff */
        __u64 best_gen;
        __u64 index;                    /* socket array index chosen in it */
};

/* bpf_loop() callback for slot i. A slot is only tried if it is newer than the best so far, and
 * a failed selection leaves the previous choice in place, so the last successful selection is
 * the newest. A callback is verified once: an open-coded loop over the slots is followed
 * iteration by iteration, and without CAP_PERFMON along every speculative path, more than the
 * verifier allows ("The sequence of 8193 jumps is too complex"). */
static long try_newer_slot(__u64 i, void *data) {
        struct newest_scan *c = data;
        __u32 slot = (__u32) i, index;
        struct grm_slot *s = bpf_map_lookup_elem(&slots, &slot);

        if (!s || s->gen <= c->best_gen)
                return 0;
        if (select_in_slot(c->md, slot, &index) == 0) {
                c->best = slot;
                c->best_gen = s->gen;
                c->index = index;
        }
        return 0;
}

/* Selects a socket of the newest generation (highest number) whose slot is live and still has
 * a socket to take the packet: where new flows go while nothing works and nothing is pending
 * (the working generation crashed; its replacement is not started yet), so that a healthy older
 * generation keeps serving. Returns the generation << 32 | the socket array index << 8 | the
 * slot, or GRM_SLOT_NONE's low byte (0xff) in the slot byte when nothing is live.
 *
 * A global (not inlined) function: the verifier checks it once on its own, instead of again for
 * every path of the dissectors that leads to it. */
__attribute__((noinline)) __u64 select_newest_live(struct sk_reuseport_md *ctx) {
        struct newest_scan c = { .md = ctx, .best = 0xff };

        bpf_loop(GRM_GEN_SLOTS, try_newer_slot, &c, 0);
        return c.best_gen << 32 | (c.index & 0xffffff) << 8 | c.best;
}


/* What a dissector decided. The program has one place for each step that follows (the flow
 * table, placing a new flow), so that the verifier sees each once. */
enum intent {
        INTENT_DONE,         /* placed (choice filled), count verdict */
        INTENT_NEW_NO_ENTRY, /* where new flows go, count verdict, no entry */
        INTENT_FLOW,         /* the flow table's rules */
        INTENT_STALE,        /* grm's CID of a gone generation: a live flow entry keeps its
                              * socket, else as INTENT_NEW_NO_ENTRY (verdict quic_cid_stale);
                              * never creates an entry */
};

struct decision {
        enum intent intent;
        enum grm_stat verdict;
        int first_flight;    /* INTENT_FLOW from an Initial: record the client's DCID too */
        struct grm_first_flight_key ff_key;
};

/*
 * Dissector quic. The datagram is read once into an 8-aligned buffer placed so that octet 1 of
 * the connection ID falls on buf.q[1]: octets 1..8 and 9..16 of the CID are then two aligned
 * 64-bit words (the verifier wants aligned stack access, and the prefix and grm's 3 octets come
 * out of them with shifts and one compare). A short header's CID starts at octet 1 of the UDP
 * payload, a long header's at octet 6, so the read starts 7 octets before the CID, in the UDP
 * header for a short one; the octets before the CID are the header's own.
 */
#define UDP_HEADER      8U
#define SHORT_CID_AT    1U                  /* a short header's DCID: UDP payload octet 1 */
#define LONG_CID_AT     6U                  /* a long header's: after type, version, length */
#define QUIC_BUF        32U
#define QUIC_SHORT_READ 24U
/* No 1-RTT packet is shorter: header protection samples 16 octets starting 4 octets after the
 * packet number, which follows the 1-octet header and the CID (RFC 9001 §5.4.2). */
#define QUIC_SHORT_MIN  21U
/* A long header the dissector reads: QUIC_BUF octets from payload octet -1. */
#define QUIC_LONG_MIN   (QUIC_BUF - 1)

enum quic_type { QUIC_INITIAL, QUIC_0RTT, QUIC_HANDSHAKE, QUIC_RETRY };

union quic_buf {
        __u8 b[QUIC_BUF];
        __u64 q[QUIC_BUF / 8];
};

/* buf.b[7] is CID octet 0, buf.q[1] and buf.q[2] its octets 1..16. Decodes grm's shape (see
 * steer-api.h; src/shared/quic-lb.c has the same rules in C): returns 1 with the slot, socket
 * and generation bits, or 0 if the CID is not grm's. wire_len: a long header's DCID length
 * octet, which must agree; 0 for a short header. */
static __always_inline int quic_decode(__u32 octet0, __u64 w_be, __u64 x_be, __u32 wire_len, __u32 *ret_slot,
                                       __u32 *ret_sock, __u32 *ret_gen_bits) {
        __u32 config_id = octet0 >> 5, length = (octet0 & 0x1f) + 1, plen, id;
        struct grm_quic_config *qc;
        __u64 w, x, t;

        if (config_id == GRM_QUIC_CONFIG_ID_UNROUTABLE)
                return 0;
        if (length < GRM_QUIC_CID_MIN || length > GRM_QUIC_CID_MAX)
                return 0;
        if (wire_len != 0 && wire_len != length)
                return 0;
        qc = bpf_map_lookup_elem(&quic_configs, &config_id);
        if (!qc || !qc->active)
                return 0;
        plen = qc->prefix_len;
        if (plen > GRM_QUIC_PREFIX_MAX || length < 1 + plen + GRM_QUIC_GRM_OCTETS + GRM_QUIC_RANDOM_MIN)
                return 0;
        w = bpf_be64_to_cpu(w_be);
        if ((w & qc->prefix_mask) != qc->prefix)
                return 0;
        /* The 128-bit CID octets 1..16 shifted left by the prefix: grm's 3 octets on top. Two
         * shifts of 4 * plen each, because a shift by 64 is not 0 in BPF. */
        x = bpf_be64_to_cpu(x_be);
        t = ((w << (plen * 4)) << (plen * 4)) | ((x >> (32 - plen * 4)) >> (32 - plen * 4));
        id = (__u32) (t >> 40);
        *ret_slot = id >> GRM_QUIC_SLOT_SHIFT;
        *ret_sock = (id >> GRM_QUIC_SOCK_SHIFT) & GRM_QUIC_SOCK_MASK;
        *ret_gen_bits = id & GRM_QUIC_GEN_MASK;
        return 1;
}

static __always_inline int quic_decode_cid(const union quic_buf *buf, __u32 wire_len, __u32 *ret_slot,
                                           __u32 *ret_sock, __u32 *ret_gen_bits) {
        return quic_decode(buf->b[7], buf->q[1], buf->q[2], wire_len, ret_slot, ret_sock, ret_gen_bits);
}

/* A decoded CID: its socket if the slot holds that generation and the socket is open (returns
 * 1), else 0. */
static __always_inline int quic_select_cid(struct sk_reuseport_md *ctx, struct choice *c, __u32 slot,
                                           __u32 sock, __u32 gen_bits) {
        struct grm_slot *s;
        __u32 index;

        if (slot >= GRM_GEN_SLOTS)
                return 0;
        s = bpf_map_lookup_elem(&slots, &slot);
        if (!s || s->gen == 0 || (s->gen & GRM_QUIC_GEN_MASK) != gen_bits || sock >= s->nsocks)
                return 0;
        index = sock_index(slot, sock);
        if (bpf_sk_select_reuseport(ctx, &sockets, &index, 0) < 0)
                return 0;
        c->slot = slot;
        c->index = index;
        c->gen = s->gen;
        return 1;
}

static __always_inline void decide(struct decision *d, enum intent intent, enum grm_stat verdict) {
        d->intent = intent;
        d->verdict = verdict;
}

/* The client's first flight: an Initial or 0-RTT datagram whose DCID the client chose. A known
 * DCID goes where its first Initial went; otherwise the flow table decides, and an Initial of
 * at least GRM_QUIC_INITIAL_MIN bytes records the DCID. */
static __always_inline void quic_first_flight(struct sk_reuseport_md *ctx, struct choice *c, struct decision *d,
                                              const union quic_buf *buf, __u32 dcid_len, int fills) {
        struct grm_flow_value *entry;
        __u64 now;

        d->ff_key.group = group_id;
        d->ff_key.len = dcid_len;
        /* The DCID is buf.b[7 .. 7 + dcid_len); octets past it stay zero in the key. */
#pragma unroll
        for (__u32 i = 0; i < GRM_QUIC_CID_MAX; i++)
                d->ff_key.dcid[i] = i < dcid_len ? buf->b[7 + i] : 0;

        entry = bpf_map_lookup_elem(&first_flights, &d->ff_key);
        if (entry) {
                __u32 owner = entry->index;
                __u32 slot = (owner / GRM_MAX_SOCKS_PER_GEN) % GRM_GEN_SLOTS;
                __u64 last = entry->last_seen_ns;
                struct grm_slot *s = bpf_map_lookup_elem(&slots, &slot);

                now = bpf_ktime_get_coarse_ns();
                if (!(now > last && now - last > GRM_QUIC_FIRST_FLIGHT_NS) && s && s->gen == entry->gen &&
                    bpf_sk_select_reuseport(ctx, &sockets, &owner, 0) == 0) {
                        /* Only Initial datagrams feed the table, refreshes included. */
                        if (fills && now > last && now - last >= GRM_FLOW_TOUCH_NS)
                                entry->last_seen_ns = now;
                        c->slot = slot;
                        c->index = owner;
                        c->gen = entry->gen;
                        decide(d, INTENT_DONE, GRM_STAT_QUIC_FIRST_FLIGHT_EXISTING);
                        return;
                }
        }
        d->first_flight = fills;
        decide(d, INTENT_FLOW, GRM_STAT_FLOW_CREATED);
}

static __always_inline void quic_dissect(struct sk_reuseport_md *ctx, struct choice *c, struct decision *d) {
        union quic_buf buf;
        __u32 payload, slot = 0, sock = 0, gen_bits = 0, version, dcid_len, scid_len, type;
        __u8 scid_len_octet;
        int grm;

        if (ctx->len < UDP_HEADER + QUIC_SHORT_MIN)
                return decide(d, INTENT_NEW_NO_ENTRY, GRM_STAT_QUIC_MALFORMED);
        payload = ctx->len - UDP_HEADER;

        /* Short header (the hot path): one read, two array lookups, a select. */
        if (bpf_skb_load_bytes(ctx, UDP_HEADER + SHORT_CID_AT - 7, &buf, QUIC_SHORT_READ) < 0)
                return decide(d, INTENT_NEW_NO_ENTRY, GRM_STAT_QUIC_MALFORMED);
        if (!(buf.b[6] & 0x80)) {
                /* The CID length is not on the wire; payload >= 21 holds any CID of 20. */
                if (!quic_decode_cid(&buf, 0, &slot, &sock, &gen_bits))
                        return decide(d, INTENT_FLOW, GRM_STAT_FLOW_CREATED);
                if (quic_select_cid(ctx, c, slot, sock, gen_bits))
                        return decide(d, INTENT_DONE, GRM_STAT_QUIC_CID_LIVE);
                return decide(d, INTENT_STALE, GRM_STAT_QUIC_CID_STALE);
        }

        /* Long header: type, version, DCID length, DCID, SCID length, SCID. */
        if (payload < QUIC_LONG_MIN)
                return decide(d, INTENT_NEW_NO_ENTRY, GRM_STAT_QUIC_MALFORMED);
        if (bpf_skb_load_bytes(ctx, UDP_HEADER + LONG_CID_AT - 7, &buf, QUIC_BUF) < 0)
                return decide(d, INTENT_NEW_NO_ENTRY, GRM_STAT_QUIC_MALFORMED);
        version = (__u32) buf.b[2] << 24 | (__u32) buf.b[3] << 16 | (__u32) buf.b[4] << 8 | buf.b[5];
        if (version == 0)
                return decide(d, INTENT_NEW_NO_ENTRY, GRM_STAT_QUIC_VERSION_NEGOTIATION);
        if (version != GRM_QUIC_VERSION_1 && version != GRM_QUIC_VERSION_2)
                return decide(d, INTENT_NEW_NO_ENTRY, GRM_STAT_QUIC_UNKNOWN_VERSION);
        dcid_len = buf.b[6];
        if (dcid_len > GRM_QUIC_CID_MAX || 7 + dcid_len > payload)
                return decide(d, INTENT_NEW_NO_ENTRY, GRM_STAT_QUIC_MALFORMED);
        if (bpf_skb_load_bytes(ctx, UDP_HEADER + LONG_CID_AT + dcid_len, &scid_len_octet, 1) < 0)
                return decide(d, INTENT_NEW_NO_ENTRY, GRM_STAT_QUIC_MALFORMED);
        scid_len = scid_len_octet;
        if (scid_len > GRM_QUIC_CID_MAX || 7 + dcid_len + scid_len > payload)
                return decide(d, INTENT_NEW_NO_ENTRY, GRM_STAT_QUIC_MALFORMED);

        /* RFC 9369 §3.2: version 2 numbers the long header types one up. */
        type = (buf.b[1] >> 4) & 3;
        if (version == GRM_QUIC_VERSION_2)
                type = (type + 3) & 3;
        if (type == QUIC_RETRY) /* only servers send Retry */
                return decide(d, INTENT_NEW_NO_ENTRY, GRM_STAT_QUIC_MALFORMED);

        grm = dcid_len >= GRM_QUIC_CID_MIN && quic_decode_cid(&buf, dcid_len, &slot, &sock, &gen_bits);
        if (grm && quic_select_cid(ctx, c, slot, sock, gen_bits))
                return decide(d, INTENT_DONE, GRM_STAT_QUIC_CID_LIVE);
        if (type == QUIC_HANDSHAKE) {
                /* The DCID is the server's. */
                if (grm)
                        return decide(d, INTENT_STALE, GRM_STAT_QUIC_CID_STALE);
                return decide(d, INTENT_FLOW, GRM_STAT_FLOW_CREATED);
        }

        /* Initial or 0-RTT: the DCID is the client's (or, after a Retry, the server's, which
         * was handled above while its generation lives). A random client DCID has grm's shape
         * as often as not, so a gone generation here means nothing. Clients choose at least 8
         * octets (RFC 9000 §7.2). */
        if (dcid_len < GRM_QUIC_CID_MIN)
                return decide(d, INTENT_FLOW, GRM_STAT_FLOW_CREATED);
        quic_first_flight(ctx, c, d, &buf, dcid_len, type == QUIC_INITIAL && payload >= GRM_QUIC_INITIAL_MIN);
}

/* The hot path of dissector quic: a 1-RTT datagram whose connection ID names a live generation
 * and socket. Nothing but the read, the two array lookups and the select, before the rest of the
 * program sets up its state; returns the slot, or GRM_SLOT_NONE for anything else (which
 * steer() then reads again, in full). */
static __always_inline __u32 quic_fast(struct sk_reuseport_md *ctx) {
        __u8 *data = (__u8 *) (long) ctx->data, *end = (__u8 *) (long) ctx->data_end;
        __u32 slot = 0, sock = 0, gen_bits = 0;
        struct choice c;

        /* Straight from the packet when its first octets are in the linear part (always on
         * loopback, and for small datagrams from most NICs): no helper call. The two 64-bit
         * words are unaligned loads, which the verifier allows on architectures that have
         * them. Otherwise the full path reads the datagram with bpf_skb_load_bytes(). */
        if (data + UDP_HEADER + SHORT_CID_AT + 1 + 16 > end || ctx->len < UDP_HEADER + QUIC_SHORT_MIN)
                return GRM_SLOT_NONE;
        if ((data[UDP_HEADER] & 0x80) ||
            !quic_decode(data[UDP_HEADER + SHORT_CID_AT], *(__u64 *) (data + UDP_HEADER + SHORT_CID_AT + 1),
                         *(__u64 *) (data + UDP_HEADER + SHORT_CID_AT + 9), 0, &slot, &sock, &gen_bits) ||
            !quic_select_cid(ctx, &c, slot, sock, gen_bits))
                return GRM_SLOT_NONE;
        return c.slot;
}

static __always_inline int steer(struct sk_reuseport_md *ctx, struct grm_config *cfg) {
        struct choice c = { .slot = GRM_SLOT_NONE };
        struct decision d = { .intent = INTENT_FLOW, .verdict = GRM_STAT_FLOW_CREATED };
        struct flow_probe probe = {};   /* all of it initialised: a global function reads it */
        __u32 working;
        int keyed = 0, entries = 0;

        if (cfg->dissector == GRM_DISSECTOR_QUIC)
                quic_dissect(ctx, &c, &d);
        else if (cfg->dissector != GRM_DISSECTOR_FLOW)
                decide(&d, INTENT_NEW_NO_ENTRY, GRM_STAT_WORKING);
        if (d.intent == INTENT_DONE)
                return finish(d.verdict, c.slot, SK_PASS);

        /* The flow table's rules: an existing flow keeps its socket for as long as its
         * generation holds its slot and the socket is open, whatever the working and pending
         * slots are (also while no generation works: the working one crashed, its replacement
         * is starting); anything else is a new flow. */
        if (d.intent == INTENT_FLOW || d.intent == INTENT_STALE) {
                entries = d.intent == INTENT_FLOW;
                d.verdict = flow_find(ctx, cfg, &probe, &c);
                if (d.verdict == GRM_STAT_FLOW_EXISTING)
                        goto placed;
                keyed = d.verdict != GRM_STAT_ERR_PARSE;
        }
        if (d.intent == INTENT_STALE) {
                /* No live flow: where new flows go, and no entry. A CID of grm's shape whose
                 * generation is gone is also what a server that ignores GRM_QUIC_SERVER_IDS
                 * issues by chance (about 1 in 20 of its random CIDs): for it, the live entry
                 * above is the flow table's behaviour. */
                decide(&d, INTENT_NEW_NO_ENTRY, GRM_STAT_QUIC_CID_STALE);
                keyed = 0;
        }

        /* A new flow, or one that has to be treated as new. */
        working = cfg->working_slot;
        if (working != GRM_SLOT_NONE) {
                struct grm_slot *s;

                /* Once a generation works, it gets every new flow or the packet is dropped: a
                 * fallback would hand new flows to draining instances. */
                if (select_in_slot(ctx, working, &c.index) < 0)
                        return finish(GRM_STAT_ERR_SELECT, GRM_SLOT_NONE, SK_DROP);
                s = bpf_map_lookup_elem(&slots, &working);
                c.slot = working;
                c.gen = s ? s->gen : 0;
        } else {
                /* Nothing works. The starting generation reads its queue once it is ready; it
                 * gets no entries, which it creates itself once it works. */
                __u32 pending = cfg->pending_slot;

                if (pending != GRM_SLOT_NONE && select_in_slot(ctx, pending, &c.index) == 0)
                        return finish(d.intent == INTENT_NEW_NO_ENTRY && d.verdict != GRM_STAT_WORKING
                                              ? d.verdict : GRM_STAT_PENDING,
                                      pending, SK_PASS);
                /* Nothing pending either: the newest generation that still serves takes the flow
                 * and keeps it. Never the kernel's hash, which would pick grmd's or systemd's
                 * original socket, which nobody reads. */
                __u64 newest = select_newest_live(ctx);

                if ((newest & 0xff) >= GRM_GEN_SLOTS)
                        return finish(GRM_STAT_NO_GENERATION, GRM_SLOT_NONE, SK_DROP);
                c.slot = newest & 0xff;
                c.index = (newest >> 8) & 0xffffff;
                c.gen = newest >> 32;
                if (d.intent != INTENT_NEW_NO_ENTRY || d.verdict == GRM_STAT_WORKING)
                        d.verdict = GRM_STAT_NEWEST_LIVE;
        }

        if (keyed)
                d.verdict = grm_flow_place(cfg, &probe, c.index, c.gen, d.verdict);

placed:
        if (entries && d.first_flight) {
                struct grm_flow_value ff = {
                        .last_seen_ns = bpf_ktime_get_coarse_ns(),
                        .index = c.index,
                        .gen = c.gen,
                };

                if (bpf_map_update_elem(&first_flights, &d.ff_key, &ff, BPF_ANY) < 0)
                        d.verdict = GRM_STAT_ERR_FIRST_FLIGHT_UPDATE;
                else if (d.verdict != GRM_STAT_ERR_FLOW_UPDATE && d.verdict != GRM_STAT_FLOW_UNTRACKED &&
                         d.verdict != GRM_STAT_FLOW_OVER_QUOTA)
                        /* (what the flow table could not hold stays counted as such) */
                        d.verdict = GRM_STAT_QUIC_FIRST_FLIGHT_CREATED;
        }
        return finish(d.verdict, c.slot, SK_PASS);
}

/* grmd's steering probe: exactly a UDP header and a struct grm_probe with our token. */
static __always_inline int is_probe(struct sk_reuseport_md *ctx) {
        struct grm_probe p;
        __u32 group = group_id;

        if (ctx->len != 8 + sizeof(p) || probe_token == 0)
                return 0;
        if (bpf_skb_load_bytes(ctx, 8, &p, sizeof(p)) < 0 || p.token != probe_token)
                return 0;
        bpf_map_update_elem(&probes, &group, &p.nonce, BPF_ANY);
        return 1;
}

SEC("sk_reuseport")
int grm_steer(struct sk_reuseport_md *ctx) {
        struct grm_config *cfg;
        __u32 zero = 0;

        if (is_probe(ctx))
                return finish(GRM_STAT_PROBE, GRM_SLOT_NONE, SK_DROP);

        cfg = bpf_map_lookup_elem(&config, &zero);
        if (!cfg)
                return finish(GRM_STAT_ERR_CONFIG, GRM_SLOT_NONE, SK_DROP);
        if (cfg->dissector == GRM_DISSECTOR_QUIC) {
                __u32 slot = quic_fast(ctx);

                if (slot != GRM_SLOT_NONE)
                        return finish(GRM_STAT_QUIC_CID_LIVE, slot, SK_PASS);
        } else if (cfg->dissector == GRM_DISSECTOR_NONE && cfg->working_slot < GRM_GEN_SLOTS) {
                /* Dissector none while a generation works, the whole of it: the working
                 * generation's socket, before anything else is set up, from the config's copy
                 * of its socket count (no read of its slot: select_in_slot()'s choice without
                 * it). Whatever fails here (its sockets are gone, the copy is 0) gets the full
                 * program's verdict. */
                __u32 slot = cfg->working_slot, nsocks = cfg->working_nsocks, index;

                if (nsocks - 1 < GRM_MAX_SOCKS_PER_GEN) {
                        index = sock_index(slot, (__u32) (((__u64) ctx->hash * nsocks) >> 32));
                        if (bpf_sk_select_reuseport(ctx, &sockets, &index, 0) == 0)
                                return finish(GRM_STAT_WORKING, slot, SK_PASS);
                } else if (select_in_slot(ctx, slot, &index) == 0)
                        return finish(GRM_STAT_WORKING, slot, SK_PASS);
        }
        return steer(ctx, cfg);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
