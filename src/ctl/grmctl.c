/* SPDX-License-Identifier: MIT */
/*
 * grmctl: the operator's and config management's client of grmd's control socket. One
 * function per verb; the verb table is also the help. Exit codes are the GrmOutcome values
 * (documented in --help and docs/PROTOCOL.md).
 */
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <systemd/sd-bus.h>

#include "config.h"
#include "ctl-protocol.h"
#include "macro.h"

static const char *arg_socket = NULL;
static const char *arg_unit = NULL;
static bool arg_json = false;
static uint64_t arg_timeout_usec = 0; /* 0: grmd's start timeout */

typedef struct Verb {
        const char *name;
        int (*run)(int argc, char *argv[]);
        const char *help;
} Verb;

static int verb_restart(int argc, char *argv[]);
static int verb_status(int argc, char *argv[]);
static int verb_metrics(int argc, char *argv[]);
static int verb_reexec(int argc, char *argv[]);

static const Verb verbs[] = {
        { "restart", verb_restart, "start a new generation, wait until it works or fails" },
        { "status", verb_status, "show groups, generations and counters" },
        { "metrics", verb_metrics, "print the counters in the Prometheus text format" },
        { "reexec", verb_reexec, "run grmd's binary again in place, keeping every instance" },
};

static void help(void) {
        printf("Usage: grmctl [OPTIONS] VERB\n\n"
               "Control grmd, the UDP zero-downtime restart supervisor.\n\n"
               "Verbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                printf("  %-10s %s\n", verbs[i].name, verbs[i].help);
        printf("\nOptions:\n"
               "  -s --socket PATH   grmd's control socket (default $GRM_SOCKET, else\n"
               "                     $RUNTIME_DIRECTORY/grmd.sock)\n"
               "  -u --unit NAME     the grmd of service NAME: /run/DIR/grmd.sock, DIR its\n"
               "                     RuntimeDirectory= (asked from systemd), else NAME\n"
               "  -t --timeout SEC   restart: time the new instance has to become ready\n"
               "                     (default: grmd's --start-timeout)\n"
               "  -j --json          machine-readable output\n"
               "  -h --help          show this help\n"
               "     --version       show the version\n\n"
               "Exit codes:\n"
               "  0  done: the new generation is working\n"
               "  1  internal error\n"
               "  2  usage error\n"
               "  3  grmd unreachable, or permission denied\n"
               "  4  configuration or --exec-check rejected; nothing changed\n"
               "  5  new instance failed before it was ready; rolled back\n"
               "  6  new instance not ready in time; rolled back\n"
               "  7  another restart is in progress\n");
}

static void json_string(FILE *f, const char *s) {
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *) strempty(s); *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p < 0x20 || *p == 0x7f)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
        fputc('"', f);
}

/* A value that is all digits is written as a number, anything else as a string. */
static void json_value(FILE *f, const char *v) {
        bool numeric = v && *v && strlen(v) < 20;
        for (const char *p = v; numeric && *p; p++)
                numeric = *p >= '0' && *p <= '9';
        if (numeric && !(v[0] == '0' && v[1]))
                fputs(v, f);
        else
                json_string(f, v);
}

static void json_record(FILE *f, const CtlRecord *r, const char *skip) {
        bool first = true;

        fputc('{', f);
        for (size_t i = 0; i < r->n_fields; i++) {
                if (skip && streq(r->fields[i].key, skip))
                        continue;
                if (!first)
                        fputc(',', f);
                first = false;
                json_string(f, r->fields[i].key);
                fputc(':', f);
                json_value(f, r->fields[i].value);
        }
        fputc('}', f);
}

/* The unit's first RuntimeDirectory=, from systemd over D-Bus. -errno when systemd does not
 * answer (no bus: a container, a test) or the unit has none. */
static int unit_runtime_directory(const char *unit, char **ret) {
        _cleanup_free_ char *service = NULL, *object = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = NULL;
        char **dirs = NULL;
        size_t n = strlen(unit);
        int r;

        if (n > 8 && streq(unit + n - 8, ".service"))
                service = strdup(unit);
        else if (asprintf(&service, "%s.service", unit) < 0)
                service = NULL;
        if (!service)
                return -ENOMEM;
        /* As root, systemd's own socket, as systemctl does: it answers without a D-Bus broker
         * (a minimal system, a container). Otherwise, or if that fails, the system bus. */
        if (geteuid() == 0 && access("/run/systemd/private", F_OK) == 0) {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, "unix:path=/run/systemd/private");
                if (r >= 0)
                        r = sd_bus_start(bus);
                if (r < 0)
                        bus = sd_bus_flush_close_unref(bus);
        }
        if (!bus) {
                r = sd_bus_open_system(&bus);
                if (r < 0)
                        return r;
        }
        /* A status query must not hang for D-Bus's default 25 s. */
        (void) sd_bus_set_method_call_timeout(bus, 2 * USEC_PER_SEC);
        r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", service, &object);
        if (r >= 0)
                r = sd_bus_get_property_strv(bus, "org.freedesktop.systemd1", object,
                                             "org.freedesktop.systemd1.Service", "RuntimeDirectory",
                                             &error, &dirs);
        sd_bus_error_free(&error);
        sd_bus_flush_close_unref(bus);
        if (r < 0)
                return r;
        if (!dirs || !dirs[0]) {
                strv_free(dirs);
                return -ENOENT;
        }
        *ret = strdup(dirs[0]);
        strv_free(dirs);
        return *ret ? 0 : -ENOMEM;
}

static int unit_socket_path(const char *unit, char **ret) {
        _cleanup_free_ char *dir = NULL;
        int r;

        (void) unit_runtime_directory(unit, &dir);
        r = ctl_unit_socket_path(unit, dir, ret);
        if (r == -EINVAL)
                fprintf(stderr, "grmctl: invalid unit name '%s' (a service, such as grm-echo or grm-echo.service).\n",
                        unit);
        return r;
}

static int connect_grmd_full(int *ret_fd, bool quiet) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_free_ char *derived = NULL;
        const char *path = arg_socket;

        if (!path && arg_unit) {
                int r = unit_socket_path(arg_unit, &derived);
                if (r < 0)
                        return r == -EINVAL ? GRM_OUTCOME_USAGE : GRM_OUTCOME_INTERNAL;
                path = derived;
        }
        if (!path)
                path = getenv("GRM_SOCKET");
        if (!path) {
                int r = ctl_default_socket_path(&derived);
                if (r == -ENXIO) {
                        fprintf(stderr, "grmctl: no control socket: give --unit NAME or --socket PATH (or set $GRM_SOCKET).\n");
                        return GRM_OUTCOME_USAGE;
                }
                if (r < 0)
                        return GRM_OUTCOME_INTERNAL;
                path = derived;
        }
        if (strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "grmctl: socket path too long: %s\n", path);
                return GRM_OUTCOME_USAGE;
        }
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                fprintf(stderr, "grmctl: socket: %s\n", strerror(errno));
                return GRM_OUTCOME_INTERNAL;
        }
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                if (!quiet)
                        fprintf(stderr, "grmctl: cannot reach grmd at %s: %s\n", path, strerror(errno));
                return quiet ? -errno : GRM_OUTCOME_UNREACHABLE;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int connect_grmd(int *ret_fd) {
        return connect_grmd_full(ret_fd, false);
}

/* For polling: negative errno instead of a message and an exit code. */
static int connect_grmd_quiet(int *ret_fd) {
        int r = connect_grmd_full(ret_fd, true);
        return r > 0 ? -EINVAL : r;
}

static int send_request(int fd, const char *verb) {
        _cleanup_free_ char *buf = NULL;
        CtlWriter w;
        size_t len;
        int r;

        ctl_writer_init(&w);
        ctl_writer_record(&w, "request");
        ctl_writer_add_u64(&w, "version", GRM_CTL_PROTOCOL_VERSION);
        ctl_writer_add(&w, "verb", verb);
        if (arg_timeout_usec > 0 && streq(verb, "restart"))
                ctl_writer_add_u64(&w, "timeout_usec", arg_timeout_usec);
        r = ctl_writer_finish(&w, &buf, &len);
        ctl_writer_done(&w);
        if (r < 0)
                return r;
        if (send(fd, buf, len, MSG_NOSIGNAL) < 0)
                return negative_errno();
        return 0;
}

/* Receives one message; -ECONNRESET when grmd closed the connection. timeout_ms < 0: wait. */
static int receive_message(int fd, int timeout_ms, CtlMessage **ret) {
        _cleanup_free_ char *buf = malloc(GRM_CTL_MESSAGE_MAX + 1);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t n;
        int r;

        if (!buf)
                return -ENOMEM;
        r = poll(&p, 1, timeout_ms);
        if (r < 0)
                return negative_errno();
        if (r == 0)
                return -ETIMEDOUT;
        n = recv(fd, buf, GRM_CTL_MESSAGE_MAX + 1, MSG_TRUNC);
        if (n < 0 && errno == ECONNRESET)
                /* grmd closed before reading our request (it refused us): the error is reported
                 * first, its reply can still be queued behind it. */
                n = recv(fd, buf, GRM_CTL_MESSAGE_MAX + 1, MSG_TRUNC | MSG_DONTWAIT);
        if (n < 0)
                return errno == ECONNRESET || errno == EAGAIN ? -ECONNRESET : negative_errno();
        if (n == 0)
                return -ECONNRESET;
        if ((size_t) n > GRM_CTL_MESSAGE_MAX)
                return -EMSGSIZE;
        return ctl_message_parse(buf, (size_t) n, GRM_CTL_MESSAGE_MAX, ret);
}

static int outcome_of(const CtlRecord *r) {
        uint64_t code;

        if (ctl_record_get_u64(r, "code", &code) < 0 || code >= _GRM_OUTCOME_MAX)
                return GRM_OUTCOME_INTERNAL;
        return (int) code;
}

static int report_send_failure(int fd, int error);

static int verb_restart(int argc, char *argv[]) {
        _cleanup_close_ int fd = -EBADF;
        int r, timeout_ms = -1;
        bool first_step = true;

        r = connect_grmd(&fd);
        if (r != 0)
                return r;
        r = send_request(fd, "restart");
        if (r < 0)
                return report_send_failure(fd, r);
        /* grmd always answers (its start timeout bounds a restart); with --timeout we also
         * stop waiting a little after that, in case grmd itself is stuck. */
        if (arg_timeout_usec > 0)
                timeout_ms = (int) (arg_timeout_usec / 1000 + 30000);

        if (arg_json)
                printf("{\"steps\":[");
        for (;;) {
                _cleanup_(ctl_message_freep) CtlMessage *msg = NULL;
                const CtlRecord *rec;

                r = receive_message(fd, timeout_ms, &msg);
                if (r == -ETIMEDOUT) {
                        fprintf(stderr, "grmctl: no answer from grmd in time.\n");
                        return GRM_OUTCOME_INTERNAL;
                }
                if (r < 0) {
                        if (arg_json)
                                printf("]}\n");
                        fprintf(stderr, "grmctl: grmd closed the connection without a result%s%s\n",
                                r == -ECONNRESET ? "" : ": ", r == -ECONNRESET ? "." : strerror(-r));
                        return GRM_OUTCOME_INTERNAL;
                }
                if ((rec = ctl_message_find(msg, "progress"))) {
                        if (arg_json) {
                                if (!first_step)
                                        putchar(',');
                                json_record(stdout, rec, NULL);
                        } else {
                                uint64_t us = 0;
                                (void) ctl_record_get_u64(rec, "elapsed_usec", &us);
                                printf("[%4" PRIu64 ".%03" PRIu64 "s] %s: %s\n", us / 1000000, (us / 1000) % 1000,
                                       strempty(ctl_record_get(rec, "step")),
                                       strempty(ctl_record_get(rec, "message")));
                        }
                        first_step = false;
                        fflush(stdout);
                        continue;
                }
                rec = ctl_message_find(msg, "result");
                if (!rec)
                        rec = ctl_message_find(msg, "error");
                if (!rec) {
                        fprintf(stderr, "grmctl: unexpected message from grmd.\n");
                        return GRM_OUTCOME_INTERNAL;
                }
                r = outcome_of(rec);
                if (arg_json) {
                        printf("],\"result\":");
                        json_record(stdout, rec, NULL);
                        printf("}\n");
                } else if (r == GRM_OUTCOME_DONE) {
                        uint64_t ready = 0;
                        (void) ctl_record_get_u64(rec, "ready_usec", &ready);
                        printf("restarted: generation %s (pid %s) working, ready after %" PRIu64 ".%03" PRIu64 " s\n",
                               strempty(ctl_record_get(rec, "generation")), strempty(ctl_record_get(rec, "pid")),
                               ready / 1000000, (ready / 1000) % 1000);
                } else
                        fprintf(stderr, "grmctl: restart %s: %s\n", grm_outcome_to_string(r),
                                strempty(ctl_record_get(rec, "message")));
                return r;
        }
}

/* grmd may refuse us (wrong uid) and close before our request is sent: its reason is queued. */
static int report_send_failure(int fd, int error) {
        _cleanup_(ctl_message_freep) CtlMessage *msg = NULL;
        const CtlRecord *rec;

        if (receive_message(fd, 0, &msg) >= 0 && (rec = ctl_message_find(msg, "error"))) {
                fprintf(stderr, "grmctl: %s\n", strempty(ctl_record_get(rec, "message")));
                return outcome_of(rec);
        }
        fprintf(stderr, "grmctl: failed to send request: %s\n", strerror(-error));
        return GRM_OUTCOME_UNREACHABLE;
}

/* Sends a one-verb request and returns grmd's single reply message. */
static int request_reply(const char *verb, CtlMessage **ret) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        r = connect_grmd(&fd);
        if (r != 0)
                return r;
        r = send_request(fd, verb);
        if (r < 0)
                return report_send_failure(fd, r);
        r = receive_message(fd, 10000, ret);
        if (r < 0) {
                fprintf(stderr, "grmctl: no answer from grmd: %s\n", strerror(-r));
                return GRM_OUTCOME_UNREACHABLE;
        }
        return 0;
}

/* grmd's status reply and its "status" record; prints why and returns an exit code if none. */
static int fetch_status(CtlMessage **ret_msg, const CtlRecord **ret_status) {
        const CtlRecord *st, *e;
        int r;

        r = request_reply("status", ret_msg);
        if (r != 0)
                return r;
        st = ctl_message_find(*ret_msg, "status");
        if (!st) {
                e = ctl_message_find(*ret_msg, "error");
                fprintf(stderr, "grmctl: %s\n", e ? strempty(ctl_record_get(e, "message")) : "unexpected reply from grmd");
                return e ? outcome_of(e) : GRM_OUTCOME_INTERNAL;
        }
        *ret_status = st;
        return 0;
}

static int verb_reexec(int argc, char *argv[]) {
        _cleanup_(ctl_message_freep) CtlMessage *msg = NULL;
        const CtlRecord *rec;
        int r;

        r = request_reply("reexec", &msg);
        if (r != 0)
                return r;
        rec = ctl_message_find(msg, "result");
        if (!rec)
                rec = ctl_message_find(msg, "error");
        if (!rec) {
                fprintf(stderr, "grmctl: unexpected reply from grmd.\n");
                return GRM_OUTCOME_INTERNAL;
        }
        r = outcome_of(rec);
        if (r != GRM_OUTCOME_DONE) {
                fprintf(stderr, "grmctl: reexec %s: %s\n", grm_outcome_to_string(r), strempty(ctl_record_get(rec, "message")));
                return r;
        }
        /* Wait until the new image answers (it takes over before it listens). */
        for (int i = 0; i < 200; i++) {
                _cleanup_(ctl_message_freep) CtlMessage *st = NULL;
                _cleanup_close_ int fd = -EBADF;
                const CtlRecord *s;

                usleep(50 * 1000);
                if (connect_grmd_quiet(&fd) < 0 || send_request(fd, "status") < 0 ||
                    receive_message(fd, 2000, &st) < 0 || !(s = ctl_message_find(st, "status")))
                        continue;
                if (arg_json)
                        printf("{\"outcome\":\"done\",\"pid\":%s,\"working\":%s}\n",
                               strempty(ctl_record_get(s, "pid")), strempty(ctl_record_get(s, "working")));
                else
                        printf("grmd re-executed (pid %s), working generation %s\n",
                               strempty(ctl_record_get(s, "pid")), strempty(ctl_record_get(s, "working")));
                return GRM_OUTCOME_DONE;
        }
        fprintf(stderr, "grmctl: grmd did not come back after re-executing.\n");
        return GRM_OUTCOME_INTERNAL;
}

/* Prometheus text exposition format, from the status reply. */
static int verb_metrics(int argc, char *argv[]) {
        _cleanup_(ctl_message_freep) CtlMessage *msg = NULL;
        const CtlRecord *st;
        int r;

        r = fetch_status(&msg, &st);
        if (r != 0)
                return r;

        static const struct {
                const char *key, *name, *type, *help;
                double scale;
        } scalars[] = {
                { "working", "grm_working_generation", "gauge", "Generation that receives new flows (0: none).", 1 },
                { "restarts_done", "grm_restarts_succeeded_total", "counter", "Restarts that made a new generation the working one.", 1 },
                { "restarts_failed", "grm_restarts_failed_total", "counter", "Restarts that were rejected, failed or timed out.", 1 },
                { "flip_latency_usec", "grm_flip_latency_seconds", "gauge", "Last restart: READY=1 read to working generation flipped.", 1e-6 },
                { "notify_ignored", "grm_notify_ignored_total", "counter", "Notify datagrams from pids outside every generation.", 1 },
                { "notify_malformed", "grm_notify_malformed_total", "counter", "Notify datagrams that did not parse.", 1 },
                { "notify_oversized", "grm_notify_oversized_total", "counter", "Notify datagrams over 4096 bytes from an instance.", 1 },
                { "notify_log_suppressed", "grm_notify_log_suppressed_total", "counter", "Warnings about the notify socket not logged (rate limit).", 1 },
                { "control_refused", "grm_control_refused_total", "counter", "Control connections refused for their uid.", 1 },
                { "control_malformed", "grm_control_malformed_total", "counter", "Malformed control requests.", 1 },
                { "control_log_suppressed", "grm_control_log_suppressed_total", "counter", "Warnings about control connections not logged (rate limit).", 1 },
                { "flow_entries", "grm_flow_table_entries", "gauge", "Entries in the flow table.", 1 },
                { "flow_table_size", "grm_flow_table_size", "gauge", "Capacity of the flow table.", 1 },
                { "flows_per_source", "grm_flows_per_source", "gauge", "Flow entries one address (IPv6: /64) may make per flow timeout (0: no quota).", 1 },
                { "uptime_usec", "grm_uptime_seconds", "gauge", "Time since grmd started.", 1e-6 },
        };
        for (size_t i = 0; i < ELEMENTSOF(scalars); i++) {
                uint64_t v;
                if (ctl_record_get_u64(st, scalars[i].key, &v) < 0)
                        continue;
                printf("# HELP %s %s\n# TYPE %s %s\n", scalars[i].name, scalars[i].help, scalars[i].name, scalars[i].type);
                if (scalars[i].scale == 1)
                        printf("%s %" PRIu64 "\n", scalars[i].name, v);
                else
                        printf("%s %.6f\n", scalars[i].name, (double) v * scalars[i].scale);
        }

        printf("# HELP grm_steering_packets_total Packets (UDP) and connections or migrated requests (tcp_*) by steering verdict.\n# TYPE grm_steering_packets_total counter\n");
        for (size_t i = 0; i < msg->n_records; i++)
                if (streq(msg->records[i].type, "counter"))
                        printf("grm_steering_packets_total{verdict=\"%s\"} %s\n",
                               strempty(ctl_record_get(&msg->records[i], "name")),
                               strempty(ctl_record_get(&msg->records[i], "value")));
        printf("# HELP grm_group_flows Live flow entries per address.\n# TYPE grm_group_flows gauge\n");
        for (size_t i = 0; i < msg->n_records; i++)
                if (streq(msg->records[i].type, "group") && ctl_record_get(&msg->records[i], "flows"))
                        printf("grm_group_flows{address=\"%s\"} %s\n",
                               strempty(ctl_record_get(&msg->records[i], "address")),
                               ctl_record_get(&msg->records[i], "flows"));
        printf("# HELP grm_group_steering_foreign_total Times a group's reuseport program was found not to be grm's (then attached again).\n# TYPE grm_group_steering_foreign_total counter\n");
        for (size_t i = 0; i < msg->n_records; i++)
                if (streq(msg->records[i].type, "group") && ctl_record_get(&msg->records[i], "steering_foreign"))
                        printf("grm_group_steering_foreign_total{address=\"%s\"} %s\n",
                               strempty(ctl_record_get(&msg->records[i], "address")),
                               ctl_record_get(&msg->records[i], "steering_foreign"));
        {
                const char *census = ctl_record_get(st, "census");
                static const struct {
                        const char *key, *name, *help;
                } per_group[] = {
                        { "census_outside", "grm_group_census_outside_sockets",
                          "Sockets on a group's address outside grm's reuseport groups (UDP not connected, TCP listening), last census." },
                        { "census_connected_reuseport", "grm_group_census_connected_reuseport_sockets",
                          "Connected UDP sockets on a group's address that kept SO_REUSEPORT (set ConnectPerClient=yes), last census." },
                        { "census_connected", "grm_group_census_connected_sockets",
                          "Connected UDP sockets on a group's address (per-client sockets), last census." },
                };

                printf("# HELP grm_census_available Whether grmd can take the socket census (1) or not (0: see grmctl status).\n"
                       "# TYPE grm_census_available gauge\ngrm_census_available %d\n",
                       census && streq(census, "active"));
                if (ctl_record_get(st, "census_scans"))
                        printf("# HELP grm_census_scans_total Socket censuses taken.\n# TYPE grm_census_scans_total counter\n"
                               "grm_census_scans_total %s\n", ctl_record_get(st, "census_scans"));
                if (ctl_record_get(st, "census_scan_errors"))
                        printf("# HELP grm_census_scan_errors_total Socket censuses that failed.\n"
                               "# TYPE grm_census_scan_errors_total counter\ngrm_census_scan_errors_total %s\n",
                               ctl_record_get(st, "census_scan_errors"));
                for (size_t k = 0; k < ELEMENTSOF(per_group); k++) {
                        printf("# HELP %s %s\n# TYPE %s gauge\n", per_group[k].name, per_group[k].help, per_group[k].name);
                        for (size_t i = 0; i < msg->n_records; i++) {
                                const CtlRecord *g = &msg->records[i];
                                const char *v;
                                if (streq(g->type, "group") && (v = ctl_record_get(g, per_group[k].key)))
                                        printf("%s{address=\"%s\"} %s\n", per_group[k].name,
                                               strempty(ctl_record_get(g, "address")), v);
                        }
                }
        }
        printf("# HELP grm_generation_packets_total Packets steered to a generation.\n# TYPE grm_generation_packets_total counter\n");
        for (size_t i = 0; i < msg->n_records; i++) {
                const CtlRecord *g = &msg->records[i];
                if (streq(g->type, "generation"))
                        printf("grm_generation_packets_total{generation=\"%s\",state=\"%s\"} %s\n",
                               strempty(ctl_record_get(g, "generation")), strempty(ctl_record_get(g, "state")),
                               strempty(ctl_record_get(g, "packets")));
        }
        static const struct {
                const char *key, *name, *type, *help;
        } per_generation[] = {
                { "unread_sockets", "grm_generation_unread_sockets", "gauge",
                  "UDP sockets of a generation whose queue holds data and does not shrink: not read." },
                { "queued_bytes", "grm_generation_queued_bytes", "gauge",
                  "Bytes waiting in a generation's UDP sockets' receive queues." },
                { "socket_drops", "grm_generation_socket_drops_total", "counter",
                  "Datagrams the kernel dropped on a generation's UDP sockets (queue full)." },
                { "connections", "grm_generation_tcp_connections_total", "counter",
                  "New TCP connections steered to a generation's listeners." },
                { "migrated", "grm_generation_tcp_migrated_total", "counter",
                  "TCP requests moved into a generation's listeners from closing ones." },
        };
        for (size_t k = 0; k < ELEMENTSOF(per_generation); k++) {
                printf("# HELP %s %s\n# TYPE %s %s\n", per_generation[k].name, per_generation[k].help,
                       per_generation[k].name, per_generation[k].type);
                for (size_t i = 0; i < msg->n_records; i++) {
                        const CtlRecord *g = &msg->records[i];
                        const char *v;
                        if (streq(g->type, "generation") && (v = ctl_record_get(g, per_generation[k].key)))
                                printf("%s{generation=\"%s\"} %s\n", per_generation[k].name,
                                       strempty(ctl_record_get(g, "generation")), v);
                }
        }
        printf("# HELP grm_generation_cpu_seconds_total CPU time of a generation's cgroup.\n# TYPE grm_generation_cpu_seconds_total counter\n");
        for (size_t i = 0; i < msg->n_records; i++) {
                const CtlRecord *g = &msg->records[i];
                uint64_t v;
                if (streq(g->type, "generation") && ctl_record_get_u64(g, "cpu_usec", &v) == 0)
                        printf("grm_generation_cpu_seconds_total{generation=\"%s\"} %.6f\n",
                               strempty(ctl_record_get(g, "generation")), (double) v / 1e6);
        }
        printf("# HELP grm_generation_memory_bytes Memory of a generation's cgroup (where the memory controller is on cgroup v2).\n# TYPE grm_generation_memory_bytes gauge\n");
        for (size_t i = 0; i < msg->n_records; i++) {
                const CtlRecord *g = &msg->records[i];
                if (streq(g->type, "generation") && ctl_record_get(g, "memory_bytes"))
                        printf("grm_generation_memory_bytes{generation=\"%s\"} %s\n",
                               strempty(ctl_record_get(g, "generation")), ctl_record_get(g, "memory_bytes"));
        }
        printf("# HELP grm_generation_ready_seconds Spawn to READY=1 of a generation.\n# TYPE grm_generation_ready_seconds gauge\n");
        for (size_t i = 0; i < msg->n_records; i++) {
                const CtlRecord *g = &msg->records[i];
                uint64_t v;
                if (streq(g->type, "generation") && ctl_record_get_u64(g, "ready_usec", &v) == 0)
                        printf("grm_generation_ready_seconds{generation=\"%s\"} %.6f\n",
                               strempty(ctl_record_get(g, "generation")), (double) v / 1e6);
        }
        return 0;
}

static void print_duration(uint64_t usec) {
        if (usec >= 3600 * USEC_PER_SEC)
                printf("%" PRIu64 "h%02" PRIu64 "m", usec / (3600 * USEC_PER_SEC), usec / (60 * USEC_PER_SEC) % 60);
        else if (usec >= 60 * USEC_PER_SEC)
                printf("%" PRIu64 "m%02" PRIu64 "s", usec / (60 * USEC_PER_SEC), usec / USEC_PER_SEC % 60);
        else
                printf("%" PRIu64 ".%01" PRIu64 "s", usec / USEC_PER_SEC, usec / 100000 % 10);
}

/* The socket census: its state, then the sockets it reports, if any. */
static void print_census(const CtlMessage *msg, const CtlRecord *st) {
        const char *census = ctl_record_get(st, "census");
        uint64_t listed = 0, omitted = 0;

        if (!census)
                return;
        if (!streq(census, "active")) {
                printf("census: %s (%s)\n", census, strempty(ctl_record_get(st, "census_error")));
                return;
        }
        (void) ctl_record_get_u64(st, "census_sockets", &listed);
        (void) ctl_record_get_u64(st, "census_sockets_omitted", &omitted);
        printf("census: %s scans, %" PRIu64 " socket%s outside the steered groups or connected with SO_REUSEPORT%s%s\n",
               strempty(ctl_record_get(st, "census_scans")), listed, listed == 1 ? "" : "s",
               ctl_record_get(st, "census_error") ? "; last scan failed: " : "",
               strempty(ctl_record_get(st, "census_error")));
        if (listed == 0)
                return;
        printf("\n%-20s %-26s %-24s %-7s %-18s %s\n", "SOCKET", "GROUP", "LOCAL", "UID", "PID", "NOTE");
        for (size_t i = 0; i < msg->n_records; i++) {
                const CtlRecord *r = &msg->records[i];
                const char *verdict, *gen;
                char pid[48];

                if (!streq(r->type, "census_socket"))
                        continue;
                verdict = strempty(ctl_record_get(r, "verdict"));
                gen = ctl_record_get(r, "generation");
                if (ctl_record_get(r, "pid"))
                        snprintf(pid, sizeof(pid), "%s%s%s%s", ctl_record_get(r, "pid"), ctl_record_get(r, "comm") ? " (" : "",
                                 strempty(ctl_record_get(r, "comm")), ctl_record_get(r, "comm") ? ")" : "");
                else
                        snprintf(pid, sizeof(pid), "-");
                printf("%-20s %-26s %-24s %-7s %-18s ", streq(verdict, "outside") ? "OUTSIDE" : "CONNECTED+REUSEPORT",
                       strempty(ctl_record_get(r, "group")), strempty(ctl_record_get(r, "local")),
                       strempty(ctl_record_get(r, "uid")), pid);
                if (streq(verdict, "outside"))
                        printf("not steered by grm%s%s%s\n", gen ? " (generation " : "", strempty(gen), gen ? "'s socket)" : "");
                else
                        printf("peer %s; set ConnectPerClient=yes\n", strempty(ctl_record_get(r, "remote")));
        }
        if (omitted > 0)
                printf("(%" PRIu64 " more not listed)\n", omitted);
}

static int verb_status(int argc, char *argv[]) {
        _cleanup_(ctl_message_freep) CtlMessage *msg = NULL;
        const CtlRecord *st;
        int r;

        r = fetch_status(&msg, &st);
        if (r != 0)
                return r;

        if (arg_json) {
                static const char *const lists[][2] = {
                        { "group", "groups" }, { "generation", "generations" },
                        { "census_socket", "census_sockets" },
                };
                printf("{\"grmd\":");
                json_record(stdout, st, NULL);
                for (size_t l = 0; l < ELEMENTSOF(lists); l++) {
                        bool first = true;
                        printf(",\"%s\":[", lists[l][1]);
                        for (size_t i = 0; i < msg->n_records; i++)
                                if (streq(msg->records[i].type, lists[l][0])) {
                                        if (!first)
                                                putchar(',');
                                        first = false;
                                        json_record(stdout, &msg->records[i], NULL);
                                }
                        putchar(']');
                }
                printf(",\"counters\":{");
                bool first = true;
                for (size_t i = 0; i < msg->n_records; i++)
                        if (streq(msg->records[i].type, "counter")) {
                                if (!first)
                                        putchar(',');
                                first = false;
                                json_string(stdout, ctl_record_get(&msg->records[i], "name"));
                                putchar(':');
                                json_value(stdout, ctl_record_get(&msg->records[i], "value"));
                        }
                printf("}}\n");
                return 0;
        }

        uint64_t up = 0;
        (void) ctl_record_get_u64(st, "uptime_usec", &up);
        printf("grmd pid %s, up ", strempty(ctl_record_get(st, "pid")));
        print_duration(up);
        printf(", working generation %s, restart %s%s\n", strempty(ctl_record_get(st, "working")),
               strempty(ctl_record_get(st, "restart")),
               streq_ptr(ctl_record_get(st, "stopping"), "yes") ? ", stopping" : "");
        if (ctl_record_get(st, "not_supervising"))
                printf("NOT SUPERVISING: %s\n", ctl_record_get(st, "not_supervising"));
        printf("restarts: %s done, %s failed; flow table %s/%s entries\n",
               strempty(ctl_record_get(st, "restarts_done")), strempty(ctl_record_get(st, "restarts_failed")),
               strempty(ctl_record_get(st, "flow_entries")), strempty(ctl_record_get(st, "flow_table_size")));
        printf("notify: %s ignored, %s malformed, %s oversized, %s warnings suppressed; "
               "control: %s refused, %s malformed, %s warnings suppressed\n",
               strempty(ctl_record_get(st, "notify_ignored")), strempty(ctl_record_get(st, "notify_malformed")),
               strempty(ctl_record_get(st, "notify_oversized")), strempty(ctl_record_get(st, "notify_log_suppressed")),
               strempty(ctl_record_get(st, "control_refused")), strempty(ctl_record_get(st, "control_malformed")),
               strempty(ctl_record_get(st, "control_log_suppressed")));
        if (streq_ptr(ctl_record_get(st, "intercept_bind"), "yes") || streq_ptr(ctl_record_get(st, "connect_per_client"), "yes"))
                printf("instances: %s%s%s (libgrm-bind.so)\n",
                       streq_ptr(ctl_record_get(st, "intercept_bind"), "yes") ? "bind intercepted" : "",
                       streq_ptr(ctl_record_get(st, "intercept_bind"), "yes") &&
                                       streq_ptr(ctl_record_get(st, "connect_per_client"), "yes") ? ", " : "",
                       streq_ptr(ctl_record_get(st, "connect_per_client"), "yes") ? "a connected socket per client" : "");
        if (ctl_record_get(st, "quic_config_id"))
                printf("quic: new generations get config id %s, server ID prefix \"%s\"\n",
                       ctl_record_get(st, "quic_config_id"), strempty(ctl_record_get(st, "quic_server_id_prefix")));
        printf("\n%-5s %-32s %-10s %-9s %-8s %s\n", "GROUP", "ADDRESS", "NAME", "DISSECTOR", "FLOWS", "STEERING");
        for (size_t i = 0; i < msg->n_records; i++) {
                const CtlRecord *g = &msg->records[i];
                uint64_t foreign = 0;
                if (!streq(g->type, "group"))
                        continue;
                /* A TCP group has no dissector and no flows: its connections are the instances'. */
                printf("%-5s %-32s %-10s %-9s %-8s %s", strempty(ctl_record_get(g, "index")),
                       strempty(ctl_record_get(g, "address")), strempty(ctl_record_get(g, "name")),
                       ctl_record_get(g, "dissector") ?: "-", ctl_record_get(g, "flows") ?: "-",
                       ctl_record_get(g, "steering") ?: "-");
                if (ctl_record_get_u64(g, "steering_foreign", &foreign) == 0 && foreign > 0)
                        printf(" (NOT grm's program %" PRIu64 " time%s, attached again)", foreign, foreign == 1 ? "" : "s");
                printf("\n");
        }
        print_census(msg, st);
        bool tcp = false;
        for (size_t i = 0; i < msg->n_records && !tcp; i++)
                tcp = streq(msg->records[i].type, "generation") && ctl_record_get(&msg->records[i], "connections");
        printf("\n%-5s %-9s %-8s %-7s %-8s %-12s ", "GEN", "STATE", "PID", "SOCKETS", "AGE", "PACKETS");
        if (tcp)
                printf("%-12s %-9s ", "CONNECTIONS", "MIGRATED");
        printf("%-8s %-8s %s\n", "CPU", "DRAIN", "NOTE");
        for (size_t i = 0; i < msg->n_records; i++) {
                const CtlRecord *g = &msg->records[i];
                uint64_t age = 0, deadline, cpu;
                const char *note;
                if (!streq(g->type, "generation"))
                        continue;
                (void) ctl_record_get_u64(g, "age_usec", &age);
                printf("%-5s %-9s %-8s %-7s ", strempty(ctl_record_get(g, "generation")),
                       strempty(ctl_record_get(g, "state")), strempty(ctl_record_get(g, "pid")),
                       strempty(ctl_record_get(g, "sockets")));
                print_duration(age);
                printf("%*s%-12s ", age >= 60 * USEC_PER_SEC ? 3 : 4, "", strempty(ctl_record_get(g, "packets")));
                if (tcp)
                        printf("%-12s %-9s ", strempty(ctl_record_get(g, "connections")),
                               strempty(ctl_record_get(g, "migrated")));
                if (ctl_record_get_u64(g, "cpu_usec", &cpu) == 0) {
                        print_duration(cpu);
                        printf("%*s", cpu >= 60 * USEC_PER_SEC ? 3 : 4, "");
                } else
                        printf("%-8s ", "-");
                if (ctl_record_get_u64(g, "drain_deadline_usec", &deadline) == 0) {
                        print_duration(deadline);
                        printf("    ");
                } else
                        printf("%-8s ", "-");
                note = ctl_record_get(g, "failure");
                if (!note)
                        note = ctl_record_get(g, "status");
                uint64_t unread = 0, queued = 0, drops = 0;
                if (ctl_record_get_u64(g, "unread_sockets", &unread) == 0 && unread > 0) {
                        (void) ctl_record_get_u64(g, "queued_bytes", &queued);
                        (void) ctl_record_get_u64(g, "socket_drops", &drops);
                        printf("%" PRIu64 " of %s sockets NOT READ (%" PRIu64 " bytes queued, %" PRIu64 " dropped)%s%s\n",
                               unread, strempty(ctl_record_get(g, "sockets")), queued, drops, note ? "; " : "",
                               strempty(note));
                } else
                        printf("%s\n", strempty(note));
        }
        /* One line per group of verdicts (flow table, quic, errors), so that none wraps. */
        printf("\nCOUNTERS");
        {
                const char *last_kind = NULL;

                for (size_t i = 0; i < msg->n_records; i++) {
                        const char *name = ctl_record_get(&msg->records[i], "name");
                        const char *kind;

                        if (!streq(msg->records[i].type, "counter") || !name)
                                continue;
                        kind = strncmp(name, "quic_", 5) == 0 ? "quic" : strncmp(name, "error_", 6) == 0 ? "error" : "";
                        if (!last_kind || !streq(kind, last_kind))
                                printf("\n ");
                        last_kind = kind;
                        printf(" %s=%s", name, strempty(ctl_record_get(&msg->records[i], "value")));
                }
        }
        printf("\n");
        return 0;
}

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "socket", required_argument, NULL, 's' },
        { "unit", required_argument, NULL, 'u' },
        { "timeout", required_argument, NULL, 't' },
        { "json", no_argument, NULL, 'j' },
        {}
};

/* Options may come before or after the verb ("grmctl restart --timeout 5"). Returns -1 to go
 * on, or an exit code. */
static int parse_options(int argc, char *argv[]) {
        int opt, r;

        while ((opt = getopt_long(argc, argv, "+hs:u:t:j", options, NULL)) >= 0) {
                switch (opt) {
                case 'h':
                        help();
                        return 0;
                case 'V':
                        printf("grmctl %s\n", GRM_VERSION);
                        return 0;
                case 's':
                        arg_socket = optarg;
                        break;
                case 'u':
                        arg_unit = optarg;
                        break;
                case 't':
                        r = parse_sec(optarg, &arg_timeout_usec);
                        if (r < 0 || arg_timeout_usec == 0 || arg_timeout_usec == UINT64_MAX) {
                                fprintf(stderr, "grmctl: invalid --timeout '%s' (a positive time span).\n", optarg);
                                return GRM_OUTCOME_USAGE;
                        }
                        break;
                case 'j':
                        arg_json = true;
                        break;
                default:
                        return GRM_OUTCOME_USAGE;
                }
        }
        return -1;
}

int main(int argc, char *argv[]) {
        int r;

        r = parse_options(argc, argv);
        if (r >= 0)
                return r;
        if (optind >= argc) {
                fprintf(stderr, "grmctl: missing verb (see grmctl --help).\n");
                return GRM_OUTCOME_USAGE;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[optind], verbs[i].name)) {
                        int vargc = argc - optind;
                        char **vargv = argv + optind;

                        optind = 0; /* re-initialise getopt for the verb's arguments */
                        r = parse_options(vargc, vargv);
                        if (r >= 0)
                                return r;
                        if (optind < vargc) {
                                fprintf(stderr, "grmctl: %s takes no arguments ('%s').\n", verbs[i].name, vargv[optind]);
                                return GRM_OUTCOME_USAGE;
                        }
                        if (arg_socket && arg_unit) {
                                fprintf(stderr, "grmctl: --socket and --unit both name a grmd: give one.\n");
                                return GRM_OUTCOME_USAGE;
                        }
                        return verbs[i].run(vargc - optind + 1, vargv + optind - 1);
                }
        fprintf(stderr, "grmctl: unknown verb '%s' (see grmctl --help).\n", argv[optind]);
        return GRM_OUTCOME_USAGE;
}
