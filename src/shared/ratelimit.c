/* SPDX-License-Identifier: MIT */
/*
 * Fixed windows of interval_usec: the first `burst` events of a window pass, the others are
 * counted. A clock that goes backwards (it cannot with CLOCK_MONOTONIC, but the caller owns
 * the clock) starts a new window rather than suppressing forever.
 */
#include "ratelimit.h"

bool ratelimit_below(RateLimit *rl, uint64_t now_usec, uint64_t *ret_suppressed) {
        if (!rl->started || now_usec < rl->begin_usec ||
            now_usec - rl->begin_usec >= rl->interval_usec) {
                rl->started = true;
                rl->begin_usec = now_usec;
                rl->num = 0;
        }
        if (rl->num >= rl->burst) {
                rl->pending_suppressed++;
                rl->suppressed_total++;
                return false;
        }
        rl->num++;
        if (ret_suppressed)
                *ret_suppressed = rl->pending_suppressed;
        rl->pending_suppressed = 0;
        return true;
}
