/* SPDX-License-Identifier: MIT */
/*
 * The generation state machine: one table, no side effects. grmd's generation.c asks
 * gen_state_next() and then acts (arms timers, flips the working slot, kills, unregisters).
 *
 * Invariants: every (state, event) pair has exactly one entry below; an entry is either a state
 * or INVALID. EXITED is final. FAILED accepts only EXITED (reaping the instance grmd killed).
 *
 *                 READY     SUPERSEDED STOP      FAILED    DEADLINE  EXITED    STANDBY   REINSTATED
 *   starting      working   -          failed    failed    -         failed    -         -
 *   working       working   draining   draining  -         -         exited    standby   -
 *   draining      draining  draining   draining  -         draining  exited    -         -
 *   exited        -         -          -         -         -         -         -         -
 *   failed        -         -          -         -         -         failed    -         -
 *   standby       standby   draining   draining  -         -         exited    standby   working
 *
 * Why the "-" (-EINVAL) entries cannot happen unless the caller has a bug or a stale event:
 *   starting+superseded: only one restart runs at a time, so no newer generation can become
 *       working while this one is still starting;
 *   starting+deadline, working+deadline: only a draining generation has a drain deadline;
 *   working+failed, draining+failed: ERRNO= and the start timeout only mean "failed" before
 *       READY=1; afterwards the instance is judged by its exit alone;
 *   exited+*: the process is gone and its sockets are unregistered;
 *   standby+failed, standby+deadline: a generation that stood by was ready and has no deadline;
 *   standby only comes from working, reinstated only goes to a standby one: the restart that
 *       settles knows which generation stands by;
 *   failed+* other than exited: a failed instance has been killed and is only waiting to be
 *       reaped; nothing else concerns it any more.
 * Repeated READY=1, a second stop, a second superseded and the deadline of a generation that
 * is already being killed are harmless and keep the state.
 */

#include <errno.h>

#include "gen-state.h"
#include "macro.h"

#define INVALID (-1)

static const int transitions[_GEN_STATE_MAX][_GEN_EVENT_MAX] = {
        [GEN_STARTING] = {
                [GEN_EVENT_READY]      = GEN_WORKING,
                [GEN_EVENT_SUPERSEDED] = INVALID,
                [GEN_EVENT_STOP]       = GEN_FAILED,
                [GEN_EVENT_FAILED]     = GEN_FAILED,
                [GEN_EVENT_DEADLINE]   = INVALID,
                [GEN_EVENT_EXITED]     = GEN_FAILED,
                [GEN_EVENT_STANDBY]    = INVALID,
                [GEN_EVENT_REINSTATED] = INVALID,
        },
        [GEN_WORKING] = {
                [GEN_EVENT_READY]      = GEN_WORKING,
                [GEN_EVENT_SUPERSEDED] = GEN_DRAINING,
                [GEN_EVENT_STOP]       = GEN_DRAINING,
                [GEN_EVENT_FAILED]     = INVALID,
                [GEN_EVENT_DEADLINE]   = INVALID,
                [GEN_EVENT_EXITED]     = GEN_EXITED,
                [GEN_EVENT_STANDBY]    = GEN_STANDBY,
                [GEN_EVENT_REINSTATED] = INVALID,
        },
        [GEN_DRAINING] = {
                [GEN_EVENT_READY]      = GEN_DRAINING,
                [GEN_EVENT_SUPERSEDED] = GEN_DRAINING,
                [GEN_EVENT_STOP]       = GEN_DRAINING,
                [GEN_EVENT_FAILED]     = INVALID,
                [GEN_EVENT_DEADLINE]   = GEN_DRAINING,
                [GEN_EVENT_EXITED]     = GEN_EXITED,
                [GEN_EVENT_STANDBY]    = INVALID,
                [GEN_EVENT_REINSTATED] = INVALID,
        },
        [GEN_EXITED] = {
                [GEN_EVENT_READY]      = INVALID,
                [GEN_EVENT_SUPERSEDED] = INVALID,
                [GEN_EVENT_STOP]       = INVALID,
                [GEN_EVENT_FAILED]     = INVALID,
                [GEN_EVENT_DEADLINE]   = INVALID,
                [GEN_EVENT_EXITED]     = INVALID,
                [GEN_EVENT_STANDBY]    = INVALID,
                [GEN_EVENT_REINSTATED] = INVALID,
        },
        [GEN_FAILED] = {
                [GEN_EVENT_READY]      = INVALID,
                [GEN_EVENT_SUPERSEDED] = INVALID,
                [GEN_EVENT_STOP]       = INVALID,
                [GEN_EVENT_FAILED]     = INVALID,
                [GEN_EVENT_DEADLINE]   = INVALID,
                [GEN_EVENT_EXITED]     = GEN_FAILED,
                [GEN_EVENT_STANDBY]    = INVALID,
                [GEN_EVENT_REINSTATED] = INVALID,
        },
        [GEN_STANDBY] = {
                [GEN_EVENT_READY]      = GEN_STANDBY,
                [GEN_EVENT_SUPERSEDED] = GEN_DRAINING,
                [GEN_EVENT_STOP]       = GEN_DRAINING,
                [GEN_EVENT_FAILED]     = INVALID,
                [GEN_EVENT_DEADLINE]   = INVALID,
                [GEN_EVENT_EXITED]     = GEN_EXITED,
                [GEN_EVENT_STANDBY]    = GEN_STANDBY,
                [GEN_EVENT_REINSTATED] = GEN_WORKING,
        },
};

static const char *const state_names[_GEN_STATE_MAX] = {
        [GEN_STARTING] = "starting",
        [GEN_WORKING]  = "working",
        [GEN_DRAINING] = "draining",
        [GEN_EXITED]   = "exited",
        [GEN_FAILED]   = "failed",
        [GEN_STANDBY]  = "standby",
};

static const char *const event_names[_GEN_EVENT_MAX] = {
        [GEN_EVENT_READY]      = "ready",
        [GEN_EVENT_SUPERSEDED] = "superseded",
        [GEN_EVENT_STOP]       = "stop",
        [GEN_EVENT_FAILED]     = "failed",
        [GEN_EVENT_DEADLINE]   = "deadline",
        [GEN_EVENT_EXITED]     = "exited",
        [GEN_EVENT_STANDBY]    = "standby",
        [GEN_EVENT_REINSTATED] = "reinstated",
};

/* The enums' underlying type is implementation-defined: compare as int so that a negative value
 * passed in by mistake is caught rather than wrapped. */
static int state_valid(GenState s) {
        return (int) s >= 0 && (int) s < (int) _GEN_STATE_MAX;
}

static int event_valid(GenEvent e) {
        return (int) e >= 0 && (int) e < (int) _GEN_EVENT_MAX;
}

int gen_state_next(GenState s, GenEvent event, GenState *ret) {
        int next;

        if (!state_valid(s) || !event_valid(event))
                return -ERANGE;

        next = transitions[s][event];
        if (next == INVALID)
                return -EINVAL;

        if (ret)
                *ret = (GenState) next;
        return 0;
}

const char *gen_state_to_string(GenState s) {
        return state_valid(s) ? state_names[s] : NULL;
}

const char *gen_event_to_string(GenEvent e) {
        return event_valid(e) ? event_names[e] : NULL;
}

int gen_state_is_live(GenState s) {
        return s == GEN_STARTING || s == GEN_WORKING || s == GEN_STANDBY || s == GEN_DRAINING;
}
