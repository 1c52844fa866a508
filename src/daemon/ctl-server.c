/* SPDX-License-Identifier: MIT */
/*
 * The control socket (docs/PROTOCOL.md): a SOCK_SEQPACKET Unix socket, mode 0600, that accepts
 * only root and grmd's own uid. Each connection sends one request; "restart" connections then
 * get progress messages and one result, "status" connections one reply. A connection that sends
 * nothing in time, too much, or garbage gets an error reply and is closed; grmd carries on.
 * Processes of an instance are refused whatever their uid (an instance without User= runs as
 * root): by the generation's cgroup, or where there is none, by the instance's session and
 * process group. Warnings about such peers are rate-limited (CTL_LOG_BURST per CTL_LOG_INTERVAL_USEC), the
 * suppressed ones counted.
 *
 * One grmd per control path: a second one refuses to start while the socket there answers, and
 * replaces it only when nobody listens (a stale file of a grmd that died). The check and the
 * replacement run under a lock on the socket's directory, so two grmds starting at once cannot
 * both win.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "cgroup-util.h"
#include "log.h"
#include "macro.h"
#include "manager.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define CTL_CONNECTIONS_MAX 64
#define CTL_REQUEST_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define CTL_LOG_INTERVAL_USEC (10 * USEC_PER_SEC)
#define CTL_LOG_BURST 20
#define CTL_LOCK_TIMEOUT_USEC (2 * USEC_PER_SEC)

#define ctl_warn(m, error, ...) (void) log_warning_ratelimited(&(m)->ctl_log_limit, error, __VA_ARGS__)

struct CtlConnection {
        Manager *manager;
        int fd;
        uid_t uid;
        pid_t pid;
        sd_event_source *io;
        sd_event_source *timer;
        bool restart;             /* the requester of m->restart */
        CtlConnection *next;
};

static void connection_free(CtlConnection *c) {
        Manager *m;

        if (!c)
                return;
        m = c->manager;
        for (CtlConnection **p = &m->connections; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        m->n_connections--;
                        break;
                }
        if (c->restart && m->restart && m->restart->requester == c)
                m->restart->requester = NULL;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        safe_close(c->fd);
        free(c);
}

void ctl_connection_detach_restart(CtlConnection *c) {
        if (c)
                c->restart = false;
}

/* Sends one message; a peer that cannot take it (gone, or not reading) loses it. */
static int send_message(int fd, CtlWriter *w) {
        _cleanup_free_ char *buf = NULL;
        size_t len;
        int r;

        r = ctl_writer_finish(w, &buf, &len);
        if (r < 0)
                return r;
        if (send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                return negative_errno();
        return 0;
}

static void reply_error(CtlConnection *c, GrmOutcome code, const char *message) {
        CtlWriter w;

        ctl_writer_init(&w);
        ctl_writer_record(&w, "error");
        ctl_writer_add_u64(&w, "version", GRM_CTL_PROTOCOL_VERSION);
        ctl_writer_add(&w, "outcome", grm_outcome_to_string(code));
        ctl_writer_add_u64(&w, "code", code);
        ctl_writer_add(&w, "message", message);
        (void) send_message(c->fd, &w);
        ctl_writer_done(&w);
}

void ctl_connection_progress(CtlConnection *c, const char *step, const char *fmt, ...) {
        char message[512];
        CtlWriter w;
        va_list ap;

        if (!c)
                return;
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);

        ctl_writer_init(&w);
        ctl_writer_record(&w, "progress");
        ctl_writer_add(&w, "step", step);
        ctl_writer_add_u64(&w, "elapsed_usec",
                           c->manager->restart ? now_usec() - c->manager->restart->started_usec : 0);
        ctl_writer_add(&w, "message", message);
        (void) send_message(c->fd, &w);
        ctl_writer_done(&w);
}

void ctl_connection_result(CtlConnection *c, GrmOutcome outcome, Generation *g, const char *message) {
        Manager *m;
        CtlWriter w;

        if (!c)
                return;
        m = c->manager;
        ctl_writer_init(&w);
        ctl_writer_record(&w, "result");
        ctl_writer_add_u64(&w, "version", GRM_CTL_PROTOCOL_VERSION);
        ctl_writer_add(&w, "outcome", grm_outcome_to_string(outcome));
        ctl_writer_add_u64(&w, "code", outcome);
        ctl_writer_add(&w, "message", message);
        if (g && outcome != GRM_OUTCOME_BUSY) {
                ctl_writer_add_u64(&w, "generation", g->gen);
                ctl_writer_add_u64(&w, "pid", (uint64_t) g->pid);
                if (g->ready_usec)
                        ctl_writer_add_u64(&w, "ready_usec", g->ready_usec - g->spawned_usec);
                if (g->flipped_usec)
                        ctl_writer_add_u64(&w, "flip_usec", g->flipped_usec - g->ready_seen_usec);
        }
        if (m->restart)
                ctl_writer_add_u64(&w, "elapsed_usec", now_usec() - m->restart->started_usec);
        (void) send_message(c->fd, &w);
        ctl_writer_done(&w);
        connection_free(c);
}

static void add_generation(CtlWriter *w, Manager *m, Generation *g, uint64_t now) {
        ctl_writer_record(w, "generation");
        ctl_writer_add_u64(w, "generation", g->gen);
        ctl_writer_add(w, "state", gen_state_to_string(g->state));
        ctl_writer_add_u64(w, "pid", (uint64_t) g->pid);
        ctl_writer_add_u64(w, "sockets", g->n_fds);
        ctl_writer_add_u64(w, "age_usec", now - g->spawned_usec);
        ctl_writer_add_u64(w, "packets", generation_packets(g));
        if (manager_has_tcp(m)) {
                uint64_t connections, migrated;

                generation_tcp(g, &connections, &migrated);
                ctl_writer_add_u64(w, "connections", connections);
                ctl_writer_add_u64(w, "migrated", migrated);
        }
        if (g->ready_usec)
                ctl_writer_add_u64(w, "ready_usec", g->ready_usec - g->spawned_usec);
        if (g->state == GEN_DRAINING && g->drain_deadline_usec != USEC_INFINITY)
                ctl_writer_add_u64(w, "drain_deadline_usec",
                                   g->drain_deadline_usec > now ? g->drain_deadline_usec - now : 0);
        generation_cgroup_update_usage(g);
        if (generation_cgroup_name(g))
                ctl_writer_add(w, "cgroup", generation_cgroup_name(g));
        if (g->cgroup_path || g->cpu_usec)
                ctl_writer_add_u64(w, "cpu_usec", g->cpu_usec);
        if (g->have_memory)
                ctl_writer_add_u64(w, "memory_bytes", g->memory_bytes);
        if (g->status)
                ctl_writer_add(w, "status", g->status);
        if (g->failure)
                ctl_writer_add(w, "failure", g->failure);
        if (g->watch && (g->state == GEN_WORKING || g->state == GEN_DRAINING)) {
                /* sockwatch.c's last sample of its UDP sockets. */
                ctl_writer_add_u64(w, "unread_sockets", g->n_unread);
                ctl_writer_add_u64(w, "queued_bytes", g->queued_bytes);
                ctl_writer_add_u64(w, "socket_drops", g->socket_drops);
        }
}

/* The port watch's last census (portwatch.c): state in the status record, findings after the
 * generations, at most CTL_CENSUS_SOCKETS_MAX of them (the count of the rest in the status). */
#define CTL_CENSUS_SOCKETS_MAX 32

static size_t census_listed(const PortWatch *w) {
        size_t n = 0;

        for (size_t i = 0; i < w->n_findings; i++)
                if (w->findings[i].reported)
                        n++;
        return n;
}

static void add_census_status(CtlWriter *w, Manager *m, uint64_t now) {
        const PortWatch *pw = &m->portwatch;
        size_t listed = census_listed(pw);

        if (!pw->census) {
                ctl_writer_add(w, "census", "unavailable");
                if (pw->unavailable)
                        ctl_writer_add(w, "census_error", pw->unavailable);
                return;
        }
        ctl_writer_add(w, "census", "active");
        if (pw->last_error < 0)
                ctl_writer_add(w, "census_error", strerror(-pw->last_error));
        ctl_writer_add_u64(w, "census_scans", pw->scans);
        ctl_writer_add_u64(w, "census_scan_errors", pw->scan_errors);
        if (pw->last_scan_usec) {
                ctl_writer_add_u64(w, "census_age_usec", now - pw->last_scan_usec);
                ctl_writer_add_u64(w, "census_scan_usec", pw->last_scan_duration_usec);
        }
        ctl_writer_add_u64(w, "census_sockets", listed);
        if (listed > CTL_CENSUS_SOCKETS_MAX)
                ctl_writer_add_u64(w, "census_sockets_omitted", listed - CTL_CENSUS_SOCKETS_MAX);
}

static void add_census_sockets(CtlWriter *w, Manager *m) {
        const PortWatch *pw = &m->portwatch;
        size_t listed = 0;

        for (size_t i = 0; i < pw->n_findings && listed < CTL_CENSUS_SOCKETS_MAX; i++) {
                const CensusFinding *f = &pw->findings[i];
                char buf[CENSUS_ADDRESS_MAX];

                if (!f->reported || f->group >= m->n_groups)
                        continue;
                listed++;
                ctl_writer_record(w, "census_socket");
                ctl_writer_add(w, "group", m->groups[f->group].address);
                ctl_writer_add(w, "verdict", census_verdict_to_string(f->verdict));
                ctl_writer_add(w, "local", census_format_address(&f->sock, false, buf));
                if (f->sock.connected)
                        ctl_writer_add(w, "remote", census_format_address(&f->sock, true, buf));
                ctl_writer_add_u64(w, "uid", f->sock.uid);
                if (f->pid > 0)
                        ctl_writer_add_u64(w, "pid", (uint64_t) f->pid);
                if (f->comm[0])
                        ctl_writer_add(w, "comm", f->comm);
                if (f->gen)
                        ctl_writer_add_u64(w, "generation", f->gen);
                ctl_writer_add(w, "reuseport", f->sock.reuseport ? "yes" : "no");
                ctl_writer_add(w, "reuseaddr", f->sock.reuseaddr ? "yes" : "no");
                if (f->sock.bound_dev_if)
                        ctl_writer_add_u64(w, "ifindex", f->sock.bound_dev_if);
                ctl_writer_add_u64(w, "inode", f->sock.inode);
                ctl_writer_add_u64(w, "cookie", f->sock.cookie);
                if (f->verdict == CENSUS_CONNECTED_REUSEPORT)
                        ctl_writer_add(w, "hint", "ConnectPerClient=yes");
        }
}

static void reply_status(CtlConnection *c) {
        Manager *m = c->manager;
        uint64_t stats[_GRM_STAT_MAX], flows[GRM_MAX_GROUPS], total = 0, now = now_usec();
        bool have_flows;
        CtlWriter w;
        int r;

        have_flows = steering_count_flows(m->steering, flows, &total) >= 0;
        if (steering_get_stats(m->steering, stats) < 0)
                memset(stats, 0, sizeof(stats));

        ctl_writer_init(&w);
        ctl_writer_record(&w, "status");
        ctl_writer_add_u64(&w, "version", GRM_CTL_PROTOCOL_VERSION);
        ctl_writer_add_u64(&w, "pid", (uint64_t) getpid());
        ctl_writer_add_u64(&w, "uptime_usec", now - m->started_usec);
        ctl_writer_add_u64(&w, "working", m->working ? m->working->gen : 0);
        ctl_writer_add(&w, "restart", !m->restart ? "idle" : m->restart->previous ? "settling" : "in-progress");
        ctl_writer_add(&w, "stopping", m->stopping ? "yes" : "no");
        if (m->held_reason)
                ctl_writer_add(&w, "not_supervising", m->held_reason);
        ctl_writer_add_u64(&w, "restarts_done", m->restarts_done);
        ctl_writer_add_u64(&w, "restarts_failed", m->restarts_failed);
        ctl_writer_add_u64(&w, "flip_latency_usec", m->last_flip_latency_usec);
        ctl_writer_add_u64(&w, "notify_ignored", m->notify_ignored);
        ctl_writer_add_u64(&w, "notify_malformed", m->notify_malformed);
        ctl_writer_add_u64(&w, "notify_oversized", m->notify_oversized);
        ctl_writer_add_u64(&w, "notify_log_suppressed", m->notify_log_limit.suppressed_total);
        ctl_writer_add_u64(&w, "control_refused", m->ctl_refused);
        ctl_writer_add_u64(&w, "control_malformed", m->ctl_malformed);
        ctl_writer_add_u64(&w, "control_log_suppressed", m->ctl_log_limit.suppressed_total);
        ctl_writer_add(&w, "isolation", m->cgroup_mode == CGROUP_MODE_CGROUP ? "cgroup"
                                        : m->cgroup_mode == CGROUP_MODE_PROCESS_GROUP ? "process-group" : "unknown");
        if (m->cgroup_base[0])
                ctl_writer_add(&w, "cgroup", m->cgroup_base);
        /* What new generations get: libgrm-bind.so's two modes (InterceptBind=, ConnectPerClient=). */
        ctl_writer_add(&w, "intercept_bind", m->config.intercept_bind > 0 ? "yes" : "no");
        ctl_writer_add(&w, "connect_per_client", m->config.connect_per_client > 0 ? "yes" : "no");
        /* The table's own size: one taken over from an earlier grmd keeps its size. */
        ctl_writer_add_u64(&w, "flow_table_size", steering_flow_table_size(m->steering));
        ctl_writer_add_u64(&w, "flows_per_source", (uint64_t) m->config.flows_per_source);
        if (have_flows)
                ctl_writer_add_u64(&w, "flow_entries", total);
        {
                char prefix[2 * GRM_QUIC_PREFIX_MAX + 1];

                /* What new generations get in GRM_QUIC_CONFIG_ID and in front of their server IDs. */
                ctl_writer_add_u64(&w, "quic_config_id", (uint64_t) m->config.quic_config_id);
                ctl_writer_add(&w, "quic_server_id_prefix", quic_lb_prefix_to_string(&m->config.quic_prefix, prefix));
        }
        add_census_status(&w, m, now);

        for (unsigned i = 0; i < m->n_groups; i++) {
                ctl_writer_record(&w, "group");
                ctl_writer_add_u64(&w, "index", i);
                ctl_writer_add(&w, "address", m->groups[i].address);
                ctl_writer_add(&w, "name", m->groups[i].name);
                ctl_writer_add(&w, "steering", steering_state_to_string(m->steering_state[i]));
                ctl_writer_add_u64(&w, "steering_foreign", m->steering_foreign[i]);
                if (m->portwatch.census && m->portwatch.scans > 0) {
                        ctl_writer_add_u64(&w, "census_outside", m->portwatch.outside[i]);
                        ctl_writer_add_u64(&w, "census_connected_reuseport", m->portwatch.connected_reuseport[i]);
                        if (m->groups[i].type == SOCK_DGRAM)
                                ctl_writer_add_u64(&w, "census_connected", m->portwatch.connected[i]);
                }
                if (m->groups[i].type == SOCK_STREAM) {
                        unsigned backlog;

                        /* Connections are the instances' sockets: no dissector, no flows. */
                        ctl_writer_add(&w, "transport", "tcp");
                        if (group_backlog(&m->groups[i], &backlog) >= 0)
                                ctl_writer_add_u64(&w, "backlog", backlog);
                        continue;
                }
                ctl_writer_add(&w, "transport", "udp");
                ctl_writer_add(&w, "dissector", dissector_to_string(m->config.dissector));
                if (have_flows)
                        ctl_writer_add_u64(&w, "flows", flows[i]);
        }
        for (Generation *g = m->generations; g; g = g->next)
                add_generation(&w, m, g, now);
        add_census_sockets(&w, m);
        for (int i = 0; i < _GRM_STAT_MAX; i++) {
                ctl_writer_record(&w, "counter");
                ctl_writer_add(&w, "name", grm_stat_to_string(i));
                ctl_writer_add_u64(&w, "value", stats[i]);
        }
        r = send_message(c->fd, &w);
        if (r < 0)
                log_debug_errno(r, "Failed to send status: %m");
        ctl_writer_done(&w);
}

static void handle_request(CtlConnection *c, const void *buf, size_t len) {
        _cleanup_(ctl_message_freep) CtlMessage *msg = NULL;
        Manager *m = c->manager;
        const CtlRecord *req;
        const char *verb;
        uint64_t version = 0, timeout = USEC_INFINITY;
        int r;

        r = ctl_message_parse(buf, len, GRM_CTL_REQUEST_MAX, &msg);
        if (r < 0) {
                m->ctl_malformed++;
                ctl_warn(m, r, "Malformed control request from pid %d: %m", (int) c->pid);
                reply_error(c, GRM_OUTCOME_USAGE, r == -EMSGSIZE ? "request too large" : "malformed request");
                connection_free(c);
                return;
        }
        req = msg->n_records > 0 ? &msg->records[0] : NULL;
        if (!req || !streq(req->type, "request") || ctl_record_get_u64(req, "version", &version) < 0) {
                m->ctl_malformed++;
                reply_error(c, GRM_OUTCOME_USAGE, "expected a request record with a version");
                connection_free(c);
                return;
        }
        if (version != GRM_CTL_PROTOCOL_VERSION) {
                m->ctl_malformed++;
                reply_error(c, GRM_OUTCOME_USAGE, "unsupported protocol version");
                connection_free(c);
                return;
        }
        verb = ctl_record_get(req, "verb");
        if (verb && streq(verb, "status")) {
                reply_status(c);
                connection_free(c);
                return;
        }
        if (verb && streq(verb, "reexec")) {
                if (m->restart || m->stopping) {
                        ctl_connection_result(c, GRM_OUTCOME_BUSY, NULL,
                                              m->stopping ? "grmd is stopping" : "a restart is in progress");
                        return;
                }
                /* Answer first: the connection does not survive the exec. */
                ctl_connection_result(c, GRM_OUTCOME_DONE, NULL, "re-executing grmd");
                m->reexec_pending = true;
                (void) sd_event_exit(m->event, 0);
                return;
        }
        if (verb && streq(verb, "restart")) {
                r = ctl_record_get_u64(req, "timeout_usec", &timeout);
                if (r == -EINVAL || (r == 0 && timeout == 0)) {
                        reply_error(c, GRM_OUTCOME_USAGE, "timeout_usec must be a positive number");
                        connection_free(c);
                        return;
                }
                if (r == -ENOENT)
                        timeout = USEC_INFINITY;
                c->timer = sd_event_source_disable_unref(c->timer);
                c->restart = true;
                /* Replies (busy, rejected, ...) may free c before this returns. */
                (void) restart_request(m, c, timeout);
                return;
        }
        m->ctl_malformed++;
        reply_error(c, GRM_OUTCOME_USAGE, "unknown verb");
        connection_free(c);
}

static int on_connection_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        CtlConnection *c = userdata;
        char buf[GRM_CTL_REQUEST_MAX + 1];
        ssize_t n;

        if (c->restart) {
                /* Nothing more is expected from a restart requester; a hang-up detaches it. */
                if (revents & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
                        log_debug("Restart requester went away; the restart goes on.");
                        connection_free(c);
                        return 0;
                }
                n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0)
                        connection_free(c);
                return 0;
        }

        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                connection_free(c);
                return 0;
        }
        if (n == 0) {
                connection_free(c);
                return 0;
        }
        if ((size_t) n > GRM_CTL_REQUEST_MAX) {
                c->manager->ctl_malformed++;
                reply_error(c, GRM_OUTCOME_USAGE, "request too large");
                connection_free(c);
                return 0;
        }
        handle_request(c, buf, (size_t) n);
        return 0;
}

static int on_connection_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        CtlConnection *c = userdata;

        reply_error(c, GRM_OUTCOME_USAGE, "no request received in time");
        connection_free(c);
        return 0;
}

static int on_accept_resume(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        (void) sd_event_source_set_enabled(m->ctl_source, SD_EVENT_ON);
        return 0;
}

/* Whether the peer process belongs to an instance; if so, says why in buf. The pid from
 * SO_PEERCRED is pinned with SO_PEERPIDFD: a peer that is gone by the time its cgroup and
 * session were read (its pid may be another process's now) cannot be told apart, and counts as
 * an instance. */
static bool peer_is_instance(Manager *m, int cfd, pid_t pid, char *buf, size_t size) {
        _cleanup_close_ int pidfd = -EBADF;
        _cleanup_free_ char *cg = NULL;
        socklen_t len = sizeof(pidfd);
        uint32_t gen;
        pid_t sid, pgid;
        bool gone;

        if (pid <= 0) {
                snprintf(buf, size, "its pid is not visible from grmd's pid namespace");
                return true;
        }
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0)
                pidfd = -EBADF; /* before Linux 6.5 */
        if (m->cgroup_mode == CGROUP_MODE_CGROUP && cgroup_of_pid(pid, &cg) >= 0 &&
            cgroup_generation_of(m->cgroup_base, cg, &gen) > 0) {
                snprintf(buf, size, "it runs in the cgroup of generation %" PRIu32, gen);
                return true;
        }
        sid = getsid(pid);
        pgid = getpgid(pid);
        for (Generation *g = m->generations; g; g = g->next) {
                if (!gen_state_is_live(g->state) || g->pid <= 0)
                        continue;
                if (pid == g->pid || sid == g->pid || pgid == g->pid) {
                        snprintf(buf, size, "it is in the session of generation %" PRIu32, g->gen);
                        return true;
                }
        }
        /* Gone: the pidfd says so (ESRCH); without one, or where pidfd_send_signal() is missing
         * (ENOSYS under valgrind 3.19, which refused every grmctl), neither its session nor its
         * process group could be read. */
        if (pidfd >= 0 && pidfd_send_signal(pidfd, 0, NULL, 0) == 0)
                gone = false;
        else if (pidfd >= 0 && errno == ESRCH)
                gone = true;
        else
                gone = sid < 0 && pgid < 0;
        if (gone) {
                snprintf(buf, size, "it exited before it could be checked");
                return true;
        }
        return false;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        _cleanup_close_ int cfd = -EBADF;
        struct ucred cred = {};
        socklen_t len = sizeof(cred);
        CtlConnection *c;
        char why[128];
        int r;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        /* The connection stays queued; retrying at once would spin. Pause. */
                        ctl_warn(m, errno, "Failed to accept control connection, pausing for 100 ms: %m");
                        (void) sd_event_source_set_enabled(m->ctl_source, SD_EVENT_OFF);
                        (void) sd_event_add_time_relative(m->event, NULL, CLOCK_MONOTONIC, 100 * USEC_PER_MSEC,
                                                          USEC_PER_MSEC, on_accept_resume, m);
                } else if (errno != EAGAIN && errno != EINTR)
                        ctl_warn(m, errno, "Failed to accept control connection: %m");
                return 0;
        }
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                ctl_warn(m, errno, "Failed to read control peer credentials: %m");
                return 0;
        }

        c = calloc(1, sizeof(*c));
        if (!c)
                return 0;
        c->manager = m;
        c->fd = TAKE_FD(cfd);
        c->uid = cred.uid;
        c->pid = cred.pid;

        if (cred.uid != 0 && cred.uid != geteuid()) {
                m->ctl_refused++;
                ctl_warn(m, 0, "Refusing control connection from pid %d, uid %u: only root and uid %u may control grmd.",
                         (int) cred.pid, (unsigned) cred.uid, (unsigned) geteuid());
                reply_error(c, GRM_OUTCOME_UNREACHABLE, "permission denied");
                safe_close(c->fd);
                free(c);
                return 0;
        }
        if (peer_is_instance(m, c->fd, cred.pid, why, sizeof(why))) {
                m->ctl_refused++;
                ctl_warn(m, 0, "Refusing control connection from pid %d, uid %u: %s, and instances may not control grmd.",
                         (int) cred.pid, (unsigned) cred.uid, why);
                reply_error(c, GRM_OUTCOME_UNREACHABLE, "permission denied: instances may not control grmd");
                safe_close(c->fd);
                free(c);
                return 0;
        }
        if (m->n_connections >= CTL_CONNECTIONS_MAX) {
                ctl_warn(m, 0, "Too many control connections; refusing pid %d.", (int) cred.pid);
                reply_error(c, GRM_OUTCOME_INTERNAL, "too many connections");
                safe_close(c->fd);
                free(c);
                return 0;
        }

        c->next = m->connections;
        m->connections = c;
        m->n_connections++;
        r = sd_event_add_io(m->event, &c->io, c->fd, EPOLLIN | EPOLLRDHUP, on_connection_io, c);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &c->timer, CLOCK_MONOTONIC,
                                               CTL_REQUEST_TIMEOUT_USEC, USEC_PER_MSEC,
                                               on_connection_timeout, c);
        if (r < 0) {
                log_warning_errno(r, "Failed to watch control connection: %m");
                connection_free(c);
        }
        return 0;
}

/* Holds an exclusive flock() on the directory of path while the caller checks and replaces the
 * socket there. Waits up to CTL_LOCK_TIMEOUT_USEC: another grmd holds it only for a moment. */
static int lock_directory_of(const char *path, int *ret_fd) {
        _cleanup_free_ char *copy = strdup(path);
        _cleanup_close_ int fd = -EBADF;
        uint64_t until = now_usec() + CTL_LOCK_TIMEOUT_USEC;

        if (!copy)
                return -ENOMEM;
        fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK)
                        return negative_errno();
                if (now_usec() > until)
                        return -ETIMEDOUT;
                (void) usleep(10 * 1000);
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* 1 if something listens on the socket at sa (with its pid, when the kernel says), 0 if it is
 * stale (nobody listens) or gone. A full backlog counts as an answer: a grmd is there. */
static int socket_answers(const struct sockaddr_un *sa, pid_t *ret_pid) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct ucred cred = {};
        socklen_t len = sizeof(cred);

        if (fd < 0)
                return negative_errno();
        if (connect(fd, (const struct sockaddr *) sa, sizeof(*sa)) < 0) {
                if (errno == ECONNREFUSED || errno == ENOENT)
                        return 0;
                if (errno == EAGAIN)
                        return 1;
                return negative_errno();
        }
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
                *ret_pid = cred.pid;
        return 1;
}

int ctl_server_bind(Manager *m) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *path = m->config.control_path;
        _cleanup_free_ char *derived = NULL;
        _cleanup_close_ int dir_fd = -EBADF;
        struct stat st;
        mode_t old_umask;
        int r;

        if (!path) {
                r = ctl_default_socket_path(&derived);
                if (r == -ENXIO)
                        return log_error_errno(r, "No control socket path: give --control PATH, or run with RuntimeDirectory= set.");
                if (r < 0)
                        return log_error_errno(r, "Out of memory.");
                path = derived;
        }
        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(ENAMETOOLONG, "Control socket path too long: %s", path);
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create control socket: %m");

        r = lock_directory_of(path, &dir_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to lock the directory of %s: %m", path);
        /* A socket file from an earlier grmd may be in the way: replaced if nobody answers there,
         * refused if another grmd does; anything else is not ours. */
        if (lstat(path, &st) == 0) {
                pid_t other = 0;

                if (!S_ISSOCK(st.st_mode))
                        return log_error_errno(EEXIST, "%s exists and is not a socket.", path);
                r = socket_answers(&sa, &other);
                if (r > 0) {
                        if (other > 0)
                                return log_error_errno(EADDRINUSE, "Another grmd (pid %d) is running with the control socket %s; refusing to start.",
                                                       (int) other, path);
                        return log_error_errno(EADDRINUSE, "Something answers on the control socket %s; refusing to start.", path);
                }
                if (r < 0)
                        return log_error_errno(r, "Cannot tell whether a grmd answers on %s: %m", path);
                log_debug("Replacing the stale control socket %s.", path);
                (void) unlink(path);
        }
        old_umask = umask(0177);
        r = bind(fd, (struct sockaddr *) &sa, sizeof(sa));
        umask(old_umask);
        if (r < 0)
                return log_error_errno(errno, "Failed to bind control socket %s: %m", path);
        if (chmod(path, 0600) < 0)
                return log_error_errno(errno, "Failed to set mode of %s: %m", path);
        if (listen(fd, 16) < 0)
                return log_error_errno(errno, "Failed to listen on %s: %m", path);
        /* Listening now: a later grmd sees us answer. */
        m->ctl_path = strdup(path);
        if (!m->ctl_path) {
                (void) unlink(path);
                return log_error_errno(ENOMEM, "Out of memory.");
        }
        m->ctl_fd = TAKE_FD(fd);
        return 0;
}

int ctl_server_open(Manager *m) {
        int r;

        m->ctl_log_limit = RATELIMIT_INIT(CTL_LOG_INTERVAL_USEC, CTL_LOG_BURST);
        if (m->ctl_fd < 0) {
                r = ctl_server_bind(m);
                if (r < 0)
                        return r;
        }
        r = sd_event_add_io(m->event, &m->ctl_source, m->ctl_fd, EPOLLIN, on_accept, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch control socket: %m");
        log_info("Control socket at %s.", m->ctl_path);
        return 0;
}

void ctl_server_close(Manager *m) {
        while (m->connections)
                connection_free(m->connections);
        m->ctl_source = sd_event_source_disable_unref(m->ctl_source);
        if (m->ctl_fd >= 0 && m->ctl_path)
                (void) unlink(m->ctl_path);
        m->ctl_fd = safe_close(m->ctl_fd);
        free(m->ctl_path);
        m->ctl_path = NULL;
}
