// SPDX-License-Identifier: Apache-2.0

package tracer

// The BPF objects are generated and committed, so that building the tool
// needs no clang: one per architecture (amd64, arm64), each compiled
// against that architecture's kernel types (bpf/headers/README.md). After
// changing anything under bpf/, run `go generate ./internal/tracer` (needs
// clang and libbpf-dev); TestGeneratedUpToDate fails until then.
// bpf/clang.version records the compiler that built the committed objects.
//
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -type event -type count_key -type dns_record -type outcome_key -type record_kind -type outcome -type stat_index -type latency_slot -type why_flags -type proc -type proc_record -type proc_flag -type limits tcpconnect bpf/tcpconnect.bpf.c -- -I./bpf/headers
//go:generate sh -c "sha256sum bpf/tcpconnect.bpf.c bpf/tcpconnect.h bpf/headers/vmlinux.h bpf/headers/vmlinux_x86.h bpf/headers/vmlinux_arm64.h > bpf/sources.sha256"
//go:generate sh -c "clang --version | head -n 1 > bpf/clang.version"
