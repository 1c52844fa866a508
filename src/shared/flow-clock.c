/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "flow-clock.h"
#include "macro.h"

#include "flow_clock.skel.h"

static struct flow_clock *skel;
static unsigned measured_hz;

static int clock_prog_fd(void) {
        if (!skel) {
                struct flow_clock *s = flow_clock__open_and_load();

                if (!s)
                        return errno > 0 ? -errno : -EINVAL;
                skel = s;
        }
        return bpf_program__fd(skel->progs.grm_flow_clock);
}

int flow_clock_now(uint32_t *ret) {
        /* A socket filter's test run wants at least an Ethernet header of data. */
        uint8_t data[64] = {};
        LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data, .data_size_in = sizeof(data), .repeat = 1);
        int fd = clock_prog_fd();

        if (fd < 0)
                return fd;
        if (bpf_prog_test_run_opts(fd, &opts) < 0)
                return errno > 0 ? -errno : -EIO;
        *ret = opts.retval;
        return 0;
}

static uint64_t monotonic_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

/* Waits (spinning, at most a second) for the tick to change: the tick it changed to and when. */
static int next_edge(uint32_t *ret_tick, uint64_t *ret_ns) {
        uint32_t first, t;
        uint64_t start = monotonic_ns(), ns;
        int r;

        r = flow_clock_now(&first);
        if (r < 0)
                return r;
        do {
                r = flow_clock_now(&t);
                if (r < 0)
                        return r;
                ns = monotonic_ns();
                if (ns - start > NSEC_PER_SEC)
                        return -ETIME;
        } while (t == first);
        *ret_tick = t;
        *ret_ns = ns;
        return 0;
}

/* One measurement: ticks between two edges 12 ms or more apart (one tick at least, at HZ=100), per second. */
static int measure(double *ret) {
        const struct timespec gap = { 0, 12 * 1000 * 1000 };
        uint32_t t1, t2;
        uint64_t ns1, ns2;
        int r;

        r = next_edge(&t1, &ns1);
        if (r < 0)
                return r;
        nanosleep(&gap, NULL);
        r = next_edge(&t2, &ns2);
        if (r < 0)
                return r;
        if (ns2 <= ns1 || t2 == t1)
                return -EAGAIN;
        *ret = (double) (uint32_t) (t2 - t1) * (double) NSEC_PER_SEC / (double) (ns2 - ns1);
        return 0;
}

/* The values CONFIG_HZ takes across architectures: a measurement within 2% of one is that one. */
static unsigned snap_hz(double hz) {
        static const unsigned known[] = { 24, 32, 48, 64, 100, 128, 200, 250, 256, 300, 500, 1000, 1024, 1200 };

        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (hz > known[i] * 0.98 && hz < known[i] * 1.02)
                        return known[i];
        return (unsigned) (hz + 0.5);
}

int flow_clock_hz(unsigned *ret) {
        double last = 0;
        int r;

        if (measured_hz > 0) {
                *ret = measured_hz;
                return 0;
        }
        /* An edge seen late (preempted between the test run and the clock read, a tick
         * delayed under a hypervisor) skews one measurement: take two that agree within 1%. */
        for (unsigned attempt = 0; attempt < 8; attempt++) {
                double hz;

                r = measure(&hz);
                if (r == -EAGAIN)
                        continue;
                if (r < 0)
                        return r;
                if (last > 0 && hz > last * 0.99 && hz < last * 1.01) {
                        double mean = (hz + last) / 2;

                        if (mean < 1 || mean > 100000)
                                return -ERANGE;
                        measured_hz = snap_hz(mean);
                        *ret = measured_hz;
                        return 0;
                }
                last = hz;
        }
        return -ETIME;
}

uint64_t flow_clock_ticks(uint64_t ns, unsigned hz) {
        uint64_t secs = ns / NSEC_PER_SEC, rest = ns % NSEC_PER_SEC;

        if (hz > 0 && secs > UINT64_MAX / hz)
                return UINT64_MAX;
        return secs * hz + rest * hz / NSEC_PER_SEC;
}
