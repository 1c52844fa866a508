/* SPDX-License-Identifier: MIT */
/*
 * Datapath tests of the quic dissector (bpf/steer.bpf.c, docs/QUIC.md) through the code that
 * ships with it (src/shared/steering.c, src/shared/quic-lb.c), on real SO_REUSEPORT sockets in
 * a private network namespace (datapath_setup() in datapath-util.h), over IPv4, IPv6 and
 * dual-stack. Datagrams are hand-built QUIC headers (no QUIC stack: the program reads headers
 * only), each tagged in its padding so the receiving socket is known exactly:
 *
 *  - short header with grm's connection ID of a live generation: the very socket it names, with
 *    no flow-table entry; of a generation that is gone (slot released, slot reused by a later
 *    generation, sockets closed, socket number past the generation's): the working generation,
 *    no entry; with a foreign prefix or a config id grm did not give out: the flow table;
 *  - config id 0b111, length bits that say less than 8 or more than 20 octets, a long header
 *    whose DCID length octet disagrees with octet 0: not grm's, the flow table;
 *  - the client's first flight: two Initial datagrams of 1,200 bytes with a port change and a
 *    flip between them reach the same generation, 0-RTT too; under 1,200 bytes, or a DCID
 *    under 8 octets, only the flow table (which moves them with the port);
 *  - QUIC v1 and v2 (RFC 9369's long header type bits), Retry from a client, Version
 *    Negotiation, an unknown version, truncated headers: working generation, counted;
 *  - a server that ignores the variables and issues a grm-shaped CID by chance keeps the flow
 *    table's behaviour;
 *  - a later grmd that adopts the maps (takeover) routes the same CIDs and first flights; maps of
 *    another layout are refused; a config id's prefix is replaced only when it changes.
 *
 * Every case asserts on the socket that got each datagram and on every verdict counter.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
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
#include "macro.h"
#include "quic-lb.h"
#include "steering.h"

#define DELIVERY_TIMEOUT_MSEC 2000
#define RIG_MAX_SOCKS         24
#define SOCKS_PER_GEN         4
#define TAG_MAGIC             0x71756963U /* "quic" */
#define MAX_DATAGRAM          1500

/* Slots neither 0 nor equal to the generation number (as in test-steering.c). */
#define SLOT_GEN1 5U
#define SLOT_GEN2 11U

/* Long header types: the same bits mean different types in v1 and v2 (RFC 9369 §3.2). */
enum { T_INITIAL, T_0RTT, T_HANDSHAKE, T_RETRY };
static const uint8_t type_bits_v1[] = { 0, 1, 2, 3 };
static const uint8_t type_bits_v2[] = { 1, 2, 3, 0 };

static const Case cases_quic[] = {
        { "ipv4/quic", &family_ipv4, GRM_DISSECTOR_QUIC },
        { "ipv6/quic", &family_ipv6, GRM_DISSECTOR_QUIC },
        { "dual-stack/quic", &family_dual, GRM_DISSECTOR_QUIC },
};

typedef struct RigSock {
        int fd;
        uint32_t gen;          /* 0: the original socket */
        unsigned index;        /* socket number within its generation */
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
        int gen_socks[GRM_GEN_SLOTS][SOCKS_PER_GEN]; /* rig socket ids per slot */
        uint32_t slot_gen[GRM_GEN_SLOTS];
        QuicLbPrefix prefix;
        unsigned config_id;
        int clients[8];
        unsigned n_clients;
        uint32_t next_tag;
} Rig;

typedef struct Counters {
        uint64_t v[_GRM_STAT_MAX];
} Counters;

static int open_server_socket(const Family *f, uint16_t port, uint16_t *ret_port) {
        struct sockaddr_storage sa;
        socklen_t len;
        int fd, one = 1;

        fd = socket(f->server_domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        expect(fd >= 0, "socket(%s): %m", f->name);
        expect(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0, "SO_REUSEPORT: %m");
        if (f->server_domain == AF_INET6) {
                int v6only = !f->dual_stack;

                expect(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) == 0,
                       "IPV6_V6ONLY: %m");
        }
        len = make_sockaddr(f->server_domain, f->server_addr, port, &sa);
        expect(bind(fd, (struct sockaddr *) &sa, len) == 0, "bind(%s port %u): %m", f->server_addr, port);
        if (ret_port) {
                len = sizeof(sa);
                expect(getsockname(fd, (struct sockaddr *) &sa, &len) == 0, "getsockname: %m");
                *ret_port = sockaddr_port(&sa);
        }
        return fd;
}

/* A rig whose new generations get QuicServerIdPrefix=prefix_hex and QuicConfigId=config_id. */
static Rig *rig_new(const Case *c, const char *prefix_hex, unsigned config_id) {
        Rig *rig;
        int r, fd;

        current_case = c;
        rig = calloc(1, sizeof(*rig));
        expect(rig, "out of memory");
        rig->c = c;
        rig->n_fds_at_start = count_open_fds();
        rig->next_tag = 1;
        rig->config_id = config_id;
        expect(quic_lb_parse_prefix(prefix_hex, &rig->prefix) == 0, "bad prefix %s", prefix_hex);

        r = steering_new(65536, &rig->steering);
        expect(r == 0, "steering_new(): %s", strerror(-r));
        fd = open_server_socket(c->family, 0, &rig->port);
        rig->socks[rig->n_socks++] = (RigSock) { .fd = fd };
        rig->dest_len = make_sockaddr(c->family->client_domain, c->family->client_addr, rig->port, &rig->dest);
        r = steering_add_group(rig->steering, fd, NULL);
        expect(r == 0, "steering_add_group(): %s", strerror(-r));
        r = steering_set_settings(rig->steering, GRM_DISSECTOR_QUIC, 125 * USEC_PER_SEC);
        expect(r == 0, "steering_set_settings(): %s", strerror(-r));
        r = steering_set_quic_config(rig->steering, config_id, &rig->prefix);
        expect(r == 0, "steering_set_quic_config(): %d", r);
        return rig;
}

static void rig_free(Rig *rig) {
        for (unsigned i = 0; i < rig->n_socks; i++)
                rig->socks[i].fd = safe_close(rig->socks[i].fd);
        for (unsigned i = 0; i < rig->n_clients; i++)
                rig->clients[i] = safe_close(rig->clients[i]);
        rig->steering = steering_free(rig->steering);
        expect_eq(count_open_fds(), rig->n_fds_at_start, "open fds after freeing the rig");
        free(rig);
}

static void gen_start(Rig *rig, unsigned slot, uint32_t gen) {
        int r;

        for (unsigned i = 0; i < SOCKS_PER_GEN; i++) {
                int fd = open_server_socket(rig->c->family, rig->port, NULL);

                expect(rig->n_socks < RIG_MAX_SOCKS, "too many sockets");
                rig->gen_socks[slot][i] = (int) rig->n_socks;
                rig->socks[rig->n_socks++] = (RigSock) { .fd = fd, .gen = gen, .index = i };
                r = steering_register_socket(rig->steering, 0, slot, i, fd);
                expect(r == 0, "steering_register_socket(): %s", strerror(-r));
        }
        r = steering_slot_activate(rig->steering, slot, gen, SOCKS_PER_GEN);
        expect(r == 0, "steering_slot_activate(): %s", strerror(-r));
        rig->slot_gen[slot] = gen;
}

/* The instance of the slot's generation exits: its sockets close, grmd releases the slot. */
static void gen_stop(Rig *rig, unsigned slot) {
        for (unsigned i = 0; i < SOCKS_PER_GEN; i++)
                rig->socks[rig->gen_socks[slot][i]].fd = safe_close(rig->socks[rig->gen_socks[slot][i]].fd);
        expect(steering_slot_release(rig->steering, slot) == 0, "steering_slot_release()");
        rig->slot_gen[slot] = 0;
}

static void set_working(Rig *rig, unsigned slot) {
        expect(steering_set_working(rig->steering, slot, GRM_SLOT_NONE) == 0, "steering_set_working()");
}

/* A client socket: one source port. */
static int client_new(Rig *rig) {
        const Family *f = rig->c->family;
        struct sockaddr_storage sa;
        socklen_t len = make_sockaddr(f->client_domain, f->client_addr, 0, &sa);
        int fd = socket(f->client_domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        expect(fd >= 0, "client socket(): %m");
        expect(bind(fd, (struct sockaddr *) &sa, len) == 0, "client bind(): %m");
        expect(rig->n_clients < ELEMENTSOF(rig->clients), "too many clients");
        rig->clients[rig->n_clients++] = fd;
        return fd;
}

/* ---- building datagrams ---- */

typedef struct Datagram {
        uint8_t b[MAX_DATAGRAM];
        size_t len;
} Datagram;

/* grm's connection ID of (slot, sock, gen) with the rig's prefix and config id. */
static size_t cid_grm(const Rig *rig, unsigned config_id, unsigned length, unsigned slot, unsigned sock,
                      uint32_t gen, uint8_t *cid) {
        size_t n;

        memset(cid, 0x5a, length);
        cid[0] = (uint8_t) (config_id << 5 | (length - 1));
        expect(quic_lb_server_id(&rig->prefix, slot, sock, gen, cid + 1, &n) == 0, "quic_lb_server_id()");
        return length;
}

/* A client-chosen DCID: octet 0 says config id 7, so it is never grm's whatever follows. */
static size_t cid_client(unsigned length, uint8_t seed, uint8_t *cid) {
        for (unsigned i = 0; i < length; i++)
                cid[i] = (uint8_t) (seed * 31 + i * 7 + 1);
        cid[0] = (uint8_t) (0xe0 | (seed & 0x1f));
        return length;
}

static void short_header(Datagram *d, const uint8_t *cid, size_t cid_len, size_t total) {
        memset(d, 0, sizeof(*d));
        d->b[0] = 0x40 | 0x01; /* fixed bit, 2-octet packet number */
        memcpy(d->b + 1, cid, cid_len);
        d->len = total;
}

/* A v1 or v2 long header of the given type (T_*) padded to total octets. */
static void long_header(Datagram *d, uint32_t version, int type, const uint8_t *dcid, size_t dcid_len,
                        const uint8_t *scid, size_t scid_len, size_t total) {
        uint8_t bits = version == GRM_QUIC_VERSION_2 ? type_bits_v2[type] : type_bits_v1[type];
        size_t o = 0;

        memset(d, 0, sizeof(*d));
        d->b[o++] = (uint8_t) (0xc0 | bits << 4 | 0x01);
        d->b[o++] = (uint8_t) (version >> 24);
        d->b[o++] = (uint8_t) (version >> 16);
        d->b[o++] = (uint8_t) (version >> 8);
        d->b[o++] = (uint8_t) version;
        d->b[o++] = (uint8_t) dcid_len;
        memcpy(d->b + o, dcid, dcid_len);
        o += dcid_len;
        d->b[o++] = (uint8_t) scid_len;
        memcpy(d->b + o, scid, scid_len);
        o += scid_len;
        if (type == T_INITIAL)
                d->b[o++] = 0; /* token length */
        d->b[o++] = 0x44;      /* a 2-octet length, value irrelevant here */
        d->b[o++] = 0x00;
        d->len = total;
}

/* ---- sending and receiving ---- */

/* Reads and discards whatever is queued anywhere. */
static void drain_all(Rig *rig) {
        uint8_t buf[MAX_DATAGRAM];

        for (unsigned i = 0; i < rig->n_socks; i++)
                if (rig->socks[i].fd >= 0)
                        while (recv(rig->socks[i].fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
                                ;
}

/* Sends d from client (its last 8 octets replaced by a tag when it has room) and returns the
 * rig socket that got it; fails the test if none did in time or another did too. */
static int send_locate(Rig *rig, int client, Datagram *d) {
        uint8_t buf[MAX_DATAGRAM];
        uint32_t tag = rig->next_tag++;
        uint64_t deadline = now_msec() + DELIVERY_TIMEOUT_MSEC;
        int where = -1;
        bool tagged = d->len >= 24;

        drain_all(rig);
        if (tagged) {
                uint32_t magic = htonl(TAG_MAGIC), t = htonl(tag);

                memcpy(d->b + d->len - 8, &magic, 4);
                memcpy(d->b + d->len - 4, &t, 4);
        }
        expect(sendto(client, d->b, d->len, 0, (struct sockaddr *) &rig->dest, rig->dest_len) == (ssize_t) d->len,
               "sendto(%zu octets): %m", d->len);

        while (where < 0) {
                struct pollfd pfds[RIG_MAX_SOCKS];
                unsigned n = 0;
                uint64_t now;

                for (unsigned i = 0; i < rig->n_socks; i++) {
                        ssize_t l;

                        if (rig->socks[i].fd < 0)
                                continue;
                        l = recv(rig->socks[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
                        if (l >= 0) {
                                expect((size_t) l == d->len, "a datagram of %zd octets, expected %zu", l, d->len);
                                if (tagged)
                                        expect(memcmp(buf + l - 8, d->b + d->len - 8, 8) == 0, "a stray datagram");
                                where = (int) i;
                                break;
                        }
                        pfds[n++] = (struct pollfd) { .fd = rig->socks[i].fd, .events = POLLIN };
                }
                if (where >= 0)
                        break;
                now = now_msec();
                expect(now < deadline, "datagram %u (%zu octets) never arrived", tag, d->len);
                (void) poll(pfds, n, (int) (deadline - now));
        }
        /* Exactly one copy. */
        sleep_msec(1);
        for (unsigned i = 0; i < rig->n_socks; i++)
                if (rig->socks[i].fd >= 0)
                        expect(recv(rig->socks[i].fd, buf, sizeof(buf), MSG_DONTWAIT) < 0, "a second datagram");
        return where;
}

static const char *sock_describe(const Rig *rig, int id, char *buf, size_t size) {
        if (id < 0)
                return "nowhere";
        if (rig->socks[id].gen == 0)
                return "the original socket";
        snprintf(buf, size, "gen %u socket %u", rig->socks[id].gen, rig->socks[id].index);
        return buf;
}

/* d from client lands on socket sock of the generation in slot. */
static int expect_socket(Rig *rig, int client, Datagram *d, unsigned slot, unsigned sock, const char *what) {
        int where = send_locate(rig, client, d), want = rig->gen_socks[slot][sock];
        char b1[64], b2[64];

        expect(where == want, "%s: landed on %s, expected %s", what, sock_describe(rig, where, b1, sizeof(b1)),
               sock_describe(rig, want, b2, sizeof(b2)));
        return where;
}

/* d from client lands on some socket of the generation in slot; returns the rig socket id. */
static int expect_gen(Rig *rig, int client, Datagram *d, unsigned slot, const char *what) {
        int where = send_locate(rig, client, d);
        char b[64];

        expect(where > 0 && rig->socks[where].gen == rig->slot_gen[slot], "%s: landed on %s, expected gen %u", what,
               sock_describe(rig, where, b, sizeof(b)), rig->slot_gen[slot]);
        return where;
}

static Counters stats_now(Rig *rig) {
        Counters c;

        expect(steering_get_stats(rig->steering, c.v) == 0, "steering_get_stats()");
        return c;
}

/* The verdict counters moved by exactly the (stat, count) pairs given, -1 terminated. */
static void assert_stats(Rig *rig, Counters *before, const char *what, ...) {
        Counters now = stats_now(rig), expected = {};
        va_list ap;
        int stat;

        va_start(ap, what);
        while ((stat = va_arg(ap, int)) >= 0)
                expected.v[stat] += va_arg(ap, unsigned);
        va_end(ap);
        for (int i = 0; i < (int) _GRM_STAT_MAX; i++)
                expect_eq(now.v[i] - before->v[i], expected.v[i], "%s: verdict counter %s", what,
                          grm_stat_to_string(i));
        *before = now;
}

static uint64_t flow_entries(Rig *rig) {
        uint64_t counts[1], total;

        expect(steering_count_flows(rig->steering, counts, &total) == 0, "steering_count_flows()");
        return total;
}

/* Generation 1 in SLOT_GEN1 working, generation 2 in SLOT_GEN2 started and made working: two
 * live generations, the second one working. */
static void two_generations(Rig *rig) {
        gen_start(rig, SLOT_GEN1, 1);
        set_working(rig, SLOT_GEN1);
        gen_start(rig, SLOT_GEN2, 2);
        set_working(rig, SLOT_GEN2);
}

/* ---- tests ---- */

/* Short header, grm's CID of a live generation: the very socket it names, old and working
 * generation alike, no flow entry; after the working generation moves on, still there. */
START_TEST(test_short_live) {
        Rig *rig = rig_new(&cases_quic[_i], "", 0);
        Counters st = stats_now(rig);
        uint8_t cid[GRM_QUIC_CID_MAX];
        Datagram d;
        int client = client_new(rig);

        two_generations(rig);
        for (unsigned sock = 0; sock < SOCKS_PER_GEN; sock++) {
                short_header(&d, cid, cid_grm(rig, 0, 8, SLOT_GEN1, sock, 1, cid), 40);
                expect_socket(rig, client, &d, SLOT_GEN1, sock, "gen 1's CID, 8 octets");
                short_header(&d, cid, cid_grm(rig, 0, 20, SLOT_GEN2, sock, 2, cid), 60);
                expect_socket(rig, client, &d, SLOT_GEN2, sock, "gen 2's CID, 20 octets");
        }
        assert_stats(rig, &st, "live CIDs", GRM_STAT_QUIC_CID_LIVE, 2 * SOCKS_PER_GEN, -1);
        expect_eq(flow_entries(rig), 0, "flow entries (a live CID needs none)");

        /* The smallest possible 1-RTT datagram with the longest CID. */
        short_header(&d, cid, cid_grm(rig, 0, 20, SLOT_GEN1, 3, 1, cid), 21);
        expect_socket(rig, client, &d, SLOT_GEN1, 3, "21-octet datagram");
        assert_stats(rig, &st, "21 octets", GRM_STAT_QUIC_CID_LIVE, 1, -1);
        rig_free(rig);
}
END_TEST

/* Short header, grm's shape, generation or socket gone: the working generation, no entry. */
START_TEST(test_short_stale) {
        Rig *rig = rig_new(&cases_quic[_i], "", 0);
        Counters st = stats_now(rig);
        uint8_t cid[GRM_QUIC_CID_MAX];
        Datagram d;
        int client = client_new(rig);

        two_generations(rig);

        /* A socket number past the generation's sockets. */
        short_header(&d, cid, cid_grm(rig, 0, 12, SLOT_GEN1, SOCKS_PER_GEN, 1, cid), 40);
        expect_gen(rig, client, &d, SLOT_GEN2, "socket 4 of a 4-socket generation");
        /* A slot no generation holds. */
        short_header(&d, cid, cid_grm(rig, 0, 12, 0, 0, 1, cid), 40);
        expect_gen(rig, client, &d, SLOT_GEN2, "a free slot");
        assert_stats(rig, &st, "no such socket", GRM_STAT_QUIC_CID_STALE, 2, -1);

        /* Generation 1 exits: its CIDs go to the working generation. */
        gen_stop(rig, SLOT_GEN1);
        short_header(&d, cid, cid_grm(rig, 0, 12, SLOT_GEN1, 2, 1, cid), 40);
        expect_gen(rig, client, &d, SLOT_GEN2, "gen 1 gone");
        assert_stats(rig, &st, "gen 1 gone", GRM_STAT_QUIC_CID_STALE, 1, -1);

        /* Generation 17 reuses slot 1's place: gen 1's CIDs are not its own (17 - 1 is not a
         * multiple of 2^15), but gen 17's are. */
        gen_start(rig, SLOT_GEN1, 17);
        short_header(&d, cid, cid_grm(rig, 0, 12, SLOT_GEN1, 2, 1, cid), 40);
        expect_gen(rig, client, &d, SLOT_GEN2, "gen 1's CID, slot now gen 17's");
        short_header(&d, cid, cid_grm(rig, 0, 12, SLOT_GEN1, 2, 17, cid), 40);
        expect_socket(rig, client, &d, SLOT_GEN1, 2, "gen 17's own CID");
        /* Only 2^15 generations later would the bits match: gen 32769 names slot 5 like gen 1
         * and is caught by generation-bit equality, which the unit tests pin down. */
        assert_stats(rig, &st, "slot reused", GRM_STAT_QUIC_CID_STALE, 1, GRM_STAT_QUIC_CID_LIVE, 1, -1);

        /* Gen 17's instance closed its sockets (its slot is still held): its CIDs have no
         * socket. */
        for (unsigned i = 0; i < SOCKS_PER_GEN; i++)
                rig->socks[rig->gen_socks[SLOT_GEN1][i]].fd = safe_close(rig->socks[rig->gen_socks[SLOT_GEN1][i]].fd);
        short_header(&d, cid, cid_grm(rig, 0, 12, SLOT_GEN1, 0, 17, cid), 40);
        expect_gen(rig, client, &d, SLOT_GEN2, "gen 17's sockets closed");
        assert_stats(rig, &st, "sockets closed", GRM_STAT_QUIC_CID_STALE, 1, -1);
        expect_eq(flow_entries(rig), 0, "flow entries (stale CIDs make none)");
        rig_free(rig);
}
END_TEST

/* Not grm's CID (a foreign prefix, a config id grm did not give out, 0b111, length bits out of
 * range): the flow table, which keeps the flow on its generation across a flip. */
START_TEST(test_short_foreign) {
        Rig *rig = rig_new(&cases_quic[_i], "c0a8", 2);
        Counters st = stats_now(rig);
        uint8_t cid[GRM_QUIC_CID_MAX];
        QuicLbPrefix own = rig->prefix;
        Datagram d[6];
        int client[6], on_gen1[6];

        gen_start(rig, SLOT_GEN1, 1);
        set_working(rig, SLOT_GEN1);
        gen_start(rig, SLOT_GEN2, 2);

        /* Each names gen 2's socket 1, which is live but not working: only grm's shape goes there. */
        expect(quic_lb_parse_prefix("c0a9", &rig->prefix) == 0, "prefix");
        short_header(&d[0], cid, cid_grm(rig, 2, 12, SLOT_GEN2, 1, 2, cid), 40);   /* another prefix */
        rig->prefix = own;
        short_header(&d[1], cid, cid_grm(rig, 3, 12, SLOT_GEN2, 1, 2, cid), 40);   /* config id 3 */
        short_header(&d[2], cid, cid_grm(rig, 7, 12, SLOT_GEN2, 1, 2, cid), 40);   /* 0b111 */
        short_header(&d[3], cid, cid_grm(rig, 2, 12, SLOT_GEN2, 1, 2, cid), 40);
        d[3].b[1] = (uint8_t) (2 << 5 | 6);                                       /* 7 octets */
        short_header(&d[4], cid, cid_grm(rig, 2, 12, SLOT_GEN2, 1, 2, cid), 40);
        d[4].b[1] = (uint8_t) (2 << 5 | 20);                                      /* 21 octets */
        short_header(&d[5], cid, cid_grm(rig, 2, 12, SLOT_GEN2, 1, 2, cid), 40);
        d[5].b[1] = (uint8_t) (2 << 5 | 8);                      /* 9: no room for 4 random octets */

        for (unsigned i = 0; i < ELEMENTSOF(d); i++) {
                client[i] = client_new(rig);
                on_gen1[i] = expect_gen(rig, client[i], &d[i], SLOT_GEN1, "foreign CID, new flow");
        }
        assert_stats(rig, &st, "foreign CIDs", GRM_STAT_FLOW_CREATED, 6, -1);
        expect_eq(flow_entries(rig), 6, "flow entries");

        set_working(rig, SLOT_GEN2);
        for (unsigned i = 0; i < ELEMENTSOF(d); i++) {
                int where = send_locate(rig, client[i], &d[i]);

                expect(where == on_gen1[i], "foreign CID %u moved after the flip", i);
        }
        assert_stats(rig, &st, "foreign CIDs after the flip", GRM_STAT_FLOW_EXISTING, 6, -1);

        /* The same CIDs from a new port are new flows: the flow table's behaviour, exactly. */
        {
                int other = client_new(rig);

                for (unsigned i = 0; i < ELEMENTSOF(d); i++)
                        expect_gen(rig, other, &d[i], SLOT_GEN2, "foreign CID from a new port");
                assert_stats(rig, &st, "foreign CIDs from a new port", GRM_STAT_FLOW_CREATED, 1,
                             GRM_STAT_FLOW_EXISTING, 5, -1);
        }

        /* With the prefix, grm's own CID of gen 1 still goes to gen 1 directly. */
        short_header(&d[0], cid, cid_grm(rig, 2, 12, SLOT_GEN1, 3, 1, cid), 40);
        expect_socket(rig, client[0], &d[0], SLOT_GEN1, 3, "own prefix");
        assert_stats(rig, &st, "own prefix", GRM_STAT_QUIC_CID_LIVE, 1, -1);
        rig_free(rig);
}
END_TEST

/* A long header (Handshake: the DCID is the server's) with grm's CID, live and gone, and with a
 * DCID length octet that disagrees with octet 0; over v1 and v2. */
static void run_handshake(const Case *c, uint32_t version) {
        Rig *rig = rig_new(c, "", 0);
        Counters st = stats_now(rig);
        uint8_t dcid[GRM_QUIC_CID_MAX], scid[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        Datagram d;
        int client = client_new(rig), where;

        two_generations(rig);
        long_header(&d, version, T_HANDSHAKE, dcid, cid_grm(rig, 0, 16, SLOT_GEN1, 2, 1, dcid), scid, 8, 200);
        expect_socket(rig, client, &d, SLOT_GEN1, 2, "Handshake to gen 1");
        long_header(&d, version, T_0RTT, dcid, cid_grm(rig, 0, 16, SLOT_GEN1, 1, 1, dcid), scid, 8, 200);
        expect_socket(rig, client, &d, SLOT_GEN1, 1, "0-RTT after a Retry from gen 1");
        long_header(&d, version, T_INITIAL, dcid, cid_grm(rig, 0, 16, SLOT_GEN1, 0, 1, dcid), scid, 8, 1200);
        expect_socket(rig, client, &d, SLOT_GEN1, 0, "Initial after a Retry from gen 1");
        assert_stats(rig, &st, "live", GRM_STAT_QUIC_CID_LIVE, 3, -1);

        /* The length octet says 17, octet 0 says 16: not grm's, the flow table. */
        long_header(&d, version, T_HANDSHAKE, dcid, cid_grm(rig, 0, 16, SLOT_GEN1, 2, 1, dcid), scid, 8, 200);
        d.b[5] = 17;
        where = expect_gen(rig, client, &d, SLOT_GEN2, "length octet disagrees");
        assert_stats(rig, &st, "length octet disagrees", GRM_STAT_FLOW_CREATED, 1, -1);
        (void) where;

        /* From a port without a flow entry (client has one now, on gen 2). */
        gen_stop(rig, SLOT_GEN1);
        long_header(&d, version, T_HANDSHAKE, dcid, cid_grm(rig, 0, 16, SLOT_GEN1, 2, 1, dcid), scid, 8, 200);
        expect_gen(rig, client_new(rig), &d, SLOT_GEN2, "Handshake to gen 1, gone");
        assert_stats(rig, &st, "gone", GRM_STAT_QUIC_CID_STALE, 1, -1);
        expect_eq(flow_entries(rig), 1, "flow entries (only the disagreeing one)");
        rig_free(rig);
}

START_TEST(test_handshake_v1) {
        run_handshake(&cases_quic[_i], GRM_QUIC_VERSION_1);
}
END_TEST

START_TEST(test_handshake_v2) {
        run_handshake(&cases_quic[_i], GRM_QUIC_VERSION_2);
}
END_TEST

/* The first flight: Initial datagrams of 1,200 bytes with a client-chosen DCID reach the
 * generation the first one reached, across a port change and a flip, 0-RTT too; the table
 * forgets a generation that is gone. */
static void run_first_flight(const Case *c, uint32_t version) {
        Rig *rig = rig_new(c, "", 0);
        Counters st = stats_now(rig);
        uint8_t dcid[GRM_QUIC_CID_MAX], scid[8] = { 9, 9, 9, 9, 9, 9, 9, 9 };
        Datagram d;
        int port_a, port_b, port_c, port_d, first;
        size_t n = cid_client(16, 1, dcid);

        gen_start(rig, SLOT_GEN1, 1);
        set_working(rig, SLOT_GEN1);
        port_a = client_new(rig);
        port_b = client_new(rig);
        port_c = client_new(rig);
        port_d = client_new(rig);

        long_header(&d, version, T_INITIAL, dcid, n, scid, 8, 1200);
        first = expect_gen(rig, port_a, &d, SLOT_GEN1, "first Initial");
        assert_stats(rig, &st, "first Initial", GRM_STAT_QUIC_FIRST_FLIGHT_CREATED, 1, -1);

        gen_start(rig, SLOT_GEN2, 2);
        set_working(rig, SLOT_GEN2);

        long_header(&d, version, T_INITIAL, dcid, n, scid, 8, 1252);
        expect(send_locate(rig, port_b, &d) == first, "second Initial from a new port after a flip moved");
        long_header(&d, version, T_0RTT, dcid, n, scid, 8, 300);
        expect(send_locate(rig, port_c, &d) == first, "0-RTT from a third port moved");
        long_header(&d, version, T_INITIAL, dcid, n, scid, 8, 1200);
        expect(send_locate(rig, port_a, &d) == first, "Initial from the first port moved");
        assert_stats(rig, &st, "the rest of the first flight", GRM_STAT_QUIC_FIRST_FLIGHT_EXISTING, 3, -1);

        /* Another handshake starts on the working generation. */
        long_header(&d, version, T_INITIAL, dcid, cid_client(20, 2, dcid), scid, 0, 1200);
        expect_gen(rig, port_d, &d, SLOT_GEN2, "another handshake");
        /* A client DCID that happens to have grm's shape for a gone generation (slot 0 is free)
         * is still the client's: a first flight, not a stale CID. */
        n = cid_grm(rig, 0, 8, 0, 0, 1, dcid);
        long_header(&d, version, T_INITIAL, dcid, n, scid, 8, 1200);
        first = expect_gen(rig, port_d, &d, SLOT_GEN2, "grm-shaped client DCID");
        assert_stats(rig, &st, "two new handshakes", GRM_STAT_QUIC_FIRST_FLIGHT_CREATED, 2, -1);
        gen_start(rig, 0, 3); /* slot 0 now holds gen 3, not gen 1 */
        set_working(rig, 0);
        long_header(&d, version, T_INITIAL, dcid, n, scid, 8, 1200);
        expect(send_locate(rig, port_b, &d) == first, "grm-shaped client DCID moved");
        assert_stats(rig, &st, "grm-shaped client DCID again", GRM_STAT_QUIC_FIRST_FLIGHT_EXISTING, 1, -1);

        /* Generation 1 exits: its handshake's entry is stale, a new Initial starts afresh. */
        gen_stop(rig, SLOT_GEN1);
        n = cid_client(16, 1, dcid);
        long_header(&d, version, T_INITIAL, dcid, n, scid, 8, 1200);
        expect_gen(rig, port_b, &d, 0, "Initial of a handshake whose generation is gone");
        assert_stats(rig, &st, "generation gone", GRM_STAT_QUIC_FIRST_FLIGHT_CREATED, 1, -1);
        rig_free(rig);
}

START_TEST(test_first_flight_v1) {
        run_first_flight(&cases_quic[_i], GRM_QUIC_VERSION_1);
}
END_TEST

START_TEST(test_first_flight_v2) {
        run_first_flight(&cases_quic[_i], GRM_QUIC_VERSION_2);
}
END_TEST

/* Initial datagrams under 1,200 bytes and DCIDs under 8 octets never enter the first-flight
 * table: the flow table places them, and a port change after a flip moves them. 0-RTT never
 * fills it either. */
START_TEST(test_first_flight_limits) {
        Rig *rig = rig_new(&cases_quic[_i], "", 0);
        Counters st = stats_now(rig);
        uint8_t dcid[GRM_QUIC_CID_MAX], scid[8] = {};
        Datagram small, short_dcid, zero_rtt;
        int a = client_new(rig), b = client_new(rig);
        size_t n;

        gen_start(rig, SLOT_GEN1, 1);
        set_working(rig, SLOT_GEN1);

        n = cid_client(16, 3, dcid);
        long_header(&small, GRM_QUIC_VERSION_1, T_INITIAL, dcid, n, scid, 8, 1199);
        n = cid_client(7, 4, dcid);
        long_header(&short_dcid, GRM_QUIC_VERSION_1, T_INITIAL, dcid, n, scid, 8, 1200);
        n = cid_client(16, 5, dcid);
        long_header(&zero_rtt, GRM_QUIC_VERSION_2, T_0RTT, dcid, n, scid, 8, 1200);

        expect_gen(rig, a, &small, SLOT_GEN1, "Initial of 1,199 bytes");
        expect_gen(rig, a, &short_dcid, SLOT_GEN1, "Initial with a 7-octet DCID");
        expect_gen(rig, a, &zero_rtt, SLOT_GEN1, "0-RTT with an unknown DCID");
        assert_stats(rig, &st, "first port", GRM_STAT_FLOW_CREATED, 1, GRM_STAT_FLOW_EXISTING, 2, -1);

        gen_start(rig, SLOT_GEN2, 2);
        set_working(rig, SLOT_GEN2);
        expect_gen(rig, a, &small, SLOT_GEN1, "same port after the flip");
        expect_gen(rig, b, &small, SLOT_GEN2, "Initial of 1,199 bytes from a new port");
        expect_gen(rig, b, &short_dcid, SLOT_GEN2, "7-octet DCID from a new port");
        expect_gen(rig, b, &zero_rtt, SLOT_GEN2, "0-RTT from a new port");
        assert_stats(rig, &st, "after the flip", GRM_STAT_FLOW_EXISTING, 3, GRM_STAT_FLOW_CREATED, 1, -1);
        rig_free(rig);
}
END_TEST

/* Version Negotiation, unknown versions, Retry from a client, truncated headers: the working
 * generation, counted, no entry. */
START_TEST(test_bad_headers) {
        Rig *rig = rig_new(&cases_quic[_i], "", 0);
        Counters st = stats_now(rig);
        uint8_t dcid[GRM_QUIC_CID_MAX], scid[GRM_QUIC_CID_MAX];
        Datagram d;
        int client = client_new(rig);
        size_t n;

        two_generations(rig);
        /* Each carries gen 1's CID: none of them may reach gen 1. */
        n = cid_grm(rig, 0, 16, SLOT_GEN1, 0, 1, dcid);
        memset(scid, 7, sizeof(scid));

        long_header(&d, 0, T_INITIAL, dcid, n, scid, 8, 100);
        expect_gen(rig, client, &d, SLOT_GEN2, "Version Negotiation");
        assert_stats(rig, &st, "VN", GRM_STAT_QUIC_VERSION_NEGOTIATION, 1, -1);
        long_header(&d, 0xff00001dU, T_HANDSHAKE, dcid, n, scid, 8, 100);
        expect_gen(rig, client, &d, SLOT_GEN2, "draft-29");
        long_header(&d, 0x1a2a3a4aU, T_HANDSHAKE, dcid, n, scid, 8, 1200);
        expect_gen(rig, client, &d, SLOT_GEN2, "a greased version");
        assert_stats(rig, &st, "unknown versions", GRM_STAT_QUIC_UNKNOWN_VERSION, 2, -1);

        /* Retry: v1's type 3, v2's type 0 (which is v1's Initial). */
        long_header(&d, GRM_QUIC_VERSION_1, T_RETRY, dcid, n, scid, 8, 100);
        expect_gen(rig, client, &d, SLOT_GEN2, "v1 Retry from a client");
        long_header(&d, GRM_QUIC_VERSION_2, T_RETRY, dcid, n, scid, 8, 100);
        expect(d.b[0] == 0xc1, "v2 Retry type bits");
        expect_gen(rig, client, &d, SLOT_GEN2, "v2 Retry from a client");
        assert_stats(rig, &st, "Retry", GRM_STAT_QUIC_MALFORMED, 2, -1);

        /* Truncated: empty, 1 octet, a 20-octet short header, a 30-octet long header, DCID and
         * SCID lengths past the datagram or past 20. */
        d.len = 0;
        expect_gen(rig, client, &d, SLOT_GEN2, "empty datagram");
        d.b[0] = 0x41;
        d.len = 1;
        expect_gen(rig, client, &d, SLOT_GEN2, "1 octet");
        short_header(&d, dcid, n, 20);
        expect_gen(rig, client, &d, SLOT_GEN2, "20-octet short header");
        long_header(&d, GRM_QUIC_VERSION_1, T_HANDSHAKE, dcid, n, scid, 0, 30);
        expect_gen(rig, client, &d, SLOT_GEN2, "30-octet long header");
        long_header(&d, GRM_QUIC_VERSION_1, T_HANDSHAKE, dcid, n, scid, 20, 40);
        expect_gen(rig, client, &d, SLOT_GEN2, "SCID past the datagram");
        long_header(&d, GRM_QUIC_VERSION_1, T_HANDSHAKE, dcid, n, scid, 8, 200);
        d.b[5] = 21;
        expect_gen(rig, client, &d, SLOT_GEN2, "DCID length 21");
        long_header(&d, GRM_QUIC_VERSION_1, T_HANDSHAKE, dcid, n, scid, 8, 200);
        d.b[6 + n] = 21;
        expect_gen(rig, client, &d, SLOT_GEN2, "SCID length 21");
        long_header(&d, GRM_QUIC_VERSION_1, T_HANDSHAKE, dcid, n, scid, 8, 200);
        d.b[5] = 20;
        d.len = 6 + 19; /* ends inside the DCID (under the 31 octets a long header needs) */
        expect_gen(rig, client, &d, SLOT_GEN2, "ends inside the DCID");
        assert_stats(rig, &st, "truncated", GRM_STAT_QUIC_MALFORMED, 8, -1);

        /* The same header whole: gen 1's socket 0. */
        long_header(&d, GRM_QUIC_VERSION_1, T_HANDSHAKE, dcid, n, scid, 8, 47);
        expect_socket(rig, client, &d, SLOT_GEN1, 0, "whole");
        assert_stats(rig, &st, "whole", GRM_STAT_QUIC_CID_LIVE, 1, -1);
        expect_eq(flow_entries(rig), 0, "flow entries");
        rig_free(rig);
}
END_TEST

/* A server that ignores GRM_QUIC_SERVER_IDS issues random CIDs, and about one in twenty has
 * grm's shape by chance, naming a generation that does not exist: it still gets the flow table's
 * behaviour, because a CID of a gone generation yields to a live flow entry (and creates none). */
START_TEST(test_ignoring_server) {
        Rig *rig = rig_new(&cases_quic[_i], "", 0);
        Counters st = stats_now(rig);
        uint8_t dcid[GRM_QUIC_CID_MAX], lookalike[GRM_QUIC_CID_MAX], random_cid[GRM_QUIC_CID_MAX];
        Datagram d;
        int a, b, on_a;
        size_t n_look, n_rand;

        gen_start(rig, SLOT_GEN1, 1);
        set_working(rig, SLOT_GEN1);
        a = client_new(rig);
        b = client_new(rig);

        /* The server's random 18-octet CIDs: one looks like grm's (slot 0 holds nothing), one
         * does not (length bits for 27 octets). */
        n_look = cid_grm(rig, 0, 18, 0, 3, 4321, lookalike);
        n_rand = cid_client(18, 9, random_cid);
        random_cid[0] = 26;

        long_header(&d, GRM_QUIC_VERSION_1, T_INITIAL, dcid, cid_client(12, 8, dcid), lookalike, n_look, 1200);
        on_a = expect_gen(rig, a, &d, SLOT_GEN1, "Initial");
        assert_stats(rig, &st, "Initial", GRM_STAT_QUIC_FIRST_FLIGHT_CREATED, 1, -1);

        gen_start(rig, SLOT_GEN2, 2);
        set_working(rig, SLOT_GEN2);
        long_header(&d, GRM_QUIC_VERSION_1, T_HANDSHAKE, lookalike, n_look, dcid, 12, 100);
        expect(send_locate(rig, a, &d) == on_a, "Handshake with the look-alike CID moved after the flip");
        short_header(&d, lookalike, n_look, 60);
        expect(send_locate(rig, a, &d) == on_a, "1-RTT with the look-alike CID moved after the flip");
        short_header(&d, random_cid, n_rand, 60);
        expect(send_locate(rig, a, &d) == on_a, "1-RTT with a random CID moved after the flip");
        assert_stats(rig, &st, "after the flip", GRM_STAT_FLOW_EXISTING, 3, -1);

        /* A new port: the look-alike goes where new flows go without an entry, the random CID
         * gets a new flow entry: both end on the working generation, as with the flow table. */
        short_header(&d, lookalike, n_look, 60);
        expect_gen(rig, b, &d, SLOT_GEN2, "look-alike from a new port");
        assert_stats(rig, &st, "look-alike from a new port", GRM_STAT_QUIC_CID_STALE, 1, -1);
        short_header(&d, random_cid, n_rand, 60);
        expect_gen(rig, b, &d, SLOT_GEN2, "random CID from a new port");
        assert_stats(rig, &st, "random CID from a new port", GRM_STAT_FLOW_CREATED, 1, -1);
        expect_eq(flow_entries(rig), 2, "flow entries");
        rig_free(rig);
}
END_TEST

/* What a takeover does: a second Steering object adopts the first one's maps and loads the program
 * again over them. CIDs and first flights route as before; a map set in the wrong order (what an
 * older grm's snapshot would be) is refused, not half used. */
START_TEST(test_adopt) {
        Rig *rig = rig_new(&cases_quic[_i], "c0a8", 4);
        _cleanup_(steering_freep) Steering *next = NULL, *wrong = NULL;
        int fds[STEERING_N_MAPS], swapped[STEERING_N_MAPS], fd, first, client;
        uint8_t dcid[GRM_QUIC_CID_MAX], cid[GRM_QUIC_CID_MAX], scid[8] = {};
        QuicLbPrefix other;
        Counters st;
        Datagram d;
        size_t n;

        /* The prefix of a config id is rewritten only when it changes. */
        expect_eq(steering_set_quic_config(rig->steering, 4, &rig->prefix), 0, "same prefix again");
        expect(quic_lb_parse_prefix("c0a9", &other) == 0, "prefix");
        expect_eq(steering_set_quic_config(rig->steering, 5, &other), 0, "a new config id");
        expect_eq(steering_set_quic_config(rig->steering, 5, &rig->prefix), 1, "another prefix, same config id");
        expect_eq(steering_set_quic_config(rig->steering, 7, &rig->prefix), (uint64_t) -EINVAL, "config id 7");

        two_generations(rig);
        client = client_new(rig);
        n = cid_client(16, 6, dcid);
        long_header(&d, GRM_QUIC_VERSION_1, T_INITIAL, dcid, n, scid, 8, 1200);
        first = expect_gen(rig, client, &d, SLOT_GEN2, "Initial before the takeover");

        expect(steering_get_map_fds(rig->steering, fds) == 0, "steering_get_map_fds()");
        memcpy(swapped, fds, sizeof(fds));
        swapped[STEERING_N_MAPS - 1] = fds[STEERING_N_MAPS - 2];
        swapped[STEERING_N_MAPS - 2] = fds[STEERING_N_MAPS - 1];
        expect(steering_new(65536, &wrong) == 0 && steering_adopt_maps(wrong, swapped) == 0, "adopt");
        fd = open_server_socket(rig->c->family, rig->port, NULL);
        expect_eq(steering_add_group(wrong, fd, NULL), (uint64_t) -EPROTO, "maps in the wrong order");
        safe_close(fd);
        wrong = steering_free(wrong);

        /* The next grmd: adopts, re-attaches through the original socket, the old one goes. */
        expect(steering_new(65536, &next) == 0 && steering_adopt_maps(next, fds) == 0, "adopt");
        expect_eq(steering_add_group(next, rig->socks[0].fd, NULL), 0, "steering_add_group() over adopted maps");
        rig->steering = steering_free(rig->steering);
        rig->steering = TAKE_PTR(next);
        st = stats_now(rig);

        short_header(&d, cid, cid_grm(rig, 4, 12, SLOT_GEN1, 3, 1, cid), 40);
        expect_socket(rig, client_new(rig), &d, SLOT_GEN1, 3, "gen 1's CID after the takeover");
        long_header(&d, GRM_QUIC_VERSION_1, T_INITIAL, dcid, n, scid, 8, 1200);
        expect(send_locate(rig, client_new(rig), &d) == first, "first flight moved by the takeover");
        assert_stats(rig, &st, "after the takeover", GRM_STAT_QUIC_CID_LIVE, 1, GRM_STAT_QUIC_FIRST_FLIGHT_EXISTING, 1, -1);
        rig_free(rig);
}
END_TEST

static TCase *tcase(Suite *s, const char *name, double timeout_sec) {
        TCase *tc = tcase_create(name);

        tcase_set_timeout(tc, timeout_sec);
        suite_add_tcase(s, tc);
        return tc;
}

static Suite *quic_suite(void) {
        Suite *s = suite_create("quic datapath");
        int n = (int) ELEMENTSOF(cases_quic);

        tcase_add_loop_test(tcase(s, "short_live", 20), test_short_live, 0, n);
        tcase_add_loop_test(tcase(s, "short_stale", 20), test_short_stale, 0, n);
        tcase_add_loop_test(tcase(s, "short_foreign", 20), test_short_foreign, 0, n);
        tcase_add_loop_test(tcase(s, "handshake_v1", 20), test_handshake_v1, 0, n);
        tcase_add_loop_test(tcase(s, "handshake_v2", 20), test_handshake_v2, 0, n);
        tcase_add_loop_test(tcase(s, "first_flight_v1", 20), test_first_flight_v1, 0, n);
        tcase_add_loop_test(tcase(s, "first_flight_v2", 20), test_first_flight_v2, 0, n);
        tcase_add_loop_test(tcase(s, "first_flight_limits", 20), test_first_flight_limits, 0, n);
        tcase_add_loop_test(tcase(s, "bad_headers", 20), test_bad_headers, 0, n);
        tcase_add_loop_test(tcase(s, "ignoring_server", 20), test_ignoring_server, 0, n);
        tcase_add_loop_test(tcase(s, "adopt", 20), test_adopt, 0, n);
        return s;
}

int main(void) {
        SRunner *sr;
        int r, failed;

        r = datapath_setup("test-quic");
        if (r >= 0)
                return r;
        sr = srunner_create(quic_suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
