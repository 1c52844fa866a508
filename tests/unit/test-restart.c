/* SPDX-License-Identifier: MIT */
/*
 * The restart state machine (src/daemon/restart.c) without root, sockets or processes: the
 * Manager runs with stand-ins for everything restart.c does to the kernel, the event loop and
 * the clock (RestartOps). The stand-ins record what restart.c asked for (the maps' working and
 * pending slots and settings, signals, timers, the respawn back-off, progress and results); the
 * tests play the instance's and the kernel's part by calling the entry points notify.c and
 * generation.c call (restart_on_ready(), restart_on_exited(), restart_on_failed(),
 * restart_on_timer(), ...), with a clock they move by hand.
 *
 * Every path of a restart: success (first start, then with the settle time), failure before
 * ready (exit, ERRNO=, start timeout, exec-check), busy, crash while settling (rollback, settings
 * included), crash while working (back-off), drain deadline, stop, and the saturating deadlines
 * of huge and infinite timeouts.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "manager.h"

#define MAX_CALLS 64

typedef struct Timer {
        Generation *g;
        uint64_t usec;
} Timer;

typedef struct Signal {
        uint32_t gen;
        int sig;
        bool group;
} Signal;

typedef struct Fake {
        uint64_t now;
        int spawn_error;                 /* the next spawn fails with it */
        uint32_t working_slot, pending_slot;
        int dissector;                   /* in the maps */
        unsigned n_set_settings;
        Signal signals[MAX_CALLS];
        unsigned n_signals;
        unsigned n_kill_group;
        unsigned n_released;
        Timer timers[MAX_CALLS];
        unsigned n_timers;
        uint64_t respawn_delay;          /* USEC_INFINITY: not armed */
        unsigned n_respawns_armed;
        Restart *check;                  /* ExecCheck= started for it */
        unsigned n_discard;
        char steps[MAX_CALLS][16];
        unsigned n_steps;
        unsigned n_results;
        GrmOutcome outcome;              /* the last result */
        char message[512];
} Fake;

static Fake fake;
static char requester_a, requester_b; /* connections are opaque to restart.c */
#define CONN_A ((CtlConnection *) &requester_a)
#define CONN_B ((CtlConnection *) &requester_b)
static GrmOutcome outcome_b = _GRM_OUTCOME_MAX;
static char config_path[] = "/tmp/test-restart-XXXXXX";

static uint64_t fake_now(Manager *m) {
        return fake.now;
}

static int fake_set_timer(Generation *g, uint64_t usec) {
        for (unsigned i = 0; i < fake.n_timers; i++)
                if (fake.timers[i].g == g) {
                        fake.timers[i].usec = usec;
                        return 0;
                }
        ck_assert_uint_lt(fake.n_timers, MAX_CALLS);
        fake.timers[fake.n_timers++] = (Timer) { g, usec };
        return 0;
}

static uint64_t timer_of(Generation *g) {
        for (unsigned i = 0; i < fake.n_timers; i++)
                if (fake.timers[i].g == g)
                        return fake.timers[i].usec;
        return USEC_INFINITY;
}

static int fake_spawn(Manager *m, uint32_t gen, unsigned slot, const Config *config,
                      uint64_t start_deadline_usec, Generation **ret) {
        Generation *g;

        if (fake.spawn_error) {
                int r = fake.spawn_error;

                fake.spawn_error = 0;
                return r;
        }
        ck_assert_ptr_nonnull(config->command);
        g = calloc(1, sizeof(*g));
        ck_assert_ptr_nonnull(g);
        g->manager = m;
        g->gen = gen;
        g->slot = slot;
        g->slot_held = true;
        g->state = GEN_STARTING;
        g->pid = 100000 + (pid_t) gen; /* never signalled for real: signal() is a stand-in */
        g->pidfd = -EBADF;
        g->spawned_usec = fake.now;
        (void) fake_set_timer(g, start_deadline_usec);
        g->next = m->generations;
        m->generations = g;
        *ret = g;
        return 0;
}

static int fake_set_working(Manager *m, uint32_t working_slot, uint32_t pending_slot) {
        fake.working_slot = working_slot;
        fake.pending_slot = pending_slot;
        return 0;
}

static int fake_set_settings(Manager *m, const Config *c) {
        fake.dissector = c->dissector;
        fake.n_set_settings++;
        return 0;
}

static int fake_signal(Generation *g, int sig, bool whole_group) {
        ck_assert_uint_lt(fake.n_signals, MAX_CALLS);
        fake.signals[fake.n_signals++] = (Signal) { g->gen, sig, whole_group };
        return 0;
}

static void fake_kill_group(Generation *g) {
        fake.n_kill_group++;
}

static void fake_release_slot(Generation *g) {
        if (g->slot_held)
                fake.n_released++;
        g->slot_held = false;
}

static int fake_arm_respawn(Manager *m, uint64_t delay_usec) {
        fake.respawn_delay = delay_usec;
        if (delay_usec != USEC_INFINITY)
                fake.n_respawns_armed++;
        return 0;
}

static int fake_start_check(Manager *m, Restart *r) {
        fake.check = r;
        return 0;
}

static void fake_discard_queued(Manager *m) {
        fake.n_discard++;
}

static void fake_progress(CtlConnection *c, const char *step, const char *message) {
        ck_assert_ptr_eq(c, CONN_A);
        ck_assert_uint_lt(fake.n_steps, MAX_CALLS);
        snprintf(fake.steps[fake.n_steps++], sizeof(fake.steps[0]), "%s", step);
}

static void fake_result(CtlConnection *c, GrmOutcome outcome, Generation *g, const char *message) {
        if (c == CONN_B) {
                outcome_b = outcome;
                return;
        }
        ck_assert_ptr_eq(c, CONN_A);
        fake.n_results++;
        fake.outcome = outcome;
        snprintf(fake.message, sizeof(fake.message), "%s", message);
}

static const RestartOps fake_ops = {
        .now = fake_now,
        .spawn = fake_spawn,
        .set_working = fake_set_working,
        .set_settings = fake_set_settings,
        .signal = fake_signal,
        .kill_group = fake_kill_group,
        .release_slot = fake_release_slot,
        .set_timer = fake_set_timer,
        .arm_respawn = fake_arm_respawn,
        .start_check = fake_start_check,
        .discard_queued = fake_discard_queued,
        .progress = fake_progress,
        .result = fake_result,
};

static void write_config(const char *extra) {
        FILE *f = fopen(config_path, "we");

        ck_assert_ptr_nonnull(f);
        fprintf(f, "[Instance]\nExecStart=/bin/true\n%s\n", extra);
        ck_assert_int_eq(fclose(f), 0);
}

/* A manager as takeover_startup() leaves it, minus the kernel: config in effect, no generation. */
static Manager *manager_fake(const char *extra) {
        _cleanup_free_ char *error = NULL;
        Manager *m;

        memset(&fake, 0, sizeof(fake));
        fake.now = 1000 * USEC_PER_SEC;
        fake.working_slot = fake.pending_slot = GRM_SLOT_NONE;
        fake.respawn_delay = USEC_INFINITY;
        fake.dissector = -1;
        outcome_b = _GRM_OUTCOME_MAX;
        write_config(extra);
        ck_assert_int_eq(manager_new(&m), 0);
        m->restart_ops = &fake_ops;
        m->config_path = strdup(config_path);
        ck_assert_int_eq(manager_load_config(m, &m->config, &error), 0);
        return m;
}

static void manager_fake_free(Manager *m) {
        if (m->restart)
                m->restart->requester = NULL; /* not a real connection */
        manager_free(m);
}

static bool stepped(const char *step) {
        for (unsigned i = 0; i < fake.n_steps; i++)
                if (streq(fake.steps[i], step))
                        return true;
        return false;
}

static unsigned signals_to(uint32_t gen, int sig) {
        unsigned n = 0;

        for (unsigned i = 0; i < fake.n_signals; i++)
                if (fake.signals[i].gen == gen && fake.signals[i].sig == sig)
                        n++;
        return n;
}

static Generation *find_gen(Manager *m, uint32_t gen) {
        for (Generation *g = m->generations; g; g = g->next)
                if (g->gen == gen)
                        return g;
        return NULL;
}

/* The instance sends READY=1 after delay_usec (what notify.c does with it). */
static void instance_ready(Manager *m, Generation *g, uint64_t delay_usec) {
        fake.now += delay_usec;
        g->ready_seen_usec = fake.now;
        restart_on_ready(m, g);
}

/* A restart requested by CONN_A that spawns; returns the new generation. */
static Generation *request(Manager *m) {
        fake.n_steps = 0;
        fake.n_results = 0;
        ck_assert_int_eq(restart_request(m, CONN_A, USEC_INFINITY), 0);
        ck_assert_ptr_nonnull(m->restart);
        ck_assert_ptr_nonnull(m->restart->gen);
        ck_assert(stepped("config"));
        ck_assert(stepped("spawned"));
        return m->restart->gen;
}

/* The first generation, as the automatic first start makes it: working, settled. */
static Generation *first_start(Manager *m) {
        Generation *g;

        ck_assert_int_eq(restart_request(m, NULL, USEC_INFINITY), 0);
        g = m->restart->gen;
        ck_assert_uint_eq(g->gen, 1);
        ck_assert_uint_eq(fake.pending_slot, g->slot); /* nothing works: it queues packets */
        ck_assert_uint_eq(fake.working_slot, GRM_SLOT_NONE);
        instance_ready(m, g, 5 * USEC_PER_MSEC);
        /* nothing to roll back to: done at once */
        ck_assert_ptr_null(m->restart);
        ck_assert_ptr_eq(m->working, g);
        ck_assert_int_eq(g->state, GEN_WORKING);
        ck_assert_uint_eq(fake.working_slot, g->slot);
        ck_assert_uint_eq(fake.pending_slot, GRM_SLOT_NONE);
        ck_assert_uint_eq(fake.n_discard, 1); /* the original sockets' queue, once */
        ck_assert_uint_eq(m->restarts_done, 1);
        return g;
}

START_TEST(test_first_start) {
        Manager *m = manager_fake("");
        Generation *g = first_start(m);

        ck_assert_int_eq(fake.dissector, GRM_DISSECTOR_FLOW);
        ck_assert_uint_eq(timer_of(g), USEC_INFINITY); /* no start timeout once ready */
        ck_assert_uint_eq(fake.n_signals, 0);
        manager_fake_free(m);
}
END_TEST

/* Success: ready, settle (old stands by, not told to drain), done (old drains). */
START_TEST(test_success_settles) {
        Manager *m = manager_fake("SettleSec=2s\nDrainTimeoutSec=30s");
        Generation *g1 = first_start(m), *g2;

        g2 = request(m);
        ck_assert_uint_eq(g2->gen, 2);
        ck_assert_uint_ne(g2->slot, g1->slot);
        ck_assert_uint_eq(fake.working_slot, g1->slot); /* g1 works while g2 starts */
        ck_assert_uint_eq(fake.pending_slot, GRM_SLOT_NONE);

        instance_ready(m, g2, 20 * USEC_PER_MSEC);
        ck_assert_uint_eq(fake.working_slot, g2->slot);
        ck_assert_ptr_eq(m->working, g2);
        ck_assert_int_eq(g1->state, GEN_STANDBY);
        ck_assert_uint_eq(signals_to(1, SIGTERM), 0); /* not told to drain yet */
        ck_assert_ptr_nonnull(m->restart);
        ck_assert_uint_eq(fake.n_results, 0);
        ck_assert(stepped("ready"));
        ck_assert(stepped("settle"));
        ck_assert(!stepped("drain"));
        ck_assert_uint_eq(timer_of(g2), fake.now + 2 * USEC_PER_SEC);

        /* a second restart while settling is busy */
        ck_assert_int_eq(restart_request(m, CONN_B, USEC_INFINITY), -EBUSY);
        ck_assert_int_eq(outcome_b, GRM_OUTCOME_BUSY);

        fake.now = timer_of(g2);
        restart_on_timer(m, g2);
        ck_assert_ptr_null(m->restart);
        ck_assert_uint_eq(fake.n_results, 1);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_DONE);
        ck_assert(stepped("drain"));
        ck_assert_int_eq(g1->state, GEN_DRAINING);
        ck_assert_uint_eq(signals_to(1, SIGTERM), 1);
        ck_assert_uint_eq(g1->drain_deadline_usec, fake.now + 30 * USEC_PER_SEC);
        ck_assert_uint_eq(timer_of(g1), g1->drain_deadline_usec);
        ck_assert_uint_eq(m->restarts_done, 2);

        /* the drained instance exits: its slot goes, nothing else changes */
        restart_on_exited(m, g1, "exited with status 0");
        ck_assert_int_eq(g1->state, GEN_EXITED);
        ck_assert(!g1->slot_held);
        ck_assert_ptr_eq(m->working, g2);
        ck_assert_uint_eq(fake.working_slot, g2->slot);
        ck_assert_uint_eq(fake.respawn_delay, USEC_INFINITY);
        manager_fake_free(m);
}
END_TEST

/* SettleSec=0: the old generation drains as soon as the new one is ready. */
START_TEST(test_success_no_settle) {
        Manager *m = manager_fake("SettleSec=0");
        Generation *g1 = first_start(m), *g2 = request(m);

        instance_ready(m, g2, USEC_PER_MSEC);
        ck_assert_ptr_null(m->restart);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_DONE);
        ck_assert_int_eq(g1->state, GEN_DRAINING);
        ck_assert_uint_eq(signals_to(1, SIGTERM), 1);
        manager_fake_free(m);
}
END_TEST

/* Failure before ready: nothing changes but the failed generation's own slot. */
enum { FAIL_EXIT, FAIL_ERRNO, FAIL_TIMEOUT, _FAIL_MAX };

START_TEST(test_fail_before_ready) {
        Manager *m = manager_fake("StartTimeoutSec=3s");
        Generation *g1 = first_start(m), *g2;
        unsigned settings_before = fake.n_set_settings;

        write_config("StartTimeoutSec=3s\n[Steering]\nDissector=none");
        g2 = request(m);
        ck_assert_uint_eq(timer_of(g2), fake.now + 3 * USEC_PER_SEC);
        switch (_i) {
        case FAIL_EXIT:
                restart_on_exited(m, g2, "exited with status 1");
                ck_assert_int_eq(fake.outcome, GRM_OUTCOME_FAILED);
                break;
        case FAIL_ERRNO:
                restart_on_failed(m, g2, GRM_OUTCOME_FAILED, "reported ERRNO=98 (Address in use)");
                ck_assert_int_eq(fake.outcome, GRM_OUTCOME_FAILED);
                ck_assert_ptr_nonnull(strstr(fake.message, "ERRNO=98"));
                break;
        case FAIL_TIMEOUT:
                fake.now = timer_of(g2);
                restart_on_timer(m, g2);
                ck_assert_int_eq(fake.outcome, GRM_OUTCOME_TIMEOUT);
                ck_assert_ptr_nonnull(strstr(fake.message, "start timeout"));
                break;
        }
        ck_assert_uint_eq(fake.n_results, 1);
        ck_assert_ptr_nonnull(strstr(fake.message, "rolled back"));
        ck_assert_ptr_null(m->restart);
        ck_assert_int_eq(g2->state, GEN_FAILED);
        ck_assert(!g2->slot_held);
        ck_assert_uint_eq(signals_to(2, SIGKILL), 1); /* its process group, leftovers included */
        /* the working generation and the settings never moved */
        ck_assert_ptr_eq(m->working, g1);
        ck_assert_int_eq(g1->state, GEN_WORKING);
        ck_assert_uint_eq(fake.working_slot, g1->slot);
        ck_assert_uint_eq(fake.n_set_settings, settings_before);
        ck_assert_int_eq(fake.dissector, GRM_DISSECTOR_FLOW);
        ck_assert_int_eq(m->config.dissector, GRM_DISSECTOR_FLOW);
        ck_assert_uint_eq(signals_to(1, SIGTERM), 0);
        ck_assert_uint_eq(fake.respawn_delay, USEC_INFINITY); /* something works: no respawn */
        ck_assert_uint_eq(m->restarts_failed, 1);
        manager_fake_free(m);
}
END_TEST

/* ExecCheck= fails or passes. */
START_TEST(test_exec_check) {
        Manager *m = manager_fake("");
        Generation *g1 = first_start(m);

        write_config("ExecCheck=/bin/false");
        fake.n_steps = 0;
        fake.n_results = 0;
        ck_assert_int_eq(restart_request(m, CONN_A, USEC_INFINITY), 0);
        ck_assert_ptr_eq(fake.check, m->restart);
        ck_assert(stepped("check"));
        restart_on_check_exit(m, CLD_EXITED, 1);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_REJECTED);
        ck_assert_ptr_nonnull(strstr(fake.message, "status 1"));
        ck_assert_ptr_null(m->restart);
        ck_assert_ptr_eq(m->working, g1);
        ck_assert_ptr_null(find_gen(m, 3));

        ck_assert_int_eq(restart_request(m, CONN_A, USEC_INFINITY), 0);
        restart_on_check_exit(m, CLD_KILLED, SIGKILL);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_REJECTED);
        ck_assert_ptr_nonnull(strstr(fake.message, "SIGKILL"));

        ck_assert_int_eq(restart_request(m, CONN_A, USEC_INFINITY), 0);
        restart_on_check_exit(m, CLD_EXITED, 0);
        ck_assert(stepped("checked"));
        ck_assert(stepped("spawned"));
        ck_assert_ptr_nonnull(m->restart->gen);
        manager_fake_free(m);
}
END_TEST

/* A bad config changes nothing. */
START_TEST(test_config_rejected) {
        Manager *m = manager_fake("");
        Generation *g1 = first_start(m);

        write_config("Frobnicate=yes");
        fake.n_results = 0;
        ck_assert_int_eq(restart_request(m, CONN_A, USEC_INFINITY), -EINVAL);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_REJECTED);
        ck_assert_ptr_nonnull(strstr(fake.message, "nothing changed"));
        ck_assert_ptr_null(m->restart);
        ck_assert_ptr_eq(m->working, g1);
        ck_assert_uint_eq(fake.working_slot, g1->slot);
        manager_fake_free(m);
}
END_TEST

/* Busy: a second request while one starts; the first completes. */
START_TEST(test_busy) {
        Manager *m = manager_fake("SettleSec=0");
        Generation *g2;

        (void) first_start(m);
        g2 = request(m);
        ck_assert_int_eq(restart_request(m, CONN_B, USEC_INFINITY), -EBUSY);
        ck_assert_int_eq(outcome_b, GRM_OUTCOME_BUSY);
        ck_assert_ptr_eq(m->restart->gen, g2);
        instance_ready(m, g2, USEC_PER_MSEC);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_DONE);
        manager_fake_free(m);
}
END_TEST

/* The new generation crashes while settling: rollback to the one that stood by, with its
 * settings (the dissector the new config changed goes back too), restart failed (exit 5). */
START_TEST(test_crash_in_settle) {
        Manager *m = manager_fake("SettleSec=1s");
        Generation *g1 = first_start(m), *g2;

        write_config("SettleSec=1s\n[Steering]\nDissector=none");
        g2 = request(m);
        instance_ready(m, g2, 10 * USEC_PER_MSEC);
        ck_assert_int_eq(fake.dissector, GRM_DISSECTOR_NONE); /* the new settings came with it */
        ck_assert_int_eq(m->config.dissector, GRM_DISSECTOR_FLOW); /* but are not in effect yet */
        ck_assert_int_eq(g1->state, GEN_STANDBY);

        fake.now += 200 * USEC_PER_MSEC;
        restart_on_exited(m, g2, "killed by signal SIGSEGV");
        ck_assert_uint_eq(fake.n_results, 1);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_FAILED);
        ck_assert_ptr_nonnull(strstr(fake.message, "settle"));
        ck_assert_ptr_nonnull(strstr(fake.message, "rolled back"));
        ck_assert(stepped("rollback"));
        ck_assert_ptr_null(m->restart);
        /* the old generation works again, as if nothing had happened */
        ck_assert_ptr_eq(m->working, g1);
        ck_assert_int_eq(g1->state, GEN_WORKING);
        ck_assert_uint_eq(fake.working_slot, g1->slot);
        ck_assert_uint_eq(fake.pending_slot, GRM_SLOT_NONE);
        ck_assert_uint_eq(signals_to(1, SIGTERM), 0);
        ck_assert_uint_eq(signals_to(1, SIGKILL), 0);
        ck_assert_int_eq(fake.dissector, GRM_DISSECTOR_FLOW);
        ck_assert_int_eq(m->config.dissector, GRM_DISSECTOR_FLOW);
        /* the crashed one is gone for good; no crash replacement, something works */
        ck_assert_int_eq(g2->state, GEN_EXITED);
        ck_assert(!g2->slot_held);
        ck_assert_uint_eq(fake.respawn_delay, USEC_INFINITY);
        ck_assert_uint_eq(m->restarts_failed, 1);

        /* the settle timer of the dead generation cannot end a later restart */
        restart_on_timer(m, g2);
        ck_assert_ptr_eq(m->working, g1);
        ck_assert_int_eq(g1->state, GEN_WORKING);

        /* the next restart works normally */
        write_config("SettleSec=1s");
        g2 = request(m);
        instance_ready(m, g2, USEC_PER_MSEC);
        fake.now = timer_of(g2);
        restart_on_timer(m, g2);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_DONE);
        ck_assert_int_eq(g1->state, GEN_DRAINING);
        manager_fake_free(m);
}
END_TEST

/* The old generation dies while standing by: the restart settles without it. */
START_TEST(test_standby_dies) {
        Manager *m = manager_fake("SettleSec=1s");
        Generation *g1 = first_start(m), *g2 = request(m);

        instance_ready(m, g2, USEC_PER_MSEC);
        restart_on_exited(m, g1, "killed by signal SIGKILL");
        ck_assert_int_eq(g1->state, GEN_EXITED);
        ck_assert_ptr_eq(m->working, g2);
        ck_assert_ptr_nonnull(m->restart);
        fake.now = timer_of(g2);
        restart_on_timer(m, g2);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_DONE);
        ck_assert_uint_eq(fake.working_slot, g2->slot);

        /* and if the new one then crashes, it is a working crash: replaced after a back-off */
        restart_on_exited(m, g2, "killed by signal SIGSEGV");
        ck_assert_ptr_null(m->working);
        ck_assert_uint_eq(fake.working_slot, GRM_SLOT_NONE);
        ck_assert_uint_eq(fake.respawn_delay, 100 * USEC_PER_MSEC);
        manager_fake_free(m);
}
END_TEST

/* What a takeover leaves of the previous grmd's restart of g: nothing (its restart, its
 * requester and g's timer went with it); the generations are as its snapshot said. */
static void previous_grmd_dies(Manager *m, Generation *g) {
        m->restart->requester = NULL;
        restart_abandon(m);
        (void) fake_set_timer(g, USEC_INFINITY);
}

/* grmd dies while a restart settles (takeover: the snapshot has the new generation working and
 * the old one standing by, no restart and no timers). The new grmd settles the rest of the time
 * from the flip: a crash within it rolls back (loop 0), the end of it drains the old (loop 1). */
START_TEST(test_takeover_while_settling) {
        Manager *m = manager_fake("SettleSec=1s");
        Generation *g1 = first_start(m), *g2 = request(m);
        uint64_t flipped;

        instance_ready(m, g2, 10 * USEC_PER_MSEC);
        flipped = g2->flipped_usec;
        ck_assert_int_eq(g1->state, GEN_STANDBY);
        previous_grmd_dies(m, g2);
        fake.n_results = 0;
        fake.now += 300 * USEC_PER_MSEC;

        restart_adopt_standby(m);
        ck_assert_ptr_nonnull(m->restart);
        ck_assert_ptr_eq(m->restart->gen, g2);
        ck_assert_ptr_eq(m->restart->previous, g1);
        ck_assert_int_eq(g1->state, GEN_STANDBY); /* not told to drain */
        ck_assert_uint_eq(signals_to(1, SIGTERM), 0);
        ck_assert_uint_eq(timer_of(g2), flipped + USEC_PER_SEC);
        ck_assert_uint_eq(fake.working_slot, g2->slot);

        if (_i == 0) {
                fake.now += 200 * USEC_PER_MSEC;
                restart_on_exited(m, g2, "killed by signal SIGSEGV");
                /* nobody waits for the result (the requester went with the old grmd) */
                ck_assert_uint_eq(m->restarts_failed, 1);
                ck_assert_ptr_null(m->restart);
                ck_assert_ptr_eq(m->working, g1);
                ck_assert_int_eq(g1->state, GEN_WORKING);
                ck_assert_uint_eq(fake.working_slot, g1->slot);
                ck_assert_uint_eq(signals_to(1, SIGTERM), 0);
        } else {
                fake.now = timer_of(g2);
                restart_on_timer(m, g2);
                ck_assert_uint_eq(m->restarts_done, 2);
                ck_assert_ptr_null(m->restart);
                ck_assert_int_eq(g1->state, GEN_DRAINING);
                ck_assert_uint_eq(signals_to(1, SIGTERM), 1);
                ck_assert_ptr_eq(m->working, g2);
        }
        manager_fake_free(m);
}
END_TEST

/* grmd dies between the flip and its snapshot (takeover.c finds a starting generation in the
 * working slot): the new one works, the old one stands by for the settle time from now, and a
 * crash within it rolls back. */
START_TEST(test_takeover_after_flip) {
        Manager *m = manager_fake("SettleSec=1s");
        Generation *g1 = first_start(m), *g2 = request(m);

        previous_grmd_dies(m, g2);
        fake.working_slot = g2->slot; /* what the maps say */
        fake.now += 50 * USEC_PER_MSEC;

        restart_adopt_flip(m, g2);
        restart_adopt_standby(m);
        ck_assert_ptr_eq(m->working, g2);
        ck_assert_int_eq(g2->state, GEN_WORKING);
        ck_assert_int_eq(g1->state, GEN_STANDBY);
        ck_assert_uint_eq(signals_to(1, SIGTERM), 0);
        ck_assert_ptr_nonnull(m->restart);
        ck_assert_ptr_eq(m->restart->previous, g1);
        ck_assert_uint_eq(timer_of(g2), fake.now + USEC_PER_SEC);

        fake.now += 300 * USEC_PER_MSEC;
        restart_on_exited(m, g2, "killed by signal SIGSEGV");
        ck_assert_ptr_eq(m->working, g1);
        ck_assert_int_eq(g1->state, GEN_WORKING);
        ck_assert_uint_eq(fake.working_slot, g1->slot);
        ck_assert_uint_eq(m->restarts_failed, 1);
        manager_fake_free(m);
}
END_TEST

/* The same with no settle time in this grmd's config: done at once, the old one drains. */
START_TEST(test_takeover_standby_no_settle) {
        Manager *m = manager_fake("SettleSec=1s");
        Generation *g1 = first_start(m), *g2 = request(m);

        instance_ready(m, g2, 10 * USEC_PER_MSEC);
        previous_grmd_dies(m, g2);
        m->config.settle_usec = 0;
        restart_adopt_standby(m);
        ck_assert_ptr_null(m->restart);
        ck_assert_int_eq(g1->state, GEN_DRAINING);
        ck_assert_ptr_eq(m->working, g2);
        manager_fake_free(m);
}
END_TEST

/* A working generation (settled) crashes: no rollback; replaced after a back-off that doubles
 * while the replacements crash too. */
START_TEST(test_crash_while_working) {
        Manager *m = manager_fake("SettleSec=0");
        Generation *g = first_start(m);
        uint64_t expected = 100 * USEC_PER_MSEC;

        for (unsigned k = 0; k < 4; k++) {
                fake.now += USEC_PER_SEC; /* less than the 10 s that reset the back-off */
                restart_on_exited(m, g, "killed by signal SIGSEGV");
                ck_assert_int_eq(g->state, GEN_EXITED);
                ck_assert_ptr_null(m->working);
                ck_assert_uint_eq(fake.working_slot, GRM_SLOT_NONE);
                ck_assert_uint_eq(fake.respawn_delay, expected);
                ck_assert_uint_eq(fake.n_respawns_armed, k + 1);

                fake.now += expected;
                restart_on_respawn(m);
                ck_assert_ptr_nonnull(m->restart);
                g = m->restart->gen;
                ck_assert_uint_eq(fake.pending_slot, g->slot);
                instance_ready(m, g, USEC_PER_MSEC);
                ck_assert_ptr_eq(m->working, g);
                ck_assert_ptr_null(m->restart);
                expected *= 2;
        }

        /* stable for longer than 10 s: the back-off starts over */
        fake.now += 11 * USEC_PER_SEC;
        restart_on_exited(m, g, "killed by signal SIGSEGV");
        ck_assert_uint_eq(fake.respawn_delay, 100 * USEC_PER_MSEC);
        manager_fake_free(m);
}
END_TEST

/* A spawn that fails with nothing working schedules a replacement. */
START_TEST(test_spawn_fails) {
        Manager *m = manager_fake("");

        fake.spawn_error = -EMFILE;
        ck_assert_int_eq(restart_request(m, CONN_A, USEC_INFINITY), 0);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_INTERNAL);
        ck_assert_ptr_null(m->restart);
        ck_assert_uint_eq(fake.respawn_delay, 100 * USEC_PER_MSEC);
        ck_assert_str_eq(fake.message, "could not start a new instance (see grmd's log)");
        /* a request in the meantime cancels the back-off */
        ck_assert_int_eq(restart_request(m, CONN_A, USEC_INFINITY), 0);
        ck_assert_uint_eq(fake.respawn_delay, USEC_INFINITY);
        manager_fake_free(m);
}
END_TEST

/* A spawn that says why it failed (generation.c: an owner it cannot give, a socket outside
 * grm's group) has the requester told that, once. */
START_TEST(test_spawn_fails_with_reason) {
        Manager *m = manager_fake("");

        fake.spawn_error = -EXDEV;
        snprintf(m->spawn_error, sizeof(m->spawn_error), "each new socket on udp:127.0.0.1:9000 joined a reuseport group that is not grm's");
        ck_assert_int_eq(restart_request(m, CONN_A, USEC_INFINITY), 0);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_INTERNAL);
        ck_assert_str_eq(fake.message, "could not start a new instance: each new socket on udp:127.0.0.1:9000 joined a reuseport group that is not grm's");
        ck_assert_str_eq(m->spawn_error, "");
        manager_fake_free(m);
}
END_TEST

/* The drain deadline kills the whole process group; the exit then ends it. */
START_TEST(test_deadline) {
        Manager *m = manager_fake("SettleSec=0\nDrainTimeoutSec=5s");
        Generation *g1 = first_start(m), *g2 = request(m);

        instance_ready(m, g2, USEC_PER_MSEC);
        ck_assert_int_eq(g1->state, GEN_DRAINING);
        fake.now = timer_of(g1);
        ck_assert_uint_eq(fake.now, g1->drain_deadline_usec);
        restart_on_timer(m, g1);
        ck_assert_uint_eq(fake.n_signals, 2);
        ck_assert_uint_eq(signals_to(1, SIGKILL), 1);
        ck_assert(fake.signals[1].group);
        ck_assert(g1->killed);
        ck_assert_str_eq(g1->failure, "killed at the drain deadline");
        restart_on_exited(m, g1, "killed by signal SIGKILL");
        ck_assert_int_eq(g1->state, GEN_EXITED);
        ck_assert_uint_eq(fake.n_kill_group, 1);
        ck_assert_ptr_eq(m->working, g2);
        manager_fake_free(m);
}
END_TEST

/* Stop: while a restart starts (it fails), while one settles (cancelled, busy), and drained. */
START_TEST(test_stop) {
        Manager *m = manager_fake("SettleSec=5s");
        Generation *g1 = first_start(m), *g2 = request(m);

        if (_i == 0) {
                restart_stop(m);
                ck_assert_int_eq(fake.outcome, GRM_OUTCOME_FAILED);
                ck_assert_ptr_nonnull(strstr(fake.message, "stopping"));
                ck_assert_int_eq(g2->state, GEN_FAILED);
        } else {
                instance_ready(m, g2, USEC_PER_MSEC);
                restart_stop(m);
                ck_assert_int_eq(fake.outcome, GRM_OUTCOME_BUSY);
                ck_assert_int_eq(g2->state, GEN_DRAINING);
                ck_assert_uint_eq(signals_to(2, SIGTERM), 1);
        }
        ck_assert_ptr_null(m->restart);
        ck_assert_int_eq(g1->state, GEN_DRAINING);
        ck_assert_uint_eq(signals_to(1, SIGTERM), 1);
        ck_assert(m->stopping);
        /* nothing new starts once stopping */
        ck_assert_int_eq(restart_request(m, CONN_B, USEC_INFINITY), -ESHUTDOWN);
        ck_assert_int_eq(outcome_b, GRM_OUTCOME_BUSY);
        restart_on_exited(m, g1, "exited with status 0");
        ck_assert_uint_eq(fake.respawn_delay, USEC_INFINITY); /* no replacement while stopping */
        manager_fake_free(m);
}
END_TEST

/* Saturating deadlines: a huge start timeout is no timeout, DrainTimeoutSec=infinity no
 * deadline, and a clock near its end does not wrap either. */
START_TEST(test_huge_timeouts) {
        Manager *m = manager_fake("SettleSec=0\nDrainTimeoutSec=infinity\nStartTimeoutSec=18446744073709s");
        Generation *g1 = first_start(m), *g2;

        fake.n_results = 0;
        ck_assert_int_eq(restart_request(m, CONN_A, UINT64_MAX - 5), 0);
        g2 = m->restart->gen;
        ck_assert_uint_eq(timer_of(g2), USEC_INFINITY);
        instance_ready(m, g2, USEC_PER_SEC);
        ck_assert_int_eq(fake.outcome, GRM_OUTCOME_DONE);
        ck_assert_int_eq(g1->state, GEN_DRAINING);
        ck_assert_uint_eq(g1->drain_deadline_usec, USEC_INFINITY);
        ck_assert_uint_eq(timer_of(g1), USEC_INFINITY);

        /* a finite timeout from a clock near its end */
        ck_assert_uint_eq(usec_add(UINT64_MAX - 10, 5), UINT64_MAX - 5);
        ck_assert_uint_eq(usec_add(UINT64_MAX - 10, 11), USEC_INFINITY);
        ck_assert_uint_eq(usec_add(USEC_INFINITY, 0), USEC_INFINITY);
        ck_assert_uint_eq(usec_add(0, USEC_INFINITY), USEC_INFINITY);
        ck_assert_uint_eq(usec_add(1, 2), 3);
        ck_assert_uint_eq(usec_sub_unsigned(5, 7), 0);
        ck_assert_uint_eq(usec_sub_unsigned(USEC_INFINITY, 7), USEC_INFINITY);
        manager_fake_free(m);
}
END_TEST

static Suite *restart_suite(void) {
        Suite *s = suite_create("restart");
        TCase *tc;

        tc = tcase_create("success");
        tcase_add_test(tc, test_first_start);
        tcase_add_test(tc, test_success_settles);
        tcase_add_test(tc, test_success_no_settle);
        suite_add_tcase(s, tc);

        tc = tcase_create("failure_before_ready");
        tcase_add_loop_test(tc, test_fail_before_ready, 0, _FAIL_MAX);
        tcase_add_test(tc, test_exec_check);
        tcase_add_test(tc, test_config_rejected);
        tcase_add_test(tc, test_spawn_fails);
        tcase_add_test(tc, test_spawn_fails_with_reason);
        suite_add_tcase(s, tc);

        tc = tcase_create("busy");
        tcase_add_test(tc, test_busy);
        suite_add_tcase(s, tc);

        tc = tcase_create("settle");
        tcase_add_test(tc, test_crash_in_settle);
        tcase_add_test(tc, test_standby_dies);
        tcase_add_loop_test(tc, test_takeover_while_settling, 0, 2);
        tcase_add_test(tc, test_takeover_standby_no_settle);
        tcase_add_test(tc, test_takeover_after_flip);
        suite_add_tcase(s, tc);

        tc = tcase_create("crash_while_working");
        tcase_add_test(tc, test_crash_while_working);
        suite_add_tcase(s, tc);

        tc = tcase_create("deadline");
        tcase_add_test(tc, test_deadline);
        tcase_add_test(tc, test_huge_timeouts);
        suite_add_tcase(s, tc);

        tc = tcase_create("stop");
        tcase_add_loop_test(tc, test_stop, 0, 2);
        suite_add_tcase(s, tc);

        return s;
}

int main(void) {
        SRunner *sr;
        int fd, failed;

        /* No systemd to tell, no kill file: restart.c's sd_notify() calls do nothing. */
        unsetenv("NOTIFY_SOCKET");
        unsetenv("GRM_TEST_KILL_FILE");
        fd = mkstemp(config_path);
        if (fd < 0)
                return EXIT_FAILURE;
        close(fd);

        sr = srunner_create(restart_suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        unlink(config_path);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
