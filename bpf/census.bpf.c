// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
/*
 * The socket census: BPF socket iterators (iter/udp, iter/tcp) that write one
 * struct grm_census_record (census-api.h) for every socket bound to a port grmd watches, with
 * what no other interface tells: the SO_REUSEPORT flag and the reuseport group the socket is in
 * (sock_diag reports neither). src/shared/census.c runs them every few seconds; nothing here is
 * on a packet's path.
 *
 * The kernel's types are declared below with only the fields read, and preserve_access_index:
 * libbpf relocates each access against the running kernel's BTF (/sys/kernel/btf/vmlinux), so
 * the object does not depend on the headers or the kernel of the build machine. Fields are read
 * with BPF_CORE_READ (bpf_probe_read_kernel): a socket closing while it is read yields zeros,
 * never a fault, and sk_reuseport_cb (an RCU pointer) is only compared, never followed but for
 * its id.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "census-api.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_LISTEN 10

struct in6_addr {
        union {
                __u8 u6_addr8[16];
        } in6_u;
} __attribute__((preserve_access_index));

struct sock_reuseport {
        unsigned int reuseport_id;
} __attribute__((preserve_access_index));

struct inode {
        unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file {
        struct inode *f_inode;
} __attribute__((preserve_access_index));

struct socket {
        struct file *file;
} __attribute__((preserve_access_index));

struct sock_common {
        __be32 skc_daddr;
        __be32 skc_rcv_saddr;
        __be16 skc_dport;
        __u16 skc_num;
        unsigned short skc_family;
        volatile unsigned char skc_state;
        unsigned char skc_reuse : 4;
        unsigned char skc_reuseport : 1;
        unsigned char skc_ipv6only : 1;
        int skc_bound_dev_if;
        struct in6_addr skc_v6_daddr;
        struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
        struct sock_common __sk_common;
        struct socket *sk_socket;
        struct sock_reuseport *sk_reuseport_cb;
} __attribute__((preserve_access_index));

struct inet_sock {
        struct sock sk;
} __attribute__((preserve_access_index));

struct udp_sock {
        struct inet_sock inet;
} __attribute__((preserve_access_index));

/* Its struct sock is at offset 0 (inet_connection_sock, inet_sock, sock): only ever cast. */
struct tcp_sock;

struct upid {
        int nr;
        void *ns;
} __attribute__((preserve_access_index));

struct pid {
        unsigned int level;
        struct upid numbers[];
} __attribute__((preserve_access_index));

struct task_struct {
        struct task_struct *group_leader;
        struct pid *thread_pid;
        char comm[16];
} __attribute__((preserve_access_index));

struct seq_file;
struct bpf_iter_meta {
        struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__udp {
        struct bpf_iter_meta *meta;
        struct udp_sock *udp_sk;
        __u32 uid;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
        struct bpf_iter_meta *meta;
        struct sock_common *sk_common;
        __u32 uid;
} __attribute__((preserve_access_index));

struct bpf_iter__task_file {
        struct bpf_iter_meta *meta;
        struct task_struct *task;
        __u32 fd;
        struct file *file;
} __attribute__((preserve_access_index));

/* The inodes of the sockets whose holders census.c asks for. Written by census.c before each
 * run of grm_census_owners. */
struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(max_entries, GRM_CENSUS_MAX_OWNERS);
        __type(key, __u64);
        __type(value, __u8);
} census_inodes SEC(".maps");

/* Which local ports to report, per protocol (GRM_CENSUS_PORTS_*). Written by census.c before
 * each scan. */
struct {
        __uint(type, BPF_MAP_TYPE_ARRAY);
        __uint(max_entries, 2);
        __type(key, __u32);
        __type(value, struct grm_census_ports);
} census_ports SEC(".maps");

static __always_inline int watched(__u32 protocol, __u16 port) {
        struct grm_census_ports *ports = bpf_map_lookup_elem(&census_ports, &protocol);

        return ports && (ports->bits[(port >> 3) & (GRM_CENSUS_PORT_BYTES - 1)] & (1 << (port & 7)));
}

static __always_inline void emit(struct seq_file *seq, struct sock *sk, __u8 protocol, __u32 uid) {
        struct grm_census_record r = {};
        struct sock_reuseport *reuse;
        struct sock_common *skc = &sk->__sk_common;
        __u16 dport;

        r.cookie = bpf_get_socket_cookie(sk);
        r.inode = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
        reuse = BPF_CORE_READ(sk, sk_reuseport_cb);
        r.group = (__u64) (unsigned long) reuse;
        if (reuse)
                r.reuseport_id = BPF_CORE_READ(reuse, reuseport_id);
        r.uid = uid;
        r.bound_dev_if = (__u32) BPF_CORE_READ(skc, skc_bound_dev_if);
        r.local_port = BPF_CORE_READ(skc, skc_num);
        dport = BPF_CORE_READ(skc, skc_dport);
        r.remote_port = (__u16) ((dport >> 8) | (dport << 8));
        r.family = (__u8) BPF_CORE_READ(skc, skc_family);
        r.protocol = protocol;
        r.state = BPF_CORE_READ(skc, skc_state);
        r.reuseport = (__u8) BPF_CORE_READ_BITFIELD_PROBED(skc, skc_reuseport);
        r.reuseaddr = (__u8) BPF_CORE_READ_BITFIELD_PROBED(skc, skc_reuse);
        r.ipv6only = (__u8) BPF_CORE_READ_BITFIELD_PROBED(skc, skc_ipv6only);
        if (r.family == AF_INET6) {
                BPF_CORE_READ_INTO(&r.local_addr, skc, skc_v6_rcv_saddr.in6_u.u6_addr8);
                BPF_CORE_READ_INTO(&r.remote_addr, skc, skc_v6_daddr.in6_u.u6_addr8);
        } else {
                BPF_CORE_READ_INTO((__be32 *) r.local_addr, skc, skc_rcv_saddr);
                BPF_CORE_READ_INTO((__be32 *) r.remote_addr, skc, skc_daddr);
        }
        bpf_seq_write(seq, &r, sizeof(r));
}

SEC("iter/udp")
int grm_census_udp(struct bpf_iter__udp *ctx) {
        struct udp_sock *udp_sk = ctx->udp_sk;
        struct sock *sk;

        if (!udp_sk)
                return 0;
        sk = &udp_sk->inet.sk;
        if (!watched(GRM_CENSUS_PORTS_UDP, BPF_CORE_READ(sk, __sk_common.skc_num)))
                return 0;
        emit(ctx->meta->seq, sk, IPPROTO_UDP, ctx->uid);
        return 0;
}

SEC("iter/tcp")
int grm_census_tcp(struct bpf_iter__tcp *ctx) {
        struct sock_common *skc = ctx->sk_common;
        struct tcp_sock *tp;

        if (!skc || BPF_CORE_READ(skc, skc_state) != TCP_LISTEN)
                return 0;
        /* A listener is a full socket; time-wait and request sockets are only sock_common. */
        tp = bpf_skc_to_tcp_sock(skc);
        if (!tp || !watched(GRM_CENSUS_PORTS_TCP, BPF_CORE_READ(skc, skc_num)))
                return 0;
        emit(ctx->meta->seq, (struct sock *) tp, IPPROTO_TCP, ctx->uid);
        return 0;
}

/* The number of the pid p in the PID namespace at level (its upid there), if that is ns. */
static __always_inline int upid_at(struct pid *p, unsigned int level, void **ret_ns) {
        unsigned long base = (unsigned long) p + bpf_core_field_offset(struct pid, numbers) +
                             (unsigned long) level * bpf_core_type_size(struct upid);
        int nr = 0;

        bpf_probe_read_kernel(&nr, sizeof(nr), (void *) (base + bpf_core_field_offset(struct upid, nr)));
        bpf_probe_read_kernel(ret_ns, sizeof(*ret_ns), (void *) (base + bpf_core_field_offset(struct upid, ns)));
        return nr;
}

/* The holders of given sockets, found through every process's fd table from the kernel side:
 * /proc/PID/fd of another user's process is closed to grmd without CAP_SYS_PTRACE (and hidden
 * under ProtectProc=invisible). The pid is translated into the PID namespace of the reader (the
 * task running the iterator), as /proc would show it. */
SEC("iter/task_file")
int grm_census_owners(struct bpf_iter__task_file *ctx) {
        struct task_struct *task = ctx->task, *leader;
        struct file *file = ctx->file;
        struct grm_census_owner o = {};
        struct pid *mine, *theirs;
        unsigned int level, their_level;
        void *my_ns = NULL, *their_ns = NULL;
        int nr;

        if (!task || !file)
                return 0;
        o.inode = BPF_CORE_READ(file, f_inode, i_ino);
        if (!bpf_map_lookup_elem(&census_inodes, &o.inode))
                return 0;
        leader = BPF_CORE_READ(task, group_leader);
        mine = BPF_CORE_READ(bpf_get_current_task_btf(), group_leader, thread_pid);
        theirs = BPF_CORE_READ(leader, thread_pid);
        level = BPF_CORE_READ(mine, level);
        their_level = BPF_CORE_READ(theirs, level);
        if (level <= their_level && level < 64) {
                (void) upid_at(mine, level, &my_ns);
                nr = upid_at(theirs, level, &their_ns);
                if (my_ns && my_ns == their_ns && nr > 0)
                        o.pid = (__u32) nr;
        }
        BPF_CORE_READ_STR_INTO(&o.comm, leader, comm);
        bpf_seq_write(ctx->meta->seq, &o, sizeof(o));
        return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
