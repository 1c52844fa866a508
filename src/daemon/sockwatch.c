/* SPDX-License-Identifier: MIT */
/*
 * The socket watch: a generation socket its instance never reads holds its share of the
 * traffic (the steering program spreads flows over every socket of the generation) while its
 * queue fills and the kernel drops the rest: the symptom of a server whose threads all read one
 * socket, or of a bind-intercepted server that binds fewer sockets than SocketsPerGeneration=.
 * grmd keeps no copy of the sockets, so once a second it asks the kernel (sock_diag, by
 * SO_COOKIE) for the receive queue of every live generation's UDP sockets, and lets
 * sock_watch_update() decide. A socket found unread is counted on its generation (grmctl
 * status, --json, metrics) and warned about in the journal when it starts, every minute while
 * it lasts, and when it ends. The timer runs only while a working or draining generation has
 * sockets to watch.
 * Generations adopted from an earlier grmd have no cookies and are not watched.
 */
#include <inttypes.h>
#include <netinet/in.h>

#include "log.h"
#include "macro.h"
#include "manager.h"

#define SOCKWATCH_INTERVAL_USEC USEC_PER_SEC
#define SOCKWATCH_REMIND_USEC (60 * USEC_PER_SEC)

/* Not while starting: what arrives before READY=1 waits in the queue by design (it is the
 * pending generation's), however long the server takes to start. */
static bool watched(const Generation *g) {
        return g->cookies && g->watch && (g->state == GEN_WORKING || g->state == GEN_DRAINING);
}

static void sample_generation(Manager *m, Generation *g, SockQueue *q, size_t *k) {
        uint64_t now = now_usec(), queued = 0, drops = 0;
        unsigned unread = 0;
        unsigned per_group = g->sockets_per_group;

        for (unsigned i = 0; i < g->n_fds; i++) {
                const Group *grp = &m->groups[i / per_group];
                SockQueue *s;
                bool changed;

                if (grp->type != SOCK_DGRAM || g->cookies[i] == 0)
                        continue;
                s = &q[(*k)++];
                changed = sock_watch_update(&g->watch[i], s);
                if (s->found) {
                        queued += s->queued_bytes;
                        drops += s->drops;
                }
                if (g->watch[i].unread)
                        unread++;
                if (changed && g->watch[i].unread) {
                        log_warning("Generation %" PRIu32 " (pid %d) does not read socket %u of %s: %" PRIu32
                                    " bytes queued, %" PRIu32 " datagrams dropped. The flows steered to it are "
                                    "lost: the instance must read every socket it gets (SocketsPerGeneration=%u).",
                                    g->gen, (int) g->pid, i % per_group + 1, grp->address, s->queued_bytes, s->drops,
                                    per_group);
                        g->unread_warned_usec = now;
                } else if (changed)
                        log_info("Generation %" PRIu32 " (pid %d) reads socket %u of %s again.", g->gen, (int) g->pid,
                                 i % per_group + 1, grp->address);
        }
        if (unread > 0 && g->n_unread > 0 && now - g->unread_warned_usec >= SOCKWATCH_REMIND_USEC) {
                log_warning("Generation %" PRIu32 " (pid %d) still leaves %u socket%s unread: %" PRIu64
                            " bytes queued, %" PRIu64 " datagrams dropped in all.",
                            g->gen, (int) g->pid, unread, unread == 1 ? "" : "s", queued, drops);
                g->unread_warned_usec = now;
        }
        g->n_unread = unread;
        g->queued_bytes = queued;
        g->socket_drops = drops;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        _cleanup_free_ SockQueue *q = NULL;
        size_t n = 0, k = 0;

        for (Generation *g = m->generations; g; g = g->next)
                if (watched(g))
                        n += g->n_fds;
        if (n == 0) {
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
                return 0;
        }
        q = calloc(n, sizeof(SockQueue));
        if (!q)
                goto again;
        for (Generation *g = m->generations; g; g = g->next)
                if (watched(g))
                        for (unsigned i = 0; i < g->n_fds; i++)
                                if (m->groups[i / g->sockets_per_group].type == SOCK_DGRAM && g->cookies[i])
                                        q[k++].cookie = g->cookies[i];
        if (sock_diag_queues(IPPROTO_UDP, q, k) < 0) {
                log_debug("sock_diag failed; not watching the receive queues this time.");
                goto again;
        }
        k = 0;
        for (Generation *g = m->generations; g; g = g->next)
                if (watched(g))
                        sample_generation(m, g, q, &k);
again:
        (void) sd_event_source_set_time_relative(s, SOCKWATCH_INTERVAL_USEC);
        return 0;
}

void sockwatch_arm(Manager *m) {
        if (!m->sockwatch_timer) {
                if (sd_event_add_time_relative(m->event, &m->sockwatch_timer, CLOCK_MONOTONIC, SOCKWATCH_INTERVAL_USEC,
                                               100 * USEC_PER_MSEC, on_timer, m) < 0)
                        return;
                (void) sd_event_source_set_description(m->sockwatch_timer, "sockwatch");
        }
        (void) sd_event_source_set_enabled(m->sockwatch_timer, SD_EVENT_ON);
        (void) sd_event_source_set_time_relative(m->sockwatch_timer, SOCKWATCH_INTERVAL_USEC);
}
