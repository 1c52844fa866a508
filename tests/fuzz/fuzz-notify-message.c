/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the sd_notify() datagram parser (src/shared/notify-message.c):
 * notify_message_parse() on arbitrary bytes, as grmd does with every datagram an instance (or
 * anyone who finds the abstract socket) sends to its NOTIFY_SOCKET.
 *
 * Besides "no crash, no leak, no undefined behaviour" (ASan, LSan, UBSan), every input checks:
 *  - a rejected datagram returns -EMSGSIZE or -EBADMSG and leaves the empty message behind
 *    (nothing allocated, every field at its "absent" value), as the header promises;
 *  - an accepted datagram gives fields within their documented ranges: STATUS=
 *    shorter than the datagram, without NUL or newline, ERRNO= 1..4095, MAINPID= positive;
 *  - the parsed message is what the datagram says: writing its fields back as a canonical
 *    datagram and parsing that gives the same fields, with no unknown assignment.
 * A failed check aborts with a message, which libFuzzer records as a crash.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "notify-message.h"

#define check(cond, ...)                                                                          \
        do {                                                                                      \
                if (!(cond)) {                                                                    \
                        fprintf(stderr, "fuzz-notify-message: check failed: %s: ", #cond);        \
                        fprintf(stderr, __VA_ARGS__);                                             \
                        fputc('\n', stderr);                                                      \
                        abort();                                                                  \
                }                                                                                 \
        } while (0)

static bool message_is_empty(const NotifyMessage *m) {
        return !m->ready && !m->stopping && !m->reloading && !m->status && m->errno_value == 0 &&
               m->extend_timeout_usec == UINT64_MAX && m->main_pid == 0 && m->n_unknown == 0;
}

static bool messages_equal(const NotifyMessage *a, const NotifyMessage *b) {
        return a->ready == b->ready && a->stopping == b->stopping && a->reloading == b->reloading &&
               streq_ptr(a->status, b->status) && a->errno_value == b->errno_value &&
               a->extend_timeout_usec == b->extend_timeout_usec && a->main_pid == b->main_pid;
}

/* The canonical datagram for m: one assignment per field that is present. */
static char *format_message(const NotifyMessage *m, size_t *ret_len) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        check(f, "open_memstream: %m");
        if (m->ready)
                fputs("READY=1\n", f);
        if (m->stopping)
                fputs("STOPPING=1\n", f);
        if (m->reloading)
                fputs("RELOADING=1\n", f);
        if (m->status)
                fprintf(f, "STATUS=%s\n", m->status);
        if (m->errno_value != 0)
                fprintf(f, "ERRNO=%d\n", m->errno_value);
        if (m->extend_timeout_usec != UINT64_MAX)
                fprintf(f, "EXTEND_TIMEOUT_USEC=%" PRIu64 "\n", m->extend_timeout_usec);
        if (m->main_pid != 0)
                fprintf(f, "MAINPID=%d\n", (int) m->main_pid);
        check(fclose(f) == 0, "fclose: %m");
        *ret_len = size;
        return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(notify_message_done) NotifyMessage m = {}, m2 = {};
        _cleanup_free_ char *canonical = NULL;
        size_t canonical_len;
        int r;

        r = notify_message_parse(data, size, &m);
        if (r < 0) {
                check(r == -EMSGSIZE || r == -EBADMSG, "unexpected error %d", r);
                check(message_is_empty(&m), "a rejected datagram left fields set");
                if (size > NOTIFY_MESSAGE_MAX)
                        check(r == -EMSGSIZE, "oversized datagram: %d", r);
                return 0;
        }

        check(size <= NOTIFY_MESSAGE_MAX, "accepted %zu bytes", size);
        check(!memchr(data, 0, size), "accepted a NUL byte");
        if (m.status) {
                size_t n = strlen(m.status);

                check(n < size, "STATUS of %zu bytes from %zu", n, size);
                check(!strchr(m.status, '\n'), "STATUS with a newline");
                check(memmem(data, size, m.status, n), "STATUS not taken from the datagram");
        }
        check(m.errno_value >= 0 && m.errno_value <= 4095, "ERRNO=%d", m.errno_value);
        check(m.main_pid >= 0, "MAINPID=%d", (int) m.main_pid);
        if (m.ready)
                check(memmem(data, size, "READY=1", 7), "READY without READY=1");

        /* What was understood survives a round trip through its canonical form. */
        canonical = format_message(&m, &canonical_len);
        r = notify_message_parse(canonical, canonical_len, &m2);
        check(r == 0, "the canonical form \"%s\" does not parse: %d", canonical, r);
        check(messages_equal(&m, &m2), "the canonical form \"%s\" parses differently", canonical);
        check(m2.n_unknown == 0, "the canonical form has unknown assignments");
        return 0;
}
