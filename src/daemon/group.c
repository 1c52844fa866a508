/* SPDX-License-Identifier: MIT */
/*
 * The listening groups: one original SO_REUSEPORT UDP socket per address (from systemd or
 * opened here with --listen), and the fresh sockets each generation gets, cloned from it so
 * they join the same reuseport group with the same options.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <net/if.h>
#include <stdio.h>
#include <sys/socket.h>

#include "config.h"
#include "macro.h"
#include "manager.h"

static int format_address(const struct sockaddr_storage *sa, char **ret) {
        char host[INET6_ADDRSTRLEN], *s;
        int r;

        if (sa->ss_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                r = asprintf(&s, "udp:%s:%u", host, ntohs(in->sin_port));
        } else if (sa->ss_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                r = asprintf(&s, "udp:[%s]:%u", host, ntohs(in6->sin6_port));
        } else
                return -EAFNOSUPPORT;
        if (r < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int group_from_fd(int fd, const char *name, Group *ret) {
        Group g = { .fd = -EBADF };
        int type = 0, reuseport = 0;
        socklen_t len = sizeof(type);
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
                return negative_errno();
        if (type != SOCK_DGRAM)
                return -ESOCKTNOSUPPORT;
        len = sizeof(reuseport);
        if (getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &reuseport, &len) < 0)
                return negative_errno();
        if (!reuseport)
                return -EADDRINUSE; /* caller explains: ReusePort=yes */

        g.sa_len = sizeof(g.sa);
        if (getsockname(fd, (struct sockaddr *) &g.sa, &g.sa_len) < 0)
                return negative_errno();
        if (g.sa.ss_family != AF_INET && g.sa.ss_family != AF_INET6)
                return -EAFNOSUPPORT;

        r = format_address(&g.sa, &g.address);
        if (r < 0)
                return r;
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

int group_listen(const char *address, uint64_t receive_buffer, Group *ret) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_storage sa;
        socklen_t sa_len;
        int one = 1, r;

        r = parse_listen_address(address, &sa, &sa_len);
        if (r < 0)
                return r;
        fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
                return negative_errno();
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
        r = group_from_fd(fd, NULL, ret);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        return 0;
}

/* Reads and drops what is queued on the original socket. Once a generation works, the steering
 * program never selects that socket, so anything there arrived before (the datagram that made
 * systemd start the service, for one) and would stay forever: unanswered, and keeping the
 * socket readable, so that systemd starts the service again the moment it is stopped.
 * Returns how many datagrams were dropped. */
int group_discard_queued(const Group *g) {
        char byte;
        int n = 0;

        while (n < 1000000 && recv(g->fd, &byte, sizeof(byte), MSG_DONTWAIT | MSG_TRUNC) >= 0)
                n++;
        return n;
}

void group_done(Group *g) {
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

int group_open_socket(const Group *g, uint64_t receive_buffer, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        char device[IFNAMSIZ + 1] = "";
        socklen_t len = sizeof(device) - 1;
        int one = 1, r;

        fd = socket(g->sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
                return negative_errno();

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
        } else {
                r = copy_int_option(g->fd, fd, IPPROTO_IP, IP_FREEBIND);
                if (r < 0)
                        return r;
                r = copy_int_option(g->fd, fd, IPPROTO_IP, IP_TRANSPARENT);
                if (r < 0)
                        return r;
        }

        if (getsockopt(g->fd, SOL_SOCKET, SO_BINDTODEVICE, device, &len) == 0 && device[0] != 0)
                if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device, strlen(device)) < 0)
                        return negative_errno();

        if (receive_buffer > 0)
                r = set_receive_buffer(fd, receive_buffer);
        else
                r = copy_buffer_size(g->fd, fd, SO_RCVBUF, SO_RCVBUFFORCE);
        if (r < 0)
                return r;
        r = copy_buffer_size(g->fd, fd, SO_SNDBUF, SO_SNDBUFFORCE);
        if (r < 0)
                return r;
        r = copy_int_option(g->fd, fd, SOL_SOCKET, SO_MARK);
        if (r < 0)
                return r;
        r = copy_int_option(g->fd, fd, SOL_SOCKET, SO_PRIORITY);
        if (r < 0)
                return r;

        if (bind(fd, (const struct sockaddr *) &g->sa, g->sa_len) < 0)
                return negative_errno();

        *ret_fd = TAKE_FD(fd);
        return 0;
}
