/* SPDX-License-Identifier: MIT */
/*
 * per-client-server: what a connect-per-client server does with its sockets, run by
 * test-connect-per-client.c under libgrm-bind.so (LD_PRELOAD, GRM_BIND_FDS=3, fd 3 the
 * generation's socket, as grmd starts an instance) to check the library's per-client mode.
 * Not sanitized: an ASan program cannot take a preloaded library before its runtime.
 *
 * usage: per-client-server ADDRESS PORT CLIENT_ADDRESS CLIENT_PORT (fd 3: generation socket,
 * fd 4: a SOCK_SEQPACKET socket to the test)
 *
 * In this order, each step's result on one line of the report:
 *   first    socket + SO_REUSEPORT + bind(ADDRESS:PORT): the cookie of what the descriptor holds
 *   client   socket + SO_REUSEPORT (no SO_REUSEADDR) + bind(ADDRESS:PORT): errno, SO_REUSEADDR after
 *   plain    socket without SO_REUSEPORT + bind(ADDRESS:PORT): errno
 *   connect  connect(client, CLIENT): errno, SO_REUSEPORT after
 *   other    socket + SO_REUSEPORT + SO_REUSEADDR + bind(ADDRESS:PORT+1) + connect(CLIENT): errno,
 *            SO_REUSEPORT after (not a managed address: the library leaves it alone)
 * then sends the report with the "first" and "client" sockets (SCM_RIGHTS) on fd 4 and waits
 * for the test to close it. Exit status 0, or 2 on a usage or set-up error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int parse_address(const char *host, const char *port, struct sockaddr_storage *ss, socklen_t *len) {
        struct sockaddr_in *in = (struct sockaddr_in *) ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ss;

        memset(ss, 0, sizeof(*ss));
        if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
                in->sin_family = AF_INET;
                in->sin_port = htons((unsigned short) atoi(port));
                *len = sizeof(*in);
                return AF_INET;
        }
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((unsigned short) atoi(port));
                *len = sizeof(*in6);
                return AF_INET6;
        }
        return -1;
}

static int int_option(int fd, int option) {
        int v = -1;
        socklen_t len = sizeof(v);

        (void) getsockopt(fd, SOL_SOCKET, option, &v, &len);
        return v;
}

static int new_socket(int family, int reuseport, int reuseaddr) {
        int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0), zero = 0;

        if (fd < 0)
                exit(2);
        if (family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &reuseport, sizeof(reuseport)) < 0)
                exit(2);
        if (reuseaddr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuseaddr, sizeof(reuseaddr)) < 0)
                exit(2);
        return fd;
}

int main(int argc, char *argv[]) {
        struct sockaddr_storage addr, other, client;
        socklen_t addr_len, other_len, client_len;
        unsigned long long cookie = 0;
        socklen_t cookie_len = sizeof(cookie);
        char report[512], port1[16], byte;
        int family, first, per_client, plain, unmanaged, r, n = 0, fds[2];

        if (argc != 5)
                return 2;
        family = parse_address(argv[1], argv[2], &addr, &addr_len);
        snprintf(port1, sizeof(port1), "%d", atoi(argv[2]) + 1);
        if (family < 0 || parse_address(argv[1], port1, &other, &other_len) != family ||
            parse_address(argv[3], argv[4], &client, &client_len) < 0)
                return 2;

        first = new_socket(family, 1, 0);
        r = bind(first, (struct sockaddr *) &addr, addr_len);
        (void) getsockopt(first, SOL_SOCKET, SO_COOKIE, &cookie, &cookie_len);
        n += snprintf(report + n, sizeof(report) - (size_t) n, "first %d %llu\n", r < 0 ? errno : 0, cookie);

        per_client = new_socket(family, 1, 0);
        r = bind(per_client, (struct sockaddr *) &addr, addr_len);
        n += snprintf(report + n, sizeof(report) - (size_t) n, "client %d %d\n", r < 0 ? errno : 0,
                      int_option(per_client, SO_REUSEADDR));

        plain = new_socket(family, 0, 0);
        r = bind(plain, (struct sockaddr *) &addr, addr_len);
        n += snprintf(report + n, sizeof(report) - (size_t) n, "plain %d\n", r < 0 ? errno : 0);
        close(plain);

        r = connect(per_client, (struct sockaddr *) &client, client_len);
        n += snprintf(report + n, sizeof(report) - (size_t) n, "connect %d %d\n", r < 0 ? errno : 0,
                      int_option(per_client, SO_REUSEPORT));

        unmanaged = new_socket(family, 1, 1);
        r = bind(unmanaged, (struct sockaddr *) &other, other_len);
        if (r == 0)
                r = connect(unmanaged, (struct sockaddr *) &client, client_len);
        n += snprintf(report + n, sizeof(report) - (size_t) n, "other %d %d\n", r < 0 ? errno : 0,
                      int_option(unmanaged, SO_REUSEPORT));
        close(unmanaged);

        fds[0] = first;
        fds[1] = per_client;
        {
                char control[CMSG_SPACE(sizeof(fds))] = {};
                struct iovec iov = { .iov_base = report, .iov_len = (size_t) n };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                                     .msg_controllen = sizeof(control) };
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(fds));
                memcpy(CMSG_DATA(c), fds, sizeof(fds));
                if (sendmsg(4, &mh, MSG_NOSIGNAL) < 0)
                        return 2;
        }
        /* Until the test is done with the sockets. */
        while (read(4, &byte, 1) > 0)
                ;
        return 0;
}
