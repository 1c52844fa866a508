/* SPDX-License-Identifier: MIT */
/*
 * The vault: everything a later grmd needs to take over, kept where grmd's death cannot lose it.
 *
 * systemd 252's file descriptor store keeps sockets but drops BPF map fds and pidfds. An AF_UNIX
 * datagram socket in the store keeps whatever is queued on it, SCM_RIGHTS included. So the
 * vault is a socketpair: grmd stores the reading end in the fd store once (FDNAME=grm-vault-…) and
 * queues "snapshots" on it through the writing end. A snapshot is one datagram: the state as
 * control-protocol records (ctl-protocol.h) plus the steering maps and a pidfd per live
 * generation as SCM_RIGHTS. After queueing snapshot N, the older ones are dequeued, so the queue
 * always holds at least one complete snapshot, whenever grmd dies. On exec (grmctl reexec) the
 * reading end is passed on like a stored fd.
 *
 * What a snapshot holds and how it is encoded is snapshot.c's alone.
 */
#include <inttypes.h>
#include <stdio.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "macro.h"
#include "manager.h"

#define VAULT_MAX_FDS 253 /* SCM_MAX_FD */
/* Stored fds named VAULT_PREFIX... are vaults. */

static void close_fds(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                fds[i] = safe_close(fds[i]);
}

int vault_open(Manager *m) {
        int pair[2];

        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) < 0)
                return log_error_errno(errno, "Failed to create the state vault: %m");
        m->vault_r = pair[0];
        m->vault_w = pair[1];
        /* A name of its own, so the new vault is stored before the old one is removed: the
         * store holds a complete snapshot at every moment. */
        if (asprintf(&m->vault_name, VAULT_PREFIX "%d-%" PRIu64, (int) getpid(), now_usec()) < 0)
                return log_error_errno(ENOMEM, "Out of memory.");
        return 0;
}

/* Puts the vault in systemd's fd store (once). */
void vault_store(Manager *m) {
        _cleanup_free_ char *msg = NULL;

        if (m->vault_stored || m->vault_r < 0 || !getenv("NOTIFY_SOCKET"))
                return;
        if (asprintf(&msg, "FDSTORE=1\nFDNAME=%s", m->vault_name) < 0)
                return;
        if (sd_pid_notify_with_fds(0, false, msg, &m->vault_r, 1) <= 0)
                log_warning("Could not put the state vault in systemd's fd store (FileDescriptorStoreMax= unset?): a crash of grmd will not be recoverable.");
        m->vault_stored = true; /* do not retry on every change */
}

/* Removes the vaults of earlier grmds from the fd store: only once ours holds a snapshot of our
 * own, which supersedes theirs (the copies vault_take() made are dropped by then too). */
static void vault_forget_inherited(Manager *m) {
        _cleanup_free_ char *msg = NULL;

        if (!getenv("NOTIFY_SOCKET") || m->vault_keep_inherited)
                return;
        for (char **name = m->old_vaults; name && *name; name++) {
                free(msg);
                msg = NULL;
                if (asprintf(&msg, "FDSTOREREMOVE=1\nFDNAME=%s", *name) >= 0)
                        (void) sd_pid_notify(0, false, msg);
        }
        strv_free(m->old_vaults);
        m->old_vaults = NULL;
}

/* Dequeues the snapshots older than seq from the vault's queue, closing their fds (all of them
 * with UINT64_MAX). */
static void drop_snapshots_before(int vault_r, uint64_t seq) {
        for (;;) {
                char head[64];
                uint64_t old_seq;
                ssize_t n = recv(vault_r, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);

                if (n < 0)
                        break;
                if (seq != UINT64_MAX && (snapshot_peek_seq(head, (size_t) n, &old_seq) < 0 || old_seq >= seq))
                        break;
                union {
                        struct cmsghdr align;
                        char space[CMSG_SPACE(sizeof(int) * VAULT_MAX_FDS)];
                } old_control;
                struct msghdr old = { .msg_control = &old_control, .msg_controllen = sizeof(old_control) };
                if (recvmsg(vault_r, &old, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0)
                        break;
                for (struct cmsghdr *oc = CMSG_FIRSTHDR(&old); oc; oc = CMSG_NXTHDR(&old, oc))
                        if (oc->cmsg_level == SOL_SOCKET && oc->cmsg_type == SCM_RIGHTS)
                                close_fds((int *) CMSG_DATA(oc), (oc->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        }
}

int vault_save(Manager *m) {
        _cleanup_free_ char *buf = NULL;
        int fds[VAULT_MAX_FDS], map_fds[STEERING_N_MAPS];
        size_t n_fds = 0, len;
        uint64_t seq;
        int r;

        /* Nothing to hand over before the maps exist. */
        if (m->vault_w < 0 || !m->steering || steering_get_map_fds(m->steering, map_fds) < 0)
                return 0;
        seq = m->vault_seq + 1;
        r = snapshot_write(m, seq, &buf, &len, fds, VAULT_MAX_FDS, &n_fds);
        if (r < 0)
                return log_error_errno(r, "Failed to serialize state: %m");
        m->vault_seq = seq;

        union {
                struct cmsghdr align;
                char space[CMSG_SPACE(sizeof(int) * VAULT_MAX_FDS)];
        } control = {};
        struct iovec iov = { buf, len };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = CMSG_SPACE(sizeof(int) * n_fds),
        };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);

        if (sendmsg(m->vault_w, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                return log_error_errno(errno, "Failed to write state snapshot: %m");

        /* Drop the older snapshots: the new one is queued behind them. */
        drop_snapshots_before(m->vault_r, seq);
        vault_store(m);
        vault_forget_inherited(m);
        return 0;
}

/* Receives the datagram at the head of fd's queue (MSG_PEEK: it stays queued, the fds are
 * duplicated) into buf, and its fds into fds. Returns its length, or -errno (-EAGAIN: empty). */
static ssize_t receive_snapshot(int fd, int flags, char *buf, size_t size, int *fds, size_t *ret_n_fds,
                                bool *ret_truncated) {
        union {
                struct cmsghdr align;
                char space[CMSG_SPACE(sizeof(int) * VAULT_MAX_FDS)];
        } control;
        struct iovec iov = { buf, size };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = sizeof(control),
        };
        size_t n_fds = 0;
        ssize_t n;

        n = recvmsg(fd, &mh, flags | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return negative_errno();
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

                        if (n_fds + k > VAULT_MAX_FDS) {
                                close_fds((int *) CMSG_DATA(c), k);
                                continue;
                        }
                        memcpy(fds + n_fds, CMSG_DATA(c), sizeof(int) * k);
                        n_fds += k;
                }
        *ret_n_fds = n_fds;
        *ret_truncated = (size_t) n >= size || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
        return n;
}

/* Sends a copy of a snapshot (its bytes and fds) into our vault. */
static int copy_snapshot(Manager *m, const char *buf, size_t len, const int *fds, size_t n_fds) {
        union {
                struct cmsghdr align;
                char space[CMSG_SPACE(sizeof(int) * VAULT_MAX_FDS)];
        } control = {};
        struct iovec iov = { (void *) buf, len };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
        };

        if (n_fds > 0) {
                struct cmsghdr *c;

                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        if (sendmsg(m->vault_w, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                return negative_errno();
        return 0;
}

int vault_take(Manager *m, int fd, Snapshot **ret) {
        _cleanup_free_ char *buf = malloc(GRM_CTL_MESSAGE_MAX + 1);
        Snapshot *best = NULL;

        if (!buf)
                return -ENOMEM;
        for (;;) {
                int fds[VAULT_MAX_FDS], dropped[VAULT_MAX_FDS];
                size_t n_fds = 0, n_dropped = 0;
                bool truncated, dropped_truncated;
                Snapshot *s = NULL;
                ssize_t n;
                int r;

                n = receive_snapshot(fd, MSG_PEEK, buf, GRM_CTL_MESSAGE_MAX + 1, fds, &n_fds, &truncated);
                if (n < 0)
                        break;
                /* Copy first, dequeue after: at every moment one of the two vaults in the fd store
                 * holds this snapshot. If the copy cannot be made, the rest stays where it is. */
                if (!truncated && m->vault_w >= 0) {
                        r = copy_snapshot(m, buf, (size_t) n, fds, n_fds);
                        if (r < 0) {
                                log_warning_errno(r, "Failed to copy a snapshot into the new vault, leaving it in the old one: %m");
                                close_fds(fds, n_fds);
                                m->vault_keep_inherited = true;
                                break;
                        }
                }
                if (receive_snapshot(fd, 0, NULL, 0, dropped, &n_dropped, &dropped_truncated) >= 0)
                        close_fds(dropped, n_dropped);
                if (truncated) {
                        close_fds(fds, n_fds);
                        continue;
                }
                /* snapshot_read() takes the fds, whatever it returns. */
                if (snapshot_read(buf, (size_t) n, fds, n_fds, &s) < 0)
                        continue;
                if (best && s->seq <= best->seq) {
                        snapshot_free(s);
                        continue;
                }
                snapshot_free(best);
                best = s;
        }
        if (!best)
                return -ENOENT;
        *ret = best;
        return 0;
}

void vault_close(Manager *m, bool remove_from_store) {
        _cleanup_free_ char *msg = NULL;

        if (remove_from_store && m->vault_stored && m->vault_name &&
            asprintf(&msg, "FDSTOREREMOVE=1\nFDNAME=%s", m->vault_name) >= 0)
                (void) sd_pid_notify(0, false, msg);
        /* The store lets go of its copy whenever systemd gets to it; the queue's fds go now, head
         * sockets among them, before the steering program comes off (manager_release_groups()). */
        if (remove_from_store && m->vault_r >= 0)
                drop_snapshots_before(m->vault_r, UINT64_MAX);
        m->vault_r = safe_close(m->vault_r);
        m->vault_w = safe_close(m->vault_w);
        m->vault_stored = false;
        free(m->vault_name);
        m->vault_name = NULL;
        strv_free(m->old_vaults);
        m->old_vaults = NULL;
}
