/* SPDX-License-Identifier: MIT */
/*
 * cgroup v2 helpers for putting each generation in a cgroup of its own: where the v2 hierarchy
 * is mounted, which cgroup a process is in, how generation cgroups are named under grmd's base
 * cgroup, and the keyed files (cpu.stat, cgroup.events). Library code: does not log; the
 * parsers are pure so that unit tests drive them with literal file contents.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* The hybrid layout's v2 mount (this project's machines), then the unified layout's. */
#define CGROUP2_HYBRID_MOUNT  "/sys/fs/cgroup/unified"
#define CGROUP2_UNIFIED_MOUNT "/sys/fs/cgroup"

/* Where the cgroup v2 hierarchy is mounted (a static string), or -ENOMEDIUM if nowhere. */
int cgroup_find_mount(const char **ret);

/**
 * cgroup_parse_proc() - the v2 path in the text of /proc/PID/cgroup.
 * @text: the file's contents (NUL-terminated); lines "ID:CONTROLLERS:PATH", v2 is "0::PATH"
 * @ret_path: the path, starting with '/', newly allocated
 * Return: 0, -ENOENT if there is no "0::" line (no v2 hierarchy), -EBADMSG if its path is not
 * absolute, -ENOMEM.
 */
int cgroup_parse_proc(const char *text, char **ret_path);

/* The v2 cgroup path of pid (0: this process), from /proc. -ESRCH if the process is gone. */
int cgroup_of_pid(pid_t pid, char **ret_path);

/**
 * cgroup_generation_of() - whether a cgroup path is (inside) a generation's cgroup.
 * @base: the base cgroup, e.g. "/system.slice/grm-echo.service" ("/" for the root)
 * @path: a cgroup path, e.g. from cgroup_of_pid()
 * @ret_gen: if not NULL, the generation number in the name "gen-N" (or "gen-N.K")
 * Return: 1 if path is base/gen-N or below it, 0 if not.
 */
int cgroup_generation_of(const char *base, const char *path, uint32_t *ret_gen);

/* "gen-N" (index 0) or "gen-N.K" (index K > 0: gen-N was taken by a process grmd does not
 * know), into buf. */
int cgroup_generation_name(uint32_t gen, unsigned index, char *buf, size_t size);

/**
 * cgroup_keyed_value() - a value of a flat-keyed file ("key value" lines: cpu.stat,
 * cgroup.events, memory.stat).
 * Return: 0, -ENOENT if key is not there, -EBADMSG if its value is not a number.
 */
int cgroup_keyed_value(const char *text, const char *key, uint64_t *ret);

/* The base cgroup's name for a grmd that does not run as a systemd service with its own
 * delegated cgroup: "grmd-" and 16 hex digits of a hash of its control socket path, stable
 * across grmd restarts (so generations are found again after a crash) and distinct for two
 * grmds in the same cgroup. */
int cgroup_base_name(const char *control_path, char *buf, size_t size);
