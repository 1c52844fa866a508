/* SPDX-License-Identifier: MIT */
/*
 * The NOTIFY_SOCKET every instance reports to: an abstract-namespace datagram socket (no file
 * to clean up, reachable by an unprivileged instance). Only datagrams whose SCM_CREDENTIALS pid
 * belongs to a live generation count; others are ignored and counted. Passed fds are closed.
 * Any local user can send here, so the warnings about what is ignored are rate-limited
 * (NOTIFY_LOG_BURST per NOTIFY_LOG_INTERVAL_USEC) and what was suppressed is counted.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "log.h"
#include "macro.h"
#include "manager.h"
#include "notify-message.h"
#include "ratelimit.h"
#include <systemd/sd-daemon.h>

#define NOTIFY_LOG_INTERVAL_USEC (10 * USEC_PER_SEC)
#define NOTIFY_LOG_BURST 20
/* What grmd keeps of a STATUS= for status replies and the vault (the datagram may carry up to
 * NOTIFY_MESSAGE_MAX): a status reply holds every generation's, within GRM_CTL_MESSAGE_MAX. */
#define GENERATION_STATUS_MAX 1024U

#define notify_warn(m, error, ...) (void) log_warning_ratelimited(&(m)->notify_log_limit, error, __VA_ARGS__)

static void close_passed_fds(struct msghdr *mh) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        int *fds = (int *) CMSG_DATA(c);
                        for (size_t i = 0; i < n; i++)
                                safe_close(fds[i]);
                }
}

static void handle_message(Manager *m, Generation *g, const NotifyMessage *msg) {
        if (msg->status) {
                free(g->status);
                g->status = strndup(msg->status, GENERATION_STATUS_MAX);
        }
        if (msg->bind_errno > 0 && msg->bind_address) {
                char *e = NULL;
                if (asprintf(&e, "bind(%s) failed: %s", msg->bind_address, strerror(msg->bind_errno)) >= 0) {
                        free(g->bind_error);
                        g->bind_error = e;
                }
                bool managed = false;
                for (unsigned i = 0; i < m->n_groups && !managed; i++)
                        managed = streq(m->groups[i].address, msg->bind_address);
                if (managed && m->config.connect_per_client > 0)
                        /* A per-client socket (one per new client, so rate-limited): grm's sockets are
                         * another user's, or something else holds the address without SO_REUSEPORT. */
                        notify_warn(m, msg->bind_errno,
                                    "Generation %" PRIu32 " (pid %d): a per-client bind() of %s failed: %s%s", g->gen,
                                    (int) g->pid, msg->bind_address, strerror(msg->bind_errno),
                                    msg->bind_errno == EADDRINUSE
                                            ? " (the address is held by a socket of another user or one without SO_REUSEPORT; see \"Connect-per-client servers\" in docs/SERVERS.md)"
                                            : "");
                else
                        log_warning("Generation %" PRIu32 " (pid %d): its bind() of %s failed: %s%s", g->gen, (int) g->pid,
                                    msg->bind_address, strerror(msg->bind_errno),
                                    managed ? " (it has taken every socket its generation has there: raise SocketsPerGeneration=)"
                                    : msg->bind_errno == EADDRINUSE
                                            ? " (not an address grmd manages, and in use: by the older generation if it binds it too)"
                                            : " (not an address grmd manages)");
        }
        if (msg->errno_value > 0 && g->state == GEN_STARTING) {
                char why[96], buf[256];
                snprintf(why, sizeof(why), "reported ERRNO=%d (%s)", msg->errno_value,
                         strerror(msg->errno_value));
                restart_on_failed(m, g, GRM_OUTCOME_FAILED, generation_explain(g, why, buf, sizeof(buf)));
                return;
        }
        if (msg->extend_timeout_usec != UINT64_MAX && g->state == GEN_STARTING) {
                /* Like systemd: the deadline becomes "now + extension" if that is later. */
                uint64_t until = usec_add(now_usec(), msg->extend_timeout_usec);
                uint64_t current = 0;
                if (!g->timer || sd_event_source_get_time(g->timer, &current) < 0 || until > current)
                        (void) generation_set_timer(g, until);
                /* systemd's reload timeout has to wait as long. */
                if (m->restart && m->restart->gen == g && !m->restart->automatic)
                        (void) sd_notifyf(false, "EXTEND_TIMEOUT_USEC=%" PRIu64,
                                          usec_add(msg->extend_timeout_usec, 10 * USEC_PER_SEC));
                ctl_connection_progress(m->restart && m->restart->gen == g ? m->restart->requester : NULL,
                                        "extend", "generation %" PRIu32 " extended its start timeout by %" PRIu64 " ms",
                                        g->gen, msg->extend_timeout_usec / 1000);
        }
        if (msg->ready) {
                if (g->state == GEN_STARTING) {
                        g->ready_seen_usec = now_usec();
                        restart_on_ready(m, g);
                } else
                        log_debug("Ignoring repeated READY=1 from generation %" PRIu32, g->gen);
        }
}

static int on_notify(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        char buf[NOTIFY_MESSAGE_MAX + 1];
        union {
                struct cmsghdr align;
                char space[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 253)];
        } control;
        struct iovec iov = { buf, sizeof(buf) };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = sizeof(control),
        };
        struct ucred *cred = NULL;
        NotifyMessage msg;
        Generation *g;
        ssize_t n;
        int r;

        n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                notify_warn(m, errno, "Failed to read from notify socket: %m");
                return 0;
        }
        close_passed_fds(&mh);

        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
                    c->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
                        cred = (struct ucred *) CMSG_DATA(c);

        if (!cred || cred->pid <= 0) {
                m->notify_ignored++;
                notify_warn(m, 0, "Ignoring notify message without sender credentials.");
                return 0;
        }
        g = manager_find_generation_by_pid(m, cred->pid);
        if (!g) {
                m->notify_ignored++;
                notify_warn(m, 0, "Ignoring notify message from pid %d, which is not part of any live generation.",
                            (int) cred->pid);
                return 0;
        }
        if ((size_t) n > NOTIFY_MESSAGE_MAX || (mh.msg_flags & MSG_TRUNC)) {
                m->notify_oversized++;
                notify_warn(m, 0, "Ignoring notify message of %zd bytes from generation %" PRIu32 ", pid %d: "
                            "at most %u bytes are accepted (as by systemd).",
                            n, g->gen, (int) cred->pid, NOTIFY_MESSAGE_MAX);
                return 0;
        }

        r = notify_message_parse(buf, (size_t) n, &msg);
        if (r < 0) {
                m->notify_malformed++;
                notify_warn(m, r, "Ignoring malformed notify message from generation %" PRIu32 ", pid %d: %m",
                            g->gen, (int) cred->pid);
                return 0;
        }
        handle_message(m, g, &msg);
        notify_message_done(&msg);
        return 0;
}

int notify_open(Manager *m, int inherited_fd) {
        _cleanup_close_ int fd = inherited_fd;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        socklen_t len = sizeof(sa);
        int one = 1, r;

        m->notify_log_limit = RATELIMIT_INIT(NOTIFY_LOG_INTERVAL_USEC, NOTIFY_LOG_BURST);
        if (fd >= 0) {
                /* The previous grmd's: instances still starting send READY=1 here, and what
                 * they sent while no grmd was running is still queued. */
                if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
                        return log_error_errno(errno, "Failed to take over the notify socket: %m");
        } else {
                fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0)
                        return log_error_errno(errno, "Failed to create notify socket: %m");
                /* Binding only the family autobinds a unique abstract name. */
                if (bind(fd, (struct sockaddr *) &sa, sizeof(sa_family_t)) < 0)
                        return log_error_errno(errno, "Failed to bind notify socket: %m");
                if (getenv("NOTIFY_SOCKET") &&
                    sd_pid_notify_with_fds(0, false, "FDSTORE=1\nFDNAME=" NOTIFY_FDNAME, &fd, 1) <= 0)
                        log_debug("Could not store the notify socket in the fd store.");
        }
        if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
                return log_error_errno(errno, "Failed to enable credentials on notify socket: %m");
        if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return log_error_errno(errno, "Failed to read notify socket name: %m");
        if (len <= offsetof(struct sockaddr_un, sun_path) + 1 || sa.sun_path[0] != 0)
                return log_error_errno(EINVAL, "Notify socket did not get an abstract name.");

        size_t name_len = len - offsetof(struct sockaddr_un, sun_path) - 1;
        m->notify_socket = malloc(name_len + 2);
        if (!m->notify_socket)
                return log_error_errno(ENOMEM, "Out of memory.");
        m->notify_socket[0] = '@';
        memcpy(m->notify_socket + 1, sa.sun_path + 1, name_len);
        m->notify_socket[name_len + 1] = 0;

        r = sd_event_add_io(m->event, &m->notify_source, fd, EPOLLIN, on_notify, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch notify socket: %m");
        m->notify_fd = TAKE_FD(fd);
        return 0;
}

void notify_close(Manager *m) {
        m->notify_source = sd_event_source_disable_unref(m->notify_source);
        m->notify_fd = safe_close(m->notify_fd);
        free(m->notify_socket);
        m->notify_socket = NULL;
}
