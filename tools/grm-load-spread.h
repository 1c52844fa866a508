/* SPDX-License-Identifier: MIT */
/*
 * grm-load's many-flows mode (grm-load-spread.c), chosen by --spread on the command line.
 */
#pragma once

/* Parses the whole command line in spread mode, runs, reports. Returns grm-load's exit status. */
int load_spread_main(int argc, char *argv[]);
