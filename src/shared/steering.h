/* SPDX-License-Identifier: MIT */
/*
 * The userspace side of the steering program: loads bpf/steer.bpf.c (one program instance per
 * reuseport group, all sharing one set of maps), attaches it to each group and writes the maps.
 * steering.c is the only file that includes the generated skeleton. Library code: does not log.
 *
 * Slots: a generation occupies one slot (0..GRM_GEN_SLOTS-1) in every group, with the same
 * number of sockets in each. The caller chooses slots; a slot is reused only after
 * steering_slot_release().
 */
#pragma once

#include <linux/types.h>
#include <stdint.h>

#include "quic-lb.h"
#include "steer-api.h"

typedef struct Steering Steering;

/**
 * steering_new() - prepare an empty steering object; BPF is loaded with the first group.
 * @flow_table_size: entries in the flow table, rounded up to whole buckets of GRM_FLOW_WAYS
 *                   (fixed for the lifetime of the maps)
 * @ret: the new object
 * Return: 0, -EINVAL for a size of 0, -ENOMEM.
 */
int steering_new(unsigned flow_table_size, Steering **ret);
Steering *steering_free(Steering *s);
static inline void steering_freep(Steering **s) {
        steering_free(*s);
}

/**
 * steering_add_group() - load a program instance for a new group and attach it.
 * @fd: a bound SO_REUSEPORT UDP socket, or a listening SO_REUSEPORT TCP socket, of the group (not
 *      taken over; the caller keeps it open). A TCP group gets the TCP program, which also
 *      migrates the requests queued on a closing listener (sk_reuseport/migrate).
 * @ret_group: the group's index, used in later calls
 * Return: 0; -E2BIG past GRM_MAX_GROUPS; -errno from loading or SO_ATTACH_REUSEPORT_EBPF.
 */
int steering_add_group(Steering *s, int fd, unsigned *ret_group);
unsigned steering_n_groups(const Steering *s);

/* Entries of the quic dissector's first-flight table for a flow table of this size. */
unsigned steering_first_flight_table_size(unsigned flow_table_size);

/**
 * steering_set_quic_config() - the prefix of the connection IDs that carry a config id.
 * @config_id: 0..QUIC_LB_CONFIG_ID_MAX, as given to new generations in GRM_QUIC_CONFIG_ID
 * Generations keep the config id they were started with; an entry is only replaced when its
 * prefix changes, and then the connection IDs of older generations with that config id stop
 * being recognised (they fall back to the flow table).
 * Return: 0 (entry new or unchanged), 1 (an active entry got another prefix), -EINVAL,
 * -ENOENT before the first group, -errno from the map update.
 */
int steering_set_quic_config(Steering *s, unsigned config_id, const QuicLbPrefix *prefix);

/* Dissector (enum grm_dissector) and flow timeout; applied at once to every group. */
int steering_set_settings(Steering *s, int dissector, uint64_t flow_timeout_usec);

/* New flow entries one source (IPv4 address, IPv6 /64) may make per quota window (steer-api.h);
 * 0: no quota. Applied at once. */
int steering_set_flow_quota(Steering *s, unsigned entries_per_source);

/* Entries the flow table holds (its buckets times GRM_FLOW_WAYS). */
unsigned steering_flow_table_size(const Steering *s);

/**
 * steering_register_socket() - put a generation's socket in the socket array.
 * @fd: bound to the group's address with SO_REUSEPORT (so already a member of the group; a TCP
 *      socket must be listening already); the array holds no reference: when the socket is
 *      closed it leaves the array by itself.
 */
int steering_register_socket(Steering *s, unsigned group, unsigned slot, unsigned sock, int fd);

/* Marks a slot as holding generation gen with nsocks sockets per group, and zeroes its packet
 * and TCP counters. Call after registering its sockets, before making it pending or working. */
int steering_slot_activate(Steering *s, unsigned slot, uint32_t gen, unsigned nsocks);

/* Frees a slot: its sockets leave the array, flows that pointed at it become stale, and it
 * stops being working or pending. */
int steering_slot_release(Steering *s, unsigned slot);

/**
 * steering_set_working() - one map update that says which slot gets new flows.
 * @working_slot: slot of the working generation, or GRM_SLOT_NONE
 * @pending_slot: slot of the starting generation that queues packets while nothing works, or
 *                GRM_SLOT_NONE
 */
int steering_set_working(Steering *s, uint32_t working_slot, uint32_t pending_slot);

/* Verdict counters summed over CPUs. */
int steering_get_stats(Steering *s, uint64_t ret[_GRM_STAT_MAX]);
/* TCP connections steered to a slot's listeners, and requests migrated into them from closing
 * listeners, since steering_slot_activate(), summed over CPUs. */
int steering_get_slot_tcp(Steering *s, unsigned slot, uint64_t *ret_connections, uint64_t *ret_migrated);
/* Packets steered to a slot since steering_slot_activate(), summed over CPUs. */
int steering_get_slot_packets(Steering *s, unsigned slot, uint64_t *ret);
/* Flow entries per group that are live (not expired, generation still in its slot; ret_counts
 * has steering_n_groups() elements), and the number of entries in use (live or not yet reused).
 * Walks the table: for status, not hot paths. */
int steering_count_flows(Steering *s, uint64_t *ret_counts, uint64_t *ret_total);

const char *grm_stat_to_string(int stat);

/*
 * Handing the maps over to the next grmd (after a crash or an exec of a new binary): the maps are
 * the state, the programs are loaded again and re-attached (an atomic replacement on each group).
 */
#define STEERING_N_MAPS 11
/* Names of the shared maps, in the order of the fd arrays below. */
extern const char *const steering_map_names[STEERING_N_MAPS];

/* The shared maps' fds (owned by s; valid while it lives). -ENOENT before the first group. */
int steering_get_map_fds(Steering *s, int ret_fds[STEERING_N_MAPS]);

/**
 * steering_adopt_maps() - use maps created by an earlier grmd instead of new ones.
 * @fds: the maps, in steering_map_names order; duplicated, the caller keeps its fds
 * Call before the first steering_add_group(). The flow table keeps its size and hash secret,
 * whatever steering_new() was given; the working and pending slots, dissector, timeout and quota
 * are read back from the config map when the first group is added.
 * Return: 0, -EBUSY if groups exist already, -errno from dup. A map that is not what this
 * program uses (type, key and value sizes, name, fixed sizes) makes steering_add_group() fail
 * with -EPROTO.
 */
int steering_adopt_maps(Steering *s, const int fds[STEERING_N_MAPS]);

/* The working and pending slots as the config map has them. */
void steering_get_working(Steering *s, uint32_t *ret_working, uint32_t *ret_pending);

/*
 * Verifying the steering (there is no system call that says which program a reuseport group
 * runs): grmd sends each UDP group a probe datagram (struct grm_probe, built here with this
 * object's token and a fresh nonce); only grm's program records the nonce (probes map) and
 * drops it. A group whose program does not record it runs something else (or nothing), and
 * steering_reattach() puts grm's back (an atomic replacement).
 */
bool steering_group_is_udp(const Steering *s, unsigned group);
/* SO_ATTACH_REUSEPORT_EBPF of the group's program on fd (any socket of the group). */
int steering_reattach(Steering *s, unsigned group, int fd);
int steering_probe_payload(const Steering *s, uint64_t nonce, struct grm_probe *ret);
/* The nonce of the last probe the group's program saw (0: none yet). */
int steering_probe_seen(Steering *s, unsigned group, uint64_t *ret_nonce);
