/* SPDX-License-Identifier: MIT */
/*
 * Test helper for integration/seccomp (x86-64 only): tries SO_DETACH_REUSEPORT_BPF on fd 3
 * through the 32-bit system call ABI (int 0x80), both as setsockopt() and as
 * socketcall(SYS_SETSOCKOPT), and prints "NAME RESULT" lines (RESULT: ok or the errno name).
 * A filter written for the native ABI alone would let these through.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define I386_NR_SOCKETCALL  102
#define I386_NR_SETSOCKOPT  366
#define SOL_SOCKET_         1
#define SO_DETACH_REUSEPORT 68
#define SYS_SETSOCKOPT      14

static long int80(long nr, long a, long b, long c, long d, long e) {
        long ret;
        __asm__ volatile("int $0x80"
                         : "=a"(ret)
                         : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
                         : "memory", "r8", "r9", "r10", "r11");
        return ret;
}

static void report(const char *name, long ret) {
        if (ret >= 0)
                printf("%s ok\n", name);
        else
                printf("%s %s\n", name, -ret == EPERM ? "EPERM" : strerror((int) -ret));
}

int main(void) {
        /* Arguments the 32-bit ABI reads from memory must be below 4 GiB. */
        uint32_t *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);

        if (low == MAP_FAILED) {
                perror("mmap");
                return 1;
        }
        low[0] = 0; /* the option's value */
        report("detach-int80", int80(I386_NR_SETSOCKOPT, 3, SOL_SOCKET_, SO_DETACH_REUSEPORT,
                                     (long) (uintptr_t) low, 4));
        /* socketcall's argument block: fd, level, name, optval, optlen */
        uint32_t *args = low + 16;
        args[0] = 3;
        args[1] = SOL_SOCKET_;
        args[2] = SO_DETACH_REUSEPORT;
        args[3] = (uint32_t) (uintptr_t) low;
        args[4] = 4;
        report("socketcall-detach-int80", int80(I386_NR_SOCKETCALL, SYS_SETSOCKOPT, (long) (uintptr_t) args, 0, 0, 0));
        return 0;
}
