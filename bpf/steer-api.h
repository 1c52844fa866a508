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
