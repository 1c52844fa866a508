/* SPDX-License-Identifier: MIT */
/*
 * grm-load's TCP mode (grm-load-tcp.c), chosen by --tcp on the command line.
 */
#pragma once

/* Parses the whole command line in TCP mode, runs, reports. Returns grm-load's exit status. */
int load_tcp_main(int argc, char *argv[]);
