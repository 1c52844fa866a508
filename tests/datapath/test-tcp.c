/* SPDX-License-Identifier: MIT */
/*
 * Datapath tests of the TCP steering program (bpf/steer-tcp.bpf.c) through the code that ships
 * with it (src/shared/steering.c), on real SO_REUSEPORT listeners in a private network namespace
 * (datapath_setup()).
 *
 * Each test runs in a forked child and builds its own rig: one Steering object, a TCP group (an
 * "original" listener, bound and listening first as systemd's would be) and generations (their
 * listeners registered in a slot). Clients are real TCP connections over loopback; each sends its
 * number once connected, and whoever accepts it reads the number and answers it, so a test knows
 * exactly which listener got which connection and that the client was not reset.
 *
 * Table-driven over {IPv4, IPv6, dual-stack} x net.ipv4.tcp_migrate_req {0, 1} (the sysctl is
 * per network namespace; each test sets it): with the program's attach type the kernel migrates
 * through the program whatever the sysctl says. Besides the program's counters the tests assert
 * on the kernel's own TcpExt TCPMigrateReqSuccess / TCPMigrateReqFailure (/proc/net/netstat).
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include "steering.h"

#define WAIT_MSEC       3000    /* how long expected connections may take */
#define MAX_CLIENTS     64
#define MAX_LISTENERS   8

#define SLOT_GEN1 3U
#define SLOT_GEN2 9U

typedef struct TcpCase {
        const char *name;
        const Family *family;
        int migrate_req;        /* net.ipv4.tcp_migrate_req for the test */
} TcpCase;

static const TcpCase tcp_cases[] = {
        { "ipv4/migrate_req=0", &family_ipv4, 0 },
        { "ipv4/migrate_req=1", &family_ipv4, 1 },
        { "ipv6/migrate_req=0", &family_ipv6, 0 },
        { "ipv6/migrate_req=1", &family_ipv6, 1 },
        { "dual-stack/migrate_req=0", &family_dual, 0 },
        { "dual-stack/migrate_req=1", &family_dual, 1 },
};

/* case_name() of datapath-cases.h names a Case; these tests name a TcpCase. */
static Case current_tcp_case;

typedef struct Rig {
        const TcpCase *c;
        Steering *steering;
        unsigned group;
        uint16_t port;
        int original;
        unsigned n_fds_at_start;
        uint64_t migrate_ok_at_start, migrate_failed_at_start;
        int clients[MAX_CLIENTS];
        unsigned n_clients;
} Rig;

typedef struct Counters {
        uint64_t v[_GRM_STAT_MAX];
} Counters;

/* ---- the kernel's counters ---- */

/* A TcpExt counter of this network namespace. */
static uint64_t tcpext(const char *name) {
        char names[8192], values[8192];
        FILE *f = fopen("/proc/net/netstat", "re");
        uint64_t result = UINT64_MAX;

        expect(f, "/proc/net/netstat: %m");
        while (fgets(names, sizeof(names), f) && fgets(values, sizeof(values), f)) {
                char *np, *vp, *n, *v;

                if (strncmp(names, "TcpExt:", 7) != 0)
                        continue;
                n = strtok_r(names + 7, " \n", &np);
                v = strtok_r(values + 7, " \n", &vp);
                while (n && v) {
                        if (streq(n, name))
                                result = strtoull(v, NULL, 10);
                        n = strtok_r(NULL, " \n", &np);
                        v = strtok_r(NULL, " \n", &vp);
                }
        }
        fclose(f);
        expect(result != UINT64_MAX, "TcpExt %s not found", name);
        return result;
}

static void set_migrate_req(int value) {
        FILE *f = fopen("/proc/sys/net/ipv4/tcp_migrate_req", "we");

        expect(f, "/proc/sys/net/ipv4/tcp_migrate_req: %m");
        fprintf(f, "%d\n", value);
        expect(fclose(f) == 0, "writing tcp_migrate_req: %m");
}

/* ---- sockets ---- */

static socklen_t server_sockaddr(const Family *f, uint16_t port, struct sockaddr_storage *ret) {
        return make_sockaddr(f->server_domain, f->server_addr, port, ret);
}

/* A non-blocking SO_REUSEPORT listener on the family's server address, as grmd and systemd open
 * them; with defer_accept_sec > 0 it keeps handshaken connections in SYN_RECV until data comes. */
static int open_listener(const Family *f, uint16_t port, int defer_accept_sec, uint16_t *ret_port) {
        struct sockaddr_storage sa;
        socklen_t len;
        int fd, one = 1;

        fd = socket(f->server_domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        expect(fd >= 0, "socket: %m");
        expect(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0, "SO_REUSEPORT: %m");
        if (f->server_domain == AF_INET6) {
                int v6only = !f->dual_stack;

                expect(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) == 0,
                       "IPV6_V6ONLY: %m");
        }
        if (defer_accept_sec > 0)
                expect(setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_accept_sec,
                                  sizeof(defer_accept_sec)) == 0, "TCP_DEFER_ACCEPT: %m");
        len = server_sockaddr(f, port, &sa);
        expect(bind(fd, (struct sockaddr *) &sa, len) == 0, "bind(%s port %u): %m", f->server_addr, port);
        expect(listen(fd, 128) == 0, "listen: %m");
        if (ret_port) {
                len = sizeof(sa);
                expect(getsockname(fd, (struct sockaddr *) &sa, &len) == 0, "getsockname: %m");
                *ret_port = sockaddr_port(&sa);
        }
        return fd;
}

/* Connections waiting in a listener's accept queue (TCP_INFO's tcpi_unacked on a listener). */
static unsigned accept_queue(int fd) {
        struct tcp_info info = {};
        socklen_t len = sizeof(info);

        expect(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0, "TCP_INFO: %m");
        expect(info.tcpi_state == TCP_LISTEN, "not listening (state %u)", info.tcpi_state);
        return info.tcpi_unacked;
}

/* ---- the rig ---- */

static Rig *rig_new(const TcpCase *c) {
        Rig *rig = calloc(1, sizeof(*rig));
        int r;

        current_tcp_case = (Case) { .name = c->name, .family = c->family };
        current_case = &current_tcp_case;
        expect(rig, "out of memory");
        rig->c = c;
        rig->n_fds_at_start = count_open_fds();
        set_migrate_req(c->migrate_req);
        rig->migrate_ok_at_start = tcpext("TCPMigrateReqSuccess");
        rig->migrate_failed_at_start = tcpext("TCPMigrateReqFailure");
        r = steering_new(4096, &rig->steering);
        expect(r == 0, "steering_new: %s", strerror(-r));
        rig->original = open_listener(c->family, 0, 0, &rig->port);
        for (unsigned i = 0; i < MAX_CLIENTS; i++)
                rig->clients[i] = -EBADF;
        return rig;
}

static void rig_attach(Rig *rig) {
        int r = steering_add_group(rig->steering, rig->original, &rig->group);

        expect(r == 0, "steering_add_group(TCP listener): %s", strerror(-r));
}

/* A generation's listeners, registered in the slot and the slot activated. */
static void rig_generation(Rig *rig, uint32_t gen, unsigned slot, unsigned n, int defer_accept_sec,
                           int *ret_fds) {
        for (unsigned k = 0; k < n; k++) {
                int r;

                ret_fds[k] = open_listener(rig->c->family, rig->port, defer_accept_sec, NULL);
                r = steering_register_socket(rig->steering, rig->group, slot, k, ret_fds[k]);
                expect(r == 0, "steering_register_socket(slot %u, %u): %s", slot, k, strerror(-r));
        }
        expect(steering_slot_activate(rig->steering, slot, gen, n) == 0, "steering_slot_activate");
}

static void rig_set_working(Rig *rig, uint32_t working, uint32_t pending) {
        int r = steering_set_working(rig->steering, working, pending);

        expect(r == 0, "steering_set_working: %s", strerror(-r));
}

/* Starts n client connections (non-blocking connect) and waits until the handshake completed
 * on the client's side for every one. */
static void rig_connect(Rig *rig, unsigned n) {
        struct sockaddr_storage sa;
        socklen_t len;
        uint64_t deadline = now_msec() + WAIT_MSEC;

        expect(rig->n_clients + n <= MAX_CLIENTS, "too many clients");
        len = make_sockaddr(rig->c->family->client_domain, rig->c->family->client_addr, rig->port, &sa);
        for (unsigned i = 0; i < n; i++) {
                int fd = socket(rig->c->family->client_domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

                expect(fd >= 0, "client socket: %m");
                expect(connect(fd, (struct sockaddr *) &sa, len) == 0 || errno == EINPROGRESS,
                       "connect: %m");
                rig->clients[rig->n_clients + i] = fd;
        }
        for (unsigned i = 0; i < n; i++) {
                int fd = rig->clients[rig->n_clients + i], error = 0;
                socklen_t elen = sizeof(error);
                struct pollfd p = { .fd = fd, .events = POLLOUT };
                uint64_t now = now_msec();

                expect(poll(&p, 1, now < deadline ? (int) (deadline - now) : 0) == 1,
                       "client %u: handshake did not complete", rig->n_clients + i);
                expect(getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &elen) == 0 && error == 0,
                       "client %u: connect failed: %s", rig->n_clients + i, strerror(error));
        }
        rig->n_clients += n;
}

/* Every client sends its number. */
static void rig_send_ids(Rig *rig, unsigned first, unsigned n) {
        for (unsigned i = first; i < first + n; i++) {
                uint32_t id = htonl(i);

                expect(send(rig->clients[i], &id, sizeof(id), MSG_NOSIGNAL) == sizeof(id),
                       "client %u: send: %m", i);
        }
}

/* Accepts from the listeners until n connections arrived (or WAIT_MSEC passed); reads each one's
 * number, answers it and records which listener got it in where[id]. Returns how many. */
static unsigned accept_clients(Rig *rig, const int *listeners, unsigned n_listeners, unsigned n,
                               int *where) {
        struct pollfd p[MAX_LISTENERS];
        uint64_t deadline = now_msec() + WAIT_MSEC;
        unsigned got = 0;

        expect(n_listeners <= MAX_LISTENERS, "too many listeners");
        while (got < n && now_msec() < deadline) {
                for (unsigned k = 0; k < n_listeners; k++)
                        p[k] = (struct pollfd) { .fd = listeners[k], .events = POLLIN };
                if (poll(p, n_listeners, 20) <= 0)
                        continue;
                for (unsigned k = 0; k < n_listeners; k++) {
                        int c;

                        while ((c = accept4(listeners[k], NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                                struct pollfd cp = { .fd = c, .events = POLLIN };
                                uint32_t id = UINT32_MAX;

                                expect(poll(&cp, 1, WAIT_MSEC) == 1, "accepted connection sends nothing");
                                expect(recv(c, &id, sizeof(id), MSG_WAITALL) == sizeof(id),
                                       "accepted connection: recv: %m");
                                id = ntohl(id);
                                expect(id < rig->n_clients, "unknown client %u", id);
                                expect(where[id] < 0, "client %u accepted twice", id);
                                where[id] = (int) k;
                                id = htonl(id);
                                expect(send(c, &id, sizeof(id), MSG_NOSIGNAL) == sizeof(id), "answer: %m");
                                safe_close(c);
                                got++;
                        }
                        expect(errno == EAGAIN, "accept: %m");
                }
        }
        return got;
}

/* Every client in first..first+n-1 got its answer: it was served, not reset. */
static void expect_answered(Rig *rig, unsigned first, unsigned n) {
        for (unsigned i = first; i < first + n; i++) {
                struct pollfd p = { .fd = rig->clients[i], .events = POLLIN };
                uint32_t id = UINT32_MAX;
                ssize_t k;

                expect(poll(&p, 1, WAIT_MSEC) == 1, "client %u: no answer", i);
                k = recv(rig->clients[i], &id, sizeof(id), MSG_WAITALL);
                expect(k == sizeof(id), "client %u: %s", i, k < 0 ? strerror(errno) : "closed");
                expect_eq(ntohl(id), i, "client %u's answer", i);
        }
}

static Counters stats_now(Rig *rig) {
        Counters c;
        int r = steering_get_stats(rig->steering, c.v);

        expect(r == 0, "steering_get_stats: %s", strerror(-r));
        return c;
}

/* The verdict counters moved by exactly the (stat, count) pairs given (terminated by -1). */
static void assert_stats(Rig *rig, const Counters *before, const char *what, ...) {
        Counters now = stats_now(rig), expected = {};
        va_list ap;
        int stat;

        va_start(ap, what);
        while ((stat = va_arg(ap, int)) >= 0)
                expected.v[stat] += va_arg(ap, unsigned);
        va_end(ap);
        for (int i = 0; i < _GRM_STAT_MAX; i++)
                expect(now.v[i] - before->v[i] == expected.v[i], "%s: counter %s moved by %" PRIu64
                       ", expected %" PRIu64, what, grm_stat_to_string(i), now.v[i] - before->v[i],
                       expected.v[i]);
}

static void expect_slot_tcp(Rig *rig, unsigned slot, uint64_t connections, uint64_t migrated) {
        uint64_t c, m;
        int r = steering_get_slot_tcp(rig->steering, slot, &c, &m);

        expect(r == 0, "steering_get_slot_tcp: %s", strerror(-r));
        expect_eq(c, connections, "slot %u connections", slot);
        expect_eq(m, migrated, "slot %u migrated", slot);
}

static void expect_kernel_migrations(Rig *rig, uint64_t ok) {
        expect_eq(tcpext("TCPMigrateReqSuccess") - rig->migrate_ok_at_start, ok, "TCPMigrateReqSuccess");
        expect_eq(tcpext("TCPMigrateReqFailure") - rig->migrate_failed_at_start, 0, "TCPMigrateReqFailure");
}

static void close_all(int *fds, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                fds[i] = safe_close(fds[i]);
}

static void rig_free(Rig *rig) {
        close_all(rig->clients, rig->n_clients);
        safe_close(rig->original);
        steering_free(rig->steering);
        expect_eq(count_open_fds(), rig->n_fds_at_start, "open fds after the test");
        free(rig);
        current_case = NULL;
}

static void where_init(int *where) {
        for (unsigned i = 0; i < MAX_CLIENTS; i++)
                where[i] = -1;
}

/* ---- tests ---- */

/* New connections go to the working generation's listeners, spread over them; nothing to the
 * older generation or the original. */
START_TEST(test_new_connections) {
        enum { N = 24 };
        Rig *rig = rig_new(&tcp_cases[_i]);
        int gen1[2], gen2[2], where[MAX_CLIENTS], others[3];
        Counters st;

        rig_attach(rig);
        rig_generation(rig, 1, SLOT_GEN1, 2, 0, gen1);
        rig_generation(rig, 2, SLOT_GEN2, 2, 0, gen2);
        rig_set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);
        st = stats_now(rig);

        rig_connect(rig, N);
        rig_send_ids(rig, 0, N);
        where_init(where);
        expect_eq(accept_clients(rig, gen2, 2, N, where), N, "connections accepted by generation 2");
        expect_answered(rig, 0, N);
        others[0] = gen1[0], others[1] = gen1[1], others[2] = rig->original;
        for (unsigned k = 0; k < 3; k++)
                expect_eq(accept_queue(others[k]), 0, "queue of listener %u of gen 1 / original", k);
        assert_stats(rig, &st, "new connections", GRM_STAT_TCP_WORKING, N, -1);
        expect_slot_tcp(rig, SLOT_GEN2, N, 0);
        expect_slot_tcp(rig, SLOT_GEN1, 0, 0);

        close_all(gen1, 2);
        close_all(gen2, 2);
        rig_free(rig);
}
END_TEST

/* Connections waiting in the old generation's accept queue when it closes its listeners (the
 * working generation moved on): every one is accepted by the new generation, none reset. */
START_TEST(test_migrate_established) {
        enum { N = 20 };
        Rig *rig = rig_new(&tcp_cases[_i]);
        int gen1[2], gen2[2], where[MAX_CLIENTS];
        Counters st;

        rig_attach(rig);
        rig_generation(rig, 1, SLOT_GEN1, 2, 0, gen1);
        rig_set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        rig_connect(rig, N);
        /* Queued on generation 1, not accepted. */
        expect_eq(accept_queue(gen1[0]) + accept_queue(gen1[1]), N, "queued on generation 1");

        rig_generation(rig, 2, SLOT_GEN2, 2, 0, gen2);
        rig_set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);
        st = stats_now(rig);
        close_all(gen1, 2);

        rig_send_ids(rig, 0, N);
        where_init(where);
        expect_eq(accept_clients(rig, gen2, 2, N, where), N, "migrated connections accepted by generation 2");
        expect_answered(rig, 0, N);
        expect_eq(accept_queue(rig->original), 0, "queue of the original");
        assert_stats(rig, &st, "migration", GRM_STAT_TCP_MIGRATED, N, -1);
        expect_slot_tcp(rig, SLOT_GEN2, 0, N);
        expect_kernel_migrations(rig, N);

        close_all(gen2, 2);
        rig_free(rig);
}
END_TEST

/* Handshakes the old listener holds in SYN_RECV (TCP_DEFER_ACCEPT: no data yet) when it closes:
 * the data that completes them finds the listener gone, and each request moves to the new
 * generation. */
START_TEST(test_migrate_syn_recv) {
        enum { N = 16 };
        Rig *rig = rig_new(&tcp_cases[_i]);
        int gen1[1], gen2[1], where[MAX_CLIENTS];
        Counters st;

        rig_attach(rig);
        rig_generation(rig, 1, SLOT_GEN1, 1, 30, gen1);
        rig_set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        rig_connect(rig, N);
        /* Established on the clients' side, still requests on the server's. */
        sleep_msec(50);
        expect_eq(accept_queue(gen1[0]), 0, "accept queue of the deferring listener");

        rig_generation(rig, 2, SLOT_GEN2, 1, 0, gen2);
        rig_set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);
        st = stats_now(rig);
        close_all(gen1, 1);

        rig_send_ids(rig, 0, N);
        where_init(where);
        expect_eq(accept_clients(rig, gen2, 1, N, where), N, "SYN_RECV requests accepted by generation 2");
        expect_answered(rig, 0, N);
        assert_stats(rig, &st, "migration", GRM_STAT_TCP_MIGRATED_SYN_RECV, N, -1);
        expect_slot_tcp(rig, SLOT_GEN2, 0, N);
        expect_kernel_migrations(rig, N);

        close_all(gen2, 1);
        rig_free(rig);
}
END_TEST

/* A generation that closes one of its listeners first: its queue goes to its other listener
 * (the working one is the same generation), and what the working generation's last listener
 * holds goes to the starting one when it closes too (the working instance crashed). */
START_TEST(test_migrate_within_and_to_pending) {
        enum { N = 12 };
        Rig *rig = rig_new(&tcp_cases[_i]);
        int gen1[2], gen2[1], where[MAX_CLIENTS];
        Counters st;

        rig_attach(rig);
        rig_generation(rig, 1, SLOT_GEN1, 2, 0, gen1);
        rig_set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        rig_connect(rig, N);
        st = stats_now(rig);
        gen1[0] = safe_close(gen1[0]);
        expect_eq(accept_queue(gen1[1]), N, "all on the remaining listener");

        /* Nothing works, generation 2 is starting: it gets the rest. */
        rig_generation(rig, 2, SLOT_GEN2, 1, 0, gen2);
        rig_set_working(rig, GRM_SLOT_NONE, SLOT_GEN2);
        gen1[1] = safe_close(gen1[1]);

        rig_send_ids(rig, 0, N);
        where_init(where);
        expect_eq(accept_clients(rig, gen2, 1, N, where), N, "accepted by the starting generation");
        expect_answered(rig, 0, N);
        {
                Counters now = stats_now(rig);
                uint64_t moved = now.v[GRM_STAT_TCP_MIGRATED] - st.v[GRM_STAT_TCP_MIGRATED];

                /* Those that were on listener 0 moved twice. */
                expect(moved >= N && moved <= 2 * N, "tcp_migrated moved by %" PRIu64, moved);
                expect_slot_tcp(rig, SLOT_GEN2, 0, N);
                expect_kernel_migrations(rig, moved);
        }

        close_all(gen2, 1);
        rig_free(rig);
}
END_TEST

/* With no generation listening at all, a closing listener's queue is left to the kernel, which
 * puts it on the original listener (never a reset); grmd's re-queue (shutdown + listen) hands the
 * original's queue to the working generation once there is one, and the original listens again
 * in the same group with its options. */
START_TEST(test_no_generation_and_requeue) {
        enum { N = 10 };
        Rig *rig = rig_new(&tcp_cases[_i]);
        int gen1[1], gen2[1], where[MAX_CLIENTS], defer = 0, defer_set = 7;
        socklen_t len = sizeof(defer);
        Counters st;

        expect(setsockopt(rig->original, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_set, sizeof(defer_set)) == 0,
               "TCP_DEFER_ACCEPT: %m");
        rig_attach(rig);
        rig_generation(rig, 1, SLOT_GEN1, 1, 0, gen1);
        rig_set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        rig_connect(rig, N);
        expect_eq(accept_queue(gen1[0]), N, "queued on generation 1");

        /* Generation 1 goes away while nothing else exists. */
        expect(steering_slot_release(rig->steering, SLOT_GEN1) == 0, "steering_slot_release");
        st = stats_now(rig);
        gen1[0] = safe_close(gen1[0]);
        expect_eq(accept_queue(rig->original), N, "left to the kernel: on the original");
        assert_stats(rig, &st, "no generation", GRM_STAT_TCP_MIGRATE_KERNEL, N, -1);

        /* A new generation works: the original's queue goes to it. */
        rig_generation(rig, 2, SLOT_GEN2, 1, 0, gen2);
        rig_set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);
        st = stats_now(rig);
        expect(shutdown(rig->original, SHUT_RD) == 0, "shutdown: %m");
        expect(listen(rig->original, 128) == 0, "listen again: %m");
        rig_send_ids(rig, 0, N);
        where_init(where);
        expect_eq(accept_clients(rig, gen2, 1, N, where), N, "re-queued to generation 2");
        expect_answered(rig, 0, N);
        assert_stats(rig, &st, "re-queue", GRM_STAT_TCP_MIGRATED, N, -1);
        expect_eq(accept_queue(rig->original), 0, "original's queue");
        expect(getsockopt(rig->original, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, &len) == 0 && defer > 0,
               "the original kept TCP_DEFER_ACCEPT (%d)", defer);

        /* Still in the group with the program: new connections go to generation 2. */
        st = stats_now(rig);
        rig_connect(rig, 4);
        rig_send_ids(rig, N, 4);
        expect_eq(accept_clients(rig, gen2, 1, 4, where), 4, "new connections after the re-queue");
        assert_stats(rig, &st, "after the re-queue", GRM_STAT_TCP_WORKING, 4, -1);

        close_all(gen2, 1);
        rig_free(rig);
}
END_TEST

/* A SYN no generation can take is never refused: with the working generation's listeners all
 * closed (or no generation at all) the kernel puts it on the original listener, and grmd's
 * re-queue hands it to the next working generation. */
START_TEST(test_no_listener) {
        Rig *rig = rig_new(&tcp_cases[_i]);
        int gen1[1], gen2[1], where[MAX_CLIENTS];
        Counters st;

        rig_attach(rig);
        rig_generation(rig, 1, SLOT_GEN1, 1, 0, gen1);
        rig_set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        gen1[0] = safe_close(gen1[0]);
        st = stats_now(rig);
        rig_connect(rig, 2);
        assert_stats(rig, &st, "working generation without listeners", GRM_STAT_TCP_ERR_SELECT, 2, -1);

        expect(steering_slot_release(rig->steering, SLOT_GEN1) == 0, "steering_slot_release");
        st = stats_now(rig);
        rig_connect(rig, 2);
        assert_stats(rig, &st, "no generation", GRM_STAT_TCP_NO_LISTENER, 2, -1);
        expect_eq(accept_queue(rig->original), 4, "on the original");

        rig_generation(rig, 2, SLOT_GEN2, 1, 0, gen2);
        rig_set_working(rig, SLOT_GEN2, GRM_SLOT_NONE);
        expect(shutdown(rig->original, SHUT_RD) == 0, "shutdown: %m");
        expect(listen(rig->original, 128) == 0, "listen again: %m");
        rig_send_ids(rig, 0, 4);
        where_init(where);
        expect_eq(accept_clients(rig, gen2, 1, 4, where), 4, "re-queued connections");
        expect_answered(rig, 0, 4);

        close_all(gen2, 1);
        rig_free(rig);
}
END_TEST

/* A UDP group and a TCP group on the same port share the maps whichever is loaded first: the
 * generation's datagram socket gets the datagrams, its listener the connections. */
START_TEST(test_udp_and_tcp_groups) {
        Rig *rig = rig_new(&tcp_cases[_i]);
        const Family *f = rig->c->family;
        struct sockaddr_storage sa;
        socklen_t len;
        int udp_original = -EBADF, udp_gen = -EBADF, tcp_gen[1], one = 1, client, where[MAX_CLIENTS];
        unsigned udp_group;
        char buf[16];
        Counters st;

        /* The TCP group first: its object creates the maps, the UDP object reuses them. */
        rig_attach(rig);
        for (int k = 0; k < 2; k++) {
                int fd = socket(f->server_domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

                expect(fd >= 0, "socket: %m");
                expect(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0, "SO_REUSEPORT: %m");
                if (f->server_domain == AF_INET6) {
                        int v6only = !f->dual_stack;
                        expect(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) == 0, "v6only: %m");
                }
                len = server_sockaddr(f, rig->port, &sa);
                expect(bind(fd, (struct sockaddr *) &sa, len) == 0, "bind UDP port %u: %m", rig->port);
                if (k == 0)
                        udp_original = fd;
                else
                        udp_gen = fd;
        }
        expect(steering_add_group(rig->steering, udp_original, &udp_group) == 0, "UDP group");
        expect_eq(udp_group, rig->group + 1, "UDP group index");
        expect(steering_register_socket(rig->steering, udp_group, SLOT_GEN1, 0, udp_gen) == 0, "register UDP");
        rig_generation(rig, 1, SLOT_GEN1, 1, 0, tcp_gen);
        rig_set_working(rig, SLOT_GEN1, GRM_SLOT_NONE);
        expect(steering_set_settings(rig->steering, GRM_DISSECTOR_NONE, 1000000) == 0, "settings");
        st = stats_now(rig);

        client = socket(f->client_domain, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        expect(client >= 0, "socket: %m");
        len = make_sockaddr(f->client_domain, f->client_addr, rig->port, &sa);
        expect(sendto(client, "x", 1, 0, (struct sockaddr *) &sa, len) == 1, "sendto: %m");
        {
                struct pollfd p = { .fd = udp_gen, .events = POLLIN };
                expect(poll(&p, 1, WAIT_MSEC) == 1, "datagram did not reach the generation");
                expect(recv(udp_gen, buf, sizeof(buf), 0) == 1, "recv: %m");
        }
        rig_connect(rig, 3);
        rig_send_ids(rig, 0, 3);
        where_init(where);
        expect_eq(accept_clients(rig, tcp_gen, 1, 3, where), 3, "connections");
        assert_stats(rig, &st, "UDP and TCP", GRM_STAT_WORKING, 1, GRM_STAT_TCP_WORKING, 3, -1);
        {
                uint64_t packets;
                expect(steering_get_slot_packets(rig->steering, SLOT_GEN1, &packets) == 0, "slot packets");
                expect_eq(packets, 1, "datagrams steered to the slot");
                expect_slot_tcp(rig, SLOT_GEN1, 3, 0);
        }

        safe_close(client);
        safe_close(udp_gen);
        safe_close(udp_original);
        close_all(tcp_gen, 1);
        rig_free(rig);
}
END_TEST

static Suite *tcp_suite(void) {
        Suite *s = suite_create("tcp");
        TCase *tc;

#define ADD(fn)                                                                         \
        tc = tcase_create(#fn);                                                         \
        tcase_set_timeout(tc, 30);                                                      \
        tcase_add_loop_test(tc, fn, 0, (int) ELEMENTSOF(tcp_cases));                     \
        suite_add_tcase(s, tc)

        ADD(test_new_connections);
        ADD(test_migrate_established);
        ADD(test_migrate_syn_recv);
        ADD(test_migrate_within_and_to_pending);
        ADD(test_no_generation_and_requeue);
        ADD(test_no_listener);
        ADD(test_udp_and_tcp_groups);
#undef ADD
        return s;
}

int main(void) {
        SRunner *sr;
        int r, n_failed;

        r = datapath_setup("test-tcp");
        if (r >= 0)
                return r;

        sr = srunner_create(tcp_suite());
        srunner_set_fork_status(sr, CK_FORK);
        srunner_run_all(sr, CK_ENV);
        n_failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
