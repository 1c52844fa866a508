/* SPDX-License-Identifier: MIT */
/*
 * grm-bench-steer: the per-packet cost of grm's steering program against an empty sk_reuseport
 * program, under the same load, in the same run (issue 4, benchmarks 1 and 5).
 *
 * Four reuseport groups on 127.0.0.1, built alike (an "original" socket bound first, as systemd's
 * would be, plus --sockets generation sockets), each with its own sk_reuseport program:
 *   grm      port 9001: steering loaded and attached by the code that ships
 *                       (src/shared/steering.c in libgrm-shared), one working generation;
 *   empty    port 9002: returns SK_PASS (bpf/empty.bpf.c): the baseline of the targets;
 *   select   port 9003: only selects a socket: the least any steering program does;
 *   minflow  port 9004: one hash lookup (insert on a miss) and a select: the least a program
 *                       that remembers flows does.
 * The sender sends the same datagrams to every group, from --flows distinct remotes (source
 * address in 127.1.0.0 and up, chosen per datagram with IP_PKTINFO, times a few source ports), so
 * the flow table can hold 1,000,000 live flows without 1,000,000 sockets; a second thread drains
 * every server socket. Before the rounds, one sweep over all flows fills the flow tables (the
 * programs create their own entries) and warms the caches.
 *
 * Each sweep over the flows (one datagram per flow) goes to each group in turn, the order rotating
 * from round to round (--mode alternate: one phase of all the round's sweeps per group instead),
 * so every program runs under the same load within milliseconds of the others. run_time_ns and run_cnt are read from each program's bpf_prog_info around the
 * round (statistics are switched on with BPF_ENABLE_STATS, the switch kernel.bpf_stats_enabled=1
 * flips, for as long as this process runs). The result is the ratio of grm's average run time to
 * the empty program's, per round and as the median over the rounds. The sender thread's CPU time
 * per datagram (sendmmsg and the loopback receive path it runs in softirq) is shown too, to put
 * the program's cost in proportion to the whole path.
 *
 * With --dissector quic every datagram is a QUIC short-header packet whose destination connection
 * ID is grm's (docs/QUIC.md) for the working generation, one distinct connection ID per flow
 * (--flows is then the number of connections): the path a 1-RTT packet of an established
 * connection takes. Its cost is stated against "select" (the floor of any steering program) as
 * well as against "empty".
 *
 * grm's program and flow table are found among this process's own file descriptors (steering.h
 * does not hand out their fds): the sk_reuseport program named grm_steer and the map named flows.
 * Run it as root in a private network namespace (tools/bench/steering-cost does).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "macro.h"
#include "quic-lb.h"
#include "steering.h"
#include "empty.skel.h"

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

#define PORT_BASE       9001
#define SOURCE_PORT_BASE 20000
#define SOURCE_ADDR_BASE 0x7f010000U  /* 127.1.0.0 */
#define SOURCE_ADDRS_MAX (0x00fe0000U) /* up to 127.254.255.255 */
#define BATCH           64
#define PAYLOAD_SIZE    64
#define QUIC_CID_LEN    12      /* octet 0, grm's 3 octets, 8 octets of connection number */
#define SERVER_RCVBUF   (16 * 1024 * 1024)
#define MAX_SOCKS       8
#define ROUNDS_MAX      100
#define QUIESCE_MSEC    300   /* how long a phase waits for its last datagrams */
#define FLOW_TIMEOUT_USEC (125 * USEC_PER_SEC)

enum {
        GROUP_GRM,
        GROUP_EMPTY,
        GROUP_SELECT,
        GROUP_MINFLOW,
        _GROUP_MAX,
};

static const char *group_names[_GROUP_MAX] = { "grm", "empty", "select", "minflow" };

/* What the fourth group runs (--baseline): minflow, or select plus one step (bpf/empty.bpf.c). */
static const char *const baseline_names[] = { "minflow", "address", "clock", "jiffies" };

/* Index of each baseline group's generation socket in bench_sockets (see bpf/empty.bpf.c). */
#define BENCH_INDEX_SELECT  0U
#define BENCH_INDEX_MINFLOW 1U

typedef struct BenchGroup {
        uint16_t port;
        int fds[1 + MAX_SOCKS];      /* [0] is the original socket */
        unsigned n_fds;
        int prog_fd;                 /* not owned: the skeleton or steering owns it */
        atomic_uint_fast64_t received;
} BenchGroup;

typedef struct Phase {
        uint64_t packets;            /* sent */
        uint64_t lost;               /* sent, never received */
        uint64_t run_cnt;
        uint64_t run_time_ns;
        uint64_t sender_cpu_ns;
        uint64_t verdicts[_GRM_STAT_MAX];
} Phase;

typedef struct Bench {
        Steering *steering;
        struct empty *empty;
        BenchGroup groups[_GROUP_MAX];
        int flows_map_fd;            /* not owned: steering owns it */
        int stats_fd;                /* BPF_ENABLE_STATS: statistics on while it is open */

        int *source_fds;             /* one per source port */
        unsigned n_ports;
        unsigned n_addrs;            /* flows = n_ports * n_addrs */

        int epoll_fd;
        pthread_t receiver;
        bool receiver_started;
        atomic_bool stop;

        Phase phases[ROUNDS_MAX][_GROUP_MAX];
} Bench;

static int arg_dissector = GRM_DISSECTOR_FLOW;
static uint64_t arg_flows = 1000;
static uint64_t arg_table_size = 0;  /* 0: chosen from --flows */
static unsigned arg_rounds = 6;
static uint64_t arg_packets = 100000;
static unsigned arg_sockets = 1;
static bool arg_interleave = true;
static unsigned arg_stride = 1;      /* the rounds send from every stride-th source address */
static uint64_t arg_rate = 0;        /* datagrams per second the sender keeps to; 0: as fast as it can */
static unsigned sweep_stride = 1;    /* the warm-up sweeps over every flow */
static bool arg_json = false;
static unsigned arg_baseline = 0; /* index in baseline_names */

static void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

static void fclosep(FILE **f) {
        if (*f)
                (void) fclose(*f);
}

static uint64_t clock_nsec(clockid_t id) {
        struct timespec ts;

        (void) clock_gettime(id, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

static void sleep_msec(unsigned msec) {
        struct timespec ts = { .tv_sec = msec / 1000, .tv_nsec = (long) (msec % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int log_errno(int r, const char *fmt, ...) _printf_(2, 3);
static int log_errno(int r, const char *fmt, ...) {
        va_list ap;

        fputs("grm-bench-steer: ", stderr);
        errno = r < 0 ? -r : r;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return r < 0 ? r : -r;
}

static void bench_free(Bench *b) {
        if (!b)
                return;
        if (b->receiver_started) {
                atomic_store(&b->stop, true);
                (void) pthread_join(b->receiver, NULL);
        }
        for (unsigned g = 0; g < _GROUP_MAX; g++)
                for (unsigned i = 0; i < b->groups[g].n_fds; i++)
                        safe_close(b->groups[g].fds[i]);
        if (b->source_fds)
                for (unsigned i = 0; i < b->n_ports; i++)
                        safe_close(b->source_fds[i]);
        free(b->source_fds);
        safe_close(b->epoll_fd);
        safe_close(b->stats_fd);
        steering_free(b->steering);
        empty__destroy(b->empty);
        free(b);
}

static void bench_freep(Bench **b) {
        bench_free(*b);
}

/* A UDP socket on 127.0.0.1:port with SO_REUSEPORT and a large receive buffer. */
static int open_server_socket(uint16_t port, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_port = htons(port),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        int one = 1, size = SERVER_RCVBUF;

        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_UDP);
        if (fd < 0)
                return negative_errno();
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
                return negative_errno();
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
                return negative_errno();
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int group_open(BenchGroup *g, uint16_t port) {
        int r;

        g->port = port;
        g->prog_fd = -EBADF;
        for (unsigned i = 0; i < 1 + arg_sockets; i++) {
                r = open_server_socket(port, &g->fds[i]);
                if (r < 0)
                        return log_errno(r, "cannot open a socket on 127.0.0.1:%u: %m", port);
                g->n_fds++;
        }
        return 0;
}

/* The fd of this process's BPF object of the given kind ("bpf-prog", "bpf-map") whose info has
 * the given name (and, for programs, type). */
static int find_own_bpf_fd(const char *kind, const char *name, int *ret_fd) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        char want[64];

        snprintf(want, sizeof(want), "anon_inode:%s", kind);
        d = opendir("/proc/self/fd");
        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                char path[64], link[64];
                ssize_t n;
                int fd;

                if (de->d_name[0] == '.')
                        continue;
                fd = atoi(de->d_name);
                if (fd == dirfd(d))
                        continue;
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                n = readlink(path, link, sizeof(link) - 1);
                if (n < 0)
                        continue;
                link[n] = 0;
                if (strcmp(link, want) != 0)
                        continue;

                if (streq(kind, "bpf-prog")) {
                        struct bpf_prog_info info = {};
                        uint32_t len = sizeof(info);

                        if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
                                continue;
                        if (info.type != BPF_PROG_TYPE_SK_REUSEPORT || !streq(info.name, name))
                                continue;
                } else {
                        struct bpf_map_info info = {};
                        uint32_t len = sizeof(info);

                        if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
                                continue;
                        if (!streq(info.name, name))
                                continue;
                }
                *ret_fd = fd;
                return 0;
        }
        return -ENOENT;
}

static int prog_read_stats(int fd, uint64_t *ret_cnt, uint64_t *ret_ns) {
        struct bpf_prog_info info = {};
        uint32_t len = sizeof(info);

        if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
                return negative_errno();
        *ret_cnt = info.run_cnt;
        *ret_ns = info.run_time_ns;
        return 0;
}

/* "memlock:" of a map's fdinfo: what the kernel charges for the map (bpftool map show says the
 * same), -errno if the line is missing. */
static int map_read_memlock(int fd, uint64_t *ret) {
        _cleanup_(fclosep) FILE *f = NULL;
        char path[64], line[256];

        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "memlock: %" SCNu64, ret) == 1)
                        return 0;
        return -ENODATA;
}

static void *receiver_main(void *userdata) {
        Bench *b = userdata;
        static uint8_t bufs[BATCH][PAYLOAD_SIZE + 64];
        struct mmsghdr msgs[BATCH];
        struct iovec iovs[BATCH];

        for (unsigned i = 0; i < BATCH; i++) {
                iovs[i] = (struct iovec) { .iov_base = bufs[i], .iov_len = sizeof(bufs[i]) };
                msgs[i] = (struct mmsghdr) { .msg_hdr = { .msg_iov = &iovs[i], .msg_iovlen = 1 } };
        }

        while (!atomic_load(&b->stop)) {
                struct epoll_event events[_GROUP_MAX * (1 + MAX_SOCKS)];
                int n = epoll_wait(b->epoll_fd, events, ELEMENTSOF(events), 50);

                for (int i = 0; i < n; i++) {
                        BenchGroup *g = &b->groups[events[i].data.u32 >> 16];
                        int fd = g->fds[events[i].data.u32 & 0xffff];

                        for (;;) {
                                int k = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);

                                if (k <= 0)
                                        break;
                                atomic_fetch_add(&g->received, (uint64_t) k);
                                if (k < BATCH)
                                        break;
                        }
                }
        }
        return NULL;
}

static int attach(BenchGroup *g, struct bpf_program *prog) {
        g->prog_fd = bpf_program__fd(prog);
        if (setsockopt(g->fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &g->prog_fd, sizeof(int)) < 0)
                return negative_errno();
        return 0;
}

static int bench_setup(Bench *b) {
        unsigned group;
        uint64_t fd;
        uint32_t index;
        int r;

        for (unsigned g = 0; g < _GROUP_MAX; g++) {
                r = group_open(&b->groups[g], PORT_BASE + g);
                if (r < 0)
                        return r;
        }

        /* grm: exactly what grmd does for one address and one working generation. */
        r = steering_new((unsigned) arg_table_size, &b->steering);
        if (r < 0)
                return log_errno(r, "steering_new(): %m");
        r = steering_add_group(b->steering, b->groups[GROUP_GRM].fds[0], &group);
        if (r < 0)
                return log_errno(r, "cannot load and attach grm's steering program: %m");
        r = steering_set_settings(b->steering, arg_dissector, FLOW_TIMEOUT_USEC);
        if (r < 0)
                return log_errno(r, "steering_set_settings(): %m");
        r = steering_set_quic_config(b->steering, 0, &(QuicLbPrefix) {});
        if (r < 0)
                return log_errno(r, "steering_set_quic_config(): %m");
        for (unsigned i = 0; i < arg_sockets; i++) {
                r = steering_register_socket(b->steering, group, 0, i, b->groups[GROUP_GRM].fds[1 + i]);
                if (r < 0)
                        return log_errno(r, "steering_register_socket(): %m");
        }
        r = steering_slot_activate(b->steering, 0, 1, arg_sockets);
        if (r < 0)
                return log_errno(r, "steering_slot_activate(): %m");
        r = steering_set_working(b->steering, 0, GRM_SLOT_NONE);
        if (r < 0)
                return log_errno(r, "steering_set_working(): %m");
        r = find_own_bpf_fd("bpf-prog", "grm_steer", &b->groups[GROUP_GRM].prog_fd);
        if (r < 0)
                return log_errno(r, "cannot find grm's program among this process's fds: %m");
        r = find_own_bpf_fd("bpf-map", "flows", &b->flows_map_fd);
        if (r < 0)
                return log_errno(r, "cannot find grm's flow table among this process's fds: %m");

        /* The baselines, on equivalent groups; minflow's table sized like grm's. */
        b->empty = empty__open();
        if (!b->empty)
                return log_errno(negative_errno(), "cannot open bpf/empty.bpf.c: %m");
        r = bpf_map__set_max_entries(b->empty->maps.bench_flows, (uint32_t) arg_table_size);
        if (r < 0)
                return log_errno(r, "cannot size the baseline's flow table: %m");
        r = empty__load(b->empty);
        if (r < 0)
                return log_errno(r, "cannot load bpf/empty.bpf.c: %m");
        r = attach(&b->groups[GROUP_EMPTY], b->empty->progs.grm_empty);
        if (r >= 0)
                r = attach(&b->groups[GROUP_SELECT], b->empty->progs.grm_select);
        if (r >= 0)
                r = attach(&b->groups[GROUP_MINFLOW],
                           arg_baseline == 1   ? b->empty->progs.grm_address
                           : arg_baseline == 2 ? b->empty->progs.grm_clock
                           : arg_baseline == 3 ? b->empty->progs.grm_jiffies
                                               : b->empty->progs.grm_minflow);
        if (r < 0)
                return log_errno(r, "cannot attach a baseline program: %m");
        index = BENCH_INDEX_SELECT;
        fd = (uint64_t) b->groups[GROUP_SELECT].fds[1];
        if (bpf_map_update_elem(bpf_map__fd(b->empty->maps.bench_sockets), &index, &fd, BPF_ANY) < 0)
                return log_errno(negative_errno(), "cannot register the select group's socket: %m");
        index = BENCH_INDEX_MINFLOW;
        fd = (uint64_t) b->groups[GROUP_MINFLOW].fds[1];
        if (bpf_map_update_elem(bpf_map__fd(b->empty->maps.bench_sockets), &index, &fd, BPF_ANY) < 0)
                return log_errno(negative_errno(), "cannot register the minflow group's socket: %m");

        /* Statistics on for as long as this fd is open: kernel.bpf_stats_enabled=1, refcounted. */
        b->stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
        if (b->stats_fd < 0)
                return log_errno(b->stats_fd, "BPF_ENABLE_STATS: %m");

        /* Sources: n_ports sockets, each sending from n_addrs addresses. */
        b->n_ports = arg_flows < 1000 ? 1 : arg_flows < 10000 ? 10 : 50;
        b->n_addrs = (unsigned) ((arg_flows + b->n_ports - 1) / b->n_ports);
        if (b->n_addrs > SOURCE_ADDRS_MAX)
                return log_errno(-E2BIG, "too many flows");
        b->source_fds = calloc(b->n_ports, sizeof(int));
        if (!b->source_fds)
                return -ENOMEM;
        for (unsigned i = 0; i < b->n_ports; i++)
                b->source_fds[i] = -EBADF;
        for (unsigned i = 0; i < b->n_ports; i++) {
                struct sockaddr_in sa = {
                        .sin_family = AF_INET,
                        .sin_port = htons(SOURCE_PORT_BASE + i),
                        .sin_addr.s_addr = htonl(INADDR_ANY),
                };
                int size = 4 * 1024 * 1024;

                b->source_fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
                if (b->source_fds[i] < 0)
                        return log_errno(negative_errno(), "socket(): %m");
                (void) setsockopt(b->source_fds[i], SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
                if (bind(b->source_fds[i], (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        return log_errno(negative_errno(), "cannot bind a source socket to port %u: %m",
                                         SOURCE_PORT_BASE + i);
        }

        b->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (b->epoll_fd < 0)
                return negative_errno();
        for (unsigned g = 0; g < _GROUP_MAX; g++)
                for (unsigned i = 0; i < b->groups[g].n_fds; i++)
                        if (epoll_ctl(b->epoll_fd, EPOLL_CTL_ADD, b->groups[g].fds[i],
                                      &(struct epoll_event) { .events = EPOLLIN, .data.u32 = g << 16 | i }) < 0)
                                return negative_errno();
        r = pthread_create(&b->receiver, NULL, receiver_main, b);
        if (r != 0)
                return log_errno(-r, "pthread_create(): %m");
        b->receiver_started = true;
        return 0;
}

/* Sends msgs[0..n) on fd, whole. */
static int send_batch(int fd, struct mmsghdr *msgs, unsigned n) {
        unsigned off = 0;

        while (off < n) {
                int k = sendmmsg(fd, msgs + off, n - off, 0);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && (errno == ENOBUFS || errno == EAGAIN)) {
                        sleep_msec(1);
                        continue;
                }
                if (k < 0)
                        return log_errno(negative_errno(), "sendmmsg(): %m");
                off += (unsigned) k;
        }
        return 0;
}

/*
 * One sweep: one datagram from every flow to the group, in batches of BATCH per source port.
 * The sender's CPU time around each batch (sendmmsg, and the loopback receive path that runs in
 * its softirq) is added to *ret_cpu_ns, the datagrams to *ret_sent.
 */
/* With --dissector quic: the 1-RTT packet of connection number conn, whose connection ID names
 * socket conn % --sockets of the working generation (generation 1 in slot 0), as a server
 * following docs/QUIC.md would have issued it. Otherwise zeros. */
static void fill_payload(uint8_t payload[PAYLOAD_SIZE], uint64_t conn) {
        uint8_t id[QUIC_LB_SERVER_ID_MAX];
        size_t len;

        memset(payload, 0, PAYLOAD_SIZE);
        if (arg_dissector != GRM_DISSECTOR_QUIC)
                return;
        payload[0] = 0x41;                        /* short header, fixed bit, 2-octet number */
        payload[1] = QUIC_CID_LEN - 1;            /* config id 0, CID length */
        (void) quic_lb_server_id(&(QuicLbPrefix) {}, 0, (unsigned) (conn % arg_sockets), 1, id, &len);
        memcpy(payload + 2, id, len);
        for (unsigned i = 0; i < 8; i++)
                payload[2 + len + i] = (uint8_t) (conn >> (56 - 8 * i));
}

static int send_sweep(Bench *b, unsigned group, uint64_t *ret_sent, uint64_t *ret_cpu_ns) {
        static uint8_t payloads[BATCH][PAYLOAD_SIZE];
        struct iovec iovs[BATCH];
        union {
                char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
                struct cmsghdr align;
        } ctl[BATCH];
        struct sockaddr_in dest = {
                .sin_family = AF_INET,
                .sin_port = htons(b->groups[group].port),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        struct mmsghdr msgs[BATCH];
        int r;

        memset(ctl, 0, sizeof(ctl));
        for (unsigned i = 0; i < BATCH; i++) {
                struct cmsghdr *c = (struct cmsghdr *) ctl[i].buf;

                c->cmsg_level = IPPROTO_IP;
                c->cmsg_type = IP_PKTINFO;
                c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
                iovs[i] = (struct iovec) { .iov_base = payloads[i], .iov_len = PAYLOAD_SIZE };
                msgs[i] = (struct mmsghdr) {
                        .msg_hdr = {
                                .msg_name = &dest,
                                .msg_namelen = sizeof(dest),
                                .msg_iov = &iovs[i],
                                .msg_iovlen = 1,
                                .msg_control = ctl[i].buf,
                                .msg_controllen = sizeof(ctl[i].buf),
                        },
                };
        }

        unsigned n_addrs = (b->n_addrs + sweep_stride - 1) / sweep_stride;
        static uint64_t next_ns;

        for (unsigned a0 = 0; a0 < n_addrs; a0 += BATCH) {
                unsigned n = n_addrs - a0 < BATCH ? n_addrs - a0 : BATCH;

                /* The source address of each datagram: IP_PKTINFO's ipi_spec_dst. */
                for (unsigned i = 0; i < n; i++) {
                        struct in_pktinfo pi = {
                                .ipi_spec_dst.s_addr = htonl(SOURCE_ADDR_BASE + (a0 + i) * sweep_stride),
                        };

                        memcpy(CMSG_DATA((struct cmsghdr *) ctl[i].buf), &pi, sizeof(pi));
                }
                for (unsigned p = 0; p < b->n_ports; p++) {
                        uint64_t t0;

                        /* Connection numbers: one per remote (source port, source address). */
                        for (unsigned i = 0; i < n; i++)
                                fill_payload(payloads[i], (uint64_t) p * b->n_addrs + (a0 + i) * sweep_stride);

                        /* --rate: a batch every n / rate seconds (the program then runs with
                         * whatever the rest of the machine left in the caches meanwhile). */
                        if (arg_rate > 0 && sweep_stride == arg_stride) {
                                uint64_t now = clock_nsec(CLOCK_MONOTONIC);

                                if (next_ns > now) {
                                        struct timespec ts = { .tv_sec = (time_t) (next_ns / NSEC_PER_SEC),
                                                               .tv_nsec = (long) (next_ns % NSEC_PER_SEC) };

                                        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                                                ;
                                } else
                                        next_ns = now;
                                next_ns += (uint64_t) n * NSEC_PER_SEC / arg_rate;
                        }
                        t0 = clock_nsec(CLOCK_THREAD_CPUTIME_ID);
                        r = send_batch(b->source_fds[p], msgs, n);
                        if (r < 0)
                                return r;
                        *ret_cpu_ns += clock_nsec(CLOCK_THREAD_CPUTIME_ID) - t0;
                        *ret_sent += n;
                }
        }
        return 0;
}

/* Waits until the group received what was sent, or until it stops making progress. */
static uint64_t wait_received(BenchGroup *g, uint64_t expected) {
        uint64_t last = atomic_load(&g->received), idle_msec = 0;

        while (last < expected && idle_msec < QUIESCE_MSEC) {
                uint64_t now;

                sleep_msec(1);
                now = atomic_load(&g->received);
                idle_msec = now == last ? idle_msec + 1 : 0;
                last = now;
        }
        return last;
}

/*
 * Sends `sweeps` sweeps to each of the n_order groups of order (each sweep to every group in
 * turn) and fills ret[group] for each of them: datagrams, losses, the program's runs and run
 * time, the sender's CPU time, grm's verdicts (when grm's group is among them).
 */
static int run_phase(Bench *b, const unsigned *order, unsigned n_order, uint64_t sweeps,
                     Phase ret[_GROUP_MAX]) {
        uint64_t cnt0[_GROUP_MAX], ns0[_GROUP_MAX], received0[_GROUP_MAX];
        uint64_t sent[_GROUP_MAX] = {}, cpu[_GROUP_MAX] = {};
        uint64_t v0[_GRM_STAT_MAX], v1[_GRM_STAT_MAX];
        int r;

        r = steering_get_stats(b->steering, v0);
        if (r < 0)
                return log_errno(r, "steering_get_stats(): %m");
        for (unsigned k = 0; k < n_order; k++) {
                BenchGroup *g = &b->groups[order[k]];

                received0[order[k]] = atomic_load(&g->received);
                r = prog_read_stats(g->prog_fd, &cnt0[order[k]], &ns0[order[k]]);
                if (r < 0)
                        return log_errno(r, "bpf_obj_get_info_by_fd(): %m");
        }

        for (uint64_t s = 0; s < sweeps; s++)
                for (unsigned k = 0; k < n_order; k++) {
                        r = send_sweep(b, order[k], &sent[order[k]], &cpu[order[k]]);
                        if (r < 0)
                                return r;
                }

        for (unsigned k = 0; k < n_order; k++) {
                unsigned i = order[k];
                BenchGroup *g = &b->groups[i];
                uint64_t cnt1, ns1;

                (void) wait_received(g, received0[i] + sent[i]);
                r = prog_read_stats(g->prog_fd, &cnt1, &ns1);
                if (r < 0)
                        return log_errno(r, "bpf_obj_get_info_by_fd(): %m");
                ret[i] = (Phase) {
                        .packets = sent[i],
                        .lost = sent[i] - (atomic_load(&g->received) - received0[i]),
                        .run_cnt = cnt1 - cnt0[i],
                        .run_time_ns = ns1 - ns0[i],
                        .sender_cpu_ns = cpu[i],
                };
        }
        r = steering_get_stats(b->steering, v1);
        if (r < 0)
                return log_errno(r, "steering_get_stats(): %m");
        for (unsigned k = 0; k < n_order; k++)
                if (order[k] == GROUP_GRM)
                        for (unsigned i = 0; i < _GRM_STAT_MAX; i++)
                                ret[GROUP_GRM].verdicts[i] = v1[i] - v0[i];
        return 0;
}

static double phase_ns(const Phase *p) {
        return p->run_cnt > 0 ? (double) p->run_time_ns / (double) p->run_cnt : 0;
}

static double phase_cpu_ns(const Phase *p) {
        return p->packets > 0 ? (double) p->sender_cpu_ns / (double) p->packets : 0;
}

static int compare_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n) {
        qsort(v, n, sizeof(double), compare_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static const char *dissector_name(int d) {
        return d == GRM_DISSECTOR_NONE ? "none" : d == GRM_DISSECTOR_QUIC ? "quic" : "flow";
}

static int help(void) {
        printf("Usage: %s [OPTIONS]\n"
               "\n"
               "Measures the per-packet run time (bpf_prog_info run_time_ns / run_cnt) of grm's\n"
               "sk_reuseport program, loaded and attached by libgrm-shared with one working\n"
               "generation, against baseline programs on equivalent reuseport groups under the\n"
               "same load: empty (SK_PASS), select (selects a socket), minflow (one hash lookup\n"
               "and a select). Needs root; run it in a private network namespace with lo up.\n"
               "\n"
               "  -D --dissector none|flow|quic\n"
               "                            grm's dissector (default flow); quic sends 1-RTT\n"
               "                            packets with grm's connection IDs, one per flow\n"
               "  -f --flows N              distinct remotes (source address and port), and\n"
               "                            with quic distinct connection IDs (default 1000)\n"
               "  -t --flow-table-size N    flow table entries (default: 65536, or the next power\n"
               "                            of two >= N when N is larger)\n"
               "  -r --rounds N             rounds (default 6)\n"
               "  -p --packets N            datagrams per program and round, at least; whole\n"
               "                            sweeps over the flows (default 100000)\n"
               "  -s --sockets N            generation sockets per group (default 1)\n"
               "     --mode interleave|alternate\n"
               "                            interleave: each sweep over the flows goes to each\n"
               "                            group in turn (default); alternate: all the round's\n"
               "                            sweeps to one group, then the next\n"
               "     --rate N               send at N datagrams/s in the rounds (the warm-up\n"
               "                            goes as fast as it can): cold caches\n"
               "     --sample-every N       the rounds send from every N-th source address only\n"
               "                            (with all its ports): a sample of the flows, for\n"
               "                            low rates over large tables\n"
               "     --baseline minflow|address|clock|jiffies\n"
               "                            what the fourth group runs: minflow (default), or\n"
               "                            select plus one step: reading the remote IPv4\n"
               "                            address, bpf_ktime_get_coarse_ns(), bpf_jiffies64()\n"
               "                            (its results are named after it)\n"
               "     --json                 print the result as one JSON object\n"
               "  -h --help                 show this help\n",
               program_invocation_short_name);
        return 0;
}

static int parse_number(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        char *end = NULL;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || !end || *end || end == s || v < min || v > max) {
                fprintf(stderr, "%s: %s: expected %" PRIu64 "..%" PRIu64 ", got '%s'\n",
                        program_invocation_short_name, opt, min, max, s);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_JSON = 0x100, ARG_MODE, ARG_RATE, ARG_STRIDE, ARG_BASELINE };
        static const struct option options[] = {
                { "help",            no_argument,       NULL, 'h'      },
                { "dissector",       required_argument, NULL, 'D'      },
                { "flows",           required_argument, NULL, 'f'      },
                { "flow-table-size", required_argument, NULL, 't'      },
                { "rounds",          required_argument, NULL, 'r'      },
                { "packets",         required_argument, NULL, 'p'      },
                { "sockets",         required_argument, NULL, 's'      },
                { "mode",            required_argument, NULL, ARG_MODE },
                { "json",            no_argument,       NULL, ARG_JSON },
                { "rate",            required_argument, NULL, ARG_RATE },
                { "sample-every",    required_argument, NULL, ARG_STRIDE },
                { "baseline",        required_argument, NULL, ARG_BASELINE },
                {}
        };
        uint64_t u;
        int c;

        while ((c = getopt_long(argc, argv, "hD:f:t:r:p:s:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return help();
                case 'D':
                        if (streq(optarg, "none"))
                                arg_dissector = GRM_DISSECTOR_NONE;
                        else if (streq(optarg, "flow"))
                                arg_dissector = GRM_DISSECTOR_FLOW;
                        else if (streq(optarg, "quic"))
                                arg_dissector = GRM_DISSECTOR_QUIC;
                        else {
                                fprintf(stderr, "%s: --dissector: expected none, flow or quic, got '%s'\n",
                                        program_invocation_short_name, optarg);
                                return -EINVAL;
                        }
                        break;
                case 'f':
                        if (parse_number("--flows", optarg, 1, 16000000, &arg_flows) < 0)
                                return -EINVAL;
                        break;
                case 't':
                        if (parse_number("--flow-table-size", optarg, 1, UINT32_MAX, &arg_table_size) < 0)
                                return -EINVAL;
                        break;
                case 'r':
                        if (parse_number("--rounds", optarg, 1, ROUNDS_MAX, &u) < 0)
                                return -EINVAL;
                        arg_rounds = (unsigned) u;
                        break;
                case 'p':
                        if (parse_number("--packets", optarg, 1, UINT32_MAX, &arg_packets) < 0)
                                return -EINVAL;
                        break;
                case 's':
                        if (parse_number("--sockets", optarg, 1, MAX_SOCKS, &u) < 0)
                                return -EINVAL;
                        arg_sockets = (unsigned) u;
                        break;
                case ARG_MODE:
                        if (streq(optarg, "interleave"))
                                arg_interleave = true;
                        else if (streq(optarg, "alternate"))
                                arg_interleave = false;
                        else {
                                fprintf(stderr, "%s: --mode: expected interleave or alternate, got '%s'\n",
                                        program_invocation_short_name, optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case ARG_RATE:
                        if (parse_number("--rate", optarg, 1, 100000000, &arg_rate) < 0)
                                return -EINVAL;
                        break;
                case ARG_BASELINE:
                        arg_baseline = ELEMENTSOF(baseline_names);
                        for (unsigned i = 0; i < ELEMENTSOF(baseline_names); i++)
                                if (streq(optarg, baseline_names[i]))
                                        arg_baseline = i;
                        if (arg_baseline == ELEMENTSOF(baseline_names)) {
                                fprintf(stderr, "%s: --baseline: expected minflow, address, clock or jiffies, got '%s'\n",
                                        program_invocation_short_name, optarg);
                                return -EINVAL;
                        }
                        group_names[GROUP_MINFLOW] = baseline_names[arg_baseline];
                        break;
                case ARG_STRIDE:
                        if (parse_number("--sample-every", optarg, 1, 1000000, &u) < 0)
                                return -EINVAL;
                        arg_stride = (unsigned) u;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "%s: unexpected argument '%s'\n", program_invocation_short_name, argv[optind]);
                return -EINVAL;
        }

        if (arg_table_size == 0) {
                arg_table_size = 65536;
                while (arg_table_size < arg_flows)
                        arg_table_size *= 2;
        }
        return 1;
}

/* Medians over the rounds, and totals. */
typedef struct Summary {
        uint64_t flows, packets_per_phase, live, total;
        double ns[_GROUP_MAX];           /* median run time per run */
        double send_ns[_GROUP_MAX];      /* median sender CPU time per datagram */
        double ratio, ratio_min, ratio_max;
        double ratio_select, ratio_select_min, ratio_select_max; /* grm / select */
        uint64_t verdicts[_GRM_STAT_MAX];
        uint64_t packets, lost;
        struct bpf_map_info map_info;
        uint64_t memlock;
} Summary;

static int summarize(Bench *b, uint64_t flows, uint64_t sweeps, Summary *ret) {
        double ns[_GROUP_MAX][ROUNDS_MAX], cpu[_GROUP_MAX][ROUNDS_MAX], ratio[ROUNDS_MAX], ratio_select[ROUNDS_MAX];
        uint32_t len = sizeof(ret->map_info);
        int r;

        *ret = (Summary) { .flows = flows, .packets_per_phase = sweeps * flows };
        for (unsigned round = 0; round < arg_rounds; round++) {
                const Phase *p = b->phases[round];

                for (unsigned g = 0; g < _GROUP_MAX; g++) {
                        ns[g][round] = phase_ns(&p[g]);
                        cpu[g][round] = phase_cpu_ns(&p[g]);
                        ret->lost += p[g].lost;
                        ret->packets += p[g].packets;
                }
                ratio[round] = ns[GROUP_EMPTY][round] > 0 ? ns[GROUP_GRM][round] / ns[GROUP_EMPTY][round] : 0;
                ratio_select[round] = ns[GROUP_SELECT][round] > 0 ? ns[GROUP_GRM][round] / ns[GROUP_SELECT][round] : 0;
                for (unsigned i = 0; i < _GRM_STAT_MAX; i++)
                        ret->verdicts[i] += p[GROUP_GRM].verdicts[i];
        }
        for (unsigned g = 0; g < _GROUP_MAX; g++) {
                ret->ns[g] = median(ns[g], arg_rounds);
                ret->send_ns[g] = median(cpu[g], arg_rounds);
        }
        ret->ratio = median(ratio, arg_rounds); /* sorts ratio */
        ret->ratio_min = ratio[0];
        ret->ratio_max = ratio[arg_rounds - 1];
        ret->ratio_select = median(ratio_select, arg_rounds);
        ret->ratio_select_min = ratio_select[0];
        ret->ratio_select_max = ratio_select[arg_rounds - 1];

        if (bpf_obj_get_info_by_fd(b->flows_map_fd, &ret->map_info, &len) < 0)
                return log_errno(negative_errno(), "cannot read the flow table's info: %m");
        r = map_read_memlock(b->flows_map_fd, &ret->memlock);
        if (r < 0)
                return log_errno(r, "cannot read the flow table's memlock: %m");
        r = steering_count_flows(b->steering, &ret->live, &ret->total);
        if (r < 0)
                return log_errno(r, "steering_count_flows(): %m");
        return 0;
}

static void print_json(const Summary *sum) {
        printf("{\"dissector\":\"%s\",\"flows\":%" PRIu64 ",\"live_flow_entries\":%" PRIu64
               ",\"flow_entries\":%" PRIu64 ",\"rounds\":%u,\"packets_per_phase\":%" PRIu64
               ",\"rate\":%" PRIu64 ",\"sample_every\":%u,\"mode\":\"%s\",\"ratio\":%.3f,\"ratio_min\":%.3f,\"ratio_max\":%.3f",
               dissector_name(arg_dissector), sum->flows, sum->live, sum->total, arg_rounds,
               sum->packets_per_phase, arg_rate, arg_stride, arg_interleave ? "interleave" : "alternate", sum->ratio,
               sum->ratio_min, sum->ratio_max);
        printf(",\"ratio_select\":%.3f,\"ratio_select_min\":%.3f,\"ratio_select_max\":%.3f",
               sum->ratio_select, sum->ratio_select_min, sum->ratio_select_max);
        printf(",\"run_ns\":{");
        for (unsigned g = 0; g < _GROUP_MAX; g++)
                printf("%s\"%s\":%.1f", g > 0 ? "," : "", group_names[g], sum->ns[g]);
        printf("},\"send_ns\":{");
        for (unsigned g = 0; g < _GROUP_MAX; g++)
                printf("%s\"%s\":%.0f", g > 0 ? "," : "", group_names[g], sum->send_ns[g]);
        printf("},\"packets\":%" PRIu64 ",\"lost\":%" PRIu64, sum->packets, sum->lost);
        printf(",\"flow_map\":{\"max_entries\":%u,\"key_size\":%u,\"value_size\":%u,\"memlock\":%" PRIu64 "}",
               sum->map_info.max_entries, sum->map_info.key_size, sum->map_info.value_size, sum->memlock);
        printf(",\"verdicts\":{");
        for (unsigned i = 0, n = 0; i < _GRM_STAT_MAX; i++)
                if (sum->verdicts[i] > 0)
                        printf("%s\"%s\":%" PRIu64, n++ ? "," : "", grm_stat_to_string(i), sum->verdicts[i]);
        printf("}}\n");
}

static void print_human(const Summary *sum) {
        printf("\nmedian ns per run: grm %.1f, empty %.1f, select %.1f, %s %.1f; "
               "grm/empty %.2f (rounds %.2f..%.2f), grm/select %.2f (rounds %.2f..%.2f)\n",
               sum->ns[GROUP_GRM], sum->ns[GROUP_EMPTY], sum->ns[GROUP_SELECT], group_names[GROUP_MINFLOW],
               sum->ns[GROUP_MINFLOW],
               sum->ratio, sum->ratio_min, sum->ratio_max, sum->ratio_select, sum->ratio_select_min,
               sum->ratio_select_max);
        printf("sender CPU per datagram (send + loopback delivery): grm %.0f ns, empty %.0f ns\n",
               sum->send_ns[GROUP_GRM], sum->send_ns[GROUP_EMPTY]);
        printf("grm verdicts during the rounds:");
        for (unsigned i = 0; i < _GRM_STAT_MAX; i++)
                if (sum->verdicts[i] > 0)
                        printf(" %s %" PRIu64, grm_stat_to_string(i), sum->verdicts[i]);
        printf("\nflow table: %u entries of %u+%u bytes, %" PRIu64 " in use (%" PRIu64 " live), memlock %" PRIu64
               " bytes = %.1f bytes per entry, %.1f per live flow\n",
               sum->map_info.max_entries, sum->map_info.key_size, sum->map_info.value_size, sum->total, sum->live,
               sum->memlock, (double) sum->memlock / sum->map_info.max_entries,
               sum->live > 0 ? (double) sum->memlock / (double) sum->live : 0.0);
        printf("datagrams lost (not received): %" PRIu64 " of %" PRIu64 "\n", sum->lost, sum->packets);
}

int main(int argc, char *argv[]) {
        _cleanup_(bench_freep) Bench *b = NULL;
        uint64_t sweeps, flows, live = 0, total = 0;
        Phase warm[_GROUP_MAX];
        Summary sum;
        unsigned order[_GROUP_MAX];
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;

        b = calloc(1, sizeof(Bench));
        if (!b)
                return 1;
        b->epoll_fd = b->flows_map_fd = b->stats_fd = -EBADF;
        libbpf_set_print(NULL);

        r = bench_setup(b);
        if (r < 0)
                return 1;

        flows = (uint64_t) b->n_ports * b->n_addrs;
        /* Rounds sweep over every stride-th source address (each with all its ports). */
        sweeps = (arg_packets + flows / arg_stride - 1) / (flows / arg_stride > 0 ? flows / arg_stride : 1);

        /* Warm-up: the programs create every flow's entry; routes and caches get warm. */
        for (unsigned g = 0; g < _GROUP_MAX; g++)
                order[g] = g;
        r = run_phase(b, order, _GROUP_MAX, 1, warm);
        if (r < 0)
                return 1;
        r = steering_count_flows(b->steering, &live, &total);
        if (r < 0)
                return log_errno(r, "steering_count_flows(): %m"), 1;
        sweep_stride = arg_stride;

        if (!arg_json) {
                printf("grm-bench-steer: dissector %s, %" PRIu64 " flows (%u source ports x %u addresses), "
                       "flow table %" PRIu64 " entries (%" PRIu64 " live), %u socket(s) per generation\n",
                       dissector_name(arg_dissector), flows, b->n_ports, b->n_addrs, arg_table_size, live,
                       arg_sockets);
                printf("%" PRIu64 " datagrams per program and round (%" PRIu64 " sweeps), %u rounds, %s\n\n",
                       sweeps * flows, sweeps, arg_rounds,
                       arg_interleave ? "interleaved sweep by sweep" : "one phase per program");
                printf("%-6s %-8s %-8s %-8s %-8s %-8s %-8s %-10s %-10s %s\n", "ROUND", "FIRST", "GRM_NS",
                       "EMPTY_NS", "SELECT", "MINFLOW", "RATIO", "GRM_SEND", "EMPTY_SEND", "LOST");
        }

        for (unsigned round = 0; round < arg_rounds; round++) {
                Phase *p = b->phases[round];
                uint64_t lost = 0;

                for (unsigned g = 0; g < _GROUP_MAX; g++)
                        order[g] = (g + round) % _GROUP_MAX;
                if (arg_interleave)
                        r = run_phase(b, order, _GROUP_MAX, sweeps, p);
                else
                        for (unsigned g = 0; g < _GROUP_MAX && r >= 0; g++)
                                r = run_phase(b, &order[g], 1, sweeps, p);
                if (r < 0)
                        return 1;

                for (unsigned g = 0; g < _GROUP_MAX; g++)
                        lost += p[g].lost;
                if (!arg_json)
                        printf("%-6u %-8s %-8.1f %-8.1f %-8.1f %-8.1f %-8.2f %-10.0f %-10.0f %" PRIu64 "\n",
                               round + 1, group_names[order[0]], phase_ns(&p[GROUP_GRM]),
                               phase_ns(&p[GROUP_EMPTY]), phase_ns(&p[GROUP_SELECT]),
                               phase_ns(&p[GROUP_MINFLOW]),
                               phase_ns(&p[GROUP_GRM]) / phase_ns(&p[GROUP_EMPTY]),
                               phase_cpu_ns(&p[GROUP_GRM]), phase_cpu_ns(&p[GROUP_EMPTY]), lost);
                fflush(stdout);
        }

        r = summarize(b, flows, sweeps, &sum);
        if (r < 0)
                return 1;
        if (arg_json)
                print_json(&sum);
        else
                print_human(&sum);
        return 0;
}
