/* SPDX-License-Identifier: MIT */
/*
 * One generation: its sockets (one set per group, registered in the steering maps before the
 * instance starts), its process (spawned in the socket-activation convention, in a cgroup, a
 * session and a process group of its own, as the configured user with no capabilities), and
 * its timer.
 * Decisions about what a generation's events mean are restart.c's.
 */
#include <elf.h>
#include <limits.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "config-build.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "spawn.h"

extern char **environ;

uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

Generation *manager_find_generation_by_pid(Manager *m, pid_t pid) {
        pid_t pgid;

        if (pid <= 0)
                return NULL;
        for (Generation *g = m->generations; g; g = g->next)
                if (gen_state_is_live(g->state) && g->pid == pid)
                        return g;
        /* A child of the instance: it runs in the instance's process group. */
        pgid = getpgid(pid);
        if (pgid <= 0)
                return NULL;
        for (Generation *g = m->generations; g; g = g->next)
                if (gen_state_is_live(g->state) && g->pid == pgid)
                        return g;
        return NULL;
}

void generation_close_sockets(Generation *g) {
        if (!g->fds)
                return; /* adopted from an earlier grmd: we never had them */
        for (unsigned i = 0; i < g->n_fds; i++)
                g->fds[i] = safe_close(g->fds[i]);
}

uint64_t generation_packets(Generation *g) {
        uint64_t n = 0;

        if (!g->slot_held || !g->manager || !g->manager->steering)
                return g->packets_at_exit;
        if (steering_get_slot_packets(g->manager->steering, g->slot, &n) < 0)
                return 0;
        return n;
}

void generation_tcp(Generation *g, uint64_t *ret_connections, uint64_t *ret_migrated) {
        *ret_connections = g->tcp_connections_at_exit;
        *ret_migrated = g->tcp_migrated_at_exit;
        if (g->slot_held &&
            steering_get_slot_tcp(g->manager->steering, g->slot, ret_connections, ret_migrated) < 0)
                *ret_connections = *ret_migrated = 0;
}

bool manager_has_tcp(const Manager *m) {
        for (unsigned i = 0; i < m->n_groups; i++)
                if (m->groups[i].type == SOCK_STREAM)
                        return true;
        return false;
}

void generation_release_slot(Generation *g) {
        if (!g->slot_held)
                return;
        if (!g->manager || !g->manager->steering) {
                /* Never registered anywhere (a snapshot's, or a test's stand-in). */
                g->slot_held = false;
                generation_close_sockets(g);
                return;
        }
        g->packets_at_exit = generation_packets(g);
        generation_tcp(g, &g->tcp_connections_at_exit, &g->tcp_migrated_at_exit);
        (void) steering_slot_release(g->manager->steering, g->slot);
        g->slot_held = false;
        generation_close_sockets(g);
}

Generation *generation_free(Generation *g) {
        if (!g)
                return NULL;
        generation_release_slot(g);
        generation_close_sockets(g);
        generation_cgroup_free(g);
        free(g->fds);
        sd_event_source_disable_unref(g->child_source);
        sd_event_source_disable_unref(g->timer);
        g->pidfd = safe_close(g->pidfd);
        free(g->status);
        free(g->failure);
        free(g->bind_error);
        free(g->cookies);
        free(g->watch);
        free(g);
        return NULL;
}

const char *generation_explain(Generation *g, const char *why, char *buf, size_t size) {
        if (!g->bind_error)
                return why;
        snprintf(buf, size, "%s (%s)", why, g->bind_error);
        return buf;
}

int generation_signal(Generation *g, int sig, bool whole_group) {
        if (g->pid <= 0 || g->state == GEN_EXITED)
                return -ESRCH;
        /* Killing the whole generation: its cgroup, which a setsid() does not leave. */
        if (whole_group && sig == SIGKILL && generation_cgroup_kill(g) == 0) {
                (void) kill(-g->pid, sig);
                return 0;
        }
        if (whole_group && kill(-g->pid, sig) == 0)
                return 0;
        /* The process group may already be gone while the pidfd still works, or the other way. */
        if (g->pidfd >= 0 && pidfd_send_signal(g->pidfd, sig, NULL, 0) == 0)
                return 0;
        if (kill(g->pid, sig) < 0)
                return negative_errno();
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Generation *g = userdata;

        restart_on_timer(g->manager, g);
        return 0;
}

int generation_set_timer(Generation *g, uint64_t usec) {
        g->timer = sd_event_source_disable_unref(g->timer);
        if (usec == USEC_INFINITY)
                return 0;
        return sd_event_add_time(g->manager->event, &g->timer, CLOCK_MONOTONIC, usec, 10 * USEC_PER_MSEC,
                                 on_timer, g);
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Generation *g = userdata;
        char why[128];

        if (si->si_code == CLD_EXITED)
                snprintf(why, sizeof(why), "exited with status %d", si->si_status);
        else
                snprintf(why, sizeof(why), "killed by signal %s%s",
                         strempty(signal_to_name(si->si_status)),
                         si->si_code == CLD_DUMPED ? " (core dumped)" : "");

        g->child_source = sd_event_source_disable_unref(g->child_source);
        g->pidfd = safe_close(g->pidfd);
        /* Whatever the instance left behind ends with it, wherever its session. */
        generation_cgroup_release(g);
        if (g->state == GEN_STARTING) {
                /* A server that could not bind exits: say which address it could not have. */
                char buf[sizeof(why) + 160];
                restart_on_exited(g->manager, g, generation_explain(g, why, buf, sizeof(buf)));
        } else
                restart_on_exited(g->manager, g, why);
        return 0;
}

/* An instance adopted from an earlier grmd that was not its parent: the pidfd says when it is
 * gone, but not how (its parent, not us, collects the status). */
static int on_pidfd_readable(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Generation *g = userdata;

        g->child_source = sd_event_source_disable_unref(g->child_source);
        g->pidfd = safe_close(g->pidfd);
        generation_cgroup_release(g);
        restart_on_exited(g->manager, g, "exited (status unknown: it was started by an earlier grmd)");
        return 0;
}

int generation_watch(Generation *g) {
        siginfo_t si = {};

        g->child_source = sd_event_source_disable_unref(g->child_source);
        if (g->pidfd < 0)
                return -EBADF;
        /* Adopted from an earlier grmd: its cgroup is where its main process runs, and the
         * steering goes on being checked (the takeover attached grm's program again). */
        (void) generation_cgroup_adopt(g);
        if (!g->fds && !g->manager->verify_started)
                manager_verify_steering(g->manager, false);
        /* Our child (we spawned it, or we are the same process after an exec)? */
        if (waitid(P_PIDFD, (id_t) g->pidfd, &si, WEXITED | WNOHANG | WNOWAIT) == 0)
                return sd_event_add_child_pidfd(g->manager->event, &g->child_source, g->pidfd, WEXITED,
                                                on_child, g);
        if (errno != ECHILD)
                return negative_errno();
        return sd_event_add_io(g->manager->event, &g->child_source, g->pidfd, EPOLLIN, on_pidfd_readable, g);
}

static bool env_is_ours(const char *e) {
        static const char *const prefixes[] = {
                "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=", "NOTIFY_SOCKET=", "WATCHDOG_PID=",
                "WATCHDOG_USEC=", "GRM_GENERATION=", "GRM_BIND_FDS=", "GRM_BIND_INTERCEPT=",
                "GRM_BIND_PER_CLIENT=", "GRM_BIND_LOCK=", "GRM_QUIC_SERVER_IDS=", "GRM_QUIC_CONFIG_ID=",
        };
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if (strncmp(e, prefixes[i], strlen(prefixes[i])) == 0)
                        return true;
        return false;
}

/* The preload library of --intercept-bind and --connect-per-client: $GRM_BIND_LIBRARY (an
 * uninstalled build, the tests), else where meson installed it. */
const char *generation_bind_library(void) {
        const char *p = getenv("GRM_BIND_LIBRARY");
        return p && *p == '/' ? p : GRM_BIND_LIBRARY;
}

/* LD_PRELOAD with the library first, GRM_BIND_FDS naming every socket the instance gets (the
 * library reads their addresses from the sockets themselves: the addresses grm manages), and
 * what the library does with a bind() of one of them: GRM_BIND_INTERCEPT=1 hands out the
 * generation's sockets (InterceptBind=), GRM_BIND_PER_CLIENT=1 binds per-client sockets into
 * grm's group and takes them out at connect() (ConnectPerClient=; src/preload/grm-bind.c). */
/* The file whose flock(2) the instances' libgrm-bind.so take around a per-client bind and around
 * a connect and its SO_REUSEPORT clear: so that no process of any generation (a server's forked
 * workers, the old and the new instance around a flip) binds a per-client socket in the moment
 * another's is connected but not yet cleared, which would put it outside grm's group. A path
 * beside the control socket, so that it outlives grmd; readable by the instances' user (a lock
 * needs only a read-only descriptor). NULL if it cannot be made: the library then does without. */
static const char *bind_lock_path(Manager *m) {
        static char path[PATH_MAX];
        static bool warned;
        const char *slash;
        int fd;

        if (!m->ctl_path || !(slash = strrchr(m->ctl_path, '/')) ||
            (size_t) (slash - m->ctl_path) + sizeof("/grmd.bind-lock") > sizeof(path))
                return NULL;
        snprintf(path, sizeof(path), "%.*s/grmd.bind-lock", (int) (slash - m->ctl_path), m->ctl_path);
        fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
        if (fd < 0) {
                if (!warned)
                        log_warning_errno(errno, "Cannot create %s for the instances' per-client binds (%m); "
                                          "their processes will not exclude each other's binds.", path);
                warned = true;
                return NULL;
        }
        (void) fchmod(fd, 0644); /* whatever the umask */
        close(fd);
        return path;
}

static int add_bind_interception(char ***env, unsigned n_fds, bool intercept, bool per_client,
                                 const char *lock_path) {
        const char *preload = getenv("LD_PRELOAD");
        char fds[GRM_MAX_GROUPS * GRM_MAX_SOCKS_PER_GEN * 6 + 16] = "GRM_BIND_FDS=";
        size_t len = strlen(fds);
        int r;

        for (unsigned i = 0; i < n_fds && len + 8 < sizeof(fds); i++)
                len += (size_t) snprintf(fds + len, sizeof(fds) - len, "%s%u", i ? " " : "", 3 + i);
        r = strv_extend(env, fds);
        if (r < 0)
                return r;
        r = strv_extend(env, intercept ? "GRM_BIND_INTERCEPT=1" : "GRM_BIND_INTERCEPT=0");
        if (r < 0)
                return r;
        if (per_client) {
                r = strv_extend(env, "GRM_BIND_PER_CLIENT=1");
                if (r < 0)
                        return r;
                if (lock_path) {
                        r = strv_extendf(env, "GRM_BIND_LOCK=%s", lock_path);
                        if (r < 0)
                                return r;
                }
        }
        return strv_extendf(env, "LD_PRELOAD=%s%s%s", generation_bind_library(), preload && *preload ? ":" : "",
                            strempty(preload));
}

/* Whether the program execvp() would run for name is an ELF executable without an
 * interpreter: statically linked (Go binaries, musl static builds), so LD_PRELOAD never loads
 * libgrm-bind.so into it. Scripts and anything unreadable count as not static. */
static bool program_is_static(const char *name) {
        _cleanup_free_ char *found = NULL;
        Elf64_Ehdr eh;
        int fd;
        bool interp = false;

        if (!strchr(name, '/')) {
                const char *path = getenv("PATH");
                for (const char *p = path ? path : "/usr/local/bin:/usr/bin:/bin"; *p;) {
                        size_t n = strcspn(p, ":");
                        free(found);
                        if (asprintf(&found, "%.*s/%s", (int) n, p, name) < 0)
                                return false;
                        if (access(found, X_OK) == 0)
                                break;
                        p += n + (p[n] == ':');
                        free(found);
                        found = NULL;
                }
                if (!found)
                        return false;
                name = found;
        }
        fd = open(name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        if (pread(fd, &eh, sizeof(eh), 0) != sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
            eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256) {
                close(fd);
                return false;
        }
        for (unsigned i = 0; i < eh.e_phnum && !interp; i++) {
                Elf64_Phdr ph;
                if (pread(fd, &ph, sizeof(ph), (off_t) (eh.e_phoff + i * sizeof(ph))) != sizeof(ph))
                        break;
                interp = ph.p_type == PT_INTERP;
        }
        close(fd);
        return !interp && (eh.e_type == ET_EXEC || eh.e_type == ET_DYN);
}

/* GRM_QUIC_SERVER_IDS and GRM_QUIC_CONFIG_ID go to every instance, whatever the dissector: a
 * server that builds its connection IDs from them under "flow" is routable at once when a later
 * restart switches to "quic" (the dissector applies to every generation at the flip), and one
 * that ignores them is steered by the flow table under "quic" too (docs/QUIC.md). */
static int add_quic_environment(char ***env, const Config *config, unsigned slot, uint32_t gen,
                                unsigned n_groups, unsigned per_group) {
        _cleanup_free_ char *ids = NULL;
        int r;

        r = quic_lb_server_ids_env(&config->quic_prefix, slot, gen, n_groups, per_group, &ids);
        if (r < 0)
                return r;
        r = strv_extendf(env, "GRM_QUIC_SERVER_IDS=%s", ids);
        if (r < 0)
                return r;
        return strv_extendf(env, "GRM_QUIC_CONFIG_ID=%d", config->quic_config_id);
}

static int build_environment(Manager *m, uint32_t gen, unsigned slot, const Config *config,
                             unsigned n_fds, unsigned per_group, char ***ret) {
        bool intercept_bind = config->intercept_bind > 0, preload = intercept_bind || config->connect_per_client > 0;
        _cleanup_strv_free_ char **env = NULL;
        _cleanup_free_ char *names = NULL;
        size_t names_len = 0;
        int r;

        for (char **i = environ; i && *i; i++)
                if (!env_is_ours(*i) && !(preload && strncmp(*i, "LD_PRELOAD=", 11) == 0)) {
                        r = strv_extend(&env, *i);
                        if (r < 0)
                                return r;
                }
        if (preload) {
                r = add_bind_interception(&env, n_fds, intercept_bind, config->connect_per_client > 0,
                                          config->connect_per_client > 0 ? bind_lock_path(m) : NULL);
                if (r < 0)
                        return r;
        }

        for (unsigned gi = 0; gi < m->n_groups; gi++)
                for (unsigned k = 0; k < per_group; k++) {
                        size_t l = strlen(m->groups[gi].name);
                        char *n = realloc(names, names_len + l + 2);
                        if (!n)
                                return -ENOMEM;
                        names = n;
                        if (names_len > 0)
                                names[names_len++] = ':';
                        memcpy(names + names_len, m->groups[gi].name, l);
                        names_len += l;
                        names[names_len] = 0;
                }

        r = strv_extendf(&env, "LISTEN_FDNAMES=%s", names ? names : "");
        if (r >= 0)
                r = strv_extendf(&env, "NOTIFY_SOCKET=%s", m->notify_socket);
        if (r >= 0)
                r = strv_extendf(&env, "LISTEN_FDS=%u", n_fds);
        if (r >= 0)
                r = strv_extendf(&env, "GRM_GENERATION=%" PRIu32, gen);
        if (r < 0)
                return r;
        r = add_quic_environment(&env, config, slot, gen, m->n_groups, per_group);
        if (r < 0)
                return r;
        /* LISTEN_PID is only known in the child: a placeholder it overwrites. */
        r = strv_extend(&env, "LISTEN_PID=0000000000");
        if (r < 0)
                return r;

        *ret = TAKE_PTR(env);
        return 0;
}

int generation_spawn(Manager *m, uint32_t gen, unsigned slot, const Config *config,
                     uint64_t start_deadline_usec, Generation **ret) {
        _cleanup_strv_free_ char **env = NULL;
        SpawnUser user = {};
        Generation *g;
        unsigned per_group = config->sockets_per_generation;
        _cleanup_close_ int cgroup_procs_fd = -EBADF;
        int r;

        /* Whatever happened to the groups' programs since, every restart puts grm's back and
         * checks that it is in effect. */
        manager_verify_steering(m, true);
        m->spawn_error[0] = 0;

        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->manager = m;
        g->gen = gen;
        g->slot = slot;
        g->state = GEN_STARTING;
        g->pidfd = -EBADF;
        g->sockets_per_group = per_group;
        g->n_fds = m->n_groups * per_group;
        g->fds = malloc(sizeof(int) * g->n_fds);
        g->cookies = calloc(g->n_fds, sizeof(uint64_t));
        g->watch = calloc(g->n_fds, sizeof(SockWatch));
        if (!g->fds || !g->cookies || !g->watch) {
                free(g->fds);
                free(g->cookies);
                free(g->watch);
                free(g);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < g->n_fds; i++)
                g->fds[i] = -EBADF;

        r = spawn_resolve_user(config->user, &user);
        if (r < 0) {
                r = log_error_errno(r, "Failed to resolve user '%s': %s", config->user,
                                    r == -ESRCH ? "no such user" : strerror(-r));
                goto fail;
        }
        if (config->connect_per_client > 0 && user.set)
                /* The instance's per-client sockets can only join a group of their own uid: the
                 * whole group becomes the user's, the original first, and every new socket gets
                 * the original's owner (group_open_socket()). */
                for (unsigned gi = 0; gi < m->n_groups; gi++) {
                        if (m->groups[gi].type != SOCK_DGRAM)
                                continue;
                        r = group_set_owner(&m->groups[gi], user.uid, user.gid);
                        if (r < 0) {
                                snprintf(m->spawn_error, sizeof(m->spawn_error),
                                         "the socket of %s could not be given to user %s: %s%s", m->groups[gi].address,
                                         user.name ? user.name : config->user, strerror(-r),
                                         r == -EPERM ? " (grmd needs CAP_CHOWN for ConnectPerClient= with User=)" : "");
                                r = log_error_errno(r, "Failed to give the socket of %s to user %s (uid %u) for ConnectPerClient=yes: %m%s",
                                                    m->groups[gi].address, user.name ? user.name : config->user,
                                                    (unsigned) user.uid,
                                                    r == -EPERM ? " (grmd needs CAP_CHOWN for ConnectPerClient= with User=: docs/SYSTEMD.md)" : "");
                                goto fail;
                        }
                }

        if (config->connect_per_client > 0 && !m->portwatch.census)
                log_warning("ConnectPerClient=yes without the socket census (%s): a new socket that joins another "
                            "reuseport group than grm's, bound in the moment a per-client socket is connected, is "
                            "not found and bound again.", strempty(m->portwatch.unavailable));

        /* Sockets first: they join the group and the maps before the instance exists. */
        for (unsigned gi = 0; gi < m->n_groups; gi++)
                for (unsigned k = 0; k < per_group; k++) {
                        int *fd = &g->fds[gi * per_group + k];
                        unsigned rebinds = 0;

                        /* With the census, a socket that joined another group than the original's
                         * (in the moment a per-client socket is connected) is bound again. */
                        r = group_open_socket(&m->groups[gi], m->portwatch.census, config->receive_buffer, &rebinds, fd);
                        if (r < 0) {
                                if (r == -EXDEV)
                                        snprintf(m->spawn_error, sizeof(m->spawn_error),
                                                 "each new socket on %s joined a reuseport group that is not grm's (a process keeps connected sockets with SO_REUSEPORT there: see grmctl status)",
                                                 m->groups[gi].address);
                                r = log_error_errno(r, "Failed to open socket for generation %" PRIu32 " on %s: %s%s",
                                                    gen, m->groups[gi].address,
                                                    r == -EXDEV ? "each new socket joined a reuseport group that is not grm's" : strerror(-r),
                                                    r == -EPERM ? " (giving it the original socket's owner needs CAP_CHOWN)"
                                                    : r == -EADDRINUSE && config->connect_per_client > 0
                                                            ? " (with ConnectPerClient=, a running generation's sockets have another owner: were User= or ConnectPerClient= changed while it runs? Stop the service and start it again)"
                                                    : r == -EXDEV
                                                            ? " (a process keeps connected sockets with SO_REUSEPORT on the address: grmctl status lists them; ConnectPerClient=yes clears the option)"
                                                            : "");
                                goto fail;
                        }
                        if (rebinds > 0)
                                log_notice("Generation %" PRIu32 "'s socket on %s joined a reuseport group that is not grm's "
                                           "%u time%s (bound while a per-client socket was being connected): bound again.",
                                           gen, m->groups[gi].address, rebinds, rebinds == 1 ? "" : "s");
                        socklen_t clen = sizeof(uint64_t);
                        /* grmd closes its copy after the spawn; the cookie still names it. */
                        if (getsockopt(*fd, SOL_SOCKET, SO_COOKIE, &g->cookies[gi * per_group + k], &clen) < 0)
                                g->cookies[gi * per_group + k] = 0;
                        r = steering_register_socket(m->steering, gi, slot, k, *fd);
                        if (r < 0) {
                                r = log_error_errno(r, "Failed to register socket of generation %" PRIu32 " on %s: %m",
                                                    gen, m->groups[gi].address);
                                goto fail;
                        }
                }
        /* Then grmd's own socket after them, first in the kernel's lookup order (group.c):
         * a mitigation, so a failure only costs what it mitigates. */
        for (unsigned gi = 0; gi < m->n_groups; gi++) {
                r = group_renew_head(&m->groups[gi], m->portwatch.census);
                if (r < 0)
                        log_warning_errno(r, "Failed to bind grmd's head socket on %s after generation %" PRIu32
                                          "'s (a datagram may be lost if its instance dies): %m",
                                          m->groups[gi].address, gen);
        }
        /* Into the vault at once, so that the new head socket outlives a grmd that dies now. */
        (void) vault_save(m);
        r = steering_slot_activate(m->steering, slot, gen, per_group);
        if (r < 0) {
                r = log_error_errno(r, "Failed to activate slot %u for generation %" PRIu32 ": %m", slot, gen);
                goto fail;
        }
        g->slot_held = true;
        test_kill_point("spawn");

        /* The prefix this generation's connection IDs carry, under the config id it is given. */
        r = steering_set_quic_config(m->steering, (unsigned) config->quic_config_id, &config->quic_prefix);
        if (r < 0) {
                r = log_error_errno(r, "Failed to set the QUIC server ID prefix of config id %d: %m",
                                    config->quic_config_id);
                goto fail;
        }
        if (r > 0) {
                char hex[2 * GRM_QUIC_PREFIX_MAX + 1];

                log_warning("QuicServerIdPrefix=%s replaces the prefix of QuicConfigId=%d: connection IDs of older generations with that config id now fall back to the flow table (change QuicConfigId= along with the prefix).",
                            quic_lb_prefix_to_string(&config->quic_prefix, hex), config->quic_config_id);
        }

        if ((config->intercept_bind > 0 || config->connect_per_client > 0) &&
            access(generation_bind_library(), R_OK) < 0) {
                r = log_error_errno(errno, "%s=yes, but its library %s cannot be read: %m",
                                    config->intercept_bind > 0 ? "InterceptBind" : "ConnectPerClient",
                                    generation_bind_library());
                goto fail;
        }
        if (config->connect_per_client > 0 && config->intercept_bind <= 0 && program_is_static(config->command[0]))
                /* Nothing fails: its per-client sockets just stay outside grm's reach. */
                log_warning("ConnectPerClient=yes, but %s is statically linked: the preload library cannot "
                            "see its bind() and connect(), so its per-client sockets are not kept out of the way "
                            "of later generations (docs/SERVERS.md, \"Connect-per-client servers\").",
                            config->command[0]);
        if (config->intercept_bind > 0 && program_is_static(config->command[0])) {
                /* It starts anyway (it may use socket activation after all), but a bind of its
                 * own will meet grm's sockets: say why before it fails. */
                log_warning("InterceptBind=yes, but %s is statically linked: the preload library cannot "
                            "intercept its bind(); it must take its sockets by socket activation (LISTEN_FDS).",
                            config->command[0]);
                g->bind_error = strdup("its program is statically linked: bind interception cannot reach it");
        }
        r = build_environment(m, gen, slot, config, g->n_fds, per_group, &env);
        if (r < 0) {
                r = log_error_errno(r, "Failed to build the instance environment: %m");
                goto fail;
        }

        r = generation_cgroup_create(g, &cgroup_procs_fd);
        if (r < 0) {
                r = log_error_errno(r, "Failed to create a cgroup for generation %" PRIu32 " under %s: %m",
                                    gen, strempty(m->cgroup_fs_base));
                goto fail;
        }

        r = generation_set_timer(g, start_deadline_usec);
        if (r < 0) {
                r = log_error_errno(r, "Failed to arm start timer: %m");
                goto fail;
        }

        fflush(stdout);
        fflush(stderr);
        g->pid = fork();
        if (g->pid < 0) {
                r = log_error_errno(errno, "Failed to fork: %m");
                goto fail;
        }
        if (g->pid == 0)
                spawn_child_exec(&(const SpawnParams) {
                        .what = "instance",
                        .fds = g->fds,
                        .n_fds = g->n_fds,
                        .argv = config->command,
                        .env = env,
                        .user = &user,
                        .cgroup_procs_fd = cgroup_procs_fd,
                });

        g->spawned_usec = now_usec();
        /* The instance holds the sockets now. grmd keeps no copy, so a socket lives exactly as
         * long as the instance keeps it open: once closed it leaves the group and the socket
         * array, and its flows go to the working generation instead of queueing unread. */
        generation_close_sockets(g);
        g->pidfd = pidfd_open(g->pid, 0);
        if (g->pidfd >= 0)
                r = generation_watch(g);
        else if (errno == ENOSYS)
                /* No pidfd_open(): valgrind 3.19 (tests/integration/valgrind.sh) or a seccomp
                 * filter. Our own child is then watched by pid (SIGCHLD) and signalled with
                 * kill(); without a pidfd it cannot be handed to a later grmd. */
                r = sd_event_add_child(m->event, &g->child_source, g->pid, WEXITED, on_child, g);
        else
                r = negative_errno();
        if (r < 0) {
                r = log_error_errno(r, "Failed to watch process %d: %m", (int) g->pid);
                (void) kill(g->pid, SIGKILL);
                (void) waitpid(g->pid, NULL, 0);
                goto fail;
        }

        spawn_user_done(&user);
        g->next = m->generations;
        m->generations = g;
        sockwatch_arm(m);
        *ret = g;
        return 0;

fail:
        spawn_user_done(&user);
        g->pid = 0;
        g->state = GEN_FAILED; /* nothing of it lives on: its cgroup goes too */
        generation_free(g);
        return r;
}
