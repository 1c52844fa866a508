/* SPDX-License-Identifier: MIT */
/*
 * Parser for one sd_notify() datagram, as sent by an application instance to grmd's
 * NOTIFY_SOCKET. The datagram is hostile input: it is bounded (NOTIFY_MESSAGE_MAX), never
 * treated as a C string (no NUL-termination is assumed, a NUL byte is an error), and the only
 * allocation is the STATUS= copy (bounded by the datagram).
 *
 * Invariants: on return *ret is always a valid NotifyMessage that notify_message_done() can free;
 * on failure it is the empty message (nothing allocated). A later assignment of the same key
 * replaces an earlier one, as in systemd.
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "notify-message.h"

#define NOTIFY_ERRNO_MAX 4095U

static void notify_message_init(NotifyMessage *m) {
        *m = (NotifyMessage) {
                .extend_timeout_usec = UINT64_MAX,
        };
}

void notify_message_done(NotifyMessage *m) {
        if (!m)
                return;
        free(m->status);
        free(m->bind_address);
        notify_message_init(m);
}

/* Decimal digits only (no sign, no whitespace), 1..20 of them, value <= max. */
static int parse_decimal(const char *s, size_t n, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (n == 0)
                return -EBADMSG;

        for (size_t i = 0; i < n; i++) {
                unsigned d;

                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
                d = (unsigned) (s[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -EBADMSG;
                v = v * 10 + d;
        }

        if (v > max)
                return -EBADMSG;

        *ret = v;
        return 0;
}

static int key_is(const char *key, size_t key_len, const char *name) {
        size_t n = strlen(name);

        return key_len == n && memcmp(key, name, n) == 0;
}

static int value_is_one(const char *value, size_t value_len) {
        return value_len == 1 && value[0] == '1';
}

static int parse_assignment(NotifyMessage *m, const char *line, size_t line_len) {
        const char *eq, *value;
        size_t key_len, value_len;
        uint64_t u;
        int r;

        eq = memchr(line, '=', line_len);
        if (!eq)
                return -EBADMSG;
        key_len = (size_t) (eq - line);
        if (key_len == 0)
                return -EBADMSG;
        value = eq + 1;
        value_len = line_len - key_len - 1;

        if (key_is(line, key_len, "READY")) {
                if (!value_is_one(value, value_len))
                        goto unknown;
                m->ready = true;

        } else if (key_is(line, key_len, "STOPPING")) {
                if (!value_is_one(value, value_len))
                        goto unknown;
                m->stopping = true;

        } else if (key_is(line, key_len, "RELOADING")) {
                if (!value_is_one(value, value_len))
                        goto unknown;
                m->reloading = true;

        } else if (key_is(line, key_len, "STATUS")) {
                char *s;

                s = strndup(value, value_len);
                if (!s)
                        return -ENOMEM;
                free(m->status);
                m->status = s;

        } else if (key_is(line, key_len, "ERRNO")) {
                r = parse_decimal(value, value_len, NOTIFY_ERRNO_MAX, &u);
                if (r < 0)
                        return r;
                if (u == 0)
                        return -EBADMSG;
                m->errno_value = (int) u;

        } else if (key_is(line, key_len, "EXTEND_TIMEOUT_USEC")) {
                r = parse_decimal(value, value_len, UINT64_MAX, &u);
                if (r < 0)
                        return r;
                m->extend_timeout_usec = u;

        } else if (key_is(line, key_len, "MAINPID")) {
                /* pid_t is a signed 32-bit int on Linux. */
                r = parse_decimal(value, value_len, INT32_MAX, &u);
                if (r < 0)
                        return r;
                if (u == 0)
                        return -EBADMSG;
                m->main_pid = (pid_t) u;

        } else if (key_is(line, key_len, "GRM_BIND_ERROR")) {
                const char *sp = memchr(value, ' ', value_len);
                size_t addr_len;
                char *a;

                if (!sp)
                        return -EBADMSG;
                r = parse_decimal(value, (size_t) (sp - value), NOTIFY_ERRNO_MAX, &u);
                if (r < 0)
                        return r;
                addr_len = value_len - (size_t) (sp - value) - 1;
                if (u == 0 || addr_len == 0 || addr_len > NOTIFY_ADDRESS_MAX)
                        return -EBADMSG;
                for (size_t i = 0; i < addr_len; i++)
                        if (sp[1 + i] <= ' ' || sp[1 + i] >= 0x7f)
                                return -EBADMSG;
                a = strndup(sp + 1, addr_len);
                if (!a)
                        return -ENOMEM;
                free(m->bind_address);
                m->bind_address = a;
                m->bind_errno = (int) u;

        } else
                goto unknown;

        return 0;

unknown:
        m->n_unknown++;
        return 0;
}

int notify_message_parse(const void *buf, size_t len, NotifyMessage *ret) {
        _cleanup_(notify_message_done) NotifyMessage m;
        const char *p = buf, *end;
        int r;

        notify_message_init(&m);
        if (ret)
                notify_message_init(ret);

        if (!ret || (!buf && len > 0))
                return -EINVAL;
        if (len > NOTIFY_MESSAGE_MAX)
                return -EMSGSIZE;
        if (len > 0 && memchr(buf, 0, len))
                return -EBADMSG;

        end = p + len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t line_len = nl ? (size_t) (nl - p) : (size_t) (end - p);

                if (line_len > 0) {
                        r = parse_assignment(&m, p, line_len);
                        if (r < 0)
                                return r;
                }

                p += line_len + (nl ? 1 : 0);
        }

        *ret = m;
        notify_message_init(&m);
        return 0;
}
