/* SPDX-License-Identifier: MIT */
/*
 * sock_diag lookups of the generations' sockets by cookie, and the "not read" rule (see
 * sock-diag.h). One dump per family and protocol: a server's own sockets (a recursor's
 * outgoing queries) are skipped by cookie. Bounded: at most a few thousand sockets per
 * dump are looked at before it gives up, since grmd samples every second.
 */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "sock-diag.h"

static SockQueue *find(SockQueue *socks, size_t n, uint64_t cookie) {
        for (size_t i = 0; i < n; i++)
                if (socks[i].cookie == cookie)
                        return &socks[i];
        return NULL;
}

static void take_message(const struct nlmsghdr *h, SockQueue *socks, size_t n) {
        const struct inet_diag_msg *msg = NLMSG_DATA(h);
        size_t len = h->nlmsg_len;
        const struct rtattr *a;
        uint64_t cookie;
        SockQueue *q;

        if (len < NLMSG_LENGTH(sizeof(*msg)))
                return;
        cookie = (uint64_t) msg->id.idiag_cookie[0] | (uint64_t) msg->id.idiag_cookie[1] << 32;
        q = find(socks, n, cookie);
        if (!q)
                return;
        q->found = true;
        q->queued_bytes = msg->idiag_rqueue;
        len -= NLMSG_LENGTH(sizeof(*msg));
        for (a = (const struct rtattr *) (msg + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
                if (a->rta_type == INET_DIAG_SKMEMINFO && RTA_PAYLOAD(a) >= sizeof(uint32_t) * (SK_MEMINFO_DROPS + 1)) {
                        const uint32_t *mem = RTA_DATA(a);
                        q->queued_bytes = mem[SK_MEMINFO_RMEM_ALLOC];
                        q->rcvbuf = mem[SK_MEMINFO_RCVBUF];
                        q->drops = mem[SK_MEMINFO_DROPS];
                }
}

static int dump(int fd, int family, int protocol, SockQueue *socks, size_t n) {
        struct {
                struct nlmsghdr h;
                struct inet_diag_req_v2 r;
        } req = {
                .h = {
                        .nlmsg_len = sizeof(req),
                        .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                        .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
                },
                .r = {
                        .sdiag_family = (__u8) family,
                        .sdiag_protocol = (__u8) protocol,
                        .idiag_ext = 1 << (INET_DIAG_SKMEMINFO - 1),
                        .idiag_states = ~0U,
                },
        };
        struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
        _Alignas(struct nlmsghdr) char buf[32768];
        unsigned seen = 0;

        if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();
        for (;;) {
                ssize_t got = recv(fd, buf, sizeof(buf), 0);
                size_t len;

                if (got < 0)
                        return errno == EINTR ? -EINTR : negative_errno();
                if (got == 0)
                        return -EIO;
                len = (size_t) got;
                for (struct nlmsghdr *h = (struct nlmsghdr *) buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
                        if (h->nlmsg_type == NLMSG_DONE)
                                return 0;
                        if (h->nlmsg_type == NLMSG_ERROR) {
                                const struct nlmsgerr *e = NLMSG_DATA(h);
                                return h->nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) && e->error < 0 ? e->error : -EIO;
                        }
                        if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY)
                                take_message(h, socks, n);
                        if (++seen > 1000000)
                                return -E2BIG;
                }
        }
}

int sock_diag_queues(int protocol, SockQueue *socks, size_t n) {
        static const int families[] = { AF_INET, AF_INET6 };
        int fd, r = 0;

        if (!socks && n > 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                socks[i].found = false;
        fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (fd < 0)
                return negative_errno();
        for (size_t f = 0; f < ELEMENTSOF(families) && r >= 0; f++)
                r = dump(fd, families[f], protocol, socks, n);
        close(fd);
        return r < 0 ? r : 0;
}

bool sock_watch_update(SockWatch *w, const SockQueue *q) {
        bool was = w->unread;

        if (!q->found || q->queued_bytes == 0 || q->queued_bytes < w->last_queued)
                w->stalled = 0;
        else if (w->stalled < SOCK_WATCH_SAMPLES)
                w->stalled++;
        w->last_queued = q->found ? q->queued_bytes : 0;
        w->last_drops = q->found ? q->drops : w->last_drops;
        w->unread = w->stalled >= SOCK_WATCH_SAMPLES;
        return w->unread != was;
}
