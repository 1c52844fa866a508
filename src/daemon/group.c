/* SPDX-License-Identifier: MIT */
/*
 * The listening groups: one original SO_REUSEPORT socket per address (from systemd or opened
 * here with --listen), a bound UDP socket or a listening TCP socket, and the fresh sockets each
 * generation gets, cloned from it so they join the same reuseport group with the same options
 * (a TCP clone also listens with the original's backlog before it joins the socket array).
 *
 * Owners and address reuse, for servers that bind and connect a socket per client
 * (ConnectPerClient=, docs/ARCHITECTURE.md "Connect-per-client servers"): the kernel lets a
 * socket join a reuseport group only if it has the group's owner uid, and lets it bind next to a
 * connected per-client socket (whose SO_REUSEPORT is cleared) only if both have SO_REUSEADDR.
 * So a clone gets the original's owner before it binds, and a UDP clone has SO_REUSEADDR just
 * for its bind(): left on, it would let any user's socket with SO_REUSEADDR bind the address.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <net/if.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "config.h"
#include "macro.h"
#include "manager.h"

static int format_address(int type, const struct sockaddr_storage *sa, char **ret) {
        const char *scheme = type == SOCK_STREAM ? "tcp" : "udp";
        char host[INET6_ADDRSTRLEN], *s;
        int r;

        if (sa->ss_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                r = asprintf(&s, "%s:%s:%u", scheme, host, ntohs(in->sin_port));
        } else if (sa->ss_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                r = asprintf(&s, "%s:[%s]:%u", scheme, host, ntohs(in6->sin6_port));
        } else
                return -EAFNOSUPPORT;
        if (r < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int group_from_fd(int fd, const char *name, Group *ret) {
        Group g = { .fd = -EBADF };
        int type = 0, protocol = 0, reuseport = 0;
        socklen_t len = sizeof(type);
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
                return negative_errno();
        len = sizeof(protocol);
        if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) < 0)
                return negative_errno();
        if (type == SOCK_STREAM && protocol == IPPROTO_TCP) {
                int listening = 0;

                len = sizeof(listening);
                if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
                        return negative_errno();
                if (!listening)
                        return -ENOTCONN; /* caller explains: a listening socket (Accept=no) */
        } else if (type != SOCK_DGRAM || protocol != IPPROTO_UDP)
                return -ESOCKTNOSUPPORT;
        len = sizeof(reuseport);
        if (getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &reuseport, &len) < 0)
                return negative_errno();
        if (!reuseport)
                return -EADDRINUSE; /* caller explains: ReusePort=yes */

        if (type == SOCK_DGRAM) {
                /* systemd sets SO_REUSEADDR on every socket it binds (socket_address_listen()
                 * in src/shared/socket-label.c, for socket units and systemd-socket-activate;
                 * measured with the latter). Left on a UDP original, it would let any
                 * user's socket with SO_REUSEADDR bind the address whenever no generation
                 * socket (which has it off) is bound, and take its datagrams. Only binds after
                 * this one read it. */
                int zero = 0;
                if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof(zero)) < 0)
                        return negative_errno();
        }

        g.sa_len = sizeof(g.sa);
        if (getsockname(fd, (struct sockaddr *) &g.sa, &g.sa_len) < 0)
                return negative_errno();
        if (g.sa.ss_family != AF_INET && g.sa.ss_family != AF_INET6)
                return -EAFNOSUPPORT;

        r = format_address(type, &g.sa, &g.address);
        if (r < 0)
                return r;
        g.type = type;
        g.name = strdup(name ? name : "grm");
        if (!g.name) {
                free(g.address);
                return -ENOMEM;
        }
        g.fd = fd;
        *ret = g;
        return 0;
}

/* As root the configured size is set even above net.core.rmem_max. */
static int set_receive_buffer(int fd, uint64_t bytes) {
        int value = (int) bytes;

        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &value, sizeof(value)) < 0 &&
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &value, sizeof(value)) < 0)
                return negative_errno();
        return 0;
}

/* SO_REUSEADDR on every TCP listener grmd makes (systemd sets it on its own). A connection an
 * instance accepted belongs to the instance's user (accept() sets its owner), and shares the
 * listener's port: binding the next generation's listener as root would conflict with it, and
 * fail with EADDRINUSE, unless both sockets allow address reuse, which the connection inherits
 * from its listener (inet_bind_conflict() in net/ipv4/inet_connection_sock.c). */
static int set_reuse_address(int fd) {
        int one = 1;

        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return negative_errno();
        return 0;
}

int group_listen(const char *address, uint64_t receive_buffer, Group *ret) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_storage sa;
        socklen_t sa_len;
        int one = 1, type, r;

        r = parse_listen_address(address, &type, &sa, &sa_len);
        if (r < 0)
                return r;
        fd = socket(sa.ss_family, type | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
                return negative_errno();
        if (type == SOCK_STREAM) {
                r = set_reuse_address(fd);
                if (r < 0)
                        return r;
        }
        if (sa.ss_family == AF_INET6) {
                /* "[::]" means dual-stack, as systemd's BindIPv6Only=default does. */
                int v6only = 0;
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
        }
        if (receive_buffer > 0) {
                r = set_receive_buffer(fd, receive_buffer);
                if (r < 0)
                        return r;
        }
        if (bind(fd, (struct sockaddr *) &sa, sa_len) < 0)
                return negative_errno();
        /* systemd's default Backlog= (the kernel caps it at net.core.somaxconn). */
        if (type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)
                return negative_errno();
        r = group_from_fd(fd, NULL, ret);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        return 0;
}

bool group_has_address(const Group *g, const char *address) {
        struct sockaddr_storage sa;
        socklen_t sa_len;
        int type;

        if (parse_listen_address(address, &type, &sa, &sa_len) < 0)
                return false;
        return g->type == type && g->sa_len == sa_len && memcmp(&g->sa, &sa, sa_len) == 0;
}

/* A listener's accept backlog and the connections waiting in its accept queue. For a socket in
 * LISTEN, tcp_get_info() (net/ipv4/tcp.c) reports sk_max_ack_backlog as tcpi_sacked and
 * sk_ack_backlog as tcpi_unacked: the pair "ss -lt" shows as Send-Q and Recv-Q. */
static int listener_queue(int fd, unsigned *ret_backlog, unsigned *ret_queued) {
        struct tcp_info info = {};
        socklen_t len = sizeof(info);

        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0)
                return negative_errno();
        if (info.tcpi_state != TCP_LISTEN)
                return -ENOTCONN;
        if (ret_backlog)
                *ret_backlog = info.tcpi_sacked;
        if (ret_queued)
                *ret_queued = info.tcpi_unacked;
        return 0;
}

int group_backlog(const Group *g, unsigned *ret) {
        if (g->type != SOCK_STREAM)
                return -EOPNOTSUPP;
        return listener_queue(g->fd, ret, NULL);
}

/* Connections queued on the original TCP listener (the one that started the service under
 * systemd, or any the kernel put there while no generation listened) are nobody's: no instance
 * accepts on it. Shutting it down makes the kernel migrate its queue through the steering program
 * to the working generation, and listening again puts it back in the group (the kernel resurrects
 * a shut down reuseport listener in its old group). Returns how many were queued. */
static int requeue_original(const Group *g) {
        unsigned backlog, queued;
        int r;

        r = listener_queue(g->fd, &backlog, &queued);
        if (r < 0)
                return r;
        if (queued == 0)
                return 0;
        if (shutdown(g->fd, SHUT_RD) < 0)
                return negative_errno();
        if (listen(g->fd, (int) backlog) < 0)
                return negative_errno();
        return (int) queued;
}

/* Reads and drops what is queued on the original UDP socket. Once a generation works, the
 * steering program never selects that socket, so anything there arrived before (the datagram
 * that made systemd start the service, for one) and would stay forever: unanswered, and keeping
 * the socket readable, so that systemd starts the service again the moment it is stopped. A TCP
 * original's queue goes to the working generation instead (requeue_original()).
 * Returns how many datagrams were dropped or connections handed on. */
int group_discard_queued(const Group *g) {
        char byte;
        int n = 0;

        if (g->type == SOCK_STREAM)
                return requeue_original(g);
        while (n < 1000000 && recv(g->fd, &byte, sizeof(byte), MSG_DONTWAIT | MSG_TRUNC) >= 0)
                n++;
        return n;
}

/* Takes grm's steering program off the group (the original socket is a member, so the whole
 * reuseport group loses it). For grmd's clean exit: the program drops what no generation can
 * take, and with no generation left that would be every datagram, the one that should make
 * systemd start the service again included. */
int group_detach_steering(const Group *g) {
        int zero = 0;

        if (setsockopt(g->fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &zero, sizeof(zero)) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

void group_done(Group *g) {
        group_drop_head(g);
        g->fd = safe_close(g->fd);
        free(g->name);
        free(g->address);
        g->name = g->address = NULL;
}

/* Copies an int socket option if the original has it set to something other than zero. */
static int copy_int_option(int from, int to, int level, int option) {
        int value = 0;
        socklen_t len = sizeof(value);

        if (getsockopt(from, level, option, &value, &len) < 0)
                return errno == ENOPROTOOPT ? 0 : negative_errno();
        if (value == 0)
                return 0;
        if (setsockopt(to, level, option, &value, sizeof(value)) < 0)
                return negative_errno();
        return 0;
}

static int copy_buffer_size(int from, int to, int option, int force_option) {
        int value = 0;
        socklen_t len = sizeof(value);

        if (getsockopt(from, SOL_SOCKET, option, &value, &len) < 0)
                return negative_errno();
        /* The kernel reports twice what was asked for; ask for half to get the same size. */
        value /= 2;
        if (setsockopt(to, SOL_SOCKET, force_option, &value, sizeof(value)) < 0 &&
            setsockopt(to, SOL_SOCKET, option, &value, sizeof(value)) < 0)
                return negative_errno();
        return 0;
}

/* Copies an int option whose value on the original differs from a fresh socket's: what the
 * .socket unit (or whoever made the original) set, and nothing the kernel merely defaults, so
 * that a default that follows a sysctl stays a default. */
static int copy_changed_option(int from, int to, int level, int option) {
        int value = 0, fresh = 0;
        socklen_t len = sizeof(value), fresh_len = sizeof(fresh);

        if (getsockopt(from, level, option, &value, &len) < 0 ||
            getsockopt(to, level, option, &fresh, &fresh_len) < 0)
                return errno == ENOPROTOOPT || errno == EOPNOTSUPP ? 0 : negative_errno();
        if (value == fresh)
                return 0;
        if (setsockopt(to, level, option, &value, sizeof(value)) < 0)
                return negative_errno();
        return 0;
}

/* TCP listeners: the options accepted connections inherit or the listener itself uses. A buffer
 * size is copied only if it was set: setting one turns off the kernel's autotuning on every
 * connection accepted from the listener. */
#ifndef TCP_CA_NAME_MAX
#define TCP_CA_NAME_MAX 16 /* linux/tcp.h; netinet/tcp.h lacks it */
#endif

static int copy_tcp_options(int from, int to) {
        static const struct {
                int level, option;
        } options[] = {
                { IPPROTO_TCP, TCP_DEFER_ACCEPT },
                { IPPROTO_TCP, TCP_FASTOPEN },
                { IPPROTO_TCP, TCP_NODELAY },
                { IPPROTO_TCP, TCP_KEEPIDLE },
                { IPPROTO_TCP, TCP_KEEPINTVL },
                { IPPROTO_TCP, TCP_KEEPCNT },
                { IPPROTO_TCP, TCP_USER_TIMEOUT },
                { IPPROTO_TCP, TCP_MAXSEG },
                { SOL_SOCKET, SO_KEEPALIVE },
                { SOL_SOCKET, SO_RCVBUF },
                { SOL_SOCKET, SO_SNDBUF },
        };
        char congestion[TCP_CA_NAME_MAX] = "", fresh[TCP_CA_NAME_MAX] = "";
        socklen_t len = sizeof(congestion) - 1, fresh_len = sizeof(fresh) - 1;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(options); i++) {
                int option = options[i].option;

                if (options[i].level == SOL_SOCKET && (option == SO_RCVBUF || option == SO_SNDBUF)) {
                        int value = 0, fresh_value = 0;
                        socklen_t vlen = sizeof(value), flen = sizeof(fresh_value);

                        if (getsockopt(from, SOL_SOCKET, option, &value, &vlen) < 0 ||
                            getsockopt(to, SOL_SOCKET, option, &fresh_value, &flen) < 0)
                                return negative_errno();
                        if (value == fresh_value)
                                continue;
                        r = copy_buffer_size(from, to, option, option == SO_RCVBUF ? SO_RCVBUFFORCE : SO_SNDBUFFORCE);
                } else
                        r = copy_changed_option(from, to, options[i].level, option);
                if (r < 0)
                        return r;
        }

        if (getsockopt(from, IPPROTO_TCP, TCP_CONGESTION, congestion, &len) == 0 &&
            getsockopt(to, IPPROTO_TCP, TCP_CONGESTION, fresh, &fresh_len) == 0 &&
            !streq(congestion, fresh))
                if (setsockopt(to, IPPROTO_TCP, TCP_CONGESTION, congestion, strlen(congestion)) < 0)
                        return negative_errno();
        return 0;
}

int group_set_owner(const Group *g, uid_t uid, gid_t gid) {
        if (fchown(g->fd, uid, gid) < 0)
                return negative_errno();
        return 0;
}

/* The original's owner on a fresh socket, before it binds (fchown() of a socket sets the owner
 * uid the kernel compares, sk_uid: sockfs_setattr() in net/socket.c). */
static int copy_owner(int from, int to) {
        struct stat a, b;

        if (fstat(from, &a) < 0 || fstat(to, &b) < 0)
                return negative_errno();
        if (a.st_uid == b.st_uid && a.st_gid == b.st_gid)
                return 0;
        if (fchown(to, a.st_uid, a.st_gid) < 0)
                return negative_errno();
        return 0;
}

/* bind() with SO_REUSEADDR on for the call only: compatible with connected per-client sockets
 * (their SO_REUSEPORT cleared, SO_REUSEADDR on), and off afterwards, so that a later bind of
 * someone else's socket without SO_REUSEPORT still conflicts with this one. */
static int bind_reusing_address(int fd, const struct sockaddr *sa, socklen_t sa_len) {
        int one = 1, zero = 0, r = 0;

        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return negative_errno();
        if (bind(fd, sa, sa_len) < 0)
                r = negative_errno();
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof(zero)) < 0 && r == 0)
                r = negative_errno();
        return r;
}

static int open_bound_socket(const Group *g, uint64_t receive_buffer, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        char device[IFNAMSIZ + 1] = "";
        socklen_t len = sizeof(device) - 1;
        bool stream = g->type == SOCK_STREAM;
        unsigned backlog = 0;
        int one = 1, r;

        if (stream) {
                r = listener_queue(g->fd, &backlog, NULL);
                if (r < 0)
                        return r;
        }

        fd = socket(g->sa.ss_family, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
                return negative_errno();
        if (stream) {
                r = set_reuse_address(fd);
                if (r < 0)
                        return r;
        }

        if (g->sa.ss_family == AF_INET6) {
                int v6only = 0;
                socklen_t vlen = sizeof(v6only);
                if (getsockopt(g->fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &vlen) < 0)
                        return negative_errno();
                if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
                        return negative_errno();
                r = copy_int_option(g->fd, fd, IPPROTO_IPV6, IPV6_FREEBIND);
                if (r < 0)
                        return r;
                r = copy_int_option(g->fd, fd, IPPROTO_IPV6, IPV6_TRANSPARENT);
                if (r < 0)
                        return r;
                r = copy_changed_option(g->fd, fd, IPPROTO_IPV6, IPV6_TCLASS);
                if (r < 0)
                        return r;
                r = copy_changed_option(g->fd, fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS);
        } else {
                r = copy_int_option(g->fd, fd, IPPROTO_IP, IP_FREEBIND);
                if (r < 0)
                        return r;
                r = copy_int_option(g->fd, fd, IPPROTO_IP, IP_TRANSPARENT);
                if (r < 0)
                        return r;
                r = copy_changed_option(g->fd, fd, IPPROTO_IP, IP_TOS);
                if (r < 0)
                        return r;
                r = copy_changed_option(g->fd, fd, IPPROTO_IP, IP_TTL);
        }
        if (r < 0)
                return r;

        if (getsockopt(g->fd, SOL_SOCKET, SO_BINDTODEVICE, device, &len) == 0 && device[0] != 0)
                if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device, strlen(device)) < 0)
                        return negative_errno();

        if (stream) {
                r = copy_tcp_options(g->fd, fd);
                if (r >= 0 && receive_buffer > 0)
                        r = set_receive_buffer(fd, receive_buffer);
        } else {
                if (receive_buffer > 0)
                        r = set_receive_buffer(fd, receive_buffer);
                else
                        r = copy_buffer_size(g->fd, fd, SO_RCVBUF, SO_RCVBUFFORCE);
                if (r >= 0)
                        r = copy_buffer_size(g->fd, fd, SO_SNDBUF, SO_SNDBUFFORCE);
        }
        if (r < 0)
                return r;
        r = copy_int_option(g->fd, fd, SOL_SOCKET, SO_MARK);
        if (r < 0)
                return r;
        r = copy_int_option(g->fd, fd, SOL_SOCKET, SO_PRIORITY);
        if (r < 0)
                return r;

        r = copy_owner(g->fd, fd);
        if (r < 0)
                return r;
        if (stream) {
                if (bind(fd, (const struct sockaddr *) &g->sa, g->sa_len) < 0)
                        return negative_errno();
        } else {
                r = bind_reusing_address(fd, (const struct sockaddr *) &g->sa, g->sa_len);
                if (r < 0)
                        return r;
        }
        /* A TCP socket joins the reuseport group (and may enter the socket array) once it
         * listens. */
        if (stream && listen(fd, (int) backlog) < 0)
                return negative_errno();

        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* A UDP bind joins the group of the newest socket of the port with SO_REUSEPORT and the same
 * owner and address. A connected per-client socket has it for the moment between its connect()
 * and libgrm-bind.so clearing it (microseconds; longer for a server that clears it itself, or
 * never for one without ConnectPerClient=): a bind in that moment makes a group of its own with
 * that socket, without grm's program. Checked with the census after the bind; such a socket is
 * closed and bound again, first at once, then after 1, 2, 4, 8 and 16 ms: a process that keeps
 * such sockets costs a restart at most 31 ms of waits (and fails it), never a stalled grmd. */
#define GROUP_BIND_ATTEMPTS 7

int group_open_socket(const Group *g, Census *census, uint64_t receive_buffer, unsigned *ret_rebinds, int *ret_fd) {
        unsigned rebinds = 0;
        int r;

        for (unsigned attempt = 0;; attempt++) {
                _cleanup_close_ int fd = -EBADF;

                r = open_bound_socket(g, receive_buffer, &fd);
                if (r < 0)
                        return r;
                /* TCP: nothing to check (listeners are not connected per client). UDP: not
                 * checked without a census (no CAP_PERFMON), or if the census cannot tell. */
                if (g->type != SOCK_DGRAM)
                        r = 1;
                else if (!census)
                        r = -ENOTSUP;
                else
                        r = census_fd_in_group_of(census, fd, g->fd);
                if (r != 0) {
                        if (ret_rebinds)
                                *ret_rebinds = rebinds;
                        *ret_fd = TAKE_FD(fd);
                        return r > 0 ? 0 : 1;
                }
                if (attempt + 1 >= GROUP_BIND_ATTEMPTS)
                        break;
                rebinds++;
                fd = safe_close(fd);
                if (attempt > 0)
                        (void) usleep((useconds_t) (1000U << (attempt - 1)));
        }
        if (ret_rebinds)
                *ret_rebinds = rebinds;
        return -EXDEV;
}

/*
 * The head socket of an IPv4 UDP group. The kernel's lookup (udp4_lib_lookup2()) walks the
 * sockets bound to the address newest first (IPv4 reuseport sockets go to the head of the hash
 * chain; IPv6 ones to the tail) and runs the group's program from the first it meets. A socket
 * being closed leaves the group a moment before it leaves the chain: a datagram that meets it
 * first in that moment finds no group, and the kernel gives it to that closing socket, which
 * drops it. So when the newest generation's instance dies (a crash in its settle time, a failed
 * start, the working one's exit), a datagram of an older generation's flow could be lost
 * (tools/bench/head-socket: 983 of 170,688 datagrams over 157,327 closes of a newest socket,
 * none for IPv6). grmd therefore binds one more socket of its own after each generation's,
 * which it keeps until the next one: the first in the chain is then a socket that is not being
 * closed. It is in grm's group but in no socket array, so the program never selects it (nothing
 * is ever queued on it). Every snapshot carries it (snapshot.c), so the vault's queue holds it
 * while no grmd does and it never closes with a grmd that dies; the old one is dropped once the
 * new one is in front of it, and at a clean exit it is closed (after the vault's copies) before
 * the steering program is taken off.
 * Returns 0 (or 0 for groups that need none), or a negative errno: the head stays as it was.
 */
int group_renew_head(Group *g, Census *census) {
        int fd = -EBADF, r;

        if (g->type != SOCK_DGRAM || g->sa.ss_family != AF_INET)
                return 0;
        r = group_open_socket(g, census, GROUP_HEAD_RECEIVE_BUFFER, NULL, &fd);
        if (r < 0)
                return r;
        group_drop_head(g);
        g->head_fd = fd;
        g->has_head = true;
        return 0;
}

void group_drop_head(Group *g) {
        if (g->has_head)
                g->head_fd = safe_close(g->head_fd);
        g->has_head = false;
}
