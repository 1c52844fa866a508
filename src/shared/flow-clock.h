/* SPDX-License-Identifier: MIT */
/*
 * The flow table's clock: the kernel's jiffies, as the steering program reads them
 * (bpf_jiffies64(), inlined by the verifier into one load), kept modulo 2^32 in flow entries
 * (bpf/steer-api.h). grmd reads the same clock and measures its rate (CONFIG_HZ, which user space
 * cannot ask for) through a one-instruction socket-filter program run with BPF_PROG_TEST_RUN
 * (bpf/flow-clock.bpf.c). Library code: does not log; -errno returns.
 */
#pragma once

#include <stdint.h>

typedef struct FlowClock FlowClock;

/* Loads the clock's program (CAP_BPF). */
int flow_clock_new(FlowClock **ret);
FlowClock *flow_clock_free(FlowClock *c);

/* The current tick: the low 32 bits of jiffies. */
int flow_clock_now(FlowClock *c, uint32_t *ret);

/* Ticks per second (the kernel's HZ), measured on the first call (about 60 ms: two tick
 * edges around a 25 ms sleep, until two measurements agree) and kept for the process. */
int flow_clock_hz(FlowClock *c, unsigned *ret);

/* ns in ticks of hz per second, rounded down, saturated at UINT64_MAX. */
uint64_t flow_clock_ticks(uint64_t ns, unsigned hz);
