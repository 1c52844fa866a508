/* SPDX-License-Identifier: MIT */
/*
 * The flow table of issue 9 (bpf/steer-api.h) on real SO_REUSEPORT sockets in a private network
 * namespace (datapath_setup() in datapath-util.h): the floods that emptied the old LRU table, and
 * the new table's edges. Every test asserts where each real flow's datagrams land and the exact
 * verdict counters.
 *
 *  - one_host_flood: real flows owned by a draining generation, then one host sends 2 datagrams
 *    from each of its 65,535 ports (raw socket, source 127.0.0.1): with the per-source quota,
 *    that host gets only its quota of entries and the rest is counted flow_over_quota; without
 *    a quota it fills the table and the rest is counted flow_untracked. No real flow moves either
 *    way, and with the quota a new real flow from another host still gets an entry.
 *  - spoofed_flood: 100,000 distinct spoofed sources (IP_HDRINCL), 2 datagrams each, against a
 *    16,384-entry table, half of them before the flip (their entries belong to the generation
 *    that becomes the draining one), half after. No real flow moves; whatever the table cannot
 *    hold is counted flow_untracked. (The 3,000,000-source, 60-second flood is a benchmark:
 *    tools/bench/flow-flood.)
 *  - full: the table's unit is a pair of buckets. Keys chosen (with the program's own hash and
 *    the table's secret) so that 9 share both buckets: 8 get entries, the 9th is untracked; after
 *    a flip the 8 stay and the 9th, a new flow again, finds no live entry to evict; a key that
 *    shares only one of the buckets still gets an entry in its other one.
 *  - collision: an entry forged with a new key's tag and buckets: that key's datagrams go where
 *    the entry says (what a fingerprint collision does: the newer flow is misplaced, the flow
 *    owning the entry is not moved).
 *  - expiry: idle entries are reclaimed by new flows; a flow whose entry expired is new again.
 *  - slot_reused: entries of a generation whose slot a later generation took are stale: their
 *    flows go to the working generation and their entries are reclaimed.
 *  - quota_ipv6: the quota counts an IPv6 /64 as one source (forged sources in 2001:db8:1::/64),
 *    and another /64 is not limited by it.
 *  - abi: maps of another layout (an older grm's table) are refused by steering_adopt_maps().
 *
 * Each test runs in a forked child (CK_FORK), builds its own rig (one group: an original socket,
 * then generations of sockets registered in a slot) and closes every fd it opened.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "datapath-cases.h"
#include "datapath-util.h"
#include "flow-clock.h"
#include "flow-table.h"
#include "macro.h"
#include "steering.h"

#define DELIVERY_TIMEOUT_MSEC   2000
#define RIG_MAX_SOCKS           16
#define SERVER_RCVBUF           (4 << 20)
#define N_REAL                  10

/* Slots neither 0 nor equal to the generation, as in the other datapath tests. */
#define SLOT_GEN1 3U
#define SLOT_GEN2 9U

typedef struct RigSock {
        int fd;
        uint32_t gen;           /* 0: the group's original socket */
        unsigned slot, index;
} RigSock;

typedef struct Rig {
        const Case *c;
        Steering *steering;
        unsigned n_fds_at_start;
        uint16_t port;
        struct sockaddr_storage dest;
        socklen_t dest_len;
        RigSock socks[RIG_MAX_SOCKS];
        unsigned n_socks;
} Rig;

typedef struct Counters {
        uint64_t v[_GRM_STAT_MAX];
} Counters;

static int open_server_socket(const Family *f, uint16_t port, uint16_t *ret_port) {
        struct sockaddr_storage sa;
        socklen_t len;
        int fd, one = 1, rcvbuf = SERVER_RCVBUF;

        fd = socket(f->server_domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        expect(fd >= 0, "socket(%s): %m", f->name);
        expect(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0, "SO_REUSEPORT: %m");
        expect(setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) == 0,
               "SO_RCVBUFFORCE: %m");
        if (f->server_domain == AF_INET6) {
                int v6only = !f->dual_stack;

                expect(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) == 0,
                       "IPV6_V6ONLY: %m");
        }
        len = make_sockaddr(f->server_domain, f->server_addr, port, &sa);
        expect(bind(fd, (struct sockaddr *) &sa, len) == 0, "bind(%s port %u): %m", f->server_addr,
               port);
        if (ret_port) {
                len = sizeof(sa);
                expect(getsockname(fd, (struct sockaddr *) &sa, &len) == 0, "getsockname: %m");
                *ret_port = sockaddr_port(&sa);
        }
        return fd;
}

static Rig *rig_new(const Case *c, unsigned flow_table_size, uint64_t flow_timeout_usec,
                    unsigned quota) {
        Rig *rig;
        int r, fd;

        current_case = c;
        rig = calloc(1, sizeof(*rig));
        expect(rig, "out of memory");
        rig->c = c;
        rig->n_fds_at_start = count_open_fds();
        r = steering_new(flow_table_size, &rig->steering);
        expect(r == 0, "steering_new(%u): %s", flow_table_size, strerror(-r));
        fd = open_server_socket(c->family, 0, &rig->port);
        rig->socks[rig->n_socks++] = (RigSock) { .fd = fd };
        rig->dest_len = make_sockaddr(c->family->client_domain, c->family->client_addr, rig->port,
                                      &rig->dest);
        r = steering_add_group(rig->steering, fd, NULL);
        expect(r == 0, "steering_add_group(): %s", strerror(-r));
        r = steering_set_settings(rig->steering, c->dissector, flow_timeout_usec);
        expect(r == 0, "steering_set_settings(): %s", strerror(-r));
        r = steering_set_flow_quota(rig->steering, quota);
        expect(r == 0, "steering_set_flow_quota(): %s", strerror(-r));
        return rig;
}

static void rig_free(Rig *rig) {
        for (unsigned i = 0; i < rig->n_socks; i++)
                rig->socks[i].fd = safe_close(rig->socks[i].fd);
        rig->steering = steering_free(rig->steering);
        expect_eq(count_open_fds(), rig->n_fds_at_start, "open fds after freeing the rig");
        free(rig);
}

/* Registers generation gen in slot with n_socks sockets; working: makes it the working one. */
static void gen_start(Rig *rig, unsigned slot, uint32_t gen, unsigned n_socks, bool working) {
        int r;

        for (unsigned i = 0; i < n_socks; i++) {
                int fd = open_server_socket(rig->c->family, rig->port, NULL);

                expect(rig->n_socks < RIG_MAX_SOCKS, "too many server sockets");
                rig->socks[rig->n_socks++] = (RigSock) { .fd = fd, .gen = gen, .slot = slot, .index = i };
                r = steering_register_socket(rig->steering, 0, slot, i, fd);
                expect(r == 0, "steering_register_socket(): %s", strerror(-r));
        }
        r = steering_slot_activate(rig->steering, slot, gen, n_socks);
        expect(r == 0, "steering_slot_activate(): %s", strerror(-r));
        if (working) {
                r = steering_set_working(rig->steering, slot, GRM_SLOT_NONE);
                expect(r == 0, "steering_set_working(): %s", strerror(-r));
        }
}

/* Closes the sockets of generation gen and releases its slot, as when its instance exits. */
static void gen_end(Rig *rig, uint32_t gen, unsigned slot) {
        int r;

        for (unsigned i = 0; i < rig->n_socks; i++)
                if (rig->socks[i].gen == gen)
                        rig->socks[i].fd = safe_close(rig->socks[i].fd);
        r = steering_slot_release(rig->steering, slot);
        expect(r == 0, "steering_slot_release(): %s", strerror(-r));
}

static uint32_t sock_array_index(const Rig *rig, int sock) {
        return (0 * GRM_GEN_SLOTS + rig->socks[sock].slot) * GRM_MAX_SOCKS_PER_GEN + rig->socks[sock].index;
}

static Counters stats_now(Rig *rig) {
        Counters c;
        int r = steering_get_stats(rig->steering, c.v);

        expect(r == 0, "steering_get_stats(): %s", strerror(-r));
        return c;
}

static uint64_t counters_sum(const Counters *c) {
        uint64_t sum = 0;

        for (int i = 0; i < (int) _GRM_STAT_MAX; i++)
                sum += c->v[i];
        return sum;
}

/* What moved since *before (and *before := now). */
static Counters stats_delta(Rig *rig, Counters *before) {
        Counters now = stats_now(rig), d;

        for (int i = 0; i < (int) _GRM_STAT_MAX; i++)
                d.v[i] = now.v[i] - before->v[i];
        *before = now;
        return d;
}

/* Exactly one verdict counter moved, by n. */
static void assert_stats(Rig *rig, Counters *before, const char *what, int stat, uint64_t n) {
        Counters d = stats_delta(rig, before);

        for (int i = 0; i < (int) _GRM_STAT_MAX; i++)
                expect_eq(d.v[i], i == stat ? n : 0, "%s: verdict counter %s", what, grm_stat_to_string(i));
}

/* Discards everything queued on every server socket; returns how many datagrams came from the
 * given IPv4 address (host order; 0: none counted). */
static unsigned drain_all(Rig *rig, uint32_t count_from) {
        static uint8_t buf[2048];
        unsigned n = 0;

        for (unsigned i = 0; i < rig->n_socks; i++) {
                if (rig->socks[i].fd < 0)
                        continue;
                for (;;) {
                        struct sockaddr_storage from;
                        socklen_t len = sizeof(from);
                        ssize_t l = recvfrom(rig->socks[i].fd, buf, sizeof(buf), MSG_DONTWAIT,
                                             (struct sockaddr *) &from, &len);

                        if (l < 0) {
                                expect(errno == EAGAIN, "recvfrom(): %m");
                                break;
                        }
                        if (count_from != 0 && flow_key_of(&from).addr[3] == htonl(count_from))
                                n++;
                }
        }
        return n;
}

/* A client socket bound to addr:port (port 0: any). */
static int open_client(const char *addr, uint16_t port) {
        struct sockaddr_storage sa;
        socklen_t len = make_sockaddr(AF_INET, addr, port, &sa);
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        expect(fd >= 0, "client socket(): %m");
        expect(bind(fd, (struct sockaddr *) &sa, len) == 0, "client bind(%s:%u): %m", addr, port);
        return fd;
}

static int open_client_ipv4(uint32_t addr_host, uint16_t port) {
        char a[INET_ADDRSTRLEN];
        struct in_addr in = { .s_addr = htonl(addr_host) };

        return open_client(inet_ntop(AF_INET, &in, a, sizeof(a)), port);
}

/* Sends one datagram from fd and returns the rig socket it landed on. Datagrams from other
 * sources queued meanwhile (a flood's) are read and dropped. */
static int send_one(Rig *rig, int fd, const char *what) {
        static const char payload[] = "real";
        struct sockaddr_storage self;
        socklen_t self_len = sizeof(self);
        uint64_t deadline = now_msec() + DELIVERY_TIMEOUT_MSEC;
        struct grm_flow_key want;

        expect(getsockname(fd, (struct sockaddr *) &self, &self_len) == 0, "getsockname: %m");
        want = flow_key_of(&self);
        expect(sendto(fd, payload, sizeof(payload), 0, (struct sockaddr *) &rig->dest, rig->dest_len) ==
               sizeof(payload), "%s: sendto(): %m", what);
        for (;;) {
                struct pollfd pfds[RIG_MAX_SOCKS];
                unsigned n = 0;
                uint64_t now;

                for (unsigned i = 0; i < rig->n_socks; i++) {
                        struct sockaddr_storage from;
                        socklen_t len = sizeof(from);
                        char buf[64];
                        struct grm_flow_key k;
                        ssize_t l;

                        if (rig->socks[i].fd < 0)
                                continue;
                        while ((l = recvfrom(rig->socks[i].fd, buf, sizeof(buf), MSG_DONTWAIT,
                                             (struct sockaddr *) &from, &len)) >= 0) {
                                k = flow_key_of(&from);
                                len = sizeof(from);
                                if (k.port == want.port && memcmp(k.addr, want.addr, 16) == 0)
                                        return (int) i;
                        }
                        expect(errno == EAGAIN, "recvfrom(): %m");
                        pfds[n++] = (struct pollfd) { .fd = rig->socks[i].fd, .events = POLLIN };
                }
                now = now_msec();
                expect(now < deadline, "%s: the datagram was lost", what);
                expect(poll(pfds, n, (int) (deadline - now)) >= 0 || errno == EINTR, "poll(): %m");
        }
}

/* ---- forged packets ---- */

static uint32_t csum_add(uint32_t sum, const void *data, size_t len) {
        const uint8_t *p = data;

        for (size_t i = 0; i + 1 < len; i += 2)
                sum += (uint32_t) (p[i] << 8 | p[i + 1]);
        if (len % 2)
                sum += (uint32_t) p[len - 1] << 8;
        return sum;
}

static uint16_t csum_fold(uint32_t sum) {
        while (sum >> 16)
                sum = (sum & 0xffff) + (sum >> 16);
        return (uint16_t) ~sum;
}

/* One UDP datagram from saddr:sport (host order) to the rig, through a raw IPv4 socket with
 * IP_HDRINCL (IPPROTO_RAW): any source address, the kernel fills in the length, id and header
 * checksum. A zero UDP checksum means "none" in IPv4. */
static void forge_ipv4(Rig *rig, int raw, uint32_t saddr, uint16_t sport) {
        struct {
                struct iphdr ip;
                struct udphdr udp;
                char payload[8];
        } pkt = {
                .ip = { .ihl = 5, .version = 4, .ttl = 64, .protocol = IPPROTO_UDP,
                        .saddr = htonl(saddr), .daddr = htonl(INADDR_LOOPBACK) },
                .udp = { .source = htons(sport), .dest = htons(rig->port),
                         .len = htons(sizeof(struct udphdr) + 8) },
                .payload = "flood",
        };
        struct sockaddr_in dst = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

        for (;;) {
                ssize_t l = sendto(raw, &pkt, sizeof(pkt), 0, (struct sockaddr *) &dst, sizeof(dst));

                if (l == sizeof(pkt))
                        return;
                /* The raw socket's send buffer: wait for loopback to take what it holds. */
                expect(l < 0 && (errno == ENOBUFS || errno == EAGAIN), "raw sendto(): %m");
                sleep_msec(1);
        }
}

/* The same from an IPv6 source to [::1]: IPv6 needs the UDP checksum. */
static void forge_ipv6(Rig *rig, int raw, const struct in6_addr *saddr, uint16_t sport) {
        struct {
                struct ip6_hdr ip6;
                struct udphdr udp;
                char payload[8];
        } pkt = {
                .udp = { .source = htons(sport), .dest = htons(rig->port),
                         .len = htons(sizeof(struct udphdr) + 8) },
                .payload = "flood",
        };
        struct sockaddr_in6 dst = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        uint32_t next = htonl(IPPROTO_UDP), plen = htonl(sizeof(struct udphdr) + 8), sum;

        pkt.ip6.ip6_flow = htonl(6U << 28);
        pkt.ip6.ip6_plen = htons(sizeof(struct udphdr) + 8);
        pkt.ip6.ip6_nxt = IPPROTO_UDP;
        pkt.ip6.ip6_hlim = 64;
        pkt.ip6.ip6_src = *saddr;
        pkt.ip6.ip6_dst = in6addr_loopback;
        sum = csum_add(0, &pkt.ip6.ip6_src, 16);
        sum = csum_add(sum, &pkt.ip6.ip6_dst, 16);
        sum = csum_add(sum, &plen, 4);
        sum = csum_add(sum, &next, 4);
        sum = csum_add(sum, &pkt.udp, sizeof(pkt.udp) + sizeof(pkt.payload));
        pkt.udp.check = htons(csum_fold(sum) ?: 0xffff);
        expect(sendto(raw, &pkt, sizeof(pkt), 0, (struct sockaddr *) &dst, sizeof(dst)) == sizeof(pkt),
               "raw IPv6 sendto(): %m");
}

static int open_raw(int domain) {
        int fd = socket(domain, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW), size = 4 << 20;

        expect(fd >= 0, "raw socket(): %m");
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
        return fd;
}

/* ---- real flows ---- */

typedef struct Real {
        int fds[N_REAL];
        int sock[N_REAL];       /* where each landed first */
} Real;

/* N_REAL flows from 127.0.0.2 .. 127.0.0.(N_REAL + 1), each on the working generation. */
static void real_open(Rig *rig, Real *real, uint32_t gen, Counters *st) {
        for (unsigned i = 0; i < N_REAL; i++) {
                real->fds[i] = open_client_ipv4(INADDR_LOOPBACK + 1 + i, 0);
                real->sock[i] = send_one(rig, real->fds[i], "a real flow's first datagram");
                expect_eq(rig->socks[real->sock[i]].gen, gen, "real flow %u: generation", i);
        }
        assert_stats(rig, st, "real flows' first datagrams", GRM_STAT_FLOW_CREATED, N_REAL);
}

/* One datagram from each real flow: returns how many landed off their first socket. */
static unsigned real_round(Rig *rig, Real *real, const char *what) {
        unsigned moved = 0;

        for (unsigned i = 0; i < N_REAL; i++)
                moved += send_one(rig, real->fds[i], what) != real->sock[i];
        return moved;
}

static void real_close(Real *real) {
        for (unsigned i = 0; i < N_REAL; i++)
                real->fds[i] = safe_close(real->fds[i]);
}

/* ---- 1. one host, all its ports ---- */

#define ONE_HOST_PORTS 65535U

static void one_host_flood(const Case *c, unsigned quota) {
        Rig *rig = rig_new(c, 65536, 125 * USEC_PER_SEC, quota);
        Counters st = stats_now(rig), d;
        Real real;
        int raw = open_raw(AF_INET), fresh;
        unsigned moved = 0;
        uint64_t sent = 0, real_sent = 0;

        gen_start(rig, SLOT_GEN1, 1, 2, true);
        real_open(rig, &real, 1, &st);
        gen_start(rig, SLOT_GEN2, 2, 2, true);   /* generation 1 drains */

        /* 2 datagrams from each port of 127.0.0.1, back to back, as fast as the raw socket
         * takes them; the real flows send every 8,192 ports. */
        for (unsigned port = 1; port <= ONE_HOST_PORTS; port++) {
                forge_ipv4(rig, raw, INADDR_LOOPBACK, (uint16_t) port);
                forge_ipv4(rig, raw, INADDR_LOOPBACK, (uint16_t) port);
                sent += 2;
                if (port % 8192 == 0) {
                        moved += real_round(rig, &real, "real flows during the flood");
                        real_sent += N_REAL;
                }
        }
        moved += real_round(rig, &real, "real flows after the flood");
        real_sent += N_REAL;
        expect_eq(moved, 0, "real flows' datagrams off their socket (quota %u)", quota);

        d = stats_delta(rig, &st);
        fprintf(stderr, "[%s] one host, %u ports x 2, quota %u: flow_created %" PRIu64
                ", flow_existing %" PRIu64 ", flow_over_quota %" PRIu64 ", flow_untracked %" PRIu64
                "; %" PRIu64 " entries in use\n", case_name(), ONE_HOST_PORTS, quota,
                d.v[GRM_STAT_FLOW_CREATED], d.v[GRM_STAT_FLOW_EXISTING] - real_sent,
                d.v[GRM_STAT_FLOW_OVER_QUOTA], d.v[GRM_STAT_FLOW_UNTRACKED], flow_entries_in_use());
        expect_eq(counters_sum(&d), sent + real_sent, "verdicts (one per datagram)");
        /* A port's first datagram makes its entry or does not; its second then finds the entry
         * (flow_existing) or gets the first one's verdict again. */
        expect_eq(d.v[GRM_STAT_FLOW_EXISTING], d.v[GRM_STAT_FLOW_CREATED] + real_sent,
                  "flow_existing: the flood's second datagrams of ports with an entry, and the real flows");
        expect_eq(d.v[GRM_STAT_ERR_FLOW_UPDATE], 0, "error_flow_update (one CPU sends)");
        if (quota > 0) {
                /* The quota window (the flow timeout, 125 s) may turn once during the flood. */
                expect(d.v[GRM_STAT_FLOW_CREATED] >= quota && d.v[GRM_STAT_FLOW_CREATED] <= 2 * quota,
                       "%" PRIu64 " entries for one host with a quota of %u", d.v[GRM_STAT_FLOW_CREATED], quota);
                expect_eq(d.v[GRM_STAT_FLOW_OVER_QUOTA], 2 * (ONE_HOST_PORTS - d.v[GRM_STAT_FLOW_CREATED]),
                          "flow_over_quota");
                expect_eq(d.v[GRM_STAT_FLOW_UNTRACKED], 0, "flow_untracked");
                expect_eq(flow_entries_in_use(), N_REAL + d.v[GRM_STAT_FLOW_CREATED], "entries in use");
        } else {
                /* Without a quota the host fills the 65,536-entry table, which held the 10 real
                 * flows: ports past what fits are untracked. Filled to the brim, a table of two
                 * choices of 4-entry buckets holds about 92% (a key is untracked when both its
                 * buckets are full). */
                expect_eq(d.v[GRM_STAT_FLOW_OVER_QUOTA], 0, "flow_over_quota without a quota");
                expect_eq(d.v[GRM_STAT_FLOW_UNTRACKED], 2 * (ONE_HOST_PORTS - d.v[GRM_STAT_FLOW_CREATED]),
                          "flow_untracked");
                expect(d.v[GRM_STAT_FLOW_UNTRACKED] > 0, "a full table untracks the rest");
                expect(flow_entries_in_use() >= 65536 * 85 / 100, "%" PRIu64 " entries in use", flow_entries_in_use());
        }
        expect_eq(drain_all(rig, INADDR_LOOPBACK + 1), 0, "stray real datagrams");

        /* A new flow from another host: an entry when the flooder was held to its quota; when
         * it filled the table, an entry only if one of the new flow's two buckets has room
         * left, else untracked. On the working generation either way. */
        fresh = open_client_ipv4(INADDR_LOOPBACK + 100, 0);
        expect_eq(rig->socks[send_one(rig, fresh, "a new real flow")].gen, 2, "a new real flow: generation");
        if (quota > 0)
                assert_stats(rig, &st, "a new real flow", GRM_STAT_FLOW_CREATED, 1);
        else {
                d = stats_delta(rig, &st);
                expect_eq(d.v[GRM_STAT_FLOW_CREATED] + d.v[GRM_STAT_FLOW_UNTRACKED], 1, "a new real flow: "
                          "flow_created + flow_untracked");
                expect_eq(counters_sum(&d), 1, "a new real flow: verdicts");
        }

        safe_close(fresh);
        safe_close(raw);
        real_close(&real);
        drain_all(rig, 0);
        rig_free(rig);
}

START_TEST(test_one_host_flood) {
        one_host_flood(&cases_flood[_i], 4096);
}
END_TEST

START_TEST(test_one_host_flood_no_quota) {
        one_host_flood(&cases_flood[0], 0);
}
END_TEST

/* ---- 2. spoofed sources ---- */

#define SPOOF_TABLE_SIZE 16384U
#define SPOOF_SOURCES    100000U

/* Source i: a distinct address in 10.0.0.0/8 (a bijection of i), a port from i. */
static uint32_t spoof_addr(unsigned i) {
        return 0x0a000000U | ((i * 2654435761U) & 0x00ffffffU);
}

START_TEST(test_spoofed_flood) {
        Rig *rig = rig_new(&cases_flood[_i], SPOOF_TABLE_SIZE, 125 * USEC_PER_SEC, 4096);
        Counters st = stats_now(rig), d1, d2;
        Real real;
        int raw = open_raw(AF_INET);
        uint64_t in_use;

        gen_start(rig, SLOT_GEN1, 1, 2, true);
        real_open(rig, &real, 1, &st);

        /* Half before the flip: the flood's entries are generation 1's, like the real flows'. */
        for (unsigned i = 0; i < SPOOF_SOURCES / 2; i++) {
                forge_ipv4(rig, raw, spoof_addr(i), (uint16_t) (1024 + i % 60000));
                forge_ipv4(rig, raw, spoof_addr(i), (uint16_t) (1024 + i % 60000));
                if (i % 16384 == 0)
                        drain_all(rig, 0);
        }
        expect_eq(real_round(rig, &real, "real flows after the flood before the flip"), 0,
                  "real flows moved by the flood before the flip");
        d1 = stats_delta(rig, &st);

        gen_start(rig, SLOT_GEN2, 2, 2, true);   /* generation 1, and the flood's entries, drain */
        for (unsigned i = SPOOF_SOURCES / 2; i < SPOOF_SOURCES; i++) {
                forge_ipv4(rig, raw, spoof_addr(i), (uint16_t) (1024 + i % 60000));
                forge_ipv4(rig, raw, spoof_addr(i), (uint16_t) (1024 + i % 60000));
                if (i % 16384 == 0)
                        drain_all(rig, 0);
        }
        expect_eq(real_round(rig, &real, "real flows after the flood after the flip"), 0,
                  "real flows moved by the flood after the flip");
        d2 = stats_delta(rig, &st);
        in_use = flow_entries_in_use();

        fprintf(stderr, "[%s] %u spoofed sources x 2 through a %u-entry table: before the flip "
                "flow_created %" PRIu64 " flow_untracked %" PRIu64 ", after flow_created %" PRIu64
                " flow_untracked %" PRIu64 "; %" PRIu64 " entries in use\n", case_name(), SPOOF_SOURCES,
                SPOOF_TABLE_SIZE, d1.v[GRM_STAT_FLOW_CREATED], d1.v[GRM_STAT_FLOW_UNTRACKED],
                d2.v[GRM_STAT_FLOW_CREATED], d2.v[GRM_STAT_FLOW_UNTRACKED], in_use);
        for (unsigned k = 0; k < 2; k++) {
                const Counters *d = k == 0 ? &d1 : &d2;

                expect_eq(counters_sum(d), SPOOF_SOURCES + N_REAL, "verdicts of flood half %u", k);
                expect_eq(d->v[GRM_STAT_FLOW_EXISTING], d->v[GRM_STAT_FLOW_CREATED] + N_REAL,
                          "flow_existing of flood half %u", k);
                expect_eq(d->v[GRM_STAT_FLOW_UNTRACKED], SPOOF_SOURCES - 2 * d->v[GRM_STAT_FLOW_CREATED],
                          "flow_untracked of flood half %u", k);
                expect_eq(d->v[GRM_STAT_FLOW_OVER_QUOTA], 0, "flow_over_quota (every source is new)");
        }
        /* The first half filled the table: nothing was left for the second. */
        expect(d1.v[GRM_STAT_FLOW_CREATED] >= SPOOF_TABLE_SIZE - N_REAL - 64, "the flood filled the table");
        expect_eq(in_use, N_REAL + d1.v[GRM_STAT_FLOW_CREATED] + d2.v[GRM_STAT_FLOW_CREATED], "entries in use");
        expect_eq(drain_all(rig, INADDR_LOOPBACK + 1), 0, "stray real datagrams");

        safe_close(raw);
        real_close(&real);
        drain_all(rig, 0);
        rig_free(rig);
}
END_TEST

/* ---- 3. the table's edges ---- */

#define EDGE_TABLE_SIZE 1024U   /* 256 buckets */
#define EDGE_PORT       5000
#define EDGE_KEYS       9

/* Addresses from 127.2.0.0 up whose keys (port EDGE_PORT) have both buckets in {x, y} (x != y,
 * chosen by the first address found), n of them; then one whose first or second bucket is x and
 * other one is neither (*ret_other). */
static void find_keys(const struct grm_config *cfg, uint32_t *ret, unsigned n, uint32_t *ret_other,
                      uint32_t *ret_x, uint32_t *ret_y) {
        uint32_t x = UINT32_MAX, y = UINT32_MAX;
        unsigned found = 0;
        bool other = false;

        for (uint32_t a = 0x7f020000U; a < 0x7f800000U && (found < n || !other); a++) {
                struct grm_flow_key key = flow_key_ipv4(a, EDGE_PORT);
                FlowPlace p = flow_place_of(cfg, &key);

                if (x == UINT32_MAX) {
                        if (p.bucket[0] == p.bucket[1])
                                continue;
                        x = p.bucket[0];
                        y = p.bucket[1];
                        ret[found++] = a;
                        continue;
                }
                if (found < n && ((p.bucket[0] == x && p.bucket[1] == y) || (p.bucket[0] == y && p.bucket[1] == x)))
                        ret[found++] = a;
                else if (!other && p.bucket[0] == x && p.bucket[1] != y && p.bucket[1] != x) {
                        *ret_other = a;
                        other = true;
                }
        }
        expect(found == n && other, "no %u keys sharing two buckets", n);
        *ret_x = x;
        *ret_y = y;
}

static bool entry_in(uint32_t addr, uint32_t x, uint32_t y, struct grm_flow_entry *ret) {
        struct grm_flow_key key = flow_key_ipv4(addr, EDGE_PORT);
        uint32_t bucket;

        return flow_entry_find(&key, ret, &bucket, NULL) && (bucket == x || bucket == y);
}

/* Sends one datagram of each of the 8 flows of buckets x and y, each to arrive on generation
 * gen, starting with the first whose old entry is still there, so that at least one finds it:
 * which entries displaced flows take depends on the table's secret, and in send order the chain
 * of displacements can reach every flow. */
static void send_kept_first(Rig *rig, const uint32_t *addrs, const int *fds, uint32_t x, uint32_t y,
                            uint32_t gen, const char *what) {
        unsigned first = 0;

        while (first < 2 * GRM_FLOW_WAYS && !entry_in(addrs[first], x, y, NULL))
                first++;
        expect(first < 2 * GRM_FLOW_WAYS, "%s: no flow of the 8 kept its old entry", what);
        for (unsigned k = 0; k < 2 * GRM_FLOW_WAYS; k++) {
                unsigned i = (first + k) % (2 * GRM_FLOW_WAYS);

                expect_eq(rig->socks[send_one(rig, fds[i], what)].gen, gen, "%s: flow %u: generation", what, i);
        }
}

START_TEST(test_full) {
        Rig *rig = rig_new(&cases_flow[0], EDGE_TABLE_SIZE, 125 * USEC_PER_SEC, 0);
        Counters st = stats_now(rig);
        struct grm_config cfg;
        uint32_t addrs[EDGE_KEYS], other, x, y;
        int fds[EDGE_KEYS], where[EDGE_KEYS], other_fd, s;
        struct grm_flow_entry e;

        gen_start(rig, SLOT_GEN1, 1, 2, true);
        cfg = flow_table_config();
        expect_eq(cfg.flow_buckets, EDGE_TABLE_SIZE / GRM_FLOW_WAYS, "buckets");
        find_keys(&cfg, addrs, EDGE_KEYS, &other, &x, &y);

        /* 8 keys fill their two buckets. */
        for (unsigned i = 0; i < 2 * GRM_FLOW_WAYS; i++) {
                fds[i] = open_client_ipv4(addrs[i], EDGE_PORT);
                where[i] = send_one(rig, fds[i], "a flow of the two buckets");
                expect_eq(rig->socks[where[i]].gen, 1, "flow %u: generation", i);
                expect(entry_in(addrs[i], x, y, &e), "flow %u has no entry in its buckets", i);
                expect_eq(e.gen, 1, "flow %u: entry generation", i);
                expect_eq(e.index, sock_array_index(rig, where[i]), "flow %u: entry socket", i);
        }
        assert_stats(rig, &st, "8 flows of two buckets", GRM_STAT_FLOW_CREATED, 2 * GRM_FLOW_WAYS);
        expect_eq(flow_entries_in_use(), 2 * GRM_FLOW_WAYS, "entries in use");

        /* The 9th: no room, untracked, on the working generation by the packet hash. */
        fds[8] = open_client_ipv4(addrs[8], EDGE_PORT);
        where[8] = send_one(rig, fds[8], "the 9th flow of the two buckets");
        expect_eq(rig->socks[where[8]].gen, 1, "the 9th flow: generation");
        assert_stats(rig, &st, "the 9th flow", GRM_STAT_FLOW_UNTRACKED, 1);
        expect(!entry_in(addrs[8], x, y, NULL), "the 9th flow got an entry");
        /* Untracked, it keeps its socket while the working generation does not change. */
        expect_eq(send_one(rig, fds[8], "the 9th flow again"), where[8], "the 9th flow's socket");
        assert_stats(rig, &st, "the 9th flow again", GRM_STAT_FLOW_UNTRACKED, 1);

        /* A flip: the 8 stay on generation 1. The 9th is a new flow again, and generation 1's
         * live entries are not evicted for it: untracked, on generation 2. */
        gen_start(rig, SLOT_GEN2, 2, 2, true);
        for (unsigned i = 0; i < 2 * GRM_FLOW_WAYS; i++)
                expect_eq(send_one(rig, fds[i], "a flow of the two buckets after the flip"), where[i],
                          "flow %u after the flip: socket", i);
        assert_stats(rig, &st, "8 flows after the flip", GRM_STAT_FLOW_EXISTING, 2 * GRM_FLOW_WAYS);
        s = send_one(rig, fds[8], "the 9th flow after the flip");
        expect_eq(rig->socks[s].gen, 2, "the 9th flow after the flip: generation");
        assert_stats(rig, &st, "the 9th flow after the flip", GRM_STAT_FLOW_UNTRACKED, 1);

        /* A key that shares one of the buckets gets its entry in its other one. */
        other_fd = open_client_ipv4(other, EDGE_PORT);
        s = send_one(rig, other_fd, "a flow sharing one full bucket");
        expect_eq(rig->socks[s].gen, 2, "a flow sharing one full bucket: generation");
        assert_stats(rig, &st, "a flow sharing one full bucket", GRM_STAT_FLOW_CREATED, 1);
        {
                struct grm_flow_key key = flow_key_ipv4(other, EDGE_PORT);
                uint32_t bucket;

                expect(flow_entry_find(&key, &e, &bucket, NULL), "no entry for the flow sharing one bucket");
                expect(bucket != x && bucket != y, "the entry is in a full bucket");
                expect_eq(e.gen, 2, "its generation");
        }

        for (unsigned i = 0; i < EDGE_KEYS; i++)
                safe_close(fds[i]);
        safe_close(other_fd);
        rig_free(rig);
}
END_TEST

START_TEST(test_collision) {
        Rig *rig = rig_new(&cases_flow[0], EDGE_TABLE_SIZE, 125 * USEC_PER_SEC, 0);
        Counters st = stats_now(rig);
        struct grm_config cfg;
        struct grm_flow_key key;
        struct grm_flow_bucket b;
        FlowPlace p;
        Real real;
        int fd, s;

        gen_start(rig, SLOT_GEN1, 1, 2, true);
        real_open(rig, &real, 1, &st);
        gen_start(rig, SLOT_GEN2, 2, 2, true);

        /* An entry that a flow of generation 1 could have made, with the tag of a key that never
         * sent: to the table, the same flow (what a 32-bit tag collision between two keys with
         * the same buckets would do). The entry names generation 1's socket 1. */
        cfg = flow_table_config();
        key = flow_key_ipv4(0x7f030303U, EDGE_PORT);
        p = flow_place_of(&cfg, &key);
        b = flow_bucket_read(p.bucket[0]);
        for (unsigned w = 0; w < GRM_FLOW_WAYS; w++)
                if (b.entries[w].tag == 0) {
                        FlowClock *clock = NULL;
                        uint32_t now;

                        expect(flow_clock_new(&clock) == 0, "loading the flow clock: %m");
                        expect(flow_clock_now(clock, &now) == 0, "reading the flow clock: %m");
                        flow_clock_free(clock);
                        b.entries[w] = (struct grm_flow_entry) {
                                .tag = p.tag, .gen = 1,
                                .seen = now,
                                .index = (uint16_t) ((0 * GRM_GEN_SLOTS + SLOT_GEN1) * GRM_MAX_SOCKS_PER_GEN + 1),
                        };
                        break;
                }
        flow_bucket_write(p.bucket[0], &b);

        /* The new key's datagrams go where the entry says, to draining generation 1; the real
         * flows stay where they are. */
        fd = open_client_ipv4(0x7f030303U, EDGE_PORT);
        s = send_one(rig, fd, "the colliding key");
        expect_eq(rig->socks[s].gen, 1, "the colliding key: generation");
        expect_eq(rig->socks[s].index, 1, "the colliding key: socket");
        assert_stats(rig, &st, "the colliding key", GRM_STAT_FLOW_EXISTING, 1);
        expect_eq(real_round(rig, &real, "real flows"), 0, "real flows moved");
        assert_stats(rig, &st, "real flows", GRM_STAT_FLOW_EXISTING, N_REAL);

        /* A stamp ahead of this CPU's clock (another CPU refreshed the entry an instant after
         * this one read the time; a second ahead here, so that the program still sees it ahead)
         * is "just seen", not 2^32 ticks old: the flow keeps its draining generation. */
        {
                FlowClock *clock = NULL;
                unsigned hz;
                struct sockaddr_storage self;
                socklen_t len = sizeof(self);
                struct grm_flow_key k;
                struct grm_flow_bucket bk;
                uint32_t bucket;
                unsigned way;

                expect(getsockname(real.fds[0], (struct sockaddr *) &self, &len) == 0, "getsockname: %m");
                k = flow_key_of(&self);
                expect(flow_entry_find(&k, NULL, &bucket, &way), "real flow 0 has no entry");
                bk = flow_bucket_read(bucket);
                expect(flow_clock_new(&clock) == 0, "loading the flow clock: %m");
                expect(flow_clock_hz(clock, &hz) == 0, "measuring the flow clock: %m");
                clock = flow_clock_free(clock);
                bk.entries[way].seen += hz;
                flow_bucket_write(bucket, &bk);
                expect_eq(send_one(rig, real.fds[0], "a real flow stamped in the future"), real.sock[0],
                          "a real flow stamped in the future: socket");
                assert_stats(rig, &st, "a real flow stamped in the future", GRM_STAT_FLOW_EXISTING, 1);
        }

        safe_close(fd);
        real_close(&real);
        rig_free(rig);
}
END_TEST

START_TEST(test_expiry) {
        Rig *rig = rig_new(&cases_flow[0], EDGE_TABLE_SIZE, USEC_PER_SEC, 0);
        Counters st = stats_now(rig), d;
        struct grm_config cfg;
        uint32_t addrs[EDGE_KEYS], other, x, y;
        int fds[EDGE_KEYS];

        gen_start(rig, SLOT_GEN1, 1, 2, true);
        cfg = flow_table_config();
        find_keys(&cfg, addrs, EDGE_KEYS, &other, &x, &y);
        for (unsigned i = 0; i < EDGE_KEYS; i++)
                fds[i] = open_client_ipv4(addrs[i], EDGE_PORT);
        for (unsigned i = 0; i < 2 * GRM_FLOW_WAYS; i++)
                (void) send_one(rig, fds[i], "a flow of the two buckets");
        assert_stats(rig, &st, "8 flows of two buckets", GRM_STAT_FLOW_CREATED, 2 * GRM_FLOW_WAYS);
        (void) send_one(rig, fds[8], "the 9th flow");
        assert_stats(rig, &st, "the 9th flow", GRM_STAT_FLOW_UNTRACKED, 1);

        /* Idle past the 1 s timeout (plus a tick): the entries are free to take. */
        sleep_msec(1200);
        (void) send_one(rig, fds[8], "the 9th flow after the others idled");
        assert_stats(rig, &st, "the 9th flow after the others idled", GRM_STAT_FLOW_CREATED, 1);
        expect(entry_in(addrs[8], x, y, NULL), "the 9th flow has no entry");

        /* The 8 are new flows again, on the working generation: those that find their own
         * expired entry take it again (flow_expired); the one whose entry the 9th took, and then
         * each whose entry such a flow took in turn, takes another expired one (flow_created),
         * until the entries are all live: nine flows, eight entries, so the last one without an
         * entry may find no room (flow_untracked). */
        send_kept_first(rig, addrs, fds, x, y, 1, "a flow back from idle");
        d = stats_delta(rig, &st);
        expect_eq(counters_sum(&d), 2 * GRM_FLOW_WAYS, "verdicts");
        expect_eq(d.v[GRM_STAT_FLOW_EXPIRED] + d.v[GRM_STAT_FLOW_CREATED] + d.v[GRM_STAT_FLOW_UNTRACKED],
                  2 * GRM_FLOW_WAYS, "flow_expired + flow_created + flow_untracked");
        expect(d.v[GRM_STAT_FLOW_EXPIRED] >= 1, "no flow found its expired entry");
        expect(d.v[GRM_STAT_FLOW_UNTRACKED] <= 1, "more than one flow without room");
        expect_eq(flow_entries_in_use(), 2 * GRM_FLOW_WAYS, "entries in use");
        {
                unsigned with_entry = 0;

                for (unsigned i = 0; i < EDGE_KEYS; i++)
                        with_entry += entry_in(addrs[i], x, y, NULL);
                expect_eq(with_entry, 2 * GRM_FLOW_WAYS, "flows with an entry");
        }

        for (unsigned i = 0; i < EDGE_KEYS; i++)
                safe_close(fds[i]);
        rig_free(rig);
}
END_TEST

START_TEST(test_slot_reused) {
        Rig *rig = rig_new(&cases_flow[0], EDGE_TABLE_SIZE, 125 * USEC_PER_SEC, 0);
        Counters st = stats_now(rig), d;
        struct grm_config cfg;
        uint32_t addrs[EDGE_KEYS], other, x, y;
        int fds[EDGE_KEYS], s;
        struct grm_flow_entry e;

        gen_start(rig, SLOT_GEN1, 1, 2, true);
        cfg = flow_table_config();
        find_keys(&cfg, addrs, EDGE_KEYS, &other, &x, &y);
        for (unsigned i = 0; i < EDGE_KEYS; i++)
                fds[i] = open_client_ipv4(addrs[i], EDGE_PORT);
        for (unsigned i = 0; i < 2 * GRM_FLOW_WAYS; i++)
                (void) send_one(rig, fds[i], "a flow of the two buckets");
        assert_stats(rig, &st, "8 flows of two buckets", GRM_STAT_FLOW_CREATED, 2 * GRM_FLOW_WAYS);

        /* Generation 1 exits; generation 5 takes its slot (the same socket array indexes) and
         * works. The entries still say generation 1: stale, free to take. */
        gen_end(rig, 1, SLOT_GEN1);
        gen_start(rig, SLOT_GEN1, 5, 2, true);
        s = send_one(rig, fds[8], "the 9th flow after the slot was reused");
        expect_eq(rig->socks[s].gen, 5, "the 9th flow: generation");
        assert_stats(rig, &st, "the 9th flow after the slot was reused", GRM_STAT_FLOW_CREATED, 1);

        /* Generation 1's flows, all on generation 5: those that find their entry are stale
         * (and take it again), the others new (as in test_expiry, a chain of entries taken;
         * the last may find no room). First the one whose stale entry is still there, so that
         * at least one finds it: which entry the 9th flow took depends on the table's secret,
         * and in send order the chain of displacements can reach every flow. */
        send_kept_first(rig, addrs, fds, x, y, 5, "a flow of generation 1 after its slot was reused");
        d = stats_delta(rig, &st);
        expect_eq(counters_sum(&d), 2 * GRM_FLOW_WAYS, "verdicts");
        expect_eq(d.v[GRM_STAT_FLOW_STALE] + d.v[GRM_STAT_FLOW_CREATED] + d.v[GRM_STAT_FLOW_UNTRACKED],
                  2 * GRM_FLOW_WAYS, "flow_stale + flow_created + flow_untracked");
        expect(d.v[GRM_STAT_FLOW_STALE] >= 1, "no flow found its stale entry");
        expect(d.v[GRM_STAT_FLOW_UNTRACKED] <= 1, "more than one flow without room");
        expect_eq(flow_entries_in_use(), 2 * GRM_FLOW_WAYS, "entries in use");
        for (unsigned i = 0; i < EDGE_KEYS; i++)
                if (entry_in(addrs[i], x, y, &e))
                        expect_eq(e.gen, 5, "flow %u: entry generation", i);

        for (unsigned i = 0; i < EDGE_KEYS; i++)
                safe_close(fds[i]);
        rig_free(rig);
}
END_TEST

/* ---- 4. the quota of an IPv6 /64 ---- */

START_TEST(test_quota_ipv6) {
        enum { QUOTA = 16, SOURCES = QUOTA + 10 };
        static const Case c = { "ipv6/flow", &family_ipv6, GRM_DISSECTOR_FLOW };
        Rig *rig = rig_new(&c, 65536, 125 * USEC_PER_SEC, QUOTA);
        Counters st = stats_now(rig), d;
        int raw = open_raw(AF_INET6);
        struct in6_addr a;

        gen_start(rig, SLOT_GEN1, 1, 2, true);
        /* 26 addresses of 2001:db8:1::/64, one datagram each: the /64 is one source. */
        for (unsigned i = 0; i < SOURCES; i++) {
                expect(inet_pton(AF_INET6, "2001:db8:1::", &a) == 1, "inet_pton");
                a.s6_addr[14] = (uint8_t) (i >> 8);
                a.s6_addr[15] = (uint8_t) (1 + i);
                a.s6_addr[8] = (uint8_t) i; /* the interface ID varies, the /64 does not */
                forge_ipv6(rig, raw, &a, 4000);
        }
        /* And one from another /64. */
        expect(inet_pton(AF_INET6, "2001:db8:2::1", &a) == 1, "inet_pton");
        forge_ipv6(rig, raw, &a, 4000);

        /* Wait until all 27 were steered. */
        for (uint64_t deadline = now_msec() + DELIVERY_TIMEOUT_MSEC; now_msec() < deadline;) {
                Counters now = stats_now(rig);

                if (counters_sum(&now) - counters_sum(&st) >= SOURCES + 1)
                        break;
                sleep_msec(10);
        }
        d = stats_delta(rig, &st);
        expect_eq(d.v[GRM_STAT_FLOW_CREATED], QUOTA + 1, "flow_created: the quota, and the other /64");
        expect_eq(d.v[GRM_STAT_FLOW_OVER_QUOTA], SOURCES - QUOTA, "flow_over_quota");
        expect_eq(counters_sum(&d), SOURCES + 1, "verdicts");

        safe_close(raw);
        drain_all(rig, 0);
        rig_free(rig);
}
END_TEST

/* ---- 5. maps of another layout ---- */

/* Loads the program over adopted maps fds on a fresh group socket: steering_add_group()'s
 * result. */
static int adopt_and_load(const int fds[STEERING_N_MAPS]) {
        _cleanup_(steering_freep) Steering *s = NULL;
        int fd = open_server_socket(&family_ipv4, 0, NULL), r;

        r = steering_new(EDGE_TABLE_SIZE, &s);
        expect(r == 0, "steering_new(): %s", strerror(-r));
        r = steering_adopt_maps(s, fds);
        if (r >= 0)
                r = steering_add_group(s, fd, NULL);
        safe_close(fd);
        return r;
}

/* The kernel's jiffies as /proc/timer_list shows them (root only), or -1. */
static int64_t timer_list_jiffies(void) {
        FILE *f = fopen("/proc/timer_list", "re");
        char line[256];
        int64_t j = -1;

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "jiffies: ", 9) == 0) {
                        j = strtoll(line + 9, NULL, 10);
                        break;
                }
        fclose(f);
        return j;
}

/* CONFIG_HZ from /proc/config.gz, or 0 where the kernel does not show its config. */
static unsigned config_hz(void) {
        FILE *p = popen("zcat /proc/config.gz 2>/dev/null | grep '^CONFIG_HZ='", "re");
        unsigned hz = 0;

        if (!p)
                return 0;
        if (fscanf(p, "CONFIG_HZ=%u", &hz) != 1)
                hz = 0;
        pclose(p);
        return hz;
}

/* The flow clock (src/shared/flow-clock.c) is the kernel's jiffies, at the kernel's HZ: what the
 * program stamps entries with and what grmd turns timeouts into. */
START_TEST(test_flow_clock) {
        unsigned hz, want_hz = config_hz();
        FlowClock *clock = NULL;
        uint32_t t0, t1;
        int64_t j;
        struct timespec a, b;
        uint64_t elapsed_ns;

        current_case = &cases_flow[0];
        expect(flow_clock_new(&clock) == 0, "loading the flow clock: %m");
        expect(flow_clock_hz(clock, &hz) == 0, "measuring the flow clock: %m");
        if (want_hz > 0)
                expect_eq(hz, want_hz, "HZ (CONFIG_HZ=%u)", want_hz);
        else
                expect(hz >= 24 && hz <= 1200, "HZ %u", hz);
        printf("flow clock: HZ=%u (CONFIG_HZ %u)\n", hz, want_hz);

        /* The same clock as the kernel's jiffies, modulo 2^32. */
        expect(flow_clock_now(clock, &t0) == 0, "reading the flow clock: %m");
        j = timer_list_jiffies();
        expect(j >= 0, "no jiffies in /proc/timer_list");
        expect((uint32_t) ((uint32_t) j - t0) <= hz / 10 + 1, "flow clock %u, jiffies %" PRId64, t0, j);

        /* It advances at hz ticks a second. */
        clock_gettime(CLOCK_MONOTONIC, &a);
        expect(flow_clock_now(clock, &t0) == 0, "reading the flow clock: %m");
        sleep_msec(300);
        expect(flow_clock_now(clock, &t1) == 0, "reading the flow clock: %m");
        clock_gettime(CLOCK_MONOTONIC, &b);
        elapsed_ns = (uint64_t) (b.tv_sec - a.tv_sec) * NSEC_PER_SEC + (uint64_t) b.tv_nsec - (uint64_t) a.tv_nsec;
        expect((uint32_t) (t1 - t0) + 2 >= flow_clock_ticks(300 * NSEC_PER_USEC * 1000, hz),
               "%u ticks in 300 ms at HZ=%u", t1 - t0, hz);
        expect((uint32_t) (t1 - t0) <= flow_clock_ticks(elapsed_ns, hz) + 2, "%u ticks in %" PRIu64 " ns at HZ=%u",
               t1 - t0, elapsed_ns, hz);

        /* Conversions. */
        expect_eq(flow_clock_ticks(NSEC_PER_SEC, 250), 250, "1 s at 250");
        expect_eq(flow_clock_ticks(1500 * NSEC_PER_USEC * 1000, 300), 450, "1.5 s at 300");
        expect_eq(flow_clock_ticks(3999999, 250), 0, "just under a tick at 250");
        expect_eq(flow_clock_ticks(UINT64_MAX, 1000), UINT64_MAX / NSEC_PER_SEC * 1000 + 709, "the longest timeout");
        flow_clock_free(clock);
}
END_TEST

START_TEST(test_abi) {
        int fds[STEERING_N_MAPS], wrong[STEERING_N_MAPS], r;
        unsigned n_fds;

        current_case = &cases_flow[0];
        n_fds = count_open_fds();
        {
                Rig *rig = rig_new(&cases_flow[0], EDGE_TABLE_SIZE, 125 * USEC_PER_SEC, 0);

                r = steering_get_map_fds(rig->steering, fds);
                expect(r == 0, "steering_get_map_fds(): %s", strerror(-r));
                for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                        fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                rig->n_fds_at_start += STEERING_N_MAPS; /* the copies stay open */
                rig_free(rig);
        }
        expect_eq(adopt_and_load(fds), 0, "loading over maps of this layout");

        /* What a snapshot of the old layout holds: an LRU hash called "flows" among maps that
         * are otherwise right. */
        memcpy(wrong, fds, sizeof(wrong));
        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                if (streq(steering_map_names[i], "flows")) {
                        wrong[i] = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "flows", 24, 16, 1024, NULL);
                        expect(wrong[i] >= 0, "bpf_map_create(): %m");
                        expect_eq(-adopt_and_load(wrong), EPROTO, "loading over an LRU flow table");
                        wrong[i] = safe_close(wrong[i]);
                        /* An array of whole 64-byte buckets. */
                        wrong[i] = bpf_map_create(BPF_MAP_TYPE_ARRAY, "flows", 4, 64, 1024, NULL);
                        expect(wrong[i] >= 0, "bpf_map_create(): %m");
                        expect_eq(-adopt_and_load(wrong), EPROTO, "loading over a table of 64-byte values");
                        wrong[i] = safe_close(wrong[i]);
                        /* The right entries, not mmapable: its buckets would straddle cache lines. */
                        wrong[i] = bpf_map_create(BPF_MAP_TYPE_ARRAY, "flows", 4, 16, 1024, NULL);
                        expect(wrong[i] >= 0, "bpf_map_create(): %m");
                        expect_eq(-adopt_and_load(wrong), EPROTO, "loading over a table without BPF_F_MMAPABLE");
                        wrong[i] = safe_close(wrong[i]);
                        wrong[i] = fds[i];
                }
        /* Maps of the right sizes whose config says they are of another version of the layout. */
        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                if (streq(steering_map_names[i], "config")) {
                        struct grm_config cfg;
                        __u32 zero = 0;

                        expect(bpf_map_lookup_elem(fds[i], &zero, &cfg) == 0, "reading the config: %m");
                        cfg.maps_abi = GRM_MAPS_ABI_VERSION - 1;
                        expect(bpf_map_update_elem(fds[i], &zero, &cfg, BPF_ANY) == 0, "writing the config: %m");
                        expect_eq(-adopt_and_load(fds), EPROTO, "loading over maps of ABI version %u",
                                  GRM_MAPS_ABI_VERSION - 1);
                        cfg.maps_abi = GRM_MAPS_ABI_VERSION;
                        expect(bpf_map_update_elem(fds[i], &zero, &cfg, BPF_ANY) == 0, "writing the config: %m");
                        expect_eq(adopt_and_load(fds), 0, "loading over the maps again");
                }

        /* A snapshot with one map fewer: whatever fd comes next where the last map should be. */
        wrong[STEERING_N_MAPS - 1] = 0;
        expect_eq(-adopt_and_load(wrong), EPROTO, "loading over stdin as a map");

        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                safe_close(fds[i]);
        expect_eq(count_open_fds(), n_fds, "open fds");
}
END_TEST

static TCase *tcase(Suite *s, const char *name, double timeout_sec) {
        TCase *tc = tcase_create(name);

        tcase_set_timeout(tc, timeout_sec);
        suite_add_tcase(s, tc);
        return tc;
}

static Suite *flow_table_suite(void) {
        Suite *s = suite_create("flow table datapath");

        tcase_add_loop_test(tcase(s, "one_host_flood", 120), test_one_host_flood, 0, ELEMENTSOF(cases_flood));
        tcase_add_test(tcase(s, "one_host_flood_no_quota", 120), test_one_host_flood_no_quota);
        tcase_add_loop_test(tcase(s, "spoofed_flood", 120), test_spoofed_flood, 0, ELEMENTSOF(cases_flood));
        tcase_add_test(tcase(s, "full", 30), test_full);
        tcase_add_test(tcase(s, "collision", 30), test_collision);
        tcase_add_test(tcase(s, "expiry", 30), test_expiry);
        tcase_add_test(tcase(s, "slot_reused", 30), test_slot_reused);
        tcase_add_test(tcase(s, "quota_ipv6", 30), test_quota_ipv6);
        tcase_add_test(tcase(s, "abi", 30), test_abi);
        tcase_add_test(tcase(s, "flow_clock", 30), test_flow_clock);
        return s;
}

int main(void) {
        SRunner *sr;
        int failed, r;

        r = datapath_setup("test-flow-table");
        if (r >= 0)
                return r;
        sr = srunner_create(flow_table_suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
