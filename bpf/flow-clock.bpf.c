// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
/*
 * The flow table's clock, for grmd: the steering program stamps flow entries with the kernel's
 * jiffies (bpf_jiffies64(), which the verifier inlines into one load; bpf_ktime_get_coarse_ns()
 * is a helper call, and helper returns are dear on CPUs with return-stack mitigations). grmd
 * runs this program with BPF_PROG_TEST_RUN to read the same clock: its return value is the low
 * 32 bits of jiffies, as the entries keep them, and clock_ns the CLOCK_MONOTONIC time of the
 * same run (a program runs without being preempted, so the two are one instant), from which
 * src/shared/flow-clock.c measures the clock's rate.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

__u64 clock_ns;

SEC("socket")
int grm_flow_clock(struct __sk_buff *skb) {
        __u32 jiffies = (__u32) bpf_jiffies64();

        clock_ns = bpf_ktime_get_ns();
        return (int) jiffies;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
