/* SPDX-License-Identifier: MIT */
/*
 * The logging backend (see log.h). Owns the program name and the journal/stderr choice.
 */
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

#include "log.h"

static const char *program_name = "grm";
static int max_level = LOG_INFO;
static int use_journal = 0;

/* $JOURNAL_STREAM is "DEV:INO" of the stream systemd connected stderr to. */
static int stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return 0;
        if (fstat(STDERR_FILENO, &st) < 0)
                return 0;
        return st.st_dev == (dev_t) dev && st.st_ino == (ino_t) ino;
}

void log_setup(const char *program) {
        const char *e;

        if (program)
                program_name = program;
        use_journal = stderr_is_journal();
        e = getenv("GRM_LOG_LEVEL");
        if (e) {
                if (streq(e, "debug"))
                        max_level = LOG_DEBUG;
                else if (streq(e, "info"))
                        max_level = LOG_INFO;
                else if (streq(e, "notice"))
                        max_level = LOG_NOTICE;
                else if (streq(e, "warning"))
                        max_level = LOG_WARNING;
                else if (streq(e, "err"))
                        max_level = LOG_ERR;
        }
}

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

int log_to_journal(void) {
        return use_journal;
}

int log_internal(int level, int error, const char *const *fields, const char *file, int line,
                 const char *func, const char *format, ...) {
        char message[2048];
        int saved_errno = errno;
        va_list ap;

        if (error < 0)
                error = -error;
        if (level > max_level) {
                errno = saved_errno;
                return error > 0 ? -error : -EIO;
        }

        errno = error; /* for %m */
        va_start(ap, format);
        (void) vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);

        if (use_journal) {
                struct iovec iov[32];
                char prio[32], msg_field[sizeof(message) + 16], code_file[256], code_line[32],
                        code_func[128], errno_field[32];
                size_t n = 0;

                snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
                snprintf(msg_field, sizeof(msg_field), "MESSAGE=%s", message);
                snprintf(code_file, sizeof(code_file), "CODE_FILE=%s", file);
                snprintf(code_line, sizeof(code_line), "CODE_LINE=%d", line);
                snprintf(code_func, sizeof(code_func), "CODE_FUNC=%s", func);
                iov[n++] = (struct iovec) { prio, strlen(prio) };
                iov[n++] = (struct iovec) { msg_field, strlen(msg_field) };
                iov[n++] = (struct iovec) { code_file, strlen(code_file) };
                iov[n++] = (struct iovec) { code_line, strlen(code_line) };
                iov[n++] = (struct iovec) { code_func, strlen(code_func) };
                if (error > 0) {
                        snprintf(errno_field, sizeof(errno_field), "ERRNO=%d", error);
                        iov[n++] = (struct iovec) { errno_field, strlen(errno_field) };
                }
                for (size_t i = 0; fields && fields[i] && n < ELEMENTSOF(iov); i++)
                        iov[n++] = (struct iovec) { (void *) fields[i], strlen(fields[i]) };
                if (sd_journal_sendv(iov, (int) n) >= 0)
                        goto out;
        }

        fprintf(stderr, "%s: %s\n", program_name, message);
out:
        errno = saved_errno;
        return error > 0 ? -error : -EIO;
}

int log_ratelimited_internal(RateLimit *rl, int level, int error, const char *file, int line,
                             const char *func, const char *format, ...) {
        char message[2048];
        uint64_t suppressed = 0;
        struct timespec ts;
        va_list ap;

        if (error < 0)
                error = -error;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (level > max_level ||
            !ratelimit_below(rl, (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000, &suppressed))
                return error > 0 ? -error : -EIO;

        errno = error; /* for %m */
        va_start(ap, format);
        (void) vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);
        if (suppressed == 0)
                return log_internal(level, error, NULL, file, line, func, "%s", message);
        return log_internal(level, error, NULL, file, line, func, "%s (%" PRIu64 " similar messages suppressed)",
                            message, suppressed);
}
