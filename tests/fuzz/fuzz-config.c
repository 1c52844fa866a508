/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the config file parser (src/shared/config.c): config_parse_string() on
 * arbitrary bytes, as grmd does with its --config file at start and at every restart, then
 * config_validate() on what it accepted.
 *
 * Each input is parsed twice: into an empty Config, and on top of a Config that already holds
 * settings (the command line's, as in grmd). Besides "no crash, no leak, no undefined behaviour"
 * (ASan, LSan, UBSan), every input checks:
 *  - a rejected file returns -EINVAL or -E2BIG with a message "NAME:..." made of printable ASCII
 *    only (input quoted into it is stripped of control bytes), and leaves the Config exactly as
 *    it was (all-or-nothing);
 *  - an accepted file returns no message, and every field it set is in its documented range;
 *  - config.c's invariant that an accepted field already passed config_validate()'s checks: with
 *    defaults filled in and a command present, config_validate() only refuses a listen address
 *    given twice (which only it can see).
 * A failed check aborts with a message, which libFuzzer records as a crash.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "macro.h"

#define check(cond, ...)                                                                          \
        do {                                                                                      \
                if (!(cond)) {                                                                    \
                        fprintf(stderr, "fuzz-config: check failed: %s: ", #cond);                \
                        fprintf(stderr, __VA_ARGS__);                                             \
                        fputc('\n', stderr);                                                      \
                        abort();                                                                  \
                }                                                                                 \
        } while (0)

#define NAME "fuzz.conf"

static bool strv_equal(char *const *a, char *const *b) {
        if (!a || !b)
                return a == b;
        for (; *a && *b; a++, b++)
                if (!streq(*a, *b))
                        return false;
        return !*a && !*b;
}

static bool configs_equal(const Config *a, const Config *b) {
        return strv_equal(a->listen, b->listen) && streq_ptr(a->control_path, b->control_path) &&
               a->dissector == b->dissector &&
               a->sockets_per_generation == b->sockets_per_generation &&
               a->receive_buffer == b->receive_buffer && a->flow_table_size == b->flow_table_size &&
               a->flow_timeout_usec == b->flow_timeout_usec &&
               a->start_timeout_usec == b->start_timeout_usec &&
               a->drain_timeout_usec == b->drain_timeout_usec &&
               a->drain_signal == b->drain_signal && a->quic_prefix_set == b->quic_prefix_set &&
               (!a->quic_prefix_set || (a->quic_prefix.len == b->quic_prefix.len &&
                                        memcmp(a->quic_prefix.bytes, b->quic_prefix.bytes, a->quic_prefix.len) == 0)) &&
               a->quic_config_id == b->quic_config_id && strv_equal(a->exec_check, b->exec_check) &&
               streq_ptr(a->user, b->user) && strv_equal(a->command, b->command);
}

/* The command line's settings, as grmd would have them before reading the file. */
static void config_preset(Config *c) {
        config_init(c);
        check(strv_extend(&c->listen, "udp:127.0.0.1:9000") == 0, "out of memory");
        check(strv_extend(&c->command, "/usr/bin/true") == 0, "out of memory");
        c->dissector = 1;
        c->flow_timeout_usec = 5000000;
}

static void check_error_message(const char *error, int r) {
        check(error, "error %d without a message", r);
        check(strncmp(error, NAME ":", strlen(NAME ":")) == 0, "message \"%s\" without the name",
              error);
        for (const char *p = error; *p; p++)
                check(*p >= 0x20 && *p < 0x7f, "unprintable byte 0x%02x in message \"%s\"",
                      (unsigned) (unsigned char) *p, error);
}

static void check_ranges(const Config *c) {
        size_t n = strv_length(c->listen);

        check(n <= CONFIG_LISTEN_MAX, "%zu listen addresses", n);
        for (size_t i = 0; i < n; i++)
                check((strncmp(c->listen[i], "udp:", 4) == 0 || strncmp(c->listen[i], "tcp:", 4) == 0) &&
                      parse_listen_address(c->listen[i], NULL, NULL, NULL) == 0,
                      "listen address \"%s\" stored", c->listen[i]);
        if (c->sockets_per_generation != 0)
                check(c->sockets_per_generation <= CONFIG_SOCKETS_MAX, "%u sockets",
                      c->sockets_per_generation);
        if (c->flow_table_size != 0)
                check(c->flow_table_size >= CONFIG_FLOW_TABLE_MIN &&
                      c->flow_table_size <= CONFIG_FLOW_TABLE_MAX, "flow table size %u",
                      c->flow_table_size);
        if (c->receive_buffer != 0)
                check(c->receive_buffer >= CONFIG_BUFFER_MIN &&
                      c->receive_buffer <= CONFIG_BUFFER_MAX, "receive buffer %llu",
                      (unsigned long long) c->receive_buffer);
        check(c->flow_timeout_usec != 0 && c->start_timeout_usec != 0 && c->drain_timeout_usec != 0,
              "a zero time-out was accepted");
        if (c->command)
                check(c->command[0] && c->command[0][0], "empty command accepted");
        if (c->exec_check)
                check(c->exec_check[0] && c->exec_check[0][0], "empty exec-check accepted");
        if (c->user)
                check(c->user[0], "empty user accepted");
        if (c->control_path)
                check(c->control_path[0] == '/', "relative control socket \"%s\"",
                      c->control_path);
        check(c->dissector >= -1 && c->dissector < (int) _GRM_DISSECTOR_MAX, "dissector %d", c->dissector);
        if (c->quic_prefix_set)
                check(c->quic_prefix.len <= GRM_QUIC_PREFIX_MAX, "prefix of %u octets", c->quic_prefix.len);
        check(c->quic_config_id >= -1 && c->quic_config_id <= (int) QUIC_LB_CONFIG_ID_MAX, "config id %d",
              c->quic_config_id);
        check(c->drain_signal >= 0, "drain signal %d", c->drain_signal);
}

static void parse_one(const uint8_t *data, size_t size, bool preset) {
        _cleanup_(config_done) Config c, before, filled;
        _cleanup_free_ char *error = NULL, *validate_error = NULL;
        int r;

        config_init(&filled);
        if (preset) {
                config_preset(&c);
                config_preset(&before);
        } else {
                config_init(&c);
                config_init(&before);
        }

        r = config_parse_string((const char *) data, size, NAME, &c, &error);
        if (r < 0) {
                check(r == -EINVAL || r == -E2BIG, "unexpected error %d", r);
                check_error_message(error, r);
                check(configs_equal(&c, &before), "a rejected file changed the Config (%s)", error);
                return;
        }
        check(r == 0, "unexpected return value %d", r);
        check(!error, "success with a message \"%s\"", error);
        check_ranges(&c);

        check(config_merge(&filled, &c) == 0, "out of memory");
        config_fill_defaults(&filled);
        r = config_validate(&filled, &validate_error);
        if (r < 0) {
                check(r == -EINVAL && validate_error, "config_validate() returned %d", r);
                check(!filled.command || strstr(validate_error, "given twice"),
                      "accepted by the parser, refused by config_validate(): %s", validate_error);
        } else
                check(filled.command, "config_validate() accepted a config without a command");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        parse_one(data, size, false);
        parse_one(data, size, true);
        return 0;
}
