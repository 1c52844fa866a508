/* SPDX-License-Identifier: MIT */
/*
 * The life of one generation as a pure state machine, so the rules are in one table and
 * tested on their own. grmd's generation.c acts on the transitions.
 *
 *   starting --ready--> working --superseded/stop--> draining --exited--> exited
 *   starting --failed/exited/stop--> failed
 *   working --exited--> exited (crash: grmd replaces it, or rolls back to the one standing by)
 *   working --standby--> standby (a newer one works, settling) --reinstated--> working
 *                                                                --superseded--> draining
 */
#pragma once

typedef enum GenState {
        GEN_STARTING,   /* spawned, sockets registered, waiting for READY=1 */
        GEN_WORKING,    /* receives new flows */
        GEN_DRAINING,   /* told to drain; keeps its existing flows until it exits or is killed */
        GEN_EXITED,     /* was ready once; its process is gone */
        GEN_FAILED,     /* never became ready (exited, ERRNO=, timed out, or cancelled) */
        GEN_STANDBY,    /* was working; a newer one works but has not settled: takes over again
                         * if that one fails, drains once it settles */
        _GEN_STATE_MAX,
} GenState;

typedef enum GenEvent {
        GEN_EVENT_READY,       /* READY=1 from the instance */
        GEN_EVENT_SUPERSEDED,  /* a newer generation became working */
        GEN_EVENT_STOP,        /* grmd is stopping */
        GEN_EVENT_FAILED,      /* ERRNO= or start timeout: grmd kills it */
        GEN_EVENT_DEADLINE,    /* drain deadline reached: grmd kills it */
        GEN_EVENT_EXITED,      /* the main process is gone */
        GEN_EVENT_STANDBY,     /* a newer generation works, on probation (settling) */
        GEN_EVENT_REINSTATED,  /* the newer one failed while settling: working again */
        _GEN_EVENT_MAX,
} GenEvent;

/**
 * gen_state_next() - the state after @event in state @s.
 * Return: 0 with *ret set (possibly to @s: a repeated READY=1 or a second stop is harmless), or
 * -EINVAL for an event that cannot happen in @s (the caller has a bug or a stale event), or
 * -ERANGE for values outside the enums.
 */
int gen_state_next(GenState s, GenEvent event, GenState *ret);

/* "starting", "working", "draining", "exited", "failed", "standby"; NULL if out of range. */
const char *gen_state_to_string(GenState s);
const char *gen_event_to_string(GenEvent e);
/* Starting, working, standby or draining: the process may still run and its sockets are
 * registered. */
int gen_state_is_live(GenState s);
