/* SPDX-License-Identifier: MIT */
/*
 * The restart state machine, the only place that decides what a generation's events mean:
 *
 *   request -> re-read config -> exec-check -> spawn generation N (sockets registered first)
 *           -> READY=1: flip working to N (one map update, N's steering settings with it);
 *              N-1 stands by, not told to drain
 *           -> settle: N holds for SettleSec= -> done: N-1 drains, N's settings are in effect
 *           -> failure before ready (exit, ERRNO=, timeout): kill N, release its slot, nothing
 *              else changed
 *           -> N dies while settling: roll back: N-1 works again, with its settings
 *
 * A working instance that dies after settling is replaced by an automatic restart with back-off.
 * A stop (SIGTERM, SIGINT) drains every generation; the manager exits once all are gone.
 *
 * Events come in from notify.c (READY=1, ERRNO=), generation.c (exit, timers) and ctl-server.c
 * (requests); results go out to the requester. Everything that touches the kernel, the event
 * loop or the clock goes through m->restart_ops (RestartOps, manager.h), so that check tests
 * (tests/unit/test-restart.c) drive every path with stand-ins.
 *
 * Invariants: at most one restart (m->restart); the working generation (m->working) is the one
 * the maps name; a generation stands by only while a restart settles (r->previous).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "macro.h"
#include "manager.h"
#include "spawn.h"

#define RESPAWN_MIN_USEC (100 * USEC_PER_MSEC)
#define RESPAWN_MAX_USEC (30 * USEC_PER_SEC)
#define STABLE_USEC (10 * USEC_PER_SEC)  /* working this long resets the crash back-off */

static uint64_t now(Manager *m) {
        return m->restart_ops->now(m);
}

static void progress(Manager *m, const char *step, const char *fmt, ...) _printf_(3, 4);
static void progress(Manager *m, const char *step, const char *fmt, ...) {
        char message[512];
        va_list ap;

        if (!m->restart || !m->restart->requester)
                return;
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        m->restart_ops->progress(m->restart->requester, step, message);
}

static void restart_free(Restart *r) {
        if (!r)
                return;
        sd_event_source_disable_unref(r->check_source);
        if (r->check_pidfd >= 0) {
                (void) pidfd_send_signal(r->check_pidfd, SIGKILL, NULL, 0);
                (void) waitpid(r->check_pid, NULL, 0);
        }
        safe_close(r->check_pidfd);
        config_done(&r->config);
        free(r);
}

static int generation_transition(Generation *g, GenEvent event) {
        GenState next;
        int r;

        r = gen_state_next(g->state, event, &next);
        if (r < 0) {
                log_debug("Generation %" PRIu32 ": ignoring event %s in state %s", g->gen,
                          gen_event_to_string(event), gen_state_to_string(g->state));
                return r;
        }
        g->state = next;
        return 0;
}

static void generation_set_failure(Generation *g, const char *why) {
        free(g->failure);
        g->failure = why ? strdup(why) : NULL;
}

static int find_free_slot(Manager *m, int *ret) {
        bool used[GRM_GEN_SLOTS] = {};

        for (Generation *g = m->generations; g; g = g->next)
                if (g->slot_held)
                        used[g->slot] = true;
        for (unsigned s = 0; s < GRM_GEN_SLOTS; s++) {
                /* Prefer the slot after the last generation's, so slots are reused late. */
                unsigned slot = (m->last_gen + s) % GRM_GEN_SLOTS;
                if (!used[slot]) {
                        *ret = (int) slot;
                        return 0;
                }
        }
        return -EBUSY;
}

static void restart_finish(Manager *m, GrmOutcome outcome, const char *message) {
        Restart *r = m->restart;
        Generation *g;

        if (!r)
                return;
        g = r->gen;
        r->outcome = outcome;
        if (outcome == GRM_OUTCOME_DONE)
                m->restarts_done++;
        else
                m->restarts_failed++;
        if (outcome == GRM_OUTCOME_DONE)
                manager_log_event(LOG_INFO, MESSAGE_RESTART_SUCCEEDED, "restart-succeeded", g, "done",
                          "Restart to generation %" PRIu32 " done: pid %d ready after %" PRIu64 " ms.",
                          g->gen, (int) g->pid, (g->ready_usec - g->spawned_usec) / 1000);
        else
                manager_log_event(LOG_ERR, MESSAGE_RESTART_FAILED, "restart-failed", g, grm_outcome_to_string(outcome),
                          "Restart failed (%s): %s", grm_outcome_to_string(outcome), message);
        /* systemd: the reload (if this was one) is over, whatever its outcome. */
        if (!r->automatic)
                (void) sd_notify(false, "READY=1");

        if (r->requester)
                m->restart_ops->result(r->requester, outcome, g, message);
        m->restart = NULL;
        restart_free(r);
        manager_state_changed(m);
        manager_prune_history(m);
}

void restart_on_respawn(Manager *m) {
        m->respawn_armed = false;
        if (m->stopping || m->working || m->restart)
                return;
        (void) restart_request(m, NULL, USEC_INFINITY);
}

static void cancel_respawn(Manager *m) {
        if (!m->respawn_armed)
                return;
        (void) m->restart_ops->arm_respawn(m, USEC_INFINITY);
        m->respawn_armed = false;
}

/* Nothing works: start a new generation after the back-off delay. */
static void schedule_respawn(Manager *m) {
        uint64_t delay = RESPAWN_MIN_USEC;

        if (m->stopping || m->working || m->restart || m->respawn_armed)
                return;
        for (unsigned i = 0; i < m->crash_count && delay < RESPAWN_MAX_USEC; i++)
                delay *= 2;
        if (delay > RESPAWN_MAX_USEC)
                delay = RESPAWN_MAX_USEC;
        m->crash_count++;
        log_notice("Starting a new generation in %" PRIu64 " ms.", delay / 1000);
        if (m->restart_ops->arm_respawn(m, delay) < 0) {
                log_error("Failed to arm the respawn timer; no generation will be started.");
                return;
        }
        m->respawn_armed = true;
}

static void generation_start_drain(Manager *m, Generation *g, GenEvent why) {
        uint64_t timeout = m->config.drain_timeout_usec;
        char left[32];
        int r;

        if (timeout == CONFIG_DRAIN_TIMEOUT_INFINITY)
                timeout = USEC_INFINITY;

        if (generation_transition(g, why) < 0)
                return;
        if (g->drain_deadline_usec != 0)
                return; /* already draining: keep its deadline */
        g->drain_deadline_usec = usec_add(now(m), timeout);
        r = m->restart_ops->signal(g, m->config.drain_signal, false);
        if (timeout == USEC_INFINITY)
                snprintf(left, sizeof(left), "no deadline");
        else
                snprintf(left, sizeof(left), "deadline in %" PRIu64 " s", timeout / USEC_PER_SEC);
        if (r < 0)
                log_warning_errno(r, "Failed to send %s to generation %" PRIu32 " (pid %d): %m",
                                  strempty(signal_to_name(m->config.drain_signal)), g->gen, (int) g->pid);
        else
                log_info("Generation %" PRIu32 " (pid %d) draining, %s.", g->gen, (int) g->pid, left);
        r = m->restart_ops->set_timer(g, g->drain_deadline_usec);
        if (r < 0)
                log_error_errno(r, "Failed to arm the drain deadline of generation %" PRIu32 ": %m", g->gen);
}

/* The restart is done: its settings are in effect, the generation that stood by drains. */
static void restart_settled(Manager *m) {
        Restart *r = m->restart;
        Generation *g = r->gen;

        (void) m->restart_ops->set_timer(g, USEC_INFINITY);
        /* The new config is in effect from here on (drain settings included). */
        config_done(&m->config);
        m->config = r->config;
        config_init(&r->config);

        /* Every older live generation drains; the one that stood by included. */
        for (Generation *o = m->generations; o; o = o->next)
                if (o != g && (o->state == GEN_STANDBY || o->state == GEN_WORKING || o->state == GEN_DRAINING)) {
                        bool was_standby = o->state == GEN_STANDBY;

                        generation_start_drain(m, o, GEN_EVENT_SUPERSEDED);
                        if (was_standby)
                                progress(m, "drain", "generation %" PRIu32 " (pid %d) draining", o->gen,
                                         (int) o->pid);
                }
        restart_finish(m, GRM_OUTCOME_DONE, "restarted");
}

/* The new generation failed while settling (or the flip failed): the one that stood by works
 * again, with its settings, and gets the new generation's flows as stale ones. */
static void restart_roll_back(Manager *m, const char *message) {
        Restart *r = m->restart;
        Generation *prev = r->previous;
        int k;

        if (prev && prev->state == GEN_STANDBY) {
                k = m->restart_ops->set_working(m, prev->slot, GRM_SLOT_NONE);
                if (k < 0)
                        log_error_errno(k, "Failed to give generation %" PRIu32 " the working role back: %m",
                                        prev->gen);
                (void) generation_transition(prev, GEN_EVENT_REINSTATED);
                m->working = prev;
                log_notice("Generation %" PRIu32 " (pid %d) is working again.", prev->gen, (int) prev->pid);
                progress(m, "rollback", "generation %" PRIu32 " (pid %d) working again", prev->gen,
                         (int) prev->pid);
        } else if (m->working == r->gen)
                m->working = NULL;
        /* Settings go back to what is in effect (the restart's were only in the maps). */
        k = m->restart_ops->set_settings(m, &m->config);
        if (k < 0)
                log_warning_errno(k, "Failed to restore the steering settings: %m");
        restart_finish(m, GRM_OUTCOME_FAILED, message);
}

void restart_on_ready(Manager *m, Generation *g) {
        Restart *r = m->restart && m->restart->gen == g ? m->restart : NULL;
        Generation *old = m->working;
        uint64_t settle_usec;
        int k;

        if (generation_transition(g, GEN_EVENT_READY) < 0)
                return;
        g->ready_usec = now(m);
        (void) m->restart_ops->set_timer(g, USEC_INFINITY);

        /* The restart's steering settings come with its generation (and go if it is rolled back). */
        if (r) {
                k = m->restart_ops->set_settings(m, &r->config);
                if (k < 0)
                        log_warning_errno(k, "Failed to apply steering settings: %m");
        }
        k = m->restart_ops->set_working(m, g->slot, GRM_SLOT_NONE);
        if (k < 0) {
                log_error_errno(k, "Failed to make generation %" PRIu32 " the working one: %m", g->gen);
                if (r)
                        (void) m->restart_ops->set_settings(m, &m->config);
                /* Never flipped: it fails as a start does (the table has no failure after ready). */
                g->state = GEN_STARTING;
                restart_on_failed(m, g, GRM_OUTCOME_INTERNAL, "could not update the steering maps");
                return;
        }
        g->flipped_usec = now(m);
        m->last_flip_latency_usec = g->flipped_usec - g->ready_seen_usec;
        m->working = g;
        test_kill_point("flip");
        log_info("Generation %" PRIu32 " (pid %d) is working; flip took %" PRIu64 " us.", g->gen,
                 (int) g->pid, m->last_flip_latency_usec);
        if (!old)
                m->restart_ops->discard_queued(m);
        progress(m, "ready", "generation %" PRIu32 " (pid %d) ready after %" PRIu64 " ms, working now",
                 g->gen, (int) g->pid, (g->ready_usec - g->spawned_usec) / 1000);

        settle_usec = r ? r->config.settle_usec : 0;
        if (r && old && settle_usec > 0 && settle_usec != UINT64_MAX) {
                /* Not done yet: the old generation stands by, able to take the working role back,
                 * until the new one has held for the settle time. */
                (void) generation_transition(old, GEN_EVENT_STANDBY);
                r->previous = old;
                r->settle_deadline_usec = usec_add(g->flipped_usec, settle_usec);
                k = m->restart_ops->set_timer(g, r->settle_deadline_usec);
                if (k < 0) {
                        log_error_errno(k, "Failed to arm the settle timer: %m");
                        restart_settled(m);
                } else {
                        log_info("Generation %" PRIu32 " settling for %" PRIu64 " ms; generation %" PRIu32
                                 " stands by.", g->gen, settle_usec / USEC_PER_MSEC, old->gen);
                        progress(m, "settle", "generation %" PRIu32 " (pid %d) stands by for %" PRIu64
                                 " ms in case generation %" PRIu32 " fails", old->gen, (int) old->pid,
                                 settle_usec / USEC_PER_MSEC, g->gen);
                }
        } else if (r)
                /* Nothing to roll back to (first start, crash replacement) or no settle time. */
                restart_settled(m);
        else {
                /* Adopted from an earlier grmd with no restart: older ones drain at once. */
                for (Generation *o = m->generations; o; o = o->next)
                        if (o != g && (o->state == GEN_WORKING || o->state == GEN_STANDBY))
                                generation_start_drain(m, o, GEN_EVENT_SUPERSEDED);
        }
        (void) sd_notify(false, "READY=1");
        manager_state_changed(m);
        /* (r is freed once the restart settled: ask m->restart.) */
        if (m->restart && m->restart->previous)
                test_kill_point("settle"); /* the vault says: settling, the old one stands by */
}

void restart_on_failed(Manager *m, Generation *g, GrmOutcome outcome, const char *why) {
        char message[256];

        if (generation_transition(g, GEN_EVENT_FAILED) < 0)
                return;
        snprintf(message, sizeof(message), "generation %" PRIu32 " (pid %d) %s; rolled back", g->gen,
                 (int) g->pid, why);
        generation_set_failure(g, why);
        (void) m->restart_ops->set_timer(g, USEC_INFINITY);
        (void) m->restart_ops->signal(g, SIGKILL, true);
        g->killed = true;
        /* Roll back: its sockets leave the maps now; what was queued for it is gone with it. */
        m->restart_ops->release_slot(g);

        if (m->restart && m->restart->gen == g)
                restart_finish(m, outcome, message);
        else
                log_error("%s", message);
        if (!m->working)
                schedule_respawn(m);
        manager_state_changed(m);
}

void restart_on_exited(Manager *m, Generation *g, const char *why) {
        Restart *r = m->restart;
        GenState before = g->state;
        bool settling = r && r->gen == g && before == GEN_WORKING;

        g->exited_usec = now(m);
        if (before == GEN_STARTING) {
                restart_on_failed(m, g, GRM_OUTCOME_FAILED, why);
                /* the state machine took it to failed; it has been reaped too */
        } else if (generation_transition(g, GEN_EVENT_EXITED) < 0 && before != GEN_FAILED)
                log_debug("Generation %" PRIu32 ": exit in state %s", g->gen, gen_state_to_string(before));

        /* Whatever it left behind in its process group goes too, so no socket stays open. */
        m->restart_ops->kill_group(g);
        m->restart_ops->release_slot(g);
        (void) m->restart_ops->set_timer(g, USEC_INFINITY);

        if (settling) {
                char message[256];

                snprintf(message, sizeof(message),
                         "generation %" PRIu32 " (pid %d) %s %" PRIu64 " ms after it was ready, within its settle time; rolled back",
                         g->gen, (int) g->pid, why, (g->exited_usec - g->ready_usec) / USEC_PER_MSEC);
                generation_set_failure(g, why);
                manager_log_event(LOG_ERR, MESSAGE_INSTANCE_CRASHED, "instance-crashed", g, NULL,
                                  "Generation %" PRIu32 " (pid %d) %s while settling.", g->gen, (int) g->pid, why);
                if (!r->previous || r->previous->state != GEN_STANDBY) {
                        /* Nothing stands by: a working crash like any other. */
                        m->working = NULL;
                        (void) m->restart_ops->set_working(m, GRM_SLOT_NONE, GRM_SLOT_NONE);
                        (void) m->restart_ops->set_settings(m, &m->config);
                        restart_finish(m, GRM_OUTCOME_FAILED, message);
                        schedule_respawn(m);
                } else
                        restart_roll_back(m, message);
        } else if (before == GEN_WORKING) {
                generation_set_failure(g, why);
                manager_log_event(LOG_ERR, MESSAGE_INSTANCE_CRASHED, "instance-crashed", g, NULL,
                          "Working generation %" PRIu32 " (pid %d) %s unexpectedly.", g->gen, (int) g->pid, why);
                if (m->working == g)
                        m->working = NULL;
                if (g->ready_usec && g->exited_usec - g->ready_usec > STABLE_USEC)
                        m->crash_count = 0;
                /* Until a replacement is ready, a starting generation (if any) queues packets. */
                (void) m->restart_ops->set_working(m, GRM_SLOT_NONE,
                                                   r && r->gen && r->gen->state == GEN_STARTING
                                                           ? r->gen->slot : GRM_SLOT_NONE);
                schedule_respawn(m);
        } else if (before == GEN_STANDBY) {
                /* Nothing to roll back to any more; the restart settles without it. */
                log_warning("Generation %" PRIu32 " (pid %d) %s while standing by.", g->gen, (int) g->pid, why);
                if (r && r->previous == g)
                        r->previous = NULL;
        } else if (before == GEN_DRAINING)
                log_info("Generation %" PRIu32 " (pid %d) %s after draining.", g->gen, (int) g->pid, why);

        manager_state_changed(m);
        manager_prune_history(m);
        manager_maybe_exit(m);
}

void restart_on_deadline(Manager *m, Generation *g) {
        int r;

        manager_log_event(LOG_WARNING, MESSAGE_DRAIN_DEADLINE, "drain-deadline", g, NULL,
                  "Generation %" PRIu32 " (pid %d) still running at its drain deadline; killing its process group.",
                  g->gen, (int) g->pid);
        (void) generation_transition(g, GEN_EVENT_DEADLINE);
        generation_set_failure(g, "killed at the drain deadline");
        g->killed = true;
        r = m->restart_ops->signal(g, SIGKILL, true);
        if (r < 0)
                log_error_errno(r, "Failed to kill generation %" PRIu32 " (pid %d): %m", g->gen, (int) g->pid);
}

void restart_on_timer(Manager *m, Generation *g) {
        char buf[256];

        if (g->state == GEN_STARTING)
                restart_on_failed(m, g, GRM_OUTCOME_TIMEOUT,
                                  generation_explain(g, "not ready before the start timeout", buf, sizeof(buf)));
        else if (g->state == GEN_WORKING && m->restart && m->restart->gen == g)
                restart_settled(m);
        else if (g->state == GEN_DRAINING)
                restart_on_deadline(m, g);
}

/* The restart's config is in place and checked: spawn the new generation with it. */
static void restart_spawn(Manager *m) {
        Restart *r = m->restart;
        uint32_t gen = m->last_gen + 1;
        int slot, k;

        if (gen == 0 || gen >= GRM_GEN_CLAIMING) {
                /* 4 billion restarts: the flow table's marker is the next number. */
                restart_finish(m, GRM_OUTCOME_REJECTED, "generation numbers are used up; restart grmd with a fresh state");
                return;
        }
        k = find_free_slot(m, &slot);
        if (k < 0) {
                restart_finish(m, GRM_OUTCOME_BUSY, "too many generations are still draining");
                return;
        }

        /* The number is spent even if the spawn fails or grmd dies: numbers only grow. */
        m->last_gen = gen;
        (void) vault_save(m);
        /* Saturating: a huge start timeout is "never", not a deadline in the past. */
        k = m->restart_ops->spawn(m, gen, (unsigned) slot, &r->config,
                                  usec_add(now(m), r->start_timeout_usec), &r->gen);
        if (k < 0) {
                char why[sizeof(m->spawn_error) + 64];

                if (m->spawn_error[0])
                        snprintf(why, sizeof(why), "could not start a new instance: %s", m->spawn_error);
                else
                        snprintf(why, sizeof(why), "could not start a new instance (see grmd's log)");
                m->spawn_error[0] = 0;
                restart_finish(m, GRM_OUTCOME_INTERNAL, why);
                if (!m->working)
                        schedule_respawn(m);
                return;
        }
        if (!m->working)
                /* Nothing works: packets queue on the new generation until it is ready. */
                (void) m->restart_ops->set_working(m, GRM_SLOT_NONE, r->gen->slot);

        log_info("Generation %" PRIu32 " started as pid %d.", gen, (int) r->gen->pid);
        progress(m, "spawned", "generation %" PRIu32 " started as pid %d", gen, (int) r->gen->pid);
        manager_state_changed(m);
}

void restart_on_check_exit(Manager *m, int code, int status) {
        Restart *r = m->restart;
        char message[160];

        if (!r)
                return;
        if (code == CLD_EXITED && status == 0) {
                progress(m, "checked", "exec-check passed");
                restart_spawn(m);
                return;
        }
        if (code == CLD_EXITED)
                snprintf(message, sizeof(message), "exec-check exited with status %d; nothing changed", status);
        else
                snprintf(message, sizeof(message), "exec-check killed by signal %s; nothing changed",
                         strempty(signal_to_name(status)));
        restart_finish(m, GRM_OUTCOME_REJECTED, message);
}

int restart_request(Manager *m, CtlConnection *c, uint64_t timeout_usec) {
        _cleanup_free_ char *error = NULL;
        Restart *r;
        int k;

        if (m->stopping) {
                if (c)
                        m->restart_ops->result(c, GRM_OUTCOME_BUSY, NULL, "grmd is stopping");
                return -ESHUTDOWN;
        }
        if (m->held_reason) {
                char message[512];

                snprintf(message, sizeof(message),
                         "not supervising: the previous grmd's instances could not be taken over (%s); nothing changed",
                         m->held_reason);
                if (c)
                        m->restart_ops->result(c, GRM_OUTCOME_REJECTED, NULL, message);
                return -EPERM;
        }
        if (m->restart) {
                if (c)
                        m->restart_ops->result(c, GRM_OUTCOME_BUSY, m->restart->gen,
                                               m->restart->previous ? "another restart is settling"
                                                                    : "another restart is in progress");
                return -EBUSY;
        }

        r = calloc(1, sizeof(*r));
        if (!r) {
                if (c)
                        m->restart_ops->result(c, GRM_OUTCOME_INTERNAL, NULL, "out of memory");
                return -ENOMEM;
        }
        r->check_pidfd = -EBADF;
        r->automatic = !c;
        r->requester = c;
        r->started_usec = now(m);
        config_init(&r->config);
        m->restart = r;
        cancel_respawn(m);
        manager_log_event(LOG_INFO, MESSAGE_RESTART_STARTED, "restart-started", NULL, NULL, "Restart requested%s.",
                  c ? " over the control socket" : m->last_gen == 0 ? " (first start)" : " (replacing a failed instance)");

        /* The config file is read again: a bad one changes nothing. */
        k = manager_load_config(m, &r->config, &error);
        if (k < 0) {
                /* Out of descriptors or memory is grmd's problem, not the configuration's. */
                bool ours = k == -EMFILE || k == -ENFILE || k == -ENOMEM;
                char message[512];
                snprintf(message, sizeof(message), "%s: %s; nothing changed",
                         ours ? "could not read the configuration" : "configuration rejected",
                         error ? error : strerror(-k));
                restart_finish(m, ours ? GRM_OUTCOME_INTERNAL : GRM_OUTCOME_REJECTED, message);
                if (!m->working)
                        schedule_respawn(m);
                return -EINVAL;
        }
        if (r->config.flow_table_size != m->config.flow_table_size && m->config.flow_table_size != 0)
                log_warning("FlowTableSize= changed; the new size takes effect when grmd restarts.");
        r->start_timeout_usec = timeout_usec != USEC_INFINITY && timeout_usec != 0
                                        ? timeout_usec
                                        : r->config.start_timeout_usec;
        if (c)
                /* systemd: a reload is under way, and may take as long as the start timeout and
                 * the settle time. */
                (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nEXTEND_TIMEOUT_USEC=%" PRIu64,
                                  now(m), usec_add(usec_add(r->start_timeout_usec, r->config.settle_usec),
                                                   10 * USEC_PER_SEC));
        progress(m, "config", "configuration %s", m->config_path ? "re-read" : "checked");

        if (r->config.exec_check) {
                k = m->restart_ops->start_check(m, r);
                if (k < 0) {
                        restart_finish(m, GRM_OUTCOME_INTERNAL, "could not run exec-check");
                        return k;
                }
                progress(m, "check", "running exec-check %s", r->config.exec_check[0]);
                return 0;
        }
        restart_spawn(m);
        return 0;
}

void restart_stop(Manager *m) {
        m->stopping = true;
        (void) sd_notify(false, "STOPPING=1");
        cancel_respawn(m);
        if (m->restart && m->restart->gen && m->restart->gen->state == GEN_STARTING)
                restart_on_failed(m, m->restart->gen, GRM_OUTCOME_FAILED, "cancelled: grmd is stopping");
        else if (m->restart)
                restart_finish(m, GRM_OUTCOME_BUSY, "cancelled: grmd is stopping");
        for (Generation *g = m->generations; g; g = g->next)
                if (g->state == GEN_WORKING || g->state == GEN_STANDBY || g->state == GEN_DRAINING)
                        generation_start_drain(m, g, GEN_EVENT_STOP);
        /* Once the working generation drains, nothing takes new flows: they stay with it. */
        manager_state_changed(m);
        manager_maybe_exit(m);
}

void restart_abandon(Manager *m) {
        if (!m->restart)
                return;
        ctl_connection_detach_restart(m->restart->requester);
        restart_free(m->restart);
        m->restart = NULL;
}

void restart_adopt_flip(Manager *m, Generation *g) {
        uint64_t settle_usec = m->config.settle_usec;
        bool settle = settle_usec > 0 && settle_usec != UINT64_MAX;

        g->state = GEN_WORKING;
        g->ready_usec = g->ready_seen_usec = g->flipped_usec = now(m);
        (void) m->restart_ops->set_timer(g, USEC_INFINITY);
        /* The previous grmd died between the flip and its snapshot: the restart had not settled.
         * The generation that worked stands by (restart_adopt_standby() then settles the new one
         * from now), unless no settle time is configured. */
        for (Generation *o = m->generations; o; o = o->next)
                if (o != g && o->state == GEN_WORKING && settle) {
                        (void) generation_transition(o, GEN_EVENT_STANDBY);
                        settle = false; /* one stands by; any other drains */
                } else if (o != g && (o->state == GEN_WORKING || o->state == GEN_STANDBY))
                        generation_start_drain(m, o, GEN_EVENT_SUPERSEDED);
        m->working = g;
}

void restart_adopt_standby(Manager *m) {
        /* The previous grmd died while a restart settled: its settle timer is gone with it, but
         * not the settle. If the new generation works, it settles out its time from its flip
         * under this grmd (a crash within it rolls back to the one standing by, as before the
         * takeover); with no settle time configured here any more, the restart is done and the
         * one that stood by drains. If nothing works, the newest that stood by works again. */
        uint64_t settle_usec = m->config.settle_usec;

        for (Generation *o = m->generations; o; o = o->next) {
                if (o->state != GEN_STANDBY)
                        continue;
                if (m->working && !m->restart && settle_usec > 0 && settle_usec != UINT64_MAX &&
                    restart_adopt(m, m->working) >= 0) {
                        Generation *g = m->working;
                        uint64_t since = g->flipped_usec ? g->flipped_usec : now(m);

                        m->restart->previous = o;
                        m->restart->settle_deadline_usec = usec_add(since, settle_usec);
                        if (m->restart_ops->set_timer(g, m->restart->settle_deadline_usec) >= 0) {
                                log_info("Generation %" PRIu32 " settles until %" PRIu64 " ms after its flip; generation %" PRIu32
                                         " stands by.", g->gen, settle_usec / USEC_PER_MSEC, o->gen);
                                continue;
                        }
                        restart_abandon(m);
                }
                if (m->working)
                        generation_start_drain(m, o, GEN_EVENT_SUPERSEDED);
                else if (m->restart_ops->set_working(m, o->slot, GRM_SLOT_NONE) >= 0) {
                        (void) generation_transition(o, GEN_EVENT_REINSTATED);
                        m->working = o;
                }
        }
}

int restart_adopt(Manager *m, Generation *g) {
        Restart *r;

        if (m->restart)
                return -EBUSY;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->check_pidfd = -EBADF;
        r->automatic = true;
        r->started_usec = g->spawned_usec;
        r->start_timeout_usec = m->config.start_timeout_usec;
        config_init(&r->config);
        /* Settings as in effect: this grmd read them at start-up. */
        if (config_merge(&r->config, &m->config) < 0) {
                free(r);
                return -ENOMEM;
        }
        r->gen = g;
        m->restart = r;
        return 0;
}

/* The kernel, the event loop and the clock: what grmd runs with. */

static uint64_t default_now(Manager *m) {
        return now_usec();
}

static int default_spawn(Manager *m, uint32_t gen, unsigned slot, const Config *config,
                         uint64_t start_deadline_usec, Generation **ret) {
        return generation_spawn(m, gen, slot, config, start_deadline_usec, ret);
}

static int default_set_working(Manager *m, uint32_t working_slot, uint32_t pending_slot) {
        return steering_set_working(m->steering, working_slot, pending_slot);
}

static int default_set_settings(Manager *m, const Config *c) {
        int r = steering_set_settings(m->steering, c->dissector, c->flow_timeout_usec);

        if (r >= 0)
                r = steering_set_flow_quota(m->steering, (unsigned) c->flows_per_source);
        return r;
}

static void default_kill_group(Generation *g) {
        if (g->pid > 0)
                (void) kill(-g->pid, SIGKILL);
}

static int on_respawn_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        m->respawn_timer = sd_event_source_disable_unref(m->respawn_timer);
        restart_on_respawn(m);
        return 0;
}

static int default_arm_respawn(Manager *m, uint64_t delay_usec) {
        m->respawn_timer = sd_event_source_disable_unref(m->respawn_timer);
        if (delay_usec == USEC_INFINITY)
                return 0;
        return sd_event_add_time_relative(m->event, &m->respawn_timer, CLOCK_MONOTONIC, delay_usec,
                                          USEC_PER_MSEC, on_respawn_timer, m);
}

static int on_check_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Manager *m = userdata;
        Restart *r = m->restart;

        if (!r)
                return 0;
        r->check_source = sd_event_source_disable_unref(r->check_source);
        r->check_pidfd = safe_close(r->check_pidfd);
        restart_on_check_exit(m, si->si_code, si->si_status);
        return 0;
}

/* ExecCheck= runs like an instance (spawn.c): as its user, with no capabilities, under the
 * instance system call filter, in a session of its own; only without the sockets. */
static int default_start_check(Manager *m, Restart *r) {
        char **argv = r->config.exec_check;
        SpawnUser user = {};
        int k;

        k = spawn_resolve_user(r->config.user, &user);
        if (k < 0)
                return log_error_errno(k, "Failed to resolve user '%s' for exec-check: %s", r->config.user,
                                       k == -ESRCH ? "no such user" : strerror(-k));
        fflush(stdout);
        fflush(stderr);
        r->check_pid = fork();
        if (r->check_pid < 0) {
                spawn_user_done(&user);
                return negative_errno();
        }
        if (r->check_pid == 0)
                spawn_child_exec(&(const SpawnParams) {
                        .what = "exec-check",
                        .argv = argv,
                        .user = &user,
                        .cgroup_procs_fd = -EBADF,
                });
        spawn_user_done(&user);
        r->check_pidfd = pidfd_open(r->check_pid, 0);
        if (r->check_pidfd < 0) {
                k = negative_errno();
                (void) kill(r->check_pid, SIGKILL);
                (void) waitpid(r->check_pid, NULL, 0);
                return k;
        }
        k = sd_event_add_child_pidfd(m->event, &r->check_source, r->check_pidfd, WEXITED, on_check_exit, m);
        if (k < 0)
                return k; /* restart_free() kills and reaps it */
        return 0;
}

static void default_discard_queued(Manager *m) {
        for (unsigned i = 0; i < m->n_groups; i++) {
                int n = group_discard_queued(&m->groups[i]);
                if (n > 0 && m->groups[i].type == SOCK_STREAM)
                        log_notice("Handed %d connection(s) queued on %s while no generation was working to generation %" PRIu32 ".",
                                   n, m->groups[i].address, m->working ? m->working->gen : 0);
                else if (n > 0)
                        log_notice("Dropped %d datagram(s) that reached %s while no generation was working.",
                                   n, m->groups[i].address);
        }
}

static void default_progress(CtlConnection *c, const char *step, const char *message) {
        ctl_connection_progress(c, step, "%s", message);
}

const RestartOps restart_ops_default = {
        .now = default_now,
        .spawn = default_spawn,
        .set_working = default_set_working,
        .set_settings = default_set_settings,
        .signal = generation_signal,
        .kill_group = default_kill_group,
        .release_slot = generation_release_slot,
        .set_timer = generation_set_timer,
        .arm_respawn = default_arm_respawn,
        .start_check = default_start_check,
        .discard_queued = default_discard_queued,
        .progress = default_progress,
        .result = ctl_connection_result,
};
