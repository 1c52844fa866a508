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

/* A flow entry's last-seen time is refreshed at most this often (ns), and at least twice per flow
 * timeout, to keep the hot path from writing the shared entry on every packet. An idle flow
 * therefore expires after between max(timeout - 1 s, timeout / 2) and timeout of idleness; a flow
 * that never pauses longer than that never expires. */
#define GRM_FLOW_TOUCH_NS       1000000000ULL

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
        _GRM_STAT_MAX,
};

/* Value of the "config" array (one entry). The working-generation flip is one update of it. */
struct grm_config {
        __u32 working_slot;     /* slot of the working generation, or GRM_SLOT_NONE */
        __u32 pending_slot;     /* newest starting generation while none works, or GRM_SLOT_NONE */
        __u32 dissector;        /* enum grm_dissector */
        __u32 _pad;
        __u64 flow_timeout_ns;  /* flow entries idle longer than this are new flows */
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

/* Key of the flow table. IPv4 remotes are stored v4-mapped (::ffff:a.b.c.d), so a dual-stack
 * socket sees the same key for a client whether it arrives as IPv4 or v4-mapped IPv6. */
struct grm_flow_key {
        __u32 group;
        __u16 port;             /* remote port, network byte order */
        __u16 _pad;
        __u32 addr[4];          /* remote address, network byte order */
};

struct grm_flow_value {
        __u64 last_seen_ns;     /* bpf_ktime_get_coarse_ns() of the last refresh */
        __u32 gen;              /* generation that owns the flow */
        __u32 index;            /* socket array index of the owning socket */
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
