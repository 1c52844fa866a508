/* SPDX-License-Identifier: MIT */
/*
 * bind-server: a test server that opens and binds its own sockets, as knotd or nsd do, for
 * tests/integration/intercept-bind.sh. It knows nothing of socket activation or grm: each
 * SPEC (udp:ADDR:PORT, tcp:ADDR:PORT; IPv6 in brackets; port 0 allowed) is a socket() +
 * setsockopt()s + bind() (+ listen() for tcp), optionally each in its own thread at once.
 * Every bind's result and the socket's state afterwards go to --report as one JSON object per
 * line. UDP datagrams are answered like grm-echo (payload + " gen=N pid=P\n", so grm-load can
 * check them), TCP connections get "gen=N pid=P\n". READY=1 goes to $NOTIFY_SOCKET once every
 * bind was tried; SIGTERM drains (answers until --idle-exit seconds pass without a datagram).
 * Exit status: 0 drained, 1 a bind failed (with --exit-on-bind-error), 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_SPECS 64

typedef struct Spec {
        const char *text;
        int type;
        struct sockaddr_storage sa;
        socklen_t sa_len;
        int fd;
        int error;
        int rebind_error;               /* --close-rebind: errno of the second bind, 0 if it worked */
} Spec;

static Spec specs[MAX_SPECS];
static unsigned n_specs;
static bool arg_reuseport, arg_threads, arg_pktinfo, arg_nonblock, arg_exit_on_error, arg_cloexec, arg_rebind;
static int arg_v6only = -1, arg_rcvbuf, arg_tos;
static double arg_idle_exit = 0.3;
static const char *arg_report;
static unsigned long generation;
static atomic_bool draining;
static atomic_long last_datagram_ns;
static pthread_barrier_t barrier;

static long now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int parse_spec(const char *s, Spec *ret) {
        char host[64];
        const char *p, *colon;
        long port;

        if (strncmp(s, "udp:", 4) == 0)
                ret->type = SOCK_DGRAM;
        else if (strncmp(s, "tcp:", 4) == 0)
                ret->type = SOCK_STREAM;
        else
                return -1;
        p = s + 4;
        if (*p == '[') {
                const char *end = strchr(p, ']');
                if (!end || end[1] != ':' || (size_t) (end - p - 1) >= sizeof(host))
                        return -1;
                memcpy(host, p + 1, (size_t) (end - p - 1));
                host[end - p - 1] = 0;
                colon = end + 1;
        } else {
                colon = strrchr(p, ':');
                if (!colon || (size_t) (colon - p) >= sizeof(host))
                        return -1;
                memcpy(host, p, (size_t) (colon - p));
                host[colon - p] = 0;
        }
        port = strtol(colon + 1, NULL, 10);
        if (port < 0 || port > 65535)
                return -1;
        memset(&ret->sa, 0, sizeof(ret->sa));
        if (inet_pton(AF_INET, host, &((struct sockaddr_in *) &ret->sa)->sin_addr) == 1) {
                ret->sa.ss_family = AF_INET;
                ((struct sockaddr_in *) &ret->sa)->sin_port = htons((uint16_t) port);
                ret->sa_len = sizeof(struct sockaddr_in);
        } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *) &ret->sa)->sin6_addr) == 1) {
                ret->sa.ss_family = AF_INET6;
                ((struct sockaddr_in6 *) &ret->sa)->sin6_port = htons((uint16_t) port);
                ret->sa_len = sizeof(struct sockaddr_in6);
        } else
                return -1;
        ret->text = s;
        ret->fd = -1;
        return 0;
}

static int getint(int fd, int level, int option) {
        int v = -1;
        socklen_t len = sizeof(v);
        if (getsockopt(fd, level, option, &v, &len) < 0)
                return -1;
        return v;
}

static void open_and_bind(Spec *s) {
        int one = 1, fd;

        fd = socket(s->sa.ss_family, s->type | (arg_nonblock ? SOCK_NONBLOCK : 0) | (arg_cloexec ? SOCK_CLOEXEC : 0), 0);
        if (fd < 0) {
                s->error = errno;
                return;
        }
        if (arg_reuseport)
                (void) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (s->type == SOCK_STREAM)
                (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (arg_v6only >= 0 && s->sa.ss_family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &arg_v6only, sizeof(arg_v6only));
        if (arg_pktinfo) {
                if (s->sa.ss_family == AF_INET)
                        (void) setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
                else
                        (void) setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
        }
        if (arg_tos && s->sa.ss_family == AF_INET)
                (void) setsockopt(fd, IPPROTO_IP, IP_TOS, &arg_tos, sizeof(arg_tos));
        if (arg_rcvbuf)
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &arg_rcvbuf, sizeof(arg_rcvbuf));
        if (arg_threads)
                pthread_barrier_wait(&barrier); /* every thread binds at the same moment */
        if (bind(fd, (struct sockaddr *) &s->sa, s->sa_len) < 0) {
                s->error = errno;
                close(fd);
                return;
        }
        if (arg_rebind) {
                /* Close the bound socket and bind a fresh one to the same address. */
                close(fd);
                fd = socket(s->sa.ss_family, s->type | SOCK_CLOEXEC, 0);
                if (fd < 0 || bind(fd, (struct sockaddr *) &s->sa, s->sa_len) < 0) {
                        s->rebind_error = errno;
                        s->error = errno;
                        if (fd >= 0)
                                close(fd);
                        return;
                }
        }
        if (s->type == SOCK_STREAM && listen(fd, 64) < 0) {
                s->error = errno;
                close(fd);
                return;
        }
        s->fd = fd;
}

static void *bind_thread(void *p) {
        open_and_bind(p);
        return NULL;
}

static void report(FILE *f, const Spec *s) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        char host[INET6_ADDRSTRLEN] = "";
        unsigned port = 0;
        unsigned long long cookie = 0;
        socklen_t clen = sizeof(cookie);
        int fd = s->fd;

        fprintf(f, "{\"spec\":\"%s\",\"ok\":%s,\"errno\":%d,\"error\":\"%s\",\"rebind_errno\":%d", s->text,
                fd >= 0 ? "true" : "false", s->error, s->error ? strerror(s->error) : "", s->rebind_error);
        if (fd >= 0 && getsockname(fd, (struct sockaddr *) &sa, &len) == 0) {
                if (sa.ss_family == AF_INET) {
                        inet_ntop(AF_INET, &((struct sockaddr_in *) &sa)->sin_addr, host, sizeof(host));
                        port = ntohs(((struct sockaddr_in *) &sa)->sin_port);
                } else {
                        inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &sa)->sin6_addr, host, sizeof(host));
                        port = ntohs(((struct sockaddr_in6 *) &sa)->sin6_port);
                }
                (void) getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &clen);
                fprintf(f, ",\"fd\":%d,\"host\":\"%s\",\"port\":%u,\"reuseport\":%d,\"rcvbuf\":%d,"
                        "\"pktinfo\":%d,\"tos\":%d,\"v6only\":%d,\"nonblock\":%s,\"cloexec\":%s,\"cookie\":%llu,"
                        "\"listening\":%d",
                        fd, host, port, getint(fd, SOL_SOCKET, SO_REUSEPORT), getint(fd, SOL_SOCKET, SO_RCVBUF),
                        sa.ss_family == AF_INET ? getint(fd, IPPROTO_IP, IP_PKTINFO) : getint(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO),
                        sa.ss_family == AF_INET ? getint(fd, IPPROTO_IP, IP_TOS) : -1,
                        sa.ss_family == AF_INET6 ? getint(fd, IPPROTO_IPV6, IPV6_V6ONLY) : -1,
                        (fcntl(fd, F_GETFL) & O_NONBLOCK) ? "true" : "false",
                        (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? "true" : "false", cookie,
                        getint(fd, SOL_SOCKET, SO_ACCEPTCONN));
        }
        fprintf(f, "}\n");
}

static bool idle_long_enough(void) {
        return atomic_load(&draining) && now_ns() - atomic_load(&last_datagram_ns) > (long) (arg_idle_exit * 1e9);
}

static void *serve(void *p) {
        Spec *s = p;
        char buf[65536], trailer[64];
        int n_trailer = snprintf(trailer, sizeof(trailer), " gen=%lu pid=%d\n", generation, (int) getpid());

        for (;;) {
                struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
                struct sockaddr_storage from;
                socklen_t from_len = sizeof(from);
                ssize_t n;

                if (poll(&pfd, 1, 50) <= 0) {
                        if (idle_long_enough())
                                return NULL;
                        continue;
                }
                if (s->type == SOCK_STREAM) {
                        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
                        if (c >= 0) {
                                (void) !write(c, trailer + 1, (size_t) n_trailer - 1);
                                close(c);
                        }
                        atomic_store(&last_datagram_ns, now_ns());
                        continue;
                }
                n = recvfrom(s->fd, buf, sizeof(buf) - sizeof(trailer), MSG_DONTWAIT, (struct sockaddr *) &from, &from_len);
                if (n < 0)
                        continue;
                atomic_store(&last_datagram_ns, now_ns());
                memcpy(buf + n, trailer, (size_t) n_trailer);
                (void) sendto(s->fd, buf, (size_t) n + (size_t) n_trailer, MSG_DONTWAIT, (struct sockaddr *) &from, from_len);
        }
}

static void notify(const char *msg) {
        const char *path = getenv("NOTIFY_SOCKET");
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        int fd;

        if (!path || strlen(path) >= sizeof(un.sun_path))
                return;
        strcpy(un.sun_path, path);
        if (un.sun_path[0] == '@')
                un.sun_path[0] = 0;
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return;
        (void) sendto(fd, msg, strlen(msg), 0, (struct sockaddr *) &un,
                      (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(path)));
        close(fd);
}

static void on_term(int sig) {
        atomic_store(&last_datagram_ns, now_ns());
        atomic_store(&draining, true);
}

int main(int argc, char *argv[]) {
        pthread_t threads[MAX_SPECS];
        bool failed = false;
        int i;

        for (i = 1; i < argc && argv[i][0] == '-'; i++) {
                if (!strcmp(argv[i], "--reuseport"))
                        arg_reuseport = true;
                else if (!strcmp(argv[i], "--threads"))
                        arg_threads = true;
                else if (!strcmp(argv[i], "--pktinfo"))
                        arg_pktinfo = true;
                else if (!strcmp(argv[i], "--nonblock"))
                        arg_nonblock = true;
                else if (!strcmp(argv[i], "--cloexec"))
                        arg_cloexec = true;
                else if (!strcmp(argv[i], "--close-rebind"))
                        arg_rebind = true;
                else if (!strcmp(argv[i], "--exit-on-bind-error"))
                        arg_exit_on_error = true;
                else if (!strcmp(argv[i], "--v6only") && i + 1 < argc)
                        arg_v6only = atoi(argv[++i]);
                else if (!strcmp(argv[i], "--rcvbuf") && i + 1 < argc)
                        arg_rcvbuf = atoi(argv[++i]);
                else if (!strcmp(argv[i], "--tos") && i + 1 < argc)
                        arg_tos = atoi(argv[++i]);
                else if (!strcmp(argv[i], "--idle-exit") && i + 1 < argc)
                        arg_idle_exit = atof(argv[++i]);
                else if (!strcmp(argv[i], "--report") && i + 1 < argc)
                        arg_report = argv[++i];
                else {
                        fprintf(stderr, "bind-server: unknown option %s\n", argv[i]);
                        return 2;
                }
        }
        for (; i < argc && n_specs < MAX_SPECS; i++)
                if (parse_spec(argv[i], &specs[n_specs++]) < 0) {
                        fprintf(stderr, "bind-server: bad spec %s\n", argv[i]);
                        return 2;
                }
        if (getenv("GRM_GENERATION"))
                generation = strtoul(getenv("GRM_GENERATION"), NULL, 10);
        signal(SIGTERM, on_term);
        signal(SIGINT, on_term);
        signal(SIGPIPE, SIG_IGN);

        if (arg_threads) {
                pthread_barrier_init(&barrier, NULL, n_specs);
                for (unsigned k = 0; k < n_specs; k++)
                        pthread_create(&threads[k], NULL, bind_thread, &specs[k]);
                for (unsigned k = 0; k < n_specs; k++)
                        pthread_join(threads[k], NULL);
        } else
                for (unsigned k = 0; k < n_specs; k++)
                        open_and_bind(&specs[k]);

        FILE *f = arg_report ? fopen(arg_report, "w") : NULL;
        for (unsigned k = 0; k < n_specs; k++) {
                if (f)
                        report(f, &specs[k]);
                if (specs[k].fd < 0) {
                        fprintf(stderr, "bind-server: %s: %s\n", specs[k].text, strerror(specs[k].error));
                        failed = true;
                }
        }
        if (f)
                fclose(f);
        if (failed && arg_exit_on_error)
                return 1;

        for (unsigned k = 0; k < n_specs; k++)
                if (specs[k].fd >= 0)
                        pthread_create(&threads[k], NULL, serve, &specs[k]);
        notify("READY=1");
        bool serving = false;
        for (unsigned k = 0; k < n_specs; k++)
                serving = serving || specs[k].fd >= 0;
        while (!serving && !atomic_load(&draining))
                usleep(50 * 1000); /* nothing bound: stay up until told to drain */
        for (unsigned k = 0; k < n_specs; k++)
                if (specs[k].fd >= 0)
                        pthread_join(threads[k], NULL);
        return 0;
}
