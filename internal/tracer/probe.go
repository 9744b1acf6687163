// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// probe tells whether this kernel can attach backend b at all, with a
// program that does nothing. Unlike Open, a failure here means the
// kernel lacks the mechanism, not that our programs are wrong: tests use
// it to tell a missing feature (skip) from a broken program (fail).
func probe(b Backend) error {
	insns := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	var spec *ebpf.ProgramSpec
	switch b {
	case BackendFentry:
		spec = &ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: "tcp_connect"}
	case BackendKprobe:
		spec = &ebpf.ProgramSpec{Type: ebpf.Kprobe}
	case BackendSockops:
		spec = &ebpf.ProgramSpec{Type: ebpf.SockOps}
		insns[0] = asm.Mov.Imm(asm.R0, 1)
	default:
		return fmt.Errorf("unknown backend %q", b)
	}
	spec.Instructions, spec.License = insns, "GPL"
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		return fmt.Errorf("loading a %s program: %w", b, err)
	}
	defer prog.Close()
	var l link.Link
	err = inPrivateMounts(func(string, ...any) {}, CgroupV2Mount(), func(cgroupPath string) error {
		switch b {
		case BackendFentry:
			l, err = link.AttachTracing(link.TracingOptions{Program: prog})
		case BackendKprobe:
			l, err = link.Kprobe("tcp_connect", prog, nil)
		case BackendSockops:
			if cgroupPath == "" {
				return errors.New("no cgroup v2 hierarchy")
			}
			l, err = link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: ebpf.AttachCGroupSockOps, Program: prog})
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("attaching a %s program: %w", b, err)
	}
	return l.Close()
}
