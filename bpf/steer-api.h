/* SPDX-License-Identifier: MIT */
/*
 * The contract between the steering program (bpf/steer.bpf.c) and grmd (src/shared/steering.c).
 * This is the only header both sides include: plain __u32/__u64, no includes of its own, so the
 * includer must have the __u* types (linux/types.h or vmlinux-style headers) in scope.
 *
 * Layout of the socket array: one reuseport group per listening address ("group": UDP sockets
 * or TCP listeners, never both; grmd loads the UDP or the TCP program on it), up to
 * GRM_GEN_SLOTS live generations (a generation occupies the same "slot" in every group), and up
 * to GRM_MAX_SOCKS_PER_GEN sockets per generation and group:
 *
 *     index = (group * GRM_GEN_SLOTS + slot) * GRM_MAX_SOCKS_PER_GEN + socket
 */
#pragma once

#define GRM_MAX_GROUPS          32U
#define GRM_GEN_SLOTS           16U
#define GRM_MAX_SOCKS_PER_GEN   32U
#define GRM_SOCKARRAY_SIZE      (GRM_MAX_GROUPS * GRM_GEN_SLOTS * GRM_MAX_SOCKS_PER_GEN)

/* "No slot": no working (or no pending) generation. */
#define GRM_SLOT_NONE           0xffffffffU

/* Version of the maps' layout (types, keys, values, sizes, and what the values mean), kept in
 * grm_config.maps_abi of every set of maps. A grmd adopts an earlier grmd's maps only if they
 * have this version (and each map the definition this build's program has): bump it with every
 * change of meaning, even one that keeps the sizes. 1: the LRU flow table; 2: the set-associative
 * table with 16.8 ms ticks (bpf_ktime_get_coarse_ns() >> 24); 3: this one, ticks of jiffies. */
#define GRM_MAPS_ABI_VERSION    3U

/*
 * The flow table ("flows"): an array of entries, in buckets of GRM_FLOW_WAYS consecutive entries,
 * each bucket one 64-byte cache line. A flow's key (group, remote address, remote port) is hashed with a per-table secret
 * (grm_config.flow_hash_seed) into a 32-bit tag and two candidate buckets; the flow's entry, if
 * it has one, is in one of them. A packet reads one bucket (two when its flow is not in the
 * first): one cache miss in a table far larger than the caches.
 *
 * No live entry is ever evicted: a new flow takes an empty entry, or one that is expired (idle
 * past the flow timeout) or stale (its generation left its slot). A new flow that finds none in
 * its two buckets goes to the working generation without an entry (GRM_STAT_FLOW_UNTRACKED).
 *
 * Two keys with the same buckets and tag are one flow to the table: the later one is steered to
 * where the earlier one's entry says (about GRM_FLOW_WAYS * 2 / 2^32 per new flow). A collision
 * never moves the flow that owns the entry.
 */
#define GRM_FLOW_WAYS           4U
#define GRM_FLOW_ENTRY_SIZE     16U
#define GRM_FLOW_BUCKET_SIZE    (GRM_FLOW_WAYS * GRM_FLOW_ENTRY_SIZE)

/* Entries' last-seen times are the kernel's jiffies (bpf_jiffies64(), which the verifier inlines
 * into one load: HZ ticks a second, 1-10 ms), kept modulo 2^32, ages too (now - seen): an age of
 * 2^31 or more is a stamp from "the future" (below), so an entry nobody looked at for 2^31 ticks
 * (24.8 days at HZ=1000) reads as just seen again; long expired, it was free to take all that
 * time, and it still names its generation, which must still hold its slot for the entry to
 * steer. grmd reads the same clock and measures HZ through bpf/flow-clock.bpf.c
 * (src/shared/flow-clock.h) to turn timeouts into ticks. */

/* An entry's age (now - seen, modulo 2^32) at or past this is a stamp another CPU made an
 * instant after this one read the clock: just seen, not ancient. Timeouts are capped below it. */
#define GRM_FLOW_AGE_FUTURE     0x80000000U

/* A flow entry's last-seen time is refreshed at most this often (ns), and at least twice per flow
 * timeout, to keep the hot path from writing the shared entry on every packet. An idle flow
 * therefore expires after between max(timeout - 1 s, timeout / 2) and timeout of idleness; a flow
 * that never pauses longer than that never expires. */
#define GRM_FLOW_TOUCH_NS       1000000000ULL

/* Per-source quota counters ("flow_sources"): one remote IPv4 address, or IPv6 /64, hashed into
 * one of these counters, may create at most grm_config.flow_source_quota entries per quota window
 * (about one flow timeout; 0: no quota). Past it, its new flows are untracked
 * (GRM_STAT_FLOW_OVER_QUOTA). */
#define GRM_FLOW_SOURCES        65536U

enum grm_dissector {
        GRM_DISSECTOR_NONE = 0, /* stateless: every packet to the working generation */
        GRM_DISSECTOR_FLOW = 1, /* flow table keyed by the remote address and port */
        GRM_DISSECTOR_QUIC = 2, /* QUIC connection IDs (see below), else as flow */
        _GRM_DISSECTOR_MAX,
};

/* Per-CPU counters, one per verdict of the program (the "stats" map). Every run of the program
 * ends by bumping exactly one of these. */
enum grm_stat {
        GRM_STAT_WORKING = 0,      /* dissector none: sent to the working generation */
        GRM_STAT_FLOW_EXISTING,    /* flow table hit: sent to the socket the flow owns */
        GRM_STAT_FLOW_CREATED,     /* new flow: sent to the working generation, entry created */
        GRM_STAT_FLOW_EXPIRED,     /* entry idle longer than the flow timeout: treated as new */
        GRM_STAT_FLOW_STALE,       /* entry's generation or socket is gone: treated as new */
        GRM_STAT_PENDING,          /* new flow, no working generation: queued on the starting one */
        GRM_STAT_NO_GENERATION,    /* new flow, no generation with a socket to take it: dropped */
        GRM_STAT_ERR_PARSE,        /* could not read the remote address: sent to working */
        GRM_STAT_ERR_FLOW_UPDATE,  /* flow entry could not be written: sent to working anyway */
        GRM_STAT_ERR_SELECT,       /* selecting a working socket failed: packet dropped */
        GRM_STAT_ERR_CONFIG,       /* config map unreadable (cannot happen): dropped */
        GRM_STAT_NEWEST_LIVE,      /* new flow, nothing working or pending: to the newest live one */
        /* The TCP program (bpf/steer-tcp.bpf.c): new connections (a SYN looking for a listener)
         * and requests migrated out of a closing listener's queue. */
        GRM_STAT_TCP_WORKING,      /* new connection: to a listener of the working generation */
        GRM_STAT_TCP_PENDING,      /* new connection, nothing works: to the starting generation */
        GRM_STAT_TCP_NEWEST_LIVE,  /* new connection, nothing working or pending: newest live one */
        GRM_STAT_TCP_NO_LISTENER,  /* new connection, no generation listens: the kernel's choice
                                    * (the original listener; re-queued at the next flip) */
        GRM_STAT_TCP_ERR_SELECT,   /* the working generation's listeners are all closed: the
                                    * kernel's choice, as above */
        GRM_STAT_TCP_MIGRATED,     /* accept-queue connection (established) moved to a listener */
        GRM_STAT_TCP_MIGRATED_SYN_RECV, /* request still in SYN_RECV moved to a listener */
        GRM_STAT_TCP_MIGRATE_KERNEL, /* no generation listens: left to the kernel's choice among
                                      * the group's listeners (never reset by us) */
        GRM_STAT_TCP_ERR_CONFIG,   /* config map unreadable (cannot happen): the kernel's choice */
        /* Dissector quic of the UDP program (docs/QUIC.md). Datagrams it hands to the flow
         * table (connection IDs that are not grm's, Initial datagrams under 1,200 bytes, ...)
         * get the flow table's verdicts above. */
        GRM_STAT_QUIC_CID_LIVE,    /* grm's connection ID of a live generation and socket: sent to it */
        GRM_STAT_QUIC_CID_STALE,   /* grm's connection ID, generation or socket gone: as new, no entry */
        GRM_STAT_QUIC_FIRST_FLIGHT_EXISTING, /* Initial/0-RTT, client's DCID known: where it went before */
        GRM_STAT_QUIC_FIRST_FLIGHT_CREATED,  /* Initial >= 1,200 bytes, new client DCID: placed, entry made */
        GRM_STAT_QUIC_VERSION_NEGOTIATION,   /* version 0: as new, no entry */
        GRM_STAT_QUIC_UNKNOWN_VERSION,       /* a version other than 1 and 2: as new, no entry */
        GRM_STAT_QUIC_MALFORMED,   /* truncated or impossible header: as new, no entry */
        GRM_STAT_ERR_FIRST_FLIGHT_UPDATE,    /* first-flight entry could not be written: placed anyway */
        GRM_STAT_FLOW_UNTRACKED,   /* new flow, no free entry in its buckets: to working, no entry */
        GRM_STAT_FLOW_OVER_QUOTA,  /* new flow past its source's quota: to working, no entry */
        GRM_STAT_PROBE,            /* grmd's steering probe (struct grm_probe): recorded, dropped */
        _GRM_STAT_MAX,
};

/* Value of the "config" array (one entry). The working-generation flip is one update of it. */
struct grm_config {
        __u32 working_slot;     /* slot of the working generation, or GRM_SLOT_NONE */
        __u32 pending_slot;     /* newest starting generation while none works, or GRM_SLOT_NONE */
        __u32 dissector;        /* enum grm_dissector */
        __u32 flow_buckets;     /* buckets in the flow table (its max_entries), fixed */
        __u64 flow_timeout_ns;  /* flow entries idle longer than this are new flows */
        __u64 flow_hash_seed;   /* secret of the flow table's hash, fixed for the table's life */
        __u32 flow_timeout_ticks;  /* flow_timeout_ns in ticks (jiffies, capped) */
        __u32 flow_touch_ticks;    /* refresh interval in ticks, >= 1 */
        __u32 flow_source_quota;   /* entries per source and quota window; 0: no quota */
        __u32 flow_quota_window_ticks; /* length of a quota window in ticks, >= 1 */
        __u32 maps_abi;         /* GRM_MAPS_ABI_VERSION of the grmd that created the maps */
        __u32 working_nsocks;   /* slots[working_slot].nsocks, copied with every write of the
                                 * config, so that the dissector none's path reads one map
                                 * value; 0 (also what an older grmd left in this place): read
                                 * the slot */
};

/* Value of the "slot_tcp" per-CPU array, indexed by slot: what the TCP program did for the
 * generation in that slot since grmd activated it. */
struct grm_slot_tcp {
        __u64 connections;      /* new connections steered to its listeners */
        __u64 migrated;         /* requests moved into its listeners from closing ones */
};

/* Value of the "slots" array, indexed by slot: which generation lives there, with how many
 * sockets per group. gen == 0 means the slot is free. */
struct grm_slot {
        __u32 gen;
        __u32 nsocks;
};

/* A flow's key, hashed into its tag and buckets (grm_flow_hash()). IPv4 remotes are v4-mapped
 * (::ffff:a.b.c.d), so a dual-stack socket sees the same key for a client whether it arrives as
 * IPv4 or v4-mapped IPv6. */
struct grm_flow_key {
        __u32 group;
        __u16 port;             /* remote port, network byte order */
        __u16 _pad;
        __u32 addr[4];          /* remote address, network byte order */
};

/* An entry's gen while the CPU that took it writes its time and socket (steer.bpf.c's claim()):
 * no live generation has this number (grmd stops numbering before it). */
#define GRM_GEN_CLAIMING        0xffffffffU

/* One flow table entry. tag == 0: empty. The owner is the generation number and socket array
 * index; the slot is the index's (steer-api.h's layout), so an entry of a generation that left
 * its slot is stale even when a later generation has taken the slot. */
struct grm_flow_entry {
        __u32 tag;              /* the key's tag, never 0 */
        __u32 gen;              /* generation that owns the flow, or GRM_GEN_CLAIMING */
        __u32 seen;             /* last refresh, in ticks (jiffies) modulo 2^32 */
        __u16 index;            /* socket array index of the owning socket */
        __u16 _reserved;
};

/*
 * Dissector quic: the QUIC-LB plaintext connection ID (draft-ietf-quic-load-balancers) grm asks
 * servers to issue (docs/QUIC.md is the contract for server authors):
 *
 *     octet 0             config id (3 high bits) | CID length - 1 (5 low bits)
 *     octets 1..P         the prefix (QuicServerIdPrefix=, P = 0..8 octets), octet for octet
 *     octets P+1..P+3     grm's server ID, 24 bits, big-endian:
 *                             slot (4 bits) | socket (5 bits) | generation mod 2^15 (15 bits)
 *     octets P+4..        at least 4 octets the server chooses; 8 to 20 octets in all
 *
 * "socket" is the socket's number within its generation and group (the group is the address the
 * datagram arrived on). The generation bits tell a slot's current generation from the older
 * generations that used the slot before it: a reused slot captures an older generation's IDs
 * only when the two generation numbers are 2^15 apart (see docs/QUIC.md).
 */
#define GRM_QUIC_CID_MIN            8U
#define GRM_QUIC_CID_MAX            20U
#define GRM_QUIC_PREFIX_MAX         8U
#define GRM_QUIC_GRM_OCTETS         3U
#define GRM_QUIC_RANDOM_MIN         4U
#define GRM_QUIC_CONFIG_IDS         8U      /* the 3-bit config id; 7 (0b111) is never grm's */
#define GRM_QUIC_CONFIG_ID_UNROUTABLE 7U
#define GRM_QUIC_SLOT_SHIFT         20U
#define GRM_QUIC_SOCK_SHIFT         15U
#define GRM_QUIC_SOCK_MASK          0x1fU
#define GRM_QUIC_GEN_BITS           15U
#define GRM_QUIC_GEN_MASK           0x7fffU

/* QUIC versions the quic dissector parses long headers of. */
#define GRM_QUIC_VERSION_1          0x00000001U /* RFC 9000 */
#define GRM_QUIC_VERSION_2          0x6b3343cfU /* RFC 9369 */

/* Clients pad every datagram that carries an Initial packet to at least this (RFC 9000 §14.1);
 * only such datagrams create first-flight entries. */
#define GRM_QUIC_INITIAL_MIN        1200U

/* A first-flight entry (client-chosen DCID -> socket) is used for this long after the last
 * Initial datagram that created or refreshed it. A handshake that takes longer than that falls
 * back to the flow table. */
#define GRM_QUIC_FIRST_FLIGHT_NS    (10ULL * 1000000000ULL)

/* Value of the "quic_configs" array, indexed by config id: the prefix that CIDs with that config
 * id carry. grmd writes the entry of the config id it gives each new generation; entry 7 is
 * never active. The prefix is kept as a number so that the program compares it in one step:
 * the octets big-endian and left-aligned (octet 0 in bits 63..56), the rest zero. */
struct grm_quic_config {
        __u32 active;           /* 0: CIDs with this config id are not grm's */
        __u32 prefix_len;       /* octets, 0..GRM_QUIC_PREFIX_MAX */
        __u64 prefix;           /* the octets as described above */
        __u64 prefix_mask;      /* ones over the prefix's octets */
};

/* Key of the first-flight table: the client-chosen DCID of an Initial packet, per group. */
struct grm_first_flight_key {
        __u32 group;
        __u32 len;              /* DCID length, GRM_QUIC_CID_MIN..GRM_QUIC_CID_MAX */
        __u8 dcid[GRM_QUIC_CID_MAX]; /* octets past len are zero */
};

/* Value of the first-flight table. */
struct grm_flow_value {
        __u64 last_seen_ns;     /* bpf_ktime_get_coarse_ns() of the last refresh */
        __u32 gen;              /* generation that owns the flow */
        __u32 index;            /* socket array index of the owning socket */
};
/* A bucket: entries bucket * GRM_FLOW_WAYS .. + GRM_FLOW_WAYS - 1 of the "flows" array, one
 * cache line. */
struct grm_flow_bucket {
        struct grm_flow_entry entries[GRM_FLOW_WAYS];
};

/* Value of the "flow_sources" array, indexed by a source's hash: new entries that source made
 * in the current quota window. */
struct grm_flow_source {
        __u32 window;           /* quota window number: ticks / flow_quota_window_ticks */
        __u32 created;
};

static inline __u64 grm_flow_rotl64(__u64 x, unsigned r) {
        return (x << r) | (x >> (64 - r));
}

/* The flow table's hash of a key (the program's and the tests' computation): a multiply-rotate
 * mix of the key's words and the seed, finished by murmur3's fmix64. Not cryptographic; the seed
 * keeps an attacker from choosing keys that share buckets (and a shared bucket costs a flow only
 * its entry, never its socket). */
static inline __u64 grm_flow_hash(const struct grm_flow_key *key, __u64 seed) {
        __u64 h = seed ^ 0x9e3779b97f4a7c15ULL;
        __u64 w[3] = {
                ((__u64) key->group << 32) | key->port,
                ((__u64) key->addr[0] << 32) | key->addr[1],
                ((__u64) key->addr[2] << 32) | key->addr[3],
        };

        for (unsigned i = 0; i < 3; i++) {
                h ^= grm_flow_rotl64(w[i] * 0x87c37b91114253d5ULL, 31) * 0x4cf5ad432745937fULL;
                h = grm_flow_rotl64(h, 27) * 5 + 0x52dce729;
        }
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return h;
}

/* The tag (never 0) and the two buckets of a hash, for a table of n_buckets. */
static inline __u32 grm_flow_tag(__u64 hash) {
        __u32 tag = (__u32) hash;

        return tag ? tag : 1;
}

static inline __u32 grm_flow_bucket1(__u64 hash, __u32 n_buckets) {
        return (__u32) (((hash >> 32) * n_buckets) >> 32);
}

static inline __u32 grm_flow_bucket2(__u64 hash, __u32 n_buckets) {
        __u32 mixed = (__u32) ((hash >> 32) ^ ((__u64) (__u32) hash * 0x9e3779b1U));

        return (__u32) (((__u64) ((__u32) (mixed * 0x85ebca6bU) ^ (mixed >> 16)) * n_buckets) >> 32);
}

/* grmd's steering probe: the whole UDP payload of a datagram grmd sends to each UDP group to see
 * that the group's reuseport program is grm's. The program recognises it by the token (random,
 * chosen by each grmd before it loads the program, as the read-only global probe_token), writes
 * the nonce to probes[group] and drops it: no instance ever sees it, and no other program (a
 * cBPF filter, the kernel's hash) can write grm's map. */
struct grm_probe {
        __u64 token;
        __u64 nonce;
};
