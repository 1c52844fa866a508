/* SPDX-License-Identifier: MIT */
/*
 * grm-load --spread: as many concurrent UDP flows as the target's flow table can hold (up to
 * 16,777,216), from several sender threads with sendmmsg(), for the flow-table scale and the
 * throughput ceiling. One address has only 65,535 ports, so a flow here is a source address in
 * 127.0.0.0/8 (127.1.0.0 and up; on Linux every 127/8 address is local on lo) and a source port:
 * each thread owns --ports-per-thread unconnected sockets bound to 0.0.0.0:PORT and picks each
 * datagram's source address with IP_PKTINFO, so 1,000,000 flows take 100 sockets, not 1,000,000.
 * IPv4 targets only (the loopback addresses are IPv4's).
 *
 * The request is grm-load's (20-byte header: magic, flow id, sequence, send time; padded to
 * --size); a reply is the request followed by " gen=N pid=P\n". Each thread sends its flows in
 * turn (one datagram per flow per sweep, a sendmmsg() batch per source port) at its share of
 * --rate (0: as fast as it can) and reads the replies to its own sockets. Per flow, only the
 * generation of its first reply is kept (4 bytes a flow): a later reply from another generation
 * makes the flow "moved". Lost: sent but never answered within --grace after the end.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
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

#include "grm-load-spread.h"
#include "macro.h"
#include "tools-util.h"

#define LOAD_MAGIC      0x47524d4cU     /* "GRML", as grm-load's */
#define HEADER_SIZE     20
#define SIZE_MIN        32
#define SIZE_MAX_SPREAD 1400
#define BATCH           64
#define THREADS_MAX     16
#define PORTS_MAX       1000
#define FLOWS_MAX       (16U << 20)
#define ADDR_BASE       0x7f010000U     /* 127.1.0.0 */
#define ADDRS_MAX       0x00fe0000U     /* up to 127.254.255.255 */
#define PORT_BASE       20000
#define SOCK_BUFFER     (8 << 20)
#define GENS_MAX        64

static struct sockaddr_in arg_target;
static const char *arg_target_string;
static uint64_t arg_flows = 1000000;
static double arg_rate = 0;
static uint64_t arg_duration_nsec = 10 * NSEC_PER_SEC;
static uint64_t arg_grace_nsec = NSEC_PER_SEC;
static unsigned arg_threads = 2;
static unsigned arg_ports = 50;
static size_t arg_size = 64;
static bool arg_json = false;

typedef struct Worker {
        unsigned index;
        pthread_t thread;
        int fds[PORTS_MAX];
        uint64_t first_flow, n_flows;   /* flow ids first_flow .. first_flow + n_flows - 1 */
        uint64_t n_addrs;               /* its flows: n_addrs addresses x arg_ports ports */
        uint64_t next;                  /* next flow (relative) to send */
        uint32_t seq;                   /* sweep number: the sequence of every datagram in it */
        uint64_t sent, answered, bad, send_errors;
} Worker;

static struct {
        Worker workers[THREADS_MAX];
        uint32_t *first_gen;            /* per flow: generation of its first reply + 1; 0: none, UINT32_MAX: moved */
        atomic_uint_fast64_t moved, flows_answered;
        atomic_bool stop_sending, stop;
        uint64_t start_nsec, stop_nsec;
        uint64_t gens[GENS_MAX];        /* generation numbers seen, in order of first reply */
        atomic_uint_fast64_t gen_replies[GENS_MAX];
        pthread_mutex_t gens_lock;
        unsigned n_gens;
} S = { .gens_lock = PTHREAD_MUTEX_INITIALIZER };

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static uint32_t get_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

/* The slot of generation gen in S.gens (added on first sight), or GENS_MAX if full. */
static unsigned gen_slot(uint64_t gen) {
        unsigned i;

        for (i = 0; i < __atomic_load_n(&S.n_gens, __ATOMIC_ACQUIRE); i++)
                if (S.gens[i] == gen)
                        return i;
        pthread_mutex_lock(&S.gens_lock);
        for (i = 0; i < S.n_gens; i++)
                if (S.gens[i] == gen)
                        break;
        if (i == S.n_gens && i < GENS_MAX) {
                S.gens[i] = gen;
                __atomic_store_n(&S.n_gens, i + 1, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&S.gens_lock);
        return i;
}

/* " gen=N pid=P\n" after the request: N in *ret_gen (0 from an echo server not under grm, as
 * in the throughput benchmark's plain SO_REUSEPORT setup). Returns false if the reply is not one. */
static bool reply_gen(const uint8_t *buf, size_t len, uint64_t *ret_gen) {
        const char *p = memmem(buf + HEADER_SIZE, len - HEADER_SIZE, " gen=", 5);
        uint64_t gen = 0;

        if (!p || p + 5 >= (const char *) buf + len || p[5] < '0' || p[5] > '9')
                return false;
        for (p += 5; p < (const char *) buf + len && *p >= '0' && *p <= '9' && gen <= UINT32_MAX; p++)
                gen = gen * 10 + (uint64_t) (*p - '0');
        *ret_gen = gen;
        return true;
}

static void worker_receive(Worker *w) {
        static __thread uint8_t bufs[BATCH][SIZE_MAX_SPREAD + 64];
        struct mmsghdr msgs[BATCH];
        struct iovec iovs[BATCH];

        for (unsigned i = 0; i < BATCH; i++) {
                iovs[i] = (struct iovec) { .iov_base = bufs[i], .iov_len = sizeof(bufs[i]) };
                msgs[i] = (struct mmsghdr) { .msg_hdr = { .msg_iov = &iovs[i], .msg_iovlen = 1 } };
        }
        for (unsigned p = 0; p < arg_ports; p++)
                for (;;) {
                        int n = recvmmsg(w->fds[p], msgs, BATCH, MSG_DONTWAIT, NULL);

                        if (n <= 0)
                                break;
                        for (int i = 0; i < n; i++) {
                                const uint8_t *b = bufs[i];
                                size_t len = msgs[i].msg_len;
                                uint64_t flow, gen;
                                uint32_t expected = 0;
                                unsigned slot;

                                if (len < HEADER_SIZE + 8 || get_be32(b) != LOAD_MAGIC ||
                                    (flow = get_be32(b + 4)) < w->first_flow || flow >= w->first_flow + w->n_flows ||
                                    !reply_gen(b, len, &gen) || gen >= UINT32_MAX - 1) {
                                        w->bad++;
                                        continue;
                                }
                                w->answered++;
                                slot = gen_slot(gen);
                                if (slot < GENS_MAX)
                                        atomic_fetch_add(&S.gen_replies[slot], 1);
                                /* Only this thread writes its flows' entries, which hold the
                                 * generation + 1 (0: no reply yet, UINT32_MAX: moved). */
                                if (__atomic_compare_exchange_n(&S.first_gen[flow], &expected, (uint32_t) gen + 1, false,
                                                                __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                                        atomic_fetch_add(&S.flows_answered, 1);
                                else if (expected != (uint32_t) gen + 1 && expected != UINT32_MAX) {
                                        /* moved: counted once per flow */
                                        __atomic_store_n(&S.first_gen[flow], UINT32_MAX, __ATOMIC_RELAXED);
                                        atomic_fetch_add(&S.moved, 1);
                                }
                        }
                        if (n < BATCH)
                                break;
                }
}

typedef union PktinfoControl {
        char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr a;
} PktinfoControl;

/* One sendmmsg() batch: up to BATCH flows of one source port, consecutive source addresses. */
static void worker_send_batch(Worker *w, uint8_t (*payloads)[SIZE_MAX_SPREAD], struct mmsghdr *msgs,
                              PktinfoControl *ctl) {
        uint64_t rel = w->next, port = rel / w->n_addrs, addr = rel % w->n_addrs;
        unsigned n = (unsigned) (w->n_addrs - addr < BATCH ? w->n_addrs - addr : BATCH), off = 0;

        if (n > w->n_flows - rel) /* the last worker's last port may be short */
                n = (unsigned) (w->n_flows - rel);
        uint64_t now = now_nsec();

        for (unsigned i = 0; i < n; i++) {
                struct in_pktinfo pi = { .ipi_spec_dst.s_addr = htonl(ADDR_BASE + (uint32_t) (addr + i)) };
                uint64_t flow = w->first_flow + port * w->n_addrs + addr + i;

                memcpy(CMSG_DATA(&ctl[i].a), &pi, sizeof(pi));
                put_be32(payloads[i] + 4, (uint32_t) flow);
                put_be32(payloads[i] + 8, w->seq);
                put_be32(payloads[i] + 12, (uint32_t) (now >> 32));
                put_be32(payloads[i] + 16, (uint32_t) now);
        }
        while (off < n) {
                int k = sendmmsg(w->fds[port], msgs + off, n - off, 0);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
                        worker_receive(w);
                        continue;
                }
                if (k < 0) {
                        w->send_errors += n - off;
                        break;
                }
                off += (unsigned) k;
        }
        w->sent += off;
        w->next += n;
        if (w->next >= w->n_flows) {
                w->next = 0;
                w->seq++;
        }
}

static void *worker_main(void *userdata) {
        Worker *w = userdata;
        static __thread uint8_t payloads[BATCH][SIZE_MAX_SPREAD];
        static __thread PktinfoControl ctl[BATCH];
        struct mmsghdr msgs[BATCH];
        struct iovec iovs[BATCH];
        double rate = arg_rate / arg_threads;
        uint64_t start = S.start_nsec;

        for (unsigned i = 0; i < BATCH; i++) {
                memset(payloads[i], 'x', arg_size);
                put_be32(payloads[i], LOAD_MAGIC);
                ctl[i].a.cmsg_level = IPPROTO_IP;
                ctl[i].a.cmsg_type = IP_PKTINFO;
                ctl[i].a.cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
                iovs[i] = (struct iovec) { .iov_base = payloads[i], .iov_len = arg_size };
                msgs[i] = (struct mmsghdr) {
                        .msg_hdr = {
                                .msg_name = &arg_target, .msg_namelen = sizeof(arg_target),
                                .msg_iov = &iovs[i], .msg_iovlen = 1,
                                .msg_control = ctl[i].buf, .msg_controllen = sizeof(ctl[i].buf),
                        },
                };
        }

        while (!atomic_load(&S.stop)) {
                if (!atomic_load(&S.stop_sending)) {
                        uint64_t due = rate > 0 ? (uint64_t) ((double) (now_nsec() - start) / 1e9 * rate) : UINT64_MAX;

                        if (w->sent < due)
                                worker_send_batch(w, payloads, msgs, ctl);
                        else
                                usleep(100);
                } else
                        usleep(1000);
                worker_receive(w);
        }
        worker_receive(w);
        return NULL;
}

static int help(void) {
        printf("Usage: grm-load --spread [OPTIONS] TARGET\n"
               "\n"
               "Many concurrent flows (source addresses across 127.0.0.0/8 times source ports)\n"
               "from several threads with sendmmsg(), to a grm-echo style service at TARGET\n"
               "(an IPv4 ADDR:PORT): sent, answered, lost, flows that moved between generations.\n"
               "\n"
               "  -f --flows N               concurrent flows (default 1000000, at most %u)\n"
               "  -r --rate PPS              datagrams per second in all (default 0: as fast as\n"
               "                             the threads can)\n"
               "  -d --duration SEC          how long to send (default 10)\n"
               "  -g --grace MS              wait for replies after the end (default 1000)\n"
               "  -t --threads N             sender threads (default 2, at most %u)\n"
               "     --ports-per-thread N    source ports (sockets) per thread (default 50)\n"
               "  -s --size BYTES            request size, %u..%u (default 64)\n"
               "     --json                  one JSON object\n"
               "\n"
               "Exit status: 0 nothing lost and no flow moved, 1 otherwise, 2 usage, 3 setup.\n",
               FLOWS_MAX, THREADS_MAX, SIZE_MIN, SIZE_MAX_SPREAD);
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        enum { A_SPREAD = 0x100, A_PORTS, A_JSON };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "spread", no_argument, NULL, A_SPREAD },
                { "flows", required_argument, NULL, 'f' },
                { "rate", required_argument, NULL, 'r' },
                { "duration", required_argument, NULL, 'd' },
                { "grace", required_argument, NULL, 'g' },
                { "threads", required_argument, NULL, 't' },
                { "ports-per-thread", required_argument, NULL, A_PORTS },
                { "size", required_argument, NULL, 's' },
                { "json", no_argument, NULL, A_JSON },
                {}
        };
        uint64_t u;
        int c;

        while ((c = getopt_long(argc, argv, "hf:r:d:g:t:s:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return help();
                case A_SPREAD:
                        break;
                case 'f':
                        if (parse_u64_range(optarg, 1, FLOWS_MAX, &arg_flows) < 0)
                                goto bad;
                        break;
                case 'r':
                        if (streq(optarg, "0"))
                                arg_rate = 0;
                        else if (parse_positive_double(optarg, 1e8, &arg_rate) < 0)
                                goto bad;
                        break;
                case 'd':
                        if (parse_seconds(optarg, 86400, &arg_duration_nsec) < 0 || arg_duration_nsec == 0)
                                goto bad;
                        break;
                case 'g':
                        if (parse_u64_range(optarg, 0, 600000, &u) < 0)
                                goto bad;
                        arg_grace_nsec = u * (NSEC_PER_SEC / 1000);
                        break;
                case 't':
                        if (parse_u64_range(optarg, 1, THREADS_MAX, &u) < 0)
                                goto bad;
                        arg_threads = (unsigned) u;
                        break;
                case A_PORTS:
                        if (parse_u64_range(optarg, 1, PORTS_MAX, &u) < 0)
                                goto bad;
                        arg_ports = (unsigned) u;
                        break;
                case 's':
                        if (parse_u64_range(optarg, SIZE_MIN, SIZE_MAX_SPREAD, &u) < 0)
                                goto bad;
                        arg_size = (size_t) u;
                        break;
                case A_JSON:
                        arg_json = true;
                        break;
                default:
                        fprintf(stderr, "grm-load --spread: bad option; see --spread --help\n");
                        return -EINVAL;
                }
        if (optind + 1 != argc) {
                fprintf(stderr, "grm-load --spread: expected one TARGET (IPv4 ADDR:PORT)\n");
                return -EINVAL;
        }
        arg_target_string = argv[optind];
        {
                struct sockaddr_storage ss;
                socklen_t len;

                if (resolve_udp_address(arg_target_string, false, false, &ss, &len, NULL) < 0 || ss.ss_family != AF_INET) {
                        fprintf(stderr, "grm-load --spread: TARGET must be an IPv4 ADDR:PORT, got '%s'\n",
                                arg_target_string);
                        return -EINVAL;
                }
                memcpy(&arg_target, &ss, sizeof(arg_target));
        }
        if ((uint64_t) arg_threads * arg_ports > 65535 - PORT_BASE) {
                fprintf(stderr, "grm-load --spread: too many source ports\n");
                return -EINVAL;
        }
        return 1;
bad:
        fprintf(stderr, "grm-load --spread: bad value '%s' for %s\n", optarg, argv[optind - 1]);
        return -EINVAL;
}

static int setup(void) {
        uint64_t per_thread = (arg_flows + arg_threads - 1) / arg_threads, flow = 0;

        S.first_gen = calloc(arg_flows, sizeof(uint32_t));
        if (!S.first_gen)
                return -ENOMEM;
        for (unsigned t = 0; t < arg_threads; t++) {
                Worker *w = &S.workers[t];

                w->index = t;
                w->first_flow = flow;
                w->n_addrs = (per_thread + arg_ports - 1) / arg_ports;
                if (w->n_addrs > ADDRS_MAX)
                        return -E2BIG;
                w->n_flows = w->n_addrs * arg_ports;
                if (w->first_flow + w->n_flows > arg_flows)
                        w->n_flows = arg_flows > w->first_flow ? arg_flows - w->first_flow : 0;
                flow += w->n_flows;
                for (unsigned p = 0; p < arg_ports; p++) {
                        struct sockaddr_in sa = { .sin_family = AF_INET,
                                                  .sin_port = htons((uint16_t) (PORT_BASE + t * arg_ports + p)) };
                        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

                        if (fd < 0)
                                return -errno;
                        w->fds[p] = fd;
                        (void) socket_set_buffer(fd, SO_RCVBUF, SOCK_BUFFER);
                        (void) socket_set_buffer(fd, SO_SNDBUF, SOCK_BUFFER);
                        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                                return -errno;
                }
        }
        return 0;
}

int load_spread_main(int argc, char *argv[]) {
        uint64_t sent = 0, answered = 0, bad = 0, send_errors = 0, end;
        double seconds, rate;
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        r = setup();
        if (r < 0) {
                errno = -r;
                fprintf(stderr, "grm-load --spread: setup failed: %m\n");
                return 3;
        }
        S.start_nsec = now_nsec();
        for (unsigned t = 0; t < arg_threads; t++)
                if (S.workers[t].n_flows > 0 &&
                    pthread_create(&S.workers[t].thread, NULL, worker_main, &S.workers[t]) != 0) {
                        fprintf(stderr, "grm-load --spread: pthread_create failed\n");
                        return 3;
                }
        end = S.start_nsec + arg_duration_nsec;
        while (now_nsec() < end)
                usleep(10000);
        atomic_store(&S.stop_sending, true);
        S.stop_nsec = now_nsec();
        usleep((useconds_t) (arg_grace_nsec / 1000));
        atomic_store(&S.stop, true);
        for (unsigned t = 0; t < arg_threads; t++)
                if (S.workers[t].n_flows > 0)
                        pthread_join(S.workers[t].thread, NULL);

        for (unsigned t = 0; t < arg_threads; t++) {
                sent += S.workers[t].sent;
                answered += S.workers[t].answered;
                bad += S.workers[t].bad;
                send_errors += S.workers[t].send_errors;
        }
        seconds = (double) (S.stop_nsec - S.start_nsec) / 1e9;
        rate = (double) sent / seconds;
        if (arg_json) {
                printf("{\"target\":\"%s\",\"flows\":%" PRIu64 ",\"threads\":%u,\"sent\":%" PRIu64 ",\"answered\":%" PRIu64
                       ",\"lost\":%" PRIu64 ",\"flows_answered\":%" PRIu64 ",\"moved\":%" PRIu64 ",\"bad_replies\":%" PRIu64
                       ",\"send_errors\":%" PRIu64 ",\"rate_pps\":%.1f,\"duration_sec\":%.3f,\"generations\":[",
                       arg_target_string, arg_flows, arg_threads, sent, answered, sent > answered ? sent - answered : 0,
                       (uint64_t) atomic_load(&S.flows_answered), (uint64_t) atomic_load(&S.moved), bad, send_errors,
                       rate, seconds);
                for (unsigned i = 0; i < S.n_gens; i++)
                        printf("%s{\"generation\":%" PRIu64 ",\"replies\":%" PRIu64 "}", i ? "," : "", S.gens[i],
                               (uint64_t) atomic_load(&S.gen_replies[i]));
                printf("]}\n");
        } else {
                printf("grm-load --spread: %s: %" PRIu64 " flows, %u threads, %.1f s\n", arg_target_string, arg_flows,
                       arg_threads, seconds);
                printf("  sent %" PRIu64 " (%.0f pps), answered %" PRIu64 ", lost %" PRIu64 ", bad replies %" PRIu64
                       ", send errors %" PRIu64 "\n", sent, rate, answered, sent > answered ? sent - answered : 0, bad,
                       send_errors);
                printf("  flows answered %" PRIu64 ", moved %" PRIu64 "\n", (uint64_t) atomic_load(&S.flows_answered),
                       (uint64_t) atomic_load(&S.moved));
                for (unsigned i = 0; i < S.n_gens; i++)
                        printf("  generation %" PRIu64 ": %" PRIu64 " replies\n", S.gens[i],
                               (uint64_t) atomic_load(&S.gen_replies[i]));
        }
        return sent > 0 && answered == sent && atomic_load(&S.moved) == 0 && bad == 0 ? 0 : 1;
}
