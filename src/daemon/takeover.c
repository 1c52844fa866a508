/* SPDX-License-Identifier: MIT */
/*
 * Start-up and hand-over: how a grmd comes to own its sockets and instances. At start-up it
 * takes the sockets systemd (or a previous grmd, through the fd store or an exec) passed, opens
 * the --listen ones it lacks, attaches the steering program, and, if a vault holds a snapshot
 * (snapshot.c), takes over the previous grmd's maps and generations. grmctl reexec hands
 * everything to a new image of the same process the same way.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/pidfd.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "macro.h"
#include "manager.h"

static bool has_prefix(const char *s, const char *prefix) {
        return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static Group *find_group_by_address(Manager *m, const char *address) {
        for (unsigned i = 0; i < m->n_groups; i++)
                if (streq(m->groups[i].address, address))
                        return &m->groups[i];
        return NULL;
}

/* The snapshot's groups must be ours, in the same order: group indexes are in the flow table
 * and the socket array. Reorders m->groups to match; false if they do not. */
static bool snapshot_groups_match(Manager *m, const Snapshot *s) {
        unsigned n = 0;

        for (size_t i = 0; i < s->n_groups; i++) {
                const SnapshotGroup *sg = &s->groups[i];
                Group *g, tmp;

                if (sg->index >= m->n_groups)
                        return false;
                g = find_group_by_address(m, sg->address);
                if (!g)
                        return false;
                tmp = m->groups[sg->index];
                m->groups[sg->index] = *g;
                *g = tmp;
                n++;
        }
        return n == m->n_groups;
}

/* Takes over the generations of an earlier grmd from its snapshot (maps already adopted). */
static int restore_generations(Manager *m, Snapshot *s) {
        Generation **tail = &m->generations;
        uint32_t working_slot, pending_slot;
        unsigned live = 0;
        int r;

        m->last_gen = s->last_gen;
        m->crash_count = s->crash_count;
        m->restarts_done = s->restarts_done;
        m->restarts_failed = s->restarts_failed;
        m->vault_seq = s->seq;

        /* The generations move from the snapshot to the manager, in the snapshot's order. */
        while (*tail)
                tail = &(*tail)->next;
        *tail = s->generations;
        s->generations = NULL;

        for (Generation *g = *tail; g; g = g->next) {
                g->manager = m;
                if (!gen_state_is_live(g->state))
                        continue;
                if (g->pidfd < 0 || generation_watch(g) < 0) {
                        /* Without a handle on its process it cannot be supervised. */
                        log_warning("Generation %" PRIu32 " (pid %d) cannot be watched; treating it as gone.",
                                    g->gen, (int) g->pid);
                        g->state = g->ready_usec ? GEN_EXITED : GEN_FAILED;
                        generation_release_slot(g);
                        continue;
                }
                live++;
                if (g->state == GEN_WORKING)
                        m->working = g;
                else if (g->state == GEN_STARTING)
                        (void) generation_set_timer(g, usec_add(g->spawned_usec, m->config.start_timeout_usec));
                else if (g->state == GEN_DRAINING && g->drain_deadline_usec != USEC_INFINITY)
                        (void) generation_set_timer(g, g->drain_deadline_usec);
        }

        /* The maps are the truth about the flip: a grmd that died right after moving the working
         * generation (before its snapshot said so) leaves a starting generation that is in fact
         * working. Finish what it did: that generation works, the older ones drain. */
        steering_get_working(m->steering, &working_slot, &pending_slot);
        for (Generation *g = m->generations; g; g = g->next)
                if (g->state == GEN_STARTING && g->slot_held && g->slot == working_slot) {
                        log_notice("Generation %" PRIu32 " was made the working one just before the previous grmd died.",
                                   g->gen);
                        restart_adopt_flip(m, g);
                        break;
                }
        restart_adopt_standby(m);
        if (m->working && m->working->slot != working_slot)
                /* The other way round cannot happen (the snapshot follows the map update), but the
                 * map must name the working generation whatever happened. */
                (void) steering_set_working(m->steering, m->working->slot, GRM_SLOT_NONE);

        /* A restart that was under way goes on, with nobody waiting for its result. */
        for (Generation *g = m->generations; g; g = g->next)
                if (g->state == GEN_STARTING && !m->restart) {
                        r = restart_adopt(m, g);
                        if (r < 0)
                                return r;
                }
        return (int) live;
}

/* A snapshot this grmd cannot adopt (issue 8, item 8): the safest thing is to touch nothing.
 * Its instances keep serving and draining with the steering program and maps they have (the
 * program stays attached to the groups and holds the maps); they are never killed. This grmd
 * attaches no program, starts no generation of its own on their sockets, answers status and
 * refuses restarts with the reason, and keeps the snapshot (its copy in our vault) in the fd
 * store for a grmd that can take it over. */
static int hold(Manager *m, Snapshot *s, const char *reason, int notify_fd) {
        char pids[256] = "";
        size_t len = 0;
        int r;

        for (Generation *g = s->generations; g && len < sizeof(pids) - 16; g = g->next)
                if (gen_state_is_live(g->state)) {
                        int n = snprintf(pids + len, sizeof(pids) - len, "%s%d", len ? ", " : "", (int) g->pid);
                        if (n > 0)
                                len += (size_t) n;
                }
        snapshot_free(s);
        m->held_reason = strdup(reason);
        if (!m->held_reason)
                return log_error_errno(ENOMEM, "Out of memory.");
        manager_log_event(LOG_ERR, MESSAGE_TAKEOVER_REFUSED, "takeover-refused", NULL, NULL,
                          "Cannot take over the previous grmd's instances (pids %s): %s. They keep serving and "
                          "draining as they are; this grmd starts nothing on their sockets and refuses restarts. "
                          "Stop the service to start afresh, or run a grmd that can take them over.",
                          len ? pids : "none", reason);

        r = notify_open(m, notify_fd);
        if (r >= 0)
                r = ctl_server_open(m);
        if (r < 0)
                return r;
        r = manager_watch_stop_signals(m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch SIGTERM/SIGINT: %m");
        /* Up, degraded: systemd must not kill grmd for a missing READY=1 and go round again. */
        (void) sd_notify(false, "READY=1");
        manager_state_changed(m);
        return 0;
}

static int store_listen_socket(Group *g) {
        if (!getenv("NOTIFY_SOCKET"))
                return 0;
        /* Kept by systemd across grmd restarts (FileDescriptorStoreMax=), like a .socket's. */
        if (sd_pid_notify_with_fds(0, false, "FDSTORE=1\nFDNAME=" LISTEN_FDNAME, &g->fd, 1) <= 0)
                log_debug("Could not store the socket for %s in the fd store.", g->address);
        return 0;
}

int takeover_startup(Manager *m) {
        _cleanup_free_ char *error = NULL;
        _cleanup_strv_free_ char **names = NULL;
        Snapshot *snapshot = NULL;
        int notify_fd = -EBADF, n, r, live = 0;
        size_t n_listen;

        r = manager_load_config(m, &m->config, &error);
        if (r < 0)
                return log_error_errno(r, "Invalid configuration: %s", error ? error : strerror(-r));

        /* The control path first: a grmd that must not run (another one answers there) touches
         * neither the groups nor their programs. */
        r = ctl_server_bind(m);
        if (r < 0)
                return r;

        r = steering_new(m->config.flow_table_size, &m->steering);
        if (r < 0)
                return log_error_errno(r, "Failed to set up steering: %m");

        /* Our vault first, in the fd store before anything is taken off an inherited one: the
         * snapshots move into it copy first, so that the store holds them at every moment, even
         * if this grmd dies before it has taken over (issue 8, item 6). */
        r = vault_open(m);
        if (r < 0)
                return r;
        vault_store(m);

        /* From systemd (or from ourselves before an exec): the .socket unit's sockets, and from
         * the fd store our own: vaults, the notify socket, --listen sockets. */
        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to receive sockets from systemd: %m");
        n_listen = strv_length(m->config.listen);
        if ((size_t) n + n_listen > GRM_MAX_GROUPS + 64)
                return log_error_errno(E2BIG, "Too many file descriptors passed (%d).", n);
        m->groups = calloc((size_t) n + n_listen + 1, sizeof(Group));
        if (!m->groups)
                return log_error_errno(ENOMEM, "Out of memory.");
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names && names[i] ? names[i] : "?";
                bool from_listen = streq(name, LISTEN_FDNAME);

                if (has_prefix(name, VAULT_PREFIX)) {
                        Snapshot *v = NULL;
                        if (vault_take(m, fd, &v) >= 0) {
                                if (!snapshot || v->seq > snapshot->seq) {
                                        snapshot_free(snapshot);
                                        snapshot = v;
                                } else
                                        snapshot_free(v);
                        }
                        safe_close(fd);
                        (void) strv_extend(&m->old_vaults, name);
                        continue;
                }
                if (streq(name, NOTIFY_FDNAME)) {
                        safe_close(notify_fd);
                        notify_fd = fd;
                        continue;
                }
                if (m->n_groups >= GRM_MAX_GROUPS)
                        return log_error_errno(E2BIG, "Too many sockets; at most %u are supported.", GRM_MAX_GROUPS);
                r = group_from_fd(fd, from_listen ? NULL : names ? names[i] : NULL, &m->groups[m->n_groups]);
                if (r == -EADDRINUSE)
                        return log_error_errno(r, "Socket %d (%s) does not have SO_REUSEPORT: set ReusePort=yes in the .socket unit.",
                                               fd, name);
                if (r == -ENOTCONN)
                        return log_error_errno(r, "Socket %d (%s) is a TCP socket that does not listen: use Accept=no in the .socket unit.",
                                               fd, name);
                if (r < 0)
                        return log_error_errno(r, "Socket %d (%s) cannot be managed (grmd manages bound UDP sockets and listening TCP sockets): %m",
                                               fd, name);
                m->groups[m->n_groups].stored = from_listen;
                m->n_groups++;
        }
        /* Test hook: the vaults have been read, nothing of ours is stored yet but the copies. */
        test_kill_point("recovered");
        for (size_t i = 0; i < n_listen; i++) {
                bool have = false;

                /* Already passed back to us (fd store, exec)? */
                for (unsigned k = 0; k < m->n_groups && !have; k++)
                        have = group_has_address(&m->groups[k], m->config.listen[i]);
                if (have)
                        continue;
                if (m->n_groups >= GRM_MAX_GROUPS)
                        return log_error_errno(E2BIG, "Too many sockets; at most %u are supported.", GRM_MAX_GROUPS);
                r = group_listen(m->config.listen[i], m->config.receive_buffer, &m->groups[m->n_groups]);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen on %s: %m", m->config.listen[i]);
                (void) store_listen_socket(&m->groups[m->n_groups]);
                m->groups[m->n_groups].stored = true;
                m->n_groups++;
        }
        if (m->n_groups == 0)
                return log_error_errno(EINVAL, "No sockets: run from a .socket unit or give --listen udp:ADDR:PORT (or tcp:ADDR:PORT).");

        if (snapshot) {
                char why[256];

                if (snapshot_check(snapshot, why, sizeof(why)) < 0)
                        return hold(m, snapshot, why, notify_fd);
                if (!snapshot_groups_match(m, snapshot))
                        return hold(m, snapshot, "the sockets changed since the previous grmd (other addresses, or another order)",
                                    notify_fd);
                r = steering_adopt_maps(m->steering, snapshot->map_fds);
                if (r < 0) {
                        snprintf(why, sizeof(why), "its steering maps cannot be taken over: %s", strerror(-r));
                        return hold(m, snapshot, why, notify_fd);
                }
                /* The head sockets the vault kept (group.c): still first in the kernel's lookup. */
                for (size_t i = 0; i < snapshot->n_groups; i++) {
                        SnapshotGroup *sg = &snapshot->groups[i];

                        if (sg->head_fd < 0)
                                continue;
                        group_drop_head(&m->groups[sg->index]);
                        m->groups[sg->index].head_fd = TAKE_FD(sg->head_fd);
                        m->groups[sg->index].has_head = true;
                }
        }

        for (unsigned i = 0; i < m->n_groups; i++) {
                m->groups[i].index = i;
                r = steering_add_group(m->steering, m->groups[i].fd, &m->groups[i].index);
                if (r < 0 && snapshot && i == 0) {
                        /* The adopted maps are checked here (their layout, their ABI version); the
                         * old program is still attached everywhere. */
                        char why[256];

                        snprintf(why, sizeof(why), "its steering maps do not fit this grmd's program: %s", strerror(-r));
                        return hold(m, snapshot, why, notify_fd);
                }
                if (r < 0) {
                        snapshot_free(snapshot);
                        return log_error_errno(r, "Failed to attach the steering program to %s: %m",
                                               m->groups[i].address);
                }
                log_info("Steering %s (%s).", m->groups[i].address, m->groups[i].name);
        }
        r = steering_set_settings(m->steering, m->config.dissector, m->config.flow_timeout_usec);
        if (r >= 0)
                r = steering_set_flow_quota(m->steering, (unsigned) m->config.flows_per_source);
        if (r < 0) {
                snapshot_free(snapshot);
                return log_error_errno(r, "Failed to configure steering: %m");
        }
        portwatch_start(m);

        r = notify_open(m, notify_fd);
        if (r >= 0)
                r = ctl_server_open(m);
        if (r < 0) {
                snapshot_free(snapshot);
                return r;
        }

        r = manager_watch_stop_signals(m);
        if (r < 0) {
                snapshot_free(snapshot);
                return log_error_errno(r, "Failed to watch SIGTERM/SIGINT: %m");
        }

        if (snapshot) {
                live = restore_generations(m, snapshot);
                snapshot_free(snapshot);
                if (live < 0)
                        return log_error_errno(live, "Failed to restore generations: %m");
                manager_log_event(LOG_NOTICE, MESSAGE_STATE_RECOVERED, "state-recovered", m->working, NULL,
                          "Took over %d running generation(s) from the previous grmd; working generation %" PRIu32 ".",
                          live, m->working ? m->working->gen : 0);
                manager_state_changed(m);
                if (m->working)
                        (void) sd_notify(false, "READY=1");
        }
        if (!m->working && !m->restart)
                /* The first generation starts like any restart, without a requester. */
                (void) restart_request(m, NULL, USEC_INFINITY);
        else
                manager_state_changed(m);
        return 0;
}

/* grmctl reexec: the same process runs grmd's binary again (a new version, after an upgrade),
 * handing everything over the way systemd hands over stored fds. Only returns on failure. */
int takeover_reexec(Manager *m) {
        _cleanup_free_ char *names = NULL;
        int fds[GRM_MAX_GROUPS + 2], n = 0;
        size_t names_len = 0;
        char buf[32];

        if (!m->exe_path || access(m->exe_path, X_OK) < 0)
                return log_error_errno(errno ? errno : ENOENT, "Cannot re-execute %s: %m", strempty(m->exe_path));
        (void) vault_save(m);

        for (unsigned i = 0; i <= m->n_groups + 1; i++) {
                const char *name;
                int fd;

                if (i < m->n_groups) {
                        fd = m->groups[i].fd;
                        name = m->groups[i].stored ? LISTEN_FDNAME : m->groups[i].name;
                } else if (i == m->n_groups) {
                        fd = m->notify_fd;
                        name = NOTIFY_FDNAME;
                } else {
                        fd = m->vault_r;
                        name = m->vault_name;
                }
                fds[n++] = fd;
                size_t l = strlen(name);
                char *p = realloc(names, names_len + l + 2);
                if (!p)
                        return log_error_errno(ENOMEM, "Out of memory.");
                names = p;
                if (names_len)
                        names[names_len++] = ':';
                memcpy(names + names_len, name, l + 1);
                names_len += l;
        }

        /* Into 3, 4, ... without O_CLOEXEC: first above the range, then into place. */
        for (int i = 0; i < n; i++) {
                fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, SD_LISTEN_FDS_START + n);
                if (fds[i] < 0)
                        return log_error_errno(errno, "Failed to prepare fds for exec: %m");
        }
        log_notice("Re-executing %s.", m->exe_path);
        for (int i = 0; i < n; i++)
                if (dup2(fds[i], SD_LISTEN_FDS_START + i) < 0)
                        _exit(EXIT_FAILURE); /* the event loop's fds may be gone: start over */
        snprintf(buf, sizeof(buf), "%d", n);
        setenv("LISTEN_FDS", buf, 1);
        snprintf(buf, sizeof(buf), "%d", (int) getpid());
        setenv("LISTEN_PID", buf, 1);
        setenv("LISTEN_FDNAMES", names, 1);
        execv(m->exe_path, m->argv);
        log_error_errno(errno, "Failed to re-execute %s: %m; exiting so that systemd restarts grmd.", m->exe_path);
        _exit(EXIT_FAILURE);
}
