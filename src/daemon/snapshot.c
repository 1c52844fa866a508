/* SPDX-License-Identifier: MIT */
/*
 * The hand-over format: what one grmd leaves for the next (after a crash, a kill or grmctl
 * reexec) to take over its instances. This file alone writes and reads it; vault.c only moves
 * the bytes and fds, takeover.c acts on what was read.
 *
 * A snapshot is control-protocol records (ctl-protocol.h), one datagram:
 *   grmd version=2 seq=N maps_abi=A last_gen=.. crash_count=.. restarts_done=.. restarts_failed=..
 *        pidfds=P
 *   group index=I address=udp:… name=… [head=H]
 *   generation generation=.. slot=.. slot_held=0|1 state=.. pid=.. sockets=.. per_group=..
 *              spawned_usec=.. ready_usec=.. ready_seen_usec=.. flipped_usec=..
 *              drain_deadline_usec=.. exited_usec=.. killed=0|1 packets_at_exit=..
 *              tcp_connections_at_exit=.. tcp_migrated_at_exit=.. [pidfd=K] [status=..]
 *              [failure=..]
 * with fds: the STEERING_N_MAPS maps in steering_map_names order, then one pidfd per live
 * generation (K counts from the first pidfd), then the groups' head sockets (H counts from the
 * first after the P pidfds; group.c says what they are for). The snapshot is how a head socket
 * outlives grmd: the vault's queue holds it while no grmd does. The "grmd" record comes first and
 * starts with version and seq, so that the sequence number can be read from a datagram's first
 * bytes. A grmd older than head sockets closes them (it takes no fd it has no key for).
 *
 * version is SNAPSHOT_FORMAT_VERSION (manager.h), maps_abi the steering maps' layout
 * (GRM_MAPS_ABI_VERSION, bpf/steer-api.h). A reader takes formats up to its own (older ones
 * are subsets) and maps of its own ABI only; snapshot_check() says why not. Keys it does not
 * know are ignored, so a later format may add keys without a new version; a change of meaning
 * needs one.
 */
#include <inttypes.h>
#include <stdio.h>

#include "macro.h"
#include "manager.h"

static int gen_state_from_string(const char *s) {
        for (int i = 0; i < _GEN_STATE_MAX; i++)
                if (streq_ptr(gen_state_to_string(i), s))
                        return i;
        return -EINVAL;
}

static uint64_t record_u64(const CtlRecord *r, const char *key) {
        uint64_t v = 0;

        if (r)
                (void) ctl_record_get_u64(r, key, &v);
        return v;
}

/* Test hook: GRM_TEST_SNAPSHOT_VERSION=N makes grmd write format N, so that a test can show what
 * the next grmd does with a snapshot it cannot read (tests/integration/takeover-refused.sh). */
static uint64_t snapshot_format_version(void) {
        const char *e = getenv("GRM_TEST_SNAPSHOT_VERSION");
        uint64_t v;

        if (e && parse_unsigned(e, 0, UINT32_MAX, &v) == 0)
                return v;
        return SNAPSHOT_FORMAT_VERSION;
}

int snapshot_write(Manager *m, uint64_t seq, char **ret_buf, size_t *ret_len, int *fds,
                   size_t max_fds, size_t *ret_n_fds) {
        int map_fds[STEERING_N_MAPS];
        int head_fds[GRM_MAX_GROUPS];
        size_t n_fds = 0;
        unsigned n_pidfds = 0, n_heads = 0;
        CtlWriter w;
        int r;

        if (max_fds < STEERING_N_MAPS)
                return -EINVAL;
        r = steering_get_map_fds(m->steering, map_fds);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                fds[n_fds++] = map_fds[i];

        ctl_writer_init(&w);
        ctl_writer_record(&w, "grmd");
        ctl_writer_add_u64(&w, "version", snapshot_format_version());
        ctl_writer_add_u64(&w, "seq", seq);
        ctl_writer_add_u64(&w, "maps_abi", GRM_MAPS_ABI_VERSION);
        ctl_writer_add_u64(&w, "last_gen", m->last_gen);
        ctl_writer_add_u64(&w, "crash_count", m->crash_count);
        ctl_writer_add_u64(&w, "restarts_done", m->restarts_done);
        ctl_writer_add_u64(&w, "restarts_failed", m->restarts_failed);
        for (Generation *g = m->generations; g; g = g->next)
                if (g->pidfd >= 0 && gen_state_is_live(g->state) && n_fds + n_pidfds < max_fds)
                        n_pidfds++;
        ctl_writer_add_u64(&w, "pidfds", n_pidfds);
        for (unsigned i = 0; i < m->n_groups; i++) {
                ctl_writer_record(&w, "group");
                ctl_writer_add_u64(&w, "index", i);
                ctl_writer_add(&w, "address", m->groups[i].address);
                ctl_writer_add(&w, "name", m->groups[i].name);
                if (m->groups[i].has_head && n_fds + n_pidfds + n_heads < max_fds) {
                        ctl_writer_add_u64(&w, "head", n_heads);
                        head_fds[n_heads++] = m->groups[i].head_fd;
                }
        }
        n_pidfds = 0;
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
                if (g->pidfd >= 0 && gen_state_is_live(g->state) && n_fds < max_fds) {
                        ctl_writer_add_u64(&w, "pidfd", n_pidfds++);
                        fds[n_fds++] = g->pidfd;
                }
                if (g->status)
                        ctl_writer_add(&w, "status", g->status);
                if (g->failure)
                        ctl_writer_add(&w, "failure", g->failure);
        }
        for (unsigned i = 0; i < n_heads; i++)
                fds[n_fds++] = head_fds[i];
        r = ctl_writer_finish(&w, ret_buf, ret_len);
        ctl_writer_done(&w);
        if (r < 0)
                return r;
        *ret_n_fds = n_fds;
        return 0;
}

int snapshot_peek_seq(const char *head, size_t len, uint64_t *ret) {
        char buf[64];
        const char *p;

        if (len >= sizeof(buf))
                len = sizeof(buf) - 1;
        memcpy(buf, head, len);
        buf[len] = 0;
        if (strncmp(buf, "grmd ", 5) != 0)
                return -EINVAL;
        p = strstr(buf, " seq=");
        if (!p || sscanf(p + 5, "%" SCNu64, ret) != 1)
                return -EINVAL;
        return 0;
}

int snapshot_check(const Snapshot *s, char *why, size_t size) {
        if (s->version == 0 || s->version > SNAPSHOT_FORMAT_VERSION) {
                snprintf(why, size, "its snapshot has format version %" PRIu64 ", this grmd reads 1 to %u (a newer grmd wrote it?)",
                         s->version, SNAPSHOT_FORMAT_VERSION);
                return -EPROTONOSUPPORT;
        }
        /* Format 1 did not say; the maps themselves carry their ABI version, checked when they
         * are adopted (steering.c). */
        if (s->maps_abi != 0 && s->maps_abi != GRM_MAPS_ABI_VERSION) {
                snprintf(why, size, "its steering maps have ABI version %" PRIu64 ", this grmd's program needs %u",
                         s->maps_abi, GRM_MAPS_ABI_VERSION);
                return -EPROTONOSUPPORT;
        }
        return 0;
}

static int read_generation(const CtlRecord *r, int *pidfds, size_t n_pidfds, Generation **ret) {
        uint64_t pidfd_index;
        Generation *g;
        int state;

        state = gen_state_from_string(ctl_record_get(r, "state"));
        if (state < 0 || record_u64(r, "slot") >= GRM_GEN_SLOTS)
                return -EINVAL;
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
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
        if (ctl_record_get_u64(r, "pidfd", &pidfd_index) == 0 && pidfd_index < n_pidfds) {
                g->pidfd = pidfds[pidfd_index];
                pidfds[pidfd_index] = -EBADF;
        }
        *ret = g;
        return 0;
}

Snapshot *snapshot_free(Snapshot *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_groups; i++) {
                free(s->groups[i].address);
                safe_close(s->groups[i].head_fd);
        }
        free(s->groups);
        while (s->generations) {
                Generation *g = s->generations;

                s->generations = g->next;
                g->slot_held = false; /* the slot is the maps', not ours to release */
                generation_free(g);
        }
        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                safe_close(s->map_fds[i]);
        free(s);
        return NULL;
}

int snapshot_read(const void *buf, size_t len, int *fds, size_t n_fds, Snapshot **ret) {
        _cleanup_(ctl_message_freep) CtlMessage *msg = NULL;
        const CtlRecord *head;
        Generation **tail;
        Snapshot *s = NULL;
        uint64_t n_pidfds;
        size_t n_extra;
        int r;

        r = ctl_message_parse(buf, len, GRM_CTL_MESSAGE_MAX, &msg);
        if (r < 0)
                goto fail_fds;
        head = ctl_message_find(msg, "grmd");
        if (!head || n_fds < STEERING_N_MAPS) {
                r = -EBADMSG;
                goto fail_fds;
        }

        s = calloc(1, sizeof(*s));
        if (!s) {
                r = -ENOMEM;
                goto fail_fds;
        }
        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                s->map_fds[i] = -EBADF;
        r = ctl_record_get_u64(head, "seq", &s->seq);
        if (r < 0) {
                r = -EBADMSG;
                goto fail_fds;
        }
        for (unsigned i = 0; i < STEERING_N_MAPS; i++) {
                s->map_fds[i] = fds[i];
                fds[i] = -EBADF;
        }
        s->version = record_u64(head, "version");
        s->maps_abi = record_u64(head, "maps_abi");
        s->last_gen = (uint32_t) record_u64(head, "last_gen");
        s->crash_count = (unsigned) record_u64(head, "crash_count");
        s->restarts_done = record_u64(head, "restarts_done");
        s->restarts_failed = record_u64(head, "restarts_failed");
        /* The fds after the maps: pidfds, then head sockets. A snapshot without "pidfds" (from a
         * grmd before head sockets) has pidfds only. */
        n_extra = n_fds - STEERING_N_MAPS;
        if (ctl_record_get_u64(head, "pidfds", &n_pidfds) < 0 || n_pidfds > n_extra)
                n_pidfds = n_extra;

        s->groups = calloc(msg->n_records + 1, sizeof(SnapshotGroup));
        if (!s->groups) {
                r = -ENOMEM;
                goto fail_fds;
        }
        tail = &s->generations;
        for (size_t i = 0; i < msg->n_records; i++) {
                const CtlRecord *rec = &msg->records[i];

                if (streq(rec->type, "group")) {
                        const char *address = ctl_record_get(rec, "address");
                        uint64_t index, head_index;

                        if (ctl_record_get_u64(rec, "index", &index) < 0 || !address) {
                                r = -EBADMSG;
                                goto fail_fds;
                        }
                        s->groups[s->n_groups].index = index;
                        s->groups[s->n_groups].head_fd = -EBADF;
                        s->groups[s->n_groups].address = strdup(address);
                        if (!s->groups[s->n_groups].address) {
                                r = -ENOMEM;
                                goto fail_fds;
                        }
                        if (ctl_record_get_u64(rec, "head", &head_index) == 0 &&
                            head_index < n_extra - n_pidfds) {
                                size_t k = STEERING_N_MAPS + n_pidfds + head_index;

                                s->groups[s->n_groups].head_fd = fds[k];
                                fds[k] = -EBADF;
                        }
                        s->n_groups++;
                } else if (streq(rec->type, "generation")) {
                        Generation *g;

                        r = read_generation(rec, fds + STEERING_N_MAPS, n_pidfds, &g);
                        if (r == -ENOMEM)
                                goto fail_fds;
                        if (r < 0)
                                continue; /* a state or slot this grmd does not know */
                        *tail = g;
                        tail = &g->next;
                }
        }
        r = 0;
        *ret = TAKE_PTR(s);

fail_fds:
        /* Whatever no generation took (and everything on failure) is closed. */
        for (size_t i = 0; i < n_fds; i++)
                fds[i] = safe_close(fds[i]);
        if (s) {
                /* map fds were moved into s; on failure it owns and closes them */
                snapshot_free(s);
        }
        return r;
}
