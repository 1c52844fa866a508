/* SPDX-License-Identifier: MIT */
/*
 * grm-quic-echo: the example QUIC server for grm (ngtcp2 + GnuTLS). It is socket-activated like
 * grm-echo (every LISTEN_FDS socket, and/or --listen), sends READY=1 with sd_notify(), and echoes
 * every request stream with " gen=<N> pid=<P>\n" appended (see quic-util.h for the protocol), so
 * a client can tell which generation serves its connection.
 *
 * Connection IDs follow grm's contract (docs/QUIC.md): every CID issued on a socket (the first
 * SCID of a connection and each NEW_CONNECTION_ID) is octet 0 = GRM_QUIC_CONFIG_ID << 5 |
 * (length - 1), then that socket's server ID from GRM_QUIC_SERVER_IDS, then random octets; so
 * grm's `quic` dissector steers the connection's packets to this socket whatever address and
 * port they come from. Without GRM_QUIC_SERVER_IDS (or if it does not parse) the CIDs are
 * random (with QUIC-LB's "unroutable" config 0b111 in octet 0).
 *
 * On the drain signal (SIGTERM, SIGINT, --drain-signal) it keeps serving its connections and
 * still accepts new ones (a handshake that was in flight at the flip may still arrive), and
 * exits 0 once it has had no connection for --idle-exit seconds.
 *
 * Owns: its sockets, one epoll loop (sockets, signalfd), the connections (ngtcp2_conn + GnuTLS
 * session each), the CID table that maps every CID it issued (and each client-chosen initial
 * DCID) to its connection, one timer heap, the TLS credentials.
 * Invariants: a connection is freed only from the loop, never inside an ngtcp2 callback; every
 * CID a connection put in the table is removed when it is freed; a bad datagram is dropped or
 * answered (version negotiation, stateless reset), never fatal.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "macro.h"
#include "quic-util.h"
#include "tools-util.h"

#define DGRAM_BUF_SIZE 65536
#define TRAILER_MAX 64
#define LISTEN_BUFFER_BYTES (4 * 1024 * 1024)
#define RECV_ROUNDS 64               /* datagrams read per socket per wakeup, at most */
#define SEND_PKTS_MAX 16             /* datagrams written per connection per call, at most */
#define RESET_SECRET_LEN 32
#define CID_TABLE_MIN 1024
#define CONN_CIDS_MAX 16             /* issued CIDs a connection holds at once, with spares */
#define SIGNAL_TOKEN UINT64_MAX

enum {
        EXIT_USAGE = 2,
};

typedef struct EchoSocket {
        int fd;
        size_t index;
        int family;
        bool pktinfo;                /* wildcard bind: learn and set the local address per datagram */
        struct sockaddr_storage local;
        socklen_t local_len;
        bool has_server_id;
        uint8_t server_id[QUIC_SERVER_ID_MAX];
        size_t server_id_len;
        size_t cid_len;
} EchoSocket;

typedef struct Echo Echo;
typedef struct Conn Conn;

typedef struct EchoStream {
        int64_t id;
        uint8_t *data;               /* the request; once the FIN arrived, the reply */
        size_t len;
        size_t offset;               /* reply octets handed to ngtcp2 */
        bool replying;
        bool queued;
        bool refused;                /* too long: shut down, everything else ignored */
        struct EchoStream *prev, *next;  /* all streams of the connection */
        struct EchoStream *qnext;        /* write queue */
} EchoStream;

struct Conn {
        Echo *echo;
        EchoSocket *socket;          /* the socket whose server ID the CIDs carry */
        ngtcp2_conn *conn;
        gnutls_session_t tls;
        ngtcp2_crypto_conn_ref conn_ref;
        ngtcp2_connection_close_error last_error;
        QuicTimer timer;

        ngtcp2_cid cids[CONN_CIDS_MAX];  /* in the CID table, owned by this connection */
        size_t n_cids;

        EchoStream *streams;
        EchoStream *wq_head, *wq_tail;

        bool closing;                /* closing or draining period: waits for close_deadline */
        bool dead;                   /* on Echo.dead, to be freed by the loop */
        Conn *dead_next;
        uint8_t *close_pkt;          /* CONNECTION_CLOSE resent in the closing period */
        size_t close_pkt_len;
        Conn *prev, *next;
};

typedef struct CidEntry {
        ngtcp2_cid cid;
        Conn *conn;
        struct CidEntry *next;
} CidEntry;

typedef enum EchoState {
        STATE_SERVING,
        STATE_DRAINING,
} EchoState;

struct Echo {
        EchoSocket *sockets;
        size_t n_sockets;
        int epoll_fd;
        int signal_fd;

        uint64_t generation;
        pid_t pid;
        char trailer[TRAILER_MAX];
        size_t trailer_len;
        unsigned config_id;
        bool has_config_id;          /* GRM_QUIC_CONFIG_ID absent (0) or valid */

        gnutls_certificate_credentials_t cred;
        uint8_t reset_secret[RESET_SECRET_LEN];

        Conn *conns;
        size_t n_conns;
        Conn *dead;                  /* connections to free once the current event is done */
        CidEntry **cid_buckets;
        size_t n_cid_buckets, n_cid_entries;
        uint64_t cid_seed;
        QuicTimerHeap timers;

        EchoState state;
        uint64_t drain_start_nsec;
        uint64_t idle_since_nsec;    /* draining with no connection since then; 0: busy */

        uint64_t n_accepted;
        uint64_t n_handshakes;
        uint64_t n_replies;
        uint64_t n_dropped;
        uint64_t n_resets;
        uint64_t n_version_negotiations;

        uint8_t *buf;                /* receive buffer */
        uint8_t *tx;                 /* transmit buffer */
};

static char **arg_listen = NULL;
static size_t arg_n_listen = 0;
static sigset_t arg_drain_signals;
static uint64_t arg_idle_exit_nsec = NSEC_PER_SEC;
static uint64_t arg_max_drain_nsec = 0;
static uint64_t arg_idle_timeout_nsec = 30 * NSEC_PER_SEC;
static uint64_t arg_max_connections = 20000;
static const char *arg_cert = NULL;
static const char *arg_key = NULL;
static const char *arg_reset_key = NULL;
static bool arg_verbose = false;

static void conn_free(Conn *c);
static void conn_write(Conn *c, uint64_t now);

static void log_state(const Echo *e, const char *fmt, ...) _printf_(2, 3);
static void log_state(const Echo *e, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "grm-quic-echo gen %" PRIu64 " pid %d: %s\n", e->generation, (int) e->pid, msg);
}

static int log_errno(int r, const char *fmt, ...) _printf_(2, 3);
static int log_errno(int r, const char *fmt, ...) {
        va_list ap;

        fputs("grm-quic-echo: ", stderr);
        errno = r < 0 ? -r : r;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return r;
}

static void arg_listen_freep(char ***p) {
        for (size_t i = 0; i < arg_n_listen; i++)
                free((*p)[i]);
        free(*p);
}

static int help(void) {
        printf("Usage: %s [OPTIONS]\n"
               "\n"
               "QUIC echo service for grm (ngtcp2, GnuTLS). ALPN \"%s\": every request stream a\n"
               "client opens (at most %u octets, then FIN) is answered on the same stream with the\n"
               "request followed by \" gen=<N> pid=<PID>\\n\", then FIN. Sockets come from socket\n"
               "activation (LISTEN_FDS/LISTEN_PID) and/or --listen. Sends READY=1 with sd_notify()\n"
               "when set up. On SIGTERM, SIGINT or a --drain-signal it drains: sends STOPPING=1,\n"
               "keeps serving its connections, still accepts new ones, and exits 0 once it has had\n"
               "no connection for --idle-exit seconds.\n"
               "\n"
               "Connection IDs (grm's QUIC contract, docs/QUIC.md): every CID issued on a socket is\n"
               "octet 0 = GRM_QUIC_CONFIG_ID << 5 | (length - 1), then that socket's server ID from\n"
               "GRM_QUIC_SERVER_IDS, then %u random octets (fewer if that would pass 20, never\n"
               "fewer than 4). Without GRM_QUIC_SERVER_IDS, if it or GRM_QUIC_CONFIG_ID does not\n"
               "parse, and on --listen sockets, CIDs are 16 random octets with config 0b111\n"
               "(QUIC-LB's \"unroutable\") in octet 0.\n"
               "\n"
               "Options:\n"
               "  -h --help                Show this help and exit\n"
               "     --version             Show the version and exit\n"
               "  -l --listen ADDR:PORT    Also open a UDP socket with SO_REUSEPORT on ADDR:PORT;\n"
               "                           may be repeated\n"
               "     --drain-signal SIG    Also drain on SIG (name or number); may be repeated\n"
               "     --idle-exit SEC       While draining, exit after SEC seconds without any\n"
               "                           connection (default 1, fractions allowed)\n"
               "     --max-drain SEC       Drain ends at most SEC seconds after it started,\n"
               "                           connections or not (default 0: no limit)\n"
               "     --idle-timeout SEC    QUIC idle timeout of connections (default 30)\n"
               "     --max-connections N   Refuse new connections beyond N (default 20000)\n"
               "     --cert FILE           PEM certificate (chain); with --key. Default: an\n"
               "                           ephemeral self-signed ECDSA P-256 certificate for\n"
               "                           \"localhost\", made at start-up\n"
               "     --key FILE            PEM private key of --cert\n"
               "     --reset-key FILE      The stateless reset key: the first 32 octets of FILE (at\n"
               "                           least 16). Give every generation the same one, so that a\n"
               "                           client of a generation that is gone can verify the\n"
               "                           working one's reset and close at once. Default: random\n"
               "                           per instance (such resets are ignored; the connection\n"
               "                           ends by its idle timeout)\n"
               "  -v --verbose             Log every connection that opens or closes\n"
               "\n"
               "Environment:\n"
               "  GRM_GENERATION           Generation number put in replies (default 0)\n"
               "  GRM_QUIC_SERVER_IDS      Server IDs in hex, ':'-separated, one per LISTEN_FDS\n"
               "                           socket in order (1..%u octets each)\n"
               "  GRM_QUIC_CONFIG_ID       Config rotation value 0..6 (default 0)\n"
               "  LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, NOTIFY_SOCKET: as set by systemd/grmd\n"
               "\n"
               "Exit status: 0 drained, 1 setup error, 2 usage error.\n",
               program_invocation_short_name, QUIC_ECHO_ALPN, QUIC_ECHO_REQUEST_MAX,
               QUIC_CID_RANDOM_DEFAULT, QUIC_SERVER_ID_MAX);
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

static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_DRAIN_SIGNAL,
                ARG_IDLE_EXIT,
                ARG_MAX_DRAIN,
                ARG_IDLE_TIMEOUT,
                ARG_MAX_CONNECTIONS,
                ARG_CERT,
                ARG_KEY,
                ARG_RESET_KEY,
        };
        static const struct option options[] = {
                { "help",            no_argument,       NULL, 'h'                 },
                { "version",         no_argument,       NULL, ARG_VERSION         },
                { "listen",          required_argument, NULL, 'l'                 },
                { "drain-signal",    required_argument, NULL, ARG_DRAIN_SIGNAL    },
                { "idle-exit",       required_argument, NULL, ARG_IDLE_EXIT       },
                { "max-drain",       required_argument, NULL, ARG_MAX_DRAIN       },
                { "idle-timeout",    required_argument, NULL, ARG_IDLE_TIMEOUT    },
                { "max-connections", required_argument, NULL, ARG_MAX_CONNECTIONS },
                { "cert",            required_argument, NULL, ARG_CERT            },
                { "key",             required_argument, NULL, ARG_KEY             },
                { "reset-key",       required_argument, NULL, ARG_RESET_KEY       },
                { "verbose",         no_argument,       NULL, 'v'                 },
                {}
        };
        int c, sig;

        sigemptyset(&arg_drain_signals);
        sigaddset(&arg_drain_signals, SIGTERM);
        sigaddset(&arg_drain_signals, SIGINT);

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hl:v", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return help();
                case ARG_VERSION:
                        printf("grm-quic-echo %s (ngtcp2 %s, GnuTLS %s)\n", GRM_VERSION,
                               ngtcp2_version(0)->version_str, gnutls_check_version(NULL));
                        return 0;
                case 'l': {
                        char host[NI_MAXHOST], **l;
                        uint16_t port;

                        if (split_host_port(optarg, true, host, sizeof(host), &port) < 0)
                                return usage_error("--listen: expected ADDR:PORT or [ADDR]:PORT, got '%s'", optarg);
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
                                return usage_error("--drain-signal: unknown or uncatchable signal '%s'", optarg);
                        sigaddset(&arg_drain_signals, sig);
                        break;
                case ARG_IDLE_EXIT:
                        if (parse_seconds(optarg, 1e6, &arg_idle_exit_nsec) < 0)
                                return usage_error("--idle-exit: invalid number of seconds '%s'", optarg);
                        break;
                case ARG_MAX_DRAIN:
                        if (parse_seconds(optarg, 1e6, &arg_max_drain_nsec) < 0)
                                return usage_error("--max-drain: invalid number of seconds '%s'", optarg);
                        break;
                case ARG_IDLE_TIMEOUT:
                        if (parse_seconds(optarg, 86400, &arg_idle_timeout_nsec) < 0 ||
                            arg_idle_timeout_nsec < NSEC_PER_SEC / 10)
                                return usage_error("--idle-timeout: expected 0.1..86400 seconds, got '%s'", optarg);
                        break;
                case ARG_MAX_CONNECTIONS:
                        if (parse_u64_range(optarg, 1, 1000000, &arg_max_connections) < 0)
                                return usage_error("--max-connections: expected 1..1000000, got '%s'", optarg);
                        break;
                case ARG_CERT:
                        arg_cert = optarg;
                        break;
                case ARG_KEY:
                        arg_key = optarg;
                        break;
                case ARG_RESET_KEY:
                        arg_reset_key = optarg;
                        break;
                case 'v':
                        arg_verbose = true;
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
        if (!!arg_cert != !!arg_key)
                return usage_error("--cert and --key go together");
        return 1;
}

/* ---- the CID table ---- */

static uint64_t cid_hash(const Echo *e, const uint8_t *data, size_t len) {
        uint64_t h = 0xcbf29ce484222325ULL ^ e->cid_seed;

        for (size_t i = 0; i < len; i++) {
                h ^= data[i];
                h *= 0x100000001b3ULL;
        }
        return h ^ (h >> 29);
}

static CidEntry **cid_slot(Echo *e, const uint8_t *data, size_t len) {
        CidEntry **p = &e->cid_buckets[cid_hash(e, data, len) & (e->n_cid_buckets - 1)];

        for (; *p; p = &(*p)->next)
                if ((*p)->cid.datalen == len && memcmp((*p)->cid.data, data, len) == 0)
                        return p;
        return p;
}

static Conn *cid_lookup(Echo *e, const uint8_t *data, size_t len) {
        CidEntry **p;

        if (len == 0 || len > NGTCP2_MAX_CIDLEN)
                return NULL;
        p = cid_slot(e, data, len);
        return *p ? (*p)->conn : NULL;
}

static int cid_table_grow(Echo *e) {
        size_t n = e->n_cid_buckets * 2;
        CidEntry **b = calloc(n, sizeof(CidEntry *));

        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < e->n_cid_buckets; i++)
                while (e->cid_buckets[i]) {
                        CidEntry *x = e->cid_buckets[i];
                        size_t j = cid_hash(e, x->cid.data, x->cid.datalen) & (n - 1);

                        e->cid_buckets[i] = x->next;
                        x->next = b[j];
                        b[j] = x;
                }
        free(e->cid_buckets);
        e->cid_buckets = b;
        e->n_cid_buckets = n;
        return 0;
}

/* Registers cid for c, in the table and in c's own list. -EEXIST if any connection has it. */
static int conn_add_cid(Conn *c, const ngtcp2_cid *cid) {
        Echo *e = c->echo;
        CidEntry **p, *x;

        if (cid->datalen == 0 || cid->datalen > NGTCP2_MAX_CIDLEN)
                return -EINVAL;
        if (c->n_cids >= CONN_CIDS_MAX)
                return -ENOBUFS;
        if (e->n_cid_entries >= e->n_cid_buckets && cid_table_grow(e) < 0)
                return -ENOMEM;
        p = cid_slot(e, cid->data, cid->datalen);
        if (*p)
                return -EEXIST;
        x = calloc(1, sizeof(CidEntry));
        if (!x)
                return -ENOMEM;
        x->cid = *cid;
        x->conn = c;
        *p = x;
        e->n_cid_entries++;
        c->cids[c->n_cids++] = *cid;
        return 0;
}

static void conn_remove_cid(Conn *c, const ngtcp2_cid *cid) {
        Echo *e = c->echo;
        CidEntry **p, *x;

        for (size_t i = 0; i < c->n_cids; i++)
                if (c->cids[i].datalen == cid->datalen && memcmp(c->cids[i].data, cid->data, cid->datalen) == 0) {
                        c->cids[i] = c->cids[--c->n_cids];
                        break;
                }
        p = cid_slot(e, cid->data, cid->datalen);
        x = *p;
        if (!x || x->conn != c)
                return;
        *p = x->next;
        free(x);
        e->n_cid_entries--;
}

/* ---- connection IDs per the contract ---- */

static int socket_make_cid(const Echo *e, const EchoSocket *s, ngtcp2_cid *cid, size_t len) {
        uint8_t rnd[QUIC_CID_MAX];

        if (gnutls_rnd(GNUTLS_RND_RANDOM, rnd, sizeof(rnd)) < 0)
                return -EIO;
        if (s->has_server_id)
                quic_cid_build(cid->data, len, e->config_id, s->server_id, s->server_id_len, rnd);
        else
                quic_cid_build(cid->data, len, QUIC_CONFIG_UNROUTABLE, NULL, 0, rnd);
        cid->datalen = len;
        return 0;
}

/* ---- sending ---- */

typedef union ControlBuffer {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
} ControlBuffer;

/* Sends one datagram from socket s (from local, if the socket is a wildcard one) to remote. */
static void echo_send(Echo *e, EchoSocket *s, const struct sockaddr *local, const struct sockaddr *remote,
                      socklen_t remote_len, const uint8_t *data, size_t len) {
        struct iovec iov = { .iov_base = (void *) data, .iov_len = len };
        ControlBuffer ctl = {};
        struct msghdr mh = {
                .msg_name = (void *) remote,
                .msg_namelen = remote_len,
                .msg_iov = &iov,
                .msg_iovlen = 1,
        };

        if (s->pktinfo && local) {
                struct cmsghdr *cm = (struct cmsghdr *) ctl.buf;

                if (local->sa_family == AF_INET) {
                        struct in_pktinfo pi = { .ipi_spec_dst = ((const struct sockaddr_in *) local)->sin_addr };

                        cm->cmsg_level = IPPROTO_IP;
                        cm->cmsg_type = IP_PKTINFO;
                        cm->cmsg_len = CMSG_LEN(sizeof(pi));
                        memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
                        mh.msg_control = ctl.buf;
                        mh.msg_controllen = CMSG_SPACE(sizeof(pi));
                } else if (local->sa_family == AF_INET6) {
                        struct in6_pktinfo pi = { .ipi6_addr = ((const struct sockaddr_in6 *) local)->sin6_addr };

                        if (IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr))
                                pi.ipi6_ifindex = ((const struct sockaddr_in6 *) local)->sin6_scope_id;
                        cm->cmsg_level = IPPROTO_IPV6;
                        cm->cmsg_type = IPV6_PKTINFO;
                        cm->cmsg_len = CMSG_LEN(sizeof(pi));
                        memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
                        mh.msg_control = ctl.buf;
                        mh.msg_controllen = CMSG_SPACE(sizeof(pi));
                }
        }

        for (;;) {
                if (sendmsg(s->fd, &mh, MSG_DONTWAIT) >= 0)
                        return;
                if (errno != EINTR)
                        break;
        }
        /* A full queue or an unreachable peer: QUIC's loss recovery resends what mattered. */
        e->n_dropped++;
}

/* ---- ngtcp2 callbacks ---- */

static ngtcp2_conn *conn_ref_get(ngtcp2_crypto_conn_ref *ref) {
        return ((Conn *) ref->user_data)->conn;
}

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
        (void) gnutls_rnd(GNUTLS_RND_NONCE, dest, len);
}

static int cb_get_new_connection_id(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                                    void *user_data) {
        Conn *c = user_data;

        /* ngtcp2 asks for the length it was given with the first SCID: the socket's. */
        if (socket_make_cid(c->echo, c->socket, cid, cidlen) < 0)
                return NGTCP2_ERR_CALLBACK_FAILURE;
        if (ngtcp2_crypto_generate_stateless_reset_token(token, c->echo->reset_secret, RESET_SECRET_LEN, cid) != 0)
                return NGTCP2_ERR_CALLBACK_FAILURE;
        if (conn_add_cid(c, cid) < 0)
                return NGTCP2_ERR_CALLBACK_FAILURE;
        return 0;
}

static int cb_remove_connection_id(ngtcp2_conn *conn, const ngtcp2_cid *cid, void *user_data) {
        conn_remove_cid(user_data, cid);
        return 0;
}

static int cb_handshake_completed(ngtcp2_conn *conn, void *user_data) {
        Conn *c = user_data;

        c->echo->n_handshakes++;
        return 0;
}

static void stream_unqueue(Conn *c, EchoStream *s) {
        EchoStream **p;

        if (!s->queued)
                return;
        for (p = &c->wq_head; *p; p = &(*p)->qnext)
                if (*p == s) {
                        *p = s->qnext;
                        break;
                }
        c->wq_tail = NULL;
        for (EchoStream *x = c->wq_head; x; x = x->qnext)
                c->wq_tail = x;
        s->qnext = NULL;
        s->queued = false;
}

static void stream_queue(Conn *c, EchoStream *s) {
        if (s->queued || !s->replying || s->offset >= s->len)
                return;
        s->qnext = NULL;
        if (c->wq_tail)
                c->wq_tail->qnext = s;
        else
                c->wq_head = s;
        c->wq_tail = s;
        s->queued = true;
}

static void stream_free(Conn *c, EchoStream *s) {
        stream_unqueue(c, s);
        if (s->prev)
                s->prev->next = s->next;
        else
                c->streams = s->next;
        if (s->next)
                s->next->prev = s->prev;
        free(s->data);
        free(s);
}

static int cb_stream_open(ngtcp2_conn *conn, int64_t stream_id, void *user_data) {
        Conn *c = user_data;
        EchoStream *s;

        if (!ngtcp2_is_bidi_stream(stream_id))
                return 0;  /* unidirectional streams carry nothing for us: ignored */
        s = calloc(1, sizeof(EchoStream));
        if (!s)
                return NGTCP2_ERR_CALLBACK_FAILURE;
        s->id = stream_id;
        s->next = c->streams;
        if (c->streams)
                c->streams->prev = s;
        c->streams = s;
        (void) ngtcp2_conn_set_stream_user_data(conn, stream_id, s);
        return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id, uint64_t offset,
                               const uint8_t *data, size_t datalen, void *user_data, void *stream_user_data) {
        Conn *c = user_data;
        EchoStream *s = stream_user_data;
        Echo *e = c->echo;

        /* Credit comes back at once: the echo holds at most QUIC_ECHO_REQUEST_MAX per stream. */
        (void) ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
        ngtcp2_conn_extend_max_offset(conn, datalen);

        if (!s || s->refused || s->replying)
                return 0;
        if (s->len + datalen > QUIC_ECHO_REQUEST_MAX) {
                s->refused = true;
                (void) ngtcp2_conn_shutdown_stream(conn, stream_id, 1);
                return 0;
        }
        if (datalen > 0) {
                uint8_t *d = realloc(s->data, s->len + datalen + e->trailer_len);

                if (!d)
                        return NGTCP2_ERR_CALLBACK_FAILURE;
                s->data = d;
                memcpy(s->data + s->len, data, datalen);
                s->len += datalen;
        }
        if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) {
                uint8_t *d = realloc(s->data, s->len + e->trailer_len);

                if (!d)
                        return NGTCP2_ERR_CALLBACK_FAILURE;
                s->data = d;
                memcpy(s->data + s->len, e->trailer, e->trailer_len);
                s->len += e->trailer_len;
                s->replying = true;
                e->n_replies++;
                stream_queue(c, s);
        }
        return 0;
}

static int cb_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id, uint64_t app_error_code,
                           void *user_data, void *stream_user_data) {
        Conn *c = user_data;

        if (stream_user_data)
                stream_free(c, stream_user_data);
        if (ngtcp2_is_bidi_stream(stream_id) && !ngtcp2_conn_is_local_stream(conn, stream_id))
                ngtcp2_conn_extend_max_streams_bidi(conn, 1);
        return 0;
}

/* The client gave up on a stream (RESET_STREAM or STOP_SENDING): close it both ways. */
static int cb_stream_reset(ngtcp2_conn *conn, int64_t stream_id, uint64_t final_size, uint64_t app_error_code,
                           void *user_data, void *stream_user_data) {
        EchoStream *s = stream_user_data;

        if (s)
                stream_unqueue(user_data, s);
        (void) ngtcp2_conn_shutdown_stream(conn, stream_id, 0);
        return 0;
}

static int cb_stream_stop_sending(ngtcp2_conn *conn, int64_t stream_id, uint64_t app_error_code,
                                  void *user_data, void *stream_user_data) {
        return cb_stream_reset(conn, stream_id, 0, app_error_code, user_data, stream_user_data);
}

static int cb_extend_max_stream_data(ngtcp2_conn *conn, int64_t stream_id, uint64_t max_data,
                                     void *user_data, void *stream_user_data) {
        if (stream_user_data)
                stream_queue(user_data, stream_user_data);
        return 0;
}

static const ngtcp2_callbacks server_callbacks = {
        .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
        .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
        .handshake_completed = cb_handshake_completed,
        .encrypt = ngtcp2_crypto_encrypt_cb,
        .decrypt = ngtcp2_crypto_decrypt_cb,
        .hp_mask = ngtcp2_crypto_hp_mask_cb,
        .recv_stream_data = cb_recv_stream_data,
        .stream_open = cb_stream_open,
        .stream_close = cb_stream_close,
        .rand = cb_rand,
        .get_new_connection_id = cb_get_new_connection_id,
        .remove_connection_id = cb_remove_connection_id,
        .update_key = ngtcp2_crypto_update_key_cb,
        .stream_reset = cb_stream_reset,
        .extend_max_stream_data = cb_extend_max_stream_data,
        .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
        .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
        .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
        .stream_stop_sending = cb_stream_stop_sending,
        .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ---- connections ---- */

static void conn_free(Conn *c) {
        Echo *e;

        if (!c)
                return;
        e = c->echo;
        while (c->n_cids > 0) {
                ngtcp2_cid cid = c->cids[c->n_cids - 1];

                conn_remove_cid(c, &cid);
        }
        while (c->streams)
                stream_free(c, c->streams);
        quic_timer_remove(&e->timers, &c->timer);
        if (c->conn)
                ngtcp2_conn_del(c->conn);
        if (c->tls)
                gnutls_deinit(c->tls);
        free(c->close_pkt);
        if (c->prev)
                c->prev->next = c->next;
        else if (e->conns == c)
                e->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        e->n_conns--;
        if (e->n_conns == 0 && e->state == STATE_DRAINING)
                e->idle_since_nsec = now_nsec();
        if (arg_verbose)
                log_state(e, "connection closed (%zu left)", e->n_conns);
        free(c);
}

static void conn_mark_dead(Conn *c) {
        if (c->dead)
                return;
        c->dead = true;
        c->dead_next = c->echo->dead;
        c->echo->dead = c;
}

static void conn_arm(Conn *c, uint64_t due) {
        /* Out of memory for the heap: the connection cannot be driven, so it is dropped. */
        if (quic_timer_set(&c->echo->timers, &c->timer, due) < 0)
                conn_mark_dead(c);
}

/* Enters the closing period: sends CONNECTION_CLOSE (c->last_error) and waits 3 PTO. */
static void conn_close(Conn *c, uint64_t now) {
        ngtcp2_path_storage ps;
        ngtcp2_pkt_info pi;
        ngtcp2_ssize n;

        if (c->closing)
                return;
        c->closing = true;
        conn_arm(c, now + 3 * ngtcp2_conn_get_pto(c->conn));
        if (ngtcp2_conn_is_in_closing_period(c->conn) || ngtcp2_conn_is_in_draining_period(c->conn))
                return;

        ngtcp2_path_storage_zero(&ps);
        n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi, c->echo->tx, NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE,
                                               &c->last_error, now);
        if (n <= 0)
                return;
        c->close_pkt = malloc((size_t) n);
        if (c->close_pkt) {
                memcpy(c->close_pkt, c->echo->tx, (size_t) n);
                c->close_pkt_len = (size_t) n;
        }
        echo_send(c->echo, ps.path.user_data ? ps.path.user_data : c->socket, ps.path.local.addr,
                  ps.path.remote.addr, ps.path.remote.addrlen, c->echo->tx, (size_t) n);
}

/* An ngtcp2 error rv ends the connection: silently, after draining, or with CONNECTION_CLOSE. */
static void conn_handle_error(Conn *c, int rv, uint64_t now) {
        switch (rv) {
        case NGTCP2_ERR_DRAINING:         /* the client closed it */
                c->closing = true;
                conn_arm(c, now + 3 * ngtcp2_conn_get_pto(c->conn));
                return;
        case NGTCP2_ERR_IDLE_CLOSE:
        case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
        case NGTCP2_ERR_DROP_CONN:
                conn_mark_dead(c);
                return;
        case NGTCP2_ERR_CRYPTO:
                ngtcp2_connection_close_error_set_transport_error_tls_alert(
                        &c->last_error, ngtcp2_conn_get_tls_alert(c->conn), NULL, 0);
                break;
        default:
                ngtcp2_connection_close_error_set_transport_error_liberr(&c->last_error, rv, NULL, 0);
        }
        conn_close(c, now);
}

static void conn_write(Conn *c, uint64_t now) {
        Echo *e = c->echo;
        ngtcp2_path_storage ps;
        ngtcp2_pkt_info pi;
        size_t max_len, n_pkts = 0;

        if (c->closing || c->dead)
                return;

        max_len = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
        if (max_len > DGRAM_BUF_SIZE)
                max_len = DGRAM_BUF_SIZE;
        ngtcp2_path_storage_zero(&ps);

        for (;;) {
                EchoStream *s = c->wq_head;
                uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
                ngtcp2_ssize n, ndatalen = -1;
                ngtcp2_vec v = {};
                int64_t stream_id = -1;

                if (s) {
                        stream_id = s->id;
                        v.base = s->data + s->offset;
                        v.len = s->len - s->offset;
                        flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
                }

                n = ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, e->tx, max_len, &ndatalen, flags, stream_id,
                                              s ? &v : NULL, s ? 1 : 0, now);
                if (s && ndatalen >= 0) {
                        s->offset += (size_t) ndatalen;
                        if (s->offset >= s->len)
                                stream_unqueue(c, s);
                }
                if (n == NGTCP2_ERR_WRITE_MORE)
                        continue;
                if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
                    n == NGTCP2_ERR_STREAM_NOT_FOUND) {
                        if (s)
                                stream_unqueue(c, s);  /* extend_max_stream_data queues it again */
                        continue;
                }
                if (n < 0) {
                        conn_handle_error(c, (int) n, now);
                        return;
                }
                if (n == 0)
                        break;

                echo_send(e, ps.path.user_data ? ps.path.user_data : c->socket, ps.path.local.addr,
                          ps.path.remote.addr, ps.path.remote.addrlen, e->tx, (size_t) n);
                if (++n_pkts >= SEND_PKTS_MAX)
                        break;  /* the expiry below brings us back for the rest */
        }
        ngtcp2_conn_update_pkt_tx_time(c->conn, now);
        conn_arm(c, ngtcp2_conn_get_expiry(c->conn));
}

static void conn_on_timer(Conn *c, uint64_t now) {
        int rv;

        if (c->closing) {
                conn_mark_dead(c);
                return;
        }
        rv = ngtcp2_conn_handle_expiry(c->conn, now);
        if (rv != 0) {
                conn_handle_error(c, rv, now);
                return;
        }
        conn_write(c, now);
}

static int conn_tls_new(Echo *e, Conn *c) {
        static const gnutls_datum_t alpn = { (unsigned char *) QUIC_ECHO_ALPN, sizeof(QUIC_ECHO_ALPN) - 1 };
        int r;

        r = gnutls_init(&c->tls, GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET | GNUTLS_NO_END_OF_EARLY_DATA);
        if (r < 0) {
                c->tls = NULL;
                return -ENOMEM;
        }
        if (gnutls_priority_set_direct(c->tls, QUIC_TLS_PRIORITY, NULL) < 0 ||
            ngtcp2_crypto_gnutls_configure_server_session(c->tls) != 0 ||
            gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, e->cred) < 0 ||
            gnutls_alpn_set_protocols(c->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) < 0)
                return -EIO;
        gnutls_session_set_ptr(c->tls, &c->conn_ref);
        return 0;
}

/* A new connection for the Initial hd, received on s from path. NULL if refused. */
static Conn *conn_new(Echo *e, EchoSocket *s, const ngtcp2_path *path, const ngtcp2_pkt_hd *hd, uint64_t now) {
        ngtcp2_settings settings;
        ngtcp2_transport_params params;
        ngtcp2_cid scid;
        Conn *c;

        if (e->n_conns >= arg_max_connections)
                return NULL;
        if (cid_lookup(e, hd->dcid.data, hd->dcid.datalen))
                return NULL;  /* a client reusing another connection's initial DCID */

        c = calloc(1, sizeof(Conn));
        if (!c)
                return NULL;
        c->echo = e;
        c->socket = s;
        c->timer = (QuicTimer) QUIC_TIMER_INIT;
        c->conn_ref = (ngtcp2_crypto_conn_ref) { .get_conn = conn_ref_get, .user_data = c };
        ngtcp2_connection_close_error_default(&c->last_error);
        c->next = e->conns;
        if (e->conns)
                e->conns->prev = c;
        e->conns = c;
        e->n_conns++;
        e->idle_since_nsec = 0;

        if (socket_make_cid(e, s, &scid, s->cid_len) < 0)
                goto fail;

        ngtcp2_settings_default(&settings);
        settings.initial_ts = now;
        settings.handshake_timeout = 10 * NGTCP2_SECONDS;

        ngtcp2_transport_params_default(&params);
        params.initial_max_streams_bidi = 100;
        params.initial_max_stream_data_bidi_remote = 64 * 1024;
        params.initial_max_stream_data_bidi_local = 64 * 1024;
        params.initial_max_data = 1024 * 1024;
        params.max_idle_timeout = arg_idle_timeout_nsec;
        params.active_connection_id_limit = 4;
        params.original_dcid = hd->dcid;
        params.stateless_reset_token_present = 1;
        if (ngtcp2_crypto_generate_stateless_reset_token(params.stateless_reset_token, e->reset_secret,
                                                         RESET_SECRET_LEN, &scid) != 0)
                goto fail;

        if (ngtcp2_conn_server_new(&c->conn, &hd->scid, &scid, path, hd->version, &server_callbacks, &settings,
                                   &params, NULL, c) != 0) {
                c->conn = NULL;
                goto fail;
        }
        if (conn_tls_new(e, c) < 0)
                goto fail;
        ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);

        if (conn_add_cid(c, &scid) < 0 || conn_add_cid(c, &hd->dcid) < 0)
                goto fail;
        e->n_accepted++;
        if (arg_verbose)
                log_state(e, "new connection on socket %zu (%zu open)", s->index, e->n_conns);
        return c;

fail:
        conn_free(c);
        return NULL;
}

/* ---- receiving ---- */

static void echo_send_version_negotiation(Echo *e, EchoSocket *s, const ngtcp2_version_cid *vc,
                                          const struct sockaddr *local, const struct sockaddr *remote,
                                          socklen_t remote_len) {
        uint32_t versions[] = { 0x1a2a3a4aU, NGTCP2_PROTO_VER_V1 };  /* a greased one, then v1 */
        uint8_t unused;
        ngtcp2_ssize n;

        (void) gnutls_rnd(GNUTLS_RND_NONCE, &unused, 1);
        n = ngtcp2_pkt_write_version_negotiation(e->tx, NGTCP2_MAX_UDP_PAYLOAD_SIZE, unused, vc->scid, vc->scidlen,
                                                 vc->dcid, vc->dcidlen, versions, ELEMENTSOF(versions));
        if (n > 0) {
                e->n_version_negotiations++;
                echo_send(e, s, local, remote, remote_len, e->tx, (size_t) n);
        }
}

/*
 * A short-header packet for a connection this process does not have (one of an older
 * generation, or one that ended): a stateless reset, smaller than the packet (RFC 9000 10.3).
 */
static void echo_send_stateless_reset(Echo *e, EchoSocket *s, const ngtcp2_version_cid *vc, size_t pkt_len,
                                      const struct sockaddr *local, const struct sockaddr *remote,
                                      socklen_t remote_len) {
        uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN], rnd[64];
        ngtcp2_cid cid = { .datalen = vc->dcidlen };
        size_t len = pkt_len - 1 < 41 ? pkt_len - 1 : 41;
        ngtcp2_ssize n;

        if (pkt_len < 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN + 1 ||
            vc->dcidlen == 0 || vc->dcidlen > NGTCP2_MAX_CIDLEN)
                return;
        memcpy(cid.data, vc->dcid, vc->dcidlen);
        if (ngtcp2_crypto_generate_stateless_reset_token(token, e->reset_secret, RESET_SECRET_LEN, &cid) != 0)
                return;
        (void) gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof(rnd));
        n = ngtcp2_pkt_write_stateless_reset(e->tx, len, token, rnd, len - NGTCP2_STATELESS_RESET_TOKENLEN);
        if (n > 0) {
                e->n_resets++;
                echo_send(e, s, local, remote, remote_len, e->tx, (size_t) n);
        }
}

static void echo_handle_datagram(Echo *e, EchoSocket *s, uint8_t *buf, size_t len, struct sockaddr_storage *peer,
                                 socklen_t peer_len, struct sockaddr_storage *local, socklen_t local_len,
                                 uint64_t now) {
        ngtcp2_version_cid vc;
        ngtcp2_pkt_info pi = {};
        size_t short_dcidlen = s->cid_len;
        ngtcp2_path path = {
                .local = { .addr = (struct sockaddr *) local, .addrlen = local_len },
                .remote = { .addr = (struct sockaddr *) peer, .addrlen = peer_len },
                .user_data = s,
        };
        Conn *c;
        int rv;

        /* Our CIDs say their own length in their first octet (QUIC-LB): short headers need it. */
        if (len >= 2 && !(buf[0] & 0x80)) {
                size_t l = (size_t) (buf[1] & 0x1f) + 1;

                if (l >= QUIC_CID_MIN && l <= QUIC_CID_MAX)
                        short_dcidlen = l;
        }

        rv = ngtcp2_pkt_decode_version_cid(&vc, buf, len, short_dcidlen);
        if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
                echo_send_version_negotiation(e, s, &vc, (struct sockaddr *) local, (struct sockaddr *) peer, peer_len);
                return;
        }
        if (rv != 0) {
                e->n_dropped++;
                return;
        }

        c = cid_lookup(e, vc.dcid, vc.dcidlen);
        if (!c) {
                ngtcp2_pkt_hd hd;

                if (!(buf[0] & 0x80)) {
                        echo_send_stateless_reset(e, s, &vc, len, (struct sockaddr *) local, (struct sockaddr *) peer,
                                                  peer_len);
                        return;
                }
                if (ngtcp2_accept(&hd, buf, len) != 0) {
                        e->n_dropped++;  /* not an Initial that can start a connection (too short, 0-RTT, ...) */
                        return;
                }
                c = conn_new(e, s, &path, &hd, now);
                if (!c) {
                        e->n_dropped++;
                        return;
                }
        }

        if (c->closing || c->dead) {
                if (c->close_pkt && !ngtcp2_conn_is_in_draining_period(c->conn))
                        echo_send(e, s, (struct sockaddr *) local, (struct sockaddr *) peer, peer_len, c->close_pkt,
                                  c->close_pkt_len);
                return;
        }

        rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, buf, len, now);
        if (rv != 0) {
                conn_handle_error(c, rv, now);
                return;
        }
        conn_write(c, now);
}

/* The local address of a datagram: the socket's own, or the one IP_PKTINFO reports. */
static void datagram_local(const EchoSocket *s, struct msghdr *mh, struct sockaddr_storage *ret, socklen_t *ret_len) {
        memcpy(ret, &s->local, sizeof(*ret));
        *ret_len = s->local_len;
        if (!s->pktinfo)
                return;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
                if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO &&
                    cm->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo)) && s->family == AF_INET) {
                        struct in_pktinfo pi;

                        memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
                        ((struct sockaddr_in *) ret)->sin_addr = pi.ipi_addr;
                        return;
                }
                if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO &&
                    cm->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo)) && s->family == AF_INET6) {
                        struct in6_pktinfo pi;

                        memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
                        ((struct sockaddr_in6 *) ret)->sin6_addr = pi.ipi6_addr;
                        return;
                }
        }
}

static void echo_free_dead(Echo *e) {
        while (e->dead) {
                Conn *c = e->dead;

                e->dead = c->dead_next;
                conn_free(c);
        }
}

static void echo_serve(Echo *e, EchoSocket *s) {
        for (unsigned round = 0; round < RECV_ROUNDS; round++) {
                struct sockaddr_storage peer, local;
                socklen_t local_len;
                ControlBuffer ctl;
                struct iovec iov = { .iov_base = e->buf, .iov_len = DGRAM_BUF_SIZE };
                struct msghdr mh = {
                        .msg_name = &peer,
                        .msg_namelen = sizeof(peer),
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = s->pktinfo ? ctl.buf : NULL,
                        .msg_controllen = s->pktinfo ? sizeof(ctl.buf) : 0,
                };
                ssize_t n = recvmsg(s->fd, &mh, MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return;  /* EAGAIN, or an error (ICMP) we can do nothing about */
                }
                if (n == 0 || (mh.msg_flags & MSG_TRUNC))
                        continue;
                datagram_local(s, &mh, &local, &local_len);
                echo_handle_datagram(e, s, e->buf, (size_t) n, &peer, mh.msg_namelen, &local, local_len, now_nsec());
        }
}

/* ---- set-up ---- */

static int socket_setup_local(EchoSocket *s) {
        int one = 1;

        s->local_len = sizeof(s->local);
        if (getsockname(s->fd, (struct sockaddr *) &s->local, &s->local_len) < 0)
                return negative_errno();
        s->family = s->local.ss_family;
        if (s->family == AF_INET) {
                if (((struct sockaddr_in *) &s->local)->sin_addr.s_addr != htonl(INADDR_ANY))
                        return 0;
                if (setsockopt(s->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0)
                        return negative_errno();
        } else if (s->family == AF_INET6) {
                if (!IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *) &s->local)->sin6_addr))
                        return 0;
                if (setsockopt(s->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) < 0)
                        return negative_errno();
        } else
                return -EAFNOSUPPORT;
        s->pktinfo = true;
        return 0;
}

static int echo_add_socket(Echo *e, int fd, const uint8_t *sid, size_t sid_len) {
        EchoSocket *a, *s;
        int r;

        a = realloc(e->sockets, (e->n_sockets + 1) * sizeof(EchoSocket));
        if (!a)
                return -ENOMEM;
        e->sockets = a;
        s = &e->sockets[e->n_sockets];
        *s = (EchoSocket) { .fd = fd, .index = e->n_sockets };
        r = socket_setup_local(s);
        if (r < 0)
                return r;
        if (sid) {
                s->has_server_id = true;
                memcpy(s->server_id, sid, sid_len);
                s->server_id_len = sid_len;
                s->cid_len = quic_cid_length(sid_len);
        } else
                s->cid_len = 16;
        e->n_sockets++;
        return 0;
}

static int open_listen_socket(const char *spec, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_storage ss;
        socklen_t len;
        int one = 1, gai = 0, r;

        r = resolve_udp_address(spec, true, true, &ss, &len, &gai);
        if (r < 0) {
                fprintf(stderr, "grm-quic-echo: --listen: cannot resolve '%s': %s\n", spec,
                        r == -EINVAL ? "bad syntax" : gai_strerror(gai));
                return r;
        }
        fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_UDP);
        if (fd < 0)
                return log_errno(negative_errno(), "cannot create socket for %s: %m", spec);
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
                return log_errno(negative_errno(), "cannot set SO_REUSEPORT on %s: %m", spec);
        (void) socket_set_buffer(fd, SO_RCVBUF, LISTEN_BUFFER_BYTES);
        (void) socket_set_buffer(fd, SO_SNDBUF, LISTEN_BUFFER_BYTES);
        if (bind(fd, (struct sockaddr *) &ss, len) < 0)
                return log_errno(negative_errno(), "cannot bind to %s: %m", spec);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* GRM_QUIC_SERVER_IDS for n sockets: ids[i] is socket i's server ID. -EINVAL if malformed. */
static int parse_server_ids(const char *s, size_t n, uint8_t (*ids)[QUIC_SERVER_ID_MAX], size_t *lens) {
        const char *p = s;

        for (size_t i = 0; i < n; i++) {
                const char *end = strchr(p, ':');
                size_t l = end ? (size_t) (end - p) : strlen(p);

                if (quic_parse_hex(p, l, ids[i], QUIC_SERVER_ID_MAX, &lens[i]) < 0)
                        return -EINVAL;
                if (!end)
                        return i + 1 == n ? 0 : -EINVAL;
                p = end + 1;
        }
        return -EINVAL;  /* more IDs than sockets */
}

static int echo_collect_sockets(Echo *e) {
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_free_ uint8_t (*ids)[QUIC_SERVER_ID_MAX] = NULL;
        _cleanup_free_ size_t *id_lens = NULL;
        const char *sids = getenv("GRM_QUIC_SERVER_IDS");
        int n, r;

        n = sd_listen_fds_with_names(1, &names);
        if (n < 0) {
                fprintf(stderr, "grm-quic-echo: invalid socket activation environment: %s\n", strerror(-n));
                return n;
        }
        if (sids && *sids && n > 0) {
                ids = calloc((size_t) n, sizeof(*ids));
                id_lens = calloc((size_t) n, sizeof(size_t));
                if (!ids || !id_lens)
                        return -ENOMEM;
                /* As docs/QUIC.md says: what does not parse is as if absent (random CIDs, flow steering). */
                if (parse_server_ids(sids, (size_t) n, ids, id_lens) < 0) {
                        fprintf(stderr, "grm-quic-echo: GRM_QUIC_SERVER_IDS='%s' is not %d ':'-separated hex server "
                                "IDs of 1..%u octets: issuing random connection IDs\n", sids, n, QUIC_SERVER_ID_MAX);
                        ids = (free(ids), NULL);
                }
                if (ids && !e->has_config_id) {
                        fprintf(stderr, "grm-quic-echo: no valid GRM_QUIC_CONFIG_ID: issuing random connection IDs\n");
                        ids = (free(ids), NULL);
                }
        }

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i, flags;

                r = sd_is_socket(fd, AF_UNSPEC, SOCK_DGRAM, -1);
                if (r <= 0) {
                        fprintf(stderr, "grm-quic-echo: passed fd %d (%s) is not a datagram socket\n", fd,
                                names && names[i] ? names[i] : "?");
                        return -EINVAL;  /* the server IDs are positional: no socket may be skipped */
                }
                flags = fcntl(fd, F_GETFL);
                if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                        return log_errno(negative_errno(), "cannot make fd %d non-blocking: %m", fd);
                r = echo_add_socket(e, fd, ids ? ids[i] : NULL, ids ? id_lens[i] : 0);
                if (r < 0)
                        return log_errno(r, "cannot use fd %d: %m", fd);
        }

        for (size_t i = 0; i < arg_n_listen; i++) {
                _cleanup_close_ int fd = -EBADF;

                r = open_listen_socket(arg_listen[i], &fd);
                if (r < 0)
                        return r;
                r = echo_add_socket(e, fd, NULL, 0);
                if (r < 0)
                        return log_errno(r, "cannot use socket for %s: %m", arg_listen[i]);
                TAKE_FD(fd);
        }

        if (e->n_sockets == 0) {
                fprintf(stderr, "grm-quic-echo: no sockets: start me with socket activation (LISTEN_FDS) or --listen\n");
                return -ENOENT;
        }
        return 0;
}

/* --reset-key: the first RESET_SECRET_LEN octets of the file (zero-padded), at least 16. */
static int load_reset_key(const char *path, uint8_t key[static RESET_SECRET_LEN]) {
        _cleanup_close_ int fd = -EBADF;
        size_t n = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return log_errno(negative_errno(), "cannot open --reset-key %s: %m", path);
        memset(key, 0, RESET_SECRET_LEN);
        while (n < RESET_SECRET_LEN) {
                ssize_t k = read(fd, key + n, RESET_SECRET_LEN - n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return log_errno(negative_errno(), "cannot read --reset-key %s: %m", path);
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        if (n < 16)
                return log_errno(-EINVAL, "--reset-key %s has %zu octets, needs at least 16", path, n);
        return 0;
}

/* An ephemeral self-signed ECDSA P-256 certificate for "localhost", valid from an hour ago for a year. */
static int make_ephemeral_certificate(gnutls_certificate_credentials_t cred) {
        static const char cn[] = "grm-quic-echo";
        gnutls_x509_privkey_t key = NULL;
        gnutls_x509_crt_t crt = NULL;
        uint8_t serial[16];
        time_t now = time(NULL);
        int r;

        r = gnutls_x509_privkey_init(&key);
        if (r >= 0)
                r = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
        if (r >= 0)
                r = gnutls_x509_crt_init(&crt);
        if (r >= 0)
                r = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
        serial[0] &= 0x7f;  /* a positive serial number */
        if (r >= 0)
                r = gnutls_x509_crt_set_version(crt, 3);
        if (r >= 0)
                r = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
        if (r >= 0)
                r = gnutls_x509_crt_set_activation_time(crt, now - 3600);
        if (r >= 0)
                r = gnutls_x509_crt_set_expiration_time(crt, now + 365 * 86400);
        if (r >= 0)
                r = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, sizeof(cn) - 1);
        if (r >= 0)
                r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", strlen("localhost"),
                                                         GNUTLS_FSAN_SET);
        if (r >= 0)
                r = gnutls_x509_crt_set_key(crt, key);
        if (r >= 0)
                r = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE);
        if (r >= 0)
                r = gnutls_x509_crt_set_basic_constraints(crt, 0, -1);
        if (r >= 0)
                r = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
        if (r >= 0)
                r = gnutls_certificate_set_x509_key(cred, &crt, 1, key);
        if (r < 0)
                fprintf(stderr, "grm-quic-echo: cannot make a self-signed certificate: %s\n", gnutls_strerror(r));
        if (crt)
                gnutls_x509_crt_deinit(crt);
        if (key)
                gnutls_x509_privkey_deinit(key);
        return r < 0 ? -EIO : 0;
}

static int echo_setup_tls(Echo *e) {
        int r;

        r = gnutls_certificate_allocate_credentials(&e->cred);
        if (r < 0) {
                e->cred = NULL;
                return -ENOMEM;
        }
        if (arg_cert) {
                r = gnutls_certificate_set_x509_key_file(e->cred, arg_cert, arg_key, GNUTLS_X509_FMT_PEM);
                if (r < 0) {
                        fprintf(stderr, "grm-quic-echo: cannot load --cert %s / --key %s: %s\n", arg_cert, arg_key,
                                gnutls_strerror(r));
                        return -EIO;
                }
                return 0;
        }
        return make_ephemeral_certificate(e->cred);
}

static int echo_setup_signals(Echo *e) {
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

static void echo_free(Echo *e) {
        if (!e)
                return;
        e->dead = NULL;
        while (e->conns)
                conn_free(e->conns);
        for (size_t i = 0; i < e->n_sockets; i++)
                safe_close(e->sockets[i].fd);
        free(e->sockets);
        free(e->cid_buckets);
        quic_heap_done(&e->timers);
        if (e->cred)
                gnutls_certificate_free_credentials(e->cred);
        safe_close(e->epoll_fd);
        safe_close(e->signal_fd);
        free(e->buf);
        free(e->tx);
        free(e);
}

static void echo_freep(Echo **e) {
        echo_free(*e);
}

static int echo_new(Echo **ret) {
        _cleanup_(echo_freep) Echo *e = NULL;
        const char *g, *cfg;
        uint64_t u;
        int r;

        e = calloc(1, sizeof(Echo));
        if (!e)
                return -ENOMEM;
        e->epoll_fd = e->signal_fd = -EBADF;
        e->pid = getpid();

        g = getenv("GRM_GENERATION");
        if (g && *g && parse_u64_range(g, 0, UINT64_MAX, &e->generation) < 0) {
                fprintf(stderr, "grm-quic-echo: invalid GRM_GENERATION='%s', expected a decimal number\n", g);
                return -EINVAL;
        }
        /* Absent: the contract's default, 0. Present but bad: no routable CIDs (see above). */
        cfg = getenv("GRM_QUIC_CONFIG_ID");
        e->has_config_id = true;
        if (cfg && *cfg) {
                if (parse_u64_range(cfg, 0, QUIC_CONFIG_ID_MAX, &u) < 0) {
                        fprintf(stderr, "grm-quic-echo: invalid GRM_QUIC_CONFIG_ID='%s', expected 0..%u\n", cfg,
                                QUIC_CONFIG_ID_MAX);
                        e->has_config_id = false;
                } else
                        e->config_id = (unsigned) u;
        }
        r = snprintf(e->trailer, sizeof(e->trailer), " gen=%" PRIu64 " pid=%d\n", e->generation, (int) e->pid);
        e->trailer_len = (size_t) r;

        e->n_cid_buckets = CID_TABLE_MIN;
        e->cid_buckets = calloc(e->n_cid_buckets, sizeof(CidEntry *));
        e->buf = malloc(DGRAM_BUF_SIZE);
        e->tx = malloc(DGRAM_BUF_SIZE);
        if (!e->cid_buckets || !e->buf || !e->tx)
                return -ENOMEM;
        if (gnutls_rnd(GNUTLS_RND_KEY, e->reset_secret, sizeof(e->reset_secret)) < 0 ||
            gnutls_rnd(GNUTLS_RND_NONCE, &e->cid_seed, sizeof(e->cid_seed)) < 0)
                return -EIO;

        e->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (e->epoll_fd < 0)
                return negative_errno();

        *ret = TAKE_PTR(e);
        return 0;
}

static void echo_start_drain(Echo *e, int sig) {
        char name[32];

        if (e->state == STATE_DRAINING)
                return;
        e->state = STATE_DRAINING;
        e->drain_start_nsec = now_nsec();
        if (e->n_conns == 0)
                e->idle_since_nsec = e->drain_start_nsec;
        (void) sd_notifyf(0, "STOPPING=1\nSTATUS=Draining %zu connections, generation %" PRIu64, e->n_conns,
                          e->generation);
        log_state(e, "draining on %s: %zu connections (exit after %.3f s without any)",
                  format_signal(sig, name, sizeof(name)), e->n_conns, (double) arg_idle_exit_nsec / NSEC_PER_SEC);
}

static void echo_handle_signals(Echo *e) {
        struct signalfd_siginfo si;

        while (read(e->signal_fd, &si, sizeof(si)) == sizeof(si))
                echo_start_drain(e, (int) si.ssi_signo);
}

static void echo_log_totals(const Echo *e, const char *why) {
        log_state(e, "%s: %" PRIu64 " connections accepted, %" PRIu64 " handshakes, %" PRIu64 " replies, %" PRIu64
                  " stateless resets, %" PRIu64 " datagrams dropped, %zu connections left", why, e->n_accepted,
                  e->n_handshakes, e->n_replies, e->n_resets, e->n_dropped, e->n_conns);
}

static int echo_run(Echo *e) {
        struct epoll_event events[64];

        for (;;) {
                uint64_t now = now_nsec(), next = UINT64_MAX;
                QuicTimer *t;
                int n;

                while ((t = quic_timer_first(&e->timers)) && t->due <= now) {
                        Conn *c = quic_container_of(t, Conn, timer);

                        quic_timer_remove(&e->timers, t);
                        conn_on_timer(c, now);
                }
                echo_free_dead(e);

                if (e->state == STATE_DRAINING) {
                        if (e->idle_since_nsec > 0 && now >= e->idle_since_nsec + arg_idle_exit_nsec) {
                                echo_log_totals(e, "drained, exiting");
                                return EXIT_SUCCESS;
                        }
                        if (arg_max_drain_nsec > 0 && now >= e->drain_start_nsec + arg_max_drain_nsec) {
                                echo_log_totals(e, "drain deadline reached, exiting");
                                return EXIT_SUCCESS;
                        }
                        if (e->idle_since_nsec > 0)
                                next = e->idle_since_nsec + arg_idle_exit_nsec;
                        if (arg_max_drain_nsec > 0 && e->drain_start_nsec + arg_max_drain_nsec < next)
                                next = e->drain_start_nsec + arg_max_drain_nsec;
                }
                t = quic_timer_first(&e->timers);
                if (t && t->due < next)
                        next = t->due;

                n = epoll_wait(e->epoll_fd, events, ELEMENTSOF(events), quic_timeout_ms(next, now));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_errno(negative_errno(), "epoll_wait(): %m"), EXIT_FAILURE;
                }
                for (int i = 0; i < n; i++) {
                        if (events[i].data.u64 == SIGNAL_TOKEN)
                                echo_handle_signals(e);
                        else if (events[i].data.u64 < e->n_sockets)
                                echo_serve(e, &e->sockets[events[i].data.u64]);
                }
                echo_free_dead(e);
        }
}

int main(int argc, char *argv[]) {
        _cleanup_(echo_freep) Echo *e = NULL;
        _cleanup_(arg_listen_freep) char **listen_cleanup = NULL;
        int r;

        r = parse_argv(argc, argv);
        listen_cleanup = arg_listen;
        if (r == -ENOMEM) {
                fprintf(stderr, "grm-quic-echo: out of memory\n");
                return EXIT_FAILURE;
        }
        if (r < 0)
                return EXIT_USAGE;
        if (r == 0)
                return EXIT_SUCCESS;

        r = echo_new(&e);
        if (r < 0) {
                if (r != -EINVAL)
                        fprintf(stderr, "grm-quic-echo: setup failed: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        if (echo_collect_sockets(e) < 0)
                return EXIT_FAILURE;
        if (echo_setup_tls(e) < 0)
                return EXIT_FAILURE;
        if (arg_reset_key && load_reset_key(arg_reset_key, e->reset_secret) < 0)
                return EXIT_FAILURE;
        r = echo_setup_signals(e);
        if (r < 0) {
                log_errno(r, "cannot set up signal handling: %m");
                return EXIT_FAILURE;
        }
        for (size_t i = 0; i < e->n_sockets; i++)
                if (epoll_ctl(e->epoll_fd, EPOLL_CTL_ADD, e->sockets[i].fd,
                              &(struct epoll_event) { .events = EPOLLIN, .data.u64 = i }) < 0) {
                        log_errno(negative_errno(), "cannot watch socket fd %d: %m", e->sockets[i].fd);
                        return EXIT_FAILURE;
                }

        (void) sd_notifyf(0, "READY=1\nSTATUS=Serving QUIC on %zu sockets, generation %" PRIu64, e->n_sockets,
                          e->generation);
        for (size_t i = 0; i < e->n_sockets; i++) {
                char addr[SOCKADDR_STR_MAX], sid[2 * QUIC_SERVER_ID_MAX + 1] = "none (random CIDs)";
                const EchoSocket *s = &e->sockets[i];

                for (size_t j = 0; s->has_server_id && j < s->server_id_len; j++)
                        (void) snprintf(sid + 2 * j, 3, "%02x", s->server_id[j]);
                log_state(e, "socket %zu on %s: server ID %s, config %u, CIDs of %zu octets", i,
                          format_sockaddr((const struct sockaddr *) &s->local, addr, sizeof(addr)), sid,
                          s->has_server_id ? e->config_id : QUIC_CONFIG_UNROUTABLE, s->cid_len);
        }
        return echo_run(e);
}
