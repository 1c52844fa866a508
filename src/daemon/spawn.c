/* SPDX-License-Identifier: MIT */
/*
 * The child side of spawning (spawn.h). Everything here but spawn_resolve_user() runs between
 * fork() and exec() in a copy of single-threaded grmd: malloc() is safe (libseccomp builds its
 * filter with it); errors end the child with a line on stderr and exit status 127, which grmd
 * sees as the instance (or check) exiting before it was ready.
 */
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/capability.h>
#include <sys/socket.h>

#include "config.h"
#include "spawn.h"
#include "steer-api.h"

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif
#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif
#define SYS_SETSOCKOPT_CALL 14 /* socketcall()'s number for setsockopt (linux/net.h) */

int spawn_resolve_user(const char *user, SpawnUser *ret) {
        struct passwd *pw;
        uint64_t uid;

        *ret = (SpawnUser) {};
        if (!user)
                return 0;
        if (parse_unsigned(user, 0, UINT32_MAX - 1, &uid) == 0)
                pw = getpwuid((uid_t) uid);
        else
                pw = getpwnam(user);
        if (!pw)
                return -ESRCH;
        ret->set = true;
        ret->uid = pw->pw_uid;
        ret->gid = pw->pw_gid;
        ret->name = strdup(pw->pw_name);
        return ret->name ? 0 : -ENOMEM;
}

void spawn_user_done(SpawnUser *u) {
        free(u->name);
        *u = (SpawnUser) {};
}

static const char *child_what = "child";

static _noreturn_ void child_fail(const char *step, int error) {
        char buf[256];
        int n = snprintf(buf, sizeof(buf), "grmd: %s setup failed: %s: %s\n", child_what, step, strerror(error));
        if (n > 0)
                (void) !write(STDERR_FILENO, buf, (size_t) n);
        _exit(127);
}

/* Empties the bounding and ambient sets; needs CAP_SETPCAP, so it runs before the uid change. */
static int drop_bounding_set(void) {
        for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++)
                if (cap_drop_bound(c) < 0 && errno != EINVAL)
                        return -errno;
        (void) cap_reset_ambient();
        return 0;
}

/* Clears the permitted, effective and inheritable sets (a uid change from root already did). */
static int clear_capabilities(void) {
        cap_t empty = cap_init();
        int r = 0;

        if (!empty)
                return -ENOMEM;
        if (cap_set_proc(empty) < 0)
                r = -errno;
        cap_free(empty);
        return r;
}

int spawn_install_filter(void) {
        static const int options[] = {
                SO_ATTACH_REUSEPORT_CBPF, SO_ATTACH_REUSEPORT_EBPF, SO_DETACH_REUSEPORT_BPF,
        };
        static const char *const io_uring[] = { "io_uring_setup", "io_uring_enter", "io_uring_register" };
        scmp_filter_ctx ctx;
        int r;

        ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx)
                return -ENOMEM;
#if defined(__x86_64__)
        /* The other ABIs an x86-64 process can call the kernel through (int 0x80, x32): a filter
         * for the native one alone would leave them open. */
        r = seccomp_arch_add(ctx, SCMP_ARCH_X86);
        if (r < 0 && r != -EEXIST)
                goto out;
        r = seccomp_arch_add(ctx, SCMP_ARCH_X32);
        if (r < 0 && r != -EEXIST)
                goto out;
#endif
        for (size_t i = 0; i < ELEMENTSOF(options); i++) {
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(setsockopt), 2,
                                     SCMP_A1(SCMP_CMP_EQ, SOL_SOCKET), SCMP_A2(SCMP_CMP_EQ, options[i]));
                if (r < 0)
                        goto out;
        }
        for (size_t i = 0; i < ELEMENTSOF(io_uring); i++) {
                int nr = seccomp_syscall_resolve_name(io_uring[i]);
                if (nr == __NR_SCMP_ERROR)
                        continue; /* libseccomp older than the system call */
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
                if (r < 0)
                        goto out;
        }
#if defined(__x86_64__)
        /* socketcall() exists only in the 32-bit ABI. */
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socketcall), 1,
                             SCMP_A0(SCMP_CMP_EQ, SYS_SETSOCKOPT_CALL));
        if (r < 0 && r != -EOPNOTSUPP)
                goto out;
#endif
        r = seccomp_load(ctx);
out:
        seccomp_release(ctx);
        return r < 0 ? r : 0;
}

_noreturn_ void spawn_child_exec(const SpawnParams *p) {
        int high[GRM_MAX_GROUPS * GRM_MAX_SOCKS_PER_GEN];
        sigset_t all;
        int r;

        child_what = p->what;

        /* First into the cgroup: everything the process ever starts is in it. */
        if (p->cgroup_procs_fd >= 0 && write(p->cgroup_procs_fd, "0", 1) < 0)
                child_fail("joining its cgroup", errno);

        /* The event loop blocked signals; the child starts with a clean slate. */
        sigemptyset(&all);
        (void) sigprocmask(SIG_SETMASK, &all, NULL);
        for (int sig = 1; sig < _NSIG; sig++)
                (void) signal(sig, SIG_DFL);

        /* Its own session and process group: grmd can kill the whole group, and the child is
         * not hit by signals meant for grmd's terminal or group. */
        if (setsid() < 0)
                child_fail("setsid", errno);

        /* Move the fds to 3, 4, ...: first above the target range, then into place (dup2
         * clears O_CLOEXEC on the copy, which is what must survive exec). */
        if (p->n_fds > ELEMENTSOF(high))
                child_fail("fds", E2BIG);
        for (unsigned i = 0; i < p->n_fds; i++) {
                high[i] = fcntl(p->fds[i], F_DUPFD_CLOEXEC, (int) (3 + p->n_fds));
                if (high[i] < 0)
                        child_fail("fcntl(F_DUPFD_CLOEXEC)", errno);
        }
        for (unsigned i = 0; i < p->n_fds; i++)
                if (dup2(high[i], (int) (3 + i)) < 0)
                        child_fail("dup2", errno);
        (void) close_range(3 + p->n_fds, ~0U, 0);

        for (char **e = p->env; e && *e; e++)
                if (strncmp(*e, "LISTEN_PID=", 11) == 0)
                        snprintf(*e + 11, 11, "%d", (int) getpid());

        /* It never gets capabilities back, not even by executing a setuid binary. */
        r = drop_bounding_set();
        if (r < 0 && geteuid() == 0)
                child_fail("dropping the capability bounding set", -r);

        if (p->user && p->user->set) {
                if (initgroups(p->user->name, p->user->gid) < 0 && setgroups(0, NULL) < 0)
                        child_fail("setgroups", errno);
                if (setresgid(p->user->gid, p->user->gid, p->user->gid) < 0)
                        child_fail("setresgid", errno);
                if (setresuid(p->user->uid, p->user->uid, p->user->uid) < 0)
                        child_fail("setresuid", errno);
        } else if (geteuid() == 0)
                (void) setgroups(0, NULL);

        r = clear_capabilities();
        if (r < 0)
                child_fail("dropping capabilities", -r);

        /* Last: the filter also applies to what the setup above would have needed. */
        r = spawn_install_filter();
        if (r < 0)
                child_fail("installing the system call filter", -r);

        if (p->env)
                execvpe(p->argv[0], p->argv, p->env);
        else
                execvp(p->argv[0], p->argv);
        child_fail(p->argv[0], errno);
}
