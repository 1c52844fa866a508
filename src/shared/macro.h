/* SPDX-License-Identifier: MIT */
/*
 * Small helpers every grm file may use: cleanup attributes, ownership hand-off, array sizes,
 * time units. No dependencies beyond libc.
 */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))

#define USEC_PER_SEC  ((uint64_t) 1000000ULL)
#define USEC_PER_MSEC ((uint64_t) 1000ULL)
#define NSEC_PER_SEC  ((uint64_t) 1000000000ULL)
#define NSEC_PER_USEC ((uint64_t) 1000ULL)
#define USEC_INFINITY ((uint64_t) UINT64_MAX)

/* a + b, saturating at USEC_INFINITY (which either operand may be): a deadline that would not
 * fit is never. As systemd's usec_add(). */
static inline uint64_t usec_add(uint64_t a, uint64_t b) {
        if (a == USEC_INFINITY || b == USEC_INFINITY || a > USEC_INFINITY - b)
                return USEC_INFINITY;
        return a + b;
}

/* a - b, or 0 if b is later; USEC_INFINITY stays infinite. */
static inline uint64_t usec_sub_unsigned(uint64_t a, uint64_t b) {
        if (a == USEC_INFINITY)
                return USEC_INFINITY;
        return a > b ? a - b : 0;
}

/* Hand ownership of a pointer or an fd to someone else: returns the value, resets the variable. */
#define TAKE_PTR(p)                                                                              \
        ({                                                                                       \
                __typeof__(p) _p = (p);                                                          \
                (p) = NULL;                                                                      \
                _p;                                                                              \
        })
#define TAKE_FD(fd)                                                                              \
        ({                                                                                       \
                int _fd = (fd);                                                                  \
                (fd) = -EBADF;                                                                   \
                _fd;                                                                             \
        })

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Closes fd if it is valid and returns -EBADF, so that "fd = safe_close(fd);" is the idiom. */
static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}

static inline void closep(int *fd) {
        *fd = safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void strv_free(char **l) {
        if (!l)
                return;
        for (char **i = l; *i; i++)
                free(*i);
        free(l);
}
static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)

static inline size_t strv_length(char *const *l) {
        size_t n = 0;
        if (l)
                while (l[n])
                        n++;
        return n;
}

static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

static inline const char *strempty(const char *s) {
        return s ? s : "";
}

static inline int streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
#define streq(a, b) (strcmp((a), (b)) == 0)
