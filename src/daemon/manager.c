/* SPDX-License-Identifier: MIT */
/*
 * The Manager: the event loop and the sets it owns (groups, generations, control connections),
 * systemd's STATUS=, structured journal events, and the stop signals. What happens to a
 * generation is restart.c's to decide; start-up and reexec are takeover.c's.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "macro.h"
#include "manager.h"

#define HISTORY_MAX 8                    /* exited/failed generations kept for status */

int manager_new(Manager **ret) {
        Manager *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->notify_fd = -EBADF;
        m->ctl_fd = -EBADF;
        m->vault_r = m->vault_w = -EBADF;
        m->restart_ops = &restart_ops_default;
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
        restart_abandon(m);
        ctl_server_close(m);
        while (m->generations) {
                Generation *g = m->generations;
                m->generations = g->next;
                generation_free(g);
        }
        manager_cgroup_done(m);
        notify_close(m);
        vault_close(m, false);
        free(m->exe_path);
        strv_free(m->argv);
        sd_event_source_disable_unref(m->respawn_timer);
        sd_event_source_disable_unref(m->status_timer);
        sd_event_source_disable_unref(m->sockwatch_timer);
        portwatch_done(m);
        m->steering = steering_free(m->steering);
        for (unsigned i = 0; i < m->n_groups; i++)
                group_done(&m->groups[i]);
        free(m->groups);
        config_done(&m->cli);
        config_done(&m->config);
        free(m->config_path);
        free(m->held_reason);
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
        if (m->held_reason)
                snprintf(buf, sizeof(buf), "not supervising: %s", m->held_reason);
        else if (len == 0)
                snprintf(buf, sizeof(buf), "no generation running");
        (void) sd_notifyf(false, "STATUS=%s", buf);
        if (counting && !m->status_timer && getenv("NOTIFY_SOCKET"))
                (void) sd_event_add_time_relative(m->event, &m->status_timer, CLOCK_MONOTONIC, USEC_PER_SEC,
                                                  100 * USEC_PER_MSEC, on_status_timer, m);
}

/* After every change of state: systemd's STATUS= and the vault snapshot. */
void manager_state_changed(Manager *m) {
        update_status(m);
        (void) vault_save(m);
        portwatch_soon(m);
}

/* One journal entry per event operators act on, with a MESSAGE_ID from grm.catalog and the
 * generation, pid, outcome and timings as fields. */
void manager_log_event(int level, const char *message_id, const char *event, const Generation *g,
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
 * crash at exactly that moment. Points: "recovered" (start-up: the vaults read, nothing taken
 * over yet), "spawn" (sockets registered, instance not started) and
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


/* Drops exited generations beyond the history length. */
void manager_prune_history(Manager *m) {
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

void manager_maybe_exit(Manager *m) {
        if (!m->stopping)
                return;
        for (Generation *g = m->generations; g; g = g->next)
                if (gen_state_is_live(g->state) || g->child_source)
                        return;
        log_info("All generations are gone, exiting.");
        sd_event_exit(m->event, 0);
}

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        if (m->stopping) {
                log_notice("Already stopping; waiting for %s.", "generations to drain");
                return 0;
        }
        log_info("Received %s: draining every generation.", strempty(signal_to_name((int) si->ssi_signo)));
        restart_stop(m);
        return 0;
}

int manager_watch_stop_signals(Manager *m) {
        int r;

        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_stop_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_stop_signal, m);
        return r;
}

void manager_clear_fd_store(Manager *m) {
        if (!getenv("NOTIFY_SOCKET"))
                return;
        (void) sd_notify(false, "FDSTOREREMOVE=1\nFDNAME=" NOTIFY_FDNAME);
        (void) sd_notify(false, "FDSTOREREMOVE=1\nFDNAME=" LISTEN_FDNAME);
        /* Refusing a takeover, the vault holds the only copy of the snapshot this grmd could not
         * adopt: it stays for one that can. */
        vault_close(m, !m->held_reason);
}

void manager_release_groups(Manager *m) {
        for (unsigned i = 0; i < m->n_groups; i++) {
                int r;

                /* Without the program the kernel would hash datagrams onto it too. */
                group_drop_head(&m->groups[i]);
                r = group_detach_steering(&m->groups[i]);
                if (r < 0)
                        log_warning_errno(r, "Failed to take the steering program off %s: %m", m->groups[i].address);
        }
}

int manager_run(Manager *m) {
        return sd_event_loop(m->event);
}
