/* SPDX-License-Identifier: MIT */
/*
 * grm-load --tcp: drives TCP traffic at a grm service (normally grm-echo) through restarts and
 * reports what a restart cost a TCP client: connections refused, reset, timed out or broken.
 *
 * Two kinds of clients run at once:
 *  - new connections, --rate per second: connect, send one request line, read its reply, close;
 *  - --long-lived sessions: a connection each that sends a request every --interval and waits
 *    for its reply. A reply that says "closing" (the instance is draining) ends the connection
 *    gracefully and the session reconnects for its next request; a session answered by another
 *    generation than its first counts as moved (expected: that is how it follows a restart).
 *    Anything else that ends a session's connection (reset, EOF without a reply, a timeout) is
 *    a broken session.
 *
 * A request is "S<id>\n" or "L<session> <seq>\n"; the reply must be the request without its
 * newline followed by " gen=<N> pid=<P>" and optionally " closing", then "\n". Anything else is
 * a bad reply.
 *
 * Owns: the connections, one epoll loop, the pacing and the accounting. Invariants: every new
 * connection started ends in exactly one of answered, refused, reset, timed_out, broken,
 * bad_reply (after the grace period whatever is still open is timed_out); a connection's fd is
 * closed only by conn_end().
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "grm-load-tcp.h"
#include "macro.h"
#include "tools-util.h"

#define TCP_SESSIONS_MAX 20000
#define TCP_INFLIGHT_MAX 20000
#define TCP_LINE_MAX 256
#define TCP_GENERATIONS_MAX 4096
#define TCP_RECONNECT_NSEC (10 * NSEC_PER_SEC / 1000) /* after a broken long-lived connection */
#define TCP_BURST_MAX 256                              /* new connections started per tick */
#define TCP_SIGNAL_TOKEN UINT64_MAX

/* Latency histogram: exact below 128 us, then 64 buckets per power of two. */
#define HIST_LINEAR 128
#define HIST_SUB 64
#define HIST_BUCKETS (HIST_LINEAR + (63 - 7 + 1) * HIST_SUB)

enum {
        EXIT_OK = 0,
        EXIT_DEGRADED = 1,
        EXIT_USAGE = 2,
        EXIT_SETUP = 3,
};

typedef enum ConnState {
        CONN_CONNECTING,
        CONN_WAITING,     /* request sent, reply expected */
        CONN_IDLE,        /* long-lived, between requests */
} ConnState;

typedef enum Outcome {
        OUT_ANSWERED,
        OUT_REFUSED,
        OUT_RESET,
        OUT_TIMED_OUT,
        OUT_BROKEN,       /* closed by the server before the reply */
        OUT_BAD_REPLY,
        _OUT_MAX,
} Outcome;

static const char *const outcome_names[_OUT_MAX] = {
        [OUT_ANSWERED] = "answered",
        [OUT_REFUSED] = "refused",
        [OUT_RESET] = "reset",
        [OUT_TIMED_OUT] = "timed_out",
        [OUT_BROKEN] = "broken",
        [OUT_BAD_REPLY] = "bad_replies",
};

typedef struct Session Session;

typedef struct Conn {
        int fd;
        uint32_t index;               /* in TcpLoad.conns */
        ConnState state;
        Session *session;             /* NULL: a new connection (one request) */
        uint64_t id;
        uint64_t start_nsec;          /* connect() */
        uint64_t sent_nsec;           /* request sent */
        uint64_t deadline_nsec;       /* of the connect or of the reply */
        size_t in_len;
        char request[TCP_LINE_MAX];
        size_t request_len;
        char in[TCP_LINE_MAX];
} Conn;

struct Session {
        uint32_t id;
        Conn *conn;                   /* NULL: reconnecting */
        uint32_t seq;
        uint64_t next_nsec;           /* next request, or the reconnect */
        bool has_gen, moved;
        uint64_t first_gen;
};

typedef struct TcpGeneration {
        uint64_t number;
        uint64_t connections;         /* new connections it answered */
        uint64_t replies;             /* every reply, long-lived ones included */
} TcpGeneration;

typedef struct Counts {
        uint64_t v[_OUT_MAX];
} Counts;

typedef struct TcpLoad {
        struct sockaddr_storage target;
        socklen_t target_len;
        int epoll_fd, signal_fd;

        Conn **conns;                 /* by index; NULL: free */
        uint32_t n_conns_allocated, n_conns;
        Session *sessions;

        uint64_t start_nsec, end_nsec, grace_end_nsec;
        bool sending, interrupted;
        uint64_t started;             /* new connections started */
        uint64_t next_id;

        Counts conn;                  /* new connections */
        Counts sess;                  /* long-lived requests */
        uint64_t long_requests, reconnects, moved, sessions_broken, open_errors;
        uint64_t latency_max_usec, latency_hist[HIST_BUCKETS];

        TcpGeneration *gens;
        size_t n_gens;
} TcpLoad;

static const char *arg_target;
static double arg_rate = 100;
static uint32_t arg_sessions = 0;
static uint64_t arg_interval_nsec = 100 * NSEC_PER_SEC / 1000;
static uint64_t arg_duration_nsec = 5 * NSEC_PER_SEC;
static uint64_t arg_timeout_nsec = 2 * NSEC_PER_SEC;
static uint64_t arg_grace_nsec = NSEC_PER_SEC;
static bool arg_json = false, arg_quiet = false;

static int tcp_log(int r, const char *fmt, ...) _printf_(2, 3);
static int tcp_log(int r, const char *fmt, ...) {
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
        printf("Usage: %s --tcp [OPTIONS] TARGET\n"
               "\n"
               "Sends TCP traffic to TARGET (ADDR:PORT, or [ADDR]:PORT for IPv6) and checks the\n"
               "replies of a grm-echo style service (each request line answered with the line and\n"
               "\" gen=N pid=P\\n\"): new connections per second (connect, one request, reply,\n"
               "close) and long-lived sessions (a request every --interval on one connection,\n"
               "reconnecting when a reply says \"closing\"). Counts refused, reset, timed out and\n"
               "broken connections and sessions answered by more than one generation (moved).\n"
               "\n"
               "Options:\n"
               "  -h --help                  Show this help and exit\n"
               "     --tcp                   TCP mode (this help); without it grm-load sends UDP\n"
               "  -r --rate CPS              New connections per second (default 100; 0: none)\n"
               "  -L --long-lived N          Long-lived sessions, 0..%u (default 0)\n"
               "  -i --interval SEC          Time between a session's requests (default 0.1)\n"
               "  -d --duration SEC          How long to send (default 5, fractions allowed)\n"
               "  -t --timeout MS            A connect or reply slower than this is timed out\n"
               "                             (default 2000)\n"
               "  -g --grace MS              Wait up to MS milliseconds for replies after the\n"
               "                             last request (default 1000)\n"
               "     --json                  Print the report as one JSON object\n"
               "  -q --quiet                 Print no human report (--json is still printed)\n"
               "\n"
               "Exit status:\n"
               "  0  nothing refused, reset, timed out, broken or badly answered (moved is fine)\n"
               "  1  one of those is not zero, or nothing was answered\n"
               "  2  usage error\n"
               "  3  setup error\n",
               program_invocation_short_name, TCP_SESSIONS_MAX);
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

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_TCP = 0x100, ARG_JSON };
        static const struct option options[] = {
                { "help",       no_argument,       NULL, 'h'      },
                { "tcp",        no_argument,       NULL, ARG_TCP  },
                { "rate",       required_argument, NULL, 'r'      },
                { "long-lived", required_argument, NULL, 'L'      },
                { "interval",   required_argument, NULL, 'i'      },
                { "duration",   required_argument, NULL, 'd'      },
                { "timeout",    required_argument, NULL, 't'      },
                { "grace",      required_argument, NULL, 'g'      },
                { "json",       no_argument,       NULL, ARG_JSON },
                { "quiet",      no_argument,       NULL, 'q'      },
                {}
        };
        uint64_t u;
        int c;

        opterr = 0;
        optind = 1;
        while ((c = getopt_long(argc, argv, ":hr:L:i:d:t:g:q", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return help();
                case ARG_TCP:
                        break;
                case 'r':
                        if (streq(optarg, "0"))
                                arg_rate = 0;
                        else if (parse_positive_double(optarg, 1e6, &arg_rate) < 0)
                                return usage_error("--rate: expected connections per second 0..1000000, got '%s'", optarg);
                        break;
                case 'L':
                        if (parse_u64_range(optarg, 0, TCP_SESSIONS_MAX, &u) < 0)
                                return usage_error("--long-lived: expected 0..%u, got '%s'", TCP_SESSIONS_MAX, optarg);
                        arg_sessions = (uint32_t) u;
                        break;
                case 'i':
                        if (parse_seconds(optarg, 3600, &arg_interval_nsec) < 0 || arg_interval_nsec < NSEC_PER_SEC / 1000)
                                return usage_error("--interval: expected 0.001..3600 seconds, got '%s'", optarg);
                        break;
                case 'd':
                        if (parse_seconds(optarg, 86400 * 7, &arg_duration_nsec) < 0 || arg_duration_nsec == 0)
                                return usage_error("--duration: expected seconds > 0 and <= 604800, got '%s'", optarg);
                        break;
                case 't':
                        if (parse_u64_range(optarg, 1, 600000, &u) < 0)
                                return usage_error("--timeout: expected 1..600000 milliseconds, got '%s'", optarg);
                        arg_timeout_nsec = u * (NSEC_PER_SEC / 1000);
                        break;
                case 'g':
                        if (parse_u64_range(optarg, 0, 600000, &u) < 0)
                                return usage_error("--grace: expected 0..600000 milliseconds, got '%s'", optarg);
                        arg_grace_nsec = u * (NSEC_PER_SEC / 1000);
                        break;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case 'q':
                        arg_quiet = true;
                        break;
                case ':':
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                case '?':
                        if (optopt)
                                return usage_error("unknown option '-%c' in --tcp mode", optopt);
                        return usage_error("unknown option '%s' in --tcp mode", argv[optind - 1]);
                default:
                        return usage_error("unexpected option");
                }

        if (optind >= argc)
                return usage_error("missing TARGET (ADDR:PORT or [ADDR]:PORT); see --tcp --help");
        if (optind + 1 < argc)
                return usage_error("unexpected argument '%s'", argv[optind + 1]);
        if (arg_rate == 0 && arg_sessions == 0)
                return usage_error("nothing to do: --rate 0 and no --long-lived sessions");
        arg_target = argv[optind];
        return 1;
}

/* ---- accounting ---- */

static size_t hist_index(uint64_t v) {
        unsigned bits;

        if (v < HIST_LINEAR)
                return (size_t) v;
        bits = 63 - (unsigned) __builtin_clzll(v);
        return HIST_LINEAR + (bits - 7) * HIST_SUB + (size_t) ((v >> (bits - 6)) & (HIST_SUB - 1));
}

static uint64_t hist_value(size_t i) {
        unsigned bits;

        if (i < HIST_LINEAR)
                return i;
        bits = (unsigned) ((i - HIST_LINEAR) / HIST_SUB) + 7;
        return ((uint64_t) HIST_SUB + (i - HIST_LINEAR) % HIST_SUB) << (bits - 6);
}

static uint64_t latency_percentile(const TcpLoad *l, double p) {
        uint64_t total = l->conn.v[OUT_ANSWERED], want, seen = 0;

        if (total == 0)
                return 0;
        want = (uint64_t) (p * (double) total + 0.5);
        if (want == 0)
                want = 1;
        for (size_t i = 0; i < HIST_BUCKETS; i++) {
                seen += l->latency_hist[i];
                if (seen >= want)
                        return hist_value(i);
        }
        return l->latency_max_usec;
}

static TcpGeneration *load_generation(TcpLoad *l, uint64_t number) {
        for (size_t i = 0; i < l->n_gens; i++)
                if (l->gens[i].number == number)
                        return &l->gens[i];
        if (l->n_gens >= TCP_GENERATIONS_MAX)
                return NULL;
        l->gens[l->n_gens] = (TcpGeneration) { .number = number };
        return &l->gens[l->n_gens++];
}

/* ---- connections ---- */

static void conn_end(TcpLoad *l, Conn *c, int outcome) {
        Session *s = c->session;
        uint64_t now = now_nsec();

        if (outcome >= 0) {
                if (s)
                        l->sess.v[outcome]++;
                else
                        l->conn.v[outcome]++;
        }
        if (s) {
                s->conn = NULL;
                if (outcome >= 0 && outcome != OUT_ANSWERED) {
                        l->sessions_broken++;
                        s->next_nsec = now + TCP_RECONNECT_NSEC;
                }
        }
        (void) epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
        safe_close(c->fd);
        l->conns[c->index] = NULL;
        l->n_conns--;
        free(c);
}

/* What an error on a connection means for its client. */
static int outcome_of_errno(int error, ConnState state) {
        if (error == ECONNREFUSED)
                return OUT_REFUSED;
        if (error == ECONNRESET || error == EPIPE)
                return OUT_RESET;
        if (error == ETIMEDOUT)
                return OUT_TIMED_OUT;
        return state == CONN_CONNECTING ? OUT_REFUSED : OUT_RESET;
}

static int conn_open(TcpLoad *l, Session *s, uint64_t now) {
        uint32_t index;
        Conn *c;
        int fd, one = 1;

        if (l->n_conns >= TCP_INFLIGHT_MAX)
                return -EMFILE;
        if (l->n_conns == l->n_conns_allocated) {
                uint32_t n = l->n_conns_allocated ? l->n_conns_allocated * 2 : 1024;
                Conn **v = realloc(l->conns, n * sizeof(Conn *));

                if (!v)
                        return -ENOMEM;
                for (uint32_t i = l->n_conns_allocated; i < n; i++)
                        v[i] = NULL;
                l->conns = v;
                l->n_conns_allocated = n;
        }
        for (index = 0; l->conns[index]; index++)
                ;

        fd = socket(l->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(*c));
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        *c = (Conn) {
                .fd = fd,
                .index = index,
                .state = CONN_CONNECTING,
                .session = s,
                .id = s ? s->id : l->next_id++,
                .start_nsec = now,
                .deadline_nsec = now + arg_timeout_nsec,
        };
        l->conns[index] = c;
        l->n_conns++;
        if (s)
                s->conn = c;
        if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd,
                      &(struct epoll_event) { .events = EPOLLOUT, .data.u64 = index }) < 0) {
                int r = negative_errno();
                conn_end(l, c, -1);
                return r;
        }
        if (connect(fd, (struct sockaddr *) &l->target, l->target_len) < 0 && errno != EINPROGRESS) {
                conn_end(l, c, outcome_of_errno(errno, CONN_CONNECTING));
                return 0;
        }
        return 0;
}

static void conn_send(TcpLoad *l, Conn *c, uint64_t now) {
        ssize_t n;

        if (c->session) {
                c->request_len = (size_t) snprintf(c->request, sizeof(c->request), "L%" PRIu32 " %" PRIu32 "\n",
                                                   c->session->id, c->session->seq++);
                l->long_requests++;
        } else
                c->request_len = (size_t) snprintf(c->request, sizeof(c->request), "S%" PRIu64 "\n", c->id);
        c->sent_nsec = now;
        c->deadline_nsec = now + arg_timeout_nsec;
        c->in_len = 0;
        c->state = CONN_WAITING;
        /* A few bytes on a fresh connection: the send buffer has room. */
        n = send(c->fd, c->request, c->request_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n != (ssize_t) c->request_len) {
                conn_end(l, c, n < 0 ? outcome_of_errno(errno, CONN_WAITING) : OUT_RESET);
                return;
        }
        (void) epoll_ctl(l->epoll_fd, EPOLL_CTL_MOD, c->fd,
                         &(struct epoll_event) { .events = EPOLLIN, .data.u64 = c->index });
}

/* Parses "<request> gen=N pid=P[ closing]\n". Returns 0 and the generation, or -EBADMSG. */
static int parse_reply(const Conn *c, const char *line, size_t len, uint64_t *ret_gen, bool *ret_closing) {
        size_t req = c->request_len - 1;
        const char *p, *end = line + len;
        uint64_t gen = 0, pid = 0;

        if (len < req || memcmp(line, c->request, req) != 0)
                return -EBADMSG;
        p = line + req;
        if (end - p < 5 || memcmp(p, " gen=", 5) != 0)
                return -EBADMSG;
        p += 5;
        if (p == end || *p < '0' || *p > '9')
                return -EBADMSG;
        while (p < end && *p >= '0' && *p <= '9' && gen < UINT64_MAX / 10)
                gen = gen * 10 + (uint64_t) (*p++ - '0');
        if (end - p < 5 || memcmp(p, " pid=", 5) != 0)
                return -EBADMSG;
        p += 5;
        if (p == end || *p < '0' || *p > '9')
                return -EBADMSG;
        while (p < end && *p >= '0' && *p <= '9' && pid < UINT64_MAX / 10)
                pid = pid * 10 + (uint64_t) (*p++ - '0');
        *ret_closing = false;
        if (end - p == 8 && memcmp(p, " closing", 8) == 0)
                *ret_closing = true;
        else if (p != end)
                return -EBADMSG;
        *ret_gen = gen;
        return 0;
}

static void conn_reply(TcpLoad *l, Conn *c, const char *line, size_t len, uint64_t now) {
        Session *s = c->session;
        TcpGeneration *g;
        uint64_t gen;
        bool closing;

        if (parse_reply(c, line, len, &gen, &closing) < 0) {
                conn_end(l, c, OUT_BAD_REPLY);
                return;
        }
        g = load_generation(l, gen);
        if (g)
                g->replies++;
        if (!s) {
                uint64_t usec = (now - c->start_nsec) / 1000;

                if (g)
                        g->connections++;
                l->latency_hist[hist_index(usec) < HIST_BUCKETS ? hist_index(usec) : HIST_BUCKETS - 1]++;
                if (usec > l->latency_max_usec)
                        l->latency_max_usec = usec;
                conn_end(l, c, OUT_ANSWERED);
                return;
        }

        l->sess.v[OUT_ANSWERED]++;
        if (!s->has_gen) {
                s->has_gen = true;
                s->first_gen = gen;
        } else if (gen != s->first_gen && !s->moved) {
                s->moved = true;
                l->moved++;
        }
        s->next_nsec = c->sent_nsec + arg_interval_nsec;
        if (closing) {
                /* The instance drains: this connection is done, the session goes on. */
                l->reconnects++;
                conn_end(l, c, -1);
                return;
        }
        c->state = CONN_IDLE;
        c->deadline_nsec = UINT64_MAX;
}

static void conn_readable(TcpLoad *l, Conn *c, uint64_t now) {
        for (;;) {
                ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
                char *nl;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n < 0) {
                        conn_end(l, c, outcome_of_errno(errno, c->state));
                        return;
                }
                if (n == 0) {
                        /* Closed by the server: fine between a session's requests only if it said
                         * "closing" (handled with the reply); anything else broke the client. */
                        conn_end(l, c, OUT_BROKEN);
                        return;
                }
                c->in_len += (size_t) n;
                nl = memchr(c->in, '\n', c->in_len);
                if (nl) {
                        if (c->state != CONN_WAITING || (size_t) (nl - c->in) + 1 != c->in_len) {
                                conn_end(l, c, OUT_BAD_REPLY); /* unasked for, or more than one line */
                                return;
                        }
                        conn_reply(l, c, c->in, (size_t) (nl - c->in), now);
                        return;
                }
                if (c->in_len == sizeof(c->in)) {
                        conn_end(l, c, OUT_BAD_REPLY);
                        return;
                }
        }
}

static void conn_event(TcpLoad *l, Conn *c, uint32_t events, uint64_t now) {
        if (c->state == CONN_CONNECTING) {
                int error = 0;
                socklen_t len = sizeof(error);

                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        error = errno;
                if (error != 0) {
                        conn_end(l, c, outcome_of_errno(error, CONN_CONNECTING));
                        return;
                }
                if (!(events & EPOLLOUT))
                        return;
                if (c->session && now < c->session->next_nsec) {
                        c->state = CONN_IDLE;
                        c->deadline_nsec = UINT64_MAX;
                        (void) epoll_ctl(l->epoll_fd, EPOLL_CTL_MOD, c->fd,
                                         &(struct epoll_event) { .events = EPOLLIN, .data.u64 = c->index });
                        return;
                }
                conn_send(l, c, now);
                return;
        }
        conn_readable(l, c, now);
}

/* ---- the loop ---- */

static void load_tick(TcpLoad *l, uint64_t now) {
        if (l->sending && now >= l->end_nsec) {
                l->sending = false;
                l->grace_end_nsec = now + arg_grace_nsec;
        }

        if (l->sending && arg_rate > 0) {
                uint64_t due = (uint64_t) ((double) (now - l->start_nsec) / NSEC_PER_SEC * arg_rate);
                unsigned burst = 0;

                /* A stalled loop does not make up more than one burst. */
                if (due > l->started + TCP_BURST_MAX * 4)
                        l->started = due - TCP_BURST_MAX * 4;
                while (l->started < due && burst++ < TCP_BURST_MAX) {
                        l->started++;
                        if (conn_open(l, NULL, now) < 0)
                                l->open_errors++;
                }
        }

        for (uint32_t i = 0; i < arg_sessions; i++) {
                Session *s = &l->sessions[i];

                if (!l->sending || now < s->next_nsec)
                        continue;
                if (!s->conn) {
                        if (conn_open(l, s, now) < 0) {
                                l->open_errors++;
                                s->next_nsec = now + TCP_RECONNECT_NSEC;
                        }
                } else if (s->conn->state == CONN_IDLE)
                        conn_send(l, s->conn, now);
        }

        for (uint32_t i = 0; i < l->n_conns_allocated; i++) {
                Conn *c = l->conns[i];

                if (c && now >= c->deadline_nsec)
                        conn_end(l, c, OUT_TIMED_OUT);
        }
}

static int load_run(TcpLoad *l) {
        struct epoll_event events[256];

        l->start_nsec = now_nsec();
        l->end_nsec = l->start_nsec + arg_duration_nsec;
        l->sending = true;
        /* Sessions start spread over one interval, not all at once. */
        for (uint32_t i = 0; i < arg_sessions; i++)
                l->sessions[i] = (Session) {
                        .id = i,
                        .next_nsec = l->start_nsec + arg_interval_nsec * i / (arg_sessions ? arg_sessions : 1),
                };

        for (;;) {
                uint64_t now = now_nsec();
                int n;

                load_tick(l, now);
                if (!l->sending) {
                        bool waiting = false;

                        for (uint32_t i = 0; i < l->n_conns_allocated && !waiting; i++)
                                waiting = l->conns[i] && l->conns[i]->state != CONN_IDLE;
                        if (!waiting || now >= l->grace_end_nsec)
                                break;
                }

                n = epoll_wait(l->epoll_fd, events, ELEMENTSOF(events), 1);
                if (n < 0 && errno != EINTR)
                        return tcp_log(negative_errno(), "epoll_wait: %m");
                now = now_nsec();
                for (int i = 0; i < n; i++) {
                        uint64_t token = events[i].data.u64;

                        if (token == TCP_SIGNAL_TOKEN) {
                                struct signalfd_siginfo si;

                                while (read(l->signal_fd, &si, sizeof(si)) == sizeof(si))
                                        ;
                                l->interrupted = true;
                                if (l->sending) {
                                        l->sending = false;
                                        l->end_nsec = now;
                                        l->grace_end_nsec = now + arg_grace_nsec;
                                }
                        } else if (token < l->n_conns_allocated && l->conns[token])
                                conn_event(l, l->conns[token], events[i].events, now);
                }
        }

        /* Whatever still waits for a reply after the grace period timed out. */
        for (uint32_t i = 0; i < l->n_conns_allocated; i++)
                if (l->conns[i])
                        conn_end(l, l->conns[i], l->conns[i]->state == CONN_IDLE ? -1 : OUT_TIMED_OUT);
        l->end_nsec = l->end_nsec < now_nsec() ? l->end_nsec : now_nsec();
        return 0;
}

static int load_setup(TcpLoad *l) {
        struct rlimit rl;
        sigset_t mask;
        int gai = 0, r;

        r = resolve_udp_address(arg_target, false, false, &l->target, &l->target_len, &gai);
        if (r == -EINVAL) {
                usage_error("TARGET: expected ADDR:PORT or [ADDR]:PORT, got '%s'", arg_target);
                return EXIT_USAGE;
        }
        if (r < 0) {
                tcp_log(r, "cannot resolve '%s': %s", arg_target, gai_strerror(gai));
                return EXIT_SETUP;
        }

        /* One fd per connection in flight: rate x timeout new ones plus the sessions. */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
                rlim_t need = (rlim_t) (arg_rate * (double) arg_timeout_nsec / NSEC_PER_SEC) + arg_sessions + 64;

                if (need > rl.rlim_cur) {
                        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
                        (void) setrlimit(RLIMIT_NOFILE, &rl);
                }
        }

        l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epoll_fd < 0)
                return tcp_log(negative_errno(), "epoll_create1: %m"), EXIT_SETUP;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return tcp_log(negative_errno(), "sigprocmask: %m"), EXIT_SETUP;
        l->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (l->signal_fd < 0 ||
            epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->signal_fd,
                      &(struct epoll_event) { .events = EPOLLIN, .data.u64 = TCP_SIGNAL_TOKEN }) < 0)
                return tcp_log(negative_errno(), "signalfd: %m"), EXIT_SETUP;
        return EXIT_OK;
}

/* ---- the report ---- */

static uint64_t counts_failed(const Counts *c) {
        uint64_t n = 0;

        for (int i = 0; i < _OUT_MAX; i++)
                if (i != OUT_ANSWERED)
                        n += c->v[i];
        return n;
}

static bool load_ok(const TcpLoad *l) {
        uint64_t answered = l->conn.v[OUT_ANSWERED] + l->sess.v[OUT_ANSWERED];

        return answered > 0 && counts_failed(&l->conn) == 0 && counts_failed(&l->sess) == 0 &&
               l->sessions_broken == 0 && l->open_errors == 0;
}

static double load_duration_sec(const TcpLoad *l) {
        return (double) (l->end_nsec - l->start_nsec) / NSEC_PER_SEC;
}

static void print_counts_json(const Counts *c) {
        for (int i = 0; i < _OUT_MAX; i++)
                printf("%s\"%s\":%" PRIu64, i > 0 ? "," : "", outcome_names[i], c->v[i]);
}

static int generation_compare(const void *a, const void *b) {
        const TcpGeneration *x = a, *y = b;

        return x->number < y->number ? -1 : x->number > y->number;
}

static void load_print_json(const TcpLoad *l) {
        double sec = load_duration_sec(l);

        printf("{\"mode\":\"tcp\",\"target\":\"%s\",\"duration_sec\":%.3f,\"connections\":{\"started\":%" PRIu64 ",",
               arg_target, sec, l->started);
        print_counts_json(&l->conn);
        printf("},\"rate_cps\":%.1f,\"latency_us\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64 "}",
               sec > 0 ? (double) l->started / sec : 0.0, latency_percentile(l, 0.50), latency_percentile(l, 0.99),
               l->latency_max_usec);
        printf(",\"long_lived\":{\"sessions\":%" PRIu32 ",\"requests\":%" PRIu64 ",", arg_sessions, l->long_requests);
        print_counts_json(&l->sess);
        printf(",\"moved\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"sessions_broken\":%" PRIu64 "}", l->moved,
               l->reconnects, l->sessions_broken);
        printf(",\"open_errors\":%" PRIu64 ",\"interrupted\":%s,\"generations\":[", l->open_errors,
               l->interrupted ? "true" : "false");
        for (size_t i = 0; i < l->n_gens; i++)
                printf("%s{\"generation\":%" PRIu64 ",\"connections\":%" PRIu64 ",\"replies\":%" PRIu64 "}",
                       i > 0 ? "," : "", l->gens[i].number, l->gens[i].connections, l->gens[i].replies);
        printf("]}\n");
}

static void load_print_human(const TcpLoad *l) {
        printf("grm-load: tcp %s: %.0f new connections/s, %" PRIu32 " long-lived sessions every %.3f s, for %.3f s\n",
               arg_target, arg_rate, arg_sessions, (double) arg_interval_nsec / NSEC_PER_SEC,
               (double) arg_duration_nsec / NSEC_PER_SEC);
        if (l->interrupted)
                printf("  (interrupted after %.3f s)\n", load_duration_sec(l));
        printf("  %-30s %" PRIu64 "\n", "new connections", l->started);
        for (int i = 0; i < _OUT_MAX; i++)
                printf("    %-28s %" PRIu64 "\n", outcome_names[i], l->conn.v[i]);
        printf("  %-30s p50 %" PRIu64 " us, p99 %" PRIu64 " us, max %" PRIu64 " us\n", "latency (connect to reply)",
               latency_percentile(l, 0.50), latency_percentile(l, 0.99), l->latency_max_usec);
        printf("  %-30s %" PRIu64 "\n", "long-lived requests", l->long_requests);
        for (int i = 0; i < _OUT_MAX; i++)
                printf("    %-28s %" PRIu64 "\n", outcome_names[i], l->sess.v[i]);
        printf("  %-30s %" PRIu64 " moved, %" PRIu64 " reconnects after \"closing\", %" PRIu64 " broken\n",
               "long-lived sessions", l->moved, l->reconnects, l->sessions_broken);
        if (l->open_errors)
                printf("  %-30s %" PRIu64 "\n", "sockets not opened", l->open_errors);
        printf("\n  %-12s %-12s %s\n", "generation", "connections", "replies");
        for (size_t i = 0; i < l->n_gens; i++)
                printf("  %-12" PRIu64 " %-12" PRIu64 " %" PRIu64 "\n", l->gens[i].number, l->gens[i].connections,
                       l->gens[i].replies);
        printf("\nresult: %s\n", load_ok(l) ? "OK" : "DEGRADED (exit status 1)");
}

static void load_free(TcpLoad *l) {
        if (!l)
                return;
        for (uint32_t i = 0; i < l->n_conns_allocated; i++)
                if (l->conns[i]) {
                        safe_close(l->conns[i]->fd);
                        free(l->conns[i]);
                }
        free(l->conns);
        free(l->sessions);
        free(l->gens);
        safe_close(l->epoll_fd);
        safe_close(l->signal_fd);
        free(l);
}

int load_tcp_main(int argc, char *argv[]) {
        TcpLoad *l;
        int r;

        r = parse_argv(argc, argv);
        if (r < 0)
                return EXIT_USAGE;
        if (r == 0)
                return EXIT_OK;

        l = calloc(1, sizeof(*l));
        if (l) {
                l->epoll_fd = l->signal_fd = -EBADF;
                l->sessions = calloc(arg_sessions ? arg_sessions : 1, sizeof(Session));
                l->gens = calloc(TCP_GENERATIONS_MAX, sizeof(TcpGeneration));
        }
        if (!l || !l->sessions || !l->gens) {
                tcp_log(-ENOMEM, "out of memory");
                load_free(l);
                return EXIT_SETUP;
        }
        r = load_setup(l);
        if (r == EXIT_OK && load_run(l) < 0)
                r = EXIT_SETUP;
        if (r == EXIT_OK) {
                qsort(l->gens, l->n_gens, sizeof(TcpGeneration), generation_compare);
                if (arg_json)
                        load_print_json(l);
                else if (!arg_quiet)
                        load_print_human(l);
                fflush(stdout);
                r = load_ok(l) ? EXIT_OK : EXIT_DEGRADED;
        }
        load_free(l);
        return r;
}
