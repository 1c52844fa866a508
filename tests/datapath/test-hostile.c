/* SPDX-License-Identifier: MIT */
/*
 * Hostile and unusual packets against the steering program (bpf/steer.bpf.c) and the code that
 * ships with it (src/shared/steering.c), on real SO_REUSEPORT sockets in a private network
 * namespace (datapath_setup() in datapath-util.h), like test-steering.c:
 *
 *  - sizes: datagrams of 0, 1 and 65,507 bytes (the largest UDP payload over IPv4) reach the
 *    right generation, intact, and are counted, before and after a flip, over IPv4, IPv6 and
 *    dual-stack, with both dissectors;
 *  - v4-mapped keys: an IPv4 client is keyed as ::ffff:a.b.c.d (read back from the flow table
 *    itself), so on a dual-stack [::] group a client that first sends over IPv4 and then from an
 *    AF_INET6 socket with the same v4-mapped address and port, or as an actual IPv6 packet from
 *    that v4-mapped address (raw socket), is one flow; a native IPv6 client is keyed by its own
 *    address;
 *  - a flood of new flows from thousands of source addresses (every 127/8 address is local on
 *    lo, so no spoofing is needed) against a 4,096-entry table: while the table has room, flows
 *    established before the flood stay on their socket; past its size, every packet is still
 *    delivered and counted under exactly one verdict, the table fills to its size and no live
 *    entry is evicted: new flows past it are untracked (flow_untracked), delivered to the
 *    working generation (test-flow-table.c has the floods of issue 9 and the table's edges);
 *  - packets a UDP socket cannot send, made with raw sockets. Truncated ones (a UDP length that
 *    claims more than the packet holds, or less than the UDP header) never reach the program:
 *    UDP drops them before it looks for a socket; an IPv6 payload length past the packet is
 *    dropped by IPv6 itself, and an IPv4 total length cannot be forged (the kernel writes it
 *    into a raw packet itself). A UDP length shorter than the
 *    payload is trimmed to and steered normally. A bad checksum is dropped before the program
 *    runs for short datagrams and after it (unread, never delivered) for long ones. Each case
 *    is asserted exactly, verdict counters and delivery both.
 *
 * The program's own "could not read the remote address" path (GRM_STAT_ERR_PARSE) cannot be
 * reached from outside: by the time the kernel looks up a reuseport group, it has checked that
 * the UDP header is present and the UDP length fits, and the IP header is always there. The
 * tests assert that error_parse stays 0 through everything above.
 *
 * Each test runs in a forked child (CK_FORK), builds its own rig (one group: an original socket,
 * then generations of sockets registered in a slot) and closes every fd it opened.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "datapath-cases.h"
#include "datapath-util.h"
#include "flow-table.h"
#include "macro.h"
#include "steering.h"

#define DELIVERY_TIMEOUT_MSEC   2000    /* how long an expected datagram may take to arrive */
#define DROP_GRACE_MSEC         100     /* how long to look for datagrams that must not come */
#define RIG_MAX_SOCKS           16
#define MAX_UDP_PAYLOAD         65507   /* 65535 - 20 (IPv4 header) - 8 (UDP header) */
#define SERVER_RCVBUF           (4 << 20)
#define MIN_SIZE(a, b)          ((size_t) (a) < (size_t) (b) ? (size_t) (a) : (size_t) (b))

/* Slots neither 0 nor equal to the generation, as in test-steering.c. */
#define SLOT_GEN1 3U
#define SLOT_GEN2 9U


typedef struct RigSock {
        int fd;                 /* -EBADF once closed */
        uint32_t gen;           /* 0: the group's original socket */
        unsigned slot;
        unsigned index;         /* socket number within its generation */
} RigSock;

typedef struct Rig {
        const Case *c;
        Steering *steering;
        unsigned n_fds_at_start;
        uint16_t port;
        struct sockaddr_storage dest;   /* where clients send */
        socklen_t dest_len;
        RigSock socks[RIG_MAX_SOCKS];   /* socks[0] is the original socket */
        unsigned n_socks;
        uint32_t slot_gen[GRM_GEN_SLOTS];
        uint64_t slot_received[GRM_GEN_SLOTS];
        uint8_t *buf;                   /* receive buffer, MAX_UDP_PAYLOAD + 1 bytes */
} Rig;

/* One datagram as a server socket received it. */
typedef struct Arrival {
        int sock;                       /* index into Rig.socks */
        struct sockaddr_storage from;
        ssize_t len;
} Arrival;

typedef struct Counters {
        uint64_t v[_GRM_STAT_MAX];
} Counters;

/* The remote as the flow table keys it: IPv6, IPv4 v4-mapped (bpf/steer-api.h). */
static void sockaddr_key_addr(const struct sockaddr_storage *sa, struct in6_addr *ret) {
        if (sa->ss_family == AF_INET) {
                memset(ret, 0, sizeof(*ret));
                ret->s6_addr[10] = ret->s6_addr[11] = 0xff;
                memcpy(&ret->s6_addr[12], &((const struct sockaddr_in *) sa)->sin_addr, 4);
        } else
                *ret = ((const struct sockaddr_in6 *) sa)->sin6_addr;
}

static bool sockaddr_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
        struct in6_addr x, y;

        sockaddr_key_addr(a, &x);
        sockaddr_key_addr(b, &y);
        return memcmp(&x, &y, sizeof(x)) == 0 && sockaddr_port(a) == sockaddr_port(b);
}

static const char *sockaddr_string(const struct sockaddr_storage *sa, char *buf, size_t size) {
        char a[INET6_ADDRSTRLEN] = "?";
        struct in6_addr k;

        sockaddr_key_addr(sa, &k);
        (void) inet_ntop(AF_INET6, &k, a, sizeof(a));
        snprintf(buf, size, "[%s]:%u", a, sockaddr_port(sa));
        return buf;
}

static int open_server_socket(const Family *f, uint16_t port, uint16_t *ret_port) {
        struct sockaddr_storage sa;
        socklen_t len;
        int fd, one = 1, rcvbuf = SERVER_RCVBUF;

        fd = socket(f->server_domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        expect(fd >= 0, "socket(%s): %m", f->name);
        expect(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0,
               "SO_REUSEPORT: %m");
        /* Room for several 64 KiB datagrams and a burst of small ones. */
        expect(setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) == 0,
               "SO_RCVBUFFORCE: %m");
        if (f->server_domain == AF_INET6) {
                int v6only = !f->dual_stack;

                expect(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) == 0,
                       "IPV6_V6ONLY: %m");
        }
        len = make_sockaddr(f->server_domain, f->server_addr, port, &sa);
        expect(bind(fd, (struct sockaddr *) &sa, len) == 0, "bind(%s port %u): %m",
               f->server_addr, port);
        if (ret_port) {
                len = sizeof(sa);
                expect(getsockname(fd, (struct sockaddr *) &sa, &len) == 0, "getsockname: %m");
                *ret_port = sockaddr_port(&sa);
        }
        return fd;
}

/* A client socket of domain bound to addr (port 0: any); v6only -1 leaves the default. */
static int open_client(int domain, const char *addr, uint16_t port, int v6only) {
        struct sockaddr_storage sa;
        socklen_t len = make_sockaddr(domain, addr, port, &sa);
        int fd = socket(domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        expect(fd >= 0, "client socket(): %m");
        if (v6only >= 0)
                expect(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) == 0,
                       "IPV6_V6ONLY: %m");
        expect(bind(fd, (struct sockaddr *) &sa, len) == 0, "client bind(%s port %u): %m", addr,
               port);
        return fd;
}

static uint16_t local_port(int fd) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);

        expect(getsockname(fd, (struct sockaddr *) &sa, &len) == 0, "getsockname: %m");
        return sockaddr_port(&sa);
}

static Rig *rig_new(const Case *c, unsigned flow_table_size) {
        Rig *rig;
        int r, fd;

        current_case = c;
        rig = calloc(1, sizeof(*rig));
        expect(rig, "out of memory");
        rig->c = c;
        rig->n_fds_at_start = count_open_fds();
        rig->buf = malloc(MAX_UDP_PAYLOAD + 1);
        expect(rig->buf, "out of memory");

        r = steering_new(flow_table_size, &rig->steering);
        expect(r == 0, "steering_new(%u): %s", flow_table_size, strerror(-r));

        fd = open_server_socket(c->family, 0, &rig->port);
        rig->socks[rig->n_socks++] = (RigSock) { .fd = fd };
        rig->dest_len = make_sockaddr(c->family->client_domain, c->family->client_addr, rig->port,
                                      &rig->dest);
        r = steering_add_group(rig->steering, fd, NULL);
        expect(r == 0, "steering_add_group(): %s", strerror(-r));
        r = steering_set_settings(rig->steering, c->dissector, 125 * USEC_PER_SEC);
        expect(r == 0, "steering_set_settings(): %s", strerror(-r));
        return rig;
}

/* Closes what the rig opened and asserts that nothing else stays open. */
static void rig_free(Rig *rig) {
        for (unsigned i = 0; i < rig->n_socks; i++)
                rig->socks[i].fd = safe_close(rig->socks[i].fd);
        rig->steering = steering_free(rig->steering);
        free(rig->buf);
        expect_eq(count_open_fds(), rig->n_fds_at_start, "open fds after freeing the rig");
        free(rig);
}

/* Starts generation gen in slot with n_socks sockets and makes it the working one. */
static void gen_start_working(Rig *rig, unsigned slot, uint32_t gen, unsigned n_socks) {
        int r;

        for (unsigned i = 0; i < n_socks; i++) {
                int fd = open_server_socket(rig->c->family, rig->port, NULL);

                expect(rig->n_socks < RIG_MAX_SOCKS, "too many server sockets");
                rig->socks[rig->n_socks++] = (RigSock) {
                        .fd = fd, .gen = gen, .slot = slot, .index = i,
                };
                r = steering_register_socket(rig->steering, 0, slot, i, fd);
                expect(r == 0, "steering_register_socket(): %s", strerror(-r));
        }
        r = steering_slot_activate(rig->steering, slot, gen, n_socks);
        expect(r == 0, "steering_slot_activate(): %s", strerror(-r));
        rig->slot_gen[slot] = gen;
        rig->slot_received[slot] = 0;
        r = steering_set_working(rig->steering, slot, GRM_SLOT_NONE);
        expect(r == 0, "steering_set_working(): %s", strerror(-r));
}

/* Waits up to timeout_msec for one datagram on any server socket. */
static bool rig_receive(Rig *rig, Arrival *ret, unsigned timeout_msec) {
        uint64_t deadline = now_msec() + timeout_msec;

        for (;;) {
                struct pollfd pfds[RIG_MAX_SOCKS];
                unsigned n = 0;
                uint64_t now;

                for (unsigned i = 0; i < rig->n_socks; i++) {
                        socklen_t len = sizeof(ret->from);
                        ssize_t l;

                        if (rig->socks[i].fd < 0)
                                continue;
                        l = recvfrom(rig->socks[i].fd, rig->buf, MAX_UDP_PAYLOAD + 1,
                                     MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *) &ret->from, &len);
                        if (l >= 0) {
                                ret->sock = (int) i;
                                ret->len = l;
                                if (rig->socks[i].gen != 0)
                                        rig->slot_received[rig->socks[i].slot]++;
                                return true;
                        }
                        expect(errno == EAGAIN, "recvfrom(): %m");
                        pfds[n++] = (struct pollfd) { .fd = rig->socks[i].fd, .events = POLLIN };
                }
                now = now_msec();
                if (now >= deadline)
                        return false;
                expect(poll(pfds, n, (int) (deadline - now)) >= 0 || errno == EINTR, "poll(): %m");
        }
}

static void expect_nothing_more(Rig *rig, const char *what) {
        Arrival a;
        char b[80];

        if (rig_receive(rig, &a, DROP_GRACE_MSEC))
                expect(false, "%s: unexpected datagram of %zd bytes from %s on socket %d", what,
                       a.len, sockaddr_string(&a.from, b, sizeof(b)), a.sock);
}

/* Sends len bytes (a pattern derived from len) from fd, to dest, and returns where it arrived. */
static Arrival send_and_receive(Rig *rig, int fd, const struct sockaddr_storage *dest,
                                socklen_t dest_len, size_t len, const char *what) {
        struct sockaddr_storage self;
        socklen_t self_len = sizeof(self);
        Arrival a;
        uint8_t *payload;
        ssize_t l;
        char b1[80], b2[80];

        payload = malloc(len + 1);
        expect(payload, "out of memory");
        for (size_t i = 0; i < len; i++)
                payload[i] = (uint8_t) (i * 7 + len);
        l = sendto(fd, payload, len, 0, (const struct sockaddr *) dest, dest_len);
        expect(l == (ssize_t) len, "%s: sendto(%zu bytes): %m", what, len);

        expect(rig_receive(rig, &a, DELIVERY_TIMEOUT_MSEC), "%s: the %zu-byte datagram was lost",
               what, len);
        expect_eq(a.len, len, "%s: received length", what);
        expect(memcmp(rig->buf, payload, len) == 0, "%s: the %zu-byte datagram was altered", what,
               len);
        expect(getsockname(fd, (struct sockaddr *) &self, &self_len) == 0, "getsockname: %m");
        expect(sockaddr_same(&a.from, &self), "%s: datagram from %s, expected %s", what,
               sockaddr_string(&a.from, b1, sizeof(b1)), sockaddr_string(&self, b2, sizeof(b2)));
        free(payload);
        return a;
}

static Counters stats_now(Rig *rig) {
        Counters c;
        int r = steering_get_stats(rig->steering, c.v);

        expect(r == 0, "steering_get_stats(): %s", strerror(-r));
        return c;
}

/* The verdict counters moved by exactly expected since *before, and by nothing else. */
static void assert_stats_moved(Rig *rig, Counters *before, const Counters *expected,
                               const char *what) {
        Counters now = stats_now(rig);

        for (int i = 0; i < (int) _GRM_STAT_MAX; i++)
                expect_eq(now.v[i] - before->v[i], expected->v[i], "%s: verdict counter %s", what,
                          grm_stat_to_string(i));
        *before = now;
}

static void assert_stats(Rig *rig, Counters *before, const char *what, int stat, unsigned n) {
        Counters expected = {};

        expected.v[stat] = n;
        assert_stats_moved(rig, before, &expected, what);
}

/* Each active slot's packet counter equals what its sockets received. */
static void assert_slot_packets(Rig *rig, const char *what) {
        for (unsigned slot = 0; slot < GRM_GEN_SLOTS; slot++) {
                uint64_t n;
                int r;

                if (rig->slot_gen[slot] == 0)
                        continue;
                r = steering_get_slot_packets(rig->steering, slot, &n);
                expect(r == 0, "steering_get_slot_packets(): %s", strerror(-r));
                expect_eq(n, rig->slot_received[slot], "%s: packets counted for slot %u", what,
                          slot);
        }
}

static bool is_flow(const Rig *rig) {
        return rig->c->dissector == GRM_DISSECTOR_FLOW;
}

static int verdict_new(const Rig *rig) {
        return is_flow(rig) ? GRM_STAT_FLOW_CREATED : GRM_STAT_WORKING;
}

static int verdict_existing(const Rig *rig) {
        return is_flow(rig) ? GRM_STAT_FLOW_EXISTING : GRM_STAT_WORKING;
}

/* Where a socket sits in the socket array (layout in bpf/steer-api.h; the rig's group is 0). */
static uint32_t rig_sock_array_index(const Rig *rig, int sock) {
        const RigSock *s = &rig->socks[sock];
        const uint32_t group = 0;

        return (group * GRM_GEN_SLOTS + s->slot) * GRM_MAX_SOCKS_PER_GEN + s->index;
}

/* ---- 1. sizes ---- */

START_TEST(test_sizes) {
        static const size_t sizes[] = { 0, 1, MAX_UDP_PAYLOAD };
        Rig *rig = rig_new(&cases_all[_i], 65536);
        Counters st = stats_now(rig);
        int a_fd, b_fd, a_sock = -1;
        char what[96];

        gen_start_working(rig, SLOT_GEN1, 1, 2);
        a_fd = open_client(rig->c->family->client_domain, rig->c->family->client_addr, 0, -1);
        for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                Arrival a;

                snprintf(what, sizeof(what), "flow A, %zu bytes, gen 1 working", sizes[k]);
                a = send_and_receive(rig, a_fd, &rig->dest, rig->dest_len, sizes[k], what);
                expect_eq(rig->socks[a.sock].gen, 1, "%s: generation", what);
                if (is_flow(rig) && a_sock >= 0)
                        expect_eq(a.sock, a_sock, "%s: socket (the flow moved)", what);
                a_sock = a.sock;
                assert_stats(rig, &st, what, k == 0 ? verdict_new(rig) : verdict_existing(rig), 1);
        }

        gen_start_working(rig, SLOT_GEN2, 2, 2);
        b_fd = open_client(rig->c->family->client_domain, rig->c->family->client_addr, 0, -1);
        for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                Arrival a;

                snprintf(what, sizeof(what), "flow A, %zu bytes, after the flip", sizes[k]);
                a = send_and_receive(rig, a_fd, &rig->dest, rig->dest_len, sizes[k], what);
                if (is_flow(rig))
                        expect_eq(a.sock, a_sock, "%s: socket (the flow moved)", what);
                else
                        expect_eq(rig->socks[a.sock].gen, 2, "%s: generation", what);
                assert_stats(rig, &st, what, verdict_existing(rig), 1);

                snprintf(what, sizeof(what), "new flow B, %zu bytes, after the flip", sizes[k]);
                a = send_and_receive(rig, b_fd, &rig->dest, rig->dest_len, sizes[k], what);
                expect_eq(rig->socks[a.sock].gen, 2, "%s: generation", what);
                assert_stats(rig, &st, what, k == 0 ? verdict_new(rig) : verdict_existing(rig), 1);
        }
        expect_nothing_more(rig, "sizes");
        assert_slot_packets(rig, "sizes");
        expect_eq(stats_now(rig).v[GRM_STAT_ERR_PARSE], 0, "error_parse");

        safe_close(a_fd);
        safe_close(b_fd);
        rig_free(rig);
}
END_TEST

/* ---- raw packets: what a UDP socket cannot send ---- */

typedef enum Forgery {
        FORGE_GOOD,             /* well-formed: the control */
        FORGE_ULEN_LONG,        /* UDP length claims 100 bytes more than the packet holds */
        FORGE_ULEN_SHORT,       /* UDP length 4: less than the UDP header */
        FORGE_ULEN_TRIM,        /* UDP length shorter than the IP payload (the rest is padding) */
        FORGE_BAD_CSUM,         /* wrong UDP checksum */
        FORGE_V4_MAPPED_SRC,    /* IPv6 only: source ::ffff:127.0.0.1 */
        FORGE_IP6_PLEN_LONG,    /* IPv6 only: payload length 100 bytes past the packet */
} Forgery;

#define FORGED_PAYLOAD      16U   /* short: the kernel verifies its checksum at once */
#define FORGED_PAYLOAD_LONG 200U  /* past CHECKSUM_BREAK (76 bytes): verified when read */

static uint16_t csum_fold(uint32_t sum) {
        while (sum >> 16)
                sum = (sum & 0xffff) + (sum >> 16);
        return (uint16_t) ~sum;
}

static uint32_t csum_add(uint32_t sum, const void *data, size_t len) {
        const uint8_t *p = data;

        for (size_t i = 0; i + 1 < len; i += 2)
                sum += (uint32_t) (p[i] << 8 | p[i + 1]);
        if (len & 1)
                sum += (uint32_t) (p[len - 1] << 8);
        return sum;
}

/* Builds and sends one UDP packet with its IP header from source port sport to the rig's
 * group, over IPv4 (domain AF_INET) or IPv6. The kernel fills in the IPv4 total length,
 * identification and header checksum; everything else is as built here. */
static void send_forged(Rig *rig, int domain, uint16_t sport, Forgery forgery, size_t payload) {
        uint8_t pkt[sizeof(struct ip6_hdr) + sizeof(struct udphdr) + FORGED_PAYLOAD_LONG] = {};
        size_t ip_len = domain == AF_INET ? sizeof(struct iphdr) : sizeof(struct ip6_hdr);
        struct udphdr *udp = (struct udphdr *) (pkt + ip_len);
        size_t len = ip_len + sizeof(*udp) + payload;
        uint16_t ulen = sizeof(*udp) + payload;
        struct sockaddr_storage dst = {};
        socklen_t dst_len;
        uint32_t sum;
        _cleanup_close_ int fd = -EBADF;

        if (forgery == FORGE_ULEN_LONG)
                ulen += 100;
        else if (forgery == FORGE_ULEN_SHORT)
                ulen = 4;
        else if (forgery == FORGE_ULEN_TRIM)
                ulen = sizeof(*udp) + 4;
        udp->source = htons(sport);
        udp->dest = htons(rig->port);
        udp->len = htons(ulen);
        expect(payload <= FORGED_PAYLOAD_LONG, "payload too large");
        memset(pkt + ip_len + sizeof(*udp), 'x', payload);

        if (domain == AF_INET) {
                struct iphdr *ip = (struct iphdr *) pkt;
                struct sockaddr_in *sin = (struct sockaddr_in *) &dst;

                *ip = (struct iphdr) {
                        .ihl = 5, .version = 4, .ttl = 64, .protocol = IPPROTO_UDP,
                        .saddr = htonl(INADDR_LOOPBACK), .daddr = htonl(INADDR_LOOPBACK),
                };
                /* IPv4: a zero checksum means "none"; a bad one must be non-zero. */
                udp->check = forgery == FORGE_BAD_CSUM ? htons(0x1234) : 0;
                sin->sin_family = AF_INET;
                sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                dst_len = sizeof(*sin);
        } else {
                struct ip6_hdr *ip6 = (struct ip6_hdr *) pkt;
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &dst;
                uint32_t next = htonl(IPPROTO_UDP), plen = htonl(ulen);

                ip6->ip6_flow = htonl(6U << 28);
                ip6->ip6_plen = htons(sizeof(*udp) + payload +
                                      (forgery == FORGE_IP6_PLEN_LONG ? 100 : 0));
                ip6->ip6_nxt = IPPROTO_UDP;
                ip6->ip6_hlim = 64;
                ip6->ip6_src = in6addr_loopback;
                if (forgery == FORGE_V4_MAPPED_SRC)
                        expect(inet_pton(AF_INET6, "::ffff:127.0.0.1", &ip6->ip6_src) == 1,
                               "inet_pton");
                ip6->ip6_dst = in6addr_loopback;
                /* IPv6 requires the checksum: over the pseudo-header and the UDP length's
                 * worth of datagram. */
                sum = csum_add(0, &ip6->ip6_src, 16);
                sum = csum_add(sum, &ip6->ip6_dst, 16);
                sum = csum_add(sum, &plen, 4);
                sum = csum_add(sum, &next, 4);
                sum = csum_add(sum, udp, MIN_SIZE(ulen, sizeof(*udp) + payload));
                udp->check = htons(csum_fold(sum) ?: 0xffff);
                if (forgery == FORGE_BAD_CSUM)
                        udp->check ^= htons(0x0101);
                sin6->sin6_family = AF_INET6;
                sin6->sin6_addr = in6addr_loopback;
                dst_len = sizeof(*sin6);
        }

        fd = socket(domain, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
        expect(fd >= 0, "raw socket(): %m");
        expect(sendto(fd, pkt, len, 0, (struct sockaddr *) &dst, dst_len) == (ssize_t) len,
               "raw sendto(): %m");
}

/* ---- 2. v4-mapped keys ---- */

static void assert_flow_key(Rig *rig, const struct sockaddr_storage *remote, int sock,
                            uint32_t gen, const char *what) {
        struct grm_flow_key key = flow_key_of(remote);
        struct grm_flow_entry e;
        char b[80];

        expect(flow_entry_find(&key, &e, NULL, NULL), "%s: no flow entry keyed %s", what,
               sockaddr_string(remote, b, sizeof(b)));
        expect_eq(e.gen, gen, "%s: entry generation", what);
        expect_eq(e.index, rig_sock_array_index(rig, sock), "%s: entry socket index", what);
}

START_TEST(test_v4_mapped) {
        Rig *rig = rig_new(&cases_flow[_i], 65536);
        const Family *f = rig->c->family;
        Counters st = stats_now(rig);
        struct sockaddr_storage remote;
        socklen_t remote_len = sizeof(remote);
        int fd, fd6 = -EBADF, native = -EBADF;
        uint16_t port;
        Arrival a1, a2;

        gen_start_working(rig, SLOT_GEN1, 1, 4);
        fd = open_client(f->client_domain, f->client_addr, 0, -1);
        port = local_port(fd);
        a1 = send_and_receive(rig, fd, &rig->dest, rig->dest_len, 16, "first datagram");
        assert_stats(rig, &st, "first datagram", GRM_STAT_FLOW_CREATED, 1);
        expect(getsockname(fd, (struct sockaddr *) &remote, &remote_len) == 0, "getsockname: %m");

        /* The key, as the program makes it: IPv4 as ::ffff:127.0.0.1, IPv6 as it is, the port
         * in network byte order. The table holds no keys, only their tags: the entry is found
         * under the key built here, and it is the only one. */
        expect_eq(flow_entries_in_use(), 1, "flow entries after one flow");
        {
                struct grm_flow_key key = { .port = htons(port) };

                if (f->client_domain == AF_INET) {
                        key.addr[2] = htonl(0x0000ffff);
                        key.addr[3] = htonl(INADDR_LOOPBACK);
                } else
                        memcpy(key.addr, &in6addr_loopback, 16);
                expect(flow_entry_find(&key, NULL, NULL, NULL), "%s",
                       f->client_domain == AF_INET ? "an IPv4 client is not keyed as ::ffff:127.0.0.1"
                                                   : "an IPv6 client is not keyed by its own address");
        }
        assert_flow_key(rig, &remote, a1.sock, 1, "first datagram");

        gen_start_working(rig, SLOT_GEN2, 2, 4);
        if (f->dual_stack) {
                struct sockaddr_storage dest6;
                socklen_t dest6_len = make_sockaddr(AF_INET6, "::ffff:127.0.0.1", rig->port, &dest6);
                Arrival a3;

                /* The same client address and port from an AF_INET6 socket: v4-mapped addresses
                 * on an AF_INET6 socket send IPv4 packets, so the program sees the very same
                 * remote and this is the same flow, still on its gen-1 socket after the flip.
                 * (UDP keeps no TIME_WAIT: the port is free as soon as fd is closed.) */
                fd = safe_close(fd);
                fd6 = open_client(AF_INET6, "::ffff:127.0.0.1", port, 0);
                a2 = send_and_receive(rig, fd6, &dest6, dest6_len, 16,
                                      "same client from an AF_INET6 socket");
                expect_eq(a2.sock, a1.sock, "same client from an AF_INET6 socket: socket");
                assert_stats(rig, &st, "same client from an AF_INET6 socket",
                             GRM_STAT_FLOW_EXISTING, 1);
                assert_flow_key(rig, &remote, a1.sock, 1, "same client from an AF_INET6 socket");

                /* An actual IPv6 packet from ::ffff:127.0.0.1, same port (only a raw socket
                 * makes one): the program reads the IPv6 source as it is, which is the key the
                 * IPv4 client got, so it is the same flow too. If the kernel drops such packets
                 * instead, no IPv6 packet can claim an IPv4 client's flow at all. */
                {
                        Counters expected = {};
                        Arrival a4;

                        send_forged(rig, AF_INET6, port, FORGE_V4_MAPPED_SRC, FORGED_PAYLOAD);
                        if (rig_receive(rig, &a4, DELIVERY_TIMEOUT_MSEC)) {
                                expect_eq(sockaddr_port(&a4.from), port,
                                          "IPv6 packet from ::ffff:127.0.0.1: source port");
                                expect_eq(a4.sock, a1.sock,
                                          "IPv6 packet from ::ffff:127.0.0.1: socket (not the "
                                          "IPv4 client's flow)");
                                expected.v[GRM_STAT_FLOW_EXISTING] = 1;
                        } else
                                fprintf(stderr, "[%s] the kernel drops IPv6 packets from "
                                        "v4-mapped sources: nothing to check\n", case_name());
                        assert_stats_moved(rig, &st, &expected, "IPv6 packet from ::ffff:127.0.0.1");
                }

                /* A native IPv6 client on the same group is a flow of its own, keyed ::1. */
                native = open_client(AF_INET6, "::1", port, 1);
                remote_len = sizeof(remote);
                expect(getsockname(native, (struct sockaddr *) &remote, &remote_len) == 0,
                       "getsockname: %m");
                dest6_len = make_sockaddr(AF_INET6, "::1", rig->port, &dest6);
                a3 = send_and_receive(rig, native, &dest6, dest6_len, 16, "native IPv6 client");
                expect_eq(rig->socks[a3.sock].gen, 2, "native IPv6 client: generation");
                assert_stats(rig, &st, "native IPv6 client", GRM_STAT_FLOW_CREATED, 1);
                assert_flow_key(rig, &remote, a3.sock, 2, "native IPv6 client");
                expect_eq(flow_entries_in_use(), 2, "flow entries at the end");
        } else {
                a2 = send_and_receive(rig, fd, &rig->dest, rig->dest_len, 16, "after the flip");
                expect_eq(a2.sock, a1.sock, "after the flip: socket");
                assert_stats(rig, &st, "after the flip", GRM_STAT_FLOW_EXISTING, 1);
        }
        expect_nothing_more(rig, "v4-mapped");
        assert_slot_packets(rig, "v4-mapped");

        safe_close(fd);
        safe_close(fd6);
        safe_close(native);
        rig_free(rig);
}
END_TEST

/* ---- 3. a flood of new flows ---- */

#define FLOOD_TABLE_SIZE 4096U
#define FLOOD_BATCH      64U
#define FLOOD_PORT       7000

/* Flood flow i comes from 127.1.(i / 254).(1 + i % 254), port FLOOD_PORT: one source address
 * per flow, none of them 127.0.0.1, which the live flows use. */
static void flood_addr(unsigned i, char *buf, size_t size) {
        snprintf(buf, size, "127.1.%u.%u", i / 254, 1 + i % 254);
}

/* The flood flow a datagram came from, or -1. */
static int flood_flow_of(const struct sockaddr_storage *from) {
        struct in6_addr a;

        sockaddr_key_addr(from, &a);
        if (a.s6_addr[10] != 0xff || a.s6_addr[12] != 127 || a.s6_addr[13] != 1 ||
            a.s6_addr[15] < 1 || a.s6_addr[15] > 254 || sockaddr_port(from) != FLOOD_PORT)
                return -1;
        return a.s6_addr[14] * 254 + (a.s6_addr[15] - 1);
}

typedef struct Live {
        unsigned n;
        int fds[64];
        int sock[64];           /* where each live flow's datagrams land */
        unsigned on_gen1, on_gen2;      /* datagrams received, by generation, since reset */
        unsigned moved;         /* datagrams not on the flow's gen-1 socket */
} Live;

/* One datagram from every live flow, each received and judged. */
static void live_round(Rig *rig, Live *live, const char *what) {
        for (unsigned i = 0; i < live->n; i++) {
                Arrival a = send_and_receive(rig, live->fds[i], &rig->dest, rig->dest_len, 8, what);

                if (live->sock[i] < 0)
                        live->sock[i] = a.sock;
                expect(rig->socks[a.sock].gen != 0, "%s: live flow %u on the original socket",
                       what, i);
                if (rig->socks[a.sock].gen == 1)
                        live->on_gen1++;
                else
                        live->on_gen2++;
                if (a.sock != live->sock[i])
                        live->moved++;
        }
}

/* Flood flows first .. first + n - 1 send one datagram each, FLOOD_BATCH at a time; every
 * datagram must arrive, on the working generation (each is a new flow). Between batches, every
 * live_every batches (0: never), a live round. */
static void flood(Rig *rig, unsigned first, unsigned n, Live *live, unsigned live_every,
                  const char *what) {
        static const char payload[8] = "flood";
        unsigned batch_no = 0;

        for (unsigned start = first; start < first + n; start += FLOOD_BATCH, batch_no++) {
                unsigned count = first + n - start < FLOOD_BATCH ? first + n - start : FLOOD_BATCH;
                int fds[FLOOD_BATCH];
                bool seen[FLOOD_BATCH] = {};

                for (unsigned k = 0; k < count; k++) {
                        char addr[32];
                        ssize_t l;

                        flood_addr(start + k, addr, sizeof(addr));
                        fds[k] = open_client(AF_INET, addr, FLOOD_PORT, -1);
                        l = sendto(fds[k], payload, sizeof(payload), 0,
                                   (const struct sockaddr *) &rig->dest, rig->dest_len);
                        expect(l == sizeof(payload), "%s: sendto() from %s: %m", what, addr);
                }
                for (unsigned k = 0; k < count; k++) {
                        Arrival a;
                        int flow;

                        expect(rig_receive(rig, &a, DELIVERY_TIMEOUT_MSEC),
                               "%s: %u of the %u datagrams of flood flows %u.. were lost", what,
                               count - k, count, start);
                        flow = flood_flow_of(&a.from);
                        expect(flow >= (int) start && flow < (int) (start + count) &&
                               !seen[flow - start], "%s: stray or duplicate datagram (flow %d)",
                               what, flow);
                        seen[flow - start] = true;
                        expect_eq(rig->socks[a.sock].gen, 2, "%s: generation of flood flow %d", what,
                                  flow);
                }
                for (unsigned k = 0; k < count; k++)
                        safe_close(fds[k]);
                if (live_every > 0 && batch_no % live_every == live_every - 1)
                        live_round(rig, live, what);
        }
}

static uint64_t counters_sum(const Counters *c) {
        uint64_t sum = 0;

        for (int i = 0; i < (int) _GRM_STAT_MAX; i++)
                sum += c->v[i];
        return sum;
}

START_TEST(test_flood) {
        enum {
                N_LIVE = 32,
                N_SMALL = 2000,         /* with the live flows, well under the table size */
                N_LARGE = 4 * FLOOD_TABLE_SIZE,
                LIVE_EVERY = 4,         /* a live round every 4 batches: every 256 new flows */
        };
        Rig *rig = rig_new(&cases_flood[_i], FLOOD_TABLE_SIZE);
        Counters st = stats_now(rig), now, delta;
        Live live = { .n = N_LIVE };
        uint64_t counts[1], total, live_sent, small_created, small_untracked;
        int r;

        gen_start_working(rig, SLOT_GEN1, 1, 2);
        for (unsigned i = 0; i < N_LIVE; i++) {
                live.fds[i] = open_client(AF_INET, "127.0.0.1", 0, -1);
                live.sock[i] = -1;
        }
        live_round(rig, &live, "live flows on gen 1");
        assert_stats(rig, &st, "live flows on gen 1", GRM_STAT_FLOW_CREATED, N_LIVE);
        gen_start_working(rig, SLOT_GEN2, 2, 2);

        /* While the table has room: after a flood of new flows (all on the new working
         * generation), every live flow is still on its gen-1 socket and every new flow has its
         * entry. */
        flood(rig, 0, N_SMALL, &live, 0, "flood within the table's size");
        now = stats_now(rig);
        small_created = now.v[GRM_STAT_FLOW_CREATED] - st.v[GRM_STAT_FLOW_CREATED];
        small_untracked = now.v[GRM_STAT_FLOW_UNTRACKED] - st.v[GRM_STAT_FLOW_UNTRACKED];
        expect_eq(small_created + small_untracked, N_SMALL, "new flows of the flood within the table's size");
        expect_eq(counters_sum(&now) - counters_sum(&st), N_SMALL, "verdicts of that flood");
        /* Half full, a flow's two buckets both being full is rare (a few in a million flows,
         * tools/bench/flow-table-scale): far under 1% here. */
        expect(small_untracked <= N_SMALL / 100, "%" PRIu64 " of %u flows untracked in a half-full table",
               small_untracked, (unsigned) N_SMALL);
        st = now;
        r = steering_count_flows(rig->steering, counts, &total);
        expect(r == 0, "steering_count_flows(): %s", strerror(-r));
        expect_eq(total, N_LIVE + small_created, "flow entries after the flood within the table's size");
        expect_eq(counts[0], N_LIVE + small_created, "live flow entries after that flood");
        live.on_gen1 = live.on_gen2 = live.moved = 0;
        live_round(rig, &live, "live flows after the flood within the table's size");
        expect_eq(live.moved, 0, "live flows moved by a flood within the table's size");
        assert_stats(rig, &st, "live flows after the flood within the table's size",
                     GRM_STAT_FLOW_EXISTING, N_LIVE);

        /* Four times the table's size in new flows, the live flows sending every 256 new
         * flows. Every datagram is delivered and counted under exactly one verdict: a flood
         * datagram is a new flow with an entry while its two buckets have room, an untracked one
         * after; a live datagram is a table hit on its gen-1 socket, since no live entry is ever
         * evicted. */
        live.on_gen1 = live.on_gen2 = live.moved = 0;
        flood(rig, N_SMALL, N_LARGE, &live, LIVE_EVERY, "flood past the table's size");
        live_sent = live.on_gen1 + live.on_gen2;
        r = steering_count_flows(rig->steering, counts, &total);
        expect(r == 0, "steering_count_flows(): %s", strerror(-r));
        now = stats_now(rig);
        for (int i = 0; i < (int) _GRM_STAT_MAX; i++)
                delta.v[i] = now.v[i] - st.v[i];
        st = now;
        fprintf(stderr,
                "[%s] %u new flows through a %u-entry table, %" PRIu64 " live datagrams: %u on "
                "their gen-1 socket, %u moved to gen 2; verdicts: flow_created %" PRIu64
                ", flow_untracked %" PRIu64 ", flow_existing %" PRIu64 ", error_flow_update %" PRIu64
                "; %" PRIu64 " entries\n",
                case_name(), (unsigned) N_LARGE, FLOOD_TABLE_SIZE, live_sent, live.on_gen1,
                live.on_gen2, delta.v[GRM_STAT_FLOW_CREATED], delta.v[GRM_STAT_FLOW_UNTRACKED],
                delta.v[GRM_STAT_FLOW_EXISTING], delta.v[GRM_STAT_ERR_FLOW_UPDATE], total);
        expect_eq(counters_sum(&delta), N_LARGE + live_sent,
                  "verdicts counted during the large flood (one per datagram)");
        expect_eq(delta.v[GRM_STAT_FLOW_EXISTING], live_sent, "flow_existing vs live datagrams");
        expect_eq(live.moved, 0, "live datagrams that lost their flow entry during the flood");
        expect_eq(live.on_gen2, 0, "live datagrams on gen 2");
        /* One CPU sends: no two CPUs race for an entry. */
        expect_eq(delta.v[GRM_STAT_ERR_FLOW_UPDATE], 0, "error_flow_update during the flood");
        /* Full: each of the 1,024 buckets is a candidate of 32 flood flows on average, and a
         * flow takes the emptier of its two, so none is left with room. */
        expect_eq(total, FLOOD_TABLE_SIZE, "flow entries after the large flood");
        expect_eq(delta.v[GRM_STAT_FLOW_CREATED], FLOOD_TABLE_SIZE - N_LIVE - small_created,
                  "flood flows that got an entry");
        expect_eq(delta.v[GRM_STAT_FLOW_UNTRACKED], N_LARGE - (FLOOD_TABLE_SIZE - N_LIVE - small_created),
                  "flood flows untracked");

        /* A new flow while the table is full is untracked, on the working generation, and the
         * live flows are still where they were. */
        flood(rig, N_SMALL + N_LARGE, 1, &live, 0, "a new flow after the flood");
        assert_stats(rig, &st, "a new flow after the flood", GRM_STAT_FLOW_UNTRACKED, 1);
        live.on_gen1 = live.on_gen2 = live.moved = 0;
        live_round(rig, &live, "live flows after the flood");
        expect_eq(live.moved, 0, "live flows moved after the flood");
        assert_stats(rig, &st, "live flows after the flood", GRM_STAT_FLOW_EXISTING, N_LIVE);
        expect_nothing_more(rig, "flood");
        assert_slot_packets(rig, "flood");

        for (unsigned i = 0; i < N_LIVE; i++)
                safe_close(live.fds[i]);
        rig_free(rig);
}
END_TEST

/* ---- 4. packets only raw sockets make ---- */

/* Sends one forged packet, then a well-formed one from another port as a marker: once the
 * marker arrived and a grace period passed, the forged one has been dealt with. Returns whether
 * the forged packet was delivered, and checks the counters moved by the marker's verdict plus
 * forged_verdicts (each a GRM_STAT_FLOW_CREATED of its own flow when the program ran on it; -1:
 * one if the forged packet was delivered, none if not). */
static bool forged_then_marker(Rig *rig, int domain, uint16_t sport, Forgery forgery,
                               size_t payload, int forged_verdicts, Counters *st,
                               const char *what) {
        Counters expected = {};
        bool forged_seen = false, marker_seen = false;
        uint16_t marker_port = sport + 1;
        Arrival a;
        char b[80];

        send_forged(rig, domain, sport, forgery, payload);
        send_forged(rig, domain, marker_port, FORGE_GOOD, FORGED_PAYLOAD);
        while (rig_receive(rig, &a, marker_seen ? DROP_GRACE_MSEC : DELIVERY_TIMEOUT_MSEC)) {
                expect(rig->socks[a.sock].gen == 1, "%s: delivered to socket %d, not gen 1", what,
                       a.sock);
                if (sockaddr_port(&a.from) == marker_port) {
                        expect_eq(a.len, FORGED_PAYLOAD, "%s: marker length", what);
                        marker_seen = true;
                } else if (sockaddr_port(&a.from) == sport) {
                        expect(!forged_seen, "%s: forged packet delivered twice", what);
                        forged_seen = true;
                        expect_eq(a.len, forgery == FORGE_ULEN_TRIM ? 4 : payload,
                                  "%s: length of the delivered datagram", what);
                } else
                        expect(false, "%s: stray datagram from %s", what,
                               sockaddr_string(&a.from, b, sizeof(b)));
        }
        expect(marker_seen, "%s: the well-formed marker packet was lost", what);
        if (forged_verdicts < 0) /* the kernel's choice: counted if and only if delivered */
                forged_verdicts = forged_seen;
        expected.v[GRM_STAT_FLOW_CREATED] = 1 + (unsigned) forged_verdicts;
        assert_stats_moved(rig, st, &expected, what);
        return forged_seen;
}

START_TEST(test_forged) {
        Rig *rig = rig_new(&cases_flow[_i], 65536);
        const Family *f = rig->c->family;
        Counters st = stats_now(rig);
        int domains[2], n_domains = 0;
        uint16_t sport = 30000;

        gen_start_working(rig, SLOT_GEN1, 1, 2);
        if (f->server_domain == AF_INET || f->dual_stack)
                domains[n_domains++] = AF_INET;
        if (f->server_domain == AF_INET6)
                domains[n_domains++] = AF_INET6;

        for (int d = 0; d < n_domains; d++) {
                const char *v = domains[d] == AF_INET ? "IPv4" : "IPv6";
                char what[128];

                /* The control: a forged but well-formed packet is delivered like any other. */
                snprintf(what, sizeof(what), "well-formed raw %s packet", v);
                expect(forged_then_marker(rig, domains[d], sport, FORGE_GOOD, FORGED_PAYLOAD, 1, &st,
                                          what),
                       "%s: not delivered", what);
                sport += 2;

                /* Truncated: the UDP length claims more than the packet holds. UDP drops it as a
                 * short packet before it looks for a socket, so the program never runs. */
                snprintf(what, sizeof(what), "raw %s packet whose UDP length exceeds it", v);
                expect(!forged_then_marker(rig, domains[d], sport, FORGE_ULEN_LONG, FORGED_PAYLOAD, 0,
                                           &st, what),
                       "%s: delivered", what);
                sport += 2;

                snprintf(what, sizeof(what), "raw %s packet with a UDP length of 4", v);
                expect(!forged_then_marker(rig, domains[d], sport, FORGE_ULEN_SHORT, FORGED_PAYLOAD, 0,
                                           &st, what),
                       "%s: delivered", what);
                sport += 2;

                /* A UDP length shorter than the IP payload: the kernel trims the datagram to
                 * it, the program steers it like any other, the socket gets the 4 bytes. */
                snprintf(what, sizeof(what), "raw %s packet with trailing bytes past its UDP length",
                         v);
                expect(forged_then_marker(rig, domains[d], sport, FORGE_ULEN_TRIM, FORGED_PAYLOAD, 1,
                                          &st, what),
                       "%s: not delivered", what);
                sport += 2;

                /* A bad checksum: the kernel verifies a short datagram's checksum on receipt
                 * and drops it before the socket lookup; a longer one's (past CHECKSUM_BREAK,
                 * 76 bytes) only when it is read, so the program runs on it (counts it under
                 * the slot it chose, and creates a flow entry, as for any packet from that
                 * address) and the datagram is then dropped unread. Never delivered. */
                snprintf(what, sizeof(what), "short raw %s packet with a bad UDP checksum", v);
                expect(!forged_then_marker(rig, domains[d], sport, FORGE_BAD_CSUM, FORGED_PAYLOAD,
                                           0, &st, what),
                       "%s: delivered", what);
                sport += 2;
                snprintf(what, sizeof(what), "long raw %s packet with a bad UDP checksum", v);
                expect(!forged_then_marker(rig, domains[d], sport, FORGE_BAD_CSUM,
                                           FORGED_PAYLOAD_LONG, 1, &st, what),
                       "%s: delivered", what);
                rig->slot_received[SLOT_GEN1]++; /* steered to gen 1, dropped when read */
                sport += 2;

                /* IPv6 from a v4-mapped source: whether the kernel lets it through is its own
                 * policy (Linux 6.18 delivers it over loopback); either way the program counts
                 * it if and only if it is delivered. test_v4_mapped shows which flow it joins. */
                if (domains[d] == AF_INET6) {
                        bool delivered;

                        snprintf(what, sizeof(what), "raw IPv6 packet from ::ffff:127.0.0.1");
                        delivered = forged_then_marker(rig, domains[d], sport, FORGE_V4_MAPPED_SRC,
                                                       FORGED_PAYLOAD, -1, &st, what);
                        fprintf(stderr, "[%s] the kernel %s IPv6 packets from v4-mapped sources\n",
                                case_name(), delivered ? "delivers" : "drops");
                        sport += 2;

                        /* Truncated at the IP level: IPv6 drops it before UDP sees it. */
                        snprintf(what, sizeof(what),
                                 "raw IPv6 packet whose payload length exceeds it");
                        expect(!forged_then_marker(rig, domains[d], sport, FORGE_IP6_PLEN_LONG,
                                                   FORGED_PAYLOAD, 0, &st, what),
                               "%s: delivered", what);
                        sport += 2;
                }
        }
        expect_eq(stats_now(rig).v[GRM_STAT_ERR_PARSE], 0, "error_parse");
        assert_slot_packets(rig, "forged");
        rig_free(rig);
}
END_TEST

/* ---- suite ---- */

static TCase *tcase(Suite *s, const char *name, double timeout_sec) {
        TCase *tc = tcase_create(name);

        tcase_set_timeout(tc, timeout_sec);
        suite_add_tcase(s, tc);
        return tc;
}

static Suite *hostile_suite(void) {
        Suite *s = suite_create("hostile datapath");

        tcase_add_loop_test(tcase(s, "sizes", 20), test_sizes, 0, ELEMENTSOF(cases_all));
        tcase_add_loop_test(tcase(s, "v4_mapped", 20), test_v4_mapped, 0, ELEMENTSOF(cases_flow));
        tcase_add_loop_test(tcase(s, "flood", 120), test_flood, 0, ELEMENTSOF(cases_flood));
        tcase_add_loop_test(tcase(s, "forged", 20), test_forged, 0, ELEMENTSOF(cases_flow));
        return s;
}

int main(void) {
        SRunner *sr;
        int r, n_failed;

        r = datapath_setup("test-hostile");
        if (r >= 0)
                return r;

        sr = srunner_create(hostile_suite());
        srunner_set_fork_status(sr, CK_FORK);
        srunner_run_all(sr, CK_ENV);
        n_failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
