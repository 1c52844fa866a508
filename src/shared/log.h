/* SPDX-License-Identifier: MIT */
/*
 * Logging for the binaries (grmd, grmctl). Library code in src/shared logs at debug level at
 * most; callers log errors once, where they are handled:
 *
 *     return log_error_errno(r, "Failed to attach steering program to %s: %m", addr);
 *
 * %m expands to strerror(-error). Under systemd (stderr connected to the journal, as
 * $JOURNAL_STREAM says) messages go to the journal with their priority and any structured
 * fields; otherwise to stderr as "grmd: message".
 */
#pragma once

#include <stdarg.h>
#include <syslog.h>

#include "macro.h"
#include "ratelimit.h"

/* Sets the program name used on stderr and whether the journal is used (auto-detected). */
void log_setup(const char *program);
void log_set_max_level(int level);
int log_get_max_level(void);
/* 1 when messages go to the journal. */
int log_to_journal(void);

/**
 * log_internal() - log one message.
 * @level: LOG_ERR ... LOG_DEBUG
 * @error: errno (positive or negative) used for %m, 0 for none
 * @fields: NULL, or a NULL-terminated list of extra "KEY=value" journal fields
 * Return: -abs(error), or -EIO when error is 0, so that errors can be logged and returned in
 * one statement.
 */
int log_internal(int level, int error, const char *const *fields, const char *file, int line,
                 const char *func, const char *format, ...) _printf_(7, 8);

#define log_full_errno(level, error, ...)                                                        \
        log_internal(level, error, NULL, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, error, __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, error, __VA_ARGS__)
#define log_notice_errno(error, ...) log_full_errno(LOG_NOTICE, error, __VA_ARGS__)
#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, error, __VA_ARGS__)
#define log_error(...) (void) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning(...) (void) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_notice(...) (void) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_info(...) (void) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...) (void) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)

/* A message with structured journal fields (NULL-terminated "KEY=value" strings). */
#define log_struct(level, error, fields, ...)                                                    \
        log_internal(level, error, fields, __FILE__, __LINE__, __func__, __VA_ARGS__)

/*
 * A message about input anyone may send (notify datagrams, control connections): logged only
 * while rl allows, the suppressed ones counted in rl and reported with the next that passes.
 * A message below the log level does not count against the limit.
 */
int log_ratelimited_internal(RateLimit *rl, int level, int error, const char *file, int line,
                             const char *func, const char *format, ...) _printf_(7, 8);
#define log_warning_ratelimited(rl, error, ...)                                                  \
        log_ratelimited_internal(rl, LOG_WARNING, error, __FILE__, __LINE__, __func__, __VA_ARGS__)
