/* SPDX-License-Identifier: MIT */
/*
 * The census iterators (bpf/census.bpf.c through src/shared/census.c, the code that ships) on
 * real sockets in a private network namespace, IPv4 and IPv6: what the kernel does to reuseport
 * groups when UDP sockets connect (docs/ARCHITECTURE.md, "The socket census"), and that the
 * census sees it:
 *  - IPv4: a socket bound after a connected socket that kept SO_REUSEPORT is in a new group with
 *    it, not in the first socket's group (even with grm's program and socket array on that
 *    group); IPv6: the connected socket is in no group, and the next socket joins the first's;
 *  - with the recipe of issue 12 (per-client socket: SO_REUSEADDR, bind, connect, clear
 *    SO_REUSEPORT; next socket: SO_REUSEADDR around its bind) the next socket joins the first
 *    one's group, and the per-client socket is normal;
 *  - owner uid (after fchown), inode, cookie, flags, addresses as the socket calls say; the
 *    processes holding a socket, found by the task_file iterator, as /proc says;
 *  - TCP: listeners only, in their groups;
 *  - the port filter, bad arguments, no fd leaks;
 *  - the capabilities: the census does not load with the steering program's (CAP_BPF,
 *    CAP_NET_ADMIN) and loads with CAP_PERFMON added (the measurement behind the unit's set).
 */
#include <fcntl.h>
#include <sys/capability.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "census.h"
#include "datapath-util.h"

#define PORT 9300

static const int families[] = { AF_INET, AF_INET6 };

static socklen_t make_addr(int family, const char *addr, uint16_t port, struct sockaddr_storage *ret) {
        memset(ret, 0, sizeof(*ret));
        if (family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *) ret;
                in->sin_family = AF_INET;
                in->sin_port = htons(port);
                ck_assert_int_eq(inet_pton(AF_INET, addr ? addr : "127.0.0.1", &in->sin_addr), 1);
                return sizeof(*in);
        }
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ret;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        ck_assert_int_eq(inet_pton(AF_INET6, addr ? addr : "::1", &in6->sin6_addr), 1);
        return sizeof(*in6);
}

static void set_opt(int fd, int opt, int value) {
        ck_assert_msg(setsockopt(fd, SOL_SOCKET, opt, &value, sizeof(value)) == 0, "setsockopt(%d): %m", opt);
}

/* A UDP (or TCP) socket on addr (NULL: loopback):PORT with the options given. */
static int bound(int family, int type, const char *addr, bool reuseport, bool reuseaddr) {
        struct sockaddr_storage sa;
        socklen_t len = make_addr(family, addr, PORT, &sa);
        int fd = socket(family, type | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        if (family == AF_INET6)
                ck_assert_int_eq(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int) { 1 }, sizeof(int)), 0);
        if (reuseport)
                set_opt(fd, SO_REUSEPORT, 1);
        if (reuseaddr)
                set_opt(fd, SO_REUSEADDR, 1);
        ck_assert_msg(bind(fd, (struct sockaddr *) &sa, len) == 0, "bind: %m");
        if (type == SOCK_STREAM)
                ck_assert_int_eq(listen(fd, 16), 0);
        return fd;
}

static void connect_to(int fd, int family, uint16_t port) {
        struct sockaddr_storage sa;
        socklen_t len = make_addr(family, NULL, port, &sa);

        ck_assert_msg(connect(fd, (struct sockaddr *) &sa, len) == 0, "connect: %m");
}

static uint64_t cookie_of(int fd) {
        uint64_t c = 0;

        ck_assert_int_eq(census_socket_cookie(fd, &c), 0);
        return c;
}

static const CensusSocket *find_fd(const CensusSocket *socks, size_t n, int fd) {
        const CensusSocket *s = census_find(socks, n, cookie_of(fd));

        ck_assert_msg(s, "socket fd %d not in the census", fd);
        return s;
}

static void scan_port(Census *c, int protocol, CensusSocket **socks, size_t *n) {
        CensusPort p = { protocol, PORT };

        free(*socks);
        *socks = NULL;
        ck_assert_int_eq(census_scan(c, &p, 1, socks, n), 0);
}

START_TEST(test_connected_socket_hosts_a_new_group) {
        int family = families[_i];
        _cleanup_(census_freep) Census *c = NULL;
        _cleanup_(steering_freep) Steering *st = NULL;
        _cleanup_free_ CensusSocket *socks = NULL;
        _cleanup_close_ int grm = -EBADF, gen = -EBADF, client = -EBADF, later = -EBADF;
        const CensusSocket *s_grm, *s_gen, *s_client, *s_later;
        struct stat sb;
        size_t n = 0;
        char buf[CENSUS_ADDRESS_MAX];

        ck_assert_int_eq(census_new(&c), 0);
        /* grm's group: the original socket with the steering program, a generation socket in
         * the socket array. */
        grm = bound(family, SOCK_DGRAM, NULL, true, false);
        ck_assert_int_eq(steering_new(64, &st), 0);
        ck_assert_int_eq(steering_add_group(st, grm, NULL), 0);
        gen = bound(family, SOCK_DGRAM, NULL, true, false);
        ck_assert_int_eq(steering_register_socket(st, 0, 0, 0, gen), 0);
        /* A per-client socket as servers make them without grm's help. */
        client = bound(family, SOCK_DGRAM, NULL, true, false);
        connect_to(client, family, 5002);
        later = bound(family, SOCK_DGRAM, NULL, true, false);

        scan_port(c, IPPROTO_UDP, &socks, &n);
        ck_assert_uint_eq(n, 4);
        s_grm = find_fd(socks, n, grm);
        s_gen = find_fd(socks, n, gen);
        s_client = find_fd(socks, n, client);
        s_later = find_fd(socks, n, later);

        ck_assert_uint_ne(s_grm->group, 0);
        ck_assert_uint_eq(s_gen->group, s_grm->group);
        ck_assert_int_eq(census_same_group(socks, n, cookie_of(gen), cookie_of(grm)), 1);
        ck_assert_int_eq(census_fd_in_group_of(c, gen, grm), 1);
        if (family == AF_INET) {
                /* connect() took the client out of grm's group, and the next bind made a new
                 * group around it, without grm's program (Linux 6.18). */
                ck_assert_uint_ne(s_later->group, 0);
                ck_assert_msg(s_later->group != s_grm->group, "the socket bound after the connected one joined grm's group");
                ck_assert_msg(s_client->group == s_later->group, "the connected socket is not in the new group (%u, %u)",
                              s_client->group, s_later->group);
                ck_assert_int_eq(census_same_group(socks, n, cookie_of(later), cookie_of(grm)), 0);
                ck_assert_int_eq(census_fd_in_group_of(c, later, grm), 0);
                ck_assert_int_eq(census_fd_in_group_of(c, later, client), 1);
                ck_assert_int_eq(census_classify(s_later, s_grm), CENSUS_OUTSIDE);
        } else {
                /* IPv6: connect() detaches the client too (no group), but the next bind still
                 * joins grm's group (Linux 6.18). */
                ck_assert_uint_eq(s_client->group, 0);
                ck_assert_uint_eq(s_later->group, s_grm->group);
                ck_assert_int_eq(census_fd_in_group_of(c, later, grm), 1);
                ck_assert_int_eq(census_classify(s_later, s_grm), CENSUS_NORMAL);
        }

        ck_assert_int_eq(census_classify(s_grm, s_grm), CENSUS_NORMAL);
        ck_assert_int_eq(census_classify(s_gen, s_grm), CENSUS_NORMAL);
        /* Connected with SO_REUSEPORT kept: reported (with the hint), whichever group. */
        ck_assert_int_eq(census_classify(s_client, s_grm), CENSUS_CONNECTED_REUSEPORT);

        /* What the socket calls say about them. */
        ck_assert_int_eq(fstat(client, &sb), 0);
        ck_assert_uint_eq(s_client->inode, sb.st_ino);
        ck_assert_int_eq(s_client->family, family);
        ck_assert_int_eq(s_client->protocol, IPPROTO_UDP);
        ck_assert(s_client->connected);
        ck_assert(s_client->reuseport);
        ck_assert(!s_client->reuseaddr);
        ck_assert_uint_eq(s_client->uid, 0);
        ck_assert_uint_eq(s_client->local_port, PORT);
        ck_assert_uint_eq(s_client->remote_port, 5002);
        ck_assert_str_eq(census_format_address(s_client, true, buf), family == AF_INET ? "127.0.0.1:5002" : "[::1]:5002");
        ck_assert_str_eq(census_format_address(s_later, false, buf), family == AF_INET ? "127.0.0.1:9300" : "[::1]:9300");
        ck_assert(!s_later->connected);
        ck_assert_uint_eq(s_later->remote_port, 0);
        ck_assert(s_grm->ipv6only == (family == AF_INET6));
}
END_TEST

START_TEST(test_recipe_keeps_one_group) {
        int family = families[_i];
        _cleanup_(census_freep) Census *c = NULL;
        _cleanup_free_ CensusSocket *socks = NULL;
        _cleanup_close_ int grm = -EBADF, client = -EBADF, next = -EBADF;
        const CensusSocket *s_client, *s_next;
        size_t n = 0;

        ck_assert_int_eq(census_new(&c), 0);
        grm = bound(family, SOCK_DGRAM, NULL, true, false);
        client = bound(family, SOCK_DGRAM, NULL, true, true);
        ck_assert_int_eq(census_fd_in_group_of(c, client, grm), 1);
        connect_to(client, family, 5003);
        set_opt(client, SO_REUSEPORT, 0);
        next = bound(family, SOCK_DGRAM, NULL, true, true);
        set_opt(next, SO_REUSEADDR, 0);

        ck_assert_int_eq(census_fd_in_group_of(c, next, grm), 1);
        scan_port(c, IPPROTO_UDP, &socks, &n);
        ck_assert_uint_eq(n, 3);
        s_client = find_fd(socks, n, client);
        s_next = find_fd(socks, n, next);
        ck_assert(s_client->connected);
        ck_assert(!s_client->reuseport);
        ck_assert(s_client->reuseaddr);
        ck_assert(!s_next->reuseaddr);
        ck_assert_int_eq(census_classify(s_client, find_fd(socks, n, grm)), CENSUS_NORMAL);
        ck_assert_int_eq(census_classify(s_next, find_fd(socks, n, grm)), CENSUS_NORMAL);
}
END_TEST

START_TEST(test_owner_uid_and_pid) {
        _cleanup_(census_freep) Census *c = NULL;
        _cleanup_free_ CensusSocket *socks = NULL;
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_storage sa;
        socklen_t len = make_addr(AF_INET, "127.0.0.2", PORT, &sa);
        const CensusSocket *s;
        size_t n = 0;
        pid_t pid = 0;

        ck_assert_int_eq(census_new(&c), 0);
        ck_assert_int_ge(fd, 0);
        /* sk_uid is the inode's owner, and follows fchown(2). */
        ck_assert_int_eq(fchown(fd, 1000, 1000), 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, len), 0);
        scan_port(c, IPPROTO_UDP, &socks, &n);
        s = find_fd(socks, n, fd);
        ck_assert_uint_eq(s->uid, 1000);
        ck_assert(!s->reuseport);
        ck_assert_uint_eq(s->group, 0);
        ck_assert_int_eq(census_find_owners("/proc", &s->inode, 1, &pid), 0);
        ck_assert_int_eq(pid, getpid());
}
END_TEST

START_TEST(test_owners_from_the_kernel) {
        _cleanup_(census_freep) Census *c = NULL;
        _cleanup_close_ int mine = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        _cleanup_close_ int shared = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        uint64_t inodes[4];
        pid_t pids[4], proc_pids[4];
        char comms[4][16];
        struct stat st;
        int pipefd[2], status;
        pid_t child;
        char x;

        ck_assert_int_eq(census_new(&c), 0);
        ck_assert_int_eq(fstat(mine, &st), 0);
        inodes[0] = st.st_ino;
        ck_assert_int_eq(fstat(shared, &st), 0);
        inodes[1] = st.st_ino;
        ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
        /* A child holding only the second socket: the lowest pid holding it is still ours. */
        child = fork();
        if (child == 0) {
                /* nothing of check's in a child: its records go to the runner's file */
                close(mine);
                (void) read(pipefd[0], &x, 1);
                _exit(0);
        }
        ck_assert_int_gt(child, 0);
        inodes[2] = 0;               /* skipped */
        inodes[3] = 1;               /* no such socket */
        ck_assert_int_eq(census_owners(c, inodes, 4, pids, comms), 0);
        ck_assert_int_eq(pids[0], getpid());
        ck_assert_int_eq(pids[1], getpid());
        ck_assert_int_eq(pids[2], 0);
        ck_assert_int_eq(pids[3], 0);
        ck_assert_str_eq(comms[0], "test-census");
        ck_assert_str_eq(comms[3], "");
        /* What /proc says, as root. */
        ck_assert_int_eq(census_find_owners("/proc", inodes, 4, proc_pids), 0);
        ck_assert_int_eq(memcmp(pids, proc_pids, sizeof(pids)), 0);
        /* Once we close the second, the child holds it. */
        shared = safe_close(shared);
        ck_assert_int_eq(census_owners(c, inodes, 2, pids, NULL), 0);
        ck_assert_int_eq(pids[0], getpid());
        ck_assert_int_eq(pids[1], child);
        ck_assert_int_eq(write(pipefd[1], "x", 1), 1);
        ck_assert_int_eq(waitpid(child, &status, 0), child);
        close(pipefd[0]);
        close(pipefd[1]);
        ck_assert_int_eq(census_owners(c, inodes, 2, pids, NULL), 0);
        ck_assert_int_eq(pids[1], 0);
        ck_assert_int_eq(census_owners(c, NULL, 0, NULL, NULL), 0);
        ck_assert_int_eq(census_owners(NULL, inodes, 1, pids, NULL), -EINVAL);
}
END_TEST

START_TEST(test_tcp_listeners) {
        int family = families[_i];
        _cleanup_(census_freep) Census *c = NULL;
        _cleanup_free_ CensusSocket *socks = NULL;
        _cleanup_close_ int a = -EBADF, b = -EBADF, other = -EBADF, client = -EBADF;
        _cleanup_close_ int udp = -EBADF;
        const CensusSocket *s_a, *s_b, *s_other;
        size_t n = 0;

        ck_assert_int_eq(census_new(&c), 0);
        a = bound(family, SOCK_STREAM, NULL, true, false);
        b = bound(family, SOCK_STREAM, NULL, true, false);
        /* SO_REUSEPORT with the same owner: no bind conflict, but a group of its own (a
         * group is one address). */
        other = bound(family, SOCK_STREAM, family == AF_INET ? "0.0.0.0" : "::", true, false);
        udp = bound(family, SOCK_DGRAM, NULL, false, false);
        client = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(client, 0);
        connect_to(client, family, PORT);
        /* The server's end is established (in a or b's accept queue) as soon as connect() returns. */

        scan_port(c, IPPROTO_TCP, &socks, &n);
        /* Listeners only: neither end of the connection, nor the UDP socket. */
        ck_assert_uint_eq(n, 3);
        s_a = find_fd(socks, n, a);
        s_b = find_fd(socks, n, b);
        s_other = find_fd(socks, n, other);
        ck_assert_int_eq(s_a->protocol, IPPROTO_TCP);
        ck_assert_uint_ne(s_a->group, 0);
        ck_assert_uint_eq(s_a->group, s_b->group);
        ck_assert_uint_ne(s_other->group, 0);
        ck_assert_uint_ne(s_other->group, s_a->group);
        ck_assert(!s_a->connected);
        /* A wildcard listener next to a group on loopback only gets what the group does not. */
        ck_assert_int_eq(census_classify(s_other, s_a), CENSUS_NORMAL);
        ck_assert_int_eq(census_classify(s_a, s_other), CENSUS_OUTSIDE);
        ck_assert_int_eq(census_fd_in_group_of(c, b, a), 1);
        ck_assert_int_eq(census_fd_in_group_of(c, client, a), -ENOENT);
}
END_TEST

START_TEST(test_ports_and_arguments) {
        _cleanup_(census_freep) Census *c = NULL;
        _cleanup_free_ CensusSocket *socks = NULL;
        _cleanup_close_ int watched = -EBADF, other = -EBADF;
        CensusPort ports[] = { { IPPROTO_UDP, PORT }, { IPPROTO_UDP, PORT }, { IPPROTO_TCP, PORT } };
        CensusPort bad = { IPPROTO_ICMP, PORT };
        struct sockaddr_storage sa;
        socklen_t len = make_addr(AF_INET, NULL, PORT + 1, &sa);
        unsigned fds_before;
        size_t n = 1;

        fds_before = count_open_fds();
        ck_assert_int_eq(census_new(&c), 0);
        watched = bound(AF_INET, SOCK_DGRAM, NULL, false, false);
        other = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_int_eq(bind(other, (struct sockaddr *) &sa, len), 0);

        /* Duplicates are harmless; another port is not listed. */
        ck_assert_int_eq(census_scan(c, ports, ELEMENTSOF(ports), &socks, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(socks[0].cookie, cookie_of(watched));
        free(socks);
        socks = NULL;
        ck_assert_int_eq(census_scan(c, ports, 0, &socks, &n), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_ptr_null(socks);
        ck_assert_int_eq(census_scan(c, &bad, 1, &socks, &n), -EINVAL);
        ck_assert_int_eq(census_scan(NULL, ports, 1, &socks, &n), -EINVAL);
        ck_assert_int_eq(census_fd_in_group_of(c, -1, watched), -EBADF);

        for (unsigned i = 0; i < 50; i++) {
                ck_assert_int_eq(census_scan(c, ports, 1, &socks, &n), 0);
                free(socks);
                socks = NULL;
        }
        c = census_free(c);
        watched = safe_close(watched);
        other = safe_close(other);
        ck_assert_uint_eq(count_open_fds(), fds_before);
}
END_TEST

/* In a child with exactly these capabilities: exits 0 if the census loads and scans, else the
 * errno. */
static int load_with_caps(const cap_value_t *keep, int n_keep) {
        pid_t pid = fork();
        int status;

        if (pid == 0) {
                Census *c = NULL;
                CensusSocket *socks = NULL;
                CensusPort p = { IPPROTO_UDP, PORT };
                cap_t caps = cap_init();
                size_t n;
                int r;

                if (!caps || cap_set_flag(caps, CAP_EFFECTIVE, n_keep, keep, CAP_SET) < 0 ||
                    cap_set_flag(caps, CAP_PERMITTED, n_keep, keep, CAP_SET) < 0 || cap_set_proc(caps) < 0)
                        _exit(100);
                r = census_new(&c);
                if (r >= 0)
                        r = census_scan(c, &p, 1, &socks, &n);
                census_free(c);
                free(socks);
                _exit(r < 0 ? -r : 0);
        }
        ck_assert_int_gt(pid, 0);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status));
        return WEXITSTATUS(status);
}

START_TEST(test_capabilities) {
        const cap_value_t unit[] = { CAP_BPF, CAP_NET_ADMIN };
        const cap_value_t with_perfmon[] = { CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON };
        int r;

        r = load_with_caps(unit, ELEMENTSOF(unit));
        ck_assert_msg(r == EPERM, "with CAP_BPF and CAP_NET_ADMIN only the census gave %d (%s), not EPERM", r,
                      strerror(r));
        r = load_with_caps(with_perfmon, ELEMENTSOF(with_perfmon));
        ck_assert_msg(r == 0, "with CAP_PERFMON added the census failed: %s", strerror(r));
}
END_TEST

static Suite *census_suite(void) {
        Suite *s = suite_create("census");
        TCase *tc = tcase_create("groups");

        tcase_set_timeout(tc, 60);
        tcase_add_loop_test(tc, test_connected_socket_hosts_a_new_group, 0, ELEMENTSOF(families));
        tcase_add_loop_test(tc, test_recipe_keeps_one_group, 0, ELEMENTSOF(families));
        tcase_add_test(tc, test_owner_uid_and_pid);
        tcase_add_test(tc, test_owners_from_the_kernel);
        tcase_add_loop_test(tc, test_tcp_listeners, 0, ELEMENTSOF(families));
        suite_add_tcase(s, tc);
        tc = tcase_create("interface");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_ports_and_arguments);
        tcase_add_test(tc, test_capabilities);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr;
        int r, n_failed;

        r = datapath_setup("test-census");
        if (r >= 0)
                return r;
        sr = srunner_create(census_suite());
        srunner_set_fork_status(sr, CK_FORK);
        srunner_run_all(sr, CK_ENV);
        n_failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
