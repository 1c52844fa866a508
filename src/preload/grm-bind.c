/* SPDX-License-Identifier: MIT */
/*
 * libgrm-bind.so: bind interception for servers that open their own sockets (grmd
 * --intercept-bind, InterceptBind=yes), and the per-client sockets of servers that connect a
 * socket per client (grmd --connect-per-client, ConnectPerClient=yes).
 *
 * grmd starts the instance with this library in LD_PRELOAD, its generation's sockets at fds
 * 3... as usual, GRM_BIND_FDS listing them (their addresses are the ones grm manages),
 * GRM_BIND_INTERCEPT=1 for InterceptBind= and GRM_BIND_PER_CLIENT=1 for ConnectPerClient=.
 *
 * Interception: when the instance binds a socket of its own to an address one of those sockets
 * is bound to (same family, type and address, port not 0), bind() puts the generation's socket
 * in its place: dup3() onto the instance's descriptor number, so the descriptor it holds is the
 * socket grmd registered in the steering maps, bound already (no capability needed, no
 * EADDRINUSE). Options the instance set before bind() that make sense on the new socket are
 * copied over (see copied_options[]).
 *
 * Per-client sockets: a UDP socket with SO_REUSEPORT bound to a managed address (once the
 * generation's sockets for it are handed out, or always without InterceptBind=) is bound by the
 * kernel with SO_REUSEADDR added: it joins grm's reuseport group, where grm's program never
 * selects it (it is in no socket array), so no datagram of another client reaches it before its
 * connect(). connect() of such a socket then clears SO_REUSEPORT right after the kernel
 * connected it: connect() takes it out of the group, and a connected socket that still had
 * SO_REUSEPORT would be the one the next reuseport bind on the port joins (the newest in the
 * port's hash chain), making a new group without grm's program. SO_REUSEADDR keeps binds
 * compatible with it once cleared (grmd sets SO_REUSEADDR around each generation bind too).
 * Both steps run under the library's mutex and a flock(2) of GRM_BIND_LOCK that every process of
 * every generation takes, so no thread or process binds between a connect and its clear
 * (docs/ARCHITECTURE.md, "Connect-per-client servers"; grmd's own generation binds are checked
 * with the census instead: grmd never waits on a lock an instance holds).
 *
 * Every other bind() and connect() is the kernel's.
 *
 * Invariants:
 *  - Only the process grmd spawned (LISTEN_PID) and its forks use the table: a program it
 *    executes gets the same environment but other descriptors, and finds the library inert.
 *  - A generation socket is handed out once: after the swap its inherited descriptor is
 *    closed, so the socket lives exactly as long as the instance's own descriptor (grmd's
 *    rule: a closed socket leaves the group at once). A second bind() to an address whose
 *    sockets are all handed out fails with EADDRINUSE, as it would without grm, unless it is a
 *    per-client socket.
 *  - The table is read-only after the constructor but for the "taken" marks, which a mutex
 *    guards (threads bind concurrently; pthread_atfork keeps a fork from inheriting it held).
 *  - Nothing here allocates after the constructor, logs to anything but stderr, or changes
 *    errno on success.
 *
 * A bind() that fails (the kernel's EADDRINUSE/EACCES/EPERM, or all sockets taken) is reported
 * to grmd with a notify datagram "GRM_BIND_ERROR=ERRNO ADDRESS", so that the restart's failure
 * names the address, and with a line on stderr.
 *
 * Not covered, by construction: statically linked programs (Go, musl static builds: LD_PRELOAD
 * is not read), binds and connects issued by io_uring or raw syscall(2), and programs that
 * close their socket and bind a new one (the generation socket is gone with the first).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define GRM_BIND_MAX 1024 /* GRM_MAX_GROUPS * GRM_MAX_SOCKS_PER_GEN */
#define EXPORT __attribute__((visibility("default")))

typedef struct Entry {
        int fd;                          /* the generation socket, -1 once handed out */
        int family, type;
        struct sockaddr_storage sa;
        socklen_t sa_len;
        unsigned long long cookie;       /* SO_COOKIE: recognises the socket under any fd */
} Entry;

static Entry entries[GRM_BIND_MAX];
static unsigned n_entries;
static bool enabled;
static bool intercept = true;  /* GRM_BIND_INTERCEPT (unset: yes): hand out the generation's sockets */
static bool per_client;        /* GRM_BIND_PER_CLIENT=1: per-client sockets join grm's group */
static char notify_path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
static socklen_t notify_len;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int (*real_bind)(int, const struct sockaddr *, socklen_t);
static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
static int (*real_connect)(int, const struct sockaddr *, socklen_t);

static void lock_table(void) {
        pthread_mutex_lock(&lock);
}

static void unlock_table(void) {
        pthread_mutex_unlock(&lock);
}

/*
 * The lock the processes of all generations share (GRM_BIND_LOCK, a file beside grmd's control
 * socket): the mutex orders this process's threads, the flock(2) orders processes (a server's
 * forked workers, the old and the new instance around a flip). Taken, under the mutex, around a
 * per-client bind and around a connect and its SO_REUSEPORT clear, so that no bind anywhere
 * joins a socket in the moment between the two. A flock belongs to an open file description,
 * which a fork shares: each process opens the file itself (lock_pid). A process that holds the
 * lock and stops can only delay the others, by at most LOCK_WAIT_NSEC per bind or connect: they
 * then go on without it (and say so once) rather than hang.
 */
#define LOCK_WAIT_NSEC (20 * 1000 * 1000)
static char lock_path[256];
static int lock_fd = -1;
static pid_t lock_pid;

static bool lock_ports(void) {
        struct timespec pause = { 0, 50 * 1000 };
        static bool warned;

        if (!lock_path[0])
                return false;
        if (lock_pid != getpid()) {
                if (lock_fd >= 0)
                        close(lock_fd); /* the parent's description: its lock, not ours */
                lock_fd = open(lock_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                lock_pid = getpid();
        }
        if (lock_fd < 0)
                goto unlocked;
        for (long waited = 0; waited < LOCK_WAIT_NSEC; waited += pause.tv_nsec) {
                if (flock(lock_fd, LOCK_EX | LOCK_NB) == 0)
                        return true;
                if (errno != EWOULDBLOCK && errno != EINTR)
                        break;
                (void) nanosleep(&pause, NULL);
        }
unlocked:
        if (!warned) {
                static const char msg[] = "grm-bind: per-client bind or connect without the shared lock (GRM_BIND_LOCK "
                                          "cannot be opened or is held too long)\n";
                (void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
                warned = true;
        }
        return false;
}

static void unlock_ports(bool held) {
        if (held)
                (void) flock(lock_fd, LOCK_UN);
}

static int parse_int(const char *s, char **end) {
        long v;

        errno = 0;
        v = strtol(s, end, 10);
        if (errno || *end == s || v < 0 || v > 1 << 20)
                return -1;
        return (int) v;
}

/* "udp:127.0.0.1:53", "tcp:[::1]:53" (the form grmd prints), for messages. */
static void format_address(int type, const struct sockaddr *sa, char *buf, size_t size) {
        const char *proto = type == SOCK_STREAM ? "tcp" : "udp";
        char host[INET6_ADDRSTRLEN] = "?";

        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                snprintf(buf, size, "%s:%s:%u", proto, host, ntohs(in->sin_port));
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                snprintf(buf, size, "%s:[%s]:%u", proto, host, ntohs(in6->sin6_port));
        } else
                snprintf(buf, size, "%s:?", proto);
}

/* Same address and port (IPv6: and scope); flow info and padding do not count. */
static bool same_address(const struct sockaddr *a, const struct sockaddr *b) {
        if (a->sa_family != b->sa_family)
                return false;
        if (a->sa_family == AF_INET) {
                const struct sockaddr_in *x = (const struct sockaddr_in *) a, *y = (const struct sockaddr_in *) b;
                return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        }
        if (a->sa_family == AF_INET6) {
                const struct sockaddr_in6 *x = (const struct sockaddr_in6 *) a, *y = (const struct sockaddr_in6 *) b;
                return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
                       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
        }
        return false;
}

static int socket_int(int fd, int level, int option) {
        int v = -1;
        socklen_t len = sizeof(v);

        if (getsockopt(fd, level, option, &v, &len) < 0)
                return -1;
        return v;
}

static void add_entry(int fd) {
        struct stat st;
        Entry *e = &entries[n_entries];
        socklen_t len = sizeof(e->cookie);

        if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
                return;
        e->family = socket_int(fd, SOL_SOCKET, SO_DOMAIN);
        e->type = socket_int(fd, SOL_SOCKET, SO_TYPE);
        if ((e->family != AF_INET && e->family != AF_INET6) || (e->type != SOCK_DGRAM && e->type != SOCK_STREAM))
                return;
        e->sa_len = sizeof(e->sa);
        if (getsockname(fd, (struct sockaddr *) &e->sa, &e->sa_len) < 0)
                return;
        if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &e->cookie, &len) < 0)
                e->cookie = 0;
        e->fd = fd;
        n_entries++;
}

__attribute__((constructor)) static void grm_bind_init(void) {
        const char *fds = getenv("GRM_BIND_FDS"), *pid = getenv("LISTEN_PID"), *ns = getenv("NOTIFY_SOCKET"),
                   *ic = getenv("GRM_BIND_INTERCEPT"), *pc = getenv("GRM_BIND_PER_CLIENT"),
                   *lk = getenv("GRM_BIND_LOCK");
        char *end;

        real_bind = (int (*)(int, const struct sockaddr *, socklen_t)) dlsym(RTLD_NEXT, "bind");
        real_setsockopt = (int (*)(int, int, int, const void *, socklen_t)) dlsym(RTLD_NEXT, "setsockopt");
        real_connect = (int (*)(int, const struct sockaddr *, socklen_t)) dlsym(RTLD_NEXT, "connect");
        if (!real_bind || !real_setsockopt || !real_connect || !fds || !pid)
                return;
        if (parse_int(pid, &end) != (int) getpid() || *end)
                return; /* a program the instance executed: these descriptors are not its */

        for (const char *p = fds; *p && n_entries < GRM_BIND_MAX;) {
                int fd;

                while (*p == ' ' || *p == ',')
                        p++;
                if (!*p)
                        break;
                fd = parse_int(p, &end);
                if (fd < 3 || (*end && *end != ' ' && *end != ','))
                        break;
                add_entry(fd);
                p = end;
        }

        /* The instance may unset NOTIFY_SOCKET (sd_notify(1, ...)) before it binds. */
        if (ns && (ns[0] == '/' || ns[0] == '@') && strlen(ns) < sizeof(notify_path)) {
                memcpy(notify_path, ns, strlen(ns));
                if (notify_path[0] == '@')
                        notify_path[0] = 0;
                notify_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(ns));
        }
        intercept = !ic || strcmp(ic, "0") != 0;
        per_client = pc && strcmp(pc, "1") == 0;
        if (per_client && lk && lk[0] == '/' && strlen(lk) < sizeof(lock_path))
                memcpy(lock_path, lk, strlen(lk) + 1);
        pthread_atfork(lock_table, unlock_table, unlock_table);
        enabled = n_entries > 0;
}

/* To grmd (the restart's failure names the address) and to stderr (the journal). */
static void report_failure(int type, const struct sockaddr *sa, int error) {
        char address[80], msg[160];
        int saved = errno, n;

        format_address(type, sa, address, sizeof(address));
        if (notify_len > 0) {
                struct sockaddr_un un = { .sun_family = AF_UNIX };
                int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

                memcpy(un.sun_path, notify_path, sizeof(un.sun_path));
                n = snprintf(msg, sizeof(msg), "GRM_BIND_ERROR=%d %s", error, address);
                if (s >= 0 && n > 0)
                        (void) sendto(s, msg, (size_t) n, MSG_NOSIGNAL, (struct sockaddr *) &un, notify_len);
                if (s >= 0)
                        close(s);
        }
        n = snprintf(msg, sizeof(msg), "grm-bind: bind(%s) failed: %s\n", address, strerror(error));
        if (n > 0)
                (void) !write(STDERR_FILENO, msg, (size_t) n);
        errno = saved;
}

/* Options an application sets before bind() that mean the same on grm's socket. Not copied:
 * SO_REUSEPORT, SO_REUSEADDR (grm's socket is bound), IPV6_V6ONLY and SO_BINDTODEVICE (they
 * decide what the socket is bound to, which grm's .socket unit or --listen did), socket
 * filters, multicast memberships and SO_LINGER (not plain integers). One the kernel refuses
 * (SO_MARK, SO_PRIORITY above 6 without CAP_NET_ADMIN) keeps grm's value. */
static const struct {
        int level, option, family, type; /* family/type 0: any */
} copied_options[] = {
        { SOL_SOCKET, SO_RCVBUF, 0, 0 },
        { SOL_SOCKET, SO_SNDBUF, 0, 0 },
        { SOL_SOCKET, SO_BROADCAST, 0, SOCK_DGRAM },
        { SOL_SOCKET, SO_KEEPALIVE, 0, SOCK_STREAM },
        { SOL_SOCKET, SO_OOBINLINE, 0, SOCK_STREAM },
        { SOL_SOCKET, SO_PRIORITY, 0, 0 },
        { SOL_SOCKET, SO_MARK, 0, 0 },
        { SOL_SOCKET, SO_RCVLOWAT, 0, 0 },
        { SOL_SOCKET, SO_TIMESTAMP, 0, 0 },
        { SOL_SOCKET, SO_TIMESTAMPNS, 0, 0 },
        { SOL_SOCKET, SO_RXQ_OVFL, 0, 0 },
        { SOL_SOCKET, SO_BUSY_POLL, 0, 0 },
        { SOL_SOCKET, SO_INCOMING_CPU, 0, 0 },
        { IPPROTO_IP, IP_TOS, AF_INET, 0 },
        { IPPROTO_IP, IP_TTL, AF_INET, 0 },
        { IPPROTO_IP, IP_PKTINFO, AF_INET, 0 },
        { IPPROTO_IP, IP_RECVTOS, AF_INET, 0 },
        { IPPROTO_IP, IP_RECVTTL, AF_INET, 0 },
        { IPPROTO_IP, IP_RECVERR, AF_INET, 0 },
        { IPPROTO_IP, IP_RECVORIGDSTADDR, AF_INET, 0 },
        { IPPROTO_IP, IP_MTU_DISCOVER, AF_INET, 0 },
        { IPPROTO_IP, IP_PKTINFO, AF_INET6, 0 },         /* v4-mapped traffic on a dual-stack socket */
        { IPPROTO_IP, IP_MTU_DISCOVER, AF_INET6, 0 },
        { IPPROTO_IPV6, IPV6_RECVPKTINFO, AF_INET6, 0 },
        { IPPROTO_IPV6, IPV6_RECVTCLASS, AF_INET6, 0 },
        { IPPROTO_IPV6, IPV6_RECVHOPLIMIT, AF_INET6, 0 },
        { IPPROTO_IPV6, IPV6_RECVERR, AF_INET6, 0 },
        { IPPROTO_IPV6, IPV6_RECVORIGDSTADDR, AF_INET6, 0 },
        { IPPROTO_IPV6, IPV6_TCLASS, AF_INET6, 0 },
        { IPPROTO_IPV6, IPV6_UNICAST_HOPS, AF_INET6, 0 },
        { IPPROTO_IPV6, IPV6_MTU_DISCOVER, AF_INET6, 0 },
        { IPPROTO_IPV6, IPV6_DONTFRAG, AF_INET6, 0 },
        { IPPROTO_UDP, UDP_SEGMENT, 0, SOCK_DGRAM },
        { IPPROTO_UDP, UDP_GRO, 0, SOCK_DGRAM },
        { IPPROTO_TCP, TCP_NODELAY, 0, SOCK_STREAM },
        { IPPROTO_TCP, TCP_DEFER_ACCEPT, 0, SOCK_STREAM },
        { IPPROTO_TCP, TCP_FASTOPEN, 0, SOCK_STREAM },
        { IPPROTO_TCP, TCP_KEEPIDLE, 0, SOCK_STREAM },
        { IPPROTO_TCP, TCP_KEEPINTVL, 0, SOCK_STREAM },
        { IPPROTO_TCP, TCP_KEEPCNT, 0, SOCK_STREAM },
        { IPPROTO_TCP, TCP_USER_TIMEOUT, 0, SOCK_STREAM },
        { IPPROTO_TCP, TCP_MAXSEG, 0, SOCK_STREAM },
};

static void copy_options(int from, int to, int family, int type) {
        for (size_t i = 0; i < sizeof(copied_options) / sizeof(copied_options[0]); i++) {
                int a, b, level = copied_options[i].level, option = copied_options[i].option;

                if ((copied_options[i].family && copied_options[i].family != family) ||
                    (copied_options[i].type && copied_options[i].type != type))
                        continue;
                a = socket_int(from, level, option);
                b = socket_int(to, level, option);
                if (a < 0 || a == b)
                        continue;
                /* The kernel reports twice the buffer size asked for. */
                if (level == SOL_SOCKET && (option == SO_RCVBUF || option == SO_SNDBUF)) {
                        if (a <= b)
                                continue; /* never shrink grm's ReceiveBuffer= */
                        a /= 2;
                }
                (void) real_setsockopt(to, level, option, &a, sizeof(a));
        }
}

/* The generation's unclaimed socket for this address, or -EADDRINUSE if the address is grm's
 * but every socket of it is taken (or none is handed out: no InterceptBind=), or -ENOENT if
 * grm does not manage it. */
static int find_entry(int family, int type, const struct sockaddr *sa, Entry **ret) {
        bool managed = false;

        for (unsigned i = 0; i < n_entries; i++) {
                Entry *e = &entries[i];
                if (e->family != family || e->type != type || !same_address((struct sockaddr *) &e->sa, sa))
                        continue;
                managed = true;
                if (intercept && e->fd >= 0) {
                        *ret = e;
                        return 0;
                }
        }
        return managed ? -EADDRINUSE : -ENOENT;
}

static bool is_generation_socket(int fd) {
        unsigned long long cookie = 0;
        socklen_t len = sizeof(cookie);

        if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) < 0 || cookie == 0)
                return false;
        for (unsigned i = 0; i < n_entries; i++)
                if (entries[i].cookie == cookie)
                        return true;
        return false;
}

/* A per-client socket: SO_REUSEADDR added for its bind (it stays on: the connected socket must
 * not conflict with the binds after it once its SO_REUSEPORT is cleared), then the kernel's
 * bind, which puts it in grm's group. Called with the mutex held. Returns 0 or -errno, with
 * SO_REUSEADDR as it was if the bind failed. */
static int bind_per_client(int fd, const struct sockaddr *addr, socklen_t len) {
        int one = 1, was = socket_int(fd, SOL_SOCKET, SO_REUSEADDR), r = 0;
        bool held;

        if (real_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return -errno;
        held = lock_ports();
        if (real_bind(fd, addr, len) < 0) {
                r = -errno;
                if (was == 0)
                        (void) real_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &was, sizeof(was));
        }
        unlock_ports(held);
        return r;
}

/* Whether fd is a per-client socket this library bound: UDP, bound to a managed address with
 * SO_REUSEADDR and SO_REUSEPORT, not connected, and not one of the generation's sockets. */
static bool is_unconnected_per_client(int fd) {
        struct sockaddr_storage local, peer;
        socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
        bool managed = false;

        if (socket_int(fd, SOL_SOCKET, SO_TYPE) != SOCK_DGRAM || socket_int(fd, SOL_SOCKET, SO_REUSEPORT) <= 0 ||
            socket_int(fd, SOL_SOCKET, SO_REUSEADDR) <= 0)
                return false;
        if (getsockname(fd, (struct sockaddr *) &local, &local_len) < 0 ||
            getpeername(fd, (struct sockaddr *) &peer, &peer_len) == 0 || errno != ENOTCONN)
                return false;
        for (unsigned i = 0; i < n_entries && !managed; i++)
                managed = entries[i].type == SOCK_DGRAM &&
                          same_address((struct sockaddr *) &entries[i].sa, (struct sockaddr *) &local);
        return managed && !is_generation_socket(fd);
}

EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len) {
        struct sockaddr_storage bound;
        socklen_t bound_len = sizeof(bound);
        int family, type, r, saved = errno;
        Entry *e = NULL;

        if (!real_bind) {
                errno = ENOSYS;
                return -1;
        }
        if (!enabled || !addr || len < sizeof(sa_family_t) ||
            (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) ||
            (addr->sa_family == AF_INET && len < sizeof(struct sockaddr_in)) ||
            (addr->sa_family == AF_INET6 && len < sizeof(struct sockaddr_in6)))
                return real_bind(fd, addr, len);
        if ((addr->sa_family == AF_INET ? ((const struct sockaddr_in *) addr)->sin_port
                                        : ((const struct sockaddr_in6 *) addr)->sin6_port) == 0)
                return real_bind(fd, addr, len); /* port 0: the kernel picks one, never ours */

        family = socket_int(fd, SOL_SOCKET, SO_DOMAIN);
        type = socket_int(fd, SOL_SOCKET, SO_TYPE);
        /* Not a socket, a mismatched family, or already bound: the kernel says what is wrong. */
        if (family != addr->sa_family || (type != SOCK_DGRAM && type != SOCK_STREAM) ||
            getsockname(fd, (struct sockaddr *) &bound, &bound_len) < 0 ||
            (bound.ss_family == AF_INET ? ((struct sockaddr_in *) &bound)->sin_port
                                        : ((struct sockaddr_in6 *) &bound)->sin6_port) != 0) {
                errno = saved;
                return real_bind(fd, addr, len);
        }

        lock_table();
        r = find_entry(family, type, addr, &e);
        if (r == -EADDRINUSE && per_client && type == SOCK_DGRAM && socket_int(fd, SOL_SOCKET, SO_REUSEPORT) > 0) {
                r = bind_per_client(fd, addr, len);
                unlock_table();
                if (r < 0) {
                        report_failure(type, addr, -r);
                        errno = -r;
                        return -1;
                }
                errno = saved;
                return 0;
        }
        if (r == 0) {
                int fd_flags = fcntl(fd, F_GETFD), fl_flags = fcntl(fd, F_GETFL);

                copy_options(fd, e->fd, family, type);
                /* O_NONBLOCK is the open file's: set on grm's socket it is what the instance's
                 * descriptor has after the swap. FD_CLOEXEC is the descriptor's: dup3 sets it. */
                if (fl_flags >= 0)
                        (void) fcntl(e->fd, F_SETFL, (fcntl(e->fd, F_GETFL) & ~O_NONBLOCK) | (fl_flags & O_NONBLOCK));
                if (dup3(e->fd, fd, fd_flags >= 0 && (fd_flags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
                        r = -errno;
                        unlock_table();
                        report_failure(type, addr, -r);
                        errno = -r;
                        return -1;
                }
                close(e->fd);
                e->fd = -1;
        }
        unlock_table();
        if (r == 0) {
                errno = saved;
                return 0;
        }
        if (r == -EADDRINUSE && !intercept) {
                /* Nothing to hand out and not a per-client socket: the kernel's bind, as if
                 * the library were not there. */
                r = real_bind(fd, addr, len);
                if (r < 0 && (errno == EADDRINUSE || errno == EACCES || errno == EPERM || errno == EADDRNOTAVAIL))
                        report_failure(type, addr, errno);
                return r;
        }
        if (r == -EADDRINUSE) {
                /* Every socket the generation has for this address is taken: as if another
                 * socket held the port (raise SocketsPerGeneration= for more). */
                report_failure(type, addr, EADDRINUSE);
                errno = EADDRINUSE;
                return -1;
        }

        r = real_bind(fd, addr, len);
        if (r < 0 && (errno == EADDRINUSE || errno == EACCES || errno == EPERM || errno == EADDRNOTAVAIL))
                report_failure(type, addr, errno);
        return r;
}

/* Steering belongs to grmd: a reuseport program the instance attaches to one of the
 * generation's sockets would replace grm's for the whole group. It is accepted and not
 * applied (the instance meant to spread its own load, which grm's program already does). */
EXPORT int setsockopt(int fd, int level, int option, const void *value, socklen_t len) {
        if (!real_setsockopt) {
                errno = ENOSYS;
                return -1;
        }
        if (enabled && level == SOL_SOCKET &&
            (option == SO_ATTACH_REUSEPORT_CBPF || option == SO_ATTACH_REUSEPORT_EBPF ||
             option == SO_DETACH_REUSEPORT_BPF) &&
            is_generation_socket(fd))
                return 0;
        return real_setsockopt(fd, level, option, value, len);
}

/* A per-client socket leaves grm's group when the kernel connects it; clearing SO_REUSEPORT
 * right after, under the mutex the per-client binds take, means no later bind of this process
 * can join it there. A failed connect leaves it as it was: in grm's group, unselected. */
EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len) {
        int r, zero = 0, saved, error;
        bool held;

        if (!real_connect) {
                errno = ENOSYS;
                return -1;
        }
        saved = errno;
        if (!enabled || !per_client || !addr || len < sizeof(sa_family_t) || addr->sa_family == AF_UNSPEC ||
            !is_unconnected_per_client(fd)) {
                errno = saved;
                return real_connect(fd, addr, len);
        }
        errno = saved;
        lock_table();
        held = lock_ports();
        r = real_connect(fd, addr, len);
        error = r < 0 ? errno : saved;
        if (r == 0 && real_setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &zero, sizeof(zero)) < 0) {
                static const char msg[] = "grm-bind: could not clear SO_REUSEPORT on a connected per-client socket\n";
                (void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
        }
        unlock_ports(held);
        unlock_table();
        errno = error;
        return r;
}
