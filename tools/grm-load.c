/* SPDX-License-Identifier: MIT */
/*
 * grm-load: drives UDP traffic at a grm service (normally grm-echo) through restarts and
 * reports what a restart cost: lost packets, flows that moved between generations, new flows
 * that still landed on an old generation, latency. With --tcp, grm-load-tcp.c drives TCP
 * connections instead.
 *
 * Owns: the flows (one connect()ed, non-blocking UDP socket each, so one source port each),
 * the pacing timer, one epoll loop for sending and receiving, and the accounting.
 *
 * A request is a 20 byte header (network byte order: magic 0x47524d4c, flow id, sequence,
 * CLOCK_MONOTONIC send time in ns) padded to --size with a fixed pattern. A reply must be that
 * payload (truncated only if it would not fit in 65507 bytes with the trailer) followed by
 * " gen=<N> pid=<P>\n"; anything else is a bad reply and is counted, never trusted.
 *
 * Invariants: flow ids are never reused; a flow's socket is closed only from the tick, never
 * while epoll events that may point at it are being handled; a retired flow lingers (stops
 * sending, keeps receiving) for min(--grace, --flow-lifetime) so that replies in flight are not
 * counted as lost; sent == answered + lost at the end.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "grm-load-spread.h"
#include "grm-load-tcp.h"
#include "macro.h"
#include "tools-util.h"

#define LOAD_MAGIC 0x47524d4cU       /* "GRML" */
#define HEADER_SIZE 20
#define SIZE_MIN 32
#define REPLY_MAX 65507              /* largest payload of an IPv4 UDP datagram */
#define RECV_BUF_SIZE 65536
#define RECV_BATCH 16
#define FLOWS_MAX 20000
#define FLOW_BUFFER_BYTES (256 * 1024)
#define TICK_MIN_NSEC (200 * NSEC_PER_USEC)
#define TICK_MAX_NSEC (10 * NSEC_PER_SEC / 1000)
#define MAX_LAG_NSEC (50 * NSEC_PER_SEC / 1000) /* a stalled sender drops its debt beyond this */
#define MAX_BURST 1024               /* requests sent per tick at most */
#define GENERATIONS_MAX 4096
#define PIDS_MAX 64
#define FD_SPARE 8               /* fds besides the flows: timerfd, signalfd, libc */

enum {
        EXIT_OK = 0,
        EXIT_DEGRADED = 1,
        EXIT_USAGE = 2,
        EXIT_SETUP = 3,
};

/* Latency histogram: exact below 128 us, then 64 buckets per power of two (< 1.6% error). */
#define HIST_LINEAR 128
#define HIST_SUB 64
#define HIST_BUCKETS (HIST_LINEAR + (63 - 7 + 1) * HIST_SUB)

typedef struct Flow Flow;
struct Flow {
        int fd;
        uint32_t id;
        uint32_t slot;               /* index in Load.slots while active */
        bool lingering;              /* retired: no longer sends, still receives */
        bool has_gen;
        bool moved;
        uint32_t next_seq;           /* == packets sent */
        uint32_t n_answered;         /* unique replies */
        uint64_t first_send_nsec;
        uint64_t expire_nsec;        /* active: when it retires; lingering: when it closes */
        uint64_t first_gen;          /* generation of the first reply, if has_gen */
        uint64_t *seen;              /* bitmap of answered sequence numbers */
        size_t n_seen_words;
        Flow *prev, *next;           /* linger queue (ordered by expire_nsec) or closing list */
};

typedef struct FlowList {
        Flow *head, *tail;
} FlowList;

typedef struct Generation {
        uint64_t number;
        uint64_t pids[PIDS_MAX];
        size_t n_pids;
        bool pids_truncated;
        uint64_t new_flows;          /* flows whose first reply came from here */
        uint64_t replies;
        uint64_t first_flow_reply_nsec; /* first time it answered a flow's first reply; 0: never */
} Generation;

typedef enum Phase {
        PHASE_SENDING,
        PHASE_GRACE,
        PHASE_DONE,
} Phase;

typedef struct Load {
        struct sockaddr_storage target;
        socklen_t target_len;

        int epoll_fd;
        int timer_fd;
        int signal_fd;

        Flow **slots;                /* the active flow of each of the --flows slots, or NULL */
        uint32_t *expiry_ring;       /* slots in order of expiry (only with --flow-lifetime) */
        size_t ring_head, ring_len;
        size_t rr;                   /* next slot to send on */
        FlowList lingering;
        FlowList closing;
        size_t n_open;               /* open flow sockets */
        size_t max_open_flows;       /* what RLIMIT_NOFILE allows */
        uint32_t next_flow_id;
        uint32_t next_port;          /* --ports: next source port to try */
        bool ports_wrapped;          /* --ports: the range was used up and started over */
        uint64_t linger_nsec;

        Phase phase;
        bool interrupted;
        uint64_t start_nsec;
        uint64_t end_nsec;           /* planned end of sending */
        uint64_t stop_nsec;          /* actual end of sending */
        uint64_t grace_end_nsec;
        uint64_t scheduled;          /* packets the pacing asked for so far */
        uint64_t last_progress_nsec;
        bool progress;

        uint8_t *payload;            /* request template: header is rewritten per packet */
        uint8_t *recv_bufs;
        struct mmsghdr msgs[RECV_BATCH];
        struct iovec iovs[RECV_BATCH];

        Generation *gens;
        size_t n_gens;

        uint64_t sent;
        uint64_t answered;
        uint64_t duplicates;
        uint64_t bad_replies;
        uint64_t lost_closed;        /* unanswered packets of flows already closed */
        uint64_t flows;              /* flows that sent at least one packet */
        uint64_t moved;
        uint64_t new_flows_on_old_generation;
        uint64_t expect_violations;
        uint64_t send_errors;
        uint64_t refused;            /* ICMP port unreachable reported on a flow socket */
        uint64_t flow_errors;        /* replacement flows that could not be opened */
        uint64_t evicted;            /* lingering flows closed early to make room */
        uint64_t latency_max_usec;
        uint64_t latency_hist[HIST_BUCKETS];
} Load;

static char *arg_target = NULL;
static uint32_t arg_flows = 100;
static double arg_rate = 1000;
static uint64_t arg_duration_nsec = 5 * NSEC_PER_SEC;
static uint64_t arg_lifetime_nsec = 0;
static size_t arg_size = 64;
static uint64_t arg_grace_nsec = NSEC_PER_SEC;
static bool arg_expect = false;
static uint64_t arg_expect_generation = 0;
static bool arg_json = false;
static uint32_t arg_port_first = 0, arg_port_last = 0; /* --ports; 0: the kernel picks */
static bool arg_quiet = false;

static void flow_list_append(FlowList *l, Flow *f) {
        f->next = NULL;
        f->prev = l->tail;
        if (l->tail)
                l->tail->next = f;
        else
                l->head = f;
        l->tail = f;
}

static void flow_list_remove(FlowList *l, Flow *f) {
        if (f->prev)
                f->prev->next = f->next;
        else
                l->head = f->next;
        if (f->next)
                f->next->prev = f->prev;
        else
                l->tail = f->prev;
        f->prev = f->next = NULL;
}

static void flow_free(Flow *f) {
        if (!f)
                return;
        safe_close(f->fd);
        free(f->seen);
        free(f);
}

static void load_free(Load *l) {
        if (!l)
                return;
        if (l->slots)
                for (size_t i = 0; i < arg_flows; i++)
                        flow_free(l->slots[i]);
        for (FlowList *list = &l->lingering; list; list = list == &l->lingering ? &l->closing : NULL)
                while (list->head) {
                        Flow *f = list->head;

                        flow_list_remove(list, f);
                        flow_free(f);
                }
        free(l->slots);
        free(l->expiry_ring);
        free(l->payload);
        free(l->recv_bufs);
        free(l->gens);
        safe_close(l->epoll_fd);
        safe_close(l->timer_fd);
        safe_close(l->signal_fd);
        free(l);
}

static void load_freep(Load **l) {
        load_free(*l);
}

static int log_error(int r, const char *fmt, ...) _printf_(2, 3);
static int log_error(int r, const char *fmt, ...) {
        va_list ap;

        fputs("grm-load: ", stderr);
        errno = r < 0 ? -r : r;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return r;
}

static int help(void) {
        printf("Usage: %s [OPTIONS] TARGET\n"
               "\n"
               "Sends UDP traffic to TARGET (ADDR:PORT, or [ADDR]:PORT for IPv6) over many flows\n"
               "(one socket and source port each) and checks the replies of a grm-echo style\n"
               "service (payload + \" gen=N pid=P\\n\"): lost packets, flows that moved between\n"
               "generations, new flows that landed on an old generation, latency. SIGINT stops\n"
               "sending early; the report is still printed.\n"
               "\n"
               "Options:\n"
               "  -h --help                  Show this help and exit\n"
               "     --version               Show the version and exit\n"
               "  -f --flows N               Concurrent flows, 1..%u (default 100)\n"
               "  -r --rate PPS              Packets per second over all flows (default 1000)\n"
               "  -d --duration SEC          How long to send (default 5, fractions allowed)\n"
               "  -l --flow-lifetime SEC     Replace each flow by a new one (new socket, new\n"
               "                             source port) after SEC seconds; 0 = flows live for\n"
               "                             the whole run (default 0)\n"
               "  -s --size BYTES            Request payload size, %u..%u (default 64)\n"
               "  -g --grace MS              Wait up to MS milliseconds for replies after the\n"
               "                             last request (default 1000)\n"
               "     --expect-generation N   Every flow's first reply must come from generation N\n"
               "     --ports FIRST-LAST      Bind each new flow to the next source port of this\n"
               "                             range, so no two flows of the run share a source\n"
               "                             port (a reused port is the same flow to a server\n"
               "                             that tracks flows); wraps around when exhausted\n"
               "     --json                  Print the report as one JSON object\n"
               "  -q --quiet                 Print no human report (--json is still printed)\n"
               "     --tcp                   TCP mode: new connections per second and long-lived\n"
               "                             connections (see grm-load --tcp --help)\n"
               "     --spread                Many-flows mode: up to 16,777,216 concurrent flows from\n"
               "                             source addresses across 127.0.0.0/8, several threads\n"
               "                             with sendmmsg() (see grm-load --spread --help)\n"
               "\n"
               "Exit status:\n"
               "  0  run completed: nothing lost, no flow moved, no new flow on an old generation,\n"
               "     no --expect-generation violation, no bad reply\n"
               "  1  run completed, but one of those counters is not zero (or nothing was sent)\n"
               "  2  usage error\n"
               "  3  setup error (cannot resolve TARGET, create or connect sockets, ...)\n",
               program_invocation_short_name, FLOWS_MAX, SIZE_MIN, REPLY_MAX);
        return 0;
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("grm-load: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EINVAL;
}

/* Returns > 0 to run, 0 to exit successfully (--help, --version), < 0 on usage error. */
static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_EXPECT_GENERATION,
                ARG_JSON,
                ARG_PORTS,
        };
        static const struct option options[] = {
                { "help",              no_argument,       NULL, 'h'                   },
                { "version",           no_argument,       NULL, ARG_VERSION           },
                { "flows",             required_argument, NULL, 'f'                   },
                { "rate",              required_argument, NULL, 'r'                   },
                { "duration",          required_argument, NULL, 'd'                   },
                { "flow-lifetime",     required_argument, NULL, 'l'                   },
                { "size",              required_argument, NULL, 's'                   },
                { "grace",             required_argument, NULL, 'g'                   },
                { "expect-generation", required_argument, NULL, ARG_EXPECT_GENERATION },
                { "json",              no_argument,       NULL, ARG_JSON              },
                { "quiet",             no_argument,       NULL, 'q'                   },
                { "ports",             required_argument, NULL, ARG_PORTS             },
                {}
        };
        uint64_t u;
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hf:r:d:l:s:g:q", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return help();
                case ARG_VERSION:
                        printf("grm-load %s\n", GRM_VERSION);
                        return 0;
                case 'f':
                        if (parse_u64_range(optarg, 1, FLOWS_MAX, &u) < 0)
                                return usage_error("--flows: expected 1..%u, got '%s'", FLOWS_MAX, optarg);
                        arg_flows = (uint32_t) u;
                        break;
                case 'r':
                        if (parse_positive_double(optarg, 1e7, &arg_rate) < 0)
                                return usage_error("--rate: expected packets per second > 0 and <= 10000000, got '%s'",
                                                   optarg);
                        break;
                case 'd':
                        if (parse_seconds(optarg, 86400 * 7, &arg_duration_nsec) < 0 || arg_duration_nsec == 0)
                                return usage_error("--duration: expected seconds > 0 and <= 604800, got '%s'", optarg);
                        break;
                case 'l':
                        if (parse_seconds(optarg, 86400 * 7, &arg_lifetime_nsec) < 0)
                                return usage_error("--flow-lifetime: expected seconds >= 0, got '%s'", optarg);
                        if (arg_lifetime_nsec > 0 && arg_lifetime_nsec < NSEC_PER_SEC / 1000)
                                return usage_error("--flow-lifetime: must be 0 or at least 0.001 s, got '%s'", optarg);
                        break;
                case 's':
                        if (parse_u64_range(optarg, SIZE_MIN, REPLY_MAX, &u) < 0)
                                return usage_error("--size: expected %u..%u bytes, got '%s'", SIZE_MIN, REPLY_MAX,
                                                   optarg);
                        arg_size = (size_t) u;
                        break;
                case 'g':
                        if (parse_u64_range(optarg, 0, 600000, &u) < 0)
                                return usage_error("--grace: expected 0..600000 milliseconds, got '%s'", optarg);
                        arg_grace_nsec = u * (NSEC_PER_SEC / 1000);
                        break;
                case ARG_EXPECT_GENERATION:
                        if (parse_u64_range(optarg, 0, UINT64_MAX, &arg_expect_generation) < 0)
                                return usage_error("--expect-generation: expected a generation number, got '%s'",
                                                   optarg);
                        arg_expect = true;
                        break;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case ARG_PORTS: {
                        uint64_t first, last;
                        char *dash = strchr(optarg, '-');
                        if (!dash)
                                return usage_error("--ports: expected FIRST-LAST, got '%s'", optarg);
                        *dash = 0;
                        if (parse_u64_range(optarg, 1, 65535, &first) < 0 ||
                            parse_u64_range(dash + 1, 1, 65535, &last) < 0 || last < first)
                                return usage_error("--ports: expected FIRST-LAST within 1..65535");
                        arg_port_first = (uint32_t) first;
                        arg_port_last = (uint32_t) last;
                        break;
                }
                case 'q':
                        arg_quiet = true;
                        break;
                case ':':
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                case '?':
                        if (optopt)
                                return usage_error("unknown option '-%c'", optopt);
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                default:
                        return usage_error("unexpected option");
                }

        if (optind >= argc)
                return usage_error("missing TARGET (ADDR:PORT or [ADDR]:PORT); see --help");
        if (optind + 1 < argc)
                return usage_error("unexpected argument '%s'", argv[optind + 1]);
        arg_target = argv[optind];
        return 1;
}

/* Open file descriptors right now (stdio and whatever we inherited), or -errno. */
static int count_open_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        int n = 0;

        if (!d)
                return negative_errno();
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1; /* the directory's own fd */
}

/*
 * Makes room for one socket per flow, plus as many lingering retired flows as possible: raises
 * the soft RLIMIT_NOFILE (and the hard one, if privileged) and sets l->max_open_flows.
 */
static int load_raise_fd_limit(Load *l) {
        struct rlimit rl;
        rlim_t base, need_min, need;
        int n;

        n = count_open_fds();
        /* The timerfd and signalfd are opened later; keep a few spare for libc. */
        base = (rlim_t) (n > 0 ? n : 8) + FD_SPARE;
        need_min = base + arg_flows;
        need = need_min + (arg_lifetime_nsec > 0 ? arg_flows : 0);

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return log_error(negative_errno(), "getrlimit(RLIMIT_NOFILE): %m");
        if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
                ;
        else if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) {
                rl.rlim_cur = need;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        return log_error(negative_errno(), "cannot raise the open files limit to %llu: %m",
                                         (unsigned long long) need);
        } else if (setrlimit(RLIMIT_NOFILE, &(struct rlimit) { need, need }) >= 0)
                rl.rlim_cur = rl.rlim_max = need; /* privileged: the hard limit could be raised */
        else {
                if (rl.rlim_max < need_min)
                        return log_error(-EMFILE,
                                         "%u flows need %llu file descriptors, but the hard limit is %llu "
                                         "(ulimit -Hn; at most %llu flows fit)",
                                         arg_flows, (unsigned long long) need_min,
                                         (unsigned long long) rl.rlim_max,
                                         (unsigned long long) (rl.rlim_max > base ? rl.rlim_max - base : 0));
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        return log_error(negative_errno(), "cannot raise the open files limit to %llu: %m",
                                         (unsigned long long) rl.rlim_max);
        }

        l->max_open_flows = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur - base > SIZE_MAX
                                    ? SIZE_MAX
                                    : (size_t) (rl.rlim_cur - base);
        return 0;
}

static int load_new(Load **ret) {
        _cleanup_(load_freep) Load *l = NULL;

        l = calloc(1, sizeof(Load));
        if (!l)
                return -ENOMEM;
        l->epoll_fd = l->timer_fd = l->signal_fd = -EBADF;

        l->slots = calloc(arg_flows, sizeof(Flow *));
        l->payload = malloc(arg_size);
        l->recv_bufs = malloc((size_t) RECV_BATCH * RECV_BUF_SIZE);
        l->gens = calloc(GENERATIONS_MAX, sizeof(Generation));
        if (!l->slots || !l->payload || !l->recv_bufs || !l->gens)
                return -ENOMEM;
        if (arg_lifetime_nsec > 0) {
                l->expiry_ring = calloc(arg_flows, sizeof(uint32_t));
                if (!l->expiry_ring)
                        return -ENOMEM;
        }

        /* Padding that never contains ' ', so " gen=" can only be found in the trailer. */
        for (size_t i = HEADER_SIZE; i < arg_size; i++)
                l->payload[i] = (uint8_t) ('a' + i % 26);

        l->linger_nsec = arg_grace_nsec < arg_lifetime_nsec ? arg_grace_nsec : arg_lifetime_nsec;

        l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epoll_fd < 0)
                return negative_errno();

        *ret = TAKE_PTR(l);
        return 0;
}

/* --ports: binds fd to the next free source port of the range (wildcard address). */
static int flow_bind_port(Load *l, int fd) {
        uint32_t n = arg_port_last - arg_port_first + 1;

        for (uint32_t tries = 0; tries < n; tries++) {
                struct sockaddr_storage sa = { .ss_family = l->target.ss_family };
                socklen_t len;
                uint16_t port;

                if (l->next_port < arg_port_first || l->next_port > arg_port_last) {
                        if (l->next_port > arg_port_last)
                                l->ports_wrapped = true;
                        l->next_port = arg_port_first;
                }
                port = htons((uint16_t) l->next_port++);
                if (sa.ss_family == AF_INET6) {
                        ((struct sockaddr_in6 *) &sa)->sin6_port = port;
                        len = sizeof(struct sockaddr_in6);
                } else {
                        ((struct sockaddr_in *) &sa)->sin_port = port;
                        len = sizeof(struct sockaddr_in);
                }
                if (bind(fd, (struct sockaddr *) &sa, len) == 0)
                        return 0;
                if (errno != EADDRINUSE)
                        return negative_errno();
        }
        return -EADDRINUSE;
}

/* Opens a new flow (socket connected to the target) for slot. Does not log. */
static int flow_open(Load *l, uint32_t slot, uint64_t now, Flow **ret) {
        _cleanup_close_ int fd = -EBADF;
        Flow *f;

        if (l->next_flow_id == UINT32_MAX)
                return -ERANGE;

        fd = socket(l->target.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_UDP);
        if (fd < 0)
                return negative_errno();
        (void) socket_set_buffer(fd, SO_RCVBUF, FLOW_BUFFER_BYTES);
        (void) socket_set_buffer(fd, SO_SNDBUF, FLOW_BUFFER_BYTES);
        if (arg_port_first > 0) {
                int r = flow_bind_port(l, fd);
                if (r < 0)
                        return r;
        }
        if (connect(fd, (struct sockaddr *) &l->target, l->target_len) < 0)
                return negative_errno();

        f = calloc(1, sizeof(Flow));
        if (!f)
                return -ENOMEM;
        f->fd = fd;
        f->id = l->next_flow_id;
        f->slot = slot;
        f->expire_nsec = arg_lifetime_nsec > 0 ? now + arg_lifetime_nsec : UINT64_MAX;

        if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd,
                      &(struct epoll_event) { .events = EPOLLIN, .data.ptr = f }) < 0) {
                int r = negative_errno();

                f->fd = -EBADF;
                free(f);
                return r;
        }

        TAKE_FD(fd);
        l->next_flow_id++;
        l->n_open++;
        *ret = f;
        return 0;
}

static void load_close_flow(Load *l, Flow *f) {
        l->lost_closed += f->next_seq - f->n_answered;
        l->n_open--;
        flow_free(f);
}

/* Errors of socket()/connect() that mean "too many sockets", not "the target is wrong". */
#define IN_SET_RESOURCE(r) ((r) == -EMFILE || (r) == -ENFILE || (r) == -EADDRINUSE || \
                            (r) == -EADDRNOTAVAIL || (r) == -EAGAIN || (r) == -ENOBUFS)

/* Closes the oldest lingering flow early (its missing replies count as lost). */
static bool load_evict_lingering(Load *l) {
        Flow *f = l->closing.head ? l->closing.head : l->lingering.head;

        if (!f)
                return false;
        flow_list_remove(l->closing.head ? &l->closing : &l->lingering, f);
        if (f->n_answered != f->next_seq)
                l->evicted++;
        load_close_flow(l, f);
        return true;
}

/* Retires the active flow of slot: it lingers for replies in flight, a new flow takes over. */
static void load_retire_slot(Load *l, uint32_t slot, uint64_t now) {
        Flow *f = l->slots[slot], *n = NULL;
        int r;

        l->slots[slot] = NULL;
        if (f) {
                if (f->next_seq == f->n_answered)
                        load_close_flow(l, f); /* nothing in flight */
                else {
                        f->lingering = true;
                        f->expire_nsec = now + l->linger_nsec;
                        flow_list_append(&l->lingering, f);
                }
        }

        /* Out of file descriptors or source ports: the oldest lingering flow makes room. */
        if (l->n_open >= l->max_open_flows)
                load_evict_lingering(l);
        r = flow_open(l, slot, now, &n);
        if (IN_SET_RESOURCE(r) && load_evict_lingering(l))
                r = flow_open(l, slot, now, &n);
        if (r < 0) {
                l->flow_errors++; /* the slot stays empty and is retried when its turn comes */
                return;
        }
        l->slots[slot] = n;
}

static int load_setup(Load *l) {
        sigset_t mask;
        int gai = 0, r;
        uint64_t now, tick;

        r = resolve_udp_address(arg_target, false, false, &l->target, &l->target_len, &gai);
        if (r == -EINVAL) {
                usage_error("TARGET: expected ADDR:PORT or [ADDR]:PORT with port 1..65535, got '%s'", arg_target);
                return EXIT_USAGE;
        }
        if (r < 0) {
                log_error(r, "cannot resolve '%s': %s", arg_target, gai_strerror(gai));
                return EXIT_SETUP;
        }

        if (load_raise_fd_limit(l) < 0)
                return EXIT_SETUP;

        now = now_nsec();
        for (uint32_t i = 0; i < arg_flows; i++) {
                r = flow_open(l, i, now, &l->slots[i]);
                if (r < 0) {
                        char buf[SOCKADDR_STR_MAX];

                        log_error(r, "cannot open flow %u of %u to %s: %m", i + 1, arg_flows,
                                  format_sockaddr((struct sockaddr *) &l->target, buf, sizeof(buf)));
                        return EXIT_SETUP;
                }
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        /* A shell starts background jobs with SIGINT ignored: restore it so it still ends the run. */
        (void) signal(SIGINT, SIG_DFL);
        (void) signal(SIGTERM, SIG_DFL);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                log_error(negative_errno(), "sigprocmask(): %m");
                return EXIT_SETUP;
        }
        l->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (l->signal_fd < 0 ||
            epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->signal_fd,
                      &(struct epoll_event) { .events = EPOLLIN, .data.ptr = &l->signal_fd }) < 0) {
                log_error(negative_errno(), "cannot set up signal handling: %m");
                return EXIT_SETUP;
        }

        /* Tick often enough to spread sends evenly, but not so often the tick itself costs. */
        tick = (uint64_t) ((double) NSEC_PER_SEC / arg_rate);
        if (tick < TICK_MIN_NSEC)
                tick = TICK_MIN_NSEC;
        if (tick > TICK_MAX_NSEC)
                tick = TICK_MAX_NSEC;
        l->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (l->timer_fd < 0 ||
            timerfd_settime(l->timer_fd, 0, &(struct itimerspec) {
                                .it_value = { .tv_sec = 0, .tv_nsec = (long) tick },
                                .it_interval = { .tv_sec = (time_t) (tick / NSEC_PER_SEC),
                                                 .tv_nsec = (long) (tick % NSEC_PER_SEC) },
                        }, NULL) < 0 ||
            epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->timer_fd,
                      &(struct epoll_event) { .events = EPOLLIN, .data.ptr = &l->timer_fd }) < 0) {
                log_error(negative_errno(), "cannot set up the pacing timer: %m");
                return EXIT_SETUP;
        }

        l->start_nsec = now_nsec();
        l->end_nsec = l->start_nsec + arg_duration_nsec;
        l->last_progress_nsec = l->start_nsec;
        l->progress = !arg_quiet && isatty(STDERR_FILENO);

        /* Stagger the first lifetimes uniformly over (0, lifetime], so replacements spread out. */
        if (arg_lifetime_nsec > 0)
                for (uint32_t i = 0; i < arg_flows; i++) {
                        l->slots[i]->expire_nsec = l->start_nsec + arg_lifetime_nsec * (i + 1) / arg_flows;
                        l->expiry_ring[i] = i;
                }
        l->ring_len = arg_lifetime_nsec > 0 ? arg_flows : 0;
        return EXIT_OK;
}

static int flow_reserve_seq(Flow *f, uint32_t seq) {
        size_t need = seq / 64 + 1;

        if (need <= f->n_seen_words)
                return 0;

        size_t n = f->n_seen_words > 0 ? f->n_seen_words * 2 : 2;
        if (n < need)
                n = need;
        uint64_t *s = realloc(f->seen, n * sizeof(uint64_t));
        if (!s)
                return -ENOMEM;
        memset(s + f->n_seen_words, 0, (n - f->n_seen_words) * sizeof(uint64_t));
        f->seen = s;
        f->n_seen_words = n;
        return 0;
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static uint32_t get_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static void put_be64(uint8_t *p, uint64_t v) {
        put_be32(p, (uint32_t) (v >> 32));
        put_be32(p + 4, (uint32_t) v);
}

static uint64_t get_be64(const uint8_t *p) {
        return (uint64_t) get_be32(p) << 32 | get_be32(p + 4);
}

static void flow_send(Load *l, Flow *f) {
        uint64_t ts;
        ssize_t n;

        if (f->next_seq == UINT32_MAX || flow_reserve_seq(f, f->next_seq) < 0) {
                l->send_errors++;
                return;
        }

        ts = now_nsec();
        put_be32(l->payload, LOAD_MAGIC);
        put_be32(l->payload + 4, f->id);
        put_be32(l->payload + 8, f->next_seq);
        put_be64(l->payload + 12, ts);

        n = send(f->fd, l->payload, arg_size, MSG_DONTWAIT);
        if (n < 0 && errno == ECONNREFUSED) {
                /* An earlier request drew an ICMP error; it was reported, not this one: retry. */
                l->refused++;
                n = send(f->fd, l->payload, arg_size, MSG_DONTWAIT);
        }
        if (n != (ssize_t) arg_size) {
                l->send_errors++;
                return;
        }

        if (f->next_seq == 0) {
                f->first_send_nsec = ts;
                l->flows++;
        }
        f->next_seq++;
        l->sent++;
}

/* Sends what the pacing says is due by now, round-robin over the slots. */
static void load_send_due(Load *l, uint64_t now) {
        uint64_t t = now < l->end_nsec ? now : l->end_nsec;
        uint64_t due = (uint64_t) ((double) (t - l->start_nsec) * arg_rate / (double) NSEC_PER_SEC);
        uint64_t max_lag = (uint64_t) (arg_rate * (double) MAX_LAG_NSEC / (double) NSEC_PER_SEC) + 1;

        if (due > l->scheduled + max_lag)
                l->scheduled = due - max_lag; /* we were stalled: do not burst to catch up */

        /* Bounded per tick, so that replies are read between bursts even when overloaded. */
        if (due > l->scheduled + MAX_BURST)
                due = l->scheduled + MAX_BURST;

        while (l->scheduled < due) {
                uint32_t slot = (uint32_t) l->rr;

                l->rr = (l->rr + 1) % arg_flows;
                l->scheduled++;

                if (!l->slots[slot]) {
                        load_retire_slot(l, slot, now); /* reopen a flow that failed to open */
                        if (!l->slots[slot]) {
                                l->send_errors++;
                                continue;
                        }
                }
                flow_send(l, l->slots[slot]);
        }
}

static void load_retire_expired(Load *l, uint64_t now) {
        while (l->ring_len > 0) {
                uint32_t slot = l->expiry_ring[l->ring_head];
                Flow *f = l->slots[slot];

                if (f && f->expire_nsec > now)
                        break;

                load_retire_slot(l, slot, now);
                l->ring_head = (l->ring_head + 1) % arg_flows;
                l->ring_len--;
                if (l->slots[slot])
                        l->slots[slot]->expire_nsec = now + arg_lifetime_nsec;
                /* Expiry times only grow, so the ring stays ordered. */
                l->expiry_ring[(l->ring_head + l->ring_len) % arg_flows] = slot;
                l->ring_len++;
                if (!l->slots[slot])
                        break; /* cannot open flows right now: try again next tick */
        }
}

static void load_close_lingering(Load *l, uint64_t now, bool all) {
        while (l->closing.head) {
                Flow *f = l->closing.head;

                flow_list_remove(&l->closing, f);
                load_close_flow(l, f);
        }
        while (l->lingering.head && (all || l->lingering.head->expire_nsec <= now)) {
                Flow *f = l->lingering.head;

                flow_list_remove(&l->lingering, f);
                load_close_flow(l, f);
        }
}

static Generation *load_generation(Load *l, uint64_t number) {
        for (size_t i = 0; i < l->n_gens; i++)
                if (l->gens[i].number == number)
                        return &l->gens[i];
        if (l->n_gens >= GENERATIONS_MAX)
                return NULL;
        l->gens[l->n_gens] = (Generation) { .number = number };
        return &l->gens[l->n_gens++];
}

static void generation_add_pid(Generation *g, uint64_t pid) {
        for (size_t i = 0; i < g->n_pids; i++)
                if (g->pids[i] == pid)
                        return;
        if (g->n_pids >= PIDS_MAX) {
                g->pids_truncated = true;
                return;
        }
        g->pids[g->n_pids++] = pid;
}

static size_t hist_index(uint64_t v) {
        int e;

        if (v < HIST_LINEAR)
                return (size_t) v;
        e = 63 - __builtin_clzll(v); /* >= 7 */
        return HIST_LINEAR + (size_t) (e - 7) * HIST_SUB + (size_t) ((v >> (e - 6)) - HIST_SUB);
}

/* The middle of bucket i. */
static uint64_t hist_value(size_t i) {
        size_t e, m;

        if (i < HIST_LINEAR)
                return i;
        e = (i - HIST_LINEAR) / HIST_SUB + 7;
        m = (i - HIST_LINEAR) % HIST_SUB + HIST_SUB;
        return ((uint64_t) m << (e - 6)) + (((uint64_t) 1 << (e - 6)) - 1) / 2;
}

static uint64_t load_latency_percentile(const Load *l, double p) {
        uint64_t total = 0, rank, sum = 0;

        for (size_t i = 0; i < HIST_BUCKETS; i++)
                total += l->latency_hist[i];
        if (total == 0)
                return 0;
        rank = (uint64_t) (p * (double) total);
        if ((double) rank < p * (double) total)
                rank++;
        if (rank < 1)
                rank = 1;
        for (size_t i = 0; i < HIST_BUCKETS; i++) {
                sum += l->latency_hist[i];
                if (sum >= rank) {
                        uint64_t v = hist_value(i);

                        return v < l->latency_max_usec ? v : l->latency_max_usec;
                }
        }
        return l->latency_max_usec;
}

/* Parses a decimal u64 of 1..20 digits at *p, advancing *p. */
static bool parse_decimal(const uint8_t **p, const uint8_t *end, uint64_t *ret) {
        uint64_t v = 0;
        const uint8_t *s = *p;

        if (s >= end || *s < '0' || *s > '9')
                return false;
        for (; s < end && *s >= '0' && *s <= '9'; s++) {
                if (v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *p = s;
        *ret = v;
        return true;
}

/*
 * Finds and parses the trailer " gen=N pid=P\n" that must end the reply. Returns the offset
 * where it starts (== the echoed payload length), or -1 if the reply does not end in one.
 */
static ssize_t parse_trailer(const uint8_t *buf, size_t len, uint64_t *ret_gen, uint64_t *ret_pid) {
        static const char tag[] = " gen=";
        const size_t tag_len = sizeof(tag) - 1;
        const uint8_t *p, *end = buf + len;

        if (len < HEADER_SIZE + tag_len)
                return -1;
        for (size_t i = len - tag_len + 1; i-- > HEADER_SIZE;) {
                if (memcmp(buf + i, tag, tag_len) != 0)
                        continue;

                p = buf + i + tag_len;
                if (!parse_decimal(&p, end, ret_gen))
                        return -1;
                if ((size_t) (end - p) < 5 || memcmp(p, " pid=", 5) != 0)
                        return -1;
                p += 5;
                if (!parse_decimal(&p, end, ret_pid))
                        return -1;
                if (p + 1 != end || *p != '\n')
                        return -1;
                return (ssize_t) i;
        }
        return -1;
}

static void load_handle_reply(Load *l, Flow *f, const uint8_t *buf, size_t len, uint64_t now) {
        uint64_t gen, pid, ts, latency_usec;
        uint32_t seq;
        ssize_t payload_len;
        Generation *g;

        if (len < HEADER_SIZE || get_be32(buf) != LOAD_MAGIC || get_be32(buf + 4) != f->id)
                goto bad;
        seq = get_be32(buf + 8);
        if (seq >= f->next_seq)
                goto bad;
        ts = get_be64(buf + 12);
        if (ts < l->start_nsec || ts > now)
                goto bad;

        payload_len = parse_trailer(buf, len, &gen, &pid);
        if (payload_len < 0)
                goto bad;
        /* The echo may only shorten the payload to make the reply fit in 65507 bytes. */
        if ((size_t) payload_len != arg_size && !((size_t) payload_len < arg_size && len == REPLY_MAX))
                goto bad;
        if (memcmp(buf + HEADER_SIZE, l->payload + HEADER_SIZE, (size_t) payload_len - HEADER_SIZE) != 0)
                goto bad;

        if (f->seen[seq / 64] & (UINT64_C(1) << (seq % 64))) {
                l->duplicates++;
                return;
        }

        g = load_generation(l, gen);
        if (!g)
                goto bad; /* thousands of generations: garbage, not a restart */

        f->seen[seq / 64] |= UINT64_C(1) << (seq % 64);
        f->n_answered++;
        l->answered++;
        g->replies++;
        generation_add_pid(g, pid);

        latency_usec = (now - ts) / NSEC_PER_USEC;
        l->latency_hist[hist_index(latency_usec)]++;
        if (latency_usec > l->latency_max_usec)
                l->latency_max_usec = latency_usec;

        if (!f->has_gen) {
                f->has_gen = true;
                f->first_gen = gen;
                g->new_flows++;

                /* Had a newer generation answered another new flow before this one started? */
                for (size_t i = 0; i < l->n_gens; i++)
                        if (l->gens[i].number > gen && l->gens[i].first_flow_reply_nsec > 0 &&
                            l->gens[i].first_flow_reply_nsec < f->first_send_nsec) {
                                l->new_flows_on_old_generation++;
                                break;
                        }
                if (g->first_flow_reply_nsec == 0)
                        g->first_flow_reply_nsec = now;

                if (arg_expect && gen != arg_expect_generation)
                        l->expect_violations++;
        } else if (gen != f->first_gen && !f->moved) {
                f->moved = true;
                l->moved++;
        }

        /* A retired flow with nothing left in flight can go now (closed from the tick). */
        if (f->lingering && f->n_answered == f->next_seq) {
                flow_list_remove(&l->lingering, f);
                flow_list_append(&l->closing, f);
        }
        return;

bad:
        l->bad_replies++;
}

static void load_receive(Load *l, Flow *f) {
        /* Bounded so that one flow cannot starve the others or the pacing. */
        for (unsigned round = 0; round < 8; round++) {
                uint64_t now;
                int n;

                for (unsigned i = 0; i < RECV_BATCH; i++) {
                        l->iovs[i] = (struct iovec) {
                                .iov_base = l->recv_bufs + (size_t) i * RECV_BUF_SIZE,
                                .iov_len = RECV_BUF_SIZE,
                        };
                        l->msgs[i].msg_hdr = (struct msghdr) { .msg_iov = &l->iovs[i], .msg_iovlen = 1 };
                }

                n = recvmmsg(f->fd, l->msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
                if (n < 0) {
                        if (errno == ECONNREFUSED) {
                                l->refused++; /* ICMP port unreachable: the error is consumed */
                                continue;
                        }
                        return; /* EAGAIN, or nothing we can act on */
                }

                now = now_nsec();
                for (int i = 0; i < n; i++) {
                        if (l->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
                                l->bad_replies++;
                                continue;
                        }
                        load_handle_reply(l, f, l->iovs[i].iov_base, l->msgs[i].msg_len, now);
                }
                if (n < RECV_BATCH)
                        return;
        }
}

static uint64_t load_outstanding(const Load *l) {
        return l->sent - l->answered - l->lost_closed;
}

static void load_stop_sending(Load *l, uint64_t now) {
        if (now > l->end_nsec)
                now = l->end_nsec;
        l->stop_nsec = now;
        l->phase = PHASE_GRACE;
        l->grace_end_nsec = now_nsec() + arg_grace_nsec;
}

static void load_progress(Load *l, uint64_t now) {
        if (!l->progress || now < l->last_progress_nsec + NSEC_PER_SEC)
                return;
        l->last_progress_nsec = now;
        fprintf(stderr, "grm-load: %6.1f s  sent %" PRIu64 "  answered %" PRIu64 "  moved %" PRIu64
                "  new-on-old %" PRIu64 "  generations %zu\n",
                (double) (now - l->start_nsec) / NSEC_PER_SEC, l->sent, l->answered, l->moved,
                l->new_flows_on_old_generation, l->n_gens);
}

static void load_tick(Load *l, uint64_t now) {
        if (l->phase == PHASE_SENDING) {
                if (l->interrupted)
                        load_stop_sending(l, now);
                else {
                        load_retire_expired(l, now);
                        load_send_due(l, now);
                        if (now >= l->end_nsec)
                                load_stop_sending(l, now);
                }
        }

        load_close_lingering(l, now, false);
        load_progress(l, now);

        if (l->phase == PHASE_GRACE && (load_outstanding(l) == 0 || now >= l->grace_end_nsec))
                l->phase = PHASE_DONE;
}

static void load_handle_signals(Load *l) {
        struct signalfd_siginfo si;

        while (read(l->signal_fd, &si, sizeof(si)) == sizeof(si)) {
                if (l->phase == PHASE_SENDING)
                        l->interrupted = true;
                else
                        l->phase = PHASE_DONE; /* second signal: stop waiting for replies */
        }
}

static int load_run(Load *l) {
        struct epoll_event events[1024];

        l->phase = PHASE_SENDING;
        while (l->phase != PHASE_DONE) {
                bool tick = false;
                int n;

                n = epoll_wait(l->epoll_fd, events, ELEMENTSOF(events), -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error(negative_errno(), "epoll_wait(): %m");
                }

                /* Flows are closed only in load_tick(), after all events of the batch were seen. */
                for (int i = 0; i < n; i++) {
                        void *p = events[i].data.ptr;

                        if (p == &l->timer_fd) {
                                uint64_t expirations;

                                (void) read(l->timer_fd, &expirations, sizeof(expirations));
                                tick = true;
                        } else if (p == &l->signal_fd) {
                                load_handle_signals(l);
                                tick = true;
                        } else
                                load_receive(l, p);
                }

                if (tick && l->phase != PHASE_DONE)
                        load_tick(l, now_nsec());
        }

        if (l->stop_nsec == 0)
                l->stop_nsec = now_nsec();
        /* Whatever is still open is accounted as closed now: its missing replies are lost. */
        load_close_lingering(l, 0, true);
        return 0;
}

static double load_duration_sec(const Load *l) {
        return (double) (l->stop_nsec - l->start_nsec) / NSEC_PER_SEC;
}

static double load_rate(const Load *l) {
        double d = load_duration_sec(l);

        return d > 0 ? (double) l->sent / d : 0;
}

static uint64_t load_lost(const Load *l) {
        return l->sent - l->answered;
}

static int generation_compare(const void *a, const void *b) {
        const Generation *x = a, *y = b;

        return x->number < y->number ? -1 : x->number > y->number;
}

static void print_json_string(FILE *out, const char *s) {
        fputc('"', out);
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '"' || c == '\\')
                        fprintf(out, "\\%c", c);
                else if (c < 0x20)
                        fprintf(out, "\\u%04x", c);
                else
                        fputc(c, out);
        }
        fputc('"', out);
}

static void load_print_json(const Load *l) {
        printf("{\"target\":");
        print_json_string(stdout, arg_target);
        printf(",\"sent\":%" PRIu64 ",\"answered\":%" PRIu64 ",\"lost\":%" PRIu64
               ",\"duplicates\":%" PRIu64 ",\"bad_replies\":%" PRIu64 ",\"flows\":%" PRIu64
               ",\"moved\":%" PRIu64 ",\"new_flows_on_old_generation\":%" PRIu64
               ",\"expect_violations\":%" PRIu64 ",\"rate_pps\":%.1f,\"duration_sec\":%.3f"
               ",\"latency_us\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64 "}"
               ",\"send_errors\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"flow_errors\":%" PRIu64
               ",\"evicted_flows\":%" PRIu64 ",\"source_ports_wrapped\":%s"
               ",\"interrupted\":%s,\"generations\":[",
               l->sent, l->answered, load_lost(l), l->duplicates, l->bad_replies, l->flows, l->moved,
               l->new_flows_on_old_generation, l->expect_violations, load_rate(l), load_duration_sec(l),
               load_latency_percentile(l, 0.50), load_latency_percentile(l, 0.99), l->latency_max_usec,
               l->send_errors, l->refused, l->flow_errors, l->evicted, l->ports_wrapped ? "true" : "false",
               l->interrupted ? "true" : "false");
        for (size_t i = 0; i < l->n_gens; i++) {
                const Generation *g = &l->gens[i];

                printf("%s{\"generation\":%" PRIu64 ",\"pids\":[", i > 0 ? "," : "", g->number);
                for (size_t j = 0; j < g->n_pids; j++)
                        printf("%s%" PRIu64, j > 0 ? "," : "", g->pids[j]);
                printf("],\"new_flows\":%" PRIu64 ",\"replies\":%" PRIu64 "}", g->new_flows, g->replies);
        }
        printf("]}\n");
}

static bool load_ok(const Load *l) {
        return l->sent > 0 && load_lost(l) == 0 && l->moved == 0 && l->new_flows_on_old_generation == 0 &&
               l->expect_violations == 0 && l->bad_replies == 0;
}

static void load_print_human(const Load *l) {
        printf("grm-load: %s: %u flows, %.0f pps, %zu bytes for %.3f s", arg_target, arg_flows, arg_rate,
               arg_size, (double) arg_duration_nsec / NSEC_PER_SEC);
        if (arg_lifetime_nsec > 0)
                printf(", flow lifetime %.3f s", (double) arg_lifetime_nsec / NSEC_PER_SEC);
        printf("\n");
        if (l->interrupted)
                printf("  (interrupted after %.3f s)\n", load_duration_sec(l));
        printf("  %-30s %" PRIu64 " (%.0f pps achieved)\n", "sent", l->sent, load_rate(l));
        printf("  %-30s %" PRIu64 "\n", "answered", l->answered);
        printf("  %-30s %" PRIu64 "\n", "lost", load_lost(l));
        printf("  %-30s %" PRIu64 "\n", "duplicates", l->duplicates);
        printf("  %-30s %" PRIu64 "\n", "bad replies", l->bad_replies);
        printf("  %-30s %" PRIu64 "\n", "flows", l->flows);
        printf("  %-30s %" PRIu64 "\n", "moved", l->moved);
        printf("  %-30s %" PRIu64 "\n", "new flows on old generation", l->new_flows_on_old_generation);
        if (arg_expect)
                printf("  %-30s %" PRIu64 " (expected generation %" PRIu64 ")\n", "expect violations",
                       l->expect_violations, arg_expect_generation);
        if (l->send_errors > 0 || l->refused > 0 || l->flow_errors > 0 || l->evicted > 0)
                printf("  %-30s %" PRIu64 " send errors, %" PRIu64 " ICMP refused, %" PRIu64
                       " flows not opened, %" PRIu64 " retired flows closed early\n",
                       "errors", l->send_errors, l->refused, l->flow_errors, l->evicted);
        printf("  %-30s p50 %" PRIu64 " us, p99 %" PRIu64 " us, max %" PRIu64 " us\n", "latency",
               load_latency_percentile(l, 0.50), load_latency_percentile(l, 0.99), l->latency_max_usec);

        printf("\n  %-12s %-10s %-12s %s\n", "generation", "new flows", "replies", "pids");
        for (size_t i = 0; i < l->n_gens; i++) {
                const Generation *g = &l->gens[i];

                printf("  %-12" PRIu64 " %-10" PRIu64 " %-12" PRIu64 " ", g->number, g->new_flows, g->replies);
                for (size_t j = 0; j < g->n_pids; j++)
                        printf("%s%" PRIu64, j > 0 ? "," : "", g->pids[j]);
                printf("%s\n", g->pids_truncated ? ",..." : "");
        }
        printf("\nresult: %s\n", load_ok(l) ? "OK" : "DEGRADED (exit status 1)");
}

int main(int argc, char *argv[]) {
        _cleanup_(load_freep) Load *l = NULL;
        int r;

        /* --tcp anywhere before "--" selects the TCP mode, which has options of its own. */
        for (int i = 1; i < argc && !streq(argv[i], "--"); i++) {
                if (streq(argv[i], "--tcp"))
                        return load_tcp_main(argc, argv);
                if (streq(argv[i], "--spread"))
                        return load_spread_main(argc, argv);
        }

        r = parse_argv(argc, argv);
        if (r < 0)
                return EXIT_USAGE;
        if (r == 0)
                return EXIT_OK;

        r = load_new(&l);
        if (r < 0) {
                log_error(r, "setup failed: %m");
                return EXIT_SETUP;
        }

        r = load_setup(l);
        if (r != EXIT_OK)
                return r;

        r = load_run(l);
        if (r < 0)
                return EXIT_SETUP;

        if (l->n_gens > 1)
                qsort(l->gens, l->n_gens, sizeof(Generation), generation_compare);
        if (arg_json)
                load_print_json(l);
        else if (!arg_quiet)
                load_print_human(l);
        fflush(stdout);

        return load_ok(l) ? EXIT_OK : EXIT_DEGRADED;
}
