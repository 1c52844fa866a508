/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "flow-clock.h"
#include "macro.h"

#include "flow_clock.skel.h"

struct FlowClock {
        struct flow_clock *skel;
};

/* HZ does not change while the kernel runs: measured once per process. */
static unsigned measured_hz;

int flow_clock_new(FlowClock **ret) {
        FlowClock *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->skel = flow_clock__open_and_load();
        if (!c->skel) {
                int r = errno > 0 ? -errno : -EINVAL;

                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

FlowClock *flow_clock_free(FlowClock *c) {
        if (c) {
                flow_clock__destroy(c->skel);
                free(c);
        }
        return NULL;
}

/* One run of the clock program: the tick and the CLOCK_MONOTONIC time of one instant. */
static int clock_read(FlowClock *c, uint32_t *ret_tick, uint64_t *ret_ns) {
        /* A socket filter's test run wants at least an Ethernet header of data. (Somewhere to
         * copy it back to as well: valgrind checks data_out whether or not it is set.) */
        uint8_t data[64] = {}, out[64];
        LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data, .data_size_in = sizeof(data), .data_out = out,
                    .data_size_out = sizeof(out), .repeat = 1);

        if (bpf_prog_test_run_opts(bpf_program__fd(c->skel->progs.grm_flow_clock), &opts) < 0)
                return errno > 0 ? -errno : -EIO;
        *ret_tick = opts.retval;
        if (ret_ns)
                *ret_ns = c->skel->bss->clock_ns;
        return 0;
}

int flow_clock_now(FlowClock *c, uint32_t *ret) {
        return clock_read(c, ret, NULL);
}

/* A tick edge, bracketed: the clock turned to *ret_tick after *ret_lo and by *ret_hi (ns).
 * Spins (at most 100 ms) until it sees the tick change by one. */
static int next_edge(FlowClock *c, uint32_t *ret_tick, uint64_t *ret_lo, uint64_t *ret_hi) {
        uint32_t prev, t;
        uint64_t prev_ns, ns, start;
        int r;

        r = clock_read(c, &prev, &prev_ns);
        if (r < 0)
                return r;
        start = prev_ns;
        for (;;) {
                r = clock_read(c, &t, &ns);
                if (r < 0)
                        return r;
                if (t == prev + 1) {
                        *ret_tick = t;
                        *ret_lo = prev_ns;
                        *ret_hi = ns;
                        return 0;
                }
                if (ns - start > 100 * 1000 * 1000)
                        return -ETIME;
                prev = t;
                prev_ns = ns;
        }
}

/* One measurement over two tick edges 25 ms or more apart: the
 * least and the most ticks per second they allow. The read that sees an edge first is late by the
 * tick's interrupt (40-200 us in a KVM guest), which runs between the two reads: the edge is just
 * after the read before it, within a read's time (a few us; EDGE_SLACK_NS allows for more), as
 * long as nothing else ran in between (EDGE_MAX_NS). */
#define EDGE_SLACK_NS (20 * 1000)
#define EDGE_MAX_NS (400 * 1000)
static int measure(FlowClock *c, double *ret_min, double *ret_max) {
        const struct timespec gap = { 0, 25 * 1000 * 1000 };
        uint32_t t1, t2;
        uint64_t lo1, hi1, lo2, hi2;
        int r;

        r = next_edge(c, &t1, &lo1, &hi1);
        if (r < 0)
                return r;
        nanosleep(&gap, NULL);
        r = next_edge(c, &t2, &lo2, &hi2);
        if (r < 0)
                return r;
        if (t2 == t1 || hi1 - lo1 > EDGE_MAX_NS || hi2 - lo2 > EDGE_MAX_NS || lo2 <= lo1 + 2 * EDGE_SLACK_NS)
                return -EAGAIN;
        *ret_min = (double) (uint32_t) (t2 - t1) * (double) NSEC_PER_SEC / (double) (lo2 + EDGE_SLACK_NS - lo1);
        *ret_max = (double) (uint32_t) (t2 - t1) * (double) NSEC_PER_SEC / (double) (lo2 - lo1 - EDGE_SLACK_NS);
        return 0;
}

/* Without tight edges (a machine so loaded that every spin was preempted across its edge): two
 * reads 250 ms apart, each tick and time one instant, so only the ticks' granularity is left:
 * +-1 tick, 1.6% at HZ=250. */
static int measure_long(FlowClock *c, double *ret_min, double *ret_max) {
        const struct timespec gap = { 0, 250 * 1000 * 1000 };
        uint32_t t1, t2;
        uint64_t ns1, ns2;
        int r;

        r = clock_read(c, &t1, &ns1);
        if (r < 0)
                return r;
        nanosleep(&gap, NULL);
        r = clock_read(c, &t2, &ns2);
        if (r < 0)
                return r;
        if (ns2 <= ns1 || (uint32_t) (t2 - t1) < 2)
                return -EIO;
        *ret_min = ((double) (uint32_t) (t2 - t1) - 1) * (double) NSEC_PER_SEC / (double) (ns2 - ns1);
        *ret_max = ((double) (uint32_t) (t2 - t1) + 1) * (double) NSEC_PER_SEC / (double) (ns2 - ns1);
        return 0;
}

/* The values CONFIG_HZ takes across architectures: one within [lo, hi] (widened by 0.5%) is the
 * rate; otherwise the middle, rounded. */
static double distance(double a, double b) {
        return a > b ? a - b : b - a;
}

static double snap_hz(double lo, double hi) {
        static const unsigned known[] = { 24, 32, 48, 64, 100, 128, 200, 250, 256, 300, 500, 1000, 1024, 1200 };
        double best = 0;

        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (known[i] >= lo * 0.995 && known[i] <= hi * 1.005 &&
                    (best == 0 || distance(known[i], (lo + hi) / 2) < distance(best, (lo + hi) / 2)))
                        best = known[i];
        return best > 0 ? best : (double) (unsigned) ((lo + hi) / 2 + 0.5);
}

int flow_clock_hz(FlowClock *c, unsigned *ret) {
        double lo = 0, hi = 0, hz, last = 0;
        int r;

        if (measured_hz > 0) {
                *ret = measured_hz;
                return 0;
        }
        /* Tight measurements (bounds within 1% of each other) snapped to a known HZ; two in a
         * row that agree are the rate. One of them can still be off (an edge seen late by more
         * than the slack, measured here once in a few dozen), hence two. */
        for (unsigned attempt = 0; attempt < 10; attempt++) {
                r = measure(c, &lo, &hi);
                if (r == -EAGAIN || r == -ETIME || (r == 0 && hi > lo * 1.01))
                        continue;
                if (r < 0)
                        return r;
                hz = snap_hz(lo, hi);
                if (hz == last)
                        goto done;
                last = hz;
        }
        /* A machine so loaded that the spins kept being preempted at their edges. */
        r = measure_long(c, &lo, &hi);
        if (r < 0)
                return r;
        hz = snap_hz(lo, hi);
done:
        if (hz < 1 || hz > 100000)
                return -ERANGE;
        measured_hz = (unsigned) hz;
        *ret = measured_hz;
        return 0;
}

uint64_t flow_clock_ticks(uint64_t ns, unsigned hz) {
        uint64_t secs = ns / NSEC_PER_SEC, rest = ns % NSEC_PER_SEC;

        if (hz > 0 && secs > UINT64_MAX / hz)
                return UINT64_MAX;
        return secs * hz + rest * hz / NSEC_PER_SEC;
}
