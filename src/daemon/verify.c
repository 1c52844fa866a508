/* SPDX-License-Identifier: MIT */
/*
 * Verifying the steering: every UDP group must run grm's reuseport program, but an instance
 * (before its seccomp filter, or through another route) or any process of the group's uid could
 * have replaced or removed it, and there is no system call that says which program a group runs.
 * So grmd asks the group itself: it sends a probe datagram (steering.h) that only grm's program
 * recognises, records and drops. A group that does not record it runs something else: grmd
 * reports it (journal, MESSAGE_ID below; grmctl status) and attaches its program again (an
 * atomic replacement), then checks again.
 *
 * When: at every restart (the program is re-attached first, then verified) and every
 * VERIFY_INTERVAL_USEC (test hook: GRM_TEST_VERIFY_INTERVAL_USEC overrides it, so that a test
 * can show what a restart does on its own). A probe is taken as unanswered only after VERIFY_TRIES sends
 * VERIFY_WAIT_USEC apart (loopback delivery is normally done before sendto() returns).
 *
 * A probe can also go unanswered because a socket outside grm's group on the address took it
 * (another group there wins the kernel's lookup): when the socket census reports such sockets,
 * the message says so instead, once a minute.
 *
 * Groups that cannot be probed are "unverified": TCP listeners (the probe is a datagram), and
 * sockets bound to a device (the probe arrives on loopback).
 *
 * The probe sockets and timers are floating event sources with their fds owned: they go with the
 * event loop.
 */
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "log.h"
#include "macro.h"
#include "manager.h"

#define VERIFY_INTERVAL_USEC (1 * USEC_PER_SEC)
#define VERIFY_WAIT_USEC (50 * USEC_PER_MSEC)
#define VERIFY_TRIES 3
#define VERIFY_BYPASS_LOG_USEC (60 * USEC_PER_SEC)


static const char *const state_names[] = {
        [STEERING_UNKNOWN] = "unknown",
        [STEERING_GRM] = "grm",
        [STEERING_FOREIGN] = "foreign",
        [STEERING_UNVERIFIED] = "unverified",
};

const char *steering_state_to_string(SteeringState s) {
        return s < ELEMENTSOF(state_names) ? state_names[s] : NULL;
}

/* Replies (a foreign program may hand the probe to an instance, which may answer): read away. */
static int on_probe_reply(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        char buf[64];

        while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
                ;
        return 0;
}

static int open_probe_socket(Manager *m, int family, int *ret) {
        sd_event_source *s = NULL;
        int fd, r;

        fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        r = sd_event_add_io(m->event, &s, fd, EPOLLIN, on_probe_reply, m);
        if (r < 0) {
                safe_close(fd);
                return r;
        }
        (void) sd_event_source_set_io_fd_own(s, true);
        (void) sd_event_source_set_floating(s, true);
        sd_event_source_unref(s);
        *ret = fd;
        return 0;
}

/* Where a probe for the group goes: its address, a wildcard one as loopback. -EOPNOTSUPP for a
 * group that cannot be probed. */
static int probe_target(const Group *g, struct sockaddr_storage *ret, socklen_t *ret_len) {
        char dev[IFNAMSIZ] = "";
        socklen_t dev_len = sizeof(dev);

        if (g->type != SOCK_DGRAM)
                return -EOPNOTSUPP;
        if (getsockopt(g->fd, SOL_SOCKET, SO_BINDTODEVICE, dev, &dev_len) == 0 && dev_len > 0 && dev[0])
                return -EOPNOTSUPP;
        *ret = g->sa;
        *ret_len = g->sa_len;
        if (ret->ss_family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *) ret;
                if (in->sin_addr.s_addr == htonl(INADDR_ANY))
                        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        } else if (ret->ss_family == AF_INET6) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ret;
                if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
                        in6->sin6_addr = in6addr_loopback;
        } else
                return -EOPNOTSUPP;
        return 0;
}

static int send_probe(Manager *m, unsigned i) {
        Group *g = &m->groups[i];
        struct sockaddr_storage sa;
        struct grm_probe p;
        socklen_t len;
        uint64_t nonce = 0;
        int fd, r;

        r = probe_target(g, &sa, &len);
        if (r < 0)
                return r;
        fd = sa.ss_family == AF_INET ? m->probe_fd4 : m->probe_fd6;
        if (fd < 0) {
                r = open_probe_socket(m, sa.ss_family, &fd);
                if (r < 0)
                        return r;
                if (sa.ss_family == AF_INET)
                        m->probe_fd4 = fd;
                else
                        m->probe_fd6 = fd;
        }
        while (nonce == 0)
                if (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce))
                        return -EIO;
        (void) steering_probe_payload(m->steering, nonce, &p);
        if (sendto(fd, &p, sizeof(p), MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *) &sa, len) < 0)
                return negative_errno();
        m->probe_nonce[i] = nonce;
        return 0;
}

static void verify_schedule(Manager *m, uint64_t usec);

static uint64_t verify_interval_usec(void) {
        const char *e = getenv("GRM_TEST_VERIFY_INTERVAL_USEC");
        uint64_t v;

        if (e && parse_unsigned(e, 1, UINT64_MAX / 2, &v) == 0)
                return v;
        return VERIFY_INTERVAL_USEC;
}

static void group_foreign(Manager *m, unsigned i) {
        Group *g = &m->groups[i];
        char f_id[64], f_event[64], f_group[300];
        const char *fields[] = { f_id, f_event, f_group, NULL };
        int r;

        snprintf(f_id, sizeof(f_id), "MESSAGE_ID=%s", MESSAGE_STEERING_FOREIGN);
        snprintf(f_event, sizeof(f_event), "GRM_EVENT=steering-foreign");
        snprintf(f_group, sizeof(f_group), "GRM_GROUP=%s", g->address);
        m->steering_state[i] = STEERING_FOREIGN;
        m->steering_foreign[i]++;
        if (m->portwatch.outside[i] > 0) {
                /* The census (portwatch.c) found sockets outside grm's group on the address: they
                 * take datagrams sent there, the probe's too, so its silence says nothing about
                 * grm's program. Said once a minute while it lasts, not at every probe. */
                uint64_t now = now_usec();

                if (m->probe_bypass_logged_usec[i] == 0 || now - m->probe_bypass_logged_usec[i] >= VERIFY_BYPASS_LOG_USEC) {
                        (void) log_struct(LOG_WARNING, 0, fields,
                                          "The steering probe of %s did not reach grm's program: %u socket%s outside grm's "
                                          "reuseport group take%s datagrams for that address (grmctl status lists them), "
                                          "the probe's too. Attaching grm's program again all the same.",
                                          g->address, m->portwatch.outside[i], m->portwatch.outside[i] == 1 ? "" : "s",
                                          m->portwatch.outside[i] == 1 ? "s" : "");
                        m->probe_bypass_logged_usec[i] = now;
                }
        } else
                (void) log_struct(LOG_ERR, 0, fields,
                                  "The reuseport group of %s does not run grm's steering program (it was replaced or "
                                  "removed through one of the group's sockets); attaching it again.", g->address);
        r = steering_reattach(m->steering, g->index, g->fd);
        if (r < 0)
                log_error_errno(r, "Failed to attach the steering program to %s again: %m", g->address);
}

/* The probes sent are answered, or sent again, or (after VERIFY_TRIES) their groups are foreign. */
static int on_verify_wait(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        bool pending = false;

        for (unsigned i = 0; i < m->n_groups; i++) {
                uint64_t seen = 0;

                if (m->probe_nonce[i] == 0)
                        continue;
                if (steering_probe_seen(m->steering, m->groups[i].index, &seen) == 0 && seen == m->probe_nonce[i]) {
                        if (m->steering_state[i] == STEERING_FOREIGN)
                                log_notice("The steering program of %s is in effect again.", m->groups[i].address);
                        m->steering_state[i] = STEERING_GRM;
                        m->probe_nonce[i] = 0;
                        continue;
                }
                if (++m->probe_tries[i] < VERIFY_TRIES && send_probe(m, i) == 0) {
                        pending = true;
                        continue;
                }
                m->probe_nonce[i] = 0;
                group_foreign(m, i);
        }
        verify_schedule(m, now_usec() + (pending ? VERIFY_WAIT_USEC : verify_interval_usec()));
        return 0;
}

static int on_verify_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* One timer: the wait for a round's probes while any is unanswered, else the next round. */
static void verify_schedule(Manager *m, uint64_t usec) {
        sd_event_source *s = NULL;

        m->verify_waiting = false;
        for (unsigned i = 0; i < m->n_groups; i++)
                m->verify_waiting = m->verify_waiting || m->probe_nonce[i] != 0;
        if (!m->verify_timer) {
                if (sd_event_add_time(m->event, &s, CLOCK_MONOTONIC, usec, 10 * USEC_PER_MSEC,
                                      on_verify_timer, m) < 0) {
                        log_warning("Failed to arm the steering check; the steering is not verified periodically.");
                        return;
                }
                (void) sd_event_source_set_floating(s, true);
                sd_event_source_unref(s);
                m->verify_timer = s;
                return;
        }
        (void) sd_event_source_set_time(m->verify_timer, usec);
        (void) sd_event_source_set_enabled(m->verify_timer, SD_EVENT_ONESHOT);
}

static void verify_round(Manager *m, bool reattach) {
        bool sent = false;

        for (unsigned i = 0; i < m->n_groups; i++) {
                int r;

                if (reattach) {
                        r = steering_reattach(m->steering, m->groups[i].index, m->groups[i].fd);
                        if (r < 0)
                                log_error_errno(r, "Failed to attach the steering program to %s again: %m",
                                                m->groups[i].address);
                }
                m->probe_tries[i] = 0;
                r = send_probe(m, i);
                if (r == -EOPNOTSUPP) {
                        m->steering_state[i] = STEERING_UNVERIFIED;
                        continue;
                }
                if (r < 0) {
                        log_debug_errno(r, "Failed to probe the steering of %s: %m", m->groups[i].address);
                        continue;
                }
                sent = true;
        }
        verify_schedule(m, now_usec() + (sent ? VERIFY_WAIT_USEC : verify_interval_usec()));
}

static int on_verify_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (m->verify_waiting)
                return on_verify_wait(s, usec, userdata);
        verify_round(m, false);
        return 0;
}

void manager_verify_steering(Manager *m, bool reattach) {
        if (!m->steering || m->n_groups == 0)
                return;
        if (!m->verify_started) {
                m->verify_started = true;
                m->probe_fd4 = m->probe_fd6 = -EBADF;
        }
        verify_round(m, reattach);
}
