/* SPDX-License-Identifier: MIT */
/*
 * per-client-race: stands for a connect-per-client server with forked workers, to measure the
 * race libgrm-bind.so's shared lock (GRM_BIND_LOCK) closes (integration/per-client-race).
 *
 * Socket-activated with one UDP socket (fd 3, grm's generation socket), it sends READY=1, then
 * forks WORKERS processes that each, for SECONDS, make per-client sockets as fast as they can:
 * socket, SO_REUSEADDR + SO_REUSEPORT, bind to fd 3's address (through the preloaded library),
 * send one probe datagram from the worker's own client socket to that address, connect the
 * per-client socket to a peer that never answers, close it. A per-client socket inside grm's
 * group never gets the probe (grm's program selects fd 3); one bound in the moment another
 * process's socket was connected but still had SO_REUSEPORT lands in a group without grm's
 * program, and the probe goes to it (or to that connected socket) instead of fd 3. The parent
 * counts the probes fd 3 receives, and prints
 *     sent=N received=M misdelivered=N-M
 * Then it waits for SIGTERM (grmd's drain) and exits 0; 1 on a setup error.
 *
 * Usage: per-client-race WORKERS SECONDS
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <systemd/sd-daemon.h>

#define WORKERS_MAX 8
#define DRAIN_SEC   5ULL  /* how long probes sent may take to arrive, at most */

static uint64_t now_nsec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

/* One worker: per-client sockets until the deadline; writes its probe count to out. */
static int worker(const struct sockaddr_storage *service, socklen_t len, unsigned index, uint64_t deadline,
                  int out) {
        struct sockaddr_storage peer = *service;
        uint64_t sent = 0;
        int client, one = 1;

        client = socket(service->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (client < 0)
                return 1;
        for (uint32_t i = 0; now_nsec() < deadline; i++) {
                int fd = socket(service->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                uint16_t port = (uint16_t) (20000 + (index * 5000 + i % 5000));

                if (fd < 0)
                        return 1;
                if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
                    bind(fd, (const struct sockaddr *) service, len) < 0) {
                        fprintf(stderr, "per-client-race: worker %u: bind: %m\n", index);
                        close(fd);
                        return 1;
                }
                if (sendto(client, "probe", 5, 0, (const struct sockaddr *) service, len) == 5)
                        sent++;
                /* a peer that is never there: only the connect() matters */
                if (peer.ss_family == AF_INET)
                        ((struct sockaddr_in *) &peer)->sin_port = htons(port);
                else
                        ((struct sockaddr_in6 *) &peer)->sin6_port = htons(port);
                if (connect(fd, (const struct sockaddr *) &peer, len) < 0) {
                        fprintf(stderr, "per-client-race: worker %u: connect: %m\n", index);
                        close(fd);
                        return 1;
                }
                close(fd);
        }
        if (write(out, &sent, sizeof(sent)) != sizeof(sent))
                return 1;
        return 0;
}

/* Receives the probes waiting on grm's socket (fd 3), after up to timeout_msec for the first. */
static uint64_t count_probes(int timeout_msec) {
        struct pollfd p = { .fd = 3, .events = POLLIN };
        uint64_t n = 0;
        char buf[64];

        if (poll(&p, 1, timeout_msec) > 0)
                for (ssize_t r; (r = recv(3, buf, sizeof(buf), MSG_DONTWAIT)) >= 0;)
                        /* only the workers' probes: grmd sends its own (verify.c) */
                        if (r == 5 && memcmp(buf, "probe", 5) == 0)
                                n++;
        return n;
}

int main(int argc, char **argv) {
        struct sockaddr_storage service;
        socklen_t len = sizeof(service);
        unsigned workers;
        double seconds;
        uint64_t sent = 0, received = 0, deadline, drain_until;
        pid_t pids[WORKERS_MAX];
        int pipefd[2], failed = 0;

        if (argc != 3 || (workers = (unsigned) atoi(argv[1])) < 1 || workers > WORKERS_MAX ||
            (seconds = atof(argv[2])) <= 0 || seconds > 60) {
                fprintf(stderr, "usage: per-client-race WORKERS(1-%d) SECONDS(0-60]\n", WORKERS_MAX);
                return 1;
        }
        if (sd_listen_fds(0) != 1 || getsockname(3, (struct sockaddr *) &service, &len) < 0) {
                fprintf(stderr, "per-client-race: expected one socket-activated UDP socket\n");
                return 1;
        }
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return 1;
        (void) sd_notify(0, "READY=1");

        deadline = now_nsec() + (uint64_t) (seconds * 1e9);
        for (unsigned i = 0; i < workers; i++) {
                pids[i] = fork();
                if (pids[i] < 0)
                        return 1;
                if (pids[i] == 0)
                        _exit(worker(&service, len, i, deadline, pipefd[1]));
        }
        close(pipefd[1]);

        /* Count the probes grm's socket gets while the workers run; then, once every worker
         * has exited and said how many it sent, until all have arrived or DRAIN_SEC passed. (A
         * worker can send its last probe well after the deadline on a loaded machine, and the
         * loopback delivers it in softirq, which ksoftirqd may run later still: a fixed moment
         * after the deadline once counted a probe that arrived later as misdelivered.) */
        while (now_nsec() < deadline)
                received += count_probes(50);
        for (unsigned i = 0; i < workers; i++) {
                int status = 0;
                uint64_t n;
                pid_t w;

                while ((w = waitpid(pids[i], &status, WNOHANG)) == 0)
                        received += count_probes(10);
                if (w < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        failed++;
                else if (read(pipefd[0], &n, sizeof(n)) == sizeof(n))
                        sent += n;
        }
        drain_until = now_nsec() + DRAIN_SEC * 1000000000ULL;
        while (received < sent && now_nsec() < drain_until)
                received += count_probes(50);
        printf("sent=%" PRIu64 " received=%" PRIu64 " misdelivered=%" PRIu64 "\n", sent, received,
               sent > received ? sent - received : 0);
        fflush(stdout);
        if (failed) {
                fprintf(stderr, "per-client-race: %d worker(s) failed\n", failed);
                return 1;
        }
        /* Then serve nothing until grmd says drain: an instance that exits on its own is a crash. */
        {
                sigset_t set;
                int sig;

                sigemptyset(&set);
                sigaddset(&set, SIGTERM);
                sigprocmask(SIG_BLOCK, &set, NULL);
                (void) sigwait(&set, &sig);
        }
        return 0;
}
