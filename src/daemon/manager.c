/* SPDX-License-Identifier: MIT */
/*
 * The Manager and the life of a restart:
 *
 *   request -> re-read config -> exec-check -> spawn generation N (sockets registered first)
 *           -> READY=1: flip working to N (one map update), drain every older live generation
 *           -> failure (exit, ERRNO=, timeout): kill N, release its slot, N-1 keeps working
 *
 * A working instance that dies is replaced by an automatic restart with back-off. SIGTERM and
 * SIGINT drain every generation and exit once all are gone.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "macro.h"
#include "manager.h"

#define HISTORY_MAX 8                    /* exited/failed generations kept for status */
#define RESPAWN_MIN_USEC (100 * USEC_PER_MSEC)
#define RESPAWN_MAX_USEC (30 * USEC_PER_SEC)
#define STABLE_USEC (10 * USEC_PER_SEC)  /* working this long resets the crash back-off */

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

int manager_new(Manager **ret) {
        Manager *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->notify_fd = -EBADF;
        m->ctl_fd = -EBADF;
        m->vault_r = m->vault_w = -EBADF;
        config_init(&m->cli);
        config_init(&m->config);
        r = sd_event_default(&m->event);
        if (r < 0) {
                free(m);
                return r;
        }
        m->started_usec = now_usec();
        *ret = m;
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        if (m->restart) {
                ctl_connection_detach_restart(m->restart->requester);
                restart_free(m->restart);
                m->restart = NULL;
        }
        ctl_server_close(m);
        while (m->generations) {
                Generation *g = m->generations;
                m->generations = g->next;
                generation_free(g);
        }
        notify_close(m);
        vault_close(m, false);
        free(m->exe_path);
        strv_free(m->argv);
        sd_event_source_disable_unref(m->respawn_timer);
        sd_event_source_disable_unref(m->status_timer);
        sd_event_source_disable_unref(m->sockwatch_timer);
        m->steering = steering_free(m->steering);
        for (unsigned i = 0; i < m->n_groups; i++)
                group_done(&m->groups[i]);
        free(m->groups);
        config_done(&m->cli);
        config_done(&m->config);
        free(m->config_path);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

/* File (if any), then the command line over it, then defaults; validated. */
int manager_load_config(Manager *m, Config *ret, char **ret_error) {
        Config c;
        int r;

        config_init(&c);
        if (m->config_path) {
                r = config_parse_file(m->config_path, &c, ret_error);
                if (r < 0)
                        goto fail;
        }
        r = config_merge(&c, &m->cli);
        if (r < 0)
                goto fail;
        config_fill_defaults(&c);
        r = config_validate(&c, ret_error);
        if (r < 0)
                goto fail;
        *ret = c;
        return 0;
fail:
        config_done(&c);
        return r;
}

static void update_status(Manager *m);

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        m->status_timer = sd_event_source_disable_unref(m->status_timer);
        update_status(m);
        return 0;
}

/* systemd's STATUS=: the live generations, with the seconds left to each drain deadline (kept
 * current by a 1 s timer while one counts down). */
static void update_status(Manager *m) {
        char buf[512];
        size_t len = 0;
        uint64_t now = now_usec();
        bool counting = false;

        for (Generation *g = m->generations; g && len < sizeof(buf) - 96; g = g->next) {
                int n;

                if (!gen_state_is_live(g->state))
                        continue;
                if (g->state == GEN_DRAINING && g->drain_deadline_usec != USEC_INFINITY) {
                        counting = true;
                        n = snprintf(buf + len, sizeof(buf) - len, "%sgen %" PRIu32 " draining (pid %d) %" PRIu64 " s left",
                                     len ? ", " : "", g->gen, (int) g->pid,
                                     g->drain_deadline_usec > now ? (g->drain_deadline_usec - now + USEC_PER_SEC - 1) / USEC_PER_SEC : 0);
                } else
                        n = snprintf(buf + len, sizeof(buf) - len, "%sgen %" PRIu32 " %s (pid %d)",
                                     len ? ", " : "", g->gen, gen_state_to_string(g->state), (int) g->pid);
                if (n > 0)
                        len += (size_t) n;
        }
        if (len == 0)
                snprintf(buf, sizeof(buf), "no generation running");
        (void) sd_notifyf(false, "STATUS=%s", buf);
        if (counting && !m->status_timer && getenv("NOTIFY_SOCKET"))
                (void) sd_event_add_time_relative(m->event, &m->status_timer, CLOCK_MONOTONIC, USEC_PER_SEC,
                                                  100 * USEC_PER_MSEC, on_status_timer, m);
}

/* After every change of state: systemd's STATUS= and the vault snapshot. */
static void manager_state_changed(Manager *m) {
        update_status(m);
        (void) vault_save(m);
}

/* One journal entry per event operators act on, with a MESSAGE_ID from grm.catalog and the
 * generation, pid, outcome and timings as fields. */
#define MESSAGE_RESTART_STARTED   "e02847267dd24f24b7cc53ed0733d704"
#define MESSAGE_RESTART_SUCCEEDED "f0fb1bdc867041669f48f280fd01070c"
#define MESSAGE_RESTART_FAILED    "9262e7c43df440eebce3ec6066059415"
#define MESSAGE_INSTANCE_CRASHED  "99863a12eb304635a78960da62e572a6"
#define MESSAGE_DRAIN_DEADLINE    "a5b3785c225944ad8e4328da1d09559b"
#define MESSAGE_STATE_RECOVERED   "427b2480b0a54e4fbae35ece44cd05d1"

static void log_event(int level, const char *message_id, const char *event, const Generation *g,
                      const char *outcome, const char *format, ...) _printf_(6, 7);
static void log_event(int level, const char *message_id, const char *event, const Generation *g,
                      const char *outcome, const char *format, ...) {
        char f_id[64], f_event[64], f_gen[48], f_pid[48], f_outcome[64], f_ready[64], f_flip[64], message[1024];
        const char *fields[8];
        size_t n = 0;
        va_list ap;

        snprintf(f_id, sizeof(f_id), "MESSAGE_ID=%s", message_id);
        fields[n++] = f_id;
        snprintf(f_event, sizeof(f_event), "GRM_EVENT=%s", event);
        fields[n++] = f_event;
        if (g) {
                snprintf(f_gen, sizeof(f_gen), "GRM_GENERATION=%" PRIu32, g->gen);
                fields[n++] = f_gen;
                snprintf(f_pid, sizeof(f_pid), "GRM_PID=%d", (int) g->pid);
                fields[n++] = f_pid;
                if (g->ready_usec) {
                        snprintf(f_ready, sizeof(f_ready), "GRM_READY_USEC=%" PRIu64, g->ready_usec - g->spawned_usec);
                        fields[n++] = f_ready;
                }
                if (g->flipped_usec) {
                        snprintf(f_flip, sizeof(f_flip), "GRM_FLIP_USEC=%" PRIu64, g->flipped_usec - g->ready_seen_usec);
                        fields[n++] = f_flip;
                }
        }
        if (outcome) {
                snprintf(f_outcome, sizeof(f_outcome), "GRM_OUTCOME=%s", outcome);
                fields[n++] = f_outcome;
        }
        fields[n] = NULL;

        va_start(ap, format);
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);
        (void) log_struct(level, 0, fields, "%s", message);
}

/* Test hook: with GRM_TEST_KILL_FILE=PATH set, grmd SIGKILLs itself at the point of a restart
 * named in that file (and removes the file), so tests show that the next grmd recovers from a
 * crash at exactly that moment. Points: "spawn" (sockets registered, instance not started) and
 * "flip" (working generation moved in the map, older ones not yet told to drain). */
void test_kill_point(const char *name) {
        const char *path = getenv("GRM_TEST_KILL_FILE");
        char buf[32] = "";
        FILE *f;

        if (!path || !(f = fopen(path, "re")))
                return;
        if (!fgets(buf, sizeof(buf), f))
                buf[0] = 0;
        fclose(f);
        buf[strcspn(buf, "\n")] = 0;
        if (streq(buf, name)) {
                (void) unlink(path);
                (void) raise(SIGKILL);
        }
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

/* Drops exited generations beyond the history length. */
static void prune_history(Manager *m) {
        unsigned kept = 0;

        for (Generation **p = &m->generations; *p;) {
                Generation *g = *p;
                if (!gen_state_is_live(g->state) && !g->child_source && ++kept > HISTORY_MAX) {
                        *p = g->next;
                        generation_free(g);
                        continue;
                }
                p = &g->next;
        }
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
                log_event(LOG_INFO, MESSAGE_RESTART_SUCCEEDED, "restart-succeeded", g, "done",
                          "Restart to generation %" PRIu32 " done: pid %d ready after %" PRIu64 " ms.",
                          g->gen, (int) g->pid, (g->ready_usec - g->spawned_usec) / 1000);
        else
                log_event(LOG_ERR, MESSAGE_RESTART_FAILED, "restart-failed", g, grm_outcome_to_string(outcome),
                          "Restart failed (%s): %s", grm_outcome_to_string(outcome), message);
        /* systemd: the reload (if this was one) is over, whatever its outcome. */
        if (!r->automatic)
                (void) sd_notify(false, "READY=1");

        ctl_connection_result(r->requester, outcome, g, message);
        m->restart = NULL;
        restart_free(r);
        manager_state_changed(m);
        prune_history(m);
}

static int on_respawn(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        m->respawn_timer = sd_event_source_disable_unref(m->respawn_timer);
        if (m->stopping || m->working || m->restart)
                return 0;
        (void) manager_request_restart(m, NULL, USEC_INFINITY);
        return 0;
}

/* Nothing works: start a new generation after the back-off delay. */
static void schedule_respawn(Manager *m) {
        uint64_t delay = RESPAWN_MIN_USEC;

        if (m->stopping || m->working || m->restart || m->respawn_timer)
                return;
        for (unsigned i = 0; i < m->crash_count && delay < RESPAWN_MAX_USEC; i++)
                delay *= 2;
        if (delay > RESPAWN_MAX_USEC)
                delay = RESPAWN_MAX_USEC;
        m->crash_count++;
        log_notice("Starting a new generation in %" PRIu64 " ms.", delay / 1000);
        if (sd_event_add_time_relative(m->event, &m->respawn_timer, CLOCK_MONOTONIC, delay,
                                       USEC_PER_MSEC, on_respawn, m) < 0)
                log_error("Failed to arm the respawn timer; no generation will be started.");
}

static void maybe_exit(Manager *m) {
        if (!m->stopping)
                return;
        for (Generation *g = m->generations; g; g = g->next)
                if (gen_state_is_live(g->state) || g->child_source)
                        return;
        log_info("All generations are gone, exiting.");
        sd_event_exit(m->event, 0);
}

static void generation_start_drain(Manager *m, Generation *g, GenEvent why) {
        uint64_t timeout = m->config.drain_timeout_usec;
        int r;

        if (timeout == CONFIG_DRAIN_TIMEOUT_INFINITY)
                timeout = USEC_INFINITY;

        if (generation_transition(g, why) < 0)
                return;
        if (g->drain_deadline_usec != 0)
                return; /* already draining: keep its deadline */
        g->drain_deadline_usec = timeout == USEC_INFINITY ? USEC_INFINITY : now_usec() + timeout;
        r = generation_signal(g, m->config.drain_signal, false);
        if (r < 0)
                log_warning_errno(r, "Failed to send %s to generation %" PRIu32 " (pid %d): %m",
                                  strempty(signal_to_name(m->config.drain_signal)), g->gen, (int) g->pid);
        else
                log_info("Generation %" PRIu32 " (pid %d) draining, deadline in %" PRIu64 " s.", g->gen,
                         (int) g->pid, timeout == USEC_INFINITY ? 0 : timeout / USEC_PER_SEC);
        r = generation_set_timer(g, g->drain_deadline_usec);
        if (r < 0)
                log_error_errno(r, "Failed to arm the drain deadline of generation %" PRIu32 ": %m", g->gen);
}

void manager_on_ready(Manager *m, Generation *g) {
        Generation *old = m->working;
        int r;

        if (generation_transition(g, GEN_EVENT_READY) < 0)
                return;
        g->ready_usec = now_usec();
        (void) generation_set_timer(g, USEC_INFINITY);

        r = steering_set_working(m->steering, g->slot, GRM_SLOT_NONE);
        if (r < 0) {
                log_error_errno(r, "Failed to make generation %" PRIu32 " the working one: %m", g->gen);
                manager_on_failed(m, g, GRM_OUTCOME_INTERNAL, "could not update the steering maps");
                return;
        }
        g->flipped_usec = now_usec();
        m->last_flip_latency_usec = g->flipped_usec - g->ready_seen_usec;
        m->working = g;
        test_kill_point("flip");
        log_info("Generation %" PRIu32 " (pid %d) is working; flip took %" PRIu64 " us.", g->gen,
                 (int) g->pid, m->last_flip_latency_usec);
        if (!old)
                for (unsigned i = 0; i < m->n_groups; i++) {
                        int n = group_discard_queued(&m->groups[i]);
                        if (n > 0)
                                log_notice("Dropped %d datagram(s) that reached %s while no generation was working.",
                                           n, m->groups[i].address);
                }

        if (m->restart && m->restart->gen == g)
                ctl_connection_progress(m->restart->requester, "ready",
                                        "generation %" PRIu32 " (pid %d) ready after %" PRIu64 " ms, working now",
                                        g->gen, (int) g->pid, (g->ready_usec - g->spawned_usec) / 1000);

        /* Every older live generation drains; a previous working one included. */
        for (Generation *o = m->generations; o; o = o->next)
                if (o != g && (o->state == GEN_WORKING || o->state == GEN_DRAINING)) {
                        generation_start_drain(m, o, GEN_EVENT_SUPERSEDED);
                        if (o == old && m->restart && m->restart->gen == g)
                                ctl_connection_progress(m->restart->requester, "drain",
                                                        "generation %" PRIu32 " (pid %d) draining",
                                                        o->gen, (int) o->pid);
                }

        if (m->restart && m->restart->gen == g)
                restart_finish(m, GRM_OUTCOME_DONE, "restarted");
        (void) sd_notify(false, "READY=1");
        manager_state_changed(m);
}

void manager_on_failed(Manager *m, Generation *g, GrmOutcome outcome, const char *why) {
        char message[256];

        if (generation_transition(g, GEN_EVENT_FAILED) < 0)
                return;
        snprintf(message, sizeof(message), "generation %" PRIu32 " (pid %d) %s; rolled back", g->gen,
                 (int) g->pid, why);
        generation_set_failure(g, why);
        (void) generation_set_timer(g, USEC_INFINITY);
        (void) generation_signal(g, SIGKILL, true);
        g->killed = true;
        /* Roll back: its sockets leave the maps now; what was queued for it is gone with it. */
        generation_release_slot(g);

        if (m->restart && m->restart->gen == g)
                restart_finish(m, outcome, message);
        else
                log_error("%s", message);
        if (!m->working)
                schedule_respawn(m);
        manager_state_changed(m);
}

void manager_on_exited(Manager *m, Generation *g, const char *why) {
        GenState before = g->state;

        g->exited_usec = now_usec();
        if (before == GEN_STARTING) {
                manager_on_failed(m, g, GRM_OUTCOME_FAILED, why);
                /* the state machine took it to failed; it has been reaped too */
        } else if (generation_transition(g, GEN_EVENT_EXITED) < 0 && before != GEN_FAILED)
                log_debug("Generation %" PRIu32 ": exit in state %s", g->gen, gen_state_to_string(before));

        /* Whatever it left behind in its process group goes too, so no socket stays open. */
        if (g->pid > 0)
                (void) kill(-g->pid, SIGKILL);
        generation_release_slot(g);
        (void) generation_set_timer(g, USEC_INFINITY);

        if (before == GEN_WORKING) {
                generation_set_failure(g, why);
                log_event(LOG_ERR, MESSAGE_INSTANCE_CRASHED, "instance-crashed", g, NULL,
                          "Working generation %" PRIu32 " (pid %d) %s unexpectedly.", g->gen, (int) g->pid, why);
                m->working = NULL;
                if (g->ready_usec && now_usec() - g->ready_usec > STABLE_USEC)
                        m->crash_count = 0;
                /* Until a replacement is ready, a starting generation (if any) queues packets. */
                (void) steering_set_working(m->steering, GRM_SLOT_NONE,
                                            m->restart && m->restart->gen ? m->restart->gen->slot
                                                                           : GRM_SLOT_NONE);
                schedule_respawn(m);
        } else if (before == GEN_DRAINING)
                log_info("Generation %" PRIu32 " (pid %d) %s after draining.", g->gen, (int) g->pid, why);

        manager_state_changed(m);
        prune_history(m);
        maybe_exit(m);
}

void manager_on_deadline(Manager *m, Generation *g) {
        int r;

        log_event(LOG_WARNING, MESSAGE_DRAIN_DEADLINE, "drain-deadline", g, NULL,
                  "Generation %" PRIu32 " (pid %d) still running at its drain deadline; killing its process group.",
                  g->gen, (int) g->pid);
        (void) generation_transition(g, GEN_EVENT_DEADLINE);
        generation_set_failure(g, "killed at the drain deadline");
        g->killed = true;
        r = generation_signal(g, SIGKILL, true);
        if (r < 0)
                log_error_errno(r, "Failed to kill generation %" PRIu32 " (pid %d): %m", g->gen, (int) g->pid);
}

/* The restart's config is in place and checked: spawn the new generation. */
static void restart_spawn(Manager *m) {
        Restart *r = m->restart;
        uint32_t gen = m->last_gen + 1;
        int slot, k;

        k = find_free_slot(m, &slot);
        if (k < 0) {
                restart_finish(m, GRM_OUTCOME_BUSY, "too many generations are still draining");
                return;
        }

        /* The new config is in effect from here on (drain settings included). */
        config_done(&m->config);
        m->config = r->config;
        config_init(&r->config);
        k = steering_set_settings(m->steering, m->config.dissector, m->config.flow_timeout_usec);
        if (k < 0)
                log_warning_errno(k, "Failed to apply steering settings: %m");

        /* The number is spent even if the spawn fails or grmd dies: numbers only grow. */
        m->last_gen = gen;
        (void) vault_save(m);
        k = generation_spawn(m, gen, (unsigned) slot, &m->config, r->start_timeout_usec, &r->gen);
        if (k < 0) {
                restart_finish(m, GRM_OUTCOME_INTERNAL, "could not start a new instance (see grmd's log)");
                if (!m->working)
                        schedule_respawn(m);
                return;
        }
        if (!m->working)
                /* Nothing works: packets queue on the new generation until it is ready. */
                (void) steering_set_working(m->steering, GRM_SLOT_NONE, r->gen->slot);

        log_info("Generation %" PRIu32 " started as pid %d.", gen, (int) r->gen->pid);
        ctl_connection_progress(r->requester, "spawned", "generation %" PRIu32 " started as pid %d",
                                gen, (int) r->gen->pid);
        manager_state_changed(m);
}

static int on_check_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Manager *m = userdata;
        Restart *r = m->restart;
        char message[160];

        if (!r)
                return 0;
        r->check_source = sd_event_source_disable_unref(r->check_source);
        r->check_pidfd = safe_close(r->check_pidfd);
        if (si->si_code == CLD_EXITED && si->si_status == 0) {
                ctl_connection_progress(r->requester, "checked", "exec-check passed");
                restart_spawn(m);
                return 0;
        }
        if (si->si_code == CLD_EXITED)
                snprintf(message, sizeof(message), "exec-check exited with status %d; nothing changed",
                         si->si_status);
        else
                snprintf(message, sizeof(message), "exec-check killed by signal %s; nothing changed",
                         strempty(signal_to_name(si->si_status)));
        restart_finish(m, GRM_OUTCOME_REJECTED, message);
        return 0;
}

static int start_exec_check(Manager *m, Restart *r) {
        char **argv = r->config.exec_check;
        int k;

        fflush(stdout);
        fflush(stderr);
        r->check_pid = fork();
        if (r->check_pid < 0)
                return negative_errno();
        if (r->check_pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                (void) sigprocmask(SIG_SETMASK, &none, NULL);
                (void) close_range(3, ~0U, 0);
                execvp(argv[0], argv);
                fprintf(stderr, "grmd: exec-check %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
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

int manager_request_restart(Manager *m, CtlConnection *c, uint64_t timeout_usec) {
        _cleanup_free_ char *error = NULL;
        Restart *r;
        int k;

        if (m->stopping) {
                ctl_connection_result(c, GRM_OUTCOME_BUSY, NULL, "grmd is stopping");
                return -ESHUTDOWN;
        }
        if (m->restart) {
                ctl_connection_result(c, GRM_OUTCOME_BUSY, m->restart->gen,
                                      "another restart is in progress");
                return -EBUSY;
        }

        r = calloc(1, sizeof(*r));
        if (!r) {
                ctl_connection_result(c, GRM_OUTCOME_INTERNAL, NULL, "out of memory");
                return -ENOMEM;
        }
        r->check_pidfd = -EBADF;
        r->automatic = !c;
        r->requester = c;
        r->started_usec = now_usec();
        config_init(&r->config);
        m->restart = r;
        m->respawn_timer = sd_event_source_disable_unref(m->respawn_timer);
        log_event(LOG_INFO, MESSAGE_RESTART_STARTED, "restart-started", NULL, NULL, "Restart requested%s.",
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
                /* systemd: a reload is under way, and may take as long as the start timeout. */
                (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nEXTEND_TIMEOUT_USEC=%" PRIu64,
                                  now_usec(), r->start_timeout_usec + 10 * USEC_PER_SEC);
        ctl_connection_progress(c, "config", "configuration %s", m->config_path ? "re-read" : "checked");

        if (r->config.exec_check) {
                k = start_exec_check(m, r);
                if (k < 0) {
                        restart_finish(m, GRM_OUTCOME_INTERNAL, "could not run exec-check");
                        return k;
                }
                ctl_connection_progress(c, "check", "running exec-check %s", r->config.exec_check[0]);
                return 0;
        }
        restart_spawn(m);
        return 0;
}

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        if (m->stopping) {
                log_notice("Already stopping; waiting for %s.", "generations to drain");
                return 0;
        }
        log_info("Received %s: draining every generation.", strempty(signal_to_name((int) si->ssi_signo)));
        m->stopping = true;
        (void) sd_notify(false, "STOPPING=1");
        m->respawn_timer = sd_event_source_disable_unref(m->respawn_timer);
        if (m->restart && m->restart->gen && m->restart->gen->state == GEN_STARTING)
                manager_on_failed(m, m->restart->gen, GRM_OUTCOME_FAILED, "cancelled: grmd is stopping");
        else if (m->restart)
                restart_finish(m, GRM_OUTCOME_BUSY, "cancelled: grmd is stopping");
        for (Generation *g = m->generations; g; g = g->next)
                if (g->state == GEN_WORKING || g->state == GEN_DRAINING)
                        generation_start_drain(m, g, GEN_EVENT_STOP);
        /* Once the working generation drains, nothing takes new flows: they stay with it. */
        manager_state_changed(m);
        maybe_exit(m);
        return 0;
}

static bool has_prefix(const char *s, const char *prefix) {
        return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static Group *find_group_by_address(Manager *m, const char *address) {
        for (unsigned i = 0; i < m->n_groups; i++)
                if (streq(m->groups[i].address, address))
                        return &m->groups[i];
        return NULL;
}

static int gen_state_from_string(const char *s) {
        for (int i = 0; i < _GEN_STATE_MAX; i++)
                if (streq_ptr(gen_state_to_string(i), s))
                        return i;
        return -EINVAL;
}

static uint64_t record_u64(const CtlRecord *r, const char *key) {
        uint64_t v = 0;
        (void) ctl_record_get_u64(r, key, &v);
        return v;
}

/* The snapshot's groups must be ours, in the same order: group indexes are in the flow table
 * and the socket array. Reorders m->groups to match; false if they do not. */
static bool snapshot_groups_match(Manager *m, const VaultSnapshot *v) {
        unsigned n = 0;

        for (size_t i = 0; i < v->msg->n_records; i++) {
                const CtlRecord *r = &v->msg->records[i];
                const char *address = ctl_record_get(r, "address");
                uint64_t index;
                Group *g, tmp;

                if (!streq(r->type, "group"))
                        continue;
                if (ctl_record_get_u64(r, "index", &index) < 0 || index >= m->n_groups || !address)
                        return false;
                g = find_group_by_address(m, address);
                if (!g)
                        return false;
                tmp = m->groups[index];
                m->groups[index] = *g;
                *g = tmp;
                n++;
        }
        return n == m->n_groups;
}

/* Takes over the generations of an earlier grmd from its snapshot (maps already adopted). */
static int restore_generations(Manager *m, VaultSnapshot *v) {
        const CtlRecord *head = ctl_message_find(v->msg, "grmd");
        Generation **tail = &m->generations;
        unsigned live = 0;

        m->last_gen = (uint32_t) record_u64(head, "last_gen");
        m->crash_count = (unsigned) record_u64(head, "crash_count");
        m->restarts_done = record_u64(head, "restarts_done");
        m->restarts_failed = record_u64(head, "restarts_failed");
        m->vault_seq = v->seq;

        for (size_t i = 0; i < v->msg->n_records; i++) {
                const CtlRecord *r = &v->msg->records[i];
                uint64_t pidfd_index;
                Generation *g;
                int state;

                if (!streq(r->type, "generation"))
                        continue;
                state = gen_state_from_string(ctl_record_get(r, "state"));
                if (state < 0 || record_u64(r, "slot") >= GRM_GEN_SLOTS)
                        continue;
                g = calloc(1, sizeof(*g));
                if (!g)
                        return -ENOMEM;
                g->manager = m;
                g->gen = (uint32_t) record_u64(r, "generation");
                g->slot = (unsigned) record_u64(r, "slot");
                g->slot_held = record_u64(r, "slot_held") != 0;
                g->state = state;
                g->pid = (pid_t) record_u64(r, "pid");
                g->pidfd = -EBADF;
                g->n_fds = (unsigned) record_u64(r, "sockets");
                g->sockets_per_group = (unsigned) record_u64(r, "per_group");
                g->spawned_usec = record_u64(r, "spawned_usec");
                g->ready_usec = record_u64(r, "ready_usec");
                g->ready_seen_usec = record_u64(r, "ready_seen_usec");
                g->flipped_usec = record_u64(r, "flipped_usec");
                g->drain_deadline_usec = record_u64(r, "drain_deadline_usec");
                g->exited_usec = record_u64(r, "exited_usec");
                g->killed = record_u64(r, "killed") != 0;
                g->packets_at_exit = record_u64(r, "packets_at_exit");
                g->tcp_connections_at_exit = record_u64(r, "tcp_connections_at_exit");
                g->tcp_migrated_at_exit = record_u64(r, "tcp_migrated_at_exit");
                if (ctl_record_get(r, "status"))
                        g->status = strdup(ctl_record_get(r, "status"));
                if (ctl_record_get(r, "failure"))
                        g->failure = strdup(ctl_record_get(r, "failure"));
                if (ctl_record_get_u64(r, "pidfd", &pidfd_index) == 0 &&
                    pidfd_index < v->n_fds - STEERING_N_MAPS) {
                        g->pidfd = v->fds[STEERING_N_MAPS + pidfd_index];
                        v->fds[STEERING_N_MAPS + pidfd_index] = -EBADF;
                }
                *tail = g;
                tail = &g->next;

                if (!gen_state_is_live(g->state))
                        continue;
                if (g->pidfd < 0 || generation_watch(g) < 0) {
                        /* Without a handle on its process it cannot be supervised. */
                        log_warning("Generation %" PRIu32 " (pid %d) cannot be watched; treating it as gone.",
                                    g->gen, (int) g->pid);
                        g->state = g->ready_usec ? GEN_EXITED : GEN_FAILED;
                        generation_release_slot(g);
                        continue;
                }
                live++;
                if (g->state == GEN_WORKING)
                        m->working = g;
                else if (g->state == GEN_STARTING)
                        (void) generation_set_timer(g, g->spawned_usec + m->config.start_timeout_usec);
                else if (g->state == GEN_DRAINING && g->drain_deadline_usec != USEC_INFINITY)
                        (void) generation_set_timer(g, g->drain_deadline_usec);
        }

        /* The maps are the truth about the flip: a grmd that died right after moving the working
         * generation (before its snapshot said so) leaves a starting generation that is in fact
         * working. Finish what it did: that generation works, the older ones drain. */
        uint32_t working_slot, pending_slot;
        steering_get_working(m->steering, &working_slot, &pending_slot);
        for (Generation *g = m->generations; g; g = g->next)
                if (g->state == GEN_STARTING && g->slot_held && g->slot == working_slot) {
                        log_notice("Generation %" PRIu32 " was made the working one just before the previous grmd died.",
                                   g->gen);
                        g->state = GEN_WORKING;
                        g->ready_usec = g->ready_seen_usec = g->flipped_usec = now_usec();
                        (void) generation_set_timer(g, USEC_INFINITY);
                        for (Generation *o = m->generations; o; o = o->next)
                                if (o != g && o->state == GEN_WORKING)
                                        generation_start_drain(m, o, GEN_EVENT_SUPERSEDED);
                        m->working = g;
                        break;
                }
        if (m->working && m->working->slot != working_slot)
                /* The other way round cannot happen (the snapshot follows the map update), but the
                 * map must name the working generation whatever happened. */
                (void) steering_set_working(m->steering, m->working->slot, GRM_SLOT_NONE);

        /* A restart that was under way goes on, with nobody waiting for its result. */
        for (Generation *g = m->generations; g; g = g->next)
                if (g->state == GEN_STARTING && !m->restart) {
                        Restart *r = calloc(1, sizeof(*r));
                        if (!r)
                                return -ENOMEM;
                        r->check_pidfd = -EBADF;
                        r->automatic = true;
                        r->started_usec = g->spawned_usec;
                        r->start_timeout_usec = m->config.start_timeout_usec;
                        config_init(&r->config);
                        r->gen = g;
                        m->restart = r;
                }
        return (int) live;
}

/* Kills the instances of a snapshot that cannot be taken over. */
static void abandon_snapshot(VaultSnapshot *v) {
        for (size_t i = STEERING_N_MAPS; i < v->n_fds; i++)
                if (v->fds[i] >= 0)
                        (void) pidfd_send_signal(v->fds[i], SIGKILL, NULL, 0);
}

static int store_listen_socket(Group *g) {
        if (!getenv("NOTIFY_SOCKET"))
                return 0;
        /* Kept by systemd across grmd restarts (FileDescriptorStoreMax=), like a .socket's. */
        if (sd_pid_notify_with_fds(0, false, "FDSTORE=1\nFDNAME=" LISTEN_FDNAME, &g->fd, 1) <= 0)
                log_debug("Could not store the socket for %s in the fd store.", g->address);
        return 0;
}

int manager_startup(Manager *m) {
        _cleanup_free_ char *error = NULL;
        _cleanup_strv_free_ char **names = NULL;
        VaultSnapshot *snapshot = NULL;
        int notify_fd = -EBADF, n, r, live = 0;
        size_t n_listen;

        r = manager_load_config(m, &m->config, &error);
        if (r < 0)
                return log_error_errno(r, "Invalid configuration: %s", error ? error : strerror(-r));

        r = steering_new(m->config.flow_table_size, &m->steering);
        if (r < 0)
                return log_error_errno(r, "Failed to set up steering: %m");

        /* From systemd (or from ourselves before an exec): the .socket unit's sockets, and from
         * the fd store our own: vaults, the notify socket, --listen sockets. */
        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to receive sockets from systemd: %m");
        n_listen = strv_length(m->config.listen);
        if ((size_t) n + n_listen > GRM_MAX_GROUPS + 64)
                return log_error_errno(E2BIG, "Too many file descriptors passed (%d).", n);
        m->groups = calloc((size_t) n + n_listen + 1, sizeof(Group));
        if (!m->groups)
                return log_error_errno(ENOMEM, "Out of memory.");
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names && names[i] ? names[i] : "?";
                bool from_listen = streq(name, LISTEN_FDNAME);

                if (has_prefix(name, VAULT_PREFIX)) {
                        VaultSnapshot *v = NULL;
                        if (vault_recover(fd, &v) >= 0) {
                                if (!snapshot || v->seq > snapshot->seq) {
                                        vault_snapshot_free(snapshot);
                                        snapshot = v;
                                } else
                                        vault_snapshot_free(v);
                        }
                        safe_close(fd);
                        (void) strv_extend(&m->old_vaults, name);
                        continue;
                }
                if (streq(name, NOTIFY_FDNAME)) {
                        safe_close(notify_fd);
                        notify_fd = fd;
                        continue;
                }
                if (m->n_groups >= GRM_MAX_GROUPS)
                        return log_error_errno(E2BIG, "Too many sockets; at most %u are supported.", GRM_MAX_GROUPS);
                r = group_from_fd(fd, from_listen ? NULL : names ? names[i] : NULL, &m->groups[m->n_groups]);
                if (r == -EADDRINUSE)
                        return log_error_errno(r, "Socket %d (%s) does not have SO_REUSEPORT: set ReusePort=yes in the .socket unit.",
                                               fd, name);
                if (r == -ENOTCONN)
                        return log_error_errno(r, "Socket %d (%s) is a TCP socket that does not listen: use Accept=no in the .socket unit.",
                                               fd, name);
                if (r < 0)
                        return log_error_errno(r, "Socket %d (%s) cannot be managed (grmd manages bound UDP sockets and listening TCP sockets): %m",
                                               fd, name);
                m->groups[m->n_groups].stored = from_listen;
                m->n_groups++;
        }
        for (size_t i = 0; i < n_listen; i++) {
                bool have = false;

                /* Already passed back to us (fd store, exec)? */
                for (unsigned k = 0; k < m->n_groups && !have; k++)
                        have = group_has_address(&m->groups[k], m->config.listen[i]);
                if (have)
                        continue;
                if (m->n_groups >= GRM_MAX_GROUPS)
                        return log_error_errno(E2BIG, "Too many sockets; at most %u are supported.", GRM_MAX_GROUPS);
                r = group_listen(m->config.listen[i], m->config.receive_buffer, &m->groups[m->n_groups]);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen on %s: %m", m->config.listen[i]);
                (void) store_listen_socket(&m->groups[m->n_groups]);
                m->groups[m->n_groups].stored = true;
                m->n_groups++;
        }
        if (m->n_groups == 0)
                return log_error_errno(EINVAL, "No sockets: run from a .socket unit or give --listen udp:ADDR:PORT (or tcp:ADDR:PORT).");

        if (snapshot && !snapshot_groups_match(m, snapshot)) {
                log_error("The sockets changed since the previous grmd; its instances cannot be taken over and are stopped.");
                abandon_snapshot(snapshot);
                vault_snapshot_free(snapshot);
                snapshot = NULL;
        }
        if (snapshot) {
                r = steering_adopt_maps(m->steering, snapshot->fds);
                if (r < 0) {
                        log_error_errno(r, "Failed to take over the steering maps: %m");
                        abandon_snapshot(snapshot);
                        vault_snapshot_free(snapshot);
                        snapshot = NULL;
                }
        }

        for (unsigned i = 0; i < m->n_groups; i++) {
                m->groups[i].index = i;
                r = steering_add_group(m->steering, m->groups[i].fd, &m->groups[i].index);
                if (r < 0) {
                        if (snapshot)
                                abandon_snapshot(snapshot);
                        vault_snapshot_free(snapshot);
                        return log_error_errno(r, "Failed to attach the steering program to %s: %m",
                                               m->groups[i].address);
                }
                log_info("Steering %s (%s).", m->groups[i].address, m->groups[i].name);
        }
        r = steering_set_settings(m->steering, m->config.dissector, m->config.flow_timeout_usec);
        if (r < 0) {
                vault_snapshot_free(snapshot);
                return log_error_errno(r, "Failed to configure steering: %m");
        }

        r = notify_open(m, notify_fd);
        if (r >= 0)
                r = ctl_server_open(m);
        if (r >= 0)
                r = vault_open(m);
        if (r < 0) {
                vault_snapshot_free(snapshot);
                return r;
        }

        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_stop_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_stop_signal, m);
        if (r < 0) {
                vault_snapshot_free(snapshot);
                return log_error_errno(r, "Failed to watch SIGTERM/SIGINT: %m");
        }

        if (snapshot) {
                live = restore_generations(m, snapshot);
                vault_snapshot_free(snapshot);
                if (live < 0)
                        return log_error_errno(live, "Failed to restore generations: %m");
                log_event(LOG_NOTICE, MESSAGE_STATE_RECOVERED, "state-recovered", m->working, NULL,
                          "Took over %d running generation(s) from the previous grmd; working generation %" PRIu32 ".",
                          live, m->working ? m->working->gen : 0);
                manager_state_changed(m);
                if (m->working)
                        (void) sd_notify(false, "READY=1");
        }
        if (!m->working && !m->restart)
                /* The first generation starts like any restart, without a requester. */
                (void) manager_request_restart(m, NULL, USEC_INFINITY);
        else
                manager_state_changed(m);
        return 0;
}

/* grmctl reexec: the same process runs grmd's binary again (a new version, after an upgrade),
 * handing everything over the way systemd hands over stored fds. Only returns on failure. */
int manager_reexec(Manager *m) {
        _cleanup_free_ char *names = NULL;
        int fds[GRM_MAX_GROUPS + 2], n = 0;
        size_t names_len = 0;
        char buf[32];

        if (!m->exe_path || access(m->exe_path, X_OK) < 0)
                return log_error_errno(errno ? errno : ENOENT, "Cannot re-execute %s: %m", strempty(m->exe_path));
        (void) vault_save(m);

        for (unsigned i = 0; i <= m->n_groups + 1; i++) {
                const char *name;
                int fd;

                if (i < m->n_groups) {
                        fd = m->groups[i].fd;
                        name = m->groups[i].stored ? LISTEN_FDNAME : m->groups[i].name;
                } else if (i == m->n_groups) {
                        fd = m->notify_fd;
                        name = NOTIFY_FDNAME;
                } else {
                        fd = m->vault_r;
                        name = m->vault_name;
                }
                fds[n++] = fd;
                size_t l = strlen(name);
                char *p = realloc(names, names_len + l + 2);
                if (!p)
                        return log_error_errno(ENOMEM, "Out of memory.");
                names = p;
                if (names_len)
                        names[names_len++] = ':';
                memcpy(names + names_len, name, l + 1);
                names_len += l;
        }

        /* Into 3, 4, ... without O_CLOEXEC: first above the range, then into place. */
        for (int i = 0; i < n; i++) {
                fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, SD_LISTEN_FDS_START + n);
                if (fds[i] < 0)
                        return log_error_errno(errno, "Failed to prepare fds for exec: %m");
        }
        log_notice("Re-executing %s.", m->exe_path);
        for (int i = 0; i < n; i++)
                if (dup2(fds[i], SD_LISTEN_FDS_START + i) < 0)
                        _exit(EXIT_FAILURE); /* the event loop's fds may be gone: start over */
        snprintf(buf, sizeof(buf), "%d", n);
        setenv("LISTEN_FDS", buf, 1);
        snprintf(buf, sizeof(buf), "%d", (int) getpid());
        setenv("LISTEN_PID", buf, 1);
        setenv("LISTEN_FDNAMES", names, 1);
        execv(m->exe_path, m->argv);
        log_error_errno(errno, "Failed to re-execute %s: %m; exiting so that systemd restarts grmd.", m->exe_path);
        _exit(EXIT_FAILURE);
}

void manager_clear_fd_store(Manager *m) {
        if (!getenv("NOTIFY_SOCKET"))
                return;
        (void) sd_notify(false, "FDSTOREREMOVE=1\nFDNAME=" NOTIFY_FDNAME);
        (void) sd_notify(false, "FDSTOREREMOVE=1\nFDNAME=" LISTEN_FDNAME);
        vault_close(m, true);
}

int manager_run(Manager *m) {
        return sd_event_loop(m->event);
}
