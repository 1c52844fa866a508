/* SPDX-License-Identifier: MIT */
/*
 * The child side of every process grmd starts for the application (instances and ExecCheck=):
 * between fork() and exec() it joins a cgroup, gets a session of its own, its fds in place, the
 * configured user, no capability, and the instance system call filter. See spawn.c.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "macro.h"

typedef struct SpawnUser {
        bool set;
        uid_t uid;
        gid_t gid;
        char *name;
} SpawnUser;

/* User= by name or number; -ESRCH if there is no such user. NULL user: ret is "not set". */
int spawn_resolve_user(const char *user, SpawnUser *ret);
void spawn_user_done(SpawnUser *u);

typedef struct SpawnParams {
        const char *what;                /* "instance", "exec-check": for error messages */
        const int *fds;                  /* moved to 3, 4, ... (may be NULL with n_fds 0) */
        unsigned n_fds;
        char **argv;
        char **env;                      /* NULL: grmd's environment */
        const SpawnUser *user;
        int cgroup_procs_fd;             /* cgroup.procs to join first, or < 0 */
} SpawnParams;

/**
 * spawn_child_exec() - set the child up and exec; call only in the child of fork().
 *
 * In this order: join the cgroup; default signal dispositions and an empty mask; a new session
 * and process group; the fds at 3... (everything else closed); LISTEN_PID= set to our pid if env
 * has its placeholder; an empty capability bounding set; the user (groups, gid, uid); empty
 * capability sets; the instance system call filter (spawn_install_filter()); execvp().
 * Failures print "grmd: WHAT setup failed: STEP: ERROR" on stderr and exit 127.
 */
_noreturn_ void spawn_child_exec(const SpawnParams *p);

/**
 * spawn_install_filter() - the seccomp filter every instance runs under.
 *
 * setsockopt(SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF | SO_ATTACH_REUSEPORT_EBPF |
 * SO_DETACH_REUSEPORT_BPF) fails with EPERM, so that an instance cannot change its group's
 * steering through its own socket; so do io_uring_setup/enter/register (io_uring's socket
 * commands set socket options without the setsockopt system call) and, for the 32-bit x86 ABI,
 * socketcall(SYS_SETSOCKOPT) (its arguments are in memory, out of the filter's reach).
 * Everything else is allowed. Sets no_new_privs (needed without CAP_SYS_ADMIN).
 * Return: 0 or -errno.
 */
int spawn_install_filter(void);
