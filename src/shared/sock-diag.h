/* SPDX-License-Identifier: MIT */
/*
 * Receive queues of the generations' sockets, as the kernel reports them (NETLINK_SOCK_DIAG,
 * inet_diag with SK_MEMINFO), and the rule that calls a socket "not read": grmd hands its
 * sockets to the instance and keeps no copy, so it recognises them by their SO_COOKIE.
 * Library code: does not log.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct SockQueue {
        uint64_t cookie;        /* in: the socket's SO_COOKIE */
        bool found;             /* out: the kernel still has it */
        uint32_t queued_bytes;  /* out: receive queue (SK_MEMINFO_RMEM_ALLOC) */
        uint32_t rcvbuf;        /* out: its limit */
        uint32_t drops;         /* out: datagrams dropped on it (SK_MEMINFO_DROPS) */
} SockQueue;

/**
 * sock_diag_queues() - look up sockets by cookie in the calling network namespace.
 * @protocol: IPPROTO_UDP or IPPROTO_TCP (IPv4 and IPv6 are both dumped)
 * @socks: the sockets; found and the counters are filled for those the kernel has
 * @n: how many
 * Return: 0, or -errno from the netlink socket.
 */
int sock_diag_queues(int protocol, SockQueue *socks, size_t n);

/* How many samples in a row a socket's queue must hold data without shrinking. */
#define SOCK_WATCH_SAMPLES 3U

typedef struct SockWatch {
        uint32_t last_queued, last_drops;
        unsigned stalled;       /* consecutive samples with data queued and not shrinking */
        bool unread;
} SockWatch;

/**
 * sock_watch_update() - feed one sample (taken about a second after the previous one).
 * A socket is "unread" once SOCK_WATCH_SAMPLES samples in a row found data queued and the
 * queue no smaller than before (growing, full and dropping, or stuck): what a socket nobody
 * reads looks like, and what a read one never does for seconds unless its reader cannot keep
 * up, which deserves the same warning. It is read again as soon as its queue shrinks or
 * empties. Return: true when the verdict (w->unread) changed.
 */
bool sock_watch_update(SockWatch *w, const SockQueue *q);
