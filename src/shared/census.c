/* SPDX-License-Identifier: MIT */
/*
 * The socket census (census.h): owns the census iterators' BPF object (bpf/census.bpf.c; this is
 * the only file that includes its skeleton) and its two iterator links. A scan writes the port
 * filter, reads each iterator to its end (one struct grm_census_record per socket) and turns the
 * kernel's group addresses into per-scan numbers, so that no kernel address leaves this file.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "census-api.h"
#include "census.h"
#include "census.skel.h"
#include "macro.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

#define TCP_ESTABLISHED 1

struct Census {
        struct census *skel;
        struct bpf_link *udp, *tcp;
        struct bpf_link *owners;   /* NULL: no task_file iterator (census_owners() unsupported) */
};

int census_new(Census **ret) {
        _cleanup_(census_freep) Census *c = NULL;
        int r;

        if (!ret)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->skel = census__open();
        if (!c->skel)
                return negative_errno();
        r = census__load(c->skel);
        if (r < 0)
                return r;
        c->udp = bpf_program__attach_iter(c->skel->progs.grm_census_udp, NULL);
        if (!c->udp)
                return negative_errno();
        c->tcp = bpf_program__attach_iter(c->skel->progs.grm_census_tcp, NULL);
        if (!c->tcp)
                return negative_errno();
        /* Optional: the owners then come from /proc. */
        c->owners = bpf_program__attach_iter(c->skel->progs.grm_census_owners, NULL);
        *ret = TAKE_PTR(c);
        return 0;
}

Census *census_free(Census *c) {
        if (!c)
                return NULL;
        bpf_link__destroy(c->udp);
        bpf_link__destroy(c->tcp);
        bpf_link__destroy(c->owners);
        census__destroy(c->skel);
        free(c);
        return NULL;
}

/* Reads one iterator to its end, appending whole records of record_size bytes to *buf (*len
 * bytes, *size allocated). */
static int read_iterator(struct bpf_link *link, size_t record_size, uint8_t **buf, size_t *len, size_t *size) {
        _cleanup_close_ int fd = -EBADF;
        unsigned eagain = 0;

        fd = bpf_iter_create(bpf_link__fd(link));
        if (fd < 0)
                return fd;
        for (;;) {
                ssize_t n;

                if (*size - *len < 16384) {
                        size_t grown = *size == 0 ? 65536 : *size * 2;
                        uint8_t *p;

                        if (grown > (size_t) CENSUS_MAX_SOCKETS * record_size + 65536)
                                return -E2BIG;
                        p = realloc(*buf, grown);
                        if (!p)
                                return -ENOMEM;
                        *buf = p;
                        *size = grown;
                }
                n = read(fd, *buf + *len, *size - *len);
                if (n < 0 && errno == EINTR)
                        continue;
                /* The UDP iterator says EAGAIN when a bucket changed under it too often. */
                if (n < 0 && errno == EAGAIN && ++eagain < 16)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                *len += (size_t) n;
        }
        if (*len % record_size != 0)
                return -EIO;
        return 0;
}

static int set_ports(Census *c, const CensusPort *ports, size_t n_ports, bool *ret_udp, bool *ret_tcp) {
        _cleanup_free_ struct grm_census_ports *udp = calloc(1, sizeof(*udp)), *tcp = calloc(1, sizeof(*tcp));
        int fd = bpf_map__fd(c->skel->maps.census_ports);
        __u32 key;

        if (!udp || !tcp)
                return -ENOMEM;
        *ret_udp = *ret_tcp = false;
        for (size_t i = 0; i < n_ports; i++) {
                struct grm_census_ports *p;

                if (ports[i].protocol == IPPROTO_UDP) {
                        p = udp;
                        *ret_udp = true;
                } else if (ports[i].protocol == IPPROTO_TCP) {
                        p = tcp;
                        *ret_tcp = true;
                } else
                        return -EINVAL;
                p->bits[ports[i].port / 8] |= (uint8_t) (1U << (ports[i].port % 8));
        }
        key = GRM_CENSUS_PORTS_UDP;
        if (bpf_map_update_elem(fd, &key, udp, BPF_ANY) < 0)
                return negative_errno();
        key = GRM_CENSUS_PORTS_TCP;
        if (bpf_map_update_elem(fd, &key, tcp, BPF_ANY) < 0)
                return negative_errno();
        return 0;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* Numbers the groups 1, 2, ... in the order first met. */
static int number_groups(const struct grm_census_record *recs, size_t n, CensusSocket *out) {
        _cleanup_free_ uint64_t *sorted = NULL, *numbers = NULL;
        size_t n_groups = 0;
        uint32_t next = 1;

        if (n == 0)
                return 0;
        sorted = malloc(n * sizeof(uint64_t));
        numbers = calloc(n, sizeof(uint64_t));
        if (!sorted || !numbers)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (recs[i].group)
                        sorted[n_groups++] = recs[i].group;
        qsort(sorted, n_groups, sizeof(uint64_t), cmp_u64);
        if (n_groups > 0) {
                size_t unique = 1;

                for (size_t i = 1; i < n_groups; i++)
                        if (sorted[i] != sorted[unique - 1])
                                sorted[unique++] = sorted[i];
                n_groups = unique;
        }
        for (size_t i = 0; i < n; i++) {
                const uint64_t *hit;

                out[i].group = 0;
                if (!recs[i].group)
                        continue;
                hit = bsearch(&recs[i].group, sorted, n_groups, sizeof(uint64_t), cmp_u64);
                if (numbers[hit - sorted] == 0)
                        numbers[hit - sorted] = next++;
                out[i].group = (uint32_t) numbers[hit - sorted];
        }
        return 0;
}

int census_scan(Census *c, const CensusPort *ports, size_t n_ports, CensusSocket **ret, size_t *ret_n) {
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ CensusSocket *out = NULL;
        const struct grm_census_record *recs;
        size_t len = 0, size = 0, n;
        bool udp, tcp;
        int r;

        if (!c || (!ports && n_ports > 0) || !ret || !ret_n)
                return -EINVAL;
        *ret = NULL;
        *ret_n = 0;
        r = set_ports(c, ports, n_ports, &udp, &tcp);
        if (r < 0)
                return r;
        if (udp && (r = read_iterator(c->udp, sizeof(struct grm_census_record), &buf, &len, &size)) < 0)
                return r;
        if (tcp && (r = read_iterator(c->tcp, sizeof(struct grm_census_record), &buf, &len, &size)) < 0)
                return r;
        n = len / sizeof(struct grm_census_record);
        if (n == 0)
                return 0;
        if (n > CENSUS_MAX_SOCKETS)
                return -E2BIG;
        recs = (const struct grm_census_record *) buf;
        out = calloc(n, sizeof(*out));
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const struct grm_census_record *rec = &recs[i];
                CensusSocket *s = &out[i];

                s->cookie = rec->cookie;
                s->inode = rec->inode;
                s->reuseport_id = rec->reuseport_id;
                s->uid = rec->uid;
                s->bound_dev_if = rec->bound_dev_if;
                s->family = rec->family;
                s->protocol = rec->protocol;
                memcpy(s->local_addr, rec->local_addr, sizeof(s->local_addr));
                memcpy(s->remote_addr, rec->remote_addr, sizeof(s->remote_addr));
                s->local_port = rec->local_port;
                s->remote_port = rec->remote_port;
                s->connected = rec->protocol == IPPROTO_UDP && rec->state == TCP_ESTABLISHED;
                s->reuseport = rec->reuseport;
                s->reuseaddr = rec->reuseaddr;
                s->ipv6only = rec->ipv6only;
        }
        r = number_groups(recs, n, out);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out);
        *ret_n = n;
        return 0;
}

const CensusSocket *census_find(const CensusSocket *socks, size_t n, uint64_t cookie) {
        for (size_t i = 0; i < n; i++)
                if (socks[i].cookie == cookie)
                        return &socks[i];
        return NULL;
}

int census_same_group(const CensusSocket *socks, size_t n, uint64_t cookie, uint64_t other_cookie) {
        const CensusSocket *a = census_find(socks, n, cookie), *b = census_find(socks, n, other_cookie);

        if (!a || !b)
                return -ENOENT;
        return a->group != 0 && a->group == b->group;
}

int census_socket_cookie(int fd, uint64_t *ret) {
        uint64_t cookie = 0;
        socklen_t len = sizeof(cookie);

        if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) < 0)
                return negative_errno();
        *ret = cookie;
        return 0;
}

int census_fd_in_group_of(Census *c, int fd, int group_fd) {
        _cleanup_free_ CensusSocket *socks = NULL;
        struct sockaddr_storage sa = {};
        socklen_t len = sizeof(sa);
        uint64_t cookie, group_cookie;
        CensusPort port;
        int protocol = 0;
        socklen_t plen = sizeof(protocol);
        size_t n;
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &plen) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return negative_errno();
        if (sa.ss_family == AF_INET)
                port.port = ntohs(((struct sockaddr_in *) &sa)->sin_port);
        else if (sa.ss_family == AF_INET6)
                port.port = ntohs(((struct sockaddr_in6 *) &sa)->sin6_port);
        else
                return -EAFNOSUPPORT;
        port.protocol = protocol;
        if ((r = census_socket_cookie(fd, &cookie)) < 0 || (r = census_socket_cookie(group_fd, &group_cookie)) < 0)
                return r;
        r = census_scan(c, &port, 1, &socks, &n);
        if (r < 0)
                return r;
        return census_same_group(socks, n, cookie, group_cookie);
}

static bool addr_is_any(int family, const uint8_t *addr) {
        static const uint8_t zero[16] = {};

        return memcmp(addr, zero, family == AF_INET6 ? 16 : 4) == 0;
}

/* Whether the unconnected or listening socket s takes what is addressed to the steered one's
 * address: see census_classify(). */
static bool takes_address_of(const CensusSocket *s, const CensusSocket *steered) {
        if (s->family == steered->family)
                return addr_is_any(steered->family, steered->local_addr) ||
                       memcmp(s->local_addr, steered->local_addr, s->family == AF_INET6 ? 16 : 4) == 0;
        /* A dual-stack IPv6 wildcard group also gets IPv4; an IPv4 socket outscores it. */
        return steered->family == AF_INET6 && s->family == AF_INET && !steered->ipv6only &&
               addr_is_any(AF_INET6, steered->local_addr);
}

bool census_concerns(const CensusSocket *s, const CensusSocket *steered) {
        return s->protocol == steered->protocol && s->local_port == steered->local_port && takes_address_of(s, steered);
}

CensusVerdict census_classify(const CensusSocket *s, const CensusSocket *steered) {
        if (s->protocol != steered->protocol || s->local_port != steered->local_port)
                return CENSUS_NORMAL;
        if (s->cookie == steered->cookie || (s->group != 0 && s->group == steered->group))
                return CENSUS_NORMAL;
        if (!takes_address_of(s, steered))
                return CENSUS_NORMAL;
        if (s->connected)
                return s->reuseport ? CENSUS_CONNECTED_REUSEPORT : CENSUS_NORMAL;
        return CENSUS_OUTSIDE;
}

static const char *const verdict_names[_CENSUS_VERDICT_MAX] = {
        [CENSUS_NORMAL] = "normal",
        [CENSUS_OUTSIDE] = "outside",
        [CENSUS_CONNECTED_REUSEPORT] = "connected-reuseport",
};

const char *census_verdict_to_string(CensusVerdict v) {
        return v < _CENSUS_VERDICT_MAX ? verdict_names[v] : NULL;
}

const char *census_format_address(const CensusSocket *s, bool remote, char buf[static CENSUS_ADDRESS_MAX]) {
        char a[INET6_ADDRSTRLEN] = "?";
        const uint8_t *addr = remote ? s->remote_addr : s->local_addr;
        unsigned port = remote ? s->remote_port : s->local_port;

        (void) inet_ntop(s->family == AF_INET6 ? AF_INET6 : AF_INET, addr, a, sizeof(a));
        snprintf(buf, CENSUS_ADDRESS_MAX, s->family == AF_INET6 ? "[%s]:%u" : "%s:%u", a, port);
        return buf;
}

/* Empties census_inodes. */
static int clear_inodes(int fd) {
        __u64 key;

        while (bpf_map_get_next_key(fd, NULL, &key) == 0)
                if (bpf_map_delete_elem(fd, &key) < 0)
                        return negative_errno();
        return 0;
}

/* One iterator run for up to GRM_CENSUS_MAX_OWNERS inodes. */
static int owners_batch(Census *c, const uint64_t *inodes, size_t n, pid_t *ret_pids, char (*ret_comms)[16]) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = 0, size = 0;
        int fd = bpf_map__fd(c->skel->maps.census_inodes), r;
        __u8 one = 1;

        r = clear_inodes(fd);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (inodes[i] != 0 && bpf_map_update_elem(fd, &inodes[i], &one, BPF_ANY) < 0)
                        return negative_errno();
        r = read_iterator(c->owners, sizeof(struct grm_census_owner), &buf, &len, &size);
        if (r < 0)
                return r;
        for (size_t k = 0; k < len / sizeof(struct grm_census_owner); k++) {
                const struct grm_census_owner *o = (const struct grm_census_owner *) buf + k;

                if (o->pid == 0 || o->pid > INT32_MAX)
                        continue; /* not in our PID namespace */
                for (size_t i = 0; i < n; i++)
                        if (inodes[i] != 0 && inodes[i] == o->inode &&
                            (ret_pids[i] == 0 || (pid_t) o->pid < ret_pids[i])) {
                                ret_pids[i] = (pid_t) o->pid;
                                if (ret_comms) {
                                        memcpy(ret_comms[i], o->comm, 16);
                                        ret_comms[i][15] = 0;
                                }
                        }
        }
        return clear_inodes(fd);
}

int census_owners(Census *c, const uint64_t *inodes, size_t n, pid_t *ret_pids, char (*ret_comms)[16]) {
        if (!c || (n > 0 && (!inodes || !ret_pids)))
                return -EINVAL;
        if (!c->owners)
                return -EOPNOTSUPP;
        for (size_t i = 0; i < n; i++) {
                ret_pids[i] = 0;
                if (ret_comms)
                        ret_comms[i][0] = 0;
        }
        for (size_t done = 0; done < n; done += GRM_CENSUS_MAX_OWNERS) {
                size_t k = n - done < GRM_CENSUS_MAX_OWNERS ? n - done : GRM_CENSUS_MAX_OWNERS;
                int r = owners_batch(c, inodes + done, k, ret_pids + done, ret_comms ? ret_comms + done : NULL);

                if (r < 0)
                        return r;
        }
        return 0;
}

/* "socket:[N]" -> N. */
static bool parse_socket_link(const char *link, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (strncmp(link, "socket:[", 8) != 0)
                return false;
        errno = 0;
        v = strtoull(link + 8, &end, 10);
        if (errno != 0 || end == link + 8 || strcmp(end, "]") != 0)
                return false;
        *ret = v;
        return true;
}

static void scan_fds(int proc_fd, pid_t pid, const uint64_t *inodes, size_t n, pid_t *ret_pids) {
        char path[64];
        DIR *d;
        int fd;
        struct dirent *de;

        snprintf(path, sizeof(path), "%d/fd", (int) pid);
        fd = openat(proc_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return; /* gone, or not ours to read */
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        while ((de = readdir(d))) {
                char link[64];
                ssize_t len;
                uint64_t inode;

                if (de->d_name[0] == '.')
                        continue;
                len = readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
                if (len < 0)
                        continue;
                link[len] = 0;
                if (!parse_socket_link(link, &inode))
                        continue;
                for (size_t i = 0; i < n; i++)
                        if (inodes[i] != 0 && inodes[i] == inode && (ret_pids[i] == 0 || pid < ret_pids[i]))
                                ret_pids[i] = pid;
        }
        closedir(d);
}

int census_find_owners(const char *proc, const uint64_t *inodes, size_t n, pid_t *ret_pids) {
        _cleanup_close_ int proc_fd = -EBADF;
        struct dirent *de;
        DIR *d;

        for (size_t i = 0; i < n; i++)
                ret_pids[i] = 0;
        proc_fd = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (proc_fd < 0)
                return negative_errno();
        d = opendir(proc);
        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                char *end;
                unsigned long pid;

                errno = 0;
                pid = strtoul(de->d_name, &end, 10);
                if (errno != 0 || *end || end == de->d_name || pid == 0 || pid > INT32_MAX)
                        continue;
                scan_fds(proc_fd, (pid_t) pid, inodes, n, ret_pids);
        }
        closedir(d);
        return 0;
}
