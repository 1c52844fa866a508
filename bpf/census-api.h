/* SPDX-License-Identifier: MIT */
/*
 * The contract between the census iterators (bpf/census.bpf.c) and src/shared/census.c: what
 * the iterators write for each socket of a watched port, and the port filter they read. Like
 * steer-api.h: plain __u* types, no includes; the includer brings them.
 */
#pragma once

/* census_ports: one bit per local port (bit port % 8 of byte port / 8), a map entry per
 * protocol. */
#define GRM_CENSUS_PORTS_UDP    0U
#define GRM_CENSUS_PORTS_TCP    1U
#define GRM_CENSUS_PORT_BYTES   8192U

struct grm_census_ports {
        __u8 bits[GRM_CENSUS_PORT_BYTES];
};

/* One socket, as the kernel has it at the moment the iterator passes it. UDP: every socket on
 * a watched port; TCP: listeners only (established connections are never in a reuseport
 * lookup). Addresses are in network byte order (IPv4 in the first 4 bytes), ports in host
 * byte order. */
struct grm_census_record {
        __u64 cookie;            /* SO_COOKIE */
        __u64 inode;             /* the socket's inode (socket:[N] in /proc/PID/fd), 0: none */
        __u64 group;             /* the reuseport group (kernel address of sk_reuseport_cb: never
                                  * shown; census.c turns it into a per-scan number), 0: none */
        __u32 reuseport_id;      /* the kernel's id of the group; older kernels give one only
                                  * once a socket of it enters a REUSEPORT_SOCKARRAY */
        __u32 uid;               /* owner (sk_uid, in the reader's user namespace) */
        __u32 bound_dev_if;      /* SO_BINDTODEVICE ifindex, 0: none */
        __u16 local_port;
        __u16 remote_port;       /* 0: not connected */
        __u8 local_addr[16];
        __u8 remote_addr[16];
        __u8 family;             /* AF_INET, AF_INET6 */
        __u8 protocol;           /* IPPROTO_UDP, IPPROTO_TCP */
        __u8 state;              /* TCP_* numbering: UDP 1 (connected) or 7 (not); TCP 10 (listen) */
        __u8 reuseport;          /* SO_REUSEPORT set */
        __u8 reuseaddr;          /* SO_REUSEADDR set (sk_reuse) */
        __u8 ipv6only;           /* IPV6_V6ONLY set */
        __u8 pad[6];
};

/* census_inodes: the sockets whose holders iter/task_file looks for (key: inode; value unused),
 * at most GRM_CENSUS_MAX_OWNERS. */
#define GRM_CENSUS_MAX_OWNERS   64U

/* One process holding one of those sockets (one record per process and socket it holds, each
 * process once however many threads it has). */
struct grm_census_owner {
        __u64 inode;
        __u32 pid;               /* the process (tgid) in the reader's PID namespace, 0: not in it */
        __u32 pad;
        char comm[16];           /* the process's command (its main thread's) */
};
