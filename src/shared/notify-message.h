/* SPDX-License-Identifier: MIT */
/*
 * Parser for sd_notify() datagrams ("READY=1\nSTATUS=...\n"). Library code: does not log.
 * Unknown assignments are counted and ignored (as systemd does), malformed ones are errors.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Bytes in one datagram, as systemd accepts (its NOTIFY_BUFFER_MAX); larger ones are rejected.
 * A STATUS= value may use all of it. */
#define NOTIFY_MESSAGE_MAX 4096U
#define NOTIFY_ADDRESS_MAX 64U     /* bytes of GRM_BIND_ERROR='s address */

typedef struct NotifyMessage {
        bool ready;                   /* READY=1 */
        bool stopping;                /* STOPPING=1 */
        bool reloading;               /* RELOADING=1 */
        char *status;                 /* STATUS= value, NULL if absent */
        int errno_value;              /* ERRNO= value (1..4095), 0 if absent */
        uint64_t extend_timeout_usec; /* EXTEND_TIMEOUT_USEC=, UINT64_MAX if absent */
        pid_t main_pid;               /* MAINPID=, 0 if absent */
        int bind_errno;               /* GRM_BIND_ERROR=ERRNO ADDRESS (from libgrm-bind.so), 0 if absent */
        char *bind_address;           /* its ADDRESS ("tcp:127.0.0.1:8953"), NULL if absent */
        unsigned n_unknown;           /* assignments not understood (ignored) */
} NotifyMessage;

/**
 * notify_message_parse() - parse one notify datagram.
 * @buf: the datagram (not NUL-terminated)
 * @len: its length
 * @ret: filled on success; free with notify_message_done()
 *
 * Lines are "KEY=VALUE" separated by '\n'; empty lines are skipped. READY, STOPPING and
 * RELOADING take "1" (other values are ignored like unknown keys). GRM_BIND_ERROR= is
 * "ERRNO ADDRESS", ADDRESS being 1..NOTIFY_ADDRESS_MAX printable bytes without spaces.
 * Return: 0; -EMSGSIZE if len > NOTIFY_MESSAGE_MAX; -EBADMSG for a NUL
 * byte, a line without '=', an empty key, or an unparsable ERRNO/EXTEND_TIMEOUT_USEC/MAINPID/
 * GRM_BIND_ERROR;
 * -ENOMEM.
 */
int notify_message_parse(const void *buf, size_t len, NotifyMessage *ret);
void notify_message_done(NotifyMessage *m);
