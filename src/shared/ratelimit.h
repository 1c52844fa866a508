/* SPDX-License-Identifier: MIT */
/*
 * A log rate limit (systemd's RateLimit): at most `burst` events per `interval_usec`; the rest
 * are suppressed and counted, so that a flood of hostile input (notify datagrams, control
 * connections) cannot fill the journal and operators still learn how much was dropped.
 * Pure logic over a caller-supplied clock: no system calls, no logging.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct RateLimit {
        uint64_t interval_usec;
        unsigned burst;
        bool started;                 /* a window has begun */
        uint64_t begin_usec;          /* start of the current window */
        unsigned num;                 /* events in the current window */
        uint64_t pending_suppressed;  /* suppressed since the last event that was let through */
        uint64_t suppressed_total;    /* suppressed since the limit was set up */
} RateLimit;

#define RATELIMIT_INIT(interval, n) ((RateLimit) { .interval_usec = (interval), .burst = (n) })

/**
 * ratelimit_below() - count one event and say whether it may be logged.
 * @rl: the limit
 * @now_usec: the current time (any monotonic clock, the same for every call)
 * @ret_suppressed: if not NULL and the event may be logged, set to the number of events
 *                  suppressed since the previous one that was let through (to be reported with
 *                  it: "... (N similar messages suppressed)"), 0 if none
 * Return: true if the event may be logged, false if it was suppressed (and counted).
 */
bool ratelimit_below(RateLimit *rl, uint64_t now_usec, uint64_t *ret_suppressed);
