/* SPDX-License-Identifier: MIT */
/*
 * Every generation in a cgroup v2 of its own, so that it ends whole: a process that leaves its
 * session and process group (setsid(), a daemonising instance) is still in the cgroup, and
 * cgroup.kill ends it at the drain deadline, on a failed start, and when the instance's main
 * process exits (which is also how grmd's stop ends each generation).
 *
 * Where: under grmd's own cgroup. As a systemd service with Delegate=yes grmd owns its unit's
 * cgroup: generations are BASE/gen-N in it. Otherwise grmd makes BASE = its cgroup/grmd-HASH
 * (HASH of the control socket path: stable across grmd restarts, distinct for two grmds in one
 * cgroup). grmd stays in its own cgroup and enables no controller for the generations: with
 * systemd 252, a delegated unit whose cgroup has controllers enabled for its subtree cannot
 * take a new main process, so a grmd restarted after a crash could not start (DelegateSubgroup=
 * arrived in systemd 254). cpu.stat exists in every v2 cgroup; memory.current only where the
 * memory controller reaches the generations' cgroups.
 *
 * Where no cgroup can be had (no v2 hierarchy, not writable, a systemd unit without
 * Delegate=yes), generations live in process groups only, and grmd says so once.
 *
 * A generation's cgroup is found again after a grmd crash from its main process: the snapshot
 * has its pid and a pidfd that proves it is the same process, and /proc/PID/cgroup says where
 * it runs. Names are gen-N, or gen-N.K when gen-N is still populated by a process grmd does
 * not know (an earlier grmd's instance that could not be taken over).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "cgroup-util.h"
#include "log.h"
#include "macro.h"
#include "manager.h"

#define CGROUP_RELEASE_POLL_USEC (20 * USEC_PER_MSEC)
#define CGROUP_RELEASE_TIMEOUT_USEC (5 * USEC_PER_SEC)
#define CGROUP_NAME_TRIES 100

static bool endswith(const char *s, const char *suffix) {
        size_t n = strlen(s), k = strlen(suffix);
        return n >= k && streq(s + n - k, suffix);
}

static int read_file(const char *dir, const char *name, char *buf, size_t size) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        n = read(fd, buf, size - 1);
        if (n < 0)
                return negative_errno();
        buf[n] = 0;
        return 0;
}

static int write_file(const char *dir, const char *name, const char *value) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (write(fd, value, strlen(value)) < 0)
                return negative_errno();
        return 0;
}

/* 1 if the cgroup (fs path) has processes, 0 if not, -errno if it cannot be read. */
static int cgroup_populated(const char *fs_path) {
        char buf[256];
        uint64_t v;
        int r;

        r = read_file(fs_path, "cgroup.events", buf, sizeof(buf));
        if (r < 0)
                return r;
        r = cgroup_keyed_value(buf, "populated", &v);
        if (r < 0)
                return r;
        return v != 0;
}

/* Delegated to us by systemd (Delegate=yes sets these xattrs since systemd 251)? */
static bool cgroup_delegated(const char *fs_path) {
        static const char *const names[] = { "trusted.delegate", "user.delegate" };
        char v[8];

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                ssize_t n = getxattr(fs_path, names[i], v, sizeof(v) - 1);
                if (n > 0) {
                        v[n] = 0;
                        if (streq(v, "1"))
                                return true;
                }
        }
        return false;
}

static void cgroup_off(Manager *m, const char *why) {
        m->cgroup_mode = CGROUP_MODE_PROCESS_GROUP;
        log_warning("Generations run in process groups only (%s): a process that leaves its process "
                    "group (setsid(), a daemonising instance) can outlive its generation.", why);
}

void manager_cgroup_setup(Manager *m) {
        _cleanup_free_ char *own = NULL, *base = NULL, *fs_own = NULL, *fs_base = NULL;
        const char *mount, *leaf, *invocation = getenv("INVOCATION_ID");
        char name[64];
        int r;

        if (m->cgroup_mode != CGROUP_MODE_UNKNOWN)
                return;
        if (cgroup_find_mount(&mount) < 0)
                return cgroup_off(m, "no cgroup v2 hierarchy at " CGROUP2_HYBRID_MOUNT " or " CGROUP2_UNIFIED_MOUNT);
        r = cgroup_of_pid(0, &own);
        if (r < 0)
                return cgroup_off(m, "grmd's own cgroup v2 is not in /proc/self/cgroup");
        if (asprintf(&fs_own, "%s%s", mount, streq(own, "/") ? "" : own) < 0)
                return cgroup_off(m, "out of memory");

        leaf = strrchr(own, '/');
        if (invocation && leaf && endswith(leaf, ".service")) {
                /* A systemd service: its cgroup is ours only if delegated. */
                if (!cgroup_delegated(fs_own))
                        return cgroup_off(m, "the unit has no Delegate=yes");
                base = TAKE_PTR(own);
                fs_base = TAKE_PTR(fs_own);
        } else {
                if (!m->ctl_path || cgroup_base_name(m->ctl_path, name, sizeof(name)) < 0)
                        return cgroup_off(m, "no control socket path to name its cgroup after");
                if (asprintf(&base, "%s/%s", streq(own, "/") ? "" : own, name) < 0 ||
                    asprintf(&fs_base, "%s/%s", fs_own, name) < 0)
                        return cgroup_off(m, "out of memory");
                if (mkdir(fs_base, 0755) < 0 && errno != EEXIST) {
                        char why[512];
                        snprintf(why, sizeof(why), "cannot create %s: %s", fs_base, strerror(errno));
                        return cgroup_off(m, why);
                }
                m->cgroup_base_created = true;
        }
        if (access(fs_base, W_OK) < 0) {
                char why[512];
                snprintf(why, sizeof(why), "%s is not writable: %s", fs_base, strerror(errno));
                return cgroup_off(m, why);
        }
        if (strlen(fs_base) >= sizeof(m->cgroup_fs_base) - 64)
                return cgroup_off(m, "its cgroup path is too long");
        strcpy(m->cgroup_base, base);
        strcpy(m->cgroup_fs_base, fs_base);
        m->cgroup_mode = CGROUP_MODE_CGROUP;
        log_info("Generations run in cgroups of their own under %s.", m->cgroup_fs_base);
}

void manager_cgroup_done(Manager *m) {
        /* Only once every generation's cgroup is gone; a populated one keeps the base (EBUSY). */
        if (m->cgroup_base_created && m->cgroup_fs_base[0])
                (void) rmdir(m->cgroup_fs_base);
}

int generation_cgroup_create(Generation *g, int *ret_procs_fd) {
        Manager *m = g->manager;
        _cleanup_free_ char *path = NULL, *procs = NULL;
        char name[64];
        int fd, r;

        *ret_procs_fd = -EBADF;
        manager_cgroup_setup(m);
        if (m->cgroup_mode != CGROUP_MODE_CGROUP)
                return 0;

        for (unsigned i = 0; i < CGROUP_NAME_TRIES; i++) {
                r = cgroup_generation_name(g->gen, i, name, sizeof(name));
                if (r < 0)
                        return r;
                free(path);
                if (asprintf(&path, "%s/%s", m->cgroup_fs_base, name) < 0)
                        return -ENOMEM;
                if (mkdir(path, 0755) == 0)
                        break;
                if (errno != EEXIST)
                        return negative_errno();
                /* Left over: empty ones are taken over, populated ones are not ours to touch. */
                if (cgroup_populated(path) == 0 && rmdir(path) == 0 && mkdir(path, 0755) == 0)
                        break;
                if (i + 1 == CGROUP_NAME_TRIES)
                        return -EEXIST;
                if (i == 0)
                        log_warning("Cgroup %s is still populated by processes grmd does not know; "
                                    "generation %" PRIu32 " gets another.", path, g->gen);
        }
        if (asprintf(&procs, "%s/cgroup.procs", path) < 0) {
                (void) rmdir(path);
                return -ENOMEM;
        }
        fd = open(procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
                r = negative_errno();
                (void) rmdir(path);
                return r;
        }
        g->cgroup_path = TAKE_PTR(path);
        *ret_procs_fd = fd;
        return 0;
}

int generation_cgroup_adopt(Generation *g) {
        Manager *m = g->manager;
        _cleanup_free_ char *path = NULL;
        uint32_t gen = 0;
        int r;

        if (g->cgroup_path)
                return 0;
        manager_cgroup_setup(m);
        if (m->cgroup_mode != CGROUP_MODE_CGROUP || g->pid <= 0)
                return 0;
        r = cgroup_of_pid(g->pid, &path);
        /* The pid read is the generation's only while its pidfd says the process lives. */
        if (r >= 0 && (g->pidfd < 0 || pidfd_send_signal(g->pidfd, 0, NULL, 0) < 0))
                r = -ESRCH;
        if (r < 0)
                return r;
        if (cgroup_generation_of(m->cgroup_base, path, &gen) <= 0 || gen != g->gen) {
                log_warning("Generation %" PRIu32 " (pid %d) runs in cgroup %s, not one of its own under %s; "
                            "only its process group ends with it.",
                            g->gen, (int) g->pid, path, m->cgroup_base);
                return 0;
        }
        /* The generation's own cgroup, not a sub-cgroup the instance made. */
        {
                const char *rest = path + (streq(m->cgroup_base, "/") ? 0 : strlen(m->cgroup_base)) + 1;
                const char *slash = strchr(rest, '/');
                if (slash)
                        path[slash - path] = 0;
        }
        if (asprintf(&g->cgroup_path, "%s%s", m->cgroup_fs_base,
                     path + (streq(m->cgroup_base, "/") ? 0 : strlen(m->cgroup_base))) < 0)
                return -ENOMEM;
        log_debug("Generation %" PRIu32 " found again in %s.", g->gen, g->cgroup_path);
        return 1;
}

int generation_cgroup_kill(Generation *g) {
        if (!g->cgroup_path)
                return -ENOENT;
        return write_file(g->cgroup_path, "cgroup.kill", "1");
}

void generation_cgroup_update_usage(Generation *g) {
        char buf[1024];
        uint64_t v;

        if (!g->cgroup_path)
                return;
        if (read_file(g->cgroup_path, "cpu.stat", buf, sizeof(buf)) == 0 &&
            cgroup_keyed_value(buf, "usage_usec", &v) == 0)
                g->cpu_usec = v;
        if (read_file(g->cgroup_path, "memory.current", buf, sizeof(buf)) == 0 &&
            sscanf(buf, "%" SCNu64, &v) == 1) {
                g->memory_bytes = v;
                g->have_memory = true;
        }
}

/* Removes the (empty) cgroup, keeping its last usage figures. */
static int cgroup_remove(Generation *g) {
        generation_cgroup_update_usage(g);
        if (rmdir(g->cgroup_path) < 0 && errno != ENOENT)
                return negative_errno();
        free(g->cgroup_path);
        g->cgroup_path = NULL;
        g->cgroup_release_source = sd_event_source_disable_unref(g->cgroup_release_source);
        return 0;
}

static int on_release_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        Generation *g = userdata;
        int r;

        r = cgroup_populated(g->cgroup_path);
        if (r == 0 || r == -ENOENT) {
                r = cgroup_remove(g);
                if (r < 0)
                        log_warning_errno(r, "Failed to remove cgroup %s of generation %" PRIu32 ": %m",
                                          g->cgroup_path, g->gen);
                return 0;
        }
        if (usec >= g->cgroup_release_deadline_usec) {
                log_error("Cgroup %s of generation %" PRIu32 " still has processes %" PRIu64 " s after cgroup.kill; leaving it.",
                          g->cgroup_path, g->gen, CGROUP_RELEASE_TIMEOUT_USEC / USEC_PER_SEC);
                g->cgroup_release_source = sd_event_source_disable_unref(g->cgroup_release_source);
                return 0;
        }
        (void) generation_cgroup_kill(g);
        (void) sd_event_source_set_time(s, usec + CGROUP_RELEASE_POLL_USEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

void generation_cgroup_release(Generation *g) {
        int r;

        if (!g->cgroup_path || g->cgroup_release_source)
                return;
        r = generation_cgroup_kill(g);
        if (r < 0 && r != -ENOENT)
                log_warning_errno(r, "Failed to kill cgroup %s of generation %" PRIu32 ": %m", g->cgroup_path, g->gen);
        if (cgroup_populated(g->cgroup_path) <= 0 && cgroup_remove(g) == 0)
                return;
        g->cgroup_release_deadline_usec = now_usec() + CGROUP_RELEASE_TIMEOUT_USEC;
        r = sd_event_add_time(g->manager->event, &g->cgroup_release_source, CLOCK_MONOTONIC,
                              now_usec() + CGROUP_RELEASE_POLL_USEC, USEC_PER_MSEC, on_release_poll, g);
        if (r < 0)
                log_warning_errno(r, "Failed to watch cgroup %s of generation %" PRIu32 ": %m", g->cgroup_path, g->gen);
}

void generation_cgroup_free(Generation *g) {
        g->cgroup_release_source = sd_event_source_disable_unref(g->cgroup_release_source);
        if (!g->cgroup_path)
                return;
        /* A live generation outlives this grmd (a failed start-up leaves the instances serving
         * for the next one); an ended one goes now, waiting briefly for cgroup.kill to finish. */
        if (!gen_state_is_live(g->state)) {
                (void) generation_cgroup_kill(g);
                for (int i = 0; i < 50 && cgroup_populated(g->cgroup_path) > 0; i++)
                        (void) usleep(10 * 1000);
                if (cgroup_remove(g) == 0)
                        return;
        }
        free(g->cgroup_path);
        g->cgroup_path = NULL;
}

const char *generation_cgroup_name(const Generation *g) {
        const char *m = g->manager->cgroup_fs_base;
        size_t n = strlen(m);

        if (!g->cgroup_path || n == 0 || strncmp(g->cgroup_path, m, n) != 0)
                return NULL;
        return g->cgroup_path + n + 1;
}
