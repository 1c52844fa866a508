/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by grm-echo and grm-load (header only, no library): parsing of the command
 * line values both tools take (seconds, integers, ADDR:PORT, signal names), the monotonic clock,
 * socket buffer sizing and address formatting. Everything returns negative errno on failure and
 * never logs; the tools decide what an error means for them.
 */
#pragma once

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "macro.h"

/* Enough for "[v6addr]:65535" and "unix:" plus a socket path. */
#define SOCKADDR_STR_MAX 128

static inline uint64_t now_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

/* A non-negative, finite number of seconds (fractions allowed, at most max_sec) as nanoseconds. */
static inline int parse_seconds(const char *s, double max_sec, uint64_t *ret_nsec) {
        char *end = NULL;
        double d;

        if (!s || !*s || isspace((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        d = strtod(s, &end);
        if (errno != 0 || !end || *end != '\0' || !isfinite(d))
                return -EINVAL;
        if (d < 0 || d > max_sec)
                return -ERANGE;
        *ret_nsec = (uint64_t) (d * (double) NSEC_PER_SEC + 0.5);
        return 0;
}

/* A positive, finite floating point number (rates), at most max. */
static inline int parse_positive_double(const char *s, double max, double *ret) {
        char *end = NULL;
        double d;

        if (!s || !*s || isspace((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        d = strtod(s, &end);
        if (errno != 0 || !end || *end != '\0' || !isfinite(d))
                return -EINVAL;
        if (d <= 0 || d > max)
                return -ERANGE;
        *ret = d;
        return 0;
}

/* A plain decimal unsigned integer: no sign, no spaces, no hex, in [min, max]. */
static inline int parse_u64_range(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        char *end = NULL;
        unsigned long long v;

        if (!s || !isdigit((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || !end || *end != '\0')
                return -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

/*
 * Splits "HOST:PORT" or "[HOST]:PORT" into its parts. HOST is written to host (size bytes),
 * without brackets. An IPv6 address must be bracketed. Port 0 is accepted only if allow_port0.
 * Returns -EINVAL on any syntax error.
 */
static inline int split_host_port(const char *s, bool allow_port0, char *host, size_t size,
                                  uint16_t *ret_port) {
        const char *colon, *h;
        size_t hlen;
        uint64_t port;
        int r;

        if (!s || !*s)
                return -EINVAL;

        if (*s == '[') {
                const char *close = strchr(s, ']');

                if (!close || close[1] != ':')
                        return -EINVAL;
                h = s + 1;
                hlen = (size_t) (close - h);
                colon = close + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || memchr(s, ':', (size_t) (colon - s)))
                        return -EINVAL; /* no port, or an unbracketed IPv6 address */
                h = s;
                hlen = (size_t) (colon - s);
        }
        if (hlen == 0 || hlen >= size)
                return -EINVAL;

        r = parse_u64_range(colon + 1, allow_port0 ? 0 : 1, 65535, &port);
        if (r < 0)
                return -EINVAL;

        memcpy(host, h, hlen);
        host[hlen] = '\0';
        *ret_port = (uint16_t) port;
        return 0;
}

/*
 * Resolves "HOST:PORT"/"[HOST]:PORT" to the first UDP address. Returns -EINVAL on a syntax
 * error (a usage error for the caller) and -EADDRNOTAVAIL if the name does not resolve; in the
 * latter case *ret_gai_error (if non-NULL) holds the getaddrinfo() error code.
 */
static inline int resolve_udp_address(const char *s, bool allow_port0, bool passive,
                                      struct sockaddr_storage *ret, socklen_t *ret_len,
                                      int *ret_gai_error) {
        struct addrinfo hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_DGRAM,
                .ai_protocol = IPPROTO_UDP,
                .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
        };
        struct addrinfo *res = NULL;
        char host[NI_MAXHOST], port_str[8];
        uint16_t port;
        int r;

        r = split_host_port(s, allow_port0, host, sizeof(host), &port);
        if (r < 0)
                return r;
        if (s[0] == '[')
                hints.ai_family = AF_INET6;

        (void) snprintf(port_str, sizeof(port_str), "%u", port);
        r = getaddrinfo(host, port_str, &hints, &res);
        if (r != 0) {
                if (ret_gai_error)
                        *ret_gai_error = r;
                return -EADDRNOTAVAIL;
        }
        if (!res || res->ai_addrlen > sizeof(*ret)) {
                if (res)
                        freeaddrinfo(res);
                if (ret_gai_error)
                        *ret_gai_error = EAI_NONAME;
                return -EADDRNOTAVAIL;
        }

        memset(ret, 0, sizeof(*ret));
        memcpy(ret, res->ai_addr, res->ai_addrlen);
        *ret_len = res->ai_addrlen;
        freeaddrinfo(res);
        return 0;
}

/* Formats an IPv4/IPv6 socket address as "1.2.3.4:5" or "[::1]:5"; anything else as "?". */
static inline const char *format_sockaddr(const struct sockaddr *sa, char *buf, size_t size) {
        char a[INET6_ADDRSTRLEN];

        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;

                (void) inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
                (void) snprintf(buf, size, "%s:%u", a, ntohs(in->sin_port));
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;

                (void) inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
                (void) snprintf(buf, size, "[%s]:%u", a, ntohs(in6->sin6_port));
        } else if (sa->sa_family == AF_UNIX)
                (void) snprintf(buf, size, "unix:%s", ((const struct sockaddr_un *) sa)->sun_path);
        else
                (void) snprintf(buf, size, "?");
        return buf;
}

/*
 * Sets a socket buffer (SO_RCVBUF/SO_SNDBUF) to at least bytes: the privileged *FORCE variant
 * first, which ignores net.core.[rw]mem_max, then the plain one, which the kernel caps.
 */
static inline int socket_set_buffer(int fd, int opt, int bytes) {
        int force = opt == SO_RCVBUF ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;

        if (setsockopt(fd, SOL_SOCKET, force, &bytes, sizeof(bytes)) >= 0)
                return 0;
        if (setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes)) < 0)
                return negative_errno();
        return 0;
}

/*
 * Parses a signal as a name ("SIGUSR2", "USR2", "SIGRTMIN+2") or a number. Signals that cannot
 * be caught (SIGKILL, SIGSTOP) are refused with -EINVAL.
 */
static inline int parse_signal(const char *s, int *ret) {
        uint64_t n;
        int sig = -1;

        if (!s || !*s)
                return -EINVAL;

        if (isdigit((unsigned char) *s)) {
                if (parse_u64_range(s, 1, (uint64_t) SIGRTMAX, &n) < 0)
                        return -EINVAL;
                sig = (int) n;
        } else {
                const char *name = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;

                if (strncasecmp(name, "RTMIN+", 6) == 0 || strncasecmp(name, "RTMAX-", 6) == 0) {
                        if (parse_u64_range(name + 6, 0, (uint64_t) (SIGRTMAX - SIGRTMIN), &n) < 0)
                                return -EINVAL;
                        sig = strncasecmp(name, "RTMIN", 5) == 0 ? SIGRTMIN + (int) n
                                                                  : SIGRTMAX - (int) n;
                } else if (strcasecmp(name, "RTMIN") == 0)
                        sig = SIGRTMIN;
                else if (strcasecmp(name, "RTMAX") == 0)
                        sig = SIGRTMAX;
                else
                        for (int i = 1; i < SIGRTMIN; i++) {
                                const char *abbrev = sigabbrev_np(i);

                                if (abbrev && strcasecmp(abbrev, name) == 0) {
                                        sig = i;
                                        break;
                                }
                        }
        }

        if (sig <= 0 || sig > SIGRTMAX || sig == SIGKILL || sig == SIGSTOP)
                return -EINVAL;
        *ret = sig;
        return 0;
}

/* "SIGTERM", or "SIG34" style for signals without a name. Returns buf. */
static inline const char *format_signal(int sig, char *buf, size_t size) {
        const char *abbrev = sig < SIGRTMIN ? sigabbrev_np(sig) : NULL;

        if (abbrev)
                (void) snprintf(buf, size, "SIG%s", abbrev);
        else if (sig >= SIGRTMIN && sig <= SIGRTMAX)
                (void) snprintf(buf, size, "SIGRTMIN+%d", sig - SIGRTMIN);
        else
                (void) snprintf(buf, size, "signal %d", sig);
        return buf;
}
