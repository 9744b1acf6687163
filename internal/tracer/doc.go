// SPDX-License-Identifier: Apache-2.0

// Package tracer owns every BPF object of tcpconnect: it loads the
// programs of one backend, attaches them, reads the ring buffer and
// decodes its records into Events.
//
// An attempt is seen at three moments (see bpf/tcpconnect.bpf.c):
// connect() entering the TCP code, the SYN about to leave (the source port
// is chosen, we run in the connecting task), and the outcome. Backends
// differ only in how the first two are hooked:
//
//	backend  connect() entry              SYN                      kernel needs
//	fentry   fentry/inet_stream_connect   fentry/tcp_connect       BTF, BPF trampolines (5.5+)
//	kprobe   kprobe/inet_stream_connect   kprobe/tcp_connect       BTF (CO-RE), CONFIG_KPROBES
//	sockops  cgroup/connect4, connect6    sockops TCP_CONNECT_CB   BTF, cgroup v2 mounted
//
// connect()'s own result (failures before any SYN) comes from
// fexit/inet_stream_connect (fentry) or kretprobe/inet_stream_connect
// (kprobe). sockops has no such hook: it infers what its hooks show (a
// denial by an earlier cgroup program, no free port), and only with
// Config.SyncErrors adds syscalls/sys_{enter,exit}_connect, which slow
// every syscall of the host (TIF_SYSCALL_TRACEPOINT). All of them share
// tracepoint sock/inet_sock_set_state (outcomes) and a ring buffer. With
// outcomes, three packet hooks follow the attempt's SYNs on every backend
// (none is a kprobe): cgroup_skb/egress on the cgroup v2 root (the SYN
// after NAT; its transmissions), tp_btf/kfree_skb (a SYN dropped on this
// host, with the drop reason) and tp_btf/netif_receive_skb (ICMP errors
// quoting a SYN). Auto tries fentry, then kprobe, then sockops, attaching for
// real, because a kernel can list a feature and still refuse it (these
// project machines refuse trampolines with EPERM and have no kprobes).
//
// With Config.Processes, every backend also attaches tp_btf/sched_process_
// {fork,exec,exit} (BTF, 5.5+; no tracefs, no trampoline: they work where
// fentry is refused) to keep each live process's exe and command line in
// the map procs, captured at exec; procs.go reads /proc once for the
// processes that were there before, and joins the records to events.
package tracer
