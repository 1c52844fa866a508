/* SPDX-License-Identifier: MIT */
/*
 * grm-echo: the example application grm restarts. It is a plain socket-activated echo service:
 * it takes its sockets from LISTEN_FDS (and/or opens its own with --listen), reports READY=1 with
 * sd_notify(), and answers
 *  - every datagram, from the UDP socket it arrived on, with the same payload followed by
 *    " gen=<N> pid=<PID>\n";
 *  - every line on a TCP connection accepted from a listening socket it got, with the line
 *    (without its newline) followed by " gen=<N> pid=<PID>\n",
 * so a client can tell which generation served it. On SIGTERM/SIGINT (or --drain-signal) it
 * drains: it closes its TCP listeners at once (the kernel moves what waits in their queues to
 * the working generation), keeps answering, answers each connection's next line with
 * " gen=<N> pid=<PID> closing\n" and then closes it, closes connections idle for --idle-exit,
 * and exits 0 once no connection is left and no datagram has arrived for --idle-exit seconds.
 *
 * With --connect-per-client it serves UDP the way stateful servers do ("established over
 * unconnected"): a new client's first datagram (on a socket it was given) makes a socket of the
 * client's own, with SO_REUSEADDR and SO_REUSEPORT, bound to that socket's address and
 * connect()ed to the client (--connect-delay widens the window between the two); the first
 * datagram and every later one of that client are answered through it. A datagram that such a
 * socket receives from any other address is "misdelivered" (it reached the socket between its
 * bind() and its connect()): counted and still answered, so that loss stays loss. A per-client
 * socket idle for --idle-exit is closed; the drain waits for them like for connections. Where no
 * per-client socket can be made (bind() refused: another uid owns the group), the client is
 * answered from the shared socket and the failure counted. Every exit prints one line
 * "summary answered=N dropped=N clients=N misdelivered=N client_errors=N" (the benchmark's).
 *
 * Owns: its sockets, connections and per-client sockets, one epoll loop (sockets, connections,
 * per-client sockets, signalfd), the start/drain state machine and the test knobs the
 * integration tests use to simulate slow, failing and crashing applications.
 * Invariants: a reply never exceeds 65507 bytes; a bad datagram is answered or skipped, a bad
 * connection (line too long, reset) is closed, never fatal; READY=1 is sent at most once and
 * never after draining started; no listener stays open once draining started; at most one
 * per-client socket per client address, found by its address; sockets are closed only from the
 * timers, never while epoll events that may name them are being handled.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "tools-util.h"

#define RECV_BATCH 64
#define DGRAM_BUF_SIZE 65536         /* larger than any UDP payload */
#define REPLY_MAX 65507              /* largest payload of an IPv4 UDP datagram */
#define TRAILER_MAX 64
#define FAIL_START_DELAY_NSEC (50 * NSEC_PER_SEC / 1000)
#define LISTEN_BUFFER_BYTES (4 * 1024 * 1024)
#define SEND_RETRY_MSEC 5
#define SIGNAL_TOKEN UINT64_MAX
#define CONN_TOKEN (1ULL << 32)       /* | connection index */
#define CLIENT_TOKEN (1ULL << 33)     /* | per-client socket index */
#define CONNECT_DELAY_MAX_MSEC 10000
#define LINE_MAX_BYTES 4096           /* a longer line closes the connection */
#define OUT_MAX_BYTES (64 * 1024)     /* unsent replies beyond this close the connection */
#define ACCEPT_PAUSE_NSEC (50 * NSEC_PER_SEC / 1000) /* after EMFILE */
#define LISTEN_BACKLOG 4096

enum {
        EXIT_USAGE = 2,
};

typedef enum EchoState {
        STATE_STARTING,  /* before READY=1 (or ERRNO=, or never with --never-ready) */
        STATE_SERVING,
        STATE_FAILED,    /* sent ERRNO=: keeps running, answers nothing */
        STATE_DRAINING,
} EchoState;

typedef struct EchoSocket {
        int fd;        /* -EBADF once closed (a listener, at the drain) */
        bool stream;   /* a TCP listener */
        bool pktinfo;  /* bound to a wildcard address: reply from the address the datagram hit */
        /* --connect-per-client, IPv4/IPv6 datagram sockets: what a client's own socket copies so
         * that its bind() lands in this socket's reuseport group (same address, family,
         * IPV6_V6ONLY and bound device). */
        bool per_client;
        struct sockaddr_storage local;
        socklen_t local_len;
        int v6only;
        int ifindex;
} EchoSocket;

/* --connect-per-client: one client's own socket, connected to it. */
typedef struct EchoClient {
        int fd;
        size_t index;                       /* in Echo.clients; its epoll token */
        struct sockaddr_storage peer;
        socklen_t peer_len;
        uint64_t last_nsec;                 /* its last datagram (or its creation) */
        struct EchoClient *hash_next;       /* Echo.client_buckets chain */
        struct EchoClient *idle_prev, *idle_next; /* Echo.idle_head: least recently active first */
} EchoClient;

/* An accepted TCP connection: lines in, replies out. */
typedef struct EchoConn {
        int fd;
        bool closing;          /* the drain's "closing" reply is queued: close once sent */
        uint64_t last_nsec;    /* last line received (or accepted) */
        size_t in_len, out_len, out_off;
        char in[LINE_MAX_BYTES];
        char *out;             /* replies not yet sent, OUT_MAX_BYTES */
} EchoConn;

typedef union ControlBuffer {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
} ControlBuffer;

typedef struct Echo {
        EchoSocket *sockets;
        size_t n_sockets;
        int epoll_fd;
        int signal_fd;

        uint64_t generation;
        pid_t pid;
        char trailer[TRAILER_MAX];
        size_t trailer_len;

        EchoState state;
        uint64_t start_nsec;
        uint64_t ready_at_nsec;
        uint64_t crash_at_nsec;      /* 0: no crash scheduled */
        uint64_t drain_start_nsec;
        uint64_t last_rx_nsec;

        uint64_t n_answered;
        uint64_t n_dropped;

        EchoConn **conns;            /* by index; NULL: free */
        size_t n_conns_allocated, n_conns;
        uint64_t n_accepted, n_lines, n_conn_errors;
        uint64_t accept_paused_until_nsec; /* 0: not paused */
        size_t n_udp;                /* datagram sockets */

        EchoClient **clients;        /* --connect-per-client: by index; NULL: free */
        size_t n_clients_allocated, n_clients;
        EchoClient **client_buckets; /* n_clients_allocated buckets, by peer address */
        EchoClient *idle_head, *idle_tail;
        uint64_t n_clients_opened, n_misdelivered, n_client_errors;

        /* recvmmsg()/sendmmsg() batch: replies are built in place in the receive buffers. */
        struct mmsghdr msgs[RECV_BATCH];
        struct iovec iovs[RECV_BATCH];
        struct sockaddr_storage peers[RECV_BATCH];
        ControlBuffer ctl_in[RECV_BATCH];
        ControlBuffer ctl_out[RECV_BATCH];
        uint8_t *bufs;
} Echo;

static char **arg_listen = NULL;
static size_t arg_n_listen = 0;
static sigset_t arg_drain_signals;
static uint64_t arg_idle_exit_nsec = 2 * NSEC_PER_SEC;
static uint64_t arg_max_drain_nsec = 0;
static uint64_t arg_start_delay_nsec = 0;
static uint64_t arg_extend_timeout_nsec = 0;
static bool arg_fail_start = false;
static int arg_errno = 0;
static bool arg_never_ready = false;
static bool arg_ignore_drain = false;
static uint64_t arg_crash_after_nsec = 0;
static bool arg_crash = false;
static uint64_t arg_accept_every_nsec = 0;
static bool arg_connect_per_client = false;
static uint64_t arg_connect_delay_nsec = 0;

static void arg_listen_freep(char ***p) {
        for (size_t i = 0; i < arg_n_listen; i++)
                free((*p)[i]);
        free(*p);
}

static void conn_free(EchoConn *c) {
        if (!c)
                return;
        safe_close(c->fd);
        free(c->out);
        free(c);
}

static void client_free(EchoClient *c) {
        if (!c)
                return;
        safe_close(c->fd);
        free(c);
}

static void echo_free(Echo *e) {
        if (!e)
                return;
        for (size_t i = 0; i < e->n_sockets; i++)
                safe_close(e->sockets[i].fd);
        free(e->sockets);
        for (size_t i = 0; i < e->n_conns_allocated; i++)
                conn_free(e->conns[i]);
        free(e->conns);
        for (size_t i = 0; i < e->n_clients_allocated; i++)
                client_free(e->clients[i]);
        free(e->clients);
        free(e->client_buckets);
        safe_close(e->epoll_fd);
        safe_close(e->signal_fd);
        free(e->bufs);
        free(e);
}

static void echo_freep(Echo **e) {
        echo_free(*e);
}

static void log_state(const Echo *e, const char *fmt, ...) _printf_(2, 3);
static void log_state(const Echo *e, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "grm-echo gen %" PRIu64 " pid %d: %s\n", e->generation, (int) e->pid, msg);
}

/* Prints "grm-echo: MESSAGE" with %m meaning -r, returns r. */
static int log_errno(int r, const char *fmt, ...) _printf_(2, 3);
static int log_errno(int r, const char *fmt, ...) {
        va_list ap;

        fputs("grm-echo: ", stderr);
        errno = -r;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return r;
}

static int help(void) {
        printf("Usage: %s [OPTIONS]\n"
               "\n"
               "Echo service for grm. Answers every UDP datagram, from the socket it arrived on,\n"
               "with its payload followed by \" gen=<N> pid=<PID>\\n\" (the payload is truncated so\n"
               "that the reply fits in 65507 bytes), and every line on a TCP connection accepted\n"
               "from a listening socket with the line followed by \" gen=<N> pid=<PID>\\n\".\n"
               "Sockets come from socket activation (LISTEN_FDS/LISTEN_PID) and/or --listen.\n"
               "Sends READY=1 with sd_notify() when set up. On SIGTERM, SIGINT or a --drain-signal\n"
               "it drains: sends STOPPING=1, closes its TCP listeners, keeps answering, answers\n"
               "each connection's next line with \" gen=<N> pid=<PID> closing\\n\" and closes it,\n"
               "closes connections idle for --idle-exit, and exits 0 once no connection is left\n"
               "and no datagram arrived for --idle-exit seconds.\n"
               "Every exit prints \"summary answered=N dropped=N clients=N misdelivered=N\n"
               "client_errors=N\" on stderr.\n"
               "\n"
               "Options:\n"
               "  -h --help                Show this help and exit\n"
               "     --version             Show the version and exit\n"
               "  -l --listen ADDR:PORT    Also open a UDP socket with SO_REUSEPORT on ADDR:PORT\n"
               "                           (127.0.0.1:9000, [::1]:9000), or with tcp:ADDR:PORT a\n"
               "                           TCP listener; may be repeated\n"
               "     --drain-signal SIG    Also drain on SIG (name like SIGUSR2, or number);\n"
               "                           may be repeated\n"
               "     --idle-exit SEC       Drain ends after SEC seconds without datagrams, and\n"
               "                           closes connections idle that long (and per-client\n"
               "                           sockets, also before a drain; default 2, fractions\n"
               "                           allowed)\n"
               "     --max-drain SEC       Drain ends at most SEC seconds after it started\n"
               "                           (default 0: no limit)\n"
               "     --connect-per-client  Serve each UDP client through a socket of its own: on\n"
               "                           its first datagram, a socket with SO_REUSEADDR and\n"
               "                           SO_REUSEPORT bound to the address of the socket that\n"
               "                           datagram arrived on, and connect()ed to the client.\n"
               "                           A datagram it receives from another address is\n"
               "                           counted as misdelivered (and answered). Closed after\n"
               "                           --idle-exit without datagrams; the drain waits for\n"
               "                           them. If one cannot be opened, the client is answered\n"
               "                           from the shared socket (counted in client_errors)\n"
               "     --connect-delay MS    With --connect-per-client: wait MS milliseconds (0..%u,\n"
               "                           fractions allowed) between a per-client socket's bind()\n"
               "                           and its connect(), to widen that window for a\n"
               "                           measurement (the whole process waits)\n"
               "\n"
               "Test knobs:\n"
               "     --start-delay SEC     Wait SEC seconds before READY=1\n"
               "     --fail-start          Exit 1 after 50 ms instead of sending READY=1\n"
               "     --errno N             Send ERRNO=N instead of READY=1, then keep running\n"
               "                           without answering\n"
               "     --never-ready         Never send READY=1, but keep answering\n"
               "     --ignore-drain        Ignore SIGTERM, SIGINT and the drain signals entirely\n"
               "     --crash-after SEC     abort() (SIGABRT) SEC seconds after READY=1\n"
               "     --extend-timeout SEC  Send EXTEND_TIMEOUT_USEC=SEC at start (with --start-delay)\n"
               "     --accept-every SEC    Accept TCP connections in batches every SEC seconds, so\n"
               "                           that they wait in the listeners' queues (the drain then\n"
               "                           closes listeners with connections queued)\n"
               "\n"
               "Environment:\n"
               "  GRM_GENERATION           Generation number put in replies (default 0)\n"
               "  LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, NOTIFY_SOCKET: as set by systemd/grmd\n"
               "\n"
               "Exit status: 0 drained, 1 setup error or --fail-start, 2 usage error.\n",
               program_invocation_short_name, CONNECT_DELAY_MAX_MSEC);
        return 0;
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "%s: ", program_invocation_short_name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EINVAL;
}

static int parse_seconds_arg(const char *opt, const char *value, uint64_t *ret) {
        if (parse_seconds(value, 1e6, ret) < 0)
                return usage_error("%s: invalid number of seconds '%s'", opt, value);
        return 0;
}

/* Returns > 0 to continue, 0 to exit successfully (--help, --version), < 0 on usage error. */
static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_DRAIN_SIGNAL,
                ARG_IDLE_EXIT,
                ARG_MAX_DRAIN,
                ARG_START_DELAY,
                ARG_FAIL_START,
                ARG_ERRNO,
                ARG_EXTEND_TIMEOUT,
                ARG_NEVER_READY,
                ARG_IGNORE_DRAIN,
                ARG_CRASH_AFTER,
                ARG_ACCEPT_EVERY,
                ARG_CONNECT_PER_CLIENT,
                ARG_CONNECT_DELAY,
        };
        static const struct option options[] = {
                { "help",         no_argument,       NULL, 'h'              },
                { "version",      no_argument,       NULL, ARG_VERSION      },
                { "listen",       required_argument, NULL, 'l'              },
                { "drain-signal", required_argument, NULL, ARG_DRAIN_SIGNAL },
                { "idle-exit",    required_argument, NULL, ARG_IDLE_EXIT    },
                { "max-drain",    required_argument, NULL, ARG_MAX_DRAIN    },
                { "start-delay",  required_argument, NULL, ARG_START_DELAY  },
                { "fail-start",   no_argument,       NULL, ARG_FAIL_START   },
                { "errno",        required_argument, NULL, ARG_ERRNO        },
                { "extend-timeout", required_argument, NULL, ARG_EXTEND_TIMEOUT },
                { "never-ready",  no_argument,       NULL, ARG_NEVER_READY  },
                { "ignore-drain", no_argument,       NULL, ARG_IGNORE_DRAIN },
                { "crash-after",  required_argument, NULL, ARG_CRASH_AFTER  },
                { "accept-every", required_argument, NULL, ARG_ACCEPT_EVERY },
                { "connect-per-client", no_argument, NULL, ARG_CONNECT_PER_CLIENT },
                { "connect-delay", required_argument, NULL, ARG_CONNECT_DELAY },
                {}
        };
        uint64_t u;
        bool have_connect_delay = false;
        int c, sig, r;

        sigemptyset(&arg_drain_signals);
        sigaddset(&arg_drain_signals, SIGTERM);
        sigaddset(&arg_drain_signals, SIGINT);

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hl:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return help();
                case ARG_VERSION:
                        printf("grm-echo %s\n", GRM_VERSION);
                        return 0;
                case 'l': {
                        char host[NI_MAXHOST], **l;
                        uint16_t port;
                        const char *a = strncmp(optarg, "tcp:", 4) == 0 ? optarg + 4 : optarg;

                        if (split_host_port(a, true, host, sizeof(host), &port) < 0)
                                return usage_error("--listen: expected [tcp:]ADDR:PORT or [tcp:][ADDR]:PORT, got '%s'",
                                                   optarg);
                        l = realloc(arg_listen, (arg_n_listen + 1) * sizeof(char *));

                        if (!l)
                                return -ENOMEM;
                        arg_listen = l;
                        arg_listen[arg_n_listen] = strdup(optarg);
                        if (!arg_listen[arg_n_listen])
                                return -ENOMEM;
                        arg_n_listen++;
                        break;
                }
                case ARG_DRAIN_SIGNAL:
                        if (parse_signal(optarg, &sig) < 0)
                                return usage_error("--drain-signal: unknown or uncatchable signal '%s'",
                                                   optarg);
                        sigaddset(&arg_drain_signals, sig);
                        break;
                case ARG_IDLE_EXIT:
                        r = parse_seconds_arg("--idle-exit", optarg, &arg_idle_exit_nsec);
                        if (r < 0)
                                return r;
                        break;
                case ARG_MAX_DRAIN:
                        r = parse_seconds_arg("--max-drain", optarg, &arg_max_drain_nsec);
                        if (r < 0)
                                return r;
                        break;
                case ARG_START_DELAY:
                        r = parse_seconds_arg("--start-delay", optarg, &arg_start_delay_nsec);
                        if (r < 0)
                                return r;
                        break;
                case ARG_EXTEND_TIMEOUT:
                        r = parse_seconds_arg("--extend-timeout", optarg, &arg_extend_timeout_nsec);
                        if (r < 0)
                                return r;
                        break;
                case ARG_FAIL_START:
                        arg_fail_start = true;
                        break;
                case ARG_ERRNO:
                        if (parse_u64_range(optarg, 1, 4095, &u) < 0)
                                return usage_error("--errno: expected an errno number 1..4095, got '%s'",
                                                   optarg);
                        arg_errno = (int) u;
                        break;
                case ARG_NEVER_READY:
                        arg_never_ready = true;
                        break;
                case ARG_IGNORE_DRAIN:
                        arg_ignore_drain = true;
                        break;
                case ARG_CRASH_AFTER:
                        r = parse_seconds_arg("--crash-after", optarg, &arg_crash_after_nsec);
                        if (r < 0)
                                return r;
                        arg_crash = true;
                        break;
                case ARG_ACCEPT_EVERY:
                        r = parse_seconds_arg("--accept-every", optarg, &arg_accept_every_nsec);
                        if (r < 0)
                                return r;
                        break;
                case ARG_CONNECT_PER_CLIENT:
                        arg_connect_per_client = true;
                        break;
                case ARG_CONNECT_DELAY:
                        /* Milliseconds: parsed as seconds, then scaled down. */
                        if (parse_seconds(optarg, CONNECT_DELAY_MAX_MSEC, &u) < 0)
                                return usage_error("--connect-delay: expected milliseconds 0..%u, got '%s'",
                                                   CONNECT_DELAY_MAX_MSEC, optarg);
                        arg_connect_delay_nsec = u / 1000;
                        have_connect_delay = true;
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

        if (optind < argc)
                return usage_error("unexpected argument '%s'", argv[optind]);
        if (arg_fail_start + (arg_errno > 0) + arg_never_ready > 1)
                return usage_error("--fail-start, --errno and --never-ready exclude each other");
        if (have_connect_delay && !arg_connect_per_client)
                return usage_error("--connect-delay needs --connect-per-client");

        return 1;
}

/* A socket bound to 0.0.0.0 or :: answers from the address each datagram was sent to. */
static int socket_wants_pktinfo(int fd, bool *ret) {
        struct sockaddr_storage ss = {};
        socklen_t len = sizeof(ss);
        int one = 1;

        *ret = false;
        if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0)
                return negative_errno();

        if (ss.ss_family == AF_INET) {
                if (((struct sockaddr_in *) &ss)->sin_addr.s_addr != htonl(INADDR_ANY))
                        return 0;
                if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0)
                        return negative_errno();
        } else if (ss.ss_family == AF_INET6) {
                if (!IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *) &ss)->sin6_addr))
                        return 0;
                if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) < 0)
                        return negative_errno();
        } else
                return 0;

        *ret = true;
        return 0;
}

/* --connect-per-client: what a client's socket needs to join fd's reuseport group. */
static int socket_per_client_info(int fd, EchoSocket *s) {
        socklen_t len = sizeof(s->local);

        if (getsockname(fd, (struct sockaddr *) &s->local, &len) < 0)
                return negative_errno();
        if (s->local.ss_family != AF_INET && s->local.ss_family != AF_INET6)
                return 0; /* AF_UNIX and others: served on the shared socket */
        s->local_len = len;

        len = sizeof(s->ifindex);
        if (getsockopt(fd, SOL_SOCKET, SO_BINDTOIFINDEX, &s->ifindex, &len) < 0)
                return negative_errno();
        if (s->local.ss_family == AF_INET6) {
                len = sizeof(s->v6only);
                if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &s->v6only, &len) < 0)
                        return negative_errno();
        }
        s->per_client = true;
        return 0;
}

static int echo_add_socket(Echo *e, int fd, bool stream) {
        EchoSocket *s, n;
        int r;

        n = (EchoSocket) { .fd = fd, .stream = stream };
        if (!stream) {
                r = socket_wants_pktinfo(fd, &n.pktinfo);
                if (r < 0)
                        return r;
                if (arg_connect_per_client) {
                        r = socket_per_client_info(fd, &n);
                        if (r < 0)
                                return r;
                }
        }

        s = realloc(e->sockets, (e->n_sockets + 1) * sizeof(EchoSocket));
        if (!s)
                return -ENOMEM;
        e->sockets = s;
        e->sockets[e->n_sockets++] = n;
        if (!stream)
                e->n_udp++;
        return 0;
}

static int open_listen_socket(const char *spec, int *ret_fd, bool *ret_stream) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_storage ss;
        socklen_t len;
        char buf[SOCKADDR_STR_MAX];
        bool stream = strncmp(spec, "tcp:", 4) == 0;
        const char *a = stream ? spec + 4 : spec;
        int one = 1, gai = 0, r;

        r = resolve_udp_address(a, true, true, &ss, &len, &gai);
        if (r == -EINVAL) {
                fprintf(stderr, "grm-echo: --listen: expected [tcp:]ADDR:PORT or [tcp:][ADDR]:PORT, got '%s'\n", spec);
                return -EINVAL;
        }
        if (r < 0) {
                fprintf(stderr, "grm-echo: --listen: cannot resolve '%s': %s\n", spec, gai_strerror(gai));
                return r;
        }

        fd = socket(ss.ss_family, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_errno(negative_errno(), "cannot create socket for %s: %m", spec);
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
                return log_errno(negative_errno(), "cannot set SO_REUSEPORT on %s: %m", spec);
        if (!stream) {
                /* Best effort: bursts during a restart should not overflow the queue. */
                (void) socket_set_buffer(fd, SO_RCVBUF, LISTEN_BUFFER_BYTES);
                (void) socket_set_buffer(fd, SO_SNDBUF, LISTEN_BUFFER_BYTES);
        }
        if (bind(fd, (struct sockaddr *) &ss, len) < 0)
                return log_errno(negative_errno(), "cannot bind to %s: %m", spec);
        if (stream && listen(fd, LISTEN_BACKLOG) < 0)
                return log_errno(negative_errno(), "cannot listen on %s: %m", spec);

        len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *) &ss, &len) >= 0)
                fprintf(stderr, "grm-echo: listening on %s%s\n", stream ? "tcp:" : "",
                        format_sockaddr((struct sockaddr *) &ss, buf, sizeof(buf)));

        *ret_fd = TAKE_FD(fd);
        *ret_stream = stream;
        return 0;
}

static int echo_collect_sockets(Echo *e) {
        int n, r;

        n = sd_listen_fds(1);
        if (n < 0) {
                fprintf(stderr, "grm-echo: invalid socket activation environment: %s\n", strerror(-n));
                return n;
        }
        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
                bool stream = false;
                int flags;

                r = sd_is_socket(fd, AF_UNSPEC, SOCK_DGRAM, -1);
                if (r <= 0) {
                        stream = true;
                        r = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1);
                }
                if (r <= 0) {
                        fprintf(stderr, "grm-echo: passed fd %d is neither a datagram socket nor a listening stream socket, ignoring it\n", fd);
                        continue;
                }
                flags = fcntl(fd, F_GETFL);
                if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                        return log_errno(negative_errno(), "cannot make fd %d non-blocking: %m", fd);
                r = echo_add_socket(e, fd, stream);
                if (r < 0) {
                        fprintf(stderr, "grm-echo: cannot use fd %d: %s\n", fd, strerror(-r));
                        return r;
                }
        }

        for (size_t i = 0; i < arg_n_listen; i++) {
                _cleanup_close_ int fd = -EBADF;
                bool stream;

                r = open_listen_socket(arg_listen[i], &fd, &stream);
                if (r < 0)
                        return r;
                r = echo_add_socket(e, fd, stream);
                if (r < 0) {
                        fprintf(stderr, "grm-echo: cannot use socket for %s: %s\n", arg_listen[i], strerror(-r));
                        return r;
                }
                TAKE_FD(fd);
        }

        if (e->n_sockets == 0) {
                fprintf(stderr, "grm-echo: no sockets: start me with socket activation (LISTEN_FDS) or --listen\n");
                return -ENOENT;
        }
        return 0;
}

static int echo_setup_signals(Echo *e) {
        if (arg_ignore_drain) {
                for (int sig = 1; sig <= SIGRTMAX; sig++)
                        if (sigismember(&arg_drain_signals, sig) == 1)
                                (void) signal(sig, SIG_IGN);
                return 0;
        }

        /* A shell starts background jobs with SIGINT ignored; an ignored signal never reaches
         * the signalfd, so restore the default disposition before blocking. */
        for (int sig = 1; sig <= SIGRTMAX; sig++)
                if (sigismember(&arg_drain_signals, sig) == 1)
                        (void) signal(sig, SIG_DFL);
        if (sigprocmask(SIG_BLOCK, &arg_drain_signals, NULL) < 0)
                return negative_errno();
        e->signal_fd = signalfd(-1, &arg_drain_signals, SFD_CLOEXEC | SFD_NONBLOCK);
        if (e->signal_fd < 0)
                return negative_errno();
        if (epoll_ctl(e->epoll_fd, EPOLL_CTL_ADD, e->signal_fd,
                      &(struct epoll_event) { .events = EPOLLIN, .data.u64 = SIGNAL_TOKEN }) < 0)
                return negative_errno();
        return 0;
}

static int echo_new(Echo **ret) {
        _cleanup_(echo_freep) Echo *e = NULL;
        const char *g;
        int r;

        e = calloc(1, sizeof(Echo));
        if (!e)
                return -ENOMEM;
        e->epoll_fd = e->signal_fd = -EBADF;
        e->pid = getpid();

        g = getenv("GRM_GENERATION");
        if (g && *g && parse_u64_range(g, 0, UINT64_MAX, &e->generation) < 0) {
                fprintf(stderr, "grm-echo: invalid GRM_GENERATION='%s', expected a decimal number\n", g);
                return -EINVAL;
        }
        r = snprintf(e->trailer, sizeof(e->trailer), " gen=%" PRIu64 " pid=%d\n", e->generation, (int) e->pid);
        e->trailer_len = (size_t) r;

        e->bufs = malloc((size_t) RECV_BATCH * DGRAM_BUF_SIZE);
        if (!e->bufs)
                return -ENOMEM;

        e->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (e->epoll_fd < 0)
                return negative_errno();

        *ret = TAKE_PTR(e);
        return 0;
}

/* The control message of a reply: send it from the local address the datagram was sent to. */
static size_t reply_control(struct msghdr *in, ControlBuffer *out) {
        struct cmsghdr *c, *o;

        for (c = CMSG_FIRSTHDR(in); c; c = CMSG_NXTHDR(in, c)) {
                if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
                    c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
                        struct in_pktinfo pi;

                        memcpy(&pi, CMSG_DATA(c), sizeof(pi));
                        /* ipi_spec_dst is the local address the kernel would answer from. */
                        pi = (struct in_pktinfo) { .ipi_spec_dst = pi.ipi_spec_dst };
                        memset(out, 0, sizeof(*out));
                        o = (struct cmsghdr *) out->buf;
                        o->cmsg_level = IPPROTO_IP;
                        o->cmsg_type = IP_PKTINFO;
                        o->cmsg_len = CMSG_LEN(sizeof(pi));
                        memcpy(CMSG_DATA(o), &pi, sizeof(pi));
                        return CMSG_SPACE(sizeof(pi));
                }
                if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
                    c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
                        struct in6_pktinfo pi;

                        memcpy(&pi, CMSG_DATA(c), sizeof(pi));
                        if (IN6_IS_ADDR_MULTICAST(&pi.ipi6_addr))
                                return 0;
                        if (!IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr))
                                pi.ipi6_ifindex = 0;
                        memset(out, 0, sizeof(*out));
                        o = (struct cmsghdr *) out->buf;
                        o->cmsg_level = IPPROTO_IPV6;
                        o->cmsg_type = IPV6_PKTINFO;
                        o->cmsg_len = CMSG_LEN(sizeof(pi));
                        memcpy(CMSG_DATA(o), &pi, sizeof(pi));
                        return CMSG_SPACE(sizeof(pi));
                }
        }
        return 0;
}

/* Sends msgs[0..n) on fd. Per-datagram errors skip that datagram; a full queue waits a little. */
static void echo_send_batch(Echo *e, int fd, struct mmsghdr *msgs, unsigned n) {
        unsigned off = 0;
        bool waited = false;

        while (off < n) {
                int r = sendmmsg(fd, msgs + off, n - off, MSG_DONTWAIT);

                if (r > 0) {
                        off += (unsigned) r;
                        e->n_answered += (uint64_t) r;
                        continue;
                }
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0 && (errno == EAGAIN || errno == ENOBUFS) && !waited) {
                        waited = true;
                        (void) poll(&(struct pollfd) { .fd = fd, .events = POLLOUT }, 1, SEND_RETRY_MSEC);
                        continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
                        e->n_dropped += n - off;  /* still full: give up on this batch */
                        return;
                }
                /* This datagram cannot be answered (unreachable peer, bad address): skip it. */
                e->n_dropped++;
                off++;
        }
}

/*
 * Receives up to RECV_BATCH datagrams on fd into e->msgs (sources in e->peers) and builds each
 * reply in place: the payload, truncated to fit, then the trailer; with pktinfo, the control
 * message that sends it from the address the datagram was sent to. Returns how many, 0 when
 * nothing (or nothing usable) is queued.
 */
static int echo_receive_batch(Echo *e, int fd, bool pktinfo) {
        int n;

        for (unsigned i = 0; i < RECV_BATCH; i++) {
                e->iovs[i] = (struct iovec) {
                        .iov_base = e->bufs + (size_t) i * DGRAM_BUF_SIZE,
                        .iov_len = DGRAM_BUF_SIZE,
                };
                e->msgs[i].msg_hdr = (struct msghdr) {
                        .msg_name = &e->peers[i],
                        .msg_namelen = sizeof(e->peers[i]),
                        .msg_iov = &e->iovs[i],
                        .msg_iovlen = 1,
                        .msg_control = pktinfo ? e->ctl_in[i].buf : NULL,
                        .msg_controllen = pktinfo ? sizeof(e->ctl_in[i].buf) : 0,
                };
        }

        n = recvmmsg(fd, e->msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
                return 0; /* EAGAIN, or an error we can do nothing about: epoll tells us again */

        e->last_rx_nsec = now_nsec();

        for (int i = 0; i < n; i++) {
                struct msghdr *h = &e->msgs[i].msg_hdr;
                size_t len = e->msgs[i].msg_len, keep;
                uint8_t *buf = e->iovs[i].iov_base;

                if (len > DGRAM_BUF_SIZE)
                        len = DGRAM_BUF_SIZE;
                keep = len < REPLY_MAX - e->trailer_len ? len : REPLY_MAX - e->trailer_len;
                memcpy(buf + keep, e->trailer, e->trailer_len);
                e->iovs[i].iov_len = keep + e->trailer_len;

                h->msg_flags = 0;
                if (pktinfo && h->msg_controllen > 0) {
                        size_t cl = reply_control(h, &e->ctl_out[i]);

                        h->msg_control = cl > 0 ? e->ctl_out[i].buf : NULL;
                        h->msg_controllen = cl;
                } else {
                        h->msg_control = NULL;
                        h->msg_controllen = 0;
                }
        }
        return n;
}

/* ---- --connect-per-client: a socket per client ---- */

static bool peer_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
        if (a->ss_family != b->ss_family)
                return false;
        if (a->ss_family == AF_INET) {
                const struct sockaddr_in *x = (const struct sockaddr_in *) a, *y = (const struct sockaddr_in *) b;

                return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        }
        if (a->ss_family == AF_INET6) {
                const struct sockaddr_in6 *x = (const struct sockaddr_in6 *) a, *y = (const struct sockaddr_in6 *) b;

                return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
                       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
        }
        return false;
}

/* FNV-1a over the address and port. n_buckets is a power of two. */
static size_t peer_bucket(const struct sockaddr_storage *a, size_t n_buckets) {
        const uint8_t *p;
        size_t len;
        uint16_t port;
        uint64_t h = 0xcbf29ce484222325ULL;

        if (a->ss_family == AF_INET6) {
                p = (const uint8_t *) &((const struct sockaddr_in6 *) a)->sin6_addr;
                len = sizeof(struct in6_addr);
                port = ((const struct sockaddr_in6 *) a)->sin6_port;
        } else {
                p = (const uint8_t *) &((const struct sockaddr_in *) a)->sin_addr;
                len = sizeof(struct in_addr);
                port = ((const struct sockaddr_in *) a)->sin_port;
        }
        for (size_t i = 0; i < len; i++)
                h = (h ^ p[i]) * 0x100000001b3ULL;
        h = (h ^ (port & 0xff)) * 0x100000001b3ULL;
        h = (h ^ (port >> 8)) * 0x100000001b3ULL;
        return (size_t) (h ^ (h >> 32)) & (n_buckets - 1);
}

static EchoClient *client_find(Echo *e, const struct sockaddr_storage *peer) {
        if (e->n_clients == 0)
                return NULL;
        for (EchoClient *c = e->client_buckets[peer_bucket(peer, e->n_clients_allocated)]; c; c = c->hash_next)
                if (peer_equal(&c->peer, peer))
                        return c;
        return NULL;
}

static void client_idle_unlink(Echo *e, EchoClient *c) {
        if (c->idle_prev)
                c->idle_prev->idle_next = c->idle_next;
        else
                e->idle_head = c->idle_next;
        if (c->idle_next)
                c->idle_next->idle_prev = c->idle_prev;
        else
                e->idle_tail = c->idle_prev;
        c->idle_prev = c->idle_next = NULL;
}

static void client_idle_append(Echo *e, EchoClient *c) {
        c->idle_next = NULL;
        c->idle_prev = e->idle_tail;
        if (e->idle_tail)
                e->idle_tail->idle_next = c;
        else
                e->idle_head = c;
        e->idle_tail = c;
}

/* A datagram from the client: it is the most recently active now. */
static void client_touch(Echo *e, EchoClient *c, uint64_t now) {
        c->last_nsec = now;
        client_idle_unlink(e, c);
        client_idle_append(e, c);
}

/* Room for one more client: the index array and the buckets grow together (rehashed). */
static int echo_clients_reserve(Echo *e) {
        EchoClient **l, **b;
        size_t n;

        if (e->n_clients < e->n_clients_allocated)
                return 0;
        n = e->n_clients_allocated ? e->n_clients_allocated * 2 : 64;
        l = realloc(e->clients, n * sizeof(EchoClient *));
        if (!l)
                return -ENOMEM;
        e->clients = l;
        for (size_t i = e->n_clients_allocated; i < n; i++)
                l[i] = NULL;
        b = calloc(n, sizeof(EchoClient *));
        if (!b)
                return -ENOMEM; /* the array grew, the buckets did not: still consistent */
        for (size_t i = 0; i < e->n_clients_allocated; i++) {
                EchoClient *c = l[i];

                if (!c)
                        continue;
                size_t k = peer_bucket(&c->peer, n);
                c->hash_next = b[k];
                b[k] = c;
        }
        free(e->client_buckets);
        e->client_buckets = b;
        e->n_clients_allocated = n;
        return 0;
}

static void client_close(Echo *e, EchoClient *c) {
        EchoClient **p = &e->client_buckets[peer_bucket(&c->peer, e->n_clients_allocated)];

        while (*p != c)
                p = &(*p)->hash_next;
        *p = c->hash_next;
        client_idle_unlink(e, c);
        (void) epoll_ctl(e->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
        e->clients[c->index] = NULL;
        e->n_clients--;
        client_free(c);
}

static void sleep_nsec(uint64_t nsec) {
        uint64_t until = now_nsec() + nsec;
        struct timespec ts = {
                .tv_sec = (time_t) (until / NSEC_PER_SEC),
                .tv_nsec = (long) (until % NSEC_PER_SEC),
        };

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
}

/*
 * Opens the socket of a new client whose first datagram came from peer to listener s: bound to
 * s's address with SO_REUSEADDR and SO_REUSEPORT (so it joins s's reuseport group), then
 * connected to peer. Does not log.
 */
static int echo_client_open(Echo *e, const EchoSocket *s, const struct sockaddr_storage *peer, socklen_t peer_len,
                            EchoClient **ret) {
        _cleanup_close_ int fd = -EBADF;
        EchoClient *c;
        size_t index;
        int one = 1, r;

        r = echo_clients_reserve(e);
        if (r < 0)
                return r;

        fd = socket(s->local.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
                return negative_errno();
        if (s->local.ss_family == AF_INET6 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &s->v6only, sizeof(s->v6only)) < 0)
                return negative_errno();
        if (s->ifindex > 0 && setsockopt(fd, SOL_SOCKET, SO_BINDTOIFINDEX, &s->ifindex, sizeof(s->ifindex)) < 0)
                return negative_errno();
        if (bind(fd, (const struct sockaddr *) &s->local, s->local_len) < 0)
                return negative_errno();
        if (arg_connect_delay_nsec > 0)
                sleep_nsec(arg_connect_delay_nsec); /* the bind-connect window, widened */
        if (connect(fd, (const struct sockaddr *) peer, peer_len) < 0)
                return negative_errno();

        for (index = 0; e->clients[index]; index++)
                ;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (epoll_ctl(e->epoll_fd, EPOLL_CTL_ADD, fd,
                      &(struct epoll_event) { .events = EPOLLIN, .data.u64 = CLIENT_TOKEN | index }) < 0) {
                r = negative_errno();
                free(c);
                return r;
        }
        c->fd = TAKE_FD(fd);
        c->index = index;
        memcpy(&c->peer, peer, peer_len);
        c->peer_len = peer_len;
        c->last_nsec = now_nsec();

        size_t k = peer_bucket(&c->peer, e->n_clients_allocated);
        c->hash_next = e->client_buckets[k];
        e->client_buckets[k] = c;
        client_idle_append(e, c);
        e->clients[index] = c;
        e->n_clients++;
        e->n_clients_opened++;
        *ret = c;
        return 0;
}

/* The client of datagram i (received on s): its socket, made now if it is new; NULL if none
 * can be made (then it is answered from s). Logs the 1st, 2nd, 4th, 8th, ... failure. */
static EchoClient *echo_client_for(Echo *e, const EchoSocket *s, unsigned i) {
        const struct sockaddr_storage *peer = &e->peers[i];
        socklen_t peer_len = e->msgs[i].msg_hdr.msg_namelen;
        EchoClient *c;
        int r;

        if (peer->ss_family != s->local.ss_family || peer_len > sizeof(*peer))
                return NULL;
        c = client_find(e, peer);
        if (c)
                return c;
        r = echo_client_open(e, s, peer, peer_len, &c);
        if (r < 0) {
                char buf[SOCKADDR_STR_MAX];

                e->n_client_errors++;
                if ((e->n_client_errors & (e->n_client_errors - 1)) == 0)
                        log_state(e, "cannot open a socket for client %s, answering from the shared socket: %s "
                                  "(%" PRIu64 " such failures so far)",
                                  format_sockaddr((const struct sockaddr *) peer, buf, sizeof(buf)), strerror(-r),
                                  e->n_client_errors);
                return NULL;
        }
        return c;
}

static void echo_serve(Echo *e, EchoSocket *s) {
        /* Bounded, so that one busy socket cannot starve the others or the signal fd. */
        for (unsigned round = 0; round < 16; round++) {
                int n = echo_receive_batch(e, s->fd, s->pktinfo);

                if (n <= 0)
                        return;
                if (!s->per_client)
                        echo_send_batch(e, s->fd, e->msgs, (unsigned) n);
                else
                        for (int i = 0; i < n; i++) {
                                EchoClient *c = echo_client_for(e, s, (unsigned) i);

                                if (!c) {
                                        echo_send_batch(e, s->fd, e->msgs + i, 1);
                                        continue;
                                }
                                /* Through the client's socket, from the address it is bound to. */
                                e->msgs[i].msg_hdr.msg_name = NULL;
                                e->msgs[i].msg_hdr.msg_namelen = 0;
                                e->msgs[i].msg_hdr.msg_control = NULL;
                                e->msgs[i].msg_hdr.msg_controllen = 0;
                                echo_send_batch(e, c->fd, e->msgs + i, 1);
                                client_touch(e, c, e->last_rx_nsec);
                        }
                if (n < RECV_BATCH)
                        return;
        }
}

/* A client's socket: its datagrams, and any other address's (misdelivered: counted, answered
 * to where they came from). */
static void echo_serve_client(Echo *e, EchoClient *c) {
        for (unsigned round = 0; round < 16; round++) {
                int n = echo_receive_batch(e, c->fd, false);

                if (n <= 0)
                        return;
                bool own = false;

                for (int i = 0; i < n; i++)
                        if (peer_equal(&e->peers[i], &c->peer))
                                own = true;
                        else
                                e->n_misdelivered++;
                /* Every reply to its datagram's source: a connected UDP socket may send elsewhere. */
                echo_send_batch(e, c->fd, e->msgs, (unsigned) n);
                if (own)
                        client_touch(e, c, e->last_rx_nsec);
                if (n < RECV_BATCH)
                        return;
        }
}

/* Whether a datagram (of any length, 0 included) waits in fd's receive queue. */
static bool socket_has_queued(int fd) {
        for (unsigned i = 0; i < 4; i++) {
                if (recv(fd, NULL, 0, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC) >= 0)
                        return true;
                if (errno != EINTR && errno != ECONNREFUSED)
                        return false; /* EAGAIN: nothing; an ICMP error is consumed: look again */
        }
        return false;
}

/*
 * Clients idle for --idle-exit are closed (a UDP client has no FIN: idle is its end). Idle is
 * judged by what was read; a socket with datagrams queued is not idle, only not read yet (the
 * loop was busy, e.g. opening many clients' sockets, each waiting --connect-delay): closing it
 * would drop them.
 */
static void echo_close_idle_clients(Echo *e, uint64_t now) {
        while (e->idle_head && now >= e->idle_head->last_nsec + arg_idle_exit_nsec) {
                EchoClient *c = e->idle_head;

                if (socket_has_queued(c->fd))
                        client_touch(e, c, now);
                else
                        client_close(e, c);
        }
}

/* The drain's end, like a client's: not while datagrams wait on a shared socket. */
static bool echo_udp_queued(Echo *e) {
        if (arg_errno > 0)
                return false; /* not watched (--errno): nothing will ever read them */
        for (size_t i = 0; i < e->n_sockets; i++)
                if (!e->sockets[i].stream && e->sockets[i].fd >= 0 && socket_has_queued(e->sockets[i].fd))
                        return true;
        return false;
}

/* ---- TCP: listeners and connections ---- */

static void conn_close(Echo *e, size_t index) {
        EchoConn *c = e->conns[index];

        if (!c)
                return;
        (void) epoll_ctl(e->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
        conn_free(c);
        e->conns[index] = NULL;
        e->n_conns--;
}

/* Sends what is queued; watches for writability while something is left. Returns < 0 when the
 * connection is to be closed (an error, or the "closing" reply is out). */
static int conn_flush(Echo *e, size_t index) {
        EchoConn *c = e->conns[index];

        while (c->out_off < c->out_len) {
                ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n <= 0)
                        return -EPIPE;
                c->out_off += (size_t) n;
        }
        if (c->out_off == c->out_len) {
                c->out_off = c->out_len = 0;
                if (c->closing)
                        return -ESHUTDOWN;
        }
        (void) epoll_ctl(e->epoll_fd, EPOLL_CTL_MOD, c->fd,
                         &(struct epoll_event) { .events = (c->closing ? 0 : EPOLLIN) | (c->out_len > 0 ? EPOLLOUT : 0),
                                                 .data.u64 = CONN_TOKEN | index });
        return 0;
}

/* Queues the reply to one line (without its newline). */
static int conn_reply(Echo *e, EchoConn *c, const char *line, size_t len) {
        /* The trailer with " closing" in front of its newline once draining. */
        size_t t = e->trailer_len - 1, need = len + t + (c->closing ? 8 : 0) + 1;

        if (c->out_len + need > OUT_MAX_BYTES)
                return -ENOBUFS; /* the peer does not read its replies */
        memcpy(c->out + c->out_len, line, len);
        memcpy(c->out + c->out_len + len, e->trailer, t);
        c->out_len += len + t;
        if (c->closing) {
                memcpy(c->out + c->out_len, " closing", 8);
                c->out_len += 8;
        }
        c->out[c->out_len++] = '\n';
        e->n_lines++;
        return 0;
}

static void conn_serve(Echo *e, size_t index, uint32_t events) {
        EchoConn *c = e->conns[index];
        bool eof = false;

        if (!c)
                return;
        if (events & EPOLLIN)
                for (unsigned round = 0; round < 16 && !c->closing; round++) {
                        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
                        size_t start = 0;

                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0 && errno == EAGAIN)
                                break;
                        if (n <= 0) {
                                if (n < 0)
                                        e->n_conn_errors++;
                                eof = true;
                                break;
                        }
                        c->in_len += (size_t) n;
                        c->last_nsec = now_nsec();
                        for (size_t i = 0; i < c->in_len && !c->closing; i++) {
                                if (c->in[i] != '\n')
                                        continue;
                                c->closing = e->state == STATE_DRAINING;
                                if (conn_reply(e, c, c->in + start, i - start) < 0) {
                                        e->n_conn_errors++;
                                        conn_close(e, index);
                                        return;
                                }
                                start = i + 1;
                        }
                        memmove(c->in, c->in + start, c->in_len - start);
                        c->in_len -= start;
                        if (c->in_len == sizeof(c->in)) {
                                /* A line longer than any request: not a client of ours. */
                                e->n_conn_errors++;
                                conn_close(e, index);
                                return;
                        }
                }
        if (conn_flush(e, index) < 0 || (eof && c->out_len == 0))
                conn_close(e, index);
}

static int conn_add(Echo *e, int fd) {
        size_t index;
        EchoConn *c;

        if (e->n_conns == e->n_conns_allocated) {
                size_t n = e->n_conns_allocated ? e->n_conns_allocated * 2 : 64;
                EchoConn **l = realloc(e->conns, n * sizeof(EchoConn *));

                if (!l)
                        return -ENOMEM;
                for (size_t i = e->n_conns_allocated; i < n; i++)
                        l[i] = NULL;
                e->conns = l;
                e->n_conns_allocated = n;
        }
        for (index = 0; e->conns[index]; index++)
                ;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->out = malloc(OUT_MAX_BYTES);
        if (!c->out) {
                free(c);
                return -ENOMEM;
        }
        c->fd = fd;
        c->last_nsec = now_nsec();
        if (epoll_ctl(e->epoll_fd, EPOLL_CTL_ADD, fd,
                      &(struct epoll_event) { .events = EPOLLIN, .data.u64 = CONN_TOKEN | index }) < 0) {
                int r = negative_errno();
                c->fd = -EBADF;
                conn_free(c);
                return r;
        }
        e->conns[index] = c;
        e->n_conns++;
        return 0;
}

static void echo_set_listeners_watched(Echo *e, bool watched) {
        for (size_t i = 0; i < e->n_sockets; i++)
                if (e->sockets[i].stream && e->sockets[i].fd >= 0)
                        (void) epoll_ctl(e->epoll_fd, EPOLL_CTL_MOD, e->sockets[i].fd,
                                         &(struct epoll_event) { .events = watched ? EPOLLIN : 0, .data.u64 = i });
}

static void echo_accept(Echo *e, EchoSocket *s) {
        if (arg_accept_every_nsec > 0) {
                /* Test knob: everything queued now, then nothing until the next batch. */
                e->accept_paused_until_nsec = now_nsec() + arg_accept_every_nsec;
                echo_set_listeners_watched(e, false);
        }
        /* Bounded, like echo_serve(). */
        for (unsigned n = 0; n < (arg_accept_every_nsec > 0 ? 100000U : 256U); n++) {
                int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), one = 1;

                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* Leave them queued (level-triggered epoll would spin): try again
                                 * shortly, when connections may have closed. */
                                e->accept_paused_until_nsec = now_nsec() + ACCEPT_PAUSE_NSEC;
                                echo_set_listeners_watched(e, false);
                        }
                        return;
                }
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                if (conn_add(e, fd) < 0) {
                        safe_close(fd);
                        e->n_conn_errors++;
                        continue;
                }
                e->n_accepted++;
        }
}

/* The drain: listeners close (what waits in their queues moves to the working generation), and
 * every connection says "closing" with its next reply. */
static void echo_close_listeners(Echo *e) {
        for (size_t i = 0; i < e->n_sockets; i++)
                if (e->sockets[i].stream && e->sockets[i].fd >= 0) {
                        (void) epoll_ctl(e->epoll_fd, EPOLL_CTL_DEL, e->sockets[i].fd, NULL);
                        e->sockets[i].fd = safe_close(e->sockets[i].fd);
                }
}

/* While draining: connections idle for --idle-exit are closed. Returns when the next one is due. */
static uint64_t echo_close_idle(Echo *e, uint64_t now) {
        uint64_t next = UINT64_MAX;

        for (size_t i = 0; i < e->n_conns_allocated; i++) {
                EchoConn *c = e->conns[i];
                uint64_t due;

                if (!c)
                        continue;
                due = c->last_nsec + arg_idle_exit_nsec;
                if (now >= due && c->out_len == 0)
                        conn_close(e, i);
                else if (due < next)
                        next = due;
        }
        return next;
}

static void echo_start_drain(Echo *e, int sig) {
        char name[32];
        uint64_t now = now_nsec();

        if (e->state == STATE_DRAINING) {
                log_state(e, "already draining, ignoring %s", format_signal(sig, name, sizeof(name)));
                return;
        }

        e->state = STATE_DRAINING;
        e->drain_start_nsec = now;
        if (e->last_rx_nsec < now)
                e->last_rx_nsec = now; /* the idle time counts from the start of the drain */
        echo_close_listeners(e);
        for (size_t i = 0; i < e->n_conns_allocated; i++)
                if (e->conns[i] && e->conns[i]->last_nsec < now)
                        e->conns[i]->last_nsec = now;
        (void) sd_notifyf(0, "STOPPING=1\nSTATUS=Draining %zu sockets, %zu connections and %zu clients' sockets, "
                          "generation %" PRIu64, e->n_udp, e->n_conns, e->n_clients, e->generation);
        log_state(e, "draining on %s (exit after %.3f s idle%s)",
                  format_signal(sig, name, sizeof(name)), (double) arg_idle_exit_nsec / NSEC_PER_SEC,
                  arg_max_drain_nsec > 0 ? ", bounded by --max-drain" : "");
}

static void echo_handle_signals(Echo *e) {
        struct signalfd_siginfo si;

        while (read(e->signal_fd, &si, sizeof(si)) == sizeof(si))
                echo_start_drain(e, (int) si.ssi_signo);
}

/* The last line of every exit, for scripts (tools/bench/connect-per-client reads it). */
static void echo_log_summary(const Echo *e) {
        log_state(e, "summary answered=%" PRIu64 " dropped=%" PRIu64 " clients=%" PRIu64 " misdelivered=%" PRIu64
                  " client_errors=%" PRIu64, e->n_answered, e->n_dropped, e->n_clients_opened, e->n_misdelivered,
                  e->n_client_errors);
}

/*
 * Runs what is due at now. Returns 1 to keep running, 0 or a positive exit code through
 * *ret_exit when the process should end.
 */
static int echo_run_timers(Echo *e, uint64_t now, int *ret_exit) {
        if (e->state == STATE_STARTING && now >= e->ready_at_nsec) {
                if (arg_fail_start) {
                        log_state(e, "failing start as requested (--fail-start)");
                        echo_log_summary(e);
                        *ret_exit = EXIT_FAILURE;
                        return 0;
                }
                if (arg_errno > 0) {
                        (void) sd_notifyf(0, "ERRNO=%i\nSTATUS=Failed to start: %s", arg_errno, strerror(arg_errno));
                        log_state(e, "reported ERRNO=%i, not answering", arg_errno);
                        e->state = STATE_FAILED;
                } else if (arg_never_ready) {
                        log_state(e, "serving, but never sending READY=1 (--never-ready)");
                        e->state = STATE_SERVING;
                } else {
                        (void) sd_notifyf(0, "READY=1\nSTATUS=Serving %zu sockets, generation %" PRIu64,
                                          e->n_sockets, e->generation);
                        e->state = STATE_SERVING;
                }
                if (arg_crash)
                        e->crash_at_nsec = now + arg_crash_after_nsec;
        }

        if (e->crash_at_nsec > 0 && now >= e->crash_at_nsec) {
                log_state(e, "crashing as requested (--crash-after)");
                echo_log_summary(e);
                /* A simulated crash: no core file to clean up after. */
                (void) setrlimit(RLIMIT_CORE, &(struct rlimit) { 0, 0 });
                abort();
        }

        if (e->accept_paused_until_nsec > 0 && now >= e->accept_paused_until_nsec) {
                e->accept_paused_until_nsec = 0;
                echo_set_listeners_watched(e, true);
        }

        echo_close_idle_clients(e, now);

        if (e->state == STATE_DRAINING) {
                (void) echo_close_idle(e, now);
                if (e->n_conns == 0 && e->n_clients == 0 &&
                    (e->n_udp == 0 || now >= e->last_rx_nsec + arg_idle_exit_nsec) && !echo_udp_queued(e)) {
                        log_state(e, "drained, exiting (%" PRIu64 " datagrams answered, %" PRIu64 " dropped, "
                                  "%" PRIu64 " connections, %" PRIu64 " lines answered, %" PRIu64 " clients' sockets, "
                                  "%" PRIu64 " datagrams misdelivered)",
                                  e->n_answered, e->n_dropped, e->n_accepted, e->n_lines, e->n_clients_opened,
                                  e->n_misdelivered);
                        echo_log_summary(e);
                        *ret_exit = EXIT_SUCCESS;
                        return 0;
                }
                if (arg_max_drain_nsec > 0 && now >= e->drain_start_nsec + arg_max_drain_nsec) {
                        log_state(e, "drain deadline reached, exiting (%" PRIu64 " datagrams answered, %" PRIu64 " dropped, "
                                  "%zu connections and %zu clients' sockets still open, %" PRIu64
                                  " datagrams misdelivered)", e->n_answered, e->n_dropped, e->n_conns, e->n_clients,
                                  e->n_misdelivered);
                        echo_log_summary(e);
                        *ret_exit = EXIT_SUCCESS;
                        return 0;
                }
        }
        return 1;
}

/* Milliseconds until the next timer is due, rounded up; -1 if nothing is scheduled. */
static int echo_next_timeout_ms(Echo *e, uint64_t now) {
        uint64_t next = UINT64_MAX;

        if (e->state == STATE_STARTING)
                next = e->ready_at_nsec;
        if (e->crash_at_nsec > 0 && e->crash_at_nsec < next)
                next = e->crash_at_nsec;
        if (e->accept_paused_until_nsec > 0 && e->accept_paused_until_nsec < next)
                next = e->accept_paused_until_nsec;
        if (e->idle_head && e->idle_head->last_nsec + arg_idle_exit_nsec < next)
                next = e->idle_head->last_nsec + arg_idle_exit_nsec;
        if (e->state == STATE_DRAINING) {
                uint64_t idle = e->last_rx_nsec + arg_idle_exit_nsec;

                if (e->n_udp > 0 && idle < next)
                        next = idle;
                for (size_t i = 0; i < e->n_conns_allocated; i++)
                        if (e->conns[i] && e->conns[i]->last_nsec + arg_idle_exit_nsec < next)
                                next = e->conns[i]->last_nsec + arg_idle_exit_nsec;
                if (e->n_conns == 0 && e->n_clients == 0 && e->n_udp == 0)
                        next = now;
                if (arg_max_drain_nsec > 0 && e->drain_start_nsec + arg_max_drain_nsec < next)
                        next = e->drain_start_nsec + arg_max_drain_nsec;
        }
        if (next == UINT64_MAX)
                return -1;
        if (next <= now)
                return 0;
        next = (next - now + NSEC_PER_SEC / 1000 - 1) / (NSEC_PER_SEC / 1000);
        return next > INT32_MAX ? INT32_MAX : (int) next;
}

static int echo_run(Echo *e) {
        struct epoll_event events[64];

        e->start_nsec = now_nsec();
        e->state = STATE_STARTING;
        e->ready_at_nsec = e->start_nsec + arg_start_delay_nsec + (arg_fail_start ? FAIL_START_DELAY_NSEC : 0);
        if (arg_extend_timeout_nsec > 0)
                (void) sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%" PRIu64 "\nSTATUS=Starting slowly",
                                  arg_extend_timeout_nsec / 1000);

        for (;;) {
                uint64_t now = now_nsec();
                int n, exit_code = 0;

                if (echo_run_timers(e, now, &exit_code) == 0)
                        return exit_code;

                n = epoll_wait(e->epoll_fd, events, ELEMENTSOF(events), echo_next_timeout_ms(e, now));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "grm-echo: epoll_wait(): %m\n");
                        return EXIT_FAILURE;
                }

                for (int i = 0; i < n; i++) {
                        uint64_t token = events[i].data.u64;

                        if (token == SIGNAL_TOKEN)
                                echo_handle_signals(e);
                        else if (token & CONN_TOKEN) {
                                if ((size_t) (token & ~CONN_TOKEN) < e->n_conns_allocated)
                                        conn_serve(e, (size_t) (token & ~CONN_TOKEN), events[i].events);
                        } else if (token & CLIENT_TOKEN) {
                                size_t index = (size_t) (token & ~CLIENT_TOKEN);

                                if (index < e->n_clients_allocated && e->clients[index])
                                        echo_serve_client(e, e->clients[index]);
                        } else if (e->state != STATE_FAILED && token < e->n_sockets && e->sockets[token].fd >= 0) {
                                if (e->sockets[token].stream)
                                        echo_accept(e, &e->sockets[token]);
                                else
                                        echo_serve(e, &e->sockets[token]);
                        }
                }
        }
}

int main(int argc, char *argv[]) {
        _cleanup_(echo_freep) Echo *e = NULL;
        _cleanup_(arg_listen_freep) char **listen_cleanup = NULL;
        int r;

        r = parse_argv(argc, argv);
        listen_cleanup = arg_listen;
        if (r == -ENOMEM) {
                fprintf(stderr, "grm-echo: out of memory\n");
                return EXIT_FAILURE;
        }
        if (r < 0)
                return EXIT_USAGE;
        if (r == 0)
                return EXIT_SUCCESS;

        r = echo_new(&e);
        if (r < 0) {
                if (r != -EINVAL)
                        fprintf(stderr, "grm-echo: setup failed: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        r = echo_collect_sockets(e);
        if (r < 0)
                return EXIT_FAILURE;

        if (arg_connect_per_client) {
                /* A socket per client: as many as the hard limit allows (best effort). */
                struct rlimit rl;

                if (getrlimit(RLIMIT_NOFILE, &rl) >= 0 && rl.rlim_cur < rl.rlim_max) {
                        rl.rlim_cur = rl.rlim_max;
                        (void) setrlimit(RLIMIT_NOFILE, &rl);
                }
        }

        r = echo_setup_signals(e);
        if (r < 0) {
                fprintf(stderr, "grm-echo: cannot set up signal handling: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        /* With --errno the instance answers nothing, so its sockets are not even watched. */
        if (arg_errno == 0)
                for (size_t i = 0; i < e->n_sockets; i++)
                        if (epoll_ctl(e->epoll_fd, EPOLL_CTL_ADD, e->sockets[i].fd,
                                      &(struct epoll_event) { .events = EPOLLIN, .data.u64 = i }) < 0) {
                                fprintf(stderr, "grm-echo: cannot watch socket fd %d: %m\n", e->sockets[i].fd);
                                return EXIT_FAILURE;
                        }

        log_state(e, "serving %zu sockets", e->n_sockets);
        return echo_run(e);
}
