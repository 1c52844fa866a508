/* SPDX-License-Identifier: MIT */
/*
 * grmd's state: one Manager owns the event loop, the listening groups, the steering maps, every
 * generation, the notify socket and the control server. The modules of src/daemon each own one
 * part of it:
 *
 *   manager.c     the event loop and the sets, STATUS=, journal events, stop signals
 *   restart.c     restarts (check, spawn, flip, drain, roll back), crash replacement, stop
 *   takeover.c    start-up (sockets, steering, a previous grmd's snapshot) and reexec
 *   snapshot.c    the hand-over format: the only writer and reader of a snapshot
 *   vault.c       where snapshots are kept across grmd's death (the fd store)
 *   generation.c  one application instance: its sockets, its process, its timers
 *   group.c       the listening addresses and fresh per-generation sockets cloned from them
 *   notify.c      the NOTIFY_SOCKET every instance reports to
 *   ctl-server.c  the control socket grmctl talks to
 *   portwatch.c   the socket census: who else is bound to the managed ports
 *
 * Invariants: at most one restart runs at a time (m->restart); at most one generation is
 * working (m->working) and the steering config names exactly its slot; a generation's slot is
 * released only once its process has been reaped or it never had sockets in the group.
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "census.h"
#include "config.h"
#include "ctl-protocol.h"
#include "gen-state.h"
#include "macro.h"
#include "ratelimit.h"
#include "sock-diag.h"
#include "steering.h"

typedef struct Manager Manager;
typedef struct Generation Generation;
typedef struct CtlConnection CtlConnection;

typedef struct Group {
        unsigned index;                  /* steering group index */
        int fd;                          /* the original socket, from systemd or --listen */
        int type;                        /* SOCK_DGRAM (UDP) or SOCK_STREAM (a TCP listener) */
        char *name;                      /* LISTEN_FDNAMES name, passed on to instances */
        char *address;                   /* printable, "udp:127.0.0.1:9000", "tcp:[::1]:53" */
        struct sockaddr_storage sa;      /* what the original socket is bound to */
        socklen_t sa_len;
        bool stored;                     /* opened by grmd (--listen), kept in the fd store */
        bool has_head;                   /* head_fd is open (group_renew_head()) */
        int head_fd;                     /* IPv4 UDP: grmd's socket bound after the newest
                                          * generation's, first in the kernel's lookup order */
} Group;

struct Generation {
        Manager *manager;
        uint32_t gen;
        unsigned slot;
        bool slot_held;                  /* its slot is in use in the steering maps */
        GenState state;
        pid_t pid;
        int pidfd;
        sd_event_source *child_source;
        sd_event_source *timer;          /* start timeout, or drain deadline */
        int *fds;                        /* n_groups * sockets_per_group, group-major */
        unsigned n_fds;
        unsigned sockets_per_group;
        uint64_t spawned_usec;           /* CLOCK_MONOTONIC */
        uint64_t ready_usec;             /* 0 until READY=1 */
        uint64_t ready_seen_usec;        /* when the READY=1 datagram was read */
        uint64_t flipped_usec;           /* when the working generation moved to it */
        uint64_t drain_deadline_usec;    /* 0 unless draining */
        uint64_t exited_usec;
        uint64_t packets_at_exit;        /* packet count kept after the slot is released */
        uint64_t tcp_connections_at_exit; /* TCP counts kept after the slot is released */
        uint64_t tcp_migrated_at_exit;
        char *status;                    /* last STATUS= */
        char *failure;                   /* why it failed or exited, for status and replies */
        char *bind_error;                /* last failed bind() libgrm-bind.so reported, "bind(ADDR) failed: ..." */
        uint64_t *cookies;               /* SO_COOKIE of each of fds[] (they stay valid once the fds are closed) */
        SockWatch *watch;                /* UDP sockets: is each one read? (sockwatch.c) */
        unsigned n_unread;               /* sockets the watch calls unread now */
        uint64_t queued_bytes;           /* over its sockets, last sample */
        uint64_t socket_drops;           /* over its sockets, last sample */
        uint64_t unread_warned_usec;     /* last journal warning about an unread socket */
        bool killed;                     /* grmd sent SIGKILL */
        char *cgroup_path;               /* its cgroup (fs path), NULL: process group only */
        sd_event_source *cgroup_release_source; /* waits for the killed cgroup to empty */
        uint64_t cgroup_release_deadline_usec;
        uint64_t cpu_usec;               /* cpu.stat usage_usec, last read */
        uint64_t memory_bytes;           /* memory.current, last read (if have_memory) */
        bool have_memory;
        Generation *next;                /* Manager.generations, newest first */
};

/* The snapshot format: 1 had no maps ABI version and no standby state; 2 has both. */
#define SNAPSHOT_FORMAT_VERSION 2U

typedef struct SnapshotGroup {
        uint64_t index;
        char *address;
        int head_fd;                     /* its head socket (group.c), or -EBADF */
} SnapshotGroup;

/* A snapshot as read back (snapshot.c): what a previous grmd handed over. */
typedef struct Snapshot {
        uint64_t version;                /* SNAPSHOT_FORMAT_VERSION of the grmd that wrote it */
        uint64_t maps_abi;               /* GRM_MAPS_ABI_VERSION of its maps; 0: not said (format 1) */
        uint64_t seq;
        uint32_t last_gen;
        unsigned crash_count;
        uint64_t restarts_done, restarts_failed;
        SnapshotGroup *groups;
        size_t n_groups;
        Generation *generations;         /* with their pidfds; manager not set; newest first */
        int map_fds[STEERING_N_MAPS];    /* in steering_map_names order */
} Snapshot;

#define VAULT_PREFIX "grm-vault-"
#define NOTIFY_FDNAME "grm-notify"
#define LISTEN_FDNAME "grm-listen"

typedef enum SteeringState {
        STEERING_UNKNOWN,                /* not probed yet */
        STEERING_GRM,                    /* the last probe was answered by grm's program */
        STEERING_FOREIGN,                /* it was not: grm's program was attached again */
        STEERING_UNVERIFIED,             /* cannot be probed (TCP, bound to a device) */
} SteeringState;

/* A socket the port watch reports (portwatch.c). */
typedef struct CensusFinding {
        CensusSocket sock;
        CensusVerdict verdict;           /* CENSUS_OUTSIDE or CENSUS_CONNECTED_REUSEPORT */
        unsigned group;                  /* index in Manager.groups of the group it concerns */
        unsigned scans;                  /* consecutive scans that found it so */
        bool reported;                   /* shown and logged: outside at once, connected-reuseport
                                          * from its second scan (portwatch.c) */
        bool looked_up;                  /* its owner was looked for in /proc */
        pid_t pid;                       /* lowest pid holding it, 0: none found */
        char comm[16];
        uint32_t gen;                    /* the generation it was handed to (by cookie or pid), 0: none */
        bool logged;                     /* its journal message was sent (or suppressed) */
} CensusFinding;

typedef struct PortWatch {
        Census *census;                  /* NULL: unavailable (or no groups) */
        char *unavailable;               /* why there is no census */
        sd_event_source *timer;
        uint64_t group_cookie[GRM_MAX_GROUPS];   /* SO_COOKIE of each group's original socket */
        CensusFinding *findings;         /* the last scan's, reported or not yet */
        size_t n_findings;
        unsigned outside[GRM_MAX_GROUPS];        /* last scan, per group */
        unsigned connected_reuseport[GRM_MAX_GROUPS];
        unsigned connected[GRM_MAX_GROUPS];      /* connected UDP sockets on the address (per-client) */
        uint64_t scans, scan_errors;
        int last_error;                  /* of the last scan, 0: it worked */
        uint64_t last_scan_usec, last_scan_duration_usec;
        RateLimit log_limit;
} PortWatch;

typedef enum CgroupMode {
        CGROUP_MODE_UNKNOWN,             /* not set up yet */
        CGROUP_MODE_CGROUP,              /* every generation in a cgroup of its own */
        CGROUP_MODE_PROCESS_GROUP,       /* no cgroup could be had: process groups only */
} CgroupMode;

typedef struct Restart {
        GrmOutcome outcome;
        bool automatic;                  /* first start or crash replacement: no requester */
        uint64_t started_usec;
        uint64_t start_timeout_usec;     /* for this restart */
        Config config;                   /* the settings this restart applies */
        pid_t check_pid;
        int check_pidfd;
        sd_event_source *check_source;
        Generation *gen;                 /* the new generation once spawned */
        Generation *previous;            /* while settling: the one standing by, or NULL */
        uint64_t settle_deadline_usec;   /* while settling: when the restart is done */
        CtlConnection *requester;        /* gets progress and the result; may go away */
} Restart;

/* Everything restart.c does to the kernel, the event loop and the clock. grmd runs with
 * restart_ops_default; tests/unit/test-restart.c with stand-ins that record the calls and let
 * the test fire the events (restart_on_timer(), restart_on_respawn(), restart_on_check_exit()). */
typedef struct RestartOps {
        uint64_t (*now)(Manager *m);                            /* CLOCK_MONOTONIC, usec */
        int (*spawn)(Manager *m, uint32_t gen, unsigned slot, const Config *config,
                     uint64_t start_deadline_usec, Generation **ret); /* adds it to m->generations */
        int (*set_working)(Manager *m, uint32_t working_slot, uint32_t pending_slot);
        int (*set_settings)(Manager *m, const Config *config);  /* dissector, flow timeout */
        int (*signal)(Generation *g, int sig, bool whole_group);
        void (*kill_group)(Generation *g);                      /* what an exited one left behind */
        void (*release_slot)(Generation *g);
        int (*set_timer)(Generation *g, uint64_t usec);         /* absolute; USEC_INFINITY: off */
        int (*arm_respawn)(Manager *m, uint64_t delay_usec);    /* USEC_INFINITY: cancel */
        int (*start_check)(Manager *m, Restart *r);             /* ExecCheck= */
        void (*discard_queued)(Manager *m);                     /* the original sockets' queues */
        void (*progress)(CtlConnection *c, const char *step, const char *message);
        void (*result)(CtlConnection *c, GrmOutcome outcome, Generation *g, const char *message);
} RestartOps;

extern const RestartOps restart_ops_default;

struct Manager {
        sd_event *event;

        char *config_path;               /* NULL: command line only */
        Config cli;                      /* what the command line set */
        Config config;                   /* in effect: file + command line + defaults */

        Group *groups;
        unsigned n_groups;
        Steering *steering;

        int notify_fd;
        char *notify_socket;             /* NOTIFY_SOCKET value for instances */
        sd_event_source *notify_source;
        uint64_t notify_ignored;         /* datagrams from unknown pids or without credentials */
        uint64_t notify_malformed;
        uint64_t notify_oversized;       /* datagrams over NOTIFY_MESSAGE_MAX from an instance */
        RateLimit notify_log_limit;      /* warnings about the notify socket */

        int ctl_fd;
        char *ctl_path;
        sd_event_source *ctl_source;
        CtlConnection *connections;
        unsigned n_connections;
        uint64_t ctl_refused;            /* connections with the wrong uid */
        uint64_t ctl_malformed;          /* requests that did not parse */
        RateLimit ctl_log_limit;         /* warnings about control connections */

        Generation *generations;         /* newest first; exited ones kept for a while */
        Generation *working;
        uint32_t last_gen;

        const RestartOps *restart_ops;
        Restart *restart;
        unsigned crash_count;
        bool respawn_armed;
        sd_event_source *respawn_timer;
        sd_event_source *sockwatch_timer; /* sockwatch.c: receive queues, every second */
        sd_event_source *status_timer;   /* refreshes STATUS= while a drain deadline counts down */
        PortWatch portwatch;             /* portwatch.c: the socket census of the managed ports */

        int vault_r, vault_w;            /* the state vault (vault.c) */
        char *vault_name;
        bool vault_stored;
        uint64_t vault_seq;
        char **old_vaults;               /* names of inherited vaults, removed once ours has a snapshot */
        bool vault_keep_inherited;       /* a snapshot could not be copied: never remove them */

        char spawn_error[256];           /* generation.c: why the last spawn failed, for the
                                          * requester; "" if it has no more to say than the log */
        bool verify_started;             /* verify.c */
        bool verify_waiting;             /* probes sent, not all answered yet */
        sd_event_source *verify_timer;   /* floating: goes with the event loop */
        int probe_fd4, probe_fd6;        /* owned by floating io sources */
        uint64_t probe_nonce[GRM_MAX_GROUPS];    /* unanswered probe per group, 0: none */
        unsigned probe_tries[GRM_MAX_GROUPS];
        SteeringState steering_state[GRM_MAX_GROUPS];
        uint64_t steering_foreign[GRM_MAX_GROUPS]; /* times a group's program was found not grm's */
        uint64_t probe_bypass_logged_usec[GRM_MAX_GROUPS]; /* last "probe taken by a socket outside" */

        CgroupMode cgroup_mode;          /* cgroup.c */
        char cgroup_base[PATH_MAX];      /* cgroup path generations live under ("" until set) */
        char cgroup_fs_base[PATH_MAX];   /* the same in the mounted hierarchy */
        bool cgroup_base_created;        /* grmd made it (not a systemd-delegated unit cgroup) */

        char *exe_path;                  /* for grmctl reexec */
        char **argv;
        bool reexec_pending;

        char *held_reason;               /* a snapshot could not be taken over: why (takeover.c) */
        bool stopping;
        uint64_t started_usec;
        uint64_t restarts_done, restarts_failed;
        uint64_t last_flip_latency_usec; /* READY=1 read -> working flipped, last restart */
};

/* manager.c */
int manager_new(Manager **ret);
Manager *manager_free(Manager *m);
static inline void manager_freep(Manager **m) {
        manager_free(*m);
}
int manager_load_config(Manager *m, Config *ret, char **ret_error);
int manager_run(Manager *m);
int manager_watch_stop_signals(Manager *m);
/* On a clean exit: nothing of ours stays in systemd's fd store. */
void manager_clear_fd_store(Manager *m);
/* On a clean exit: the groups' sockets without grm's steering program, as systemd made them, so
 * that the next datagram reaches the socket unit's socket and starts the service again. */
void manager_release_groups(Manager *m);
/* After every change of state: systemd's STATUS= and the vault snapshot. */
void manager_state_changed(Manager *m);
/* Drops exited generations beyond the history length. */
void manager_prune_history(Manager *m);
/* While stopping: exits the event loop once no generation is left. */
void manager_maybe_exit(Manager *m);
void manager_log_event(int level, const char *message_id, const char *event, const Generation *g,
                       const char *outcome, const char *format, ...) _printf_(6, 7);
uint64_t now_usec(void);
void test_kill_point(const char *name);

/* MESSAGE_IDs of manager_log_event(), documented in grm.catalog. */
#define MESSAGE_RESTART_STARTED   "e02847267dd24f24b7cc53ed0733d704"
#define MESSAGE_RESTART_SUCCEEDED "f0fb1bdc867041669f48f280fd01070c"
#define MESSAGE_RESTART_FAILED    "9262e7c43df440eebce3ec6066059415"
#define MESSAGE_INSTANCE_CRASHED  "99863a12eb304635a78960da62e572a6"
#define MESSAGE_DRAIN_DEADLINE    "a5b3785c225944ad8e4328da1d09559b"
#define MESSAGE_STATE_RECOVERED   "427b2480b0a54e4fbae35ece44cd05d1"
#define MESSAGE_STEERING_FOREIGN  "ec61c24e1d1847ec9052fe841030e812" /* verify.c */
#define MESSAGE_TAKEOVER_REFUSED  "98fcce0921124caaaa03edcd40debc6a"
#define MESSAGE_CENSUS_SOCKET     "86f430682653448d98ffe335d99bf54f" /* portwatch.c */

/* restart.c */
/* Starts a restart on behalf of a control connection (NULL: automatic). Replies busy itself. */
int restart_request(Manager *m, CtlConnection *c, uint64_t timeout_usec);
void restart_on_ready(Manager *m, Generation *g);
void restart_on_failed(Manager *m, Generation *g, GrmOutcome outcome, const char *why);
void restart_on_exited(Manager *m, Generation *g, const char *why);
void restart_on_deadline(Manager *m, Generation *g);
/* g's timer: start timeout, settle time or drain deadline, by its state. */
void restart_on_timer(Manager *m, Generation *g);
/* The crash-replacement back-off ended. */
void restart_on_respawn(Manager *m);
/* ExecCheck= ended: code is CLD_EXITED (status: exit status) or CLD_KILLED/CLD_DUMPED (signal). */
void restart_on_check_exit(Manager *m, int code, int status);
/* Stop: cancel the restart under way, drain every generation. */
void restart_stop(Manager *m);
/* Frees the restart under way without a result (grmd is going away). */
void restart_abandon(Manager *m);
/* Takeover: the maps say g works (the previous grmd died between the flip and its snapshot). */
void restart_adopt_flip(Manager *m, Generation *g);
/* Takeover: g was starting under the previous grmd; its restart goes on without a requester. */
int restart_adopt(Manager *m, Generation *g);
/* Takeover: generations that stood by for a restart the previous grmd did not finish. */
void restart_adopt_standby(Manager *m);

/* takeover.c */
int takeover_startup(Manager *m);
/* grmctl reexec: only returns on failure. */
int takeover_reexec(Manager *m);

/* snapshot.c */
/* Writes the manager's state as one snapshot numbered seq into a new buffer; the fds to send with
 * it (the maps, then pidfds; borrowed, not duplicated) into fds (room for max_fds). */
int snapshot_write(Manager *m, uint64_t seq, char **ret_buf, size_t *ret_len, int *fds,
                   size_t max_fds, size_t *ret_n_fds);
/* Parses one snapshot. Takes ownership of all n_fds fds, whatever it returns. */
int snapshot_read(const void *buf, size_t len, int *fds, size_t n_fds, Snapshot **ret);
/* Whether this grmd can adopt s (its format and maps ABI versions): 0, or -EPROTONOSUPPORT with
 * the reason in why. */
int snapshot_check(const Snapshot *s, char *why, size_t size);
/* The sequence number of a snapshot, from its first bytes (len of them at head). */
int snapshot_peek_seq(const char *head, size_t len, uint64_t *ret);
Snapshot *snapshot_free(Snapshot *s);

/* group.c */
int group_from_fd(int fd, const char *name, Group *ret);
int group_listen(const char *address, uint64_t receive_buffer, Group *ret);
void group_done(Group *g);
/* Takes the steering program off the group's sockets (grmd's clean exit). */
int group_detach_steering(const Group *g);
/* Whether the group is the one "udp:..."/"tcp:..." names (same transport and address). */
bool group_has_address(const Group *g, const char *address);
/* UDP: drops what is queued on the original socket. TCP: hands the connections queued on the
 * original listener to the working generation. Returns how many there were. */
int group_discard_queued(const Group *g);
/* A TCP group's listen backlog, as the original socket has it. -EOPNOTSUPP for UDP. */
int group_backlog(const Group *g, unsigned *ret);
/**
 * group_open_socket() - a fresh socket bound to the group's address, in the group.
 * @census: for UDP, checks after the bind that the socket joined the original's reuseport group
 *          (a connected per-client socket that still has SO_REUSEPORT would have it join a new
 *          one) and binds again if not; NULL: not checked
 * @receive_buffer: bytes of SO_RCVBUF, 0: as the original
 * @ret_rebinds: how many sockets landed outside the group and were bound again (may be NULL)
 * @ret_fd: the socket, with the original's options and owner (a TCP one also listening, with
 *          the original's backlog)
 * Return: 0 (in the group), 1 (bound, but the census could not check it), -EXDEV (outside the
 * group 7 times in a row, over about 31 ms), -EPERM from fchown() if
 * grmd cannot give it the original's owner, -errno.
 */
int group_open_socket(const Group *g, Census *census, uint64_t receive_buffer, unsigned *ret_rebinds, int *ret_fd);
/* An IPv4 UDP group's head socket: bound after the newest generation's, never selected
 * (group.c says why). */
#define GROUP_HEAD_RECEIVE_BUFFER 4096
int group_renew_head(Group *g, Census *census);
void group_drop_head(Group *g);
/* Gives the original socket to uid/gid with fchown(): the owner of a socket is the owner its
 * reuseport group requires of every socket that joins (ConnectPerClient= under User=). */
int group_set_owner(const Group *g, uid_t uid, gid_t gid);

/* generation.c */
/* start_deadline_usec: CLOCK_MONOTONIC time by which READY=1 must come (USEC_INFINITY: never). */
int generation_spawn(Manager *m, uint32_t gen, unsigned slot, const Config *config,
                     uint64_t start_deadline_usec, Generation **ret);
Generation *generation_free(Generation *g);
/* Watches g->pidfd for the process's exit (as its parent, or as an adopter). */
int generation_watch(Generation *g);
void generation_close_sockets(Generation *g);
int generation_signal(Generation *g, int sig, bool whole_group);
int generation_set_timer(Generation *g, uint64_t usec);
void generation_release_slot(Generation *g);
Generation *manager_find_generation_by_pid(Manager *m, pid_t pid);
uint64_t generation_packets(Generation *g);
/* TCP connections steered to the generation's listeners and requests migrated into them. */
void generation_tcp(Generation *g, uint64_t *ret_connections, uint64_t *ret_migrated);
bool manager_has_tcp(const Manager *m);
/* why, followed by "(bind(ADDR) failed: ...)" if the instance reported a failed bind(): in buf. */
const char *generation_explain(Generation *g, const char *why, char *buf, size_t size);
/* Path of libgrm-bind.so, preloaded into instances with InterceptBind=yes or ConnectPerClient=yes. */
const char *generation_bind_library(void);

/* sockwatch.c: samples the receive queues of every live generation's UDP sockets each second
 * while any exists, and reports one nobody reads (status, metrics, journal). */
void sockwatch_arm(Manager *m);
/* portwatch.c: the socket census of every group's port, every 5 s and soon after every change
 * of state; reports sockets outside the steered groups (status, metrics, journal). */
void portwatch_start(Manager *m);
/* A scan within 200 ms (after a restart's steps). */
void portwatch_soon(Manager *m);
void portwatch_done(Manager *m);
/* verify.c */
/* Probes every UDP group's steering (after attaching grm's program again if reattach), and from
 * then on every second; a group whose program is not grm's is reported and repaired. */
void manager_verify_steering(Manager *m, bool reattach);
const char *steering_state_to_string(SteeringState s);

/* cgroup.c */
/* Decides where generations live (once; needs m->ctl_path): see cgroup.c. */
void manager_cgroup_setup(Manager *m);
void manager_cgroup_done(Manager *m);
/* Makes g's cgroup; *ret_procs_fd is its cgroup.procs for the child to join (-EBADF: none). */
int generation_cgroup_create(Generation *g, int *ret_procs_fd);
/* Finds an adopted generation's cgroup again from its main process. */
int generation_cgroup_adopt(Generation *g);
/* cgroup.kill: every process of the generation, wherever its session or process group. */
int generation_cgroup_kill(Generation *g);
/* Kills what is left and removes the cgroup once empty (asynchronously). */
void generation_cgroup_release(Generation *g);
void generation_cgroup_free(Generation *g);
void generation_cgroup_update_usage(Generation *g);
/* "gen-N" relative to the base, or NULL. */
const char *generation_cgroup_name(const Generation *g);

/* notify.c */
/* Opens the notify socket, or takes over inherited_fd (from the fd store or an exec). */
int notify_open(Manager *m, int inherited_fd);
void notify_close(Manager *m);

/* vault.c */
int vault_open(Manager *m);
int vault_save(Manager *m);
/* Puts our vault in systemd's fd store (once; before vault_take(), so that copies land there). */
void vault_store(Manager *m);
/* Moves every snapshot queued on an inherited vault's reading end fd into ours, each copied
 * before it is dequeued, and returns the newest, or -ENOENT. */
int vault_take(Manager *m, int fd, Snapshot **ret);
void vault_close(Manager *m, bool remove_from_store);

/* ctl-server.c */
/* Claims the control path (refusing if another grmd answers there) and listens; call before
 * touching the groups, so that a grmd that must not run changes nothing. */
int ctl_server_bind(Manager *m);
/* Serves the control socket (bound first if ctl_server_bind() was not called). */
int ctl_server_open(Manager *m);
void ctl_server_close(Manager *m);
/* Progress line to the requester of a restart (ignored when c is NULL). */
void ctl_connection_progress(CtlConnection *c, const char *step, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* Final result of a restart; closes the connection. */
void ctl_connection_result(CtlConnection *c, GrmOutcome outcome, Generation *g, const char *message);
void ctl_connection_detach_restart(CtlConnection *c);
