// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// syscallHooks names the links of r that hook a syscall tracepoint: any
// of them puts every task of the host on the slow syscall path
// (TIF_SYSCALL_TRACEPOINT). The names come from the kernel's link info
// (bpf_link_info of each link, as bpftool link shows), not from our own
// bookkeeping. ok is false when the kernel does not say which tracepoint
// a perf-event link hooks (before Linux 6.6).
func syscallHooks(t *testing.T, r *running) (hooks, all []string, ok bool) {
	t.Helper()
	for _, l := range r.objs.links {
		info, err := l.Info()
		if err != nil {
			t.Fatalf("link info: %v", err)
		}
		var name string
		switch info.Type {
		case link.PerfEventType:
			pe := info.PerfEvent()
			if pe == nil {
				return nil, all, false
			}
			switch {
			case pe.Tracepoint() != nil:
				name = "tracepoint " + pe.Tracepoint().Tracepoint
			case pe.Kprobe() != nil:
				name = "kprobe " + pe.Kprobe().Function
			default:
				return nil, all, false
			}
		case link.RawTracepointType:
			name = "raw_tracepoint " + info.RawTracepoint().Name
		case link.CgroupType:
			name = "cgroup"
		case link.TracingType:
			name = "tracing"
		default:
			name = fmt.Sprintf("link type %d", info.Type)
		}
		all = append(all, name)
		tp := strings.TrimPrefix(strings.TrimPrefix(name, "tracepoint "), "raw_tracepoint ")
		// syscalls:sys_enter_* / sys_exit_* and raw_syscalls's
		// sys_enter / sys_exit.
		if tp != name && (strings.HasPrefix(tp, "sys_enter") || strings.HasPrefix(tp, "sys_exit")) {
			hooks = append(hooks, name)
		}
	}
	return hooks, all, true
}

// defaultModes are the tracer's modes without an opt-in: table, -r, -c
// and the kernel-counted metrics. Nothing in them may cost a process that
// does not connect.
func defaultModes(b Backend) []Config {
	return []Config{
		{Backend: b},
		{Backend: b, Outcomes: true},
		{Backend: b, Count: true},
		{Backend: b, Outcomes: true, KernelMetrics: true},
	}
}

// TestNoSyscallTracepoint: in every mode, by default, no backend hooks a
// syscall tracepoint, so the tracer costs nothing to the syscalls of
// processes that do not connect. SyncErrors on sockops does hook one, and
// the check must see it (it is what makes the check able to fail).
func TestNoSyscallTracepoint(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		for _, cfg := range defaultModes(b) {
			r := start(t, cfg)
			hooks, all, ok := syscallHooks(t, r)
			if !ok {
				t.Skipf("SKIP: this kernel does not report which tracepoint a perf-event link hooks (Linux 6.6+); links: %v", all)
			}
			if len(hooks) != 0 {
				t.Errorf("%+v: syscall tracepoints attached: %v (all links: %v)", cfg, hooks, all)
			}
			t.Logf("outcomes %v count %v metrics %v: links %v", cfg.Outcomes, cfg.Count, cfg.KernelMetrics, all)
			r.stop()
			r.Close()
		}

		r := start(t, Config{Backend: b, Outcomes: true, SyncErrors: true})
		hooks, all, _ := syscallHooks(t, r)
		if r.Backend() == BackendSockops {
			if len(hooks) != 2 {
				t.Errorf("sockops with SyncErrors: syscall tracepoints %v, want sys_enter_connect and sys_exit_connect (links %v)", hooks, all)
			}
		} else if len(hooks) != 0 {
			t.Errorf("%s with SyncErrors: syscall tracepoints %v: it needs none", r.Backend(), hooks)
		}
	})
}

// packetHooks names the links of r whose programs run for packets: a
// cgroup_skb program (egress, ingress) or a BTF tracepoint on
// kfree_skb or netif_receive_skb. With any of them attached, every packet
// of the host pays, attempt or not. From the kernel's link info.
func packetHooks(t *testing.T, r *running) []string {
	t.Helper()
	var hooks []string
	for _, l := range r.objs.links {
		info, err := l.Info()
		if err != nil {
			t.Fatalf("link info: %v", err)
		}
		switch info.Type {
		case link.CgroupType:
			switch at := ebpf.AttachType(info.Cgroup().AttachType); at {
			case ebpf.AttachCGroupInetEgress, ebpf.AttachCGroupInetIngress:
				hooks = append(hooks, "cgroup "+at.String())
			}
		case link.RawTracepointType:
			if n := info.RawTracepoint().Name; n == "kfree_skb" || n == "netif_receive_skb" {
				hooks = append(hooks, "tp_btf "+n)
			}
		case link.TracingType:
			if ebpf.AttachType(info.Tracing().AttachType) == ebpf.AttachTraceRawTp {
				hooks = append(hooks, "tp_btf")
			}
		}
	}
	return hooks
}

// TestNoPacketHookWithoutWhy: the packet hooks run only when Why asks
// for what they give; -r, -c and the kernel-counted metrics leave every
// packet of the host alone. With Why, all three are there (the check can
// fail).
func TestNoPacketHookWithoutWhy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		for _, cfg := range defaultModes(b) {
			r := start(t, cfg)
			if hooks := packetHooks(t, r); len(hooks) != 0 {
				t.Errorf("%+v: packet hooks attached: %v", cfg, hooks)
			}
			r.stop()
			r.Close()
		}
		r := start(t, Config{Backend: b, Outcomes: true, Why: true})
		if hooks := packetHooks(t, r); len(hooks) != 3 && r.WhyUnavailable() == nil {
			t.Errorf("with Why: packet hooks %v, want 3 (cgroup_skb/egress, kfree_skb, netif_receive_skb)", hooks)
		}
	})
}
