#ifndef FINETUNE_CSYSTEM_SHIM_H
#define FINETUNE_CSYSTEM_SHIM_H
// What Swift cannot call directly from libc and the compiler: the CPU_* affinity macros and the
// cpuid instruction. Header-only (static inline), so declaration and definition cannot drift apart.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // sched_getaffinity and the CPU_* macros
#endif
#include <sched.h>
#include <stdint.h>

// CPU_COUNT / CPU_ISSET are macros over cpu_set_t: the thread budget reads this rank's affinity mask.
static inline int ftd_affinity_cpus(int *cpus, int capacity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < capacity; cpu++)
        if (CPU_ISSET(cpu, &set)) cpus[n++] = cpu;
    return n;
}

// cpuid leaf `leaf`, sub-leaf `subleaf`: registers eax, ebx, ecx, edx into out[0..3]. Returns 0 on
// CPUs without the instruction (non-x86), leaving out zeroed.
static inline int ftd_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]) {
    out[0] = out[1] = out[2] = out[3] = 0;
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("cpuid" : "=a"(out[0]), "=b"(out[1]), "=c"(out[2]), "=d"(out[3]) : "a"(leaf), "c"(subleaf));
    return 1;
#else
    (void)leaf; (void)subleaf;
    return 0;
#endif
}

// xgetbv(0): which register states the operating system saves (AVX needs bits 1-2, AVX-512 bits 5-7).
static inline uint64_t ftd_xgetbv0(void) {
#if defined(__x86_64__) || defined(__i386__)
    uint32_t lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
#else
    return 0;
#endif
}
#endif
