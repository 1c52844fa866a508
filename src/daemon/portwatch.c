/* SPDX-License-Identifier: MIT */
/*
 * The port watch: who else is bound to the managed ports. A reuseport group's program steers only
 * the sockets of its group; a socket on the same address in another group (or in none) gets the
 * datagrams the kernel's lookup hands it, and grm never sees them. On Linux 6.18 that is what a
 * server that connects a socket per client causes by itself: connect() takes the socket out of
 * grm's group but leaves SO_REUSEPORT set, and the next bind to the address (grmd's next
 * generation included) makes a new group around it, without grm's program. So every
 * PORTWATCH_INTERVAL_USEC, and soon after every change of state (a restart), grmd takes the
 * socket census (src/shared/census.c) of the managed ports and reports, per group:
 *
 *  - outside: a socket that takes the group's datagrams or connections (UDP not connected, TCP
 *    listening) and is not in one of grm's groups, at once;
 *  - connected-reuseport: a connected UDP socket that kept SO_REUSEPORT, once it is found in two
 *    scans in a row (ConnectPerClient= clears the flag a moment after connect(): a scan may
 *    fall in between), with the hint to set ConnectPerClient=yes.
 *
 * Each is shown in grmctl status (text, --json) with its owner uid and the pid holding it (found
 * by the census's task_file iterator, else in /proc/PID/fd; looked up once per socket and only
 * for those reported), counted in the metrics,
 * and logged (MESSAGE_ID below) when first found and when gone, at most PORTWATCH_LOG_BURST
 * messages per PORTWATCH_LOG_INTERVAL_USEC, the rest counted.
 *
 * The census needs CAP_PERFMON (its iterators are tracing programs). Without it, or on a kernel
 * without the iterators, grmd works as before and says "census unavailable" and why.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/capability.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "manager.h"

#define PORTWATCH_INTERVAL_USEC (5 * USEC_PER_SEC)
#define PORTWATCH_SOON_USEC (200 * USEC_PER_MSEC)
#define PORTWATCH_LOG_INTERVAL_USEC (60 * USEC_PER_SEC)
#define PORTWATCH_LOG_BURST 10
/* Owner lookups (a walk of /proc) per scan: the first ones found are enough to act on. */
#define PORTWATCH_OWNER_LOOKUPS 64

static uint64_t interval_usec(void) {
        const char *e = getenv("GRM_TEST_CENSUS_INTERVAL_USEC");
        uint64_t v;

        if (e && parse_unsigned(e, 1, UINT64_MAX / 2, &v) == 0)
                return v;
        return PORTWATCH_INTERVAL_USEC;
}

static uint16_t group_port(const Group *g) {
        if (g->sa.ss_family == AF_INET)
                return ntohs(((const struct sockaddr_in *) &g->sa)->sin_port);
        if (g->sa.ss_family == AF_INET6)
                return ntohs(((const struct sockaddr_in6 *) &g->sa)->sin6_port);
        return 0;
}

static bool have_capability(cap_value_t cap) {
        cap_t caps = cap_get_proc();
        cap_flag_value_t v = CAP_CLEAR;

        if (!caps)
                return false;
        (void) cap_get_flag(caps, cap, CAP_EFFECTIVE, &v);
        cap_free(caps);
        return v == CAP_SET;
}

/* The generation a socket was handed to, by cookie (grmd keeps no fds, but their cookies). */
static uint32_t generation_of_cookie(Manager *m, uint64_t cookie) {
        for (Generation *g = m->generations; g; g = g->next)
                if (g->cookies && gen_state_is_live(g->state))
                        for (unsigned i = 0; i < g->n_fds; i++)
                                if (g->cookies[i] == cookie)
                                        return g->gen;
        return 0;
}

static void read_comm(pid_t pid, char comm[static 16]) {
        char path[64];
        ssize_t n;
        int fd;

        comm[0] = 0;
        snprintf(path, sizeof(path), "/proc/%d/comm", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        n = read(fd, comm, 15);
        close(fd);
        if (n <= 0) {
                comm[0] = 0;
                return;
        }
        comm[n] = 0;
        comm[strcspn(comm, "\n")] = 0;
}

static void describe_owner(const CensusFinding *f, char *buf, size_t size) {
        int n = snprintf(buf, size, "uid %" PRIu32, f->sock.uid);

        if (n < 0 || (size_t) n >= size)
                return;
        if (f->pid > 0)
                n += snprintf(buf + n, size - n, ", pid %d%s%s%s", (int) f->pid, f->comm[0] ? " (" : "", f->comm,
                              f->comm[0] ? ")" : "");
        else
                n += snprintf(buf + n, size - n, ", no process found");
        if (n > 0 && (size_t) n < size && f->gen)
                snprintf(buf + n, size - n, ", a socket of generation %" PRIu32, f->gen);
}

static void log_finding(Manager *m, const CensusFinding *f, bool gone) {
        PortWatch *w = &m->portwatch;
        const Group *g = &m->groups[f->group];
        char f_id[64], f_event[64], f_group[300], f_uid[48], f_pid[48], f_verdict[64], f_local[96];
        const char *fields[] = { f_id, f_event, f_group, f_uid, f_pid, f_verdict, f_local, NULL };
        char owner[160], local[CENSUS_ADDRESS_MAX], remote[CENSUS_ADDRESS_MAX], tail[64] = "";
        uint64_t suppressed = 0;

        if (!ratelimit_below(&w->log_limit, now_usec(), &suppressed))
                return;
        if (suppressed > 0)
                snprintf(tail, sizeof(tail), " (%" PRIu64 " similar messages suppressed)", suppressed);
        describe_owner(f, owner, sizeof(owner));
        census_format_address(&f->sock, false, local);
        census_format_address(&f->sock, true, remote);
        snprintf(f_id, sizeof(f_id), "MESSAGE_ID=%s", MESSAGE_CENSUS_SOCKET);
        snprintf(f_event, sizeof(f_event), "GRM_EVENT=%s", gone ? "census-socket-gone" : "census-socket");
        snprintf(f_group, sizeof(f_group), "GRM_GROUP=%s", g->address);
        snprintf(f_uid, sizeof(f_uid), "GRM_SOCKET_UID=%" PRIu32, f->sock.uid);
        snprintf(f_pid, sizeof(f_pid), "GRM_SOCKET_PID=%d", (int) f->pid);
        snprintf(f_verdict, sizeof(f_verdict), "GRM_VERDICT=%s", census_verdict_to_string(f->verdict));
        snprintf(f_local, sizeof(f_local), "GRM_SOCKET_ADDRESS=%s", local);
        if (gone)
                (void) log_struct(LOG_INFO, 0, fields, "The %s socket on %s (%s) is gone.%s",
                                  census_verdict_to_string(f->verdict), g->address, owner, tail);
        else if (f->verdict == CENSUS_OUTSIDE)
                (void) log_struct(LOG_WARNING, 0, fields,
                                  "A socket bound to %s (%s) is outside grm's reuseport group of %s: the kernel gives it "
                                  "datagrams or connections for that address without grm's steering.%s",
                                  local, owner, g->address, tail);
        else
                (void) log_struct(LOG_WARNING, 0, fields,
                                  "A connected socket on %s (peer %s; %s) kept SO_REUSEPORT: the next socket bound to "
                                  "%s joins a new reuseport group around it, without grm's steering. A server that "
                                  "connects a socket per client needs ConnectPerClient=yes.%s",
                                  local, remote, owner, g->address, tail);
}

static bool should_report(const CensusFinding *f) {
        return f->verdict == CENSUS_OUTSIDE || f->scans >= 2;
}

/* What a socket means for grm: the first group it concerns, and how. */
static CensusVerdict judge(Manager *m, const CensusSocket *s, const CensusSocket *const *steered,
                           unsigned *ret_group) {
        CensusVerdict worst = CENSUS_NORMAL;

        /* In one of grm's groups: steered, whatever address it shares with another group. */
        for (unsigned i = 0; i < m->n_groups; i++)
                if (steered[i] && s->group != 0 && s->group == steered[i]->group)
                        return CENSUS_NORMAL;
        for (unsigned i = 0; i < m->n_groups; i++) {
                CensusVerdict v;

                if (!steered[i])
                        continue;
                v = census_classify(s, steered[i]);
                if (v == CENSUS_OUTSIDE || (v != CENSUS_NORMAL && worst == CENSUS_NORMAL)) {
                        worst = v;
                        *ret_group = i;
                }
                if (v == CENSUS_OUTSIDE)
                        break;
        }
        return worst;
}

static void scan(Manager *m) {
        PortWatch *w = &m->portwatch;
        _cleanup_free_ CensusSocket *socks = NULL;
        _cleanup_free_ CensusFinding *found = NULL;
        CensusPort ports[GRM_MAX_GROUPS];
        const CensusSocket *steered[GRM_MAX_GROUPS] = {};
        uint64_t inodes[PORTWATCH_OWNER_LOOKUPS];
        pid_t pids[PORTWATCH_OWNER_LOOKUPS];
        char comms[PORTWATCH_OWNER_LOOKUPS][16] = {};
        size_t lookup[PORTWATCH_OWNER_LOOKUPS];
        size_t n = 0, n_found = 0, n_lookups = 0;
        uint64_t start = now_usec();
        int r;

        for (unsigned i = 0; i < m->n_groups; i++)
                ports[i] = (CensusPort) {
                        .protocol = m->groups[i].type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP,
                        .port = group_port(&m->groups[i]),
                };
        r = census_scan(w->census, ports, m->n_groups, &socks, &n);
        w->last_error = r < 0 ? r : 0;
        if (r < 0) {
                w->scan_errors++;
                log_debug_errno(r, "The socket census failed: %m");
                return;
        }
        w->scans++;
        w->last_scan_usec = now_usec();
        w->last_scan_duration_usec = w->last_scan_usec - start;

        for (unsigned i = 0; i < m->n_groups; i++) {
                steered[i] = census_find(socks, n, w->group_cookie[i]);
                w->outside[i] = w->connected_reuseport[i] = w->connected[i] = 0;
        }
        if (n > 0) {
                found = calloc(n, sizeof(*found));
                if (!found)
                        return;
        }
        for (size_t k = 0; k < n; k++) {
                const CensusSocket *s = &socks[k];
                unsigned group = 0;
                CensusVerdict v;
                CensusFinding *f, *prev = NULL;

                for (unsigned i = 0; i < m->n_groups; i++)
                        if (s->connected && steered[i] && census_concerns(s, steered[i])) {
                                w->connected[i]++;
                                break;
                        }
                v = judge(m, s, steered, &group);
                if (v == CENSUS_NORMAL)
                        continue;
                f = &found[n_found++];
                for (size_t j = 0; j < w->n_findings; j++)
                        if (w->findings[j].sock.cookie == s->cookie && w->findings[j].verdict == v) {
                                prev = &w->findings[j];
                                break;
                        }
                if (prev) {
                        *f = *prev;
                        f->scans++;
                } else
                        *f = (CensusFinding) { .verdict = v, .scans = 1, .gen = generation_of_cookie(m, s->cookie) };
                f->sock = *s;
                f->group = group;
                f->reported = should_report(f);
                if (f->reported && !f->looked_up && n_lookups < PORTWATCH_OWNER_LOOKUPS) {
                        inodes[n_lookups] = s->inode;
                        lookup[n_lookups++] = n_found - 1;
                }
        }
        if (n_lookups > 0) {
                /* From the kernel side if it can: /proc/PID/fd of another user's process needs
                 * CAP_SYS_PTRACE, which the unit does not give grmd. */
                r = census_owners(w->census, inodes, n_lookups, pids, comms);
                if (r < 0) {
                        log_debug_errno(r, "The socket census cannot look for owners from the kernel, using /proc: %m");
                        r = census_find_owners("/proc", inodes, n_lookups, pids);
                        for (size_t j = 0; r >= 0 && j < n_lookups; j++)
                                if (pids[j] > 0)
                                        read_comm(pids[j], comms[j]);
                }
        }
        if (n_lookups > 0 && r >= 0)
                for (size_t j = 0; j < n_lookups; j++) {
                        CensusFinding *f = &found[lookup[j]];

                        f->looked_up = true;
                        f->pid = pids[j];
                        memcpy(f->comm, comms[j], sizeof(f->comm));
                        if (!f->gen && f->pid > 0) {
                                Generation *g = manager_find_generation_by_pid(m, f->pid);
                                if (g)
                                        f->gen = g->gen;
                        }
                }

        /* Gone since the last scan: what was reported and is not found again. */
        for (size_t j = 0; j < w->n_findings; j++) {
                const CensusFinding *old = &w->findings[j];
                bool still = false;

                if (!old->logged)
                        continue;
                for (size_t k = 0; k < n_found && !still; k++)
                        still = found[k].sock.cookie == old->sock.cookie && found[k].verdict == old->verdict;
                if (!still && old->group < m->n_groups)
                        log_finding(m, old, true);
        }
        for (size_t k = 0; k < n_found; k++) {
                CensusFinding *f = &found[k];

                if (!f->reported)
                        continue;
                if (f->verdict == CENSUS_OUTSIDE)
                        w->outside[f->group]++;
                else
                        w->connected_reuseport[f->group]++;
                if (!f->logged) {
                        log_finding(m, f, false);
                        f->logged = true;
                }
        }
        free(w->findings);
        w->findings = TAKE_PTR(found);
        w->n_findings = n_found;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        scan(m);
        (void) sd_event_source_set_time_relative(s, interval_usec());
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

void portwatch_start(Manager *m) {
        PortWatch *w = &m->portwatch;
        int r;

        w->log_limit = RATELIMIT_INIT(PORTWATCH_LOG_INTERVAL_USEC, PORTWATCH_LOG_BURST);
        if (m->n_groups == 0 || w->census || w->unavailable)
                return;
        /* Without the capability the load fails anyway, with a page of libbpf warnings. */
        if (!have_capability(CAP_PERFMON) && !have_capability(CAP_SYS_ADMIN))
                r = -EPERM;
        else
                r = census_new(&w->census);
        if (r < 0) {
                char why[256];

                if (r == -EPERM)
                        snprintf(why, sizeof(why), "loading the socket iterators needs CAP_PERFMON");
                else
                        snprintf(why, sizeof(why), "the socket iterators do not load: %s", strerror(-r));
                w->unavailable = strdup(why);
                log_notice("Socket census unavailable (%s): sockets outside the steered groups are not reported.", why);
                return;
        }
        for (unsigned i = 0; i < m->n_groups; i++)
                if (census_socket_cookie(m->groups[i].fd, &w->group_cookie[i]) < 0)
                        w->group_cookie[i] = 0;
        r = sd_event_add_time_relative(m->event, &w->timer, CLOCK_MONOTONIC, PORTWATCH_SOON_USEC, 100 * USEC_PER_MSEC,
                                       on_timer, m);
        if (r < 0) {
                log_warning_errno(r, "Failed to arm the socket census: %m");
                w->census = census_free(w->census);
                w->unavailable = strdup("its timer could not be armed");
                return;
        }
        (void) sd_event_source_set_description(w->timer, "portwatch");
        log_debug("Socket census of %u group(s) every %" PRIu64 " ms.", m->n_groups, interval_usec() / USEC_PER_MSEC);
}

void portwatch_soon(Manager *m) {
        PortWatch *w = &m->portwatch;
        uint64_t next = 0, soon = usec_add(now_usec(), PORTWATCH_SOON_USEC);

        if (!w->timer)
                return;
        if (sd_event_source_get_time(w->timer, &next) >= 0 && next <= soon)
                return;
        (void) sd_event_source_set_time(w->timer, soon);
}

void portwatch_done(Manager *m) {
        PortWatch *w = &m->portwatch;

        w->timer = sd_event_source_disable_unref(w->timer);
        w->census = census_free(w->census);
        free(w->unavailable);
        w->unavailable = NULL;
        free(w->findings);
        w->findings = NULL;
        w->n_findings = 0;
}
