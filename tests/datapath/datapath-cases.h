/* SPDX-License-Identifier: MIT */
/*
 * What the datapath test programs share besides their set-up (datapath-util.h): the address
 * families and dissector cases they loop over, assertions that name the case, and socket
 * address helpers. Included by each test program once; things a program does not use are
 * marked unused.
 */
#pragma once

#include <arpa/inet.h>
#include <check.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "macro.h"
#include "steering.h"

typedef struct Family {
        const char *name;
        int server_domain;
        const char *server_addr;   /* what the server sockets bind to */
        bool dual_stack;           /* AF_INET6 server socket with IPV6_V6ONLY=0 */
        int client_domain;
        const char *client_addr;   /* what clients bind to and send to */
} Family;

static const Family family_ipv4 = { "ipv4", AF_INET, "127.0.0.1", false, AF_INET, "127.0.0.1" };
static const Family family_ipv6 = { "ipv6", AF_INET6, "::1", false, AF_INET6, "::1" };
static const Family family_dual = { "dual-stack", AF_INET6, "::", true, AF_INET, "127.0.0.1" };

typedef struct Case {
        const char *name;
        const Family *family;
        int dissector;
} Case;

static const Case cases_all[] _unused_ = {
        { "ipv4/none", &family_ipv4, GRM_DISSECTOR_NONE },
        { "ipv4/flow", &family_ipv4, GRM_DISSECTOR_FLOW },
        { "ipv6/none", &family_ipv6, GRM_DISSECTOR_NONE },
        { "ipv6/flow", &family_ipv6, GRM_DISSECTOR_FLOW },
        { "dual-stack/none", &family_dual, GRM_DISSECTOR_NONE },
        { "dual-stack/flow", &family_dual, GRM_DISSECTOR_FLOW },
};

/* For behaviours that only exist with a flow table. */
static const Case cases_flow[] _unused_ = {
        { "ipv4/flow", &family_ipv4, GRM_DISSECTOR_FLOW },
        { "ipv6/flow", &family_ipv6, GRM_DISSECTOR_FLOW },
        { "dual-stack/flow", &family_dual, GRM_DISSECTOR_FLOW },
};

/* Floods come from many IPv4 source addresses: IPv4 and dual-stack groups. */
static const Case cases_flood[] _unused_ = {
        { "ipv4/flow", &family_ipv4, GRM_DISSECTOR_FLOW },
        { "dual-stack/flow", &family_dual, GRM_DISSECTOR_FLOW },
};

static const Case *current_case;

static inline const char *case_name(void) {
        return current_case ? current_case->name : "setup";
}

/* ck_assert_msg() with the case's name in front of the message. */
#define expect(cond, fmt, ...) ck_assert_msg((cond), "[%s] " fmt, case_name(), ##__VA_ARGS__)

#define expect_eq(actual, expected, fmt, ...)                                                     \
        do {                                                                                      \
                uint64_t _actual = (actual), _expected = (expected);                              \
                ck_assert_msg(_actual == _expected,                                               \
                              "[%s] " fmt ": %s is %" PRIu64 ", expected %" PRIu64, case_name(),  \
                              ##__VA_ARGS__, #actual, _actual, _expected);                        \
        } while (0)

static inline socklen_t make_sockaddr(int domain, const char *addr, uint16_t port,
                                      struct sockaddr_storage *ret) {
        memset(ret, 0, sizeof(*ret));
        if (domain == AF_INET) {
                struct sockaddr_in *sin = (struct sockaddr_in *) ret;

                sin->sin_family = AF_INET;
                sin->sin_port = htons(port);
                expect(inet_pton(AF_INET, addr, &sin->sin_addr) == 1, "bad address %s", addr);
                return sizeof(*sin);
        }
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) ret;

        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        expect(inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1, "bad address %s", addr);
        return sizeof(*sin6);
}

static inline uint16_t sockaddr_port(const struct sockaddr_storage *sa) {
        if (sa->ss_family == AF_INET)
                return ntohs(((const struct sockaddr_in *) sa)->sin_port);
        return ntohs(((const struct sockaddr_in6 *) sa)->sin6_port);
}
