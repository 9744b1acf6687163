/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel's types for the architecture being compiled for: bpf2go's
 * -target defines __TARGET_ARCH_<arch> (as libbpf's bpf_tracing.h expects),
 * and the layouts differ where it matters to us (struct pt_regs, which
 * BPF_KPROBE reads the arguments from). How to refresh them: README.md.
 */
#if defined(__TARGET_ARCH_x86)
#include "vmlinux_x86.h"
#elif defined(__TARGET_ARCH_arm64)
#include "vmlinux_arm64.h"
#else
#error "no kernel types for this target: add a vmlinux_<arch>.h (README.md)"
#endif
