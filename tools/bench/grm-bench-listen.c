/* SPDX-License-Identifier: MIT */
/*
 * grm-bench-listen: socket activation of one UDP socket, for the "shared socket" baseline of
 * tools/bench/restart-disruption. Like `systemd-socket-activate --datagram`, but it execs the
 * command at once (systemd-socket-activate waits for a first datagram) and sizes the socket's
 * receive buffer like the other scenarios' sockets (systemd-socket-activate cannot, and
 * net.core.rmem_default cannot be changed inside a network namespace).
 *
 * Opens a UDP socket bound to ADDR:PORT (no SO_REUSEPORT: one socket, shared by whoever inherits
 * it), puts it at fd 3, sets LISTEN_FDS=1, LISTEN_PID=<own pid>, LISTEN_FDNAMES=bench and execs
 * COMMAND, which keeps the pid.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "macro.h"
#include "tools-util.h"

static int help(void) {
        printf("Usage: %s [--receive-buffer BYTES] ADDR:PORT COMMAND [ARG...]\n"
               "\n"
               "Opens one UDP socket bound to ADDR:PORT and execs COMMAND with it as fd 3\n"
               "(LISTEN_FDS=1, LISTEN_PID, LISTEN_FDNAMES=bench).\n"
               "\n"
               "  -b --receive-buffer BYTES  SO_RCVBUF (SO_RCVBUFFORCE as root)\n"
               "  -h --help                  show this help\n",
               program_invocation_short_name);
        return 0;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help",           no_argument,       NULL, 'h' },
                { "receive-buffer", required_argument, NULL, 'b' },
                {}
        };
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_storage ss;
        socklen_t len;
        uint64_t rcvbuf = 0;
        char pid[32];
        int c, gai = 0, r;

        /* '+': the options of COMMAND are not ours. */
        while ((c = getopt_long(argc, argv, "+hb:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return help();
                case 'b':
                        if (parse_u64_range(optarg, 1, INT32_MAX, &rcvbuf) < 0) {
                                fprintf(stderr, "%s: --receive-buffer: expected bytes, got '%s'\n",
                                        program_invocation_short_name, optarg);
                                return 2;
                        }
                        break;
                default:
                        return 2;
                }
        if (argc - optind < 2) {
                fprintf(stderr, "%s: expected ADDR:PORT COMMAND [ARG...]; see --help\n", program_invocation_short_name);
                return 2;
        }

        r = resolve_udp_address(argv[optind], false, true, &ss, &len, &gai);
        if (r < 0) {
                fprintf(stderr, "%s: cannot resolve '%s'\n", program_invocation_short_name, argv[optind]);
                return 2;
        }
        fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
        if (fd < 0 || (rcvbuf > 0 && socket_set_buffer(fd, SO_RCVBUF, (int) rcvbuf) < 0) ||
            bind(fd, (struct sockaddr *) &ss, len) < 0) {
                fprintf(stderr, "%s: cannot open a UDP socket on %s: %m\n", program_invocation_short_name,
                        argv[optind]);
                return 1;
        }

        /* fd 3, inheritable. */
        if (fd != SD_LISTEN_FDS_START) {
                if (dup2(fd, SD_LISTEN_FDS_START) < 0) {
                        fprintf(stderr, "%s: dup2(): %m\n", program_invocation_short_name);
                        return 1;
                }
                fd = safe_close(fd);
        } else if (fcntl(fd, F_SETFD, 0) < 0) {
                fprintf(stderr, "%s: fcntl(): %m\n", program_invocation_short_name);
                return 1;
        } else
                (void) TAKE_FD(fd);

        (void) snprintf(pid, sizeof(pid), "%d", (int) getpid());
        if (setenv("LISTEN_FDS", "1", 1) < 0 || setenv("LISTEN_PID", pid, 1) < 0 ||
            setenv("LISTEN_FDNAMES", "bench", 1) < 0) {
                fprintf(stderr, "%s: setenv(): %m\n", program_invocation_short_name);
                return 1;
        }
        execvp(argv[optind + 1], argv + optind + 1);
        fprintf(stderr, "%s: cannot execute %s: %m\n", program_invocation_short_name, argv[optind + 1]);
        return 1;
}
