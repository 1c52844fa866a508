/* SPDX-License-Identifier: MIT */
/*
 * grmd's settings: the config file (systemd-style INI), the command line, and the parsers for
 * the values both use. A Config holds "unset" markers so the command line can be laid over the
 * file (config_merge) and defaults filled in last (config_fill_defaults).
 *
 * Library code: nothing here logs; errors are returned as negative errno plus, where a human
 * needs more, a malloc'ed message in *ret_error ("FILE:LINE: what is wrong").
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "quic-lb.h"

#define CONFIG_LINE_MAX       4096U     /* longer lines are an error */
#define CONFIG_FILE_MAX       (1U << 20) /* larger files are an error */
#define CONFIG_LISTEN_MAX     32U       /* = GRM_MAX_GROUPS */
#define CONFIG_SOCKETS_MAX    32U       /* = GRM_MAX_SOCKS_PER_GEN */
#define CONFIG_FLOW_TABLE_MIN 1024U
#define CONFIG_FLOW_TABLE_MAX (16U << 20)
#define CONFIG_BUFFER_MIN     4096U
#define CONFIG_BUFFER_MAX     (1U << 30)

#define CONFIG_DEFAULT_FLOW_TABLE_SIZE   65536U
#define CONFIG_DEFAULT_FLOW_TIMEOUT_USEC (125ULL * 1000000ULL)
/* FlowsPerSource=: 0, no quota. A quota counts the entries a source makes per window, so a host
 * with many short flows (a NAT gateway, a load generator on 127.0.0.1) reaches any fixed one;
 * without it no flood moves an existing flow either (docs/BENCHMARKS.md, issue 9). */
#define CONFIG_DEFAULT_FLOWS_PER_SOURCE  0U
#define CONFIG_DEFAULT_START_TIMEOUT_USEC (90ULL * 1000000ULL)
#define CONFIG_DEFAULT_DRAIN_TIMEOUT_USEC (60ULL * 1000000ULL)
#define CONFIG_DEFAULT_SETTLE_USEC        (1ULL * 1000000ULL)
#define CONFIG_SETTLE_USEC_MAX            (3600ULL * 1000000ULL)

/* drain_timeout_usec for "DrainTimeoutSec=infinity" (never kill a draining instance): UINT64_MAX
 * already means "unset", so infinity is the value just below. Deadlines computed from it must
 * saturate instead of overflowing. */
#define CONFIG_DRAIN_TIMEOUT_INFINITY (UINT64_MAX - 1)

typedef struct Config {
        char **listen;                  /* strv of "udp:ADDR:PORT" / "tcp:ADDR:PORT"; NULL = unset */
        char *control_path;             /* NULL = unset */
        int dissector;                  /* enum grm_dissector; -1 = unset */
        unsigned sockets_per_generation; /* 0 = unset */
        uint64_t receive_buffer;        /* SO_RCVBUF of the sockets grmd opens, bytes; 0 = unset */
        unsigned flow_table_size;       /* 0 = unset */
        uint64_t flow_timeout_usec;     /* UINT64_MAX = unset */
        int64_t flows_per_source;       /* FlowsPerSource=, 0 = no quota; -1 = unset */
        QuicLbPrefix quic_prefix;       /* QuicServerIdPrefix=; valid if quic_prefix_set */
        bool quic_prefix_set;
        int quic_config_id;             /* QuicConfigId=, 0..6; -1 = unset */
        uint64_t start_timeout_usec;    /* UINT64_MAX = unset */
        uint64_t drain_timeout_usec;    /* UINT64_MAX = unset */
        uint64_t settle_usec;           /* SettleSec=, 0 allowed (no settle time); UINT64_MAX = unset */
        int drain_signal;               /* 0 = unset */
        char **exec_check;              /* argv; NULL = unset */
        char *user;                     /* NULL = unset (run as grmd's own user) */
        int intercept_bind;             /* InterceptBind=: 1 yes, 0 no; -1 = unset */
        int connect_per_client;         /* ConnectPerClient=: 1 yes, 0 no; -1 = unset */
        char **command;                 /* argv of the application; NULL = unset */
} Config;

/* Sets every field to "unset". */
void config_init(Config *c);
/* Frees what c owns and leaves it unset. Accepts a zeroed or half-filled Config. */
void config_done(Config *c);

/**
 * config_parse_string() - parse config file text into c.
 * @text: the file contents (need not be NUL-terminated beyond @len; NUL bytes are an error)
 * @len: length of @text
 * @name: file name used in error messages
 * @c: settings found are stored here (later keys override earlier ones, Listen= accumulates;
 *     an empty assignment "Listen=" resets the list, "ExecCheck=" unsets it)
 * @ret_error: on failure, a malloc'ed "name:line: message" (may be NULL)
 *
 * Return: 0, or -EINVAL (syntax, unknown section or key, bad value), -E2BIG (too long),
 * -ENOMEM.
 */
int config_parse_string(const char *text, size_t len, const char *name, Config *c, char **ret_error);

/* Reads path (at most CONFIG_FILE_MAX bytes) and parses it as above. -errno when unreadable,
 * with a message in *ret_error. */
int config_parse_file(const char *path, Config *c, char **ret_error);

/* Every field set in src replaces the one in dst (deep copy). Returns 0 or -ENOMEM. */
int config_merge(Config *dst, const Config *src);

/* Fills every unset field except listen, control_path, exec_check, user, command. */
void config_fill_defaults(Config *c);

/* Checks a filled config: a command is set, sizes in range, listen addresses parse. Returns 0
 * or -EINVAL with a message in *ret_error. */
int config_validate(const Config *c, char **ret_error);

/**
 * parse_listen_address() - parse "udp:ADDR:PORT" or "tcp:ADDR:PORT" (no scheme means "udp:").
 * ADDR is an IPv4 address, or an IPv6 address in brackets ("udp:[::1]:53", "tcp:[::]:443");
 * PORT is 1..65535. @ret_type (SOCK_DGRAM or SOCK_STREAM), @ret and @ret_len may be NULL.
 * Return: 0 with the outputs filled, or -EINVAL; -EPROTONOSUPPORT for another scheme ("sctp:").
 */
int parse_listen_address(const char *s, int *ret_type, struct sockaddr_storage *ret, socklen_t *ret_len);

/* "SIGTERM", "TERM", "term" or "15" -> signal number (1..SIGRTMAX). -EINVAL otherwise. */
int parse_signal(const char *s);
/* Signal number -> "SIGTERM"; NULL if unknown. */
const char *signal_to_name(int sig);

/* Time span: "60" (seconds), "1.5", "500ms", "2s", "3min", "1h", "250us", combinations such as
 * "1min 30s", and "infinity". -EINVAL on anything else, -ERANGE on overflow. */
int parse_sec(const char *s, uint64_t *ret_usec);

/* SettleSec=: a time span from 0 up to 1 h (parse_sec() syntax); -ERANGE for infinity or more,
 * -EINVAL for anything that is not a time span. */
int parse_settle(const char *s, uint64_t *ret_usec);

/* systemd's booleans: "yes", "true", "on", "1" -> 1; "no", "false", "off", "0" -> 0 (any case);
 * -EINVAL otherwise. */
int parse_boolean(const char *s);

/* "none" / "flow" / "quic" -> enum grm_dissector; -EINVAL otherwise. */
int dissector_from_string(const char *s);
const char *dissector_to_string(int d);

/* A byte size: decimal with an optional K, M or G suffix (powers of 1024, as systemd's
 * ReceiveBuffer=), within min..max. -EINVAL / -ERANGE. */
int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* Unsigned decimal with range check; -EINVAL / -ERANGE. */
int parse_unsigned(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/**
 * strv_split_quoted() - split a command line into words, as systemd's ExecStart= does:
 * whitespace separates words, "double" and 'single' quotes group, backslash escapes the next
 * character (\n, \t, \\, \", \' and \x hex are understood outside single quotes).
 * Return: 0 with a NULL-terminated malloc'ed array (empty input gives an empty array), or
 * -EINVAL for an unterminated quote or trailing backslash, -ENOMEM.
 */
int strv_split_quoted(const char *s, char ***ret);

/* Duplicates a NULL-terminated array; NULL in gives NULL out with 0. -ENOMEM on failure. */
int strv_copy(char *const *l, char ***ret);
/* Appends a copy of s. */
int strv_extend(char ***l, const char *s);
/* Appends the string printf(3) makes of format and its arguments. */
int strv_extendf(char ***l, const char *format, ...) __attribute__((format(printf, 2, 3)));
