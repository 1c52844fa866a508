/* SPDX-License-Identifier: MIT */
/*
 * See cgroup-util.h. Paths are cgroup paths (as /proc/PID/cgroup shows them, starting with '/')
 * unless a name says "fs" (the path in the mounted hierarchy).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <linux/magic.h>

#include "cgroup-util.h"
#include "macro.h"

int cgroup_find_mount(const char **ret) {
        static const char *const candidates[] = { CGROUP2_HYBRID_MOUNT, CGROUP2_UNIFIED_MOUNT };
        struct statfs fs;

        for (size_t i = 0; i < ELEMENTSOF(candidates); i++)
                if (statfs(candidates[i], &fs) == 0 && (uint64_t) fs.f_type == CGROUP2_SUPER_MAGIC) {
                        *ret = candidates[i];
                        return 0;
                }
        return -ENOMEDIUM;
}

int cgroup_parse_proc(const char *text, char **ret_path) {
        const char *p = text;

        while (p && *p) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);

                if (len >= 3 && memcmp(p, "0::", 3) == 0) {
                        char *path;

                        if (len < 4 || p[3] != '/')
                                return -EBADMSG;
                        path = strndup(p + 3, len - 3);
                        if (!path)
                                return -ENOMEM;
                        *ret_path = path;
                        return 0;
                }
                p = nl ? nl + 1 : NULL;
        }
        return -ENOENT;
}

int cgroup_of_pid(pid_t pid, char **ret_path) {
        char proc[64], buf[4096];
        size_t n;
        FILE *f;

        if (pid == 0)
                snprintf(proc, sizeof(proc), "/proc/self/cgroup");
        else
                snprintf(proc, sizeof(proc), "/proc/%d/cgroup", (int) pid);
        f = fopen(proc, "re");
        if (!f)
                return errno == ENOENT ? -ESRCH : negative_errno();
        n = fread(buf, 1, sizeof(buf) - 1, f);
        if (ferror(f)) {
                fclose(f);
                return -EIO;
        }
        fclose(f);
        buf[n] = 0;
        return cgroup_parse_proc(buf, ret_path);
}

/* Parses "gen-N" or "gen-N.K" of exactly len bytes. */
static int parse_generation_name(const char *s, size_t len, uint32_t *ret_gen) {
        uint64_t v = 0;
        size_t i = 4;

        if (len < 5 || memcmp(s, "gen-", 4) != 0)
                return 0;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
                v = v * 10 + (uint64_t) (s[i] - '0');
                if (v > UINT32_MAX)
                        return 0;
        }
        if (i == 4 || v == 0)
                return 0;
        if (i < len) {
                if (s[i] != '.' || i + 1 == len)
                        return 0;
                for (i++; i < len; i++)
                        if (s[i] < '0' || s[i] > '9')
                                return 0;
        }
        if (ret_gen)
                *ret_gen = (uint32_t) v;
        return 1;
}

int cgroup_generation_of(const char *base, const char *path, uint32_t *ret_gen) {
        size_t base_len = strlen(base);
        const char *rest, *slash;

        /* "/" as the base has no trailing part to compare. */
        if (base_len == 1 && base[0] == '/')
                base_len = 0;
        if (strncmp(path, base, base_len) != 0 || path[base_len] != '/')
                return 0;
        rest = path + base_len + 1;
        slash = strchr(rest, '/');
        return parse_generation_name(rest, slash ? (size_t) (slash - rest) : strlen(rest), ret_gen);
}

int cgroup_generation_name(uint32_t gen, unsigned index, char *buf, size_t size) {
        int n;

        if (gen == 0)
                return -EINVAL;
        if (index == 0)
                n = snprintf(buf, size, "gen-%" PRIu32, gen);
        else
                n = snprintf(buf, size, "gen-%" PRIu32 ".%u", gen, index);
        return n < 0 || (size_t) n >= size ? -ENOBUFS : 0;
}

int cgroup_keyed_value(const char *text, const char *key, uint64_t *ret) {
        size_t key_len = strlen(key);
        const char *p = text;

        while (p && *p) {
                const char *nl = strchr(p, '\n');

                if (strncmp(p, key, key_len) == 0 && p[key_len] == ' ') {
                        const char *v = p + key_len + 1;
                        uint64_t x = 0;
                        bool digits = false;

                        for (; *v >= '0' && *v <= '9'; v++) {
                                unsigned d = (unsigned) (*v - '0');
                                if (x > (UINT64_MAX - d) / 10)
                                        return -EBADMSG;
                                x = x * 10 + d;
                                digits = true;
                        }
                        if (!digits || (*v != '\n' && *v != 0))
                                return -EBADMSG;
                        *ret = x;
                        return 0;
                }
                p = nl ? nl + 1 : NULL;
        }
        return -ENOENT;
}

int cgroup_base_name(const char *control_path, char *buf, size_t size) {
        uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
        int n;

        for (const unsigned char *c = (const unsigned char *) control_path; *c; c++) {
                h ^= *c;
                h *= 0x100000001b3ULL;
        }
        n = snprintf(buf, size, "grmd-%016" PRIx64, h);
        return n < 0 || (size_t) n >= size ? -ENOBUFS : 0;
}
