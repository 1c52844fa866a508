/* SPDX-License-Identifier: MIT */
/*
 * grm-quic-load: QUIC clients (ngtcp2 + GnuTLS) against grm-quic-echo, to show what a restart
 * costs QUIC connections: connections broken, handshakes failed, and which generation serves
 * each connection. It keeps N long-lived connections that ping (one echo request stream at a
 * time, each with a sequence number; the reply names the server generation), opens short
 * connections at a rate (handshake, one echo, close), and can move every client to a new source
 * port mid-connection: as a NAT rebinding does (the client does not know: it just sends from a
 * new socket), or by RFC 9000 section 9 active migration (a new socket and a new DCID). The
 * rebinding happens on a signal, when a file changes, or on a schedule, so a test can rebind
 * right after each restart.
 *
 * Owns: the clients (one connect()ed non-blocking UDP socket, one ngtcp2_conn and one GnuTLS
 * session each), one epoll loop (sockets, signalfd), a timer heap, the accounting.
 * Invariants: a client is freed only from the loop, never inside an ngtcp2 callback; every
 * client ends exactly once, as retired (closed by us as planned), broken, or failed (never
 * established); a long-lived slot gets a new client whenever its client ends before the run
 * does; client numbers are never reused.
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
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "macro.h"
#include "quic-util.h"
#include "tools-util.h"

#define CONNECTIONS_MAX 20000
#define DGRAM_BUF_SIZE 65536
#define REPLY_MAX 256
#define RECV_ROUNDS 16
#define SEND_PKTS_MAX 16
#define TICK_NSEC (20 * NSEC_PER_SEC / 1000)
#define HANDSHAKE_BURST_MAX 200      /* short connections started per tick, at most */
#define GENERATIONS_MAX 4096
#define SAMPLES_MAX (10 * 1000 * 1000)
#define FD_SPARE 32
#define SIGNAL_TOKEN ((void *) 1)

enum {
        EXIT_OK = 0,
        EXIT_DEGRADED = 1,
        EXIT_USAGE = 2,
        EXIT_SETUP = 3,
};

typedef enum RebindMode {
        REBIND_NAT,
        REBIND_MIGRATE,
} RebindMode;

typedef enum ClientKind {
        KIND_LONG,                   /* one of the --connections: pings until retired */
        KIND_SHORT,                  /* --handshakes: handshake, one echo, close */
} ClientKind;

typedef enum EndReason {
        END_NONE,
        END_RETIRED,                 /* closed by us as planned */
        END_HANDSHAKE_TIMEOUT,
        END_PING_TIMEOUT,
        END_IDLE_TIMEOUT,
        END_CLOSED_BY_PEER,
        END_STATELESS_RESET,
        END_BAD_REPLY,
        END_ERROR,
        _END_MAX,
} EndReason;

static const char *const end_reason_names[_END_MAX] = {
        [END_NONE] = "none",
        [END_RETIRED] = "retired",
        [END_HANDSHAKE_TIMEOUT] = "handshake_timeout",
        [END_PING_TIMEOUT] = "ping_timeout",
        [END_IDLE_TIMEOUT] = "idle_timeout",
        [END_CLOSED_BY_PEER] = "closed_by_peer",
        [END_STATELESS_RESET] = "stateless_reset",
        [END_BAD_REPLY] = "bad_reply",
        [END_ERROR] = "error",
};

typedef struct Load Load;

typedef struct Client {
        Load *load;
        uint32_t id;
        ClientKind kind;
        uint32_t slot;               /* KIND_LONG: its slot */
        int fd;
        bool watched;                /* fd is in the epoll set (not while --handshake-hold holds it) */
        uint64_t hold_until_nsec;    /* KIND_SHORT with --handshake-hold: reads nothing before */
        struct sockaddr_storage local;  /* the local address ngtcp2 knows (a NAT hides the new one) */
        socklen_t local_len;
        ngtcp2_conn *conn;
        gnutls_session_t tls;
        ngtcp2_crypto_conn_ref conn_ref;
        QuicTimer timer;

        uint64_t start_nsec;
        uint64_t retire_nsec;        /* KIND_LONG: when it is closed as planned; UINT64_MAX: never */
        bool established;
        bool confirmed;              /* HANDSHAKE_DONE received: the server completed it too */
        bool ended;
        EndReason end_reason;
        bool got_reset;

        /* The ping in flight, if stream_id >= 0. */
        int64_t stream_id;
        uint8_t request[QUIC_ECHO_HEADER_SIZE];
        size_t request_off;
        uint8_t reply[REPLY_MAX];
        size_t reply_len;
        uint32_t next_seq;
        uint64_t ping_sent_nsec;
        uint64_t next_ping_nsec;     /* UINT64_MAX: no ping planned */
        bool stream_blocked;

        ngtcp2_cid dcid_first;
        bool has_gen;
        uint64_t gen;                /* generation of the first reply */
        uint64_t last_gen;
        uint32_t answered;
        uint32_t rebinds;

        struct Client *prev, *next;
        struct Client *ended_next;   /* on Load.ended */
} Client;

typedef struct Generation {
        uint64_t number;
        uint64_t connections;        /* long-lived connections whose first reply came from here */
        uint64_t handshakes;         /* short connections answered from here */
        uint64_t replies;
        uint64_t broken;             /* long-lived connections of this generation that broke */
} Generation;

/* What --per-connection reports of a long-lived connection that ended. */
typedef struct ConnRecord {
        uint32_t id;
        bool has_gen;
        uint64_t gen;
        uint32_t answered;
        uint32_t rebinds;
        EndReason end;
        ngtcp2_cid dcid_first;       /* the server's CID when the handshake completed */
        ngtcp2_cid dcid_last;        /* and when the connection ended (another after a migration) */
} ConnRecord;

typedef enum Phase {
        PHASE_RUNNING,
        PHASE_FINISHING,             /* no new pings or connections; waiting for what is in flight */
        PHASE_DONE,
} Phase;

typedef struct Samples {
        uint32_t *v;
        size_t n, cap;
} Samples;

struct Load {
        struct sockaddr_storage target;
        socklen_t target_len;
        int epoll_fd;
        int signal_fd;
        gnutls_certificate_credentials_t cred;
        QuicTimerHeap timers;

        Client *clients;
        size_t n_clients;
        Client *ended;               /* clients to free once the current event is done */
        Client **slots;
        uint32_t next_id;
        uint32_t next_open_slot;     /* the ramp: slots below this were opened once */

        Phase phase;
        bool interrupted;
        uint64_t start_nsec;
        uint64_t end_nsec;
        uint64_t finish_deadline_nsec;
        uint64_t stop_nsec;
        uint64_t next_tick_nsec;
        uint64_t next_handshake_nsec;
        uint64_t next_rebind_nsec;
        uint64_t next_progress_nsec;
        struct stat rebind_file_st;
        bool rebind_file_seen;
        bool rebind_requested;

        uint8_t *buf;
        uint8_t *tx;

        Generation *gens;
        size_t n_gens;

        /* long-lived connections */
        uint64_t conns_opened;
        uint64_t conns_established;
        uint64_t conns_retired;
        uint64_t conns_broken;
        uint64_t conns_failed;       /* never established */
        uint64_t end_reasons[_END_MAX];
        /* short connections */
        uint64_t hs_started;
        uint64_t hs_ok;
        uint64_t hs_failed;
        uint64_t hs_end_reasons[_END_MAX];

        uint64_t pings_sent;
        uint64_t pings_answered;
        uint64_t bad_replies;
        uint64_t moved;
        uint64_t expect_violations;
        uint64_t rebind_events;
        uint64_t rebinds;
        uint64_t migrations;
        uint64_t migration_fallbacks; /* --rebind-mode migrate, but ngtcp2 could not: rebound as a NAT */
        uint64_t rebind_errors;
        uint64_t hs_in_flight_min;   /* fewest short handshakes in progress at a rebinding */
        uint64_t hs_in_flight_max;
        uint64_t open_errors;
        uint64_t send_errors;
        uint32_t next_port;          /* --ports: the next source port to try */
        bool ports_wrapped;          /* --ports: the range was used up and started over */
        Samples ping_usec;
        Samples handshake_usec;
        ConnRecord *records;
        size_t n_records;
};

static char *arg_target = NULL;
static uint32_t arg_connections = 100;
static uint64_t arg_interval_nsec = NSEC_PER_SEC;
static uint64_t arg_duration_nsec = 10 * NSEC_PER_SEC;
static uint64_t arg_lifetime_nsec = 0;
static double arg_handshake_rate = 0;
static uint64_t arg_ramp_nsec = NSEC_PER_SEC;
static uint64_t arg_handshake_hold_nsec = 0;
static uint64_t arg_ping_timeout_nsec = 3 * NSEC_PER_SEC;
static uint64_t arg_handshake_timeout_nsec = 5 * NSEC_PER_SEC;
static uint64_t arg_idle_timeout_nsec = 30 * NSEC_PER_SEC;
static int arg_rebind_signal = 0;
static const char *arg_rebind_file = NULL;
static uint64_t arg_rebind_every_nsec = 0;
static RebindMode arg_rebind_mode = REBIND_NAT;
static bool arg_expect = false;
static uint64_t arg_expect_generation = 0;
static bool arg_json = false;
static bool arg_quiet = false;
static bool arg_per_connection = false;
static bool arg_progress = false;
static uint32_t arg_port_first = 0, arg_port_last = 0;  /* --ports; 0: the kernel picks */

static int log_error(int r, const char *fmt, ...) _printf_(2, 3);
static int log_error(int r, const char *fmt, ...) {
        va_list ap;

        fputs("grm-quic-load: ", stderr);
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
               "QUIC load for grm-quic-echo at TARGET (ADDR:PORT or [ADDR]:PORT), ALPN \"%s\" (the\n"
               "server's certificate is not verified). Keeps --connections long-lived connections\n"
               "that each send one echo request every --interval (a stream with a sequence number;\n"
               "the reply names the server generation), opens --handshakes short connections per\n"
               "second (handshake, one echo, close), and reports connections broken, handshakes\n"
               "failed and the generation of each connection. A long-lived connection that ends\n"
               "before the run does is replaced by a new one.\n"
               "\n"
               "Rebinding moves every client whose handshake is confirmed (long-lived, and short ones\n"
               "in flight) to a new source port mid-connection (handshakes in progress stay: QUIC\n"
               "forbids migrating before the handshake is confirmed, and ngtcp2 completes a\n"
               "handshake only on its first path). --rebind-mode nat (default): as a NAT does; the\n"
               "client sends from a new socket and its QUIC stack is not told (same DCID).\n"
               "--rebind-mode migrate: RFC 9000 section 9 active migration (new socket, new DCID\n"
               "from the server's NEW_CONNECTION_IDs); a client with no spare DCID rebinds as a NAT.\n"
               "Each rebinding sends a PING, and an echo request if none is in flight, from the\n"
               "new port at once.\n"
               "\n"
               "Options:\n"
               "  -h --help                  Show this help and exit\n"
               "     --version               Show the version and exit\n"
               "  -c --connections N         Long-lived connections, 0..%u (default 100)\n"
               "  -i --interval SEC          Echo requests of a connection are SEC apart (default 1)\n"
               "  -d --duration SEC          How long to run (default 10, fractions allowed)\n"
               "  -l --conn-lifetime SEC     Close each long-lived connection after SEC and open a\n"
               "                             new one; 0 = they live for the whole run (default 0)\n"
               "  -H --handshakes RATE       Short connections per second (default 0)\n"
               "     --ramp SEC              Open the long-lived connections over SEC (default 1)\n"
               "     --handshake-hold SEC    A short connection reads nothing for SEC after its\n"
               "                             first Initial, so that every handshake lasts that long\n"
               "                             (and some are in flight at any moment, e.g. a restart)\n"
               "     --ping-timeout SEC      A request unanswered for SEC breaks its connection\n"
               "                             (default 3)\n"
               "     --handshake-timeout SEC A handshake not done in SEC fails (default 5)\n"
               "     --idle-timeout SEC      QUIC idle timeout (default 30)\n"
               "     --rebind-signal SIG     Rebind every client on SIG (name or number)\n"
               "     --rebind-file PATH      Rebind every client whenever PATH changes (mtime, size\n"
               "                             or inode; checked every 20 ms)\n"
               "     --rebind-every SEC      Rebind every client every SEC\n"
               "     --rebind-mode nat|migrate\n"
               "     --expect-generation N   Every connection's first reply must come from N\n"
               "     --per-connection        List every long-lived connection in the report: its\n"
               "                             generation, rebindings, how it ended, and the server's\n"
               "                             CID at the handshake and at the end (JSON only)\n"
               "     --ports FIRST-LAST      Bind every new socket (new client, rebinding) to the next\n"
               "                             port of this range, so that no two sockets of the run\n"
               "                             share a source port (a reused port can be an old flow to\n"
               "                             grm's flow table); wraps around when used up\n"
               "     --progress              A progress line on stderr every second\n"
               "     --json                  Print the report as one JSON object\n"
               "  -q --quiet                 Print no human report (--json is still printed)\n"
               "\n"
               "Exit status:\n"
               "  0  run completed: no connection broken or failed, no handshake failed, no bad\n"
               "     reply, no --expect-generation violation, every client could be opened and\n"
               "     rebound, and something was answered\n"
               "  1  run completed, but one of those happened\n"
               "  2  usage error\n"
               "  3  setup error\n",
               program_invocation_short_name, QUIC_ECHO_ALPN, CONNECTIONS_MAX);
        return 0;
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("grm-quic-load: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EINVAL;
}

static int parse_seconds_opt(const char *opt, const char *v, double max, bool allow0, uint64_t *ret) {
        if (parse_seconds(v, max, ret) < 0 || (!allow0 && *ret == 0))
                return usage_error("%s: expected seconds %s 0 and <= %.0f, got '%s'", opt, allow0 ? ">=" : ">", max, v);
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_RAMP,
                ARG_HANDSHAKE_HOLD,
                ARG_PING_TIMEOUT,
                ARG_HANDSHAKE_TIMEOUT,
                ARG_IDLE_TIMEOUT,
                ARG_REBIND_SIGNAL,
                ARG_REBIND_FILE,
                ARG_REBIND_EVERY,
                ARG_REBIND_MODE,
                ARG_EXPECT_GENERATION,
                ARG_PER_CONNECTION,
                ARG_PROGRESS,
                ARG_PORTS,
                ARG_JSON,
        };
        static const struct option options[] = {
                { "help",              no_argument,       NULL, 'h'                   },
                { "version",           no_argument,       NULL, ARG_VERSION           },
                { "connections",       required_argument, NULL, 'c'                   },
                { "interval",          required_argument, NULL, 'i'                   },
                { "duration",          required_argument, NULL, 'd'                   },
                { "conn-lifetime",     required_argument, NULL, 'l'                   },
                { "handshakes",        required_argument, NULL, 'H'                   },
                { "ramp",              required_argument, NULL, ARG_RAMP              },
                { "handshake-hold",    required_argument, NULL, ARG_HANDSHAKE_HOLD    },
                { "ping-timeout",      required_argument, NULL, ARG_PING_TIMEOUT      },
                { "handshake-timeout", required_argument, NULL, ARG_HANDSHAKE_TIMEOUT },
                { "idle-timeout",      required_argument, NULL, ARG_IDLE_TIMEOUT      },
                { "rebind-signal",     required_argument, NULL, ARG_REBIND_SIGNAL     },
                { "rebind-file",       required_argument, NULL, ARG_REBIND_FILE       },
                { "rebind-every",      required_argument, NULL, ARG_REBIND_EVERY      },
                { "rebind-mode",       required_argument, NULL, ARG_REBIND_MODE       },
                { "expect-generation", required_argument, NULL, ARG_EXPECT_GENERATION },
                { "per-connection",    no_argument,       NULL, ARG_PER_CONNECTION    },
                { "progress",          no_argument,       NULL, ARG_PROGRESS          },
                { "ports",             required_argument, NULL, ARG_PORTS             },
                { "json",              no_argument,       NULL, ARG_JSON              },
                { "quiet",             no_argument,       NULL, 'q'                   },
                {}
        };
        uint64_t u;
        int c, r;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hc:i:d:l:H:q", options, NULL)) >= 0) {
                r = 0;
                switch (c) {
                case 'h':
                        return help();
                case ARG_VERSION:
                        printf("grm-quic-load %s (ngtcp2 %s, GnuTLS %s)\n", GRM_VERSION,
                               ngtcp2_version(0)->version_str, gnutls_check_version(NULL));
                        return 0;
                case 'c':
                        if (parse_u64_range(optarg, 0, CONNECTIONS_MAX, &u) < 0)
                                return usage_error("--connections: expected 0..%u, got '%s'", CONNECTIONS_MAX, optarg);
                        arg_connections = (uint32_t) u;
                        break;
                case 'i':
                        r = parse_seconds_opt("--interval", optarg, 3600, false, &arg_interval_nsec);
                        break;
                case 'd':
                        r = parse_seconds_opt("--duration", optarg, 86400 * 7, false, &arg_duration_nsec);
                        break;
                case 'l':
                        r = parse_seconds_opt("--conn-lifetime", optarg, 86400 * 7, true, &arg_lifetime_nsec);
                        break;
                case 'H':
                        if (strcmp(optarg, "0") == 0)
                                arg_handshake_rate = 0;
                        else if (parse_positive_double(optarg, 100000, &arg_handshake_rate) < 0)
                                return usage_error("--handshakes: expected 0..100000 per second, got '%s'", optarg);
                        break;
                case ARG_RAMP:
                        r = parse_seconds_opt("--ramp", optarg, 3600, true, &arg_ramp_nsec);
                        break;
                case ARG_HANDSHAKE_HOLD:
                        r = parse_seconds_opt("--handshake-hold", optarg, 60, true, &arg_handshake_hold_nsec);
                        break;
                case ARG_PING_TIMEOUT:
                        r = parse_seconds_opt("--ping-timeout", optarg, 3600, false, &arg_ping_timeout_nsec);
                        break;
                case ARG_HANDSHAKE_TIMEOUT:
                        r = parse_seconds_opt("--handshake-timeout", optarg, 3600, false, &arg_handshake_timeout_nsec);
                        break;
                case ARG_IDLE_TIMEOUT:
                        r = parse_seconds_opt("--idle-timeout", optarg, 86400, false, &arg_idle_timeout_nsec);
                        break;
                case ARG_REBIND_SIGNAL:
                        if (parse_signal(optarg, &arg_rebind_signal) < 0 || arg_rebind_signal == SIGINT ||
                            arg_rebind_signal == SIGTERM)
                                return usage_error("--rebind-signal: unknown signal, or SIGINT/SIGTERM (which stop the run): '%s'",
                                                   optarg);
                        break;
                case ARG_REBIND_FILE:
                        arg_rebind_file = optarg;
                        break;
                case ARG_REBIND_EVERY:
                        r = parse_seconds_opt("--rebind-every", optarg, 86400, false, &arg_rebind_every_nsec);
                        break;
                case ARG_REBIND_MODE:
                        if (streq(optarg, "nat"))
                                arg_rebind_mode = REBIND_NAT;
                        else if (streq(optarg, "migrate"))
                                arg_rebind_mode = REBIND_MIGRATE;
                        else
                                return usage_error("--rebind-mode: expected nat or migrate, got '%s'", optarg);
                        break;
                case ARG_EXPECT_GENERATION:
                        if (parse_u64_range(optarg, 0, UINT64_MAX, &arg_expect_generation) < 0)
                                return usage_error("--expect-generation: expected a generation number, got '%s'", optarg);
                        arg_expect = true;
                        break;
                case ARG_PER_CONNECTION:
                        arg_per_connection = true;
                        break;
                case ARG_PROGRESS:
                        arg_progress = true;
                        break;
                case ARG_PORTS: {
                        char buf[32], *dash;
                        uint64_t first, last;

                        if (strlen(optarg) >= sizeof(buf) || !(dash = strchr(strcpy(buf, optarg), '-')))
                                return usage_error("--ports: expected FIRST-LAST, got '%s'", optarg);
                        *dash = 0;
                        if (parse_u64_range(buf, 1, 65535, &first) < 0 || parse_u64_range(dash + 1, 1, 65535, &last) < 0 ||
                            last < first)
                                return usage_error("--ports: expected FIRST-LAST within 1..65535, got '%s'", optarg);
                        arg_port_first = (uint32_t) first;
                        arg_port_last = (uint32_t) last;
                        break;
                }
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
                                return usage_error("unknown option '-%c'", optopt);
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                default:
                        return usage_error("unexpected option");
                }
                if (r < 0)
                        return r;
        }

        if (optind + 1 != argc)
                return usage_error(optind >= argc ? "missing TARGET (ADDR:PORT)" : "unexpected argument '%s'",
                                   argv[optind + 1 < argc ? optind + 1 : optind]);
        arg_target = argv[optind];
        if (arg_connections == 0 && arg_handshake_rate == 0)
                return usage_error("nothing to do: --connections 0 and no --handshakes");
        if (arg_lifetime_nsec > 0 && arg_lifetime_nsec < 100 * NSEC_PER_SEC / 1000)
                return usage_error("--conn-lifetime: must be 0 or at least 0.1 s");
        return 1;
}

/* ---- accounting ---- */

static void samples_add(Samples *s, uint64_t v) {
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 4096;
                uint32_t *a;

                if (cap > SAMPLES_MAX)
                        return;
                a = realloc(s->v, cap * sizeof(uint32_t));
                if (!a)
                        return;
                s->v = a;
                s->cap = cap;
        }
        s->v[s->n++] = v > UINT32_MAX ? UINT32_MAX : (uint32_t) v;
}

static int u32_compare(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

        return x < y ? -1 : x > y;
}

/* Sorts in place; the p-quantile by nearest rank, 0 if empty. */
static uint64_t samples_quantile(Samples *s, double p) {
        size_t i;

        if (s->n == 0)
                return 0;
        qsort(s->v, s->n, sizeof(uint32_t), u32_compare);
        i = (size_t) (p * (double) s->n);
        return s->v[i >= s->n ? s->n - 1 : i];
}

static Generation *load_generation(Load *l, uint64_t number) {
        Generation *g;

        for (size_t i = 0; i < l->n_gens; i++)
                if (l->gens[i].number == number)
                        return &l->gens[i];
        if (l->n_gens >= GENERATIONS_MAX)
                return NULL;
        g = realloc(l->gens, (l->n_gens + 1) * sizeof(Generation));
        if (!g)
                return NULL;
        l->gens = g;
        g = &l->gens[l->n_gens++];
        *g = (Generation) { .number = number };
        return g;
}

/* ---- clients ---- */

static void client_arm(Client *c, uint64_t now);

static ngtcp2_conn *conn_ref_get(ngtcp2_crypto_conn_ref *ref) {
        return ((Client *) ref->user_data)->conn;
}

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
        (void) gnutls_rnd(GNUTLS_RND_NONCE, dest, len);
}

static int cb_get_new_connection_id(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                                    void *user_data) {
        if (gnutls_rnd(GNUTLS_RND_NONCE, cid->data, cidlen) < 0 ||
            gnutls_rnd(GNUTLS_RND_NONCE, token, NGTCP2_STATELESS_RESET_TOKENLEN) < 0)
                return NGTCP2_ERR_CALLBACK_FAILURE;
        cid->datalen = cidlen;
        return 0;
}

static int cb_handshake_completed(ngtcp2_conn *conn, void *user_data) {
        Client *c = user_data;
        Load *l = c->load;

        c->established = true;
        c->dcid_first = *ngtcp2_conn_get_dcid(conn);
        samples_add(&l->handshake_usec, (now_nsec() - c->start_nsec) / NSEC_PER_USEC);
        if (c->kind == KIND_LONG)
                l->conns_established++;
        c->next_ping_nsec = 0;  /* the first request goes out at once */
        return 0;
}

static int cb_handshake_confirmed(ngtcp2_conn *conn, void *user_data) {
        ((Client *) user_data)->confirmed = true;
        return 0;
}

static int cb_extend_max_local_streams_bidi(ngtcp2_conn *conn, uint64_t max_streams, void *user_data) {
        ((Client *) user_data)->stream_blocked = false;
        return 0;
}

static int cb_recv_stateless_reset(ngtcp2_conn *conn, const ngtcp2_pkt_stateless_reset *sr, void *user_data) {
        ((Client *) user_data)->got_reset = true;
        return 0;
}

static void client_end(Client *c, EndReason why);

/* The reply to the ping in flight is complete. */
static void client_handle_reply(Client *c, uint64_t now) {
        static const char tag[] = " gen=";
        Load *l = c->load;
        const uint8_t *p = c->reply + QUIC_ECHO_HEADER_SIZE, *end = c->reply + c->reply_len;
        uint64_t gen = 0, pid = 0;
        Generation *g;
        bool digits;

        if (c->reply_len < QUIC_ECHO_HEADER_SIZE + sizeof(tag) - 1 ||
            memcmp(c->reply, c->request, QUIC_ECHO_HEADER_SIZE) != 0 ||
            memcmp(p, tag, sizeof(tag) - 1) != 0)
                goto bad;
        p += sizeof(tag) - 1;
        for (digits = false; p < end && *p >= '0' && *p <= '9' && gen < UINT64_MAX / 10; p++, digits = true)
                gen = gen * 10 + (uint64_t) (*p - '0');
        if (!digits || end - p < 6 || memcmp(p, " pid=", 5) != 0)
                goto bad;
        for (p += 5, digits = false; p < end && *p >= '0' && *p <= '9' && pid < UINT64_MAX / 10; p++, digits = true)
                pid = pid * 10 + (uint64_t) (*p - '0');
        if (!digits || p + 1 != end || *p != '\n')
                goto bad;

        g = load_generation(l, gen);
        if (!g)
                goto bad;
        l->pings_answered++;
        c->answered++;
        g->replies++;
        samples_add(&l->ping_usec, (now - c->ping_sent_nsec) / NSEC_PER_USEC);
        if (!c->has_gen) {
                c->has_gen = true;
                c->gen = gen;
                if (c->kind == KIND_LONG)
                        g->connections++;
                else
                        g->handshakes++;
                if (arg_expect && gen != arg_expect_generation)
                        l->expect_violations++;
        } else if (gen != c->last_gen)
                l->moved++;  /* a QUIC connection cannot move: its state is in one process */
        c->last_gen = gen;
        c->stream_id = -1;

        if (c->kind == KIND_SHORT) {
                l->hs_ok++;
                client_end(c, END_RETIRED);
                return;
        }
        if (l->phase != PHASE_RUNNING) {
                client_end(c, END_RETIRED);
                return;
        }
        c->next_ping_nsec = now + arg_interval_nsec;
        return;

bad:
        l->bad_replies++;
        client_end(c, END_BAD_REPLY);
}

static int cb_recv_stream_data(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id, uint64_t offset,
                               const uint8_t *data, size_t datalen, void *user_data, void *stream_user_data) {
        Client *c = user_data;

        (void) ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
        ngtcp2_conn_extend_max_offset(conn, datalen);
        if (stream_id != c->stream_id || c->ended)
                return 0;
        if (c->reply_len + datalen > REPLY_MAX) {
                c->load->bad_replies++;
                client_end(c, END_BAD_REPLY);
                return 0;
        }
        memcpy(c->reply + c->reply_len, data, datalen);
        c->reply_len += datalen;
        if (flags & NGTCP2_STREAM_DATA_FLAG_FIN)
                client_handle_reply(c, now_nsec());
        return 0;
}

static int cb_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id, uint64_t app_error_code,
                           void *user_data, void *stream_user_data) {
        Client *c = user_data;

        /* Closed before its reply was complete: the server reset it. */
        if (stream_id == c->stream_id && !c->ended) {
                c->load->bad_replies++;
                client_end(c, END_BAD_REPLY);
        }
        return 0;
}

static const ngtcp2_callbacks client_callbacks = {
        .client_initial = ngtcp2_crypto_client_initial_cb,
        .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
        .handshake_completed = cb_handshake_completed,
        .handshake_confirmed = cb_handshake_confirmed,
        .encrypt = ngtcp2_crypto_encrypt_cb,
        .decrypt = ngtcp2_crypto_decrypt_cb,
        .hp_mask = ngtcp2_crypto_hp_mask_cb,
        .recv_stream_data = cb_recv_stream_data,
        .stream_close = cb_stream_close,
        .recv_stateless_reset = cb_recv_stateless_reset,
        .recv_retry = ngtcp2_crypto_recv_retry_cb,
        .extend_max_local_streams_bidi = cb_extend_max_local_streams_bidi,
        .rand = cb_rand,
        .get_new_connection_id = cb_get_new_connection_id,
        .update_key = ngtcp2_crypto_update_key_cb,
        .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
        .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
        .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
        .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

static void client_send(Client *c, const uint8_t *data, size_t len) {
        for (;;) {
                if (send(c->fd, data, len, MSG_DONTWAIT) >= 0)
                        return;
                if (errno != EINTR)
                        break;
        }
        c->load->send_errors++;  /* QUIC's loss recovery resends what mattered */
}

/*
 * Marks c ended (counted once, by kind and reason). A connection that was established and did
 * not end as planned is broken. It is freed from the loop (load_reap()).
 */
static void client_end(Client *c, EndReason why) {
        Load *l = c->load;

        if (c->ended)
                return;
        c->ended = true;
        c->end_reason = why;
        c->ended_next = l->ended;
        l->ended = c;
        if (c->kind == KIND_SHORT) {
                if (why != END_RETIRED) {
                        l->hs_failed++;
                        l->hs_end_reasons[why]++;
                }
                return;
        }
        l->end_reasons[why]++;
        if (arg_per_connection) {
                ConnRecord *a = realloc(l->records, (l->n_records + 1) * sizeof(ConnRecord));

                if (a) {
                        l->records = a;
                        a[l->n_records++] = (ConnRecord) {
                                .id = c->id, .has_gen = c->has_gen, .gen = c->gen, .answered = c->answered,
                                .rebinds = c->rebinds, .end = why, .dcid_first = c->dcid_first,
                                .dcid_last = c->established ? *ngtcp2_conn_get_dcid(c->conn) : (ngtcp2_cid) {},
                        };
                }
        }
        if (why == END_RETIRED)
                l->conns_retired++;
        else if (c->established) {
                Generation *g = c->has_gen ? load_generation(l, c->last_gen) : NULL;

                l->conns_broken++;
                if (g)
                        g->broken++;
        } else
                l->conns_failed++;
}

/* Sends CONNECTION_CLOSE (no error, or an application error when it broke), best effort. */
static void client_send_close(Client *c, uint64_t now) {
        ngtcp2_connection_close_error ccerr;
        ngtcp2_path_storage ps;
        ngtcp2_pkt_info pi;
        ngtcp2_ssize n;

        if (!c->conn || ngtcp2_conn_is_in_closing_period(c->conn) || ngtcp2_conn_is_in_draining_period(c->conn))
                return;
        ngtcp2_connection_close_error_default(&ccerr);
        ngtcp2_connection_close_error_set_application_error(&ccerr, c->end_reason == END_RETIRED ? 0 : 1, NULL, 0);
        ngtcp2_path_storage_zero(&ps);
        n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi, c->load->tx, NGTCP2_MAX_UDP_PAYLOAD_SIZE,
                                               &ccerr, now);
        if (n > 0)
                client_send(c, c->load->tx, (size_t) n);
}

static void client_free(Client *c) {
        Load *l;

        if (!c)
                return;
        l = c->load;
        quic_timer_remove(&l->timers, &c->timer);
        if (c->conn)
                ngtcp2_conn_del(c->conn);
        if (c->tls)
                gnutls_deinit(c->tls);
        safe_close(c->fd);
        if (c->prev)
                c->prev->next = c->next;
        else if (l->clients == c)
                l->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        if (c->kind == KIND_LONG && l->slots && l->slots[c->slot] == c)
                l->slots[c->slot] = NULL;
        l->n_clients--;
        free(c);
}

/* A new non-blocking UDP socket connect()ed to the target (the kernel picks a new source port). */
static int load_open_socket(Load *l, struct sockaddr_storage *ret_local, socklen_t *ret_local_len, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;

        fd = socket(l->target.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_UDP);
        if (fd < 0)
                return negative_errno();
        if (arg_port_first > 0) {
                uint32_t n = arg_port_last - arg_port_first + 1;
                int r = -EADDRINUSE;

                /* The next free port of the range; one in use (by this run or another) is skipped. */
                for (uint32_t tries = 0; tries < n && r < 0; tries++) {
                        struct sockaddr_storage sa = {};
                        uint16_t port;

                        if (l->next_port < arg_port_first || l->next_port > arg_port_last) {
                                if (l->next_port > arg_port_last)
                                        l->ports_wrapped = true;
                                l->next_port = arg_port_first;
                        }
                        port = htons((uint16_t) l->next_port++);
                        sa.ss_family = l->target.ss_family;
                        if (sa.ss_family == AF_INET)
                                ((struct sockaddr_in *) &sa)->sin_port = port;
                        else
                                ((struct sockaddr_in6 *) &sa)->sin6_port = port;
                        r = bind(fd, (struct sockaddr *) &sa, l->target_len) < 0 ? negative_errno() : 0;
                        if (r < 0 && r != -EADDRINUSE)
                                return r;
                }
                if (r < 0)
                        return r;
        }
        if (connect(fd, (struct sockaddr *) &l->target, l->target_len) < 0)
                return negative_errno();
        *ret_local_len = sizeof(*ret_local);
        if (getsockname(fd, (struct sockaddr *) ret_local, ret_local_len) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int client_tls_new(Load *l, Client *c) {
        static const gnutls_datum_t alpn = { (unsigned char *) QUIC_ECHO_ALPN, sizeof(QUIC_ECHO_ALPN) - 1 };

        if (gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA) < 0) {
                c->tls = NULL;
                return -ENOMEM;
        }
        if (ngtcp2_crypto_gnutls_configure_client_session(c->tls) != 0 ||
            gnutls_priority_set_direct(c->tls, QUIC_TLS_PRIORITY, NULL) < 0 ||
            gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, l->cred) < 0 ||
            gnutls_alpn_set_protocols(c->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) < 0 ||
            gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, "localhost", strlen("localhost")) < 0)
                return -EIO;
        gnutls_session_set_ptr(c->tls, &c->conn_ref);
        return 0;
}

static void client_write(Client *c, uint64_t now);
static void client_receive(Client *c);

static int client_new(Load *l, ClientKind kind, uint32_t slot, uint64_t now, Client **ret) {
        ngtcp2_settings settings;
        ngtcp2_transport_params params;
        ngtcp2_cid dcid = { .datalen = 16 }, scid = { .datalen = 8 };
        ngtcp2_path path;
        Client *c;
        int r;

        c = calloc(1, sizeof(Client));
        if (!c)
                return -ENOMEM;
        c->load = l;
        c->id = l->next_id++;
        c->kind = kind;
        c->slot = slot;
        c->fd = -EBADF;
        c->timer = (QuicTimer) QUIC_TIMER_INIT;
        c->conn_ref = (ngtcp2_crypto_conn_ref) { .get_conn = conn_ref_get, .user_data = c };
        c->stream_id = -1;
        c->next_ping_nsec = UINT64_MAX;
        c->start_nsec = now;
        c->retire_nsec = kind == KIND_LONG && arg_lifetime_nsec > 0 ? now + arg_lifetime_nsec : UINT64_MAX;
        c->next = l->clients;
        if (l->clients)
                l->clients->prev = c;
        l->clients = c;
        l->n_clients++;

        r = load_open_socket(l, &c->local, &c->local_len, &c->fd);
        if (r < 0)
                goto fail;
        if (gnutls_rnd(GNUTLS_RND_NONCE, dcid.data, dcid.datalen) < 0 ||
            gnutls_rnd(GNUTLS_RND_NONCE, scid.data, scid.datalen) < 0) {
                r = -EIO;
                goto fail;
        }

        ngtcp2_settings_default(&settings);
        settings.initial_ts = now;
        settings.handshake_timeout = arg_handshake_timeout_nsec;
        ngtcp2_transport_params_default(&params);
        params.initial_max_stream_data_bidi_local = 64 * 1024;
        params.initial_max_data = 1024 * 1024;
        params.max_idle_timeout = arg_idle_timeout_nsec;
        params.active_connection_id_limit = 4;

        path = (ngtcp2_path) {
                .local = { .addr = (struct sockaddr *) &c->local, .addrlen = c->local_len },
                .remote = { .addr = (struct sockaddr *) &l->target, .addrlen = l->target_len },
        };
        if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &client_callbacks, &settings,
                                   &params, NULL, c) != 0) {
                c->conn = NULL;
                r = -ENOMEM;
                goto fail;
        }
        r = client_tls_new(l, c);
        if (r < 0)
                goto fail;
        ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);

        if (kind == KIND_SHORT && arg_handshake_hold_nsec > 0)
                c->hold_until_nsec = now + arg_handshake_hold_nsec;  /* client_on_timer() watches it then */
        else {
                if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, c->fd,
                              &(struct epoll_event) { .events = EPOLLIN, .data.ptr = c }) < 0) {
                        r = negative_errno();
                        goto fail;
                }
                c->watched = true;
        }
        if (kind == KIND_LONG) {
                l->slots[slot] = c;
                l->conns_opened++;
        } else
                l->hs_started++;
        client_write(c, now);
        if (ret)
                *ret = c;
        return 0;

fail:
        client_free(c);
        l->open_errors++;
        return r;
}

/* An ngtcp2 error ends the client: the reason says why. */
static void client_handle_error(Client *c, int rv) {
        if (c->got_reset)
                client_end(c, END_STATELESS_RESET);
        else if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING)
                client_end(c, END_CLOSED_BY_PEER);
        else if (rv == NGTCP2_ERR_IDLE_CLOSE)
                client_end(c, c->established ? END_IDLE_TIMEOUT : END_HANDSHAKE_TIMEOUT);
        else if (rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT)
                client_end(c, END_HANDSHAKE_TIMEOUT);
        else
                client_end(c, END_ERROR);
}

/* Opens the stream of the next ping if one is due. */
static void client_start_ping(Client *c, uint64_t now) {
        Load *l = c->load;
        int64_t sid;
        int rv;

        if (!c->established || c->ended || c->stream_id >= 0 || c->stream_blocked || now < c->next_ping_nsec)
                return;
        rv = ngtcp2_conn_open_bidi_stream(c->conn, &sid, NULL);
        if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED) {
                c->stream_blocked = true;  /* the server's MAX_STREAMS brings us back */
                return;
        }
        if (rv != 0) {
                client_end(c, END_ERROR);
                return;
        }
        c->stream_id = sid;
        quic_put_be32(c->request, QUIC_ECHO_MAGIC);
        quic_put_be32(c->request + 4, c->id);
        quic_put_be32(c->request + 8, c->next_seq++);
        quic_put_be64(c->request + 12, now);
        c->request_off = 0;
        c->reply_len = 0;
        c->ping_sent_nsec = now;
        c->next_ping_nsec = UINT64_MAX;
        l->pings_sent++;
}

static void client_write(Client *c, uint64_t now) {
        Load *l = c->load;
        ngtcp2_path_storage ps;
        ngtcp2_pkt_info pi;
        size_t max_len, n_pkts = 0;

        if (c->ended)
                return;
        client_start_ping(c, now);
        if (c->ended)
                return;
        max_len = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
        if (max_len > DGRAM_BUF_SIZE)
                max_len = DGRAM_BUF_SIZE;
        ngtcp2_path_storage_zero(&ps);

        for (;;) {
                bool data = c->stream_id >= 0 && c->request_off < sizeof(c->request);
                ngtcp2_vec v = { .base = c->request + c->request_off, .len = sizeof(c->request) - c->request_off };
                ngtcp2_ssize n, ndatalen = -1;

                n = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, l->tx, max_len, &ndatalen,
                                              NGTCP2_WRITE_STREAM_FLAG_MORE |
                                                      (data ? NGTCP2_WRITE_STREAM_FLAG_FIN : 0),
                                              data ? c->stream_id : -1, data ? &v : NULL, data ? 1 : 0, now);
                if (data && ndatalen >= 0)
                        c->request_off += (size_t) ndatalen;
                if (n == NGTCP2_ERR_WRITE_MORE)
                        continue;
                if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR) {
                        client_end(c, END_ERROR);  /* 20 octets on a fresh stream: cannot happen to a sane peer */
                        return;
                }
                if (n < 0) {
                        client_handle_error(c, (int) n);
                        return;
                }
                if (n == 0)
                        break;
                client_send(c, l->tx, (size_t) n);
                if (++n_pkts >= SEND_PKTS_MAX)
                        break;
        }
        ngtcp2_conn_update_pkt_tx_time(c->conn, now);
        client_arm(c, now);
}

/* The client's next deadline: ngtcp2's, its next ping, its ping or handshake timeout, retirement. */
static void client_arm(Client *c, uint64_t now) {
        uint64_t due = ngtcp2_conn_get_expiry(c->conn);

        if (c->established && c->stream_id < 0 && !c->stream_blocked && c->next_ping_nsec < due)
                due = c->next_ping_nsec;
        if (c->stream_id >= 0 && c->ping_sent_nsec + arg_ping_timeout_nsec < due)
                due = c->ping_sent_nsec + arg_ping_timeout_nsec;
        if (!c->established && c->start_nsec + arg_handshake_timeout_nsec < due)
                due = c->start_nsec + arg_handshake_timeout_nsec;
        if (c->retire_nsec < due)
                due = c->retire_nsec;
        if (!c->watched && c->hold_until_nsec < due)
                due = c->hold_until_nsec;
        if (quic_timer_set(&c->load->timers, &c->timer, due) < 0)
                client_end(c, END_ERROR);
}

static void client_on_timer(Client *c, uint64_t now) {
        int rv;

        if (c->ended)
                return;
        if (!c->watched && now >= c->hold_until_nsec) {
                if (epoll_ctl(c->load->epoll_fd, EPOLL_CTL_ADD, c->fd,
                              &(struct epoll_event) { .events = EPOLLIN, .data.ptr = c }) < 0) {
                        client_end(c, END_ERROR);
                        return;
                }
                c->watched = true;
                client_receive(c);  /* what arrived while it was held */
                if (c->ended)
                        return;
        }
        if (c->stream_id >= 0 && now >= c->ping_sent_nsec + arg_ping_timeout_nsec) {
                client_end(c, c->got_reset ? END_STATELESS_RESET : END_PING_TIMEOUT);
                return;
        }
        if (!c->established && now >= c->start_nsec + arg_handshake_timeout_nsec) {
                client_end(c, END_HANDSHAKE_TIMEOUT);
                return;
        }
        /* Retire between pings only, so that no answer is in flight when it closes. */
        if (now >= c->retire_nsec && c->stream_id < 0) {
                client_end(c, END_RETIRED);
                return;
        }
        if (now >= c->retire_nsec)
                c->retire_nsec = UINT64_MAX;  /* the reply (or its timeout) ends it instead */
        if (now >= ngtcp2_conn_get_expiry(c->conn)) {
                rv = ngtcp2_conn_handle_expiry(c->conn, now);
                if (rv != 0) {
                        client_handle_error(c, rv);
                        return;
                }
        }
        client_write(c, now);
}

static void client_receive(Client *c) {
        Load *l = c->load;
        ngtcp2_path path = {
                .local = { .addr = (struct sockaddr *) &c->local, .addrlen = c->local_len },
                .remote = { .addr = (struct sockaddr *) &l->target, .addrlen = l->target_len },
        };
        ngtcp2_pkt_info pi = {};
        bool got = false;

        for (unsigned round = 0; round < RECV_ROUNDS && !c->ended; round++) {
                ssize_t n = recv(c->fd, l->buf, DGRAM_BUF_SIZE, MSG_DONTWAIT);
                int rv;

                if (n < 0) {
                        if (errno == EINTR || errno == ECONNREFUSED)
                                continue;  /* ICMP port unreachable: QUIC retransmits */
                        break;
                }
                if (n == 0)
                        continue;
                got = true;
                rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, l->buf, (size_t) n, now_nsec());
                if (rv != 0) {
                        client_handle_error(c, rv);
                        return;
                }
        }
        if (got && !c->ended)
                client_write(c, now_nsec());
}

/*
 * Moves c to a new socket (a new source port). NAT: ngtcp2 keeps the old local address and
 * never learns of the change. Migrate: ngtcp2 migrates to the new path with a fresh DCID.
 */
static int client_rebind(Client *c, uint64_t now) {
        Load *l = c->load;
        struct sockaddr_storage local;
        socklen_t local_len;
        int fd = -EBADF, r;

        /* Not during the handshake: RFC 9000 section 9 forbids migrating before it is confirmed, and
         * ngtcp2 answers a handshake only on the path it started on. */
        if (c->ended || !c->confirmed)
                return 0;
        r = load_open_socket(l, &local, &local_len, &fd);
        if (r < 0)
                return r;
        if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &(struct epoll_event) { .events = EPOLLIN, .data.ptr = c }) < 0) {
                r = negative_errno();
                safe_close(fd);
                return r;
        }
        if (arg_rebind_mode == REBIND_MIGRATE) {
                ngtcp2_path path = {
                        .local = { .addr = (struct sockaddr *) &local, .addrlen = local_len },
                        .remote = { .addr = (struct sockaddr *) &l->target, .addrlen = l->target_len },
                };

                if (ngtcp2_conn_initiate_immediate_migration(c->conn, &path, now) == 0) {
                        memcpy(&c->local, &local, sizeof(local));
                        c->local_len = local_len;
                        l->migrations++;
                } else
                        l->migration_fallbacks++;
        }
        safe_close(c->fd);  /* closing it also drops it from the epoll set */
        c->fd = fd;
        c->rebinds++;
        l->rebinds++;
        /*
         * Send from the new port now, or the server, which only learns the new port from a
         * datagram, keeps answering the old one: a request if none is in flight, and a PING
         * either way (a keep-alive timeout of 1 ns makes the next write carry one).
         */
        if (c->stream_id < 0)
                c->next_ping_nsec = now;
        ngtcp2_conn_set_keep_alive_timeout(c->conn, 1);
        client_write(c, now_nsec());
        if (!c->ended)
                ngtcp2_conn_set_keep_alive_timeout(c->conn, 0);
        return 0;
}

/* ---- the run ---- */

static void load_rebind_all(Load *l, const char *why) {
        uint64_t now = now_nsec();
        size_t n = 0;

        uint64_t in_flight = 0;

        for (Client *c = l->clients; c; c = c->next)
                if (c->kind == KIND_SHORT && !c->ended && !c->established)
                        in_flight++;
        if (l->rebind_events == 0 || in_flight < l->hs_in_flight_min)
                l->hs_in_flight_min = in_flight;
        if (in_flight > l->hs_in_flight_max)
                l->hs_in_flight_max = in_flight;
        l->rebind_events++;
        for (Client *c = l->clients; c; c = c->next) {
                if (c->ended || !c->confirmed)
                        continue;
                if (client_rebind(c, now) < 0)
                        l->rebind_errors++;
                else
                        n++;
        }
        if (!arg_quiet || arg_progress)
                fprintf(stderr, "grm-quic-load: %.3f s: rebinding %zu clients (%s, %s), %" PRIu64
                        " handshakes in progress\n",
                        (double) (now - l->start_nsec) / NSEC_PER_SEC, n,
                        arg_rebind_mode == REBIND_NAT ? "nat" : "migrate", why, in_flight);
}

static bool rebind_file_changed(Load *l) {
        struct stat st;

        if (stat(arg_rebind_file, &st) < 0) {
                if (l->rebind_file_seen) {
                        l->rebind_file_seen = false;
                        return true;  /* removed: a change too */
                }
                return false;
        }
        if (l->rebind_file_seen && st.st_ino == l->rebind_file_st.st_ino && st.st_size == l->rebind_file_st.st_size &&
            st.st_mtim.tv_sec == l->rebind_file_st.st_mtim.tv_sec &&
            st.st_mtim.tv_nsec == l->rebind_file_st.st_mtim.tv_nsec)
                return false;
        l->rebind_file_st = st;
        l->rebind_file_seen = true;
        return true;
}

/* Frees ended clients (sending a CONNECTION_CLOSE first) and refills their slots. */
static void load_reap(Load *l, uint64_t now) {
        while (l->ended) {
                Client *c = l->ended;
                ClientKind kind = c->kind;
                uint32_t slot = c->slot;

                l->ended = c->ended_next;
                client_send_close(c, now);
                client_free(c);
                if (kind == KIND_LONG && l->phase == PHASE_RUNNING && slot < l->next_open_slot)
                        (void) client_new(l, KIND_LONG, slot, now, NULL);  /* a failure counts in open_errors */
        }
}

static void load_progress(Load *l, uint64_t now) {
        if (!arg_progress || now < l->next_progress_nsec)
                return;
        l->next_progress_nsec = now + NSEC_PER_SEC;
        fprintf(stderr, "grm-quic-load: %6.1f s  clients %zu  established %" PRIu64 "  broken %" PRIu64
                "  failed %" PRIu64 "  handshakes %" PRIu64 "/%" PRIu64 " ok  pings %" PRIu64 "/%" PRIu64
                "  generations %zu\n",
                (double) (now - l->start_nsec) / NSEC_PER_SEC, l->n_clients, l->conns_established, l->conns_broken,
                l->conns_failed, l->hs_ok, l->hs_started, l->pings_answered, l->pings_sent, l->n_gens);
}

static void load_finish(Load *l, uint64_t now) {
        l->phase = PHASE_FINISHING;
        l->stop_nsec = now;
        /* Whatever is in flight gets its timeout to finish; then the run ends. */
        l->finish_deadline_nsec = now + (arg_ping_timeout_nsec > arg_handshake_timeout_nsec ? arg_ping_timeout_nsec
                                                                                              : arg_handshake_timeout_nsec);
        for (Client *c = l->clients; c; c = c->next)
                if (c->kind == KIND_LONG && !c->ended && c->established && c->stream_id < 0)
                        client_end(c, END_RETIRED);
                else
                        c->next_ping_nsec = c->kind == KIND_LONG ? UINT64_MAX : c->next_ping_nsec;
}

static void load_tick(Load *l, uint64_t now) {
        if (l->phase == PHASE_RUNNING) {
                unsigned burst = 0;

                if (l->interrupted || now >= l->end_nsec) {
                        load_finish(l, now);
                        return;
                }
                /* The ramp: slot i opens at start + i * ramp / N. */
                while (l->next_open_slot < arg_connections &&
                       now >= l->start_nsec + arg_ramp_nsec * l->next_open_slot / arg_connections) {
                        uint32_t slot = l->next_open_slot++;

                        /* A failure is counted in open_errors; the slot stays empty. */
                        (void) client_new(l, KIND_LONG, slot, now, NULL);
                }
                while (arg_handshake_rate > 0 && now >= l->next_handshake_nsec && burst++ < HANDSHAKE_BURST_MAX) {
                        l->next_handshake_nsec += (uint64_t) ((double) NSEC_PER_SEC / arg_handshake_rate);
                        (void) client_new(l, KIND_SHORT, 0, now, NULL);
                }
                if (arg_handshake_rate > 0 && now > l->next_handshake_nsec + NSEC_PER_SEC)
                        l->next_handshake_nsec = now;  /* stalled: do not burst to catch up */

                if (l->rebind_requested) {
                        l->rebind_requested = false;
                        load_rebind_all(l, "signal");
                }
                if (arg_rebind_file && rebind_file_changed(l))
                        load_rebind_all(l, arg_rebind_file);
                if (arg_rebind_every_nsec > 0 && now >= l->next_rebind_nsec) {
                        l->next_rebind_nsec = now + arg_rebind_every_nsec;
                        load_rebind_all(l, "schedule");
                }
        } else if (l->phase == PHASE_FINISHING) {
                if (l->n_clients == 0 || now >= l->finish_deadline_nsec || l->interrupted) {
                        for (Client *c = l->clients; c; c = c->next)
                                client_end(c, c->kind == KIND_LONG && c->established && c->stream_id < 0
                                                      ? END_RETIRED
                                                      : c->established ? END_PING_TIMEOUT : END_HANDSHAKE_TIMEOUT);
                        l->phase = PHASE_DONE;
                }
        }
        load_progress(l, now);
}

static void load_handle_signals(Load *l) {
        struct signalfd_siginfo si;

        while (read(l->signal_fd, &si, sizeof(si)) == sizeof(si)) {
                if (arg_rebind_signal > 0 && (int) si.ssi_signo == arg_rebind_signal)
                        l->rebind_requested = true;
                else if (l->phase == PHASE_FINISHING)
                        l->interrupted = true;  /* second signal: stop waiting */
                else
                        l->interrupted = true;
        }
}

static int load_run(Load *l) {
        struct epoll_event events[256];

        l->start_nsec = now_nsec();
        l->end_nsec = l->start_nsec + arg_duration_nsec;
        l->next_tick_nsec = l->start_nsec;
        l->next_handshake_nsec = l->start_nsec;
        l->next_rebind_nsec = l->start_nsec + arg_rebind_every_nsec;
        l->next_progress_nsec = l->start_nsec + NSEC_PER_SEC;
        if (arg_rebind_file)
                (void) rebind_file_changed(l);  /* the state at the start is not a change */

        while (l->phase != PHASE_DONE) {
                uint64_t now = now_nsec(), next;
                QuicTimer *t;
                int n;

                if (now >= l->next_tick_nsec) {
                        l->next_tick_nsec = now + TICK_NSEC;
                        load_tick(l, now);
                }
                while ((t = quic_timer_first(&l->timers)) && t->due <= now) {
                        Client *c = quic_container_of(t, Client, timer);

                        quic_timer_remove(&l->timers, t);
                        client_on_timer(c, now);
                        if (!c->ended && c->timer.index == SIZE_MAX)
                                client_arm(c, now);
                }
                load_reap(l, now);
                if (l->phase == PHASE_DONE)
                        break;

                next = l->next_tick_nsec;
                t = quic_timer_first(&l->timers);
                if (t && t->due < next)
                        next = t->due;
                n = epoll_wait(l->epoll_fd, events, ELEMENTSOF(events), quic_timeout_ms(next, now_nsec()));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error(negative_errno(), "epoll_wait(): %m");
                }
                for (int i = 0; i < n; i++) {
                        if (events[i].data.ptr == SIGNAL_TOKEN) {
                                load_handle_signals(l);
                                l->next_tick_nsec = 0;
                        } else {
                                Client *c = events[i].data.ptr;

                                if (!c->ended)
                                        client_receive(c);
                        }
                }
                /* Ended clients are freed only here, after every event of the batch was seen. */
                load_reap(l, now_nsec());
        }
        if (l->stop_nsec == 0)
                l->stop_nsec = now_nsec();
        return 0;
}

/* ---- set-up and report ---- */

static int load_raise_fd_limit(void) {
        struct rlimit rl;
        rlim_t need = (rlim_t) arg_connections * 2 + (rlim_t) (arg_handshake_rate * 10) + FD_SPARE;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return negative_errno();
        if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
                return 0;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
                /* privileged: the hard limit can be raised too */
                if (setrlimit(RLIMIT_NOFILE, &(struct rlimit) { need, need }) >= 0)
                        return 0;
                rl.rlim_cur = rl.rlim_max;
                if (rl.rlim_max < (rlim_t) arg_connections + FD_SPARE)
                        return -EMFILE;
        } else
                rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                return negative_errno();
        return 0;
}

static void load_free(Load *l) {
        if (!l)
                return;
        l->ended = NULL;
        while (l->clients)
                client_free(l->clients);
        free(l->slots);
        quic_heap_done(&l->timers);
        if (l->cred)
                gnutls_certificate_free_credentials(l->cred);
        safe_close(l->epoll_fd);
        safe_close(l->signal_fd);
        free(l->buf);
        free(l->tx);
        free(l->gens);
        free(l->ping_usec.v);
        free(l->handshake_usec.v);
        free(l->records);
        free(l);
}

static void load_freep(Load **l) {
        load_free(*l);
}

static int load_setup(Load **ret) {
        _cleanup_(load_freep) Load *l = NULL;
        sigset_t mask;
        int gai = 0, r;

        l = calloc(1, sizeof(Load));
        if (!l)
                return log_error(-ENOMEM, "out of memory");
        l->epoll_fd = l->signal_fd = -EBADF;

        r = resolve_udp_address(arg_target, false, false, &l->target, &l->target_len, &gai);
        if (r == -EINVAL)
                return usage_error("TARGET: expected ADDR:PORT or [ADDR]:PORT, got '%s'", arg_target), -EINVAL;
        if (r < 0)
                return log_error(r, "cannot resolve '%s': %s", arg_target, gai_strerror(gai));

        r = load_raise_fd_limit();
        if (r < 0)
                return log_error(r, "cannot raise the open files limit for %u connections: %m", arg_connections);

        l->slots = calloc(arg_connections > 0 ? arg_connections : 1, sizeof(Client *));
        l->buf = malloc(DGRAM_BUF_SIZE);
        l->tx = malloc(DGRAM_BUF_SIZE);
        if (!l->slots || !l->buf || !l->tx)
                return log_error(-ENOMEM, "out of memory");
        if (gnutls_certificate_allocate_credentials(&l->cred) < 0) {
                l->cred = NULL;
                return log_error(-ENOMEM, "cannot allocate TLS credentials");
        }

        l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epoll_fd < 0)
                return log_error(negative_errno(), "epoll_create1(): %m");
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (arg_rebind_signal > 0)
                sigaddset(&mask, arg_rebind_signal);
        /* A shell starts background jobs with SIGINT ignored: restore it before blocking. */
        (void) signal(SIGINT, SIG_DFL);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error(negative_errno(), "sigprocmask(): %m");
        l->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (l->signal_fd < 0)
                return log_error(negative_errno(), "signalfd(): %m");
        if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->signal_fd,
                      &(struct epoll_event) { .events = EPOLLIN, .data.ptr = SIGNAL_TOKEN }) < 0)
                return log_error(negative_errno(), "epoll_ctl(): %m");

        *ret = TAKE_PTR(l);
        return 0;
}

static int generation_compare(const void *a, const void *b) {
        const Generation *x = a, *y = b;

        return x->number < y->number ? -1 : x->number > y->number;
}

static bool load_ok(const Load *l) {
        return l->pings_answered > 0 && l->conns_broken == 0 && l->conns_failed == 0 && l->hs_failed == 0 &&
               l->bad_replies == 0 && l->expect_violations == 0 && l->moved == 0 && l->open_errors == 0 &&
               l->rebind_errors == 0;
}

static void print_reasons(const uint64_t *reasons, bool json) {
        bool first = true;

        for (int i = END_HANDSHAKE_TIMEOUT; i < _END_MAX; i++) {
                if (json)
                        printf("%s\"%s\":%" PRIu64, i > END_HANDSHAKE_TIMEOUT ? "," : "", end_reason_names[i], reasons[i]);
                else if (reasons[i] > 0) {
                        printf("%s%s %" PRIu64, first ? " (" : ", ", end_reason_names[i], reasons[i]);
                        first = false;
                }
        }
        if (!json && !first)
                printf(")");
}

static void print_hex(const ngtcp2_cid *cid) {
        for (size_t i = 0; i < cid->datalen; i++)
                printf("%02x", cid->data[i]);
}

static void load_print_json(Load *l) {
        double secs = (double) (l->stop_nsec - l->start_nsec) / NSEC_PER_SEC;

        printf("{\"target\":\"%s\",\"duration_sec\":%.3f,\"interrupted\":%s,", arg_target, secs,
               l->interrupted ? "true" : "false");
        printf("\"connections\":{\"target\":%u,\"opened\":%" PRIu64 ",\"established\":%" PRIu64 ",\"retired\":%" PRIu64
               ",\"broken\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"reasons\":{",
               arg_connections, l->conns_opened, l->conns_established, l->conns_retired, l->conns_broken,
               l->conns_failed);
        print_reasons(l->end_reasons, true);
        printf("}},\"handshakes\":{\"started\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"reasons\":{",
               l->hs_started, l->hs_ok, l->hs_failed);
        print_reasons(l->hs_end_reasons, true);
        printf("}},\"pings\":{\"sent\":%" PRIu64 ",\"answered\":%" PRIu64 "},\"bad_replies\":%" PRIu64
               ",\"moved\":%" PRIu64 ",\"expect_violations\":%" PRIu64,
               l->pings_sent, l->pings_answered, l->bad_replies, l->moved, l->expect_violations);
        printf(",\"rebind\":{\"mode\":\"%s\",\"events\":%" PRIu64 ",\"clients\":%" PRIu64 ",\"migrations\":%" PRIu64
               ",\"migration_fallbacks\":%" PRIu64 ",\"errors\":%" PRIu64
               ",\"handshakes_in_progress_min\":%" PRIu64 ",\"handshakes_in_progress_max\":%" PRIu64 "}",
               arg_rebind_mode == REBIND_NAT ? "nat" : "migrate", l->rebind_events, l->rebinds, l->migrations,
               l->migration_fallbacks, l->rebind_errors, l->hs_in_flight_min, l->hs_in_flight_max);
        printf(",\"open_errors\":%" PRIu64 ",\"send_errors\":%" PRIu64 ",\"source_ports_wrapped\":%s", l->open_errors,
               l->send_errors, l->ports_wrapped ? "true" : "false");
        printf(",\"ping_latency_us\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 "}",
               samples_quantile(&l->ping_usec, 0.5), samples_quantile(&l->ping_usec, 0.99));
        printf(",\"handshake_latency_us\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 "}",
               samples_quantile(&l->handshake_usec, 0.5), samples_quantile(&l->handshake_usec, 0.99));
        printf(",\"generations\":[");
        for (size_t i = 0; i < l->n_gens; i++) {
                const Generation *g = &l->gens[i];

                printf("%s{\"generation\":%" PRIu64 ",\"connections\":%" PRIu64 ",\"handshakes\":%" PRIu64
                       ",\"replies\":%" PRIu64 ",\"broken\":%" PRIu64 "}",
                       i > 0 ? "," : "", g->number, g->connections, g->handshakes, g->replies, g->broken);
        }
        printf("]");
        if (arg_per_connection) {
                bool first = true;

                printf(",\"per_connection\":[");
                for (size_t i = 0; i < l->n_records; i++) {
                        const ConnRecord *c = &l->records[i];

                        printf("%s{\"id\":%" PRIu32 ",\"generation\":", first ? "" : ",", c->id);
                        if (c->has_gen)
                                printf("%" PRIu64, c->gen);
                        else
                                printf("null");
                        printf(",\"answered\":%" PRIu32 ",\"rebinds\":%" PRIu32 ",\"end\":\"%s\",\"dcid_first\":\"",
                               c->answered, c->rebinds, end_reason_names[c->end]);
                        print_hex(&c->dcid_first);
                        printf("\",\"dcid_last\":\"");
                        print_hex(&c->dcid_last);
                        printf("\"}");
                        first = false;
                }
                printf("]");
        }
        printf(",\"ok\":%s}\n", load_ok(l) ? "true" : "false");
}

static void load_print_human(Load *l) {
        printf("grm-quic-load: %s: %u connections (request every %.3f s), %.1f handshakes/s, for %.3f s\n",
               arg_target, arg_connections, (double) arg_interval_nsec / NSEC_PER_SEC, arg_handshake_rate,
               (double) arg_duration_nsec / NSEC_PER_SEC);
        if (l->interrupted)
                printf("  (interrupted)\n");
        printf("  %-24s %" PRIu64 " opened, %" PRIu64 " established, %" PRIu64 " retired\n", "connections",
               l->conns_opened, l->conns_established, l->conns_retired);
        printf("  %-24s %" PRIu64, "broken", l->conns_broken);
        print_reasons(l->end_reasons, false);
        printf("\n  %-24s %" PRIu64 "\n", "never established", l->conns_failed);
        printf("  %-24s %" PRIu64 " started, %" PRIu64 " ok, %" PRIu64 " failed", "handshakes", l->hs_started, l->hs_ok,
               l->hs_failed);
        print_reasons(l->hs_end_reasons, false);
        printf("\n  %-24s %" PRIu64 " sent, %" PRIu64 " answered, %" PRIu64 " bad replies, %" PRIu64 " moved\n",
               "requests", l->pings_sent, l->pings_answered, l->bad_replies, l->moved);
        if (arg_expect)
                printf("  %-24s %" PRIu64 " (expected generation %" PRIu64 ")\n", "expect violations",
                       l->expect_violations, arg_expect_generation);
        printf("  %-24s %" PRIu64 " events, %" PRIu64 " client moves (%s), %" PRIu64 " migrations, %" PRIu64
               " fell back to nat, %" PRIu64 " errors\n",
               "rebinding", l->rebind_events, l->rebinds, arg_rebind_mode == REBIND_NAT ? "nat" : "migrate",
               l->migrations, l->migration_fallbacks, l->rebind_errors);
        printf("  %-24s p50 %" PRIu64 " us, p99 %" PRIu64 " us\n", "request latency",
               samples_quantile(&l->ping_usec, 0.5), samples_quantile(&l->ping_usec, 0.99));
        printf("  %-24s p50 %" PRIu64 " us, p99 %" PRIu64 " us\n", "handshake latency",
               samples_quantile(&l->handshake_usec, 0.5), samples_quantile(&l->handshake_usec, 0.99));
        printf("\n  %-12s %-12s %-12s %-12s %s\n", "generation", "connections", "handshakes", "replies", "broken");
        for (size_t i = 0; i < l->n_gens; i++) {
                const Generation *g = &l->gens[i];

                printf("  %-12" PRIu64 " %-12" PRIu64 " %-12" PRIu64 " %-12" PRIu64 " %" PRIu64 "\n", g->number,
                       g->connections, g->handshakes, g->replies, g->broken);
        }
        if (arg_per_connection) {
                printf("\n  %-10s %-12s %-10s %-8s %s\n", "connection", "generation", "answered", "rebinds", "end");
                for (size_t i = 0; i < l->n_records; i++) {
                        const ConnRecord *c = &l->records[i];
                        char gen[24] = "-";

                        if (c->has_gen)
                                (void) snprintf(gen, sizeof(gen), "%" PRIu64, c->gen);
                        printf("  %-10" PRIu32 " %-12s %-10" PRIu32 " %-8" PRIu32 " %s\n", c->id, gen, c->answered,
                               c->rebinds, end_reason_names[c->end]);
                }
        }
        printf("\nresult: %s\n", load_ok(l) ? "OK" : "DEGRADED (exit status 1)");
}

int main(int argc, char *argv[]) {
        _cleanup_(load_freep) Load *l = NULL;
        int r;

        r = parse_argv(argc, argv);
        if (r < 0)
                return EXIT_USAGE;
        if (r == 0)
                return EXIT_OK;

        r = load_setup(&l);
        if (r == -EINVAL)
                return EXIT_USAGE;
        if (r < 0)
                return EXIT_SETUP;
        if (load_run(l) < 0)
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
