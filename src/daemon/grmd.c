/* SPDX-License-Identifier: MIT */
/*
 * grmd's main(): the command line, signal set-up, and the Manager's life. Everything else is
 * in the daemon library so the tests link the same code.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/capability.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "macro.h"
#include "manager.h"

static void help(void) {
        printf("Usage: grmd [OPTIONS] [--] COMMAND [ARG...]\n"
               "\n"
               "Supervise a UDP (and TCP) service for zero-downtime restarts: spawn COMMAND with\n"
               "fresh SO_REUSEPORT sockets per generation (socket activation), wait for READY=1,\n"
               "steer new flows and connections to it, drain the old instance. Sockets come from\n"
               "systemd (sd_listen_fds) and/or --listen.\n"
               "\n"
               "  -c --config FILE                 config file (re-read at every restart)\n"
               "  -l --listen udp:ADDR:PORT        open and manage this address (repeatable);\n"
               "     --listen tcp:ADDR:PORT        tcp: for a TCP listener\n"
               "  -C --control PATH                control socket (default $RUNTIME_DIRECTORY/grmd.sock)\n"
               "     --receive-buffer BYTES        SO_RCVBUF of every socket grmd opens (K, M, G)\n"
               "     --dissector none|flow|quic    how existing flows are recognised (default flow)\n"
               "     --sockets-per-generation N    sockets per address for each instance (default 1)\n"
               "     --flow-table-size N           flow table entries (default 65536)\n"
               "     --flow-timeout SEC            idle time after which a flow is new (default 125)\n"
               "     --flows-per-source N          flow entries one address (IPv6: /64) may make per\n"
               "                                   flow timeout (default 0: no quota)\n"
               "     --quic-server-id-prefix HEX   octets in front of grm's in QUIC server IDs (0-8)\n"
               "     --quic-config-id N            QUIC-LB config id given to new instances (0-6)\n"
               "     --start-timeout SEC           time to READY=1 before rollback (default 90)\n"
               "     --drain-timeout SEC           time an old instance may drain (default 60)\n"
               "     --drain-signal SIG            signal that starts the drain (default SIGTERM)\n"
               "     --settle-sec SEC              time a new instance must hold before the old one\n"
               "                                   drains; a crash within it rolls back (default 1)\n"
               "     --exec-check CMD              command that must succeed before each restart\n"
               "     --user USER                   run instances as USER (no capabilities either way)\n"
               "     --intercept-bind              instances that bind their own sockets get grm's\n"
               "                                   (for servers without socket activation)\n"
               "     --connect-per-client          instances bind and connect a socket per client\n"
               "                                   on grm's addresses (keeps them in grm's group)\n"
               "  -h --help                        show this help\n"
               "     --version                     show the version\n"
               "\n"
               "Settings on the command line override the config file. See grmd(8).\n");
}

enum {
        ARG_VERSION = 0x100,
        ARG_DISSECTOR,
        ARG_RECEIVE_BUFFER,
        ARG_SOCKETS,
        ARG_FLOW_TABLE,
        ARG_FLOW_TIMEOUT,
        ARG_FLOWS_PER_SOURCE,
        ARG_START_TIMEOUT,
        ARG_DRAIN_TIMEOUT,
        ARG_DRAIN_SIGNAL,
        ARG_SETTLE,
        ARG_EXEC_CHECK,
        ARG_USER,
        ARG_INTERCEPT_BIND,
        ARG_CONNECT_PER_CLIENT,
        ARG_QUIC_PREFIX,
        ARG_QUIC_CONFIG_ID,
};

static int parse_argv(int argc, char *argv[], Manager *m) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, 'c' },
                { "listen", required_argument, NULL, 'l' },
                { "control", required_argument, NULL, 'C' },
                { "dissector", required_argument, NULL, ARG_DISSECTOR },
                { "receive-buffer", required_argument, NULL, ARG_RECEIVE_BUFFER },
                { "sockets-per-generation", required_argument, NULL, ARG_SOCKETS },
                { "flow-table-size", required_argument, NULL, ARG_FLOW_TABLE },
                { "flow-timeout", required_argument, NULL, ARG_FLOW_TIMEOUT },
                { "flows-per-source", required_argument, NULL, ARG_FLOWS_PER_SOURCE },
                { "start-timeout", required_argument, NULL, ARG_START_TIMEOUT },
                { "drain-timeout", required_argument, NULL, ARG_DRAIN_TIMEOUT },
                { "drain-signal", required_argument, NULL, ARG_DRAIN_SIGNAL },
                { "settle-sec", required_argument, NULL, ARG_SETTLE },
                { "exec-check", required_argument, NULL, ARG_EXEC_CHECK },
                { "user", required_argument, NULL, ARG_USER },
                { "intercept-bind", no_argument, NULL, ARG_INTERCEPT_BIND },
                { "connect-per-client", no_argument, NULL, ARG_CONNECT_PER_CLIENT },
                { "quic-server-id-prefix", required_argument, NULL, ARG_QUIC_PREFIX },
                { "quic-config-id", required_argument, NULL, ARG_QUIC_CONFIG_ID },
                {}
        };
        Config *c = &m->cli;
        uint64_t u;
        int opt, r;

        /* '+': stop at the first non-option, so COMMAND's own options are left alone. */
        while ((opt = getopt_long(argc, argv, "+hc:l:C:", options, NULL)) >= 0) {
                switch (opt) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("grmd %s\n", GRM_VERSION);
                        return 0;
                case 'c':
                        free(m->config_path);
                        m->config_path = strdup(optarg);
                        if (!m->config_path)
                                return log_error_errno(ENOMEM, "Out of memory.");
                        break;
                case 'l': {
                        r = parse_listen_address(optarg, NULL, NULL, NULL);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --listen address '%s' (expected udp:ADDR:PORT or tcp:ADDR:PORT, IPv6 in brackets).", optarg);
                        if (strv_extend(&c->listen, optarg) < 0)
                                return log_error_errno(ENOMEM, "Out of memory.");
                        break;
                }
                case 'C':
                        if (optarg[0] != '/')
                                return log_error_errno(EINVAL, "--control needs an absolute path: %s", optarg);
                        free(c->control_path);
                        c->control_path = strdup(optarg);
                        if (!c->control_path)
                                return log_error_errno(ENOMEM, "Out of memory.");
                        break;
                case ARG_DISSECTOR:
                        r = dissector_from_string(optarg);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --dissector '%s' (none, flow or quic).", optarg);
                        c->dissector = r;
                        break;
                case ARG_RECEIVE_BUFFER:
                        r = parse_size(optarg, CONFIG_BUFFER_MIN, CONFIG_BUFFER_MAX, &u);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --receive-buffer '%s' (4096..1G, K/M/G suffixes).", optarg);
                        c->receive_buffer = u;
                        break;
                case ARG_SOCKETS:
                        r = parse_unsigned(optarg, 1, CONFIG_SOCKETS_MAX, &u);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --sockets-per-generation '%s' (1..%u).", optarg, CONFIG_SOCKETS_MAX);
                        c->sockets_per_generation = (unsigned) u;
                        break;
                case ARG_FLOWS_PER_SOURCE:
                        r = parse_unsigned(optarg, 0, CONFIG_FLOW_TABLE_MAX, &u);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --flows-per-source '%s' (0..%u).", optarg,
                                                       CONFIG_FLOW_TABLE_MAX);
                        c->flows_per_source = (int64_t) u;
                        break;
                case ARG_FLOW_TABLE:
                        r = parse_unsigned(optarg, CONFIG_FLOW_TABLE_MIN, CONFIG_FLOW_TABLE_MAX, &u);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --flow-table-size '%s' (%u..%u).", optarg,
                                                       CONFIG_FLOW_TABLE_MIN, CONFIG_FLOW_TABLE_MAX);
                        c->flow_table_size = (unsigned) u;
                        break;
                case ARG_FLOW_TIMEOUT:
                case ARG_START_TIMEOUT:
                case ARG_DRAIN_TIMEOUT:
                        r = parse_sec(optarg, &u);
                        if (r < 0 || u == 0)
                                return log_error_errno(r < 0 ? r : -EINVAL, "Invalid time span '%s'.", optarg);
                        if (u == UINT64_MAX && opt != ARG_DRAIN_TIMEOUT)
                                return log_error_errno(EINVAL, "Time span '%s' must be finite.", optarg);
                        if (u == UINT64_MAX)
                                u = CONFIG_DRAIN_TIMEOUT_INFINITY;
                        if (opt == ARG_FLOW_TIMEOUT)
                                c->flow_timeout_usec = u;
                        else if (opt == ARG_START_TIMEOUT)
                                c->start_timeout_usec = u;
                        else
                                c->drain_timeout_usec = u;
                        break;
                case ARG_SETTLE:
                        r = parse_settle(optarg, &u);
                        if (r < 0)
                                return log_error_errno(r == -ERANGE ? -EINVAL : r,
                                                       "Invalid --settle-sec '%s' (0 up to 1h, finite).", optarg);
                        c->settle_usec = u;
                        break;
                case ARG_DRAIN_SIGNAL:
                        r = parse_signal(optarg);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --drain-signal '%s'.", optarg);
                        c->drain_signal = r;
                        break;
                case ARG_EXEC_CHECK:
                        strv_free(c->exec_check);
                        c->exec_check = NULL;
                        r = strv_split_quoted(optarg, &c->exec_check);
                        if (r < 0 || strv_length(c->exec_check) == 0)
                                return log_error_errno(r < 0 ? r : -EINVAL, "Invalid --exec-check '%s'.", optarg);
                        break;
                case ARG_USER:
                        free(c->user);
                        c->user = strdup(optarg);
                        if (!c->user)
                                return log_error_errno(ENOMEM, "Out of memory.");
                        break;
                case ARG_INTERCEPT_BIND:
                        c->intercept_bind = 1;
                        break;
                case ARG_CONNECT_PER_CLIENT:
                        c->connect_per_client = 1;
                        break;
                case ARG_QUIC_PREFIX:
                        r = quic_lb_parse_prefix(optarg, &c->quic_prefix);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --quic-server-id-prefix '%s' (0 to 8 octets in hex, two digits each).", optarg);
                        c->quic_prefix_set = true;
                        break;
                case ARG_QUIC_CONFIG_ID:
                        r = parse_unsigned(optarg, 0, QUIC_LB_CONFIG_ID_MAX, &u);
                        if (r < 0)
                                return log_error_errno(r, "Invalid --quic-config-id '%s' (0..%u).", optarg, QUIC_LB_CONFIG_ID_MAX);
                        c->quic_config_id = (int) u;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return log_error_errno(EINVAL, "Unhandled option.");
                }
        }
        if (optind < argc) {
                r = strv_copy(argv + optind, &c->command);
                if (r < 0)
                        return log_error_errno(r, "Out of memory.");
        }
        return 1;
}

static int libbpf_print(enum libbpf_print_level level, const char *format, va_list ap) {
        char buf[1024];

        if (log_get_max_level() < LOG_DEBUG && level != LIBBPF_WARN)
                return 0;
        vsnprintf(buf, sizeof(buf), format, ap);
        buf[strcspn(buf, "\n")] = 0;
        log_full_errno(level == LIBBPF_WARN ? LOG_WARNING : LOG_DEBUG, 0, "libbpf: %s", buf);
        return 0;
}

/* Loading an sk_reuseport program and creating its maps takes CAP_BPF (or CAP_SYS_ADMIN, which
 * kernels before 5.8 require); nothing else on the kernels grm supports (checked on 6.x: neither
 * CAP_NET_ADMIN, CAP_PERFMON nor CAP_SYS_RESOURCE is needed). Without it libbpf would print
 * half a dozen lines about RLIMIT_MEMLOCK and CONFIG_BPF_SYSCALL that point the wrong way, so
 * grmd checks first and says what is missing, once. */
static int check_bpf_capability(void) {
        cap_flag_value_t bpf = CAP_CLEAR, sys_admin = CAP_CLEAR;
        cap_t caps = cap_get_proc();

        if (!caps)
                return 0; /* cannot tell: let the kernel decide */
        (void) cap_get_flag(caps, CAP_BPF, CAP_EFFECTIVE, &bpf);
        (void) cap_get_flag(caps, CAP_SYS_ADMIN, CAP_EFFECTIVE, &sys_admin);
        cap_free(caps);
        if (bpf == CAP_SET || sys_admin == CAP_SET)
                return 0;
        return log_error_errno(EPERM, "Missing capability CAP_BPF, which loading the steering program needs: "
                               "run it as root with CAP_BPF in the unit's CapabilityBoundingSet= "
                               "(with User=, also in AmbientCapabilities=).");
}

int main(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        sigset_t mask;
        int r;

        log_setup("grmd");
        libbpf_set_print(libbpf_print);

        /* sd-event delivers these through signalfd and pidfds; they must be blocked. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = manager_new(&m);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate manager: %m"), EXIT_FAILURE;
        r = parse_argv(argc, argv, m);
        if (r < 0)
                return 2;
        if (r == 0)
                return EXIT_SUCCESS;

        /* For grmctl reexec: the binary's path (after an upgrade, the new file there) and argv. */
        m->exe_path = realpath("/proc/self/exe", NULL);
        if (m->exe_path) {
                char *deleted = strstr(m->exe_path, " (deleted)");
                if (deleted)
                        *deleted = 0;
        }
        if (strv_copy(argv, &m->argv) < 0)
                return log_error_errno(ENOMEM, "Out of memory."), EXIT_FAILURE;

        r = check_bpf_capability();
        if (r < 0)
                return EXIT_FAILURE;
        r = takeover_startup(m);
        if (r < 0)
                return EXIT_FAILURE;
        r = manager_run(m);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m"), EXIT_FAILURE;
        if (m->reexec_pending)
                return takeover_reexec(m) < 0 ? EXIT_FAILURE : EXIT_SUCCESS; /* returns only on failure */
        manager_clear_fd_store(m);
        manager_release_groups(m);
        return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
