/* SPDX-License-Identifier: MIT */
/*
 * Owns the steering programs' BPF objects: one skeleton per reuseport group (each with its own
 * read-only group_id), the UDP program (bpf/steer.bpf.c) on a UDP group and the TCP program
 * (bpf/steer-tcp.bpf.c) on a TCP group, whose maps are all shared with the first skeleton
 * loaded, plus a userspace copy of the config entry, which only this file writes. See
 * steering.h and bpf/steer-api.h.
 */
#include <fcntl.h>
#include <sys/random.h>
#include <stdbool.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "flow-clock.h"
#include "macro.h"
#include "steering.h"
#include "steer.skel.h"
#include "steer_tcp.skel.h"

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

/* Indexes into steering_map_names and Steering.maps. */
enum {
        MAP_SOCKETS,
        MAP_CONFIG,
        MAP_SLOTS,
        MAP_FLOWS,
        MAP_STATS,
        MAP_SLOT_PACKETS,
        MAP_SLOT_TCP,
        MAP_QUIC_CONFIGS,
        MAP_FIRST_FLIGHTS,
        MAP_FLOW_SOURCES,
        MAP_PROBES,
};

/* One group's program: exactly one of udp and tcp is set. */
typedef struct SteeringGroup {
        struct steer *udp;
        struct steer_tcp *tcp;
} SteeringGroup;

struct Steering {
        unsigned flow_table_size;            /* entries: buckets * GRM_FLOW_WAYS */
        int adopted[STEERING_N_MAPS];        /* maps of an earlier grmd, or -EBADF */
        SteeringGroup groups[GRM_MAX_GROUPS]; /* groups[0]'s object owns the shared maps */
        int maps[STEERING_N_MAPS];           /* the shared maps' fds (owned by groups[0]) */
        unsigned n_groups;
        struct grm_config config;            /* what the config map holds */
        FlowClock *clock;                    /* the flow table's clock (flow-clock.h) */
        unsigned hz;                         /* its ticks per second */
        int n_cpus;
        uint64_t probe_token;                /* of this grmd's UDP programs (steer-api.h) */
};

static const char *const stat_names[_GRM_STAT_MAX] = {
        [GRM_STAT_WORKING] = "working",
        [GRM_STAT_FLOW_EXISTING] = "flow_existing",
        [GRM_STAT_FLOW_CREATED] = "flow_created",
        [GRM_STAT_FLOW_EXPIRED] = "flow_expired",
        [GRM_STAT_FLOW_STALE] = "flow_stale",
        [GRM_STAT_PENDING] = "pending",
        [GRM_STAT_NO_GENERATION] = "no_generation",
        [GRM_STAT_ERR_PARSE] = "error_parse",
        [GRM_STAT_ERR_FLOW_UPDATE] = "error_flow_update",
        [GRM_STAT_ERR_SELECT] = "error_select",
        [GRM_STAT_ERR_CONFIG] = "error_config",
        [GRM_STAT_TCP_WORKING] = "tcp_working",
        [GRM_STAT_TCP_PENDING] = "tcp_pending",
        [GRM_STAT_TCP_NEWEST_LIVE] = "tcp_newest_live",
        [GRM_STAT_TCP_NO_LISTENER] = "tcp_no_listener",
        [GRM_STAT_TCP_ERR_SELECT] = "tcp_error_select",
        [GRM_STAT_TCP_MIGRATED] = "tcp_migrated",
        [GRM_STAT_TCP_MIGRATED_SYN_RECV] = "tcp_migrated_syn_recv",
        [GRM_STAT_TCP_MIGRATE_KERNEL] = "tcp_migrate_kernel",
        [GRM_STAT_TCP_ERR_CONFIG] = "tcp_error_config",
        [GRM_STAT_NEWEST_LIVE] = "newest_live",
        [GRM_STAT_QUIC_CID_LIVE] = "quic_cid_live",
        [GRM_STAT_QUIC_CID_STALE] = "quic_cid_stale",
        [GRM_STAT_QUIC_FIRST_FLIGHT_EXISTING] = "quic_first_flight_existing",
        [GRM_STAT_QUIC_FIRST_FLIGHT_CREATED] = "quic_first_flight_created",
        [GRM_STAT_QUIC_VERSION_NEGOTIATION] = "quic_version_negotiation",
        [GRM_STAT_QUIC_UNKNOWN_VERSION] = "quic_unknown_version",
        [GRM_STAT_QUIC_MALFORMED] = "quic_malformed",
        [GRM_STAT_ERR_FIRST_FLIGHT_UPDATE] = "error_first_flight_update",
        [GRM_STAT_FLOW_UNTRACKED] = "flow_untracked",
        [GRM_STAT_FLOW_OVER_QUOTA] = "flow_over_quota",
        [GRM_STAT_PROBE] = "probe",
};

const char *const steering_map_names[STEERING_N_MAPS] = {
        "sockets", "config", "slots", "flows", "stats", "slot_packets", "slot_tcp", "quic_configs",
        "first_flights", "flow_sources", "probes",
};

unsigned steering_first_flight_table_size(unsigned flow_table_size) {
        /* Handshakes in flight are far fewer than flows; a full table only evicts the oldest. */
        return flow_table_size / 4 > 1024 ? flow_table_size / 4 : 1024;
}

/* An earlier grmd's map is one this program can use: what libbpf would create, save the sizes
 * grmd chooses (the two hash tables). Anything else (another layout of an older grm, or an fd
 * that is not even a map) is refused rather than half used. */
static int check_adopted_map(const struct bpf_map *map, int fd) {
        struct bpf_map_info info = {};
        __u32 len = sizeof(info);
        bool sized_by_grmd = streq(bpf_map__name(map), "flows") || streq(bpf_map__name(map), "first_flights");

        if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
                return -EPROTO;
        if (info.type != bpf_map__type(map) || info.key_size != bpf_map__key_size(map) ||
            info.value_size != bpf_map__value_size(map) || info.map_flags != bpf_map__map_flags(map) ||
            strncmp(info.name, bpf_map__name(map), sizeof(info.name) - 1) != 0 ||
            (!sized_by_grmd && info.max_entries != bpf_map__max_entries(map)))
                return -EPROTO;
        return 0;
}

const char *grm_stat_to_string(int stat) {
        if (stat < 0 || stat >= _GRM_STAT_MAX)
                return NULL;
        return stat_names[stat];
}

/* The tick counts the program compares against (steer-api.h): timeout, refresh interval, quota
 * window, in ticks of the flow clock (hz per second). The quota window is the timeout, at most an
 * hour, so that a source's entries of one window have mostly expired when the next window lets
 * it make as many again. */
static void set_flow_timeout(struct grm_config *c, unsigned hz, uint64_t timeout_ns) {
        uint64_t ticks = flow_clock_ticks(timeout_ns, hz), touch_ns, window_ns;

        c->flow_timeout_ns = timeout_ns;
        /* Ages are differences of 32-bit tick counts: past 2^31 ticks (24.8 days at HZ=1000) a
         * timeout is as good as infinite. */
        c->flow_timeout_ticks = ticks >= GRM_FLOW_AGE_FUTURE ? GRM_FLOW_AGE_FUTURE - 1 : (uint32_t) ticks;
        touch_ns = timeout_ns / 2 < GRM_FLOW_TOUCH_NS ? timeout_ns / 2 : GRM_FLOW_TOUCH_NS;
        ticks = flow_clock_ticks(touch_ns, hz);
        c->flow_touch_ticks = ticks > 0 ? (uint32_t) ticks : 1;
        window_ns = timeout_ns < 3600 * NSEC_PER_SEC ? timeout_ns : 3600 * NSEC_PER_SEC;
        ticks = flow_clock_ticks(window_ns, hz);
        c->flow_quota_window_ticks = ticks > 0 ? (uint32_t) ticks : 1;
}

int steering_new(unsigned flow_table_size, Steering **ret) {
        Steering *s;
        int n_cpus, r;

        if (flow_table_size == 0 || !ret)
                return -EINVAL;
        n_cpus = libbpf_num_possible_cpus();
        if (n_cpus <= 0)
                return n_cpus < 0 ? n_cpus : -EIO;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = flow_clock_new(&s->clock);
        if (r >= 0)
                r = flow_clock_hz(s->clock, &s->hz);
        if (r < 0) {
                flow_clock_free(s->clock);
                free(s);
                return r;
        }
        /* Whole buckets. */
        s->flow_table_size = (flow_table_size + GRM_FLOW_WAYS - 1) / GRM_FLOW_WAYS * GRM_FLOW_WAYS;
        s->n_cpus = n_cpus;
        /* The probe token only needs to be unguessable by whoever can send datagrams to the
         * group: never 0 (0 recognises nothing). */
        while (s->probe_token == 0)
                if (getrandom(&s->probe_token, sizeof(s->probe_token), 0) != sizeof(s->probe_token)) {
                        free(s);
                        return -EIO;
                }
        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                s->adopted[i] = s->maps[i] = -EBADF;
        s->config = (struct grm_config) {
                .working_slot = GRM_SLOT_NONE,
                .pending_slot = GRM_SLOT_NONE,
                .dissector = GRM_DISSECTOR_FLOW,
                .flow_buckets = s->flow_table_size / GRM_FLOW_WAYS,
                .maps_abi = GRM_MAPS_ABI_VERSION,
        };
        set_flow_timeout(&s->config, s->hz, 125 * NSEC_PER_SEC);
        *ret = s;
        return 0;
}

Steering *steering_free(Steering *s) {
        if (!s)
                return NULL;
        for (unsigned i = 0; i < s->n_groups; i++) {
                steer__destroy(s->groups[i].udp);
                steer_tcp__destroy(s->groups[i].tcp);
        }
        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                safe_close(s->adopted[i]);
        flow_clock_free(s->clock);
        free(s);
        return NULL;
}

unsigned steering_n_groups(const Steering *s) {
        return s->n_groups;
}

static int write_config(Steering *s) {
        __u32 zero = 0, slot = s->config.working_slot;
        struct grm_slot value = {};

        if (s->n_groups == 0)
                return 0; /* written when the maps are created */
        /* The working slot's socket count, beside it in the one value the program reads first.
         * 0 if the slot cannot be read: the program then reads the slot itself. */
        if (slot >= GRM_GEN_SLOTS || bpf_map_lookup_elem(s->maps[MAP_SLOTS], &slot, &value) < 0 || value.gen == 0)
                value.nsocks = 0;
        s->config.working_nsocks = value.nsocks;
        if (bpf_map_update_elem(s->maps[MAP_CONFIG], &zero, &s->config, BPF_ANY) < 0)
                return negative_errno();
        return 0;
}

/* Gives an object about to be loaded the shared maps: an earlier grmd's (adopted), or the first
 * group's; with neither, this object creates them, the flow table at its configured size. */
static int share_maps(Steering *s, struct bpf_object *obj) {
        bool adopting = s->n_groups == 0 && s->adopted[0] >= 0;
        struct bpf_map *map;
        int r;

        for (unsigned i = 0; i < STEERING_N_MAPS; i++) {
                int fd = adopting ? s->adopted[i] : s->maps[i];

                map = bpf_object__find_map_by_name(obj, steering_map_names[i]);
                if (!map)
                        return -ENOENT; /* every object declares every map (steer-maps.bpf.h) */
                if (fd >= 0 && adopting && (r = check_adopted_map(map, fd)) < 0)
                        return r;
                if (fd >= 0 && adopting && i == MAP_CONFIG) {
                        /* The same sizes can hold another meaning: the maps say which. */
                        struct grm_config cfg;
                        __u32 zero = 0;

                        if (bpf_map_lookup_elem(fd, &zero, &cfg) < 0 || cfg.maps_abi != GRM_MAPS_ABI_VERSION)
                                return -EPROTO;
                }
                if (fd >= 0)
                        r = bpf_map__reuse_fd(map, fd);
                else if (i == MAP_FLOWS)
                        r = bpf_map__set_max_entries(map, s->flow_table_size);
                else if (i == MAP_FIRST_FLIGHTS)
                        r = bpf_map__set_max_entries(map, steering_first_flight_table_size(s->flow_table_size));
                else
                        r = 0;
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Whether fd is a TCP socket (the TCP program) or not (the UDP program decides what it takes). */
static int socket_is_stream(int fd, bool *ret) {
        int type = 0;
        socklen_t len = sizeof(type);

        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
                return negative_errno();
        *ret = type == SOCK_STREAM;
        return 0;
}

int steering_add_group(Steering *s, int fd, unsigned *ret_group) {
        SteeringGroup g = {};
        struct bpf_object *obj;
        bool stream;
        int r, prog_fd;

        if (s->n_groups >= GRM_MAX_GROUPS)
                return -E2BIG;
        r = socket_is_stream(fd, &stream);
        if (r < 0)
                return r;

        if (stream) {
                g.tcp = steer_tcp__open();
                if (!g.tcp)
                        return negative_errno();
                g.tcp->rodata->group_id = s->n_groups;
                obj = g.tcp->obj;
        } else {
                g.udp = steer__open();
                if (!g.udp)
                        return negative_errno();
                g.udp->rodata->group_id = s->n_groups;
                g.udp->rodata->probe_token = s->probe_token;
                obj = g.udp->obj;
        }

        r = share_maps(s, obj);
        if (r < 0)
                goto fail;
        r = stream ? steer_tcp__load(g.tcp) : steer__load(g.udp);
        if (r < 0)
                goto fail;

        prog_fd = stream ? bpf_program__fd(g.tcp->progs.grm_steer_tcp) : bpf_program__fd(g.udp->progs.grm_steer);
        if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog_fd, sizeof(prog_fd)) < 0) {
                r = negative_errno();
                goto fail;
        }

        s->groups[s->n_groups] = g;
        if (ret_group)
                *ret_group = s->n_groups;
        s->n_groups++;
        if (s->n_groups > 1)
                return 0;

        /* The first object owns the maps now. */
        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                s->maps[i] = bpf_map__fd(bpf_object__find_map_by_name(obj, steering_map_names[i]));
        if (s->adopted[0] >= 0) {
                __u32 zero = 0;
                struct grm_config cfg;

                if (bpf_map_lookup_elem(s->maps[MAP_CONFIG], &zero, &cfg) < 0)
                        return negative_errno();
                s->config = cfg;
                s->flow_table_size = bpf_map__max_entries(bpf_object__find_map_by_name(obj, "flows"));
                /* The skeleton holds its own references now. */
                for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                        s->adopted[i] = safe_close(s->adopted[i]);
                return 0;
        }
        /* A new flow table: a fresh secret for its hash, which it keeps for its whole life. */
        if (getrandom(&s->config.flow_hash_seed, sizeof(s->config.flow_hash_seed), 0) !=
            sizeof(s->config.flow_hash_seed))
                return -EIO;
        return write_config(s);

fail:
        steer__destroy(g.udp);
        steer_tcp__destroy(g.tcp);
        return r;
}

int steering_set_settings(Steering *s, int dissector, uint64_t flow_timeout_usec) {
        if (dissector < 0 || dissector >= _GRM_DISSECTOR_MAX || flow_timeout_usec == 0)
                return -EINVAL;
        s->config.dissector = dissector;
        set_flow_timeout(&s->config, s->hz, flow_timeout_usec > UINT64_MAX / NSEC_PER_USEC
                                             ? UINT64_MAX
                                             : flow_timeout_usec * NSEC_PER_USEC);
        return write_config(s);
}

int steering_set_flow_quota(Steering *s, unsigned entries_per_source) {
        s->config.flow_source_quota = entries_per_source;
        return write_config(s);
}

unsigned steering_flow_table_size(const Steering *s) {
        return s->flow_table_size;
}

int steering_set_quic_config(Steering *s, unsigned config_id, const QuicLbPrefix *prefix) {
        struct grm_quic_config old = {}, entry;
        __u32 key = config_id;

        if (config_id > QUIC_LB_CONFIG_ID_MAX || prefix->len > GRM_QUIC_PREFIX_MAX)
                return -EINVAL;
        if (s->n_groups == 0)
                return -ENOENT;
        quic_lb_config_entry(prefix, &entry);
        if (bpf_map_lookup_elem(s->maps[MAP_QUIC_CONFIGS], &key, &old) < 0)
                return negative_errno();
        if (old.active && old.prefix_len == entry.prefix_len && old.prefix == entry.prefix)
                return 0;
        if (bpf_map_update_elem(s->maps[MAP_QUIC_CONFIGS], &key, &entry, BPF_ANY) < 0)
                return negative_errno();
        return old.active ? 1 : 0;
}

static uint32_t sock_index(unsigned group, unsigned slot, unsigned sock) {
        return (group * GRM_GEN_SLOTS + slot) * GRM_MAX_SOCKS_PER_GEN + sock;
}

int steering_register_socket(Steering *s, unsigned group, unsigned slot, unsigned sock, int fd) {
        uint32_t index;
        uint64_t value = (uint64_t) fd;

        if (group >= s->n_groups || slot >= GRM_GEN_SLOTS || sock >= GRM_MAX_SOCKS_PER_GEN || fd < 0)
                return -EINVAL;
        index = sock_index(group, slot, sock);
        if (bpf_map_update_elem(s->maps[MAP_SOCKETS], &index, &value, BPF_ANY) < 0)
                return negative_errno();
        return 0;
}

static int zero_percpu(Steering *s, int fd, uint32_t key, size_t value_size) {
        _cleanup_free_ uint8_t *values = calloc(s->n_cpus, value_size);

        if (!values)
                return -ENOMEM;
        if (bpf_map_update_elem(fd, &key, values, BPF_ANY) < 0)
                return negative_errno();
        return 0;
}

static int sum_percpu(Steering *s, int fd, uint32_t key, uint64_t *ret) {
        _cleanup_free_ uint64_t *values = calloc(s->n_cpus, sizeof(uint64_t));
        uint64_t sum = 0;

        if (!values)
                return -ENOMEM;
        if (bpf_map_lookup_elem(fd, &key, values) < 0)
                return negative_errno();
        for (int i = 0; i < s->n_cpus; i++)
                sum += values[i];
        *ret = sum;
        return 0;
}

int steering_slot_activate(Steering *s, unsigned slot, uint32_t gen, unsigned nsocks) {
        struct grm_slot value = { .gen = gen, .nsocks = nsocks };
        int r;

        if (slot >= GRM_GEN_SLOTS || gen == 0 || nsocks == 0 || nsocks > GRM_MAX_SOCKS_PER_GEN)
                return -EINVAL;
        if (s->n_groups == 0)
                return -ENOENT;
        r = zero_percpu(s, s->maps[MAP_SLOT_PACKETS], slot, sizeof(uint64_t));
        if (r >= 0)
                r = zero_percpu(s, s->maps[MAP_SLOT_TCP], slot, sizeof(struct grm_slot_tcp));
        if (r < 0)
                return r;
        if (bpf_map_update_elem(s->maps[MAP_SLOTS], &slot, &value, BPF_ANY) < 0)
                return negative_errno();
        /* (grmd activates a slot before it works; should it ever be the working one, the
         * config's copy of its socket count follows) */
        if (s->config.working_slot == slot)
                return write_config(s);
        return 0;
}

int steering_slot_release(Steering *s, unsigned slot) {
        struct grm_slot value = {};
        int r = 0, sockets_fd;

        if (slot >= GRM_GEN_SLOTS)
                return -EINVAL;
        if (s->n_groups == 0)
                return 0;

        if (s->config.working_slot == slot || s->config.pending_slot == slot) {
                if (s->config.working_slot == slot)
                        s->config.working_slot = GRM_SLOT_NONE;
                if (s->config.pending_slot == slot)
                        s->config.pending_slot = GRM_SLOT_NONE;
                r = write_config(s);
        }

        if (bpf_map_update_elem(s->maps[MAP_SLOTS], &slot, &value, BPF_ANY) < 0 && r == 0)
                r = negative_errno();

        sockets_fd = s->maps[MAP_SOCKETS];
        for (unsigned g = 0; g < s->n_groups; g++)
                for (unsigned i = 0; i < GRM_MAX_SOCKS_PER_GEN; i++) {
                        uint32_t index = sock_index(g, slot, i);
                        if (bpf_map_delete_elem(sockets_fd, &index) < 0 && errno != ENOENT && r == 0)
                                r = negative_errno();
                }
        return r;
}

int steering_set_working(Steering *s, uint32_t working_slot, uint32_t pending_slot) {
        struct grm_config old = s->config;
        int r;

        if ((working_slot != GRM_SLOT_NONE && working_slot >= GRM_GEN_SLOTS) ||
            (pending_slot != GRM_SLOT_NONE && pending_slot >= GRM_GEN_SLOTS))
                return -EINVAL;
        s->config.working_slot = working_slot;
        s->config.pending_slot = pending_slot;
        r = write_config(s);
        if (r < 0)
                s->config = old;
        return r;
}

int steering_get_stats(Steering *s, uint64_t ret[_GRM_STAT_MAX]) {
        int r;

        memset(ret, 0, sizeof(uint64_t) * _GRM_STAT_MAX);
        if (s->n_groups == 0)
                return 0;
        for (uint32_t i = 0; i < _GRM_STAT_MAX; i++) {
                r = sum_percpu(s, s->maps[MAP_STATS], i, &ret[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

int steering_get_slot_tcp(Steering *s, unsigned slot, uint64_t *ret_connections, uint64_t *ret_migrated) {
        _cleanup_free_ struct grm_slot_tcp *values = NULL;

        if (slot >= GRM_GEN_SLOTS)
                return -EINVAL;
        *ret_connections = *ret_migrated = 0;
        if (s->n_groups == 0)
                return 0;
        values = calloc(s->n_cpus, sizeof(*values));
        if (!values)
                return -ENOMEM;
        if (bpf_map_lookup_elem(s->maps[MAP_SLOT_TCP], &slot, values) < 0)
                return negative_errno();
        for (int i = 0; i < s->n_cpus; i++) {
                *ret_connections += values[i].connections;
                *ret_migrated += values[i].migrated;
        }
        return 0;
}

int steering_get_slot_packets(Steering *s, unsigned slot, uint64_t *ret) {
        if (slot >= GRM_GEN_SLOTS)
                return -EINVAL;
        *ret = 0;
        if (s->n_groups == 0)
                return 0;
        return sum_percpu(s, s->maps[MAP_SLOT_PACKETS], slot, ret);
}

int steering_get_map_fds(Steering *s, int ret_fds[STEERING_N_MAPS]) {
        if (s->n_groups == 0)
                return -ENOENT;
        for (unsigned i = 0; i < STEERING_N_MAPS; i++)
                ret_fds[i] = s->maps[i];
        return 0;
}

int steering_adopt_maps(Steering *s, const int fds[STEERING_N_MAPS]) {
        int copies[STEERING_N_MAPS];

        if (s->n_groups > 0)
                return -EBUSY;
        for (unsigned i = 0; i < STEERING_N_MAPS; i++) {
                copies[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                if (copies[i] < 0) {
                        int r = negative_errno();
                        while (i > 0)
                                safe_close(copies[--i]);
                        return r;
                }
        }
        for (unsigned i = 0; i < STEERING_N_MAPS; i++) {
                safe_close(s->adopted[i]);
                s->adopted[i] = copies[i];
        }
        return 0;
}

void steering_get_working(Steering *s, uint32_t *ret_working, uint32_t *ret_pending) {
        *ret_working = s->config.working_slot;
        *ret_pending = s->config.pending_slot;
}

int steering_count_flows(Steering *s, uint64_t *ret_counts, uint64_t *ret_total) {
        enum { BATCH = 1024 };
        _cleanup_free_ __u32 *keys = NULL;
        _cleanup_free_ struct grm_flow_entry *entries = NULL;
        struct grm_slot slot_gens[GRM_GEN_SLOTS];
        uint64_t total = 0;
        uint32_t now, out_batch = 0;
        bool first = true;
        int r;

        for (unsigned g = 0; g < s->n_groups; g++)
                ret_counts[g] = 0;
        if (ret_total)
                *ret_total = 0;
        if (s->n_groups == 0)
                return 0;

        keys = calloc(BATCH, sizeof(*keys));
        entries = calloc(BATCH, sizeof(*entries));
        if (!keys || !entries)
                return -ENOMEM;
        for (uint32_t i = 0; i < GRM_GEN_SLOTS; i++)
                if (bpf_map_lookup_elem(s->maps[MAP_SLOTS], &i, &slot_gens[i]) < 0)
                        return negative_errno();

        /* The program stamps entries with the flow clock. */
        r = flow_clock_now(s->clock, &now);
        if (r < 0)
                return r;

        for (;;) {
                __u32 count = BATCH;

                r = bpf_map_lookup_batch(s->maps[MAP_FLOWS], first ? NULL : &out_batch, &out_batch, keys,
                                         entries, &count, NULL);
                if (r < 0 && errno != ENOENT)
                        return negative_errno();
                for (__u32 i = 0; i < count; i++) {
                        const struct grm_flow_entry *e = &entries[i];
                        unsigned group = e->index / (GRM_GEN_SLOTS * GRM_MAX_SOCKS_PER_GEN);
                        unsigned slot = (e->index / GRM_MAX_SOCKS_PER_GEN) % GRM_GEN_SLOTS;

                        if (e->tag == 0)
                                continue;
                        total++;
                        uint32_t age = now - e->seen;

                        /* (a stamp newer than this walk's clock read is just seen, as in the program) */
                        if ((age <= s->config.flow_timeout_ticks || age >= GRM_FLOW_AGE_FUTURE) &&
                            slot_gens[slot].gen == e->gen && group < s->n_groups)
                                ret_counts[group]++;
                }
                if (r < 0) /* ENOENT: that was the last batch */
                        break;
                first = false;
        }
        if (ret_total)
                *ret_total = total;
        return 0;
}

bool steering_group_is_udp(const Steering *s, unsigned group) {
        return group < s->n_groups && s->groups[group].udp;
}

int steering_reattach(Steering *s, unsigned group, int fd) {
        int prog_fd;

        if (group >= s->n_groups)
                return -EINVAL;
        prog_fd = s->groups[group].udp ? bpf_program__fd(s->groups[group].udp->progs.grm_steer)
                                       : bpf_program__fd(s->groups[group].tcp->progs.grm_steer_tcp);
        if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog_fd, sizeof(prog_fd)) < 0)
                return negative_errno();
        return 0;
}

int steering_probe_payload(const Steering *s, uint64_t nonce, struct grm_probe *ret) {
        *ret = (struct grm_probe) { .token = s->probe_token, .nonce = nonce };
        return 0;
}

int steering_probe_seen(Steering *s, unsigned group, uint64_t *ret_nonce) {
        __u32 key = group;

        if (group >= s->n_groups)
                return -EINVAL;
        if (bpf_map_lookup_elem(s->maps[MAP_PROBES], &key, ret_nonce) < 0)
                return negative_errno();
        return 0;
}
