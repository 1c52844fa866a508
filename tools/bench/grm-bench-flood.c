/* SPDX-License-Identifier: MIT */
/*
 * grm-bench-flood: the floods of issue 9 against grm's flow table, through the code that ships
 * (libgrm-shared's steering.c and the steering program), on 127.0.0.1 in a private network
 * namespace (tools/bench/flow-flood runs it).
 *
 * A reuseport group like grmd's (an original socket, then generations of sockets), dissector flow,
 * grmd's default table (65,536 entries) and a per-source quota of 4,096 unless told otherwise. Real flows (one
 * UDP socket each, from 127.0.0.2 and up) start on generation 1; then generation 2 starts working
 * and generation 1 drains, its flows owned by it. While the real flows keep sending, each at its
 * own interval, an attacker floods for --seconds:
 *
 *   one-host  127.0.0.1 sends 2 datagrams from each of its 65,535 ports, then again, for as long
 *             as the flood lasts (raw socket: the source port is the attacker's choice);
 *   spoofed   --sources distinct source addresses and ports (IP_HDRINCL, addresses in 10/8 and
 *             up), 2 datagrams each, as fast as one thread sends, then again from the start.
 *
 * A real flow's datagram must arrive on the very socket of generation 1 its first datagram went
 * to: the generation-1 sockets get nothing else, so a datagram that does not arrive there within
 * a second moved (or was lost, which counts the same here). The result: datagrams sent, the rate,
 * real flows moved, the verdict counters, the table's entries in use.
 *
 * Needs root (raw sockets, bpf()); run it in a private network namespace with lo up.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "macro.h"
#include "steering.h"

#define PORT            9100
#define SLOT_GEN1       3U
#define SLOT_GEN2       9U
#define SOCKS_PER_GEN   2U
#define RCVBUF          (16 << 20)
#define MAX_REAL        64U
#define ARRIVAL_MSEC    1000U

enum { ATTACK_ONE_HOST, ATTACK_SPOOFED };

static int arg_attack = ATTACK_ONE_HOST;
static uint64_t arg_sources = 3000000;
static unsigned arg_seconds = 60;
static unsigned arg_table = 65536;
static unsigned arg_quota = 4096;
static unsigned arg_real = 30;
static bool arg_json = false;

typedef struct Real {
        int fd;
        unsigned interval_msec;
        int sock;                /* socket index of its first datagram, in Bench.socks */
        uint64_t next_msec;
        atomic_uint_fast64_t sent, arrived;
} Real;

typedef struct Bench {
        Steering *steering;
        int socks[1 + 2 * SOCKS_PER_GEN];    /* [0]: original; then gen 1, then gen 2 */
        Real real[MAX_REAL];
        atomic_bool stop;
        atomic_uint_fast64_t moved;
} Bench;

static uint64_t now_msec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static int fail(const char *what) {
        fprintf(stderr, "grm-bench-flood: %s: %m\n", what);
        return -1;
}

static int server_socket(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(PORT),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, size = RCVBUF;

        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0 ||
            bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return fail("server socket");
        return fd;
}

static int gen_start(Bench *b, unsigned slot, uint32_t gen, int *socks) {
        for (unsigned i = 0; i < SOCKS_PER_GEN; i++) {
                socks[i] = server_socket();
                if (socks[i] < 0 || steering_register_socket(b->steering, 0, slot, i, socks[i]) < 0)
                        return fail("registering a socket");
        }
        if (steering_slot_activate(b->steering, slot, gen, SOCKS_PER_GEN) < 0 ||
            steering_set_working(b->steering, slot, GRM_SLOT_NONE) < 0)
                return fail("starting a generation");
        return 0;
}

/* Reads the generation-1 sockets: each real datagram carries its flow's number, and must be on
 * that flow's socket. Generation 2's sockets (the flood's) are left to overflow. */
static void *receiver_main(void *userdata) {
        Bench *b = userdata;

        while (!atomic_load(&b->stop)) {
                struct pollfd pfds[SOCKS_PER_GEN];

                for (unsigned i = 0; i < SOCKS_PER_GEN; i++)
                        pfds[i] = (struct pollfd) { .fd = b->socks[1 + i], .events = POLLIN };
                (void) poll(pfds, SOCKS_PER_GEN, 50);
                for (unsigned i = 0; i < SOCKS_PER_GEN; i++) {
                        uint32_t flow;

                        while (recv(b->socks[1 + i], &flow, sizeof(flow), MSG_DONTWAIT) == sizeof(flow))
                                if (flow < arg_real && b->real[flow].sock == (int) (1 + i))
                                        atomic_fetch_add(&b->real[flow].arrived, 1);
                }
        }
        return NULL;
}

/* The real flows' schedule: each sends when its interval has passed. */
static void *real_main(void *userdata) {
        Bench *b = userdata;
        struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(PORT),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

        while (!atomic_load(&b->stop)) {
                uint64_t now = now_msec();

                for (uint32_t i = 0; i < arg_real; i++) {
                        Real *r = &b->real[i];

                        if (now < r->next_msec)
                                continue;
                        r->next_msec = now + r->interval_msec;
                        if (sendto(r->fd, &i, sizeof(i), 0, (struct sockaddr *) &dst, sizeof(dst)) == sizeof(i))
                                atomic_fetch_add(&r->sent, 1);
                }
                usleep(10000);
        }
        return NULL;
}

/* The first datagram of each real flow, on generation 1: which socket it went to. */
static int real_setup(Bench *b) {
        struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(PORT),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        static const unsigned intervals[] = { 500, 2000, 5000 };

        for (uint32_t i = 0; i < arg_real; i++) {
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK + 2 + i) };
                Real *r = &b->real[i];
                uint64_t deadline = now_msec() + ARRIVAL_MSEC;

                r->interval_msec = intervals[i % ELEMENTSOF(intervals)];
                r->sock = -1;
                r->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                if (r->fd < 0 || bind(r->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
                    sendto(r->fd, &i, sizeof(i), 0, (struct sockaddr *) &dst, sizeof(dst)) != sizeof(i))
                        return fail("a real flow");
                while (r->sock < 0 && now_msec() < deadline)
                        for (unsigned k = 0; k < SOCKS_PER_GEN; k++) {
                                uint32_t flow;

                                if (recv(b->socks[1 + k], &flow, sizeof(flow), MSG_DONTWAIT) == sizeof(flow) && flow == i)
                                        r->sock = (int) (1 + k);
                        }
                if (r->sock < 0) {
                        fprintf(stderr, "grm-bench-flood: real flow %u never arrived on generation 1\n", i);
                        return -1;
                }
        }
        return 0;
}

static int forge(int raw, uint32_t saddr, uint16_t sport) {
        struct {
                struct iphdr ip;
                struct udphdr udp;
                uint32_t payload;
        } pkt = {
                .ip = { .ihl = 5, .version = 4, .ttl = 64, .protocol = IPPROTO_UDP,
                        .saddr = htonl(saddr), .daddr = htonl(INADDR_LOOPBACK) },
                .udp = { .source = htons(sport), .dest = htons(PORT), .len = htons(sizeof(struct udphdr) + 4) },
                .payload = UINT32_MAX,
        };
        struct sockaddr_in dst = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

        for (;;) {
                if (sendto(raw, &pkt, sizeof(pkt), 0, (struct sockaddr *) &dst, sizeof(dst)) == sizeof(pkt))
                        return 0;
                if (errno != ENOBUFS && errno != EAGAIN)
                        return fail("raw sendto()");
                sched_yield();
        }
}

/* Source i of the spoofed flood: distinct (address, port) pairs, addresses from 10.0.0.0 up. */
static void spoofed_source(uint64_t i, uint32_t *ret_addr, uint16_t *ret_port) {
        *ret_addr = 0x0a000000U + (uint32_t) (i / 50);
        *ret_port = (uint16_t) (20000 + i % 50);
}

static int flood(Bench *b, uint64_t *ret_sent, double *ret_seconds) {
        uint64_t start = now_msec(), end = start + (uint64_t) arg_seconds * 1000, sent = 0, i = 0;
        int raw = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW), size = 4 << 20;

        if (raw < 0)
                return fail("raw socket");
        (void) setsockopt(raw, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
        while (now_msec() < end) {
                for (unsigned k = 0; k < 1024; k++, i++) {
                        uint32_t addr = INADDR_LOOPBACK;
                        uint16_t port;

                        if (arg_attack == ATTACK_ONE_HOST)
                                port = (uint16_t) (1 + i % 65535);
                        else
                                spoofed_source(i % arg_sources, &addr, &port);
                        if (forge(raw, addr, port) < 0 || forge(raw, addr, port) < 0) {
                                close(raw);
                                return -1;
                        }
                        sent += 2;
                }
        }
        *ret_sent = sent;
        *ret_seconds = (double) (now_msec() - start) / 1000.0;
        close(raw);
        return 0;
}

static int help(void) {
        printf("Usage: %s [OPTIONS]\n"
               "\n"
               "Floods grm's flow table while real flows owned by a draining generation keep\n"
               "sending, and reports how many of them moved. Needs root; run it in a private\n"
               "network namespace with lo up (tools/bench/flow-flood does).\n"
               "\n"
               "  --attack one-host|spoofed  127.0.0.1 from all its ports, or spoofed sources\n"
               "  --sources N                distinct spoofed sources (default 3000000)\n"
               "  --seconds N                how long the flood lasts (default 60)\n"
               "  --flow-table-size N        (default 65536, grmd's)\n"
               "  --flows-per-source N       the quota (default 4096; 0: none, grmd's default)\n"
               "  --real N                   real flows, at 0.5, 2 and 5 s intervals (default 30)\n"
               "  --json                     one JSON object\n",
               program_invocation_short_name);
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        enum { A_ATTACK = 0x100, A_SOURCES, A_SECONDS, A_TABLE, A_QUOTA, A_REAL, A_JSON };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "attack", required_argument, NULL, A_ATTACK },
                { "sources", required_argument, NULL, A_SOURCES },
                { "seconds", required_argument, NULL, A_SECONDS },
                { "flow-table-size", required_argument, NULL, A_TABLE },
                { "flows-per-source", required_argument, NULL, A_QUOTA },
                { "real", required_argument, NULL, A_REAL },
                { "json", no_argument, NULL, A_JSON },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                unsigned long long v = 0;
                char *end = NULL;

                if (optarg) {
                        errno = 0;
                        v = strtoull(optarg, &end, 10);
                }
                if (optarg && c != A_ATTACK && (errno || !end || *end || end == optarg)) {
                        fprintf(stderr, "%s: bad number '%s'\n", program_invocation_short_name, optarg);
                        return -EINVAL;
                }
                switch (c) {
                case 'h':
                        return help();
                case A_ATTACK:
                        if (streq(optarg, "one-host"))
                                arg_attack = ATTACK_ONE_HOST;
                        else if (streq(optarg, "spoofed"))
                                arg_attack = ATTACK_SPOOFED;
                        else {
                                fprintf(stderr, "%s: --attack: one-host or spoofed\n", program_invocation_short_name);
                                return -EINVAL;
                        }
                        break;
                case A_SOURCES:
                        if (v < 1 || v > 200000000ULL)
                                return -EINVAL;
                        arg_sources = v;
                        break;
                case A_SECONDS:
                        if (v < 1 || v > 3600)
                                return -EINVAL;
                        arg_seconds = (unsigned) v;
                        break;
                case A_TABLE:
                        if (v < 1024 || v > (16U << 20))
                                return -EINVAL;
                        arg_table = (unsigned) v;
                        break;
                case A_QUOTA:
                        if (v > (16U << 20))
                                return -EINVAL;
                        arg_quota = (unsigned) v;
                        break;
                case A_REAL:
                        if (v < 1 || v > MAX_REAL)
                                return -EINVAL;
                        arg_real = (unsigned) v;
                        break;
                case A_JSON:
                        arg_json = true;
                        break;
                default:
                        return -EINVAL;
                }
        }
        return 1;
}

int main(int argc, char *argv[]) {
        static Bench bench;
        Bench *b = &bench;
        pthread_t receiver, sender;
        uint64_t before[_GRM_STAT_MAX], after[_GRM_STAT_MAX], sent = 0, real_sent = 0, real_arrived = 0;
        uint64_t counts[1], in_use = 0;
        unsigned moved_flows = 0;
        double seconds = 0;
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        libbpf_set_print(NULL);

        b->socks[0] = server_socket();
        if (b->socks[0] < 0)
                return 1;
        if (steering_new(arg_table, &b->steering) < 0 || steering_add_group(b->steering, b->socks[0], NULL) < 0 ||
            steering_set_settings(b->steering, GRM_DISSECTOR_FLOW, 125 * USEC_PER_SEC) < 0 ||
            steering_set_flow_quota(b->steering, arg_quota) < 0)
                return fail("loading the steering program"), 1;
        if (gen_start(b, SLOT_GEN1, 1, &b->socks[1]) < 0 || real_setup(b) < 0)
                return 1;
        if (gen_start(b, SLOT_GEN2, 2, &b->socks[1 + SOCKS_PER_GEN]) < 0) /* generation 1 drains */
                return 1;

        if (steering_get_stats(b->steering, before) < 0)
                return fail("counters"), 1;
        for (unsigned i = 0; i < arg_real; i++)
                b->real[i].next_msec = now_msec() + b->real[i].interval_msec;
        if (pthread_create(&receiver, NULL, receiver_main, b) != 0 || pthread_create(&sender, NULL, real_main, b) != 0)
                return fail("threads"), 1;
        r = flood(b, &sent, &seconds);
        /* Let the last real datagrams arrive. */
        usleep(ARRIVAL_MSEC * 1000);
        atomic_store(&b->stop, true);
        pthread_join(sender, NULL);
        usleep(ARRIVAL_MSEC * 1000);
        pthread_join(receiver, NULL);
        if (r < 0)
                return 1;
        if (steering_get_stats(b->steering, after) < 0 || steering_count_flows(b->steering, counts, &in_use) < 0)
                return fail("counters"), 1;

        for (unsigned i = 0; i < arg_real; i++) {
                uint64_t s = atomic_load(&b->real[i].sent), a = atomic_load(&b->real[i].arrived);

                real_sent += s;
                real_arrived += a;
                moved_flows += a < s;
        }

        if (arg_json) {
                printf("{\"attack\":\"%s\",\"keys\":%" PRIu64 ",\"seconds\":%.1f,\"sent\":%" PRIu64 ",\"rate\":%.0f,"
                       "\"table\":%u,\"quota\":%u,\"real_flows\":%u,\"real_sent\":%" PRIu64 ",\"real_on_their_socket\":%" PRIu64
                       ",\"real_flows_moved\":%u,\"entries_in_use\":%" PRIu64 ",\"verdicts\":{",
                       arg_attack == ATTACK_ONE_HOST ? "one-host" : "spoofed",
                       arg_attack == ATTACK_ONE_HOST ? 65535 : arg_sources, seconds, sent, (double) sent / seconds,
                       arg_table, arg_quota, arg_real, real_sent, real_arrived, moved_flows, in_use);
                for (unsigned i = 0, n = 0; i < _GRM_STAT_MAX; i++)
                        if (after[i] > before[i])
                                printf("%s\"%s\":%" PRIu64, n++ ? "," : "", grm_stat_to_string(i), after[i] - before[i]);
                printf("}}\n");
        } else {
                printf("attack %s, %" PRIu64 " keys: %" PRIu64 " datagrams in %.1f s (%.0f/s)\n",
                       arg_attack == ATTACK_ONE_HOST ? "one-host" : "spoofed",
                       arg_attack == ATTACK_ONE_HOST ? 65535 : arg_sources, sent, seconds, (double) sent / seconds);
                printf("real flows: %u, %" PRIu64 " datagrams, %" PRIu64 " on their socket, %u flows moved\n",
                       arg_real, real_sent, real_arrived, moved_flows);
                printf("verdicts:");
                for (unsigned i = 0; i < _GRM_STAT_MAX; i++)
                        if (after[i] > before[i])
                                printf(" %s %" PRIu64, grm_stat_to_string(i), after[i] - before[i]);
                printf("\nflow table: %u entries, %" PRIu64 " in use, quota %u per source\n", arg_table, in_use, arg_quota);
        }
        return moved_flows == 0 ? 0 : 3;
}
