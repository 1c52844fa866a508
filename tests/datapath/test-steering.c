/* SPDX-License-Identifier: MIT */
/*
 * Datapath tests of the steering program (bpf/steer.bpf.c) through the code that ships with it
 * (src/shared/steering.c), on real SO_REUSEPORT sockets: sk_reuseport programs have no
 * BPF_PROG_TEST_RUN.
 *
 * Before any test runs, the binary moves itself into a network namespace of its own with only
 * loopback up (datapath_setup() in datapath-util.h). Each test runs in a forked child (CK_FORK)
 * and builds its own "rig" there: one Steering object, its groups (an "original" socket per
 * group, bound first as systemd's would be) and generations (sockets registered in a slot).
 * Tests share nothing but the namespace.
 *
 * Tests are table-driven over address family x dissector; every failure message starts with the
 * case's name ("[dual-stack/flow] ..."). A client is one UDP socket per flow; each datagram
 * carries (round, flow, group). The receive side polls every server socket, the original sockets
 * included, and records which socket got each flow's datagram, so the tests assert on the exact
 * socket, on the verdict counters and on the per-slot packet counters.
 *
 * Nothing sleeps on a guess: receiving waits until the expected datagrams arrived (or ~2 s pass),
 * and a datagram expected to be dropped is waited for on the verdict counters.
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
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "datapath-cases.h"
#include "datapath-util.h"
#include "macro.h"
#include "steering.h"

#define DATAGRAM_MAGIC          0x67726d31U /* "grm1" */
#define DELIVERY_TIMEOUT_MSEC   2000        /* how long expected datagrams may take to arrive */
#define DROP_GRACE_MSEC         100         /* how long to look for datagrams that must not come */
#define SEND_BATCH              64          /* datagrams in flight at once: well under rcvbuf */
#define TEST_MAX_GROUPS         2
#define TEST_MAX_SOCKS_PER_GEN  8
#define RIG_MAX_SOCKS           64
#define DEFAULT_FLOW_TIMEOUT_USEC (125 * USEC_PER_SEC)

/* Slots deliberately neither 0 nor equal to the generation number, so index arithmetic that
 * confuses slot, generation and socket number shows up. */
#define SLOT_GEN1 5U
#define SLOT_GEN2 11U

/* What one datagram carries. */
struct datagram {
        uint32_t magic;
        uint32_t seq;    /* the round it belongs to */
        uint32_t flow;   /* the flow (client socket) that sent it */
        uint32_t group;  /* the rig group it was sent to */
};

typedef struct RigSock {
        int fd;                  /* -EBADF once closed */
        unsigned group;          /* index into Rig.groups */
        uint32_t gen;            /* 0: the group's original socket */
        unsigned slot;
        unsigned index;          /* socket number within its generation and group */
} RigSock;

typedef struct RigGroup {
        unsigned index;                 /* steering's group index */
        uint16_t port;
        int original;                   /* rig socket id of the original socket */
        struct sockaddr_storage dest;   /* where clients send */
        socklen_t dest_len;
} RigGroup;

typedef struct RigGen {
        uint32_t gen;
        unsigned slot;
        unsigned n_socks;       /* per group */
        int sock_ids[TEST_MAX_GROUPS][TEST_MAX_SOCKS_PER_GEN];
} RigGen;

typedef struct Rig {
        const Case *c;
        Steering *steering;
        unsigned n_fds_at_start;
        RigGroup groups[TEST_MAX_GROUPS];
        unsigned n_groups;
        RigSock socks[RIG_MAX_SOCKS];
        unsigned n_socks;
        RigGen gens[GRM_GEN_SLOTS];
        int *flow_fds;
        unsigned n_flows, n_flows_allocated;
        uint64_t slot_received[GRM_GEN_SLOTS]; /* datagrams received per slot since activation */
        uint32_t next_seq;
} Rig;

/* One datagram from each of flows first .. first + n - 1 to one group, and where each landed. */
typedef struct Round {
        uint32_t seq;
        unsigned group;
        unsigned first, n;
        int *where;             /* rig socket id that got each flow's datagram, -1: none yet */
        unsigned received;      /* flows whose datagram arrived */
        unsigned dups;          /* second datagrams for a flow (cannot happen) */
        unsigned strays;        /* datagrams of no flow of this round */
} Round;

typedef struct Counters {
        uint64_t v[_GRM_STAT_MAX];
} Counters;

/* A non-blocking SO_REUSEPORT server socket bound to the family's server address and port (0:
 * any), as grmd and systemd open them. Returns the fd; the bound port in *ret_port. */
static int open_server_socket(const Family *f, uint16_t port, uint16_t *ret_port) {
        struct sockaddr_storage sa;
        socklen_t len;
        int fd, one = 1;

        fd = socket(f->server_domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        expect(fd >= 0, "socket(%s): %m", f->name);
        expect(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0,
               "SO_REUSEPORT: %m");
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

static int rig_add_sock(Rig *rig, int fd, unsigned group, uint32_t gen, unsigned slot,
                        unsigned index) {
        expect(rig->n_socks < RIG_MAX_SOCKS, "too many server sockets");
        rig->socks[rig->n_socks] = (RigSock) {
                .fd = fd, .group = group, .gen = gen, .slot = slot, .index = index,
        };
        return (int) rig->n_socks++;
}

/* A Steering object for c with n_groups groups, each on its own port with its original socket
 * bound first and the program attached through it. */
static Rig *rig_new_full(const Case *c, unsigned flow_table_size, unsigned n_groups,
                         uint64_t flow_timeout_usec) {
        Rig *rig;
        int r;

        current_case = c;
        rig = calloc(1, sizeof(*rig));
        expect(rig, "out of memory");
        rig->c = c;
        rig->n_fds_at_start = count_open_fds();
        rig->next_seq = 1;

        r = steering_new(flow_table_size, &rig->steering);
        expect(r == 0, "steering_new(%u): %s", flow_table_size, strerror(-r));

        for (unsigned g = 0; g < n_groups; g++) {
                RigGroup *group = &rig->groups[g];
                int fd = open_server_socket(c->family, 0, &group->port);

                group->original = rig_add_sock(rig, fd, g, 0, 0, 0);
                group->dest_len = make_sockaddr(c->family->client_domain, c->family->client_addr,
                                                group->port, &group->dest);
                r = steering_add_group(rig->steering, fd, &group->index);
                expect(r == 0, "steering_add_group(group %u): %s", g, strerror(-r));
                expect_eq(group->index, g, "group index");
                rig->n_groups++;
        }
        expect_eq(steering_n_groups(rig->steering), n_groups, "steering_n_groups()");

        r = steering_set_settings(rig->steering, c->dissector, flow_timeout_usec);
        expect(r == 0, "steering_set_settings(): %s", strerror(-r));
        return rig;
}

static Rig *rig_new(const Case *c) {
        return rig_new_full(c, 65536, 1, DEFAULT_FLOW_TIMEOUT_USEC);
}

/* Closes everything the rig opened and asserts that nothing else stays open (the Steering
 * object's BPF fds included). */
static void rig_free(Rig *rig) {
        unsigned n_fds;

        for (unsigned i = 0; i < rig->n_socks; i++)
                rig->socks[i].fd = safe_close(rig->socks[i].fd);
        for (unsigned i = 0; i < rig->n_flows; i++)
                rig->flow_fds[i] = safe_close(rig->flow_fds[i]);
        free(rig->flow_fds);
        rig->steering = steering_free(rig->steering);

        n_fds = count_open_fds();
        expect_eq(n_fds, rig->n_fds_at_start, "open fds after freeing the rig");
        free(rig);
}

/* Starts generation gen in slot: n_socks sockets per group bound to the group's port, registered
 * and the slot activated. It is neither working nor pending yet. */
static RigGen *gen_start(Rig *rig, unsigned slot, uint32_t gen, unsigned n_socks) {
        RigGen *g = &rig->gens[slot];
        int r;

        expect(n_socks <= TEST_MAX_SOCKS_PER_GEN, "too many sockets per generation");
        *g = (RigGen) { .gen = gen, .slot = slot, .n_socks = n_socks };
        for (unsigned grp = 0; grp < rig->n_groups; grp++)
                for (unsigned i = 0; i < n_socks; i++) {
                        int fd = open_server_socket(rig->c->family, rig->groups[grp].port, NULL);

                        g->sock_ids[grp][i] = rig_add_sock(rig, fd, grp, gen, slot, i);
                        r = steering_register_socket(rig->steering, rig->groups[grp].index, slot,
                                                     i, fd);
                        expect(r == 0, "steering_register_socket(group %u, slot %u, %u): %s",
                               grp, slot, i, strerror(-r));
                }
        r = steering_slot_activate(rig->steering, slot, gen, n_socks);
        expect(r == 0, "steering_slot_activate(slot %u, gen %u): %s", slot, gen, strerror(-r));
        rig->slot_received[slot] = 0;
        return g;
}

/* The instance exits: its sockets close (they leave the socket array by themselves). */
static void gen_close_sockets(Rig *rig, const RigGen *g) {
        for (unsigned grp = 0; grp < rig->n_groups; grp++)
                for (unsigned i = 0; i < g->n_socks; i++) {
                        RigSock *s = &rig->socks[g->sock_ids[grp][i]];

                        s->fd = safe_close(s->fd);
                }
}

static void set_working(Rig *rig, uint32_t working_slot, uint32_t pending_slot) {
        int r = steering_set_working(rig->steering, working_slot, pending_slot);

        expect(r == 0, "steering_set_working(%u, %u): %s", working_slot, pending_slot,
               strerror(-r));
}

/* Opens n clients (one UDP socket, hence one source port, per flow). Returns the first flow's
 * id; the others follow. */
static unsigned flows_open(Rig *rig, unsigned n) {
        const Family *f = rig->c->family;
        unsigned first = rig->n_flows;

        if (rig->n_flows + n > rig->n_flows_allocated) {
                unsigned size = rig->n_flows + n + 64;
                int *p = realloc(rig->flow_fds, size * sizeof(int));

                expect(p, "out of memory");
                rig->flow_fds = p;
                rig->n_flows_allocated = size;
        }
        for (unsigned i = 0; i < n; i++) {
                struct sockaddr_storage sa;
                socklen_t len = make_sockaddr(f->client_domain, f->client_addr, 0, &sa);
                int fd = socket(f->client_domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

                expect(fd >= 0, "client socket(): %m");
                rig->flow_fds[rig->n_flows++] = fd;
                expect(bind(fd, (struct sockaddr *) &sa, len) == 0, "client bind(): %m");
        }
        return first;
}

static Round *round_new(Rig *rig, unsigned group, unsigned first, unsigned n) {
        Round *r = calloc(1, sizeof(*r));

        expect(r, "out of memory");
        expect(first + n <= rig->n_flows && group < rig->n_groups, "bad round");
        *r = (Round) { .seq = rig->next_seq++, .group = group, .first = first, .n = n };
        r->where = calloc(n + 1, sizeof(int)); /* + 1: never a zero-size allocation */
        expect(r->where, "out of memory");
        for (unsigned i = 0; i < n; i++)
                r->where[i] = -1;
        return r;
}

static Round *round_free(Round *r) {
        if (r)
                free(r->where);
        free(r);
        return NULL;
}

static void round_freep(Round **r) {
        *r = round_free(*r);
}
#define _cleanup_round_ _cleanup_(round_freep)

/* Sends the datagrams of the round's flows offset .. offset + count - 1. */
static void round_send(Rig *rig, const Round *r, unsigned offset, unsigned count) {
        const RigGroup *group = &rig->groups[r->group];

        for (unsigned i = offset; i < offset + count && i < r->n; i++) {
                struct datagram d = {
                        .magic = DATAGRAM_MAGIC,
                        .seq = r->seq,
                        .flow = r->first + i,
                        .group = r->group,
                };
                ssize_t l = sendto(rig->flow_fds[r->first + i], &d, sizeof(d), 0,
                                   (const struct sockaddr *) &group->dest, group->dest_len);

                expect(l == (ssize_t) sizeof(d), "sendto() from flow %u: %m", r->first + i);
        }
}

static void round_record(Rig *rig, Round *r, int sock_id, const void *buf, ssize_t len) {
        const RigSock *s = &rig->socks[sock_id];
        struct datagram d;

        if (s->gen != 0)
                rig->slot_received[s->slot]++;
        if (len != (ssize_t) sizeof(d)) {
                r->strays++;
                return;
        }
        memcpy(&d, buf, sizeof(d));
        if (d.magic != DATAGRAM_MAGIC || d.seq != r->seq || d.group != r->group ||
            d.flow < r->first || d.flow >= r->first + r->n) {
                r->strays++;
                return;
        }
        if (r->where[d.flow - r->first] >= 0) {
                r->dups++;
                return;
        }
        r->where[d.flow - r->first] = sock_id;
        r->received++;
}

static unsigned round_seen(const Round *r) {
        return r->received + r->dups + r->strays;
}

/* Reads every open server socket until the round has seen want datagrams or timeout_msec
 * passed. want == UINT32_MAX with a timeout: look for datagrams that should not come. */
static void collect(Rig *rig, Round *r, unsigned want, unsigned timeout_msec) {
        uint64_t deadline = now_msec() + timeout_msec;

        for (;;) {
                struct pollfd pfds[RIG_MAX_SOCKS];
                unsigned n = 0;
                uint64_t now;

                for (unsigned i = 0; i < rig->n_socks; i++) {
                        if (rig->socks[i].fd < 0)
                                continue;
                        for (;;) {
                                char buf[sizeof(struct datagram) + 16];
                                ssize_t l = recv(rig->socks[i].fd, buf, sizeof(buf), MSG_DONTWAIT);

                                if (l < 0) {
                                        expect(errno == EAGAIN, "recv(): %m");
                                        break;
                                }
                                round_record(rig, r, (int) i, buf, l);
                        }
                        pfds[n++] = (struct pollfd) { .fd = rig->socks[i].fd, .events = POLLIN };
                }
                if (round_seen(r) >= want)
                        return;
                now = now_msec();
                if (now >= deadline)
                        return;
                expect(poll(pfds, n, (int) (deadline - now)) >= 0 || errno == EINTR, "poll(): %m");
        }
}

/* One datagram from each of the n flows from first to group, in batches, and everything read
 * back. Every datagram is expected to arrive somewhere; where is for the caller to judge. */
static Round *exchange(Rig *rig, unsigned group, unsigned first, unsigned n) {
        Round *r = round_new(rig, group, first, n);

        for (unsigned offset = 0; offset < n; offset += SEND_BATCH) {
                unsigned count = n - offset < SEND_BATCH ? n - offset : SEND_BATCH;

                round_send(rig, r, offset, count);
                collect(rig, r, offset + count, DELIVERY_TIMEOUT_MSEC);
        }
        collect(rig, r, UINT32_MAX, 0); /* anything more is a duplicate or a stray */
        return r;
}

static const char *sock_describe(const Rig *rig, int sock_id, char *buf, size_t size) {
        const RigSock *s;

        if (sock_id < 0)
                return "nowhere (lost)";
        s = &rig->socks[sock_id];
        if (s->gen == 0)
                snprintf(buf, size, "the original socket of group %u", s->group);
        else
                snprintf(buf, size, "gen %u (slot %u) socket %u of group %u", s->gen, s->slot,
                         s->index, s->group);
        return buf;
}

/* Every flow's datagram arrived exactly once, on a socket of generation gen in the round's
 * group (so never on an original socket). */
static void assert_round_on_gen(const Rig *rig, const Round *r, uint32_t gen, const char *what) {
        char buf[128];

        expect_eq(r->strays, 0, "%s: stray datagrams", what);
        expect_eq(r->dups, 0, "%s: duplicate datagrams", what);
        for (unsigned i = 0; i < r->n; i++) {
                int id = r->where[i];
                bool ok = id >= 0 && rig->socks[id].gen == gen && rig->socks[id].group == r->group;

                expect(ok, "%s: flow %u (of %u) landed on %s, expected gen %u of group %u", what,
                       r->first + i, r->n, sock_describe(rig, id, buf, sizeof(buf)), gen,
                       r->group);
        }
        expect_eq(r->received, r->n, "%s: datagrams received", what);
}

/* Every flow landed on the very socket it landed on in ref (a round of the same flows). */
static void assert_round_same_socks(const Rig *rig, const Round *r, const Round *ref,
                                    const char *what) {
        char b1[128], b2[128];

        expect(r->first == ref->first && r->n == ref->n, "%s: rounds of different flows", what);
        for (unsigned i = 0; i < r->n; i++)
                expect(r->where[i] == ref->where[i], "%s: flow %u moved from %s to %s", what,
                       r->first + i, sock_describe(rig, ref->where[i], b1, sizeof(b1)),
                       sock_describe(rig, r->where[i], b2, sizeof(b2)));
}

static Counters stats_now(Rig *rig) {
        Counters c;
        int r = steering_get_stats(rig->steering, c.v);

        expect(r == 0, "steering_get_stats(): %s", strerror(-r));
        return c;
}

/* The verdict counters moved by exactly the (stat, count) pairs given (terminated by -1; a stat
 * may appear twice, the counts add up) since *before, and by nothing else. Updates *before. */
static void assert_stats(Rig *rig, Counters *before, const char *what, ...) {
        Counters now = stats_now(rig), expected = {};
        va_list ap;
        int stat;

        va_start(ap, what);
        while ((stat = va_arg(ap, int)) >= 0) {
                unsigned count = va_arg(ap, unsigned);

                expect(stat < (int) _GRM_STAT_MAX, "bad stat %d", stat);
                expected.v[stat] += count;
        }
        va_end(ap);

        for (int i = 0; i < (int) _GRM_STAT_MAX; i++)
                expect_eq(now.v[i] - before->v[i], expected.v[i], "%s: verdict counter %s", what,
                          grm_stat_to_string(i));
        *before = now;
}

/* Waits (up to ~2 s) until counter stat moved by at least n since *before. */
static void wait_stat(Rig *rig, const Counters *before, int stat, unsigned n) {
        uint64_t deadline = now_msec() + DELIVERY_TIMEOUT_MSEC;

        for (;;) {
                Counters now = stats_now(rig);

                if (now.v[stat] - before->v[stat] >= n || now_msec() >= deadline)
                        return;
                sleep_msec(2);
        }
}

/* The program's per-slot packet counter equals what that slot's sockets received, for every
 * slot the rig has activated. */
static void assert_slot_packets(Rig *rig, const char *what) {
        for (unsigned slot = 0; slot < GRM_GEN_SLOTS; slot++) {
                uint64_t n;
                int r;

                if (rig->gens[slot].gen == 0)
                        continue;
                r = steering_get_slot_packets(rig->steering, slot, &n);
                expect(r == 0, "steering_get_slot_packets(%u): %s", slot, strerror(-r));
                expect_eq(n, rig->slot_received[slot],
                          "%s: steering_get_slot_packets(slot %u, gen %u) vs datagrams received",
                          what, slot, rig->gens[slot].gen);
        }
}

/* Sends one datagram per flow that the program must drop with verdict stat (GRM_STAT_ERR_SELECT
 * or GRM_STAT_NO_GENERATION): waits for the counter, then makes sure none of them reached any
 * socket. The caller asserts the counters. */
static void send_expect_dropped(Rig *rig, unsigned group, unsigned first, unsigned n, int stat,
                                const char *what) {
        _cleanup_round_ Round *r = round_new(rig, group, first, n);
        Counters before = stats_now(rig);
        char buf[128];

        for (unsigned offset = 0; offset < n; offset += SEND_BATCH)
                round_send(rig, r, offset, SEND_BATCH);
        wait_stat(rig, &before, stat, n);
        collect(rig, r, UINT32_MAX, DROP_GRACE_MSEC);
        for (unsigned i = 0; i < n; i++)
                expect(r->where[i] < 0, "%s: flow %u must be dropped, but landed on %s", what,
                       first + i, sock_describe(rig, r->where[i], buf, sizeof(buf)));
        expect_eq(round_seen(r), 0, "%s: datagrams received", what);
}

static bool is_flow(const Rig *rig) {
        return rig->c->dissector == GRM_DISSECTOR_FLOW;
}

/* The verdicts a packet gets, by dissector. */
static int verdict_new(const Rig *rig) {
        return is_flow(rig) ? GRM_STAT_FLOW_CREATED : GRM_STAT_WORKING;
}
static int verdict_existing(const Rig *rig) {
        return is_flow(rig) ? GRM_STAT_FLOW_EXISTING : GRM_STAT_WORKING;
}
static int verdict_stale(const Rig *rig) {
        return is_flow(rig) ? GRM_STAT_FLOW_STALE : GRM_STAT_WORKING;
}

static void count_flows(Rig *rig, uint64_t counts[TEST_MAX_GROUPS], uint64_t *ret_total) {
        int r = steering_count_flows(rig->steering, counts, ret_total);

        expect(r == 0, "steering_count_flows(): %s", strerror(-r));
}

/* 1. New flows go to the working generation only: not to a registered generation that is not
 * ready yet, never to the original socket. */
START_TEST(test_working) {
        Rig *rig = rig_new(&cases_all[_i]);
        Counters st = stats_now(rig);
        _cleanup_round_ Round *r1 = NULL, *r2 = NULL;
        unsigned a;

        gen_start(rig, SLOT_GEN1, 1, 4);
        set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        gen_start(rig, SLOT_GEN2, 2, 4); /* starting, not ready: must get nothing */
        a = flows_open(rig, 32);

        r1 = exchange(rig, 0, a, 32);
        assert_round_on_gen(rig, r1, 1, "new flows");
        assert_stats(rig, &st, "new flows", verdict_new(rig), 32, -1);

        r2 = exchange(rig, 0, a, 32);
        assert_round_on_gen(rig, r2, 1, "second datagram of each flow");
        if (is_flow(rig))
                assert_round_same_socks(rig, r2, r1, "second datagram of each flow");
        assert_stats(rig, &st, "second datagram of each flow", verdict_existing(rig), 32, -1);
        assert_slot_packets(rig, "end");

        rig_free(rig);
}
END_TEST

/* 2. The flip: existing flows stay on their socket (dissector flow) while new flows go to the
 * new working generation; with dissector none everything goes to the new one. */
START_TEST(test_flip) {
        Rig *rig = rig_new(&cases_all[_i]);
        Counters st = stats_now(rig);
        _cleanup_round_ Round *a1 = NULL, *a2 = NULL, *a3 = NULL, *b1 = NULL, *b2 = NULL;
        unsigned a, b;

        gen_start(rig, SLOT_GEN1, 1, 4);
        set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        a = flows_open(rig, 32);
        a1 = exchange(rig, 0, a, 32);
        assert_round_on_gen(rig, a1, 1, "flows A before the flip");
        assert_stats(rig, &st, "flows A before the flip", verdict_new(rig), 32, -1);

        gen_start(rig, SLOT_GEN2, 2, 4);
        set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);

        a2 = exchange(rig, 0, a, 32);
        if (is_flow(rig)) {
                assert_round_on_gen(rig, a2, 1, "flows A after the flip");
                assert_round_same_socks(rig, a2, a1, "flows A after the flip");
        } else
                assert_round_on_gen(rig, a2, 2, "flows A after the flip");
        assert_stats(rig, &st, "flows A after the flip", verdict_existing(rig), 32, -1);

        b = flows_open(rig, 32);
        b1 = exchange(rig, 0, b, 32);
        assert_round_on_gen(rig, b1, 2, "new flows B after the flip");
        assert_stats(rig, &st, "new flows B after the flip", verdict_new(rig), 32, -1);

        a3 = exchange(rig, 0, a, 32);
        b2 = exchange(rig, 0, b, 32);
        if (is_flow(rig)) {
                assert_round_on_gen(rig, a3, 1, "flows A again");
                assert_round_same_socks(rig, a3, a1, "flows A again");
                assert_round_same_socks(rig, b2, b1, "flows B again");
        } else
                assert_round_on_gen(rig, a3, 2, "flows A again");
        assert_round_on_gen(rig, b2, 2, "flows B again");
        assert_stats(rig, &st, "flows A and B again", verdict_existing(rig), 64, -1);
        assert_slot_packets(rig, "end");

        rig_free(rig);
}
END_TEST

/* 3. Flows of a generation that exited move to the working generation as stale flows, whether
 * grmd released the slot (and reused it for a new starting generation) or the instance died and
 * its sockets just closed. */
static void run_stale(const Case *c, bool release) {
        const char *how = release ? "gen 1 exited, slot released" : "gen 1 died, slot kept";
        Rig *rig = rig_new(c);
        Counters st = stats_now(rig);
        _cleanup_round_ Round *r1 = NULL, *r2 = NULL, *r3 = NULL, *r4 = NULL;
        RigGen *gen1;
        unsigned a;
        char what[128];

        gen1 = gen_start(rig, SLOT_GEN1, 1, 4);
        set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        a = flows_open(rig, 32);
        r1 = exchange(rig, 0, a, 32);
        assert_round_on_gen(rig, r1, 1, "flows on gen 1");
        assert_stats(rig, &st, "flows on gen 1", verdict_new(rig), 32, -1);

        gen_start(rig, SLOT_GEN2, 2, 4);
        set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);
        r2 = exchange(rig, 0, a, 32);
        assert_round_on_gen(rig, r2, is_flow(rig) ? 1 : 2, "flows after the flip");
        assert_stats(rig, &st, "flows after the flip", verdict_existing(rig), 32, -1);
        assert_slot_packets(rig, "before gen 1 exits");

        gen_close_sockets(rig, gen1);
        if (release) {
                int r = steering_slot_release(rig->steering, SLOT_GEN1);

                expect(r == 0, "steering_slot_release(): %s", strerror(-r));
                /* The slot is reused at once by a starting generation: its sockets sit at the
                 * very indices gen 1's flow entries point at, but it is not ready, so gen 1's
                 * flows must not reach it. */
                gen_start(rig, SLOT_GEN1, 3, 4);
        }

        snprintf(what, sizeof(what), "%s: its flows", how);
        r3 = exchange(rig, 0, a, 32);
        assert_round_on_gen(rig, r3, 2, what);
        assert_stats(rig, &st, what, verdict_stale(rig), 32, -1);

        snprintf(what, sizeof(what), "%s: its flows again", how);
        r4 = exchange(rig, 0, a, 32);
        assert_round_on_gen(rig, r4, 2, what);
        if (is_flow(rig))
                assert_round_same_socks(rig, r4, r3, what);
        assert_stats(rig, &st, what, verdict_existing(rig), 32, -1);
        expect_eq(rig->slot_received[SLOT_GEN2], is_flow(rig) ? 64 : 96, "%s: datagrams on gen 2",
                  how);
        assert_slot_packets(rig, what); /* with release: slot reused by gen 3, counter from 0 */

        rig_free(rig);
}

START_TEST(test_stale_released) {
        run_stale(&cases_all[_i], true);
}
END_TEST

START_TEST(test_stale_died) {
        run_stale(&cases_all[_i], false);
}
END_TEST

/* 4. Spread: many flows over a 4-socket generation reach every socket; with the flow dissector
 * each flow sticks to one socket. */
START_TEST(test_spread) {
        enum { N_FLOWS = 200, N_SOCKS = 4, N_ROUNDS = 3 };
        Rig *rig = rig_new(&cases_all[_i]);
        Counters st = stats_now(rig);
        Round *rounds[N_ROUNDS] = {};
        RigGen *gen1;
        unsigned a;

        gen1 = gen_start(rig, SLOT_GEN1, 1, N_SOCKS);
        set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        a = flows_open(rig, N_FLOWS);

        for (unsigned k = 0; k < N_ROUNDS; k++) {
                unsigned per_sock[N_SOCKS] = {};

                rounds[k] = exchange(rig, 0, a, N_FLOWS);
                assert_round_on_gen(rig, rounds[k], 1, "spread round");
                for (unsigned i = 0; i < N_FLOWS; i++)
                        per_sock[rig->socks[rounds[k]->where[i]].index]++;
                for (unsigned s = 0; s < N_SOCKS; s++)
                        expect(per_sock[s] > 0,
                               "round %u: socket %u (fd %d) got none of %u flows (%u/%u/%u/%u)", k,
                               s, rig->socks[gen1->sock_ids[0][s]].fd, N_FLOWS, per_sock[0],
                               per_sock[1], per_sock[2], per_sock[3]);
                /* flow: by the table; none: by the hash alone, on the program's one-read path
                 * (the config's copy of the socket count, checked below) as on its full path */
                if (k > 0)
                        assert_round_same_socks(rig, rounds[k], rounds[0], "flows stick");
        }
        {
                int fds[STEERING_N_MAPS];
                struct grm_config cfg;
                __u32 zero = 0;

                ck_assert_int_eq(steering_get_map_fds(rig->steering, fds), 0);
                for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                        if (streq(steering_map_names[i], "config"))
                                ck_assert_int_eq(bpf_map_lookup_elem(fds[i], &zero, &cfg), 0);
                ck_assert_uint_eq(cfg.working_slot, SLOT_GEN1);
                ck_assert_uint_eq(cfg.working_nsocks, N_SOCKS);
        }
        assert_stats(rig, &st, "spread", verdict_new(rig), N_FLOWS, verdict_existing(rig),
                     (N_ROUNDS - 1) * N_FLOWS, -1);
        assert_slot_packets(rig, "spread");

        for (unsigned k = 0; k < N_ROUNDS; k++)
                round_free(rounds[k]);
        rig_free(rig);
}
END_TEST

/* 5. The counters agree with the traffic: verdict counters move by exactly the datagrams sent
 * per verdict, and each slot's packet counter equals what its sockets received. */
START_TEST(test_counters) {
        Rig *rig = rig_new(&cases_all[_i]);
        Counters st = stats_now(rig);
        _cleanup_round_ Round *r1 = NULL, *r2 = NULL, *r3 = NULL, *r4 = NULL, *r5 = NULL;
        RigGen *gen1;
        unsigned a, b;

        /* every counter starts at zero in a fresh Steering object */
        for (int i = 0; i < (int) _GRM_STAT_MAX; i++)
                expect_eq(st.v[i], 0, "initial verdict counter %s", grm_stat_to_string(i));

        gen1 = gen_start(rig, SLOT_GEN1, 1, 3);
        set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        assert_slot_packets(rig, "after activating gen 1");
        a = flows_open(rig, 10);

        r1 = exchange(rig, 0, a, 10);
        assert_round_on_gen(rig, r1, 1, "A new");
        assert_stats(rig, &st, "A new", verdict_new(rig), 10, -1);
        assert_slot_packets(rig, "A new");

        r2 = exchange(rig, 0, a, 10);
        assert_round_on_gen(rig, r2, 1, "A again");
        assert_stats(rig, &st, "A again", verdict_existing(rig), 10, -1);
        assert_slot_packets(rig, "A again");

        gen_start(rig, SLOT_GEN2, 2, 3);
        set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);
        r3 = exchange(rig, 0, a, 10);
        assert_round_on_gen(rig, r3, is_flow(rig) ? 1 : 2, "A after the flip");
        assert_stats(rig, &st, "A after the flip", verdict_existing(rig), 10, -1);
        assert_slot_packets(rig, "A after the flip");

        b = flows_open(rig, 6);
        r4 = exchange(rig, 0, b, 6);
        assert_round_on_gen(rig, r4, 2, "B new after the flip");
        assert_stats(rig, &st, "B new after the flip", verdict_new(rig), 6, -1);
        assert_slot_packets(rig, "B new after the flip");

        gen_close_sockets(rig, gen1);
        r5 = exchange(rig, 0, a, 10);
        assert_round_on_gen(rig, r5, 2, "A after gen 1 died");
        assert_stats(rig, &st, "A after gen 1 died", verdict_stale(rig), 10, -1);
        assert_slot_packets(rig, "A after gen 1 died");

        /* totals, as an operator would read them */
        expect_eq(rig->slot_received[SLOT_GEN1], is_flow(rig) ? 30 : 20, "datagrams on gen 1");
        expect_eq(rig->slot_received[SLOT_GEN2], is_flow(rig) ? 16 : 26, "datagrams on gen 2");
        {
                uint64_t total = 0;

                for (int i = 0; i < (int) _GRM_STAT_MAX; i++)
                        total += st.v[i];
                expect_eq(total, 46, "sum of all verdict counters");
        }

        rig_free(rig);
}
END_TEST

/* 6. Pending: with no generation at all datagrams are dropped and counted (the kernel's hash would
 * put them on the original socket, which nobody reads); with gen 1 registered and pending, they
 * queue on its sockets until it reads them. */
START_TEST(test_pending) {
        Rig *rig = rig_new(&cases_all[_i]);
        Counters st = stats_now(rig);
        _cleanup_round_ Round *r1 = NULL, *r2 = NULL;
        unsigned a;

        a = flows_open(rig, 8);
        send_expect_dropped(rig, 0, a, 8, GRM_STAT_NO_GENERATION,
                            "no generation yet (never onto the original socket)");
        assert_stats(rig, &st, "no generation", GRM_STAT_NO_GENERATION, 8, -1);

        gen_start(rig, SLOT_GEN1, 1, 4);
        set_working(rig, GRM_SLOT_NONE, SLOT_GEN1);

        /* Queue everything first, read afterwards, as an instance that becomes ready would. */
        r1 = round_new(rig, 0, a, 8);
        round_send(rig, r1, 0, 8);
        wait_stat(rig, &st, GRM_STAT_PENDING, 8);
        collect(rig, r1, 8, DELIVERY_TIMEOUT_MSEC);
        collect(rig, r1, UINT32_MAX, 0);
        assert_round_on_gen(rig, r1, 1, "pending");
        assert_stats(rig, &st, "pending", GRM_STAT_PENDING, 8, -1);
        assert_slot_packets(rig, "pending");

        /* Ready: pending datagrams created no flow entries, so the flows are new now. */
        set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        r2 = exchange(rig, 0, a, 8);
        assert_round_on_gen(rig, r2, 1, "gen 1 working");
        assert_stats(rig, &st, "gen 1 working", verdict_new(rig), 8, -1);
        assert_slot_packets(rig, "gen 1 working");

        rig_free(rig);
}
END_TEST

/* 6b. Nothing works: the working generation crashed (its slot released, working and pending
 * cleared), two older generations still live. Existing flows keep their socket; new flows (and
 * flows of the dead generation) go to the newest live generation, which then owns them, also when
 * it sits in a lower slot than an older one; when its sockets close, the next newest takes over;
 * a pending generation gets new flows but not the flows of live generations; with no generation
 * left, datagrams are dropped and counted, never put on the original socket. */
START_TEST(test_nothing_works) {
        enum { N = 16 };
        /* gen 2 in a lower slot than gen 1, so "newest" cannot be "highest slot" */
        const unsigned slot1 = SLOT_GEN1, slot2 = 2, slot3 = SLOT_GEN2, slot4 = 7;
        Rig *rig = rig_new(&cases_all[_i]);
        Counters st = stats_now(rig);
        _cleanup_round_ Round *a1 = NULL, *b1 = NULL, *c1 = NULL, *a2 = NULL, *b2 = NULL,
                *c2 = NULL, *c3 = NULL, *d1 = NULL, *d2 = NULL, *a3 = NULL, *a4 = NULL, *e1 = NULL,
                *e2 = NULL;
        RigGen *gen1, *gen2, *gen3, *gen4;
        unsigned a, b, c, d, e;
        int r;

        gen1 = gen_start(rig, slot1, 1, 4);
        set_working(rig, slot1, GRM_SLOT_NONE);
        a = flows_open(rig, N);
        a1 = exchange(rig, 0, a, N);
        assert_round_on_gen(rig, a1, 1, "flows A on gen 1");

        gen2 = gen_start(rig, slot2, 2, 4);
        set_working(rig, slot2, GRM_SLOT_NONE);
        b = flows_open(rig, N);
        b1 = exchange(rig, 0, b, N);
        assert_round_on_gen(rig, b1, 2, "flows B on gen 2");

        gen3 = gen_start(rig, slot3, 3, 4);
        set_working(rig, slot3, GRM_SLOT_NONE);
        c = flows_open(rig, N);
        c1 = exchange(rig, 0, c, N);
        assert_round_on_gen(rig, c1, 3, "flows C on gen 3");
        assert_stats(rig, &st, "before gen 3 crashes", verdict_new(rig), 3 * N, -1);

        /* gen 3 crashes; grmd releases its slot and has no replacement yet */
        gen_close_sockets(rig, gen3);
        r = steering_slot_release(rig->steering, slot3);
        expect(r == 0, "steering_slot_release(): %s", strerror(-r));
        set_working(rig, GRM_SLOT_NONE, GRM_SLOT_NONE);

        a2 = exchange(rig, 0, a, N);
        b2 = exchange(rig, 0, b, N);
        if (is_flow(rig)) {
                assert_round_on_gen(rig, a2, 1, "flows A, nothing works");
                assert_round_same_socks(rig, a2, a1, "flows A, nothing works");
                assert_round_same_socks(rig, b2, b1, "flows B, nothing works");
                assert_stats(rig, &st, "flows A and B, nothing works", GRM_STAT_FLOW_EXISTING,
                             2 * N, -1);
        } else {
                assert_round_on_gen(rig, a2, 2, "flows A, nothing works");
                assert_stats(rig, &st, "flows A and B, nothing works", GRM_STAT_NEWEST_LIVE,
                             2 * N, -1);
        }
        assert_round_on_gen(rig, b2, 2, "flows B, nothing works");

        c2 = exchange(rig, 0, c, N);
        assert_round_on_gen(rig, c2, 2, "flows C of the crashed gen 3");
        assert_stats(rig, &st, "flows C of the crashed gen 3", GRM_STAT_NEWEST_LIVE, N, -1);
        c3 = exchange(rig, 0, c, N);
        assert_round_on_gen(rig, c3, 2, "flows C again");
        if (is_flow(rig))
                assert_round_same_socks(rig, c3, c2, "flows C again: gen 2 owns them now");
        assert_stats(rig, &st, "flows C again",
                     is_flow(rig) ? GRM_STAT_FLOW_EXISTING : GRM_STAT_NEWEST_LIVE, N, -1);

        /* gen 2 dies too (its slot not released yet): gen 1 is the newest that can take packets */
        gen_close_sockets(rig, gen2);
        d = flows_open(rig, N);
        d1 = exchange(rig, 0, d, N);
        assert_round_on_gen(rig, d1, 1, "new flows D, gen 2's sockets closed");
        assert_stats(rig, &st, "new flows D", GRM_STAT_NEWEST_LIVE, N, -1);

        /* a replacement starts: new flows queue on it, live generations keep their flows */
        gen4 = gen_start(rig, slot4, 4, 4);
        set_working(rig, GRM_SLOT_NONE, slot4);
        a3 = exchange(rig, 0, a, N);
        e = flows_open(rig, N);
        e1 = exchange(rig, 0, e, N);
        assert_round_on_gen(rig, e1, 4, "new flows E, gen 4 pending");
        if (is_flow(rig)) {
                assert_round_on_gen(rig, a3, 1, "flows A, gen 4 pending");
                assert_round_same_socks(rig, a3, a1, "flows A, gen 4 pending");
                assert_stats(rig, &st, "flows A and E, gen 4 pending", GRM_STAT_FLOW_EXISTING, N,
                             GRM_STAT_PENDING, N, -1);
        } else {
                assert_round_on_gen(rig, a3, 4, "flows A, gen 4 pending");
                assert_stats(rig, &st, "flows A and E, gen 4 pending", GRM_STAT_PENDING, 2 * N,
                             -1);
        }

        /* gen 4 works: flows A still on gen 1, flows E (no entries while pending) new on gen 4 */
        set_working(rig, slot4, GRM_SLOT_NONE);
        a4 = exchange(rig, 0, a, N);
        e2 = exchange(rig, 0, e, N);
        assert_round_on_gen(rig, a4, is_flow(rig) ? 1 : 4, "flows A, gen 4 working");
        assert_round_on_gen(rig, e2, 4, "flows E, gen 4 working");
        assert_stats(rig, &st, "flows A and E, gen 4 working", verdict_existing(rig), N,
                     verdict_new(rig), N, -1);
        d2 = exchange(rig, 0, d, N);
        assert_round_on_gen(rig, d2, is_flow(rig) ? 1 : 4, "flows D, gen 4 working");
        assert_stats(rig, &st, "flows D, gen 4 working", verdict_existing(rig), N, -1);
        assert_slot_packets(rig, "gen 4 working");

        /* every generation gone: dropped and counted, never onto the original socket */
        gen_close_sockets(rig, gen1);
        gen_close_sockets(rig, gen4);
        for (unsigned i = 0; i < 3; i++) {
                unsigned slot = (unsigned[]) { slot1, slot2, slot4 }[i];

                r = steering_slot_release(rig->steering, slot);
                expect(r == 0, "steering_slot_release(%u): %s", slot, strerror(-r));
        }
        set_working(rig, GRM_SLOT_NONE, GRM_SLOT_NONE);
        send_expect_dropped(rig, 0, a, N, GRM_STAT_NO_GENERATION, "flows A, no generation left");
        assert_stats(rig, &st, "flows A, no generation left", GRM_STAT_NO_GENERATION, N, -1);

        rig_free(rig);
}
END_TEST

/* 7. Flow timeout: a flow idle longer than the timeout after a flip is a new flow. */
START_TEST(test_flow_timeout) {
        Rig *rig = rig_new_full(&cases_flow[_i], 65536, 1, 1 * USEC_PER_SEC);
        Counters st = stats_now(rig);
        _cleanup_round_ Round *r1 = NULL, *r2 = NULL, *r3 = NULL, *r4 = NULL;
        uint64_t counts[TEST_MAX_GROUPS], total, idle_since;
        unsigned a;

        gen_start(rig, SLOT_GEN1, 1, 4);
        set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        a = flows_open(rig, 16);
        r1 = exchange(rig, 0, a, 16);
        assert_round_on_gen(rig, r1, 1, "flows on gen 1");
        assert_stats(rig, &st, "flows on gen 1", GRM_STAT_FLOW_CREATED, 16, -1);

        gen_start(rig, SLOT_GEN2, 2, 4);
        set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);
        r2 = exchange(rig, 0, a, 16);
        idle_since = now_msec();
        assert_round_on_gen(rig, r2, 1, "flows right after the flip");
        assert_round_same_socks(rig, r2, r1, "flows right after the flip");
        assert_stats(rig, &st, "flows right after the flip", GRM_STAT_FLOW_EXISTING, 16, -1);
        count_flows(rig, counts, &total);
        expect_eq(counts[0], 16, "live flows before idling");
        expect_eq(total, 16, "flow entries before idling");

        /* The behaviour under test is idleness: this wait is the test, not a guess. */
        sleep_msec(idle_since + 2500 - now_msec());

        count_flows(rig, counts, &total);
        expect_eq(counts[0], 0, "live flows after 2.5 s idle with a 1 s timeout");
        expect_eq(total, 16, "flow entries after 2.5 s idle");

        r3 = exchange(rig, 0, a, 16);
        assert_round_on_gen(rig, r3, 2, "flows after 2.5 s idle");
        assert_stats(rig, &st, "flows after 2.5 s idle", GRM_STAT_FLOW_EXPIRED, 16, -1);

        r4 = exchange(rig, 0, a, 16);
        assert_round_on_gen(rig, r4, 2, "expired flows again");
        assert_round_same_socks(rig, r4, r3, "expired flows again");
        assert_stats(rig, &st, "expired flows again", GRM_STAT_FLOW_EXISTING, 16, -1);
        count_flows(rig, counts, &total);
        expect_eq(counts[0], 16, "live flows at the end");
        expect_eq(total, 16, "flow entries at the end");
        assert_slot_packets(rig, "end");

        rig_free(rig);
}
END_TEST

/* 7b. An active flow never expires: the program refreshes an entry's last-seen time, so a flow
 * that keeps sending (every 150 ms here, for more than twice the 1 s timeout) stays on its socket
 * after a flip. Without the refresh it would move to the working generation after ~1 s.
 * The refresh happens at least twice per timeout (steer-api.h), so 150 ms gaps leave a wide
 * margin. */
START_TEST(test_flow_timeout_active) {
        enum { N_FLOWS = 8, INTERVAL_MSEC = 150, N_ROUNDS = 15 };
        Rig *rig = rig_new_full(&cases_flow[_i], 65536, 1, 1 * USEC_PER_SEC);
        Counters st = stats_now(rig);
        _cleanup_round_ Round *r1 = NULL;
        uint64_t start;
        unsigned a;

        gen_start(rig, SLOT_GEN1, 1, 4);
        set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        a = flows_open(rig, N_FLOWS);
        start = now_msec();
        r1 = exchange(rig, 0, a, N_FLOWS);
        assert_round_on_gen(rig, r1, 1, "flows on gen 1");
        assert_stats(rig, &st, "flows on gen 1", GRM_STAT_FLOW_CREATED, N_FLOWS, -1);

        gen_start(rig, SLOT_GEN2, 2, 4);
        set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);

        /* The sending pattern is the behaviour under test: these waits are the test. */
        for (unsigned k = 1; k <= N_ROUNDS; k++) {
                _cleanup_round_ Round *r = NULL;
                uint64_t due = start + (uint64_t) k * INTERVAL_MSEC, now = now_msec();
                char what[128];

                if (due > now)
                        sleep_msec(due - now);
                snprintf(what, sizeof(what),
                         "active flow (a datagram every %u ms, timeout 1 s), %" PRIu64
                         " ms after its first datagram",
                         (unsigned) INTERVAL_MSEC, now_msec() - start);
                r = exchange(rig, 0, a, N_FLOWS);
                assert_round_on_gen(rig, r, 1, what);
                assert_round_same_socks(rig, r, r1, what);
                assert_stats(rig, &st, what, GRM_STAT_FLOW_EXISTING, N_FLOWS, -1);
        }
        assert_slot_packets(rig, "end");

        rig_free(rig);
}
END_TEST

/* 8. No fallback: if the working generation's sockets are gone while it is still marked
 * working, datagrams that would go to it are dropped and counted, never handed to another
 * generation or the original socket. */
START_TEST(test_no_fallback) {
        Rig *rig = rig_new(&cases_all[_i]);
        Counters st = stats_now(rig);
        _cleanup_round_ Round *ra = NULL, *rb = NULL, *ra2 = NULL;
        RigGen *gen2;
        unsigned a, b, c;

        gen_start(rig, SLOT_GEN1, 1, 4);
        set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        a = flows_open(rig, 16);
        ra = exchange(rig, 0, a, 16);
        assert_round_on_gen(rig, ra, 1, "flows A on gen 1");

        gen2 = gen_start(rig, SLOT_GEN2, 2, 4);
        set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);
        b = flows_open(rig, 16);
        rb = exchange(rig, 0, b, 16);
        assert_round_on_gen(rig, rb, 2, "flows B on gen 2");
        assert_stats(rig, &st, "before gen 2 dies", verdict_new(rig), 32, -1);

        gen_close_sockets(rig, gen2);

        c = flows_open(rig, 16);
        send_expect_dropped(rig, 0, c, 16, GRM_STAT_ERR_SELECT,
                            "new flows C, working gen's sockets closed");
        assert_stats(rig, &st, "new flows C", GRM_STAT_ERR_SELECT, 16, -1);

        send_expect_dropped(rig, 0, b, 16, GRM_STAT_ERR_SELECT,
                            "flows B of the dead working gen");
        assert_stats(rig, &st, "flows B of the dead working gen", GRM_STAT_ERR_SELECT, 16, -1);

        if (is_flow(rig)) {
                /* gen 1 still owns flows A: they are not affected */
                ra2 = exchange(rig, 0, a, 16);
                assert_round_on_gen(rig, ra2, 1, "flows A of the live gen 1");
                assert_round_same_socks(rig, ra2, ra, "flows A of the live gen 1");
                assert_stats(rig, &st, "flows A", GRM_STAT_FLOW_EXISTING, 16, -1);
        } else {
                send_expect_dropped(rig, 0, a, 16, GRM_STAT_ERR_SELECT,
                                    "flows A, dissector none");
                assert_stats(rig, &st, "flows A", GRM_STAT_ERR_SELECT, 16, -1);
        }
        assert_slot_packets(rig, "end");

        rig_free(rig);
}
END_TEST

/* 9. Two groups (two ports) in one Steering object: a generation has sockets in both, flows and
 * counts are per group, and one client talking to both has one flow in each. */
START_TEST(test_two_groups) {
        Rig *rig = rig_new_full(&cases_all[_i], 65536, 2, DEFAULT_FLOW_TIMEOUT_USEC);
        Counters st = stats_now(rig);
        _cleanup_round_ Round *g0a = NULL, *g1a = NULL, *g0b = NULL, *g1b = NULL;
        uint64_t counts[TEST_MAX_GROUPS], total;
        unsigned a, n_flows = is_flow(rig) ? 16 : 0;

        expect(rig->groups[0].port != rig->groups[1].port, "groups share a port");
        gen_start(rig, SLOT_GEN1, 1, 2);
        set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        a = flows_open(rig, 16);

        g0a = exchange(rig, 0, a, 16);
        assert_round_on_gen(rig, g0a, 1, "group 0 on gen 1");
        assert_stats(rig, &st, "group 0 on gen 1", verdict_new(rig), 16, -1);
        count_flows(rig, counts, &total);
        expect_eq(counts[0], n_flows, "flows in group 0 after talking to group 0");
        expect_eq(counts[1], 0, "flows in group 1 after talking to group 0");
        expect_eq(total, n_flows, "flow entries after talking to group 0");

        gen_start(rig, SLOT_GEN2, 2, 2);
        set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);

        /* The same client sockets, first datagram to group 1: a new flow there, on gen 2. */
        g1a = exchange(rig, 1, a, 16);
        assert_round_on_gen(rig, g1a, 2, "same clients, first time on group 1");
        assert_stats(rig, &st, "same clients, first time on group 1", verdict_new(rig), 16, -1);

        /* ... while in group 0 they still are gen 1's flows. */
        g0b = exchange(rig, 0, a, 16);
        if (is_flow(rig)) {
                assert_round_on_gen(rig, g0b, 1, "group 0 after the flip");
                assert_round_same_socks(rig, g0b, g0a, "group 0 after the flip");
        } else
                assert_round_on_gen(rig, g0b, 2, "group 0 after the flip");
        assert_stats(rig, &st, "group 0 after the flip", verdict_existing(rig), 16, -1);

        g1b = exchange(rig, 1, a, 16);
        assert_round_on_gen(rig, g1b, 2, "group 1 again");
        if (is_flow(rig))
                assert_round_same_socks(rig, g1b, g1a, "group 1 again");
        assert_stats(rig, &st, "group 1 again", verdict_existing(rig), 16, -1);

        count_flows(rig, counts, &total);
        expect_eq(counts[0], n_flows, "flows in group 0 at the end");
        expect_eq(counts[1], n_flows, "flows in group 1 at the end");
        expect_eq(total, 2 * n_flows, "flow entries at the end");
        assert_slot_packets(rig, "end");

        rig_free(rig);
}
END_TEST

/* 10. A large flow table loads and works, and counting walks thousands of entries. */
START_TEST(test_large_table) {
        enum { N_FLOWS = 2000 };
        Rig *rig = rig_new_full(&cases_flow[_i], 1000000, 1, DEFAULT_FLOW_TIMEOUT_USEC);
        Counters st = stats_now(rig);
        _cleanup_round_ Round *r1 = NULL, *r2 = NULL;
        uint64_t counts[TEST_MAX_GROUPS], total;
        unsigned a, b;

        gen_start(rig, SLOT_GEN1, 1, 4);
        set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        a = flows_open(rig, 1);
        r1 = exchange(rig, 0, a, 1);
        assert_round_on_gen(rig, r1, 1, "one flow");
        assert_stats(rig, &st, "one flow", GRM_STAT_FLOW_CREATED, 1, -1);
        count_flows(rig, counts, &total);
        expect_eq(counts[0], 1, "live flows after one flow");
        expect_eq(total, 1, "flow entries after one flow");

        b = flows_open(rig, N_FLOWS);
        r2 = exchange(rig, 0, b, N_FLOWS);
        assert_round_on_gen(rig, r2, 1, "many flows");
        assert_stats(rig, &st, "many flows", GRM_STAT_FLOW_CREATED, N_FLOWS, -1);
        count_flows(rig, counts, &total);
        expect_eq(counts[0], N_FLOWS + 1, "live flows after many flows");
        expect_eq(total, N_FLOWS + 1, "flow entries after many flows");
        assert_slot_packets(rig, "end");

        rig_free(rig);
}
END_TEST

static TCase *tcase(Suite *s, const char *name, double timeout_sec) {
        TCase *tc = tcase_create(name);

        tcase_set_timeout(tc, timeout_sec);
        suite_add_tcase(s, tc);
        return tc;
}

static Suite *steering_suite(void) {
        Suite *s = suite_create("steering datapath");

        tcase_add_loop_test(tcase(s, "working", 10), test_working, 0, ELEMENTSOF(cases_all));
        tcase_add_loop_test(tcase(s, "flip", 10), test_flip, 0, ELEMENTSOF(cases_all));
        tcase_add_loop_test(tcase(s, "stale_released", 10), test_stale_released, 0,
                            ELEMENTSOF(cases_all));
        tcase_add_loop_test(tcase(s, "stale_died", 10), test_stale_died, 0,
                            ELEMENTSOF(cases_all));
        tcase_add_loop_test(tcase(s, "spread", 10), test_spread, 0, ELEMENTSOF(cases_all));
        tcase_add_loop_test(tcase(s, "counters", 10), test_counters, 0, ELEMENTSOF(cases_all));
        tcase_add_loop_test(tcase(s, "pending", 10), test_pending, 0, ELEMENTSOF(cases_all));
        tcase_add_loop_test(tcase(s, "nothing_works", 10), test_nothing_works, 0,
                            ELEMENTSOF(cases_all));
        tcase_add_loop_test(tcase(s, "flow_timeout", 20), test_flow_timeout, 0,
                            ELEMENTSOF(cases_flow));
        tcase_add_loop_test(tcase(s, "flow_timeout_active", 20), test_flow_timeout_active, 0,
                            ELEMENTSOF(cases_flow));
        tcase_add_loop_test(tcase(s, "no_fallback", 10), test_no_fallback, 0,
                            ELEMENTSOF(cases_all));
        tcase_add_loop_test(tcase(s, "two_groups", 10), test_two_groups, 0,
                            ELEMENTSOF(cases_all));
        tcase_add_loop_test(tcase(s, "large_table", 60), test_large_table, 0,
                            ELEMENTSOF(cases_flow));
        return s;
}

int main(void) {
        SRunner *sr;
        int r, n_failed;

        r = datapath_setup("test-steering");
        if (r >= 0)
                return r;

        sr = srunner_create(steering_suite());
        srunner_set_fork_status(sr, CK_FORK);
        srunner_run_all(sr, CK_ENV);
        n_failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
