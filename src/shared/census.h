/* SPDX-License-Identifier: MIT */
/*
 * The socket census: every socket bound to a given set of local ports in the caller's network
 * namespace (UDP: all of them, connected or not; TCP: listeners), with its owner uid, inode,
 * SO_COOKIE, SO_REUSEPORT flag and reuseport group, read by BPF socket iterators
 * (bpf/census.bpf.c; loading them needs CAP_PERFMON). What a group's steering program cannot see
 * from inside: sockets on the same address in another reuseport group (which get the datagrams
 * that group's lookups find, without grm's program), and connected sockets that kept
 * SO_REUSEPORT (the next bind to the address joins a new group around them).
 *
 * Also the rule grmd applies to each socket (census_classify(), pure) and the lookup of the
 * processes that hold a socket (/proc/PID/fd). Library code: does not log; -errno returns.
 *
 * Group numbers are per scan: 1, 2, ... in the order the groups were first met, 0 for a socket
 * in no group. Two sockets are in the same reuseport group if and only if they have the same
 * non-zero number in one scan. The numbers come from the groups' identity in the kernel, not
 * from the kernel's reuseport_id, which older kernels assign only once a socket of the group
 * enters a REUSEPORT_SOCKARRAY (Linux 6.18 numbers every group).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct Census Census;

typedef struct CensusPort {
        int protocol;            /* IPPROTO_UDP or IPPROTO_TCP */
        uint16_t port;
} CensusPort;

typedef struct CensusSocket {
        uint64_t cookie;         /* SO_COOKIE */
        uint64_t inode;          /* socket:[inode] in /proc/PID/fd; 0: none (closing) */
        uint32_t group;          /* reuseport group, numbered per scan; 0: none */
        uint32_t reuseport_id;   /* the kernel's id of the group (for debugging; see above) */
        uint32_t uid;            /* owner (sk_uid) */
        uint32_t bound_dev_if;   /* SO_BINDTODEVICE ifindex, 0: none */
        int family;              /* AF_INET, AF_INET6 */
        int protocol;            /* IPPROTO_UDP, IPPROTO_TCP */
        uint8_t local_addr[16];  /* network byte order, IPv4 in the first 4 bytes */
        uint8_t remote_addr[16];
        uint16_t local_port;     /* host byte order */
        uint16_t remote_port;    /* 0: not connected */
        bool connected;          /* UDP: connect()ed (TCP records are listeners: never) */
        bool reuseport;          /* SO_REUSEPORT */
        bool reuseaddr;          /* SO_REUSEADDR */
        bool ipv6only;           /* IPV6_V6ONLY */
} CensusSocket;

/* At most this many sockets per scan (-E2BIG beyond). */
#define CENSUS_MAX_SOCKETS (1U << 18)

/**
 * census_new() - load and attach the census iterators.
 * @ret: the new object
 * Return: 0; -EPERM without CAP_PERFMON (or CAP_SYS_ADMIN) and CAP_BPF; -errno from libbpf
 * (-ENOENT or -EINVAL on a kernel without BTF or without the udp or tcp iterator).
 */
int census_new(Census **ret);
Census *census_free(Census *c);
static inline void census_freep(Census **c) {
        census_free(*c);
}

/**
 * census_scan() - list the sockets bound to the given ports, in the calling network namespace.
 * @ports: protocol and local port of each (duplicates are harmless); n_ports 0 lists nothing
 * @ret: a new array (free() it), NULL when empty
 * @ret_n: its length
 * A socket bound or closed during the scan may or may not be in it.
 * Return: 0, -EINVAL (a protocol other than UDP or TCP), -E2BIG (over CENSUS_MAX_SOCKETS),
 * -ENOMEM, -errno from the iterators.
 */
int census_scan(Census *c, const CensusPort *ports, size_t n_ports, CensusSocket **ret, size_t *ret_n);

/* The socket with this cookie in a scan's result, or NULL. */
const CensusSocket *census_find(const CensusSocket *socks, size_t n, uint64_t cookie);

/**
 * census_same_group() - whether two sockets of one scan are in the same reuseport group.
 * Return: 1 (same group), 0 (not, or one of them is in none), -ENOENT (a cookie not in the scan).
 */
int census_same_group(const CensusSocket *socks, size_t n, uint64_t cookie, uint64_t other_cookie);

/* SO_COOKIE of fd. */
int census_socket_cookie(int fd, uint64_t *ret);

/**
 * census_fd_in_group_of() - scan fd's port and say whether fd is in group_fd's reuseport group.
 * @fd: a bound UDP socket or TCP listener (not taken over)
 * @group_fd: a socket of the group fd should be in (e.g. grmd's original socket of the address)
 * For grmd to check a socket it just bound: it joins the group of the newest matching socket of
 * the port, which need not be the steered one (a connected per-client socket that kept
 * SO_REUSEPORT starts a new group).
 * Return: 1, 0, -ENOENT (either socket not found: not bound, or not a listener), -errno.
 */
int census_fd_in_group_of(Census *c, int fd, int group_fd);

typedef enum CensusVerdict {
        CENSUS_NORMAL,              /* another address, the steered group, or a connected socket
                                     * without SO_REUSEPORT (per-client: gets only its peer's) */
        CENSUS_OUTSIDE,             /* takes datagrams (UDP: not connected) or connections (TCP
                                     * listener) for the steered address, outside its group */
        CENSUS_CONNECTED_REUSEPORT, /* connected UDP socket on the address that kept SO_REUSEPORT:
                                     * the next reuseport bind there joins a new group around it */
        _CENSUS_VERDICT_MAX,
} CensusVerdict;

/**
 * census_classify() - what a socket means for a steered group.
 * @s: a socket of the scan
 * @steered: the scan's entry of a socket of the steered group (grmd's original socket)
 * An unconnected socket concerns the group's address when it is bound to the same address, or
 * the group is bound to its family's wildcard (an IPv6 wildcard group that is not IPV6_V6ONLY
 * also takes IPv4: an IPv4 socket on its port concerns it); a socket on a more specific
 * address wins the kernel's lookup over the wildcard group. A socket bound to the wildcard next
 * to a group on a specific address only gets what the group would not, and is NORMAL.
 */
CensusVerdict census_classify(const CensusSocket *s, const CensusSocket *steered);
/* Whether s is on the steered socket's protocol and port, bound to an address whose datagrams it
 * can take (as census_classify() decides), connected or not. */
bool census_concerns(const CensusSocket *s, const CensusSocket *steered);
const char *census_verdict_to_string(CensusVerdict v);

/* "127.0.0.1:9000", "[::1]:53" (local or remote address of s). */
#define CENSUS_ADDRESS_MAX 64
const char *census_format_address(const CensusSocket *s, bool remote, char buf[static CENSUS_ADDRESS_MAX]);

/**
 * census_owners() - the processes holding sockets, found from the kernel side (iter/task_file).
 * @inodes: the sockets' inodes (0 entries are skipped)
 * @ret_pids: for each, the lowest pid (in the caller's PID namespace) with an fd on it, 0 if none
 * @ret_comms: for each, that process's command ("" if none), may be NULL
 * Unlike /proc/PID/fd this needs neither CAP_SYS_PTRACE nor the processes' uid, and sees through
 * ProtectProc=invisible. Walks every fd of every process: call it for the few sockets to report.
 * Return: 0; -EOPNOTSUPP if the kernel has no task_file iterator (use census_find_owners());
 * -errno.
 */
int census_owners(Census *c, const uint64_t *inodes, size_t n, pid_t *ret_pids, char (*ret_comms)[16]);

/**
 * census_find_owners() - the processes holding sockets, from /proc/PID/fd.
 * @proc: "/proc" (a test may pass another tree)
 * @inodes: the sockets' inodes (0 entries are skipped)
 * @ret_pids: for each, the lowest pid with an fd on it, 0 if none is visible
 * Reads every process's fd table once: call it for the few sockets to report, not for all.
 * Return: 0, -errno from opening @proc.
 */
int census_find_owners(const char *proc, const uint64_t *inodes, size_t n, pid_t *ret_pids);
