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
 * Record format (one datagram):
 *   grmd version=1 seq=N last_gen=.. crash_count=.. restarts_done=.. restarts_failed=..
 *   group index=I address=udp:… name=…
 *   generation generation=.. slot=.. slot_held=0|1 state=.. pid=.. sockets=.. per_group=..
 *              spawned_usec=.. ready_usec=.. flipped_usec=.. drain_deadline_usec=.. killed=0|1
 *              packets_at_exit=.. tcp_connections_at_exit=.. tcp_migrated_at_exit=..
 *              [pidfd=K] [status=..] [failure=..]
 * The fds are: the STEERING_N_MAPS maps in steering_map_names order, then the pidfds (K counts
 * from the first pidfd).
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

/* Puts the vault in systemd's fd store, then removes the vaults of earlier grmds. */
static void vault_store(Manager *m) {
        _cleanup_free_ char *msg = NULL;

        if (m->vault_stored || !getenv("NOTIFY_SOCKET"))
                return;
        if (asprintf(&msg, "FDSTORE=1\nFDNAME=%s", m->vault_name) < 0)
                return;
        if (sd_pid_notify_with_fds(0, false, msg, &m->vault_r, 1) <= 0) {
                log_warning("Could not put the state vault in systemd's fd store (FileDescriptorStoreMax= unset?): a crash of grmd will not be recoverable.");
                m->vault_stored = true; /* do not retry on every change */
                return;
        }
        m->vault_stored = true;
        for (char **name = m->old_vaults; name && *name; name++) {
                free(msg);
                msg = NULL;
                if (asprintf(&msg, "FDSTOREREMOVE=1\nFDNAME=%s", *name) >= 0)
                        (void) sd_pid_notify(0, false, msg);
        }
        strv_free(m->old_vaults);
        m->old_vaults = NULL;
}

int vault_save(Manager *m) {
        _cleanup_free_ char *buf = NULL;
        int fds[VAULT_MAX_FDS], map_fds[STEERING_N_MAPS];
        size_t n_fds = 0, len;
        unsigned n_pidfds = 0;
        uint64_t seq;
        CtlWriter w;
        int r;

        if (m->vault_w < 0 || steering_get_map_fds(m->steering, map_fds) < 0)
                return 0;
        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                fds[n_fds++] = map_fds[i];

        seq = ++m->vault_seq;
        ctl_writer_init(&w);
        ctl_writer_record(&w, "grmd");
        ctl_writer_add_u64(&w, "version", GRM_CTL_PROTOCOL_VERSION);
        ctl_writer_add_u64(&w, "seq", seq);
        ctl_writer_add_u64(&w, "last_gen", m->last_gen);
        ctl_writer_add_u64(&w, "crash_count", m->crash_count);
        ctl_writer_add_u64(&w, "restarts_done", m->restarts_done);
        ctl_writer_add_u64(&w, "restarts_failed", m->restarts_failed);
        for (unsigned i = 0; i < m->n_groups; i++) {
                ctl_writer_record(&w, "group");
                ctl_writer_add_u64(&w, "index", i);
                ctl_writer_add(&w, "address", m->groups[i].address);
                ctl_writer_add(&w, "name", m->groups[i].name);
        }
        for (Generation *g = m->generations; g; g = g->next) {
                ctl_writer_record(&w, "generation");
                ctl_writer_add_u64(&w, "generation", g->gen);
                ctl_writer_add_u64(&w, "slot", g->slot);
                ctl_writer_add_u64(&w, "slot_held", g->slot_held);
                ctl_writer_add(&w, "state", gen_state_to_string(g->state));
                ctl_writer_add_u64(&w, "pid", (uint64_t) g->pid);
                ctl_writer_add_u64(&w, "sockets", g->n_fds);
                ctl_writer_add_u64(&w, "per_group", g->sockets_per_group);
                ctl_writer_add_u64(&w, "spawned_usec", g->spawned_usec);
                ctl_writer_add_u64(&w, "ready_usec", g->ready_usec);
                ctl_writer_add_u64(&w, "ready_seen_usec", g->ready_seen_usec);
                ctl_writer_add_u64(&w, "flipped_usec", g->flipped_usec);
                ctl_writer_add_u64(&w, "drain_deadline_usec", g->drain_deadline_usec);
                ctl_writer_add_u64(&w, "exited_usec", g->exited_usec);
                ctl_writer_add_u64(&w, "killed", g->killed);
                ctl_writer_add_u64(&w, "packets_at_exit", g->packets_at_exit);
                ctl_writer_add_u64(&w, "tcp_connections_at_exit", g->tcp_connections_at_exit);
                ctl_writer_add_u64(&w, "tcp_migrated_at_exit", g->tcp_migrated_at_exit);
                if (g->pidfd >= 0 && gen_state_is_live(g->state) && n_fds < VAULT_MAX_FDS) {
                        ctl_writer_add_u64(&w, "pidfd", n_pidfds++);
                        fds[n_fds++] = g->pidfd;
                }
                if (g->status)
                        ctl_writer_add(&w, "status", g->status);
                if (g->failure)
                        ctl_writer_add(&w, "failure", g->failure);
        }
        r = ctl_writer_finish(&w, &buf, &len);
        ctl_writer_done(&w);
        if (r < 0)
                return log_error_errno(r, "Failed to serialize state: %m");

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
        for (;;) {
                char head[64];
                uint64_t old_seq;
                ssize_t n = recv(m->vault_r, head, sizeof(head) - 1, MSG_PEEK | MSG_DONTWAIT);
                const char *p;

                if (n <= 0)
                        break;
                head[n] = 0;
                p = strstr(head, " seq=");
                if (!p || sscanf(p + 5, "%" SCNu64, &old_seq) != 1 || old_seq >= seq)
                        break;
                union {
                        struct cmsghdr align;
                        char space[CMSG_SPACE(sizeof(int) * VAULT_MAX_FDS)];
                } old_control;
                struct msghdr old = { .msg_control = &old_control, .msg_controllen = sizeof(old_control) };
                if (recvmsg(m->vault_r, &old, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0)
                        break;
                for (struct cmsghdr *oc = CMSG_FIRSTHDR(&old); oc; oc = CMSG_NXTHDR(&old, oc))
                        if (oc->cmsg_level == SOL_SOCKET && oc->cmsg_type == SCM_RIGHTS)
                                close_fds((int *) CMSG_DATA(oc), (oc->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        }
        vault_store(m);
        return 0;
}

void vault_snapshot_free(VaultSnapshot *v) {
        if (!v)
                return;
        ctl_message_free(v->msg);
        close_fds(v->fds, v->n_fds);
        free(v->fds);
        free(v);
}

/* Reads every snapshot queued on fd and keeps the newest. */
int vault_recover(int fd, VaultSnapshot **ret) {
        _cleanup_free_ char *buf = malloc(GRM_CTL_MESSAGE_MAX + 1);
        VaultSnapshot *best = NULL;
        uint64_t best_seq = 0;

        if (!buf)
                return -ENOMEM;
        for (;;) {
                union {
                        struct cmsghdr align;
                        char space[CMSG_SPACE(sizeof(int) * VAULT_MAX_FDS)];
                } control;
                struct iovec iov = { buf, GRM_CTL_MESSAGE_MAX + 1 };
                struct msghdr mh = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control),
                };
                int *fds = NULL;
                size_t n_fds = 0;
                CtlMessage *msg = NULL;
                const CtlRecord *head;
                uint64_t seq = 0;
                ssize_t n;

                n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0)
                        break;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                                n_fds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                fds = malloc(sizeof(int) * (n_fds ? n_fds : 1));
                                if (!fds) {
                                        close_fds((int *) CMSG_DATA(c), n_fds);
                                        n_fds = 0;
                                        continue;
                                }
                                memcpy(fds, CMSG_DATA(c), sizeof(int) * n_fds);
                        }

                if ((size_t) n > GRM_CTL_MESSAGE_MAX || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
                    ctl_message_parse(buf, (size_t) n, GRM_CTL_MESSAGE_MAX, &msg) < 0 ||
                    !(head = ctl_message_find(msg, "grmd")) || ctl_record_get_u64(head, "seq", &seq) < 0 ||
                    n_fds < STEERING_N_MAPS || (best && seq <= best_seq)) {
                        ctl_message_free(msg);
                        close_fds(fds, n_fds);
                        free(fds);
                        continue;
                }
                vault_snapshot_free(best);
                best = calloc(1, sizeof(*best));
                if (!best) {
                        ctl_message_free(msg);
                        close_fds(fds, n_fds);
                        free(fds);
                        return -ENOMEM;
                }
                best->msg = msg;
                best->fds = fds;
                best->n_fds = n_fds;
                best_seq = seq;
        }
        if (!best)
                return -ENOENT;
        best->seq = best_seq;
        *ret = best;
        return 0;
}

void vault_close(Manager *m, bool remove_from_store) {
        _cleanup_free_ char *msg = NULL;

        if (remove_from_store && m->vault_stored && m->vault_name &&
            asprintf(&msg, "FDSTOREREMOVE=1\nFDNAME=%s", m->vault_name) >= 0)
                (void) sd_pid_notify(0, false, msg);
        m->vault_r = safe_close(m->vault_r);
        m->vault_w = safe_close(m->vault_w);
        m->vault_stored = false;
        free(m->vault_name);
        m->vault_name = NULL;
        strv_free(m->old_vaults);
        m->old_vaults = NULL;
}
