// SPDX-License-Identifier: Apache-2.0

// Package smoke checks that a vmtest guest can do what the project's tests
// need: load and attach kprobe and fentry programs, see a loopback TCP
// connect, and use the veth module. It is meant to run inside the guest:
//
//	cd tools/vmtest/testdata/smoke && CGO_ENABLED=0 go test -c -o /tmp/smoke.test .
//	cd tools && go run ./vmtest -kernel 6.1 -file /tmp/smoke.test -- /smoke.test -test.v
//
// It is a module of its own (like every testdata folder, ./... leaves it
// out) so that tools/go.mod needs no BPF library.
//
// With VMTEST_SMOKE_FAIL=1 in its environment (vmtest -env) it fails on
// purpose, to check that a failure reaches the host's exit status.
package smoke

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// counterProgram returns a program that adds one to slot 0 of an array
// map and returns 0: hand-written so that no clang or bpf2go is needed.
func counterProgram(t *testing.T, spec *ebpf.ProgramSpec) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatalf("create map: %v", err)
	}
	t.Cleanup(func() { m.Close() })

	spec.License = "GPL"
	spec.Instructions = asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word), // key = 0
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		t.Fatalf("load %v program: %v", spec.Type, err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog, m
}

// loopbackConnect makes one TCP connection over loopback.
func loopbackConnect(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	c.Close()
}

func count(t *testing.T, m *ebpf.Map) uint64 {
	t.Helper()
	var n uint64
	if err := m.Lookup(uint32(0), &n); err != nil {
		t.Fatalf("read counter: %v", err)
	}
	return n
}

func TestKprobeTCPConnect(t *testing.T) {
	prog, m := counterProgram(t, &ebpf.ProgramSpec{Name: "kp_tcp_connect", Type: ebpf.Kprobe})
	l, err := link.Kprobe("tcp_connect", prog, nil)
	if err != nil {
		t.Fatalf("attach kprobe: %v", err)
	}
	defer l.Close()
	loopbackConnect(t)
	if n := count(t, m); n == 0 {
		t.Fatal("kprobe on tcp_connect did not run for a loopback connect")
	} else {
		t.Logf("kprobe ran %d times", n)
	}
}

func TestFentryTCPConnect(t *testing.T) {
	prog, m := counterProgram(t, &ebpf.ProgramSpec{
		Name:       "fe_tcp_connect",
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceFEntry,
		AttachTo:   "tcp_connect",
	})
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		t.Fatalf("attach fentry: %v", err)
	}
	defer l.Close()
	loopbackConnect(t)
	if n := count(t, m); n == 0 {
		t.Fatal("fentry on tcp_connect did not run for a loopback connect")
	} else {
		t.Logf("fentry ran %d times", n)
	}
}

func TestVethLoaded(t *testing.T) {
	if _, err := os.Stat("/sys/module/veth"); err != nil {
		t.Fatalf("veth module not loaded: %v", err)
	}
}

func TestKernelConfigPresent(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatalf("read release: %v", err)
	}
	release := strings.TrimSpace(string(b))
	if _, err := os.Stat("/boot/config-" + release); err != nil {
		t.Fatalf("kernel config: %v", err)
	}
}

func TestFailOnRequest(t *testing.T) {
	if os.Getenv("VMTEST_SMOKE_FAIL") == "1" {
		t.Fatal("failing on purpose (VMTEST_SMOKE_FAIL=1)")
	}
}
